#!/usr/bin/env bash
# SELECT bk_snapshot() on a real MariaDB through the real bk-mysql-agent:
#
#  - consistent and exact under load, with the query cache on and 600
#    more tables than the table caches hold: concurrent bank transfers
#    (each one updates two accounts and inserts a ledger row) keep
#    sum(balance) fixed and sum(version) = 2 x ledger rows; the snapshot,
#    rebuilt with bk snapshot-get, must satisfy both across tables copied
#    by different jobs, and hold exactly the transfers the archived binlog
#    commits before the snapshot's coordinates; the readers' metadata
#    locks are taken before commits are blocked;
#  - accounts created while the snapshot reads 1500 accounts are each in
#    the snapshot or logged after its coordinates, never lost between;
#    server definitions (CREATE SERVER) made meanwhile are in it as stored
#    (passwords with quotes and backslashes), the first ones without a gap,
#    and no password is in the agent's log;
#  - under sysbench oltp_read_write with DDL in a loop, the snapshot
#    succeeds and every sbtest table has its row count;
#  - no hang: LOCK TABLES t WRITE; SELECT bk_snapshot() is refused at
#    once (the snapshot would wait for the caller's own locks), BACKUP
#    STAGE START; SELECT bk_snapshot() fails within the lock wait, naming
#    the caller's own session; KILL QUERY, max_statement_time (SET STATEMENT ... FOR), or
#    the client going away, ends a waiting snapshot promptly and the agent
#    cancels it;
#  - a reader that stops reading (the agent stopped 3 s while a reader
#    streams 96 MB) under a server net_write_timeout and wait_timeout of
#    1 s: the snapshot still succeeds (the agent sets its own);
#  - once per statement (FROM seq_1_to_5), a USAGE-only user refused,
#    DROP FUNCTION during a snapshot leaves the server up;
#  - no plaintext in Kafka or the repository; bk verify checks it all.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=SCRIPTDIR/../lib/tap.sh
source "$ROOT/tests/lib/tap.sh"
SERVICES="$ROOT/scripts/services"
eval "$("$SERVICES" env)" || bail_out "'scripts/services env' failed"
"$SERVICES" status mariadb >/dev/null 2>&1 || bail_out "mariadb is not running"
"$SERVICES" status kafka >/dev/null 2>&1 || bail_out "kafka is not running"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-mariadb-snapshot.XXXXXX")"
chmod 755 "$dir"
# shellcheck source=SCRIPTDIR/../lib/bk_env.sh
source "$ROOT/tests/lib/bk_env.sh"
# shellcheck source=SCRIPTDIR/../lib/mariadb.sh
source "$ROOT/tests/lib/mariadb.sh"
AGENT="$BK_AGENT_BIN"
agent_pid=""
shipper_pid=""
workload_pids=()
db=bksnap_$$
role="bk_test_role_$$"
agent_user="bk_agent_$$"


drop_test_accounts() {
    my "SELECT CONCAT('DROP USER ', QUOTE(User), '@', QUOTE(Host), ';')
        FROM mysql.global_priv WHERE User LIKE 'bksnap\\_acl\\_%' OR User LIKE 'bksnap\\_fill\\_%'" |
        my_script >/dev/null
    my "SELECT CONCAT('DROP SERVER ', Server_name, ';') FROM mysql.servers
        WHERE Server_name LIKE 'bksnap\\_srv\\_%'" | my_script >/dev/null
}

