/*
 * testutil.c
 *		Helpers for the C unit tests.
 */
#include "testutil.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bk_crc32c.h"
#include "bk_util.h"

void
test_key(BkKey *key, BkKeyring *ring)
{
	BkError err;

	assert_true(bk_key_generate(key, &err));
	if (ring != NULL)
	{
		memset(ring, 0, sizeof(*ring));
		ring->keys[0] = *key;
		ring->count = 1;
	}
}

void
test_fill(uint8_t *buf, size_t len, uint64_t seed, bool compressible)
{
	uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;

	for (size_t pos = 0; pos < len; pos++)
	{
		state ^= state << 13;
		state ^= state >> 7;
		state ^= state << 17;
		/* Compressible: a small alphabet, like text or sparse pages. */
		buf[pos] = compressible ? (uint8_t) ("abcdefgh\0\0\0\0"[state % 12])
								: (uint8_t) state;
	}
}

void
test_encode(const BkKey *key, uint32_t chunk_size, const char *name,
			const uint8_t *data, size_t size, FrameList *frames)
{
	BkObjectInfo info = {.kind = BK_KIND_WAL,
						 .source_id = "test-source",
						 .name = name,
						 .meta = "lsn=0/1000000\ntimeline=1",
						 .size = size};

	test_encode_object(key, chunk_size, &info, data, frames);
}

void
test_encode_object(const BkKey *key, uint32_t chunk_size,
				   const BkObjectInfo *info, const uint8_t *data,
				   FrameList *frames)
{
	BkError err;
	BkEncoder *enc = bk_encoder_new(key, chunk_size, &err);
	size_t offset = 0;

	assert_non_null(enc);
	assert_true(bk_encoder_begin(enc, info, &err));
	frames->count = (int) bk_encoder_chunk_count(enc);
	frames->data = calloc((size_t) frames->count, sizeof(uint8_t *));
	frames->len = calloc((size_t) frames->count, sizeof(size_t));
	for (int frameIdx = 0; frameIdx < frames->count; frameIdx++)
	{
		uint32_t chunk_len = bk_encoder_next_chunk_len(enc);
		const uint8_t *frame;
		size_t frame_len;

		assert_true(bk_encoder_chunk(enc, data + offset, chunk_len, &frame,
									 &frame_len, NULL, &err));
		frames->data[frameIdx] = malloc(frame_len);
		memcpy(frames->data[frameIdx], frame, frame_len);
		frames->len[frameIdx] = frame_len;
		offset += chunk_len;
	}
	assert_true(bk_encoder_done(enc));
	assert_int_equal(offset, info->size);
	bk_encoder_free(enc);
}

void
test_frames_free(FrameList *frames)
{
	for (int frameIdx = 0; frameIdx < frames->count; frameIdx++)
		free(frames->data[frameIdx]);
	free(frames->data);
	free(frames->len);
	memset(frames, 0, sizeof(*frames));
}

bool
test_decode(const BkKeyring *ring, const FrameList *frames, const int *order,
			uint8_t **out, size_t *out_len, BkError *err)
{
	return test_decode_digest(ring, frames, order, out, out_len, NULL, err);
}

bool
test_decode_digest(const BkKeyring *ring, const FrameList *frames,
				   const int *order, uint8_t **out, size_t *out_len,
				   uint8_t *digest, BkError *err)
{
	BkDecoder *dec = bk_decoder_new(ring, err);
	uint8_t *buf = NULL;
	size_t len = 0;
	bool ok = true;

	assert_non_null(dec);
	for (int step = 0;; step++)
	{
		int frameIdx = order ? order[step] : step;
		const uint8_t *plain;
		size_t plain_len;

		if (frameIdx < 0 || (order == NULL && step >= frames->count))
			break;
		if (!bk_decoder_push(dec, frames->data[frameIdx], frames->len[frameIdx],
							 &plain, &plain_len, err))
		{
			ok = false;
			break;
		}
		buf = realloc(buf, len + plain_len + 1);
		memcpy(buf + len, plain, plain_len);
		len += plain_len;
	}
	if (ok)
		ok = bk_decoder_finish(dec, err);
	if (ok && digest != NULL)
		memcpy(digest, bk_decoder_digest(dec), 32);
	bk_decoder_free(dec);
	if (!ok)
	{
		free(buf);
		return false;
	}
	*out = buf;
	*out_len = len;
	return true;
}

void
test_fix_crc(uint8_t *frame, size_t len)
{
	bk_put_be32(frame + len - 4, bk_crc32c(0, frame, len - 4));
}

char *
test_mkdtemp(void)
{
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char *path = malloc(strlen(base) + 32);

	sprintf(path, "%s/bk-unit-XXXXXX", base);
	assert_non_null(mkdtemp(path));
	return path;
}

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

void
test_rmdir(const char *dir)
{
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void
put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
	p[2] = (uint8_t) (v >> 16);
	p[3] = (uint8_t) (v >> 24);
}

void
put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t) v);
	put_le32(p + 4, (uint32_t) (v >> 32));
}

int
test_stdout_quiet(void)
{
	int saved = dup(STDOUT_FILENO);
	int quiet = open("/dev/null", O_WRONLY);

	fflush(stdout);
	dup2(quiet, STDOUT_FILENO);
	close(quiet);
	return saved;
}

void
test_stdout_restore(int saved)
{
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
}

int
test_stderr_to(const char *path)
{
	int saved;
	int fd;

	fflush(stderr);
	saved = dup(STDERR_FILENO);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, STDERR_FILENO);
	close(fd);
	return saved;
}

void
test_stderr_restore(int saved)
{
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
}
