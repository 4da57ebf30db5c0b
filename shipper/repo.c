/*
 * repo.c
 *		The local-directory repository.  See repo.h for the layout and the
 *		commit protocol.
 */
#include "repo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk_util.h"

#define SPOOL_DIR     ".spool"
#define REJECTED_DIR  "rejected"
#define CONFLICTS_DIR "conflicts"

static void
dir_of(const char *path, char *out, size_t out_len)
{
	char *slash;

	bk_strlcpy(out, path, out_len);
	slash = strrchr(out, '/');
	if (slash == NULL)
		bk_strlcpy(out, ".", out_len);
	else if (slash == out)
		out[1] = '\0';
	else
		*slash = '\0';
}

/* The umask must not make the repository unreadable for restores. */
bool
bk_repo_mkdirs(const char *path, BkError *err)
{
	return bk_mkdirs(path, 0755, true, err);
}

static bool repo_path(const BkRepo *repo, char *out, size_t out_len,
					  BkError *err, const char *fmt, ...) BK_PRINTF(5, 6);

static bool
repo_path(const BkRepo *repo, char *out, size_t out_len, BkError *err,
		  const char *fmt, ...)
{
	char rel[BK_REPO_PATH_MAX];
	va_list args;

	va_start(args, fmt);
	vsnprintf(rel, sizeof(rel), fmt, args);
	va_end(args);
	if ((size_t) snprintf(out, out_len, "%s/%s", repo->root, rel) >= out_len)
		return bk_error_set(err, BK_ERR_USAGE,
							"repository path too long: \"%s/%s\"", repo->root,
							rel);
	return true;
}

bool
bk_repo_open(BkRepo *repo, const char *path, bool create, BkError *err)
{
	char marker[BK_REPO_PATH_MAX];
	char sub[BK_REPO_PATH_MAX];
	char *text = NULL;
	size_t len;
	size_t root_len;

	if (path == NULL || path[0] == '\0')
	{
		bk_error_set(err, BK_ERR_CONFIG, "no repository configured");
		return bk_error_hint(err, "Set repository in the configuration file or "
								  "pass --repo DIR.");
	}
	root_len = strlen(path);
	while (root_len > 1 && path[root_len - 1] == '/')
		root_len--;
	if (root_len >= sizeof(repo->root))
		return bk_error_set(err, BK_ERR_CONFIG, "repository path too long");
	memcpy(repo->root, path, root_len);
	repo->root[root_len] = '\0';
	if (!repo_path(repo, marker, sizeof(marker), err, "%s", BK_REPO_MARKER))
		return false;

	if (create)
	{
		if (!bk_repo_mkdirs(repo->root, err))
			return false;
		if (access(marker, F_OK) != 0 &&
			!bk_write_file_durable(marker, BK_REPO_MARKER_TEXT,
								   strlen(BK_REPO_MARKER_TEXT), 0644, err))
			return false;
		if (!repo_path(repo, sub, sizeof(sub), err, "%s", SPOOL_DIR) ||
			!bk_repo_mkdirs(sub, err) ||
			!repo_path(repo, sub, sizeof(sub), err, "%s", REJECTED_DIR) ||
			!bk_repo_mkdirs(sub, err))
			return false;
	}
	if (!bk_read_file(marker, 1024, &text, &len, err))
	{
		bk_error_set(err, BK_ERR_IO,
					 "\"%s\" is not a bk repository, or is not reachable: "
					 "cannot read %s",
					 repo->root, marker);
		return bk_error_hint(err, "Check the repository setting (--repo); "
								  "bk-shipper creates the repository when it "
								  "first starts.");
	}
	if (strcmp(text, BK_REPO_MARKER_TEXT) != 0)
	{
		free(text);
		return bk_error_set(err, BK_ERR_FORMAT,
							"\"%s\" has an unknown repository format (marker "
							"file %s does not say \"bk repository 1\")",
							repo->root, marker);
	}
	free(text);
	return true;
}

