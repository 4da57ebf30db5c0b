# tests/lib/bk_bin.sh: the bk binaries the end-to-end tests run, and how
# they come to be.  Source it with ROOT set.
#
#   BK, SHIPPER, BK_AGENT_BIN   the binaries
#   bk_test_build               "make install" (the default); with
#                               BK_TEST_TREE=1 only build the tree, whose own
#                               binaries then run, installed nowhere (a clone
#                               tested on a machine whose installed bk others
#                               use; the MariaDB UDF library and the
#                               PostgreSQL extension the servers load stay the
#                               installed ones, so only changes outside them
#                               are tested that way)

if [[ "${BK_TEST_TREE:-0}" == 1 ]]; then
    BK="$ROOT/cli/bk"
    SHIPPER="$ROOT/shipper/bk-shipper"
    BK_AGENT_BIN="$ROOT/mysql_agent/bk-mysql-agent"
else
    BK=/usr/local/bin/bk
    SHIPPER=/usr/local/bin/bk-shipper
    BK_AGENT_BIN=/usr/local/bin/bk-mysql-agent
fi

bk_test_build() {
    if [[ "${BK_TEST_TREE:-0}" == 1 ]]; then
        make -s -C "$ROOT" >/dev/null
    else
        make -s -C "$ROOT" install >/dev/null
    fi
}
