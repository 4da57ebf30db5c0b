/*
 * repo_local.c
 *		The directory backend: a repository on a local (or mounted) file
 *		system.  A key is a path below the root.
 *
 * Durability is the file system's, done right: an upload is a file in the
 * shipper's own spool (.spool/<shipper id>/), written as chunks arrive and
 * fsynced when complete; committing it is link(2) into place, which never
 * replaces an existing file (EEXIST is how put-if-absent learns the name is
 * taken), then an fsync of the directory, and, the first time this process
 * commits into it, of each directory above it up to the root, whoever made
 * them (make_dirs_durable).  A crash before the link leaves nothing
 * visible, a crash after it a complete object.  The spool must be on the
 * same file system as the objects, which is why it lives inside the
 * repository.
 *
 * Each shipper's spool holds a lock file for as long as the shipper runs
 * (flock, released by the kernel when the process dies), so a shipper only
 * ever empties its own spool, and housekeeping empties only spools whose
 * lock it can take.
 *
 * Files are created 0644 and directories 0755 whatever the umask: they hold
 * ciphertext only, and restores run as another user (postgres) than the
 * shipper.  The commit time of an object (stat's stored_ms) is its file's
 * modification time, which is the time its last chunk was written: bk never
 * sets it.
 */
#include "repo_backend.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bk_util.h"

#define SPOOL_DIR          ".spool"
#define LOCK_NAME          ".lock"
#define SPOOL_LOCK_TRIES   20
#define SPOOL_LOCK_WAIT_US 100000
/*
 * Where housekeeping moves a stopped shipper's spool before emptying it,
 * and how old such a directory must be (not touched for that long) before
 * another housekeeping takes over one its cleaner left behind.
 */
#define SPOOL_TRASH_PREFIX ".trash-"
#define SPOOL_TRASH_AGE_S  600
#define LOCAL_PATH         4096
#define DIRECT_ALIGN       4096
#define DIRECT_BUFFER      (1024 * 1024)

/*
 * A directory whose name, and every name above it up to the root, this
 * process has made durable (fsynced the parent of) since it found or made
 * it; identified by inode too, so that one removed and made again by
 * another process is not taken for it.  pending: by the open batch, so
 * durable only once it ends.
 */
typedef struct DurableDir
{
	char *path;
	dev_t dev;
	ino_t ino;
	bool pending;
} DurableDir;

/*
 * How many such directories are remembered.  A shipper meets a few per
 * source and one per snapshot; past this many, those done with are
 * forgotten all at once (the next commit into one syncs its parents again).
 */
#define DURABLE_DIRS_MAX 4096

typedef struct LocalState
{
	char root[LOCAL_PATH];
	char spool[LOCAL_PATH];      /* this shipper's spool, once opened */
	int spool_lock_fd;           /* held while the repository is open; -1 */
	bool direct_refused;         /* the spool's file system refused O_DIRECT */
	char *direct_buffer;         /* DIRECT_BUFFER bytes, aligned; or NULL */
	pthread_mutex_t direct_lock; /* over direct_buffer */
	bool batch_open;             /* commits defer their directory sync */
	char **batch_dirs;           /* directories to sync at the batch's end */
	size_t batch_dir_count;
	size_t batch_dir_cap;
	DurableDir *durable_dirs; /* see DurableDir */
	size_t durable_dir_count;
	size_t durable_dir_cap;
} LocalState;

typedef struct LocalReader
{
	BkRepoReader base;
	int fd;
	uint64_t advised_end; /* read ahead asked up to here (reader_advise) */
} LocalReader;

/*
 * How far ahead of its reads a reader asks the kernel to read.  Objects are
 * read frame by frame (1 MiB by default), and each frame is decoded before
 * the next is read; the device's own read-ahead (often 128 KiB) makes most
 * of every read wait for the disk.  Asking for the next window while the
 * current one is decoded overlaps the two: a restore from a repository no
 * longer in the page cache reads at the speed of the disk or of decoding,
 * not of both in turn.
 */
#define READ_AHEAD_WINDOW ((uint64_t) 8 * 1024 * 1024)

/*
 * Its spool file (base.where) is open only while a chunk is written
 * (repo_backend.h).
 */
typedef struct LocalUpload
{
	BkRepoUpload base;
	bool spooled;     /* the spool file exists */
	bool sealed;      /* all written, tail included: no more writes */
	bool finished;    /* sealed and fsynced */
	bool direct;      /* written with O_DIRECT: on disk up to flushed */
	uint64_t flushed; /* bytes on disk, a multiple of DIRECT_ALIGN */
	size_t tail_len;  /* bytes after flushed, held in tail */
	char tail[DIRECT_ALIGN];
} LocalUpload;

static const LocalState *
state_of(const BkRepo *repo)
{
	return repo->state;
}

static int64_t
mtime_ms(const struct stat *st)
{
	return (int64_t) st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
}

/* root/key; false if too long. */
static bool
key_path(const BkRepo *repo, const char *key, char *out, size_t out_len,
		 BkError *err)
{
	if ((size_t) snprintf(out, out_len, "%s/%s", state_of(repo)->root, key) >=
		out_len)
		return bk_error_set(err, BK_ERR_USAGE,
							"repository path too long: \"%s/%s\"",
							state_of(repo)->root, key);
	return true;
}

/* The umask must not make the repository unreadable for restores. */
static bool
make_dirs(const char *path, BkError *err)
{
	return bk_mkdirs(path, 0755, true, err);
}

