#!/usr/bin/env bash
# Snapshots and point-in-time restore, end to end on the real servers:
#   - a workload runs while a full, an incremental and a differential
#     snapshot are taken (DDL during one of them);
#   - between them: a second tablespace, an unlogged table, TOASTed rows, a
#     second database, a database created with STRATEGY FILE_COPY, a table
#     truncated and one dropped between the full and the incremental;
#   - at a series of moments the test records a digest of every table;
#     restoring to each moment (by time, LSN, xid and restore point name)
#     gives exactly that digest;
#   - every restored cluster passes pg_verifybackup (before start),
#     pg_amcheck (running), pg_visibility's checks, index-only scans equal to
#     sequential scans, and pg_checksums (stopped); bk restore runs as root
#     and leaves a directory the postgres user starts and feeds through
#     bk wal-get;
#   - a cancelled snapshot and one killed mid-way are never restorable;
#   - bk_snapshot_cancel never signals a PID its worker has given up (a
#     kill() held back by strace while the worker exits);
#   - a cancel that comes once the record is sent is too late, and a
#     snapshot whose end the history could not record stops diff and incr
#     snapshots until a newer full;
#   - a symbolic link and a FIFO in the data directory are skipped with a
#     WARNING naming each;
#   - a tablespace path and file names that are not UTF-8 (Latin-1) are
#     verified and restored byte for byte;
#   - a page whose checksum fails in the source is kept as read; bk verify
#     notes it and bk restore warns, naming the page;
#   - one corrupted chunk in the repository makes bk verify and bk restore
#     fail naming the file; so does a missing range of a file sent in
#     ranges (bk.snapshot_range_size).
# With BK_TEST_BACKEND=s3 (snapshot_pitr_s3.t) the repository is a bucket of
# the real s3proxy: the same restores read it through range GETs.
#
# Exact moments under a concurrent workload: every workload transaction takes
# a shared advisory lock; a moment is recorded while holding it exclusively,
# so no commit can fall between the recorded target and the digest.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env)"
source "$ROOT/tests/lib/repo_backend.sh"
SERVICES="$ROOT/scripts/services"
source "$ROOT/tests/lib/bk_bin.sh"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-pitr-test.XXXXXX")"
chmod 755 "$dir"
prefix="bkit-pitr-$$-$RANDOM"
bk_test_repo "$prefix"
shipper_pid=""
workload_pid=""
restored_port=$((PGPORT + 21))

psql_q() { psql -X -A -t -q -v ON_ERROR_STOP=1 "$@"; }
as_postgres() { runuser -u postgres -- "$@"; }
rpsql() { psql -X -A -t -q -h 127.0.0.1 -p "$restored_port" -U postgres "$@"; }
stop_restored() {
    [[ -f "$1/postmaster.pid" ]] && as_postgres "$BK_PGBIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null 2>&1
}
cleanup() {
    [[ -n "$workload_pid" ]] && kill "$workload_pid" 2>/dev/null
    [[ -n "$shipper_pid" ]] && kill -KILL "$shipper_pid" 2>/dev/null
    for d in "$dir"/restored-*; do [[ -d "$d" ]] && stop_restored "$d"; done
    psql_q -c "DROP DATABASE IF EXISTS bk_pitr_db2" -c "DROP DATABASE IF EXISTS bk_pitr_db3" \
        -c "DROP DATABASE IF EXISTS bk_pitr_ascii" >/dev/null 2>&1
    psql_q -c "DROP TABLE IF EXISTS t_main, t_ts, t_toast, t_unlogged, t_trunc, t_drop, t_ddl, t_latin1, t_bad_page" \
        -c "DROP TABLESPACE IF EXISTS bk_pitr_ts" -c "DROP TABLESPACE IF EXISTS bk_pitr_latin1" \
        -c "DROP EXTENSION IF EXISTS bk" -c "DROP FUNCTION IF EXISTS bk_test_hold, bk_test_fail" >/dev/null 2>&1
    : >"$BK_PGDATA/bk_test.conf"
    rm -rf "$BK_PGDATA/.bk_dotdir" "$BK_PGDATA/.bk_dotfile" "$BK_PGDATA/bk_vanishing.log" \
        "$BK_PGDATA/bk_long_path" "$BK_PGDATA/bk_pitr_link" "$BK_PGDATA/bk_pitr_fifo" \
        "$BK_PGDATA/bk_dir_"$'caf\xe9'
    "$SERVICES" restart pg >/dev/null 2>&1
    bk_test_repo_remove
    rm -rf "$dir"
}
trap cleanup EXIT

# ---- set up: bk installed and configured, topics, shipper, PostgreSQL
bk_test_build
"$BK" keygen --out "$dir/bk.key" >/dev/null 2>&1
# Root's, readable by restore_command, which runs as postgres (README).
chgrp postgres "$dir/bk.key" && chmod 0640 "$dir/bk.key"
cat >"$dir/bk.conf" <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $prefix
repository = $repo
key_file = $dir/bk.key
shipper_id = pitr-$$
group_id = pitr-$$
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
psql_q -c "CREATE EXTENSION IF NOT EXISTS bk" -c "CREATE EXTENSION IF NOT EXISTS pg_visibility" >/dev/null

# ---- the database: a tablespace, TOAST, unlogged, indexes, a second database
install -d -o postgres -m 700 "$dir/ts1"
psql_q <<SQL >/dev/null
CREATE TABLESPACE bk_pitr_ts LOCATION '$dir/ts1';
CREATE TABLE t_main (id bigserial PRIMARY KEY, v text NOT NULL, n int NOT NULL DEFAULT 0);
CREATE INDEX t_main_n ON t_main (n, id);
CREATE TABLE t_ts (id int PRIMARY KEY, v bigint NOT NULL) TABLESPACE bk_pitr_ts;
CREATE TABLE t_toast (id bigserial PRIMARY KEY, v text NOT NULL);
CREATE UNLOGGED TABLE t_unlogged (id int, v text);
CREATE TABLE t_trunc (id int, v text);
CREATE TABLE t_drop (id int, v text);
INSERT INTO t_main (v, n) SELECT md5(g::text), g % 100 FROM generate_series(1, 200000) g;
INSERT INTO t_ts SELECT g, g FROM generate_series(1, 1000) g;
INSERT INTO t_toast (v) SELECT repeat(md5(g::text), 300) FROM generate_series(1, 300) g;
INSERT INTO t_unlogged SELECT g, md5(g::text) FROM generate_series(1, 1000) g;
INSERT INTO t_trunc SELECT g, md5(g::text) FROM generate_series(1, 5000) g;
INSERT INTO t_drop SELECT g, md5(g::text) FROM generate_series(1, 5000) g;
VACUUM (FREEZE, ANALYZE);
CREATE DATABASE bk_pitr_db2;
SQL
psql_q -d bk_pitr_db2 -c "CREATE TABLE d2 AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g" >/dev/null
ok $? "schema: tablespace, TOAST, unlogged, second database"
# Names that start with a dot (an editor's swap file, a .git directory):
# repositories keep such names for themselves, so object names encode the dot.
install -d -o postgres -m 700 "$BK_PGDATA/.bk_dotdir"
as_postgres sh -c "echo inner >'$BK_PGDATA/.bk_dotdir/.inner' && echo top >'$BK_PGDATA/.bk_dotfile'"
# A symbolic link and a FIFO, which no snapshot holds (pg_basebackup skips
# them too): the full snapshot says so in the server log, naming each.
# Removed once it has (other tests share this cluster).
as_postgres sh -c "ln -s /nonexistent '$BK_PGDATA/bk_pitr_link' && mkfifo '$BK_PGDATA/bk_pitr_fifo'"

# ---- digests of every table of every database we restore
DIGEST_SQL="SELECT string_agg(t.relname || ':' || (xpath('/row/d/text()',
    query_to_xml(format('SELECT md5(coalesce(string_agg(x::text, %L ORDER BY x::text), %L)) AS d FROM %I.%I x',
                        '|', '', t.nspname, t.relname), false, true, '')))[1]::text, ' ' ORDER BY t.relname)
