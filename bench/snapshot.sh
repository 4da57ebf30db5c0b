#!/usr/bin/env bash
# Base backups, incrementals and restores: SELECT bk_snapshot() into the bk
# repository through Kafka against pgBackRest 2.45 (lz4, aes-256-cbc,
# process-max 1 and 2) and pg_basebackup (server-side lz4), all on the same
# database in the same run; then an incremental after a given share of the
# pages changed, bk's against pgBackRest's; then restore times, bk restore
# against pgbackrest restore.
#
# Usage: bench/snapshot.sh   (as root: PostgreSQL and pgBackRest run as the
#                             postgres OS user)
#
# What it does, end to end:
#   1. a private PostgreSQL and Kafka (scripts/services, own ports and state
#      directory /tmp/bk-bench-snapshot), archive_library = 'bk' with a
#      shipper running all along (a bk snapshot is restorable only once the
#      WAL from its start to its stop is in the repository); autovacuum off,
#      so nothing changes pages between the contenders of a step.
#   2. the database: pgbench -i -s SNAP_SCALE -F 90 and bench_random, a
#      table of SNAP_RANDOM_MB MiB of random bytes (1 KiB gen_random_bytes
#      per row, fillfactor 80), VACUUM (FREEZE, ANALYZE), VACUUM (FREEZE)
#      (so that no later read sets hint bits), CHECKPOINT.  The database
#      fits in RAM: every contender reads a warm page cache unless
#      SNAP_DROP_CACHES=1.  MB/s everywhere = database size / seconds.
#   3. per run (SNAP_RUNS, interleaved; the backup steps in an order rotated
#      by one contender each run):
#      full:    bk (SELECT * FROM bk_snapshot('full') with the server's
#               settings, bk.snapshot_jobs 2 by default; the clock stops when
#               the call returned, and again when "bk list" says the snapshot
#               is restorable), bk-jN (the same with bk.snapshot_jobs = N:
#               N processes copy), pgbr-p1 and pgbr-p2 (pgbackrest backup
#               --type=full into a fresh repository, process-max 1 / 2),
#               basebackup (pg_basebackup -Ft --compress=server-lz4
#               --wal-method=none --checkpoint=fast); bk-msgsN,
#               bk-lingerN and bk-chunkN (bk with bk.kafka_properties =
#               'batch.num.messages=N', messages per produce request, or
#               'linger.ms=N', or bk.chunk_size = 'N MB', for its step;
#               full only), bk-noflush (bk with the broker's flush of
#               every message turned off on the snapshot and WAL topics for
#               its step: an experiment that shows what the broker's
#               fsyncs cost; not durable on one node; full only);
#      change:  one row on every k-th heap page of pgbench_accounts and
#               bench_random (k = 100 / SNAP_CHANGE_PCT) is updated (HOT, so
#               the heap pages change and the indexes do not), CHECKPOINT;
#               the changed pages are counted with pageinspect: every page of
#               every relation's main fork whose LSN is at or after the bk
#               full's start LSN;
#      incr:    bk (bk_snapshot('incr'), on the run's last bk full:
#               bytes_sent, and what the repository stores) against pgbackrest backup --type=incr (file-level:
#               every changed file again) on each pgBackRest repository;
#      restore: of the full and of the incremental: bk restore --snapshot ID
#               (bk's default --jobs unless SNAP_BK_JOBS), pgbackrest restore
#               --set (process-max 1 from pgbr-p1's repository, 2 from
#               pgbr-p2's) into an empty directory; not started.  Untimed
#               checks: the exit status (both verify what they restore),
#               pg_verifybackup --no-parse-wal of bk's directories (bk restore
#               writes a backup_manifest), and the SHA-256 of every file under
#               base/ and global/ of bk's restore against pgBackRest's of the
#               same state (expected to differ: bk's own bookkeeping table
#               bk_snapshot_history, which bk_snapshot() writes, and
#               pg_control).
#   4. the summary: best run of each, throughput ratios against the aims.
# CPU: the whole machine from /proc/stat, and "ours": for bk PostgreSQL (the
# backend, the snapshot worker, the archiver...) + the broker + the shipper;
# for pgBackRest and pg_basebackup the tool (with its child processes) +
# PostgreSQL; for restores the restoring process and its children.
# Everything printed also goes to bench/results/snapshot-<UTC date-time>.txt.
#
# Environment (defaults in brackets):
#   SNAP_SCALE         pgbench -i scale [50]
#   SNAP_RANDOM_MB     MiB of random bytes in bench_random [400]
#   SNAP_RUNS          runs, interleaved [2]
#   SNAP_CHANGE_PCT    percent of the heap pages changed before the
#                      incrementals [5]
#   SNAP_CONTENDERS    [bk bk-j1 pgbr-p1 pgbr-p2 basebackup]
#   SNAP_BK_JOBS       bk restore --jobs; empty: bk's default (2) []
#   SNAP_RANGE_SIZE    bk.snapshot_range_size for bk's snapshots (0: every
#                      file one object); empty: the server's default []
#   SNAP_DROP_CACHES   1: drop the page cache before each timed step (all of
#                      the machine's) [0]
#   SNAP_TIMEOUT       seconds one step may take [3600]
#   BENCH_SETTLE       seconds of rest before each timed step, so that
#                      memory freed before it is in the same state for every
#                      contender (bench/lib.sh, settle) [5]
#   SNAP_PROFILE       1: every bk snapshot step (full and incremental)
#                      under perf record -a (no call chains), its samples
#                      reported by process and thread, with what the disk
#                      read, wrote and how busy it was [0]
#   SNAP_KEEP          1: keep the work directory [0]
#   SNAP_WARMUP        1: before the runs, one bk full snapshot that is not
#                      measured, so that the broker's fresh JVM has compiled
#                      its hot paths and sized its heap before bk's first
#                      timed snapshot (bench/archive.sh warms it up the same
#                      way; a broker in service has long been warm) [1]
set -euo pipefail
shopt -s nullglob

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

SCALE=${SNAP_SCALE:-50}
RANDOM_MB=${SNAP_RANDOM_MB:-400}
RUNS=${SNAP_RUNS:-2}
CHANGE_PCT=${SNAP_CHANGE_PCT:-5}
read -r -a CONTENDERS <<<"${SNAP_CONTENDERS:-bk bk-j1 pgbr-p1 pgbr-p2 basebackup}"
BK_JOBS=${SNAP_BK_JOBS:-}
RANGE_SIZE=${SNAP_RANGE_SIZE:-}
DROP_CACHES=${SNAP_DROP_CACHES:-0}
STEP_TIMEOUT=${SNAP_TIMEOUT:-3600}
KEEP=${SNAP_KEEP:-0}
PROFILE=${SNAP_PROFILE:-0}
WARMUP=${SNAP_WARMUP:-1}

[[ "$SCALE" =~ ^[1-9][0-9]*$ && "$RANDOM_MB" =~ ^[0-9]+$ && "$RUNS" =~ ^[1-9][0-9]*$ ]] ||
    { echo "SNAP_SCALE, SNAP_RANDOM_MB and SNAP_RUNS must be whole numbers" >&2; exit 2; }
if ! [[ "$CHANGE_PCT" =~ ^[0-9]+([.][0-9]+)?$ ]] || ! awk "BEGIN { exit !($CHANGE_PCT > 0 && $CHANGE_PCT <= 100) }"; then
    echo "SNAP_CHANGE_PCT must be a number in (0, 100]" >&2
    exit 2
