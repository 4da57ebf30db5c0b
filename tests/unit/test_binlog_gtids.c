/*
 * test_binlog_gtids.c
 *		The agent's check of each binlog file's GTID list against what the
 *		archive reached (mysql_agent/binlog_gtids.c), fed GTID and GTID_LIST
 *		events as bytes, in stream order.  Without gtid_strict_mode a domain
 *		holds several servers whose sequence numbers are not in log order
 *		(a failover): no gap may be reported where none is, and a missing
 *		transaction must still show.  And how long a file's first range
 *		waits for the list that decides its gap mark.  And what the server's
 *		GTID state at the archive's end, asked on a resume inside a file,
 *		makes the agent do, and which file of its name the archive ends in
 *		(its creation).
 */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include "binlog_gtids.h"

/* An event without checksum (what is checked here does not read it). */
static size_t
make_event(uint8_t *out, uint8_t type, uint32_t server, const uint8_t *body,
		   size_t body_len)
{
	size_t len = BK_BINLOG_HEADER_LEN + body_len;

	memset(out, 0, BK_BINLOG_HEADER_LEN);
	put_le32(out, 1764000000);
	out[4] = type;
	put_le32(out + 5, server);
	put_le32(out + 9, (uint32_t) len);
	memcpy(out + BK_BINLOG_HEADER_LEN, body, body_len);
	return len;
}

/* A GTID event as server logs it: sequence, domain, flags. */
static size_t
make_gtid(uint8_t *out, uint32_t domain, uint32_t server, uint64_t seq)
{
	uint8_t body[13];

	put_le64(body, seq);
	put_le32(body + 8, domain);
	body[12] = 0;
	return make_event(out, BK_BINLOG_GTID_EVENT, server, body, sizeof(body));
}

/* A GTID_LIST from text ("0-1-10,0-2-5"), entries in the order given. */
static size_t
make_gtid_list(uint8_t *out, const char *text)
{
	uint8_t body[4 + 16 * 16];
	uint32_t count = 0;
	const char *p = text;

	while (*p)
	{
		unsigned int domain, server;
		unsigned long long seq;
		int used;

		assert_int_equal(
			sscanf(p, "%u-%u-%llu%n", &domain, &server, &seq, &used), 3);
		assert_true(count < 16);
		put_le32(body + 4 + count * 16, domain);
		put_le32(body + 8 + count * 16, server);
		put_le64(body + 12 + count * 16, seq);
		count++;
		p += used;
		if (*p == ',')
			p++;
	}
	put_le32(body, count);
	return make_event(out, BK_BINLOG_GTID_LIST_EVENT, 1, body, 4 + count * 16);
}

static void
feed(BinlogGtids *gtids, const uint8_t *event, size_t len)
{
	char differs[256];
	bool follows;
	BkError err;

	assert_true(binlog_gtids_event(gtids, event, len, &follows, differs,
								   sizeof(differs), &err));
	assert_true(follows);
}

static void
feed_gtid(BinlogGtids *gtids, uint32_t domain, uint32_t server, uint64_t seq)
{
	uint8_t event[64];

	feed(gtids, event, make_gtid(event, domain, server, seq));
}

/* A file's GTID list: does it follow?  differs says where not. */
static bool
feed_list(BinlogGtids *gtids, const char *text, char *differs,
		  size_t differs_len)
{
	uint8_t event[512];
	size_t len = make_gtid_list(event, text);
	bool follows;
	BkError err;

	assert_true(binlog_gtids_event(gtids, event, len, &follows, differs,
								   differs_len, &err));
	return follows;
}

static void
assert_reached(const BinlogGtids *gtids, const char *want)
{
	char text[256];

	assert_true(binlog_gtids_format(gtids, text, sizeof(text)));
	assert_string_equal(text, want);
}

/*
 * 000001 starts with 0-1-8; server 1 logs 0-1-9 and 0-1-10, then fails
 * over to server 2, whose domain 0 goes on at 0-2-5.  000002's list is
 * 0-1-10,0-2-5: it follows, though its highest sequence number (0-1-10)
 * is not the last GTID logged (0-2-5), which the per-domain comparison
 * took for a gap while it kept the highest number per domain.
 */
