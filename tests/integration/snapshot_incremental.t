#!/usr/bin/env bash
# Differential and incremental snapshots are exact even where PostgreSQL
# changes a page without WAL or without moving its LSN:
#   - the SP-GiST metapage (its cache of recently used pages, rewritten at
#     the end of every insert and vacuum): a full snapshot, inserts into an
#     SP-GiST index, an incremental (and later a differential) snapshot,
#     restored with --target immediate;
#   - hint bits and PD_ALL_VISIBLE set by a SELECT and a VACUUM on pages
#     untouched since the parent, on a cluster without data checksums (where
#     they never move the LSN);
#   - a chain full -> incr -> incr, and full -> diff -> incr, across a
#     database with an index of every access method PostgreSQL 15 ships
#     (btree, hash, gist, spgist, gin, brin) and contrib bloom, with
#     inserts, updates, deletes, index scans that mark dead items, and
#     VACUUM between the snapshots;
# on the test cluster (data checksums on) and on one initialised here
# without data checksums.  Every snapshot restores byte-exact (bk restore
# checks each rebuilt file against the SHA-256 of the file as read), to the
# table digests of its moment, and passes pg_verifybackup, pg_amcheck
# --heapallindexed, a VACUUM with no warning, index scans equal to
# sequential scans, and (with checksums) pg_checksums.
#
# Also: a bk extension older than its library (0.1, before the page-digest
# table) makes bk_snapshot() fail with the fix in the hint, and
# ALTER EXTENSION bk UPDATE brings it to 0.8 (0.2 kept page digests per
# file only; 0.3's history cannot say that a record may be out; 0.4 has
# no bk_monitor role; 0.5 no bk_snapshot_wait; 0.6's history cannot say
# which source id and topic prefix a snapshot went to; 0.7's
# bk_snapshot_cancel(NULL) returns NULL without a word).  After bk.source_id
# changes, an incr is refused (its parent is in the old source's archive),
# with a full snapshot in the hint, as it is on a parent whose row does not
# say where it went; the full then works, and incrs build on it.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env)"
SERVICES="$ROOT/scripts/services"
source "$ROOT/tests/lib/bk_env.sh"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-incr-test.XXXXXX")"
chmod 755 "$dir"
shipper_pid=""
nock_port=$((PGPORT + 31))
restored_port=$((PGPORT + 32))
nock_data="$dir/nock"

