#!/usr/bin/env bash
# The S3 repository: bk-shipper's throughput and bk restore's time with the
# repository on an S3 store (s3proxy 4.1.0 over TLS) against the same with a
# directory repository, and against pgBackRest 2.45's own S3 repository type
# (repo1-type=s3) on the same s3proxy, all on the same database in the same
# run.
#
# Usage: bench/s3.sh   (as root: PostgreSQL and pgBackRest run as the
#                       postgres OS user)
#
# What it does, end to end:
#   1. a private PostgreSQL, Kafka and s3proxy (scripts/services, own ports
#      and state directory /tmp/bkbench-s3), and a second s3proxy of its own
#      over the same bucket directory with TLS only (pgBackRest's S3 driver
#      speaks nothing else): a key pair made with keytool, its certificate
#      given to bk as s3_ca_file and to pgBackRest as repo1-storage-ca-file,
#      so both check the server and both pay for TLS.  PostgreSQL archives
#      with archive_library = 'bk'; two shippers read the same topics in two
#      consumer groups, one into a directory repository, one into
#      s3://BUCKET/PREFIX on the TLS s3proxy (spool_dir under the work
#      directory, credentials in an s3_access_key_file of root's, mode
#      0640, group postgres).  Only the shipper of the step being measured
#      runs; the other catches up (untimed) before its own step.
#   2. the database: pgbench -i -s S3B_SCALE -F 90 and bench_random,
#      S3B_RANDOM_MB MiB of random bytes (as bench/snapshot.sh builds it),
#      frozen and checkpointed; about 1 GB by default, in RAM.
#   3. per run (S3B_RUNS, interleaved, the order rotated by one each run):
#      backups: bk-dir and bk-s3 (SELECT * FROM bk_snapshot(), timed until
#               the call returned and until "bk list --json" says the
#               snapshot is restorable in that repository: the shipper's
#               throughput; MB/s of the database and of the bytes stored),
#               pgbr-p1 and pgbr-p2 (pgbackrest backup --type=full,
#               repo1-type=s3, lz4 level 1, aes-256-cbc, process-max 1 / 2,
#               into a fresh path of the bucket);
#      restores (not started, each into a fresh directory): the run's bk-s3
#               snapshot, which by then both shippers have stored, so every
#               bk restore restores the same bytes: bk-dir (from the
#               directory), bk-s3 (from S3 over TLS, s3_read_jobs 4, the
#               default), bk-s3-rj8 (s3_read_jobs = 8), bk-s3-http (the same
#               bucket through scripts/services' plain-http s3proxy: what TLS
#               costs), all with bk restore's default --jobs unless
#               S3B_BK_JOBS; pgbr-s3 (pgbackrest restore --process-max=2 of
#               pgbr-p2's backup).  Untimed checks: the exit status (both
#               verify what they restore), pg_verifybackup --no-parse-wal of
#               every bk restore, and every bk restore's backup_manifest
#               identical to bk-dir's.
#   4. the summary: best and median of each, the ratios; then, untimed and
#      outside the statistics (S3B_PROFILE=1): bk list's time on each
#      repository, strace -f -c of one bk restore from S3 and of one
#      pgbackrest restore, one bk restore from S3 with --jobs 4, and a
#      profile (perf record -a -g) of one bk restore from S3 and one
#      pgbackrest restore.
# For bk backups the shipper's repository commits (its metrics' histogram:
# on S3 the upload of each complete object) are reported too.
# CPU ("ours"): for bk backups PostgreSQL (backend, snapshot worker,
# archiver...) + the broker + the shipper, + the TLS s3proxy's JVM for
# bk-s3; for pgBackRest backups pgbackrest (with its children) + PostgreSQL
# + the s3proxy JVM; for restores the restoring process and its children,
# + the s3proxy JVM for those from S3.  All from /proc/PID/stat (JVM
# threads included); the whole machine from /proc/stat.  CPU s per GB =
# ours / database GB.
# Everything printed also goes to bench/results/s3-<UTC date-time>.txt.
#
# Environment (defaults in brackets):
#   S3B_SCALE         pgbench -i scale [40]
#   S3B_RANDOM_MB     MiB of random bytes in bench_random [350]
#   S3B_RUNS          runs, interleaved [5]
#   S3B_BACKUPS       [bk-dir bk-s3 pgbr-p1 pgbr-p2]
#   S3B_RESTORES      [bk-dir bk-s3 pgbr-s3 bk-s3-rj8 bk-s3-http]
#   S3B_BK_JOBS       bk restore --jobs; empty: bk's default (2) []
#   S3B_PROFILE       1: the profile after the runs [1]
#   S3B_BUILD         1: make and make install first [1]
#   S3B_TIMEOUT       seconds one step may take [1800]
#   S3B_KEEP          1: keep the work directory [0]
set -euo pipefail
shopt -s nullglob

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

SCALE=${S3B_SCALE:-40}
RANDOM_MB=${S3B_RANDOM_MB:-350}
RUNS=${S3B_RUNS:-5}
read -r -a BACKUPS <<<"${S3B_BACKUPS:-bk-dir bk-s3 pgbr-p1 pgbr-p2}"
read -r -a RESTORES <<<"${S3B_RESTORES:-bk-dir bk-s3 pgbr-s3 bk-s3-rj8 bk-s3-http}"
BK_JOBS=${S3B_BK_JOBS:-}
PROFILE=${S3B_PROFILE:-1}
BUILD=${S3B_BUILD:-1}
STEP_TIMEOUT=${S3B_TIMEOUT:-1800}
KEEP=${S3B_KEEP:-0}

[[ "$SCALE" =~ ^[1-9][0-9]*$ && "$RANDOM_MB" =~ ^[0-9]+$ && "$RUNS" =~ ^[1-9][0-9]*$ ]] ||
    { echo "S3B_SCALE, S3B_RANDOM_MB and S3B_RUNS must be whole numbers" >&2; exit 2; }
[[ -z "$BK_JOBS" || "$BK_JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "S3B_BK_JOBS must be a number" >&2; exit 2; }
for c in "${BACKUPS[@]}"; do
    case "$c" in
    bk-dir | bk-s3 | pgbr-p1 | pgbr-p2) ;;
    *) echo "unknown backup \"$c\" (have: bk-dir bk-s3 pgbr-p1 pgbr-p2)" >&2; exit 2 ;;
    esac
done
for c in "${RESTORES[@]}"; do
    case "$c" in
    bk-dir | bk-s3 | bk-s3-rj8 | bk-s3-http | pgbr-s3) ;;
    *) echo "unknown restore \"$c\" (have: bk-dir bk-s3 bk-s3-rj8 bk-s3-http pgbr-s3)" >&2; exit 2 ;;
    esac
done
has_backup() { [[ " ${BACKUPS[*]} " == *" $1 "* ]]; }
[[ " ${RESTORES[*]} " != *" bk-"* ]] || has_backup bk-s3 ||
    { echo "the bk restores restore the bk-s3 snapshot: S3B_BACKUPS needs bk-s3" >&2; exit 2; }
[[ " ${RESTORES[*]} " != *" pgbr-s3 "* ]] || has_backup pgbr-p2 || has_backup pgbr-p1 ||
    { echo "the pgbr-s3 restore needs pgbr-p2 or pgbr-p1 in S3B_BACKUPS" >&2; exit 2; }
[[ "$(id -u)" == 0 ]] || { echo "run as root (PostgreSQL and pgBackRest run as postgres)" >&2; exit 2; }

# Services of our own, on ports nobody else uses (below the ephemeral range).
export BK_SERVICES_DIR=/tmp/bkbench-s3
export BK_PG_PORT=26432
export BK_MYSQL_PORT=26306
export BK_KAFKA_PORT=26092
export BK_KAFKA_CONTROLLER_PORT=26093
export BK_S3_PORT=26900
TLS_PORT=26901         # the TLS s3proxy
METRICS_PORT_DIR=26911 # the shippers' metrics (their consumer lag)
METRICS_PORT_S3=26912
SERVICES="$REPO_ROOT/scripts/services"
BK=/usr/local/bin/bk
SHIPPER=/usr/local/bin/bk-shipper

# shellcheck source=bench/lib.sh disable=SC1091
. "$REPO_ROOT/bench/lib.sh"
bench_output s3

