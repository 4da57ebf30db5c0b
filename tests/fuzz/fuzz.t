#!/usr/bin/env bash
# Bounded libFuzzer runs of the frame decoder and the text parsers, as part of
# make check (FUZZ_SECONDS, default 60), and of the WAL walker of bk wal-get
# (a third of that, beside them).  A crash, leak or sanitizer report
# fails the test and leaves the reproducer in tests/fuzz/.  "make fuzz-long"
# runs a longer campaign.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
cd "$ROOT/tests/fuzz" || bail_out "no tests/fuzz"

seconds="${FUZZ_SECONDS:-60}"
corpus="$(mktemp -d "${TMPDIR:-/tmp}/bk-fuzz.XXXXXX")"
frame_pid=""
text_pid=""
wal_pid=""
trap 'kill $frame_pid $text_pid $wal_pid 2>/dev/null; rm -rf "$corpus"' EXIT
mkdir -p "$corpus/frame" "$corpus/text" "$corpus/wal"

make -s all seeds >/dev/null 2>&1
ok $? "fuzz targets build (clang -fsanitize=fuzzer,address,undefined)"

# The two targets run side by side, one per core: the same fuzzing time
# for each, half the wall time of running them in turn.
./fuzz_frame -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 \
    "$corpus/frame" seeds/frame >"$corpus/frame.log" 2>&1 &
frame_pid=$!
./fuzz_text -max_total_time="$seconds" -max_len=8192 -print_final_stats=1 \
    "$corpus/text" seeds/text >"$corpus/text.log" 2>&1 &
text_pid=$!
# The walker is small: a third of the time, sharing the cores meanwhile.
./fuzz_wal -max_total_time="$(( seconds / 3 > 0 ? seconds / 3 : 1 ))" \
    -max_len=16384 -print_final_stats=1 \
    "$corpus/wal" seeds/wal >"$corpus/wal.log" 2>&1 &
wal_pid=$!
wait "$frame_pid"
frame_status=$?
wait "$text_pid"
text_status=$?
wait "$wal_pid"
wal_status=$?

ok $frame_status "fuzz_frame ran ${seconds}s without a crash"
[[ $frame_status == 0 ]] || diag "$(tail -n 40 "$corpus/frame.log")"
runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$corpus/frame.log")"
like "${runs:-0}" '^[0-9]{4,}$' "fuzz_frame executed thousands of inputs (${runs:-0})"

ok $text_status "fuzz_text ran ${seconds}s without a crash"
[[ $text_status == 0 ]] || diag "$(tail -n 40 "$corpus/text.log")"
runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$corpus/text.log")"
like "${runs:-0}" '^[0-9]{4,}$' "fuzz_text executed thousands of inputs (${runs:-0})"

ok $wal_status "fuzz_wal ran without a crash"
[[ $wal_status == 0 ]] || diag "$(tail -n 40 "$corpus/wal.log")"
runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$corpus/wal.log")"
like "${runs:-0}" '^[0-9]{4,}$' "fuzz_wal executed thousands of inputs (${runs:-0})"
done_testing
