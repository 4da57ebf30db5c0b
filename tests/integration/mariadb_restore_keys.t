#!/usr/bin/env bash
# bk restore of a MariaDB source across a key rotation (the README's "To
# rotate"): a snapshot sealed to key A, the agent's .pub rewritten with key
# B while a binlog file is open (so one file holds ranges sealed to both),
# more binlog, a snapshot sealed to B.  With a keyring holding both keys,
# restores to the latest transaction and to GTIDs before and after the
# rotation match the source's CHECKSUM TABLE and GTID at that point.  With
# one key only, a restore that needs the other is refused before anything
# is written to the target, naming the key, exit 3; one that needs only
# the keyring's key is not refused.
#
# Expects MariaDB and Kafka from scripts/services.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
SERVICES="$ROOT/scripts/services"
eval "$("$SERVICES" env)" || bail_out "'scripts/services env' failed"
"$SERVICES" status mariadb >/dev/null 2>&1 || bail_out "mariadb is not running"
"$SERVICES" status kafka >/dev/null 2>&1 || bail_out "kafka is not running"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-mdb-rkeys.XXXXXX")"
chmod 755 "$dir"
source "$ROOT/tests/lib/bk_env.sh"
source "$ROOT/tests/lib/mariadb.sh"
AGENT="$BK_AGENT_BIN"
agent_pid=""
shipper_pid=""
db=bkrkeys_$$
role="bk_rkeys_role_$$"
mariadb_target_init