FROM (SELECT c.relname, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND n.nspname = 'public' AND c.relpersistence = 'p') t"
digest_all() { # digest of every database, using the psql command given
    local run="$1" db
    for db in postgres bk_pitr_db2 bk_pitr_db3; do
        if [[ "$($run -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$db'")" == 1 ]]; then
            echo "$db=$($run -d "$db" -c "$DIGEST_SQL")"
        fi
    done
}

# The workload: small transactions under a shared advisory lock.
cat >"$dir/workload.sql" <<'SQL'
\set id random(1, 1000)
BEGIN;
SELECT pg_advisory_xact_lock_shared(4242);
INSERT INTO t_main (v, n) VALUES (md5(random()::text), :id % 100);
UPDATE t_ts SET v = v + 1 WHERE id = :id;
INSERT INTO t_toast (v) SELECT repeat(md5(random()::text), 300) WHERE random() < 0.05;
END;
SQL
pgbench -n -T 600 -c 2 -R 40 -f "$dir/workload.sql" >"$dir/workload.out" 2>&1 &
workload_pid=$!

# Record a moment: hold the lock exclusively, note time and LSN, and take the
# digest of the main database in the same locked session, so the moment's
# state cannot change in between. The other databases have no workload.
declare -A M_TIME M_LSN M_DIGEST M_EXTRA
moment_with_digest() {
    local name="$1" extra="${2:-}"
    local out db
    out="$(psql -X -A -t -q -v ON_ERROR_STOP=1 <<SQL
SELECT pg_advisory_lock(4242);
$extra
SELECT 'TIME=' || clock_timestamp();
SELECT 'LSN=' || pg_current_wal_lsn();
SELECT 'DIGEST=' || ($DIGEST_SQL);
SELECT pg_advisory_unlock(4242);
SQL
)"
    M_TIME[$name]="$(sed -n 's/^TIME=//p' <<<"$out")"
    M_LSN[$name]="$(sed -n 's/^LSN=//p' <<<"$out")"
    M_EXTRA[$name]="$(sed -n 's/^EXTRA=//p' <<<"$out")"
    # the main database under the lock; the others have no workload
    M_DIGEST[$name]="postgres=$(sed -n 's/^DIGEST=//p' <<<"$out")"
    for db in bk_pitr_db2 bk_pitr_db3; do
        if [[ "$(psql_q -c "SELECT count(*) FROM pg_database WHERE datname = '$db'")" == 1 ]]; then
            M_DIGEST[$name]+=$'\n'"$db=$(psql_q -d "$db" -c "$DIGEST_SQL")"
        fi
    done
}
wait_snapshot() {
    local id="$1" state
    for _ in $(seq 1 600); do
        state="$(psql_q -c "SELECT state FROM bk_snapshot_progress WHERE snapshot_id = '$id'")"
        [[ "$state" == complete || "$state" == failed || "$state" == cancelled ]] && { echo "$state"; return; }
        sleep 0.2
    done
    echo timeout
}

sleep 2
moment_with_digest m0

# ---- full snapshot, with DDL while it runs
# The full snapshot is copied by two processes, the incremental by three.
# Files above bk.snapshot_range_size go in ranges, read by several
# processes at once: 1 MB ranges for the full, 1.5 MB for the incremental
# (whose ranges then straddle its parent's: the page digests of one range
# come from two of the parent's), none for the differential (whole files
# patched over a parent sent in ranges).
full="$(psql_q -c "SET bk.snapshot_jobs = 2" -c "SET bk.snapshot_range_size = '1MB'" \
    -c "SELECT snapshot_id FROM bk_snapshot(label => 'pitr full', wait => false)")"
like "$full" '^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$' "full snapshot started: $full"
psql_q -c "CREATE TABLE t_ddl AS SELECT g AS id FROM generate_series(1, 1000) g" \
    -c "ALTER TABLE t_main ADD COLUMN tag text DEFAULT 'x'" >/dev/null
ok $? "DDL while the snapshot runs"
is "$(wait_snapshot "$full")" complete "the full snapshot completes"
grep -qF "WARNING:  bk: snapshot $full skips \"bk_pitr_fifo\": not a regular file" \
    "$(dirname "$BK_PGDATA")/postgresql.log"
ok $? "the full snapshot warns that it skips the FIFO"
grep -qF "WARNING:  bk: snapshot $full skips \"bk_pitr_link\": a symbolic link" \
    "$(dirname "$BK_PGDATA")/postgresql.log"
ok $? "... and the symbolic link"
rm -f "$BK_PGDATA/bk_pitr_link" "$BK_PGDATA/bk_pitr_fifo"
like "$(cat "$(dirname "$BK_PGDATA")/postgresql.log")" "snapshot $full copies [0-9]+ files with 2 processes" \
    "two processes copied it (bk.snapshot_jobs = 2)"
pieces="$(sed -n "s/.*snapshot $full copies \([0-9]*\) files with 2 processes, in \([0-9]*\) pieces.*/\1 \2/p" \
    "$(dirname "$BK_PGDATA")/postgresql.log")"
files_n="${pieces% *}"
pieces_n="${pieces#* }"
ok "$([[ -n "$files_n" && "$pieces_n" -gt "$files_n" ]]; echo $?)" \
    "large files were split into ranges ($files_n files in $pieces_n pieces)"
t_main_file="$(psql_q -c "SELECT pg_relation_filepath('t_main')")"
wait_for 60 "t_main's ranges archived" test -f "$repo_files/$source_id/snapshot/$full/range/$t_main_file/1048576"
ok $? "t_main's heap is archived as 1 MB ranges (range/$t_main_file/1048576)"
[[ ! -e "$repo_files/$source_id/snapshot/$full/data/$t_main_file" ]]
ok $? "and not as one object"
moment_with_digest m1

# ---- between full and incremental: truncate, drop, FILE_COPY database
psql_q -c "TRUNCATE t_trunc" -c "DROP TABLE t_drop" \
    -c "INSERT INTO t_unlogged SELECT g, 'later' FROM generate_series(1, 10) g" >/dev/null
psql_q -c "CREATE DATABASE bk_pitr_db3 TEMPLATE bk_pitr_db2 STRATEGY FILE_COPY" >/dev/null
ok $? "a table truncated, one dropped, a database created with STRATEGY FILE_COPY"
psql_q -d bk_pitr_db3 -c "UPDATE d2 SET v = 'db3' WHERE id <= 10" >/dev/null
moment_with_digest m2

out="$(psql_q -c "SET bk.snapshot_jobs = 3" -c "SET bk.snapshot_range_size = '1536kB'" \
    -c "SELECT snapshot_id || ' ' || parent_id || ' ' || state FROM bk_snapshot('incr', 'pitr incr')")"
incr="${out%% *}"
like "$out" "^[^ ]+ $full complete$" "the incremental snapshot builds on the full one"
like "$(cat "$(dirname "$BK_PGDATA")/postgresql.log")" "snapshot $incr copies [0-9]+ files with 3 processes" \
    "three processes copied it (bk.snapshot_jobs = 3)"
moment_with_digest m3

psql_q -c "UPDATE t_main SET n = n + 1 WHERE id % 7 = 0" -c "VACUUM t_main" >/dev/null
out="$(psql_q -c "SET bk.snapshot_range_size = 0" \
    -c "SELECT snapshot_id || ' ' || parent_id || ' ' || state FROM bk_snapshot('diff', 'pitr diff')")"
diff_id="${out%% *}"
like "$out" "^[^ ]+ $full complete$" "the differential snapshot builds on the full one"
moment_with_digest m4

# Targets the catalog cannot place in time: an xid, a restore point.
moment_with_digest m_xid "BEGIN; INSERT INTO t_main (v) VALUES ('the xid target'); SELECT 'EXTRA=' || txid_current(); COMMIT;"
xid="${M_EXTRA[m_xid]}"
like "$xid" '^[0-9]+$' "a committed transaction's xid ($xid)"
moment_with_digest m_name "SELECT pg_create_restore_point('bk_pitr_point');"
moment_with_digest m_end

# Everything archived: switch until the current segment is archived.
archived_now() {
    local seg last
    seg="$(psql_q -c "SELECT pg_walfile_name(pg_current_wal_lsn())")"
    psql_q -c "SELECT pg_switch_wal()" >/dev/null
    last="$(psql_q -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")"
    [[ -n "$last" && ! "$last" < "$seg" ]] && test -f "$repo_files/$source_id/wal/$seg"
}
wait_for 120 "WAL through the end archived" archived_now
ok $? "the WAL through the last moment is archived"
kill "$workload_pid" 2>/dev/null
wait "$workload_pid" 2>/dev/null
workload_pid=""

out="$("$BK" list --config "$dir/bk.conf" --source "$source_id" 2>&1)"
like "$out" "$full" "bk list shows the full snapshot"
like "$out" "$incr" "and the incremental one"

