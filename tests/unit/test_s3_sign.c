/*
 * test_s3_sign.c
 *		The SigV4 signer against AWS's published vectors: requests of the
 *		SigV4 test suite (service "service", 2015-08-30) and the examples of
 *		the S3 API reference's "Signature Calculations for the Authorization
 *		Header" page (bucket "examplebucket", 2013-05-24).  A signer that
 *		passes these signs what AWS, Ceph and s3proxy check.
 */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#include "bk_util.h"
#include "s3_sign.h"

static const BkSigV4Credentials suite_credentials = {
	.access_key_id = "AKIDEXAMPLE",
	.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
	.region = "us-east-1",
	.service = "service",
};

static const BkSigV4Credentials s3_credentials = {
	.access_key_id = "AKIAIOSFODNN7EXAMPLE",
	.secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
	.region = "us-east-1",
	.service = "s3",
};

#define SUITE_DATE "20150830T123600Z"
#define S3_DATE    "20130524T000000Z"

static void
sha256_hex(const char *text, char hex[2 * SHA256_DIGEST_LENGTH + 1])
{
	uint8_t digest[SHA256_DIGEST_LENGTH];

	SHA256((const uint8_t *) text, strlen(text), digest);
	bk_hex_encode(digest, sizeof(digest), hex);
}

/* Sign and compare the whole Authorization value. */
static void
check_signature(const BkSigV4Request *request,
				const BkSigV4Credentials *credentials, const char *date,
				const char *expected)
{
	char authorization[1024];
	char creq[8192];
	BkError err;

	bk_error_clear(&err);
	assert_true(bk_sigv4_authorization(request, credentials, date,
									   authorization, sizeof(authorization),
									   creq, sizeof(creq), &err));
	if (strcmp(authorization, expected) != 0)
		print_message("canonical request:\n%s\n", creq);
	assert_string_equal(authorization, expected);
}