as_postgres() { runuser -u postgres -- "$@"; }
# psql on a cluster: "main" (the test service) or "nock" (no checksums).
q() {
    local cluster="$1"
    shift
    if [[ "$cluster" == main ]]; then
        psql -X -A -t -q -v ON_ERROR_STOP=1 -d bk_incr "$@"
    else
        psql -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$nock_port" -U postgres -d bk_incr "$@"
    fi
}
rpsql() { psql -X -A -t -q -h 127.0.0.1 -p "$restored_port" -U postgres -d bk_incr "$@"; }
stop_cluster() {
    [[ -f "$1/postmaster.pid" ]] && as_postgres "$BK_PGBIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null 2>&1
}
cleanup() {
    [[ -n "$shipper_pid" ]] && kill -KILL "$shipper_pid" 2>/dev/null
    for d in "$dir"/restored-* "$nock_data"; do [[ -d "$d" ]] && stop_cluster "$d"; done
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS bk_incr" >/dev/null 2>&1
    : >"$BK_PGDATA/bk_test.conf"
    "$SERVICES" restart pg >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT

# ---- bk, the topics, one shipper for both clusters
bk_test_init incr
bk_test_start_shipper

# ---- the test cluster (data checksums on)
bk_test_pg_archive
ok $? "the test cluster runs with bk (data checksums on)"
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS bk_incr" -c "CREATE DATABASE bk_incr" >/dev/null

# ---- an extension older than its library
q main -c "CREATE EXTENSION bk VERSION '0.1'" >/dev/null
out="$(q main -c "SELECT state FROM bk_snapshot()" 2>&1)"
like "$out" 'table "bk_snapshot_blocks" or its column "first_block" is missing' "bk_snapshot() refuses to run on extension version 0.1"
like "$out" 'ALTER EXTENSION bk UPDATE' "and says how to fix it"
q main -c "ALTER EXTENSION bk UPDATE TO '0.2'" >/dev/null
out="$(q main -c "SELECT state FROM bk_snapshot()" 2>&1)"
like "$out" 'table "bk_snapshot_blocks" or its column "first_block" is missing' \
    "and on version 0.2 (page digests not kept per range)"
q main -c "ALTER EXTENSION bk UPDATE TO '0.3'" >/dev/null
out="$(q main -c "SELECT state FROM bk_snapshot()" 2>&1)"
like "$out" 'table "bk_snapshot_history" or its column "record_sent" is missing' \
    "and on version 0.3 (the history cannot say a record may be out)"
q main -c "ALTER EXTENSION bk UPDATE TO '0.6'" >/dev/null
out="$(q main -c "SELECT state FROM bk_snapshot()" 2>&1)"
like "$out" 'table "bk_snapshot_history" or its column "topic_prefix" is missing' \
    "and on version 0.6 (the history cannot say where a snapshot went)"
like "$out" 'ALTER EXTENSION bk UPDATE' "which says how to fix it too"
q main -c "ALTER EXTENSION bk UPDATE" >/dev/null
is "$(q main -c "SELECT extversion FROM pg_extension WHERE extname = 'bk'")|$(q main -c "SELECT relpersistence FROM pg_class WHERE relname = 'bk_snapshot_blocks'")" \
    "0.8|u" "ALTER EXTENSION bk UPDATE brings it to 0.8, with the unlogged page-digest table"
is "$(q main -c "SELECT has_table_privilege('public', 'bk_snapshot_blocks', 'SELECT')")" f \
    "PUBLIC cannot read the page digests"
is "$(q main -c "SELECT has_function_privilege('public', 'bk_snapshot_wait(text)', 'EXECUTE'),
                        has_function_privilege('bk_admin', 'bk_snapshot_wait(text)', 'EXECUTE')")" "f|t" \
    "the update adds CALL bk_snapshot_wait(id) for bk_admin, not PUBLIC"

# ---- a cluster without data checksums
install -d -o postgres -m 700 "$nock_data"
as_postgres "$BK_PGBIN/initdb" -D "$nock_data" -A trust -U postgres --locale=C --encoding=UTF8 \
    >"$dir/nock-initdb.log" 2>&1
ok $? "a second cluster, initialised without data checksums"
{
    echo "port = $nock_port"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = ''"
    echo "archive_mode = on"
    echo "wal_log_hints = off"
    bk_test_pg_settings
} >>"$nock_data/postgresql.conf"
install -o postgres -m 644 /dev/null "$dir/nock.log"
as_postgres "$BK_PGBIN/pg_ctl" -D "$nock_data" -l "$dir/nock.log" -w start >/dev/null 2>&1
ok $? "it starts with bk"
psql -X -q -h 127.0.0.1 -p "$nock_port" -U postgres -d postgres -c "CREATE DATABASE bk_incr" >/dev/null
q nock -c "CREATE EXTENSION bk" >/dev/null
is "$(q nock -c "SHOW data_checksums")|$(q main -c "SHOW data_checksums")" "off|on" \
    "one cluster has data checksums, the other not"

# ---- the schema: an index of every access method
SCHEMA_SQL="
CREATE EXTENSION bloom;
CREATE TABLE t_main (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL,
                     b box NOT NULL, tags int[] NOT NULL, doc tsvector NOT NULL);
CREATE INDEX t_main_hash ON t_main USING hash (v);
CREATE INDEX t_main_gist ON t_main USING gist (b);
CREATE INDEX t_main_gin ON t_main USING gin (tags);
CREATE INDEX t_main_brin ON t_main USING brin (n);
CREATE INDEX t_main_bloom ON t_main USING bloom (id, n);
CREATE INDEX t_main_n ON t_main (n);
CREATE TABLE t_sp (id int NOT NULL, p point NOT NULL, t text NOT NULL, a inet NOT NULL, r int4range NOT NULL);
CREATE INDEX t_sp_p ON t_sp USING spgist (p);
CREATE INDEX t_sp_t ON t_sp USING spgist (t);
CREATE INDEX t_sp_a ON t_sp USING spgist (a);
CREATE INDEX t_sp_r ON t_sp USING spgist (r);
CREATE SEQUENCE s_main;"
# rows FROM TO: t_main rows
ROWS_SQL="INSERT INTO t_main
SELECT g, md5(g::text), g % 1000, box(point(g % 97, g % 89), point(g % 97 + 1, g % 89 + 2)),
       ARRAY[g % 13, g % 17, g % 101], to_tsvector('simple', 'w' || (g % 50) || ' x' || (g % 7))
FROM generate_series(:from, :to) g;"
# sp FROM TO SIGN: SP-GiST rows
SP_SQL="INSERT INTO t_sp
SELECT g, point(g, :sign * g), md5(g::text), ('10.' || (g % 250) || '.' || (g / 250 % 250) || '.0/24')::inet,
       int4range(g, g + 1 + g % 10)
FROM generate_series(:from, :to) g;"
sql_rows() { q "$1" -v from="$2" -v to="$3" <<<"$ROWS_SQL" >/dev/null; }
sql_sp() { q "$1" -v from="$2" -v to="$3" -v sign="$4" <<<"$SP_SQL" >/dev/null; }

DIGEST_SQL="SELECT string_agg(t.relname || ':' || (xpath('/row/d/text()',
    query_to_xml(format('SELECT md5(coalesce(string_agg(x::text, %L ORDER BY x::text), %L)) AS d FROM %I.%I x',
                        '|', '', t.nspname, t.relname), false, true, '')))[1]::text, ' ' ORDER BY t.relname)
