#!/usr/bin/env bash
# bk-mysql-agent against the real MariaDB and Kafka, what the stream does
# when the server goes quiet:
#   with heartbeat = 3s and range_interval = 200ms, a lone commit after a
#   quiet spell reaches Kafka within range_interval (plus a margin), not at
#   the next heartbeat;
#   a failover to a server whose binlog has another basename (db2-bin, as
#   another host's default <hostname>-bin) and more files than the
#   archive's: refused as a second history (an ERROR, a binlog-reset audit
#   event), never taken for a purge gap and streamed from its oldest file;
#   the archive keeps only the first server's files and bk verify passes;
#   over a link that delivers the server's packets 400 ms late (a relay in
#   the test: a retransmission, a congested network), no range claims
#   complete-until past a commit it does not hold: a heartbeat proves
#   nothing about when the server sent it;
#   a statement running across a probe (3 s, while two others commit): no
#   range before it claims complete-until past its stamp, which a restore
#   compares targets with, though it is written after those ranges;
#   a plain SELECT SLEEP(4) while others commit does not hold complete-until
#   back: a range sent during it claims past the second it began;
#   the probe's connection closed by the server (wait_timeout = 2 s) is
#   opened again without a WARNING.
#
# Expects MariaDB and Kafka from scripts/services.
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

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-stream-test.XXXXXX")"
chmod 755 "$dir"
prefix="bkit-stream-$$-$RANDOM"
source_id="mdbs-$$-$RANDOM"
db="bk_stream_$$"
alog="$dir/agent.log"
agent_pid=""
shipper_pid=""
relay_pid=""
OTHER_PORT=$((MYSQL_TCP_PORT + 2))
other_services() { BK_SERVICES_DIR="$dir/other" BK_MYSQL_PORT="$OTHER_PORT" "$SERVICES" "$@"; }

# shellcheck disable=SC2317,SC2329 # called by the trap
cleanup() {
    if [[ -n "$agent_pid" ]]; then
        kill -TERM "$agent_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$agent_pid" 2>/dev/null
        wait "$agent_pid" 2>/dev/null
    fi
    [[ -n "$shipper_pid" ]] && kill -KILL "$shipper_pid" 2>/dev/null && wait "$shipper_pid" 2>/dev/null
    [[ -n "$relay_pid" ]] && kill "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null
    other_services stop mariadb >/dev/null 2>&1
    [[ -n "${old_wait:-}" ]] && my "SET GLOBAL wait_timeout = $old_wait" >/dev/null
    my "DROP DATABASE IF EXISTS $db" >/dev/null
    if [[ -n "${BK_TEST_KEEP:-}" ]]; then
        echo "# kept $dir" >&2
    else
        rm -rf "$dir"
    fi
}
trap cleanup EXIT

"$BK" keygen --out "$dir/bk.key" >/dev/null 2>&1 || bail_out "bk keygen failed"
cat >"$dir/bk.conf" <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $prefix
repository = $dir/repo
key_file = $dir/bk.key
shipper_id = stream-$$
group_id = $prefix
CONF
"$BK" init --config "$dir/bk.conf" >"$dir/init.log" 2>&1 || bail_out "bk init failed: $(cat "$dir/init.log")"
# agent_conf [LINE...]: the agent's configuration plus LINEs.
agent_conf() {
    bk_test_agent_conf "mysql_socket = $MYSQL_UNIX_PORT" "mysql_user = root" \
        "server_id = $((4000 + $$ % 50000))" "state_dir = $dir/state" "$@"
}
streaming_count() { grep -c 'INFO: streaming the binlog from' "$alog" 2>/dev/null; }
# shellcheck disable=SC2317,SC2329 # called through wait_for
streams_more_than() { (($(streaming_count) > $1)); }
# start_agent CONF
start_agent() {
    local before
    before="$(streaming_count || echo 0)"
    "$AGENT" --config "$1" >>"$alog" 2>&1 &
    agent_pid=$!
    wait_for 30 "the agent to stream" streams_more_than "$before"
}
stop_agent() {
    kill "-${1:-TERM}" "$agent_pid"
    wait "$agent_pid" 2>/dev/null
    agent_pid=""
}
# range_times: the Kafka timestamp (ms) of each binlog range chunk so far.
range_times() {
    timeout 20 kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.binlog" -o beginning -e -q \
        -f '%T\n' 2>/dev/null
}
# shellcheck disable=SC2317,SC2329 # called through wait_for
ranges_more_than() { (($(range_times | wc -l) > $1)); }

