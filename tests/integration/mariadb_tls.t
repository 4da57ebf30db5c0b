#!/usr/bin/env bash
# bk-mysql-agent over TLS (mysql_ssl_mode, mysql_ssl_ca, mysql_ssl_cert,
# mysql_ssl_key, mysql_ssl_crl) against a real MariaDB with TLS on, its
# certificates made here by a throwaway CA:
#
#  - mysql_ssl_mode = required: every session of the agent is encrypted (its
#    account is REQUIRE SSL, and performance_schema shows the binlog dump's
#    cipher); the binlog streams into Kafka and bk_snapshot() succeeds;
#  - verify_identity with the right CA and a client certificate (an account
#    REQUIRE X509) streams; with another CA, or a CRL that revokes the
#    server's certificate, it is refused with an ERROR naming the setting;
#  - verify_identity against a certificate for another host name is refused;
#  - required or verify_identity against a server without TLS (this one
#    restarted without it, its general log on) is refused, naming the
#    server and the setting, and no login reaches that server: the general
#    log has no Connect of the agent's account (a mariadb client's login as
#    that account shows there is one to see);
#  - contradictory settings stop the agent at the start (exit 3);
#  - bk restore over TLS (--mysql-ssl-mode, --mysql-ssl-ca, the agent's
#    names): the snapshot taken over TLS and the binlog after it restored
#    into a second server with TLS, checked against the test CA, as an
#    account the target lets in over TLS only (the load's sessions and the
#    replay's mariadb client); another CA refused; that server restarted
#    without TLS, its general log on: --mysql-ssl-mode=required and
#    verify_identity refused, and a ~/.my.cnf saying "ssl" (how a restore
#    asked for TLS before, which Connector/C answers with plain text when
#    the server offers none) refused too, as are a world-writable
#    ~/.my.cnf and one saying reconnect, each with no login of the
#    restore's account reaching the server.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=SCRIPTDIR/../lib/tap.sh
source "$ROOT/tests/lib/tap.sh"
SERVICES="$ROOT/scripts/services"
eval "$("$SERVICES" env)" || bail_out "'scripts/services env' failed"
"$SERVICES" status mariadb >/dev/null 2>&1 || bail_out "mariadb is not running"
"$SERVICES" status kafka >/dev/null 2>&1 || bail_out "kafka is not running"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-mariadb-tls.XXXXXX")"
chmod 755 "$dir"
# shellcheck source=SCRIPTDIR/../lib/bk_env.sh
source "$ROOT/tests/lib/bk_env.sh"
# shellcheck source=SCRIPTDIR/../lib/mariadb.sh
source "$ROOT/tests/lib/mariadb.sh"
AGENT="$BK_AGENT_BIN"
agent_pid=""
shipper_pid=""
TLS_PORT=$((MYSQL_TCP_PORT + 3))
tls_services() { BK_SERVICES_DIR="$dir/tls" BK_MYSQL_PORT="$TLS_PORT" "$SERVICES" "$@"; }
# The restore's target, a second server.
TARGET_PORT=$((MYSQL_TCP_PORT + 4))
target_services() { BK_SERVICES_DIR="$dir/target" BK_MYSQL_PORT="$TARGET_PORT" "$SERVICES" "$@"; }
target_my() {
    timeout 60 mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$TARGET_PORT" \
        -u root --connect-timeout=10 -N -B -r -e "$1" 2>&1
}
# SQL as root on the TLS server (the client does not ask for TLS).
tls_my() {
    timeout 60 mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$TLS_PORT" \
        -u root --connect-timeout=10 -N -B -r -e "$1" 2>&1
}

