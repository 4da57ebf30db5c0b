#!/usr/bin/env bash
# bk-mysql-agent against the real MariaDB and Kafka, with a real bk-shipper:
#   configuration errors and a private key_file refused (exit 3);
#   a workload (ints, varchar, BLOB, UPDATE, DELETE, several transactions,
#   FLUSH BINARY LOGS) streamed, archived, and every closed file rebuilt by
#   bk binlog-get byte-identical to the server's own (cmp), Annotate_rows
#   events included; the file still being written refused (exit 4), an
#   unknown file absent (exit 1); bk_status() through the real bk_udf.so,
#   and a USAGE-only account refused; the agent stopped with SIGTERM
#   mid-workload, the shipper SIGKILLed three times mid-workload, the agent
#   SIGKILLed while a 64 MiB BLOB transaction streams: no gap, still
#   byte-identical; a statement-logged LOAD DATA (Begin_load_query and
#   Append_block events) archived byte-identical; an event damaged on the
#   server's disk refused (by the server, error 1236, and by the agent's
#   CRC-32 check): retried with a growing backoff, one binlog-read-error
#   audit event, the event and what to do in the log, archived once
#   repaired; binlogs PURGEd while the
#   agent is stopped (transactions unseen): a loud ERROR, a binlog-gap
#   audit event, a GAP in bk list, bk verify exit 4, and archiving goes on
#   after the gap; the connection cut (by a proxy) between a file's format
#   description and its GTID list and the file purged before the agent is
#   back: the same gap, from the file's start, and streaming goes on; a
#   file archived to its STOP, then purged while the agent is down: no gap;
#   the agent stopped caught up at the end of the file being written, an
#   Incident event (LOST_EVENTS, no GTID) logged, the file rotated and
#   purged: the next file's GTID list shows no transaction missing, still
#   a gap; another server's lower GTID in a
#   domain (a failover without gtid_strict_mode) across an agent restart:
#   no discontinuity, no gap; RESET MASTER while the agent is
#   stopped after a ROTATE: the name it resumes at written again, an ERROR,
#   a binlog-gtid-discontinuity audit event, a GAP in bk list, bk verify
#   exit 4; RESET MASTER while the agent is stopped with the archive ending
#   inside a file: the server's GTID state there checked, streaming
#   refused with an ERROR and a binlog-reset audit event; the same when
#   the new file has no event starting at the archive's end
#   (BINLOG_GTID_POS is NULL), the audit event sent once however often the
#   agent retries; no plaintext in the topic or the repository; a file
#   cut short mid-event (what a crash leaves): archived to its last whole
#   event, streaming goes on with the next file; the agent stopped with the
#   archive inside a transaction, then mariadbd killed and the file cut
#   inside it (recovery rolls it back): the agent resumes there and takes
#   its GTID back at the next file's start, no ERROR, no gap; each file's first range
#   saying where the file before ended and how (ROTATE, or none after a
#   crash), and a copy of the repository without a file's closing range
#   reported as a gap (bk verify, bk list, bk binlog-get); a server
#   with encrypt_binlog ON and one with log_bin OFF refused, naming the
#   setting.
#
# Expects MariaDB and Kafka from scripts/services (MariaDB started with
# BK_AGENT_SOCKET in its environment, the path the agent's control socket
# takes here).  Purges old binlogs of that server, and resets its binlog
# (RESET MASTER).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=SCRIPTDIR/../lib/tap.sh
source "$ROOT/tests/lib/tap.sh"
# shellcheck source=SCRIPTDIR/../lib/mariadb.sh
source "$ROOT/tests/lib/mariadb.sh"
SERVICES="$ROOT/scripts/services"
BK="$ROOT/cli/bk"
SHIPPER="$ROOT/shipper/bk-shipper"
AGENT="$ROOT/mysql_agent/bk-mysql-agent"

env_lines="$("$SERVICES" env mariadb kafka)" || bail_out "'scripts/services env' failed"
eval "$env_lines"
"$SERVICES" status mariadb kafka >/dev/null 2>&1 ||
    bail_out "mariadb and kafka must run: scripts/services start mariadb kafka"
for prog in "$BK" "$SHIPPER" "$AGENT"; do
    [[ -x "$prog" ]] || bail_out "$prog is not built: make tests"
done


server_pid="$(cat "$(my 'SELECT @@pid_file')" 2>/dev/null)"
[[ "$server_pid" =~ ^[0-9]+$ ]] || bail_out "cannot find mariadbd's pid"
server_user="$(stat -c %U "/proc/$server_pid")"
server_socket="$(tr '\0' '\n' <"/proc/$server_pid/environ" 2>/dev/null | sed -n 's/^BK_AGENT_SOCKET=//p')"
binlog_dir="$(dirname "$(my 'SELECT @@log_bin_basename')")"
[[ -d "$binlog_dir" ]] || bail_out "cannot find the server's binlog directory ($binlog_dir)"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-binlog-test.XXXXXX")"
chmod 755 "$dir"
mkdir -p "$dir/out"
prefix="bkit-binlog-$$-$RANDOM"
source_id="mdb-$$-$RANDOM"
db="bk_binlog_$$"
repo="$dir/repo"
alog="$dir/agent.log"
slog="$dir/shipper.log"
MARKER="BK-BINLOG-MARKER-$$-$RANDOM-$RANDOM"
agent_pid=""
shipper_pid=""
workload_pid=""
proxy_pid=""
old_packet="$(my 'SELECT @@global.max_allowed_packet')"
old_strict="$(my 'SELECT @@global.gtid_strict_mode')"
old_verify="$(my 'SELECT @@global.master_verify_checksum')"
old_stmt_cache="$(my 'SELECT @@global.max_binlog_stmt_cache_size')"
created_function=""
role="bk_test_binlog_$$"

