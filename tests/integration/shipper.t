#!/usr/bin/env bash
# bk-shipper against the real broker, fed by tests/integration/bk_test_produce
# (which sends files exactly as the archive module does, and can also send
# them the way a crashed or hostile party would):
#   archiving, byte-identical wal-get, audit events; identical re-sends;
#   conflicting copies; a corrupted message (rejected, reported, kept, never
#   archived); a tampered message with a valid CRC (caught by the key at
#   verify and restore); a half-sent attempt (given up); a source paused
#   mid-object (sends it again, nothing lost); a chunk of an archived
#   attempt handed out again (not reported abandoned); messages Kafka removed
#   unread (reported); another application's transactions on the topic
#   (no false loss, nothing held back); SIGKILL in the middle of objects
#   (nothing lost, nothing duplicated) and right after a commit (the
#   attempt still reported archived); SIGTERM and a fast restart; memory
#   bounded by configuration, not object size; no plaintext anywhere;
#   partitions added to the topic (taken within seconds).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env kafka)"
BK="$ROOT/cli/bk"
SHIPPER="$ROOT/shipper/bk-shipper"
PRODUCE="$ROOT/tests/integration/bk_test_produce"
FAKE_WAL="$ROOT/tests/lib/fake_wal.py"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-shipper-test.XXXXXX")"
chmod 755 "$dir"
prefix="bkit-ship-$$-$RANDOM"
source_id="src-$$"
repo="$dir/repo"
log="$dir/shipper.log"
SEG=1048576      # 1 MiB segments (initdb --wal-segsize=1) keep the test quick
CHUNK=65536      # 16 chunks per segment
MARKER="BK-SHIPPER-MARKER-$$-$RANDOM"
shipper_pid=""

