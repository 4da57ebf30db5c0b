/*
 * engine.c
 *		Which engine a source belongs to.  See engine.h.
 */
#include "engine.h"

#include <stddef.h>
#include <stdio.h>

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

/*
 * Asked in order: the first whose archive the repository holds.  An
 * engine's log decides, with one listing stopped after its first page.
 * Only a source with no log archived has its snapshots looked at, which
 * from an object store costs a page of up to a thousand names and a read,
 * before every bk restore, list, verify and expire.
 */
static const BkEngine *const engines[] = {&bk_engine_mariadb,
										  &bk_engine_postgresql};
#define ENGINE_COUNT (sizeof(engines) / sizeof(engines[0]))

bool
bk_engine_find(const BkRepo *repo, const char *source, const BkEngine **engine,
			   BkError *err)
{
	*engine = NULL;
	for (size_t engineIdx = 0; engineIdx < ENGINE_COUNT; engineIdx++)
	{
		bool found;

		if (!bk_engine_has_any(repo, source, engines[engineIdx]->log_kind,
							   &found, err))
			return false;
		if (found)
		{
			*engine = engines[engineIdx];
			return true;
		}
	}
	for (size_t engineIdx = 0; engineIdx < ENGINE_COUNT; engineIdx++)
	{
		bool holds = false;

		if (!engines[engineIdx]->holds(repo, source, &holds, err))
			return false;
		if (holds)
		{
			*engine = engines[engineIdx];
			return true;
		}
	}
	return true;
}

const BkEngine *
bk_engine_for(const BkRepo *repo, const char *source, BkError *err)
{
	const BkEngine *engine;

	if (!bk_engine_find(repo, source, &engine, err))
		return NULL;
	if (engine != NULL)
		return engine;
	bk_error_set(err, BK_ERR_NOT_FOUND,
				 "repository %s holds nothing of source \"%s\"",
				 bk_repo_location(repo), source);
	bk_error_hint(err, "\"bk list\" shows the sources it holds.");
	return NULL;
}

bool
bk_engine_for_listed(const char *program, const BkRepo *repo,
					 const char *source, const BkEngine **engine, BkError *err)
{
	if (!bk_engine_find(repo, source, engine, err))
		return false;
	if (*engine == NULL)
		fprintf(stderr,
				"%s: note: source \"%s\" holds nothing (its directory in "
				"repository %s is empty: a shipper stopped before it stored "
				"the source's first object, or its objects were removed); "
				"skipped\n",
				program, source, bk_repo_location(repo));
	return true;
}
