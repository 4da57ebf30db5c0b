/*
 * expire.c
 *		bk expire for PostgreSQL sources: which snapshots the policy keeps
 *		(retention.c decides, for every engine), and the WAL that goes with
 *		the others.
 *
 * WAL goes only when it lies entirely before the segment of the oldest
 * kept snapshot's start LSN (segments, .partial and .backup files, on
 * every timeline), and, while a snapshot without a record is in progress,
 * only WAL its source read before that snapshot began (the id says when);
 * history files stay, as pg_archivecleanup leaves them.  With no
 * restorable snapshot to anchor it, nothing is removed: the WAL may serve
 * a base backup bk does not know about.
 *
 * A snapshot's record goes first, so a removal cut short leaves an
 * incomplete snapshot, never one that looks restorable with objects
 * missing; snapshots go newest first, so never a parent before the
 * snapshots built on it; then the WAL, which they needed.  Before any
 * WAL segment goes, the last one of each timeline is recorded
 * (bk_wal_expired_record), so that a restore reading it meanwhile stops
 * rather than take it for the end of the archive.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bk_util.h"
#include "cli.h"
#include "pg_engine.h"
#include "retention.h"
#include "snapshot_catalog.h"
#include "snapshot_data.h"

typedef struct Expire
{
	const char *source;
	const BkRetention *policy;
	BkRepo *repo;
	BkSnapshotCatalog catalog;
	BkRetentionSnapshot *view; /* the catalog, as retention.c sees it */
	BkVerdict *verdicts;
	/*
	 * With the keyring: the snapshots whose record does not authenticate
	 * the metadata the catalog judged them by (NULL: keyless), and why.
	 */
	char **unauthenticated;
	/*
	 * Of those, the ones whose record or chain is sealed to a key the
	 * keyring lacks (retention.h: never removed).
	 */
	bool *key_missing;
	/*
	 * The newest timeline's branch points are unknown (its history file was
	 * archived without them, or cannot be read), and snapshots lie on
	 * other timelines: it may descend from any of them, or none.
	 */
	bool history_unknown;
} Expire;

/*
 * The first segment number to keep: that of the oldest start LSN among the
 * snapshots that stay.  A snapshot that stays but has no record yet (so no
 * known start LSN) may need WAL from its start on: *guard_us gets the
 * oldest such start time (from its id), and WAL created after it is kept
 * (or BK_TIME_UNKNOWN when there is none).  0: remove no WAL.
 */
static uint64_t
wal_cutoff(const Expire *ex, int64_t *guard_us, uint32_t *timeline, char *note,
		   size_t note_len)
{
	const BkSnapshotCatalog *catalog = &ex->catalog;
	uint64_t oldest_lsn = BK_LSN_INVALID;

	*guard_us = BK_TIME_UNKNOWN;
	if (catalog->wal.segment_size == 0)
		return 0;
	for (int snapIdx = 0; snapIdx < catalog->count; snapIdx++)
	{
		const BkSnapshot *snapshot = &catalog->snapshots[snapIdx];
		int64_t start_us;

		/* Another engine's needs none of this WAL. */
		if (ex->verdicts[snapIdx] == BK_VERDICT_EXPIRE ||
			snapshot->other_engine)
			continue;
		if (snapshot->start_lsn != BK_LSN_INVALID)
		{
			if (snapshot->start_lsn < oldest_lsn)
			{
				oldest_lsn = snapshot->start_lsn;
				*timeline = snapshot->timeline;
			}
			continue;
		}
		if (!bk_retention_id_start_us(snapshot->id, &start_us))
		{
			snprintf(note, note_len,
					 "no WAL removed: snapshot %s, still arriving, has no "
					 "start LSN yet and its id names no start time",
					 snapshot->id);
			return 0;
		}
		if (*guard_us == BK_TIME_UNKNOWN || start_us < *guard_us)
			*guard_us = start_us;
	}
	if (oldest_lsn == BK_LSN_INVALID)
		return 0;
	return bk_lsn_segno(oldest_lsn, catalog->wal.segment_size);
}

/*
 * May a WAL object be needed by a snapshot that began at guard_us?  Only if
 * the source read it (its "created" metadata) after that, less a minute for
 * the time between the snapshot's id and its start LSN.
 */
static bool
needed_after_guard(const Expire *ex, BkRepoArea area, const char *name,
				   int64_t guard_us)
{
	BkObjectIdentity identity;
	BkObjectTracker *object;
	char created[64];
	int64_t created_us;
	bool needed = true;
	BkError err;

	if (guard_us == BK_TIME_UNKNOWN)
		return false;
	object = bk_cli_alloc(sizeof(*object));
	if (bk_repo_object_identity(ex->repo, area, ex->source, BK_KIND_WAL, name,
								&identity, object, &err) &&
		bk_meta_get(object->meta, object->meta_len, "created", created,
					sizeof(created)) &&
		bk_parse_timestamp(created, &created_us))
		needed = created_us >= guard_us - (int64_t) 60 * 1000000;
	free(object);
	return needed;
}

/* A WAL object to remove. */
typedef struct WalDoomed
{
	uint64_t segno;
	uint32_t timeline;
	uint64_t size;
	bool segment;     /* a whole segment, not a .partial or .backup */
	char *entry_name; /* as listed: "<name>.<attempt>" in conflicts */
	char *name;       /* the WAL file's name */
} WalDoomed;