WORK="$(mktemp -d /tmp/bk-s3-bench.XXXXXX)"
chmod 755 "$WORK"
ROWS="$WORK/results.tsv" # the RESULT lines, for the summary
: >"$ROWS"
declare -A SHIP_PID=([dir]="" [s3]="")
KAFKA_PID=""
TLS_PID=""
HTTP_S3_PID=""
PERF_PID=""
SID=""

bench_nap_init "$WORK"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    echo
    echo "== cleaning up"
    if [[ -n "$PERF_PID" ]]; then kill -INT "$PERF_PID" 2>/dev/null || true; wait "$PERF_PID" 2>/dev/null || true; fi
    ship_stop dir
    ship_stop s3
    if [[ -n "$TLS_PID" ]]; then
        kill -TERM "$TLS_PID" 2>/dev/null || true
        wait "$TLS_PID" 2>/dev/null || true
    fi
    # What this run put in the bucket: the services' stop keeps their state
    # directory, and so the bucket's files.
    [[ "$KEEP" == 1 || -z "${S3_FILES:-}" ]] || rm -rf "$S3_FILES" "${PGBR_FILES:-}"
    bench_finish "$KEEP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "FAILED: $*" >&2; exit 1; }
secs_of() { calc "$1 / $HZ" 2; } # TICKS -> seconds
mb() { calc "$1 / 1e6" 1; }
now_s() { echo "${EPOCHREALTIME%.*}"; }
files_bytes() { find "$@" -type f -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { printf "%d", s }'; }
result() { echo "RESULT $*" | tee -a "$ROWS"; }
# The peak RSS (kB) /usr/bin/time wrote to $1.
peak_kb() { awk 'END { print $1 + 0 }' "$1" 2>/dev/null || echo 0; }

# meter_start / meter_stop: wall clock and CPU ticks of a step.  After
# meter_stop: D_SECS, D_MACHINE, D_STEAL (what the hypervisor took), D_PG,
# D_SELF, D_KAFKA, D_SHIPPER (the running shippers), D_S3 (the TLS
# s3proxy), D_S3H (the plain-http one).
ship_ticks() {
    local t=0 k
    for k in dir s3; do
        proc_ticks "${SHIP_PID[$k]}"
        t=$((t + ${TICKS:-0}))
    done
    SHIPT=$t
}
meter_start() {
    machine_ticks
    # shellcheck disable=SC2153 # MACHINE, STEAL: set by machine_ticks (lib.sh)
    MM0=$MACHINE
    MST0=$STEAL
    pg_tree_ticks
    MP0=$PGTREE
    self_ticks
    MS0=$SELF
    proc_ticks "$KAFKA_PID"
    MK0=${TICKS:-0}
    ship_ticks
    MH0=$SHIPT
    proc_ticks "$TLS_PID"
    MZ0=${TICKS:-0}
    proc_ticks "$HTTP_S3_PID"
    MY0=${TICKS:-0}
    MT0=$EPOCHREALTIME
}
meter_stop() {
    local t1=$EPOCHREALTIME
    machine_ticks
    D_MACHINE=$((MACHINE - MM0))
    D_STEAL=$((STEAL - MST0))
    pg_tree_ticks
    D_PG=$((PGTREE - MP0))
    self_ticks
    D_SELF=$((SELF - MS0))
    proc_ticks "$KAFKA_PID"
    D_KAFKA=$((${TICKS:-$MK0} - MK0))
    ship_ticks
    D_SHIPPER=$((SHIPT - MH0))
    proc_ticks "$TLS_PID"
    D_S3=$((${TICKS:-$MZ0} - MZ0))
    proc_ticks "$HTTP_S3_PID"
    D_S3H=$((${TICKS:-$MY0} - MY0))
    D_SECS=$(calc "$t1 - $MT0" 3)
}

# ---------------------------------------------------------------- services

export_env() {
    eval "$("$SERVICES" env pg kafka s3)"
    # shellcheck disable=SC2034 # for pgbr_write_conf (lib.sh)
    PG_SOCKET_DIR="$BK_SERVICES_DIR/pg"
    read -r KAFKA_PID <"$BK_SERVICES_DIR/kafka/kafka.pid"
    read -r HTTP_S3_PID <"$BK_SERVICES_DIR/s3/s3proxy.pid"
}

# s3_code URL: the HTTP status of a signed HEAD of the bucket (000: no answer).
s3_code() {
    curl -sS -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$TLS_DIR/ca.pem" \
        --aws-sigv4 "aws:amz:$BK_S3_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -I "$1/$BK_S3_BUCKET" 2>/dev/null || true
}

# The second s3proxy: TLS only, the same jar, JVM options, account and
# bucket directory as scripts/services' (which also runs, plain http).
start_tls_s3proxy() {
    TLS_DIR="$WORK/tls"
    install -d -m 755 "$TLS_DIR" "$TLS_DIR/tmp"
    local pass code deadline
    pass="$(openssl rand -hex 16)"
    # The name in the certificate: pgBackRest 2.45 matches only DNS names of
    # the subjectAltName (so "127.0.0.1" as a DNS name too), curl the IP.
    keytool -genkeypair -keyalg RSA -keysize 2048 -alias s3proxy -keystore "$TLS_DIR/ks.jks" \
        -storepass "$pass" -keypass "$pass" -dname CN=127.0.0.1 \
        -ext SAN=dns:127.0.0.1,dns:localhost,ip:127.0.0.1 -validity 2 >"$TLS_DIR/keytool.out" 2>&1 ||
        { cat "$TLS_DIR/keytool.out"; die "keytool -genkeypair"; }
    keytool -exportcert -rfc -alias s3proxy -keystore "$TLS_DIR/ks.jks" -storepass "$pass" \
        -file "$TLS_DIR/ca.pem" >>"$TLS_DIR/keytool.out" 2>&1 || { cat "$TLS_DIR/keytool.out"; die "keytool -exportcert"; }
    chmod 644 "$TLS_DIR/ca.pem"
    (
        umask 077
        cat >"$TLS_DIR/s3proxy.properties" <<EOP
s3proxy.secure-endpoint=https://127.0.0.1:$TLS_PORT
s3proxy.keystore-path=$TLS_DIR/ks.jks
s3proxy.keystore-password=$pass
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$AWS_ACCESS_KEY_ID
s3proxy.credential=$AWS_SECRET_ACCESS_KEY
jclouds.provider=filesystem-nio2
jclouds.filesystem.basedir=$BK_S3_DATA_DIR
EOP
    )
    java -Xmx128m -XX:-UsePerfData -Djava.io.tmpdir="$TLS_DIR/tmp" \
        -Dlogback.statusListenerClass=ch.qos.logback.core.status.NopStatusListener \
        -jar "$BK_S3PROXY_JAR" --properties "$TLS_DIR/s3proxy.properties" \
        </dev/null >"$TLS_DIR/s3proxy.log" 2>&1 &
    TLS_PID=$!
    TLS_ENDPOINT="https://127.0.0.1:$TLS_PORT"
    deadline=$(($(now_s) + 60))
    while code=$(s3_code "$TLS_ENDPOINT") && [[ "$code" == 000 ]]; do
        kill -0 "$TLS_PID" 2>/dev/null || { tail "$TLS_DIR/s3proxy.log"; die "the TLS s3proxy exited"; }
        (($(now_s) < deadline)) || { tail "$TLS_DIR/s3proxy.log"; die "the TLS s3proxy does not answer"; }
        nap 0.2
    done
    [[ "$code" == 200 ]] || { tail "$TLS_DIR/s3proxy.log"; die "a signed HEAD of the bucket over TLS got HTTP $code"; }
    echo "TLS s3proxy: pid $TLS_PID, $TLS_ENDPOINT (certificate $TLS_DIR/ca.pem, RSA 2048), bucket directory $BK_S3_DATA_DIR"
}

# ---------------------------------------------------------------- shippers

# ship_start dir|s3 (if not running) / ship_stop dir|s3 (SIGTERM).
ship_start() {
    [[ -z "${SHIP_PID[$1]}" ]] || return 0
    "$SHIPPER" --config "$WORK/bk-$1.conf" >>"$WORK/shipper-$1.log" 2>&1 &
    SHIP_PID[$1]=$!
}
ship_stop() {
    local pid="${SHIP_PID[$1]:-}"
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    SHIP_PID[$1]=""
}
# The sum of the shipper's consumer lag over the .wal and .snapshot
# partitions (its metrics endpoint); empty before it has any.
ship_lag() {
    local port=$METRICS_PORT_DIR
    [[ "$1" == s3 ]] && port=$METRICS_PORT_S3
    curl -s --max-time 2 "http://127.0.0.1:$port/metrics" 2>/dev/null |
        awk -v p="$BK_PREFIX" '$1 ~ "^bk_shipper_consumer_lag_messages[{]topic=\"" p "[.](wal|snapshot)\"" { n++; s += $NF }
                              END { if (n) print s }' || true
}
# COMMITS: "count sum over_1s" of the shipper's repository commits (the
# time to make a complete object durable: for S3 its upload) since it
# started.
ship_commits() {
    local port=$METRICS_PORT_DIR
    [[ "$1" == s3 ]] && port=$METRICS_PORT_S3
    COMMITS=$(curl -s --max-time 2 "http://127.0.0.1:$port/metrics" 2>/dev/null |
        awk '$1 == "bk_shipper_repository_commit_seconds_count" { n = $2 }
             $1 == "bk_shipper_repository_commit_seconds_sum" { s = $2 }
             $1 == "bk_shipper_repository_commit_seconds_bucket{le=\"1\"}" { le1 = $2 }
             END { printf "%d %.3f %d", n, s, n - le1 }') || COMMITS="0 0 0"
}

# ship_catch_up dir|s3: start the shipper, wait until everything in Kafka is
# in its repository (lag 0 twice, more than a second apart: the gauge is
# refreshed once a second).
ship_catch_up() {
    local deadline lag zeros=0
    ship_start "$1"
    deadline=$(($(now_s) + STEP_TIMEOUT))
    while :; do
        lag=$(ship_lag "$1")
        if [[ "$lag" == 0 ]]; then
            ((++zeros >= 2)) && return 0
        else
            zeros=0
        fi
        kill -0 "${SHIP_PID[$1]}" 2>/dev/null || { tail "$WORK/shipper-$1.log"; die "the $1 shipper exited"; }
        (($(now_s) < deadline)) || die "the $1 shipper has not caught up after $STEP_TIMEOUT s (lag ${lag:-?})"
        nap 1.1
    done
}

# The WAL the archiver has: no .ready file left.
wait_ready_gone() {
    local deadline
    deadline=$(($(now_s) + 900))
    while :; do
        local -a ready=("$BK_PGDATA"/pg_wal/archive_status/*.ready)
        ((${#ready[@]} == 0)) && return 0
        (($(now_s) < deadline)) || { echo "  warning: ${#ready[@]} .ready files left after 900 s"; return 0; }
        nap 0.2
    done
}
# prepare_step WHICH: what every timed backup starts from: a checkpoint,
# the WAL in Kafka, only the shipper WHICH (dir, s3 or none) running and
# caught up, dirty pages of the page cache written out.
prepare_step() {
    psql_q "CHECKPOINT"
    wait_ready_gone
    case "$1" in
    dir) ship_stop s3; ship_catch_up dir ;;
    s3) ship_stop dir; ship_catch_up s3 ;;
    none) ship_stop dir; ship_stop s3 ;;
    esac
    sync
}
db_bytes() { psql_q "SELECT sum(pg_database_size(oid)) FROM pg_database"; }

# ---------------------------------------------------------------- bk

# repo_files dir|s3: where that repository's objects are files (s3proxy's
# filesystem backend keeps each object as a file named by its key; bk goes
# through the S3 API only).
repo_files() { if [[ "$1" == dir ]]; then echo "$BK_REPO_DIR"; else echo "$S3_FILES"; fi; }

# BK_ID BK_START BK_STOP BK_FILES BK_READ BK_SENT BK_RETURNED_S
# BK_RECORD_S BK_STORED: one full bk_snapshot() into repository WHICH,
# timed until it is restorable there.
bk_snapshot_step() { # WHICH
    local which="$1" out t1 rec deadline restorable="" state
    BK_RECORD_S=""
    prepare_step "$which"
    ship_commits "$which"
    read -r COMMIT_N0 COMMIT_S0 COMMIT_SLOW0 <<<"$COMMITS"
    meter_start
    out=$(psql_q "SELECT snapshot_id, state, start_lsn, stop_lsn, files, bytes_read, bytes_sent FROM bk_snapshot(kind => 'full')") ||
        die "bk_snapshot() failed"
    t1=$EPOCHREALTIME
    IFS='|' read -r BK_ID state BK_START BK_STOP BK_FILES BK_READ BK_SENT <<<"$out"
    BK_RETURNED_S=$(calc "$t1 - $MT0" 3)
    [[ "$state" == complete ]] ||
        die "bk_snapshot() ended \"$state\": $(psql_q "SELECT coalesce(error, '') FROM bk_snapshot_history WHERE snapshot_id = '$BK_ID'")"
    # The shipper stores the record last; look for its file (cheap), then
    # ask bk list, which decides.
    rec="$(repo_files "$which")/$SID/snapshot/$BK_ID/snapshot.json"
    deadline=$(($(now_s) + STEP_TIMEOUT))
    while :; do
        if [[ -e "$rec" ]]; then
            [[ -n "$BK_RECORD_S" ]] || BK_RECORD_S=$(calc "$EPOCHREALTIME - $MT0" 3)
            restorable=$("$BK" list --config "$WORK/bk-$which.conf" --source "$SID" --json 2>>"$WORK/bk-list.err" |
                jq -r --arg id "$BK_ID" '.sources[].snapshots[] | select(.id == $id) | .restorable') || true
            [[ "$restorable" == true ]] && break
            nap 0.1
        else
            nap 0.05
        fi
        (($(now_s) < deadline)) || die "snapshot $BK_ID not restorable in $which after $STEP_TIMEOUT s (bk list: ${restorable:-?}; record present: $([[ -e "$rec" ]] && echo yes || echo no))"
    done
    meter_stop
    BK_STORED=$(files_bytes "$(repo_files "$which")/$SID/snapshot/$BK_ID")
    # The gauge and histogram are those of the last second: let it refresh.
    nap 1.2
    ship_commits "$which"
    read -r COMMIT_N COMMIT_S COMMIT_SLOW <<<"$COMMITS"
    COMMIT_N=$((COMMIT_N - COMMIT_N0))
    COMMIT_S=$(calc "$COMMIT_S - $COMMIT_S0" 3)
    COMMIT_SLOW=$((COMMIT_SLOW - COMMIT_SLOW0))
}

# ---------------------------------------------------------------- pgBackRest

PGBR_PASS=""
pgbr_conf_path() { echo "$WORK/pgbr/$1-$2.conf"; }  # TAG RUN
pgbr_repo_path() { echo "/$PGBR_PREFIX/$1-$2"; }     # TAG RUN: in the bucket
pgbr_setup() { # TAG RUN: a fresh path in the bucket and its stanza
    local tag="$1" run="$2" conf repo pmax="${1#pgbr-p}"
    conf=$(pgbr_conf_path "$tag" "$run")
    repo=$(pgbr_repo_path "$tag" "$run")
    rm -rf "${BK_S3_DATA_DIR:?}/$BK_S3_BUCKET$repo"
    pgbr_write_conf "$conf" "$repo" "$pmax" \
        "repo1-type=s3" "repo1-s3-bucket=$BK_S3_BUCKET" "repo1-s3-endpoint=127.0.0.1" \
        "repo1-storage-port=$TLS_PORT" "repo1-s3-region=$BK_S3_REGION" "repo1-s3-uri-style=path" \
        "repo1-s3-key=$AWS_ACCESS_KEY_ID" "repo1-s3-key-secret=$AWS_SECRET_ACCESS_KEY" \
        "repo1-storage-ca-file=$TLS_DIR/ca.pem" \
        "repo1-retention-full=99" "start-fast=y" "archive-check=n"
    as_pg pgbackrest --config="$conf" --stanza=bench stanza-create >"$WORK/pgbr/stanza-$tag-$run.out" 2>&1 ||
        { cat "$WORK/pgbr/stanza-$tag-$run.out"; die "pgbackrest stanza-create ($tag, run $run)"; }
}

# ---------------------------------------------------------------- the database

make_database() {
    section "the database"
    echo "pgbench -i -s $SCALE -F 90"
    local t0
    t0=$EPOCHREALTIME
    pgbench -i -s "$SCALE" -F 90 -q 2>&1 | tail -1
    echo "  $(calc "$EPOCHREALTIME - $t0" 1) s"
    # 1 KiB of random bytes per row (incompressible), fillfactor 80: 6 rows
    # per page, so RANDOM_MB MiB of pages.
    local rows=$((RANDOM_MB * 128 * 6))
    echo "bench_random: $rows rows of gen_random_bytes(1024), fillfactor 80 (about $RANDOM_MB MiB)"
    t0=$EPOCHREALTIME
    psql_q "CREATE TABLE bench_random (id int PRIMARY KEY, payload bytea NOT NULL) WITH (fillfactor = 80)"
    if ((rows > 0)); then
        psql_q "INSERT INTO bench_random SELECT g, gen_random_bytes(1024) FROM generate_series(1, $rows) g"
    fi
    echo "  $(calc "$EPOCHREALTIME - $t0" 1) s"
    echo "VACUUM (FREEZE, ANALYZE); VACUUM (FREEZE); CHECKPOINT"
    t0=$EPOCHREALTIME
    psql_q "VACUUM (FREEZE, ANALYZE)"
    psql_q "VACUUM (FREEZE)"
    psql_q "CHECKPOINT"
    echo "  $(calc "$EPOCHREALTIME - $t0" 1) s"
    echo "waiting for both shippers to archive the load's WAL"
    t0=$EPOCHREALTIME
    wait_ready_gone
    ship_catch_up dir
    ship_catch_up s3
    echo "  $(calc "$EPOCHREALTIME - $t0" 1) s ($(psql_q "SELECT archived_count || ' files archived, ' || failed_count || ' failed attempts' FROM pg_stat_archiver"))"
    echo "relations:"
    psql_q "SELECT rpad(c.relname, 24) || lpad(pg_size_pretty(pg_relation_size(c.oid)), 10)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') ORDER BY pg_relation_size(c.oid) DESC" | sed 's/^/  /'
    DB_BYTES0=$(db_bytes)
    echo "database size (sum of pg_database_size over all databases): $DB_BYTES0 bytes ($(mb "$DB_BYTES0") MB)"
    local plain packed
    plain=$(files_bytes "$BK_PGDATA/base" "$BK_PGDATA/global")
    packed=$(find "$BK_PGDATA/base" "$BK_PGDATA/global" -type f -print0 | xargs -0 cat | lz4 -1 -c | wc -c)
    echo "base/ + global/: $plain bytes; lz4 -1 of them: $packed bytes ($(calc "$packed / $plain" 3) of the size)"
    echo "DATABASE db_bytes=$DB_BYTES0 lz4_ratio=$(calc "$packed / $plain" 4) scale=$SCALE random_mb=$RANDOM_MB"
}

# ---------------------------------------------------------------- steps

declare -A SNAP_OF PGBR_LABEL_OF DB_OF

backup_step() { # CONTENDER RUN
    local c="$1" run="$2" db which ours
    section "full backup: $c, run $run"
    db=$(db_bytes)
    case "$c" in
    bk-dir | bk-s3)
        which=${c#bk-}
        bk_snapshot_step "$which"
        SNAP_OF[$c-$run]=$BK_ID
        # The largest objects, compressed, as stored (the shipper uploads an
        # object once it has all of it).
        local big
        big=$(find "$(repo_files "$which")/$SID/snapshot/$BK_ID" -type f -printf '%s\n' | sort -rn |
            awk 'NR <= 3 { printf "%s%.1f", (NR > 1 ? ", " : ""), $1 / 1e6 } END { print " MB" }')
        ours=$((D_PG + D_KAFKA + D_SHIPPER))
        [[ "$which" == s3 ]] && ours=$((ours + D_S3))
        echo "snapshot $BK_ID into the $which repository: $BK_FILES files, read $BK_READ bytes, sent $BK_SENT bytes, stored $BK_STORED bytes; start $BK_START, stop $BK_STOP"
        echo "  bk_snapshot() returned after $BK_RETURNED_S s; its record in the repository after $BK_RECORD_S s;" \
            "restorable after $D_SECS s: $(mb "$(calc "$db / $D_SECS" 0)") MB/s of the database, $(mb "$(calc "$BK_STORED / $D_SECS" 0)") MB/s stored"
        echo "  shipper: $COMMIT_N objects committed in the step, $COMMIT_S s in commits (finish + put-if-absent: on S3 the upload), $COMMIT_SLOW of them over 1 s; the largest objects $big"
        echo "  CPU: ours $(secs_of "$ours") s (PostgreSQL $(secs_of "$D_PG") s, broker $(secs_of "$D_KAFKA") s, shipper $(secs_of "$D_SHIPPER") s$([[ "$which" == s3 ]] && echo ", s3proxy $(secs_of "$D_S3") s"));" \
            "machine $(secs_of "$D_MACHINE") s (steal $(secs_of "$D_STEAL") s); this script (psql, bk list polling) $(secs_of "$D_SELF") s"
        result "phase=full contender=$c run=$run ok=1 db_bytes=$db seconds=$D_SECS mb_per_s=$(calc "$db / 1e6 / $D_SECS" 1)" \
            "returned_s=$BK_RETURNED_S record_s=$BK_RECORD_S commits=$COMMIT_N commit_s=$COMMIT_S commits_over_1s=$COMMIT_SLOW stored_bytes=$BK_STORED stored_mb_per_s=$(calc "$BK_STORED / 1e6 / $D_SECS" 1)" \
            "sent_bytes=$BK_SENT files=$BK_FILES ours_cpu_s=$(secs_of "$ours") cpu_s_per_gb=$(calc "$ours / $HZ / ($db / 1e9)" 2)" \
            "pg_cpu_s=$(secs_of "$D_PG") broker_cpu_s=$(secs_of "$D_KAFKA") shipper_cpu_s=$(secs_of "$D_SHIPPER") s3proxy_cpu_s=$(secs_of "$D_S3")" \
            "machine_cpu_s=$(secs_of "$D_MACHINE") steal_s=$(secs_of "$D_STEAL") harness_cpu_s=$(secs_of "$D_SELF") snapshot=$BK_ID"
        ;;
    pgbr-p1 | pgbr-p2)
        local conf log="$WORK/pgbr/backup-$c-$run.out" info label stored plain peak
        pgbr_setup "$c" "$run"
        conf=$(pgbr_conf_path "$c" "$run")
        prepare_step none
        meter_start
        /usr/bin/time -f "%M" -o "$WORK/time.out" \
            runuser -u postgres -- pgbackrest --config="$conf" --stanza=bench --type=full backup >"$log" 2>&1 ||
            { cat "$log"; die "pgbackrest backup ($c, run $run)"; }
        meter_stop
        peak=$(peak_kb "$WORK/time.out")
        [[ -s "$log" ]] && sed 's/^/  pgbackrest: /' "$log"
        info=$(as_pg pgbackrest --config="$conf" --stanza=bench --output=json info)
        label=$(jq -r '.[0].backup[-1].label' <<<"$info")
        stored=$(jq -r '.[0].backup[-1].info.repository.delta' <<<"$info")
        plain=$(jq -r '.[0].backup[-1].info.delta' <<<"$info")
        PGBR_LABEL_OF[$c-$run]=$label
        ours=$((D_SELF + D_PG + D_S3))
        echo "backup $label: $D_SECS s ($(mb "$(calc "$db / $D_SECS" 0)") MB/s of the database, $(mb "$(calc "$stored / $D_SECS" 0)") MB/s stored);" \
            "stored $stored bytes (in the bucket: $(files_bytes "$BK_S3_DATA_DIR/$BK_S3_BUCKET$(pgbr_repo_path "$c" "$run")/backup/bench/$label")), of $plain bytes of files"
        echo "  CPU: ours $(secs_of "$ours") s (pgbackrest $(secs_of "$D_SELF") s, PostgreSQL $(secs_of "$D_PG") s, s3proxy $(secs_of "$D_S3") s);" \
            "machine $(secs_of "$D_MACHINE") s (steal $(secs_of "$D_STEAL") s); pgbackrest peak RSS $peak kB"
        result "phase=full contender=$c run=$run ok=1 db_bytes=$db seconds=$D_SECS mb_per_s=$(calc "$db / 1e6 / $D_SECS" 1)" \
            "stored_bytes=$stored stored_mb_per_s=$(calc "$stored / 1e6 / $D_SECS" 1) plain_bytes=$plain ours_cpu_s=$(secs_of "$ours")" \
            "cpu_s_per_gb=$(calc "$ours / $HZ / ($db / 1e9)" 2) tool_cpu_s=$(secs_of "$D_SELF") pg_cpu_s=$(secs_of "$D_PG")" \
            "s3proxy_cpu_s=$(secs_of "$D_S3") machine_cpu_s=$(secs_of "$D_MACHINE") steal_s=$(secs_of "$D_STEAL") peak_kb=$peak label=$label"
        ;;
    esac
}

# bk restore's configuration for a restore contender.
restore_conf() {
    case "$1" in
    bk-dir) echo "$WORK/bk-dir.conf" ;;
    bk-s3) echo "$WORK/bk-s3.conf" ;;
    bk-s3-rj8) echo "$WORK/bk-s3-rj8.conf" ;;
    bk-s3-http) echo "$WORK/bk-s3-http.conf" ;;
    esac
}

# RESTORE_SECS etc.: one restore, timed, into a fresh directory.
restore_step() { # CONTENDER RUN
    local c="$1" run="$2" dir="$WORK/restore-$1" log="$WORK/restore-$1-$2.out" db what jobs ok=1 ours s3cpu=0
    section "restore: $c, run $run"
    rm -rf "$dir"
    install -d -o postgres -g postgres -m 700 "$dir"
    db=${DB_OF[$run]}
    sync
    case "$c" in
    bk-*)
        local id=${SNAP_OF[bk-s3-$run]}
        jobs=${BK_JOBS:-2}
        what="bk restore --snapshot $id --jobs $jobs ($(grep -E '^(repository|s3_endpoint|s3_read_jobs) ' "$(restore_conf "$c")" | sed 's/ = /=/' | tr '\n' ' ')"
        what="${what% })"
        meter_start
        /usr/bin/time -f "%M" -o "$WORK/time.out" \
            "$BK" restore --config "$(restore_conf "$c")" --source "$SID" --pgdata "$dir" --snapshot "$id" --jobs "$jobs" >"$log" 2>&1 ||
            { cat "$log"; die "$what"; }
        meter_stop
        ;;
    pgbr-s3)
        local tag=pgbr-p2 label conf
        has_backup pgbr-p2 || tag=pgbr-p1
        label=${PGBR_LABEL_OF[$tag-$run]}
        conf=$(pgbr_conf_path "$tag" "$run")
        jobs=2
        what="pgbackrest restore --set=$label --process-max=2 (the $tag backup, repo1-type=s3 over TLS)"
        meter_start
        /usr/bin/time -f "%M" -o "$WORK/time.out" \
            runuser -u postgres -- pgbackrest --config="$conf" --stanza=bench --pg1-path="$dir" --set="$label" \
            --process-max=2 restore >"$log" 2>&1 ||
            { cat "$log"; die "$what"; }
        meter_stop
        ;;
    esac
    case "$c" in
    bk-s3 | bk-s3-rj8 | pgbr-s3) s3cpu=$D_S3 ;;
    bk-s3-http) s3cpu=$D_S3H ;;
    esac
    ours=$((D_SELF + s3cpu))
    local peak restored
    peak=$(peak_kb "$WORK/time.out")
    restored=$(files_bytes "$dir")
    echo "$what: $D_SECS s = $(mb "$(calc "$db / $D_SECS" 0)") MB/s of the database ($db bytes); restored $restored bytes of files"
    echo "  CPU: ours $(secs_of "$ours") s (the restore $(secs_of "$D_SELF") s$([[ "$s3cpu" != 0 ]] && echo ", s3proxy $(secs_of "$s3cpu") s"));" \
        "machine $(secs_of "$D_MACHINE") s (steal $(secs_of "$D_STEAL") s); peak RSS $peak kB"
    # Untimed checks.
    if [[ "$c" == bk-* ]]; then
        if as_pg "$BK_PGBIN/pg_verifybackup" --no-parse-wal "$dir" >"$WORK/verify.out" 2>&1; then
            echo "  pg_verifybackup --no-parse-wal: $(tail -1 "$WORK/verify.out")"
        else
            ok=0
            echo "  pg_verifybackup --no-parse-wal FAILED:"
            awk 'NR <= 20 { print "    " $0 }' "$WORK/verify.out"
        fi
        # The manifest lists every file with its size, time and SHA-256.
        # Expected to differ: postgresql.auto.conf (its restore_command names
        # the configuration file), backup_label's time (written by the
        # restore) and so the manifest's own checksum.
        awk '/"Path": "postgresql.auto.conf"/ || /"Manifest-Checksum"/ { next }
             /"Path": "backup_label"/ { sub(/"Last-Modified": "[^"]*", /, "") } { print }' \
            "$dir/backup_manifest" >"$WORK/manifest-$c-$run"
        if [[ "$c" != bk-dir && -e "$WORK/manifest-bk-dir-$run" ]]; then
            if cmp -s "$WORK/manifest-$c-$run" "$WORK/manifest-bk-dir-$run"; then
                echo "  every file as in bk-dir's restore of the same snapshot (backup_manifest: size, time, SHA-256; postgresql.auto.conf aside)"
            else
                ok=0
                echo "  WARNING: files differ from bk-dir's restore of the same snapshot:"
                { diff "$WORK/manifest-bk-dir-$run" "$WORK/manifest-$c-$run" || true; } | awk 'NR <= 10 { print "    " $0 }'
            fi
        fi
    fi
    result "phase=restore contender=$c run=$run ok=$ok seconds=$D_SECS mb_per_s=$(calc "$db / 1e6 / $D_SECS" 1) db_bytes=$db" \
        "restored_bytes=$restored ours_cpu_s=$(secs_of "$ours") cpu_s_per_gb=$(calc "$ours / $HZ / ($db / 1e9)" 2)" \
        "tool_cpu_s=$(secs_of "$D_SELF") s3proxy_cpu_s=$(secs_of "$s3cpu") machine_cpu_s=$(secs_of "$D_MACHINE") steal_s=$(secs_of "$D_STEAL") peak_kb=$peak jobs=$jobs"
    rm -rf "$dir"
}

# Before the first restores: untimed restores through each s3proxy, so that
# neither JVM serves its first reads cold (the JIT has compiled the GET
# path), as in every later run: one by each bk contender, then one by
# pgBackRest (whole-object GETs, where bk's are ranges), then bk once more.
# With a single warm-up restore, s3proxy still spent 1.5-1.6 s of CPU on
# the first timed bk restore against 0.7-0.9 s on the third, and 1.2-1.4 s
# against 0.6-1.1 s on pgBackRest's (bench/results/s3-20261205T18*).
warm_up() {
    local c step
    section "warm-up (untimed): restores through each s3proxy"
    for step in bk pgbr bk; do
        for c in bk-s3 bk-s3-http pgbr-s3; do
            [[ " ${RESTORES[*]} " == *" $c "* && "$c" == "$step"-* ]] || continue
            rm -rf "$WORK/restore-warm"
            install -d -o postgres -g postgres -m 700 "$WORK/restore-warm"
            local t0=$EPOCHREALTIME
            if [[ "$c" == pgbr-s3 ]]; then
                local tag=pgbr-p2
                has_backup pgbr-p2 || tag=pgbr-p1
                runuser -u postgres -- pgbackrest --config="$(pgbr_conf_path "$tag" 1)" --stanza=bench \
                    --pg1-path="$WORK/restore-warm" --set="${PGBR_LABEL_OF[$tag-1]}" --process-max=2 \
                    restore >"$WORK/warm-$c.out" 2>&1 ||
                    { cat "$WORK/warm-$c.out"; die "pgbackrest restore (warm-up)"; }
            else
                "$BK" restore --config "$(restore_conf "$c")" --source "$SID" --pgdata "$WORK/restore-warm" \
                    --snapshot "${SNAP_OF[bk-s3-1]}" --jobs "${BK_JOBS:-2}" >"$WORK/warm-$c.out" 2>&1 ||
                    { cat "$WORK/warm-$c.out"; die "bk restore (warm-up, $c)"; }
            fi
            echo "  $c: $(calc "$EPOCHREALTIME - $t0" 2) s"
        done
    done
    rm -rf "$WORK/restore-warm"
}

# ---------------------------------------------------------------- profile

# perf record -a -g around one restore (untimed, not in the statistics).
profile_restore() { # CONTENDER RUN
    local c="$1" run="$2" data="$WORK/perf-$1.data" dir="$WORK/restore-profile" t0 secs pid_filter
    section "profile: $c (restore of run $run's backup under perf record -e cpu-clock -F 999 -a -g)"
    rm -rf "$dir"
    install -d -o postgres -g postgres -m 700 "$dir"
    sync
    perf record -e cpu-clock -F 999 -a -g -o "$data" >"$WORK/perf-$c.out" 2>&1 &
    PERF_PID=$!
    nap 1
    t0=$EPOCHREALTIME
    case "$c" in
    bk-s3)
        "$BK" restore --config "$WORK/bk-s3.conf" --source "$SID" --pgdata "$dir" --snapshot "${SNAP_OF[bk-s3-$run]}" \
            --jobs "${BK_JOBS:-2}" >"$WORK/profile-$c.out" 2>&1 || { cat "$WORK/profile-$c.out"; die "bk restore (profile)"; }
        pid_filter=bk
        ;;
    pgbr-s3)
        local tag=pgbr-p2
        has_backup pgbr-p2 || tag=pgbr-p1
        runuser -u postgres -- pgbackrest --config="$(pgbr_conf_path "$tag" "$run")" --stanza=bench --pg1-path="$dir" \
            --set="${PGBR_LABEL_OF[$tag-$run]}" --process-max=2 restore >"$WORK/profile-$c.out" 2>&1 ||
            { cat "$WORK/profile-$c.out"; die "pgbackrest restore (profile)"; }
        pid_filter=pgbackrest
        ;;
    esac
    secs=$(calc "$EPOCHREALTIME - $t0" 2)
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=""
    rm -rf "$dir"
    echo "restore under perf: $secs s"
    [[ -s "$data" ]] || { echo "no perf data"; cat "$WORK/perf-$c.out"; return 0; }
    echo "samples by process (all CPUs; $(nproc) x the wall time is the whole machine):"
    perf script -i "$data" -F comm,pid 2>/dev/null |
        awk -v s3="$TLS_PID" -v k="$KAFKA_PID" '
            { n++; p = $NF; comm = $0; sub(/[ \t]+[0-9]+[ \t]*$/, "", comm); sub(/^[ \t]+/, "", comm)
              if (p == s3) who = "s3proxy (TLS), all its JVM threads"
              else if (p == k) who = "Kafka broker"
              else if (comm == "bk" || comm == "pgbackrest") who = comm " (all processes and threads)"
              else if (p == 0) who = "idle (swapper)"
              else if (comm ~ /^kworker|^ksoftirq|^jbd2|^kdamond|^rcu|^kswapd/) who = "kernel threads"
              else who = "other: " comm
              c[who]++ }
            END { for (w in c) printf "  %6.2f%%  %s\n", 100 * c[w] / n, w }' | sort -rn | head -12 || true
    perf report -i "$data" --comm "$pid_filter" --percentage relative --no-children --sort dso,sym --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9]' >"$WORK/perf-$c.syms" || true
    echo "$pid_filter, share of its own samples: the kernel and each shared object:"
    awk '{ p = $1; sub(/%/, "", p); if ($3 == "[k]") u["kernel"] += p; else u[$2] += p }
         END { for (d in u) printf "  %6.2f%%  %s\n", u[d], d }' "$WORK/perf-$c.syms" | sort -rn | head -10 || true
    echo "$pid_filter, by symbol (share of its own samples):"
    head -25 "$WORK/perf-$c.syms"
    echo "s3proxy (TLS), by shared object (share of its own samples; [JIT] is compiled Java):"
    perf report -i "$data" --pid "$TLS_PID" --percentage relative --no-children --sort dso,sym --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9]' | awk '{ p = $1; sub(/%/, "", p); if ($2 == "[JIT]") u["[JIT]"] += p; else if ($3 == "[k]") u["kernel"] += p; else u[$2] += p }
                                  END { for (d in u) printf "  %6.2f%%  %s\n", u[d], d }' | sort -rn | head -8 || true
}

# ---------------------------------------------------------------- summary

summary() {
    section "summary (best and median of the runs; every run listed in order)"
    gawk -v aim=1.5 '
        function sorted(ph, c, key, arr,    i, k) { k = 0; for (i = 1; i <= n[ph, c]; i++) arr[++k] = v[ph, c, i, key] + 0; asort(arr); return k }
        function best(ph, c, key,    a, k) { k = sorted(ph, c, key, a); return k ? a[1] : 0 }
        function median(ph, c, key,    a, k) { k = sorted(ph, c, key, a); return !k ? 0 : (k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2) }
        function runs(ph, c, key,    i, s) { s = ""; for (i = 1; i <= n[ph, c]; i++) s = s sprintf("%s%.2f", i > 1 ? " / " : "", v[ph, c, i, key]); return s }
        function have(ph, c) { return n[ph, c] > 0 }
        function ratio(label, ph, slow, fast, check,    rb, rm, key) {
            if (!have(ph, slow) || !have(ph, fast)) return
            rb = best(ph, slow, "seconds") / best(ph, fast, "seconds"); rm = median(ph, slow, "seconds") / median(ph, fast, "seconds")
            printf "  %-58s best %5.2fx  median %5.2fx%s\n", label, rb, rm, check ? sprintf("  (aim >= %.1fx: %s)", aim, rb >= aim ? "met" : "NOT met") : ""
            key = ph "_" slow "_over_" fast; gsub("-", "_", key); rat = rat sprintf(" %s=%.2f %s_median=%.2f", key, rb, key, rm) }
        { delete kv; for (i = 2; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
          ph = kv["phase"]; c = kv["contender"]; k = ++n[ph, c]
          for (x in kv) v[ph, c, k, x] = kv[x]
          if (!((ph, c) in seen)) { seen[ph, c] = 1; order[ph] = order[ph] " " c }
          if (kv["ok"] != 1) bad = bad " " ph "/" c "/run" kv["run"] }
        END {
          print "full backup (bk: until restorable in that repository; MB/s = database size / seconds):"
          printf "  %-9s %8s %8s %8s  %-38s %9s %9s %9s %10s %8s %6s\n", "contender", "best s", "median", "MB/s", "runs (s)", "stored MB", "st. MB/s", "ours CPU", "CPU s/GB", "mach CPU", "steal"
          m = split(order["full"], cs, " ")
          for (j = 1; j <= m; j++) { c = cs[j]
            printf "  %-9s %8.2f %8.2f %8.1f  %-38s %9.1f %9.1f %8.1fs %10.2f %7.1fs %5.1fs\n", c, best("full", c, "seconds"), median("full", c, "seconds"),
                   v["full", c, 1, "db_bytes"] / 1e6 / best("full", c, "seconds"), runs("full", c, "seconds"),
                   median("full", c, "stored_bytes") / 1e6, median("full", c, "stored_bytes") / 1e6 / median("full", c, "seconds"),
                   median("full", c, "ours_cpu_s"), median("full", c, "cpu_s_per_gb"), median("full", c, "machine_cpu_s"), median("full", c, "steal_s")
            if (c ~ /^bk/) printf "  %-9s %8.2f %8.2f %8s  %-38s   (commits: median %.2f s in all, %d over 1 s)\n", "  returned", best("full", c, "returned_s"), median("full", c, "returned_s"), "", runs("full", c, "returned_s"),
                   median("full", c, "commit_s"), median("full", c, "commits_over_1s") }
          print "  (stored MB, stored MB/s, CPU: medians; ours CPU = PostgreSQL + broker + shipper (+ s3proxy for bk-s3); pgbr = pgbackrest + PostgreSQL + s3proxy)"
          ratio("backup bk-s3 vs bk-dir (time bk-s3 / time bk-dir)", "full", "bk-s3", "bk-dir", 0)
          ratio("backup pgbr-p1 / bk-s3 (bk-s3 as fast as)", "full", "pgbr-p1", "bk-s3", 0)
          ratio("backup pgbr-p2 / bk-s3 (bk-s3 as fast as)", "full", "pgbr-p2", "bk-s3", 0)
          print ""
          print "restore (not started; MB/s = database size / seconds):"
          printf "  %-11s %5s %8s %8s %8s  %-38s %9s %10s %9s %9s %6s\n", "contender", "jobs", "best s", "median", "MB/s", "runs (s)", "ours CPU", "CPU s/GB", "s3proxy", "mach CPU", "steal"
          m = split(order["restore"], cs, " ")
          for (j = 1; j <= m; j++) { c = cs[j]
            printf "  %-11s %5s %8.2f %8.2f %8.1f  %-38s %8.1fs %10.2f %8.1fs %8.1fs %5.1fs\n", c, v["restore", c, 1, "jobs"], best("restore", c, "seconds"), median("restore", c, "seconds"),
                   v["restore", c, 1, "db_bytes"] / 1e6 / best("restore", c, "seconds"), runs("restore", c, "seconds"),
                   median("restore", c, "ours_cpu_s"), median("restore", c, "cpu_s_per_gb"), median("restore", c, "s3proxy_cpu_s"), median("restore", c, "machine_cpu_s"), median("restore", c, "steal_s") }
          print "  (CPU: medians; ours = the restore + s3proxy for those from S3: the TLS one, or for bk-s3-http the plain-http one)"
          ratio("restore pgbr-s3 / bk-s3 (bk from S3 as fast as pgBackRest)", "restore", "pgbr-s3", "bk-s3", 1)
          ratio("restore bk-s3 vs bk-dir (time bk-s3 / time bk-dir)", "restore", "bk-s3", "bk-dir", 0)
          ratio("restore bk-s3 / bk-s3-rj8 (s3_read_jobs 8 as fast as 4)", "restore", "bk-s3", "bk-s3-rj8", 0)
          ratio("restore bk-s3 / bk-s3-http (http as fast as TLS)", "restore", "bk-s3", "bk-s3-http", 0)
          ratio("restore pgbr-s3 / bk-dir", "restore", "pgbr-s3", "bk-dir", 0)
          print ""
          print (bad == "") ? "all checks passed (ok=1 everywhere)" : "CHECKS FAILED in:" bad
          print ""
          print "RESULT phase=ratios ok=" (bad == "" ? 1 : 0) rat }' "$ROWS"
}

# ---------------------------------------------------------------- main

section "machine"
echo "date:       $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "commit:     $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- common extension shipper repository cli 2>/dev/null || echo ' (common/, extension/, shipper/, repository/ or cli/ modified)')"
echo "cpu:        $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; $(free -g | awk '/^Mem:/ { print $2 " GB RAM" }')"
# shellcheck disable=SC1091
echo "os:         $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
if ! command -v pgbackrest >/dev/null || ! command -v jq >/dev/null; then
    echo "installing pgbackrest and jq (apt-get)"
    apt-get install -y -q pgbackrest jq >/dev/null
fi
echo "postgresql: $(/usr/lib/postgresql/15/bin/postgres --version)"
echo "pgbackrest: $(pgbackrest version)$([[ "$(pgbackrest version)" == "pgBackRest 2.45" ]] || echo ' (WARNING: the issue asks for 2.45)')"
echo "java:       $(java -version 2>&1 | head -1); libcurl $(curl --version | head -1 | cut -d' ' -f2); openssl $(openssl version | cut -d' ' -f2)"
echo "disk:       $(df -h /tmp | awk 'NR == 2 { print $1 ", " $4 " free" }')"
echo "load:       $(cut -d' ' -f1-3 /proc/loadavg)"
echo "settings:   S3B_SCALE=$SCALE S3B_RANDOM_MB=$RANDOM_MB S3B_RUNS=$RUNS S3B_BACKUPS='${BACKUPS[*]}' S3B_RESTORES='${RESTORES[*]}' S3B_BK_JOBS=${BK_JOBS:-default} S3B_PROFILE=$PROFILE"

if [[ "$BUILD" == 1 ]]; then
    section "build and install"
    make -s
    make -s install >/dev/null
fi
stat -c '  %y %n' "$BK" "$SHIPPER" /usr/lib/postgresql/15/lib/bk.so

section "services"
"$SERVICES" stop >/dev/null 2>&1 || true
"$SERVICES" start pg kafka s3
export_env
echo "PostgreSQL $PGPORT (data $BK_PGDATA), Kafka $BK_KAFKA_BROKERS, s3proxy (http) $BK_S3_ENDPOINT, bucket $BK_S3_BUCKET in $BK_S3_DATA_DIR"
start_tls_s3proxy

"$BK" keygen --out "$WORK/bk.key" >/dev/null
chmod 644 "$WORK/bk.key.pub"
# Root's, readable by group postgres: root's bk restore and postgres's bk
# wal-get (the restore_command) both read it, and refuse one postgres owns.
chgrp postgres "$WORK/bk.key" && chmod 0640 "$WORK/bk.key"
BK_PREFIX="bkbench-s3-$$"
BK_REPO_DIR="$WORK/bk-repo"
S3_PREFIX="bkbench-s3-$$"
S3_FILES="$BK_S3_DATA_DIR/$BK_S3_BUCKET/$S3_PREFIX"
PGBR_PREFIX="bkbench-pgbr-$$"
PGBR_FILES="$BK_S3_DATA_DIR/$BK_S3_BUCKET/$PGBR_PREFIX"
(
    umask 077
    printf 'access_key_id = %s\nsecret_access_key = %s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$WORK/s3.key"
)
chgrp postgres "$WORK/s3.key" && chmod 0640 "$WORK/s3.key" # as bk.key
install -d -m 700 "$WORK/spool"
common_conf="kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $BK_PREFIX
key_file = $WORK/bk.key"
s3_conf="repository = s3://$BK_S3_BUCKET/$S3_PREFIX
s3_region = $BK_S3_REGION
s3_uri_style = path
s3_access_key_file = $WORK/s3.key
spool_dir = $WORK/spool"
printf '%s\n' "$common_conf" "repository = $BK_REPO_DIR" "shipper_id = bench-s3-dir-$$" "group_id = bench-s3-dir-$$" \
    "metrics_listen = 127.0.0.1:$METRICS_PORT_DIR" >"$WORK/bk-dir.conf"
printf '%s\n' "$common_conf" "$s3_conf" "s3_endpoint = $TLS_ENDPOINT" "s3_ca_file = $TLS_DIR/ca.pem" \
    "shipper_id = bench-s3-s3-$$" "group_id = bench-s3-s3-$$" "metrics_listen = 127.0.0.1:$METRICS_PORT_S3" >"$WORK/bk-s3.conf"
# Restore-only variants of the S3 configuration.
{ grep -v '^metrics_listen' "$WORK/bk-s3.conf"; echo "s3_read_jobs = 8"; } >"$WORK/bk-s3-rj8.conf"
grep -v -E '^(metrics_listen|s3_endpoint|s3_ca_file) ' "$WORK/bk-s3.conf" >"$WORK/bk-s3-http.conf"
echo "s3_endpoint = $BK_S3_ENDPOINT" >>"$WORK/bk-s3-http.conf"
chmod 644 "$WORK"/bk-*.conf
"$BK" init --config "$WORK/bk-dir.conf" >"$WORK/bk-init.out" 2>&1 || { cat "$WORK/bk-init.out"; die "bk init"; }
echo "bk, S3 repository: $(grep -E '^(repository|s3_endpoint|s3_ca_file|s3_uri_style|spool_dir|s3_access_key_file) ' "$WORK/bk-s3.conf" | sed 's/ = /=/' | tr '\n' ' ')"
echo "  (s3_read_jobs 4 and s3_part_size 16MiB: the defaults; $WORK/s3.key mode $(stat -c %a "$WORK/s3.key"))"
echo "bk, directory repository: $BK_REPO_DIR; both shippers read topics $BK_PREFIX.* in groups of their own"
ship_start dir
ship_start s3
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
psql_q "CREATE EXTENSION bk; CREATE EXTENSION pgcrypto"
psql_q "SELECT string_agg(name || ' = ' || quote_literal(setting), ', ' ORDER BY name) FROM pg_settings
        WHERE name IN ('archive_mode', 'archive_library', 'autovacuum', 'data_checksums', 'max_wal_size',
                       'checkpoint_timeout', 'shared_buffers', 'fsync', 'wal_level', 'full_page_writes')"
echo "source $SID; broker pid $KAFKA_PID; shippers: dir pid ${SHIP_PID[dir]}, s3 pid ${SHIP_PID[s3]}"
install -d -o postgres -g postgres -m 750 "$WORK/pgbr" "$WORK/pgbr/log" "$WORK/pgbr/lock"
# shellcheck disable=SC2034 # for pgbr_write_conf (lib.sh)
PGBR_PASS="$(openssl rand -base64 48 | tr -d '\n/+=')"
echo "pgBackRest: repo1-type=s3 repo1-s3-endpoint=127.0.0.1 repo1-storage-port=$TLS_PORT repo1-s3-uri-style=path"
echo "  repo1-storage-ca-file=$TLS_DIR/ca.pem (TLS verified) repo1-cipher-type=aes-256-cbc compress-type=lz4 compress-level=1"
echo "  start-fast=y archive-check=n (the WAL goes to bk); a fresh path in the bucket per backup; restore --process-max=2"
echo "bk restore: --jobs ${BK_JOBS:-2}"

make_database

for ((run = 1; run <= RUNS; run++)); do
    shift_by=$(((run - 1) % ${#BACKUPS[@]}))
    ORDER=("${BACKUPS[@]:shift_by}" "${BACKUPS[@]:0:shift_by}")
    section "run $run of $RUNS: backups in the order ${ORDER[*]}"
    DB_OF[$run]=$(db_bytes)
    for c in "${ORDER[@]}"; do
        backup_step "$c" "$run"
    done
    # Both repositories get every snapshot (untimed), then no shipper runs.
    section "run $run: both shippers catch up"
    t0=$EPOCHREALTIME
    psql_q "CHECKPOINT"
    wait_ready_gone
    ship_catch_up dir
    ship_catch_up s3
    ship_stop dir
    ship_stop s3
    echo "  $(calc "$EPOCHREALTIME - $t0" 1) s; snapshot ${SNAP_OF[bk-s3-$run]:-} stored: $(files_bytes "$BK_REPO_DIR/$SID/snapshot/${SNAP_OF[bk-s3-$run]:-none}") bytes in the directory," \
        "$(files_bytes "$S3_FILES/$SID/snapshot/${SNAP_OF[bk-s3-$run]:-none}") in the bucket"
    shift_by=$(((run - 1) % ${#RESTORES[@]}))
    RORDER=("${RESTORES[@]:shift_by}" "${RESTORES[@]:0:shift_by}")
    # bk-dir first: the other bk restores' manifests are compared to its.
    if [[ " ${RESTORES[*]} " == *" bk-dir "* ]]; then
        mapfile -t RORDER < <(echo bk-dir; printf '%s\n' "${RORDER[@]}" | grep -v -x bk-dir)
    fi
    ((run == 1)) && warm_up
    section "run $run: restores in the order ${RORDER[*]}"
    for c in "${RORDER[@]}"; do
        restore_step "$c" "$run"
    done
    # Keep the disk free: the previous run's backups go (the last run's stay
    # for the profile).
    if ((run > 1)); then
        prev=$((run - 1))
        for c in bk-dir bk-s3; do
            id=${SNAP_OF[$c-$prev]:-}
            [[ -n "$id" ]] && rm -rf "${BK_REPO_DIR:?}/$SID/snapshot/$id" "${S3_FILES:?}/$SID/snapshot/$id"
        done
        rm -rf "${PGBR_FILES:?}"/*-"$prev"
    fi
done

section "repositories at the end"
echo "directory: $(files_bytes "$BK_REPO_DIR") bytes; bucket, bk: $(files_bytes "$S3_FILES") bytes; bucket, pgBackRest: $(files_bytes "$PGBR_FILES") bytes"
echo "bk list on S3:"
"$BK" list --config "$WORK/bk-s3.conf" --source "$SID" | sed 's/^/  /'
echo "pg_stat_archiver: $(psql_q "SELECT archived_count || ' archived, ' || failed_count || ' failed attempts' FROM pg_stat_archiver")"

summary

if [[ "$PROFILE" == 1 ]]; then
    section "where the time goes (untimed extras, not in the statistics above)"
    for which in dir s3; do
        t0=$EPOCHREALTIME
        "$BK" list --config "$WORK/bk-$which.conf" --source "$SID" --json >/dev/null
        echo "bk list --json, $which repository: $(calc "$EPOCHREALTIME - $t0" 2) s"
    done
    if command -v strace >/dev/null && [[ " ${RESTORES[*]} " == *" bk-s3 "* ]]; then
        rm -rf "$WORK/restore-strace"
        install -d -o postgres -g postgres -m 700 "$WORK/restore-strace"
        t0=$EPOCHREALTIME
        strace -f -c -o "$WORK/strace.out" "$BK" restore --config "$WORK/bk-s3.conf" --source "$SID" --pgdata "$WORK/restore-strace" \
            --snapshot "${SNAP_OF[bk-s3-$RUNS]}" --jobs "${BK_JOBS:-2}" >/dev/null 2>&1 || echo "  (bk restore under strace failed)"
        echo "bk restore from S3 under strace -f -c: $(calc "$EPOCHREALTIME - $t0" 2) s; the top system calls:"
        head -14 "$WORK/strace.out" | sed 's/^/  /'
        rm -rf "$WORK/restore-strace"
    fi
    if command -v strace >/dev/null && [[ " ${RESTORES[*]} " == *" pgbr-s3 "* ]]; then
        tag=pgbr-p2
        has_backup pgbr-p2 || tag=pgbr-p1
        rm -rf "$WORK/restore-strace"
        install -d -o postgres -g postgres -m 700 "$WORK/restore-strace"
        t0=$EPOCHREALTIME
        strace -f -c -o "$WORK/strace-pgbr.out" runuser -u postgres -- pgbackrest --config="$(pgbr_conf_path "$tag" "$RUNS")" \
            --stanza=bench --pg1-path="$WORK/restore-strace" --set="${PGBR_LABEL_OF[$tag-$RUNS]}" --process-max=2 restore \
            >/dev/null 2>&1 || echo "  (pgbackrest restore under strace failed)"
        echo "pgbackrest restore under strace -f -c: $(calc "$EPOCHREALTIME - $t0" 2) s; the top system calls:"
        head -14 "$WORK/strace-pgbr.out" | sed 's/^/  /'
        echo "  fsync and fdatasync calls: $(awk '$NF == "fsync" || $NF == "fdatasync" { printf "%s %s ", $NF, $(NF - 1) }' "$WORK/strace-pgbr.out")"
        rm -rf "$WORK/restore-strace"
    fi
    jobs=4
    if [[ " ${RESTORES[*]} " == *" bk-s3 "* ]]; then
        rm -rf "$WORK/restore-j$jobs"
        install -d -o postgres -g postgres -m 700 "$WORK/restore-j$jobs"
        sync
        meter_start
        "$BK" restore --config "$WORK/bk-s3.conf" --source "$SID" --pgdata "$WORK/restore-j$jobs" \
            --snapshot "${SNAP_OF[bk-s3-$RUNS]}" --jobs "$jobs" >/dev/null 2>&1 || die "bk restore --jobs $jobs"
        meter_stop
        echo "bk restore from S3 --jobs $jobs: $D_SECS s (the restore $(secs_of "$D_SELF") s CPU, s3proxy $(secs_of "$D_S3") s; machine $(secs_of "$D_MACHINE") s)"
        rm -rf "$WORK/restore-j$jobs"
    fi
    if command -v perf >/dev/null; then
        [[ " ${RESTORES[*]} " == *" bk-s3 "* ]] && profile_restore bk-s3 "$RUNS"
        [[ " ${RESTORES[*]} " == *" pgbr-s3 "* ]] && profile_restore pgbr-s3 "$RUNS"
    else
        echo "(no perf: no profile)"
    fi
fi

section "done"
echo "finished $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
