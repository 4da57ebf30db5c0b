#!/usr/bin/env bash
# End to end with the real servers: PostgreSQL 15 with archive_library = 'bk'
# under pgbench, Kafka, bk-shipper, the repository, and bk wal-get.
#   - every segment PostgreSQL reports archived is in the repository, and
#     bk wal-get (as the postgres user) returns it byte-identical to pg_wal;
#   - the shipper is killed with SIGKILL several times meanwhile;
#   - the broker is stopped for 20 s during pgbench: PostgreSQL keeps the
#     segments, nothing is lost, the archiver catches up afterwards;
#   - a backlog goes out in batches over bk.archive_producers producers
#     (the default 2 here, 1 with S3), every segment archived and intact;
#   - a unique marker written into a table never appears in plaintext in a
#     topic or in the repository;
#   - a cluster recovered from a base backup with restore_command =
#     'bk wal-get ...' replays the archive to its end and has the data;
#   - with bk.wait_for = repository, a snapshot completes (the shipper's
#     events name every object of it), and a fast shutdown archives the last
#     segment although the shipper confirms it only 5 s later.
# With BK_TEST_BACKEND=s3 (wal_archiving_s3.t) the repository is a bucket
# of the real s3proxy, and the object store itself is also stopped for 20 s
# under pgbench while the shipper is killed: nothing lost, offsets held.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env)"
source "$ROOT/tests/lib/repo_backend.sh"
SERVICES="$ROOT/scripts/services"
source "$ROOT/tests/lib/bk_bin.sh"
PGBENCH_SECONDS="${PGBENCH_SECONDS:-40}"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-wal-test.XXXXXX")"
chmod 755 "$dir"
prefix="bkit-wal-$$-$RANDOM"
bk_test_repo "$prefix"
log="$dir/shipper.log"
MARKER="BK-WAL-MARKER-$$-$RANDOM-$RANDOM"
shipper_pid=""
restored_pid=""
pgbench_pid=""

