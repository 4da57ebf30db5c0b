#!/usr/bin/env bash
# The archiver's last cycle at a fast shutdown (extension/README.md,
# "Shutdown"), on a PostgreSQL cluster of the test's own with
# archive_library = 'bk' and the test Kafka:
#   - Kafka silent for the first attempt of the last cycle (its broker
#     stopped with SIGSTOP, resumed as soon as that attempt failed): the
#     retry PostgreSQL makes a second later finds Kafka back and the whole
#     backlog is archived, none left .ready (a switchover that makes the
#     server a standby would never archive those);
#   - Kafka unreachable for the whole last cycle: the retry waits 3 s of its
#     own, the attempt after it fails at once, and the shutdown is not held
#     up (< 15 s), every segment still .ready.
# The archiver is stopped (SIGSTOP) while the backlog builds, until the
# postmaster asked it to finish (SIGUSR2), so that the last cycle is the
# only one that sends it.
#
# The cluster runs the binaries of BK_TEST_PGBIN (default: those
# scripts/services runs), which load bk.so from their own lib directory:
# with BK_TEST_TREE=1 the tree's extension runs only from a relocated copy
# of PostgreSQL with it installed there (make -C extension install
# DESTDIR=...).  Needs root (runuser postgres) and kcat.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env)"
SERVICES="$ROOT/scripts/services"
source "$ROOT/tests/lib/bk_bin.sh"

if [[ "$(id -u)" != 0 ]]; then
    echo "1..0 # SKIP needs root (runuser postgres)"
    exit 0
fi

pgbin="${BK_TEST_PGBIN:-$BK_PGBIN}"
port=$((PGPORT + 41))
dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-arch-stop.XXXXXX")"
chmod 755 "$dir"
mkdir "$dir/pg" && chown postgres: "$dir/pg"
data="$dir/pg/data"
pglog="$dir/pg/postgresql.log"
prefix="bkit-stop-$$-$RANDOM"
kafka_pid=""
kafka_stopped=0
archiver_pid=""

