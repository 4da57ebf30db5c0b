/*
 * test_s3_xml.c
 *		The XML bodies of S3 requests: every text escaped, whatever its
 *		length, and read back by expat (the parser the S3 backend reads
 *		replies with) as the text that went in.  And the replies read:
 *		listing pages and DeleteObjects results.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3_xml.h"

/* Element texts at one path, in order, joined by "|". */
typedef struct Collected
{
	const char *path;
	char texts[65536];
} Collected;

static bool
collect(void *arg, const char *path, const char *text, BkError *err)
{
	Collected *collected = arg;
	size_t len = strlen(collected->texts);

	if (strcmp(path, collected->path) == 0)
		snprintf(collected->texts + len, sizeof(collected->texts) - len, "%s%s",
				 len > 0 ? "|" : "", text);
	return true;
}

/* A key with every XML special: an object bk may hold ("notes&todo.txt"). */
static void
test_delete_body_escapes(void **state)
{
	static const char *key = "src/snapshot/s1/base/a&b'c<d>\"e";
	BkXmlBody body = {0};
	Collected keys = {.path = "Delete/Object/Key"};
	BkError err;

	assert_true(bk_s3_delete_body_add(&body, key, &err));
	assert_true(bk_s3_delete_body_add(&body, "src/wal/notes&todo.txt", &err));
	assert_true(bk_s3_delete_body_end(&body, &err));
	assert_int_equal(body.len, strlen(body.data));
	assert_string_equal(body.data,
						"<Delete><Quiet>true</Quiet>"
						"<Object><Key>src/snapshot/s1/base/"
						"a&amp;b&apos;c&lt;d&gt;&quot;e</Key></Object>"
						"<Object><Key>src/wal/notes&amp;todo.txt</Key></Object>"
						"</Delete>");
	if (!bk_xml_parse(body.data, body.len, collect, &keys, &err))
		fail_msg("%s", err.message);
	assert_string_equal(keys.texts, "src/snapshot/s1/base/a&b'c<d>\"e|"
									"src/wal/notes&todo.txt");

	/* What XML cannot carry is refused, not sent mangled. */
	body.len = 0;
	assert_false(bk_s3_delete_body_add(&body, "src/wal/a\001b", &err));
	assert_int_equal(err.code, BK_ERR_FORMAT);
	free(body.data);
}

/*
 * ETags of the longest length the backend keeps (255 bytes), for many
 * parts: the body grows to hold them (a buffer sized for short ETags was
 * overrun), and every ETag comes back whole.
 */
static void
test_complete_body_long_etags(void **state)
{
	const int count = 200;
	char(*etags)[BK_S3_ETAG_MAX] = calloc((size_t) count, sizeof(etags[0]));
	BkXmlBody body = {0};
	Collected numbers = {.path = "CompleteMultipartUpload/Part/PartNumber"};
	Collected back = {.path = "CompleteMultipartUpload/Part/ETag"};
	char *expected = malloc((size_t) count * BK_S3_ETAG_MAX);
	size_t expected_len = 0;
	BkError err;

	assert_non_null(etags);
	assert_non_null(expected);
	for (int partIdx = 0; partIdx < count; partIdx++)
	{
		char *etag = etags[partIdx];

		memset(etag, 'a' + partIdx % 26, BK_S3_ETAG_MAX - 1);
		etag[0] = '"';
		etag[1] = '&'; /* escaped: the body grows by more than the ETag */
		etag[BK_S3_ETAG_MAX - 2] = '"';
		etag[BK_S3_ETAG_MAX - 1] = '\0';
		expected_len +=
			(size_t) snprintf(expected + expected_len,
							  (size_t) count * BK_S3_ETAG_MAX - expected_len,
							  "%s%s", partIdx > 0 ? "|" : "", etag);
	}
	assert_true(bk_s3_complete_body(&body, etags, count, &err));
	assert_int_equal(body.len, strlen(body.data));
	assert_true(body.len < body.cap);
	assert_true(strncmp(body.data,
						"<CompleteMultipartUpload><Part><PartNumber>1"
						"</PartNumber><ETag>&quot;&amp;aaa",
						strlen("<CompleteMultipartUpload><Part><PartNumber>1"
							   "</PartNumber><ETag>&quot;&amp;aaa")) == 0);
	if (!bk_xml_parse(body.data, body.len, collect, &back, &err) ||
		!bk_xml_parse(body.data, body.len, collect, &numbers, &err))
		fail_msg("%s", err.message);
	assert_string_equal(back.texts, expected);
	assert_non_null(strstr(numbers.texts, "|199|200"));
	free(body.data);
	free(expected);
	free(etags);
}