my "CREATE DATABASE $db; CREATE TABLE $db.t (id int auto_increment primary key, v int)" >/dev/null ||
    bail_out "cannot create $db"

# ------------------------------------------- a lone commit on a quiet server

# The heartbeat is 3 s; the range is due 200 ms after its first event.
# What the agent read at its start has gone out after 4 s of quiet (at the
# latest with the first heartbeat), so the next range is the commit's.
agent_conf "range_interval = 200ms" "heartbeat = 3s" >"$dir/agent-quiet.conf"
start_agent "$dir/agent-quiet.conf"
ok $? "the agent streams with heartbeat = 3s" || diag "$(tail -n 5 "$alog")"
sleep 4
before="$(range_times | wc -l)"
committed_ms="$(date +%s%3N)"
my "INSERT INTO $db.t (v) VALUES (1)" >/dev/null
wait_for 3 "the commit's range in Kafka" ranges_more_than "$before"
sent_ms="$(range_times | sed -n "$((before + 1))p")"
if [[ "$sent_ms" =~ ^[0-9]+$ ]]; then
    delay=$((sent_ms - committed_ms))
    ok "$((delay > 500))" "a lone commit's range reaches Kafka within range_interval + 300 ms (took $delay ms)"
else
    ok 1 "a lone commit's range reaches Kafka within range_interval + 300 ms (none in 3 s)"
fi
stop_agent TERM

# ------------------------------------- complete-until over a slow link

# A relay between the agent and MariaDB that holds every byte from the
# server for 400 ms, in order (the agent's own bytes pass at once).  With
# range_interval = 100ms the server sends a heartbeat after 100 ms without
# a commit, which reaches the agent 400 ms later; commits follow every
# ~150 ms.  For each range, complete-until must not pass the time a commit
# that is not in it (nor before it) had already committed: a restore to
# that time would report success without it.
cat >"$dir/relay.py" <<'PY'
import asyncio, os, sys, time

port_file, host, port, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])


async def pipe(reader, writer, lag):
    queue = asyncio.Queue()

    async def pump():
        while True:
            data = await reader.read(65536)
            queue.put_nowait((time.monotonic() + lag, data))
            if not data:
                return

    async def deliver():
        while True:
            due, data = await queue.get()
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    await asyncio.gather(pump(), deliver(), return_exceptions=True)


async def handle(client_reader, client_writer):
    try:
        server_reader, server_writer = await asyncio.open_connection(host, port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, server_writer, 0),
                         pipe(server_reader, client_writer, delay),
                         return_exceptions=True)
    client_writer.close()
    server_writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    os.rename(port_file + ".tmp", port_file)
    await server.serve_forever()

asyncio.run(main())
PY
python3 "$dir/relay.py" "$dir/relay.port" 127.0.0.1 "$MYSQL_TCP_PORT" 0.4 2>>"$dir/relay.log" &
relay_pid=$!
wait_for 10 "the relay" test -s "$dir/relay.port"
relay_port="$(cat "$dir/relay.port")"
{
    bk_test_agent_conf "mysql_host = 127.0.0.1" "mysql_port = $relay_port" \
        "mysql_user = root" "server_id = $((4000 + $$ % 50000))" \
        "state_dir = $dir/state-slow" "heartbeat = 1s"
    echo "range_interval = 100ms"
} >"$dir/agent-slow.conf"
before_slow="$(range_times | wc -l)"
start_agent "$dir/agent-slow.conf"
ok $? "the agent streams through a relay that delays the server's packets 400 ms" ||
    diag "$(tail -n 5 "$alog")"
