/*
 * retention.c
 *		Which snapshots a retention policy keeps.  See retention.h.
 */
#include "retention.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "times.h"

typedef struct Decision
{
	const BkRetentionSnapshot *snapshots;
	int count;
	BkVerdict *verdicts;
} Decision;

/* Mark snapshot index and its parents kept. */
static void
keep_chain(Decision *d, int index)
{
	for (int depth = 0; index >= 0 && depth <= d->count; depth++)
	{
		d->verdicts[index] = BK_VERDICT_KEEP;
		index = d->snapshots[index].parent_index;
	}
}

/* Does snapshot index build (through its parents) on a kept full? */
static bool
built_on_kept_full(const Decision *d, int index)
{
	for (int depth = 0; index >= 0 && depth <= d->count; depth++)
	{
		const BkRetentionSnapshot *snapshot = &d->snapshots[index];

		if (strcmp(snapshot->kind, "full") == 0)
			return d->verdicts[index] == BK_VERDICT_KEEP;
		index = snapshot->parent_index;
	}
	return false;
}

/* Newest end first; ties by id, newest first. */
static int
stop_desc_cmp(const void *a, const void *b, void *arg)
{
	const BkRetentionSnapshot *snapshots = arg;
	const BkRetentionSnapshot *x = &snapshots[*(const int *) a];
	const BkRetentionSnapshot *y = &snapshots[*(const int *) b];

	if (x->stop_order != y->stop_order)
		return x->stop_order > y->stop_order ? -1 : 1;
	return strcmp(y->id, x->id);
}

bool
bk_retention_decide(const BkRetentionSnapshot *snapshots, int count,
					const BkRetention *policy, int64_t now_ms,
					BkVerdict *verdicts)
{
	Decision d = {snapshots, count, verdicts};
	int *restorable = calloc((size_t) count + 1, sizeof(int));
	int restorable_count = 0;
	int kept_fulls = 0;
	bool anchored = false;
	const char *oldest_kept = NULL;

	for (int snapIdx = 0; snapIdx < count; snapIdx++)
		verdicts[snapIdx] = BK_VERDICT_EXPIRE;
	if (restorable == NULL)
		goto keep_all; /* out of memory: remove nothing */
	for (int snapIdx = 0; snapIdx < count; snapIdx++)
		if (snapshots[snapIdx].restorable)
			restorable[restorable_count++] = snapIdx;
	qsort_r(restorable, (size_t) restorable_count, sizeof(int), stop_desc_cmp,
			(void *) snapshots);

	if (policy->retain_full > 0)
	{
		bool kept_on_latest = false;

		for (int slot = 0;
			 slot < restorable_count && kept_fulls < policy->retain_full;
			 slot++)
			if (strcmp(snapshots[restorable[slot]].kind, "full") == 0)
			{
				verdicts[restorable[slot]] = BK_VERDICT_KEEP;
				kept_fulls++;
				kept_on_latest |= !snapshots[restorable[slot]].off_latest;
			}

		/*
		 * The newest fulls may all lie on a timeline the source left (a
		 * restore to an earlier moment): then the newest full the source's
		 * timeline descends from stays too, or nothing would restore it.
		 */
		for (int slot = 0; !kept_on_latest && slot < restorable_count; slot++)
			if (strcmp(snapshots[restorable[slot]].kind, "full") == 0 &&
				!snapshots[restorable[slot]].off_latest)
			{
				verdicts[restorable[slot]] = BK_VERDICT_KEEP;
				kept_on_latest = true;
			}
		anchored = kept_fulls > 0;
		for (int snapIdx = 0; snapIdx < count; snapIdx++)
			if (verdicts[snapIdx] != BK_VERDICT_KEEP &&
				built_on_kept_full(&d, snapIdx))
				keep_chain(&d, snapIdx);
	}
	else
	{
		int64_t window_start_us =
			(now_ms - (int64_t) policy->retain_days * 24 * 3600 * 1000) * 1000;

		for (int slot = 0; slot < restorable_count; slot++)
		{
			const BkRetentionSnapshot *snapshot = &snapshots[restorable[slot]];
			bool inside = snapshot->stop_us == BK_TIME_UNKNOWN ||
						  snapshot->stop_us >= window_start_us;

			keep_chain(&d, restorable[slot]);
			anchored = true;

			/*
			 * The newest one ending before the window, from which the
			 * source's timeline descends: one ending later on a timeline
			 * the source left (a restore to an earlier moment) restores
			 * none of the window's moments on the source's timeline.
			 */
			if (!inside && !snapshot->off_latest)
				break;
		}
	}
	free(restorable);
	if (!anchored)
		goto keep_all;

	/*
	 * Newer than the oldest kept snapshot: left alone.  A source takes one
	 * snapshot at a time, so an unfinished snapshot that is still arriving
	 * is newer than every finished one; an unfinished one older than the
	 * oldest kept was abandoned.  Ids sort by start time, by the source's
	 * clock: one that stepped back gives a snapshot started since an id
	 * older than those it follows, so one not restorable stays too while
	 * the store wrote an object of it within the last day (retention.h).
	 * That does not count as kept: only its parents stay with it.
	 *
	 * What is left alone must still restore, so its parent stays too: a
	 * server restored to an earlier moment bases its next incremental
	 * snapshot on the one it was restored from, older than the fulls kept
	 * for their newer end.  A parent kept moves the oldest kept back, which
	 * may leave more alone: until nothing changes.  A snapshot of another
	 * database system stays, whatever its age: the newest log decides
	 * which system is the source's, and a second cluster misconfigured
	 * with the same source id would otherwise have the first one's
	 * snapshots removed.  So does a snapshot the source may name as the
	 * parent of its next diff/incr snapshot (or of one still arriving,
	 * whose record is not there to say): removed, that one would arrive
	 * without a base.  It counts as kept, since it depends on no other
	 * verdict, so this still ends.  So does a snapshot sealed to a key the
	 * keyring lacks (retention.h): removed, a snapshot that restores with
	 * that key would be lost for a keyring's want.
	 */
	for (int snapIdx = 0; snapIdx < count; snapIdx++)
	{
		if (verdicts[snapIdx] != BK_VERDICT_EXPIRE)
			continue;
		if (snapshots[snapIdx].foreign)
			verdicts[snapIdx] = BK_VERDICT_FOREIGN;
		else if (snapshots[snapIdx].key_missing)
			verdicts[snapIdx] = BK_VERDICT_KEY_MISSING;
		else if (snapshots[snapIdx].next_parent)
			verdicts[snapIdx] = BK_VERDICT_NEXT_PARENT;
	}
	for (bool changed = true; changed;)
	{
		changed = false;
		oldest_kept = NULL;
		for (int snapIdx = 0; snapIdx < count; snapIdx++)
			if ((verdicts[snapIdx] == BK_VERDICT_KEEP ||
				 verdicts[snapIdx] == BK_VERDICT_PARENT ||
				 verdicts[snapIdx] == BK_VERDICT_NEXT_PARENT ||
				 verdicts[snapIdx] == BK_VERDICT_KEY_MISSING) &&
				(oldest_kept == NULL ||
				 strcmp(snapshots[snapIdx].id, oldest_kept) < 0))
				oldest_kept = snapshots[snapIdx].id;
		for (int snapIdx = 0; snapIdx < count; snapIdx++)
		{
			const BkRetentionSnapshot *snapshot = &snapshots[snapIdx];

			if (verdicts[snapIdx] != BK_VERDICT_EXPIRE)
				continue;
			if (strcmp(snapshot->id, oldest_kept) > 0)
				verdicts[snapIdx] = snapshot->restorable
										? BK_VERDICT_NEWER
										: BK_VERDICT_IN_PROGRESS;
			else if (!snapshot->restorable &&
					 snapshot->stored_ms > now_ms - BK_RETENTION_ARRIVING_MS)
				verdicts[snapIdx] = BK_VERDICT_ARRIVING;
		}
		for (int snapIdx = 0; snapIdx < count; snapIdx++)
		{
			int parent = snapshots[snapIdx].parent_index;

			if (verdicts[snapIdx] != BK_VERDICT_EXPIRE && parent >= 0 &&
				parent < count && verdicts[parent] == BK_VERDICT_EXPIRE)
			{
				verdicts[parent] = BK_VERDICT_PARENT;
				changed = true;
			}
		}
	}
	return true;

keep_all:
	for (int snapIdx = 0; snapIdx < count; snapIdx++)
		verdicts[snapIdx] = BK_VERDICT_KEEP;
	return false;
}

