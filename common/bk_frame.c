/*
 * bk_frame.c
 *		Frame encoding, keyless parsing and sequencing, keyed decoding.
 *
 * The spec is docs/frame-format.md; bk_frame.h explains the roles.  Two
 * choices worth knowing when reading this file:
 *
 * - Identical re-sends are recognised by a keyed fingerprint of the whole
 *   plaintext, HMAC-SHA-256(fingerprint key, SHA-256(plaintext)), carried in
 *   the last chunk.  Encryption stays randomised (a fresh data key per
 *   attempt), so equal objects produce unrelated ciphertexts and nothing
 *   about the content leaks beyond "these two uploads are identical".  The
 *   fingerprint key sits in the public key file, which sources already hold:
 *   they see the plaintext anyway.  Deterministic (convergent) encryption
 *   was rejected: it lets anyone who can guess a whole file confirm it.
 *
 * - The SHA-256 over the plaintext is the only full-length hash per object;
 *   the per-frame integrity check without keys is CRC-32C, which costs a
 *   fraction of it.  The decoder recomputes the SHA-256 and checks the
 *   fingerprint, so a restore verifies each object end to end, and the digest
 *   is there for manifests.
 */
#include "bk_frame.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lz4.h>

#include "bk_crc32c.h"
#include "bk_util.h"

/* How a key missing from the keyring is said; bk_error_missing_key reads it. */
#define MISSING_KEY_BEFORE "is sealed to key "
#define MISSING_KEY_AFTER  ", which is not in the keyring"

#define BK_ENVELOPE_LEN (BK_X25519_KEY_LEN + BK_SEALED_KEY_LEN)

/* The associated data that binds a sealed data key to its attempt. */
#define SEAL_AAD_DOMAIN "bk v1 seal"
#define SEAL_AAD_LEN                                                           \
	(sizeof(SEAL_AAD_DOMAIN) - 1 + BK_KEY_ID_LEN + BK_ATTEMPT_ID_LEN)

const char *
bk_kind_name(int kind)
{
	switch (kind)
	{
		case BK_KIND_WAL:
			return "wal";
		case BK_KIND_SNAPSHOT:
			return "snapshot";
		case BK_KIND_BINLOG:
			return "binlog";
	}
	return NULL;
}

size_t
bk_frame_max_len(uint32_t chunk_size)
{
	return (size_t) BK_FRAME_FIXED_LEN + BK_SOURCE_ID_MAX + BK_OBJECT_NAME_MAX +
		   BK_FRAME_META_MAX + chunk_size + BK_FRAME_TRAILER_LEN;
}

bool
bk_source_id_valid(const char *id, size_t len)
{
	if (len == 0 || len > BK_SOURCE_ID_MAX)
		return false;
	/*
	 * Not "." or "..", nor any name led by a dot: a source id is a directory
	 * (S3: a key component) of the repository, where dot names are the
	 * backend's own.  Listings skip them, so such a source's archive would
	 * never be listed, verified or expired, and ".spool" would put its
	 * objects among the shippers' spools, which housekeeping empties.
	 */
	if (id[0] == '.')
		return false;
	/*
	 * Nor a name the repository keeps at its top level: a source "rejected"
	 * would put its archive among the rejected messages, which listings skip
	 * as not a source; "bk-repository" is the marker, a file where the
	 * source's directory would have to be.  In any letter case, since a
	 * shared file system may compare names without it.
	 */
	if ((len == strlen(BK_REPO_MARKER_NAME) &&
		 strncasecmp(id, BK_REPO_MARKER_NAME, len) == 0) ||
		(len == strlen(BK_REPO_REJECTED_NAME) &&
		 strncasecmp(id, BK_REPO_REJECTED_NAME, len) == 0))
		return false;
	for (size_t pos = 0; pos < len; pos++)
	{
		char c = id[pos];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

bool
bk_object_name_valid(const char *name, size_t len)
{
	size_t component_start = 0;

	if (len == 0 || len > BK_OBJECT_NAME_MAX)
		return false;
	for (size_t pos = 0; pos <= len; pos++)
	{
		if (pos == len || name[pos] == '/')
		{
			size_t component_len = pos - component_start;
			const char *component = name + component_start;

			if (component_len == 0 ||
				(component_len == 1 && component[0] == '.') ||
				(component_len == 2 && component[0] == '.' &&
				 component[1] == '.'))
				return false;
			component_start = pos + 1;
			continue;
		}
		/* Printable ASCII; no backslash, which some tools treat as a separator. */
		if (name[pos] < 0x20 || name[pos] > 0x7e || name[pos] == '\\')
			return false;
	}
	return true;
}

/* Whether the key at key_start is one a line before it already has. */
static bool
meta_key_repeated(const char *meta, size_t key_start, size_t key_len)
{
	size_t pos = 0;

	while (pos < key_start)
	{
		const char *line_end = memchr(meta + pos, '\n', key_start - pos);
		size_t line_len = line_end != NULL ? (size_t) (line_end - (meta + pos))
										   : key_start - pos;

		if (line_len > key_len && meta[pos + key_len] == '=' &&
			memcmp(meta + pos, meta + key_start, key_len) == 0)
			return true;
		pos += line_len + 1;
	}
	return false;
}

bool
bk_meta_valid(const char *meta, size_t len)
{
	size_t pos = 0;

	if (len > BK_FRAME_META_MAX)
		return false;
	while (pos < len)
	{
		size_t key_len = 0;

		while (pos < len && meta[pos] != '=')
		{
			char c = meta[pos];

			if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
				  c == '_' || c == '-'))
				return false;
			pos++;
			key_len++;
		}
		if (pos == len || key_len == 0 || key_len > 32)
			return false;
		/*
		 * Readers differ on a repeated key: bk_meta_get takes the first
		 * value, a Kafka consumer's last-header lookup and most JSON
		 * parsers the last; an auditor would see another value than bk.
		 */
		if (meta_key_repeated(meta, pos - key_len, key_len))
			return false;
		pos++; /* '=' */
		while (pos < len && meta[pos] != '\n')
		{
			if (meta[pos] < 0x20 || meta[pos] > 0x7e)
				return false;
			pos++;
		}
		if (pos < len)
			pos++; /* '\n' */
	}
	return true;
}