psql_q() { psql -X -A -t -q -v ON_ERROR_STOP=1 -c "$1"; }
as_postgres() { runuser -u postgres -- "$@"; }
start_shipper() {
    "$SHIPPER" --config "$dir/bk.conf" >>"$log" 2>&1 &
    shipper_pid=$!
}
cleanup() {
    [[ -n "$pgbench_pid" ]] && kill "$pgbench_pid" 2>/dev/null && wait "$pgbench_pid" 2>/dev/null
    [[ -n "$shipper_pid" ]] && kill -KILL "$shipper_pid" 2>/dev/null
    [[ -n "$restored_pid" ]] && as_postgres "$BK_PGBIN/pg_ctl" -D "$dir/restored" -m immediate stop >/dev/null 2>&1
    "$SERVICES" status kafka >/dev/null 2>&1 || "$SERVICES" start kafka >/dev/null 2>&1
    [[ "$(bk_test_backend)" == s3 ]] && { "$SERVICES" status s3 >/dev/null 2>&1 || "$SERVICES" start s3 >/dev/null 2>&1; }
    bk_test_repo_remove
    psql_q "DROP TABLE IF EXISTS bk_marker" >/dev/null 2>&1
    # The cluster is shared: the pgbench tables would be copied by every
    # later test's snapshots and restores.
    pgbench -i -I d >/dev/null 2>&1
    : >"$BK_PGDATA/bk_test.conf"
    "$SERVICES" restart pg >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT

# ---- set up: extension installed, key pair, topics, shipper, PostgreSQL
bk_test_build
ok $? "bk, bk-shipper and the extension are installed"
"$BK" keygen --out "$dir/bk.key" >/dev/null 2>&1
# Root's, readable by restore_command, which runs as postgres (README).
chgrp postgres "$dir/bk.key" && chmod 0640 "$dir/bk.key"
cat >"$dir/bk.conf" <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $prefix
repository = $repo
key_file = $dir/bk.key
shipper_id = wal-test-$$
group_id = wal-test-$$
$repo_conf
CONF
chmod 644 "$dir/bk.conf"
"$BK" init --config "$dir/bk.conf" >/dev/null
ok $? "topics created"
start_shipper

cat >"$BK_PGDATA/bk_test.conf" <<CONF
shared_preload_libraries = 'bk'
archive_library = 'bk'
bk.kafka_brokers = '$BK_KAFKA_BROKERS'
bk.topic_prefix = '$prefix'
bk.key_file = '$dir/bk.key.pub'
bk.kafka_timeout = '5s'
wal_keep_size = '8GB'
max_wal_size = '2GB'
CONF
# The default (2) with a directory, one producer with S3: both are covered.
producers=2
if [[ "$(bk_test_backend)" == s3 ]]; then
    producers=1
    echo "bk.archive_producers = 1" >>"$BK_PGDATA/bk_test.conf"
fi
"$SERVICES" restart pg >/dev/null
ok $? "PostgreSQL restarted with archive_library = 'bk'"
source_id="$(psql_q "SELECT system_identifier FROM pg_control_system()")"
psql_q "CREATE EXTENSION IF NOT EXISTS bk" >/dev/null

archived_through() {
    # true once PostgreSQL reports the given segment (or a later one) archived
    local last
    last="$(psql_q "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")"
    [[ -n "$last" && ! "$last" < "$1" ]]
}
switch_and_wait() {
    local seg
    seg="$(psql_q "SELECT pg_walfile_name(pg_switch_wal())")"
    wait_for "${1:-120}" "segment $seg archived" archived_through "$seg"
}

# ---- pgbench while the shipper is killed several times
pgbench -i -q -s 10 >/dev/null 2>&1
ok $? "pgbench initialised"
psql_q "DROP TABLE IF EXISTS bk_marker; CREATE TABLE bk_marker (note text); INSERT INTO bk_marker VALUES ('$MARKER')"
is "$(psql_q "SELECT count(*) FROM bk_marker WHERE note = '$MARKER'")" "1" "a unique marker is written into a table"
pgbench -T "$PGBENCH_SECONDS" -c 2 -j 2 -n >"$dir/pgbench1.out" 2>&1 &
pgbench_pid=$!
for round in 1 2 3; do
    sleep $((PGBENCH_SECONDS / 5))
    kill -KILL "$shipper_pid"
    wait "$shipper_pid" 2>/dev/null
    start_shipper
done
wait "$pgbench_pid"
ok $? "pgbench ran ${PGBENCH_SECONDS}s ($(grep -o 'tps = [0-9.]*' "$dir/pgbench1.out" | head -1))"
pgbench_pid=""
switch_and_wait 120
ok $? "PostgreSQL archived everything through the last switched segment"

# Every segment PostgreSQL reports archived is in the repository, byte-identical.
check_archived_segments() {
    local done_list missing=0 differ=0 checked=0 name
    done_list="$(ls "$BK_PGDATA/pg_wal/archive_status" | sed -n 's/^\([0-9A-F]\{24\}\)\.done$/\1/p')"
    for name in $done_list; do
        [[ -f "$BK_PGDATA/pg_wal/$name" ]] || continue
        checked=$((checked + 1))
        if ! wait_for 60 "$name in the repository" test -f "$repo_files/$source_id/wal/$name"; then
            missing=$((missing + 1))
            continue
        fi
        as_postgres "$BK" wal-get --config "$dir/bk.conf" --source "$source_id" \
            "$name" "$dir/walget/$name" 2>>"$dir/walget.err" &&
            cmp -s "$BK_PGDATA/pg_wal/$name" "$dir/walget/$name" || differ=$((differ + 1))
        rm -f "$dir/walget/$name"
    done
    echo "$checked $missing $differ"
}
mkdir -p "$dir/walget"
chown postgres "$dir/walget"
read -r checked missing differ <<<"$(check_archived_segments)"
ok $((checked < 5)) "PostgreSQL reports $checked segments archived"
is "$missing" "0" "every one of them is in the repository"
is "$differ" "0" "bk wal-get, run as postgres, returns each byte-identical to pg_wal"

no_ready() { [[ "$(ls "$BK_PGDATA/pg_wal/archive_status" | grep -c '\.ready$')" == 0 ]]; }
# ---- a backlog, sent in batches over the archiver's producers
# (before the broker's outage: a failed batch turns batches off for a minute)
# Archiving is switched off (no broker) while segments complete, then on.
pglog="$(dirname "$BK_PGDATA")/postgresql.log"
log_lines_before="$(wc -l <"$pglog")"
cp "$BK_PGDATA/bk_test.conf" "$dir/bk_test.conf.saved"
sed -i "s/^bk.kafka_brokers = .*/bk.kafka_brokers = ''/" "$BK_PGDATA/bk_test.conf"
echo "log_min_messages = debug1" >>"$BK_PGDATA/bk_test.conf"
psql_q "SELECT pg_reload_conf()" >/dev/null
# The archiver reads the reload when it next wakes, which may be after a
# segment or two more were archived: complete segments until it says it is
# not configured (PostgreSQL's WARNING), then the backlog.
# shellcheck disable=SC2317,SC2329 # called through wait_for
switched_until_off() {
    psql_q "INSERT INTO bk_marker SELECT md5(g::text) FROM generate_series(1, 20000) g; SELECT pg_switch_wal()" >/dev/null
    tail -n +"$((log_lines_before + 1))" "$pglog" | grep -q "archiving is not configured"
}
wait_for 60 "the archiver to see the reload" switched_until_off
ok $? "with bk.kafka_brokers empty, the archiver says archiving is not configured"
for round in 1 2 3 4 5 6; do
    psql_q "INSERT INTO bk_marker SELECT md5(g::text) FROM generate_series(1, 20000) g; SELECT pg_switch_wal()" >/dev/null
done
ready="$(ls "$BK_PGDATA/pg_wal/archive_status" | grep -c '\.ready$')"
ok $((ready < 6)) "a backlog of $ready segments waits while archiving is off"
sed "s/^bk.kafka_brokers = ''/bk.kafka_brokers = '$BK_KAFKA_BROKERS'/" \
    "$BK_PGDATA/bk_test.conf" >"$dir/bk_test.conf.on"
cp "$dir/bk_test.conf.on" "$BK_PGDATA/bk_test.conf"
psql_q "SELECT pg_reload_conf()" >/dev/null
wait_for 120 "backlog drained" no_ready
ok $? "the backlog is archived once archiving is on again"
batches="$(tail -n +"$((log_lines_before + 1))" "$pglog" |
    grep -cE "more segments? in one batch to \"[^\"]*\" over $producers producers? in")"