static bool
local_open(BkRepo *repo, const char *location, bool create, BkError *err)
{
	LocalState *state = calloc(1, sizeof(*state));
	size_t root_len = strlen(location);
	char sub[LOCAL_PATH];
	struct stat root_st;
	bool root_not_dir = false;
	bool path_through_file = false;

	if (state == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	state->spool_lock_fd = -1;
	pthread_mutex_init(&state->direct_lock, NULL);
	repo->state = state;
	while (root_len > 1 && location[root_len - 1] == '/')
		root_len--;
	if (root_len >= sizeof(state->root) - 256)
		return bk_error_set(err, BK_ERR_CONFIG, "repository path too long");
	memcpy(state->root, location, root_len);
	state->root[root_len] = '\0';
	/*
	 * A file where the directory belongs is the configuration's mistake,
	 * not a store that fails: as an I/O error it would exit 5, which
	 * scripts retry and systemd restarts the shipper for, forever.
	 */
	if (stat(state->root, &root_st) == 0)
		root_not_dir = !S_ISDIR(root_st.st_mode);
	else
		path_through_file = errno == ENOTDIR;
	if (root_not_dir || path_through_file)
		return bk_error_set(
			err, BK_ERR_CONFIG,
			"repository \"%s\" is not a directory%s: it must be a directory, "
			"or s3://BUCKET/PREFIX for an S3-compatible store",
			state->root,
			path_through_file ? " (a part of its path is a file)" : "");
	if (create &&
		(!make_dirs(state->root, err) ||
		 !key_path(repo, SPOOL_DIR, sub, sizeof(sub), err) ||
		 !make_dirs(sub, err) ||
		 !key_path(repo, BK_REPO_REJECTED_NAME, sub, sizeof(sub), err) ||
		 !make_dirs(sub, err)))
		return false;
	return true;
}

static void
local_close(BkRepo *repo)
{
	LocalState *state = repo->state;

	if (state == NULL)
		return;
	if (state->spool_lock_fd >= 0)
		close(state->spool_lock_fd);
	pthread_mutex_destroy(&state->direct_lock);
	free(state->direct_buffer);
	for (size_t dirIdx = 0; dirIdx < state->batch_dir_count; dirIdx++)
		free(state->batch_dirs[dirIdx]);
	free(state->batch_dirs);
	for (size_t dirIdx = 0; dirIdx < state->durable_dir_count; dirIdx++)
		free(state->durable_dirs[dirIdx].path);
	free(state->durable_dirs);
	free(state);
	repo->state = NULL;
}

static void
local_describe(const BkRepo *repo, const char *key, char *out, size_t out_len)
{
	snprintf(out, out_len, "%s/%s", state_of(repo)->root, key);
}

/* ------------------------------------------------------------ listing */

static bool
list_dir(const char *dir_path, const char *rel, bool recursive, BkRepoListFn fn,
		 void *arg, BkError *err)
{
	DIR *dir = opendir(dir_path);
	struct dirent *entry;
	bool ok = true;

	if (dir == NULL)
	{
		if (errno == ENOENT)
			return true; /* nothing stored there */
		return bk_error_set(err, BK_ERR_STORE, "could not open \"%s\": %s",
							dir_path, strerror(errno));
	}
	/* A listing that skipped what it could not read would look complete. */
	while (ok)
	{
		char path[LOCAL_PATH];
		char name[LOCAL_PATH];
		struct stat st;
		BkRepoEntry item = {.name = name};

		errno = 0;
		if ((entry = readdir(dir)) == NULL)
		{
			if (errno != 0)
				ok =
					bk_error_set(err, BK_ERR_STORE, "could not read \"%s\": %s",
								 dir_path, strerror(errno));
			break;
		}
		/* Dot names are the backend's own (spools, temporary files). */
		if (entry->d_name[0] == '.')
			continue;
		if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir_path,
							  entry->d_name) >= sizeof(path) ||
			(size_t) snprintf(name, sizeof(name), "%s%s", rel, entry->d_name) >=
				sizeof(name))
		{
			ok = bk_error_set(err, BK_ERR_IO, "path too long: \"%s/%s\"",
							  dir_path, entry->d_name);
			break;
		}
		if (lstat(path, &st) != 0)
		{
			if (errno == ENOENT)
				continue; /* removed meanwhile */
			ok = bk_error_set(err, BK_ERR_STORE, "could not stat \"%s\": %s",
							  path, strerror(errno));
			break;
		}
		/*
		 * A symbolic link is followed, as reading an object follows it: a
		 * directory moved elsewhere with a link left in its place stays
		 * listed.  Skipped, its objects would read as absent, and bk
		 * wal-get would take the segment before them for the end of the
		 * archive.  A loop of links ends in ELOOP, an error here.
		 */
		if (S_ISLNK(st.st_mode) && stat(path, &st) != 0)
		{
			ok = bk_error_set(err, BK_ERR_STORE,
							  "could not follow the symbolic link \"%s\": %s",
							  path, strerror(errno));
			bk_error_hint(err, "Make the link point at the directory or "
							   "file it stands for, or remove it.");
			break;
		}
		if (S_ISDIR(st.st_mode))
		{
			if (recursive)
			{
				char sub_rel[LOCAL_PATH];

				snprintf(sub_rel, sizeof(sub_rel), "%s/", name);
				ok = list_dir(path, sub_rel, true, fn, arg, err);
				continue;
			}
			item.is_prefix = true;
		}
		else if (S_ISREG(st.st_mode))
		{
			item.size = (uint64_t) st.st_size;
			item.stored_ms = mtime_ms(&st);
		}
		else
			continue;
		ok = fn(arg, &item, err);
	}
	closedir(dir);
	return ok;
}

static bool
local_list(const BkRepo *repo, const char *prefix, bool recursive,
		   BkRepoListFn fn, void *arg, BkError *err)
{
	char path[LOCAL_PATH];

	return key_path(repo, prefix, path, sizeof(path), err) &&
		   list_dir(path, "", recursive, fn, arg, err);
}

/* ------------------------------------------------------------ reading */

