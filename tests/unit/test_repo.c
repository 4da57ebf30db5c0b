/*
 * test_repo.c
 *		The repository interface on its directory backend: every outcome of
 *		put-if-absent, conflict copies, listing (one level and recursive,
 *		prefixes that filter), stat, reading frames, decryption that refuses
 *		a substituted object, a copy in place that cannot be read (an error,
 *		never a conflict), delete (missing = success), the per-shipper
 *		spool and its lock, housekeeping, rejected messages, and names that
 *		would escape their place.
 *
 * With BK_TEST_S3_ENDPOINT set (tests/integration/s3.t, against
 * a real s3proxy) the same tests run on the S3 backend, each in its own
 * prefix of BK_S3_BUCKET, plus what only an object store has: multipart
 * uploads and their part sizes, parallel range reads, refused credentials,
 * and listings paged two keys at a time.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bk_util.h"
#include "repo.h"
#include "repo_backend.h"

#define SOURCE "test-source"

/*
 * The directory backend writes spool files with O_DIRECT.  This binary is
 * linked with --wrap=open and --wrap=pwrite (Makefile), so the tests can
 * see that it does, and make the file system "refuse" O_DIRECT as tmpfs
 * and some network file systems do.
 */
static int direct_opens;          /* open() calls asking for O_DIRECT */
static bool refuse_direct_open;   /* those fail with EINVAL */
static bool refuse_direct_pwrite; /* pwrite() on such a descriptor too */
static bool short_direct_pwrite;  /* the next one writes one block, then
								   * the file system refuses O_DIRECT */
static int fail_append_opens;     /* so many O_APPEND opens fail (ENOSPC) */
static bool fail_ftruncate;       /* ftruncate() fails with EIO */

extern int __real_open(const char *path, int flags, ...);
extern ssize_t __real_pwrite(int fd, const void *buf, size_t len, off_t offset);
extern int __wrap_open(const char *path, int flags, ...);
extern ssize_t __wrap_pwrite(int fd, const void *buf, size_t len, off_t offset);
extern int __real_ftruncate(int fd, off_t length);
extern int __wrap_ftruncate(int fd, off_t length);

int
__wrap_ftruncate(int fd, off_t length)
{
	if (fail_ftruncate)
	{
		errno = EIO;
		return -1;
	}
	return __real_ftruncate(fd, length);
}

int
__wrap_open(const char *path, int flags, ...)
{
	mode_t mode = 0;

	if ((flags & O_CREAT) != 0)
	{
		va_list args;

		va_start(args, flags);
		mode = (mode_t) va_arg(args, int);
		va_end(args);
	}
	if ((flags & O_APPEND) != 0 && fail_append_opens > 0)
	{
		fail_append_opens--;
		errno = ENOSPC;
		return -1;
	}
	if ((flags & O_DIRECT) != 0)
	{
		direct_opens++;
		if (refuse_direct_open)
		{
			errno = EINVAL;
			return -1;
		}
	}
	return __real_open(path, flags, mode);
}

ssize_t
__wrap_pwrite(int fd, const void *buf, size_t len, off_t offset)
{
	if (refuse_direct_pwrite && (fcntl(fd, F_GETFL) & O_DIRECT) != 0)
	{
		errno = EINVAL;
		return -1;
	}
	if (short_direct_pwrite && len > 4096 &&
		(fcntl(fd, F_GETFL) & O_DIRECT) != 0)
	{
		short_direct_pwrite = false;
		refuse_direct_pwrite = true;
		return __real_pwrite(fd, buf, 4096, offset);
	}
	return __real_pwrite(fd, buf, len, offset);
}

/*
 * posix_fadvise(WILLNEED) calls: how far the read-ahead asked so far
 * reaches (test_read_ahead_large_frames).
 */
static uint64_t advised_to;
extern int __real_posix_fadvise(int fd, off_t offset, off_t len, int advice);
extern int __wrap_posix_fadvise(int fd, off_t offset, off_t len, int advice);

int
__wrap_posix_fadvise(int fd, off_t offset, off_t len, int advice)
{
	if (advice == POSIX_FADV_WILLNEED && (uint64_t) (offset + len) > advised_to)
		advised_to = (uint64_t) (offset + len);
	return __real_posix_fadvise(fd, offset, len, advice);
}

/*
 * fsync(2) calls (--wrap=fsync), files and directories apart; the next
 * directory fsync fails on demand, as a crash between a link and its
 * directory's fsync would leave an object in place never made durable.
 * The directories fsynced are remembered (the last SYNCED_DIRS_MAX of them,
 * by inode) so that a test can ask whether one was (dir_was_fsynced).
 */
#define SYNCED_DIRS_MAX 64
static int file_fsyncs;
static int dir_fsyncs;
static bool fail_dir_fsync;
static struct stat synced_dirs[SYNCED_DIRS_MAX];
extern int __real_fsync(int fd);
extern int __wrap_fsync(int fd);

int
__wrap_fsync(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
	{
		synced_dirs[dir_fsyncs % SYNCED_DIRS_MAX] = st;
		dir_fsyncs++;
		if (fail_dir_fsync)
		{
			fail_dir_fsync = false;
			errno = EIO;
			return -1;
		}
	}
	else
		file_fsyncs++;
	return __real_fsync(fd);
}

/* Whether the directory at path was fsynced since dir_fsyncs was zeroed. */
static bool
dir_was_fsynced(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	assert_true(dir_fsyncs <= SYNCED_DIRS_MAX);
	for (int syncIdx = 0; syncIdx < dir_fsyncs; syncIdx++)
		if (synced_dirs[syncIdx].st_dev == st.st_dev &&
			synced_dirs[syncIdx].st_ino == st.st_ino)
			return true;
	return false;
}

typedef struct Fixture
{
	char *dir;
	char location[512];
	char spool[600];
	BkRepoOptions options;
	BkKey key;
	BkKeyring ring;
	BkRepo *repo;
} Fixture;

/* The S3 endpoint to test against, or NULL for the directory backend. */
static const char *
s3_endpoint(void)
{
	const char *endpoint = getenv("BK_TEST_S3_ENDPOINT");

	return endpoint != NULL && endpoint[0] ? endpoint : NULL;
}

static BkRepo *
open_repo(Fixture *f, const char *location, bool create, BkError *err)
{
	return bk_repo_open_with(location, &f->options, create, err);
}

