#!/usr/bin/env bash
# bk_udf.so in a real MariaDB: bk_snapshot(), bk_snapshot_cancel() and
# bk_status() reach a test agent (bk_test_control: the agent's control.c with
# a trivial handler) through the control socket, with the caller's account;
# a snapshot is asked once per statement; KILL QUERY ends a waiting call and
# cancels it in the agent; a USAGE-only account is refused by the agent's
# role check; an absent agent gives a clear error; a session under LOCK
# TABLES is refused bk_snapshot() at once, without asking the agent (whose
# snapshot would wait for that session's locks).
#
# Expects MariaDB from scripts/services, started with BK_AGENT_SOCKET in its
# environment (the UDF reads the socket path from there).  Installs
# bk_udf.so into the server's plugin_dir.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=SCRIPTDIR/../lib/tap.sh
source "$ROOT/tests/lib/tap.sh"
SERVICES="$ROOT/scripts/services"

env_lines="$("$SERVICES" env mariadb)" || bail_out "'scripts/services env' failed"
eval "$env_lines"
"$SERVICES" status mariadb >/dev/null 2>&1 ||
    bail_out "mariadb is not running: run scripts/services start mariadb first"

# my [--user NAME] SQL (tests/lib/mariadb.sh)
# shellcheck source=SCRIPTDIR/../lib/mariadb.sh
source "$ROOT/tests/lib/mariadb.sh"

server_pid="$(cat "$(my 'SELECT @@pid_file')" 2>/dev/null)"
[[ "$server_pid" =~ ^[0-9]+$ ]] || bail_out "cannot find mariadbd's pid"
socket="$(tr '\0' '\n' <"/proc/$server_pid/environ" 2>/dev/null | sed -n 's/^BK_AGENT_SOCKET=//p')"
if [[ -z "$socket" ]]; then
    echo "1..0 # SKIP mariadbd runs without BK_AGENT_SOCKET in its environment" \
        "(start it with BK_AGENT_SOCKET exported)"
    exit 0
