/*
 * bk_keys.c
 *		Key generation, key files and keyrings.  See bk_keys.h for the model.
 *
 * The parser is strict on purpose: a key file is security configuration, and
 * a typo that silently yields "no key" or "another key" would surface only
 * at restore time, which is the worst moment to learn about it.
 */
#include "bk_keys.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk_secret_file.h"
#include "bk_util.h"

#define KEY_FILE_MAX         (256 * 1024)
#define KEY_ID_DOMAIN        "bk v1 key id"
#define FINGERPRINT_KEY_INFO "bk v1 fingerprint key"

static bool
key_compute_id(BkKey *key, BkError *err)
{
	uint8_t input[sizeof(KEY_ID_DOMAIN) - 1 + BK_X25519_KEY_LEN +
				  BK_FINGERPRINT_KEY_LEN];
	uint8_t digest[BK_SHA256_LEN];
	size_t pos = 0;

	memcpy(input, KEY_ID_DOMAIN, sizeof(KEY_ID_DOMAIN) - 1);
	pos += sizeof(KEY_ID_DOMAIN) - 1;
	memcpy(input + pos, key->public_key, BK_X25519_KEY_LEN);
	pos += BK_X25519_KEY_LEN;
	memcpy(input + pos, key->fingerprint_key, BK_FINGERPRINT_KEY_LEN);
	if (!bk_sha256(input, sizeof(input), digest, err))
		return false;
	memcpy(key->id, digest, BK_KEY_ID_LEN);
	return true;
}

bool
bk_key_complete_from_private(BkKey *key, BkError *err)
{
	if (!bk_x25519_public_from_private(key->private_key, key->public_key, err))
		return false;
	if (!bk_hkdf_sha256(key->private_key, BK_X25519_KEY_LEN, NULL, 0,
						FINGERPRINT_KEY_INFO, key->fingerprint_key,
						BK_FINGERPRINT_KEY_LEN, err))
		return false;
	key->has_private = true;
	return key_compute_id(key, err);
}

bool
bk_key_generate(BkKey *key, BkError *err)
{
	memset(key, 0, sizeof(*key));
	if (!bk_x25519_generate(key->private_key, key->public_key, err))
		return false;
	return bk_key_complete_from_private(key, err);
}

void
bk_key_id_hex(const uint8_t id[BK_KEY_ID_LEN], char out[BK_KEY_ID_HEX_LEN + 1])
{
	bk_hex_encode(id, BK_KEY_ID_LEN, out);
}

void
bk_keyring_ids(const BkKeyring *ring, char *out, size_t out_len)
{
	size_t pos = 0;

	out[0] = '\0';
	for (int keyIdx = 0; keyIdx < ring->count && pos + 20 < out_len; keyIdx++)
	{
		char hex[BK_KEY_ID_HEX_LEN + 1];

		bk_key_id_hex(ring->keys[keyIdx].id, hex);
		pos += (size_t) snprintf(out + pos, out_len - pos, "%s%s",
								 keyIdx > 0 ? ", " : "", hex);
	}
}

/*
 * write_new_file
 *		Create path with exactly these contents and mode, or fail without
 *		touching an existing file.
 *
 * The contents go to a temporary name first and are linked into place:
 * link(2) fails if path exists, and a crash never leaves a half-written key
 * under the real name.
 */
