#!/usr/bin/env bash
# MyRocks (ENGINE=ROCKSDB) end to end: a MariaDB server of the test's own
# with the MyRocks plugin loaded (mariadb-plugin-rocksdb), the agent with
# the README's grants, a shipper, and:
#
#  - concurrent bank transfers, each one transaction over both engines: it
#    updates two ROCKSDB accounts and inserts a ROCKSDB ledger row and an
#    InnoDB ledger row.  The snapshot taken under that load, rebuilt with
#    bk snapshot-get, keeps sum(balance) fixed, has sum(version) = 2 x
#    ledger rows and as many InnoDB ledger rows as ROCKSDB ones (the two
#    engines in one state), and holds exactly the transfers the archived
#    binlog commits before the snapshot's coordinates; the agent says it
#    took the metadata locks while commits were blocked (MyRocks tables);
#  - bk restore to a position after the snapshot into a server without the
#    plugin is refused before anything is written, naming the engine and
#    the plugin; into a server with it, the tables are ROCKSDB again (the
#    InnoDB one InnoDB) and hold the source's rows at that position, though
#    a table has more rows than that server's rocksdb_max_row_locks.
#
# The plugin is loaded at the servers' start (plugin_load_add), as Debian's
# package configures it: INSTALL SONAME 'ha_rocksdb' on a running MariaDB
# 10.11 server crashes it (signal 11 in ignore_db_dirs_append), so neither
# server is the shared one.  A plugin that does not load fails the test.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=SCRIPTDIR/../lib/tap.sh
source "$ROOT/tests/lib/tap.sh"
SERVICES="$ROOT/scripts/services"
eval "$("$SERVICES" env)" || bail_out "'scripts/services env' failed"
"$SERVICES" status kafka >/dev/null 2>&1 || bail_out "kafka is not running"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-mariadb-myrocks.XXXXXX")"
chmod 755 "$dir"
# shellcheck source=SCRIPTDIR/../lib/bk_env.sh
source "$ROOT/tests/lib/bk_env.sh"
# shellcheck source=SCRIPTDIR/../lib/mariadb.sh
source "$ROOT/tests/lib/mariadb.sh"
AGENT="$BK_AGENT_BIN"
agent_pid=""
shipper_pid=""
workload_pids=()
db=bkrocks_$$
role="bk_rocks_role_$$"
agent_user="bk_agent_$$"
ROCKSDB_ARGS="--plugin-load-add=ha_rocksdb"

# The source: a server of the test's own, beside the shared one (whose
# port is MYSQL_TCP_PORT); "my" and the agent's control socket follow it.
SOURCE_DIR="$dir/source"
SOURCE_PORT=$((MYSQL_TCP_PORT + 4))
source_services() { BK_SERVICES_DIR="$SOURCE_DIR" BK_MYSQL_PORT="$SOURCE_PORT" "$SERVICES" "$@"; }
MYSQL_TCP_PORT="$SOURCE_PORT"
BK_MYSQL_AGENT_SOCKET="$SOURCE_DIR/mariadb/agent.sock"

TARGET_DIR="$dir/target"
TARGET_PORT=$((SOURCE_PORT + 1))
TARGET_SOCKET="$TARGET_DIR/mariadb/mysqld.sock"
target_services() { BK_SERVICES_DIR="$TARGET_DIR" BK_MYSQL_PORT="$TARGET_PORT" "$SERVICES" "$@"; }
tmy() {
    timeout 120 mariadb --no-defaults --protocol=SOCKET -h localhost -S "$TARGET_SOCKET" -u root \
        --connect-timeout=10 -N -B -r -e "$1" 2>&1
}
# target_reset [MARIADBD-OPTIONS]: a fresh, empty target server.
target_reset() {
    target_services stop mariadb >/dev/null 2>&1
    rm -rf "${TARGET_DIR:?}/mariadb"
    BK_MARIADB_ARGS="${1:-}" target_services start mariadb >>"$dir/target-start.log" 2>&1 &&
        tmy "SET GLOBAL gtid_strict_mode = 1" >/dev/null
}