static int
setup(void **state)
{
	Fixture *f = calloc(1, sizeof(*f));
	static int count;
	BkError err;

	f->dir = test_mkdtemp();
	bk_repo_options_init(&f->options);
	if (s3_endpoint())
	{
		snprintf(f->location, sizeof(f->location), "s3://%s/unit-%d-%d/repo",
				 getenv("BK_S3_BUCKET"), (int) getpid(), ++count);
		snprintf(f->spool, sizeof(f->spool), "%s/spool", f->dir);
		f->options.s3_endpoint = s3_endpoint();
		f->options.s3_region = getenv("BK_S3_REGION");
		f->options.s3_uri_style = "path";
		f->options.spool_dir = f->spool;
		f->options.s3_part_size = (uint64_t) 5 << 20;
		/* Two keys per listing request: every listing pages. */
		f->options.s3_list_page = 2;
	}
	else
		snprintf(f->location, sizeof(f->location), "%s/repo", f->dir);
	test_key(&f->key, &f->ring);
	direct_opens = 0;
	refuse_direct_open = false;
	refuse_direct_pwrite = false;
	short_direct_pwrite = false;
	fail_append_opens = 0;
	fail_ftruncate = false;
	file_fsyncs = dir_fsyncs = 0;
	fail_dir_fsync = false;
	f->repo = open_repo(f, f->location, true, &err);
	if (f->repo == NULL)
		print_message("%s\n", err.message);
	assert_non_null(f->repo);
	assert_true(bk_repo_spool_open(f->repo, "unit-1", &err));
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	Fixture *f = *state;

	bk_repo_close(f->repo);
	test_rmdir(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

/* Spool an object (its frames, as the shipper receives them). */
static BkRepoUpload *
upload_object(Fixture *f, const char *tag, const char *name,
			  const char *content, BkObjectIdentity *identity)
{
	FrameList frames;
	BkRepoUpload *upload;
	BkFrame parsed;
	BkError err;

	test_encode(&f->key, BK_CHUNK_SIZE_MIN, name, (const uint8_t *) content,
				strlen(content), &frames);
	upload = bk_repo_upload_begin(f->repo, tag, &err);
	assert_non_null(upload);
	for (int frameIdx = 0; frameIdx < frames.count; frameIdx++)
		assert_true(bk_repo_upload_write(upload, frames.data[frameIdx],
										 frames.len[frameIdx], &err));
	assert_true(bk_repo_upload_finish(upload, &err));
	assert_true(bk_frame_parse(frames.data[frames.count - 1],
							   frames.len[frames.count - 1], &parsed, &err));
	memcpy(identity->key_id, parsed.key_id, BK_KEY_ID_LEN);
	memcpy(identity->fingerprint, parsed.fingerprint, BK_FINGERPRINT_LEN);
	memcpy(identity->attempt_id, parsed.attempt_id, BK_ATTEMPT_ID_LEN);
	test_frames_free(&frames);
	return upload;
}

static void
test_open(void **state)
{
	Fixture *f = *state;
	char path[600];
	BkRepo *again;
	BkError err;

	/* Reopened without create: the marker is there. */
	again = open_repo(f, f->location, false, &err);
	assert_non_null(again);
	assert_string_equal(bk_repo_location(again), f->location);
	bk_repo_close(again);

	/*
	 * A typo is not an empty repository, and not a store that failed
	 * either: the setting is wrong (exit 3), retrying will not help.
	 */
	snprintf(path, sizeof(path), "%s/nowhere", f->location);
	assert_null(open_repo(f, path, false, &err));
	assert_error_contains(&err, "is not a bk repository");
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_non_null(strstr(err.hint, "Check the repository setting"));
	if (!s3_endpoint())
		assert_error_contains(&err, "there is no such directory");
	assert_null(bk_repo_open("", false, &err));
	assert_error_contains(&err, "no repository configured");
	if (s3_endpoint())
		return; /* the marker below is written as a file */

	/* A directory without the marker (a file system not mounted there?). */
	assert_int_equal(mkdir(path, 0755), 0);
	assert_null(open_repo(f, path, false, &err));
	assert_error_contains(&err, "its marker bk-repository is not there");
	assert_int_equal(err.code, BK_ERR_CONFIG);

	/* A foreign marker. */
	snprintf(path, sizeof(path), "%s/bk-repository", f->location);
	assert_true(
		bk_write_file_durable(path, "bk repository 9\n", 16, 0644, &err));
	assert_null(bk_repo_open(f->location, false, &err));
	assert_error_contains(&err, "unknown repository format");

	/*
	 * A regular file given as the repository, or a path through one: a
	 * configuration error (exit 3), not an unreachable store that a
	 * supervisor would restart the shipper for, again and again.
	 */
	snprintf(path, sizeof(path), "%s/a-file", f->dir);
	assert_true(bk_write_file_durable(path, "x", 1, 0644, &err));
	for (int create = 0; create <= 1; create++)
	{
		assert_null(open_repo(f, path, create, &err));
		assert_int_equal(err.code, BK_ERR_CONFIG);
		assert_error_contains(&err, path);
		assert_error_contains(&err, "is not a directory");
		assert_error_contains(&err, "s3://");
	}
	snprintf(path, sizeof(path), "%s/a-file/repo", f->dir);
	for (int create = 0; create <= 1; create++)
	{
		assert_null(open_repo(f, path, create, &err));
		assert_int_equal(err.code, BK_ERR_CONFIG);
		assert_error_contains(&err, path);
		assert_error_contains(&err, "not a directory");
	}
}

static void
test_put_if_absent(void **state)
{
	Fixture *f = *state;
	BkObjectIdentity first_id;
	BkObjectIdentity again_id;
	BkObjectIdentity other_id;
	BkObjectIdentity stored;
	BkRepoUpload *first;
	BkRepoUpload *again;
	BkRepoUpload *other;
	BkPutResult result;
	BkRepoStat stat;
	BkDecoder *decoder;
	uint8_t *data;
	size_t len;
	BkError err;

	first = upload_object(f, "t.0.1", "000000010000000000000001", "first",
						  &first_id);
	assert_true(bk_repo_upload_commit(first, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_WAL, "000000010000000000000001",
									  &first_id, &result, &err));
	assert_int_equal(result, BK_PUT_CREATED);
	assert_string_equal(bk_repo_upload_key(first),
						SOURCE "/wal/000000010000000000000001");
	bk_repo_upload_free(first);

	/* The same content again (encrypted afresh): identical by fingerprint. */
	again = upload_object(f, "t.0.2", "000000010000000000000001", "first",
						  &again_id);
	assert_true(bk_repo_upload_commit(again, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_WAL, "000000010000000000000001",
									  &again_id, &result, &err));
	assert_int_equal(result, BK_PUT_EXISTS_IDENTICAL);
	bk_repo_upload_free(again);

	/* Other content under that name: never replaces; kept as a copy. */
	other = upload_object(f, "t.0.3", "000000010000000000000001", "second",
						  &other_id);
	assert_true(bk_repo_upload_commit(other, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_WAL, "000000010000000000000001",
									  &other_id, &result, &err));
	assert_int_equal(result, BK_PUT_EXISTS_DIFFERENT);
	assert_true(bk_repo_upload_commit(other, BK_REPO_CONFLICTS, SOURCE,
									  BK_KIND_WAL, "000000010000000000000001",
									  &other_id, &result, &err));
	assert_int_equal(result, BK_PUT_CREATED);
	assert_non_null(strstr(bk_repo_upload_key(other),
						   SOURCE "/conflicts/wal/000000010000000000000001."));
	/* The same copy kept twice (a replay): it is there already. */
	assert_true(bk_repo_upload_commit(other, BK_REPO_CONFLICTS, SOURCE,
									  BK_KIND_WAL, "000000010000000000000001",
									  &other_id, &result, &err));
	assert_int_equal(result, BK_PUT_EXISTS_IDENTICAL);
	bk_repo_upload_free(other);

	/* The archived object is still the first, readable and decryptable. */
	assert_true(bk_repo_stat(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_WAL,
							 "000000010000000000000001", &stat, &err));
	assert_true(stat.exists);
	assert_true(stat.stored_ms > 0);
	assert_true(bk_repo_object_identity(f->repo, BK_REPO_ARCHIVE, SOURCE,
										BK_KIND_WAL, "000000010000000000000001",
										&stored, NULL, &err));
	assert_memory_equal(stored.fingerprint, first_id.fingerprint,
						BK_FINGERPRINT_LEN);
	decoder = bk_decoder_new(&f->ring, &err);
	assert_non_null(decoder);
	assert_true(bk_repo_decrypt_to_memory(
		f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_WAL,
		"000000010000000000000001", decoder, 1024, &data, &len, &err));
	assert_int_equal(len, 5);
	assert_memory_equal(data, "first", 5);
	free(data);
	/* Too large for the caller's bound. */
	assert_false(bk_repo_decrypt_to_memory(
		f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_WAL,
		"000000010000000000000001", decoder, 3, &data, &len, &err));
	assert_error_contains(&err, "holds more than 3 bytes");
	bk_decoder_free(decoder);

	/* Missing: stat says so, a reader is NOT_FOUND. */
	assert_true(bk_repo_stat(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_WAL,
							 "000000010000000000000009", &stat, &err));
	assert_false(stat.exists);
	assert_null(bk_repo_reader_open(f->repo, BK_REPO_ARCHIVE, SOURCE,
									BK_KIND_WAL, "000000010000000000000009",
									&err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
}

/*
 * The same attempt committed again: a shipper killed after its commit and
 * before its audit event was acknowledged reads the attempt again after the
 * restart.  That attempt was never reported, so it is still CREATED (the
 * shipper's "archived" event), not a duplicate of an earlier attempt; a
 * re-send under another attempt stays EXISTS_IDENTICAL.
 */
static void
test_same_attempt_again(void **state)
{
	Fixture *f = *state;
	static const char content[] = "the same attempt, read twice";
	const char *name = "000000010000000000000003";
	BkObjectIdentity identity;
	BkObjectIdentity other_id;
	BkRepoUpload *upload;
	BkPutResult result;
	FrameList frames;
	BkFrame parsed;
	BkError err;

	test_encode(&f->key, BK_CHUNK_SIZE_MIN, name, (const uint8_t *) content,
				strlen(content), &frames);
	assert_true(bk_frame_parse(frames.data[frames.count - 1],
							   frames.len[frames.count - 1], &parsed, &err));
	memcpy(identity.key_id, parsed.key_id, BK_KEY_ID_LEN);
	memcpy(identity.fingerprint, parsed.fingerprint, BK_FINGERPRINT_LEN);
	memcpy(identity.attempt_id, parsed.attempt_id, BK_ATTEMPT_ID_LEN);
	for (int round = 0; round < 2; round++)
	{
		upload =
			bk_repo_upload_begin(f->repo, round == 0 ? "t.0.1" : "t.0.2", &err);
		assert_non_null(upload);
		for (int frameIdx = 0; frameIdx < frames.count; frameIdx++)
			assert_true(bk_repo_upload_write(upload, frames.data[frameIdx],
											 frames.len[frameIdx], &err));
		assert_true(bk_repo_upload_finish(upload, &err));
		assert_true(bk_repo_upload_commit(upload, BK_REPO_ARCHIVE, SOURCE,
										  BK_KIND_WAL, name, &identity, &result,
										  &err));
		assert_int_equal(result, BK_PUT_CREATED);
		assert_string_equal(bk_repo_upload_key(upload),
							SOURCE "/wal/000000010000000000000003");
		bk_repo_upload_free(upload);
	}
	test_frames_free(&frames);

	upload = upload_object(f, "t.0.3", name, content, &other_id);
	assert_true(bk_repo_upload_commit(upload, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_WAL, name, &other_id, &result,
									  &err));
	assert_int_equal(result, BK_PUT_EXISTS_IDENTICAL);
	bk_repo_upload_free(upload);
}

/*
 * A copy already in place counts as archived only once it is durable: the
 * copy a shipper linked before it crashed (or that another shipper linked
 * and has not yet fsynced) may not survive a power loss, and calling the
 * re-send a duplicate lets the shipper commit the Kafka offset past it.
 */
static void
test_existing_copy_made_durable(void **state)
{
	Fixture *f = *state;
	BkObjectIdentity first_id;
	BkObjectIdentity again_id;
	BkRepoUpload *first;
	BkRepoUpload *again;
	BkPutResult result;
	BkError err;

	if (s3_endpoint())
		return;
	/* Its directory made (durably) by an earlier object. */
	first = upload_object(f, "t.0.0", "000000010000000000000002", "other",
						  &first_id);
	assert_true(bk_repo_upload_commit(first, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_WAL, "000000010000000000000002",
									  &first_id, &result, &err));
	bk_repo_upload_free(first);

	/* Linked, but its directory never fsynced (a crash right there). */
	first = upload_object(f, "t.0.1", "000000010000000000000001", "first",
						  &first_id);
	fail_dir_fsync = true;
	assert_false(bk_repo_upload_commit(first, BK_REPO_ARCHIVE, SOURCE,
									   BK_KIND_WAL, "000000010000000000000001",
									   &first_id, &result, &err));
	fail_dir_fsync = false;
	bk_repo_upload_free(first);

	/* The re-send finds it in place: made durable before it counts. */
	again = upload_object(f, "t.0.2", "000000010000000000000001", "first",
						  &again_id);
	dir_fsyncs = 0;
	assert_true(bk_repo_upload_commit(again, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_WAL, "000000010000000000000001",
									  &again_id, &result, &err));
	assert_int_equal(result, BK_PUT_EXISTS_IDENTICAL);
	assert_true(dir_fsyncs > 0);

	/* And if that cannot be done, the re-send is not called archived. */
	fail_dir_fsync = true;
	assert_false(bk_repo_upload_commit(again, BK_REPO_ARCHIVE, SOURCE,
									   BK_KIND_WAL, "000000010000000000000001",
									   &again_id, &result, &err));
	fail_dir_fsync = false;
	bk_repo_upload_free(again);
}

static void
test_substituted_object(void **state)
{
	Fixture *f = *state;
	BkObjectIdentity identity;
	BkRepoUpload *upload;
	BkPutResult result;
	BkDecoder *decoder;
	BkObjectTracker tracker;
	uint8_t *data;
	size_t len;
	BkError err;

	/* Frames of object A stored under name B: both checks refuse it. */
	upload =
		upload_object(f, "t.0.4", "000000010000000000000002", "two", &identity);
	assert_true(bk_repo_upload_commit(upload, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_WAL, "000000010000000000000003",
									  &identity, &result, &err));
	bk_repo_upload_free(upload);
	assert_false(bk_repo_check_object(f->repo, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_WAL, "000000010000000000000003",
									  "000000010000000000000003", &tracker,
									  &err));
	assert_error_contains(&err, "not the one its name says");
	decoder = bk_decoder_new(&f->ring, &err);
	assert_false(bk_repo_decrypt_to_memory(
		f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_WAL,
		"000000010000000000000003", decoder, 1024, &data, &len, &err));
	assert_error_contains(&err,
						  "holds wal object \"000000010000000000000002\"");
	bk_decoder_free(decoder);
}

/* The directory backend, but the object in place vanishes once, unread. */
static const BkRepoBackend *real_backend;

static BkRepoReader *
reader_open_after_expire(const BkRepo *repo, const char *key, BkError *err)
{
	static bool expired;

	if (!expired)
	{
		expired = true;
		assert_true(real_backend->delete ((BkRepo *) repo, key, err));
	}
	return real_backend->reader_open(repo, key, err);
}

/* Commit an upload of content as WAL segment name; its result. */
static bool
commit_wal(Fixture *f, const char *tag, const char *name, const char *content,
		   BkPutResult *result, BkError *err)
{
	BkObjectIdentity identity;
	BkRepoUpload *upload = upload_object(f, tag, name, content, &identity);
	bool ok = bk_repo_upload_commit(upload, BK_REPO_ARCHIVE, SOURCE,
									BK_KIND_WAL, name, &identity, result, err);

	bk_repo_upload_free(upload);
	return ok;
}

/*
 * A re-send finds a copy in place that cannot be read to compare: an error
 * (the shipper stops and reads it again from Kafka), never a conflict copy,
 * which would block restoring the segment until an operator steps in.
 * Only a copy read and found malformed is a conflict.  A copy removed
 * before it is read ("bk expire") is taken over by the re-send.
 */
static void
test_unreadable_copy_in_place(void **state)
{
	Fixture *f = *state;
	const char *name = "000000010000000000000004";
	BkRepoBackend expiring;
	BkRepoStat stat;
	BkPutResult result;
	char path[1024];
	BkError err;

	assert_true(commit_wal(f, "t.2.1", name, "four", &result, &err));
	assert_int_equal(result, BK_PUT_CREATED);

	/* Removed between finding it and reading it: the re-send takes over. */
	real_backend = f->repo->backend;
	expiring = *real_backend;
	expiring.reader_open = reader_open_after_expire;
	f->repo->backend = &expiring;
	if (!commit_wal(f, "t.2.2", name, "four", &result, &err))
		fail_msg("%s", err.message);
	f->repo->backend = real_backend;
	assert_int_equal(result, BK_PUT_CREATED);
	assert_true(bk_repo_stat(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_WAL,
							 name, &stat, &err));
	assert_true(stat.exists);
	if (s3_endpoint())
		return; /* the copies below are made unreadable as files */

	/* Unreadable (ELOOP as root, where chmod 000 would not stop reads). */
	snprintf(path, sizeof(path), "%s/%s/wal/%s", f->location, SOURCE, name);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(symlink(path, path), 0);
	assert_false(commit_wal(f, "t.2.3", name, "four", &result, &err));
	assert_int_equal(err.code, BK_ERR_STORE);
	assert_error_contains(&err, "could not read the copy already archived");

	/* Gone on both tries (a name that stays taken, the file it names not). */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(symlink("nowhere", path), 0);
	assert_false(commit_wal(f, "t.2.4", name, "four", &result, &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);

	/* Read, and not a bk object: a conflict, both kept. */
	assert_int_equal(unlink(path), 0);
	assert_true(bk_write_file_durable(path, "not frames", 10, 0644, &err));
	assert_true(commit_wal(f, "t.2.5", name, "four", &result, &err));
	assert_int_equal(result, BK_PUT_EXISTS_DIFFERENT);
}

typedef struct Seen
{
	int objects;
	int prefixes;
	char names[16][128];
} Seen;

static bool
collect(void *arg, const BkRepoEntry *entry, BkError *err)
{
	Seen *seen = arg;

	if (entry->is_prefix)
		seen->prefixes++;
	else
		seen->objects++;
	if (seen->objects + seen->prefixes <= 16)
		bk_strlcpy(seen->names[seen->objects + seen->prefixes - 1], entry->name,
				   128);
	return true;
}

static bool
has_name(const Seen *seen, const char *name)
{
	for (int idx = 0; idx < seen->objects + seen->prefixes && idx < 16; idx++)
		if (strcmp(seen->names[idx], name) == 0)
			return true;
	return false;
}

static void
put(Fixture *f, int kind, const char *name)
{
	BkObjectIdentity identity;
	BkRepoUpload *upload;
	BkPutResult result;
	char tag[64];
	static int count;
	BkError err;

	snprintf(tag, sizeof(tag), "t.1.%d", ++count);
	upload = upload_object(f, tag, name, name, &identity);
	assert_true(bk_repo_upload_commit(upload, BK_REPO_ARCHIVE, SOURCE, kind,
									  name, &identity, &result, &err));
	assert_int_equal(result, BK_PUT_CREATED);
	bk_repo_upload_free(upload);
}

static void
test_list_and_delete(void **state)
{
	Fixture *f = *state;
	Seen seen = {0};
	char **sources;
	int count;
	bool exists;
	BkError err;

	put(f, BK_KIND_SNAPSHOT, "S1/snapshot.json");
	put(f, BK_KIND_SNAPSHOT, "S1/data/base/1/1259");
	put(f, BK_KIND_SNAPSHOT, "S1/data/global/pg_control");
	put(f, BK_KIND_SNAPSHOT, "S2/snapshot.json");

	/* One level: snapshot ids come back as prefixes. */
	assert_true(bk_repo_list(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_SNAPSHOT,
							 "", false, collect, &seen, &err));
	assert_int_equal(seen.prefixes, 2);
	assert_int_equal(seen.objects, 0);
	assert_true(has_name(&seen, "S1") && has_name(&seen, "S2"));

	/* Recursive below a prefix: full names. */
	memset(&seen, 0, sizeof(seen));
	assert_true(bk_repo_list(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_SNAPSHOT,
							 "S1/", true, collect, &seen, &err));
	assert_int_equal(seen.objects, 3);
	assert_true(has_name(&seen, "S1/data/base/1/1259"));

	/* A prefix that is not a whole "directory" filters. */
	memset(&seen, 0, sizeof(seen));
	assert_true(bk_repo_list(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_SNAPSHOT,
							 "S1/data/g", true, collect, &seen, &err));
	assert_int_equal(seen.objects, 1);
	assert_string_equal(seen.names[0], "S1/data/global/pg_control");

	/* Nothing stored of a kind lists nothing. */
	memset(&seen, 0, sizeof(seen));
	assert_true(bk_repo_list(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_BINLOG,
							 "", false, collect, &seen, &err));
	assert_int_equal(seen.objects + seen.prefixes, 0);

	/* But what cannot be read is an error, never an empty listing. */
	if (!s3_endpoint())
	{
		char path[700];

		snprintf(path, sizeof(path), "%s/%s/binlog", f->location, SOURCE);
		assert_true(bk_write_file_durable(path, "x", 1, 0644, &err));
		assert_false(bk_repo_list(f->repo, BK_REPO_ARCHIVE, SOURCE,
								  BK_KIND_BINLOG, "", false, collect, &seen,
								  &err));
		assert_error_contains(&err, "Not a directory");
		assert_int_equal(unlink(path), 0);
	}

	assert_true(bk_repo_sources(f->repo, &sources, &count, &err));
	assert_int_equal(count, 1);
	assert_string_equal(sources[0], SOURCE);
	bk_repo_free_list(sources, count);
	assert_true(bk_repo_source_exists(f->repo, SOURCE, &exists, &err));
	assert_true(exists);
	assert_true(bk_repo_source_exists(f->repo, "other", &exists, &err));
	assert_false(exists);

	/* Delete: missing is success; a prefix goes whole. */
	assert_true(bk_repo_delete(f->repo, BK_REPO_ARCHIVE, SOURCE,
							   BK_KIND_SNAPSHOT, "S2/snapshot.json", &err));
	assert_true(bk_repo_delete(f->repo, BK_REPO_ARCHIVE, SOURCE,
							   BK_KIND_SNAPSHOT, "S2/snapshot.json", &err));
	assert_true(bk_repo_delete_prefix(f->repo, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_SNAPSHOT, "S1/", &err));
	memset(&seen, 0, sizeof(seen));
	assert_true(bk_repo_list(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_SNAPSHOT,
							 "", true, collect, &seen, &err));
	assert_int_equal(seen.objects, 0);
	assert_false(bk_repo_delete_prefix(f->repo, BK_REPO_ARCHIVE, SOURCE,
									   BK_KIND_SNAPSHOT, "../", &err));
}

/*
 * A directory repository's symbolic links are followed when listing, as
 * when reading: a snapshot's directory moved to another disk with a link
 * left in its place is still listed (it was skipped, and read as absent),
 * and a link that leads nowhere is an error, never an empty listing.
 */
static void
test_symlinks_listed(void **state)
{
	Fixture *f = *state;
	Seen seen = {0};
	char kind_dir[700];
	char moved[700];
	char link_path[800];
	BkError err;

	if (s3_endpoint())
		return; /* the directory backend's listing */
	put(f, BK_KIND_SNAPSHOT, "S1/snapshot.json");
	put(f, BK_KIND_SNAPSHOT, "S1/data/base/1/1259");
	put(f, BK_KIND_SNAPSHOT, "S2/snapshot.json");
	snprintf(kind_dir, sizeof(kind_dir), "%s/%s/snapshot", f->location, SOURCE);
	snprintf(moved, sizeof(moved), "%s/other-disk-S1", f->dir);
	snprintf(link_path, sizeof(link_path), "%s/S1", kind_dir);
	assert_int_equal(rename(link_path, moved), 0);
	assert_int_equal(symlink(moved, link_path), 0);

	assert_true(bk_repo_list(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_SNAPSHOT,
							 "", false, collect, &seen, &err));
	assert_int_equal(seen.prefixes, 2);
	memset(&seen, 0, sizeof(seen));
	assert_true(bk_repo_list(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_SNAPSHOT,
							 "", true, collect, &seen, &err));
	assert_int_equal(seen.objects, 3);
	assert_true(has_name(&seen, "S1/data/base/1/1259"));

	/*
	 * Nothing is removed through a link (bk expire would remove files
	 * named like objects wherever it leads).
	 */
	assert_false(bk_repo_delete(f->repo, BK_REPO_ARCHIVE, SOURCE,
								BK_KIND_SNAPSHOT, "S1/data/base/1/1259", &err));
	assert_error_contains(&err, "is a symbolic link: bk does not remove");
	assert_false(bk_repo_delete_prefix(f->repo, BK_REPO_ARCHIVE, SOURCE,
									   BK_KIND_SNAPSHOT, "S1/", &err));
	assert_error_contains(&err, "is a symbolic link: bk does not remove");
	snprintf(link_path, sizeof(link_path), "%s/data/base/1/1259", moved);
	assert_int_equal(access(link_path, F_OK), 0);

	/* A link to a file is listed as the object it stands for. */
	snprintf(moved, sizeof(moved), "%s/other-disk-S2.json", f->dir);
	snprintf(link_path, sizeof(link_path), "%s/S2/snapshot.json", kind_dir);
	assert_int_equal(rename(link_path, moved), 0);
	assert_int_equal(symlink(moved, link_path), 0);
	memset(&seen, 0, sizeof(seen));
	assert_true(bk_repo_list(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_SNAPSHOT,
							 "S2/", true, collect, &seen, &err));
	assert_int_equal(seen.objects, 1);
	assert_string_equal(seen.names[0], "S2/snapshot.json");

	/* A link to nothing, or a loop of links, is an error. */
	assert_int_equal(unlink(moved), 0);
	assert_false(bk_repo_list(f->repo, BK_REPO_ARCHIVE, SOURCE,
							  BK_KIND_SNAPSHOT, "", true, collect, &seen,
							  &err));
	assert_error_contains(&err, "could not follow the symbolic link");
	assert_error_contains(&err, "S2/snapshot.json");
	assert_int_equal(unlink(link_path), 0);
	snprintf(link_path, sizeof(link_path), "%s/S3", kind_dir);
	assert_int_equal(symlink("S3", link_path), 0);
	assert_false(bk_repo_list(f->repo, BK_REPO_ARCHIVE, SOURCE,
							  BK_KIND_SNAPSHOT, "", false, collect, &seen,
							  &err));
	assert_error_contains(&err, "Too many levels of symbolic links");
}

static void
test_names(void **state)
{
	Fixture *f = *state;
	BkRepoStat stat;
	BkError err;

	assert_false(bk_repo_stat(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_WAL,
							  "../../etc/passwd", &stat, &err));
	assert_error_contains(&err, "invalid object name");
	assert_false(bk_repo_stat(f->repo, BK_REPO_ARCHIVE, "../x", BK_KIND_WAL,
							  "a", &stat, &err));
	assert_error_contains(&err, "invalid source id");
	assert_false(
		bk_repo_stat(f->repo, BK_REPO_ARCHIVE, SOURCE, 99, "a", &stat, &err));
	assert_false(bk_repo_upload_begin(f->repo, "a/b", &err) != NULL);
	assert_false(bk_shipper_id_valid(".hidden"));
	assert_false(bk_shipper_id_valid("a/b"));
	assert_false(bk_shipper_id_valid(""));
	assert_true(bk_shipper_id_valid("bk-shipper-host.example_1"));
}

static void
test_spools(void **state)
{
	Fixture *f = *state;
	BkRepo *twin;
	BkRepo *other;
	BkRepoUpload *left;
	BkObjectIdentity identity;
	uint64_t removed;
	char path[700];
	BkError err;

	/* A second shipper with the same id: refused while the first runs. */
	twin = open_repo(f, f->location, true, &err);
	assert_non_null(twin);
	assert_false(bk_repo_spool_open(twin, "unit-1", &err));
	assert_error_contains(&err,
						  "another bk-shipper with shipper_id \"unit-1\"");
	assert_int_equal(err.code, BK_ERR_CONFIG);
	bk_repo_close(twin);
	if (s3_endpoint())
		return; /* the rest looks into the directory backend's spools */

	/* Another shipper leaves an upload behind and stops. */
	other = open_repo(f, f->location, true, &err);
	assert_true(bk_repo_spool_open(other, "unit-2", &err));
	left = bk_repo_upload_begin(other, "t.2.1", &err);
	assert_non_null(left);
	assert_true(bk_repo_upload_write(left, "x", 1, &err));
	snprintf(path, sizeof(path), "%s/.spool/unit-2/t.2.1", f->location);
	assert_int_equal(access(path, F_OK), 0);
	/* While it runs, housekeeping leaves its spool alone. */
	assert_true(bk_repo_clean_uploads(f->repo, &removed, &err));
	assert_int_equal(removed, 0);
	assert_int_equal(access(path, F_OK), 0);
	/* Once it stopped (its lock released), the upload is removed. */
	free(left); /* the process "died": nothing cleaned up after it */
	bk_repo_close(other);
	assert_true(bk_repo_clean_uploads(f->repo, &removed, &err));
	assert_int_equal(removed, 1);
	assert_int_not_equal(access(path, F_OK), 0);
	/*
	 * The spool was moved aside under its lock and removed whole: its
	 * owner, starting while housekeeping empties it, never waits for that.
	 */
	snprintf(path, sizeof(path), "%s/.spool/unit-2", f->location);
	assert_int_not_equal(access(path, F_OK), 0);
	other = open_repo(f, f->location, true, &err);
	assert_true(bk_repo_spool_open(other, "unit-2", &err));
	bk_repo_close(other);

	/*
	 * A spool moved aside by a housekeeping that stopped before removing
	 * it: taken over once untouched for ten minutes, never sooner (its
	 * cleaner may still be at work).
	 */
	snprintf(path, sizeof(path), "%s/.spool/.trash-0123456789abcdef",
			 f->location);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/.spool/.trash-0123456789abcdef/t.3.1",
			 f->location);
	assert_true(bk_write_file_durable(path, "x", 1, 0644, &err));
	snprintf(path, sizeof(path), "%s/.spool/.trash-0123456789abcdef",
			 f->location);
	assert_true(bk_repo_clean_uploads(f->repo, &removed, &err));
	assert_int_equal(removed, 0);
	assert_int_equal(access(path, F_OK), 0);
	{
		struct timeval old_times[2] = {{time(NULL) - 3600, 0},
									   {time(NULL) - 3600, 0}};

		assert_int_equal(utimes(path, old_times), 0);
	}
	assert_true(bk_repo_clean_uploads(f->repo, &removed, &err));
	assert_int_equal(removed, 1);
	assert_int_not_equal(access(path, F_OK), 0);

	/* This shipper's own uploads are never housekeeping's. */
	left =
		upload_object(f, "t.2.2", "000000010000000000000004", "x", &identity);
	assert_true(bk_repo_clean_uploads(f->repo, &removed, &err));
	assert_int_equal(removed, 0);
	bk_repo_upload_free(left);
}

static void
test_rejected(void **state)
{
	Fixture *f = *state;
	uint64_t count;
	int64_t oldest;
	BkError err;

	assert_true(bk_repo_rejected_summary(f->repo, &count, &oldest, &err));
	assert_int_equal(count, 0);
	assert_true(bk_repo_quarantine(f->repo, "bk.wal", 3, 42, "junk", 4,
								   "frame checksum mismatch", &err));
	assert_true(bk_repo_quarantine(f->repo, "bk.wal", 3, 43, "junk", 4,
								   "bad magic", &err));
	assert_true(bk_repo_rejected_summary(f->repo, &count, &oldest, &err));
	assert_int_equal(count, 2);
	assert_true(oldest > 0);
}

/*
 * A name the repository can never store: a component longer than a file
 * system takes (an encoded data-directory file name), or on S3 a key
 * longer than 1024 bytes.  The commit says so with its own code, which the
 * shipper takes as a rejection (it stopped, and after every restart met the
 * object again), and the upload is kept in rejected/ with the reason.
 */
static void
test_refused_names(void **state)
{
	Fixture *f = *state;
	char long_component[400];
	char long_key[BK_OBJECT_NAME_MAX + 1];
	const char *refused = s3_endpoint() ? long_key : long_component;
	BkObjectIdentity identity;
	BkRepoUpload *upload;
	BkPutResult result;
	uint64_t count;
	int64_t oldest;
	BkError err;

	/* snap-1/base/<300 bytes>: one component past any file system's 255. */
	snprintf(long_component, sizeof(long_component), "snap-1/base/%0300d", 7);
	/* 1000 bytes of 100-byte components: a file system takes it, S3 not. */
	long_key[0] = '\0';
	for (int componentIdx = 0; componentIdx < 10; componentIdx++)
		snprintf(long_key + strlen(long_key),
				 sizeof(long_key) - strlen(long_key), "%s%099d",
				 componentIdx ? "/" : "", componentIdx);
	assert_true(bk_object_name_valid(long_component, strlen(long_component)));
	assert_true(bk_object_name_valid(long_key, strlen(long_key)));

	upload = upload_object(f, "t.5.1", refused, "x", &identity);
	assert_false(bk_repo_upload_commit(upload, BK_REPO_ARCHIVE, SOURCE,
									   BK_KIND_SNAPSHOT, refused, &identity,
									   &result, &err));
	assert_int_equal(err.code, BK_ERR_REFUSED);
	print_message("# %s\n", err.message);
	assert_true(bk_repo_upload_quarantine(upload, "bk.snapshot", 2, 77,
										  err.message, &err));
	/* Again after a restart (the same offset read again): kept once. */
	assert_true(
		bk_repo_upload_quarantine(upload, "bk.snapshot", 2, 77, "again", &err));
	bk_repo_upload_free(upload);
	assert_true(bk_repo_rejected_summary(f->repo, &count, &oldest, &err));
	assert_int_equal(count, 1);

	/*
	 * A long name within the limits is stored.  Not tried on S3: the test
	 * store (s3proxy) keeps objects in a file system, whose limit a
	 * 300-byte component would meet.
	 */
	if (s3_endpoint())
		return;
	upload = upload_object(f, "t.5.2", long_key, "y", &identity);
	assert_true(bk_repo_upload_commit(upload, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_SNAPSHOT, long_key, &identity,
									  &result, &err));
	assert_int_equal(result, BK_PUT_CREATED);
	bk_repo_upload_free(upload);
}

static int
open_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	int count = -1; /* the directory's own */

	assert_non_null(dir);
	while (readdir(dir) != NULL)
		count++;
	closedir(dir);
	return count - 2; /* "." and ".." */
}

static size_t
heap_bytes(void)
{
	struct mallinfo2 info = mallinfo2();

	return info.uordblks + info.hblkhd;
}

/*
 * Thousands of uploads open at once, each with its first chunk only: what
 * a shipper holds in a Kafka brownout, where every retry of a source
 * starts a new attempt and each is given up only after abandon_after.
 * Under a soft limit of 256 files (a shipper's is 1024) every one is begun
 * and written, no fd is held between chunks, and each costs little memory
 * (an fd and 160 KB of part MD5s each, on S3, ran the shipper out of files
 * and stopped it, again after every restart).
 */
static void
test_many_open_uploads(void **state)
{
	Fixture *f = *state;
	enum
	{
		UPLOADS = 2000
	};
	BkRepoUpload **uploads = calloc(UPLOADS, sizeof(*uploads));
	struct rlimit saved;
	struct rlimit low;
	uint8_t chunk[4096];
	int fds_before;
	size_t heap_before;
	BkError err;

	test_fill(chunk, sizeof(chunk), 3, false);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	low = saved;
	low.rlim_cur = 256;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	fds_before = open_fds();
	heap_before = heap_bytes();
	for (int uploadIdx = 0; uploadIdx < UPLOADS; uploadIdx++)
	{
		char tag[64];

		snprintf(tag, sizeof(tag), "bk.wal.0.%d.attempt", uploadIdx);
		uploads[uploadIdx] = bk_repo_upload_begin(f->repo, tag, &err);
		if (uploads[uploadIdx] == NULL ||
			!bk_repo_upload_write(uploads[uploadIdx], chunk, sizeof(chunk),
								  &err))
			fail_msg("upload %d: %s", uploadIdx, err.message);
	}
	assert_true(open_fds() <= fds_before + 2);
	print_message("# %zu bytes per open upload\n",
				  (heap_bytes() - heap_before) / UPLOADS);
	assert_true(heap_bytes() - heap_before < (size_t) UPLOADS * 16 * 1024);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);

	/* Chunks keep coming to an upload closed in between. */
	assert_true(bk_repo_upload_write(uploads[7], chunk, sizeof(chunk), &err));
	assert_true(bk_repo_upload_finish(uploads[7], &err));
	assert_false(bk_repo_upload_write(uploads[7], chunk, 1, &err));
	for (int uploadIdx = 0; uploadIdx < UPLOADS; uploadIdx++)
		bk_repo_upload_free(uploads[uploadIdx]);
	assert_true(open_fds() <= fds_before);
	free(uploads);
}

/* Commit upload as snapshot object name and check it reads back as want. */
static void
commit_and_check(Fixture *f, BkRepoUpload *upload, const char *name,
				 const uint8_t *want, size_t want_len)
{
	BkObjectIdentity identity;
	BkRepoReader *reader;
	BkPutResult result;
	BkRepoStat stat;
	uint8_t *back = malloc(want_len + 1);
	BkError err;

	memset(&identity, 0, sizeof(identity));
	assert_true(bk_repo_upload_commit(upload, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_SNAPSHOT, name, &identity,
									  &result, &err));
	assert_true(bk_repo_stat(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_SNAPSHOT,
							 name, &stat, &err));
	assert_true(stat.exists);
	assert_int_equal(stat.size, want_len);
	if (want_len > 0)
	{
		reader = bk_repo_reader_open(f->repo, BK_REPO_ARCHIVE, SOURCE,
									 BK_KIND_SNAPSHOT, name, &err);
		assert_non_null(reader);
		assert_true(bk_repo_reader_read(reader, 0, back, want_len, &err));
		assert_memory_equal(back, want, want_len);
		bk_repo_reader_close(reader);
	}
	free(back);
}

/*
 * Store size bytes written in pieces of piece bytes as object name, and
 * check that what reads back is what was written.
 */
static void
store_and_check(Fixture *f, const char *name, size_t size, size_t piece,
				uint64_t seed)
{
	uint8_t *data = malloc(size + 1);
	BkRepoUpload *upload;
	BkError err;
	char tag[64];

	test_fill(data, size, seed, false);
	snprintf(tag, sizeof(tag), "t.%llu.1", (unsigned long long) seed);
	upload = bk_repo_upload_begin(f->repo, tag, &err);
	assert_non_null(upload);
	for (size_t done = 0; done < size;)
	{
		size_t take = size - done < piece ? size - done : piece;

		if (!bk_repo_upload_write(upload, data + done, take, &err))
			fail_msg("%s: %s", name, err.message);
		done += take;
	}
	if (!bk_repo_upload_finish(upload, &err))
		fail_msg("%s: %s", name, err.message);
	commit_and_check(f, upload, name, data, size);
	bk_repo_upload_free(upload);
	free(data);
}

/*
 * Objects of every length around a block and the backend's 1 MiB buffer,
 * written in pieces that do and do not line up with either, read back
 * exactly; in the directory backend, through O_DIRECT.
 */
static void
test_object_lengths(void **state)
{
	Fixture *f = *state;
	static const size_t sizes[] = {0,
								   1,
								   4095,
								   4096,
								   4097,
								   12288 + 5,
								   1024 * 1024 - 1,
								   1024 * 1024,
								   1024 * 1024 + 1,
								   3 * 1024 * 1024 + 777};
	static const size_t pieces[] = {1000, 4096, 777777, 2 * 1024 * 1024 + 3};
	uint64_t seed = 1;

	for (size_t sizeIdx = 0; sizeIdx < sizeof(sizes) / sizeof(sizes[0]);
		 sizeIdx++)
		for (size_t pieceIdx = 0; pieceIdx < sizeof(pieces) / sizeof(pieces[0]);
			 pieceIdx++)
		{
			char name[64];

			/* One-byte pieces only where they stay quick. */
			if (pieces[pieceIdx] == 1000 && sizes[sizeIdx] > 65536)
				continue;
			snprintf(name, sizeof(name), "len/%zu-%zu", sizes[sizeIdx],
					 pieces[pieceIdx]);
			store_and_check(f, name, sizes[sizeIdx], pieces[pieceIdx], seed++);
		}
	store_and_check(f, "len/bytes", 9000, 1, seed++);
	if (!s3_endpoint())
		assert_true(direct_opens > 0);
}

/* Where a frame read by test_read_ahead_large_frames ends. */
typedef struct ReadAheadVisit
{
	uint64_t pos;
	uint64_t size;
	int frames;
} ReadAheadVisit;

static bool
check_read_ahead(void *arg, const uint8_t *frame, size_t len, BkError *err)
{
	ReadAheadVisit *visit = arg;
	uint64_t want;

	visit->pos += len;
	visit->frames++;
	/* The next frame whole is asked for (one the size of this one). */
	want = visit->pos + len;
	if (want > visit->size)
		want = visit->size;
	if (advised_to < want)
		fail_msg("after frame %d (read up to %llu), read-ahead reaches only "
				 "%llu",
				 visit->frames, (unsigned long long) visit->pos,
				 (unsigned long long) advised_to);
	return true;
}

/*
 * An object read whole, in order, is read ahead of its reads, whatever its
 * frames' size: with chunk_size 16 MiB (the largest) and data that does not
 * compress, a frame is larger than the 8 MiB window, and once a frame is
 * read the next one must be asked for whole, so that it is read while this
 * one is decoded (the window used to cover only the frame being read).
 */
static void
test_read_ahead_large_frames(void **state)
{
	Fixture *f = *state;
	const uint32_t payload = 16 * 1024 * 1024;
	const uint64_t frame_len =
		BK_FRAME_FIXED_LEN + (uint64_t) payload + BK_FRAME_TRAILER_LEN;
	ReadAheadVisit visit = {.size = 3 * frame_len};
	char path[1200];
	uint8_t fixed[BK_FRAME_FIXED_LEN] = {0};
	BkError err;
	int fd;

	if (s3_endpoint())
		return; /* the directory backend's reader */
	snprintf(path, sizeof(path), "%s/%s", f->location, SOURCE);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/%s/wal", f->location, SOURCE);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/%s/wal/large-frames", f->location, SOURCE);
	/* Frames only as visit_frames sees them: magic and lengths (sparse). */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t) visit.size), 0);
	memcpy(fixed, BK_FRAME_MAGIC, 4);
	bk_put_be32(fixed + BK_OFF_HEADER_LEN, BK_FRAME_FIXED_LEN);
	bk_put_be32(fixed + BK_OFF_PAYLOAD_LEN, payload);
	for (int frameIdx = 0; frameIdx < 3; frameIdx++)
		assert_int_equal(
			pwrite(fd, fixed, sizeof(fixed), (off_t) (frameIdx * frame_len)),
			(ssize_t) sizeof(fixed));
	assert_int_equal(close(fd), 0);

	advised_to = 0;
	if (!bk_repo_read_frames(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_WAL,
							 "large-frames", false, check_read_ahead, &visit,
							 &err))
		fail_msg("%s", err.message);
	assert_int_equal(visit.frames, 3);

	/* Headers alone skip most bytes: nothing is asked for. */
	advised_to = 0;
	visit = (ReadAheadVisit){.size = 0};
	assert_true(bk_repo_read_frames(f->repo, BK_REPO_ARCHIVE, SOURCE,
									BK_KIND_WAL, "large-frames", true,
									check_read_ahead, &visit, &err));
	assert_int_equal(advised_to, 0);
}