static bool
local_stat(const BkRepo *repo, const char *key, BkRepoStat *stat_out,
		   BkError *err)
{
	char path[LOCAL_PATH];
	struct stat st;

	memset(stat_out, 0, sizeof(*stat_out));
	if (!key_path(repo, key, path, sizeof(path), err))
		return false;
	if (stat(path, &st) != 0)
	{
		if (errno == ENOENT || errno == ENOTDIR)
			return true;
		return bk_error_set(err, BK_ERR_STORE, "could not stat \"%s\": %s",
							path, strerror(errno));
	}
	/*
	 * Something else where an object belongs (a directory made by hand)
	 * is not its absence: bk wal-get would take the newest segment's for
	 * the end of the archive, and recovery would stop short of it.
	 */
	if (!S_ISREG(st.st_mode))
	{
		bk_error_set(err, BK_ERR_FORMAT,
					 "\"%s\" is not a file (mode %06o): the repository "
					 "holds something else where an object belongs",
					 path, (unsigned int) st.st_mode);
		return bk_error_hint(err, "Move it out of the repository, and put "
								  "the object back if you have it.");
	}
	stat_out->exists = true;
	stat_out->size = (uint64_t) st.st_size;
	stat_out->stored_ms = mtime_ms(&st);
	return true;
}

/*
 * Keep read-ahead in front of a read of len bytes at offset: asked up to a
 * window past its end whenever less than half of that is left, the window
 * being READ_AHEAD_WINDOW or the read's length if larger.  Measured from
 * the read, not from what was asked before: a frame may be larger than
 * READ_AHEAD_WINDOW (chunk_size up to 16 MiB), and a window moved on by its
 * own length then only ever covered the frame being read, never the next
 * one while this one is decoded.  Only advice: a kernel or file system
 * that ignores it costs nothing but time.
 */
static void
reader_advise(LocalReader *reader, uint64_t offset, size_t len)
{
	uint64_t read_end = offset + len;
	uint64_t window = len > READ_AHEAD_WINDOW ? len : READ_AHEAD_WINDOW;
	uint64_t want_end = read_end + window;

	if (want_end > reader->base.size)
		want_end = reader->base.size;
	if (reader->advised_end >= want_end ||
		reader->advised_end > read_end + window / 2)
		return;
	(void) posix_fadvise(reader->fd, (off_t) reader->advised_end,
						 (off_t) (want_end - reader->advised_end),
						 POSIX_FADV_WILLNEED);
	reader->advised_end = want_end;
}

static BkRepoReader *
local_reader_open(const BkRepo *repo, const char *key, BkError *err)
{
	LocalReader *reader = calloc(1, sizeof(*reader));
	struct stat st;

	if (reader == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	reader->base.repo = repo;
	if (!key_path(repo, key, reader->base.where, sizeof(reader->base.where),
				  err))
		goto fail;
	reader->fd = open(reader->base.where, O_RDONLY | O_CLOEXEC);
	if (reader->fd < 0)
	{
		bk_error_set(err, errno == ENOENT ? BK_ERR_NOT_FOUND : BK_ERR_STORE,
					 "could not open \"%s\": %s", reader->base.where,
					 strerror(errno));
		goto fail;
	}
	if (fstat(reader->fd, &st) != 0)
	{
		bk_error_set(err, BK_ERR_STORE, "could not stat \"%s\": %s",
					 reader->base.where, strerror(errno));
		close(reader->fd);
		goto fail;
	}
	reader->base.size = (uint64_t) st.st_size;
	return &reader->base;

fail:
	free(reader);
	return NULL;
}

static bool
local_reader_read(BkRepoReader *base, uint64_t offset, void *buf, size_t len,
				  BkError *err)
{
	LocalReader *reader = (LocalReader *) base;
	size_t done = 0;

	if (base->in_order)
		reader_advise(reader, offset, len);
	while (done < len)
	{
		ssize_t got = pread(reader->fd, (uint8_t *) buf + done, len - done,
							(off_t) (offset + done));

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return bk_error_set(
				err, BK_ERR_STORE, "could not read \"%s\": %s", base->where,
				got < 0 ? strerror(errno) : "unexpected end of file");
		done += (size_t) got;
	}
	return true;
}

static void
local_reader_close(BkRepoReader *base)
{
	LocalReader *reader = (LocalReader *) base;

	close(reader->fd);
	free(reader);
}

/* ------------------------------------------------------------ writing */

static bool make_dirs_durable(LocalState *state, const char *dir, bool in_batch,
							  BkError *err);

static bool
local_put_small(BkRepo *repo, const char *key, const void *data, size_t len,
				BkError *err)
{
	char path[LOCAL_PATH];
	char dir[LOCAL_PATH];

	if (!key_path(repo, key, path, sizeof(path), err))
		return false;
	bk_dir_of(path, dir, sizeof(dir));
	return make_dirs_durable(repo->state, dir, false, err) &&
		   bk_write_file_durable(path, data, len, 0644, err);
}

/* Remove the files of a spool directory (not its lock). */
static bool
empty_spool(const char *spool, uint64_t *removed, BkError *err)
{
	DIR *dir = opendir(spool);
	struct dirent *entry;

	if (dir == NULL)
		return bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s", spool,
							strerror(errno));
	while ((entry = readdir(dir)) != NULL)
	{
		char path[LOCAL_PATH + 256];

		if (entry->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", spool, entry->d_name);
		if (unlink(path) != 0 && errno != ENOENT)
		{
			closedir(dir);
			return bk_error_set(err, BK_ERR_IO, "could not remove \"%s\": %s",
								path, strerror(errno));
		}
		if (removed != NULL)
			(*removed)++;
	}
	closedir(dir);
	return true;
}

/*
 * Open (creating) and try to lock a spool's lock file; -1 if held, -3 if
 * the spool was moved away meanwhile (housekeeping took it, see
 * local_clean_uploads: the lock then held is not this spool's).
 */
static int
lock_spool(const char *spool, BkError *err)
{
	char lock_path[LOCAL_PATH + 16];
	struct stat locked;
	struct stat named;
	int fd;

	snprintf(lock_path, sizeof(lock_path), "%s/" LOCK_NAME, spool);
	fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 && errno == ENOENT)
		return -3;
	if (fd < 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s", lock_path,
					 strerror(errno));
		return -2;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0)
	{
		close(fd);
		return -1;
	}
	if (fstat(fd, &locked) != 0 || lstat(lock_path, &named) != 0 ||
		locked.st_dev != named.st_dev || locked.st_ino != named.st_ino)
	{
		close(fd);
		return -3;
	}
	return fd;
}