bool
bk_meta_get(const char *meta, size_t len, const char *key, char *out,
			size_t out_len)
{
	size_t key_len = strlen(key);
	size_t pos = 0;

	while (pos < len)
	{
		const char *line = meta + pos;
		const char *end = memchr(line, '\n', len - pos);
		size_t line_len = end != NULL ? (size_t) (end - line) : len - pos;

		if (line_len > key_len && memcmp(line, key, key_len) == 0 &&
			line[key_len] == '=')
		{
			size_t value_len = line_len - key_len - 1;

			if (value_len >= out_len)
				value_len = out_len - 1;
			memcpy(out, line + key_len + 1, value_len);
			out[value_len] = '\0';
			return true;
		}
		pos += line_len + 1;
	}
	return false;
}

/* v1 nonces: four zero bytes, then the chunk index as a big-endian 64-bit. */
static void
frame_nonce(uint32_t chunk_index, uint8_t nonce[BK_GCM_NONCE_LEN])
{
	memset(nonce, 0, 4);
	bk_put_be64(nonce + 4, chunk_index);
}

static bool
all_zero(const uint8_t *p, size_t len)
{
	uint8_t acc = 0;

	for (size_t pos = 0; pos < len; pos++)
		acc |= p[pos];
	return acc == 0;
}

/* Decode the fixed fields and locate the variable ones; no validation. */
static void
frame_view(const uint8_t *buf, size_t len, BkFrame *frame)
{
	frame->version = buf[BK_OFF_VERSION];
	frame->kind = buf[BK_OFF_KIND];
	frame->flags = bk_get_be16(buf + BK_OFF_FLAGS);
	frame->header_len = bk_get_be32(buf + BK_OFF_HEADER_LEN);
	frame->source_len = bk_get_be16(buf + BK_OFF_SOURCE_LEN);
	frame->name_len = bk_get_be16(buf + BK_OFF_NAME_LEN);
	frame->meta_len = bk_get_be16(buf + BK_OFF_META_LEN);
	frame->chunk_index = bk_get_be32(buf + BK_OFF_CHUNK_INDEX);
	frame->chunk_count = bk_get_be32(buf + BK_OFF_CHUNK_COUNT);
	frame->chunk_len = bk_get_be32(buf + BK_OFF_CHUNK_LEN);
	frame->payload_len = bk_get_be32(buf + BK_OFF_PAYLOAD_LEN);
	frame->object_size = bk_get_be64(buf + BK_OFF_OBJECT_SIZE);
	frame->chunk_offset = bk_get_be64(buf + BK_OFF_CHUNK_OFFSET);
	frame->key_id = buf + BK_OFF_KEY_ID;
	frame->attempt_id = buf + BK_OFF_ATTEMPT_ID;
	frame->nonce = buf + BK_OFF_NONCE;
	frame->envelope = buf + BK_OFF_EPHEMERAL;
	frame->fingerprint = buf + BK_OFF_FINGERPRINT;
	frame->source = (const char *) buf + BK_OFF_VARIABLE;
	frame->name = frame->source + frame->source_len;
	frame->meta = frame->name + frame->name_len;
	frame->header = buf;
	frame->payload = buf + frame->header_len;
	frame->tag = frame->payload + frame->payload_len;
	frame->frame_len = len;
}

/* The header length must be the sum of its parts. */
static bool
frame_check_header_len(const BkFrame *frame, BkError *err)
{
	if (frame->header_len != (uint32_t) BK_FRAME_FIXED_LEN + frame->source_len +
								 frame->name_len + frame->meta_len)
		return bk_error_set(err, BK_ERR_FORMAT,
							"corrupt frame: header length %" PRIu32
							" does not match its parts",
							frame->header_len);
	return true;
}

/*
 * frame_check_fields
 *		Every field-level rule of section 3 of the spec except the lengths
 *		and the CRC, which the callers check first.
 */
static bool
frame_check_fields(const BkFrame *frame, BkError *err)
{
	uint8_t expected_nonce[BK_GCM_NONCE_LEN];
	bool last;

	if (bk_kind_name(frame->kind) == NULL)
		return bk_error_set(err, BK_ERR_FORMAT, "unknown object kind %u",
							frame->kind);
	if ((frame->flags & ~BK_FRAME_F_KNOWN) != 0)
		return bk_error_set(err, BK_ERR_FORMAT, "unknown frame flags 0x%04x",
							frame->flags);
	if (bk_get_be16(frame->header + BK_OFF_RESERVED) != 0)
		return bk_error_set(err, BK_ERR_FORMAT,
							"reserved header field is not zero");
	if (!bk_source_id_valid(frame->source, frame->source_len))
		return bk_error_set(err, BK_ERR_FORMAT, "invalid source id in frame");
	if (!bk_object_name_valid(frame->name, frame->name_len))
		return bk_error_set(err, BK_ERR_FORMAT,
							"invalid object name in frame from source \"%.*s\"",
							(int) frame->source_len, frame->source);
	if (!bk_meta_valid(frame->meta, frame->meta_len))
		return bk_error_set(err, BK_ERR_FORMAT,
							"invalid metadata in frame of object \"%.*s\"",
							(int) frame->name_len, frame->name);
	if (frame->chunk_count == 0 || frame->chunk_index >= frame->chunk_count)
		return bk_error_set(err, BK_ERR_FORMAT,
							"object \"%.*s\": chunk index %" PRIu32
							" is outside chunk count %" PRIu32,
							(int) frame->name_len, frame->name,
							frame->chunk_index, frame->chunk_count);
	if (frame->chunk_len > BK_CHUNK_SIZE_MAX)
		return bk_error_set(err, BK_ERR_FORMAT,
							"object \"%.*s\": chunk of %" PRIu32
							" bytes exceeds the maximum of %d",
							(int) frame->name_len, frame->name,
							frame->chunk_len, BK_CHUNK_SIZE_MAX);
	if ((frame->flags & BK_FRAME_F_LZ4)
			? (frame->payload_len == 0 ||
			   frame->payload_len >= frame->chunk_len)
			: frame->payload_len != frame->chunk_len)
		return bk_error_set(
			err, BK_ERR_FORMAT,
			"object \"%.*s\" chunk %" PRIu32 ": stored length %" PRIu32
			" is impossible for %" PRIu32 " plaintext bytes",
			(int) frame->name_len, frame->name, frame->chunk_index,
			frame->payload_len, frame->chunk_len);
	if (frame->chunk_offset > frame->object_size ||
		frame->chunk_len > frame->object_size - frame->chunk_offset)
		return bk_error_set(err, BK_ERR_FORMAT,
							"object \"%.*s\" chunk %" PRIu32
							" lies outside the object's %" PRIu64 " bytes",
							(int) frame->name_len, frame->name,
							frame->chunk_index, frame->object_size);
	last = frame->chunk_index == frame->chunk_count - 1;
	if (last != ((frame->flags & BK_FRAME_F_LAST) != 0))
		return bk_error_set(
			err, BK_ERR_FORMAT,
			"object \"%.*s\" chunk %" PRIu32
			": last-chunk flag disagrees with chunk count %" PRIu32,
			(int) frame->name_len, frame->name, frame->chunk_index,
			frame->chunk_count);
	if (last && frame->chunk_offset + frame->chunk_len != frame->object_size)
		return bk_error_set(err, BK_ERR_FORMAT,
							"object \"%.*s\": last chunk ends at %" PRIu64
							", object size is %" PRIu64,
							(int) frame->name_len, frame->name,
							frame->chunk_offset + frame->chunk_len,
							frame->object_size);
	if (!last && (frame->chunk_len == 0 ||
				  !all_zero(frame->fingerprint, BK_FINGERPRINT_LEN)))
		return bk_error_set(err, BK_ERR_FORMAT,
							"object \"%.*s\" chunk %" PRIu32
							": a chunk before the last must be non-empty and "
							"carry no fingerprint",
							(int) frame->name_len, frame->name,
							frame->chunk_index);
	frame_nonce(frame->chunk_index, expected_nonce);
	if (memcmp(frame->nonce, expected_nonce, BK_GCM_NONCE_LEN) != 0)
		return bk_error_set(err, BK_ERR_FORMAT,
							"object \"%.*s\" chunk %" PRIu32
							": nonce does not follow the version 1 rule",
							(int) frame->name_len, frame->name,
							frame->chunk_index);
	return true;
}