fi
[[ -z "$BK_JOBS" || "$BK_JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "SNAP_BK_JOBS must be a number" >&2; exit 2; }
for c in "${CONTENDERS[@]}"; do
    case "$c" in
    bk | pgbr-p1 | pgbr-p2 | basebackup | bk-noflush) ;;
    bk-j* | bk-msgs* | bk-linger* | bk-chunk*)
        [[ "$c" =~ ^bk-(j|msgs|linger|chunk)[1-9][0-9]*$ ]] || { echo "bad contender \"$c\" (bk-jN, bk-msgsN, bk-lingerN, bk-chunkN: N a number from 1)" >&2; exit 2; } ;;
    *) echo "unknown contender \"$c\" (have: bk bk-jN bk-msgsN bk-lingerN bk-chunkN bk-noflush pgbr-p1 pgbr-p2 basebackup)" >&2; exit 2 ;;
    esac
done
# Contenders with no incremental and no restore of their own.
full_only() {
    case "$1" in
    basebackup | bk-j* | bk-msgs* | bk-linger* | bk-chunk* | bk-noflush) return 0 ;;
    esac
    return 1
}
[[ "$(id -u)" == 0 ]] || { echo "run as root (PostgreSQL and pgBackRest run as postgres)" >&2; exit 2; }

# A PostgreSQL and a Kafka of our own, on ports nobody else uses (the tests
# use 25432/29092, bench/archive.sh 58432/58092).
export BK_SERVICES_DIR=/tmp/bk-bench-snapshot
export BK_PG_PORT=58532
export BK_MYSQL_PORT=58506
export BK_KAFKA_PORT=58192
export BK_KAFKA_CONTROLLER_PORT=58193
SERVICES="$REPO_ROOT/scripts/services"
BK=/usr/local/bin/bk
SHIPPER=/usr/local/bin/bk-shipper

. "$REPO_ROOT/bench/lib.sh"
bench_output snapshot

WORK="$(mktemp -d /tmp/bk-snapshot-bench.XXXXXX)"
chmod 755 "$WORK"
ROWS="$WORK/results.tsv" # the RESULT lines, for the summary
: >"$ROWS"
SHIPPER_PID=""
KAFKA_PID=""
SID=""

bench_nap_init "$WORK"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    echo
    echo "== cleaning up"
    if [[ -n "${PERF_PID:-}" ]]; then kill -INT "$PERF_PID" 2>/dev/null || true; fi
    stop_shipper
    bench_finish "$KEEP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "FAILED: $*" >&2; exit 1; }
secs_of() { calc "$1 / $HZ" 2; } # TICKS -> seconds
mb() { calc "$1 / 1e6" 1; }
now_s() { echo "${EPOCHREALTIME%.*}"; }
dusb() { du -sb "$1" | cut -f1; }