fi
server_uid="$(stat -c %u "/proc/$server_pid")"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-mysql-udf.XXXXXX")"
agent_pid=""
log="$dir/agent.log"
# shellcheck disable=SC2329 # called by the trap
cleanup() {
    [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    my "DROP FUNCTION IF EXISTS bk_snapshot; DROP FUNCTION IF EXISTS bk_snapshot_cancel;
        DROP FUNCTION IF EXISTS bk_status; DROP USER IF EXISTS bk_udf_usage@'127.0.0.1';
        DROP USER IF EXISTS bk_udf_nested@'127.0.0.1'; DROP ROLE IF EXISTS bk_udf_outer;
        DROP USER IF EXISTS bk_admin@'127.0.0.1'; DROP DATABASE IF EXISTS bk_udf_locks" >/dev/null
    [[ -n "${created_role:-}" ]] && my "DROP ROLE IF EXISTS bk_admin" >/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

start_agent() {
    # The log keeps the "ready" of earlier agents: wait for one more, or a
    # restarted agent could be called before it listens.
    local readies
    readies="$(grep -cx ready "$log" 2>/dev/null)"
    readies="${readies:-0}"
    "$ROOT/tests/integration/bk_test_control" --socket "$socket" --allow-uid "$1" \
        --mysql-port "$MYSQL_TCP_PORT" >>"$log" 2>&1 &
    agent_pid=$!
    wait_for 10 "test agent listening on $socket" more_readies_than "$readies"
}
more_readies_than() {
    test "$(grep -cx ready "$log")" -gt "$1"
}
stop_agent() {
    kill "$agent_pid" && wait "$agent_pid"
    agent_pid=""
}
count() { grep -c -- "$1" "$log"; }

# ---- build, install, create
out="$(make -s -C "$ROOT/mysql_udf" install PLUGIN_DIR="$(my 'SELECT @@plugin_dir')" 2>&1)"
ok $? "bk_udf.so built and installed into plugin_dir" || diag "$out"
needed="$(readelf -d "$ROOT/mysql_udf/bk_udf.so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
is "$needed" "libc.so.6 " "bk_udf.so links against libc only"
out="$(make -s -C "$ROOT/tests/integration" bk_test_control 2>&1)"
ok $? "bk_test_control built" || diag "$out"

if [[ "$(my "SELECT COUNT(*) FROM mysql.user WHERE User = 'bk_admin' AND is_role = 'Y'")" == 0 ]]; then
    my "CREATE ROLE bk_admin" >/dev/null
    created_role=1
fi
my "GRANT bk_admin TO CURRENT_USER" >/dev/null
out="$(my "DROP FUNCTION IF EXISTS bk_snapshot; DROP FUNCTION IF EXISTS bk_snapshot_cancel;
           DROP FUNCTION IF EXISTS bk_status;
           CREATE FUNCTION bk_snapshot RETURNS STRING SONAME 'bk_udf.so';
           CREATE FUNCTION bk_snapshot_cancel RETURNS STRING SONAME 'bk_udf.so';
           CREATE FUNCTION bk_status RETURNS STRING SONAME 'bk_udf.so'")"
ok $? "CREATE FUNCTION bk_snapshot, bk_snapshot_cancel, bk_status" || diag "$out"

start_agent "$server_uid"
ok $? "test agent started on $socket" || bail_out "no agent: $(cat "$log")"

# ---- calls
like "$(my 'SELECT bk_status()')" '^\{"agent":"test","user":"root","host":"127\.0\.0\.1","connection_id":[0-9]+\}$' \
    "bk_status() returns the agent's JSON, with the caller's account"
like "$(my 'SELECT bk_status(), CONNECTION_ID()')" '"connection_id":([0-9]+)\}	\1$' \
    "the request carries the caller's connection id"

before="$(count '^snapshot ')"
out="$(my "SELECT bk_snapshot('mode=full') FROM mysql.seq_1_to_5")"
is "$(sort -u <<<"$out" | wc -l) $(wc -l <<<"$out")" "1 5" "five rows, one value" || diag "$out"
is "$(($(count '^snapshot ') - before))" 1 "SELECT bk_snapshot() FROM seq_1_to_5 asks the agent once"
like "$out" '^\{"snapshot":[0-9]+,"args":"mode=full"\}' "the argument reaches the agent raw"

before="$(count '^call ')"
my "EXPLAIN SELECT bk_snapshot('x')" >/dev/null
my "SELECT bk_snapshot('x') FROM DUAL WHERE 0" >/dev/null
is "$(($(count '^call ') - before))" 0 "EXPLAIN and WHERE 0 do not call the agent"

# q"\n<newline>é: a quote, a backslash, a control character, UTF-8.
out="$(my "SELECT bk_snapshot(CONCAT('q\"', CHAR(92), 'n', CHAR(10), 'é'))")"
is "$out" '{"snapshot":'"$(count '^snapshot ')"',"args":"q\"\\n\né"}' \
    "quotes, backslashes, control characters and UTF-8 survive the round trip"
is "$(my 'SELECT bk_snapshot()' | sed 's/.*"args"://')" 'null}' "no argument sent as null"
before="$(count '^call ')"
like "$(my 'SELECT bk_snapshot(NULL)')" "bk_snapshot: the argument is NULL" \
    "a NULL argument (an unset variable, say) is refused, not taken for none"
like "$(my "SELECT bk_snapshot(UNHEX('6C6162656C3D636166E9'))")" "bk_snapshot: the argument is not UTF-8 \\(byte 10\\)" \
    "an argument that is not UTF-8 is refused, not altered"
like "$(my "SELECT bk_snapshot(CONVERT('label=x' USING utf16))")" \
    "bk_snapshot: the argument contains a NUL byte \\(UTF-16 or UTF-32\\?\\): give it as utf8mb4" \
    "a UTF-16 argument is refused with what to do"
is "$(($(count '^call ') - before))" 0 "none of them reaches the agent"
is "$(my 'SELECT bk_snapshot_cancel(42)')" '{"cancelled":"42"}' "bk_snapshot_cancel(42): integer id as text"
before="$(count '^call ')"
like "$(my 'SELECT bk_snapshot_cancel(seq) FROM mysql.seq_1_to_3')" \
    "bk_snapshot_cancel: one statement makes one call: a row gives another argument than the first row, whose call was made" \
    "rows with different arguments are refused, not all given the first row's answer"
is "$(($(count '^call ') - before))" 1 "... after the one call the first row made"

# ---- the caller's own LOCK TABLES
# The real agent's snapshot needs locks a LOCK TABLES ... WRITE holds; the
# caller, waiting for the agent, would never release them (before: 10 s,
# then "Another session holds a lock").  The test agent needs none, so
# before the check these calls succeeded.
my "CREATE DATABASE bk_udf_locks; CREATE TABLE bk_udf_locks.t (a INT) ENGINE=InnoDB" >/dev/null
lock_refusal="ERROR 1105 (HY000) at line 1: bk_snapshot: this session is under LOCK TABLES, whose locks the snapshot (made by bk-mysql-agent on connections of its own) would wait for in vain until its lock wait times out: run UNLOCK TABLES first, then call bk_snapshot() again"
before="$(count '^call ')"
is "$(my "LOCK TABLES bk_udf_locks.t WRITE; SELECT bk_snapshot()")" "$lock_refusal" \
    "LOCK TABLES t WRITE; SELECT bk_snapshot(): refused, naming LOCK TABLES and what to do"
is "$(my "SET autocommit = 0; LOCK TABLES bk_udf_locks.t READ; SELECT bk_snapshot('label=x')")" "$lock_refusal" \
    "... LOCK TABLES t READ too (the server does not tell READ from WRITE), autocommit off"
is "$(($(count '^call ') - before))" 0 "... without asking the agent"
like "$(my "LOCK TABLES bk_udf_locks.t WRITE; SELECT bk_status(); SELECT bk_snapshot_cancel(42)")" \
    '^\{"agent":"test",.*\{"cancelled":"42"\}$' "bk_status() and bk_snapshot_cancel() (no lock waits in the agent) still answer under LOCK TABLES"
like "$(my "LOCK TABLES bk_udf_locks.t WRITE; UNLOCK TABLES; SELECT bk_snapshot()")" '^\{"snapshot":[0-9]+,' \
    "after UNLOCK TABLES, bk_snapshot() reaches the agent"

# ---- argument checks (x_init)
# (The client echoes the statement before an error at prepare time.)
is "$(my 'SELECT bk_status(1)' | tail -n 1)" \
    "ERROR 1123 (HY000) at line 1: Can't initialize function 'bk_status'; bk_status() takes no arguments" \
    "bk_status(1) refused"
like "$(my "SELECT bk_snapshot('a', 'b')")" "bk_snapshot\(\) takes at most one argument" \
    "bk_snapshot with two arguments refused"
like "$(my 'SELECT bk_snapshot(42)')" "options must be a string" "bk_snapshot(42) refused"
like "$(my 'SELECT bk_snapshot_cancel()')" "takes one argument: the snapshot id" \
    "bk_snapshot_cancel() refused"

# ---- a result over 1 MiB
like "$(my "SELECT bk_snapshot('big')")" "^ERROR 1105 \(HY000\).*bytes a reply may carry" \
    "a result over the reply limit becomes an SQL error"

# ---- KILL QUERY of a waiting call
my "SELECT bk_snapshot('slow')" >"$dir/slow.out" &
slow_pid=$!
# shellcheck disable=SC2317 # called through wait_for
slow_running() { grep -q '^call snapshot .* slow$' "$log"; }
wait_for 10 "the slow call to reach the agent" slow_running
id="$(my "SELECT id FROM information_schema.processlist WHERE info = 'SELECT bk_snapshot(''slow'')'")"
t0=${EPOCHREALTIME//[.,]/}
my "KILL QUERY $id" >/dev/null
wait "$slow_pid"
t1=${EPOCHREALTIME//[.,]/}
ok $((t1 - t0 < 2000000 ? 0 : 1)) "KILL QUERY ends the call within 2 s ($(((t1 - t0) / 1000)) ms)"
is "$(cat "$dir/slow.out")" \
    "ERROR 1105 (HY000) at line 1: bk_snapshot: query killed; the agent cancels the snapshot, or does not start it (one started with wait=false runs on: see bk_status())" \
    "the killed call says so"
wait_for 5 "the agent to see the caller gone" grep -q '^cancelled ' "$log"
ok $? "the agent's handler saw the caller go (bk_control_peer_gone)"

# ---- accounts
my "CREATE USER bk_udf_usage@'127.0.0.1'" >/dev/null
out="$(my --user bk_udf_usage 'SELECT bk_status()')"
is "$out" "ERROR 1105 (HY000) at line 1: bk_status: user 'bk_udf_usage'@'127.0.0.1' is not allowed to call bk functions: grant it the role bk_admin (GRANT bk_admin TO 'bk_udf_usage'@'127.0.0.1')" \
    "a USAGE-only account is refused with the GRANT to run"
grep -q '^call status bk_udf_usage 127.0.0.1 ' "$log"
ok $? "the agent saw the USAGE-only caller's own account"

# A flood of refused callers (48 USAGE-only sessions calling bk_status() in
# a loop) neither keeps the DBA's calls out nor floods the agent's log.
log_before="$(count '^log ')"
flood_pids=()
for _ in $(seq 1 48); do
    yes 'SELECT bk_status();' | head -n 400 |
        timeout 120 mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_TCP_PORT" \
            -u bk_udf_usage --force -N -B >/dev/null 2>&1 &
    flood_pids+=($!)
done
# shellcheck disable=SC2317 # called through wait_for
flood_started() { test "$(count '^refused ')" -gt 200; }
wait_for 30 "the flood to reach the agent" flood_started
dba_ok=0
dba_errors=""
for _ in $(seq 1 50); do
    out="$(my 'SELECT bk_status()')"
    if [[ "$out" == '{"agent":"test","user":"root"'* ]]; then
        dba_ok=$((dba_ok + 1))
    else
        dba_errors="$out"
    fi
done
is "$dba_ok" 50 "48 refused callers in a loop: all 50 calls of the DBA go through" ||
    diag "last error: $dba_errors"
ok $(($(count '^refused ') > 1000 ? 0 : 1)) "... while the refused callers were at it ($(count '^refused ') refused)"
wait "${flood_pids[@]}"
log_lines=$(($(count '^log ') - log_before))
ok $((log_lines <= 2 ? 0 : 1)) "... and the refusals made $log_lines log lines (at most 2)" ||
    diag "$(grep '^log ' "$log" | tail -n 5)"
my "GRANT bk_admin TO bk_udf_usage@'127.0.0.1'" >/dev/null
like "$(my --user bk_udf_usage 'SELECT bk_status()')" '"user":"bk_udf_usage"' \
    "granted bk_admin, the same account is allowed"
# An account may share the role's name (MariaDB keeps the role as
# bk_admin@''): whoever may CREATE USER could pass for the role so.
my "CREATE USER bk_admin@'127.0.0.1'" >/dev/null
like "$(my --user bk_admin 'SELECT bk_status()')" "user 'bk_admin'@'127.0.0.1' is not allowed to call bk functions" \
    "an account named like the role, not granted it, is refused"
my "CREATE ROLE bk_udf_outer; GRANT bk_admin TO bk_udf_outer;
    CREATE USER bk_udf_nested@'127.0.0.1'; GRANT bk_udf_outer TO bk_udf_nested@'127.0.0.1'" >/dev/null
like "$(my --user bk_udf_nested 'SELECT bk_status()')" '"user":"bk_udf_nested"' \
    "bk_admin through a role granted to a role is allowed"

# ---- peer uid check, then no agent at all
stop_agent
ok $? "test agent stopped"
start_agent $((server_uid + 12345))
is "$(my 'SELECT bk_status()')" \
    "ERROR 1105 (HY000) at line 1: bk_status: peer uid $server_uid is not allowed" \
    "an agent that does not allow mariadbd's uid refuses it"
# It answers and closes without reading the request: however the two race,
# the caller gets the refusal, never "could not send ... Broken pipe".
refusals=0
for _ in $(seq 1 100); do
    [[ "$(my 'SELECT bk_status()')" == *"peer uid $server_uid is not allowed" ]] && refusals=$((refusals + 1))
done
is "$refusals" 100 "... every time (100 calls)"
stop_agent
is "$(my 'SELECT bk_status()')" \
    "ERROR 1105 (HY000) at line 1: bk_status: cannot reach bk-mysql-agent at $socket: No such file or directory; is the agent running?" \
    "no agent: a clear error"

out="$(my "DROP FUNCTION bk_snapshot; DROP FUNCTION bk_snapshot_cancel; DROP FUNCTION bk_status")"
ok $? "DROP FUNCTION (the library is unloaded)" || diag "$out"
is "$(my 'SELECT 1')" 1 "the server still answers"

done_testing
