/*
 * binlog_gtids.h
 *		What the archive reached, GTID by GTID, to tell whether a new binlog
 *		file follows it.
 *
 * A file's GTID_LIST is the server's account of everything it logged before
 * the file: per domain, the last GTID of every server_id that ever logged
 * in it (bk_binlog.h, BkGtidList).  Following that list with the GTID
 * events streamed gives exactly the next file's list, whatever order
 * servers and sequence numbers came in (gtid_strict_mode off, a failover in
 * a multi-source topology).  The per-domain state (BkGtidState) cannot be
 * compared with it: it keeps one GTID per domain, and a list's highest
 * sequence number per domain need not be the last GTID logged there.
 *
 * Kept without <mysql.h>, so that the unit tests feed it events as bytes.
 */
#ifndef BK_AGENT_BINLOG_GTIDS_H
#define BK_AGENT_BINLOG_GTIDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bk_binlog.h"
#include "bk_error.h"

typedef enum BinlogGtidsKnown
{
	/* Nothing: the next GTID list is taken as the base, unchecked. */
	BINLOG_GTIDS_UNKNOWN,
	/*
	 * Only the newest GTID of each domain (resumed from the gtid= of a
	 * range that has no gtid-list=: sent by an older agent, or one whose
	 * list did not fit the metadata): those entries are checked, the
	 * other servers' are taken from the list.
	 */
	BINLOG_GTIDS_NEWEST,
	/* The last GTID of every domain and server. */
	BINLOG_GTIDS_EXACT,
} BinlogGtidsKnown;

typedef struct BinlogGtids
{
	BinlogGtidsKnown known;
	BkGtidList reached; /* meaningless while unknown */
	/*
	 * The file's start was streamed (its format description), its GTID
	 * list not yet: whether the file is marked gap-before= is not decided.
	 */
	bool list_due;
} BinlogGtids;

/* Nothing known (a fresh archive, or streaming on after a gap). */
extern void binlog_gtids_forget(BinlogGtids *gtids);

/* Only each domain's newest GTID known; an empty state is nothing known. */
extern void binlog_gtids_from_newest(BinlogGtids *gtids,
									 const BkGtidState *newest);

/*
 * The exact list, as binlog_gtids_format wrote it into a range's
 * gtid-list= (the archive's newest range on a resume); on an error gtids
 * is left as it was.
 */
extern bool binlog_gtids_from_text(BinlogGtids *gtids, const char *text,
								   BkError *err);

/* The reached list as text (bk_gtid_list_format), whatever is known. */
extern bool binlog_gtids_format(const BinlogGtids *gtids, char *out,
								size_t out_len);

/*
 * Whether the file being streamed may still get a gap mark: its GTID list
 * is due.  The mark goes with a file's first range, the one readers look
 * at, so that range is not sent while this is true.  MariaDB writes the
 * list right after the format description (and the start of encryption,
 * when the binlog is encrypted), so this holds a range for an instant;
 * any other event, or the end of the file, says no list is coming.
 */
static inline bool
binlog_gtids_list_due(const BinlogGtids *gtids)
{
	return gtids->list_due;
}

/* The file ended (the server moved to another): no list is coming. */
extern void binlog_gtids_file_ended(BinlogGtids *gtids);

/*
 * Fold one event of the stream in (a file's own, not one the server made
 * up for the stream): a format description at offset 4 starts a file
 * whose list is due; a GTID event is noted; a GTID_LIST is
 * compared with what was reached, when anything is, and then becomes the
 * base (the server's account, as it is, whether it follows or not).  Other
 * events: nothing.  *follows is false when the list names transactions
 * the archive did not reach (or reached ones it does not name); differs
 * then names the entries, as bk_gtid_list_follows does.
 */
extern bool binlog_gtids_event(BinlogGtids *gtids, const uint8_t *event,
							   size_t len, bool *follows, char *differs,
							   size_t differs_len, BkError *err);

#endif /* BK_AGENT_BINLOG_GTIDS_H */
