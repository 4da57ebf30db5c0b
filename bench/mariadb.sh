#!/usr/bin/env bash
# MariaDB: SELECT bk_snapshot('jobs=2') through bk-mysql-agent, Kafka and
# bk-shipper into the repository, against mariadb-dump | lz4 | openssl and
# mariabackup, all on the same database in the same run; then the binlog lag
# under sysbench oltp_write_only: commit to acknowledged in Kafka and to
# durable in the repository, with range_interval 500ms (the default) and 1s.
#
# Usage: bench/mariadb.sh   (as root: like scripts/services, mariadbd then
#                            runs as root and mariabackup reads its datadir)
#
# What it does, end to end:
#   1. a private MariaDB 10.11 and Kafka (scripts/services, own ports and
#      state directory /tmp/bk-bench-mariadb); scripts/services starts
#      mariadbd with --innodb-buffer-pool-size=128M and has no way to pass
#      another, so the buffer pool is grown online (SET GLOBAL
#      innodb_buffer_pool_size, MDB_BUFFER_POOL) until the database fits.
#   2. the database "bench": sysbench oltp_read_write prepare (MDB_TABLES x
#      MDB_TABLE_SIZE rows) and bench.random_bytes, MDB_RANDOM_MB MiB of
#      RANDOM_BYTES(1024) rows (incompressible); then the binlog is flushed
#      and the agent started (start_binlog = current: the binlog of the load
#      is not part of any measurement) with the shipper.
#   3. per run (MDB_RUNS; the order rotated by one contender each run),
#      every step starting with no dirty page in the buffer pool and
#      "sync":
#      bk:        SELECT bk_snapshot('jobs=2'); the clock stops when the call
#                 returned (every part acknowledged in Kafka), when
#                 "bk list --json" shows the snapshot complete (its record
#                 archived after every part) and when it is restorable (the
#                 binlog up to its coordinates archived too);
#      dump:      mariadb-dump --single-transaction --master-data=2
#                 --databases bench | lz4 -1 | openssl enc -aes-256-ctr
#                 -pbkdf2 > file: the fair equivalent (consistent, with
#                 binlog coordinates, compressed, encrypted, one pass);
#      mariabackup: mariabackup --backup --target-dir (physical, plain
#                 files, --parallel 1, its default);
#      mariabackup-stream: mariabackup --backup --stream=xbstream
#                 --parallel=2 | lz4 -1 | openssl enc -aes-256-ctr: the
#                 physical backup compressed and encrypted like bk's.
#      CPU (from /proc/<pid>/stat, utime+stime): for bk mariadbd + agent +
#      broker + shipper; for the others mariadbd + the tools (this script's
#      reaped children); and the whole machine from /proc/stat.
#   4. the binlog lag (MDB_LAG_SECONDS of sysbench oltp_write_only,
#      MDB_LAG_THREADS threads, on the same tables), once per range_interval
#      in MDB_INTERVALS (the agent restarted with it):
#      - a marker client runs, every 100 ms, "UPDATE bench.bk_marker SET t =
#        NOW(6); SELECT @@last_gtid, UNIX_TIMESTAMP(NOW(6))" in autocommit
#        mode: the SELECT runs after the UPDATE committed, so it gives each
#        marker commit its GTID (seq S) and a commit time C (the server's
#        clock a moment after the commit: C errs on the side of less lag
#        by the time one SELECT takes to start, well under a millisecond);
#      - kcat consumes <prefix>.binlog from its end and this script stamps
#        each message with the local clock when it arrives (R); the headers
#        carry the range's metadata (bk-meta-gtid: the GTID state after the
#        newest event in the range).  The agent folds a GTID into that state
#        at the transaction's GTID event, its first event, so a range whose
#        gtid is S may not hold S's COMMIT yet; a range whose gtid is > S
#        holds the first event of a later transaction, which the binlog
#        writes after S's commit.  So: acknowledged(S) = R of the first
#        range (last chunk) with gtid > S.  Conservative: when S is the
#        newest transaction of a range, the next range is counted; and R
#        comes after the broker's acknowledgement by the consumer's fetch.
#      - kcat consumes <prefix>.audit: the shipper's "archived" event of each
#        binlog range carries the range's metadata and "time", when the
#        object was stored durably (written, fsynced, renamed), in ms.
#        durable(S) = the earliest "time" of a range with gtid > S.
#      - lag = acknowledged(S) - C and durable(S) - C for every marker
#        committed while sysbench ran (the marker client keeps going 3 s
#        longer so that the last ones have a later transaction after them);
#        p50, p90, p99 and max.
#   5. the summary: best run of each, ratios, the aims (bk at least 1.5x as
#      fast as the dump pipeline; lag p99 at most 1 s).
# Everything printed also goes to bench/results/mariadb-<UTC date-time>.txt.
#
# Environment (defaults in brackets):
#   MDB_TABLES        sysbench tables [8]
#   MDB_TABLE_SIZE    rows per sysbench table [500000]
#   MDB_RANDOM_MB     MiB of random bytes in bench.random_bytes [400]
#   MDB_RUNS          snapshot runs, interleaved [2]
#   MDB_CONTENDERS    [bk dump mariabackup mariabackup-stream]
#   MDB_BUFFER_POOL   innodb_buffer_pool_size set online [4G]
#   MDB_LAG_SECONDS   seconds of sysbench load per lag measurement [60]
#   MDB_LAG_THREADS   sysbench threads during the lag measurement [2]
#   MDB_LAG_RATE      sysbench --rate (transactions/s, 0: as fast as it
#                     goes) [0]
#   MDB_INTERVALS     agent range_interval values for the lag ["500ms 1s"]
#   MDB_PERF          1: after the timed runs, one more bk snapshot under
#                     perf record (agent and mariadbd), report printed [1]
#   MDB_KEEP          1: keep the work directory [0]
set -euo pipefail
shopt -s nullglob

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

