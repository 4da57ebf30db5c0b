/*
 * restore_files.c
 *		The files of the snapshot, decrypted, rebuilt through their
 *		incremental chain and verified by a pool of --jobs threads, each with
 *		its own decoder; then made durable together.
 *
 * Durability is batched as PostgreSQL's sync_pgdata (initdb -S,
 * pg_basebackup, pg_rewind) does it: a file is not fsynced as it is
 * written, which would make every thread wait for the disk's cache flush
 * file by file; the kernel is asked to start writing it out as it is
 * written (sync_file_range SYNC_FILE_RANGE_WRITE, in 8 MiB steps and once
 * more when it is complete), and each step, once the next is on its way, is
 * waited for and dropped from the page cache (snapshot_data.c, FileWriter:
 * a write error that wait reports fails the file at once).  Once every file
 * is written, restore_sync_files fsyncs every file and every directory that
 * got entries, on --jobs threads, before anything declares the restore
 * complete (restore.c).  A write error the kernel met while writing out
 * what was not waited for is reported by the next fsync of the file,
 * through a descriptor opened after it (Linux 4.16 and later, while it
 * keeps the file's inode: what sync_pgdata relies on too).  A file whose
 * writing or fsync failed is cut to nothing, so that a rerun with --delta
 * rewrites it.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk_util.h"

#include "restore.h"

/* ------------------------------------------------------- the files */

static int
work_cmp(const void *a, const void *b, void *arg)
{
	const BkSnapRecord *record = arg;
	uint64_t x = record->files[*(const size_t *) a].size;
	uint64_t y = record->files[*(const size_t *) b].size;

	return x == y ? 0 : (x > y ? -1 : 1);
}

static bool
digest_equal(const uint8_t *a, const uint8_t *b)
{
	return memcmp(a, b, BK_SHA256_LEN) == 0;
}

