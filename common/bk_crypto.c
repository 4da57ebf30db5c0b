/*
 * bk_crypto.c
 *		OpenSSL EVP wrappers: CSPRNG, SHA-256, HMAC, HKDF, X25519 sealing of
 *		data keys and AES-256-GCM.
 *
 * See bk_crypto.h for the construction.  Everything goes through EVP so that
 * OpenSSL picks the fastest implementation for the CPU (AES-NI/VAES, SHA-NI)
 * and a FIPS provider can be swapped in without touching this file.
 */
#include "bk_crypto.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

/* HKDF "info" for the key that seals a data key; versioned with the frame. */
#define BK_SEAL_INFO "bk v1 data key seal"

struct BkSha256
{
	EVP_MD_CTX *md;
};

struct BkAead
{
	EVP_CIPHER_CTX *ctx;
	EVP_CIPHER *cipher;
	bool has_key;
};

bool
bk_random_bytes(void *buf, size_t len, BkError *err)
{
	if (RAND_bytes(buf, (int) len) != 1)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO,
									"reading the random number generator");
	return true;
}

bool
bk_sha256(const void *data, size_t len, uint8_t out[BK_SHA256_LEN],
		  BkError *err)
{
	if (EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL) != 1)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO, "SHA-256");
	return true;
}

bool
bk_hmac_sha256(const uint8_t *key, size_t key_len, const void *data, size_t len,
			   uint8_t out[BK_SHA256_LEN], BkError *err)
{
	unsigned int out_len = 0;

	if (HMAC(EVP_sha256(), key, (int) key_len, data, len, out, &out_len) ==
			NULL ||
		out_len != BK_SHA256_LEN)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO, "HMAC-SHA-256");
	return true;
}

bool
bk_hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt,
			   size_t salt_len, const char *info, uint8_t *out, size_t out_len,
			   BkError *err)
{
	EVP_KDF *kdf;
	EVP_KDF_CTX *kctx;
	OSSL_PARAM params[5];
	OSSL_PARAM *p = params;
	bool ok;

	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	if (kdf == NULL)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO, "fetching HKDF");
	kctx = EVP_KDF_CTX_new(kdf);
	EVP_KDF_free(kdf);
	if (kctx == NULL)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO, "creating HKDF");

	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *) ikm,
											 ikm_len);
	if (salt_len > 0)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
												 (void *) salt, salt_len);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *) info,
											 strlen(info));
	*p = OSSL_PARAM_construct_end();

	ok = EVP_KDF_derive(kctx, out, out_len, params) == 1;
	EVP_KDF_CTX_free(kctx);
	if (!ok)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO, "HKDF-SHA-256");
	return true;
}

BkSha256 *
bk_sha256_new(BkError *err)
{
	BkSha256 *ctx = calloc(1, sizeof(*ctx));

	if (ctx == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	ctx->md = EVP_MD_CTX_new();
	if (ctx->md == NULL || !bk_sha256_reset(ctx, err))
	{
		if (ctx->md == NULL)
			bk_error_set_openssl(err, BK_ERR_NOMEM,
								 "creating a SHA-256 context");
		bk_sha256_free(ctx);
		return NULL;
	}
	return ctx;
}

bool
bk_sha256_reset(BkSha256 *ctx, BkError *err)
{
	if (EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO, "SHA-256 init");
	return true;
}

bool
bk_sha256_update(BkSha256 *ctx, const void *data, size_t len, BkError *err)
{
	if (len > 0 && EVP_DigestUpdate(ctx->md, data, len) != 1)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO, "SHA-256 update");
	return true;
}

bool
bk_sha256_final(BkSha256 *ctx, uint8_t out[BK_SHA256_LEN], BkError *err)
{
	if (EVP_DigestFinal_ex(ctx->md, out, NULL) != 1)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO, "SHA-256 final");
	return true;
}

void
bk_sha256_free(BkSha256 *ctx)
{
	if (ctx == NULL)
		return;
	EVP_MD_CTX_free(ctx->md);
	free(ctx);
}

bool
bk_x25519_generate(uint8_t private_key[BK_X25519_KEY_LEN],
				   uint8_t public_key[BK_X25519_KEY_LEN], BkError *err)
{
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	size_t priv_len = BK_X25519_KEY_LEN;
	size_t pub_len = BK_X25519_KEY_LEN;
	bool ok;

	if (pkey == NULL)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO,
									"X25519 key generation");
	ok = EVP_PKEY_get_raw_private_key(pkey, private_key, &priv_len) == 1 &&
		 EVP_PKEY_get_raw_public_key(pkey, public_key, &pub_len) == 1 &&
		 priv_len == BK_X25519_KEY_LEN && pub_len == BK_X25519_KEY_LEN;
	EVP_PKEY_free(pkey);
	if (!ok)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO,
									"exporting an X25519 key");
	return true;
}

