#!/usr/bin/env bash
# Frame codec throughput on one core: bk encode/decode against the limit set
# by its primitives (lz4, AES-256-GCM, SHA-256), on a real pgbench WAL
# segment, on random data and on a half-and-half mix; with lz4 -b and
# openssl speed as external references.
#
# Usage: bench/frame.sh   (from anywhere; as root or a user who can run the
#                          throwaway PostgreSQL of scripts/services)
#
# Environment:
#   FRAME_SECONDS   seconds per measurement in frame_bench [3]
#   FRAME_ROUNDS    interleaved rounds, best kept [5]
#   FRAME_CHUNK     chunk size [1048576]
#   FRAME_KEEP      a directory to copy the three input files to (for
#                   profiling afterwards: frame_bench --only ...) [none]
#
# Everything printed also goes to bench/results/frame-<UTC date-time>.txt.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

SECONDS_PER=${FRAME_SECONDS:-3}
ROUNDS=${FRAME_ROUNDS:-5}
CHUNK=${FRAME_CHUNK:-1048576}
SEG_SIZE=16777216
HALF=$((SEG_SIZE / 2))
CORE=0

# A PostgreSQL of our own, on ports nobody else uses.
export BK_SERVICES_DIR=/tmp/bk-bench-services
export BK_PG_PORT=56432
export BK_MYSQL_PORT=56306
export BK_KAFKA_PORT=56092
export BK_KAFKA_CONTROLLER_PORT=56093

. "$REPO_ROOT/bench/lib.sh"
bench_output frame

WORK="$(mktemp -d /tmp/bk-frame-bench.XXXXXX)"
cleanup() {
    local rc=$?
    echo
    echo "== stopping the throwaway PostgreSQL"
    scripts/services stop || echo "warning: scripts/services stop failed" >&2
    rm -rf "$WORK"
    echo "results: $RESULTS"
    bench_output_end
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

section "machine"
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- common 2>/dev/null || echo ' (common/ modified)')"
echo "cpu:     $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "flags:   $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -Ex 'aes|vaes|pclmulqdq|vpclmulqdq|sha_ni|avx2|avx512f|sse4_2' | tr '\n' ' ')"
# shellcheck disable=SC1091
echo "os:      $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
echo "openssl: $(openssl version)"
echo "lz4:     $(lz4 --version 2>&1 | head -1)"
echo "cc:      $(cc --version | head -1)"
echo "pinning: taskset -c $CORE for every single-core measurement"

section "build"
make -C common
make -C bench

section "pgbench WAL"
scripts/services start pg
eval "$(scripts/services env pg)"
export PGBIN="$BK_PGBIN"

echo "pgbench -i -s 50"
pgbench -i -s 50 -q
psql_q "CHECKPOINT"
psql_q "SELECT pg_switch_wal()" >/dev/null
start_seg="$(psql_q "SELECT pg_walfile_name(pg_current_wal_lsn())")"
echo "traffic starts in segment $start_seg"

# Segments strictly after the first segment of the run and strictly before
# the current one are complete and hold nothing but pgbench traffic.
pick_segment() {
    local cur path seg
    cur="$(psql_q "SELECT pg_walfile_name(pg_current_wal_lsn())")"
    CANDIDATES=()
    # The glob expands in sorted order.
    for path in "$BK_PGDATA"/pg_wal/[0-9A-F]*; do
        seg="${path##*/}"
        [[ "$seg" =~ ^[0-9A-F]{24}$ ]] || continue
        if [[ "$seg" > "$start_seg" && "$seg" < "$cur" ]]; then
            CANDIDATES+=("$seg")
        fi
    done
    CURRENT_SEG="$cur"
}

