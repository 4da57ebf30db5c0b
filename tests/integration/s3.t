#!/usr/bin/env bash
# What only an object store can get wrong, against the real s3proxy
# (authentication on; the end-to-end tests run on it too: *_s3.t):
#   - the repository unit tests (put-if-absent, listing, reading, multipart
#     uploads with growing parts, parallel range reads) on the S3 backend;
#   - a wrong secret: bk and bk-shipper stop at once with exit 3 and a
#     message naming the refusal, after one request, not a retry storm;
#   - a secret is never printed: not in errors, logs, --help or the
#     process title;
#   - a credentials file others can read or another user owns, a missing
#     bucket, plain http to a host that is not loopback: refused with exit
#     3, saying what to fix;
#   - a store that is down: bk retries for s3_timeout, then exits 5 naming
#     the store; bk wal-get exits 200 then (and with a wrong secret), never
#     1, which would end recovery there.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
eval "$("$ROOT/scripts/services" env)"
SERVICES="$ROOT/scripts/services"
export BK_TEST_BACKEND=s3
source "$ROOT/tests/lib/bk_env.sh"

dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-s3-test.XXXXXX")"
chmod 755 "$dir"
shipper_pid=""
cleanup() {
    [[ -n "$shipper_pid" ]] && kill -KILL "$shipper_pid" 2>/dev/null
    "$SERVICES" status s3 >/dev/null 2>&1 || "$SERVICES" start s3 >/dev/null 2>&1
    bk_test_repo_remove
    rm -rf "$dir"
}
trap cleanup EXIT
SECRET="$AWS_SECRET_ACCESS_KEY"

# ---- the repository library's tests, on S3
BK_TEST_S3_ENDPOINT="$BK_S3_ENDPOINT" "$ROOT/tests/unit/test_repo" >"$dir/unit.tap" 2>&1
is $? 0 "the repository unit tests pass on the S3 backend" || diag "$(grep -v '^ok' "$dir/unit.tap" | head -n 20)"
is "$(grep -c 'SKIP' "$dir/unit.tap")" "0" "every one of them ran on S3 (none skipped)"

# ---- a working repository, then the ways to get it wrong
bk_test_init s3
"$BK" list --config "$dir/bk.conf" >"$dir/list.out" 2>&1
is $? 3 "bk list before any shipper ran: no repository yet (a setting to check, not a store to retry)" || diag "$(cat "$dir/list.out")"
like "$(cat "$dir/list.out")" "is not a bk repository" "said as such, not as an empty archive"
bk_test_start_shipper "$dir/bk.conf" "$dir/shipper.log"
wait_for 30 "the shipper's marker in the bucket" test -f "$repo_files/bk-repository"
ok $? "bk-shipper creates the repository in the bucket (its marker object)"
"$BK" list --config "$dir/bk.conf" >"$dir/list.out" 2>&1
is $? 0 "bk list on the new, empty S3 repository" || diag "$(cat "$dir/list.out")"
title="$(ps -o args= -p "$shipper_pid")"
unlike "$title" "$SECRET|$AWS_ACCESS_KEY_ID" "the shipper's process title holds no credential"
kill -TERM "$shipper_pid"
wait "$shipper_pid"
is $? 0 "and stops cleanly"
shipper_pid=""

# A wrong secret.
printf 'access_key_id = %s\nsecret_access_key = %s\n' "$AWS_ACCESS_KEY_ID" "wrong/Secret+0123456789" >"$dir/wrong.key"
chmod 600 "$dir/wrong.key"
sed "s|^s3_access_key_file = .*|s3_access_key_file = $dir/wrong.key|" "$dir/bk.conf" >"$dir/wrong.conf"
started=$SECONDS
out="$(timeout 60 "$SHIPPER" --config "$dir/wrong.conf" 2>&1)"
is $? 3 "bk-shipper with a wrong secret exits 3"
ok $((SECONDS - started > 5)) "at once ($((SECONDS - started)) s): a refusal is not retried"
like "$out" "SignatureDoesNotMatch" "naming the store's refusal"
like "$out" "check the access key id and secret" "and saying what to check"
unlike "$out" "wrong/Secret|$SECRET" "without printing a secret"
out="$("$BK" list --config "$dir/wrong.conf" 2>&1)"
is $? 3 "bk list with a wrong secret exits 3"
mkdir -p "$dir/wal-get"
"$BK" wal-get --config "$dir/wrong.conf" --source 7301234567890123456 \
    000000010000000000000002 "$dir/wal-get/RECOVERYXLOG" >/dev/null 2>&1