# ---- restore to each moment and compare
restore_and_check() {
    local name="$1" target_desc="$2"
    shift 2
    local target="$dir/restored-$name" got
    rm -rf "$target"
    "$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$target" \
        --tablespace-map "$dir/ts1=$dir/ts1-$name" "$@" >"$dir/restore-$name.log" 2>&1
    if ! ok $? "restore to $target_desc"; then
        diag "$(tail -n 20 "$dir/restore-$name.log")"
        return 1
    fi
    is "$(stat -c %U "$target")" postgres "the restored directory belongs to postgres ($name)"
    as_postgres "$BK_PGBIN/pg_verifybackup" --no-parse-wal "$target" >"$dir/verify-$name.log" 2>&1
    ok $? "pg_verifybackup accepts the restored directory ($name)" || diag "$(tail -n 5 "$dir/verify-$name.log")"
    cat >>"$target/postgresql.auto.conf" <<CONF
port = $restored_port
CONF
    # What an earlier point-in-time recovery of the source may leave in its
    # postgresql.conf: PostgreSQL ignores it out of recovery, and bk's
    # settings must override it (else recovery stops there, or refuses two
    # targets).
    cat >>"$target/postgresql.conf" <<CONF
recovery_target_name = 'bk_test_stale_target'
recovery_target_inclusive = off
recovery_min_apply_delay = '1d'
CONF
    install -o postgres -m 644 /dev/null "$dir/restored-$name.log"
    as_postgres "$BK_PGBIN/pg_ctl" -D "$target" -l "$dir/restored-$name.log" -w -t 300 start >/dev/null 2>&1
    ok $? "the restored cluster starts as postgres and recovers ($name)" || {
        diag "$(tail -n 20 "$dir/restored-$name.log")"
        return 1
    }
    promoted() { [[ "$(rpsql -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" == f ]]; }
    wait_for 300 "promotion" promoted
    ok $? "recovery reached the target and promoted ($name)"
    got="$(digest_all rpsql)"
    is "$got" "${M_DIGEST[$name]}" "every table is exactly as it was at $target_desc"
    like "$(cat "$dir/restored-$name.log")" 'restored log file "[0-9A-F]{24}" from archive' \
        "the restored cluster fetched WAL through bk wal-get ($name)"
    as_postgres "$BK_PGBIN/pg_amcheck" -h 127.0.0.1 -p "$restored_port" -U postgres --all \
        --install-missing --heapallindexed >"$dir/amcheck-$name.log" 2>&1
    ok $? "pg_amcheck --all finds nothing ($name)" || diag "$(tail -n 5 "$dir/amcheck-$name.log")"
    is "$(rpsql -c "SELECT count(*) FROM pg_check_visible('t_main')")|$(rpsql -c "SELECT count(*) FROM pg_check_frozen('t_main')")" \
        "0|0" "pg_check_visible() and pg_check_frozen() report nothing ($name)"
    is "$(rpsql -c "SET enable_seqscan = off; SET enable_bitmapscan = off; SELECT md5(string_agg(n::text || ',' || id, '|' ORDER BY n, id)) FROM t_main WHERE n < 50")" \
        "$(rpsql -c "SET enable_indexscan = off; SET enable_indexonlyscan = off; SET enable_bitmapscan = off; SELECT md5(string_agg(n::text || ',' || id, '|' ORDER BY n, id)) FROM t_main WHERE n < 50")" \
        "index-only scans return the same rows as sequential scans ($name)"
    is "$(rpsql -c "SELECT count(*) FROM t_unlogged")" "0" "the unlogged table comes back empty ($name)"
    stop_restored "$target"
    as_postgres "$BK_PGBIN/pg_checksums" --check -D "$target" >"$dir/checksums-$name.log" 2>&1
    ok $? "pg_checksums --check passes on the stopped cluster ($name)" || diag "$(tail -n 5 "$dir/checksums-$name.log")"
    rm -rf "$target" "$dir/ts1-$name"
}

restore_and_check m1 "the time after the full snapshot (${M_TIME[m1]})" --target-time "${M_TIME[m1]}"
restore_and_check m2 "the LSN after truncate/drop/FILE_COPY (${M_LSN[m2]})" --target-lsn "${M_LSN[m2]}"
restore_and_check m3 "the time after the incremental snapshot" --target-time "${M_TIME[m3]}"
restore_and_check m4 "the time after the differential snapshot" --target-time "${M_TIME[m4]}"
restore_and_check m_xid "transaction $xid" --target-xid "$xid"
restore_and_check m_name "restore point bk_pitr_point" --target-name bk_pitr_point
restore_and_check m_end "the end of the archive (LSN ${M_LSN[m_end]})" --target-lsn "${M_LSN[m_end]}"

# ---- the full snapshot's files in ranges: listed in the restored
# manifest with their CRC-32C, and with --delta compared range by range
# (one changed byte: only that file)
delta_dir="$dir/restored-delta"
delta_restore() {
    "$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$delta_dir" \
        --tablespace-map "$dir/ts1=$dir/ts1-delta" --snapshot "$full" --target immediate "$@"
}
delta_restore --jobs 3 >"$dir/delta-1.log" 2>&1
ok $? "the full snapshot restores with 3 threads" || diag "$(tail -n 5 "$dir/delta-1.log")"
as_postgres "$BK_PGBIN/pg_verifybackup" --no-parse-wal "$delta_dir" >"$dir/verify-delta.log" 2>&1
ok $? "pg_verifybackup accepts it (CRC-32C of the files sent in ranges)" || diag "$(tail -n 5 "$dir/verify-delta.log")"
like "$(grep -c '"Checksum-Algorithm": "CRC32C"' "$delta_dir/backup_manifest")" '^[1-9][0-9]*$' \
    "the manifest gives those files' CRC-32C"
[[ -e "$repo_files/$source_id/snapshot/$full/data/%2Ebk_dotdir/%2Einner" ]]
ok $? "a file under a directory whose name starts with a dot is archived as data/%2Ebk_dotdir/%2Einner"
is "$(cat "$delta_dir/.bk_dotdir/.inner" "$delta_dir/.bk_dotfile" 2>&1 | tr '\n' ' ')" "inner top " \
    "files whose names start with a dot are restored"
want="$(sha256sum <"$delta_dir/$t_main_file")"
printf 'X' | dd of="$delta_dir/$t_main_file" bs=1 seek=1048600 conv=notrunc status=none
# Unmapped, the tablespace's location is the source's own, in use: --delta
# must not rewrite it (it would remove what the snapshot does not have).
ts_before="$(find "$dir/ts1" -type f | sort | xargs sha256sum | sha256sum)"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$delta_dir" \
    --snapshot "$full" --target immediate --delta 2>&1)"
isnt $? 0 "--delta without --tablespace-map is refused: the location is the source's tablespace"
like "$out" "--delta would rewrite the location \"$dir/ts1\" of tablespace [0-9]+, which --pgdata does not link to" \
    "saying which location and why" || diag "$out"
is "$(find "$dir/ts1" -type f | sort | xargs sha256sum | sha256sum)" "$ts_before" \
    "the source's tablespace is untouched"
# Another server's directory in the location (pg_upgrade leaves the old one).
mkdir -p "$dir/ts1-delta/PG_14_202107181/16384"
echo other >"$dir/ts1-delta/PG_14_202107181/16384/1259"
delta_restore --delta --json >"$dir/delta-2.json" 2>"$dir/delta-2.log"
ok $? "--delta over it" || diag "$(tail -n 5 "$dir/delta-2.log")"
is "$(cat "$dir/ts1-delta/PG_14_202107181/16384/1259" 2>&1)" other \
    "another server's directory in the tablespace's location is left alone"
# Written again: that file, pg_control (always) and postgresql.auto.conf
# (the restore rewrote it with its recovery settings).
is "$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["files_written"], d["files_unchanged"] > 0)' "$dir/delta-2.json")" \
    "3 True" "--delta rewrote only the file with a changed range (and the two it always writes)"
is "$(sha256sum <"$delta_dir/$t_main_file")" "$want" "and it is back as the snapshot read it"
rm -rf "$delta_dir" "$dir/ts1-delta"

# The damage to the repository comes while it holds the three snapshots
# above and little else: each bk verify reads every snapshot of the
# source, and the later sections add a dozen more.
# ---- one corrupted chunk (of a range): verify and restore fail, naming the file
victim="$(find "$repo_files/$source_id/snapshot/$full/range/base" -type f -size +100k | head -n 1)"
victim_rel="${victim#"$repo_files/$source_id/snapshot/$full/range/"}"
victim_rel="${victim_rel%/*}"
"$ROOT/tests/lib/tamper_frame.py" "$victim"
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
is $? 4 "bk verify fails on a corrupted chunk"
like "$out" "$victim_rel" "naming the file ($victim_rel)"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/restored-corrupt" \
    --tablespace-map "$dir/ts1=$dir/ts1-corrupt" --target-time "${M_TIME[m1]}" 2>&1)"