bool
bk_repo_object_path(const BkRepo *repo, const char *source, int kind,
					const char *name, char *out, size_t out_len, BkError *err)
{
	if (!bk_source_id_valid(source, strlen(source)))
		return bk_error_set(err, BK_ERR_USAGE, "invalid source id \"%s\"",
							source);
	if (!bk_object_name_valid(name, strlen(name)))
		return bk_error_set(err, BK_ERR_USAGE, "invalid object name \"%s\"",
							name);
	if (bk_kind_name(kind) == NULL)
		return bk_error_set(err, BK_ERR_USAGE, "unknown object kind %d", kind);
	return repo_path(repo, out, out_len, err, "%s/%s/%s", source,
					 bk_kind_name(kind), name);
}

bool
bk_repo_source_path(const BkRepo *repo, const char *source, const char *sub,
					char *out, size_t out_len, BkError *err)
{
	if (!bk_source_id_valid(source, strlen(source)))
		return bk_error_set(err, BK_ERR_USAGE, "invalid source id \"%s\"",
							source);
	return repo_path(repo, out, out_len, err, "%s/%s", source, sub);
}

bool
bk_repo_clear_spool(const BkRepo *repo, BkError *err)
{
	char spool[BK_REPO_PATH_MAX];
	DIR *dir;
	struct dirent *entry;

	if (!repo_path(repo, spool, sizeof(spool), err, "%s", SPOOL_DIR))
		return false;
	dir = opendir(spool);
	if (dir == NULL)
		return bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s", spool,
							strerror(errno));
	while ((entry = readdir(dir)) != NULL)
	{
		char path[BK_REPO_PATH_MAX + 256];

		if (entry->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", spool, entry->d_name);
		if (unlink(path) != 0 && errno != ENOENT)
		{
			closedir(dir);
			return bk_error_set(err, BK_ERR_IO, "could not remove \"%s\": %s",
								path, strerror(errno));
		}
	}
	closedir(dir);
	return true;
}

void
bk_repo_spool_path(const BkRepo *repo, const char *tag, char *out,
				   size_t out_len)
{
	snprintf(out, out_len, "%s/%s/%s", repo->root, SPOOL_DIR, tag);
}

/* ----------------------------------------------------------- reading */

bool
bk_repo_read_frames(const char *path, bool headers_only, BkFrameVisitor fn,
					void *arg, BkError *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t *buf = NULL;
	size_t cap = 0;
	off_t pos = 0;
	struct stat st;
	bool ok = false;

	if (fd < 0)
		return bk_error_set(err, errno == ENOENT ? BK_ERR_NOT_FOUND : BK_ERR_IO,
							"could not open \"%s\": %s", path, strerror(errno));
	if (fstat(fd, &st) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not stat \"%s\": %s", path,
					 strerror(errno));
		goto done;
	}
	if (st.st_size == 0)
	{
		bk_error_set(err, BK_ERR_FORMAT, "object file \"%s\" is empty", path);
		goto done;
	}
	while (pos < st.st_size)
	{
		uint8_t fixed[BK_FRAME_FIXED_LEN];
		uint32_t header_len;
		uint32_t payload_len;
		size_t frame_len;
		size_t want;
		ssize_t got;

		got = pread(fd, fixed, sizeof(fixed), pos);
		if (got != (ssize_t) sizeof(fixed))
		{
			bk_error_set(err, got < 0 ? BK_ERR_IO : BK_ERR_FORMAT,
						 "object file \"%s\" is truncated at byte %lld "
						 "(a frame header is cut short)",
						 path, (long long) pos);
			goto done;
		}
		if (memcmp(fixed, BK_FRAME_MAGIC, 4) != 0)
		{
			bk_error_set(err, BK_ERR_FORMAT,
						 "object file \"%s\" is corrupt at byte %lld: not a "
						 "frame (bad magic bytes)",
						 path, (long long) pos);
			goto done;
		}
		header_len = bk_get_be32(fixed + BK_OFF_HEADER_LEN);
		payload_len = bk_get_be32(fixed + BK_OFF_PAYLOAD_LEN);
		if (header_len < BK_FRAME_FIXED_LEN ||
			header_len > BK_FRAME_FIXED_LEN + BK_SOURCE_ID_MAX +
							 BK_OBJECT_NAME_MAX + BK_FRAME_META_MAX ||
			payload_len > BK_CHUNK_SIZE_MAX)
		{
			bk_error_set(err, BK_ERR_FORMAT,
						 "object file \"%s\" is corrupt at byte %lld: "
						 "impossible frame lengths",
						 path, (long long) pos);
			goto done;
		}
		frame_len = (size_t) header_len + payload_len + BK_FRAME_TRAILER_LEN;
		if ((off_t) frame_len > st.st_size - pos)
		{
			bk_error_set(err, BK_ERR_FORMAT,
						 "object file \"%s\" is truncated: the frame at byte "
						 "%lld needs %zu bytes, %lld remain",
						 path, (long long) pos, frame_len,
						 (long long) (st.st_size - pos));
			goto done;
		}
		want = headers_only ? header_len : frame_len;
		if (want > cap)
		{
			uint8_t *grown = realloc(buf, want);

			if (grown == NULL)
			{
				bk_error_set(err, BK_ERR_NOMEM, "out of memory reading \"%s\"",
							 path);
				goto done;
			}
			buf = grown;
			cap = want;
		}
		for (size_t done_len = 0; done_len < want;)
		{
			got = pread(fd, buf + done_len, want - done_len,
						pos + (off_t) done_len);
			if (got <= 0)
			{
				bk_error_set(err, BK_ERR_IO, "could not read \"%s\": %s", path,
							 got < 0 ? strerror(errno)
									 : "unexpected end of file");
				goto done;
			}
			done_len += (size_t) got;
		}
		if (!fn(arg, buf, want, err))
			goto done;
		pos += (off_t) frame_len;
	}
	ok = true;
