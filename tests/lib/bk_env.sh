# tests/lib/bk_env.sh: the set-up the end-to-end tests share: bk installed,
# a key pair, a repository, a configuration, the topics, a shipper, and the
# test cluster archiving through bk.  Source it after tests/lib/tap.sh and
# "scripts/services env", with ROOT, SERVICES and dir (the test's own fresh
# directory) set.
#
#   bk_test_init NAME        install bk (BK_TEST_TREE=1: build it); key
#                            pair, $dir/bk.conf, topics; sets prefix and
#                            repo (one prefix per run: tests never
#                            see each other's messages); the repository is on
#                            the backend BK_TEST_BACKEND names
#                            (tests/lib/repo_backend.sh: repo_files)
#   bk_test_config FILE ID [REPOSITORY]
#                            another configuration: shipper_id ID
#   bk_test_start_shipper [CONF [LOG]]
#                            a shipper in the background; sets shipper_pid
#   bk_test_pg_settings      the bk lines of a postgresql.conf for $prefix
#   bk_test_pg_archive [LINE...]
#                            the test cluster archives through bk (plus the
#                            given settings), restarted; sets source_id

source "$ROOT/tests/lib/bk_bin.sh"
source "$ROOT/tests/lib/repo_backend.sh"

bk_test_config() {
    local file="$1" id="$2" repository="${3:-$repo}"
    cat >"$file" <<CONF
kafka_brokers = $BK_KAFKA_BROKERS
topic_prefix = $prefix
repository = $repository
key_file = $dir/bk.key
shipper_id = $id
group_id = $prefix
${repo_conf:-}
CONF
    chmod 644 "$file"
}

bk_test_init() {
    prefix="bkit-$1-$$-$RANDOM"
    bk_test_repo "$prefix"
    bk_test_build
    "$BK" keygen --out "$dir/bk.key" >/dev/null 2>&1
    # Root's key, which bk wal-get reads as postgres in the clusters the
    # tests restore: the README's set-up (a key postgres owned would be
    # refused to root's bk restore).
    chgrp postgres "$dir/bk.key" && chmod 0640 "$dir/bk.key"
    bk_test_config "$dir/bk.conf" "$1-$$"
    "$BK" init --config "$dir/bk.conf" >/dev/null
}

bk_test_start_shipper() {
    "$SHIPPER" --config "${1:-$dir/bk.conf}" >>"${2:-$dir/shipper.log}" 2>&1 &
    shipper_pid=$!
}

bk_test_pg_settings() {
    cat <<CONF
shared_preload_libraries = 'bk'
archive_library = 'bk'
bk.kafka_brokers = '$BK_KAFKA_BROKERS'
bk.topic_prefix = '$prefix'
bk.key_file = '$dir/bk.key.pub'
CONF
}

bk_test_pg_archive() {
    {
        bk_test_pg_settings
        printf '%s\n' "$@"
    } >"$BK_PGDATA/bk_test.conf"
    "$SERVICES" restart pg >/dev/null || return 1
    source_id="$(psql -X -A -t -q -c "SELECT system_identifier FROM pg_control_system()")"
}