static void
test_failover_is_no_gap(void **state)
{
	BinlogGtids gtids;
	BkGtidState reached_state = {0}, listed_state = {0};
	uint8_t event[512];
	size_t len;
	char differs[256];
	BkError err;

	binlog_gtids_forget(&gtids);
	assert_true(feed_list(&gtids, "0-1-8", differs, sizeof(differs)));
	feed_gtid(&gtids, 0, 1, 9);
	feed_gtid(&gtids, 0, 1, 10);
	feed_gtid(&gtids, 0, 2, 5);
	assert_reached(&gtids, "0-1-10,0-2-5");
	assert_true(feed_list(&gtids, "0-1-10,0-2-5", differs, sizeof(differs)));
	assert_string_equal(differs, "");
	/* The exact comparison does not depend on the entries' order. */
	assert_true(feed_list(&gtids, "0-2-5,0-1-10", differs, sizeof(differs)));

	/*
	 * The per-domain state (gtid=, the resume check) takes each domain's
	 * last entry, where the server lists its most recent GTID: it agrees
	 * too (taking the highest sequence number, it saw a false gap).
	 */
	len = make_gtid_list(event, "0-1-8");
	assert_true(bk_gtid_state_apply(&reached_state, event, len, &err));
	for (uint64_t seq = 9; seq <= 10; seq++)
	{
		len = make_gtid(event, 0, 1, seq);
		assert_true(bk_gtid_state_apply(&reached_state, event, len, &err));
	}
	len = make_gtid(event, 0, 2, 5);
	assert_true(bk_gtid_state_apply(&reached_state, event, len, &err));
	len = make_gtid_list(event, "0-1-10,0-2-5");
	assert_true(bk_gtid_state_apply(&listed_state, event, len, &err));
	assert_true(bk_gtid_state_follows(&reached_state, &listed_state));
}

/* A format description: next_pos 4 + its length where it starts a file. */
static void
feed_fde(BinlogGtids *gtids, bool file_start)
{
	uint8_t event[128];
	uint8_t body[57] = {4};
	size_t len = make_event(event, BK_BINLOG_FORMAT_DESCRIPTION_EVENT, 1, body,
							sizeof(body));

	put_le32(event + 13,
			 file_start ? (uint32_t) (BK_BINLOG_MAGIC_LEN + len) : 0);
	feed(gtids, event, len);
}

/*
 * mariadbd killed while it wrote a large transaction to its binlog: the
 * file ends inside it (its GTID event streamed, its XID never written),
 * recovery rolls it back, and the next file's list does not name it.  The
 * agent took that for transactions missing from the archive: a gap, and
 * no restore across it until a new snapshot.  Seen on 10.11 with a 300 MB
 * INSERT ... SELECT (0-1-101914 cut, the next list 0-1-101913).
 */
static void
test_transaction_cut_by_a_crash_is_no_gap(void **state)
{
	BinlogGtids gtids;
	char differs[256];

	binlog_gtids_forget(&gtids);
	assert_true(feed_list(&gtids, "0-1-10", differs, sizeof(differs)));
	feed_gtid(&gtids, 0, 1, 11);
	binlog_gtids_txn_ended(&gtids);
	feed_gtid(&gtids, 0, 2, 1); /* a new server's first, cut too */
	binlog_gtids_txn_ended(&gtids);
	feed_gtid(&gtids, 0, 1, 12); /* cut: no end */
	/* Resumed inside the file: the same transaction goes on and ends. */
	feed_fde(&gtids, false);
	assert_reached(&gtids, "0-1-12,0-2-1");
	binlog_gtids_txn_ended(&gtids);
	feed_fde(&gtids, true);
	assert_true(feed_list(&gtids, "0-1-12,0-2-1", differs, sizeof(differs)));

	/* Cut by the crash: taken back when the next file starts. */
	feed_gtid(&gtids, 0, 1, 13);
	feed_fde(&gtids, true);
	assert_reached(&gtids, "0-1-12,0-2-1");
	assert_true(feed_list(&gtids, "0-1-12,0-2-1", differs, sizeof(differs)));
	feed_gtid(&gtids, 0, 3, 1); /* the only one of its server */
	feed_fde(&gtids, true);
	assert_true(feed_list(&gtids, "0-1-12,0-2-1", differs, sizeof(differs)));
	/* A transaction that ended is still missed when the list lacks it. */
	feed_gtid(&gtids, 0, 1, 13);
	binlog_gtids_txn_ended(&gtids);
	feed_fde(&gtids, true);
	assert_false(feed_list(&gtids, "0-1-12,0-2-1", differs, sizeof(differs)));
}