done:
	free(buf);
	close(fd);
	return ok;
}

typedef struct TrackVisit
{
	BkObjectTracker *tracker;
	bool headers_only;
	const char *path;
} TrackVisit;

static bool
track_frame(void *arg, const uint8_t *frame, size_t len, BkError *err)
{
	TrackVisit *visit = arg;
	BkFrame parsed;
	bool ok;

	ok = visit->headers_only ? bk_frame_parse_header(frame, len, &parsed, err)
							 : bk_frame_parse(frame, len, &parsed, err);
	if (!ok || !bk_tracker_accept(visit->tracker, &parsed, err))
		return bk_error_prefix(err, "\"%s\": ", visit->path);
	return true;
}

bool
bk_repo_object_identity(const char *path, BkObjectIdentity *identity,
						BkObjectTracker *object, BkError *err)
{
	BkObjectTracker local;
	BkObjectTracker *tracker = object ? object : &local;
	TrackVisit visit = {.tracker = tracker, .headers_only = true, .path = path};

	bk_tracker_reset(tracker);
	if (!bk_repo_read_frames(path, true, track_frame, &visit, err))
		return false;
	if (!bk_tracker_check_complete(tracker, err))
		return bk_error_prefix(err, "\"%s\": ", path);
	memcpy(identity->key_id, tracker->key_id, BK_KEY_ID_LEN);
	memcpy(identity->fingerprint, tracker->fingerprint, BK_FINGERPRINT_LEN);
	memcpy(identity->attempt_id, tracker->attempt_id, BK_ATTEMPT_ID_LEN);
	return true;
}

bool
bk_repo_check_object(const char *path, const char *source, int kind,
					 const char *name, BkObjectTracker *object, BkError *err)
{
	TrackVisit visit = {.tracker = object, .headers_only = false, .path = path};

	bk_tracker_reset(object);
	if (!bk_repo_read_frames(path, false, track_frame, &visit, err))
		return false;
	if (!bk_tracker_check_complete(object, err))
		return bk_error_prefix(err, "\"%s\": ", path);
	if (strcmp(object->source, source) != 0 || object->kind != kind ||
		strcmp(object->name, name) != 0)
		return bk_error_set(
			err, BK_ERR_FORMAT,
			"\"%s\" holds %s object \"%s\" of source \"%s\", not "
			"the one its path names",
			path, bk_kind_name(object->kind), object->name, object->source);
	return true;
}

