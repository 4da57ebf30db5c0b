/*
 * wal_catalog.c
 *		The WAL catalog of a source: segments per timeline, branch points,
 *		and the segments a recovery needs.  See wal_catalog.h.
 */
#include "wal_catalog.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bk_util.h"

/* History files are a few lines; anything larger is not one. */
#define HISTORY_FILE_MAX (1024 * 1024)

static bool history_missing(const BkWalCatalog *catalog,
							const BkWalTimeline *tl);

/* ------------------------------------------------------------ names */

static bool
all_hex(const char *s, size_t len)
{
	for (size_t pos = 0; pos < len; pos++)
		if (!((s[pos] >= '0' && s[pos] <= '9') ||
			  (s[pos] >= 'A' && s[pos] <= 'F')))
			return false;
	return true;
}

static uint32_t
hex32(const char *s)
{
	char buf[9];

	memcpy(buf, s, 8);
	buf[8] = '\0';
	return (uint32_t) strtoul(buf, NULL, 16);
}

BkWalFileType
bk_wal_file_type(const char *name, uint32_t *timeline, uint32_t *log,
				 uint32_t *seg)
{
	size_t len = strlen(name);

	if (len >= 24 && all_hex(name, 24))
	{
		*timeline = hex32(name);
		*log = hex32(name + 8);
		*seg = hex32(name + 16);
		if (len == 24)
			return BK_WAL_SEGMENT;
		if (strcmp(name + 24, ".partial") == 0)
			return BK_WAL_PARTIAL;
		if (len == 40 && name[24] == '.' && all_hex(name + 25, 8) &&
			strcmp(name + 33, ".backup") == 0)
			return BK_WAL_BACKUP;
		return BK_WAL_OTHER;
	}
	if (len == 16 && all_hex(name, 8) && strcmp(name + 8, ".history") == 0)
	{
		*timeline = hex32(name);
		*log = 0;
		*seg = 0;
		return BK_WAL_HISTORY;
	}
	return BK_WAL_OTHER;
}

uint64_t
bk_wal_segno(uint32_t log, uint32_t seg, uint32_t segment_size)
{
	return (uint64_t) log * (UINT64_C(0x100000000) / segment_size) + seg;
}

void
bk_wal_segment_name(uint32_t timeline, uint64_t segno, uint32_t segment_size,
					char *out)
{
	uint64_t per_id = UINT64_C(0x100000000) / segment_size;

	snprintf(out, 25, "%08X%08X%08X", timeline, (uint32_t) (segno / per_id),
			 (uint32_t) (segno % per_id));
}

/* ------------------------------------------------------------ loading */

typedef struct SegmentEntry
{
	uint32_t timeline;
	uint32_t log;
	uint32_t seg;
	bool partial;
	int64_t stored_ms;
} SegmentEntry;

static int
segment_entry_cmp(const void *a, const void *b)
{
	const SegmentEntry *x = a;
	const SegmentEntry *y = b;

	if (x->timeline != y->timeline)
		return x->timeline < y->timeline ? -1 : 1;
	if (x->log != y->log)
		return x->log < y->log ? -1 : 1;
	if (x->seg != y->seg)
		return x->seg < y->seg ? -1 : 1;
	return (int) x->partial - (int) y->partial;
}

/* The timeline's entry, created (empty, in order) if missing; NULL: OOM. */
static BkWalTimeline *
timeline_entry(BkWalCatalog *catalog, uint32_t timeline)
{
	int pos = 0;
	BkWalTimeline *grown;

	while (pos < catalog->timeline_count &&
		   catalog->timelines[pos].timeline < timeline)
		pos++;
	if (pos < catalog->timeline_count &&
		catalog->timelines[pos].timeline == timeline)
		return &catalog->timelines[pos];
	grown = realloc(catalog->timelines,
					(size_t) (catalog->timeline_count + 1) * sizeof(*grown));
	if (grown == NULL)
		return NULL;
	catalog->timelines = grown;
	memmove(&grown[pos + 1], &grown[pos],
			(size_t) (catalog->timeline_count - pos) * sizeof(*grown));
	catalog->timeline_count++;
	memset(&grown[pos], 0, sizeof(grown[pos]));
	grown[pos].timeline = timeline;
	return &grown[pos];
}

