/*
 * test_keys.c
 *		Key files and keyrings: generation, the files bk keygen writes, the
 *		permission rule, and every way a key file is refused.
 */
#include "testutil.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bk_keys.h"
#include "bk_util.h"

static char *dir;

static int
setup(void **state)
{
	dir = test_mkdtemp();
	return 0;
}

static int
teardown(void **state)
{
	test_rmdir(dir);
	free(dir);
	return 0;
}

static void
path_in(char *out, const char *name)
{
	sprintf(out, "%s/%s", dir, name);
}

static void
write_text(const char *path, const char *text, mode_t mode)
{
	BkError err;

	assert_true(bk_write_file_durable(path, text, strlen(text), mode, &err));
}

static void
expect_load_error(const char *path, BkKeyUse use, const char *needle)
{
	BkError err;

	bk_error_clear(&err);
	assert_null(bk_keyring_load(path, use, &err));
	assert_int_equal(err.code, BK_ERR_KEY);
	assert_error_contains(&err, needle);
}

/* Loading fails, and nothing of secret appears in the error. */
static void
expect_no_secret(const char *path, BkKeyUse use, const char *secret)
{
	BkError err;

	bk_error_clear(&err);
	assert_null(bk_keyring_load(path, use, &err));
	assert_null(strstr(err.message, secret));
	assert_null(strstr(err.hint, secret));
}

static void
test_write_and_load(void **state)
{
	char path[512];
	char pub[520];
	struct stat st;
	BkKey key;
	BkKeyring *private_ring;
	BkKeyring *public_ring;
	BkError err;

	path_in(path, "k");
	sprintf(pub, "%s.pub", path);
	assert_true(bk_key_generate(&key, &err));
	assert_true(bk_key_write_files(&key, path, &err));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(pub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);

	private_ring = bk_keyring_load(path, BK_KEYS_FOR_RESTORE, &err);
	assert_non_null(private_ring);
	assert_int_equal(private_ring->count, 1);
	assert_memory_equal(private_ring->keys[0].id, key.id, BK_KEY_ID_LEN);
	assert_memory_equal(private_ring->keys[0].private_key, key.private_key, 32);
	assert_memory_equal(private_ring->keys[0].fingerprint_key,
						key.fingerprint_key, 32);

	public_ring = bk_keyring_load(pub, BK_KEYS_FOR_SOURCE, &err);
	assert_non_null(public_ring);
	assert_int_equal(public_ring->count, 1);
	assert_false(public_ring->keys[0].has_private);
	assert_memory_equal(public_ring->keys[0].id, key.id, BK_KEY_ID_LEN);
	assert_memory_equal(public_ring->keys[0].public_key, key.public_key, 32);
	/* No private material in the public file. */
	{
		char *text;
		size_t len;
		char secret_hex[65];

		bk_hex_encode(key.private_key, 32, secret_hex);
		assert_true(bk_read_file(pub, 4096, &text, &len, &err));
		assert_null(strstr(text, secret_hex));
		assert_null(strstr(text, "private-key"));
		free(text);
	}
	bk_keyring_free(private_ring);
	bk_keyring_free(public_ring);

	/* Never overwrites. */
	assert_false(bk_key_write_files(&key, path, &err));
	assert_error_contains(&err, "already exists");
}

static void
expect_loads(const char *path)
{
	BkError err;
	BkKeyring *ring;

	bk_error_clear(&err);
	ring = bk_keyring_load(path, BK_KEYS_FOR_RESTORE, &err);
	if (ring == NULL)
		fail_msg("loading \"%s\": %s", path, err.message);
	bk_keyring_free(ring);
}