/* The CRC-32C check of a frame whose length is known to be right. */
static bool
frame_check_crc(const uint8_t *buf, size_t len, BkError *err)
{
	uint32_t stored_crc = bk_get_be32(buf + len - BK_FRAME_CRC_LEN);
	uint32_t actual_crc = bk_crc32c(0, buf, len - BK_FRAME_CRC_LEN);

	if (stored_crc != actual_crc)
		return bk_error_set(err, BK_ERR_FORMAT,
							"frame checksum mismatch (stored %08" PRIx32
							", computed %08" PRIx32
							"): the frame was corrupted in transit or at rest",
							stored_crc, actual_crc);
	return true;
}

/*
 * frame_parse
 *		bk_frame_parse, optionally without the CRC: the keyed decoder skips it
 *		because the GCM tag covers every byte the CRC does, and computes it
 *		only when something fails, to tell corruption from tampering (or
 *		always, for bk verify: bk_decoder_check_crc).
 */
static bool
frame_parse(const uint8_t *buf, size_t len, BkFrame *frame, bool check_crc,
			BkError *err)
{
	size_t expected_len;

	if (len >= 4 && memcmp(buf, BK_FRAME_MAGIC, 4) != 0)
		return bk_error_set(
			err, BK_ERR_FORMAT,
			"not a bk frame: bad magic bytes (expected \"BKFR\")");
	if (len < BK_FRAME_FIXED_LEN + BK_FRAME_TRAILER_LEN)
		return bk_error_set(err, BK_ERR_FORMAT,
							"truncated frame: %zu bytes, shorter than the "
							"smallest frame (%d bytes)",
							len, BK_FRAME_FIXED_LEN + BK_FRAME_TRAILER_LEN);
	if (buf[BK_OFF_VERSION] != BK_FRAME_VERSION)
		return bk_error_set(
			err, BK_ERR_FORMAT,
			"unsupported frame version %u (this bk reads version %d)",
			buf[BK_OFF_VERSION], BK_FRAME_VERSION);

	frame_view(buf, len, frame);

	/* Locate the end before trusting anything else, then check the CRC. */
	if (!frame_check_header_len(frame, err))
		return false;
	expected_len =
		(size_t) frame->header_len + frame->payload_len + BK_FRAME_TRAILER_LEN;
	if (len < expected_len)
		return bk_error_set(err, BK_ERR_FORMAT,
							"truncated frame: %zu bytes, its header says %zu",
							len, expected_len);
	if (len > expected_len)
		return bk_error_set(err, BK_ERR_FORMAT,
							"corrupt frame: %zu bytes, its header says %zu "
							"(trailing data)",
							len, expected_len);
	if (check_crc && !frame_check_crc(buf, len, err))
		return false;

	/* The checksum is right: what remains is a malformed or hostile writer. */
	return frame_check_fields(frame, err);
}

bool
bk_frame_parse(const uint8_t *buf, size_t len, BkFrame *frame, BkError *err)
{
	return frame_parse(buf, len, frame, true, err);
}

bool
bk_frame_parse_header(const uint8_t *buf, size_t len, BkFrame *frame,
					  BkError *err)
{
	if (len >= 4 && memcmp(buf, BK_FRAME_MAGIC, 4) != 0)
		return bk_error_set(
			err, BK_ERR_FORMAT,
			"not a bk frame: bad magic bytes (expected \"BKFR\")");
	if (len < BK_FRAME_FIXED_LEN)
		return bk_error_set(err, BK_ERR_FORMAT,
							"truncated frame header: %zu bytes", len);
	if (buf[BK_OFF_VERSION] != BK_FRAME_VERSION)
		return bk_error_set(
			err, BK_ERR_FORMAT,
			"unsupported frame version %u (this bk reads version %d)",
			buf[BK_OFF_VERSION], BK_FRAME_VERSION);
	frame_view(buf, len, frame);
	if (!frame_check_header_len(frame, err))
		return false;
	if (len < frame->header_len)
		return bk_error_set(
			err, BK_ERR_FORMAT,
			"truncated frame header: %zu bytes, it says %" PRIu32, len,
			frame->header_len);
	return frame_check_fields(frame, err);
}

