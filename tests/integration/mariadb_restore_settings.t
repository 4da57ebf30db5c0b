#!/usr/bin/env bash
# bk restore of a MariaDB source puts back the target's server-wide
# settings it changes for the replay (max_allowed_packet, raised to 1 GiB
# for a 13 MB row statement) and for the load (innodb_flush_log_at_trx_commit):
#
#  - into a target whose wait_timeout (2 s) is shorter than the replay (a
#    statement-logged INSERT ... SELECT SLEEP(3)): bk's own session waited
#    idle through the replay, the server closed it, the put-backs failed
#    ("Server has gone away"), max_allowed_packet stayed at 1 GiB and the
#    restore failed at its end; it succeeds, the target as the source;
#  - bk restore stopped by SIGTERM during the replay: it put nothing back
#    (max_allowed_packet stayed at 1 GiB, where the next restore reads it as
#    the server's own); it stops the replay's tools, puts the settings
#    back, says so, marks the restore incomplete, and ends by the signal;
#  - bk restore stopped by SIGTERM during the load of a snapshot's data (two
#    tables of 40 MB, two loaders): it ended at once and left
#    innodb_flush_log_at_trx_commit at 2, unsaid; it stops the loaders,
#    puts the setting back, says so, marks the restore incomplete, and
#    ends by the signal; the event scheduler it turned off stays off (the
#    source's events must not run on part of its data), and it says so.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=SCRIPTDIR/../lib/tap.sh
source "$ROOT/tests/lib/tap.sh"
SERVICES="$ROOT/scripts/services"
eval "$("$SERVICES" env)" || bail_out "'scripts/services env' failed"
"$SERVICES" status mariadb >/dev/null 2>&1 || bail_out "mariadb is not running"
"$SERVICES" status kafka >/dev/null 2>&1 || bail_out "kafka is not running"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-mdb-settings.XXXXXX")"
chmod 755 "$dir"
# shellcheck source=SCRIPTDIR/../lib/bk_env.sh
source "$ROOT/tests/lib/bk_env.sh"
# shellcheck source=SCRIPTDIR/../lib/mariadb.sh
source "$ROOT/tests/lib/mariadb.sh"
AGENT="$BK_AGENT_BIN"
agent_pid=""
shipper_pid=""
restore_pid=""
db=bksettings_$$
role="bk_settings_role_$$"
mariadb_target_init

