/*
 * testutil.h
 *		Helpers shared by the C unit tests: keys, objects encoded into frame
 *		lists, temporary directories.
 */
#ifndef BK_TESTUTIL_H
#define BK_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "bk_error.h"
#include "bk_frame.h"
#include "bk_keys.h"

typedef struct FrameList
{
	int count;
	uint8_t **data;
	size_t *len;
} FrameList;

/* A fresh key with private part, and a keyring holding just it. */
extern void test_key(BkKey *key, BkKeyring *ring);

/* Deterministic pseudo-random bytes (xorshift), mildly compressible if asked. */
extern void test_fill(uint8_t *buf, size_t len, uint64_t seed,
					  bool compressible);

/* Encode an object into a list of frame copies; asserts success. */
extern void test_encode(const BkKey *key, uint32_t chunk_size, const char *name,
						const uint8_t *data, size_t size, FrameList *frames);

/* The same for any object: its kind, source and metadata. */
extern void test_encode_object(const BkKey *key, uint32_t chunk_size,
							   const BkObjectInfo *info, const uint8_t *data,
							   FrameList *frames);
extern void test_frames_free(FrameList *frames);

/*
 * Decode a sequence of frames (indexes into frames, -1 terminated; NULL for
 * all in order).  Returns true on success with the plaintext in *out
 * (malloc'd); on failure err says why.
 */
extern bool test_decode(const BkKeyring *ring, const FrameList *frames,
						const int *order, uint8_t **out, size_t *out_len,
						BkError *err);

/* As test_decode, also returning the decoder's SHA-256 of the plaintext. */
extern bool test_decode_digest(const BkKeyring *ring, const FrameList *frames,
							   const int *order, uint8_t **out, size_t *out_len,
							   uint8_t *digest, BkError *err);

/* Little-endian integers into a buffer (binlog events built by hand). */
extern void put_le32(uint8_t *p, uint32_t v);
extern void put_le64(uint8_t *p, uint64_t v);

/* Recompute a frame's CRC after a deliberate edit (to reach deeper checks). */
extern void test_fix_crc(uint8_t *frame, size_t len);

/* mkdtemp under $TMPDIR; removed (recursively) by test_rmdir. */
extern char *test_mkdtemp(void);
extern void test_rmdir(const char *dir);

/*
 * stdout to /dev/null until test_stdout_restore(saved): a command's report
 * kept out of the TAP output.
 */
extern int test_stdout_quiet(void);
extern void test_stdout_restore(int saved);

/* stderr into the file path (made or emptied); returns the fd to give back. */
extern int test_stderr_to(const char *path);
extern void test_stderr_restore(int saved);

/* Assert that err's message contains needle (prints both otherwise). */
#define assert_error_contains(err, needle)                                     \
	do                                                                         \
	{                                                                          \
		if (strstr((err)->message, (needle)) == NULL)                          \
			fail_msg("error \"%s\" does not contain \"%s\"", (err)->message,   \
					 (needle));                                                \
	} while (0)

/*
 * Assert err's code, printing its message otherwise: two numbers alone do
 * not tell which failure came instead.
 */
#define assert_error_code(err, expected)                                       \
	do                                                                         \
	{                                                                          \
		if ((err)->code != (expected))                                         \
			fail_msg("error code %d, not %d: \"%s\"", (int) (err)->code,       \
					 (int) (expected), (err)->message);                        \
	} while (0)

#endif /* BK_TESTUTIL_H */
