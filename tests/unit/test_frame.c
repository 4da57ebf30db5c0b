/*
 * test_frame.c
 *		Frame format: round trips of every size class, and every rejection
 *		path of the keyless parser, the sequence tracker and the decoder, each
 *		with its exact error class and message.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bk_crc32c.h"
#include "bk_crypto.h"
#include "bk_frame.h"
#include "bk_util.h"

#define CHUNK 4096

static BkKey key;
static BkKeyring ring;

static int
setup(void **state)
{
	test_key(&key, &ring);
	return 0;
}

/* Encode size bytes, decode them back, compare bytes and digest. */
static void
round_trip(size_t size, uint32_t chunk_size, bool compressible,
		   int expected_frames)
{
	uint8_t *data = malloc(size + 1);
	uint8_t *out = NULL;
	size_t out_len = 0;
	uint8_t digest[BK_SHA256_LEN];
	uint8_t decoded_digest[BK_SHA256_LEN];
	FrameList frames;
	BkError err;

	test_fill(data, size, size, compressible);
	test_encode(&key, chunk_size, "000000010000000000000001", data, size,
				&frames);
	assert_int_equal(frames.count, expected_frames);
	if (!test_decode_digest(&ring, &frames, NULL, &out, &out_len,
							decoded_digest, &err))
		fail_msg("decode failed: %s", err.message);
	assert_int_equal(out_len, size);
	assert_memory_equal(out, data, size);
	assert_true(bk_sha256(data, size, digest, &err));
	assert_memory_equal(digest, decoded_digest, BK_SHA256_LEN);
	test_frames_free(&frames);
	free(out);
	free(data);
}

static void
test_round_trip_empty(void **state)
{
	round_trip(0, CHUNK, false, 1);
}

static void
test_round_trip_one_byte(void **state)
{
	round_trip(1, CHUNK, false, 1);
}

static void
test_round_trip_exact_chunk(void **state)
{
	round_trip(CHUNK, CHUNK, false, 1);
	round_trip(CHUNK, CHUNK, true, 1);
}

static void
test_round_trip_chunk_plus_one(void **state)
{
	round_trip(CHUNK + 1, CHUNK, false, 2);
	round_trip(CHUNK + 1, CHUNK, true, 2);
}

static void
test_round_trip_many_mib(void **state)
{
	round_trip(9 * 1024 * 1024 + 7, 1024 * 1024, false, 10);
	round_trip(9 * 1024 * 1024 + 7, 1024 * 1024, true, 10);
}

/* Compressible chunks are stored compressed, incompressible ones raw. */
static void
test_compression_flag(void **state)
{
	uint8_t *data = malloc(CHUNK);
	FrameList frames;
	BkFrame frame;
	BkError err;

	test_fill(data, CHUNK, 1, true);
	test_encode(&key, CHUNK, "a", data, CHUNK, &frames);
	assert_true(bk_frame_parse(frames.data[0], frames.len[0], &frame, &err));
	assert_true(frame.flags & BK_FRAME_F_LZ4);
	assert_true(frame.payload_len < CHUNK);
	test_frames_free(&frames);

	test_fill(data, CHUNK, 1, false);
	test_encode(&key, CHUNK, "a", data, CHUNK, &frames);
	assert_true(bk_frame_parse(frames.data[0], frames.len[0], &frame, &err));
	assert_false(frame.flags & BK_FRAME_F_LZ4);
	assert_int_equal(frame.payload_len, CHUNK);
	test_frames_free(&frames);
	free(data);
}

/* The parsed view matches the spec's fields. */
static void
test_parse_fields(void **state)
{
	uint8_t data[CHUNK * 2 + 10];
	FrameList frames;
	BkFrame frame;
	BkError err;
	char value[64];

	test_fill(data, sizeof(data), 3, false);
	test_encode(&key, CHUNK, "base/16384/2619", data, sizeof(data), &frames);
	assert_int_equal(frames.count, 3);
	assert_true(bk_frame_parse(frames.data[2], frames.len[2], &frame, &err));
	assert_memory_equal(frames.data[2], "BKFR", 4);
	assert_int_equal(frame.version, 1);
	assert_int_equal(frame.kind, BK_KIND_WAL);
	assert_int_equal(frame.chunk_index, 2);
	assert_int_equal(frame.chunk_count, 3);
	assert_int_equal(frame.chunk_len, 10);
	assert_int_equal(frame.chunk_offset, 2 * CHUNK);
	assert_int_equal(frame.object_size, sizeof(data));
	assert_memory_equal(frame.key_id, key.id, BK_KEY_ID_LEN);
	assert_int_equal(frame.name_len, strlen("base/16384/2619"));
	assert_memory_equal(frame.name, "base/16384/2619", frame.name_len);
	assert_memory_equal(frame.source, "test-source", frame.source_len);
	assert_true(frame.flags & BK_FRAME_F_LAST);
	assert_int_equal(frame.header_len, BK_FRAME_FIXED_LEN + frame.source_len +
										   frame.name_len + frame.meta_len);
	assert_int_equal(frame.frame_len, frames.len[2]);
	assert_true(bk_meta_get(frame.meta, frame.meta_len, "timeline", value,
							sizeof(value)));
	assert_string_equal(value, "1");
	test_frames_free(&frames);
}

