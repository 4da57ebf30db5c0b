/*
 * wal_scan.h
 *		Find the CREATE TABLESPACE records in one PostgreSQL 15 WAL segment.
 *
 * PostgreSQL 15 replays CREATE TABLESPACE (create_tablespace_directories())
 * by accepting a LOCATION/PG_15_<catversion> directory that already exists,
 * removing pg_tblspc/<oid> and linking it to the original LOCATION.  A
 * restored cluster on a host where that directory exists (the source's own
 * host above all) would then write into it.  bk wal-get serves every
 * segment recovery replays, so it looks for those records before handing a
 * segment over (cmd_wal_get.c decides what to do with them).
 *
 * Only what finding those records needs is read: page headers (to skip
 * them, and to stop at the end of valid WAL as PostgreSQL would), each
 * record's length, resource manager and info, and, for a tablespace
 * record, its main data.  Block references are skipped by their headers.
 * Nothing is trusted: whatever the bytes, no read goes past the buffer,
 * and what does not look like valid WAL ends the walk (PostgreSQL would not
 * replay past it either).  No CRC is checked.
 *
 * A record that begins in this segment and ends in the next one is replayed
 * only once the next segment is read.  When such a record may be a CREATE
 * TABLESPACE (its header is cut, or it is one and small enough), its bytes
 * so far are handed back as a carry; the walk of the next segment takes
 * that carry to complete the record.  A segment that begins with the rest
 * of a record and has no carry for it is walked past that rest: the record
 * began in a segment this walk never saw, so a recovery that reads this one
 * first began after it.
 *
 * The layout (verified against PostgreSQL 15's access/xlogrecord.h,
 * access/xlog_internal.h, commands/tablespace.h, catalog/pg_control.h):
 * page header 24 bytes (long, on a segment's first page, 40): xlp_magic
 * 0xD110 at 0, xlp_info at 2, xlp_pageaddr at 8, xlp_rem_len at 16; long
 * header: xlp_seg_size at 32, xlp_xlog_blcksz at 36.  Records start
 * MAXALIGNed (8); XLogRecord is 24 bytes, xl_tot_len at 0, xl_prev at 8,
 * xl_info at 16, xl_rmid at 17; a header may be split across pages.
 * RM_TBLSPC_ID 5, XLOG_TBLSPC_CREATE 0x00; main data xl_tblspc_create_rec
 * {Oid ts_id; char ts_path[]} (NUL-terminated).
 */
#ifndef BK_WAL_SCAN_H
#define BK_WAL_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The largest CREATE TABLESPACE record: the record header, an origin and a
 * top-level xid block, a long data header, the oid and a path of at most
 * MAXPGPATH (1024) bytes with its NUL; rounded up.  Larger records are
 * never one.
 */
#define BK_WAL_CREATE_MAX 2048

/* A path in a record, NUL included, is shorter than MAXPGPATH. */
#define BK_WAL_TABLESPACE_PATH_MAX 1024

typedef struct BkWalTablespaceCreate
{
	uint64_t lsn;      /* where the record begins */
	uint64_t prev_lsn; /* xl_prev: where the record before it begins */
	uint32_t oid;
	char path[BK_WAL_TABLESPACE_PATH_MAX];
} BkWalTablespaceCreate;

/*
 * The start of a record the segment ends in the middle of, which may be a
 * CREATE TABLESPACE: next_lsn is where the next segment begins.
 */
typedef struct BkWalCarry
{
	uint64_t next_lsn;
	uint64_t lsn; /* where the record begins */
	uint32_t len; /* bytes of it in bytes[] */
	uint8_t bytes[BK_WAL_CREATE_MAX];
} BkWalCarry;

/* Called for each CREATE TABLESPACE; false stops the walk. */
typedef bool (*BkWalCreateFn)(void *arg, const BkWalTablespaceCreate *create);

typedef struct BkWalScanResult
{
	bool recognized;   /* the first page is a valid segment start */
	bool has_carry;    /* carry_out is set */
	bool used_carry;   /* carry_in completed the first record */
	uint64_t records;  /* whole records walked */
	uint64_t end_lsn;  /* where the walk stopped */
	const char *stop;  /* why it stopped before the segment's end, or NULL */
	BkWalCarry *carry; /* caller's: filled when has_carry */
} BkWalScanResult;

/*
 * Walk segment (len bytes: a whole segment as written by PostgreSQL),
 * calling on_create for each CREATE TABLESPACE record that ends in it.
 * carry_in (or NULL) is what the walk of the segment before it handed
 * back; it is used only if its next_lsn is this segment's start and the
 * lengths agree.  result->carry must point to a BkWalCarry for the carry
 * out.  Returns false only if on_create stopped the walk.
 */
extern bool bk_wal_scan_segment(const uint8_t *segment, size_t len,
								const BkWalCarry *carry_in,
								BkWalCreateFn on_create, void *arg,
								BkWalScanResult *result);

#endif /* BK_WAL_SCAN_H */
