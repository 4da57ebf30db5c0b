/*
 * frame_bench.c
 *		Single-thread throughput of the bk frame codec (BkEncoder/BkDecoder)
 *		against the primitives it is built from, on the same data with the
 *		same chunking.
 *
 * Usage: frame_bench [--chunk-size N] [--seconds S] [--rounds R]
 *					  [--only LIST] FILE...
 *
 * --only runs just the named measurements (comma-separated: encode, decode,
 * lz4c, lz4d, aese, aesd, sha, crc, seal, unseal, bare_enc, bare_dec), for
 * profiling (perf record -e cpu-clock ...); the limits are then not printed.
 *
 * For each file (loaded whole into memory) it measures:
 *
 *	 bk encode    the file encoded as one object, again and again
 *	              (bk_encoder_begin + bk_encoder_chunk per chunk)
 *	 bk decode    the frames of one pre-encoded object decoded again and
 *	              again (bk_decoder_reset + bk_decoder_push + finish)
 *	 lz4 c        LZ4_compress_fast_extState, acceleration 1, every chunk
 *	 lz4 d        LZ4_decompress_safe of the chunks the encoder stores as lz4
 *	 aes enc/dec  AES-256-GCM through EVP (one key, a nonce, the frame
 *	              header as associated data and a tag per chunk) over the
 *	              payload the encoder encrypts: the lz4 block where lz4 made
 *	              the chunk smaller, the raw chunk otherwise
 *	 sha-256      EVP SHA-256 over the plaintext, one digest per object
 *
 * and, to account for what the codec does besides those three:
 *
 *	 crc-32c      bk_crc32c over the encoded frames
 *	 seal/unseal  bk_seal_data_key / bk_unseal_data_key, once per object
 *	 bare         the three primitives in one chunk-by-chunk loop and
 *	              nothing else, as a second, cache-friendly reference
 *
 * Each measurement repeats its work for at least S seconds of wall time
 * (CLOCK_MONOTONIC); thread CPU time (CLOCK_THREAD_CPUTIME_ID) is taken
 * too.  The measurements are run in R interleaved rounds and the best round
 * of each is kept, which filters out interference from other processes.
 *
 * The "primitive limit" is the plaintext throughput one core would reach
 * running the three primitives back to back and nothing else:
 *
 *	 encode limit = 1 / (1/lz4_c + payload_fraction/aes_enc + 1/sha)
 *	 decode limit = 1 / (lz4_fraction/lz4_d + payload_fraction/aes_dec
 *						 + 1/sha)
 *
 * with lz4_c and sha in plaintext bytes/s, aes in payload bytes/s, lz4_d in
 * decompressed bytes/s, payload_fraction = payload bytes / plaintext bytes
 * and lz4_fraction = plaintext bytes in lz4 chunks / plaintext bytes (the
 * decoder decompresses only those).  Computed from per-object times, which
 * is the same thing.  MB is 10^6 bytes, as in lz4 -b and openssl speed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lz4.h>
#include <openssl/evp.h>

#include "bk_crc32c.h"
#include "bk_crypto.h"
#include "bk_error.h"
#include "bk_frame.h"
#include "bk_keys.h"

#define OBJECT_NAME "000000010000000000000001"
#define SOURCE_ID   "bench"

static void
die(const char *what, const BkError *err)
{
	fprintf(stderr, "frame_bench: %s: %s\n", what,
			err != NULL ? err->message : "failed");
	exit(1);
}

static double
now_wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static double
now_cpu(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ the input */

typedef struct Input
{
	const char *path;
	uint8_t *data;
	size_t size;
	uint32_t chunk_size;
	size_t nchunks;
	size_t *chunk_len;

	/* What the encoder does with each chunk. */
	char **lz4_block; /* compressed block */
	int *lz4_len;     /* its length */
	int *shrank;      /* lz4 made it smaller: payload is the block */
	const uint8_t **payload;
	size_t *payload_len;
	size_t payload_total;
	size_t lz4_plain_total; /* plaintext bytes of the chunks stored as lz4 */
	size_t lz4_chunks;
	int lz4_bound;

	/* AES-GCM ciphertext of every payload, for the decrypt primitive. */
	uint8_t **cipher;
	uint8_t (*tag)[BK_GCM_TAG_LEN];
	uint8_t aes_key[BK_DATA_KEY_LEN];

	/* One encoded object, frame by frame. */
	uint8_t **frame;
	size_t *frame_len;
	size_t frame_total;
	uint32_t header_len;

	/* Scratch. */
	char *lz4_state;
	uint8_t *out;
	size_t out_cap;
} Input;