void
bk_tracker_reset(BkObjectTracker *tracker)
{
	tracker->started = false;
	tracker->complete = false;
	tracker->next_index = 0;
	tracker->next_offset = 0;
}

bool
bk_tracker_same_attempt(const BkObjectTracker *tracker, const BkFrame *frame)
{
	return tracker->started && tracker->kind == frame->kind &&
		   tracker->source_len == frame->source_len &&
		   memcmp(tracker->source, frame->source, frame->source_len) == 0 &&
		   tracker->name_len == frame->name_len &&
		   memcmp(tracker->name, frame->name, frame->name_len) == 0 &&
		   memcmp(tracker->attempt_id, frame->attempt_id, BK_ATTEMPT_ID_LEN) ==
			   0;
}

/* Name the first object-level field where frame disagrees with chunk 0. */
static const char *
tracker_disagreement(const BkObjectTracker *tracker, const BkFrame *frame)
{
	if (frame->chunk_count != tracker->chunk_count)
		return "chunk count";
	if (frame->object_size != tracker->object_size)
		return "object size";
	if (memcmp(frame->key_id, tracker->key_id, BK_KEY_ID_LEN) != 0)
		return "key id";
	if (memcmp(frame->envelope, tracker->envelope, BK_ENVELOPE_LEN) != 0)
		return "sealed data key";
	if (frame->meta_len != tracker->meta_len ||
		memcmp(frame->meta, tracker->meta, frame->meta_len) != 0)
		return "metadata";
	return NULL;
}

bool
bk_tracker_accept(BkObjectTracker *tracker, const BkFrame *frame, BkError *err)
{
	const char *disagreement;
	bool last = frame->chunk_index == frame->chunk_count - 1;

	if (!tracker->started)
	{
		if (frame->chunk_index != 0)
			return bk_error_set(err, BK_ERR_SEQUENCE,
								"object \"%.*s\": chunk %" PRIu32 " of %" PRIu32
								" came first; chunk 0 is missing or chunks are "
								"out of order",
								(int) frame->name_len, frame->name,
								frame->chunk_index, frame->chunk_count);
		/* Every chunk but the last has the size of chunk 0. */
		if (frame->chunk_count > 1 &&
			(uint64_t) frame->chunk_count !=
				(frame->object_size + frame->chunk_len - 1) / frame->chunk_len)
			return bk_error_set(
				err, BK_ERR_FORMAT,
				"object \"%.*s\": %" PRIu32 " chunks do not fit %" PRIu64
				" bytes in chunks of %" PRIu32,
				(int) frame->name_len, frame->name, frame->chunk_count,
				frame->object_size, frame->chunk_len);
		tracker->kind = frame->kind;
		tracker->chunk_count = frame->chunk_count;
		tracker->chunk_size = frame->chunk_len;
		tracker->object_size = frame->object_size;
		memcpy(tracker->key_id, frame->key_id, BK_KEY_ID_LEN);
		memcpy(tracker->attempt_id, frame->attempt_id, BK_ATTEMPT_ID_LEN);
		memcpy(tracker->envelope, frame->envelope, BK_ENVELOPE_LEN);
		tracker->source_len = frame->source_len;
		memcpy(tracker->source, frame->source, frame->source_len);
		tracker->source[frame->source_len] = '\0';
		tracker->name_len = frame->name_len;
		memcpy(tracker->name, frame->name, frame->name_len);
		tracker->name[frame->name_len] = '\0';
		tracker->meta_len = frame->meta_len;
		memcpy(tracker->meta, frame->meta, frame->meta_len);
		tracker->meta[frame->meta_len] = '\0';
		tracker->next_index = 0;
		tracker->next_offset = 0;
		tracker->complete = false;
		tracker->started = true;
	}
	else
	{
		if (!bk_tracker_same_attempt(tracker, frame))
			return bk_error_set(err, BK_ERR_SEQUENCE,
								"chunk %" PRIu32 " of object \"%.*s\" does not "
								"belong to the attempt being read (object "
								"\"%s\"): attempts are interleaved or chunks "
								"are missing",
								frame->chunk_index, (int) frame->name_len,
								frame->name, tracker->name);
		if (tracker->complete || frame->chunk_index < tracker->next_index)
			return bk_error_set(err, BK_ERR_SEQUENCE,
								"duplicate chunk %" PRIu32 " of object \"%s\"",
								frame->chunk_index, tracker->name);
		if (frame->chunk_index > tracker->next_index)
			return bk_error_set(
				err, BK_ERR_SEQUENCE,
				"object \"%s\": chunk %" PRIu32 " arrived where chunk %" PRIu32
				" was expected; chunks are missing or out of order",
				tracker->name, frame->chunk_index, tracker->next_index);
		disagreement = tracker_disagreement(tracker, frame);
		if (disagreement != NULL)
			return bk_error_set(err, BK_ERR_FORMAT,
								"object \"%s\": chunk %" PRIu32
								" disagrees with chunk 0 on the %s",
								tracker->name, frame->chunk_index,
								disagreement);
	}
	if (frame->chunk_offset != tracker->next_offset ||
		(!last && frame->chunk_len != tracker->chunk_size))
		return bk_error_set(
			err, BK_ERR_FORMAT,
			"object \"%s\": chunk %" PRIu32 " covers bytes %" PRIu64
			"..%" PRIu64 ", expected to start at %" PRIu64 " with %" PRIu32
			" bytes",
			tracker->name, frame->chunk_index, frame->chunk_offset,
			frame->chunk_offset + frame->chunk_len, tracker->next_offset,
			last ? frame->chunk_len : tracker->chunk_size);
	tracker->next_index++;
	tracker->next_offset += frame->chunk_len;
	if (last)
	{
		memcpy(tracker->fingerprint, frame->fingerprint, BK_FINGERPRINT_LEN);
		tracker->complete = true;
	}
	return true;
}

