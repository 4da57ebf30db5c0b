/*
 * snapshot_catalog.c
 *		The keyless snapshot catalog: see snapshot_catalog.h.
 *
 * Each snapshot is a directory <source>/snapshot/<id>/ of object files.
 * Only the record's frame headers are read (its metadata says what the
 * snapshot is); data objects are counted, not opened, so listing a large
 * repository stays cheap.  A snapshot whose worker died never sends its
 * record and shows as incomplete; so does one whose objects are still
 * arriving, since shippers archive a snapshot's objects in any order.
 */
#include "snapshot_catalog.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bk_util.h"

/* ------------------------------------------------------------ catalog */

uint64_t
bk_lsn_segno(uint64_t lsn, uint32_t segment_size)
{
	return lsn / segment_size;
}

void
bk_snapshot_wal_range(const BkSnapshot *snapshot, uint32_t segment_size,
					  uint64_t *first_segno, uint64_t *last_segno)
{
	*first_segno = bk_lsn_segno(snapshot->start_lsn, segment_size);
	/* The segment holding the last byte before the stop point, as
	 * pg_backup_stop waits for (XLByteToPrevSeg). */
	*last_segno = snapshot->stop_lsn > snapshot->start_lsn
					  ? bk_lsn_segno(snapshot->stop_lsn - 1, segment_size)
					  : *first_segno;
	if (*last_segno < *first_segno)
		*last_segno = *first_segno;
}

bool
bk_snapshot_consistent_along(const BkWalCatalog *wal,
							 const BkSnapshot *snapshot, uint32_t timeline,
							 BkWalPath *path)
{
	BkWalPath ignored;
	uint64_t first;
	uint64_t last;

	if (path == NULL)
		path = &ignored;
	memset(path, 0, sizeof(*path));
	if (wal->segment_size == 0 ||
		!bk_wal_history_holds(wal, snapshot->timeline, snapshot->stop_lsn,
							  timeline, NULL, 0))
		return false;
	bk_snapshot_wal_range(snapshot, wal->segment_size, &first, &last);
	return bk_wal_backup_readable(wal, snapshot->timeline, first, last,
								  timeline, path);
}

const char *
bk_snapshot_problem_name(BkSnapshotProblem problem)
{
	switch (problem)
	{
		case BK_SNAP_RESTORABLE:
			return "restorable";
		case BK_SNAP_INCOMPLETE:
			return "incomplete";
		case BK_SNAP_PARENT_MISSING:
			return "parent missing";
		case BK_SNAP_WAL_MISSING:
			return "WAL missing";
		case BK_SNAP_CONFLICT:
			return "conflict";
		case BK_SNAP_UNAUTHENTICATED:
			return "not authenticated";
	}
	return "unknown";
}

/*
 * What one snapshot's objects are: the record, label, map and manifest,
 * and how many data objects, their stored bytes, and the newest commit.
 */
static bool
take_snapshot_object(void *arg, const BkRepoEntry *entry, BkError *err)
{
	BkSnapshot *snapshot = arg;
	const char *part = entry->name + strlen(snapshot->id) + 1;

	if (entry->is_prefix)
		return true;
	snapshot->stored_bytes += entry->size;
	if (entry->stored_ms > snapshot->stored_ms)
		snapshot->stored_ms = entry->stored_ms;
	if (strncmp(part, BK_SNAPSHOT_DATA "/", strlen(BK_SNAPSHOT_DATA) + 1) ==
			0 ||
		strncmp(part, BK_SNAPSHOT_RANGE "/", strlen(BK_SNAPSHOT_RANGE) + 1) ==
			0)
		snapshot->data_objects++;
	else if (strcmp(part, BK_SNAPSHOT_RECORD) == 0)
	{
		snapshot->has_record = true; /* confirmed by load_record_meta */
		snapshot->record_listed = true;
	}
	else if (strcmp(part, BK_SNAPSHOT_LABEL) == 0)
		snapshot->has_label = true;
	else if (strcmp(part, BK_SNAPSHOT_MAP) == 0)
		snapshot->has_map = true;
	else if (strcmp(part, BK_SNAPSHOT_MANIFEST) == 0)
		snapshot->has_manifest = true;
	return true;
}

