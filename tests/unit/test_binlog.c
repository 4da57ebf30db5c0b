/*
 * test_binlog.c
 *		The binlog pieces the agent and the bk tool share: event headers and
 *		CRC-32, the chain check over a range, GTID state (events, lists with
 *		several servers per domain, text round trip), range names and file
 *		order.  Events are built here byte by byte as MariaDB lays them out.
 */
#include "testutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "bk_binlog.h"

/*
 * make_event
 *		An event of body_len bytes at file offset, with a CRC-32; returns
 *		its length.
 */
static size_t
make_event(uint8_t *out, uint8_t type, uint32_t server, uint64_t offset,
		   const uint8_t *body, size_t body_len)
{
	size_t len = BK_BINLOG_HEADER_LEN + body_len + BK_BINLOG_CHECKSUM_LEN;
	uLong crc;

	put_le32(out, 1764000000);
	out[4] = type;
	put_le32(out + 5, server);
	put_le32(out + 9, (uint32_t) len);
	put_le32(out + 13, (uint32_t) (offset + len));
	out[17] = 0;
	out[18] = 0;
	memcpy(out + BK_BINLOG_HEADER_LEN, body, body_len);
	crc = crc32(crc32(0L, Z_NULL, 0), out, (uInt) (len - 4));
	put_le32(out + len - 4, (uint32_t) crc);
	return len;
}

static size_t
make_gtid(uint8_t *out, uint64_t offset, uint32_t domain, uint32_t server,
		  uint64_t seq)
{
	uint8_t body[13];

	put_le64(body, seq);
	put_le32(body + 8, domain);
	body[12] = 0;
	return make_event(out, BK_BINLOG_GTID_EVENT, server, offset, body,
					  sizeof(body));
}

static void
test_header_and_crc(void **state)
{
	uint8_t event[64];
	uint8_t body[5] = {1, 2, 3, 4, 5};
	size_t len = make_event(event, 2, 7, 4, body, sizeof(body));
	BkBinlogEventHeader header;
	BkError err;

	assert_true(bk_binlog_header_parse(event, len, &header, &err));
	assert_int_equal(header.type, 2);
	assert_int_equal(header.server_id, 7);
	assert_int_equal(header.length, len);
	assert_int_equal(header.next_pos, 4 + len);
	assert_true(bk_binlog_crc_ok(event, len));
	event[20] ^= 1;
	assert_false(bk_binlog_crc_ok(event, len));
	assert_false(bk_binlog_header_parse(event, 10, &header, &err));
	assert_int_equal(err.code, BK_ERR_FORMAT);
}

typedef struct Walked
{
	int events;
	uint64_t last_offset;
} Walked;

static bool
count_events(void *arg, uint64_t offset, const BkBinlogEventHeader *header,
			 const uint8_t *event, BkError *err)
{
	Walked *walked = arg;

	walked->events++;
	walked->last_offset = offset;
	return true;
}

static void
test_walk(void **state)
{
	uint8_t file[256];
	size_t len = BK_BINLOG_MAGIC_LEN;
	uint8_t body[8] = {0};
	int alg = BK_BINLOG_CHECKSUM_CRC32;
	Walked walked = {0};
	BkError err;

	memcpy(file, bk_binlog_magic, BK_BINLOG_MAGIC_LEN);
	len += make_event(file + len, 2, 1, len, body, sizeof(body));
	len += make_gtid(file + len, len, 0, 1, 5);
	len += make_event(file + len, BK_BINLOG_XID_EVENT, 1, len, body, 8);
	assert_true(bk_binlog_walk("b.000001", 0, file, len, &alg, count_events,
							   &walked, &err));
	assert_int_equal(walked.events, 3);

	/* A range starting later: the same events, offsets as in the file. */
	walked.events = 0;
	assert_true(bk_binlog_walk("b.000001", 4, file + 4, len - 4, &alg,
							   count_events, &walked, &err));
	assert_int_equal(walked.events, 3);

	/* The magic is required at 0; an event cut short; a CRC; a chain. */
	assert_false(bk_binlog_walk("b.000001", 0, file + 4, len - 4, &alg, NULL,
								NULL, &err));
	assert_non_null(strstr(err.message, "magic"));
	assert_false(
		bk_binlog_walk("b.000001", 0, file, len - 1, &alg, NULL, NULL, &err));
	assert_non_null(strstr(err.message, "only"));
	file[30] ^= 0x40;
	assert_false(
		bk_binlog_walk("b.000001", 0, file, len, &alg, NULL, NULL, &err));
	assert_non_null(strstr(err.message, "CRC-32"));
	file[30] ^= 0x40;
	assert_false(bk_binlog_walk("b.000001", 8, file + 4, len - 4, &alg, NULL,
								NULL, &err));
	assert_non_null(strstr(err.message, "missing or out of place"));
}

static void
test_gtid_state(void **state)
{
	uint8_t event[64];
	uint8_t list[4 + 4 * 16];
	uint8_t list_event[128];
	size_t len;
	BkGtidState gtid = {0};
	BkGtidState parsed;
	BkGtid one;
	char text[256];
	BkError err;

	len = make_gtid(event, 4, 1, 2, 7);
	assert_true(bk_binlog_gtid_read(event, len, &one, &err));
	assert_true(one.domain == 1 && one.server == 2 && one.seq == 7);
	assert_false(
		bk_binlog_gtid_read(event, BK_BINLOG_HEADER_LEN + 11, &one, &err));
	assert_error_contains(&err, "truncated");
	assert_true(bk_gtid_state_apply(&gtid, event, len, &err));
	len = make_gtid(event, 4, 0, 1, 42);
	assert_true(bk_gtid_state_apply(&gtid, event, len, &err));
	len = make_gtid(event, 4, 0, 3, 43);
	assert_true(bk_gtid_state_apply(&gtid, event, len, &err));
	assert_true(bk_gtid_state_format(&gtid, text, sizeof(text)));
	assert_string_equal(text, "0-3-43,1-2-7");
	assert_true(bk_gtid_state_parse(text, &parsed, &err));
	assert_int_equal(parsed.count, 2);
	assert_true(parsed.gtids[0].seq == 43 && parsed.gtids[1].server == 2);

	/*
	 * A list with two servers in domain 0: the one listed last is the
	 * domain's most recent GTID (the server lists it after the others),
	 * even below the other's number, as after a failover without
	 * gtid_strict_mode.
	 */
	put_le32(list, 4);
	put_le32(list + 4, 0), put_le32(list + 8, 1), put_le64(list + 12, 50);
	put_le32(list + 20, 0), put_le32(list + 24, 3), put_le64(list + 28, 43);
	put_le32(list + 36, 1), put_le32(list + 40, 2), put_le64(list + 44, 7);
	put_le32(list + 52, 5), put_le32(list + 56, 9), put_le64(list + 60, 1);
	len = make_event(list_event, BK_BINLOG_GTID_LIST_EVENT, 1, 4, list,
					 sizeof(list));
	assert_true(bk_gtid_state_apply(&gtid, list_event, len, &err));
	assert_true(bk_gtid_state_format(&gtid, text, sizeof(text)));
	assert_string_equal(text, "0-3-43,1-2-7,5-9-1");

	assert_true(bk_gtid_state_parse("", &parsed, &err));
	assert_int_equal(parsed.count, 0);
	assert_false(bk_gtid_state_parse("0-1", &parsed, &err));
	assert_false(bk_gtid_state_parse("0-1-2,0-1-3", &parsed, &err));
	assert_non_null(strstr(err.message, "twice"));
	assert_false(bk_gtid_state_parse("0-1-x", &parsed, &err));
}

