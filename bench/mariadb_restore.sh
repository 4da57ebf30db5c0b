#!/usr/bin/env bash
# MariaDB restore: "bk restore" (the snapshot loaded with parallel LOAD DATA
# LOCAL, then the archived binlog replayed with mariadb-binlog | mariadb
# --binary-mode) against loading a mariadb-dump file with mariadb, and
# against mariabackup --prepare + --copy-back + server start, all from the
# same database of 1 GB and more at the same moment, each into a fresh
# empty server, in one run.
#
# Usage: bench/mariadb_restore.sh   (as root: mariabackup reads the source's
#                                    datadir and writes the new one)
#
# What it does, end to end:
#   1. a private MariaDB 10.11 and Kafka (scripts/services, state directory
#      /tmp/bkbench, ports 28306/28092/28093); the buffer pool grown online
#      to MDR_BUFFER_POOL (scripts/services starts mariadbd with 128M).
#   2. the database "bench" as bench/mariadb.sh builds it: sysbench
#      oltp_read_write prepare (MDR_TABLES x MDR_TABLE_SIZE rows) and
#      bench.random_bytes (MDR_RANDOM_MB MiB of RANDOM_BYTES(1024) rows);
#      then FLUSH BINARY LOGS, bk-mysql-agent (range_interval 500ms) and
#      bk-shipper.
#   3. the backups, one after the other on the quiet database (no write in
#      between, so all three hold the same state; their binlog coordinates
#      are printed): SELECT bk_snapshot('jobs=2') (waited for until "bk
#      list" shows it restorable); mariadb-dump --single-transaction
#      --master-data=2 --routines --events --databases bench > dump.sql
#      (plain SQL: no compression or encryption to undo on restore, which
#      favours the dump); mariabackup --backup --target-dir (kept unprepared;
#      every run prepares a fresh copy).  CHECKSUM TABLE of every table of
#      bench ("the snapshot state").
#   4. a fixed write workload: sysbench oltp_write_only, MDR_WORKLOAD_SECONDS
#      s (or MDR_WORKLOAD_EVENTS transactions), MDR_WORKLOAD_THREADS threads; the end is SHOW MASTER STATUS right
#      after it (END); CHECKSUM TABLE again ("the end state"); FLUSH BINARY
#      LOGS, then wait until "bk list" has the binlog archived past END.
#   5. MDR_RUNS runs, the order of the contenders rotated by one each run;
#      each restore goes into a fresh empty server (scripts/services, its
#      state directory removed first), whose buffer pool is grown to
#      MDR_TARGET_BUFFER_POOL before the clock starts (not for mariabackup,
#      whose server is started inside the timed step); "sync" before each:
#      bk:          bk restore --target-position END --jobs MDR_JOBS --json
#                   into /tmp/bkbench-target (port 28307), over its socket;
#                   the wall time, and load_seconds / replay_seconds from
#                   its JSON (the rest is reading and checking the archive
#                   before the server is touched, and the finish);
#      dump:        mariadb --init-command='SET SESSION sql_log_bin = 0'
#                   < dump.sql into /tmp/bkbench-target (the same server
#                   settings; sql_log_bin = 0 because bk does not binlog its
#                   load either); then, timed apart, the same binlog
#                   replayed from the dump's coordinates to END from the
#                   source's binlog files (mariadb-binlog --start-position
#                   --stop-position | mariadb --binary-mode): what a
#                   point-in-time restore from a dump needs;
#      mariabackup: cp -a of the unprepared backup (untimed), then timed:
#                   mariabackup --prepare, --copy-back into a new datadir
#                   (/tmp/bkbench-mb/mariadb/data) and scripts/services
#                   start mariadb (port 28308) until it answers SELECT 1;
#                   then, timed apart, the same binlog replay as the dump's
#                   from the backup's coordinates.
#      CPU (utime+stime from /proc): the tools this script ran and reaped
#      (bk and its mariadb-binlog and mariadb children; mariadb;
#      mariabackup and scripts/services), the target mariadbd, and the whole
#      machine from /proc/stat.
#      With MDR_VERIFY=1 (default) every restore of the first run is
#      checked: CHECKSUM TABLE of every table of bench on the target equals
#      the source's at the matching moment (the snapshot state after a
#      dump load or mariabackup start, the end state after bk restore and
#      after a replay).  Untimed.
#   6. the summary: best and median of each, the ratios, the aim (bk
#      restore at least 2x as fast as the mariadb-dump load).
# Everything printed also goes to bench/results/mariadb_restore-<UTC
# date-time>.txt.
#
# Environment (defaults in brackets):
#   MDR_TABLES              sysbench tables [8]
#   MDR_TABLE_SIZE          rows per sysbench table [500000]
#   MDR_RANDOM_MB           MiB of random bytes in bench.random_bytes [400]
#   MDR_WORKLOAD_SECONDS    seconds of oltp_write_only after the backups [20]
#   MDR_WORKLOAD_THREADS    its threads [2]
#   MDR_WORKLOAD_EVENTS     > 0: that many transactions instead (sysbench
#                           --events, no time limit), so that runs of this
#                           script replay the same amount of binlog [0]
#   MDR_RUNS                restore runs, interleaved [3]
#   MDR_CONTENDERS          [bk dump mariabackup]
#   MDR_JOBS                bk restore --jobs [2]
#   MDR_BUFFER_POOL         the source's innodb_buffer_pool_size [4G]
#   MDR_TARGET_BUFFER_POOL  the restore targets' innodb_buffer_pool_size [2G]
#   MDR_PEER_REPLAY         1: replay the binlog after the dump load and
#                           after mariabackup too [1]
#   MDR_VERIFY              1: checksum every restore of the first run [1]
#   MDR_BUILD               1: make and make install first [1]
#   MDR_KEEP                1: keep the work directory [0]
set -euo pipefail
shopt -s nullglob

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