static void
test_refuses_readable_private_key(void **state)
{
	char path[512];
	char expected[700];
	BkKey key;
	BkError err;

	path_in(path, "loose");
	assert_true(bk_key_generate(&key, &err));
	assert_true(bk_key_write_files(&key, path, &err));
	assert_int_equal(chmod(path, 0604), 0);
	snprintf(
		expected, sizeof(expected),
		"private key file \"%s\" is accessible by group or others (mode 0604)",
		path);
	expect_load_error(path, BK_KEYS_FOR_RESTORE, expected);
	assert_int_equal(chmod(path, 0660), 0);
	expect_load_error(path, BK_KEYS_FOR_RESTORE, "(mode 0660)");
	assert_int_equal(chmod(path, 0650), 0);
	expect_load_error(path, BK_KEYS_FOR_RESTORE, "(mode 0650)");
	/* Its group may read a file of root's, never one of another owner. */
	assert_int_equal(chmod(path, 0640), 0);
	if (geteuid() == 0)
		expect_loads(path);
	else
		expect_load_error(path, BK_KEYS_FOR_RESTORE, "(mode 0640)");
	assert_int_equal(chmod(path, 0600), 0);
	expect_loads(path);
}

/*
 * As user "nobody", in a child: its own key and one of root's that its group
 * may read load, one of root's it cannot read is not even opened, and one of
 * a third user is refused.  0 when all held, else the number of the check.
 */
static int
load_as_nobody(const struct passwd *nobody, const char *own,
			   const char *roots_readable, const char *third)
{
	BkError err;
	BkKeyring *ring;

	if (setgroups(0, NULL) != 0 ||
		setresgid(nobody->pw_gid, nobody->pw_gid, nobody->pw_gid) != 0 ||
		setresuid(nobody->pw_uid, nobody->pw_uid, nobody->pw_uid) != 0)
		return 1;
	if ((ring = bk_keyring_load(own, BK_KEYS_FOR_RESTORE, &err)) == NULL)
		return 2;
	bk_keyring_free(ring);
	if ((ring = bk_keyring_load(roots_readable, BK_KEYS_FOR_RESTORE, &err)) ==
		NULL)
		return 3;
	bk_keyring_free(ring);
	if (bk_keyring_load(third, BK_KEYS_FOR_RESTORE, &err) != NULL ||
		strstr(err.message, "uid 0") != NULL ||
		strstr(err.message, "nor by root") == NULL)
		return 4;
	return 0;
}

/*
 * A private key file another user owns is refused, whatever its mode: its
 * owner could replace the keys a restore trusts (root restoring with a key
 * postgres owns).  Needs root, to give files away.
 */