as_pg() { runuser -u postgres -- "$@"; }
q() { psql -X -qAt -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"; }
now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
log_size() { stat -c %s "$pglog"; }
log_since() { tail -c +$(($1 + 1)) "$pglog"; }
# log_ms LINE: a server log line's time stamp (log_line_prefix %m), in ms.
log_ms() { date -d "$(cut -d' ' -f1-3 <<<"$1")" +%s%3N; }
switch_wal() {
    q -c "SELECT pg_walfile_name(pg_logical_emit_message(false, 'bk-test', 'x'))" \
        -c "SELECT pg_switch_wal()" | head -n 1
}
ready() { ls "$data/pg_wal/archive_status" | grep '\.ready$' | sort; }
archived_through() {
    local last
    last="$(q -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")"
    [[ -n "$last" && ! "$last" < "$1" ]]
}
wal_headers() { kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.wal" -e -q -f '%h\n' 2>/dev/null; }
# usr2_pending: the postmaster asked the stopped archiver to finish
# (SIGUSR2, 12, pending for the process: bit 11 of ShdPnd).
usr2_pending() {
    local mask
    mask="$(awk '/^ShdPnd:/ { print $2 }' "/proc/$archiver_pid/status" 2>/dev/null)"
    [[ -n "$mask" ]] && (((16#$mask >> 11) & 1))
}
resume_kafka() {
    ((kafka_stopped)) && kill -CONT "$kafka_pid" 2>/dev/null
    kafka_stopped=0
}
cleanup() {
    # Kafka first: the other tests share it.
    resume_kafka
    [[ -n "$archiver_pid" ]] && kill -CONT "$archiver_pid" 2>/dev/null
    [[ -f "$data/postmaster.pid" ]] && as_pg "$pgbin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT

# stopped_backlog N: the archiver stopped, then N segments ready.
stopped_backlog() {
    archiver_pid="$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'archiver'")"
    [[ -n "$archiver_pid" ]] || bail_out "no archiver"
    kill -STOP "$archiver_pid"
    for _ in $(seq 1 "$1"); do
        segment="$(switch_wal)"
    done
    ready_before="$(ready)"
}
# fast_stop: pg_ctl -m fast stop in the background (stop_pid); returns once
# the postmaster asked the stopped archiver to finish.
fast_stop() {
    as_pg "$pgbin/pg_ctl" -D "$data" -m fast -w -t 120 stop >"$dir/stop.log" 2>&1 &
    stop_pid=$!
    wait_for 60 "the postmaster to ask the archiver to finish" usr2_pending ||
        bail_out "the archiver (pid $archiver_pid) got no SIGUSR2"
}
start_pg() {
    as_pg "$pgbin/pg_ctl" -D "$data" -l "$pglog" -w -t 60 start >"$dir/start.log" 2>&1
}

# ---- set up: key, topics, a cluster archiving with bk
bk_test_build
ok $? "bk is built"
kafka_pid="$("$SERVICES" status kafka | sed -n 's/^kafka: running (pid \([0-9]*\),.*/\1/p')"
[[ -n "$kafka_pid" ]] || bail_out "the test Kafka is not running (scripts/services start kafka)"
"$BK" keygen --out "$dir/bk.key" >/dev/null 2>&1 && chmod 644 "$dir/bk.key.pub"
printf 'kafka_brokers = %s\ntopic_prefix = %s\n' "$BK_KAFKA_BROKERS" "$prefix" >"$dir/bk.conf"
"$BK" init --config "$dir/bk.conf" >/dev/null
ok $? "topics created"
as_pg "$pgbin/initdb" -D "$data" -A trust -U postgres --locale=C --encoding=UTF8 >"$dir/initdb.log" 2>&1
ok $? "initdb" || { diag "$(cat "$dir/initdb.log")"; bail_out "initdb failed"; }
cat >>"$data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
log_line_prefix = '%m [%p] '
shared_preload_libraries = 'bk'
archive_mode = on
archive_library = 'bk'
bk.kafka_brokers = '$BK_KAFKA_BROKERS'
bk.topic_prefix = '$prefix'
bk.key_file = '$dir/bk.key.pub'
CONF
start_pg
ok $? "the cluster starts with archive_library = 'bk'" ||
    { diag "$(cat "$dir/start.log")"; bail_out "the cluster does not start"; }
segment="$(switch_wal)"
wait_for 60 "$segment archived" archived_through "$segment"
ok $? "a segment is archived" || { diag "$(tail -n 20 "$pglog")"; bail_out "nothing archived"; }

# ---- Kafka silent for the first attempt of the last cycle, then back
stopped_backlog 4
ok $(($(grep -c . <<<"$ready_before") >= 4 ? 0 : 1)) \
    "a backlog of $(grep -c . <<<"$ready_before") segments, the archiver stopped"
log_start="$(log_size)"
fast_stop
kill -STOP "$kafka_pid" && kafka_stopped=1
t0="$(now_ms)"
kill -CONT "$archiver_pid"
# Resumed as soon as the attempt failed: PostgreSQL retries a second later.
failed=1
for _ in $(seq 1 400); do
    log_since "$log_start" | grep -q 'WARNING:  bk: could not archive' && {
        failed=0
        break
    }
    sleep 0.05
done
resume_kafka
fail_ms=$(($(now_ms) - t0))
ok $failed "the last cycle's first attempt fails while Kafka is stopped ($fail_ms ms)"
wait "$stop_pid"
ok $? "pg_ctl -m fast stop" || diag "$(cat "$dir/stop.log")"
note "Kafka silent for the first attempt: the shutdown took $(($(now_ms) - t0)) ms"
left="$(ready)"
is "$(comm -12 <(echo "$ready_before") <(echo "$left") | grep -c .)" 0 \
    "the last cycle archived the backlog once Kafka was back (none left .ready)" ||
    diag "left: $left" "$(log_since "$log_start" | grep -A2 'could not archive' | head -n 9)"
like "$(log_since "$log_start" | grep -m 1 'bk: archived .* after')" \
    'LOG:  bk: archived "[0-9A-F]{24}" after [12] failed attempts' \
    "the log says a file was archived after the failed attempt"
wal_headers | grep -qF "bk-object=$segment,"
ok $? "the last segment of the backlog is on $prefix.wal"
start_pg
ok $? "the cluster starts again" || diag "$(cat "$dir/start.log")"

# ---- Kafka unreachable for the whole last cycle: bounded
q -c "ALTER SYSTEM SET bk.kafka_brokers = '127.0.0.1:1'" >/dev/null
stopped_backlog 3
q -c "SELECT pg_reload_conf()" >/dev/null
log_start="$(log_size)"
fast_stop
t0="$(now_ms)"
kill -CONT "$archiver_pid"
wait "$stop_pid"
ok $? "pg_ctl -m fast stop with Kafka unreachable" || diag "$(cat "$dir/stop.log")"
stop_ms=$(($(now_ms) - t0))
ok $((stop_ms < 15000 ? 0 : 1)) "the shutdown took $stop_ms ms (< 15 s)"
is "$(comm -23 <(echo "$ready_before") <(ready) | grep -c .)" 0 \
    "every segment of the backlog is still .ready"
warnings="$(log_since "$log_start" | grep 'WARNING:  bk: could not archive')"
is "$(grep -c . <<<"$warnings")" 3 "three attempts, PostgreSQL's tries of one file" ||
    diag "$warnings"
gap1=$(($(log_ms "$(sed -n 2p <<<"$warnings")") - $(log_ms "$(sed -n 1p <<<"$warnings")")))
gap2=$(($(log_ms "$(sed -n 3p <<<"$warnings")") - $(log_ms "$(sed -n 2p <<<"$warnings")")))
# PostgreSQL sleeps 1 s between tries; the rest is the attempt.
ok $((gap1 >= 3800 ? 0 : 1)) "the retry waited 3 s for Kafka on its own ($gap1 ms after the first)"
ok $((gap2 < 2500 ? 0 : 1)) "after two such attempts the third fails at once ($gap2 ms after the second)"

done_testing
