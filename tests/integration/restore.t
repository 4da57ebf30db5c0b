#!/usr/bin/env bash
# bk restore, verify, list, expire and wal-get --prefetch, end to end on the
# real servers: PostgreSQL archives through bk, a shipper fills the
# repository, snapshots come from pg_basebackup through the fixture
# tests/integration/bk_test_snapshot (a full one, then an incremental one
# built on it, exactly as docs/snapshot-format.md says bk_snapshot() sends
# them), and:
#   - at a series of moments the test records every table's digest, the
#     time and the LSN; restoring to each moment by time and by LSN, to a
#     committed transaction's xid and to a named restore point (each with
#     and without --snapshot), to "immediate" and to the end of the archive
#     gives exactly those digests, from the snapshot the target needs
#     (never a newer one);
#   - every restored directory passes pg_verifybackup --no-parse-wal before
#     it starts, starts as postgres (bk restore runs as root), promotes,
#     passes pg_amcheck --all while running and pg_checksums --check when
#     stopped; its tablespace is where --tablespace-map put it;
#   - a non-empty target is refused without --delta and reused with it;
#   - with --repo, restore_command names the repository as given (s3://)
#     or by its real path;
#     a target before the oldest snapshot, an unknown snapshot, a snapshot
#     newer than the target and an interrupted snapshot are refused;
#   - one corrupted chunk (a payload byte flipped, the CRC fixed so that
#     only the key can tell) makes bk verify and bk restore fail with exit 4,
#     naming the file, and leaves nothing that could start;
#   - an empty file is made from the record, its object not read (that
#     object cut short, the restore succeeds; bk verify reports it);
#   - bk wal-get --prefetch spools the next segments, serves them from
#     there byte-identical, and keeps its exit codes;
#   - bk expire keeps what the kept snapshots need and removes the rest,
#     with a second run and a dry run at the same time (none fails);
#   - with a WAL segment lost after a segment archived seconds after its
#     last commit, a target time after that commit is refused before
#     anything is written, naming the lost segment, and one before it
#     restores;
#   - an LSN target after the switch that ended a segment (where recovery
#     stops after the next segment's first record) is refused when that
#     segment is lost, and warned about when it is not archived yet; a
#     target time after the archive's last commit is refused before
#     anything is written, giving that commit;
#   - an object the repository cannot read (EIO from its disk) makes bk
#     verify and bk restore exit 5 (the repository failed), naming it;
#   - a restore leaves most of a large file it wrote out of the page cache
#     (written out and dropped as it goes), and a write error the disk
#     reports while bk restore waits for it (EIO injected with LD_PRELOAD)
#     fails the restore, naming the file, and leaves that file empty so
#     that --delta rewrites it;
#   - under strace, a restore fsyncs every file and directory it wrote
#     before it renames anything into place (backup_label, the recovery
#     settings, the manifest, pg_control last) and before its report.
# With BK_TEST_BACKEND=s3 (restore_s3.t) the repository is a bucket of the
# real s3proxy (authentication on): every read is a range GET, expire
# deletes in DeleteObjects batches, and corruption is done to the stored
# object itself.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env)"
source "$ROOT/tests/lib/repo_backend.sh"
SERVICES="$ROOT/scripts/services"
source "$ROOT/tests/lib/bk_bin.sh"
FIXTURE="$ROOT/tests/integration/bk_test_snapshot"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-restore-test.XXXXXX")"
chmod 755 "$dir"
prefix="bkit-restore-$$-$RANDOM"
bk_test_repo "$prefix"
shipper_pid=""
running=""
restored_port=$((PGPORT + 31))
SNAP_ID=""
export PGOPTIONS="-c client_min_messages=warning"

psql_q() { psql -X -A -t -q -v ON_ERROR_STOP=1 "$@"; }
rpsql() { psql -X -A -t -q -h 127.0.0.1 -p "$restored_port" -U postgres "$@"; }
as_postgres() { runuser -u postgres -- "$@"; }
json_get() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
stop_restored() {
    [[ -n "$running" ]] && as_postgres "$BK_PGBIN/pg_ctl" -D "$running" -m fast -w stop >/dev/null 2>&1
    running=""
}
cleanup() {
    stop_restored
    [[ -n "$shipper_pid" ]] && kill -KILL "$shipper_pid" 2>/dev/null
    psql_q -c "DROP TABLE IF EXISTS r_main, r_ts, r_big, r_wide, r_gap" -c "DROP TABLESPACE IF EXISTS bk_restore_ts" \
        >/dev/null 2>&1
    : >"$BK_PGDATA/bk_test.conf"
    "$SERVICES" restart pg >/dev/null 2>&1
    bk_test_repo_remove
    mountpoint -q "$dir/tiny-tmp" 2>/dev/null && umount "$dir/tiny-tmp"
    rm -rf "$dir"
}
trap cleanup EXIT

# ---- set up: bk installed, key, topics, shipper, PostgreSQL archiving through bk
bk_test_build && make -s -C "$ROOT/tests/integration" bk_test_snapshot >/dev/null
ok $? "bk, bk-shipper, the extension and the snapshot fixture are built and installed"
"$BK" keygen --out "$dir/bk.key" >/dev/null 2>&1
# Root's, readable by restore_command, which runs as postgres (README).
chgrp postgres "$dir/bk.key" && chmod 0640 "$dir/bk.key"
cat >"$dir/bk.conf" <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $prefix
repository = $repo
key_file = $dir/bk.key
shipper_id = restore-test-$$
group_id = restore-test-$$
$repo_conf
CONF
chmod 644 "$dir/bk.conf"
grep -v '^key_file' "$dir/bk.conf" >"$dir/keyless.conf"
"$BK" init --config "$dir/bk.conf" >/dev/null
ok $? "topics created"
"$SHIPPER" --config "$dir/bk.conf" >>"$dir/shipper.log" 2>&1 &
shipper_pid=$!
cat >"$BK_PGDATA/bk_test.conf" <<CONF
shared_preload_libraries = 'bk'
archive_library = 'bk'
bk.kafka_brokers = '$BK_KAFKA_BROKERS'
bk.topic_prefix = '$prefix'
bk.key_file = '$dir/bk.key.pub'
bk.kafka_timeout = '5s'
CONF
"$SERVICES" restart pg >/dev/null 2>&1
ok $? "PostgreSQL restarted with archive_library = 'bk'"
source_id="$(psql_q -c "SELECT system_identifier FROM pg_control_system()")"
psql_q -c "CREATE EXTENSION IF NOT EXISTS bk" >/dev/null

install -d -o postgres -m 700 "$dir/ts1"
psql_q <<SQL >/dev/null
DROP TABLE IF EXISTS r_main, r_ts, r_big, r_wide, r_gap;
DROP TABLESPACE IF EXISTS bk_restore_ts;
CREATE TABLESPACE bk_restore_ts LOCATION '$dir/ts1';
CREATE TABLE r_main (id bigserial PRIMARY KEY, v text NOT NULL, n int NOT NULL);
CREATE INDEX r_main_n ON r_main (n);
CREATE TABLE r_ts (id int PRIMARY KEY, v bigint NOT NULL) TABLESPACE bk_restore_ts;
CREATE TABLE r_big (id int PRIMARY KEY, v text NOT NULL);
CREATE TABLE r_wide (id int NOT NULL, v text NOT NULL);
INSERT INTO r_main (v, n) SELECT md5(g::text), g % 97 FROM generate_series(1, 50000) g;
INSERT INTO r_ts SELECT g, g FROM generate_series(1, 2000) g;
INSERT INTO r_big SELECT g, repeat(md5(g::text), 200) FROM generate_series(1, 200) g;
INSERT INTO r_wide SELECT g, (SELECT string_agg(md5(g || '.' || i), '') FROM generate_series(1, 15) i) FROM generate_series(1, 70000) g;
SQL
ok $? "tables in the default tablespace and in a second one, with TOAST, and one of over 32 MB that does not compress (an object of several S3 read windows)"
wide_rel="$(psql_q -c "SELECT pg_relation_filepath('r_wide')")"

