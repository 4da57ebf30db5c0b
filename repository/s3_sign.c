/*
 * s3_sign.c
 *		AWS Signature Version 4 (s3_sign.h).
 *
 * The steps are the documented ones: a canonical request (method, encoded
 * path, sorted encoded query, lower-case sorted headers with trimmed
 * values, the signed header names, the payload hash), its SHA-256 in a
 * string to sign with the date and scope, and an HMAC-SHA256 chain from
 * "AWS4" + secret through date, region, service and "aws4_request".
 */
#include "s3_sign.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "bk_util.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define SIGV4_MAX_PAIRS 64

bool
bk_sigv4_uri_encode(const char *text, bool keep_slash, char *out,
					size_t out_len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t pos = 0;

	for (const unsigned char *c = (const unsigned char *) text; *c; c++)
	{
		if (isalnum(*c) || *c == '-' || *c == '.' || *c == '_' || *c == '~' ||
			(keep_slash && *c == '/'))
		{
			if (pos + 1 >= out_len)
				return false;
			out[pos++] = (char) *c;
		}
		else
		{
			if (pos + 3 >= out_len)
				return false;
			out[pos++] = '%';
			out[pos++] = hex[*c >> 4];
			out[pos++] = hex[*c & 0x0f];
		}
	}
	if (pos >= out_len)
		return false;
	out[pos] = '\0';
	return true;
}

typedef struct EncodedPair
{
	char *name;
	char *value;
} EncodedPair;

static int
encoded_pair_cmp(const void *a, const void *b)
{
	const EncodedPair *left = a;
	const EncodedPair *right = b;
	int cmp = strcmp(left->name, right->name);

	return cmp != 0 ? cmp : strcmp(left->value, right->value);
}

static char *
encode_dup(const char *text, bool keep_slash)
{
	size_t len = strlen(text) * 3 + 1;
	char *out = malloc(len);

	if (out != NULL && !bk_sigv4_uri_encode(text, keep_slash, out, len))
	{
		free(out);
		out = NULL;
	}
	return out;
}

