#!/usr/bin/env bash
# snapshot_pitr.t with the repository in a bucket of the real s3proxy
# (authentication on): snapshots uploaded, every restore read back from it.
BK_TEST_BACKEND=s3 exec "$(dirname "${BASH_SOURCE[0]}")/snapshot_pitr.t"