TABLES=${MDB_TABLES:-8}
TABLE_SIZE=${MDB_TABLE_SIZE:-500000}
RANDOM_MB=${MDB_RANDOM_MB:-400}
RUNS=${MDB_RUNS:-2}
read -r -a CONTENDERS <<<"${MDB_CONTENDERS:-bk dump mariabackup mariabackup-stream}"
BUFFER_POOL=${MDB_BUFFER_POOL:-4G}
LAG_SECONDS=${MDB_LAG_SECONDS:-60}
LAG_THREADS=${MDB_LAG_THREADS:-2}
LAG_RATE=${MDB_LAG_RATE:-0}
read -r -a INTERVALS <<<"${MDB_INTERVALS:-500ms 1s}"
PERF=${MDB_PERF:-1}
KEEP=${MDB_KEEP:-0}

for v in "$TABLES" "$TABLE_SIZE" "$RUNS" "$LAG_SECONDS" "$LAG_THREADS"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "MDB_TABLES, MDB_TABLE_SIZE, MDB_RUNS, MDB_LAG_SECONDS and MDB_LAG_THREADS must be whole numbers > 0" >&2; exit 2; }
done
[[ "$RANDOM_MB" =~ ^[0-9]+$ && "$LAG_RATE" =~ ^[0-9]+$ ]] || { echo "MDB_RANDOM_MB and MDB_LAG_RATE must be whole numbers" >&2; exit 2; }
for c in "${CONTENDERS[@]}"; do
    case "$c" in
    bk | dump | mariabackup | mariabackup-stream) ;;
    *) echo "unknown contender \"$c\" (have: bk dump mariabackup mariabackup-stream)" >&2; exit 2 ;;
    esac
done
[[ "$(id -u)" == 0 ]] || { echo "run as root (mariabackup reads the server's datadir)" >&2; exit 2; }

# A MariaDB and a Kafka of our own, on ports nobody else uses (the tests use
# 23306/29092, bench/archive.sh 58432/58092, bench/snapshot.sh
# 58532/58506/58192).
export BK_SERVICES_DIR=/tmp/bk-bench-mariadb
export BK_PG_PORT=58632
export BK_MYSQL_PORT=58606
export BK_KAFKA_PORT=58292
export BK_KAFKA_CONTROLLER_PORT=58293
SERVICES="$REPO_ROOT/scripts/services"
BK=/usr/local/bin/bk
SHIPPER=/usr/local/bin/bk-shipper
AGENT=/usr/local/bin/bk-mysql-agent
DB=bench
ROLE=bk_bench_role

. "$REPO_ROOT/bench/lib.sh"
bench_output mariadb

WORK="$(mktemp -d /tmp/bk-mariadb-bench.XXXXXX)"
chmod 755 "$WORK"
ROWS="$WORK/results.tsv" # the RESULT lines, for the summary
: >"$ROWS"
SHIPPER_PID=""
AGENT_PID=""
KAFKA_PID=""
MYSQLD_PID=""
BG_PIDS=()

