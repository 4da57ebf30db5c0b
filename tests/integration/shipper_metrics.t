#!/usr/bin/env bash
# bk-shipper's Prometheus endpoint (metrics_listen) against the real broker,
# fed by tests/integration/bk_test_produce: the counters, the consumer lag
# (held up by a half-sent object, back to 0 once it is given up), the
# commit latency histogram and each source's newest archived time agree
# with what was sent and what the repository holds; the exposition passes a
# strict format check (and promtool's, when it is installed); other paths
# get 404; a malformed address and an address already taken stop the
# shipper with exit 3 and a message naming metrics_listen.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env kafka)"
SHIPPER="$ROOT/shipper/bk-shipper"
PRODUCE="$ROOT/tests/integration/bk_test_produce"
FAKE_WAL="$ROOT/tests/lib/fake_wal.py"
BK="$ROOT/cli/bk"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-metrics-test.XXXXXX")"
chmod 755 "$dir"
prefix="bkit-metrics-$$-$RANDOM"
source_id="src-$$"
repo="$dir/repo"
log="$dir/shipper.log"
SEG=1048576 # 1 MiB segments keep the test quick
CHUNK=65536 # 16 chunks per segment
shipper_pid=""

cleanup() {
    [[ -n "$shipper_pid" ]] && kill -KILL "$shipper_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

# A port nobody listens on, below the ephemeral range (scripts/services
# says why), and below the ports of make check's lanes (23306 and up, and
# the servers tests start up to 52 above each): one free now but in a
# lane's band could be taken by the other lane's next server meanwhile.
port="$(python3 -c '
import random, socket
for _ in range(200):
    port = random.randint(20000, 23000)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
    print(port)
    break
')"
listen="127.0.0.1:$port"
url="http://$listen/metrics"

"$BK" keygen --out "$dir/key" >/dev/null 2>&1
write_conf() {
    cat >"$1" <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $prefix
repository = $repo
shipper_id = $2
group_id = test-group-$$
abandon_after = 3s
CONF
}
write_conf "$dir/bk.conf" "metrics-shipper-$$"
echo "metrics_listen = $listen" >>"$dir/bk.conf"

produce() {
    "$PRODUCE" --brokers "$BK_KAFKA_BROKERS" --prefix "$prefix" --key "$dir/key.pub" \
        --source "$source_id" --segment-size "$SEG" --chunk-size "$CHUNK" "$@"
}
seg() { printf '00000001%08X%08X' 0 "$1"; }
scrape() { curl -fsS --max-time 10 "$url"; }
# metric NAME FILE: the value of the sample NAME (with its labels) in FILE.
metric() { awk -v n="$1" '$1 == n { print $2; found = 1 } END { exit !found }' "$2"; }
metric_is() { scrape >"$dir/now.prom" && [[ "$(metric "$1" "$dir/now.prom")" == "$2" ]]; }
# The lag samples of the wal topic, "partition lag" per line.
wal_lags() {
    sed -n "s/^bk_shipper_consumer_lag_messages{topic=\"$prefix\\.wal\",partition=\"\\([0-9]*\\)\"} \\([0-9]*\\)$/\\1 \\2/p" "$1"
}
wal_lag_all_zero() {
    scrape >"$dir/now.prom" || return 1
    local lags
    lags="$(wal_lags "$dir/now.prom")"
    [[ -n "$lags" ]] && awk '$2 != 0 { bad = 1 } END { exit bad }' <<<"$lags"
}
wal_lag_is() {
    scrape >"$dir/now.prom" || return 1
    wal_lags "$dir/now.prom" | grep -q " $1\$"
}

# ---- command line and configuration
"$SHIPPER" --help | grep -q -- '--metrics-listen ADDR:PORT'
ok $? "--help names --metrics-listen"
write_conf "$dir/bad.conf" "bad-$$"
echo "metrics_listen = localhost:9187" >>"$dir/bad.conf"
out="$("$SHIPPER" --config "$dir/bad.conf" 2>&1)"
is $? 3 "a malformed metrics_listen exits 3"
like "$out" 'bad\.conf" line 7: metrics_listen must be an IPv4 address and a port .*not "localhost:9187"' \
    "and names the setting, the file and the line"
out="$("$SHIPPER" --config "$dir/bk.conf" --metrics-listen '[::1]' 2>&1)"
is $? 3 "a malformed --metrics-listen exits 3"
like "$out" 'metrics_listen must be .*not "\[::1\]"' "and names the setting"

# ---- the endpoint before anything arrives
"$SHIPPER" --config "$dir/bk.conf" >>"$log" 2>&1 &
shipper_pid=$!
wait_for 30 "the metrics endpoint" scrape
ok $? "the shipper serves $url"
like "$(cat "$log")" "serving metrics at http://$listen/metrics" "and says where in its log"
ctype="$(curl -fsS -o /dev/null -w '%{content_type}' "$url")"
is "$ctype" "text/plain; version=0.0.4; charset=utf-8" "Content-Type is the text format 0.0.4"
scrape >"$dir/empty.prom"
is "$(metric bk_shipper_up "$dir/empty.prom")" 1 "bk_shipper_up 1"
is "$(metric bk_shipper_objects_archived_total "$dir/empty.prom")" 0 "nothing archived yet"
start="$(metric bk_shipper_start_time_seconds "$dir/empty.prom")"
now="$(date +%s)"
awk -v s="$start" -v n="$now" 'BEGIN { exit !(s > n - 120 && s <= n + 1) }'
ok $? "bk_shipper_start_time_seconds is the start time ($start, now $now)"

# ---- three objects archived
mkdir -p "$dir/wal"
"$FAKE_WAL" "$dir/wal" 1 1 6 --segment-size "$SEG" >/dev/null
sent_at="$(date +%s)"
produce "$dir/wal/$(seg 1)" "$dir/wal/$(seg 2)" "$dir/wal/$(seg 3)" >/dev/null
ok $? "three segments sent and acknowledged"
wait_for 60 "three objects counted" metric_is bk_shipper_objects_archived_total 3
ok $? "bk_shipper_objects_archived_total is 3"
wait_for 30 "the lag back to 0" wal_lag_all_zero
ok $? "the consumer lag of every wal partition reaches 0"
scrape >"$dir/three.prom"
is "$(ls "$repo/$source_id/wal" | wc -l)" 3 "the repository holds the three objects"
stored="$(cat "$repo/$source_id/wal/"* | wc -c)"
is "$(metric bk_shipper_archived_bytes_total "$dir/three.prom")" "$stored" \
    "bk_shipper_archived_bytes_total is the bytes the repository holds ($stored)"
is "$(metric bk_shipper_repository_commit_seconds_count "$dir/three.prom")" 3 \
    "the commit latency histogram counts the three objects"
is "$(metric 'bk_shipper_repository_commit_seconds_bucket{le="+Inf"}' "$dir/three.prom")" 3 \
    "its +Inf bucket too"
newest="$(metric "bk_shipper_source_newest_archived_timestamp_seconds{source=\"$source_id\"}" "$dir/three.prom")"
now="$(date +%s)"
awk -v t="$newest" -v s="$sent_at" -v n="$now" 'BEGIN { exit !(t >= s - 2 && t <= n + 1) }'
ok $? "the source's newest archived time is when it was sent ($newest, sent $sent_at, now $now)"
is "$(grep -c '^bk_shipper_consumer_lag_messages{topic="'"$prefix"'\.wal"' "$dir/three.prom")" \
    "$(grep -c "^bk_shipper_consumer_lag_messages{topic=\"$prefix\\.wal\",partition=\"[0-9]*\"} 0$" "$dir/three.prom")" \
    "every wal partition's lag sample is 0"
for kind in kafka repository audit memory; do
    is "$(metric "bk_shipper_errors_total{kind=\"$kind\"}" "$dir/three.prom")" 0 "no $kind errors"
done

# ---- a re-send: a duplicate, and the source's newest time moves on
sleep 1
produce "$dir/wal/$(seg 1)" >/dev/null
wait_for 30 "the duplicate counted" metric_is bk_shipper_objects_duplicate_total 1
ok $? "an identical re-send counts in bk_shipper_objects_duplicate_total"
scrape >"$dir/dup.prom"
is "$(metric bk_shipper_objects_archived_total "$dir/dup.prom")" 3 "and not as archived"
is "$(metric bk_shipper_repository_commit_seconds_count "$dir/dup.prom")" 4 \
    "the histogram counts every commit (3 archived + 1 duplicate)"
newer="$(metric "bk_shipper_source_newest_archived_timestamp_seconds{source=\"$source_id\"}" "$dir/dup.prom")"
awk -v a="$newer" -v b="$newest" 'BEGIN { exit !(a > b) }'
ok $? "a duplicate moves the source's newest archived time on ($newest -> $newer)"

# ---- a half-sent object holds the lag up until it is given up
produce --stop-after-chunks 2 "$dir/wal/$(seg 4)" >/dev/null
wait_for 30 "a lag of 2" wal_lag_is 2
ok $? "a half-sent object (2 of 16 chunks) shows as a lag of 2 on its partition"
sleep 1.5
wal_lag_is 2
ok $? "and stays: its chunks are not durable"
sleep 3 # abandon_after, in broker time, before the next message
produce "$dir/wal/$(seg 5)" >/dev/null
wait_for 30 "the attempt given up" metric_is bk_shipper_attempts_abandoned_total 1
ok $? "the stalled attempt counts in bk_shipper_attempts_abandoned_total"
wait_for 30 "the lag back to 0" wal_lag_all_zero
ok $? "and the lag is back to 0"
is "$(metric bk_shipper_objects_archived_total "$dir/now.prom")" 4 "the next object was archived"
is "$(metric bk_shipper_messages_lost_total "$dir/now.prom")" 0 "no message lost in Kafka"

# ---- a corrupted message
produce --tamper-chunk 2 --tamper-offset 300 "$dir/wal/$(seg 6)" >/dev/null
wait_for 30 "the rejected message counted" metric_is bk_shipper_messages_rejected_total 1
ok $? "a corrupted message counts in bk_shipper_messages_rejected_total"
wait_for 30 "the lag back to 0" wal_lag_all_zero
ok $? "and holds no lag"
scrape >"$dir/final.prom"
is "$(metric bk_shipper_objects_conflict_total "$dir/final.prom")" 0 "no conflicts"
is "$(metric bk_shipper_repository_commit_seconds_count "$dir/final.prom")" \
    "$(($(metric bk_shipper_objects_archived_total "$dir/final.prom") + 1))" \
    "the histogram's _count is the objects archived plus the duplicate"

# ---- the exposition format, strictly
python3 - "$dir/final.prom" >"$dir/format.out" 2>&1 <<'PY'
# Text format 0.0.4: every sample's family has a # TYPE (and # HELP) line
# before it, a family's samples are together, names, labels and escapes are
# well-formed, values are numbers, counters are _total and never negative,
# histogram buckets are cumulative and end at le="+Inf" equal to _count.
import re
import sys

text = open(sys.argv[1]).read()
errors = []
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r"^(%s)(?:\{((?:%s)(?:,%s)*)?\})? (\S+)(?: -?[0-9]+)?$" % (NAME, LABEL, LABEL))
NUMBER = re.compile(r"^(?:[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]Inf|NaN)$")
types, helps, done, seen = {}, {}, set(), set()
current = None
buckets = {}
counts = {}
if not text.endswith("\n"):
    errors.append("the text does not end with a newline")