# shellcheck disable=SC2329 # called by the trap
cleanup() {
    [[ -n "$restore_pid" ]] && kill "$restore_pid" 2>/dev/null && wait "$restore_pid" 2>/dev/null
    [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    [[ -n "$shipper_pid" ]] && kill "$shipper_pid" 2>/dev/null && wait "$shipper_pid" 2>/dev/null
    my "DROP DATABASE IF EXISTS $db; DROP ROLE IF EXISTS $role" >/dev/null
    target_services stop mariadb >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT

bk_test_init mariadb-settings
source_id="mdbset-$$"
bk_test_agent_conf "mysql_host = 127.0.0.1" "mysql_port = $MYSQL_TCP_PORT" "mysql_user = root" \
    "server_id = $((7000 + $$ % 1000))" "state_dir = $dir/agent-state" "control_user = $(id -un)" \
    "roles = $role" >"$dir/agent.conf"
restore() { "$BK" restore --config "$dir/bk.conf" --source "$source_id" --mysql-socket "$TARGET_SOCKET" "$@"; }

target_reset
ok $? "a second MariaDB server as the restore target" || bail_out "$(cat "$dir/target-start.log")"
out="$(my "CREATE ROLE $role; DROP FUNCTION IF EXISTS bk_snapshot;
           CREATE FUNCTION bk_snapshot RETURNS STRING SONAME 'bk_udf.so'")"
ok $? "bk_snapshot() and a role allowed to call it" || diag "$out"
my "FLUSH BINARY LOGS" >/dev/null
"$AGENT" --config "$dir/agent.conf" >>"$dir/agent.log" 2>&1 &
agent_pid=$!
wait_for 30 "agent streaming" grep -q "streaming the binlog from" "$dir/agent.log"
ok $? "bk-mysql-agent streams" || bail_out "$(cat "$dir/agent.log")"
bk_test_start_shipper

out="$(my "CREATE DATABASE $db; CREATE TABLE $db.t (id INT AUTO_INCREMENT PRIMARY KEY, n INT,
           s VARCHAR(100), lb LONGBLOB) ENGINE=InnoDB;
           INSERT INTO $db.t (n, s) SELECT seq, 'before' FROM $db.seq_1_to_100")"
ok $? "a table" || diag "$out"
result="$(my "SELECT bk_snapshot()")"
like "$result" '"snapshot_id":"' "a snapshot" || diag "$result"
# A row statement of 13 MB (its BINLOG statement needs a packet above the
# target's 16 MiB), then one logged as a statement that takes 3 s to
# replay.
out="$(my "INSERT INTO $db.t (n, s, lb) VALUES (1, 'big', REPEAT('b', 13000000));
           SET SESSION binlog_format = STATEMENT;
           INSERT INTO $db.t (n, s) SELECT SLEEP(3), 'slow'" 2>&1)"
ok $? "a 13 MB row, then a statement-logged INSERT ... SELECT SLEEP(3)" || diag "$out"
my "FLUSH BINARY LOGS" >/dev/null
now_file="$(my 'SHOW MASTER STATUS' | cut -f1)"
# shellcheck disable=SC2317,SC2329 # called through wait_for
caught_up() {
    local f
    read -r f _ <"$dir/agent-state/binlog.position" && [[ "$f" == "$now_file" ]]
}
wait_for 60 "the agent to archive up to $now_file" caught_up
ok $? "archived up to $now_file"
sleep 1

# ---------------------------------------------------------------- wait_timeout shorter than the replay
packet="$(tmy 'SELECT @@global.max_allowed_packet')"
tmy "SET GLOBAL wait_timeout = 2" >/dev/null
out="$(restore 2>&1)"
ok $? "bk restore to latest into a target with wait_timeout = 2 and a replay of 3 s" || diag "$out"
like "$out" "max_allowed_packet raised from $packet to 1 GiB for the replay" \
    "... which raised max_allowed_packet for the replay"
unlike "$out" "WARNING" "... and put everything back without a warning" || diag "$out"
is "$(tmy 'SELECT @@global.max_allowed_packet')" "$packet" "the target's max_allowed_packet is put back"
is "$(tmy 'SELECT @@global.innodb_flush_log_at_trx_commit')" 1 "... and innodb_flush_log_at_trx_commit"
is "$(tmy "CHECKSUM TABLE $db.t EXTENDED" | cut -f2)" "$(my "CHECKSUM TABLE $db.t EXTENDED" | cut -f2)" \
    "the table restored as the source's (CHECKSUM TABLE)"
is "$(tmy 'SELECT @@gtid_binlog_pos')" "$(my 'SELECT @@gtid_binlog_pos')" "... and its GTID state"

# ---------------------------------------------------------------- SIGTERM during the replay
target_reset
ok $? "a fresh target"
packet="$(tmy 'SELECT @@global.max_allowed_packet')"
# bk itself, not a subshell running it.
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --mysql-socket "$TARGET_SOCKET" \
    >"$dir/stopped.out" 2>&1 &
restore_pid=$!
wait_for 60 "the replay to start" grep -q "max_allowed_packet raised" "$dir/stopped.out"
sleep 1 # inside the 3 s statement
kill -TERM "$restore_pid"
wait "$restore_pid"
is $? 143 "bk restore stopped by SIGTERM during the replay ends by the signal" ||
    diag "$(cat "$dir/stopped.out")"
restore_pid=""
like "$(cat "$dir/stopped.out")" "error: the binlog replay was stopped by signal 15 \\(Terminated\\)" \
    "... saying so" || diag "$(cat "$dir/stopped.out")"
like "$(cat "$dir/stopped.out")" "the target server holds an incomplete restore" "... and what it leaves"
is "$(tmy 'SELECT @@global.max_allowed_packet')" "$packet" "the target's max_allowed_packet is put back"
is "$(tmy 'SELECT @@global.innodb_flush_log_at_trx_commit')" 1 "... and innodb_flush_log_at_trx_commit"
like "$(tmy 'SELECT error FROM bk_restore_incomplete.restore')" "stopped by signal 15" \
    "the target's bk_restore_incomplete marker names the signal"

# ---------------------------------------------------------------- SIGTERM during the data load
# Two tables of 40 MB each (a loader each): the load takes seconds.
out="$(my "CREATE TABLE $db.big1 (id INT PRIMARY KEY, s VARCHAR(300), KEY (s(20))) ENGINE=InnoDB;
           CREATE TABLE $db.big2 LIKE $db.big1;
           INSERT INTO $db.big1 SELECT seq, REPEAT(MD5(seq), 8) FROM $db.seq_1_to_150000;
           INSERT INTO $db.big2 SELECT seq, REPEAT(MD5(seq), 8) FROM $db.seq_1_to_150000" 2>&1)"
ok $? "two tables of 40 MB" || diag "$out"
result="$(my "SELECT bk_snapshot()")"
snap2="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result")"
ok "$([[ -n "$snap2" ]]; echo $?)" "a snapshot of them" || diag "$result"
target_reset && tmy "SET GLOBAL event_scheduler = ON" >/dev/null
ok $? "a fresh target, its event scheduler ON"
# shellcheck disable=SC2317,SC2329 # called through wait_for
big_archived() {
    restore --dry-run --snapshot "$snap2" --target immediate >/dev/null 2>&1
}
wait_for 120 "the snapshot archived" big_archived
ok $? "... archived"
packet="$(tmy 'SELECT @@global.max_allowed_packet')"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --mysql-socket "$TARGET_SOCKET" \
    --snapshot "$snap2" --target immediate >"$dir/load-stopped.out" 2>&1 &
restore_pid=$!
# shellcheck disable=SC2317,SC2329 # called through wait_for
loading() {
    [[ "$(tmy "SELECT step FROM bk_restore_incomplete.restore" 2>/dev/null)" == "table data" ]]
}
wait_for 60 "the data load to start" loading
ok $? "the data load started" || diag "$(cat "$dir/load-stopped.out")"
is "$(tmy 'SELECT @@global.innodb_flush_log_at_trx_commit')" 2 \
    "... with innodb_flush_log_at_trx_commit relaxed to 2"
stopped_at=$SECONDS
kill -TERM "$restore_pid"
wait "$restore_pid"
is $? 143 "bk restore stopped by SIGTERM during the data load ends by the signal" ||
    diag "$(cat "$dir/load-stopped.out")"
restore_pid=""
ok "$(((SECONDS - stopped_at) <= 10 ? 0 : 1))" "... within 10 s ($((SECONDS - stopped_at)) s)"
like "$(cat "$dir/load-stopped.out")" \
    "error: the table data load was stopped by signal 15 \\(Terminated\\): the target holds part of it" \
    "... saying so" || diag "$(cat "$dir/load-stopped.out")"
like "$(cat "$dir/load-stopped.out")" "the target server holds an incomplete restore" "... and what it leaves"
is "$(tmy 'SELECT @@global.innodb_flush_log_at_trx_commit')" 1 \
    "the target's innodb_flush_log_at_trx_commit is put back"
is "$(tmy 'SELECT @@global.max_allowed_packet')" "$packet" "... and max_allowed_packet is as it was"
like "$(tmy 'SELECT step, error FROM bk_restore_incomplete.restore')" "^table data.*stopped by signal 15" \
    "the target's bk_restore_incomplete marker names the step and the signal"
is "$(tmy 'SELECT @@global.event_scheduler')" OFF \
    "the event scheduler is left OFF, so no event runs on part of the data"
like "$(cat "$dir/load-stopped.out")" \
    "the event scheduler was turned OFF for the restore and is left OFF: SET GLOBAL event_scheduler = ON once" \
    "... and the failure says so, and when to turn it on"
is "$(tmy "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '$db' OR INFO LIKE 'LOAD DATA%'")" 0 \
    "no loader left running on the target"

done_testing
