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
# Each run's seed is chosen here and printed, so that a failure seen once
# (in CI, say) can be run again: FUZZ_SEED=N tests/fuzz/fuzz.t gives each
# fuzzer the seed it printed (N, N+1, N+2: frame, text, wal).  The same
# seed replays the same mutations; the reproducer file, when there is one,
# is printed too (hex), since CI's tests/fuzz/ is gone with its machine.
seed="${FUZZ_SEED:-$(( (RANDOM << 15 | RANDOM) + 1 ))}"
[[ "$seed" =~ ^[1-9][0-9]{0,9}$ ]] || bail_out "FUZZ_SEED must be a positive number, not \"$seed\""
note "fuzz seeds: frame $seed, text $((seed + 1)), wal $((seed + 2)) (replay: FUZZ_SEED=$seed tests/fuzz/fuzz.t)"
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
./fuzz_frame -seed="$seed" -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 \
    "$corpus/frame" seeds/frame >"$corpus/frame.log" 2>&1 &
frame_pid=$!
./fuzz_text -seed="$((seed + 1))" -max_total_time="$seconds" -max_len=8192 -print_final_stats=1 \
    "$corpus/text" seeds/text >"$corpus/text.log" 2>&1 &
text_pid=$!
# The walker is small: a third of the time, sharing the cores meanwhile.
./fuzz_wal -seed="$((seed + 2))" -max_total_time="$(( seconds / 3 > 0 ? seconds / 3 : 1 ))" \
    -max_len=16384 -print_final_stats=1 \
    "$corpus/wal" seeds/wal >"$corpus/wal.log" 2>&1 &
wal_pid=$!
wait "$frame_pid"
frame_status=$?
wait "$text_pid"
text_status=$?
wait "$wal_pid"
wal_status=$?

# The reproducer a fuzzer left (libFuzzer names it in its log), in hex.
show_reproducer() {
    local file
    file="$(sed -n 's/.*Test unit written to \(\.\/\)\{0,1\}//p' "$1" | tail -n 1)"
    [[ -n "$file" && -f "$file" ]] || return 0
    diag "reproducer tests/fuzz/$file ($(stat -c %s "$file") bytes, first 4 KiB in hex):"
    diag "$(head -c 4096 "$file" | od -An -tx1 -v)"
}

ok $frame_status "fuzz_frame ran ${seconds}s without a crash"
[[ $frame_status == 0 ]] || { diag "$(tail -n 40 "$corpus/frame.log")"; show_reproducer "$corpus/frame.log"; }
runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$corpus/frame.log")"
like "${runs:-0}" '^[0-9]{4,}$' "fuzz_frame executed thousands of inputs (${runs:-0})"

ok $text_status "fuzz_text ran ${seconds}s without a crash"
[[ $text_status == 0 ]] || { diag "$(tail -n 40 "$corpus/text.log")"; show_reproducer "$corpus/text.log"; }
runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$corpus/text.log")"
like "${runs:-0}" '^[0-9]{4,}$' "fuzz_text executed thousands of inputs (${runs:-0})"

ok $wal_status "fuzz_wal ran without a crash"
[[ $wal_status == 0 ]] || { diag "$(tail -n 40 "$corpus/wal.log")"; show_reproducer "$corpus/wal.log"; }
runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$corpus/wal.log")"
like "${runs:-0}" '^[0-9]{4,}$' "fuzz_wal executed thousands of inputs (${runs:-0})"
done_testing