# meter_start / meter_stop: wall clock and CPU ticks of a step.  After
# meter_stop: D_SECS, D_MACHINE, D_PG, D_SELF, D_KAFKA, D_SHIPPER (ticks).
meter_start() {
    machine_ticks
    MM0=$MACHINE
    pg_tree_ticks
    MP0=$PGTREE
    self_ticks
    MS0=$SELF
    proc_ticks "$KAFKA_PID"
    MK0=${TICKS:-0}
    proc_ticks "$SHIPPER_PID"
    MH0=${TICKS:-0}
    MT0=$EPOCHREALTIME
}
meter_stop() {
    local t1=$EPOCHREALTIME
    machine_ticks
    D_MACHINE=$((MACHINE - MM0))
    pg_tree_ticks
    D_PG=$((PGTREE - MP0))
    self_ticks
    D_SELF=$((SELF - MS0))
    proc_ticks "$KAFKA_PID"
    D_KAFKA=$((${TICKS:-$MK0} - MK0))
    proc_ticks "$SHIPPER_PID"
    D_SHIPPER=$((${TICKS:-$MH0} - MH0))
    D_SECS=$(calc "$t1 - $MT0" 3)
}
# The peak RSS (kB) /usr/bin/time wrote to $1.
peak_kb() { awk 'END { print $1 + 0 }' "$1" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------- services

export_env() {
    eval "$("$SERVICES" env pg kafka)"
    PG_SOCKET_DIR="$BK_SERVICES_DIR/pg"
    read -r KAFKA_PID <"$BK_SERVICES_DIR/kafka/kafka.pid"
}

# wait_archived: no .ready file left, and the last file the archiver sent is
# in the bk repository; so that no archiving or shipping of an earlier step
# runs during the next one.
wait_archived() {
    local deadline last
    deadline=$(($(now_s) + 900))
    while :; do
        local -a ready=("$BK_PGDATA"/pg_wal/archive_status/*.ready)
        ((${#ready[@]} == 0)) && break
        (($(now_s) < deadline)) || { echo "  warning: ${#ready[@]} .ready files left after 900 s"; return 0; }
        nap 0.2
    done
    last=$(psql_q "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
    [[ -n "$last" ]] || return 0
    while [[ ! -e "$BK_REPO/$SID/wal/$last" ]]; do
        (($(now_s) < deadline)) || { echo "  warning: $last is not in the bk repository after 900 s"; return 0; }
        nap 0.2
    done
}
# prepare_step: what every timed step starts from: a checkpoint (so that no
# contender's own checkpoint writes another's dirty pages), archiving and
# shipping caught up, dirty pages of the page cache written out.
prepare_step() {
    psql_q "CHECKPOINT"
    wait_archived
    sync
    if [[ "$DROP_CACHES" == 1 ]]; then
        echo 3 >/proc/sys/vm/drop_caches
    fi
    settle
}
db_bytes() { psql_q "SELECT sum(pg_database_size(oid)) FROM pg_database"; }

# ---------------------------------------------------------------- bk

# BK_ID BK_STATE BK_START BK_STOP BK_FILES BK_READ BK_SENT BK_RETURNED_S
# BK_RECORD_S BK_STORED: one bk_snapshot() of KIND copied by JOBS processes
# (none: the server's setting), timed until it is restorable.
bk_snapshot_step() { # KIND [JOBS]
    local kind="$1" jobs="${2:-}" out t1 rec deadline restorable=""
    BK_RECORD_S=""
    prepare_step
    profile_start
    meter_start
    out=$(psql -X -q -t -A -v ON_ERROR_STOP=1 ${jobs:+-c "SET bk.snapshot_jobs = $jobs"} \
        ${RANGE_SIZE:+-c "SET bk.snapshot_range_size = '$RANGE_SIZE'"} \
        -c "SELECT snapshot_id, state, start_lsn, stop_lsn, files, bytes_read, bytes_sent FROM bk_snapshot(kind => '$kind')") ||
        die "bk_snapshot(kind => '$kind') failed"
    t1=$EPOCHREALTIME
    IFS='|' read -r BK_ID BK_STATE BK_START BK_STOP BK_FILES BK_READ BK_SENT <<<"$out"
    BK_RETURNED_S=$(calc "$t1 - $MT0" 3)
    [[ "$BK_STATE" == complete ]] ||
        die "bk_snapshot($kind) ended \"$BK_STATE\": $(psql_q "SELECT coalesce(error, '') FROM bk_snapshot_history WHERE snapshot_id = '$BK_ID'")"
    # The shipper stores the record last-but-not-least (objects arrive in any
    # order); look for it in the repository, then ask bk list.
    rec="$BK_REPO/$SID/snapshot/$BK_ID/snapshot.json"
    deadline=$(($(now_s) + STEP_TIMEOUT))
    while :; do
        if [[ -e "$rec" ]]; then
            [[ -n "$BK_RECORD_S" ]] || BK_RECORD_S=$(calc "$EPOCHREALTIME - $MT0" 3)
            restorable=$("$BK" list --config "$BK_CONF" --source "$SID" --json 2>>"$WORK/bk-list.err" |
                jq -r --arg id "$BK_ID" '.sources[].snapshots[] | select(.id == $id) | .restorable') || true
            [[ "$restorable" == true ]] && break
            nap 0.1
        else
            nap 0.05
        fi
        (($(now_s) < deadline)) || die "snapshot $BK_ID not restorable after $STEP_TIMEOUT s (bk list: ${restorable:-?}; record present: $([[ -e "$rec" ]] && echo yes || echo no))"
    done
    meter_stop
    profile_stop
    BK_STORED=$(dusb "$BK_REPO/$SID/snapshot/$BK_ID")
}

# profile_start / profile_stop: with SNAP_PROFILE=1, the step under perf
# record -a; the report gives the samples of every process and thread
# group, librdkafka's threads apart (they name themselves rdk:...).  The
# snapshot worker has exited by then, so PostgreSQL's processes are known by
# their name: postgres, and rdk:... outside the broker and the shipper.
PERF_PID=""
PERF_N=0
profile_start() {
    [[ "$PROFILE" == 1 ]] || return 0
    PERF_N=$((PERF_N + 1))
    PERF_DATA="$WORK/perf-$PERF_N.data"
    perf record -e cpu-clock -F 999 -a -o "$PERF_DATA" >"$WORK/perf-$PERF_N.out" 2>&1 &
    PERF_PID=$!
    nap 1
    disk_stats
    DISK0=("${DISK[@]}")
    DISK_T0=$EPOCHREALTIME
}
# DISK: sectors read, sectors written, milliseconds with I/O in flight, of
# the device that holds the work directory (/proc/diskstats).
DISK_DEV=$(basename "$(df --output=source /tmp | tail -1)")
disk_stats() {
    DISK=($(awk -v d="$DISK_DEV" '$3 == d { print $6, $10, $13 }' /proc/diskstats))
    ((${#DISK[@]} == 3)) || DISK=()
}
profile_stop() {
    [[ -n "$PERF_PID" ]] || return 0
    local secs
    disk_stats
    secs=$(calc "$EPOCHREALTIME - $DISK_T0" 3)
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=""
    [[ -s "$PERF_DATA" ]] || { echo "  no perf data: $(cat "$WORK/perf-$PERF_N.out")"; return 0; }
    echo "  profile ($PERF_DATA; the 1 s before the step included): samples by process"
    perf script -i "$PERF_DATA" -F comm,pid,tid 2>/dev/null |
        awk -v k="$KAFKA_PID" -v s="$SHIPPER_PID" '
            { n++; p = $NF; sub(/\/.*/, "", p); comm = $0; sub(/[ \t]+[0-9]+\/[0-9]+[ \t]*$/, "", comm); sub(/^[ \t]+/, "", comm)
              if (p == k) who = "Kafka broker"
              else if (p == s) who = "bk-shipper" (comm ~ /^rdk:/ ? ", librdkafka threads" : "")
              else if (p == 0) who = "idle (swapper)"
              else if (comm == "postgres" || comm ~ /^rdk:/)
                  who = "PostgreSQL pid " p (comm ~ /^rdk:/ ? ", librdkafka threads" : "")
              else if (comm ~ /^kworker|^ksoftirq|^jbd2|^kdamond|^rcu/) who = "kernel threads"
              else who = "other: " comm
              c[who]++ }
            END { for (w in c) printf "    %6.2f%%  %6d  %s\n", 100 * c[w] / n, c[w], w }' | sort -rn | head -14 || true
    if ((${#DISK[@]} == 3 && ${#DISK0[@]} == 3)); then
        echo "  disk $DISK_DEV in these $secs s: read $(mb $(((DISK[0] - DISK0[0]) * 512))) MB, wrote $(mb $(((DISK[1] - DISK0[1]) * 512))) MB," \
            "busy (I/O in flight) $(calc "($((DISK[2] - DISK0[2])) / 10) / $secs" 1)% of the time"
    else
        echo "  disk: no statistics for \"$DISK_DEV\" (the device of /tmp) in /proc/diskstats"
    fi
}
bk_cpu_report() { # prints the CPU lines of a bk step
    echo "  CPU: ours $(secs_of $((D_PG + D_KAFKA + D_SHIPPER))) s (PostgreSQL $(secs_of "$D_PG") s, broker $(secs_of "$D_KAFKA") s, shipper $(secs_of "$D_SHIPPER") s);" \
        "machine $(secs_of "$D_MACHINE") s; this script (psql, bk list polling) $(secs_of "$D_SELF") s"
}

# ---------------------------------------------------------------- pgBackRest

PGBR_PASS=""
pgbr_conf_path() { echo "$WORK/pgbr/$1-$2.conf"; } # TAG RUN
pgbr_repo_path() { echo "$WORK/pgbr/repo-$1-$2"; }
pgbr_setup() { # TAG RUN: a fresh repository and its stanza
    local tag="$1" run="$2" conf repo pmax="${1#pgbr-p}"
    conf=$(pgbr_conf_path "$tag" "$run")
    repo=$(pgbr_repo_path "$tag" "$run")
    rm -rf "$repo"
    install -d -o postgres -g postgres -m 750 "$repo"
    pgbr_write_conf "$conf" "$repo" "$pmax" \
        "repo1-retention-full=99" "start-fast=y" "archive-check=n"
    as_pg pgbackrest --config="$conf" --stanza=bench stanza-create >"$WORK/pgbr/stanza-$tag-$run.out" 2>&1 ||
        { cat "$WORK/pgbr/stanza-$tag-$run.out"; die "pgbackrest stanza-create ($tag, run $run)"; }
}
# PGBR_LABEL PGBR_REPO_DELTA PGBR_PLAIN_DELTA PGBR_SIZE PGBR_PEAK: one backup.
pgbr_backup_step() { # TAG RUN TYPE
    local tag="$1" run="$2" type="$3" conf info log="$WORK/pgbr/backup-$1-$2-$3.out"
    conf=$(pgbr_conf_path "$tag" "$run")
    prepare_step
    meter_start
    /usr/bin/time -f "%M" -o "$WORK/time.out" \
        runuser -u postgres -- pgbackrest --config="$conf" --stanza=bench --type="$type" backup >"$log" 2>&1 ||
        { cat "$log"; die "pgbackrest backup --type=$type ($tag, run $run)"; }
    meter_stop
    PGBR_PEAK=$(peak_kb "$WORK/time.out")
    [[ -s "$log" ]] && sed 's/^/  pgbackrest: /' "$log"
    info=$(as_pg pgbackrest --config="$conf" --stanza=bench --output=json info)
    PGBR_LABEL=$(jq -r '.[0].backup[-1].label' <<<"$info")
    PGBR_REPO_DELTA=$(jq -r '.[0].backup[-1].info.repository.delta' <<<"$info")
    PGBR_PLAIN_DELTA=$(jq -r '.[0].backup[-1].info.delta' <<<"$info")
    PGBR_SIZE=$(jq -r '.[0].backup[-1].info.size' <<<"$info")
    [[ "$(jq -r '.[0].backup[-1].type' <<<"$info")" == "$type" ]] ||
        die "pgbackrest info: the newest backup of $tag is not of type $type"
}

# ---------------------------------------------------------------- the database

make_database() {
    section "the database"
    echo "pgbench -i -s $SCALE -F 90 (fillfactor 90: room for HOT updates)"
    local t0
    t0=$EPOCHREALTIME
    pgbench -i -s "$SCALE" -F 90 -q 2>&1 | tail -1
    echo "  $(calc "$EPOCHREALTIME - $t0" 1) s"
    # 1 KiB of random bytes per row (inline: below the TOAST threshold, and
    # incompressible, so neither lz4 nor pglz gains anything); fillfactor 80
    # leaves 6 rows per page and room for one HOT update.
    local rows=$((RANDOM_MB * 128 * 6))
    echo "bench_random: $rows rows of gen_random_bytes(1024), fillfactor 80 (about $RANDOM_MB MiB)"
    t0=$EPOCHREALTIME
    psql_q "CREATE TABLE bench_random (id int PRIMARY KEY, payload bytea NOT NULL) WITH (fillfactor = 80)"
    if ((rows > 0)); then
        psql_q "INSERT INTO bench_random SELECT g, gen_random_bytes(1024) FROM generate_series(1, $rows) g"
    fi
    echo "  $(calc "$EPOCHREALTIME - $t0" 1) s"
    echo "VACUUM (FREEZE, ANALYZE); CHECKPOINT (every page frozen and hinted: reading does not change pages)"
    t0=$EPOCHREALTIME
    psql_q "VACUUM (FREEZE, ANALYZE)"
    # Once more: ANALYZE wrote pg_statistic rows after the freeze, and the
    # first reader would set their hint bits (a new page LSN).
    psql_q "VACUUM (FREEZE)"
    psql_q "CHECKPOINT"
    echo "  $(calc "$EPOCHREALTIME - $t0" 1) s"
    echo "waiting for bk to archive the load's WAL"
    t0=$EPOCHREALTIME
    wait_archived
    echo "  $(calc "$EPOCHREALTIME - $t0" 1) s ($(psql_q "SELECT archived_count || ' files archived, ' || failed_count || ' failed attempts' FROM pg_stat_archiver"))"
    echo "relations:"
    psql_q "SELECT rpad(c.relname, 24) || lpad(pg_size_pretty(pg_relation_size(c.oid)), 10)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') ORDER BY pg_relation_size(c.oid) DESC" | sed 's/^/  /'
    DB_BYTES0=$(db_bytes)
    echo "database size (sum of pg_database_size over all databases): $DB_BYTES0 bytes ($(mb "$DB_BYTES0") MB)"
    local base plain packed
    base=$(dusb "$BK_PGDATA/base")
    plain=$(find "$BK_PGDATA/base" "$BK_PGDATA/global" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }')
    packed=$(find "$BK_PGDATA/base" "$BK_PGDATA/global" -type f -print0 | xargs -0 cat | lz4 -1 -c | wc -c)
    echo "base/ + global/: $plain bytes; lz4 -1 of them: $packed bytes ($(calc "$packed / $plain" 3) of the size)"
    echo "DATABASE db_bytes=$DB_BYTES0 base_bytes=$base lz4_ratio=$(calc "$packed / $plain" 4) scale=$SCALE random_mb=$RANDOM_MB"
}

# ---------------------------------------------------------------- change

# Change one row (HOT update) on every M-th page of the two big tables,
# starting at page (RUN - 1) % M, then count the pages whose LSN moved.
change_pages() { # RUN FULL_START_LSN
    local run="$1" full_lsn="$2" m k t expr n upd plan
    m=$(awk "BEGIN { m = int(100 / $CHANGE_PCT + 0.5); print (m < 1 ? 1 : m) }")
    k=$(((run - 1) % m))
    section "change, run $run: one row on every ${m}th heap page (pages $k, $((k + m)), ...) of pgbench_accounts and bench_random"
    CHANGE_LSN=$(psql_q "SELECT pg_current_wal_lsn()")
    for t in pgbench_accounts bench_random; do
        case "$t" in
        pgbench_accounts) expr="abalance = abalance + 1" ;;
        bench_random) expr="payload = gen_random_bytes(1024)" ;;
        esac
        upd="UPDATE $t SET $expr WHERE ctid = ANY (ARRAY(
                 SELECT format('(%s,1)', b)::tid
                 FROM generate_series(0, (pg_relation_size('$t') / 8192)::int - 1) b WHERE b % $m = $k))"
        plan=$(psql_q "EXPLAIN (COSTS OFF) $upd" | grep -o -E 'Tid Scan|Seq Scan' | head -1)
        n=$(psql_q "WITH u AS ($upd RETURNING 1) SELECT count(*) FROM u")
        echo "  $t: $n rows updated (${plan:-?})"
    done
    psql_q "CHECKPOINT"
    echo "  WAL written by the change: $(psql_q "SELECT pg_size_pretty(pg_current_wal_lsn() - '$CHANGE_LSN'::pg_lsn)")"
    # Every page of every main fork of this database and of the shared
    # catalogs (template0 and template1 are not touched).
    psql -X -q -t -A -F ' ' -v ON_ERROR_STOP=1 >"$WORK/pages-$run" <<SQL
