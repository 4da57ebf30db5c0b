#!/usr/bin/env bash
# Three shippers in one consumer group on one bucket, every request going
# through a proxy that answers 503 SlowDown or forwards the request and
# loses its answer (tests/lib/s3_fault_proxy.py, about 8% each):
#   - two shippers archive under pgbench load and two snapshots; one is
#     killed (SIGKILL) mid-load and started again, then a third joins
#     (rebalances while objects, some of them multipart, are in flight);
#   - every segment PostgreSQL archived is in the bucket and comes back
#     byte-identical through bk wal-get, both snapshots are restorable,
#     bk verify is clean and nothing was stored twice (no conflict copy),
#     all through the proxy;
#   - bk restore of the newer snapshot succeeds through the proxy;
#   - two bk expire runs at once through the proxy both succeed, and what
#     is left (read directly) verifies clean and holds only the kept
#     snapshot.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env)"
SERVICES="$ROOT/scripts/services"
export BK_TEST_BACKEND=s3
P503=${P503:-0.08}
PLOST=${PLOST:-0.08}
# The proxy's faults come from a seed, printed, so that a failure can be
# run again with the same sequence of faults: S3_FAULT_SEED=N.
S3_FAULT_SEED=${S3_FAULT_SEED:-$(( (RANDOM << 15 | RANDOM) + 1 ))}
note "fault proxy seed $S3_FAULT_SEED (replay: S3_FAULT_SEED=$S3_FAULT_SEED)"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-shippers-s3-faults-test.XXXXXX")"
chmod 755 "$dir"
proxy_pid=""
pgbench_pid=""
pids=()

psql_q() { psql -X -A -t -q -v ON_ERROR_STOP=1 "$@"; }
as_postgres() { runuser -u postgres -- "$@"; }
cleanup() {
    [[ -n "$pgbench_pid" ]] && kill "$pgbench_pid" 2>/dev/null && wait "$pgbench_pid" 2>/dev/null
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    [[ -n "$proxy_pid" ]] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
    # The cluster is shared: later tests' snapshots would copy these.
    pgbench -i -I d >/dev/null 2>&1
    psql_q -c "DROP TABLE IF EXISTS bk_incompressible" >/dev/null 2>&1
    : >"$BK_PGDATA/bk_test.conf"
    "$SERVICES" restart pg >/dev/null 2>&1
    bk_test_repo_remove
    rm -rf "$dir"
}
trap cleanup EXIT
json_get() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

python3 "$ROOT/tests/lib/s3_fault_proxy.py" "${BK_S3_ENDPOINT##*:}" "$dir/port" \
    "$P503" "$PLOST" "$dir/proxy.log" "$S3_FAULT_SEED" &
proxy_pid=$!
wait_for 10 "the proxy listening" test -s "$dir/port"
direct_endpoint="$BK_S3_ENDPOINT"
# bk_env.sh writes this endpoint into every configuration.
BK_S3_ENDPOINT="http://127.0.0.1:$(cat "$dir/port")"
source "$ROOT/tests/lib/bk_env.sh"

bk_test_init s3faults
for n in a b c; do bk_test_config "$dir/$n.conf" "$n-$$"; done
bk_test_start_shipper "$dir/a.conf" "$dir/a.log"
pids+=("$shipper_pid")
bk_test_start_shipper "$dir/b.conf" "$dir/b.log"
b_pid=$shipper_pid
pids+=("$shipper_pid")
bk_test_pg_archive "wal_keep_size = '8GB'" "max_wal_size = '2GB'"
ok $? "PostgreSQL archives through bk"
psql_q -c "CREATE EXTENSION IF NOT EXISTS bk" >/dev/null
pgbench -i -q -s 3 >/dev/null 2>&1
ok $? "pgbench initialised"
s1="$(psql_q -c "SELECT snapshot_id FROM bk_snapshot(label => 'faults 1', wait => false)")"
pgbench -T 20 -c 2 -j 2 -n >"$dir/pgbench.out" 2>&1 &
pgbench_pid=$!
# WAL that does not compress: segments go up in parts (s3_part_size 5MiB).
psql_q -c "DROP TABLE IF EXISTS bk_incompressible; CREATE TABLE bk_incompressible AS SELECT md5(random()::text) || md5(random()::text) AS v FROM generate_series(1, 150000)" >/dev/null
sleep 4
kill -KILL "$b_pid"
wait "$b_pid" 2>/dev/null
sleep 2
bk_test_start_shipper "$dir/b.conf" "$dir/b.log"
pids+=("$shipper_pid")
sleep 3
bk_test_start_shipper "$dir/c.conf" "$dir/c.log"
pids+=("$shipper_pid")
wait "$pgbench_pid"
ok $? "pgbench ran while a shipper was killed, started again, and a third joined"
pgbench_pid=""
s2="$(psql_q -c "SELECT snapshot_id FROM bk_snapshot(label => 'faults 2', wait => false)")"
like "$s2" '^[0-9]{8}T[0-9]{6}Z-' "a second snapshot: $s2"

