#!/usr/bin/env bash
# bk keygen and the command-line surface: files and modes, the printed key
# id, never overwriting, and clear usage errors with meaningful exit codes.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
BK="$ROOT/cli/bk"
dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-keygen.XXXXXX")"
trap 'mountpoint -q "$dir/tiny" && umount "$dir/tiny"; rm -rf "$dir"' EXIT

id="$("$BK" keygen --out "$dir/key" 2>"$dir/stderr")"
ok $? "bk keygen --out FILE succeeds"
like "$id" '^[0-9a-f]{16}$' "prints the 16-hex-digit key id alone on stdout"
is "$(stat -c %a "$dir/key")" "600" "private key file has mode 0600"
is "$(stat -c %a "$dir/key.pub")" "644" "public key file has mode 0644"
like "$(grep '^key-id' "$dir/key.pub")" "$id" "the .pub names the same key id"
unlike "$(cat "$dir/key.pub")" 'private-key' "the .pub holds no private key"
like "$(cat "$dir/stderr")" 'keep it on the restore host' "tells where each file belongs"

before="$(sha256sum "$dir/key")"
"$BK" keygen --out "$dir/key" >/dev/null 2>"$dir/stderr"
is $? 2 "a second keygen to the same path exits 2"
like "$(cat "$dir/stderr")" 'already exists' "and says the file exists"
is "$(sha256sum "$dir/key")" "$before" "the existing private key is untouched"

# This host's disk failing: exit 1 (not 5, "unreachable, try again"), the
# error named, and no key file left behind that a later run or a restore
# would take for a key this run made.
make -s -C "$ROOT/tests/integration" bk_test_eio.so >/dev/null 2>&1
mkdir -p "$dir/eio"
out="$(LD_PRELOAD="$ROOT/tests/integration/bk_test_eio.so" BK_TEST_EIO_PATH=/eio \
    "$BK" keygen --out "$dir/eio/key" 2>&1)"
is $? 1 "bk keygen whose directory cannot be fsynced (EIO) exits 1"
like "$out" "could not open directory \"$dir/eio\" to fsync it: Input/output error
HINT: No key file was left behind" "naming the directory, the error, and that nothing is left"
is "$(ls -A "$dir/eio")" "" "and leaves no private key without its public one"
mkdir -p "$dir/tiny"
if mount -t tmpfs -o size=4k bk-keygen-tiny "$dir/tiny" 2>/dev/null; then
    head -c 64k /dev/zero >"$dir/tiny/filler" 2>/dev/null
    out="$("$BK" keygen --out "$dir/tiny/key" 2>&1)"
    is $? 1 "bk keygen --out on a full file system exits 1"
    like "$out" "could not write \"$dir/tiny/key\.tmp\.[0-9]+\": No space left on device" "naming the file and the error"
    is "$(ls -A "$dir/tiny")" "filler" "and leaves nothing behind"
    rm -f "$dir/tiny/filler"
    # One page: the private key fits, its .pub does not.
    out="$("$BK" keygen --out "$dir/tiny/key" 2>&1)"
    is $? 1 "bk keygen with room for the private key but not the public one exits 1"
    like "$out" "could not write \"$dir/tiny/key\.pub\.tmp\.[0-9]+\": No space left on device" "naming the .pub"
    is "$(ls -A "$dir/tiny")" "" "and removes the private key it wrote"
    umount "$dir/tiny"
    mount -t tmpfs -o size=64k bk-keygen-tiny "$dir/tiny" &&
        "$BK" keygen --out "$dir/tiny/key" >/dev/null 2>&1
    ok $? "with room, bk keygen --out the same name succeeds"
    umount "$dir/tiny"
else
    skip "bk keygen on a full file system" "cannot mount a tmpfs (not root?)"
fi

json="$("$BK" keygen --out "$dir/key2" --json)"
like "$json" '"key_id": "[0-9a-f]{16}"' "--json prints the key id"
like "$json" '"public_key_file": ".*/key2.pub"' "--json names the public key file"