static void *
xmalloc(size_t n)
{
	void *p = malloc(n > 0 ? n : 1);

	if (p == NULL)
	{
		fprintf(stderr, "frame_bench: out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

static void
load_file(Input *in, const char *path)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	size_t done = 0;

	if (fd < 0 || fstat(fd, &st) != 0)
	{
		fprintf(stderr, "frame_bench: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	if (st.st_size == 0)
	{
		fprintf(stderr, "frame_bench: %s is empty\n", path);
		exit(1);
	}
	in->path = path;
	in->size = (size_t) st.st_size;
	in->data = xmalloc(in->size);
	while (done < in->size)
	{
		ssize_t n = read(fd, in->data + done, in->size - done);

		if (n <= 0)
		{
			fprintf(stderr, "frame_bench: reading %s: %s\n", path,
					n == 0 ? "short read" : strerror(errno));
			exit(1);
		}
		done += (size_t) n;
	}
	close(fd);
}

/* The frame header length the encoder uses for our object. */
static uint32_t
header_len_of(void)
{
	return (uint32_t) (BK_FRAME_FIXED_LEN + strlen(SOURCE_ID) +
					   strlen(OBJECT_NAME));
}

static void
prepare(Input *in, uint32_t chunk_size, const BkKey *key, const BkKeyring *ring)
{
	BkError err;
	BkEncoder *enc;
	BkObjectInfo info = {.kind = BK_KIND_WAL,
						 .source_id = SOURCE_ID,
						 .name = OBJECT_NAME,
						 .meta = NULL,
						 .size = 0};
	EVP_CIPHER *cipher;
	EVP_CIPHER_CTX *ctx;
	uint8_t aad[BK_FRAME_FIXED_LEN + 64];
	size_t off = 0;
	size_t i;

	in->chunk_size = chunk_size;
	in->nchunks = (in->size + chunk_size - 1) / chunk_size;
	in->chunk_len = xmalloc(in->nchunks * sizeof(size_t));
	in->lz4_block = xmalloc(in->nchunks * sizeof(char *));
	in->lz4_len = xmalloc(in->nchunks * sizeof(int));
	in->shrank = xmalloc(in->nchunks * sizeof(int));
	in->payload = xmalloc(in->nchunks * sizeof(uint8_t *));
	in->payload_len = xmalloc(in->nchunks * sizeof(size_t));
	in->cipher = xmalloc(in->nchunks * sizeof(uint8_t *));
	in->tag = xmalloc(in->nchunks * BK_GCM_TAG_LEN);
	in->frame = xmalloc(in->nchunks * sizeof(uint8_t *));
	in->frame_len = xmalloc(in->nchunks * sizeof(size_t));
	in->lz4_bound = LZ4_compressBound((int) chunk_size);
	in->lz4_state = xmalloc((size_t) LZ4_sizeofState());
	in->out_cap = (size_t) in->lz4_bound + chunk_size + BK_GCM_TAG_LEN;
	in->out = xmalloc(in->out_cap);
	in->header_len = header_len_of();

	/* Compress every chunk once, as the encoder does. */
	in->payload_total = 0;
	in->lz4_plain_total = 0;
	in->lz4_chunks = 0;
	for (i = 0; i < in->nchunks; i++)
	{
		size_t len = in->size - off < chunk_size ? in->size - off : chunk_size;
		int clen;

		in->chunk_len[i] = len;
		in->lz4_block[i] = xmalloc((size_t) in->lz4_bound);
		clen = LZ4_compress_fast_extState(
			in->lz4_state, (const char *) in->data + off, in->lz4_block[i],
			(int) len, in->lz4_bound, 1);
		in->lz4_len[i] = clen;
		in->shrank[i] = clen > 0 && (size_t) clen < len;
		if (in->shrank[i])
		{
			in->payload[i] = (const uint8_t *) in->lz4_block[i];
			in->payload_len[i] = (size_t) clen;
			in->lz4_plain_total += len;
			in->lz4_chunks++;
		}
		else
		{
			in->payload[i] = in->data + off;
			in->payload_len[i] = len;
		}
		in->payload_total += in->payload_len[i];
		off += len;
	}

	/* Ciphertexts and tags for the decrypt primitive. */
	if (!bk_random_bytes(in->aes_key, sizeof(in->aes_key), &err))
		die("random key", &err);
	memset(aad, 0x5a, sizeof(aad));
	cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	ctx = EVP_CIPHER_CTX_new();
	if (cipher == NULL || ctx == NULL ||
		EVP_CipherInit_ex2(ctx, cipher, in->aes_key, NULL, 1, NULL) != 1)
		die("AES-256-GCM setup", NULL);
	for (i = 0; i < in->nchunks; i++)
	{
		uint8_t nonce[BK_GCM_NONCE_LEN] = {0};
		int n;

		nonce[8] = (uint8_t) (i >> 24);
		nonce[9] = (uint8_t) (i >> 16);
		nonce[10] = (uint8_t) (i >> 8);
		nonce[11] = (uint8_t) i;
		in->cipher[i] = xmalloc(in->payload_len[i]);
		if (EVP_CipherInit_ex2(ctx, NULL, NULL, nonce, 1, NULL) != 1 ||
			EVP_CipherUpdate(ctx, NULL, &n, aad, (int) in->header_len) != 1 ||
			EVP_CipherUpdate(ctx, in->cipher[i], &n, in->payload[i],
							 (int) in->payload_len[i]) != 1 ||
			EVP_CipherFinal_ex(ctx, in->cipher[i] + in->payload_len[i], &n) !=
				1 ||
			EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, BK_GCM_TAG_LEN,
								in->tag[i]) != 1)
			die("AES-256-GCM encryption", NULL);
	}
	EVP_CIPHER_CTX_free(ctx);
	EVP_CIPHER_free(cipher);

	/* One encoded object, kept frame by frame for the decoder. */
	enc = bk_encoder_new(key, chunk_size, &err);
	if (enc == NULL)
		die("bk_encoder_new", &err);
	info.size = in->size;
	if (!bk_encoder_begin(enc, &info, &err))
		die("bk_encoder_begin", &err);
	off = 0;
	in->frame_total = 0;
	for (i = 0; !bk_encoder_done(enc); i++)
	{
		uint32_t len = bk_encoder_next_chunk_len(enc);
		const uint8_t *frame;
		size_t frame_len;

		if (i >= in->nchunks || len != in->chunk_len[i])
			die("encoder chunking differs from ours", NULL);
		if (!bk_encoder_chunk(enc, in->data + off, len, &frame, &frame_len,
							  NULL, &err))
			die("bk_encoder_chunk", &err);
		in->frame[i] = xmalloc(frame_len);
		memcpy(in->frame[i], frame, frame_len);
		in->frame_len[i] = frame_len;
		in->frame_total += frame_len;
		off += len;
	}
	bk_encoder_free(enc);

	/* The frames must decode back to the file. */
	{
		BkDecoder *dec = bk_decoder_new(ring, &err);

		if (dec == NULL)
			die("bk_decoder_new", &err);
		bk_decoder_reset(dec);
		off = 0;
		for (i = 0; i < in->nchunks; i++)
		{
			const uint8_t *plain;
			size_t plain_len;

			if (!bk_decoder_push(dec, in->frame[i], in->frame_len[i], &plain,
								 &plain_len, &err))
				die("bk_decoder_push", &err);
			if (plain_len != in->chunk_len[i] ||
				memcmp(plain, in->data + off, plain_len) != 0)
				die("decoded chunk differs from the input", NULL);
			off += plain_len;
		}
		if (!bk_decoder_finish(dec, &err))
			die("bk_decoder_finish", &err);
		bk_decoder_free(dec);
	}
}

/* ------------------------------------------------------- the measurements */

typedef struct Ctx
{
	Input *in;
	const BkKey *key;
	const BkKeyring *ring;
	BkEncoder *enc;
	BkDecoder *dec;
	EVP_CIPHER *cipher;
	EVP_CIPHER_CTX *aes;
	EVP_MD_CTX *md;
	uint8_t aad[BK_FRAME_FIXED_LEN + 64];
	uint8_t ephemeral[BK_X25519_KEY_LEN];
	uint8_t sealed[BK_SEALED_KEY_LEN];
	uint8_t seal_aad[40];
	char *bare_lz4; /* lz4 block / decrypted payload of the bare pipeline */
	uint32_t sink;
} Ctx;

/* One repetition of a measured piece of work. */
typedef void (*WorkFn)(Ctx *c);

static void
work_encode(Ctx *c)
{
	Input *in = c->in;
	BkError err;
	BkObjectInfo info = {.kind = BK_KIND_WAL,
						 .source_id = SOURCE_ID,
						 .name = OBJECT_NAME,
						 .meta = NULL,
						 .size = in->size};
	size_t off = 0;

	if (!bk_encoder_begin(c->enc, &info, &err))
		die("bk_encoder_begin", &err);
	while (!bk_encoder_done(c->enc))
	{
		uint32_t len = bk_encoder_next_chunk_len(c->enc);
		const uint8_t *frame;
		size_t frame_len;

		if (!bk_encoder_chunk(c->enc, in->data + off, len, &frame, &frame_len,
							  NULL, &err))
			die("bk_encoder_chunk", &err);
		c->sink += frame[frame_len - 1];
		off += len;
	}
}

static void
work_decode(Ctx *c)
{
	Input *in = c->in;
	BkError err;

	bk_decoder_reset(c->dec);
	for (size_t i = 0; i < in->nchunks; i++)
	{
		const uint8_t *plain;
		size_t plain_len;

		if (!bk_decoder_push(c->dec, in->frame[i], in->frame_len[i], &plain,
							 &plain_len, &err))
			die("bk_decoder_push", &err);
		c->sink += plain[plain_len - 1];
	}
	if (!bk_decoder_finish(c->dec, &err))
		die("bk_decoder_finish", &err);
}

static void
work_lz4_compress(Ctx *c)
{
	Input *in = c->in;
	size_t off = 0;

	for (size_t i = 0; i < in->nchunks; i++)
	{
		int n = LZ4_compress_fast_extState(
			in->lz4_state, (const char *) in->data + off, (char *) in->out,
			(int) in->chunk_len[i], in->lz4_bound, 1);

		if (n != in->lz4_len[i])
			die("lz4 compression is not deterministic", NULL);
		off += in->chunk_len[i];
	}
}

static void
work_lz4_decompress(Ctx *c)
{
	Input *in = c->in;

	for (size_t i = 0; i < in->nchunks; i++)
	{
		int n;

		if (!in->shrank[i])
			continue;
		n = LZ4_decompress_safe(in->lz4_block[i], (char *) in->out,
								in->lz4_len[i], (int) in->chunk_len[i]);
		if (n != (int) in->chunk_len[i])
			die("LZ4_decompress_safe", NULL);
	}
}

static void
chunk_nonce(size_t i, uint8_t nonce[BK_GCM_NONCE_LEN])
{
	memset(nonce, 0, BK_GCM_NONCE_LEN);
	nonce[8] = (uint8_t) (i >> 24);
	nonce[9] = (uint8_t) (i >> 16);
	nonce[10] = (uint8_t) (i >> 8);
	nonce[11] = (uint8_t) i;
}

static void
work_aes_encrypt(Ctx *c)
{
	Input *in = c->in;

	for (size_t i = 0; i < in->nchunks; i++)
	{
		uint8_t nonce[BK_GCM_NONCE_LEN];
		uint8_t tag[BK_GCM_TAG_LEN];
		int n;

		chunk_nonce(i, nonce);
		if (EVP_CipherInit_ex2(c->aes, NULL, NULL, nonce, 1, NULL) != 1 ||
			EVP_CipherUpdate(c->aes, NULL, &n, c->aad, (int) in->header_len) !=
				1 ||
			EVP_CipherUpdate(c->aes, in->out, &n, in->payload[i],
							 (int) in->payload_len[i]) != 1 ||
			EVP_CipherFinal_ex(c->aes, in->out + in->payload_len[i], &n) != 1 ||
			EVP_CIPHER_CTX_ctrl(c->aes, EVP_CTRL_GCM_GET_TAG, BK_GCM_TAG_LEN,
								tag) != 1)
			die("AES-256-GCM encryption", NULL);
		c->sink += tag[0];
	}
}

static void
work_aes_decrypt(Ctx *c)
{
	Input *in = c->in;

	for (size_t i = 0; i < in->nchunks; i++)
	{
		uint8_t nonce[BK_GCM_NONCE_LEN];
		int n;

		chunk_nonce(i, nonce);
		if (EVP_CipherInit_ex2(c->aes, NULL, NULL, nonce, 0, NULL) != 1 ||
			EVP_CipherUpdate(c->aes, NULL, &n, c->aad, (int) in->header_len) !=
				1 ||
			EVP_CipherUpdate(c->aes, in->out, &n, in->cipher[i],
							 (int) in->payload_len[i]) != 1 ||
			EVP_CIPHER_CTX_ctrl(c->aes, EVP_CTRL_GCM_SET_TAG, BK_GCM_TAG_LEN,
								in->tag[i]) != 1 ||
			EVP_CipherFinal_ex(c->aes, in->out + in->payload_len[i], &n) != 1)
			die("AES-256-GCM decryption (tag mismatch?)", NULL);
	}
}

static void
work_sha256(Ctx *c)
{
	Input *in = c->in;
	uint8_t digest[BK_SHA256_LEN];
	size_t off = 0;

	if (EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1)
		die("SHA-256 init", NULL);
	for (size_t i = 0; i < in->nchunks; i++)
	{
		if (EVP_DigestUpdate(c->md, in->data + off, in->chunk_len[i]) != 1)
			die("SHA-256 update", NULL);
		off += in->chunk_len[i];
	}
	if (EVP_DigestFinal_ex(c->md, digest, NULL) != 1)
		die("SHA-256 final", NULL);
	c->sink += digest[0];
}

static void
work_crc32c(Ctx *c)
{
	Input *in = c->in;

	for (size_t i = 0; i < in->nchunks; i++)
		c->sink += bk_crc32c(0, in->frame[i], in->frame_len[i]);
}

static void
work_seal(Ctx *c)
{
	BkError err;
	uint8_t data_key[BK_DATA_KEY_LEN];

	if (!bk_random_bytes(data_key, sizeof(data_key), &err) ||
		!bk_seal_data_key(c->key->public_key, data_key, c->seal_aad,
						  sizeof(c->seal_aad), c->ephemeral, c->sealed, &err))
		die("bk_seal_data_key", &err);
}

static void
work_unseal(Ctx *c)
{
	BkError err;
	uint8_t data_key[BK_DATA_KEY_LEN];

	if (!bk_unseal_data_key(c->key->private_key, c->key->public_key,
							c->ephemeral, c->sealed, c->seal_aad,
							sizeof(c->seal_aad), data_key, &err))
		die("bk_unseal_data_key", &err);
	c->sink += data_key[0];
}

/*
 * The three primitives applied chunk by chunk in one loop, as the codec
 * applies them, with nothing else: no header, no CRC, no key set-up.  Each
 * chunk stays in cache from one step to the next, which the separately
 * measured primitives do not get; the gap between this and bk is the cost
 * of the codec's own work.
 */
static void
work_bare_encode(Ctx *c)
{
	Input *in = c->in;
	uint8_t digest[BK_SHA256_LEN];
	size_t off = 0;

	if (EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1)
		die("SHA-256 init", NULL);
	for (size_t i = 0; i < in->nchunks; i++)
	{
		const uint8_t *plain = in->data + off;
		const uint8_t *payload = plain;
		size_t payload_len = in->chunk_len[i];
		uint8_t nonce[BK_GCM_NONCE_LEN];
		uint8_t tag[BK_GCM_TAG_LEN];
		int n;

		if (EVP_DigestUpdate(c->md, plain, in->chunk_len[i]) != 1)
			die("SHA-256 update", NULL);
		n = LZ4_compress_fast_extState(in->lz4_state, (const char *) plain,
									   c->bare_lz4, (int) in->chunk_len[i],
									   in->lz4_bound, 1);
		if (n > 0 && (size_t) n < in->chunk_len[i])
		{
			payload = (const uint8_t *) c->bare_lz4;
			payload_len = (size_t) n;
		}
		chunk_nonce(i, nonce);
		if (EVP_CipherInit_ex2(c->aes, NULL, NULL, nonce, 1, NULL) != 1 ||
			EVP_CipherUpdate(c->aes, NULL, &n, c->aad, (int) in->header_len) !=
				1 ||
			EVP_CipherUpdate(c->aes, in->out, &n, payload, (int) payload_len) !=
				1 ||
			EVP_CipherFinal_ex(c->aes, in->out + payload_len, &n) != 1 ||
			EVP_CIPHER_CTX_ctrl(c->aes, EVP_CTRL_GCM_GET_TAG, BK_GCM_TAG_LEN,
								tag) != 1)
			die("AES-256-GCM encryption", NULL);
		c->sink += tag[0];
		off += in->chunk_len[i];
	}
	if (EVP_DigestFinal_ex(c->md, digest, NULL) != 1)
		die("SHA-256 final", NULL);
	c->sink += digest[0];
}

static void
work_bare_decode(Ctx *c)
{
	Input *in = c->in;
	uint8_t digest[BK_SHA256_LEN];

	if (EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1)
		die("SHA-256 init", NULL);
	for (size_t i = 0; i < in->nchunks; i++)
	{
		uint8_t nonce[BK_GCM_NONCE_LEN];
		uint8_t *dst = in->shrank[i] ? (uint8_t *) c->bare_lz4 : in->out;
		int n;

		chunk_nonce(i, nonce);
		if (EVP_CipherInit_ex2(c->aes, NULL, NULL, nonce, 0, NULL) != 1 ||
			EVP_CipherUpdate(c->aes, NULL, &n, c->aad, (int) in->header_len) !=
				1 ||
			EVP_CipherUpdate(c->aes, dst, &n, in->cipher[i],
							 (int) in->payload_len[i]) != 1 ||
			EVP_CIPHER_CTX_ctrl(c->aes, EVP_CTRL_GCM_SET_TAG, BK_GCM_TAG_LEN,
								in->tag[i]) != 1 ||
			EVP_CipherFinal_ex(c->aes, dst + in->payload_len[i], &n) != 1)
			die("AES-256-GCM decryption (tag mismatch?)", NULL);
		if (in->shrank[i] && LZ4_decompress_safe(c->bare_lz4, (char *) in->out,
												 (int) in->payload_len[i],
												 (int) in->chunk_len[i]) !=
								 (int) in->chunk_len[i])
			die("LZ4_decompress_safe", NULL);
		if (EVP_DigestUpdate(c->md, in->out, in->chunk_len[i]) != 1)
			die("SHA-256 update", NULL);
	}
	if (EVP_DigestFinal_ex(c->md, digest, NULL) != 1)
		die("SHA-256 final", NULL);
	c->sink += digest[0];
}

typedef struct Measure
{
	const char *key;
	const char *label;
	WorkFn fn;
	double bytes; /* bytes the rate is expressed in, per repetition */
	const char *unit;
	int skip; /* nothing to measure (no lz4 chunk to decompress) */
	/* Best round: seconds per repetition. */
	double wall;
	double cpu;
	long reps;
} Measure;

enum
{
	M_ENCODE,
	M_DECODE,
	M_LZ4C,
	M_LZ4D,
	M_AESE,
	M_AESD,
	M_SHA,
	M_CRC,
	M_SEAL,
	M_UNSEAL,
	M_BARE_ENC,
	M_BARE_DEC,
	M_COUNT
};

static const char *const measure_keys[M_COUNT] = {
	"encode", "decode", "lz4c", "lz4d",   "aese",     "aesd",
	"sha",    "crc",    "seal", "unseal", "bare_enc", "bare_dec"};

/* NULL: everything. */
static const char *only_list = NULL;

static bool
measure_selected(const char *key)
{
	size_t klen = strlen(key);
	const char *p = only_list;

	if (p == NULL)
		return true;
	while (*p != '\0')
	{
		size_t n = strcspn(p, ",");

		if (n == klen && strncmp(p, key, n) == 0)
			return true;
		p += n;
		if (*p == ',')
			p++;
	}
	return false;
}

static void
set_measure(Measure *m, int which, const char *label, WorkFn fn, double bytes,
			const char *unit, int skip)
{
	memset(m, 0, sizeof(*m));
	m->key = measure_keys[which];
	m->label = label;
	m->fn = fn;
	m->bytes = bytes;
	m->unit = unit;
	m->skip = skip || !measure_selected(m->key);
}

static void
run_measure(Ctx *c, Measure *m, double seconds)
{
	double w0;
	double c0;
	double w;
	double cpu;
	long reps = 0;

	if (m->skip)
		return;
	m->fn(c); /* warm up: caches, lazily built tables */
	w0 = now_wall();
	c0 = now_cpu();
	do
	{
		m->fn(c);
		reps++;
		w = now_wall() - w0;
	} while (w < seconds);
	cpu = now_cpu() - c0;
	if (m->reps == 0 || w / (double) reps < m->wall)
	{
		m->wall = w / (double) reps;
		m->cpu = cpu / (double) reps;
		m->reps = reps;
	}
}

static double
rate(const Measure *m)
{
	return m->skip ? 0.0 : m->bytes / m->wall / 1e6;
}

static double
rate_cpu(const Measure *m)
{
	return m->skip ? 0.0 : m->bytes / m->cpu / 1e6;
}

typedef struct Result
{
	const char *path;
	double encode;
	double decode;
	double encode_cpu;
	double decode_cpu;
	double encode_limit;
	double decode_limit;
	double compression;
} Result;

static void
bench_file(Input *in, const BkKey *key, const BkKeyring *ring, double seconds,
		   int rounds, Result *res)
{
	Ctx c;
	BkError err;
	Measure m[M_COUNT];
	double size = (double) in->size;
	double t_enc_limit;
	double t_dec_limit;
	double t_overhead_enc;
	double t_overhead_dec;

	memset(&c, 0, sizeof(c));
	c.in = in;
	c.key = key;
	c.ring = ring;
	c.enc = bk_encoder_new(key, in->chunk_size, &err);
	if (c.enc == NULL)
		die("bk_encoder_new", &err);
	c.dec = bk_decoder_new(ring, &err);
	if (c.dec == NULL)
		die("bk_decoder_new", &err);
	c.cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	c.aes = EVP_CIPHER_CTX_new();
	c.md = EVP_MD_CTX_new();
	if (c.cipher == NULL || c.aes == NULL || c.md == NULL ||
		EVP_CipherInit_ex2(c.aes, c.cipher, in->aes_key, NULL, 1, NULL) != 1)
		die("OpenSSL setup", NULL);
	memset(c.aad, 0x5a, sizeof(c.aad));
	c.bare_lz4 = xmalloc((size_t) in->lz4_bound + BK_GCM_TAG_LEN);
	memset(c.seal_aad, 0x33, sizeof(c.seal_aad));
	work_seal(&c);

	memset(m, 0, sizeof(m));
	set_measure(&m[M_ENCODE], M_ENCODE, "bk encode", work_encode, size,
				"plaintext", 0);
	set_measure(&m[M_DECODE], M_DECODE, "bk decode", work_decode, size,
				"plaintext", 0);
	set_measure(&m[M_LZ4C], M_LZ4C, "lz4 compress (accel 1)", work_lz4_compress,
				size, "input", 0);
	set_measure(&m[M_LZ4D], M_LZ4D, "lz4 decompress", work_lz4_decompress,
				(double) in->lz4_plain_total, "output", in->lz4_chunks == 0);
	set_measure(&m[M_AESE], M_AESE, "aes-256-gcm encrypt", work_aes_encrypt,
				(double) in->payload_total, "payload", 0);
	set_measure(&m[M_AESD], M_AESD, "aes-256-gcm decrypt", work_aes_decrypt,
				(double) in->payload_total, "payload", 0);
	set_measure(&m[M_SHA], M_SHA, "sha-256", work_sha256, size, "plaintext", 0);
	set_measure(&m[M_CRC], M_CRC, "crc-32c (bk_crc32c)", work_crc32c,
				(double) in->frame_total, "frame", 0);
	set_measure(&m[M_SEAL], M_SEAL, "seal data key (per object)", work_seal, 0,
				"", 0);
	set_measure(&m[M_UNSEAL], M_UNSEAL, "unseal data key (per object)",
				work_unseal, 0, "", 0);

	set_measure(&m[M_BARE_ENC], M_BARE_ENC, "bare lz4+aes+sha, encode side",
				work_bare_encode, size, "plaintext", 0);
	set_measure(&m[M_BARE_DEC], M_BARE_DEC, "bare aes+lz4+sha, decode side",
				work_bare_decode, size, "plaintext", 0);

	for (int r = 0; r < rounds; r++)
		for (int i = 0; i < M_COUNT; i++)
		{
			/* Per-object key set-up is cheap: a fraction of the time will do. */
			double s = (i == M_SEAL || i == M_UNSEAL) ? seconds / 5 : seconds;

			run_measure(&c, &m[i], s);
		}

	if (only_list != NULL)
	{
		printf("== %s (--only %s)\n", in->path, only_list);
		for (int i = 0; i < M_COUNT; i++)
			if (!m[i].skip)
				printf("   %-30s %10.1f MB/s %10.3f ms/obj\n", m[i].label,
					   m[i].bytes > 0 ? rate(&m[i]) : 0.0, m[i].wall * 1e3);
		memset(res, 0, sizeof(*res));
		goto done;
	}

	/* Seconds per object for the primitives alone, applied serially. */
	t_enc_limit = m[M_LZ4C].wall + m[M_AESE].wall + m[M_SHA].wall;
	t_dec_limit = (m[M_LZ4D].skip ? 0.0 : m[M_LZ4D].wall) + m[M_AESD].wall +
				  m[M_SHA].wall;
	t_overhead_enc = m[M_CRC].wall + m[M_SEAL].wall;
	t_overhead_dec = m[M_CRC].wall + m[M_UNSEAL].wall;

	res->path = in->path;
	res->encode = rate(&m[M_ENCODE]);
	res->decode = rate(&m[M_DECODE]);
	res->encode_cpu = rate_cpu(&m[M_ENCODE]);
	res->decode_cpu = rate_cpu(&m[M_DECODE]);
	res->encode_limit = size / t_enc_limit / 1e6;
	res->decode_limit = size / t_dec_limit / 1e6;
	res->compression = (double) in->frame_total / size;

	printf("== %s\n", in->path);
	printf("   %zu bytes, %zu chunks of %" PRIu32 " bytes; "
		   "%zu of %zu chunks stored as lz4\n",
		   in->size, in->nchunks, in->chunk_size, in->lz4_chunks, in->nchunks);
	printf("   compression: frames/plaintext %.4f (payload/plaintext %.4f, "
		   "lz4 fraction %.3f)\n",
		   res->compression, (double) in->payload_total / size,
		   (double) in->lz4_plain_total / size);
	printf("   best of %d rounds, >= %.1f s each\n", rounds, seconds);
	printf("   %-30s %10s %10s  %-10s %8s %8s\n", "measurement", "MB/s",
		   "MB/s(cpu)", "bytes of", "ms/obj", "reps");
	for (int i = 0; i < M_COUNT; i++)
	{
		if (m[i].skip)
		{
			printf("   %-30s %10s %10s  %-10s %8s %8s\n", m[i].label, "-", "-",
				   "(no lz4 chunk)", "0", "-");
			continue;
		}
		if (m[i].bytes > 0)
			printf("   %-30s %10.1f %10.1f  %-10s %8.3f %8ld\n", m[i].label,
				   rate(&m[i]), rate_cpu(&m[i]), m[i].unit, m[i].wall * 1e3,
				   m[i].reps);
		else
			printf("   %-30s %10s %10s  %-10s %8.3f %8ld\n", m[i].label, "", "",
				   "", m[i].wall * 1e3, m[i].reps);
	}
	printf("   encode: bk %.1f MB/s, primitive limit %.1f MB/s, ratio %.1f%%"
		   " (limit incl. crc-32c + seal: %.1f MB/s, ratio %.1f%%)\n",
		   res->encode, res->encode_limit,
		   100.0 * res->encode / res->encode_limit,
		   size / (t_enc_limit + t_overhead_enc) / 1e6,
		   100.0 * res->encode / (size / (t_enc_limit + t_overhead_enc) / 1e6));
	printf("   decode: bk %.1f MB/s, primitive limit %.1f MB/s, ratio %.1f%%"
		   " (limit incl. crc-32c + unseal: %.1f MB/s, ratio %.1f%%)\n",
		   res->decode, res->decode_limit,
		   100.0 * res->decode / res->decode_limit,
		   size / (t_dec_limit + t_overhead_dec) / 1e6,
		   100.0 * res->decode / (size / (t_dec_limit + t_overhead_dec) / 1e6));
	printf("   bare pipeline (the three primitives in one chunk loop, nothing "
		   "else): encode %.1f MB/s, bk/bare %.1f%%; decode %.1f MB/s, "
		   "bk/bare %.1f%%\n",
		   rate(&m[M_BARE_ENC]), 100.0 * m[M_BARE_ENC].wall / m[M_ENCODE].wall,
		   rate(&m[M_BARE_DEC]), 100.0 * m[M_BARE_DEC].wall / m[M_DECODE].wall);
	printf("   unaccounted per object: encode %.3f ms, decode %.3f ms\n",
		   (m[M_ENCODE].wall - t_enc_limit - t_overhead_enc) * 1e3,
		   (m[M_DECODE].wall - t_dec_limit - t_overhead_dec) * 1e3);
	printf("PRIM file=%s lz4c_mbps=%.1f lz4d_mbps=%.1f aes_enc_mbps=%.1f "
		   "aes_dec_mbps=%.1f sha256_mbps=%.1f crc32c_mbps=%.1f "
		   "seal_ms=%.3f unseal_ms=%.3f payload_fraction=%.4f "
		   "lz4_fraction=%.4f bare_encode_mbps=%.1f bare_decode_mbps=%.1f\n",
		   in->path, rate(&m[M_LZ4C]), rate(&m[M_LZ4D]), rate(&m[M_AESE]),
		   rate(&m[M_AESD]), rate(&m[M_SHA]), rate(&m[M_CRC]),
		   m[M_SEAL].wall * 1e3, m[M_UNSEAL].wall * 1e3,
		   (double) in->payload_total / size,
		   (double) in->lz4_plain_total / size, rate(&m[M_BARE_ENC]),
		   rate(&m[M_BARE_DEC]));
	printf("\n");
	fflush(stdout);

done:
	if (c.sink == 0x12345678)
		printf("(sink)\n");
	free(c.bare_lz4);
	EVP_MD_CTX_free(c.md);
	EVP_CIPHER_CTX_free(c.aes);
	EVP_CIPHER_free(c.cipher);
	bk_encoder_free(c.enc);
	bk_decoder_free(c.dec);
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: frame_bench [--chunk-size N] [--seconds S] [--rounds R] "
			"[--only encode,decode,lz4c,lz4d,aese,aesd,sha,crc,seal,unseal] "
			"FILE...\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	uint32_t chunk_size = BK_CHUNK_SIZE_DEFAULT;
	double seconds = 3.0;
	int rounds = 3;
	int first = 1;
	int nfiles;
	BkKey key;
	BkKeyring *ring;
	BkError err;
	Result *res;

	while (first < argc && strncmp(argv[first], "--", 2) == 0)
	{
		if (strcmp(argv[first], "--") == 0)
		{
			first++;
			break;
		}
		if (first + 1 >= argc)
			usage();
		if (strcmp(argv[first], "--chunk-size") == 0)
		{
			char *end;
			unsigned long v = strtoul(argv[first + 1], &end, 10);

			if (*end != '\0' || v < BK_CHUNK_SIZE_MIN || v > BK_CHUNK_SIZE_MAX)
			{
				fprintf(stderr, "frame_bench: chunk size must be %d..%d\n",
						BK_CHUNK_SIZE_MIN, BK_CHUNK_SIZE_MAX);
				exit(2);
			}
			chunk_size = (uint32_t) v;
		}
		else if (strcmp(argv[first], "--seconds") == 0)
		{
			char *end;

			seconds = strtod(argv[first + 1], &end);
			if (*end != '\0' || !(seconds > 0))
				usage();
		}
		else if (strcmp(argv[first], "--only") == 0)
		{
			only_list = argv[first + 1];
			for (const char *p = only_list; *p != '\0';)
			{
				size_t n = strcspn(p, ",");
				bool known = false;

				for (int i = 0; i < M_COUNT; i++)
					if (strlen(measure_keys[i]) == n &&
						strncmp(p, measure_keys[i], n) == 0)
						known = true;
				if (!known)
				{
					fprintf(stderr,
							"frame_bench: unknown measurement "
							"\"%.*s\" in --only\n",
							(int) n, p);
					exit(2);
				}
				p += n;
				if (*p == ',')
					p++;
			}
		}
		else if (strcmp(argv[first], "--rounds") == 0)
		{
			rounds = atoi(argv[first + 1]);
			if (rounds < 1)
				usage();
		}
		else
			usage();
		first += 2;
	}
	nfiles = argc - first;
	if (nfiles < 1)
		usage();

	if (!bk_key_generate(&key, &err))
		die("bk_key_generate", &err);
	ring = calloc(1, sizeof(*ring));
	if (ring == NULL)
		die("out of memory", NULL);
	ring->keys[0] = key;
	ring->count = 1;

	printf("frame_bench: chunk size %" PRIu32 ", %.1f s per measurement, "
		   "best of %d rounds, %s, lz4 %s\n\n",
		   chunk_size, seconds, rounds, OpenSSL_version(OPENSSL_VERSION),
		   LZ4_versionString());

	res = xmalloc((size_t) nfiles * sizeof(Result));
	if (only_list != NULL)
	{
		for (int f = 0; f < nfiles; f++)
		{
			Input in;

			memset(&in, 0, sizeof(in));
			load_file(&in, argv[first + f]);
			prepare(&in, chunk_size, &key, ring);
			bench_file(&in, &key, ring, seconds, rounds, &res[f]);
		}
		return 0;
	}
	for (int f = 0; f < nfiles; f++)
	{
		Input in;

		memset(&in, 0, sizeof(in));
		load_file(&in, argv[first + f]);
		prepare(&in, chunk_size, &key, ring);
		bench_file(&in, &key, ring, seconds, rounds, &res[f]);
		/* The process exits soon: the input's buffers are not freed. */
	}

	printf("%-40s %9s %9s %6s %9s %9s %6s %7s\n", "file", "enc MB/s", "limit",
		   "ratio", "dec MB/s", "limit", "ratio", "stored");
	for (int f = 0; f < nfiles; f++)
	{
		const char *base = strrchr(res[f].path, '/');

		base = base != NULL ? base + 1 : res[f].path;
		printf("%-40.40s %9.1f %9.1f %5.1f%% %9.1f %9.1f %5.1f%% %7.4f\n", base,
			   res[f].encode, res[f].encode_limit,
			   100.0 * res[f].encode / res[f].encode_limit, res[f].decode,
			   res[f].decode_limit, 100.0 * res[f].decode / res[f].decode_limit,
			   res[f].compression);
	}
	printf("\n");
	for (int f = 0; f < nfiles; f++)
		printf("RESULT file=%s encode_mbps=%.1f decode_mbps=%.1f "
			   "encode_limit_mbps=%.1f decode_limit_mbps=%.1f "
			   "encode_ratio=%.3f decode_ratio=%.3f compression=%.4f "
			   "encode_cpu_mbps=%.1f decode_cpu_mbps=%.1f\n",
			   res[f].path, res[f].encode, res[f].decode, res[f].encode_limit,
			   res[f].decode_limit, res[f].encode / res[f].encode_limit,
			   res[f].decode / res[f].decode_limit, res[f].compression,
			   res[f].encode_cpu, res[f].decode_cpu);
	bk_secure_wipe(&key, sizeof(key));
	bk_secure_wipe(ring, sizeof(*ring));
	free(ring);
	return 0;
}
