/*
 * binlog_catalog.c
 *		The binlog files and ranges a repository holds of a MariaDB source.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binlog_catalog.h"
#include "bk_frame.h"
#include "bk_util.h"
#include "cli.h"
#include "times.h"

typedef struct CatalogBuild
{
	const BkRepo *repo;
	const char *source;
	BinlogCatalog *catalog;
	bool vanished;       /* a range listed was gone when its header was read */
	bool leave_out_gone; /* ... and is left out (bk expire) */
} CatalogBuild;

/*
 * catalog_file
 *		The file's entry, added if new.
 */
static BinlogFile *
catalog_file(BinlogCatalog *catalog, const char *name)
{
	BinlogFile *grown;

	for (int idx = 0; idx < catalog->file_count; idx++)
		if (strcmp(catalog->files[idx].name, name) == 0)
			return &catalog->files[idx];
	grown = realloc(catalog->files,
					(size_t) (catalog->file_count + 1) * sizeof(BinlogFile));
	if (grown == NULL)
		return NULL;
	catalog->files = grown;
	memset(&grown[catalog->file_count], 0, sizeof(BinlogFile));
	bk_strlcpy(grown[catalog->file_count].name, name,
			   sizeof(grown[catalog->file_count].name));
	return &grown[catalog->file_count++];
}

/*
 * catalog_add
 *		One stored object (BkRepoListFn): range name and header metadata.
 *		Names that are not ranges are not ours to judge here; bk verify
 *		reports them.
 */
