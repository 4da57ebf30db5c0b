#!/usr/bin/env bash
# The PostgreSQL extension bk against the real servers (scripts/services):
# installed, loaded (shared_preload_libraries and archive_library), then
#   - pg_regress (sql/bk.sql) and pgTAP (tests/pgtap/*.sql) against it;
#   - a switched segment reaches Kafka: its chunks carry the right headers,
#     and a marker written into a table is nowhere in plaintext on the topic;
#   - with Kafka unreachable an attempt fails within bk.kafka_timeout, the
#     segment and its .ready file stay, the log says why, the archiver does
#     not restart; a snapshot fails with an ERROR that says why and what
#     to do; a fast shutdown is not held up; the backlog drains once Kafka
#     is back;
#   - a truncated segment's WARNING says how archiving can go on;
#   - a private key file, a public one others can write, or a missing key
#     file is refused, WAL kept;
#   - bk.kafka_properties_file: refused when others may read it or
#     another user owns it; its properties applied literally, read again
#     at reload, a bad one refused without failing parallel queries; the
#     password in it never in the server log nor in an error (a password
#     in bk.kafka_properties is);
#   - bk.target_rpo ships a lone INSERT on an idle server within the target,
#     and does not keep switching on an idle server;
#   - bk.wait_for = 'repository' waits for the shipper's audit event of this
#     very attempt, stops at once when the shipper gave the attempt up, and
#     gives up after bk.repository_timeout.
#   - with bk.wait_for = 'repository' a snapshot completes only once the
#     shipper's events confirm its record and every other object of it,
#     and fails after bk.repository_timeout naming what was not confirmed;
#   - CALL bk_snapshot_wait(id) waits for a snapshot holding no snapshot of
#     the database (no backend_xmin), unlike a waiting SELECT.
# At the end the server gets its plain configuration back.  Needs root (to
# install the extension and to run things as the postgres OS user).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env)"
export PGHOST PGPORT PGUSER
SERVICES="$ROOT/scripts/services"
BK="$ROOT/cli/bk"
PGLOG="$BK_SERVICES_DIR/pg/postgresql.log"
CONF="$BK_PGDATA/bk_test.conf"
KAFKA_TIMEOUT_S=3
TARGET_RPO_S=5
TRUNCATED=0000FFFF0000000000000001

if [[ "$(id -u)" != 0 ]]; then
    echo "1..0 # SKIP needs root (make install of the extension, runuser postgres)"
    exit 0
fi
[[ -x "$BK" ]] || bail_out "$BK is missing: build it with make -C shipper"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-ext.XXXXXX")"
chmod 755 "$dir"
prefix="bkit-ext-$$-$RANDOM"
DB=bk_extension_test

