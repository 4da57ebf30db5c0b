# bench/lib.sh: what the benchmark scripts share.  Sourced, not run:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Expects REPO_ROOT to be set and the current directory to be the work tree.

HZ="$(getconf CLK_TCK)"

# bench_output NAME: everything printed from now on also goes to
# bench/results/NAME-<UTC date-time>.txt (RESULTS); bench_output_end, last
# thing in the cleanup trap, lets tee write the last lines.
bench_output() {
    mkdir -p "$REPO_ROOT/bench/results"
    STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
    RESULTS="bench/results/$1-$STAMP.txt"
    exec > >(tee "$REPO_ROOT/$RESULTS") 2>&1
    TEE_PID=$!
}
bench_output_end() {
    exec >&- 2>&-
    wait "$TEE_PID" 2>/dev/null || true
}
# bench_finish KEEP: the end of a cleanup trap: stop the servers of
# $SERVICES, remove $WORK (or keep it when KEEP is 1), say where the
# results are.
bench_finish() {
    "$SERVICES" stop || echo "warning: scripts/services stop failed" >&2
    if [[ "$1" == 1 ]]; then
        echo "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    echo "results: $RESULTS"
    bench_output_end
}

# bench_nap_init DIR: nap SECONDS, a fork-free sleep (a read with a timeout
# from a FIFO nobody writes to), for polling loops.
bench_nap_init() {
    mkfifo "$1/sleep.fifo"
    exec {SLEEP_FD}<>"$1/sleep.fifo"
}
nap() { read -r -t "$1" -u "$SLEEP_FD" _ || true; }

# settle: before a timed step, let memory freed by the steps before it
# (removed repositories, restored directories, a template copied over)
# stay free for BENCH_SETTLE seconds [5].  On a virtual machine whose
# balloon driver reports free pages to the host (free page reporting, see
# bench/pagecache.sh), a page reported free costs several times more CPU at
# its next use than one freed a moment ago; without the pause the contender
# that runs right after a large removal writes into cheap pages and the
# others do not.  With it, every contender starts from the same state.
settle() {
    sync
    nap "${BENCH_SETTLE:-5}"
}

section() { printf '\n== %s\n' "$*"; }
as_pg() { runuser -u postgres -- "$@"; }
psql_q() { psql -X -q -t -A -v ON_ERROR_STOP=1 -c "$1"; }
now() { echo "$EPOCHREALTIME"; }
calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }
ms_per() { calc "1000 * ($1) / $HZ / $2" 1; } # TICKS N -> ms each

# ---------------------------------------------------------------- /proc