/* One event as the agent follows it: its GTIDs, then where its group ends. */
static bool
follow(BinlogGtids *gtids, BkBinlogTxn *txn, const uint8_t *event, size_t len,
	   char *differs, size_t differs_len)
{
	bool follows;
	BkError err;

	assert_true(binlog_gtids_event(gtids, event, len, &follows, differs,
								   differs_len, &err));
	binlog_gtids_follow_txn(gtids, txn, event, len, BK_BINLOG_CHECKSUM_OFF);
	return follows;
}

/* An event of type with a body of zeros (a row event, an XID, a Query). */
static void
follow_plain(BinlogGtids *gtids, BkBinlogTxn *txn, uint8_t type)
{
	uint8_t event[128];
	uint8_t body[64] = {0};
	char differs[256];

	assert_true(follow(gtids, txn, event,
					   make_event(event, type, 1, body, sizeof(body)), differs,
					   sizeof(differs)));
}

static void
follow_gtid(BinlogGtids *gtids, BkBinlogTxn *txn, uint32_t domain,
			uint32_t server, uint64_t seq, bool standalone)
{
	uint8_t event[64];
	char differs[256];
	size_t len = make_gtid(event, domain, server, seq);

	if (standalone)
		event[BK_BINLOG_HEADER_LEN + 12] = 0x01; /* FL_STANDALONE */
	assert_true(follow(gtids, txn, event, len, differs, sizeof(differs)));
}

static void
follow_fde(BinlogGtids *gtids, BkBinlogTxn *txn, bool file_start)
{
	uint8_t event[128];
	uint8_t body[57] = {4};
	size_t len = make_event(event, BK_BINLOG_FORMAT_DESCRIPTION_EVENT, 1, body,
							sizeof(body));
	char differs[256];

	put_le32(event + 13,
			 file_start ? (uint32_t) (BK_BINLOG_MAGIC_LEN + len) : 0);
	assert_true(follow(gtids, txn, event, len, differs, sizeof(differs)));
}

static bool
follow_list(BinlogGtids *gtids, BkBinlogTxn *txn, const char *text,
			char *differs, size_t differs_len)
{
	uint8_t event[512];

	return follow(gtids, txn, event, make_gtid_list(event, text), differs,
				  differs_len);
}

/*
 * A new agent resuming at the end of range (its metadata, as range_meta
 * writes it): the list it reached (gtid-list=), and the transaction the
 * range ends inside (open-gtid=...).  with_open false: as before the
 * transaction's metadata existed.
 */
static void
resume_at(const char *range_meta, bool with_open, BinlogGtids *gtids,
		  BkBinlogTxn *txn)
{
	char list[256];
	BkError err;

	memset(txn, 0, sizeof(*txn));
	binlog_gtids_forget(gtids);
	assert_true(bk_meta_get(range_meta, strlen(range_meta), "gtid-list", list,
							sizeof(list)));
	assert_true(binlog_gtids_from_text(gtids, list, &err));
	if (with_open)
		assert_true(binlog_gtids_resume_open(gtids, txn, range_meta,
											 strlen(range_meta), &err));
	/* The format description the server resends at the dump's start. */
	follow_fde(gtids, txn, false);
}

/* The metadata of a range sent now: the open transaction, the list. */
static void
range_end_meta(const BinlogGtids *gtids, const BkBinlogTxn *txn, char *meta,
			   size_t meta_len)
{
	char open[BINLOG_OPEN_META_MAX];
	char list[256];

	assert_true(binlog_gtids_open_meta(gtids, txn, open, sizeof(open)));
	assert_true(binlog_gtids_format(gtids, list, sizeof(list)));
	snprintf(meta, meta_len, "type=binlog-range%s\ngtid-list=%s", open, list);
}

/*
 * The agent stopped while it streamed a large transaction (the archive
 * ends inside it), then mariadbd killed -9 before it wrote the rest:
 * recovery rolls it back, a new file starts, and its GTID list does not
 * name it.  The agent resuming at the archive's end took the range's
 * gtid-list=, which names it, for what was reached: an ERROR, a gap no
 * restore crosses.  The range says it ends inside that transaction, and
 * the resumed agent takes it back at the next file's start, as one that
 * streamed through the crash does.  Not cut (the server went on), the
 * transaction ends after the resume and is reached.
 */