/*
 * A state holds BK_BINLOG_DOMAINS_MAX domains: one more is refused, naming
 * the limit, never dropped (a restore's final GTID state would lack it),
 * whether set, read from a GTID event or parsed; a domain it holds still
 * moves on.
 */
static void
test_gtid_state_domains_max(void **state)
{
	uint8_t event[64];
	size_t len;
	BkGtidState gtids = {0}, before;
	BkGtid gtid;
	char text[BK_BINLOG_GTID_STATE_MAX];
	size_t used = 0;
	BkError err;

	for (uint32_t domain = 0; domain < BK_BINLOG_DOMAINS_MAX; domain++)
	{
		gtid = (BkGtid){.domain = domain, .server = 1, .seq = 1};
		assert_true(bk_gtid_state_set(&gtids, &gtid, &err));
		used +=
			(size_t) snprintf(text + used, sizeof(text) - used,
							  "%s%" PRIu32 "-1-1", domain ? "," : "", domain);
	}
	assert_int_equal(gtids.count, BK_BINLOG_DOMAINS_MAX);
	before = gtids;
	gtid = (BkGtid){.domain = BK_BINLOG_DOMAINS_MAX, .server = 1, .seq = 1};
	assert_false(bk_gtid_state_set(&gtids, &gtid, &err));
	assert_int_equal(err.code, BK_ERR_FORMAT);
	assert_error_contains(&err, "GTID 64-1-1 is of a GTID domain past the 64"
								" that bk handles");
	assert_memory_equal(&gtids, &before, sizeof(gtids));
	/* The largest domain number too. */
	gtid = (BkGtid){.domain = UINT32_MAX, .server = 1, .seq = 1};
	assert_false(bk_gtid_state_set(&gtids, &gtid, &err));
	assert_memory_equal(&gtids, &before, sizeof(gtids));
	gtid = (BkGtid){.domain = 7, .server = 2, .seq = 9};
	assert_true(bk_gtid_state_set(&gtids, &gtid, &err));
	assert_true(gtids.gtids[7].server == 2 && gtids.gtids[7].seq == 9);

	len = make_gtid(event, 4, BK_BINLOG_DOMAINS_MAX, 1, 1);
	assert_false(bk_gtid_state_apply(&gtids, event, len, &err));
	assert_error_contains(&err, "past the 64 that bk handles");
	len = make_gtid(event, 4, 3, 1, 2);
	assert_true(bk_gtid_state_apply(&gtids, event, len, &err));

	assert_true(bk_gtid_state_parse(text, &gtids, &err));
	assert_int_equal(gtids.count, BK_BINLOG_DOMAINS_MAX);
	snprintf(text + used, sizeof(text) - used, ",%d-1-1",
			 BK_BINLOG_DOMAINS_MAX);
	assert_false(bk_gtid_state_parse(text, &gtids, &err));
	assert_int_equal(err.code, BK_ERR_USAGE);
	assert_error_contains(&err, "past the 64 that bk handles");
	(void) state;
}

/*
 * A file's GTID list against what the file before reached: every server's
 * last GTID per domain, so a missing transaction shows even when another
 * server's entry of its domain is newer or higher.
 */
static void
test_gtid_list_follows(void **state)
{
	uint8_t list[4 + 3 * 16];
	uint8_t list_event[128];
	size_t len;
	BkGtidList reached, listed;
	BkGtid gtid;
	BkGtidState reached_state = {0}, listed_state = {0};
	char differs[256];
	BkError err;

	/* 000001 starts with 0-1-10, 0-2-5 and 1-1-3. */
	put_le32(list, 3);
	put_le32(list + 4, 0), put_le32(list + 8, 2), put_le64(list + 12, 5);
	put_le32(list + 20, 1), put_le32(list + 24, 1), put_le64(list + 28, 3);
	put_le32(list + 36, 0), put_le32(list + 40, 1), put_le64(list + 44, 10);
	len = make_event(list_event, BK_BINLOG_GTID_LIST_EVENT, 1, 4, list,
					 sizeof(list));
	assert_true(bk_gtid_list_read(&reached, list_event, len, &err));
	assert_int_equal(reached.count, 3);
	assert_true(reached.gtids[0].server == 1 && reached.gtids[1].seq == 5);
	assert_true(
		bk_gtid_list_follows(&reached, &reached, differs, sizeof(differs)));
	assert_string_equal(differs, "");

	/* Its file logged 0-1-11, then 0-2-12; 000002's list says so. */
	listed = reached;
	gtid = (BkGtid){.domain = 0, .server = 1, .seq = 11};
	assert_true(bk_gtid_list_note(&listed, &gtid, &err));
	gtid = (BkGtid){.domain = 0, .server = 2, .seq = 12};
	assert_true(bk_gtid_list_note(&listed, &gtid, &err));
	assert_int_equal(listed.count, 3);

	/*
	 * The archive lost 0-1-11: server 2's entry matches, server 1's does
	 * not, though domain 0's newest GTID does.
	 */
	gtid = (BkGtid){.domain = 0, .server = 2, .seq = 12};
	assert_true(bk_gtid_list_note(&reached, &gtid, &err));
	assert_false(
		bk_gtid_list_follows(&reached, &listed, differs, sizeof(differs)));
	assert_string_equal(differs, "0-1-11 (reached 0-1-10)");

	/* A server the archive never saw in the domain, and the reverse. */
	gtid = (BkGtid){.domain = 0, .server = 1, .seq = 11};
	assert_true(bk_gtid_list_note(&reached, &gtid, &err));
	assert_true(
		bk_gtid_list_follows(&reached, &listed, differs, sizeof(differs)));
	gtid = (BkGtid){.domain = 1, .server = 7, .seq = 4};
	assert_true(bk_gtid_list_note(&listed, &gtid, &err));
	assert_false(
		bk_gtid_list_follows(&reached, &listed, differs, sizeof(differs)));
	assert_string_equal(differs, "1-7-4 (reached nothing of server 7)");
	assert_false(
		bk_gtid_list_follows(&listed, &reached, differs, sizeof(differs)));
	assert_string_equal(differs, "nothing of server 7 in domain 1"
								 " (reached 1-7-4)");

	/* A domain dropped (DELETE_DOMAIN_ID) is not a transaction missing. */
	listed = reached;
	listed.count = 2; /* domain 0 only */
	assert_true(
		bk_gtid_list_follows(&reached, &listed, differs, sizeof(differs)));

	/* The agent's per-domain form. */
	gtid = (BkGtid){.domain = 0, .server = 1, .seq = 11};
	assert_true(bk_gtid_state_set(&reached_state, &gtid, &err));
	gtid = (BkGtid){.domain = 1, .server = 1, .seq = 3};
	assert_true(bk_gtid_state_set(&reached_state, &gtid, &err));
	listed_state = reached_state;
	assert_true(bk_gtid_state_follows(&reached_state, &listed_state));
	listed_state.count = 1;
	assert_true(bk_gtid_state_follows(&reached_state, &listed_state));
	listed_state.gtids[0].server = 2;
	assert_false(bk_gtid_state_follows(&reached_state, &listed_state));
	listed_state = reached_state;
	listed_state.gtids[1].seq = 4;
	assert_false(bk_gtid_state_follows(&reached_state, &listed_state));
	/* After a RESET MASTER: a list far behind what was archived. */
	listed_state.gtids[1].seq = 1;
	assert_false(bk_gtid_state_follows(&reached_state, &listed_state));
}

