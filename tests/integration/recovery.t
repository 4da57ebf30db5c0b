#!/usr/bin/env bash
# Recovery never ends early and never restores the wrong history:
#   1. bk wal-get exits 1 ("beyond the end") only when it is sure: a
#      mistyped --source, a source without WAL, a segment before the
#      archive's start are fatal (exit 200); PostgreSQL itself, recovering
#      through restore_command with a mistyped source after it had replayed
#      part of the archive, stops with FATAL and never promotes;
#   2. a gap before a timeline branch point: timeline 2 is made for real
#      (a restored copy promoted with --archive); timeline 1's segments from
#      after a snapshot up to the branch point are removed; bk list, bk
#      verify (exit 4), bk wal-get (exit 200) and bk restore (refuses with
#      the first missing file) all see the same gap, and PostgreSQL
#      recovering through restore_command stops with FATAL;
#   3. a snapshot of another cluster (another system identifier) taken
#      under the same source id is a conflict for bk list and bk verify and
#      refused by bk restore, naming both identifiers;
#   4. bad input: a NUL byte in the configuration (exit 3, file and line),
#      impossible dates and zones (exit 2), an LSN PostgreSQL would refuse
#      (exit 2, nothing written), a hexadecimal size (exit 3); bk verify
#      says how many messages the shipper rejected, and since when.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env)"
SERVICES="$ROOT/scripts/services"
source "$ROOT/tests/lib/bk_env.sh"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-recovery-test.XXXXXX")"
chmod 755 "$dir"
shipper_pid=""
restored_port=$((PGPORT + 41))
foreign_port=$((PGPORT + 42))

psql_q() { psql -X -A -t -q -v ON_ERROR_STOP=1 "$@"; }
as_postgres() { runuser -u postgres -- "$@"; }
rpsql() { psql -X -A -t -q -h 127.0.0.1 -p "$restored_port" -U postgres "$@"; }
stop_cluster() {
    [[ -f "$1/postmaster.pid" ]] && as_postgres "$BK_PGBIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null 2>&1
}
cleanup() {
    [[ -n "$shipper_pid" ]] && kill -KILL "$shipper_pid" 2>/dev/null
    for d in "$dir"/restored-* "$dir/foreign"; do [[ -d "$d" ]] && stop_cluster "$d"; done
    psql_q -c "DROP TABLE IF EXISTS t_rec" >/dev/null 2>&1
    : >"$BK_PGDATA/bk_test.conf"
    "$SERVICES" restart pg >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT
json_get() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

# ---- bk, topics, shipper, PostgreSQL archiving through bk
bk_test_init rec
bk_test_start_shipper
bk_test_pg_archive "wal_keep_size = '2GB'"
ok $? "PostgreSQL archives through bk"
psql_q -c "CREATE EXTENSION IF NOT EXISTS bk" -c "DROP TABLE IF EXISTS t_rec" \
    -c "CREATE TABLE t_rec (id int, v text)" >/dev/null

archived_through() {
    local last
    last="$(psql_q -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")"
    [[ -n "$last" && ! "$last" < "$1" ]] && test -f "$repo/$source_id/wal/$1"
}
switch_and_wait() {
    local seg
    seg="$(psql_q -c "SELECT pg_walfile_name(pg_switch_wal())")"
    wait_for 120 "segment $seg archived" archived_through "$seg"
}
restorable() { # ID
    "$BK" list --config "$dir/bk.conf" --source "$source_id" --json >"$dir/list.json" 2>/dev/null &&
        [[ "$(json_get "$dir/list.json" "[s['restorable'] for s in d['sources'][0]['snapshots'] if s['id'] == '$1']")" == "[True]" ]]
}
rows() { psql_q -c "SELECT count(*) FROM t_rec"; }
add_rows() { # N: insert N rows and fill a segment
    psql_q -c "INSERT INTO t_rec SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, $1) g" >/dev/null
    switch_and_wait
}

add_rows 1000
s1="$(psql_q -c "SELECT snapshot_id FROM bk_snapshot('full', 'recovery s1')")"
like "$s1" '^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$' "a full snapshot: $s1"
for round in 1 2 3 4; do add_rows 2000; done
rows_mid="$(rows)"
mid_lsn="$(psql_q -c "SELECT pg_current_wal_lsn()")"
for round in 1 2 3; do add_rows 2000; done
rows_end="$(rows)"
wait_for 120 "$s1 restorable" restorable "$s1"
ok $? "the snapshot and the WAL after it are archived"

