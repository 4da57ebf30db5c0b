#!/usr/bin/env bash
# Restores across a timeline branch that the archive can serve are not
# refused, and PostgreSQL recovers them:
#   1. timeline 2 is made for real: a copy restored from snapshot s1 with
#      --target immediate and promoted branches off timeline 1 at s1's stop
#      point, in the segment that holds it.  Timeline 1's copy of that
#      segment is then removed from the repository, as when the old
#      timeline's last segment is archived only as .partial by the promoted
#      server; timeline 2's copy holds the same WAL up to the branch point;
#   2. s1 is still restorable, along timeline 2: bk restore to the end of
#      the archive, and with --target immediate, write
#      recovery_target_timeline = '2', and PostgreSQL reads timeline 2's
#      copy of the segment, becomes consistent and replays timeline 2;
#   3. a transaction committed on timeline 2 after the branch, and a restore
#      point made there, are found by bk restore's pg_waldump search (which
#      follows timeline 2's history), although timeline 1's server went on
#      and may have given that xid to a transaction of its own; PostgreSQL
#      stops at the timeline 2 commit.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env)"
SERVICES="$ROOT/scripts/services"
source "$ROOT/tests/lib/bk_env.sh"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-timelines-test.XXXXXX")"
chmod 755 "$dir"
shipper_pid=""
restored_port=$((PGPORT + 51))