/* ----------------------------------------------------------- commit */

bool
bk_repo_commit(const BkRepo *repo, const char *spool_path, const char *source,
			   int kind, const char *name, const BkObjectIdentity *identity,
			   BkCommitResult *result, char *stored_path,
			   size_t stored_path_len, BkError *err)
{
	char final[BK_REPO_PATH_MAX];
	char dir[BK_REPO_PATH_MAX];
	char conflict[BK_REPO_PATH_MAX];
	char attempt_hex[2 * BK_ATTEMPT_ID_LEN + 1];
	BkObjectIdentity existing;
	BkError existing_err;

	if (!bk_repo_object_path(repo, source, kind, name, final, sizeof(final),
							 err))
		return false;
	dir_of(final, dir, sizeof(dir));
	if (!bk_repo_mkdirs(dir, err))
		return false;

	/* link(2) never replaces an existing object: it fails with EEXIST. */
	if (link(spool_path, final) == 0)
	{
		if (!bk_fsync_dir(dir, err))
			return false;
		unlink(spool_path);
		*result = BK_COMMIT_ARCHIVED;
		bk_strlcpy(stored_path, final, stored_path_len);
		return true;
	}
	if (errno != EEXIST)
	{
		bk_error_set(err, BK_ERR_IO, "could not link \"%s\" to \"%s\": %s",
					 spool_path, final, strerror(errno));
		if (errno == EXDEV)
			bk_error_hint(err,
						  "The repository's .spool directory must be on the "
						  "same file system as the objects.");
		return false;
	}

	if (bk_repo_object_identity(final, &existing, NULL, &existing_err) &&
		memcmp(existing.key_id, identity->key_id, BK_KEY_ID_LEN) == 0 &&
		memcmp(existing.fingerprint, identity->fingerprint,
			   BK_FINGERPRINT_LEN) == 0)
	{
		unlink(spool_path);
		*result = BK_COMMIT_DUPLICATE;
		bk_strlcpy(stored_path, final, stored_path_len);
		return true;
	}

	/* Different content (or an unreadable first copy): keep both. */
	bk_hex_encode(identity->attempt_id, BK_ATTEMPT_ID_LEN, attempt_hex);
	if (!repo_path(repo, conflict, sizeof(conflict), err, "%s/%s/%s/%s.%s",
				   source, CONFLICTS_DIR, bk_kind_name(kind), name,
				   attempt_hex))
		return false;
	dir_of(conflict, dir, sizeof(dir));
	if (!bk_repo_mkdirs(dir, err))
		return false;
	if (link(spool_path, conflict) != 0 && errno != EEXIST)
		return bk_error_set(err, BK_ERR_IO,
							"could not link \"%s\" to \"%s\": %s", spool_path,
							conflict, strerror(errno));
	if (!bk_fsync_dir(dir, err))
		return false;
	unlink(spool_path);
	*result = BK_COMMIT_CONFLICT;
	bk_strlcpy(stored_path, conflict, stored_path_len);
	return true;
}

bool
bk_repo_quarantine(const BkRepo *repo, const char *topic, int32_t partition,
				   int64_t offset, const void *data, size_t len,
				   const char *reason, BkError *err)
{
	char path[BK_REPO_PATH_MAX];
	char reason_path[BK_REPO_PATH_MAX + 16];
	char text[BK_ERROR_MESSAGE_MAX + 64];

	if (!repo_path(repo, path, sizeof(path), err, "%s/%s.%" PRId32 ".%" PRId64,
				   REJECTED_DIR, topic, partition, offset))
		return false;
	snprintf(reason_path, sizeof(reason_path), "%s.reason", path);
	snprintf(text, sizeof(text), "%s\n", reason);
	return bk_write_file_durable(path, data, len, 0644, err) &&
		   bk_write_file_durable(reason_path, text, strlen(text), 0644, err);
}

/* ----------------------------------------------------------- catalog */

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