TABLES=${MDR_TABLES:-8}
TABLE_SIZE=${MDR_TABLE_SIZE:-500000}
RANDOM_MB=${MDR_RANDOM_MB:-400}
WL_SECONDS=${MDR_WORKLOAD_SECONDS:-20}
WL_THREADS=${MDR_WORKLOAD_THREADS:-2}
WL_EVENTS=${MDR_WORKLOAD_EVENTS:-0}
RUNS=${MDR_RUNS:-3}
read -r -a CONTENDERS <<<"${MDR_CONTENDERS:-bk dump mariabackup}"
JOBS=${MDR_JOBS:-2}
BUFFER_POOL=${MDR_BUFFER_POOL:-4G}
TARGET_BUFFER_POOL=${MDR_TARGET_BUFFER_POOL:-2G}
PEER_REPLAY=${MDR_PEER_REPLAY:-1}
VERIFY=${MDR_VERIFY:-1}
BUILD=${MDR_BUILD:-1}
KEEP=${MDR_KEEP:-0}

for v in "$TABLES" "$TABLE_SIZE" "$RUNS" "$WL_SECONDS" "$WL_THREADS" "$JOBS"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "MDR_TABLES, MDR_TABLE_SIZE, MDR_RUNS, MDR_WORKLOAD_SECONDS, MDR_WORKLOAD_THREADS and MDR_JOBS must be whole numbers > 0" >&2; exit 2; }
done
[[ "$RANDOM_MB" =~ ^[0-9]+$ && "$WL_EVENTS" =~ ^[0-9]+$ ]] || { echo "MDR_RANDOM_MB and MDR_WORKLOAD_EVENTS must be whole numbers" >&2; exit 2; }
for c in "${CONTENDERS[@]}"; do
    case "$c" in
    bk | dump | mariabackup) ;;
    *) echo "unknown contender \"$c\" (have: bk dump mariabackup)" >&2; exit 2 ;;
    esac
done
[[ "$(id -u)" == 0 ]] || { echo "run as root (mariabackup reads the server's datadir)" >&2; exit 2; }

# Our own state directories and ports (the tests use 23306/29092 and
# 27306/27307, bench/mariadb.sh 58606/58292).
export BK_SERVICES_DIR=/tmp/bkbench
export BK_PG_PORT=28432
export BK_MYSQL_PORT=28306
export BK_KAFKA_PORT=28092
export BK_KAFKA_CONTROLLER_PORT=28093
TARGET_DIR=/tmp/bkbench-target
TARGET_PORT=28307
TARGET_SOCKET="$TARGET_DIR/mariadb/mysqld.sock"
MB_DIR=/tmp/bkbench-mb
MB_PORT=28308
MB_SOCKET="$MB_DIR/mariadb/mysqld.sock"
SERVICES="$REPO_ROOT/scripts/services"
BK=/usr/local/bin/bk
SHIPPER=/usr/local/bin/bk-shipper
AGENT=/usr/local/bin/bk-mysql-agent
DB=bench
ROLE=bk_bench_role

. "$REPO_ROOT/bench/lib.sh"
bench_output mariadb_restore

WORK="$(mktemp -d /tmp/bk-mdr-bench.XXXXXX)"
chmod 755 "$WORK"
ROWS="$WORK/results.tsv" # the RESULT lines, for the summary
: >"$ROWS"
SHIPPER_PID=""
AGENT_PID=""
KAFKA_PID=""
MYSQLD_PID=""

bench_nap_init "$WORK"

target_services() { BK_SERVICES_DIR="$TARGET_DIR" BK_MYSQL_PORT="$TARGET_PORT" "$SERVICES" "$@"; }
mb_services() { BK_SERVICES_DIR="$MB_DIR" BK_MYSQL_PORT="$MB_PORT" "$SERVICES" "$@"; }