/* The same plaintext gives the same fingerprint and unrelated ciphertext. */
static void
test_resend_fingerprint(void **state)
{
	uint8_t data[CHUNK + 100];
	uint8_t other[CHUNK + 100];
	FrameList first;
	FrameList second;
	FrameList changed;
	BkFrame a;
	BkFrame b;
	BkFrame c;
	BkError err;

	test_fill(data, sizeof(data), 7, false);
	memcpy(other, data, sizeof(data));
	other[50] ^= 1;
	test_encode(&key, CHUNK, "x", data, sizeof(data), &first);
	test_encode(&key, CHUNK, "x", data, sizeof(data), &second);
	test_encode(&key, CHUNK, "x", other, sizeof(other), &changed);
	assert_true(bk_frame_parse(first.data[1], first.len[1], &a, &err));
	assert_true(bk_frame_parse(second.data[1], second.len[1], &b, &err));
	assert_true(bk_frame_parse(changed.data[1], changed.len[1], &c, &err));
	assert_memory_equal(a.fingerprint, b.fingerprint, BK_FINGERPRINT_LEN);
	assert_memory_not_equal(a.fingerprint, c.fingerprint, BK_FINGERPRINT_LEN);
	assert_memory_not_equal(a.attempt_id, b.attempt_id, BK_ATTEMPT_ID_LEN);
	assert_memory_not_equal(a.payload, b.payload, 64);
	/* Chunks before the last carry no fingerprint. */
	assert_true(bk_frame_parse(first.data[0], first.len[0], &a, &err));
	for (int pos = 0; pos < BK_FINGERPRINT_LEN; pos++)
		assert_int_equal(a.fingerprint[pos], 0);
	test_frames_free(&first);
	test_frames_free(&second);
	test_frames_free(&changed);
}

/* An object of more than 4 GiB streams through in bounded memory. */
static void
test_round_trip_over_4gib(void **state)
{
	const uint64_t size = (4ull << 30) + 3;
	const uint32_t chunk = BK_CHUNK_SIZE_MAX;
	uint8_t *buf = malloc(chunk);
	BkEncoder *enc;
	BkDecoder *dec;
	BkObjectInfo info = {.kind = BK_KIND_SNAPSHOT,
						 .source_id = "big",
						 .name = "base/1/16384",
						 .size = size};
	BkError err;
	uint64_t decoded = 0;

	enc = bk_encoder_new(&key, chunk, &err);
	dec = bk_decoder_new(&ring, &err);
	assert_non_null(enc);
	assert_non_null(dec);
	assert_true(bk_encoder_begin(enc, &info, &err));
	assert_int_equal(bk_encoder_chunk_count(enc), 257);
	while (!bk_encoder_done(enc))
	{
		uint32_t len = bk_encoder_next_chunk_len(enc);
		const uint8_t *frame;
		const uint8_t *plain;
		size_t frame_len;
		size_t plain_len;

		/* Page-like content: the index stamped into a compressible block. */
		memset(buf, 0, len);
		if (len >= 8)
			bk_put_be64(buf, decoded);
		assert_true(
			bk_encoder_chunk(enc, buf, len, &frame, &frame_len, NULL, &err));
		if (!bk_decoder_push(dec, frame, frame_len, &plain, &plain_len, &err))
			fail_msg("%s", err.message);
		assert_int_equal(plain_len, len);
		if (len >= 8)
			assert_int_equal(bk_get_be64(plain), decoded);
		decoded += plain_len;
	}
	assert_true(bk_decoder_finish(dec, &err));
	assert_true(decoded == size);
	assert_memory_equal(bk_decoder_digest(dec), bk_encoder_digest(enc),
						BK_SHA256_LEN);
	bk_encoder_free(enc);
	bk_decoder_free(dec);
	free(buf);
}

/* ---- keyless rejections: each names what is wrong ---- */

static void
expect_parse_error(const uint8_t *buf, size_t len, BkErrorCode code,
				   const char *needle)
{
	BkFrame frame;
	BkError err;

	bk_error_clear(&err);
	assert_false(bk_frame_parse(buf, len, &frame, &err));
	assert_int_equal(err.code, code);
	assert_error_contains(&err, needle);
}