bench_nap_init "$WORK"

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
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    stop_agent
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
result() { echo "RESULT $*" | tee -a "$ROWS" >/dev/null; echo "  RESULT $*"; }
my() { mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_TCP_PORT" -u root -N -B -r -e "$1"; }

# meter_start / meter_stop: wall clock and CPU ticks of a step.  After
# meter_stop: D_SECS, D_MACHINE, D_MYSQLD, D_SELF, D_KAFKA, D_SHIPPER,
# D_AGENT (ticks).
meter_start() {
    machine_ticks
    MM0=$MACHINE
    proc_own_ticks "$MYSQLD_PID"
    MD0=$OWN
    self_ticks
    MS0=$SELF
    proc_own_ticks "$KAFKA_PID"
    MK0=${OWN:-0}
    proc_own_ticks "$SHIPPER_PID"
    MH0=${OWN:-0}
    proc_own_ticks "$AGENT_PID"
    MA0=${OWN:-0}
    MT0=$EPOCHREALTIME
}
meter_stop() {
    local t1=$EPOCHREALTIME
    machine_ticks
    D_MACHINE=$((MACHINE - MM0))
    proc_own_ticks "$MYSQLD_PID"
    D_MYSQLD=$((OWN - MD0))
    self_ticks
    D_SELF=$((SELF - MS0))
    proc_own_ticks "$KAFKA_PID"
    D_KAFKA=$((${OWN:-$MK0} - MK0))
    proc_own_ticks "$SHIPPER_PID"
    D_SHIPPER=$((${OWN:-$MH0} - MH0))
    proc_own_ticks "$AGENT_PID"
    D_AGENT=$((${OWN:-$MA0} - MA0))
    D_SECS=$(calc "$t1 - $MT0" 3)
}

# ---------------------------------------------------------------- services

start_agent() { # CONF
    "$AGENT" --config "$1" >>"$WORK/agent.log" 2>&1 &
    AGENT_PID=$!
    local deadline=$(($(now_s) + 60)) n0="$2"
    while (($(grep -c "streaming the binlog from" "$WORK/agent.log") <= n0)); do
        kill -0 "$AGENT_PID" 2>/dev/null || { tail -20 "$WORK/agent.log"; die "the agent exited"; }
        (($(now_s) < deadline)) || { tail -20 "$WORK/agent.log"; die "the agent does not stream after 60 s"; }
        nap 0.2
    done
}
agent_conf() { # FILE RANGE_INTERVAL
    cat >"$1" <<CONF
source_id = $SOURCE
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $BK_PREFIX
key_file = $WORK/bk.key.pub
mysql_host = 127.0.0.1
mysql_port = $MYSQL_TCP_PORT
mysql_user = root
server_id = 4242
state_dir = $WORK/agent-state
control_socket = $BK_MYSQL_AGENT_SOCKET
control_user = $(ps -o user= -p "$MYSQLD_PID" | tr -d ' ')
range_interval = $2
roles = $ROLE
CONF
}

# prepare_step: no dirty page in the buffer pool (so that no contender's
# reads compete with the flushing of another's leftovers), the binlog
# archived up to its end, the page cache's dirty pages written.
prepare_step() {
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
    wait_binlog_archived
    sync
}
# wait_binlog_archived: "bk list" has the binlog up to SHOW MASTER STATUS.
wait_binlog_archived() {
    local file pos deadline got
    read -r file pos _ < <(my "SHOW MASTER STATUS")
    deadline=$(($(now_s) + 300))
    while :; do
        got=$("$BK" list --json --config "$BK_CONF" --source "$SOURCE" 2>/dev/null |
            jq -r --arg f "$file" --argjson p "$pos" '[.. | objects | select(has("binlog_archived_to")) | .binlog_archived_to | select(. != null) | select(.file > $f or (.file == $f and .pos >= $p))] | length' 2>/dev/null || echo 0)
        [[ "$got" =~ ^[1-9] ]] && return 0
        (($(now_s) < deadline)) || { echo "  warning: the binlog is not archived to $file:$pos after 300 s"; return 0; }
        nap 0.3
    done
}

# ---------------------------------------------------------------- database


# ---------------------------------------------------------------- snapshot steps

snapshot_list_json() { "$BK" list --json --config "$BK_CONF" --source "$SOURCE" 2>/dev/null; }
bk_step() { # RUN
    local run="$1" out t1 t2="" t3="" id deadline js state stored
    prepare_step
    meter_start
    out=$(my "SELECT bk_snapshot('jobs=2')") || die "bk_snapshot: $out"
    t1=$EPOCHREALTIME
    id=$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$out")
    [[ -n "$id" ]] || die "bk_snapshot returned $out"
    deadline=$(($(now_s) + 1800))
    while [[ -z "$t3" ]]; do
        js=$(snapshot_list_json | jq -c --arg id "$id" '[.. | objects | select(.id? == $id)][0]')
        state=$(jq -r 'if . == null then "none" elif .restorable_to != null then "restorable" elif .complete then "complete" else "partial" end' <<<"$js")
        if [[ "$state" == complete || "$state" == restorable ]] && [[ -z "$t2" ]]; then
            t2=$EPOCHREALTIME
            meter_stop
        fi
        [[ "$state" == restorable ]] && t3=$EPOCHREALTIME
        (($(now_s) < deadline)) || die "snapshot $id is $state after 1800 s"
        [[ -n "$t3" ]] || nap 0.1
    done
    stored=$(jq -r '.stored_bytes' <<<"$js")
    local ret_s rec_s rst_s ours
    ret_s=$(calc "$t1 - $MT0" 3)
    rec_s=$(calc "$t2 - $MT0" 3)
    rst_s=$(calc "$t3 - $MT0" 3)
    ours=$((D_MYSQLD + D_AGENT + D_KAFKA + D_SHIPPER))
    echo "bk snapshot $id: returned after $ret_s s (in Kafka), complete in the repository after $rec_s s, restorable after $rst_s s"
    echo "  bk_snapshot() said: $out"
    echo "  stored $stored bytes; CPU until complete: mariadbd $(secs_of "$D_MYSQLD") s, agent $(secs_of "$D_AGENT") s," \
        "broker $(secs_of "$D_KAFKA") s, shipper $(secs_of "$D_SHIPPER") s = $(secs_of "$ours") s; machine $(secs_of "$D_MACHINE") s"
    result "phase=full contender=bk run=$run seconds=$rec_s returned_s=$ret_s restorable_s=$rst_s db_bytes=$DB_BYTES stored_bytes=$stored" \
        "ours_cpu_s=$(secs_of "$ours") mysqld_cpu_s=$(secs_of "$D_MYSQLD") agent_cpu_s=$(secs_of "$D_AGENT") kafka_cpu_s=$(secs_of "$D_KAFKA")" \
        "shipper_cpu_s=$(secs_of "$D_SHIPPER") tool_cpu_s=0 machine_cpu_s=$(secs_of "$D_MACHINE")"
}
tool_step() { # CONTENDER RUN
    local c="$1" run="$2" out="$WORK/out-$1" log="$WORK/$1.log" what bytes
    rm -rf "$out"
    prepare_step
    case "$c" in
    dump)
        what="mariadb-dump --single-transaction --master-data=2 --databases $DB | lz4 -1 | openssl enc -aes-256-ctr -pbkdf2"
        meter_start
        mariadb-dump --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_TCP_PORT" -u root \
            --single-transaction --master-data=2 --databases "$DB" 2>"$log" |
            lz4 -1 -q |
            openssl enc -aes-256-ctr -pbkdf2 -pass pass:"$PASS" >"$out" || { cat "$log"; die "$what"; }
        meter_stop
        bytes=$(stat -c %s "$out")
        ;;
    mariabackup)
        what="mariabackup --backup --target-dir"
        meter_start
        mariabackup --backup --target-dir="$out" --host=127.0.0.1 --port="$MYSQL_TCP_PORT" --user=root \
            >"$log" 2>&1 || { tail -20 "$log"; die "$what"; }
        meter_stop
        bytes=$(dusb "$out")
        ;;
    mariabackup-stream)
        what="mariabackup --backup --stream=xbstream --parallel=2 | lz4 -1 | openssl enc -aes-256-ctr -pbkdf2"
        mkdir -p "$WORK/mbtmp"
        meter_start
        mariabackup --backup --stream=xbstream --parallel=2 --target-dir="$WORK/mbtmp" --host=127.0.0.1 \
            --port="$MYSQL_TCP_PORT" --user=root 2>"$log" |
            lz4 -1 -q |
            openssl enc -aes-256-ctr -pbkdf2 -pass pass:"$PASS" >"$out" || { tail -20 "$log"; die "$what"; }
        meter_stop
        bytes=$(stat -c %s "$out")
        rm -rf "$WORK/mbtmp"
        ;;
    esac
    local ours=$((D_MYSQLD + D_SELF))
    echo "$c: $what: $D_SECS s, $bytes bytes"
    echo "  CPU: mariadbd $(secs_of "$D_MYSQLD") s, the tools $(secs_of "$D_SELF") s = $(secs_of "$ours") s; machine $(secs_of "$D_MACHINE") s"
    result "phase=full contender=$c run=$run seconds=$D_SECS db_bytes=$DB_BYTES stored_bytes=$bytes ours_cpu_s=$(secs_of "$ours")" \
        "mysqld_cpu_s=$(secs_of "$D_MYSQLD") tool_cpu_s=$(secs_of "$D_SELF") machine_cpu_s=$(secs_of "$D_MACHINE")"
    rm -rf "$out"
}

