#!/usr/bin/env bash
# A key rotation on the real servers, as a DBA runs into it: PostgreSQL
# archives through bk sealed to key A, a full snapshot is taken, the
# source's public key file is rewritten with key B's while WAL streams,
# and a second snapshot is taken; the archive then holds objects under two
# key ids.  With the restore keyring holding both keys, only the new one,
# or only the old one:
#   - what the keyring can read is read (bk verify, bk list, bk wal-get,
#     bk restore of the part sealed to the keys it holds), and a restore
#     across the rotation with both keys recovers to the end;
#   - what needs a missing key stops with an exit code and a message that
#     names the key id and says to add that key to the keyring, never "not
#     in the archive": bk wal-get exits 200, never 1, for a segment that
#     exists but is sealed to a key the keyring lacks;
#   - bk expire with a keyring lacking the new key does not count the new
#     snapshot, says why, and removes nothing the old one needs.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env)"
source "$ROOT/tests/lib/repo_backend.sh"
SERVICES="$ROOT/scripts/services"
source "$ROOT/tests/lib/bk_bin.sh"
FIXTURE="$ROOT/tests/integration/bk_test_snapshot"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-key-rotation.XXXXXX")"
chmod 755 "$dir"
prefix="bkit-keyrot-$$-$RANDOM"
bk_test_repo "$prefix"
shipper_pid=""
running=""
restored_port=$((PGPORT + 33))
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
    psql_q -c "DROP TABLE IF EXISTS kr_main" >/dev/null 2>&1
    : >"$BK_PGDATA/bk_test.conf"
    "$SERVICES" restart pg >/dev/null 2>&1
    bk_test_repo_remove
    rm -rf "$dir"
}
trap cleanup EXIT

# The key id an archived object's first frame names (offset 52, 8 bytes).
object_key_id() { # REPO-FILE
    python3 -c 'import sys; print(open(sys.argv[1], "rb").read(60)[52:60].hex())' "$1"
}

bk_test_build && make -s -C "$ROOT/tests/integration" bk_test_snapshot >/dev/null
ok $? "bk, bk-shipper and the snapshot fixture are built"
key_a="$("$BK" keygen --out "$dir/a.key" 2>/dev/null)"
key_b="$("$BK" keygen --out "$dir/b.key" 2>/dev/null)"
cat "$dir/a.key" "$dir/b.key" >"$dir/both.key"
# Root's, readable by restore_command, which runs as postgres (README).
for k in a b both; do
    chgrp postgres "$dir/$k.key" && chmod 0640 "$dir/$k.key"
done
cp "$dir/a.key.pub" "$dir/bk.key.pub" && chmod 0644 "$dir/bk.key.pub"
for k in a b both; do
    cat >"$dir/$k.conf" <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $prefix
repository = $repo
key_file = $dir/$k.key
shipper_id = keyrot-test-$$
group_id = keyrot-test-$$
$repo_conf
CONF
    chmod 644 "$dir/$k.conf"
done
"$BK" init --config "$dir/both.conf" >/dev/null
ok $? "topics created"
"$SHIPPER" --config "$dir/both.conf" >>"$dir/shipper.log" 2>&1 &
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
ok $? "PostgreSQL restarted with archive_library = 'bk', sealing to key $key_a"
source_id="$(psql_q -c "SELECT system_identifier FROM pg_control_system()")"
psql_q -c "CREATE EXTENSION IF NOT EXISTS bk" >/dev/null

DIGEST_SQL="SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM kr_main t"
declare -A M_TIME M_DIGEST
moment() { # NAME SQL
    local out
    out="$(psql_q -c "$2" -c "SELECT 'TIME=' || to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'" \
        -c "SELECT 'DIGEST=' || ($DIGEST_SQL)")"
    M_TIME[$1]="$(sed -n 's/^TIME=//p' <<<"$out")"
    M_DIGEST[$1]="$(sed -n 's/^DIGEST=//p' <<<"$out")"
    [[ -n "${M_TIME[$1]}" && -n "${M_DIGEST[$1]}" ]]
}
archived_through_now() {
    local seg last
    seg="$(psql_q -c "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")"
    psql_q -c "SELECT pg_switch_wal()" >/dev/null
    last="$(psql_q -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")"
    [[ -n "$last" && ! "$last" < "$seg" ]] && test -f "$repo_files/$source_id/wal/$seg"
}
take_snapshot() { # NAME KEY-PUB
    local out
    install -d -o postgres -m 700 "$dir/base-$1"
    as_postgres "$BK_PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PGPORT" -U postgres -D "$dir/base-$1" \
        -Fp -X none --manifest-checksums=SHA256 -c fast >"$dir/basebackup-$1.log" 2>&1 || return 1
    out="$("$FIXTURE" --brokers "$BK_KAFKA_BROKERS" --prefix "$prefix" --key "$2" \
        --source "$source_id" --chunk-size 65536 "$dir/base-$1")" || return 1
    SNAP_ID="${out%% *}"
}
restorable() { # CONF ID
    "$BK" list --config "$1" --source "$source_id" --json >"$dir/list.json" 2>/dev/null &&
        [[ "$(json_get "$dir/list.json" "[s['restorable'] for s in d['sources'][0]['snapshots'] if s['id'] == '$2']")" == "[True]" ]]
}