static void
meta_text(const BkObjectTracker *object, const char *key, char *out,
		  size_t out_len)
{
	if (!bk_meta_get(object->meta, object->meta_len, key, out, out_len))
		out[0] = '\0';
}

static uint64_t
meta_u64(const BkObjectTracker *object, const char *key)
{
	char value[64];

	meta_text(object, key, value, sizeof(value));
	return strtoull(value, NULL, 10);
}

/*
 * Read the record's keyless metadata (not authenticated: a restore checks
 * it when it decrypts the record, restore_load_chain).
 */
static void
load_record_meta(const BkRepo *repo, const char *source, BkSnapshot *snapshot)
{
	char name[BK_SNAPSHOT_ID_MAX + 32];
	char value[BK_SNAPSHOT_ID_MAX + 16];
	BkObjectIdentity identity;
	BkObjectTracker *object = malloc(sizeof(*object));
	BkError err;

	snapshot->has_record = false;
	snprintf(name, sizeof(name), "%s/%s", snapshot->id, BK_SNAPSHOT_RECORD);
	if (object == NULL)
	{
		/* Unread, not absent: bk expire must not take it for abandoned. */
		snprintf(snapshot->reason, sizeof(snapshot->reason),
				 "its record cannot be read: out of memory");
		snapshot->record_error = BK_ERR_NOMEM;
		return;
	}
	if (!bk_repo_object_identity(repo, BK_REPO_ARCHIVE, source,
								 BK_KIND_SNAPSHOT, name, &identity, object,
								 &err))
	{
		/*
		 * Listed, then gone: removed meanwhile (by a bk expire), as a
		 * removal takes the record first.  BK_ERR_NOT_FOUND says so.
		 */
		if (bk_repo_read_gone(repo, BK_REPO_ARCHIVE, source, BK_KIND_SNAPSHOT,
							  name, &err))
			snprintf(snapshot->reason, sizeof(snapshot->reason),
					 "its record was removed after it was listed (by a bk "
					 "expire running meanwhile?): %s",
					 err.message);
		else
			snprintf(snapshot->reason, sizeof(snapshot->reason),
					 "its record cannot be read: %s", err.message);
		/* Not what it holds (frames, metadata): whether it could be read. */
		if (err.code != BK_ERR_FORMAT && err.code != BK_ERR_SEQUENCE)
			snapshot->record_error = err.code;
		free(object);
		return;
	}
	if (!bk_repo_meta_digest(object, snapshot->meta_digest, &err))
	{
		snprintf(snapshot->reason, sizeof(snapshot->reason),
				 "its record cannot be read: %s", err.message);
		snapshot->record_error = err.code;
		free(object);
		return;
	}
	snapshot->meta_read = true;
	snapshot->has_record = true;
	/* PostgreSQL's records carry no engine; the MariaDB agent's do. */
	meta_text(object, "engine", value, sizeof(value));
	snapshot->other_engine =
		value[0] != '\0' && strcmp(value, "postgresql") != 0;
	meta_text(object, "kind", snapshot->kind, sizeof(snapshot->kind));
	meta_text(object, "parent", snapshot->parent, sizeof(snapshot->parent));
	meta_text(object, "start-lsn", value, sizeof(value));
	if (!bk_parse_lsn(value, &snapshot->start_lsn))
		snapshot->start_lsn = BK_LSN_INVALID;
	meta_text(object, "stop-lsn", value, sizeof(value));
	if (!bk_parse_lsn(value, &snapshot->stop_lsn))
		snapshot->stop_lsn = BK_LSN_INVALID;
	snapshot->timeline = (uint32_t) meta_u64(object, "timeline");
	meta_text(object, "start-time", snapshot->start_time,
			  sizeof(snapshot->start_time));
	meta_text(object, "stop-time", snapshot->stop_time,
			  sizeof(snapshot->stop_time));
	if (!bk_parse_timestamp(snapshot->start_time, &snapshot->start_us))
		snapshot->start_us = BK_TIME_UNKNOWN;
	if (!bk_parse_timestamp(snapshot->stop_time, &snapshot->stop_us))
		snapshot->stop_us = BK_TIME_UNKNOWN;
	snapshot->files = meta_u64(object, "files");
	snapshot->history_database =
		(uint32_t) meta_u64(object, "history-database");
	snapshot->objects = meta_u64(object, "objects");
	snapshot->bytes = meta_u64(object, "bytes");
	snapshot->segment_size = (uint32_t) meta_u64(object, "segment-size");
	meta_text(object, "system-identifier", snapshot->system_identifier,
			  sizeof(snapshot->system_identifier));
	if (snapshot->start_lsn == BK_LSN_INVALID ||
		snapshot->stop_lsn == BK_LSN_INVALID || snapshot->timeline == 0)
	{
		snapshot->has_record = false;
		snprintf(snapshot->reason, sizeof(snapshot->reason),
				 "its record's metadata lacks start-lsn, stop-lsn or "
				 "timeline");
	}
	free(object);
}

