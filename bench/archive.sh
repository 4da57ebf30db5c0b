#!/usr/bin/env bash
# WAL archiving throughput and its cost to the database: PostgreSQL 15 with
# archive_library = 'bk' against pgBackRest archive-push (lz4,
# aes-256-cbc; synchronous and asynchronous) and contrib basic_archive, all
# on the same backlog of real WAL segments in the same run; then pgbench TPS
# with archive_library = 'bk' against archive_command = '/bin/true'.
#
# Usage: bench/archive.sh   (as root: PostgreSQL and pgBackRest run as the
#                            postgres OS user)
#
# What it does, end to end:
#   1. backlog: a private PostgreSQL (scripts/services, own ports and state
#      directory) with archive_mode = on and no archiving configured, so every
#      completed segment stays .ready.  pgbench -i, a table of random bytes,
#      a checkpoint, pgbench -T with updates of that table and a checkpoint
#      halfway (so the WAL carries full-page images, as in normal operation);
#      stopped cleanly and copied as the template.  Counts the .ready segments (N) and their lz4 -1 ratio.
#   2. throughput: for each contender and run, the template is restored,
#      PostgreSQL started with archiving still unconfigured, the contender set
#      up (pgbackrest stanza-create, bk init + bk-shipper), then archiving is
#      configured and the configuration reloaded: the clock starts at the
#      reload and stops when all N segments are .done (checked against
#      pg_stat_archiver).  CPU: the archiver's utime+stime+cutime+cstime,
#      and the whole machine's from /proc/stat.  Memory: VmHWM.
#   3. source-side cost of bk without PostgreSQL: tests/integration/
#      bk_test_produce over the same N segments.
#   4. TPS: pgbench -T with archive_command = '/bin/true', with
#      archive_library = 'bk' and the shipper running, and with bk while the
#      shipper is stopped (it catches up after each run), interleaved.
#   5. first: one segment's latency (pg_switch_wal() to .done) with
#      archiving configured when the server starts, 3 s after the start.
#   codec (before 2.): the 2-core codec limit on this backlog: bench/
#      frame_bench encodes every segment (lz4, AES-256-GCM, SHA-256, CRC-32C,
#      in memory, nothing else) as two processes at once, one pinned to each
#      core, each taking every other segment; the limit in segments/s is N
#      divided by the slower half's encoding time.  The archiving summary
#      gives bk's rate against it.
# Everything printed also goes to bench/results/archive-<UTC date-time>.txt.
#
# Environment (defaults in brackets):
#   ARCHIVE_SCALE            pgbench -i scale of the backlog cluster [50]
#   ARCHIVE_RANDOM_ROWS      rows of 1 KiB random bytes in bench_random [300000]
#   ARCHIVE_BACKLOG_SECONDS  pgbench -T while the backlog is made [60]
#   ARCHIVE_UPDATE_ROUNDS    updates of 1% of bench_random during it [6]
#   ARCHIVE_MIN_SEGMENTS     at least this many .ready segments [64]
#   ARCHIVE_RUNS             runs per contender, interleaved [2]
#   ARCHIVE_CONTENDERS       [basic pgbr-sync pgbr-async2 pgbr-async1 bk]
#   ARCHIVE_EXTRA            contenders run once after those rounds
#                            [bk-noship bk-batch1 bk-noflush bk-chunk4m]
#                            (bk-batchN: bk.archive_batch = N; 1: one segment
#                            per archive call; bk-noship: the
#                            shipper starts only once the archiver is done;
#                            bk-noflush: bk with the topics' per-message flush
#                            turned off, an experiment; bk-jobs1,
#                            bk-noship-jobs1: bk.archive_jobs = 1, one
#                            encoding thread; bk-chunk4m:
#                            bk.chunk_size = 4MB; bk-inflightN: N produce
#                            requests in flight instead of one;
#                            bk-lingerN: linger.ms=N instead of 5;
#                            bk-msgsN: batch.num.messages=N; bk-msgsN-chunkM:
#                            the same with bk.chunk_size = M MB;
#                            bk-prodN: bk.archive_producers = N)
#   ARCHIVE_PROFILE          1: one more bk run under perf record -a [1]
#   ARCHIVE_PRODUCE_RUNS     bk_test_produce runs [2]
#   ARCHIVE_TPS_SECONDS      pgbench -T per TPS run [60]
#   ARCHIVE_TPS_ROUNDS       rounds of (true, bk, bk-noship) [5]
#   ARCHIVE_TPS_MODES        [true bk bk-noship]
#   ARCHIVE_FIRST_ROUNDS     server starts per contender in phase "first" [3]
#   ARCHIVE_FIRST_CONTENDERS [bk pgbr-sync pgbr-async2] (and bk-msgsN[-chunkM])
#   ARCHIVE_PHASES           [backlog codec archive produce tps first]; without backlog,
#                            ARCHIVE_TEMPLATE=DIR reuses a kept template
#   ARCHIVE_KEEP             1: keep the work directory (template, logs) [0]
#   BENCH_SETTLE             seconds of rest before each timed run (bench/lib.sh,
#                            settle) [5]
set -euo pipefail
shopt -s nullglob

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

SCALE=${ARCHIVE_SCALE:-50}
RANDOM_ROWS=${ARCHIVE_RANDOM_ROWS:-300000}
BACKLOG_SECONDS=${ARCHIVE_BACKLOG_SECONDS:-60}
UPDATE_ROUNDS=${ARCHIVE_UPDATE_ROUNDS:-6}
MIN_SEGMENTS=${ARCHIVE_MIN_SEGMENTS:-64}
RUNS=${ARCHIVE_RUNS:-2}
read -r -a CONTENDERS <<<"${ARCHIVE_CONTENDERS:-basic pgbr-sync pgbr-async2 pgbr-async1 bk}"
read -r -a EXTRA <<<"${ARCHIVE_EXTRA-bk-noship bk-batch1 bk-noflush bk-chunk4m}"
PROFILE=${ARCHIVE_PROFILE:-1}
PRODUCE_RUNS=${ARCHIVE_PRODUCE_RUNS:-2}
TPS_SECONDS=${ARCHIVE_TPS_SECONDS:-60}
TPS_ROUNDS=${ARCHIVE_TPS_ROUNDS:-5}
read -r -a TPS_MODES <<<"${ARCHIVE_TPS_MODES:-true bk bk-noship}"
PHASES=" ${ARCHIVE_PHASES:-backlog codec archive produce tps first} "
FIRST_ROUNDS=${ARCHIVE_FIRST_ROUNDS:-3}
read -r -a FIRST_CONTENDERS <<<"${ARCHIVE_FIRST_CONTENDERS:-bk pgbr-sync pgbr-async2}"
RUN_TIMEOUT=1200 # seconds one archiving run may take
SEG_SIZE=16777216

# A PostgreSQL and a Kafka of our own, on ports nobody else uses.
export BK_SERVICES_DIR=/tmp/bk-bench-archive
export BK_PG_PORT=58432
export BK_MYSQL_PORT=58306
export BK_KAFKA_PORT=58092
export BK_KAFKA_CONTROLLER_PORT=58093
SERVICES="$REPO_ROOT/scripts/services"
BK=/usr/local/bin/bk
SHIPPER=/usr/local/bin/bk-shipper
PRODUCE="$REPO_ROOT/tests/integration/bk_test_produce"

. "$REPO_ROOT/bench/lib.sh"
bench_output archive

WORK="$(mktemp -d /tmp/bk-archive-bench.XXXXXX)"
chmod 755 "$WORK"
TEMPLATE="${ARCHIVE_TEMPLATE:-$WORK/template}"
ROWS="$WORK/results.tsv" # one line per measured run, for the summary
SHIPPER_PID=""
PERF_PID=""
SAMPLER_PID=""