/* Restore one file of the record. */
static bool
restore_file(Restore *r, BkDecoder *decoder, size_t file_index, BkError *err)
{
	const BkSnapFile *file = &r->record->files[file_index];
	FileResult *result = &r->results[file_index];
	char path[RESTORE_PATH_MAX];
	char write_path[RESTORE_PATH_MAX];
	struct timespec times[2];
	struct stat st;
	uint64_t decrypted = 0;
	bool pg_control = strcmp(file->path, PG_CONTROL) == 0;
	int fd;

	if (!restore_resolve_path(r, file->path, path, sizeof(path), err) ||
		!restore_resolve_path(r, pg_control ? PG_CONTROL_TEMP : file->path,
							  write_path, sizeof(write_path), err))
		return false;

	/* --delta: a file that already has the recorded content stays. */
	if (r->delta && !pg_control &&
		(file->has_sha256 || file->range_count > 0) && lstat(path, &st) == 0 &&
		S_ISREG(st.st_mode) && (uint64_t) st.st_size == file->size)
	{
		BkFileChecksum existing;
		bool matches = false;
		BkError hash_err; /* unreadable: rewritten below */

		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0 &&
			bk_snapshot_file_hash(fd, path, file, true, &existing, &matches,
								  &hash_err) &&
			matches)
		{
			bool set;

			result->sum = existing;
			times[0].tv_sec = times[1].tv_sec = (time_t) file->mtime;
			times[0].tv_nsec = times[1].tv_nsec = 0;
			set = fchmod(fd, file->mode) == 0 && futimens(fd, times) == 0;
			if (!set)
				bk_error_set(err, BK_ERR_IO,
							 "could not set mode or time of \"%s\": %s", path,
							 strerror(errno));
			close(fd);
			if (set)
				atomic_fetch_add(&r->files_kept, 1);
			return set;
		}
		if (fd >= 0)
			close(fd);
	}

	/*
	 * What is there goes, and the file is made anew: never written through
	 * an inode that may have other names (--delta over a directory that
	 * pg_upgrade --link shares with another cluster, or a link its owner
	 * made), nor through a symbolic link.
	 */
	if (lstat(write_path, &st) == 0 && !bk_remove_tree(write_path, err))
		return false;
	fd = open(write_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
			  0600);
	if (fd < 0)
		return bk_error_set(err, BK_ERR_IO, "could not create \"%s\": %s",
							write_path, strerror(errno));
	if (bk_snapshot_file_empty(file))
	{
		/* Made from the record: an object store's round trip saved. */
		memset(&result->sum, 0, sizeof(result->sum));
		memcpy(result->sum.sha256, file->sha256, BK_SHA256_LEN);
	}
	else if (!bk_snapshot_rebuild_file(
				 r->repo, decoder, r->source, r->chain, r->chain_len, file, fd,
				 write_path, true, &result->sum, &decrypted, NULL, NULL, err))
		goto failed;
	if (file->has_sha256 && !digest_equal(result->sum.sha256, file->sha256))
	{
		if (!file->incremental || r->record->data_checksums ||
			r->record->page_digests)
		{
			bk_error_set(err, BK_ERR_FORMAT,
						 "snapshot %s, file \"%s\": the restored file's "
						 "SHA-256 differs from the one the snapshot recorded",
						 r->record->id, file->path);
			goto failed;
		}
		/* A snapshot taken before bk compared page digests, on a cluster
		 * without data checksums: hint-bit changes left the page LSN
		 * alone, so its pages were not sent, and the rebuilt file may
		 * differ in hint bits. */
		atomic_fetch_add(&r->hint_bit_mismatches, 1);
	}
	times[0].tv_sec = times[1].tv_sec = (time_t) file->mtime;
	times[0].tv_nsec = times[1].tv_nsec = 0;
	if (fchmod(fd, file->mode) != 0 || futimens(fd, times) != 0 ||
		(r->set_owner && fchown(fd, r->uid, r->gid) != 0))
	{
		bk_error_set(err, BK_ERR_IO,
					 "could not set mode, time or owner of \"%s\": %s",
					 write_path, strerror(errno));
		goto failed;
	}
	/* Durable later (restore_sync_files): start writing it out now. */
	if (sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) != 0 &&
		errno != ENOSYS && errno != EINVAL && errno != ESPIPE &&
		errno != EOPNOTSUPP)
	{
		bk_error_set(err, BK_ERR_IO, "could not write \"%s\" out: %s",
					 write_path, strerror(errno));
		goto failed;
	}
	if (close(fd) != 0)
	{
		/*
		 * A deferred write error (NFS): the page cache may hold what the
		 * disk does not, as below.  Removed, so --delta rewrites it.
		 */
		bk_error_set(err, BK_ERR_IO, "could not write \"%s\": %s", write_path,
					 strerror(errno));
		(void) unlink(write_path);
		return false;
	}
	atomic_fetch_add(&r->files_written, 1);
	atomic_fetch_add(&r->bytes_written, file->size);
	atomic_fetch_add(&r->bytes_decrypted, decrypted);
	return true;

failed:
	/*
	 * Cut it to nothing, so that bk restore --delta rewrites it: after a
	 * write error the page cache may still hold what was to be written,
	 * clean and marked as such, and a later read would find the recorded
	 * content there while the disk does not have it.
	 */
	if (ftruncate(fd, 0) != 0)
		(void) unlink(write_path);
	close(fd);
	return false;
}

/*
 * bk_snapshot_prefetch_file: a file already taken is not hinted, nor one
 * whose object is not read.
 */
static void
restore_prefetch(Restore *r, size_t slot)
{
	size_t ahead = slot + bk_snapshot_prefetch_lead(r->jobs);
	const BkSnapFile *file;

	/* --delta keeps most files without reading their objects. */
	if (ahead >= r->work_count || r->delta ||
		atomic_load(&r->next_work) > ahead)
		return;
	file = &r->record->files[r->work[ahead]];
	if (file->size <= BK_SNAPSHOT_PREFETCH_MAX_SIZE &&
		!bk_snapshot_file_empty(file))
		bk_snapshot_prefetch_file(r->repo, r->source, r->chain, r->chain_len,
								  file, BK_SNAPSHOT_PREFETCH_MAX_SIZE);
}

static void *
restore_worker(void *arg)
{
	Restore *r = arg;
	BkError err;
	BkDecoder *decoder;
	bool failed = false;

	bk_error_clear(&err);
	decoder = bk_decoder_new(r->ring, &err);
	failed = decoder == NULL;
	while (!failed)
	{
		size_t slot = atomic_fetch_add(&r->next_work, 1);

		if (slot >= r->work_count || atomic_load(&r->abort))
			break;
		restore_prefetch(r, slot);
		failed = !restore_file(r, decoder, r->work[slot], &err);
	}
	if (failed)
	{
		pthread_mutex_lock(&r->error_lock);
		if (r->first_error.code == BK_OK)
			r->first_error = err;
		pthread_mutex_unlock(&r->error_lock);
		atomic_store(&r->abort, true);
	}
	bk_decoder_free(decoder);
	return NULL;
}

