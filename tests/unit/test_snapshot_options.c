/*
 * test_snapshot_options.c
 *		bk_snapshot()'s argument as the agent reads it: JSON or key=value,
 *		every bad value refused with a message naming it, nothing guessed.
 */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "snapshot_options.h"

static void
assert_refused(const char *text, const char *message_part)
{
	SnapshotOptions options;
	BkError err;

	bk_error_clear(&err);
	assert_false(snapshot_parse_options(text, &options, &err));
	assert_int_equal(err.code, BK_ERR_USAGE);
	if (strstr(err.message, message_part) == NULL)
		fail_msg("\"%s\": message \"%s\" does not say \"%s\"", text,
				 err.message, message_part);
}

/* No argument: the defaults. */
static void
test_defaults(void **state)
{
	SnapshotOptions options;
	BkError err;

	assert_true(snapshot_parse_options(NULL, &options, &err));
	assert_true(options.wait);
	assert_int_equal(options.jobs, SNAPSHOT_JOBS_DEFAULT);
	assert_string_equal(options.label, "");
}

/*
 * An argument without an option in it is refused, not taken for the
 * defaults: SET @o = ''; SELECT bk_snapshot(@o) started a full snapshot
 * (NULL is refused for that very reason).  An empty item between commas
 * is refused too, named.
 */
static void
test_empty_refused(void **state)
{
	SnapshotOptions options;
	BkError err;

	assert_refused("", "options are empty; omit the argument for the "
					   "defaults");
	assert_refused(" ", "options are empty");
	assert_refused(" \t\n", "options are empty");
	assert_refused(",", "options are empty");
	assert_refused(" , ,", "options are empty");
	assert_refused("wait=false,,", "option 2 of \"wait=false,,\" is empty");
	assert_refused("wait=false,", "option 2 of \"wait=false,\" is empty");
	assert_refused(",label=x", "option 1 of \",label=x\" is empty");
	assert_refused("jobs=2, ,label=x", "option 2 of");
	assert_true(snapshot_parse_options("label=x", &options, &err));
	assert_string_equal(options.label, "x");
}

static void
test_key_value(void **state)
{
	SnapshotOptions options;
	BkError err;

	assert_true(snapshot_parse_options("jobs=4, label=nightly,wait=false",
									   &options, &err));
	assert_int_equal(options.jobs, 4);
	assert_false(options.wait);
	assert_string_equal(options.label, "nightly");
}

static void
test_json(void **state)
{
	SnapshotOptions options;
	BkError err;

	assert_true(snapshot_parse_options(
		"{\"wait\": false, \"label\": \"x y\", \"jobs\": 16}", &options, &err));
	assert_int_equal(options.jobs, 16);
	assert_false(options.wait);
	assert_string_equal(options.label, "x y");
}

/* Unknown keys, wrong types and out-of-range values are refused. */
static void
test_bad_values(void **state)
{
	char label[SNAPSHOT_LABEL_MAX + 2];

	assert_refused("mode=full", "unknown option \"mode\"");
	assert_refused("{\"mode\": \"full\"}", "unknown option \"mode\"");
	assert_refused("jobs=0", "jobs must be from 1 to 16");
	assert_refused("jobs=17", "jobs must be from 1 to 16");
	assert_refused("jobs=-1", "jobs must be from 1 to 16");
	assert_refused("jobs=99999999999999999999999", "jobs must be from");
	assert_refused("{\"jobs\": -1}", "jobs must be from 1 to 16");
	assert_refused("{\"jobs\": 2.5}", "wrong type");
	assert_refused("{\"jobs\": [2]}", "wrong type");
	assert_refused("{\"wait\": null}", "wrong type");
	assert_refused("wait=maybe", "wait must be true or false");
	assert_refused("{\"wait\": 1", "not a JSON object");
	assert_refused("[1]", "is not key=value");
	assert_refused("jobs", "is not key=value");
	memset(label, 'a', sizeof(label) - 1);
	label[sizeof(label) - 1] = '\0';
	{
		char text[sizeof(label) + 16];

		snprintf(text, sizeof(text), "label=%s", label);
		assert_refused(text, "label is longer than 200 bytes");
		snprintf(text, sizeof(text), "{\"label\":\"%s\"}", label);
		assert_refused(text, "label is longer than 200 bytes");
	}
	/* A long value is refused whole, never judged by its start. */
	{
		char zeros[SNAPSHOT_LABEL_MAX + 1]; /* cut after its "1" before */
		char text[sizeof(zeros) + 32];

		memset(zeros, '0', sizeof(zeros) - 1);
		zeros[sizeof(zeros) - 1] = '\0';
		snprintf(text, sizeof(text), "{\"jobs\":\"%s1x\"}", zeros);
		assert_refused(text, "value of option \"jobs\" is too long");
		snprintf(text, sizeof(text), "jobs=%s1x", zeros);
		assert_refused(text, "jobs must be from 1 to 16");
	}
}

/*
 * The label goes into the agent's log line ("snapshot ... started (...,
 * label X)"), the record and the audit event: a line break in it would
 * forge log lines, so control characters are refused, not passed on.
 */
static void
test_label_control_characters(void **state)
{
	SnapshotOptions options;
	BkError err;

	assert_refused("label=a\nb", "control character");
	assert_refused("label=nightly\n2026-01-01 bk-mysql-agent[1]: INFO: x",
				   "control character");
	assert_refused("{\"label\": \"a\\nb\"}", "control character");
	assert_refused("{\"label\": \"a\\u001bb\"}", "control character");
	assert_refused("label=a\tb", "control character");
	assert_refused("label=a\x7f", "control character");
	/* Slashes and non-ASCII text are only text: the label names no object. */
	assert_true(snapshot_parse_options("label=../x/y \xc3\xa9t\xc3\xa9",
									   &options, &err));
	assert_string_equal(options.label, "../x/y \xc3\xa9t\xc3\xa9");
}

/* A key given twice is an error, not "the last one wins". */
static void
test_duplicate_keys(void **state)
{
	assert_refused("{\"jobs\": 1, \"jobs\": 16}", "duplicate");
	assert_refused("jobs=1,jobs=16", "duplicate");
	assert_refused("label=a, label=b", "duplicate");
}

/*
 * A message quotes at most 64 characters of what the caller gave, cut
 * between characters, and does not repeat the function's name, which the
 * UDF puts first ("bk_snapshot: bk_snapshot: ..." before).
 */
static void
test_caller_text_capped(void **state)
{
	char text[300 * 3 + 8];
	SnapshotOptions options;
	BkError err;
	json_t *str;
	int n = 0;

	for (int i = 0; i < 300; i++)
		n += snprintf(text + n, sizeof(text) - n, "\xe2\x82\xac");
	snprintf(text + n, sizeof(text) - n, "=1");
	bk_error_clear(&err);
	assert_false(snapshot_parse_options(text, &options, &err));
	assert_non_null(strstr(err.message, "unknown option \"\xe2\x82\xac"));
	assert_non_null(strstr(err.message, "\xe2\x82\xac...\" (known:"));
	assert_true(strlen(err.message) < 64 * 3 + 100);
	str = json_string(err.message);
	assert_non_null(str);
	json_decref(str);
	assert_true(strncmp(err.message, "bk_snapshot", 11) != 0);
	assert_refused("jobs=x", "jobs must be from 1 to 16");
	assert_true(snapshot_parse_options("wait=x", &options, &err) == false);
	assert_true(strncmp(err.message, "wait must be", 12) == 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_empty_refused),
		cmocka_unit_test(test_key_value),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_label_control_characters),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_caller_text_capped),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
