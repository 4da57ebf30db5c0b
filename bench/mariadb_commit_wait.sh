#!/usr/bin/env bash
# How long a MariaDB snapshot holds every commit on the server: from
# BACKUP STAGE BLOCK_COMMIT to BACKUP STAGE END, with CW_TABLES small InnoDB
# tables and bk_snapshot('jobs=CW_JOBS').
#
# Usage: BK_TEST_TREE=1 bench/mariadb_commit_wait.sh
#        (against running services: scripts/services start mariadb kafka,
#        with the BK_* exports of scripts/services; CW_AGENT=PATH runs
#        another build of bk-mysql-agent)
#
# Settings: CW_TABLES (3000), CW_JOBS (2), CW_RUNS (3).  The tables stay in
# database bk_cw (made once; CW_KEEP=0 drops it at the end).
#
# Two measures per run:
#   agent   the agent's own log line "commits waited N ms (BACKUP STAGE
#           BLOCK_COMMIT to END)";
#   client  the longest gap between two consecutive autocommit INSERTs of
#           one client inserting SYSDATE(6) in a loop while the snapshot
#           runs: a commit that waits shows as a gap (the gap also holds
#           one round trip and the next statement's start).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
SERVICES="$ROOT/scripts/services"
eval "$("$SERVICES" env)" || bail_out "'scripts/services env' failed"
dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-commit-wait.XXXXXX")"
chmod 755 "$dir"
source "$ROOT/tests/lib/bk_env.sh"
source "$ROOT/tests/lib/mariadb.sh"
AGENT="${CW_AGENT:-$BK_AGENT_BIN}"
tables="${CW_TABLES:-3000}"
jobs="${CW_JOBS:-2}"
runs="${CW_RUNS:-3}"
agent_pid=""
ticker_pid=""

cleanup() {
    [[ -n "$ticker_pid" ]] && kill "$ticker_pid" 2>/dev/null
    [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    [[ "${CW_KEEP:-1}" == 0 ]] && my "DROP DATABASE IF EXISTS bk_cw" >/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

bk_test_init commit-wait
source_id="cw-$$"
server_pid="$(cat "$(my 'SELECT @@pid_file')")"
server_user="$(ps -o user= -p "$server_pid" | tr -d ' ')"
bk_test_agent_conf "mysql_host = 127.0.0.1" "mysql_port = $MYSQL_TCP_PORT" \
    "mysql_user = root" "server_id = $((5000 + $$ % 1000))" \
    "state_dir = $dir/agent-state" "control_user = $server_user" \
    "roles = bk_cw" >"$dir/agent.conf"
my "CREATE ROLE IF NOT EXISTS bk_cw; GRANT bk_cw TO CURRENT_USER;
    DROP FUNCTION IF EXISTS bk_snapshot;
    CREATE FUNCTION bk_snapshot RETURNS STRING SONAME 'bk_udf.so'" >/dev/null

have="$(my "SELECT COUNT(*) FROM information_schema.TABLES
            WHERE TABLE_SCHEMA = 'bk_cw' AND TABLE_NAME REGEXP '^t[0-9]+\$'")"
if [[ "$have" != "$tables" ]]; then
    my "DROP DATABASE IF EXISTS bk_cw; CREATE DATABASE bk_cw" >/dev/null
    # A thousand tables a client: each client has 120 s (my_script).
    for ((i = 1; i <= tables; i += 1000)); do
        for ((t = i; t < i + 1000 && t <= tables; t++)); do
            echo "CREATE TABLE bk_cw.t$t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB;
                  INSERT INTO bk_cw.t$t VALUES (1, 1);"
        done | my_script >/dev/null
    done
fi
my "CREATE TABLE IF NOT EXISTS bk_cw.ticks (id INT AUTO_INCREMENT PRIMARY KEY,
      at DATETIME(6)) ENGINE=InnoDB" >/dev/null

"$AGENT" --config "$dir/agent.conf" >>"$dir/agent.log" 2>&1 &
agent_pid=$!
wait_for 30 "agent streaming" grep -q "streaming the binlog from" "$dir/agent.log" ||
    bail_out "$(cat "$dir/agent.log")"

echo "# $(my 'SELECT VERSION()'), $tables tables, jobs=$jobs, agent $AGENT"
for ((run = 1; run <= runs; run++)); do
    my "TRUNCATE bk_cw.ticks" >/dev/null
    yes "INSERT INTO bk_cw.ticks (at) VALUES (SYSDATE(6));" |
        timeout 600 mariadb --no-defaults --protocol=TCP -h 127.0.0.1 \
            -P "$MYSQL_TCP_PORT" -u root >/dev/null 2>&1 &
    ticker_pid=$!
    sleep 1
    # Not my(): at 30,000 tables a snapshot takes minutes.
    started_ms="$(($(date +%s%N) / 1000000))"
    result="$(timeout 1800 mariadb --no-defaults --protocol=TCP -h 127.0.0.1 \
        -P "$MYSQL_TCP_PORT" -u root -N -B -e "SELECT bk_snapshot('jobs=$jobs')" 2>&1)"
    snapshot_ms="$(($(date +%s%N) / 1000000 - started_ms))"
    sleep 0.5
    kill "$ticker_pid" 2>/dev/null
    wait "$ticker_pid" 2>/dev/null
    ticker_pid=""
    [[ "$result" == *snapshot_id* ]] || bail_out "snapshot failed: $result"
    agent_ms="$(grep -o 'commits waited [0-9]* ms' "$dir/agent.log" | tail -1 | tr -dc 0-9)"
    gap_ms="$(my "SELECT ROUND(MAX(TIMESTAMPDIFF(MICROSECOND, a.at, b.at)) / 1000)
                  FROM bk_cw.ticks a JOIN bk_cw.ticks b ON b.id = a.id + 1")"
    echo "run $run: agent ${agent_ms:-(not logged)} ms, client longest commit gap $gap_ms ms, snapshot $snapshot_ms ms"
    grep -o 'commits waited .*' "$dir/agent.log" | tail -1 | sed 's/^/#   /'
done
