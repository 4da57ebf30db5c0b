#!/usr/bin/env bash
# The MariaDB side on a full or read-only local file system (small tmpfs
# mounts, so root only; skipped otherwise):
#
#  - bk-mysql-agent with its state_dir full: archiving goes on, the failure
#    is logged once (not at every range) naming the position hint in
#    state_dir, what it means and what to do; once there is room it says so
#    and the file holds the position again;
#  - bk binlog-get and bk snapshot-get writing to a full file system: exit 5
#    (never 1, which a script reads as "not in the archive"), the error
#    named, nothing left behind; a missing parent is not called "DIR must
#    not exist yet";
#  - bk restore with --work-dir on a full file system: exit 1, before the
#    target server is touched, the hint naming where and what to do.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
SERVICES="$ROOT/scripts/services"
eval "$("$SERVICES" env)" || bail_out "'scripts/services env' failed"
"$SERVICES" status mariadb >/dev/null 2>&1 || bail_out "mariadb is not running"
"$SERVICES" status kafka >/dev/null 2>&1 || bail_out "kafka is not running"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-mdb-disk.XXXXXX")"
chmod 755 "$dir"
source "$ROOT/tests/lib/bk_env.sh"
source "$ROOT/tests/lib/mariadb.sh"
AGENT="$BK_AGENT_BIN"
agent_pid=""
shipper_pid=""
db=bkdisk_$$
role="bk_disk_role_$$"
mounts=()