# shellcheck disable=SC2329 # called by the trap
cleanup() {
    for pid in "${workload_pids[@]}"; do kill "$pid" 2>/dev/null; done
    my "XA ROLLBACK 'bks_dangling'" >/dev/null 2>&1
    [[ -n "${old_nwt:-}" ]] && my "SET GLOBAL net_write_timeout = $old_nwt" >/dev/null
    [[ -n "${old_wt:-}" ]] && my "SET GLOBAL wait_timeout = $old_wt" >/dev/null
    [[ -n "${old_toc:-}" ]] && my "SET GLOBAL table_open_cache = $old_toc" >/dev/null
    [[ -n "${old_tdc:-}" ]] && my "SET GLOBAL table_definition_cache = $old_tdc" >/dev/null
    [[ -n "${old_qct:-}" ]] && my "SET GLOBAL query_cache_type = $old_qct" >/dev/null
    [[ -n "${old_qcs:-}" ]] && my "SET GLOBAL query_cache_size = $old_qcs" >/dev/null
    [[ -n "$agent_pid" ]] && kill -CONT "$agent_pid" 2>/dev/null
    [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    [[ -n "$shipper_pid" ]] && kill "$shipper_pid" 2>/dev/null && wait "$shipper_pid" 2>/dev/null
    my "DROP DATABASE IF EXISTS $db; DROP DATABASE IF EXISTS ${db}_sb;
        DROP USER IF EXISTS bksnap_usage@'127.0.0.1'; DROP ROLE IF EXISTS $role;
        DROP USER IF EXISTS $agent_user@'127.0.0.1'" >/dev/null
    drop_test_accounts
    rm -rf "$dir"
}
trap cleanup EXIT

bk_test_init mariadb-snapshot
source_id="mdb-$$"
server_pid="$(cat "$(my 'SELECT @@pid_file')")"
server_user="$(ps -o user= -p "$server_pid" | tr -d ' ')"
# The agent runs as a user with exactly the grants the README lists.
agent_user="bk_agent_$$"
printf 'pw-%s\n' "$RANDOM$RANDOM" >"$dir/agent.password"
chmod 600 "$dir/agent.password"
out="$(my "CREATE USER $agent_user@'127.0.0.1' IDENTIFIED BY '$(head -1 "$dir/agent.password")';
           GRANT RELOAD, REPLICATION SLAVE, BINLOG MONITOR, PROCESS, SELECT, SHOW VIEW, TRIGGER, EVENT,
             LOCK TABLES ON *.* TO $agent_user@'127.0.0.1'")"
ok $? "an agent user with the README's grants" || diag "$out"
bk_test_agent_conf "mysql_host = 127.0.0.1" "mysql_port = $MYSQL_TCP_PORT" \
    "mysql_user = $agent_user" "mysql_password_file = $dir/agent.password" \
    "server_id = $((4000 + $$ % 1000))" "state_dir = $dir/agent-state" \
    "control_user = $server_user" "roles = $role" >"$dir/agent.conf"

start_agent() {
    "$AGENT" --config "$dir/agent.conf" >>"$dir/agent.log" 2>&1 &
    agent_pid=$!
    wait_for 30 "agent streaming" grep -q "streaming the binlog from" "$dir/agent.log"
}

# A role of its own (the agent's "roles" setting): CREATE ROLE grants it to
# its creator, the account the test calls the functions with.
out="$(my "CREATE ROLE $role")"
ok $? "role $role created and granted to the test's account" || diag "$out"
out="$(my "DROP FUNCTION IF EXISTS bk_snapshot; DROP FUNCTION IF EXISTS bk_snapshot_cancel;
           DROP FUNCTION IF EXISTS bk_status;
           CREATE FUNCTION bk_snapshot RETURNS STRING SONAME 'bk_udf.so';
           CREATE FUNCTION bk_snapshot_cancel RETURNS STRING SONAME 'bk_udf.so';
           CREATE FUNCTION bk_status RETURNS STRING SONAME 'bk_udf.so'")"
ok $? "the bk functions are created" || diag "$out"

start_agent
ok $? "bk-mysql-agent streams" || bail_out "$(cat "$dir/agent.log")"
# The README's grants let it ask where the binlog ends (PROCESS included):
# it asks on the first heartbeat (1 s), and without PROCESS it is refused.
sleep 3
grep -q "cannot ask the server where its binlog ends" "$dir/agent.log"
isnt $? 0 "... and asks the server where its binlog ends without a WARNING" ||
    diag "$(grep 'cannot ask' "$dir/agent.log")"
bk_test_start_shipper

# ---------------------------------------------------------------- bank
out="$(my "CREATE DATABASE $db;
    CREATE TABLE $db.accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL,
                               version INT NOT NULL) ENGINE=InnoDB;
    CREATE TABLE $db.ledger (id INT AUTO_INCREMENT PRIMARY KEY, a INT, b INT,
                             note VARCHAR(64)) ENGINE=InnoDB;
    CREATE TABLE $db.marker (v VARBINARY(100)) ENGINE=InnoDB;
    CREATE TABLE $db.odd (id INT PRIMARY KEY, b VARBINARY(64), t VARCHAR(64) CHARACTER SET utf8mb4,
                          d DATETIME(6), f DOUBLE) ENGINE=InnoDB;
    INSERT INTO $db.odd VALUES
      (1, 0x005C095C0A5C4E0D0A, 'tab\there\\N', '2026-12-02 10:00:00.123456', 1.5),
      (2, NULL, '\\N', NULL, NULL), (3, '', '', '0000-00-00 00:00:00', -0.25),
      (4, RANDOM_BYTES(64), _utf8mb4 0xC3A9E282ACF09F9880, '1970-01-01 00:00:01', 1e300);
    INSERT INTO $db.accounts SELECT seq, 1000, 0 FROM $db.seq_1_to_100")"
ok $? "test tables created" || bail_out "$out"
marker="bk-plaintext-marker-$RANDOM$RANDOM"
my "INSERT INTO $db.marker VALUES ('$marker')" >/dev/null
# 600 more tables, more than the server's table caches hold (lowered while
# the snapshot runs): the readers' metadata locks take a while, the server
# opening each table anew, long enough for transfers to commit meanwhile.
# A read view made then, before commits were blocked, would miss them,
# though the coordinates come after them.
python3 -c 'print("".join("CREATE TABLE pad_%03d (id INT PRIMARY KEY) ENGINE=InnoDB;" % i for i in range(600)))' |
    sed "1s/^/USE $db;/" | my_script >/dev/null
is "$(my "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$db' AND TABLE_NAME LIKE 'pad\\_%'")" 600 \
    "600 more tables for the metadata locks to take time"
my "FLUSH BINARY LOGS" >/dev/null
first_file="$(my 'SHOW MASTER STATUS' | cut -f1)"

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
COMMIT;"
    done
}
transfers 11 2500 >"$dir/w1.sql"
transfers 22 2500 >"$dir/w2.sql"
for w in w1 w2; do
    mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_TCP_PORT" -u root \
        "$db" <"$dir/$w.sql" >"$dir/$w.out" 2>&1 &
    workload_pids+=($!)
done
old_toc="$(my 'SELECT @@table_open_cache')"
old_tdc="$(my 'SELECT @@table_definition_cache')"
my "SET GLOBAL table_open_cache = 10; SET GLOBAL table_definition_cache = 400" >/dev/null
# The query cache on, as some DBAs have it: storing a result makes InnoDB
# open the transaction's read view, which must not happen before commits
# are blocked.
old_qct="$(my 'SELECT @@global.query_cache_type')"
old_qcs="$(my 'SELECT @@global.query_cache_size')"
out="$(my "SET GLOBAL query_cache_size = 16777216; SET GLOBAL query_cache_type = ON")"
ok $? "the query cache is on during the snapshot" || diag "$out"
sleep 1
result="$(my "SELECT bk_snapshot('jobs=2,label=bank')")"
my "SET GLOBAL table_open_cache = $old_toc; SET GLOBAL table_definition_cache = $old_tdc;
    SET GLOBAL query_cache_type = $old_qct; SET GLOBAL query_cache_size = $old_qcs" >/dev/null
like "$result" '^\{"binlog_file":"[^"]+","binlog_pos":[0-9]+,.*"snapshot_id":"[0-9TZ]+-[0-9a-f]{8}"' \
    "bk_snapshot() under load returns the snapshot's id and binlog coordinates" || diag "$result"