/*
 * The full list as text (the agent's gtid-list= metadata): a domain with
 * several servers round trips, sorted; a server named twice in one domain
 * is refused, as is text too long for the buffer.
 */
static void
test_gtid_list_text(void **state)
{
	BkGtidList list, parsed;
	char text[64];
	char small[8];
	BkError err;

	assert_true(bk_gtid_list_parse(" 1-1-3,0-2-5, 0-1-10", &list, &err));
	assert_int_equal(list.count, 3);
	assert_true(bk_gtid_list_format(&list, text, sizeof(text)));
	assert_string_equal(text, "0-1-10,0-2-5,1-1-3");
	assert_true(bk_gtid_list_parse(text, &parsed, &err));
	assert_memory_equal(parsed.gtids, list.gtids,
						(size_t) list.count * sizeof(BkGtid));
	assert_false(bk_gtid_list_format(&list, small, sizeof(small)));

	assert_true(bk_gtid_list_parse("", &parsed, &err));
	assert_int_equal(parsed.count, 0);
	assert_true(bk_gtid_list_format(&parsed, text, sizeof(text)));
	assert_string_equal(text, "");
	assert_false(bk_gtid_list_parse("0-1-10,0-1-11", &parsed, &err));
	assert_error_contains(&err, "server 1 of domain 0 twice");
	assert_false(bk_gtid_list_parse("0-1-x", &parsed, &err));
	assert_error_contains(&err, "is not a GTID");
}

static void
test_names(void **state)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	char file[BK_BINLOG_FILE_NAME_MAX + 1];
	uint64_t start, end;

	assert_true(bk_binlog_range_name("mariadb-bin.000042", 0, 16384, name,
									 sizeof(name)));
	assert_string_equal(name, "mariadb-bin.000042/0000000000-0000016384");
	assert_true(bk_object_name_valid(name, strlen(name)));
	assert_true(bk_binlog_range_parse(name, file, sizeof(file), &start, &end));
	assert_string_equal(file, "mariadb-bin.000042");
	assert_true(start == 0 && end == 16384);

	assert_false(
		bk_binlog_range_name("mariadb-bin.000042", 10, 10, name, sizeof(name)));
	assert_false(bk_binlog_range_name("../x.1", 0, 1, name, sizeof(name)));
	assert_false(bk_binlog_range_name("nodigits", 0, 1, name, sizeof(name)));
	assert_false(bk_binlog_range_parse("mariadb-bin.000042/0000000004", file,
									   sizeof(file), &start, &end));
	assert_false(
		bk_binlog_range_parse("mariadb-bin.000042/0000000009-0000000004", file,
							  sizeof(file), &start, &end));
	assert_false(bk_binlog_range_parse("x/0000000000-00000000a4", file,
									   sizeof(file), &start, &end));

	assert_true(bk_binlog_file_compare("b.000009", "b.000010") < 0);
	assert_true(bk_binlog_file_compare("b.999999", "b.1000000") < 0);
	assert_int_equal(bk_binlog_file_compare("b.000010", "b.000010"), 0);
}

/*
 * make_query
 *		A Query event as MariaDB lays it out: thread id, exec time, db
 *		length, error code, status variables length, status variables,
 *		db and NUL, then the text.
 */
static size_t
make_query(uint8_t *out, uint64_t offset, const char *db, const char *text)
{
	uint8_t body[256];
	size_t db_len = strlen(db), text_len = strlen(text);
	size_t used = 0;

	memset(body, 0, 13);
	body[8] = (uint8_t) db_len;
	body[11] = 3; /* three bytes of status variables */
	used = 13;
	memcpy(body + used, "\x00\x00\x00", 3);
	used += 3;
	memcpy(body + used, db, db_len + 1);
	used += db_len + 1;
	memcpy(body + used, text, text_len);
	used += text_len;
	return make_event(out, BK_BINLOG_QUERY_EVENT, 1, offset, body, used);
}

static size_t
make_standalone_gtid(uint8_t *out, uint64_t offset, uint64_t seq)
{
	size_t len = make_gtid(out, offset, 0, 1, seq);
	uLong crc;

	/* Flag 1: standalone (DDL), so the one Query that follows ends it. */
	out[BK_BINLOG_HEADER_LEN + 12] = 1;
	crc = crc32(crc32(0L, Z_NULL, 0), out, (uInt) (len - 4));
	put_le32(out + len - 4, (uint32_t) crc);
	return len;
}

/* Feed one event; the end flag it reports. */
static bool
feed(BkBinlogTxn *txn, const uint8_t *event, size_t len)
{
	BkError err;
	bool ended = true;

	assert_true(bk_binlog_txn_feed(txn, event, len, BK_BINLOG_CHECKSUM_CRC32,
								   &ended, &err));
	return ended;
}

/*
 * test_transactions
 *		Ends: XID; COMMIT and ROLLBACK queries (not BEGIN, not ROLLBACK TO
 *		SAVEPOINT); the one statement of a standalone group; XA PREPARE and
 *		XA COMMIT.  An end outside a group is none.
 */
static void
test_transactions(void **state)
{
	uint8_t buf[1024];
	BkBinlogTxn txn = {0};
	size_t len;

	len = make_query(buf, 4, "db", "COMMIT");
	assert_false(feed(&txn, buf, len)); /* no GTID before it */

	len = make_gtid(buf, 100, 0, 1, 41);
	assert_false(feed(&txn, buf, len));
	len = make_query(buf, 200, "db", "BEGIN");
	assert_false(feed(&txn, buf, len));
	len = make_query(buf, 300, "db", "ROLLBACK TO `sp1`");
	assert_false(feed(&txn, buf, len));
	len = make_event(buf, BK_BINLOG_XID_EVENT, 1, 400,
					 (const uint8_t *) "12345678", 8);
	assert_true(feed(&txn, buf, len));
	assert_int_equal(txn.gtid.seq, 41);
	assert_false(feed(&txn, buf, len)); /* a second XID: not in a group */

	len = make_gtid(buf, 500, 2, 7, 42);
	feed(&txn, buf, len);
	len = make_query(buf, 600, "", "COMMIT");
	assert_true(feed(&txn, buf, len));
	assert_int_equal(txn.gtid.domain, 2);
	assert_int_equal(txn.gtid.server, 7);

	len = make_gtid(buf, 700, 0, 1, 43);
	feed(&txn, buf, len);
	len = make_query(buf, 800, "", "ROLLBACK");
	assert_true(feed(&txn, buf, len));

	len = make_standalone_gtid(buf, 900, 44);
	feed(&txn, buf, len);
	len = make_query(buf, 1000, "db", "CREATE TABLE t (a INT)");
	assert_true(feed(&txn, buf, len));
	assert_int_equal(txn.gtid.seq, 44);

	len = make_gtid(buf, 1100, 0, 1, 45);
	feed(&txn, buf, len);
	len = make_event(buf, BK_BINLOG_XA_PREPARE_EVENT, 1, 1200,
					 (const uint8_t *) "xa", 2);
	assert_true(feed(&txn, buf, len));
	len = make_gtid(buf, 1300, 0, 1, 46);
	feed(&txn, buf, len);
	len = make_query(buf, 1400, "", "XA COMMIT X'31',X'',1");
	assert_true(feed(&txn, buf, len));
}