static void
test_resumed_inside_a_transaction(void **state)
{
	BinlogGtids gtids, resumed;
	BkBinlogTxn txn, resumed_txn;
	char meta[1024];
	char open[BINLOG_OPEN_META_MAX];
	char differs[256];
	BkError err;

	memset(&txn, 0, sizeof(txn));
	binlog_gtids_forget(&gtids);
	follow_fde(&gtids, &txn, true);
	assert_true(follow_list(&gtids, &txn, "0-1-10", differs, sizeof(differs)));
	assert_true(binlog_gtids_open_meta(&gtids, &txn, open, sizeof(open)));
	assert_string_equal(open, ""); /* between transactions */
	follow_gtid(&gtids, &txn, 0, 1, 11, false);
	follow_plain(&gtids, &txn, BK_BINLOG_XID_EVENT);
	follow_gtid(&gtids, &txn, 0, 1, 12, false);
	follow_plain(&gtids, &txn, 30); /* WRITE_ROWS: the range ends here */
	range_end_meta(&gtids, &txn, meta, sizeof(meta));
	assert_string_equal(meta, "type=binlog-range\nopen-gtid=0-1-12"
							  "\nopen-gtid-before=0-1-11\ngtid-list=0-1-12");

	/* Before: the next file's list taken for transactions missing. */
	resume_at(meta, false, &resumed, &resumed_txn);
	follow_fde(&resumed, &resumed_txn, true);
	assert_false(follow_list(&resumed, &resumed_txn, "0-1-11", differs,
							 sizeof(differs)));
	assert_string_equal(differs, "0-1-11 (reached 0-1-12)");

	/* Cut by the crash while the agent was down: taken back. */
	resume_at(meta, true, &resumed, &resumed_txn);
	assert_reached(&resumed, "0-1-12");
	follow_fde(&resumed, &resumed_txn, true);
	assert_reached(&resumed, "0-1-11");
	assert_true(follow_list(&resumed, &resumed_txn, "0-1-11", differs,
							sizeof(differs)));

	/* Not cut: it ends after the resume, and the next list must name it. */
	resume_at(meta, true, &resumed, &resumed_txn);
	follow_plain(&resumed, &resumed_txn, 30);
	follow_plain(&resumed, &resumed_txn, BK_BINLOG_XID_EVENT);
	follow_fde(&resumed, &resumed_txn, true);
	assert_false(follow_list(&resumed, &resumed_txn, "0-1-11", differs,
							 sizeof(differs)));
	resume_at(meta, true, &resumed, &resumed_txn);
	follow_plain(&resumed, &resumed_txn, BK_BINLOG_XID_EVENT);
	follow_fde(&resumed, &resumed_txn, true);
	assert_true(follow_list(&resumed, &resumed_txn, "0-1-12", differs,
							sizeof(differs)));

	/*
	 * A standalone one (DDL: it ends with its statement), the first of its
	 * server in the domain, the range ending right after its GTID event.
	 */
	follow_plain(&gtids, &txn, BK_BINLOG_XID_EVENT);
	follow_gtid(&gtids, &txn, 0, 2, 1, true);
	range_end_meta(&gtids, &txn, meta, sizeof(meta));
	assert_string_equal(meta, "type=binlog-range\nopen-gtid=0-2-1"
							  "\nopen-standalone=1\ngtid-list=0-1-12,0-2-1");
	resume_at(meta, true, &resumed, &resumed_txn);
	follow_plain(&resumed, &resumed_txn, BK_BINLOG_QUERY_EVENT);
	follow_fde(&resumed, &resumed_txn, true);
	assert_true(follow_list(&resumed, &resumed_txn, "0-1-12,0-2-1", differs,
							sizeof(differs)));
	resume_at(meta, true, &resumed, &resumed_txn);
	follow_fde(&resumed, &resumed_txn, true);
	assert_true(follow_list(&resumed, &resumed_txn, "0-1-12", differs,
							sizeof(differs)));

	/* Metadata without it, or that bk cannot read: nothing changes. */
	resume_at("type=binlog-range\ngtid-list=0-1-12", true, &resumed,
			  &resumed_txn);
	assert_false(resumed.open);
	assert_false(resumed_txn.in_group);
	assert_false(binlog_gtids_resume_open(&resumed, &resumed_txn,
										  "open-gtid=0-1", 13, &err));
	assert_false(binlog_gtids_resume_open(
		&resumed, &resumed_txn, "open-gtid=0-1-5\nopen-gtid-before=0-2-4", 39,
		&err));
	assert_non_null(strstr(err.message, "open-gtid-before"));
	assert_false(resumed.open);
	assert_false(resumed_txn.in_group);
}

