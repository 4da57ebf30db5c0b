#!/usr/bin/env bash
# wal_archiving.t with the repository in a bucket of the real s3proxy
# (authentication on), plus the object store stopped for 20 s under load.
PGBENCH_SECONDS="${PGBENCH_SECONDS:-30}" BK_TEST_BACKEND=s3 exec "$(dirname "${BASH_SOURCE[0]}")/wal_archiving.t"