static void
test_reject_truncated(void **state)
{
	uint8_t data[100];
	FrameList frames;

	test_fill(data, sizeof(data), 1, false);
	test_encode(&key, CHUNK, "seg", data, sizeof(data), &frames);
	expect_parse_error(frames.data[0], 0, BK_ERR_FORMAT,
					   "truncated frame: 0 bytes");
	expect_parse_error(frames.data[0], 10, BK_ERR_FORMAT,
					   "truncated frame: 10 bytes");
	expect_parse_error(frames.data[0], frames.len[0] - 1, BK_ERR_FORMAT,
					   "truncated frame");
	expect_parse_error(frames.data[0], BK_FRAME_FIXED_LEN + 30, BK_ERR_FORMAT,
					   "its header says");
	test_frames_free(&frames);
}

static void
test_reject_trailing_data(void **state)
{
	uint8_t data[100];
	uint8_t *longer;
	FrameList frames;

	test_fill(data, sizeof(data), 1, false);
	test_encode(&key, CHUNK, "seg", data, sizeof(data), &frames);
	longer = calloc(1, frames.len[0] + 5);
	memcpy(longer, frames.data[0], frames.len[0]);
	expect_parse_error(longer, frames.len[0] + 5, BK_ERR_FORMAT,
					   "trailing data");
	free(longer);
	test_frames_free(&frames);
}

static void
test_reject_bad_magic_and_version(void **state)
{
	uint8_t data[100];
	FrameList frames;

	test_fill(data, sizeof(data), 1, false);
	test_encode(&key, CHUNK, "seg", data, sizeof(data), &frames);
	frames.data[0][0] = 'X';
	expect_parse_error(frames.data[0], frames.len[0], BK_ERR_FORMAT,
					   "not a bk frame: bad magic bytes");
	frames.data[0][0] = 'B';
	frames.data[0][BK_OFF_VERSION] = 2;
	expect_parse_error(frames.data[0], frames.len[0], BK_ERR_FORMAT,
					   "unsupported frame version 2");
	test_frames_free(&frames);
}

static void
test_reject_corruption(void **state)
{
	uint8_t data[3000];
	FrameList frames;

	test_fill(data, sizeof(data), 1, false);
	test_encode(&key, CHUNK, "seg", data, sizeof(data), &frames);
	/* One flipped bit anywhere: header, payload, tag or checksum. */
	for (size_t pos = 0; pos < frames.len[0]; pos += 97)
	{
		frames.data[0][pos] ^= 0x10;
		{
			BkFrame frame;
			BkError err;

			assert_false(
				bk_frame_parse(frames.data[0], frames.len[0], &frame, &err));
			assert_int_equal(err.code, BK_ERR_FORMAT);
		}
		frames.data[0][pos] ^= 0x10;
	}
	frames.data[0][BK_FRAME_FIXED_LEN + 40] ^= 1;
	expect_parse_error(frames.data[0], frames.len[0], BK_ERR_FORMAT,
					   "frame checksum mismatch");
	test_frames_free(&frames);
}

/* With a valid CRC, structural lies are still caught by the parser. */
static void
test_reject_structure(void **state)
{
	uint8_t data[CHUNK + 10];
	FrameList frames;
	uint8_t *f;
	size_t len;

	test_fill(data, sizeof(data), 1, false);
	test_encode(&key, CHUNK, "seg", data, sizeof(data), &frames);
	f = frames.data[0];
	len = frames.len[0];

	bk_put_be16(f + BK_OFF_FLAGS, 0x0100);
	test_fix_crc(f, len);
	expect_parse_error(f, len, BK_ERR_FORMAT, "unknown frame flags 0x0100");
	bk_put_be16(f + BK_OFF_FLAGS, BK_FRAME_F_LAST);
	test_fix_crc(f, len);
	expect_parse_error(f, len, BK_ERR_FORMAT, "last-chunk flag disagrees");
	bk_put_be16(f + BK_OFF_FLAGS, 0);
	f[BK_OFF_KIND] = 9;
	test_fix_crc(f, len);
	expect_parse_error(f, len, BK_ERR_FORMAT, "unknown object kind 9");
	f[BK_OFF_KIND] = BK_KIND_WAL;
	bk_put_be32(f + BK_OFF_CHUNK_INDEX, 5);
	test_fix_crc(f, len);
	expect_parse_error(f, len, BK_ERR_FORMAT, "outside chunk count");
	bk_put_be32(f + BK_OFF_CHUNK_INDEX, 0);
	f[BK_OFF_VARIABLE + strlen("test-source")] = '/';
	test_fix_crc(f, len);
	expect_parse_error(f, len, BK_ERR_FORMAT, "invalid object name");
	f[BK_OFF_VARIABLE + strlen("test-source")] = 's';
	f[BK_OFF_VARIABLE] = ' ';
	test_fix_crc(f, len);
	expect_parse_error(f, len, BK_ERR_FORMAT, "invalid source id");
	f[BK_OFF_VARIABLE] = 't';
	f[BK_OFF_NONCE] = 1;
	test_fix_crc(f, len);
	expect_parse_error(f, len, BK_ERR_FORMAT, "nonce does not follow");
	f[BK_OFF_NONCE] = 0;
	bk_put_be64(f + BK_OFF_OBJECT_SIZE, 5);
	test_fix_crc(f, len);
	expect_parse_error(f, len, BK_ERR_FORMAT, "lies outside the object");
	test_frames_free(&frames);
}

