/*
 * engine.c
 *		The PostgreSQL engine (engine.h): a source whose archive holds WAL
 *		or PostgreSQL snapshots.
 */
#include "pg_engine.h"

/* Snapshots without WAL (engine.c has looked for WAL already). */
bool
bk_pg_holds(const BkRepo *repo, const char *source, bool *holds, BkError *err)
{
	return bk_engine_has_any(repo, source, BK_KIND_SNAPSHOT, holds, err);
}

const BkEngine bk_engine_postgresql = {
	.name = "postgresql",
	.log_kind = BK_KIND_WAL,
	.holds = bk_pg_holds,
	.list = bk_pg_list,
	.verify = bk_pg_verify,
	.expire = bk_pg_expire,
};
