/*
 * bk_crypto.h
 *		The cryptographic primitives bk uses, all through OpenSSL's EVP API.
 *
 * Envelope encryption (docs/architecture.md, "Trust"): every object gets a
 * fresh random 256-bit data key.  The data key is sealed to the recipient's
 * X25519 public key: an ephemeral X25519 key pair is made, the shared secret
 * is run through HKDF-SHA-256 (salt = ephemeral public || recipient public)
 * into a key-encryption key, and AES-256-GCM seals the data key under
 * it.  Sources therefore need only the public key; only the holder of the
 * private key can recover any data key.
 *
 * The data itself is AES-256-GCM under the data key.  Because the data key
 * is fresh per object attempt and never reused, the chunk index makes a
 * nonce that never repeats under one key, with no random-nonce birthday
 * bound to worry about.
 *
 * Nothing here allocates secrets on the heap without wiping them.
 */
#ifndef BK_CRYPTO_H
#define BK_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "bk_error.h"

#define BK_X25519_KEY_LEN 32
#define BK_DATA_KEY_LEN   32
#define BK_GCM_TAG_LEN    16
#define BK_GCM_NONCE_LEN  12
#define BK_SHA256_LEN     32
#define BK_SEALED_KEY_LEN (BK_DATA_KEY_LEN + BK_GCM_TAG_LEN)

/* Fill buf with len bytes from OpenSSL's CSPRNG. */
extern bool bk_random_bytes(void *buf, size_t len, BkError *err);

/* One-shot SHA-256 and HMAC-SHA-256. */
extern bool bk_sha256(const void *data, size_t len, uint8_t out[BK_SHA256_LEN],
					  BkError *err);
extern bool bk_hmac_sha256(const uint8_t *key, size_t key_len, const void *data,
						   size_t len, uint8_t out[BK_SHA256_LEN],
						   BkError *err);

/* HKDF-SHA-256 (RFC 5869), extract and expand. */
extern bool bk_hkdf_sha256(const uint8_t *ikm, size_t ikm_len,
						   const uint8_t *salt, size_t salt_len,
						   const char *info, uint8_t *out, size_t out_len,
						   BkError *err);

/* Incremental SHA-256. */
typedef struct BkSha256 BkSha256;
extern BkSha256 *bk_sha256_new(BkError *err);
extern bool bk_sha256_reset(BkSha256 *ctx, BkError *err);
extern bool bk_sha256_update(BkSha256 *ctx, const void *data, size_t len,
							 BkError *err);
extern bool bk_sha256_final(BkSha256 *ctx, uint8_t out[BK_SHA256_LEN],
							BkError *err);
extern void bk_sha256_free(BkSha256 *ctx);

/* X25519 key pairs. */
extern bool bk_x25519_generate(uint8_t private_key[BK_X25519_KEY_LEN],
							   uint8_t public_key[BK_X25519_KEY_LEN],
							   BkError *err);
extern bool
bk_x25519_public_from_private(const uint8_t private_key[BK_X25519_KEY_LEN],
							  uint8_t public_key[BK_X25519_KEY_LEN],
							  BkError *err);

/*
 * Seal a data key to a recipient.  Writes the ephemeral public key and the
 * sealed key (ciphertext || tag).  aad binds the envelope to its context
 * (key id and attempt id): it must be given again, byte for byte, to unseal.
 */
extern bool bk_seal_data_key(const uint8_t recipient_public[BK_X25519_KEY_LEN],
							 const uint8_t data_key[BK_DATA_KEY_LEN],
							 const uint8_t *aad, size_t aad_len,
							 uint8_t ephemeral_public[BK_X25519_KEY_LEN],
							 uint8_t sealed[BK_SEALED_KEY_LEN], BkError *err);

/*
 * Unseal with the recipient's private key.  Fails with BK_ERR_KEY when the
 * envelope does not open: a wrong private key, or a tampered envelope.
 */
extern bool
bk_unseal_data_key(const uint8_t recipient_private[BK_X25519_KEY_LEN],
				   const uint8_t recipient_public[BK_X25519_KEY_LEN],
				   const uint8_t ephemeral_public[BK_X25519_KEY_LEN],
				   const uint8_t sealed[BK_SEALED_KEY_LEN], const uint8_t *aad,
				   size_t aad_len, uint8_t data_key[BK_DATA_KEY_LEN],
				   BkError *err);

/*
 * The same with the private key loaded once, for many envelopes (a
 * decoder keeps one per key of its ring).
 */
typedef struct BkUnsealer BkUnsealer;
extern BkUnsealer *
bk_unsealer_new(const uint8_t recipient_private[BK_X25519_KEY_LEN],
				const uint8_t recipient_public[BK_X25519_KEY_LEN],
				BkError *err);
extern void bk_unsealer_free(BkUnsealer *unsealer);
extern bool bk_unsealer_open(BkUnsealer *unsealer,
							 const uint8_t ephemeral_public[BK_X25519_KEY_LEN],
							 const uint8_t sealed[BK_SEALED_KEY_LEN],
							 const uint8_t *aad, size_t aad_len,
							 uint8_t data_key[BK_DATA_KEY_LEN], BkError *err);

/*
 * AES-256-GCM with one key and many nonces: one context per object keeps the
 * key schedule across chunks.
 */
typedef struct BkAead BkAead;
extern BkAead *bk_aead_new(BkError *err);
extern void bk_aead_free(BkAead *aead);
extern bool bk_aead_set_key(BkAead *aead, const uint8_t key[BK_DATA_KEY_LEN],
							BkError *err);
extern bool bk_aead_encrypt(BkAead *aead, const uint8_t nonce[BK_GCM_NONCE_LEN],
							const uint8_t *aad, size_t aad_len,
							const uint8_t *plain, size_t len, uint8_t *cipher,
							uint8_t tag[BK_GCM_TAG_LEN], BkError *err);

/* Fails with BK_ERR_AUTH when the tag does not verify. */
extern bool bk_aead_decrypt(BkAead *aead, const uint8_t nonce[BK_GCM_NONCE_LEN],
							const uint8_t *aad, size_t aad_len,
							const uint8_t *cipher, size_t len, uint8_t *plain,
							const uint8_t tag[BK_GCM_TAG_LEN], BkError *err);

/* Constant-time comparison and wiping, for secrets and MACs. */
extern bool bk_secure_equal(const void *a, const void *b, size_t len);
extern void bk_secure_wipe(void *buf, size_t len);

#endif /* BK_CRYPTO_H */
