/*
 * test_snapshot_meta.c
 *		The metadata of a MariaDB snapshot's record: bk restore reads the
 *		snapshot's GTID state from it, so it is whole or the snapshot fails,
 *		never cut.
 */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include "bk_frame.h"
#include "snapshot_meta.h"

#define ID "20261124T051200Z-0000abcd"

static SnapshotRecordMeta
record(const char *gtid)
{
	SnapshotRecordMeta rec = {.objects = 12,
							  .binlog_file = "mariadb-bin.000042",
							  .binlog_pos = 4242,
							  .gtid = gtid,
							  .started = "2026-11-24T05:12:00.000Z",
							  .finished = "2026-11-24T05:13:00.000Z",
							  .tables = 3,
							  .rows = 99};

	return rec;
}

/* A GTID state of `domains` domains, every number at its longest. */
static void
long_gtid(char *out, size_t out_len, int domains)
{
	size_t used = 0;

	out[0] = '\0';
	for (int idx = 0; idx < domains; idx++)
		used += (size_t) snprintf(out + used, out_len - used, "%s%d-%u-%llu",
								  idx ? "," : "", 1000000000 + idx, 4294967295U,
								  18446744073709551615ULL);
}

static void
assert_meta(const char *meta, const char *key, const char *want)
{
	char value[BK_FRAME_META_MAX + 1];

	assert_true(bk_meta_get(meta, strlen(meta), key, value, sizeof(value)));
	assert_string_equal(value, want);
}

/*
 * 64 domains (what bk follows) with every number at its longest: about
 * 2700 bytes of GTID state, which a 768-byte buffer cut silently, with
 * the fields after it.
 */
static void
test_many_domains_whole(void **state)
{
	char gtid[4096];
	char meta[BK_FRAME_META_MAX + 1];
	SnapshotRecordMeta rec;
	BkError err;

	long_gtid(gtid, sizeof(gtid), 64);
	assert_true(strlen(gtid) > 2700);
	rec = record(gtid);
	assert_true(snapshot_record_meta(ID, &rec, meta, sizeof(meta), &err));
	assert_true(bk_meta_valid(meta, strlen(meta)));
	assert_meta(meta, "snapshot", ID);
	assert_meta(meta, "engine", "mariadb");
	assert_meta(meta, "objects", "12");
	assert_meta(meta, "gtid", gtid);
	assert_meta(meta, "finished", "2026-11-24T05:13:00.000Z");
	assert_meta(meta, "rows", "99");
}

/* Over the frame's limit by one byte: an error, nothing half written. */
static void
test_over_the_limit_fails(void **state)
{
	char gtid[BK_FRAME_META_MAX + 64];
	char meta[BK_FRAME_META_MAX + 1];
	SnapshotRecordMeta rec = record("");
	size_t fixed;
	BkError err;

	assert_true(snapshot_record_meta(ID, &rec, meta, sizeof(meta), &err));
	fixed = strlen(meta);

	/* Exactly at the limit. */
	memset(gtid, '1', BK_FRAME_META_MAX - fixed);
	gtid[BK_FRAME_META_MAX - fixed] = '\0';
	rec = record(gtid);
	assert_true(snapshot_record_meta(ID, &rec, meta, sizeof(meta), &err));
	assert_int_equal(strlen(meta), BK_FRAME_META_MAX);
	assert_meta(meta, "gtid", gtid);

	/* One byte more. */
	strcat(gtid, "1");
	rec = record(gtid);
	assert_false(snapshot_record_meta(ID, &rec, meta, sizeof(meta), &err));
	assert_int_equal(err.code, BK_ERR_FORMAT);
	assert_error_contains(&err, "the record of snapshot " ID
								" cannot carry its GTID state");
	assert_non_null(strstr(err.hint, "DELETE_DOMAIN_ID"));
	assert_string_equal(meta, "");

	/* Far over: a GTID state longer than a frame's metadata. */
	memset(gtid, '1', sizeof(gtid) - 1);
	gtid[sizeof(gtid) - 1] = '\0';
	rec = record(gtid);
	assert_false(snapshot_record_meta(ID, &rec, meta, sizeof(meta), &err));
	assert_int_equal(err.code, BK_ERR_FORMAT);
}

/* The data parts and schema.json: the two lines every object has. */
static void
test_object_meta(void **state)
{
	char meta[BK_FRAME_META_MAX + 1];
	char small[16];
	BkError err;

	assert_true(snapshot_object_meta(ID, NULL, meta, sizeof(meta), &err));
	assert_string_equal(meta, "snapshot=" ID "\nengine=mariadb");
	assert_false(snapshot_object_meta(ID, NULL, small, sizeof(small), &err));
	assert_int_equal(err.code, BK_ERR_FORMAT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_domains_whole),
		cmocka_unit_test(test_over_the_limit_fails),
		cmocka_unit_test(test_object_meta),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
