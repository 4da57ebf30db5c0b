/*
 * bk_binlog.h
 *		MariaDB binary log: event headers, checksums, GTID state, and the
 *		names and metadata of archived binlog ranges.
 *
 * bk archives a binlog file as byte ranges: each range is one object
 * (kind 3) named "<binlog file>/<start>-<end>" (file offsets, 10 digits
 * each), so the ranges of a file sort in file order and a file is rebuilt by
 * chaining them.  The end is in the name because a range sent again after a
 * crash may be cut at another point: both copies stay, and where they
 * overlap their bytes must be equal.  The first range of a file starts at 0
 * and holds the 4-byte magic that the replication stream does not carry.
 * Ranges start and end on event boundaries.
 *
 * Everything here works on plaintext bytes and is shared by the agent (which
 * cuts ranges from the replication stream) and the bk tool (which checks and
 * reassembles them): one definition of what a well-formed range is.
 */
#ifndef BK_BINLOG_H
#define BK_BINLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bk_error.h"

#define BK_BINLOG_MAGIC_LEN      4
#define BK_BINLOG_HEADER_LEN     19
#define BK_BINLOG_CHECKSUM_LEN   4
#define BK_BINLOG_FILE_NAME_MAX  255
#define BK_BINLOG_OFFSET_DIGITS  10
#define BK_BINLOG_GTID_STATE_MAX 4096

/* Event types bk looks at (MariaDB's numbering). */
#define BK_BINLOG_STOP_EVENT               3
#define BK_BINLOG_ROTATE_EVENT             4
#define BK_BINLOG_QUERY_EVENT              2
#define BK_BINLOG_FORMAT_DESCRIPTION_EVENT 15
#define BK_BINLOG_XID_EVENT                16
#define BK_BINLOG_XA_PREPARE_EVENT         38
#define BK_BINLOG_HEARTBEAT_EVENT          27
#define BK_BINLOG_GTID_EVENT               162
#define BK_BINLOG_GTID_LIST_EVENT          163
#define BK_BINLOG_START_ENCRYPTION_EVENT   164
/*
 * The server's record that it applied a change it could not log
 * (LOST_EVENTS: a statement whose binlog cache write failed, such as one
 * on a non-transactional table past max_binlog_stmt_cache_size).  It has
 * no GTID: the binlog after it is not the data's whole history.
 */
#define BK_BINLOG_INCIDENT_EVENT 26
/* Rows inserted, as row-based logging writes them (v1: MySQL 5.1 era). */
#define BK_BINLOG_WRITE_ROWS_EVENT_V1 23
#define BK_BINLOG_WRITE_ROWS_EVENT    30
/*
 * With log_bin_compress=ON the server logs a statement of at least
 * log_bin_compress_min_len bytes as a Query_compressed event, and the rows
 * of a row event likewise: the same events with part of the body
 * compressed (bk_binlog_txn_feed reads the text of the Query ones).
 */
#define BK_BINLOG_QUERY_COMPRESSED_EVENT 165
/* MariaDB's numbers: the v1 ones (what 10.11 writes) come first. */
#define BK_BINLOG_WRITE_ROWS_COMPRESSED_EVENT_V1  166
#define BK_BINLOG_UPDATE_ROWS_COMPRESSED_EVENT_V1 167
#define BK_BINLOG_DELETE_ROWS_COMPRESSED_EVENT_V1 168
#define BK_BINLOG_WRITE_ROWS_COMPRESSED_EVENT     169
#define BK_BINLOG_UPDATE_ROWS_COMPRESSED_EVENT    170
#define BK_BINLOG_DELETE_ROWS_COMPRESSED_EVENT    171

/* Header flags. */
#define BK_BINLOG_F_IN_USE 0x0001 /* format description: file still open */
#define BK_BINLOG_F_ARTIFICIAL                                                 \
	0x0020 /* made up by the sender, not in the file */
/*
 * A Query event whose statement depends on its session (the server's
 * LOG_EVENT_THREAD_SPECIFIC_F): it used a temporary table, or
 * CONNECTION_ID().
 */
#define BK_BINLOG_F_THREAD_SPECIFIC 0x0004