psql_q -c "DROP TABLE IF EXISTS kr_main" \
    -c "CREATE TABLE kr_main (id bigserial PRIMARY KEY, v text NOT NULL)" \
    -c "INSERT INTO kr_main (v) SELECT md5(g::text) FROM generate_series(1, 20000) g" >/dev/null
moment m0 "SELECT 1"
take_snapshot s1 "$dir/a.key.pub"
ok $? "a full snapshot sealed to key $key_a: $SNAP_ID" || bail_out "no snapshot: $(tail -n 3 "$dir/basebackup-s1.log")"
snap1="$SNAP_ID"
moment m1 "UPDATE kr_main SET v = 'm1' WHERE id % 10 = 0"
ok $? "moment m1, before the rotation"
wait_for 180 "WAL through m1 archived" archived_through_now
ok $? "the WAL through m1 is archived"
ls "$repo_files/$source_id/wal" | grep -E '^[0-9A-F]{24}$' >"$dir/segments-a"

# The rotation: the database host's .pub rewritten in place with key B's.
cat "$dir/b.key.pub" >"$dir/bk.key.pub"
moment m2 "UPDATE kr_main SET v = 'm2' WHERE id % 7 = 0"
ok $? "moment m2, after the rotation"
take_snapshot s2 "$dir/b.key.pub"
ok $? "a full snapshot sealed to key $key_b: $SNAP_ID" || bail_out "no snapshot: $(tail -n 3 "$dir/basebackup-s2.log")"
snap2="$SNAP_ID"
# Weeks of WAL under the new key: more segments than the few newest ones
# bk tries for the archive's metadata.
for i in $(seq 6); do
    psql_q -c "INSERT INTO kr_main (v) VALUES ('switch $i')" -c "SELECT pg_switch_wal()" >/dev/null
done
moment m3 "INSERT INTO kr_main (v) SELECT 'm3' FROM generate_series(1, 1000) g"
ok $? "moment m3, the last write, six segments later"
wait_for 180 "WAL through m3 archived" archived_through_now
ok $? "the WAL through m3 is archived"
wait_for 60 "both snapshots restorable" eval "restorable $dir/both.conf $snap1 && restorable $dir/both.conf $snap2"
ok $? "bk list with both keys calls both snapshots restorable"

seg_a="$(tail -n 1 "$dir/segments-a")"
seg_b="$(ls "$repo_files/$source_id/wal" | grep -E '^[0-9A-F]{24}$' | tail -n 1)"
is "$(object_key_id "$repo_files/$source_id/wal/$seg_a")" "$key_a" "$seg_a is sealed to key $key_a"
is "$(object_key_id "$repo_files/$source_id/wal/$seg_b")" "$key_b" "$seg_b is sealed to key $key_b"
# The segment after the newest (16 MB segments: 256 to a log file).
seg_after="${seg_b:0:8}$(printf '%08X%08X' $(((16#${seg_b:8:8} * 256 + 16#${seg_b:16:8} + 1) / 256)) $(((16#${seg_b:16:8} + 1) % 256)))"

# ---- bk verify
out="$("$BK" verify --config "$dir/both.conf" --source "$source_id" 2>&1)"
is $? 0 "bk verify with both keys: every object decrypts" || diag "$out"
for k in a b; do
    if [[ $k == a ]]; then missing="$key_b"; else missing="$key_a"; fi
    out="$("$BK" verify --config "$dir/$k.conf" --source "$source_id" 2>&1)"
    is $? 3 "bk verify with only key $k exits 3: a key missing, not damage (4)" || diag "$out"
    like "$out" "PROBLEM .*sealed to key $missing, which is not in the keyring" "each object it cannot open names key $missing"
    like "$out" "sealed to a key the keyring \"$dir/$k.key\" lacks \($missing\).*
HINT: Add the private key file of each to the keyring" "and the run ends naming the key and what to do"
done

# ---- bk list
for k in a b; do
    out="$("$BK" list --config "$dir/$k.conf" --source "$source_id" 2>&1)"
    is $? 0 "bk list with only key $k lists the source" || diag "$out"
done

# ---- bk wal-get, as postgres
wal_get() { # CONF FILE
    install -d -o postgres "$dir/walget"
    rm -f "$dir/walget/out"
    as_postgres "$BK" wal-get --config "$1" --source "$source_id" "$2" "$dir/walget/out" 2>&1
}
for k in a b both; do
    for seg in "$seg_a" "$seg_b"; do
        out="$(wal_get "$dir/$k.conf" "$seg")"
        rc=$?
        key_of="$key_a"; [[ "$seg" == "$seg_b" ]] && key_of="$key_b"
        if [[ $k == both || ($k == a && $seg == "$seg_a") || ($k == b && $seg == "$seg_b") ]]; then
            is $rc 0 "bk wal-get with keyring $k serves $seg (key $key_of)" || diag "$out"
        else
            is $rc 200 "bk wal-get with keyring $k exits 200 for $seg, sealed to key $key_of it lacks" || diag "$out"
            like "$out" "sealed to key $key_of, which is not in the keyring" "and names key $key_of"
            unlike "$out" "not in the archive|beyond the end" "and never says it is not in the archive"
        fi
    done