/* Entries of a listing page, "key:size:last_modified" or "key/", by "|". */
static bool
collect_entry(void *arg, const char *key, bool is_prefix, uint64_t size,
			  const char *last_modified, BkError *err)
{
	char *out = arg;
	size_t len = strlen(out);

	if (is_prefix)
		snprintf(out + len, 4096 - len, "%s%s/", len ? "|" : "", key);
	else
		snprintf(out + len, 4096 - len, "%s%s:%llu:%s", len ? "|" : "", key,
				 (unsigned long long) size, last_modified);
	return true;
}

#define LIST_HEAD                                                              \
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult "           \
	"xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name>"

/* Parse body as one page: true or false, entries and token. */
static bool
list_page(const char *body, char *entries, bool *truncated, char *token,
		  size_t token_len, BkError *err)
{
	entries[0] = '\0';
	*truncated = true;
	return bk_s3_list_parse(body, strlen(body), collect_entry, entries,
							truncated, token, token_len, err);
}

/* A page, then the last page. */
static void
test_list_pages(void **state)
{
	char entries[4096];
	char token[64];
	bool truncated;
	BkError err;

	if (!list_page(LIST_HEAD
				   "<Prefix>s/wal/</Prefix><KeyCount>3</KeyCount>"
				   "<IsTruncated>true</IsTruncated>"
				   "<Contents><Key>s/wal/A</Key><LastModified>"
				   "2026-12-03T01:02:03.456Z</LastModified><Size>10"
				   "</Size></Contents>"
				   "<Contents><Key>s/wal/B&amp;C</Key><Size>0</Size>"
				   "</Contents>"
				   "<CommonPrefixes><Prefix>s/wal/d/</Prefix>"
				   "</CommonPrefixes>"
				   "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs"
				   "2J/wm36Hy4vbOwM=</NextContinuationToken>"
				   "</ListBucketResult>",
				   entries, &truncated, token, sizeof(token), &err))
		fail_msg("%s", err.message);
	assert_string_equal(entries, "s/wal/A:10:2026-12-03T01:02:03.456Z|"
								 "s/wal/B&C:0:|s/wal/d//");
	assert_true(truncated);
	assert_string_equal(token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");

	if (!list_page(LIST_HEAD "<IsTruncated>false</IsTruncated>"
							 "<Contents><Key>s/wal/E</Key><Size>1</Size>"
							 "</Contents></ListBucketResult>",
				   entries, &truncated, token, sizeof(token), &err))
		fail_msg("%s", err.message);
	assert_string_equal(entries, "s/wal/E:1:");
	assert_false(truncated);
}

/*
 * What the parser of the listing took for a complete last page, so that
 * every key after it was silently missing (a WAL segment then looked
 * beyond the end of the archive): each is an error now.
 */
static void
test_list_page_never_passes_for_last(void **state)
{
	char long_token[200];
	char body[1024];
	char entries[4096];
	char token[64];
	bool truncated;
	BkError err;
	static const char *refused[] = {
		/* Not a listing at all: a 200 with an error document, a proxy's. */
		"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code>"
		"<Message>Access Denied</Message></Error>",
		"<html><body>Service unavailable</body></html>",
		/* Cut short. */
		LIST_HEAD "<IsTruncated>false</IsTruncated><Contents><Key>s/wal/A",
		"",
		/* Not saying whether it goes on, or saying it oddly. */
		LIST_HEAD "<Contents><Key>s/wal/A</Key></Contents></ListBucketResult>",
		LIST_HEAD "<IsTruncated>1</IsTruncated></ListBucketResult>",
		/* Going on without a token. */
		LIST_HEAD "<IsTruncated>true</IsTruncated></ListBucketResult>",
		LIST_HEAD "<IsTruncated>true</IsTruncated><NextContinuationToken>"
				  "</NextContinuationToken></ListBucketResult>",
		/* Keys URL-encoded, which bk never asks for. */
		LIST_HEAD "<EncodingType>url</EncodingType><IsTruncated>false"
				  "</IsTruncated><Contents><Key>s/wal/a%2Bb</Key></Contents>"
				  "</ListBucketResult>",
	};

	for (size_t idx = 0; idx < sizeof(refused) / sizeof(refused[0]); idx++)
	{
		if (list_page(refused[idx], entries, &truncated, token, sizeof(token),
					  &err))
			fail_msg("page %zu taken: %s", idx, refused[idx]);
		assert_int_equal(err.code, BK_ERR_FORMAT);
		assert_false(truncated);
	}

	/* A token longer than kept is refused, never cut (a wrong page next). */
	memset(long_token, 'x', sizeof(long_token) - 1);
	long_token[sizeof(long_token) - 1] = '\0';
	snprintf(body, sizeof(body),
			 LIST_HEAD "<IsTruncated>true</IsTruncated><NextContinuationToken>"
					   "%s</NextContinuationToken></ListBucketResult>",
			 long_token);
	assert_false(
		list_page(body, entries, &truncated, token, sizeof(token), &err));
	assert_non_null(strstr(err.message, "continuation token"));
}

#define DELETE_HEAD                                                            \
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult "               \
	"xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"

/*
 * A DeleteObjects 200 holds per-key errors beside the deleted keys: each
 * one is a key still there, counted, the first named (a 200 was taken for
 * every key deleted).  NoSuchKey is a key gone, as a delete wants.
 */
static void
test_delete_result_errors(void **state)
{
	static const char *body = DELETE_HEAD
		"<Deleted><Key>p/s/snapshot/1/a</Key></Deleted>"
		"<Error><Key>p/s/snapshot/1/b&amp;c</Key><Code>AccessDenied</Code>"
		"<Message>Access Denied</Message></Error>"
		"<Error><Key>p/s/snapshot/1/gone</Key><Code>NoSuchKey</Code>"
		"<Message>The specified key does not exist.</Message></Error>"
		"<Error><Key>p/s/snapshot/1/d</Key><Code>InternalError</Code>"
		"<Message>We encountered an internal error.</Message></Error>"
		"</DeleteResult>";
	BkS3DeleteResult result;
	BkError err;

	if (!bk_s3_delete_result_parse(body, strlen(body), &result, &err))
		fail_msg("%s", err.message);
	assert_int_equal(result.not_deleted, 2);
	assert_string_equal(result.first_key, "p/s/snapshot/1/b&c");
	assert_string_equal(result.first_code, "AccessDenied");
	assert_string_equal(result.first_message, "Access Denied");

	/* Quiet mode: an empty result is every key deleted. */
	if (!bk_s3_delete_result_parse(DELETE_HEAD "</DeleteResult>",
								   strlen(DELETE_HEAD "</DeleteResult>"),
								   &result, &err))
		fail_msg("%s", err.message);
	assert_int_equal(result.not_deleted, 0);

	/* An <Error> without a key or code still counts. */
	body = DELETE_HEAD "<Error><Message>no</Message></Error></DeleteResult>";
	assert_true(bk_s3_delete_result_parse(body, strlen(body), &result, &err));
	assert_int_equal(result.not_deleted, 1);
	assert_string_equal(result.first_key, "");
	assert_string_equal(result.first_message, "no");
}

/* What says nothing of what was deleted is never "all deleted". */
static void
test_delete_result_refused(void **state)
{
	static const char *refused[] = {
		/* A 200 whose body is an error document. */
		"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code>"
		"<Message>Access Denied</Message></Error>",
		"<html><body>Service unavailable</body></html>",
		"<ListBucketResult></ListBucketResult>",
		DELETE_HEAD "<Error><Key>a</Key>",
		"",
	};
	BkS3DeleteResult result;
	BkError err;

	for (size_t idx = 0; idx < sizeof(refused) / sizeof(refused[0]); idx++)
	{
		if (bk_s3_delete_result_parse(refused[idx], strlen(refused[idx]),
									  &result, &err))
			fail_msg("reply %zu taken: %s", idx, refused[idx]);
		assert_int_equal(err.code, BK_ERR_FORMAT);
	}
	/* The error document's code is told. */
	assert_false(bk_s3_delete_result_parse(refused[0], strlen(refused[0]),
										   &result, &err));
	assert_non_null(strstr(err.message, "AccessDenied: Access Denied"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delete_body_escapes),
		cmocka_unit_test(test_complete_body_long_etags),
		cmocka_unit_test(test_list_pages),
		cmocka_unit_test(test_list_page_never_passes_for_last),
		cmocka_unit_test(test_delete_result_errors),
		cmocka_unit_test(test_delete_result_refused),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
