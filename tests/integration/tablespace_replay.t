#!/usr/bin/env bash
# A tablespace created after the snapshot, restored on the source's own
# host: PostgreSQL 15 replays CREATE TABLESPACE by linking pg_tblspc/<oid>
# to the record's LOCATION when LOCATION/PG_15_<catversion> exists, which
# here is the source's live tablespace, so the restored cluster would write
# into the source's files.  bk wal-get must refuse the segment holding that
# record (exit 200: recovery stops with its message), so that:
#   - the restored cluster does not start, and its log names the segment,
#     the tablespace's oid and LOCATION;
#   - its pg_tblspc has no link to the source's directory;
#   - the source's relation file in that tablespace is unchanged;
#   - a restore to the --target-lsn the message gives (the record before
#     it) recovers and promotes without the tablespace: bk wal-get reads
#     the target and serves the segment.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env)"
source "$ROOT/tests/lib/repo_backend.sh"
SERVICES="$ROOT/scripts/services"
source "$ROOT/tests/lib/bk_bin.sh"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-tsreplay-test.XXXXXX")"
chmod 755 "$dir"
prefix="bkit-tsreplay-$$-$RANDOM"
bk_test_repo "$prefix"
shipper_pid=""
restored_port=$((PGPORT + 41))
restored="$dir/restored"
export PGOPTIONS="-c client_min_messages=warning"

psql_q() { psql -X -A -t -q -v ON_ERROR_STOP=1 "$@"; }
rpsql() { psql -X -A -t -q -h 127.0.0.1 -p "$restored_port" -U postgres "$@"; }
as_postgres() { runuser -u postgres -- "$@"; }
cleanup() {
    for d in "$dir/restored" "$dir/restored-lsn"; do
        [[ -f "$d/postmaster.pid" ]] && as_postgres "$BK_PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1
    done
    [[ -n "$shipper_pid" ]] && kill -KILL "$shipper_pid" 2>/dev/null
    psql_q -c "DROP TABLE IF EXISTS t_tsreplay" -c "DROP TABLESPACE IF EXISTS bk_tsreplay" >/dev/null 2>&1
    : >"$BK_PGDATA/bk_test.conf"
    "$SERVICES" restart pg >/dev/null 2>&1
    bk_test_repo_remove
    rm -rf "$dir"
}
trap cleanup EXIT

# ---- set up: keys, topics, shipper, PostgreSQL archiving through bk
bk_test_build
"$BK" keygen --out "$dir/bk.key" >/dev/null 2>&1
chgrp postgres "$dir/bk.key" && chmod 0640 "$dir/bk.key"
cat >"$dir/bk.conf" <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $prefix
repository = $repo
key_file = $dir/bk.key
shipper_id = tsreplay-$$
group_id = tsreplay-$$
$repo_conf
CONF
chmod 644 "$dir/bk.conf"
"$BK" init --config "$dir/bk.conf" >/dev/null
"$SHIPPER" --config "$dir/bk.conf" >>"$dir/shipper.log" 2>&1 &
shipper_pid=$!
cat >"$BK_PGDATA/bk_test.conf" <<CONF
shared_preload_libraries = 'bk'
archive_library = 'bk'
bk.kafka_brokers = '$BK_KAFKA_BROKERS'
bk.topic_prefix = '$prefix'
bk.key_file = '$dir/bk.key.pub'
CONF
"$SERVICES" restart pg >/dev/null
ok $? "PostgreSQL runs with bk preloaded and archiving through bk"
source_id="$(psql_q -c "SELECT system_identifier FROM pg_control_system()")"
psql_q -c "CREATE EXTENSION IF NOT EXISTS bk" >/dev/null

# ---- a full snapshot, then a tablespace and a table in it
out="$(psql_q -c "SELECT snapshot_id || ' ' || state FROM bk_snapshot('full', 'tablespace replay')" 2>&1)"
snap="${out%% *}"
like "$out" ' complete$' "a full snapshot completes ($snap)"
install -d -o postgres -m 700 "$dir/ts2"
psql_q <<SQL >/dev/null
CREATE TABLESPACE bk_tsreplay LOCATION '$dir/ts2';
CREATE TABLE t_tsreplay (id int PRIMARY KEY, v text NOT NULL) TABLESPACE bk_tsreplay;
INSERT INTO t_tsreplay SELECT g, md5(g::text) FROM generate_series(1, 1000) g;
VACUUM (FREEZE) t_tsreplay;
CHECKPOINT;
SQL
ok $? "after it: CREATE TABLESPACE at $dir/ts2, a table there with rows, frozen and checkpointed"
ts_oid="$(psql_q -c "SELECT oid FROM pg_tablespace WHERE spcname = 'bk_tsreplay'")"
rel="$(psql_q -c "SELECT pg_relation_filepath('t_tsreplay')")"
# pg_tblspc/<oid>/PG_15_<cat>/<db>/<file>: the same file under $dir/ts2.
source_file="$dir/ts2/${rel#pg_tblspc/$ts_oid/}"
test -f "$source_file"
ok $? "the source's relation file is $source_file"
before="$(md5sum <"$source_file")"

archived_now() {
    local seg last
    seg="$(psql_q -c "SELECT pg_walfile_name(pg_current_wal_lsn())")"
    psql_q -c "SELECT pg_switch_wal()" >/dev/null
    last="$(psql_q -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")"
    [[ -n "$last" && ! "$last" < "$seg" ]] && test -f "$repo_files/$source_id/wal/$seg"
}
wait_for 60 "WAL archived" archived_now
ok $? "the WAL with the CREATE TABLESPACE is archived"