static void
test_refuses_private_key_of_another_user(void **state)
{
	char path[512];
	char link_path[512];
	char roots[512];
	char third[512];
	char expected[900];
	struct passwd *nobody = getpwnam("nobody");
	BkKey key;
	BkError err;
	pid_t pid;
	int status;

	if (geteuid() != 0 || nobody == NULL || nobody->pw_uid == 0)
	{
		skip();
		return;
	}
	path_in(path, "theirs");
	assert_true(bk_key_generate(&key, &err));
	assert_true(bk_key_write_files(&key, path, &err));
	assert_int_equal(chown(path, nobody->pw_uid, (gid_t) -1), 0);
	snprintf(expected, sizeof(expected),
			 "private key file \"%s\" is owned by \"nobody\" (uid %u), not "
			 "by \"root\" (uid 0), whom bk runs as",
			 path, (unsigned int) nobody->pw_uid);
	bk_error_clear(&err);
	assert_null(bk_keyring_load(path, BK_KEYS_FOR_RESTORE, &err));
	assert_int_equal(err.code, BK_ERR_KEY);
	assert_error_contains(&err, expected);
	assert_non_null(strstr(err.hint, "chown root"));

	/*
	 * A link put in the key's place leads only to what passes the owner
	 * check: a file of root's is its own key, one of nobody's is refused.
	 */
	path_in(link_path, "link");
	assert_int_equal(symlink(path, link_path), 0);
	assert_int_equal(lchown(link_path, nobody->pw_uid, (gid_t) -1), 0);
	expect_load_error(link_path, BK_KEYS_FOR_RESTORE, "is owned by \"nobody\"");
	assert_int_equal(chown(path, 0, (gid_t) -1), 0);
	expect_loads(link_path);
	expect_loads(path);

	/* The same rule for a user other than root. */
	path_in(roots, "roots");
	assert_true(bk_key_write_files(&key, roots, &err));
	assert_int_equal(chown(roots, 0, nobody->pw_gid), 0);
	assert_int_equal(chmod(roots, 0640), 0);
	path_in(third, "third");
	assert_true(bk_key_write_files(&key, third, &err));
	assert_int_equal(chown(third, nobody->pw_uid + 1, nobody->pw_gid), 0);
	assert_int_equal(chmod(third, 0640), 0);
	assert_int_equal(chown(path, nobody->pw_uid, (gid_t) -1), 0);
	assert_int_equal(chmod(dir, 0711), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(load_as_nobody(nobody, path, roots, third));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(chmod(dir, 0700), 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void
test_source_refuses_private_key(void **state)
{
	char path[512];
	BkKey key;
	BkError err;

	path_in(path, "onsource");
	assert_true(bk_key_generate(&key, &err));
	assert_true(bk_key_write_files(&key, path, &err));
	expect_load_error(path, BK_KEYS_FOR_SOURCE,
					  "holds a private key; a database host must hold only "
					  "the public key");
}

static void
test_restore_refuses_public_key(void **state)
{
	char path[512];
	char pub[520];
	BkKey key;
	BkError err;

	path_in(path, "pubonly");
	sprintf(pub, "%s.pub", path);
	assert_true(bk_key_generate(&key, &err));
	assert_true(bk_key_write_files(&key, path, &err));
	expect_load_error(
		pub, BK_KEYS_FOR_RESTORE,
		"holds a public key only; decrypting needs the private key");
}

/* A keyring is private key sections concatenated. */
static void
test_keyring_of_several_keys(void **state)
{
	char path_a[512];
	char path_b[512];
	char ring_path[512];
	char *text_a;
	char *text_b;
	char *joined;
	size_t len_a;
	size_t len_b;
	BkKey a;
	BkKey b;
	BkKeyring *ring;
	BkError err;

	path_in(path_a, "ka");
	path_in(path_b, "kb");
	path_in(ring_path, "ring");
	assert_true(bk_key_generate(&a, &err));
	assert_true(bk_key_generate(&b, &err));
	assert_true(bk_key_write_files(&a, path_a, &err));
	assert_true(bk_key_write_files(&b, path_b, &err));
	assert_true(bk_read_file(path_a, 4096, &text_a, &len_a, &err));
	assert_true(bk_read_file(path_b, 4096, &text_b, &len_b, &err));
	joined = malloc(len_a + len_b + len_a + 1);
	/* a, b and a again: the duplicate is harmless. */
	sprintf(joined, "%s%s%s", text_a, text_b, text_a);
	write_text(ring_path, joined, 0600);
	ring = bk_keyring_load(ring_path, BK_KEYS_FOR_RESTORE, &err);
	assert_non_null(ring);
	assert_int_equal(ring->count, 2);
	assert_non_null(bk_keyring_find(ring, a.id));
	assert_non_null(bk_keyring_find(ring, b.id));
	bk_keyring_free(ring);

	/* Two public keys for one source are ambiguous. */
	{
		char pub_a[520];
		char pub_b[520];
		char two_pubs[512];

		sprintf(pub_a, "%s.pub", path_a);
		sprintf(pub_b, "%s.pub", path_b);
		free(text_a);
		free(text_b);
		assert_true(bk_read_file(pub_a, 4096, &text_a, &len_a, &err));
		assert_true(bk_read_file(pub_b, 4096, &text_b, &len_b, &err));
		sprintf(joined, "%s%s", text_a, text_b);
		path_in(two_pubs, "two.pub");
		write_text(two_pubs, joined, 0644);
		expect_load_error(two_pubs, BK_KEYS_FOR_SOURCE,
						  "holds 2 public keys; a source seals to exactly one");
	}
	/*
	 * A restore keyring with a FILE.pub among its private keys: not
	 * "holds a public key only", but which key is only public.
	 */
	{
		char mixed[512];
		char expected[160];
		char id_hex[BK_KEY_ID_HEX_LEN + 1];
		char *private_b;
		size_t private_len;

		/* text_a is a's public key file now. */
		assert_true(bk_read_file(path_b, 4096, &private_b, &private_len, &err));
		sprintf(joined, "%s%s", private_b, text_a);
		free(private_b);
		path_in(mixed, "mixed");
		write_text(mixed, joined, 0600);
		bk_key_id_hex(a.id, id_hex);
		snprintf(expected, sizeof(expected),
				 "holds the public key %s among its private keys", id_hex);
		expect_load_error(mixed, BK_KEYS_FOR_RESTORE, expected);
	}
	free(text_a);
	free(text_b);
	free(joined);
}

static void
test_malformed_files(void **state)
{
	char path[512];

	path_in(path, "bad");
	write_text(path, "[bk-private-key]\nprivate-key = 1234\n", 0600);
	expect_load_error(path, BK_KEYS_FOR_RESTORE,
					  "line 2: private-key must be 64 hex digits");
	write_text(path, "# nothing here\n\n", 0600);
	expect_load_error(path, BK_KEYS_FOR_RESTORE, "holds no key");
	/*
	 * A key line before its section header: the message names the setting,
	 * never its value, which is the secret itself (it reaches the server
	 * log and bk_status() when a source is pointed at such a file).
	 */
	write_text(
		path,
		"private-key = "
		"300bb465e254c1b6ea4933540f962e6b9036c25ad0e495147cc5030b55167660\n"
		"[bk-private-key]\n",
		0600);
	expect_load_error(path, BK_KEYS_FOR_RESTORE,
					  "line 1: \"private-key\" outside a [bk-private-key]");
	expect_no_secret(path, BK_KEYS_FOR_SOURCE,
					 "300bb465e254c1b6ea4933540f962e6b9036c25ad0e495147cc5030b"
					 "55167660");
	expect_no_secret(path, BK_KEYS_FOR_RESTORE, "300bb465e254c1b6");
	write_text(
		path,
		"[bk-private-key]\nkey-id = 0000000000000000\nprivate-key = "
		"300bb465e254c1b6ea4933540f962e6b9036c25ad0e495147cc5030b55167660\n",
		0600);
	expect_load_error(path, BK_KEYS_FOR_RESTORE,
					  "line 1: key-id 0000000000000000 does not match the key");
	write_text(path, "[bk-private-key]\ncolour = blue\n", 0600);
	expect_load_error(path, BK_KEYS_FOR_RESTORE,
					  "line 2: unknown setting \"colour\"");
	write_text(path, "[bk-public-key]\npublic-key = 00\n", 0644);
	expect_load_error(path, BK_KEYS_FOR_SOURCE,
					  "public-key must be 64 hex digits");
	path_in(path, "missing");
	expect_load_error(path, BK_KEYS_FOR_RESTORE, "could not open key file");
	expect_load_error(dir, BK_KEYS_FOR_RESTORE, "is not a regular file");
}

/*
 * A key file cut short (a copy interrupted, a keyring whose appended key
 * was cut): refused, and the error says what to do, not only what is
 * wrong on which line.
 */
static void
expect_cut_refused(const char *path, const char *text, size_t len,
				   const char *needle)
{
	char *cut = strndup(text, len);
	BkError err;

	assert_non_null(cut);
	write_text(path, cut, 0600);
	free(cut);
	bk_error_clear(&err);
	assert_null(bk_keyring_load(path, BK_KEYS_FOR_RESTORE, &err));
	assert_int_equal(err.code, BK_ERR_KEY);
	assert_error_contains(&err, needle);
	if (strstr(err.hint, "cut short") == NULL)
		fail_msg("no hint for \"%s\": \"%s\"", err.message, err.hint);
}

static void
test_truncated_files_say_what_to_do(void **state)
{
	char path[512];
	char ring_path[512];
	char *text_a;
	char *text_b;
	char *joined;
	size_t len_a;
	size_t len_b;
	size_t value_at;
	BkKey key;
	BkError err;

	path_in(path, "a");
	assert_true(bk_key_generate(&key, &err));
	assert_true(bk_key_write_files(&key, path, &err));
	assert_true(bk_read_file(path, 4096, &text_a, &len_a, &err));
	path_in(path, "b");
	assert_true(bk_key_generate(&key, &err));
	assert_true(bk_key_write_files(&key, path, &err));
	assert_true(bk_read_file(path, 4096, &text_b, &len_b, &err));
	bk_secure_wipe(&key, sizeof(key));
	path_in(ring_path, "cut");

	expect_cut_refused(ring_path, text_b, 0, "holds no key");
	expect_cut_refused(ring_path, text_b, 40, "holds no key");
	value_at = (size_t) (strstr(text_b, "private-key = ") - text_b) + 14;
	expect_cut_refused(ring_path, text_b, value_at + 30,
					   "private-key must be 64 hex digits");
	expect_cut_refused(ring_path, text_b,
					   (size_t) (strstr(text_b, "[bk-private-key]") - text_b) +
						   8,
					   "expected \"name = value\"");
	/* a's key, then b's appended and cut inside its value. */
	joined = malloc(len_a + len_b + 1);
	assert_non_null(joined);
	memcpy(joined, text_a, len_a);
	memcpy(joined + len_a, text_b, len_b);
	joined[len_a + len_b] = '\0';
	expect_cut_refused(ring_path, joined, len_a + value_at + 30,
					   "private-key must be 64 hex digits");
	free(joined);
	free(text_a);
	free(text_b);
}

/* The fingerprint key is derived, so a .pub cannot be mixed with another key. */
static void
test_public_file_mismatch(void **state)
{
	char path[512];
	char pub[520];
	char *text;
	char *fp;
	size_t len;
	BkKey key;
	BkError err;

	path_in(path, "mix");
	sprintf(pub, "%s.pub", path);
	assert_true(bk_key_generate(&key, &err));
	assert_true(bk_key_write_files(&key, path, &err));
	assert_true(bk_read_file(pub, 4096, &text, &len, &err));
	fp = strstr(text, "fingerprint-key = ");
	assert_non_null(fp);
	fp[18] = fp[18] == '0' ? '1' : '0';
	write_text(pub, text, 0644);
	expect_load_error(pub, BK_KEYS_FOR_SOURCE, "does not match the key");
	free(text);
}

/*
 * The public key file a source seals to: any may read it, but one that
 * group or others can write, or that another user owns, is refused (its
 * writer chooses the key every backup is sealed to).
 */
static void
test_source_refuses_writable_public_key(void **state)
{
	char path[512];
	char pub[520];
	char expected[900];
	struct passwd *nobody = getpwnam("nobody");
	BkKey key;
	BkKeyring *ring;
	BkError err;

	path_in(path, "sealed");
	snprintf(pub, sizeof(pub), "%s.pub", path);
	assert_true(bk_key_generate(&key, &err));
	assert_true(bk_key_write_files(&key, path, &err));
	assert_int_equal(chmod(pub, 0664), 0);
	expect_load_error(pub, BK_KEYS_FOR_SOURCE,
					  "is writable by group or others (mode 0664)");
	assert_int_equal(chmod(pub, 0646), 0);
	expect_load_error(pub, BK_KEYS_FOR_SOURCE, "(mode 0646)");
	assert_int_equal(chmod(pub, 0644), 0);
	ring = bk_keyring_load(pub, BK_KEYS_FOR_SOURCE, &err);
	assert_non_null(ring);
	bk_keyring_free(ring);

	if (geteuid() != 0 || nobody == NULL || nobody->pw_uid == 0)
		return;
	assert_int_equal(chown(pub, nobody->pw_uid, (gid_t) -1), 0);
	snprintf(expected, sizeof(expected),
			 "public key file \"%s\" is owned by \"nobody\" (uid %u)", pub,
			 (unsigned int) nobody->pw_uid);
	expect_load_error(pub, BK_KEYS_FOR_SOURCE, expected);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_and_load),
		cmocka_unit_test(test_refuses_readable_private_key),
		cmocka_unit_test(test_refuses_private_key_of_another_user),
		cmocka_unit_test(test_source_refuses_private_key),
		cmocka_unit_test(test_source_refuses_writable_public_key),
		cmocka_unit_test(test_restore_refuses_public_key),
		cmocka_unit_test(test_keyring_of_several_keys),
		cmocka_unit_test(test_truncated_files_say_what_to_do),
		cmocka_unit_test(test_malformed_files),
		cmocka_unit_test(test_public_file_mismatch),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, setup, teardown);
}
