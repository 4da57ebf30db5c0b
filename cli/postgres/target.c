/*
 * target.c
 *		Recovery targets and the snapshot that serves one.  See target.h.
 */
#include "target.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bk_timeline.h"
#include "bk_util.h"
#include "times.h"

/* Restore point names: PostgreSQL's MAXFNAMELEN - 1. */
#define RESTORE_POINT_NAME_MAX 63

bool
bk_pg_target_parse(BkPgTarget *target, BkPgTargetType type, const char *text,
				   BkError *err)
{
	memset(target, 0, sizeof(*target));
	target->type = type;
	target->text = text;
	switch (type)
	{
		case BK_PG_TARGET_TIME:
		{
			time_t seconds;
			struct tm tm;

			if (!bk_timestamp_parse(text, false, &target->time_us, err))
				return bk_error_prefix(
					err,
					"--target-time \"%s\" is not a timestamp "
					"such as \"2026-11-24 05:12:00+00\": ",
					text);
			/* Written with an explicit zone, so that PostgreSQL reads the
			 * moment bk chose the snapshot for, whatever its TimeZone. */
			seconds = (time_t) (target->time_us / 1000000);
			gmtime_r(&seconds, &tm);
			snprintf(target->time_text, sizeof(target->time_text),
					 "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", tm.tm_year + 1900,
					 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
					 tm.tm_sec, (int) (target->time_us % 1000000));
			return true;
		}
		case BK_PG_TARGET_LSN:
			if (!bk_parse_lsn(text, &target->lsn))
				return bk_error_set(err, BK_ERR_USAGE,
									"--target-lsn \"%s\" is not an LSN such "
									"as 0/5000028",
									text);
			return true;
		case BK_PG_TARGET_XID:
			/*
			 * Like PostgreSQL's recovery_target_xid: a 64-bit xid (as
			 * pg_current_xact_id() shows it, with its epoch) means its low
			 * 32 bits, and those must not be the invalid, bootstrap or
			 * frozen xid (0-2).
			 */
			if (!bk_parse_u64(text, &target->xid) || (uint32_t) target->xid < 3)
				return bk_error_set(err, BK_ERR_USAGE,
									"--target-xid \"%s\" is not a transaction "
									"id",
									text);
			return true;
		case BK_PG_TARGET_NAME:
			if (text[0] == '\0' || strlen(text) > RESTORE_POINT_NAME_MAX)
				return bk_error_set(err, BK_ERR_USAGE,
									"--target-name must be a restore point "
									"name of 1 to %d bytes",
									RESTORE_POINT_NAME_MAX);
			return true;
		case BK_PG_TARGET_IMMEDIATE:
			if (strcmp(text, "immediate") != 0)
				return bk_error_set(err, BK_ERR_USAGE,
									"--target accepts only \"immediate\", "
									"not \"%s\"",
									text);
			return true;
		case BK_PG_TARGET_NONE:
			return true;
	}
	return bk_error_set(err, BK_ERR_USAGE, "unknown recovery target");
}

bool
bk_pg_target_fits(const BkPgTarget *target, const BkSnapshot *snapshot)
{
	switch (target->type)
	{
		case BK_PG_TARGET_TIME:
			return snapshot->stop_us != BK_TIME_UNKNOWN &&
				   snapshot->stop_us <= target->time_us;
		case BK_PG_TARGET_LSN:
			return snapshot->stop_lsn <= target->lsn;
		default:
			return true;
	}
}

bool
bk_pg_target_might_fit(const BkPgTarget *target, const BkSnapshot *snapshot)
{
	int64_t start_us;

	if (snapshot->has_record)
		return bk_pg_target_fits(target, snapshot);
	return target->type != BK_PG_TARGET_TIME ||
		   !bk_snapshot_id_start(snapshot->id, &start_us) ||
		   start_us <= target->time_us;
}

/*
 * The newest damaged snapshot that might have served the target, or NULL:
 * "nothing restores to it" is then an integrity failure, not the archive
 * simply holding nothing for it.
 */
static const BkSnapshot *
damaged_candidate(const BkSnapshotCatalog *catalog, const BkPgTarget *target)
{
	for (int snapIdx = catalog->count - 1; snapIdx >= 0; snapIdx--)
		if (bk_snapshot_damaged(&catalog->snapshots[snapIdx]) &&
			bk_pg_target_might_fit(target, &catalog->snapshots[snapIdx]))
			return &catalog->snapshots[snapIdx];
	return NULL;
}

static bool
refuse_damaged(const BkSnapshot *damaged, const char *source, BkError *err)
{
	char nothing[sizeof(err->message)];

	bk_strlcpy(nothing, err->message, sizeof(nothing));
	bk_error_set(err, BK_ERR_SEQUENCE, "%s; snapshot %s is damaged: %s: %s",
				 nothing, damaged->id,
				 bk_snapshot_problem_name(damaged->problem), damaged->reason);
	return bk_error_hint(err,
						 "\"bk verify --source %s\" checks every object. A "
						 "snapshot whose objects are still arriving is "
						 "complete in a moment; otherwise restore from "
						 "another one (--snapshot) or take a new one.",
						 source);
}

static int
restorable_by_stop_cmp(const void *a, const void *b)
{
	const BkSnapshot *x = *(const BkSnapshot *const *) a;
	const BkSnapshot *y = *(const BkSnapshot *const *) b;

	if (x->stop_lsn != y->stop_lsn)
		return x->stop_lsn < y->stop_lsn ? -1 : 1;
	return strcmp(x->id, y->id);
}