/*
 * A file system that refuses O_DIRECT, when the spool file is opened or
 * at its first write, or only at the last (padded) block of an object
 * smaller than a block: the objects are stored exactly with buffered
 * writes, and O_DIRECT is not tried again for the repository.
 */
static void
test_direct_refused(void **state)
{
	Fixture *f = *state;
	BkError err;
	int opens;

	/* The S3 backend's spool is read back for its parts: no O_DIRECT. */
	if (s3_endpoint())
		return;
	refuse_direct_open = true;
	store_and_check(f, "refused/open", 3 * 4096 + 17, 5000, 1);
	assert_int_equal(direct_opens, 1);
	store_and_check(f, "refused/later", 100, 60, 2);
	assert_int_equal(direct_opens, 1);
	bk_repo_close(f->repo);

	/* Open taken, the first write refused. */
	refuse_direct_open = false;
	refuse_direct_pwrite = true;
	f->repo = open_repo(f, f->location, false, &err);
	assert_non_null(f->repo);
	assert_true(bk_repo_spool_open(f->repo, "unit-1", &err));
	opens = direct_opens;
	store_and_check(f, "refused/write", 3 * 4096 + 17, 5000, 3);
	assert_int_equal(direct_opens, opens + 1);
	bk_repo_close(f->repo);

	/* Smaller than a block: refused at the padded last block. */
	f->repo = open_repo(f, f->location, false, &err);
	assert_non_null(f->repo);
	assert_true(bk_repo_spool_open(f->repo, "unit-1", &err));
	store_and_check(f, "refused/finish", 100, 60, 4);
	store_and_check(f, "refused/after", 10000, 3000, 5);
}

