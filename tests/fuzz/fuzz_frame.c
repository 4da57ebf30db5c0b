/*
 * fuzz_frame.c
 *		libFuzzer target: the frame parser, the keyless sequence tracker and
 *		the keyed decoder, over sequences of frames.
 *
 * Input: one mode byte, then frames, each prefixed by a 3-byte big-endian
 * length.  Mode bit 0 recomputes each frame's CRC-32C before parsing: without
 * it almost every mutation dies at the checksum, and the code behind it (field
 * checks, sequencing, AEAD) would go unfuzzed.  Every frame also goes through
 * the parser alone, and a tracker that, like the shipper's, restarts on
 * chunk 0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bk_crc32c.h"
#include "bk_frame.h"
#include "bk_util.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static BkKeyring ring;
static BkDecoder *decoder;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	BkObjectTracker tracker;
	uint8_t mode;
	size_t pos = 1;

	if (decoder == NULL)
	{
		BkError err;

		fuzz_key(&ring.keys[0]);
		ring.count = 1;
		decoder = bk_decoder_new(&ring, &err);
		if (decoder == NULL)
			abort();
	}
	if (size < 1)
		return 0;
	mode = data[0];
	bk_decoder_reset(decoder);
	bk_tracker_reset(&tracker);

	while (pos + 3 <= size)
	{
		size_t len = ((size_t) data[pos] << 16) |
					 ((size_t) data[pos + 1] << 8) | data[pos + 2];
		uint8_t *frame;
		const uint8_t *plain;
		size_t plain_len;
		BkFrame parsed;
		BkError err;

		pos += 3;
		if (len > size - pos)
			len = size - pos;
		/* A private copy: the fuzzer's buffer is read-only, and ASan sees overreads. */
		frame = malloc(len ? len : 1);
		memcpy(frame, data + pos, len);
		pos += len;
		if ((mode & 1) && len >= 4)
			bk_put_be32(frame + len - 4, bk_crc32c(0, frame, len - 4));

		if (bk_frame_parse(frame, len, &parsed, &err))
		{
			if (parsed.chunk_index == 0)
				bk_tracker_reset(&tracker);
			(void) bk_tracker_accept(&tracker, &parsed, &err);
		}
		if (!bk_decoder_push(decoder, frame, len, &plain, &plain_len, &err))
			bk_decoder_reset(decoder);
		else if (plain_len > 0 && plain[plain_len - 1] == 0xA5)
			/* Touch the output so ASan checks it is really plain_len bytes. */
			mode ^= 2;
		free(frame);
	}
	return 0;
}