DIGEST_SQL="SELECT string_agg(r || ':' || d, ' ' ORDER BY r) FROM (
    SELECT 'r_main' AS r, md5(string_agg(t::text, ',' ORDER BY t::text)) AS d FROM r_main t
    UNION ALL SELECT 'r_ts', md5(string_agg(t::text, ',' ORDER BY t::text)) FROM r_ts t
    UNION ALL SELECT 'r_big', md5(string_agg(t::text, ',' ORDER BY t::text)) FROM r_big t
    UNION ALL SELECT 'r_wide', md5(string_agg(md5(t::text), ',' ORDER BY t.id)) FROM r_wide t) x"

# A moment: run SQL, then note the time and LSN after its commits, and the
# digests.  Nothing else writes, so nothing commits between them.
declare -A M_TIME M_LSN M_DIGEST M_EXTRA
moment() {
    local name="$1" sql="${2:-}" out
    out="$(psql -X -A -t -q -v ON_ERROR_STOP=1 <<SQL
$sql
SELECT 'TIME=' || to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00';
SELECT 'LSN=' || pg_current_wal_insert_lsn();
SELECT 'DIGEST=' || ($DIGEST_SQL);
SQL
)"
    M_TIME[$name]="$(sed -n 's/^TIME=//p' <<<"$out")"
    M_LSN[$name]="$(sed -n 's/^LSN=//p' <<<"$out")"
    M_DIGEST[$name]="$(sed -n 's/^DIGEST=//p' <<<"$out")"
    M_EXTRA[$name]="$(sed -n 's/^EXTRA=//p' <<<"$out")"
    [[ -n "${M_TIME[$name]}" && -n "${M_DIGEST[$name]}" ]]
}
archived_through_now() {
    local seg last
    seg="$(psql_q -c "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")"
    psql_q -c "SELECT pg_switch_wal()" >/dev/null
    last="$(psql_q -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")"
    [[ -n "$last" && ! "$last" < "$seg" ]] && test -f "$repo_files/$source_id/wal/$seg"
}
restorable() { # ID
    "$BK" list --config "$dir/bk.conf" --source "$source_id" --json >"$dir/list.json" 2>/dev/null &&
        [[ "$(json_get "$dir/list.json" "[s['restorable'] for s in d['sources'][0]['snapshots'] if s['id'] == '$1']")" == "[True]" ]]
}
# Snapshot: pg_basebackup -Fp (tablespace remapped), sent by the fixture.
take_snapshot() { # NAME [fixture options]
    local name="$1" out
    shift
    install -d -o postgres -m 700 "$dir/base-$name" "$dir/base-$name-ts1"
    as_postgres "$BK_PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PGPORT" -U postgres -D "$dir/base-$name" \
        -Fp -X none --manifest-checksums=SHA256 -c fast -T "$dir/ts1=$dir/base-$name-ts1" \
        >"$dir/basebackup-$name.log" 2>&1 || return 1
    out="$("$FIXTURE" --brokers "$BK_KAFKA_BROKERS" --prefix "$prefix" --key "$dir/bk.key.pub" \
        --source "$source_id" --chunk-size 65536 --tablespace-origin "$dir/base-$name-ts1=$dir/ts1" \
        "$@" "$dir/base-$name")" || return 1
    SNAP_ID="${out%% *}"
}

# ---- snapshots and moments
moment m0
ok $? "moment m0 (before any snapshot)"
take_snapshot s1
ok $? "a full snapshot: pg_basebackup, sent by the fixture as $SNAP_ID" ||
    bail_out "no snapshot: $(tail -n 3 "$dir/basebackup-s1.log")"
snap1="$SNAP_ID"
moment m1 "UPDATE r_main SET v = 'm1' WHERE id % 10 = 0; INSERT INTO r_ts SELECT g, -g FROM generate_series(3001, 3100) g;
UPDATE r_wide SET v = 'm1' WHERE id % 1000 = 0;"
ok $? "moment m1: updates in both tablespaces"
moment m2 "DELETE FROM r_main WHERE id % 7 = 0; UPDATE r_big SET v = v || 'm2' WHERE id < 20;
BEGIN; INSERT INTO r_main (v, n) VALUES ('the xid target', 1); SELECT 'EXTRA=' || txid_current(); COMMIT;"
ok $? "moment m2: deletes, TOAST updates, then one transaction whose xid is the target"
xid="${M_EXTRA[m2]}"
take_snapshot s2 --kind incr --parent "$snap1" --parent-dir "$dir/base-s1"
ok $? "an incremental snapshot on top of it: $SNAP_ID" || bail_out "no incremental snapshot"
snap2="$SNAP_ID"
moment m3 "INSERT INTO r_main (v, n) SELECT md5(g::text), 3 FROM generate_series(1, 5000) g; TRUNCATE r_big; INSERT INTO r_big VALUES (1, 'm3');"
ok $? "moment m3: inserts, a truncate"
moment m4 "UPDATE r_ts SET v = v * 2; SELECT pg_create_restore_point('bk_restore_point');"
ok $? "moment m4: updates, then a restore point"
moment m5 "INSERT INTO r_main (v, n) VALUES ('last', 5);"
ok $? "moment m5: the last write"
wait_for 180 "WAL through the last moment archived" archived_through_now
ok $? "the WAL through the last moment is archived"
wait_for 60 "snapshots restorable" eval "restorable $snap1 && restorable $snap2"
ok $? "bk list calls both snapshots restorable"

# ---- bk list and bk verify
out="$("$BK" list --config "$dir/bk.conf" --source "$source_id" 2>&1)"
like "$out" "$snap2  incr of $snap1 .* restorable" "bk list shows the incremental snapshot and its parent"
like "$out" "restorable window: [0-9A-F]+/[0-9A-F]+ \\([^)]*, stop of $snap1\\) \\.\\. " \
    "and the restorable window from the oldest snapshot's stop point"
like "$out" "achieved RPO: [0-9]+ s" "and the achieved RPO"
is "$(json_get "$dir/list.json" "d['sources'][0]['restorable_window']['from_snapshot']")" "$snap1" \
    "bk list --json: the window starts at the full snapshot"
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
is $? 0 "bk verify with the key: every object decrypts, every file rebuilds to its recorded SHA-256"
like "$out" "snapshot $snap2: [0-9]+ objects checked and decrypted, [1-9][0-9]* files rebuilt, [1-9][0-9]* unchanged since snapshot $snap1 \\(checked there\\): OK" \
    "including the files of the incremental snapshot, through its chain (not again those its parent checked)"
"$BK" verify --config "$dir/keyless.conf" --source "$source_id" >"$dir/verify-keyless.log" 2>&1
is $? 0 "bk verify without a key checks structure, CRCs and completeness"
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" --jobs 0 2>&1)"
is $? 2 "bk verify --jobs 0 is a usage error"
like "$out" "--jobs must be from 1 to 64, not \"0\"" "naming the range"
# This host's temporary space failing is not damage in the archive: a
# run-time error (exit 5) naming TMPDIR, never a PROBLEM (exit 4).
out="$(TMPDIR="$dir/no-such-dir" "$BK" verify --config "$dir/bk.conf" --source "$source_id" --jobs 3 2>&1)"
is $? 5 "bk verify with a TMPDIR it cannot write to fails with exit 5"
like "$out" "could not create a temporary file in $dir/no-such-dir to rebuild files in" \
    "naming the directory"
unlike "$out" "PROBLEM" "and reporting no problem of the archive"
mkdir -p "$dir/tiny-tmp"
if mount -t tmpfs -o size=16k bk-tiny-tmp "$dir/tiny-tmp" 2>/dev/null; then
    out="$(TMPDIR="$dir/tiny-tmp" "$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
    is $? 5 "bk verify whose TMPDIR fills up while it rebuilds a file fails with exit 5"
    like "$out" "could not rebuild files to check them \\(TMPDIR=$dir/tiny-tmp\\): .*No space left on device" \
        "naming TMPDIR and the cause"
    unlike "$out" "PROBLEM" "and reporting no problem of the archive"
    # bk restore searching the WAL for an xid with pg_waldump: a failure of
    # this host before --pgdata is touched, saying so and what to do.
    out="$(TMPDIR="$dir/tiny-tmp" "$BK" restore --config "$dir/bk.conf" --source "$source_id" \
        --pgdata "$dir/never-restored" --target-xid "$xid" 2>&1)"
    is $? 1 "bk restore --target-xid whose TMPDIR fills up while it searches the WAL fails with exit 1"
    like "$out" "could not write \"$dir/tiny-tmp/bk-restore-waldump\.[^\"]*\": No space left on device
