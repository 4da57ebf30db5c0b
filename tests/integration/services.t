#!/usr/bin/env bash
# Checks the throwaway services that scripts/services runs. Expects them to be
# started by the caller (scripts/services start); stops and restarts Kafka.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=SCRIPTDIR/../lib/tap.sh
source "$ROOT/tests/lib/tap.sh"
SERVICES="$ROOT/scripts/services"

env_lines="$("$SERVICES" env)" || bail_out "'scripts/services env' failed"
eval "$env_lines"

if ! status_out="$("$SERVICES" status 2>&1)"; then
    diag "$status_out"
    bail_out "services are not running: run scripts/services start first"
fi

export PGCONNECT_TIMEOUT=10
pg() {
    timeout 30 "$BK_PGBIN/psql" -X -A -t -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -c "$1" 2>&1
}
my() {
    timeout 30 mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_TCP_PORT" -u root \
        --connect-timeout=10 -N -B -e "$1" 2>&1
}
kafka_tool() {
    # kafka_2.13 3.9 has no kafka.admin.TopicCommand; it lives in kafka-tools.
    timeout 60 java -Xmx256m -XX:-UsePerfData -cp "$BK_KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$BK_KAFKA_BROKERS" "$@" 2>&1
}
consume_first() {
    timeout 30 kcat -C -b "$BK_KAFKA_BROKERS" -t "$1" -p 0 -o beginning -c 1 -e -q 2>&1
}

# ---- PostgreSQL
is "$(pg 'SHOW data_checksums')" "on" "pg: data_checksums = on"
is "$(pg 'SHOW wal_level')" "replica" "pg: wal_level = replica"
is "$(pg 'SHOW archive_mode')" "on" "pg: archive_mode = on"
v="$(pg 'SHOW server_version_num')"
is "${v:0:2}" "15" "pg: server_version_num starts with 15 ($v)"
is "$(pg 'SHOW listen_addresses')" "127.0.0.1" "pg: listen_addresses = 127.0.0.1"
is "$(pg 'SELECT inet_server_addr()')" "127.0.0.1" "pg: answered over TCP on 127.0.0.1"

# ---- MariaDB
is "$(my 'SELECT @@log_bin')" "1" "mariadb: log_bin = 1"
is "$(my 'SELECT @@binlog_format')" "ROW" "mariadb: binlog_format = ROW"
is "$(my 'SELECT @@gtid_strict_mode')" "1" "mariadb: gtid_strict_mode = 1"
is "$(my 'SELECT @@server_id')" "1" "mariadb: server_id = 1"
v="$(my 'SELECT @@version')"
is "$(cut -d. -f1,2 <<<"$v")" "10.11" "mariadb: version is 10.11 ($v)"
is "$(my 'SELECT @@bind_address')" "127.0.0.1" "mariadb: bind_address = 127.0.0.1"
is "$(my 'SELECT @@log_bin_basename')" "$BK_MYSQL_BINLOG_DIR/mariadb-bin" \
    "mariadb: binlogs in BK_MYSQL_BINLOG_DIR"

# ---- Kafka
meta="$(timeout 30 kcat -L -b "$BK_KAFKA_BROKERS" -m 5 2>&1)"
is "$(grep -o 'broker 1 at [^ ]*' <<<"$meta")" "broker 1 at $BK_KAFKA_BROKERS" \
    "kafka: metadata lists broker 1 at $BK_KAFKA_BROKERS"

topic="bk_services_t_$$_$RANDOM"
msg="hello from services.t $$ $RANDOM"
out="$(kafka_tool --create --topic "$topic" --partitions 1 --replication-factor 1)"
ok $? "kafka: TopicCommand creates topic $topic" || diag "$out"
out="$(printf '%s\n' "$msg" | timeout 30 kcat -P -b "$BK_KAFKA_BROKERS" -t "$topic" -p 0 \
    -X acks=all -X message.timeout.ms=20000 2>&1)"
ok $? "kafka: produced one message with acks=all" || diag "$out"
is "$(consume_first "$topic")" "$msg" "kafka: consumed the same message back"

"$SERVICES" status >/dev/null 2>&1
is "$?" "0" "status exits 0 while all three run"

# ---- Kafka stop / start keeps its data
out="$("$SERVICES" stop kafka 2>&1)"
ok $? "stop kafka" || diag "$out"
out="$("$SERVICES" status kafka 2>&1)"
is "$?" "3" "status kafka exits 3 once stopped"
is "$out" "kafka: stopped" "status kafka says stopped"
"$SERVICES" status pg mariadb >/dev/null 2>&1
is "$?" "0" "pg and mariadb keep running"
out="$("$SERVICES" start kafka 2>&1)"
ok $? "start kafka again" || diag "$out"
is "$(consume_first "$topic")" "$msg" "kafka: message from before the restart is still there"

out="$(kafka_tool --delete --topic "$topic")"
ok $? "kafka: TopicCommand deletes topic $topic" || diag "$out"
# shellcheck disable=SC2317 # called through wait_for
topic_gone() { ! kafka_tool --list | grep -qx "$topic"; }
wait_for 30 "topic $topic to disappear" topic_gone
ok $? "kafka: topic $topic is gone"

done_testing