static bool
write_new_file(const char *path, const char *text, mode_t mode, BkError *err)
{
	char tmp[4096];
	char dir[4096];
	char *slash;
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int) getpid()) >=
		(int) sizeof(tmp))
		return bk_error_set(err, BK_ERR_USAGE, "path too long: \"%s\"", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return bk_error_set(err, BK_ERR_IO, "could not create \"%s\": %s", tmp,
							strerror(errno));
	if (fchmod(fd, mode) != 0 ||
		!bk_write_all(fd, text, strlen(text), tmp, err) || fsync(fd) != 0)
	{
		if (err != NULL && err->code == BK_OK)
			bk_error_set(err, BK_ERR_IO, "could not write \"%s\": %s", tmp,
						 strerror(errno));
		close(fd);
		unlink(tmp);
		return false;
	}
	close(fd);
	if (link(tmp, path) != 0)
	{
		int save_errno = errno;

		unlink(tmp);
		if (save_errno == EEXIST)
		{
			bk_error_set(err, BK_ERR_USAGE, "\"%s\" already exists", path);
			return bk_error_hint(err,
								 "bk keygen never overwrites a key: choose "
								 "another --out, or move the old key away "
								 "if it is really no longer needed.");
		}
		return bk_error_set(err, BK_ERR_IO, "could not create \"%s\": %s", path,
							strerror(save_errno));
	}
	unlink(tmp);

	bk_strlcpy(dir, path, sizeof(dir));
	slash = strrchr(dir, '/');
	if (slash == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	if (!bk_fsync_dir(dir, err))
	{
		/* Not durable: no key file is left that a caller did not get. */
		unlink(path);
		return false;
	}
	return true;
}

bool
bk_key_write_files(const BkKey *key, const char *path, BkError *err)
{
	char id_hex[BK_KEY_ID_HEX_LEN + 1];
	char secret_hex[2 * BK_X25519_KEY_LEN + 1];
	char public_hex[2 * BK_X25519_KEY_LEN + 1];
	char fingerprint_hex[2 * BK_FINGERPRINT_KEY_LEN + 1];
	char created[40];
	char pub_path[4096];
	char text[2048];
	bool ok;

	if (!key->has_private)
		return bk_error_set(err, BK_ERR_INTERNAL, "no private key to write");
	if (snprintf(pub_path, sizeof(pub_path), "%s.pub", path) >=
		(int) sizeof(pub_path))
		return bk_error_set(err, BK_ERR_USAGE, "path too long: \"%s\"", path);
	if (access(pub_path, F_OK) == 0)
	{
		bk_error_set(err, BK_ERR_USAGE, "\"%s\" already exists", pub_path);
		return bk_error_hint(err, "bk keygen never overwrites a key: choose "
								  "another --out.");
	}

	bk_key_id_hex(key->id, id_hex);
	bk_hex_encode(key->private_key, BK_X25519_KEY_LEN, secret_hex);
	bk_hex_encode(key->public_key, BK_X25519_KEY_LEN, public_hex);
	bk_hex_encode(key->fingerprint_key, BK_FINGERPRINT_KEY_LEN,
				  fingerprint_hex);
	bk_format_time_utc(bk_wall_ms(), created, sizeof(created));

	snprintf(text, sizeof(text),
			 "# bk private key %s, created %s.\n"
			 "# It decrypts every backup sealed to this key. Keep it only "
			 "where restores run\n"
			 "# (bk restore, bk wal-get, bk verify), readable by their user "
			 "alone (mode 0600).\n"
			 "# Database hosts get the public key file written next to it "
			 "(.pub).\n"
			 "# To rotate, append the new key's section to this file: old "
			 "backups stay readable.\n"
			 "[bk-private-key]\n"
			 "key-id = %s\n"
			 "private-key = %s\n",
			 id_hex, created, id_hex, secret_hex);
	ok = write_new_file(path, text, 0600, err);
	bk_secure_wipe(text, sizeof(text));
	bk_secure_wipe(secret_hex, sizeof(secret_hex));
	if (!ok)
		return false;

	snprintf(
		text, sizeof(text),
		"# bk public key %s, created %s.\n"
		"# For database hosts (bk.key_file): it seals backups but cannot "
		"open them.\n"
		"# Together with a copy of the repository it would let its holder "
		"test a guess\n"
		"# of a whole file's contents, so give it to database hosts only.\n"
		"[bk-public-key]\n"
		"key-id = %s\n"
		"public-key = %s\n"
		"fingerprint-key = %s\n",
		id_hex, created, id_hex, public_hex, fingerprint_hex);
	if (!write_new_file(pub_path, text, 0644, err))
	{
		/* Never leave a private key without its public half. */
		unlink(path);
		return false;
	}
	return true;
}

/* Parser state for one section. */
typedef struct KeySection
{
	bool is_private;
	int line;
	bool have_id;
	bool have_secret;
	bool have_public;
	bool have_fingerprint;
	uint8_t stated_id[BK_KEY_ID_LEN];
	BkKey key;
} KeySection;

static char *
trim(char *s)
{
	char *end;

	while (isspace((unsigned char) *s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char) end[-1]))
		*--end = '\0';
	return s;
}

