/*
 * s3_sign.h
 *		AWS Signature Version 4 for S3 requests, done by bk with OpenSSL.
 *
 * bk signs its own requests instead of using curl's CURLOPT_AWS_SIGV4:
 * the curl of Debian 12 (7.88) neither adds x-amz-content-sha256 nor
 * canonicalises the query string nor encodes the path, so the request it
 * signs is not always the one it sends.  Here the caller gives the raw
 * (unencoded) path and query, this file encodes them once, and the same
 * encoded forms are used for the URL and for the signature.
 *
 * Tested against AWS's published SigV4 test suite and the S3 examples of
 * the S3 API reference (tests/unit/test_s3_sign.c).
 */
#ifndef BK_S3_SIGN_H
#define BK_S3_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "bk_error.h"

#define BK_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
/* SHA-256 of nothing: the payload hash of a request without a body. */
#define BK_SIGV4_EMPTY_SHA256                                                  \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct BkSigV4Pair
{
	const char *name;
	const char *value; /* "" for a query parameter without a value */
} BkSigV4Pair;

typedef struct BkSigV4Request
{
	const char *method;
	const char *path; /* raw: "/bucket/a key", encoded here */
	const BkSigV4Pair *query;
	int query_count;
	/* Every header to sign, host and x-amz-date included. */
	const BkSigV4Pair *headers;
	int header_count;
	const char *payload_hash; /* hex SHA-256, or UNSIGNED-PAYLOAD */
} BkSigV4Request;

typedef struct BkSigV4Credentials
{
	const char *access_key_id;
	const char *secret_access_key;
	const char *region;
	const char *service; /* "s3" */
} BkSigV4Credentials;

/*
 * URI-encode text as SigV4 wants it: everything but A-Z a-z 0-9 - . _ ~
 * becomes %XX (upper-case hex); '/' is kept when keep_slash.  Returns false
 * if out_len is too small.
 */
extern bool bk_sigv4_uri_encode(const char *text, bool keep_slash, char *out,
								size_t out_len);

/*
 * The canonical query string (sorted, encoded) for query; out_len bytes.
 * The URL sent must carry exactly this string.
 */
extern bool bk_sigv4_canonical_query(const BkSigV4Pair *query, int count,
									 char *out, size_t out_len, BkError *err);

/*
 * The Authorization header value for request at amz_date
 * ("20150830T123600Z").  canonical_request (may be NULL) gets the
 * canonical request, for tests and for debugging a refused signature.
 */
extern bool bk_sigv4_authorization(const BkSigV4Request *request,
								   const BkSigV4Credentials *credentials,
								   const char *amz_date, char *out,
								   size_t out_len, char *canonical_request,
								   size_t canonical_len, BkError *err);

#endif /* BK_S3_SIGN_H */