/*
 * The same failover with 0-1-10 never streamed (the agent down, the
 * server's binlog reset and written again, or a state changed by hand):
 * server 2's entry matches, server 1's does not, and that is a gap.
 */
static void
test_missing_transaction_is_a_gap(void **state)
{
	BinlogGtids gtids;
	char differs[256];

	binlog_gtids_forget(&gtids);
	assert_true(feed_list(&gtids, "0-1-8", differs, sizeof(differs)));
	feed_gtid(&gtids, 0, 1, 9);
	feed_gtid(&gtids, 0, 2, 5);
	assert_false(feed_list(&gtids, "0-1-10,0-2-5", differs, sizeof(differs)));
	assert_string_equal(differs, "0-1-10 (reached 0-1-9)");
	/* The server's account is the new base. */
	assert_reached(&gtids, "0-1-10,0-2-5");
	assert_true(feed_list(&gtids, "0-1-10,0-2-5", differs, sizeof(differs)));

	/* A RESET MASTER: the new history's list, far behind. */
	assert_false(feed_list(&gtids, "0-1-3", differs, sizeof(differs)));
	assert_string_equal(differs, "0-1-3 (reached 0-1-10), nothing of server"
								 " 2 in domain 0 (reached 0-2-5)");

	/* A domain only the server logged in, and one it deleted. */
	feed_gtid(&gtids, 1, 1, 7);
	assert_false(feed_list(&gtids, "0-1-3,2-4-1", differs, sizeof(differs)));
	assert_string_equal(differs, "2-4-1 (reached nothing of server 4)");
	assert_true(feed_list(&gtids, "2-4-1", differs, sizeof(differs)));
}

/*
 * Nothing known (a fresh archive, or after a purge gap): the first list is
 * the base, unchecked, and GTIDs before it count for nothing.
 */
static void
test_nothing_known(void **state)
{
	BinlogGtids gtids;
	BkGtidState empty = {0};
	char differs[256];

	binlog_gtids_forget(&gtids);
	feed_gtid(&gtids, 0, 1, 3);
	assert_true(feed_list(&gtids, "0-1-10,0-2-5", differs, sizeof(differs)));
	assert_int_equal(gtids.known, BINLOG_GTIDS_EXACT);
	assert_reached(&gtids, "0-1-10,0-2-5");

	/* An archive whose newest range had no GTID: nothing known. */
	binlog_gtids_from_newest(&gtids, &empty);
	assert_int_equal(gtids.known, BINLOG_GTIDS_UNKNOWN);
	assert_true(feed_list(&gtids, "0-1-3", differs, sizeof(differs)));

	/* An empty list is known, and a base: a missed first GTID shows. */
	binlog_gtids_forget(&gtids);
	assert_true(feed_list(&gtids, "", differs, sizeof(differs)));
	assert_false(feed_list(&gtids, "0-1-1", differs, sizeof(differs)));
	assert_string_equal(differs, "0-1-1 (reached nothing of server 1)");
}

/*
 * Resumed knowing only each domain's newest GTID (the gtid= of the
 * archive's newest range): whichever server's entry that is, a list that
 * follows is not a gap; a known entry behind, or a domain not known, is.
 */
