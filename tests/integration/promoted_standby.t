#!/usr/bin/env bash
# A primary crashes and its streaming standby is promoted: timeline 1's
# segment that holds the branch point is archived only as .partial (by the
# promoted standby), and timeline 2's copy of it holds timeline 1's WAL up
# to the branch point, the last transactions the primary committed among it.
#   1. bk wal-get calls timeline 1's copy of that segment a hole (exit 200),
#      not the end of the archive (exit 1): recovery along timeline 1 would
#      otherwise end at the segment's start and promote without those
#      transactions, with no error anywhere;
#   2. bk restore along timeline 1 (--target-timeline 1) is refused before
#      anything is written, naming the segment and timeline 2;
#   3. bk restore along the latest timeline restores them, and timeline 2's.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env)"
SERVICES="$ROOT/scripts/services"
source "$ROOT/tests/lib/bk_env.sh"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-promoted-standby-test.XXXXXX")"
chmod 755 "$dir"
shipper_pid=""
restored_port=$((PGPORT + 51))
standby_port=$((PGPORT + 52))
standby="$dir/standby"

psql_q() { psql -X -A -t -q -v ON_ERROR_STOP=1 "$@"; }
as_postgres() { runuser -u postgres -- "$@"; }
spsql() { psql -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$standby_port" -U postgres "$@"; }
rpsql() { psql -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$restored_port" -U postgres "$@"; }
stop_cluster() {
    [[ -f "$1/postmaster.pid" ]] && as_postgres "$BK_PGBIN/pg_ctl" -D "$1" -m immediate -w stop >/dev/null 2>&1
}
cleanup() {
    [[ -n "$shipper_pid" ]] && kill -KILL "$shipper_pid" 2>/dev/null
    stop_cluster "$standby"
    for d in "$dir"/restored-*; do [[ -d "$d" ]] && stop_cluster "$d"; done
    : >"$BK_PGDATA/bk_test.conf"
    "$SERVICES" restart pg >/dev/null 2>&1
    psql_q -c "DROP TABLE IF EXISTS t_ps" >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT
json_get() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

# ---- a primary archiving through bk, a snapshot, a streaming standby
bk_test_init ps
bk_test_start_shipper
bk_test_pg_archive "wal_keep_size = '1GB'"
ok $? "PostgreSQL archives through bk"
psql_q -c "CREATE EXTENSION IF NOT EXISTS bk" -c "DROP TABLE IF EXISTS t_ps" \
    -c "CREATE TABLE t_ps (id int, v text)" \
    -c "INSERT INTO t_ps SELECT g, 'before' FROM generate_series(1, 1000) g" >/dev/null

archived() { test -f "$repo/$source_id/wal/$1"; }
restorable() { # ID
    "$BK" list --config "$dir/bk.conf" --source "$source_id" --json >"$dir/list.json" 2>/dev/null &&
        [[ "$(json_get "$dir/list.json" "[s['restorable'] for s in d['sources'][0]['snapshots'] if s['id'] == '$1']")" == "[True]" ]]
}
s0="$(psql_q -c "SELECT snapshot_id FROM bk_snapshot('full', 'promoted standby s0')")"
like "$s0" '^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$' "a full snapshot: $s0"
seg="$(psql_q -c "SELECT pg_walfile_name(pg_switch_wal())")"
wait_for 120 "$seg archived" archived "$seg"
wait_for 60 "$s0 restorable" restorable "$s0"
ok $? "the snapshot and the WAL after it are archived"

install -d -o postgres -m 700 "$standby"
as_postgres "$BK_PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PGPORT" -U postgres -D "$standby" \
    -R -X stream >"$dir/basebackup.log" 2>&1
ok $? "pg_basebackup makes a streaming standby" || diag "$(cat "$dir/basebackup.log")"
cat >>"$standby/postgresql.auto.conf" <<CONF
port = $standby_port
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
CONF
install -o postgres -m 644 /dev/null "$dir/standby.log"
as_postgres "$BK_PGBIN/pg_ctl" -D "$standby" -l "$dir/standby.log" -w -t 60 start >/dev/null 2>&1
ok $? "the standby starts" || diag "$(tail -n 20 "$dir/standby.log")"

# A new segment, then the last transactions: in a segment the primary
# never completes, which only the standby receives.
seg="$(psql_q -c "SELECT pg_walfile_name(pg_switch_wal())")"
wait_for 120 "$seg archived" archived "$seg"
psql_q -c "INSERT INTO t_ps SELECT g, 'last' FROM generate_series(1, 100) g" >/dev/null
last_lsn="$(psql_q -c "SELECT pg_current_wal_lsn()")"
branch_seg="$(psql_q -c "SELECT pg_walfile_name('$last_lsn')")"
replayed() { [[ "$(spsql -c "SELECT pg_last_wal_replay_lsn() >= '$last_lsn'" 2>/dev/null)" == t ]]; }
wait_for 60 "the standby replays $last_lsn" replayed
ok $? "the standby has the last transactions, in $branch_seg"

# ---- the primary crashes, the standby is promoted
kill -KILL "$(head -n 1 "$BK_PGDATA/postmaster.pid")"
as_postgres "$BK_PGBIN/pg_ctl" -D "$standby" -w -t 60 promote >/dev/null 2>&1
ok $? "the standby is promoted"
spsql -c "INSERT INTO t_ps SELECT g, 'tl2' FROM generate_series(1, 50) g" >/dev/null
spsql -c "SELECT pg_switch_wal()" >/dev/null
tl2_seg="00000002${branch_seg:8}"
wait_for 120 "timeline 2 archived" archived "$tl2_seg"
wait_for 60 "00000002.history" archived 00000002.history
wait_for 60 "$branch_seg.partial" archived "$branch_seg.partial"
ok $? "timeline 2, its history file and timeline 1's .partial are archived"
test ! -e "$repo/$source_id/wal/$branch_seg"
ok $? "timeline 1's copy of $branch_seg is not"

# ---- 1. bk wal-get
out="$("$BK" wal-get --config "$dir/bk.conf" --source "$source_id" "$branch_seg" "$dir/seg" 2>&1)"
is $? 200 "bk wal-get $branch_seg: exit 200, not 1 (the end of the archive)" || diag "$out"
like "$out" "timeline 2 branched off timeline 1 at .*, inside it" "saying that timeline 1's WAL runs into it"
"$BK" wal-get --config "$dir/bk.conf" --source "$source_id" "$tl2_seg" "$dir/seg" >/dev/null 2>&1
is $? 0 "timeline 2's copy is served"

# ---- 2. bk restore along timeline 1
r1="$dir/restored-tl1"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$r1" \
    --snapshot "$s0" --target-timeline 1 2>&1)"
is $? 4 "bk restore --target-timeline 1 is refused (exit 4)" || diag "$out"
like "$out" "WAL file $branch_seg is missing from the archive" "naming the segment"
like "$out" "--target-timeline 2" "and pointing at timeline 2"
test ! -e "$r1/global/pg_control"
ok $? "having written nothing"

# ---- 3. bk restore along timeline 2
r2="$dir/restored-latest"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$r2" \
    --snapshot "$s0" --prefetch 0 >"$dir/restore-r2.log" 2>&1
ok $? "bk restore to the end of the archive is accepted" || diag "$(cat "$dir/restore-r2.log")"
cat >>"$r2/postgresql.auto.conf" <<CONF
port = $restored_port
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
CONF
install -o postgres -m 644 /dev/null "$dir/r2.log"
as_postgres "$BK_PGBIN/pg_ctl" -D "$r2" -l "$dir/r2.log" -w -t 180 start >/dev/null 2>&1
promoted() { [[ "$(rpsql -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" == f ]]; }
wait_for 180 "promotion" promoted
ok $? "PostgreSQL recovers along timeline 2 and promotes" || diag "$(tail -n 30 "$dir/r2.log")"
is "$(rpsql -c "SELECT count(*) FROM t_ps WHERE v = 'last'")" 100 \
    "with the primary's last transactions"
is "$(rpsql -c "SELECT count(*) FROM t_ps WHERE v = 'tl2'")" 50 "and timeline 2's"
stop_cluster "$r2"

kill -TERM "$shipper_pid"
wait "$shipper_pid"
is $? 0 "the shipper stops cleanly"
shipper_pid=""
done_testing