cleanup() {
    [[ -n "$shipper_pid" ]] && kill -KILL "$shipper_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

"$BK" keygen --out "$dir/key" >/dev/null 2>&1
cat >"$dir/bk.conf" <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $prefix
repository = $repo
key_file = $dir/key
shipper_id = test-shipper-$$
group_id = test-group-$$
abandon_after = 3s
CONF

start_shipper() {
    "$SHIPPER" --config "$dir/bk.conf" >>"$log" 2>&1 &
    shipper_pid=$!
}
produce() {
    "$PRODUCE" --brokers "$BK_KAFKA_BROKERS" --prefix "$prefix" --key "$dir/key.pub" \
        --source "$source_id" --segment-size "$SEG" --chunk-size "$CHUNK" "$@"
}
archived() { [[ -f "$repo/$source_id/wal/$1" ]]; }
audit() {
    timeout 30 kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.audit" -o beginning -e -q \
        -f '%s\n' 2>/dev/null
}
audit_has() { audit | grep -q "$1"; }
wal_get() { "$BK" wal-get --config "$dir/bk.conf" --source "$source_id" "$@"; }
seg() { printf '00000001%08X%08X' 0 "$1"; }

# ---- command line
"$SHIPPER" --help >/dev/null
ok $? "bk-shipper --help exits 0"
"$SHIPPER" --bogus >/dev/null 2>&1
is $? 2 "an unknown option exits 2"
printf 'kafka_brokers = %s\n' "$BK_KAFKA_BROKERS" >"$dir/norepo.conf"
out="$("$SHIPPER" --config "$dir/norepo.conf" 2>&1)"
is $? 3 "no repository configured exits 3"
like "$out" 'no repository configured' "and says so"

# ---- archiving and byte-identical restore
mkdir -p "$dir/wal" "$dir/out"
"$FAKE_WAL" "$dir/wal" 1 1 3 --segment-size "$SEG" --marker "$MARKER" >/dev/null
start_shipper
sent="$(produce "$dir/wal/$(seg 1)" "$dir/wal/$(seg 2)" "$dir/wal/$(seg 3)")"
ok $? "three segments sent and acknowledged"
wait_for 60 "segments archived" archived "$(seg 3)"
ok $? "the shipper archived them"
for n in 1 2 3; do
    wal_get "$(seg $n)" "$dir/out/$(seg $n)"
    is $? 0 "wal-get $(seg $n) exits 0"
    cmp -s "$dir/wal/$(seg $n)" "$dir/out/$(seg $n)"
    ok $? "wal-get $(seg $n) is byte-identical to what was sent"
done
is "$(stat -c %a "$repo/$source_id/wal/$(seg 1)")" "644" "repository files are readable by the restore user"
is "$(stat -c %a "$repo/$source_id/wal")" "755" "repository directories are traversable by the restore user"

wait_for 30 "audit events" audit_has "\"object\":\"$(seg 3)\""
events="$(audit)"
attempt1="$(awk -v n="$(seg 1)" '$1 == n {print $2}' <<<"$sent")"
like "$events" "\"attempt\":\"$attempt1\"" "the audit event names the attempt that was sent"
like "$events" "\"event\":\"archived\".*\"object\":\"$(seg 1)\"" "one archived event per object"
digest="$(sha256sum "$repo/$source_id/wal/$(seg 2)" | cut -d' ' -f1)"
like "$events" "\"stored_sha256\":\"$digest\"" "the audit event carries the digest of the stored ciphertext"
like "$events" '"meta":\{[^}]*"lsn-start":"0/100000"' "and the metadata (LSN range)"

# ---- nothing in plaintext, anywhere
grep -rq "$MARKER" "$repo"
isnt $? 0 "the plaintext marker is in no repository file"
timeout 30 kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.wal" -o beginning -e -q -f '%k %h %s\n' \
    >"$dir/topic.dump" 2>/dev/null
ok $? "the wal topic can be read with kcat"
grep -q "$MARKER" "$dir/topic.dump" "$dir/shipper.log"
isnt $? 0 "the plaintext marker is nowhere in the topic (keys, headers, values) or the log"
grep -q "$MARKER" <<<"$events"
isnt $? 0 "nor in the audit topic"

# ---- an identical re-send is success, stored once
produce "$dir/wal/$(seg 1)" >/dev/null
wait_for 30 "duplicate event" audit_has '"event":"duplicate"'
ok $? "an identical re-send is reported as a duplicate"
is "$(ls "$repo/$source_id/wal" | grep -c "$(seg 1)")" "1" "and stored once"
[[ ! -d "$repo/$source_id/conflicts" ]]
ok $? "no conflict recorded"

# ---- different content under the same name: both kept, alarm, verify decides
mkdir -p "$dir/clone"
"$FAKE_WAL" "$dir/clone" 1 1 1 --segment-size "$SEG" --system-id 9000000000000000009 >/dev/null
produce "$dir/clone/$(seg 1)" >/dev/null
wait_for 30 "conflict event" audit_has '"event":"conflict"'
ok $? "a different copy is reported as a conflict on the audit topic"
like "$(cat "$log")" "ALARM: wal \"$(seg 1)\" of source \"$source_id\" arrived with content different" \
    "and as an ALARM in the log"
is "$(ls "$repo/$source_id/conflicts/wal" | wc -l)" "1" "both copies are kept"
cmp -s "$repo/$source_id/wal/$(seg 1)" <(cat "$repo/$source_id/wal/$(seg 1)")
wal_get "$(seg 1)" "$dir/out/x" 2>"$dir/err"
is $? 200 "wal-get refuses to choose between two copies (exit 200)"
like "$(cat "$dir/err")" 'two different copies of WAL file' "and says why"
out="$("$BK" verify --config "$dir/bk.conf" 2>&1)"
is $? 4 "bk verify exits 4 while a conflict stands"
like "$out" "CONFLICT $(seg 1): different content; the archived copy .* fits this source's history, the conflict copy .* does not" \
    "bk verify with the key tells which copy belongs"
rm -rf "$repo/$source_id/conflicts"

# ---- a corrupted message: rejected, kept for forensics, never archived
"$FAKE_WAL" "$dir/wal" 1 4 6 --segment-size "$SEG" >/dev/null
produce --tamper-chunk 2 --tamper-offset 300 "$dir/wal/$(seg 4)" >/dev/null
produce "$dir/wal/$(seg 5)" >/dev/null
wait_for 30 "segment 5 archived" archived "$(seg 5)"
ok $? "objects after a corrupted message are still archived"
archived "$(seg 4)"
isnt $? 0 "the corrupted object is not archived"
rejected="$(ls "$repo/rejected" | grep -v reason | head -1)"
like "$rejected" "^$prefix\.wal\.[0-9]+\.[0-9]+$" "the corrupted message is kept in rejected/"
like "$(cat "$repo/rejected/$rejected.reason")" 'frame checksum mismatch' "with the reason"
like "$(audit)" '"event":"rejected".*"reason":"frame checksum mismatch' "and reported on the audit topic"
like "$(cat "$log")" "gave up wal object \"$(seg 4)\".*chunk 3 arrived where chunk 2 was expected" \
    "its attempt is given up, saying why"
wal_get "$(seg 4)" "$dir/out/x" 2>"$dir/err"
is $? 200 "wal-get of the missing segment inside the archived range exits 200 (a gap)"
produce "$dir/wal/$(seg 4)" >/dev/null
wait_for 30 "segment 4 archived" archived "$(seg 4)"
ok $? "the source's re-send fills the gap"

# ---- tampered with a valid CRC: archived (no key can tell), caught by the key
produce --tamper-chunk 1 --tamper-offset 2000 --fix-crc "$dir/wal/$(seg 6)" >/dev/null
wait_for 30 "segment 6 archived" archived "$(seg 6)"
ok $? "a tampered message with a valid CRC passes the keyless checks"
out="$("$BK" verify --config "$dir/bk.conf" 2>&1)"
is $? 4 "bk verify with the key exits 4"
like "$out" "PROBLEM $(seg 6): .*chunk 1 of 16 failed authentication" "and names the object and chunk"
wal_get "$(seg 6)" "$dir/out/x" 2>"$dir/err"
is $? 200 "wal-get of the tampered segment exits 200"
like "$(cat "$dir/err")" 'failed authentication' "saying it failed authentication"
[[ ! -e "$dir/out/x" ]]
ok $? "and writes nothing to the destination"
rm -f "$repo/$source_id/wal/$(seg 6)"
produce "$dir/wal/$(seg 6)" >/dev/null
wait_for 30 "segment 6 archived again" archived "$(seg 6)"

# ---- a half-sent attempt (the source crashed) is given up, its re-send archived
half="$(produce --stop-after-chunks 5 "$dir/wal/$(seg 7)")"
half_attempt="$(awk '{print $2}' <<<"$half")"
produce "$dir/wal/$(seg 7)" >/dev/null
wait_for 30 "segment 7 archived" archived "$(seg 7)"
ok $? "the full re-send after a half-sent attempt is archived"
sleep 4 # past abandon_after (3 s) in broker time; the next message carries the clock
produce "$dir/wal/$(seg 8)" >/dev/null
# (audit events are JSON with sorted keys: "attempt" comes before "event")
wait_for 30 "abandoned event" audit_has "\"attempt\":\"$half_attempt\".*\"event\":\"abandoned\""
ok $? "the half-sent attempt is given up once later messages are abandon_after newer"
wal_get "$(seg 7)" "$dir/out/7"
cmp -s "$dir/wal/$(seg 7)" "$dir/out/7"
ok $? "segment 7 restores byte-identical"

# ---- a chunk of an archived attempt handed out again
# Kafka can hold a chunk twice (the idempotent producer appends a request
# again when its epoch is bumped while the request is in flight; a mirror
# or an operator produces it again).  Chunk 0 of an attempt already stored
# opens it anew, and it never completes: it must not be reported given up.
again="again-$source_id"
"$FAKE_WAL" "$dir/wal" 1 48 2 --segment-size "$SEG" >/dev/null
again_attempt="$(produce --source "$again" "$dir/wal/$(seg 48)" | awk '{print $2}')"
wait_for 30 "segment 48 archived" test -f "$repo/$again/wal/$(seg 48)"
# Its first frame, as the repository keeps it: header length at byte 8,
# payload length at byte 32, then 20 bytes of tag and CRC.
python3 -c 'import struct, sys
d = open(sys.argv[1], "rb").read()
h, p = struct.unpack(">I", d[8:12])[0], struct.unpack(">I", d[32:36])[0]
sys.stdout.buffer.write(d[:h + p + 20])' "$repo/$again/wal/$(seg 48)" >"$dir/chunk0"
kcat -P -b "$BK_KAFKA_BROKERS" -t "$prefix.wal" -k "$again" "$dir/chunk0"
ok $? "chunk 0 of the archived segment 48 is produced again"
sleep 4 # past abandon_after (3 s); the next message carries the clock
produce --source "$again" "$dir/wal/$(seg 49)" >/dev/null
wait_for 30 "segment 49 archived" test -f "$repo/$again/wal/$(seg 49)"
wait_for 30 "the copy dropped" grep -q "attempt $again_attempt) that Kafka handed out again" "$log"
ok $? "the shipper drops the copy of an archived attempt's chunk, saying so"
unlike "$(audit | grep "\"attempt\":\"$again_attempt\"")" '"event":"abandoned"' \
    "and does not report the archived attempt abandoned"