static void
expect_decode_error(const FrameList *frames, const int *order, BkErrorCode code,
					const char *needle)
{
	uint8_t *out = NULL;
	size_t out_len;
	BkError err;

	bk_error_clear(&err);
	if (test_decode(&ring, frames, order, &out, &out_len, &err))
		fail_msg("decoding succeeded, expected \"%s\"", needle);
	assert_int_equal(err.code, code);
	assert_error_contains(&err, needle);
}

static void
test_reject_reordered(void **state)
{
	uint8_t data[CHUNK * 3];
	FrameList frames;
	const int starts_late[] = {1, 0, 2, -1};
	const int skips[] = {0, 2, -1};

	test_fill(data, sizeof(data), 2, false);
	test_encode(&key, CHUNK, "seg", data, sizeof(data), &frames);
	expect_decode_error(&frames, starts_late, BK_ERR_SEQUENCE,
						"chunk 1 of 3 came first; chunk 0 is missing");
	expect_decode_error(&frames, skips, BK_ERR_SEQUENCE,
						"chunk 2 arrived where chunk 1 was expected");
	test_frames_free(&frames);
}

static void
test_reject_duplicate(void **state)
{
	uint8_t data[CHUNK * 3];
	FrameList frames;
	const int repeats[] = {0, 1, 1, 2, -1};
	const int after_end[] = {0, 1, 2, 2, -1};

	test_fill(data, sizeof(data), 2, false);
	test_encode(&key, CHUNK, "seg", data, sizeof(data), &frames);
	expect_decode_error(&frames, repeats, BK_ERR_SEQUENCE,
						"duplicate chunk 1 of object \"seg\"");
	expect_decode_error(&frames, after_end, BK_ERR_SEQUENCE,
						"duplicate chunk 2 of object \"seg\"");
	test_frames_free(&frames);
}

static void
test_reject_truncated_object(void **state)
{
	uint8_t data[CHUNK * 3];
	FrameList frames;
	const int two_of_three[] = {0, 1, -1};

	test_fill(data, sizeof(data), 2, false);
	test_encode(&key, CHUNK, "seg", data, sizeof(data), &frames);
	expect_decode_error(&frames, two_of_three, BK_ERR_SEQUENCE,
						"object \"seg\" is incomplete: 2 of 3 chunks");
	test_frames_free(&frames);
}

/* Chunks of two attempts at the same object cannot be mixed. */
static void
test_reject_mixed_attempts(void **state)
{
	uint8_t data[CHUNK * 2];
	FrameList mixed;
	FrameList first;
	FrameList second;

	test_fill(data, sizeof(data), 2, false);
	test_encode(&key, CHUNK, "seg", data, sizeof(data), &first);
	test_encode(&key, CHUNK, "seg", data, sizeof(data), &second);
	mixed.count = 2;
	mixed.data = (uint8_t *[]){first.data[0], second.data[1]};
	mixed.len = (size_t[]){first.len[0], second.len[1]};
	expect_decode_error(&mixed, NULL, BK_ERR_SEQUENCE,
						"does not belong to the attempt being read");
	test_frames_free(&first);
	test_frames_free(&second);
}

/* Edits with a recomputed CRC get past the parser, never past the AEAD. */
static void
test_reject_tampered(void **state)
{
	uint8_t data[CHUNK * 2];
	FrameList frames;
	size_t payload_pos;

	test_fill(data, sizeof(data), 4, false);
	test_encode(&key, CHUNK, "seg", data, sizeof(data), &frames);

	/* Payload. */
	payload_pos = frames.len[1] - BK_FRAME_TRAILER_LEN - 3;
	frames.data[1][payload_pos] ^= 0x01;
	test_fix_crc(frames.data[1], frames.len[1]);
	expect_decode_error(&frames, NULL, BK_ERR_AUTH,
						"object \"seg\" chunk 1 of 2 failed authentication");
	frames.data[1][payload_pos] ^= 0x01;
	test_fix_crc(frames.data[1], frames.len[1]);

	/* Header (associated data): the metadata claims another timeline. */
	{
		char *meta = memmem(frames.data[1], frames.len[1], "timeline=1", 10);

		assert_non_null(meta);
		meta[9] = '2';
		test_fix_crc(frames.data[1], frames.len[1]);
		expect_decode_error(&frames, NULL, BK_ERR_FORMAT,
							"disagrees with chunk 0 on the metadata");
		meta[9] = '1';
		test_fix_crc(frames.data[1], frames.len[1]);
	}

	/* Tag. */
	frames.data[0][frames.len[0] - 5] ^= 0x80;
	test_fix_crc(frames.data[0], frames.len[0]);
	expect_decode_error(&frames, NULL, BK_ERR_AUTH,
						"chunk 0 of 2 failed authentication");
	frames.data[0][frames.len[0] - 5] ^= 0x80;
	test_fix_crc(frames.data[0], frames.len[0]);

	/* The sealed data key. */
	frames.data[0][BK_OFF_SEALED_KEY + 3] ^= 0x04;
	test_fix_crc(frames.data[0], frames.len[0]);
	expect_decode_error(&frames, NULL, BK_ERR_AUTH, "does not open");
	test_frames_free(&frames);
}