/* Turn a finished section into a key, checking it is complete and consistent. */
static bool
section_finish(const char *path, KeySection *section, BkKeyring *ring,
			   BkError *err)
{
	BkKey *key = &section->key;

	if (section->is_private)
	{
		if (!section->have_secret)
			return bk_error_set(
				err, BK_ERR_KEY,
				"key file \"%s\" line %d: [bk-private-key] without "
				"private-key",
				path, section->line);
		if (section->have_public || section->have_fingerprint)
			return bk_error_set(
				err, BK_ERR_KEY,
				"key file \"%s\" line %d: [bk-private-key] must hold "
				"only key-id and private-key",
				path, section->line);
		if (!bk_key_complete_from_private(key, err))
			return bk_error_prefix(err, "key file \"%s\" line %d: ", path,
								   section->line);
	}
	else
	{
		if (!section->have_public || !section->have_fingerprint)
			return bk_error_set(
				err, BK_ERR_KEY,
				"key file \"%s\" line %d: [bk-public-key] needs "
				"public-key and fingerprint-key",
				path, section->line);
		if (section->have_secret)
			return bk_error_set(err, BK_ERR_KEY,
								"key file \"%s\" line %d: private-key inside "
								"[bk-public-key]",
								path, section->line);
		if (!key_compute_id(key, err))
			return false;
	}
	if (section->have_id &&
		memcmp(section->stated_id, key->id, BK_KEY_ID_LEN) != 0)
	{
		char stated[BK_KEY_ID_HEX_LEN + 1];
		char actual[BK_KEY_ID_HEX_LEN + 1];

		bk_key_id_hex(section->stated_id, stated);
		bk_key_id_hex(key->id, actual);
		bk_error_set(
			err, BK_ERR_KEY,
			"key file \"%s\" line %d: key-id %s does not match the key, "
			"whose id is %s",
			path, section->line, stated, actual);
		return bk_error_hint(err, "The file was edited or assembled from "
								  "parts of different keys; use the files "
								  "written by bk keygen.");
	}
	/* The same key twice (a keyring concatenated twice) is harmless. */
	if (bk_keyring_find(ring, key->id) != NULL)
		return true;
	if (ring->count >= BK_KEYRING_MAX)
		return bk_error_set(err, BK_ERR_KEY,
							"key file \"%s\" holds more than %d keys", path,
							BK_KEYRING_MAX);
	ring->keys[ring->count++] = *key;
	return true;
}

static bool
parse_hex_value(const char *path, int line, const char *name, const char *value,
				uint8_t *out, size_t len, BkError *err)
{
	if (!bk_hex_decode(value, out, len))
		return bk_error_set(
			err, BK_ERR_KEY,
			"key file \"%s\" line %d: %s must be %zu hex digits", path, line,
			name, 2 * len);
	return true;
}

/*
 * keyring_parse
 *		Parse text into ring.  The caller owns and wipes *scratch, which
 *		holds key material of the section being read when parsing stops.
 */