ok $((batches == 0)) "it went out in batches over $producers producer(s) ($batches batches)"
read -r checked missing differ <<<"$(check_archived_segments)"
is "$missing" "0" "every segment of the backlog is in the repository ($checked checked)"
is "$differ" "0" "and restores byte-identical"
cp "$dir/bk_test.conf.saved" "$BK_PGDATA/bk_test.conf"
psql_q "SELECT pg_reload_conf()" >/dev/null

# ---- the broker is down for 20 s (four times bk.kafka_timeout) during pgbench
pgbench -T 45 -c 2 -j 2 -n >"$dir/pgbench2.out" 2>&1 &
pgbench_pid=$!
sleep 5
"$SERVICES" stop kafka >/dev/null
ok $? "Kafka stopped during pgbench"
# Complete a few segments during the outage, so there is a backlog to keep.
for round in 1 2 3 4; do
    sleep 5
    psql_q "INSERT INTO bk_marker SELECT md5(g::text) FROM generate_series(1, 1000) g; SELECT pg_switch_wal()" >/dev/null
done
ready="$(ls "$BK_PGDATA/pg_wal/archive_status" | grep -c '\.ready$')"
ok $((ready < 3)) "meanwhile PostgreSQL keeps the unarchived segments ($ready .ready files)"
failed="$(psql_q "SELECT failed_count FROM pg_stat_archiver")"
ok $((failed == 0)) "and counts failed archive attempts ($failed)"
like "$(psql_q "SELECT last_failure FROM bk_status()")" 'Kafka|timed out|broker' \
    "bk_status() says why archiving fails"
"$SERVICES" start kafka >/dev/null
ok $? "Kafka started again"
wait "$pgbench_pid"
ok $? "pgbench kept running through the outage ($(grep -o 'tps = [0-9.]*' "$dir/pgbench2.out" | head -1))"
pgbench_pid=""
switch_and_wait 300
ok $? "the archiver caught up after the outage"
wait_for 120 "backlog drained" no_ready
ok $? "no .ready file is left"
read -r checked missing differ <<<"$(check_archived_segments)"
is "$missing" "0" "after the outage every archived segment is in the repository ($checked checked)"
is "$differ" "0" "and restores byte-identical"