busy="$(wc -l <"$dir/w1.out") $(my "SELECT COUNT(*) FROM $db.ledger")"
wait "${workload_pids[@]}"
workload_pids=()
snap_id="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result")"
snap_file="$(sed -n 's/.*"binlog_file":"\([^"]*\)".*/\1/p' <<<"$result")"
snap_pos="$(sed -n 's/.*"binlog_pos":\([0-9]*\).*/\1/p' <<<"$result")"
total="$(my "SELECT COUNT(*) FROM $db.ledger")"
[[ "$total" == 5000 ]]
ok $? "the workload ran to its end ($total transfers; $busy at the snapshot)" ||
    diag "$(cat "$dir/w1.out" "$dir/w2.out")"
my "FLUSH BINARY LOGS" >/dev/null

snapshot_listed() { "$BK" list --config "$dir/bk.conf" --source "$source_id" | grep -q "snapshot $snap_id at"; }
wait_for 60 "the snapshot archived" snapshot_listed
ok $? "bk list shows the snapshot once the shipper archived it"
out="$("$BK" snapshot-get --config "$dir/bk.conf" --source "$source_id" --snapshot "$snap_id" "$dir/snap" 2>&1)"
ok $? "bk snapshot-get rebuilds it, every table checked against its record" || diag "$out"
out="$("$BK" snapshot-get --config "$dir/bk.conf" --source "$source_id" --snapshot "$snap_id" "$dir/snap" 2>&1)"
is $? 2 "bk snapshot-get into a DIR that exists exits 2 (usage), not 5" || diag "$out"
like "$out" 'DIR must not exist yet' "and says DIR must be new"

index_of() { # table name -> NNNNNN of its data file
    python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))
print("%06d" % [t["index"] for t in r["tables"] if t["database"]==sys.argv[2] and t["name"]==sys.argv[3]][0])' \
        "$dir/snap/snapshot.json" "$db" "$1"
}
acc="$dir/snap/data/$(index_of accounts).tsv"
led="$dir/snap/data/$(index_of ledger).tsv"
is "$(awk -F'\t' '{s += $2} END {print s}' "$acc")" 100000 "sum(balance) in the snapshot is unchanged" ||
    diag "$acc: $(head -3 "$acc" 2>&1; ls -la "$dir/snap/data"; python3 -m json.tool "$dir/snap/snapshot.json" | head -40)"
ledger_rows="$(wc -l <"$led")"
is "$(awk -F'\t' '{s += $3} END {print s}' "$acc")" "$((2 * ledger_rows))" \
    "sum(version) = 2 x ledger rows: accounts and ledger (copied by different jobs) are one state"
[[ "$ledger_rows" -gt 0 && "$ledger_rows" -lt 5000 ]]
ok $? "the snapshot was taken mid-workload ($ledger_rows of 5000 transfers)"

# The data files load back with LOAD DATA into an identical table.
odd="$dir/snap/data/$(index_of odd).tsv"
out="$(my "CREATE TABLE $db.odd_loaded LIKE $db.odd;
           LOAD DATA INFILE '$odd' INTO TABLE $db.odd_loaded CHARACTER SET binary;
           SELECT (SELECT GROUP_CONCAT(HEX(CONCAT_WS('|', id, HEX(b), HEX(t), d, f)) ORDER BY id) FROM $db.odd) =
                  (SELECT GROUP_CONCAT(HEX(CONCAT_WS('|', id, HEX(b), HEX(t), d, f)) ORDER BY id) FROM $db.odd_loaded)")"
is "$out" 1 "a table of NULs, tabs, newlines, backslashes, NULL, binary and UTF-8 loads back byte-exact with LOAD DATA" ||
    diag "$out"

# The binlog up to the coordinates commits exactly the snapshot's transfers.
files="$(my 'SHOW BINARY LOGS' | cut -f1 | awk -v a="$first_file" -v b="$snap_file" '$0 >= a && $0 <= b')"
committed=0
for f in $files; do
    got=1
    wait_for 60 "$f archived" "$BK" binlog-get --config "$dir/bk.conf" --source "$source_id" "$f" "$dir/$f" || got=0
    [[ "$got" == 1 ]] || break
    if [[ "$f" == "$snap_file" ]]; then
        n="$(mariadb-binlog --stop-position="$snap_pos" "$dir/$f" | grep -c '^#Q> INSERT INTO ledger')"
    else
        n="$(mariadb-binlog "$dir/$f" | grep -c '^#Q> INSERT INTO ledger')"
    fi
    committed=$((committed + n))
done
is "$committed" "$ledger_rows" \
    "the archived binlog commits exactly the snapshot's transfers before $snap_file:$snap_pos"

# The metadata locks were taken before commits were blocked: commits did
# not wait for the server to open every table for each reader.
mdl_line="$(grep "snapshot $snap_id: commits waited" "$dir/agent.log")"
like "$mdl_line" 'took metadata locks on [0-9]+ table\(s\) in [0-9]+ statement\(s\) each in [0-9]+ ms, before commits were blocked' \
    "the readers took their metadata locks before commits were blocked" || diag "$mdl_line"
diag "$(sed -n 's/.*\(commits waited [0-9]* ms\).* each in \([0-9]*\) ms.*/\1; the metadata locks took \2 ms/p' <<<"$mdl_line")"

# ---------------------------------------------------------------- accounts
# BACKUP STAGE BLOCK_DDL does not hold account statements off: one logged
# after the snapshot read the accounts and before its consistent point would
# be in neither the snapshot nor the binlog after it.  1500 accounts make
# reading them take a while; meanwhile a client creates accounts in a loop.
accounts_file="$(my 'SHOW MASTER STATUS' | cut -f1)"
python3 -c 'print("".join("CREATE USER bksnap_fill_%04d@localhost;" % i for i in range(1500)))' | my_script >/dev/null
is "$(my "SELECT COUNT(*) FROM mysql.global_priv WHERE User LIKE 'bksnap\\_fill\\_%'")" 1500 \
    "1500 accounts for the snapshot to read"