# shellcheck disable=SC2329 # called by the trap
cleanup() {
    for pid in "${workload_pids[@]}"; do kill "$pid" 2>/dev/null; done
    [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    [[ -n "$shipper_pid" ]] && kill "$shipper_pid" 2>/dev/null && wait "$shipper_pid" 2>/dev/null
    source_services stop mariadb >/dev/null 2>&1
    target_services stop mariadb >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT

BK_MARIADB_ARGS="$ROCKSDB_ARGS" source_services start mariadb >"$dir/source-start.log" 2>&1 ||
    bail_out "a MariaDB server with $ROCKSDB_ARGS did not start: $(tail -n 20 "$dir/source-start.log")"
support="$(my "SELECT SUPPORT FROM information_schema.ENGINES WHERE ENGINE = 'ROCKSDB'")"
[[ "$support" == YES || "$support" == DEFAULT ]] ||
    bail_out "MyRocks did not load (ENGINES says '$support'): install mariadb-plugin-rocksdb" \
        "(scripts/install-deps does); $(grep -i rocksdb "$SOURCE_DIR/mariadb/error.log" | tail -n 5)"
ok 0 "the source server runs with MyRocks loaded ($ROCKSDB_ARGS)"
is "$(my 'SELECT @@log_bin, @@binlog_format')" "1	ROW" "with log_bin on and binlog_format ROW"

bk_test_init mariadb-myrocks
source_id="mdbrocks-$$"
server_pid="$(cat "$(my 'SELECT @@pid_file')")"
server_user="$(ps -o user= -p "$server_pid" | tr -d ' ')"
printf 'pw-%s\n' "$RANDOM$RANDOM" >"$dir/agent.password"
chmod 600 "$dir/agent.password"
out="$(my "CREATE USER $agent_user@'127.0.0.1' IDENTIFIED BY '$(head -1 "$dir/agent.password")';
           GRANT RELOAD, REPLICATION SLAVE, BINLOG MONITOR, PROCESS, SELECT, SHOW VIEW, TRIGGER, EVENT,
             LOCK TABLES ON *.* TO $agent_user@'127.0.0.1';
           CREATE ROLE $role;
           CREATE FUNCTION bk_snapshot RETURNS STRING SONAME 'bk_udf.so'")"
ok $? "an agent user with the README's grants, a role, bk_snapshot()" || bail_out "$out"
bk_test_agent_conf "mysql_host = 127.0.0.1" "mysql_port = $SOURCE_PORT" \
    "mysql_user = $agent_user" "mysql_password_file = $dir/agent.password" \
    "server_id = $((6000 + $$ % 1000))" "state_dir = $dir/agent-state" \
    "control_user = $server_user" "roles = $role" >"$dir/agent.conf"
"$AGENT" --config "$dir/agent.conf" >>"$dir/agent.log" 2>&1 &
agent_pid=$!
wait_for 30 "agent streaming" grep -q "streaming the binlog from" "$dir/agent.log"
ok $? "bk-mysql-agent streams" || bail_out "$(cat "$dir/agent.log")"
bk_test_start_shipper

# ---------------------------------------------------------------- bank
out="$(my "CREATE DATABASE $db;
    CREATE TABLE $db.accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL,
                               version INT NOT NULL) ENGINE=ROCKSDB;
    CREATE TABLE $db.ledger (id INT AUTO_INCREMENT PRIMARY KEY, a INT, b INT,
                             note VARCHAR(64)) ENGINE=ROCKSDB;
    CREATE TABLE $db.ledger_inno (id INT AUTO_INCREMENT PRIMARY KEY, a INT, b INT)
                             ENGINE=InnoDB;
    INSERT INTO $db.accounts SELECT seq, 1000, 0 FROM $db.seq_1_to_100;
    SELECT GROUP_CONCAT(TABLE_NAME, '=', ENGINE ORDER BY TABLE_NAME)
      FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$db'")"
is "$out" "accounts=ROCKSDB,ledger=ROCKSDB,ledger_inno=InnoDB" "bank tables in ROCKSDB, one in InnoDB" ||
    bail_out "$out"
my "FLUSH BINARY LOGS" >/dev/null
first_file="$(my 'SHOW MASTER STATUS' | cut -f1)"

TRANSFERS=1500
transfers() {
    local seed="$1" n="$2" a b
    RANDOM="$seed"
    for ((i = 0; i < n; i++)); do
        a=$((RANDOM % 100 + 1))
        b=$((RANDOM % 100 + 1))
        # Rows locked in id order: the two clients never deadlock.
        if ((a > b)); then
            local t=$a
            a=$b
            b=$t
        fi
        echo "START TRANSACTION;
UPDATE accounts SET balance = balance - 7, version = version + 1 WHERE id = $a;
UPDATE accounts SET balance = balance + 7, version = version + 1 WHERE id = $b;
INSERT INTO ledger (a, b, note) VALUES ($a, $b, 'transfer');
INSERT INTO ledger_inno (a, b) VALUES ($a, $b);
COMMIT;"
    done
}
# READ COMMITTED: under REPEATABLE READ, MyRocks fails an UPDATE of a row
# another transaction changed since its own snapshot ("Deadlock found ...
# (snapshot conflict)"), which would end a client half way.
for w in w1:11 w2:22; do
    { echo "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;"
      transfers "${w#*:}" "$TRANSFERS"; } >"$dir/${w%:*}.sql"
done
for w in w1 w2; do
    mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$SOURCE_PORT" -u root \
        "$db" <"$dir/$w.sql" >"$dir/$w.out" 2>&1 &
    workload_pids+=($!)
done
sleep 1
result="$(my "SELECT bk_snapshot('jobs=2,label=myrocks')")"
like "$result" '^\{"binlog_file":"[^"]+","binlog_pos":[0-9]+,.*"snapshot_id":"[0-9TZ]+-[0-9a-f]{8}"' \
    "bk_snapshot() under load returns the snapshot's id and binlog coordinates" || diag "$result"
wait "${workload_pids[@]}"
workload_pids=()
snap_id="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result")"
snap_file="$(sed -n 's/.*"binlog_file":"\([^"]*\)".*/\1/p' <<<"$result")"
snap_pos="$(sed -n 's/.*"binlog_pos":\([0-9]*\).*/\1/p' <<<"$result")"
total="$(my "SELECT (SELECT COUNT(*) FROM $db.ledger), (SELECT COUNT(*) FROM $db.ledger_inno)")"
is "$total" "$((2 * TRANSFERS))	$((2 * TRANSFERS))" "the workload ran to its end" ||
    diag "$(cat "$dir/w1.out" "$dir/w2.out")"
my "FLUSH BINARY LOGS" >/dev/null

snapshot_listed() { "$BK" list --config "$dir/bk.conf" --source "$source_id" | grep -q "snapshot $snap_id at"; }
wait_for 60 "the snapshot archived" snapshot_listed
ok $? "bk list shows the snapshot once the shipper archived it"
out="$("$BK" snapshot-get --config "$dir/bk.conf" --source "$source_id" --snapshot "$snap_id" "$dir/snap" 2>&1)"
ok $? "bk snapshot-get rebuilds it, every table checked against its record" || diag "$out"
index_of() { # table name -> NNNNNN of its data file
    python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))
print("%06d" % [t["index"] for t in r["tables"] if t["database"]==sys.argv[2] and t["name"]==sys.argv[3]][0])' \
        "$dir/snap/snapshot.json" "$db" "$1"
}
acc="$dir/snap/data/$(index_of accounts).tsv"
led="$dir/snap/data/$(index_of ledger).tsv"
inno="$dir/snap/data/$(index_of ledger_inno).tsv"
is "$(awk -F'\t' '{s += $2} END {print s}' "$acc")" 100000 "sum(balance) in the snapshot is unchanged" ||
    diag "$(ls -la "$dir/snap/data")"