bool
restore_files(Restore *r, BkError *err)
{
	pthread_t threads[JOBS_MAX];
	int started = 0;

	r->results = calloc(r->record->file_count + 1, sizeof(FileResult));
	r->work = calloc(r->record->file_count + 1, sizeof(size_t));
	if (r->results == NULL || r->work == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	for (size_t fileIdx = 0; fileIdx < r->record->file_count; fileIdx++)
		if (!restore_skipped_file(r->record->files[fileIdx].path))
			r->work[r->work_count++] = fileIdx;
	qsort_r(r->work, r->work_count, sizeof(size_t), work_cmp,
			(void *) r->record);
	atomic_init(&r->next_work, 0);
	atomic_init(&r->abort, false);
	pthread_mutex_init(&r->error_lock, NULL);
	bk_error_clear(&r->first_error);
	r->wrote_pg_control_temp = true;
	for (int jobIdx = 0; jobIdx < r->jobs; jobIdx++)
	{
		int failure = pthread_create(&threads[jobIdx], NULL, restore_worker, r);

		if (failure != 0)
		{
			pthread_mutex_lock(&r->error_lock);
			if (r->first_error.code == BK_OK)
				bk_error_set(&r->first_error, BK_ERR_INTERNAL,
							 "could not start a restore thread: %s",
							 strerror(failure));
			pthread_mutex_unlock(&r->error_lock);
			atomic_store(&r->abort, true);
			break;
		}
		started++;
	}
	for (int jobIdx = 0; jobIdx < started; jobIdx++)
		pthread_join(threads[jobIdx], NULL);
	bk_repo_prefetch_end(r->repo);
	pthread_mutex_destroy(&r->error_lock);
	if (r->first_error.code != BK_OK)
	{
		*err = r->first_error;
		return false;
	}
	return true;
}

/* ------------------------------------------------------- durability */

/* What restore_sync_files fsyncs: slots are claimed by its threads. */
typedef struct SyncRun
{
	Restore *r;
	char **dirs; /* absolute, sorted, unique */
	size_t dir_count;
	size_t dir_cap;
	atomic_size_t next; /* r->work's files, then dirs */
	atomic_bool abort;
	pthread_mutex_t error_lock;
	BkError first_error;
} SyncRun;

static bool
sync_add_dir(SyncRun *run, const char *path, BkError *err)
{
	/* A directory's files come one after another: added once. */
	if (run->dir_count > 0 && strcmp(run->dirs[run->dir_count - 1], path) == 0)
		return true;
	if (run->dir_count == run->dir_cap)
	{
		size_t cap = run->dir_cap ? run->dir_cap * 2 : 256;
		char **grown = realloc(run->dirs, cap * sizeof(char *));

		if (grown == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		run->dirs = grown;
		run->dir_cap = cap;
	}
	if ((run->dirs[run->dir_count] = strdup(path)) == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	run->dir_count++;
	return true;
}

static int
dir_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * Every directory that got entries: the record's, the parent of every
 * file (the record need not list it), pg_tblspc, each tablespace's
 * location and PGDATA.
 */
static bool
sync_collect_dirs(SyncRun *run, BkError *err)
{
	const Restore *r = run->r;
	const BkSnapRecord *record = r->record;
	char path[RESTORE_PATH_MAX];
	size_t unique = 0;

	for (size_t dirIdx = 0; dirIdx < record->directory_count; dirIdx++)
	{
		const char *rel = record->directories[dirIdx].path;

		if (restore_is_tablespace_link(r, rel))
			continue;
		if (!restore_resolve_path(r, rel, path, sizeof(path), err) ||
			!sync_add_dir(run, path, err))
			return false;
	}
	for (size_t fileIdx = 0; fileIdx < record->file_count; fileIdx++)
	{
		const char *rel = record->files[fileIdx].path;

		if (restore_skipped_file(rel))
			continue;
		if (!restore_resolve_path(r, rel, path, sizeof(path), err))
			return false;
		*strrchr(path, '/') = '\0';
		if (!sync_add_dir(run, path, err))
			return false;
	}
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
		if (!sync_add_dir(run, r->tablespaces[spcIdx].root, err))
			return false;
	if (!restore_join_path(path, sizeof(path), r->pgdata, "pg_tblspc", err) ||
		!sync_add_dir(run, path, err) || !sync_add_dir(run, r->pgdata, err))
		return false;
	qsort(run->dirs, run->dir_count, sizeof(char *), dir_cmp);
	for (size_t dirIdx = 0; dirIdx < run->dir_count; dirIdx++)
	{
		if (unique > 0 && strcmp(run->dirs[unique - 1], run->dirs[dirIdx]) == 0)
			free(run->dirs[dirIdx]);
		else
			run->dirs[unique++] = run->dirs[dirIdx];
	}
	run->dir_count = unique;
	return true;
}

static void *
sync_worker(void *arg)
{
	SyncRun *run = arg;
	const Restore *r = run->r;
	BkError err;
	bool ok = true;

	bk_error_clear(&err);
	while (ok && !atomic_load(&run->abort))
	{
		size_t slot = atomic_fetch_add(&run->next, 1);
		char path[RESTORE_PATH_MAX];

		if (slot < r->work_count)
		{
			const char *rel = r->record->files[r->work[slot]].path;

			/* pg_control is durable before restore_install_pg_control. */
			ok = restore_resolve_path(
				r, strcmp(rel, PG_CONTROL) == 0 ? PG_CONTROL_TEMP : rel, path,
				sizeof(path), &err);
			/* Unsynced: cut it, so --delta does not take it as restored. */
			if (ok && !bk_fsync_file(path, &err))
			{
				if (truncate(path, 0) != 0)
					(void) unlink(path);
				ok = false;
			}
		}
		else if (slot - r->work_count < run->dir_count)
			ok = bk_fsync_dir(run->dirs[slot - r->work_count], &err);
		else
			break;
	}
	if (!ok)
	{
		pthread_mutex_lock(&run->error_lock);
		if (run->first_error.code == BK_OK)
			run->first_error = err;
		pthread_mutex_unlock(&run->error_lock);
		atomic_store(&run->abort, true);
	}
	return NULL;
}

/*
 * fsync every file restore_files wrote or kept (--delta: a kept file may
 * be what an earlier, failed restore wrote and never synced), then every
 * directory that got entries, on --jobs threads.  The first failure,
 * naming its file, fails the restore.
 */
bool
restore_sync_files(Restore *r, BkError *err)
{
	pthread_t threads[JOBS_MAX];
	SyncRun run = {.r = r};
	int started = 0;
	bool ok;

	bk_error_clear(&run.first_error);
	if (!sync_collect_dirs(&run, err))
	{
		for (size_t dirIdx = 0; dirIdx < run.dir_count; dirIdx++)
			free(run.dirs[dirIdx]);
		free(run.dirs);
		return false;
	}
	atomic_init(&run.next, 0);
	atomic_init(&run.abort, false);
	pthread_mutex_init(&run.error_lock, NULL);
	for (int jobIdx = 0; jobIdx < r->jobs; jobIdx++)
	{
		int failure = pthread_create(&threads[jobIdx], NULL, sync_worker, &run);

		if (failure != 0)
		{
			pthread_mutex_lock(&run.error_lock);
			if (run.first_error.code == BK_OK)
				bk_error_set(&run.first_error, BK_ERR_INTERNAL,
							 "could not start a thread to fsync the restored "
							 "files: %s",
							 strerror(failure));
			pthread_mutex_unlock(&run.error_lock);
			atomic_store(&run.abort, true);
			break;
		}
		started++;
	}
	for (int jobIdx = 0; jobIdx < started; jobIdx++)
		pthread_join(threads[jobIdx], NULL);
	pthread_mutex_destroy(&run.error_lock);
	for (size_t dirIdx = 0; dirIdx < run.dir_count; dirIdx++)
		free(run.dirs[dirIdx]);
	free(run.dirs);
	ok = run.first_error.code == BK_OK;
	if (!ok)
		*err = run.first_error;
	return ok;
}