wal_json() { "$BK" list --config "$dir/bk.conf" --source "$source_id" --json >"$dir/wal.json" && json_get "$dir/wal.json" "$1"; }
first_seg="$(wal_json "d['sources'][0]['wal']['timelines'][0]['first']")"
last_seg="$(wal_json "d['sources'][0]['wal']['timelines'][0]['last']")"
seg_after() { python3 -c 'import sys; n = int(sys.argv[1][8:16], 16) * 256 + int(sys.argv[1][16:], 16) + int(sys.argv[2]); print("%s%08X%08X" % (sys.argv[1][:8], n // 256, n % 256))' "$1" "$2"; }

# ---- 1. wal-get: only a sure end is exit 1
wal_get() { as_postgres "$BK" wal-get --config "$dir/bk.conf" "$@"; }
bad_source="${source_id%?}"
out="$(wal_get --source "$bad_source" "$(seg_after "$last_seg" 1)" "$dir/x" 2>&1)"
is $? 200 "wal-get with a mistyped source is fatal, not the end of the archive"
like "$out" "source \"$bad_source\" is not in repository .*cannot be the end of its archive .*holds sources: $source_id" \
    "saying the source is not in the repository, and which sources are"
mkdir -p "$repo/4242424242/snapshot"
out="$(wal_get --source 4242424242 000000010000000000000005 "$dir/x" 2>&1)"
is $? 200 "wal-get for a source without WAL is fatal"
like "$out" 'source "4242424242" has no archived WAL' "saying it has no WAL"
rm -rf "$repo/4242424242"
out="$(wal_get --source "$source_id" "$(seg_after "$first_seg" -1)" "$dir/x" 2>&1)"
is $? 200 "wal-get of a segment before the archive's first is fatal"
like "$out" "comes before the first archived segment of timeline 1 \\($first_seg\\)" "saying so"
out="$(wal_get --source "$source_id" "$(seg_after "$last_seg" 1)" "$dir/x" 2>&1)"
is $? 1 "wal-get of the segment after the newest is the end of the archive (exit 1)"
like "$out" "beyond the end of the archive of source \"$source_id\" \\(its newest segment on timeline 1 is $last_seg\\)" \
    "saying where the archive ends"

# ---- 1b. PostgreSQL with a mistyped source after part of the replay: FATAL
start_restored() { # DIR LOG: start, return when it is up or has stopped
    local target="$1" log="$2"
    cat >>"$target/postgresql.auto.conf" <<CONF
port = $restored_port
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
CONF
    install -o postgres -m 644 /dev/null "$log"
    as_postgres "$BK_PGBIN/pg_ctl" -D "$target" -l "$log" -w -t 120 start >/dev/null 2>&1
}
server_gone() { ! as_postgres "$BK_PGBIN/pg_ctl" -D "$1" status >/dev/null 2>&1; }
r1="$dir/restored-mistyped"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$r1" --snapshot "$s1" \
    --target-lsn "$mid_lsn" --prefetch 0 >"$dir/restore-r1.log" 2>&1
ok $? "restore $s1 towards the middle of the archive"
echo "recovery_target_action = 'shutdown'" >>"$r1/postgresql.auto.conf"
start_restored "$r1" "$dir/r1-a.log"
wait_for 120 "the first recovery to stop at its target" server_gone "$r1"
ok $? "recovery replays part of the archive and shuts down at the target"
like "$(cat "$dir/r1-a.log")" 'restored log file' "having fetched WAL from the archive"
# The operator resumes without a target, and mistypes the source.
sed -i -e "/^recovery_target/d" -e "s/--source $source_id/--source $bad_source/" "$r1/postgresql.auto.conf"
grep -q -- "--source $bad_source" "$r1/postgresql.auto.conf"
ok $? "restore_command now names the mistyped source"
start_restored "$r1" "$dir/r1-b.log"
wait_for 120 "recovery to stop" server_gone "$r1"
ok $? "PostgreSQL stops"
log="$(cat "$dir/r1-b.log")"
like "$log" "FATAL: .*could not restore file .* exit code 200" "with FATAL on the first file it asks the mistyped source for"
like "$log" "is not in repository" "and the log says why"
unlike "$log" 'selected new timeline ID|database system is ready to accept connections' "it never promotes"
rm -rf "$r1"

# ---- 2. a gap before a timeline branch point
s2="$(psql_q -c "SELECT snapshot_id FROM bk_snapshot('full', 'recovery s2')")"
like "$s2" '^[0-9]{8}T[0-9]{6}Z-' "a second full snapshot: $s2"
add_rows 500
wait_for 120 "$s2 restorable" restorable "$s2"
ok $? "it is archived"
# Timeline 2: a copy restored from s2 that becomes a primary and archives.
r2="$dir/restored-tl2"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$r2" --snapshot "$s2" \
    --target immediate --archive >"$dir/restore-r2.log" 2>&1