ledger_rows="$(wc -l <"$led")"
is "$(awk -F'\t' '{s += $3} END {print s}' "$acc")" "$((2 * ledger_rows))" \
    "sum(version) = 2 x ledger rows: the ROCKSDB tables (copied by different jobs) are one state"
is "$(wc -l <"$inno")" "$ledger_rows" "as many InnoDB ledger rows: both engines are in that one state"
[[ "$ledger_rows" -gt 0 && "$ledger_rows" -lt $((2 * TRANSFERS)) ]]
ok $? "the snapshot was taken mid-workload ($ledger_rows of $((2 * TRANSFERS)) transfers)"
engines="$(python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))
print(",".join("%s=%s:%s" % (t["name"], t["engine"], t["transactional"]) for t in sorted(r["tables"], key=lambda t: t["name"]) if t["database"]==sys.argv[2]))' \
    "$dir/snap/schema.json" "$db" 2>&1)"
is "$engines" "accounts=ROCKSDB:True,ledger=ROCKSDB:True,ledger_inno=InnoDB:True" \
    "schema.json records each table's engine, all read in the consistent read"

# The binlog up to the coordinates commits exactly the snapshot's transfers.
committed=0
for f in $(my 'SHOW BINARY LOGS' | cut -f1 | awk -v a="$first_file" -v b="$snap_file" '$0 >= a && $0 <= b'); do
    wait_for 60 "$f archived" "$BK" binlog-get --config "$dir/bk.conf" --source "$source_id" "$f" "$dir/$f" ||
        break
    stop=()
    [[ "$f" == "$snap_file" ]] && stop=(--stop-position="$snap_pos")
    n="$(mariadb-binlog "${stop[@]}" "$dir/$f" | grep -c '^#Q> INSERT INTO ledger (a, b, note)')"
    committed=$((committed + n))
done
is "$committed" "$ledger_rows" \
    "the archived binlog commits exactly the snapshot's transfers before $snap_file:$snap_pos"

