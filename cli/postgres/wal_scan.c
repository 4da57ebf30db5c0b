/*
 * wal_scan.c
 *		Find the CREATE TABLESPACE records in one PostgreSQL 15 WAL segment
 *		(wal_scan.h says why and what is read).
 *
 * Every read of the segment goes through page_header() or record_bytes(),
 * which check the offset against the buffer's length first; record bytes
 * are assembled into a buffer of BK_WAL_CREATE_MAX bytes only for records
 * no longer than that.  So no input, however malformed, makes the walk read
 * or write out of bounds.
 */
#include "wal_scan.h"

#include <string.h>

/* access/xlog_internal.h */
#define XLOG_PAGE_MAGIC           0xD110
#define XLP_FIRST_IS_CONTRECORD   0x0001
#define XLP_LONG_HEADER           0x0002
#define XLP_ALL_FLAGS             0x000F
#define SIZE_OF_SHORT_PAGE_HEADER 24
#define SIZE_OF_LONG_PAGE_HEADER  40
#define PAGE_MAGIC_OFFSET         0
#define PAGE_INFO_OFFSET          2
#define PAGE_ADDR_OFFSET          8
#define PAGE_REM_LEN_OFFSET       16
#define PAGE_SEG_SIZE_OFFSET      32
#define PAGE_BLCKSZ_OFFSET        36

/* access/xlogrecord.h */
#define SIZE_OF_XLOG_RECORD       24
#define RECORD_PREV_OFFSET        8
#define RECORD_INFO_OFFSET        16
#define RECORD_RMID_OFFSET        17
#define XLR_RMGR_INFO_MASK        0xF0
#define XLR_MAX_BLOCK_ID          32
#define XLR_BLOCK_ID_DATA_SHORT   255
#define XLR_BLOCK_ID_DATA_LONG    254
#define XLR_BLOCK_ID_ORIGIN       253
#define XLR_BLOCK_ID_TOPLEVEL_XID 252
#define BKPBLOCK_HAS_IMAGE        0x10
#define BKPBLOCK_SAME_REL         0x80
#define BKPIMAGE_HAS_HOLE         0x01
#define BKPIMAGE_COMPRESSED       (0x04 | 0x08 | 0x10)
#define SIZE_OF_RELFILENODE       12

/* access/rmgrlist.h, commands/tablespace.h, catalog/pg_control.h */
#define RM_XLOG_ID         0
#define RM_TBLSPC_ID       5
#define XLOG_TBLSPC_CREATE 0x00
#define XLOG_SWITCH        0x40

/* MAXALIGN on this platform and PostgreSQL's (pg_config.h: 8) */
#define WAL_MAXALIGN(x) (((x) + 7) & ~(size_t) 7)

typedef struct Walk
{
	const uint8_t *segment;
	size_t len;
	uint32_t blcksz;
	uint64_t base; /* the segment's first LSN */
	size_t pos;    /* the next byte to read */
	const char *stop;
} Walk;

static uint16_t
get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint32_t
get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t
get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/*
 * The header of the page at offset page (a multiple of blcksz): its size,
 * xlp_info and xlp_rem_len.  False (and w->stop) unless it is a valid
 * header of this page, as PostgreSQL checks it: anything else is where
 * valid WAL ends (a recycled segment's old pages, or damage).
 */
static bool
page_header(Walk *w, size_t page, size_t *size, uint16_t *info,
			uint32_t *rem_len)
{
	const uint8_t *p;

	if (page > w->len || w->len - page < SIZE_OF_SHORT_PAGE_HEADER)
	{
		w->stop = "a page header past the end of the segment";
		return false;
	}
	p = w->segment + page;
	*info = get16(p + PAGE_INFO_OFFSET);
	*rem_len = get32(p + PAGE_REM_LEN_OFFSET);
	*size = (*info & XLP_LONG_HEADER) ? SIZE_OF_LONG_PAGE_HEADER
									  : SIZE_OF_SHORT_PAGE_HEADER;
	if (get16(p + PAGE_MAGIC_OFFSET) != XLOG_PAGE_MAGIC ||
		(*info & ~XLP_ALL_FLAGS) != 0 ||
		get64(p + PAGE_ADDR_OFFSET) != w->base + page || w->len - page < *size)
	{
		w->stop = "a page that is not valid WAL of this segment";
		return false;
	}
	return true;
}