static bool
local_spool_open(BkRepo *repo, const char *shipper_id, BkError *err)
{
	LocalState *state = repo->state;
	char key[LOCAL_PATH];

	snprintf(key, sizeof(key), SPOOL_DIR "/%s", shipper_id);
	if (!key_path(repo, key, state->spool, sizeof(state->spool), err))
		return false;
	/*
	 * Housekeeping by another shipper holds the lock for as long as it
	 * takes to move the spool aside (one rename); a shipper with the same
	 * id holds it for good.  So a few tries before calling it a duplicate,
	 * and the spool made again when housekeeping moved it.
	 */
	for (int attempt = 0; attempt < SPOOL_LOCK_TRIES; attempt++)
	{
		if (!make_dirs(state->spool, err))
			return false;
		state->spool_lock_fd = lock_spool(state->spool, err);
		if (state->spool_lock_fd >= 0 || state->spool_lock_fd == -2)
			break;
		if (state->spool_lock_fd == -1)
			usleep(SPOOL_LOCK_WAIT_US);
	}
	if (state->spool_lock_fd == -2)
		return false;
	if (state->spool_lock_fd < 0)
	{
		bk_error_set(err, BK_ERR_CONFIG,
					 "another bk-shipper with shipper_id \"%s\" is running "
					 "on repository %s (it holds %s/" LOCK_NAME ")",
					 shipper_id, state->root, state->spool);
		return bk_error_hint(err, "Give every shipper its own shipper_id; "
								  "shippers of one group share the work "
								  "and the repository.");
	}
	return empty_spool(state->spool, NULL, err);
}

static BkRepoUpload *
local_upload_begin(BkRepo *repo, const char *tag, BkError *err)
{
	const LocalState *state = repo->state;
	LocalUpload *upload;

	if (state->spool_lock_fd < 0)
	{
		bk_error_set(err, BK_ERR_INTERNAL, "no spool opened for uploads");
		return NULL;
	}
	upload = calloc(1, sizeof(*upload));
	if (upload == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	upload->base.repo = repo;
	/* Its spool file's path is also what messages name. */
	snprintf(upload->base.where, sizeof(upload->base.where), "%s/%s",
			 state->spool, tag);
	if (!bk_spool_create(upload->base.where, 0644, err))
	{
		free(upload);
		return NULL;
	}
	upload->spooled = true;
	upload->direct = !state->direct_refused;
	return &upload->base;
}

/*
 * The upload's spool file opened for O_DIRECT writes; -1 with *refused set
 * when the file system does not take O_DIRECT (errno EINVAL), -1 with err
 * set on any other failure.
 */
static int
open_direct(LocalUpload *upload, bool *refused, BkError *err)
{
	int fd =
		open(upload->base.where, O_WRONLY | O_DIRECT | O_CLOEXEC | O_NOFOLLOW);

	*refused = fd < 0 && errno == EINVAL;
	if (fd < 0 && !*refused)
		bk_error_set(err, BK_ERR_IO, "could not open spool file \"%s\": %s",
					 upload->base.where, strerror(errno));
	return fd;
}

/*
 * The repository's aligned buffer, allocated on first use; under
 * direct_lock.  Only a repository that stores objects ever needs it.
 */
static bool
direct_buffer_ready(LocalState *state, BkError *err)
{
	if (state->direct_buffer != NULL)
		return true;
	if (posix_memalign((void **) &state->direct_buffer, DIRECT_ALIGN,
					   DIRECT_BUFFER) == 0)
		return true;
	state->direct_buffer = NULL;
	return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
}

/* pwrite(2) of whole aligned blocks; errno is pwrite's when false. */
static bool
pwrite_direct(int fd, const char *buf, size_t len, uint64_t offset)
{
	while (len > 0)
	{
		ssize_t written = pwrite(fd, buf, len, (off_t) offset);

		if (written < 0 && errno == EINTR)
			continue;
		if (written <= 0)
		{
			if (written == 0)
				errno = EIO;
			return false;
		}
		/* A short O_DIRECT write ends on a block: the rest stays aligned. */
		if (written % DIRECT_ALIGN != 0)
		{
			errno = EIO;
			return false;
		}
		buf += written;
		len -= (size_t) written;
		offset += (uint64_t) written;
	}
	return true;
}

/*
 * The file system refused O_DIRECT: this upload, and every later one of
 * the repository, goes on with buffered appends, starting with the bytes
 * still held in the tail (everything before them is on disk).
 *
 * The file is first cut to those flushed bytes: a refused write may have
 * put whole blocks past them (a short write, then EINVAL), a failed finish
 * its padded block, an earlier try of this part of the tail.  The upload
 * stays direct until the tail is on: a retried write or finish comes back
 * here and appends it again, rather than go on without it.
 */
static bool
fall_back_to_buffered(LocalUpload *upload, BkError *err)
{
	LocalState *state = upload->base.repo->state;
	int fd;

	state->direct_refused = true;
	fd = open(upload->base.where, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || ftruncate(fd, (off_t) upload->flushed) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not write spool file \"%s\": %s",
					 upload->base.where, strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	close(fd);
	if (upload->tail_len > 0 &&
		!bk_spool_append(upload->base.where, upload->tail, upload->tail_len,
						 err))
		return false;
	upload->direct = false;
	upload->tail_len = 0;
	return true;
}

/*
 * Append data with O_DIRECT: the tail and the data go through the
 * repository's aligned buffer, whole blocks to disk, the rest back to the
 * tail.  Returns 1 when written, 0 on failure (err set), -1 when the file
 * system refused O_DIRECT before any of data was written.
 */
static int
write_direct(LocalUpload *upload, const char *data, size_t len, BkError *err)
{
	LocalState *state = upload->base.repo->state;
	bool refused;
	int result = 1;
	int fd = open_direct(upload, &refused, err);

	if (fd < 0)
		return refused ? -1 : 0;
	pthread_mutex_lock(&state->direct_lock);
	if (!direct_buffer_ready(state, err))
		result = 0;
	while (result == 1 && len > 0)
	{
		size_t fill = upload->tail_len;
		size_t take = len < DIRECT_BUFFER - fill ? len : DIRECT_BUFFER - fill;
		size_t whole;

		memcpy(state->direct_buffer, upload->tail, fill);
		memcpy(state->direct_buffer + fill, data, take);
		fill += take;
		whole = fill - fill % DIRECT_ALIGN;
		if (whole > 0 &&
			!pwrite_direct(fd, state->direct_buffer, whole, upload->flushed))
		{
			if (errno == EINVAL && upload->flushed == 0)
				result = -1;
			else
			{
				bk_error_set(err, BK_ERR_IO,
							 "could not write spool file \"%s\": %s",
							 upload->base.where, strerror(errno));
				result = 0;
			}
			break;
		}
		upload->flushed += whole;
		upload->tail_len = fill - whole;
		memcpy(upload->tail, state->direct_buffer + whole, upload->tail_len);
		data += take;
		len -= take;
	}
	pthread_mutex_unlock(&state->direct_lock);
	close(fd);
	/* On -1 nothing of data was taken: the caller appends all of it. */
	return result;
}

/*
 * Finish an O_DIRECT upload: its last, partial block written padded and
 * the file cut to the object's length; the caller fsyncs.  Returns 1 when
 * done, 0 on failure (err set), -1 when the file system refused O_DIRECT
 * before anything was written (the tail is still to be written).
 */
static int
finish_direct(LocalUpload *upload, int fd, BkError *err)
{
	LocalState *state = upload->base.repo->state;
	bool written;

	pthread_mutex_lock(&state->direct_lock);
	if (!direct_buffer_ready(state, err))
	{
		pthread_mutex_unlock(&state->direct_lock);
		return 0;
	}
	memcpy(state->direct_buffer, upload->tail, upload->tail_len);
	memset(state->direct_buffer + upload->tail_len, 0,
		   DIRECT_ALIGN - upload->tail_len);
	written =
		pwrite_direct(fd, state->direct_buffer, DIRECT_ALIGN, upload->flushed);
	pthread_mutex_unlock(&state->direct_lock);
	if (!written && errno == EINVAL && upload->flushed == 0)
		return -1;
	if (!written ||
		ftruncate(fd, (off_t) (upload->flushed + upload->tail_len)) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not write spool file \"%s\": %s",
					 upload->base.where, strerror(errno));
		return 0;
	}
	return 1;
}

static bool
local_upload_write(BkRepoUpload *base, const void *data, size_t len,
				   BkError *err)
{
	LocalUpload *upload = (LocalUpload *) base;

	if (upload->sealed)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"spool file \"%s\" is already finished",
							upload->base.where);
	if (upload->direct)
	{
		int written = write_direct(upload, data, len, err);

		if (written >= 0)
			return written == 1;
		if (!fall_back_to_buffered(upload, err))
			return false;
	}
	return bk_spool_append(upload->base.where, data, len, err);
}