sleep 2
# Each commit, then the server's clock once it returned (its GTID is in the
# binlog by then): id, GTID, Unix seconds with microseconds.
commits_sql="SET time_zone = '+00:00';"
for k in $(seq 1 24); do
    commits_sql+="BEGIN; INSERT INTO $db.t (v) VALUES ($((100 + k))); COMMIT;"
    commits_sql+="SELECT $k, @@last_gtid, UNIX_TIMESTAMP(NOW(6)); DO SLEEP(0.15 + 0.01 * ($k % 5));"
done
my "$commits_sql" >"$dir/commits.txt"
sleep 3
stop_agent TERM
kill "$relay_pid" 2>/dev/null
wait "$relay_pid" 2>/dev/null
relay_pid=""
# Every binlog range of this agent: its GTID state after it and complete-until.
timeout 20 kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.binlog" -o beginning -e -q \
    -f '%h\n' 2>/dev/null | tail -n "+$((before_slow + 1))" >"$dir/ranges-slow.txt"
result="$(python3 - "$dir/commits.txt" "$dir/ranges-slow.txt" <<'PY'
import sys
commits = []
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) == 3 and parts[1].count("-") == 2:
        commits.append((int(parts[1].split("-")[2]), float(parts[2]) * 1000))
ranges = []
for line in open(sys.argv[2]):
    head = dict(h.split("=", 1) for h in line.strip().split(",") if "=" in h)
    until, gtid = head.get("bk-meta-complete-until"), head.get("bk-meta-gtid", "")
    if until is None or gtid.count("-") != 2:
        continue
    ranges.append((int(gtid.split("-")[2]), int(until)))
worst = None
for seq, until in ranges:
    for cseq, done_ms in commits:
        if cseq > seq and until > done_ms:
            over = until - done_ms
            if worst is None or over > worst[0]:
                worst = (over, seq, cseq)
if len(commits) < 20 or len(ranges) < 5:
    print("short %d commits %d ranges" % (len(commits), len(ranges)))
elif worst:
    print("over %d ms: the range up to seq %d claims it, seq %d is not in it" % worst)
else:
    print("none %d commits %d ranges" % (len(commits), len(ranges)))
PY
)"
like "$result" '^none ' "no range claims complete-until past a commit it does not hold ($result)" ||
    diag "$(head -c 600 "$dir/ranges-slow.txt")"

# ------------------------- complete-until and a statement running across a probe

# A restore takes a transaction by its stamp, when its statement began, not
# when it was written.  Statement A runs 3 s; B commits twice meanwhile, and
# their ranges go out on the heartbeats after them, each with a probe.  A is
# written after those ranges with the older stamp: no range before A may
# claim a complete-until whose second is past A's, or a restore to it would
# take A with only those ranges archived and report success without it.
agent_conf "range_interval = 100ms" "heartbeat = 1s" >"$dir/agent-long.conf"
before_long="$(range_times | wc -l)"
start_agent "$dir/agent-long.conf"
ok $? "the agent streams with heartbeat = 1s" || diag "$(tail -n 5 "$alog")"
sleep 1.5
# Row-based: every event of A carries its start's second, which its row holds
# (NOW() is the statement's start).
my "SET binlog_format = ROW;
    INSERT INTO $db.t (v) SELECT UNIX_TIMESTAMP(NOW()) FROM (SELECT SLEEP(3)) AS s;
    SELECT @@last_gtid, v FROM $db.t WHERE id = LAST_INSERT_ID()" >"$dir/long-a.txt" &
long_pid=$!
sleep 1
my "INSERT INTO $db.t (v) VALUES (11)" >/dev/null
sleep 0.8
my "INSERT INTO $db.t (v) VALUES (12)" >/dev/null
wait "$long_pid"
sleep 2.5
stop_agent TERM
timeout 20 kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.binlog" -o beginning -e -q \
    -f '%h\n' 2>/dev/null | tail -n "+$((before_long + 1))" >"$dir/ranges-long.txt"
result="$(python3 - "$dir/long-a.txt" "$dir/ranges-long.txt" <<'PY'
import sys
a = open(sys.argv[1]).read().split()
if len(a) != 2 or a[0].count("-") != 2:
    print("no statement A: %r" % a)
    sys.exit()