const char *
bk_retention_reason(const BkRetentionSnapshot *snapshot, BkVerdict verdict,
					const BkRetention *policy)
{
	switch (verdict)
	{
		case BK_VERDICT_KEEP:
			return "kept: retention";
		case BK_VERDICT_IN_PROGRESS:
			return "kept: in progress, or abandoned (incomplete, newer than "
				   "the oldest kept snapshot)";
		case BK_VERDICT_ARRIVING:
			return "kept: in progress, or abandoned less than a day ago (not "
				   "restorable, and the repository stored an object of it in "
				   "the last day, though its id, from the source's clock, is "
				   "older than the oldest kept snapshot's)";
		case BK_VERDICT_NEWER:
			return "kept: newer than the oldest kept snapshot";
		case BK_VERDICT_PARENT:
			return "kept: a snapshot that stays builds on it";
		case BK_VERDICT_NEXT_PARENT:
			return "kept: the source may build its next diff/incr snapshot "
				   "on it, or one still arriving (whose record, naming its "
				   "parent, is not there yet)";
		case BK_VERDICT_FOREIGN:
			return "kept: of another database system than the source's "
				   "newest log, or of another engine (a conflict under one "
				   "source id): never removed";
		case BK_VERDICT_KEY_MISSING:
			return "kept: sealed to a key the keyring lacks, so bk expire "
				   "cannot tell whether it restores; add it to the keyring "
				   "(cat FILE.key >> keyring) and the policy decides, or "
				   "remove the snapshot by hand if it is not the source's";
		case BK_VERDICT_EXPIRE:
			break;
	}
	if (!snapshot->restorable)
		return "expired: not restorable and older than the kept snapshots";
	return policy->retain_full > 0
			   ? "expired: older than the full snapshots kept"
			   : "expired: not needed for the retention window";
}

bool
bk_retention_id_start_us(const char *id, int64_t *us)
{
	char text[32];

	if (strlen(id) < 16 || id[8] != 'T' || id[15] != 'Z')
		return false;
	snprintf(text, sizeof(text), "%.4s-%.2s-%.2sT%.2s:%.2s:%.2sZ", id, id + 4,
			 id + 6, id + 9, id + 11, id + 13);
	return bk_parse_timestamp(text, us);
}
