/*
 * engine.c
 *		The PostgreSQL engine (engine.h): a source whose archive holds WAL
 *		or PostgreSQL snapshots.
 */
#include "pg_engine.h"

bool
bk_pg_holds(const BkRepo *repo, const char *source, bool *holds, BkError *err)
{
	bool wal;
	bool snapshots = false;

	if (!bk_engine_has_any(repo, source, BK_KIND_WAL, &wal, err) ||
		(!wal &&
		 !bk_engine_has_any(repo, source, BK_KIND_SNAPSHOT, &snapshots, err)))
		return false;
	*holds = wal || snapshots;
	return true;
}

const BkEngine bk_engine_postgresql = {
	.name = "postgresql",
	.holds = bk_pg_holds,
	.list = bk_pg_list,
	.verify = bk_pg_verify,
	.expire = bk_pg_expire,
};