bool
bk_pg_restorable_by_stop(const BkSnapshotCatalog *catalog, BkSnapshot ***list,
						 int *count, BkError *err)
{
	BkSnapshot **restorable =
		calloc((size_t) catalog->count + 1, sizeof(*restorable));

	*list = NULL;
	*count = 0;
	if (restorable == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	for (int snapIdx = 0; snapIdx < catalog->count; snapIdx++)
		if (catalog->snapshots[snapIdx].restorable)
			restorable[(*count)++] = &catalog->snapshots[snapIdx];
	qsort(restorable, (size_t) *count, sizeof(*restorable),
		  restorable_by_stop_cmp);
	*list = restorable;
	return true;
}

/* The snapshot the operator named: it must exist, restore, and fit. */
static bool
check_named(const BkSnapshotCatalog *catalog, const char *source,
			const BkPgTarget *target, const char *snapshot_id, int *chosen,
			BkError *err)
{
	const BkSnapshot *snapshot;

	*chosen = bk_snapshot_catalog_find(catalog, snapshot_id);
	if (*chosen < 0)
		return bk_error_set(err, BK_ERR_NOT_FOUND,
							"source \"%s\" has no snapshot \"%s\"", source,
							snapshot_id);
	snapshot = &catalog->snapshots[*chosen];
	if (!snapshot->restorable)
		return bk_error_set(
			err,
			bk_snapshot_damaged(snapshot) ? BK_ERR_SEQUENCE : BK_ERR_NOT_FOUND,
			"snapshot %s is not restorable: %s: %s", snapshot->id,
			bk_snapshot_problem_name(snapshot->problem), snapshot->reason);
	if (!bk_pg_target_fits(target, snapshot))
	{
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "snapshot %s ends (%s, %s) after the target %s: "
					 "recovery from it cannot stop there",
					 snapshot->id, snapshot->stop_time,
					 target->type == BK_PG_TARGET_LSN ? "stop LSN"
													  : "stop time",
					 target->text);
		return bk_error_hint(err, "Choose an older snapshot, or leave out "
								  "--snapshot.");
	}
	return true;
}

bool
bk_pg_choose_snapshot(const BkSnapshotCatalog *catalog, const char *source,
					  const BkPgTarget *target, const char *snapshot_id,
					  uint32_t timeline, int *chosen, BkError *err)
{
	BkSnapshot **restorable;
	int count;

	*chosen = -1;
	if (catalog->count == 0)
		return bk_error_set(err, BK_ERR_NOT_FOUND,
							"the repository holds no snapshot of source \"%s\"",
							source);
	if (snapshot_id != NULL)
		return check_named(catalog, source, target, snapshot_id, chosen, err);
	if (!bk_pg_restorable_by_stop(catalog, &restorable, &count, err))
		return false;
	if (count == 0)
	{
		const BkSnapshot *damaged = damaged_candidate(catalog, target);

		free(restorable);
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "source \"%s\" has %d snapshot%s, none of them "
					 "restorable",
					 source, catalog->count, catalog->count == 1 ? "" : "s");
		if (damaged != NULL)
			return refuse_damaged(damaged, source, err);
		return bk_error_hint(err, "\"bk list --source %s\" says why.", source);
	}
	if (target->type == BK_PG_TARGET_XID || target->type == BK_PG_TARGET_NAME)
	{
		free(restorable);
		return true; /* the WAL decides */
	}
	/*
	 * Stop points on different timelines do not compare: a snapshot of a
	 * timeline another one left before the snapshot's stop (after a restore
	 * to an earlier point) can end at a lower LSN, or earlier, than the
	 * target and still never become consistent along the timeline recovery
	 * follows; nor does one whose WAL up to its stop is archived only along
	 * another timeline (the old timeline's copy of the segment where a later
	 * one branched off, archived as .partial).  The newest one that can,
	 * first.
	 */
	for (int snapIdx = count - 1; snapIdx >= 0 && *chosen < 0; snapIdx--)
		if (bk_pg_target_fits(target, restorable[snapIdx]) &&
			(timeline == 0 ||
			 bk_snapshot_consistent_along(&catalog->wal, restorable[snapIdx],
										  timeline, NULL)))
			*chosen = (int) (restorable[snapIdx] - catalog->snapshots);
	for (int snapIdx = count - 1; snapIdx >= 0 && *chosen < 0; snapIdx--)
		if (bk_pg_target_fits(target, restorable[snapIdx]))
			*chosen = (int) (restorable[snapIdx] - catalog->snapshots);
	if (*chosen < 0)
	{
		const BkSnapshot *damaged = damaged_candidate(catalog, target);
		char oldest_lsn[BK_LSN_TEXT_SIZE];

		bk_format_lsn(restorable[0]->stop_lsn, oldest_lsn, sizeof(oldest_lsn));
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "no restorable snapshot of source \"%s\" ends at or "
					 "before the target %s; the oldest ends at %s (%s)",
					 source, target->text, restorable[0]->stop_time,
					 oldest_lsn);
		bk_error_hint(err, "The archive cannot restore a moment before its "
						   "oldest snapshot's stop point.");
		if (damaged != NULL)
			refuse_damaged(damaged, source, err);
	}
	free(restorable);
	return *chosen >= 0;
}
