/*
 * bk_keys.h
 *		bk key pairs, key files and keyrings.
 *
 * A bk key is an X25519 key pair plus a fingerprint key.  The fingerprint
 * key is derived from the private key (HKDF), and travels in the public key
 * file: the source uses it to compute a keyed digest of every object it
 * sends, so that parties without keys can recognise an identical re-send
 * (same digest) without being able to confirm a guess of the contents (the
 * digest is keyed).  See docs/frame-format.md, "Fingerprint".
 *
 * The key id is the first 8 bytes of SHA-256 over the public key and the
 * fingerprint key.  It travels in every frame so that a restore finds the
 * right private key in a keyring after rotation.
 *
 * Files are text, one "[bk-private-key]" or "[bk-public-key]" section per
 * key, with "name = value" lines.  A keyring is a private key file with
 * several sections (concatenate them to rotate).  A file that holds a
 * private key must be owned by the user bk runs as and accessible by it
 * alone, or owned by root and accessible by nobody else but its group, which
 * may read it (bk_secret_file.h).
 */
#ifndef BK_KEYS_H
#define BK_KEYS_H

#include <stdint.h>

#include "bk_crypto.h"
#include "bk_error.h"

#define BK_KEY_ID_LEN          8
#define BK_KEY_ID_HEX_LEN      (2 * BK_KEY_ID_LEN)
#define BK_FINGERPRINT_KEY_LEN 32
#define BK_KEYRING_MAX         64

typedef struct BkKey
{
	uint8_t id[BK_KEY_ID_LEN];
	uint8_t public_key[BK_X25519_KEY_LEN];
	uint8_t fingerprint_key[BK_FINGERPRINT_KEY_LEN];
	bool has_private;
	uint8_t private_key[BK_X25519_KEY_LEN];
} BkKey;

typedef struct BkKeyring
{
	int count;
	BkKey keys[BK_KEYRING_MAX];
} BkKeyring;

/* What a caller needs from a key file. */
typedef enum BkKeyUse
{
	BK_KEYS_FOR_SOURCE, /* exactly one public key; a private key is refused */
	BK_KEYS_FOR_RESTORE /* one or more private keys */
} BkKeyUse;

/* A new key pair with its derived fingerprint key and id. */
extern bool bk_key_generate(BkKey *key, BkError *err);

/* Fill public key, fingerprint key and id from private_key. */
extern bool bk_key_complete_from_private(BkKey *key, BkError *err);

/*
 * Write path (private, mode 0600, refusing to overwrite) and path.pub
 * (mode 0644), durably.
 */
extern bool bk_key_write_files(const BkKey *key, const char *path,
							   BkError *err);

/*
 * Load a key file for a use.  For BK_KEYS_FOR_SOURCE, a file holding any
 * private key is refused (database hosts hold public keys only).  A file
 * holding a private key is refused unless owned by the effective user, mode
 * 0600 or less, or by root, mode 0640 or less (libpq's rule for sslkey).  The
 * keyring is malloc'd; free with bk_keyring_free (which wipes it).
 */
extern BkKeyring *bk_keyring_load(const char *path, BkKeyUse use, BkError *err);
extern void bk_keyring_free(BkKeyring *ring);

/* The key with this id, or NULL. */
extern const BkKey *bk_keyring_find(const BkKeyring *ring,
									const uint8_t id[BK_KEY_ID_LEN]);

/* "a1b2c3d4e5f60718" */
extern void bk_key_id_hex(const uint8_t id[BK_KEY_ID_LEN],
						  char out[BK_KEY_ID_HEX_LEN + 1]);

/* Comma-separated ids of a keyring, for error messages. */
extern void bk_keyring_ids(const BkKeyring *ring, char *out, size_t out_len);

#endif /* BK_KEYS_H */