/* Index of the first archived segno >= segno in tl (segments if none). */
static uint64_t
lower_bound(const BkWalTimeline *tl, uint64_t segno)
{
	uint64_t lo = 0;
	uint64_t hi = tl->segments;

	while (lo < hi)
	{
		uint64_t mid = lo + (hi - lo) / 2;

		if (tl->segnos[mid] < segno)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Segments of [from, to] not archived on tl: how many, and the first.
 * Arithmetic on the sorted list, so a huge range costs nothing.
 */
static uint64_t
missing_in_range(const BkWalTimeline *tl, uint64_t from, uint64_t to,
				 uint64_t *first_missing)
{
	uint64_t start;
	uint64_t end;
	uint64_t present;

	if (to < from)
		return 0;
	start = tl ? lower_bound(tl, from) : 0;
	end = tl ? lower_bound(tl, to + 1) : 0;
	present = end - start;
	if (present == to - from + 1)
		return 0;
	/* The first hole: where the archived run starting at from breaks. */
	*first_missing = from;
	for (uint64_t idx = start; idx < end && tl->segnos[idx] == *first_missing;
		 idx++)
		(*first_missing)++;
	return to - from + 1 - present;
}

/*
 * Read a WAL object's metadata: with decoder (may be NULL) authenticated
 * (bk_repo_object_meta), else keyless.  whole: without a key, read every
 * byte and check every frame's CRC (bk_repo_check_object), for objects
 * small enough that this costs nothing more than their headers.
 */
static bool
object_meta(const BkRepo *repo, const char *source, const char *name,
			BkDecoder *decoder, bool whole, BkObjectTracker *object,
			BkError *err)
{
	if (decoder == NULL && whole)
		return bk_repo_check_object(repo, BK_REPO_ARCHIVE, source, BK_KIND_WAL,
									name, name, object, err);
	return bk_repo_object_meta(repo, BK_REPO_ARCHIVE, source, BK_KIND_WAL, name,
							   decoder, object, err);
}

/*
 * The branch points of timeline tl, from its history object's metadata, or
 * with the key from its content.  A problem is recorded in tl, not
 * returned: one unreadable history file must not hide the rest.  With the
 * key the metadata is authenticated first (the file is one small chunk):
 * branch points decide where a missing segment is the end of the archive
 * (bk wal-get's exit 1, which ends recovery), so an altered one must not
 * be believed; without it, every frame's CRC is checked.
 */
static bool
load_history(const BkRepo *repo, const char *source, BkDecoder *decoder,
			 BkWalTimeline *tl, BkError *err)
{
	char name[32];
	BkObjectTracker object;
	BkError problem;
	char *value;
	size_t value_len;
	bool ok = false;

	snprintf(name, sizeof(name), "%08X.history", tl->timeline);
	bk_error_clear(&problem);
	if (!object_meta(repo, source, name, decoder, true, &object, &problem))
		goto done;
	value_len = object.meta_len + 1;
	value = malloc(value_len);
	if (value == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	/* Empty when the source could not parse the file: read it ourselves. */
	if (bk_meta_get(object.meta, object.meta_len, "branch-points", value,
					value_len) &&
		value[0] != '\0')
		ok = bk_branch_points_parse(value, tl->timeline, &tl->ancestors,
									&tl->ancestor_count, &problem);
	else if (decoder != NULL)
	{
		uint8_t *text;
		size_t len;

		if (bk_repo_decrypt_to_memory(repo, BK_REPO_ARCHIVE, source,
									  BK_KIND_WAL, name, decoder,
									  HISTORY_FILE_MAX, &text, &len, &problem))
		{
			ok = bk_timeline_history_parse((const char *) text, len,
										   tl->timeline, &tl->ancestors,
										   &tl->ancestor_count, &problem);
			free(text);
		}
	}
	else
		bk_error_set(&problem, BK_ERR_KEY,
					 "it was archived without branch-points metadata; with "
					 "the key (key_file) bk reads the file itself");
	free(value);

done:
	tl->history_known = ok;
	if (!ok)
	{
		snprintf(tl->history_problem, sizeof(tl->history_problem),
				 "history file %s: %s", name, problem.message);
		tl->history_error =
			problem.code != BK_OK ? problem.code : BK_ERR_FORMAT;
	}
	return true;
}

/* Parents, begin points and how far each ancestor is needed. */
static bool
link_histories(BkWalCatalog *catalog, BkError *err)
{
	int count = catalog->timeline_count;

	/*
	 * Every ancestor gets an entry first (one with nothing archived is
	 * still known through its descendants); adding entries moves the
	 * array, so no pointer is held across it.  Added entries have no
	 * history of their own, so the first count entries are all to visit.
	 */
	for (int tlIdx = 0; tlIdx < count; tlIdx++)
	{
		uint32_t timeline = catalog->timelines[tlIdx].timeline;

		if (!catalog->timelines[tlIdx].history_known)
			continue;
		for (int ancIdx = 0; ancIdx < catalog->timelines[tlIdx].ancestor_count;
			 ancIdx++)
		{
			uint32_t ancestor =
				catalog->timelines[tlIdx].ancestors[ancIdx].timeline;

			if (timeline_entry(catalog, ancestor) == NULL)
				return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
			/* An insertion before tlIdx shifted it: find it again. */
			while (catalog->timelines[tlIdx].timeline != timeline)
				tlIdx++;
		}
	}
	for (int tlIdx = 0; tlIdx < catalog->timeline_count; tlIdx++)
	{
		BkWalTimeline *tl = &catalog->timelines[tlIdx];

		if (!tl->history_known || tl->ancestor_count == 0)
			continue;
		tl->parent = tl->ancestors[tl->ancestor_count - 1].timeline;
		tl->begin_lsn = tl->ancestors[tl->ancestor_count - 1].end_lsn;
		for (int ancIdx = 0; ancIdx < tl->ancestor_count; ancIdx++)
		{
			BkWalTimeline *ancestor = (BkWalTimeline *) bk_wal_timeline(
				catalog, tl->ancestors[ancIdx].timeline);

			if (tl->ancestors[ancIdx].end_lsn > ancestor->needed_until)
			{
				ancestor->needed_until = tl->ancestors[ancIdx].end_lsn;
				ancestor->needed_by = tl->timeline;
			}
		}
	}
	return true;
}

/*
 * The first segment of tl the archive must hold: its first archived one,
 * or, when the archive holds its parent's WAL from before the segment
 * where tl branched off, that segment (recovery goes on into tl there,
 * and bk wal-get calls anything of tl before its first archived segment a
 * hole).  False when neither: nothing of tl is needed yet.
 */
static bool
needed_from(const BkWalCatalog *catalog, const BkWalTimeline *tl, int depth,
			uint64_t *segno)
{
	const BkWalTimeline *parent;
	uint64_t parent_segno;
	uint64_t branch_segno;
	bool found = tl->segments > 0;

	if (found)
		*segno = tl->first_segno;
	if (!tl->history_known || tl->parent == 0 ||
		depth > catalog->timeline_count)
		return found;
	parent = bk_wal_timeline(catalog, tl->parent);
	branch_segno = tl->begin_lsn / catalog->segment_size;
	if (parent != NULL &&
		needed_from(catalog, parent, depth + 1, &parent_segno) &&
		parent_segno < branch_segno && (!found || branch_segno < *segno))
	{
		*segno = branch_segno;
		found = true;
	}
	return found;
}

/* Missing segments per timeline, now that branch points are known. */
static void
count_gaps(BkWalCatalog *catalog)
{
	for (int tlIdx = 0; tlIdx < catalog->timeline_count; tlIdx++)
	{
		BkWalTimeline *tl = &catalog->timelines[tlIdx];
		bool has_hi = tl->segments > 0;
		uint64_t lo;
		uint64_t hi = tl->last_segno;

		if (tl->needed_until >= catalog->segment_size &&
			(!has_hi || tl->needed_until / catalog->segment_size - 1 > hi))
		{
			hi = tl->needed_until / catalog->segment_size - 1;
			has_hi = true;
		}
		if (!has_hi || !needed_from(catalog, tl, 0, &lo))
			continue;
		tl->gap_count = missing_in_range(tl, lo, hi, &tl->first_gap_segno);
	}
}

/* What listing <source>/wal gathers. */
typedef struct WalListing
{
	BkWalCatalog *catalog;
	SegmentEntry *entries;
	size_t count;
	size_t cap;
} WalListing;

static bool
list_wal_object(void *arg, const BkRepoEntry *entry, BkError *err)
{
	WalListing *listing = arg;
	uint32_t timeline;
	uint32_t log;
	uint32_t seg;
	BkWalFileType type;

	if (entry->is_prefix)
		return true;
	type = bk_wal_file_type(entry->name, &timeline, &log, &seg);
	if (type == BK_WAL_HISTORY)
	{
		BkWalTimeline *tl = timeline_entry(listing->catalog, timeline);

		if (tl == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		tl->has_history = true;
		listing->catalog->history_files++;
		return true;
	}
	if (type == BK_WAL_BACKUP)
		listing->catalog->backup_files++;
	if (type != BK_WAL_SEGMENT && type != BK_WAL_PARTIAL)
		return true;
	if (listing->count == listing->cap)
	{
		size_t new_cap = listing->cap ? listing->cap * 2 : 256;
		SegmentEntry *grown =
			realloc(listing->entries, new_cap * sizeof(*grown));

		if (grown == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		listing->entries = grown;
		listing->cap = new_cap;
	}
	listing->entries[listing->count++] = (SegmentEntry){
		timeline, log, seg, type == BK_WAL_PARTIAL, entry->stored_ms};
	return true;
}

static bool
count_entry(void *arg, const BkRepoEntry *entry, BkError *err)
{
	if (!entry->is_prefix)
		(*(uint64_t *) arg)++;
	return true;
}

/* The record's timeline in catalog->expired, or NULL. */
static BkWalExpired *
expired_entry(const BkWalCatalog *catalog, uint32_t timeline)
{
	for (int recIdx = 0; recIdx < catalog->expired_count; recIdx++)
		if (catalog->expired[recIdx].timeline == timeline)
			return &catalog->expired[recIdx];
	return NULL;
}

/*
 * A record of bk expire (wal_catalog.h): its timeline's entry raised to it.
 * bk writes segment names only; anything else there is not its record.
 */
static bool
list_expired_record(void *arg, const BkRepoEntry *entry, BkError *err)
{
	BkWalCatalog *catalog = arg;
	BkWalExpired *record;
	uint32_t timeline;
	uint32_t log;
	uint32_t seg;

	if (entry->is_prefix ||
		bk_wal_file_type(entry->name, &timeline, &log, &seg) != BK_WAL_SEGMENT)
		return true;
	record = expired_entry(catalog, timeline);
	if (record == NULL)
	{
		BkWalExpired *grown =
			realloc(catalog->expired,
					(size_t) (catalog->expired_count + 1) * sizeof(*grown));

		if (grown == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		catalog->expired = grown;
		record = &grown[catalog->expired_count++];
		memset(record, 0, sizeof(*record));
		record->timeline = timeline;
	}
	/* One timeline, fixed-width upper-case hex: names sort as segments. */
	if (strcmp(entry->name, record->through) > 0)
		bk_strlcpy(record->through, entry->name, sizeof(record->through));
	return true;
}

/* Newer segments tried for the catalog's metadata when the newest fails. */
#define NEWEST_SEGMENT_TRIES 4

/* first_frame_key's visitor: the key id of the first frame, then stop. */
typedef struct FirstKey
{
	bool found;
	uint8_t id[BK_KEY_ID_LEN];
} FirstKey;

static bool
first_key_frame(void *arg, const uint8_t *frame, size_t len, BkError *err)
{
	FirstKey *first = arg;

	if (len < BK_OFF_KEY_ID + BK_KEY_ID_LEN)
		return bk_error_set(err, BK_ERR_FORMAT, "a frame too short");
	memcpy(first->id, frame + BK_OFF_KEY_ID, BK_KEY_ID_LEN);
	first->found = true;
	return false; /* enough */
}

bool
bk_wal_sealed_to_keyring(const BkRepo *repo, const char *source,
						 const char *name, BkDecoder *decoder, bool *in_ring,
						 uint8_t key_id[BK_KEY_ID_LEN], BkError *err)
{
	FirstKey first = {0};

	if (!bk_repo_read_frames(repo, BK_REPO_ARCHIVE, source, BK_KIND_WAL, name,
							 true, first_key_frame, &first, err) &&
		!first.found)
		return false;
	*in_ring = bk_decoder_has_key(decoder, first.id);
	if (key_id != NULL)
		memcpy(key_id, first.id, BK_KEY_ID_LEN);
	return true;
}

/*
 * After a key rotation whose new key the keyring lacks, the newest
 * segments are all sealed to it, possibly weeks of them: more than
 * NEWEST_SEGMENT_TRIES.  The newest whole segment before entries[before]
 * sealed to a key the keyring holds, found by bisection on the key ids of
 * the segments' first frames (read without the key: a rotation seals
 * everything after it to the new key), so that a catalog, and so a
 * restore to before the rotation, needs only the keys of what it reads.
 * -1 if there is none.
 */
static int
newest_in_keyring(const BkRepo *repo, const char *source, BkDecoder *decoder,
				  const SegmentEntry *entries, size_t before, bool *failed,
				  BkError *err)
{
	size_t *whole = malloc((before + 1) * sizeof(*whole));
	size_t count = 0;
	size_t lo = 0;
	size_t hi;
	int found = -1;

	*failed = false;
	if (whole == NULL)
	{
		*failed = true;
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return -1;
	}
	for (size_t idx = 0; idx < before; idx++)
		if (!entries[idx].partial)
			whole[count++] = idx;
	/* Find the last of those in the keyring: [lo, hi) is still open. */
	hi = count;
	while (lo < hi)
	{
		size_t mid = lo + (hi - lo) / 2;
		const SegmentEntry *e = &entries[whole[mid]];
		char name[32];
		bool in_ring;

		snprintf(name, sizeof(name), "%08X%08X%08X", e->timeline, e->log,
				 e->seg);
		if (!bk_wal_sealed_to_keyring(repo, source, name, decoder, &in_ring,
									  NULL, err))
		{
			*failed = true;
			break;
		}
		if (in_ring)
		{
			found = (int) whole[mid];
			lo = mid + 1;
		}
		else
			hi = mid;
	}
	free(whole);
	return *failed ? -1 : found;
}

/*
 * newest_segment_meta
 *		The metadata of the newest segment that gives it (whole segments
 *		first, then a .partial), its entry and name: with decoder,
 *		authenticated.  A segment that is damaged or sealed to a key not in
 *		the keyring is passed over for the one before it, NEWEST_SEGMENT_TRIES
 *		at most; any other failure (the store did not answer) is returned,
 *		and so is the newest's failure when none passes.
 */
static bool
newest_segment_meta(const BkRepo *repo, const char *source, BkDecoder *decoder,
					const SegmentEntry *entries, size_t entry_count,
					const SegmentEntry **newest, char *name, size_t name_len,
					BkObjectTracker *object, BkError *err)
{
	BkError first;
	int tries = 0;
	bool searched = false;

	bk_error_clear(&first);
	for (int pass = 0; pass < 2; pass++)
		for (size_t entryIdx = entry_count; entryIdx > 0; entryIdx--)
		{
			const SegmentEntry *e = &entries[entryIdx - 1];

			/* Whole segments first; a .partial only when there are none. */
			if (e->partial != (pass == 1))
				continue;
			snprintf(name, name_len, "%08X%08X%08X%s", e->timeline, e->log,
					 e->seg, e->partial ? ".partial" : "");
			if (object_meta(repo, source, name, decoder, false, object, err))
			{
				*newest = e;
				return true;
			}
			if (!bk_error_is_damage(err))
				return false;
			if (tries == 0)
				first = *err;
			/* Sealed to a key the keyring lacks: go to one it holds. */
			if (err->code == BK_ERR_KEY && !searched && pass == 0)
			{
				bool failed;
				int found;

				searched = true;
				found = newest_in_keyring(repo, source, decoder, entries,
										  entryIdx - 1, &failed, err);
				if (failed)
					return false;
				if (found >= 0)
				{
					entryIdx = (size_t) found + 2; /* next: entries[found] */
					continue;
				}
			}
			if (++tries == NEWEST_SEGMENT_TRIES)
			{
				*err = first;
				return false;
			}
		}
	*err = first;
	return false;
}

bool
bk_wal_catalog_load(const BkRepo *repo, const char *source, BkDecoder *decoder,
					BkWalCatalog *catalog, BkError *err)
{
	WalListing listing = {.catalog = catalog};
	SegmentEntry *entries;
	size_t entry_count;

	memset(catalog, 0, sizeof(*catalog));
	bk_strlcpy(catalog->source, source, sizeof(catalog->source));
	if (!bk_repo_source_exists(repo, source, &catalog->source_exists, err) ||
		!bk_repo_list(repo, BK_REPO_CONFLICTS, source, BK_KIND_WAL, "", false,
					  count_entry, &catalog->conflicts, err) ||
		!bk_repo_list(repo, BK_REPO_ARCHIVE, source, BK_KIND_WAL, "", false,
					  list_wal_object, &listing, err) ||
		!bk_repo_list(repo, BK_REPO_EXPIRED, source, BK_KIND_WAL, "", false,
					  list_expired_record, catalog, err))
	{
		free(listing.entries);
		bk_wal_catalog_free(catalog);
		return false;
	}
	entries = listing.entries;
	entry_count = listing.count;

	if (entry_count > 0)
	{
		const SegmentEntry *newest;
		char name[32];
		char value[32];
		BkObjectTracker object;

		qsort(entries, entry_count, sizeof(*entries), segment_entry_cmp);

		/*
		 * The segment size (needed to number segments), the identity and
		 * the age: from the newest segment's metadata, authenticated with
		 * the key: the segment size numbers every segment, and so places
		 * every gap and branch point.  A newest segment that is damaged, or
		 * sealed to a key not in the keyring (a rotation under way), must
		 * not stop every restore, most of which never read it: the next
		 * older ones may give it, the cluster's segment size being one.
		 * Reading the damaged one still fails.
		 */
		if (!newest_segment_meta(repo, source, decoder, entries, entry_count,
								 &newest, name, sizeof(name), &object, err))
			goto fail;
		if (!bk_meta_get(object.meta, object.meta_len, "segment-size", value,
						 sizeof(value)))
		{
			bk_error_set(err, BK_ERR_FORMAT,
						 "WAL object \"%s\" of source \"%s\" has no "
						 "segment-size metadata",
						 name, source);
			goto fail;
		}
		catalog->segment_size = (uint32_t) strtoul(value, NULL, 10);
		if (catalog->segment_size == 0 ||
			(catalog->segment_size & (catalog->segment_size - 1)) != 0)
		{
			bk_error_set(err, BK_ERR_FORMAT,
						 "WAL object \"%s\" of source \"%s\" claims an "
						 "impossible segment size %s",
						 name, source, value);
			goto fail;
		}
		bk_strlcpy(catalog->newest_name, name, sizeof(catalog->newest_name));
		catalog->newest_archived_ms = newest->stored_ms;
		if (!bk_meta_get(object.meta, object.meta_len, "created",
						 catalog->newest_created,
						 sizeof(catalog->newest_created)))
			catalog->newest_created[0] = '\0';
		if (!bk_meta_get(object.meta, object.meta_len, "system-identifier",
						 catalog->system_identifier,
						 sizeof(catalog->system_identifier)))
			catalog->system_identifier[0] = '\0';
	}

	for (size_t entryIdx = 0; entryIdx < entry_count; entryIdx++)
	{
		const SegmentEntry *e = &entries[entryIdx];
		BkWalTimeline *tl = timeline_entry(catalog, e->timeline);
		uint64_t segno = bk_wal_segno(e->log, e->seg, catalog->segment_size);

		if (tl == NULL)
			goto oom;
		if (e->partial)
		{
			tl->partials++;
			continue;
		}
		if (tl->segments == 0)
		{
			/* Room for every segment of this timeline in the list. */
			size_t run = 0;
			uint64_t *segnos;

			while (entryIdx + run < entry_count &&
				   entries[entryIdx + run].timeline == e->timeline)
				run++;
			segnos = malloc(run * sizeof(*segnos));
			if (segnos == NULL)
				goto oom;
			tl->segnos = segnos;
			tl->first_segno = segno;
		}
		tl->segnos[tl->segments++] = segno;
		tl->last_segno = segno;
	}
	free(entries);
	entries = NULL;

	for (int tlIdx = 0; tlIdx < catalog->timeline_count; tlIdx++)
		if (catalog->timelines[tlIdx].has_history)
		{
			if (!load_history(repo, source, decoder, &catalog->timelines[tlIdx],
							  err))
				goto fail;
			if (!catalog->timelines[tlIdx].history_known)
				catalog->unknown_histories++;
		}
	if (!link_histories(catalog, err))
		goto fail;
	for (int tlIdx = 0; tlIdx < catalog->timeline_count; tlIdx++)
	{
		BkWalTimeline *tl = &catalog->timelines[tlIdx];

		if (history_missing(catalog, tl))
			snprintf(tl->history_problem, sizeof(tl->history_problem),
					 "its WAL is archived, but neither %08" PRIX32
					 ".history nor a later timeline's history that lists "
					 "it is",
					 tl->timeline);
	}
	if (catalog->segment_size != 0)
		count_gaps(catalog);
	/* Numbered by the segment size: without one, nothing to compare. */
	for (int recIdx = 0; recIdx < catalog->expired_count; recIdx++)
	{
		BkWalExpired *record = &catalog->expired[recIdx];
		uint32_t timeline;
		uint32_t log;
		uint32_t seg;

		(void) bk_wal_file_type(record->through, &timeline, &log, &seg);
		record->through_segno =
			catalog->segment_size
				? bk_wal_segno(log, seg, catalog->segment_size)
				: 0;
	}
	if (catalog->segment_size == 0)
		catalog->expired_count = 0;
	return true;

oom:
	bk_error_set(err, BK_ERR_NOMEM, "out of memory");
fail:
	free(entries);
	bk_wal_catalog_free(catalog);
	return false;
}

void
bk_wal_catalog_free(BkWalCatalog *catalog)
{
	for (int tlIdx = 0; tlIdx < catalog->timeline_count; tlIdx++)
	{
		free(catalog->timelines[tlIdx].segnos);
		free(catalog->timelines[tlIdx].ancestors);
	}
	free(catalog->timelines);
	catalog->timelines = NULL;
	catalog->timeline_count = 0;
	free(catalog->expired);
	catalog->expired = NULL;
	catalog->expired_count = 0;
}

const BkWalExpired *
bk_wal_expired(const BkWalCatalog *catalog, uint32_t timeline)
{
	return expired_entry(catalog, timeline);
}

/* The records of one timeline bk expire listed. */
typedef struct ExpiredRecords
{
	uint32_t timeline;
	char highest[32];
	char (*names)[32];
	size_t count;
	size_t cap;
} ExpiredRecords;

static bool
collect_expired_record(void *arg, const BkRepoEntry *entry, BkError *err)
{
	ExpiredRecords *records = arg;
	uint32_t timeline;
	uint32_t log;
	uint32_t seg;

	if (entry->is_prefix ||
		bk_wal_file_type(entry->name, &timeline, &log, &seg) !=
			BK_WAL_SEGMENT ||
		timeline != records->timeline)
		return true;
	if (records->count == records->cap)
	{
		size_t cap = records->cap ? records->cap * 2 : 8;
		char(*grown)[32] = realloc(records->names, cap * sizeof(*grown));

		if (grown == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		records->names = grown;
		records->cap = cap;
	}
	bk_strlcpy(records->names[records->count++], entry->name, 32);
	if (strcmp(entry->name, records->highest) > 0)
		bk_strlcpy(records->highest, entry->name, sizeof(records->highest));
	return true;
}

bool
bk_wal_expired_record(BkRepo *repo, const char *source, const char *name,
					  BkError *err)
{
	ExpiredRecords records = {0};
	uint32_t log;
	uint32_t seg;
	char text[160];
	bool ok;

	if (bk_wal_file_type(name, &records.timeline, &log, &seg) != BK_WAL_SEGMENT)
		return bk_error_set(err, BK_ERR_USAGE,
							"\"%s\" is not a WAL segment's name", name);
	snprintf(text, sizeof(text),
			 "bk expire removed the WAL segments of timeline %" PRIu32
			 " up to %s\n",
			 records.timeline, name);
	ok = bk_repo_put_record(repo, BK_REPO_EXPIRED, source, BK_KIND_WAL, name,
							text, strlen(text), err);
	if (!ok)
		bk_error_prefix(err,
						"could not record in repository %s that bk expire "
						"removes source \"%s\"'s WAL up to %s: ",
						bk_repo_location(repo), source, name);

	/*
	 * Only one record per timeline is needed, the highest.  One written
	 * meanwhile by another bk expire is either listed here (then the
	 * higher stays) or was written after the listing (then nothing listed
	 * is above it): the highest record is never removed.
	 */
	ok = ok && bk_repo_list(repo, BK_REPO_EXPIRED, source, BK_KIND_WAL, "",
							false, collect_expired_record, &records, err);
	for (size_t recIdx = 0; ok && recIdx < records.count; recIdx++)
		if (strcmp(records.names[recIdx], records.highest) < 0)
			ok = bk_repo_delete(repo, BK_REPO_EXPIRED, source, BK_KIND_WAL,
								records.names[recIdx], err);
	free(records.names);
	return ok;
}

/* ------------------------------------------------------------ questions */

const BkWalTimeline *
bk_wal_timeline(const BkWalCatalog *catalog, uint32_t timeline)
{
	for (int tlIdx = 0; tlIdx < catalog->timeline_count; tlIdx++)
		if (catalog->timelines[tlIdx].timeline == timeline)
			return &catalog->timelines[tlIdx];
	return NULL;
}

bool
bk_wal_has_segment(const BkWalCatalog *catalog, uint32_t timeline,
				   uint64_t segno)
{
	const BkWalTimeline *tl = bk_wal_timeline(catalog, timeline);
	uint64_t idx;

	if (tl == NULL || tl->segments == 0)
		return false;
	idx = lower_bound(tl, segno);
	return idx < tl->segments && tl->segnos[idx] == segno;
}

uint32_t
bk_wal_latest_timeline(const BkWalCatalog *catalog)
{
	for (int tlIdx = catalog->timeline_count - 1; tlIdx >= 0; tlIdx--)
	{
		const BkWalTimeline *tl = &catalog->timelines[tlIdx];

		if (tl->segments > 0 || tl->has_history)
			return tl->timeline;
	}
	return 0;
}

uint32_t
bk_wal_history_descendant(const BkWalCatalog *catalog, uint32_t timeline)
{
	/* Sorted by timeline: the first found is the nearest. */
	for (int tlIdx = 0; tlIdx < catalog->timeline_count; tlIdx++)
	{
		const BkWalTimeline *tl = &catalog->timelines[tlIdx];

		if (tl->timeline <= timeline || !tl->history_known)
			continue;
		for (int ancIdx = 0; ancIdx < tl->ancestor_count; ancIdx++)
			if (tl->ancestors[ancIdx].timeline == timeline)
				return tl->timeline;
	}
	return 0;
}

/* The last segment of an ancestor a recovery reads: before the branch. */
static uint64_t
last_before_branch(uint64_t end_lsn, uint32_t segment_size, bool *none)
{
	*none = end_lsn < segment_size;
	return *none ? 0 : end_lsn / segment_size - 1;
}

void
bk_wal_path(const BkWalCatalog *catalog, uint32_t from_timeline,
			uint64_t from_segno, uint32_t to_timeline, uint64_t to_segno,
			BkWalPath *path)
{
	const BkWalTimeline *to = bk_wal_timeline(catalog, to_timeline);
	uint32_t segment_size = catalog->segment_size;
	int start = -1;
	int steps;
	uint64_t segno = from_segno;

	memset(path, 0, sizeof(*path));
	path->end_timeline = from_timeline;
	path->end_segno = BK_WAL_END;
	if (segment_size == 0 || to == NULL)
	{
		snprintf(path->problem, sizeof(path->problem),
				 "timeline %" PRIu32 " has no WAL in the archive of source "
				 "\"%s\"",
				 to_timeline, catalog->source);
		return;
	}
	if (!to->has_history && from_timeline != to_timeline)
	{
		snprintf(path->problem, sizeof(path->problem),
				 "the history file of timeline %" PRIu32
				 " is not in the archive, so bk cannot tell where it "
				 "branched off timeline %" PRIu32,
				 to_timeline, from_timeline);
		return;
	}
	if (to->has_history && !to->history_known)
	{
		snprintf(path->problem, sizeof(path->problem),
				 "the branch points of timeline %" PRIu32 " are unknown (%s)",
				 to_timeline, to->history_problem);
		return;
	}
	/* The walk: to's ancestors, then to itself. */
	steps = to->ancestor_count + 1;
	for (int stepIdx = 0; stepIdx < steps; stepIdx++)
	{
		uint32_t timeline = stepIdx < to->ancestor_count
								? to->ancestors[stepIdx].timeline
								: to_timeline;

		if (timeline == from_timeline)
		{
			start = stepIdx;
			break;
		}
	}
	if (start < 0)
	{
		snprintf(path->problem, sizeof(path->problem),
				 "timeline %" PRIu32 " is not in the history of timeline "
				 "%" PRIu32,
				 from_timeline, to_timeline);
		return;
	}
	if (start < to->ancestor_count &&
		from_segno > to->ancestors[start].end_lsn / segment_size)
	{
		char lsn[BK_LSN_TEXT_SIZE];

		bk_format_lsn(to->ancestors[start].end_lsn, lsn, sizeof(lsn));
		snprintf(path->problem, sizeof(path->problem),
				 "timeline %" PRIu32 " left timeline %" PRIu32
				 " at %s, before the point recovery starts from: that part "
				 "of timeline %" PRIu32 " is not in its history",
				 start + 1 < to->ancestor_count
					 ? to->ancestors[start + 1].timeline
					 : to_timeline,
				 from_timeline, lsn, from_timeline);
		return;
	}
	path->reachable = true;
	for (int stepIdx = start; stepIdx < steps; stepIdx++)
	{
		bool last_step = stepIdx == steps - 1;
		uint32_t timeline =
			last_step ? to_timeline : to->ancestors[stepIdx].timeline;
		const BkWalTimeline *tl = bk_wal_timeline(catalog, timeline);
		uint64_t last = 0;
		uint64_t first_missing = 0;
		uint64_t missing;
		bool none = false;

		if (!last_step)
			last = last_before_branch(to->ancestors[stepIdx].end_lsn,
									  segment_size, &none);
		else if (tl == NULL || tl->segments == 0 || tl->last_segno < segno)
		{
			/* Nothing archived from here on: the end of the archive. */
			none = true;
			if (to_segno != BK_WAL_END)
			{
				path->beyond_end = true;
				path->first_beyond_segno = segno;
			}
		}
		else if (to_segno != BK_WAL_END && to_segno > tl->last_segno)
		{
			last = tl->last_segno;
			path->beyond_end = true;
			path->first_beyond_segno = tl->last_segno + 1;
		}
		else
			last = to_segno != BK_WAL_END ? to_segno : tl->last_segno;
		if (to_segno != BK_WAL_END && !none && last > to_segno)
			last = to_segno;
		if (!none && segno <= last)
		{
			missing = missing_in_range(tl, segno, last, &first_missing);
			if (missing > 0 && path->missing == 0)
			{
				path->first_missing_timeline = timeline;
				path->first_missing_segno = first_missing;
				bk_wal_segment_name(timeline, first_missing, segment_size,
									path->first_missing);
			}
			path->missing += missing;
			path->end_timeline = timeline;
			path->end_segno = last;
		}
		if (to_segno != BK_WAL_END && segno > to_segno)
			break;
		if (!last_step)
		{
			uint64_t next = to->ancestors[stepIdx].end_lsn / segment_size;

			if (to_segno != BK_WAL_END && !none && last >= to_segno)
				break; /* the target comes before this branch point */
			if (next > segno)
				segno = next;
		}
	}
}

bool
bk_wal_history_holds(const BkWalCatalog *catalog, uint32_t timeline,
					 uint64_t lsn, uint32_t to_timeline, char *why,
					 size_t why_len)
{
	const BkWalTimeline *to = bk_wal_timeline(catalog, to_timeline);
	char text[256];
	char at[BK_LSN_TEXT_SIZE];
	char end[BK_LSN_TEXT_SIZE];

	if (timeline == to_timeline)
		return true;
	if (to == NULL || !to->history_known)
		snprintf(text, sizeof(text),
				 "the branch points of timeline %" PRIu32 " are not known",
				 to_timeline);
	else
	{
		snprintf(text, sizeof(text),
				 "timeline %" PRIu32 " is not in the history of timeline "
				 "%" PRIu32,
				 timeline, to_timeline);
		for (int ancIdx = 0; ancIdx < to->ancestor_count; ancIdx++)
		{
			if (to->ancestors[ancIdx].timeline != timeline)
				continue;
			if (lsn <= to->ancestors[ancIdx].end_lsn)
				return true;
			bk_format_lsn(lsn, at, sizeof(at));
			bk_format_lsn(to->ancestors[ancIdx].end_lsn, end, sizeof(end));
			snprintf(text, sizeof(text),
					 "timeline %" PRIu32 " left timeline %" PRIu32
					 " at %s, before %s",
					 ancIdx + 1 < to->ancestor_count
						 ? to->ancestors[ancIdx + 1].timeline
						 : to_timeline,
					 timeline, end, at);
			break;
		}
	}
	if (why != NULL)
		bk_strlcpy(why, text, why_len);
	return false;
}

uint32_t
bk_wal_segment_timeline(const BkWalCatalog *catalog, uint32_t to_timeline,
						uint64_t segno)
{
	const BkWalTimeline *to = bk_wal_timeline(catalog, to_timeline);

	if (to == NULL || !to->history_known || catalog->segment_size == 0)
		return to_timeline;
	for (int ancIdx = 0; ancIdx < to->ancestor_count; ancIdx++)
		if (segno < to->ancestors[ancIdx].end_lsn / catalog->segment_size)
			return to->ancestors[ancIdx].timeline;
	return to_timeline;
}

uint32_t
bk_wal_lsn_timeline(const BkWalCatalog *catalog, uint32_t to_timeline,
					uint64_t lsn)
{
	const BkWalTimeline *to = bk_wal_timeline(catalog, to_timeline);

	if (to == NULL || !to->history_known)
		return to_timeline;
	for (int ancIdx = 0; ancIdx < to->ancestor_count; ancIdx++)
		if (lsn < to->ancestors[ancIdx].end_lsn)
			return to->ancestors[ancIdx].timeline;
	return to_timeline;
}

uint32_t
bk_wal_old_copy(const BkWalCatalog *catalog, uint32_t to_timeline,
				uint64_t segno, uint64_t *valid_until)
{
	const BkWalTimeline *to = bk_wal_timeline(catalog, to_timeline);
	uint32_t wanted;
	uint32_t before;
	char why[256];

	*valid_until = 0;
	if (to == NULL || !to->history_known || catalog->segment_size == 0 ||
		segno == 0)
		return 0;
	wanted = bk_wal_segment_timeline(catalog, to_timeline, segno);
	if (bk_wal_has_segment(catalog, wanted, segno) ||
		bk_wal_segment_is_hole(catalog, wanted, segno, why, sizeof(why)))
		return 0;
	/* The timeline of the file of the segment before: curFileTLI. */
	before = bk_wal_segment_timeline(catalog, to_timeline, segno - 1);
	for (int ancIdx = to->ancestor_count - 1; ancIdx >= 0; ancIdx--)
	{
		uint32_t timeline = to->ancestors[ancIdx].timeline;

		if (timeline >= wanted)
			continue; /* began after the segment, or wanted itself */
		if (timeline < before)
			break;
		if (bk_wal_has_segment(catalog, timeline, segno))
		{
			*valid_until = to->ancestors[ancIdx].end_lsn;
			return timeline;
		}
	}
	return 0;
}

/* Step step of recovery along timeline: the step's timeline and its end. */
static BkTimelineBranch
history_step(const BkWalCatalog *catalog, uint32_t timeline, int step)
{
	const BkWalTimeline *tl = bk_wal_timeline(catalog, timeline);
	int ancestors = tl != NULL && tl->history_known ? tl->ancestor_count : 0;

	if (step < ancestors)
		return tl->ancestors[step];
	return (BkTimelineBranch){step == ancestors ? timeline : 0, UINT64_MAX};
}

uint64_t
bk_wal_shared_until(const BkWalCatalog *catalog, uint32_t a, uint32_t b)
{
	uint64_t shared = 0;

	if (a == b)
		return UINT64_MAX;
	for (int step = 0;; step++)
	{
		BkTimelineBranch on_a = history_step(catalog, a, step);
		BkTimelineBranch on_b = history_step(catalog, b, step);

		if (on_a.timeline != on_b.timeline || on_a.timeline == 0)
			return shared;
		if (on_a.end_lsn != on_b.end_lsn)
			return on_a.end_lsn < on_b.end_lsn ? on_a.end_lsn : on_b.end_lsn;
		shared = on_a.end_lsn;
	}
}

bool
bk_wal_backup_readable(const BkWalCatalog *catalog, uint32_t timeline,
					   uint64_t first_segno, uint64_t last_segno,
					   uint32_t to_timeline, BkWalPath *path)
{
	BkWalPath own;

	bk_wal_path(catalog, timeline, first_segno, to_timeline, last_segno, path);
	if (!path->reachable || path->missing > 0)
		return false;
	if (!path->beyond_end)
		return true;
	if (timeline == to_timeline)
		return false;
	/* XLogFileReadAnyTLI: to_timeline's file not found, the older ones. */
	bk_wal_path(catalog, timeline, first_segno, timeline, last_segno, &own);
	return own.reachable && own.missing == 0 && !own.beyond_end;
}

/*
 * A timeline after the first with WAL archived (segments, or a .partial)
 * but neither its history file nor a descendant's that lists it: where it
 * branched off is unknown.  Its history is still on its way (the shipper
 * has not stored it yet) or was lost.
 */
static bool
history_missing(const BkWalCatalog *catalog, const BkWalTimeline *tl)
{
	return tl->timeline > 1 && !tl->has_history &&
		   (tl->segments > 0 || tl->partials > 0) &&
		   bk_wal_history_descendant(catalog, tl->timeline) == 0;
}

const BkWalTimeline *
bk_wal_later_unknown_history(const BkWalCatalog *catalog, uint32_t timeline)
{
	for (int tlIdx = 0; tlIdx < catalog->timeline_count; tlIdx++)
	{
		const BkWalTimeline *tl = &catalog->timelines[tlIdx];

		if (tl->timeline > timeline &&
			((tl->has_history && !tl->history_known) ||
			 history_missing(catalog, tl)))
			return tl;
	}
	return NULL;
}

bool
bk_wal_segment_is_hole(const BkWalCatalog *catalog, uint32_t timeline,
					   uint64_t segno, char *why, size_t why_len)
{
	const BkWalTimeline *tl = bk_wal_timeline(catalog, timeline);
	const BkWalTimeline *unknown;
	const BkWalExpired *expired = bk_wal_expired(catalog, timeline);
	uint32_t segment_size = catalog->segment_size;
	char first[32];
	char lsn[BK_LSN_TEXT_SIZE];

	/*
	 * Archived once and removed: whatever is left of the timeline (maybe
	 * nothing, maybe no later timeline needs it), not the end.
	 */
	if (expired != NULL && segno <= expired->through_segno)
	{
		snprintf(why, why_len,
				 "bk expire removed it (it removed timeline %" PRIu32
				 "'s WAL up to %s)",
				 timeline, expired->through);
		return true;
	}
	if (tl == NULL)
	{
		snprintf(why, why_len,
				 "timeline %" PRIu32 " is not in the archive of source "
				 "\"%s\" at all",
				 timeline, catalog->source);
		return true;
	}
	/* A timeline whose branch points are unknown could branch anywhere. */
	unknown = bk_wal_later_unknown_history(catalog, timeline);
	if (unknown != NULL)
	{
		snprintf(why, why_len,
				 "bk cannot tell whether timeline %" PRIu32 " needs it: %s",
				 unknown->timeline, unknown->history_problem);
		return true;
	}
	if (tl->segments > 0 && segno < tl->first_segno)
	{
		bk_wal_segment_name(timeline, tl->first_segno, segment_size, first);
		snprintf(why, why_len,
				 "it comes before the first archived segment of timeline "
				 "%" PRIu32 " (%s): the archive does not reach back that far",
				 timeline, first);
		return true;
	}
	if (tl->segments > 0 && segno < tl->last_segno)
	{
		snprintf(why, why_len,
				 "the archive holds timeline %" PRIu32
				 " segments on both sides of it (a gap)",
				 timeline);
		return true;
	}
	if (tl->needed_until >= segment_size &&
		segno <= tl->needed_until / segment_size - 1)
	{
		bk_format_lsn(tl->needed_until, lsn, sizeof(lsn));
		snprintf(why, why_len,
				 "timeline %" PRIu32 " branched off timeline %" PRIu32
				 " at %s, so timeline %" PRIu32
				 "'s WAL up to there must be in the archive (a gap)",
				 tl->needed_by, timeline, lsn, timeline);
		return true;
	}
	/*
	 * The segment that holds the branch point holds this timeline's WAL up
	 * to there.  Recovery along the later timeline reads that timeline's
	 * copy and asks for this one only while that copy is not archived;
	 * recovery along this timeline needs this one (a standby promoted
	 * after its primary crashed archives it only as .partial): "beyond the
	 * end" would end recovery at the segment's start and silently drop the
	 * WAL between it and the branch point, which the archive holds.
	 */
	if (tl->needed_until % segment_size != 0 &&
		segno == tl->needed_until / segment_size)
	{
		bk_format_lsn(tl->needed_until, lsn, sizeof(lsn));
		snprintf(
			why, why_len,
			"timeline %" PRIu32 " branched off timeline %" PRIu32
			" at %s, inside it, so timeline %" PRIu32
			"'s WAL runs into it up to there; the archive holds that "
			"WAL only in timeline %" PRIu32 "'s copy of the segment "
			"(and in a .partial file, if the promoted server archived "
			"one), which recovery along timeline %" PRIu32 " does not read",
			tl->needed_by, timeline, lsn, timeline, tl->needed_by, timeline);
		return true;
	}
	/*
	 * A later timeline branched off this one, so it had WAL archived up to
	 * there; with none left, it was removed (bk expire, once no kept
	 * snapshot needed it, perhaps under a running restore) or lost.  A
	 * restore along it can only have started from its own snapshot, whose
	 * WAL is gone: never the end of the archive.
	 */
	if (tl->segments == 0 && tl->needed_by != 0)
	{
		snprintf(why, why_len,
				 "timeline %" PRIu32 " has no segment left in the archive, "
				 "although timeline %" PRIu32 " branched off it: its WAL "
				 "was removed (by bk expire, once no kept snapshot needed "
				 "it) or lost",
				 timeline, tl->needed_by);
		return true;
	}
	if (tl->segments == 0 && tl->has_history && tl->history_known &&
		segno < tl->begin_lsn / segment_size)
	{
		bk_format_lsn(tl->begin_lsn, lsn, sizeof(lsn));
		snprintf(why, why_len, "timeline %" PRIu32 " began only at %s",
				 timeline, lsn);
		return true;
	}
	return false;
}

void
bk_wal_segment_system_id(const BkRepo *repo, const char *source,
						 uint32_t timeline, uint64_t segno,
						 uint32_t segment_size, char *out, size_t out_len)
{
	char name[32];
	BkObjectTracker object;
	BkError err;

	out[0] = '\0';
	bk_wal_segment_name(timeline, segno, segment_size, name);
	if (!object_meta(repo, source, name, NULL, false, &object, &err) ||
		!bk_meta_get(object.meta, object.meta_len, "system-identifier", out,
					 out_len))
		out[0] = '\0';
}
