#!/usr/bin/env bash
# shippers.t with both shippers archiving into one bucket of the real
# s3proxy (authentication on) while the second is killed again and again.
BK_TEST_BACKEND=s3 exec "$(dirname "${BASH_SOURCE[0]}")/shippers.t"