ok $? "restore $s2 with --archive: this copy becomes a primary"
start_restored "$r2" "$dir/r2.log"
ok $? "it starts"
promoted() { [[ "$(rpsql -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" == f ]]; }
wait_for 120 "promotion" promoted
is "$(rpsql -c "SELECT timeline_id FROM pg_control_checkpoint()")" 2 "it promotes onto timeline 2" ||
    diag "$(tail -n 30 "$dir/r2.log")"
rpsql -c "INSERT INTO t_rec SELECT g, 'timeline 2' FROM generate_series(1, 500) g" >/dev/null
tl2_seg="$(rpsql -c "SELECT pg_walfile_name(pg_switch_wal())")"
tl2_archived() { test -f "$repo/$source_id/wal/00000002.history" && test -f "$repo/$source_id/wal/$tl2_seg"; }
wait_for 120 "timeline 2 archived" tl2_archived
ok $? "timeline 2's history file and segments are archived under the same source"
stop_cluster "$r2"
branch="$(wal_json "d['sources'][0]['wal']['timelines'][1]['branch_lsn']")"
like "$branch" '^[0-9A-F]+/[0-9A-F]+$' "bk list reads timeline 2's branch point ($branch) from the history file's metadata"
# Timeline 1's segments after s1's stop up to the branch are lost.
s1_stop="$(json_get "$dir/wal.json" "[s['stop_lsn'] for s in d['sources'][0]['snapshots'] if s['id'] == '$s1'][0]")"
s1_stop_seg="$(psql_q -c "SELECT pg_walfile_name('$s1_stop'::pg_lsn)")"
lost_first="$(seg_after "$s1_stop_seg" 2)"
removed=0
for f in "$repo/$source_id/wal/00000001"????????????????; do
    name="$(basename "$f")"
    if [[ ! "$name" < "$lost_first" ]]; then rm -f "$f" && removed=$((removed + 1)); fi
done
ok $((removed < 3)) "timeline 1's $removed segments from $lost_first up to the branch are removed"

out="$("$BK" list --config "$dir/bk.conf" --source "$source_id" 2>&1)"
like "$out" "WAL timeline 1: .*MISSING \\(first: $lost_first\\), needed up to $branch \\(timeline 2 branched there\\)" \
    "bk list: timeline 1's segments are missing up to the branch point"
like "$out" "restorable window: .* on timeline 2 .*MISSING inside \\(first: $lost_first\\)" \
    "bk list: the restorable window on timeline 2 has the same gap"
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
is $? 4 "bk verify fails (exit 4)"
like "$out" "segments? of timeline 1 missing below $branch, where timeline 2 branched off it \\(first missing: $lost_first\\)" \
    "saying which segments timeline 2's branch point needs"
out="$(wal_get --source "$source_id" "$lost_first" "$dir/x" 2>&1)"
is $? 200 "bk wal-get of the missing segment is fatal, not the end of the archive"
like "$out" "timeline 2 branched off timeline 1 at $branch" "saying why it must be there"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/restored-refused" \
    --snapshot "$s1" 2>&1)"
is $? 4 "bk restore to the end of timeline 2 from $s1 is refused (exit 4)"
like "$out" "WAL file $lost_first is missing from the archive .*recovery from snapshot $s1 .* to the target on timeline 2 needs it" \
    "naming the first missing file"
[[ ! -e "$dir/restored-refused" ]]
ok $? "and writes nothing"
# PostgreSQL, told to follow the latest timeline from s1: FATAL at the gap.
r3="$dir/restored-gap"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$r3" --snapshot "$s1" \
    --target immediate --prefetch 0 >"$dir/restore-r3.log" 2>&1
ok $? "restore $s1 up to its own consistency point is allowed"
sed -i "/^recovery_target =/d" "$r3/postgresql.auto.conf"
start_restored "$r3" "$dir/r3.log"
wait_for 180 "recovery to stop" server_gone "$r3"
ok $? "PostgreSQL, following timeline 2 without a target, stops"
log="$(cat "$dir/r3.log")"
like "$log" "FATAL: .*could not restore file \"$lost_first\" .* exit code 200" "with FATAL at the first missing segment"
like "$log" "timeline 2 branched off timeline 1" "and the log says why"
unlike "$log" 'selected new timeline ID|database system is ready to accept connections' "it never promotes"
rm -rf "$r3"