# ---- S3 only: the object store is down for 20 s during pgbench
if [[ "$(bk_test_backend)" == s3 ]]; then
    pgbench -T 35 -c 2 -j 2 -n >"$dir/pgbench3.out" 2>&1 &
    pgbench_pid=$!
    sleep 5
    "$SERVICES" stop s3 >/dev/null
    ok $? "the object store stopped during pgbench"
    for round in 1 2 3; do
        sleep 5
        psql_q "INSERT INTO bk_marker SELECT md5(g::text) FROM generate_series(1, 1000) g; SELECT pg_switch_wal()" >/dev/null
    done
    # A shipper killed while the store is down must not have committed
    # offsets past what the store never acknowledged.
    kill -KILL "$shipper_pid"
    wait "$shipper_pid" 2>/dev/null
    start_shipper
    sleep 5
    "$SERVICES" start s3 >/dev/null
    ok $? "the object store started again after 20 s"
    wait "$pgbench_pid"
    ok $? "pgbench kept running through the store's outage ($(grep -o 'tps = [0-9.]*' "$dir/pgbench3.out" | head -1))"
    pgbench_pid=""
    switch_and_wait 300
    ok $? "the archiver and the shipper caught up after the store's outage"
    wait_for 120 "backlog drained" no_ready
    read -r checked missing differ <<<"$(check_archived_segments)"
    is "$missing" "0" "after the store's outage every archived segment is in the bucket ($checked checked)"
    is "$differ" "0" "and restores byte-identical"
    grep -q "did not answer successfully\|could not archive" "$log"
    isnt $? 0 "the shipper rode out the outage by retrying (no failed archive in its log)"
fi

# ---- no plaintext anywhere
grep -rqa "$MARKER" "$repo_files"
isnt $? 0 "the marker written into a table is in no repository file"
timeout 60 kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.wal" -o beginning -e -q -f '%k %h %s\n' \
    2>/dev/null | grep -qa "$MARKER"
isnt $? 0 "nor anywhere in the WAL topic"
# The control: decrypted through bk wal-get, the archived WAL does hold it.
marker_in_restored_wal() {
    local name
    for name in $(ls "$repo_files/$source_id/wal" | grep -E '^[0-9A-F]{24}$'); do
        as_postgres "$BK" wal-get --config "$dir/bk.conf" --source "$source_id" \
            "$name" "$dir/walget/$name" 2>/dev/null || continue
        if grep -qa "$MARKER" "$dir/walget/$name"; then
            rm -f "$dir/walget/$name"
            return 0
        fi
        rm -f "$dir/walget/$name"
    done
    return 1
}
marker_in_restored_wal
ok $? "while the WAL restored through bk wal-get does contain it (so the test can see it)"

# ---- the archive is sound, and a real recovery replays it to the end
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
is $? 0 "bk verify with the key: every WAL object decrypts and its page headers check out"
expected_rows="$(psql_q "SELECT count(*) FROM pgbench_history")"
switch_and_wait 120
rm -rf "$dir/restored"
install -d -o postgres -m 700 "$dir/restored"
as_postgres "$BK_PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PGPORT" -U postgres \
    -D "$dir/restored" -X none -c fast >/dev/null 2>&1
ok $? "a base backup without WAL (-X none)"
psql_q "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) SELECT 1, 1, 1, 0, now() FROM generate_series(1, 10)" >/dev/null
expected_rows="$(psql_q "SELECT count(*) FROM pgbench_history")"
switch_and_wait 120
ok $? "ten more rows written after the backup, and archived"
restored_port=$((PGPORT + 11))
cat >>"$dir/restored/postgresql.auto.conf" <<CONF
port = $restored_port
archive_mode = off
archive_library = ''
shared_preload_libraries = ''
restore_command = '$BK wal-get --config $dir/bk.conf --source $source_id %f %p'
CONF
: >"$dir/restored/bk_test.conf"
touch "$dir/restored/recovery.signal"
chown -R postgres "$dir/restored"
install -o postgres -m 644 /dev/null "$dir/restored.log"
as_postgres "$BK_PGBIN/pg_ctl" -D "$dir/restored" -l "$dir/restored.log" -w -t 300 start >/dev/null
ok $? "the restored cluster starts and recovers through bk wal-get"
restored_pid=1
promoted() {
    [[ "$(psql -X -A -t -p "$restored_port" -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" == f ]]
}
wait_for 300 "recovery finished" promoted
ok $? "recovery reached the end of the archive and the cluster promoted"
is "$(psql -X -A -t -p "$restored_port" -c 'SELECT count(*) FROM pgbench_history')" "$expected_rows" \
    "the restored cluster has every row written before the last archived segment"
like "$(cat "$dir/restored.log")" 'restored log file "[0-9A-F]{24}" from archive' \
    "its log shows WAL restored from the archive"
as_postgres "$BK_PGBIN/pg_ctl" -D "$dir/restored" -m fast stop >/dev/null
restored_pid=""