SELECT rel, count(*), count(*) FILTER (WHERE lsn >= '$full_lsn'), count(*) FILTER (WHERE lsn >= '$CHANGE_LSN'),
       count(*) FILTER (WHERE lsn = '0/0')
FROM (SELECT c.oid::regclass::text AS rel,
             (page_header(get_raw_page(c.oid::regclass::text, 'main', b))).lsn AS lsn
      FROM pg_class c, generate_series(0, (pg_relation_size(c.oid) / 8192)::int - 1) b
      WHERE c.relkind IN ('r', 'i', 't', 'm', 'S') AND c.relpersistence = 'p') p
GROUP BY rel
SQL
    read -r PAGES_TOTAL CH_PAGES CH_PAGES_CHANGE ZERO_PAGES < <(awk '{ t += $2; f += $3; c += $4; z += $5 } END { print t + 0, f + 0, c + 0, z + 0 }' "$WORK/pages-$run")
    CH_BYTES=$((CH_PAGES * 8192))
    echo "  main-fork pages: $PAGES_TOTAL; with an LSN at or after the bk full's start ($full_lsn): $CH_PAGES" \
        "= $(calc "100 * $CH_PAGES / $PAGES_TOTAL" 2)% = $CH_BYTES bytes ($(mb "$CH_BYTES") MB); after the change began: $CH_PAGES_CHANGE; all-zero: $ZERO_PAGES"
    echo "  changed pages by relation:"
    sort -k3 -n -r "$WORK/pages-$run" | awk '$3 > 0 { printf "    %-34s %8d of %8d pages\n", $1, $3, $2 }' | head -12
    echo "CHANGE run=$run pages_total=$PAGES_TOTAL changed_pages=$CH_PAGES changed_bytes=$CH_BYTES changed_pct=$(calc "100 * $CH_PAGES / $PAGES_TOTAL" 2) changed_since_change=$CH_PAGES_CHANGE zero_pages=$ZERO_PAGES"
}

# ---------------------------------------------------------------- steps

result() { echo "RESULT $*" | tee -a "$ROWS"; }

