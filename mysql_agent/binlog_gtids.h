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
	/*
	 * The GTID of the transaction the stream is inside (its GTID event
	 * seen, its end not yet), and the entry of its domain and server
	 * before it was noted (had_prev false: none).  A transaction never
	 * spans files: one still open when the next file starts was cut by a
	 * crash, never committed, and the server's next list does not name it
	 * (the server gives its number to the next transaction).
	 */
	bool open;
	BkGtid open_gtid;
	bool open_had_prev;
	BkGtid open_prev;
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
 * The transaction whose GTID event came last ended (bk_binlog_txn_feed),
 * or where it ends cannot be told: it stays reached.
 */
static inline void
binlog_gtids_txn_ended(BinlogGtids *gtids)
{
	gtids->open = false;
}

/*
 * Follow where the transaction the stream is in ends, one event of the
 * stream (after binlog_gtids_event): txn as bk_binlog_txn_feed follows it,
 * and binlog_gtids_txn_ended when it ends, or when the follower cannot
 * tell.  The format description the server resends on a resume inside a
 * file is not the file's start, and ends nothing.
 */
extern void binlog_gtids_follow_txn(BinlogGtids *gtids, BkBinlogTxn *txn,
									const uint8_t *event, size_t len,
									int checksum_alg);

/*
 * The transaction a range ends inside, as that range's metadata, for an
 * agent that resumes at its end: its GTID was noted as reached, but its end
 * is not archived yet.  When the agent is stopped there and the server is
 * killed before it writes the rest (recovery rolls the transaction back,
 * and the next file's GTID list does not name it), the agent that resumes
 * must still take the GTID back at the next file's start, as one streaming
 * through the crash does; else it reports transactions missing, and the
 * archive gets a gap no restore crosses.  Keys (docs/
 * mariadb-snapshot-format.md): open-gtid= the transaction's GTID,
 * open-gtid-before= the entry of its domain and server before it (left
 * out when there was none), open-standalone=1 when its GTID event marks it
 * standalone (it ends with its first statement).
 *
 * binlog_gtids_open_meta writes them, each line led by a newline, into out
 * ("" when the stream is inside no transaction whose GTID it noted); false
 * when out is too short.  binlog_gtids_resume_open reads them back from a
 * range's metadata and puts gtids and txn inside that transaction again,
 * so that its end is seen when streamed, or the next file's start takes
 * it back; nothing when the metadata has no open-gtid=, and false (gtids
 * and txn as they were) when it cannot be read.
 */
#define BINLOG_OPEN_META_MAX 160

extern bool binlog_gtids_open_meta(const BinlogGtids *gtids,
								   const BkBinlogTxn *txn, char *out,
								   size_t out_len);
extern bool binlog_gtids_resume_open(BinlogGtids *gtids, BkBinlogTxn *txn,
									 const char *meta, size_t meta_len,
									 BkError *err);

/*
 * Fold one event of the stream in (a file's own, not one the server made
 * up for the stream): a format description at offset 4 starts a file
 * whose list is due, and takes back the GTID of a transaction left open
 * in the file before (binlog_gtids_txn_ended was not called after its
 * GTID event); a GTID event is noted; a GTID_LIST is
 * compared with what was reached, when anything is, and then becomes the
 * base (the server's account, as it is, whether it follows or not).  Other
 * events: nothing.  *follows is false when the list names transactions
 * the archive did not reach (or reached ones it does not name); differs
 * then names the entries, as bk_gtid_list_follows does.
 */
extern bool binlog_gtids_event(BinlogGtids *gtids, const uint8_t *event,
							   size_t len, bool *follows, char *differs,
							   size_t differs_len, BkError *err);

/*
 * Resuming inside a file, the agent asks the server for its GTID state at
 * the archive's end position, BINLOG_GTID_POS(file, pos), to tell its file
 * of that name from another one written under the same name (RESET MASTER
 * while the agent was down).  MariaDB answers that call in three ways:
 * the state; NULL, when it cannot place the position (no event starts there
 * in its file of that name, the file ends before it, or the file is not in
 * its index); or an error, which only the connection or the statement
 * itself gives (a lost connection, a server shutting down), never the
 * position.  So a NULL is the server's answer and an error is not: an error
 * must not stop the archive, a NULL for a file the server still lists must.
 */
typedef enum BinlogResumeCheck
{
	/* The server's state there is the archive's: stream from there. */
	BINLOG_RESUME_FOLLOWS,
	/*
	 * No answer (the call failed, or its answer is not a GTID state bk
	 * reads): stream as before; the dump checks every event's position,
	 * and a lost connection is retried like any other.
	 */
	BINLOG_RESUME_UNCHECKED,
	/*
	 * NULL, but the file is no longer in SHOW BINARY LOGS: purged or reset
	 * meanwhile.  Try again: the next attempt finds it gone by name.
	 */
	BINLOG_RESUME_RECHECK,
	/* Another state there: another file under the same name. */
	BINLOG_RESUME_DIFFERS,
	/*
	 * NULL for a file the server lists: it has no event boundary there, so
	 * its file of that name is not the one archived (or lost its end in a
	 * crash, which the archive holds): refused like DIFFERS.
	 */
	BINLOG_RESUME_UNPLACED,
} BinlogResumeCheck;

/*
 * What to make of the server's answer at the archive's end.  reached: the
 * GTID state the archive reached there.  answered: the call returned a row;
 * state: its value, NULL for SQL NULL; listed: the file is in SHOW BINARY
 * LOGS after the call (read only for a NULL).  *why says what could not be
 * read when the answer is a state bk does not understand (UNCHECKED).
 */
extern BinlogResumeCheck binlog_resume_check(const BkGtidState *reached,
											 bool answered, const char *state,
											 bool listed, BkError *why);

/*
 * Which binlog file, of all the files ever written under one name: the
 * header timestamp and server_id of its format description event, written
 * when the server created the file.  RESET MASTER writes the names again,
 * and with a regular workload its new file can have an event at the
 * archive's end with the same GTID state there (numbering restarts at 1),
 * so the GTID state alone does not tell the files apart; their creation
 * does.  The server resends the format description at the start of every
 * dump, also one that starts inside the file (with next_pos 0 and its
 * body's creation time zeroed, its header kept).
 */
typedef struct BinlogFileId
{
	bool known;
	uint32_t created;   /* the format description's header timestamp */
	uint32_t server_id; /* and its server_id */
} BinlogFileId;

/* Longest text of binlog_file_id_format: "<created>:<server_id>". */
#define BINLOG_FILE_ID_TEXT_MAX 24

/* The identity of the file a format description event (len bytes) opens. */
extern bool binlog_file_id_read(const uint8_t *event, size_t len,
								BinlogFileId *id, BkError *err);

/* "<created>:<server_id>" (a range's file-created=); false when unknown. */
extern bool binlog_file_id_format(const BinlogFileId *id, char *out,
								  size_t out_len);

/* Parse binlog_file_id_format's text; false (id unknown) if it is not one. */
extern bool binlog_file_id_parse(const char *text, BinlogFileId *id);

/*
 * Resuming inside a file: archived is the identity the archive recorded of
 * it, server the format description the server sent at the dump's start.
 * FOLLOWS when they are equal, DIFFERS when not, UNCHECKED when the archive
 * recorded none (ranges of older agents).
 */
extern BinlogResumeCheck binlog_file_id_check(const BinlogFileId *archived,
											  const BinlogFileId *server);

#endif /* BK_AGENT_BINLOG_GTIDS_H */