static void
test_suite_query_order(void **state)
{
	const BkSigV4Pair query[] = {{"Param2", "value2"}, {"Param1", "value1"}};
	const BkSigV4Pair headers[] = {{"Host", "example.amazonaws.com"},
								   {"X-Amz-Date", SUITE_DATE}};
	BkSigV4Request request = {
		"GET", "/", query, 2, headers, 2, BK_SIGV4_EMPTY_SHA256};
	char authorization[1024];
	char creq[8192];
	BkError err;

	check_signature(
		&request, &suite_credentials, SUITE_DATE,
		"AWS4-HMAC-SHA256 "
		"Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
		"SignedHeaders=host;x-amz-date, "
		"Signature="
		"b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
	/* The suite's canonical request for it. */
	assert_true(bk_sigv4_authorization(&request, &suite_credentials, SUITE_DATE,
									   authorization, sizeof(authorization),
									   creq, sizeof(creq), &err));
	assert_string_equal(creq, "GET\n/\nParam1=value1&Param2=value2\n"
							  "host:example.amazonaws.com\n"
							  "x-amz-date:20150830T123600Z\n\n"
							  "host;x-amz-date\n" BK_SIGV4_EMPTY_SHA256);
}

static void
test_suite_paths(void **state)
{
	const BkSigV4Pair headers[] = {{"Host", "example.amazonaws.com"},
								   {"X-Amz-Date", SUITE_DATE}};
	BkSigV4Request request = {"GET", "/\xe1\x88\xb4",      NULL, 0, headers,
							  2,     BK_SIGV4_EMPTY_SHA256};

	/* get-utf8 */
	check_signature(
		&request, &suite_credentials, SUITE_DATE,
		"AWS4-HMAC-SHA256 "
		"Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
		"SignedHeaders=host;x-amz-date, "
		"Signature="
		"8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85");
	/* get-unreserved */
	request.path = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				   "abcdefghijklmnopqrstuvwxyz";
	check_signature(
		&request, &suite_credentials, SUITE_DATE,
		"AWS4-HMAC-SHA256 "
		"Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
		"SignedHeaders=host;x-amz-date, "
		"Signature="
		"07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f");
}

static void
test_suite_utf8_query(void **state)
{
	const BkSigV4Pair query[] = {{"\xe1\x88\xb4", "bar"}};
	const BkSigV4Pair headers[] = {{"Host", "example.amazonaws.com"},
								   {"X-Amz-Date", SUITE_DATE}};
	BkSigV4Request request = {
		"GET", "/", query, 1, headers, 2, BK_SIGV4_EMPTY_SHA256};

	check_signature(
		&request, &suite_credentials, SUITE_DATE,
		"AWS4-HMAC-SHA256 "
		"Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
		"SignedHeaders=host;x-amz-date, "
		"Signature="
		"2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04");
}

static void
test_suite_header_trim(void **state)
{
	const BkSigV4Pair headers[] = {{"Host", "example.amazonaws.com"},
								   {"My-Header1", " value1"},
								   {"My-Header2", " \"a   b   c\""},
								   {"X-Amz-Date", SUITE_DATE}};
	BkSigV4Request request = {
		"GET", "/", NULL, 0, headers, 4, BK_SIGV4_EMPTY_SHA256};

	check_signature(
		&request, &suite_credentials, SUITE_DATE,
		"AWS4-HMAC-SHA256 "
		"Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
		"SignedHeaders=host;my-header1;my-header2;x-amz-date, "
		"Signature="
		"acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736");
}

static void
test_suite_post(void **state)
{
	char body_hash[2 * SHA256_DIGEST_LENGTH + 1];
	const BkSigV4Pair form_headers[] = {
		{"Content-Type", "application/x-www-form-urlencoded"},
		{"Host", "example.amazonaws.com"},
		{"X-Amz-Date", SUITE_DATE}};
	const BkSigV4Pair sts_headers[] = {
		{"Host", "example.amazonaws.com"},
		{"X-Amz-Date", SUITE_DATE},
		{"X-Amz-Security-Token",
		 "AQoDYXdzEPT//////////"
		 "wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfp"
		 "SPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/"
		 "kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp7"
		 "5YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+"
		 "xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KS"
		 "YvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="}};
	BkSigV4Request request = {"POST", "/", NULL, 0, form_headers, 3, body_hash};

	/* post-x-www-form-urlencoded */
	sha256_hex("Param1=value1", body_hash);
	check_signature(
		&request, &suite_credentials, SUITE_DATE,
		"AWS4-HMAC-SHA256 "
		"Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
		"SignedHeaders=content-type;host;x-amz-date, "
		"Signature="
		"ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");
	/* post-sts-header-before: a session token is signed like any header */
	request.headers = sts_headers;
	request.payload_hash = BK_SIGV4_EMPTY_SHA256;
	check_signature(
		&request, &suite_credentials, SUITE_DATE,
		"AWS4-HMAC-SHA256 "
		"Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
		"SignedHeaders=host;x-amz-date;x-amz-security-token, "
		"Signature="
		"85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead");
}

static void
test_s3_get_object(void **state)
{
	const BkSigV4Pair headers[] = {
		{"Host", "examplebucket.s3.amazonaws.com"},
		{"Range", "bytes=0-9"},
		{"x-amz-content-sha256", BK_SIGV4_EMPTY_SHA256},
		{"x-amz-date", S3_DATE}};
	BkSigV4Request request = {"GET", "/test.txt",          NULL, 0, headers,
							  4,     BK_SIGV4_EMPTY_SHA256};

	check_signature(
		&request, &s3_credentials, S3_DATE,
		"AWS4-HMAC-SHA256 "
		"Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
		"SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
		"Signature="
		"f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void
test_s3_put_object(void **state)
{
	char body_hash[2 * SHA256_DIGEST_LENGTH + 1];
	const BkSigV4Pair headers[] = {
		{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
		{"Host", "examplebucket.s3.amazonaws.com"},
		{"x-amz-date", S3_DATE},
		{"x-amz-storage-class", "REDUCED_REDUNDANCY"},
		{"x-amz-content-sha256", body_hash}};
	/* The key has a '$': the path is encoded once, here. */
	BkSigV4Request request = {"PUT", "/test$file.text", NULL, 0, headers,
							  5,     body_hash};

	sha256_hex("Welcome to Amazon S3.", body_hash);
	assert_string_equal(
		body_hash,
		"44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
	check_signature(
		&request, &s3_credentials, S3_DATE,
		"AWS4-HMAC-SHA256 "
		"Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
		"SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-"
		"storage-class, "
		"Signature="
		"98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

static void
test_s3_list_objects(void **state)
{
	const BkSigV4Pair query[] = {{"prefix", "J"}, {"max-keys", "2"}};
	const BkSigV4Pair headers[] = {
		{"Host", "examplebucket.s3.amazonaws.com"},
		{"x-amz-content-sha256", BK_SIGV4_EMPTY_SHA256},
		{"x-amz-date", S3_DATE}};
	BkSigV4Request request = {
		"GET", "/", query, 2, headers, 3, BK_SIGV4_EMPTY_SHA256};

	check_signature(
		&request, &s3_credentials, S3_DATE,
		"AWS4-HMAC-SHA256 "
		"Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
		"SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
		"Signature="
		"34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

static void
test_uri_encode(void **state)
{
	char out[64];
	char small[4];
	const BkSigV4Pair query[] = {
		{"prefix", "a/b c"}, {"delimiter", "/"}, {"list-type", "2"}};
	BkError err;

	assert_true(
		bk_sigv4_uri_encode("/src/wal/0000 1+~", true, out, sizeof(out)));
	assert_string_equal(out, "/src/wal/0000%201%2B~");
	assert_true(bk_sigv4_uri_encode("a/b", false, out, sizeof(out)));
	assert_string_equal(out, "a%2Fb");
	assert_false(bk_sigv4_uri_encode("abcd", false, small, sizeof(small)));
	assert_true(bk_sigv4_canonical_query(query, 3, out, sizeof(out), &err));
	assert_string_equal(out, "delimiter=%2F&list-type=2&prefix=a%2Fb%20c");
}

/*
 * A session token of several kB (x-amz-security-token) is signed whole:
 * the canonical request carries all of it.
 */
static void
test_long_session_token(void **state)
{
	static char token[8193];
	static char creq[16384];
	static char expected[8300];
	char authorization[1024];
	const BkSigV4Pair headers[] = {
		{"host", "examplebucket.s3.amazonaws.com"},
		{"x-amz-content-sha256", BK_SIGV4_EMPTY_SHA256},
		{"x-amz-date", S3_DATE},
		{"x-amz-security-token", token}};
	BkSigV4Request request = {"GET", "/test.txt",          NULL, 0, headers,
							  4,     BK_SIGV4_EMPTY_SHA256};
	BkError err;

	memset(token, 'T', sizeof(token) - 1);
	snprintf(expected, sizeof(expected), "\nx-amz-security-token:%s\n\n",
			 token);
	bk_error_clear(&err);
	if (!bk_sigv4_authorization(&request, &s3_credentials, S3_DATE,
								authorization, sizeof(authorization), creq,
								sizeof(creq), &err))
		fail_msg("%s", err.message);
	assert_non_null(strstr(creq, expected));
	assert_non_null(strstr(authorization, "x-amz-security-token, Signature="));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_suite_query_order),
		cmocka_unit_test(test_suite_paths),
		cmocka_unit_test(test_suite_utf8_query),
		cmocka_unit_test(test_suite_header_trim),
		cmocka_unit_test(test_suite_post),
		cmocka_unit_test(test_s3_get_object),
		cmocka_unit_test(test_s3_put_object),
		cmocka_unit_test(test_s3_list_objects),
		cmocka_unit_test(test_uri_encode),
		cmocka_unit_test(test_long_session_token),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
