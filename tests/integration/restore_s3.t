#!/usr/bin/env bash
# restore.t with the repository in a bucket of the real s3proxy
# (authentication on): restore, verify, list, expire and wal-get --prefetch
# all read and delete through the S3 API.
BK_TEST_BACKEND=s3 exec "$(dirname "${BASH_SOURCE[0]}")/restore.t"