/*
 * Oldest start first.  An id is its start in whole seconds and random hex
 * ("YYYYMMDDTHHMMSSZ-xxxxxxxx"), so snapshots started within one second
 * (small databases, scripts) would sort by chance, while the extension
 * takes the newest by its exact start time as the next parent.  Within one
 * second the records' start times (milliseconds, the same clock) decide;
 * one without a known start (its record not there yet) comes after.
 */
static int
snapshot_cmp(const void *a, const void *b)
{
	const BkSnapshot *left = a;
	const BkSnapshot *right = b;
	bool left_known = left->start_us != BK_TIME_UNKNOWN;
	bool right_known = right->start_us != BK_TIME_UNKNOWN;
	int cmp = strncmp(left->id, right->id, BK_SNAPSHOT_ID_SECONDS_LEN);

	if (cmp != 0)
		return cmp;
	if (left_known != right_known)
		return left_known ? -1 : 1;
	if (left_known && left->start_us != right->start_us)
		return left->start_us < right->start_us ? -1 : 1;
	return strcmp(left->id, right->id);
}

bool
bk_snapshot_damaged(const BkSnapshot *snapshot)
{
	if (snapshot->problem == BK_SNAP_PARENT_MISSING)
		return true;
	return snapshot->problem == BK_SNAP_INCOMPLETE && snapshot->record_listed &&
		   snapshot->record_error == BK_OK && !snapshot->other_engine;
}

int
bk_snapshot_catalog_find(const BkSnapshotCatalog *catalog, const char *id)
{
	for (int snapIdx = 0; snapIdx < catalog->count; snapIdx++)
		if (strcmp(catalog->snapshots[snapIdx].id, id) == 0)
			return snapIdx;
	return -1;
}

/* Completeness from what is present (criterion 1, keyless). */
static void
judge_complete(BkSnapshot *snapshot)
{
	if (!snapshot->has_record)
	{
		if (snapshot->reason[0] == '\0')
			snprintf(snapshot->reason, sizeof(snapshot->reason),
					 "no record (snapshot.json): the snapshot was cancelled "
					 "or failed, or is still arriving");
		return;
	}
	if (snapshot->data_objects != snapshot->objects)
		snprintf(snapshot->reason, sizeof(snapshot->reason),
				 "%" PRIu64 " of its %" PRIu64 " data objects are in the "
				 "repository",
				 snapshot->data_objects, snapshot->objects);
	else if (!snapshot->has_label)
		snprintf(snapshot->reason, sizeof(snapshot->reason),
				 "its backup_label is missing");
	else if (!snapshot->has_map)
		snprintf(snapshot->reason, sizeof(snapshot->reason),
				 "its tablespace_map is missing");
	else if (!snapshot->has_manifest)
		snprintf(snapshot->reason, sizeof(snapshot->reason),
				 "its backup_manifest is missing");
	else
		snapshot->complete = true;
}

/*
 * Criterion 4: the snapshot is of the system whose WAL the source holds.
 * Two clusters configured with one source id would otherwise mix: a
 * snapshot of one restored with the WAL of the other.  The snapshot's
 * system identifier must match the source's newest WAL and the WAL at the
 * snapshot's own start.
 */