typedef struct WalRemoval
{
	Expire *ex;
	BkRepoArea area;
	uint64_t cutoff;
	int64_t guard_us;
	WalDoomed *doomed; /* of the area being listed */
	size_t doomed_count;
	size_t doomed_cap;
	uint64_t count;
	uint64_t bytes;
	char first[BK_OBJECT_NAME_MAX + 1];
	char last[BK_OBJECT_NAME_MAX + 1];
} WalRemoval;

/* One WAL object (a name, or "<name>.<attempt>" in conflicts) to judge. */
static bool
judge_wal_object(void *arg, const BkRepoEntry *entry, BkError *err)
{
	WalRemoval *removal = arg;
	Expire *ex = removal->ex;
	char name[BK_OBJECT_NAME_MAX + 1];
	uint32_t timeline;
	uint32_t log;
	uint32_t seg;
	uint64_t segno;
	BkWalFileType type;
	WalDoomed *doomed;

	if (entry->is_prefix)
		return true;
	bk_strlcpy(name, entry->name, sizeof(name));
	if (removal->area == BK_REPO_CONFLICTS)
	{
		char *dot = strrchr(name, '.');

		if (dot != NULL)
			*dot = '\0';
	}
	type = bk_wal_file_type(name, &timeline, &log, &seg);
	if (type != BK_WAL_SEGMENT && type != BK_WAL_PARTIAL &&
		type != BK_WAL_BACKUP)
		return true;
	segno = bk_wal_segno(log, seg, ex->catalog.wal.segment_size);
	if (segno >= removal->cutoff ||
		needed_after_guard(ex, removal->area, entry->name, removal->guard_us))
		return true;
	if (removal->doomed_count == removal->doomed_cap)
	{
		size_t cap = removal->doomed_cap ? removal->doomed_cap * 2 : 256;
		WalDoomed *grown = realloc(removal->doomed, cap * sizeof(*grown));

		if (grown == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		removal->doomed = grown;
		removal->doomed_cap = cap;
	}
	doomed = &removal->doomed[removal->doomed_count];
	doomed->segno = segno;
	doomed->timeline = timeline;
	doomed->size = entry->size;
	doomed->segment = type == BK_WAL_SEGMENT;
	doomed->entry_name = strdup(entry->name);
	doomed->name = strdup(name);
	if (doomed->entry_name == NULL || doomed->name == NULL)
	{
		free(doomed->entry_name);
		free(doomed->name);
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	removal->doomed_count++;
	return true;
}

static int
doomed_cmp(const void *a, const void *b)
{
	const WalDoomed *x = a;
	const WalDoomed *y = b;

	if (x->segno != y->segno)
		return x->segno < y->segno ? -1 : 1;
	if (x->timeline != y->timeline)
		return x->timeline < y->timeline ? -1 : 1;
	return strcmp(x->entry_name, y->entry_name);
}

static void
doomed_free(WalRemoval *removal)
{
	for (size_t idx = 0; idx < removal->doomed_count; idx++)
	{
		free(removal->doomed[idx].entry_name);
		free(removal->doomed[idx].name);
	}
	free(removal->doomed);
	removal->doomed = NULL;
	removal->doomed_count = removal->doomed_cap = 0;
}

/*
 * Record, for each timeline, the last whole segment about to go, before
 * any goes (bk_wal_expired_record): a restore reading the timeline
 * meanwhile is told the segment was removed, never that the archive ends
 * there.  A .partial or .backup file is no segment PostgreSQL asks for.
 * doomed is sorted by segment, so the last of a timeline is its highest.
 */
static bool
record_expired(WalRemoval *removal, BkError *err)
{
	Expire *ex = removal->ex;

	for (size_t idx = 0; idx < removal->doomed_count; idx++)
	{
		const WalDoomed *doomed = &removal->doomed[idx];
		bool last = true;

		if (!doomed->segment)
			continue;
		for (size_t later = idx + 1; later < removal->doomed_count && last;
			 later++)
			last = !(removal->doomed[later].segment &&
					 removal->doomed[later].timeline == doomed->timeline);
		if (last &&
			!bk_wal_expired_record(ex->repo, ex->source, doomed->name, err))
		{
			bk_error_hint(err, "bk expire removes no WAL it has not "
							   "recorded. Run it again once the repository "
							   "answers.");
			return false;
		}
	}
	return true;
}

/*
 * The WAL of area before the cutoff, oldest first: expire stopped part way
 * leaves the archive starting later, never with a hole that bk list and
 * bk verify would report as a gap.  Listed whole before the first removal.
 */
static bool
remove_wal(WalRemoval *removal, BkRepoArea area, BkError *err)
{
	Expire *ex = removal->ex;
	bool ok;

	removal->area = area;
	ok = bk_repo_list(ex->repo, area, ex->source, BK_KIND_WAL, "", false,
					  judge_wal_object, removal, err);
	if (ok && removal->doomed_count > 0)
		qsort(removal->doomed, removal->doomed_count, sizeof(*removal->doomed),
			  doomed_cmp);
	if (ok && !ex->policy->dry_run)
		ok = record_expired(removal, err);
	for (size_t idx = 0; ok && idx < removal->doomed_count; idx++)
	{
		const WalDoomed *doomed = &removal->doomed[idx];

		if (!ex->policy->dry_run &&
			!bk_repo_delete(ex->repo, area, ex->source, BK_KIND_WAL,
							doomed->entry_name, err))
		{
			ok = false;
			break;
		}
		removal->count++;
		removal->bytes += doomed->size;
		if (removal->first[0] == '\0' ||
			strcmp(doomed->name, removal->first) < 0)
			bk_strlcpy(removal->first, doomed->name, sizeof(removal->first));
		if (strcmp(doomed->name, removal->last) > 0)
			bk_strlcpy(removal->last, doomed->name, sizeof(removal->last));
	}
	doomed_free(removal);
	return ok;
}

/* Remove one snapshot: its record first, then the rest. */
static bool
remove_snapshot(Expire *ex, const BkSnapshot *snapshot, BkError *err)
{
	char record[BK_SNAPSHOT_ID_MAX + 32];
	char prefix[BK_SNAPSHOT_ID_MAX + 2];

	snprintf(record, sizeof(record), "%s/%s", snapshot->id, BK_SNAPSHOT_RECORD);
	snprintf(prefix, sizeof(prefix), "%s/", snapshot->id);
	return bk_repo_delete(ex->repo, BK_REPO_ARCHIVE, ex->source,
						  BK_KIND_SNAPSHOT, record, err) &&
		   bk_repo_delete_prefix(ex->repo, BK_REPO_ARCHIVE, ex->source,
								 BK_KIND_SNAPSHOT, prefix, err) &&
		   bk_repo_delete_prefix(ex->repo, BK_REPO_CONFLICTS, ex->source,
								 BK_KIND_SNAPSHOT, prefix, err);
}

/*
 * Does the snapshot end where the newest timeline does not pass (a restore
 * to an earlier moment branched off before its end)?  Known only from
 * that timeline's branch points: without them (a history file archived
 * without them and no key configured, or one that cannot be read) bk
 * cannot tell, and the snapshot counts as on it here, for the parents the
 * source may name; build_view then counts it as off it for the policy.
 */
static bool
off_latest_timeline(const BkWalCatalog *wal, const BkSnapshot *snapshot)
{
	const BkWalTimeline *latest =
		bk_wal_timeline(wal, bk_wal_latest_timeline(wal));

	if (latest == NULL || snapshot->timeline == latest->timeline ||
		!latest->history_known)
		return false;
	for (int ancIdx = 0; ancIdx < latest->ancestor_count; ancIdx++)
		if (latest->ancestors[ancIdx].timeline == snapshot->timeline)
			return snapshot->stop_lsn > latest->ancestors[ancIdx].end_lsn;
	return true; /* its timeline is not in the newest one's history */
}

/* Snapshot histories (databases) bk expire tells apart. */
#define BK_EXPIRE_HISTORIES_MAX 64

/*
 * Mark the snapshots the source may name as the parent of its next diff or
 * incr snapshot, or of one it is taking now, whose record (sent last) is
 * the only object that names the parent: until it arrives, bk cannot tell.
 *
 * The extension takes the newest complete snapshot in its history table
 * for an incr, the newest complete full for a diff, newest by start time
 * (snap_prepare in bk_snapshot_worker.c).  bk sees that history in the
 * records: newest in the catalog's order, by start time from the same
 * clock (the id's second, then the record's start-time), among the
 * snapshots the source's current timeline passes through (a restore to an
 * earlier moment rolls the table back with the database).
 * When that one ended on an earlier timeline than the source's, the source
 * was restored since, maybe from it with --target immediate, or to a
 * moment between its end and the commit that marked it complete: the
 * restored table then has it running, so the one before it is the newest
 * complete the source knows, and is marked too.  Without restores these
 * are the newest snapshots, which the policy keeps anyway.
 *
 * Each database where the extension is installed keeps a history of its
 * own: snapshots taken from two databases of one cluster form two
 * histories, and the newest of each is marked (the records say which,
 * history-database).
 */

static void
mark_next_parents_of(Expire *ex, bool fulls_only, uint32_t database,
					 bool with_unnamed)
{
	uint32_t latest = bk_wal_latest_timeline(&ex->catalog.wal);
	int marked = 0;

	for (int snapIdx = ex->catalog.count - 1; snapIdx >= 0 && marked < 2;
		 snapIdx--)
	{
		const BkSnapshot *snapshot = &ex->catalog.snapshots[snapIdx];
		BkRetentionSnapshot *view = &ex->view[snapIdx];

		if (!snapshot->has_record || view->off_latest || view->foreign ||
			(ex->unauthenticated != NULL && ex->unauthenticated[snapIdx]) ||
			(fulls_only && strcmp(snapshot->kind, "full") != 0) ||
			(snapshot->history_database != database &&
			 !(with_unnamed && snapshot->history_database == 0)))
			continue;
		view->next_parent = true;
		marked++;
		if (latest == 0 || snapshot->timeline == latest)
			break;
	}
}

static void
mark_next_parents(Expire *ex, bool fulls_only)
{
	uint32_t databases[BK_EXPIRE_HISTORIES_MAX];
	int count = 0;
	bool too_many = false;

	/* The databases the records name, each once. */
	for (int snapIdx = 0; snapIdx < ex->catalog.count; snapIdx++)
	{
		uint32_t database = ex->catalog.snapshots[snapIdx].history_database;
		bool seen = false;

		if (database == 0 || !ex->catalog.snapshots[snapIdx].has_record ||
			(ex->unauthenticated != NULL && ex->unauthenticated[snapIdx]))
			continue;
		for (int idx = 0; idx < count; idx++)
			seen |= databases[idx] == database;
		if (seen)
			continue;
		if (count == BK_EXPIRE_HISTORIES_MAX)
			too_many = true;
		else
			databases[count++] = database;
	}
	/*
	 * Records without the field (older bk) joined the one history the
	 * others name, the usual case (the extension in one database); with
	 * several, which one they belong to is unknown, and they are one more.
	 */
	for (int idx = 0; idx < count; idx++)
		mark_next_parents_of(ex, fulls_only, databases[idx], count == 1);
	if (count != 1)
		mark_next_parents_of(ex, fulls_only, 0, false);
	/* More databases than that: every snapshot may be one's next parent. */
	if (too_many)
		for (int snapIdx = 0; snapIdx < ex->catalog.count; snapIdx++)
			if (ex->catalog.snapshots[snapIdx].has_record)
				ex->view[snapIdx].next_parent = true;
}

/* What checking a snapshot's record with the keyring found. */
typedef enum RecordCheck
{
	RECORD_AUTHENTIC,
	RECORD_UNAUTHENTIC, /* it does not decrypt, or carries other metadata */
	RECORD_GONE         /* removed since it was listed (another bk expire) */
} RecordCheck;

/*
 * The catalog judges snapshots from their records' keyless metadata, which
 * nothing authenticates: anyone who can write to bk's topics can publish a
 * "full" snapshot under any source id, of garbage or sealed to a key of
 * its own, that the catalog calls restorable; so can a source sealing to a
 * key whose private half the keyring lacks (a rotation not finished).
 * Counted as the newest full, such a snapshot would make the genuine ones
 * and their WAL expendable.  With the keyring, a snapshot counts as
 * restorable only if its record, and each record of its chain, decrypts
 * and authenticates the metadata the catalog used, and holds the same
 * kind, parent and LSNs: what restore_load_chain checks before a restore
 * relies on it.  One that does not counts as not restorable, as a restore
 * would refuse it: it never makes older snapshots or WAL expendable, and
 * stays while newer than the oldest kept one.
 *
 * A record removed since the listing (by another bk expire, which takes a
 * snapshot's record first) is gone, as when the catalog finds it so
 * (bk_repo_read_gone confirms it by a listing).  Why a record does not
 * authenticate, or is gone, is in why.  False only when the repository
 * failed to read it: what the snapshot is is then unknown, and nothing is
 * removed, as for a record the catalog could not read.
 */
static bool
check_record(Expire *ex, const BkSnapshot *snapshot, RecordCheck *check,
			 bool *key_missing, char *why, size_t why_len, BkError *err)
{
	BkDecoder *decoder = ex->policy->decoder;
	BkSnapRecord *record = NULL;
	char name[BK_SNAPSHOT_ID_MAX + 32];
	char prefix[BK_SNAPSHOT_ID_MAX + 16];
	const char *message;
	BkError fail;

	*check = RECORD_AUTHENTIC;
	*key_missing = false;
	why[0] = '\0';
	bk_error_clear(&fail);
	snprintf(name, sizeof(name), "%s/%s", snapshot->id, BK_SNAPSHOT_RECORD);
	if (!bk_snapshot_record_load(ex->repo, decoder, ex->source, snapshot->id,
								 &record, &fail))
	{
		BkError gone = fail;

		/* A record no longer there reads as missing (a sequence error). */
		if (bk_repo_read_gone(ex->repo, BK_REPO_ARCHIVE, ex->source,
							  BK_KIND_SNAPSHOT, name, &gone))
		{
			*check = RECORD_GONE;
			snprintf(why, why_len,
					 "its record was removed after it was listed (by a bk "
					 "expire running meanwhile?)");
			return true;
		}
		if (gone.code != fail.code ||
			(!bk_error_is_damage(&fail) && fail.code != BK_ERR_NOT_FOUND))
		{
			*err = gone;
			bk_error_prefix(err, "nothing removed: source %s: ", ex->source);
			bk_error_hint(err, "What a snapshot is decides what stays.  Run "
							   "bk expire again once the repository answers.");
			return false;
		}
	}
	else if (!bk_repo_meta_agrees(decoder, snapshot->meta_digest, ex->source,
								  &fail))
		;
	else if (strcmp(record->kind, snapshot->kind) != 0 ||
			 strcmp(record->parent, snapshot->parent) != 0 ||
			 record->start_lsn != snapshot->start_lsn ||
			 record->stop_lsn != snapshot->stop_lsn)
		bk_error_set(&fail, BK_ERR_FORMAT,
					 "its record disagrees with its metadata (kind, parent "
					 "or LSNs)");
	bk_snapshot_record_free(record);
	if (fail.code == BK_OK)
		return true;
	*check = RECORD_UNAUTHENTIC;
	*key_missing = fail.code == BK_ERR_KEY;
	/* The messages name the snapshot; the line that says this does too. */
	message = fail.message;
	snprintf(prefix, sizeof(prefix), "snapshot %s: ", snapshot->id);
	if (strncmp(message, prefix, strlen(prefix)) == 0)
		message += strlen(prefix);
	snprintf(why, why_len,
			 "its record does not decrypt and authenticate with the keyring: "
			 "%s",
			 message);
	return true;
}

/*
 * Check the record of every snapshot that has one (see check_record), and
 * take the restorable ones that fail, or build on one that does, off the
 * decision (BK_SNAP_UNAUTHENTICATED).  What a record that fails says is
 * not heard either: it names no next parent (mark_next_parents).  One
 * whose record is gone counts as a snapshot without a record, as when the
 * catalog finds it gone, and so does not restore what builds on it.
 */
static bool
authenticate_snapshots(Expire *ex, const char *program, BkError *err)
{
	BkSnapshotCatalog *catalog = &ex->catalog;
	char why[sizeof(catalog->snapshots[0].reason)];
	RecordCheck check;

	if (ex->policy->decoder == NULL)
		return true;
	ex->unauthenticated = bk_cli_alloc_zero((size_t) catalog->count + 1,
											sizeof(*ex->unauthenticated));
	ex->key_missing = bk_cli_alloc_zero((size_t) catalog->count + 1,
										sizeof(*ex->key_missing));
	for (int snapIdx = 0; snapIdx < catalog->count; snapIdx++)
	{
		BkSnapshot *snapshot = &catalog->snapshots[snapIdx];

		if (!snapshot->has_record || snapshot->other_engine)
			continue;
		if (!check_record(ex, snapshot, &check, &ex->key_missing[snapIdx], why,
						  sizeof(why), err))
			return false;
		if (check == RECORD_UNAUTHENTIC)
			ex->unauthenticated[snapIdx] = bk_cli_strdup(why);
		else if (check == RECORD_GONE)
		{
			fprintf(stderr,
					"%s: note: snapshot %s of source %s: %s; counted as a "
					"snapshot without a record\n",
					program, snapshot->id, ex->source, why);
			snapshot->has_record = false;
			snapshot->complete = false;
			snapshot->restorable = false;
			snapshot->problem = BK_SNAP_INCOMPLETE;
			bk_strlcpy(snapshot->reason, why, sizeof(snapshot->reason));
		}
	}
	for (int snapIdx = 0; snapIdx < catalog->count; snapIdx++)
	{
		BkSnapshot *snapshot = &catalog->snapshots[snapIdx];
		int depth = 0;

		if (!snapshot->restorable)
			continue;
		for (int index = snapIdx; index >= 0 && depth <= catalog->count;
			 index = catalog->snapshots[index].parent_index, depth++)
		{
			const BkSnapshot *link = &catalog->snapshots[index];

			if (link->has_record && ex->unauthenticated[index] == NULL)
				continue;
			snapshot->restorable = false;
			/* Its chain needs the missing key: so does it. */
			ex->key_missing[snapIdx] |= ex->key_missing[index];
			if (ex->unauthenticated[index] == NULL)
			{
				snapshot->problem = BK_SNAP_PARENT_MISSING;
				snprintf(snapshot->reason, sizeof(snapshot->reason),
						 "its chain holds snapshot %s, whose record was "
						 "removed after it was listed",
						 link->id);
			}
			else if (index == snapIdx)
			{
				snapshot->problem = BK_SNAP_UNAUTHENTICATED;
				bk_strlcpy(snapshot->reason, ex->unauthenticated[index],
						   sizeof(snapshot->reason));
			}
			else
			{
				snapshot->problem = BK_SNAP_UNAUTHENTICATED;
				snprintf(snapshot->reason, sizeof(snapshot->reason),
						 "its chain holds snapshot %s, whose record does not "
						 "decrypt and authenticate with the keyring",
						 link->id);
			}
			break;
		}
	}
	return true;
}

/* The catalog as the retention decision sees it. */
static bool
build_view(Expire *ex, BkError *err)
{
	ex->view =
		bk_cli_alloc_zero((size_t) ex->catalog.count + 1, sizeof(*ex->view));
	ex->verdicts =
		bk_cli_alloc_zero((size_t) ex->catalog.count + 1, sizeof(BkVerdict));
	for (int snapIdx = 0; snapIdx < ex->catalog.count; snapIdx++)
	{
		const BkSnapshot *snapshot = &ex->catalog.snapshots[snapIdx];
		int parent_index = snapshot->parent_index;

		/*
		 * The catalog links the parent of complete snapshots only; one
		 * still arriving names it in its record (sent last, but possibly
		 * archived first), and what stays keeps its parent.
		 */
		if (parent_index < 0 && snapshot->parent[0] != '\0')
			parent_index =
				bk_snapshot_catalog_find(&ex->catalog, snapshot->parent);
		ex->view[snapIdx] = (BkRetentionSnapshot){
			.id = snapshot->id,
			.kind = snapshot->kind,
			.parent_index = parent_index,
			.restorable = snapshot->restorable,
			.stop_us = snapshot->stop_us,
			.stop_order = snapshot->stop_lsn,
			.stored_ms = snapshot->stored_ms,
			.off_latest = off_latest_timeline(&ex->catalog.wal, snapshot),
			/* Only one complete but for the key: an incomplete one is not
			 * kept for its record's key. */
			.key_missing = ex->key_missing != NULL &&
						   ex->key_missing[snapIdx] &&
						   snapshot->problem == BK_SNAP_UNAUTHENTICATED,
			.foreign = snapshot->other_engine ||
					   snapshot->problem == BK_SNAP_CONFLICT ||
					   (snapshot->system_identifier[0] != '\0' &&
						ex->catalog.wal.system_identifier[0] != '\0' &&
						strcmp(snapshot->system_identifier,
							   ex->catalog.wal.system_identifier) != 0),
		};
	}
	mark_next_parents(ex, false); /* of an incr */
	mark_next_parents(ex, true);  /* of a diff */

	/*
	 * Which snapshots the source's timeline passes through is unknown
	 * without its branch points: none ends on it for sure but those on it
	 * (off_latest_timeline counts the others as on it, which marks more
	 * parents above, but would let the policy keep a full past the branch
	 * and remove the one the timeline descends from).
	 */
	{
		uint32_t latest = bk_wal_latest_timeline(&ex->catalog.wal);
		const BkWalTimeline *tl = bk_wal_timeline(&ex->catalog.wal, latest);

		for (int snapIdx = 0; snapIdx < ex->catalog.count; snapIdx++)
			if (tl != NULL && !tl->history_known &&
				ex->catalog.snapshots[snapIdx].restorable &&
				ex->catalog.snapshots[snapIdx].timeline != latest)
			{
				ex->view[snapIdx].off_latest = true;
				ex->history_unknown = true;
			}
	}
	return true;
}

/*
 * With the newest timeline's history unknown, --retain-full keeps what
 * restores that timeline only if it keeps a full on it: which full on
 * another timeline it descends from, bk cannot tell.  Else nothing goes.
 */
static bool
history_unknown_keeps_all(Expire *ex, char *note, size_t note_len)
{
	uint32_t latest = bk_wal_latest_timeline(&ex->catalog.wal);
	const BkWalTimeline *tl = bk_wal_timeline(&ex->catalog.wal, latest);

	if (!ex->history_unknown || ex->policy->retain_full == 0)
		return false;
	for (int snapIdx = 0; snapIdx < ex->catalog.count; snapIdx++)
		if (ex->verdicts[snapIdx] == BK_VERDICT_KEEP &&
			ex->catalog.snapshots[snapIdx].restorable &&
			ex->catalog.snapshots[snapIdx].timeline == latest &&
			strcmp(ex->catalog.snapshots[snapIdx].kind, "full") == 0)
			return false;
	for (int snapIdx = 0; snapIdx < ex->catalog.count; snapIdx++)
		ex->verdicts[snapIdx] = BK_VERDICT_KEEP;
	snprintf(note, note_len,
			 "nothing removed: which snapshot the source's timeline %u "
			 "descends from is unknown (%s)",
			 latest,
			 tl->has_history ? tl->history_problem
							 : "its history file is not archived");
	return true;
}

/*
 * Why snapshot snapIdx does not count as restorable for want of
 * authentication, or NULL: its own record failed, or one of its chain's.
 */
static const char *
unauthenticated_reason(const Expire *ex, int snapIdx)
{
	if (ex->unauthenticated == NULL)
		return NULL;
	if (ex->unauthenticated[snapIdx] != NULL)
		return ex->unauthenticated[snapIdx];
	if (ex->catalog.snapshots[snapIdx].problem == BK_SNAP_UNAUTHENTICATED)
		return ex->catalog.snapshots[snapIdx].reason;
	return NULL;
}

/* Is an expired snapshot built on snapIdx still to be removed? */
static bool
pending_child(const Expire *ex, const bool *done, int snapIdx)
{
	for (int childIdx = 0; childIdx < ex->catalog.count; childIdx++)
		if (!done[childIdx] && childIdx != snapIdx &&
			ex->verdicts[childIdx] == BK_VERDICT_EXPIRE &&
			ex->view[childIdx].parent_index == snapIdx)
			return true;
	return false;
}

/*
 * Remove snapshot snapIdx if it expires, and say what became of it (and
 * why it does not count as restorable, if it failed authentication).
 */
static bool
expire_snapshot(Expire *ex, const char *program, int snapIdx,
				json_t *snapshots_json, json_t *warnings_json,
				uint64_t *removed_snapshots, uint64_t *freed, BkError *err)
{
	const BkRetention *policy = ex->policy;
	const BkSnapshot *snapshot = &ex->catalog.snapshots[snapIdx];
	BkVerdict verdict = ex->verdicts[snapIdx];
	const char *reason =
		bk_retention_reason(&ex->view[snapIdx], verdict, policy);
	const char *unauthenticated = unauthenticated_reason(ex, snapIdx);

	if (verdict == BK_VERDICT_EXPIRE)
	{
		(*removed_snapshots)++;
		*freed += snapshot->stored_bytes;
		if (!policy->dry_run && !remove_snapshot(ex, snapshot, err))
			return false;
	}
	if (unauthenticated != NULL)
		fprintf(stderr,
				"%s: warning: snapshot %s of source %s does not count as "
				"restorable: %s\n",
				program, snapshot->id, ex->source, unauthenticated);
	if (policy->json)
	{
		json_t *item = bk_snapshot_json(snapshot);

		json_object_set_new(item, "removed",
							json_boolean(verdict == BK_VERDICT_EXPIRE));
		json_object_set_new(item, "verdict", json_string(reason));
		/* null: not checked (no keyring, or no record to check) */
		json_object_set_new(
			item, "authenticated",
			ex->unauthenticated == NULL || !snapshot->has_record ||
					snapshot->other_engine
				? json_null()
				: json_boolean(ex->unauthenticated[snapIdx] == NULL));
		json_array_append_new(snapshots_json, item);
		if (unauthenticated != NULL)
		{
			char warning[1024];

			snprintf(warning, sizeof(warning),
					 "snapshot %s does not count as restorable: %s",
					 snapshot->id, unauthenticated);
			json_array_append_new(warnings_json, json_string(warning));
		}
	}
	else
	{
		printf("  %s snapshot %s (%s, stop %s): %s\n",
			   verdict != BK_VERDICT_EXPIRE ? "keep  "
			   : policy->dry_run            ? "would remove"
											: "removed",
			   snapshot->id, snapshot->kind[0] ? snapshot->kind : "?",
			   snapshot->stop_time[0] ? snapshot->stop_time : "unknown",
			   reason);
		if (unauthenticated != NULL)
			printf("    not counted as restorable: %s\n", unauthenticated);
	}
	return true;
}

int
bk_pg_expire(const char *program, BkRepo *repo, const char *source,
			 const BkRetention *policy, BkError *err)
{
	Expire expire = {.source = source, .policy = policy, .repo = repo};
	Expire *ex = &expire;
	json_t *result = NULL;
	json_t *snapshots_json = NULL;
	json_t *warnings_json = NULL;
	WalRemoval wal = {.ex = ex};
	char note[512] = "";
	uint64_t cutoff = 0;
	int64_t guard_us = BK_TIME_UNKNOWN;
	uint32_t cutoff_timeline = 1;
	uint64_t removed_snapshots = 0;
	bool *done = NULL;
	uint64_t freed = 0;
	int64_t now_ms = bk_wall_ms();
	int status;

	if (!bk_snapshot_catalog_load(repo, source, policy->decoder, &ex->catalog,
								  err))
		goto fail;

	/*
	 * A record that could not be read says nothing of its snapshot, which
	 * would count as one without a record: removed, with the WAL from its
	 * start, if older than those kept; and what builds on it too.
	 *
	 * One listed, then gone when read, was removed meanwhile: by another
	 * bk expire (two cron jobs, a cron job and a manual run, hosts sharing
	 * a bucket), which takes a snapshot's record first, then the rest.
	 * The snapshot is then what such a removal cut short leaves, one
	 * without a record, and counts as one: it restores nothing any more,
	 * with or without this run.  That only ever takes restorable
	 * snapshots away from the decision, which then keeps older ones, not
	 * fewer: the fulls kept are the newest restorable ones, the window's
	 * anchor the newest restorable one before it, and the WAL goes only
	 * before the oldest start of what stays (a snapshot without a record
	 * that stays keeps the WAL created since its id's time).
	 */
	for (int snapIdx = 0; snapIdx < ex->catalog.count; snapIdx++)
		if (ex->catalog.snapshots[snapIdx].record_error == BK_ERR_NOT_FOUND)
			fprintf(stderr,
					"%s: note: snapshot %s of source %s: %s; counted as a "
					"snapshot without a record\n",
					program, ex->catalog.snapshots[snapIdx].id, source,
					ex->catalog.snapshots[snapIdx].reason);
		else if (ex->catalog.snapshots[snapIdx].record_error != BK_OK)
		{
			bk_error_set(err, ex->catalog.snapshots[snapIdx].record_error,
						 "nothing removed: snapshot %s of source %s: %s",
						 ex->catalog.snapshots[snapIdx].id, source,
						 ex->catalog.snapshots[snapIdx].reason);
			bk_error_hint(err, "What a snapshot is decides what stays.  Run "
							   "bk expire again once the repository answers.");
			goto fail;
		}
	if (!authenticate_snapshots(ex, program, err) || !build_view(ex, err))
		goto fail;
	if (!bk_retention_decide(ex->view, ex->catalog.count, policy, now_ms,
							 ex->verdicts))
		snprintf(note, sizeof(note),
				 "nothing removed: source %s has no restorable %ssnapshot to "
				 "anchor the retention",
				 source, policy->retain_full > 0 ? "full " : "");
	else if (!history_unknown_keeps_all(ex, note, sizeof(note)))
		cutoff =
			wal_cutoff(ex, &guard_us, &cutoff_timeline, note, sizeof(note));

	if (policy->json)
	{
		snapshots_json = json_array();
		warnings_json = json_array();
		result = json_pack("{s:s, s:b, s:o}", "source", source, "dry_run",
						   policy->dry_run, "policy",
						   policy->retain_full > 0
							   ? json_pack("{s:I}", "retain_full",
										   (json_int_t) policy->retain_full)
							   : json_pack("{s:I}", "retain_days",
										   (json_int_t) policy->retain_days));
	}
	else
		printf("source %s (%s %" PRId64 ")%s\n", source,
			   policy->retain_full > 0 ? "--retain-full" : "--retain-days",
			   policy->retain_full > 0 ? policy->retain_full
									   : policy->retain_days,
			   policy->dry_run ? ", dry run: nothing is removed" : "");

	/*
	 * Newest first, and never a parent before an expired snapshot built on
	 * it, so that expire stopped part way (a crash, a store error) never
	 * leaves a snapshot whose parent is gone.  Ids come from the source's
	 * clock, which can step back and sort a child before its parent: such
	 * a parent waits for its children (pending_child).
	 */
	done = bk_cli_alloc_zero((size_t) ex->catalog.count + 1, sizeof(bool));
	for (bool deferred = true; deferred;)
	{
		bool progress = false;

		deferred = false;
		for (int snapIdx = ex->catalog.count - 1; snapIdx >= 0; snapIdx--)
		{
			if (done[snapIdx])
				continue;
			if (ex->verdicts[snapIdx] == BK_VERDICT_EXPIRE &&
				pending_child(ex, done, snapIdx))
			{
				deferred = true;
				continue;
			}
			done[snapIdx] = true;
			progress = true;
			if (!expire_snapshot(ex, program, snapIdx, snapshots_json,
								 warnings_json, &removed_snapshots, &freed,
								 err))
				goto fail;
		}
		/* Parents form no cycle; were one forged, it would stay. */
		if (!progress)
			break;
	}
	if (cutoff > 0)
	{
		wal.cutoff = cutoff;
		wal.guard_us = guard_us;
		if (!remove_wal(&wal, BK_REPO_ARCHIVE, err) ||
			!remove_wal(&wal, BK_REPO_CONFLICTS, err))
			goto fail;
		freed += wal.bytes;
	}
	if (policy->decoder == NULL && (removed_snapshots > 0 || wal.count > 0))
	{
		/* Said once the run knows it removes something: then it matters. */
		fprintf(stderr, "%s: warning: %s\n", program,
				BK_RETENTION_KEYLESS_WARNING);
		if (policy->json)
			json_array_append_new(warnings_json,
								  json_string(BK_RETENTION_KEYLESS_WARNING));
	}
	{
		char keep_from[32] = "";

		if (cutoff > 0)
			bk_wal_segment_name(cutoff_timeline, cutoff,
								ex->catalog.wal.segment_size, keep_from);
		if (policy->json)
		{
			json_object_set_new(result, "snapshots", snapshots_json);
			snapshots_json = NULL;
			json_object_set_new(result, "snapshots_removed",
								json_integer((json_int_t) removed_snapshots));
			json_object_set_new(
				result, "wal",
				json_pack("{s:I, s:o, s:o, s:o}", "files_removed",
						  (json_int_t) wal.count, "first_removed",
						  wal.first[0] ? json_string(wal.first) : json_null(),
						  "last_removed",
						  wal.last[0] ? json_string(wal.last) : json_null(),
						  "kept_from_segment",
						  cutoff > 0 ? json_string(keep_from) : json_null()));
			json_object_set_new(result, "bytes_freed",
								json_integer((json_int_t) freed));
			json_object_set_new(result, "note",
								note[0] ? json_string(note) : json_null());
			json_object_set_new(result, "authenticated",
								json_boolean(policy->decoder != NULL));
			json_object_set_new(result, "warnings", warnings_json);
			warnings_json = NULL;
			json_dumpf(result, stdout, JSON_INDENT(2));
			fputc('\n', stdout);
		}
		else
		{
			if (wal.count > 0)
				printf("  %s %" PRIu64 " WAL file%s (%s .. %s): before the "
					   "oldest kept snapshot's start segment %s\n",
					   policy->dry_run ? "would remove" : "removed", wal.count,
					   wal.count == 1 ? "" : "s", wal.first, wal.last,
					   keep_from);
			else if (note[0] == '\0')
				printf("  no WAL to remove\n");
			if (note[0] != '\0')
				printf("  %s\n", note);
			printf("%s %" PRIu64 " snapshot%s and %" PRIu64
				   " WAL file%s, %" PRIu64 " bytes\n",
				   policy->dry_run ? "would remove" : "removed",
				   removed_snapshots, removed_snapshots == 1 ? "" : "s",
				   wal.count, wal.count == 1 ? "" : "s", freed);
		}
	}
	status = BK_EXIT_OK;
	goto done;

fail:
	status = bk_cli_report_error(program, err);
done:
	json_decref(snapshots_json);
	json_decref(warnings_json);
	json_decref(result);
	for (int snapIdx = 0;
		 ex->unauthenticated != NULL && snapIdx < ex->catalog.count; snapIdx++)
		free(ex->unauthenticated[snapIdx]);
	free(ex->unauthenticated);
	free(ex->key_missing);
	free(ex->view);
	free(ex->verdicts);
	free(done);
	bk_snapshot_catalog_free(&ex->catalog);
	return status;
}
