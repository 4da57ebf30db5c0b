/*
 * bk_binlog.c
 *		MariaDB binary log: event headers, checksums, GTID state, range names.
 *
 * The layouts are MariaDB's (sql/log_event.h): a 19-byte little-endian
 * header, the body, and, when the format description event says so, a
 * CRC-32 (zlib's polynomial) of everything before it.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "bk_binlog.h"

const uint8_t bk_binlog_magic[BK_BINLOG_MAGIC_LEN] = {0xfe, 'b', 'i', 'n'};

static uint16_t
get_le16(const uint8_t *p)
{
	return (uint16_t) (p[0] | (p[1] << 8));
}

static uint32_t
get_le32(const uint8_t *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) |
		   ((uint32_t) p[3] << 24);
}

static uint64_t
get_le64(const uint8_t *p)
{
	return (uint64_t) get_le32(p) | ((uint64_t) get_le32(p + 4) << 32);
}

/*
 * bk_binlog_header_parse
 *		Decode an event header.
 */
bool
bk_binlog_header_parse(const uint8_t *data, size_t len,
					   BkBinlogEventHeader *header, BkError *err)
{
	if (len < BK_BINLOG_HEADER_LEN)
		return bk_error_set(err, BK_ERR_FORMAT,
							"binlog event header truncated: %zu of %d bytes",
							len, BK_BINLOG_HEADER_LEN);
	header->timestamp = get_le32(data);
	header->type = data[4];
	header->server_id = get_le32(data + 5);
	header->length = get_le32(data + 9);
	header->next_pos = get_le32(data + 13);
	header->flags = get_le16(data + 17);
	if (header->length < BK_BINLOG_HEADER_LEN)
		return bk_error_set(
			err, BK_ERR_FORMAT,
			"binlog event of type %u claims a length of %" PRIu32
			" bytes, shorter than its header",
			header->type, header->length);
	return true;
}

/*
 * bk_binlog_fde_checksum_alg
 *		The checksum algorithm a format description event declares.
 */
int
bk_binlog_fde_checksum_alg(const uint8_t *event, size_t len)
{
	if (len <
		BK_BINLOG_HEADER_LEN + 2 + 50 + 4 + 1 + 1 + BK_BINLOG_CHECKSUM_LEN)
		return -1;
	return event[len - BK_BINLOG_CHECKSUM_LEN - 1];
}

/*
 * bk_binlog_crc_ok
 *		Check an event's trailing CRC-32.
 */
bool
bk_binlog_crc_ok(const uint8_t *event, size_t len)
{
	uLong crc;

	if (len < BK_BINLOG_HEADER_LEN + BK_BINLOG_CHECKSUM_LEN)
		return false;
	crc = crc32(0L, Z_NULL, 0);
	crc = crc32(crc, event, (uInt) (len - BK_BINLOG_CHECKSUM_LEN));
	return (uint32_t) crc == get_le32(event + len - BK_BINLOG_CHECKSUM_LEN);
}

/*
 * bk_binlog_rotate_read
 *		The position and file name of a ROTATE event.  A made-up one may end
 *		with a CRC-32 or not; the name alone cannot tell (about one CRC in
 *		60000 is four bytes a file name may hold, "4074" say, and the name
 *		with them still looks like one), the CRC-32 itself can.
 */
bool
bk_binlog_rotate_read(const uint8_t *event, size_t len, int checksum_alg,
					  uint64_t *pos, char *name, size_t name_len, BkError *err)
{
	size_t body;
	bool with_crc;

	if (len < BK_BINLOG_HEADER_LEN + 8)
		return bk_error_set(err, BK_ERR_FORMAT,
							"ROTATE event of %zu bytes, too short for its"
							" position",
							len);
	body = len - BK_BINLOG_HEADER_LEN;
	if (checksum_alg < 0)
		with_crc =
			body >= 8 + BK_BINLOG_CHECKSUM_LEN && bk_binlog_crc_ok(event, len);
	else
		with_crc = checksum_alg == BK_BINLOG_CHECKSUM_CRC32;
	if (with_crc)
	{
		if (body < 8 + BK_BINLOG_CHECKSUM_LEN)
			return bk_error_set(err, BK_ERR_FORMAT,
								"ROTATE event of %zu bytes, too short for its"
								" position and checksum",
								len);
		body -= BK_BINLOG_CHECKSUM_LEN;
	}
	if (body - 8 >= name_len)
		return bk_error_set(err, BK_ERR_FORMAT,
							"ROTATE event names a file of %zu bytes; at most"
							" %zu",
							body - 8, name_len - 1);
	*pos = get_le64(event + BK_BINLOG_HEADER_LEN);
	memcpy(name, event + BK_BINLOG_HEADER_LEN + 8, body - 8);
	name[body - 8] = '\0';
	return true;
}

/*
 * bk_binlog_range_capacity_after_flush
 *		What a range buffer keeps once its range was sent (bk_binlog.h).
 */
size_t
bk_binlog_range_capacity_after_flush(size_t cap, uint64_t range_size)
{
	if (range_size > 0 && range_size <= SIZE_MAX / 2 && cap > 2 * range_size)
		return (size_t) range_size;
	return cap;
}

/*
 * bk_gtid_state_set
 *		Record gtid as its domain's newest.  A domain past the
 *		BK_BINLOG_DOMAINS_MAX the state holds is refused: dropped, it would
 *		leave a GTID state short of a domain (a restore's final state, a
 *		replica position) with nothing said.
 */
