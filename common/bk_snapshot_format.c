/*
 * bk_snapshot_format.c
 *		Object names of data files and the incremental file header.  See
 *		bk_snapshot_format.h.
 */
#include "bk_snapshot_format.h"

#include <string.h>

#include "bk_util.h"

bool
bk_snapshot_path_encode(const char *path, char *out, size_t out_len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t used = 0;

	for (const unsigned char *p = (const unsigned char *) path; *p; p++)
	{
		bool starts_component =
			p == (const unsigned char *) path || p[-1] == '/';

		if (*p < 0x21 || *p > 0x7e || *p == '%' || *p == '\\' ||
			(*p == '.' && starts_component))
		{
			if (used + 3 >= out_len)
				return false;
			out[used++] = '%';
			out[used++] = hex[*p >> 4];
			out[used++] = hex[*p & 0x0f];
		}
		else
		{
			if (used + 1 >= out_len)
				return false;
			out[used++] = (char) *p;
		}
	}
	if (used >= out_len)
		return false;
	out[used] = '\0';
	return true;
}

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