/*
 * A write that fails after some of the object reached the disk is an
 * error naming the spool file, never a silent switch to buffered writes
 * (the bytes held for the next block would be lost).
 */
static void
test_direct_fails_midway(void **state)
{
	Fixture *f = *state;
	uint8_t chunk[8192];
	BkRepoUpload *upload;
	BkError err;

	if (s3_endpoint())
		return;
	test_fill(chunk, sizeof(chunk), 9, false);
	upload = bk_repo_upload_begin(f->repo, "t.1.1", &err);
	assert_non_null(upload);
	assert_true(bk_repo_upload_write(upload, chunk, 5000, &err));
	refuse_direct_pwrite = true;
	assert_false(bk_repo_upload_write(upload, chunk, sizeof(chunk), &err));
	assert_non_null(strstr(err.message, "could not write spool file"));
	bk_repo_upload_free(upload);
}

/*
 * The switch to buffered writes fails as it appends the bytes held for
 * the next block (ENOSPC): a retried finish, or a retried write, still
 * stores them, once and in order, never an object without them.
 */
static void
test_direct_fallback_retried(void **state)
{
	Fixture *f = *state;
	uint8_t chunk[256];
	BkRepoUpload *upload;
	BkError err;

	if (s3_endpoint())
		return;
	test_fill(chunk, sizeof(chunk), 11, false);

	/* Refused at finish, the tail's append fails, finish is retried. */
	upload = bk_repo_upload_begin(f->repo, "t.1.1", &err);
	assert_non_null(upload);
	assert_true(bk_repo_upload_write(upload, chunk, 100, &err));
	refuse_direct_open = true;
	fail_append_opens = 1;
	assert_false(bk_repo_upload_finish(upload, &err));
	assert_true(bk_repo_upload_finish(upload, &err));
	commit_and_check(f, upload, "fallback/finish", chunk, 100);
	bk_repo_upload_free(upload);
	bk_repo_close(f->repo);

	/* Refused at a write, the tail's append fails, the write is retried. */
	refuse_direct_open = false;
	f->repo = open_repo(f, f->location, false, &err);
	assert_non_null(f->repo);
	assert_true(bk_repo_spool_open(f->repo, "unit-1", &err));
	upload = bk_repo_upload_begin(f->repo, "t.2.1", &err);
	assert_non_null(upload);
	assert_true(bk_repo_upload_write(upload, chunk, 100, &err));
	refuse_direct_open = true;
	fail_append_opens = 1;
	assert_false(bk_repo_upload_write(upload, chunk + 100, 50, &err));
	assert_true(bk_repo_upload_write(upload, chunk + 100, 50, &err));
	assert_true(bk_repo_upload_finish(upload, &err));
	commit_and_check(f, upload, "fallback/write", chunk, 150);
	bk_repo_upload_free(upload);
}

