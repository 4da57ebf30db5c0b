/*
 * bk_error.h
 *		One error type for everything in libbk.
 *
 * libbk is linked into a PostgreSQL backend, a MariaDB server, a daemon and
 * a CLI.  None of those can share an error mechanism: PostgreSQL longjmps,
 * MariaDB wants a short message in a caller-owned buffer, the daemon logs and
 * the CLI exits.  So the library never prints, exits or calls back into its
 * host: every fallible function returns false and fills a BkError, which the
 * caller turns into ereport(), a UDF message, a log line or an exit code.
 *
 * A BkError carries a code (what class of failure, which the CLI maps to an
 * exit status), a message naming what failed and on which object, and an
 * optional hint saying what to do about it.
 */
#ifndef BK_ERROR_H
#define BK_ERROR_H

#include <stdbool.h>
#include <stddef.h>

typedef enum BkErrorCode
{
	BK_OK = 0,
	BK_ERR_USAGE,    /* bad argument or unknown option */
	BK_ERR_CONFIG,   /* bad configuration value or file */
	BK_ERR_IO,       /* file system or network I/O */
	BK_ERR_FORMAT,   /* malformed, corrupt or truncated input */
	BK_ERR_SEQUENCE, /* chunk missing, duplicated or out of order */
	BK_ERR_AUTH,     /* AEAD authentication failed: tampered */
	BK_ERR_KEY,      /* unknown or wrong key, bad key file */
	BK_ERR_KAFKA,    /* Kafka client or broker error */
	BK_ERR_TIMEOUT,  /* a bounded wait expired */
	BK_ERR_CRYPTO,   /* OpenSSL failed internally */
	BK_ERR_NOMEM,
	BK_ERR_INTERRUPTED, /* the caller asked us to stop */
	BK_ERR_CONFLICT,    /* same object name, different content */
	BK_ERR_NOT_FOUND,
	BK_ERR_INTERNAL,
	BK_ERR_REFUSED, /* a name the storage refuses for good: too long */
	/*
	 * The repository's storage failed to list, stat or read (an object
	 * store's error or lost connection, the repository disk's I/O error):
	 * kept apart from BK_ERR_IO, which is this host's own files, so that a
	 * restore tells "try again when the repository answers" (exit 5) from
	 * a failure of its target (exit 1).
	 */
	BK_ERR_STORE
} BkErrorCode;

#define BK_ERROR_MESSAGE_MAX 1024
#define BK_ERROR_HINT_MAX    512

typedef struct BkError
{
	BkErrorCode code;
	char message[BK_ERROR_MESSAGE_MAX];
	char hint[BK_ERROR_HINT_MAX];
} BkError;

#if defined(__GNUC__)
#define BK_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define BK_PRINTF(fmt, args)
#endif

/* Reset to "no error". */
extern void bk_error_clear(BkError *err);

/*
 * Record an error and return false, so call sites read
 * "return bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s", ...)".
 * err may be NULL.  Any earlier hint is cleared.
 */
extern bool bk_error_set(BkError *err, BkErrorCode code, const char *fmt, ...)
	BK_PRINTF(3, 4);

/* Attach a hint (what to do) to the error already recorded; returns false. */
extern bool bk_error_hint(BkError *err, const char *fmt, ...) BK_PRINTF(2, 3);

/*
 * Prefix the recorded message with context ("archiving \"%s\": ") so
 * lower layers need not know which object they were working on.
 */
extern bool bk_error_prefix(BkError *err, const char *fmt, ...) BK_PRINTF(2, 3);

/*
 * Messages cut to fit (BK_ERROR_MESSAGE_MAX, BK_ERROR_HINT_MAX) are cut
 * between UTF-8 characters, never inside one.
 */

/*
 * Copy at most max_chars UTF-8 characters of text into buf (size bytes),
 * with "..." if text is longer: for messages that echo what a caller
 * gave, however long.  Returns the length copied.
 */
extern size_t bk_text_excerpt(char *buf, size_t size, const char *text,
							  size_t max_chars);

/* Append OpenSSL's queued error text, if any, to the message. */
extern bool bk_error_set_openssl(BkError *err, BkErrorCode code,
								 const char *what);

/*
 * The object read is at fault, not the way to it: its bytes (malformed,
 * out of sequence, failing its tag) or its key (not in the keyring).
 * Reading another object may succeed; reading this one again will not.
 */
extern bool bk_error_is_damage(const BkError *err);

/* Short name of a code, for logs and JSON ("format", "auth", ...). */
extern const char *bk_error_code_name(BkErrorCode code);

#endif /* BK_ERROR_H */
