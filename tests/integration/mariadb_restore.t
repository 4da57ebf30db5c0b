#!/usr/bin/env bash
# bk restore of a MariaDB source into a second, real MariaDB server (log_bin
# and gtid_strict_mode on), proven exact at recorded moments:
#
#  - fixtures that trip logical restores: a table without a primary key with
#    duplicate rows and DELETE ... LIMIT 1; BLOBs of NUL, quote and
#    backslash bytes; 4-byte UTF-8 data and non-ASCII identifiers;
#    TIMESTAMPs in a DST fall-back hour; id 0 in an AUTO_INCREMENT column;
#    zero dates; INVISIBLE and generated columns; a sequence; a
#    system-versioned table with history; a trigger writing an audit row;
#    an event firing every second; users, roles and grants (a grant to
#    PUBLIC, which a fresh target has no row for; a role with a 128-character
#    name of 3-byte characters; no role left to the restoring account); a
#    view on a view;
#    a view calling a stored function (created after the function);
#    a server definition (CREATE SERVER, its password holding a quote and a
#    backslash) that a FEDERATED table names in CONNECTION;
#    secondary indexes that are built after the data, and some that cannot be
#    (a prefix, DESC, and plain ones between them: SHOW CREATE must not change);
#    MyISAM and Aria tables written all through the first snapshot, and an
#    XA transaction prepared when it starts (the snapshot waits for it); a
#    MERGE table over two MyISAM tables; a sequence allocating new batches
#    during the first snapshot and after it;
#  - a workload of sysbench plus fixture changes, with DDL mid-way, a binlog
#    rotation and a server restart; compressed binlog events
#    (log_bin_compress) in the second moment's workload, whose last event is
#    a long DDL (Query_compressed), replayed from the first snapshot, and a
#    snapshot taken right after it; at each moment the test records the
#    time, SHOW MASTER STATUS, @@gtid_binlog_pos and a fingerprint
#    (CHECKSUM TABLE of every table, the history of versioned tables,
#    SHOW CREATE of every object); bk restore to the time, the position
#    and the GTID of each must give the same fingerprint and GTID state;
#  - the target time is read with its zone whatever the restore host's TZ,
#    and two commits in one second are never split;
#  - refusals that change nothing: a target server that is not empty, a
#    target past the archive, a gap, a file that lost its last range (its
#    ROTATE with it), or only its ROTATE (nothing a GTID list shows: the
#    next file's first range says where the file ended), a corrupted range
#    (bk verify names them), a --dry-run; bk expire (two runs and a dry
#    run at once), then a restore to the oldest kept moment;
#  - a LOAD DATA logged as a statement, replayed with its rows and no file
#    of them left in TMPDIR or the work directory; a GTID logged below its
#    domain's last (SET gtid_seq_no on a source with gtid_strict_mode off):
#    refused before anything is written into a target with gtid_strict_mode
#    on, replayed whole into one with it off;
#  - an Incident event (LOST_EVENTS: rows applied, never logged) reported
#    by the agent as it streams it, a target past it refused naming it, a
#    target at it restored;
#  - a snapshot taken right after RESET MASTER (no GTID), restored with
#    --force over a target whose binlog holds GTIDs of its own: the
#    target ends at the source's GTID state, not its own.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=SCRIPTDIR/../lib/tap.sh
source "$ROOT/tests/lib/tap.sh"
SERVICES="$ROOT/scripts/services"
eval "$("$SERVICES" env)" || bail_out "'scripts/services env' failed"
"$SERVICES" status mariadb >/dev/null 2>&1 || bail_out "mariadb is not running"
"$SERVICES" status kafka >/dev/null 2>&1 || bail_out "kafka is not running"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-mdb-restore.XXXXXX")"
chmod 755 "$dir"
# shellcheck source=SCRIPTDIR/../lib/bk_env.sh
source "$ROOT/tests/lib/bk_env.sh"
# shellcheck source=SCRIPTDIR/../lib/mariadb.sh
source "$ROOT/tests/lib/mariadb.sh"
AGENT="$BK_AGENT_BIN"
agent_pid=""
shipper_pid=""
db=bkrestore_$$
role="bk_restore_role_$$"
old_stmt_cache="$(my 'SELECT @@global.max_binlog_stmt_cache_size')"
# A role name as long as the server allows, of 3-byte characters (384 bytes).
longrole="$(printf '名%.0s' {1..128})"
TARGET_PORT=$((MYSQL_TCP_PORT + 1))
TARGET_DIR="$dir/target"
TARGET_SOCKET="$TARGET_DIR/mariadb/mysqld.sock"

tmy() {
    timeout 120 mariadb --no-defaults --protocol=SOCKET -h localhost -S "$TARGET_SOCKET" -u root --connect-timeout=10 \
        -N -B -r -e "$1" 2>&1
}
tmy_force() {
    timeout 120 mariadb --no-defaults --protocol=SOCKET -h localhost -S "$TARGET_SOCKET" -u root --force -N -B -r -e "$1" 2>&1
}
fed_server="bkr_srv_$$"
# A FEDERATED (FederatedX) engine on the source and each target.
federated_engine() {
    [[ "$("$1" "SELECT SUPPORT FROM information_schema.ENGINES WHERE ENGINE = 'FEDERATED'")" =~ YES|DEFAULT ]] ||
        "$1" "INSTALL SONAME 'ha_federatedx'"
}
target_services() {
    BK_SERVICES_DIR="$TARGET_DIR" BK_MYSQL_PORT="$TARGET_PORT" "$SERVICES" "$@"
}

# A fresh target server for each restore.
target_reset() {
    target_services stop mariadb >/dev/null 2>&1
    rm -rf "${TARGET_DIR:?}/mariadb"
    target_services start mariadb >>"$dir/target-start.log" 2>&1 &&
        tmy "SET GLOBAL gtid_strict_mode = 1" >/dev/null && federated_engine tmy >/dev/null
}

