/*
 * bk_mariadb_part.h
 *		How large a part of a MariaDB snapshot's table data may be: the
 *		agent cuts parts within it, bk restore loads no larger part, bk
 *		verify reports one that is larger.
 */
#ifndef BK_MARIADB_PART_H
#define BK_MARIADB_PART_H

#include <stdint.h>

/*
 * The largest part, decrypted, in bytes of LOAD DATA form.  bk restore
 * holds two parts of each loader in memory, so this bounds its memory.
 */
#define BK_MARIADB_PART_MAX ((uint64_t) 256 * 1024 * 1024)

typedef enum BkMariadbPartRow
{
	BK_MARIADB_PART_ROW_APPEND,   /* the row fits in the current part */
	BK_MARIADB_PART_ROW_NEW_PART, /* the part ends before the row */
	BK_MARIADB_PART_ROW_TOO_LARGE /* no part can hold the row */
} BkMariadbPartRow;

/*
 * Where a row of row_len bytes (LOAD DATA form) goes after a part of
 * part_len bytes: a row is never split across parts (each part is loaded
 * by a LOAD DATA of its own).
 */
static inline BkMariadbPartRow
bk_mariadb_part_row(uint64_t part_len, uint64_t row_len)
{
	if (row_len > BK_MARIADB_PART_MAX)
		return BK_MARIADB_PART_ROW_TOO_LARGE;
	if (part_len + row_len > BK_MARIADB_PART_MAX)
		return BK_MARIADB_PART_ROW_NEW_PART;
	return BK_MARIADB_PART_ROW_APPEND;
}

#endif /* BK_MARIADB_PART_H */