static bool
keyring_parse(const char *path, char *text, BkKeyring *ring,
			  KeySection *scratch, BkError *err)
{
	KeySection *section = scratch;
	bool in_section = false;
	int line_no = 0;
	char *next = text;

	memset(section, 0, sizeof(*section));
	while (next != NULL && *next != '\0')
	{
		char *line = next;
		char *newline = strchr(line, '\n');
		char *content;
		char *eq;
		char *name;
		char *value;
		bool ok = true;

		if (newline != NULL)
		{
			*newline = '\0';
			next = newline + 1;
		}
		else
			next = NULL;
		line_no++;
		content = trim(line);

		if (*content == '\0' || *content == '#')
			continue;
		if (strcmp(content, "[bk-private-key]") == 0 ||
			strcmp(content, "[bk-public-key]") == 0)
		{
			if (in_section && !section_finish(path, section, ring, err))
				return false;
			bk_secure_wipe(section, sizeof(*section));
			section->is_private = strcmp(content, "[bk-private-key]") == 0;
			section->line = line_no;
			in_section = true;
			continue;
		}
		eq = strchr(content, '=');
		if (eq == NULL)
			return bk_error_set(
				err, BK_ERR_KEY,
				"key file \"%s\" line %d: expected \"name = value\" "
				"or a [bk-private-key]/[bk-public-key] header",
				path, line_no);
		*eq = '\0';
		name = trim(content);
		value = trim(eq + 1);
		/* The name only: the value may be a private key. */
		if (!in_section)
			return bk_error_set(err, BK_ERR_KEY,
								"key file \"%s\" line %d: \"%s\" outside a "
								"[bk-private-key] or [bk-public-key] section",
								path, line_no, name);
		if (strcmp(name, "key-id") == 0)
		{
			ok = parse_hex_value(path, line_no, name, value, section->stated_id,
								 BK_KEY_ID_LEN, err);
			section->have_id = true;
		}
		else if (strcmp(name, "private-key") == 0)
		{
			ok = parse_hex_value(path, line_no, name, value,
								 section->key.private_key, BK_X25519_KEY_LEN,
								 err);
			section->have_secret = true;
		}
		else if (strcmp(name, "public-key") == 0)
		{
			ok = parse_hex_value(path, line_no, name, value,
								 section->key.public_key, BK_X25519_KEY_LEN,
								 err);
			section->have_public = true;
		}
		else if (strcmp(name, "fingerprint-key") == 0)
		{
			ok = parse_hex_value(path, line_no, name, value,
								 section->key.fingerprint_key,
								 BK_FINGERPRINT_KEY_LEN, err);
			section->have_fingerprint = true;
		}
		else
			return bk_error_set(
				err, BK_ERR_KEY,
				"key file \"%s\" line %d: unknown setting \"%s\"", path,
				line_no, name);
		if (!ok)
			return false;
	}
	if (in_section && !section_finish(path, section, ring, err))
		return false;
	bk_secure_wipe(section, sizeof(*section));
	if (ring->count == 0)
		return bk_error_set(err, BK_ERR_KEY, "key file \"%s\" holds no key",
							path);
	return true;
}