done
out="$(wal_get "$dir/both.conf" "$seg_after")"
is $? 1 "bk wal-get with both keys: $seg_after, after the newest, is the end of the archive (exit 1)"

# ---- bk restore
restore_and_start() { # CONF NAME DIGEST-OF DESCRIPTION [bk restore options]
    local conf="$1" name="$2" digest_of="$3" desc="$4"
    shift 4
    local target="$dir/r-$name"
    rm -rf "$target"
    "$BK" restore --config "$conf" --source "$source_id" --pgdata "$target" --json "$@" \
        >"$dir/restore-$name.json" 2>"$dir/restore-$name.err"
    ok $? "bk restore: $desc" || { diag "$(tail -n 5 "$dir/restore-$name.err")"; return 1; }
    echo "port = $restored_port" >>"$target/postgresql.auto.conf"
    install -o postgres -m 644 /dev/null "$dir/r-$name.log"
    as_postgres "$BK_PGBIN/pg_ctl" -D "$target" -l "$dir/r-$name.log" -w -t 120 start >/dev/null 2>&1
    ok $? "it starts and recovers through bk wal-get ($name)" || {
        diag "$(tail -n 20 "$dir/r-$name.log")"
        return 1
    }
    running="$target"
    promoted() { [[ "$(rpsql -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" == f ]]; }
    wait_for 120 "promotion of $name" promoted
    ok $? "recovery reached the target and promoted ($name)" || diag "$(tail -n 20 "$dir/r-$name.log")"
    is "$(rpsql -c "$DIGEST_SQL")" "${M_DIGEST[$digest_of]}" "the table is exactly as at $digest_of ($name)"
    stop_restored
    rm -rf "$target"
}
restore_and_start "$dir/both.conf" across m3 \
    "with both keys, from snapshot $snap1 (key $key_a) through the rotation to the end" --snapshot "$snap1"
restore_and_start "$dir/b.conf" new-only m3 \
    "with only the new key, from snapshot $snap2 (key $key_b) to the end"
restore_and_start "$dir/a.conf" old-only m0 \
    "with only the old key, snapshot $snap1 to its consistency point" --snapshot "$snap1" --target immediate

refused_restore() { # CONF NAME MISSING-KEY DESCRIPTION [options]
    local conf="$1" name="$2" missing="$3" desc="$4" rc out
    shift 4
    rm -rf "$dir/r-$name"
    out="$("$BK" restore --config "$conf" --source "$source_id" --pgdata "$dir/r-$name" "$@" 2>&1)"
    rc=$?
    is $rc 3 "bk restore $desc exits 3 (a key problem)" || diag "$out"
    like "$out" "key $missing" "and names key $missing"
    like "$out" "HINT: .*$missing" "and its hint says which key to add"
    [[ ! -e "$dir/r-$name" || -z "$(ls -A "$dir/r-$name")" ]]
    ok $? "and leaves nothing in the target ($name)"
}
refused_restore "$dir/b.conf" b-snap1 "$key_a" "with only the new key, from snapshot $snap1 (key $key_a)" --snapshot "$snap1"
refused_restore "$dir/a.conf" a-end "$key_b" "with only the old key, to the end (snapshot $snap2, key $key_b)"
refused_restore "$dir/a.conf" a-snap1-end "$key_b" \
    "with only the old key, from snapshot $snap1 to the end (WAL sealed to key $key_b)" --snapshot "$snap1"

# ---- bk expire
out="$("$BK" expire --config "$dir/a.conf" --source "$source_id" --retain-full 1 --dry-run 2>&1)"
is $? 0 "bk expire --dry-run with only the old key runs" || diag "$out"
like "$out" "snapshot $snap2 .*does not count as restorable.*sealed to key $key_b" \
    "bk expire with only the old key does not count snapshot $snap2, naming key $key_b"
unlike "$out" "would remove snapshot $snap1|removed snapshot $snap1" "and keeps snapshot $snap1"
# Only the new key, a policy that keeps both fulls: the old one, sealed to
# a key the keyring lacks, is not a snapshot to throw away, however old
# (the store's time of an object of a directory repository is its file's).
find "$repo_files/$source_id/snapshot/$snap1" -type f -exec touch -d '3 days ago' {} +
out="$("$BK" expire --config "$dir/b.conf" --source "$source_id" --retain-full 2 --dry-run 2>&1)"
is $? 0 "bk expire --dry-run with only the new key runs" || diag "$out"
like "$out" "snapshot $snap1 .*sealed to key $key_a" "bk expire with only the new key names snapshot $snap1 and key $key_a"
unlike "$out" "(would remove|removed) snapshot $snap1" "and does not remove snapshot $snap1, which --retain-full 2 keeps"

done_testing