for no, line in enumerate(text.split("\n")[:-1], 1):
    if line.startswith("# HELP ") or line.startswith("# TYPE "):
        m = re.match(r"^# (HELP|TYPE) (%s) (.+)$" % NAME, line)
        if m is None:
            errors.append("line %d: malformed: %s" % (no, line))
            continue
        table = types if m.group(1) == "TYPE" else helps
        if m.group(2) in table:
            errors.append("line %d: a second %s for %s" % (no, m.group(1), m.group(2)))
        table[m.group(2)] = m.group(3)
        if m.group(1) == "TYPE" and m.group(3) not in ("counter", "gauge", "histogram", "summary", "untyped"):
            errors.append("line %d: unknown type %s" % (no, m.group(3)))
        continue
    if line.startswith("#") or line == "":
        continue
    m = SAMPLE.match(line)
    if m is None:
        errors.append("line %d: not a sample: %s" % (no, line))
        continue
    name, labels, value = m.group(1), m.group(2) or "", m.group(3)
    family = name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
            family = name[: -len(suffix)]
    if family not in types:
        errors.append("line %d: %s has no # TYPE line before it" % (no, name))
        continue
    if family not in helps:
        errors.append("line %d: %s has no # HELP line before it" % (no, name))
    if family != current:
        if family in done:
            errors.append("line %d: the samples of %s are not together" % (no, family))
        done.add(family)
        current = family
    if (name, labels) in seen:
        errors.append("line %d: a second sample %s{%s}" % (no, name, labels))
    seen.add((name, labels))
    if not NUMBER.match(value):
        errors.append("line %d: value %r is not a number" % (no, value))
        continue
    number = float(value)
    kind = types[family]
    if kind == "counter" and (not name.endswith("_total") or number < 0):
        errors.append("line %d: counter %s must end in _total and not be negative" % (no, name))
    if kind == "histogram":
        pairs = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels)
        rest = tuple(p for p in pairs if p[0] != "le")
        le = [v for k, v in pairs if k == "le"]
        if name == family:
            errors.append("line %d: histogram sample without _bucket/_sum/_count" % no)
        elif name.endswith("_bucket"):
            if len(le) != 1 or not NUMBER.match(le[0]):
                errors.append("line %d: bucket without a numeric le" % no)
                continue
            buckets.setdefault((family, rest), []).append((float(le[0]), number))
        elif name.endswith("_count"):
            counts[(family, rest)] = number
