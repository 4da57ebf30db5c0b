#!/usr/bin/env bash
# bk-mysql-agent against the real MariaDB and Kafka: RESET MASTER under a
# regular workload, where the GTID state cannot tell the histories apart.
# RESET MASTER restarts GTID numbering at 1 and writes the file names again;
# with transactions of one size, the new file has an event where the
# archive ends, with the archive's GTID state there (BINLOG_GTID_POS
# agrees).  The file's creation (its format description) differs, and the
# agent must refuse to splice the second history into the archived file:
#   the agent stopped inside a file, RESET MASTER, the same workload: an
#   ERROR, a binlog-reset audit event, nothing of the new history streamed
#   (the archive ends where it ended), and each range saying which file it
#   is of (file-created=); the same with the position only in the local
#   state file (Kafka lost the source's ranges: here another topic
#   prefix); RESET MASTER while the agent streams: the same refusal at
#   its reconnection.
#
# Expects MariaDB and Kafka from scripts/services.  Resets the server's
# binlog (RESET MASTER).

set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=SCRIPTDIR/../lib/tap.sh
source "$ROOT/tests/lib/tap.sh"
# shellcheck source=SCRIPTDIR/../lib/mariadb.sh
source "$ROOT/tests/lib/mariadb.sh"
SERVICES="$ROOT/scripts/services"
BK="$ROOT/cli/bk"
AGENT="$ROOT/mysql_agent/bk-mysql-agent"

env_lines="$("$SERVICES" env mariadb kafka)" || bail_out "'scripts/services env' failed"
eval "$env_lines"
"$SERVICES" status mariadb kafka >/dev/null 2>&1 ||
    bail_out "mariadb and kafka must run: scripts/services start mariadb kafka"
for prog in "$BK" "$AGENT"; do
    [[ -x "$prog" ]] || bail_out "$prog is not built: make tests"
done

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-binlog-reset-test.XXXXXX")"
chmod 755 "$dir"
prefix="bkit-reset-$$-$RANDOM"
source_id="mdb-reset-$$-$RANDOM"
db="bk_reset_$$"
alog="$dir/agent.log"
agent_pid=""

# shellcheck disable=SC2317,SC2329 # called by the trap
cleanup() {
    if [[ -n "$agent_pid" ]]; then
        kill -KILL "$agent_pid" 2>/dev/null
        wait "$agent_pid" 2>/dev/null
    fi
    my "DROP DATABASE IF EXISTS $db" >/dev/null
    if [[ -n "${BK_TEST_KEEP:-}" ]]; then
        echo "# kept $dir" >&2
    else
        rm -rf "$dir"
    fi
}
trap cleanup EXIT