# ---- SIGKILL in the middle of objects, several times
"$FAKE_WAL" "$dir/wal" 1 9 30 --segment-size "$SEG" >/dev/null
files=()
for n in $(seq 9 38); do files+=("$dir/wal/$(seg $n)"); done
produce "${files[@]}" >"$dir/stress.out" 2>&1 &
producer_pid=$!
for round in 1 2 3 4 5; do
    sleep 0.$((3 + RANDOM % 6))
    kill -KILL "$shipper_pid"
    wait "$shipper_pid" 2>/dev/null
    start_shipper
done
wait "$producer_pid"
ok $? "30 segments sent while the shipper was killed 5 times"
note "$(grep -c 'started: repository' "$log") shipper starts, $(audit | grep -c '"event":"duplicate"') re-sends recognised as duplicates"
wait_for 120 "all 30 archived" archived "$(seg 38)"
missing=0
for n in $(seq 9 38); do archived "$(seg $n)" || missing=$((missing + 1)); done
is "$missing" "0" "no segment lost"
[[ ! -d "$repo/$source_id/conflicts" ]]
ok $? "no segment stored twice or differently"
bad=0
for n in $(seq 9 38); do
    wal_get "$(seg $n)" "$dir/out/s" 2>/dev/null && cmp -s "$dir/wal/$(seg $n)" "$dir/out/s" || bad=$((bad + 1))