/*
 * Read n bytes of the current record into dst (NULL: skip them), crossing
 * page headers.  record_left, if not 0, is how many bytes of the record
 * remain from here: a page the record continues on must say so in
 * xlp_rem_len.  Returns the bytes read: fewer than n at the end of the
 * segment, or where the WAL is not valid (w->stop set).
 */
static size_t
record_bytes(Walk *w, uint8_t *dst, size_t n, uint64_t record_left)
{
	size_t done = 0;

	while (done < n)
	{
		size_t page_end;
		size_t take;

		if (w->pos >= w->len)
			return done;
		if ((w->pos & (w->blcksz - 1)) == 0)
		{
			size_t size;
			uint16_t info;
			uint32_t rem_len;

			if (!page_header(w, w->pos, &size, &info, &rem_len))
				return done;
			if ((info & XLP_FIRST_IS_CONTRECORD) == 0 || rem_len == 0 ||
				(record_left != 0 && rem_len != record_left - done))
			{
				w->stop = "a record not continued on the next page";
				return done;
			}
			w->pos += size;
		}
		page_end = (w->pos | (w->blcksz - 1)) + 1;
		if (page_end > w->len)
			page_end = w->len;
		take = n - done;
		if (take > page_end - w->pos)
			take = page_end - w->pos;
		if (dst != NULL)
			memcpy(dst + done, w->segment + w->pos, take);
		w->pos += take;
		done += take;
	}
	return done;
}

/*
 * A whole record of tot_len bytes in rec: if it is a CREATE TABLESPACE
 * PostgreSQL could decode, fill create.  Block references are skipped by
 * their headers (a tablespace record has none, but nothing here relies on
 * it); the main data is the record's last bytes.
 */
static bool
decode_create(const uint8_t *rec, uint32_t tot_len, uint64_t lsn,
			  BkWalTablespaceCreate *create)
{
	uint32_t off = SIZE_OF_XLOG_RECORD;
	uint32_t main_len = 0;
	uint64_t payload = 0;
	uint32_t data_start;
	uint32_t path_len;

	if (rec[RECORD_RMID_OFFSET] != RM_TBLSPC_ID ||
		(rec[RECORD_INFO_OFFSET] & XLR_RMGR_INFO_MASK) != XLOG_TBLSPC_CREATE)
		return false;
	while (off < tot_len)
	{
		uint8_t id = rec[off++];

		if (id == XLR_BLOCK_ID_DATA_SHORT)
		{
			if (tot_len - off < 1)
				return false;
			main_len = rec[off];
			off += 1;
			break;
		}
		if (id == XLR_BLOCK_ID_DATA_LONG)
		{
			if (tot_len - off < 4)
				return false;
			main_len = get32(rec + off);
			off += 4;
			break;
		}
		if (id == XLR_BLOCK_ID_ORIGIN || id == XLR_BLOCK_ID_TOPLEVEL_XID)
		{
			uint32_t skip = id == XLR_BLOCK_ID_ORIGIN ? 2 : 4;

			if (tot_len - off < skip)
				return false;
			off += skip;
			continue;
		}
		if (id > XLR_MAX_BLOCK_ID)
			return false;
		{
			uint8_t fork_flags;
			uint32_t need = 3 + 4; /* fork_flags, data_length, block */

			if (tot_len - off < 3)
				return false;
			fork_flags = rec[off];
			payload += get16(rec + off + 1);
			if (fork_flags & BKPBLOCK_HAS_IMAGE)
			{
				uint8_t bimg_info;

				if (tot_len - off < 3 + 5)
					return false;
				payload += get16(rec + off + 3);
				bimg_info = rec[off + 3 + 4];
				need += 5;
				if ((bimg_info & BKPIMAGE_HAS_HOLE) &&
					(bimg_info & BKPIMAGE_COMPRESSED))
					need += 2;
			}
			if ((fork_flags & BKPBLOCK_SAME_REL) == 0)
				need += SIZE_OF_RELFILENODE;
			if (tot_len - off < need)
				return false;
			off += need;
		}
	}
	if (main_len < 4 + 1 || main_len > tot_len - off ||
		payload > tot_len - off - main_len)
		return false;
	data_start = tot_len - main_len;
	path_len = main_len - 4;
	/* ts_path is NUL-terminated and shorter than MAXPGPATH. */
	if (memchr(rec + data_start + 4, '\0', path_len) == NULL)
		return false;
	if (strlen((const char *) rec + data_start + 4) >= sizeof(create->path))
		return false;
	create->lsn = lsn;
	create->prev_lsn = get64(rec + RECORD_PREV_OFFSET);
	create->oid = get32(rec + data_start);
	strcpy(create->path, (const char *) rec + data_start + 4);
	return true;
}