static void
test_resumed_from_newest(void **state)
{
	BinlogGtids gtids;
	BkGtidState newest;
	char differs[256];
	BkError err;

	/* The highest sequence number of 0-1-10,0-2-5 (a list just read). */
	assert_true(bk_gtid_state_parse("0-1-10,1-1-3", &newest, &err));
	binlog_gtids_from_newest(&gtids, &newest);
	assert_int_equal(gtids.known, BINLOG_GTIDS_NEWEST);
	assert_true(
		feed_list(&gtids, "0-1-10,0-2-5,1-1-3", differs, sizeof(differs)));
	assert_int_equal(gtids.known, BINLOG_GTIDS_EXACT);
	assert_reached(&gtids, "0-1-10,0-2-5,1-1-3");

	/* The last GTID logged (a GTID event), then more of the file. */
	assert_true(bk_gtid_state_parse("0-2-5", &newest, &err));
	binlog_gtids_from_newest(&gtids, &newest);
	feed_gtid(&gtids, 0, 3, 1);
	assert_true(
		feed_list(&gtids, "0-2-5,0-1-10,0-3-1", differs, sizeof(differs)));

	/* Server 2 logged 0-2-6, which was not streamed. */
	binlog_gtids_from_newest(&gtids, &newest);
	assert_false(feed_list(&gtids, "0-1-10,0-2-6", differs, sizeof(differs)));
	assert_string_equal(differs, "0-2-6 (reached 0-2-5)");

	/* A domain the archive never reached. */
	binlog_gtids_from_newest(&gtids, &newest);
	assert_false(
		feed_list(&gtids, "0-1-10,0-2-5,1-4-2", differs, sizeof(differs)));
	assert_string_equal(differs, "1-4-2 (reached nothing of server 4)");

	/* Server 2 absent from its own domain's list: not the same binlog. */
	binlog_gtids_from_newest(&gtids, &newest);
	assert_false(feed_list(&gtids, "0-1-12", differs, sizeof(differs)));
	assert_string_equal(differs,
						"nothing of server 2 in domain 0 (reached 0-2-5)");

	/* A domain known and not listed: deleted (DELETE_DOMAIN_ID). */
	assert_true(bk_gtid_state_parse("0-2-5,1-1-3", &newest, &err));
	binlog_gtids_from_newest(&gtids, &newest);
	assert_true(feed_list(&gtids, "0-1-10,0-2-5", differs, sizeof(differs)));
}

/*
 * Resumed from a range's gtid-list=: exact again.  After the failover the
 * newest GTID of domain 0 is 0-2-5; server 1 then logged 0-1-11, which
 * was not streamed.  Knowing only 0-2-5 cannot tell; the list can.
 */
static void
test_resumed_from_text(void **state)
{
	BinlogGtids gtids, resumed;
	BkGtidState newest;
	char text[256];
	char differs[256];
	BkError err;

	binlog_gtids_forget(&gtids);
	assert_true(feed_list(&gtids, "0-1-8", differs, sizeof(differs)));
	feed_gtid(&gtids, 0, 1, 10);
	feed_gtid(&gtids, 0, 2, 5);
	assert_true(binlog_gtids_format(&gtids, text, sizeof(text)));
	assert_string_equal(text, "0-1-10,0-2-5");

	assert_true(bk_gtid_state_parse("0-2-5", &newest, &err));
	binlog_gtids_from_newest(&resumed, &newest);
	assert_true(feed_list(&resumed, "0-1-11,0-2-5", differs, sizeof(differs)));

	binlog_gtids_from_newest(&resumed, &newest);
	assert_true(binlog_gtids_from_text(&resumed, text, &err));
	assert_int_equal(resumed.known, BINLOG_GTIDS_EXACT);
	assert_false(feed_list(&resumed, "0-1-11,0-2-5", differs, sizeof(differs)));
	assert_string_equal(differs, "0-1-11 (reached 0-1-10)");
	assert_true(binlog_gtids_from_text(&resumed, text, &err));
	assert_true(feed_list(&resumed, "0-2-5,0-1-10", differs, sizeof(differs)));

	/* Text bk cannot read leaves what was known. */
	binlog_gtids_from_newest(&resumed, &newest);
	assert_false(binlog_gtids_from_text(&resumed, "0-1-10,0-1", &err));
	assert_int_equal(resumed.known, BINLOG_GTIDS_NEWEST);
	assert_reached(&resumed, "0-2-5");
}

/* An event of the file at offset (next_pos set), its body zeros. */
static size_t
make_file_event(uint8_t *out, uint8_t type, uint64_t offset, size_t body_len)
{
	uint8_t body[128] = {0};
	size_t len = make_event(out, type, 1, body, body_len);

	put_le32(out + 13, (uint32_t) (offset + len));
	return len;
}

/*
 * A file's first range waits for the file's GTID list, which decides its
 * gap mark: due from the format description at offset 4 until the list
 * (the start of encryption may come between), or any other event, or the
 * file's end, says none is coming.
 */