is $? 4 "bk restore fails on it too"
like "$out" "$victim_rel" "naming the file"
[[ ! -e "$dir/restored-corrupt/backup_label" ]]
ok $? "and leaves nothing that could start"

# ---- one range of a file missing: the snapshot is incomplete, verify names it
gone="$repo_files/$source_id/snapshot/$full/range/$t_main_file/1048576"
mv "$gone" "$dir/gone-range"
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
is $? 4 "bk verify fails when a range object is missing"
like "$out" "file \"$t_main_file\": the object of its range at 1048576 is missing" \
    "naming the file and the range"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/restored-gone" \
    --snapshot "$full" --target immediate 2>&1)"
isnt $? 0 "bk restore refuses the snapshot that lacks it"
[[ ! -e "$dir/restored-gone/backup_label" ]]
ok $? "and leaves nothing that could start"
mv "$dir/gone-range" "$gone"

# ---- with the key, verify reads each object once, decrypting it: what only
# the keyless checks would see must still be found.  A frame whose CRC-32C
# alone is damaged (its tag still holds), and an object the record does not
# name (a copy of another under a new name), in the incremental snapshot
crc_victim="$(find "$repo_files/$source_id/snapshot/$incr/data" -type f | head -n 1)"
crc_victim_name="${crc_victim#"$repo_files/$source_id/snapshot/"}"
"$ROOT/tests/lib/tamper_frame.py" --crc-only "$crc_victim"
cp "$crc_victim" "$dir/stray-copy"
"$ROOT/tests/lib/tamper_frame.py" --crc-only "$dir/stray-copy"
cp "$dir/stray-copy" "$repo_files/$source_id/snapshot/$incr/data/bk_stray_object"
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" --jobs 1 2>&1)"
is $? 4 "bk verify fails on a frame whose CRC alone is damaged"
like "$out" "PROBLEM $crc_victim_name: .*frame checksum mismatch" \
    "naming the object and the checksum" || diag "$(grep -F "$incr" <<<"$out" | tail -n 5)"
is "$(grep -c "PROBLEM $crc_victim_name:" <<<"$out")" 1 "once"
like "$out" "PROBLEM $incr/data/bk_stray_object: .* not the one its name says" \
    "and checks an object the snapshot's record does not name"
like "$out" "snapshot $incr: [0-9]+ objects checked and decrypted, [0-9]+ files rebuilt(, [0-9]+ unchanged since snapshot $full \\(checked there\\))?: PROBLEMS FOUND" \
    "and says the snapshot has problems"
# The same findings whatever the number of threads (each object's problem
# is one line; their order is not fixed).
out4="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" --jobs 4 2>&1)"
is $? 4 "bk verify --jobs 4 fails too"
is "$(sort <<<"$out4")" "$(sort <<<"$out")" "and reports exactly what --jobs 1 does"
"$ROOT/tests/lib/tamper_frame.py" --crc-only "$crc_victim"
rm -f "$repo_files/$source_id/snapshot/$incr/data/bk_stray_object"