a_seq, a_stamp = int(a[0].split("-")[2]), int(a[1])
before = []
held = False
for line in open(sys.argv[2]):
    head = dict(h.split("=", 1) for h in line.strip().split(",") if "=" in h)
    until, gtid = head.get("bk-meta-complete-until"), head.get("bk-meta-gtid", "")
    if gtid.count("-") != 2:
        continue
    seq = int(gtid.split("-")[2])
    if seq >= a_seq:
        held = True
    elif until is not None:
        before.append((seq, int(until)))
over = [(seq, until) for seq, until in before if until // 1000 > a_stamp]
if not held or not before:
    print("short: A archived %s, %d ranges before it" % (held, len(before)))
elif over:
    print("over: the range up to seq %d claims %d, past A (seq %d) stamped %d"
          % (over[-1][0], over[-1][1], a_seq, a_stamp))
else:
    print("none: %d ranges before A (seq %d, stamped %d) claim up to %d"
          % (len(before), a_seq, a_stamp, max(u for _, u in before)))
PY
)"
like "$result" '^none: ' "no range before a running statement claims complete-until past its stamp ($result)" ||
    diag "$(head -c 600 "$dir/ranges-long.txt")"

# ------------------------- a plain SELECT running does not hold complete-until

# A SELECT is binlogged only through a stored function that writes (not
# covered): a report running an hour, or the caller's own waiting SELECT
# bk_snapshot(), must not hold complete-until back meanwhile.  Commits go on
# during a 4 s SELECT SLEEP(4); a range sent for one of them must claim past
# the second the SELECT began.
agent_conf "range_interval = 100ms" "heartbeat = 1s" >"$dir/agent-select.conf"
before_select="$(range_times | wc -l)"
start_agent "$dir/agent-select.conf"
ok $? "the agent streams with heartbeat = 1s" || diag "$(tail -n 5 "$alog")"
sleep 1.5
my "SELECT UNIX_TIMESTAMP(NOW()), SLEEP(4)" >"$dir/select-a.txt" &
select_pid=$!
: >"$dir/select-during.txt"
for k in 1 2 3; do
    sleep 0.8
    my "INSERT INTO $db.t (v) VALUES (3$k); SELECT @@last_gtid" >>"$dir/select-during.txt"
done
wait "$select_pid"
my "INSERT INTO $db.t (v) VALUES (34)" >/dev/null
sleep 2
stop_agent TERM
timeout 20 kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.binlog" -o beginning -e -q \
    -f '%h\n' 2>/dev/null | tail -n "+$((before_select + 1))" >"$dir/ranges-select.txt"
result="$(python3 - "$dir/select-a.txt" "$dir/select-during.txt" "$dir/ranges-select.txt" <<'PY'
import sys
a = open(sys.argv[1]).read().split()
during = {int(g.split("-")[2]) for g in open(sys.argv[2]).read().split()
          if g.count("-") == 2}
if len(a) != 2 or len(during) != 3:
    print("no SELECT or commits: %r %r" % (a, sorted(during)))
    sys.exit()
start = int(a[0])
claims = []
for line in open(sys.argv[3]):
    head = dict(h.split("=", 1) for h in line.strip().split(",") if "=" in h)
    until, gtid = head.get("bk-meta-complete-until"), head.get("bk-meta-gtid", "")
    if until is None or gtid.count("-") != 2:
        continue
    if int(gtid.split("-")[2]) in during:
        claims.append(int(until))
if not claims:
    print("short: no range for the commits during the SELECT")
elif max(claims) // 1000 > start:
    print("past: a range during the SELECT (begun %d) claims %d" % (start, max(claims)))
else:
    print("held: %d ranges during the SELECT (begun %d) claim at most %d"
          % (len(claims), start, max(claims)))
PY
)"
like "$result" '^past: ' "a plain SELECT running does not hold complete-until back ($result)" ||
    diag "$(head -c 600 "$dir/ranges-select.txt")"

# ------------------------- the probe's connection closed by wait_timeout