/*
 * Everything written, the O_DIRECT tail included (its last block padded, the
 * file cut to length), but not fsynced: uploads sealed together and then
 * finished one after another make ext4 commit its journal once for all of
 * them, not once each.
 */
static bool
local_upload_seal(BkRepoUpload *base, BkError *err)
{
	LocalUpload *upload = (LocalUpload *) base;
	bool refused = false;

	/*
	 * Sealed already, and maybe committed: its spool file is then an object
	 * too, which a padded last block would corrupt.
	 */
	if (upload->sealed)
		return true;
	if (upload->direct && upload->tail_len > 0)
	{
		int fd = open_direct(upload, &refused, err);

		if (fd < 0 && !refused)
			return false;
		if (fd >= 0)
		{
			int finished = finish_direct(upload, fd, err);

			close(fd);
			if (finished == 0)
				return false;
			refused = finished == -1;
		}
	}
	if (refused && !fall_back_to_buffered(upload, err))
		return false;
	upload->sealed = true;
	return true;
}

static bool
local_upload_finish(BkRepoUpload *base, BkError *err)
{
	LocalUpload *upload = (LocalUpload *) base;
	int fd;

	if (upload->finished)
		return true;
	if (!local_upload_seal(base, err))
		return false;
	fd = open(upload->base.where, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not open spool file \"%s\": %s",
							upload->base.where, strerror(errno));
	if (fsync(fd) != 0)
	{
		int save_errno = errno;

		close(fd);
		return bk_error_set(err, BK_ERR_IO,
							"could not fsync spool file \"%s\": %s",
							upload->base.where, strerror(save_errno));
	}
	if (close(fd) != 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not write spool file \"%s\": %s",
							upload->base.where, strerror(errno));
	upload->finished = true;
	return true;
}

/*
 * Where a commit's directory is made durable: now, or, in a batch, once for
 * every commit into it when the batch ends (local_batch_end).
 */