cleanup() {
    [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    [[ -n "$shipper_pid" ]] && kill "$shipper_pid" 2>/dev/null && wait "$shipper_pid" 2>/dev/null
    my "DROP DATABASE IF EXISTS $db; DROP ROLE IF EXISTS $role" >/dev/null
    target_services stop mariadb >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT

bk_test_init mdb-rkeys
source_id="mdbrk-$$"
server_pid="$(cat "$(my 'SELECT @@pid_file')")"
server_user="$(ps -o user= -p "$server_pid" | tr -d ' ')"
key_a="$(sed -n 's/^key-id = //p' "$dir/bk.key")"
key_b="$("$BK" keygen --out "$dir/b.key" 2>/dev/null)"
cp "$dir/bk.key" "$dir/a.key"
cat "$dir/a.key" "$dir/b.key" >"$dir/both.key"
chmod 0600 "$dir/a.key" "$dir/both.key"
for k in a b both; do
    sed "s|^key_file = .*|key_file = $dir/$k.key|" "$dir/bk.conf" >"$dir/$k.conf"
done
restore() {
    local k="$1"
    shift
    "$BK" restore --config "$dir/$k.conf" --source "$source_id" --mysql-socket "$TARGET_SOCKET" "$@"
}
bk_test_agent_conf "mysql_socket = $MYSQL_UNIX_PORT" "mysql_user = root" \
    "server_id = $((6500 + $$ % 1000))" "state_dir = $dir/agent-state" \
    "control_user = $server_user" "roles = $role" >"$dir/agent.conf"

out="$(my "CREATE ROLE $role; DROP FUNCTION IF EXISTS bk_snapshot;
           CREATE FUNCTION bk_snapshot RETURNS STRING SONAME 'bk_udf.so'")"
ok $? "bk_snapshot() and a role allowed to call it" || diag "$out"
my "CREATE DATABASE $db; CREATE TABLE $db.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB;
    INSERT INTO $db.t (v) VALUES ('before')" >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
"$AGENT" --config "$dir/agent.conf" >>"$dir/agent.log" 2>&1 &
agent_pid=$!
wait_for 30 "agent streaming" grep -q "streaming the binlog from" "$dir/agent.log"
ok $? "bk-mysql-agent streams" || bail_out "$(cat "$dir/agent.log")"
bk_test_start_shipper

snapshot() { my "SELECT bk_snapshot('jobs=1')" | sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p'; }
# The source's state after a transaction: its GTID and the table's checksum.
mark() {
    my "INSERT INTO $db.t (v) VALUES ('$1')" >/dev/null
    my "SELECT @@gtid_binlog_pos" >"$dir/$1.gtid"
    my "SHOW MASTER STATUS" | awk '{print $1 ":" $2}' >"$dir/$1.position"
    my "CHECKSUM TABLE $db.t" | cut -f2 >"$dir/$1.sum"
}

snap1="$(snapshot)"
[[ -n "$snap1" ]]
ok $? "a snapshot sealed to key A: $snap1" || diag "$(tail -n 5 "$dir/agent.log")"
mark m1
# Archived under key A before the rotation (ranges are cut every 200 ms).
sleep 1
file_rot="$(my "SHOW MASTER STATUS" | cut -f1)"
cat "$dir/b.key.pub" >"$dir/bk.key.pub"
# The agent reads the .pub again when it next seals.
mark m2
wait_for 30 "the agent to seal to key B" grep -q "sealing to public key $key_b" "$dir/agent.log"
ok $? "the agent seals to key B" || diag "$(tail -n 5 "$dir/agent.log")"
snap2="$(snapshot)"
[[ -n "$snap2" ]]
ok $? "a snapshot sealed to key B: $snap2" || diag "$(tail -n 5 "$dir/agent.log")"
mark m3
is "$(my "SHOW MASTER STATUS" | cut -f1)" "$file_rot" "one binlog file holds ranges sealed to both keys"
my "FLUSH BINARY LOGS" >/dev/null
mark m4
my "FLUSH BINARY LOGS" >/dev/null
archived_file() { "$BK" binlog-get --config "$dir/both.conf" --source "$source_id" "$1" "$dir/probe" >/dev/null 2>&1; local rc=$?; rm -f "$dir/probe"; return $rc; }
complete() { [[ -f "$repo_files/$source_id/snapshot/$1/snapshot.json" ]]; }
last_file="$(my "SHOW MASTER STATUS" | cut -f1)"
wait_for 60 "both snapshots archived" eval "complete $snap1 && complete $snap2"
ok $? "both snapshots are in the repository"
# The file m4 is in, closed by the last FLUSH.
prev_file="$(my "SHOW BINARY LOGS" | cut -f1 | grep -B1 -x "$last_file" | head -n 1)"
wait_for 60 "$prev_file archived" archived_file "$prev_file"
ok $? "the binlog up to m4 is archived"

target_reset
ok $? "a second MariaDB server as the restore target" || bail_out "$(cat "$dir/target-start.log")"

# restore K NAME ARGS...: a restore with keyring K to the state NAME.
check_restore() {
    local k="$1" name="$2"
    shift 2
    target_reset || return 1
    out="$(restore "$k" "$@" 2>&1)"
    ok $? "keyring $k: bk restore $* (state $name)" || { diag "$out"; return; }
    is "$(tmy "CHECKSUM TABLE $db.t" | cut -f2)" "$(cat "$dir/$name.sum")" "  CHECKSUM TABLE as on the source at $name"
    is "$(tmy "SELECT @@gtid_binlog_pos")" "$(cat "$dir/$name.gtid")" "  gtid_binlog_pos as on the source at $name"
}
# refuse K KEY ARGS...: refused with exit 3, naming KEY, the target untouched.
refuse() {
    local k="$1" key="$2"
    shift 2
    target_reset || return 1
    out="$(restore "$k" "$@" 2>&1)"
    is $? 3 "keyring $k: bk restore $* exits 3" || diag "$out"
    like "$out" "sealed to key $key, which is not in the keyring" "  naming key $key"
    is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bk%'")" 0 \
        "  and writes nothing to the target"
}

check_restore both m4
check_restore both m1 --target-gtid "$(cat "$dir/m1.gtid")"
check_restore both m2 --target-gtid "$(cat "$dir/m2.gtid")"
check_restore both m1 --snapshot "$snap1" --target-gtid "$(cat "$dir/m1.gtid")"
check_restore both m3 --snapshot "$snap1" --target-gtid "$(cat "$dir/m3.gtid")"
# The replay of snapshot 2 reads its binlog file from the start (the
# format description event), which was sealed to key A.
refuse b "$key_a"
refuse b "$key_a" --target-gtid "$(cat "$dir/m3.gtid")"
refuse b "$key_a" --target-gtid "$(cat "$dir/m1.gtid")"
refuse b "$key_a" --snapshot "$snap1"
refuse a "$key_b"
refuse a "$key_b" --target-gtid "$(cat "$dir/m3.gtid")"
# Everything up to m1 is sealed to key A: the ranges of its file sealed to
# key B, after it, are not needed.
check_restore a m1 --target-gtid "$(cat "$dir/m1.gtid")"
check_restore a m1 --snapshot "$snap1" --target-position "$(cat "$dir/m1.position")"

done_testing
