/*
 * bk_secret_file.c
 *		The owner and mode rule of files that hold secrets, and reading
 *		them.  See bk_secret_file.h.
 */
#include "bk_secret_file.h"

#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bk_util.h"

/* How the messages name each kind of file, and what its owner controls. */
typedef struct SecretFileKind
{
	const char *name;       /* "private key file \"PATH\" ..." */
	BkErrorCode code;       /* the class of the error (the CLI's exit) */
	const char *owner_can;  /* "Its owner could ..." */
	const char *group_for;  /* "... to let its group read it: ..." */
	const char *copy_where; /* "... give bk a copy owned by USER ..." */
	const char *mode_why;   /* "Run \"chmod 600 PATH\": ..." */
} SecretFileKind;

static const SecretFileKind kinds[] = {
	[BK_SECRET_PRIVATE_KEY] = {"private key file", BK_ERR_KEY,
							   "replace the keys bk trusts",
							   "group postgres for bk wal-get",
							   "with --key-file",
							   "a private key must be readable by its owner "
							   "only"},
	[BK_SECRET_S3_CREDENTIALS] = {"s3_access_key_file", BK_ERR_CONFIG,
								  "replace the credentials bk signs its "
								  "requests with",
								  "group postgres for bk wal-get",
								  "in s3_access_key_file",
								  "credentials must be readable by their "
								  "owner only"},
	[BK_SECRET_KAFKA_PROPERTIES] = {"Kafka properties file", BK_ERR_CONFIG,
									"replace the credentials and settings "
									"bk connects to Kafka with",
									"group postgres for the server",
									"in bk.kafka_properties_file",
									"Kafka credentials must be readable by "
									"their owner only"},
	[BK_SECRET_MARIADB_PASSWORD] = {"MariaDB password file", BK_ERR_CONFIG,
									"read the password and change it",
									"the group of the user bk runs as",
									"in its place",
									"a password must be readable by its owner "
									"only"},
	[BK_SECRET_MARIADB_TLS_KEY] = {"mysql_ssl_key file", BK_ERR_CONFIG,
								   "read the key and pose as bk to the "
								   "server",
								   "the group of the user bk runs as",
								   "in mysql_ssl_key",
								   "a private key must be readable by its "
								   "owner only"},
	[BK_SECRET_MARIADB_TLS_KEY_OPTION] = {"--mysql-ssl-key file", BK_ERR_CONFIG,
										  "read the key and pose as bk to the "
										  "server",
										  "the group of the user bk runs as",
										  "in --mysql-ssl-key",
										  "a private key must be readable by "
										  "its owner only"},
};

/* "\"postgres\" (uid 26)", or "uid 26" for a uid without a name. */
static void
describe_user(uid_t uid, char *out, size_t out_len)
{
	struct passwd entry;
	struct passwd *pw = NULL;
	char buf[1024];

	/* getpwuid_r: bk wal-get may load a keyring beside other threads. */
	if (getpwuid_r(uid, &entry, buf, sizeof(buf), &pw) == 0 && pw != NULL)
		snprintf(out, out_len, "\"%s\" (uid %u)", pw->pw_name,
				 (unsigned int) uid);
	else
		snprintf(out, out_len, "uid %u", (unsigned int) uid);
}

/*
 * Is the file of st owned by a user other than root and the one bk runs as?
 * Then err says so, naming both (the latter also in runner, for the
 * caller's hint).
 */
static bool
owned_by_another(const char *path, const struct stat *st, BkErrorCode code,
				 const char *name, char *runner, size_t runner_len,
				 BkError *err)
{
	uid_t euid = geteuid();
	char owner[320];

	if (st->st_uid == euid || st->st_uid == 0)
		return false;
	describe_user(st->st_uid, owner, sizeof(owner));
	describe_user(euid, runner, runner_len);
	bk_error_set(err, code,
				 "%s \"%s\" is owned by %s, not by %s, whom bk runs as%s", name,
				 path, owner, runner, euid == 0 ? "" : ", nor by root");
	return true;
}

bool
bk_secret_file_ok(const char *path, const struct stat *st, BkSecretFile what,
				  BkError *err)
{
	const SecretFileKind *kind = &kinds[what];
	char runner[320];

	if (owned_by_another(path, st, kind->code, kind->name, runner,
						 sizeof(runner), err))
		return bk_error_hint(
			err,
			"Its owner could %s.  As root, run \"chown root %s\" (mode 0600, "
			"or 0640 to let its group read it: %s), or give bk a copy owned "
			"by %s %s.",
			kind->owner_can, path, kind->group_for, runner, kind->copy_where);
	if ((st->st_uid == 0 &&
		 (st->st_mode & (S_IWGRP | S_IXGRP | S_IRWXO)) != 0) ||
		(st->st_uid != 0 && (st->st_mode & (S_IRWXG | S_IRWXO)) != 0))
	{
		bk_error_set(err, kind->code,
					 "%s \"%s\" is accessible by group or others (mode %04o)",
					 kind->name, path, (unsigned int) (st->st_mode & 07777));
		return bk_error_hint(err,
							 "Run \"chmod 600 %s\": %s (if root owns it, "
							 "0640 lets its group read it too).",
							 path, kind->mode_why);
	}
	return true;
}

bool
bk_public_key_file_ok(const char *path, const struct stat *st, BkError *err)
{
	char runner[320];

	if (owned_by_another(path, st, BK_ERR_KEY, "public key file", runner,
						 sizeof(runner), err))
		return bk_error_hint(err,
							 "Its owner could choose the key every backup is"
							 " sealed to.  As root, run \"chown root %s\""
							 " (mode 0644).",
							 path);
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0)
	{
		bk_error_set(err, BK_ERR_KEY,
					 "public key file \"%s\" is writable by group or others"
					 " (mode %04o)",
					 path, (unsigned int) (st->st_mode & 07777));
		return bk_error_hint(err,
							 "Run \"chmod go-w %s\": whoever can write it"
							 " chooses the key every backup is sealed to.",
							 path);
	}
	return true;
}

/* bk_read_file_checked's check: the rule, and whether it refused. */
typedef struct SecretCheck
{
	BkSecretFile what;
	bool refused;
} SecretCheck;

static bool
secret_check(const char *path, const struct stat *st, void *arg, BkError *err)
{
	SecretCheck *check = arg;

	check->refused = !bk_secret_file_ok(path, st, check->what, err);
	return !check->refused;
}

bool
bk_secret_file_read(const char *path, BkSecretFile what, size_t max_len,
					char **data, size_t *len, BkError *err)
{
	SecretCheck check = {what, false};

	if (bk_read_file_checked(path, max_len, secret_check, &check, data, len,
							 err))
		return true;
	/* The rule's message names the file; the others name it here. */
	if (!check.refused && err->code != BK_ERR_NOMEM)
	{
		err->code = kinds[what].code;
		bk_error_prefix(err, "%s: ", kinds[what].name);
	}
	return false;
}