# The server drops a connection idle for wait_timeout; the probe's idles
# between probes (3 s here).  A new one, silently: no WARNING.
old_wait="$(my 'SELECT @@GLOBAL.wait_timeout')"
my "SET GLOBAL wait_timeout = 2" >/dev/null
agent_conf "range_interval = 3s" "heartbeat = 3s" >"$dir/agent-idle.conf"
start_agent "$dir/agent-idle.conf"
for k in 1 2 3; do
    my "INSERT INTO $db.t (v) VALUES (2$k)" >/dev/null
    sleep 5
done
stop_agent TERM
my "SET GLOBAL wait_timeout = $old_wait" >/dev/null
probe_warnings="$(grep -c 'cannot ask the server where its binlog ends' "$alog")"
is "$probe_warnings" 0 "a probe connection the server closed (wait_timeout) is opened again without a WARNING" ||
    diag "$(grep 'cannot ask' "$alog" | tail -n 2)"

# ------------------------- a failover to a server of another binlog basename

json_get() { python3 -c "import json, sys; d = json.load(sys.stdin); $1" 2>/dev/null; }
archived_files() {
    "$BK" list --config "$dir/bk.conf" --source "$source_id" --json 2>/dev/null |
        json_get 'print("\n".join(f["name"] for f in d["sources"][0]["binlog_files"]))'
}
# shellcheck disable=SC2317,SC2329 # called through wait_for
archive_holds() { archived_files | grep -qx -- "$1"; }
audit() {
    timeout 30 kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.audit" -o beginning -e -q \
        -f '%s\n' 2>/dev/null
}

"$SHIPPER" --config "$dir/bk.conf" >>"$dir/shipper.log" 2>&1 &
shipper_pid=$!
agent_conf >"$dir/agent.conf"
start_agent "$dir/agent.conf"
my "INSERT INTO $db.t (v) VALUES (2), (3)" >/dev/null
last="$(my 'SHOW MASTER STATUS' | cut -f1)"
wait_for 30 "$last archived" archive_holds "$last"
ok $? "the first server's $last is archived" || diag "$(archived_files)"
stop_agent TERM

# The other server writes db2-bin.000001 and on, past the archive's number:
# by number alone its oldest file would follow a purge of the archive's.
other_services stop mariadb >/dev/null 2>&1
BK_MARIADB_ARGS="--log-bin=db2-bin" other_services start mariadb >>"$dir/other-start.log" 2>&1
ok $? "a server with log_bin=db2-bin starts" || diag "$(tail -n 5 "$dir/other-start.log")"
number=$((10#${last##*.}))
flushes="$(for ((k = 0; k <= number; k++)); do printf 'FLUSH BINARY LOGS;'; done)"
MYSQL_TCP_PORT="$OTHER_PORT" my "$flushes" >/dev/null
newest="$(MYSQL_TCP_PORT="$OTHER_PORT" my 'SHOW MASTER STATUS' | cut -f1)"
note "archive ends in $last; the other server writes $newest"
agent_conf "mysql_socket = $dir/other/mariadb/mysqld.sock" >"$dir/agent-other.conf"
refusal="ERROR: the server writes \"$newest\", but the archive ends in \"$last\""
"$AGENT" --config "$dir/agent-other.conf" >>"$alog" 2>&1 &
agent_pid=$!
wait_for 20 "the refusal" grep -q "$refusal" "$alog"
ok $? "the agent refuses a server of another binlog basename" ||
    diag "$(grep -E 'ERROR|WARNING|streaming' "$alog" | tail -n 5)"
grep -q 'streaming the binlog from db2-bin' "$alog"
isnt $? 0 "... and streams nothing from it (no purge gap into db2-bin.000001)"
stop_agent TERM
audit | grep '"event":"binlog-reset"' | grep -q "\"binlog_file\":\"$last\""
ok $? "... with a binlog-reset audit event at the archive's end"
sleep 1
files="$(archived_files)"
if grep -q '^db2-bin' <<<"$files"; then
    ok 1 "the archive holds none of the other server's files"
    diag "$files"
else
    ok 0 "the archive holds none of the other server's files"
fi
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
is $? 0 "bk verify exits 0" || diag "$out"

done_testing