for key, series in buckets.items():
    bounds = [b for b, _ in series]
    values = [v for _, v in series]
    if bounds != sorted(bounds) or bounds[-1] != float("inf"):
        errors.append("%s: buckets not in order or no le=\"+Inf\"" % key[0])
    if values != sorted(values):
        errors.append("%s: buckets are not cumulative" % key[0])
    if counts.get(key) != values[-1]:
        errors.append("%s: _count differs from the +Inf bucket" % key[0])
for family, kind in types.items():
    if family not in done:
        errors.append("%s: a # TYPE line but no samples" % family)
print("\n".join(errors) if errors else "ok: %d families" % len(types))
sys.exit(1 if errors else 0)
PY
ok $? "the exposition passes a strict text format check" || diag "$(cat "$dir/format.out")"
if command -v promtool >/dev/null 2>&1; then
    promtool check metrics <"$dir/final.prom" >"$dir/promtool.out" 2>&1
    ok $? "promtool check metrics accepts it" || diag "$(cat "$dir/promtool.out")"
else
    skip "promtool check metrics" "promtool is not installed"
fi

# ---- only GET /metrics
for path in / /metrics/ /metricsx /favicon.ico; do
    code="$(curl -sS -o /dev/null -w '%{http_code}' "http://$listen$path")"
    is "$code" 404 "GET $path is 404"