done
is "$bad" "0" "every segment restores byte-identical"
is "$(find "$repo/.spool" -type f ! -name .lock | wc -l)" "0" "no spool files left once caught up"

# ---- killed between an object's commit and its report
# The object is in the repository, its audit event was never acknowledged:
# the restarted shipper reads the attempt again and still owes its
# "archived" event.  A "duplicate" would say another attempt had stored
# it, and no event would ever say that this one was archived.
kill -TERM "$shipper_pid"
wait "$shipper_pid"
killed="killed-$source_id"
"$FAKE_WAL" "$dir/wal" 1 47 1 --segment-size "$SEG" >/dev/null
LD_PRELOAD="$ROOT/tests/integration/bk_test_eio.so" BK_TEST_KILL_AFTER_LINK="/$killed/wal/$(seg 47)" \
    "$SHIPPER" --config "$dir/bk.conf" >>"$log" 2>&1 &
shipper_pid=$!
killed_attempt="$(produce --source "$killed" "$dir/wal/$(seg 47)" | awk '{print $2}')"
wait "$shipper_pid"
is $? 137 "a shipper is killed right after it commits an object"
ok "$(test -f "$repo/$killed/wal/$(seg 47)"; echo $?)" "which is in the repository"
start_shipper
wait_for 30 "its event" audit_has "\"attempt\":\"$killed_attempt\""
events="$(audit | grep "\"attempt\":\"$killed_attempt\"")"
like "$events" '"event":"archived"' "the restarted shipper reports that attempt archived"
unlike "$events" '"event":"duplicate"' "not as a duplicate of itself"

# ---- SIGTERM stops cleanly; a restart resumes within seconds
kill -TERM "$shipper_pid"
wait "$shipper_pid"
is $? 0 "SIGTERM: the shipper exits 0"
like "$(tail -n 2 "$log")" 'stopped: [0-9]+ archived' "and logs what it did"
start=$(date +%s%N)
start_shipper
"$FAKE_WAL" "$dir/wal" 1 39 1 --segment-size "$SEG" >/dev/null
produce "$dir/wal/$(seg 39)" >/dev/null
wait_for 30 "segment 39 archived" archived "$(seg 39)"
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
ok $((elapsed_ms > 15000)) "after a restart the next segment is archived within seconds (${elapsed_ms} ms)"

