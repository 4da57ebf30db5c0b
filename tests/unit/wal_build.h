/*
 * wal_build.h
 *		Hand-built PostgreSQL 15 WAL segments for the WAL walker's tests and
 *		fuzz seeds: page headers (long on the first page, short after),
 *		records laid out MAXALIGNed, split across pages with
 *		XLP_FIRST_IS_CONTRECORD and xlp_rem_len as PostgreSQL writes them.
 */
#ifndef BK_WAL_BUILD_H
#define BK_WAL_BUILD_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct WalBuild
{
	uint8_t *buf;
	size_t len;
	uint32_t blcksz;
	uint64_t base;
	size_t pos;
} WalBuild;

static inline void
wal_put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

static inline void
wal_put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static inline void
wal_put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, sizeof(v));
}

static inline size_t
wal_page_header_size(size_t page)
{
	return page == 0 ? 40 : 24;
}

/*
 * A zeroed segment of len bytes starting at LSN base, every page with its
 * header; first_rem_len (if not 0): the first page continues a record.
 */
static inline void
wal_build_init(WalBuild *b, size_t len, uint32_t blcksz, uint64_t base,
			   uint32_t first_rem_len)
{
	b->buf = calloc(1, len);
	b->len = len;
	b->blcksz = blcksz;
	b->base = base;
	for (size_t page = 0; page < len; page += blcksz)
	{
		uint8_t *p = b->buf + page;

		wal_put16(p, 0xD110);
		wal_put16(p + 2, page == 0 ? 0x0002 : 0);
		wal_put32(p + 4, 1);
		wal_put64(p + 8, base + page);
		if (page == 0)
		{
			wal_put64(p + 24, 7301234567890123456ull);
			wal_put32(p + 32, (uint32_t) len);
			wal_put32(p + 36, blcksz);
		}
	}
	b->pos = wal_page_header_size(0);
	if (first_rem_len != 0)
	{
		wal_put16(b->buf + 2, 0x0002 | 0x0001);
		wal_put32(b->buf + 16, first_rem_len);
	}
}

/*
 * Write n bytes of a record whose remaining length from here is left,
 * marking each page it continues on.  Returns the bytes written (fewer at
 * the segment's end).
 */
static inline size_t
wal_build_bytes(WalBuild *b, const uint8_t *bytes, size_t n, size_t left)
{
	size_t done = 0;

	while (done < n && b->pos < b->len)
	{
		size_t page_end;
		size_t take;

		if (b->pos % b->blcksz == 0)
		{
			uint8_t *p = b->buf + b->pos;

			wal_put16(p + 2, 0x0001 | (b->pos == 0 ? 0x0002 : 0));
			wal_put32(p + 16, (uint32_t) (left - done));
			b->pos += wal_page_header_size(b->pos);
		}
		page_end = (b->pos / b->blcksz + 1) * b->blcksz;
		take = n - done;
		if (take > page_end - b->pos)
			take = page_end - b->pos;
		memcpy(b->buf + b->pos, bytes + done, take);
		b->pos += take;
		done += take;
	}
	return done;
}

/* Start the next record at its MAXALIGNed place; its LSN. */
static inline uint64_t
wal_build_record_start(WalBuild *b)
{
	b->pos = (b->pos + 7) & ~(size_t) 7;
	if (b->pos < b->len && b->pos % b->blcksz == 0)
		b->pos += wal_page_header_size(b->pos);
	return b->base + b->pos;
}

/* Append a whole record (rec, its xl_tot_len bytes); its LSN. */
static inline uint64_t
wal_build_record(WalBuild *b, const uint8_t *rec, size_t n)
{
	uint64_t lsn = wal_build_record_start(b);

	wal_build_bytes(b, rec, n, n);
	return lsn;
}

/* A record header: xl_tot_len, xl_xid, xl_prev, xl_info, xl_rmid. */
static inline void
wal_record_header(uint8_t *rec, uint32_t tot_len, uint64_t prev, uint8_t info,
				  uint8_t rmid)
{
	memset(rec, 0, 24);
	wal_put32(rec, tot_len);
	wal_put32(rec + 4, 1234);
	wal_put64(rec + 8, prev);
	rec[16] = info;
	rec[17] = rmid;
	wal_put32(rec + 20, 0xC0FFEE);
}

/*
 * A record of rmid/info, tot_len bytes: one block reference with data,
 * then short main data, filler bytes; tot_len at least 24 + 24.
 */
static inline size_t
wal_other_record(uint8_t *rec, uint32_t tot_len, uint8_t rmid, uint8_t info)
{
	size_t off = 24;
	uint32_t payload = tot_len - 24 - 20 - 2;

	wal_record_header(rec, tot_len, 0x1000028, info, rmid);
	rec[off++] = 0;    /* block 0 */
	rec[off++] = 0x20; /* BKPBLOCK_HAS_DATA, main fork */
	wal_put16(rec + off, (uint16_t) (payload > 0xFFFF ? 0 : payload));
	off += 2;
	memset(rec + off, 0, 12); /* RelFileNode */
	off += 12;
	wal_put32(rec + off, 7); /* block number */
	off += 4;
	rec[off++] = 255; /* XLR_BLOCK_ID_DATA_SHORT */
	rec[off++] = 0;
	memset(rec + off, 0xA5, tot_len - off);
	return tot_len;
}

/*
 * A CREATE TABLESPACE record (RM_TBLSPC_ID 5, info 0x00): xl_tblspc_create_rec
 * {oid, path}; with_origin puts an XLR_BLOCK_ID_ORIGIN block first.  The
 * data header is short or long as the length asks, as PostgreSQL does.
 */
static inline size_t
wal_create_record(uint8_t *rec, uint64_t prev, uint32_t oid, const char *path,
				  int with_origin)
{
	size_t main_len = 4 + strlen(path) + 1;
	size_t off = 24;

	if (with_origin)
	{
		rec[off++] = 253;
		wal_put16(rec + off, 1);
		off += 2;
	}
	if (main_len < 256)
	{
		rec[off++] = 255;
		rec[off++] = (uint8_t) main_len;
	}
	else
	{
		rec[off++] = 254;
		wal_put32(rec + off, (uint32_t) main_len);
		off += 4;
	}
	wal_put32(rec + off, oid);
	memcpy(rec + off + 4, path, strlen(path) + 1);
	off += main_len;
	{
		uint8_t header[24];

		wal_record_header(header, (uint32_t) off, prev, 0x00, 5);
		memcpy(rec, header, 24);
	}
	return off;
}

#endif /* BK_WAL_BUILD_H */