# A damaged object of a relation file the incremental changed (it existed
# in the full, so only its changed blocks were sent): the file's rebuild
# fails on it, and it is reported once all the same.
snap_root="$repo_files/$source_id/snapshot"
incr_victim=""
while read -r f; do
    rel="${f#"$snap_root/$incr/"}"
    path="${rel#*/}"
    [[ "$rel" == range/* ]] && path="${path%/*}"
    # A relation's file (other files are always sent whole).
    [[ "$path" =~ ^base/[0-9]+/[0-9]+(\.[0-9]+)?$ ]] || continue
    if [[ -e "$snap_root/$full/data/$path" || -d "$snap_root/$full/range/$path" ]]; then
        incr_victim="$f"
        break
    fi
done < <(find "$snap_root/$incr/data" "$snap_root/$incr/range" -type f 2>/dev/null | sort)
isnt "$incr_victim" "" "the incremental holds changed blocks of a relation file the full snapshot had (${incr_victim#"$snap_root/"})"
incr_victim_name="${incr_victim#"$snap_root/"}"
"$ROOT/tests/lib/tamper_frame.py" --crc-only "$incr_victim"
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
is $? 4 "bk verify fails on it"
is "$(grep -c "PROBLEM $incr_victim_name: .*frame checksum mismatch" <<<"$out")" 1 \
    "naming it and the checksum, once" || diag "$(grep -F "$incr" <<<"$out" | tail -n 5)"
"$ROOT/tests/lib/tamper_frame.py" --crc-only "$incr_victim"

# ---- a file the incremental did not change is checked once, in the full
# snapshot; but when the full's copy is damaged, the incremental's (rebuilt
# from it) cannot be counted as checked there, and is reported too
am_file="$(psql_q -c "SELECT pg_relation_filepath('pg_am')")"
am_object="$repo_files/$source_id/snapshot/$full/data/$am_file"
"$ROOT/tests/lib/tamper_frame.py" "$am_object"
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
is $? 4 "bk verify fails on the full snapshot's damaged copy of pg_am"
like "$out" "PROBLEM $full/data/$am_file: " "naming the full snapshot's object" ||
    diag "$(grep -F "$am_file" <<<"$out" | tail -n 5)"
like "$out" "PROBLEM $incr/data/$am_file: snapshot $full, file \"$am_file\"" \
    "and the incremental's unchanged copy, which rebuilds from it"
is "$(grep -c "PROBLEM $full/data/$am_file:" <<<"$out")" 1 "the damaged object is reported once"
"$ROOT/tests/lib/tamper_frame.py" "$am_object" # the same flip again: undone
"$ROOT/tests/lib/tamper_frame.py" "$victim" # the chunk corrupted first: undone too, so the
# later sections' verify and restores read an intact full snapshot

# A target before the first snapshot cannot be served.
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/restored-early" \
    --target-time "${M_TIME[m0]}" 2>&1)"
isnt $? 0 "a target before the oldest snapshot is refused"
like "$out" 'snapshot' "saying no snapshot fits it"
[[ ! -e "$dir/restored-early/backup_label" ]]
ok $? "and leaves nothing that could start"

# ---- a cancelled snapshot and a killed one are never restorable
cancelled="$(psql_q -c "SET bk.snapshot_jobs = 2" -c "SELECT snapshot_id FROM bk_snapshot(wait => false)")"
psql_q -c "SELECT bk_snapshot_cancel('$cancelled')" >/dev/null
is "$(wait_snapshot "$cancelled")" cancelled "a snapshot is cancelled"
like "$(grep "snapshot $cancelled cancelled" -A3 "$(dirname "$BK_PGDATA")/postgresql.log")" \
    'Backup mode has ended' "and backup mode ends"
# start_frozen: a snapshot copied by two processes, with its helper frozen
# (SIGSTOP) as soon as it shows, so the snapshot cannot finish before the
# test acts on it.  Sets FROZEN_ID and FROZEN_HELPER; fails if every attempt
# finished its share before it could be frozen.
start_frozen() {
    local attempt
    for attempt in 1 2 3; do
        FROZEN_ID="$(psql_q -c "SET bk.snapshot_jobs = 2" -c "SELECT snapshot_id FROM bk_snapshot(wait => false)")"
        FROZEN_HELPER=""
        for _ in $(seq 1 250); do
            FROZEN_HELPER="$(psql_q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'bk snapshot helper'")"
            [[ -n "$FROZEN_HELPER" ]] && break
            sleep 0.02
        done
        [[ -n "$FROZEN_HELPER" ]] && kill -STOP "$FROZEN_HELPER"
        [[ -n "$FROZEN_HELPER" && "$(psql_q -c "SELECT state FROM bk_snapshot_progress WHERE snapshot_id = '$FROZEN_ID'")" == running ]] &&
            return 0
        [[ -n "$FROZEN_HELPER" ]] && kill -CONT "$FROZEN_HELPER"
        wait_snapshot "$FROZEN_ID" >/dev/null
        diag "attempt $attempt: the snapshot finished before its helper could be frozen"
    done
    return 1
}
helpers_gone() { [[ "$(psql_q -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'bk snapshot helper'")" == 0 ]]; }

# A helper that dies fails the snapshot.
helper_failed=""
if start_frozen; then
    kill -TERM "$FROZEN_HELPER"
    kill -CONT "$FROZEN_HELPER"
    helper_failed="$FROZEN_ID"
fi
if ok "$([[ -n "$helper_failed" ]]; echo $?)" "a snapshot helper is stopped mid-way"; then
    is "$(wait_snapshot "$helper_failed")" failed "the snapshot fails"
    like "$(psql_q -c "SELECT error FROM bk_snapshot_progress WHERE snapshot_id = '$helper_failed'")" \
        'helper 1 of snapshot' "saying its helper failed"
    like "$(grep "snapshot $helper_failed failed" -A3 "$(dirname "$BK_PGDATA")/postgresql.log")" \
        'Backup mode has ended' "and backup mode ends"
fi

# A worker terminated mid-way: its helper stops too, the snapshot is failed,
# and the next one can start.  The copy loop turns the termination into an
# error it handles; a FATAL anywhere else is caught by snap_stop_on_exit.
terminated=""
if start_frozen; then
    psql_q -c "SELECT pg_terminate_backend(pid) FROM bk_snapshot_progress WHERE snapshot_id = '$FROZEN_ID'" >/dev/null
    kill -CONT "$FROZEN_HELPER"
    terminated="$FROZEN_ID"
fi
if ok "$([[ -n "$terminated" ]]; echo $?)" "a snapshot worker is terminated mid-way"; then
    is "$(wait_snapshot "$terminated")" failed "the snapshot is failed"
    like "$(psql_q -c "SELECT error FROM bk_snapshot_progress WHERE snapshot_id = '$terminated'")" \
        'interrupted|worker exited before it finished' "saying it was interrupted"
    wait_for 60 "the helper to stop" helpers_gone
    ok $? "its helper stops with it"
fi

# A failure that comes before a cancel takes effect is the outcome, not
# "cancelled": the helper is terminated (a failure) while the worker is
# frozen, then the snapshot is cancelled, then the worker goes on and meets
# the cancel first.
raced=""
if start_frozen; then
    wpid="$(psql_q -c "SELECT pid FROM bk_snapshot_progress WHERE snapshot_id = '$FROZEN_ID'")"
    kill -STOP "$wpid"
    kill -TERM "$FROZEN_HELPER"
    kill -CONT "$FROZEN_HELPER"
    wait_for 60 "the helper to stop" helpers_gone
    is "$(psql_q -c "SELECT bk_snapshot_cancel('$FROZEN_ID')")" t "the snapshot is cancelled after its helper failed"
    kill -CONT "$wpid"
    raced="$FROZEN_ID"
fi
if ok "$([[ -n "$raced" ]]; echo $?)" "a helper fails, then its snapshot is cancelled"; then
    is "$(wait_snapshot "$raced")" failed "the snapshot is failed, not cancelled"
    like "$(psql_q -c "SELECT error FROM bk_snapshot_progress WHERE snapshot_id = '$raced'")" \
        'helper 1 of snapshot' "naming the helper's failure"
    is "$(psql_q -c "SELECT state FROM bk_snapshot_history WHERE snapshot_id = '$raced'")" failed \
        "and so does its history"
fi

# bk_snapshot_cancel never signals a PID the worker no longer has.  The
# canceller's kill() is held back 5 s (strace) while the worker is
# terminated: the worker must not be able to exit (and free its PID) before
# the signal is sent.  Once it is gone, a process started on its PID
# (ns_last_pid) must not get the SIGINT.  Without the lock the worker exits
# at once, and the delayed kill() hits the new process.
cancel_race=""
if start_frozen; then
    wpid="$(psql_q -c "SELECT pid FROM bk_snapshot_progress WHERE snapshot_id = '$FROZEN_ID'")"
    PGAPPNAME=bk_cancel_race psql_q -c "SELECT pg_sleep(2)" -c "SELECT bk_snapshot_cancel('$FROZEN_ID')" \
        >"$dir/cancel-race.out" 2>&1 &
    canceller=$!
    cpid=""
    for _ in $(seq 1 100); do
        cpid="$(psql_q -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'bk_cancel_race'")"
        [[ -n "$cpid" ]] && break
        sleep 0.02
    done
    strace -qq -p "$cpid" -e trace=kill -e inject=kill:delay_enter=5000000 -o "$dir/cancel-race.strace" &
    tracer=$!
    calling() { [[ "$(psql_q -c "SELECT query FROM pg_stat_activity WHERE pid = $cpid")" == *bk_snapshot_cancel* ]]; }
    wait_for 30 "the canceller to call bk_snapshot_cancel" calling
    sleep 0.5 # it reaches kill() at once, and stays there 5 s
    psql_q -c "SELECT pg_terminate_backend($wpid)" >/dev/null
    kill -CONT "$FROZEN_HELPER"
    worker_gone() { ! kill -0 "$wpid" 2>/dev/null; }
    wait_for 60 "worker $wpid to exit" worker_gone
    # A process on the worker's PID, which says if SIGINT reaches it.
    echo $((wpid - 1)) >/proc/sys/kernel/ns_last_pid
    perl -e '$SIG{INT} = sub { open(my $f, ">", $ARGV[0]); print $f "SIGINT\n"; exit 1 }; sleep 30' \
        "$dir/reused-pid.sig" &
    sleeper=$!
    wait "$canceller"
    sleep 0.5
    kill "$tracer" 2>/dev/null
    if [[ "$sleeper" == "$wpid" ]]; then
        cancel_race="$FROZEN_ID"
    else
        diag "another process took PID $wpid first (the new one is $sleeper)"
    fi
    like "$(cat "$dir/cancel-race.strace")" "kill\\($wpid, SIGINT\\) += 0 \\(DELAYED\\)" \
        "the canceller's kill() of worker $wpid was held back"
    kill "$sleeper" 2>/dev/null
    wait "$sleeper" 2>/dev/null
    like "$(wait_snapshot "$FROZEN_ID")" '^(cancelled|failed)$' "the snapshot ends, cancelled or failed"
fi
if [[ -n "$cancel_race" ]]; then
    [[ ! -e "$dir/reused-pid.sig" ]]
    ok $? "bk_snapshot_cancel's SIGINT reached the worker, not the process that later got its PID"
else
    skip "bk_snapshot_cancel's SIGINT reached the worker, not the process that later got its PID" \
        "no frozen snapshot, or the worker's PID went to another process first"
fi

killed="$(psql_q -c "SELECT snapshot_id FROM bk_snapshot(wait => false)")"
like "$killed" '^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$' "the next snapshot starts: $killed"
# Killed once its history row is there: the slot says "running" a moment
# before the worker commits the row (what is checked here is that a row left
# "running" is failed; a worker killed before its row is the case after).
wpid=""
for _ in $(seq 1 50); do
    wpid="$(psql_q -c "SELECT pid FROM bk_snapshot_progress WHERE snapshot_id = '$killed' AND state = 'running'
                           AND EXISTS (SELECT FROM bk_snapshot_history WHERE snapshot_id = '$killed')")"
    [[ -n "$wpid" ]] && break
    sleep 0.1
done
kill -KILL "$wpid" 2>/dev/null
ok $? "a snapshot worker is killed mid-way (the server restarts its backends)"
server_up() { psql_q -c "SELECT 1" >/dev/null 2>&1; }
wait_for 60 "server back" server_up
# The crash-restart wiped the shared slot, not the history row: it is failed
# once the server is back, not left "running" until the next snapshot.
history_of() { psql_q -c "SELECT $2 FROM bk_snapshot_history WHERE snapshot_id = '$1'"; }
killed_failed() { [[ "$(history_of "$killed" state)" == failed ]]; }
wait_for 60 "the history to fail snapshot $killed" killed_failed
ok $? "the killed snapshot's history row is failed after the restart"
like "$(history_of "$killed" error)" 'worker died' "saying its worker died"
# The file that made that happen names a database dropped since (the
# server stopped while the snapshot ran; the database went before the
# restart): the cleanup fails once, says so and removes the file, instead
# of failing again at every start of the server.
running="$BK_PGDATA/pg_stat_tmp/bk_snapshot.running"
pglog="$(dirname "$BK_PGDATA")/postgresql.log"
as_postgres sh -c "echo '4000000000 bk_test_gone' >'$running'"
log_lines="$(wc -l <"$pglog")"
"$SERVICES" restart pg >/dev/null
running_gone() { [[ ! -e "$running" ]]; }
wait_for 60 "the cleanup to remove $running" running_gone
ok $? "a cleanup whose database is gone removes the running-snapshot file"
like "$(tail -n +"$((log_lines + 1))" "$pglog")" 'gave up failing the history row of snapshot bk_test_gone' \
    "and says it gave up"
# Killed before its history row is committed (a trigger holds the INSERT):
# bk_snapshot(wait => false) had returned the id; after the restart the
# history holds it, failed, instead of never having heard of it.
# bk_test_stall() holds a history change 60 s (this case and the next).
psql_q >/dev/null <<'SQL'
CREATE FUNCTION bk_test_stall() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN PERFORM pg_sleep(60); RETURN NEW; END$$;
CREATE TRIGGER bk_test_stall_insert BEFORE INSERT ON bk_snapshot_history
    FOR EACH ROW WHEN (NEW.label = 'killed-unrecorded') EXECUTE FUNCTION bk_test_stall();
SQL
unrecorded="$(psql_q -c "SELECT snapshot_id FROM bk_snapshot('full', 'killed-unrecorded', wait => false)")"
inserting() {
    [[ "$(psql_q -c "SELECT a.wait_event FROM bk_snapshot_progress p JOIN pg_stat_activity a USING (pid)
        WHERE p.snapshot_id = '$unrecorded'")" == PgSleep ]]
}
wait_for 60 "snapshot $unrecorded to stall in its history INSERT" inserting
ok $? "snapshot $unrecorded is held inserting its history row"
kill -KILL "$(psql_q -c "SELECT pid FROM bk_snapshot_progress WHERE snapshot_id = '$unrecorded'")" 2>/dev/null
wait_for 60 "server back" server_up
unrecorded_failed() { [[ "$(history_of "$unrecorded" state)" == failed ]]; }
wait_for 60 "the history to hold snapshot $unrecorded" unrecorded_failed
ok $? "a snapshot killed before its history row was committed has a failed row after the restart"
is "$(history_of "$unrecorded" kind)" full "  of its kind"
like "$(history_of "$unrecorded" error)" 'worker died' "  saying its worker died"
psql_q -c "DROP TRIGGER bk_test_stall_insert ON bk_snapshot_history" >/dev/null
for id in "$cancelled" ${helper_failed:+"$helper_failed"} ${terminated:+"$terminated"} "$killed"; do
    out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/restored-bad" \
        --snapshot "$id" 2>&1)"
    isnt $? 0 "restoring the interrupted snapshot $id is refused"
    rm -rf "$dir/restored-bad"
done
out="$("$BK" list --config "$dir/bk.conf" --source "$source_id" --json 2>&1)"
unlike "$(grep -A3 "\"$cancelled\"" <<<"$out" | tr -d '\n')" '"restorable": true' \
    "bk list does not call the cancelled snapshot restorable"

# A worker ended by a FATAL outside the copy loop (terminated while a
# trigger holds its history update): its history row is failed as it
# exits, not left "running" until the next snapshot.
psql_q >/dev/null <<'SQL'
CREATE TRIGGER bk_test_stall BEFORE UPDATE OF record_sent ON bk_snapshot_history
    FOR EACH ROW WHEN (NEW.label = 'fatal' AND NEW.record_sent) EXECUTE FUNCTION bk_test_stall();
SQL
fatal="$(psql_q -c "SELECT snapshot_id FROM bk_snapshot('full', 'fatal', wait => false)")"
stalled() {
    [[ "$(psql_q -c "SELECT a.wait_event FROM bk_snapshot_progress p JOIN pg_stat_activity a USING (pid)
        WHERE p.snapshot_id = '$fatal'")" == PgSleep ]]
}
wait_for 120 "snapshot $fatal to stall in its history update" stalled
psql_q -c "SELECT pg_terminate_backend(pid) FROM bk_snapshot_progress WHERE snapshot_id = '$fatal'" >/dev/null
is "$(wait_snapshot "$fatal")" failed "a worker terminated outside the copy loop fails its snapshot"
is "$(history_of "$fatal" state)" failed "and its history row at once"
like "$(history_of "$fatal" error)" 'worker exited before it finished' "saying why"
psql_q -c "DROP TRIGGER bk_test_stall ON bk_snapshot_history" -c "DROP FUNCTION bk_test_stall" >/dev/null

# A worker the postmaster cannot start (its fork() fails: the postmaster's
# RLIMIT_NPROC is lowered for a moment) is forgotten without ever running.
# A caller that does not wait is told, and the slot does not stay
# "starting", which would refuse every later snapshot until a restart.
# prlimit runs as postgres: root here may lack CAP_SYS_RESOURCE.
postmaster="$(head -n 1 "$BK_PGDATA/postmaster.pid")"
nproc_soft="$(as_postgres prlimit --pid "$postmaster" --nproc --noheadings --raw -o SOFT)"
out="$(psql_q -c "\\! runuser -u postgres -- prlimit --pid $postmaster --nproc=1:" \
    -c "SELECT snapshot_id FROM bk_snapshot(wait => false)" -c "SELECT pg_sleep(2)" 2>&1)"
as_postgres prlimit --pid "$postmaster" --nproc="$nproc_soft:"
is "$(as_postgres prlimit --pid "$postmaster" --nproc --noheadings --raw -o SOFT)" "$nproc_soft" \
    "the postmaster's RLIMIT_NPROC is back"
like "$out" 'ERROR:  the bk snapshot worker did not start' "a worker that cannot be forked fails bk_snapshot(wait => false)"
like "$out" 'max_worker_processes' "naming max_worker_processes"
is "$(psql_q -c "SELECT count(*) FROM bk_snapshot_progress WHERE state IN ('starting', 'running')")" 0 \
    "no slot is left starting"
out="$(psql_q -c "SELECT state FROM bk_snapshot()" 2>&1)"
is "$out" complete "the next snapshot runs"

# ---- once its record is sent, a snapshot's outcome is kept, or doubted
# The record is what makes a snapshot restorable.  A cancel that comes while
# it is sent waits for the outcome: the mark that the record may be out is
# held 3 s (a trigger) while bk_snapshot_cancel() runs.  And when the end
# cannot be recorded (a trigger fails the history update), the repository
# holds a snapshot the history does not call complete, which bk expire
# counts as the newest: no diff or incr then builds on the older parent.
# (The source decides this; the directory repository shows it once.)
if [[ "$(bk_test_backend)" == directory ]]; then
    psql_q >/dev/null <<'SQL'
CREATE FUNCTION bk_test_hold() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN PERFORM pg_sleep(3); RETURN NEW; END$$;
CREATE TRIGGER bk_test_hold BEFORE UPDATE OF record_sent ON bk_snapshot_history
    FOR EACH ROW WHEN (NEW.label = 'late-cancel' AND NEW.record_sent) EXECUTE FUNCTION bk_test_hold();
CREATE FUNCTION bk_test_fail() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN RAISE EXCEPTION 'bk test: the history update fails'; END$$;
CREATE TRIGGER bk_test_fail BEFORE UPDATE OF state ON bk_snapshot_history
    FOR EACH ROW WHEN (NEW.label = 'unrecorded' AND NEW.state = 'complete') EXECUTE FUNCTION bk_test_fail();
SQL
    late="$(psql_q -c "SELECT snapshot_id FROM bk_snapshot('full', 'late-cancel', wait => false)")"
    sending_record() {
        [[ "$(psql_q -c "SELECT phase FROM bk_snapshot_progress WHERE snapshot_id = '$late'")" == "sending record" ]]
    }
    wait_for 120 "snapshot $late to send its record" sending_record
    is "$(psql_q -c "SELECT bk_snapshot_cancel('$late')")" t "bk_snapshot_cancel() reaches a snapshot sending its record"
    is "$(wait_snapshot "$late")" complete "the cancel comes too late: the snapshot completes"
    is "$(psql_q -c "SELECT state || ' ' || record_sent FROM bk_snapshot_history WHERE snapshot_id = '$late'")" \
        "complete true" "and its history says so"

    unrecorded="$(psql_q -c "SELECT snapshot_id || ' ' || state FROM bk_snapshot('full', 'unrecorded')")"
    like "$unrecorded" ' complete$' "a snapshot whose end the history cannot record"
    unrecorded="${unrecorded%% *}"
    psql_q -c "DROP TRIGGER bk_test_hold ON bk_snapshot_history" -c "DROP TRIGGER bk_test_fail ON bk_snapshot_history" \
        -c "DROP FUNCTION bk_test_hold, bk_test_fail" >/dev/null
    in_repository() {
        "$BK" list --config "$dir/bk.conf" --source "$source_id" --json 2>/dev/null |
            python3 -c 'import json, sys; d = json.load(sys.stdin); sys.exit(0 if [s["restorable"] for s in d["sources"][0]["snapshots"] if s["id"] == sys.argv[1]] == [True] else 1)' "$unrecorded"
    }
    wait_for 120 "snapshot $unrecorded in the repository" in_repository
    ok $? "the repository holds it, restorable"
    for kind in incr diff; do
        out="$(psql_q -c "SELECT state FROM bk_snapshot('$kind')" 2>&1)"
        like "$out" "cannot take an? $kind snapshot: the outcome of full snapshot $unrecorded is not known" \
            "a $kind snapshot is refused: it would build on the full before it"
    done
    like "$out" "Take a full snapshot" "saying what to do"
    is "$(psql_q -c "SELECT state || ' ' || record_sent FROM bk_snapshot_history WHERE snapshot_id = '$unrecorded'")" \
        "failed true" "the history keeps the doubt"
    after="$(psql_q -c "SELECT snapshot_id FROM bk_snapshot('full')")"
    is "$(psql_q -c "SELECT coalesce(parent_id, '-') || ' ' || state FROM bk_snapshot('incr')")" "$after complete" \
        "a newer full ends the doubt: an incremental builds on it"
fi

# ---- a file sent in ranges that vanishes while the snapshot copies it is
# left out, as one sent whole would be, instead of restored as zeros.  The
# file (96 MB, incompressible, three 32 MB ranges: the largest items, so
# copied first) is removed while the only copying process is frozen before
# it has read its first two ranges, so the third range finds it gone.
vanishing="$BK_PGDATA/bk_vanishing.log"
as_postgres dd if=/dev/urandom of="$vanishing" bs=1M count=96 status=none
vanished=""
for attempt in 1 2 3; do
    id="$(psql_q -c "SET bk.snapshot_jobs = 1" -c "SET bk.snapshot_range_size = '32MB'" \
        -c "SELECT snapshot_id FROM bk_snapshot(label => 'vanishing', wait => false)")"
    wpid=""
    for _ in $(seq 1 500); do
        wpid="$(psql_q -c "SELECT pid FROM bk_snapshot_progress WHERE snapshot_id = '$id' AND phase = 'copying files'")"
        [[ -n "$wpid" ]] && break
        sleep 0.01
    done
    [[ -n "$wpid" ]] && kill -STOP "$wpid"
    read_so_far="$(psql_q -c "SELECT bytes_read FROM bk_snapshot_progress WHERE snapshot_id = '$id'")"
    if [[ -n "$wpid" && "$read_so_far" -lt $((64 * 1024 * 1024)) ]]; then
        rm -f "$vanishing"
        kill -CONT "$wpid"
        vanished="$id"
        break
    fi
    [[ -n "$wpid" ]] && kill -CONT "$wpid"
    wait_snapshot "$id" >/dev/null
    diag "attempt $attempt: the snapshot read the file before it could be frozen"
done
rm -f "$vanishing"
if ok "$([[ -n "$vanished" ]]; echo $?)" "a file sent in ranges vanishes while the snapshot runs"; then
    is "$(wait_snapshot "$vanished")" complete "the snapshot completes"
    unlike "$(psql_q -c "SELECT file_list FROM bk_snapshot_history WHERE snapshot_id = '$vanished'")" \
        'bk_vanishing' "its file list leaves the file out"
    vanished_restorable() {
        "$BK" list --config "$dir/bk.conf" --source "$source_id" --json >"$dir/list-vanished.json" 2>/dev/null &&
            python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))
sys.exit(0 if [s["restorable"] for s in d["sources"][0]["snapshots"] if s["id"] == sys.argv[2]] == [True] else 1)' \
                "$dir/list-vanished.json" "$vanished"
    }
    wait_for 120 "the snapshot restorable" vanished_restorable
    ok $? "bk list calls it restorable: the ranges sent before it vanished are counted"
    "$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/restored-vanished" \
        --tablespace-map "$dir/ts1=$dir/ts1-vanished" --snapshot "$vanished" --target immediate \
        >"$dir/restore-vanished.log" 2>&1
    ok $? "and it restores" || diag "$(tail -n 5 "$dir/restore-vanished.log")"
    [[ -e "$dir/restored-vanished/PG_VERSION" && ! -e "$dir/restored-vanished/bk_vanishing.log" ]]
    ok $? "without the vanished file"
    rm -rf "$dir/restored-vanished" "$dir/ts1-vanished"
fi

# ---- a path too long for any object name (a file under a deep directory
# left in the data directory) fails the snapshot as it lists its files,
# naming the path.  The walk cut such a path short to MAXPGPATH: the cut
# path named no file, so the file was left out as if it had vanished and
# the snapshot completed without it.
long_rel="bk_long_path"
for _ in 1 2 3 4 5; do long_rel+="/$(printf 'd%.0s' $(seq 1 200))"; done
install -d -o postgres -m 700 "$BK_PGDATA/$long_rel"
as_postgres sh -c "echo long >'$BK_PGDATA/$long_rel/bk_long_file'"
id="$(psql_q -c "SELECT snapshot_id FROM bk_snapshot(label => 'long path', wait => false)")"
is "$(wait_snapshot "$id")" failed "a snapshot of a file whose path is too long fails"
like "$(psql_q -c "SELECT error FROM bk_snapshot_history WHERE snapshot_id = '$id'")" \
    'too long for a snapshot: "\./bk_long_path/d+/.*/bk_long_file": Every object of a snapshot is named by its file.s path' \
    "naming the file, and why (the DETAIL)"
rm -rf "$BK_PGDATA/bk_long_path"

# ---- names that are not UTF-8: a tablespace created under a Latin-1 path
# (from a SQL_ASCII database, which takes any bytes), and a directory and a
# file with Latin-1 names left in the data directory.  JSON is UTF-8, so the
# record gives these paths as path_hex: bk verify and bk restore read it and
# restore the exact bytes, and the restored backup_manifest names the file
# by Encoded-Path, as pg_verifybackup expects.
latin1=$'caf\xe9'
install -d -o postgres -m 700 "$dir/ts-$latin1" "$BK_PGDATA/bk_dir_$latin1"
as_postgres sh -c "echo latin1 >'$BK_PGDATA/bk_dir_$latin1/$latin1.txt'"
psql_q -c "CREATE DATABASE bk_pitr_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" \
    >/dev/null &&
    PGCLIENTENCODING=SQL_ASCII psql_q -d bk_pitr_ascii \
        -c "CREATE TABLESPACE bk_pitr_latin1 LOCATION '$dir/ts-$latin1'" >/dev/null &&
    psql_q -c "CREATE TABLE t_latin1 TABLESPACE bk_pitr_latin1 AS SELECT g AS id FROM generate_series(1, 1000) g" \
        >/dev/null
ok $? "a tablespace under a Latin-1 path with a table, and Latin-1 names in the data directory"
out="$(psql_q -c "SELECT snapshot_id || ' ' || state FROM bk_snapshot('full', 'latin1 names')")"
latin1_snap="${out%% *}"
like "$out" ' complete$' "a full snapshot of them completes ($latin1_snap)"
# The history keeps file names in a text column: one that is not valid text
# there would make a dump of the database fail to load.  convert_to checks
# the text as a restore of the dump would.
is "$(psql_q -c "SELECT convert_to(file_list, 'UTF8') IS NOT NULL AND position('\\x626b5f6469725f636166e92f636166e92e747874' IN file_list) > 0
                 FROM bk_snapshot_history WHERE snapshot_id = '$latin1_snap'" 2>&1)" t \
    "its history row is valid text, the Latin-1 name in hex"
is "$(psql_q -c "SELECT count(*) FILTER (WHERE convert_to(path, 'UTF8') IS NULL) FROM bk_snapshot_blocks" 2>&1)" 0 \
    "and so are the page-digest rows"
latin1_restorable() {
    "$BK" list --config "$dir/bk.conf" --source "$source_id" --json >"$dir/list-latin1.json" 2>/dev/null &&
        python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))
sys.exit(0 if [s["restorable"] for s in d["sources"][0]["snapshots"] if s["id"] == sys.argv[2]] == [True] else 1)' \
            "$dir/list-latin1.json" "${1:-$latin1_snap}"
}
wait_for 120 "snapshot $latin1_snap restorable" latin1_restorable
ok $? "bk list calls it restorable"
out="$(psql_q -c "SELECT snapshot_id || ' ' || state FROM bk_snapshot('incr', 'latin1 incremental')")"
latin1_incr="${out%% *}"
like "$out" ' complete$' "an incremental snapshot on top of it completes (its parent's Latin-1 name found in hex)"
is "$(psql_q -c "SELECT count(*) FILTER (WHERE convert_to(path, 'UTF8') IS NULL) FROM bk_snapshot_blocks" 2>&1)" 0 \
    "its page-digest rows are valid text too"