(
    for i in $(seq 1 300); do
        my "CREATE USER bksnap_acl_$i@localhost" >/dev/null || break
    done
) &
creator=$!
# Server definitions too, each password holding a quote and a backslash.
(
    for i in $(seq 1 200); do
        # One line: SHOW BINLOG EVENTS gives it as written.
        my "CREATE SERVER bksnap_srv_$i FOREIGN DATA WRAPPER mysql OPTIONS (HOST 'h$i', PORT $i, USER 'u$i', PASSWORD 'srv''pw\\\\$i')" \
            >/dev/null || break
    done
) &
server_creator=$!
sleep 0.3
result3="$(my "SELECT bk_snapshot('label=accounts')")"
like "$result3" '"snapshot_id"' "bk_snapshot() while accounts are being created" || diag "$result3"
wait "$creator" "$server_creator"
snap3="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result3")"
snap3_file="$(sed -n 's/.*"binlog_file":"\([^"]*\)".*/\1/p' <<<"$result3")"
snap3_pos="$(sed -n 's/.*"binlog_pos":\([0-9]*\).*/\1/p' <<<"$result3")"
snap3_listed() { "$BK" list --config "$dir/bk.conf" --source "$source_id" | grep -q "snapshot $snap3 at"; }
wait_for 60 "the accounts snapshot archived" snap3_listed
out="$("$BK" snapshot-get --config "$dir/bk.conf" --source "$source_id" --snapshot "$snap3" "$dir/snap3" 2>&1)"
ok $? "the accounts snapshot rebuilds and checks" || diag "$out"
# Where each created account's CREATE USER is logged, from the file that was
# current before the accounts were made.
for f in $(my 'SHOW BINARY LOGS' | cut -f1); do
    [[ "$f" < "$accounts_file" ]] && continue
    my "SHOW BINLOG EVENTS IN '$f'" | awk -F'\t' -v f="$f" \
        'match($6, /^CREATE USER bksnap_acl_[0-9]+@/) { print f "\t" $2 "\t" substr($6, 13, RLENGTH - 13) }'
done >"$dir/acl-events.tsv"
verdict="$(python3 -c 'import json,sys
schema=json.load(open(sys.argv[1]))
captured={a["user"] for a in schema["accounts"] if a["user"].startswith("bksnap_acl_")}
snap=(sys.argv[3], int(sys.argv[4]))
before=after=lost=0
names=[]
for line in open(sys.argv[2]):
    f,pos,user=line.rstrip("\n").split("\t")
    if (f,int(pos)) >= snap:
        after+=1
    elif user in captured:
        before+=1
    else:
        lost+=1; names.append(user)
print("%d %d %d %s" % (lost, before, after, " ".join(names[:5])))' \
    "$dir/snap3/schema.json" "$dir/acl-events.tsv" "$snap3_file" "$snap3_pos")"
read -r lost captured after lost_names <<<"$verdict"
is "$lost" 0 "no account created during the snapshot is lost ($captured in the snapshot, $after logged after its coordinates)" ||
    diag "lost: $lost_names"
((captured + after == 300))
ok $? "... and all 300 were accounted for" || diag "$verdict"
# MariaDB logs no CREATE SERVER in the binlog: what the snapshot holds is
# checked on its own.  Created one after another, they are bksnap_srv_1 to
# N, each as stored.
verdict="$(python3 -c 'import json,sys
schema=json.load(open(sys.argv[1]))
servers={s["name"]: s for s in schema.get("servers", []) if s["name"].startswith("bksnap_srv_")}
wrong=[]
for i in range(1, len(servers) + 1):
    s=servers.get("bksnap_srv_%d" % i)
    if s is None or (s["host"], s["port"], s["user"], s["password"], s["wrapper"]) != ("h%d" % i, i, "u%d" % i, "srv\x27pw\\%d" % i, "mysql"):
        wrong.append("bksnap_srv_%d" % i)
print("%d %d %s" % (len(servers), len(wrong), " ".join(wrong[:5])))' "$dir/snap3/schema.json")"
read -r captured wrong wrong_names <<<"$verdict"
((captured > 0))
ok $? "server definitions created during the snapshot are in it ($captured of 200)" || diag "$verdict"
is "$wrong" 0 "... the first ones without a gap, every option as stored, the password's quote and backslash too" ||
    diag "$wrong_names"
is "$(my "SELECT COUNT(*) FROM mysql.servers WHERE Server_name LIKE 'bksnap\\_srv\\_%'")" 200 \
    "... and none of the 200 CREATE SERVER failed while the snapshot held them off"
grep -qF "srv'pw" "$dir/agent.log"
is "$?" 1 "... and no password of theirs is in the agent's log"
drop_test_accounts

# ---------------------------------------------------------------- sysbench + DDL
sb=(sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1
    --mysql-port="$MYSQL_TCP_PORT" --mysql-user=root --mysql-db="${db}_sb"
    --tables=2 --table-size=5000)
my "CREATE DATABASE ${db}_sb" >/dev/null
"${sb[@]}" prepare >"$dir/sb-prepare.log" 2>&1
ok $? "sysbench prepare" || diag "$(tail -5 "$dir/sb-prepare.log")"
"${sb[@]}" --threads=2 --time=12 --report-interval=0 run >"$dir/sb-run.log" 2>&1 &
workload_pids+=($!)
(
    for i in $(seq 1 40); do
        my "CREATE TABLE ${db}_sb.ddl_$i (id INT PRIMARY KEY); ALTER TABLE ${db}_sb.ddl_$i ADD COLUMN c INT;
            DROP TABLE ${db}_sb.ddl_$i" >/dev/null
        sleep 0.2
    done
) &
workload_pids+=($!)
sleep 2
result2="$(my "SELECT bk_snapshot('{\"jobs\": 2, \"label\": \"sysbench\"}')")"
like "$result2" '"snapshot_id"' "bk_snapshot() succeeds under sysbench oltp_read_write and a DDL loop" ||
    diag "$result2"
wait "${workload_pids[@]}"
workload_pids=()
snap2="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result2")"
snap2_listed() { "$BK" list --config "$dir/bk.conf" --source "$source_id" | grep -q "snapshot $snap2 at"; }
wait_for 60 "the sysbench snapshot archived" snap2_listed
out="$("$BK" snapshot-get --config "$dir/bk.conf" --source "$source_id" --snapshot "$snap2" "$dir/snap2" 2>&1)"
ok $? "the sysbench snapshot rebuilds and checks" || diag "$out"
rows="$(python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))
print(" ".join(str(t["rows"]) for t in sorted(r["tables"], key=lambda t: t["name"]) if t["database"]==sys.argv[2] and t["name"].startswith("sbtest")))' \
    "$dir/snap2/snapshot.json" "${db}_sb")"
is "$rows" "5000 5000" "every sbtest table has its 5000 rows in the snapshot (oltp_read_write keeps the count)"

# ---------------------------------------------------------------- no hang
# The caller's own locks: the agent's connections would wait for them
# while the caller waits for the agent (it took the 10 s lock wait, then
# blamed "Another session").
start=$SECONDS
out="$(my "LOCK TABLES $db.accounts WRITE; SELECT bk_snapshot()")"
elapsed=$((SECONDS - start))
like "$out" '^ERROR 1105 .*bk_snapshot: this session is under LOCK TABLES, .*: run UNLOCK TABLES first' \
    "LOCK TABLES t WRITE; SELECT bk_snapshot() is refused, naming LOCK TABLES" || diag "$out"
((elapsed < 3))
ok $? "... at once, not after the lock wait (${elapsed}s)"
start=$SECONDS
out="$(my "BACKUP STAGE START; SELECT bk_snapshot()")"
elapsed=$((SECONDS - start))
like "$out" '"BACKUP STAGE START" failed: Lock wait timeout exceeded.*the one calling bk_snapshot\(\) \(its own LOCK TABLES or BACKUP STAGE' \
    "BACKUP STAGE START; SELECT bk_snapshot() fails, the hint naming the caller's own session" || diag "$out"
((elapsed < 30))
ok $? "... within the lock wait, not a hang (${elapsed}s)"

# An XA transaction left prepared (its transaction manager gone): a logical
# snapshot cannot read its changes, nor a restore replay its XA COMMIT.
# The snapshot waits for it to end, then fails naming it.
my "XA START 'bks_dangling'; INSERT INTO $db.ledger (a, b, note) VALUES (0, 0, 'xa');
    XA END 'bks_dangling'; XA PREPARE 'bks_dangling'" >/dev/null
start=$SECONDS
out="$(my "SELECT bk_snapshot('label=xa-dangling')")"
elapsed=$((SECONDS - start))
like "$out" "ERROR.*XA transaction 'bks_dangling' .*was still prepared after waiting 10 s" \
    "a snapshot while an XA transaction stays prepared fails, naming it" || diag "$out"
((elapsed >= 9 && elapsed < 30))
ok $? "... after waiting 10 s for it to end (${elapsed}s)"
is "$(my "XA ROLLBACK 'bks_dangling'; SELECT COUNT(*) FROM $db.ledger WHERE note = 'xa'")" 0 \
    "... and the transaction is left to its owner: still prepared, rolled back here"

# A snapshot waiting for a table lock held elsewhere, killed.
(my "LOCK TABLES $db.ledger WRITE; SELECT SLEEP(8)" >/dev/null) &
locker=$!
sleep 1
my "SELECT bk_snapshot('label=killed')" >"$dir/killed.out" 2>&1 &
waiter=$!
sleep 1.5
conn="$(my "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT bk_snapshot(''label=killed'')%'" | head -1)"
start=$SECONDS
my "KILL QUERY $conn" >/dev/null
wait "$waiter"
elapsed=$((SECONDS - start))
like "$(cat "$dir/killed.out")" 'killed' "KILL QUERY ends a waiting bk_snapshot() with a clear error"
((elapsed <= 3))
ok $? "... promptly (${elapsed}s)"
cancelled() { my 'SELECT bk_status()' | grep -q '"state":"\(cancelled\|failed\)"'; }
wait_for 15 "the agent cancels the killed snapshot" cancelled
ok $? "the agent cancels the snapshot whose caller went away"
wait "$locker"

# A client that goes away (killed, its connection dropped) while its
# bk_snapshot() waits for a table lock held elsewhere.
callers_gone="$(grep -c 'the caller went away' "$dir/agent.log")"
(my "LOCK TABLES $db.ledger WRITE; SELECT SLEEP(8)" >/dev/null) &
locker=$!
sleep 1
mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_TCP_PORT" -u root \
    -e "SELECT bk_snapshot('label=client-gone')" >/dev/null 2>&1 &
client=$!
sleep 1.5
kill -KILL "$client"
wait "$client" 2>/dev/null
gone_at=$SECONDS
# The server kills no statement whose client went away; the UDF asks the
# connection at each tick and closes the agent's socket.  The snapshot,
# blocked in a lock wait, is cancelled when the wait returns; without the
# check it would go on once the lock is released and end done.
# shellcheck disable=SC2317,SC2329 # called through wait_for
caller_gone() { [[ "$(grep -c 'the caller went away' "$dir/agent.log")" -gt "$callers_gone" ]]; }
wait_for 5 "the agent to see the caller gone" caller_gone
ok $? "a client that goes away: the agent sees its caller gone ($((SECONDS - gone_at)) s) and cancels" ||
    diag "$(tail -n 5 "$dir/agent.log")"
# shellcheck disable=SC2317,SC2329 # called through wait_for
cancelled_only() { my 'SELECT bk_status()' | grep -q '"state":"cancelled"'; }
wait_for 20 "the snapshot of the client that went away cancelled" cancelled_only
ok $? "... and the snapshot ends cancelled, not done" || diag "$(my 'SELECT bk_status()')"
wait "$locker"

# max_statement_time ends a waiting bk_snapshot() too: the server's timer
# kills the statement softly (KILL_TIMEOUT), which thd_killed() did not
# report, so the call waited for the whole snapshot and the snapshot went
# on.  The UDF asks thd_kill_level(); the agent cancels as for KILL QUERY.
snapshot_state() {
    my 'SELECT bk_status()' |
        python3 -c 'import json, sys; s = json.load(sys.stdin)["snapshot"] or {}; print(s.get("snapshot_id", ""), s.get("state", ""))' 2>/dev/null
}
read -r before_id _ < <(snapshot_state)
(my "LOCK TABLES $db.ledger WRITE; SELECT SLEEP(8)" >/dev/null) &
locker=$!
sleep 1
start=$SECONDS
out="$(my "SET STATEMENT max_statement_time = 2 FOR SELECT bk_snapshot('label=timed-out')")"
elapsed=$((SECONDS - start))
like "$out" 'bk_snapshot: query interrupted \(max_statement_time, or KILL SOFT\); the agent cancels the snapshot' \
    "max_statement_time ends a waiting bk_snapshot() with a clear error" || diag "$out"
((elapsed <= 5))
ok $? "... at the time limit, not when the snapshot ends (${elapsed}s)"
read -r timed_out_id _ < <(snapshot_state)
isnt "$timed_out_id" "$before_id" "... and a snapshot had started ($timed_out_id)"
# shellcheck disable=SC2317,SC2329 # called through wait_for
timed_out_cancelled() { [[ "$(snapshot_state)" == "$timed_out_id cancelled" ]]; }
wait_for 20 "the timed-out snapshot cancelled" timed_out_cancelled
ok $? "the agent cancels the snapshot whose statement timed out: bk_status() says cancelled" ||
    diag "$(my 'SELECT bk_status()')"
grep -q "snapshot $timed_out_id: the caller went away" "$dir/agent.log"
ok $? "... and its log says the caller went away" || diag "$(tail -n 5 "$dir/agent.log")"
wait "$locker"

# complete-until while a snapshot runs.  It stops before the oldest running
# statement's second, but not the snapshot's: they only read, and a table
# read can last hours.  Here a snapshot (wait=false: a waiting bk_snapshot()
# is its caller's running statement, which counts) waits for a table lock an
# idle session holds while commits go on; the ranges sent meanwhile must claim
# past its start.  Before, they stayed before the second it began.
mkfifo "$dir/hold.fifo"
my_script <"$dir/hold.fifo" >"$dir/hold.out" &
holder=$!
exec 9>"$dir/hold.fifo"
echo "LOCK TABLES $db.ledger WRITE;" >&9
sleep 1
snap_from="$(my 'SELECT UNIX_TIMESTAMP()')"
out="$(my "SELECT bk_snapshot('wait=false,label=held')")"
like "$out" '"state":"running"' "a snapshot waiting for a lock held by an idle session" || diag "$out"
for v in 1 2 3 4 5; do
    my "INSERT INTO $db.marker VALUES ('held-$v')" >/dev/null
    sleep 1
done
waiting="$(my "SELECT COUNT(*) FROM information_schema.PROCESSLIST
               WHERE USER = '$agent_user' AND COMMAND = 'Query' AND TIME >= 4")"
until_max="$(timeout 20 kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.binlog" -o beginning -e -q \
    -f '%h\n' 2>/dev/null | sed -n 's/.*bk-meta-complete-until=\([0-9]*\).*/\1/p' | sort -n | tail -1)"