/* Checksum algorithms of the format description event. */
#define BK_BINLOG_CHECKSUM_OFF   0
#define BK_BINLOG_CHECKSUM_CRC32 1

extern const uint8_t bk_binlog_magic[BK_BINLOG_MAGIC_LEN];

typedef struct BkBinlogEventHeader
{
	uint32_t timestamp;
	uint8_t type;
	uint32_t server_id;
	uint32_t length;   /* whole event, header and checksum included */
	uint32_t next_pos; /* file offset just after the event; 0 if artificial */
	uint16_t flags;
} BkBinlogEventHeader;

/* Decode the 19-byte header; fails on a length shorter than the header. */
extern bool bk_binlog_header_parse(const uint8_t *data, size_t len,
								   BkBinlogEventHeader *header, BkError *err);

/*
 * The checksum algorithm a format description event declares (the byte
 * before its 4 checksum bytes, present whatever the algorithm), or -1 if the
 * event is too short to hold one.
 */
extern int bk_binlog_fde_checksum_alg(const uint8_t *event, size_t len);

/* True when the event's trailing CRC-32 (zlib's) matches its bytes. */
extern bool bk_binlog_crc_ok(const uint8_t *event, size_t len);

/*
 * The position and the file name a ROTATE event carries (body: position,
 * 8 bytes, then the name up to the checksum).  checksum_alg says whether
 * the event ends with a CRC-32, for a ROTATE of the file itself; -1 for
 * one the server made up for the stream (artificial), which carries a
 * CRC-32 or not whatever the stream's setting: its own last four bytes
 * tell, being the CRC-32 of the rest or not.  Fails on a body too short or
 * a name longer than name_len - 1; whether the name is one bk archives is
 * the caller's check (bk_binlog_file_name_valid).
 */
extern bool bk_binlog_rotate_read(const uint8_t *event, size_t len,
								  int checksum_alg, uint64_t *pos, char *name,
								  size_t name_len, BkError *err);

/*
 * The capacity to keep for a range buffer of capacity cap once its range was
 * sent: one event larger than range_size grew it (by doubling) past what the
 * next ranges need, and the agent holds "one range, or one event when an
 * event is larger", not the largest event it ever saw.  Above twice
 * range_size it goes back to range_size; otherwise it is kept as it is.
 */
extern size_t bk_binlog_range_capacity_after_flush(size_t cap,
												   uint64_t range_size);

/*
 * GTID state: the last GTID seen per replication domain, as MariaDB prints
 * it ("0-1-42,1-2-7", domains in ascending order).
 */
#define BK_BINLOG_DOMAINS_MAX 64

typedef struct BkGtid
{
	uint32_t domain;
	uint32_t server;
	uint64_t seq;
} BkGtid;

typedef struct BkGtidState
{
	int count;
	BkGtid gtids[BK_BINLOG_DOMAINS_MAX];
} BkGtidState;

/* False past BK_BINLOG_DOMAINS_MAX domains: nothing is dropped unsaid. */
extern bool bk_gtid_state_set(BkGtidState *state, const BkGtid *gtid,
							  BkError *err);
extern bool bk_gtid_state_format(const BkGtidState *state, char *out,
								 size_t out_len);
extern bool bk_gtid_state_parse(const char *text, BkGtidState *state,
								BkError *err);

/* The GTID of a GTID event (fails on any other event). */
extern bool bk_binlog_gtid_read(const uint8_t *event, size_t len, BkGtid *gtid,
								BkError *err);

/*
 * Fold a GTID or GTID_LIST event into state (other events: nothing).  A
 * GTID_LIST replaces the whole state: it is the server's own account of
 * everything logged before this file.
 */
extern bool bk_gtid_state_apply(BkGtidState *state, const uint8_t *event,
								size_t len, BkError *err);

/*
 * Does a file whose GTID_LIST gives listed (bk_gtid_state_apply) follow the
 * per-domain state reached?  Every domain listed must have been reached at
 * the same GTID, server and sequence.  A domain reached but not listed is
 * not a difference: FLUSH BINARY LOGS DELETE_DOMAIN_ID drops it from the
 * server's state, and any transaction logged in it would list it again.
 */
