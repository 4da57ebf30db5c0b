#!/usr/bin/env bash
# make demo, the README's first command, end to end: it must keep working
# (its table comparison once took the extension's unlogged page-digest
# table for user data and failed every restore).  Runs on ports of its own,
# beside the servers of make check, below the kernel's ephemeral range
# (32768-60999): a port in it may be held by any client connection of the
# earlier tests when the demo's server wants to listen there.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/tests/lib/tap.sh"
log="$(mktemp "${TMPDIR:-/tmp}/bk-demo-test.XXXXXX")"
trap 'rm -f "$log"' EXIT

BK_PG_PORT=26432 BK_KAFKA_PORT=29192 BK_KAFKA_CONTROLLER_PORT=29193 BK_MYSQL_PORT=26306 \
    "$ROOT/scripts/demo" >"$log" 2>&1
status=$?
is "$status" 0 "make demo succeeds"
like "$(cat "$log")" "restored snapshot [0-9]{8}T[0-9]{6}Z-[0-9a-f]{8} \\(full" \
    "it restored its snapshot"
like "$(cat "$log")" "The restored database is exactly what it was at" \
    "and every table is as it was at the moment it chose"
unlike "$(cat "$log")" "MISMATCH" "without a mismatch"
like "$(cat "$log")" "binlog mariadb-bin\.[0-9]+: archived copy identical to the server's" \
    "the MariaDB part: archived binlog files identical to the server's"
like "$(cat "$log")" "snapshot [0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}: .*shop.orders [0-9]+ rows" \
    "and a MariaDB snapshot checked table by table"
like "$(cat "$log")" "The restored MariaDB databases are exactly what they were at" \
    "and a MariaDB restored to the moment before its disaster, every table's checksum equal"
((status == 0)) || sed 's/^/# /' "$log" | tail -40
done_testing