# ---- memory is bounded by configuration, not by the size of an object
mkdir -p "$dir/big"
"$FAKE_WAL" "$dir/big" 3 1 1 --segment-size 536870912 >/dev/null
big="$(ls "$dir/big")"
"$PRODUCE" --brokers "$BK_KAFKA_BROKERS" --prefix "$prefix" --key "$dir/key.pub" \
    --source "big-$source_id" --segment-size 536870912 --chunk-size 1048576 "$dir/big/$big" >/dev/null
wait_for 120 "512 MiB object archived" test -f "$repo/big-$source_id/wal/$big"
ok $? "a 512 MiB object is archived"
hwm_kb="$(awk '/VmHWM/ {print $2}' "/proc/$shipper_pid/status")"
ok $((hwm_kb > 200 * 1024)) "the shipper's peak memory stayed at $((hwm_kb / 1024)) MiB (bound: 200 MiB)"
"$BK" wal-get --config "$dir/bk.conf" --source "big-$source_id" "$big" "$dir/out/big"
cmp -s "$dir/big/$big" "$dir/out/big"
ok $? "the 512 MiB object restores byte-identical"
rm -f "$dir/out/big" "$dir/big/$big"

# ---- an error that stops the shipper commits nothing past what failed
# The first chunk of an object cannot be spooled (.spool is a file, not a
# directory): the shipper stops.  Had it committed the offset past that
# chunk, the restarted shipper would drop the rest as strays and the object,
# which Kafka acknowledged to the source, would be lost.
shipper_gone() { [[ ! -e "/proc/$shipper_pid" ]] || grep -q '^State:.*Z' "/proc/$shipper_pid/status"; }
mv "$repo/.spool" "$dir/spool.saved"
: >"$repo/.spool"
"$FAKE_WAL" "$dir/wal" 1 40 1 --segment-size "$SEG" >/dev/null
"$PRODUCE" --brokers "$BK_KAFKA_BROKERS" --prefix "$prefix" --key "$dir/key.pub" \
    --source "fatal-$source_id" --segment-size "$SEG" --chunk-size "$CHUNK" "$dir/wal/$(seg 40)" >/dev/null
ok $? "a segment is sent while the repository's spool is broken"
wait_for 60 "the shipper to stop" shipper_gone
ok $? "the shipper stops on the spool error"
wait "$shipper_pid"
isnt $? 0 "and exits non-zero"
like "$(grep 'could not create spool file' "$log" | tail -n 1)" "\\.spool/" "the log names the spool file it could not create"
rm -f "$repo/.spool"
mv "$dir/spool.saved" "$repo/.spool"
start_shipper
wait_for 60 "segment 40 archived" test -f "$repo/fatal-$source_id/wal/$(seg 40)"
ok $? "once the cause is fixed, a restart archives the object whose first chunk failed"
"$BK" wal-get --config "$dir/bk.conf" --source "fatal-$source_id" "$(seg 40)" "$dir/out/fatal"
cmp -s "$dir/wal/$(seg 40)" "$dir/out/fatal"
ok $? "and it restores byte-identical"

# ---- a source paused mid-object sends the object again, nothing is lost
# Kafka acknowledges every chunk of an object whose source stopped between
# two of them, but the shipper gives the attempt up once a later message
# is abandon_after newer than its last chunk.  The source must not report
# such an object sent: it finds the gap in the broker's append times and
# fails the send.  Its bound (60 s) is lowered to 2 s here, under this
# shipper's abandon_after of 3 s.
like "$(cat "$log")" 'abandon_after \(3000 ms\) is not above the 60000 ms' \
    "the shipper warns that its abandon_after is below the sources' chunk gap"
"$FAKE_WAL" "$dir/wal" 1 41 2 --segment-size "$SEG" >/dev/null
paused="paused-$source_id"
produce --source "$paused" --pause-after-chunks 3 --pause-ms 8000 --pause-file "$dir/paused" \
    --chunk-gap-max 2000 "$dir/wal/$(seg 41)" >"$dir/paused.out" 2>"$dir/paused.err" &