bool
bk_gtid_state_set(BkGtidState *state, const BkGtid *gtid, BkError *err)
{
	int idx;

	for (idx = 0; idx < state->count; idx++)
	{
		if (state->gtids[idx].domain == gtid->domain)
		{
			state->gtids[idx] = *gtid;
			return true;
		}
		if (state->gtids[idx].domain > gtid->domain)
			break;
	}
	if (state->count == BK_BINLOG_DOMAINS_MAX)
		return bk_error_set(err, BK_ERR_FORMAT,
							"GTID %" PRIu32 "-%" PRIu32 "-%" PRIu64
							" is of a GTID domain past the %d that bk"
							" handles",
							gtid->domain, gtid->server, gtid->seq,
							BK_BINLOG_DOMAINS_MAX);
	memmove(&state->gtids[idx + 1], &state->gtids[idx],
			(size_t) (state->count - idx) * sizeof(BkGtid));
	state->gtids[idx] = *gtid;
	state->count++;
	return true;
}

/*
 * format_gtids
 *		"0-1-42,1-2-7" from count GTIDs; "" for none.  False if out is too
 *		short.
 */
static bool
format_gtids(const BkGtid *gtids, int count, char *out, size_t out_len)
{
	size_t used = 0;

	if (out_len == 0)
		return false;
	out[0] = '\0';
	for (int idx = 0; idx < count; idx++)
	{
		int n = snprintf(out + used, out_len - used,
						 "%s%" PRIu32 "-%" PRIu32 "-%" PRIu64, idx ? "," : "",
						 gtids[idx].domain, gtids[idx].server, gtids[idx].seq);

		if (n < 0 || (size_t) n >= out_len - used)
			return false;
		used += (size_t) n;
	}
	return true;
}

/*
 * bk_gtid_state_format
 *		"0-1-42,1-2-7"; "" for an empty state.
 */
bool
bk_gtid_state_format(const BkGtidState *state, char *out, size_t out_len)
{
	return format_gtids(state->gtids, state->count, out, out_len);
}

static bool
parse_u64_part(const char **text, char stop, uint64_t max, uint64_t *value)
{
	const char *p = *text;
	uint64_t v = 0;

	if (!isdigit((unsigned char) *p))
		return false;
	while (isdigit((unsigned char) *p))
	{
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t) (*p - '0');
		p++;
	}
	if (v > max || *p != stop)
		return false;
	*value = v;
	*text = stop ? p + 1 : p;
	return true;
}

/*
 * next_gtid
 *		Parse the GTID at *text ("domain-server-seq") and move past it and
 *		the separators after it (commas, whitespace).
 */
static bool
next_gtid(const char **text, BkGtid *gtid, BkError *err)
{
	const char *p = *text;
	const char *end = p + strcspn(p, ", \t\n");
	uint64_t domain, server;
	char one[64];
	const char *q = one;

	if ((size_t) (end - p) >= sizeof(one))
		return bk_error_set(err, BK_ERR_USAGE, "GTID \"%.*s\" is too long",
							(int) (end - p), p);
	memcpy(one, p, (size_t) (end - p));
	one[end - p] = '\0';
	if (!parse_u64_part(&q, '-', UINT32_MAX, &domain) ||
		!parse_u64_part(&q, '-', UINT32_MAX, &server) ||
		!parse_u64_part(&q, '\0', UINT64_MAX, &gtid->seq) || *q != '\0')
		return bk_error_set(err, BK_ERR_USAGE,
							"\"%s\" is not a GTID (domain-server-sequence,"
							" for example 0-1-42)",
							one);
	gtid->domain = (uint32_t) domain;
	gtid->server = (uint32_t) server;
	p = end;
	while (*p == ',' || isspace((unsigned char) *p))
		p++;
	*text = p;
	return true;
}

/*
 * bk_gtid_state_parse
 *		The inverse of bk_gtid_state_format; whitespace and an empty text
 *		(no GTID) are accepted, one GTID per domain at most.
 */
bool
bk_gtid_state_parse(const char *text, BkGtidState *state, BkError *err)
{
	const char *p = text;

	memset(state, 0, sizeof(*state));
	while (isspace((unsigned char) *p))
		p++;
	while (*p)
	{
		BkGtid gtid;

		if (!next_gtid(&p, &gtid, err))
			return false;
		for (int idx = 0; idx < state->count; idx++)
			if (state->gtids[idx].domain == gtid.domain)
				return bk_error_set(err, BK_ERR_USAGE,
									"GTID list names domain %" PRIu32 " twice",
									gtid.domain);
		if (!bk_gtid_state_set(state, &gtid, err))
		{
			err->code = BK_ERR_USAGE; /* a text given, not a binlog read */
			return false;
		}
	}
	return true;
}

/*
 * bk_binlog_gtid_read
 *		The GTID of a GTID event: sequence (8 bytes) and domain (4) begin
 *		its body, the server is the header's.
 */
bool
bk_binlog_gtid_read(const uint8_t *event, size_t len, BkGtid *gtid,
					BkError *err)
{
	BkBinlogEventHeader header;
	const uint8_t *body = event + BK_BINLOG_HEADER_LEN;

	if (!bk_binlog_header_parse(event, len, &header, err))
		return false;
	if (header.type != BK_BINLOG_GTID_EVENT)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"event of type %u read as a GTID event",
							header.type);
	if (len < BK_BINLOG_HEADER_LEN + 8 + 4)
		return bk_error_set(err, BK_ERR_FORMAT, "GTID event truncated");
	gtid->seq = get_le64(body);
	gtid->domain = get_le32(body + 8);
	gtid->server = header.server_id;
	return true;
}