bool
bk_tracker_check_complete(const BkObjectTracker *tracker, BkError *err)
{
	if (!tracker->started)
		return bk_error_set(err, BK_ERR_SEQUENCE,
							"no chunk of the object arrived");
	if (!tracker->complete)
		return bk_error_set(err, BK_ERR_SEQUENCE,
							"object \"%s\" is incomplete: %" PRIu32
							" of %" PRIu32 " chunks (truncated)",
							tracker->name, tracker->next_index,
							tracker->chunk_count);
	return true;
}

/* ---------------------------------------------------------------- encoder */

struct BkEncoder
{
	BkKey recipient; /* public part only */
	uint32_t chunk_size;
	BkAead *aead;
	BkSha256 *sha;
	void *lz4_state;
	char *compressed;
	int compressed_cap;
	uint8_t *frame;
	size_t frame_cap;

	/* The object being encoded. */
	bool active;
	bool done;
	uint64_t object_size;
	uint32_t chunk_count;
	uint32_t next_index;
	uint64_t next_offset;
	uint32_t header_len;
	uint64_t bytes_out;
	uint8_t data_key[BK_DATA_KEY_LEN];
	uint8_t attempt_id[BK_ATTEMPT_ID_LEN];
	uint8_t digest[BK_SHA256_LEN];
};