perf_step() {
    command -v perf >/dev/null || { echo "no perf"; return 0; }
    prepare_step
    perf record -F 499 -g -o "$WORK/perf.data" -p "$AGENT_PID,$MYSQLD_PID" >"$WORK/perf.log" 2>&1 &
    local perf_pid=$! out
    nap 1
    out=$(my "SELECT bk_snapshot('jobs=2')")
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    echo "untimed bk snapshot under perf: $out"
    echo "perf report (agent and mariadbd, by command and shared object, --no-children):"
    perf report -i "$WORK/perf.data" --stdio --no-children --sort comm,dso -g none 2>/dev/null | grep -v '^#' | grep '%' | head -15 | sed 's/^/  /' || true
    echo "perf report of the agent (symbols, --no-children):"
    perf report -i "$WORK/perf.data" --stdio --no-children --comm bk-mysql-agent --sort dso,symbol -g none 2>/dev/null |
        grep -v '^#' | grep '%' | head -15 | sed 's/^/  /' || true
    echo "perf report of mariadbd (symbols, --no-children):"
    perf report -i "$WORK/perf.data" --stdio --no-children --pid "$MYSQLD_PID" --sort dso,symbol -g none 2>/dev/null |
        grep -v '^#' | grep '%' | head -15 | sed 's/^/  /' || true
}

# ---------------------------------------------------------------- binlog lag