"$BK" keygen >/dev/null 2>"$dir/stderr"
is $? 2 "keygen without --out exits 2"
like "$(cat "$dir/stderr")" '--out FILE is required' "and says --out is required"
(cd "$dir" && "$BK" keygen --out "" >/dev/null 2>"$dir/stderr")
is $? 2 "keygen --out \"\" is a usage error (not 5, \"try again\")"
like "$(cat "$dir/stderr")" '--out FILE is required' "and says a file must be named"
[[ -z "$(ls -A "$dir" | grep '^\.tmp\.')" ]]
ok $? "and writes nothing"
"$BK" keygen --out "$dir/k3" --frobnicate >/dev/null 2>"$dir/stderr"
is $? 2 "an unknown option exits 2"
like "$(cat "$dir/stderr")" 'unknown option.*--frobnicate' "and names the option"
[[ ! -e "$dir/k3" ]]
ok $? "and writes nothing"
"$BK" keygen --out "$dir/no/such/dir/key" >/dev/null 2>"$dir/stderr"
isnt $? 0 "an unwritable path fails"
like "$(cat "$dir/stderr")" 'could not create' "with a message naming what failed"
# A private key under a name database hosts expect a public key in, on
# standard output, or under a directory's name: refused, nothing written.
mkdir "$dir/kdir"
"$BK" keygen --out "$dir/kdir/bk.pub" >/dev/null 2>"$dir/stderr"
is $? 2 "keygen --out FILE.pub is a usage error"
like "$(cat "$dir/stderr")" "--out \"$dir/kdir/bk.pub\" ends in .pub, the name of a public key file: .* for example --out $dir/kdir/bk[^.]" \
    "and says to name the private key file"
(cd "$dir/kdir" && "$BK" keygen --out - >/dev/null 2>"$dir/stderr")
is $? 2 "keygen --out - is a usage error"
like "$(cat "$dir/stderr")" 'never to standard output' "and says the private key goes to a file only"
for d in "$dir/kdir" "$dir/kdir/"; do
    "$BK" keygen --out "$d" >/dev/null 2>"$dir/stderr"
    is $? 2 "keygen --out $d (a directory) is a usage error"
    like "$(cat "$dir/stderr")" "names a directory: name the private key file in it, for example --out $dir/kdir/bk.key" \
        "and says to name a file in it"
done
is "$(ls -A "$dir/kdir")" "" "and none of them wrote anything"

"$BK" frobnicate >/dev/null 2>"$dir/stderr"
is $? 2 "an unknown command exits 2"
like "$(cat "$dir/stderr")" 'unknown command "frobnicate"' "and names it"
"$BK" --help >"$dir/out"
ok $? "bk --help exits 0"
like "$(cat "$dir/out")" 'keygen' "and lists the commands"
"$BK" keygen --help >"$dir/out"
ok $? "bk keygen --help exits 0"
like "$(cat "$dir/out")" 'Usage: bk keygen --out FILE' "and shows the usage"

# A private key file is its user's, or root's (whose group may read it):
# another owner could replace the keys bk trusts.  Root's bk refuses one
# postgres owns (the README's restore host), and reads, as postgres does,
# one of root's in group postgres.
if [[ "$(id -u)" == 0 ]] && id postgres >/dev/null 2>&1; then
    chmod 755 "$dir"
    mkdir "$dir/repo" && printf 'bk repository 1\n' >"$dir/repo/bk-repository"
    chown postgres "$dir/key"
    "$BK" verify --repo "$dir/repo" --key-file "$dir/key" >/dev/null 2>"$dir/stderr"
    is $? 3 "root's bk verify with a private key postgres owns exits 3"
    like "$(cat "$dir/stderr")" "private key file \"$dir/key\" is owned by \"postgres\" \\(uid [0-9]+\\), not by \"root\"" \
        "and names the file and its owner"
    like "$(cat "$dir/stderr")" "HINT: .*chown root $dir/key" "and says how to give it to root"
    chown root:postgres "$dir/key" && chmod 0640 "$dir/key"
    "$BK" verify --repo "$dir/repo" --key-file "$dir/key" >/dev/null 2>"$dir/stderr"
    is $? 0 "root's key, mode 0640 in group postgres, serves root's bk verify"
    runuser -u postgres -- "$BK" verify --repo "$dir/repo" --key-file "$dir/key" >/dev/null 2>"$dir/stderr"
    is $? 0 "and postgres's"
    chmod 0600 "$dir/key"
else
    skip "a private key file of another owner" "needs root and a postgres user"
fi

# A config file with an unknown setting is refused, naming file and line.
printf 'kafka_brokers = 127.0.0.1:1\nkafka_broker = typo\n' >"$dir/bad.conf"
"$BK" init --config "$dir/bad.conf" >/dev/null 2>"$dir/stderr"
is $? 3 "a config file with an unknown setting exits 3"
like "$(cat "$dir/stderr")" "bad.conf\" line 2: unknown setting \"kafka_broker\"" \
    "and names the file, line and setting"
printf 'chunk_size = 3 bananas\n' >"$dir/bad.conf"
"$BK" init --config "$dir/bad.conf" >/dev/null 2>"$dir/stderr"
is $? 3 "a bad value exits 3"
like "$(cat "$dir/stderr")" 'chunk_size must be a size' "and says what a good value looks like"
"$BK" init --config "$dir/missing.conf" >/dev/null 2>"$dir/stderr"
is $? 3 "a missing config file exits 3"
like "$(cat "$dir/stderr")" 'could not open' "and says it could not be opened"