/*
 * restamp
 *		Give a built event another timestamp and, for a Query event, an
 *		exec_time; the CRC-32 follows.
 */
static void
restamp(uint8_t *event, size_t len, uint32_t stamp, uint32_t exec_time)
{
	uLong crc;

	put_le32(event, stamp);
	if (event[4] == BK_BINLOG_QUERY_EVENT ||
		event[4] == BK_BINLOG_QUERY_COMPRESSED_EVENT)
		put_le32(event + BK_BINLOG_HEADER_LEN + 4, exec_time);
	crc = crc32(crc32(0L, Z_NULL, 0), event, (uInt) (len - 4));
	put_le32(event + len - 4, (uint32_t) crc);
}

/*
 * test_transaction_end_time
 *		Events are stamped when their statement started; a Query event is
 *		written when it ended, exec_time later.  A group's end is the latest
 *		of these: a DDL's or a COMMIT statement's end, an XID event's stamp
 *		(the start of the statement that committed), or a statement-based
 *		statement's end before it, whichever is latest.
 */
static void
test_transaction_end_time(void **state)
{
	uint8_t buf[1024];
	BkBinlogTxn txn = {0};
	size_t len;

	/* ALTER TABLE from 100 to 108 */
	len = make_standalone_gtid(buf, 4, 1);
	restamp(buf, len, 100, 0);
	feed(&txn, buf, len);
	len = make_query(buf, 100, "db", "ALTER TABLE t ADD c INT");
	restamp(buf, len, 100, 8);
	assert_true(feed(&txn, buf, len));
	assert_int_equal(txn.end_time, 108);

	/* Row-based, committed by an XID event stamped 200. */
	len = make_gtid(buf, 200, 0, 1, 2);
	restamp(buf, len, 190, 0);
	feed(&txn, buf, len);
	len = make_event(buf, BK_BINLOG_XID_EVENT, 1, 300,
					 (const uint8_t *) "12345678", 8);
	restamp(buf, len, 200, 0);
	assert_true(feed(&txn, buf, len));
	assert_int_equal(txn.end_time, 200);

	/* Statement-based DELETE from 300 to 309, XID stamped 300. */
	len = make_gtid(buf, 400, 0, 1, 3);
	restamp(buf, len, 300, 0);
	feed(&txn, buf, len);
	len = make_query(buf, 500, "db", "DELETE FROM t");
	restamp(buf, len, 300, 9);
	assert_false(feed(&txn, buf, len));
	len = make_event(buf, BK_BINLOG_XID_EVENT, 1, 600,
					 (const uint8_t *) "12345678", 8);
	restamp(buf, len, 300, 0);
	assert_true(feed(&txn, buf, len));
	assert_int_equal(txn.end_time, 309);

	/* A COMMIT statement that took 2 seconds (a slow group commit). */
	len = make_gtid(buf, 700, 0, 1, 4);
	restamp(buf, len, 400, 0);
	feed(&txn, buf, len);
	len = make_query(buf, 800, "", "COMMIT");
	restamp(buf, len, 405, 2);
	assert_true(feed(&txn, buf, len));
	assert_int_equal(txn.end_time, 407);

	/* The next group starts afresh. */
	len = make_gtid(buf, 900, 0, 1, 5);
	restamp(buf, len, 50, 0);
	feed(&txn, buf, len);
	assert_int_equal(txn.end_time, 50);
}

/*
 * A standalone group as MariaDB 10.11.19 logged it with log_bin_compress=ON
 * (mariadb-bin.000002, offsets 500 to 831): the GTID event of 0-1-2 ("ddl")
 * and the Query_compressed event of "CREATE TABLE cz.bigddl (...)", 352
 * bytes of text in 217 (length in 2 bytes, high byte first); then a
 * Write_rows_compressed event of a MyISAM insert (offset 1178).
 */
static const uint8_t real_ddl_gtid[42] = {
	0xa6, 0x28, 0x15, 0x6b, 0xa2, 0x01, 0x00, 0x00, 0x00, 0x2a, 0x00,
	0x00, 0x00, 0x1e, 0x02, 0x00, 0x00, 0x08, 0x00, 0x02, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x29, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x6d, 0xcf, 0x4f, 0xc1,
};

static const uint8_t real_ddl_query[289] = {
	0xa6, 0x28, 0x15, 0x6b, 0xa5, 0x01, 0x00, 0x00, 0x00, 0x21, 0x01, 0x00,
	0x00, 0x3f, 0x03, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x23, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x01, 0x01, 0x00, 0x00, 0x20, 0x54, 0x00, 0x00, 0x00, 0x00, 0x06, 0x03,
	0x73, 0x74, 0x64, 0x04, 0x21, 0x00, 0x21, 0x00, 0x08, 0x00, 0x81, 0x0c,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x82, 0x01, 0x60, 0x78,
	0x9c, 0x8d, 0xcf, 0xcd, 0x4a, 0xc4, 0x30, 0x14, 0x05, 0xe0, 0x57, 0x39,
	0xbb, 0xce, 0x80, 0xc8, 0x30, 0xb8, 0x75, 0x91, 0x69, 0x33, 0x5a, 0x6c,
	0xab, 0x86, 0x2a, 0xcc, 0x2a, 0x64, 0x26, 0xd7, 0xb6, 0xd0, 0x24, 0x92,
	0xdc, 0xe2, 0xcf, 0xd3, 0x1b, 0x05, 0x17, 0x6e, 0x64, 0xe0, 0xac, 0x2e,
	0x87, 0xef, 0x72, 0x4a, 0x25, 0x45, 0x2f, 0xd1, 0x8b, 0x5d, 0x23, 0x71,
	0xfa, 0xbc, 0x3c, 0x4e, 0x83, 0xb5, 0x33, 0x56, 0x93, 0x45, 0xdd, 0xf5,
	0x78, 0x50, 0x75, 0x2b, 0xd4, 0x01, 0x77, 0xf2, 0x70, 0x01, 0xa3, 0xa3,
	0xe1, 0x91, 0xa2, 0x9e, 0x83, 0x1f, 0xf4, 0x29, 0xcc, 0x8b, 0xf3, 0xda,
	0x1b, 0x47, 0xda, 0x2f, 0xee, 0x98, 0xef, 0xc1, 0x13, 0x9e, 0x85, 0x2a,
	0x6f, 0x85, 0x5a, 0x6d, 0x37, 0x9b, 0x35, 0x2a, 0xb9, 0x17, 0x4f, 0x4d,
	0x8f, 0x22, 0x05, 0x47, 0xb0, 0xf4, 0x62, 0x96, 0x99, 0xc1, 0xf4, 0xce,
	0xc8, 0x0e, 0x15, 0x67, 0x98, 0xfc, 0x16, 0xfe, 0x33, 0x5d, 0x88, 0x7f,
	0xe1, 0xb3, 0xcc, 0x31, 0x12, 0xfd, 0xec, 0xfb, 0xc5, 0xae, 0xb6, 0x6b,
	0xc8, 0xee, 0xa6, 0xee, 0xe4, 0x75, 0xed, 0x7d, 0xa8, 0x76, 0x28, 0xef,
	0xdb, 0x56, 0xe6, 0x46, 0x61, 0xf0, 0xcd, 0xa0, 0xaa, 0x1a, 0x24, 0x36,
	0x4c, 0x8e, 0x3c, 0x23, 0x05, 0xf0, 0x68, 0x18, 0x53, 0x4e, 0xca, 0x85,
	0x61, 0x20, 0x0b, 0x93, 0xf0, 0xb8, 0x50, 0xfc, 0xc8, 0x2f, 0xdd, 0x6b,
	0xa4, 0x94, 0xc8, 0x16, 0x5f, 0x5c, 0x4d, 0x77, 0x5e, 0xbb, 0xd6, 0xd5,
	0x17,
};