# shellcheck disable=SC2329 # called by the trap
cleanup() {
    [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    [[ -n "$shipper_pid" ]] && kill "$shipper_pid" 2>/dev/null && wait "$shipper_pid" 2>/dev/null
    my "XA ROLLBACK 'bkr_xa1'" >/dev/null 2>&1
    [[ -n "${source_strict:-}" ]] && my "SET GLOBAL gtid_strict_mode = $source_strict" >/dev/null
    my "SET GLOBAL log_bin_compress = OFF; SET GLOBAL event_scheduler = OFF; DROP DATABASE IF EXISTS $db;
        DROP DATABASE IF EXISTS ${db}_sb; DROP DATABASE IF EXISTS ${db}_new;
        DROP USER IF EXISTS bkr_app@'%'; DROP ROLE IF EXISTS bkr_reader;
        DROP USER IF EXISTS bkr_fed@'127.0.0.1'; DROP SERVER IF EXISTS $fed_server;
        DROP ROLE IF EXISTS $role; DROP ROLE IF EXISTS \`$longrole\`" >/dev/null
    my "REVOKE ALL PRIVILEGES ON $db.v_orders FROM PUBLIC" >/dev/null 2>&1
    [[ "$old_stmt_cache" =~ ^[0-9]+$ ]] &&
        my "SET GLOBAL max_binlog_stmt_cache_size = $old_stmt_cache" >/dev/null
    target_services stop mariadb >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT

bk_test_init mariadb-restore
source_id="mdbr-$$"
bk_test_agent_conf "mysql_host = 127.0.0.1" "mysql_port = $MYSQL_TCP_PORT" "mysql_user = root" \
    "server_id = $((5000 + $$ % 1000))" "state_dir = $dir/agent-state" "control_user = $(id -un)" \
    "roles = $role" >"$dir/agent.conf"
restore() { "$BK" restore --config "$dir/bk.conf" --source "$source_id" --mysql-socket "$TARGET_SOCKET" "$@"; }

start_agent() {
    "$AGENT" --config "$dir/agent.conf" >>"$dir/agent.log" 2>&1 &
    agent_pid=$!
}
streaming_since() { [[ "$(grep -c "streaming the binlog from" "$dir/agent.log")" -ge "$1" ]]; }

target_reset
ok $? "a second MariaDB server as the restore target" || bail_out "$(cat "$dir/target-start.log")"
out="$(tmy "SET GLOBAL gtid_strict_mode = 1; SELECT @@log_bin, @@gtid_strict_mode")"
is "$out" "1	1" "the target runs with log_bin and gtid_strict_mode on"

# A role of the test's own: CREATE ROLE grants it to the test's account.
out="$(my "CREATE ROLE $role; DROP FUNCTION IF EXISTS bk_snapshot;
           CREATE FUNCTION bk_snapshot RETURNS STRING SONAME 'bk_udf.so'")"
ok $? "bk_snapshot() and a role allowed to call it" || diag "$out"
my "FLUSH BINARY LOGS" >/dev/null
start_agent
wait_for 30 "agent streaming" streaming_since 1
ok $? "bk-mysql-agent streams" || bail_out "$(cat "$dir/agent.log")"
bk_test_start_shipper

# ---------------------------------------------------------------- fixtures
out="$(federated_engine my)"
ok $? "the FEDERATED engine on the source" || bail_out "$out"
out="$(my "SET GLOBAL event_scheduler = ON;
CREATE DATABASE $db CHARACTER SET utf8mb4;
USE $db;
SET sql_mode = 'NO_AUTO_VALUE_ON_ZERO';
CREATE TABLE nopk (a INT, b VARCHAR(20)) ENGINE=InnoDB;
INSERT INTO nopk VALUES (1, 'x'), (1, 'x'), (1, 'x'), (2, 'y');
CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB;
INSERT INTO blobs VALUES (1, 0x00275C22000A0D095C4E), (2, REPEAT(0x005C27, 100000)), (3, NULL), (4, '');
CREATE TABLE \`naïve_名前\` (\`ключ\` INT PRIMARY KEY, \`値\` VARCHAR(20) CHARACTER SET utf8mb4) ENGINE=InnoDB;
INSERT INTO \`naïve_名前\` VALUES (1, _utf8mb4 0xF09F9880F09D849E), (2, 'ü€');
CREATE TABLE ts (id INT PRIMARY KEY, t TIMESTAMP(6) NULL, d DATE, dt DATETIME) ENGINE=InnoDB;
SET time_zone = '+00:00';
INSERT INTO ts VALUES (1, '2026-10-25 00:30:00.5', '0000-00-00', '0000-00-00 00:00:00'),
                      (2, '2026-10-25 01:30:00.25', '2026-00-00', NULL);
CREATE TABLE ai (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB;
INSERT INTO ai VALUES (0, 0), (5, 5); INSERT INTO ai (v) VALUES (6);
CREATE TABLE gen (id INT PRIMARY KEY, a INT, hid INT INVISIBLE DEFAULT 7,
                  v INT AS (a * 2) VIRTUAL, p INT AS (a + 1) PERSISTENT) ENGINE=InnoDB;
INSERT INTO gen (id, a, hid) VALUES (1, 10, 70), (2, 20, 0);
CREATE SEQUENCE seq START WITH 100 INCREMENT BY 3 CACHE 5;
SELECT NEXTVAL(seq), NEXTVAL(seq);
CREATE TABLE hist (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB WITH SYSTEM VERSIONING;
INSERT INTO hist VALUES (1, 'first');
UPDATE hist SET v = 'second' WHERE id = 1;
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(64)) ENGINE=InnoDB;
CREATE TABLE idx (id INT PRIMARY KEY, a VARCHAR(50), b INT,
                  KEY plain1 (b), KEY prefix (a(10)), KEY descending (b DESC), KEY plain2 (a, b))
                  ENGINE=InnoDB;
INSERT INTO idx SELECT seq, CONCAT('value ', seq), seq % 7 FROM seq_1_to_3000;
CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, amount INT) ENGINE=InnoDB;
CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW
  INSERT INTO audit (what) VALUES (CONCAT('order ', NEW.id));
INSERT INTO orders (amount) VALUES (10), (20);
CREATE TABLE ticks (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6)) ENGINE=InnoDB;
CREATE TABLE counters (id INT PRIMARY KEY, n INT) ENGINE=MyISAM;
INSERT INTO counters VALUES (1, 0);
CREATE TABLE visits (id INT AUTO_INCREMENT PRIMARY KEY, n INT) ENGINE=Aria;
CREATE TABLE tally (id INT PRIMARY KEY, n INT) ENGINE=Aria;
INSERT INTO tally VALUES (1, 0);
CREATE TABLE part1 (id INT NOT NULL) ENGINE=MyISAM;
CREATE TABLE part2 (id INT NOT NULL) ENGINE=MyISAM;
INSERT INTO part1 VALUES (1), (2); INSERT INTO part2 VALUES (3);
CREATE TABLE parts (id INT NOT NULL) ENGINE=MERGE UNION=(part1, part2) INSERT_METHOD=LAST;
CREATE EVENT tick ON SCHEDULE EVERY 1 SECOND DISABLE DO INSERT INTO ticks (at) VALUES (NOW(6));
CREATE VIEW v_orders AS SELECT id, amount FROM orders WHERE amount > 0;
CREATE VIEW v_big AS SELECT id FROM v_orders WHERE amount > 15;
CREATE PROCEDURE add_order(IN n INT) INSERT INTO orders (amount) VALUES (n);
CREATE FUNCTION twice(n INT) RETURNS INT DETERMINISTIC RETURN n * 2;
CREATE VIEW v_twice AS SELECT id, twice(amount) AS doubled FROM orders;
CREATE ROLE bkr_reader;
GRANT SELECT ON $db.* TO bkr_reader;
CREATE USER bkr_app@'%' IDENTIFIED BY 'app-secret';
GRANT bkr_reader TO bkr_app@'%';
GRANT EXECUTE ON PROCEDURE $db.add_order TO bkr_app@'%';
SET DEFAULT ROLE bkr_reader FOR bkr_app@'%';
GRANT SELECT ON $db.v_orders TO PUBLIC;
CREATE ROLE \`$longrole\`;
GRANT SELECT ON $db.orders TO \`$longrole\`;
GRANT \`$longrole\` TO bkr_app@'%'")"
ok $? "fixtures created" || bail_out "$out"
# A server definition and a FEDERATED table naming it, reading two rows of
# a table of the source, on which its account may only SELECT: a restore
# must not load what the snapshot read of a FEDERATED table into it, which
# would insert the rows into its remote table.  The password is fed'pw\x.  MariaDB does not log CREATE, ALTER or DROP SERVER in the
# binlog: a restore holds the definitions of its snapshot, so they stay
# unchanged here.
out="$(my "CREATE USER bkr_fed@'127.0.0.1' IDENTIFIED BY 'fed''pw\\\\x';
CREATE TABLE $db.fed_remote (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB;
INSERT INTO $db.fed_remote VALUES (1, 'one'), (2, 'two');
GRANT SELECT ON $db.fed_remote TO bkr_fed@'127.0.0.1';
CREATE SERVER $fed_server FOREIGN DATA WRAPPER mysql OPTIONS (HOST '127.0.0.1', PORT $MYSQL_TCP_PORT,
  USER 'bkr_fed', PASSWORD 'fed''pw\\\\x', DATABASE '$db');
CREATE TABLE $db.fed (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=FEDERATED CONNECTION='$fed_server/fed_remote';
SELECT COUNT(*) FROM $db.fed")"
is "$out" 2 "a server definition and a FEDERATED table using it" || bail_out "$out"

sb=(sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1
    --mysql-port="$MYSQL_TCP_PORT" --mysql-user=root --mysql-db="${db}_sb"
    --tables=2 --table-size=2000 --report-interval=0)
my "CREATE DATABASE ${db}_sb" >/dev/null
"${sb[@]}" prepare >"$dir/sb.log" 2>&1
ok $? "sysbench prepare" || diag "$(tail -5 "$dir/sb.log")"

# What a moment is made of: CHECKSUM TABLE of every table, the whole history
# of versioned tables, SHOW CREATE of every object (AUTO_INCREMENT=N left
# out: the server does not log the counter), accounts and their grants.
fingerprint_sql() {
    local conn="$1" out
    "$conn" "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '${db}%' ORDER BY 1"
    for d in $("$conn" "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '${db}%' ORDER BY 1"); do
        "$conn" "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$d' ORDER BY 1" |
            while IFS=$'\t' read -r t type; do
                case "$type" in
                    VIEW) "$conn" "SHOW CREATE VIEW \`$d\`.\`$t\`" ;;
                    SEQUENCE) "$conn" "SHOW CREATE SEQUENCE \`$d\`.\`$t\`; SELECT * FROM \`$d\`.\`$t\`" ;;
                    *)
                        "$conn" "SHOW CREATE TABLE \`$d\`.\`$t\`" | sed 's/ AUTO_INCREMENT=[0-9]*//'
                        "$conn" "CHECKSUM TABLE \`$d\`.\`$t\` EXTENDED"
                        ;;
                esac
            done
        "$conn" "SELECT CONCAT_WS(' ', id, HEX(v), ROW_START, ROW_END) FROM \`$d\`.hist FOR SYSTEM_TIME ALL ORDER BY ROW_START, id" 2>/dev/null
        "$conn" "SELECT ROUTINE_TYPE, ROUTINE_NAME, ROUTINE_DEFINITION, SQL_MODE, DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '$d' ORDER BY 1, 2"
        "$conn" "SELECT TRIGGER_NAME, ACTION_STATEMENT, SQL_MODE, DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '$d' ORDER BY 1"
        "$conn" "SELECT EVENT_NAME, EVENT_DEFINITION, STATUS, INTERVAL_VALUE, INTERVAL_FIELD, DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '$d' ORDER BY 1"
    done
    "$conn" "SELECT Server_name, Wrapper, Host, Db, Username, HEX(Password), Port, Socket, Owner
             FROM mysql.servers WHERE Server_name LIKE 'bkr%'"
    for a in "bkr_app@'%'" "bkr_reader" PUBLIC "\`$longrole\`"; do "$conn" "SHOW GRANTS FOR $a"; done
    # The roles root@localhost holds: none on the source (the test creates
    # them as root@127.0.0.1), none after a restore run as root@localhost
    # (CREATE ROLE gives the new role to the account that runs it).
    "$conn" "SELECT 'root@localhost holds', Role, Admin_option FROM mysql.roles_mapping
             WHERE User = 'root' AND Host = 'localhost' ORDER BY Role"
}
fingerprint() { fingerprint_sql "$1" 2>&1 | LC_ALL=C sort; }

# A moment: writers idle, a whole second passes on both sides, so the
# time, the position and the GTID all name the same state.
moment() {
    local name="$1"
    sleep 1.1
    date -u +%Y-%m-%dT%H:%M:%S.%6NZ >"$dir/$name.time"
    my 'SHOW MASTER STATUS' | awk '{print $1 ":" $2}' >"$dir/$name.position"
    my 'SELECT @@gtid_binlog_pos' >"$dir/$name.gtid"
    fingerprint my >"$dir/$name.fp"
    sleep 1.1
}

# Restore to a moment three ways and compare; the options after the name
# are the restores' too (--snapshot, say).
check_moment() {
    local name="$1" how out
    shift
    for how in time position gtid; do
        target_reset
        case "$how" in
            time) out="$(TZ=America/New_York restore "$@" --target-time "$(cat "$dir/$name.time")" --json 2>&1)" ;;
            position) out="$(restore "$@" --target-position "$(cat "$dir/$name.position")" 2>&1)" ;;
            gtid) # over TCP this time
                out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --mysql-host 127.0.0.1 \
                    --mysql-port "$TARGET_PORT" "$@" --target-gtid "$(cat "$dir/$name.gtid")" 2>&1)" ;;
        esac
        ok $? "$name: bk restore ${*:+$* }--target-$how" || diag "$out"
        [[ "$how" == time ]] && like "$out" '"tables_indexed_after_load": [2-9]' \
            "$name: the sysbench tables got their secondary index after the data"
        fingerprint tmy >"$dir/$name.$how.fp"
        if cmp -s "$dir/$name.fp" "$dir/$name.$how.fp"; then
            ok 0 "$name: restored to its $how, every table, history, object and grant is equal"
        else
            ok 1 "$name: restored to its $how, every table, history, object and grant is equal"
            diag "$(diff "$dir/$name.fp" "$dir/$name.$how.fp" | head -20)"
        fi
        is "$(tmy 'SELECT @@gtid_binlog_pos, @@gtid_slave_pos')" "$(cat "$dir/$name.gtid")	$(cat "$dir/$name.gtid")" \
            "$name ($how): the target's binlog and replica GTID positions are the source's"
    done
}

# ---------------------------------------------------------------- moment 1
"${sb[@]}" --threads=2 --time=3 run >>"$dir/sb.log" 2>&1
my "USE $db; DELETE FROM nopk WHERE a = 1 LIMIT 1; UPDATE hist SET v = 'third' WHERE id = 1;
    SELECT NEXTVAL(seq); INSERT INTO orders (amount) VALUES (30)" >/dev/null
# An XA transaction prepared when the snapshot is asked for, committed 3 s
# later: the snapshot waits for it (its changes are readable only then, and
# its XA COMMIT could not be replayed after a snapshot that missed its
# prepare), so every moment restored holds the order.
my "XA START 'bkr_xa1'; INSERT INTO $db.orders (amount) VALUES (35); XA END 'bkr_xa1';
    XA PREPARE 'bkr_xa1'" >/dev/null
(sleep 3 && my "XA COMMIT 'bkr_xa1'" >/dev/null) &
xa_committer=$!
# Tables without transactions (MyISAM, Aria) written all along: read after
# the consistent point, they would hold writes the replay applies again.
nontx_writes() {
    local i=0
    while [[ ! -e "$dir/nontx.stop" ]]; do
        my "USE $db; UPDATE counters SET n = n + 1 WHERE id = 1; INSERT INTO visits (n) VALUES ($i);
            SELECT NEXTVAL(seq)" >/dev/null
        i=$((i + 1))
    done
}
# Aria writes hold their table lock while they run, past BLOCK_DDL: slow
# ones are nearly always running when the snapshot reaches its consistent
# point.
slow_aria_writes() {
    while [[ ! -e "$dir/nontx.stop" ]]; do
        my "UPDATE $db.tally SET n = n + 1 WHERE id = 1 AND SLEEP(0.3) = 0" >/dev/null
    done
}
nontx_writes &
nontx_writer=$!
slow_aria_writes &
aria_writer=$!
sleep 0.5
result="$(my "SELECT bk_snapshot('jobs=2')")"
like "$result" '"snapshot_id":"' "a snapshot under the workload" || diag "$result"
sleep 0.5
touch "$dir/nontx.stop"
wait "$xa_committer" "$nontx_writer" "$aria_writer"
like "$(cat "$dir/agent.log")" "[0-9]+ table\(s\) without transactions read under a read lock taken before the consistent point and held [0-9]+ ms" \
    "... the MyISAM and Aria tables were read as they were at its consistent point"
like "$(cat "$dir/agent.log")" "waiting up to 10 s for the XA transactions prepared at the consistent point to end: 'bkr_xa1'" \
    "... waited for the XA transaction prepared at its consistent point to commit"
snap1="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result")"
my "USE $db; INSERT INTO nopk VALUES (3, 'z'); DELETE FROM nopk WHERE a = 1 LIMIT 1; INSERT INTO parts VALUES (4);
    SELECT NEXTVAL(seq) FROM seq_1_to_7;
    UPDATE blobs SET b = CONCAT(b, 0x00) WHERE id = 1; CALL add_order(40)" >/dev/null
"${sb[@]}" --threads=2 --time=2 run >>"$dir/sb.log" 2>&1
moment m1
my "FLUSH BINARY LOGS" >/dev/null

# ---------------------------------------------------------------- moment 2: DDL, event firing, compression
# With log_bin_compress the server logs every statement of at least
# log_bin_compress_min_len bytes (256) as a Query_compressed event, and
# compresses the rows of row events: on for this moment's workload.
my "SET GLOBAL log_bin_compress = ON" >/dev/null
my "USE $db; ALTER TABLE orders ADD COLUMN note VARCHAR(20) DEFAULT 'n';
    CREATE TABLE later (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO later VALUES (1);
    CREATE DATABASE ${db}_new; CREATE TABLE ${db}_new.t (x INT) ENGINE=InnoDB;
    INSERT INTO ${db}_new.t VALUES (1); ALTER DEFINER = root@'127.0.0.1' EVENT tick ENABLE" >/dev/null
"${sb[@]}" --threads=2 --time=2 run >>"$dir/sb.log" 2>&1
# The server logs ALTER EVENT as written: without DEFINER, replay (like a
# replica) would make the replaying account its definer (README).
out="$(my "USE $db; ALTER DEFINER = root@'127.0.0.1' EVENT tick DISABLE; SELECT NEXTVAL(seq)")"
ok $? "the event disabled again" || diag "$out"
is "$(my "SELECT STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '$db' AND EVENT_NAME = 'tick'")" \
    DISABLED "... and the server says so"
ticks="$(my "SELECT COUNT(*) FROM $db.ticks")"
[[ "$ticks" -gt 0 ]]
ok $? "the event fired while enabled ($ticks rows)"
# The last event before m2: a DDL long enough to be compressed.  A
# standalone group ends with its statement; one not seen to end would
# merge into the next group, and a restore to m2 would leave it out.
out="$(my "CREATE TABLE $db.compressed_ddl (id INT PRIMARY KEY,
    first_column_with_a_long_name VARCHAR(100) DEFAULT 'a default long enough to be compressed',
    second_column_with_a_long_name VARCHAR(100) DEFAULT 'and another one, longer still than the first',
    third_column_with_a_long_name INT DEFAULT 42) ENGINE=InnoDB COMMENT 'logged as Query_compressed'")"
ok $? "a long DDL with log_bin_compress on" || diag "$out"
moment m2
m2_file="$(cut -d: -f1 "$dir/m2.position")"
is "$(my "SHOW BINLOG EVENTS IN '$m2_file'" | awk -F'\t' -v end="$(cut -d: -f2 "$dir/m2.position")" '$5 == end {print $3}')" \
    Query_compressed "... the last event before m2 is a Query_compressed event"
# A second snapshot, in the quiet after m2: it holds m2's state.
result2="$(my "SELECT bk_snapshot('jobs=2')")"
snap2="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result2")"
[[ -n "$snap2" ]]
ok $? "a second snapshot after m2" || diag "$result2"
my "SET GLOBAL log_bin_compress = OFF" >/dev/null

# ---------------------------------------------------------------- moment 3: rotation, restart
my "FLUSH BINARY LOGS" >/dev/null
"$SERVICES" stop mariadb >/dev/null 2>&1 && "$SERVICES" start mariadb >/dev/null 2>&1
ok $? "the source server restarted"
wait_for 60 "agent streaming again" streaming_since 2
my "USE $db; INSERT INTO orders (amount, note) VALUES (50, 'after restart'); DROP TABLE later;
    UPDATE gen SET a = 11 WHERE id = 1" >/dev/null
"${sb[@]}" --threads=2 --time=2 run >>"$dir/sb.log" 2>&1
moment m3

# Two commits in one second, after which a whole second passes.
python3 -c 'import time; time.sleep(1.2 - time.time() % 1)'
my "INSERT INTO $db.orders (amount) VALUES (61); INSERT INTO $db.orders (amount) VALUES (62)" >/dev/null
same_second="$(date -u +%s)"
sleep 1.5
my "FLUSH BINARY LOGS" >/dev/null

# The restores to m3 need its binlog file archived to its end: the FLUSH
# above closed it, after the two commits that end m3's second.
m3_file_closed() {
    "$BK" list --config "$dir/bk.conf" --source "$source_id" --json 2>/dev/null | python3 -c '
import json, sys
files = json.load(sys.stdin)["sources"][0]["binlog_files"]
sys.exit(0 if any(f["name"] == sys.argv[1] and f["closed"] for f in files) else 1)' \
        "$(cut -d: -f1 "$dir/m3.position")"
}
wait_for 60 "the binlog file of m3 archived to its end" m3_file_closed
ok $? "the binlog file of m3 is archived to its end"
for m in m1 m2 m3; do check_moment "$m"; done
# snap2 holds m2 already (it was taken right after the compressed DDL, and
# m3 is restored from it): from snap1 the replay goes through the DDL.
check_moment m2 --snapshot "$snap1"

# ---------------------------------------------------------------- immediate: the load alone, not logged
target_reset
out="$(restore --target immediate 2>&1)"
ok $? "--target immediate restores the newest snapshot alone" || diag "$out"
like "$out" "rows of remote tables \\(FEDERATED, SPIDER\\) not loaded: .* \`$db\`\\.\`fed\`" \
    "the FEDERATED table's rows are not loaded: they are its remote table's" || diag "$out"
is "$(my "SELECT GROUP_CONCAT(id ORDER BY id) FROM $db.fed_remote")" "1,2" \
    "... which holds its two rows, no more"
fingerprint tmy >"$dir/immediate.fp"
cmp -s "$dir/m2.fp" "$dir/immediate.fp"
ok $? "... which holds m2's state" || diag "$(diff "$dir/m2.fp" "$dir/immediate.fp" | head)"
is "$(tmy 'SELECT @@gtid_binlog_pos')" "$(cat "$dir/m2.gtid")" \
    "the load is not in the target's binlog: its GTID state is the snapshot's"
is "$(tmy "SELECT COUNT(*) FROM $db.audit")" "$(tmy "SELECT COUNT(*) FROM $db.orders")" \
    "the trigger did not fire while loading (one audit row per order)"
is "$(tmy "SELECT @@event_scheduler")" "OFF" "events stay off until the DBA turns the scheduler on"
is "$(tmy "SELECT doubled FROM $db.v_twice WHERE id = 1")" 20 \
    "a view calling a stored function is restored (the function created first)"
is "$(tmy "SELECT @@innodb_flush_log_at_trx_commit")" 1 \
    "innodb_flush_log_at_trx_commit, relaxed while restoring, is put back"

# ---------------------------------------------------------------- refusals
out="$(restore --target immediate 2>&1)"
is "$?" 1 "a target server that is not empty is refused"
like "$out" "not empty" "... saying so" || diag "$out"
out="$(restore --force --target-position "$(cat "$dir/m3.position")" 2>&1)"
ok $? "--force restores over it (the snapshot's databases dropped first)" || diag "$out"
fingerprint tmy >"$dir/force.fp"
cmp -s "$dir/m3.fp" "$dir/force.fp"
ok $? "... exactly" || diag "$(diff "$dir/m3.fp" "$dir/force.fp" | head)"
target_reset
tmy "CREATE SERVER $fed_server FOREIGN DATA WRAPPER mysql OPTIONS (HOST 'elsewhere')" >/dev/null
out="$(restore --target immediate 2>&1)"
is "$?" 1 "a target server that already has a server definition of the snapshot's is refused"
like "$out" "already has 1 of the snapshot's server definitions \\(CREATE SERVER\\): $fed_server" \
    "... naming it" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bk%'")" 0 \
    "... before anything is written"
grep -qF "fed'pw" "$dir/agent.log"
is "$?" 1 "the server definitions' passwords never reach the agent's log"

target_reset
out="$(restore --target-time 2099-01-01T00:00:00Z 2>&1)"
is "$?" 1 "a target past the archive is refused"
like "$out" "past the end of what the archive holds" "... with where the archive ends" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bk%'")" 0 \
    "... and the target server is not touched"
out="$(restore --dry-run --target-time "$(cat "$dir/m2.time")" 2>&1)"
ok $? "--dry-run" || diag "$out"
like "$out" "snapshot $snap1 at .*transaction\\(s\\).*estimated time" "--dry-run prints the plan" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bk%'")" 0 \
    "--dry-run changes nothing"
out="$(restore --dry-run --json --target-gtid "$(cat "$dir/m3.gtid")" 2>/dev/null)"
like "$out" "\"dry_run\": true.*\"gtid\": \"$(cat "$dir/m3.gtid")\".*\"transactions\": [1-9]" \
    "--dry-run --json gives the plan as JSON" || diag "$out"
out="$(restore --target-time yesterday 2>&1)"
is "$?" 2 "a bad --target-time is a usage error"
out="$(restore --dry-run --work-dir "$dir/no/such/dir" 2>&1)"
is "$?" 1 "a --work-dir that does not exist exits 1, not 5 (the repository answers)" || diag "$out"
like "$out" 'could not create a work directory' "and says what failed"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/pgdata" 2>&1)"
like "$out" "is a MariaDB source" "--pgdata for a MariaDB source says what to do" || diag "$out"
# The password file is held to the rule of private key files: owned by
# bk's user (here root) or root, readable by nobody else.
printf 'not-the-password\n' >"$dir/mysql.password"
chmod 644 "$dir/mysql.password"
out="$(restore --dry-run --mysql-password-file "$dir/mysql.password" 2>&1)"
is "$?" 3 "a password file others may read is refused (exit 3)" || diag "$out"
like "$out" "MariaDB password file \"$dir/mysql.password\" is accessible by group or others" \
    "and the message names it"
chmod 600 "$dir/mysql.password"
chown nobody "$dir/mysql.password"
out="$(restore --dry-run --mysql-password-file "$dir/mysql.password" 2>&1)"
is "$?" 3 "a password file another user owns is refused (exit 3)" || diag "$out"
like "$out" "is owned by \"nobody\" \\(uid [0-9]+\\), not by \"root\"" \
    "and the message names its owner"
rm -f "$dir/mysql.password"

# ---------------------------------------------------------------- one second, another zone
# The restore host's TZ is not UTC; the targets carry their own zones.
in_zone() { TZ="$2" date -d "@$1" +%Y-%m-%dT%H:%M:%S.%N%:z; }
target_reset
out="$(TZ=Asia/Tokyo restore --target-time "$(in_zone "$((same_second + 1))" America/New_York)" 2>&1)"
ok $? "restore to the end of the second of two commits (given in New York time, run in Tokyo)" || diag "$out"
is "$(tmy "SELECT GROUP_CONCAT(amount ORDER BY id) FROM $db.orders WHERE amount > 60")" "61,62" \
    "... holds both commits"
target_reset
mid="$(in_zone "$same_second" Asia/Kolkata | sed 's/\.[0-9]*/.5/')"
out="$(TZ=Asia/Tokyo restore --target-time "$mid" 2>&1)"
ok $? "restore to the middle of that second ($mid)" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM $db.orders WHERE amount > 60")" 0 \
    "... holds neither: binlog stamps are whole seconds, a second is never split"

# ---------------------------------------------------------------- failures on the server
target_reset
out="$(tmy "CREATE USER weak@localhost; GRANT SELECT, INSERT, CREATE ON *.* TO weak@localhost")"
out="$(restore --mysql-user weak --target-position "$(cat "$dir/m1.position")" 2>&1)"
is $? 3 "an account without the privileges a restore needs is refused"
like "$out" "weak on the target server lacks what a restore needs: .*SUPER.*BINLOG REPLAY.*without GRANT OPTION: SELECT, INSERT, CREATE" "... naming what it lacks" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bk%'")" 0 \
    "... before anything is written"
# Replay of m2 from the first snapshot creates ${db}_new: make that fail.
tmy "CREATE DATABASE ${db}_new" >/dev/null
out="$(restore --force --snapshot "$snap1" --target-position "$(cat "$dir/m2.position")" 2>&1)"
is $? 1 "a replay that fails midway fails the restore"
like "$out" "binlog replay failed at the event at mariadb-bin\.[0-9]+:[0-9]+.*database exists" \
    "... naming the event and the server's error" || diag "$out"
like "$(tmy "SELECT step, error FROM bk_restore_incomplete.restore")" "^binlog replay.*binlog replay failed" \
    "... and the server holds bk_restore_incomplete with the step and the error"
out="$(restore --target-position "$(cat "$dir/m2.position")" 2>&1)"
is $? 1 "the next restore into it is refused"
like "$out" "holds an incomplete restore" "... saying why" || diag "$out"

# ---------------------------------------------------------------- a gap, a corrupted range
first_m3_file="$(cut -d: -f1 "$dir/m3.position")"
ranges=("$repo/$source_id/binlog/$first_m3_file"/*)
[[ "${#ranges[@]}" -ge 3 ]]
ok $? "the file of m3 is archived in ${#ranges[@]} ranges"
cp -a "$repo" "$dir/repo-gap"
rm "$dir/repo-gap/$source_id/binlog/$first_m3_file/$(basename "${ranges[1]}")"
target_reset
out="$(restore --repo "$dir/repo-gap" --target-position "$(cat "$dir/m3.position")" 2>&1)"
is $? 1 "a target beyond a gap is refused"
like "$out" "past the end of what the archive holds.*where a gap in the archive begins" \
    "... saying where the archive stops and why" || diag "$out"
out="$(restore --repo "$dir/repo-gap" 2>&1)"
is $? 1 "a restore to the latest is refused at the gap, not ended there as if the archive ended"
like "$out" "not continuous after $first_m3_file:[0-9]+ \\(bytes [0-9]+ to [0-9]+ of $first_m3_file are missing\\)" \
    "... naming where the archive stops and the hole" || diag "$out"
like "$out" "bk verify --source $source_id" "... and what to do" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bk%'")" 0 \
    "... before the target server is touched"
out="$("$BK" list --config "$dir/bk.conf" --repo "$dir/repo-gap" --source "$source_id" 2>&1)"
like "$out" "GAP: binlog $first_m3_file" "bk list shows the gap"
out="$(restore --repo "$dir/repo-gap" --target-position "$(cat "$dir/m2.position")" 2>&1)"
ok $? "a target before the gap is restored" || diag "$out"
fingerprint tmy >"$dir/gap.fp"
cmp -s "$dir/m2.fp" "$dir/gap.fp"
ok $? "... exactly" || diag "$(diff "$dir/m2.fp" "$dir/gap.fp" | head)"

# The last ranges of a file lost, its ROTATE with them: nothing in either
# file is a hole, but the next file's first range says where the agent read
# the file end and that a ROTATE ended it (previous-end=): the archive is
# short of it, a gap, not a file a crash ended.  The file is
# one the restore from snap1 crosses, and what is removed is its tail from
# the last range that holds transactions (more than a ROTATE event's few
# dozen bytes; the agent often sends the ROTATE in a range of its own), so
# that something is lost.
snap1_file="$("$BK" list --config "$dir/bk.conf" --source "$source_id" --json 2>/dev/null |
    python3 -c 'import json, sys; d = json.load(sys.stdin)
print([s["binlog_file"] for s in d["sources"][0]["snapshots"] if s["id"] == sys.argv[1]][0])' "$snap1")"
read -r tail_file tail_next tail_lost < <(python3 - "$repo/$source_id/binlog" "$snap1_file" <<'PY'
import os, sys
root, first = sys.argv[1:]
files = sorted(f for f in os.listdir(root)
               if os.path.isdir(os.path.join(root, f)) and f >= first)
for here, after in zip(files, files[1:-1]):
    ranges = sorted(os.listdir(os.path.join(root, here)))
    sizes = [int(r.split("-")[1]) - int(r.split("-")[0]) for r in ranges]
    big = [i for i in range(1, len(ranges)) if sizes[i] > 512]
    if big:
        print(here, after, ",".join(ranges[big[-1]:]))
        break
PY
)
[[ -n "$tail_file" ]]
ok $? "a file the restore from snap1 ($snap1_file) crosses has ranges of transactions after its first: ${tail_file:-none}"
cp -a "$repo" "$dir/repo-tail"
for lost in ${tail_lost//,/ }; do
    rm "$dir/repo-tail/$source_id/binlog/$tail_file/$lost"
done
target_reset
out="$(restore --repo "$dir/repo-tail" --snapshot "$snap1" 2>&1)"
is $? 1 "a restore across a file that lost its last range is refused"
like "$out" "not continuous after $tail_file:[0-9]+ \\(binlog $tail_file is archived up to offset [0-9]+, but the agent read it to offset [0-9]+, where its (ROTATE|STOP) event ended it" \
    "... naming the file, where the archive ends and where the file ended" || diag "$out"
like "$out" "bk verify --source $source_id" "... and what to do" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bk%'")" 0 \
    "... before the target server is touched"
out="$("$BK" verify --config "$dir/bk.conf" --repo "$dir/repo-tail" --source "$source_id" 2>&1)"
is $? 4 "bk verify exits 4"
like "$out" "$tail_file: binlog gap: archived up to offset [0-9]+, but the agent read it to offset" \
    "... naming the file that lost its end" || diag "$out"

# The same with nothing but the ROTATE lost: m1's file was rotated after a
# quiet second, so its closing range holds the ROTATE alone.  No
# transaction is missing and the next file's GTID list follows; the lost
# range could have held an Incident event (no GTID) all the same.
m1_file="$(cut -d: -f1 "$dir/m1.position")"
m1_ranges=("$repo/$source_id/binlog/$m1_file"/*)
m1_last="$(basename "${m1_ranges[-1]}")"
m1_end="${m1_last#*-}"
m1_start="${m1_last%-*}"
[[ $((10#$m1_end - 10#$m1_start)) -lt 100 && $((10#$m1_start)) -eq "$(cut -d: -f2 "$dir/m1.position")" ]]
ok $? "$m1_file's last range ($m1_last) holds its ROTATE alone, after m1's position"
cp -a "$repo" "$dir/repo-rotate"
rm "$dir/repo-rotate/$source_id/binlog/$m1_file/$m1_last"
target_reset
out="$(restore --repo "$dir/repo-rotate" --snapshot "$snap1" --target-position "$(cat "$dir/m2.position")" 2>&1)"
is $? 1 "a restore past a file that lost only its closing range is refused"
like "$out" "past the end of what the archive holds from snapshot $snap1 on: binlog $m1_file is archived up to offset $((10#$m1_start)), but the agent read it to offset $((10#$m1_end)), where its ROTATE event ended it" \
    "... naming the file, where the archive ends and where the file ended" || diag "$out"
like "$out" "at or before $m1_file:$((10#$m1_start))" "... with a target before it as the way out" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bk%'")" 0 \
    "... before the target server is touched"
out="$("$BK" verify --config "$dir/bk.conf" --repo "$dir/repo-rotate" --source "$source_id" 2>&1)"
is $? 4 "bk verify exits 4"
like "$out" "$m1_file: binlog gap: archived up to offset $((10#$m1_start)), but the agent read it to offset $((10#$m1_end))" \
    "... naming the file" || diag "$out"
out="$("$BK" list --config "$dir/bk.conf" --repo "$dir/repo-rotate" --source "$source_id" 2>&1)"
like "$out" "GAP: binlog $m1_file: archived up to offset" "bk list shows the gap" || diag "$out"
out="$(restore --repo "$dir/repo-rotate" --snapshot "$snap1" --target-position "$(cat "$dir/m1.position")" 2>&1)"
ok $? "a target at the archive's end in $m1_file is restored" || diag "$out"

cp -a "$repo" "$dir/repo-bad"
victim="$dir/repo-bad/$source_id/binlog/$first_m3_file/$(basename "${ranges[1]}")"
"$ROOT/tests/lib/tamper_frame.py" "$victim"
out="$("$BK" verify --config "$dir/bk.conf" --repo "$dir/repo-bad" --source "$source_id" 2>&1)"
is $? 4 "bk verify finds the corrupted range (exit 4)"
like "$out" "$first_m3_file/$(basename "${ranges[1]}")" "... and names it" || diag "$out"
# An object the repository cannot read at all (EIO, injected with
# LD_PRELOAD) is not damage: verify stops with exit 5 naming it.  Damage
# found before it stopped still decides the exit status (4), and is said.
eio_part="$(basename "${ranges[2]}")"
out="$(LD_PRELOAD="$ROOT/tests/integration/bk_test_eio.so" BK_TEST_EIO_PATH="/$first_m3_file/$eio_part" \
    "$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
is $? 5 "bk verify of a binlog range the repository cannot read fails with exit 5"
like "$out" "$first_m3_file/$eio_part.*Input/output error" \
    "... naming the range and the cause" || diag "$out"
unlike "$out" "PROBLEM" "... and reporting no damage"
snap_parts_all=("$repo/$source_id/snapshot/$snap2/data"/*)
eio_snap_part="$(basename "${snap_parts_all[0]}")"
out="$(LD_PRELOAD="$ROOT/tests/integration/bk_test_eio.so" BK_TEST_EIO_PATH="/$snap2/data/$eio_snap_part" \
    "$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
is $? 5 "bk verify of a snapshot part the repository cannot read fails with exit 5"
like "$out" "could not check \"$snap2/data/$eio_snap_part\": .*Input/output error" \
    "... naming the part and the cause" || diag "$out"
unlike "$out" "PROBLEM" "... and reporting no damage"
unlike "$out" ": OK" "... nor calling the source OK" || diag "$out"
out="$(LD_PRELOAD="$ROOT/tests/integration/bk_test_eio.so" BK_TEST_EIO_PATH="/$snap2/data/$eio_snap_part" \
    "$BK" verify --config "$dir/bk.conf" --repo "$dir/repo-bad" --source "$source_id" 2>&1)"
is $? 4 "damage found before an object could not be read: exit 4"
like "$out" "PROBLEM $first_m3_file/$(basename "${ranges[1]}")" "... the damage is reported" || diag "$out"
like "$out" "FAILED: [0-9]+ objects, [0-9]+ problems? before it stopped" \
    "... its summary counts them, and says the run stopped" || diag "$out"
like "$out" "could not check \"$snap2/data/$eio_snap_part\"" "... and why it stopped" || diag "$out"
# With the key verify reads each range once, decrypting it: a CRC-32C that
# alone is damaged (the tag still holds) must be found all the same.
cp -a "$repo" "$dir/repo-crc"
"$ROOT/tests/lib/tamper_frame.py" --crc-only "$dir/repo-crc/$source_id/binlog/$first_m3_file/$(basename "${ranges[1]}")"
out="$("$BK" verify --config "$dir/bk.conf" --repo "$dir/repo-crc" --source "$source_id" 2>&1)"
is $? 4 "bk verify finds a range whose CRC alone is damaged (exit 4)"
like "$out" "$first_m3_file/$(basename "${ranges[1]}").*frame checksum mismatch" "... and names it and the checksum" || diag "$out"
rm -rf "$dir/repo-crc"
# A snapshot's objects are read once with the key too: a part whose tag
# fails and another table's part whose CRC-32C alone fails are both named,
# each once (the check goes on after the first table that fails).
snap_parts=("$repo/$source_id/snapshot/$snap2/data"/*)
first_part="$(basename "${snap_parts[0]}")"
last_part="$(basename "${snap_parts[-1]}")"
isnt "${first_part%%.*}" "${last_part%%.*}" "snapshot $snap2 has parts of several tables ($first_part, $last_part)"
cp -a "$repo" "$dir/repo-snapbad"
"$ROOT/tests/lib/tamper_frame.py" "$dir/repo-snapbad/$source_id/snapshot/$snap2/data/$first_part"
"$ROOT/tests/lib/tamper_frame.py" --crc-only "$dir/repo-snapbad/$source_id/snapshot/$snap2/data/$last_part"
out="$("$BK" verify --config "$dir/bk.conf" --repo "$dir/repo-snapbad" --source "$source_id" 2>&1)"
is $? 4 "bk verify finds damaged snapshot parts (exit 4)"
is "$(grep -c "PROBLEM $snap2/data/$first_part: " <<<"$out")" 1 "... the part whose tag fails, once" || diag "$out"
is "$(grep -c "PROBLEM $snap2/data/$last_part: .*frame checksum mismatch" <<<"$out")" 1 \
    "... and the other table's part whose CRC alone fails, once" || diag "$out"
# Tables are checked on --jobs threads: the same findings whatever their
# number (the order of the lines is not fixed).
out1="$("$BK" verify --config "$dir/bk.conf" --repo "$dir/repo-snapbad" --source "$source_id" --jobs 1 2>&1)"
out4="$("$BK" verify --config "$dir/bk.conf" --repo "$dir/repo-snapbad" --source "$source_id" --jobs 4 2>&1)"
is "$(sort <<<"$out4")" "$(sort <<<"$out1")" "... bk verify --jobs 4 reports exactly what --jobs 1 does"
is "$(sort <<<"$out")" "$(sort <<<"$out1")" "... and so does the default (2)"
# --force drops the snapshot's databases the target holds: a damaged part
# must refuse the restore before that, not half way through the load.
target_reset
tmy "CREATE DATABASE $db; CREATE TABLE $db.keep (x INT) ENGINE=InnoDB; INSERT INTO $db.keep VALUES (7)" >/dev/null
out="$(restore --repo "$dir/repo-snapbad" --force --snapshot "$snap2" --target immediate 2>&1)"
is $? 4 "bk restore --force of a snapshot with a damaged part is refused (exit 4)"
like "$out" "$snap2/data/($first_part|$last_part)" "... naming the part" || diag "$out"
like "$out" "dropped nothing" "... saying the target was not touched" || diag "$out"
is "$(tmy "SELECT x FROM $db.keep")" 7 "... the database --force would have dropped is still there"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME <> '$db' AND SCHEMA_NAME LIKE 'bk%'")" 0 \
    "... and nothing was written"
# A target with no database but GTIDs of its own in its binlog: --force
# resets its binlog (RESET MASTER), which a damaged part must not let happen.
target_reset
tmy "CREATE DATABASE bkr_own; DROP DATABASE bkr_own" >/dev/null
own="$(tmy "SELECT @@gtid_binlog_pos")"
out="$(restore --repo "$dir/repo-snapbad" --force --snapshot "$snap2" --target immediate 2>&1)"
is $? 4 "bk restore --force over a target with GTIDs ($own) and a damaged part is refused (exit 4)"
like "$out" "dropped nothing" "... saying the target was not touched" || diag "$out"
is "$(tmy "SELECT @@gtid_binlog_pos")" "$own" "... the target's binlog still holds its GTIDs"
rm -rf "$dir/repo-snapbad"
# mariadb-binlog names its work files unescaped in the statements it prints.
mkdir -p "$dir/it's"
out="$(restore --dry-run --work-dir "$dir/it's" 2>&1)"
is $? 2 "a --work-dir with a quote in its name is refused (exit 2)"
like "$out" "has a quote or a backslash in its name" "... saying why" || diag "$out"
target_reset
out="$(restore --repo "$dir/repo-bad" --target-position "$(cat "$dir/m3.position")" 2>&1)"
is $? 4 "bk restore refuses the corrupted range (exit 4)"
like "$out" "$first_m3_file" "... naming it" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bk%'")" 0 \
    "... before the target server is touched"

# ---------------------------------------------------------------- a snapshot part never archived
# Its message rejected by the shipper, say: the record is there, a part not.
parts=("$repo/$source_id/snapshot/$snap2/data"/*)
cp -a "$repo" "$dir/repo-part"
rm "$dir/repo-part/$source_id/snapshot/$snap2/data/$(basename "${parts[0]}")"
out="$("$BK" list --config "$dir/bk.conf" --repo "$dir/repo-part" --source "$source_id" 2>&1)"
like "$out" "snapshot $snap2: not complete \\($((${#parts[@]} - 1)) of its ${#parts[@]} data objects are in the repository\\)" \
    "bk list shows a snapshot with a data part missing as not complete" || diag "$out"
target_reset
out="$(restore --repo "$dir/repo-part" --force --snapshot "$snap2" --target immediate 2>&1)"
is $? 4 "bk restore --snapshot of it is refused as damaged (4)"
like "$out" "snapshot $snap2 of source \"$source_id\" is not complete" "... saying why" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bk%'")" 0 \
    "... before the target server is touched"
out="$(restore --repo "$dir/repo-part" --target immediate --dry-run 2>&1)"
ok $? "without --snapshot, bk restore plans the complete snapshot before it" || diag "$out"
like "$out" "snapshot $snap1 at" "... $snap1" || diag "$out"
like "$out" "warning: snapshot $snap2 of source \"$source_id\" is newer than snapshot $snap1 but not complete" \
    "... warning that it stepped over $snap2, damaged" || diag "$out"
out="$("$BK" expire --config "$dir/bk.conf" --repo "$dir/repo-part" --source "$source_id" --retain-full 1 --dry-run 2>&1)"
like "$out" "keep +snapshot $snap1" "bk expire --retain-full 1 keeps the older snapshot: the newer one is not complete" ||
    diag "$out"
# bk snapshot-get without --snapshot: the older one, saying why not the
# newer; with no complete snapshot left, 4 naming the damaged one, never
# 1 ("not in the archive"); the newest record unread (EIO) is 5, not a
# silent step back to an older snapshot.
out="$("$BK" snapshot-get --config "$dir/bk.conf" --repo "$dir/repo-part" --source "$source_id" "$dir/get-part" 2>&1)"
ok $? "bk snapshot-get writes the complete snapshot before it" || diag "$out"
like "$out" "warning: snapshot $snap2 .* not complete .*data objects.*using $snap1" \
    "... warning that it stepped over $snap2, damaged" || diag "$out"
cp -a "$dir/repo-part" "$dir/repo-none"
rm "$dir/repo-none/$source_id/snapshot/$snap1/schema.json"
out="$("$BK" snapshot-get --config "$dir/bk.conf" --repo "$dir/repo-none" --source "$source_id" "$dir/get-none" 2>&1)"
is $? 4 "bk snapshot-get with every snapshot damaged exits 4, not 1" || diag "$out"
like "$out" "snapshot $snap2, the newest with a record, is damaged" "... naming it" || diag "$out"
out="$(LD_PRELOAD="$ROOT/tests/integration/bk_test_eio.so" BK_TEST_EIO_PATH="/$snap2/snapshot.json" \
    "$BK" snapshot-get --config "$dir/bk.conf" --source "$source_id" "$dir/get-eio" 2>&1)"
is $? 5 "bk snapshot-get whose newest record cannot be read (EIO) exits 5" || diag "$out"
like "$out" "snapshot $snap2 .*Input/output error" "... naming it and the cause" || diag "$out"
test ! -e "$dir/get-eio"
ok $? "... and writes no older snapshot in its place"
# Named with --snapshot, a real EIO: on its record (read before DIR is
# made), and on a data part (read while DIR is written, which then goes).
for eio_path in "/$snap2/snapshot.json" "/$snap2/data/$eio_snap_part"; do
    out="$(LD_PRELOAD="$ROOT/tests/integration/bk_test_eio.so" BK_TEST_EIO_PATH="$eio_path" \
        "$BK" snapshot-get --config "$dir/bk.conf" --source "$source_id" --snapshot "$snap2" \
        "$dir/get-eio-named" 2>&1)"
    is $? 5 "bk snapshot-get --snapshot $snap2 with $eio_path unreadable (EIO) exits 5, not 1" || diag "$out"
    like "$out" "Input/output error" "... naming the cause" || diag "$out"
    test ! -e "$dir/get-eio-named"
    ok $? "... and leaves no DIR behind" || diag "$(find "$dir/get-eio-named" 2>&1 | head -n 5)"
done

# ---------------------------------------------------------------- bk expire
# With a second run and a dry run at the same time (two cron jobs, or a
# cron job and a manual run): none fails over what another removed while
# it read; between them they say what they removed.
"$BK" expire --config "$dir/bk.conf" --source "$source_id" --retain-full 1 \
    >"$dir/expire-beside.log" 2>&1 &
beside_pid=$!
"$BK" expire --config "$dir/bk.conf" --source "$source_id" --retain-full 1 --dry-run \
    >"$dir/expire-dry-beside.log" 2>&1 &
dry_pid=$!
out="$("$BK" expire --config "$dir/bk.conf" --source "$source_id" --retain-full 1 2>&1)"
ok $? "bk expire --retain-full 1" || diag "$out"
wait "$beside_pid"
ok $? "... a second one at the same time succeeds too" || diag "$(cat "$dir/expire-beside.log")"
wait "$dry_pid"
ok $? "... and so does a dry run beside them" || diag "$(cat "$dir/expire-dry-beside.log")"
out="$out
$(cat "$dir/expire-beside.log")"
like "$out" "removed snapshot $snap1" "... removes the older snapshot" || diag "$out"
like "$out" "removed binlog" "... and the binlog files before the kept snapshot's" || diag "$out"
unlike "$out" "warning" "... with the key, every snapshot's record authenticates: no warning" || diag "$out"
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
ok $? "bk verify passes after expire" || diag "$out"
target_reset
out="$(restore --target immediate 2>&1)"
ok $? "restore to the oldest kept moment (snapshot $snap2)" || diag "$out"
fingerprint tmy >"$dir/expired.fp"
cmp -s "$dir/m2.fp" "$dir/expired.fp"
ok $? "... equals m2" || diag "$(diff "$dir/m2.fp" "$dir/expired.fp" | head)"
target_reset
out="$(restore --target-position "$(cat "$dir/m1.position")" 2>&1)"
is $? 1 "a moment before the oldest kept snapshot is refused"
like "$out" "restorable window is from" "... with the window in the message" || diag "$out"

# ---------------------------------------------------------------- a cut inside an XA transaction
# A target between XA PREPARE and XA COMMIT restores the transaction
# prepared, as the source had it then: it holds its locks until someone
# ends it, so the report names it.
my "XA START 'bkr_xa2'; INSERT INTO $db.orders (amount) VALUES (71); XA END 'bkr_xa2';
    XA PREPARE 'bkr_xa2'" >/dev/null
sleep 1.1
my 'SHOW MASTER STATUS' | awk '{print $1 ":" $2}' >"$dir/xa.position"
my "XA COMMIT 'bkr_xa2'" >/dev/null
my "FLUSH BINARY LOGS" >/dev/null
xa_archived() { restore --dry-run --target-position "$(cat "$dir/xa.position")" >/dev/null 2>&1; }
wait_for 60 "the prepared XA transaction archived" xa_archived
target_reset
out="$(restore --target-position "$(cat "$dir/xa.position")" 2>&1)"
ok $? "a restore to a moment an XA transaction was prepared" || diag "$out"
like "$out" "WARNING: 1 XA transaction\\(s\\) left prepared, as on the source at the target; .*: 'bkr_xa2'" \
    "... says the transaction is left prepared, naming it" || diag "$out"
like "$(tmy "XA RECOVER")" "bkr_xa2" "... and the target has it prepared"
tmy "XA ROLLBACK 'bkr_xa2'" >/dev/null

# ---------------------------------------------------------------- CREATE TABLE ... SELECT
# Logged with its rows as one group, which mariadb-binlog's output replays
# as two transactions: into a target with log_bin on the GTID history would
# not be the source's (gtid_strict_mode stops the replay after the load).
# Refused before the target is touched.
my "CREATE TABLE $db.ctas ENGINE=InnoDB AS SELECT id, amount FROM $db.orders" >/dev/null
my 'SHOW MASTER STATUS' | awk '{print $1 ":" $2}' >"$dir/ctas.position"
my "FLUSH BINARY LOGS" >/dev/null
# Exit 1 while the archive does not reach the position yet.
ctas_archived() {
    restore --dry-run --target-position "$(cat "$dir/ctas.position")" >/dev/null 2>&1
    [[ $? -ne 1 ]]
}
target_reset
wait_for 60 "the CREATE TABLE ... SELECT archived" ctas_archived
out="$(restore --target-position "$(cat "$dir/ctas.position")" 2>&1)"
is $? 3 "a replay through CREATE TABLE ... SELECT into a target with log_bin on is refused"
like "$out" "holds CREATE TABLE \\.\\.\\. SELECT with its rows \\(GTID [0-9]+-[0-9]+-[0-9]+" \
    "... naming the transaction" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bk%'")" 0 \
    "... before the target server is touched"

# ---------------------------------------------------------------- a temporary table, the target's own settings
# Under binlog_format MIXED a session's statements on its temporary tables
# are logged as statements: one created before a snapshot and used after
# it cannot be replayed from the snapshot (its CREATE is before the
# replay's start), and is refused naming it.  (Its DROP at the session's
# end, which the target would not log, is refused too.)  Row events replayed by
# BINLOG statements follow two settings of the target alone:
# slave_run_triggers_for_rbr = ENFORCE fires its triggers again for rows
# the source logged with what its triggers did (a BEFORE trigger doubling
# a value, silently; an AFTER one failing), and slave_exec_mode =
# IDEMPOTENT would skip rows that do not match; the replay sets both to
# the defaults and puts them back.
my "USE $db; CREATE TABLE doubled (id INT PRIMARY KEY, v INT) ENGINE=InnoDB;
    CREATE TABLE from_staged (id INT PRIMARY KEY, amount INT) ENGINE=InnoDB;
    CREATE TRIGGER doubled_bi BEFORE INSERT ON doubled FOR EACH ROW SET NEW.v = NEW.v * 2" >/dev/null
coproc TEMP_SESSION { timeout 120 mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_TCP_PORT" \
    -u root -N -B >/dev/null 2>&1; }
# Bash unsets TEMP_SESSION_PID once the coprocess has ended: keep it.
temp_in="${TEMP_SESSION[1]}" temp_pid="$TEMP_SESSION_PID"
echo "SET SESSION binlog_format = 'MIXED'; USE $db;
      CREATE TEMPORARY TABLE staged (id INT PRIMARY KEY, amount INT); INSERT INTO staged VALUES (1, 81), (2, 82);" >&"$temp_in"
staged() { [[ "$(my "SHOW BINLOG EVENTS IN '$(my 'SHOW MASTER STATUS' | cut -f1)'" | grep -c 'INSERT INTO staged')" -ge 1 ]]; }
wait_for 30 "the temporary table filled" staged
result3="$(my "SELECT bk_snapshot('jobs=2')")"
snap3="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result3")"
[[ -n "$snap3" ]]
ok $? "a snapshot while a session holds a temporary table (binlog_format MIXED)" || diag "$result3"
my "INSERT INTO $db.doubled VALUES (1, 5); INSERT INTO $db.orders (amount) VALUES (90)" >/dev/null
my 'SHOW MASTER STATUS' | awk '{print $1 ":" $2}' >"$dir/trig.position"
echo "INSERT INTO from_staged SELECT * FROM staged;" >&"$temp_in"
exec {temp_in}>&-
wait "$temp_pid" 2>/dev/null
my 'SHOW MASTER STATUS' | awk '{print $1 ":" $2}' >"$dir/temp.position"
is "$(my "SELECT COUNT(*) FROM $db.from_staged")" 2 "... which the session used after it"
my "FLUSH BINARY LOGS" >/dev/null
target_reset
temp_archived() {
    restore --dry-run --snapshot "$snap3" --target-position "$(cat "$dir/temp.position")" >/dev/null 2>&1
    [[ $? -ne 1 ]]
}
wait_for 60 "the snapshot and the session's statements archived" temp_archived
out="$(restore --snapshot "$snap3" --target-position "$(cat "$dir/temp.position")" 2>&1)"
is $? 3 "a replay through a statement on a temporary table created before the snapshot is refused"
like "$out" "statement on temporary table $db\\.staged \\(GTID [0-9]+-[0-9]+-[0-9]+, at mariadb-bin\\.[0-9]+:[0-9]+, thread [0-9]+\\), which its session created before snapshot $snap3" \
    "... naming the table, the transaction and the snapshot" || diag "$out"
like "$out" "binlog_format=ROW" "... and what avoids it" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bk%'")" 0 \
    "... before the target server is touched"
target_reset # the refusal above is proven apart from what follows
tmy "SET GLOBAL slave_run_triggers_for_rbr = ENFORCE, slave_exec_mode = IDEMPOTENT" >/dev/null
out="$(restore --snapshot "$snap3" --target-position "$(cat "$dir/trig.position")" 2>&1)"
ok $? "a restore before it, into a target with slave_run_triggers_for_rbr=ENFORCE, slave_exec_mode=IDEMPOTENT" ||
    diag "$out"
like "$out" "slave_run_triggers_for_rbr set from ENFORCE to NO for the replay" "... says it set them for the replay" ||
    diag "$out"
is "$(tmy "SELECT v FROM $db.doubled WHERE id = 1")" 10 "... a BEFORE trigger's change is not applied twice"
is "$(tmy "SELECT COUNT(*) FROM $db.audit")" "$(tmy "SELECT COUNT(*) FROM $db.orders")" \
    "... nor an AFTER trigger's row (one audit row per order)"
is "$(tmy "SELECT @@slave_run_triggers_for_rbr, @@slave_exec_mode")" "ENFORCE	IDEMPOTENT" \
    "... and the target's settings are put back"

# ---------------------------------------------------------------- LOAD DATA logged as a statement, GTIDs out of order
# A LOAD DATA logged as a statement carries the loaded file in the binlog:
# mariadb-binlog writes it out (SQL_LOAD_MB-*) for the client to load.  The
# rows are plaintext: they stay in the restore's private work directory,
# never in TMPDIR, and go with it.  A source with gtid_strict_mode off may
# log a sequence number below its domain's last (SET gtid_seq_no, a
# replica's local writes): mariadb-binlog's own strict check would stop the
# replay there, after the load; a target with log_bin and gtid_strict_mode
# on would refuse it there too, so that one is refused before it is
# touched, naming the GTIDs.
result4="$(my "SELECT bk_snapshot('jobs=2')")"
snap4="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result4")"
[[ -n "$snap4" ]]
ok $? "a snapshot before a statement-logged LOAD DATA" || diag "$result4"
seq 1 500 | sed 's/$/,750/' >"$dir/orders.csv"
out="$(timeout 120 mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_TCP_PORT" \
    -u root --connect-timeout=10 --local-infile=1 -N -B -e "
    SET SESSION binlog_format = STATEMENT;
    CREATE TABLE $db.loaded (id INT PRIMARY KEY, amount INT) ENGINE=InnoDB;
    LOAD DATA LOCAL INFILE '$dir/orders.csv' INTO TABLE $db.loaded FIELDS TERMINATED BY ','" 2>&1)"
ok $? "500 rows loaded by LOAD DATA, logged as a statement" || diag "$out"
my 'SHOW MASTER STATUS' | awk '{print $1 ":" $2}' >"$dir/load.position"
source_strict="$(my 'SELECT @@global.gtid_strict_mode')"
low_seq=$(($(my "SELECT @@gtid_binlog_pos" | sed 's/.*-//') - 3))
out="$(my "SET GLOBAL gtid_strict_mode = 0;
    SET SESSION gtid_seq_no = $low_seq; INSERT INTO $db.loaded VALUES (1001, 1);
    SET GLOBAL gtid_strict_mode = $source_strict; INSERT INTO $db.loaded VALUES (1002, 2)")"
ok $? "a transaction logged with sequence number $low_seq, below its domain's last, then one after it" ||
    diag "$out"
my 'SHOW MASTER STATUS' | awk '{print $1 ":" $2}' >"$dir/backwards.position"
my 'SELECT @@gtid_binlog_pos' >"$dir/backwards.gtid"
my "FLUSH BINARY LOGS" >/dev/null
backwards_archived() {
    restore --dry-run --snapshot "$snap4" --target-position "$(cat "$dir/backwards.position")" >/dev/null 2>&1
    [[ $? -ne 1 ]]
}
target_reset
wait_for 60 "the snapshot, the LOAD DATA and the GTIDs out of order archived" backwards_archived
mkdir -p "$dir/restore-tmp" "$dir/restore-work"
out="$(TMPDIR="$dir/restore-tmp" restore --snapshot "$snap4" --work-dir "$dir/restore-work" \
    --target-position "$(cat "$dir/load.position")" 2>&1)"
ok $? "a restore through the statement-logged LOAD DATA" || diag "$out"
is "$(tmy "SELECT COUNT(*), SUM(amount) FROM $db.loaded")" "500	375000" "... loads its rows" || diag "$out"
is "$(find "$dir/restore-tmp" "$dir/restore-work" -mindepth 1 | wc -l)" 0 \
    "... and leaves no file in TMPDIR or the work directory" ||
    diag "$(find "$dir/restore-tmp" "$dir/restore-work" -mindepth 1 -ls)"
target_reset
out="$(restore --snapshot "$snap4" --target-position "$(cat "$dir/backwards.position")" 2>&1)"
is $? 3 "a replay of GTIDs out of order into a target with log_bin and gtid_strict_mode on is refused"
like "$out" "logs GTID [0-9]+-[0-9]+-$low_seq after [0-9]+-[0-9]+-[0-9]+ \\(the transaction ending at mariadb-bin\\.[0-9]+:[0-9]+\\)" \
    "... naming the GTIDs" || diag "$out"
like "$out" "SET GLOBAL gtid_strict_mode = OFF" "... and what to do" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bk%'")" 0 \
    "... before the target server is touched"
target_reset
tmy "SET GLOBAL gtid_strict_mode = 0" >/dev/null
out="$(restore --snapshot "$snap4" --target-position "$(cat "$dir/backwards.position")" 2>&1)"
ok $? "the same restore into a target with gtid_strict_mode off" || diag "$out"
is "$(tmy "SELECT COUNT(*), SUM(amount) FROM $db.loaded")" "502	375003" "... replays every row" || diag "$out"
is "$(tmy 'SELECT @@gtid_binlog_pos')" "$(cat "$dir/backwards.gtid")" \
    "... and the target's binlog ends at the source's GTID"

# ---------------------------------------------------------------- an Incident event
# A multi-row INSERT on a MyISAM table that overflows
# max_binlog_stmt_cache_size applies rows the binlog never gets: the server
# logs an Incident event (LOST_EVENTS) in their place, with no GTID.  No
# restore past it holds the source's data: the replay would fail on
# mariadb-binlog's "RELOAD DATABASE" after everything before it, or, with no
# transaction after the Incident, end before it and leave the rows out
# without a word.  Refused before the target is touched, naming the event;
# a target before it restores.
my "CREATE TABLE $db.lost (id INT PRIMARY KEY, v TEXT) ENGINE=MyISAM" >/dev/null
result_incident="$(my "SELECT bk_snapshot('jobs=2')")"
snap_incident="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result_incident")"
[[ -n "$snap_incident" ]]
ok $? "a snapshot before an Incident event" || diag "$result_incident"
my "INSERT INTO $db.orders (amount) VALUES (95)" >/dev/null
my "SET GLOBAL max_binlog_stmt_cache_size = 4096" >/dev/null
out="$(my "USE $db; SET SESSION binlog_format = ROW;
    INSERT INTO lost SELECT seq, REPEAT('x', 1000) FROM seq_1_to_100")"
my "SET GLOBAL max_binlog_stmt_cache_size = $old_stmt_cache" >/dev/null
like "$out" "ERROR 1705" "a multi-row INSERT on MyISAM overflows the statement cache" || diag "$out"
isnt "$(my "SELECT COUNT(*) FROM $db.lost")" 0 "... and leaves rows the binlog lacks"
incident_file="$(my 'SHOW MASTER STATUS' | cut -f1)"
incident_end="$(my 'SHOW MASTER STATUS' | cut -f2)"
incident_pos="$(my "SHOW BINLOG EVENTS IN '$incident_file'" | awk -F'\t' '$3 == "Incident" {print $2}' | tail -n 1)"
[[ "$incident_pos" =~ ^[0-9]+$ ]]
ok $? "the server logged an Incident event at $incident_file:$incident_pos" ||
    diag "$(my "SHOW BINLOG EVENTS IN '$incident_file'" | tail -n 4)"
my "FLUSH BINARY LOGS" >/dev/null
incident_archived() {
    restore --dry-run --snapshot "$snap_incident" --target-position "$incident_file:$incident_end" >/dev/null 2>&1
    [[ $? -ne 1 ]]
}
target_reset
wait_for 60 "the Incident event archived" incident_archived
like "$(grep -F "binlog \"$incident_file\" at $incident_pos: " "$dir/agent.log")" \
    "ERROR: .*the server logged an Incident event \\(LOST_EVENTS: .*HINT: Take a new snapshot now" \
    "the agent says at once that the server logged an Incident event, and what to do" ||
    diag "$(tail -n 5 "$dir/agent.log")"
out="$(restore --snapshot "$snap_incident" 2>&1)"
is $? 4 "a restore to the latest archived transaction, past the Incident event, is refused"
like "$out" "binlog $incident_file holds at $incident_pos an Incident event \\(LOST_EVENTS: [^)]*\\), stamped .*: the source applied a change there that it could not log" \
    "... naming the event" || diag "$out"
like "$out" "--target-position $incident_file:$incident_pos" "... and the target before it" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bk%'")" 0 \
    "... before the target server is touched"
out="$(restore --snapshot "$snap_incident" --target-position "$incident_file:$incident_pos" 2>&1)"
ok $? "a restore to the Incident event's position" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM $db.orders WHERE amount = 95") $(tmy "SELECT COUNT(*) FROM $db.lost")" "1 0" \
    "... holds the transaction before it, and none of the rows lost"
# A time target is judged by stamps, which are statement starts: a
# transaction that began before an Incident event and committed after it is
# logged after the event but stamped before it.  A target between the two
# stamps takes that transaction, so its replay would pass the event.
result_late="$(my "SELECT bk_snapshot('jobs=2')")"
snap_late="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result_late")"
[[ -n "$snap_late" ]]
ok $? "a snapshot after that Incident event" || diag "$result_late"
while [[ "$(date +%N)" > "100000000" ]]; do sleep 0.01; done
long_start="$(date -u +%s)"
my "USE $db; SET SESSION binlog_format = ROW; INSERT INTO orders (amount) SELECT 96 + SLEEP(4)" \
    >"$dir/long.out" 2>&1 &
long_pid=$!
sleep 2.2
my "SET GLOBAL max_binlog_stmt_cache_size = 4096" >/dev/null
out="$(my "USE $db; SET SESSION binlog_format = ROW;
    INSERT INTO lost SELECT seq, REPEAT('x', 1000) FROM seq_1001_to_1100")"
my "SET GLOBAL max_binlog_stmt_cache_size = $old_stmt_cache" >/dev/null
wait "$long_pid"
like "$out" "ERROR 1705" "a second Incident event while a long statement runs" || diag "$out"
late_file="$(my 'SHOW MASTER STATUS' | cut -f1)"
late_end="$(my 'SHOW MASTER STATUS' | cut -f2)"
late_pos="$(my "SHOW BINLOG EVENTS IN '$late_file'" | awk -F'\t' '$3 == "Incident" {print $2}' | tail -n 1)"
my "FLUSH BINARY LOGS" >/dev/null
late_archived() {
    restore --dry-run --snapshot "$snap_late" --target-position "$late_file:$late_end" >/dev/null 2>&1
    [[ $? -ne 1 ]]
}
wait_for 60 "the second Incident event archived" late_archived
out="$(restore --snapshot "$snap_late" --target-time "$(date -u -d "@$((long_start + 1))" +%Y-%m-%dT%H:%M:%SZ)" 2>&1)"
is $? 4 "a time target before the Incident's stamp that takes a transaction logged after it is refused"
like "$out" "binlog $late_file holds at $late_pos an Incident event .*that a restore to target .* replays past" \
    "... naming the event" || diag "$out"
is "$(tmy "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'bk_restore_incomplete'")" 0 \
    "... before the target server is touched"

# ---------------------------------------------------------------- a snapshot without GTIDs, a target with its own
# A snapshot of a source that had logged no GTID yet (a new server, or
# just after RESET MASTER) has an empty GTID state; a target whose binlog
# holds GTIDs of its own needs RESET MASTER all the same, which --force
# does: else replay would log after the target's own GTIDs
# (gtid_strict_mode refuses the source's), and the target would end at
# neither history's state.  A new source id and agent state: the agent does
# not archive a second history under the same names.
kill "$agent_pid" && wait "$agent_pid" 2>/dev/null
agent_pid=""
streams="$(grep -c "streaming the binlog from" "$dir/agent.log")"
out="$(my "RESET MASTER; SELECT @@gtid_binlog_pos")"
is "$out" "" "the source's binlog reset: no GTID logged" || diag "$out"
source_id="mdbr-reset-$$"
bk_test_agent_conf "mysql_host = 127.0.0.1" "mysql_port = $MYSQL_TCP_PORT" "mysql_user = root" \
    "server_id = $((5000 + $$ % 1000))" "state_dir = $dir/agent-state-reset" "control_user = $(id -un)" \
    "roles = $role" >"$dir/agent.conf"
start_agent
wait_for 30 "agent streaming the reset binlog" streaming_since "$((streams + 1))"
result5="$(my "SELECT bk_snapshot('jobs=2')")"
snap5="$(sed -n 's/.*"snapshot_id":"\([^"]*\)".*/\1/p' <<<"$result5")"
[[ -n "$snap5" && -z "$(my "SELECT @@gtid_binlog_pos")" ]]
ok $? "a snapshot of the source before any GTID" || diag "$result5"
my "INSERT INTO $db.orders (amount) VALUES (100)" >/dev/null
reset_gtid="$(my "SELECT @@gtid_binlog_pos")"
my "FLUSH BINARY LOGS" >/dev/null
reset_archived() {
    restore --dry-run --snapshot "$snap5" --target-gtid "$reset_gtid" >/dev/null 2>&1
    [[ $? -ne 1 ]]
}
# The dry run checks the target too: a fresh one, as the restore's.
target_reset
wait_for 60 "the snapshot and the transaction after it archived" reset_archived
ok $? "... both archived"
tmy "CREATE DATABASE bkr_own; DROP DATABASE bkr_own" >/dev/null
own="$(tmy "SELECT @@gtid_binlog_pos")"
out="$(restore --snapshot "$snap5" 2>&1)"
is $? 1 "without --force, a target whose binlog holds GTIDs ($own) is refused"
like "$out" "already holds GTIDs.*pass --force \\(which does it\\)" "... saying --force does RESET MASTER" ||
    diag "$out"
out="$(restore --force --snapshot "$snap5" 2>&1)"
ok $? "--force: restore of the snapshot without GTIDs, and the transaction after it" || diag "$out"
is "$(tmy 'SELECT @@gtid_binlog_pos, @@gtid_slave_pos')" "$reset_gtid	$reset_gtid" \
    "... the target's binlog and replica GTID positions are the source's ($reset_gtid)"
is "$(tmy "SELECT COUNT(*) FROM $db.orders WHERE amount = 100")" 1 "... with the transaction replayed"
target_reset
tmy "CREATE DATABASE bkr_own; DROP DATABASE bkr_own" >/dev/null
out="$(restore --force --snapshot "$snap5" --target immediate 2>&1)"
ok $? "--force --target immediate: the snapshot without GTIDs alone" || diag "$out"
is "$(tmy 'SELECT @@gtid_binlog_pos')" "" "... the target's binlog holds none of its own GTIDs: the source had none"

done_testing