/*
 * finish called again once the upload is committed (its spool file is then
 * the object too): the object is left as it is, never written again, not
 * even for a moment padded to a block.
 */
/* Spool content as an upload, sealed: all written, nothing fsynced yet. */
static BkRepoUpload *
sealed_upload(Fixture *f, const char *tag, const uint8_t *content, size_t len)
{
	BkRepoUpload *upload = bk_repo_upload_begin(f->repo, tag, NULL);
	BkError err;

	assert_non_null(upload);
	assert_true(bk_repo_upload_write(upload, content, len, &err));
	assert_true(bk_repo_upload_seal(upload, &err));
	/* Sealed twice is sealed; nothing more may be written. */
	assert_true(bk_repo_upload_seal(upload, &err));
	assert_false(bk_repo_upload_write(upload, content, 1, &err));
	return upload;
}

/*
 * Commits in a batch: each upload's bytes are fsynced before its name is
 * linked, and the directories are synced once each, when the batch ends,
 * not once per object.  A duplicate found in place syncs its directory too,
 * in a batch or not: the copy in place may be another commit's whose name is
 * not durable yet.  A directory sync that fails fails the batch.
 */
static void
test_batch_commit(void **state)
{
	Fixture *f = *state;
	uint8_t content[3][5000];
	const char *names[3] = {"a", "b", "c"};
	BkRepoUpload *uploads[3];
	BkObjectIdentity identity;
	BkPutResult result;
	BkRepoUpload *again;
	BkError err;

	if (s3_endpoint())
		return;
	memset(&identity, 0, sizeof(identity));
	for (int objIdx = 0; objIdx < 3; objIdx++)
	{
		char tag[16];

		test_fill(content[objIdx], sizeof(content[objIdx]),
				  (uint64_t) objIdx + 40, false);
		snprintf(tag, sizeof(tag), "t.1.%d", objIdx);
		uploads[objIdx] =
			sealed_upload(f, tag, content[objIdx], sizeof(content[objIdx]));
	}
	/* The directories made first: creating one syncs its parent. */
	for (int kindIdx = 0; kindIdx < 2; kindIdx++)
	{
		again = sealed_upload(f, "t.1.8", content[0], sizeof(content[0]));
		assert_true(bk_repo_upload_finish(again, &err));
		assert_true(
			bk_repo_upload_commit(again, BK_REPO_ARCHIVE, SOURCE,
								  kindIdx ? BK_KIND_WAL : BK_KIND_SNAPSHOT,
								  kindIdx ? "000000010000000000000000" : "seed",
								  &identity, &result, &err));
		bk_repo_upload_free(again);
	}
	file_fsyncs = dir_fsyncs = 0;
	bk_repo_batch_begin(f->repo);
	for (int objIdx = 0; objIdx < 3; objIdx++)
	{
		assert_true(bk_repo_upload_finish(uploads[objIdx], &err));
		assert_int_equal(file_fsyncs, objIdx + 1);
		/* Two snapshot objects and one WAL segment: two directories. */
		assert_true(bk_repo_upload_commit(
			uploads[objIdx], BK_REPO_ARCHIVE, SOURCE,
			objIdx == 2 ? BK_KIND_WAL : BK_KIND_SNAPSHOT,
			objIdx == 2 ? "000000010000000000000001" : names[objIdx], &identity,
			&result, &err));
		assert_int_equal(result, BK_PUT_CREATED);
	}
	assert_int_equal(dir_fsyncs, 0);
	/*
	 * A copy found in place is made durable at once, its directory and
	 * those above it (test_existing_copy_made_durable), batch or not.
	 */
	again = sealed_upload(f, "t.1.9", content[0], sizeof(content[0]));
	assert_true(bk_repo_upload_finish(again, &err));
	assert_true(bk_repo_upload_commit(again, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_SNAPSHOT, "a", &identity, &result,
									  &err));
	assert_int_not_equal(result, BK_PUT_CREATED); /* not frames: differs */
	bk_repo_upload_free(again);
	assert_true(dir_fsyncs > 0);
	dir_fsyncs = 0;
	assert_true(bk_repo_batch_end(f->repo, &err));
	assert_int_equal(dir_fsyncs, 2);
	for (int objIdx = 0; objIdx < 2; objIdx++)
		commit_and_check(f, uploads[objIdx], names[objIdx], content[objIdx],
						 sizeof(content[objIdx]));

	/* Out of a batch, every commit syncs its directory. */
	dir_fsyncs = 0;
	again = sealed_upload(f, "t.1.10", content[1], sizeof(content[1]));
	assert_true(bk_repo_upload_finish(again, &err));
	assert_true(bk_repo_upload_commit(again, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_SNAPSHOT, "e", &identity, &result,
									  &err));
	assert_int_equal(result, BK_PUT_CREATED);
	assert_int_equal(dir_fsyncs, 1);
	bk_repo_upload_free(again);

	/* A failed directory sync fails the batch, and the next one is new. */
	again = sealed_upload(f, "t.1.11", content[2], sizeof(content[2]));
	assert_true(bk_repo_upload_finish(again, &err));
	bk_repo_batch_begin(f->repo);
	assert_true(bk_repo_upload_commit(again, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_SNAPSHOT, "d", &identity, &result,
									  &err));
	fail_dir_fsync = true;
	assert_false(bk_repo_batch_end(f->repo, &err));
	assert_non_null(strstr(err.message, "fsync"));
	dir_fsyncs = 0;
	bk_repo_batch_begin(f->repo);
	assert_true(bk_repo_batch_end(f->repo, &err));
	assert_int_equal(dir_fsyncs, 0);
	bk_repo_upload_free(again);
	for (int objIdx = 0; objIdx < 3; objIdx++)
		bk_repo_upload_free(uploads[objIdx]);
}