static const uint8_t real_rows[52] = {
	0xa6, 0x28, 0x15, 0x6b, 0xa6, 0x01, 0x00, 0x00, 0x00, 0x34, 0x00,
	0x00, 0x00, 0xce, 0x04, 0x00, 0x00, 0x00, 0x00, 0x12, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x03, 0x81, 0x6a, 0x78, 0x9c,
	0xfb, 0xc3, 0xc8, 0xc0, 0xc0, 0x90, 0x52, 0x41, 0x07, 0x00, 0x00,
	0xd0, 0x56, 0x30, 0x42, 0x0b, 0x19, 0x80, 0xc5,
};

/*
 * make_compressed_query
 *		A Query_compressed event: a Query event's layout up to the db name,
 *		then the text as MariaDB's binlog_buf_compress writes it: 0x80 | n,
 *		the text's length in n bytes, high byte first, then a zlib stream.
 *		n of 0 takes the fewest bytes the length needs.
 */
static size_t
make_compressed_query(uint8_t *out, uint64_t offset, const char *text, int n)
{
	uint8_t body[1024];
	size_t text_len = strlen(text);
	uLongf zlen = sizeof(body) - 32;
	size_t used;

	if (n == 0)
		n = text_len > 0xffffff ? 4
			: text_len > 0xffff ? 3
			: text_len > 0xff   ? 2
								: 1;
	memset(body, 0, 13);
	body[8] = 2; /* db "db" */
	used = 13;
	memcpy(body + used, "db", 3);
	used += 3;
	body[used++] = (uint8_t) (0x80 | n);
	for (int idx = n - 1; idx >= 0; idx--)
		body[used++] = (uint8_t) (text_len >> (8 * idx));
	assert_int_equal(
		compress(body + used, &zlen, (const Bytef *) text, (uLong) text_len),
		Z_OK);
	used += zlen;
	return make_event(out, BK_BINLOG_QUERY_COMPRESSED_EVENT, 1, offset, body,
					  used);
}

/* Feed one event that the parser must refuse; its message. */
static const char *
feed_refused(BkBinlogTxn *txn, const uint8_t *event, size_t len, BkError *err)
{
	bool ended = true;

	assert_false(bk_binlog_txn_feed(txn, event, len, BK_BINLOG_CHECKSUM_CRC32,
									&ended, err));
	assert_false(ended);
	return err->message;
}

/*
 * test_compressed_query
 *		A Query_compressed event (log_bin_compress=ON, any statement of
 *		log_bin_compress_min_len bytes or more) is a Query event: it ends a
 *		standalone group, its exec_time counts, and its text, once
 *		decompressed, is read for COMMIT, ROLLBACK and XA COMMIT/ROLLBACK.
 *		Compressed row events end nothing.
 */
static void
test_compressed_query(void **state)
{
	uint8_t buf[1024];
	uint8_t file[512];
	char long_text[400];
	BkBinlogTxn txn = {0};
	int alg = BK_BINLOG_CHECKSUM_CRC32;
	Walked walked = {0};
	BkError err;
	size_t len;

	(void) state;
	/* The server's own events: well formed, and the DDL ends its group. */
	memcpy(file, real_ddl_gtid, sizeof(real_ddl_gtid));
	memcpy(file + sizeof(real_ddl_gtid), real_ddl_query,
		   sizeof(real_ddl_query));
	assert_true(bk_binlog_walk("mariadb-bin.000002", 500, file,
							   sizeof(real_ddl_gtid) + sizeof(real_ddl_query),
							   &alg, count_events, &walked, &err));
	assert_int_equal(walked.events, 2);
	assert_int_equal(real_ddl_query[4], BK_BINLOG_QUERY_COMPRESSED_EVENT);
	assert_false(feed(&txn, real_ddl_gtid, sizeof(real_ddl_gtid)));
	assert_true(txn.standalone);
	assert_true(feed(&txn, real_ddl_query, sizeof(real_ddl_query)));
	assert_int_equal(txn.gtid.domain, 0);
	assert_int_equal(txn.gtid.server, 1);
	assert_int_equal(txn.gtid.seq, 2);
	assert_false(txn.in_group);

	/* Its exec_time counts: a long ALTER ends when it ended. */
	memcpy(buf, real_ddl_query, sizeof(real_ddl_query));
	len = make_standalone_gtid(file, 4, 3);
	restamp(file, len, 100, 0);
	feed(&txn, file, len);
	restamp(buf, sizeof(real_ddl_query), 100, 8);
	assert_true(feed(&txn, buf, sizeof(real_ddl_query)));
	assert_int_equal(txn.end_time, 108);

	/*
	 * Row events, compressed or not, end nothing; the COMMIT (or XID)
	 * after them does.  The server's Write_rows_compressed first.
	 */
	len = make_gtid(buf, 100, 0, 1, 4);
	feed(&txn, buf, len);
	assert_int_equal(real_rows[4], BK_BINLOG_WRITE_ROWS_COMPRESSED_EVENT_V1);
	assert_false(feed(&txn, real_rows, sizeof(real_rows)));
	for (uint8_t type = BK_BINLOG_WRITE_ROWS_COMPRESSED_EVENT_V1;
		 type <= BK_BINLOG_DELETE_ROWS_COMPRESSED_EVENT; type++)
	{
		len = make_event(buf, type, 1, 200, (const uint8_t *) "rows", 4);
		assert_false(feed(&txn, buf, len));
	}
	len = make_compressed_query(buf, 300, "COMMIT", 0);
	assert_true(feed(&txn, buf, len));
	assert_int_equal(txn.gtid.seq, 4);

	/* The texts that end a group, compressed; the length in 1 to 4 bytes. */
	len = make_gtid(buf, 400, 0, 1, 5);
	feed(&txn, buf, len);
	len = make_compressed_query(buf, 500, "BEGIN", 0);
	assert_false(feed(&txn, buf, len));
	len = make_compressed_query(buf, 600, "ROLLBACK TO `sp1`", 3);
	assert_false(feed(&txn, buf, len));
	len = make_compressed_query(buf, 700, "ROLLBACK", 4);
	assert_true(feed(&txn, buf, len));
	len = make_gtid(buf, 800, 0, 1, 6);
	feed(&txn, buf, len);
	len = make_compressed_query(buf, 900, "XA COMMIT X'31',X'',1", 2);
	assert_true(feed(&txn, buf, len));
	assert_int_equal(txn.gtid.seq, 6);

	/* A statement of 300 bytes: its length in two bytes, high first. */
	memset(long_text, ' ', sizeof(long_text));
	memcpy(long_text, "XA ROLLBACK X'", 14);
	long_text[300] = '\0';
	len = make_gtid(buf, 1000, 0, 1, 7);
	feed(&txn, buf, len);
	len = make_compressed_query(buf, 1100, long_text, 0);
	assert_int_equal(buf[BK_BINLOG_HEADER_LEN + 16], 0x82);
	assert_int_equal(buf[BK_BINLOG_HEADER_LEN + 17], 300 >> 8);
	assert_int_equal(buf[BK_BINLOG_HEADER_LEN + 18], 300 & 0xff);
	assert_true(feed(&txn, buf, len));

	/*
	 * A text that does not decompress to the length it declares, or
	 * compressed another way than zlib: refused, not taken for a
	 * statement that ends nothing.
	 */
	len = make_gtid(buf, 1200, 0, 1, 8);
	feed(&txn, buf, len);
	len = make_compressed_query(buf, 1300, "COMMIT", 0);
	buf[BK_BINLOG_HEADER_LEN + 17] = 7; /* "COMMIT" is 6 bytes */
	restamp(buf, len, 1764000000, 0);
	assert_non_null(
		strstr(feed_refused(&txn, buf, len, &err), "does not decompress"));
	assert_int_equal(err.code, BK_ERR_FORMAT);
	len = make_compressed_query(buf, 1300, "COMMIT", 0);
	buf[BK_BINLOG_HEADER_LEN + 16] = 0x91; /* algorithm 1 */
	restamp(buf, len, 1764000000, 0);
	assert_non_null(
		strstr(feed_refused(&txn, buf, len, &err), "compression algorithm 1"));
}