extern bool bk_gtid_state_follows(const BkGtidState *reached,
								  const BkGtidState *listed);

/*
 * A binlog file's GTID_LIST in full.  MariaDB lists, per domain, the last
 * GTID of every server_id that ever logged in it (rpl_binlog_state), not
 * only the domain's newest, so following a file's list with the GTID
 * events of the file gives exactly the list the next file starts with:
 * any transaction missing between them leaves its server's entry behind,
 * whatever order servers and sequence numbers came in (gtid_strict_mode
 * off).  Kept sorted by domain, then server.
 */
#define BK_BINLOG_GTID_LIST_MAX 1024

typedef struct BkGtidList
{
	int count;
	BkGtid gtids[BK_BINLOG_GTID_LIST_MAX];
} BkGtidList;

/* The entries of a GTID_LIST event (list is replaced). */
extern bool bk_gtid_list_read(BkGtidList *list, const uint8_t *event,
							  size_t len, BkError *err);

/* A GTID logged: the newest of its domain and server. */
extern bool bk_gtid_list_note(BkGtidList *list, const BkGtid *gtid,
							  BkError *err);

/*
 * As text, "0-1-10,0-2-5,1-1-3" (sorted by domain, then server; "" when
 * empty); formatting fails when out is too short.  Parsing accepts any
 * order, and refuses a domain and server named twice.
 */
extern bool bk_gtid_list_format(const BkGtidList *list, char *out,
								size_t out_len);
extern bool bk_gtid_list_parse(const char *text, BkGtidList *list,
							   BkError *err);

/*
 * Does a file starting with listed follow a binlog that reached reached?
 * Equal entries for every domain listed (a domain only reached: see
 * bk_gtid_state_follows).  When not, differs names the entries that
 * differ, as "listed (reached ...)".
 */
extern bool bk_gtid_list_follows(const BkGtidList *reached,
								 const BkGtidList *listed, char *differs,
								 size_t differs_len);

/*
 * Walk the events of a byte range of a binlog file that starts at
 * file_offset: every event complete, positions chained (each event's
 * next_pos is its offset plus its length), every CRC right when
 * checksum_alg says so.  A range at offset 0 must start with the magic.
 * *checksum_alg is updated by a format description event.  Calls fn (when
 * not NULL) for each event.  Errors name the file offset.
 */
typedef bool (*BkBinlogEventFn)(void *arg, uint64_t offset,
								const BkBinlogEventHeader *header,
								const uint8_t *event, BkError *err);

extern bool bk_binlog_walk(const char *file, uint64_t file_offset,
						   const uint8_t *data, size_t len, int *checksum_alg,
						   BkBinlogEventFn fn, void *arg, BkError *err);

/*
 * Transactions ("event groups") as they pass, event by event.  In MariaDB
 * every group starts with a GTID event.  A standalone group (flag 1 of the
 * GTID event: DDL, and statements on engines without transactions) is
 * that event and one Query event; any other group ends with an XID event
 * (commit of a transactional engine), a Query event "COMMIT" or
 * "ROLLBACK" (other engines), an XA PREPARE event, or a Query event
 * "XA COMMIT ..." / "XA ROLLBACK ...".  A Query_compressed event
 * (log_bin_compress) is a Query event: its text is decompressed where it
 * is read.  Row events, compressed or not, end nothing.  A group's end is
 * where a restore may stop: the binlog is in commit order, so everything
 * before the end of a group committed before it.
 */
typedef struct BkBinlogTxn
{
	bool in_group;
	bool standalone;
	/*
	 * Its GTID event's FL_DDL flag (DDL, or a temporary table created or
	 * dropped in it), and whether, not standalone, it logged a CREATE TABLE
	 * statement and then rows: CREATE TABLE ... SELECT under row-based
	 * logging, one group that mariadb-binlog's output replays as two
	 * transactions.
	 */
	bool ddl;
	bool created_table;
	bool table_created_with_rows;
	BkGtid gtid;         /* of the group in progress, or of the last ended */
	uint32_t start_time; /* timestamp of its GTID event */
	/*
	 * The latest second its events show it not yet committed: the largest
	 * of their timestamps, a Query event's plus its exec_time (the second
	 * its statement ended).  For a group that ends with a Query event
	 * (DDL, COMMIT, XA COMMIT) that is its commit's second.  An XID event
	 * carries only the start of the statement that committed (COMMIT, or
	 * the autocommit statement itself): a lower bound.
	 */
	uint32_t end_time;
} BkBinlogTxn;