CANDIDATES=()
for attempt in 1 2 3 4 5; do
    echo "pgbench -T 20 -c 2 -j 2 (run $attempt)"
    pgbench -T 20 -c 2 -j 2 -n | grep -E '^(tps|number of transactions actually processed|latency average)' || true
    psql_q "CHECKPOINT"
    pick_segment
    ((${#CANDIDATES[@]} >= 1)) && break
done
((${#CANDIDATES[@]} >= 1)) || { echo "no completed WAL segment of pgbench traffic" >&2; exit 1; }
WAL_NAME="${CANDIDATES[$(((${#CANDIDATES[@]} - 1) / 2))]}"
echo "completed traffic segments: ${#CANDIDATES[@]} (current: $CURRENT_SEG); using $WAL_NAME"
# Keep the segment's own name: pg_waldump reads positions from it.
mkdir "$WORK/wal"
cp "$BK_PGDATA/pg_wal/$WAL_NAME" "$WORK/wal/$WAL_NAME"
WAL="$WORK/wal/$WAL_NAME"
[[ "$(stat -c %s "$WAL")" == "$SEG_SIZE" ]] || { echo "$WAL is not $SEG_SIZE bytes" >&2; exit 1; }
psql_q "SELECT pg_switch_wal()" >/dev/null
echo "record mix of $WAL_NAME (pg_waldump --stats):"
"$BK_PGBIN/pg_waldump" --stats "$WAL" 2>/dev/null | awk '!($2 == "0" && $3 == "(")' || true

section "inputs"
head -c "$SEG_SIZE" /dev/urandom >"$WORK/random"
{ head -c "$HALF" "$WAL"; head -c "$HALF" /dev/urandom; } >"$WORK/mixed"
FILES=("$WAL" "$WORK/random" "$WORK/mixed")
LABELS=("pgbench WAL" "random" "mixed")
if [[ -n "${FRAME_KEEP:-}" ]]; then
    mkdir -p "$FRAME_KEEP"
    cp "$WAL" "$FRAME_KEEP/wal-$WAL_NAME"
    cp "$WORK/random" "$WORK/mixed" "$FRAME_KEEP/"
    echo "inputs kept in $FRAME_KEEP"
fi
for f in "${FILES[@]}"; do
    printf '%-50s %10s bytes  sha256 %s\n' "$f" "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -c1-16)"
done

# The server is not needed any more: stop it so it does not compete.
section "stopping PostgreSQL before measuring"
scripts/services stop pg

section "external references (one core)"
declare -A LZ4B_C LZ4B_D LZ4B1M_C LZ4B1M_D
lz4_bench() { # FILE [options] -> "ratio comp_MB/s decomp_MB/s"
    local f="$1"
    shift
    taskset -c "$CORE" lz4 -b1 "$@" "$f" 2>&1 | tr '\r' '\n' | grep -- '->' | tail -1 |
        sed -E 's/.*\(([0-9.]+)\), *([0-9.]+) MB\/s *, *([0-9.]+) MB\/s.*/\1 \2 \3/'
}
for i in "${!FILES[@]}"; do
    read -r r c d <<<"$(lz4_bench "${FILES[$i]}")"
    LZ4B_C[$i]=$c LZ4B_D[$i]=$d
    echo "lz4 -b1 ${LABELS[$i]}: ratio $r, compress $c MB/s, decompress $d MB/s"
    read -r r c d <<<"$(lz4_bench "${FILES[$i]}" -B1048576)"
    LZ4B1M_C[$i]=$c LZ4B1M_D[$i]=$d
    echo "lz4 -b1 -B1048576 ${LABELS[$i]}: ratio $r, compress $c MB/s, decompress $d MB/s"
done
ossl_speed() { # args... -> MB/s (10^6 bytes)
    taskset -c "$CORE" openssl speed "$@" -bytes 1048576 -seconds 3 2>/dev/null |
        awk '/^(AES-256-GCM|aes-256-gcm|sha256|SHA256) / { sub(/k$/, "", $NF); printf "%.1f\n", $NF / 1000 }' | tail -1
}
OSSL_AES_ENC="$(ossl_speed -evp aes-256-gcm)"
echo "openssl speed -evp aes-256-gcm -bytes 1048576 -seconds 3: $OSSL_AES_ENC MB/s (encrypt)"
OSSL_AES_DEC="$(ossl_speed -decrypt -evp aes-256-gcm)"
echo "openssl speed -decrypt -evp aes-256-gcm -bytes 1048576 -seconds 3: $OSSL_AES_DEC MB/s (decrypt)"
OSSL_SHA="$(ossl_speed -evp sha256)"
echo "openssl speed -evp sha256 -bytes 1048576 -seconds 3: $OSSL_SHA MB/s"

section "frame_bench (one core)"
FB_OUT="$WORK/frame_bench.out"
echo "taskset -c $CORE bench/frame_bench --chunk-size $CHUNK --seconds $SECONDS_PER --rounds $ROUNDS ${FILES[*]}"
taskset -c "$CORE" bench/frame_bench --chunk-size "$CHUNK" --seconds "$SECONDS_PER" \
    --rounds "$ROUNDS" "${FILES[@]}" | tee "$FB_OUT"

section "summary"
field() { # LINE KEY
    sed -nE "s/.* $2=([^ ]+).*/\1/p" <<<"$1"
}
printf '%-12s | %8s %8s %6s %8s | %8s %8s %6s %8s | %7s\n' input "enc MB/s" limit ratio "bare" "dec MB/s" limit ratio "bare" stored
for i in "${!FILES[@]}"; do
    line="$(grep "^RESULT file=${FILES[$i]} " "$FB_OUT")"
    prim="$(grep "^PRIM file=${FILES[$i]} " "$FB_OUT")"
    printf '%-12s | %8s %8s %5.1f%% %8s | %8s %8s %5.1f%% %8s | %7s\n' "${LABELS[$i]}" \
        "$(field "$line" encode_mbps)" "$(field "$line" encode_limit_mbps)" \
        "$(awk -v r="$(field "$line" encode_ratio)" 'BEGIN { print 100 * r }')" \
        "$(field "$prim" bare_encode_mbps)" \
        "$(field "$line" decode_mbps)" "$(field "$line" decode_limit_mbps)" \
        "$(awk -v r="$(field "$line" decode_ratio)" 'BEGIN { print 100 * r }')" \
        "$(field "$prim" bare_decode_mbps)" \
        "$(field "$line" compression)"
done
echo "(limit: the three primitives measured one at a time, combined serially;"
echo " bare: the same three in one chunk loop, nothing else; ratio = bk / limit)"
echo
echo "primitives in process (frame_bench) vs external tools, MB/s, one core:"
printf '%-12s | %-28s %-28s | %-22s %-22s | %-18s\n' input "lz4 compress: bk-bench/-b/-B1M" "lz4 decompress: same" "aes enc: bench/openssl" "aes dec: bench/openssl" "sha256: bench/ossl"
for i in "${!FILES[@]}"; do
    line="$(grep "^PRIM file=${FILES[$i]} " "$FB_OUT")"
    printf '%-12s | %-28s %-28s | %-22s %-22s | %-18s\n' "${LABELS[$i]}" \
        "$(field "$line" lz4c_mbps) / ${LZ4B_C[$i]} / ${LZ4B1M_C[$i]}" \
        "$(field "$line" lz4d_mbps) / ${LZ4B_D[$i]} / ${LZ4B1M_D[$i]}" \
        "$(field "$line" aes_enc_mbps) / $OSSL_AES_ENC" \
        "$(field "$line" aes_dec_mbps) / $OSSL_AES_DEC" \
        "$(field "$line" sha256_mbps) / $OSSL_SHA"
done
echo "(lz4 decompress of random is 0.0 in frame_bench: no chunk is stored as lz4, so the decoder never decompresses)"