done
code="$(curl -sS -o /dev/null -w '%{http_code}' -X POST --data x "$url")"
is "$code" 405 "POST /metrics is 405"

# ---- after a restart: counters from 0, the lag of idle partitions known
kill -TERM "$shipper_pid"
wait "$shipper_pid"
is $? 0 "SIGTERM: the shipper exits 0"
"$SHIPPER" --config "$dir/bk.conf" >>"$log" 2>&1 &
shipper_pid=$!
wait_for 30 "the metrics endpoint" scrape
ok $? "a restarted shipper binds the same address at once"
all_lags_known() {
    local assigned
    assigned="$(sed -n 's/.*INFO: assigned \([0-9]*\) partitions.*/\1/p' "$log" | tail -1)"
    scrape >"$dir/now.prom" && [[ -n "$assigned" ]] &&
        [[ "$(grep -c '^bk_shipper_consumer_lag_messages{' "$dir/now.prom")" == "$assigned" ]]
}
wait_for 30 "a lag sample for every assigned partition" all_lags_known
ok $? "every assigned partition has a lag sample, those with nothing new too"
wal_lag_all_zero
ok $? "and the wal partitions' lag is 0: nothing was left uncommitted"
is "$(metric bk_shipper_objects_archived_total "$dir/now.prom")" 0 "the counters start from 0"

# ---- a second shipper on the same address
write_conf "$dir/second.conf" "second-shipper-$$"
echo "metrics_listen = $listen" >>"$dir/second.conf"
out="$(timeout 60 "$SHIPPER" --config "$dir/second.conf" 2>&1)"
is $? 3 "a second shipper on the same metrics_listen exits 3"
like "$out" "error: could not listen on metrics_listen $listen: Address already in use" \
    "and names the setting, the address and the reason"
unlike "$out" "started: repository" "before it touches Kafka or the repository"
write_conf "$dir/third.conf" "third-shipper-$$"
out="$(timeout 60 "$SHIPPER" --config "$dir/third.conf" --metrics-listen "$listen" 2>&1)"
is $? 3 "so does one given the address with --metrics-listen"
scrape >/dev/null
ok $? "the first shipper still serves"

# ---- SIGTERM: a clean stop, and the port is free again
kill -TERM "$shipper_pid"
wait "$shipper_pid"
is $? 0 "SIGTERM: the shipper exits 0"
shipper_pid=""
curl -sS --max-time 5 "$url" >/dev/null 2>&1
isnt $? 0 "and the endpoint is gone"
python3 -c "
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $port))
s.listen()"
ok $? "nothing listens on its port any more"

done_testing