BkKeyring *
bk_keyring_load(const char *path, BkKeyUse use, BkError *err)
{
	BkKeyring *ring = NULL;
	char *text = NULL;
	struct stat st;
	ssize_t got;
	size_t len = 0;
	int fd;
	bool any_private = false;
	bool any_public = false;
	bool ok;
	KeySection scratch;

	/* O_NONBLOCK: a FIFO put in its place must not hang bk. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
	{
		bk_error_set(err, BK_ERR_KEY, "could not open key file \"%s\": %s",
					 path, strerror(errno));
		return NULL;
	}
	/*
	 * fstat the descriptor we read from, so the owner and mode checked are
	 * this file's.
	 */
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
		st.st_size > KEY_FILE_MAX)
	{
		bk_error_set(err, BK_ERR_KEY,
					 "key file \"%s\" is not a regular file of "
					 "at most %d bytes",
					 path, KEY_FILE_MAX);
		goto fail;
	}
	text = malloc((size_t) st.st_size + 1);
	ring = calloc(1, sizeof(*ring));
	if (text == NULL || ring == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory loading \"%s\"", path);
		goto fail;
	}
	while (len < (size_t) st.st_size)
	{
		got = read(fd, text + len, (size_t) st.st_size - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
		{
			bk_error_set(err, BK_ERR_KEY, "could not read key file \"%s\": %s",
						 path, got == 0 ? "unexpected end" : strerror(errno));
			goto fail;
		}
		len += (size_t) got;
	}
	text[len] = '\0';
	if (memchr(text, '\0', len) != NULL)
	{
		bk_error_set(err, BK_ERR_KEY, "key file \"%s\" is not a text file",
					 path);
		goto fail;
	}
	ok = keyring_parse(path, text, ring, &scratch, err);
	bk_secure_wipe(&scratch, sizeof(scratch));
	if (!ok)
	{
		if (err != NULL && err->hint[0] == '\0')
			bk_error_hint(err,
						  "bk reads key files as bk keygen writes them (a "
						  "keyring is such private key files concatenated); "
						  "this one is cut short, edited, or another file. "
						  "Use the file bk keygen wrote, or your copy of it.");
		goto fail;
	}

	for (int keyIdx = 0; keyIdx < ring->count; keyIdx++)
	{
		if (ring->keys[keyIdx].has_private)
			any_private = true;
		else
			any_public = true;
	}
	if (use == BK_KEYS_FOR_SOURCE && any_private)
	{
		bk_error_set(err, BK_ERR_KEY,
					 "key file \"%s\" holds a private key; a database host "
					 "must hold only the public key",
					 path);
		bk_error_hint(err,
					  "Give the source \"%s.pub\" (written by bk keygen "
					  "next to the private key) and keep \"%s\" on the "
					  "restore host only.",
					  path, path);
		goto fail;
	}
	if (any_private &&
		!bk_secret_file_ok(path, &st, BK_SECRET_PRIVATE_KEY, err))
		goto fail;
	if (use == BK_KEYS_FOR_SOURCE && !bk_public_key_file_ok(path, &st, err))
		goto fail;
	if (use == BK_KEYS_FOR_SOURCE && ring->count != 1)
	{
		bk_error_set(err, BK_ERR_KEY,
					 "key file \"%s\" holds %d public keys; a source seals to "
					 "exactly one",
					 path, ring->count);
		bk_error_hint(err,
					  "Keep only the current key's .pub on database hosts; "
					  "the restore keyring holds the old private keys.");
		goto fail;
	}
	if (use == BK_KEYS_FOR_RESTORE && any_public && !any_private)
	{
		bk_error_set(
			err, BK_ERR_KEY,
			"key file \"%s\" holds a public key only; decrypting needs "
			"the private key",
			path);
		bk_error_hint(err, "Use the file written by bk keygen --out FILE (not "
						   "FILE.pub).");
		goto fail;
	}
	/* A keyring assembled with a FILE.pub among the keys: say which. */
	for (int keyIdx = 0; use == BK_KEYS_FOR_RESTORE && keyIdx < ring->count;
		 keyIdx++)
		if (!ring->keys[keyIdx].has_private)
		{
			char id_hex[BK_KEY_ID_HEX_LEN + 1];

			bk_key_id_hex(ring->keys[keyIdx].id, id_hex);
			bk_error_set(err, BK_ERR_KEY,
						 "key file \"%s\" holds the public key %s among its "
						 "private keys; a restore keyring holds private keys "
						 "only",
						 path, id_hex);
			bk_error_hint(err,
						  "Put key %s's private key file (bk keygen --out "
						  "FILE, not FILE.pub) in the keyring instead, or "
						  "remove its [bk-public-key] section.",
						  id_hex);
			goto fail;
		}

	bk_secure_wipe(text, len);
	free(text);
	close(fd);
	return ring;

fail:
	if (text != NULL)
	{
		bk_secure_wipe(text, len);
		free(text);
	}
	bk_keyring_free(ring);
	close(fd);
	return NULL;
}

void
bk_keyring_free(BkKeyring *ring)
{
	if (ring == NULL)
		return;
	bk_secure_wipe(ring, sizeof(*ring));
	free(ring);
}

const BkKey *
bk_keyring_find(const BkKeyring *ring, const uint8_t id[BK_KEY_ID_LEN])
{
	for (int keyIdx = 0; keyIdx < ring->count; keyIdx++)
		if (memcmp(ring->keys[keyIdx].id, id, BK_KEY_ID_LEN) == 0)
			return &ring->keys[keyIdx];
	return NULL;
}
