#!/usr/bin/env bash
# bk restore of a MariaDB source with DDL running while bk_snapshot()
# takes its consistent point (a copying ALTER TABLE of a large table, and
# a RENAME and a DROP queued behind it), and DDL right at the
# target: restores to the latest transaction, to the GTID of each DDL and
# of the transaction just before it match the source's CHECKSUM TABLE (of
# the tables that exist there) and GTID state.
#
# Expects MariaDB and Kafka from scripts/services.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
SERVICES="$ROOT/scripts/services"
eval "$("$SERVICES" env)" || bail_out "'scripts/services env' failed"
"$SERVICES" status mariadb >/dev/null 2>&1 || bail_out "mariadb is not running"
"$SERVICES" status kafka >/dev/null 2>&1 || bail_out "kafka is not running"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-mdb-rddl.XXXXXX")"
chmod 755 "$dir"
source "$ROOT/tests/lib/bk_env.sh"
source "$ROOT/tests/lib/mariadb.sh"
AGENT="$BK_AGENT_BIN"
agent_pid=""
shipper_pid=""
db=bkrddl_$$
role="bk_rddl_role_$$"
mariadb_target_init
old_format="$(my 'SELECT @@global.binlog_format')"
old_checksum="$(my 'SELECT @@global.binlog_checksum')"