BkEncoder *
bk_encoder_new(const BkKey *recipient, uint32_t chunk_size, BkError *err)
{
	BkEncoder *enc;

	if (chunk_size < BK_CHUNK_SIZE_MIN || chunk_size > BK_CHUNK_SIZE_MAX)
	{
		bk_error_set(err, BK_ERR_CONFIG,
					 "chunk size %" PRIu32 " is outside %d..%d bytes",
					 chunk_size, BK_CHUNK_SIZE_MIN, BK_CHUNK_SIZE_MAX);
		return NULL;
	}
	enc = calloc(1, sizeof(*enc));
	if (enc == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	memcpy(enc->recipient.id, recipient->id, BK_KEY_ID_LEN);
	memcpy(enc->recipient.public_key, recipient->public_key, BK_X25519_KEY_LEN);
	memcpy(enc->recipient.fingerprint_key, recipient->fingerprint_key,
		   BK_FINGERPRINT_KEY_LEN);
	enc->chunk_size = chunk_size;
	enc->compressed_cap = LZ4_compressBound((int) chunk_size);
	enc->compressed = malloc((size_t) enc->compressed_cap);
	enc->lz4_state = malloc((size_t) LZ4_sizeofState());
	enc->frame_cap = bk_frame_max_len(chunk_size);
	enc->frame = malloc(enc->frame_cap);
	if (enc->compressed == NULL || enc->lz4_state == NULL || enc->frame == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory for encoder buffers");
		bk_encoder_free(enc);
		return NULL;
	}
	enc->aead = bk_aead_new(err);
	if (enc->aead == NULL)
	{
		bk_encoder_free(enc);
		return NULL;
	}
	enc->sha = bk_sha256_new(err);
	if (enc->sha == NULL)
	{
		bk_encoder_free(enc);
		return NULL;
	}
	return enc;
}

void
bk_encoder_free(BkEncoder *enc)
{
	if (enc == NULL)
		return;
	bk_aead_free(enc->aead);
	bk_sha256_free(enc->sha);
	free(enc->lz4_state);
	free(enc->compressed);
	free(enc->frame);
	bk_secure_wipe(enc, sizeof(*enc));
	free(enc);
}

bool
bk_encoder_begin(BkEncoder *enc, const BkObjectInfo *info, BkError *err)
{
	size_t source_len = info->source_id ? strlen(info->source_id) : 0;
	size_t name_len = info->name ? strlen(info->name) : 0;
	size_t meta_len = info->meta ? strlen(info->meta) : 0;
	uint64_t chunk_count;
	uint8_t seal_aad[SEAL_AAD_LEN];
	uint8_t *hdr = enc->frame;

	enc->active = false;
	if (bk_kind_name(info->kind) == NULL)
		return bk_error_set(err, BK_ERR_USAGE, "unknown object kind %d",
							(int) info->kind);
	if (!bk_source_id_valid(info->source_id, source_len))
		return bk_error_set(err, BK_ERR_USAGE,
							"invalid source id \"%s\": use 1 to %d characters "
							"from A-Z a-z 0-9 . _ -",
							info->source_id ? info->source_id : "",
							BK_SOURCE_ID_MAX);
	if (!bk_object_name_valid(info->name, name_len))
		return bk_error_set(err, BK_ERR_USAGE, "invalid object name \"%s\"",
							info->name ? info->name : "");
	if (!bk_meta_valid(info->meta, meta_len))
		return bk_error_set(err, BK_ERR_USAGE,
							"invalid metadata for object \"%s\"", info->name);
	/* Not size + chunk_size - 1: that wraps for sizes near 2^64. */
	chunk_count = info->size == 0 ? 1
								  : info->size / enc->chunk_size +
										(info->size % enc->chunk_size != 0);
	if (chunk_count > UINT32_MAX)
		return bk_error_set(err, BK_ERR_USAGE,
							"object \"%s\" of %" PRIu64
							" bytes needs more than 2^32 chunks",
							info->name, info->size);

	if (!bk_random_bytes(enc->data_key, BK_DATA_KEY_LEN, err) ||
		!bk_random_bytes(enc->attempt_id, BK_ATTEMPT_ID_LEN, err))
		return false;

	/* The parts of the header that stay the same for every chunk. */
	memset(hdr, 0, BK_FRAME_FIXED_LEN);
	memcpy(hdr + BK_OFF_MAGIC, BK_FRAME_MAGIC, 4);
	hdr[BK_OFF_VERSION] = BK_FRAME_VERSION;
	hdr[BK_OFF_KIND] = (uint8_t) info->kind;
	enc->header_len =
		(uint32_t) (BK_FRAME_FIXED_LEN + source_len + name_len + meta_len);
	bk_put_be32(hdr + BK_OFF_HEADER_LEN, enc->header_len);
	bk_put_be16(hdr + BK_OFF_SOURCE_LEN, (uint16_t) source_len);
	bk_put_be16(hdr + BK_OFF_NAME_LEN, (uint16_t) name_len);
	bk_put_be16(hdr + BK_OFF_META_LEN, (uint16_t) meta_len);
	bk_put_be32(hdr + BK_OFF_CHUNK_COUNT, (uint32_t) chunk_count);
	bk_put_be64(hdr + BK_OFF_OBJECT_SIZE, info->size);
	memcpy(hdr + BK_OFF_KEY_ID, enc->recipient.id, BK_KEY_ID_LEN);
	memcpy(hdr + BK_OFF_ATTEMPT_ID, enc->attempt_id, BK_ATTEMPT_ID_LEN);
	memcpy(hdr + BK_OFF_VARIABLE, info->source_id, source_len);
	memcpy(hdr + BK_OFF_VARIABLE + source_len, info->name, name_len);
	if (meta_len > 0)
		memcpy(hdr + BK_OFF_VARIABLE + source_len + name_len, info->meta,
			   meta_len);

	memcpy(seal_aad, SEAL_AAD_DOMAIN, sizeof(SEAL_AAD_DOMAIN) - 1);
	memcpy(seal_aad + sizeof(SEAL_AAD_DOMAIN) - 1, enc->recipient.id,
		   BK_KEY_ID_LEN);
	memcpy(seal_aad + sizeof(SEAL_AAD_DOMAIN) - 1 + BK_KEY_ID_LEN,
		   enc->attempt_id, BK_ATTEMPT_ID_LEN);
	if (!bk_seal_data_key(enc->recipient.public_key, enc->data_key, seal_aad,
						  sizeof(seal_aad), hdr + BK_OFF_EPHEMERAL,
						  hdr + BK_OFF_SEALED_KEY, err))
		return false;
	if (!bk_aead_set_key(enc->aead, enc->data_key, err) ||
		!bk_sha256_reset(enc->sha, err))
		return false;

	enc->object_size = info->size;
	enc->chunk_count = (uint32_t) chunk_count;
	enc->next_index = 0;
	enc->next_offset = 0;
	enc->bytes_out = 0;
	enc->done = false;
	enc->active = true;
	return true;
}

uint32_t
bk_encoder_chunk_count(const BkEncoder *enc)
{
	return enc->chunk_count;
}

uint32_t
bk_encoder_next_chunk_len(const BkEncoder *enc)
{
	uint64_t remaining = enc->object_size - enc->next_offset;

	if (!enc->active || enc->done)
		return 0;
	return remaining < enc->chunk_size ? (uint32_t) remaining : enc->chunk_size;
}

bool
bk_encoder_done(const BkEncoder *enc)
{
	return enc->done;
}

const uint8_t *
bk_encoder_digest(const BkEncoder *enc)
{
	return enc->done ? enc->digest : NULL;
}

const uint8_t *
bk_encoder_attempt_id(const BkEncoder *enc)
{
	return enc->attempt_id;
}

uint64_t
bk_encoder_bytes_out(const BkEncoder *enc)
{
	return enc->bytes_out;
}

bool
bk_encoder_chunk(BkEncoder *enc, const uint8_t *plain, size_t len,
				 const uint8_t **frame, size_t *frame_len, BkFrame *info,
				 BkError *err)
{
	if (!bk_encoder_chunk_into(enc, plain, len, enc->frame, enc->frame_cap,
							   frame_len, info, err))
		return false;
	*frame = enc->frame;
	return true;
}

/*
 * A chunk failed after the digest took its bytes, perhaps before its nonce
 * was used up: the object cannot go on (a next chunk would repeat that
 * nonce, or count those bytes twice).  Its key goes; a new begin starts
 * again under a new one.
 */
static bool
encoder_failed(BkEncoder *enc)
{
	enc->active = false;
	bk_secure_wipe(enc->data_key, BK_DATA_KEY_LEN);
	return false;
}

bool
bk_encoder_chunk_into(BkEncoder *enc, const uint8_t *plain, size_t len,
					  uint8_t *out, size_t out_cap, size_t *frame_len,
					  BkFrame *info, BkError *err)
{
	uint8_t *hdr = out;
	bool last;
	uint16_t flags = 0;
	const uint8_t *payload_src = plain;
	uint32_t payload_len = (uint32_t) len;
	uint8_t *payload;
	size_t total;

	if (!enc->active || enc->done)
		return bk_error_set(
			err, BK_ERR_INTERNAL,
			"bk_encoder_chunk called with no object in progress");
	if (len != bk_encoder_next_chunk_len(enc))
		return bk_error_set(
			err, BK_ERR_INTERNAL,
			"chunk %" PRIu32 " given %zu bytes, expected %" PRIu32,
			enc->next_index, len, bk_encoder_next_chunk_len(enc));
	if (out_cap < bk_frame_max_len(enc->chunk_size))
		return bk_error_set(err, BK_ERR_INTERNAL,
							"frame buffer of %zu bytes is too small for "
							"chunks of %" PRIu32 " bytes",
							out_cap, enc->chunk_size);
	last = enc->next_index == enc->chunk_count - 1;

	/* The header fields that stay the same for the object (see begin). */
	if (out != enc->frame)
		memcpy(out, enc->frame, enc->header_len);

	if (!bk_sha256_update(enc->sha, plain, len, err))
		return encoder_failed(enc);
	memset(hdr + BK_OFF_FINGERPRINT, 0, BK_FINGERPRINT_LEN);
	if (last)
	{
		flags |= BK_FRAME_F_LAST;
		if (!bk_sha256_final(enc->sha, enc->digest, err) ||
			!bk_hmac_sha256(enc->recipient.fingerprint_key,
							BK_FINGERPRINT_KEY_LEN, enc->digest, BK_SHA256_LEN,
							hdr + BK_OFF_FINGERPRINT, err))
			return encoder_failed(enc);
	}

	if (len > 0)
	{
		int compressed_len;

		compressed_len = LZ4_compress_fast_extState(
			enc->lz4_state, (const char *) plain, enc->compressed, (int) len,
			enc->compressed_cap, 1);
		if (compressed_len > 0 && (size_t) compressed_len < len)
		{
			flags |= BK_FRAME_F_LZ4;
			payload_src = (const uint8_t *) enc->compressed;
			payload_len = (uint32_t) compressed_len;
		}
	}

	bk_put_be16(hdr + BK_OFF_FLAGS, flags);
	bk_put_be32(hdr + BK_OFF_CHUNK_INDEX, enc->next_index);
	bk_put_be32(hdr + BK_OFF_CHUNK_LEN, (uint32_t) len);
	bk_put_be32(hdr + BK_OFF_PAYLOAD_LEN, payload_len);
	bk_put_be64(hdr + BK_OFF_CHUNK_OFFSET, enc->next_offset);
	frame_nonce(enc->next_index, hdr + BK_OFF_NONCE);

	payload = hdr + enc->header_len;
	if (!bk_aead_encrypt(enc->aead, hdr + BK_OFF_NONCE, hdr, enc->header_len,
						 payload_src, payload_len, payload,
						 payload + payload_len, err))
		return encoder_failed(enc);
	total = (size_t) enc->header_len + payload_len + BK_FRAME_TRAILER_LEN;
	bk_put_be32(hdr + total - BK_FRAME_CRC_LEN,
				bk_crc32c(0, hdr, total - BK_FRAME_CRC_LEN));

	if (info != NULL)
		frame_view(hdr, total, info);
	*frame_len = total;

	enc->next_index++;
	enc->next_offset += len;
	enc->bytes_out += total;
	if (last)
	{
		enc->done = true;
		bk_secure_wipe(enc->data_key, BK_DATA_KEY_LEN);
	}
	return true;
}

/* ---------------------------------------------------------------- decoder */

struct BkDecoder
{
	const BkKeyring *ring;
	BkObjectTracker tracker;
	BkAead *aead;
	BkSha256 *sha;
	/* Per slot of ring, made when first used, for the key it held then. */
	BkUnsealer *unsealers[BK_KEYRING_MAX];
	uint8_t unsealer_key_ids[BK_KEYRING_MAX][BK_KEY_ID_LEN];
	bool check_crc; /* CRC-32C of every frame too, not only its tag */
	bool failed;    /* an error happened: reset before reuse */
	bool verified;  /* complete and fingerprint checked */
	uint8_t *plain;
	size_t plain_cap;
	uint8_t *scratch;
	size_t scratch_cap;
	uint8_t digest[BK_SHA256_LEN];
};

BkDecoder *
bk_decoder_new(const BkKeyring *ring, BkError *err)
{
	BkDecoder *dec = calloc(1, sizeof(*dec));

	if (dec == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	dec->ring = ring;
	dec->aead = bk_aead_new(err);
	dec->sha = dec->aead != NULL ? bk_sha256_new(err) : NULL;
	if (dec->sha == NULL)
	{
		bk_decoder_free(dec);
		return NULL;
	}
	return dec;
}

void
bk_decoder_free(BkDecoder *dec)
{
	if (dec == NULL)
		return;
	bk_aead_free(dec->aead);
	bk_sha256_free(dec->sha);
	for (int keyIdx = 0; keyIdx < BK_KEYRING_MAX; keyIdx++)
		bk_unsealer_free(dec->unsealers[keyIdx]);
	if (dec->plain != NULL)
		bk_secure_wipe(dec->plain, dec->plain_cap);
	free(dec->plain);
	if (dec->scratch != NULL)
		bk_secure_wipe(dec->scratch, dec->scratch_cap);
	free(dec->scratch);
	free(dec);
}

void
bk_decoder_check_crc(BkDecoder *dec, bool on)
{
	dec->check_crc = on;
}

bool
bk_error_missing_key(const char *message, char id[BK_KEY_ID_HEX_LEN + 1])
{
	const char *at = message;

	while ((at = strstr(at, MISSING_KEY_BEFORE)) != NULL)
	{
		const char *hex = at + strlen(MISSING_KEY_BEFORE);
		size_t len = strspn(hex, "0123456789abcdef");

		at = hex;
		if (len == BK_KEY_ID_HEX_LEN && strncmp(hex + len, MISSING_KEY_AFTER,
												strlen(MISSING_KEY_AFTER)) == 0)
		{
			memcpy(id, hex, BK_KEY_ID_HEX_LEN);
			id[BK_KEY_ID_HEX_LEN] = '\0';
			return true;
		}
	}
	return false;
}

bool
bk_decoder_has_key(const BkDecoder *dec, const uint8_t id[BK_KEY_ID_LEN])
{
	return bk_keyring_find(dec->ring, id) != NULL;
}

void
bk_decoder_reset(BkDecoder *dec)
{
	bk_tracker_reset(&dec->tracker);
	dec->failed = false;
	dec->verified = false;
}

static bool
ensure_capacity(uint8_t **buf, size_t *cap, size_t need, BkError *err)
{
	uint8_t *grown;

	if (*cap >= need)
		return true;
	grown = realloc(*buf, need);
	if (grown == NULL)
		return bk_error_set(err, BK_ERR_NOMEM,
							"out of memory for a %zu-byte chunk", need);
	*buf = grown;
	*cap = need;
	return true;
}

/* Find the key and open the envelope of a new object. */
static bool
decoder_open_envelope(BkDecoder *dec, const BkFrame *frame, BkError *err)
{
	const BkKey *key = bk_keyring_find(dec->ring, frame->key_id);
	BkUnsealer **unsealer;
	int slot;
	uint8_t seal_aad[SEAL_AAD_LEN];
	uint8_t data_key[BK_DATA_KEY_LEN];
	char id_hex[BK_KEY_ID_HEX_LEN + 1];
	char ring_ids[512];
	bool ok;

	bk_key_id_hex(frame->key_id, id_hex);
	if (key == NULL)
	{
		bk_keyring_ids(dec->ring, ring_ids, sizeof(ring_ids));
		bk_error_set(err, BK_ERR_KEY,
					 "object \"%.*s\" " MISSING_KEY_BEFORE
					 "%s" MISSING_KEY_AFTER " (it holds %s)",
					 (int) frame->name_len, frame->name, id_hex, ring_ids);
		return bk_error_hint(err,
							 "Restore with the private key whose id is %s; "
							 "after a key rotation keep the old keys in the "
							 "keyring.",
							 id_hex);
	}
	memcpy(seal_aad, SEAL_AAD_DOMAIN, sizeof(SEAL_AAD_DOMAIN) - 1);
	memcpy(seal_aad + sizeof(SEAL_AAD_DOMAIN) - 1, frame->key_id,
		   BK_KEY_ID_LEN);
	memcpy(seal_aad + sizeof(SEAL_AAD_DOMAIN) - 1 + BK_KEY_ID_LEN,
		   frame->attempt_id, BK_ATTEMPT_ID_LEN);
	slot = (int) (key - dec->ring->keys);
	unsealer = &dec->unsealers[slot];
	if (*unsealer != NULL &&
		memcmp(dec->unsealer_key_ids[slot], key->id, BK_KEY_ID_LEN) != 0)
	{
		bk_unsealer_free(*unsealer);
		*unsealer = NULL;
	}
	if (*unsealer == NULL)
	{
		*unsealer = bk_unsealer_new(key->private_key, key->public_key, err);
		if (*unsealer == NULL)
			return false;
		memcpy(dec->unsealer_key_ids[slot], key->id, BK_KEY_ID_LEN);
	}
	if (!bk_unsealer_open(*unsealer, frame->envelope,
						  frame->envelope + BK_X25519_KEY_LEN, seal_aad,
						  sizeof(seal_aad), data_key, err))
	{
		bk_error_set(err, BK_ERR_AUTH,
					 "object \"%.*s\": the data key sealed to key %s does not "
					 "open; the envelope was altered",
					 (int) frame->name_len, frame->name, id_hex);
		return false;
	}
	ok = bk_aead_set_key(dec->aead, data_key, err) &&
		 bk_sha256_reset(dec->sha, err);
	bk_secure_wipe(data_key, sizeof(data_key));
	return ok;
}

static bool
decoder_push(BkDecoder *dec, const uint8_t *buf, size_t len,
			 const uint8_t **plain, size_t *plain_len, BkError *err)
{
	BkFrame frame = {0};
	bool first;

	if (dec->failed)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"decoder used after an error without a reset");
	if (!frame_parse(buf, len, &frame, dec->check_crc, err))
		goto failed;
	first = !dec->tracker.started;
	if (!bk_tracker_accept(&dec->tracker, &frame, err))
		goto failed;
	if (first && !decoder_open_envelope(dec, &frame, err))
		goto failed;

	if (!ensure_capacity(&dec->plain, &dec->plain_cap,
						 frame.chunk_len > 0 ? frame.chunk_len : 1, err))
		return false;
	if (frame.flags & BK_FRAME_F_LZ4)
	{
		int decompressed;

		if (!ensure_capacity(&dec->scratch, &dec->scratch_cap,
							 frame.payload_len, err))
			return false;
		if (!bk_aead_decrypt(dec->aead, frame.nonce, frame.header,
							 frame.header_len, frame.payload, frame.payload_len,
							 dec->scratch, frame.tag, err))
			goto auth_failed;
		decompressed = LZ4_decompress_safe(
			(const char *) dec->scratch, (char *) dec->plain,
			(int) frame.payload_len, (int) frame.chunk_len);
		if (decompressed < 0 || (uint32_t) decompressed != frame.chunk_len)
			return bk_error_set(err, BK_ERR_FORMAT,
								"object \"%s\" chunk %" PRIu32
								": lz4 data does not decompress to %" PRIu32
								" bytes (a faulty encoder)",
								dec->tracker.name, frame.chunk_index,
								frame.chunk_len);
	}
	else if (!bk_aead_decrypt(dec->aead, frame.nonce, frame.header,
							  frame.header_len, frame.payload,
							  frame.payload_len, dec->plain, frame.tag, err))
		goto auth_failed;

	if (!bk_sha256_update(dec->sha, dec->plain, frame.chunk_len, err))
		return false;
	if (dec->tracker.complete)
	{
		const BkKey *key = bk_keyring_find(dec->ring, frame.key_id);
		uint8_t fingerprint[BK_FINGERPRINT_LEN];

		if (!bk_sha256_final(dec->sha, dec->digest, err) ||
			!bk_hmac_sha256(key->fingerprint_key, BK_FINGERPRINT_KEY_LEN,
							dec->digest, BK_SHA256_LEN, fingerprint, err))
			return false;
		if (!bk_secure_equal(fingerprint, frame.fingerprint,
							 BK_FINGERPRINT_LEN))
			return bk_error_set(err, BK_ERR_AUTH,
								"object \"%s\": the decrypted content does not "
								"match its fingerprint (a faulty encoder)",
								dec->tracker.name);
		dec->verified = true;
	}
	*plain = dec->plain;
	*plain_len = frame.chunk_len;
	return true;

failed:
	/*
	 * The CRC was skipped on the way in; now that something failed, it says
	 * whether the frame was corrupted (the more precise message) or is
	 * well-formed and lied about something.
	 */
	if (len >= BK_FRAME_FIXED_LEN + BK_FRAME_TRAILER_LEN &&
		memcmp(buf, BK_FRAME_MAGIC, 4) == 0 &&
		len == (size_t) frame.header_len + frame.payload_len +
				   BK_FRAME_TRAILER_LEN)
		(void) frame_check_crc(buf, len, err);
	return false;

auth_failed:
	if (!frame_check_crc(buf, len, err))
		return false;
	bk_error_set(err, BK_ERR_AUTH,
				 "object \"%s\" chunk %" PRIu32 " of %" PRIu32
				 " failed authentication: it was altered, or moved from "
				 "another object or attempt",
				 dec->tracker.name, frame.chunk_index, frame.chunk_count);
	return false;
}

bool
bk_decoder_push(BkDecoder *dec, const uint8_t *buf, size_t len,
				const uint8_t **plain, size_t *plain_len, BkError *err)
{
	if (!decoder_push(dec, buf, len, plain, plain_len, err))
	{
		dec->failed = true;
		return false;
	}
	return true;
}

bool
bk_decoder_done(const BkDecoder *dec)
{
	return dec->verified;
}

bool
bk_decoder_finish(const BkDecoder *dec, BkError *err)
{
	if (dec->failed)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"object decoding failed earlier");
	if (!bk_tracker_check_complete(&dec->tracker, err))
		return false;
	return dec->verified || bk_error_set(err, BK_ERR_INTERNAL,
										 "object complete but not verified");
}

const BkObjectTracker *
bk_decoder_object(const BkDecoder *dec)
{
	return &dec->tracker;
}

const uint8_t *
bk_decoder_digest(const BkDecoder *dec)
{
	return dec->verified ? dec->digest : NULL;
}
