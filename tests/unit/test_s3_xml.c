/*
 * test_s3_xml.c
 *		The XML bodies of S3 requests: every text escaped, whatever its
 *		length, and read back by expat (the parser the S3 backend reads
 *		replies with) as the text that went in.
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delete_body_escapes),
		cmocka_unit_test(test_complete_body_long_etags),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