static bool
catalog_add(void *arg, const BkRepoEntry *entry, BkError *err)
{
	CatalogBuild *build = arg;
	BinlogRange range;
	BinlogFile *file;
	BinlogRange *grown;
	BkObjectIdentity identity;
	BkObjectTracker object;
	char file_name[BK_BINLOG_FILE_NAME_MAX + 1];
	char value[32];

	if (entry->is_prefix)
		return true;
	memset(&range, 0, sizeof(range));
	if (!bk_binlog_range_parse(entry->name, file_name, sizeof(file_name),
							   &range.start, &range.end))
		return true;
	bk_strlcpy(range.name, entry->name, sizeof(range.name));
	if (!bk_repo_object_identity(build->repo, BK_REPO_ARCHIVE, build->source,
								 BK_KIND_BINLOG, entry->name, &identity,
								 &object, err))
	{
		/* Listed, then gone (bk expire meanwhile): not "not archived". */
		if (bk_repo_read_gone(build->repo, BK_REPO_ARCHIVE, build->source,
							  BK_KIND_BINLOG, entry->name, err))
		{
			build->vanished = true;
			if (build->leave_out_gone)
			{
				if (build->catalog->gone++ == 0)
					bk_strlcpy(build->catalog->first_gone, entry->name,
							   sizeof(build->catalog->first_gone));
				bk_error_clear(err);
				return true;
			}
			err->code = BK_ERR_SEQUENCE;
		}
		return bk_error_prefix(err, "binlog range %s: ", entry->name);
	}
	if (!bk_repo_meta_digest(&object, range.meta_digest, err))
		return false;
	if (!bk_meta_get(object.meta, object.meta_len, "closed", range.closed,
					 sizeof(range.closed)))
		range.closed[0] = '\0';
	if (!bk_meta_get(object.meta, object.meta_len, "next-file", range.next_file,
					 sizeof(range.next_file)))
		range.next_file[0] = '\0';
	if (!bk_meta_get(object.meta, object.meta_len, "gtid", range.gtid,
					 sizeof(range.gtid)))
		range.gtid[0] = '\0';
	if (!bk_meta_get(object.meta, object.meta_len, "created", range.created,
					 sizeof(range.created)))
		range.created[0] = '\0';
	if (!bk_meta_get(object.meta, object.meta_len, "gap-before",
					 range.gap_before, sizeof(range.gap_before)))
		range.gap_before[0] = '\0';
	if (!bk_meta_get(object.meta, object.meta_len, "previous-end",
					 range.previous_end, sizeof(range.previous_end)) ||
		!bk_meta_get(object.meta, object.meta_len, "previous-closed",
					 range.previous_closed, sizeof(range.previous_closed)))
		range.previous_end[0] = range.previous_closed[0] = '\0';
	if (bk_meta_get(object.meta, object.meta_len, "last-event-time", value,
					sizeof(value)))
		range.last_event_time = (uint32_t) strtoul(value, NULL, 10);
	range.complete_until_ms = -1;
	if (bk_meta_get(object.meta, object.meta_len, "complete-until", value,
					sizeof(value)))
		range.complete_until_ms = strtoll(value, NULL, 10);

	file = catalog_file(build->catalog, file_name);
	if (file == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	grown = realloc(file->ranges,
					(size_t) (file->range_count + 1) * sizeof(BinlogRange));
	if (grown == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	file->ranges = grown;
	file->ranges[file->range_count++] = range;
	build->catalog->objects++;
	build->catalog->stored_bytes += entry->size;
	return true;
}

static int
compare_ranges(const void *a, const void *b)
{
	const BinlogRange *ra = a;
	const BinlogRange *rb = b;

	if (ra->start != rb->start)
		return ra->start < rb->start ? -1 : 1;
	if (ra->end != rb->end)
		return ra->end < rb->end ? -1 : 1;
	return 0;
}

/* The order of two file names' basenames (the text before the last dot). */
static int
compare_bases(const char *na, const char *nb)
{
	const char *dot_a = strrchr(na, '.');
	const char *dot_b = strrchr(nb, '.');
	size_t len_a = dot_a ? (size_t) (dot_a - na) : strlen(na);
	size_t len_b = dot_b ? (size_t) (dot_b - nb) : strlen(nb);
	int order = strncmp(na, nb, len_a < len_b ? len_a : len_b);

	if (order != 0)
		return order;
	return len_a < len_b ? -1 : len_a > len_b;
}

/* By basename, then in binlog order. */
static int
compare_by_base(const void *a, const void *b)
{
	const char *na = ((const BinlogFile *) a)->name;
	const char *nb = ((const BinlogFile *) b)->name;
	int order = compare_bases(na, nb);

	return order != 0 ? order : bk_binlog_file_compare(na, nb);
}

/*
 * compare_files
 *		Binlog order within a basename; between two, the history the agent
 *		sent first first (one whose ranges do not say when: first), then by
 *		basename.  By number alone, a second server's files would interleave
 *		with the first's (db2-bin.000003, mariadb-bin.000003, ...): each
 *		file's neighbour another server's, no history would chain past its
 *		first file, and what comes "before" a file would mix both.
 */
static int
compare_files(const void *a, const void *b)
{
	const BinlogFile *fa = a;
	const BinlogFile *fb = b;

	if (!bk_binlog_file_same_base(fa->name, fb->name))
	{
		if (fa->history_since_us != fb->history_since_us)
			return fa->history_since_us < fb->history_since_us ? -1 : 1;
		return compare_bases(fa->name, fb->name);
	}
	return bk_binlog_file_compare(fa->name, fb->name);
}

/*
 * sort_files
 *		Sort the files (compare_files): grouped by basename first, to date
 *		each history by the earliest created= of its ranges.
 */
static void
sort_files(BinlogCatalog *catalog)
{
	int first = 0;

	qsort(catalog->files, (size_t) catalog->file_count, sizeof(BinlogFile),
		  compare_by_base);
	while (first < catalog->file_count)
	{
		int64_t since = BK_TIME_UNKNOWN;
		int end = first;

		while (end < catalog->file_count &&
			   bk_binlog_file_same_base(catalog->files[first].name,
										catalog->files[end].name))
		{
			const BinlogFile *file = &catalog->files[end++];

			for (int idx = 0; idx < file->range_count; idx++)
			{
				int64_t created_us;

				if (bk_parse_timestamp(file->ranges[idx].created,
									   &created_us) &&
					(since == BK_TIME_UNKNOWN || created_us < since))
					since = created_us;
			}
		}
		for (int idx = first; idx < end; idx++)
			catalog->files[idx].history_since_us = since;
		first = end;
	}
	qsort(catalog->files, (size_t) catalog->file_count, sizeof(BinlogFile),
		  compare_files);
}

/*
 * chain_file
 *		Follow the ranges from 0: at each point take, of the ranges that
 *		hold it, the one that reaches furthest (of those, the one starting
 *		latest: there, when one does), from that point on.  A range sent
 *		again from an older position need not start where a range ends
 *		([a,c) sent, then [a,b) and [b,d) again): the chain goes on at c
 *		with the rest of [b,d).  Taken so, each range of the chain starts
 *		after the one before (one starting before it and reaching further
 *		would have been taken instead), so in the sorted order.
 */
static void
chain_file(BinlogFile *file)
{
	uint64_t at = 0;
	BinlogRange *last = NULL;

	qsort(file->ranges, (size_t) file->range_count, sizeof(BinlogRange),
		  compare_ranges);
	for (;;)
	{
		BinlogRange *best = NULL;

		for (int idx = 0; idx < file->range_count; idx++)
		{
			BinlogRange *range = &file->ranges[idx];

			if (range->start <= at && range->end > at &&
				(best == NULL || range->end > best->end ||
				 (range->end == best->end && range->start > best->start)))
				best = range;
		}
		if (best == NULL)
			break;
		best->in_chain = true;
		best->chain_start = at;
		last = best;
		at = best->end;
	}
	file->covered_end = at;
	file->last = last;
	file->closed = last != NULL && last->closed[0] != '\0';
	for (int idx = 0; idx < file->range_count; idx++)
		if (file->ranges[idx].start == 0 && file->ranges[idx].gap_before[0])
			file->gap_before = file->ranges[idx].gap_before;
	for (int idx = 0; idx < file->range_count; idx++)
		if (file->ranges[idx].start > at)
		{
			file->gap_start = at;
			file->gap_end = file->ranges[idx].start;
			break;
		}
}

/*
 * follows_directly
 *		Does next continue prev with nothing lost between them: the very
 *		next file number of the same basename (the last file of one history
 *		is followed by the first of another), and its first range not sent
 *		after a purge gap?
 */
static bool
follows_directly(const BinlogFile *prev, const BinlogFile *next)
{
	return bk_binlog_file_follows(prev->name, next->name) &&
		   next->gap_before == NULL;
}

/*
 * judge_end
 *		What the first ranges of next say about where file ended: set
 *		file's ended_at, ended_by and short_end.  A previous-end= naming
 *		another file, or one bk cannot read, says nothing of this one.
 *		Every first range is heard, not only the one the chain takes, and
 *		any that disagrees with the archive makes the file short: an
 *		object added to the repository can refuse a restore, never make a
 *		file whose end was lost pass for whole.
 */
static void
judge_end(BinlogFile *file, const BinlogFile *next)
{
	bool judged = false;

	for (int idx = 0; idx < next->range_count; idx++)
	{
		const BinlogRange *range = &next->ranges[idx];
		const char *colon = strrchr(range->previous_end, ':');
		size_t name_len = colon ? (size_t) (colon - range->previous_end) : 0;
		char *rest;
		uint64_t offset;
		bool short_end;

		if (range->start != 0 || colon == NULL ||
			name_len != strlen(file->name) ||
			strncmp(range->previous_end, file->name, name_len) != 0 ||
			colon[1] < '0' || colon[1] > '9')
			continue;
		errno = 0;
		offset = strtoull(colon + 1, &rest, 10);
		if (*rest != '\0' || errno == ERANGE)
			continue;
		short_end =
			file->covered_end != offset ||
			(strcmp(range->previous_closed, "none") != 0 && !file->closed);
		if (!judged || short_end)
		{
			file->ended_at = offset;
			file->ended_by = range->previous_closed;
		}
		file->short_end |= short_end;
		judged = true;
	}
}

/*
 * list_expired_record
 *		A record of bk expire (BkRepoListFn): its basename's entry raised
 *		to it.  bk writes binlog file names only; anything else there is
 *		not its record.
 */
static bool
list_expired_record(void *arg, const BkRepoEntry *entry, BkError *err)
{
	BinlogCatalog *catalog = arg;
	char(*grown)[BK_BINLOG_FILE_NAME_MAX + 1];
	const char *dot = strrchr(entry->name, '.');

	if (entry->is_prefix || dot == NULL || dot[1] < '0' || dot[1] > '9' ||
		strlen(entry->name) > BK_BINLOG_FILE_NAME_MAX)
		return true;
	for (int idx = 0; idx < catalog->expired_count; idx++)
		if (bk_binlog_file_same_base(catalog->expired[idx], entry->name))
		{
			if (bk_binlog_file_compare(entry->name, catalog->expired[idx]) > 0)
				bk_strlcpy(catalog->expired[idx], entry->name,
						   sizeof(catalog->expired[idx]));
			return true;
		}
	grown = realloc(catalog->expired,
					(size_t) (catalog->expired_count + 1) * sizeof(*grown));
	if (grown == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	catalog->expired = grown;
	bk_strlcpy(grown[catalog->expired_count++], entry->name, sizeof(*grown));
	return true;
}

const char *
binlog_catalog_expired_record(const BinlogCatalog *catalog, const char *file)
{
	for (int idx = 0; idx < catalog->expired_count; idx++)
		if (bk_binlog_file_same_base(catalog->expired[idx], file))
			return catalog->expired[idx];
	return NULL;
}

bool
binlog_catalog_expired(const BinlogCatalog *catalog, const char *file)
{
	const char *record = binlog_catalog_expired_record(catalog, file);

	return record != NULL && bk_binlog_file_compare(file, record) <= 0;
}

/* The records of one basename bk expire listed. */
typedef struct ExpiredRecords
{
	const char *file;
	char highest[BK_BINLOG_FILE_NAME_MAX + 1];
	char (*names)[BK_BINLOG_FILE_NAME_MAX + 1];
	size_t count;
} ExpiredRecords;

static bool
collect_expired_record(void *arg, const BkRepoEntry *entry, BkError *err)
{
	ExpiredRecords *records = arg;
	char(*grown)[BK_BINLOG_FILE_NAME_MAX + 1];

	if (entry->is_prefix || strrchr(entry->name, '.') == NULL ||
		strlen(entry->name) > BK_BINLOG_FILE_NAME_MAX ||
		!bk_binlog_file_same_base(entry->name, records->file))
		return true;
	grown = realloc(records->names, (records->count + 1) * sizeof(*grown));
	if (grown == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	records->names = grown;
	bk_strlcpy(grown[records->count++], entry->name, sizeof(*grown));
	if (records->highest[0] == '\0' ||
		bk_binlog_file_compare(entry->name, records->highest) > 0)
		bk_strlcpy(records->highest, entry->name, sizeof(records->highest));
	return true;
}

/*
 * binlog_expired_record
 *		As bk_wal_expired_record does for a WAL timeline: a key per record,
 *		never one replaced by a lower, and only records listed below one
 *		listed too removed, so two runs at once never lower the highest.
 */
bool
binlog_expired_record(BkRepo *repo, const char *source, const char *file,
					  BkError *err)
{
	ExpiredRecords records = {.file = file};
	char text[BK_BINLOG_FILE_NAME_MAX * 2 + 96];
	const char *dot = strrchr(file, '.');
	bool ok;

	snprintf(text, sizeof(text),
			 "bk expire removed the binlog files of basename %.*s up to %s\n",
			 dot ? (int) (dot - file) : (int) strlen(file), file, file);
	ok = bk_repo_put_record(repo, BK_REPO_EXPIRED, source, BK_KIND_BINLOG, file,
							text, strlen(text), err);
	if (!ok)
		bk_error_prefix(err,
						"could not record in repository %s that bk expire "
						"removes source \"%s\"'s binlog up to %s: ",
						bk_repo_location(repo), source, file);
	ok = ok && bk_repo_list(repo, BK_REPO_EXPIRED, source, BK_KIND_BINLOG, "",
							false, collect_expired_record, &records, err);
	for (size_t idx = 0; ok && idx < records.count; idx++)
		if (bk_binlog_file_compare(records.names[idx], records.highest) < 0)
			ok = bk_repo_delete(repo, BK_REPO_EXPIRED, source, BK_KIND_BINLOG,
								records.names[idx], err);
	free(records.names);
	return ok;
}

/*
 * binlog_catalog_load
 *		List the source's binlog objects and chain each file's ranges.
 */
static bool
load_catalog(const BkRepo *repo, const char *source, BinlogCatalog *catalog,
			 bool leave_out_gone, BkError *err)
{
	CatalogBuild build = {repo, source, catalog, false, leave_out_gone};

	/*
	 * A range removed between the listing and the read of its header (bk
	 * expire, which removes the oldest files, running meanwhile): list
	 * once more, so that reading the files expire keeps does not fail.
	 */
	for (int attempt = 0;; attempt++)
	{
		memset(catalog, 0, sizeof(*catalog));
		build.vanished = false;
		if (bk_repo_list(repo, BK_REPO_ARCHIVE, source, BK_KIND_BINLOG, "",
						 true, catalog_add, &build, err))
			break;
		binlog_catalog_free(catalog);
		if (!build.vanished || attempt > 0)
			return false;
		bk_error_clear(err);
	}
	if (!bk_repo_list(repo, BK_REPO_EXPIRED, source, BK_KIND_BINLOG, "", false,
					  list_expired_record, catalog, err))
	{
		binlog_catalog_free(catalog);
		return false;
	}
	sort_files(catalog);
	for (int idx = 0; idx < catalog->file_count; idx++)
	{
		chain_file(&catalog->files[idx]);
		catalog->files[idx].expired =
			binlog_catalog_expired(catalog, catalog->files[idx].name);
	}
	for (int idx = 0; idx < catalog->file_count; idx++)
	{
		BinlogFile *file = &catalog->files[idx];

		if (idx + 1 < catalog->file_count && file->gap_end == 0 &&
			file->covered_end > 0 &&
			follows_directly(file, &catalog->files[idx + 1]))
			judge_end(file, &catalog->files[idx + 1]);
		/*
		 * A crash leaves a file without ROTATE or STOP; the next one ends it,
		 * if the archive has its start (which says where this one ended:
		 * Kafka losing its newest messages can take a file's last range and
		 * the next file's first together).
		 * Not any later one: after a purge gap the agent goes on with the
		 * server's oldest file, and the file it was archiving is cut (bk
		 * binlog-get rebuilt it truncated, as if complete).
		 */
		file->complete = !file->short_end &&
						 (file->closed ||
						  (idx + 1 < catalog->file_count &&
						   file->gap_end == 0 && file->covered_end > 0 &&
						   catalog->files[idx + 1].covered_end > 0 &&
						   follows_directly(file, &catalog->files[idx + 1])));
		file->cut = !file->complete && idx + 1 < catalog->file_count &&
					file->gap_end == 0 && file->covered_end > 0;
	}
	return true;
}

bool
binlog_catalog_load(const BkRepo *repo, const char *source,
					BinlogCatalog *catalog, BkError *err)
{
	return load_catalog(repo, source, catalog, false, err);
}

bool
binlog_catalog_load_expiring(const BkRepo *repo, const char *source,
							 BinlogCatalog *catalog, BkError *err)
{
	return load_catalog(repo, source, catalog, true, err);
}

void
binlog_catalog_free(BinlogCatalog *catalog)
{
	for (int idx = 0; idx < catalog->file_count; idx++)
		free(catalog->files[idx].ranges);
	free(catalog->files);
	free(catalog->expired);
	memset(catalog, 0, sizeof(*catalog));
}

void
binlog_catalog_describe_short(const BinlogFile *file, char *buf, size_t len)
{
	char how[64];

	if (strcmp(file->ended_by, "rotate") == 0)
		bk_strlcpy(how, "where its ROTATE event ended it", sizeof(how));
	else if (strcmp(file->ended_by, "stop") == 0)
		bk_strlcpy(how, "where its STOP event ended it", sizeof(how));
	else if (strcmp(file->ended_by, "none") == 0)
		bk_strlcpy(how, "where it ended without ROTATE or STOP (a crash)",
				   sizeof(how));
	else
		snprintf(how, sizeof(how), "previous-closed=%.32s", file->ended_by);
	if (file->covered_end > file->ended_at)
		snprintf(buf, len,
				 "archived up to offset %" PRIu64 ", past offset %" PRIu64
				 ", %s (the first range of the next file says so): its"
				 " ranges are not the file the agent read",
				 file->covered_end, file->ended_at, how);
	else
		snprintf(buf, len,
				 "archived up to offset %" PRIu64 "%s, but the agent read"
				 " it to offset %" PRIu64 ", %s (the first range of the next"
				 " file says so): its last range is missing from the archive",
				 file->covered_end,
				 file->covered_end == file->ended_at
					 ? " without a closing range"
					 : "",
				 file->ended_at, how);
}

const BinlogFile *
binlog_catalog_file(const BinlogCatalog *catalog, const char *name)
{
	for (int idx = 0; idx < catalog->file_count; idx++)
		if (strcmp(catalog->files[idx].name, name) == 0)
			return &catalog->files[idx];
	return NULL;
}

bool
binlog_catalog_check_successor(const BkRepo *repo, const char *source,
							   BkDecoder *decoder, const BinlogCatalog *catalog,
							   const BinlogFile *file, BkError *err)
{
	const BinlogFile *next;

	if (file->closed || !file->complete ||
		file + 1 >= catalog->files + catalog->file_count)
		return true;
	next = file + 1;
	for (int idx = 0; idx < next->range_count; idx++)
	{
		const BinlogRange *range = &next->ranges[idx];

		if (range->start == 0 &&
			!bk_repo_meta_still(repo, BK_REPO_ARCHIVE, source, BK_KIND_BINLOG,
								range->name, decoder, range->meta_digest, err))
		{
			/*
			 * Listed, then gone when read (bk expire meanwhile, a store
			 * whose reads lag its listings): file is in the archive, so
			 * not "not in the archive" (bk binlog-get would exit 1, and a
			 * script fetching until 1 would stop here), but missing data.
			 */
			if (err->code == BK_ERR_NOT_FOUND)
				err->code = BK_ERR_SEQUENCE;
			return bk_error_prefix(err,
								   "whether binlog \"%s\" is complete rests "
								   "on its successor's first range: ",
								   file->name);
		}
	}
	return true;
}
