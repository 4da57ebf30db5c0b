#!/usr/bin/env bash
# bk-shipper on the S3 backend with its spool (spool_dir) on a full file
# system: a 3 MiB tmpfs, 1 MiB segments.  It stops naming the spool file and
# the error, commits nothing past the object it could not spool, loses
# nothing, and once there is room archives and reports everything; a
# backlog larger than the spool is archived too, over restarts, instead of
# filling the spool again and stopping at the same object forever.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env kafka s3)"
BK="$ROOT/cli/bk"
SHIPPER="$ROOT/shipper/bk-shipper"
PRODUCE="$ROOT/tests/integration/bk_test_produce"
FAKE_WAL="$ROOT/tests/lib/fake_wal.py"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-spool-full.XXXXXX")"
chmod 755 "$dir"
prefix="bkit-spool-$$-$RANDOM"
source_id="src-$$"
spool="$dir/spool"
log="$dir/shipper.log"
SEG=1048576
CHUNK=65536
shipper_pid=""
source "$ROOT/tests/lib/repo_backend.sh"

cleanup() {
    [[ -n "$shipper_pid" ]] && kill -KILL "$shipper_pid" 2>/dev/null && wait "$shipper_pid" 2>/dev/null
    mountpoint -q "$spool" && umount "$spool"
    bk_test_repo_remove
    rm -rf "$dir"
}
trap cleanup EXIT

mkdir -p "$spool" "$dir/wal"
if ! mount -t tmpfs -o size=3m,mode=0700 tmpfs "$spool" 2>/dev/null; then
    echo "1..0 # SKIP cannot mount a tmpfs (needs root)"
    exit 0
fi
BK_TEST_BACKEND=s3 bk_test_repo "$prefix"
"$BK" keygen --out "$dir/key" >/dev/null 2>&1
cat >"$dir/bk.conf" <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $prefix
repository = $repo
key_file = $dir/key
shipper_id = spool-shipper-$$
group_id = spool-group-$$
$repo_conf
CONF

start_shipper() {
    "$SHIPPER" --config "$dir/bk.conf" >>"$log" 2>&1 &
    shipper_pid=$!
}
produce() {
    "$PRODUCE" --brokers "$BK_KAFKA_BROKERS" --prefix "$prefix" --key "$dir/key.pub" \
        --source "$source_id" --segment-size "$SEG" --chunk-size "$CHUNK" "$@"
}
seg() { printf '00000001%08X%08X' 0 "$1"; }
archived() { [[ -f "$repo_files/$source_id/wal/$1" ]]; }
audit() {
    timeout 30 kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.audit" -o beginning -e -q \
        -f '%s\n' 2>/dev/null
}
# archived_event ATTEMPT: the "archived" event of that attempt was sent
archived_event() { audit | grep '"event":"archived"' | grep -q "\"attempt\":\"$1\""; }
shipper_gone() { ! kill -0 "$shipper_pid" 2>/dev/null; }
archived_or_gone() { archived "$1" || shipper_gone; }
"$FAKE_WAL" "$dir/wal" 1 1 8 --segment-size "$SEG" >/dev/null
"$BK" init --config "$dir/bk.conf" >/dev/null 2>&1
ok $? "bk init creates the topics"

# ---- a backlog of 4 MiB through a 3 MiB spool
produce "$dir/wal/$(seg 1)" "$dir/wal/$(seg 2)" "$dir/wal/$(seg 3)" "$dir/wal/$(seg 4)" >"$dir/backlog"
ok $? "four 1 MiB segments sent while no shipper runs"
start_shipper
wait_for 60 "the shipper stops" shipper_gone || kill -KILL "$shipper_pid"
wait "$shipper_pid"
is $? 1 "the shipper stops when the spool is full"
shipper_pid=""
like "$(cat "$log")" "ERROR: could not write \"$spool/spool-shipper-$$/$prefix\.wal\.[0-9]+\.[0-9]+\.[0-9a-f]+\": No space left on device" \
    "and names the spool file and the error"
archived "$(seg 4)"
isnt $? 0 "the object it could not spool is not archived"
# The spool is emptied at each start; what a run stored must not be read
# and spooled again in front of what it could not spool.  Restarted as
# systemd does (Restart=on-failure), up to 3 more runs.
runs=0
while ((runs < 3)); do
    start_shipper
    wait_for 60 "segment 4 archived or the shipper stopped" archived_or_gone "$(seg 4)"
    archived "$(seg 4)" && break
    wait "$shipper_pid"
    runs=$((runs + 1))
done
archived "$(seg 4)"
ok $? "restarted, it archives the whole backlog (restarts that stopped again: $runs)"
for n in 1 2 3 4; do
    attempt="$(awk -v n="$(seg $n)" '$1 == n {print $2}' "$dir/backlog")"
    wait_for 30 "archived event of $(seg $n)" archived_event "$attempt"
    ok $? "segment $n archived and reported"
done

# ---- the spool's file system filled by something else, then room made
kill -TERM "$shipper_pid"
wait "$shipper_pid"
start_shipper
wait_for 30 "the shipper's spool" test -d "$spool/spool-shipper-$$"
avail_kib="$(df -k --output=avail "$spool" | tail -1)"
head -c $(((avail_kib - 512) * 1024)) /dev/zero >"$spool/filler" 2>/dev/null
full_before="$(grep -c "No space left on device" "$log")"
attempt5="$(produce "$dir/wal/$(seg 5)" | awk '{print $2}')"
wait_for 60 "the shipper stops" shipper_gone || kill -KILL "$shipper_pid"
wait "$shipper_pid"
is $? 1 "a full spool stops the shipper"
shipper_pid=""
is "$(grep -c "No space left on device" "$log")" $((full_before + 1)) "saying why"
archived "$(seg 5)"
isnt $? 0 "segment 5 is not archived"
rm -f "$spool/filler"
start_shipper
wait_for 60 "segment 5 archived" archived "$(seg 5)"
ok $? "with room again, a restarted shipper archives it"
wait_for 30 "its archived event" archived_event "$attempt5"
ok $? "and reports it"
kill -TERM "$shipper_pid"
wait "$shipper_pid"
is $? 0 "the shipper stops cleanly"
shipper_pid=""
done_testing
