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