wait_for 120 "snapshot $latin1_incr restorable" latin1_restorable "$latin1_incr"
ok $? "bk list calls the incremental restorable"
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
like "$out" "snapshot $latin1_snap: [0-9]+ objects checked and decrypted, [0-9]+ files rebuilt: OK" \
    "bk verify reads its record and rebuilds every file" || diag "$(grep -F "$latin1_snap" <<<"$out" | tail -n 5)"
# Two tablespaces into one location (written differently): refused before
# anything is created.
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/restored-twice" \
    --tablespace-map "$dir/ts1=$dir/ts-twice" --tablespace-map "$dir/ts-$latin1=$dir/./ts-twice/" \
    --snapshot "$latin1_snap" --target immediate 2>&1)"
is $? 2 "two tablespaces mapped to one location are refused (exit 2)"
like "$out" "tablespaces [0-9]+ \\(\"$dir/ts-twice\"\\) and [0-9]+ \\(\"$dir/\\./ts-twice/\"\\) would both be restored to \"$dir/ts-twice\"|tablespaces [0-9]+ \\(\"$dir/\\./ts-twice/\"\\) and [0-9]+ \\(\"$dir/ts-twice\"\\) would both be restored to \"$dir/ts-twice\"" \
    "naming both and the one location" || diag "$out"