is $? 200 "bk wal-get with a wrong secret exits 200 (recovery stops), never 1"
unlike "$out" "wrong/Secret|$SECRET" "and prints no secret either"
# The same through the environment, no file.
grep -v '^s3_access_key_file' "$dir/bk.conf" >"$dir/env.conf"
out="$(AWS_SECRET_ACCESS_KEY=env/Wrong+Secret "$BK" list --config "$dir/env.conf" 2>&1)"
is $? 3 "a wrong AWS_SECRET_ACCESS_KEY: exit 3"
unlike "$out" "env/Wrong" "not printed"
out="$("$BK" list --config "$dir/env.conf" 2>&1)"
is $? 0 "the right one from the environment works" || diag "$out"
for cmd in list verify restore expire wal-get; do
    "$BK" "$cmd" --help 2>&1
done >"$dir/help.out"
"$SHIPPER" --help >>"$dir/help.out" 2>&1
unlike "$(cat "$dir/help.out")" "$SECRET" "no --help output shows a secret"
grep -rlF -- "$SECRET" "$dir"/*.log "$dir"/*.out >"$dir/leaks" 2>/dev/null
is "$(wc -l <"$dir/leaks")" "0" "no log or output of the test holds the secret"

# A credentials file others can read.
chmod 644 "$dir/s3.key"
out="$("$BK" list --config "$dir/bk.conf" 2>&1)"
is $? 3 "a credentials file readable by others: exit 3"
like "$out" "accessible by group or others" "saying so"
like "$out" "chmod 600" "and how to fix it"
chmod 640 "$dir/s3.key"
# One postgres owns: any database superuser could choose what root's bk
# reads (COPY ... TO PROGRAM runs as postgres).
chown postgres "$dir/s3.key"
out="$("$BK" list --config "$dir/bk.conf" 2>&1)"
is $? 3 "a credentials file postgres owns, for root's bk list: exit 3"
like "$out" "is owned by \"postgres\" \\(uid [0-9]+\\), not by \"root\"" \
    "naming its owner and bk's user"
like "$out" "chown root" "and how to fix it"
chown root "$dir/s3.key"
out="$("$BK" list --config "$dir/bk.conf" 2>&1)"
is $? 0 "root's, readable by group postgres: bk list works" || diag "$out"

# A bucket that does not exist; plain http to a host that is not loopback.
sed "s|^repository = .*|repository = s3://no-such-bucket-$$/x|" "$dir/bk.conf" >"$dir/nobucket.conf"
out="$("$BK" list --config "$dir/nobucket.conf" 2>&1)"
is $? 3 "a missing bucket: exit 3"
like "$out" "NoSuchBucket" "naming it"
sed "s|^s3_endpoint = .*|s3_endpoint = http://s3.example.com|" "$dir/bk.conf" >"$dir/http.conf"
out="$("$BK" list --config "$dir/http.conf" 2>&1)"
is $? 3 "plain http to a host that is not loopback: exit 3"
like "$out" "not loopback" "saying why"

# The store down: retried for s3_timeout, then exit 5 naming the store.
"$SERVICES" stop s3 >/dev/null
printf 's3_timeout = 3s\n' >>"$dir/bk.conf"
started=$SECONDS
out="$("$BK" list --config "$dir/bk.conf" 2>&1)"
is $? 5 "the store down: bk list exits 5"
ok $((SECONDS - started < 2 || SECONDS - started > 20)) "after retrying for s3_timeout ($((SECONDS - started)) s)"
like "$out" "did not answer successfully in 3 s" "saying the store did not answer"
like "$out" "$BK_S3_ENDPOINT" "naming it"
# bk wal-get's 1 tells PostgreSQL "past the end of the archive", and
# recovery would end there: a store that does not answer is never that.
mkdir -p "$dir/wal-get"
"$BK" wal-get --config "$dir/bk.conf" --source 7301234567890123456 \
    000000010000000000000002 "$dir/wal-get/RECOVERYXLOG" >"$dir/wal-get.out" 2>&1
is $? 200 "the store down: bk wal-get exits 200 (recovery stops), never 1" ||
    diag "$(cat "$dir/wal-get.out")"
"$SERVICES" start s3 >/dev/null
ok $? "the store started again"
out="$("$BK" list --config "$dir/bk.conf" 2>&1)"
is $? 0 "and bk list works again" || diag "$out"
done_testing