typedef struct SegmentEntry
{
	uint32_t timeline;
	uint32_t log;
	uint32_t seg;
	bool partial;
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

static uint64_t
count_dir_entries(const char *path)
{
	DIR *dir = opendir(path);
	struct dirent *entry;
	uint64_t count = 0;

	if (dir == NULL)
		return 0;
	while ((entry = readdir(dir)) != NULL)
		if (entry->d_name[0] != '.')
			count++;
	closedir(dir);
	return count;
}

bool
bk_wal_catalog_load(const BkRepo *repo, const char *source,
					BkWalCatalog *catalog, BkError *err)
{
	char wal_dir[BK_REPO_PATH_MAX];
	char conflict_dir[BK_REPO_PATH_MAX];
	DIR *dir;
	struct dirent *entry;
	SegmentEntry *entries = NULL;
	size_t entry_count = 0;
	size_t entry_cap = 0;

	memset(catalog, 0, sizeof(*catalog));
	bk_strlcpy(catalog->source, source, sizeof(catalog->source));
	if (!repo_path(repo, wal_dir, sizeof(wal_dir), err, "%s/wal", source) ||
		!repo_path(repo, conflict_dir, sizeof(conflict_dir), err, "%s/%s/wal",
				   source, CONFLICTS_DIR))
		return false;
	catalog->conflicts = count_dir_entries(conflict_dir);
	dir = opendir(wal_dir);
	if (dir == NULL)
	{
		if (errno == ENOENT)
			return true; /* no WAL archived for this source yet */
		return bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s",
							wal_dir, strerror(errno));
	}
	while ((entry = readdir(dir)) != NULL)
	{
		uint32_t timeline;
		uint32_t log;
		uint32_t seg;
		BkWalFileType type =
			bk_wal_file_type(entry->d_name, &timeline, &log, &seg);

		if (type == BK_WAL_HISTORY)
			catalog->history_files++;
		else if (type == BK_WAL_BACKUP)
			catalog->backup_files++;
		if (type != BK_WAL_SEGMENT && type != BK_WAL_PARTIAL)
			continue;
		if (entry_count == entry_cap)
		{
			size_t new_cap = entry_cap ? entry_cap * 2 : 256;
			SegmentEntry *grown = realloc(entries, new_cap * sizeof(*entries));

			if (grown == NULL)
			{
				closedir(dir);
				free(entries);
				return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
			}
			entries = grown;
			entry_cap = new_cap;
		}
		entries[entry_count++] =
			(SegmentEntry){timeline, log, seg, type == BK_WAL_PARTIAL};
	}
	closedir(dir);
	if (entry_count == 0)
	{
		free(entries);
		return true;
	}
	qsort(entries, entry_count, sizeof(*entries), segment_entry_cmp);

	/* The segment size (needed to number segments) is in every object's metadata. */
	{
		const SegmentEntry *newest = NULL;
		char name[32];
		char path[BK_REPO_PATH_MAX + 64];
		char value[32];
		BkObjectIdentity identity;
		BkObjectTracker object;
		struct stat st;

		for (size_t entryIdx = entry_count; entryIdx > 0; entryIdx--)
			if (!entries[entryIdx - 1].partial)
			{
				newest = &entries[entryIdx - 1];
				break;
			}
		if (newest == NULL)
			newest = &entries[entry_count - 1];
		snprintf(name, sizeof(name), "%08X%08X%08X%s", newest->timeline,
				 newest->log, newest->seg, newest->partial ? ".partial" : "");
		snprintf(path, sizeof(path), "%s/%s", wal_dir, name);
		if (!bk_repo_object_identity(path, &identity, &object, err))
		{
			free(entries);
			return false;
		}
		if (!bk_meta_get(object.meta, object.meta_len, "segment-size", value,
						 sizeof(value)))
		{
			free(entries);
			return bk_error_set(err, BK_ERR_FORMAT,
								"\"%s\" has no segment-size metadata", path);
		}
		catalog->segment_size = (uint32_t) strtoul(value, NULL, 10);
		if (catalog->segment_size == 0 ||
			(catalog->segment_size & (catalog->segment_size - 1)) != 0)
		{
			free(entries);
			return bk_error_set(err, BK_ERR_FORMAT,
								"\"%s\" claims an impossible segment size %s",
								path, value);
		}
		bk_strlcpy(catalog->newest_name, name, sizeof(catalog->newest_name));
		if (stat(path, &st) == 0)
			catalog->newest_archived_ms = (int64_t) st.st_mtim.tv_sec * 1000 +
										  st.st_mtim.tv_nsec / 1000000;
		if (!bk_meta_get(object.meta, object.meta_len, "created",
						 catalog->newest_created,
						 sizeof(catalog->newest_created)))
			catalog->newest_created[0] = '\0';
	}

	for (size_t entryIdx = 0; entryIdx < entry_count; entryIdx++)
	{
		const SegmentEntry *e = &entries[entryIdx];
		BkWalTimeline *tl;
		uint64_t segno = bk_wal_segno(e->log, e->seg, catalog->segment_size);

		if (catalog->timeline_count == 0 ||
			catalog->timelines[catalog->timeline_count - 1].timeline !=
				e->timeline)
		{
			BkWalTimeline *grown = realloc(
				catalog->timelines,
				(size_t) (catalog->timeline_count + 1) * sizeof(*grown));

			if (grown == NULL)
			{
				free(entries);
				return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
			}
			catalog->timelines = grown;
			tl = &catalog->timelines[catalog->timeline_count++];
			memset(tl, 0, sizeof(*tl));
			tl->timeline = e->timeline;
			tl->first_segno = segno;
			tl->last_segno = segno;
		}
		tl = &catalog->timelines[catalog->timeline_count - 1];
		if (e->partial)
		{
			tl->partials++;
			continue;
		}
		if (tl->segments == 0)
			tl->first_segno = segno;
		else if (segno > tl->last_segno + 1)
		{
			if (tl->gap_count == 0)
				tl->first_gap_segno = tl->last_segno + 1;
			tl->gap_count += segno - tl->last_segno - 1;
		}
		tl->last_segno = segno;
		tl->segments++;
	}
	free(entries);
	return true;
}