FROM (SELECT c.relname, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND n.nspname = 'public' AND c.relname LIKE 't\\_%') t"
# Queries each index can answer; run with and without index scans.
PROBE_SQL="SELECT concat_ws(',',
  (SELECT count(*) FROM t_main WHERE v = md5('77')),
  (SELECT count(*) FROM t_main WHERE b && box(point(3, 3), point(5, 5))),
  (SELECT count(*) FROM t_main WHERE tags @> ARRAY[5]),
  (SELECT count(*) FROM t_main WHERE doc @@ to_tsquery('simple', 'w7')),
  (SELECT count(*) FROM t_main WHERE n BETWEEN 100 AND 120),
  (SELECT count(*) FROM t_main WHERE id = 4242 AND n = 242),
  (SELECT count(*) FROM t_sp WHERE p <@ box(point(100, -200), point(200, 200))),
  (SELECT count(*) FROM t_sp WHERE t LIKE 'ab%'),
  (SELECT count(*) FROM t_sp WHERE a << '10.7.0.0/16'::inet),
  (SELECT count(*) FROM t_sp WHERE r && int4range(500, 520)))"
INDEX_ONLY="SET enable_seqscan = off;"
SEQ_ONLY="SET enable_indexscan = off; SET enable_bitmapscan = off; SET enable_indexonlyscan = off;"

for cluster in main nock; do
    q "$cluster" -c "$SCHEMA_SQL" >/dev/null
    sql_rows "$cluster" 1 30000
    sql_sp "$cluster" 1 5000 1
    q "$cluster" -c "CHECKPOINT" >/dev/null
done
ok 0 "both clusters hold a table with btree, hash, gist, gin, brin and bloom indexes, and SP-GiST indexes on point, text, inet and range"

