/*
 * repo.c
 *		The local-directory repository.  See repo.h for the layout and the
 *		commit protocol.
 */
#include "repo.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
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
	repo->spool[0] = '\0';
	repo->spool_lock_fd = -1;
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

/*
 * bk_repo_spool_open
 *		This shipper's own spool, .spool/<shipper id>/, locked for as long as
 *		the shipper runs (the lock file's descriptor stays open), and emptied
 *		of what an earlier run of the same shipper left.  Another shipper's
 *		spool is never touched: several shippers share a repository.
 */
bool
bk_repo_spool_open(BkRepo *repo, const char *shipper_id, BkError *err)
{
	char lock_path[BK_REPO_PATH_MAX + 16];
	DIR *dir;
	struct dirent *entry;

	if (!bk_shipper_id_valid(shipper_id))
	{
		bk_error_set(err, BK_ERR_CONFIG, "invalid shipper_id \"%s\"",
					 shipper_id);
		return bk_error_hint(err, "Use 1 to 64 letters, digits, '.', '_' or "
								  "'-'.");
	}
	if (!repo_path(repo, repo->spool, sizeof(repo->spool), err, "%s/%s",
				   SPOOL_DIR, shipper_id) ||
		!bk_repo_mkdirs(repo->spool, err))
		return false;
	snprintf(lock_path, sizeof(lock_path), "%s/.lock", repo->spool);
	repo->spool_lock_fd =
		open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (repo->spool_lock_fd < 0)
		return bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s",
							lock_path, strerror(errno));
	if (flock(repo->spool_lock_fd, LOCK_EX | LOCK_NB) != 0)
	{
		close(repo->spool_lock_fd);
		repo->spool_lock_fd = -1;
		bk_error_set(err, BK_ERR_CONFIG,
					 "another bk-shipper with shipper_id \"%s\" is running "
					 "on repository %s (it holds %s)",
					 shipper_id, repo->root, lock_path);
		return bk_error_hint(err, "Give every shipper its own shipper_id; "
								  "shippers of one group share the work "
								  "and the repository.");
	}
	dir = opendir(repo->spool);
	if (dir == NULL)
		return bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s",
							repo->spool, strerror(errno));
	while ((entry = readdir(dir)) != NULL)
	{
		char path[BK_REPO_PATH_MAX + 256];

		if (entry->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", repo->spool, entry->d_name);
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
bk_repo_spool_close(BkRepo *repo)
{
	if (repo->spool_lock_fd >= 0)
		close(repo->spool_lock_fd);
	repo->spool_lock_fd = -1;
}

void
bk_repo_spool_path(const BkRepo *repo, const char *tag, char *out,
				   size_t out_len)
{
	snprintf(out, out_len, "%s/%s", repo->spool, tag);
}

uint64_t
bk_repo_conflict_count(const BkRepo *repo, const char *source, int kind)
{
	char path[BK_REPO_PATH_MAX];
	DIR *dir;
	struct dirent *entry;
	uint64_t count = 0;
	BkError err;

	if (!repo_path(repo, path, sizeof(path), &err, "%s/%s/%s", source,
				   CONFLICTS_DIR, bk_kind_name(kind)))
		return 0;
	dir = opendir(path);
	if (dir == NULL)
		return 0;
	while ((entry = readdir(dir)) != NULL)
		if (entry->d_name[0] != '.')
			count++;
	closedir(dir);
	return count;
}

bool
bk_repo_rejected_summary(const BkRepo *repo, uint64_t *count,
						 int64_t *oldest_ms, BkError *err)
{
	char path[BK_REPO_PATH_MAX];
	DIR *dir;
	struct dirent *entry;

	*count = 0;
	*oldest_ms = 0;
	if (!repo_path(repo, path, sizeof(path), err, "%s", REJECTED_DIR))
		return false;
	dir = opendir(path);
	if (dir == NULL)
	{
		if (errno == ENOENT)
			return true;
		return bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s", path,
							strerror(errno));
	}
	while ((entry = readdir(dir)) != NULL)
	{
		char file[BK_REPO_PATH_MAX + 256];
		struct stat st;
		size_t len = strlen(entry->d_name);
		int64_t ms;

		/* Each message is kept with a ".reason" file beside it. */
		if (entry->d_name[0] == '.' ||
			(len > 7 && strcmp(entry->d_name + len - 7, ".reason") == 0))
			continue;
		snprintf(file, sizeof(file), "%s/%s", path, entry->d_name);
		if (stat(file, &st) != 0)
			continue;
		(*count)++;
		ms = (int64_t) st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
		if (*oldest_ms == 0 || ms < *oldest_ms)
			*oldest_ms = ms;
	}
	closedir(dir);
	return true;
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

/* The frames said they are object (source, kind, name), not another one. */
static bool
decoded_object_is(const BkObjectTracker *object, const char *object_path,
				  const char *source, int kind, const char *name, BkError *err)
{
	if (strcmp(object->source, source) == 0 &&
		strcmp(object->name, name) == 0 && object->kind == kind)
		return true;
	return bk_error_set(err, BK_ERR_FORMAT,
						"\"%s\" holds %s object \"%s\" of source \"%s\", not "
						"%s object \"%s\" of source \"%s\"",
						object_path, bk_kind_name(object->kind), object->name,
						object->source, bk_kind_name(kind), name, source);
}

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
	if (!decoded_object_is(object, object_path, source, kind, name, err))
		goto failed;
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

typedef struct MemoryVisit
{
	BkDecoder *decoder;
	uint8_t *data;
	size_t len;
	size_t max_len;
	const char *path;
} MemoryVisit;

static bool
decrypt_frame_to_memory(void *arg, const uint8_t *frame, size_t len,
						BkError *err)
{
	MemoryVisit *visit = arg;
	const uint8_t *plain;
	size_t plain_len;
	uint8_t *grown;

	if (!bk_decoder_push(visit->decoder, frame, len, &plain, &plain_len, err))
		return false;
	if (visit->len + plain_len > visit->max_len)
		return bk_error_set(err, BK_ERR_FORMAT,
							"\"%s\" holds more than %zu bytes", visit->path,
							visit->max_len);
	grown = realloc(visit->data, visit->len + plain_len + 1);
	if (grown == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	visit->data = grown;
	memcpy(visit->data + visit->len, plain, plain_len);
	visit->len += plain_len;
	visit->data[visit->len] = '\0';
	return true;
}

bool
bk_repo_decrypt_to_memory(const char *object_path, BkDecoder *decoder,
						  const char *source, int kind, const char *name,
						  size_t max_len, uint8_t **data, size_t *len,
						  BkError *err)
{
	MemoryVisit visit = {
		.decoder = decoder, .max_len = max_len, .path = object_path};
	const BkObjectTracker *object;

	bk_decoder_reset(decoder);
	if (!bk_repo_read_frames(object_path, false, decrypt_frame_to_memory,
							 &visit, err) ||
		!bk_decoder_finish(decoder, err))
		goto failed;
	object = bk_decoder_object(decoder);
	if (!decoded_object_is(object, object_path, source, kind, name, err))
		goto failed;
	if (visit.data == NULL && (visit.data = calloc(1, 1)) == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	*data = visit.data;
	*len = visit.len;
	return true;

failed:
	free(visit.data);
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
