#!/usr/bin/env bash
# Several shippers on one repository, the documented way to scale:
#   - two shippers (different shipper_id, one group) archive into one
#     repository under pgbench load while a snapshot is taken; the second
#     is started and stopped (SIGTERM and SIGKILL) again and again; the
#     first never fails, each keeps its own spool, every segment
#     PostgreSQL archived comes back byte-identical through bk wal-get, and
#     bk verify is clean;
#   - a shipper started with the shipper_id of one that runs on the same
#     repository refuses to start (exit 3), naming the id;
#   - a shipper whose id another shipper (on another repository) takes is
#     fenced by Kafka: it stops with exit 3 and a message naming the id,
#     instead of idling forever.
# With BK_TEST_BACKEND=s3 (shippers_s3.t) both archive into one bucket of
# the real s3proxy; their spools are local directories, and what a shipper
# killed mid-upload leaves is a multipart upload, aborted by housekeeping
# only once a day old and only under a bk object's key: bk verify --repair
# leaves one begun a moment ago (it may be a running shipper's, whatever
# abandon_after says) and one under a key that is not bk's; an object
# that went up in parts carries the x-amz-meta-bk-put-id of its upload.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env)"
SERVICES="$ROOT/scripts/services"
source "$ROOT/tests/lib/bk_env.sh"
PGBENCH_SECONDS=${PGBENCH_SECONDS:-30}

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-shippers-test.XXXXXX")"
chmod 755 "$dir"
first_pid=""
second_pid=""
other_pid=""
pgbench_pid=""