# ---- snapshots
declare -A SNAP DIGEST PARENT KIND
declare -A SOURCES
SOURCES[main]="$source_id"
SOURCES[nock]="$(q nock -c "SELECT system_identifier FROM pg_control_system()")"
# The cluster without checksums is copied by two processes in 1 MB ranges
# (the smallest bk.snapshot_range_size): every relation file above that is
# read by both at once, and each range keeps its own page digests for the
# next snapshot.
declare -A RANGE_SIZE=([main]=0 [nock]=1MB)
snapshot() { # CLUSTER NAME KIND: take it, note its moment's digest
    local cluster="$1" name="$2" kind="$3" out
    out="$(q "$cluster" -c "SET bk.snapshot_jobs = 2" -c "SET bk.snapshot_range_size = '${RANGE_SIZE[$cluster]}'" \
        -c "SELECT snapshot_id || ' ' || coalesce(parent_id, '-') || ' ' || state FROM bk_snapshot('$kind', '$name')" 2>&1)"
    SNAP[$cluster.$name]="${out%% *}"
    PARENT[$cluster.$name]="$(cut -d' ' -f2 <<<"$out")"
    KIND[$cluster.$name]="$kind"
    like "$out" ' complete$' "$cluster: snapshot $name ($kind) completes"
    DIGEST[$cluster.$name]="$(q "$cluster" -c "$DIGEST_SQL")"
    q "$cluster" -c "SELECT pg_switch_wal()" >/dev/null
}
churn() { # CLUSTER FROM TO: inserts, updates, deletes, dead-item marks
    local cluster="$1" from="$2" to="$3"
    sql_rows "$cluster" "$from" "$to"
    q "$cluster" >/dev/null <<SQL
UPDATE t_main SET v = md5(v), n = n + 1, tags = tags || 7 WHERE id BETWEEN $from - 3000 AND $from - 2000;
DELETE FROM t_main WHERE id BETWEEN $from - 5000 AND $from - 4500;
DELETE FROM t_sp WHERE id % 11 = 0 AND id < $from / 10;
SELECT nextval('s_main') FROM generate_series(1, 40);
-- index scans over the deleted rows: they mark dead items (LP_DEAD)
$INDEX_ONLY
SELECT count(*) FROM t_main WHERE id BETWEEN $from - 5000 AND $from - 4500;
SELECT count(*) FROM t_main WHERE n BETWEEN 500 AND 600;
SQL
}

for cluster in main nock; do
    snapshot "$cluster" full full
    # The reproduction: inserts into SP-GiST indexes only, then incremental.
    sql_sp "$cluster" 1 5000 -1
    snapshot "$cluster" incr1 incr
    # Hint bits and PD_ALL_VISIBLE on pages untouched since the parent, then
    # everything else.
    q "$cluster" -c "SELECT count(*) FROM t_main" -c "SELECT count(*) FROM t_sp" -c "VACUUM t_main" >/dev/null
    churn "$cluster" 30001 32000
    q "$cluster" -c "VACUUM" >/dev/null
    snapshot "$cluster" incr2 incr
    churn "$cluster" 32001 34000
    sql_sp "$cluster" 5001 6000 1
    q "$cluster" -c "VACUUM" >/dev/null
    snapshot "$cluster" diff diff
    churn "$cluster" 34001 36000
    q "$cluster" -c "SELECT count(*) FROM t_main" >/dev/null
    snapshot "$cluster" incr3 incr
    is "${PARENT[$cluster.incr1]} ${PARENT[$cluster.incr2]} ${PARENT[$cluster.diff]} ${PARENT[$cluster.incr3]}" \
        "${SNAP[$cluster.full]} ${SNAP[$cluster.incr1]} ${SNAP[$cluster.full]} ${SNAP[$cluster.diff]}" \
        "$cluster: chains full -> incr1 -> incr2 and full -> diff -> incr3"
done

