/*
 * snapshot_catalog.c
 *		MariaDB snapshots of a source, from their records' metadata.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bk_frame.h"
#include "bk_snapshot_format.h"
#include "bk_util.h"
#include "snapshot_catalog.h"
#include "times.h"

typedef struct SnapshotBuild
{
	const BkRepo *repo;
	const char *source;
	MariadbSnapshotCatalog *catalog;
} SnapshotBuild;

static MariadbSnapshot *
find_or_add(MariadbSnapshotCatalog *catalog, const char *id, size_t id_len)
{
	MariadbSnapshot *grown;

	if (id_len > MARIADB_SNAPSHOT_ID_MAX)
		return NULL;
	for (int idx = 0; idx < catalog->count; idx++)
		if (strlen(catalog->snapshots[idx].id) == id_len &&
			memcmp(catalog->snapshots[idx].id, id, id_len) == 0)
			return &catalog->snapshots[idx];
	grown = realloc(catalog->snapshots,
					(size_t) (catalog->count + 1) * sizeof(MariadbSnapshot));
	if (grown == NULL)
		return NULL;
	catalog->snapshots = grown;
	memset(&grown[catalog->count], 0, sizeof(MariadbSnapshot));
	memcpy(grown[catalog->count].id, id, id_len);
	grown[catalog->count].data_expected = -1;
	return &grown[catalog->count++];
}

static uint64_t
meta_u64(const BkObjectTracker *object, const char *key)
{
	char value[32];

	if (!bk_meta_get(object->meta, object->meta_len, key, value, sizeof(value)))
		return 0;
	return strtoull(value, NULL, 10);
}

/*
 * snapshot_add
 *		One object of some snapshot (BkRepoListFn).
 */
static bool
snapshot_add(void *arg, const BkRepoEntry *entry, BkError *err)
{
	SnapshotBuild *build = arg;
	const char *slash = strchr(entry->name, '/');
	MariadbSnapshot *snap;
	BkObjectIdentity identity;
	BkObjectTracker object;
	char value[32];

	if (entry->is_prefix || slash == NULL)
		return true;
	snap = find_or_add(build->catalog, entry->name,
					   (size_t) (slash - entry->name));
	if (snap == NULL)
		return true; /* not one of ours: bk verify says so */
	snap->objects++;
	snap->stored_bytes += entry->size;
	if (entry->stored_ms > snap->stored_ms)
		snap->stored_ms = entry->stored_ms;
	if (strncmp(slash + 1, "data/", 5) == 0)
		snap->data_objects++;
	else if (strcmp(slash + 1, "schema.json") == 0)
		snap->has_schema = true;
	if (strcmp(slash + 1, BK_SNAPSHOT_RECORD) != 0)
		return true;
	if (!bk_repo_object_identity(build->repo, BK_REPO_ARCHIVE, build->source,
								 BK_KIND_SNAPSHOT, entry->name, &identity,
								 &object, err))
	{
		/*
		 * One snapshot's record does not stop the catalog (every restore
		 * of the source would be refused): that snapshot is not complete.
		 * Whether its header was damaged or the repository failed is kept,
		 * for bk expire.
		 */
		snap->record_unreadable = true;
		/* Listed, then gone: removed meanwhile, record first (bk expire). */
		if (bk_repo_read_gone(build->repo, BK_REPO_ARCHIVE, build->source,
							  BK_KIND_SNAPSHOT, entry->name, err))
			snprintf(snap->reason, sizeof(snap->reason),
					 "its record was removed after it was listed (by a bk "
					 "expire running meanwhile?): %s",
					 err->message);
		else
			snprintf(snap->reason, sizeof(snap->reason),
					 "its record cannot be read: %s", err->message);
		if (err->code != BK_ERR_FORMAT && err->code != BK_ERR_SEQUENCE)
			snap->record_error = err->code;
		bk_error_clear(err);
		return true;
	}
	if (!bk_repo_meta_digest(&object, snap->meta_digest, err))
		return false;
	snap->has_record = true;
	snap->other_engine = !bk_meta_get(object.meta, object.meta_len, "engine",
									  value, sizeof(value)) ||
						 strcmp(value, "mariadb") != 0;
	if (bk_meta_get(object.meta, object.meta_len, "objects", value,
					sizeof(value)))
		snap->data_expected = (int64_t) strtoull(value, NULL, 10);
	if (!bk_meta_get(object.meta, object.meta_len, "binlog-file",
					 snap->binlog_file, sizeof(snap->binlog_file)))
		snap->binlog_file[0] = '\0';
	snap->binlog_pos = meta_u64(&object, "binlog-pos");
	if (!bk_meta_get(object.meta, object.meta_len, "gtid", snap->gtid,
					 sizeof(snap->gtid)))
		snap->gtid[0] = '\0';
	if (!bk_meta_get(object.meta, object.meta_len, "started", snap->started,
					 sizeof(snap->started)))
		snap->started[0] = '\0';
	if (!bk_meta_get(object.meta, object.meta_len, "consistent-at",
					 snap->consistent_at, sizeof(snap->consistent_at)))
		snap->consistent_at[0] = '\0';
	if (!bk_meta_get(object.meta, object.meta_len, "finished", snap->finished,
					 sizeof(snap->finished)))
		snap->finished[0] = '\0';
	snap->tables = meta_u64(&object, "tables");
	snap->rows = meta_u64(&object, "rows");
	return true;
}

