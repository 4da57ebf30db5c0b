/*
 * bk_crc32c.c
 *		CRC-32C with the SSE 4.2 instruction when the CPU has it, a
 *		slicing-by-8 table otherwise.
 *
 * None of our dependencies exports CRC-32C (zlib's crc32 is the IEEE
 * polynomial, PostgreSQL's pg_crc32c lives in the server only), so it is
 * written here once.  The instruction takes three cycles and can start one
 * per cycle, so a long buffer is cut into three streams computed together
 * and joined by the linear map "append this many zero bytes" (tables built
 * once, as in Mark Adler's crc32c.c): three times one stream's speed.  That
 * matters for the CRC-32C of whole files a restore writes for PostgreSQL's
 * backup_manifest, which one stream made a tenth of a restore's CPU.
 */
#include "bk_crc32c.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <nmmintrin.h>
#define BK_CRC32C_X86 1
#endif

#define CRC32C_POLY_REFLECTED 0x82F63B78u

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

/* odd: the operator that appends four zero bits (even: scratch). */
static void
gf2_four_zero_bits(uint32_t *even, uint32_t *odd)
{
	uint32_t row = 1;

	/* One zero bit, then two, then four. */
	odd[0] = CRC32C_POLY_REFLECTED;
	for (int bit = 1; bit < 32; bit++)
	{
		odd[bit] = row;
		row <<= 1;
	}
	gf2_matrix_square(even, odd);
	gf2_matrix_square(odd, even);
}

/*
 * The three streams of the SSE 4.2 path: LONG_BLOCK bytes each while the
 * buffer is long enough, then SHORT_BLOCK.  crc32c_long_zeros[k][byte] is
 * the map "append LONG_BLOCK zero bytes" applied to byte's value at byte k
 * of a CRC; likewise for SHORT_BLOCK.
 */
#ifdef BK_CRC32C_X86
#define LONG_BLOCK  8192
#define SHORT_BLOCK 256

static uint32_t crc32c_long_zeros[4][256];
static uint32_t crc32c_short_zeros[4][256];
#endif

static uint32_t crc32c_table[8][256];
static int crc32c_initialised;

#ifdef BK_CRC32C_X86
static int crc32c_have_sse42;
#endif

#ifdef BK_CRC32C_X86
/* The operator that appends len zero bytes (a power of two) to a CRC. */
static void
crc32c_zeros_operator(uint32_t *even, size_t len)
{
	uint32_t odd[32];

	gf2_four_zero_bits(even, odd);
	/* Eight bits (one byte), then each square doubles the length. */
	for (;;)
	{
		gf2_matrix_square(even, odd);
		len >>= 1;
		if (len == 0)
			return;
		gf2_matrix_square(odd, even);
		len >>= 1;
		if (len == 0)
		{
			memcpy(even, odd, sizeof(odd));
			return;
		}
	}
}

static void
crc32c_zeros_table(uint32_t zeros[4][256], size_t len)
{
	uint32_t op[32];

	crc32c_zeros_operator(op, len);
	for (uint32_t byte = 0; byte < 256; byte++)
		for (int shift = 0; shift < 4; shift++)
			zeros[shift][byte] = gf2_matrix_times(op, byte << (8 * shift));
}
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
	crc32c_zeros_table(crc32c_long_zeros, LONG_BLOCK);
	crc32c_zeros_table(crc32c_short_zeros, SHORT_BLOCK);
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
static inline uint32_t
crc32c_shift(const uint32_t zeros[4][256], uint32_t crc)
{
	return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^
		   zeros[2][(crc >> 16) & 0xff] ^ zeros[3][crc >> 24];
}

/*
 * Three blocks of block bytes at a time while len allows: each stream's
 * CRC starts from zero, and the one before is moved past it with zeros.
 */
__attribute__((target("sse4.2"))) static inline uint64_t
crc32c_sse42_streams(uint64_t crc0, const unsigned char **next, size_t *len,
					 size_t block, const uint32_t zeros[4][256])
{
	while (*len >= 3 * block)
	{
		const unsigned char *p = *next;
		const unsigned char *end = p + block;
		uint64_t crc1 = 0;
		uint64_t crc2 = 0;

		do
		{
			uint64_t word0;
			uint64_t word1;
			uint64_t word2;

			memcpy(&word0, p, 8);
			memcpy(&word1, p + block, 8);
			memcpy(&word2, p + 2 * block, 8);
			crc0 = _mm_crc32_u64(crc0, word0);
			crc1 = _mm_crc32_u64(crc1, word1);
			crc2 = _mm_crc32_u64(crc2, word2);
			p += 8;
		} while (p < end);
		crc0 = crc32c_shift(zeros, (uint32_t) crc0) ^ crc1;
		crc0 = crc32c_shift(zeros, (uint32_t) crc0) ^ crc2;
		*next += 3 * block;
		*len -= 3 * block;
	}
	return crc0;
}

__attribute__((target("sse4.2"))) static uint32_t
crc32c_sse42(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t crc64 = crc;

	crc64 =
		crc32c_sse42_streams(crc64, &p, &len, LONG_BLOCK, crc32c_long_zeros);
	crc64 =
		crc32c_sse42_streams(crc64, &p, &len, SHORT_BLOCK, crc32c_short_zeros);
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

uint32_t
bk_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
	uint32_t even[32];
	uint32_t odd[32];

	if (len_b == 0)
		return crc_a;
	gf2_four_zero_bits(even, odd);
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
