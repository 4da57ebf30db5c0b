#!/usr/bin/env bash
# bk restore of a MariaDB source whose binlog changes format as it goes:
# binlog_format STATEMENT, then binlog_checksum NONE, then MIXED (unsafe
# statements logged as rows), then ROW with one transaction of about 20 MB
# of rows (many chunks, several ranges).  Restores to the latest transaction
# and to the GTID of each step (just before and just after the large
# transaction too) match the source's CHECKSUM TABLE and GTID there.
#
# Expects MariaDB and Kafka from scripts/services.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
SERVICES="$ROOT/scripts/services"
eval "$("$SERVICES" env)" || bail_out "'scripts/services env' failed"
"$SERVICES" status mariadb >/dev/null 2>&1 || bail_out "mariadb is not running"
"$SERVICES" status kafka >/dev/null 2>&1 || bail_out "kafka is not running"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-mdb-rfmt.XXXXXX")"
chmod 755 "$dir"
source "$ROOT/tests/lib/bk_env.sh"
source "$ROOT/tests/lib/mariadb.sh"
AGENT="$BK_AGENT_BIN"
agent_pid=""
shipper_pid=""
db=bkrfmt_$$
role="bk_rfmt_role_$$"
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

bk_test_init mdb-rfmt
source_id="mdbrf-$$"
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

snap="$(my "SELECT bk_snapshot('jobs=1')" | sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p')"
[[ -n "$snap" ]]
ok $? "a snapshot: $snap" || diag "$(tail -n 5 "$dir/agent.log")"
marks=()
# mark NAME SQL: SQL on the source, then its GTID and checksums.
mark() {
    local out
    out="$(my "$2")"
    [[ -z "$out" ]] || diag "$1: $out"
    my "SELECT @@gtid_binlog_pos" >"$dir/$1.gtid"
    my "SHOW MASTER STATUS" | cut -f2 >"$dir/$1.offset"
    my "CHECKSUM TABLE $db.t, $db.big" | cut -f2 | tr '\n' ' ' >"$dir/$1.sum"
    marks+=("$1")
}

my "SET GLOBAL binlog_format = STATEMENT" >/dev/null
mark stmt "INSERT INTO $db.t (v) VALUES ('statement'); UPDATE $db.t SET v = CONCAT(v, '+') WHERE id = 1"
mark stmt_txn "BEGIN; INSERT INTO $db.t (v) VALUES ('stmt-txn-1'); INSERT INTO $db.t (v) VALUES ('stmt-txn-2'); COMMIT"
my "SET GLOBAL binlog_checksum = NONE" >/dev/null
mark nocrc "INSERT INTO $db.t (v) VALUES ('no checksum'); DELETE FROM $db.t WHERE v = 'stmt-txn-1'"
my "SET GLOBAL binlog_format = MIXED" >/dev/null
mark mixed "INSERT INTO $db.t (v) VALUES (UUID()); INSERT INTO $db.t (v) VALUES ('mixed')"
my "SET GLOBAL binlog_format = ROW; SET GLOBAL binlog_checksum = CRC32" >/dev/null
mark before_big "INSERT INTO $db.t (v) VALUES ('before big')"
mark big "USE $db; BEGIN; INSERT INTO $db.big SELECT seq, REPEAT(CHAR(65 + seq % 26), 250) FROM seq_1_to_80000; UPDATE $db.t SET v = 'in big' WHERE v = 'mixed'; COMMIT"
mark after_big "INSERT INTO $db.t (v) VALUES ('after big')"
my "FLUSH BINARY LOGS" >/dev/null
last="$(my "SHOW MASTER STATUS" | cut -f1)"
prev="$(my "SHOW BINARY LOGS" | cut -f1 | grep -B1 -x "$last" | head -n 1)"
archived_file() { "$BK" binlog-get --config "$dir/bk.conf" --source "$source_id" "$1" "$dir/probe" >/dev/null 2>&1; local rc=$?; rm -f "$dir/probe"; return $rc; }
wait_for 90 "$prev archived" archived_file "$prev"
ok $? "the binlog up to the last step is archived" || diag "$(tail -n 5 "$dir/agent.log")"
ranges="$(ls "$repo_files/$source_id/binlog/$prev" | wc -l)"
big_end="$(ls "$repo_files/$source_id/binlog/$prev" | tail -n 1 | sed 's/.*-0*//')"
[[ "$ranges" -ge 3 && "$big_end" -gt 20000000 ]]
ok $? "the large transaction's file ($big_end bytes) is archived in $ranges ranges"

check_restore() {
    local name="$1"
    shift
    target_reset || { ok 1 "target server" ; return; }
    out="$(restore "$@" 2>&1)"
    ok $? "bk restore $* (state $name)" || { diag "$out"; return; }
    is "$(tmy "CHECKSUM TABLE $db.t, $db.big" | cut -f2 | tr '\n' ' ')" "$(cat "$dir/$name.sum")" "  CHECKSUM TABLE as on the source at $name"
    is "$(tmy "SELECT @@gtid_binlog_pos")" "$(cat "$dir/$name.gtid")" "  gtid_binlog_pos as on the source at $name"
}
check_restore after_big
# A position inside the large transaction, where a range ends: the state
# before it.
inside="$(ls "$repo_files/$source_id/binlog/$prev" | sed 's/.*-0*//' |
    awk -v a="$(cat "$dir/before_big.offset")" -v b="$(cat "$dir/big.offset")" '$1 > a && $1 < b' | head -n 1)"
[[ -n "$inside" ]]
ok $? "a range ends inside the large transaction, at $prev:$inside"
check_restore before_big --target-position "$prev:$inside"
for m in "${marks[@]}"; do
    check_restore "$m" --target-gtid "$(cat "$dir/$m.gtid")"
done

done_testing