psql_q() { psql -X -A -t -q -v ON_ERROR_STOP=1 "$@"; }
as_postgres() { runuser -u postgres -- "$@"; }
cleanup() {
    [[ -n "$pgbench_pid" ]] && kill "$pgbench_pid" 2>/dev/null && wait "$pgbench_pid" 2>/dev/null
    # The cluster is shared: the pgbench tables would be copied by every
    # later test's snapshots and restores.
    pgbench -i -I d >/dev/null 2>&1
    psql_q -c "DROP TABLE IF EXISTS bk_incompressible" >/dev/null 2>&1
    for pid in "$first_pid" "$second_pid" "$other_pid"; do
        [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null
    done
    : >"$BK_PGDATA/bk_test.conf"
    "$SERVICES" restart pg >/dev/null 2>&1
    bk_test_repo_remove
    rm -rf "$dir"
}
trap cleanup EXIT
json_get() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

bk_test_init ship
bk_test_config "$dir/first.conf" "first-$$"
bk_test_config "$dir/second.conf" "second-$$"
bk_test_start_shipper "$dir/first.conf" "$dir/first.log"
first_pid=$shipper_pid
bk_test_pg_archive "wal_keep_size = '8GB'" "max_wal_size = '2GB'"
ok $? "PostgreSQL archives through bk"
psql_q -c "CREATE EXTENSION IF NOT EXISTS bk" >/dev/null
pgbench -i -q -s 5 >/dev/null 2>&1
ok $? "pgbench initialised"

# ---- load, a snapshot, and the second shipper coming and going
pgbench -T "$PGBENCH_SECONDS" -c 2 -j 2 -n >"$dir/pgbench.out" 2>&1 &
pgbench_pid=$!
snapshot="$(psql_q -c "SELECT snapshot_id FROM bk_snapshot(label => 'two shippers', wait => false)")"
like "$snapshot" '^[0-9]{8}T[0-9]{6}Z-' "a snapshot starts under load: $snapshot"
# A shipper that is gone for good left half an upload behind.
if [[ "$(bk_test_backend)" == s3 ]]; then
    # Multipart uploads begun under the repository's prefix, not completed:
    # one of a bk object's key, one of another application's.
    s3_curl() {
        curl -sS --aws-sigv4 "aws:amz:$BK_S3_REGION:s3" \
            --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
            -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
    }
    live_key="$prefix/$source_id/wal/gone-$$.partial"
    other_key="$prefix/gone-$$/other-application"
    s3_curl -X POST "$BK_S3_ENDPOINT/$BK_S3_BUCKET/$live_key?uploads=" >"$dir/initiate.xml"
    live_upload="$(sed -n 's:.*<UploadId>\(.*\)</UploadId>.*:\1:p' "$dir/initiate.xml")"
    s3_curl -X POST "$BK_S3_ENDPOINT/$BK_S3_BUCKET/$other_key?uploads=" >"$dir/initiate.xml"
    other_upload="$(sed -n 's:.*<UploadId>\(.*\)</UploadId>.*:\1:p' "$dir/initiate.xml")"
    ok "$(test -n "$live_upload" && test -n "$other_upload"; echo $?)" \
        "two multipart uploads left unfinished in the bucket"
else
    mkdir -p "$repo/.spool/gone-$$"
    echo "half an object" >"$repo/.spool/gone-$$/stale-upload"
fi
rounds=0
started_at=$SECONDS
while kill -0 "$pgbench_pid" 2>/dev/null; do
    "$SHIPPER" --config "$dir/second.conf" >>"$dir/second.log" 2>&1 &
    second_pid=$!
    sleep 4
    if ((rounds % 2 == 0)); then kill -TERM "$second_pid"; else kill -KILL "$second_pid"; fi
    wait "$second_pid" 2>/dev/null
    second_pid=""
    rounds=$((rounds + 1))
    psql_q -c "SELECT pg_switch_wal()" >/dev/null
    ((SECONDS - started_at > PGBENCH_SECONDS + 30)) && break
done
wait "$pgbench_pid"
ok $? "pgbench ran ${PGBENCH_SECONDS}s while the second shipper started and stopped $rounds times"
pgbench_pid=""
ok $((rounds < 4)) "at least four rounds"
kill -0 "$first_pid" 2>/dev/null
ok $? "the first shipper is still running"
unlike "$(cat "$dir/first.log")" 'ERROR|could not link|could not create spool' "and logged no error"
if [[ "$(bk_test_backend)" == s3 ]]; then
    ok "$(test -d "$dir/spool/first-$$" && test -d "$dir/spool/second-$$"; echo $?)" \
        "each shipper has a local spool of its own under spool_dir"
    ok "$(test ! -e "$repo_files/first-$$" && test ! -e "$repo_files/second-$$"; echo $?)" \
        "and nothing of a spool is in the bucket"
else
    ok "$(test -d "$repo/.spool/first-$$" && test -d "$repo/.spool/second-$$"; echo $?)" \
        "each shipper has a spool of its own under .spool/"
    ok "$(test ! -e "$repo/.spool/gone-$$/stale-upload"; echo $?)" \
        "the upload a stopped shipper left was removed by a shipper starting"
    like "$(cat "$dir/second.log")" "removed 1 unfinished upload of shippers that are not running" \
        "and it said so"
fi

# WAL that does not compress (md5 text), so that a segment's object is
# larger than s3_part_size and goes up in parts on S3.
psql_q -c "DROP TABLE IF EXISTS bk_incompressible; CREATE TABLE bk_incompressible AS SELECT md5(random()::text) || md5(random()::text) AS v FROM generate_series(1, 150000)" >/dev/null
# Everything archived: switch until the current segment is in the repository.
archived_now() {
    local seg last
    seg="$(psql_q -c "SELECT pg_walfile_name(pg_current_wal_lsn())")"
    psql_q -c "SELECT pg_switch_wal()" >/dev/null
    last="$(psql_q -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")"
    [[ -n "$last" && ! "$last" < "$seg" ]] && test -f "$repo_files/$source_id/wal/$seg"
}
wait_for 120 "WAL through the end archived" archived_now
ok $? "the WAL is archived through the end of the load"
restorable() {
    "$BK" list --config "$dir/first.conf" --source "$source_id" --json >"$dir/list.json" 2>/dev/null &&
        [[ "$(json_get "$dir/list.json" "[s['restorable'] for s in d['sources'][0]['snapshots'] if s['id'] == '$snapshot']")" == "[True]" ]]
}
wait_for 120 "the snapshot restorable" restorable
ok $? "the snapshot taken under load is restorable"