# stamped OUT PIDFILE CMD...: CMD's stdout lines, each prefixed with the
# local wall clock at its arrival, into OUT; CMD's pid into PIDFILE.
stamped() {
    local out="$1" pidfile="$2"
    shift 2
    { (
        echo "$BASHPID" >"$pidfile"
        exec "$@"
    ) | while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done >"$out"; } &
    BG_PIDS+=($!)
}
lag_step() { # RANGE_INTERVAL
    local ri="$1" d="$WORK/lag-$1" n0 sb_end t0 writer
    mkdir -p "$d"
    section "binlog lag, range_interval = $ri: sysbench oltp_write_only, $LAG_THREADS threads, $LAG_SECONDS s${LAG_RATE:+ (rate $LAG_RATE/s, 0: unlimited)}"
    stop_agent
    agent_conf "$WORK/agent-$ri.conf" "$ri"
    n0=$(grep -c "streaming the binlog from" "$WORK/agent.log" || true)
    start_agent "$WORK/agent-$ri.conf" "$n0"
    prepare_step
    stamped "$d/binlog.txt" "$d/kcat1.pid" kcat -C -b "$BK_KAFKA_BROKERS" -t "$BK_PREFIX.binlog" -o end -u -q -f '%T %h\n'
    stamped "$d/audit.txt" "$d/kcat2.pid" kcat -C -b "$BK_KAFKA_BROKERS" -t "$BK_PREFIX.audit" -o end -u -q -f '%s\n'
    nap 2 # the consumers have their partitions
    (
        echo "$BASHPID" >"$d/writer.pid"
        while :; do
            echo "UPDATE $DB.bk_marker SET t = NOW(6) WHERE id = 1; SELECT @@last_gtid, UNIX_TIMESTAMP(t), UNIX_TIMESTAMP(NOW(6)) FROM $DB.bk_marker WHERE id = 1;"
            nap 0.1
        done
    ) | mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_TCP_PORT" -u root -n -N -B "$DB" >"$d/markers.tsv" 2>"$d/markers.err" &
    writer=$!
    BG_PIDS+=("$writer")
    nap 1
    meter_start
    t0=$EPOCHREALTIME
    sysbench oltp_write_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$MYSQL_TCP_PORT" \
        --mysql-user=root --mysql-db="$DB" --tables="$TABLES" --table-size="$TABLE_SIZE" \
        --threads="$LAG_THREADS" --rate="$LAG_RATE" --time="$LAG_SECONDS" --report-interval=0 run >"$d/sysbench.log" 2>&1 ||
        { tail "$d/sysbench.log"; die "sysbench run"; }
    sb_end=$EPOCHREALTIME
    meter_stop
    nap 3
    kill "$(cat "$d/writer.pid")" 2>/dev/null || true
    wait "$writer" 2>/dev/null || true
    nap 5 # the shipper's last ranges and audit batches
    kill "$(cat "$d/kcat1.pid")" "$(cat "$d/kcat2.pid")" 2>/dev/null || true
    wait "${BG_PIDS[@]}" 2>/dev/null || true
    BG_PIDS=()
    local tps
    tps=$(awk '/transactions:/ { gsub(/[(]/, "", $3); print $3 }' "$d/sysbench.log")
    echo "sysbench: $tps transactions/s ($(grep -m1 'transactions:' "$d/sysbench.log" | sed 's/^ *//'))"
    echo "  latency (ms): $(grep -E '^ +(min|avg|max|95th percentile):' "$d/sysbench.log" | tr -s ' ' | tr '\n' ' ')"
    echo "CPU during the load: mariadbd $(secs_of "$D_MYSQLD") s, agent $(secs_of "$D_AGENT") s, broker $(secs_of "$D_KAFKA") s," \
        "shipper $(secs_of "$D_SHIPPER") s, sysbench and the rest of this script $(secs_of "$D_SELF") s; machine $(secs_of "$D_MACHINE") s of $(calc "2 * $D_SECS" 0) s"
    # The ranges: last chunk of each, its arrival time, its gtid (domain 0).
    gawk '{ recv = $1; ts = $2; h = $0; sub(/^[^ ]+ [^ ]+ /, "", h); n = split(h, kv, ",")
            delete m; for (i = 1; i <= n; i++) { e = index(kv[i], "="); m[substr(kv[i], 1, e - 1)] = substr(kv[i], e + 1) }
            if (m["bk-chunk-index"] + 1 != m["bk-chunk-count"]) next
            seq = ""; g = split(m["bk-meta-gtid"], gs, ","); for (i = 1; i <= g; i++) { split(gs[i], p, "-"); if (p[1] == 0) seq = p[3] }
            if (seq == "") next
            printf "%s %.3f %s %s %s\n", recv, ts / 1000, seq, m["bk-object-size"], m["bk-meta-events"] }' "$d/binlog.txt" >"$d/ranges.txt"
    jq -r 'select(.event? == "archived" or .type? == "archived" or .action? == "archived") | select(.kind == "binlog") |
           [(.time | sub("\\.(?<ms>[0-9]+)Z$"; "Z") | fromdateiso8601) + ((.time | capture("\\.(?<ms>[0-9]+)Z$").ms | tonumber) / 1000),
            (.meta.gtid // "" | split(",") | map(select(startswith("0-"))) | .[0] // "" | split("-") | .[2] // "")] | @tsv' \
        <(cut -d' ' -f2- "$d/audit.txt") 2>"$d/jq.err" | awk '$2 != ""' >"$d/durable.txt" || true
    awk -v s="$t0" -v e="$sb_end" '$1 != "" && $3 + 0 >= s && $3 + 0 <= e { split($1, p, "-"); print p[3], $3, $2 }' \
        "$d/markers.tsv" >"$d/commits.txt"
    echo "markers committed during the load: $(wc -l <"$d/commits.txt") of $(wc -l <"$d/markers.tsv");" \
        "ranges: $(wc -l <"$d/ranges.txt") (last chunks), archived binlog audit events: $(wc -l <"$d/durable.txt")"
    if [[ ! -s "$d/durable.txt" ]]; then
        echo "  (no archived-binlog audit events parsed; first audit lines:)"
        head -3 "$d/audit.txt" | cut -c1-400 | sed 's/^/    /'
    fi
    echo "range sizes (bytes): $(awk '{ print $4 }' "$d/ranges.txt" | sort -n | awk '{ a[NR] = $1 } END { if (NR) printf "min %d, median %d, max %d", a[1], a[int((NR + 1) / 2)], a[NR] }');" \
        "binlog written during the load: $(awk -v s="$t0" -v e="$sb_end" '$1 >= s && $1 <= e + 1 { b += $4 } END { printf "%.1f MB", b / 1e6 }' "$d/ranges.txt")"
    # lag per marker: first range (by arrival) whose gtid > S; first durable
    # event whose gtid > S.
    gawk -v ri="$ri" -v lagsecs="$LAG_SECONDS" -v threads="$LAG_THREADS" -v tps="$tps" '
        function pct(a, n, q,    i) { i = int(q * n + 0.999999); if (i < 1) i = 1; if (i > n) i = n; return a[i] }
        function report(name, a, n,    i) { asort(a); if (n == 0) { printf "  %-32s no data\n", name; return }
            printf "  %-32s n=%4d  p50 %7.3f s  p90 %7.3f s  p99 %7.3f s  max %7.3f s  min %7.3f s\n", name, n, pct(a, n, .5), pct(a, n, .9), pct(a, n, .99), a[n], a[1] }
        FILENAME == ARGV[1] { nr++; rr[nr] = $1; rt[nr] = $2; rs[nr] = $3; next }
        FILENAME == ARGV[2] { nd++; dt[nd] = $1; ds[nd] = $2; next }
        { s = $1; c = $2; stored = $3; nm++
          cl[nm] = c - stored
          best = ""; for (i = 1; i <= nr; i++) if (rs[i] + 0 > s + 0 && (best == "" || rr[i] < best)) { best = rr[i]; bt = rt[i] }
          if (best != "") { na++; ack[na] = best - c; nt++; ackt[nt] = bt - c } else miss_a++
          best = ""; for (i = 1; i <= nd; i++) if (ds[i] + 0 > s + 0 && (best == "" || dt[i] < best)) best = dt[i]
          if (best != "") { ndu++; dur[ndu] = best - c } else miss_d++ }
        END {
          report("commit latency of the marker", cl, nm)
          report("commit -> acknowledged in Kafka", ack, na)
          report("  (producer timestamp - commit)", ackt, nt)
          report("commit -> durable in repository", dur, ndu)
          if (miss_a + miss_d) printf "  markers with no later range seen: %d in Kafka, %d in the repository\n", miss_a, miss_d
          asort(ack); asort(dur)
          printf "RESULT phase=lag interval=%s threads=%s tps=%s markers=%d ack_p50=%.3f ack_p90=%.3f ack_p99=%.3f ack_max=%.3f durable_p50=%.3f durable_p90=%.3f durable_p99=%.3f durable_max=%.3f missing=%d\n",
                 ri, threads, tps, nm, pct(ack, na, .5), pct(ack, na, .9), pct(ack, na, .99), ack[na], pct(dur, ndu, .5), pct(dur, ndu, .9), pct(dur, ndu, .99), dur[ndu], miss_a + miss_d }' \
        "$d/ranges.txt" "$d/durable.txt" "$d/commits.txt" | tee -a "$ROWS" | sed 's/^/  /'
}

# ---------------------------------------------------------------- summary

summary() {
    section "summary (best run of each; every run listed in order)"
    gawk -v aim_tp=1.5 -v aim_lag=1.0 '
        function bestrow(ph, c, key,    i, bi, b) { b = ""; bi = 0; for (i = 1; i <= n[ph, c]; i++) if (b == "" || v[ph, c, i, key] + 0 < b + 0) { b = v[ph, c, i, key]; bi = i }; return bi }
        function runs(ph, c, key,    i, s) { s = ""; for (i = 1; i <= n[ph, c]; i++) s = s sprintf(" %.1f", v[ph, c, i, key]); return s }
        { delete kv; for (i = 2; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
          ph = kv["phase"]; c = (ph == "lag") ? kv["interval"] : kv["contender"]; k = ++n[ph, c]
          for (x in kv) v[ph, c, k, x] = kv[x]
          if (!((ph, c) in seen)) { seen[ph, c] = 1; order[ph] = order[ph] " " c } }
        END {
          print "full snapshot (MB/s = database files / seconds):"
          printf "  %-26s %8s %8s  %-14s %11s %9s %9s %9s\n", "contender", "seconds", "MB/s", "runs", "stored MB", "ours CPU", "mysqld", "mach CPU"
          m = split(order["full"], cs, " ")
          for (j = 1; j <= m; j++) { c = cs[j]; i = bestrow("full", c, "seconds")
            label = (c == "bk") ? "bk (complete in repo)" : c
            printf "  %-26s %8.2f %8.1f  %-14s %11.1f %8.1fs %8.1fs %8.1fs\n", label, v["full", c, i, "seconds"], v["full", c, i, "db_bytes"] / 1e6 / v["full", c, i, "seconds"],
                   runs("full", c, "seconds"), v["full", c, i, "stored_bytes"] / 1e6, v["full", c, i, "ours_cpu_s"], v["full", c, i, "mysqld_cpu_s"], v["full", c, i, "machine_cpu_s"]
            if (c == "bk") { i2 = bestrow("full", c, "returned_s"); i3 = bestrow("full", c, "restorable_s")
              printf "  %-26s %8.2f %8.1f  %-14s\n", "bk (call returned)", v["full", c, i2, "returned_s"], v["full", c, i2, "db_bytes"] / 1e6 / v["full", c, i2, "returned_s"], runs("full", c, "returned_s")
              printf "  %-26s %8.2f %8.1f  %-14s\n", "bk (restorable)", v["full", c, i3, "restorable_s"], v["full", c, i3, "db_bytes"] / 1e6 / v["full", c, i3, "restorable_s"], runs("full", c, "restorable_s")
              printf "  %-26s agent %.1fs, broker %.1fs, shipper %.1fs (best run)\n", "bk CPU split", v["full", c, i, "agent_cpu_s"], v["full", c, i, "kafka_cpu_s"], v["full", c, i, "shipper_cpu_s"] } }
          if (n["full", "bk"]) { rb = v["full", "bk", bestrow("full", "bk", "seconds"), "seconds"]; rr = v["full", "bk", bestrow("full", "bk", "returned_s"), "returned_s"]
            for (j = 1; j <= m; j++) { c = cs[j]; if (c == "bk") continue
              t = v["full", c, bestrow("full", c, "seconds"), "seconds"]
              aim = (c == "dump") ? sprintf(" (aim >= %.1fx: %s)", aim_tp, t / rb >= aim_tp ? "met" : "NOT met") : ""
              printf "  time %-18s / bk = %.2fx until complete in the repository%s; %.2fx until bk_snapshot() returned\n", c, t / rb, aim, t / rr
              key = c; gsub("-", "_", key); rat = rat sprintf(" %s_over_bk=%.2f %s_over_bk_returned=%.2f", key, t / rb, key, t / rr) } }
          print ""
          print "binlog lag (commit -> acknowledged in Kafka, -> durable in the repository):"
          printf "  %-15s %7s %8s %9s %9s %9s %9s %9s %9s\n", "range_interval", "tps", "markers", "ack p50", "ack p99", "ack max", "dur p50", "dur p99", "dur max"
          m = split(order["lag"], cs, " ")
          for (j = 1; j <= m; j++) { c = cs[j]; for (i = 1; i <= n["lag", c]; i++) {
            printf "  %-15s %7.1f %8d %8.3fs %8.3fs %8.3fs %8.3fs %8.3fs %8.3fs\n", c, v["lag", c, i, "tps"], v["lag", c, i, "markers"], v["lag", c, i, "ack_p50"], v["lag", c, i, "ack_p99"],
                   v["lag", c, i, "ack_max"], v["lag", c, i, "durable_p50"], v["lag", c, i, "durable_p99"], v["lag", c, i, "durable_max"]
            printf "    p99 <= %.1f s: acknowledged %s, durable %s\n", aim_lag, v["lag", c, i, "ack_p99"] <= aim_lag ? "met" : "NOT met", v["lag", c, i, "durable_p99"] <= aim_lag ? "met" : "NOT met"
            rat = rat sprintf(" lag_%s_ack_p99=%s lag_%s_durable_p99=%s", c, v["lag", c, i, "ack_p99"], c, v["lag", c, i, "durable_p99"]) } }
          print ""
          print "RESULT phase=ratios" rat }' "$ROWS"
    echo "(ours CPU: bk = mariadbd + agent + broker + shipper until complete in the repository; the others = mariadbd +"
    echo " the tools (dump, lz4, openssl / mariabackup, lz4, openssl); mach CPU = the whole machine from /proc/stat)"
}

# ---------------------------------------------------------------- main

section "machine"
echo "date:       $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "commit:     $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- common mysql_agent mysql_udf shipper cli 2>/dev/null || echo ' (common/, mysql_agent/, mysql_udf/, shipper/ or cli/ modified)')"
echo "cpu:        $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; $(free -g | awk '/^Mem:/ { print $2 " GB RAM" }')"
# shellcheck disable=SC1091
echo "os:         $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
command -v jq >/dev/null || apt-get install -y -q jq >/dev/null
command -v mariabackup >/dev/null || { echo "installing mariadb-backup (apt-get)"; apt-get install -y -q mariadb-backup >/dev/null; }
echo "mariadb:    $(mariadbd --version | sed 's/^.*Ver //'); $(mariabackup --version 2>&1 | grep -o 'mariabackup.*' | head -1)"
echo "tools:      $(sysbench --version); librdkafka $(dpkg-query -W -f '${Version}' librdkafka1 2>/dev/null || echo '?'); openssl $(openssl version | cut -d' ' -f2); lz4 $(lz4 --version 2>&1 | grep -o 'v[0-9.]*' | head -1); kcat $(dpkg-query -W -f '${Version}' kcat 2>/dev/null)"
echo "disk:       $(df -h /tmp | awk 'NR == 2 { print $1 ", " $4 " free" }')"
echo "load:       $(cut -d' ' -f1-3 /proc/loadavg)"
echo "settings:   MDB_TABLES=$TABLES MDB_TABLE_SIZE=$TABLE_SIZE MDB_RANDOM_MB=$RANDOM_MB MDB_RUNS=$RUNS MDB_CONTENDERS='${CONTENDERS[*]}' MDB_BUFFER_POOL=$BUFFER_POOL"
echo "            MDB_LAG_SECONDS=$LAG_SECONDS MDB_LAG_THREADS=$LAG_THREADS MDB_LAG_RATE=$LAG_RATE MDB_INTERVALS='${INTERVALS[*]}'"

section "build and install"
make -s
make -s install >/dev/null
# Private copies: a "make install" elsewhere during the run (tests) must not
# swap the binaries under the benchmark (nor hide the agent's symbols from
# perf).
mkdir -p "$WORK/bin"
cp "$BK" "$SHIPPER" "$AGENT" "$WORK/bin/"
BK="$WORK/bin/bk"
SHIPPER="$WORK/bin/bk-shipper"
AGENT="$WORK/bin/bk-mysql-agent"
ls -l "$BK" "$SHIPPER" "$AGENT" | awk '{ print "  " $6 " " $7 " " $8 " " $9 }'

section "services"
"$SERVICES" stop >/dev/null 2>&1 || true # a fresh state directory
"$SERVICES" start mariadb kafka
eval "$("$SERVICES" env mariadb kafka)"
read -r KAFKA_PID <"$BK_SERVICES_DIR/kafka/kafka.pid"
read -r MYSQLD_PID <"$BK_SERVICES_DIR/mariadb/mariadbd.pid"
MYSQL_DATADIR=$(my "SELECT @@datadir")
MYSQL_DATADIR=${MYSQL_DATADIR%/}
my "SET GLOBAL innodb_buffer_pool_size = $(numfmt --from=iec "$BUFFER_POOL")"
nap 2 # the resize runs in the background
echo "MariaDB $MYSQL_TCP_PORT (pid $MYSQLD_PID, datadir $MYSQL_DATADIR), Kafka $BK_KAFKA_BROKERS (pid $KAFKA_PID)"
my "SELECT CONCAT_WS(', ', CONCAT('innodb_buffer_pool_size = ', @@innodb_buffer_pool_size, ' (set online; services starts with 128M)'),
        CONCAT('innodb_flush_log_at_trx_commit = ', @@innodb_flush_log_at_trx_commit), CONCAT('sync_binlog = ', @@sync_binlog),
        CONCAT('binlog_format = ', @@binlog_format), CONCAT('innodb_log_file_size = ', @@innodb_log_file_size))"