/*
 * Feed one complete event (as bk_binlog_walk visits it); *ended says
 * whether it ends a group, whose GTID is then txn->gtid.  An event that
 * ends a group it is not in (a COMMIT with no GTID before it in what was
 * fed) is not an end: feeding starts at a group boundary.
 *
 * A GTID event while a group is open fails (BK_ERR_FORMAT, naming both
 * GTIDs; the caller adds the file and offset): the server writes groups
 * whole, so something ended the open one that bk did not see, and merging
 * the two would move its end.  txn then follows the new group.  A format
 * description event (a file's start) drops an open group as not ended: a
 * crash of the server cut it short, and the server rolled it back.  A
 * Query_compressed text that does not decompress fails too.
 */
extern bool bk_binlog_txn_feed(BkBinlogTxn *txn, const uint8_t *event,
							   size_t len, int checksum_alg, bool *ended,
							   BkError *err);

/*
 * A Query or Query_compressed event: its session's thread id, its default
 * database and its statement (a compressed one decompressed into
 * text_buf, which bk_binlog_query_free frees).  Fails on an event too
 * short for its own lengths, or a text that does not decompress.
 */
typedef struct BkBinlogQuery
{
	uint32_t thread_id;
	const char *db; /* not NUL-terminated */
	size_t db_len;
	const char *text; /* not NUL-terminated */
	size_t text_len;
	char *text_buf;
} BkBinlogQuery;

extern bool bk_binlog_query_read(const uint8_t *event, size_t len,
								 int checksum_alg, BkBinlogQuery *query,
								 BkError *err);
extern void bk_binlog_query_free(BkBinlogQuery *query);

/*
 * An Incident event: its number (1: LOST_EVENTS) and its message, copied
 * NUL-terminated into message (cut to message_len - 1 bytes).  Fails on an
 * event too short for its own lengths.
 */
extern bool bk_binlog_incident_read(const uint8_t *event, size_t len,
									int checksum_alg, uint16_t *number,
									char *message, size_t message_len,
									BkError *err);

/* "mariadb-bin.000042": a name bk accepts as a binlog file name. */
extern bool bk_binlog_file_name_valid(const char *name);

/*
 * Object name of the range [start, end) of file; and back.  Parsing fails
 * (false, no error) for names that are not range names.
 */
extern bool bk_binlog_range_name(const char *file, uint64_t start, uint64_t end,
								 char *out, size_t out_len);
extern bool bk_binlog_range_parse(const char *name, char *file, size_t file_len,
								  uint64_t *start, uint64_t *end);

/*
 * Order of binlog files: by the numeric extension first (names of one
 * server differ only there), then by name.
 */
extern int bk_binlog_file_compare(const char *a, const char *b);

/*
 * Order two stream positions (file, then offset within it), as
 * bk_binlog_file_compare orders the files: <0, 0 or >0.
 */
extern int bk_binlog_position_compare(const char *file_a, uint64_t offset_a,
									  const char *file_b, uint64_t offset_b);

/*
 * A Unix time as the server prints UNIX_TIMESTAMP(NOW(6))
 * ("1764000000.123456", or without a fraction) in whole milliseconds,
 * rounded down: complete-until never claims the part of a millisecond
 * that was not.
 */
extern bool bk_binlog_unix_ms_parse(const char *text, int64_t *ms);

/*
 * The part of a binlog file name before its numeric extension ("mariadb-bin"
 * of "mariadb-bin.000042") is the same in a and b.  MariaDB's default is
 * <hostname>-bin: files of another basename are another server's binlog
 * (or one renamed), never the continuation of this one.
 */
extern bool bk_binlog_file_same_base(const char *a, const char *b);

/*
 * next is the file the server opens after prev: the same basename, the
 * number one higher.
 */
extern bool bk_binlog_file_follows(const char *prev, const char *next);

#endif /* BK_BINLOG_H */