# ---- 3. a snapshot of another cluster under the same source id
foreign="$dir/foreign"
install -d -o postgres -m 700 "$foreign"
as_postgres "$BK_PGBIN/initdb" -D "$foreign" -A trust -U postgres --locale=C >"$dir/foreign-initdb.log" 2>&1
{
    echo "port = $foreign_port"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = ''"
    # It archives through bk too (bk_snapshot() refuses without), as two
    # clusters misconfigured with one source id would: its WAL is far older
    # than the source's newest, which still says whose the source is.
    echo "archive_mode = on"
    bk_test_pg_settings
    echo "bk.source_id = '$source_id'"
} >>"$foreign/postgresql.conf"
install -o postgres -m 644 /dev/null "$dir/foreign.log"
as_postgres "$BK_PGBIN/pg_ctl" -D "$foreign" -l "$dir/foreign.log" -w start >/dev/null 2>&1
ok $? "a second cluster, configured with the first one's source id"
fpsql() { psql -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$foreign_port" -U postgres "$@"; }
foreign_sysid="$(fpsql -c "SELECT system_identifier FROM pg_control_system()")"
fpsql -c "CREATE EXTENSION bk" >/dev/null
fs="$(fpsql -c "SELECT snapshot_id FROM bk_snapshot('full', 'foreign')")"
like "$fs" '^[0-9]{8}T[0-9]{6}Z-' "it takes a snapshot under source $source_id: $fs"
stop_cluster "$foreign"
foreign_in_repo() { test -f "$repo/$source_id/snapshot/$fs/snapshot.json"; }
wait_for 120 "the foreign snapshot archived" foreign_in_repo
out="$("$BK" list --config "$dir/bk.conf" --source "$source_id" 2>&1)"
like "$out" "$fs  full .*NOT restorable: conflict: it was taken of database system $foreign_sysid, but the source's WAL .* is of system $source_id" \
    "bk list calls the foreign snapshot a conflict, naming both systems"
like "$out" "$s1  full .* restorable" "and the source's own snapshots are as they were"
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
is $? 4 "bk verify fails"
like "$out" "snapshot $fs is not restorable: conflict: it was taken of database system $foreign_sysid" \
    "naming the foreign snapshot and its system"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/restored-foreign" \
    --snapshot "$fs" 2>&1)"
isnt $? 0 "bk restore refuses the foreign snapshot"
like "$out" "snapshot $fs is not restorable: conflict: .*$foreign_sysid.*$source_id" "naming both systems"
[[ ! -e "$dir/restored-foreign" ]]
ok $? "and writes nothing"

# ---- 4. bad input
printf 'kafka_brokers = %s\nrepository = %s\n# x\0\nkey_file = /nonexistent\n' "$BK_KAFKA_BROKERS" "$repo" >"$dir/nul.conf"
out="$("$BK" list --config "$dir/nul.conf" 2>&1)"
is $? 3 "a configuration file with a NUL byte is refused (exit 3)"
like "$out" "\"$dir/nul.conf\" line 3: a NUL byte" "naming the file and the line"
printf 'kafka_brokers = %s\nrepository = %s\nchunk_size = 0x10000\n' "$BK_KAFKA_BROKERS" "$repo" >"$dir/hex.conf"
out="$("$BK" list --config "$dir/hex.conf" 2>&1)"
is $? 3 "chunk_size = 0x10000 is refused (exit 3): sizes are decimal"
like "$out" "hex.conf\" line 3" "naming the line"
for bad in "2027-02-30 00:00:00+00" "2026-02-29 12:00:00+00" "2026-11-24 05:12:00+99" "2026-11-24 05:12:00+15:60"; do
    out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/restored-bad" \
        --target-time "$bad" 2>&1)"
    is $? 2 "--target-time \"$bad\" is refused (exit 2)"
done
like "$out" "is not a timestamp" "saying it is not a timestamp"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/restored-bad" \
    --target-time "2028-02-29 12:00:00+00" --snapshot no-such-snapshot 2>&1)"
like "$out" 'has no snapshot "no-such-snapshot"' "a real leap day is a timestamp (the restore goes on to the snapshot)"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/restored-bad" \
    --target-lsn FFFFFFFFF/0 2>&1)"
is $? 2 "--target-lsn FFFFFFFFF/0 is refused (exit 2), as PostgreSQL would"
[[ ! -e "$dir/restored-bad" ]]
ok $? "and nothing is written"
# A message that fails the shipper's keyless checks lands in rejected/.
printf 'not a bk frame' | kcat -P -b "$BK_KAFKA_BROKERS" -t "$prefix.wal" -k "$source_id" 2>/dev/null
rejected_present() { compgen -G "$repo/rejected/*" >/dev/null; }
wait_for 60 "the shipper to reject the message" rejected_present
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
like "$out" "1 message rejected by the shipper since [0-9]{4}-[0-9]{2}-[0-9]{2}T.* kept in $repo/rejected" \
    "bk verify says how many messages were rejected, and since when"

kill -TERM "$shipper_pid"
wait "$shipper_pid"
is $? 0 "the shipper stops cleanly"
shipper_pid=""
done_testing