# shellcheck disable=SC2329 # called by the trap
cleanup() {
    [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    [[ -n "$shipper_pid" ]] && kill "$shipper_pid" 2>/dev/null && wait "$shipper_pid" 2>/dev/null
    tls_services stop mariadb >/dev/null 2>&1
    target_services stop mariadb >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT

stop_agent() {
    [[ -n "$agent_pid" ]] || return 0
    kill "$agent_pid" 2>/dev/null
    wait "$agent_pid" 2>/dev/null
    agent_pid=""
}

bk_test_init mariadb-tls
source_id="mdb-tls-$$"

# ---------------------------------------------------------------- certificates
# A CA, the server's certificate for 127.0.0.1, a client certificate, and
# another CA that signed none of them.
pki="$dir/pki"
mkdir -p "$pki"
(
    cd "$pki" || exit 1
    for ca in ca other-ca; do
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bk test $ca" \
            -keyout "$ca.key" -out "$ca.pem" || exit 1
    done
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout server.key -out server.csr &&
        printf 'subjectAltName = IP:127.0.0.1\n' >server.ext &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 2 \
            -days 2 -extfile server.ext -out server.pem &&
        openssl req -newkey rsa:2048 -nodes -subj "/CN=bk-agent" \
            -keyout client.key -out client.csr &&
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -set_serial 3 \
            -days 2 -out client.pem &&
        openssl req -newkey rsa:2048 -nodes -subj "/CN=db.example" \
            -keyout other-name.key -out other-name.csr &&
        printf 'subjectAltName = DNS:db.example\n' >other-name.ext &&
        openssl x509 -req -in other-name.csr -CA ca.pem -CAkey ca.key -set_serial 4 \
            -days 2 -extfile other-name.ext -out other-name.pem || exit 1
    # A CRL of the CA that revokes the server's certificate.
    mkdir -p crl && : >crl/index.txt && echo 01 >crl/crlnumber &&
        cat >crl/ca.cnf <<CNF &&
[ca]
default_ca = test
[test]
database = $pki/crl/index.txt
crlnumber = $pki/crl/crlnumber
default_md = sha256
default_crl_days = 2
CNF
        openssl ca -config crl/ca.cnf -cert ca.pem -keyfile ca.key \
            -revoke server.pem &&
        openssl ca -config crl/ca.cnf -cert ca.pem -keyfile ca.key \
            -gencrl -out revoked.crl
) >"$dir/pki.log" 2>&1
ok $? "a throwaway CA, server and client certificates, a CRL" || bail_out "$(tail -n 5 "$dir/pki.log")"
chmod 644 "$pki"/*
chmod 600 "$pki/client.key"

BK_MARIADB_ARGS="--ssl-ca=$pki/ca.pem --ssl-cert=$pki/server.pem --ssl-key=$pki/server.key --performance-schema=ON" \
    tls_services start mariadb >"$dir/tls-start.log" 2>&1
ok $? "a MariaDB with TLS starts" || bail_out "$(tail -n 5 "$dir/tls-start.log")"
is "$(tls_my "SELECT @@have_ssl")" "YES" "it offers TLS"

printf 'pw-%s\n' "$RANDOM$RANDOM" >"$dir/agent.password"
chmod 600 "$dir/agent.password"
role="bk_tls_role_$$"
# Accounts the server lets in over TLS only: any plain session of the agent
# would be refused.
grants="RELOAD, REPLICATION SLAVE, BINLOG MONITOR, PROCESS, SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES"
out="$(tls_my "CREATE USER bk_tls@'127.0.0.1' IDENTIFIED BY '$(head -1 "$dir/agent.password")' REQUIRE SSL;
    GRANT $grants ON *.* TO bk_tls@'127.0.0.1';
    CREATE USER bk_x509@'127.0.0.1' IDENTIFIED BY '$(head -1 "$dir/agent.password")'
        REQUIRE SUBJECT '/CN=bk-agent' AND ISSUER '/CN=bk test ca';
    GRANT $grants ON *.* TO bk_x509@'127.0.0.1';
    CREATE USER bk_plain@'127.0.0.1' IDENTIFIED BY '$(head -1 "$dir/agent.password")';
    CREATE ROLE $role;
    CREATE FUNCTION bk_snapshot RETURNS STRING SONAME 'bk_udf.so';
    CREATE FUNCTION bk_status RETURNS STRING SONAME 'bk_udf.so';
    CREATE DATABASE tlsdb;
    CREATE TABLE tlsdb.t (id INT PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB;
    INSERT INTO tlsdb.t SELECT seq, CONCAT('row ', seq) FROM tlsdb.seq_1_to_1000")"
ok $? "TLS-only agent accounts, the bk functions, a table" || bail_out "$out"

server_user="$(ps -o user= -p "$(cat "$dir/tls/mariadb/mariadbd.pid")" | tr -d ' ')"
# agent_conf NAME LINE...: a configuration for the TLS server.
agent_conf() {
    local name="$1"
    shift
    bk_test_agent_conf "mysql_host = 127.0.0.1" "mysql_port = $TLS_PORT" \
        "mysql_password_file = $dir/agent.password" \
        "server_id = $((5000 + $$ % 1000))" "state_dir = $dir/agent-state" \
        "control_socket = $dir/tls/mariadb/agent.sock" \
        "control_user = $server_user" "roles = $role" "$@" >"$dir/$name.conf"
}
start_agent() {
    : >"$dir/$1.log"
    "$AGENT" --config "$dir/$1.conf" >>"$dir/$1.log" 2>&1 &
    agent_pid=$!
}

# ---------------------------------------------------------------- required
# The shipper archives what the agent streams, for bk restore below.
bk_test_start_shipper
agent_conf required "mysql_user = bk_tls" "mysql_ssl_mode = required"
start_agent required
wait_for 30 "the agent streaming over TLS" grep -q "streaming the binlog from" "$dir/required.log"
ok $? "mysql_ssl_mode = required: the agent streams as a REQUIRE SSL account" ||
    diag "$(tail -n 5 "$dir/required.log")"
grep -q "MariaDB connections: mysql_ssl_mode = required" "$dir/required.log"
ok $? "... and says the mode it connects with"
cipher="$(tls_my "SELECT s.VARIABLE_VALUE FROM performance_schema.status_by_thread s
    JOIN performance_schema.threads t USING (THREAD_ID)
    WHERE t.PROCESSLIST_USER = 'bk_tls' AND t.PROCESSLIST_COMMAND LIKE 'Binlog Dump%'
      AND s.VARIABLE_NAME = 'Ssl_cipher'")"
like "$cipher" '^(TLS_|ECDHE|DHE|AES)' "the binlog dump's session has a TLS cipher" ||
    diag "cipher: $cipher"
out="$(tls_my "INSERT INTO tlsdb.t VALUES (1001, 'after the start')")"
ok $? "a change after the start" || diag "$out"
target="$(tls_my "SHOW MASTER STATUS" | cut -f 2)"
# shellcheck disable=SC2329 # called by wait_for
archived() {
    tls_my "SET ROLE $role; SELECT bk_status()" | grep -q "\"archived\":{\"file\":\"[^\"]*\",\"pos\":$target}"
}
wait_for 20 "the change archived" archived
ok $? "... is streamed into Kafka (bk_status() archived it)" ||
    diag "$(tls_my "SET ROLE $role; SELECT bk_status()")"
result="$(tls_my "SET ROLE $role; SELECT bk_snapshot('jobs=2,label=tls')")"
like "$result" '"snapshot_id"' "bk_snapshot() over TLS (two readers, each a REQUIRE SSL session)" ||
    diag "$result $(tail -n 5 "$dir/required.log")"
# A change after the snapshot, for the restore's replay.
out="$(tls_my "INSERT INTO tlsdb.t VALUES (1002, 'after the snapshot')")"
ok $? "a change after the snapshot" || diag "$out"
after_gtid="$(tls_my "SELECT @@gtid_binlog_pos")"
target="$(tls_my "SHOW MASTER STATUS" | cut -f 2)"
wait_for 20 "the change after the snapshot archived" archived
ok $? "... is streamed into Kafka" || diag "$(tls_my "SET ROLE $role; SELECT bk_status()")"
plain="$(tls_my "SELECT COUNT(*) FROM performance_schema.threads t
    LEFT JOIN performance_schema.status_by_thread s
      ON s.THREAD_ID = t.THREAD_ID AND s.VARIABLE_NAME = 'Ssl_cipher'
    WHERE t.PROCESSLIST_USER = 'bk_tls' AND COALESCE(s.VARIABLE_VALUE, '') = ''")"
is "$plain" 0 "no session of the agent is without TLS"
grep -q "ERROR" "$dir/required.log"
isnt $? 0 "no ERROR in the agent's log" || diag "$(grep ERROR "$dir/required.log")"
stop_agent

# ---------------------------------------------------------------- verify_identity
agent_conf verify "mysql_user = bk_x509" "mysql_ssl_ca = $pki/ca.pem" \
    "mysql_ssl_cert = $pki/client.pem" "mysql_ssl_key = $pki/client.key"
start_agent verify
wait_for 30 "the agent streaming" grep -q "streaming the binlog from" "$dir/verify.log"
ok $? "the server checked against mysql_ssl_ca, a client certificate (REQUIRE SUBJECT): the agent streams" ||
    diag "$(tail -n 5 "$dir/verify.log")"
grep -q "mysql_ssl_mode = verify_identity (the default)" "$dir/verify.log"
ok $? "... verify_identity, the default with a CA"
stop_agent

# refused NAME DESCRIPTION PATTERN: the agent logs an ERROR matching
# PATTERN, and streams nothing.
refused() {
    start_agent "$1"
    wait_for 30 "the refusal: $2" grep -Eq "$3" "$dir/$1.log"
    ok $? "$2: refused, saying why" || diag "$(tail -n 5 "$dir/$1.log")"
    grep -q "streaming the binlog from" "$dir/$1.log"
    isnt $? 0 "... and nothing streams"
    stop_agent
}
agent_conf wrong-ca "mysql_user = bk_tls" "mysql_ssl_mode = verify_identity" \
    "mysql_ssl_ca = $pki/other-ca.pem"
refused wrong-ca "verify_identity with another CA" \
    "ERROR: could not connect to MariaDB at 127.0.0.1:$TLS_PORT: .*HINT: mysql_ssl_mode = verify_identity: the server's certificate must be signed by a CA of mysql_ssl_ca \(\"$pki/other-ca.pem\"\)"
agent_conf revoked "mysql_user = bk_tls" "mysql_ssl_ca = $pki/ca.pem" \
    "mysql_ssl_crl = $pki/revoked.crl"
refused revoked "a server certificate mysql_ssl_crl revokes" \
    "ERROR: could not connect to MariaDB at 127.0.0.1:$TLS_PORT: .*(revoked|certificate).*HINT: .*not revoked in mysql_ssl_crl"

# A login that keeps failing (a wrong password) with required: the look at
# the greeting before it counts as an aborted connection toward the server's
# max_connect_errors, which only a successful login clears, so it is taken
# before the first try only: one look per try would get the agent's host
# blocked after max_connect_errors tries.  Every refused login counts as an
# aborted connection too.
aborted_connects() {
    tls_my "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
        WHERE VARIABLE_NAME = 'ABORTED_CONNECTS'"
}
echo "not-the-password" >"$dir/wrong.password"
chmod 600 "$dir/wrong.password"
agent_conf wrong-password "mysql_user = bk_tls" "mysql_ssl_mode = required"
sed -i "s|^mysql_password_file = .*|mysql_password_file = $dir/wrong.password|" "$dir/wrong-password.conf"
aborted_before="$(aborted_connects)"
start_agent wrong-password
refused_logins() { grep -c "Access denied for user 'bk_tls'" "$dir/wrong-password.log"; }
three_refused() { (($(refused_logins) >= 3)); }
wait_for 30 "three refused logins" three_refused
ok $? "required with a wrong password: the agent's logins are refused, and retried" ||
    diag "$(tail -n 5 "$dir/wrong-password.log")"
stop_agent
tries="$(refused_logins)"
aborted=$(($(aborted_connects) - aborted_before))
is "$aborted" $((tries + 1)) "... $tries tries counted $aborted aborted connections: one look at the greeting, then logins only"

# ---------------------------------------------------------------- bk restore
# Into a second server with TLS, as an account it lets in over TLS only:
# every session of the restore (its own, the loading ones, the replay's
# mariadb client) must be encrypted, or its login is refused.
BK_MARIADB_ARGS="--ssl-ca=$pki/ca.pem --ssl-cert=$pki/server.pem --ssl-key=$pki/server.key" \
    target_services start mariadb >"$dir/target-start.log" 2>&1
ok $? "a second MariaDB with TLS, the restore's target" || bail_out "$(tail -n 5 "$dir/target-start.log")"
printf 'rpw-%s\n' "$RANDOM$RANDOM" >"$dir/restorer.password"
chmod 600 "$dir/restorer.password"
out="$(target_my "CREATE USER bk_restorer@'127.0.0.1' IDENTIFIED BY '$(head -1 "$dir/restorer.password")' REQUIRE SSL;
    GRANT ALL PRIVILEGES ON *.* TO bk_restorer@'127.0.0.1' WITH GRANT OPTION;
    RESET MASTER")"
ok $? "a restoring account the target lets in over TLS only" || diag "$out"
restore_tls() {
    timeout 300 "$BK" restore --config "$dir/bk.conf" --source "$source_id" --mysql-host 127.0.0.1 \
        --mysql-port "$TARGET_PORT" --mysql-user bk_restorer \
        --mysql-password-file "$dir/restorer.password" "$@"
}
# The shipper has the snapshot and the binlog up to the change after it.
wait_for 60 "the repository holding the snapshot and the change after it" \
    restore_tls --dry-run --mysql-ssl-ca "$pki/ca.pem" --target-gtid "$after_gtid"
ok $? "bk restore --dry-run --mysql-ssl-ca: the archive is there, the target checked over TLS" ||
    diag "$(restore_tls --dry-run --mysql-ssl-ca "$pki/ca.pem" --target-gtid "$after_gtid" 2>&1 | tail -n 3)"
out="$(restore_tls --mysql-ssl-mode=verify_identity --mysql-ssl-ca "$pki/ca.pem" --target-gtid "$after_gtid" 2>&1)"
ok $? "bk restore --mysql-ssl-mode=verify_identity --mysql-ssl-ca (the test CA): restored" || diag "$out"
is "$(target_my "SELECT COUNT(*) FROM tlsdb.t")" 1002 \
    "... the snapshot's rows and the replayed one (the replay's client over TLS too)"
is "$(target_my "SELECT v FROM tlsdb.t WHERE id = 1002")" "after the snapshot" "... the change after the snapshot replayed"
out="$(restore_tls --dry-run --force --mysql-ssl-ca "$pki/other-ca.pem" --target immediate 2>&1)"
is $? 1 "verify_identity with another CA: refused"
like "$out" "could not connect to the target server \\(127.0.0.1:$TARGET_PORT\\) as bk_restorer: .*HINT: --mysql-ssl-mode=verify_identity: the server's certificate must be signed by a CA of --mysql-ssl-ca" \
    "... saying which option" || diag "$out"
out="$(restore_tls --dry-run --mysql-ssl-mode=preferred 2>&1)"
is $? 2 "--mysql-ssl-mode=preferred: a usage error"
like "$out" 'mysql-ssl-mode must be disabled, required or verify_identity, not "preferred".*HINT: bk has no preferred mode' \
    "... saying why there is none" || diag "$out"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --mysql-socket "$dir/target/mariadb/mysqld.sock" \
    --mysql-ssl-mode=required --dry-run 2>&1)"
is $? 3 "--mysql-ssl-mode=required over the Unix socket: refused"
like "$out" "mysql-ssl-mode is set, but bk connects through the Unix socket .*, where TLS protects nothing" \
    "... saying TLS protects nothing there" || diag "$out"

# The target restarted without TLS, its general log on: no refusal may
# let a login of bk_restorer reach it.
BK_MARIADB_ARGS="--general-log=ON --log-output=TABLE" \
    target_services restart mariadb >"$dir/target-restart.log" 2>&1
ok $? "the target restarts without TLS, its general log on" ||
    bail_out "$(tail -n 5 "$dir/target-restart.log")"
is "$(target_my "SELECT @@have_ssl")" "DISABLED" "it offers no TLS"
restorer_logins() {
    target_my "SELECT COUNT(*) FROM mysql.general_log
        WHERE command_type = 'Connect' AND argument LIKE '%bk_restorer%'"
}
logins_before="$(restorer_logins)"
out="$(restore_tls --dry-run --force --mysql-ssl-mode=required --target immediate 2>&1)"
is $? 1 "bk restore --mysql-ssl-mode=required against a server without TLS: refused"
like "$out" "MariaDB at 127.0.0.1:$TARGET_PORT offers no TLS, and --mysql-ssl-mode=required refuses it: the login was not sent.*HINT: Enable TLS on the server" \
    "... before the login, saying so" || diag "$out"
is "$(restorer_logins)" "$logins_before" "... and no login of the restore reached the server (general log)"
out="$(restore_tls --dry-run --force --mysql-ssl-ca "$pki/ca.pem" --target immediate 2>&1)"
is $? 1 "verify_identity (the default with --mysql-ssl-ca) against a server without TLS: refused"
like "$out" "HINT: --mysql-ssl-mode=verify_identity needs TLS, which the server does not offer" \
    "... saying so" || diag "$out"
is "$(restorer_logins)" "$logins_before" "... and no login of the restore reached the server (general log)"
# TLS asked for the old way, in the [client] group of ~/.my.cnf: plain
# text once the server offers none.  Refused, before any login.
mkdir -p "$dir/home"
printf '[client]\nssl\n' >"$dir/home/.my.cnf"
out="$(HOME="$dir/home" restore_tls --dry-run --force --target immediate 2>&1)"
is $? 3 "\"ssl\" in ~/.my.cnf, no --mysql-ssl-*: refused"
like "$out" "the option files give the mariadb client --ssl, a TLS setting: bk restore takes TLS from its --mysql-ssl-\\* options alone" \
    "... saying TLS comes from the options" || diag "$out"
is "$(restorer_logins)" "$logins_before" "... and no login of the restore reached the server (general log)"
# A world-writable option file: the mariadb client skips it, so
# --print-defaults does not list it, and Connector/C reads it all the same
# (here turning verify_identity's check off).  Refused, named.
printf '[client]\nssl-verify-server-cert=0\n' >"$dir/home/.my.cnf"
chmod 666 "$dir/home/.my.cnf"
out="$(HOME="$dir/home" restore_tls --dry-run --force --mysql-ssl-ca "$pki/ca.pem" --target immediate 2>&1)"
is $? 3 "a world-writable ~/.my.cnf: refused"
like "$out" "the option file $dir/home/.my.cnf is world-writable" "... naming it" || diag "$out"
# reconnect would log in again without the probe and the session's check.
printf '[client]\nreconnect=1\n' >"$dir/home/.my.cnf"
chmod 600 "$dir/home/.my.cnf"
out="$(HOME="$dir/home" restore_tls --dry-run --force --mysql-ssl-mode=required --target immediate 2>&1)"
is $? 3 "reconnect=1 in ~/.my.cnf: refused"
like "$out" "the option files give the mariadb client reconnect, a setting bk restore makes itself" \
    "... saying bk sets it" || diag "$out"
is "$(restorer_logins)" "$logins_before" "... and no login of the restore reached the server (general log)"
rm -f "$dir/home/.my.cnf"
# That a login of the restore would show: disabled logs in in plain text
# (and REQUIRE SSL refuses it).
out="$(restore_tls --dry-run --force --mysql-ssl-mode=disabled --target immediate 2>&1)"
like "$out" "Access denied for user 'bk_restorer'" "--mysql-ssl-mode=disabled: the login goes in plain text (REQUIRE SSL refuses it)" ||
    diag "$out"
logins_after="$(restorer_logins)"
((logins_after > logins_before))
ok $? "... and the general log shows it ($logins_before, then $logins_after Connect rows of bk_restorer)"
target_services stop mariadb >/dev/null 2>&1

# ---------------------------------------------------------------- no TLS
# The server restarted without TLS: neither mode falls back to plain text,
# and neither sends its login there.  verify_identity is refused by
# Connector/C before it sends anything; required (whose Connector/C 3.3
# would go on in plain text) by the agent's look at the server's greeting,
# which sends nothing.  A login reaching the server, even one it refuses,
# is a Connect in its general log.
BK_MARIADB_ARGS="--general-log=ON --log-output=TABLE" \
    tls_services restart mariadb >"$dir/plain-restart.log" 2>&1
ok $? "the server restarts without TLS, its general log on" ||
    bail_out "$(tail -n 5 "$dir/plain-restart.log")"
is "$(tls_my "SELECT @@have_ssl")" "DISABLED" "it offers no TLS"
# The logins of bk_plain the server has seen.
plain_logins() {
    tls_my "SELECT COUNT(*) FROM mysql.general_log
        WHERE command_type = 'Connect' AND argument LIKE '%bk_plain%'"
}
logins_before="$(plain_logins)"
agent_conf plain-required "mysql_user = bk_plain" "mysql_ssl_mode = required"
refused plain-required "required against a server without TLS" \
    "ERROR: .*MariaDB at 127.0.0.1:$TLS_PORT .*mysql_ssl_mode = required refuses it.* HINT: Enable TLS on the server"
grep -q "ERROR: MariaDB at 127.0.0.1:$TLS_PORT offers no TLS, and mysql_ssl_mode = required refuses it: the login was not sent" "$dir/plain-required.log"
ok $? "... before the login, saying so" || diag "$(grep ERROR "$dir/plain-required.log" | head -n 2)"
is "$(plain_logins)" "$logins_before" "... and no login of the agent reached the server (general log)"
logins_before="$(plain_logins)"
agent_conf plain-verify "mysql_user = bk_plain" "mysql_ssl_ca = $pki/ca.pem"
refused plain-verify "verify_identity against a server without TLS" \
    "ERROR: could not connect to MariaDB at 127.0.0.1:$TLS_PORT: .*HINT: mysql_ssl_mode = verify_identity needs TLS, which the server does not offer"
is "$(plain_logins)" "$logins_before" "... and no login of the agent reached the server (general log)"
logins_before="$(plain_logins)"
out="$(timeout 60 mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$TLS_PORT" \
    -u bk_plain -p"$(head -1 "$dir/agent.password")" --connect-timeout=10 -N -B -e "SELECT 1" 2>&1)"
ok $? "a mariadb client logs in as bk_plain in plain text" || diag "$out"
is "$(plain_logins)" $((logins_before + 1)) "... and the general log shows that login"

# ---------------------------------------------------------------- another name
# The server's certificate, from the right CA, for another host name.
BK_MARIADB_ARGS="--ssl-ca=$pki/ca.pem --ssl-cert=$pki/other-name.pem --ssl-key=$pki/other-name.key" \
    tls_services restart mariadb >"$dir/tls-restart.log" 2>&1
ok $? "the TLS server restarts with a certificate for db.example" || diag "$(tail -n 5 "$dir/tls-restart.log")"
agent_conf other-name "mysql_user = bk_tls" "mysql_ssl_ca = $pki/ca.pem"
refused other-name "verify_identity, a certificate naming another host" \
    "ERROR: could not connect to MariaDB at 127.0.0.1:$TLS_PORT: .*HINT: .* and name \"127.0.0.1\" \(in its subjectAltName\)"

# ---------------------------------------------------------------- at the start
# settings that contradict each other: exit 3 at once, naming the setting.
start_refused() {
    local name="$1" pattern="$2"
    shift 2
    agent_conf "$name" "mysql_user = bk_tls" "$@"
    timeout 20 "$AGENT" --config "$dir/$name.conf" >"$dir/$name.log" 2>&1
    is $? 3 "$name: the agent stops at the start" &&
        grep -Eq "$pattern" "$dir/$name.log"
    ok $? "... saying: $pattern" || diag "$(cat "$dir/$name.log")"
}
start_refused ca-disabled "mysql_ssl_ca is set, but mysql_ssl_mode is disabled" \
    "mysql_ssl_mode = disabled" "mysql_ssl_ca = $pki/ca.pem"
start_refused cert-no-key "mysql_ssl_cert is set without mysql_ssl_key" \
    "mysql_ssl_mode = required" "mysql_ssl_cert = $pki/client.pem"
start_refused unreadable "mysql_ssl_ca \"$dir/none.pem\" cannot be read" \
    "mysql_ssl_ca = $dir/none.pem"
chmod 644 "$pki/client.key"
start_refused open-key "mysql_ssl_key file \"$pki/client.key\" is accessible by group or others" \
    "mysql_ssl_cert = $pki/client.pem" "mysql_ssl_key = $pki/client.key" \
    "mysql_ssl_ca = $pki/ca.pem"
start_refused bad-mode 'mysql_ssl_mode must be disabled, required or verify_identity, not "prefer"' \
    "mysql_ssl_mode = prefer"

tls_services stop mariadb >/dev/null 2>&1
done_testing
