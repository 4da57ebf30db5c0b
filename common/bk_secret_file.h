/*
 * bk_secret_file.h
 *		Files that hold a secret bk trusts: private key files, the S3
 *		credentials file, the Kafka properties file and MariaDB password
 *		files.
 *
 * Whoever owns such a file can replace it, and so decides what bk trusts:
 * which keys decrypt a restore, which credentials sign the requests to the
 * store (and so which bucket, account and objects bk deals with).  A file
 * postgres owns, read by root's bk restore, is in the hands of every
 * database superuser (COPY ... TO PROGRAM runs as postgres).  So the rule
 * libpq applies to sslkey, and PostgreSQL to ssl_key_file: the file is owned
 * by the user bk runs as, who alone may access it (mode 0600 or less), or
 * by root, whose group may read it too (0640 or less, for root as well, so
 * that one root-owned file of group postgres serves root's bk restore and
 * postgres's bk wal-get).
 */
#ifndef BK_SECRET_FILE_H
#define BK_SECRET_FILE_H

#include <stddef.h>
#include <sys/stat.h>

#include "bk_error.h"

/* What the file is, for the rule's messages and error code. */
typedef enum BkSecretFile
{
	BK_SECRET_PRIVATE_KEY,      /* key_file, --key-file: BK_ERR_KEY */
	BK_SECRET_S3_CREDENTIALS,   /* s3_access_key_file: BK_ERR_CONFIG */
	BK_SECRET_KAFKA_PROPERTIES, /* bk.kafka_properties_file: BK_ERR_CONFIG */
	BK_SECRET_MARIADB_PASSWORD, /* mysql_password_file, --mysql-password-file:
								 * BK_ERR_CONFIG */
	BK_SECRET_MARIADB_TLS_KEY,  /* mysql_ssl_key: BK_ERR_CONFIG */
	BK_SECRET_MARIADB_TLS_KEY_OPTION, /* bk restore's --mysql-ssl-key */
} BkSecretFile;

/*
 * Does the file of st (fstat of the descriptor bk reads, never a stat of
 * the path before opening it: a link or a renamed directory on the way can
 * then only lead to a file that passes) follow the owner and mode rule?
 * If not, err names path, its owner and the user bk runs as, and says what
 * to do.
 */
extern bool bk_secret_file_ok(const char *path, const struct stat *st,
							  BkSecretFile what, BkError *err);

/*
 * Read a whole secret file of at most max_len bytes into a malloc'd,
 * NUL-terminated buffer, refusing anything but a regular file that passes
 * bk_secret_file_ok.  The file is opened without waiting: a FIFO put in its
 * place is refused at once, never hangs bk.  The caller wipes the buffer
 * (bk_secure_wipe) before freeing it.
 */
extern bool bk_secret_file_read(const char *path, BkSecretFile what,
								size_t max_len, char **data, size_t *len,
								BkError *err);

/*
 * The public key file a source seals every backup to is not a secret, but
 * whoever can write it chooses that key: the same owner rule, and no write
 * by group or others (any may read it).
 */
extern bool bk_public_key_file_ok(const char *path, const struct stat *st,
								  BkError *err);

#endif /* BK_SECRET_FILE_H */
