/*
 * bk_crc32c.c
 *		CRC-32C with the SSE 4.2 instruction when the CPU has it, a
 *		slicing-by-8 table otherwise.
 *
 * None of our dependencies exports CRC-32C (zlib's crc32 is the IEEE
 * polynomial, PostgreSQL's pg_crc32c lives in the server only), so it is
 * written here once.  Interleaving three independent streams would go
 * faster still, but one stream already runs well above the AES-GCM and
 * SHA-256 throughput that bound the encoder, so it is not worth the code.
 */
#include "bk_crc32c.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <nmmintrin.h>
#define BK_CRC32C_X86 1
#endif

#define CRC32C_POLY_REFLECTED 0x82F63B78u

static uint32_t crc32c_table[8][256];
static int crc32c_initialised;

#ifdef BK_CRC32C_X86
static int crc32c_have_sse42;
#endif

static void
crc32c_init(void)
{
	for (uint32_t byte = 0; byte < 256; byte++)
	{
		uint32_t crc = byte;

		for (int bit = 0; bit < 8; bit++)
			crc = (crc & 1) ? (crc >> 1) ^ CRC32C_POLY_REFLECTED : crc >> 1;
		crc32c_table[0][byte] = crc;
	}
	for (uint32_t byte = 0; byte < 256; byte++)
	{
		uint32_t crc = crc32c_table[0][byte];

		for (int slice = 1; slice < 8; slice++)
		{
			crc = crc32c_table[0][crc & 0xff] ^ (crc >> 8);
			crc32c_table[slice][byte] = crc;
		}
	}
#ifdef BK_CRC32C_X86
	{
		unsigned int eax, ebx, ecx, edx;

		if (__get_cpuid(1, &eax, &ebx, &ecx, &edx))
			crc32c_have_sse42 = (ecx & bit_SSE4_2) != 0;
	}
#endif
	/*
	 * Benign race: two threads may both fill the identical tables; the flag
	 * is only set once they are complete.
	 */
	__atomic_store_n(&crc32c_initialised, 1, __ATOMIC_RELEASE);
}

static uint32_t
crc32c_software(uint32_t crc, const unsigned char *p, size_t len)
{
	while (len >= 8)
	{
		uint32_t lo;
		uint32_t hi;

		memcpy(&lo, p, 4);
		memcpy(&hi, p + 4, 4);
		lo ^= crc;
		crc = crc32c_table[7][lo & 0xff] ^ crc32c_table[6][(lo >> 8) & 0xff] ^
			  crc32c_table[5][(lo >> 16) & 0xff] ^ crc32c_table[4][lo >> 24] ^
			  crc32c_table[3][hi & 0xff] ^ crc32c_table[2][(hi >> 8) & 0xff] ^
			  crc32c_table[1][(hi >> 16) & 0xff] ^ crc32c_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#ifdef BK_CRC32C_X86
__attribute__((target("sse4.2"))) static uint32_t
crc32c_sse42(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t crc64 = crc;

	while (len >= 8)
	{
		uint64_t word;

		memcpy(&word, p, 8);
		crc64 = _mm_crc32_u64(crc64, word);
		p += 8;
		len -= 8;
	}
	crc = (uint32_t) crc64;
	while (len-- > 0)
		crc = _mm_crc32_u8(crc, *p++);
	return crc;
}
#endif

uint32_t
bk_crc32c(uint32_t crc, const void *data, size_t len)
{
	if (!__atomic_load_n(&crc32c_initialised, __ATOMIC_ACQUIRE))
		crc32c_init();
	crc = ~crc;
#ifdef BK_CRC32C_X86
	if (crc32c_have_sse42)
		return ~crc32c_sse42(crc, data, len);
#endif
	return ~crc32c_software(crc, data, len);
}

/*
 * CRC combination works in GF(2): appending len zero bytes to a message is
 * a linear map of its CRC, a 32x32 bit matrix; the matrix for len is built
 * by squaring the one-zero-bit matrix (as zlib's crc32_combine does).
 */
static uint32_t
gf2_matrix_times(const uint32_t *matrix, uint32_t vector)
{
	uint32_t sum = 0;

	for (; vector != 0; vector >>= 1, matrix++)
		if (vector & 1)
			sum ^= *matrix;
	return sum;
}

static void
gf2_matrix_square(uint32_t *square, const uint32_t *matrix)
{
	for (int row = 0; row < 32; row++)
		square[row] = gf2_matrix_times(matrix, matrix[row]);
}

uint32_t
bk_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
	uint32_t even[32];
	uint32_t odd[32];
	uint32_t row = 1;

	if (len_b == 0)
		return crc_a;
	/* The operator for one zero bit, then two, then four. */
	odd[0] = CRC32C_POLY_REFLECTED;
	for (int bit = 1; bit < 32; bit++)
	{
		odd[bit] = row;
		row <<= 1;
	}
	gf2_matrix_square(even, odd);
	gf2_matrix_square(odd, even);
	/* Apply len_b zero bytes to crc_a, one bit of len_b at a time. */
	do
	{
		gf2_matrix_square(even, odd);
		if (len_b & 1)
			crc_a = gf2_matrix_times(even, crc_a);
		len_b >>= 1;
		if (len_b == 0)
			break;
		gf2_matrix_square(odd, even);
		if (len_b & 1)
			crc_a = gf2_matrix_times(odd, crc_a);
		len_b >>= 1;
	} while (len_b != 0);
	return crc_a ^ crc_b;
}