static bool
judge_identity(const BkRepo *repo, const BkSnapshotCatalog *catalog,
			   BkSnapshot *snapshot)
{
	const BkWalCatalog *wal = &catalog->wal;
	char at_start[32];

	if (snapshot->system_identifier[0] == '\0' ||
		wal->system_identifier[0] == '\0' || wal->segment_size == 0)
		return true; /* nothing to compare: criterion 3 decides */
	if (strcmp(snapshot->system_identifier, wal->system_identifier) != 0)
	{
		snprintf(snapshot->reason, sizeof(snapshot->reason),
				 "it was taken of database system %s, but the source's WAL "
				 "(newest: %s) is of system %s: another cluster archives "
				 "under source id \"%s\"",
				 snapshot->system_identifier, wal->newest_name,
				 wal->system_identifier, catalog->source);
		return false;
	}
	bk_wal_segment_system_id(
		repo, catalog->source, snapshot->timeline,
		bk_lsn_segno(snapshot->start_lsn, wal->segment_size), wal->segment_size,
		at_start, sizeof(at_start));
	if (at_start[0] != '\0' &&
		strcmp(snapshot->system_identifier, at_start) != 0)
	{
		char name[32];

		bk_wal_segment_name(
			snapshot->timeline,
			bk_lsn_segno(snapshot->start_lsn, wal->segment_size),
			wal->segment_size, name);
		snprintf(snapshot->reason, sizeof(snapshot->reason),
				 "it was taken of database system %s, but the WAL segment "
				 "at its start (%s) is of system %s: another cluster "
				 "archives under source id \"%s\"",
				 snapshot->system_identifier, name, at_start, catalog->source);
		return false;
	}
	return true;
}

/*
 * Criterion 3: every segment from start to stop is archived, on the
 * snapshot's timeline or along a later timeline that left it at or after
 * the stop point.  A promotion in the segment that holds the stop leaves
 * the old timeline's copy of that segment as .partial only (the promoted
 * server archives it so), while the new timeline's copy, which recovery
 * along it reads, holds the same WAL up to the branch point.
 */
static bool
judge_wal(const BkSnapshotCatalog *catalog, BkSnapshot *snapshot)
{
	const BkWalCatalog *wal = &catalog->wal;
	uint32_t segment_size = wal->segment_size;
	uint64_t first;
	uint64_t last;
	BkWalPath path;
	char first_name[32];
	char last_name[32];
	char absent[32];

	if (segment_size == 0)
	{
		snprintf(snapshot->reason, sizeof(snapshot->reason),
				 "no WAL is archived for this source");
		return false;
	}
	if (bk_snapshot_consistent_along(wal, snapshot, snapshot->timeline, &path))
		return true;
	for (int tlIdx = 0; tlIdx < wal->timeline_count; tlIdx++)
		if (wal->timelines[tlIdx].timeline != snapshot->timeline &&
			bk_snapshot_consistent_along(wal, snapshot,
										 wal->timelines[tlIdx].timeline, NULL))
			return true;
	bk_snapshot_wal_range(snapshot, segment_size, &first, &last);
	/* The reason: what its own timeline lacks. */
	bk_wal_segment_name(snapshot->timeline, first, segment_size, first_name);
	bk_wal_segment_name(snapshot->timeline, last, segment_size, last_name);
	if (path.missing > 0)
		bk_strlcpy(absent, path.first_missing, sizeof(absent));
	else if (path.beyond_end)
		bk_wal_segment_name(snapshot->timeline, path.first_beyond_segno,
							segment_size, absent);
	else
		bk_strlcpy(absent, first_name, sizeof(absent));
	snprintf(snapshot->reason, sizeof(snapshot->reason),
			 "WAL segment %s is not archived (it needs %s .. %s to reach "
			 "consistency)",
			 absent, first_name, last_name);
	return false;
}

