#!/usr/bin/env bash
# What a megabyte written into new page-cache pages costs this machine, when
# the memory was freed just before (the kernel hands the same pages back)
# and when it stayed free for a while first.
#
# Why: profiles of the archiving benchmark (bench/archive.sh, phase archive
# with ARCHIVE_PROFILE=1) put most of the Kafka broker's CPU and half of the
# shipper's in copy_folio_from_iter_atomic, the kernel copying written bytes
# into new page-cache pages.  On a virtual machine whose balloon driver
# reports free memory to the host (free page reporting), a page that was
# reported must be faulted in again by the host at its next use, and the
# guest sees that as CPU time of the copy.  This script measures the effect
# with dd alone, so that it can be told apart from anything bk does.
#
# Usage: bench/pagecache.sh   (any user; writes PAGECACHE_MB in the
#                              directory PAGECACHE_DIR)
#
# Environment (defaults in brackets):
#   PAGECACHE_DIR    where the test file is written [/tmp]
#   PAGECACHE_MB     MiB per write pass, in 4 MiB writes [640]
#   PAGECACHE_IDLE   seconds the freed memory stays free before the "idle"
#                    pass [5]
#   PAGECACHE_ROUNDS rounds of (reused, idle) [3]
# Everything printed also goes to bench/results/pagecache-<UTC date-time>.txt.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$REPO_ROOT/bench/lib.sh"
bench_output pagecache

DIR=${PAGECACHE_DIR:-/tmp}
MB=${PAGECACHE_MB:-640}
IDLE=${PAGECACHE_IDLE:-5}
ROUNDS=${PAGECACHE_ROUNDS:-3}
FILE="$(mktemp "$DIR/bk-pagecache.XXXXXX")"
trap 'rm -f "$FILE"; echo "results: $RESULTS"; bench_output_end' EXIT

# SYS_S: system CPU seconds of one pass: MB MiB appended to a new file in
# 4 MiB writes, each made durable before the next (oflag=dsync: as a Kafka
# broker flushing every message does), then the file removed (its pages
# freed).
write_pass() {
    local out
    rm -f "$FILE"
    out=$( { /usr/bin/time -f '%S %e' dd if=/dev/zero of="$FILE" bs=4M count=$((MB / 4)) oflag=dsync status=none; } 2>&1)
    read -r SYS_S WALL_S <<<"$out"
    rm -f "$FILE"
}

section "machine"
echo "kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
if [[ -d /sys/module/page_reporting/parameters ]]; then
    for p in /sys/module/page_reporting/parameters/*; do
        echo "page_reporting.$(basename "$p") = $(cat "$p" 2>/dev/null || echo '?')"
    done
else
    echo "no free page reporting (no /sys/module/page_reporting)"
fi

section "$MB MiB per pass, 4 MiB writes with O_DSYNC, $ROUNDS rounds"
printf '%-6s %-28s %10s %10s %12s\n' round pass "sys s" "wall s" "sys ms/MiB"
for ((round = 1; round <= ROUNDS; round++)); do
    write_pass # whatever state the memory is in
    write_pass
    printf '%-6s %-28s %10s %10s %12s\n' "$round" "reused (right after a pass)" "$SYS_S" "$WALL_S" "$(calc "1000 * $SYS_S / $MB" 2)"
    echo "RESULT round=$round pass=reused mb=$MB sys_s=$SYS_S wall_s=$WALL_S"
    sleep "$IDLE"
    write_pass
    printf '%-6s %-28s %10s %10s %12s\n' "$round" "after ${IDLE} s of free memory" "$SYS_S" "$WALL_S" "$(calc "1000 * $SYS_S / $MB" 2)"
    echo "RESULT round=$round pass=idle mb=$MB sys_s=$SYS_S wall_s=$WALL_S"
done