full_step() { # CONTENDER RUN
    local c="$1" run="$2" db
    section "full backup: $c, run $run"
    db=$(db_bytes)
    case "$c" in
    bk | bk-j* | bk-msgs* | bk-linger* | bk-chunk* | bk-noflush)
        if [[ "$c" == bk-noflush ]]; then
            local topic
            for topic in "$BK_PREFIX.snapshot" "$BK_PREFIX.wal"; do
                kafka_config_alter "$topic" flush.messages=9223372036854775807
            done
            bk_snapshot_step full
            for topic in "$BK_PREFIX.snapshot" "$BK_PREFIX.wal"; do
                kafka_config_alter "$topic" flush.messages=1
            done
        elif [[ "$c" == bk-msgs* || "$c" == bk-linger* || "$c" == bk-chunk* ]]; then
            local guc=bk.kafka_properties value="batch.num.messages=${c#bk-msgs}"
            [[ "$c" == bk-linger* ]] && value="linger.ms=${c#bk-linger}"
            [[ "$c" == bk-chunk* ]] && guc=bk.chunk_size value="${c#bk-chunk}MB"
            # ALTER SYSTEM runs outside a transaction: a statement of its own.
            psql_q "ALTER SYSTEM SET $guc = '$value'"
            psql_q "SELECT pg_reload_conf()" >/dev/null
            nap 0.5
            bk_snapshot_step full
            psql_q "ALTER SYSTEM RESET $guc"
            psql_q "SELECT pg_reload_conf()" >/dev/null
        elif [[ "$c" == bk-j* ]]; then
            bk_snapshot_step full "${c#bk-j}"
        else
            bk_snapshot_step full
        fi
        # The run's last bk full (of any bk contender) is the incremental's
        # parent: the changed pages are counted from its start.
        BKFULL_ID[$run]=$BK_ID
        BKFULL_START[$run]=$BK_START
        echo "snapshot $BK_ID: $BK_FILES files, read $BK_READ bytes, sent $BK_SENT bytes ($(calc "$BK_SENT / $BK_READ" 3) of read), start $BK_START, stop $BK_STOP"
        echo "  bk_snapshot() returned after $BK_RETURNED_S s ($(mb "$(calc "$db / $BK_RETURNED_S" 0)") MB/s of the database);" \
            "its record in the repository after $BK_RECORD_S s; restorable after $D_SECS s ($(mb "$(calc "$db / $D_SECS" 0)") MB/s); stored $BK_STORED bytes"
        bk_cpu_report
        result "phase=full contender=$c run=$run ok=1 db_bytes=$db seconds=$D_SECS mb_per_s=$(calc "$db / 1e6 / $D_SECS" 1)" \
            "returned_s=$BK_RETURNED_S returned_mb_per_s=$(calc "$db / 1e6 / $BK_RETURNED_S" 1) record_s=$BK_RECORD_S stored_bytes=$BK_STORED" \
            "sent_bytes=$BK_SENT read_bytes=$BK_READ files=$BK_FILES ours_cpu_s=$(secs_of $((D_PG + D_KAFKA + D_SHIPPER)))" \
            "pg_cpu_s=$(secs_of "$D_PG") broker_cpu_s=$(secs_of "$D_KAFKA") shipper_cpu_s=$(secs_of "$D_SHIPPER")" \
            "machine_cpu_s=$(secs_of "$D_MACHINE") harness_cpu_s=$(secs_of "$D_SELF") snapshot=$BK_ID"
        ;;
    pgbr-p1 | pgbr-p2)
        pgbr_setup "$c" "$run"
        pgbr_backup_step "$c" "$run" full
        PGBR_FULL_LABEL[$c-$run]=$PGBR_LABEL
        echo "backup $PGBR_LABEL: $D_SECS s ($(mb "$(calc "$db / $D_SECS" 0)") MB/s of the database); pgBackRest's size $PGBR_SIZE bytes," \
            "repository $PGBR_REPO_DELTA bytes (du of the backup: $(dusb "$(pgbr_repo_path "$c" "$run")/backup/bench/$PGBR_LABEL"))"
        echo "  CPU: ours $(secs_of $((D_SELF + D_PG))) s (pgbackrest $(secs_of "$D_SELF") s, PostgreSQL $(secs_of "$D_PG") s); machine $(secs_of "$D_MACHINE") s; pgbackrest peak RSS $PGBR_PEAK kB"
        result "phase=full contender=$c run=$run ok=1 db_bytes=$db seconds=$D_SECS mb_per_s=$(calc "$db / 1e6 / $D_SECS" 1)" \
            "stored_bytes=$PGBR_REPO_DELTA plain_bytes=$PGBR_PLAIN_DELTA ours_cpu_s=$(secs_of $((D_SELF + D_PG)))" \
            "tool_cpu_s=$(secs_of "$D_SELF") pg_cpu_s=$(secs_of "$D_PG") machine_cpu_s=$(secs_of "$D_MACHINE") peak_kb=$PGBR_PEAK label=$PGBR_LABEL"
        ;;
    basebackup)
        local dir="$WORK/basebackup-$run" log="$WORK/basebackup-$run.out" stored
        rm -rf "$dir"
        install -d -o postgres -g postgres -m 700 "$dir"
        prepare_step
        meter_start
        /usr/bin/time -f "%M" -o "$WORK/time.out" \
            runuser -u postgres -- "$BK_PGBIN/pg_basebackup" -h "$PG_SOCKET_DIR" -p "$PGPORT" -U postgres -D "$dir" \
            -Ft --compress=server-lz4 --wal-method=none --checkpoint=fast >"$log" 2>&1 ||
            { cat "$log"; die "pg_basebackup (run $run)"; }
        meter_stop
        [[ -s "$log" ]] && sed 's/^/  pg_basebackup: /' "$log"
        stored=$(dusb "$dir")
        echo "pg_basebackup: $D_SECS s ($(mb "$(calc "$db / $D_SECS" 0)") MB/s of the database); $stored bytes ($(find "$dir" -type f -printf '%f %s, '))"
        echo "  CPU: ours $(secs_of $((D_SELF + D_PG))) s (pg_basebackup $(secs_of "$D_SELF") s, PostgreSQL incl. the walsender's lz4 $(secs_of "$D_PG") s); machine $(secs_of "$D_MACHINE") s; peak RSS $(peak_kb "$WORK/time.out") kB"
        result "phase=full contender=basebackup run=$run ok=1 db_bytes=$db seconds=$D_SECS mb_per_s=$(calc "$db / 1e6 / $D_SECS" 1)" \
            "stored_bytes=$stored ours_cpu_s=$(secs_of $((D_SELF + D_PG))) tool_cpu_s=$(secs_of "$D_SELF") pg_cpu_s=$(secs_of "$D_PG")" \
            "machine_cpu_s=$(secs_of "$D_MACHINE") peak_kb=$(peak_kb "$WORK/time.out")"
        rm -rf "$dir"
        ;;
    esac
}

incr_step() { # CONTENDER RUN
    local c="$1" run="$2"
    section "incremental: $c, run $run"
    case "$c" in
    bk)
        bk_snapshot_step incr
        BKINCR_ID[$run]=$BK_ID
        local parent
        parent=$(psql_q "SELECT coalesce(parent_id, '') FROM bk_snapshot_history WHERE snapshot_id = '$BK_ID'")
        [[ "$parent" == "${BKFULL_ID[$run]}" ]] || echo "  WARNING: the incremental's parent is $parent, not this run's full ${BKFULL_ID[$run]}"
        echo "snapshot $BK_ID (parent $parent): $BK_FILES files, read $BK_READ bytes, sent $BK_SENT bytes," \
            "$(calc "$BK_SENT / $CH_BYTES" 3)x the changed bytes ($CH_BYTES); stored $BK_STORED bytes ($(calc "$BK_STORED / $CH_BYTES" 3)x)"
        echo "  returned after $BK_RETURNED_S s, its record in the repository after $BK_RECORD_S s, restorable after $D_SECS s"
        bk_cpu_report
        result "phase=incr contender=bk run=$run ok=1 seconds=$D_SECS returned_s=$BK_RETURNED_S record_s=$BK_RECORD_S changed_pages=$CH_PAGES changed_bytes=$CH_BYTES" \
            "transferred_bytes=$BK_SENT transferred_ratio=$(calc "$BK_SENT / $CH_BYTES" 3) stored_bytes=$BK_STORED" \
            "stored_ratio=$(calc "$BK_STORED / $CH_BYTES" 3) read_bytes=$BK_READ files=$BK_FILES" \
            "ours_cpu_s=$(secs_of $((D_PG + D_KAFKA + D_SHIPPER))) machine_cpu_s=$(secs_of "$D_MACHINE") snapshot=$BK_ID"
        ;;
    pgbr-p1 | pgbr-p2)
        pgbr_backup_step "$c" "$run" incr
        PGBR_INCR_LABEL[$c-$run]=$PGBR_LABEL
        echo "backup $PGBR_LABEL: $D_SECS s; copied $PGBR_PLAIN_DELTA bytes of files ($(calc "$PGBR_PLAIN_DELTA / $CH_BYTES" 3)x the changed bytes)," \
            "stored $PGBR_REPO_DELTA bytes ($(calc "$PGBR_REPO_DELTA / $CH_BYTES" 3)x the changed bytes $CH_BYTES)"
        echo "  CPU: ours $(secs_of $((D_SELF + D_PG))) s; machine $(secs_of "$D_MACHINE") s; peak RSS $PGBR_PEAK kB"
        result "phase=incr contender=$c run=$run ok=1 seconds=$D_SECS changed_pages=$CH_PAGES changed_bytes=$CH_BYTES" \
            "transferred_bytes=$PGBR_REPO_DELTA transferred_ratio=$(calc "$PGBR_REPO_DELTA / $CH_BYTES" 3) stored_bytes=$PGBR_REPO_DELTA" \
            "stored_ratio=$(calc "$PGBR_REPO_DELTA / $CH_BYTES" 3) plain_bytes=$PGBR_PLAIN_DELTA" \
            "ours_cpu_s=$(secs_of $((D_SELF + D_PG))) machine_cpu_s=$(secs_of "$D_MACHINE") peak_kb=$PGBR_PEAK label=$PGBR_LABEL"
        ;;
    esac
}