void
bk_wal_catalog_free(BkWalCatalog *catalog)
{
	free(catalog->timelines);
	catalog->timelines = NULL;
	catalog->timeline_count = 0;
}

static int
string_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

bool
bk_repo_sources(const BkRepo *repo, char ***sources, int *count, BkError *err)
{
	DIR *dir = opendir(repo->root);
	struct dirent *entry;
	char **list = NULL;
	int n = 0;

	if (dir == NULL)
		return bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s",
							repo->root, strerror(errno));
	while ((entry = readdir(dir)) != NULL)
	{
		char path[BK_REPO_PATH_MAX + 256];
		struct stat st;
		char **grown;

		if (entry->d_name[0] == '.' ||
			strcmp(entry->d_name, REJECTED_DIR) == 0 ||
			!bk_source_id_valid(entry->d_name, strlen(entry->d_name)))
			continue;
		snprintf(path, sizeof(path), "%s/%s", repo->root, entry->d_name);
		if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
			continue;
		grown = realloc(list, (size_t) (n + 1) * sizeof(*list));
		if (grown == NULL)
		{
			closedir(dir);
			bk_repo_free_list(list, n);
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		}
		list = grown;
		list[n++] = strdup(entry->d_name);
	}
	closedir(dir);
	if (n > 0)
		qsort(list, (size_t) n, sizeof(*list), string_cmp);
	*sources = list;
	*count = n;
	return true;
}

void
bk_repo_free_list(char **list, int count)
{
	for (int itemIdx = 0; itemIdx < count; itemIdx++)
		free(list[itemIdx]);
	free(list);
}

/* ----------------------------------------------------------- decrypting */

typedef struct DecryptVisit
{
	BkDecoder *decoder;
	int fd;
	const char *tmp_path;
} DecryptVisit;

static bool
decrypt_frame(void *arg, const uint8_t *frame, size_t len, BkError *err)
{
	DecryptVisit *visit = arg;
	const uint8_t *plain;
	size_t plain_len;

	if (!bk_decoder_push(visit->decoder, frame, len, &plain, &plain_len, err))
		return false;
	return bk_write_all(visit->fd, plain, plain_len, visit->tmp_path, err);
}