/*
 * The decoder skips the CRC on the happy path (the AEAD covers it), but a
 * corrupted frame must still be reported as corruption, not as tampering or
 * as a sequence error.
 */
static void
test_decoder_reports_corruption(void **state)
{
	uint8_t data[CHUNK * 2];
	FrameList frames;

	test_fill(data, sizeof(data), 8, false);
	test_encode(&key, CHUNK, "seg", data, sizeof(data), &frames);
	frames.data[1][frames.len[1] - 100] ^= 0x04;
	expect_decode_error(&frames, NULL, BK_ERR_FORMAT,
						"frame checksum mismatch");
	frames.data[1][frames.len[1] - 100] ^= 0x04;
	/* A corrupted chunk index would otherwise look like a sequence error. */
	frames.data[1][BK_OFF_CHUNK_INDEX + 3] ^= 0x02;
	expect_decode_error(&frames, NULL, BK_ERR_FORMAT,
						"frame checksum mismatch");
	test_frames_free(&frames);
}

/* A chunk moved into another object fails even with a consistent header. */
static void
test_reject_spliced_object_name(void **state)
{
	uint8_t data[100];
	FrameList frames;
	char *name;

	test_fill(data, sizeof(data), 5, false);
	test_encode(&key, CHUNK, "000000010000000000000007", data, sizeof(data),
				&frames);
	name =
		memmem(frames.data[0], frames.len[0], "000000010000000000000007", 24);
	name[23] = '8';
	test_fix_crc(frames.data[0], frames.len[0]);
	expect_decode_error(&frames, NULL, BK_ERR_AUTH, "failed authentication");
	test_frames_free(&frames);
}

static void
test_reject_unknown_key(void **state)
{
	BkKey other;
	BkKeyring other_ring;
	uint8_t data[100];
	FrameList frames;
	uint8_t *out;
	size_t out_len;
	BkError err;
	char id_hex[BK_KEY_ID_HEX_LEN + 1];
	char expected[128];

	test_key(&other, &other_ring);
	test_fill(data, sizeof(data), 5, false);
	test_encode(&key, CHUNK, "seg", data, sizeof(data), &frames);
	assert_false(test_decode(&other_ring, &frames, NULL, &out, &out_len, &err));
	assert_int_equal(err.code, BK_ERR_KEY);
	bk_key_id_hex(key.id, id_hex);
	snprintf(expected, sizeof(expected),
			 "object \"seg\" is sealed to key %s, which is not in the keyring",
			 id_hex);
	assert_error_contains(&err, expected);
	assert_true(strstr(err.hint, id_hex) != NULL);
	test_frames_free(&frames);
}

/* A keyring of old and new keys opens objects sealed to either (rotation). */
static void
test_keyring_rotation(void **state)
{
	BkKey old_key;
	BkKey new_key;
	BkKeyring both;
	uint8_t data[5000];
	FrameList old_frames;
	FrameList new_frames;
	uint8_t *out;
	size_t out_len;
	BkError err;

	test_key(&old_key, NULL);
	test_key(&new_key, NULL);
	memset(&both, 0, sizeof(both));
	both.keys[0] = old_key;
	both.keys[1] = new_key;
	both.count = 2;
	test_fill(data, sizeof(data), 6, false);
	test_encode(&old_key, CHUNK, "old", data, sizeof(data), &old_frames);
	test_encode(&new_key, CHUNK, "new", data, sizeof(data), &new_frames);
	assert_true(test_decode(&both, &old_frames, NULL, &out, &out_len, &err));
	assert_memory_equal(out, data, sizeof(data));
	free(out);
	assert_true(test_decode(&both, &new_frames, NULL, &out, &out_len, &err));
	assert_memory_equal(out, data, sizeof(data));
	free(out);
	test_frames_free(&old_frames);
	test_frames_free(&new_frames);
}