archived_now() {
    local seg last
    seg="$(psql_q -c "SELECT pg_walfile_name(pg_current_wal_lsn())")"
    psql_q -c "SELECT pg_switch_wal()" >/dev/null
    last="$(psql_q -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")"
    [[ -n "$last" && ! "$last" < "$seg" ]] && test -f "$repo_files/$source_id/wal/$seg"
}
wait_for 180 "WAL through the end archived" archived_now
ok $? "the WAL is archived through the end of the load"
restorable() {
    "$BK" list --config "$dir/a.conf" --source "$source_id" --json >"$dir/list.json" 2>>"$dir/list.err" &&
        [[ "$(json_get "$dir/list.json" "sorted(s['id'] for s in d['sources'][0]['snapshots'] if s['restorable'])")" == "['$s1', '$s2']" ]]
}
wait_for 180 "both snapshots restorable" restorable
ok $? "both snapshots are restorable (bk list through the proxy)"
alive=0
for pid in "${pids[@]:0:1}" "${pids[@]:2}"; do kill -0 "$pid" 2>/dev/null && alive=$((alive + 1)); done
is "$alive" 3 "the three shippers still run (they rode the faults out by retrying)"

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
    as_postgres "$BK" wal-get --config "$dir/a.conf" --source "$source_id" \
        "$name" "$dir/walget/$name" 2>>"$dir/walget.err" &&
        cmp -s "$BK_PGDATA/pg_wal/$name" "$dir/walget/$name" || differ=$((differ + 1))
    rm -f "$dir/walget/$name"
done
ok $((checked < 5)) "PostgreSQL reports $checked segments archived"
is "$missing|$differ" "0|0" "every one is in the bucket and comes back byte-identical through bk wal-get" ||
    diag "$(tail -n 3 "$dir/walget.err")"
multipart="$(find "$repo_files/$source_id/wal" -size +5M -type f | wc -l)"
ok $((multipart == 0)) "$multipart segments went up in parts"
out="$("$BK" verify --config "$dir/a.conf" --source "$source_id" 2>&1)"
is $? 0 "bk verify through the proxy: every object whole" || diag "$(tail -n 5 <<<"$out")"
is "$(find "$repo_files/$source_id" -path '*/conflicts/*' -type f | wc -l)" 0 \
    "nothing was stored twice: no conflict copy"
out="$("$BK" restore --config "$dir/a.conf" --source "$source_id" --snapshot "$s2" \
    --target immediate --pgdata "$dir/restored" 2>&1)"
is $? 0 "bk restore of $s2 through the proxy" || diag "$(tail -n 5 <<<"$out")"
test -s "$dir/restored/global/pg_control"
ok $? "and it wrote global/pg_control last"

"$BK" expire --config "$dir/a.conf" --source "$source_id" --retain-full 1 >"$dir/expire1.log" 2>&1 &
expire_pid=$!
"$BK" expire --config "$dir/a.conf" --source "$source_id" --retain-full 1 >"$dir/expire2.log" 2>&1
second=$?
wait "$expire_pid"
first=$?
is "$first|$second" "0|0" "two bk expire runs at once through the proxy both succeed" ||
    diag "$(tail -n 3 "$dir/expire1.log" "$dir/expire2.log")"
sed -i "s|^s3_endpoint = .*|s3_endpoint = $direct_endpoint|" "$dir/a.conf"
out="$("$BK" verify --config "$dir/a.conf" --source "$source_id" 2>&1)"
is $? 0 "bk verify, straight to the store, after them: what is left is whole" ||
    diag "$(tail -n 5 <<<"$out")"
"$BK" list --config "$dir/a.conf" --source "$source_id" --json >"$dir/list2.json"
is "$(json_get "$dir/list2.json" "[s['id'] for s in d['sources'][0]['snapshots']]")" "['$s2']" \
    "only the kept snapshot is left"
injected_503="$(grep -c '^503 ' "$dir/proxy.log")"
injected_lost="$(grep -c '^LOST ' "$dir/proxy.log")"
ok $((injected_503 < 20 || injected_lost < 20)) \
    "the proxy injected $injected_503 503s and lost $injected_lost answers"
is "$(grep -c '^EXC ' "$dir/proxy.log")" 0 "and never failed itself"
done_testing