bool
bk_repo_decrypt_to_file(const char *object_path, BkDecoder *decoder,
						const char *source, int kind, const char *name,
						const char *dest, uint64_t *size, BkError *err)
{
	char tmp_path[BK_REPO_PATH_MAX + 64];
	char dest_dir[BK_REPO_PATH_MAX];
	DecryptVisit visit = {.decoder = decoder, .tmp_path = tmp_path};
	const BkObjectTracker *object;

	if ((size_t) snprintf(tmp_path, sizeof(tmp_path), "%s.bk-tmp.%d", dest,
						  (int) getpid()) >= sizeof(tmp_path))
		return bk_error_set(err, BK_ERR_USAGE, "path too long: \"%s\"", dest);
	visit.fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (visit.fd < 0)
		return bk_error_set(err, BK_ERR_IO, "could not create \"%s\": %s",
							tmp_path, strerror(errno));
	bk_decoder_reset(decoder);
	if (!bk_repo_read_frames(object_path, false, decrypt_frame, &visit, err) ||
		!bk_decoder_finish(decoder, err))
		goto failed;
	object = bk_decoder_object(decoder);
	if (strcmp(object->source, source) != 0 ||
		strcmp(object->name, name) != 0 || object->kind != kind)
	{
		bk_error_set(err, BK_ERR_FORMAT,
					 "\"%s\" holds %s object \"%s\" of source \"%s\", not %s "
					 "object \"%s\" of source \"%s\"",
					 object_path, bk_kind_name(object->kind), object->name,
					 object->source, bk_kind_name(kind), name, source);
		goto failed;
	}
	if (fsync(visit.fd) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not fsync \"%s\": %s", tmp_path,
					 strerror(errno));
		goto failed;
	}
	if (close(visit.fd) != 0)
	{
		visit.fd = -1;
		bk_error_set(err, BK_ERR_IO, "could not write \"%s\": %s", tmp_path,
					 strerror(errno));
		goto failed;
	}
	visit.fd = -1;
	if (rename(tmp_path, dest) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not rename \"%s\" to \"%s\": %s",
					 tmp_path, dest, strerror(errno));
		goto failed;
	}
	dir_of(dest, dest_dir, sizeof(dest_dir));
	if (!bk_fsync_dir(dest_dir, err))
		return false;
	if (size != NULL)
		*size = object->object_size;
	return true;

failed:
	if (visit.fd >= 0)
		close(visit.fd);
	unlink(tmp_path);
	return false;
}

bool
bk_remove_tree(const char *path, BkError *err)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ||
			   bk_error_set(err, BK_ERR_IO, "could not stat \"%s\": %s", path,
							strerror(errno));
	if (S_ISDIR(st.st_mode))
	{
		DIR *dir = opendir(path);
		struct dirent *entry;

		if (dir == NULL)
			return bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s",
								path, strerror(errno));
		while ((entry = readdir(dir)) != NULL)
		{
			char child[BK_REPO_PATH_MAX];

			if (strcmp(entry->d_name, ".") == 0 ||
				strcmp(entry->d_name, "..") == 0)
				continue;
			if ((size_t) snprintf(child, sizeof(child), "%s/%s", path,
								  entry->d_name) >= sizeof(child))
			{
				closedir(dir);
				return bk_error_set(err, BK_ERR_IO, "path too long: \"%s/%s\"",
									path, entry->d_name);
			}
			if (!bk_remove_tree(child, err))
			{
				closedir(dir);
				return false;
			}
		}
		closedir(dir);
		if (rmdir(path) != 0)
			return bk_error_set(err, BK_ERR_IO, "could not remove \"%s\": %s",
								path, strerror(errno));
		return true;
	}
	if (unlink(path) != 0 && errno != ENOENT)
		return bk_error_set(err, BK_ERR_IO, "could not remove \"%s\": %s", path,
							strerror(errno));
	return true;
}
