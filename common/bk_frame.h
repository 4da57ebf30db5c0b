/*
 * bk_frame.h
 *		The bk frame: how one chunk of one object travels through Kafka and
 *		sits in the repository.  docs/frame-format.md is the normative spec,
 *		with byte offsets; this header and that document must agree.
 *
 * An object (a WAL segment, a snapshot file, a binlog file...) of any size,
 * including zero bytes, is cut into chunks of chunk_size plaintext bytes
 * (the last may be shorter; an empty object is one empty chunk).  Each chunk
 * is compressed with lz4 when that makes it smaller, encrypted with
 * AES-256-GCM under the object's data key, and wrapped in a frame:
 *
 *	 fixed header (200 bytes) | source id | object name | metadata |
 *	 ciphertext | GCM tag (16) | CRC-32C (4)
 *
 * The whole header, variable parts included, is the AEAD's associated data:
 * source, object name, kind, chunk index and count, sizes, key id, attempt
 * id and metadata are all bound to the ciphertext, so a chunk cannot be
 * moved to another object, position or attempt, and a truncated object
 * cannot pass as complete, without the decoder noticing.  The CRC-32C lets
 * parties without keys detect corruption.
 *
 * Three roles use this module:
 *	 - BkEncoder (sources): object in, frames out.
 *	 - bk_frame_parse + BkObjectTracker (the shipper, keyless): structure,
 *	   checksum, and chunk sequence of each object attempt.
 *	 - BkDecoder (restore side, keyed): frames in, verified plaintext out.
 */
#ifndef BK_FRAME_H
#define BK_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "bk_crypto.h"
#include "bk_error.h"
#include "bk_keys.h"

#define BK_FRAME_MAGIC       "BKFR"
#define BK_FRAME_VERSION     1
#define BK_FRAME_FIXED_LEN   200
#define BK_FRAME_CRC_LEN     4
#define BK_FRAME_TRAILER_LEN (BK_GCM_TAG_LEN + BK_FRAME_CRC_LEN)

#define BK_SOURCE_ID_MAX   128
#define BK_OBJECT_NAME_MAX 1024
#define BK_FRAME_META_MAX  4096
#define BK_ATTEMPT_ID_LEN  16
#define BK_FINGERPRINT_LEN 32

/*
 * The repository's own top-level names besides source directories (dot names
 * aside): its marker object and the directory of rejected messages.  Source
 * ids are directories at that level, so these are not valid source ids.
 */
#define BK_REPO_MARKER_NAME   "bk-repository"
#define BK_REPO_REJECTED_NAME "rejected"

/* What bk_source_id_valid accepts, for messages (1-BK_SOURCE_ID_MAX). */
#define BK_SOURCE_ID_RULE                                                      \
	"1-128 bytes of A-Z a-z 0-9 . _ -, not starting with \".\", other "        \
	"than \"" BK_REPO_MARKER_NAME "\" and \"" BK_REPO_REJECTED_NAME            \
	"\" (the repository's own names, in any letter case)"

#define BK_CHUNK_SIZE_MIN     4096
#define BK_CHUNK_SIZE_MAX     (16 * 1024 * 1024)
#define BK_CHUNK_SIZE_DEFAULT (1024 * 1024)

/* Frame flags. */
#define BK_FRAME_F_LZ4   0x0001 /* payload is an lz4 block */
#define BK_FRAME_F_LAST  0x0002 /* last chunk: fingerprint is set */
#define BK_FRAME_F_KNOWN (BK_FRAME_F_LZ4 | BK_FRAME_F_LAST)

/* Byte offsets of the fixed header (docs/frame-format.md). */
#define BK_OFF_MAGIC        0
#define BK_OFF_VERSION      4
#define BK_OFF_KIND         5
#define BK_OFF_FLAGS        6
#define BK_OFF_HEADER_LEN   8
#define BK_OFF_SOURCE_LEN   12
#define BK_OFF_NAME_LEN     14
#define BK_OFF_META_LEN     16
#define BK_OFF_RESERVED     18
#define BK_OFF_CHUNK_INDEX  20
#define BK_OFF_CHUNK_COUNT  24
#define BK_OFF_CHUNK_LEN    28
#define BK_OFF_PAYLOAD_LEN  32
#define BK_OFF_OBJECT_SIZE  36
#define BK_OFF_CHUNK_OFFSET 44
#define BK_OFF_KEY_ID       52
#define BK_OFF_ATTEMPT_ID   60
#define BK_OFF_NONCE        76
#define BK_OFF_EPHEMERAL    88
#define BK_OFF_SEALED_KEY   120
#define BK_OFF_FINGERPRINT  168
#define BK_OFF_VARIABLE     200

typedef enum BkObjectKind
{
	BK_KIND_WAL = 1,      /* WAL segment, .history, .backup, .partial */
	BK_KIND_SNAPSHOT = 2, /* snapshot file, label, manifest */
	BK_KIND_BINLOG = 3    /* MySQL/MariaDB binary log */
} BkObjectKind;