/*
 * test_group_not_ended
 *		A GTID event while a group is open: something ended it that the
 *		parser did not see (an event type it does not know), and taking the
 *		two groups for one would put a restore's cut, its GTID state and
 *		its time in the wrong place.  Refused, naming both GTIDs; the new
 *		group is followed, for a caller that reports and goes on.  A
 *		format description is another matter: a group open when one comes
 *		was cut short by a crash of the server (which rolled it back, as do
 *		replicas: "Rolling back unfinished transaction"), or lost its tail
 *		with an archived range: it ends nothing and is dropped.
 */
static void
test_group_not_ended(void **state)
{
	uint8_t buf[1024];
	BkBinlogTxn txn = {0};
	BkError err;
	size_t len;

	(void) state;
	len = make_gtid(buf, 4, 0, 1, 50);
	feed(&txn, buf, len);
	len = make_event(buf, 19, 1, 100, (const uint8_t *) "table map", 9);
	assert_false(feed(&txn, buf, len));
	len = make_gtid(buf, 200, 0, 1, 51);
	assert_non_null(strstr(feed_refused(&txn, buf, len, &err),
						   "0-1-50 is not ended before the GTID event of"
						   " 0-1-51"));
	assert_int_equal(err.code, BK_ERR_FORMAT);
	assert_true(txn.in_group);
	assert_int_equal(txn.gtid.seq, 51);
	len = make_event(buf, BK_BINLOG_XID_EVENT, 1, 300,
					 (const uint8_t *) "12345678", 8);
	assert_true(feed(&txn, buf, len));
	assert_int_equal(txn.gtid.seq, 51);

	/* A standalone group whose statement is not there: the same. */
	len = make_standalone_gtid(buf, 400, 52);
	feed(&txn, buf, len);
	len = make_gtid(buf, 500, 0, 1, 53);
	assert_non_null(strstr(feed_refused(&txn, buf, len, &err), "0-1-52"));
	len = make_event(buf, BK_BINLOG_XID_EVENT, 1, 600,
					 (const uint8_t *) "12345678", 8);
	assert_true(feed(&txn, buf, len));

	/* A group cut short by a crash: the next file's start drops it. */
	len = make_gtid(buf, 700, 0, 1, 60);
	feed(&txn, buf, len);
	memset(buf + 100, 0, 100);
	len = make_event(buf, BK_BINLOG_FORMAT_DESCRIPTION_EVENT, 1, 4, buf + 100,
					 57 + 1);
	assert_false(feed(&txn, buf, len));
	assert_false(txn.in_group);
	len = make_gtid(buf, 300, 0, 1, 61);
	assert_false(feed(&txn, buf, len));
	len = make_event(buf, BK_BINLOG_XID_EVENT, 1, 400,
					 (const uint8_t *) "12345678", 8);
	assert_true(feed(&txn, buf, len));
	assert_int_equal(txn.gtid.seq, 61);
}

/* A GTID event with the flags given (FL_DDL 0x20, FL_STANDALONE 1). */
static size_t
make_flagged_gtid(uint8_t *out, uint64_t offset, uint64_t seq, uint8_t flags)
{
	size_t len = make_gtid(out, offset, 0, 1, seq);
	uLong crc;

	out[BK_BINLOG_HEADER_LEN + 12] = flags;
	crc = crc32(crc32(0L, Z_NULL, 0), out, (uInt) (len - 4));
	put_le32(out + len - 4, (uint32_t) crc);
	return len;
}

/*
 * test_create_table_select
 *		CREATE TABLE ... SELECT under row-based logging is one group (FL_DDL,
 *		not standalone): the CREATE TABLE statement, then its rows, then the
 *		commit; mariadb-binlog's output replays it as two transactions.  A
 *		group that created a temporary table (FL_DDL too) and wrote rows is
 *		not one, nor is a CREATE TABLE ... SELECT that wrote no row; a long
 *		compressed CREATE TABLE statement is recognised by its first words.
 */