# shellcheck disable=SC2317,SC2329 # called by the trap
cleanup() {
    [[ -n "$workload_pid" ]] && kill "$workload_pid" 2>/dev/null && wait "$workload_pid" 2>/dev/null
    if [[ -n "$agent_pid" ]]; then
        kill -TERM "$agent_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$agent_pid" 2>/dev/null
        wait "$agent_pid" 2>/dev/null
    fi
    [[ -n "$shipper_pid" ]] && kill -KILL "$shipper_pid" 2>/dev/null && wait "$shipper_pid" 2>/dev/null
    [[ -n "$proxy_pid" ]] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
    BK_SERVICES_DIR="$dir/other" BK_MYSQL_PORT="$((MYSQL_TCP_PORT + 2))" "$SERVICES" stop mariadb >/dev/null 2>&1
    [[ "$old_packet" =~ ^[0-9]+$ ]] && my "SET GLOBAL max_allowed_packet = $old_packet" >/dev/null
    [[ "$old_strict" =~ ^[01]$ ]] && my "SET GLOBAL gtid_strict_mode = $old_strict" >/dev/null
    [[ "$old_verify" =~ ^[01]$ ]] && my "SET GLOBAL master_verify_checksum = $old_verify" >/dev/null
    [[ "$old_stmt_cache" =~ ^[0-9]+$ ]] &&
        my "SET GLOBAL max_binlog_stmt_cache_size = $old_stmt_cache" >/dev/null
    my "DROP DATABASE IF EXISTS $db; DROP USER IF EXISTS bk_binlog_admin@'127.0.0.1';
        DROP USER IF EXISTS bk_binlog_usage@'127.0.0.1'" >/dev/null
    [[ -n "$created_function" ]] && my "DROP FUNCTION IF EXISTS bk_status" >/dev/null
    my "DROP ROLE IF EXISTS $role" >/dev/null
    if [[ -n "${BK_TEST_KEEP:-}" ]]; then
        echo "# kept $dir" >&2
    else
        rm -rf "$dir"
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- helpers

"$BK" keygen --out "$dir/bk.key" >/dev/null 2>&1 || bail_out "bk keygen failed"
cat >"$dir/bk.conf" <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $prefix
repository = $repo
key_file = $dir/bk.key
shipper_id = binlog-$$
group_id = $prefix
CONF
# agent_conf [LINE...]: the agent's configuration plus LINEs.
agent_conf() {
    bk_test_agent_conf "mysql_socket = $MYSQL_UNIX_PORT" "mysql_user = root" \
        "server_id = $((4000 + $$ % 50000))" "range_size = 32KiB" "heartbeat = 500ms" \
        "state_dir = $dir/state" "control_user = $server_user" "roles = $role" "$@"
}
agent_conf >"$dir/agent.conf"

# json_get CODE: run python CODE with d = the JSON on stdin; silent on errors.
json_get() { python3 -c "import json, sys; d = json.load(sys.stdin); $1" 2>/dev/null; }
bkc() { "$BK" "$1" --config "$dir/bk.conf" "${@:2}"; }
streaming_count() { grep -c 'INFO: streaming the binlog from' "$alog"; }
# shellcheck disable=SC2317,SC2329 # called through wait_for
streams_more_than() { (($(streaming_count) > $1)); }
# start_agent [CONF]
start_agent() {
    local before
    before="$(streaming_count 2>/dev/null || echo 0)"
    "$AGENT" --config "${1:-$dir/agent.conf}" >>"$alog" 2>&1 &
    agent_pid=$!
    wait_for 30 "the agent to stream" streams_more_than "$before"
}
# stop_agent [SIGNAL]: the agent's exit status.
stop_agent() {
    local rc
    kill "-${1:-TERM}" "$agent_pid"
    wait "$agent_pid" 2>/dev/null # (no "Killed" line from bash)
    rc=$?
    agent_pid=""
    return "$rc"
}
start_shipper() {
    "$SHIPPER" --config "$dir/bk.conf" >>"$slog" 2>&1 &
    shipper_pid=$!
}

# workload TXNS: TXNS transactions of inserts (ints, varchar, BLOB), an
# UPDATE and a DELETE each.
workload() {
    local i
    {
        echo "USE $db;"
        for ((i = 0; i < $1; i++)); do
            echo "BEGIN;"
            echo "INSERT INTO t (n, big, s, b) VALUES"
            echo "  ($i, $i * 1000000007, CONCAT('w-', UUID()), RANDOM_BYTES(900)),"
            echo "  ($i + 1, -$i, REPEAT('v', $i % 50), RANDOM_BYTES(500)),"
            echo "  ($i + 2, NULL, 'plain', NULL), ($i + 3, 42, UUID(), RANDOM_BYTES(1000)),"
            echo "  ($i + 4, 7, 'x', RANDOM_BYTES(20)), ($i + 5, 8, 'y', RANDOM_BYTES(700));"
            echo "SET @a = LAST_INSERT_ID();"
            echo "UPDATE t SET n = n + 1, s = CONCAT(s, '+'), b = RANDOM_BYTES(300) WHERE id BETWEEN @a AND @a + 2;"
            echo "DELETE FROM t WHERE id = @a + 4;"
            echo "COMMIT;"
        done
    } | my_script
}
# batches N TXNS: N times TXNS transactions and FLUSH BINARY LOGS.
batches() {
    local b
    for ((b = 0; b < $1; b++)); do
        workload "$2" || return 1
        my "FLUSH BINARY LOGS" || return 1
    done
}
current_file() { my 'SHOW MASTER STATUS' | cut -f1; }
# closed_since FILE: the server's closed binlog files from FILE on.
closed_since() { my 'SHOW BINARY LOGS' | cut -f1 | head -n -1 | awk -v f="$1" '$1 >= f'; }
# shellcheck disable=SC2317,SC2329 # called through wait_for
# archived_closed: the files the archive holds up to a ROTATE or STOP.
archived_closed() {
    bkc list --source "$source_id" --json 2>/dev/null |
        json_get 'print("\n".join(f["name"] for f in d["sources"][0]["binlog_files"] if f["closed"]))'
}
# shellcheck disable=SC2317,SC2329 # called through wait_for
# archive_holds FILE: a range of FILE is archived.
archive_holds() {
    bkc list --source "$source_id" --json 2>/dev/null |
        json_get 'print("\n".join(f["name"] for f in d["sources"][0]["binlog_files"]))' | grep -qx -- "$1"
}
# shellcheck disable=SC2317,SC2329 # called through wait_for
all_archived() {
    local have f
    have="$(archived_closed)"
    for f in "$@"; do
        grep -qx -- "$f" <<<"$have" || return 1
    done
}
# check_files DESC FILE...: each FILE archived up to its end, rebuilt by
# bk binlog-get and equal to the server's file.
check_files() {
    local desc="$1" f bad=()
    shift
    if (($# == 0)); then
        ok 1 "$desc: no file to check"
        return
    fi
    wait_for 90 "$* archived" all_archived "$@"
    for f in "$@"; do
        # A fresh copy each time (binlog-get never replaces a file).
        rm -f "$dir/out/$f"
        if ! bkc binlog-get --source "$source_id" "$f" "$dir/out/$f" 2>>"$dir/get.err"; then
            bad+=("$f (binlog-get failed: $(tail -n 1 "$dir/get.err"))")
        elif ! cmp -s "$dir/out/$f" "$binlog_dir/$f"; then
            bad+=("$f ($(cmp "$dir/out/$f" "$binlog_dir/$f" 2>&1 | head -n 1))")
        fi
    done
    ok "${#bad[@]}" "$desc: $# closed file(s) $1..${!#} rebuilt byte-identical" ||
        diag "$(printf '%s\n' "${bad[@]}")"
}
# no_gap DESC: bk list says "no gap" and bk verify exits 0.
no_gap() {
    local out
    out="$(bkc list --source "$source_id" 2>&1)"
    like "$out" 'no gap' "$1: bk list shows no gap" || diag "$out"
    out="$(bkc verify --source "$source_id" 2>&1)"
    is $? 0 "$1: bk verify exits 0" || diag "$out"
}
audit() {
    timeout 30 kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.audit" -o beginning -e -q \
        -f '%s\n' 2>/dev/null
}

# ---------------------------------------------------------------- configuration

socket_before="$([[ -e "$BK_MYSQL_AGENT_SOCKET" ]] && echo present || echo absent)"
agent_conf "bogus_setting = 1" >"$dir/bad.conf"
out="$("$AGENT" --config "$dir/bad.conf" 2>&1)"
is $? 3 "an unknown setting: the agent exits 3"
like "$out" "line $(grep -n bogus_setting "$dir/bad.conf" | cut -d: -f1): unknown setting \"bogus_setting\"" "and names the setting and its line"
agent_conf | grep -v '^source_id' >"$dir/bad.conf"
out="$("$AGENT" --config "$dir/bad.conf" 2>&1)"
is $? 3 "no source_id: the agent exits 3"
like "$out" 'source_id is not set' "and says so"
agent_conf | sed "s|^key_file = .*|key_file = $dir/bk.key|" >"$dir/bad.conf"
out="$("$AGENT" --config "$dir/bad.conf" 2>&1)"
is $? 3 "a private key as key_file: the agent exits 3"
like "$out" 'holds a private key; a database host must hold only the public key' "and says why"
is "$([[ -e "$BK_MYSQL_AGENT_SOCKET" ]] && echo present || echo absent)" "$socket_before" \
    "the refused starts leave the control socket path as it was"

# ---------------------------------------------------------------- workload, archived, rebuilt

out="$("$BK" init --config "$dir/bk.conf" 2>&1)"
ok $? "bk init created the topics under $prefix" || diag "$out"
out="$(my "CREATE DATABASE $db; CREATE TABLE $db.t (id INT AUTO_INCREMENT PRIMARY KEY,
       n INT, big BIGINT, s VARCHAR(200), b BLOB, lb LONGBLOB) ENGINE=InnoDB;
       FLUSH BINARY LOGS")"
ok $? "test table created" || diag "$out"
first_file="$(current_file)"
note "the agent starts at $first_file"

start_shipper
start_agent
ok $? "the agent streams" || bail_out "the agent did not start: $(tail -n 20 "$alog")"
like "$(cat "$alog")" "streaming from the start of $first_file" \
    "an empty archive: the agent starts at the server's current file"

out="$(my "INSERT INTO $db.t (n, s, b) VALUES (1, '$MARKER', '$MARKER')")"
ok $? "a row with a unique marker" || diag "$out"
batches 3 10
ok $? "workload: 3 x 10 transactions, FLUSH BINARY LOGS after each"
mapfile -t files < <(closed_since "$first_file")
check_files "workload" "${files[@]}"
grep -aq "$MARKER" "$binlog_dir/$first_file"
ok $? "(the marker is in the server's binlog in plaintext)"
annotated="$(mariadb-binlog "$dir/out/$first_file" 2>&1)"
like "$annotated" 'Annotate_rows:' "mariadb-binlog reads the rebuilt file: Annotate_rows events are there"
like "$annotated" "#Q> INSERT INTO $db\.t \(n, s, b\) VALUES \(1, '$MARKER'" "with the statement text"
like "$annotated" "#Q> UPDATE t SET n = n \+ 1" "UPDATEs too"
no_gap "workload"

# ------------------------------ where each file ended, on the next one's first range
# previous_meta FILE: previous-end= and previous-closed= of FILE's first
# range (metadata is plaintext in the frame header).
previous_meta() {
    local first
    first="$(find "$repo/$source_id/binlog/$1" -name '0000000000-*' | sort | head -n 1)"
    [[ -n "$first" ]] || return 1
    grep -ao 'previous-\(end\|closed\)=[ -~]*' "$first" | head -n 2 | paste -sd ' '
}
bad=()
for ((i = 0; i + 1 < ${#files[@]}; i++)); do
    want="previous-end=${files[i]}:$(stat -c %s "$binlog_dir/${files[i]}") previous-closed=rotate"
    have="$(previous_meta "${files[i + 1]}")"
    [[ "$have" == "$want" ]] || bad+=("${files[i + 1]}: '$have', not '$want'")
done
ok "${#bad[@]}" "each file's first range says where the file before ended, by ROTATE" ||
    diag "$(printf '%s\n' "${bad[@]}")"

# The closing range of a file lost (removed from a copy of the repository):
# the file is not taken for one a crash left, though the next file follows.
lost_file="${files[0]}"
lost_ranges=("$repo/$source_id/binlog/$lost_file"/*)
lost_last="$(basename "${lost_ranges[-1]}")"
lost_at=$((10#${lost_last%-*}))
cp -a "$repo" "$dir/repo-lost"
rm "$dir/repo-lost/$source_id/binlog/$lost_file/$lost_last"
out="$(bkc verify --repo "$dir/repo-lost" --source "$source_id" 2>&1)"
is $? 4 "a file without its closing range: bk verify exits 4"
like "$out" "$lost_file: binlog gap: archived up to offset $lost_at, but the agent read it to offset $(stat -c %s "$binlog_dir/$lost_file"), where its ROTATE event ended it" \
    "... naming the file, where the archive ends and where the file ended" || diag "$out"
out="$(bkc list --repo "$dir/repo-lost" --source "$source_id" 2>&1)"
like "$out" "GAP: binlog $lost_file: archived up to offset $lost_at" "... bk list shows the gap" || diag "$out"
out="$(bkc binlog-get --repo "$dir/repo-lost" --source "$source_id" "$lost_file" "$dir/out/lost" 2>&1)"
is $? 4 "... bk binlog-get of it exits 4" || diag "$out"
[[ ! -e "$dir/out/lost" ]]
ok $? "... and writes nothing"
rm -rf "$dir/repo-lost"

# ---------------------------------------------------------------- incomplete and unknown files

current="$(current_file)"
wait_for 30 "$current archived" archive_holds "$current"
out="$(bkc binlog-get --source "$source_id" "$current" "$dir/out/current" 2>&1)"
is $? 4 "binlog-get of the file still being written exits 4"
like "$out" "binlog \"$current\" of source \"$source_id\" is archived up to offset [0-9]+ but not complete" \
    "saying it is not complete"
[[ ! -e "$dir/out/current" ]]
ok $? "and writes nothing"
out="$(bkc binlog-get --source "$source_id" mariadb-bin.999999 "$dir/out/unknown" 2>&1)"
is $? 1 "binlog-get of a file the archive does not hold exits 1"
like "$out" 'is not in the archive' "saying so"
closed="$(cd "$dir/out" && find . -maxdepth 1 -type f -regex '.*\.[0-9][0-9][0-9][0-9][0-9][0-9]$' -printf '%f\n' | sort | head -n 1)"
out="$(bkc binlog-get --source "$source_id" "$closed" "$dir/no/such/dir/$closed" 2>&1)"
is $? 5 "binlog-get of $closed into a directory that does not exist exits 5 (fix and retry), never 1 (not in the archive)"
like "$out" 'could not create' "naming what it could not create"
# OUT there already (the server's own binlog, say) is never replaced.
cp "$dir/out/$closed" "$dir/out/kept"
printf 'x' >>"$dir/out/kept"
out="$(bkc binlog-get --source "$source_id" "$closed" "$dir/out/kept" 2>&1)"
is $? 2 "binlog-get of $closed onto a file that exists exits 2"
like "$out" '"[^"]*/out/kept" exists already' "naming it"
cmp -s "$dir/out/kept" <(cat "$dir/out/$closed"; printf 'x')
ok $? "and leaves it as it was"

# ---------------------------------------------------------------- bk_status() through bk_udf.so

if [[ -z "$server_socket" || "$server_socket" != "$BK_MYSQL_AGENT_SOCKET" ]]; then
    for _ in 1 2 3 4 5 6; do
        skip "bk_status() through bk_udf.so" "mariadbd's BK_AGENT_SOCKET is '$server_socket', not $BK_MYSQL_AGENT_SOCKET"
    done
else
    out="$(make -s -C "$ROOT/mysql_udf" install PLUGIN_DIR="$(my 'SELECT @@plugin_dir')" 2>&1)"
    ok $? "bk_udf.so installed into plugin_dir" || diag "$out"
    if [[ "$(my "SELECT COUNT(*) FROM mysql.func WHERE name = 'bk_status'")" == 0 ]]; then
        my "CREATE FUNCTION bk_status RETURNS STRING SONAME 'bk_udf.so'" >/dev/null
        created_function=1
    fi
    # A role of the test's own, named in the agent's "roles" setting: its
    # creator may grant it.
    my "CREATE ROLE $role; CREATE USER bk_binlog_admin@'127.0.0.1'; GRANT $role TO bk_binlog_admin@'127.0.0.1';
        CREATE USER bk_binlog_usage@'127.0.0.1'" >/dev/null
    my "INSERT INTO $db.t (n) VALUES (0)" >/dev/null
    master="$(my 'SHOW MASTER STATUS' | cut -f1,2)"
    # shellcheck disable=SC2317,SC2329 # called through wait_for
    status_caught_up() {
        status="$(my --user bk_binlog_admin 'SELECT bk_status()')"
        [[ "$(json_get 'print(d["archived"]["file"], d["archived"]["pos"], sep="\t")' <<<"$status")" == "$master" ]]
    }
    # The range is sent range_interval after its first event.
    wait_for 10 "bk_status() to show $master archived" status_caught_up
    json_get 'assert isinstance(d, dict)' <<<"$status"
    ok $? "bk_status() returns JSON" || diag "$status"
    is "$(json_get 'print(d["agent"], d["source_id"], str(d["streaming"]).lower(), sep="\t")' <<<"$status")" \
        "up	$source_id	true" "agent up, our source, streaming"
    is "$(json_get 'print(d["archived"]["file"], d["archived"]["pos"], sep="\t")' <<<"$status")" "$master" \
        "archived: the server's current file and position ($master)"
    out="$(my --user bk_binlog_usage 'SELECT bk_status()')"
    like "$out" "^ERROR 1105 \(HY000\).*user 'bk_binlog_usage'@'127.0.0.1' is not allowed.*GRANT $role" \
        "a USAGE-only account is refused, naming the role to grant"
    unlike "$out" '"agent"' "and sees no status"
fi

# ---------------------------------------------------------------- SIGTERM mid-workload

mark="$(current_file)"
batches 5 8 >"$dir/workload.out" 2>&1 &
workload_pid=$!
sleep 0.7
if kill -0 "$workload_pid" 2>/dev/null; then
    note "SIGTERM while the workload runs"
else
    note "the workload ended before the SIGTERM"
fi
stop_agent TERM
is $? 0 "SIGTERM mid-workload: the agent exits 0"
like "$(tail -n 1 "$alog")" 'INFO: stopped' "and says it stopped"
sleep 0.5
start_agent
ok $? "the agent restarts"
wait "$workload_pid"
ok $? "the workload went on meanwhile" || diag "$(cat "$dir/workload.out")"
workload_pid=""
my "FLUSH BINARY LOGS" >/dev/null
mapfile -t files < <(closed_since "$mark")
check_files "after SIGTERM" "${files[@]}"
no_gap "after SIGTERM"

# ---------------------------------------------------------------- shipper SIGKILLed 3 times

mark="$(current_file)"
batches 6 8 >"$dir/workload.out" 2>&1 &
workload_pid=$!
kills=0
for _ in 1 2 3; do
    sleep 0.6
    kill -KILL "$shipper_pid" && wait "$shipper_pid" 2>/dev/null
    kills=$((kills + 1))
    start_shipper
done
is "$kills" 3 "the shipper SIGKILLed 3 times during the workload"
wait "$workload_pid"
ok $? "the workload went on meanwhile" || diag "$(cat "$dir/workload.out")"
workload_pid=""
my "FLUSH BINARY LOGS" >/dev/null
mapfile -t files < <(closed_since "$mark")
check_files "after shipper kills" "${files[@]}"
no_gap "after shipper kills"

# ---------------------------------------------------------------- statement-logged LOAD DATA
# LOAD DATA logged as a statement carries the loaded file in the binlog: a
# Begin_load_query event with its first block, Append_block events with the
# rest, an Execute_load_query event.  Valid events, archived like any
# other; the agent never stalls on an event type it does not parse.

mark="$(current_file)"
python3 -c '
import sys
with open(sys.argv[1], "w") as f:
    for i in range(20000):
        f.write("%d,load-%d-%s\n" % (i, i, "x" * 30))
' "$dir/load.csv"
load_errors="$(grep -c 'ERROR: reading the binlog' "$alog")"
out="$(timeout 120 mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_TCP_PORT" \
    -u root --connect-timeout=10 --local-infile=1 -N -B -e "
    SET SESSION binlog_format = STATEMENT;
    LOAD DATA LOCAL INFILE '$dir/load.csv' INTO TABLE $db.t
        FIELDS TERMINATED BY ',' (n, s);
    INSERT INTO $db.t (n, s) VALUES (-1, 'after the load')" 2>&1)"
ok $? "LOAD DATA of a $(stat -c %s "$dir/load.csv")-byte file, logged as a statement" ||
    diag "$out"
my "FLUSH BINARY LOGS" >/dev/null
# mariadb-binlog writes the loaded file out (SQL_LOAD_MB-*), by default in
# TMPDIR, and leaves it there: into the test's directory instead.
mkdir -p "$dir/load-files"
load_events="$(mariadb-binlog --no-defaults --local-load="$dir/load-files" "$binlog_dir/$mark" 2>&1)"
like "$load_events" 'Begin_load_query' "$mark holds a Begin_load_query event"
like "$load_events" 'Append_block' "and Append_block events (the file is larger than a block)"
like "$load_events" 'Execute_load_query' "and an Execute_load_query event"
mapfile -t files < <(closed_since "$mark")
check_files "statement-logged LOAD DATA" "${files[@]}"
is "$(grep -c 'ERROR: reading the binlog' "$alog")" "$load_errors" \
    "no error reading the binlog" || diag "$(grep 'ERROR: reading the binlog' "$alog" | tail -n 3)"
no_gap "statement-logged LOAD DATA"

# ---------------------------------------------------------------- a damaged event
# An event damaged on the server's disk, in the part of a file the agent
# has not read: with master_verify_checksum the server refuses to send it
# (error 1236), without it the agent's own CRC-32 check refuses it.  Either
# way the agent retries at that position, less often each time, sends one
# binlog-read-error audit event for it, and says which event, where, and
# what to do; once the file is repaired, archiving goes on.

stop_agent TERM
damaged="$(current_file)"
workload 2 >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
read -r dpos _ < <(my "SHOW BINLOG EVENTS IN '$damaged'" |
    awk -F'\t' '$3 ~ /^Write_rows/ {print $2, $5}' | tail -n 1)
dbyte=$((dpos + 40))
dorig="$(od -An -tu1 -j "$dbyte" -N1 "$binlog_dir/$damaged" | tr -d ' ')"
dput() { printf '%b' "$(printf '\\%03o' "$1")" | dd of="$binlog_dir/$damaged" bs=1 seek="$dbyte" conv=notrunc status=none; }
dput $(((dorig + 1) % 256))
ok $? "one byte of the Write_rows event at $damaged:$dpos changed on disk"
my "SET GLOBAL master_verify_checksum = ON" >/dev/null
refused="reading the binlog at $damaged:$dpos: [^\"]*did not pass crc check"
start_agent
ok $? "the agent starts again"
# shellcheck disable=SC2317,SC2329 # called through wait_for
refusals_at_least() { (($(grep -c "$refused" "$alog") >= $1)); }
wait_for 30 "three refusals" refusals_at_least 3
ok $? "the server refuses to send the damaged event, the agent retries" || diag "$(tail -n 5 "$alog")"
like "$(grep "$refused" "$alog" | tail -n 1)" \
    "ERROR: reading the binlog at $damaged:$dpos: .*did not pass crc check.* HINT: .*mariadb-binlog --verify-binlog-checksum --start-position=$dpos $damaged" \
    "the server's own text first, then what to do"
unlike "$(grep "$refused" "$alog" | tail -n 1)" 'was purged or' "no guess that the file was purged"
is "$(grep -A1 "$refused" "$alog" | grep -o 'retrying in [0-9]* ms' | head -n 3 | tr '\n' ' ')" \
    "retrying in 1000 ms retrying in 2000 ms retrying in 4000 ms " "the backoff grows at the same position"
read_errors() { audit | grep '"event":"binlog-read-error"' | grep -c "\"binlog_file\":\"$damaged\",\"binlog_pos\":$dpos"; }
is "$(read_errors)" 1 "one binlog-read-error audit event for $damaged:$dpos"
audit | grep '"event":"binlog-gap"' | grep -q "\"binlog_file\":\"$damaged\""
isnt $? 0 "and no binlog-gap event"
my "SET GLOBAL master_verify_checksum = OFF" >/dev/null
crc_wrong="reading the binlog at $damaged:$dpos, a Write_rows_v1 event (type 23): its CRC-32 is wrong"
wait_for 30 "the agent's own CRC check" grep -q "$crc_wrong" "$alog"
ok $? "without master_verify_checksum, the agent's own check refuses it, naming the event" ||
    diag "$(tail -n 5 "$alog")"
like "$(grep "$crc_wrong" "$alog" | tail -n 1)" \
    "HINT: .*mariadb-binlog --verify-binlog-checksum --start-position=$dpos $damaged" "and what to do"
is "$(read_errors)" 1 "still one binlog-read-error audit event for $damaged:$dpos"
dput "$dorig"
ok $? "the byte repaired"
check_files "after the damaged event was repaired" "$damaged"

# ---------------------------------------------------------------- SIGKILL while 64 MiB streams

# The BLOB repeats 128 KiB of random bytes: beyond LZ4's 64 KiB window, so
# the 64 MiB go through Kafka uncompressed and take a while.  The agent is
# killed as soon as the shipper spools the first chunks of the range.
mark="$(current_file)"
my "SET GLOBAL max_allowed_packet = 256 * 1024 * 1024" >/dev/null
size_before="$(stat -c %s "$binlog_dir/$mark")"
my "SET SESSION group_concat_max_len = 1048576;
    SET @x = (SELECT GROUP_CONCAT(RANDOM_BYTES(1024) SEPARATOR '') FROM $db.seq_1_to_128);
    INSERT INTO $db.t (n, s, lb) VALUES (64, 'big', REPEAT(@x, 512))" >"$dir/big.out" 2>&1 &
workload_pid=$!
# shellcheck disable=SC2317,SC2329 # called through wait_for
big_written() { (($(stat -c %s "$binlog_dir/$mark") > size_before + 64 * 1024 * 1024)); }
# shellcheck disable=SC2317,SC2329 # called in the loop below
spooling() { [[ -n "$(find "$repo/.spool" -type f ! -name .lock -size +0 2>/dev/null | head -n 1)" ]]; }
deadline=$((SECONDS + 60))
big_archived() { [[ -n "$(find "$repo/$source_id/binlog/$mark" -size +60M 2>/dev/null)" ]]; }
until spooling || big_archived || ((SECONDS > deadline)); do
    sleep 0.02
done
stop_agent KILL
is $? 137 "the agent SIGKILLed while a 64 MiB range streams"
wait "$workload_pid"
workload_pid=""
is "$(my "SELECT LENGTH(lb) FROM $db.t WHERE n = 64 AND s = 'big'")" 67108864 \
    "the row holds 64 MiB" || diag "$(cat "$dir/big.out")"
start_agent
ok $? "the agent restarts after SIGKILL"
resume="$(grep -o "resuming the binlog at $mark:[0-9]*" "$alog" | tail -n 1)"
ok $((${resume##*:} < size_before + 64 * 1024 * 1024 ? 0 : 1)) \
    "it resumes before the 64 MiB event (${resume##* }): Kafka did not hold all of its range"
my "SET GLOBAL max_allowed_packet = $old_packet" >/dev/null
workload 5 >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
mapfile -t files < <(closed_since "$mark")
check_files "after SIGKILL mid-64MiB" "${files[@]}"
no_gap "after SIGKILL mid-64MiB"

# ---------------------------------------------------------------- SIGKILL just after a ROTATE

# With range_interval 1h the next file's first events wait in the agent's
# memory: killed then, the newest range in Kafka is the one that ends with
# the ROTATE, and the agent resumes exactly at a file's end.
stop_agent TERM
is $? 0 "agent stopped (SIGTERM)"
agent_conf "range_interval = 1h" >"$dir/agent-slow.conf"
start_agent "$dir/agent-slow.conf"
ok $? "the agent restarts with range_interval 1h"
mark="$(current_file)"
workload 2 >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
wait_for 30 "$mark archived to its ROTATE" all_archived "$mark"
ok $? "$mark archived up to its ROTATE"
sleep 0.3
stop_agent KILL
is $? 137 "the agent SIGKILLed with the next file's start unsent"
start_agent
ok $? "the agent restarts"
workload 2 >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
mapfile -t files < <(closed_since "$mark")
check_files "after SIGKILL at a file's end" "${files[@]}"
no_gap "after SIGKILL at a file's end"
unlike "$(cat "$alog")" 'without a ROTATE or STOP event' \
    "no file reported unclosed after a resume at a file's end"
is "$(audit | grep -c '"event":"binlog-unclosed-file"')" 0 "and no binlog-unclosed-file audit event"

# ---------------------------------------------------------------- PURGE while the agent is stopped

# purge_gap FILES: stop the agent, write FILES more files (a workload in
# each), PURGE BINARY LOGS up to the newest, start the agent.  Sets cut
# (the file the archive ended in), resumed (the oldest file left).
purge_gap() {
    local n
    stop_agent TERM
    cut="$(current_file)"
    for ((n = 0; n < $1; n++)); do
        workload 3 >/dev/null # the tail of cut the agent never saw, and more
        my "FLUSH BINARY LOGS" >/dev/null
    done
    resumed="$(current_file)"
    workload 2 >/dev/null
    out="$(my "PURGE BINARY LOGS TO '$resumed'")"
    ok $? "agent stopped; PURGE BINARY LOGS TO '$resumed' ($cut not archived to its end)" || diag "$out"
    start_agent
    ok $? "the agent starts again after the purge"
    # Decided at once (whole files missing), or by the next file's GTID list.
    wait_for 30 "the ERROR naming $cut" grep -qE "ERROR: the binlog file \"$cut\", where the archive ends \(offset [0-9]+\), is no longer on the server: it was purged" "$alog"
    ok $? "the agent logs a loud ERROR naming $cut" || diag "$(tail -n 5 "$alog")"
    wait_for 30 "binlog-gap audit event" audit_gap "$cut"
    ok $? "a binlog-gap audit event naming $cut is on $prefix.audit"
    workload 3 >/dev/null
    my "FLUSH BINARY LOGS" >/dev/null
    check_files "after the gap" "$resumed"
}
# shellcheck disable=SC2317,SC2329 # called through wait_for
audit_gap() { audit | grep '"event":"binlog-gap"' | grep -q "\"binlog_file\":\"$1\""; }

# The server keeps the file right after the cut one: the file numbers alone
# show no gap.
purge_gap 1
out="$(bkc list --source "$source_id" 2>&1)"
like "$out" "GAP: binlog $cut: archived up to [0-9]+ only, and not complete" \
    "bk list shows the GAP: $cut lacks its end" || diag "$out"
out="$(bkc verify --source "$source_id" 2>&1)"
is $? 4 "bk verify exits 4"
like "$out" "$cut: binlog gap: archived up to [0-9]+ only" "naming the gap" || diag "$out"
out="$(bkc binlog-get --source "$source_id" "$cut" "$dir/out/cut" 2>&1)"
is $? 4 "binlog-get of the file cut by the purge exits 4" || diag "$out"
like "$out" "archived up to offset [0-9]+ only: the archive goes on with a later file after a gap" \
    "saying the rest was lost"
[[ ! -e "$dir/out/cut" ]]
ok $? "and writes nothing"

# Whole files purged.
first_cut="$cut"
purge_gap 3
out="$(bkc list --source "$source_id" 2>&1)"
like "$out" "GAP: binlog $resumed: files between $cut and $resumed are missing" \
    "bk list shows the GAP of the purged files" || diag "$out"
like "$out" "GAP: binlog $first_cut: .*GAP: binlog $cut: archived up to [0-9]+ only" \
    "both gaps" || diag "$out"
out="$(bkc verify --source "$source_id" 2>&1)"
is $? 4 "bk verify exits 4"
like "$out" "binlog gap: files between $cut and $resumed are missing" "naming the missing files" || diag "$out"
workload 2 >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
mapfile -t files < <(closed_since "$resumed")
check_files "archiving goes on after the gaps" "${files[@]}"

# ------------------------------ connection lost before a file's GTID list, file purged
# The agent holds a file's first range until the file's GTID list, which
# follows the format description, has arrived.  A connection that breaks
# between the two (cut here by tests/lib/binlog_cut_proxy.py, between the
# agent and the server's socket), and a purge of that file before the agent
# is back, must be a purge gap like any other, not a file the agent waits
# for forever.
stop_agent TERM
rm -f "$dir/proxy.sock"
python3 "$ROOT/tests/lib/binlog_cut_proxy.py" "$dir/proxy.sock" "$MYSQL_UNIX_PORT" \
    "$dir/proxy.armed" "$dir/proxy.cut" "$dir/proxy.hold" 2>>"$dir/proxy.log" &
proxy_pid=$!
wait_for 10 "the proxy's socket" test -S "$dir/proxy.sock"
agent_conf "mysql_socket = $dir/proxy.sock" >"$dir/agent-proxy.conf"
start_agent "$dir/agent-proxy.conf"
ok $? "the agent streams through the cutting proxy"
echo fde >"$dir/proxy.armed"
held="$(current_file)"
my "FLUSH BINARY LOGS" >/dev/null
fde_cut="$(current_file)"
wait_for 30 "the cut after $fde_cut's format description" test -e "$dir/proxy.cut"
ok $? "the connection is cut after $fde_cut's format description, before its GTID list"
workload 2 >/dev/null # in $fde_cut: transactions the archive never sees
my "FLUSH BINARY LOGS" >/dev/null
resumed="$(current_file)"
workload 2 >/dev/null
out="$(my "PURGE BINARY LOGS TO '$resumed'")"
ok $? "PURGE BINARY LOGS TO '$resumed' while the agent waits to reconnect" || diag "$out"
rm -f "$dir/proxy.hold"
wait_for 60 "the purge of $fde_cut reported" grep -q "ERROR: the binlog file \"$fde_cut\", where the archive ends (offset 4), is no longer on the server: it was purged" "$alog"
ok $? "the agent reports $fde_cut purged from its start, as a gap" || diag "$(tail -n 5 "$alog")"
wait_for 30 "binlog-gap audit event" audit_gap "$fde_cut"
ok $? "with a binlog-gap audit event naming $fde_cut"
workload 2 >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
check_files "after the gap at a file's start" "$resumed"
out="$(bkc list --source "$source_id" 2>&1)"
like "$out" "GAP: binlog $resumed: files between $held and $resumed are missing" \
    "bk list shows the GAP of $fde_cut" || diag "$out"

# ------------------------------ a file archived to its end, purged while the agent is down
# A clean shutdown ends the file with STOP.  The agent that archived the
# file to its end (the connection cut right after the STOP, and the agent
# stopped before it saw the next file) resumes at that end; the file purged
# meanwhile is not a gap: nothing of it is missing.
gap_lines() { bkc list --source "$source_id" 2>&1 | grep -c 'GAP'; }
stop_gaps="$(gap_lines)"
stopped="$(current_file)"
workload 2 >/dev/null
rm -f "$dir/proxy.cut"
echo stop >"$dir/proxy.armed"
"$SERVICES" stop mariadb >/dev/null 2>&1 && "$SERVICES" start mariadb >/dev/null 2>&1
ok $? "mariadbd restarted cleanly: $stopped ends with STOP"
wait_for 90 "the cut after $stopped's STOP" test -e "$dir/proxy.cut"
ok $? "the connection is cut after $stopped's STOP, before the next file"
wait_for 30 "$stopped archived to its end" all_archived "$stopped"
ok $? "$stopped is archived to its end"
stop_agent TERM
ok $? "the agent stops before it sees the next file"
after_stop="$(current_file)"
workload 2 >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
out="$(my "PURGE BINARY LOGS TO '$after_stop'")"
ok $? "PURGE BINARY LOGS TO '$after_stop' ($stopped, archived to its end)" || diag "$out"
purge_errors="$(grep -c 'is no longer on the server: it was purged' "$alog")"
rm -f "$dir/proxy.hold"
start_agent "$dir/agent-proxy.conf"
ok $? "the agent starts again"
wait_for 30 "the purged file seen as complete" grep -qF "binlog \"$stopped\" was archived to its end before it was purged; streaming continues with \"$after_stop\"" "$alog"
ok $? "the agent says $stopped was archived to its end, and goes on with $after_stop" || diag "$(tail -n 5 "$alog")"
is "$(grep -c 'is no longer on the server: it was purged' "$alog")" "$purge_errors" "no purge ERROR"
audit_gap "$stopped"
isnt $? 0 "no binlog-gap audit event naming $stopped"
check_files "after the purge of a file archived to its end" "$after_stop"
is "$(gap_lines)" "$stop_gaps" "bk list shows no new gap"
stop_agent TERM
kill "$proxy_pid" 2>/dev/null
wait "$proxy_pid" 2>/dev/null
proxy_pid=""
start_agent
ok $? "the agent streams from the server's socket again"

# ------------------------------ a file purged after the archive's end: always a gap
# The agent stopped caught up at the end of the file the server writes; the
# server then logs an Incident event (LOST_EVENTS: a multi-row statement on
# a MyISAM table that overflows max_binlog_stmt_cache_size applies rows the
# binlog never gets), rotates and purges that file.  The Incident has no
# GTID: the next file's GTID list shows no transaction missing, yet the
# archive lacks the server's record of a loss, so the purged part is a gap.
# (Transactions written after the archive's end and purged unseen are a
# gap too: purge_gap 1 above.)
gaps_before="$(gap_lines)"
caught="$(current_file)"
my "CREATE TABLE $db.lost (id INT PRIMARY KEY, v TEXT) ENGINE=MyISAM" >/dev/null
workload 2 >/dev/null
caught_end="$(my 'SHOW MASTER STATUS' | cut -f2)"
# shellcheck disable=SC2317,SC2329 # called through wait_for
archived_to() {
    [[ "$(bkc list --source "$source_id" --json 2>/dev/null |
        json_get "print(max([f['archived_to'] for f in d['sources'][0]['binlog_files'] if f['name'] == '$1'] or [0]))")" == "$2" ]]
}
wait_for 30 "$caught archived up to $caught_end" archived_to "$caught" "$caught_end"
ok $? "the agent caught up at $caught:$caught_end"
stop_agent TERM
ok $? "the agent stops there"
gtids_before="$(my 'SELECT @@global.gtid_binlog_pos')"
my "SET GLOBAL max_binlog_stmt_cache_size = 4096" >/dev/null
out="$(my "USE $db; SET SESSION binlog_format = ROW;
    INSERT INTO lost SELECT seq, REPEAT('x', 1000) FROM seq_1_to_100")"
like "$out" "ERROR 1705" "a multi-row INSERT on MyISAM overflows the statement cache" ||
    diag "$out"
my "SET GLOBAL max_binlog_stmt_cache_size = $old_stmt_cache" >/dev/null
incident_at="$(mariadb-binlog "$binlog_dir/$caught" 2>/dev/null | grep -B2 '^# Incident: LOST_EVENTS' | sed -n 's/^# at //p' | tail -n 1)"
[[ "$incident_at" =~ ^[0-9]+$ ]]
ok $? "$caught holds an Incident event after the archive's end (at $incident_at)" ||
    diag "$(mariadb-binlog "$binlog_dir/$caught" 2>&1 | tail -n 8)"
gtids_after="$(my 'SELECT @@global.gtid_binlog_pos')"
is "$gtids_after" "$gtids_before" "... which carries no GTID: the server's GTID state is unchanged"
my "FLUSH BINARY LOGS" >/dev/null
after_caught="$(current_file)"
# The stopped agent's dump thread holds the file until it notices (PURGE
# then leaves it, with a warning).
# shellcheck disable=SC2317,SC2329 # called through wait_for
caught_purged() {
    my "PURGE BINARY LOGS TO '$after_caught'" >/dev/null &&
        ! my 'SHOW BINARY LOGS' | cut -f1 | grep -qx -- "$caught"
}
wait_for 30 "$caught purged" caught_purged
ok $? "FLUSH BINARY LOGS, PURGE BINARY LOGS TO '$after_caught': $caught's Incident was not archived" ||
    diag "$(my 'SHOW BINARY LOGS')"
start_agent
ok $? "the agent starts again"
wait_for 30 "the purged part reported as a gap" grep -qF "ERROR: the binlog file \"$caught\", where the archive ends (offset $caught_end), is no longer on the server: it was purged before bk archived its end; the GTID list of \"$after_caught\" shows no transaction missing, but an Incident event" "$alog"
ok $? "the agent says the purged part of $caught is a gap, though $after_caught's GTID list shows no transaction missing" ||
    diag "$(tail -n 5 "$alog")"
wait_for 30 "binlog-gap audit event" audit_gap "$caught"
ok $? "with a binlog-gap audit event naming $caught"
workload 2 >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
check_files "after the purge of a file caught up to its end" "$after_caught"
is "$(gap_lines)" "$((gaps_before + 1))" "bk list shows the new gap"
out="$(bkc list --source "$source_id" 2>&1)"
like "$out" "GAP: binlog $caught: archived up to $caught_end only" \
    "naming $caught, archived up to $caught_end only" || diag "$out"
out="$(bkc binlog-get --source "$source_id" "$caught" "$dir/out/$caught" 2>&1)"
is $? 4 "binlog-get of $caught exits 4: its end is lost" || diag "$out"
my "DROP TABLE $db.lost" >/dev/null

# ---------------------------------------------------------------- mariadbd restarted
# Cleanly: the file ends with STOP, the agent reconnects without calling it
# an error, the next file follows.  Killed: the file ends without STOP (the
# agent says so, loudly), and is archived as the replication stream serves
# it ("mariadb-binlog --read-from-remote-server --raw"), which differs from
# the file on disk only in the in-use flag a crash leaves set.

gaps() { bkc list --source "$source_id" 2>&1 | grep -c 'GAP'; }
gaps_before="$(gaps)"
mark="$(current_file)"
batches 1 5 >/dev/null
workload 5 >/dev/null
"$SERVICES" stop mariadb >/dev/null 2>&1 && "$SERVICES" start mariadb >/dev/null 2>&1
ok $? "mariadbd restarted cleanly during streaming"
wait_for 60 "the agent reconnects" grep -q 'the server closed the replication connection' "$alog"
ok $? "the agent sees the server go away, as a warning, and reconnects"
unlike "$(grep -ai 'got signal\|segfault\|assertion' "$BK_SERVICES_DIR/mariadb/error.log")" '.' \
    "mariadbd's error log shows no crash"
workload 5 >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
mapfile -t files < <(closed_since "$mark")
check_files "across a clean server restart" "${files[@]}"
is "$(gaps)" "$gaps_before" "across a clean server restart: no new gap"
audit | grep -q '"event":"binlog-unclosed-file"'
isnt $? 0 "a clean restart raises no binlog-unclosed-file event"

crashed="$(current_file)"
workload 5 >/dev/null
server_pid="$(cat "$BK_SERVICES_DIR/mariadb/mariadbd.pid")"
kill -9 "$server_pid"
wait_for 30 "mariadbd gone" bash -c "! kill -0 $server_pid"
"$SERVICES" start mariadb >/dev/null 2>&1
ok $? "mariadbd restarted after kill -9"
wait_for 60 "the unclosed file reported" grep -q "binlog \"$crashed\" ends at offset [0-9]* without a ROTATE or STOP" "$alog"
ok $? "the agent reports that $crashed ends without ROTATE or STOP"
unclosed() { audit | grep '"event":"binlog-unclosed-file"' | grep -q "\"binlog_file\":\"$crashed\""; }
wait_for 30 "the audit event" unclosed
ok $? "... with a binlog-unclosed-file audit event"
workload 5 >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
wait_for 90 "$crashed complete in the archive" bkc binlog-get --source "$source_id" "$crashed" "$dir/out/$crashed.crashed"
ok $? "the crashed file is complete in the archive (a later file follows it)"
mariadb-binlog --no-defaults --read-from-remote-server --raw --protocol=TCP -h 127.0.0.1 \
    -P "$MYSQL_TCP_PORT" -u root --result-file="$dir/remote-" "$crashed" 2>"$dir/remote.err"
cmp -s "$dir/out/$crashed.crashed" "$dir/remote-$crashed"
ok $? "... byte-identical to mariadb-binlog --read-from-remote-server --raw" ||
    diag "$(cmp "$dir/out/$crashed.crashed" "$dir/remote-$crashed" 2>&1; cat "$dir/remote.err")"
is "$(gaps)" "$gaps_before" "across a server crash: no new gap"
after_crashed="$(closed_since "$crashed" | sed -n 2p)"
is "$(previous_meta "$after_crashed")" \
    "previous-end=$crashed:$(stat -c %s "$dir/out/$crashed.crashed") previous-closed=none" \
    "$after_crashed's first range says $crashed ended there without ROTATE or STOP"

# ---------------------------------------------------------------- a file cut short mid-event
# What a crash leaves when it stops the server in the middle of writing an
# event: the file ends inside it, and the server goes on in a new file.
# Made here by cutting the STOP event a clean shutdown wrote (the agent,
# stopped before, never saw it).  The server refuses to stream past it; the
# agent archives the file up to its last whole event, as a file a crash
# left without ROTATE or STOP, and goes on with the next file instead of
# retrying the refusal forever.
torn="$(current_file)"
workload 3 >/dev/null
wait_for 30 "the workload archived" archive_holds "$torn"
stop_agent TERM
"$SERVICES" stop mariadb >/dev/null 2>&1
torn_size="$(stat -c %s "$binlog_dir/$torn")"
truncate -s "$((torn_size - 10))" "$binlog_dir/$torn"
ok $? "$torn cut 10 bytes short (inside its STOP event)"
"$SERVICES" start mariadb >/dev/null 2>&1
ok $? "mariadbd starts again"
after_torn="$(current_file)"
start_agent
ok $? "the agent starts again"
wait_for 60 "the cut file reported" grep -qF "binlog \"$torn\" is cut short in the middle of an event" "$alog"
ok $? "the agent reports $torn cut short, and goes on" || diag "$(tail -n 5 "$alog")"
torn_unclosed() { audit | grep '"event":"binlog-unclosed-file"' | grep -q "\"binlog_file\":\"$torn\""; }
wait_for 30 "the audit event" torn_unclosed
ok $? "... with a binlog-unclosed-file audit event naming $torn"
audit_gap "$torn"
isnt $? 0 "... and no binlog-gap event"
workload 3 >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
check_files "after the file cut short" "$after_torn"
rm -f "$dir/out/$torn.torn"
bkc binlog-get --source "$source_id" "$torn" "$dir/out/$torn.torn" >/dev/null 2>&1
ok $? "$torn is complete in the archive (a later file follows it)"
torn_got="$(stat -c %s "$dir/out/$torn.torn" 2>/dev/null || echo 0)"
ok "$( ((torn_got > 4 && torn_got < torn_size - 10)); echo $?)" \
    "... up to its last whole event ($torn_got of $((torn_size - 10)) bytes)"
cmp -s "$dir/out/$torn.torn" <(head -c "$torn_got" "$binlog_dir/$torn")
ok $? "... byte-identical to the file's first $torn_got bytes"
is "$(gaps)" "$gaps_before" "a file cut short: no new gap"

# ---------------------------------------------------------------- stopped inside a transaction, then a crash
# The archive ends inside a transaction (its GTID event archived, its XID
# not) that a crash of mariadbd cut: recovery rolls it back, and the next
# file's GTID list does not name it.  (On 10.11 the server streams a
# transaction of the file it writes only once whole; after a crash in the
# middle of writing a large one, it streams the crashed file to its cut
# end, and an agent stopped while it archives that part resumes inside the
# transaction.)  The range ending inside it names it in gtid-list=; the
# agent resuming there took the next list for transactions missing (an
# ERROR, a gap no restore crosses).  It must take the GTID back at the next
# file's start, as one streaming through the crash does.  Made here by
# cutting the file after the first event past the archive's end, still
# inside the transaction, while mariadbd is killed (it had written the
# transaction whole: its rows stay in InnoDB, which the stream does not
# see).  With range_interval 1h, ranges go out every 32 KiB only, so the
# archive's end falls inside a transaction of many row events.
stop_agent TERM
start_agent "$dir/agent-slow.conf"
ok $? "the agent restarts with range_interval 1h"
gaps_before="$(gaps)"
open_file="$(current_file)"
# archived_end: where the agent last said the archive ends in $open_file.
archived_end() {
    local f o
    read -r f o _ <"$dir/state/binlog.position" && [[ "$f" == "$open_file" ]] && echo "$o"
}
# shellcheck disable=SC2317,SC2329 # called through wait_for
archived_near() { local o; o="$(archived_end)" && ((o > $1)); }
# The open file's own Binlog_checkpoint first (MariaDB writes it once the
# file before is committed in the engine, which may come after the
# transaction below).  Cut off with the transaction, it leaves the file's
# only checkpoint naming the file before, and MariaDB's crash recovery scans
# that one too: in 2 of 12 runs (10.11.19) the server's binlog state then
# came back two transactions short of the archive, so that the next file's
# GTID list did not follow it, and the agent rightly reported a gap.  Seen
# only when the checkpoint came after the transaction; not what is tested.
own_checkpoint() {
    my "SHOW BINLOG EVENTS IN '$open_file'" |
        awk -F'\t' -v f="$open_file" '$3 == "Binlog_checkpoint" && $6 == f { found = 1 } END { exit !found }'
}
wait_for 30 "$open_file's own binlog checkpoint" own_checkpoint
ok $? "$open_file has its own binlog checkpoint before the transaction"
open_at=0
for attempt in 1 2 3; do
    txn_start="$(my 'SHOW MASTER STATUS' | cut -f2)"
    open_gtid="$(my "INSERT INTO $db.t (n, s, lb) SELECT seq, 'open', REPEAT('o', 3000) FROM $db.seq_1_to_100;
                     SELECT @@last_gtid")"
    txn_end="$(my 'SHOW MASTER STATUS' | cut -f2)"
    # All but the last (under 32 KiB) of it sent.
    wait_for 30 "the transaction archived but its tail" archived_near "$((txn_end - 32768 - 16384))"
    sleep 0.5
    open_at="$(archived_end)"
    ((txn_start < open_at && open_at < txn_end)) && break
done
stop_agent KILL
ok "$( ((txn_start < open_at && open_at < txn_end)); echo $?)" \
    "the agent SIGKILLed with the archive inside $open_gtid ($open_file $txn_start..$txn_end, archived up to $open_at)"
IFS=$'\t' read -r _ _ open_type _ open_next _ < <(my "SHOW BINLOG EVENTS IN '$open_file' FROM $open_at LIMIT 1")
[[ "$open_type" != Xid && "$open_next" =~ ^[0-9]+$ ]] || open_next="$open_at"
server_pid="$(cat "$BK_SERVICES_DIR/mariadb/mariadbd.pid")"
kill -9 "$server_pid"
wait_for 30 "mariadbd gone" bash -c "! kill -0 $server_pid"
truncate -s "$open_next" "$binlog_dir/$open_file"
ok $? "mariadbd killed -9, $open_file cut at $open_next, inside $open_gtid ($open_type event at $open_at)"
"$SERVICES" start mariadb >/dev/null 2>&1
ok $? "mariadbd restarted"
after_open="$(current_file)"
unlike "$(my "SELECT @@global.gtid_binlog_state")" "(^|,)$open_gtid(,|\$)" \
    "... its binlog state does not name $open_gtid (recovery rolled it back)"
errors_before="$(grep -c 'starts with the GTID list' "$alog")"
start_agent
ok $? "the agent starts again, at the archive's end inside $open_gtid"
wait_for 60 "$open_file reported unclosed" grep -q "binlog \"$open_file\" ends at offset [0-9]* without a ROTATE or STOP" "$alog"
ok $? "it reads $open_file to its end, which has no ROTATE or STOP" || diag "$(tail -n 5 "$alog")"
workload 2 >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
check_files "after the crash with the agent down inside a transaction" "$after_open"
is "$(grep -c 'starts with the GTID list' "$alog")" "$errors_before" \
    "no ERROR: $after_open's GTID list follows the archive, $open_gtid taken back" ||
    diag "$(grep 'starts with the GTID list' "$alog" | tail -n 1)
attempt $attempt: $open_file $txn_start..$txn_end, archived to $open_at, cut at $open_next ($open_type)
after the restart: gtid_binlog_state $(my "SELECT @@global.gtid_binlog_state")
$(my "SHOW BINLOG EVENTS IN '$open_file'" | awk -F'\t' '$3 ~ /Gtid|Xid/ {print $2, $3, $5, $6}' | tail -n 12)
$after_open: $(my "SHOW BINLOG EVENTS IN '$after_open' LIMIT 4" | cut -f2,3,5,6 | tr '\n' ' ')
$(my "SHOW BINARY LOGS" | tail -n 4 | tr '\n' ' ')
$(ls -la "$binlog_dir" | tail -n 5)
$(grep -a 'Recover\|recover\|binlog' "$BK_SERVICES_DIR/mariadb/error.log" | tail -n 8)"
is "$(gaps)" "$gaps_before" "... and no gap in bk list"

# ---------------------------------------------------------------- the broker down 30 s
# The agent cannot send: it retries the same range and reads no further
# (the server keeps the binlog); nothing is lost or skipped once Kafka is
# back.

mark="$(current_file)"
gaps_before="$(gaps)"
"$SERVICES" stop kafka >/dev/null 2>&1
ok $? "Kafka stopped"
down_at=$SECONDS
batches 2 5 >/dev/null
workload 5 >/dev/null
wait_for 40 "the agent to notice" grep -q 'sending binlog range' "$alog"
ok $? "the agent reports that it cannot send"
sleep $((30 - (SECONDS - down_at) > 0 ? 30 - (SECONDS - down_at) : 0))
"$SERVICES" start kafka >/dev/null 2>&1
ok $? "Kafka back after $((SECONDS - down_at)) s"
# Audit events the shipper had in flight when Kafka stopped fail after
# kafka_timeout (30 s, and 2 s of slack): it then exits 1, the offsets of
# their objects held, and systemd starts it again (Restart=on-failure, README
# troubleshooting); so does this test.  What it archives is checked below.
sleep 3
if ! kill -0 "$shipper_pid" 2>/dev/null; then
    wait "$shipper_pid"
    is $? 1 "the shipper, its audit events undelivered, exited 1 to be started again"
    grep -q 'stopping: the error above must not be skipped' "$slog"
    ok $? "saying why" || diag "$(tail -n 5 "$slog")"
    start_shipper
fi
my "FLUSH BINARY LOGS" >/dev/null
mapfile -t files < <(closed_since "$mark")
check_files "across 30 s without Kafka" "${files[@]}"
all_archived "${files[@]}" ||
    diag "shipper $(kill -0 "$shipper_pid" 2>/dev/null && echo running || echo gone): $(tail -n 8 "$slog")"
is "$(gaps)" "$gaps_before" "across 30 s without Kafka: no new gap"

# ---------------------------------------------------------------- another server's lower GTID in the domain
# Without gtid_strict_mode a server can log in a domain below another
# server's sequence numbers (a failover).  A file that ends with it: the
# agent, stopped there, resumes inside the file (the server's GTID state
# there is that lower GTID, the domain's last), and the next file's GTID
# list names both servers, the lower one last.  Neither is a gap.  (The
# test server runs in gtid_strict_mode, which would refuse the GTID: it is
# turned off for that one statement.)
discontinuities() { grep -c 'starts with the GTID list' "$alog"; }
discontinuities_before="$(discontinuities)"
gaps_before="$(gaps)"
mark="$(current_file)"
other_server=$((70000 + $$ % 1000))
out="$(my "SET GLOBAL gtid_strict_mode = 0; SET SESSION server_id = $other_server;
           SET SESSION gtid_seq_no = 3; INSERT INTO $db.t (n, s) VALUES (-1, 'failover');
           SET GLOBAL gtid_strict_mode = $old_strict")"
ok $? "a transaction logged in domain 0 by another server, below the domain's numbers" || diag "$out"
like "$(my "SELECT @@global.gtid_binlog_pos")" "^0-$other_server-3\$" "... the domain's last GTID" ||
    diag "$(my "SELECT @@global.gtid_binlog_state")"
sleep 1
stop_agent TERM
my "FLUSH BINARY LOGS" >/dev/null
start_agent
ok $? "the agent resumes inside $mark after the lower GTID"
workload 2 >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
mapfile -t files < <(closed_since "$mark")
check_files "after another server's lower GTID, across an agent restart" "${files[@]}"
is "$(discontinuities)" "$discontinuities_before" "no GTID discontinuity reported for the next file's GTID list"
is "$(gaps)" "$gaps_before" "... and no gap in bk list"
[[ "$(grep -c "where the archive ends, the server's GTID state is" "$alog")" == 0 ]]
ok $? "... nor a different GTID state where the agent resumed"

# ---------------------------------------------------------------- RESET MASTER while the agent is stopped
# The archive ends with a ROTATE (the agent, sending a range only at a
# file's end, is killed with the next file's start unsent), so the agent
# resumes at the next file's start; the server, reset, writes that name
# again before the agent is back.  The new file's GTID list does not follow
# the archive: the agent says so and marks a gap there, which bk list and
# bk verify show.

stop_agent TERM
start_agent "$dir/agent-slow.conf"
ok $? "the agent restarts with range_interval 1h"
last="$(current_file)"
workload 2 >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
wait_for 90 "$last archived to its ROTATE" all_archived "$last"
sleep 0.3
stop_agent KILL
next="$(printf '%s.%06d' "${last%.*}" "$((10#${last##*.} + 1))")"
out="$(my "RESET MASTER")"
ok $? "agent killed after $last's ROTATE; RESET MASTER" || diag "$out"
workload 3 >/dev/null
while [[ "$(current_file)" < "$next" ]]; do
    my "FLUSH BINARY LOGS" >/dev/null || break
done
is "$(current_file)" "$next" "the server writes $next again, in another history"
start_agent
ok $? "the agent starts again after the reset"
wait_for 30 "the discontinuity reported" grep -q "binlog \"$next\" starts with the GTID list" "$alog"
like "$(cat "$alog")" "ERROR: binlog \"$next\" starts with the GTID list [0-9,-]+, but the archive reached [0-9,-]+: .*marked with a gap before \"$next\"" \
    "the agent logs a loud ERROR naming $next and the gap mark"
# shellcheck disable=SC2317,SC2329 # called through wait_for
audit_discontinuity() { audit | grep '"event":"binlog-gtid-discontinuity"' | grep -q "\"binlog_file\":\"$next\""; }
wait_for 30 "binlog-gtid-discontinuity audit event" audit_discontinuity
ok $? "a binlog-gtid-discontinuity audit event naming $next is on $prefix.audit"
workload 3 >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
wait_for 90 "$next archived" all_archived "$next"
out="$(bkc list --source "$source_id" 2>&1)"
like "$out" "GAP: binlog $next: the archive does not go on into it from $last: the agent marked it gap-before=$next:4" \
    "bk list shows the GAP between the two histories" || diag "$out"
out="$(bkc verify --source "$source_id" 2>&1)"
is $? 4 "bk verify exits 4"
like "$out" "$next: binlog gap: the archive does not go on into it from $last" "naming the gap" || diag "$out"

# ---------------------------------------------------------------- RESET MASTER, the archive ending inside a file
# The archive ends inside a file; the agent is killed; RESET MASTER; the
# server writes that name again, past where the archive ends.  The name
# cannot tell (the server's newest file is not older than the archive's),
# so the agent asks the server for its GTID state at that position
# (BINLOG_GTID_POS) and refuses to stream a second history under the same
# name.  Both histories write the same events from the file's start, so
# the position is an event boundary in both and the server can answer:
# a GTID list with as many entries, one binlog checkpoint (the file
# before is empty, so none names it; the checkpoint is written by a
# background thread, hence the pause), then transactions of the same
# sizes.
my "FLUSH BINARY LOGS" >/dev/null
sleep 1
my "FLUSH BINARY LOGS" >/dev/null
inside="$(current_file)"
listed="$(my 'SELECT @@global.gtid_binlog_state')" # $inside's GTID list
sleep 1
workload 5 >/dev/null
wait_for 30 "a range of $inside archived" archive_holds "$inside"
sleep 1.5 # range_interval: the rest of the file's events go out too
stop_agent KILL
out="$(my "RESET MASTER")"
ok $? "agent killed with the archive inside $inside; RESET MASTER" || diag "$out"
# A GTID list of the same size in the new $inside: one entry per domain
# and server of the old one.
for gtid in ${listed//,/ }; do
    IFS=- read -r domain server _ <<<"$gtid"
    my "SET SESSION gtid_domain_id = $domain; SET SESSION server_id = $server;
        INSERT INTO $db.t (n, s) VALUES (0, 'second history')" >/dev/null
done
my "FLUSH BINARY LOGS" >/dev/null
sleep 1
while [[ "$(current_file)" < "$inside" ]]; do
    my "FLUSH BINARY LOGS" >/dev/null || break
done
sleep 1
workload 10 >/dev/null
is "$(current_file)" "$inside" "the server writes $inside again, in another history, past the archive's end"
# Which of the two refusals comes depends on whether the background
# checkpoint event landed where it did in the first history: if it did, the
# position is an event boundary and the GTID states differ; if not, no
# event starts there (BINLOG_GTID_POS is NULL).  Both say the server's file
# is not the one archived (test_binlog_gtids decides both cases).
refusal="where the archive ends(, the server's GTID state is| \\(GTID state [0-9,-]+\\), the server cannot place the position)"
refusals="$(grep -cE "$refusal" "$alog")"
"$AGENT" --config "$dir/agent.conf" >>"$alog" 2>&1 &
agent_pid=$!
# shellcheck disable=SC2317,SC2329 # called through wait_for
refused_inside() { (($(grep -cE "$refusal" "$alog") > refusals)); }
wait_for 30 "the agent to refuse the other history" refused_inside
like "$(grep -E "$refusal" "$alog" | tail -1)" \
    "at $inside:[0-9]+, where the archive ends(, the server's GTID state is [0-9-]+, but the archive reached [0-9,-]+ there: the server's \"$inside\"| \\(GTID state [0-9,-]+\\), the server cannot place the position: no event of its \"$inside\" starts there \\(BINLOG_GTID_POS is NULL\\), so it) is not the file archived" \
    "resuming inside $inside: the agent checks the server's state at that position and refuses, naming the file" ||
    diag "$(tail -n 15 "$alog")"
# shellcheck disable=SC2317,SC2329 # called through wait_for
audit_reset() { audit | grep '"event":"binlog-reset"' | grep -q "\"binlog_file\":\"$inside\""; }
wait_for 30 "binlog-reset audit event" audit_reset
ok $? "a binlog-reset audit event naming $inside is on $prefix.audit"
streams_before="$(streaming_count)"
sleep 3
is "$(streaming_count)" "$streams_before" "... and it streams nothing of the other history"

# ---------------------------------------------------------------- RESET MASTER, the archive's end on no event of the new file
# As above, but the new history has no event starting where the archive
# ends: one row event runs across that position.  The server cannot place
# it (BINLOG_GTID_POS is NULL).  The agent used to go on to the dump, which
# failed at that position on every retry (with a binlog-gap audit event
# each time, never a binlog-reset); it must refuse as for a GTID state that
# differs: an ERROR, and one binlog-reset audit event however often it
# retries.  A second source (its own source_id and state_dir, as the
# refusal's hint says) gives an archive ending inside a file of this
# history.
stop_agent TERM
source_b="$source_id-b"
(source_id="$source_b" && agent_conf "state_dir = $dir/state-b") >"$dir/agent-b.conf"
start_agent "$dir/agent-b.conf"
ok $? "an agent with a new source_id ($source_b) streams the other history"
my "FLUSH BINARY LOGS" >/dev/null
unplaced="$(current_file)"
workload 5 >/dev/null
# shellcheck disable=SC2317,SC2329 # called through wait_for
archive_b_holds() {
    local source_id="$source_b" # what archive_holds lists
    archive_holds "$1"
}
wait_for 30 "a range of $unplaced archived" archive_b_holds "$unplaced"
sleep 1.5 # range_interval: the rest of the file's events go out too
stop_agent TERM
read -r state_file end _ <"$dir/state-b/binlog.position"
is "$state_file" "$unplaced" "agent stopped with the archive of $source_b inside $unplaced (at $end)"
out="$(my "RESET MASTER")"
ok $? "RESET MASTER" || diag "$out"
while [[ "$(current_file)" < "$unplaced" ]]; do
    my "FLUSH BINARY LOGS" >/dev/null || break
done
# One row far larger than the archive's end: its row event starts near the
# file's start and ends past that position.
out="$(my "INSERT INTO $db.t (n, s, lb) VALUES (0, 'unplaced', REPEAT('u', $((end + 65536))))")"
ok $? "a row of $((end + 65536)) bytes written into the new $unplaced" || diag "$out"
is "$(current_file)" "$unplaced" "the server writes $unplaced again, in another history"
is "$(my "SELECT BINLOG_GTID_POS('$unplaced', $end) IS NULL")" 1 \
    "... in which BINLOG_GTID_POS('$unplaced', $end) is NULL: no event starts there" ||
    diag "$(my "SHOW BINLOG EVENTS IN '$unplaced'")"
unplaced_refusal="where the archive ends \\(GTID state [0-9,-]+\\), the server cannot place the position"
refusals="$(grep -Ec "$unplaced_refusal" "$alog")"
streams_before="$(streaming_count)"
"$AGENT" --config "$dir/agent-b.conf" >>"$alog" 2>&1 &
agent_pid=$!
# shellcheck disable=SC2317,SC2329 # called through wait_for
refused_unplaced() { (($(grep -Ec "$unplaced_refusal" "$alog") > refusals + ${1:-0})); }
wait_for 30 "the agent to refuse a position the server cannot place" refused_unplaced
like "$(grep -E "$unplaced_refusal" "$alog" | tail -1)" \
    "ERROR: at $unplaced:$end, $unplaced_refusal: no event of its \"$unplaced\" starts there \\(BINLOG_GTID_POS is NULL\\), so it is not the file archived: RESET MASTER \\(or a new server\\) reused the binlog names.* HINT: .*Give the agent a new source_id and take a snapshot" \
    "the agent refuses $unplaced:$end, naming the archive's state, why and what to do" ||
    diag "$(tail -n 15 "$alog")"
resets_b() { audit | grep '"event":"binlog-reset"' | grep "\"source\":\"$source_b\"" | grep -c "\"binlog_file\":\"$unplaced\""; }
# shellcheck disable=SC2317,SC2329 # called through wait_for
audit_reset_b() { (($(resets_b) > 0)); }
wait_for 30 "binlog-reset audit event of $source_b" audit_reset_b
ok $? "a binlog-reset audit event naming $unplaced is on $prefix.audit"
like "$(audit | grep '"event":"binlog-reset"' | grep "\"source\":\"$source_b\"" | head -n 1)" \
    "\"binlog_pos\":$end,.*\"gtid\":\"[0-9,-]+\"" "... with the position and the archive's GTID state there"
wait_for 30 "the agent to retry the refusal" refused_unplaced 1
ok $? "the agent retries, refusing again"
is "$(resets_b)" 1 "... without another binlog-reset event"
audit | grep '"event":"binlog-gap"' | grep -q "\"source\":\"$source_b\""
isnt $? 0 "... nor a binlog-gap event"
is "$(streaming_count)" "$streams_before" "... and it streams nothing of the other history"

# ---------------------------------------------------------------- no plaintext

timeout 60 kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.binlog" -o beginning -e -q \
    -f '%k %h %s\n' >"$dir/topic.dump" 2>/dev/null
ok $? "the binlog topic can be read with kcat ($(stat -c %s "$dir/topic.dump") bytes)"
grep -aq "$MARKER" "$dir/out/$first_file"
ok $? "(the marker is in the rebuilt file)"
grep -aq "$MARKER" "$dir/topic.dump"
isnt $? 0 "the plaintext marker is in no message of $prefix.binlog (keys, headers, values)"
grep -raq "$MARKER" "$repo"
isnt $? 0 "nor in any repository file"
grep -aq "$MARKER" "$alog" "$slog" <(audit)
isnt $? 0 "nor in the agent's or shipper's log, or the audit topic"

stop_agent TERM
is $? 0 "the agent stops cleanly"
[[ ! -e "$BK_MYSQL_AGENT_SOCKET" ]]
ok $? "and removes its control socket"

# ---------------------------------------------------------------- servers the agent refuses
# A server whose binlog is encrypted (encrypt_binlog, keys from the
# file_key_management plugin) and one with no binlog at all: the agent
# streams nothing from either, and says why in an ERROR naming the setting
# (again at every retry, so a server fixed meanwhile is picked up).  Each is
# a fresh server of its own, beside the shared one.
OTHER_PORT=$((MYSQL_TCP_PORT + 2))
other_services() { BK_SERVICES_DIR="$dir/other" BK_MYSQL_PORT="$OTHER_PORT" "$SERVICES" "$@"; }
# refused_by SETTING PATTERN MARIADBD-OPTIONS
refused_by() {
    other_services stop mariadb >/dev/null 2>&1
    rm -rf "$dir/other/mariadb" "$dir/other-state"
    BK_MARIADB_ARGS="$3" other_services start mariadb >>"$dir/other-start.log" 2>&1
    ok $? "a server with $1 starts" || diag "$(tail -n 5 "$dir/other-start.log")"
    agent_conf "mysql_socket = $dir/other/mariadb/mysqld.sock" \
        "control_socket = $dir/other-agent.sock" "state_dir = $dir/other-state" \
        >"$dir/agent-other.conf"
    : >"$dir/agent-other.log"
    "$AGENT" --config "$dir/agent-other.conf" >>"$dir/agent-other.log" 2>&1 &
    agent_pid=$!
    wait_for 30 "the refusal of $1" grep -Eq "$2" "$dir/agent-other.log"
    ok $? "the agent refuses a server with $1, naming it" || diag "$(tail -n 5 "$dir/agent-other.log")"
    grep -q 'streaming the binlog from' "$dir/agent-other.log"
    isnt $? 0 "... and streams nothing from it"
    stop_agent TERM
}
printf '1;%s\n' "$(openssl rand -hex 32)" >"$dir/binlog-keys.txt"
refused_by "encrypt_binlog ON" "ERROR: the server has encrypt_binlog ON" \
    "--plugin-load-add=file_key_management.so --file-key-management-filename=$dir/binlog-keys.txt --encrypt-binlog=ON"
refused_by "log_bin OFF" "ERROR: the server has log_bin OFF" "--skip-log-bin"
other_services stop mariadb >/dev/null 2>&1

done_testing