"$BK" keygen --out "$dir/bk.key" >/dev/null 2>&1 || bail_out "bk keygen failed"
# bk_conf PREFIX: the CLI's configuration for topic prefix PREFIX.
bk_conf() {
    cat <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $1
repository = $dir/repo
key_file = $dir/bk.key
CONF
}
bk_conf "$prefix" >"$dir/bk.conf"
# agent_conf STATE_DIR [LINE...]
agent_conf() {
    local state="$1"
    shift
    bk_test_agent_conf "mysql_socket = $MYSQL_UNIX_PORT" "mysql_user = root" \
        "server_id = $((4000 + $$ % 50000))" "heartbeat = 500ms" \
        "range_interval = 100ms" "state_dir = $state" "$@"
}
streaming_count() { grep -c 'INFO: streaming the binlog from' "$alog"; }
# shellcheck disable=SC2317,SC2329 # called through wait_for
streams_more_than() { (($(streaming_count) > $1)); }
start_agent() {
    "$AGENT" --config "$1" >>"$alog" 2>&1 &
    agent_pid=$!
}
stop_agent() {
    kill -TERM "$agent_pid"
    wait "$agent_pid" 2>/dev/null
    agent_pid=""
}
# shellcheck disable=SC2317,SC2329 # called through wait_for
audit() {
    timeout 30 kcat -C -b "$BK_KAFKA_BROKERS" -t "$1.audit" -o beginning -e -q \
        -f '%s\n' 2>/dev/null
}
master() { my 'SHOW MASTER STATUS' | cut -f1,2 | tr '\t' ' '; }
# acked STATE_DIR: the position the agent last saw acknowledged.
acked() { cut -d' ' -f1-2 "$1/binlog.position" 2>/dev/null; }
# shellcheck disable=SC2317,SC2329 # called through wait_for
acked_is() { [[ "$(acked "$1")" == "$2" ]]; }
# updates N: N transactions of one size.
updates() {
    local i
    for ((i = 0; i < $1; i++)); do
        echo "UPDATE $db.c SET n = n + 1 WHERE id = 1;"
    done | my_script
}
refusal='is not the file archived'
refusals() { grep -c "ERROR: .*$refusal" "$alog"; }
# shellcheck disable=SC2317,SC2329 # called through wait_for
refused_more_than() { (($(refusals) > $1)); }
# resets PREFIX SOURCE FILE: binlog-reset audit events of SOURCE in FILE.
# shellcheck disable=SC2317,SC2329 # called through wait_for
resets() {
    audit "$1" | grep '"event":"binlog-reset"' | grep "\"source\":\"$2\"" |
        grep -c "\"binlog_file\":\"$3\""
}
# shellcheck disable=SC2317,SC2329 # called through wait_for
reset_audited() { (($(resets "$@") > 0)); }
# second_history DESC STATE_DIR END PREFIX BEFORE: the agent (started, with
# BEFORE refusals in the log until then) refuses the server's file at END,
# says so on PREFIX.audit, and the archive still ends at END.
second_history() {
    local desc="$1" state="$2" end="$3" topics="$4" before="$5"
    wait_for 20 "the agent to refuse the second history" refused_more_than "$before"
    ok $? "$desc: an ERROR says the server's ${end% *} is not the file archived" ||
        diag "$(tail -n 12 "$alog")"
    like "$(grep "ERROR: .*$refusal" "$alog" | tail -n 1)" \
        "at ${end/ /:}, where the archive ends, .*RESET MASTER" "... naming where the archive ends"
    like "$(grep "ERROR: .*$refusal" "$alog" | tail -n 1)" 'HINT: .*new source_id' \
        "... and the way out: a new source_id"
    wait_for 20 "a binlog-reset audit event" reset_audited "$topics" "$source_id" "${end% *}"
    ok $? "$desc: a binlog-reset audit event naming ${end% *} is on $topics.audit"
    is "$(acked "$state")" "$end" "$desc: nothing of the second history is acknowledged"
}

# ---------------------------------------------------------------- setup
out="$("$BK" init --config "$dir/bk.conf" 2>&1)"
ok $? "bk init created the topics under $prefix" || diag "$out"
out="$(my "CREATE DATABASE $db; CREATE TABLE $db.c (id INT PRIMARY KEY, n INT NOT NULL)
       ENGINE=InnoDB; INSERT INTO $db.c VALUES (1, 0); RESET MASTER")"
ok $? "a counter table; RESET MASTER" || diag "$out"

# ---------------------------------------------------------------- agent down
agent_conf "$dir/state" >"$dir/agent.conf"
start_agent "$dir/agent.conf"
wait_for 30 "the agent to stream" streams_more_than 0 ||
    bail_out "the agent did not start: $(tail -n 20 "$alog")"