static void
judge_restorable(const BkRepo *repo, BkSnapshotCatalog *catalog, int index,
				 int depth)
{
	BkSnapshot *snapshot = &catalog->snapshots[index];

	if (snapshot->problem != BK_SNAP_RESTORABLE || snapshot->restorable)
		return; /* judged already */
	if (!snapshot->complete)
	{
		snapshot->problem = BK_SNAP_INCOMPLETE;
		return;
	}
	if (strcmp(snapshot->kind, "full") != 0)
	{
		BkSnapshot *parent;

		snapshot->parent_index =
			snapshot->parent[0]
				? bk_snapshot_catalog_find(catalog, snapshot->parent)
				: -1;
		if (snapshot->parent_index < 0 || depth > catalog->count)
		{
			snapshot->problem = BK_SNAP_PARENT_MISSING;
			snprintf(snapshot->reason, sizeof(snapshot->reason),
					 snapshot->parent[0]
						 ? "its parent %s is not in the repository"
						 : "it is a %s snapshot without a parent",
					 snapshot->parent[0] ? snapshot->parent : snapshot->kind);
			return;
		}
		judge_restorable(repo, catalog, snapshot->parent_index, depth + 1);
		parent = &catalog->snapshots[snapshot->parent_index];
		/*
		 * A parent lacking only WAL of its own (between its start and its
		 * stop) is still a base: recovery of this snapshot starts at this
		 * one's start, and every page changed since the parent's start is
		 * in this one, so none of the parent's WAL is replayed.
		 */
		if (!parent->restorable && parent->problem != BK_SNAP_WAL_MISSING)
		{
			snapshot->problem = BK_SNAP_PARENT_MISSING;
			snprintf(snapshot->reason, sizeof(snapshot->reason),
					 "its parent %s is not restorable (%s)", parent->id,
					 bk_snapshot_problem_name(parent->problem));
			return;
		}
	}
	if (!judge_identity(repo, catalog, snapshot))
	{
		snapshot->problem = BK_SNAP_CONFLICT;
		return;
	}
	if (!judge_wal(catalog, snapshot))
	{
		snapshot->problem = BK_SNAP_WAL_MISSING;
		return;
	}
	snapshot->restorable = true;
	snapshot->reason[0] = '\0';
}

static void
compute_window(BkSnapshotCatalog *catalog)
{
	const BkWalCatalog *wal = &catalog->wal;
	const BkSnapshot *oldest = NULL;
	int64_t created_us;
	BkWalPath path;

	if (wal->newest_name[0] != '\0')
	{
		int64_t now_ms = bk_wall_ms();

		catalog->has_rpo = true;
		if (bk_parse_timestamp(wal->newest_created, &created_us))
			catalog->rpo_seconds = (now_ms - created_us / 1000) / 1000.0;
		else
			catalog->rpo_seconds = (now_ms - wal->newest_archived_ms) / 1000.0;
		if (catalog->rpo_seconds < 0)
			catalog->rpo_seconds = 0;
	}
	for (int snapIdx = 0; snapIdx < catalog->count; snapIdx++)
		if (catalog->snapshots[snapIdx].restorable &&
			(oldest == NULL ||
			 catalog->snapshots[snapIdx].stop_lsn < oldest->stop_lsn))
		{
			oldest = &catalog->snapshots[snapIdx];
			catalog->window_snapshot = snapIdx;
		}
	if (oldest == NULL || wal->segment_size == 0)
		return;

	/*
	 * The window runs from the oldest restorable snapshot's stop point to
	 * the end of the archive on the newest timeline whose history holds the
	 * snapshot's timeline (recovery_target_timeline = 'latest' follows the
	 * newest of all, so a newer one that does not is said too), along the
	 * branch points: every segment on that path is needed.
	 */
	for (int tlIdx = wal->timeline_count - 1; tlIdx >= 0; tlIdx--)
	{
		const BkWalTimeline *tl = &wal->timelines[tlIdx];

		if (tl->segments == 0 && !tl->has_history)
			continue;
		bk_wal_path(wal, oldest->timeline,
					bk_lsn_segno(oldest->stop_lsn, wal->segment_size),
					tl->timeline, BK_WAL_END, &path);
		if (!path.reachable)
		{
			if (catalog->window_other_timeline == 0)
			{
				catalog->window_other_timeline = tl->timeline;
				bk_strlcpy(catalog->window_other_reason, path.problem,
						   sizeof(catalog->window_other_reason));
			}
			continue;
		}
		catalog->has_window = true;
		catalog->window_start_lsn = oldest->stop_lsn;
		bk_strlcpy(catalog->window_start_time, oldest->stop_time,
				   sizeof(catalog->window_start_time));
		catalog->window_end_timeline = path.end_timeline;
		catalog->window_end_lsn =
			path.end_segno == BK_WAL_END
				? oldest->stop_lsn
				: (path.end_segno + 1) * (uint64_t) wal->segment_size;
		bk_strlcpy(catalog->window_end_time, wal->newest_created,
				   sizeof(catalog->window_end_time));
		catalog->window_missing_segments = path.missing;
		bk_strlcpy(catalog->window_first_missing, path.first_missing,
				   sizeof(catalog->window_first_missing));
		return;
	}
}

