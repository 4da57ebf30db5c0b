/*
 * repo.c
 *		The repository interface (repo.h): keys, and what is the same for
 *		every backend (listing filters, frames, identities, put-if-absent
 *		decisions, decryption), on the operations of repo_backend.h.
 */
#include "repo_backend.h"

#include <ctype.h>
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

#define CONFLICTS_WORD "conflicts"
#define EXPIRED_WORD   "expired"

/* ------------------------------------------------------------ keys */

static bool key_printf(char *out, size_t out_len, BkError *err, const char *fmt,
					   ...) BK_PRINTF(4, 5);

static bool
key_printf(char *out, size_t out_len, BkError *err, const char *fmt, ...)
{
	va_list args;
	int n;

	va_start(args, fmt);
	n = vsnprintf(out, out_len, fmt, args);
	va_end(args);
	if (n < 0 || (size_t) n >= out_len)
		return bk_error_set(err, BK_ERR_USAGE, "repository key too long");
	return true;
}

/*
 * "<source>/<kind>/", "<source>/conflicts/<kind>/" or
 * "<source>/expired/<kind>/", checked.
 */
static bool
kind_prefix(BkRepoArea area, const char *source, int kind, char *out,
			size_t out_len, BkError *err)
{
	if (!bk_source_id_valid(source, strlen(source)))
		return bk_error_set(err, BK_ERR_USAGE, "invalid source id \"%s\"",
							source);
	if (bk_kind_name(kind) == NULL)
		return bk_error_set(err, BK_ERR_USAGE, "unknown object kind %d", kind);
	if (area == BK_REPO_CONFLICTS || area == BK_REPO_EXPIRED)
		return key_printf(out, out_len, err, "%s/%s/%s/", source,
						  area == BK_REPO_CONFLICTS ? CONFLICTS_WORD
													: EXPIRED_WORD,
						  bk_kind_name(kind));
	return key_printf(out, out_len, err, "%s/%s/", source, bk_kind_name(kind));
}

/*
 * The key of an object.  Names are checked as frames check them (no empty,
 * "." or ".." components, printable ASCII), so no name escapes its place.
 */
static bool
object_key(BkRepoArea area, const char *source, int kind, const char *name,
		   char *out, size_t out_len, BkError *err)
{
	char prefix[BK_REPO_KEY_MAX];
	size_t name_len = strlen(name);
	size_t checked_len = name_len;

	/* A conflict copy's name is an object name and ".<attempt id>". */
	if (area == BK_REPO_CONFLICTS && name_len > 2 * BK_ATTEMPT_ID_LEN + 1 &&
		name[name_len - 2 * BK_ATTEMPT_ID_LEN - 1] == '.')
	{
		checked_len = name_len - 2 * BK_ATTEMPT_ID_LEN - 1;
		for (size_t pos = checked_len + 1; pos < name_len; pos++)
			if (!isxdigit((unsigned char) name[pos]))
				checked_len = name_len; /* not an attempt id after all */
	}
	if (!bk_object_name_valid(name, checked_len))
		return bk_error_set(err, BK_ERR_USAGE, "invalid object name \"%s\"",
							name);
	return kind_prefix(area, source, kind, prefix, sizeof(prefix), err) &&
		   key_printf(out, out_len, err, "%s%s", prefix, name);
}

/* Is text (len bytes) the word of an object kind ("wal", ...)? */
static bool
kind_word(const char *text, size_t len)
{
	for (int kind = BK_KIND_WAL; kind <= BK_KIND_BINLOG; kind++)
		if (strlen(bk_kind_name(kind)) == len &&
			memcmp(bk_kind_name(kind), text, len) == 0)
			return true;
	return false;
}

bool
bk_repo_key_is_bk(const char *key)
{
	const char *rest = strchr(key, '/');
	const char *slash;
	size_t len;

	/* A start-up probe of the store (repo_s3.c): its upload too. */
	if (strncmp(key, BK_REPO_PROBE_PREFIX, strlen(BK_REPO_PROBE_PREFIX)) == 0)
	{
		const char *hex = key + strlen(BK_REPO_PROBE_PREFIX);

		if (strlen(hex) != BK_REPO_PROBE_HEX_LEN)
			return false;
		for (const char *p = hex; *p != '\0'; p++)
			if (!isxdigit((unsigned char) *p))
				return false;
		return true;
	}
	/* An object the repository refused, kept (bk_repo_upload_quarantine). */
	if (strncmp(key, BK_REPO_REJECTED_PREFIX,
				strlen(BK_REPO_REJECTED_PREFIX)) == 0 &&
		key[strlen(BK_REPO_REJECTED_PREFIX)] != '\0' &&
		strchr(key + strlen(BK_REPO_REJECTED_PREFIX), '/') == NULL)
		return true;
	if (rest == NULL || !bk_source_id_valid(key, (size_t) (rest - key)))
		return false;
	rest++;
	if (strncmp(rest, CONFLICTS_WORD "/", strlen(CONFLICTS_WORD "/")) == 0)
	{
		/* A conflict copy: an object name, "." and an attempt id. */
		rest += strlen(CONFLICTS_WORD "/");
		if ((slash = strchr(rest, '/')) == NULL ||
			!kind_word(rest, (size_t) (slash - rest)))
			return false;
		rest = slash + 1;
		len = strlen(rest);
		if (len <= 2 * BK_ATTEMPT_ID_LEN + 1 ||
			rest[len - 2 * BK_ATTEMPT_ID_LEN - 1] != '.')
			return false;
		for (size_t pos = len - 2 * BK_ATTEMPT_ID_LEN; pos < len; pos++)
			if (!isxdigit((unsigned char) rest[pos]))
				return false;
		return bk_object_name_valid(rest, len - 2 * BK_ATTEMPT_ID_LEN - 1);
	}
	if ((slash = strchr(rest, '/')) == NULL ||
		!kind_word(rest, (size_t) (slash - rest)))
		return false;
	return bk_object_name_valid(slash + 1, strlen(slash + 1));
}

int64_t
bk_repo_stale_upload_ms(int64_t requested_ms)
{
	return requested_ms > BK_S3_STALE_UPLOAD_MS ? requested_ms
												: BK_S3_STALE_UPLOAD_MS;
}