bool
bk_x25519_public_from_private(const uint8_t private_key[BK_X25519_KEY_LEN],
							  uint8_t public_key[BK_X25519_KEY_LEN],
							  BkError *err)
{
	EVP_PKEY *pkey;
	size_t pub_len = BK_X25519_KEY_LEN;
	bool ok;

	pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, private_key,
										BK_X25519_KEY_LEN);
	if (pkey == NULL)
		return bk_error_set_openssl(err, BK_ERR_KEY,
									"loading an X25519 private key");
	ok = EVP_PKEY_get_raw_public_key(pkey, public_key, &pub_len) == 1 &&
		 pub_len == BK_X25519_KEY_LEN;
	EVP_PKEY_free(pkey);
	if (!ok)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO,
									"deriving an X25519 public key");
	return true;
}

/*
 * x25519_derive
 *		Shared secret between our private key and a peer's public key.
 *
 * OpenSSL rejects an all-zero result (a small-order peer point), which is
 * exactly the check RFC 7748 asks of protocols like this one.
 */
static bool
x25519_derive(EVP_PKEY *own, const uint8_t peer_public[BK_X25519_KEY_LEN],
			  uint8_t secret[BK_X25519_KEY_LEN], BkErrorCode code, BkError *err)
{
	EVP_PKEY *peer;
	EVP_PKEY_CTX *ctx = NULL;
	size_t secret_len = BK_X25519_KEY_LEN;
	bool ok;

	peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer_public,
									   BK_X25519_KEY_LEN);
	if (peer == NULL)
		return bk_error_set_openssl(err, code, "loading an X25519 public key");
	ctx = EVP_PKEY_CTX_new(own, NULL);
	ok = ctx != NULL && EVP_PKEY_derive_init(ctx) == 1 &&
		 EVP_PKEY_derive_set_peer(ctx, peer) == 1 &&
		 EVP_PKEY_derive(ctx, secret, &secret_len) == 1 &&
		 secret_len == BK_X25519_KEY_LEN;
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(peer);
	if (!ok)
		return bk_error_set_openssl(err, code, "X25519 key agreement");
	return true;
}

/* Key-encryption key from the shared secret, bound to both public keys. */
static bool
seal_kek(const uint8_t secret[BK_X25519_KEY_LEN],
		 const uint8_t ephemeral_public[BK_X25519_KEY_LEN],
		 const uint8_t recipient_public[BK_X25519_KEY_LEN],
		 uint8_t kek[BK_DATA_KEY_LEN], BkError *err)
{
	uint8_t salt[2 * BK_X25519_KEY_LEN];

	memcpy(salt, ephemeral_public, BK_X25519_KEY_LEN);
	memcpy(salt + BK_X25519_KEY_LEN, recipient_public, BK_X25519_KEY_LEN);
	return bk_hkdf_sha256(secret, BK_X25519_KEY_LEN, salt, sizeof(salt),
						  BK_SEAL_INFO, kek, BK_DATA_KEY_LEN, err);
}

/*
 * The key-encryption key is used exactly once (the ephemeral key pair is
 * fresh), so a fixed all-zero nonce is safe here.
 */
static const uint8_t seal_nonce[BK_GCM_NONCE_LEN];

bool
bk_seal_data_key(const uint8_t recipient_public[BK_X25519_KEY_LEN],
				 const uint8_t data_key[BK_DATA_KEY_LEN], const uint8_t *aad,
				 size_t aad_len, uint8_t ephemeral_public[BK_X25519_KEY_LEN],
				 uint8_t sealed[BK_SEALED_KEY_LEN], BkError *err)
{
	EVP_PKEY *ephemeral;
	uint8_t secret[BK_X25519_KEY_LEN];
	uint8_t kek[BK_DATA_KEY_LEN];
	size_t pub_len = BK_X25519_KEY_LEN;
	BkAead *aead = NULL;
	bool ok = false;

	ephemeral = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	if (ephemeral == NULL)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO,
									"ephemeral X25519 key generation");
	if (EVP_PKEY_get_raw_public_key(ephemeral, ephemeral_public, &pub_len) != 1)
	{
		bk_error_set_openssl(err, BK_ERR_CRYPTO,
							 "exporting the ephemeral public key");
		goto done;
	}
	if (!x25519_derive(ephemeral, recipient_public, secret, BK_ERR_KEY, err))
	{
		bk_error_hint(err, "The recipient public key is not a usable X25519 "
						   "key: regenerate it with \"bk keygen\".");
		goto done;
	}
	if (!seal_kek(secret, ephemeral_public, recipient_public, kek, err))
		goto done;
	aead = bk_aead_new(err);
	if (aead == NULL || !bk_aead_set_key(aead, kek, err))
		goto done;
	ok =
		bk_aead_encrypt(aead, seal_nonce, aad, aad_len, data_key,
						BK_DATA_KEY_LEN, sealed, sealed + BK_DATA_KEY_LEN, err);