as_pg() { runuser -u postgres -- "$@"; }
# q SQL...: run statements in the test database, print tuples unaligned.
q() { psql -X -qAt -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
qp() { psql -X -qAt -v ON_ERROR_STOP=1 -d postgres "$@"; }
now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
log_size() { stat -c %s "$PGLOG"; }
# log_since OFFSET: the server log written after OFFSET bytes.
log_since() { tail -c +$(($1 + 1)) "$PGLOG"; }
log_has() { log_since "$1" | grep -qF -- "$2"; }
# A new connection sees what the postmaster has reloaded, and by then the
# postmaster has signalled the archiver and the worker too.
setting_is() { [[ "$(qp -c "SHOW $1")" == "$2" ]]; }
reload_until() {
    qp -c "SELECT pg_reload_conf()" >/dev/null
    wait_for 30 "$1 = '$2' after reload" setting_is "$1" "$2"
}
archived_at_least() {
    [[ "$(qp -c "SELECT coalesce(last_archived_wal >= '$1', false) FROM pg_stat_archiver")" == t ]]
}
no_backlog() { [[ -z "$(ls "$BK_PGDATA/pg_wal/archive_status" | grep '\.ready$')" ]]; }
# switch_wal: write a little WAL, switch, print the completed segment.
switch_wal() {
    q -c "SELECT pg_walfile_name(pg_logical_emit_message(false, 'bk-test', 'x'))" \
        -c "SELECT pg_switch_wal()" | head -n 1
}
status() { q -c "SELECT $1 FROM bk_status()"; }
kafka_topics() {
    timeout 60 java -Xmx256m -XX:-UsePerfData -cp "$BK_KAFKA_LIBS/*" \
        org.apache.kafka.tools.TopicCommand --bootstrap-server "$BK_KAFKA_BROKERS" "$@" 2>&1
}
# Headers ("%h") of every message on the WAL topic so far.
wal_headers() { kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.wal" -e -q -f '%h\n' 2>/dev/null; }
# log_epoch LINE: the time stamp of a server log line, in ms since the epoch.
log_epoch() { date -d "$(cut -d' ' -f1-3 <<<"$1")" +%s%3N; }

cleanup() {
    qp -c "ALTER SYSTEM RESET bk.kafka_brokers" -c "ALTER SYSTEM RESET bk.key_file" \
        -c "ALTER SYSTEM RESET bk.target_rpo" -c "ALTER SYSTEM RESET bk.wait_for" \
        -c "ALTER SYSTEM RESET bk.repository_timeout" \
        -c "ALTER SYSTEM RESET bk.kafka_properties_file" \
        -c "ALTER SYSTEM RESET bk.kafka_properties" \
        -c "ALTER SYSTEM RESET bk.chunk_size" -c "ALTER SYSTEM RESET bk.shutdown_timeout" >/dev/null 2>&1
    qp -c "DROP DATABASE IF EXISTS $DB" -c "DROP DATABASE IF EXISTS contrib_regression" \
        >/dev/null 2>&1
    qp -c "DROP ROLE IF EXISTS bk_admin" -c "DROP ROLE IF EXISTS bk_monitor" >/dev/null 2>&1
    as_pg sh -c ": >'$CONF'"
    rm -f "$BK_PGDATA/pg_wal/archive_status/$TRUNCATED.ready" "$BK_PGDATA/pg_wal/$TRUNCATED"
    "$SERVICES" restart pg >/dev/null 2>&1
    kafka_topics --delete --topic "$prefix\..*" >/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

log_start_all="$(stat -c %s "$PGLOG" 2>/dev/null || echo 0)"

# ------------------------------------------------------------------ set up
make -s -C "$ROOT/common" >/dev/null &&
    make -s -C "$ROOT/extension" >"$dir/build.log" 2>&1 &&
    make -s -C "$ROOT/extension" install >>"$dir/build.log" 2>&1
ok $? "the extension builds and installs" || diag "$(cat "$dir/build.log")"
is "$(grep -ci 'warning' "$dir/build.log")" 0 "the build prints no warnings"

key_id="$("$BK" keygen --out "$dir/bk.key" 2>/dev/null)"
ok $? "bk keygen makes a key pair"
as_pg test -r "$dir/bk.key.pub"
ok $? "the postgres OS user can read the public key"

printf 'kafka_brokers = %s\ntopic_prefix = %s\n' "$BK_KAFKA_BROKERS" "$prefix" >"$dir/bk.conf"
"$BK" init --config "$dir/bk.conf" >"$dir/init.log" 2>&1
ok $? "bk init creates the topics $prefix.*" || diag "$(cat "$dir/init.log")"

# Leftovers of an interrupted earlier run would override bk_test.conf.
qp -c "ALTER SYSTEM RESET bk.kafka_brokers" -c "ALTER SYSTEM RESET bk.key_file" \
    -c "ALTER SYSTEM RESET bk.target_rpo" -c "ALTER SYSTEM RESET bk.wait_for" \
    -c "ALTER SYSTEM RESET bk.repository_timeout" \
    -c "ALTER SYSTEM RESET bk.kafka_properties_file" \
    -c "ALTER SYSTEM RESET bk.kafka_properties" \
    -c "ALTER SYSTEM RESET bk.chunk_size" -c "ALTER SYSTEM RESET bk.shutdown_timeout" >/dev/null 2>&1
# Other tests leave it behind owned by root; this one writes it as postgres.
rm -f "$CONF"
as_pg tee "$CONF" >/dev/null <<CONF
shared_preload_libraries = 'bk'
archive_library = 'bk'
archive_timeout = 0
bk.kafka_brokers = '$BK_KAFKA_BROKERS'
bk.topic_prefix = '$prefix'
bk.key_file = '$dir/bk.key.pub'
bk.kafka_timeout = '${KAFKA_TIMEOUT_S}s'
CONF
"$SERVICES" restart pg >"$dir/restart.log" 2>&1
ok $? "PostgreSQL restarts with bk preloaded and as archive_library" ||
    diag "$(cat "$dir/restart.log")"
is "$(qp -c 'SHOW archive_library')" "bk" "archive_library is bk"
postmaster_pid="$(head -n 1 "$BK_PGDATA/postmaster.pid")"
ps -o args= --ppid "$postmaster_pid" | grep -q 'bk RPO worker'
ok $? "the bk RPO background worker runs"

qp -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" \
    -c "CREATE DATABASE $DB" >/dev/null
q -c "CREATE EXTENSION bk" -c "CREATE EXTENSION pgtap" >/dev/null
ok $? "CREATE EXTENSION bk (and pgtap) in $DB"
sysid="$(q -c "SELECT system_identifier FROM pg_control_system()")"
is "$(status key_id)" "$key_id" "bk_status() reports the id of the key in bk.key_file"
is "$(status source_id)" "$sysid" "the source id is the system identifier"

# ------------------------------------------------------------------ pg_regress, pgTAP
make -C "$ROOT/extension" installcheck >"$dir/regress.log" 2>&1
ok $? "pg_regress: make -C extension installcheck" || {
    diag "$(cat "$dir/regress.log")"
    [[ -f "$ROOT/extension/regression.diffs" ]] && diag "$(cat "$ROOT/extension/regression.diffs")"
}

pg_prove -d "$DB" "$ROOT"/tests/pgtap/*.sql >"$dir/prove.log" 2>&1
ok $? "pgTAP: pg_prove tests/pgtap/*.sql" || diag "$(cat "$dir/prove.log")"
note "$(grep -E '^(Files|Result)' "$dir/prove.log")"

# ------------------------------------------------------------------ (a) to Kafka, encrypted
marker="bk-marker-$$-$RANDOM-$RANDOM-plaintext"
q -c "CREATE TABLE bk_marker (t text)" -c "INSERT INTO bk_marker VALUES ('$marker')"
segment="$(switch_wal)"
like "$segment" '^[0-9A-F]{24}$' "switched segment $segment"
grep -qaF -- "$marker" "$BK_PGDATA/pg_wal/$segment"
ok $? "the marker is in the segment in pg_wal (the check below can fail)"
wait_for 60 "$segment archived" archived_at_least "$segment"
ok $? "PostgreSQL reports $segment archived"

headers="$(wal_headers | grep -F "bk-object=$segment,")"
chunk_size="$(qp -c "SELECT setting FROM pg_settings WHERE name = 'bk.chunk_size'")"
seg_size="$(qp -c "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")"
is "$(grep -c . <<<"$headers")" "$((seg_size / chunk_size))" \
    "$segment is $((seg_size / chunk_size)) messages (segment size / bk.chunk_size)"
is "$(grep -c "bk-source=$sysid," <<<"$headers")" "$((seg_size / chunk_size))" \
    "every chunk says bk-source=<system identifier>"
is "$(grep -c 'bk-meta-type=segment' <<<"$headers")" "$((seg_size / chunk_size))" \
    "every chunk says bk-meta-type=segment"
like "$(head -n 1 <<<"$headers")" "bk-kind=wal,.*bk-chunk-count=$((seg_size / chunk_size)),.*bk-key-id=$key_id,.*bk-meta-timeline=1,.*bk-meta-lsn-start=[0-9A-F]+/[0-9A-F]+,bk-meta-lsn-end=" \
    "chunks carry kind, count, key id, timeline and LSN range"
topic_bytes="$(kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.wal" -e -q -f '%s' 2>/dev/null | wc -c)"
ok $((topic_bytes < 1000)) "the topic holds data ($topic_bytes bytes)"
kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.wal" -e -q -f '%s' 2>/dev/null | grep -qaF -- "$marker"
isnt $? 0 "the marker is nowhere in plaintext on $prefix.wal"

# A segment completed just before a fast shutdown is still archived in the
# archiver's last cycle when Kafka is up.
segment="$(switch_wal)"
as_pg "$BK_PGBIN/pg_ctl" -D "$BK_PGDATA" -m fast -w -t 60 stop >"$dir/stop.log" 2>&1
ok $? "pg_ctl -m fast stop right after a WAL switch" || diag "$(cat "$dir/stop.log")"
test -f "$BK_PGDATA/pg_wal/archive_status/$segment.ready"
isnt $? 0 "$segment was archived in the archiver's last cycle (no .ready left)"
"$SERVICES" start pg >"$dir/start.log" 2>&1
ok $? "PostgreSQL starts again" || diag "$(cat "$dir/start.log")"
# Not pg_stat_archiver: PostgreSQL 15 writes its statistics at shutdown
# before the archiver's last cycle, so it may not count this segment.
wal_headers | grep -qF "bk-object=$segment,"
ok $? "its chunks are on $prefix.wal"

# A backlog at a fast shutdown, Kafka up: the last cycle goes on archiving
# while Kafka acknowledges, as archive_command would, for up to
# bk.shutdown_timeout.  What it left would be archived only when this server
# next runs as a primary; after a switchover that makes it a standby, never.
# Small chunks make each segment hundreds of acknowledgements, so that the
# backlog takes longer than the 3 s a send may wait for one.  The archiver
# is stopped (SIGSTOP) while the backlog builds and until the postmaster,
# after the shutdown checkpoint, asked it to finish.
# usr2_pending: the postmaster asked the stopped archiver to finish
# (SIGUSR2, 12, pending for the process: bit 11 of ShdPnd).
usr2_pending() {
    local mask
    mask="$(awk '/^ShdPnd:/ { print $2 }' "/proc/$archiver_pid/status" 2>/dev/null)"
    [[ -n "$mask" ]] && (((16#$mask >> 11) & 1))
}
# backlog_shutdown N: N segments ready, then a fast shutdown; sets stop_ms
# (from the archiver's resumption to the end of the shutdown), left (the
# .ready files after it) and segment (the last of the backlog).
backlog_shutdown() {
    local backlog stop_pid
    archiver_pid="$(qp -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'archiver'")"
    kill -STOP "$archiver_pid"
    for _ in $(seq 1 "$1"); do
        segment="$(switch_wal)"
    done
    backlog="$(ls "$BK_PGDATA/pg_wal/archive_status" | grep -c '\.ready$')"
    ok $((backlog >= $1 ? 0 : 1)) "a backlog of $backlog segments, the archiver stopped"
    log_start="$(log_size)"
    as_pg "$BK_PGBIN/pg_ctl" -D "$BK_PGDATA" -m fast -w -t 120 stop >"$dir/stop.log" 2>&1 &
    stop_pid=$!
    wait_for 60 "the postmaster to ask the archiver to finish" usr2_pending
    t0="$(now_ms)"
    kill -CONT "$archiver_pid"
    wait "$stop_pid"
    ok $? "pg_ctl -m fast stop with the backlog" || diag "$(cat "$dir/stop.log")"
    stop_ms=$(($(now_ms) - t0))
    left="$(ls "$BK_PGDATA/pg_wal/archive_status" | grep '\.ready$')"
    "$SERVICES" start pg >"$dir/start.log" 2>&1
    ok $? "PostgreSQL starts again" || diag "$(cat "$dir/start.log")"
}
qp -c "ALTER SYSTEM SET bk.chunk_size = '8kB'" >/dev/null
reload_until bk.chunk_size 8kB
# 24 segments of 8 kB chunks take about 10 s on an idle machine, and over
# 30 s (bk.shutdown_timeout's default) on one loaded by other tests: the
# bound is raised here so that only Kafka's silence can stop the cycle.
qp -c "ALTER SYSTEM SET bk.shutdown_timeout = '100s'" >/dev/null
reload_until bk.shutdown_timeout 100s
backlog_shutdown 24
# Kafka itself may fail a send of the last cycle: on a loaded machine the
# archiver's connection, stopped with it, can be found down when it resumes,
# or an acknowledgement take more than the 3 s.  PostgreSQL's retry a second
# later has 3 s of its own, so the cycle goes on once Kafka acknowledges
# again; only when Kafka failed or stayed silent for two attempts with no
# success between them does it rightly stop, PostgreSQL giving the file up,
# and what this checks (that it does not stop while Kafka acknowledges)
# cannot be seen.
first_failure="$(log_since "$log_start" | grep -A1 'could not archive' | grep -m 1 DETAIL)"
gave_up="$(log_since "$log_start" | grep -m 1 'failed too many times')"
if [[ -n "$gave_up" && ("$first_failure" == *"Kafka did not acknowledge"* ||
    "$first_failure" == *"to Kafka was interrupted"* ||
    "$first_failure" == *"for Kafka to acknowledge"*"was interrupted"*) ]]; then
    skip "Kafka failed or stayed silent for sends of the last cycle (${first_failure#*DETAIL:  }) and PostgreSQL gave a file up: not what is checked"
    skip "... so the last segment of the backlog was not sent"
elif ((stop_ms > 4000)); then
    is "$(grep -c . <<<"$left")" 0 \
        "the last cycle archived every segment of the backlog, in $stop_ms ms (more than the 3 s grace)" ||
        diag "left: $left" "$(log_since "$log_start" | grep -A2 'could not archive' | head -n 6)"
    wal_headers | grep -qF "bk-object=$segment,"
    ok $? "the last segment of the backlog is on $prefix.wal"
else
    skip "the backlog was archived in $stop_ms ms, within the 3 s grace: nothing shown"
    wal_headers | grep -qF "bk-object=$segment,"
    ok $? "the last segment of the backlog is on $prefix.wal"
fi
# bk.shutdown_timeout bounds that cycle (pg_ctl waits 60 s by default).
qp -c "ALTER SYSTEM SET bk.shutdown_timeout = '1s'" >/dev/null
reload_until bk.shutdown_timeout 1s
backlog_shutdown 24
ok $((stop_ms < 15000 ? 0 : 1)) "with bk.shutdown_timeout = 1s the shutdown took $stop_ms ms (30 s would be the default)"
ok $(($(grep -c . <<<"$left") > 0 ? 0 : 1)) "and left $(grep -c . <<<"$left") segments .ready for the next start"
# Each failed attempt's HINT says why; one (the first, unless Kafka failed a
# send first) says the server is shutting down.
like "$(log_since "$log_start" | grep -A2 'could not archive' | grep HINT | grep -m 1 'shutting down')" \
    'HINT:  The server is shutting down. The file stays in pg_wal and is archived when this server next runs as a primary' \
    "the WARNING's HINT says when they will be archived" ||
    diag "$(log_since "$log_start" | grep -A2 'could not archive' | head -n 9)"
qp -c "ALTER SYSTEM RESET bk.chunk_size" -c "ALTER SYSTEM RESET bk.shutdown_timeout" >/dev/null
reload_until bk.chunk_size 1MB
wait_for 90 "backlog drained" no_backlog
ok $? "after the start, the segments left are archived"

# ------------------------------------------------------------------ (b) Kafka unreachable
archiver_pid="$(qp -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'archiver'")"
failed_before="$(qp -c "SELECT failed_count FROM pg_stat_archiver")"
log_start="$(log_size)"
qp -c "ALTER SYSTEM SET bk.kafka_brokers = '127.0.0.1:1'" >/dev/null
reload_until bk.kafka_brokers 127.0.0.1:1
segment="$(switch_wal)"
wait_for 60 "three failed attempts at $segment" \
    log_has "$log_start" "archiving write-ahead log file \"$segment\" failed too many times"
ok $? "with Kafka unreachable, archiving $segment fails (three attempts)"
warnings="$(log_since "$log_start" | grep -F "WARNING:  bk: could not archive \"$segment\"")"
is "$(grep -c . <<<"$warnings")" 3 "each failed attempt is one WARNING naming the file"
first="$(log_epoch "$(sed -n 1p <<<"$warnings")")"
second="$(log_epoch "$(sed -n 2p <<<"$warnings")")"
# PostgreSQL waits 1 s between attempts; the rest is our attempt.
attempt_ms=$((second - first - 1000))
ok $((attempt_ms > (KAFKA_TIMEOUT_S + 3) * 1000 || attempt_ms < KAFKA_TIMEOUT_S * 1000 - 500)) \
    "an attempt gives up after bk.kafka_timeout = ${KAFKA_TIMEOUT_S}s, plus slack (took $attempt_ms ms)"
like "$(log_since "$log_start" | grep -A1 -F "could not archive \"$segment\"" | grep DETAIL | head -n 1)" \
    'DETAIL:  Could not read the partitions of Kafka topic "[^"]*" within [0-9]+ ms' \
    "the DETAIL says Kafka did not answer in time"
like "$(log_since "$log_start" | grep -A2 -F "could not archive \"$segment\"" | grep HINT | head -n 1)" \
    'HINT:  .*Check that Kafka is up and reachable' "the HINT says what to do"
test -f "$BK_PGDATA/pg_wal/archive_status/$segment.ready"
ok $? "PostgreSQL keeps $segment.ready"
test -f "$BK_PGDATA/pg_wal/$segment"
ok $? "and the segment itself"
is "$(log_since "$log_start" | grep -cE 'FATAL|PANIC|archiver process .* exited')" 0 \
    "no FATAL, no archiver exit in the log"
is "$(qp -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'archiver'")" "$archiver_pid" \
    "the archiver is the same process (pid $archiver_pid): no restart loop"
ok "$(($(qp -c "SELECT failed_count FROM pg_stat_archiver") > failed_before ? 0 : 1))" \
    "pg_stat_archiver counts the failures"
is "$(status last_failed_file)" "$segment" "bk_status().last_failed_file is $segment"
# A snapshot fails too.  Its caller never sees the server log: the ERROR
# itself says what failed in Kafka (the DETAIL) and what to do (the HINT).
out="$(q -c "SELECT state FROM bk_snapshot()" 2>&1)"
like "$out" 'ERROR:  bk snapshot [^ ]+ failed' "with Kafka unreachable, bk_snapshot() fails"
like "$(grep DETAIL <<<"$out")" 'Kafka' "its DETAIL says what failed in Kafka" || diag "$out"
like "$(grep HINT <<<"$out")" 'Check that Kafka is up' "its HINT says what to do" || diag "$out"

# ------------------------------------------------------------------ (c) fast shutdown with Kafka down
switch_wal >/dev/null
switch_wal >/dev/null
backlog="$(ls "$BK_PGDATA/pg_wal/archive_status" | grep -c '\.ready$')"
ok $((backlog >= 3 ? 0 : 1)) "a backlog of $backlog segments while Kafka is unreachable"
ready_before="$(ls "$BK_PGDATA/pg_wal/archive_status" | grep '\.ready$' | sort)"
log_start="$(log_size)"
t0="$(now_ms)"
as_pg "$BK_PGBIN/pg_ctl" -D "$BK_PGDATA" -m fast -w -t 60 stop >"$dir/stop.log" 2>&1
ok $? "pg_ctl -m fast stop succeeds" || diag "$(cat "$dir/stop.log")"
stop_ms=$(($(now_ms) - t0))
# The attempt under way and PostgreSQL's retry a second later wait up to
# 3 s each (plus a metadata request of up to 1 s), the others fail at once
# but for PostgreSQL's 1 s sleeps: about 12 s at most.
ok $((stop_ms < 20000 ? 0 : 1)) "fast shutdown with Kafka unreachable took $stop_ms ms (< 20 s)"
note "fast shutdown with Kafka unreachable and $backlog segments of backlog: $stop_ms ms"
# The shutdown may mark one more segment ready (a switch under way): none
# of those before may be gone.
ready_after="$(ls "$BK_PGDATA/pg_wal/archive_status" | grep '\.ready$' | sort)"
is "$(comm -23 <(echo "$ready_before") <(echo "$ready_after") | grep -c .)" 0 \
    "every .ready file survives the shutdown ($(grep -c . <<<"$ready_after") after, $backlog before)"
"$SERVICES" start pg >"$dir/start.log" 2>&1
ok $? "PostgreSQL starts again" || diag "$(cat "$dir/start.log")"

qp -c "ALTER SYSTEM RESET bk.kafka_brokers" >/dev/null
reload_until bk.kafka_brokers "$BK_KAFKA_BROKERS"
wait_for 90 "backlog drained" no_backlog
ok $? "with Kafka back, the backlog drains"
wait_for 10 "$segment archived" archived_at_least "$segment"
ok $? "$segment is archived after all"

# ------------------------------------------------------------------ (c2) a truncated segment
# PostgreSQL retries a file that cannot be archived for ever, archiving
# nothing after it: the WARNING must say how to get going again.  A segment
# of a timeline this server never uses, so that PostgreSQL never writes it.
log_start="$(log_size)"
as_pg sh -c "head -c 8192 /dev/zero >'$BK_PGDATA/pg_wal/$TRUNCATED' &&
    touch '$BK_PGDATA/pg_wal/archive_status/$TRUNCATED.ready'"
switch_wal >/dev/null
wait_for 60 "an attempt at $TRUNCATED" log_has "$log_start" "could not archive \"$TRUNCATED\""
ok $? "archiving the truncated segment $TRUNCATED fails"
report="$(log_since "$log_start" | grep -A2 -F "could not archive \"$TRUNCATED\"" | head -n 3)"
like "$report" 'DETAIL:  WAL segment "[^"]*" has 8192 bytes, not the [0-9]+ of wal_segment_size' \
    "the DETAIL says it is too short"
like "$(grep HINT <<<"$report")" \
    "HINT:  The file was truncated, and PostgreSQL retries it and archives nothing after it until it is whole. Copy the complete file over it from a standby's pg_wal .* rename its .ready file in pg_wal/archive_status to .done and take a new snapshot" \
    "the HINT says what to do"
rm -f "$BK_PGDATA/pg_wal/archive_status/$TRUNCATED.ready" "$BK_PGDATA/pg_wal/$TRUNCATED"
segment="$(switch_wal)"
wait_for 90 "$segment archived" archived_at_least "$segment"
ok $? "without it, archiving goes on"

# ------------------------------------------------------------------ (d) key files
cp "$dir/bk.key" "$dir/private.key"
chown postgres "$dir/private.key"
chmod 600 "$dir/private.key"
log_start="$(log_size)"
qp -c "ALTER SYSTEM SET bk.key_file = '$dir/private.key'" >/dev/null
reload_until bk.key_file "$dir/private.key"
segment="$(switch_wal)"
wait_for 30 "private key refused" log_has "$log_start" \
    "holds a private key; a database host must hold only the public key"
ok $? "a private key file is refused: a database host must hold only the public key"
like "$(log_since "$log_start" | grep -A2 -F "could not archive \"$segment\"" | grep HINT | head -n 1)" \
    "HINT:  Give the source \"$dir/private.key.pub\"" "the HINT points at the .pub"
test -f "$BK_PGDATA/pg_wal/archive_status/$segment.ready"
ok $? "$segment is kept"
is "$(status 'key_id IS NULL')" "t" "bk_status().key_id is NULL: no usable key"

log_start="$(log_size)"
qp -c "ALTER SYSTEM SET bk.key_file = '$dir/missing.pub'" >/dev/null
reload_until bk.key_file "$dir/missing.pub"
switch_wal >/dev/null
wait_for 30 "missing key refused" log_has "$log_start" \
    "DETAIL:  Could not open key file \"$dir/missing.pub\": No such file or directory."
ok $? "a missing key file is reported with its path"
test -f "$BK_PGDATA/pg_wal/archive_status/$segment.ready"
ok $? "$segment is still kept"

# Whoever can write the .pub chooses the key backups are sealed to.
cp "$dir/bk.key.pub" "$dir/writable.pub"
chmod 664 "$dir/writable.pub"
log_start="$(log_size)"
qp -c "ALTER SYSTEM SET bk.key_file = '$dir/writable.pub'" >/dev/null
reload_until bk.key_file "$dir/writable.pub"
switch_wal >/dev/null
wait_for 30 "writable public key refused" log_has "$log_start" \
    "DETAIL:  Public key file \"$dir/writable.pub\" is writable by group or others (mode 0664)."
ok $? "a public key file its group can write is refused"
like "$(log_since "$log_start" | grep HINT | grep -F "chmod go-w" | head -n 1)" \
    "HINT:  Run \"chmod go-w $dir/writable.pub\"" "... the HINT says what to run"
test -f "$BK_PGDATA/pg_wal/archive_status/$segment.ready"
ok $? "$segment is still kept"

qp -c "ALTER SYSTEM RESET bk.key_file" >/dev/null
reload_until bk.key_file "$dir/bk.key.pub"
wait_for 90 "backlog drained" no_backlog
ok $? "with the public key back, the backlog drains"

# Rotation in place: a new public key written over the same file (same path,
# same inode) is picked up without a reload.
new_key_id="$("$BK" keygen --out "$dir/new.key" 2>/dev/null)"
cp "$dir/bk.key.pub" "$dir/old.key.pub"
cat "$dir/new.key.pub" >"$dir/bk.key.pub"
segment="$(switch_wal)"
wait_for 60 "$segment archived" archived_at_least "$segment"
like "$(wal_headers | grep -F "bk-object=$segment," | head -n 1)" "bk-key-id=$new_key_id," \
    "a key file rewritten in place is reloaded: $segment is sealed to key $new_key_id"
is "$(status key_id)" "$new_key_id" "bk_status() reports the new key id"
cat "$dir/old.key.pub" >"$dir/bk.key.pub"

# ------------------------------------------------------------------ (d2) Kafka properties from a file
# PostgreSQL logs the new value of every parameter a reload changes: a
# password in bk.kafka_properties is in the server log (the control below
# shows this grep would see it).  In the file bk.kafka_properties_file
# names, only the path is.
secret="bk-test-secret-$$-$RANDOM"
control="bk-test-control-$$-$RANDOM"
log_start="$(log_size)"
qp -c "ALTER SYSTEM SET bk.kafka_properties = 'sasl.password=$control'" >/dev/null
reload_until bk.kafka_properties "sasl.password=$control"
wait_for 10 "the control password logged" log_has "$log_start" "$control"
ok $? "control: a password in bk.kafka_properties is written to the server log at reload"
qp -c "ALTER SYSTEM RESET bk.kafka_properties" >/dev/null
reload_until bk.kafka_properties ""

props="$dir/kafka.properties"
# The password holds ";", "\" and " #": one property per line, literally.
printf '# passwords and the like\nsasl.password=%s;x\\y #z\n\n  message.max.bytes=100000\n' "$secret" >"$props"
chown postgres "$props"
chmod 644 "$props"
like "$(qp -c "ALTER SYSTEM SET bk.kafka_properties_file = '$props'" 2>&1)" \
    "Kafka properties file \"$props\" is accessible by group or others \\(mode 0644\\)" \
    "a properties file others may read is refused"
chmod 640 "$props"
like "$(qp -c "ALTER SYSTEM SET bk.kafka_properties_file = '$props'" 2>&1)" \
    "is accessible by group or others \\(mode 0640\\)" \
    "so is one of mode 0640 owned by postgres"
chown nobody "$props"
chmod 644 "$props"
like "$(qp -c "ALTER SYSTEM SET bk.kafka_properties_file = '$props'" 2>&1)" \
    "is owned by \"nobody\" \\(uid [0-9]+\\), not by \"postgres\" \\(uid [0-9]+\\), whom bk runs as, nor by root" \
    "so is one another user owns (mode 0644: postgres may read it), its owner named"
chmod 640 "$props"
chown root:postgres "$props"
qp -c "ALTER SYSTEM SET bk.kafka_properties_file = '$props'" >/dev/null
ok $? "one of mode 0640 owned by root (group postgres) is accepted"
chown postgres "$props"
chmod 600 "$props"
log_start="$(log_size)"
qp -c "ALTER SYSTEM SET bk.kafka_properties_file = '$props'" >/dev/null
ok $? "one of mode 0600 owned by postgres is accepted"
reload_until bk.kafka_properties_file "$props"
segment="$(switch_wal)"
wait_for 30 "the file's message.max.bytes refusing 1 MiB chunks" log_has "$log_start" \
    "above the producer's message.max.bytes of 100000"
ok $? "the archiver applies the file's properties (its message.max.bytes refuses 1 MiB chunks)"
test -f "$BK_PGDATA/pg_wal/archive_status/$segment.ready"
ok $? "$segment is kept"
printf 'sasl.password=%s;x\\y #z\n' "$secret" >"$props"
qp -c "SELECT pg_reload_conf()" >/dev/null
wait_for 90 "backlog drained" no_backlog
ok $? "the file is read again at reload: with message.max.bytes gone, the backlog drains"

# A refused file that holds the password: the messages name the file, a
# line and a property, never the password.
printf 'sasl.password=%s\nacks=1\n' "$secret" >"$props"
out="$(qp -c "ALTER SYSTEM SET bk.kafka_properties_file = '$props'" 2>&1)"
like "$out" "\"$props\": Kafka property acks must stay \"all\" for bk" \
    "a file that would weaken acks is refused, naming the file and the property"
printf 'security.protocol=SASL_SSL\\\nsasl.password=%s\nno.such.property=%s\n' "$secret" "$secret" >"$props"
out="$out$(qp -c "ALTER SYSTEM SET bk.kafka_properties_file = '$props'" 2>&1)"
like "$out" 'Invalid value .SASL_SSL\\. for configuration property .security.protocol.' \
    "a line that ends in a backslash stays one property (its value refused alone)"
printf 'sasl.password=%s\nno equals sign %s\n' "$secret" "$secret" >"$props"
out="$out$(qp -c "ALTER SYSTEM SET bk.kafka_properties_file = '$props'" 2>&1)"
like "$out" "\"$props\" line 2 is not \"key=value\"" "a line without \"=\" is refused by its number"
unlike "$out" "$secret" "none of these errors shows the password"

printf 'acks=1\n' >"$props"
log_start="$(log_size)"
qp -c "SELECT pg_reload_conf()" >/dev/null
wait_for 30 "the bad file refused at reload" log_has "$log_start" "must stay \"all\" for bk"
ok $? "a file that would weaken acks is refused at reload" ||
    diag "$(log_since "$log_start" | tail -n 5)"
segment="$(switch_wal)"
wait_for 60 "$segment archived" archived_at_least "$segment"
ok $? "the archiver keeps the last good properties and goes on archiving"
# Parallel workers restore the leader's settings; they must not read the
# (now refused) file again and fail the query.
is "$(qp -c "SET force_parallel_mode = on" -c "SELECT count(*) > 0 FROM pg_class" 2>&1)" t \
    "parallel queries run while the file is refused"
log_since "$log_start_all" | grep -qF -- "$secret"
isnt $? 0 "the password in the file is nowhere in the server log"
qp -c "ALTER SYSTEM RESET bk.kafka_properties_file" >/dev/null
reload_until bk.kafka_properties_file ""

# ------------------------------------------------------------------ (e) target RPO
qp -c "ALTER SYSTEM SET bk.target_rpo = '${TARGET_RPO_S}s'" >/dev/null
reload_until bk.target_rpo "${TARGET_RPO_S}s"
is "$(qp -c 'SHOW archive_timeout')" "0" "archive_timeout is off"
rpo_settled() { [[ "$(status "backlog = 0 AND current_rpo = interval '0'")" == t ]]; }
wait_for 30 "nothing pending" rpo_settled
ok $? "idle and fully archived: current_rpo is 0"
forced_before="$(status forced_switches)"
t0="$(now_ms)"
segment="$(q -c "INSERT INTO bk_marker VALUES ('rpo')" \
    -c "SELECT pg_walfile_name(pg_current_wal_lsn())")"
wait_for $((TARGET_RPO_S + 1)) "$segment archived" archived_at_least "$segment"
ok $? "a lone INSERT on an idle server is archived within $((TARGET_RPO_S + 1)) s"
rpo_ms=$(($(now_ms) - t0))
note "bk.target_rpo = ${TARGET_RPO_S}s: INSERT to archived in $rpo_ms ms"
ok $(($(status forced_switches) > forced_before ? 0 : 1)) "by a forced WAL switch"
# Watch an idle server for 10 s: one more switch may come (a checkpoint
# record, say), a switch every 3 s would be a bug.
forced_idle="$(status forced_switches)"
idle_until=$(($(now_ms) + 10000))
while (($(now_ms) < idle_until)) && (($(status forced_switches) <= forced_idle + 1)); do
    sleep 0.5
done
forced_after="$(status forced_switches)"
ok $((forced_after <= forced_idle + 1 ? 0 : 1)) \
    "an idle server is not switched again and again (forced_switches $forced_idle -> $forced_after in 10 s)"
is "$(status "current_rpo < target_rpo")" "t" "current_rpo is below target_rpo"
qp -c "ALTER SYSTEM RESET bk.target_rpo" >/dev/null
reload_until bk.target_rpo 0

# ------------------------------------------------------------------ (f) bk.wait_for = repository
qp -c "ALTER SYSTEM SET bk.wait_for = 'repository'" \
    -c "ALTER SYSTEM SET bk.repository_timeout = '30s'" >/dev/null
reload_until bk.repository_timeout 30s
segment="$(switch_wal)"
attempt_of() {
    wal_headers | grep -F "bk-object=$1," | grep -F 'bk-chunk-index=0,' |
        grep -o 'bk-attempt=[0-9a-f]*' | tail -n 1 | cut -d= -f2
}
has_attempt() { [[ -n "$(attempt_of "$1")" ]]; }
wait_for 30 "chunks of $segment" has_attempt "$segment"
attempt="$(attempt_of "$segment")"
like "$attempt" '^[0-9a-f]{32}$' "the archiver produced $segment (attempt $attempt)"
archived_at_least "$segment"
isnt $? 0 "not archived yet: it waits for the shipper"
audit() { kcat -P -b "$BK_KAFKA_BROKERS" -t "$prefix.audit" -k "$sysid" 2>/dev/null; }
printf '%s\n' 'not json at all' \
    "{\"event\":\"archived\",\"source\":\"$sysid\",\"kind\":\"wal\",\"object\":\"$segment\",\"attempt\":\"00000000000000000000000000000000\"}" \
    "{\"event\":\"archived\",\"source\":\"$sysid\",\"kind\":\"wal\",\"object\":\"000000010000000000000001\",\"attempt\":\"$attempt\"}" | audit
sleep_until_ms=$(($(now_ms) + 2000))
not_archived_for_2s() { ! archived_at_least "$segment" && (($(now_ms) >= sleep_until_ms)); }
wait_for 5 "2 s without archiving" not_archived_for_2s
ok $? "garbage, another attempt's event and another object's event do not confirm it"
printf '%s\n' "{\"event\":\"archived\",\"source\":\"$sysid\",\"kind\":\"wal\",\"object\":\"$segment\",\"attempt\":\"$attempt\",\"meta\":{\"type\":\"segment\"}}" | audit
wait_for 15 "$segment archived" archived_at_least "$segment"
ok $? "the shipper's event for this attempt confirms it: PostgreSQL reports it archived"

# A conflicting copy is durable too (the shipper keeps both), but loudly so.
log_start="$(log_size)"
segment="$(switch_wal)"
wait_for 30 "chunks of $segment" has_attempt "$segment"
attempt="$(attempt_of "$segment")"
printf '%s\n' "{\"event\":\"conflict\",\"source\":\"$sysid\",\"kind\":\"wal\",\"object\":\"$segment\",\"attempt\":\"$attempt\"}" | audit
wait_for 15 "$segment archived" archived_at_least "$segment"
ok $? "a conflict event for this attempt confirms it too: both copies are in the repository"
wait_for 10 "conflict warning" log_has "$log_start" "is in the repository only as a conflicting copy"
ok $? "and the server log warns that another server archives onto this source id"

# An attempt the shipper gave up (its chunks stopped arriving for longer than
# abandon_after) will never be stored: the archiver stops waiting at once,
# well before bk.repository_timeout (30 s), and sends the segment again.
log_start="$(log_size)"
segment="$(switch_wal)"
wait_for 30 "chunks of $segment" has_attempt "$segment"
attempt="$(attempt_of "$segment")"
printf '%s\n' "{\"event\":\"abandoned\",\"source\":\"$sysid\",\"kind\":\"wal\",\"object\":\"$segment\",\"attempt\":\"$attempt\",\"chunks\":3,\"chunk_count\":16,\"reason\":\"no chunk for longer than abandon_after\\nforged line\"}" | audit
wait_for 15 "the give-up reported" log_has "$log_start" \
    "The shipper gave up \"$segment\" (attempt $attempt) although Kafka acknowledged it: no chunk for longer than abandon_after?forged line"
ok $? "an abandoned event for this attempt fails it at once, with the shipper's reason (a newline in it made harmless)"
archived_at_least "$segment"
isnt $? 0 "$segment is not reported archived"
new_attempt() { [[ -n "$(attempt_of "$segment")" && "$(attempt_of "$segment")" != "$attempt" ]]; }
wait_for 30 "a new attempt at $segment" new_attempt
ok $? "the archiver sends $segment again"
printf '%s\n' "{\"event\":\"archived\",\"source\":\"$sysid\",\"kind\":\"wal\",\"object\":\"$segment\",\"attempt\":\"$(attempt_of "$segment")\"}" | audit
wait_for 15 "$segment archived" archived_at_least "$segment"
ok $? "and the new attempt, once stored, is archived"

log_start="$(log_size)"
qp -c "ALTER SYSTEM SET bk.repository_timeout = '2s'" >/dev/null
reload_until bk.repository_timeout 2s
segment="$(switch_wal)"
wait_for 30 "no confirmation" log_has "$log_start" "but the shipper did not confirm it on topic \"$prefix.audit\""
ok $? "without the shipper's event the attempt fails after bk.repository_timeout"
test -f "$BK_PGDATA/pg_wal/archive_status/$segment.ready"
ok $? "$segment is kept"
qp -c "ALTER SYSTEM RESET bk.wait_for" -c "ALTER SYSTEM RESET bk.repository_timeout" >/dev/null
reload_until bk.wait_for kafka
wait_for 90 "backlog drained" no_backlog
ok $? "with bk.wait_for = kafka again, the backlog drains"

# ------------------------------------------------------------------ (f1) snapshots with bk.wait_for = repository
# Kafka's acknowledgement of a snapshot is no more durable than of a
# segment: the snapshot completes only once the shipper's events confirm
# each of its objects (here forged, from the names on the snapshot topic).
qp -c "ALTER SYSTEM SET bk.wait_for = 'repository'" \
    -c "ALTER SYSTEM SET bk.repository_timeout = '20s'" >/dev/null
reload_until bk.repository_timeout 20s
snapshot_objects() { # ID: the names of the snapshot's objects on its topic
    kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.snapshot" -e -q -f '%h\n' 2>/dev/null |
        grep -o "bk-object=$1/[^,]*" | cut -d= -f2- | sort -u
}
confirm() { # NAME...: the shipper's "archived" event for each
    local name
    for name in "$@"; do
        printf '{"event":"archived","source":"%s","kind":"snapshot","object":"%s","attempt":"%032d"}\n' \
            "$sysid" "$name" 0
    done | audit
}
snap_id="$(q -c "SELECT snapshot_id FROM bk_snapshot(wait => false)")"
record_in_kafka() { snapshot_objects "$snap_id" | grep -qxF "$snap_id/snapshot.json"; }
wait_for 60 "the record of $snap_id on $prefix.snapshot" record_in_kafka
ok $? "snapshot $snap_id sent its record to Kafka"
mapfile -t objects < <(snapshot_objects "$snap_id" | grep -vxF "$snap_id/snapshot.json")
confirm "${objects[@]}"
sleep 2
is "$(q -c "SELECT state || ' ' || phase FROM bk_snapshot_progress WHERE snapshot_id = '$snap_id'")" \
    "running waiting for the repository" \
    "acknowledged by Kafka, and every object but the record confirmed, it is not complete"
confirm "$snap_id/snapshot.json"
snapshot_done() { [[ "$(q -c "SELECT state FROM bk_snapshot_history WHERE snapshot_id = '$snap_id'")" != running ]]; }
wait_for 15 "$snap_id ended" snapshot_done
is "$(q -c "SELECT state FROM bk_snapshot_history WHERE snapshot_id = '$snap_id'")" complete \
    "once the shipper confirmed the record too (${#objects[@]} other objects), it completes"
qp -c "ALTER SYSTEM SET bk.repository_timeout = '2s'" >/dev/null
reload_until bk.repository_timeout 2s
out="$(q -c "SELECT state FROM bk_snapshot()" 2>&1)"
like "$out" 'Kafka acknowledged snapshot [0-9TZ-]*[0-9a-f]{8}, but the shipper did not confirm "backup_label", "tablespace_map", "backup_manifest", "snapshot.json" and [1-9][0-9]* of its [1-9][0-9]* data objects on topic' \
    "without the shipper's events a snapshot fails after bk.repository_timeout, naming what was not confirmed"
like "$out" 'HINT:  With bk.wait_for = repository a snapshot completes only once bk-shipper stored all of it' \
    "and saying why"
is "$(q -c "SELECT state || ' ' || record_sent::text FROM bk_snapshot_history ORDER BY requested_time DESC LIMIT 1")" \
    "failed true" "it is failed, its record marked as possibly out"
qp -c "ALTER SYSTEM RESET bk.wait_for" -c "ALTER SYSTEM RESET bk.repository_timeout" >/dev/null
reload_until bk.wait_for kafka
wait_for 90 "backlog drained" no_backlog
ok $? "with bk.wait_for = kafka again, the backlog drains"

# ------------------------------------------------------------------ (f2) waiting without holding back vacuum
# A SELECT waits under its statement's snapshot, which keeps VACUUM from
# removing dead rows for the hours a large snapshot takes.  CALL
# bk_snapshot_wait(id) commits first and waits holding none.  The worker is
# held at the history table (another session locks it) so that the wait is
# long enough to look at.
lock_log="$dir/history-lock.log"
q -c "BEGIN" -c "LOCK TABLE bk_snapshot_history IN ACCESS EXCLUSIVE MODE" \
    -c "SELECT pg_sleep(8)" -c "COMMIT" >"$lock_log" 2>&1 &
lock_pid=$!
history_locked() {
    [[ "$(q -c "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                WHERE c.relname = 'bk_snapshot_history' AND l.mode = 'AccessExclusiveLock'
                  AND l.granted")" == 1 ]]
}
wait_for 10 "the history table locked" history_locked
snap_id="$(q -c "SELECT snapshot_id FROM bk_snapshot(wait => false)")"
like "$snap_id" '^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$' "bk_snapshot(wait => false) returns at once ($snap_id)"
wait_log="$dir/snapshot-wait.log"
q -c "CALL bk_snapshot_wait('$snap_id')" >"$wait_log" 2>&1 &
wait_pid=$!
waiting_backend() {
    [[ -n "$(q -c "SELECT pid FROM pg_stat_activity
                   WHERE query LIKE 'CALL bk_snapshot_wait(%' AND pid <> pg_backend_pid()")" ]]
}
wait_for 10 "the CALL running" waiting_backend
is "$(q -c "SELECT state FROM bk_snapshot_progress WHERE snapshot_id = '$snap_id'")" "running" \
    "the snapshot is still running (its worker waits for the history table)"
is "$(q -c "SELECT backend_xmin IS NULL AND backend_xid IS NULL FROM pg_stat_activity
            WHERE query LIKE 'CALL bk_snapshot_wait(%' AND pid <> pg_backend_pid()")" "t" \
    "CALL bk_snapshot_wait(id) waits holding no snapshot (no backend_xmin)"
wait "$lock_pid"
wait "$wait_pid"
ok $? "bk_snapshot_wait returns once the snapshot is complete" || diag "$(cat "$wait_log" "$lock_log")"
is "$(q -c "SELECT state FROM bk_snapshot_progress WHERE snapshot_id = '$snap_id'")" "complete" \
    "and it is"
out="$(q -c "BEGIN" -c "CALL bk_snapshot_wait('$snap_id')" 2>&1)"
like "$out" 'ERROR:  bk_snapshot_wait\(\) must be called with CALL outside a transaction block' \
    "inside a transaction block it is refused: it must commit to hold no snapshot"
out="$(q -c "CALL bk_snapshot_wait('20200101T000000Z-00000000')" 2>&1)"
like "$out" 'ERROR:  no bk snapshot "20200101T000000Z-00000000" in bk_snapshot_progress' \
    "an id it does not know is an error naming it"

# ------------------------------------------------------------------ (g) not configured
log_start="$(log_size)"
qp -c "ALTER SYSTEM SET bk.kafka_brokers = ''" >/dev/null
reload_until bk.kafka_brokers ""
segment="$(switch_wal)"
wait_for 30 "not configured" log_has "$log_start" \
    "archive_mode enabled, yet archiving is not configured"
ok $? "without bk.kafka_brokers PostgreSQL says archiving is not configured"
test -f "$BK_PGDATA/pg_wal/archive_status/$segment.ready"
ok $? "$segment is kept"
qp -c "ALTER SYSTEM RESET bk.kafka_brokers" >/dev/null
reload_until bk.kafka_brokers "$BK_KAFKA_BROKERS"
wait_for 90 "backlog drained" no_backlog
ok $? "configured again, the backlog drains"

# ------------------------------------------------------------------ (g2) snapshots need bk archiving
# Its WAL would never reach the repository: a snapshot that could never be
# restored is refused before it starts.
qp -c "ALTER SYSTEM SET archive_library = ''" >/dev/null
reload_until archive_library ""
out="$(q -c "SELECT bk_snapshot()" 2>&1)"
like "$out" 'ERROR:  bk snapshots need WAL archived through bk' \
    "without archive_library = 'bk', bk_snapshot() is refused"
like "$out" "HINT:  Set archive_mode = on \\(restart\\) and archive_library = 'bk'" \
    "and says what to set"
qp -c "ALTER SYSTEM RESET archive_library" >/dev/null
reload_until archive_library bk

# ------------------------------------------------------------------ (h) archive_library only
as_pg sed -i '/^shared_preload_libraries/d' "$CONF"
"$SERVICES" restart pg >"$dir/restart.log" 2>&1
ok $? "PostgreSQL restarts with bk as archive_library only" ||
    diag "$(cat "$dir/restart.log")"
segment="$(switch_wal)"
wait_for 60 "$segment archived" archived_at_least "$segment"
ok $? "the archive module works without shared_preload_libraries"
like "$(wal_headers | grep -cF "bk-object=$segment,")" '^[1-9]' "$segment is on $prefix.wal"
out="$(q -c "SELECT * FROM bk_status()" 2>&1)"
like "$out" 'ERROR:  bk status is not available' "bk_status() says the status is not available"
like "$out" 'HINT:  Add bk to shared_preload_libraries and restart the server\.' \
    "and how to get it"

# ------------------------------------------------------------------ the log
is "$(log_since "$log_start_all" | grep -cE 'TRAP:|PANIC|terminated by signal|exited with exit code [^01]')" 0 \
    "no assertion failure, PANIC or crash in the server log"

done_testing