pieces="$(sed -n "s/.*snapshot ${SNAP[nock.full]} copies \([0-9]*\) files with 2 processes, in \([0-9]*\) pieces.*/\1 \2/p" "$dir/nock.log")"
ok "$([[ -n "$pieces" && "${pieces#* }" -gt "${pieces% *}" ]]; echo $?)" \
    "nock: large files went in ranges ($pieces files and pieces)"
unlike "$(cat "$dir/nock.log")" 'kept no page digests' \
    "nock: every incremental found its parent's page digests, range by range"
is "$(q nock -c "SELECT count(*) > 0 FROM bk_snapshot_blocks WHERE first_block > 0")" t \
    "nock: page digests are kept per range"

# Only the parents a next snapshot can have keep their page digests: the
# newest full (for a diff) and the newest of any kind (for an incr).
is "$(q nock -c "SELECT string_agg(DISTINCT snapshot_id, ' ' ORDER BY snapshot_id) FROM bk_snapshot_blocks")" \
    "${SNAP[nock.full]} ${SNAP[nock.incr3]}" "only the page digests of the two possible parents are kept"

# ---- everything archived and restorable
json_get() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
restorable() { # CLUSTER NAME
    local src="${SOURCES[$1]}" id="${SNAP[$1.$2]}"
    "$BK" list --config "$dir/bk.conf" --source "$src" --json >"$dir/list-$1.json" 2>/dev/null &&
        [[ "$(json_get "$dir/list-$1.json" "[s['restorable'] for s in d['sources'][0]['snapshots'] if s['id'] == '$id']")" == "[True]" ]]
}
all_restorable() {
    local cluster name
    for cluster in main nock; do
        for name in full incr1 incr2 diff incr3; do restorable "$cluster" "$name" || return 1; done
    done
}
wait_for 180 "every snapshot restorable" all_restorable
ok $? "bk list calls every snapshot of both clusters restorable"
# Each database with the extension keeps its own history: the records say
# which one chose the parent, so that bk expire keeps each one's newest.
is "$(json_get "$dir/list-main.json" "sorted(set(s['history_database'] for s in d['sources'][0]['snapshots'] if s['id'] in '${SNAP[main.full]} ${SNAP[main.incr3]}'))")" \
    "[$(q main -c "SELECT oid FROM pg_database WHERE datname = current_database()")]" \
    "the records name the database whose history chose their parents"

restore_and_check() { # CLUSTER NAME
    local cluster="$1" name="$2" target="$dir/restored-$1-$2" got log
    local id="${SNAP[$cluster.$name]}"
    "$BK" restore --config "$dir/bk.conf" --source "${SOURCES[$cluster]}" --pgdata "$target" \
        --snapshot "$id" --target immediate >"$dir/restore-$cluster-$name.log" 2>&1
    if ! is $? 0 "$cluster: the $name snapshot (${KIND[$cluster.$name]}) restores, every rebuilt file equal to the file read"; then
        diag "$(tail -n 10 "$dir/restore-$cluster-$name.log")"
        return 1
    fi
    unlike "$(cat "$dir/restore-$cluster-$name.log")" 'differ' "$cluster: no rebuilt file differs ($name)"
    as_postgres "$BK_PGBIN/pg_verifybackup" --no-parse-wal "$target" >"$dir/verify.log" 2>&1
    ok $? "$cluster: pg_verifybackup accepts it ($name)" || diag "$(tail -n 5 "$dir/verify.log")"
    cat >>"$target/postgresql.auto.conf" <<CONF
port = $restored_port
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
CONF
    log="$dir/restored-$cluster-$name.log"
    install -o postgres -m 644 /dev/null "$log"
    as_postgres "$BK_PGBIN/pg_ctl" -D "$target" -l "$log" -w -t 300 start >/dev/null 2>&1
    ok $? "$cluster: it starts and recovers ($name)" || {
        diag "$(tail -n 20 "$log")"
        return 1
    }
    promoted() { [[ "$(rpsql -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" == f ]]; }
    wait_for 120 "promotion" promoted
    got="$(rpsql -c "$DIGEST_SQL")"
    is "$got" "${DIGEST[$cluster.$name]}" "$cluster: every table is exactly as the $name snapshot saw it"
    as_postgres "$BK_PGBIN/pg_amcheck" -h 127.0.0.1 -p "$restored_port" -U postgres --all \
        --install-missing --heapallindexed >"$dir/amcheck.log" 2>&1
    ok $? "$cluster: pg_amcheck --heapallindexed finds nothing ($name)" || diag "$(tail -n 5 "$dir/amcheck.log")"
    is "$(rpsql -c "$INDEX_ONLY $PROBE_SQL" 2>&1)" "$(rpsql -c "$SEQ_ONLY $PROBE_SQL" 2>&1)" \
        "$cluster: every index answers as a sequential scan does ($name)"
    is "$(rpsql -c "VACUUM" 2>&1)" "" "$cluster: VACUUM finds nothing to warn about ($name)"
    stop_cluster "$target"
    unlike "$(cat "$log")" 'WARNING|visibility map' "$cluster: the server logged no warning ($name)"
    if [[ "$cluster" == main ]]; then
        as_postgres "$BK_PGBIN/pg_checksums" --check -D "$target" >"$dir/checksums.log" 2>&1
        ok $? "$cluster: pg_checksums --check passes ($name)" || diag "$(tail -n 5 "$dir/checksums.log")"
    fi
    rm -rf "$target"
}

for cluster in main nock; do
    for name in incr1 incr2 diff incr3; do
        restore_and_check "$cluster" "$name"
    done
done

# bk verify rebuilds every file of every snapshot, through its chain.
out="$("$BK" verify --config "$dir/bk.conf" 2>&1)"
is $? 0 "bk verify: every snapshot file rebuilds to its recorded SHA-256" || diag "$(tail -n 10 <<<"$out")"

# ---- a new source id: no incr onto the old source's snapshot
is "$(q main -c "SELECT source_id || ' ' || topic_prefix FROM bk_snapshot_history WHERE snapshot_id = '${SNAP[main.incr3]}'")" \
    "$source_id $prefix" "the history says which source id and topic prefix a snapshot went to"
echo "bk.source_id = 'incr-renamed-$$'" >>"$BK_PGDATA/bk_test.conf"
q main -c "SELECT pg_reload_conf()" >/dev/null
# shellcheck disable=SC2317,SC2329 # called through wait_for
source_id_is() { [[ "$(q main -c "SHOW bk.source_id")" == "$1" ]]; }
wait_for 30 "the reload of bk.source_id" source_id_is "incr-renamed-$$"
out="$(q main -c "SELECT state FROM bk_snapshot('incr')" 2>&1)"
like "$out" "parent ${SNAP[main.incr3]} was sent under another source id" \
    "after bk.source_id changes, an incr on the old source's snapshot is refused"
like "$out" "HINT:  Take a full snapshot" "and the hint says to take a full snapshot"
is "$(q main -c "SELECT count(*) FROM bk_snapshot_history WHERE parent_id = '${SNAP[main.incr3]}'")" 0 \
    "no snapshot in the history builds on it"
renamed_full="$(q main -c "SELECT snapshot_id || ' ' || state FROM bk_snapshot('full')" 2>&1)"
like "$renamed_full" ' complete$' "a full snapshot under the new source id completes"
renamed_full="${renamed_full%% *}"
out="$(q main -c "SELECT coalesce(parent_id, '-') || ' ' || state FROM bk_snapshot('incr')" 2>&1)"
is "$out" "$renamed_full complete" "and an incr builds on it"
# A row from before 0.7 does not say where its snapshot went: no parent.
q main -c "UPDATE bk_snapshot_history SET source_id = NULL, topic_prefix = NULL" >/dev/null
out="$(q main -c "SELECT state FROM bk_snapshot('diff')" 2>&1)"
like "$out" "does not say which source id and topic prefix its parent $renamed_full was sent under" \
    "a diff onto a parent whose row predates the columns is refused"
like "$out" "HINT:  Take a full snapshot" "with the same hint"

kill -TERM "$shipper_pid"
wait "$shipper_pid"
shipper_pid=""
done_testing