done:
	bk_aead_free(aead);
	EVP_PKEY_free(ephemeral);
	bk_secure_wipe(secret, sizeof(secret));
	bk_secure_wipe(kek, sizeof(kek));
	return ok;
}

/*
 * A private key loaded once: OpenSSL 3 builds a key object through its
 * provider machinery, which costs more than the X25519 agreement itself,
 * and a restore or verify opens one envelope per object.
 */
struct BkUnsealer
{
	EVP_PKEY *own;
	uint8_t recipient_public[BK_X25519_KEY_LEN];
	BkAead *aead;
};

BkUnsealer *
bk_unsealer_new(const uint8_t recipient_private[BK_X25519_KEY_LEN],
				const uint8_t recipient_public[BK_X25519_KEY_LEN], BkError *err)
{
	BkUnsealer *unsealer = calloc(1, sizeof(*unsealer));

	if (unsealer == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	memcpy(unsealer->recipient_public, recipient_public, BK_X25519_KEY_LEN);
	unsealer->own = EVP_PKEY_new_raw_private_key(
		EVP_PKEY_X25519, NULL, recipient_private, BK_X25519_KEY_LEN);
	if (unsealer->own == NULL)
	{
		bk_error_set_openssl(err, BK_ERR_KEY, "loading the X25519 private key");
		bk_unsealer_free(unsealer);
		return NULL;
	}
	unsealer->aead = bk_aead_new(err);
	if (unsealer->aead == NULL)
	{
		bk_unsealer_free(unsealer);
		return NULL;
	}
	return unsealer;
}

void
bk_unsealer_free(BkUnsealer *unsealer)
{
	if (unsealer == NULL)
		return;
	EVP_PKEY_free(unsealer->own);
	bk_aead_free(unsealer->aead);
	free(unsealer);
}

bool
bk_unsealer_open(BkUnsealer *unsealer,
				 const uint8_t ephemeral_public[BK_X25519_KEY_LEN],
				 const uint8_t sealed[BK_SEALED_KEY_LEN], const uint8_t *aad,
				 size_t aad_len, uint8_t data_key[BK_DATA_KEY_LEN],
				 BkError *err)
{
	uint8_t secret[BK_X25519_KEY_LEN];
	uint8_t kek[BK_DATA_KEY_LEN];
	bool ok = false;

	if (!x25519_derive(unsealer->own, ephemeral_public, secret, BK_ERR_AUTH,
					   err))
		goto done;
	if (!seal_kek(secret, ephemeral_public, unsealer->recipient_public, kek,
				  err))
		goto done;
	if (!bk_aead_set_key(unsealer->aead, kek, err))
		goto done;
	if (!bk_aead_decrypt(unsealer->aead, seal_nonce, aad, aad_len, sealed,
						 BK_DATA_KEY_LEN, data_key, sealed + BK_DATA_KEY_LEN,
						 err))
	{
		bk_error_set(err, BK_ERR_KEY,
					 "the data key envelope does not open with this private "
					 "key: wrong key, or the envelope was altered");
		goto done;
	}
	ok = true;
done:
	bk_secure_wipe(secret, sizeof(secret));
	bk_secure_wipe(kek, sizeof(kek));
	return ok;
}

bool
bk_unseal_data_key(const uint8_t recipient_private[BK_X25519_KEY_LEN],
				   const uint8_t recipient_public[BK_X25519_KEY_LEN],
				   const uint8_t ephemeral_public[BK_X25519_KEY_LEN],
				   const uint8_t sealed[BK_SEALED_KEY_LEN], const uint8_t *aad,
				   size_t aad_len, uint8_t data_key[BK_DATA_KEY_LEN],
				   BkError *err)
{
	BkUnsealer *unsealer =
		bk_unsealer_new(recipient_private, recipient_public, err);
	bool ok;

	if (unsealer == NULL)
		return false;
	ok = bk_unsealer_open(unsealer, ephemeral_public, sealed, aad, aad_len,
						  data_key, err);
	bk_unsealer_free(unsealer);
	return ok;
}

BkAead *
bk_aead_new(BkError *err)
{
	BkAead *aead = calloc(1, sizeof(*aead));

	if (aead == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	aead->cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	aead->ctx = EVP_CIPHER_CTX_new();
	if (aead->cipher == NULL || aead->ctx == NULL)
	{
		bk_error_set_openssl(err, BK_ERR_CRYPTO,
							 "creating an AES-256-GCM context");
		bk_aead_free(aead);
		return NULL;
	}
	return aead;
}

void
bk_aead_free(BkAead *aead)
{
	if (aead == NULL)
		return;
	/* Frees and cleanses the key schedule. */
	EVP_CIPHER_CTX_free(aead->ctx);
	EVP_CIPHER_free(aead->cipher);
	free(aead);
}

bool
bk_aead_set_key(BkAead *aead, const uint8_t key[BK_DATA_KEY_LEN], BkError *err)
{
	if (EVP_CipherInit_ex2(aead->ctx, aead->cipher, key, NULL, 1, NULL) != 1)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO,
									"AES-256-GCM key setup");
	aead->has_key = true;
	return true;
}

/*
 * aead_start
 *		Set direction and nonce for one message, keeping the key schedule,
 *		and feed the associated data.
 */
static bool
aead_start(BkAead *aead, int encrypt, const uint8_t nonce[BK_GCM_NONCE_LEN],
		   const uint8_t *aad, size_t aad_len, BkError *err)
{
	int out_len;

	if (!aead->has_key)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"AES-256-GCM used without a key");
	if (EVP_CipherInit_ex2(aead->ctx, NULL, NULL, nonce, encrypt, NULL) != 1)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO,
									"AES-256-GCM nonce setup");
	if (aad_len > 0 &&
		EVP_CipherUpdate(aead->ctx, NULL, &out_len, aad, (int) aad_len) != 1)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO,
									"AES-256-GCM associated data");
	return true;
}

