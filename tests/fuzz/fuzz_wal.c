/*
 * fuzz_wal.c
 *		libFuzzer target: the WAL walker bk wal-get runs over every segment
 *		it serves (cli/postgres/wal_scan.c).  The input is a segment of
 *		1 KiB pages (its length rounded down to whole pages) in a buffer of
 *		exactly that size; the bytes after it are a carry from the segment
 *		before.  Unless the first page's padding byte 20 is odd, every
 *		page's magic and address are made valid, so that the fuzzer spends
 *		its time on the records rather than on the page checks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wal_scan.h"

#define PAGE 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
count_create(void *arg, const BkWalTablespaceCreate *create)
{
	size_t *count = arg;

	/* The path is terminated within its buffer. */
	if (memchr(create->path, '\0', sizeof(create->path)) == NULL)
		abort();
	(*count)++;
	return *count < 1000;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t len = size / PAGE * PAGE;
	uint8_t *segment;
	BkWalCarry *carry_in = NULL;
	BkWalCarry carry_out;
	BkWalScanResult result = {.carry = &carry_out};
	size_t count = 0;

	if (len == 0 || len > 64 * PAGE)
		return 0;
	segment = malloc(len);
	memcpy(segment, data, len);
	if ((segment[20] & 1) == 0)
	{
		uint32_t seg_size = (uint32_t) len;
		uint32_t blcksz = PAGE;
		uint16_t magic = 0xD110;

		segment[2] |= 0x02; /* XLP_LONG_HEADER */
		memcpy(segment + 32, &seg_size, 4);
		memcpy(segment + 36, &blcksz, 4);
		for (size_t page = 0; page < len; page += PAGE)
		{
			uint64_t addr = page;

			memcpy(segment + page, &magic, 2);
			memcpy(segment + page + 8, &addr, 8);
		}
	}
	if (size - len >= 8)
	{
		carry_in = calloc(1, sizeof(*carry_in));
		carry_in->next_lsn = 0;
		carry_in->lsn = UINT64_MAX - 7;
		carry_in->len = (uint32_t) (size - len);
		if (carry_in->len > sizeof(carry_in->bytes))
			carry_in->len = sizeof(carry_in->bytes);
		memcpy(carry_in->bytes, data + len, carry_in->len);
	}
	bk_wal_scan_segment(segment, len, carry_in, count_create, &count, &result);
	if (result.has_carry && carry_out.len > sizeof(carry_out.bytes))
		abort();
	free(carry_in);
	free(segment);
	return 0;
}
