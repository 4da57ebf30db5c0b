# tests/lib/mariadb.sh: what the MariaDB tests share.  Source it after
# tests/lib/tap.sh and "scripts/services env", with dir (the test's own
# directory), source_id and prefix set before the agent's configuration is
# written.
#
#   my [--user U] SQL        SQL on the test server as root (or U) over TCP:
#                            rows without headers, tab-separated, raw; an
#                            error is printed on stdout too, for diag
#   my_script                SQL from stdin, as root
#   bk_test_agent_conf [LINE...]
#                            the agent settings every test shares (source,
#                            Kafka, topic prefix, public key, control socket,
#                            ranges cut every 200ms), then LINEs
#   mariadb_target_init      a second server to restore into, on the port
#                            after the test server's, in $dir/target:
#                            sets TARGET_PORT, TARGET_DIR, TARGET_SOCKET
#   tmy SQL                  SQL on it as root, over its socket
#   target_services ARGS     scripts/services for it
#   target_reset             a fresh one, gtid_strict_mode on, as an
#                            operator's would be

my() {
    local user=root
    if [[ "$1" == --user ]]; then
        user="$2"
        shift 2
    fi
    timeout 120 mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_TCP_PORT" \
        -u "$user" --connect-timeout=10 -N -B -r -e "$1" 2>&1
}

# my_script: SQL from stdin, as root.
my_script() {
    timeout 120 mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_TCP_PORT" \
        -u root --connect-timeout=10 -N -B 2>&1
}

bk_test_agent_conf() {
    cat <<CONF
source_id = $source_id
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $prefix
key_file = $dir/bk.key.pub
control_socket = $BK_MYSQL_AGENT_SOCKET
range_interval = 200ms
CONF
    printf '%s\n' "$@"
}

mariadb_target_init() {
    TARGET_PORT=$((MYSQL_TCP_PORT + 1))
    TARGET_DIR="$dir/target"
    TARGET_SOCKET="$TARGET_DIR/mariadb/mysqld.sock"
}

tmy() {
    timeout 120 mariadb --no-defaults --protocol=SOCKET -h localhost -S "$TARGET_SOCKET" -u root \
        --connect-timeout=10 -N -B -r -e "$1" 2>&1
}

target_services() {
    BK_SERVICES_DIR="$TARGET_DIR" BK_MYSQL_PORT="$TARGET_PORT" "$ROOT/scripts/services" "$@"
}

target_reset() {
    target_services stop mariadb >/dev/null 2>&1
    rm -rf "${TARGET_DIR:?}/mariadb"
    target_services start mariadb >>"$dir/target-start.log" 2>&1 &&
        tmy "SET GLOBAL gtid_strict_mode = 1" >/dev/null
}