static void
test_create_table_select(void **state)
{
	uint8_t buf[2048];
	char long_create[600];
	BkBinlogTxn txn = {0};
	size_t len;

	len = make_flagged_gtid(buf, 100, 50, 0x20);
	feed(&txn, buf, len);
	len = make_query(buf, 200, "db", "CREATE TABLE `t2` (`a` int)");
	assert_false(feed(&txn, buf, len));
	len = make_event(buf, BK_BINLOG_WRITE_ROWS_EVENT, 1, 300,
					 (const uint8_t *) "rows", 4);
	assert_false(feed(&txn, buf, len));
	len = make_event(buf, BK_BINLOG_XID_EVENT, 1, 400,
					 (const uint8_t *) "12345678", 8);
	assert_true(feed(&txn, buf, len));
	assert_true(txn.ddl);
	assert_true(txn.table_created_with_rows);

	/* A temporary table in a transaction that wrote rows. */
	len = make_flagged_gtid(buf, 500, 51, 0x20);
	feed(&txn, buf, len);
	len = make_query(buf, 600, "db", "BEGIN");
	feed(&txn, buf, len);
	len = make_query(buf, 700, "db", "CREATE TEMPORARY TABLE tmp (a INT)");
	feed(&txn, buf, len);
	len = make_event(buf, BK_BINLOG_WRITE_ROWS_EVENT, 1, 800,
					 (const uint8_t *) "rows", 4);
	feed(&txn, buf, len);
	len = make_query(buf, 900, "db", "COMMIT");
	assert_true(feed(&txn, buf, len));
	assert_true(txn.ddl);
	assert_false(txn.table_created_with_rows);

	/* CREATE TABLE ... SELECT of no row. */
	len = make_flagged_gtid(buf, 1000, 52, 0x20);
	feed(&txn, buf, len);
	len = make_query(buf, 1100, "db", "CREATE OR REPLACE TABLE t3 (a INT)");
	feed(&txn, buf, len);
	len = make_query(buf, 1200, "db", "COMMIT");
	assert_true(feed(&txn, buf, len));
	assert_false(txn.table_created_with_rows);

	/* Compressed, too long to decompress whole. */
	snprintf(long_create, sizeof(long_create), "  create\ttable `t4` (%*s)",
			 540, "a INT");
	len = make_flagged_gtid(buf, 1300, 53, 0x20);
	feed(&txn, buf, len);
	len = make_compressed_query(buf, 1400, long_create, 0);
	assert_false(feed(&txn, buf, len));
	len = make_event(buf, BK_BINLOG_WRITE_ROWS_COMPRESSED_EVENT, 1, 1500,
					 (const uint8_t *) "rows", 4);
	feed(&txn, buf, len);
	len = make_event(buf, BK_BINLOG_XID_EVENT, 1, 1600,
					 (const uint8_t *) "12345678", 8);
	assert_true(feed(&txn, buf, len));
	assert_true(txn.table_created_with_rows);

	/* A standalone DDL group. */
	len = make_flagged_gtid(buf, 1700, 54, 0x21);
	feed(&txn, buf, len);
	len = make_query(buf, 1800, "db", "CREATE TABLE t5 (a INT)");
	assert_true(feed(&txn, buf, len));
	assert_false(txn.table_created_with_rows);
}

/*
 * make_rotate
 *		A ROTATE as the server sends it: artificial (timestamp 0, next_pos
 *		0, LOG_EVENT_ARTIFICIAL_F) or the file's own; with or without a
 *		CRC-32.  Returns its length.
 */
static size_t
make_rotate(uint8_t *out, uint32_t server, bool artificial, uint64_t pos,
			const char *name, bool with_crc, uint64_t offset)
{
	size_t name_len = strlen(name);
	size_t len = BK_BINLOG_HEADER_LEN + 8 + name_len +
				 (with_crc ? BK_BINLOG_CHECKSUM_LEN : 0);

	put_le32(out, artificial ? 0 : 1764000000);
	out[4] = BK_BINLOG_ROTATE_EVENT;
	put_le32(out + 5, server);
	put_le32(out + 9, (uint32_t) len);
	put_le32(out + 13, artificial ? 0 : (uint32_t) (offset + len));
	out[17] = artificial ? BK_BINLOG_F_ARTIFICIAL : 0;
	out[18] = 0;
	put_le64(out + BK_BINLOG_HEADER_LEN, pos);
	memcpy(out + BK_BINLOG_HEADER_LEN + 8, name, name_len);
	if (with_crc)
		put_le32(out + len - 4,
				 (uint32_t) crc32(crc32(0L, Z_NULL, 0), out, (uInt) (len - 4)));
	return len;
}

static void
test_rotate(void **state)
{
	/*
	 * Server ids whose artificial ROTATE of "mariadb-bin.000042" at 4 has
	 * a CRC-32 made of bytes a file name may hold, ending the name in
	 * digits: "4074" and "y..2".  About one made-up ROTATE in 60000 is
	 * like this: the name with its checksum is still a valid name.
	 */
	static const uint32_t servers[] = {10022, 61022, 1};
	uint8_t event[512];
	char name[BK_BINLOG_FILE_NAME_MAX + 1];
	char long_name[BK_BINLOG_FILE_NAME_MAX + 2];
	uint64_t pos;
	size_t len;
	BkError err;

	(void) state;
	for (size_t idx = 0; idx < sizeof(servers) / sizeof(servers[0]); idx++)
	{
		/* Artificial, with a checksum: the CRC is not part of the name. */
		len = make_rotate(event, servers[idx], true, 4, "mariadb-bin.000042",
						  true, 0);
		assert_true(bk_binlog_rotate_read(event, len, -1, &pos, name,
										  sizeof(name), &err));
		assert_string_equal(name, "mariadb-bin.000042");
		assert_int_equal(pos, 4);

		/* Artificial, without one: the whole body after the position. */
		len = make_rotate(event, servers[idx], true, 1234567,
						  "mariadb-bin.000042", false, 0);
		assert_true(bk_binlog_rotate_read(event, len, -1, &pos, name,
										  sizeof(name), &err));
		assert_string_equal(name, "mariadb-bin.000042");
		assert_int_equal(pos, 1234567);
	}

	/* The file's own ROTATE: the stream's checksum setting decides. */
	len = make_rotate(event, 10022, false, 4, "mariadb-bin.000043", true, 900);
	assert_true(bk_binlog_rotate_read(event, len, BK_BINLOG_CHECKSUM_CRC32,
									  &pos, name, sizeof(name), &err));
	assert_string_equal(name, "mariadb-bin.000043");
	len = make_rotate(event, 10022, false, 4, "mariadb-bin.000043", false, 900);
	assert_true(bk_binlog_rotate_read(event, len, BK_BINLOG_CHECKSUM_OFF, &pos,
									  name, sizeof(name), &err));
	assert_string_equal(name, "mariadb-bin.000043");

	/* A body shorter than the position, a name too long: refused. */
	len = make_rotate(event, 1, true, 4, "", false, 0);
	assert_false(bk_binlog_rotate_read(event, len - 1, -1, &pos, name,
									   sizeof(name), &err));
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	len = make_rotate(event, 1, true, 4, long_name, false, 0);
	assert_false(
		bk_binlog_rotate_read(event, len, -1, &pos, name, sizeof(name), &err));
	len = make_rotate(event, 1, false, 4, long_name, true, 900);
	assert_false(bk_binlog_rotate_read(event, len, BK_BINLOG_CHECKSUM_CRC32,
									   &pos, name, sizeof(name), &err));
}

/*
 * Where the stream stands against where the server said its binlog ended
 * (probe_reached): a later file is past any offset of an earlier one, and
 * the files order by number, not as text.
 */