/*
 * bk_gtid_state_apply
 *		Fold a GTID or GTID_LIST event into state.
 */
bool
bk_gtid_state_apply(BkGtidState *state, const uint8_t *event, size_t len,
					BkError *err)
{
	BkBinlogEventHeader header;
	const uint8_t *body = event + BK_BINLOG_HEADER_LEN;

	if (!bk_binlog_header_parse(event, len, &header, err))
		return false;
	if (header.type == BK_BINLOG_GTID_EVENT)
	{
		BkGtid gtid;

		if (!bk_binlog_gtid_read(event, len, &gtid, err) ||
			!bk_gtid_state_set(state, &gtid, err))
			return false;
	}
	else if (header.type == BK_BINLOG_GTID_LIST_EVENT)
	{
		uint32_t count;

		if (len < BK_BINLOG_HEADER_LEN + 4)
			return bk_error_set(err, BK_ERR_FORMAT,
								"GTID list event truncated");
		count = get_le32(body) & 0x0fffffff;
		if ((uint64_t) len < BK_BINLOG_HEADER_LEN + 4 + (uint64_t) count * 16)
			return bk_error_set(err, BK_ERR_FORMAT,
								"GTID list event truncated");

		/*
		 * One entry per (domain, server) that ever logged: the state per
		 * domain is its most recent GTID, which the server lists after the
		 * domain's other entries (rpl_binlog_state::get_gtid_list writes
		 * each domain's last_gtid last).  Without gtid_strict_mode it need
		 * not be the highest sequence number: after a failover a server
		 * can log on below another's numbers.
		 */
		memset(state, 0, sizeof(*state));
		for (uint32_t idx = 0; idx < count; idx++)
		{
			const uint8_t *entry = body + 4 + (size_t) idx * 16;
			BkGtid gtid;
			bool known = false;

			gtid.domain = get_le32(entry);
			gtid.server = get_le32(entry + 4);
			gtid.seq = get_le64(entry + 8);
			for (int known_idx = 0; known_idx < state->count; known_idx++)
			{
				BkGtid *have = &state->gtids[known_idx];

				if (have->domain != gtid.domain)
					continue;
				known = true;
				*have = gtid;
			}
			if (!known && !bk_gtid_state_set(state, &gtid, err))
				return bk_error_prefix(err, "GTID list event: ");
		}
	}
	return true;
}

/*
 * bk_gtid_state_follows
 *		Every domain listed reached at the same GTID.
 */
bool
bk_gtid_state_follows(const BkGtidState *reached, const BkGtidState *listed)
{
	for (int idx = 0; idx < listed->count; idx++)
	{
		const BkGtid *want = &listed->gtids[idx];
		bool same = false;

		for (int have = 0; have < reached->count; have++)
			if (reached->gtids[have].domain == want->domain)
				same = reached->gtids[have].server == want->server &&
					   reached->gtids[have].seq == want->seq;
		if (!same)
			return false;
	}
	return true;
}

static bool
list_has_domain(const BkGtidList *list, uint32_t domain)
{
	for (int idx = 0; idx < list->count; idx++)
		if (list->gtids[idx].domain == domain)
			return true;
	return false;
}

static const BkGtid *
list_entry(const BkGtidList *list, uint32_t domain, uint32_t server)
{
	for (int idx = 0; idx < list->count; idx++)
		if (list->gtids[idx].domain == domain &&
			list->gtids[idx].server == server)
			return &list->gtids[idx];
	return NULL;
}

/*
 * bk_gtid_list_note
 *		Record gtid as the newest of its domain and server.
 */
bool
bk_gtid_list_note(BkGtidList *list, const BkGtid *gtid, BkError *err)
{
	int idx;

	for (idx = 0; idx < list->count; idx++)
	{
		BkGtid *have = &list->gtids[idx];

		if (have->domain == gtid->domain && have->server == gtid->server)
		{
			have->seq = gtid->seq;
			return true;
		}
		if (have->domain > gtid->domain ||
			(have->domain == gtid->domain && have->server > gtid->server))
			break;
	}
	if (list->count == BK_BINLOG_GTID_LIST_MAX)
		return bk_error_set(err, BK_ERR_FORMAT,
							"more than %d GTID domain and server pairs",
							BK_BINLOG_GTID_LIST_MAX);
	memmove(&list->gtids[idx + 1], &list->gtids[idx],
			(size_t) (list->count - idx) * sizeof(BkGtid));
	list->gtids[idx] = *gtid;
	list->count++;
	return true;
}

/*
 * bk_gtid_list_read
 *		The entries of a GTID_LIST event.
 */
bool
bk_gtid_list_read(BkGtidList *list, const uint8_t *event, size_t len,
				  BkError *err)
{
	const uint8_t *body = event + BK_BINLOG_HEADER_LEN;
	uint32_t count;

	list->count = 0;
	if (len < BK_BINLOG_HEADER_LEN + 4)
		return bk_error_set(err, BK_ERR_FORMAT, "GTID list event truncated");
	count = get_le32(body) & 0x0fffffff;
	if ((uint64_t) len < BK_BINLOG_HEADER_LEN + 4 + (uint64_t) count * 16)
		return bk_error_set(err, BK_ERR_FORMAT, "GTID list event truncated");
	for (uint32_t idx = 0; idx < count; idx++)
	{
		const uint8_t *entry = body + 4 + (size_t) idx * 16;
		BkGtid gtid;

		gtid.domain = get_le32(entry);
		gtid.server = get_le32(entry + 4);
		gtid.seq = get_le64(entry + 8);
		if (!bk_gtid_list_note(list, &gtid, err))
			return false;
	}
	return true;
}