/* "wal", "snapshot", "binlog", or NULL for an unknown kind. */
extern const char *bk_kind_name(int kind);

/*
 * A parsed frame: fields decoded, pointers into the caller's buffer (valid
 * as long as it is).
 */
typedef struct BkFrame
{
	uint8_t version;
	uint8_t kind;
	uint16_t flags;
	uint32_t header_len;
	uint32_t chunk_index;
	uint32_t chunk_count;
	uint32_t chunk_len;         /* plaintext bytes in this chunk */
	uint32_t payload_len;       /* stored (compressed, encrypted) bytes */
	uint64_t object_size;       /* plaintext bytes in the whole object */
	uint64_t chunk_offset;      /* plaintext offset of this chunk */
	const uint8_t *key_id;      /* BK_KEY_ID_LEN */
	const uint8_t *attempt_id;  /* BK_ATTEMPT_ID_LEN */
	const uint8_t *nonce;       /* BK_GCM_NONCE_LEN */
	const uint8_t *envelope;    /* ephemeral public key + sealed data key */
	const uint8_t *fingerprint; /* BK_FINGERPRINT_LEN; zero unless last */
	const char *source;         /* not NUL-terminated: source_len bytes */
	uint16_t source_len;
	const char *name;
	uint16_t name_len;
	const char *meta;
	uint16_t meta_len;
	const uint8_t *header; /* the frame itself: associated data */
	const uint8_t *payload;
	const uint8_t *tag;
	size_t frame_len;
} BkFrame;

/* Largest frame a given chunk size can produce, variable fields at maximum. */
extern size_t bk_frame_max_len(uint32_t chunk_size);

/*
 * Parse and check one frame without any key: magic, version, lengths,
 * field ranges, flag consistency, names, and the CRC-32C.  Every rejection
 * says precisely what is wrong.
 */
extern bool bk_frame_parse(const uint8_t *buf, size_t len, BkFrame *frame,
						   BkError *err);

/*
 * Parse only the header (the first header_len bytes; len may stop there):
 * every check of bk_frame_parse except the total length and the CRC.  For
 * reading identities of stored objects without reading their payloads.
 * frame->payload and frame->tag are not valid.
 */
extern bool bk_frame_parse_header(const uint8_t *buf, size_t len,
								  BkFrame *frame, BkError *err);

/*
 * Object names and source ids are used as repository paths, so they are
 * restricted: source ids are [A-Za-z0-9._-], 1..128 bytes, not led by ".",
 * and not one of the repository's own top-level names (BK_REPO_MARKER_NAME,
 * BK_REPO_REJECTED_NAME) in any letter case;
 * object names are relative paths of printable ASCII components (0x20-0x7E
 * but the backslash) separated by '/', with no empty, "." or ".." component,
 * 1..1024 bytes.
 */
extern bool bk_source_id_valid(const char *id, size_t len);
extern bool bk_object_name_valid(const char *name, size_t len);

/*
 * Metadata is "key=value" lines: keys [a-z0-9_-] (1..32 bytes), each at
 * most once, values printable ASCII.  It is authenticated, readable without keys, and copied
 * into Kafka headers for auditors.
 */
extern bool bk_meta_valid(const char *meta, size_t len);

/* Find key in metadata; copies its value (NUL-terminated) into out. */
extern bool bk_meta_get(const char *meta, size_t len, const char *key,
						char *out, size_t out_len);

/*
 * Keyless sequence check of one object attempt: chunks must arrive in
 * order 0..count-1, exactly once, all agreeing on the object's identity
 * (source, kind, name, attempt, size, count, key, envelope, metadata) and
 * on the chunk geometry.  The shipper runs one per object being assembled;
 * the decoder runs one inside.
 */
typedef struct BkObjectTracker
{
	bool started;
	bool complete;
	uint8_t kind;
	uint32_t chunk_count;
	uint32_t chunk_size; /* plaintext length of every chunk but the last */
	uint32_t next_index;
	uint64_t object_size;
	uint64_t next_offset;
	uint8_t key_id[BK_KEY_ID_LEN];
	uint8_t attempt_id[BK_ATTEMPT_ID_LEN];
	uint8_t envelope[BK_X25519_KEY_LEN + BK_SEALED_KEY_LEN];
	uint16_t source_len;
	uint16_t name_len;
	uint16_t meta_len;
	char source[BK_SOURCE_ID_MAX + 1];
	char name[BK_OBJECT_NAME_MAX + 1];
	char meta[BK_FRAME_META_MAX + 1];
	uint8_t fingerprint[BK_FINGERPRINT_LEN];
} BkObjectTracker;

extern void bk_tracker_reset(BkObjectTracker *tracker);

/*
 * Accept the next frame of the object.  A frame that starts a new object
 * (chunk 0) is accepted only by a reset tracker.
 */