/* Snapshot ids: the "directories" below <source>/snapshot/. */
static bool
take_snapshot_id(void *arg, const BkRepoEntry *entry, BkError *err)
{
	BkSnapshotCatalog *catalog = arg;
	BkSnapshot *grown;
	BkSnapshot *snapshot;

	if (!entry->is_prefix || strlen(entry->name) > BK_SNAPSHOT_ID_MAX)
		return true;
	grown = realloc(catalog->snapshots,
					(size_t) (catalog->count + 1) * sizeof(*grown));
	if (grown == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	catalog->snapshots = grown;
	snapshot = &catalog->snapshots[catalog->count++];
	memset(snapshot, 0, sizeof(*snapshot));
	bk_strlcpy(snapshot->id, entry->name, sizeof(snapshot->id));
	snapshot->parent_index = -1;
	snapshot->start_us = BK_TIME_UNKNOWN;
	snapshot->stop_us = BK_TIME_UNKNOWN;
	snapshot->start_lsn = BK_LSN_INVALID;
	snapshot->stop_lsn = BK_LSN_INVALID;
	return true;
}

/*
 * Each snapshot's objects are listed, and its record's metadata read, on
 * up to this many threads: from an object store every snapshot costs a
 * round trip per thousand objects and one for the record, which one after
 * another made a restore's planning grow with the number of snapshots
 * kept.
 */
#define SNAPSHOT_LOAD_THREADS 8

/* The snapshots of a catalog being loaded: slots claimed by the threads. */
typedef struct SnapshotLoad
{
	const BkRepo *repo;
	const char *source;
	BkSnapshotCatalog *catalog;
	atomic_int next;
	atomic_bool failed;
	pthread_mutex_t error_lock;
	BkError first_error;
} SnapshotLoad;

/* What is present of one snapshot, and its record's metadata. */
static bool
load_snapshot(SnapshotLoad *load, BkSnapshot *snapshot, BkError *err)
{
	char prefix[BK_SNAPSHOT_ID_MAX + 2];

	snprintf(prefix, sizeof(prefix), "%s/", snapshot->id);
	if (!bk_repo_list(load->repo, BK_REPO_ARCHIVE, load->source,
					  BK_KIND_SNAPSHOT, prefix, true, take_snapshot_object,
					  snapshot, err))
		return false;
	if (snapshot->has_record)
		load_record_meta(load->repo, load->source, snapshot);
	judge_complete(snapshot);
	return true;
}

static void *
load_snapshots(void *arg)
{
	SnapshotLoad *load = arg;
	BkError err;

	for (;;)
	{
		int slot = atomic_fetch_add(&load->next, 1);

		if (slot >= load->catalog->count || atomic_load(&load->failed))
			break;
		if (!load_snapshot(load, &load->catalog->snapshots[slot], &err))
		{
			pthread_mutex_lock(&load->error_lock);
			if (!atomic_load(&load->failed))
				load->first_error = err;
			atomic_store(&load->failed, true);
			pthread_mutex_unlock(&load->error_lock);
			break;
		}
	}
	return NULL;
}

bool
bk_snapshot_catalog_load(const BkRepo *repo, const char *source,
						 BkDecoder *decoder, BkSnapshotCatalog *catalog,
						 BkError *err)
{
	SnapshotLoad load = {.repo = repo, .source = source, .catalog = catalog};
	pthread_t threads[SNAPSHOT_LOAD_THREADS];
	int started = 0;

	memset(catalog, 0, sizeof(*catalog));
	catalog->window_snapshot = -1;
	bk_strlcpy(catalog->source, source, sizeof(catalog->source));
	if (!bk_wal_catalog_load(repo, source, decoder, &catalog->wal, err) ||
		!bk_repo_list(repo, BK_REPO_ARCHIVE, source, BK_KIND_SNAPSHOT, "",
					  false, take_snapshot_id, catalog, err))
	{
		bk_snapshot_catalog_free(catalog);
		return false;
	}
	atomic_init(&load.next, 0);
	atomic_init(&load.failed, false);
	pthread_mutex_init(&load.error_lock, NULL);
	/* The calling thread loads too: without threads it loads them all. */
	while (started < SNAPSHOT_LOAD_THREADS - 1 &&
		   started < catalog->count - 1 &&
		   pthread_create(&threads[started], NULL, load_snapshots, &load) == 0)
		started++;
	load_snapshots(&load);
	for (int threadIdx = 0; threadIdx < started; threadIdx++)
		pthread_join(threads[threadIdx], NULL);
	pthread_mutex_destroy(&load.error_lock);
	if (atomic_load(&load.failed))
	{
		*err = load.first_error;
		bk_snapshot_catalog_free(catalog);
		return false;
	}
	if (catalog->count > 0)
		qsort(catalog->snapshots, (size_t) catalog->count,
			  sizeof(*catalog->snapshots), snapshot_cmp);
	for (int snapIdx = 0; snapIdx < catalog->count; snapIdx++)
		judge_restorable(repo, catalog, snapIdx, 0);
	compute_window(catalog);
	return true;
}

void
bk_snapshot_catalog_free(BkSnapshotCatalog *catalog)
{
	bk_wal_catalog_free(&catalog->wal);
	free(catalog->snapshots);
	catalog->snapshots = NULL;
	catalog->count = 0;
}

static json_t *
lsn_json(uint64_t lsn)
{
	char text[32];

	if (lsn == BK_LSN_INVALID)
		return json_null();
	bk_format_lsn(lsn, text, sizeof(text));
	return json_string(text);
}

static json_t *
text_or_null(const char *text)
{
	return text[0] ? json_string(text) : json_null();
}

json_t *
bk_snapshot_json(const BkSnapshot *snapshot)
{
	json_t *item = json_object();

	json_object_set_new(item, "id", json_string(snapshot->id));
	json_object_set_new(item, "kind", text_or_null(snapshot->kind));
	json_object_set_new(item, "parent", text_or_null(snapshot->parent));
	json_object_set_new(item, "start_lsn", lsn_json(snapshot->start_lsn));
	json_object_set_new(item, "stop_lsn", lsn_json(snapshot->stop_lsn));
	json_object_set_new(item, "timeline",
						snapshot->has_record ? json_integer(snapshot->timeline)
											 : json_null());
	json_object_set_new(item, "history_database",
						snapshot->history_database != 0
							? json_integer(snapshot->history_database)
							: json_null());
	json_object_set_new(item, "start_time", text_or_null(snapshot->start_time));
	json_object_set_new(item, "stop_time", text_or_null(snapshot->stop_time));
	json_object_set_new(item, "files",
						snapshot->has_record
							? json_integer((json_int_t) snapshot->files)
							: json_null());
	json_object_set_new(item, "objects",
						snapshot->has_record
							? json_integer((json_int_t) snapshot->objects)
							: json_null());
	json_object_set_new(item, "objects_present",
						json_integer((json_int_t) snapshot->data_objects));
	json_object_set_new(item, "bytes",
						snapshot->has_record
							? json_integer((json_int_t) snapshot->bytes)
							: json_null());
	json_object_set_new(item, "stored_bytes",
						json_integer((json_int_t) snapshot->stored_bytes));
	json_object_set_new(item, "complete", json_boolean(snapshot->complete));
	json_object_set_new(item, "restorable", json_boolean(snapshot->restorable));
	json_object_set_new(
		item, "problem",
		snapshot->restorable
			? json_null()
			: json_string(bk_snapshot_problem_name(snapshot->problem)));
	json_object_set_new(item, "reason", text_or_null(snapshot->reason));
	return item;
}