static void
test_list_due(void **state)
{
	BinlogGtids gtids;
	uint8_t event[512];
	size_t len;
	char differs[256];

	binlog_gtids_forget(&gtids);
	assert_false(binlog_gtids_list_due(&gtids));
	len = make_file_event(event, BK_BINLOG_FORMAT_DESCRIPTION_EVENT, 4, 100);
	feed(&gtids, event, len);
	assert_true(binlog_gtids_list_due(&gtids));
	len = make_file_event(event, BK_BINLOG_START_ENCRYPTION_EVENT, 4 + 119, 17);
	feed(&gtids, event, len);
	assert_true(binlog_gtids_list_due(&gtids));
	assert_true(feed_list(&gtids, "0-1-10", differs, sizeof(differs)));
	assert_false(binlog_gtids_list_due(&gtids));

	/* A file without a list: the next event says so. */
	len = make_file_event(event, BK_BINLOG_FORMAT_DESCRIPTION_EVENT, 4, 100);
	feed(&gtids, event, len);
	assert_true(binlog_gtids_list_due(&gtids));
	feed_gtid(&gtids, 0, 1, 11);
	assert_false(binlog_gtids_list_due(&gtids));

	/* Or its end. */
	len = make_file_event(event, BK_BINLOG_FORMAT_DESCRIPTION_EVENT, 4, 100);
	feed(&gtids, event, len);
	binlog_gtids_file_ended(&gtids);
	assert_false(binlog_gtids_list_due(&gtids));

	/* A format description elsewhere does not start a file. */
	len = make_file_event(event, BK_BINLOG_FORMAT_DESCRIPTION_EVENT, 900, 100);
	feed(&gtids, event, len);
	assert_false(binlog_gtids_list_due(&gtids));

	/* Forgetting what was reached forgets a list due too. */
	len = make_file_event(event, BK_BINLOG_FORMAT_DESCRIPTION_EVENT, 4, 100);
	feed(&gtids, event, len);
	binlog_gtids_forget(&gtids);
	assert_false(binlog_gtids_list_due(&gtids));
}

/*
 * Resuming inside a file: what the server's BINLOG_GTID_POS at the
 * archive's end makes the agent do.  Only the server's own answers refuse
 * (a state that differs; NULL for a file it still lists, the new history
 * having no event there); a failed call (a lost connection) or a NULL for a
 * file that went meanwhile never turns into a binlog-reset.
 */
static void
test_resume_check(void **state)
{
	BkGtidState reached;
	BkError why;

	assert_true(bk_gtid_state_parse("0-1-10,1-2-3", &reached, &why));

	/* The same history: stream. */
	bk_error_clear(&why);
	assert_int_equal(
		binlog_resume_check(&reached, true, "0-1-10,1-2-3", true, &why),
		BINLOG_RESUME_FOLLOWS);
	assert_int_equal(
		binlog_resume_check(&reached, true, "1-2-3,0-1-10", true, &why),
		BINLOG_RESUME_FOLLOWS);

	/* Another history with an event there: refused, the states named. */
	assert_int_equal(binlog_resume_check(&reached, true, "0-1-4", true, &why),
					 BINLOG_RESUME_DIFFERS);
	assert_int_equal(
		binlog_resume_check(&reached, true, "0-1-10,1-2-4", true, &why),
		BINLOG_RESUME_DIFFERS);

	/*
	 * NULL for a file the server still lists after the call: no event
	 * starts there in its file of that name (another history, or a file
	 * that lost its end).
	 */
	assert_int_equal(binlog_resume_check(&reached, true, NULL, true, &why),
					 BINLOG_RESUME_UNPLACED);

	/* NULL, and the file gone meanwhile: look again, by name. */
	assert_int_equal(binlog_resume_check(&reached, true, NULL, false, &why),
					 BINLOG_RESUME_RECHECK);

	/*
	 * The call failed (a lost connection, a server restarting): no answer,
	 * whatever the other arguments hold, and never a refusal.
	 */
	assert_int_equal(binlog_resume_check(&reached, false, NULL, true, &why),
					 BINLOG_RESUME_UNCHECKED);
	assert_int_equal(binlog_resume_check(&reached, false, NULL, false, &why),
					 BINLOG_RESUME_UNCHECKED);
	assert_int_equal(binlog_resume_check(&reached, false, "0-1-4", true, &why),
					 BINLOG_RESUME_UNCHECKED);

	/* An answer bk cannot read: no answer either, and why says so. */
	bk_error_clear(&why);
	assert_int_equal(binlog_resume_check(&reached, true, "0-1", true, &why),
					 BINLOG_RESUME_UNCHECKED);
	assert_true(why.message[0] != '\0');
}