/* Commit content as a snapshot object, out of a batch or in the open one. */
static void
commit_snapshot_object(Fixture *f, const char *tag, const char *name,
					   const uint8_t *content, size_t len)
{
	BkRepoUpload *upload = sealed_upload(f, tag, content, len);
	BkObjectIdentity identity;
	BkPutResult result;
	BkError err;

	memset(&identity, 0, sizeof(identity));
	assert_true(bk_repo_upload_finish(upload, &err));
	assert_true(bk_repo_upload_commit(upload, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_SNAPSHOT, name, &identity,
									  &result, &err));
	assert_int_equal(result, BK_PUT_CREATED);
	bk_repo_upload_free(upload);
}

/*
 * A directory found in place counts only once its name is durable too.
 * Another shipper sharing the repository (or this one, before a restart)
 * may have made it and not yet fsynced its parent, or have been killed
 * right there; a power loss would then take the directory and every object
 * committed into it since.  So the first commit into a directory this
 * process has not synced fsyncs each directory from there up to the root,
 * in a batch or not, and so does a record (put_small); later commits into
 * it fsync only their own directory, as before.  A directory replaced
 * meanwhile (removed and made again by another process) is a new one.
 */
static void
test_found_directories_made_durable(void **state)
{
	Fixture *f = *state;
	char source_dir[600];
	char kind_dir[640];
	char snapshot_dir[700];
	char other_dir[700];
	char third_dir[700];
	char moved_dir[720];
	char expired_dir[640];
	char wal_dir[660];
	char name[64];
	uint8_t content[5000];
	BkError err;

	if (s3_endpoint())
		return;
	test_fill(content, sizeof(content), 77, false);
	snprintf(source_dir, sizeof(source_dir), "%s/" SOURCE, f->location);
	snprintf(kind_dir, sizeof(kind_dir), "%s/snapshot", source_dir);
	snprintf(snapshot_dir, sizeof(snapshot_dir), "%s/20261207T000000Z-00000001",
			 kind_dir);
	snprintf(other_dir, sizeof(other_dir), "%s/20261207T010000Z-00000002",
			 kind_dir);
	/* Another shipper's mkdir -p, none of its parents fsynced yet. */
	assert_int_equal(mkdir(source_dir, 0755), 0);
	assert_int_equal(mkdir(kind_dir, 0755), 0);
	assert_int_equal(mkdir(snapshot_dir, 0755), 0);

	dir_fsyncs = 0;
	commit_snapshot_object(f, "t.2.0", "20261207T000000Z-00000001/part-0",
						   content, sizeof(content));
	assert_true(dir_was_fsynced(snapshot_dir));
	assert_true(dir_was_fsynced(kind_dir));
	assert_true(dir_was_fsynced(source_dir));
	assert_true(dir_was_fsynced(f->location));

	/* From then on, one directory fsync per object: its own directory. */
	for (int objIdx = 1; objIdx <= 20; objIdx++)
	{
		snprintf(name, sizeof(name), "20261207T000000Z-00000001/part-%d",
				 objIdx);
		dir_fsyncs = 0;
		commit_snapshot_object(f, "t.2.1", name, content, sizeof(content));
		assert_int_equal(dir_fsyncs, 1);
	}

	/* In a batch, at its end: the new directory and its parent, once. */
	assert_int_equal(mkdir(other_dir, 0755), 0);
	dir_fsyncs = 0;
	bk_repo_batch_begin(f->repo);
	for (int objIdx = 0; objIdx < 3; objIdx++)
	{
		snprintf(name, sizeof(name), "20261207T010000Z-00000002/part-%d",
				 objIdx);
		commit_snapshot_object(f, "t.2.2", name, content, sizeof(content));
	}
	assert_true(bk_repo_batch_end(f->repo, &err));
	assert_int_equal(dir_fsyncs, 2);
	assert_true(dir_was_fsynced(other_dir));
	assert_true(dir_was_fsynced(kind_dir));

	/* A batch whose syncs failed made nothing durable: synced again. */
	snprintf(third_dir, sizeof(third_dir), "%s/20261207T020000Z-00000003",
			 kind_dir);
	assert_int_equal(mkdir(third_dir, 0755), 0);
	bk_repo_batch_begin(f->repo);
	commit_snapshot_object(f, "t.2.3", "20261207T020000Z-00000003/part-0",
						   content, sizeof(content));
	fail_dir_fsync = true;
	assert_false(bk_repo_batch_end(f->repo, &err));
	dir_fsyncs = 0;
	commit_snapshot_object(f, "t.2.4", "20261207T020000Z-00000003/part-1",
						   content, sizeof(content));
	assert_int_equal(dir_fsyncs, 2);
	assert_true(dir_was_fsynced(kind_dir));

	/* Replaced by another process (the old one moved away first). */
	snprintf(moved_dir, sizeof(moved_dir), "%s.moved", snapshot_dir);
	assert_int_equal(rename(snapshot_dir, moved_dir), 0);
	assert_int_equal(mkdir(snapshot_dir, 0755), 0);
	dir_fsyncs = 0;
	commit_snapshot_object(f, "t.2.5", "20261207T000000Z-00000001/part-0",
						   content, sizeof(content));
	assert_true(dir_was_fsynced(snapshot_dir));
	assert_true(dir_was_fsynced(kind_dir));

	/* A record written into directories another process made. */
	snprintf(expired_dir, sizeof(expired_dir), "%s/expired", source_dir);
	snprintf(wal_dir, sizeof(wal_dir), "%s/wal", expired_dir);
	assert_int_equal(mkdir(expired_dir, 0755), 0);
	assert_int_equal(mkdir(wal_dir, 0755), 0);
	dir_fsyncs = 0;
	assert_true(bk_repo_put_record(f->repo, BK_REPO_EXPIRED, SOURCE,
								   BK_KIND_WAL, "000000010000000000000001",
								   "expired\n", 8, &err));
	assert_true(dir_was_fsynced(wal_dir));
	assert_true(dir_was_fsynced(expired_dir));
	assert_true(dir_was_fsynced(source_dir));
}