bool
bk_aead_encrypt(BkAead *aead, const uint8_t nonce[BK_GCM_NONCE_LEN],
				const uint8_t *aad, size_t aad_len, const uint8_t *plain,
				size_t len, uint8_t *cipher, uint8_t tag[BK_GCM_TAG_LEN],
				BkError *err)
{
	int out_len;

	if (!aead_start(aead, 1, nonce, aad, aad_len, err))
		return false;
	if (len > 0 &&
		(EVP_CipherUpdate(aead->ctx, cipher, &out_len, plain, (int) len) != 1 ||
		 (size_t) out_len != len))
		return bk_error_set_openssl(err, BK_ERR_CRYPTO,
									"AES-256-GCM encryption");
	if (EVP_CipherFinal_ex(aead->ctx, cipher + len, &out_len) != 1 ||
		EVP_CIPHER_CTX_ctrl(aead->ctx, EVP_CTRL_GCM_GET_TAG, BK_GCM_TAG_LEN,
							tag) != 1)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO, "AES-256-GCM tag");
	return true;
}

bool
bk_aead_decrypt(BkAead *aead, const uint8_t nonce[BK_GCM_NONCE_LEN],
				const uint8_t *aad, size_t aad_len, const uint8_t *cipher,
				size_t len, uint8_t *plain, const uint8_t tag[BK_GCM_TAG_LEN],
				BkError *err)
{
	int out_len;

	if (!aead_start(aead, 0, nonce, aad, aad_len, err))
		return false;
	if (len > 0 &&
		(EVP_CipherUpdate(aead->ctx, plain, &out_len, cipher, (int) len) != 1 ||
		 (size_t) out_len != len))
		return bk_error_set_openssl(err, BK_ERR_CRYPTO,
									"AES-256-GCM decryption");
	if (EVP_CIPHER_CTX_ctrl(aead->ctx, EVP_CTRL_GCM_SET_TAG, BK_GCM_TAG_LEN,
							(void *) tag) != 1)
		return bk_error_set_openssl(err, BK_ERR_CRYPTO,
									"AES-256-GCM tag setup");
	if (EVP_CipherFinal_ex(aead->ctx, plain + len, &out_len) != 1)
	{
		ERR_clear_error();
		/* Plaintext of a failed message must never be used: wipe it. */
		if (len > 0)
			bk_secure_wipe(plain, len);
		return bk_error_set(err, BK_ERR_AUTH, "authentication tag mismatch");
	}
	return true;
}

bool
bk_secure_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

void
bk_secure_wipe(void *buf, size_t len)
{
	OPENSSL_cleanse(buf, len);
}