[[ ! -e "$dir/restored-twice" && ! -e "$dir/ts-twice" ]]
ok $? "nothing was created"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/restored-twice" \
    --tablespace-map "$dir/ts1=$dir/ts-outer" --tablespace-map "$dir/ts-$latin1=$dir/ts-outer//inner" \
    --snapshot "$latin1_snap" --target immediate 2>&1)"
is $? 2 "a tablespace mapped inside another's location is refused (exit 2)"
like "$out" "inside the location \"$dir/ts-outer\" of tablespace" "saying so" || diag "$out"
rm -rf "$dir/restored-twice" "$dir/ts-twice" "$dir/ts-outer"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/restored-latin1" \
    --tablespace-map "$dir/ts1=$dir/ts1-latin1" --tablespace-map "$dir/ts-$latin1=$dir/ts-latin1-restored" \
    --snapshot "$latin1_snap" --target immediate >"$dir/restore-latin1.log" 2>&1
ok $? "bk restore restores it, mapping the Latin-1 tablespace by its exact path" ||
    diag "$(tail -n 5 "$dir/restore-latin1.log")"
is "$(cat "$dir/restored-latin1/bk_dir_$latin1/$latin1.txt" 2>&1)" latin1 \
    "the Latin-1 file is back under its exact name, in its Latin-1 directory"