static void
test_finish_after_commit(void **state)
{
	Fixture *f = *state;
	uint8_t chunk[100];
	BkRepoUpload *upload;
	BkError err;

	if (s3_endpoint())
		return;
	test_fill(chunk, sizeof(chunk), 13, false);
	upload = bk_repo_upload_begin(f->repo, "t.1.1", &err);
	assert_non_null(upload);
	assert_true(bk_repo_upload_write(upload, chunk, sizeof(chunk), &err));
	assert_true(bk_repo_upload_finish(upload, &err));
	commit_and_check(f, upload, "refinish", chunk, sizeof(chunk));
	fail_ftruncate = true;
	(void) bk_repo_upload_finish(upload, &err);
	fail_ftruncate = false;
	commit_and_check(f, upload, "refinish", chunk, sizeof(chunk));
	bk_repo_upload_free(upload);
}

/*
 * O_DIRECT refused after a short write put a block on disk, before the
 * upload had any (a file system that takes some O_DIRECT writes and not
 * others): the buffered writes start where the object's bytes end, not
 * after that block.
 */
static void
test_direct_refused_after_short_write(void **state)
{
	Fixture *f = *state;
	uint8_t data[3 * 4096 + 17];
	BkRepoUpload *upload;
	BkError err;

	if (s3_endpoint())
		return;
	test_fill(data, sizeof(data), 12, false);
	upload = bk_repo_upload_begin(f->repo, "t.1.1", &err);
	assert_non_null(upload);
	short_direct_pwrite = true;
	assert_true(bk_repo_upload_write(upload, data, sizeof(data), &err));
	assert_true(bk_repo_upload_finish(upload, &err));
	commit_and_check(f, upload, "fallback/short", data, sizeof(data));
	bk_repo_upload_free(upload);
}

/*
 * Which multipart uploads housekeeping may abort: a day old at least,
 * whatever abandon_after says (it once was abandon_after, so a shipper
 * starting aborted the live uploads of others with abandon_after = 30s),
 * and only of keys bk uploads objects to, so that in a shared bucket (an
 * empty prefix) other applications' uploads are left alone.
 */
static void
test_stale_uploads(void **state)
{
	static const char *const ours[] = {
		SOURCE "/wal/000000010000000000000001",
		SOURCE "/wal/00000002.history",
		SOURCE "/snapshot/20240101T000000Z-ab/base/1/16384",
		SOURCE "/binlog/mariadb-bin.000001",
		SOURCE "/conflicts/wal/000000010000000000000001."
			   "0123456789abcdef0123456789abcdef",
		"rejected/bk.snapshot.2.77",
		/* A start-up probe's: its upload, if its abort failed. */
		".bk-probe/0123456789abcdef0123456789ABCDEF",
	};
	static const char *const theirs[] = {
		"bk-repository",
		"backup.tar.gz",
		"gone/stale-upload",
		"rejected/",
		"rejected/a/b",
		SOURCE "/wal/",
		SOURCE "/logs/app.log",
		SOURCE "/conflicts/wal/000000010000000000000001",
		SOURCE "/conflicts/wal/000000010000000000000001.nothex",
		SOURCE "/conflicts/logs/x.0123456789abcdef0123456789abcdef",
		".spool/" SOURCE "/wal/x",
		".bk-probe/",
		".bk-probe/0123456789abcdef",
		".bk-probe/0123456789abcdef0123456789abcdefx",
		".bk-probe/0123456789abcdef0123456789abcdef/x",
		"../" SOURCE "/wal/x",
		SOURCE "/wal/../../etc/passwd",
		"",
	};
	const int64_t day = (int64_t) 24 * 3600 * 1000;

	assert_int_equal(bk_repo_stale_upload_ms(0), day);
	assert_int_equal(bk_repo_stale_upload_ms(30 * 1000), day);
	assert_int_equal(bk_repo_stale_upload_ms(3600 * 1000), day);
	assert_int_equal(bk_repo_stale_upload_ms(2 * day), 2 * day);
	for (size_t keyIdx = 0; keyIdx < sizeof(ours) / sizeof(ours[0]); keyIdx++)
		if (!bk_repo_key_is_bk(ours[keyIdx]))
			fail_msg("\"%s\" is bk's", ours[keyIdx]);
	for (size_t keyIdx = 0; keyIdx < sizeof(theirs) / sizeof(theirs[0]);
		 keyIdx++)
		if (bk_repo_key_is_bk(theirs[keyIdx]))
			fail_msg("\"%s\" is not bk's", theirs[keyIdx]);
}

/*
 * An object above the part size goes up in parts (5 MiB, as the fixture
 * sets it): created once, a re-send found by HEAD, and read back whole
 * and in pieces through the window and parallel range GETs.
 */
