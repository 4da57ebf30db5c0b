/*
 * bk_crc32c.h
 *		CRC-32C (Castagnoli) of a buffer.
 *
 * Every frame ends with a CRC-32C of its bytes so that the parties without
 * keys (the shipper, a verifier, a curious auditor) can detect corruption in
 * transit and at rest.  Tampering is the AEAD's job; this only has to be
 * fast, because it runs over every byte that is archived.  CRC-32C has a
 * dedicated instruction on x86-64 (SSE 4.2) and ARMv8, and is what iSCSI,
 * ext4 and PostgreSQL's WAL use for the same purpose.
 */
#ifndef BK_CRC32C_H
#define BK_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: start with crc = 0 for a new buffer. */
extern uint32_t bk_crc32c(uint32_t crc, const void *data, size_t len);

/*
 * The CRC of A followed by B, from the CRC of A, the CRC of B and B's
 * length: the CRCs of parts read by different processes make the whole's.
 */
extern uint32_t bk_crc32c_combine(uint32_t crc_a, uint32_t crc_b,
								  uint64_t len_b);

#endif /* BK_CRC32C_H */