cleanup() {
    [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    [[ -n "$shipper_pid" ]] && kill "$shipper_pid" 2>/dev/null && wait "$shipper_pid" 2>/dev/null
    my "SET GLOBAL binlog_format = $old_format; SET GLOBAL binlog_checksum = $old_checksum;
        DROP DATABASE IF EXISTS $db; DROP ROLE IF EXISTS $role" >/dev/null
    target_services stop mariadb >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT

bk_test_init mdb-rddl
source_id="mdbrd-$$"
server_pid="$(cat "$(my 'SELECT @@pid_file')")"
server_user="$(ps -o user= -p "$server_pid" | tr -d ' ')"
bk_test_agent_conf "mysql_socket = $MYSQL_UNIX_PORT" "mysql_user = root" \
    "server_id = $((7500 + $$ % 1000))" "state_dir = $dir/agent-state" \
    "control_user = $server_user" "roles = $role" >"$dir/agent.conf"
restore() { "$BK" restore --config "$dir/bk.conf" --source "$source_id" --mysql-socket "$TARGET_SOCKET" "$@"; }

out="$(my "CREATE ROLE $role; DROP FUNCTION IF EXISTS bk_snapshot;
           CREATE FUNCTION bk_snapshot RETURNS STRING SONAME 'bk_udf.so'")"
ok $? "bk_snapshot() and a role allowed to call it" || diag "$out"
my "CREATE DATABASE $db; CREATE TABLE $db.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB;
    CREATE TABLE $db.big (id INT PRIMARY KEY, pad VARCHAR(255)) ENGINE=InnoDB;
    INSERT INTO $db.t (v) VALUES ('before')" >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
"$AGENT" --config "$dir/agent.conf" >>"$dir/agent.log" 2>&1 &
agent_pid=$!
wait_for 30 "agent streaming" grep -q "streaming the binlog from" "$dir/agent.log"
ok $? "bk-mysql-agent streams" || bail_out "$(cat "$dir/agent.log")"
bk_test_start_shipper

my "USE $db; INSERT INTO big SELECT seq, REPEAT('x', 200) FROM seq_1_to_150000;
    CREATE TABLE r1 (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO r1 VALUES (1), (2);
    CREATE TABLE d1 (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO d1 VALUES (1);
    CREATE TABLE d2 (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO d2 VALUES (2)" >/dev/null
marks=()
# The checksums of every table of $db, whichever exist.
sums() {
    "$@" "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$db' ORDER BY 1" |
        while read -r t; do printf '%s=%s ' "$t" "$("$@" "CHECKSUM TABLE $db.$t" | cut -f2)"; done
}
# mark NAME SQL: SQL on the source, then its GTID and checksums.
mark() {
    local out
    out="$(my "$2")"
    [[ -z "$out" ]] || diag "$1: $out"
    my "SELECT @@gtid_binlog_pos" >"$dir/$1.gtid"
    sums my >"$dir/$1.sum"
    marks+=("$1")
}
# DDL already running when the snapshot starts, and DDL queued behind it.
my "ALTER TABLE $db.big ADD COLUMN c INT NOT NULL DEFAULT 7, ALGORITHM=COPY" >"$dir/alter.out" 2>&1 &
alter_pid=$!
sleep 0.3
(sleep 0.2; my "RENAME TABLE $db.r1 TO $db.r2" >"$dir/rename.out" 2>&1) &
rename_pid=$!
(sleep 0.2; my "INSERT INTO $db.t (v) VALUES ('during')" >"$dir/during.out" 2>&1) &
during_pid=$!
(sleep 0.25; my "DROP TABLE $db.d2" >"$dir/drop.out" 2>&1) &
drop_pid=$!
result="$(my "SELECT bk_snapshot('jobs=2')")"
snap="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result")"
[[ -n "$snap" ]]
ok $? "a snapshot taken while an ALTER TABLE runs: $snap" || diag "$result $(tail -n 5 "$dir/agent.log")"
wait "$alter_pid"
ok $? "the ALTER TABLE ends" || diag "$(cat "$dir/alter.out")"
wait "$rename_pid"
ok $? "the RENAME ends" || diag "$(cat "$dir/rename.out")"
diag "$(grep "snapshot $snap" "$dir/agent.log" | grep -i "deadlock\|again\|commits waited" | cut -d' ' -f3-)"
wait "$during_pid"
wait "$drop_pid"
ok $? "the DROP ends" || diag "$(cat "$dir/drop.out")"
my "SELECT @@gtid_binlog_pos" >"$dir/after_snap.gtid"
sums my >"$dir/after_snap.sum"
marks+=(after_snap)

my "INSERT INTO $db.t (v) VALUES ('pre alter')" >/dev/null
mark alter "ALTER TABLE $db.t ADD COLUMN w INT DEFAULT 3"
my "INSERT INTO $db.t (v, w) VALUES ('pre rename', 4)" >/dev/null
mark truncate "TRUNCATE TABLE $db.r2"
mark rename "RENAME TABLE $db.r2 TO $db.r3, $db.t TO $db.t2"
my "INSERT INTO $db.t2 (v) VALUES ('pre drop')" >/dev/null
mark drop "DROP TABLE $db.d1"
mark last "INSERT INTO $db.t2 (v) VALUES ('last')"
my "FLUSH BINARY LOGS" >/dev/null
last="$(my "SHOW MASTER STATUS" | cut -f1)"
prev="$(my "SHOW BINARY LOGS" | cut -f1 | grep -B1 -x "$last" | head -n 1)"
archived_file() { "$BK" binlog-get --config "$dir/bk.conf" --source "$source_id" "$1" "$dir/probe" >/dev/null 2>&1; local rc=$?; rm -f "$dir/probe"; return $rc; }
complete() { [[ -f "$repo_files/$source_id/snapshot/$1/snapshot.json" ]]; }
wait_for 90 "$prev archived" eval "archived_file $prev && complete $snap"
ok $? "the snapshot and the binlog up to the last step are archived" || diag "$(tail -n 5 "$dir/agent.log")"

check_restore() {
    local name="$1"
    shift
    target_reset || { ok 1 "target server" ; return; }
    out="$(restore "$@" 2>&1)"
    ok $? "bk restore $* (state $name)" || { diag "$out"; return; }
    is "$(sums tmy)" "$(cat "$dir/$name.sum")" "  CHECKSUM TABLE of every table as on the source at $name"
    is "$(tmy "SELECT @@gtid_binlog_pos")" "$(cat "$dir/$name.gtid")" "  gtid_binlog_pos as on the source at $name"
}
check_restore last
for m in "${marks[@]}"; do
    check_restore "$m" --target-gtid "$(cat "$dir/$m.gtid")"
done

done_testing