void
bk_repo_describe(const BkRepo *repo, BkRepoArea area, const char *source,
				 int kind, const char *name, char *out, size_t out_len)
{
	char key[BK_REPO_KEY_MAX];
	BkError err;

	if (!object_key(area, source, kind, name, key, sizeof(key), &err))
	{
		snprintf(out, out_len, "%s (%s)", name, err.message);
		return;
	}
	repo->backend->describe(repo, key, out, out_len);
}

/* ------------------------------------------------------------ spools */

bool
bk_spool_create(const char *path, mode_t mode, BkError *err)
{
	/*
	 * Never an existing file: spools are emptied when opened, so a name
	 * taken is another live upload's (its object then cut short) or, once
	 * linked, an archived object's second name.
	 */
	int fd =
		open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	bool ok;

	if (fd < 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not create spool file \"%s\": %s", path,
							strerror(errno));
	/* The mode whatever the umask (the directory backend's is 0644). */
	ok = fchmod(fd, mode) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok)
	{
		bk_error_set(err, BK_ERR_IO, "could not create spool file \"%s\": %s",
					 path, strerror(errno));
		unlink(path);
	}
	return ok;
}

bool
bk_spool_append(const char *path, const void *data, size_t len, BkError *err)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not open spool file \"%s\": %s", path,
							strerror(errno));
	if (!bk_write_all(fd, data, len, path, err))
	{
		close(fd);
		return false;
	}
	if (close(fd) != 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not write spool file \"%s\": %s", path,
							strerror(errno));
	return true;
}

/* ------------------------------------------------------------ opening */

void
bk_repo_options_init(BkRepoOptions *options)
{
	memset(options, 0, sizeof(*options));
	options->s3_verify_tls = true;
}

bool
bk_repo_location_is_s3(const char *location)
{
	return location != NULL && strncmp(location, "s3://", 5) == 0;
}

BkRepo *
bk_repo_open(const char *location, bool create, BkError *err)
{
	BkRepoOptions options;

	bk_repo_options_init(&options);
	return bk_repo_open_with(location, &options, create, err);
}