paused_pid=$!
wait_for 30 "the source to pause" test -f "$dir/paused"
sleep 4 # past abandon_after in broker time; the next message carries the clock
produce --source "$paused" "$dir/wal/$(seg 42)" >/dev/null
wait "$paused_pid"
is $? 1 "a source paused mid-object longer than its chunk gap does not report the object sent"
like "$(cat "$dir/paused.err")" "Kafka appended chunk 3 of \"$(seg 41)\" .* after the chunk before it" \
    "and says why"
paused_attempt="$(awk '{print $2}' "$dir/paused.out")"
like "$(cat "$log")" "gave up wal object \"$(seg 41)\" of source \"$paused\" \\(attempt $paused_attempt" \
    "the shipper gave that attempt up meanwhile"
produce --source "$paused" "$dir/wal/$(seg 41)" >/dev/null
wait_for 30 "segment 41 archived" test -f "$repo/$paused/wal/$(seg 41)"
ok $? "the object sent again is archived"
"$BK" wal-get --config "$dir/bk.conf" --source "$paused" "$(seg 41)" "$dir/out/paused"
cmp -s "$dir/wal/$(seg 41)" "$dir/out/paused"
ok $? "and restores byte-identical"

# ---- another application's transactional producer writes to the topic
# Its messages are rejected like any that is not a frame.  Each transaction
# it ends leaves a marker in the log, an offset no consumer is handed: not
# a message Kafka removed, so no ERROR, event or count of messages lost.
# And a transaction it leaves open must not hold back the objects after
# it until the broker times it out (2 minutes here).
txn="txn-$source_id"
"$FAKE_WAL" "$dir/wal" 1 45 2 --segment-size "$SEG" >/dev/null
foreign() {
    "$PRODUCE" --brokers "$BK_KAFKA_BROKERS" --prefix "$prefix" --source "$txn" \
        --foreign-transaction "$@"
}
foreign commit && foreign abort
ok $? "another application commits one transaction and aborts one on the WAL topic"
produce --source "$txn" "$dir/wal/$(seg 45)" >/dev/null
wait_for 30 "segment 45 archived" test -f "$repo/$txn/wal/$(seg 45)"
ok $? "a segment sent after them is archived"
like "$(grep 'hold nothing a consumer is handed' "$log")" "another application's transactional producer" \
    "the shipper says the markers' offsets are another application's transactions"
unlike "$(grep ERROR "$log")" "Kafka no longer holds" "and reports no message lost"
foreign open --open-ms 60000 >"$dir/open.out" 2>&1 &
foreign_pid=$!
wait_for 30 "the transaction open" grep -q '^open$' "$dir/open.out"
ok $? "another application leaves a transaction open on the WAL topic"
produce --source "$txn" "$dir/wal/$(seg 46)" >/dev/null
wait_for 30 "segment 46 archived" test -f "$repo/$txn/wal/$(seg 46)"
ok $? "a segment sent behind the open transaction is archived within 30 s"
kill "$foreign_pid" 2>/dev/null
wait "$foreign_pid" 2>/dev/null

# ---- messages Kafka removed before any shipper stored them are reported
# With every shipper stopped longer than the topic's retention, Kafka drops
# messages no shipper read.  The objects in them are lost, and the
# restarted shipper must say so, not resume quietly at the oldest message
# left (librdkafka's auto.offset.reset).
kill -TERM "$shipper_pid"
wait "$shipper_pid"
"$FAKE_WAL" "$dir/wal" 1 43 2 --segment-size "$SEG" >/dev/null
produce --source "$paused" "$dir/wal/$(seg 43)" >/dev/null
"$PRODUCE" --brokers "$BK_KAFKA_BROKERS" --prefix "$prefix" --delete-records >"$dir/deleted" 2>&1
ok $? "Kafka deletes every message of the WAL topic, as retention would"
start_shipper
produce --source "$paused" "$dir/wal/$(seg 44)" >/dev/null
wait_for 30 "segment 44 archived" test -f "$repo/$paused/wal/$(seg 44)"
ok $? "the restarted shipper archives what comes next"
like "$(grep ERROR "$log")" "Kafka no longer holds offsets [0-9]+ to [0-9]+ \(16 messages\), which this group had not committed as stored" \
    "it logs an ERROR naming the 16 chunks of segment 43 Kafka removed"
