/*
 * test_audit.c
 *		Audit events and the incremental-file header: the formats the
 *		extension, the shipper and the bk tool share.  Events must be valid
 *		JSON with sorted keys whatever bytes a label or a reason holds.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bk_audit.h"
#include "bk_snapshot_format.h"

/* 2026-12-02T10:00:00.123Z */
#define SOME_TIME_MS 1796205600123LL

static void
test_sorted_keys(void **state)
{
	BkAuditEvent *event = bk_audit_begin("archived", "db1");
	uint8_t id[4] = {0xde, 0xad, 0xbe, 0xef};
	const char meta[] = "type=segment\ntimeline=1\ncreated=x";
	size_t len = 0;
	char *text;

	bk_audit_string(event, "object", "000000010000000000000003");
	bk_audit_int(event, "size", 16777216);
	bk_audit_int(event, "first_offset", -1);
	bk_audit_hex(event, "attempt", id, sizeof(id));
	bk_audit_meta(event, "meta", meta, strlen(meta));
	bk_audit_string(event, "shipper", "s1");
	bk_audit_string(event, "object", "000000010000000000000004"); /* replaces */
	text = bk_audit_finish(event, SOME_TIME_MS, &len);
	assert_non_null(text);
	assert_int_equal(len, strlen(text));
	assert_string_equal(
		text, "{\"attempt\":\"deadbeef\",\"event\":\"archived\","
			  "\"first_offset\":-1,\"meta\":{\"created\":\"x\","
			  "\"timeline\":\"1\",\"type\":\"segment\"},"
			  "\"object\":\"000000010000000000000004\",\"shipper\":\"s1\","
			  "\"size\":16777216,\"source\":\"db1\","
			  "\"time\":\"2026-12-02T10:00:00.123Z\"}");
	free(text);
}

static void
test_escaping(void **state)
{
	BkAuditEvent *event = bk_audit_begin("snapshot-begin", "db1");
	/* quote, backslash, controls, valid UTF-8 (é, €, 😀), then bytes that
	 * are not UTF-8: a lone continuation byte, Latin-1 é, an overlong '/',
	 * a surrogate, a truncated sequence at the end. */
	const char label[] = "a\"b\\c\n\t\x01 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
						 " \x80 \xe9 \xc0\xaf \xed\xa0\x80 \xe2\x82";
	json_error_t error;
	json_t *parsed;
	char *text;

	bk_audit_string(event, "label", label);
	text = bk_audit_finish(event, SOME_TIME_MS, NULL);
	assert_non_null(text);
	parsed = json_loads(text, 0, &error);
	assert_non_null(parsed); /* valid JSON, valid UTF-8 */
	assert_string_equal(
		json_string_value(json_object_get(parsed, "label")),
		"a\"b\\c\n\t\x01 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xef\xbf\xbd "
		"\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd"
		"\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd");
	assert_non_null(strstr(text, "\\u0001"));
	json_decref(parsed);
	free(text);
}

static void
test_out_of_memory_tolerated(void **state)
{
	/* What bk_audit_begin returns when memory ran out: callers need not
	 * check every step. */
	bk_audit_string(NULL, "k", "v");
	bk_audit_int(NULL, "k", 1);
	bk_audit_hex(NULL, "k", (const uint8_t *) "x", 1);
	bk_audit_meta(NULL, "k", "a=b", 3);
	assert_null(bk_audit_finish(NULL, 0, NULL));
	bk_audit_free(NULL);
}

static void
test_incremental_header(void **state)
{
	uint8_t bytes[BK_INCR_HEADER_LEN];
	BkIncrHeader in = {
		.file_length = 0x123456789aull, .block_size = 8192, .block_count = 7};
	BkIncrHeader out;

	bk_incr_header_write(bytes, &in);
	assert_memory_equal(bytes, "BKINCR01", 8);
	/* Big-endian, at the offsets docs/snapshot-format.md gives. */
	assert_int_equal(bytes[8 + 3], 0x12);
	assert_int_equal(bytes[15], 0x9a);
	assert_int_equal(bytes[16 + 2], 0x20);
	assert_int_equal(bytes[23], 7);
	assert_true(bk_incr_header_read(bytes, &out));
	assert_true(out.file_length == in.file_length);
	assert_int_equal(out.block_size, 8192);
	assert_int_equal(out.block_count, 7);
	bytes[7] = '2';
	assert_false(bk_incr_header_read(bytes, &out));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sorted_keys),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_out_of_memory_tolerated),
		cmocka_unit_test(test_incremental_header),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