/* Hand a whole record over if it is a CREATE TABLESPACE; false: stop. */
static bool
whole_record(const uint8_t *rec, uint32_t tot_len, uint64_t lsn,
			 BkWalCreateFn on_create, void *arg)
{
	BkWalTablespaceCreate create;

	if (!decode_create(rec, tot_len, lsn, &create))
		return true;
	return on_create(arg, &create);
}

/* The record header says it may be a CREATE TABLESPACE (got bytes of it). */
static bool
may_be_create(const uint8_t *header, size_t got)
{
	if (got >= 4 && (get32(header) < SIZE_OF_XLOG_RECORD ||
					 get32(header) > BK_WAL_CREATE_MAX))
		return false;
	if (got > RECORD_RMID_OFFSET &&
		(header[RECORD_RMID_OFFSET] != RM_TBLSPC_ID ||
		 (header[RECORD_INFO_OFFSET] & XLR_RMGR_INFO_MASK) !=
			 XLOG_TBLSPC_CREATE))
		return false;
	return true;
}

static void
set_carry(Walk *w, BkWalScanResult *result, uint64_t lsn, const uint8_t *bytes,
		  size_t len)
{
	if (result->carry == NULL || len > sizeof(result->carry->bytes))
		return;
	result->carry->next_lsn = w->base + w->len;
	result->carry->lsn = lsn;
	result->carry->len = (uint32_t) len;
	memcpy(result->carry->bytes, bytes, len);
	result->has_carry = true;
}

/*
 * The first page begins with the rest of a record (rem_len bytes): complete
 * the one carry_in began, or skip it.  False if on_create stopped the walk;
 * *done when the walk is over.
 */
static bool
continuation(Walk *w, uint32_t rem_len, const BkWalCarry *carry_in,
			 BkWalCreateFn on_create, void *arg, BkWalScanResult *result,
			 bool *done)
{
	uint8_t rec[BK_WAL_CREATE_MAX];
	uint32_t tot_len;
	size_t got;

	*done = false;
	if (carry_in == NULL || carry_in->next_lsn != w->base ||
		carry_in->len < 4 || carry_in->len > sizeof(carry_in->bytes) ||
		(tot_len = get32(carry_in->bytes)) > BK_WAL_CREATE_MAX ||
		tot_len <= carry_in->len || tot_len - carry_in->len != rem_len)
	{
		/* The record began where this walk never was. */
		if (record_bytes(w, NULL, rem_len, rem_len) < rem_len)
			*done = true;
		return true;
	}
	memcpy(rec, carry_in->bytes, carry_in->len);
	got = record_bytes(w, rec + carry_in->len, rem_len, rem_len);
	if (got < rem_len)
	{
		if (w->stop == NULL)
			set_carry(w, result, carry_in->lsn, rec, carry_in->len + got);
		*done = true;
		return true;
	}
	result->used_carry = true;
	result->records++;
	if (tot_len < SIZE_OF_XLOG_RECORD)
		return true;
	return whole_record(rec, tot_len, carry_in->lsn, on_create, arg);
}