/* Decode every frame of one object with dec, which is reused; true if OK. */
static bool
decode_with(BkDecoder *dec, const FrameList *frames, BkError *err)
{
	bk_decoder_reset(dec);
	for (int frameIdx = 0; frameIdx < frames->count; frameIdx++)
	{
		const uint8_t *plain;
		size_t plain_len;

		if (!bk_decoder_push(dec, frames->data[frameIdx], frames->len[frameIdx],
							 &plain, &plain_len, err))
			return false;
	}
	return bk_decoder_finish(dec, err);
}

/*
 * One decoder keeps each key's private key loaded across objects: objects
 * of two keys, alternating, all open; a ring slot that now holds another
 * key is not opened with the old one's.
 */
static void
test_decoder_reused_across_keys(void **state)
{
	BkKey first;
	BkKey second;
	BkKey third;
	BkKeyring ring_of_two;
	BkDecoder *dec;
	uint8_t data[5000];
	FrameList first_frames;
	FrameList second_frames;
	FrameList third_frames;
	BkError err;

	test_key(&first, NULL);
	test_key(&second, NULL);
	test_key(&third, NULL);
	memset(&ring_of_two, 0, sizeof(ring_of_two));
	ring_of_two.keys[0] = first;
	ring_of_two.keys[1] = second;
	ring_of_two.count = 2;
	test_fill(data, sizeof(data), 9, false);
	test_encode(&first, CHUNK, "first", data, sizeof(data), &first_frames);
	test_encode(&second, CHUNK, "second", data, sizeof(data), &second_frames);
	test_encode(&third, CHUNK, "third", data, sizeof(data), &third_frames);
	dec = bk_decoder_new(&ring_of_two, &err);
	assert_non_null(dec);
	for (int round = 0; round < 3; round++)
	{
		if (!decode_with(dec, &first_frames, &err) ||
			!decode_with(dec, &second_frames, &err))
			fail_msg("decode failed: %s", err.message);
	}
	/* The second slot now holds the third key (the ring is borrowed). */
	ring_of_two.keys[1] = third;
	if (!decode_with(dec, &third_frames, &err))
		fail_msg("decode after the ring changed failed: %s", err.message);
	bk_error_clear(&err);
	assert_false(decode_with(dec, &second_frames, &err));
	assert_int_equal(err.code, BK_ERR_KEY);
	assert_error_contains(&err, "which is not in the keyring");
	/* Back again: the slot's cached key (the third's) must not be used. */
	ring_of_two.keys[1] = second;
	if (!decode_with(dec, &second_frames, &err))
		fail_msg("decode after the slot changed back failed: %s", err.message);
	if (!decode_with(dec, &first_frames, &err))
		fail_msg("decode with the untouched slot failed: %s", err.message);
	bk_decoder_free(dec);
	test_frames_free(&first_frames);
	test_frames_free(&second_frames);
	test_frames_free(&third_frames);
}

/*
 * A frame whose CRC alone is wrong decrypts (the tag does not cover the
 * CRC); bk_decoder_check_crc makes the decoder refuse it, as the keyless
 * check would.
 */
static void
test_decoder_check_crc(void **state)
{
	uint8_t data[CHUNK * 2];
	FrameList frames;
	BkDecoder *dec;
	BkError err;

	test_fill(data, sizeof(data), 10, false);
	test_encode(&key, CHUNK, "seg", data, sizeof(data), &frames);
	frames.data[1][frames.len[1] - 1] ^= 0x01;
	dec = bk_decoder_new(&ring, &err);
	assert_non_null(dec);
	if (!decode_with(dec, &frames, &err))
		fail_msg("decode without the CRC check failed: %s", err.message);
	bk_decoder_check_crc(dec, true);
	bk_error_clear(&err);
	assert_false(decode_with(dec, &frames, &err));
	assert_int_equal(err.code, BK_ERR_FORMAT);
	assert_error_contains(&err, "frame checksum mismatch");
	frames.data[1][frames.len[1] - 1] ^= 0x01;
	if (!decode_with(dec, &frames, &err))
		fail_msg("decode of the repaired frame failed: %s", err.message);
	bk_decoder_free(dec);
	test_frames_free(&frames);
}