extern bool bk_tracker_accept(BkObjectTracker *tracker, const BkFrame *frame,
							  BkError *err);

/* True when frame belongs to the attempt the tracker follows. */
extern bool bk_tracker_same_attempt(const BkObjectTracker *tracker,
									const BkFrame *frame);

/* Fails with BK_ERR_SEQUENCE, naming what is missing, unless complete. */
extern bool bk_tracker_check_complete(const BkObjectTracker *tracker,
									  BkError *err);

/* What the encoder needs to know about an object before its first chunk. */
typedef struct BkObjectInfo
{
	BkObjectKind kind;
	const char *source_id;
	const char *name;
	const char *meta; /* NULL or "key=value\n..." */
	uint64_t size;    /* plaintext bytes; must be exact */
} BkObjectInfo;

typedef struct BkEncoder BkEncoder;

/* An encoder sealing to recipient (a public key), for chunks of chunk_size. */
extern BkEncoder *bk_encoder_new(const BkKey *recipient, uint32_t chunk_size,
								 BkError *err);
extern void bk_encoder_free(BkEncoder *enc);

/* Start an object: fresh data key, attempt id and envelope. */
extern bool bk_encoder_begin(BkEncoder *enc, const BkObjectInfo *info,
							 BkError *err);

extern uint32_t bk_encoder_chunk_count(const BkEncoder *enc);

/* Plaintext bytes the next bk_encoder_chunk call must be given. */
extern uint32_t bk_encoder_next_chunk_len(const BkEncoder *enc);

/* True once the last chunk has been encoded. */
extern bool bk_encoder_done(const BkEncoder *enc);

/*
 * Encode the next chunk.  *frame points into the encoder and stays valid
 * until the next call; *info describes it (for Kafka headers).
 */
extern bool bk_encoder_chunk(BkEncoder *enc, const uint8_t *plain, size_t len,
							 const uint8_t **frame, size_t *frame_len,
							 BkFrame *info, BkError *err);

/*
 * The same, writing the frame into out (at least bk_frame_max_len of the
 * chunk size), which the caller owns: several frames of one object can be
 * kept while the encoder goes on.
 */
extern bool bk_encoder_chunk_into(BkEncoder *enc, const uint8_t *plain,
								  size_t len, uint8_t *out, size_t out_cap,
								  size_t *frame_len, BkFrame *info,
								  BkError *err);

/* SHA-256 of the whole plaintext, once done. */
extern const uint8_t *bk_encoder_digest(const BkEncoder *enc);
extern const uint8_t *bk_encoder_attempt_id(const BkEncoder *enc);

/* Bytes the encoder produced for the current object so far. */
extern uint64_t bk_encoder_bytes_out(const BkEncoder *enc);

typedef struct BkDecoder BkDecoder;

/* A decoder opening objects sealed to any key of ring (borrowed). */
extern BkDecoder *bk_decoder_new(const BkKeyring *ring, BkError *err);
extern void bk_decoder_free(BkDecoder *dec);

/*
 * Also check every frame's CRC-32C (off by default: the tag already
 * authenticates everything but the CRC itself).  bk verify turns it on, so
 * that decrypting an object checks everything its keyless check does.
 */
extern void bk_decoder_check_crc(BkDecoder *dec, bool on);

/* Forget the current object; the next frame must be a chunk 0. */
extern void bk_decoder_reset(BkDecoder *dec);

/*
 * The id of the key an error message names as missing from the keyring
 * (the decoder's "object ... is sealed to key ID, which is not in the
 * keyring"), wherever in message, for callers that sum such failures up:
 * true and id set, else false.
 */
extern bool bk_error_missing_key(const char *message,
								 char id[BK_KEY_ID_HEX_LEN + 1]);

/* Does the decoder's keyring hold the key with this id? */
extern bool bk_decoder_has_key(const BkDecoder *dec,
							   const uint8_t id[BK_KEY_ID_LEN]);

/*
 * Decode the next frame of the current object.  *plain points into the
 * decoder and stays valid until the next call.  After the last chunk the
 * whole object's fingerprint is checked too.
 */
extern bool bk_decoder_push(BkDecoder *dec, const uint8_t *buf, size_t len,
							const uint8_t **plain, size_t *plain_len,
							BkError *err);

/* True when every chunk arrived and the fingerprint matched. */
extern bool bk_decoder_done(const BkDecoder *dec);

/* Fails with BK_ERR_SEQUENCE unless bk_decoder_done. */
extern bool bk_decoder_finish(const BkDecoder *dec, BkError *err);

/* The object being decoded (identity, sizes, metadata). */
extern const BkObjectTracker *bk_decoder_object(const BkDecoder *dec);

/* SHA-256 of the plaintext, valid once done. */
extern const uint8_t *bk_decoder_digest(const BkDecoder *dec);

#endif /* BK_FRAME_H */