BkRepo *
bk_repo_open_with(const char *location, const BkRepoOptions *options,
				  bool create, BkError *err)
{
	BkRepo *repo;
	BkRepoReader *marker;
	char text[64];
	uint64_t size;

	if (location == NULL || location[0] == '\0')
	{
		bk_error_set(err, BK_ERR_CONFIG, "no repository configured");
		bk_error_hint(err, "Set repository in the configuration file or pass "
						   "--repo DIR.");
		return NULL;
	}
	repo = calloc(1, sizeof(*repo));
	if (repo == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	repo->backend = bk_repo_location_is_s3(location)
						? &bk_repo_s3_backend
						: &bk_repo_directory_backend;
	bk_strlcpy(repo->location, location, sizeof(repo->location));
	repo->options = options;
	if (!repo->backend->open(repo, location, create, err))
	{
		repo->options = NULL;
		repo->backend->close(repo);
		free(repo);
		return NULL;
	}
	if (create)
	{
		BkRepoStat stat;

		if (!repo->backend->stat(repo, BK_REPO_MARKER_KEY, &stat, err) ||
			(!stat.exists && !repo->backend->put_small(
								 repo, BK_REPO_MARKER_KEY, BK_REPO_MARKER_TEXT,
								 strlen(BK_REPO_MARKER_TEXT), err)))
			goto fail;
	}
	marker = repo->backend->reader_open(repo, BK_REPO_MARKER_KEY, err);
	/* Refused credentials or an unreachable store say so themselves. */
	if (marker == NULL && err->code != BK_ERR_NOT_FOUND &&
		err->code != BK_ERR_STORE)
		goto fail;
	/*
	 * Any other refusal (a wrong region, a redirect, a 400) or I/O error:
	 * its own words name the cause, which "not a repository" would hide.
	 */
	if (marker == NULL && err->code == BK_ERR_STORE)
	{
		bk_error_prefix(err, "could not read the marker %s of \"%s\": ",
						BK_REPO_MARKER_KEY, repo->location);
		if (err->hint[0] == '\0')
			bk_error_hint(err, "Check the repository setting (--repo) and "
							   "that its store or file system answers.");
		goto fail;
	}
	/*
	 * The store answered, and holds no repository there: the setting names
	 * the wrong place (or one no shipper has written yet).  A configuration
	 * error (exit 3), not one of the store (exit 5): retrying reads the
	 * same nothing, and systemd would restart a unit for it forever.
	 */
	if (marker == NULL)
	{
		struct stat root_st;
		bool no_dir = !bk_repo_location_is_s3(repo->location) &&
					  stat(repo->location, &root_st) != 0 && errno == ENOENT;

		bk_error_set(err, BK_ERR_CONFIG, "\"%s\" is not a bk repository: %s",
					 repo->location,
					 no_dir ? "there is no such directory"
							: "its marker " BK_REPO_MARKER_KEY " is not there");
		bk_error_hint(err,
					  "Check the repository setting (repository in the "
					  "configuration file, or --repo): bk-shipper creates "
					  "the repository when it first starts, and every host "
					  "that reads it must see the same %s.",
					  bk_repo_location_is_s3(repo->location)
						  ? "bucket and prefix"
						  : "directory (a file system not mounted there looks "
							"like this)");
		goto fail;
	}
	size = marker->size;
	if (size != strlen(BK_REPO_MARKER_TEXT) ||
		!repo->backend->reader_read(marker, 0, text, size, err) ||
		memcmp(text, BK_REPO_MARKER_TEXT, size) != 0)
	{
		repo->backend->reader_close(marker);
		bk_error_set(err, BK_ERR_FORMAT,
					 "\"%s\" has an unknown repository format (its marker %s "
					 "does not say \"bk repository 1\")",
					 repo->location, BK_REPO_MARKER_KEY);
		goto fail;
	}
	repo->backend->reader_close(marker);
	return repo;

fail:
	repo->backend->close(repo);
	free(repo);
	return NULL;
}

void
bk_repo_close(BkRepo *repo)
{
	if (repo == NULL)
		return;
	repo->backend->close(repo);
	free(repo);
}

const char *
bk_repo_location(const BkRepo *repo)
{
	return repo->location;
}

/* ------------------------------------------------------------ sources */

typedef struct SourceList
{
	char **list;
	int count;
} SourceList;

static bool
collect_source(void *arg, const BkRepoEntry *entry, BkError *err)
{
	SourceList *sources = arg;
	char **grown;

	/* Not a source: "rejected", dot names, anything not bk's. */
	if (!entry->is_prefix ||
		!bk_source_id_valid(entry->name, strlen(entry->name)))
		return true;
	grown = realloc(sources->list,
					(size_t) (sources->count + 1) * sizeof(*sources->list));
	if (grown == NULL || (grown[sources->count] = strdup(entry->name)) == NULL)
	{
		if (grown != NULL)
			sources->list = grown;
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	sources->list = grown;
	sources->count++;
	return true;
}

static int
string_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

bool
bk_repo_sources(const BkRepo *repo, char ***sources, int *count, BkError *err)
{
	SourceList found = {0};

	if (!repo->backend->list(repo, "", false, collect_source, &found, err))
	{
		bk_repo_free_list(found.list, found.count);
		return false;
	}
	if (found.count > 0)
		qsort(found.list, (size_t) found.count, sizeof(*found.list),
			  string_cmp);
	*sources = found.list;
	*count = found.count;
	return true;
}

void
bk_repo_free_list(char **list, int count)
{
	for (int itemIdx = 0; itemIdx < count; itemIdx++)
		free(list[itemIdx]);
	free(list);
}

static bool
note_any(void *arg, const BkRepoEntry *entry, BkError *err)
{
	*(bool *) arg = true;
	return bk_error_set(err, BK_ERR_INTERRUPTED, "found one");
}

bool
bk_repo_source_exists(const BkRepo *repo, const char *source, bool *exists,
					  BkError *err)
{
	char prefix[BK_REPO_KEY_MAX];
	BkError stop;

	*exists = false;
	if (!bk_source_id_valid(source, strlen(source)))
		return bk_error_set(err, BK_ERR_USAGE, "invalid source id \"%s\"",
							source);
	if (!key_printf(prefix, sizeof(prefix), err, "%s/", source))
		return false;
	if (!repo->backend->list(repo, prefix, false, note_any, exists, &stop) &&
		!*exists)
	{
		*err = stop;
		return false;
	}
	return true;
}

/* ------------------------------------------------------------ listing */

typedef struct ListFilter
{
	const char *name_prefix; /* prepended to every name given */
	const char *match;       /* names must start with this (after it) */
	BkRepoListFn fn;
	void *arg;
	char name[BK_REPO_KEY_MAX];
} ListFilter;

static bool
filter_entry(void *arg, const BkRepoEntry *entry, BkError *err)
{
	ListFilter *filter = arg;
	BkRepoEntry named = *entry;

	if (strncmp(entry->name, filter->match, strlen(filter->match)) != 0)
		return true;
	if (!key_printf(filter->name, sizeof(filter->name), err, "%s%s",
					filter->name_prefix, entry->name))
		return false;
	named.name = filter->name;
	return filter->fn(filter->arg, &named, err);
}

bool
bk_repo_list(const BkRepo *repo, BkRepoArea area, const char *source, int kind,
			 const char *prefix, bool recursive, BkRepoListFn fn, void *arg,
			 BkError *err)
{
	char key[BK_REPO_KEY_MAX];
	char dir_part[BK_REPO_KEY_MAX];
	const char *slash = strrchr(prefix, '/');
	size_t dir_len = slash ? (size_t) (slash - prefix + 1) : 0;
	ListFilter filter = {.fn = fn, .arg = arg};

	/* Backends list whole "directories": the rest of prefix filters. */
	memcpy(dir_part, prefix, dir_len);
	dir_part[dir_len] = '\0';
	filter.name_prefix = dir_part;
	filter.match = prefix + dir_len;
	if (!kind_prefix(area, source, kind, key, sizeof(key), err) ||
		!key_printf(key + strlen(key), sizeof(key) - strlen(key), err, "%s",
					dir_part))
		return false;
	return repo->backend->list(repo, key, recursive, filter_entry, &filter,
							   err);
}

/* ------------------------------------------------------------ reading */

bool
bk_repo_stat(const BkRepo *repo, BkRepoArea area, const char *source, int kind,
			 const char *name, BkRepoStat *stat, BkError *err)
{
	char key[BK_REPO_KEY_MAX];

	return object_key(area, source, kind, name, key, sizeof(key), err) &&
		   repo->backend->stat(repo, key, stat, err);
}

/* One name of a listing (bk_repo_read_gone): is it there? */
typedef struct ListedLook
{
	const char *name;
	bool listed;
} ListedLook;

static bool
note_listed(void *arg, const BkRepoEntry *entry, BkError *err)
{
	ListedLook *look = arg;

	if (entry->is_prefix || strcmp(entry->name, look->name) != 0)
		return true;
	look->listed = true;
	return bk_error_set(err, BK_ERR_INTERRUPTED, "found it");
}

bool
bk_repo_read_gone(const BkRepo *repo, BkRepoArea area, const char *source,
				  int kind, const char *name, BkError *err)
{
	char prefix[BK_REPO_KEY_MAX];
	const char *slash = strrchr(name, '/');
	size_t dir_len = slash != NULL ? (size_t) (slash - name + 1) : 0;
	ListedLook look = {name, false};
	char failed[BK_ERROR_MESSAGE_MAX];
	BkRepoStat stat;
	BkError look_err;

	/* Out of memory or told to stop: nothing was said of the object. */
	if (err->code == BK_ERR_NOMEM || err->code == BK_ERR_INTERRUPTED)
		return false;
	if (err->code != BK_ERR_NOT_FOUND &&
		(!bk_repo_stat(repo, area, source, kind, name, &stat, &look_err) ||
		 stat.exists))
		return false;

	/*
	 * "No such object" is what the store says, not what it holds: one not
	 * read-after-list consistent, or a proxy's passing 404, says it of an
	 * object it still has, and a caller that took that for a removal
	 * (bk expire) would remove what depends on the object.  A listing
	 * made now without it confirms the removal; one that still has it,
	 * or none, leaves the read failed, never NOT_FOUND.
	 */
	bk_strlcpy(failed, err->message, sizeof(failed));
	if (dir_len >= sizeof(prefix))
		dir_len = sizeof(prefix) - 1;
	memcpy(prefix, name, dir_len);
	prefix[dir_len] = '\0';
	if (!bk_repo_list(repo, area, source, kind, prefix, false, note_listed,
					  &look, &look_err) &&
		!look.listed)
	{
		bk_error_set(err,
					 look_err.code == BK_ERR_NOT_FOUND ? BK_ERR_STORE
													   : look_err.code,
					 "%s; and listing it again, to tell whether it was "
					 "removed, failed: %s",
					 failed, look_err.message);
		return false;
	}
	if (look.listed)
	{
		bk_error_set(err, BK_ERR_STORE,
					 "%s, yet the repository still lists it: its reads and "
					 "its listings disagree (an object store whose reads lag "
					 "its listings, or a proxy answering 404 for it)",
					 failed);
		bk_error_hint(err, "Nothing was taken as removed on the strength of "
						   "that read. Run the command again later; if it "
						   "persists, check the store and what stands "
						   "between bk and it.");
		return false;
	}
	err->code = BK_ERR_NOT_FOUND;
	return true;
}

BkRepoReader *
bk_repo_reader_open(const BkRepo *repo, BkRepoArea area, const char *source,
					int kind, const char *name, BkError *err)
{
	char key[BK_REPO_KEY_MAX];

	if (!object_key(area, source, kind, name, key, sizeof(key), err))
		return NULL;
	return repo->backend->reader_open(repo, key, err);
}

void
bk_repo_prefetch(const BkRepo *repo, BkRepoArea area, const char *source,
				 int kind, const char *name)
{
	char key[BK_REPO_KEY_MAX];
	BkError err;

	if (repo->backend->prefetch != NULL &&
		object_key(area, source, kind, name, key, sizeof(key), &err))
		repo->backend->prefetch(repo, key);
}

void
bk_repo_prefetch_end(const BkRepo *repo)
{
	if (repo->backend->prefetch_end != NULL)
		repo->backend->prefetch_end(repo);
}

uint64_t
bk_repo_reader_size(const BkRepoReader *reader)
{
	return reader->size;
}

bool
bk_repo_reader_read(BkRepoReader *reader, uint64_t offset, void *buf,
					size_t len, BkError *err)
{
	if (offset > reader->size || len > reader->size - offset)
		return bk_error_set(err, BK_ERR_FORMAT,
							"\"%s\" is truncated: %zu bytes at %" PRIu64
							" are beyond its %" PRIu64 " bytes",
							reader->where, len, offset, reader->size);
	return reader->repo->backend->reader_read(reader, offset, buf, len, err);
}

void
bk_repo_reader_close(BkRepoReader *reader)
{
	if (reader != NULL)
		reader->repo->backend->reader_close(reader);
}

/*
 * The frames of one open object, in order (the layout of an object); with
 * first_only, its first frame alone.
 */
static bool
visit_some_frames(BkRepoReader *reader, bool headers_only, bool first_only,
				  BkFrameVisitor fn, void *arg, BkError *err)
{
	const char *where = reader->where;
	uint64_t size = reader->size;
	uint64_t pos = 0;
	uint8_t *buf = NULL;
	size_t cap = 0;
	bool ok = false;

	if (size == 0)
		return bk_error_set(err, BK_ERR_FORMAT, "object file \"%s\" is empty",
							where);
	/* Headers alone skip most bytes: nothing to read ahead then. */
	reader->in_order = !headers_only && !first_only;
	while (pos < size)
	{
		uint8_t fixed[BK_FRAME_FIXED_LEN];
		uint32_t header_len;
		uint32_t payload_len;
		size_t frame_len;
		size_t want;

		if (size - pos < sizeof(fixed))
		{
			bk_error_set(err, BK_ERR_FORMAT,
						 "object file \"%s\" is truncated at byte %" PRIu64
						 " (a frame header is cut short)",
						 where, pos);
			goto done;
		}
		if (!bk_repo_reader_read(reader, pos, fixed, sizeof(fixed), err))
			goto done;
		if (memcmp(fixed, BK_FRAME_MAGIC, 4) != 0)
		{
			bk_error_set(err, BK_ERR_FORMAT,
						 "object file \"%s\" is corrupt at byte %" PRIu64
						 ": not a frame (bad magic bytes)",
						 where, pos);
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
						 "object file \"%s\" is corrupt at byte %" PRIu64
						 ": impossible frame lengths",
						 where, pos);
			goto done;
		}
		frame_len = (size_t) header_len + payload_len + BK_FRAME_TRAILER_LEN;
		if (frame_len > size - pos)
		{
			bk_error_set(err, BK_ERR_FORMAT,
						 "object file \"%s\" is truncated: the frame at byte "
						 "%" PRIu64 " needs %zu bytes, %" PRIu64 " remain",
						 where, pos, frame_len, size - pos);
			goto done;
		}
		want = headers_only ? header_len : frame_len;
		if (want > cap)
		{
			uint8_t *grown = realloc(buf, want);

			if (grown == NULL)
			{
				bk_error_set(err, BK_ERR_NOMEM, "out of memory reading \"%s\"",
							 where);
				goto done;
			}
			buf = grown;
			cap = want;
		}
		if (!bk_repo_reader_read(reader, pos, buf, want, err) ||
			!fn(arg, buf, want, err))
			goto done;
		pos += frame_len;
		if (first_only)
			break;
	}
	ok = true;
done:
	free(buf);
	return ok;
}

static bool
visit_frames(BkRepoReader *reader, bool headers_only, BkFrameVisitor fn,
			 void *arg, BkError *err)
{
	return visit_some_frames(reader, headers_only, false, fn, arg, err);
}

bool
bk_repo_read_frames(const BkRepo *repo, BkRepoArea area, const char *source,
					int kind, const char *name, bool headers_only,
					BkFrameVisitor fn, void *arg, BkError *err)
{
	BkRepoReader *reader =
		bk_repo_reader_open(repo, area, source, kind, name, err);
	bool ok;

	if (reader == NULL)
		return false;
	ok = visit_frames(reader, headers_only, fn, arg, err);
	bk_repo_reader_close(reader);
	return ok;
}

typedef struct TrackVisit
{
	BkObjectTracker *tracker;
	bool headers_only;
	const char *where;
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
		return bk_error_prefix(err, "\"%s\": ", visit->where);
	return true;
}

/* Track every frame of an open object; the tracker must end complete. */
static bool
track_object(BkRepoReader *reader, bool headers_only, BkObjectTracker *tracker,
			 BkError *err)
{
	TrackVisit visit = {.tracker = tracker,
						.headers_only = headers_only,
						.where = reader->where};

	bk_tracker_reset(tracker);
	if (!visit_frames(reader, headers_only, track_frame, &visit, err))
		return false;
	if (!bk_tracker_check_complete(tracker, err))
		return bk_error_prefix(err, "\"%s\": ", reader->where);
	return true;
}

static void
identity_of(const BkObjectTracker *tracker, BkObjectIdentity *identity)
{
	memcpy(identity->key_id, tracker->key_id, BK_KEY_ID_LEN);
	memcpy(identity->fingerprint, tracker->fingerprint, BK_FINGERPRINT_LEN);
	memcpy(identity->attempt_id, tracker->attempt_id, BK_ATTEMPT_ID_LEN);
}

/* Identity of the object at key (the backend-level form). */
static bool
key_identity(const BkRepo *repo, const char *key, BkObjectIdentity *identity,
			 BkObjectTracker *object, BkError *err)
{
	BkRepoReader *reader = repo->backend->reader_open(repo, key, err);
	BkObjectTracker *tracker = object ? object : malloc(sizeof(*tracker));
	bool ok = false;

	if (reader != NULL && tracker != NULL)
	{
		ok = track_object(reader, true, tracker, err);
		if (ok)
			identity_of(tracker, identity);
	}
	else if (tracker == NULL)
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	bk_repo_reader_close(reader);
	if (object == NULL)
		free(tracker);
	return ok;
}

bool
bk_repo_object_identity(const BkRepo *repo, BkRepoArea area, const char *source,
						int kind, const char *name, BkObjectIdentity *identity,
						BkObjectTracker *object, BkError *err)
{
	char key[BK_REPO_KEY_MAX];

	return object_key(area, source, kind, name, key, sizeof(key), err) &&
		   key_identity(repo, key, identity, object, err);
}

bool
bk_repo_check_object(const BkRepo *repo, BkRepoArea area, const char *source,
					 int kind, const char *name, const char *expect_name,
					 BkObjectTracker *object, BkError *err)
{
	BkRepoReader *reader =
		bk_repo_reader_open(repo, area, source, kind, name, err);
	bool ok;

	if (reader == NULL)
		return false;
	ok = track_object(reader, false, object, err);
	if (ok && (strcmp(object->source, source) != 0 || object->kind != kind ||
			   strcmp(object->name, expect_name) != 0))
		ok = bk_error_set(err, BK_ERR_FORMAT,
						  "\"%s\" holds %s object \"%s\" of source \"%s\", "
						  "not the one its name says",
						  reader->where, bk_kind_name(object->kind),
						  object->name, object->source);
	bk_repo_reader_close(reader);
	return ok;
}

/* ------------------------------------------------------------ decrypting */

/* The frames said they are object (source, kind, name), not another one. */
static bool
decoded_object_is(const BkObjectTracker *object, const char *where,
				  const char *source, int kind, const char *name, BkError *err)
{
	if (strcmp(object->source, source) == 0 &&
		strcmp(object->name, name) == 0 && object->kind == kind)
		return true;
	return bk_error_set(err, BK_ERR_FORMAT,
						"\"%s\" holds %s object \"%s\" of source \"%s\", not "
						"%s object \"%s\" of source \"%s\"",
						where, bk_kind_name(object->kind), object->name,
						object->source, bk_kind_name(kind), name, source);
}

typedef struct DecryptVisit
{
	BkDecoder *decoder;
	BkPlainSink sink;
	void *arg;
} DecryptVisit;

static bool
decrypt_frame(void *arg, const uint8_t *frame, size_t len, BkError *err)
{
	DecryptVisit *visit = arg;
	const uint8_t *plain;
	size_t plain_len;

	if (!bk_decoder_push(visit->decoder, frame, len, &plain, &plain_len, err))
		return false;
	return plain_len == 0 || visit->sink(visit->arg, plain, plain_len, err);
}

bool
bk_repo_decrypt(const BkRepo *repo, BkRepoArea area, const char *source,
				int kind, const char *name, BkDecoder *decoder,
				BkPlainSink sink, void *arg, BkError *err)
{
	DecryptVisit visit = {.decoder = decoder, .sink = sink, .arg = arg};
	BkRepoReader *reader =
		bk_repo_reader_open(repo, area, source, kind, name, err);
	bool ok;

	if (reader == NULL)
		return false;
	bk_decoder_reset(decoder);
	ok = visit_frames(reader, false, decrypt_frame, &visit, err) &&
		 (bk_decoder_finish(decoder, err) ||
		  bk_error_prefix(err, "\"%s\": ", reader->where)) &&
		 decoded_object_is(bk_decoder_object(decoder), reader->where, source,
						   kind, name, err);
	bk_repo_reader_close(reader);
	return ok;
}

/* ------------------------------------------------------------ metadata */

typedef struct HeadVisit
{
	BkDecoder *decoder;
	const char *where;
} HeadVisit;

/* Chunk 0, whole: its CRC, then its tag, which covers its whole header. */
static bool
authenticate_head(void *arg, const uint8_t *frame, size_t len, BkError *err)
{
	HeadVisit *visit = arg;
	BkFrame parsed;
	const uint8_t *plain;
	size_t plain_len;

	if (!bk_frame_parse(frame, len, &parsed, err) ||
		!bk_decoder_push(visit->decoder, frame, len, &plain, &plain_len, err))
		return bk_error_prefix(err, "\"%s\": ", visit->where);
	return true;
}

static bool
meta_altered(const char *where, const char *source, const char *what,
			 BkError *err)
{
	bk_error_set(err, BK_ERR_AUTH,
				 "the metadata of \"%s\" read to plan does not match %s: "
				 "the repository was altered or damaged",
				 where, what);
	return bk_error_hint(err,
						 "Nothing was taken from it. Run \"bk verify "
						 "--source %s\" to find what else changed, and "
						 "restore from a repository you trust.",
						 source);
}

bool
bk_repo_object_meta(const BkRepo *repo, BkRepoArea area, const char *source,
					int kind, const char *name, BkDecoder *decoder,
					BkObjectTracker *object, BkError *err)
{
	BkObjectIdentity identity;
	HeadVisit visit = {.decoder = decoder};
	const BkObjectTracker *head;
	BkRepoReader *reader;
	bool ok;

	if (decoder == NULL)
		return bk_repo_object_identity(repo, area, source, kind, name,
									   &identity, object, err);
	/*
	 * One reader for both reads, chunk 0 first: an object store's first
	 * GET holds it, and the headers' walk may move the window past it (an
	 * object larger than a window).
	 */
	reader = bk_repo_reader_open(repo, area, source, kind, name, err);
	if (reader == NULL)
		return false;
	visit.where = reader->where;
	bk_decoder_reset(decoder);
	ok = visit_some_frames(reader, false, true, authenticate_head, &visit,
						   err) &&
		 track_object(reader, true, object, err);
	if (!ok && (err->code == BK_ERR_AUTH || err->code == BK_ERR_FORMAT))
		bk_error_hint(err,
					  "Its header (metadata included) is not the one its "
					  "source wrote: the repository was altered or damaged. "
					  "Nothing was taken from it; run \"bk verify --source "
					  "%s\" to find what else changed.",
					  source);
	ok = ok && decoded_object_is(bk_decoder_object(decoder), reader->where,
								 source, kind, name, err);
	head = bk_decoder_object(decoder);
	/* The keyless read saw every frame agree with its chunk 0 (the
	 * tracker), so this chunk 0 is every frame's header. */
	if (ok &&
		(head->meta_len != object->meta_len ||
		 memcmp(head->meta, object->meta, object->meta_len) != 0 ||
		 memcmp(head->attempt_id, object->attempt_id, BK_ATTEMPT_ID_LEN) != 0 ||
		 memcmp(head->key_id, object->key_id, BK_KEY_ID_LEN) != 0))
		ok = meta_altered(reader->where, source,
						  "its authenticated header (chunk 0)", err);
	bk_decoder_reset(decoder);
	bk_repo_reader_close(reader);
	return ok;
}

bool
bk_repo_meta_digest(const BkObjectTracker *object,
					uint8_t digest[BK_SHA256_LEN], BkError *err)
{
	return bk_sha256(object->meta, object->meta_len, digest, err);
}

bool
bk_repo_meta_agrees(const BkDecoder *decoder,
					const uint8_t planned[BK_SHA256_LEN], const char *source,
					BkError *err)
{
	const BkObjectTracker *object = bk_decoder_object(decoder);
	uint8_t digest[BK_SHA256_LEN];

	if (!bk_repo_meta_digest(object, digest, err))
		return false;
	if (memcmp(digest, planned, BK_SHA256_LEN) == 0)
		return true;
	return meta_altered(object->name, source,
						"what decrypting it authenticated", err);
}

bool
bk_repo_meta_still(const BkRepo *repo, BkRepoArea area, const char *source,
				   int kind, const char *name, BkDecoder *decoder,
				   const uint8_t planned[BK_SHA256_LEN], BkError *err)
{
	BkObjectTracker *object = malloc(sizeof(*object));
	uint8_t digest[BK_SHA256_LEN];
	bool ok;

	if (object == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	ok = bk_repo_object_meta(repo, area, source, kind, name, decoder, object,
							 err) &&
		 bk_repo_meta_digest(object, digest, err);
	free(object);
	if (ok && memcmp(digest, planned, BK_SHA256_LEN) != 0)
		ok = meta_altered(name, source, "what it authenticates now", err);
	return ok;
}

typedef struct FileSink
{
	int fd;
	const char *path;
} FileSink;

static bool
write_to_file(void *arg, const uint8_t *data, size_t len, BkError *err)
{
	FileSink *file = arg;

	return bk_write_all(file->fd, data, len, file->path, err);
}

typedef struct MemorySink
{
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max_len;
	const char *name;
} MemorySink;

static bool
append_to_memory(void *arg, const uint8_t *data, size_t len, BkError *err)
{
	MemorySink *memory = arg;
	uint8_t *grown;

	if (memory->len + len > memory->max_len)
		return bk_error_set(err, BK_ERR_FORMAT,
							"object \"%s\" holds more than %zu bytes",
							memory->name, memory->max_len);
	if (memory->len + len + 1 > memory->cap)
	{
		/* Doubling: a record of a million files arrives in many chunks. */
		size_t cap = memory->cap ? memory->cap : 4096;

		while (cap < memory->len + len + 1)
			cap *= 2;
		grown = realloc(memory->data, cap);
		if (grown == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		memory->data = grown;
		memory->cap = cap;
	}
	memcpy(memory->data + memory->len, data, len);
	memory->len += len;
	memory->data[memory->len] = '\0';
	return true;
}

bool
bk_repo_decrypt_to_file(const BkRepo *repo, BkRepoArea area, const char *source,
						int kind, const char *name, BkDecoder *decoder,
						const char *dest, uint64_t *size, BkError *err)
{
	char tmp_path[4096 + 64];
	FileSink file = {.path = tmp_path};

	if ((size_t) snprintf(tmp_path, sizeof(tmp_path), "%s.bk-tmp.%d", dest,
						  (int) getpid()) >= sizeof(tmp_path))
		return bk_error_set(err, BK_ERR_USAGE, "path too long: \"%s\"", dest);
	file.fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (file.fd < 0)
		return bk_error_set(err, BK_ERR_IO, "could not create \"%s\": %s",
							tmp_path, strerror(errno));
	if (!bk_repo_decrypt(repo, area, source, kind, name, decoder, write_to_file,
						 &file, err))
		goto failed;
	if (fsync(file.fd) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not fsync \"%s\": %s", tmp_path,
					 strerror(errno));
		goto failed;
	}
	if (close(file.fd) != 0)
	{
		file.fd = -1;
		bk_error_set(err, BK_ERR_IO, "could not write \"%s\": %s", tmp_path,
					 strerror(errno));
		goto failed;
	}
	file.fd = -1;
	if (!bk_rename_durable(tmp_path, dest, err))
		goto failed;
	if (size != NULL)
		*size = bk_decoder_object(decoder)->object_size;
	return true;

failed:
	if (file.fd >= 0)
		close(file.fd);
	unlink(tmp_path);
	return false;
}

bool
bk_repo_decrypt_to_memory(const BkRepo *repo, BkRepoArea area,
						  const char *source, int kind, const char *name,
						  BkDecoder *decoder, size_t max_len, uint8_t **data,
						  size_t *len, BkError *err)
{
	MemorySink memory = {.max_len = max_len, .name = name};

	if (!bk_repo_decrypt(repo, area, source, kind, name, decoder,
						 append_to_memory, &memory, err))
	{
		free(memory.data);
		return false;
	}
	if (memory.data == NULL && (memory.data = calloc(1, 1)) == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	*data = memory.data;
	*len = memory.len;
	return true;
}

/* ------------------------------------------------------------ writing */

bool
bk_shipper_id_valid(const char *id)
{
	size_t len = strlen(id);

	if (len == 0 || len > 64 || id[0] == '.')
		return false;
	for (size_t pos = 0; pos < len; pos++)
		if (!isalnum((unsigned char) id[pos]) && id[pos] != '.' &&
			id[pos] != '_' && id[pos] != '-')
			return false;
	return true;
}

bool
bk_repo_spool_open(BkRepo *repo, const char *shipper_id, BkError *err)
{
	if (!bk_shipper_id_valid(shipper_id))
	{
		bk_error_set(err, BK_ERR_CONFIG, "invalid shipper_id \"%s\"",
					 shipper_id);
		return bk_error_hint(err, "Use 1 to 64 letters, digits, '.', '_' or "
								  "'-'.");
	}
	return repo->backend->spool_open(repo, shipper_id, err);
}

BkRepoUpload *
bk_repo_upload_begin(BkRepo *repo, const char *tag, BkError *err)
{
	if (!bk_object_name_valid(tag, strlen(tag)) || strchr(tag, '/') != NULL)
	{
		bk_error_set(err, BK_ERR_USAGE, "invalid upload tag \"%s\"", tag);
		return NULL;
	}
	return repo->backend->upload_begin(repo, tag, err);
}

bool
bk_repo_upload_write(BkRepoUpload *upload, const void *data, size_t len,
					 BkError *err)
{
	return upload->repo->backend->upload_write(upload, data, len, err);
}

bool
bk_repo_upload_seal(BkRepoUpload *upload, BkError *err)
{
	return upload->repo->backend->upload_seal == NULL ||
		   upload->repo->backend->upload_seal(upload, err);
}

void
bk_repo_batch_begin(BkRepo *repo)
{
	if (repo->backend->batch_begin != NULL)
		repo->backend->batch_begin(repo);
}

bool
bk_repo_batch_end(BkRepo *repo, BkError *err)
{
	return repo->backend->batch_end == NULL ||
		   repo->backend->batch_end(repo, err);
}

bool
bk_repo_upload_finish(BkRepoUpload *upload, BkError *err)
{
	return upload->repo->backend->upload_finish(upload, err);
}

const char *
bk_repo_upload_where(const BkRepoUpload *upload)
{
	return upload->where;
}

bool
bk_repo_upload_commit(BkRepoUpload *upload, BkRepoArea area, const char *source,
					  int kind, const char *name,
					  const BkObjectIdentity *identity, BkPutResult *result,
					  BkError *err)
{
	char key[BK_REPO_KEY_MAX];
	char copy_name[BK_OBJECT_NAME_MAX + 2 * BK_ATTEMPT_ID_LEN + 2];
	BkObjectIdentity existing;
	BkError existing_err;
	bool created;

	if (area == BK_REPO_CONFLICTS)
	{
		char attempt_hex[2 * BK_ATTEMPT_ID_LEN + 1];

		bk_hex_encode(identity->attempt_id, BK_ATTEMPT_ID_LEN, attempt_hex);
		snprintf(copy_name, sizeof(copy_name), "%s.%s", name, attempt_hex);
		name = copy_name;
	}
	if (!object_key(area, source, kind, name, key, sizeof(key), err))
		return false;
	/*
	 * Two tries: the copy found in place may be removed ("bk expire")
	 * before it is read, and then this upload can take its place.
	 */
	for (int tries = 1;; tries++)
	{
		if (!upload->repo->backend->upload_commit(upload, key, &created, err))
			return false;
		bk_strlcpy(upload->key, key, sizeof(upload->key));
		if (created)
			*result = BK_PUT_CREATED;
		else if (area == BK_REPO_CONFLICTS)
			*result = BK_PUT_EXISTS_IDENTICAL; /* this attempt, kept before */
		else if (key_identity(upload->repo, key, &existing, NULL,
							  &existing_err))
		{
			bool same =
				memcmp(existing.key_id, identity->key_id, BK_KEY_ID_LEN) == 0 &&
				memcmp(existing.fingerprint, identity->fingerprint,
					   BK_FINGERPRINT_LEN) == 0;

			/*
			 * The copy in place may be this very attempt, committed by a
			 * shipper that stopped before it reported it (killed between
			 * its commit and its audit event, which only then would have
			 * been acknowledged): its first report is still owed, so it is
			 * created, as the conflicts area says of its own copies.  A
			 * re-send (another attempt) is the duplicate.
			 */
			if (!same)
				*result = BK_PUT_EXISTS_DIFFERENT;
			else if (memcmp(existing.attempt_id, identity->attempt_id,
							BK_ATTEMPT_ID_LEN) == 0)
				*result = BK_PUT_CREATED;
			else
				*result = BK_PUT_EXISTS_IDENTICAL;
		}
		else if (existing_err.code == BK_ERR_FORMAT ||
				 existing_err.code == BK_ERR_SEQUENCE)
			*result = BK_PUT_EXISTS_DIFFERENT; /* read, and malformed */
		else if (existing_err.code == BK_ERR_NOT_FOUND && tries < 2)
			continue;
		else
		{
			/*
			 * Not read (I/O error, out of files, a timeout, removed again):
			 * no grounds for a conflict, which would block restoring this
			 * object until an operator steps in.  The caller retries.
			 */
			if (err != NULL)
				*err = existing_err;
			return bk_error_prefix(err,
								   "could not read the copy already archived "
								   "as \"%s\" to compare: ",
								   key);
		}
		return true;
	}
}

const char *
bk_repo_upload_key(const BkRepoUpload *upload)
{
	return upload->key;
}

void
bk_repo_upload_free(BkRepoUpload *upload)
{
	if (upload != NULL)
		upload->repo->backend->upload_free(upload);
}

bool
bk_repo_put_record(BkRepo *repo, BkRepoArea area, const char *source, int kind,
				   const char *name, const void *data, size_t len, BkError *err)
{
	char key[BK_REPO_KEY_MAX];

	/* A replacing write would break put-if-absent's guarantees there. */
	if (area != BK_REPO_EXPIRED)
		return bk_error_set(err, BK_ERR_USAGE,
							"records are written to the expired area only");
	return object_key(area, source, kind, name, key, sizeof(key), err) &&
		   repo->backend->put_small(repo, key, data, len, err);
}

/* Where a rejected message's bytes, and why, are kept. */
static bool
rejected_keys(const char *topic, int32_t partition, int64_t offset,
			  char key[BK_REPO_KEY_MAX], char reason_key[BK_REPO_KEY_MAX + 16],
			  BkError *err)
{
	return key_printf(key, BK_REPO_KEY_MAX, err,
					  BK_REPO_REJECTED_PREFIX "%s.%" PRId32 ".%" PRId64, topic,
					  partition, offset) &&
		   key_printf(reason_key, BK_REPO_KEY_MAX + 16, err, "%s.reason", key);
}

bool
bk_repo_quarantine(BkRepo *repo, const char *topic, int32_t partition,
				   int64_t offset, const void *data, size_t len,
				   const char *reason, BkError *err)
{
	char key[BK_REPO_KEY_MAX];
	char reason_key[BK_REPO_KEY_MAX + 16];
	char text[BK_ERROR_MESSAGE_MAX + 64];

	if (!rejected_keys(topic, partition, offset, key, reason_key, err))
		return false;
	snprintf(text, sizeof(text), "%s\n", reason);
	return repo->backend->put_small(repo, key, data, len, err) &&
		   repo->backend->put_small(repo, reason_key, text, strlen(text), err);
}

bool
bk_repo_upload_quarantine(BkRepoUpload *upload, const char *topic,
						  int32_t partition, int64_t offset, const char *reason,
						  BkError *err)
{
	char key[BK_REPO_KEY_MAX];
	char reason_key[BK_REPO_KEY_MAX + 16];
	char text[BK_ERROR_MESSAGE_MAX + 64];
	bool created; /* either: kept before this restart, or now */

	if (!rejected_keys(topic, partition, offset, key, reason_key, err))
		return false;
	snprintf(text, sizeof(text), "%s\n", reason);
	if (!upload->repo->backend->upload_commit(upload, key, &created, err))
		return false;
	bk_strlcpy(upload->key, key, sizeof(upload->key));
	return upload->repo->backend->put_small(upload->repo, reason_key, text,
											strlen(text), err);
}

typedef struct RejectedCount
{
	uint64_t count;
	int64_t oldest_ms;
} RejectedCount;

static bool
count_rejected(void *arg, const BkRepoEntry *entry, BkError *err)
{
	RejectedCount *rejected = arg;
	size_t len = strlen(entry->name);

	/* Each message is kept with a ".reason" object beside it. */
	if (entry->is_prefix ||
		(len > 7 && strcmp(entry->name + len - 7, ".reason") == 0))
		return true;
	rejected->count++;
	if (rejected->oldest_ms == 0 || entry->stored_ms < rejected->oldest_ms)
		rejected->oldest_ms = entry->stored_ms;
	return true;
}

bool
bk_repo_rejected_summary(const BkRepo *repo, uint64_t *count,
						 int64_t *oldest_ms, BkError *err)
{
	RejectedCount rejected = {0};

	if (!repo->backend->list(repo, BK_REPO_REJECTED_PREFIX, false,
							 count_rejected, &rejected, err))
		return false;
	*count = rejected.count;
	*oldest_ms = rejected.oldest_ms;
	return true;
}

/* ------------------------------------------------------------ deleting */

bool
bk_repo_delete(BkRepo *repo, BkRepoArea area, const char *source, int kind,
			   const char *name, BkError *err)
{
	char key[BK_REPO_KEY_MAX];

	return object_key(area, source, kind, name, key, sizeof(key), err) &&
		   repo->backend->delete (repo, key, err);
}

bool
bk_repo_delete_prefix(BkRepo *repo, BkRepoArea area, const char *source,
					  int kind, const char *prefix, BkError *err)
{
	char key[BK_REPO_KEY_MAX];
	size_t len = strlen(prefix);

	if (len < 2 || prefix[len - 1] != '/' ||
		!bk_object_name_valid(prefix, len - 1))
		return bk_error_set(err, BK_ERR_USAGE,
							"invalid prefix \"%s\" to delete", prefix);
	return kind_prefix(area, source, kind, key, sizeof(key), err) &&
		   key_printf(key + strlen(key), sizeof(key) - strlen(key), err, "%s",
					  prefix) &&
		   repo->backend->delete_prefix(repo, key, err);
}

bool
bk_repo_clean_uploads(BkRepo *repo, uint64_t *removed, BkError *err)
{
	*removed = 0;
	return repo->backend->clean_uploads(repo, removed, err);
}