/* The encoder refuses what would make an unparseable frame. */
static void
test_encoder_rejects_bad_input(void **state)
{
	BkError err;
	BkEncoder *enc = bk_encoder_new(&key, CHUNK, &err);
	BkObjectInfo info = {.kind = BK_KIND_WAL,
						 .source_id = "s",
						 .name = "../etc/passwd",
						 .size = 1};

	assert_non_null(enc);
	assert_false(bk_encoder_begin(enc, &info, &err));
	assert_error_contains(&err, "invalid object name \"../etc/passwd\"");
	info.name = "ok";
	info.source_id = "bad source";
	assert_false(bk_encoder_begin(enc, &info, &err));
	assert_error_contains(&err, "invalid source id \"bad source\"");
	info.source_id = "s";
	info.meta = "Bad=key";
	assert_false(bk_encoder_begin(enc, &info, &err));
	assert_error_contains(&err, "invalid metadata");
	/* A key given twice: bk and a Kafka consumer would read two values. */
	info.meta = "type=segment\ntimeline=1\ntype=history";
	assert_false(bk_encoder_begin(enc, &info, &err));
	assert_error_contains(&err, "invalid metadata");
	assert_false(bk_meta_valid("a=1\na=", strlen("a=1\na=")));
	assert_true(bk_meta_valid("ab=1\na=2\nb=3\n", strlen("ab=1\na=2\nb=3\n")));
	assert_true(bk_meta_valid("a=x\nb=a=", strlen("a=x\nb=a=")));
	/*
	 * A size whose chunk count wraps to 0 when rounded up: never an object
	 * without a last chunk (whose indexes would wrap, repeating nonces).
	 */
	info.meta = NULL;
	info.size = UINT64_MAX - 10;
	assert_false(bk_encoder_begin(enc, &info, &err));
	assert_error_contains(&err, "needs more than 2^32 chunks");
	bk_encoder_free(enc);
	assert_null(bk_encoder_new(&key, 100, &err));
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_error_contains(&err, "chunk size 100 is outside");
}

static void
test_name_rules(void **state)
{
	assert_true(bk_object_name_valid("000000010000000000000001", 24));
	assert_true(bk_object_name_valid("base/16384/2619_vm", 18));
	assert_true(bk_object_name_valid(
		"pg_tblspc/16390/PG_15_202209061/16384/16391", 43));
	assert_false(bk_object_name_valid("/abs", 4));
	assert_false(bk_object_name_valid("a//b", 4));
	assert_false(bk_object_name_valid("a/../b", 6));
	assert_false(bk_object_name_valid("a/./b", 5));
	assert_false(bk_object_name_valid("a/", 2));
	assert_false(bk_object_name_valid("a\\b", 3));
	assert_false(bk_object_name_valid("a\nb", 3));
	assert_false(bk_object_name_valid("", 0));
	assert_true(bk_source_id_valid("7301234567890123456", 19));
	assert_false(bk_source_id_valid("..", 2));
	assert_false(bk_source_id_valid("a/b", 3));
	/* Dot names are the repository's own: ".spool" holds the shippers'
	 * spools, which housekeeping empties, and listings skip them. */
	assert_false(bk_source_id_valid(".", 1));
	assert_false(bk_source_id_valid(".spool", 6));
	assert_false(bk_source_id_valid(".db1", 4));
	assert_true(bk_source_id_valid("db1.example", 11));
	assert_true(bk_source_id_valid("a..b", 4));
	/* The repository's own top-level names: its marker and the rejected
	 * messages' directory, in any letter case (a shared file system may
	 * not tell them apart); names that only begin with them are fine. */
	assert_false(bk_source_id_valid("rejected", 8));
	assert_false(bk_source_id_valid("Rejected", 8));
	assert_false(bk_source_id_valid("bk-repository", 13));
	assert_false(bk_source_id_valid("BK-REPOSITORY", 13));
	assert_true(bk_source_id_valid("rejected2", 9));
	assert_true(bk_source_id_valid("rejecte", 7));
	assert_true(bk_source_id_valid("bk-repository.old", 17));
	/* len bounds the id: a prefix of a longer buffer is judged alone. */
	assert_false(bk_source_id_valid("rejected/x", 8));
	assert_true(bk_source_id_valid("rejected", 7));
	/* The rule messages state matches the length limit. */
	{
		char limit[32];

		snprintf(limit, sizeof(limit), "1-%d bytes ", BK_SOURCE_ID_MAX);
		assert_true(strncmp(BK_SOURCE_ID_RULE, limit, strlen(limit)) == 0);
	}
}

static void
test_crc32c_known_values(void **state)
{
	/* RFC 3720 B.4 test vectors. */
	uint8_t zeros[32] = {0};
	uint8_t ones[32];
	uint8_t incrementing[32];

	memset(ones, 0xff, sizeof(ones));
	for (int pos = 0; pos < 32; pos++)
		incrementing[pos] = (uint8_t) pos;
	assert_int_equal(bk_crc32c(0, zeros, 32), 0x8A9136AA);
	assert_int_equal(bk_crc32c(0, ones, 32), 0x62A8AB43);
	assert_int_equal(bk_crc32c(0, incrementing, 32), 0x46DD794E);
	assert_int_equal(bk_crc32c(0, "123456789", 9), 0xE3069283);
	/* Incremental equals one-shot. */
	assert_int_equal(bk_crc32c(bk_crc32c(0, "1234", 4), "56789", 5),
					 0xE3069283);
}

