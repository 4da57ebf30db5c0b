#!/usr/bin/env bash
# bk keygen and the command-line surface: files and modes, the printed key
# id, never overwriting, and clear usage errors with meaningful exit codes.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
BK="$ROOT/cli/bk"
dir="$(mktemp -d "${TMPDIR:-/tmp}/bk-keygen.XXXXXX")"
trap 'rm -rf "$dir"' EXIT

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

json="$("$BK" keygen --out "$dir/key2" --json)"
like "$json" '"key_id": "[0-9a-f]{16}"' "--json prints the key id"
like "$json" '"public_key_file": ".*/key2.pub"' "--json names the public key file"

"$BK" keygen >/dev/null 2>"$dir/stderr"
is $? 2 "keygen without --out exits 2"
like "$(cat "$dir/stderr")" '--out FILE is required' "and says --out is required"
"$BK" keygen --out "$dir/k3" --frobnicate >/dev/null 2>"$dir/stderr"
is $? 2 "an unknown option exits 2"
like "$(cat "$dir/stderr")" 'unknown option.*--frobnicate' "and names the option"
[[ ! -e "$dir/k3" ]]
ok $? "and writes nothing"
"$BK" keygen --out "$dir/no/such/dir/key" >/dev/null 2>"$dir/stderr"
isnt $? 0 "an unwritable path fails"
like "$(cat "$dir/stderr")" 'could not create' "with a message naming what failed"

"$BK" frobnicate >/dev/null 2>"$dir/stderr"
is $? 2 "an unknown command exits 2"
like "$(cat "$dir/stderr")" 'unknown command "frobnicate"' "and names it"
"$BK" --help >"$dir/out"
ok $? "bk --help exits 0"
like "$(cat "$dir/out")" 'keygen' "and lists the commands"
"$BK" keygen --help >"$dir/out"
ok $? "bk keygen --help exits 0"
like "$(cat "$dir/out")" 'Usage: bk keygen --out FILE' "and shows the usage"

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
done_testing