latin1_oid="$(psql_q -c "SELECT oid FROM pg_tablespace WHERE spcname = 'bk_pitr_latin1'")"
is "$(readlink "$dir/restored-latin1/pg_tblspc/$latin1_oid")" "$dir/ts-latin1-restored" \
    "the Latin-1 tablespace's link points where --tablespace-map put it"
is "$(grep -c '"Encoded-Path": "626b5f6469725f636166e92f636166e92e747874"' "$dir/restored-latin1/backup_manifest")" 1 \
    "the restored backup_manifest names the Latin-1 file by Encoded-Path"
as_postgres "$BK_PGBIN/pg_verifybackup" --no-parse-wal "$dir/restored-latin1" >"$dir/verify-latin1.log" 2>&1
ok $? "pg_verifybackup accepts the restored directory" || diag "$(tail -n 5 "$dir/verify-latin1.log")"
rm -rf "$dir/restored-latin1" "$dir/ts1-latin1" "$dir/ts-latin1-restored" "$BK_PGDATA/bk_dir_$latin1"
psql_q -c "DROP TABLE t_latin1" -c "DROP TABLESPACE bk_pitr_latin1" -c "DROP DATABASE bk_pitr_ascii" >/dev/null

# ---- a tablespace whose pg_tblspc link is relative (PostgreSQL follows it):
# the record keeps the absolute path it leads to, which a restore can map
install -d -o postgres -m 700 "$dir/ts-rel"
psql_q -c "CREATE TABLESPACE bk_pitr_rel LOCATION '$dir/ts-rel'" \
    -c "CREATE TABLE t_rel TABLESPACE bk_pitr_rel AS SELECT g AS id FROM generate_series(1, 100) g" >/dev/null
rel_oid="$(psql_q -c "SELECT oid FROM pg_tablespace WHERE spcname = 'bk_pitr_rel'")"
rel_link="$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' \
    "$(realpath "$dir/ts-rel")" "$(realpath "$BK_PGDATA/pg_tblspc")")"
ln -sfn "$rel_link" "$BK_PGDATA/pg_tblspc/$rel_oid"
is "$(psql_q -c "SELECT count(*) FROM t_rel")" 100 "a tablespace whose link is relative ($rel_link)"
out="$(psql_q -c "SELECT snapshot_id || ' ' || state FROM bk_snapshot('full', 'relative link')" 2>&1)"
rel_snap="${out%% *}"
like "$out" ' complete$' "a full snapshot of it completes ($rel_snap)"
wait_for 120 "snapshot $rel_snap restorable" latin1_restorable "$rel_snap"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/restored-rel" \
    --tablespace-map "$dir/ts1=$dir/ts1-rel" --tablespace-map "$(realpath "$dir/ts-rel")=$dir/ts-rel-restored" \
    --snapshot "$rel_snap" --target immediate 2>&1)"
ok $? "bk restore restores it, mapping the tablespace by the absolute path its link leads to" || diag "$out"
is "$(readlink "$dir/restored-rel/pg_tblspc/$rel_oid")" "$dir/ts-rel-restored" \
    "its link points where --tablespace-map put it"
ln -sfn "$dir/ts-rel" "$BK_PGDATA/pg_tblspc/$rel_oid"
psql_q -c "DROP TABLE t_rel" -c "DROP TABLESPACE bk_pitr_rel" >/dev/null
rm -rf "$dir/restored-rel" "$dir/ts1-rel" "$dir/ts-rel-restored"

# ---- a page whose checksum fails in the source (bytes of a table's page
# overwritten on disk behind the server): the snapshot keeps the page as
# read, and bk verify and bk restore say so, naming it
# (autovacuum off: an analyze before the snapshot could set hint bits on the
# page in shared buffers, and the snapshot's checkpoint would write it back
# over the damage)
psql_q -c "CREATE TABLE t_bad_page WITH (autovacuum_enabled = off) AS
               SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 1000) g" \
    -c "CHECKPOINT" >/dev/null
bad_rel="$(psql_q -c "SELECT pg_relation_filepath('t_bad_page')")"
printf 'bk test: not what the checksum covers' |
    dd of="$BK_PGDATA/$bad_rel" bs=1 seek=4096 conv=notrunc status=none
out="$(psql_q -c "SELECT snapshot_id || ' ' || state FROM bk_snapshot('full', 'bad page')" 2>"$dir/bad-page.err")"
bad_snap="${out%% *}"
like "$out" ' complete$' "a snapshot that reads a page with a failing checksum completes"
like "$(cat "$dir/bad-page.err")" "WARNING:  bk snapshot $bad_snap read 1 page whose checksum failed" \
    "and the caller is warned, not only the server log"
wait_for 120 "snapshot $bad_snap restorable" latin1_restorable "$bad_snap"
ok $? "bk list calls it restorable"
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
like "$out" "note: snapshot $bad_snap read pages whose checksum failed twice: its record lists 1 .*, the first \"$bad_rel\" block 0" \
    "bk verify notes the page, naming it" || diag "$(grep -F "$bad_snap" <<<"$out" | tail -n 5)"
like "$out" "snapshot $bad_snap: [0-9]+ objects checked and decrypted, [0-9]+ files rebuilt: OK" \
    "and finds no problem in the snapshot: the archive holds what the source had"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/restored-bad-page" \
    --tablespace-map "$dir/ts1=$dir/ts1-bad-page" --snapshot "$bad_snap" --target immediate --json \
    >"$dir/restore-bad-page.json" 2>"$dir/restore-bad-page.err"
is $? 0 "bk restore restores it"
like "$(cat "$dir/restore-bad-page.err")" \
    "WARNING: snapshot $bad_snap read pages whose checksum failed twice: its record lists 1 .*, the first \"$bad_rel\" block 0" \
    "and warns, naming the page" || diag "$(tail -n 5 "$dir/restore-bad-page.err")"
is "$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))
print(" ".join(str(f[k]) for f in d["checksum_failures"] for k in ("snapshot", "pages_listed", "first_path", "first_block")))' \
    "$dir/restore-bad-page.json" 2>&1)" "$bad_snap 1 $bad_rel 0" \
    "its --json report lists the snapshot's page"
rm -rf "$dir/restored-bad-page" "$dir/ts1-bad-page"
psql_q -c "DROP TABLE t_bad_page" >/dev/null

kill -TERM "$shipper_pid"
wait "$shipper_pid"
shipper_pid=""
done_testing