# shellcheck disable=SC2329 # called by the trap
cleanup() {
    [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    [[ -n "$shipper_pid" ]] && kill "$shipper_pid" 2>/dev/null && wait "$shipper_pid" 2>/dev/null
    my "DROP DATABASE IF EXISTS $db; DROP ROLE IF EXISTS $role" >/dev/null
    for m in "${mounts[@]}"; do mountpoint -q "$m" && umount "$m"; done
    rm -rf "$dir"
}
trap cleanup EXIT

# tiny NAME SIZE: a tmpfs at $dir/NAME
tiny() {
    mkdir -p "$dir/$1" && mount -t tmpfs -o "size=$2,mode=0755" "bk-disk-$1" "$dir/$1" 2>/dev/null &&
        mounts+=("$dir/$1")
}
if ! tiny state 64k; then
    echo "1..0 # SKIP cannot mount a tmpfs (needs root)"
    exit 0
fi
tiny out 1m && tiny work 64k || bail_out "cannot mount the other tmpfs"
# fill NAME: nothing more fits in it
fill() { head -c 16m /dev/zero >"$dir/$1/filler" 2>/dev/null; }

bk_test_init mariadb-disk
source_id="mdbdisk-$$"
bk_test_agent_conf "mysql_host = 127.0.0.1" "mysql_port = $MYSQL_TCP_PORT" "mysql_user = root" \
    "server_id = $((6000 + $$ % 1000))" "state_dir = $dir/state" "control_user = $(id -un)" \
    "roles = $role" >"$dir/agent.conf"
out="$(my "CREATE ROLE $role; DROP FUNCTION IF EXISTS bk_snapshot;
           CREATE FUNCTION bk_snapshot RETURNS STRING SONAME 'bk_udf.so'")"
ok $? "bk_snapshot() and a role allowed to call it" || diag "$out"
my "FLUSH BINARY LOGS" >/dev/null
"$AGENT" --config "$dir/agent.conf" >>"$dir/agent.log" 2>&1 &
agent_pid=$!
wait_for 30 "agent streaming" grep -q "streaming the binlog from" "$dir/agent.log"
ok $? "bk-mysql-agent streams" || bail_out "$(cat "$dir/agent.log")"
bk_test_start_shipper

out="$(my "CREATE DATABASE $db; USE $db; CREATE TABLE t (id INT PRIMARY KEY, v TEXT);
           INSERT INTO t SELECT seq, repeat(md5(seq), 8) FROM seq_1_to_5000")"
ok $? "a table of 5000 rows" || diag "$out"
result="$(my "SET ROLE $role; SELECT bk_snapshot()")"
snap_id="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result")"
[[ -n "$snap_id" ]]
ok $? "a snapshot: $snap_id" || bail_out "$result"
snap_file="$(sed -n 's/.*"binlog_file":"\([^"]*\)".*/\1/p' <<<"$result")"
my "INSERT INTO $db.t VALUES (-1, 'after'); FLUSH BINARY LOGS" >/dev/null
restorable() { "$BK" list --config "$dir/bk.conf" --source "$source_id" | grep -q "restorable: from .*$snap_id"; }
wait_for 60 "the snapshot and the binlog after it archived" restorable
ok $? "bk list: restorable from the snapshot" ||
    diag "$("$BK" list --config "$dir/bk.conf" --source "$source_id" 2>&1)"

# ---- the agent's state_dir full
position() { my "SHOW MASTER STATUS" | awk '{print $1, $2}'; }
archived_to() { # FILE POS: the agent's status says so
    [[ "$(my "SET ROLE $role; SELECT bk_status()" 2>/dev/null)" == *"\"archived\":{\"file\":\"$1\",\"pos\":$2}"* ]]
}
my "CREATE FUNCTION IF NOT EXISTS bk_status RETURNS STRING SONAME 'bk_udf.so'" >/dev/null
saved_before="$(cat "$dir/state/binlog.position")"
fill state
for n in 1 2 3 4; do
    my "INSERT INTO $db.t VALUES ($((100000 + n)), 'while full')" >/dev/null
    read -r file pos <<<"$(position)"
    wait_for 30 "range $n archived" archived_to "$file" "$pos" ||
        break
done
archived_to "$file" "$pos"
ok $? "with state_dir full, the agent archives four transactions, each in a range of its own"
is "$(cat "$dir/state/binlog.position")" "$saved_before" "the state file keeps the last position it could save"
is "$(grep -c "ERROR: .*state/\.binlog\.position" "$dir/agent.log")" 1 \
    "the failure is logged once, not at every range"
like "$(grep "could not save the archived binlog position" "$dir/agent.log")" \
    "No space left on device HINT: Archiving goes on: Kafka holds the position.*Make room in state_dir \"$dir/state\"" \
    "naming the error, that archiving goes on, and what to do"
like "$(my "SET ROLE $role; SELECT bk_status()")" '"last_error":"could not save the archived binlog position in state_dir' \
    "bk_status() shows it as last_error"
rm -f "$dir/state/filler"
my "INSERT INTO $db.t VALUES (100010, 'room again')" >/dev/null
read -r file pos <<<"$(position)"
wait_for 30 "the state file saved again" grep -q "^$file $pos " "$dir/state/binlog.position"
ok $? "with room again, the state file holds the newest position"
is "$(grep -c "saved the archived binlog position in state_dir again" "$dir/agent.log")" 1 "and the agent says so"

# ---- bk binlog-get and bk snapshot-get into a full file system
fill out
out="$("$BK" binlog-get --config "$dir/bk.conf" --source "$source_id" "$snap_file" "$dir/out/binlog" 2>&1)"
is $? 5 "bk binlog-get to a full file system exits 5, not 1 (not in the archive)"
like "$out" "could not write \"$dir/out/binlog\\.bk-tmp\\.[0-9]+\": No space left on device" "naming the file and the error"
out="$("$BK" snapshot-get --config "$dir/bk.conf" --source "$source_id" "$dir/out/snap" 2>&1)"
is $? 5 "bk snapshot-get to a full file system exits 5"
like "$out" "could not write \"$dir/out/snap/.*\": No space left on device" "naming the file and the error"
is "$(ls -A "$dir/out")" "filler" "neither leaves anything behind"
rm -f "$dir/out/filler"
out="$("$BK" snapshot-get --config "$dir/bk.conf" --source "$source_id" "$dir/out/no-such/snap" 2>&1)"
is $? 5 "bk snapshot-get into a missing parent exits 5"
unlike "$out" "must not exist" "and does not say DIR must not exist yet" || diag "$out"

# ---- bk restore with its work directory on a full file system
fill work
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --mysql-socket "$dir/no-server.sock" \
    --work-dir "$dir/work" 2>&1)"
is $? 1 "bk restore with --work-dir on a full file system exits 1 (this host), not 5"
like "$out" "could not write \"$dir/work/bk-restore-[^/]*/$snap_file\": No space left on device" \
    "naming the rebuilt binlog file and the error"
like "$out" "HINT: The binlog to replay is rebuilt whole in a work directory in \"$dir/work\" before the target server is touched, and the target was not: make room there, or pass --work-dir DIR" \
    "the hint says the target was not touched, and what to do" || diag "$out"
is "$(ls -A "$dir/work")" "filler" "the work directory is removed"

done_testing