static void
test_position_compare(void **state)
{
	(void) state;
	assert_int_equal(
		bk_binlog_position_compare("b.000001", 330, "b.000001", 330), 0);
	assert_true(bk_binlog_position_compare("b.000001", 329, "b.000001", 330) <
				0);
	assert_true(bk_binlog_position_compare("b.000001", 331, "b.000001", 330) >
				0);
	assert_true(
		bk_binlog_position_compare("b.000002", 4, "b.000001", 1073741824) > 0);
	assert_true(bk_binlog_position_compare("b.999999", 9000, "b.1000000", 4) <
				0);
}

/*
 * The server's clock as UNIX_TIMESTAMP(NOW(6)) prints it, in milliseconds
 * rounded down: rounded up, complete-until would claim up to a millisecond
 * that had not passed when the server read its binlog's end.
 */
static void
test_unix_ms_parse(void **state)
{
	int64_t ms = -1;

	(void) state;
	assert_true(bk_binlog_unix_ms_parse("1764000000.123999", &ms));
	assert_int_equal(ms, (int64_t) 1764000000 * 1000 + 123);
	assert_true(bk_binlog_unix_ms_parse("1764000000.5", &ms));
	assert_int_equal(ms, (int64_t) 1764000000 * 1000 + 500);
	assert_true(bk_binlog_unix_ms_parse("1764000000", &ms));
	assert_int_equal(ms, (int64_t) 1764000000 * 1000);
	assert_true(bk_binlog_unix_ms_parse("0.000999", &ms));
	assert_int_equal(ms, 0);
	assert_false(bk_binlog_unix_ms_parse("", &ms));
	assert_false(bk_binlog_unix_ms_parse("1764000000.", &ms));
	assert_false(bk_binlog_unix_ms_parse("-1.5", &ms));
	assert_false(bk_binlog_unix_ms_parse("1764000000.1x", &ms));
	assert_false(bk_binlog_unix_ms_parse("NULL", &ms));
	assert_false(bk_binlog_unix_ms_parse("99999999999999999999", &ms));
}

/*
 * An Incident event as MariaDB 10.11 wrote it for a multi-row INSERT on a
 * MyISAM table past max_binlog_stmt_cache_size: LOST_EVENTS and its
 * message; one without a message; one cut inside its message.
 */
static void
test_incident(void **state)
{
	static const char text[] = "error writing to the binary log";
	uint8_t event[128];
	uint8_t body[64];
	size_t len;
	uint16_t number = 0;
	char message[256];
	char small[6];
	BkError err;

	body[0] = 1; /* LOST_EVENTS, little-endian */
	body[1] = 0;
	body[2] = (uint8_t) strlen(text);
	memcpy(body + 3, text, strlen(text));
	len = make_event(event, BK_BINLOG_INCIDENT_EVENT, 1, 389, body,
					 3 + strlen(text));
	assert_int_equal(len, 57); /* its length in the server's file */
	assert_true(bk_binlog_incident_read(event, len, BK_BINLOG_CHECKSUM_CRC32,
										&number, message, sizeof(message),
										&err));
	assert_int_equal(number, 1);
	assert_string_equal(message, text);
	/* Cut to the buffer given. */
	assert_true(bk_binlog_incident_read(event, len, BK_BINLOG_CHECKSUM_CRC32,
										&number, small, sizeof(small), &err));
	assert_string_equal(small, "error");

	/* The number alone. */
	len = make_event(event, BK_BINLOG_INCIDENT_EVENT, 1, 4, body, 2);
	assert_true(bk_binlog_incident_read(event, len, BK_BINLOG_CHECKSUM_CRC32,
										&number, message, sizeof(message),
										&err));
	assert_int_equal(number, 1);
	assert_string_equal(message, "");

	/* A message longer than the event. */
	len = make_event(event, BK_BINLOG_INCIDENT_EVENT, 1, 4, body, 10);
	assert_false(bk_binlog_incident_read(event, len, BK_BINLOG_CHECKSUM_CRC32,
										 &number, message, sizeof(message),
										 &err));
	assert_int_equal(err.code, BK_ERR_FORMAT);
	/* Not even the number. */
	len = make_event(event, BK_BINLOG_INCIDENT_EVENT, 1, 4, body, 1);
	assert_false(bk_binlog_incident_read(event, len, BK_BINLOG_CHECKSUM_CRC32,
										 &number, message, sizeof(message),
										 &err));
}

/* Another basename is another server's binlog, whatever the numbers. */
static void
test_file_follows_same_base(void **state)
{
	(void) state;
	assert_true(
		bk_binlog_file_follows("mariadb-bin.000003", "mariadb-bin.000004"));
	assert_false(
		bk_binlog_file_follows("mariadb-bin.000003", "mariadb-bin.000005"));
	assert_false(
		bk_binlog_file_follows("mariadb-bin.000003", "db2-bin.000004"));
	assert_false(bk_binlog_file_follows("db-bin.000003", "db2-bin.000004"));
	assert_true(
		bk_binlog_file_same_base("mariadb-bin.000003", "mariadb-bin.000017"));
	assert_false(
		bk_binlog_file_same_base("mariadb-bin.000003", "db2-bin.000003"));
	assert_false(
		bk_binlog_file_same_base("mariadb-bin.000003", "mariadb-bin2.000003"));
}

/*
 * After a range is sent, a buffer that one large event grew past twice
 * range_size goes back to range_size; an ordinary one is kept.
 */
static void
test_range_capacity_after_flush(void **state)
{
	const uint64_t range_size = 16 * 1024 * 1024;

	(void) state;

	/* A 1 GiB event doubled the buffer to 2 GiB: back to one range. */
	assert_int_equal(bk_binlog_range_capacity_after_flush(
						 (size_t) 2048 * 1024 * 1024, range_size),
					 range_size);
	/* range_size plus a small event, doubled from 64 KiB: kept. */
	assert_int_equal(
		bk_binlog_range_capacity_after_flush(32 * 1024 * 1024, range_size),
		32 * 1024 * 1024);
	assert_int_equal(
		bk_binlog_range_capacity_after_flush(64 * 1024, range_size), 64 * 1024);
	assert_int_equal(
		bk_binlog_range_capacity_after_flush(32 * 1024 * 1024 + 1, range_size),
		range_size);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_and_crc),
		cmocka_unit_test(test_walk),
		cmocka_unit_test(test_gtid_state),
		cmocka_unit_test(test_gtid_state_domains_max),
		cmocka_unit_test(test_gtid_list_follows),
		cmocka_unit_test(test_gtid_list_text),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_transactions),
		cmocka_unit_test(test_transaction_end_time),
		cmocka_unit_test(test_compressed_query),
		cmocka_unit_test(test_group_not_ended),
		cmocka_unit_test(test_create_table_select),
		cmocka_unit_test(test_rotate),
		cmocka_unit_test(test_position_compare),
		cmocka_unit_test(test_unix_ms_parse),
		cmocka_unit_test(test_incident),
		cmocka_unit_test(test_range_capacity_after_flush),
		cmocka_unit_test(test_file_follows_same_base),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