static void
test_s3_multipart(void **state)
{
	Fixture *f = *state;
	const size_t size = (size_t) 37 * 1024 * 1024 + 12345;
	uint8_t *data = malloc(size);
	uint8_t *back = malloc(size);
	BkObjectIdentity identity;
	BkRepoUpload *upload;
	BkRepoReader *reader;
	BkPutResult result;
	BkRepoStat stat;
	BkError err;

	memset(&identity, 0, sizeof(identity));
	test_fill(data, size, 7, false);
	upload = bk_repo_upload_begin(f->repo, "t.9.1", &err);
	assert_non_null(upload);
	/* Written in odd pieces, so part boundaries fall inside a write. */
	for (size_t done = 0; done < size;)
	{
		size_t piece = size - done < 777777 ? size - done : 777777;

		assert_true(bk_repo_upload_write(upload, data + done, piece, &err));
		done += piece;
	}
	assert_true(bk_repo_upload_finish(upload, &err));
	assert_true(bk_repo_upload_commit(upload, BK_REPO_ARCHIVE, SOURCE,
									  BK_KIND_SNAPSHOT, "snap-1/base/1/16384",
									  &identity, &result, &err));
	assert_int_equal(result, BK_PUT_CREATED);
	bk_repo_upload_free(upload);

	assert_true(bk_repo_stat(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_SNAPSHOT,
							 "snap-1/base/1/16384", &stat, &err));
	assert_true(stat.exists);
	assert_int_equal(stat.size, size);
	assert_true(stat.stored_ms > 0);
	reader = bk_repo_reader_open(f->repo, BK_REPO_ARCHIVE, SOURCE,
								 BK_KIND_SNAPSHOT, "snap-1/base/1/16384", &err);
	assert_non_null(reader);
	assert_int_equal(bk_repo_reader_size(reader), size);
	/* Whole (parallel range GETs straight into the buffer)... */
	assert_true(bk_repo_reader_read(reader, 0, back, size, &err));
	assert_memory_equal(back, data, size);
	/* ...and small reads through the window, across its edge. */
	memset(back, 0, size);
	for (size_t done = 0; done < size;)
	{
		size_t piece = size - done < 65536 + 3 ? size - done : 65536 + 3;

		assert_true(
			bk_repo_reader_read(reader, done, back + done, piece, &err));
		done += piece;
	}
	assert_memory_equal(back, data, size);
	assert_false(bk_repo_reader_read(reader, size - 1, back, 2, &err));
	bk_repo_reader_close(reader);

	/* Uploads nobody completes are aborted by housekeeping (none here). */
	{
		uint64_t removed = 99;

		assert_true(bk_repo_clean_uploads(f->repo, &removed, &err));
		assert_int_equal(removed, 0);
	}
	free(data);
	free(back);
}

/* Refused credentials: one clear configuration error, at once. */
static void
test_s3_wrong_secret(void **state)
{
	Fixture *f = *state;
	BkRepoOptions options = f->options;
	char *saved;
	BkRepo *repo;
	int64_t started;
	BkError err;

	saved = strdup(getenv("AWS_SECRET_ACCESS_KEY"));
	setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret", 1);
	started = bk_monotonic_ms();
	repo = bk_repo_open_with(f->location, &options, false, &err);
	setenv("AWS_SECRET_ACCESS_KEY", saved, 1);
	assert_null(repo);
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_error_contains(&err, "SignatureDoesNotMatch");
	assert_true(strstr(err.message, "not-the-secret") == NULL);
	assert_true(strstr(err.hint, "not-the-secret") == NULL);
	assert_true(bk_monotonic_ms() - started < 5000);
	free(saved);

	/* A key file open to others is refused like a private key. */
	{
		char path[700];

		snprintf(path, sizeof(path), "%s/s3.key", f->dir);
		assert_true(bk_write_file_durable(
			path, "access_key_id = a\nsecret_access_key = b\n", 38, 0644,
			&err));
		options.s3_access_key_file = path;
		assert_null(bk_repo_open_with(f->location, &options, false, &err));
		assert_error_contains(&err, "accessible by group or others");
	}
	/* Plain http is for loopback only. */
	options.s3_access_key_file = NULL;
	options.s3_endpoint = "http://s3.example.com";
	assert_null(bk_repo_open_with(f->location, &options, false, &err));
	assert_error_contains(&err, "not loopback");
}

/*
 * Plain http only to loopback, judged on the whole host: a name that merely
 * starts like one (localhost.example.net, 127.0.0.1.example.net) resolves
 * anywhere.  No request is made: the endpoint is refused before, and the
 * hosts that pass stop at the missing credentials.
 */
static void
test_s3_plain_http_loopback_only(void **state)
{
	static const char *const refused[] = {
		"http://localhost.example.net", "http://localhost.example.net:9000",
		"http://127.0.0.1.example.net", "http://127.example.net",
		"http://[::1].example.net",     "http://[::1]x:80",
		"http://s3.example.com",        "http://10.0.0.1:9000",
		"http://localhostx:9000",
	};
	static const char *const loopback[] = {
		"http://localhost", "http://localhost:9000", "http://LOCALHOST:9000",
		"http://127.0.0.1", "http://127.0.0.1:9000", "http://127.1.2.3:80",
		"http://[::1]",     "http://[::1]:9000",
	};
	const char *names[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"};
	char *saved[2];
	BkRepoOptions options;
	BkError err;

	for (int idx = 0; idx < 2; idx++)
	{
		saved[idx] = getenv(names[idx]) ? strdup(getenv(names[idx])) : NULL;
		unsetenv(names[idx]);
	}
	bk_repo_options_init(&options);
	for (size_t idx = 0; idx < sizeof(refused) / sizeof(refused[0]); idx++)
	{
		options.s3_endpoint = refused[idx];
		bk_error_clear(&err);
		assert_null(bk_repo_open_with("s3://bk-unit/p", &options, false, &err));
		if (strstr(err.message, "not loopback") == NULL)
			fail_msg("%s: %s", refused[idx], err.message);
	}
	for (size_t idx = 0; idx < sizeof(loopback) / sizeof(loopback[0]); idx++)
	{
		options.s3_endpoint = loopback[idx];
		bk_error_clear(&err);
		assert_null(bk_repo_open_with("s3://bk-unit/p", &options, false, &err));
		if (strstr(err.message, "no S3 credentials") == NULL)
			fail_msg("%s: %s", loopback[idx], err.message);
	}
	for (int idx = 0; idx < 2; idx++)
		if (saved[idx] != NULL)
		{
			setenv(names[idx], saved[idx], 1);
			free(saved[idx]);
		}
}

/*
 * A credentials file whose lines are not "key = value" is refused without
 * repeating any of it: such a line is likely the secret itself (an s3fs
 * passwd file, "ID:SECRET", or a "=" left out), and the message reaches
 * the journal.
 */
static void
test_s3_malformed_credentials_file_unprinted(void **state)
{
	static const char *const texts[] = {
		"AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
		"access_key_id = AKIAIOSFODNN7EXAMPLE\n"
		"secret_access_key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
		"access_key_id = AKIAIOSFODNN7EXAMPLE\n"
		"secret_access_key = \"wJalrXUtnFEMI\"/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
	};
	char *dir = test_mkdtemp();
	char path[700];
	BkRepoOptions options;
	BkError err;

	snprintf(path, sizeof(path), "%s/s3.key", dir);
	bk_repo_options_init(&options);
	options.s3_endpoint = "http://127.0.0.1:9";
	options.s3_access_key_file = path;
	for (size_t idx = 0; idx < sizeof(texts) / sizeof(texts[0]); idx++)
	{
		unlink(path);
		assert_true(bk_write_file_durable(path, texts[idx], strlen(texts[idx]),
										  0600, &err));
		bk_error_clear(&err);
		assert_null(bk_repo_open_with("s3://bk-unit/p", &options, false, &err));
		assert_int_equal(err.code, BK_ERR_CONFIG);
		assert_error_contains(&err, "s3.key");
		if (strstr(err.message, "K7MDENG") != NULL ||
			strstr(err.hint, "K7MDENG") != NULL)
			fail_msg("the secret in the error: %s (%s)", err.message, err.hint);
	}
	unlink(path);
	test_rmdir(dir);
	free(dir);
}

/*
 * bk_write_file_durable never writes through a name planted in its
 * directory: bk restore runs as root and writes backup_label into a
 * directory its owner can write.  The old temporary name (".<name>.tmp.<pid>")
 * is planted as a symbolic link to a file of someone else's; that file
 * must be untouched and the written file whole, with its mode.
 */
static void
test_write_file_durable_no_follow(void **state)
{
	char *dir = test_mkdtemp();
	char victim[4096];
	char planted[4096];
	char path[4096];
	char *data = NULL;
	size_t len = 0;
	struct stat st;
	BkError err;

	(void) state;
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	snprintf(path, sizeof(path), "%s/backup_label", dir);
	snprintf(planted, sizeof(planted), "%s/.backup_label.tmp.%d", dir,
			 (int) getpid());
	bk_error_clear(&err);
	assert_true(bk_write_file_durable(victim, "precious\n", 9, 0644, &err));
	assert_int_equal(symlink(victim, planted), 0);

	bk_error_clear(&err);
	if (!bk_write_file_durable(path, "LABEL\n", 6, 0600, &err))
		fail_msg("bk_write_file_durable: %s", err.message);
	assert_true(bk_read_file(victim, 4096, &data, &len, &err));
	assert_int_equal(len, 9);
	assert_memory_equal(data, "precious\n", 9);
	free(data);
	assert_int_equal(lstat(victim, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_true(bk_read_file(path, 4096, &data, &len, &err));
	assert_int_equal(len, 6);
	assert_memory_equal(data, "LABEL\n", 6);
	free(data);

	/* Written again, over the last copy: still whole. */
	assert_true(bk_write_file_durable(path, "LABEL 2\n", 8, 0600, &err));
	assert_true(bk_read_file(path, 4096, &data, &len, &err));
	assert_int_equal(len, 8);
	free(data);

	unlink(planted);
	test_rmdir(dir);
	free(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_if_absent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_attempt_again, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_existing_copy_made_durable, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_substituted_object, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_copy_in_place, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_list_and_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlinks_listed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spools, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_object_lengths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_ahead_large_frames, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_direct_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_direct_fails_midway, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_direct_fallback_retried, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_direct_refused_after_short_write,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_finish_after_commit, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_batch_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_found_directories_made_durable,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_open_uploads, setup,
										teardown),
		cmocka_unit_test(test_stale_uploads),
		cmocka_unit_test(test_s3_plain_http_loopback_only),
		cmocka_unit_test(test_s3_malformed_credentials_file_unprinted),
		cmocka_unit_test(test_write_file_durable_no_follow),
		/* Only on S3 (the last ones): they stand for nothing on a directory. */
		cmocka_unit_test_setup_teardown(test_s3_multipart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_s3_wrong_secret, setup, teardown),
	};
	size_t count = sizeof(tests) / sizeof(tests[0]);

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return _cmocka_run_group_tests(
		"tests", tests, s3_endpoint() ? count : count - 2, NULL, NULL);
}
