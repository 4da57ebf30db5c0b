/*
 * bk_snapshot_format.c
 *		The incremental file header.  See bk_snapshot_format.h.
 */
#include "bk_snapshot_format.h"

#include <string.h>

#include "bk_util.h"

void
bk_incr_header_write(uint8_t out[BK_INCR_HEADER_LEN],
					 const BkIncrHeader *header)
{
	memcpy(out, BK_INCR_MAGIC, BK_INCR_MAGIC_LEN);
	bk_put_be64(out + 8, header->file_length);
	bk_put_be32(out + 16, header->block_size);
	bk_put_be32(out + 20, header->block_count);
}

bool
bk_incr_header_read(const uint8_t in[BK_INCR_HEADER_LEN], BkIncrHeader *header)
{
	if (memcmp(in, BK_INCR_MAGIC, BK_INCR_MAGIC_LEN) != 0)
		return false;
	header->file_length = bk_get_be64(in + 8);
	header->block_size = bk_get_be32(in + 16);
	header->block_count = bk_get_be32(in + 20);
	return true;
}
