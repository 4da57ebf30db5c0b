#!/usr/bin/env bash
# bk init against the real broker: creates the four topics with backup-grade
# settings, is idempotent, and reports every weak setting of existing topics
# (made here with Kafka's own TopicCommand), failing on those that lose data.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env kafka)"
BK="$ROOT/cli/bk"
dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-topics.XXXXXX")"
trap 'rm -rf "$dir"' EXIT
prefix="bkit-topics-$$-$RANDOM"

kafka_topics() {
    timeout 60 java -Xmx256m -XX:-UsePerfData -cp "$BK_KAFKA_LIBS/*" \
        org.apache.kafka.tools.TopicCommand --bootstrap-server "$BK_KAFKA_BROKERS" "$@" 2>&1
}

cat >"$dir/bk.conf" <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $prefix
topic_partitions = 2
CONF

out="$("$BK" init --config "$dir/bk.conf" 2>&1)"
ok $? "bk init creates the topics"
for kind in wal snapshot binlog audit; do
    like "$out" "$prefix\.$kind: created: 2 partitions, replication factor 1, cleanup.policy=delete" \
        "$prefix.$kind created with 2 partitions, delete policy"
done
like "$out" "bk init: 4 topics created, 0 warnings, Kafka has 1 broker" "summary: 4 created, no warnings"

described="$(kafka_topics --describe --topic "$prefix.wal")"
like "$described" 'cleanup.policy=delete' "the wal topic has cleanup.policy=delete"
like "$described" 'flush.messages=1' "a single-node cluster's topics flush every message"
like "$described" 'max.message.bytes=16799068' "max.message.bytes fits the largest chunk bk allows"
like "$described" 'unclean.leader.election.enable=false' "unclean leader election is off"
like "$described" 'retention.ms=604800000' "data retention is 7 days"
like "$(kafka_topics --describe --topic "$prefix.audit")" 'retention.ms=7776000000' \
    "audit retention is 90 days"

out="$("$BK" init --config "$dir/bk.conf" 2>&1)"
ok $? "a second bk init succeeds"
like "$out" '0 topics created, 0 warnings' "and creates nothing"
out="$("$BK" init --config "$dir/bk.conf" --check 2>&1)"
ok $? "bk init --check on good topics exits 0"

# Topics made by someone else, weaker than a backup needs.
weak="bkit-weak-$$-$RANDOM"
kafka_topics --create --topic "$weak.wal" --partitions 1 --replication-factor 1 \
    --config cleanup.policy=compact >/dev/null
kafka_topics --create --topic "$weak.snapshot" --partitions 1 --replication-factor 1 \
    --config retention.ms=3600000 --config max.message.bytes=500000 >/dev/null
kafka_topics --create --topic "$weak.binlog" --partitions 1 --replication-factor 1 \
    --config unclean.leader.election.enable=true --config retention.bytes=1073741824 >/dev/null
printf 'kafka_brokers = %s\ntopic_prefix = %s\n' "$BK_KAFKA_BROKERS" "$weak" >"$dir/weak.conf"
out="$("$BK" init --config "$dir/weak.conf" 2>&1)"
status=$?
is $status 3 "bk init on weak topics exits 3"
like "$out" "ERROR: $weak\.wal: cleanup.policy=compact: compaction keeps only the newest message per key" \
    "compaction is an error, with the reason"
like "$out" "ERROR: $weak\.snapshot: max.message.bytes=500000 is below the largest bk message" \
    "a max.message.bytes too small for our chunks is an error"
like "$out" "WARNING: $weak\.snapshot: retention.ms=3600000 \(1.0 h\) is short" \
    "short retention is a warning"
like "$out" "WARNING: $weak\.binlog: unclean.leader.election.enable=true" \
    "unclean leader election is a warning"
like "$out" "WARNING: $weak\.binlog: retention.bytes=1073741824 deletes data by size" \
    "size-based retention is a warning"
for kind in wal snapshot binlog; do
    like "$out" "ERROR: $weak\.$kind: message.timestamp.type=CreateTime: messages carry the sources' clocks" \
        "$weak.$kind without LogAppendTime is an error"
done
like "$out" "entity-name $weak\.wal --add-config message.timestamp.type=LogAppendTime" \
    "naming the command that fixes it"
like "$out" "$weak\.audit: created" "the missing audit topic was created meanwhile"
like "$out" 'error: 5 bk topic settings would lose data' "the summary counts the errors"
like "$out" 'HINT: Fix them with kafka-configs.sh --alter' "and says what to do"

json="$("$BK" init --config "$dir/weak.conf" --json 2>/dev/null)"
like "$json" '"ok": false' "--json reports ok=false"
like "$json" '"level": "error",[[:space:]]*"topic": "'"$weak"'.wal"' "--json lists the compaction error"

# Missing topics with --check: refused, pointing at bk init.
printf 'kafka_brokers = %s\ntopic_prefix = bkit-none-%s\n' "$BK_KAFKA_BROKERS" "$$" >"$dir/none.conf"
out="$("$BK" init --config "$dir/none.conf" --check 2>&1)"
isnt $? 0 "bk init --check with missing topics fails"
like "$out" "Kafka topic \"bkit-none-$$\.wal\" does not exist" "naming the missing topic"
like "$out" 'HINT: Create the topics with "bk init"' "and how to create it"

# More replicas than brokers: a configuration error (3), not a Kafka outage
# (5) that scripts and service managers would retry, and nothing created.
many="bkit-many-$$-$RANDOM"
printf 'kafka_brokers = %s\ntopic_prefix = %s\ntopic_replication_factor = 2\n' \
    "$BK_KAFKA_BROKERS" "$many" >"$dir/many.conf"
out="$("$BK" init --config "$dir/many.conf" 2>&1)"
is $? 3 "a replication factor above the broker count exits 3"
like "$out" 'topic_replication_factor = 2, but Kafka has 1 broker up' \
    "naming the setting and the broker count"
like "$out" 'HINT: Set topic_replication_factor to at most 1' "and what to set"
unlike "$(kafka_topics --list)" "$many" "no topic was created"

# No broker there: a clear error within the configured bound, not a hang.
printf 'kafka_brokers = 127.0.0.1:1\nkafka_timeout = 3s\n' >"$dir/down.conf"
start=$SECONDS
out="$("$BK" init --config "$dir/down.conf" 2>&1)"
is $? 5 "an unreachable broker exits 5"
like "$out" 'could not read metadata from Kafka' "saying Kafka could not be reached"
ok $((SECONDS - start > 15)) "within the configured timeout ($((SECONDS - start)) s)"

kafka_topics --delete --topic "$prefix\..*" >/dev/null
kafka_topics --delete --topic "$weak\..*" >/dev/null
done_testing
