/*
 * make_seeds.c
 *		Write seed inputs for the fuzz targets: valid frame sequences sealed
 *		to the fuzz key (empty, one chunk, several chunks, compressible and
 *		not), sample text inputs, and WAL segments for fuzz_wal (records,
 *		CREATE TABLESPACE among them, split across pages).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/wal_build.h"
#include "bk_frame.h"
#include "fuzz_common.h"

static void
write_seed(const char *dir, const char *name, const uint8_t *data, size_t len)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
	{
		perror(path);
		exit(1);
	}
}

static void
frame_seed(const char *dir, const char *name, size_t size, bool compressible)
{
	BkKey key;
	BkError err;
	BkEncoder *enc;
	BkObjectInfo info = {.kind = BK_KIND_WAL,
						 .source_id = "fuzz",
						 .name = "000000010000000000000001",
						 .meta = "lsn=0/1000000",
						 .size = size};
	uint8_t *plain = malloc(size + 1);
	uint8_t *seed = malloc(1 + 4 * (size + 8192));
	size_t seed_len = 1;
	size_t offset = 0;

	fuzz_key(&key);
	uint64_t state = 88172645463325252ull;

	for (size_t pos = 0; pos < size; pos++)
	{
		state ^= state << 13;
		state ^= state >> 7;
		state ^= state << 17;
		plain[pos] = compressible ? (uint8_t) (pos % 7) : (uint8_t) state;
	}
	enc = bk_encoder_new(&key, BK_CHUNK_SIZE_MIN, &err);
	if (enc == NULL || !bk_encoder_begin(enc, &info, &err))
	{
		fprintf(stderr, "%s\n", err.message);
		exit(1);
	}
	seed[0] = 0;
	while (!bk_encoder_done(enc))
	{
		uint32_t chunk = bk_encoder_next_chunk_len(enc);
		const uint8_t *frame;
		size_t frame_len;

		if (!bk_encoder_chunk(enc, plain + offset, chunk, &frame, &frame_len,
							  NULL, &err))
			exit(1);
		seed[seed_len++] = (uint8_t) (frame_len >> 16);
		seed[seed_len++] = (uint8_t) (frame_len >> 8);
		seed[seed_len++] = (uint8_t) frame_len;
		memcpy(seed + seed_len, frame, frame_len);
		seed_len += frame_len;
		offset += chunk;
	}
	write_seed(dir, name, seed, seed_len);
	bk_encoder_free(enc);
	free(plain);
	free(seed);
}

/*
 * A segment of 1 KiB pages for fuzz_wal (see there): it begins with the
 * rest of a record, holds records of other kinds and CREATE TABLESPACE
 * records (one with a long data header), and ends in the middle of one.
 */
static void
wal_seed(const char *dir, const char *name, size_t pages)
{
	WalBuild b;
	uint8_t rec[2048];
	char path[700];
	size_t len;

	wal_build_init(&b, pages * 1024, 1024, 0, 100);
	memset(rec, 0x11, 100);
	wal_build_bytes(&b, rec, 100, 100);
	memset(path, 'q', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	for (int i = 0; b.pos < b.len - 64; i++)
	{
		if (i % 4 == 1)
			len = wal_create_record(rec, 0, 16384 + i, "/srv/ts", i % 8 == 1);
		else if (i % 4 == 3)
			len = wal_create_record(rec, 0, 16384 + i, path, 0);
		else
			len = wal_other_record(rec, 48 + (i * 97) % 700, 10, 0);
		wal_build_record_start(&b);
		wal_build_bytes(&b, rec, len, len);
	}
	len = wal_create_record(rec, 0, 99999, "/srv/cut", 0);
	wal_build_record_start(&b);
	wal_build_bytes(&b, rec, len, len);
	write_seed(dir, name, b.buf, b.len);
	free(b.buf);
}

int
main(int argc, char **argv)
{
	static const char key_text[] =
		"\x00[bk-private-key]\nkey-id = 0000000000000000\nprivate-key = "
		"300bb465e254c1b6ea4933540f962e6b9036c25ad0e495147cc5030b55167660\n";
	static const char props[] =
		"\x03security.protocol=SSL;sasl.password=a\\;b;linger.ms=5";
	static const char meta[] =
		"\x04lsn=0/16000000\ntimeline=1\nstart=2026-11-24";
	static const char sizes[] = "\x05"
								"1.5MiB";
	static const char history[] =
		"\x06"
		"1\t0/A64A07C8\tno recovery target specified\n"
		"# comment\n\n2\t1/5000000\tat restore point \"x\"\n";
	static const char branches[] = "\x06"
								   "1:0/A64A07C8,2:1/5000000";

	if (argc != 3 && argc != 4)
	{
		fprintf(stderr, "usage: make_seeds FRAME_DIR TEXT_DIR [WAL_DIR]\n");
		return 2;
	}
	frame_seed(argv[1], "empty", 0, false);
	frame_seed(argv[1], "one", 100, false);
	frame_seed(argv[1], "three", 3 * BK_CHUNK_SIZE_MIN - 5, false);
	frame_seed(argv[1], "three-lz4", 3 * BK_CHUNK_SIZE_MIN - 5, true);
	write_seed(argv[2], "key", (const uint8_t *) key_text,
			   sizeof(key_text) - 1);
	write_seed(argv[2], "props", (const uint8_t *) props, sizeof(props) - 1);
	write_seed(argv[2], "meta", (const uint8_t *) meta, sizeof(meta) - 1);
	write_seed(argv[2], "sizes", (const uint8_t *) sizes, sizeof(sizes) - 1);
	write_seed(argv[2], "history", (const uint8_t *) history,
			   sizeof(history) - 1);
	write_seed(argv[2], "branches", (const uint8_t *) branches,
			   sizeof(branches) - 1);
	if (argc == 4)
	{
		wal_seed(argv[3], "one-page", 1);
		wal_seed(argv[3], "eight-pages", 8);
	}
	return 0;
}