/*
 * bk_gtid_list_format
 *		"0-1-10,0-2-5,1-1-3"; "" for an empty list.
 */
bool
bk_gtid_list_format(const BkGtidList *list, char *out, size_t out_len)
{
	return format_gtids(list->gtids, list->count, out, out_len);
}

/*
 * bk_gtid_list_parse
 *		The inverse of bk_gtid_list_format: one GTID per domain and server
 *		at most, in any order.
 */
bool
bk_gtid_list_parse(const char *text, BkGtidList *list, BkError *err)
{
	const char *p = text;

	list->count = 0;
	while (isspace((unsigned char) *p))
		p++;
	while (*p)
	{
		BkGtid gtid;

		if (!next_gtid(&p, &gtid, err))
			return false;
		if (list_entry(list, gtid.domain, gtid.server) != NULL)
			return bk_error_set(err, BK_ERR_USAGE,
								"GTID list names server %" PRIu32
								" of domain %" PRIu32 " twice",
								gtid.server, gtid.domain);
		if (!bk_gtid_list_note(list, &gtid, err))
			return false;
	}
	return true;
}

static void append_text(char *out, size_t out_len, size_t *used,
						const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
append_text(char *out, size_t out_len, size_t *used, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*used >= out_len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(out + *used, out_len - *used, fmt, ap);
	va_end(ap);
	if (n > 0)
		*used = (size_t) n >= out_len - *used ? out_len : *used + (size_t) n;
}

/*
 * bk_gtid_list_follows
 *		Both ways for the domains listed: an entry listed and not reached
 *		(or reached at another sequence) is a transaction missing; one
 *		reached and not listed, one the server never logged before the
 *		file.
 */
bool
bk_gtid_list_follows(const BkGtidList *reached, const BkGtidList *listed,
					 char *differs, size_t differs_len)
{
	size_t used = 0;
	bool same = true;

	if (differs_len > 0)
		differs[0] = '\0';
	for (int idx = 0; idx < listed->count; idx++)
	{
		const BkGtid *want = &listed->gtids[idx];
		const BkGtid *have = list_entry(reached, want->domain, want->server);

		if (have != NULL && have->seq == want->seq)
			continue;
		append_text(differs, differs_len, &used,
					"%s%" PRIu32 "-%" PRIu32 "-%" PRIu64, same ? "" : ", ",
					want->domain, want->server, want->seq);
		if (have != NULL)
			append_text(differs, differs_len, &used,
						" (reached %" PRIu32 "-%" PRIu32 "-%" PRIu64 ")",
						have->domain, have->server, have->seq);
		else
			append_text(differs, differs_len, &used,
						" (reached nothing of server %" PRIu32 ")",
						want->server);
		same = false;
	}
	for (int idx = 0; idx < reached->count; idx++)
	{
		const BkGtid *have = &reached->gtids[idx];

		if (!list_has_domain(listed, have->domain) ||
			list_entry(listed, have->domain, have->server) != NULL)
			continue;
		append_text(differs, differs_len, &used,
					"%snothing of server %" PRIu32 " in domain %" PRIu32
					" (reached %" PRIu32 "-%" PRIu32 "-%" PRIu64 ")",
					same ? "" : ", ", have->server, have->domain, have->domain,
					have->server, have->seq);
		same = false;
	}
	return same;
}

/*
 * bk_binlog_walk
 *		Check and visit the events of a byte range of a binlog file.
 */
bool
bk_binlog_walk(const char *file, uint64_t file_offset, const uint8_t *data,
			   size_t len, int *checksum_alg, BkBinlogEventFn fn, void *arg,
			   BkError *err)
{
	size_t pos = 0;

	if (file_offset == 0)
	{
		if (len < BK_BINLOG_MAGIC_LEN ||
			memcmp(data, bk_binlog_magic, BK_BINLOG_MAGIC_LEN) != 0)
			return bk_error_set(err, BK_ERR_FORMAT,
								"binlog file \"%s\" does not start with the"
								" binlog magic bytes",
								file);
		pos = BK_BINLOG_MAGIC_LEN;
	}
	while (pos < len)
	{
		BkBinlogEventHeader header;
		uint64_t offset = file_offset + pos;

		if (!bk_binlog_header_parse(data + pos, len - pos, &header, err))
			return bk_error_prefix(err, "binlog \"%s\" at offset %" PRIu64 ": ",
								   file, offset);
		if (header.length > len - pos)
			return bk_error_set(err, BK_ERR_FORMAT,
								"binlog \"%s\": the event at offset %" PRIu64
								" is %" PRIu32 " bytes long, but only %zu"
								" bytes follow it",
								file, offset, header.length, len - pos);
		if (header.next_pos != offset + header.length)
			return bk_error_set(err, BK_ERR_FORMAT,
								"binlog \"%s\": the event at offset %" PRIu64
								" says it ends at %" PRIu32 ", not at %" PRIu64
								" (events missing or out of place)",
								file, offset, header.next_pos,
								offset + header.length);
		if (header.type == BK_BINLOG_FORMAT_DESCRIPTION_EVENT)
		{
			int alg = bk_binlog_fde_checksum_alg(data + pos, header.length);

			if (alg != BK_BINLOG_CHECKSUM_OFF &&
				alg != BK_BINLOG_CHECKSUM_CRC32)
				return bk_error_set(err, BK_ERR_FORMAT,
									"binlog \"%s\": the format description at"
									" offset %" PRIu64 " declares checksum"
									" algorithm %d, which bk does not know",
									file, offset, alg);
			*checksum_alg = alg;
		}
		if (*checksum_alg == BK_BINLOG_CHECKSUM_CRC32 &&
			!bk_binlog_crc_ok(data + pos, header.length))
			return bk_error_set(err, BK_ERR_FORMAT,
								"binlog \"%s\": the CRC-32 of the event at"
								" offset %" PRIu64 " (type %u, %" PRIu32
								" bytes) is wrong",
								file, offset, header.type, header.length);
		if (fn != NULL && !fn(arg, offset, &header, data + pos, err))
			return false;
		pos += header.length;
	}
	return true;
}

/*
 * The longest statement text that ends a group.  The server writes an XA
 * COMMIT or ROLLBACK of its own, with the XID in hex: "XA ROLLBACK
 * X'gtrid',X'bqual',formatID", the two parts 64 bytes at most each, so 287
 * bytes.  A compressed text declared longer ends nothing and is not
 * decompressed: no statement of a group needs more than this much memory.
 */
#define QUERY_END_TEXT_MAX 512

/*
 * compressed_text
 *		The text of a Query_compressed event into buf (QUERY_END_TEXT_MAX
 *		bytes), as MariaDB's binlog_buf_compress wrote it (sql/log_event.cc):
 *		a byte 0x80 | alg << 4 | n (alg 0 is zlib, the only one there is),
 *		the text's length in its n bytes (1 to 4, high byte first), then
 *		zlib's stream of the text.  *text_len is the length declared; the
 *		text is decompressed only when it may end a group (*text_len at
 *		most QUERY_END_TEXT_MAX).  A text the server itself could not read
 *		back (it checks the same) fails: its CRC-32 held, so the server
 *		wrote it so, and taking it for a statement that ends nothing could
 *		move a group's end.
 */
static bool
compressed_text(const uint8_t *data, size_t len, char *buf, size_t *text_len,
				BkError *err)
{
	unsigned int alg, n;
	uint32_t declared = 0;
	uLongf out_len;
	int rc;

	if (len < 1 || (data[0] & 0x80) == 0)
		return bk_error_set(err, BK_ERR_FORMAT,
							"Query_compressed event whose text is not"
							" marked compressed");
	alg = (data[0] >> 4) & 0x07;
	n = data[0] & 0x07;
	if (alg != 0)
		return bk_error_set(err, BK_ERR_FORMAT,
							"Query_compressed event with compression"
							" algorithm %u; MariaDB writes only 0 (zlib)",
							alg);
	if (n < 1 || n > 4 || len < 1 + (size_t) n)
		return bk_error_set(err, BK_ERR_FORMAT,
							"Query_compressed event whose text length is"
							" %u bytes long, or cut short",
							n);
	for (unsigned int idx = 0; idx < n; idx++)
		declared = declared << 8 | data[1 + idx];
	if (declared == 0)
		return bk_error_set(err, BK_ERR_FORMAT,
							"Query_compressed event declaring an empty text");
	*text_len = declared;
	if (declared > QUERY_END_TEXT_MAX)
		return true;
	out_len = declared;
	rc = uncompress((Bytef *) buf, &out_len, data + 1 + n,
					(uLong) (len - 1 - n));
	if (rc != Z_OK || out_len != declared)
		return bk_error_set(err, BK_ERR_FORMAT,
							"Query_compressed event whose text does not"
							" decompress to the %" PRIu32 " bytes it declares"
							" (zlib: %s)",
							declared, rc == Z_OK ? "shorter" : zError(rc));
	return true;
}

/*
 * The first bytes (at most prefix_len) of a compressed text too long to
 * decompress whole, into prefix; *got says how many.  Nothing on a damaged
 * stream: the caller reads that as a statement it does not know.
 */
static void
compressed_prefix(const uint8_t *data, size_t len, char *prefix,
				  size_t prefix_len, size_t *got)
{
	unsigned int n = data[0] & 0x07;
	z_stream stream;

	*got = 0;
	memset(&stream, 0, sizeof(stream));
	if (len < 1 + (size_t) n || inflateInit(&stream) != Z_OK)
		return;
	stream.next_in = (Bytef *) (data + 1 + n);
	stream.avail_in = (uInt) (len - 1 - n);
	stream.next_out = (Bytef *) prefix;
	stream.avail_out = (uInt) prefix_len;
	(void) inflate(&stream, Z_SYNC_FLUSH);
	*got = prefix_len - stream.avail_out;
	inflateEnd(&stream);
}

/* Is text a CREATE TABLE statement (not of a temporary table)? */
static bool
creates_table(const char *text, size_t text_len)
{
	char word[16];
	size_t at = 0;
	int words = 0;

	/* "CREATE [OR REPLACE] TABLE", words apart by white space. */
	while (words < 4)
	{
		size_t word_len = 0;

		while (at < text_len && isspace((unsigned char) text[at]))
			at++;
		while (at < text_len && !isspace((unsigned char) text[at]) &&
			   word_len < sizeof(word) - 1)
			word[word_len++] = text[at++];
		word[word_len] = '\0';
		if (word_len == 0)
			return false;
		words++;
		if (words == 1 && strcasecmp(word, "CREATE") != 0)
			return false;
		if (words > 1 && strcasecmp(word, "TABLE") == 0)
			return true;
		if (words > 1 && strcasecmp(word, "OR") != 0 &&
			strcasecmp(word, "REPLACE") != 0)
			return false;
	}
	return false;
}

/*
 * query_ends_group
 *		Does the text of a Query event, or of a Query_compressed one, end a
 *		group, and is it a CREATE TABLE?  Only a group that is not
 *		standalone asks: a compressed text is decompressed only then.
 */
static bool
query_ends_group(const uint8_t *event, size_t len, uint8_t type,
				 int checksum_alg, bool *ends, bool *creates, BkError *err)
{
	/* thread id 4, exec time 4, db length 1, error code 2, status length 2 */
	const size_t post_header = 13;
	const uint8_t *body = event + BK_BINLOG_HEADER_LEN;
	size_t body_len = len - BK_BINLOG_HEADER_LEN;
	size_t text_at;
	const char *text;
	size_t text_len;
	char buf[QUERY_END_TEXT_MAX];

	*ends = false;
	*creates = false;
	if (checksum_alg == BK_BINLOG_CHECKSUM_CRC32)
	{
		if (body_len < BK_BINLOG_CHECKSUM_LEN)
			return true;
		body_len -= BK_BINLOG_CHECKSUM_LEN;
	}
	if (body_len < post_header)
		return true;
	text_at = post_header + get_le16(body + 11) + body[8] + 1;
	if (text_at > body_len)
		return true;
	text = (const char *) body + text_at;
	text_len = body_len - text_at;
	if (type == BK_BINLOG_QUERY_COMPRESSED_EVENT)
	{
		size_t stored_len = text_len;

		if (!compressed_text(body + text_at, stored_len, buf, &text_len, err))
			return false;
		if (text_len > QUERY_END_TEXT_MAX)
		{
			/* Too long to end a group; its first words still tell. */
			compressed_prefix(body + text_at, stored_len, buf, 64, &text_len);
			*creates = creates_table(buf, text_len);
			return true;
		}
		text = buf;
	}
	*creates = creates_table(text, text_len);
	if ((text_len == 6 && strncasecmp(text, "COMMIT", 6) == 0) ||
		(text_len == 8 && strncasecmp(text, "ROLLBACK", 8) == 0))
		*ends = true;
	else
		*ends = (text_len > 10 && strncasecmp(text, "XA COMMIT ", 10) == 0) ||
				(text_len > 12 && strncasecmp(text, "XA ROLLBACK ", 12) == 0);
	return true;
}

/*
 * bk_binlog_txn_feed
 *		Follow groups event by event.
 */
bool
bk_binlog_txn_feed(BkBinlogTxn *txn, const uint8_t *event, size_t len,
				   int checksum_alg, bool *ended, BkError *err)
{
	BkBinlogEventHeader header;
	const uint8_t *body = event + BK_BINLOG_HEADER_LEN;
	uint32_t until;
	bool query;
	BkGtid open;

	*ended = false;
	if (!bk_binlog_header_parse(event, len, &header, err))
		return false;
	/* A compressed statement is the same Query event, its text packed. */
	query = header.type == BK_BINLOG_QUERY_EVENT ||
			header.type == BK_BINLOG_QUERY_COMPRESSED_EVENT;
	/*
	 * Event timestamps are when the statement started; a Query event is
	 * written when its statement has ended, exec_time seconds later.
	 */
	until = header.timestamp;
	if (query && len >= BK_BINLOG_HEADER_LEN + 8 &&
		get_le32(body + 4) <= UINT32_MAX - until)
		until += get_le32(body + 4);
	if (header.type == BK_BINLOG_GTID_EVENT || until > txn->end_time)
		txn->end_time = until;
	switch (header.type)
	{
		case BK_BINLOG_GTID_EVENT:
			/* seq 8, domain 4, flags 1 */
			if (len < BK_BINLOG_HEADER_LEN + 13)
				return bk_error_set(err, BK_ERR_FORMAT, "GTID event truncated");
			open = txn->gtid;
			txn->gtid.seq = get_le64(body);
			txn->gtid.domain = get_le32(body + 8);
			txn->gtid.server = header.server_id;
			txn->standalone = (body[12] & 0x01) != 0;
			txn->ddl = (body[12] & 0x20) != 0;
			txn->created_table = false;
			txn->table_created_with_rows = false;
			txn->start_time = header.timestamp;
			/*
			 * The server writes a group whole, under one lock: a group still
			 * open here was ended by an event bk does not take for an end.
			 * Merged with this one, its end would move to this one's, and a
			 * target between them would be silently missed.  The new group
			 * is followed all the same, for a caller that reports and goes
			 * on.
			 */
			if (txn->in_group)
				return bk_error_set(
					err, BK_ERR_FORMAT,
					"the transaction of GTID %" PRIu32 "-%" PRIu32 "-%" PRIu64
					" is not ended before the GTID event of"
					" %" PRIu32 "-%" PRIu32 "-%" PRIu64 ": an event bk does"
					" not know ends it, and bk cannot tell where",
					open.domain, open.server, open.seq, txn->gtid.domain,
					txn->gtid.server, txn->gtid.seq);
			txn->in_group = true;
			break;
		case BK_BINLOG_FORMAT_DESCRIPTION_EVENT:
			/*
			 * A file's first event.  Groups never span files: one still open
			 * was cut short by a crash of the server, which rolled it back
			 * (so do replicas, when the restarted server's format
			 * description comes), or its archive lost the file's tail (the
			 * next file's GTID list shows it).  Either way it did not end.
			 */
			txn->in_group = false;
			break;
		case BK_BINLOG_XID_EVENT:
		case BK_BINLOG_XA_PREPARE_EVENT:
			*ended = txn->in_group;
			break;
		case BK_BINLOG_QUERY_EVENT:
		case BK_BINLOG_QUERY_COMPRESSED_EVENT:
		{
			bool creates;

			if (!txn->in_group)
				break;
			if (txn->standalone)
				*ended = true;
			else if (!query_ends_group(event, len, header.type, checksum_alg,
									   ended, &creates, err))
				return false;
			else
				txn->created_table |= creates;
			break;
		}
		case BK_BINLOG_WRITE_ROWS_EVENT_V1:
		case BK_BINLOG_WRITE_ROWS_EVENT:
		case BK_BINLOG_WRITE_ROWS_COMPRESSED_EVENT:
		case BK_BINLOG_WRITE_ROWS_COMPRESSED_EVENT_V1:
			txn->table_created_with_rows |= txn->in_group && txn->created_table;
			break;
		default:
			break;
	}
	if (*ended)
		txn->in_group = false;
	return true;
}

/*
 * bk_binlog_incident_read
 *		The number and message of an Incident event: a post-header of the
 *		number (2 bytes), then the message as one length byte and its text.
 */
bool
bk_binlog_incident_read(const uint8_t *event, size_t len, int checksum_alg,
						uint16_t *number, char *message, size_t message_len,
						BkError *err)
{
	const uint8_t *body = event + BK_BINLOG_HEADER_LEN;
	size_t body_len;
	size_t text_len;

	body_len = len > BK_BINLOG_HEADER_LEN ? len - BK_BINLOG_HEADER_LEN : 0;
	if (checksum_alg == BK_BINLOG_CHECKSUM_CRC32)
		body_len = body_len >= BK_BINLOG_CHECKSUM_LEN
					   ? body_len - BK_BINLOG_CHECKSUM_LEN
					   : 0;
	if (body_len < 2)
		return bk_error_set(err, BK_ERR_FORMAT, "Incident event truncated");
	*number = get_le16(body);
	/* The message is optional: the server may write the number alone. */
	text_len = body_len > 2 ? body[2] : 0;
	if (text_len > 0 && 3 + text_len > body_len)
		return bk_error_set(err, BK_ERR_FORMAT,
							"Incident event shorter than its %zu-byte message",
							text_len);
	if (message_len > 0)
	{
		if (text_len > message_len - 1)
			text_len = message_len - 1;
		/* Said in messages: a byte that is not printable ASCII is a '?'. */
		for (size_t idx = 0; idx < text_len; idx++)
			message[idx] = body[3 + idx] >= 0x20 && body[3 + idx] < 0x7f
							   ? (char) body[3 + idx]
							   : '?';
		message[text_len] = '\0';
	}
	return true;
}

/*
 * bk_binlog_query_read
 *		The parts of a Query event a reader of statements needs.
 */
bool
bk_binlog_query_read(const uint8_t *event, size_t len, int checksum_alg,
					 BkBinlogQuery *query, BkError *err)
{
	/* thread id 4, exec time 4, db length 1, error code 2, status length 2 */
	const size_t post_header = 13;
	const uint8_t *body = event + BK_BINLOG_HEADER_LEN;
	size_t body_len;
	size_t db_at, text_at;

	memset(query, 0, sizeof(*query));
	body_len = len > BK_BINLOG_HEADER_LEN ? len - BK_BINLOG_HEADER_LEN : 0;
	if (checksum_alg == BK_BINLOG_CHECKSUM_CRC32)
		body_len = body_len >= BK_BINLOG_CHECKSUM_LEN
					   ? body_len - BK_BINLOG_CHECKSUM_LEN
					   : 0;
	if (body_len < post_header)
		return bk_error_set(err, BK_ERR_FORMAT, "Query event truncated");
	query->thread_id = get_le32(body);
	db_at = post_header + get_le16(body + 11);
	text_at = db_at + body[8] + 1;
	if (text_at > body_len)
		return bk_error_set(err, BK_ERR_FORMAT,
							"Query event shorter than its status variables"
							" and database name");
	query->db = (const char *) body + db_at;
	query->db_len = body[8];
	query->text = (const char *) body + text_at;
	query->text_len = body_len - text_at;
	if (event[4] == BK_BINLOG_QUERY_COMPRESSED_EVENT)
	{
		const uint8_t *packed = body + text_at;
		size_t packed_len = body_len - text_at;
		char first[QUERY_END_TEXT_MAX];
		size_t declared;
		uLongf out_len;

		/* Checks the header, and reads a short text whole. */
		if (!compressed_text(packed, packed_len, first, &declared, err))
			return false;
		query->text_buf = malloc(declared);
		if (query->text_buf == NULL)
			return bk_error_set(err, BK_ERR_NOMEM,
								"out of memory for a statement of %zu bytes",
								declared);
		out_len = declared;
		if (uncompress((Bytef *) query->text_buf, &out_len,
					   packed + 1 + (packed[0] & 0x07),
					   (uLong) (packed_len - 1 - (packed[0] & 0x07))) != Z_OK ||
			out_len != declared)
		{
			bk_binlog_query_free(query);
			return bk_error_set(err, BK_ERR_FORMAT,
								"Query_compressed event whose text does not"
								" decompress to the %zu bytes it declares",
								declared);
		}
		query->text = query->text_buf;
		query->text_len = declared;
	}
	return true;
}

void
bk_binlog_query_free(BkBinlogQuery *query)
{
	free(query->text_buf);
	query->text_buf = NULL;
}

/*
 * bk_binlog_file_name_valid
 *		A binlog file name: one object-name component, ending in ".<digits>".
 */
bool
bk_binlog_file_name_valid(const char *name)
{
	size_t len = strlen(name);
	const char *dot = strrchr(name, '.');

	if (len == 0 || len > BK_BINLOG_FILE_NAME_MAX || name[0] == '.')
		return false;
	for (size_t idx = 0; idx < len; idx++)
	{
		unsigned char c = (unsigned char) name[idx];

		if (!isalnum(c) && c != '.' && c != '_' && c != '-' && c != '+')
			return false;
	}
	if (dot == NULL || dot[1] == '\0')
		return false;
	for (const char *p = dot + 1; *p; p++)
		if (!isdigit((unsigned char) *p))
			return false;
	return true;
}

/*
 * bk_binlog_range_name
 *		"<file>/<start>-<end>", offsets in 10 digits.
 */
bool
bk_binlog_range_name(const char *file, uint64_t start, uint64_t end, char *out,
					 size_t out_len)
{
	int n;

	if (!bk_binlog_file_name_valid(file) || start >= end || end > UINT32_MAX)
		return false;
	n = snprintf(out, out_len, "%s/%0*" PRIu64 "-%0*" PRIu64, file,
				 BK_BINLOG_OFFSET_DIGITS, start, BK_BINLOG_OFFSET_DIGITS, end);
	return n > 0 && (size_t) n < out_len;
}

static bool
parse_offset(const char *digits, uint64_t *value)
{
	uint64_t v = 0;

	for (int idx = 0; idx < BK_BINLOG_OFFSET_DIGITS; idx++)
	{
		if (!isdigit((unsigned char) digits[idx]))
			return false;
		v = v * 10 + (uint64_t) (digits[idx] - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*value = v;
	return true;
}

/*
 * bk_binlog_range_parse
 *		The file and offsets of a range name.
 */
bool
bk_binlog_range_parse(const char *name, char *file, size_t file_len,
					  uint64_t *start, uint64_t *end)
{
	const char *slash = strchr(name, '/');
	const char *offsets;

	if (slash == NULL || (size_t) (slash - name) >= file_len)
		return false;
	offsets = slash + 1;
	if (strlen(offsets) != 2 * BK_BINLOG_OFFSET_DIGITS + 1 ||
		offsets[BK_BINLOG_OFFSET_DIGITS] != '-' ||
		!parse_offset(offsets, start) ||
		!parse_offset(offsets + BK_BINLOG_OFFSET_DIGITS + 1, end) ||
		*start >= *end)
		return false;
	memcpy(file, name, (size_t) (slash - name));
	file[slash - name] = '\0';
	return bk_binlog_file_name_valid(file);
}

/*
 * bk_binlog_file_compare
 *		Order binlog files by their numeric extension, then by name.
 */
int
bk_binlog_file_compare(const char *a, const char *b)
{
	const char *dot_a = strrchr(a, '.');
	const char *dot_b = strrchr(b, '.');

	if (dot_a != NULL && dot_b != NULL)
	{
		unsigned long long num_a = strtoull(dot_a + 1, NULL, 10);
		unsigned long long num_b = strtoull(dot_b + 1, NULL, 10);

		if (num_a != num_b)
			return num_a < num_b ? -1 : 1;
	}
	return strcmp(a, b);
}

/*
 * bk_binlog_position_compare
 *		Order two stream positions (bk_binlog.h).
 */
int
bk_binlog_position_compare(const char *file_a, uint64_t offset_a,
						   const char *file_b, uint64_t offset_b)
{
	int cmp = bk_binlog_file_compare(file_a, file_b);

	if (cmp != 0)
		return cmp;
	return offset_a < offset_b ? -1 : offset_a > offset_b ? 1 : 0;
}

/*
 * bk_binlog_unix_ms_parse
 *		A server's Unix time in milliseconds, rounded down (bk_binlog.h).
 */
bool
bk_binlog_unix_ms_parse(const char *text, int64_t *ms)
{
	int64_t seconds = 0;
	int64_t fraction = 0;
	const char *p = text;
	int digits;

	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++)
	{
		if (seconds > INT64_MAX / 10000)
			return false;
		seconds = seconds * 10 + (*p - '0');
	}
	if (*p == '.')
	{
		p++;
		for (digits = 0; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 3)
				fraction = fraction * 10 + (*p - '0');
		if (digits == 0)
			return false;
		for (; digits < 3; digits++)
			fraction *= 10;
	}
	if (*p != '\0')
		return false;
	*ms = seconds * 1000 + fraction;
	return true;
}

/*
 * bk_binlog_file_same_base
 *		Do a and b share the name before the last dot (bk_binlog.h)?
 */
bool
bk_binlog_file_same_base(const char *a, const char *b)
{
	const char *dot_a = strrchr(a, '.');
	const char *dot_b = strrchr(b, '.');
	size_t len_a = dot_a ? (size_t) (dot_a - a) : strlen(a);
	size_t len_b = dot_b ? (size_t) (dot_b - b) : strlen(b);

	return len_a == len_b && strncmp(a, b, len_a) == 0;
}

/*
 * bk_binlog_file_follows
 *		Is next the file after prev, of the same basename (bk_binlog.h)?
 */
bool
bk_binlog_file_follows(const char *prev, const char *next)
{
	const char *dot_prev = strrchr(prev, '.');
	const char *dot_next = strrchr(next, '.');

	return dot_prev != NULL && dot_next != NULL &&
		   bk_binlog_file_same_base(prev, next) &&
		   strtoull(dot_next + 1, NULL, 10) ==
			   strtoull(dot_prev + 1, NULL, 10) + 1;
}