stop_agent() {
    if [[ -n "$AGENT_PID" ]]; then
        kill -TERM "$AGENT_PID" 2>/dev/null || true
        wait "$AGENT_PID" 2>/dev/null || true
        AGENT_PID=""
    fi
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    echo
    echo "== cleaning up"
    stop_agent
    stop_shipper
    # With no names, stop removes the whole state directory.
    target_services stop >/dev/null 2>&1 || echo "warning: could not stop the target server ($TARGET_DIR)" >&2
    mb_services stop >/dev/null 2>&1 || echo "warning: could not stop the mariabackup server ($MB_DIR)" >&2
    rmdir "$MB_DIR" 2>/dev/null || true # created by mariabackup_step: no services marker in it
    bench_finish "$KEEP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "FAILED: $*" >&2; exit 1; }
secs_of() { calc "$1 / $HZ" 2; } # TICKS -> seconds
now_s() { echo "${EPOCHREALTIME%.*}"; }
dusb() { du -sb "$1" | cut -f1; }
result() { echo "RESULT $*" >>"$ROWS"; echo "  RESULT $*"; }
my() { mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_TCP_PORT" -u root -N -B -r -e "$1"; }
# The targets over their sockets: scripts/services env exports MYSQL_HOST
# and MYSQL_TCP_PORT, which the client prefers to -S unless told the
# protocol and host.
tmy() { mariadb --no-defaults --protocol=SOCKET -h localhost -S "$TARGET_SOCKET" -u root -N -B -r -e "$1"; }
mbmy() { mariadb --no-defaults --protocol=SOCKET -h localhost -S "$MB_SOCKET" -u root -N -B -r -e "$1"; }
sock_my() { # SOCKET SQL
    mariadb --no-defaults --protocol=SOCKET -h localhost -S "$1" -u root -N -B -r -e "$2"
}

# meter_start / meter_stop PID: wall clock and CPU ticks of a step.  PID is
# the target mariadbd (may be started inside the step: then pass it to
# meter_stop only, MT_PID0 empty).  After meter_stop: D_SECS, D_MACHINE,
# D_SELF (this script's reaped children), D_TARGET (ticks).
meter_start() { # [PID]
    machine_ticks
    MM0=$MACHINE
    self_ticks
    MS0=$SELF
    MP0=0
    if [[ -n "${1:-}" ]]; then
        proc_own_ticks "$1"
        MP0=${OWN:-0}
    fi
    MT0=$EPOCHREALTIME
}
meter_stop() { # PID
    local t1=$EPOCHREALTIME
    machine_ticks
    D_MACHINE=$((MACHINE - MM0))
    self_ticks
    D_SELF=$((SELF - MS0))
    proc_own_ticks "$1"
    D_TARGET=$((${OWN:-$MP0} - MP0))
    D_SECS=$(calc "$t1 - $MT0" 3)
}

# ---------------------------------------------------------------- services

start_agent() {
    "$AGENT" --config "$1" >>"$WORK/agent.log" 2>&1 &
    AGENT_PID=$!
    local deadline=$(($(now_s) + 60))
    while (($(grep -c "streaming the binlog from" "$WORK/agent.log") < 1)); do
        kill -0 "$AGENT_PID" 2>/dev/null || { tail -20 "$WORK/agent.log"; die "the agent exited"; }
        (($(now_s) < deadline)) || { tail -20 "$WORK/agent.log"; die "the agent does not stream after 60 s"; }
        nap 0.2
    done
}

# wait_archived FILE POS: "bk list" has the binlog archived to FILE:POS or
# beyond.
wait_archived() {
    local file="$1" pos="$2" deadline got
    deadline=$(($(now_s) + 600))
    while :; do
        got=$("$BK" list --json --config "$BK_CONF" --source "$SOURCE" 2>/dev/null |
            jq -r --arg f "$file" --argjson p "$pos" '[.. | objects | select(has("binlog_archived_to")) | .binlog_archived_to | select(. != null) | select(.file > $f or (.file == $f and .pos >= $p))] | length' 2>/dev/null || echo 0)
        [[ "$got" =~ ^[1-9] ]] && return 0
        (($(now_s) < deadline)) || die "the binlog is not archived to $file:$pos after 600 s"
        nap 0.3
    done
}
# no_dirty_pages: the source's buffer pool flushed (the backups do not
# compete with the flushing of the load).
no_dirty_pages() {
    local deadline dirty
    my "SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0.001; SET GLOBAL innodb_max_dirty_pages_pct = 0"
    deadline=$(($(now_s) + 600))
    while :; do
        dirty=$(my "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'")
        ((dirty == 0)) && break
        (($(now_s) < deadline)) || { echo "  warning: $dirty dirty pages left after 600 s"; break; }
        nap 0.5
    done
    my "SET GLOBAL innodb_max_dirty_pages_pct = 90; SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0"
}

# grow_pool SOCKET SIZE: innodb_buffer_pool_size set online, waited for.
grow_pool() {
    local want deadline status
    want=$(numfmt --from=iec "$2")
    sock_my "$1" "SET GLOBAL innodb_buffer_pool_size = $want"
    deadline=$(($(now_s) + 120))
    while :; do
        status=$(sock_my "$1" "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_RESIZE_STATUS'")
        [[ "$(sock_my "$1" "SELECT @@innodb_buffer_pool_size")" == "$want" && ( -z "$status" || "$status" == *ompleted* ) ]] && break
        (($(now_s) < deadline)) || { echo "  warning: buffer pool resize to $2 not finished after 120 s"; break; }
        nap 0.5
    done
}

# target_reset: a fresh, empty target server (its state removed).
target_reset() {
    target_services stop mariadb >/dev/null 2>&1 || true
    rm -rf "${TARGET_DIR:?}/mariadb"
    target_services start mariadb >>"$WORK/target-start.log" 2>&1 || { tail -20 "$WORK/target-start.log"; die "target server start"; }
    grow_pool "$TARGET_SOCKET" "$TARGET_BUFFER_POOL"
    read -r TARGET_PID <"$TARGET_DIR/mariadb/mariadbd.pid"
}
mb_clear() {
    mb_services stop mariadb >/dev/null 2>&1 || true
    rm -rf "${MB_DIR:?}/mariadb"
}

# ---------------------------------------------------------------- checksums

# checksums SOCKET-OR-"source" OUT: CHECKSUM TABLE of every base table of
# bench, sorted, into OUT.
checksums() {
    local q tables
    if [[ "$1" == source ]]; then q=my; else q="sock_my $1"; fi
    tables=$($q "SELECT GROUP_CONCAT(CONCAT('\`$DB\`.\`', TABLE_NAME, '\`') ORDER BY TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$DB' AND TABLE_TYPE = 'BASE TABLE'")
    $q "CHECKSUM TABLE $tables" | LC_ALL=C sort >"$2"
}
# verify SOCKET EXPECTED WHAT: the target's checksums equal EXPECTED's.
verify() {
    local got="$WORK/verify.$$.txt"
    checksums "$1" "$got"
    if cmp -s "$2" "$got"; then
        echo "  verified: $3: CHECKSUM TABLE of all $(wc -l <"$got") tables equals the source's"
        return 0
    fi
    echo "  VERIFY FAILED: $3: the checksums differ from the source's:"
    diff "$2" "$got" | head -20 | sed 's/^/    /'
    VERIFY_FAILURES=$((VERIFY_FAILURES + 1))
}
VERIFY_FAILURES=0
BK_FAILURES=0

# ---------------------------------------------------------------- peers' replay

# replay_binlog SOCKET FILE POS: the source's binlog from FILE:POS to END
# (END_FILE:END_POS) replayed into the server at SOCKET, as a point-in-time
# restore from a dump or a mariabackup does it.
replay_binlog() {
    local sock="$1" file="$2" pos="$3" files=() f
    for f in "$BK_MYSQL_BINLOG_DIR"/mariadb-bin.[0-9]*; do
        f=${f##*/}
        [[ "$f" < "$file" || "$f" > "$END_FILE" ]] || files+=("$BK_MYSQL_BINLOG_DIR/$f")
    done
    ((${#files[@]} > 0)) || die "no binlog file from $file to $END_FILE in $BK_MYSQL_BINLOG_DIR"
    sock_my "$sock" "SET GLOBAL max_allowed_packet = 1073741824"
    mariadb-binlog --no-defaults --start-position="$pos" --stop-position="$END_POS" "${files[@]}" 2>"$WORK/replay.err" |
        mariadb --no-defaults --binary-mode --max-allowed-packet=1073741824 --protocol=SOCKET -h localhost -S "$sock" -u root \
            2>>"$WORK/replay.err" || { cat "$WORK/replay.err"; die "binlog replay into $sock"; }
}
peer_replay() { # NAME SOCKET PID FILE POS RUN
    local name="$1" sock="$2" pid="$3" file="$4" pos="$5" run="$6"
    [[ "$PEER_REPLAY" == 1 ]] || return 0
    sync
    meter_start "$pid"
    replay_binlog "$sock" "$file" "$pos"
    meter_stop "$pid"
    echo "  + binlog replay $file:$pos -> $END_FILE:$END_POS (mariadb-binlog | mariadb --binary-mode): $D_SECS s;" \
        "CPU: tools $(secs_of "$D_SELF") s, target mariadbd $(secs_of "$D_TARGET") s; machine $(secs_of "$D_MACHINE") s"
    result "phase=replay contender=$name run=$run seconds=$D_SECS tool_cpu_s=$(secs_of "$D_SELF") target_cpu_s=$(secs_of "$D_TARGET") machine_cpu_s=$(secs_of "$D_MACHINE")"
    if [[ "$VERIFY" == 1 && "$run" == 1 ]]; then verify "$sock" "$WORK/sum-end.txt" "$name + replay, the end state"; fi
}

# ---------------------------------------------------------------- the restores

bk_restore_step() { # RUN
    local run="$1" out="$WORK/bk-restore-$1.json" load replay txns rows
    target_reset
    sync
    echo "bk restore (run $run; load $(cut -d' ' -f1 /proc/loadavg)):"
    meter_start "$TARGET_PID"
    local rc=0
    "$BK" restore --config "$BK_CONF" --source "$SOURCE" --mysql-socket "$TARGET_SOCKET" \
        --target-position "$END_FILE:$END_POS" --jobs "$JOBS" --json >"$out" 2>"$WORK/bk-restore-$run.err" || rc=$?
    meter_stop "$TARGET_PID"
    if ((rc != 0)); then
        # Not fatal: the peers are still measured.
        echo "  BK RESTORE FAILED: exit $rc after $D_SECS s: $BK restore --config $BK_CONF --source $SOURCE" \
            "--mysql-socket $TARGET_SOCKET --target-position $END_FILE:$END_POS --jobs $JOBS --json"
        sed 's/^/    stderr: /' "$WORK/bk-restore-$run.err"
        sed 's/^/    stdout: /' "$out" | head -40
        echo "  the target's bk_restore_incomplete: $(tmy "SHOW TABLES FROM bk_restore_incomplete" 2>&1 | head -3 | tr '\n' ' ')"
        BK_FAILURES=$((BK_FAILURES + 1))
        return 0
    fi
    load=$(jq -r '.load_seconds' "$out")
    replay=$(jq -r '.replay_seconds' "$out")
    txns=$(jq -r '.transactions_replayed' "$out")
    rows=$(jq -r '.rows' "$out")
    echo "  bk restore --target-position $END_FILE:$END_POS --jobs $JOBS: $D_SECS s (load $(calc "$load" 2) s, replay $(calc "$replay" 2) s of $txns transactions," \
        "the rest $(calc "$D_SECS - $load - $replay" 2) s: reading and checking the archive, the finish); $rows rows"
    echo "  CPU: bk + mariadb-binlog + mariadb $(secs_of "$D_SELF") s, target mariadbd $(secs_of "$D_TARGET") s; machine $(secs_of "$D_MACHINE") s"
    [[ -s "$WORK/bk-restore-$run.err" ]] && sed 's/^/  stderr: /' "$WORK/bk-restore-$run.err"
    result "phase=restore contender=bk run=$run seconds=$D_SECS load_s=$load replay_s=$replay transactions=$txns" \
        "tool_cpu_s=$(secs_of "$D_SELF") target_cpu_s=$(secs_of "$D_TARGET") machine_cpu_s=$(secs_of "$D_MACHINE")"
    if [[ "$VERIFY" == 1 && "$run" == 1 ]]; then verify "$TARGET_SOCKET" "$WORK/sum-end.txt" "bk restore, the end state"; fi
}

dump_step() { # RUN
    local run="$1"
    target_reset
    sync
    echo "mariadb < dump.sql (run $run; load $(cut -d' ' -f1 /proc/loadavg)):"
    meter_start "$TARGET_PID"
    mariadb --no-defaults --protocol=SOCKET -h localhost -S "$TARGET_SOCKET" -u root \
        --init-command='SET SESSION sql_log_bin = 0' <"$WORK/dump.sql" 2>"$WORK/dump-load.err" ||
        { cat "$WORK/dump-load.err"; die "mariadb < dump.sql"; }
    meter_stop "$TARGET_PID"
    echo "  mariadb --init-command='SET SESSION sql_log_bin = 0' < dump.sql ($DUMP_BYTES bytes): $D_SECS s"
    echo "  CPU: mariadb $(secs_of "$D_SELF") s, target mariadbd $(secs_of "$D_TARGET") s; machine $(secs_of "$D_MACHINE") s"
    result "phase=restore contender=dump run=$run seconds=$D_SECS tool_cpu_s=$(secs_of "$D_SELF") target_cpu_s=$(secs_of "$D_TARGET") machine_cpu_s=$(secs_of "$D_MACHINE")"
    if [[ "$VERIFY" == 1 && "$run" == 1 ]]; then verify "$TARGET_SOCKET" "$WORK/sum-snap.txt" "dump load, the snapshot state"; fi
    peer_replay dump "$TARGET_SOCKET" "$TARGET_PID" "$DUMP_FILE" "$DUMP_POS" "$run"
}

mariabackup_step() { # RUN
    local run="$1" mb="$WORK/mb-work" t0 t1 t2 t3 pid
    mb_clear
    rm -rf "$mb"
    cp -a "$WORK/mb-pristine" "$mb"
    sync
    echo "mariabackup (run $run; load $(cut -d' ' -f1 /proc/loadavg)):"
    meter_start
    t0=$EPOCHREALTIME
    mariabackup --prepare --target-dir="$mb" >"$WORK/mb-prepare-$run.log" 2>&1 || { tail -20 "$WORK/mb-prepare-$run.log"; die "mariabackup --prepare"; }
    t1=$EPOCHREALTIME
    mkdir -p "$MB_DIR/mariadb"
    mariabackup --copy-back --target-dir="$mb" --datadir="$MB_DIR/mariadb/data" >"$WORK/mb-copyback-$run.log" 2>&1 ||
        { tail -20 "$WORK/mb-copyback-$run.log"; die "mariabackup --copy-back"; }
    t2=$EPOCHREALTIME
    : >"$MB_DIR/mariadb/initialized" # scripts/services: no mariadb-install-db
    mb_services start mariadb >>"$WORK/mb-start.log" 2>&1 || { tail -20 "$WORK/mb-start.log"; die "server start on the restored datadir"; }
    t3=$EPOCHREALTIME
    read -r pid <"$MB_DIR/mariadb/mariadbd.pid"
    meter_stop "$pid"
    local prep copy start
    prep=$(calc "$t1 - $t0" 3)
    copy=$(calc "$t2 - $t1" 3)
    start=$(calc "$t3 - $t2" 3)
    echo "  mariabackup --prepare $prep s + --copy-back $copy s + server start (until SELECT 1 answers) $start s = $D_SECS s"
    echo "  CPU: mariabackup + scripts/services $(secs_of "$D_SELF") s, the new mariadbd $(secs_of "$D_TARGET") s; machine $(secs_of "$D_MACHINE") s"
    result "phase=restore contender=mariabackup run=$run seconds=$D_SECS prepare_s=$prep copyback_s=$copy start_s=$start" \
        "tool_cpu_s=$(secs_of "$D_SELF") target_cpu_s=$(secs_of "$D_TARGET") machine_cpu_s=$(secs_of "$D_MACHINE")"
    rm -rf "$mb"
    if [[ "$VERIFY" == 1 && "$run" == 1 ]]; then verify "$MB_SOCKET" "$WORK/sum-snap.txt" "mariabackup, the snapshot state"; fi
    if [[ "$PEER_REPLAY" == 1 ]]; then
        grow_pool "$MB_SOCKET" "$TARGET_BUFFER_POOL" # as the other targets have it
        peer_replay mariabackup "$MB_SOCKET" "$pid" "$MB_FILE" "$MB_POS" "$run"
    fi
    mb_clear
}

# ---------------------------------------------------------------- summary

summary() {
    section "summary (best and median of each; every run listed in order)"
    gawk -v aim=2 -v peer_replay="$PEER_REPLAY" '
        function sorted(ph, c, key, out,    i, m) { m = 0; for (i = 1; i <= n[ph, c]; i++) out[++m] = v[ph, c, i, key] + 0; asort(out); return m }
        function best(ph, c, key,    a, m) { m = sorted(ph, c, key, a); return m ? a[1] : "" }
        function med(ph, c, key,    a, m) { m = sorted(ph, c, key, a); return m ? (m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2) : "" }
        function runs(ph, c, key,    i, s) { s = ""; for (i = 1; i <= n[ph, c]; i++) s = s sprintf("%s%.1f", i > 1 ? "/" : "", v[ph, c, i, key]); return s }
        { delete kv; for (i = 2; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
          ph = kv["phase"]; c = kv["contender"]; k = ++n[ph, c]
          for (x in kv) v[ph, c, k, x] = kv[x] }
        END {
          printf "  %-44s %8s %8s  %s\n", "", "best s", "median s", "runs"
          if (n["restore", "bk"]) {
            printf "  %-44s %8.2f %8.2f  %s\n", "bk restore (load + replay + checks)", best("restore", "bk", "seconds"), med("restore", "bk", "seconds"), runs("restore", "bk", "seconds")
            printf "  %-44s %8.2f %8.2f  %s\n", "  of which load_seconds", best("restore", "bk", "load_s"), med("restore", "bk", "load_s"), runs("restore", "bk", "load_s")
            printf "  %-44s %8.2f %8.2f  %s\n", "  of which replay_seconds", best("restore", "bk", "replay_s"), med("restore", "bk", "replay_s"), runs("restore", "bk", "replay_s") }
          if (n["restore", "dump"]) {
            printf "  %-44s %8.2f %8.2f  %s\n", "mariadb < dump.sql (snapshot moment only)", best("restore", "dump", "seconds"), med("restore", "dump", "seconds"), runs("restore", "dump", "seconds")
            if (n["replay", "dump"]) printf "  %-44s %8.2f %8.2f  %s\n", "  + binlog replay to the same end", best("replay", "dump", "seconds"), med("replay", "dump", "seconds"), runs("replay", "dump", "seconds") }
          if (n["restore", "mariabackup"]) {
            printf "  %-44s %8.2f %8.2f  %s\n", "mariabackup prepare + copy-back + start", best("restore", "mariabackup", "seconds"), med("restore", "mariabackup", "seconds"), runs("restore", "mariabackup", "seconds")
            printf "  %-44s %8.2f %8.2f  %s\n", "  prepare", best("restore", "mariabackup", "prepare_s"), med("restore", "mariabackup", "prepare_s"), runs("restore", "mariabackup", "prepare_s")
            printf "  %-44s %8.2f %8.2f  %s\n", "  copy-back", best("restore", "mariabackup", "copyback_s"), med("restore", "mariabackup", "copyback_s"), runs("restore", "mariabackup", "copyback_s")
            printf "  %-44s %8.2f %8.2f  %s\n", "  server start", best("restore", "mariabackup", "start_s"), med("restore", "mariabackup", "start_s"), runs("restore", "mariabackup", "start_s")
            if (n["replay", "mariabackup"]) printf "  %-44s %8.2f %8.2f  %s\n", "  + binlog replay to the same end", best("replay", "mariabackup", "seconds"), med("replay", "mariabackup", "seconds"), runs("replay", "mariabackup", "seconds") }
          print ""
          if (!n["restore", "bk"]) exit
          bt = best("restore", "bk", "seconds"); bl = best("restore", "bk", "load_s"); mt = med("restore", "bk", "seconds"); ml = med("restore", "bk", "load_s")
          rat = ""
          if (n["restore", "dump"]) {
            d = best("restore", "dump", "seconds"); dm = med("restore", "dump", "seconds")
            printf "  dump load / bk restore (whole)      = %.2fx best, %.2fx median (aim >= %.1fx: %s)\n", d / bt, dm / mt, aim, d / bt >= aim ? "met" : "NOT met"
            printf "  dump load / bk load_seconds         = %.2fx best, %.2fx median\n", d / bl, dm / ml
            rat = rat sprintf(" dump_over_bk=%.2f dump_over_bk_load=%.2f", d / bt, d / bl)
            if (n["replay", "dump"]) { dr = best("replay", "dump", "seconds"); drm = med("replay", "dump", "seconds")
              printf "  (dump load + replay) / bk restore   = %.2fx best, %.2fx median\n", (d + dr) / bt, (dm + drm) / mt
              rat = rat sprintf(" dump_pitr_over_bk=%.2f", (d + dr) / bt) } }
          if (n["restore", "mariabackup"]) {
            m = best("restore", "mariabackup", "seconds"); mm = med("restore", "mariabackup", "seconds")
            printf "  mariabackup / bk restore (whole)    = %.2fx best, %.2fx median\n", m / bt, mm / mt
            printf "  mariabackup / bk load_seconds       = %.2fx best, %.2fx median\n", m / bl, mm / ml
            rat = rat sprintf(" mariabackup_over_bk=%.2f mariabackup_over_bk_load=%.2f", m / bt, m / bl)
            if (n["replay", "mariabackup"]) { mr = best("replay", "mariabackup", "seconds"); mrm = med("replay", "mariabackup", "seconds")
              printf "  (mariabackup + replay) / bk restore = %.2fx best, %.2fx median\n", (m + mr) / bt, (mm + mrm) / mt
              rat = rat sprintf(" mariabackup_pitr_over_bk=%.2f", (m + mr) / bt) } }
          print ""
          print "RESULT phase=ratios" rat }' "$ROWS"
    echo "(ratios > 1: bk is faster.  CPU per run is in the RESULT lines above.)"
}

# ---------------------------------------------------------------- main

section "machine"
echo "date:       $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
head_ref=$(sed -n 's/^ref: //p' .git/HEAD 2>/dev/null || true)
echo "commit:     $(if [[ -n "$head_ref" ]]; then cut -c1-7 ".git/$head_ref" 2>/dev/null || grep " $head_ref\$" .git/packed-refs 2>/dev/null | cut -c1-7; else cut -c1-7 .git/HEAD 2>/dev/null; fi || echo '?') (read from .git; the work tree may hold uncommitted changes)"
echo "cpu:        $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; $(free -g | awk '/^Mem:/ { print $2 " GB RAM" }')"
# shellcheck disable=SC1091
echo "os:         $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
command -v jq >/dev/null || apt-get install -y -q jq >/dev/null
command -v mariabackup >/dev/null || { echo "installing mariadb-backup (apt-get)"; apt-get install -y -q mariadb-backup >/dev/null; }
echo "mariadb:    $(mariadbd --version | sed 's/^.*Ver //'); $(mariabackup --version 2>&1 | grep -o 'mariabackup.*' | head -1)"
echo "tools:      $(sysbench --version); $(mariadb-dump --version | sed 's/^.*Ver/mariadb-dump/')"
echo "disk:       $(df -h /tmp | awk 'NR == 2 { print $1 ", " $4 " free" }')"
echo "load:       $(cut -d' ' -f1-3 /proc/loadavg)"
echo "settings:   MDR_TABLES=$TABLES MDR_TABLE_SIZE=$TABLE_SIZE MDR_RANDOM_MB=$RANDOM_MB MDR_WORKLOAD_SECONDS=$WL_SECONDS MDR_WORKLOAD_THREADS=$WL_THREADS MDR_WORKLOAD_EVENTS=$WL_EVENTS"
echo "            MDR_RUNS=$RUNS MDR_CONTENDERS='${CONTENDERS[*]}' MDR_JOBS=$JOBS MDR_BUFFER_POOL=$BUFFER_POOL MDR_TARGET_BUFFER_POOL=$TARGET_BUFFER_POOL"
echo "            MDR_PEER_REPLAY=$PEER_REPLAY MDR_VERIFY=$VERIFY MDR_BUILD=$BUILD"

section "build and install"
if [[ "$BUILD" == 1 ]]; then
    make -s
    make -s install >/dev/null
else
    echo "MDR_BUILD=0: the installed binaries as they are"
fi
# Private copies: a "make install" elsewhere during the run (tests) must not
# swap the binaries under the benchmark.
mkdir -p "$WORK/bin"
cp "$BK" "$SHIPPER" "$AGENT" "$WORK/bin/"
BK="$WORK/bin/bk"
SHIPPER="$WORK/bin/bk-shipper"
AGENT="$WORK/bin/bk-mysql-agent"
ls -l --time-style='+%Y-%m-%d %H:%M' "$BK" "$SHIPPER" "$AGENT" | awk '{ print "  " $6 " " $7 " " $8 }'

section "services"
"$SERVICES" stop >/dev/null 2>&1 || true # a fresh state directory
target_services stop >/dev/null 2>&1 || true
mb_services stop >/dev/null 2>&1 || true
"$SERVICES" start mariadb kafka
eval "$("$SERVICES" env mariadb kafka)"
read -r KAFKA_PID <"$BK_SERVICES_DIR/kafka/kafka.pid"
read -r MYSQLD_PID <"$BK_SERVICES_DIR/mariadb/mariadbd.pid"
MYSQL_DATADIR=$(my "SELECT @@datadir")
MYSQL_DATADIR=${MYSQL_DATADIR%/}
grow_pool "$MYSQL_UNIX_PORT" "$BUFFER_POOL"
echo "source MariaDB $MYSQL_TCP_PORT (pid $MYSQLD_PID, datadir $MYSQL_DATADIR), Kafka $BK_KAFKA_BROKERS (pid $KAFKA_PID)"
my "SELECT CONCAT_WS(', ', CONCAT('innodb_buffer_pool_size = ', @@innodb_buffer_pool_size, ' (set online)'),
        CONCAT('innodb_flush_log_at_trx_commit = ', @@innodb_flush_log_at_trx_commit), CONCAT('sync_binlog = ', @@sync_binlog),
        CONCAT('binlog_format = ', @@binlog_format), CONCAT('innodb_log_file_size = ', @@innodb_log_file_size))"
echo "restore targets: scripts/services mariadb in $TARGET_DIR (port $TARGET_PORT; buffer pool $TARGET_BUFFER_POOL set online" \
    "before each restore) and $MB_DIR (port $MB_PORT, mariabackup's datadir; started with the services' 128M)"

mdb_bk_setup mdr
mdb_make_database

section "bk: agent and shipper"
my "FLUSH BINARY LOGS" # the agent starts at the current file: the load's binlog is not archived
cat >"$WORK/agent.conf" <<CONF
source_id = $SOURCE
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $BK_PREFIX
key_file = $WORK/bk.key.pub
mysql_host = 127.0.0.1
mysql_port = $MYSQL_TCP_PORT
mysql_user = root
server_id = 4243
state_dir = $WORK/agent-state
control_socket = $BK_MYSQL_AGENT_SOCKET
control_user = $(ps -o user= -p "$MYSQLD_PID" | tr -d ' ')
range_interval = 500ms
roles = $ROLE
CONF
start_agent "$WORK/agent.conf"
start_shipper
echo "agent pid $AGENT_PID, shipper pid $SHIPPER_PID, source $SOURCE, repository $BK_REPO"

section "backups of the quiet database (the same state; not the subject here, timed for reference)"
no_dirty_pages
read -r f p _ < <(my "SHOW MASTER STATUS")
wait_archived "$f" "$p"
sync
t0=$EPOCHREALTIME
out=$(my "SELECT bk_snapshot('jobs=2')") || die "bk_snapshot: $out"
SNAP_ID=$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$out")
[[ -n "$SNAP_ID" ]] || die "bk_snapshot returned $out"
deadline=$(($(now_s) + 1800))
until "$BK" list --json --config "$BK_CONF" --source "$SOURCE" 2>/dev/null |
    jq -e --arg id "$SNAP_ID" '[.. | objects | select(.id? == $id)][0] | .restorable_to != null' >/dev/null 2>&1; do
    (($(now_s) < deadline)) || die "snapshot $SNAP_ID not restorable after 1800 s"
    nap 0.2
done
echo "bk snapshot $SNAP_ID: restorable after $(calc "$EPOCHREALTIME - $t0" 2) s; it said $out"
SNAP_FILE=$(sed -n 's/.*"binlog_file":"\([^"]*\)".*/\1/p' <<<"$out")
SNAP_POS=$(sed -n 's/.*"binlog_pos":\([0-9]*\).*/\1/p' <<<"$out")

t0=$EPOCHREALTIME
mariadb-dump --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_TCP_PORT" -u root \
    --single-transaction --master-data=2 --routines --events --databases "$DB" >"$WORK/dump.sql" 2>"$WORK/dump.err" ||
    { cat "$WORK/dump.err"; die "mariadb-dump"; }
DUMP_BYTES=$(stat -c %s "$WORK/dump.sql")
read -r DUMP_FILE DUMP_POS < <(grep -m1 -- "-- CHANGE MASTER TO" "$WORK/dump.sql" |
    sed -n "s/.*MASTER_LOG_FILE='\([^']*\)', *MASTER_LOG_POS=\([0-9]*\).*/\1 \2/p")
[[ -n "${DUMP_FILE:-}" && -n "${DUMP_POS:-}" ]] || die "no binlog coordinates in the dump"
echo "mariadb-dump --single-transaction --master-data=2 --routines --events --databases $DB > dump.sql: $(calc "$EPOCHREALTIME - $t0" 2) s, $DUMP_BYTES bytes, at $DUMP_FILE:$DUMP_POS"

t0=$EPOCHREALTIME
mariabackup --backup --target-dir="$WORK/mb-pristine" --host=127.0.0.1 --port="$MYSQL_TCP_PORT" --user=root \
    >"$WORK/mb-backup.log" 2>&1 || { tail -20 "$WORK/mb-backup.log"; die "mariabackup --backup"; }
read -r MB_FILE MB_POS _ <"$WORK/mb-pristine/xtrabackup_binlog_info"
echo "mariabackup --backup --target-dir: $(calc "$EPOCHREALTIME - $t0" 2) s, $(dusb "$WORK/mb-pristine") bytes, at $MB_FILE:$MB_POS"
echo "binlog coordinates: bk snapshot $SNAP_FILE:$SNAP_POS, dump $DUMP_FILE:$DUMP_POS, mariabackup $MB_FILE:$MB_POS"
if [[ "$VERIFY" == 1 ]]; then
    checksums source "$WORK/sum-snap.txt"
    echo "checksums of the snapshot state: $(wc -l <"$WORK/sum-snap.txt") tables"
fi
[[ "$(my "SHOW MASTER STATUS" | cut -f1-2)" == "$SNAP_FILE	$SNAP_POS" ]] ||
    echo "WARNING: the binlog moved during the backups ($(my "SHOW MASTER STATUS" | cut -f1-2)): the three may not hold the same state"

if ((WL_EVENTS > 0)); then
    section "the write workload: sysbench oltp_write_only, $WL_THREADS threads, $WL_EVENTS transactions"
    WL_LIMIT=(--events="$WL_EVENTS" --time=0)
else
    section "the write workload: sysbench oltp_write_only, $WL_THREADS threads, $WL_SECONDS s"
    WL_LIMIT=(--time="$WL_SECONDS")
fi
sysbench oltp_write_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$MYSQL_TCP_PORT" \
    --mysql-user=root --mysql-db="$DB" --tables="$TABLES" --table-size="$TABLE_SIZE" \
    --threads="$WL_THREADS" "${WL_LIMIT[@]}" --report-interval=0 run >"$WORK/sysbench.log" 2>&1 ||
    { tail "$WORK/sysbench.log"; die "sysbench run"; }
read -r END_FILE END_POS _ < <(my "SHOW MASTER STATUS")
END_GTID=$(my "SELECT @@gtid_binlog_pos")
echo "sysbench: $(grep -m1 'transactions:' "$WORK/sysbench.log" | sed 's/^ *//')"
echo "end: $END_FILE:$END_POS (GTID $END_GTID); binlog to replay from the snapshot:" \
    "$(if [[ "$END_FILE" == "$SNAP_FILE" ]]; then echo "$((END_POS - SNAP_POS)) bytes"; else echo "from $SNAP_FILE:$SNAP_POS"; fi)"
if [[ "$VERIFY" == 1 ]]; then
    checksums source "$WORK/sum-end.txt"
    echo "checksums of the end state: $(wc -l <"$WORK/sum-end.txt") tables"
fi
my "FLUSH BINARY LOGS"
t0=$EPOCHREALTIME
wait_archived "$END_FILE" "$END_POS"
echo "bk list: the binlog is archived past $END_FILE:$END_POS ($(calc "$EPOCHREALTIME - $t0" 1) s after the flush)"
"$BK" list --config "$BK_CONF" --source "$SOURCE" | sed 's/^/  /' | head -20 || true
# Nothing else runs on the source from here on.
stop_agent
stop_shipper
echo "agent and shipper stopped (the source is idle during the restores)"

for ((run = 1; run <= RUNS; run++)); do
    shift_by=$(((run - 1) % ${#CONTENDERS[@]}))
    ORDER=("${CONTENDERS[@]:shift_by}" "${CONTENDERS[@]:0:shift_by}")
    section "run $run of $RUNS: restores in the order ${ORDER[*]}"
    for c in "${ORDER[@]}"; do
        case "$c" in
        bk) bk_restore_step "$run" ;;
        dump) dump_step "$run" ;;
        mariabackup) mariabackup_step "$run" ;;
        esac
    done
done

summary
((BK_FAILURES == 0)) || echo "WARNING: bk restore failed $BK_FAILURES time(s) (see above)"
((VERIFY_FAILURES == 0)) || echo "WARNING: $VERIFY_FAILURES restore(s) did not give the source's checksums"

section "done"
echo "finished $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