# ---- restore the snapshot (target: the end of the archive) on this host
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$restored" \
    --snapshot "$snap" >"$dir/restore.log" 2>&1
ok $? "bk restore of the snapshot into a new directory on the source's host" ||
    diag "$(tail -n 10 "$dir/restore.log")"
echo "port = $restored_port" >>"$restored/postgresql.auto.conf"
install -o postgres -m 644 /dev/null "$dir/restored.log"
as_postgres "$BK_PGBIN/pg_ctl" -D "$restored" -l "$dir/restored.log" -w -t 60 start >/dev/null 2>&1
started=$?
if [[ $started == 0 ]]; then
    # What the fix prevents: once promoted, the restored cluster writes
    # into the source's file.
    promoted() { [[ "$(rpsql -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" == f ]]; }
    wait_for 60 "promotion" promoted
    rpsql -c "INSERT INTO t_tsreplay VALUES (-1, 'written by the restored cluster')" -c "CHECKPOINT" \
        >/dev/null 2>&1
    as_postgres "$BK_PGBIN/pg_ctl" -D "$restored" -m fast -w stop >/dev/null 2>&1
fi
isnt "$started" 0 "the restored cluster does not start: recovery stopped"
log="$(cat "$dir/restored.log")"
like "$log" "bk wal-get: error: WAL file \"[0-9A-F]{24}\" of source \"$source_id\" creates tablespace $ts_oid at \"$dir/ts2\"" \
    "its log names the segment, the tablespace's oid and LOCATION" || diag "$(tail -n 20 "$dir/restored.log")"
like "$log" "would link this cluster's pg_tblspc/$ts_oid to that directory and write into it" \
    "and says what replaying it would do"
like "$log" "Restore on a host where \"$dir/ts2\" does not exist" "and what to do"
like "$log" "exiting with 200 so that PostgreSQL stops recovery" "bk wal-get exited 200"
like "$log" "FATAL: .*could not restore file" "PostgreSQL stopped recovery (FATAL), it did not end it"
[[ "$(readlink "$restored/pg_tblspc/$ts_oid" 2>/dev/null)" != "$dir/ts2" ]]
ok $? "the restored cluster's pg_tblspc/$ts_oid does not link to the source's directory"
is "$(md5sum <"$source_file")" "$before" "the source's relation file is unchanged"

# ---- the segment by hand: refused in a directory whose pg_tblspc does not
# point there, served in one whose pg_tblspc does (an earlier replay's own)
segment="$(sed -n 's/.*bk wal-get: error: WAL file "\([0-9A-F]\{24\}\)".*/\1/p' "$dir/restored.log" | head -n 1)"
mkdir -p "$dir/scratch/pg_wal" "$dir/scratch/pg_tblspc"
(cd "$dir/scratch" && "$BK" wal-get --config "$dir/bk.conf" --source "$source_id" "$segment" pg_wal/RECOVERYXLOG) \
    >/dev/null 2>&1
is $? 200 "bk wal-get $segment by hand exits 200"
[[ ! -e "$dir/scratch/pg_wal/RECOVERYXLOG" ]]
ok $? "and leaves nothing at %p"
ln -s "$dir/ts2" "$dir/scratch/pg_tblspc/$((ts_oid + 1000))"
(cd "$dir/scratch" && "$BK" wal-get --config "$dir/bk.conf" --source "$source_id" "$segment" pg_wal/RECOVERYXLOG) \
    >/dev/null 2>&1
is $? 0 "served where one of the cluster's own pg_tblspc links points to the location"

# ---- the way out the message gives: a target just before the record
target_lsn="$(sed -n 's/.*restore again with --target-lsn \([0-9A-F]*\/[0-9A-F]*\) .*/\1/p' "$dir/restored.log")"
like "$target_lsn" '^[0-9A-F]+/[0-9A-F]+$' "the hint gives the LSN of the record before it ($target_lsn)"
restored="$dir/restored-lsn"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$restored" \
    --snapshot "$snap" --target-lsn "$target_lsn" >"$dir/restore-lsn.log" 2>&1
ok $? "bk restore with --target-lsn $target_lsn" || diag "$(tail -n 10 "$dir/restore-lsn.log")"
echo "port = $restored_port" >>"$restored/postgresql.auto.conf"
install -o postgres -m 644 /dev/null "$dir/restored-lsn.log"
as_postgres "$BK_PGBIN/pg_ctl" -D "$restored" -l "$dir/restored-lsn.log" -w -t 60 start >/dev/null 2>&1
ok $? "the restored cluster starts" || diag "$(tail -n 20 "$dir/restored-lsn.log")"
promoted() { [[ "$(rpsql -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" == f ]]; }
wait_for 60 "promotion" promoted
ok $? "recovery stops at the target, before the CREATE TABLESPACE, and promotes"
like "$(cat "$dir/restored-lsn.log")" "creates tablespace $ts_oid at \"$dir/ts2\" at LSN [0-9A-F/]+, past recovery_target_lsn $target_lsn: recovery stops before it" \
    "bk wal-get served the segment, the record lying past the target"
is "$(rpsql -c "SELECT count(*) FROM pg_tablespace WHERE spcname = 'bk_tsreplay'" 2>&1)" 0 \
    "the restored cluster has no such tablespace"
[[ ! -e "$restored/pg_tblspc/$ts_oid" ]]
ok $? "nor a pg_tblspc/$ts_oid"
as_postgres "$BK_PGBIN/pg_ctl" -D "$restored" -m fast -w stop >/dev/null 2>&1
is "$(md5sum <"$source_file")" "$before" "the source's relation file is still unchanged"
is "$(psql_q -c "SELECT count(*) FROM t_tsreplay")" 1000 "and the source reads its own rows"

done_testing