bool
bk_sigv4_canonical_query(const BkSigV4Pair *query, int count, char *out,
						 size_t out_len, BkError *err)
{
	EncodedPair pairs[SIGV4_MAX_PAIRS];
	size_t pos = 0;
	bool ok = true;

	if (count > SIGV4_MAX_PAIRS)
		return bk_error_set(err, BK_ERR_INTERNAL, "too many query parameters");
	memset(pairs, 0, sizeof(pairs));
	for (int pairIdx = 0; pairIdx < count && ok; pairIdx++)
	{
		pairs[pairIdx].name = encode_dup(query[pairIdx].name, false);
		pairs[pairIdx].value = encode_dup(query[pairIdx].value, false);
		if (pairs[pairIdx].name == NULL || pairs[pairIdx].value == NULL)
			ok = bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	if (ok && count > 1)
		qsort(pairs, (size_t) count, sizeof(pairs[0]), encoded_pair_cmp);
	out[0] = '\0';
	for (int pairIdx = 0; pairIdx < count && ok; pairIdx++)
	{
		int n = snprintf(out + pos, out_len - pos, "%s%s=%s",
						 pairIdx > 0 ? "&" : "", pairs[pairIdx].name,
						 pairs[pairIdx].value);

		if (n < 0 || (size_t) n >= out_len - pos)
			ok = bk_error_set(err, BK_ERR_INTERNAL, "query string too long");
		else
			pos += (size_t) n;
	}
	for (int pairIdx = 0; pairIdx < count; pairIdx++)
	{
		free(pairs[pairIdx].name);
		free(pairs[pairIdx].value);
	}
	return ok;
}

/*
 * A header as signed: lower-case name, value trimmed, inner runs of spaces
 * made one.  The value is allocated to its length: a session token
 * (x-amz-security-token) can be several kB long.
 */
typedef struct CanonicalHeader
{
	char name[128];
	char *value;
} CanonicalHeader;

static int
canonical_header_cmp(const void *a, const void *b)
{
	return strcmp(((const CanonicalHeader *) a)->name,
				  ((const CanonicalHeader *) b)->name);
}

/* false if the name is too long or there is no memory for the value. */
static bool
canonical_header(const BkSigV4Pair *pair, CanonicalHeader *out)
{
	size_t pos = 0;
	const char *c = pair->value;

	if (strlen(pair->name) >= sizeof(out->name) ||
		(out->value = malloc(strlen(pair->value) + 1)) == NULL)
		return false;
	for (size_t charIdx = 0; pair->name[charIdx]; charIdx++)
		out->name[charIdx] =
			(char) tolower((unsigned char) pair->name[charIdx]);
	out->name[strlen(pair->name)] = '\0';
	while (*c == ' ' || *c == '\t')
		c++;
	for (; *c; c++)
	{
		if ((*c == ' ' || *c == '\t') && pos > 0 && out->value[pos - 1] == ' ')
			continue;
		out->value[pos++] = *c == '\t' ? ' ' : *c;
	}
	while (pos > 0 && out->value[pos - 1] == ' ')
		pos--;
	out->value[pos] = '\0';
	return true;
}

static bool
hmac_sha256(const uint8_t *key, size_t key_len, const char *data,
			uint8_t out[SHA256_DIGEST_LENGTH])
{
	unsigned int out_len = SHA256_DIGEST_LENGTH;

	return HMAC(EVP_sha256(), key, (int) key_len, (const uint8_t *) data,
				strlen(data), out, &out_len) != NULL;
}

/* Append with bounds; false once out is full. */
static bool
append(char *out, size_t out_len, size_t *pos, const char *text)
{
	size_t len = strlen(text);

	if (*pos + len >= out_len)
		return false;
	memcpy(out + *pos, text, len + 1);
	*pos += len;
	return true;
}

bool
bk_sigv4_authorization(const BkSigV4Request *request,
					   const BkSigV4Credentials *credentials,
					   const char *amz_date, char *out, size_t out_len,
					   char *canonical_request, size_t canonical_len,
					   BkError *err)
{
	CanonicalHeader headers[SIGV4_MAX_PAIRS];
	int header_count = 0;
	char signed_headers[2048];
	char path[4096 * 3];
	char query[8192];
	char *creq = NULL;
	size_t creq_len;
	char scope[256];
	char sts[512];
	char date[9];
	char hex[2 * SHA256_DIGEST_LENGTH + 1];
	uint8_t digest[SHA256_DIGEST_LENGTH];
	uint8_t key[SHA256_DIGEST_LENGTH];
	char secret[512];
	size_t pos = 0;
	size_t signed_pos = 0;
	bool ok = false;
	int n;

	if (request->header_count > SIGV4_MAX_PAIRS || strlen(amz_date) != 16)
		return bk_error_set(err, BK_ERR_INTERNAL, "cannot sign this request");
	for (; header_count < request->header_count; header_count++)
		if (!canonical_header(&request->headers[header_count],
							  &headers[header_count]))
		{
			bk_error_set(err, BK_ERR_INTERNAL, "header \"%s\" cannot be signed",
						 request->headers[header_count].name);
			goto done;
		}
	qsort(headers, (size_t) header_count, sizeof(headers[0]),
		  canonical_header_cmp);
	if (!bk_sigv4_uri_encode(request->path, true, path, sizeof(path)) ||
		!bk_sigv4_canonical_query(request->query, request->query_count, query,
								  sizeof(query), err))
	{
		bk_error_set(err, BK_ERR_INTERNAL, "request path too long");
		goto done;
	}

	/* Canonical request, in a buffer of the size it takes. */
	creq_len = strlen(request->method) + strlen(path) + strlen(query) +
			   sizeof(signed_headers) + strlen(request->payload_hash) + 8;
	for (int headerIdx = 0; headerIdx < header_count; headerIdx++)
		creq_len += strlen(headers[headerIdx].name) +
					strlen(headers[headerIdx].value) + 2;
	if ((creq = malloc(creq_len)) == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		goto done;
	}
	signed_headers[0] = '\0';
	if (!append(creq, creq_len, &pos, request->method) ||
		!append(creq, creq_len, &pos, "\n") ||
		!append(creq, creq_len, &pos, path) ||
		!append(creq, creq_len, &pos, "\n") ||
		!append(creq, creq_len, &pos, query) ||
		!append(creq, creq_len, &pos, "\n"))
	{
		bk_error_set(err, BK_ERR_INTERNAL, "request too long to sign");
		goto done;
	}
	for (int headerIdx = 0; headerIdx < header_count; headerIdx++)
	{
		if (!append(creq, creq_len, &pos, headers[headerIdx].name) ||
			!append(creq, creq_len, &pos, ":") ||
			!append(creq, creq_len, &pos, headers[headerIdx].value) ||
			!append(creq, creq_len, &pos, "\n") ||
			(headerIdx > 0 && !append(signed_headers, sizeof(signed_headers),
									  &signed_pos, ";")) ||
			!append(signed_headers, sizeof(signed_headers), &signed_pos,
					headers[headerIdx].name))
		{
			bk_error_set(err, BK_ERR_INTERNAL, "request too long to sign");
			goto done;
		}
	}
	if (!append(creq, creq_len, &pos, "\n") ||
		!append(creq, creq_len, &pos, signed_headers) ||
		!append(creq, creq_len, &pos, "\n") ||
		!append(creq, creq_len, &pos, request->payload_hash))
	{
		bk_error_set(err, BK_ERR_INTERNAL, "request too long to sign");
		goto done;
	}
	if (canonical_request != NULL)
		bk_strlcpy(canonical_request, creq, canonical_len);

	/* String to sign. */
	memcpy(date, amz_date, 8);
	date[8] = '\0';
	snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date,
			 credentials->region, credentials->service);
	SHA256((const uint8_t *) creq, pos, digest);
	bk_hex_encode(digest, sizeof(digest), hex);
	snprintf(sts, sizeof(sts), "%s\n%s\n%s\n%s", SIGV4_ALGORITHM, amz_date,
			 scope, hex);

	/* Signing key, then the signature. */
	n = snprintf(secret, sizeof(secret), "AWS4%s",
				 credentials->secret_access_key);
	if (n < 0 || (size_t) n >= sizeof(secret))
	{
		bk_error_set(err, BK_ERR_CONFIG, "S3 secret key too long");
		goto done;
	}
	if (!hmac_sha256((const uint8_t *) secret, (size_t) n, date, key) ||
		!hmac_sha256(key, sizeof(key), credentials->region, key) ||
		!hmac_sha256(key, sizeof(key), credentials->service, key) ||
		!hmac_sha256(key, sizeof(key), "aws4_request", key) ||
		!hmac_sha256(key, sizeof(key), sts, digest))
	{
		bk_error_set(err, BK_ERR_CRYPTO, "HMAC-SHA256 failed");
		goto done;
	}
	bk_hex_encode(digest, sizeof(digest), hex);
	n = snprintf(out, out_len,
				 "%s Credential=%s/%s, SignedHeaders=%s, Signature=%s",
				 SIGV4_ALGORITHM, credentials->access_key_id, scope,
				 signed_headers, hex);
	if (n < 0 || (size_t) n >= out_len)
	{
		bk_error_set(err, BK_ERR_INTERNAL, "authorization header too long");
		goto done;
	}
	ok = true;

done:
	OPENSSL_cleanse(secret, sizeof(secret));
	OPENSSL_cleanse(key, sizeof(key));
	/* The canonical request and the headers hold the session token. */
	if (creq != NULL)
	{
		OPENSSL_cleanse(creq, creq_len);
		free(creq);
	}
	for (int headerIdx = 0; headerIdx < header_count; headerIdx++)
	{
		OPENSSL_cleanse(headers[headerIdx].value,
						strlen(headers[headerIdx].value));
		free(headers[headerIdx].value);
	}
	return ok;
}