mdl_line="$(grep "snapshot $snap_id: commits waited" "$dir/agent.log")"
like "$mdl_line" 'took metadata locks on [0-9]+ table\(s\) in [0-9]+ statement\(s\) each in [0-9]+ ms, while commits were blocked \(MyRocks tables\)' \
    "the readers took their metadata locks while commits were blocked (MyRocks tables)" || diag "$mdl_line"

# ---------------------------------------------------------------- restore
# A moment after the snapshot, then more changes past it.
dump() { "$1" "SELECT * FROM $db.accounts ORDER BY id; SELECT * FROM $db.ledger ORDER BY id;
                SELECT * FROM $db.ledger_inno ORDER BY id" 2>&1 | md5sum | cut -d' ' -f1; }
my "USE $db; UPDATE accounts SET balance = balance - 500, version = version + 1 WHERE id = 1;
    UPDATE accounts SET balance = balance + 500, version = version + 1 WHERE id = 2;
    DELETE FROM ledger WHERE id <= 10; DELETE FROM ledger_inno WHERE id <= 10" >/dev/null
position="$(my 'SHOW MASTER STATUS' | awk '{print $1 ":" $2}')"
moment_dump="$(dump my)"
moment_gtid="$(my 'SELECT @@gtid_binlog_pos')"
my "USE $db; UPDATE accounts SET balance = 0 WHERE id = 3; INSERT INTO ledger (a, b) VALUES (0, 0);
    INSERT INTO ledger_inno (a, b) VALUES (0, 0)" >/dev/null
isnt "$(dump my)" "$moment_dump" "the source changed after the moment restored to ($position)"

restore() {
    "$BK" restore --config "$dir/bk.conf" --source "$source_id" --mysql-socket "$TARGET_SOCKET" \
        --target-position "$position" "$@"
}
target_reset "$ROCKSDB_ARGS"
ok $? "a restore target with MyRocks loaded" || bail_out "$(cat "$dir/target-start.log")"
archived() { restore --dry-run; }
wait_for 60 "the binlog up to $position archived" archived
ok $? "the binlog up to $position is archived (bk restore --dry-run plans it)"

target_reset
ok $? "a restore target without MyRocks" || bail_out "$(cat "$dir/target-start.log")"
out="$(restore 2>&1)"
is $? 3 "bk restore into a server without MyRocks is refused (exit 3, a configuration error)"
like "$out" "2 table\\(s\\) of engine ROCKSDB \\($db\\.accounts, $db\\.ledger\\).*plugin_load_add = ha_rocksdb" \
    "... naming the engine, its tables and the plugin to load" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN
            ('mysql', 'information_schema', 'performance_schema', 'sys'); SELECT @@gtid_binlog_pos")" \
    "0" "... before anything was written: no database, no GTID state on the target"

# A part loads in one transaction, and MyRocks fails a transaction that
# locks more rows than rocksdb_max_row_locks: 1048576 by default, fewer than
# a part of 32 MiB of short rows holds.  The loading sessions' unique_checks
# = 0 makes MyRocks lock no row, so the limit must not matter: this target
# allows 50, below the 100 accounts (the transactions replayed lock 10 rows
# at most).
target_reset "$ROCKSDB_ARGS --rocksdb-max-row-locks=50"
ok $? "a fresh restore target with MyRocks loaded" || bail_out "$(cat "$dir/target-start.log")"
is "$(tmy 'SELECT @@global.rocksdb_max_row_locks')" 50 "... whose rocksdb_max_row_locks is 50"
out="$(restore 2>&1)"
ok $? "bk restore --target-position $position into it" || diag "$out"
is "$(tmy "SELECT GROUP_CONCAT(TABLE_NAME, '=', ENGINE ORDER BY TABLE_NAME)
            FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$db'")" \
    "accounts=ROCKSDB,ledger=ROCKSDB,ledger_inno=InnoDB" "the restored tables keep their engines"
is "$(dump tmy)" "$moment_dump" "every row of the three tables is the source's at $position"
# Ten ledger rows deleted, two accounts updated once more at the moment.
is "$(tmy "SELECT SUM(balance), SUM(version) = 2 * (SELECT COUNT(*) + 10 FROM $db.ledger) + 2 FROM $db.accounts")" \
    "100000	1" "sum(balance) and sum(version) hold on the target"
is "$(tmy 'SELECT @@gtid_binlog_pos')" "$moment_gtid" "the target's GTID position is the source's at $position"

kill "$agent_pid" && wait "$agent_pid"
is $? 0 "the agent stops cleanly"
agent_pid=""

done_testing
