/*
 * bk_snapshot_format.h
 *		What the objects of a PostgreSQL snapshot are called and how an
 *		incremental file object starts (docs/snapshot-format.md): written by
 *		the extension, read by bk restore and bk verify.
 */
#ifndef BK_SNAPSHOT_FORMAT_H
#define BK_SNAPSHOT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Object names are "<snapshot id>/<part>"; data files "<id>/data/<path>",
 * or, for a file sent in ranges, "<id>/range/<path>/<offset>", with <path>
 * encoded by bk_snapshot_path_encode.
 */
#define BK_SNAPSHOT_RECORD   "snapshot.json"
#define BK_SNAPSHOT_LABEL    "backup_label"
#define BK_SNAPSHOT_MAP      "tablespace_map"
#define BK_SNAPSHOT_MANIFEST "backup_manifest"
#define BK_SNAPSHOT_DATA     "data"
#define BK_SNAPSHOT_RANGE    "range"

/*
 * Record formats: 2 adds ranges (files[].ranges); 3 adds "path_hex", a
 * path that is not UTF-8 as hex of its bytes.  The extension writes 3 only
 * when a path needed it, so older readers still take every other record;
 * readers take all three.
 */
#define BK_SNAPSHOT_RECORD_FORMAT_RANGES    2
#define BK_SNAPSHOT_RECORD_FORMAT_HEX_PATHS 3
#define BK_SNAPSHOT_RECORD_FORMAT           BK_SNAPSHOT_RECORD_FORMAT_HEX_PATHS

/*
 * An incremental file object: this header, the changed blocks' numbers
 * (4 bytes each, big-endian, ascending), then the blocks themselves.
 */
#define BK_INCR_MAGIC      "BKINCR01"
#define BK_INCR_MAGIC_LEN  8
#define BK_INCR_HEADER_LEN 24

typedef struct BkIncrHeader
{
	uint64_t file_length; /* of the whole file, as the record says */
	uint32_t block_size;
	uint32_t block_count; /* blocks that follow */
} BkIncrHeader;

/*
 * A data directory path as it appears in object names: bytes outside
 * 0x21-0x7E, '%' and '\' as %XX, and so is a '.' that starts a path
 * component (repositories keep names starting with a dot for themselves, so
 * ".git/config" is "%2Egit/config").  False if out_len is too small.
 */
extern bool bk_snapshot_path_encode(const char *path, char *out,
									size_t out_len);

extern void bk_incr_header_write(uint8_t out[BK_INCR_HEADER_LEN],
								 const BkIncrHeader *header);

/* False if the bytes do not start with the magic. */
extern bool bk_incr_header_read(const uint8_t in[BK_INCR_HEADER_LEN],
								BkIncrHeader *header);

#endif /* BK_SNAPSHOT_FORMAT_H */
