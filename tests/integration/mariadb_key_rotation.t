#!/usr/bin/env bash
# A key rotation on a MariaDB source, as the README's "To rotate" says it:
# the agent's key_file (the .pub) is rewritten with a new key's while the
# binlog streams.  The agent seals what it sends next to the new key,
# without a restart (as the PostgreSQL extension does): the binlog ranges
# after the rotation and the snapshot taken after it; one taken before
# stays sealed to the old key.  With the restore keyring holding both
# keys, only the new one or only the old one, bk binlog-get, bk
# snapshot-get and bk verify read what the keyring can read, and what
# needs a missing key fails with exit 3 (a key problem), naming the key
# id, never as "no such file" or "no such snapshot".  A key file that no
# longer loads (a private key put there) stops the sealing, says why, and
# loses nothing: once fixed, the binlog written meanwhile is archived.
#
# Expects MariaDB and Kafka from scripts/services.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
SERVICES="$ROOT/scripts/services"
eval "$("$SERVICES" env)" || bail_out "'scripts/services env' failed"
"$SERVICES" status mariadb >/dev/null 2>&1 || bail_out "mariadb is not running"
"$SERVICES" status kafka >/dev/null 2>&1 || bail_out "kafka is not running"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-mdb-keyrot.XXXXXX")"
chmod 755 "$dir"
source "$ROOT/tests/lib/bk_env.sh"
source "$ROOT/tests/lib/mariadb.sh"
AGENT="$BK_AGENT_BIN"
agent_pid=""
shipper_pid=""
db=bkkeyrot_$$
role="bk_keyrot_role_$$"