HINT: bk restore decrypts the WAL it searches with pg_waldump into TMPDIR \\(here \"$dir/tiny-tmp\"\\).* before it writes anything to --pgdata: set TMPDIR" \
        "naming the file, TMPDIR, that --pgdata was not written, and what to do" || diag "$out"
    [[ ! -e "$dir/never-restored" && -z "$(ls -A "$dir/tiny-tmp")" ]]
    ok $? "nothing written to --pgdata, nothing left in TMPDIR"
    umount "$dir/tiny-tmp"
else
    skip "bk verify with a full TMPDIR" "cannot mount a 16 kB tmpfs here (not root?)"
    skip "bk restore with a full TMPDIR" "cannot mount a 16 kB tmpfs here (not root?)"
fi

# An object the repository cannot read at all (EIO from its disk, injected
# with LD_PRELOAD) says nothing about the object: bk verify stops with exit
# 5 naming it, and reports no damage, with the key and without.
if [[ "$(bk_test_backend)" == directory ]]; then
    eio_verify() { # CONFIG PATH-FRAGMENT [ARGS]
        local config="$1" fragment="$2"
        shift 2
        LD_PRELOAD="$ROOT/tests/integration/bk_test_eio.so" BK_TEST_EIO_PATH="$fragment" \
            "$BK" verify --config "$config" --source "$source_id" "$@" 2>&1
    }
    eio_seg="$(ls "$repo_files/$source_id/wal" | grep -E '^[0-9A-F]{24}$' | sort | sed -n 2p)"
    out="$(eio_verify "$dir/bk.conf" "/wal/$eio_seg")"
    is $? 5 "bk verify of a WAL object the repository cannot read fails with exit 5"
    like "$out" "could not check \"$eio_seg\": .*Input/output error" "naming the object and the cause"
    unlike "$out" "PROBLEM" "and reporting no damage"
    out="$(eio_verify "$dir/keyless.conf" "/wal/$eio_seg" --jobs 1)"
    is $? 5 "the same without the key (keyless check, one thread)"
    unlike "$out" "PROBLEM" "no damage reported there either"
    eio_rel="$(psql_q -c "SELECT pg_relation_filepath('r_main')")"
    out="$(eio_verify "$dir/bk.conf" "/snapshot/$snap1/data/$eio_rel")"
    is $? 5 "bk verify of a snapshot object the repository cannot read fails with exit 5"
    like "$out" "could not check \"$snap1/data/$eio_rel\": .*Input/output error" "naming the object"
    unlike "$out" "PROBLEM" "and reporting no damage"
    like "$out" "stopped before checking everything" "saying the run is not complete"
    like "$out" "STOPPED: [0-9]+ objects, 0 problems before it stopped" "in its summary too"
    unlike "$out" ": OK" "and calling nothing it did not finish OK"
    out="$(eio_verify "$dir/keyless.conf" "/snapshot/$snap1/data/$eio_rel")"
    is $? 5 "without the key too (the keyless check of the snapshot's objects)"
    unlike "$out" "PROBLEM" "with no damage reported"
    unlike "$out" ": OK" "and nothing called OK"
    LD_PRELOAD="$ROOT/tests/integration/bk_test_eio.so" BK_TEST_EIO_PATH="/snapshot/$snap1/data/$eio_rel" \
        "$BK" verify --config "$dir/bk.conf" --source "$source_id" --json >"$dir/verify-eio.json" 2>/dev/null
    is $? 5 "bk verify --json that stops: exit 5"
    is "$(json_get "$dir/verify-eio.json" "(d['ok'], d['complete'], d['sources'][0]['complete'])")" \
        "(False, False, False)" "and its document says the run is not complete"
    like "$(json_get "$dir/verify-eio.json" "d['stopped']['error']")" \
        "could not check \"$snap1/data/$eio_rel\"" "and why it stopped"
    # bk restore of that snapshot: the repository failed, not the target
    # nor the archive, so exit 5 (a script retries), naming the object.
    out="$(LD_PRELOAD="$ROOT/tests/integration/bk_test_eio.so" BK_TEST_EIO_PATH="/snapshot/$snap1/data/$eio_rel" \
        "$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-repo-eio" \
        --tablespace-map "$dir/ts1=$dir/ts-repo-eio" --snapshot "$snap1" 2>&1)"
    is $? 5 "bk restore that cannot read one snapshot object from the repository fails with exit 5" ||
        diag "$out"
    like "$out" "snapshot $snap1, file \"$eio_rel\": .*/snapshot/$snap1/data/$eio_rel.*Input/output error" \
        "naming the snapshot, the file, the object and the cause"
    like "$out" "the restore is incomplete: \"$dir/r-repo-eio\" will not start" "and saying the directory will not start"
    rm -rf "$dir/r-repo-eio" "$dir/ts-repo-eio"
else
    skip "bk verify of an object the repository cannot read" "needs a directory repository (EIO injected into open)"
fi

# ---- restore to each moment and compare
restore_and_check() { # NAME EXPECTED-SNAPSHOT DIGEST-OF DESCRIPTION [bk restore options]
    local name="$1" expected="$2" digest_of="$3" desc="$4"
    shift 4
    local target="$dir/r-$name" chosen
    [[ -n "${KEEP_TARGET:-}" ]] || rm -rf "$target" "$dir/ts-$name"
    "$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$target" \
        --tablespace-map "$dir/ts1=$dir/ts-$name" --json "$@" >"$dir/restore-$name.json" 2>"$dir/restore-$name.err"
    if ! ok $? "restore to $desc"; then
        diag "$(tail -n 5 "$dir/restore-$name.err")"
        return 1
    fi
    chosen="$(json_get "$dir/restore-$name.json" "d['snapshot']")"
    is "$chosen" "$expected" "it restores snapshot $expected, the newest ending before the target ($name)"
    if [[ "$name" == m1-time || "$name" == m3-time ]]; then
        # Written out and dropped from the page cache as it went (8 MiB at
        # a time; a patched file read back the same way): most of it is
        # not cached any more.
        local wide_size wide_cached
        if [[ "$(stat -f -c %T "$target")" == tmpfs ]]; then
            skip "the restore leaves a large file out of the page cache ($name)" \
                "$target is on tmpfs, whose pages are the file"
        else
            wide_size="$(stat -c %s "$target/$wide_rel")"
            wide_cached="$(fincore --bytes --noheadings --output RES "$target/$wide_rel")"
            [[ "$wide_cached" =~ ^[0-9]+$ ]] && ((wide_size > 32 * 1024 * 1024 && wide_cached * 2 < wide_size))
            ok $? "the restore left most of a $wide_size-byte file out of the page cache ($wide_cached bytes cached, $name)"
        fi
    fi
    is "$(stat -c '%U %a' "$target")" "postgres 700" "the restored directory belongs to postgres, mode 0700 ($name)"
    is "$(stat -c '%U %a' "$dir/ts-$name")" "postgres 700" "so does its tablespace location ($name)"
    is "$(find "$target" "$dir/ts-$name" ! -user postgres | head -n 3)" "" \
        "every file, directory and link of the restored tree belongs to postgres ($name)"
    is "$(readlink "$target/pg_tblspc/$(ls "$target/pg_tblspc")")" "$dir/ts-$name" \
        "its tablespace is where --tablespace-map put it ($name)"
    as_postgres "$BK_PGBIN/pg_verifybackup" --no-parse-wal "$target" >"$dir/verifybackup-$name.log" 2>&1
    ok $? "pg_verifybackup --no-parse-wal accepts it before it starts ($name)" ||
        diag "$(tail -n 5 "$dir/verifybackup-$name.log")"
    echo "port = $restored_port" >>"$target/postgresql.auto.conf"
    install -o postgres -m 644 /dev/null "$dir/r-$name.log"
    as_postgres "$BK_PGBIN/pg_ctl" -D "$target" -l "$dir/r-$name.log" -w -t 120 start >/dev/null 2>&1
    ok $? "it starts as postgres and recovers through bk wal-get ($name)" || {
        diag "$(tail -n 20 "$dir/r-$name.log")"
        return 1
    }
    running="$target"
    promoted() { [[ "$(rpsql -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" == f ]]; }
    wait_for 120 "promotion of $name" promoted
    ok $? "recovery reached the target and promoted ($name)" || diag "$(tail -n 20 "$dir/r-$name.log")"
    is "$(rpsql -c "$DIGEST_SQL")" "${M_DIGEST[$digest_of]}" "every table is exactly as at $digest_of ($name)"
    if [[ " $* " == *" --prefetch "* ]]; then
        like "$(cat "$dir/r-$name.log")" 'restored log file "[0-9A-F]{24}" from archive' \
            "recovery fetched WAL through bk wal-get --prefetch ($name)"
        [[ ! -e "$target/pg_wal/bk-prefetch" ]]
        ok $? "and no prefetched segment is left in pg_wal after promotion ($name)"
    fi
    as_postgres "$BK_PGBIN/pg_amcheck" -h 127.0.0.1 -p "$restored_port" -U postgres --all \
        --install-missing --heapallindexed >"$dir/amcheck-$name.log" 2>&1
    ok $? "pg_amcheck --all finds nothing ($name)" || diag "$(tail -n 5 "$dir/amcheck-$name.log")"
    stop_restored
    as_postgres "$BK_PGBIN/pg_checksums" --check -D "$target" >"$dir/checksums-$name.log" 2>&1
    ok $? "pg_checksums --check passes on the stopped cluster ($name)" ||
        diag "$(tail -n 5 "$dir/checksums-$name.log")"
}
cleanup_restore() { rm -rf "$dir/r-$1" "$dir/ts-$1"; }

for m in m1 m2; do
    restore_and_check "$m-time" "$snap1" "$m" "the time of $m (${M_TIME[$m]})" --target-time "${M_TIME[$m]}"
    cleanup_restore "$m-time"
    restore_and_check "$m-lsn" "$snap1" "$m" "the LSN of $m (${M_LSN[$m]})" --target-lsn "${M_LSN[$m]}"
    cleanup_restore "$m-lsn"
done
# The disk fails a write the page cache had taken: bk restore learns of it
# when it waits for that part of the file to be written out (EIO from
# sync_file_range, injected with LD_PRELOAD) and fails, naming the file.
# It may not go on: the wait marked the error seen, and the fsync at the
# end would not report it again.
rm -rf "$dir/r-eio" "$dir/ts-eio"
out="$(LD_PRELOAD="$ROOT/tests/integration/bk_test_eio.so" BK_TEST_EIO_WRITEBACK="/$wide_rel" \
    "$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-eio" \
    --tablespace-map "$dir/ts1=$dir/ts-eio" --snapshot "$snap1" 2>&1)"
is $? 1 "a restore whose disk fails a write it already took (EIO while waiting for it) fails with exit 1"
like "$out" "could not write \"$dir/r-eio/$wide_rel\": Input/output error" "naming the file and the cause"
like "$out" "the restore is incomplete: \"$dir/r-eio\" will not start" "and saying the directory will not start"
[[ ! -e "$dir/r-eio/global/pg_control" ]]
ok $? "and it has no pg_control"
# The page cache may still hold what the disk failed to write, clean: a
# rerun with --delta must not find the file there and keep it.
[[ -e "$dir/r-eio/$wide_rel" && ! -s "$dir/r-eio/$wide_rel" ]]
ok $? "the file it could not write is cut to nothing, so that --delta rewrites it"
# A write error NFS reports only at close() (EIO from close, injected with
# LD_PRELOAD), while --delta rewrites that file: the restore fails naming
# it, and removes it rather than leave the page cache's copy to a later
# --delta, which would find the recorded content there and keep it.
out="$(LD_PRELOAD="$ROOT/tests/integration/bk_test_eio.so" BK_TEST_EIO_CLOSE="/$wide_rel" \
    "$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-eio" \
    --tablespace-map "$dir/ts1=$dir/ts-eio" --snapshot "$snap1" --delta 2>&1)"
is $? 1 "a restore whose close() of a file reports a deferred write error fails with exit 1"
like "$out" "could not write \"$dir/r-eio/$wide_rel\": Input/output error" "naming the file and the cause"
[[ ! -e "$dir/r-eio/$wide_rel" ]]
ok $? "and removes that file, so that --delta rewrites it"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-eio" \
    --tablespace-map "$dir/ts1=$dir/ts-eio" --snapshot "$snap1" --delta >"$dir/restore-eio-delta.out" 2>&1
ok $? "bk restore --delta over it then completes" || diag "$(tail -n 5 "$dir/restore-eio-delta.out")"
[[ -s "$dir/r-eio/$wide_rel" ]]
ok $? "writing that file again"
as_postgres "$BK_PGBIN/pg_verifybackup" --no-parse-wal "$dir/r-eio" >"$dir/verifybackup-eio.log" 2>&1
ok $? "and pg_verifybackup accepts what it restored" || diag "$(tail -n 5 "$dir/verifybackup-eio.log")"
rm -rf "$dir/r-eio" "$dir/ts-eio"

for m in m3 m4; do
    restore_and_check "$m-time" "$snap2" "$m" "the time of $m (${M_TIME[$m]}), through the incremental chain" \
        --target-time "${M_TIME[$m]}" --jobs 3
    cleanup_restore "$m-time"
    restore_and_check "$m-lsn" "$snap2" "$m" "the LSN of $m (${M_LSN[$m]}), through the incremental chain" \
        --target-lsn "${M_LSN[$m]}" --prefetch 4
    cleanup_restore "$m-lsn"
done

# ---- durability: every file and directory fsynced, in a batch, before anything says "complete"
# bk restore under strace: no restored file may be left unsynced, and no
# fsync may come after backup_label, the recovery settings, the manifest or
# pg_control are renamed into place, or after the report is printed.
FSYNC_ORDER="$ROOT/tests/lib/restore_fsync_order.py"
strace -f -y -qq -o "$dir/restore-strace.log" -e trace=fsync,fdatasync,rename,renameat,renameat2,write \
    "$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-strace" \
    --tablespace-map "$dir/ts1=$dir/ts-strace" --target-lsn "${M_LSN[m3]}" --jobs 3 --json \
    >"$dir/restore-strace.json" 2>"$dir/restore-strace.err"
ok $? "bk restore through the incremental chain with --jobs 3, under strace" ||
    diag "$(tail -n 5 "$dir/restore-strace.err")"
out="$("$FSYNC_ORDER" "$dir/restore-strace.log" "$dir/r-strace" "$dir/ts-strace")"
ok $? "every restored file and directory was fsynced before the first rename, pg_control last, the report after" ||
    diag "$out"
like "$out" "^[1-9][0-9]{2,} files and [1-9][0-9]+ directories checked" "the check saw the whole tree ($out)"
as_postgres "$BK_PGBIN/pg_verifybackup" --no-parse-wal "$dir/r-strace" >"$dir/verifybackup-strace.log" 2>&1
ok $? "pg_verifybackup --no-parse-wal accepts what was restored under strace"
# The check itself: a trace with one data file's fsync taken out, or moved
# after pg_control's rename, must fail, naming the file.
victim="$(find "$dir/r-strace/base" -type f -size +100k | head -n 1)"
grep -v "<$victim>" "$dir/restore-strace.log" >"$dir/strace-lost.log"
out="$("$FSYNC_ORDER" "$dir/strace-lost.log" "$dir/r-strace" "$dir/ts-strace")"
is $? 1 "the check fails on a trace that lost one file's fsync"
like "$out" "file $victim was never fsynced" "naming the file"
{ grep -v "<$victim>" "$dir/restore-strace.log"
    grep "<$victim>" "$dir/restore-strace.log" | sed 's/ <unfinished \.\.\.>$/) = 0/'; } >"$dir/strace-late.log"
out="$("$FSYNC_ORDER" "$dir/strace-late.log" "$dir/r-strace" "$dir/ts-strace")"
is $? 1 "and on a trace where that fsync comes after the restore completed"
like "$out" "file $victim was fsynced only after the first rename" "naming the file"
cleanup_restore strace

like "$(json_get "$dir/restore-m4-lsn.json" "d['recovery_settings']['restore_command']")" \
    "^$BK wal-get --config $dir/bk.conf --source $source_id --prefetch 4 %f %p\$" \
    "restore_command calls this bk's wal-get with absolute paths and --prefetch"
is "$(json_get "$dir/restore-m1-time.json" "d['recovery_settings']['archive_mode']")|$(json_get "$dir/restore-m1-time.json" "d['recovery_settings']['recovery_target_action']")" \
    "off|promote" "the restored cluster does not archive, and promotes at the target"
restore_and_check xid "$snap1" m2 "transaction $xid, found in the WAL before the incremental snapshot" \
    --target-xid "$xid"
like "$(json_get "$dir/restore-xid.json" "d['target']")" "found_at_lsn" "the xid's commit record was located with pg_waldump"
cleanup_restore xid
restore_and_check xid-snap "$snap1" m2 "transaction $xid with --snapshot" --target-xid "$xid" --snapshot "$snap1"
unlike "$(json_get "$dir/restore-xid-snap.json" "d['target']")" "found_at_lsn" \
    "with --snapshot the xid was not searched for: no found_at_lsn (it was \"0/0\")"
cleanup_restore xid-snap
restore_and_check name "$snap2" m4 "restore point bk_restore_point, found after the incremental snapshot" \
    --target-name bk_restore_point
cleanup_restore name
restore_and_check name-snap "$snap1" m4 "restore point bk_restore_point from the older snapshot (--snapshot)" \
    --target-name bk_restore_point --snapshot "$snap1"
cleanup_restore name-snap
restore_and_check immediate "$snap2" m2 "the incremental snapshot's consistency point (--target immediate)" \
    --target immediate
cleanup_restore immediate
restore_and_check end "$snap2" m5 "the end of the archive (no target)"
# keep r-end: the --delta tests below reuse it

# ---- non-empty targets, --delta
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-end" \
    --tablespace-map "$dir/ts1=$dir/ts-end" --target-time "${M_TIME[m1]}" 2>&1)"
is $? 2 "a non-empty target directory is refused without --delta"
like "$out" "the target directory \"$dir/r-end\" is not empty" "saying so"
test -f "$dir/r-end/global/pg_control"
ok $? "and the directory is left as it was"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-fresh" \
    --tablespace-map "$dir/ts1=$dir/ts-end" 2>&1)"
is $? 2 "a non-empty tablespace location is refused without --delta"
like "$out" "the location \"$dir/ts-end\" of tablespace [0-9]+ is not empty" "saying so"
rm -rf "$dir/r-fresh"
touch "$dir/r-end/stray-file"
mkdir -p "$dir/r-end/base/stray-dir"
# What the owner may leave in a --delta target is never followed: links
# where directories belong, and a file with another name outside.
rm -rf "$dir/planted-a" "$dir/planted-b" "$dir/r-end/pg_tblspc.was" "$dir/outside"
install -d -m 755 "$dir/planted-a" "$dir/planted-b"
echo planted >"$dir/planted-a/marker"
echo planted >"$dir/planted-b/marker"
mv "$dir/r-end/pg_tblspc" "$dir/r-end/pg_tblspc.was"
as_postgres ln -s "$dir/planted-a" "$dir/r-end/pg_tblspc"
rm -rf "$dir/r-end/base/1"
as_postgres ln -s "$dir/planted-b" "$dir/r-end/base/1"
install -d -o postgres -m 700 "$dir/outside"
as_postgres ln "$dir/r-end/PG_VERSION" "$dir/outside/link"
as_postgres sh -c "echo 'not the version' >'$dir/outside/link'"
KEEP_TARGET=1 restore_and_check end "$snap1" m1 "m1 again with --delta over the promoted cluster" \
    --target-time "${M_TIME[m1]}" --delta
like "$(json_get "$dir/restore-end.json" "(d['files_unchanged'], d['files_removed'])")" '^\([1-9][0-9]*, [1-9][0-9]*\)$' \
    "--delta kept unchanged files and removed what the snapshot does not have"
[[ ! -e "$dir/r-end/stray-file" && ! -e "$dir/r-end/base/stray-dir" ]]
ok $? "a stray file and directory are gone"
is "$(stat -c '%U %a' "$dir/planted-a" "$dir/planted-b" | tr '\n' ' ')" "root 755 root 755 " \
    "directories that links in the target pointed to keep their owner and mode"
is "$(ls -A "$dir/planted-a" "$dir/planted-b" | tr '\n' ' ')" "$dir/planted-a: marker  $dir/planted-b: marker " \
    "and nothing was written into them"
[[ -d "$dir/r-end/pg_tblspc" && ! -L "$dir/r-end/pg_tblspc" && -d "$dir/r-end/base/1" && ! -L "$dir/r-end/base/1" ]]
ok $? "the links were replaced by directories"
is "$(cat "$dir/outside/link")" "not the version" \
    "a differing file is written anew: its other name (a hard link) keeps its content"
is "$(cat "$dir/r-end/PG_VERSION")" 15 "and the restored file has the recorded one"
rm -rf "$dir/planted-a" "$dir/planted-b" "$dir/outside"
cleanup_restore end

# ---- run as postgres: no ownership change needed
install -d -o postgres -m 700 "$dir/as-postgres"
as_postgres "$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/as-postgres/data" \
    --tablespace-map "$dir/ts1=$dir/as-postgres/ts" --target-lsn "${M_LSN[m3]}" >"$dir/as-postgres.log" 2>&1
ok $? "bk restore also runs as the postgres user" || diag "$(tail -n 5 "$dir/as-postgres.log")"
is "$(stat -c '%U' "$dir/as-postgres/data/PG_VERSION")" postgres "its files belong to postgres"
rm -rf "$dir/as-postgres"

# ---- --archive, --target-timeline: what recovery is told
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-archive" \
    --tablespace-map "$dir/ts1=$dir/ts-archive" --target-lsn "${M_LSN[m1]}" \
    --target-timeline current --archive 2>&1)"
ok $? "restore with --archive and --target-timeline current"
like "$out" "WARNING: --archive: .*timelines collide" "warns that two clusters archiving onto one source collide"
conf="$(cat "$dir/r-archive/postgresql.auto.conf")"
unlike "$conf" "archive_mode" "--archive leaves archive_mode to the configuration"
like "$conf" "recovery_target_timeline = '[1-9][0-9]*'" "the target timeline is written, as the id bk checked the WAL for"
like "$conf" "recovery_target_lsn = '${M_LSN[m1]}'" "and the target"
test -f "$dir/r-archive/recovery.signal" && test -f "$dir/r-archive/backup_label"
ok $? "recovery.signal and backup_label are there"
cleanup_restore archive

# ---- --repo on the command line: restore_command names the same
# repository, an s3:// location as given (it is no path to resolve), a
# directory by its real path
"$BK" restore --config "$dir/bk.conf" --repo "$repo" --source "$source_id" --pgdata "$dir/r-repo" \
    --tablespace-map "$dir/ts1=$dir/ts-repo" --target-lsn "${M_LSN[m1]}" >"$dir/restore-repo.log" 2>&1
ok $? "restore with --repo $repo" || diag "$(tail -n 5 "$dir/restore-repo.log")"
expected_repo="$repo"
[[ "$(bk_test_backend)" == s3 ]] || expected_repo="$(realpath "$repo")"
grep -F "restore_command = '" "$dir/r-repo/postgresql.auto.conf" | grep -qF -- " --repo $expected_repo "
ok $? "restore_command passes --repo $expected_repo to bk wal-get" ||
    diag "$(grep restore_command "$dir/r-repo/postgresql.auto.conf")"
test -f "$dir/r-repo/global/pg_control"
ok $? "and the restore is complete"
cleanup_restore repo

# ---- refusals
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-early" \
    --target-time "${M_TIME[m0]}" 2>&1)"
is $? 1 "a target before the oldest snapshot is refused (exit 1)"
like "$out" "no restorable snapshot of source \"$source_id\" ends at or before the target" "saying no snapshot fits"
[[ ! -e "$dir/r-early" ]]
ok $? "and creates nothing"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-x" \
    --target-time "${M_TIME[m1]}" --snapshot "$snap2" 2>&1)"
is $? 1 "--snapshot newer than the target is refused"
like "$out" "snapshot $snap2 ends .* after the target" "saying why"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-x" --snapshot nosuch 2>&1)"
is $? 1 "an unknown --snapshot is refused"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-x" \
    --target-xid 4000000000 2>&1)"
is $? 1 "an xid that never committed is refused"
like "$out" "HINT: Name the snapshot to restore from with --snapshot ID" "asking for --snapshot"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-x" \
    --tablespace-map /nowhere=/elsewhere 2>&1)"
is $? 2 "a --tablespace-map for no tablespace of the snapshot is refused"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-x" \
    --target-time "${M_TIME[m1]}" --target-lsn 0/1 2>&1)"
is $? 2 "two targets are a usage error"
out="$("$BK" restore --config "$dir/keyless.conf" --source "$source_id" --pgdata "$dir/r-x" 2>&1)"
is $? 3 "no key is a configuration error (exit 3)"
[[ ! -e "$dir/r-x" ]]
ok $? "none of the refusals created the target"

# ---- wal-get --prefetch: spools the next segments, serves them, keeps exit codes
first_seg="$(ls "$repo_files/$source_id/wal" | grep -E '^[0-9A-F]{24}$' | sort | sed -n 2p)"
mkdir -p "$dir/pf/pg_wal" "$dir/pf/pg_tblspc" "$dir/direct"
# These segments hold the CREATE TABLESPACE of bk_restore_ts: bk wal-get
# serves them to a cluster whose own tablespace is there (restored in place
# on another host), never to one it would link to the source's live one.
ln -s "$dir/ts1" "$dir/pf/pg_tblspc/$(psql_q -c "SELECT oid FROM pg_tablespace WHERE spcname = 'bk_restore_ts'")"
wal_get() { (cd "$dir/pf" && "$BK" wal-get --config "$dir/bk.conf" --source "$source_id" "$@"); }
# next_seg NAME N: the segment N after NAME (16 MiB segments: 256 a log id).
next_seg() {
    local n=$((16#${1:8:8} * 256 + 16#${1:16:8} + $2))
    printf '%s%08X%08X' "${1:0:8}" $((n / 256)) $((n % 256))
}
wal_get --prefetch 3 "$first_seg" pg_wal/RECOVERYXLOG
is $? 0 "wal-get --prefetch 3 serves $first_seg"
spooled() { for n in 1 2 3; do test -f "$dir/pf/pg_wal/bk-prefetch/$(next_seg "$first_seg" $n)" || return 1; done; }
wait_for 60 "three segments prefetched" spooled
ok $? "and a background process spools the next three into pg_wal/bk-prefetch" ||
    diag "$(ls -la "$dir/pf/pg_wal/bk-prefetch" 2>&1; cat "$dir/pf/pg_wal/bk-prefetch/prefetch.log" 2>&1)"
second="$(next_seg "$first_seg" 1)"
wal_get --prefetch 3 "$second" pg_wal/RECOVERYXLOG
is $? 0 "the next call succeeds"
[[ ! -e "$dir/pf/pg_wal/bk-prefetch/$second" ]]
ok $? "serving it from the spool (moved into place)"
"$BK" wal-get --config "$dir/bk.conf" --source "$source_id" "$second" "$dir/direct/$second"
cmp -s "$dir/pf/pg_wal/RECOVERYXLOG" "$dir/direct/$second"
ok $? "byte-identical to what wal-get decrypts directly"
beyond="$(ls "$repo_files/$source_id/wal" | grep -E '^[0-9A-F]{24}$' | sort | tail -n 1)"
beyond="$(next_seg "$beyond" 1)"
wal_get --prefetch 3 "$beyond" pg_wal/RECOVERYXLOG 2>/dev/null
is $? 1 "a segment beyond the archive's end still exits 1 with --prefetch"
wal_get --prefetch x "$second" pg_wal/RECOVERYXLOG 2>/dev/null
is $? 200 "a bad --prefetch value exits 200, like every other failure"
mkdir -p "$dir/pf/pg_wal/bk-prefetch" && printf 'short' >"$dir/pf/pg_wal/bk-prefetch/$second"
wal_get --prefetch 1 "$second" pg_wal/RECOVERYXLOG
cmp -s "$dir/pf/pg_wal/RECOVERYXLOG" "$dir/direct/$second"
ok $? "a spooled file of the wrong size is discarded, the segment decrypted again"

# ---- one corrupted chunk: verify and restore fail naming the file, nothing can start
victim_rel="$(psql_q -c "SELECT pg_relation_filepath('r_main')")"
victim="$repo_files/$source_id/snapshot/$snap1/data/$victim_rel"
cp "$victim" "$dir/victim.orig"
"$ROOT/tests/lib/tamper_frame.py" "$victim"
"$BK" verify --config "$dir/keyless.conf" --source "$source_id" >/dev/null 2>&1
is $? 0 "with its CRC fixed, the corrupted chunk passes the keyless checks"
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
is $? 4 "bk verify with the key fails (exit 4)"
like "$out" "snapshot $snap1, file \"$victim_rel\": .*failed authentication" "naming the snapshot and the file"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-corrupt" \
    --tablespace-map "$dir/ts1=$dir/ts-corrupt" --target-time "${M_TIME[m1]}" 2>&1)"
is $? 4 "bk restore fails too (exit 4)"
like "$out" "snapshot $snap1, file \"$victim_rel\"" "naming the snapshot and the file"
like "$out" "will not start" "and saying the directory cannot start"
[[ ! -e "$dir/r-corrupt/global/pg_control" && ! -e "$dir/r-corrupt/backup_label" ]]
ok $? "the half-restored directory has no pg_control and no backup_label"
# Run as root, bk works where postgres cannot reach (a superuser of
# another cluster runs programs as postgres): until the restore completes,
# the directory and its tablespace are root's, mode 0700.
is "$(stat -c '%U %a' "$dir/r-corrupt" "$dir/ts-corrupt" | tr '\n' ' ')" "root 700 root 700 " \
    "and it, and its tablespace location, are still root's, mode 0700"
runuser -u postgres -- test -x "$dir/r-corrupt"
isnt $? 0 "postgres cannot reach into it"
cp "$dir/victim.orig" "$victim"
rm -rf "$dir/r-corrupt" "$dir/ts-corrupt"

# ---- a small file's object cut short: the restore fails naming it (from
# S3, that object is opened ahead of its turn, and the reading of what that
# open found fails the restore)
short_rel="$(psql_q -c "SELECT pg_relation_filepath('r_ts_pkey')")"
short="$repo_files/$source_id/snapshot/$snap1/data/$short_rel"
[[ -f "$short" && $(stat -c %s "$short") -lt 1048576 ]]
ok $? "r_ts_pkey is one small object ($short_rel)"
cp "$short" "$dir/short.orig"
truncate -s -100 "$short"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-short" \
    --tablespace-map "$dir/ts1=$dir/ts-short" --target-time "${M_TIME[m1]}" 2>&1)"
is $? 4 "bk restore of a snapshot with an object cut short fails (exit 4)"
like "$out" "snapshot $snap1, file \"$short_rel\": .*truncated" "naming the snapshot, the file and what is wrong"
[[ ! -e "$dir/r-short/global/pg_control" && ! -e "$dir/r-short/backup_label" ]]
ok $? "the half-restored directory has no pg_control and no backup_label"
cp "$dir/short.orig" "$short"
rm -rf "$dir/r-short" "$dir/ts-short"

# ---- an empty file is made from the record, its object not read (an object
# store's round trip per empty file); bk verify still reads that object
empty_rel="$(psql_q -c "SELECT pg_relation_filepath('pg_largeobject')")"
empty="$repo_files/$source_id/snapshot/$snap1/data/$empty_rel"
[[ -f "$empty" ]]
ok $? "pg_largeobject has an object in the snapshot ($empty_rel)"
cp "$empty" "$dir/empty.orig"
truncate -s 20 "$empty"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-empty" \
    --tablespace-map "$dir/ts1=$dir/ts-empty" --target-time "${M_TIME[m1]}" >"$dir/r-empty.log" 2>&1
is $? 0 "bk restore does not read the object of an empty file"
[[ -f "$dir/r-empty/$empty_rel" && ! -s "$dir/r-empty/$empty_rel" ]]
ok $? "the file is there, empty"
[[ "$(stat -c %a "$dir/r-empty/$empty_rel")" == 600 ]]
ok $? "with the mode the record gives it"
out="$("$BK" verify --config "$dir/bk.conf" --source "$source_id" 2>&1)"
is $? 4 "bk verify reads it and fails (exit 4)"
like "$out" "snapshot $snap1, file \"$empty_rel\"" "naming the snapshot and the file"
cp "$dir/empty.orig" "$empty"
rm -rf "$dir/r-empty" "$dir/ts-empty"

# ---- bk expire
out="$("$BK" expire --config "$dir/bk.conf" --source "$source_id" --retain-days 7 --dry-run 2>&1)"
is $? 0 "expire --retain-days 7 --dry-run"
like "$out" "would remove 0 snapshots and [0-9]+ WAL files" "keeps every snapshot: all of them end within the window"
take_snapshot s4
ok $? "a second full snapshot: $SNAP_ID"
snap4="$SNAP_ID"
wait_for 180 "WAL archived" archived_through_now
wait_for 60 "snapshot restorable" restorable "$snap4"
ok $? "it is restorable"
"$BK" expire --config "$dir/bk.conf" --source "$source_id" --retain-full 1 --dry-run --json >"$dir/expire-dry.json"
is "$(json_get "$dir/expire-dry.json" "sorted(s['id'] for s in d['snapshots'] if s['removed'])")" \
    "$(python3 -c "import sys; print(sorted(sys.argv[1:]))" "$snap1" "$snap2")" \
    "expire --retain-full 1 --dry-run would remove the older full snapshot and its incremental"
test -d "$repo_files/$source_id/snapshot/$snap1"
ok $? "a dry run removes nothing"
test ! -e "$repo_files/$source_id/expired"
ok $? "and records nothing"
is "$(json_get "$dir/expire-dry.json" "(d['authenticated'], d['warnings'], [s['id'] for s in d['snapshots'] if s['authenticated'] is False])")" \
    "(True, [], [])" "with the key, every snapshot's record authenticates, and nothing is said"
# Without the key, the same dry run says that its decision rests on
# metadata nothing authenticates, and how to run it with the key.
out="$("$BK" expire --config "$dir/keyless.conf" --source "$source_id" --retain-full 1 --dry-run 2>&1 >/dev/null)"
is $? 0 "expire --dry-run without the key"
like "$out" "warning: no key: .*run bk expire with the restore key" "says it judged on unauthenticated metadata, and how to run it with the key" ||
    diag "$out"
# A key file configured that does not load stops it, rather than have it
# go on without the check.
out="$("$BK" expire --config "$dir/bk.conf" --key-file "$dir/no-such.key" --source "$source_id" --retain-full 1 --dry-run 2>&1)"
isnt $? 0 "expire with a key file that does not load fails" || diag "$out"
like "$out" "no-such.key" "... naming it" || diag "$out"
# Two runs at once (two cron jobs, or a cron job and a manual run), and a
# dry run beside them: what one removes between another's listing and its
# read is gone, not damage, and no run fails over it.
"$BK" expire --config "$dir/bk.conf" --source "$source_id" --retain-full 1 \
    >"$dir/expire-beside.log" 2>&1 &
beside_pid=$!
"$BK" expire --config "$dir/bk.conf" --source "$source_id" --retain-full 1 --dry-run \
    >"$dir/expire-dry-beside.log" 2>&1 &
dry_pid=$!
out="$("$BK" expire --config "$dir/bk.conf" --source "$source_id" --retain-full 1 2>&1)"
is $? 0 "expire --retain-full 1"
like "$out" "keep   snapshot $snap4" "keeps the newest full snapshot"
wait "$beside_pid"
is $? 0 "a second bk expire at the same time succeeds too" || diag "$(cat "$dir/expire-beside.log")"
wait "$dry_pid"
is $? 0 "and so does a dry run beside them" || diag "$(cat "$dir/expire-dry-beside.log")"
[[ -z "$(find "$repo_files/$source_id/snapshot/$snap1" "$repo_files/$source_id/snapshot/$snap2" -type f 2>/dev/null)" ]]
ok $? "removes the older snapshots"
start_seg="$(grep -o 'START WAL LOCATION: [^ ]* (file [0-9A-F]*' "$dir/base-s4/backup_label" | sed 's/.*file //')"
oldest_wal="$(ls "$repo_files/$source_id/wal" | grep -E '^[0-9A-F]{24}$' | sort | head -n 1)"
is "$oldest_wal" "$start_seg" "and the WAL before the kept snapshot's start segment, not one segment more"
# Before removing WAL, bk expire recorded the last segment it removes of
# the timeline: a restore still reading that WAL stops there, never
# promotes as at the end of the archive.
expired_rec="$(ls "$repo_files/$source_id/expired/wal" 2>/dev/null)"
like "$expired_rec" "^${start_seg:0:8}[0-9A-F]{16}\$" \
    "bk expire recorded the last WAL segment it removed ($expired_rec)"
[[ "$expired_rec" < "$start_seg" && ! -e "$repo_files/$source_id/wal/$expired_rec" ]]
ok $? "one before the kept snapshot's start segment, removed"
out="$("$BK" wal-get --config "$dir/bk.conf" --source "$source_id" "$expired_rec" "$dir/wal-get-expired" 2>&1)"
is $? 200 "bk wal-get of it exits 200 (recovery stops), not 1"
like "$out" "was removed by bk expire" "saying bk expire removed it"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-x" \
    --target-time "${M_TIME[m3]}" 2>&1)"
is $? 1 "after expiry, a moment before the kept snapshot can no longer be restored"
"$BK" verify --config "$dir/bk.conf" --source "$source_id" >"$dir/verify-after-expire.log" 2>&1
is $? 0 "bk verify after expire: what is left is whole"
start_seg_path="$repo_files/$source_id/wal/$start_seg"
mv "$start_seg_path" "$dir/hidden-segment"
out="$("$BK" list --config "$dir/bk.conf" --source "$source_id" 2>&1)"
like "$out" "$snap4  full .*NOT restorable: WAL missing: WAL segment $start_seg is not archived" \
    "a snapshot whose WAL is missing is not restorable, and bk list says which segment"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-x" 2>&1)"
is $? 1 "so bk restore finds no snapshot to restore"
mv "$dir/hidden-segment" "$start_seg_path"
restore_and_check after-expire "$snap4" m5 "the end of the archive from the kept snapshot"
cleanup_restore after-expire

# ---- an interrupted snapshot
# An interrupted snapshot (no record) is never restorable.
take_snapshot s5 --no-record
cancelled="$SNAP_ID"
cancelled_here() { test -d "$repo_files/$source_id/snapshot/$cancelled/data"; }
wait_for 60 "cancelled snapshot's objects archived" cancelled_here
out="$("$BK" list --config "$dir/bk.conf" --source "$source_id" 2>&1)"
like "$out" "$cancelled  NOT restorable: incomplete: no record" "bk list shows a snapshot without its record as incomplete"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-x" --snapshot "$cancelled" 2>&1)"
is $? 1 "restoring it is refused"
like "$out" "snapshot $cancelled is not restorable: incomplete" "saying why"
out="$("$BK" expire --config "$dir/bk.conf" --source "$source_id" --retain-full 1 --dry-run 2>&1)"
like "$out" "keep   snapshot $cancelled .*in progress" \
    "bk expire keeps it while it is young (its objects may still be arriving)"
like "$out" "would remove 0 snapshots and 0 WAL files" "and every WAL file written since it began"

# ---- a time target before a lost WAL segment: decided by the commits before it
# Recovery to a time stops only at a commit (or abort) stamped after it.
# When the source archived a segment (its "created" metadata) does not say
# when its last commit was: after a Kafka outage or a slow archiver the
# segment before a gap can be archived long after it.  Here the segment that
# holds commit C1 is switched out, so archived, about 3 s after C1, and the
# next segment is lost: a target 1.5 s after C1 is refused before anything
# is written, naming the lost segment; a target before C1 restores.
# Nothing else may commit meanwhile: autovacuum off (bk_test.conf is
# emptied at cleanup).
echo "autovacuum = off" >>"$BK_PGDATA/bk_test.conf"
psql_q -c "SELECT pg_reload_conf()" >/dev/null
no_autovacuum() {
    [[ "$(psql_q -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")" == 0 ]]
}
wait_for 60 "autovacuum workers to finish" no_autovacuum
ok $? "autovacuum is off: nothing but this test commits"
in_repo() { test -f "$repo_files/$source_id/wal/$1"; }
psql_q -c "CREATE TABLE r_gap (id int PRIMARY KEY, v text NOT NULL)" >/dev/null
# The digests from here on include r_gap.
DIGEST_SQL_BEFORE_GAP="$DIGEST_SQL"
DIGEST_SQL="SELECT ($DIGEST_SQL_BEFORE_GAP) || ' r_gap:' || (SELECT count(*) || '/' || coalesce(max(id), 0) FROM r_gap)"
moment gap-before "INSERT INTO r_gap VALUES (1, 'before the target');"
ok $? "moment gap-before: one row"
# The first commit after gap-before: recovery to gap-before stops before it.
# Then a few MB of WAL before C1, so that PostgreSQL's WAL read-ahead from
# that stop point cannot reach the lost segment.
psql_q -c "INSERT INTO r_gap VALUES (2, 'recovery to gap-before stops before this commit')" >/dev/null
moment gap-c1 "INSERT INTO r_gap SELECT g, repeat(md5(g::text), 4) FROM generate_series(3, 20002) g;"
ok $? "moment gap-c1: commit C1, after 20000 rows"
sleep 3
c1_switch="$(psql_q -c "SELECT pg_switch_wal()")"
c1_seg="$(psql_q -c "SELECT pg_walfile_name('$c1_switch')")"
lost_seg="$(next_seg "$c1_seg" 1)"
psql_q -c "INSERT INTO r_gap VALUES (20003, 'in the lost segment')" >/dev/null
switched="$(psql_q -c "SELECT pg_walfile_name(pg_switch_wal())")"
is "$switched" "$lost_seg" "the segment after C1's ($c1_seg) is $lost_seg"
psql_q -c "INSERT INTO r_gap VALUES (20004, 'after the lost segment')" >/dev/null
after_seg="$(psql_q -c "SELECT pg_walfile_name(pg_switch_wal())")"
wait_for 180 "$c1_seg, $lost_seg and $after_seg archived" eval "in_repo $c1_seg && in_repo $lost_seg && in_repo $after_seg"
ok $? "$c1_seg (C1's, archived about 3 s after C1), $lost_seg and $after_seg are archived"
mv "$repo_files/$source_id/wal/$lost_seg" "$dir/lost-segment"
# An LSN in the unused rest of C1's segment, after its switch (what
# pg_switch_wal() returned): recovery stops after the first record at or
# after it, the first of the lost segment, so it needs that segment.
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-tail" \
    --tablespace-map "$dir/ts1=$dir/ts-tail" --target-lsn "$c1_switch" 2>&1)"
is $? 4 "a target LSN after the switch that ended $c1_seg ($c1_switch) is refused (exit 4)" || diag "$out"
like "$out" "WAL file $lost_seg is missing from the archive of source \"$source_id\"" \
    "naming the lost segment, where recovery to it stops"
[[ ! -e "$dir/r-tail" && ! -e "$dir/ts-tail" ]]
ok $? "and nothing is written"
late="$(psql_q -c "SELECT to_char(('${M_TIME[gap-c1]}'::timestamptz + interval '1.5 s') AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-gap-late" \
    --tablespace-map "$dir/ts1=$dir/ts-gap-late" --target-time "$late" 2>&1)"
is $? 4 "a target 1.5 s after C1, the last commit before the lost segment, is refused (exit 4)" || diag "$out"
like "$out" "WAL file $lost_seg is missing from the archive of source \"$source_id\"" "naming the lost segment"
like "$out" "HINT: The target time [^(]* is at or after the last commit or abort before the gap \\([0-9T:.-]+Z, at LSN [0-9A-F]+/[0-9A-F]+\\)" \
    "the hint says the target lies past the last commit before the gap, and where that is"
last_commit="$(sed -n 's/.*before the gap (\([0-9T:.-]*Z\), at LSN.*/\1/p' <<<"$out")"
is "$(psql_q -c "SELECT '$last_commit'::timestamptz > '${M_TIME[gap-before]}'::timestamptz
    AND '$last_commit'::timestamptz <= '${M_TIME[gap-c1]}'::timestamptz")" t \
    "that commit is C1 ($last_commit)"
[[ ! -e "$dir/r-gap-late" && ! -e "$dir/ts-gap-late" ]]
ok $? "and nothing is written"
restore_and_check gap-before "$snap4" gap-before "gap-before (${M_TIME[gap-before]}), before the lost segment" \
    --target-time "${M_TIME[gap-before]}"
like "$(cat "$dir/restore-gap-before.err")" "WARNING: WAL file $lost_seg is missing from the archive, after the target time: recovery stops before it" \
    "with a warning naming the lost segment"
grep -qx "recovery_prefetch = 'off'" "$dir/r-gap-before/postgresql.auto.conf"
ok $? "and recovery_prefetch = 'off', so that reading ahead cannot ask for it"
cleanup_restore gap-before
mv "$dir/lost-segment" "$repo_files/$source_id/wal/$lost_seg"
DIGEST_SQL="$DIGEST_SQL_BEFORE_GAP"

# ---- targets past the last commit or record archived
# A quiet period after the last commit, then a switch: the WAL after the
# commit is archived, and the segment after the switch is not yet.  A
# target time in the quiet period is never reached (PostgreSQL checks it at
# commits, replays everything and fails: "recovery ended before configured
# recovery target was reached"): refused before anything is written,
# giving the last commit.  An LSN at the switch is reached only once the
# next segment is archived: accepted with a warning naming it.
before_last="$(psql_q -c "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'" \
    -c "INSERT INTO r_gap VALUES (20005, 'the last commit')" | head -n 1)"
sleep 1
quiet="$(psql_q -c "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")"
sleep 1
end_switch="$(psql_q -c "SELECT pg_switch_wal()")"
end_seg="$(psql_q -c "SELECT pg_walfile_name('$end_switch')")"
wait_for 120 "$end_seg archived" in_repo "$end_seg"
ok $? "the last commit and a switch 2 s later are archived ($end_seg)"
out="$("$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-quiet" \
    --tablespace-map "$dir/ts1=$dir/ts-quiet" --target-time "$quiet" 2>&1)"
is $? 1 "a target time 1 s after the last commit ($quiet) is refused (exit 1)" || diag "$out"
like "$out" "no commit or abort record in the archived WAL of source \"$source_id\" after snapshot [^ ]+ is stamped after the target time" \
    "saying no commit after it is archived"
like "$out" "HINT: The last commit or abort in the archive is at [0-9T:.-]+Z \\(LSN [0-9A-F]+/[0-9A-F]+\\)" \
    "the hint gives the last commit"
last_commit="$(sed -n 's/.*The last commit or abort in the archive is at \([0-9T:.-]*Z\) .*/\1/p' <<<"$out")"
# Between the moments before that insert and after it: a slow machine may
# take seconds between the two.
is "$(psql_q -c "SELECT '$last_commit'::timestamptz < '$quiet'::timestamptz
    AND '$last_commit'::timestamptz > '$before_last'::timestamptz")" t \
    "which is the last insert's ($last_commit, after $before_last)"
[[ ! -e "$dir/r-quiet" && ! -e "$dir/ts-quiet" ]]
ok $? "and nothing is written"
"$BK" restore --config "$dir/bk.conf" --source "$source_id" --pgdata "$dir/r-end-lsn" \
    --tablespace-map "$dir/ts1=$dir/ts-end-lsn" --target-lsn "$end_switch" >/dev/null 2>"$dir/restore-end-lsn.err"
ok $? "a target LSN at the last switch ($end_switch) is accepted" || diag "$(cat "$dir/restore-end-lsn.err")"
like "$(cat "$dir/restore-end-lsn.err")" "WARNING: recovery to the target LSN $end_switch stops after the first record at or after it, which the archived WAL does not hold: it needs WAL file $(next_seg "$end_seg" 1), not archived yet" \
    "with a warning naming the segment it needs"
cleanup_restore end-lsn

kill -TERM "$shipper_pid"
wait "$shipper_pid"
is $? 0 "the shipper stops cleanly"
shipper_pid=""
done_testing