/*
 * Which file of its name: the creation of its format description (header
 * timestamp and server_id), as the server resends it at a dump's start.
 * RESET MASTER under a regular workload gives the new file the archive's
 * GTID state where the archive ends (test_resume_check: FOLLOWS); its
 * creation differs, and that refuses.  A range of an older agent does not
 * say: unchecked, as before.
 */
static void
test_file_id(void **state)
{
	uint8_t event[64];
	uint8_t body[16] = {4, 0};
	BinlogFileId archived, server, unknown = {0};
	char text[BINLOG_FILE_ID_TEXT_MAX + 1];
	BkError err;
	size_t len;

	len = make_event(event, BK_BINLOG_FORMAT_DESCRIPTION_EVENT, 7, body,
					 sizeof(body));
	assert_true(binlog_file_id_read(event, len, &archived, &err));
	assert_true(archived.known);
	assert_int_equal(archived.created, 1764000000);
	assert_int_equal(archived.server_id, 7);
	assert_true(binlog_file_id_format(&archived, text, sizeof(text)));
	assert_string_equal(text, "1764000000:7");
	assert_true(binlog_file_id_parse(text, &server));
	assert_int_equal(binlog_file_id_check(&archived, &server),
					 BINLOG_RESUME_FOLLOWS);
	/* The largest values fit the text. */
	assert_true(binlog_file_id_parse("4294967295:4294967295", &server));
	assert_true(binlog_file_id_format(&server, text, sizeof(text)));
	assert_string_equal(text, "4294967295:4294967295");

	/* Written again a second later, or by another server: another file. */
	put_le32(event, 1764000001);
	assert_true(binlog_file_id_read(event, len, &server, &err));
	assert_int_equal(binlog_file_id_check(&archived, &server),
					 BINLOG_RESUME_DIFFERS);
	put_le32(event, 1764000000);
	put_le32(event + 5, 8);
	assert_true(binlog_file_id_read(event, len, &server, &err));
	assert_int_equal(binlog_file_id_check(&archived, &server),
					 BINLOG_RESUME_DIFFERS);
	/* The server's not read: not the file archived either. */
	assert_int_equal(binlog_file_id_check(&archived, &unknown),
					 BINLOG_RESUME_DIFFERS);

	/* The archive does not say (an older agent's range): unchecked. */
	assert_int_equal(binlog_file_id_check(&unknown, &server),
					 BINLOG_RESUME_UNCHECKED);
	assert_false(binlog_file_id_format(&unknown, text, sizeof(text)));

	/* Not a format description, or not the text: nothing taken. */
	len = make_gtid(event, 0, 1, 5);
	assert_false(binlog_file_id_read(event, len, &server, &err));
	assert_false(server.known);
	assert_false(binlog_file_id_parse("", &server));
	assert_false(binlog_file_id_parse("1764000000", &server));
	assert_false(binlog_file_id_parse("1764000000:", &server));
	assert_false(binlog_file_id_parse(":7", &server));
	assert_false(binlog_file_id_parse("1764000000:7x", &server));
	assert_false(binlog_file_id_parse("-1:7", &server));
	assert_false(binlog_file_id_parse("4294967296:7", &server));
	assert_false(binlog_file_id_parse("1764000000:7:1", &server));
	assert_false(server.known);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failover_is_no_gap),
		cmocka_unit_test(test_transaction_cut_by_a_crash_is_no_gap),
		cmocka_unit_test(test_resumed_inside_a_transaction),
		cmocka_unit_test(test_missing_transaction_is_a_gap),
		cmocka_unit_test(test_nothing_known),
		cmocka_unit_test(test_resumed_from_newest),
		cmocka_unit_test(test_resumed_from_text),
		cmocka_unit_test(test_list_due),
		cmocka_unit_test(test_resume_check),
		cmocka_unit_test(test_file_id),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