updates 30
end="$(master)"
wait_for 20 "the agent to archive up to $end" acked_is "$dir/state" "$end"
ok $? "30 transactions of one size archived up to $end" || diag "$(acked "$dir/state")"
gtid_end="$(my "SELECT BINLOG_GTID_POS('${end% *}', ${end#* })")"
stop_agent
like "$(cat "$dir/state/binlog.position")" "^$end source=$source_id file-created=[0-9]+:[0-9]+ gtid=$gtid_end\$" \
    "the state file says which source, which file, and the GTID state there"
# Range metadata is plaintext in the frame header.
created="$(sed -n 's/.* file-created=\([0-9:]*\) .*/\1/p' "$dir/state/binlog.position")"
is "$(timeout 30 kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.binlog" -o beginning -e -q \
    -f '%s\n' 2>/dev/null | grep -ao 'file-created=[0-9:]*' | sort | uniq -c | awk '{print $2}')" \
    "file-created=$created" "every range says which file it is of: file-created=$created"

sleep 1.1 # a file created in another second
out="$(my "RESET MASTER")"
ok $? "agent stopped inside ${end% *}; RESET MASTER" || diag "$out"
updates 60
is "$(my "SELECT BINLOG_GTID_POS('${end% *}', ${end#* })")" "$gtid_end" \
    "60 transactions of one size: the new ${end% *} has the archive's GTID state at ${end#* }"
before="$(refusals)"
start_agent "$dir/agent.conf"
second_history "agent down" "$dir/state" "$end" "$prefix" "$before"
stop_agent

# ---------------------------------------------------------------- state file only
# Another topic prefix holds no range of the source: the agent resumes from
# its local state file alone, and checks the file all the same.
bk_conf "$prefix-empty" >"$dir/bk-empty.conf"
out="$("$BK" init --config "$dir/bk-empty.conf" 2>&1)"
ok $? "bk init created the topics under $prefix-empty" || diag "$out"
agent_conf "$dir/state" | sed "s|^topic_prefix = .*|topic_prefix = $prefix-empty|" \
    >"$dir/agent-empty.conf"
before="$(refusals)"
start_agent "$dir/agent-empty.conf"
second_history "from the state file" "$dir/state" "$end" "$prefix-empty" "$before"
stop_agent

# ---------------------------------------------------------------- the way out
# What the ERROR says to do: a new source_id, with the same state_dir.  The
# state file is the old source's, so the new source's archive starts empty
# instead of at the old source's position (where it was refused again).
agent_conf "$dir/state" | sed "s|^source_id = .*|source_id = $source_id-new|" >"$dir/agent-new.conf"
before="$(refusals)"
start_agent "$dir/agent-new.conf"
wait_for 30 "the new source to stream" grep -q "the archive of source \"$source_id-new\" is empty" "$alog"
ok $? "a new source_id, the same state_dir: the new source's archive starts empty" ||
    diag "$(tail -n 8 "$alog")"
wait_for 20 "the new source's position in the state file" \
    grep -q "^[^ ]* [0-9]* source=$source_id-new " "$dir/state/binlog.position"
ok $? "... and the state file is the new source's once a range of it is acknowledged" ||
    diag "$(cat "$dir/state/binlog.position")"
is "$(refusals)" "$before" "... with no refusal of the server's binlog"
stop_agent
# The state file of an older agent (the position alone): refused unchecked.
echo "$end" >"$dir/state/binlog.position"
start_agent "$dir/agent-empty.conf"
wait_for 20 "the agent to refuse the older state file" \
    grep -q "the local state says ${end/ /:} was acknowledged, but not which binlog file" "$alog"
ok $? "an older agent's state file inside a file: refused, not resumed unchecked" ||
    diag "$(tail -n 8 "$alog")"
is "$(acked "$dir/state")" "$end" "... and nothing streamed"
stop_agent

# ---------------------------------------------------------------- live
# RESET MASTER while the agent streams, of another source.
source_id="mdb-reset-live-$$-$RANDOM"
agent_conf "$dir/state-live" >"$dir/agent-live.conf"
my "RESET MASTER" >/dev/null
before="$(streaming_count)"
start_agent "$dir/agent-live.conf"
wait_for 30 "the agent to stream" streams_more_than "$before"
updates 30
end="$(master)"
wait_for 20 "the agent to archive up to $end" acked_is "$dir/state-live" "$end"
ok $? "live: 30 transactions of one size archived up to $end"
before="$(refusals)"
sleep 1.1
out="$(my "RESET MASTER")"
ok $? "RESET MASTER while the agent streams" || diag "$out"
sleep 1.5
updates 60
second_history "live" "$dir/state-live" "$end" "$prefix" "$before"
stop_agent

done_testing