echo "UNLOCK TABLES;" >&9
exec 9>&-
wait "$holder"
((waiting >= 1))
ok $? "... whose reads waited for it ($waiting statements of the agent's running 4 s)"
((${until_max:-0} > (snap_from + 3) * 1000))
ok $? "... and complete-until moves on meanwhile: $until_max, past the snapshot's start ${snap_from}000 + 3 s"
held_done() { my 'SELECT bk_status()' | grep -q '"state":"done"'; }
wait_for 30 "the held snapshot done" held_done
ok $? "... and the snapshot ends done once the lock is released" || diag "$(my 'SELECT bk_status()')"

# bk_snapshot_cancel(id) of a snapshot started with wait=false, waiting for a
# table lock held elsewhere.
(my "LOCK TABLES $db.ledger WRITE; SELECT SLEEP(6)" >/dev/null) &
locker=$!
sleep 1
out="$(my "SELECT bk_snapshot('{\"wait\": false, \"label\": \"to-cancel\"}')")"
like "$out" '"state":"running"' "bk_snapshot(wait=false) returns at once, running" || diag "$out"
cancel_id="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$out")"
out="$(my "SELECT bk_snapshot_cancel('$cancel_id')")"
like "$out" '"cancel_requested":true' "bk_snapshot_cancel(id) is accepted" || diag "$out"
cancelled_by_id() { my 'SELECT bk_status()' | grep -q "\"snapshot_id\":\"$cancel_id\",\"state\":\"cancelled\"\|\"state\":\"cancelled\".*$cancel_id"; }
wait_for 20 "the snapshot cancelled" cancelled_by_id
ok $? "... and the snapshot ends cancelled" || diag "$(my 'SELECT bk_status()')"
like "$(my "SELECT bk_snapshot_cancel('20000101T000000Z-00000000')")" 'ERROR.*no snapshot' \
    "cancelling an unknown id is an error"
