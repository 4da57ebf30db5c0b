/*
 * test_timeline.c
 *		LSNs as PostgreSQL reads them, timeline history files, and the
 *		branch-points metadata that carries them to keyless readers,
 *		including every rejection.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bk_frame.h"
#include "bk_timeline.h"

static void
test_lsn(void **state)
{
	uint64_t lsn;
	char text[BK_LSN_TEXT_SIZE];

	assert_true(bk_parse_lsn("16/B374D848", &lsn));
	assert_true(lsn == 0x16B374D848ull);
	assert_true(bk_parse_lsn("0/0", &lsn));
	assert_true(lsn == 0);
	assert_true(bk_parse_lsn("FFFFFFFF/FFFFFFFF", &lsn));
	assert_true(lsn == UINT64_MAX);
	assert_true(bk_parse_lsn("a/b", &lsn));
	assert_true(lsn == 0xA0000000Bull);
	bk_format_lsn(0x16B374D848ull, text, sizeof(text));
	assert_string_equal(text, "16/B374D848");

	/* What pg_lsn input refuses: more than 8 digits, signs, blanks, junk. */
	assert_false(bk_parse_lsn("FFFFFFFFF/0", &lsn));
	assert_false(bk_parse_lsn("0/123456789", &lsn));
	assert_false(bk_parse_lsn("-1/0", &lsn));
	assert_false(bk_parse_lsn("+1/0", &lsn));
	assert_false(bk_parse_lsn(" 1/0", &lsn));
	assert_false(bk_parse_lsn("1/0 ", &lsn));
	assert_false(bk_parse_lsn("1/", &lsn));
	assert_false(bk_parse_lsn("/1", &lsn));
	assert_false(bk_parse_lsn("10", &lsn));
	assert_false(bk_parse_lsn("0x1/0", &lsn));
	assert_false(bk_parse_lsn("", &lsn));
	assert_false(bk_parse_lsn(NULL, &lsn));
}

static void
test_history(void **state)
{
	const char *text = "1\t0/A64A07C8\tno recovery target specified\n"
					   "\n"
					   "# a comment\n"
					   "2\t1/5000000\tat restore point \"before upgrade\"\n";
	BkTimelineBranch *branches;
	int count;
	BkError err;

	assert_true(bk_timeline_history_parse(text, strlen(text), 3, &branches,
										  &count, &err));
	assert_int_equal(count, 2);
	assert_int_equal(branches[0].timeline, 1);
	assert_true(branches[0].end_lsn == 0xA64A07C8ull);
	assert_int_equal(branches[1].timeline, 2);
	assert_true(branches[1].end_lsn == 0x105000000ull);
	free(branches);

	/* Empty: a history with no ancestors. */
	assert_true(bk_timeline_history_parse("", 0, 1, &branches, &count, &err));
	assert_int_equal(count, 0);
	assert_null(branches);

	/* No trailing newline, spaces instead of a tab. */
	text = "1 0/3000000 reason";
	assert_true(bk_timeline_history_parse(text, strlen(text), 2, &branches,
										  &count, &err));
	assert_int_equal(count, 1);
	free(branches);

	text = "2\t0/A0\tr\n1\t0/B0\tr\n";
	assert_false(bk_timeline_history_parse(text, strlen(text), 3, &branches,
										   &count, &err));
	assert_error_contains(&err, "entry 2: timeline 1 does not follow 2");
	assert_null(branches);

	text = "1\t0/B0\tr\n2\t0/A0\tr\n";
	assert_false(bk_timeline_history_parse(text, strlen(text), 3, &branches,
										   &count, &err));
	assert_error_contains(&err, "branch points go backwards");

	text = "3\t0/B0\tr\n";
	assert_false(bk_timeline_history_parse(text, strlen(text), 3, &branches,
										   &count, &err));
	assert_error_contains(&err, "ancestor 3 is not older than it");

	text = "x\t0/B0\n";
	assert_false(bk_timeline_history_parse(text, strlen(text), 3, &branches,
										   &count, &err));
	assert_error_contains(&err, "history of timeline 3, line 1: expected");

	text = "1\t0/ZZ\n";
	assert_false(bk_timeline_history_parse(text, strlen(text), 3, &branches,
										   &count, &err));
	assert_error_contains(&err, "line 1");

	text = "1\n";
	assert_false(bk_timeline_history_parse(text, strlen(text), 3, &branches,
										   &count, &err));

	assert_false(bk_timeline_history_parse("1\t0/A\0r\n", 8, 3, &branches,
										   &count, &err));
	assert_error_contains(&err, "line 1");
}

static void
test_branch_points(void **state)
{
	BkTimelineBranch in[2] = {{1, 0xA64A07C8ull}, {2, 0x105000000ull}};
	BkTimelineBranch *out;
	int count;
	char text[128];
	BkError err;

	assert_true(bk_branch_points_format(in, 2, text, sizeof(text)));
	assert_string_equal(text, "1:0/A64A07C8,2:1/5000000");
	assert_true(bk_branch_points_parse(text, 3, &out, &count, &err));
	assert_int_equal(count, 2);
	for (int idx = 0; idx < 2; idx++)
	{
		assert_int_equal(out[idx].timeline, in[idx].timeline);
		assert_true(out[idx].end_lsn == in[idx].end_lsn);
	}
	free(out);

	assert_true(bk_branch_points_format(in, 0, text, sizeof(text)));
	assert_string_equal(text, "");
	assert_true(bk_branch_points_parse("", 1, &out, &count, &err));
	assert_int_equal(count, 0);

	assert_false(bk_branch_points_format(in, 2, text, 10));

	assert_false(
		bk_branch_points_parse("1:0/A64A07C8,", 3, &out, &count, &err));
	assert_error_contains(&err, "entry 1");
	assert_false(bk_branch_points_parse("1-0/A", 3, &out, &count, &err));
	assert_false(bk_branch_points_parse("1:0/A;2:0/B", 3, &out, &count, &err));
	assert_false(bk_branch_points_parse("2:0/A,1:0/B", 3, &out, &count, &err));
	assert_error_contains(&err, "does not follow");
	assert_false(bk_branch_points_parse("0:0/A", 3, &out, &count, &err));
	assert_false(
		bk_branch_points_parse("1:FFFFFFFFF/0", 3, &out, &count, &err));
}