psql_q() { psql -X -A -t -q -v ON_ERROR_STOP=1 "$@"; }
as_postgres() { runuser -u postgres -- "$@"; }
rpsql() { psql -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$restored_port" -U postgres "$@"; }
stop_cluster() {
    [[ -f "$1/postmaster.pid" ]] && as_postgres "$BK_PGBIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null 2>&1
}
cleanup() {
    [[ -n "$shipper_pid" ]] && kill -KILL "$shipper_pid" 2>/dev/null
    for d in "$dir"/restored-*; do [[ -d "$d" ]] && stop_cluster "$d"; done
    psql_q -c "DROP TABLE IF EXISTS t_tl" >/dev/null 2>&1
    : >"$BK_PGDATA/bk_test.conf"
    "$SERVICES" restart pg >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT
json_get() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

# ---- bk, topics, shipper, PostgreSQL archiving through bk
bk_test_init tl
bk_test_start_shipper
bk_test_pg_archive "wal_keep_size = '2GB'"
ok $? "PostgreSQL archives through bk"
psql_q -c "CREATE EXTENSION IF NOT EXISTS bk" -c "DROP TABLE IF EXISTS t_tl" \
    -c "CREATE TABLE t_tl (id int, v text)" >/dev/null

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
list_json() { "$BK" list --config "$dir/bk.conf" --source "$source_id" --json >"$dir/list.json" 2>/dev/null; }
restorable() { # ID
    list_json && [[ "$(json_get "$dir/list.json" "[s['restorable'] for s in d['sources'][0]['snapshots'] if s['id'] == '$1']")" == "[True]" ]]
}
add_rows() { # N: insert N rows and fill a segment
    psql_q -c "INSERT INTO t_tl SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, $1) g" >/dev/null
    switch_and_wait
}
start_restored() { # DIR LOG
    local target="$1" log="$2"
    cat >>"$target/postgresql.auto.conf" <<CONF
port = $restored_port
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
CONF
    install -o postgres -m 644 /dev/null "$log"
    as_postgres "$BK_PGBIN/pg_ctl" -D "$target" -l "$log" -w -t 180 start >/dev/null 2>&1
}
promoted() { [[ "$(rpsql -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" == f ]]; }

add_rows 1000
s1="$(psql_q -c "SELECT snapshot_id FROM bk_snapshot('full', 'timelines s1')")"
like "$s1" '^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$' "a full snapshot: $s1"
# Timeline 1 goes on after s1: its transactions take the xids timeline 2
# will give its own.
add_rows 1000
add_rows 1000
wait_for 120 "$s1 restorable" restorable "$s1"
ok $? "the snapshot and the WAL after it are archived"
s1_stop="$(json_get "$dir/list.json" "[s['stop_lsn'] for s in d['sources'][0]['snapshots'] if s['id'] == '$s1'][0]")"

# ---- 1. timeline 2, branching off in s1's stop segment
r2="$dir/restored-tl2"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$r2" --snapshot "$s1" \
    --target immediate --archive >"$dir/restore-r2.log" 2>&1
ok $? "restore $s1 with --target immediate --archive: this copy becomes a primary"
start_restored "$r2" "$dir/r2.log"
wait_for 120 "promotion" promoted
is "$(rpsql -c "SELECT timeline_id FROM pg_control_checkpoint()")" 2 "it promotes onto timeline 2" ||
    diag "$(tail -n 30 "$dir/r2.log")"
rpsql -c "INSERT INTO t_tl SELECT g, 'tl2 before' FROM generate_series(1, 100) g" >/dev/null
xid_tl2="$(rpsql -c "INSERT INTO t_tl VALUES (-1, 'tl2 target') RETURNING txid_current()")"
like "$xid_tl2" '^[0-9]+$' "a transaction committed on timeline 2: xid $xid_tl2"
rpsql -c "SELECT pg_create_restore_point('tl2_point')" >/dev/null
rpsql -c "INSERT INTO t_tl SELECT g, 'tl2 after' FROM generate_series(1, 100) g" >/dev/null
tl2_seg="$(rpsql -c "SELECT pg_walfile_name(pg_switch_wal())")"
tl2_archived() { test -f "$repo/$source_id/wal/00000002.history" && test -f "$repo/$source_id/wal/$tl2_seg"; }
wait_for 120 "timeline 2 archived" tl2_archived
ok $? "timeline 2's history file and segments are archived under the same source"
# A history file the repository cannot read (EIO, injected with LD_PRELOAD)
# says nothing about the archive: bk verify stops with exit 5 naming it.
out="$(LD_PRELOAD="$ROOT/tests/integration/bk_test_eio.so" BK_TEST_EIO_PATH="/wal/00000002.history" \
    "$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
is $? 5 "bk verify with a history file it cannot read fails with exit 5"
like "$out" "could not check \"00000002.history\": .*Input/output error" "naming it and the cause" || diag "$out"
unlike "$out" "PROBLEM" "and reporting no damage"
stop_cluster "$r2"
rm -rf "$r2"

list_json
branch="$(json_get "$dir/list.json" "d['sources'][0]['wal']['timelines'][1]['branch_lsn']")"
is "$branch" "$s1_stop" "timeline 2 branched off timeline 1 at s1's stop point"
branch_seg="$(psql_q -c "SELECT pg_walfile_name('$branch'::pg_lsn)")"
like "$branch_seg" '^00000001' "the branch segment on timeline 1: $branch_seg"
test -f "$repo/$source_id/wal/00000002${branch_seg:8}"
ok $? "timeline 2's copy of it is archived"
# Timeline 1's copy is lost: as if only its .partial had been archived.
rm -f "$repo/$source_id/wal/$branch_seg"
ok $? "timeline 1's copy of the branch segment is removed"

# ---- 2. s1 restores along timeline 2
wait_for 30 "$s1 restorable" restorable "$s1"
ok $? "bk list: $s1 is still restorable (along timeline 2)" ||
    diag "$("$BK" list --config "$dir/bk.conf" --source "$source_id" 2>&1)"
r3="$dir/restored-end"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$r3" --snapshot "$s1" \
    --prefetch 0 >"$dir/restore-r3.log" 2>&1
ok $? "bk restore of $s1 to the end of the archive is accepted" || diag "$(cat "$dir/restore-r3.log")"
like "$(cat "$r3/postgresql.auto.conf")" "recovery_target_timeline = '2'" "following timeline 2"
start_restored "$r3" "$dir/r3.log"
wait_for 180 "promotion" promoted
ok $? "PostgreSQL becomes consistent reading timeline 2's copy of the segment, and promotes" ||
    diag "$(tail -n 30 "$dir/r3.log")"
like "$(cat "$dir/r3.log")" "restored log file \"00000002${branch_seg:8}\"" "having fetched timeline 2's copy"
is "$(rpsql -c "SELECT count(*) FROM t_tl WHERE v = 'tl2 after'")" 100 "and replays timeline 2 to its end"
stop_cluster "$r3"
rm -rf "$r3"

r4="$dir/restored-immediate"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$r4" --snapshot "$s1" \
    --target immediate --prefetch 0 >"$dir/restore-r4.log" 2>&1
ok $? "bk restore of $s1 with --target immediate is accepted" || diag "$(cat "$dir/restore-r4.log")"
like "$(cat "$r4/postgresql.auto.conf")" "recovery_target_timeline = '2'" \
    "along timeline 2, whose copy of the stop segment is archived"
start_restored "$r4" "$dir/r4.log"
wait_for 180 "promotion" promoted
ok $? "PostgreSQL reaches consistency and promotes" || diag "$(tail -n 30 "$dir/r4.log")"
is "$(rpsql -c "SELECT count(*) FROM t_tl WHERE v LIKE 'tl2%'")" 0 "with nothing of timeline 2 past the branch"
stop_cluster "$r4"
rm -rf "$r4"

# ---- 3. targets on timeline 2, found by the WAL search
r5="$dir/restored-xid"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$r5" \
    --target-xid "$xid_tl2" --prefetch 0 >"$dir/restore-r5.log" 2>&1
ok $? "bk restore --target-xid $xid_tl2 (committed on timeline 2) is accepted" || diag "$(cat "$dir/restore-r5.log")"
like "$(cat "$r5/postgresql.auto.conf")" "recovery_target_xid = '$xid_tl2'" "the target is written"
like "$(cat "$r5/postgresql.auto.conf")" "recovery_target_timeline = '2'" "along timeline 2"
start_restored "$r5" "$dir/r5.log"
wait_for 180 "promotion" promoted
ok $? "PostgreSQL recovers to it and promotes" || diag "$(tail -n 30 "$dir/r5.log")"
is "$(rpsql -c "SELECT count(*) FROM t_tl WHERE v = 'tl2 target'")" 1 "with timeline 2's transaction $xid_tl2"
is "$(rpsql -c "SELECT count(*) FROM t_tl WHERE v = 'tl2 after'")" 0 "and nothing after it"
stop_cluster "$r5"
rm -rf "$r5"

r6="$dir/restored-name"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$r6" \
    --target-name tl2_point --prefetch 0 >"$dir/restore-r6.log" 2>&1
ok $? "bk restore --target-name tl2_point (made on timeline 2) is accepted" || diag "$(cat "$dir/restore-r6.log")"
like "$(cat "$r6/postgresql.auto.conf")" "recovery_target_timeline = '2'" "along timeline 2"
rm -rf "$r6"

kill -TERM "$shipper_pid"
wait "$shipper_pid"
is $? 0 "the shipper stops cleanly"
shipper_pid=""
done_testing
