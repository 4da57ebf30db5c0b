/*
 * engine.c
 *		The PostgreSQL engine (engine.h): a source whose archive holds WAL
 *		or PostgreSQL snapshots.
 */
#include "pg_engine.h"

static bool
stop_at_first(void *arg, const BkRepoEntry *entry, BkError *err)
{
	*(bool *) arg = true;
	return bk_error_set(err, BK_ERR_INTERRUPTED, "found one");
}

/* Anything stored of (source, kind)? */
static bool
has_any(const BkRepo *repo, const char *source, int kind, bool *found,
		BkError *err)
{
	BkError stop;

	*found = false;
	if (!bk_repo_list(repo, BK_REPO_ARCHIVE, source, kind, "", false,
					  stop_at_first, found, &stop) &&
		!*found)
	{
		*err = stop;
		return false;
	}
	return true;
}

bool
bk_pg_holds(const BkRepo *repo, const char *source, bool *holds, BkError *err)
{
	bool wal;
	bool snapshots;

	if (!has_any(repo, source, BK_KIND_WAL, &wal, err) ||
		!has_any(repo, source, BK_KIND_SNAPSHOT, &snapshots, err))
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