# Bad input on the command line: refused (exit 2, or 200 for wal-get), the
# message naming the option and the value, nothing touched.
SHIPPER="$ROOT/shipper/bk-shipper"
AGENT="$ROOT/mysql_agent/bk-mysql-agent"
"$BK" expire --repo "$dir/none" --source .spool --retain-full 1 >/dev/null 2>"$dir/stderr"
is $? 2 "bk expire with an invalid source id exits 2"
like "$(cat "$dir/stderr")" 'invalid source id "\.spool"' "and names the id, not a missing --source"
"$BK" expire --repo "$dir/none" --source s --retain-full 2x >/dev/null 2>"$dir/stderr"
is $? 2 "bk expire --retain-full 2x exits 2"
like "$(cat "$dir/stderr")" '--retain-full must be a number from 1 to 100000, not "2x"' "and names the value"
"$BK" expire --repo "$dir/none" --source s --retain-full 1 --retain-days 1 >/dev/null 2>"$dir/stderr"
is $? 2 "bk expire with both policies exits 2"
maps=()
for n in $(seq 65); do maps+=(--tablespace-map "/old$n=/new$n"); done
"$BK" restore --repo "$dir/none" --source s --pgdata "$dir/pg" "${maps[@]}" >/dev/null 2>"$dir/stderr"
is $? 2 "bk restore with 65 --tablespace-map exits 2"
like "$(cat "$dir/stderr")" 'at most 64 --tablespace-map' "and says how many are allowed"
[[ ! -e "$dir/pg" ]]
ok $? "and creates nothing"
for bad in "--jobs 0" "--jobs 3x" "--prefetch -1" "--target-timeline 0" "--target latest" "--target-lsn 1/2/3" "--target-xid 2"; do
    # shellcheck disable=SC2086
    "$BK" restore --repo "$dir/none" --source s --pgdata "$dir/pg" $bad >/dev/null 2>"$dir/stderr"
    is $? 2 "bk restore $bad exits 2"
done
"$BK" restore --repo "$dir/none" --source s --pgdata "$dir/pg" --target-time '2026-02-30 10:00' --target-lsn 0/1 >/dev/null 2>"$dir/stderr"
is $? 2 "bk restore with two targets exits 2"
"$BK" restore --source s --mysql-socket /nonexistent --mysql-host h >/dev/null 2>"$dir/stderr"
is $? 2 "bk restore with --mysql-socket and --mysql-host exits 2"
"$BK" restore --source s --mysql-host h --mysql-port 70000 >/dev/null 2>"$dir/stderr"
is $? 2 "bk restore --mysql-port 70000 exits 2"
like "$(cat "$dir/stderr")" 'invalid --mysql-port "70000"' "and names the value"
"$BK" wal-get --repo "$dir/none" --source s --prefetch -1 000000010000000000000001 "$dir/x" >/dev/null 2>"$dir/stderr"
is $? 200 "bk wal-get --prefetch -1 exits 200 (recovery stops, never ends early)"
like "$(cat "$dir/stderr")" '--prefetch must be from 0 to 1000, not "-1"' "and names the value"
printf 'repository = %s/none\nbogus_setting = 1\n' "$dir" >"$dir/bad.conf"
"$BK" list --config "$dir/bad.conf" >/dev/null 2>"$dir/stderr"
is $? 3 "bk list with an unknown setting exits 3"
like "$(cat "$dir/stderr")" 'HINT: Known settings: .*s3_endpoint' "and the hint lists the S3 settings too"

"$SHIPPER" --frobnicate >/dev/null 2>"$dir/stderr"
is $? 2 "bk-shipper with an unknown option exits 2"
like "$(cat "$dir/stderr")" 'unknown option.*--frobnicate' "and names it"
"$SHIPPER" --config "$dir/none.conf" >/dev/null 2>"$dir/stderr"
is $? 3 "bk-shipper with a missing configuration file exits 3"
"$SHIPPER" --repo "$dir/none" --metrics-listen localhost:9187 >/dev/null 2>"$dir/stderr"
is $? 3 "bk-shipper --metrics-listen with a host name exits 3"
like "$(cat "$dir/stderr")" 'metrics_listen must be an IPv4 address' "and says what it takes"
# A file given as the repository is a configuration error, not an
# unreachable store: exit 5 would have systemd restart the shipper forever.
: >"$dir/repo-file"
for cmd in "$BK list" "$BK verify" "$SHIPPER"; do
    timeout 60 $cmd --repo "$dir/repo-file" >/dev/null 2>"$dir/stderr"
    is $? 3 "${cmd##*/} --repo naming a regular file exits 3"
    like "$(cat "$dir/stderr")" "repository \"$dir/repo-file\" is not a directory: it must be a directory, or s3://" \
        "and names the path"
