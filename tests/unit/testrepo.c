/*
 * testrepo.c
 *		See testrepo.h.
 */
#include "testutil.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bk_crc32c.h"
#include "bk_frame.h"
#include "bk_util.h"
#include "repo_backend.h"
#include "testrepo.h"

/*
 * Encode content and commit it under name as a shipper does; when the
 * archive already holds another object of that name, keep it among the
 * conflicts instead (as the shipper does), if conflict says one is expected.
 */
static void
archive_or_conflict(BkRepo *repo, const BkKey *key, int *tag_counter, int kind,
					const char *source, const char *name, const char *meta,
					const uint8_t *content, size_t len, bool conflict)
{
	BkObjectInfo info = {.kind = kind,
						 .source_id = source,
						 .name = name,
						 .meta = meta,
						 .size = len};
	FrameList frames;
	BkRepoUpload *upload;
	BkObjectIdentity identity = {0};
	BkPutResult result;
	BkFrame last;
	char tag[32];
	BkError err;

	test_encode_object(key, BK_CHUNK_SIZE_MIN, &info, content, &frames);
	snprintf(tag, sizeof(tag), "u%d", (*tag_counter)++);
	upload = bk_repo_upload_begin(repo, tag, &err);
	assert_non_null(upload);
	for (int frameIdx = 0; frameIdx < frames.count; frameIdx++)
		assert_true(bk_repo_upload_write(upload, frames.data[frameIdx],
										 frames.len[frameIdx], &err));
	assert_true(bk_repo_upload_finish(upload, &err));
	assert_true(bk_frame_parse(frames.data[frames.count - 1],
							   frames.len[frames.count - 1], &last, &err));
	memcpy(identity.key_id, last.key_id, BK_KEY_ID_LEN);
	memcpy(identity.fingerprint, last.fingerprint, BK_FINGERPRINT_LEN);
	memcpy(identity.attempt_id, last.attempt_id, BK_ATTEMPT_ID_LEN);
	assert_true(bk_repo_upload_commit(upload, BK_REPO_ARCHIVE, source, kind,
									  name, &identity, &result, &err));
	if (conflict)
	{
		assert_int_equal(result, BK_PUT_EXISTS_DIFFERENT);
		assert_true(bk_repo_upload_commit(upload, BK_REPO_CONFLICTS, source,
										  kind, name, &identity, &result,
										  &err));
	}
	assert_int_equal(result, BK_PUT_CREATED);
	bk_repo_upload_free(upload);
	test_frames_free(&frames);
}

void
test_archive_object(BkRepo *repo, const BkKey *key, int *tag_counter, int kind,
					const char *source, const char *name, const char *meta,
					const uint8_t *content, size_t len)
{
	archive_or_conflict(repo, key, tag_counter, kind, source, name, meta,
						content, len, false);
}

void
test_archive_conflict(BkRepo *repo, const BkKey *key, int *tag_counter,
					  int kind, const char *source, const char *name,
					  const char *meta, const uint8_t *content, size_t len)
{
	archive_or_conflict(repo, key, tag_counter, kind, source, name, meta,
						content, len, true);
}

static struct timespec aged_time[2];

static int
age_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_F)
		assert_int_equal(utimensat(AT_FDCWD, path, aged_time, 0), 0);
	return 0;
}

void
test_age_snapshot(const char *location, const char *source, const char *id,
				  int hours)
{
	char dir[1024];
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/%s/snapshot/%s", location, source, id);
	assert_int_equal(stat(dir, &st), 0);
	aged_time[0].tv_sec = time(NULL) - (time_t) hours * 3600;
	aged_time[1] = aged_time[0];
	assert_int_equal(nftw(dir, age_entry, 16, FTW_PHYS), 0);
}

void
test_alter_stored(const char *location, const char *source, const char *kind,
				  const char *name, const char *from, const char *to,
				  bool fix_crc)
{
	char path[1024];
	char *data;
	size_t len;
	size_t pos = 0;
	int altered = 0;
	BkError err;

	assert_int_equal(strlen(from), strlen(to));
	snprintf(path, sizeof(path), "%s/%s/%s/%s", location, source, kind, name);
	assert_true(bk_read_file(path, 64 * 1024 * 1024, &data, &len, &err));
	while (pos < len)
	{
		uint8_t *frame = (uint8_t *) data + pos;
		uint32_t header_len = bk_get_be32(frame + BK_OFF_HEADER_LEN);
		uint32_t payload_len = bk_get_be32(frame + BK_OFF_PAYLOAD_LEN);
		size_t covered = (size_t) header_len + payload_len + BK_GCM_TAG_LEN;

		for (size_t at = BK_FRAME_FIXED_LEN; at + strlen(from) <= header_len;
			 at++)
			if (memcmp(frame + at, from, strlen(from)) == 0)
			{
				memcpy(frame + at, to, strlen(to));
				altered++;
			}
		if (fix_crc)
			bk_put_be32(frame + covered, bk_crc32c(0, frame, covered));
		pos += covered + BK_FRAME_CRC_LEN;
	}
	assert_true(altered > 0);
	assert_true(bk_write_file_durable(path, data, len, 0644, &err));
	free(data);
}

/* ------------------------------------------------------- injected faults */

static const BkRepoBackend *real_backend;
static BkRepoBackend faulty_backend;
static const char *fault_key_part;

static BkRepoReader *
reader_open_failing(const BkRepo *repo, const char *key, BkError *err)
{
	if (strstr(key, fault_key_part) != NULL)
	{
		bk_error_set(err, BK_ERR_STORE, "injected failure reading %s", key);
		return NULL;
	}
	return real_backend->reader_open(repo, key, err);
}

/* The store says "no such object" of one it holds, and lists. */
static BkRepoReader *
reader_open_not_found(const BkRepo *repo, const char *key, BkError *err)
{
	if (strstr(key, fault_key_part) != NULL)
	{
		bk_error_set(err, BK_ERR_NOT_FOUND, "no object %s (injected)", key);
		return NULL;
	}
	return real_backend->reader_open(repo, key, err);
}

static bool
delete_failing(BkRepo *repo, const char *key, BkError *err)
{
	if (strstr(key, fault_key_part) != NULL)
		return bk_error_set(err, BK_ERR_STORE, "injected failure removing %s",
							key);
	return real_backend->delete (repo, key, err);
}

static bool
delete_prefix_failing(BkRepo *repo, const char *prefix, BkError *err)
{
	if (strstr(prefix, fault_key_part) != NULL)
		return bk_error_set(err, BK_ERR_STORE, "injected failure removing %s",
							prefix);
	return real_backend->delete_prefix(repo, prefix, err);
}

void
test_repo_faults(BkRepo *repo, int what, const char *key_part)
{
	real_backend = repo->backend;
	faulty_backend = *real_backend;
	fault_key_part = key_part;
	if (what & TEST_FAIL_READS)
		faulty_backend.reader_open = reader_open_failing;
	if (what & TEST_READS_NOT_FOUND)
		faulty_backend.reader_open = reader_open_not_found;
	if (what & TEST_FAIL_DELETES)
	{
		faulty_backend.delete = delete_failing;
		faulty_backend.delete_prefix = delete_prefix_failing;
	}
	repo->backend = &faulty_backend;
}

void
test_repo_faults_end(BkRepo *repo)
{
	repo->backend = real_backend;
}