# TICKS: utime+stime+cutime+cstime of process $1 (all threads, and children
# it has waited for); empty when there is no such process.
proc_ticks() {
    local line
    TICKS=""
    [[ -n "$1" ]] || return 0
    read -r line 2>/dev/null <"/proc/$1/stat" || return 0
    # shellcheck disable=SC2086
    set -- ${line##*) }
    TICKS=$((${12} + ${13} + ${14} + ${15}))
}
# OWN: utime+stime of process $1 (its threads, not its children).
proc_own_ticks() {
    local line
    OWN=""
    [[ -n "$1" ]] || return 0
    read -r line 2>/dev/null <"/proc/$1/stat" || return 0
    # shellcheck disable=SC2086
    set -- ${line##*) }
    OWN=$((${12} + ${13}))
}
# PGTREE: CPU ticks of the PostgreSQL in $BK_PGDATA: the postmaster (with
# every child it has reaped: backends, workers, walsenders) and its live
# children (with every child they have reaped, such as the shell and
# pgbackrest of an archive_command).
pg_tree_ticks() {
    local pm f line
    PGTREE=0
    read -r pm <"$BK_PGDATA/postmaster.pid" || return 0
    for f in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$f" || continue
        # shellcheck disable=SC2086
        set -- ${line##*) }
        if [[ "$2" == "$pm" || "${f:6:-5}" == "$pm" ]]; then
            PGTREE=$((PGTREE + ${12} + ${13} + ${14} + ${15}))
        fi
    done
}
# PG_PM and PG_CHILDREN: the postmaster of $BK_PGDATA and its live
# children, as ",pid,pid,...," (for index() in awk).
pg_children() {
    local f line
    PG_CHILDREN=","
    read -r PG_PM <"$BK_PGDATA/postmaster.pid" || return 0
    for f in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$f" || continue
        # shellcheck disable=SC2086
        set -- ${line##*) }
        [[ "$2" == "$PG_PM" ]] && PG_CHILDREN="$PG_CHILDREN${f:6:-5},"
    done
    return 0
}
# kafka_config_alter TOPIC KEY=VALUE: a topic's configuration, changed with
# Kafka's own tool (BK_KAFKA_LIBS, BK_KAFKA_BROKERS from scripts/services).
kafka_config_alter() {
    java -cp "$BK_KAFKA_LIBS/*" kafka.admin.ConfigCommand --bootstrap-server "$BK_KAFKA_BROKERS" \
        --entity-type topics --entity-name "$1" --alter --add-config "$2" 2>&1 | grep -E '^Completed|rror' | sed 's/^/  /'
}
# KB: a "VmXXX:" line ($2) of /proc/$1/status in kB; empty when gone.
proc_vm() {
    local key value
    KB=""
    while read -r key value _; do
        if [[ "$key" == "$2:" ]]; then
            KB="$value"
            return 0
        fi
    done 2>/dev/null <"/proc/$1/status" || true
}
# MACHINE: busy ticks of all CPUs (user+nice+system+irq+softirq); STEAL.
machine_ticks() {
    local user nice system irq softirq steal rest
    read -r _ user nice system _ _ irq softirq steal rest </proc/stat
    MACHINE=$((user + nice + system + irq + softirq))
    STEAL=$steal
}
# SELF: CPU of this script and everything it ran and waited for.
self_ticks() {
    proc_ticks $$
    SELF=$TICKS
}

# ---------------------------------------------------------------- servers

# pg_conf LINES...: the whole of $BK_PGDATA/bk_test.conf (included last by
# the postgresql.conf of scripts/services).
pg_conf() {
    printf '%s\n' "$@" >"$BK_PGDATA/bk_test.conf"
    chown postgres:postgres "$BK_PGDATA/bk_test.conf"
}
# start_shipper / stop_shipper: $SHIPPER --config $BK_CONF in the
# background (SHIPPER_PID), logging to $SHIPPER_LOG; stopped with SIGTERM.
start_shipper() {
    "$SHIPPER" --config "$BK_CONF" >>"${SHIPPER_LOG:-$WORK/shipper.log}" 2>&1 &
    SHIPPER_PID=$!
}
stop_shipper() {
    if [[ -n "$SHIPPER_PID" ]]; then
        kill -TERM "$SHIPPER_PID" 2>/dev/null || true
        wait "$SHIPPER_PID" 2>/dev/null || true
        SHIPPER_PID=""
    fi
}

# pgbr_write_conf CONF REPO PROCESS_MAX [GLOBAL-OPTION...]: a pgBackRest
# configuration as bk's peers are compared: lz4 level 1 and aes-256-cbc
# (passphrase $PGBR_PASS), stanza "bench" for the PostgreSQL in $BK_PGDATA,
# logs and locks under $WORK/pgbr.
pgbr_write_conf() {
    local conf="$1" repo="$2" pmax="$3"
    shift 3
    {
        echo "[global]"
        printf '%s\n' "repo1-path=$repo" "repo1-cipher-type=aes-256-cbc" \
            "repo1-cipher-pass=$PGBR_PASS" "compress-type=lz4" \
            "compress-level=1" "process-max=$pmax" "$@" \
            "log-path=$WORK/pgbr/log" "lock-path=$WORK/pgbr/lock" \
            "log-level-console=warn" "log-level-file=info"
        echo
        echo "[bench]"
        printf '%s\n' "pg1-path=$BK_PGDATA" "pg1-port=$PGPORT" \
            "pg1-socket-path=$PG_SOCKET_DIR" "pg1-user=postgres"
    } >"$conf"
    chown postgres:postgres "$conf"
    chmod 640 "$conf"
}

# ---- the MariaDB benchmarks (mariadb.sh, mariadb_restore.sh) ----
# With BK, WORK, DB, ROLE, TABLES, TABLE_SIZE, RANDOM_MB, MYSQL_DATADIR,
# MYSQL_TCP_PORT and BK_KAFKA_BROKERS set, and the script's my() and die().

# mdb_bk_setup TAG: a key pair, $BK_CONF (repository $BK_REPO, topics of
# their own), the topics, and on the server the bk functions and $ROLE
# (granted to root, its creator); sets BK_REPO, BK_CONF, BK_PREFIX, SOURCE.
mdb_bk_setup() {
    "$BK" keygen --out "$WORK/bk.key" >/dev/null
    chmod 644 "$WORK/bk.key.pub"
    BK_REPO="$WORK/bk-repo"
    BK_CONF="$WORK/bk.conf"
    BK_PREFIX="bkbench-$1-$$"
    SOURCE="bench-$1-$$"
    cat >"$BK_CONF" <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $BK_PREFIX
repository = $BK_REPO
key_file = $WORK/bk.key
shipper_id = bench-$1-$$
group_id = bench-$1-$$
CONF
    chmod 644 "$BK_CONF"
    "$BK" init --config "$BK_CONF" >"$WORK/bk-init.out" 2>&1 || { cat "$WORK/bk-init.out"; die "bk init"; }
    my "CREATE ROLE $ROLE;
        CREATE FUNCTION bk_snapshot RETURNS STRING SONAME 'bk_udf.so';
        CREATE FUNCTION bk_snapshot_cancel RETURNS STRING SONAME 'bk_udf.so';
        CREATE FUNCTION bk_status RETURNS STRING SONAME 'bk_udf.so'"
}

# mdb_make_database: the database $DB: sysbench oltp_read_write prepare
# ($TABLES x $TABLE_SIZE rows) and $DB.random_bytes ($RANDOM_MB MiB of
# RANDOM_BYTES(1024) rows), analyzed; sets DB_BYTES (its files).
mdb_make_database() {
    section "database: sysbench $TABLES x $TABLE_SIZE rows, random_bytes $RANDOM_MB MiB"
    local t0=$EPOCHREALTIME rows n
    my "CREATE DATABASE $DB"
    sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$MYSQL_TCP_PORT" \
        --mysql-user=root --mysql-db="$DB" --tables="$TABLES" --table-size="$TABLE_SIZE" --threads=2 \
        prepare >"$WORK/sb-prepare.log" 2>&1 || { tail "$WORK/sb-prepare.log"; die "sysbench prepare"; }
    echo "sysbench prepare: $(calc "$EPOCHREALTIME - $t0" 1) s"
    t0=$EPOCHREALTIME
    my "CREATE TABLE $DB.random_bytes (id INT PRIMARY KEY, b VARBINARY(1024) NOT NULL) ENGINE=InnoDB"
    rows=$((RANDOM_MB * 1024))
    for ((n = 0; n < rows; n += 50000)); do
        my "INSERT INTO $DB.random_bytes SELECT seq, RANDOM_BYTES(1024) FROM $DB.seq_$((n + 1))_to_$((n + 50000 < rows ? n + 50000 : rows))"
    done
    echo "random_bytes ($rows rows of RANDOM_BYTES(1024)): $(calc "$EPOCHREALTIME - $t0" 1) s"
    my "ANALYZE TABLE $(for ((n = 1; n <= TABLES; n++)); do printf '%s.sbtest%d, ' "$DB" "$n"; done)$DB.random_bytes" >/dev/null
    my "SELECT table_name, table_rows, data_length + index_length FROM information_schema.TABLES WHERE table_schema = '$DB' ORDER BY table_name" |
        awk '{ printf "  %-14s %10d rows (estimate) %12d bytes\n", $1, $2, $3; s += $3 } END { printf "  information_schema data_length + index_length: %d bytes\n", s }'
    DB_BYTES=$(du -sb "$MYSQL_DATADIR/$DB" | cut -f1)
    echo "database files ($MYSQL_DATADIR/$DB): $DB_BYTES bytes"
    ((DB_BYTES >= 1000000000)) || echo "NOTE: the database is smaller than 1 GB"
}