# The agent's message used to be cut inside a character: no reply at all.
is "$(my "SELECT bk_snapshot_cancel(REPEAT('€', 340))")" \
    "ERROR 1105 (HY000) at line 1: bk_snapshot_cancel: no snapshot \"$(printf '€%.0s' $(seq 1 64))...\" on this agent" \
    "a long id of multi-byte characters: its first 64 characters are quoted"
# An argument that names no option is refused like NULL, not taken for the
# defaults: an unset or emptied variable must not start a snapshot.
before="$(grep -c 'INFO: snapshot [0-9A-Za-z-]* started (' "$dir/agent.log")"
like "$(my "SET @o = ''; SELECT bk_snapshot(@o)")" \
    '^ERROR 1105 \(HY000\) at line 1: bk_snapshot: options are empty; omit the argument for the defaults$' \
    "bk_snapshot(@o) with @o = '' is refused"
like "$(my "SELECT bk_snapshot(',')")" 'bk_snapshot: options are empty' "bk_snapshot(',') is refused"
like "$(my "SELECT bk_snapshot('wait=false,,')")" 'bk_snapshot: option 2 of "wait=false,," is empty' \
    "bk_snapshot('wait=false,,') is refused, naming the empty item"
is "$(($(grep -c 'INFO: snapshot [0-9A-Za-z-]* started (' "$dir/agent.log") - before))" 0 "... and none of them started a snapshot"
like "$(my "SELECT bk_snapshot('{\"€€\": 1}')")" '^ERROR 1105 \(HY000\) at line 1: bk_snapshot: unknown option "€€"' \
    "an agent's message is not prefixed twice with the function's name"