# SHA-256 of every file under base/ and global/ of a restored directory.
hash_dir() { # DIR OUT
    (cd "$1" && find base global -type f ! -name pg_internal.init -print0 | sort -z | xargs -0 sha256sum) >"$2"
}
# Names the relation of a base/<db>/<filenode>... or global/<filenode>... path.
rel_of() {
    local p="$1" f db
    if [[ "$p" =~ ^base/([0-9]+)/([0-9]+) ]]; then
        db=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]}
        [[ "$db" == "$DB_OID" ]] || { echo "(database $db)"; return; }
        psql_q "SELECT coalesce(pg_filenode_relation(0, $f)::regclass::text, '?')"
    elif [[ "$p" =~ ^global/([0-9]+) ]]; then
        psql_q "SELECT coalesce(pg_filenode_relation(1664, ${BASH_REMATCH[1]})::regclass::text, '?')"
    else
        echo "-"
    fi
}
compare_dirs() { # HASHES_A HASHES_B NAME_A NAME_B
    local a="$1" b="$2" line p
    gawk 'BEGIN { split("", diff); split("", onlya); split("", onlyb) }
         NR == FNR { h[$2] = $1; next }
         { if (!($2 in h)) onlyb[$2] = 1; else if (h[$2] != $1) diff[$2] = 1; else same++; seen[$2] = 1 }
         END { for (p in h) if (!(p in seen)) onlya[p] = 1
               printf "%d %d %d %d\n", same, length(diff), length(onlya), length(onlyb)
               for (p in diff) print "differs " p; for (p in onlya) print "only-a " p; for (p in onlyb) print "only-b " p }' "$a" "$b" >"$WORK/compare.out"
    read -r CMP_SAME CMP_DIFF CMP_ONLYA CMP_ONLYB <"$WORK/compare.out"
    echo "  files under base/ and global/, $3 against $4: $CMP_SAME identical, $CMP_DIFF differ, $CMP_ONLYA only in $3, $CMP_ONLYB only in $4"
    tail -n +2 "$WORK/compare.out" | sort -k2 | head -20 | while read -r what p; do
        echo "    $what $p ($(rel_of "$p"))"
    done
}

restore_step() { # CONTENDER STATE RUN
    local c="$1" state="$2" run="$3" dir="$WORK/restore-$1-$2" log="$WORK/restore-$1-$2-$3.out" db what jobs=""
    section "restore of the $state: $c, run $run"
    rm -rf "$dir"
    install -d -o postgres -g postgres -m 700 "$dir"
    if [[ "$state" == full ]]; then db=${DB_FULL[$run]}; else db=${DB_INCR[$run]}; fi
    sync
    [[ "$DROP_CACHES" == 1 ]] && echo 3 >/proc/sys/vm/drop_caches
    settle
    case "$c" in
    bk)
        local id
        if [[ "$state" == full ]]; then id=${BKFULL_ID[$run]}; else id=${BKINCR_ID[$run]}; fi
        jobs=${BK_JOBS:-default}
        what="bk restore --snapshot $id --jobs $jobs"
        meter_start
        # shellcheck disable=SC2086
        /usr/bin/time -f "%M" -o "$WORK/time.out" \
            "$BK" restore --config "$BK_CONF" --source "$SID" --pgdata "$dir" --snapshot "$id" ${BK_JOBS:+--jobs $BK_JOBS} >"$log" 2>&1 ||
            { cat "$log"; die "$what"; }
        meter_stop
        ;;
    pgbr-p1 | pgbr-p2)
        local label conf pmax="${c#pgbr-p}"
        if [[ "$state" == full ]]; then label=${PGBR_FULL_LABEL[$c-$run]}; else label=${PGBR_INCR_LABEL[$c-$run]}; fi
        conf=$(pgbr_conf_path "$c" "$run")
        jobs=$pmax
        what="pgbackrest restore --set=$label --process-max=$pmax"
        meter_start
        /usr/bin/time -f "%M" -o "$WORK/time.out" \
            runuser -u postgres -- pgbackrest --config="$conf" --stanza=bench --pg1-path="$dir" --set="$label" \
            --process-max="$pmax" restore >"$log" 2>&1 ||
            { cat "$log"; die "$what"; }
        meter_stop
        ;;
    esac
    local restored peak ok=1
    peak=$(peak_kb "$WORK/time.out")
    restored=$(dusb "$dir")
    echo "$what: $D_SECS s = $(mb "$(calc "$db / $D_SECS" 0)") MB/s of the database ($db bytes); restored directory $restored bytes"
    echo "  CPU: the restore $(secs_of "$D_SELF") s; machine $(secs_of "$D_MACHINE") s; peak RSS $peak kB"
    # Untimed checks.
    if [[ "$c" == bk ]]; then
        if as_pg "$BK_PGBIN/pg_verifybackup" --no-parse-wal "$dir" >"$WORK/verify.out" 2>&1; then
            echo "  pg_verifybackup --no-parse-wal: $(tail -1 "$WORK/verify.out")"
        else
            ok=0
            echo "  pg_verifybackup --no-parse-wal FAILED:"
            sed 's/^/    /' "$WORK/verify.out" | head -20
        fi
        hash_dir "$dir" "$WORK/hashes-bk-$state"
    elif [[ -d "$WORK/restore-bk-$state" ]]; then
        hash_dir "$dir" "$WORK/hashes-$c-$state"
        compare_dirs "$WORK/hashes-bk-$state" "$WORK/hashes-$c-$state" bk "$c"
        # Expected to differ: bk_snapshot_history (bk_snapshot() records
        # itself) with its TOAST table and indexes, and pg_control.
        local unexpected
        unexpected=$(tail -n +2 "$WORK/compare.out" | while read -r _ p; do
            r=$(rel_of "$p")
            [[ "$p" == global/pg_control || " $BKHIST_RELS " == *" $r "* ]] || echo "$p"
        done | wc -l)
        if ((unexpected > 0)); then
            echo "  WARNING: $unexpected files differ or are missing that should not (only bk_snapshot_history's and pg_control may)"
            ok=0
        fi
    fi
    result "phase=restore-$state contender=$c run=$run ok=$ok seconds=$D_SECS mb_per_s=$(calc "$db / 1e6 / $D_SECS" 1) db_bytes=$db" \
        "restored_bytes=$restored cpu_s=$(secs_of "$D_SELF") machine_cpu_s=$(secs_of "$D_MACHINE") peak_kb=$peak jobs=$jobs"
}

# ---------------------------------------------------------------- summary