mkdir -p "$dir/walget"
chown postgres "$dir/walget"
checked=0
missing=0
differ=0
for f in "$BK_PGDATA"/pg_wal/archive_status/*.done; do
    name="$(basename "$f" .done)"
    [[ "$name" =~ ^[0-9A-F]{24}$ && -f "$BK_PGDATA/pg_wal/$name" ]] || continue
    checked=$((checked + 1))
    if [[ ! -f "$repo_files/$source_id/wal/$name" ]]; then
        missing=$((missing + 1))
        continue
    fi
    as_postgres "$BK" wal-get --config "$dir/first.conf" --source "$source_id" \
        "$name" "$dir/walget/$name" 2>>"$dir/walget.err" &&
        cmp -s "$BK_PGDATA/pg_wal/$name" "$dir/walget/$name" || differ=$((differ + 1))
    rm -f "$dir/walget/$name"
done
ok $((checked < 5)) "PostgreSQL reports $checked segments archived"
is "$missing|$differ" "0|0" "every one is in the repository and comes back byte-identical through bk wal-get"
out="$("$BK" verify --config "$dir/first.conf" --source "$source_id" 2>&1)"
is $? 0 "bk verify finds every object and the snapshot clean" || diag "$(grep -i problem <<<"$out" | head -n 5)"
conflicts="$(find "$repo_files/$source_id" -path '*/conflicts/*' -type f | wc -l)"
is "$conflicts" "0" "nothing was stored twice: no conflict copy"
if [[ "$(bk_test_backend)" == s3 ]]; then
    cp "$dir/first.conf" "$dir/repair.conf"
    echo "abandon_after = 1s" >>"$dir/repair.conf"
    out="$("$BK" verify --config "$dir/repair.conf" --source "$source_id" --repair 2>&1)"
    is $? 0 "bk verify --repair runs clean"
    like "$out" "repair: 0 abandoned uploads removed" \
        "and, with abandon_after = 1s, aborts neither the upload begun minutes ago nor another application's"
    uploads="$(s3_curl "$BK_S3_ENDPOINT/$BK_S3_BUCKET?prefix=$prefix%2F&uploads=")"
    like "$uploads" "$source_id/wal/gone-$$.partial" "the store still lists the young one"
    like "$uploads" "gone-$$/other-application" "and the other application's"
    s3_curl -X DELETE "$BK_S3_ENDPOINT/$BK_S3_BUCKET/$live_key?uploadId=$live_upload" >/dev/null
    s3_curl -X DELETE "$BK_S3_ENDPOINT/$BK_S3_BUCKET/$other_key?uploadId=$other_upload" >/dev/null
    # A WAL segment went up in parts (s3_part_size 5MiB); the store keeps
    # the id its upload began with, by which a shipper tells its own
    # completion, whose answer was lost, from another shipper's copy.
    segment="$(find "$repo_files/$source_id/wal" -maxdepth 1 -type f -regextype posix-extended \
        -regex '.*/[0-9A-F]{24}' -printf '%s %f\n' | sort -n | tail -n 1 | cut -d' ' -f2)"
    head_out="$(s3_curl -I "$BK_S3_ENDPOINT/$BK_S3_BUCKET/$prefix/$source_id/wal/$segment" | tr -d '\r')"
    like "$head_out" 'ETag: "[0-9a-f]{32}-[0-9]+"' "WAL segment $segment was a multipart upload"
    like "$head_out" 'x-amz-meta-bk-put-id: [0-9a-f]{32}' "and carries the x-amz-meta-bk-put-id its upload began with"
fi

# ---- the same shipper_id twice on one repository
bk_test_config "$dir/twin.conf" "first-$$"
out="$(timeout 60 "$SHIPPER" --config "$dir/twin.conf" 2>&1)"
is $? 3 "a second shipper with the same shipper_id on the same repository refuses to start (exit 3)"
like "$out" "another bk-shipper with shipper_id \"first-$$\" is running" "naming the id"
kill -0 "$first_pid" 2>/dev/null
ok $? "the first shipper runs on"

# ---- the same shipper_id on another repository: Kafka fences the first
bk_test_config "$dir/other.conf" "first-$$" "$dir/other-repo"
"$SHIPPER" --config "$dir/other.conf" >>"$dir/other.log" 2>&1 &
other_pid=$!
first_gone() { ! kill -0 "$first_pid" 2>/dev/null; }
wait_for 90 "the fenced shipper to stop" first_gone
ok $? "the shipper whose id was taken stops rather than idling"
wait "$first_pid"
is $? 3 "with exit 3"
first_pid=""
like "$(cat "$dir/first.log")" "same shipper_id \"first-$$\" .* fenced this one out" \
    "saying another shipper took its id"
kill -TERM "$other_pid"
wait "$other_pid"
other_pid=""
done_testing