wait "$locker"
like "$(my 'SELECT bk_status()')" '"rpo_seconds":[0-9]+' "bk_status() reports the current RPO"

# ---------------------------------------------------------------- a late agent
# The agent answers late (stopped here; joining the previous snapshot's
# thread while Kafka is down does the same) and the caller gives up at
# max_statement_time, told the snapshot does not start.  The request, read
# whole, still waits in the agent's socket: once resumed, the agent must not
# run it.  Nor a bk_snapshot_cancel() its caller was told is abandoned.
read -r before_id _ < <(snapshot_state)
started_before="$(grep -c 'INFO: snapshot [0-9A-Za-z-]* started (' "$dir/agent.log")"
kill -STOP "$agent_pid"
out="$(my "SET STATEMENT max_statement_time = 2 FOR SELECT bk_snapshot('wait=false,label=phantom')")"
kill -CONT "$agent_pid"
like "$out" 'bk_snapshot: query interrupted \(max_statement_time, or KILL SOFT\); the agent cancels the snapshot, or does not start it \(one started with wait=false runs on: see bk_status\(\)\)' \
    "an agent that answers late: max_statement_time ends bk_snapshot(), saying what may have become of it" ||
    diag "$out"
# shellcheck disable=SC2317,SC2329 # called through wait_for
not_run() { grep -q "control socket: $1 call from '[^']*'@'[^']*' not run: its caller went away" "$dir/agent.log"; }
wait_for 10 "the resumed agent to drop the abandoned call" not_run snapshot
ok $? "the resumed agent does not run the call whose caller gave up, and logs it" ||
    diag "$(tail -n 5 "$dir/agent.log")"
sleep 1
is "$(grep -c 'INFO: snapshot [0-9A-Za-z-]* started (' "$dir/agent.log")" "$started_before" "... no snapshot started" ||
    diag "$(grep 'started' "$dir/agent.log" | tail -n 2)"
read -r after_id _ < <(snapshot_state)
is "$after_id" "$before_id" "... bk_status() shows the previous snapshot still"

(my "LOCK TABLES $db.ledger WRITE; SELECT SLEEP(8)" >/dev/null) &
locker=$!
sleep 1
out="$(my "SELECT bk_snapshot('wait=false,label=kept')")"
kept_id="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$out")"
like "$out" '"state":"running"' "a snapshot with wait=false, waiting for a table lock" || diag "$out"
kill -STOP "$agent_pid"
out="$(my "SET STATEMENT max_statement_time = 2 FOR SELECT bk_snapshot_cancel('$kept_id')")"
kill -CONT "$agent_pid"
like "$out" 'bk_snapshot_cancel: query interrupted \(max_statement_time, or KILL SOFT\); the call was abandoned \(the cancel may already have been made: see bk_status\(\)\)' \
    "an agent that answers late: max_statement_time ends bk_snapshot_cancel(), saying the cancel may be made" ||
    diag "$out"
wait_for 10 "the resumed agent to drop the abandoned cancel" not_run snapshot_cancel
ok $? "the resumed agent does not run the cancel whose caller gave up" || diag "$(tail -n 5 "$dir/agent.log")"
is "$(snapshot_state)" "$kept_id running" "... and the snapshot it named runs on"
wait "$locker"
# shellcheck disable=SC2317,SC2329 # called through wait_for
kept_done() { [[ "$(snapshot_state)" == "$kept_id done" ]]; }
wait_for 60 "the snapshot the abandoned cancel named to end" kept_done
ok $? "... to its end: done, not cancelled" || diag "$(my 'SELECT bk_status()')"

# While a waited-for snapshot runs, the agent sends a keepalive (a space)
# at once and every 5 s: here a snapshot held 8 s by a table lock, asked on
# the agent's socket directly, the spaces timed.
(my "LOCK TABLES $db.ledger WRITE; SELECT SLEEP(8)" >/dev/null) &
locker=$!
sleep 1
keepalives="$(python3 - "$BK_MYSQL_AGENT_SOCKET" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall((json.dumps({"version": 1, "op": "snapshot", "user": "root", "host": "127.0.0.1",
                       "connection_id": 0, "args": "label=keepalive"}) + "\n").encode())
start, spaces, data = time.monotonic(), [], b""
while not data.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    for byte in chunk:
        if not data and byte == 32:
            spaces.append(time.monotonic() - start)
        else:
            data += bytes([byte])
ok = json.loads(data or b"{}").get("ok")
print(len(spaces), " ".join("%.1f" % t for t in spaces[:3]), "ok" if ok else data.decode(errors="replace"))
PY
)"
wait "$locker"
read -r n_spaces first second _ <<<"$keepalives"
((n_spaces >= 2)) && [[ "$keepalives" == *" ok" ]] &&
    python3 -c 'import sys; a, b = map(float, sys.argv[1:]); sys.exit(not (a < 1 and 4 <= b - a <= 7))' "$first" "$second"
ok $? "a waited-for snapshot: the agent sends a keepalive at once and every 5 s, then its reply ($keepalives)"

# A hung agent (stopped here) held bk_snapshot() for ever: now the call
# fails once the agent has sent nothing for 30 s, saying so; resumed, the
# agent does not start the snapshot its caller gave up.
started_before="$(grep -c 'INFO: snapshot [0-9A-Za-z-]* started (' "$dir/agent.log")"
not_run_before="$(grep -c "control socket: snapshot call from .* not run: its caller went away" "$dir/agent.log")"
kill -STOP "$agent_pid"
start=$SECONDS
out="$(my "SELECT bk_snapshot('label=hung')")"
elapsed=$((SECONDS - start))
kill -CONT "$agent_pid"
like "$out" 'bk_snapshot: bk-mysql-agent is not answering: nothing for 30 s, though it sends a keepalive every 5 s while it works on a snapshot \(is it hung or stopped\? see its log\); the call was abandoned: the agent cancels the snapshot, or does not start it' \
    "a stopped agent: bk_snapshot() fails, saying the agent is not answering and what may become of the snapshot" ||
    diag "$out"
