#!/usr/bin/env bash
# bk expire on a real MariaDB archive (the agent, Kafka, a shipper, a
# directory repository), four snapshots in four binlog files:
#
#  - --retain-full 3 removes the oldest snapshot and the binlog files
#    before the oldest kept one's; its file and every later one stay;
#    bk verify passes, bk list shows no gap, and a restore to a time after
#    the oldest kept snapshot starts from it and holds the rows committed
#    until then; bk binlog-get of a removed file, and a restore to a time
#    before the oldest kept snapshot, say bk expire removed it;
#  - a run cut short inside a binlog file (the store refuses to delete its
#    second range: chattr +i): exit non-zero, the file's first range gone;
#    bk verify passes, bk list shows no gap, bk binlog-get of that file
#    says bk expire removed it, a restore from the oldest kept snapshot
#    works; a second run removes the rest;
#  - a second binlog history in the source (another server, log_bin=db2-bin,
#    its agent given the same source_id on other topics), its snapshot in
#    db2-bin.N where the oldest kept snapshot of the first is in
#    mariadb-bin.N: bk expire keeps both files, bk verify reports only the
#    crossing between the histories (and the first one's newest file, still
#    written), and a restore from the second history's snapshot holds its
#    rows.
#
# Expects MariaDB and Kafka from scripts/services; starts two more MariaDB
# servers on the two ports above it.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=SCRIPTDIR/../lib/tap.sh
source "$ROOT/tests/lib/tap.sh"
SERVICES="$ROOT/scripts/services"
eval "$("$SERVICES" env)" || bail_out "'scripts/services env' failed"
"$SERVICES" status mariadb kafka >/dev/null 2>&1 ||
    bail_out "mariadb and kafka must run: scripts/services start mariadb kafka"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-mdb-expire.XXXXXX")"
chmod 755 "$dir"
# shellcheck source=SCRIPTDIR/../lib/bk_env.sh
source "$ROOT/tests/lib/bk_env.sh"
# shellcheck source=SCRIPTDIR/../lib/mariadb.sh
source "$ROOT/tests/lib/mariadb.sh"
agent_pid=""
shipper_pid=""
db=bkexpire_$$
role="bk_expire_role_$$"
immutable=""
TARGET_PORT=$((MYSQL_TCP_PORT + 1))
DB2_PORT=$((MYSQL_TCP_PORT + 2))
agent2_pid=""
shipper2_pid=""
TARGET_DIR="$dir/target"
TARGET_SOCKET="$TARGET_DIR/mariadb/mysqld.sock"

tmy() {
    timeout 120 mariadb --no-defaults --protocol=SOCKET -h localhost -S "$TARGET_SOCKET" -u root \
        --connect-timeout=10 -N -B -r -e "$1" 2>&1
}
target_services() { BK_SERVICES_DIR="$TARGET_DIR" BK_MYSQL_PORT="$TARGET_PORT" "$SERVICES" "$@"; }
# A fresh, empty target server for each restore.
target_reset() {
    target_services stop mariadb >/dev/null 2>&1
    rm -rf "${TARGET_DIR:?}/mariadb"
    target_services start mariadb >>"$dir/target-start.log" 2>&1
}

