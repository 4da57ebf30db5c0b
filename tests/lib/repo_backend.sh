# shellcheck shell=bash
# tests/lib/repo_backend.sh: the repository an end-to-end test archives
# into, on the backend BK_TEST_BACKEND names: "directory" (the default) or
# "s3" (the s3proxy of scripts/services, authentication on).  Source it
# after "scripts/services env", with dir (the test's own directory) set.
#
#   bk_test_repo NAME   sets
#     repo        the repository setting ($dir/repo, or s3://BUCKET/NAME)
#     repo_files  where its objects can be seen as files, for checks and
#                 tampering (s3proxy keeps each object as a file named by
#                 its key: bk itself only ever goes through the S3 API)
#     repo_conf   the configuration lines the backend needs, for bk.conf
#                 (on S3 the smallest part size, so WAL segments and
#                 snapshot files go up as multipart uploads)
#   On S3 the credentials go in $dir/s3.key (root's, mode 0640, group
#   postgres, which runs bk wal-get: the README's set-up, as for the key),
#   never in bk.conf or the environment of bk.

bk_test_backend() { echo "${BK_TEST_BACKEND:-directory}"; }

bk_test_repo() {
    local name="$1"
    if [[ "$(bk_test_backend)" == s3 ]]; then
        repo="s3://$BK_S3_BUCKET/$name"
        repo_files="$BK_S3_DATA_DIR/$BK_S3_BUCKET/$name"
        (
            umask 077
            printf 'access_key_id = %s\nsecret_access_key = %s\n' \
                "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$dir/s3.key"
        )
        chgrp postgres "$dir/s3.key" && chmod 0640 "$dir/s3.key"
        repo_conf="s3_endpoint = $BK_S3_ENDPOINT
s3_region = $BK_S3_REGION
s3_uri_style = path
s3_access_key_file = $dir/s3.key
s3_part_size = 5MiB
spool_dir = $dir/spool"
    else
        repo="$dir/repo"
        repo_files="$repo"
        repo_conf=""
    fi
}

# Remove what a test stored in the bucket (a directory goes with $dir).
bk_test_repo_remove() {
    [[ "$(bk_test_backend)" == s3 && -n "${repo_files:-}" ]] && rm -rf "$repo_files"
    return 0
}