done
timeout 60 "$SHIPPER" --repo "$dir/repo-file/repo" >/dev/null 2>"$dir/stderr"
is $? 3 "bk-shipper --repo through a regular file exits 3"
like "$(cat "$dir/stderr")" 'a part of its path is a file' "and says so"

"$AGENT" --frobnicate >/dev/null 2>"$dir/stderr"
is $? 2 "bk-mysql-agent with an unknown option exits 2"
"$AGENT" >/dev/null 2>"$dir/stderr"
is $? 2 "bk-mysql-agent without --config exits 2"
like "$(cat "$dir/stderr")" '--config FILE is required' "and says so"
"$BK" keygen --out "$dir/agent-key" >/dev/null 2>&1
for setting in "metrics_listen = 127.0.0.1:9187" "shipper_id = a" "abandon_after = 1h" "spool_dir = /x" "s3_region = eu-west-1" "repository = /x"; do
    printf 'source_id = db1\nkafka_brokers = 127.0.0.1:1\nkey_file = %s\nserver_id = 42\n%s\n' \
        "$dir/agent-key.pub" "$setting" >"$dir/agent.conf"
    "$AGENT" --config "$dir/agent.conf" >/dev/null 2>"$dir/stderr"
    is $? 3 "bk-mysql-agent refuses the shipper's \"${setting%% *}\" (exit 3)"
    like "$(cat "$dir/stderr")" "line 5: ${setting%% *} is a bk-shipper setting" "and names it and its line"
done
# One option, two values: refused, naming both, whatever the program.
"$BK" list --repo "$dir/none" --source a --source b >/dev/null 2>"$dir/stderr"
is $? 2 "bk list --source a --source b exits 2"
like "$(cat "$dir/stderr")" '--source is given twice \("a" and "b"\)' "and names both values"
"$BK" restore --repo "$dir/none" --source s --pgdata "$dir/pg1" --pgdata "$dir/pg2" >/dev/null 2>"$dir/stderr"
is $? 2 "bk restore with two --pgdata exits 2"
"$BK" wal-get --repo "$dir/none" --source a --source b 000000010000000000000001 "$dir/x" >/dev/null 2>"$dir/stderr"
is $? 200 "bk wal-get with two --source exits 200"
"$SHIPPER" --repo "$dir/r1" --repo "$dir/r2" >/dev/null 2>"$dir/stderr"
is $? 2 "bk-shipper with two --repo exits 2"
[[ ! -e "$dir/r1" && ! -e "$dir/r2" ]]
ok $? "and creates neither repository"
"$AGENT" --config "$dir/a.conf" -c "$dir/b.conf" >/dev/null 2>"$dir/stderr"
is $? 2 "bk-mysql-agent with --config and -c of different files exits 2"
printf 'source_id = .db1\nkafka_brokers = 127.0.0.1:1\nkey_file = %s\nserver_id = 42\n' "$dir/agent-key.pub" >"$dir/agent.conf"
"$AGENT" --config "$dir/agent.conf" >/dev/null 2>"$dir/stderr"
is $? 3 "bk-mysql-agent refuses a source_id led by a dot (exit 3)"
like "$(cat "$dir/stderr")" 'source_id ".db1" is not valid: 1-128 bytes' "and says what a source id is"
# The repository's own top-level names are not source ids: a source
# "rejected" would archive among the rejected messages, which bk list and
# bk verify skip.
printf 'source_id = rejected\nkafka_brokers = 127.0.0.1:1\nkey_file = %s\nserver_id = 42\n' "$dir/agent-key.pub" >"$dir/agent.conf"
"$AGENT" --config "$dir/agent.conf" >/dev/null 2>"$dir/stderr"
is $? 3 "bk-mysql-agent refuses source_id rejected (exit 3)"
like "$(cat "$dir/stderr")" 'source_id "rejected" is not valid: .*other than "bk-repository" and "rejected"' "and says which names are the repository's"
# An empty roles list would let the default, bk_admin, call the functions.
for roles in "" ", ,"; do
    printf 'source_id = db1\nkafka_brokers = 127.0.0.1:1\nkey_file = %s\nserver_id = 42\nroles = %s\n' \
        "$dir/agent-key.pub" "$roles" >"$dir/agent.conf"
    timeout 60 "$AGENT" --config "$dir/agent.conf" >/dev/null 2>"$dir/stderr"
    is $? 3 "bk-mysql-agent refuses roles = \"$roles\" (exit 3)"
    like "$(cat "$dir/stderr")" 'line 5: roles names no role' "and names the setting"
done
"$BK" expire --repo "$dir/none" --source BK-Repository --retain-full 1 >/dev/null 2>"$dir/stderr"
is $? 2 "bk expire --source BK-Repository exits 2"
like "$(cat "$dir/stderr")" 'invalid source id "BK-Repository"' "and names the id"
done_testing