((elapsed >= 29 && elapsed <= 35))
ok $? "... after 30 s without a byte (${elapsed}s)"
# shellcheck disable=SC2317,SC2329 # called through wait_for
hung_not_run() {
    [[ "$(grep -c "control socket: snapshot call from .* not run: its caller went away" "$dir/agent.log")" -gt "$not_run_before" ]]
}
wait_for 10 "the resumed agent to drop the abandoned call" hung_not_run
ok $? "... and the resumed agent does not run it" || diag "$(tail -n 5 "$dir/agent.log")"
is "$(grep -c 'INFO: snapshot [0-9A-Za-z-]* started (' "$dir/agent.log")" "$started_before" "... no snapshot started"

# ---------------------------------------------------------------- once, and who
before="$(grep -c 'snapshot .* started' "$dir/agent.log")"
out="$(my "SELECT bk_snapshot('label=five') FROM $db.seq_1_to_5")"
is "$(sort -u <<<"$out" | wc -l) $(wc -l <<<"$out")" "1 5" "SELECT bk_snapshot() FROM seq_1_to_5: five rows, one value"
is "$(($(grep -c 'snapshot .* started' "$dir/agent.log") - before))" 1 "... and one snapshot"

my "CREATE USER bksnap_usage@'127.0.0.1'" >/dev/null
out="$(my --user bksnap_usage "SELECT bk_snapshot()")"
like "$out" "ERROR.*not allowed.*GRANT $role" "a USAGE-only user is refused, told which role to grant" || diag "$out"

# DROP FUNCTION while a snapshot runs: the library is unloaded once no
# statement uses it; the server keeps running.
my "SELECT bk_snapshot('label=dropped')" >"$dir/dropped.out" 2>&1 &
dropper=$!
sleep 0.3
my "DROP FUNCTION bk_snapshot" >/dev/null
wait "$dropper"
is "$(my 'SELECT 1')" 1 "DROP FUNCTION during a snapshot: the server is still up"
unlike "$(grep -i 'got signal\|segfault' "$BK_SERVICES_DIR/mariadb/error.log")" 'signal' "... and logged no crash"
my "CREATE FUNCTION bk_snapshot RETURNS STRING SONAME 'bk_udf.so'" >/dev/null

# ---------------------------------------------------------------- a slow consumer
# A reader streams its rows (mysql_use_result) and reads none while it sends
# a part to Kafka; the server gives up writing after net_write_timeout and
# the snapshot failed, though Kafka may take longer (up to kafka_timeout per
# window).  The agent sets a session net_write_timeout above that.  Here the
# server's default is 1 s and the agent stops reading for 3 s, stopped
# while a reader streams 96 MB (the socket buffers hold a few).  Its other
# connections wait idle meanwhile, and the server's wait_timeout is 1 s
# too: the agent sets its own there as well.
old_nwt="$(my 'SELECT @@GLOBAL.net_write_timeout')"
old_wt="$(my 'SELECT @@GLOBAL.wait_timeout')"
my "SET SESSION sql_log_bin = 0;
    CREATE TABLE $db.wide (id INT PRIMARY KEY, v VARBINARY(1000)) ENGINE=InnoDB;
    INSERT INTO $db.wide SELECT seq, REPEAT('w', 1000) FROM $db.seq_1_to_96000" >/dev/null
my "SET GLOBAL net_write_timeout = 1, GLOBAL wait_timeout = 1" >/dev/null
my "SELECT bk_snapshot('jobs=2,label=slow-consumer')" >"$dir/slow.out" 2>&1 &
caller=$!
reading_wide="USER = '$agent_user' AND INFO LIKE 'SELECT \`id\`, \`v\` FROM %.\`wide\`'"
stopped=0
for ((i = 0; i < 3000; i++)); do # polled without a pause: caught early
    if [[ "$(my "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE $reading_wide")" -gt 0 ]]; then
        kill -STOP "$agent_pid" && stopped=1
        sleep 3
        waited="$(my "SELECT ROUND(MAX(TIME_MS)) FROM information_schema.PROCESSLIST WHERE $reading_wide")"
        kill -CONT "$agent_pid"
        break
    fi
done
wait "$caller"
my "SET GLOBAL net_write_timeout = $old_nwt, GLOBAL wait_timeout = $old_wt" >/dev/null
is "$stopped" 1 "the agent stopped while a reader streams a 96 MB table"
[[ "${waited:-0}" =~ ^[0-9]+$ && "$waited" -ge 2000 ]]
ok $? "... and the server waited to write to it for more than its net_write_timeout of 1 s (${waited:-none} ms)"
like "$(cat "$dir/slow.out")" '"snapshot_id"' \
    "a snapshot whose connections stop for longer than the server's net_write_timeout and wait_timeout succeeds" ||
    diag "$(cat "$dir/slow.out"; tail -n 5 "$dir/agent.log")"
my "SET SESSION sql_log_bin = 0; DROP TABLE $db.wide" >/dev/null

# ---------------------------------------------------------------- secrets
wait_for 30 "the shipper caught up" "$BK" binlog-get --config "$dir/bk.conf" --source "$source_id" "$snap_file" "$dir/again"
found=0
for t in "$prefix.binlog" "$prefix.snapshot" "$prefix.audit"; do
    if kcat -b "$BK_KAFKA_BROKERS" -C -t "$t" -e -q -f '%s\n' 2>/dev/null | grep -aq "$marker"; then
        found=1
        diag "the marker is readable in topic $t"
    fi
done
is "$found" 0 "no plaintext marker in any topic"
! grep -raq "$marker" "$repo"
ok $? "no plaintext marker in any repository file"
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
ok $? "bk verify: every range and snapshot object checks, every snapshot rebuilds" || diag "$out"

sed "s|^key_file = .*|key_file = $dir/bk.key|" "$dir/agent.conf" >"$dir/private.conf"
out="$("$AGENT" --config "$dir/private.conf" 2>&1)"
is "$?" 3 "the agent refuses a private key file (exit 3)"
like "$out" 'private' "... saying it holds a private key" || diag "$out"

done_testing