mdb_bk_setup mdb
PASS="$(openssl rand -base64 48 | tr -d '\n/+=')"
mdb_make_database
# The marker row the lag measurements update.
my "CREATE TABLE $DB.bk_marker (id INT PRIMARY KEY, t DATETIME(6) NOT NULL) ENGINE=InnoDB;
    INSERT INTO $DB.bk_marker VALUES (1, NOW(6))"

section "bk: agent and shipper"
my "FLUSH BINARY LOGS" # the agent starts at the current file: the load's binlog is not archived
agent_conf "$WORK/agent.conf" 500ms
start_agent "$WORK/agent.conf" 0
start_shipper
echo "agent pid $AGENT_PID (range_interval 500ms), shipper pid $SHIPPER_PID, source $SOURCE, topics $BK_PREFIX.*, repository $BK_REPO"

for ((run = 1; run <= RUNS; run++)); do
    shift_by=$(((run - 1) % ${#CONTENDERS[@]}))
    ORDER=("${CONTENDERS[@]:shift_by}" "${CONTENDERS[@]:0:shift_by}")
    section "run $run of $RUNS: snapshots in the order ${ORDER[*]}"
    for c in "${ORDER[@]}"; do
        if [[ "$c" == bk ]]; then bk_step "$run"; else tool_step "$c" "$run"; fi
    done
done

if [[ "$PERF" == 1 ]]; then
    section "where bk's snapshot time goes (untimed run under perf record -F 499 -g)"
    perf_step
fi

for ri in "${INTERVALS[@]}"; do
    lag_step "$ri"
done

section "repository at the end"
echo "bk repository: $(dusb "$BK_REPO") bytes"
"$BK" list --config "$BK_CONF" --source "$SOURCE" | sed 's/^/  /' | head -30

summary

section "done"
echo "finished $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