summary() {
    section "summary (best run of each; every run listed in order)"
    gawk -v aim_full=1.3 -v aim_restore=1.5 -v aim_incr=1.2 '
        function best(ph, c, key,    i, b) { b = ""; for (i = 1; i <= n[ph, c]; i++) if (b == "" || v[ph, c, i, key] + 0 < b + 0) b = v[ph, c, i, key]; return b }
        function bestrow(ph, c, key,    i, bi, b) { b = ""; bi = 0; for (i = 1; i <= n[ph, c]; i++) if (b == "" || v[ph, c, i, key] + 0 < b + 0) { b = v[ph, c, i, key]; bi = i }; return bi }
        function runs(ph, c, key,    i, s) { s = ""; for (i = 1; i <= n[ph, c]; i++) s = s sprintf(" %.1f", v[ph, c, i, key]); return s }
        function verdict(r, aim, le) { return (le ? (r <= aim) : (r >= aim)) ? "met" : "NOT met" }
        { delete kv; for (i = 2; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
          ph = kv["phase"]; c = kv["contender"]; k = ++n[ph, c]
          for (x in kv) v[ph, c, k, x] = kv[x]
          if (!((ph, c) in seen)) { seen[ph, c] = 1; order[ph] = order[ph] " " c }
          if (kv["ok"] != 1) bad = bad " " ph "/" c "/run" kv["run"] }
        END {
          print "full backup (MB/s = database size / seconds):"
          printf "  %-22s %9s %8s  %-18s %11s %9s %9s\n", "contender", "seconds", "MB/s", "seconds of runs", "stored MB", "ours CPU", "mach CPU"
          m = split(order["full"], cs, " ")
          for (j = 1; j <= m; j++) { c = cs[j]; i = bestrow("full", c, "seconds")
            label = (c ~ /^bk/) ? c " (restorable)" : c
            printf "  %-22s %9.2f %8.1f  %-18s %11.1f %8.1fs %8.1fs\n", label, v["full", c, i, "seconds"], v["full", c, i, "mb_per_s"], runs("full", c, "seconds"),
                   v["full", c, i, "stored_bytes"] / 1e6, v["full", c, i, "ours_cpu_s"], v["full", c, i, "machine_cpu_s"]
            if (c ~ /^bk/) { i = bestrow("full", c, "returned_s")
              printf "  %-22s %9.2f %8.1f  %-18s\n", c " (call returned)", v["full", c, i, "returned_s"], v["full", c, i, "returned_mb_per_s"], runs("full", c, "returned_s") } }
          for (b = 1; b <= m; b++) { bk = cs[b]; if (bk !~ /^bk/) continue
            for (j = 1; j <= m; j++) { c = cs[j]; if (c ~ /^bk/) continue
              r = best("full", c, "seconds") / best("full", bk, "seconds"); r2 = best("full", c, "seconds") / best("full", bk, "returned_s")
              key = bk "_over_" c; gsub("-", "_", key); rat = rat sprintf(" full_%s=%.2f full_returned_%s=%.2f", key, r, key, r2)
              printf "  throughput %-10s / %-10s = %.2fx until restorable%s; %.2fx until bk_snapshot() returned\n", bk, c, r,
                     c ~ /^pgbr/ ? sprintf(" (aim >= %.1fx: %s)", aim_full, verdict(r, aim_full, 0)) : "", r2 } }

          print ""
          print "incremental (changed bytes = pages whose LSN moved since the bk full started x 8192):"
          printf "  %-12s %9s %-18s %14s %14s %9s %14s %9s\n", "contender", "seconds", "seconds of runs", "changed bytes", "transferred", "ratio", "stored", "ratio"
          m = split(order["incr"], cs, " ")
          for (j = 1; j <= m; j++) { c = cs[j]; for (i = 1; i <= n["incr", c]; i++) if (v["incr", c, i, "transferred_ratio"] + 0 > worst[c] + 0) worst[c] = v["incr", c, i, "transferred_ratio"]
            i = bestrow("incr", c, "seconds")
            printf "  %-12s %9.2f %-18s %14d %14d %8.3fx %14d %8.3fx\n", c, v["incr", c, i, "seconds"], runs("incr", c, "seconds"), v["incr", c, i, "changed_bytes"],
                   v["incr", c, i, "transferred_bytes"], v["incr", c, i, "transferred_ratio"], v["incr", c, i, "stored_bytes"], v["incr", c, i, "stored_ratio"] }
          if (n["incr", "bk"]) {
            printf "  bk transfers at most %.3fx the changed bytes over the runs (aim <= %.1fx: %s)\n", worst["bk"], aim_incr, verdict(worst["bk"], aim_incr, 1)
            rat = rat sprintf(" incr_bk_transferred_over_changed=%.3f", worst["bk"])
            for (j = 1; j <= m; j++) { c = cs[j]; if (c == "bk") continue
              printf "  %s transfers up to %.3fx the changed bytes; time bk / %s: %.2fx as fast\n", c, worst[c], c, best("incr", c, "seconds") / best("incr", "bk", "seconds")
              key = c; gsub("-", "_", key); rat = rat sprintf(" incr_%s_transferred_over_changed=%.3f incr_time_bk_over_%s=%.2f", key, worst[c], key, best("incr", c, "seconds") / best("incr", "bk", "seconds")) } }

          for (s = 1; s <= 2; s++) { ph = (s == 1) ? "restore-full" : "restore-incr"
            print ""
            print "restore of the " ((s == 1) ? "full" : "incremental (its chain)") " (MB/s = database size / seconds; not started):"
            printf "  %-12s %6s %9s %8s  %-18s %9s %9s %10s\n", "contender", "jobs", "seconds", "MB/s", "seconds of runs", "CPU", "mach CPU", "peak kB"
            m = split(order[ph], cs, " ")
            for (j = 1; j <= m; j++) { c = cs[j]; i = bestrow(ph, c, "seconds")
              printf "  %-12s %6s %9.2f %8.1f  %-18s %8.1fs %8.1fs %10d\n", c, v[ph, c, i, "jobs"], v[ph, c, i, "seconds"], v[ph, c, i, "mb_per_s"], runs(ph, c, "seconds"),
                     v[ph, c, i, "cpu_s"], v[ph, c, i, "machine_cpu_s"], v[ph, c, i, "peak_kb"] }
            if (n[ph, "bk"]) for (j = 1; j <= m; j++) { c = cs[j]; if (c == "bk") continue
              r = best(ph, c, "seconds") / best(ph, "bk", "seconds")
              printf "  throughput bk / %-10s = %.2fx (aim >= %.1fx: %s)\n", c, r, aim_restore, verdict(r, aim_restore, 0)
              key = ph "_bk_over_" c; gsub("-", "_", key); rat = rat sprintf(" %s=%.2f", key, r) } }
          print ""
          print (bad == "") ? "all checks passed (ok=1 everywhere)" : "CHECKS FAILED in:" bad
          print ""
          print "RESULT phase=ratios ok=" (bad == "" ? 1 : 0) rat }' "$ROWS"
    echo "(ours CPU: bk = PostgreSQL + broker + shipper until restorable; pgbr/basebackup = the tool + PostgreSQL;"
    echo " mach CPU = the whole machine from /proc/stat, other people's work included; pgBackRest ran with"
    echo " archive-check=n and no WAL of its own, pg_basebackup with --wal-method=none (the server waits for the"
    echo " archiver, here bk, to have the last segment); bk waits for the WAL in its repository to call a snapshot restorable)"
}

# ---------------------------------------------------------------- main

section "machine"
echo "date:       $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "commit:     $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- common extension shipper 2>/dev/null || echo ' (common/, extension/ or shipper/ modified)')"
echo "cpu:        $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; $(free -g | awk '/^Mem:/ { print $2 " GB RAM" }')"
# shellcheck disable=SC1091
echo "os:         $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
if ! command -v pgbackrest >/dev/null || ! command -v jq >/dev/null; then
    echo "installing pgbackrest and jq (apt-get)"
    apt-get install -y -q pgbackrest jq >/dev/null