bench_nap_init "$WORK"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    echo
    echo "== cleaning up"
    [[ -n "$SAMPLER_PID" ]] && { kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null; }
    [[ -n "$PERF_PID" ]] && { kill -INT "$PERF_PID" 2>/dev/null; wait "$PERF_PID" 2>/dev/null; }
    stop_shipper
    # pgBackRest's async process detaches from PostgreSQL; end any left over
    # from our configuration files, by pid.
    local pid
    for pid in $(pgrep -f "pgbackrest --config=$WORK/" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    bench_finish "${ARCHIVE_KEEP:-0}"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- services

export_env() {
    eval "$("$SERVICES" env pg kafka)"
    PG_SOCKET_DIR="$BK_SERVICES_DIR/pg"
    KAFKA_PID_FILE="$BK_SERVICES_DIR/kafka/kafka.pid"
}
kafka_pid() { read -r KAFKA_PID <"$KAFKA_PID_FILE"; }

BASE_CONF=(
    "max_wal_size = '4GB'"
    "wal_keep_size = '16GB'"
    "checkpoint_timeout = '30min'"
    "archive_mode = on"
    "archive_timeout = 0"
)
ARCHIVING_OFF=("archive_library = ''" "archive_command = ''")

restore_template() {
    "$SERVICES" stop pg >/dev/null 2>&1 || true
    rm -rf "$BK_PGDATA"
    cp -a "$TEMPLATE" "$BK_PGDATA"
    sync
}
archiver_pid() {
    psql_q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'archiver'"
}
source_id() { psql_q "SELECT system_identifier FROM pg_control_system()"; }

# ---------------------------------------------------------------- bk

bk_setup_prefix() { # TAG -> BK_CONF, BK_REPO
    local tag="$1"
    BK_PREFIX="bkbench-$tag-$$"
    BK_REPO="$WORK/bk-repo-$tag"
    BK_CONF="$WORK/bk-$tag.conf"
    SHIPPER_LOG="$WORK/shipper-$BK_PREFIX.log"
    rm -rf "$BK_REPO"
    cat >"$BK_CONF" <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $BK_PREFIX
repository = $BK_REPO
key_file = $WORK/bk.key
shipper_id = bench-$tag-$$
group_id = bench-$tag-$$
CONF
    chmod 644 "$BK_CONF"
    "$BK" init --config "$BK_CONF" >"$WORK/bk-init-$tag.out" 2>&1 ||
        { cat "$WORK/bk-init-$tag.out"; return 1; }
}
# REPO_COUNT: WAL segments in the bk repository of source $1.
repo_count() {
    local -a f=("$BK_REPO/$1/wal/"[0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F])
    REPO_COUNT=${#f[@]}
}
bk_static_conf() { # -> STATIC: the settings of a server archiving with bk, but brokers
    STATIC=("${BASE_CONF[@]}"
        "shared_preload_libraries = 'bk'"
        "bk.topic_prefix = '$BK_PREFIX'"
        "bk.key_file = '$WORK/bk.key.pub'")
}
bk_pg_conf() { # extra lines...
    bk_static_conf
    pg_conf "${STATIC[@]}" "bk.kafka_brokers = '$BK_KAFKA_BROKERS'" "$@"
}

# The settings of a bk-msgsN[-chunkM] contender (none for any other name):
# batch.num.messages=N, and bk.chunk_size = M MB.
BK_MSGS_CONF=()
bk_msgs_conf() { # NAME -> BK_MSGS_CONF
    BK_MSGS_CONF=()
    [[ "$1" == bk-msgs* ]] || return 0
    local msgs=${1#bk-msgs}
    BK_MSGS_CONF+=("bk.kafka_properties = 'batch.num.messages=${msgs%%-*}'")
    [[ "$1" == *-chunk* ]] && BK_MSGS_CONF+=("bk.chunk_size = '${1##*-chunk}MB'")
    return 0
}

# ---------------------------------------------------------------- pgBackRest

PGBR_PASS=""
pgbr_conf() { # TAG ASYNC(y|n) PROCESS_MAX [REPO] -> PGBR_CONF
    local tag="$1" async="$2" pmax="$3" repo="${4:-$WORK/pgbr/repo-$1}"
    PGBR_CONF="$WORK/pgbr/$tag.conf"
    PGBR_REPO="$repo"
    rm -rf "$repo" "$WORK/pgbr/spool-$tag"
    install -d -o postgres -g postgres -m 750 "$repo" "$WORK/pgbr/spool-$tag"
    pgbr_write_conf "$PGBR_CONF" "$repo" "$pmax" \
        "archive-async=$async" "spool-path=$WORK/pgbr/spool-$tag"
}
pgbr() { as_pg pgbackrest --config="$PGBR_CONF" --stanza=bench "$@"; }

# Samples every pgbackrest process 4 times a second: pid, role (its command),
# VmHWM and CPU ticks (utime+stime of the process itself).  pgBackRest's sync pushes live for a fraction of a
# second and its async process detaches from the archiver, so /proc of the
# archiver does not see their memory.
pgbr_sampler() {
    local out="$1" pid role arg
    local -a args
    while :; do
        for pid in $(pgrep -x pgbackrest); do
            mapfile -d "" args 2>/dev/null <"/proc/$pid/cmdline" || continue
            role=""
            for arg in "${args[@]}"; do
                [[ "$arg" == archive-push* ]] && role="$arg"
            done
            [[ -n "$role" ]] || continue
            proc_vm "$pid" VmHWM
            proc_own_ticks "$pid"
            [[ -n "$KB" && -n "$OWN" ]] && echo "$pid $role $KB $OWN"
        done >>"$out"
        nap 0.25
    done
}

# ---------------------------------------------------------------- phase 1

make_backlog() {
    section "backlog: a private PostgreSQL with archive_mode = on and no archiving"
    pg_conf "${BASE_CONF[@]}" "${ARCHIVING_OFF[@]}"
    "$SERVICES" restart pg
    psql_q "SELECT string_agg(name || ' = ' || quote_literal(setting), ', ' ORDER BY name) FROM pg_settings
            WHERE name IN ('archive_mode', 'archive_command', 'archive_library', 'data_checksums', 'max_wal_size',
                           'wal_keep_size', 'checkpoint_timeout', 'shared_buffers', 'fsync', 'wal_level')"

    echo "pgbench -i -s $SCALE"
    local t0
    t0=$(now)
    pgbench -i -s "$SCALE" -q 2>&1 | tail -1
    echo "  $(calc "$(now) - $t0" 1) s"
    echo "bench_random: $RANDOM_ROWS rows of gen_random_bytes(1024)"
    t0=$(now)
    psql_q "CREATE EXTENSION IF NOT EXISTS pgcrypto;
            CREATE TABLE bench_random (id int PRIMARY KEY, payload bytea);
            INSERT INTO bench_random SELECT g, gen_random_bytes(1024) FROM generate_series(1, $RANDOM_ROWS) g"
    psql_q "VACUUM ANALYZE bench_random"
    # A server in normal operation checkpoints every few minutes, and the
    # first change of a page after a checkpoint writes the whole page into
    # the WAL: checkpoint before the pgbench run and halfway through it.
    echo "CHECKPOINT"
    psql_q "CHECKPOINT"
    echo "  $(calc "$(now) - $t0" 1) s, $(psql_q "SELECT pg_size_pretty(pg_total_relation_size('bench_random'))")"

    local attempt=0 ready
    while :; do
        attempt=$((attempt + 1))
        echo "pgbench -T $BACKLOG_SECONDS -c 2 -j 2 -n, with $UPDATE_ROUNDS updates of 1% of bench_random (round $attempt)"
        pgbench -T "$BACKLOG_SECONDS" -c 2 -j 2 -n >"$WORK/backlog-pgbench.out" 2>&1 &
        local pgbench_pid=$! k
        for ((k = 1; k <= UPDATE_ROUNDS; k++)); do
            sleep "$(calc "$BACKLOG_SECONDS / ($UPDATE_ROUNDS + 1)" 2)"
            psql_q "UPDATE bench_random SET payload = gen_random_bytes(1024) WHERE id % 100 = $((attempt * 10 + k))"
            if ((k == (UPDATE_ROUNDS + 1) / 2)); then
                echo "  CHECKPOINT halfway"
                psql_q "CHECKPOINT"
            fi
        done
        wait "$pgbench_pid"
        grep -E '^(tps|number of transactions actually processed)' "$WORK/backlog-pgbench.out" || true
        psql_q "SELECT pg_switch_wal()" >/dev/null
        local -a readyf=("$BK_PGDATA"/pg_wal/archive_status/*.ready)
        ready=${#readyf[@]}
        echo "  .ready segments so far: $ready"
        ((ready >= MIN_SEGMENTS)) && break
        ((attempt < 5)) || { echo "fewer than $MIN_SEGMENTS segments after $attempt rounds" >&2; exit 1; }
    done
    psql_q "SELECT 'pg_stat_archiver: archived ' || archived_count || ', failed ' || failed_count FROM pg_stat_archiver"
    "$SERVICES" stop pg
    rm -rf "$TEMPLATE"
    cp -a "$BK_PGDATA" "$TEMPLATE"
    echo "template: $TEMPLATE ($(du -sh "$TEMPLATE" | cut -f1), pg_wal $(du -sh "$TEMPLATE/pg_wal" | cut -f1)), owner $(stat -c %U "$TEMPLATE")"
}

describe_backlog() {
    section "the backlog"
    local f name
    BACKLOG=()
    for f in "$TEMPLATE"/pg_wal/archive_status/*.ready; do
        name="${f##*/}"
        BACKLOG+=("${name%.ready}")
    done
    N=${#BACKLOG[@]}
    ((N > 0)) || { echo "no .ready files in the template" >&2; exit 1; }
    BYTES=0
    local other=0 size
    for name in "${BACKLOG[@]}"; do
        size=$(stat -c %s "$TEMPLATE/pg_wal/$name")
        BYTES=$((BYTES + size))
        [[ "$size" == "$SEG_SIZE" && "$name" =~ ^[0-9A-F]{24}$ ]] || other=$((other + 1))
    done
    MIDDLE="${BACKLOG[$((N / 2))]}"
    echo "N = $N .ready files (${BACKLOG[0]} .. ${BACKLOG[$((N - 1))]}), $BYTES bytes ($(calc "$BYTES / 1e6" 1) MB); not 16 MiB segments: $other"
    echo "lz4 -1 per segment (compressed / plaintext):"
    local total=0 c
    : >"$WORK/lz4.tsv"
    for name in "${BACKLOG[@]}"; do
        c=$(lz4 -1 -c "$TEMPLATE/pg_wal/$name" | wc -c)
        total=$((total + c))
        echo "$name $c" >>"$WORK/lz4.tsv"
    done
    LZ4_RATIO=$(calc "$total / $BYTES" 4)
    sort -k2 -n "$WORK/lz4.tsv" | awk -v seg="$SEG_SIZE" '
        { r[NR] = $2 / seg }
        END { printf "  min %.3f  p10 %.3f  median %.3f  p90 %.3f  max %.3f\n",
              r[1], r[int(NR * 0.1) + 1], r[int(NR / 2) + 1], r[int(NR * 0.9) + 1], r[NR] }'
    echo "  all N segments: $total / $BYTES = $LZ4_RATIO ($(calc "$BYTES / $total" 2):1)"
    echo "record mix of $MIDDLE (pg_waldump --stats, top lines):"
    "$BK_PGBIN/pg_waldump" --stats "$TEMPLATE/pg_wal/$MIDDLE" 2>/dev/null |
        awk 'NR <= 3 || ($2 ~ /^[0-9]+$/ && $2 != "0") || /^Total/' || true
    echo "BACKLOG n=$N bytes=$BYTES lz4_ratio=$LZ4_RATIO"
}

# ---------------------------------------------------------------- phase 2

idle_baseline() {
    section "idle baseline (PostgreSQL and Kafka idle; whatever else runs on the machine)"
    restore_template
    pg_conf "${BASE_CONF[@]}" "${ARCHIVING_OFF[@]}"
    "$SERVICES" start pg >/dev/null
    nap 3
    machine_ticks
    local m0=$MACHINE s0=$STEAL t0
    t0=$(now)
    nap 10
    machine_ticks
    IDLE_MS_PER_S=$(calc "1000 * ($MACHINE - $m0) / $HZ / ($(now) - $t0)" 1)
    echo "machine CPU while idle: $IDLE_MS_PER_S ms per second (steal $((STEAL - s0)) ticks in 10 s)"
    "$SERVICES" stop pg >/dev/null
}

# done_count: .done files in the server's archive_status (fork-free).
done_count() {
    local -a f=("$BK_PGDATA"/pg_wal/archive_status/*.done)
    DONE=${#f[@]}
}

# run_contender NAME RUN: one measured archiving run of the backlog.
run_contender() {
    local name="$1" run="$2" tag="$1-$2" dest="" off=() on=() pid0 ticks0=0
    section "$name, run $run"
    restore_template
    # The server starts with the contender's archive library loaded but not
    # configured (its check_configured callback says no, so the archiver
    # waits and keeps every .ready file); the reload that completes the
    # configuration wakes the archiver, and starts the clock.  (Changing
    # archive_library itself by a reload would restart the archiver, which
    # the postmaster does only at its next wake-up, up to a minute later.)
    STATIC=("${BASE_CONF[@]}")
    case "$name" in
    basic)
        dest="$WORK/basic-$tag"
        install -d -o postgres -g postgres -m 700 "$dest"
        off=("archive_library = 'basic_archive'" "basic_archive.archive_directory = ''")
        on=("archive_library = 'basic_archive'" "basic_archive.archive_directory = '$dest'")
        ;;
    pgbr-sync | pgbr-async1 | pgbr-async2)
        local async=n pmax=1
        [[ "$name" == pgbr-async* ]] && async=y pmax="${name#pgbr-async}"
        pgbr_conf "$tag" "$async" "$pmax"
        off=("${ARCHIVING_OFF[@]}")
        on=("archive_library = ''" "archive_command = 'pgbackrest --config=$PGBR_CONF --stanza=bench archive-push %p'")
        ;;
    bk | bk-profile | bk-noflush | bk-chunk4m | bk-noship | bk-batch* | bk-jobs1 | bk-noship-jobs1 | bk-inflight* | bk-linger* | bk-msgs* | bk-prod*)
        bk_setup_prefix "$tag"
        if [[ "$name" == bk-noflush ]]; then
            # An experiment, not a configuration to use: the broker
            # acknowledges from its page cache instead of fsyncing every
            # message, as a replicated cluster (which bk init does not make
            # flush) would; on one node this is not durable.
            local topic
            for topic in "$BK_PREFIX.wal" "$BK_PREFIX.audit"; do
                kafka_config_alter "$topic" flush.messages=9223372036854775807
            done
        fi
        bk_static_conf
        [[ "$name" == bk-chunk4m ]] && STATIC+=("bk.chunk_size = '4MB'")
        [[ "$name" == bk-batch* ]] && STATIC+=("bk.archive_batch = ${name#bk-batch}")
        [[ "$name" == bk-prod* ]] && STATIC+=("bk.archive_producers = ${name#bk-prod}")
        [[ "$name" == *-jobs1 ]] && STATIC+=("bk.archive_jobs = 1")
        [[ "$name" == bk-inflight* ]] &&
            STATIC+=("bk.kafka_properties = 'max.in.flight.requests.per.connection=${name#bk-inflight}'")
        [[ "$name" == bk-linger* ]] &&
            STATIC+=("bk.kafka_properties = 'linger.ms=${name#bk-linger}'")
        bk_msgs_conf "$name"
        STATIC+=("${BK_MSGS_CONF[@]}")
        off=("archive_library = 'bk'" "bk.kafka_brokers = ''")
        on=("archive_library = 'bk'" "bk.kafka_brokers = '$BK_KAFKA_BROKERS'")
        if [[ "$name" == bk-profile ]]; then
            on+=("log_min_messages = debug1" "log_line_prefix = '%m [%p] '")
        fi
        ;;
    *) echo "unknown contender $name" >&2; exit 2 ;;
    esac
    pg_conf "${STATIC[@]}" "${off[@]}"
    "$SERVICES" start pg >/dev/null
    local sid
    sid=$(source_id)
    case "$name" in
    pgbr-*)
        pgbr stanza-create >"$WORK/pgbr-stanza-$tag.out" 2>&1 ||
            { cat "$WORK/pgbr-stanza-$tag.out"; exit 1; }
        echo "stanza-create: ok ($(pgbackrest version))"
        ;;
    bk-noship*) ;; # the shipper starts once the archiver is done
    bk*)
        start_shipper
        nap 3 # let the shipper join its group before the clock starts
        ;;
    esac
    settle # the template copy and the last run's removals (bench/lib.sh)
    local pre
    pre=$(psql_q "SELECT archived_count || ' ' || failed_count FROM pg_stat_archiver")
    [[ "$pre" == "0 0" ]] || echo "warning: pg_stat_archiver before the run: $pre"
    pid0=$(archiver_pid)
    proc_ticks "$pid0"
    ticks0=${TICKS:-0}

    # The clock starts at the reload that configures archiving.
    pg_conf "${STATIC[@]}" "${on[@]}"
    local samples="$WORK/pgbr-samples-$tag"
    : >"$samples"
    if [[ "$name" == pgbr-* ]]; then
        pgbr_sampler "$samples" &
        SAMPLER_PID=$!
    fi
    local kp=0 kt0=0 krss0=0 st0=0
    if [[ "$name" == bk* ]]; then
        kafka_pid
        kp=$KAFKA_PID
        proc_ticks "$kp"
        kt0=$TICKS
        proc_vm "$kp" VmRSS
        krss0=$KB
        if [[ -n "$SHIPPER_PID" ]]; then proc_ticks "$SHIPPER_PID"; st0=$TICKS; fi
    fi
    if [[ "$name" == bk-profile ]]; then
        perf record -e cpu-clock -F 999 -a -g -o "$WORK/perf-$tag.data" >"$WORK/perf-$tag.out" 2>&1 &
        PERF_PID=$!
        nap 1
    fi
    pg_tree_ticks
    local pg0=$PGTREE
    machine_ticks
    local m0=$MACHINE steal0=$STEAL
    self_ticks
    local self0=$SELF
    local t0 t1 t2=""
    t0=$EPOCHREALTIME
    psql_q "SELECT pg_reload_conf()" >/dev/null
    local deadline
    deadline=$(calc "$t0 + $RUN_TIMEOUT" 0)
    local tfirst=""
    while :; do
        done_count
        [[ -z "$tfirst" ]] && ((DONE >= 1)) && tfirst=$EPOCHREALTIME
        ((DONE >= N)) && break
        if [[ "${EPOCHREALTIME%.*}" -ge "$deadline" ]]; then
            echo "TIMEOUT: $DONE of $N archived after $RUN_TIMEOUT s"
            break
        fi
        nap 0.05
    done
    t1=$EPOCHREALTIME
    machine_ticks
    local m1=$MACHINE steal1=$STEAL
    pg_tree_ticks
    local pg1=$PGTREE
    if [[ -n "$SAMPLER_PID" ]]; then
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
        SAMPLER_PID=""
    fi
    self_ticks
    local self1=$SELF
    local kt1=0 st1=0 tship=""
    if [[ "$name" == bk* ]]; then
        proc_ticks "$kp"
        kt1=$TICKS
        if [[ -n "$SHIPPER_PID" ]]; then proc_ticks "$SHIPPER_PID"; st1=$TICKS; fi
    fi

    local pid1 arch_ticks arch_hwm
    pid1=$(archiver_pid)
    proc_ticks "$pid1"
    arch_ticks=$TICKS
    [[ "$pid1" == "$pid0" ]] && arch_ticks=$((arch_ticks - ticks0))
    proc_vm "$pid1" VmHWM
    arch_hwm=$KB
    local stat
    stat=$(psql_q "SELECT archived_count || ' ' || failed_count || ' ' || coalesce(last_archived_wal, '-') FROM pg_stat_archiver")
    local archived failed last
    read -r archived failed last <<<"$stat"

    # bk: the shipper has the segment in the repository.
    local m2="" kt2=0 st2=0 shipper_hwm="" krss2="" khwm="" pg2=0
    if [[ "$name" == bk* ]]; then
        if [[ "$name" == bk-noship* ]]; then
            start_shipper
            tship=$EPOCHREALTIME
        fi
        while :; do
            repo_count "$sid"
            ((REPO_COUNT >= N)) && break
            if [[ "${EPOCHREALTIME%.*}" -ge "$deadline" ]]; then
                echo "TIMEOUT: $REPO_COUNT of $N segments in the repository"
                break
            fi
            nap 0.2
        done
        t2=$EPOCHREALTIME
        machine_ticks
        m2=$MACHINE
        pg_tree_ticks
        pg2=$PGTREE
        proc_ticks "$kp"
        kt2=$TICKS
        proc_ticks "$SHIPPER_PID"
        st2=$TICKS
        proc_vm "$SHIPPER_PID" VmHWM
        shipper_hwm=$KB
        proc_vm "$kp" VmRSS
        krss2=$KB
        proc_vm "$kp" VmHWM
        khwm=$KB
    fi
    if [[ -n "$PERF_PID" ]]; then
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" 2>/dev/null || true
        PERF_PID=""
        # The broker's Java code is compiled at run time: without the JIT's
        # symbol map (/tmp/perf-PID.map, read by perf report) its samples
        # have no names.
        jcmd "$kp" Compiler.perfmap >"$WORK/perfmap-$tag.out" 2>&1 || true
    fi

    local secs rate mbps arch_ms mach_ms self_ms
    secs=$(calc "$t1 - $t0" 3)
    rate=$(calc "$N / $secs" 2)
    mbps=$(calc "$BYTES / 1e6 / $secs" 1)
    arch_ms=$(ms_per "$arch_ticks" "$N")
    mach_ms=$(ms_per "$((m1 - m0))" "$N")
    self_ms=$(ms_per "$((self1 - self0))" "$N")
    local first steady
    first=$(calc "$tfirst - $t0" 3)
    steady=$(calc "($N - 1) / ($t1 - $tfirst)" 2)
    echo "archived $archived (failed attempts $failed, last $last) of N = $N in $secs s"
    echo "  $rate segments/s, $mbps MB/s; the first segment was done after $first s, the other $((N - 1)) went at $steady segments/s"
    echo "  archiver (pid $pid1$([[ "$pid1" != "$pid0" ]] && echo ", WARNING: not the archiver of the start, pid $pid0")): $(calc "$arch_ticks / $HZ" 2) s CPU = $arch_ms ms/segment, VmHWM $arch_hwm kB"
    echo "  all of PostgreSQL (postmaster and children): $(ms_per "$((pg1 - pg0))" "$N") ms/segment"
    echo "  machine (/proc/stat): $(calc "($m1 - $m0) / $HZ" 2) s CPU = $mach_ms ms/segment, of it this script $self_ms ms/segment;" \
        "idle machine would be $(calc "$IDLE_MS_PER_S * $secs / $N" 1) ms/segment; steal $((steal1 - steal0)) ticks"

    # ours: the CPU of every process of the archiving pipeline, so that
    # other work on the machine does not count.
    local ours_ticks=$((pg1 - pg0)) ours_what="PostgreSQL"
    local extra="" hwm_main="$arch_hwm" ok=1
    ((archived == N)) || ok=0
    case "$name" in
    basic)
        local -a files=("$dest"/*)
        echo "  check: ${#files[@]} files in the archive directory, $(du -sb "$dest" | cut -f1) bytes; $MIDDLE $(cmp -s "$dest/$MIDDLE" "$TEMPLATE/pg_wal/$MIDDLE" && echo identical || echo DIFFERS)"
        ((${#files[@]} == N)) || ok=0
        cmp -s "$dest/$MIDDLE" "$TEMPLATE/pg_wal/$MIDDLE" || ok=0
        ;;
    pgbr-*)
        local pushed
        pushed=$(find "$PGBR_REPO/archive/bench" -type f -name '[0-9A-F]*-*' | wc -l)
        pgbr archive-get "$MIDDLE" "$WORK/pgbr/get-$tag" >/dev/null 2>&1 || true
        local same=DIFFERS
        cmp -s "$WORK/pgbr/get-$tag" "$TEMPLATE/pg_wal/$MIDDLE" && same=identical
        rm -f "$WORK/pgbr/get-$tag"
        echo "  check: $pushed segment files in the pgBackRest repository, $(du -sb "$PGBR_REPO" | cut -f1) bytes; archive-get $MIDDLE: $same"
        ((pushed == N)) || ok=0
        [[ "$same" == identical ]] || ok=0
        # Memory and CPU of the pgbackrest processes seen by the sampler.
        awk -v hz="$HZ" '{ role = $2; if ($3 > hwm[role]) hwm[role] = $3; if ($4 > t[$1]) { t[$1] = $4; r[$1] = role }; n[role]++ }
             END { for (p in t) { cpu[r[p]] += t[p]; pids[r[p]]++ }
                   for (role in hwm) printf "  sampled %-20s VmHWM max %6d kB (%d samples of %d processes; their CPU when last seen %.2f s)\n", role, hwm[role], n[role], pids[role], cpu[role] / hz }' "$samples"
        local async_hwm async_ticks
        async_hwm=$(awk '$2 == "archive-push:async" { if ($3 > m) m = $3 } END { print m + 0 }' "$samples")
        local local_hwm
        local_hwm=$(awk '$2 == "archive-push:local" { if ($3 > m) m = $3 } END { print m + 0 }' "$samples")
        async_ticks=$(awk '$2 ~ /^archive-push:(async|local)$/ { if ($4 > t[$1]) t[$1] = $4 } END { for (p in t) s += t[p]; print s + 0 }' "$samples")
        if [[ "$name" == pgbr-async* ]]; then
            ours_ticks=$((ours_ticks + async_ticks))
            ours_what="PostgreSQL + pgBackRest async and local processes (sampled)"
        fi
        local push_hwm
        push_hwm=$(awk '$2 == "archive-push" { if ($3 > m) m = $3 } END { print m + 0 }' "$samples")
        extra="push_hwm_kb=$push_hwm async_hwm_kb=$async_hwm local_hwm_kb=$local_hwm async_cpu_ms_per_seg=$(ms_per "$async_ticks" "$N")"
        if [[ "$name" == pgbr-sync && "$run" == 1 ]]; then
            # The peak memory of one archive-push, measured exactly: push one
            # segment into a second, fresh repository under /usr/bin/time.
            local main_conf="$PGBR_CONF" main_repo="$PGBR_REPO"
            pgbr_conf "$tag-mem" n 1
            pgbr stanza-create >/dev/null 2>&1
            as_pg /usr/bin/time -f "%M %e %U %S" -o "$WORK/pgbr/time" \
                pgbackrest --config="$PGBR_CONF" --stanza=bench archive-push "$BK_PGDATA/pg_wal/$MIDDLE" >/dev/null 2>&1 || true
            local mrss me mu ms
            read -r mrss me mu ms <"$WORK/pgbr/time"
            echo "  one archive-push of $MIDDLE under /usr/bin/time: max RSS $mrss kB, $me s wall, $mu s user, $ms s sys"
            PGBR_ONE_PUSH_RSS=$mrss
            PGBR_CONF="$main_conf" PGBR_REPO="$main_repo"
        fi
        [[ "$name" == pgbr-async* ]] && hwm_main="$async_hwm"
        [[ "$name" == pgbr-sync ]] && hwm_main="${PGBR_ONE_PUSH_RSS:-$push_hwm}"
        ;;
    bk*)
        local same=DIFFERS
        "$BK" wal-get --config "$BK_CONF" --source "$sid" "$MIDDLE" "$WORK/bk-get-$tag" 2>"$WORK/bk-get-$tag.err" &&
            cmp -s "$WORK/bk-get-$tag" "$TEMPLATE/pg_wal/$MIDDLE" && same=identical
        rm -f "$WORK/bk-get-$tag"
        echo "  check: $REPO_COUNT segments in the bk repository, $(du -sb "$BK_REPO" | cut -f1) bytes; bk wal-get $MIDDLE: $same"
        ((REPO_COUNT == N)) || ok=0
        [[ "$same" == identical ]] || ok=0
        local secs2 rate2
        secs2=$(calc "$t2 - $t0" 3)
        rate2=$(calc "$N / $secs2" 2)
        echo "  in the repository after $secs2 s ($rate2 segments/s); machine CPU until then $(ms_per "$((m2 - m0))" "$N") ms/segment"
        [[ -n "$tship" ]] && echo "  (shipper started when the archiver was done; it stored all $N in $(calc "$t2 - $tship" 2) s = $(calc "$N / ($t2 - $tship)" 2) segments/s)"
        echo "  broker (pid $kp): $(ms_per "$((kt1 - kt0))" "$N") ms CPU/segment until the archiver finished, $(ms_per "$((kt2 - kt0))" "$N") until the repository had all; RSS $krss0 -> $krss2 kB, VmHWM $khwm kB"
        echo "  shipper (pid $SHIPPER_PID): $(ms_per "$((st1 - st0))" "$N") ms CPU/segment until the archiver finished, $(ms_per "$((st2 - st0))" "$N") until the repository had all; VmHWM $shipper_hwm kB"
        ours_ticks=$((pg1 - pg0 + kt1 - kt0 + st1 - st0))
        ours_what="PostgreSQL + broker + shipper"
        echo "  ours until the repository had all (PostgreSQL + broker + shipper): $(ms_per "$((pg2 - pg0 + kt2 - kt0 + st2 - st0))" "$N") ms/segment"
        extra="ours_cpu_ms_per_seg_repo=$(ms_per "$((pg2 - pg0 + kt2 - kt0 + st2 - st0))" "$N") repo_seconds=$secs2 repo_seg_per_s=$rate2 machine_cpu_ms_per_seg_repo=$(ms_per "$((m2 - m0))" "$N") broker_cpu_ms_per_seg=$(ms_per "$((kt1 - kt0))" "$N") broker_cpu_ms_per_seg_repo=$(ms_per "$((kt2 - kt0))" "$N") shipper_cpu_ms_per_seg_repo=$(ms_per "$((st2 - st0))" "$N") shipper_hwm_kb=$shipper_hwm broker_rss_kb=$krss0-$krss2"
        psql_q "CREATE EXTENSION IF NOT EXISTS bk" >/dev/null 2>&1 || true
        psql_q "SELECT '  bk_status(): archived ' || archived_count || ', ' || archived_bytes || ' bytes, sent ' || sent_bytes || ' bytes (' || round(sent_bytes::numeric / nullif(archived_bytes, 0), 4) || ')' FROM bk_status()" || true
        ;;
    esac
    local ours_ms
    ours_ms=$(ms_per "$ours_ticks" "$N")
    echo "  ours ($ours_what): $ours_ms ms/segment"
    local line="RESULT contender=$name run=$run ok=$ok n=$N seconds=$secs seg_per_s=$rate mb_per_s=$mbps first_s=$first steady_seg_per_s=$steady archiver_cpu_ms_per_seg=$arch_ms ours_cpu_ms_per_seg=$ours_ms machine_cpu_ms_per_seg=$mach_ms harness_cpu_ms_per_seg=$self_ms archiver_hwm_kb=$arch_hwm peak_kb=$hwm_main failed_attempts=$failed $extra"
    echo "$line"
    [[ "$name" == bk-profile ]] || echo "$line" >>"$ROWS"

    if [[ "$name" == bk-profile ]]; then
        profile_report "$tag" "$pid1" "$kp"
    fi
    stop_shipper
    "$SERVICES" stop pg >/dev/null
    # Any pgBackRest process still running from this run (the async process
    # exits by itself once it has nothing left to push).
    local pid
    for pid in $(pgrep -f "pgbackrest --config=$WORK/pgbr/$tag" 2>/dev/null); do
        echo "  note: pgbackrest pid $pid still running after the run; stopping it"
        kill "$pid" 2>/dev/null || true
    done
    rm -rf "$dest" "$WORK/pgbr/repo-$tag" "$WORK/pgbr/repo-$tag-mem" "$WORK/pgbr/spool-$tag"
    [[ "$name" == bk* ]] && rm -rf "$BK_REPO"
    return 0
}

# process_samples SCRIPT PID: the samples of one process in a perf script
# dump (-F pid,tid,ip,sym,dso, with call chains): by the function they were
# in, and by what the call chain says the process was doing.
process_samples() {
    awk -v p="$2" '
        function done_sample() {
            if (!mine) return
            n++; leaf[first]++
            if (chain ~ /copy_folio_from_iter/) what = "write(): copying into the page cache"
            else if (chain ~ /do_fsync/) what = "fsync"
            else if (chain ~ /tcp_recvmsg/) what = "socket receive"
            else if (chain ~ /tcp_sendmsg|do_sendfile|splice/) what = "socket send, sendfile"
            else if (chain ~ /exc_page_fault/) what = "page faults"
            else if (chain ~ /do_sys_poll|ep_poll/) what = "poll"
            else if (chain ~ /futex/) what = "futex"
            else if (chain ~ /entry_SYSCALL/) what = "other system calls"
            else what = "user space"
            cat[what]++
        }
        /^[ \t]*[0-9]+\/[0-9]+[ \t]*$/ { done_sample(); split($1, id, "/"); mine = (id[1] == p); first = ""; chain = ""; next }
        mine && NF >= 2 { $1 = ""; sub(/^ /, ""); if (first == "") first = $0; chain = chain "|" $0 }
        END {
            done_sample()
            if (n == 0) { print "  no samples"; exit }
            printf "  %d samples; by function (with its object):\n", n
            for (f in leaf) printf "  %6.2f%%  %s\n", 100 * leaf[f] / n, f | "sort -rn | head -15"
            close("sort -rn | head -15")
            print "  by what it was doing:"
            for (w in cat) printf "  %6.2f%%  %s\n", 100 * cat[w] / n, w | "sort -rn"
        }' "$1" || true
}

profile_report() { # TAG ARCHIVER_PID KAFKA_PID
    local tag="$1" arch="$2" kp="$3" data="$WORK/perf-$1.data"
    section "profile of the bk run (perf record -e cpu-clock -a -g)"
    [[ -s "$data" ]] || { echo "no perf data"; cat "$WORK/perf-$tag.out"; return 0; }
    pg_children
    echo "samples by process (archiver pid $arch, broker pid $kp, shipper pid $SHIPPER_PID, postmaster $PG_PM):"
    perf script -i "$data" -F comm,pid,tid 2>/dev/null |
        awk -v a="$arch" -v k="$kp" -v s="$SHIPPER_PID" -v pm="$PG_PM" -v ours="$PG_CHILDREN" '
            { n++; p = $NF; sub(/\/.*/, "", p); comm = $0; sub(/[ \t]+[0-9]+\/[0-9]+[ \t]*$/, "", comm); sub(/^[ \t]+/, "", comm)
              if (p == a) { who = "archiver (" (comm ~ /^rdk:/ ? "librdkafka threads" : "main thread") ")" }
              else if (p == k) who = "Kafka broker (ours)"
              else if (p == s) who = "bk-shipper"
              else if (p == 0) who = "idle (swapper)"
              else if (p == pm || index(ours, "," p ",")) who = "PostgreSQL, other processes (ours)"
              else if (comm ~ /^kworker|^ksoftirq|^jbd2|^kdamond|^rcu/) who = "kernel threads"
              else who = "not ours: " comm
              c[who]++ }
            END { for (w in c) printf "  %6.2f%%  %s\n", 100 * c[w] / n, w }' | sort -rn | head -20 || true
    # perf report --pid mixed other processes' samples into kernel symbols
    # here, so a process's samples are taken from perf script instead.
    local script="$WORK/perf-$tag.script"
    perf script -i "$data" -F pid,tid,ip,sym,dso 2>/dev/null >"$script" || true
    echo "archiver:"
    process_samples "$script" "$arch"
    echo "broker (JIT-compiled Java named from the JVM's perf map):"
    process_samples "$script" "$kp"
    echo "broker, by thread (the JVM names its threads):"
    perf script -i "$data" -F comm,pid 2>/dev/null |
        awk -v k="$kp" '$NF == k { n++; $NF = ""; sub(/[ \t]+$/, ""); sub(/^[ \t]+/, ""); c[$0]++ }
            END { for (t in c) printf "  %6.2f%%  %s\n", 100 * c[t] / n, t }' | sort -rn | head -12 || true
    if [[ -n "$SHIPPER_PID" ]]; then
        echo "shipper (libcrypto has no symbols: SHA-256 of what it stores):"
        process_samples "$script" "$SHIPPER_PID"
    fi
    local log="$BK_SERVICES_DIR/pg/postgresql.log"
    echo "archive calls (bk DEBUG1 lines):"
    { grep -oE 'bk: archived "[0-9A-F]{24}" and [0-9]+ more segments? in one batch to "[^"]*" (over [0-9]+ producers? )?in [0-9]+ ms' "$log" || true; } |
        gawk '{ n++; more += $5; ms += $(NF - 1) } END {
             if (n) printf "  %d batches of %.1f segments on average, %.1f ms each (%.1f ms per segment)\n", n, 1 + more / n, ms / n, ms / (n + more) }'
    echo "  $({ grep -cE 'bk: archived "[0-9A-F]{24}": ' "$log" || true; }) calls sent one segment alone;" \
        "$({ grep -c 'was archived ahead, in an earlier batch' "$log" || true; }) calls found theirs sent ahead"
}

# CODEC_SEG_PER_S: what two cores doing nothing but bk's encoding would
# archive of this backlog (segments/s), measured now, on the same cores.
CODEC_SEG_PER_S=""
codec_limit() {
    section "2-core codec limit: frame_bench --only encode, every segment, two pinned processes at once"
    local half files0=() files1=() i out0="$WORK/codec-0.out" out1="$WORK/codec-1.out" ms0 ms1
    for ((i = 0; i < N; i++)); do
        if ((i % 2 == 0)); then files0+=("$TEMPLATE/pg_wal/${BACKLOG[$i]}"); else files1+=("$TEMPLATE/pg_wal/${BACKLOG[$i]}"); fi
    done
    taskset -c 0 "$REPO_ROOT/bench/frame_bench" --only encode --seconds 0.3 --rounds 1 "${files0[@]}" >"$out0" 2>&1 &
    local p0=$!
    taskset -c 1 "$REPO_ROOT/bench/frame_bench" --only encode --seconds 0.3 --rounds 1 "${files1[@]}" >"$out1" 2>&1 &
    local p1=$!
    wait "$p0" || { cat "$out0"; return 1; }
    wait "$p1" || { cat "$out1"; return 1; }
    ms0=$(awk '/bk encode/ { s += $(NF - 1) } END { printf "%.1f", s }' "$out0")
    ms1=$(awk '/bk encode/ { s += $(NF - 1) } END { printf "%.1f", s }' "$out1")
    half=$(calc "($ms0 > $ms1 ? $ms0 : $ms1)" 1)
    CODEC_SEG_PER_S=$(calc "$N * 1000 / $half" 2)
    echo "core 0: ${#files0[@]} segments in $ms0 ms of encoding; core 1: ${#files1[@]} in $ms1 ms"
    echo "per segment (median of both cores): $(cat "$out0" "$out1" | awk '/bk encode/ { print $(NF - 1) }' | sort -n |
        awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }') ms"
    echo "RESULT phase=codec n=$N core0_ms=$ms0 core1_ms=$ms1 codec_limit_seg_per_s=$CODEC_SEG_PER_S"
}

# A fresh JVM broker spends its first minutes compiling (JIT) and sizing its
# heap: send the backlog through it once, and consume it, before measuring.
broker_warmup() {
    section "broker warm-up (not measured): the backlog once through bk_test_produce and a shipper"
    local files=() name t0
    for name in "${BACKLOG[@]}"; do files+=("$TEMPLATE/pg_wal/$name"); done
    bk_setup_prefix warmup
    start_shipper
    t0=$EPOCHREALTIME
    "$PRODUCE" --brokers "$BK_KAFKA_BROKERS" --prefix "$BK_PREFIX" --key "$WORK/bk.key.pub" \
        --source 7000000000000000001 "${files[@]}" >/dev/null
    echo "produced $N segments in $(calc "$EPOCHREALTIME - $t0" 1) s (first use of the broker)"
    local deadline=$((${EPOCHREALTIME%.*} + 300))
    while :; do
        repo_count 7000000000000000001
        ((REPO_COUNT >= N || ${EPOCHREALTIME%.*} >= deadline)) && break
        nap 0.5
    done
    echo "shipper stored $REPO_COUNT after $(calc "$EPOCHREALTIME - $t0" 1) s"
    stop_shipper
    rm -rf "$BK_REPO"
}

# ---------------------------------------------------------------- phase 3

produce_runs() {
    section "bk_test_produce: bk's source side without PostgreSQL, same $N segments"
    local run tag sid="7000000000000000001" files=()
    local name
    for name in "${BACKLOG[@]}"; do files+=("$TEMPLATE/pg_wal/$name"); done
    # Read once so that all runs read from the page cache, like the archiver.
    cat "${files[@]}" >/dev/null
    kafka_pid
    for ((run = 1; run <= PRODUCE_RUNS; run++)); do
        tag="produce-$run"
        bk_setup_prefix "$tag"
        machine_ticks
        local m0=$MACHINE
        proc_ticks "$KAFKA_PID"
        local k0=$TICKS t0 t1
        t0=$(now)
        /usr/bin/time -f "%M %e %U %S" -o "$WORK/produce-time" \
            "$PRODUCE" --brokers "$BK_KAFKA_BROKERS" --prefix "$BK_PREFIX" --key "$WORK/bk.key.pub" \
            --source "$sid" "${files[@]}" >"$WORK/produce-$run.out"
        t1=$(now)
        machine_ticks
        proc_ticks "$KAFKA_PID"
        local k1=$TICKS rss user sys secs
        read -r rss _ user sys <"$WORK/produce-time"
        secs=$(calc "$t1 - $t0" 3)
        local sent
        sent=$(wc -l <"$WORK/produce-$run.out")
        echo "run $run: $sent objects in $secs s = $(calc "$N / $secs" 2) segments/s, $(calc "$BYTES / 1e6 / $secs" 1) MB/s"
        echo "  bk_test_produce: user $user s + sys $sys s = $(calc "1000 * ($user + $sys) / $N" 1) ms CPU/segment, max RSS $rss kB"
        echo "  broker: $(ms_per "$((k1 - k0))" "$N") ms CPU/segment; machine $(ms_per "$((MACHINE - m0))" "$N") ms CPU/segment"
        echo "RESULT contender=produce run=$run ok=$((sent == N)) n=$N seconds=$secs seg_per_s=$(calc "$N / $secs" 2) mb_per_s=$(calc "$BYTES / 1e6 / $secs" 1) archiver_cpu_ms_per_seg=$(calc "1000 * ($user + $sys) / $N" 1) ours_cpu_ms_per_seg=$(calc "1000 * ($user + $sys) / $N + 1000 * ($k1 - $k0) / $HZ / $N" 1) machine_cpu_ms_per_seg=$(ms_per "$((MACHINE - m0))" "$N") harness_cpu_ms_per_seg=0 archiver_hwm_kb=$rss peak_kb=$rss broker_cpu_ms_per_seg=$(ms_per "$((k1 - k0))" "$N")" | tee -a "$ROWS"
    done
}

# ---------------------------------------------------------------- phase 4

tps_phase() {
    section "pgbench TPS: archive_command = '/bin/true' against archive_library = 'bk'"
    restore_template
    # The backlog is not part of this: mark it archived, so the first
    # checkpoint recycles it.
    local f
    for f in "$BK_PGDATA"/pg_wal/archive_status/*.ready; do
        mv "$f" "${f%.ready}.done"
    done
    bk_setup_prefix tps
    bk_pg_conf "archive_library = ''" "archive_command = '/bin/true'"
    "$SERVICES" start pg >/dev/null
    local sid
    sid=$(source_id)
    psql_q "CHECKPOINT"
    echo "cluster: pgbench scale $SCALE + bench_random from the template; $(psql_q "SELECT pg_size_pretty(pg_database_size(current_database()))")"
    echo "shared_preload_libraries = 'bk' in every mode; modes switch by reload"
    echo "warm-up: pgbench -T 20 -c 2 -j 2 -n (archive_command = '/bin/true'): $(pgbench -T 20 -c 2 -j 2 -n 2>&1 | grep -o 'tps = [0-9.]*' | head -1)"
    local repo_expected=0 round mode
    kafka_pid
    : >"$WORK/tps.tsv"
    for ((round = 1; round <= TPS_ROUNDS; round++)); do
        for mode in "${TPS_MODES[@]}"; do
            case "$mode" in
            true)
                stop_shipper
                bk_pg_conf "archive_library = ''" "archive_command = '/bin/true'"
                ;;
            bk)
                [[ -n "$SHIPPER_PID" ]] || start_shipper
                bk_pg_conf "archive_library = 'bk'"
                ;;
            bk-noship)
                stop_shipper
                bk_pg_conf "archive_library = 'bk'"
                ;;
            esac
            local lib=bk old_pid
            [[ "$mode" == true ]] && lib=shell
            old_pid=$(archiver_pid)
            psql_q "SELECT pg_reload_conf()" >/dev/null
            if [[ "$lib" != "${TPS_LIB:-shell}" ]]; then
                # A new archive_library: the archiver exits and the postmaster
                # starts a new one when it next wakes (a connection wakes it).
                local tries=0
                while [[ "$(archiver_pid)" == "$old_pid" ]] && ((tries++ < 300)); do nap 0.2; done
            fi
            TPS_LIB=$lib
            nap 1
            wait_no_ready 120
            psql_q "CHECKPOINT"
            local a0 lsn0 m0 k0 s0=0 arch arch0 t0 t1
            a0=$(psql_q "SELECT archived_count FROM pg_stat_archiver")
            lsn0=$(psql_q "SELECT pg_current_wal_lsn()")
            arch=$(archiver_pid)
            proc_ticks "$arch"
            arch0=$TICKS
            machine_ticks
            m0=$MACHINE
            proc_ticks "$KAFKA_PID"
            k0=$TICKS
            if [[ -n "$SHIPPER_PID" ]]; then proc_ticks "$SHIPPER_PID"; s0=$TICKS; fi
            pg_tree_ticks
            local pgt0=$PGTREE self0
            self_ticks
            self0=$SELF
            t0=$(now)
            pgbench -T "$TPS_SECONDS" -c 2 -j 2 -n >"$WORK/tps-$round-$mode.out" 2>&1
            nap 0.5 # let the postmaster reap pgbench's backends, so their CPU is counted
            t1=$(now)
            machine_ticks
            local m1=$MACHINE k1 s1=0 arch1 secs pgt1 self1
            pg_tree_ticks
            pgt1=$PGTREE
            self_ticks
            self1=$SELF
            proc_ticks "$KAFKA_PID"
            k1=$TICKS
            if [[ -n "$SHIPPER_PID" ]]; then proc_ticks "$SHIPPER_PID"; s1=$TICKS; fi
            proc_ticks "$arch"
            arch1=${TICKS:-$arch0}
            secs=$(calc "$t1 - $t0" 2)
            local tps lat wal_mb
            tps=$(grep -o 'tps = [0-9.]*' "$WORK/tps-$round-$mode.out" | head -1 | cut -d' ' -f3)
            lat=$(grep -o 'latency average = [0-9.]* ms' "$WORK/tps-$round-$mode.out" | cut -d' ' -f4)
            wal_mb=$(psql_q "SELECT round((pg_current_wal_lsn() - '$lsn0'::pg_lsn) / 1e6, 1)")
            # Let the archiver (and for bk, the shipper) finish this run's WAL
            # before the next run starts.
            psql_q "SELECT pg_switch_wal()" >/dev/null
            wait_no_ready 300
            local a1 lag
            a1=$(psql_q "SELECT archived_count FROM pg_stat_archiver")
            if [[ "$mode" == bk* ]]; then
                repo_expected=$((repo_expected + a1 - a0))
                [[ -n "$SHIPPER_PID" ]] || start_shipper
                local deadline=$((${EPOCHREALTIME%.*} + 300))
                while :; do
                    repo_count "$sid"
                    ((REPO_COUNT >= repo_expected)) && break
                    ((${EPOCHREALTIME%.*} < deadline)) || { echo "  TIMEOUT: repository has $REPO_COUNT of $repo_expected"; break; }
                    nap 0.2
                done
                lag=$(calc "$(now) - $t1" 1)
            else
                lag=-
            fi
            # ours: PostgreSQL, pgbench (a child of this script), broker and
            # shipper; other: whatever else ran on the machine meanwhile.
            local ours=$((pgt1 - pgt0 + self1 - self0 + k1 - k0 + s1 - s0))
            printf 'TPS round=%d mode=%s tps=%s latency_ms=%s seconds=%s wal_mb=%s segments_archived=%d machine_cpu_s=%s ours_cpu_s=%s other_cpu_s=%s postgres_cpu_s=%s pgbench_cpu_s=%s archiver_cpu_s=%s broker_cpu_s=%s shipper_cpu_s=%s drained_after_s=%s\n' \
                "$round" "$mode" "$tps" "$lat" "$secs" "$wal_mb" "$((a1 - a0))" \
                "$(calc "($m1 - $m0) / $HZ" 1)" "$(calc "$ours / $HZ" 1)" "$(calc "($m1 - $m0 - $ours) / $HZ" 1)" \
                "$(calc "($pgt1 - $pgt0) / $HZ" 1)" "$(calc "($self1 - $self0) / $HZ" 1)" "$(calc "($arch1 - $arch0) / $HZ" 2)" \
                "$(calc "($k1 - $k0) / $HZ" 2)" "$(calc "($s1 - $s0) / $HZ" 2)" "$lag" | tee -a "$WORK/tps.tsv"
            [[ "$mode" == bk-noship ]] && stop_shipper
        done
    done
    stop_shipper
    local fails
    fails=$(psql_q "SELECT failed_count FROM pg_stat_archiver")
    echo "archiver failed attempts over the TPS phase: $fails; bk repository holds $REPO_COUNT segments (expected $repo_expected)"
    "$SERVICES" stop pg >/dev/null
    section "TPS summary (median of $TPS_ROUNDS runs of pgbench -T $TPS_SECONDS -c 2 -j 2 -n)"
    gawk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
           m = v["mode"]; n[m]++; tps[m, n[m]] = v["tps"]; cpu[m] += v["machine_cpu_s"]; secs[m] += v["seconds"]
           ac[m] += v["archiver_cpu_s"]; bc[m] += v["broker_cpu_s"]; sc[m] += v["shipper_cpu_s"]; seg[m] += v["segments_archived"]
           oc[m] += v["other_cpu_s"]; pc[m] += v["postgres_cpu_s"] }
         END {
           for (m in n) { k = n[m]; for (i = 1; i <= k; i++) a[i] = tps[m, i]; asort(a); med[m] = (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
             all = ""; for (i = 1; i <= k; i++) all = all sprintf(" %.1f", tps[m, i]); runs[m] = all; delete a }
           printf "%-10s %10s  %-24s %8s %9s %9s %9s %9s %9s\n", "mode", "median", "runs (in order)", "ratio", "machine%", "other%", "archiver", "broker", "shipper"
           split("true bk bk-noship", order, " ")
           for (j = 1; j <= 3; j++) { m = order[j]; if (!(m in n)) continue
             printf "%-10s %10.1f  %-24s %7.2f%% %8.1f%% %8.1f%% %8.2fs %8.2fs %8.2fs\n", m, med[m], runs[m],
                    100 * med[m] / med["true"], 100 * cpu[m] / secs[m] / 2, 100 * oc[m] / secs[m] / 2, ac[m] / n[m], bc[m] / n[m], sc[m] / n[m] }
           printf "(ratio = median / median of true; machine%% = busy share of both cores during the runs, other%% = the\n share taken by processes not of this benchmark; archiver/broker/shipper = mean CPU seconds per run;\n segments per run: "
           for (j = 1; j <= 3; j++) { m = order[j]; if (m in n) printf "%s %.1f ", m, seg[m] / n[m] }
           print ")" }' "$WORK/tps.tsv"
}

wait_no_ready() { # TIMEOUT
    local deadline=$((${EPOCHREALTIME%.*} + $1))
    while :; do
        local -a f=("$BK_PGDATA"/pg_wal/archive_status/*.ready)
        ((${#f[@]} == 0)) && return 0
        ((${EPOCHREALTIME%.*} < deadline)) || { echo "  warning: ${#f[@]} .ready files left after $1 s"; return 0; }
        nap 0.2
    done
}

# ---------------------------------------------------------------- phase 5

# The latency of one segment when archiving was configured as the server
# started (as in production): the archiver has been running for 3 s, then a
# segment is switched and the clock runs until its .done appears.  Three
# switches per server start; the first is "the first segment after start".
first_phase() {
    section "one segment's latency, archiving configured when the server starts"
    local round c switch tag seg t0 t1
    : >"$WORK/first.tsv"
    for ((round = 1; round <= FIRST_ROUNDS; round++)); do
        for c in "${FIRST_CONTENDERS[@]}"; do
            tag="first-$c-$round"
            restore_template
            for seg in "$BK_PGDATA"/pg_wal/archive_status/*.ready; do
                mv "$seg" "${seg%.ready}.done"
            done
            case "$c" in
            pgbr-*)
                local async=n pmax=1
                [[ "$c" == pgbr-async* ]] && async=y pmax="${c#pgbr-async}"
                pgbr_conf "$tag" "$async" "$pmax"
                pg_conf "${BASE_CONF[@]}" "archive_library = ''" \
                    "archive_command = 'pgbackrest --config=$PGBR_CONF --stanza=bench archive-push %p'"
                "$SERVICES" start pg >/dev/null
                pgbr stanza-create >"$WORK/pgbr-stanza-$tag.out" 2>&1 ||
                    { cat "$WORK/pgbr-stanza-$tag.out"; exit 1; }
                ;;
            bk | bk-msgs*)
                bk_setup_prefix "$tag"
                bk_msgs_conf "$c"
                bk_pg_conf "archive_library = 'bk'" "${BK_MSGS_CONF[@]}"
                start_shipper
                "$SERVICES" start pg >/dev/null
                ;;
            *) echo "unknown contender $c" >&2; exit 2 ;;
            esac
            nap 3
            psql_q "CREATE TABLE IF NOT EXISTS first_probe (x int)"
            for switch in 1 2 3; do
                psql_q "INSERT INTO first_probe VALUES ($switch)"
                seg=$(psql_q "SELECT pg_walfile_name(pg_current_wal_lsn())")
                t0=$(now)
                psql_q "SELECT pg_switch_wal()" >/dev/null
                while [[ ! -e "$BK_PGDATA/pg_wal/archive_status/$seg.done" ]]; do
                    if [[ "$(calc "$(now) - $t0" 0)" -gt 60 ]]; then
                        echo "$c: $seg not archived after 60 s" >&2
                        exit 1
                    fi
                    nap 0.002
                done
                t1=$(now)
                printf '%s\t%s\t%s\t%s\n' "$c" "$round" "$switch" "$(calc "1000 * ($t1 - $t0)" 1)" >>"$WORK/first.tsv"
            done
            stop_shipper
            "$SERVICES" stop pg >/dev/null
        done
    done
    awk -F'\t' '
        { key = $1 "\t" ($3 == 1 ? "first" : "later"); v[key] = v[key] " " $4
          if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
        END { printf "%-12s  %-32s  %s\n", "contender", "first segment after start, ms", "2nd and 3rd segments, ms"
              for (i = 1; i <= n; i++) printf "%-12s %-33s %s\n", order[i], v[order[i] "\tfirst"], v[order[i] "\tlater"] }' "$WORK/first.tsv"
    echo "(from pg_switch_wal() to the segment's .done; the archiver had run 3 s; bk with its shipper running)"
}

# ---------------------------------------------------------------- main

section "machine"
echo "date:       $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "commit:     $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- common extension shipper 2>/dev/null || echo ' (common/, extension/ or shipper/ modified)')"
echo "cpu:        $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; $(free -g | awk '/^Mem:/ { print $2 " GB RAM" }')"
# shellcheck disable=SC1091
echo "os:         $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
echo "postgresql: $(/usr/lib/postgresql/15/bin/postgres --version)"
echo "pgbackrest: $(pgbackrest version)"
echo "librdkafka: $(dpkg-query -W -f '${Version}' librdkafka1 2>/dev/null || echo '?'); openssl $(openssl version | cut -d' ' -f2); lz4 $(lz4 --version 2>&1 | grep -o 'v[0-9.]*' | head -1)"
echo "disk:       $(df -h /tmp | awk 'NR == 2 { print $1 ", " $4 " free" }')"
echo "load:       $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine competes for the same 2 cores)"

section "build and install"
make -s
make -s install >/dev/null
make -s -C tests/integration bk_test_produce >/dev/null
make -s -C bench frame_bench >/dev/null
ls -l "$BK" "$SHIPPER" /usr/lib/postgresql/15/lib/bk.so | awk '{ print "  " $6 " " $7 " " $8 " " $9 }'

section "services"
"$SERVICES" stop >/dev/null 2>&1 || true # a fresh state directory
"$SERVICES" start pg kafka
export_env
echo "PostgreSQL $PGPORT (data $BK_PGDATA), Kafka $BK_KAFKA_BROKERS"

"$BK" keygen --out "$WORK/bk.key" >/dev/null
chmod 644 "$WORK/bk.key.pub"
install -d -o postgres -g postgres -m 750 "$WORK/pgbr" "$WORK/pgbr/log" "$WORK/pgbr/lock"
PGBR_PASS="$(openssl rand -base64 48 | tr -d '\n/+=')"

if [[ "$PHASES" == *" backlog "* ]]; then
    make_backlog
else
    [[ -d "$TEMPLATE" ]] || { echo "no template at $TEMPLATE (set ARCHIVE_TEMPLATE or run the backlog phase)" >&2; exit 2; }
    echo "reusing template $TEMPLATE"
fi
describe_backlog
IDLE_MS_PER_S=0

if [[ "$PHASES" == *" codec "* ]]; then
    codec_limit
fi

if [[ "$PHASES" == *" archive "* ]]; then
    idle_baseline
    broker_warmup
    : >"$ROWS"
    for ((run = 1; run <= RUNS; run++)); do
        for c in "${CONTENDERS[@]}"; do
            run_contender "$c" "$run"
        done
    done
    for c in "${EXTRA[@]}"; do
        run_contender "$c" 1
    done
    if [[ "$PROFILE" == 1 ]]; then
        run_contender bk-profile 1
    fi
    section "archiving summary (best run of each by segments/s; all runs listed)"
    awk -v seg="$SEG_SIZE" -v codec="$CODEC_SEG_PER_S" '
        { delete v; for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
          c = v["contender"]; runs[c] = runs[c] sprintf(" %.2f", v["seg_per_s"])
          if (!(c in best) || v["seg_per_s"] > best[c]) { best[c] = v["seg_per_s"]; line[c] = $0 }
          if (!(c in order)) { order[c] = ++k; names[k] = c } }
        END {
          printf "%-12s %8s %7s %7s %8s %9s %9s %9s %9s %4s  %s\n", "contender", "seg/s", "MB/s", "first s", "steady", "arch ms", "ours ms", "mach ms", "peak kB", "ok", "seg/s of every run"
          for (j = 1; j <= k; j++) { c = names[j]; delete v; n = split(line[c], f, " ")
            for (i = 2; i <= n; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
            printf "%-12s %8.2f %7.1f %7s %8s %9s %9s %9s %9s %4s %s\n", c, v["seg_per_s"], v["mb_per_s"], v["first_s"], v["steady_seg_per_s"], v["archiver_cpu_ms_per_seg"],
                   v["ours_cpu_ms_per_seg"], v["machine_cpu_ms_per_seg"], v["peak_kb"], v["ok"], runs[c] }
          for (i = 1; i <= k; i++) { b = names[i]; if (b !~ /^bk/) continue
            for (j = 1; j <= k; j++) { c = names[j]; if (c ~ /^(pgbr|basic)/) printf "%-10s / %-12s = %.2fx%s\n", b, c, best[b] / best[c], c ~ /^pgbr-async/ ? " (aim: 1.25x)" : (c ~ /^pgbr/ ? " (aim: 2x)" : "") }
            if (codec > 0) printf "%-10s / 2-core codec limit (%.2f seg/s) = %.0f%%\n", b, codec, 100 * best[b] / codec } }' "$ROWS"
    echo "(first s: seconds from the reload to the first .done; steady: segments/s after the first one;"
    echo " per segment: arch ms = CPU of the archiver process and the children it waited for; ours ms = CPU of"
    echo " PostgreSQL + pgBackRest's async and local processes + for bk the broker and the shipper, up to the last"
    echo " .done; mach ms = whole machine from /proc/stat, which includes other people's work on this VM (idle rate"
    echo " $IDLE_MS_PER_S ms/s when measured); peak kB: archiver VmHWM for basic and bk, one archive-push's max RSS"
    echo " for pgbr-sync, the async process's VmHWM for pgbr-async; produce: bk_test_produce's max RSS)"
fi

if [[ "$PHASES" == *" produce "* ]]; then
    produce_runs
fi

if [[ "$PHASES" == *" tps "* ]]; then
    tps_phase
fi

if [[ "$PHASES" == *" first "* ]]; then
    first_phase
fi

section "done"
echo "finished $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