bool
mariadb_snapshot_before_time(const MariadbSnapshot *snapshot, int64_t target_us)
{
	const char *point = snapshot->consistent_at[0] != '\0'
							? snapshot->consistent_at
							: snapshot->finished;
	int64_t point_us;

	return bk_parse_timestamp_zone(point, true, &point_us) &&
		   point_us <= target_us;
}

/*
 * judge_complete
 *		Every object of the snapshot is in the repository, as far as its
 *		record says.
 */
static void
judge_complete(MariadbSnapshot *snap)
{
	snap->complete = false;
	if (snap->record_unreadable)
		return; /* the reason says why */
	if (!snap->has_record)
		snprintf(snap->reason, sizeof(snap->reason),
				 "no record (snapshot.json): the snapshot failed, was"
				 " cancelled, or is still arriving");
	else if (snap->other_engine)
		snprintf(snap->reason, sizeof(snap->reason),
				 "its record is not a MariaDB snapshot's (no engine=mariadb):"
				 " another database archives under this source id");
	else if (!snap->has_schema)
		snprintf(snap->reason, sizeof(snap->reason),
				 "its schema.json is missing");
	else if (snap->data_expected >= 0 &&
			 snap->data_objects != (uint64_t) snap->data_expected)
		snprintf(snap->reason, sizeof(snap->reason),
				 "%" PRIu64 " of its %" PRId64 " data objects are in the"
				 " repository",
				 snap->data_objects, snap->data_expected);
	else
	{
		snap->complete = true;
		snap->reason[0] = '\0';
	}
}

static int
compare_snapshots(const void *a, const void *b)
{
	return strcmp(((const MariadbSnapshot *) a)->id,
				  ((const MariadbSnapshot *) b)->id);
}

bool
mariadb_snapshot_catalog_load(const BkRepo *repo, const char *source,
							  MariadbSnapshotCatalog *catalog, BkError *err)
{
	SnapshotBuild build = {repo, source, catalog};

	memset(catalog, 0, sizeof(*catalog));
	if (!bk_repo_list(repo, BK_REPO_ARCHIVE, source, BK_KIND_SNAPSHOT, "", true,
					  snapshot_add, &build, err))
	{
		mariadb_snapshot_catalog_free(catalog);
		return false;
	}
	qsort(catalog->snapshots, (size_t) catalog->count, sizeof(MariadbSnapshot),
		  compare_snapshots);
	for (int idx = 0; idx < catalog->count; idx++)
		judge_complete(&catalog->snapshots[idx]);
	return true;
}

bool
mariadb_snapshot_damaged(const MariadbSnapshot *snapshot)
{
	if (snapshot->complete || snapshot->other_engine)
		return false;
	if (snapshot->record_unreadable)
		return snapshot->record_error == BK_OK;
	return snapshot->has_record;
}

