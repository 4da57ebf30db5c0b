/*
 * engine.c
 *		Which engine a source belongs to.  See engine.h.
 */
#include "engine.h"

#include <stddef.h>

static bool
stop_at_first(void *arg, const BkRepoEntry *entry, BkError *err)
{
	(void) entry;
	*(bool *) arg = true;
	return bk_error_set(err, BK_ERR_INTERRUPTED, "found one");
}

bool
bk_engine_has_any(const BkRepo *repo, const char *source, int kind, bool *found,
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

/* Asked in order: the first whose archive the repository holds. */
static const BkEngine *const engines[] = {&bk_engine_mariadb,
										  &bk_engine_postgresql};

const BkEngine *
bk_engine_for(const BkRepo *repo, const char *source, BkError *err)
{
	for (size_t engineIdx = 0; engineIdx < sizeof(engines) / sizeof(engines[0]);
		 engineIdx++)
	{
		bool holds = false;

		if (!engines[engineIdx]->holds(repo, source, &holds, err))
			return NULL;
		if (holds)
			return engines[engineIdx];
	}
	bk_error_set(err, BK_ERR_NOT_FOUND,
				 "repository %s holds nothing of source \"%s\"",
				 bk_repo_location(repo), source);
	bk_error_hint(err, "\"bk list\" shows the sources it holds.");
	return NULL;
}