fi
echo "postgresql: $(/usr/lib/postgresql/15/bin/postgres --version)"
echo "pgbackrest: $(pgbackrest version)$([[ "$(pgbackrest version)" == "pgBackRest 2.45" ]] || echo ' (WARNING: the issue asks for 2.45)')"
echo "librdkafka: $(dpkg-query -W -f '${Version}' librdkafka1 2>/dev/null || echo '?'); openssl $(openssl version | cut -d' ' -f2); lz4 $(lz4 --version 2>&1 | grep -o 'v[0-9.]*' | head -1)"
echo "disk:       $(df -h /tmp | awk 'NR == 2 { print $1 ", " $4 " free" }')"
echo "load:       $(cut -d' ' -f1-3 /proc/loadavg)"
echo "settings:   SNAP_SCALE=$SCALE SNAP_RANDOM_MB=$RANDOM_MB SNAP_RUNS=$RUNS SNAP_CHANGE_PCT=$CHANGE_PCT SNAP_CONTENDERS='${CONTENDERS[*]}' SNAP_BK_JOBS=${BK_JOBS:-default} SNAP_DROP_CACHES=$DROP_CACHES SNAP_WARMUP=$WARMUP"

section "build and install"
make -s
make -s install >/dev/null
ls -l "$BK" "$SHIPPER" /usr/lib/postgresql/15/lib/bk.so | awk '{ print "  " $6 " " $7 " " $8 " " $9 }'

section "services"
"$SERVICES" stop >/dev/null 2>&1 || true # a fresh state directory
"$SERVICES" start pg kafka
export_env
echo "PostgreSQL $PGPORT (data $BK_PGDATA), Kafka $BK_KAFKA_BROKERS"

"$BK" keygen --out "$WORK/bk.key" >/dev/null
chmod 644 "$WORK/bk.key.pub"
# Root's: bk restore runs as root, the restore_command it writes as postgres.
chgrp postgres "$WORK/bk.key" && chmod 0640 "$WORK/bk.key"
BK_REPO="$WORK/bk-repo"
BK_CONF="$WORK/bk.conf"
BK_PREFIX="bkbench-snap-$$"
cat >"$BK_CONF" <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $BK_PREFIX
repository = $BK_REPO
key_file = $WORK/bk.key
shipper_id = bench-snap-$$
group_id = bench-snap-$$
CONF
chmod 644 "$BK_CONF"
"$BK" init --config "$BK_CONF" >"$WORK/bk-init.out" 2>&1 || { cat "$WORK/bk-init.out"; die "bk init"; }
start_shipper
pg_conf "shared_preload_libraries = 'bk'" \
    "archive_mode = on" \
    "archive_library = 'bk'" \
    "archive_timeout = 0" \
    "bk.kafka_brokers = '$BK_KAFKA_BROKERS'" \
    "bk.topic_prefix = '$BK_PREFIX'" \
    "bk.key_file = '$WORK/bk.key.pub'" \
    "max_wal_size = '8GB'" \
    "checkpoint_timeout = '30min'" \
    "autovacuum = off"
"$SERVICES" restart pg >/dev/null
SID=$(psql_q "SELECT system_identifier FROM pg_control_system()")
DB_OID=$(psql_q "SELECT oid FROM pg_database WHERE datname = current_database()")
psql_q "CREATE EXTENSION bk; CREATE EXTENSION pgcrypto; CREATE EXTENSION pageinspect"
# bk_snapshot() records every snapshot in bk_snapshot_history: the files of
# it, its indexes and its TOAST table are the ones allowed to differ between
# bk's and pgBackRest's restore of the same state.
BKHIST_RELS=$(psql_q "SELECT string_agg(r::regclass::text, ' ') FROM (
    SELECT 'bk_snapshot_history'::regclass::oid AS r
    UNION SELECT indexrelid FROM pg_index WHERE indrelid = 'bk_snapshot_history'::regclass
    UNION SELECT reltoastrelid FROM pg_class WHERE oid = 'bk_snapshot_history'::regclass AND reltoastrelid <> 0
    UNION SELECT i.indexrelid FROM pg_index i JOIN pg_class c ON i.indrelid = c.reltoastrelid
          WHERE c.oid = 'bk_snapshot_history'::regclass) s")
psql_q "SELECT string_agg(name || ' = ' || quote_literal(setting), ', ' ORDER BY name) FROM pg_settings
        WHERE name IN ('archive_mode', 'archive_library', 'autovacuum', 'data_checksums', 'max_wal_size',
                       'checkpoint_timeout', 'shared_buffers', 'fsync', 'wal_level', 'full_page_writes')"
echo "source $SID; bk repository $BK_REPO (topics $BK_PREFIX.*), shipper pid $SHIPPER_PID, broker pid $KAFKA_PID"
install -d -o postgres -g postgres -m 750 "$WORK/pgbr" "$WORK/pgbr/log" "$WORK/pgbr/lock"
PGBR_PASS="$(openssl rand -base64 48 | tr -d '\n/+=')"
echo "pgBackRest: repo1-cipher-type=aes-256-cbc compress-type=lz4 compress-level=1 start-fast=y archive-check=n"
echo "  (PostgreSQL archives through bk, so pgBackRest gets no WAL: archive-check=n lets its backup finish without"
echo "  waiting for WAL in its own repository; a fresh repository per run)"
echo "pg_basebackup: -Ft --compress=server-lz4 (level default) --wal-method=none --checkpoint=fast, manifest and sync on"
echo "bk restore: --jobs ${BK_JOBS:-default (2)}; bk.snapshot_range_size: ${RANGE_SIZE:-the default}"

make_database

if [[ "$WARMUP" == 1 && " ${CONTENDERS[*]} " == *" bk"* ]]; then
    section "broker warm-up (not measured): one bk full snapshot"
    bk_snapshot_step full
    echo "snapshot $BK_ID: bk_snapshot() returned after $BK_RETURNED_S s, restorable after $D_SECS s;" \
        "broker CPU $(secs_of "$D_KAFKA") s"
fi

declare -A BKFULL_ID BKFULL_START BKINCR_ID PGBR_FULL_LABEL PGBR_INCR_LABEL DB_FULL DB_INCR
for ((run = 1; run <= RUNS; run++)); do
    # Backups in a rotated order (run 2 starts with the second contender...);
    # restores always start with bk, whose files the others are compared to.
    shift_by=$(((run - 1) % ${#CONTENDERS[@]}))
    ORDER=("${CONTENDERS[@]:shift_by}" "${CONTENDERS[@]:0:shift_by}")
    section "run $run of $RUNS: backups in the order ${ORDER[*]}"
    DB_FULL[$run]=$(db_bytes)
    for c in "${ORDER[@]}"; do
        full_step "$c" "$run"
    done
    if [[ -n "${BKFULL_START[$run]:-}" ]]; then
        change_pages "$run" "${BKFULL_START[$run]}"
    else
        change_pages "$run" "$(psql_q "SELECT pg_current_wal_lsn()")"
    fi
    DB_INCR[$run]=$(db_bytes)
    for c in "${ORDER[@]}"; do
        full_only "$c" || incr_step "$c" "$run"
    done
    for state in full incr; do
        for c in "${CONTENDERS[@]}"; do
            full_only "$c" || restore_step "$c" "$state" "$run"
        done
        rm -rf "$WORK"/restore-*-"$state" "$WORK"/hashes-*-"$state"
    done
    rm -rf "$WORK"/pgbr/repo-*-"$run"
done

section "repositories at the end"
echo "bk repository: $(dusb "$BK_REPO") bytes (snapshots $(dusb "$BK_REPO/$SID/snapshot"), WAL $(dusb "$BK_REPO/$SID/wal"))"
"$BK" list --config "$BK_CONF" --source "$SID" | sed 's/^/  /'
echo "pg_stat_archiver: $(psql_q "SELECT archived_count || ' archived, ' || failed_count || ' failed attempts' FROM pg_stat_archiver")"

summary

section "done"
echo "finished $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