/*
 * The metadata of a history file, as the archive module builds it: the
 * other keys, then branch-points only if the whole stays within the limit.
 */
static void
history_meta(const char *history, uint32_t timeline, char *meta,
			 size_t meta_len)
{
	BkTimelineBranch *branches;
	int count;
	char other[512];
	char value[BK_FRAME_META_MAX + 1];
	BkError err;

	assert_true(bk_timeline_history_parse(history, strlen(history), timeline,
										  &branches, &count, &err));
	snprintf(other, sizeof(other),
			 "type=history\ntimeline=%u\nsegment-size=16777216\n"
			 "system-identifier=7441234567890123456\npg-version=150010\n"
			 "created=2026-11-24T05:12:00.000Z",
			 timeline);
	bk_branch_points_meta(branches, count, strlen(other), value, sizeof(value));
	free(branches);
	snprintf(meta, meta_len, "branch-points=%s\n%s", value, other);
}

static void
test_branch_points_meta(void **state)
{
	char *history = malloc(300 * 64);
	size_t used = 0;
	char meta[2 * BK_FRAME_META_MAX];
	BkTimelineBranch one = {1, 0xA64A07C8ull};
	char value[BK_FRAME_META_MAX + 1];
	size_t room;

	/*
	 * Timelines 271 and 301: each ancestor a promotion 400 MB further on
	 * (the metadata goes over the limit from timeline 266 on).  Timeline
	 * 271's branch points alone fit in the limit, but not with the other
	 * keys.
	 */
	for (uint32_t tli = 1; tli <= 300; tli++)
	{
		uint64_t lsn = tli * UINT64_C(0x19000000) + 0x28;

		used += (size_t) snprintf(history + used, 300 * 64 - used,
								  "%u\t%X/%X\tno recovery target specified\n",
								  tli, (unsigned) (lsn >> 32), (unsigned) lsn);
		if (tli == 270 || tli == 300)
		{
			history_meta(history, tli + 1, meta, sizeof(meta));
			assert_true(bk_meta_valid(meta, strlen(meta)));
			assert_non_null(strstr(meta, "branch-points=\n"));
		}
	}
	free(history);

	/* A short history keeps its branch points. */
	history_meta("1\t0/A64A07C8\treason\n", 2, meta, sizeof(meta));
	assert_true(bk_meta_valid(meta, strlen(meta)));
	assert_non_null(strstr(meta, "branch-points=1:0/A64A07C8\n"));

	/* The boundary: "branch-points=1:0/A64A07C8\n" is 27 bytes. */
	room = BK_FRAME_META_MAX - 27;
	bk_branch_points_meta(&one, 1, room, value, sizeof(value));
	assert_string_equal(value, "1:0/A64A07C8");
	bk_branch_points_meta(&one, 1, room + 1, value, sizeof(value));
	assert_string_equal(value, "");
}

static void
test_history_rebuild(void **state)
{
	/* Timeline 4's history; the last line has no newline. */
	const char *text = "1\t0/A64A07C8\tno recovery target specified\n"
					   "# a comment\n"
					   "\n"
					   "2\t0/B0000098\tat restore point \"before\"\n"
					   "3\t1/5000000\tno recovery target specified";
	const char *skips = "1\t0/A64A07C8\tr\n3\t1/5000000\tr\n";
	BkTimelineBranch *branches;
	int count;
	char *out;
	size_t len;
	BkError err;

	assert_true(bk_timeline_history_rebuild(text, strlen(text), 4, 3, &out,
											&len, &err));
	assert_string_equal(out, "1\t0/A64A07C8\tno recovery target specified\n"
							 "2\t0/B0000098\tat restore point \"before\"\n");
	assert_int_equal(len, strlen(out));
	/* What PostgreSQL would read as timeline 3's history. */
	assert_true(
		bk_timeline_history_parse(out, len, 3, &branches, &count, &err));
	assert_int_equal(count, 2);
	assert_true(branches[1].end_lsn == 0xB0000098ull);
	free(branches);
	free(out);

	assert_true(bk_timeline_history_rebuild(text, strlen(text), 4, 2, &out,
											&len, &err));
	assert_string_equal(out, "1\t0/A64A07C8\tno recovery target specified\n");
	free(out);

	/* Not an ancestor: timeline 2 is not in this history, 5 is later. */
	assert_false(bk_timeline_history_rebuild(skips, strlen(skips), 4, 2, &out,
											 &len, &err));
	assert_error_contains(&err, "does not list timeline 2");
	assert_false(bk_timeline_history_rebuild(text, strlen(text), 4, 5, &out,
											 &len, &err));
	/* A history that does not parse is not used. */
	assert_false(
		bk_timeline_history_rebuild("1\tjunk\n", 8, 4, 3, &out, &len, &err));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lsn),
		cmocka_unit_test(test_history),
		cmocka_unit_test(test_branch_points),
		cmocka_unit_test(test_branch_points_meta),
		cmocka_unit_test(test_history_rebuild),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