static bool
sync_commit_dir(LocalState *state, const char *dir, BkError *err)
{
	char *copy;

	if (!state->batch_open)
		return bk_fsync_dir(dir, err);
	for (size_t dirIdx = 0; dirIdx < state->batch_dir_count; dirIdx++)
		if (strcmp(state->batch_dirs[dirIdx], dir) == 0)
			return true;
	if (state->batch_dir_count == state->batch_dir_cap)
	{
		size_t cap = state->batch_dir_cap ? state->batch_dir_cap * 2 : 16;
		char **dirs = realloc(state->batch_dirs, cap * sizeof(*dirs));

		if (dirs == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		state->batch_dirs = dirs;
		state->batch_dir_cap = cap;
	}
	copy = strdup(dir);
	if (copy == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	state->batch_dirs[state->batch_dir_count++] = copy;
	return true;
}

static DurableDir *
find_durable_dir(LocalState *state, const char *path, const struct stat *st)
{
	for (size_t dirIdx = 0; dirIdx < state->durable_dir_count; dirIdx++)
	{
		DurableDir *known = &state->durable_dirs[dirIdx];

		if (known->ino == st->st_ino && known->dev == st->st_dev &&
			strcmp(known->path, path) == 0)
			return known;
	}
	return NULL;
}

static bool
remember_durable_dir(LocalState *state, const char *path, const struct stat *st,
					 bool pending, BkError *err)
{
	DurableDir *known;

	if (state->durable_dir_count == DURABLE_DIRS_MAX)
	{
		size_t kept = 0;

		for (size_t dirIdx = 0; dirIdx < state->durable_dir_count; dirIdx++)
		{
			if (state->durable_dirs[dirIdx].pending)
				state->durable_dirs[kept++] = state->durable_dirs[dirIdx];
			else
				free(state->durable_dirs[dirIdx].path);
		}
		state->durable_dir_count = kept;
	}
	if (state->durable_dir_count == state->durable_dir_cap)
	{
		size_t cap = state->durable_dir_cap ? state->durable_dir_cap * 2 : 16;
		DurableDir *dirs = realloc(state->durable_dirs, cap * sizeof(*dirs));

		if (dirs == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		state->durable_dirs = dirs;
		state->durable_dir_cap = cap;
	}
	known = &state->durable_dirs[state->durable_dir_count];
	known->path = strdup(path);
	if (known->path == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	known->dev = st->st_dev;
	known->ino = st->st_ino;
	known->pending = pending;
	state->durable_dir_count++;
	return true;
}

/*
 * mkdir -p of dir below the root, and its name and the name of each
 * directory above it made durable, unless this process did so since it
 * found or made them; dir's own fsync, for what is committed into it, is
 * the caller's.  A directory found in place needs its parent synced as much
 * as one made: another shipper sharing the repository (or this one, before
 * a restart) may have made it and not synced its parent yet, or have been
 * killed right there, and a power loss would then take the directory with
 * every object committed into it since.  Remembering what was synced keeps
 * the steady state at one directory fsync per commit (or per batch), and a
 * stat.  in_batch: the fsyncs go into the open batch, if there is one.
 */
static bool
make_dirs_durable(LocalState *state, const char *dir, bool in_batch,
				  BkError *err)
{
	bool pending = in_batch && state->batch_open;
	size_t root_len = strlen(state->root);
	size_t dir_len = strlen(dir);
	size_t known_len = dir_len; /* dir[0, known_len): known durable */
	char path[LOCAL_PATH];

	if (dir_len <= root_len)
		return true;
	if (dir_len >= sizeof(path))
		return bk_error_set(err, BK_ERR_USAGE, "path too long: \"%s\"", dir);
	memcpy(path, dir, dir_len + 1);
	/* Up from dir, to the first directory known durable, or the root. */
	while (known_len > root_len)
	{
		struct stat st;
		DurableDir *known;

		path[known_len] = '\0';
		if (stat(path, &st) == 0)
		{
			known = find_durable_dir(state, path, &st);
			if (known != NULL && (pending || !known->pending))
				break;
		}
		else if (errno != ENOENT)
			return bk_error_set(err, BK_ERR_IO, "could not stat \"%s\": %s",
								path, strerror(errno));
		while (path[--known_len] != '/')
			;
	}
	/* Then down: each made if missing, its parent synced, remembered. */
	for (size_t parent_len = known_len; parent_len < dir_len;)
	{
		size_t len = parent_len + 1;
		bool made = false;
		DurableDir *known;
		struct stat st;

		while (len < dir_len && dir[len] != '/')
			len++;
		memcpy(path, dir, len);
		path[len] = '\0';
		if (mkdir(path, 0755) == 0)
			made = true;
		else if (errno != EEXIST)
			return bk_error_set(
				err, errno == ENAMETOOLONG ? BK_ERR_REFUSED : BK_ERR_IO,
				"could not create directory \"%s\": %s", path, strerror(errno));
		/* The umask must not make the repository unreadable for restores. */
		if (made && chmod(path, 0755) != 0)
			return bk_error_set(err, BK_ERR_IO,
								"could not set mode of \"%s\": %s", path,
								strerror(errno));
		if (stat(path, &st) != 0)
			return bk_error_set(err, BK_ERR_IO, "could not stat \"%s\": %s",
								path, strerror(errno));
		if (!S_ISDIR(st.st_mode))
			return bk_error_set(err, BK_ERR_IO,
								"\"%s\" exists and is not a directory", path);
		known = find_durable_dir(state, path, &st);
		path[parent_len] = '\0';
		if (pending ? !sync_commit_dir(state, path, err)
					: !bk_fsync_dir(path, err))
			return false;
		path[parent_len] = '/';
		if (known != NULL)
			known->pending = false; /* synced now, not at the batch's end */
		else if (!remember_durable_dir(state, path, &st, pending, err))
			return false;
		parent_len = len;
	}
	return true;
}

static void
local_batch_begin(BkRepo *repo)
{
	LocalState *state = repo->state;

	state->batch_open = true;
}

/*
 * Sync every directory the batch committed into, or whose names it makes
 * durable (make_dirs_durable), each once; then close it.  Those names are
 * known durable from then on, or, if it failed, not.
 */
static bool
local_batch_end(BkRepo *repo, BkError *err)
{
	LocalState *state = repo->state;
	size_t kept = 0;
	bool ok = true;

	for (size_t dirIdx = 0; dirIdx < state->batch_dir_count; dirIdx++)
	{
		if (ok && !bk_fsync_dir(state->batch_dirs[dirIdx], err))
			ok = false;
		free(state->batch_dirs[dirIdx]);
	}
	for (size_t dirIdx = 0; dirIdx < state->durable_dir_count; dirIdx++)
	{
		DurableDir *known = &state->durable_dirs[dirIdx];

		if (known->pending && !ok)
		{
			free(known->path);
			continue;
		}
		known->pending = false;
		state->durable_dirs[kept++] = *known;
	}
	state->durable_dir_count = kept;
	state->batch_dir_count = 0;
	state->batch_open = false;
	return ok;
}

/*
 * A copy found in place counts only once it is durable.  The shipper that
 * linked it may have crashed before fsyncing its directory (or inside
 * make_dirs_durable, before fsyncing a directory's parent), or another shipper
 * may not have got there yet; a power failure could then still take it,
 * after the caller has called this re-send a duplicate and committed the
 * Kafka offsets past it.  So its directory and every one above it, up to
 * the root, are fsynced; the file itself was fsynced before it was linked.
 * A directory gone meanwhile ("bk expire") took the copy with it: the
 * caller then finds it missing and commits again.
 */
static bool
fsync_up_to_root(const BkRepo *repo, const char *dir, BkError *err)
{
	const char *root = state_of(repo)->root;
	char path[LOCAL_PATH];
	char parent[LOCAL_PATH];

	bk_strlcpy(path, dir, sizeof(path));
	for (;;)
	{
		struct stat st;

		if (stat(path, &st) != 0 && errno == ENOENT)
			return true;
		if (!bk_fsync_dir(path, err))
			return false;
		if (strlen(path) <= strlen(root))
			return true;
		bk_dir_of(path, parent, sizeof(parent));
		bk_strlcpy(path, parent, sizeof(path));
	}
}

static bool
local_upload_commit(BkRepoUpload *base, const char *key, bool *created,
					BkError *err)
{
	LocalUpload *upload = (LocalUpload *) base;
	char final[LOCAL_PATH];
	char dir[LOCAL_PATH];

	if (!upload->finished)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"spool file \"%s\" committed before it was "
							"finished",
							upload->base.where);
	if (!key_path(base->repo, key, final, sizeof(final), err))
		return false;
	bk_dir_of(final, dir, sizeof(dir));
	if (!make_dirs_durable(base->repo->state, dir, true, err))
		return false;
	/* link(2) never replaces an existing object: it fails with EEXIST. */
	if (link(upload->base.where, final) != 0)
	{
		/*
		 * The copy in place may be one whose name is not durable yet (another
		 * shipper's commit, between its link and its directory sync): sync
		 * the directory before reporting this one a duplicate.
		 */
		if (errno == EEXIST)
		{
			*created = false;
			return fsync_up_to_root(base->repo, dir, err);
		}
		/* A component longer than the file system takes: never will. */
		bk_error_set(err, errno == ENAMETOOLONG ? BK_ERR_REFUSED : BK_ERR_IO,
					 "could not link \"%s\" to \"%s\": %s", upload->base.where,
					 final, strerror(errno));
		if (errno == EXDEV)
			bk_error_hint(err, "The repository's .spool directory must be on "
							   "the same file system as the objects.");
		return false;
	}
	if (!sync_commit_dir(base->repo->state, dir, err))
		return false;
	*created = true;
	return true;
}

static void
local_upload_free(BkRepoUpload *base)
{
	LocalUpload *upload = (LocalUpload *) base;

	if (upload->spooled)
		unlink(upload->base.where);
	free(upload);
}

/* ------------------------------------------------------------ deleting */

/*
 * Make a removal from dir durable.  A dir gone meanwhile (another bk
 * expire removed the snapshot it belonged to) took the removal with it.
 */
static bool
dir_synced_or_gone(const char *dir, BkError *err)
{
	if (bk_fsync_dir(dir, err))
		return true;
	if (access(dir, F_OK) != 0 && errno == ENOENT)
	{
		bk_error_clear(err);
		return true;
	}
	return false;
}

/*
 * Removals never pass through a symbolic link below the root.  Listings
 * follow links (reads need them), and a link to a directory outside the
 * repository (a cluster's pg_wal, say) must not let bk expire remove the
 * files there that are named like objects.  An object that is a link is
 * removed as a link.
 */
static bool
refuse_linked_dirs(const BkRepo *repo, const char *key, BkError *err)
{
	const char *root = state_of(repo)->root;
	char path[LOCAL_PATH];
	struct stat st;

	for (const char *slash = strchr(key, '/'); slash != NULL;
		 slash = strchr(slash + 1, '/'))
	{
		snprintf(path, sizeof(path), "%s/%.*s", root, (int) (slash - key), key);
		if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
		{
			bk_error_set(err, BK_ERR_FORMAT,
						 "\"%s\" is a symbolic link: bk does not remove "
						 "objects through links",
						 path);
			return bk_error_hint(err, "Put the directory in place of the "
									  "link, or remove its objects by hand.");
		}
	}
	return true;
}

static bool
local_delete(BkRepo *repo, const char *key, BkError *err)
{
	char path[LOCAL_PATH];
	char dir[LOCAL_PATH];

	if (!key_path(repo, key, path, sizeof(path), err) ||
		!refuse_linked_dirs(repo, key, err))
		return false;
	if (unlink(path) != 0)
	{
		if (errno == ENOENT)
			return true;
		return bk_error_set(err, BK_ERR_IO, "could not remove \"%s\": %s", path,
							strerror(errno));
	}
	bk_dir_of(path, dir, sizeof(dir));
	return dir_synced_or_gone(dir, err);
}

static bool
local_delete_prefix(BkRepo *repo, const char *prefix, BkError *err)
{
	char path[LOCAL_PATH];
	char dir[LOCAL_PATH];
	size_t len;

	if (!key_path(repo, prefix, path, sizeof(path), err) ||
		!refuse_linked_dirs(repo, prefix, err))
		return false;
	len = strlen(path);
	if (len > 1 && path[len - 1] == '/')
		path[len - 1] = '\0';
	if (!bk_remove_tree(path, err))
		return false;
	bk_dir_of(path, dir, sizeof(dir));
	return dir_synced_or_gone(dir, err);
}

/*
 * Empty and remove a spool moved aside; one another housekeeping took over
 * meanwhile (clean_trash) is its to remove.
 */
static bool
empty_trash(const char *trash, uint64_t *removed, BkError *err)
{
	if (access(trash, F_OK) != 0 && errno == ENOENT)
		return true;
	if (empty_spool(trash, removed, err) && bk_remove_tree(trash, err))
		return true;
	if (access(trash, F_OK) != 0 && errno == ENOENT)
	{
		bk_error_clear(err);
		return true;
	}
	return false;
}

/*
 * A stopped shipper's spool, locked by us (lock_fd): moved aside in one
 * rename, the lock released, then emptied and removed.  Its owner,
 * starting meanwhile, waits for a rename, not for the removal of every
 * file (thousands of them on a network file system take seconds), and is
 * not taken for a duplicate of itself.
 */
static bool
clean_spool(const char *spools, const char *spool, int lock_fd,
			uint64_t *removed, BkError *err)
{
	char trash[LOCAL_PATH + 64];
	uint64_t suffix;
	bool ok;

	/*
	 * Touched first: a spool untouched for long would otherwise look, once
	 * renamed, like trash its cleaner left (clean_trash), and another
	 * housekeeping could take it from under us.
	 */
	if (getentropy(&suffix, sizeof(suffix)) != 0 ||
		snprintf(trash, sizeof(trash), "%s/" SPOOL_TRASH_PREFIX "%016" PRIx64,
				 spools, suffix) >= (int) sizeof(trash) ||
		utimensat(AT_FDCWD, spool, NULL, 0) != 0 || rename(spool, trash) != 0)
	{
		/* Emptied in place, under the lock, as before. */
		ok = empty_spool(spool, removed, err);
		close(lock_fd);
		return ok;
	}
	close(lock_fd);
	return empty_trash(trash, removed, err);
}

/*
 * A spool moved aside whose cleaner stopped before removing it (nothing
 * touched it for SPOOL_TRASH_AGE_S): taken over by a rename of our own, so
 * that two housekeepings never remove one directory together.
 */
static bool
clean_trash(const char *spools, const char *name, uint64_t *removed,
			BkError *err)
{
	char path[LOCAL_PATH + 256];
	char trash[LOCAL_PATH + 64];
	struct stat st;
	uint64_t suffix;

	snprintf(path, sizeof(path), "%s/%s", spools, name);
	if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode) ||
		time(NULL) - st.st_mtime < SPOOL_TRASH_AGE_S)
		return true;
	if (getentropy(&suffix, sizeof(suffix)) != 0 ||
		snprintf(trash, sizeof(trash), "%s/" SPOOL_TRASH_PREFIX "%016" PRIx64,
				 spools, suffix) >= (int) sizeof(trash) ||
		rename(path, trash) != 0)
		return true; /* another housekeeping took it */
	return empty_trash(trash, removed, err);
}

/*
 * The spools of shippers that are not running: their lock can be taken.
 * Each is moved aside under its lock and emptied after (clean_spool), so a
 * shipper starting meanwhile finds a new, empty spool.
 */
static bool
local_clean_uploads(BkRepo *repo, uint64_t *removed, BkError *err)
{
	const LocalState *state = repo->state;
	char spools[LOCAL_PATH];
	DIR *dir;
	struct dirent *entry;
	bool ok = true;

	if (!key_path(repo, SPOOL_DIR, spools, sizeof(spools), err))
		return false;
	dir = opendir(spools);
	if (dir == NULL)
		return errno == ENOENT ||
			   bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s", spools,
							strerror(errno));
	while (ok && (entry = readdir(dir)) != NULL)
	{
		char spool[LOCAL_PATH + 256];
		struct stat st;
		int fd;

		if (strncmp(entry->d_name, SPOOL_TRASH_PREFIX,
					strlen(SPOOL_TRASH_PREFIX)) == 0)
		{
			ok = clean_trash(spools, entry->d_name, removed, err);
			continue;
		}
		if (entry->d_name[0] == '.')
			continue;
		snprintf(spool, sizeof(spool), "%s/%s", spools, entry->d_name);
		if (lstat(spool, &st) != 0 || !S_ISDIR(st.st_mode) ||
			strcmp(spool, state->spool) == 0)
			continue;
		fd = lock_spool(spool, err);
		if (fd == -2)
			ok = false;
		else if (fd >= 0)
			ok = clean_spool(spools, spool, fd, removed, err);
	}
	closedir(dir);
	return ok;
}

const BkRepoBackend bk_repo_directory_backend = {
	.name = "directory",
	.open = local_open,
	.close = local_close,
	.describe = local_describe,
	.list = local_list,
	.stat = local_stat,
	.reader_open = local_reader_open,
	.reader_read = local_reader_read,
	.reader_close = local_reader_close,
	.put_small = local_put_small,
	.spool_open = local_spool_open,
	.upload_begin = local_upload_begin,
	.upload_write = local_upload_write,
	.upload_seal = local_upload_seal,
	.upload_finish = local_upload_finish,
	.upload_commit = local_upload_commit,
	.batch_begin = local_batch_begin,
	.batch_end = local_batch_end,
	.upload_free = local_upload_free,
	.delete = local_delete,
	.delete_prefix = local_delete_prefix,
	.clean_uploads = local_clean_uploads,
};