void
mariadb_snapshot_catalog_free(MariadbSnapshotCatalog *catalog)
{
	free(catalog->snapshots);
	memset(catalog, 0, sizeof(*catalog));
}

bool
mariadb_snapshot_reach(const MariadbSnapshot *snapshot,
					   const BinlogCatalog *binlog, const char **until_file,
					   uint64_t *until_pos, char *problem, size_t problem_len)
{
	const BinlogFile *previous = NULL;

	for (int idx = 0; idx < binlog->file_count; idx++)
	{
		const BinlogFile *file = &binlog->files[idx];
		int order = bk_binlog_file_compare(file->name, snapshot->binlog_file);

		/* Its history's files are together in the catalog. */
		if (previous == NULL &&
			(order < 0 ||
			 !bk_binlog_file_same_base(file->name, snapshot->binlog_file)))
			continue;
		if (previous == NULL)
		{
			/* The snapshot's own file, from 0 to its position at least. */
			if (order > 0 || file->covered_end == 0 ||
				file->covered_end < snapshot->binlog_pos)
			{
				snprintf(problem, problem_len,
						 "its binlog file %s is not archived from its start"
						 " up to the snapshot's position %" PRIu64,
						 snapshot->binlog_file, snapshot->binlog_pos);
				return false;
			}
		}
		else
		{
			/*
			 * The archive carries on only through complete files, each the
			 * next of the same basename: another basename is another
			 * server's binlog, whatever its number.
			 */
			if (!previous->complete || file->covered_end == 0 ||
				file->gap_before != NULL ||
				!bk_binlog_file_follows(previous->name, file->name))
				break;
		}
		previous = file;
		if (file->gap_end != 0)
			break; /* the chain ends where the hole starts */
	}
	if (previous == NULL)
	{
		snprintf(problem, problem_len, "its binlog file %s is not archived yet",
				 snapshot->binlog_file);
		return false;
	}
	*until_file = previous->name;
	*until_pos = previous->covered_end;
	return true;
}

bool
mariadb_binlog_hole_after(const BinlogCatalog *binlog, const char *until_file,
						  char *hole, size_t hole_len)
{
	const BinlogFile *until = NULL;
	const BinlogFile *next;
	int idx;

	for (idx = 0; idx < binlog->file_count && until == NULL; idx++)
		if (strcmp(binlog->files[idx].name, until_file) == 0)
			until = &binlog->files[idx];
	if (until == NULL)
	{
		snprintf(hole, hole_len, "binlog %s is not in the archive", until_file);
		return true;
	}
	if (until->gap_end != 0)
	{
		snprintf(hole, hole_len,
				 "bytes %" PRIu64 " to %" PRIu64 " of %s are missing",
				 until->gap_start, until->gap_end, until->name);
		return true;
	}
	if (idx >= binlog->file_count)
		return false; /* the newest file: the archive ends here */
	next = &binlog->files[idx];
	if (!bk_binlog_file_same_base(until->name, next->name))
		snprintf(hole, hole_len,
				 "%s is of another binlog basename than %s (another server's"
				 " binlog): the archive does not go on from one into the"
				 " other",
				 next->name, until->name);
	else if (!bk_binlog_file_follows(until->name, next->name))
		snprintf(hole, hole_len, "the files between %s and %s are missing",
				 until->name, next->name);
	else if (next->covered_end == 0)
		snprintf(hole, hole_len, "bytes 0 to %" PRIu64 " of %s are missing",
				 next->ranges[0].start, next->name);
	else if (until->short_end)
	{
		char what[448];

		binlog_catalog_describe_short(until, what, sizeof(what));
		snprintf(hole, hole_len, "binlog %s is %s", until->name, what);
	}
	else if (next->gap_before != NULL)
		snprintf(hole, hole_len,
				 "the agent did not go on into %s from where the archive"
				 " ended (%s): what the server logged between is not in it",
				 next->name, next->gap_before);
	else
		snprintf(hole, hole_len,
				 "%s is not complete (archived up to %" PRIu64
				 "), yet %s follows it",
				 until->name, until->covered_end, next->name);
	return true;
}