# ---- bk.wait_for = repository: a fast shutdown waits for a slow shipper
# While the archiver waits for the shipper's confirmation Kafka acknowledges
# nothing, yet a healthy Kafka must let the shutdown's last archiving cycle
# wait for a shipper slower than the 3 s a send may go without an
# acknowledgement: the shipper is stopped (SIGSTOP) for 5 s from the shutdown.
echo "bk.wait_for = 'repository'" >>"$BK_PGDATA/bk_test.conf"
psql_q "SELECT pg_reload_conf()" >/dev/null
waits_for_repository() { [[ "$(psql_q "SHOW bk.wait_for")" == repository ]]; }
wait_for 30 "bk.wait_for = repository after reload" waits_for_repository
out="$(psql_q "SELECT state FROM bk_snapshot()" 2>&1)"
is "$out" complete "with bk.wait_for = repository, a snapshot completes once the shipper confirmed every object of it"
# Archived in order: this one archived, the snapshot's segments are too.
switch_and_wait 120
ok $? "with bk.wait_for = repository, a segment is archived"
log_bytes="$(stat -c %s "$pglog")"
kill -STOP "$shipper_pid"
seg="$(psql_q "INSERT INTO bk_marker VALUES ('last'); SELECT pg_walfile_name(pg_switch_wal())")"
# The file the archiver works on: PostgreSQL archives timeline history files
# first, then the others oldest first, and with wait_for = repository the
# next only once the shipper confirmed this one.  That is $seg, unless WAL
# written meanwhile by another process (autovacuum, say: after the
# snapshot's checkpoint every page it changes is logged whole) completed a
# segment after the one archived above: that one then waits for the
# stopped shipper, and $seg behind it.  Either way the archiver has sent a
# file and waits for its confirmation, which the shutdown must wait out.
next_to_archive() {
    local ready
    ready="$(ls "$BK_PGDATA/pg_wal/archive_status" | sed -n 's/\.ready$//p' | LC_ALL=C sort)"
    { grep '\.history$' <<<"$ready"; grep -v '\.history$' <<<"$ready"; } | sed -n '1p'
}
waiting_on_kafka() {
    waiting="$(next_to_archive)"
    [[ -n "$waiting" ]] &&
        kcat -C -b "$BK_KAFKA_BROKERS" -t "$prefix.wal" -o -64 -e -q -f '%h\n' 2>/dev/null |
        grep -qF "bk-object=$waiting,"
}
waiting=""
wait_for 60 "the oldest unarchived file on $prefix.wal" waiting_on_kafka
ok $? "the archiver sent ${waiting:-nothing} and waits for the shipper, which is stopped" ||
    diag "not archived: $(cd "$BK_PGDATA/pg_wal/archive_status" && echo *.ready)"
[[ "$waiting" == "$seg" ]] || note "$waiting came between the last segment archived and $seg"
test -f "$BK_PGDATA/pg_wal/archive_status/$seg.ready"
ok $? "$seg is not archived while the shipper is stopped"
(
    sleep 5
    kill -CONT "$shipper_pid"
) &
cont_pid=$!
t0=${EPOCHREALTIME//[.,]/}
as_postgres "$BK_PGBIN/pg_ctl" -D "$BK_PGDATA" -m fast -w -t 90 stop >"$dir/stop.log" 2>&1
ok $? "pg_ctl -m fast stop while the shipper is stopped" || diag "$(cat "$dir/stop.log")"
stop_ms=$(((${EPOCHREALTIME//[.,]/} - t0) / 1000))
wait "$cont_pid"
test -f "$BK_PGDATA/pg_wal/archive_status/$seg.ready"
isnt $? 0 "$seg was archived in the last cycle, after the shipper resumed ($stop_ms ms)" ||
    diag "$(tail -c +$((log_bytes + 1)) "$pglog" | grep -A2 'could not archive' | head -n 6)"
test -f "$repo_files/$source_id/wal/$seg"
ok $? "the shipper stored $seg"
tail -c +$((log_bytes + 1)) "$pglog" |
    grep -qF -e "could not archive \"$seg\"" -e "could not archive \"$waiting\""
isnt $? 0 "no failed attempt at $waiting or $seg in the server log (no interrupted wait)"
sed -i "/^bk.wait_for = /d" "$BK_PGDATA/bk_test.conf"
"$SERVICES" start pg >"$dir/start.log" 2>&1
ok $? "PostgreSQL starts again" || diag "$(cat "$dir/start.log")"

kill -TERM "$shipper_pid"
wait "$shipper_pid"
is $? 0 "the shipper stops cleanly"
shipper_pid=""
done_testing