/*
 * Long buffers take the three-stream path: at every length and alignment
 * around its block sizes (3 x 256, 3 x 8192 bytes) it must give what
 * seven bytes at a time (the one-byte instruction only) give.
 */
static void
test_crc32c_long_buffers(void **state)
{
	static const size_t lengths[] = {0,     1,     255,   767,   768,
									 769,   775,   1536,  24575, 24576,
									 24577, 24583, 25344, 49152, 100003};
	size_t size = 100003 + 16;
	uint8_t *data = malloc(size);

	assert_non_null(data);
	test_fill(data, size, 11, false);
	for (size_t lenIdx = 0; lenIdx < sizeof(lengths) / sizeof(lengths[0]);
		 lenIdx++)
	{
		for (size_t offset = 0; offset < 9; offset += 3)
		{
			size_t len = lengths[lenIdx];
			uint32_t piecewise = 0x12345678;

			for (size_t done = 0; done < len; done += 7)
				piecewise = bk_crc32c(piecewise, data + offset + done,
									  len - done < 7 ? len - done : 7);
			if (bk_crc32c(0x12345678, data + offset, len) != piecewise)
				fail_msg("CRC-32C of %zu bytes at offset %zu differs", len,
						 offset);
		}
	}
	free(data);
}

/* The CRC of parts read apart, combined, is the CRC of the whole. */
static void
test_crc32c_combine(void **state)
{
	size_t len = 3 * 1024 * 1024 + 7;
	uint8_t *data = malloc(len);
	uint32_t whole;
	static const size_t cuts[] = {0, 1, 8192, 1024 * 1024, 3 * 1024 * 1024 + 6};

	assert_non_null(data);
	for (size_t pos = 0; pos < len; pos++)
		data[pos] = (uint8_t) (pos * 2654435761u >> 13);
	whole = bk_crc32c(0, data, len);
	assert_int_equal(bk_crc32c_combine(0xE3069283, 0, 0), 0xE3069283);
	assert_int_equal(
		bk_crc32c_combine(bk_crc32c(0, "1234", 4), bk_crc32c(0, "56789", 5), 5),
		0xE3069283);
	for (size_t cut = 0; cut < sizeof(cuts) / sizeof(cuts[0]); cut++)
	{
		uint32_t head = bk_crc32c(0, data, cuts[cut]);
		uint32_t tail = bk_crc32c(0, data + cuts[cut], len - cuts[cut]);

		assert_int_equal(bk_crc32c_combine(head, tail, len - cuts[cut]), whole);
	}
	/* Three parts, combined left to right. */
	assert_int_equal(
		bk_crc32c_combine(bk_crc32c_combine(bk_crc32c(0, data, 100),
											bk_crc32c(0, data + 100, 5000),
											5000),
						  bk_crc32c(0, data + 5100, len - 5100), len - 5100),
		whole);
	free(data);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_empty),
		cmocka_unit_test(test_round_trip_one_byte),
		cmocka_unit_test(test_round_trip_exact_chunk),
		cmocka_unit_test(test_round_trip_chunk_plus_one),
		cmocka_unit_test(test_round_trip_many_mib),
		cmocka_unit_test(test_round_trip_over_4gib),
		cmocka_unit_test(test_compression_flag),
		cmocka_unit_test(test_parse_fields),
		cmocka_unit_test(test_resend_fingerprint),
		cmocka_unit_test(test_reject_truncated),
		cmocka_unit_test(test_reject_trailing_data),
		cmocka_unit_test(test_reject_bad_magic_and_version),
		cmocka_unit_test(test_reject_corruption),
		cmocka_unit_test(test_reject_structure),
		cmocka_unit_test(test_reject_reordered),
		cmocka_unit_test(test_reject_duplicate),
		cmocka_unit_test(test_reject_truncated_object),
		cmocka_unit_test(test_reject_mixed_attempts),
		cmocka_unit_test(test_reject_tampered),
		cmocka_unit_test(test_reject_spliced_object_name),
		cmocka_unit_test(test_decoder_reports_corruption),
		cmocka_unit_test(test_reject_unknown_key),
		cmocka_unit_test(test_keyring_rotation),
		cmocka_unit_test(test_decoder_reused_across_keys),
		cmocka_unit_test(test_decoder_check_crc),
		cmocka_unit_test(test_encoder_rejects_bad_input),
		cmocka_unit_test(test_name_rules),
		cmocka_unit_test(test_crc32c_known_values),
		cmocka_unit_test(test_crc32c_combine),
		cmocka_unit_test(test_crc32c_long_buffers),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, setup, NULL);
}
