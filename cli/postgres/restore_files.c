/*
 * restore_files.c
 *		The files of the snapshot, decrypted, rebuilt through their
 *		incremental chain and verified by a pool of --jobs threads, each with
 *		its own decoder.
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
	if (lstat(write_path, &st) == 0 && !S_ISREG(st.st_mode) &&
		!bk_remove_tree(write_path, err))
		return false;

	/* --delta: a file that already has the recorded content stays. */
	if (r->delta && !pg_control && file->has_sha256 && lstat(path, &st) == 0 &&
		S_ISREG(st.st_mode) && (uint64_t) st.st_size == file->size)
	{
		uint8_t existing[BK_SHA256_LEN];
		BkError hash_err; /* unreadable: rewritten below */

		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0 && bk_sha256_fd(fd, path, existing, &hash_err) &&
			digest_equal(existing, file->sha256))
		{
			close(fd);
			memcpy(result->sha256, existing, BK_SHA256_LEN);
			times[0].tv_sec = times[1].tv_sec = (time_t) file->mtime;
			times[0].tv_nsec = times[1].tv_nsec = 0;
			if (chmod(path, file->mode) != 0 ||
				utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) != 0)
				return bk_error_set(err, BK_ERR_IO,
									"could not set mode or time of \"%s\": %s",
									path, strerror(errno));
			atomic_fetch_add(&r->files_kept, 1);
			return restore_set_owner_path(r, path, false, err);
		}
		if (fd >= 0)
			close(fd);
	}

	fd = open(write_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
			  0600);
	if (fd < 0)
		return bk_error_set(err, BK_ERR_IO, "could not create \"%s\": %s",
							write_path, strerror(errno));
	if (!bk_snapshot_rebuild_file(r->repo, decoder, r->source, r->chain,
								  r->chain_len, file, fd, write_path, true,
								  result->sha256, &decrypted, err))
		goto failed;
	if (file->has_sha256 && !digest_equal(result->sha256, file->sha256))
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
	if (fsync(fd) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not fsync \"%s\": %s", write_path,
					 strerror(errno));
		goto failed;
	}
	if (close(fd) != 0)
		return bk_error_set(err, BK_ERR_IO, "could not write \"%s\": %s",
							write_path, strerror(errno));
	atomic_fetch_add(&r->files_written, 1);
	atomic_fetch_add(&r->bytes_written, file->size);
	atomic_fetch_add(&r->bytes_decrypted, decrypted);
	return true;

failed:
	close(fd);
	return false;
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
	pthread_mutex_destroy(&r->error_lock);
	if (r->first_error.code != BK_OK)
	{
		*err = r->first_error;
		return false;
	}
	return true;
}