# shellcheck disable=SC2317,SC2329 # called by the trap
cleanup() {
    [[ -n "$immutable" ]] && chattr -i "$immutable" 2>/dev/null
    [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    [[ -n "$shipper_pid" ]] && kill "$shipper_pid" 2>/dev/null && wait "$shipper_pid" 2>/dev/null
    [[ -n "$agent2_pid" ]] && kill "$agent2_pid" 2>/dev/null && wait "$agent2_pid" 2>/dev/null
    [[ -n "$shipper2_pid" ]] && kill "$shipper2_pid" 2>/dev/null && wait "$shipper2_pid" 2>/dev/null
    my "DROP DATABASE IF EXISTS $db; DROP ROLE IF EXISTS $role" >/dev/null
    target_services stop mariadb >/dev/null 2>&1
    BK_SERVICES_DIR="$dir/db2" BK_MYSQL_PORT="$DB2_PORT" "$SERVICES" stop mariadb >/dev/null 2>&1
    if [[ -n "${BK_TEST_KEEP:-}" ]]; then
        echo "# kept $dir" >&2
    else
        rm -rf "$dir"
    fi
}
trap cleanup EXIT

bk_test_init mariadb-expire
source_id="mdbx-$$"
bk_test_agent_conf "mysql_socket = $MYSQL_UNIX_PORT" "mysql_user = root" \
    "server_id = $((6000 + $$ % 1000))" "state_dir = $dir/agent-state" \
    "control_user = $(ps -o user= -p "$(cat "$(my 'SELECT @@pid_file')")" | tr -d ' ')" \
    "roles = $role" >"$dir/agent.conf"
restore() { "$BK" restore --config "$dir/bk.conf" --source "$source_id" --mysql-socket "$TARGET_SOCKET" "$@"; }
expire() { "$BK" expire --config "$dir/bk.conf" --source "$source_id" "$@"; }
list() { "$BK" list --config "$dir/bk.conf" --source "$source_id"; }
verify() { "$BK" verify --config "$dir/bk.conf" --source "$source_id"; }
binlog_get() { "$BK" binlog-get --config "$dir/bk.conf" --source "$source_id" "$@"; }
# The binlog files the repository holds ranges of, one a line.
archived_files() {
    find "$repo_files/$source_id/binlog" -mindepth 2 -type f -printf '%h\n' 2>/dev/null |
        sed 's|.*/||' | sort -u
}

target_reset &
target_pid=$!
out="$(my "CREATE ROLE $role; DROP FUNCTION IF EXISTS bk_snapshot;
           CREATE FUNCTION bk_snapshot RETURNS STRING SONAME 'bk_udf.so';
           CREATE DATABASE $db; CREATE TABLE $db.t (id INT PRIMARY KEY, round INT) ENGINE=InnoDB;
           FLUSH BINARY LOGS")"
ok $? "bk_snapshot(), a role allowed to call it, a table" || bail_out "$out"
"$BK_AGENT_BIN" --config "$dir/agent.conf" >>"$dir/agent.log" 2>&1 &
agent_pid=$!
wait_for 30 "agent streaming" grep -q "streaming the binlog from" "$dir/agent.log"
ok $? "bk-mysql-agent streams" || bail_out "$(cat "$dir/agent.log")"
bk_test_start_shipper

# ---------------------------------------------------------------- four rounds
# Round R: ten rows, in two commits more than range_interval apart (a file
# of several ranges), a snapshot, ten more rows, a moment (the time after
# them, a second from any commit), then the next file.
snaps=()
files=()
rows() {
    local out
    out="$(my "INSERT INTO $db.t SELECT $base + seq, $round FROM $db.seq_$1_to_$2")"
    [[ -z "$out" ]] || bail_out "round $round: $out"
}
for round in 1 2 3 4; do
    base=$((round * 100))
    rows 1 5
    sleep 0.3
    rows 6 10
    files+=("$(my 'SHOW MASTER STATUS' | cut -f1)")
    result="$(my "SELECT bk_snapshot()")"
    snaps+=("$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result")")
    [[ -n "${snaps[-1]}" ]] || bail_out "round $round: bk_snapshot() failed: $result"
    rows 11 20
    sleep 1.1
    date -u +%Y-%m-%dT%H:%M:%S.%6NZ >"$dir/round$round.time"
    my "SELECT COUNT(*) FROM $db.t" >"$dir/round$round.rows"
    sleep 1.1
    my "FLUSH BINARY LOGS" >/dev/null
done
end="$(my 'SHOW MASTER STATUS' | awk '{print $1 ":" $2}')"
# shellcheck disable=SC2317,SC2329 # called through wait_for
archived() {
    restore --dry-run --snapshot "${snaps[3]}" --target-position "$end" >/dev/null 2>&1
    [[ $? -ne 1 ]]
}
wait "$target_pid"
ok $? "a MariaDB server as the restore target" || bail_out "$(cat "$dir/target-start.log")"
wait_for 60 "the four snapshots and the binlog archived" archived
ok $? "four snapshots, in ${files[*]}, archived with the binlog up to $end" ||
    bail_out "$(list 2>&1)"

# ---------------------------------------------------------------- bk expire
out="$(expire --retain-full 3 2>&1)"
ok $? "bk expire --retain-full 3" || diag "$out"
like "$out" "removed snapshot ${snaps[0]}" "... removes the oldest snapshot" || diag "$out"
like "$out" "removed binlog ${files[0]} " "... and its binlog file, before the oldest kept one's" ||
    diag "$out"
is "$(archived_files | head -n 1)" "${files[1]}" \
    "the oldest kept snapshot's file ${files[1]} is the oldest file left" || diag "$(archived_files)"
is "$(archived_files | grep -c -F -x -e "${files[1]}" -e "${files[2]}" -e "${files[3]}")" 3 \
    "... and every later snapshot's file is there"
out="$(verify 2>&1)"
ok $? "bk verify passes" || diag "$out"
out="$(list 2>&1)"
like "$out" "no gap" "bk list shows no gap" || diag "$out"
unlike "$out" "GAP|gap:" "... and names none" || diag "$out"
target_reset
out="$(restore --target-time "$(cat "$dir/round2.time")" 2>&1)"
ok $? "a restore to a time after the oldest kept snapshot" || diag "$out"
like "$out" "${snaps[1]}" "... starts from it (${snaps[1]})" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM $db.t")" "$(cat "$dir/round2.rows")" "... and holds every row committed until then"
is "$(tmy "SELECT COUNT(*) FROM $db.t WHERE round > 2")" 0 "... and none after"

# What bk expire removed is said to be removed, not missing.
out="$(binlog_get "${files[0]}" "$dir/removed.bin" 2>&1)"
is $? 4 "bk binlog-get of a file bk expire removed: exit 4"
like "$out" "bk expire removed" "... saying bk expire removed it" || diag "$out"
like "$out" "up to ${files[0]}" "... up to that file" || diag "$out"
like "$out" "kept from ${files[1]} on" "... and that the binlog is kept from the oldest kept snapshot's file" ||
    diag "$out"
out="$(restore --dry-run --target-time "$(cat "$dir/round1.time")" 2>&1)"
is $? 1 "a restore to a time before the oldest kept snapshot is refused"
like "$out" "before the oldest restorable snapshot, ${snaps[1]} .*bk expire removed the binlog before it \\(up to ${files[0]}\\)" \
    "... saying bk expire removed the binlog it needs" || diag "$out"
like "$out" "restorable window is from ${files[1]}" "... with the window" || diag "$out"

# ---------------------------------------------------------------- cut short
# The store refuses to delete the second range of the oldest kept
# snapshot's file: the next run, keeping two, stops inside that file.
mapfile -t ranges < <(find "$repo_files/$source_id/binlog/${files[1]}" -type f | sort)
if ((${#ranges[@]} < 2)); then
    bail_out "${files[1]} was archived in ${#ranges[@]} range(s), the test needs two"
fi
immutable="${ranges[1]}"
if chattr +i "$immutable" 2>/dev/null; then
    out="$(expire --retain-full 2 2>&1)"
    isnt $? 0 "bk expire --retain-full 2, the store refusing to delete a range of ${files[1]}: fails"
    like "$out" "$(basename "$immutable")" "... naming the range" || diag "$out"
    [[ ! -e "${ranges[0]}" && -e "${ranges[1]}" ]]
    ok $? "... after removing the file's first range only"
    out="$(verify 2>&1)"
    ok $? "bk verify passes: what bk expire removed is no gap" || diag "$out"
    out="$(list 2>&1)"
    like "$out" "no gap" "bk list shows no gap" || diag "$out"
    out="$(binlog_get "${files[1]}" "$dir/cut.bin" 2>&1)"
    is $? 4 "bk binlog-get of the file the run was cut short in: exit 4"
    like "$out" "bk expire removed" "... saying bk expire removed it" || diag "$out"
    unlike "$out" "not complete|lacks the start" "... not that the archive lacks it" || diag "$out"
    target_reset
    out="$(restore --target-time "$(cat "$dir/round3.time")" 2>&1)"
    ok $? "a restore to a time after the oldest kept snapshot" || diag "$out"
    like "$out" "${snaps[2]}" "... starts from it (${snaps[2]})" || diag "$out"
    is "$(tmy "SELECT COUNT(*) FROM $db.t")" "$(cat "$dir/round3.rows")" "... and holds every row committed until then"

    chattr -i "$immutable"
else
    # Only this part: the run below and the second history go on.
    skip "a bk expire cut short inside a file" "chattr +i does not work on $repo_files"
fi
immutable=""
out="$(expire --retain-full 2 2>&1)"
ok $? "bk expire --retain-full 2, the store deleting again" || diag "$out"
like "$out" "removed binlog ${files[1]} " "... removes the rest of ${files[1]}" || diag "$out"
is "$(archived_files | head -n 1)" "${files[2]}" "the oldest kept snapshot's file ${files[2]} is the oldest left"
out="$(verify 2>&1)"
ok $? "bk verify passes" || diag "$out"
out="$(list 2>&1)"
like "$out" "no gap" "bk list shows no gap" || diag "$out"

# ---------------------------------------------------------------- a second history
# Another server's binlog (basename db2-bin) in the same source: the agent
# refuses another basename on the source's topics, but a second agent given
# the same source_id on other topics, with a shipper of its own into the
# same repository, archives it.  Its snapshot is in the file numbered as
# the oldest kept snapshot's (RESET MASTER TO): ordered by number alone,
# bk expire took db2-bin.N, before mariadb-bin.N by name, for a file before
# the oldest kept snapshot and removed it.
number=$((10#${files[2]##*.}))
db2_services() {
    BK_SERVICES_DIR="$dir/db2" BK_MYSQL_PORT="$DB2_PORT" BK_MARIADB_ARGS="--log-bin=db2-bin" "$SERVICES" "$@"
}
dmy() {
    timeout 120 mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$DB2_PORT" -u root \
        --connect-timeout=10 -N -B -r -e "$1" 2>&1
}
db2_services start mariadb >"$dir/db2-start.log" 2>&1
ok $? "a second server, log_bin=db2-bin" || bail_out "$(tail -n 5 "$dir/db2-start.log")"
out="$(dmy "RESET MASTER TO $number; CREATE ROLE $role;
            CREATE FUNCTION bk_snapshot RETURNS STRING SONAME 'bk_udf.so';
            CREATE DATABASE $db; CREATE TABLE $db.t (id INT PRIMARY KEY, round INT) ENGINE=InnoDB;
            INSERT INTO $db.t SELECT 900 + seq, 9 FROM $db.seq_1_to_7")"
ok $? "... writing db2-bin.$(printf %06d "$number") first" || bail_out "$out"
(
    prefix="$prefix-db2"
    bk_test_config "$dir/bk-db2.conf" "mariadb-expire-db2-$$"
    BK_MYSQL_AGENT_SOCKET="$dir/db2/mariadb/agent.sock"
    bk_test_agent_conf "mysql_host = 127.0.0.1" "mysql_port = $DB2_PORT" "mysql_user = root" \
        "server_id = $((7000 + $$ % 1000))" "state_dir = $dir/agent-state-db2" \
        "control_user = $(ps -o user= -p "$(cat "$(dmy 'SELECT @@pid_file')")" | tr -d ' ')" \
        "roles = $role" >"$dir/agent-db2.conf"
)
"$BK" init --config "$dir/bk-db2.conf" >/dev/null
"$BK_AGENT_BIN" --config "$dir/agent-db2.conf" >>"$dir/agent-db2.log" 2>&1 &
agent2_pid=$!
shipper_a=$shipper_pid
bk_test_start_shipper "$dir/bk-db2.conf" "$dir/shipper-db2.log"
shipper2_pid=$shipper_pid
shipper_pid=$shipper_a
wait_for 30 "the second agent streaming" grep -q "streaming the binlog from" "$dir/agent-db2.log"
ok $? "a second agent streams it, as source $source_id on other topics" || bail_out "$(cat "$dir/agent-db2.log")"
result="$(dmy "SELECT bk_snapshot()")"
snap_db2="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result")"
[[ -n "$snap_db2" ]] || bail_out "bk_snapshot() on the second server failed: $result"
file_db2="$(dmy 'SHOW MASTER STATUS' | cut -f1)"
dmy "INSERT INTO $db.t SELECT 900 + seq, 9 FROM $db.seq_8_to_12" >/dev/null
sleep 1.1
date -u +%Y-%m-%dT%H:%M:%S.%6NZ >"$dir/db2.time"
sleep 1.1
dmy "FLUSH BINARY LOGS" >/dev/null
db2_end="$(dmy 'SHOW MASTER STATUS' | awk '{print $1 ":" $2}')"
# Its record and the range ending at db2_end in the repository (a bk
# restore --dry-run would say so only if the catalog keeps the histories
# apart, which comes to the test below).
# shellcheck disable=SC2317,SC2329 # called through wait_for
db2_archived() {
    [[ -e "$repo_files/$source_id/snapshot/$snap_db2/snapshot.json" ]] &&
        compgen -G "$repo_files/$source_id/binlog/${db2_end%:*}/*-$(printf %010d "${db2_end#*:}")" >/dev/null
}
target_reset
wait_for 60 "the second server's snapshot and binlog archived" db2_archived
ok $? "its snapshot $snap_db2, in $file_db2, archived with its binlog" || bail_out "$(list 2>&1)"

out="$(expire --retain-full 3 2>&1)"
ok $? "bk expire --retain-full 3 (keeping ${snaps[2]} in ${files[2]} and $snap_db2 in $file_db2)" || diag "$out"
is "$(archived_files | grep -c -F -x -e "${files[2]}" -e "$file_db2")" 2 \
    "... keeps both kept snapshots' files" || diag "$out"
# Two histories written at once: the first one's newest file, which the
# server is still writing, is not complete, and the archive does not go
# on from it into the other; nothing else is missing.
out="$(verify 2>&1)"
is "$(grep -c 'binlog gap' <<<"$out")" 2 "bk verify reports two gaps" || diag "$out"
like "$out" "binlog gap: the archive does not go on into it from [^ ]*: another binlog basename" \
    "... the crossing into the other history" || diag "$out"
like "$out" "${files[3]%.*}\.[0-9]+: binlog gap: archived up to [0-9]+ only, and not complete" \
    "... and the first history's newest file, still written" || diag "$out"
out="$(restore --target-time "$(cat "$dir/db2.time")" 2>&1)"
ok $? "a restore to a time after the second history's snapshot" || diag "$out"
like "$out" "$snap_db2" "... starts from it" || diag "$out"
is "$(tmy "SELECT COUNT(*), MIN(round), MAX(round) FROM $db.t")" "12	9	9" \
    "... and holds the second server's rows, all of them" || diag "$out"

done_testing