cleanup() {
    [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    [[ -n "$shipper_pid" ]] && kill "$shipper_pid" 2>/dev/null && wait "$shipper_pid" 2>/dev/null
    my "DROP DATABASE IF EXISTS $db; DROP ROLE IF EXISTS $role" >/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

# The key id an archived object's first frame names (offset 52, 8 bytes).
object_key_id() { python3 -c 'import sys; print(open(sys.argv[1], "rb").read(60)[52:60].hex())' "$1"; }

bk_test_init mdb-keyrot
source_id="mdbk-$$"
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
bkk() { local k="$1"; shift; "$BK" "$1" --config "$dir/$k.conf" "${@:2}"; }
bk_test_agent_conf "mysql_socket = $MYSQL_UNIX_PORT" "mysql_user = root" \
    "server_id = $((6000 + $$ % 1000))" "state_dir = $dir/agent-state" \
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
like "$(cat "$dir/agent.log")" "sealing to public key $key_a from \"$dir/bk.key.pub\"" "it says which key it seals to"
bk_test_start_shipper

snapshot() {
    local result
    result="$(my "SELECT bk_snapshot('jobs=1')")"
    sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result"
}
snap1="$(snapshot)"
[[ -n "$snap1" ]]
ok $? "a snapshot before the rotation: $snap1" || diag "$(tail -n 5 "$dir/agent.log")"
my "INSERT INTO $db.t (v) VALUES ('m1')" >/dev/null
file_a="$(my "SHOW MASTER STATUS" | cut -f1)"
my "FLUSH BINARY LOGS" >/dev/null

# The rotation: the .pub rewritten in place, the agent running.
cat "$dir/b.key.pub" >"$dir/bk.key.pub"
my "INSERT INTO $db.t (v) VALUES ('m2')" >/dev/null
wait_for 30 "the agent to seal to the new key" grep -q "sealing to public key $key_b" "$dir/agent.log"
ok $? "after the .pub is rewritten, the agent seals to key $key_b without a restart" ||
    diag "$(tail -n 5 "$dir/agent.log")"
snap2="$(snapshot)"
[[ -n "$snap2" ]]
ok $? "a snapshot after the rotation: $snap2" || diag "$(tail -n 5 "$dir/agent.log")"
my "INSERT INTO $db.t (v) VALUES ('m3')" >/dev/null
file_b="$(my "SHOW MASTER STATUS" | cut -f1)"
my "FLUSH BINARY LOGS" >/dev/null
my "INSERT INTO $db.t (v) VALUES ('m4')" >/dev/null
complete() { [[ -f "$repo_files/$source_id/snapshot/$1/snapshot.json" ]]; }
archived_file() { bkk both binlog-get --source "$source_id" "$1" "$dir/probe" >/dev/null 2>&1; local rc=$?; rm -f "$dir/probe"; return $rc; }
wait_for 60 "both snapshots archived" eval "complete $snap1 && complete $snap2"
ok $? "both snapshots are in the repository"
wait_for 60 "$file_b archived" archived_file "$file_b"
ok $? "$file_b is archived whole"

is "$(object_key_id "$repo_files/$source_id/snapshot/$snap1/snapshot.json")" "$key_a" "snapshot $snap1 is sealed to key $key_a"
is "$(object_key_id "$repo_files/$source_id/snapshot/$snap2/snapshot.json")" "$key_b" "snapshot $snap2 is sealed to key $key_b"
first_range_b="$(ls "$repo_files/$source_id/binlog/$file_b" | head -n 1)"
is "$(object_key_id "$repo_files/$source_id/binlog/$file_b/$first_range_b")" "$key_b" \
    "$file_b, written after the rotation, is sealed to key $key_b"
first_range_a="$(ls "$repo_files/$source_id/binlog/$file_a" | head -n 1)"
is "$(object_key_id "$repo_files/$source_id/binlog/$file_a/$first_range_a")" "$key_a" \
    "$file_a, before it, to key $key_a"

# ---- the restore side: both keys, only the new, only the old
for k in both a b; do
    for f in "$file_a" "$file_b"; do
        want="$key_a"; [[ "$f" == "$file_b" ]] && want="$key_b"
        rm -f "$dir/out"
        out="$(bkk "$k" binlog-get --source "$source_id" "$f" "$dir/out" 2>&1)"
        rc=$?
        if [[ $k == both || ($k == a && $want == "$key_a") || ($k == b && $want == "$key_b") ]]; then
            is $rc 0 "bk binlog-get $f with keyring $k" || diag "$out"
        else
            is $rc 3 "bk binlog-get $f with keyring $k, which lacks key $want, exits 3" || diag "$out"
            like "$out" "sealed to key $want, which is not in the keyring" "and names key $want"
            [[ ! -e "$dir/out" ]]
            ok $? "and writes nothing"
        fi
    done
    for s in "$snap1" "$snap2"; do
        want="$key_a"; [[ "$s" == "$snap2" ]] && want="$key_b"
        rm -rf "$dir/snapout"
        out="$(bkk "$k" snapshot-get --source "$source_id" --snapshot "$s" "$dir/snapout" 2>&1)"
        rc=$?
        if [[ $k == both || ($k == a && $want == "$key_a") || ($k == b && $want == "$key_b") ]]; then
            is $rc 0 "bk snapshot-get $s with keyring $k" || diag "$out"
        else
            is $rc 3 "bk snapshot-get $s with keyring $k, which lacks key $want, exits 3 (never 1, no such snapshot)" || diag "$out"
            like "$out" "sealed to key $want, which is not in the keyring" "and names key $want"
        fi
    done
done
out="$(bkk both verify --source "$source_id" 2>&1)"
is $? 0 "bk verify with both keys" || diag "$out"

# ---- a key file that does not load: nothing sealed, nothing lost
cat "$dir/b.key" >"$dir/bk.key.pub"
my "INSERT INTO $db.t (v) VALUES ('m5')" >/dev/null
file_c="$(my "SHOW MASTER STATUS" | cut -f1)"
my "FLUSH BINARY LOGS" >/dev/null
wait_for 30 "the agent to refuse the private key" grep -q "holds a private key" "$dir/agent.log"
ok $? "a private key put in key_file: the agent refuses it and says so" || diag "$(tail -n 5 "$dir/agent.log")"
unlike "$(cat "$dir/agent.log")" "$(sed -n 's/^private-key = //p' "$dir/b.key")" "and never logs the private key"
cat "$dir/b.key.pub" >"$dir/bk.key.pub"
wait_for 60 "$file_c archived" archived_file "$file_c"
ok $? "with the .pub back, $file_c, written meanwhile, is archived whole"

done_testing