bool
bk_wal_scan_segment(const uint8_t *segment, size_t len,
					const BkWalCarry *carry_in, BkWalCreateFn on_create,
					void *arg, BkWalScanResult *result)
{
	BkWalCarry *carry_out = result->carry;
	Walk w = {.segment = segment, .len = len};
	size_t size;
	uint16_t info;
	uint32_t rem_len;
	uint32_t seg_size;
	bool done = false;
	bool go_on = true;

	memset(result, 0, sizeof(*result));
	result->carry = carry_out;
	if (len < SIZE_OF_LONG_PAGE_HEADER)
		return true;

	/* The first page: a long header that describes this very buffer. */
	seg_size = get32(segment + PAGE_SEG_SIZE_OFFSET);
	w.blcksz = get32(segment + PAGE_BLCKSZ_OFFSET);
	w.base = get64(segment + PAGE_ADDR_OFFSET);
	if (seg_size != len || w.blcksz < 1024 || w.blcksz > 65536 ||
		(w.blcksz & (w.blcksz - 1)) != 0 || len % w.blcksz != 0 ||
		w.base % len != 0 || !page_header(&w, 0, &size, &info, &rem_len) ||
		(info & XLP_LONG_HEADER) == 0)
		return true;
	result->recognized = true;
	w.pos = size;
	if (info & XLP_FIRST_IS_CONTRECORD)
	{
		if (rem_len == 0)
			w.stop = "a continuation of no bytes";
		else
			go_on = continuation(&w, rem_len, carry_in, on_create, arg, result,
								 &done);
		w.pos = WAL_MAXALIGN(w.pos);
	}

	while (go_on && !done && w.stop == NULL && w.pos < w.len)
	{
		uint8_t rec[BK_WAL_CREATE_MAX];
		uint64_t lsn;
		uint32_t tot_len = 0;
		size_t got;
		uint8_t rmid;
		uint8_t rmgr_info;

		if ((w.pos & (w.blcksz - 1)) == 0)
		{
			if (!page_header(&w, w.pos, &size, &info, &rem_len))
				break;
			if (info & XLP_FIRST_IS_CONTRECORD)
			{
				w.stop = "a page continuing a record where one begins";
				break;
			}
			w.pos += size;
		}
		lsn = w.base + w.pos;

		/*
		 * Most records lie whole within their page: skip them without
		 * copying (a segment holds up to a few hundred thousand).
		 */
		if ((w.pos & (w.blcksz - 1)) + SIZE_OF_XLOG_RECORD <= w.blcksz)
		{
			const uint8_t *header = w.segment + w.pos;

			tot_len = get32(header);
			if (tot_len >= SIZE_OF_XLOG_RECORD &&
				(w.pos & (w.blcksz - 1)) + tot_len <= w.blcksz &&
				!may_be_create(header, SIZE_OF_XLOG_RECORD) &&
				!(header[RECORD_RMID_OFFSET] == RM_XLOG_ID &&
				  (header[RECORD_INFO_OFFSET] & XLR_RMGR_INFO_MASK) ==
					  XLOG_SWITCH))
			{
				w.pos = WAL_MAXALIGN(w.pos + tot_len);
				result->records++;
				continue;
			}
		}

		/* The header, perhaps split across pages or cut by the end. */
		got = record_bytes(&w, rec, 4, 0);
		if (got == 4)
		{
			tot_len = get32(rec);
			if (tot_len == 0)
			{
				w.stop = "the end of WAL (zeros)";
				break;
			}
			if (tot_len < SIZE_OF_XLOG_RECORD)
			{
				w.stop = "a record shorter than its header";
				break;
			}
			got +=
				record_bytes(&w, rec + 4, SIZE_OF_XLOG_RECORD - 4, tot_len - 4);
		}
		if (got < SIZE_OF_XLOG_RECORD)
		{
			if (w.stop == NULL && may_be_create(rec, got))
				set_carry(&w, result, lsn, rec, got);
			break;
		}
		rmid = rec[RECORD_RMID_OFFSET];
		rmgr_info = rec[RECORD_INFO_OFFSET] & XLR_RMGR_INFO_MASK;

		if (may_be_create(rec, got))
		{
			size_t want = tot_len - SIZE_OF_XLOG_RECORD;

			got = record_bytes(&w, rec + SIZE_OF_XLOG_RECORD, want, want);
			if (got < want)
			{
				if (w.stop == NULL)
					set_carry(&w, result, lsn, rec, SIZE_OF_XLOG_RECORD + got);
				break;
			}
			go_on = whole_record(rec, tot_len, lsn, on_create, arg);
		}
		else
		{
			size_t want = tot_len - SIZE_OF_XLOG_RECORD;

			if (record_bytes(&w, NULL, want, want) < want)
				break;
		}
		result->records++;
		w.pos = WAL_MAXALIGN(w.pos);
		/* The rest of the segment after a switch is not WAL. */
		if (rmid == RM_XLOG_ID && rmgr_info == XLOG_SWITCH)
		{
			w.stop = "an XLOG_SWITCH record";
			break;
		}
	}
	result->end_lsn = w.base + (w.pos < w.len ? w.pos : w.len);
	result->stop = w.stop;
	return go_on;
}