[[ ! -e "$repo/$paused/wal/$(seg 43)" ]]
ok $? "segment 43, removed from Kafka unread, is not in the repository"
produce --source "$paused" "$dir/wal/$(seg 43)" >/dev/null
wait_for 30 "segment 43 archived" test -f "$repo/$paused/wal/$(seg 43)"
ok $? "sent again from the source, it is archived"

# ---- the archive checks out end to end
out="$("$BK" verify --config "$dir/bk.conf" 2>&1)"
is $? 0 "bk verify with the key: everything decrypts and checks out"
like "$out" 'OK: [0-9]+ objects, 0 problems' "and says so"
json="$("$BK" list --config "$dir/bk.conf" --source "$source_id" --json)"
like "$json" '"first": "000000010000000000000001"' "bk list --json: timeline 1 starts at segment 1"
like "$json" '"last": "000000010000000000000027"' "and ends at segment 0x27"
like "$json" '"missing": 0' "with nothing missing"

# ---- partitions added to the WAL topic while the shipper runs
# A source reads the partition count at most a minute before it sends; the
# shipper must take the new partitions about as soon, not at librdkafka's
# default metadata refresh (5 minutes), with nothing to show the wait.
"$PRODUCE" --brokers "$BK_KAFKA_BROKERS" --prefix "$prefix" --add-partitions 12
ok $? "the WAL topic gets 12 partitions (6 before)"
# CreatePartitions answers once the controller has them; the broker's
# metadata may show them a moment later, and a source that read 6 would
# put the key below in one of the old partitions.
# shellcheck disable=SC2317,SC2329 # called through wait_for
wal_partitions_are() {
    timeout 30 kcat -L -b "$BK_KAFKA_BROKERS" -t "$prefix.wal" 2>/dev/null |
        grep -q "topic \"$prefix.wal\" with $1 partitions"
}
wait_for 30 "12 partitions in the broker's metadata" wal_partitions_are 12
# A source whose key librdkafka's consistent partitioner (CRC-32) puts in
# one of the new partitions.
grown="$(python3 -c 'import sys, zlib
print(next(s for s in ("grown-%s-%d" % (sys.argv[1], i) for i in range(1000))
           if zlib.crc32(s.encode()) % 12 >= 6))' "$source_id")"
"$FAKE_WAL" "$dir/wal" 1 50 1 --segment-size "$SEG" >/dev/null
produce --source "$grown" "$dir/wal/$(seg 50)" >/dev/null
wait_for 60 "segment 50 archived" test -f "$repo/$grown/wal/$(seg 50)"
ok $? "a segment sent into a new partition is archived within a minute"
like "$(timeout 30 kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.wal" -o beginning -e -q -f '%p %k\n' 2>/dev/null |
    grep " $grown\$" | head -n 1)" '^([6-9]|1[01]) ' "(it went to partition 6 to 11)"

kill -TERM "$shipper_pid"
wait "$shipper_pid"
shipper_pid=""
like "$(tail -n 2 "$log")" 'stopped: .* 16 messages lost in Kafka' \
    "the shipper's last words count the 16 messages Kafka removed unread"

# ---- a group that never committed in a partition
# Its first shipper starts at the oldest message Kafka still holds.  What
# went before (the offsets from 0) this group never stored: a group_id
# changed, or shippers started later than the topic's retention.  That is
# reported too, not taken for the partition's start.
sed "s/^group_id = .*/group_id = fresh-group-$$/" "$dir/bk.conf" >"$dir/fresh.conf"
"$SHIPPER" --config "$dir/fresh.conf" >"$dir/fresh.log" 2>&1 &
shipper_pid=$!
wait_for 30 "the fresh group's ERROR" grep -q "never committed an offset" "$dir/fresh.log"
like "$(grep ERROR "$dir/fresh.log")" \
    "Kafka no longer holds offsets 0 to [0-9]+ \([0-9]+ messages\), and group \"fresh-group-$$\" never committed an offset in this partition, so it never stored them" \
    "a shipper of a group that never committed in a partition reports the messages removed before it read them" ||
    diag "$(tail -n 5 "$dir/fresh.log")"
unlike "$(grep ERROR "$dir/fresh.log")" "\\.(snapshot|binlog) \\[|\\.wal \\[([6-9]|1[01])\\]" \
    "and none for the partitions Kafka removed nothing from"
kill -TERM "$shipper_pid"
wait "$shipper_pid"
shipper_pid=""
done_testing
