/*
 * test_wal_scan.c
 *		The WAL walker bk wal-get uses to find CREATE TABLESPACE records, on
 *		hand-built segments: long and short page headers, record headers
 *		split across pages, a segment that begins with the rest of a record,
 *		a long main-data header, records cut by the segment's end carried
 *		into the next segment, where valid WAL ends, and random damage that
 *		must never make it read out of bounds; and bk wal-get itself on
 *		segments archived as the shipper would, in a data directory: a
 *		CREATE TABLESPACE cut by a segment's end refused with the segment
 *		that ends it, served where the cluster's own link points to the
 *		location or where an LSN target stops recovery before it.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk_keys.h"
#include "bk_util.h"
#include "commands.h"
#include "repo.h"
#include "testrepo.h"
#include "wal_build.h"
#include "wal_catalog.h"
#include "wal_scan.h"

#define SEG_LEN 8192
#define BLCKSZ  1024
#define BASE    (UINT64_C(0x3) * SEG_LEN) /* a segment-aligned LSN */

typedef struct Found
{
	int count;
	BkWalTablespaceCreate creates[8];
} Found;

static bool
collect(void *arg, const BkWalTablespaceCreate *create)
{
	Found *found = arg;

	if (found->count < 8)
		found->creates[found->count] = *create;
	found->count++;
	return true;
}

static void
scan(const WalBuild *b, const BkWalCarry *carry_in, BkWalCarry *carry_out,
	 Found *found, BkWalScanResult *result)
{
	memset(found, 0, sizeof(*found));
	result->carry = carry_out;
	assert_true(
		bk_wal_scan_segment(b->buf, b->len, carry_in, collect, found, result));
}

/* Record bytes that, written from offset start, end at offset target. */
static size_t
bytes_between(size_t start, size_t target)
{
	size_t n = target - start;

	for (size_t page = (start / BLCKSZ + 1) * BLCKSZ; page < target;
		 page += BLCKSZ)
		n -= wal_page_header_size(page);
	return n;
}

/* Filler records so that the next record begins at offset target. */
static void
fill_to(WalBuild *b, size_t target)
{
	uint8_t rec[4096];

	for (;;)
	{
		size_t start = (b->pos + 7) & ~(size_t) 7;
		size_t n;

		if (start % BLCKSZ == 0)
			start += wal_page_header_size(start);
		if (start >= target)
			return;
		n = bytes_between(start, target);
		if (n > sizeof(rec))
			n = 2048;
		assert_true(n >= 48);
		wal_build_record(b, rec, wal_other_record(rec, (uint32_t) n, 10, 0));
	}
}

static void
test_short_and_long_headers(void **state)
{
	WalBuild b;
	Found found;
	BkWalScanResult result;
	BkWalCarry carry;
	uint8_t rec[BK_WAL_CREATE_MAX];
	uint64_t first;
	uint64_t second;

	wal_build_init(&b, SEG_LEN, BLCKSZ, BASE, 0);
	first = wal_build_record(
		&b, rec, wal_create_record(rec, BASE - 64, 16390, "/srv/ts1", 0));
	fill_to(&b, 2 * BLCKSZ + 200);
	second = wal_build_record(
		&b, rec, wal_create_record(rec, BASE + 100, 16391, "/srv/ts2", 1));
	scan(&b, NULL, &carry, &found, &result);
	assert_true(result.recognized);
	assert_int_equal(found.count, 2);
	assert_true(found.creates[0].lsn == BASE + 40);
	assert_true(first == BASE + 40);
	assert_true(found.creates[0].prev_lsn == BASE - 64);
	assert_int_equal(found.creates[0].oid, 16390);
	assert_string_equal(found.creates[0].path, "/srv/ts1");
	assert_true(found.creates[1].lsn == second);
	assert_int_equal(found.creates[1].oid, 16391);
	assert_string_equal(found.creates[1].path, "/srv/ts2");
	assert_false(result.has_carry);
	assert_non_null(result.stop); /* the zeros after the last record */

	/* Another resource manager, or the DROP: not a CREATE. */
	free(b.buf);
	wal_build_init(&b, SEG_LEN, BLCKSZ, BASE, 0);
	wal_create_record(rec, 0, 1, "/srv/x", 0);
	rec[16] = 0x10; /* XLOG_TBLSPC_DROP */
	wal_build_record(&b, rec, 24 + 2 + 4 + 7);
	wal_create_record(rec, 0, 1, "/srv/x", 0);
	rec[17] = 4; /* RM_DBASE_ID */
	wal_build_record(&b, rec, 24 + 2 + 4 + 7);
	scan(&b, NULL, &carry, &found, &result);
	assert_int_equal(found.count, 0);
	assert_true(result.records == 2);
	free(b.buf);
}

static void
test_split_header(void **state)
{
	/* 8 and 16 bytes of the header on one page, the rest on the next. */
	for (size_t before = 8; before <= 16; before += 8)
	{
		WalBuild b;
		Found found;
		BkWalScanResult result;
		BkWalCarry carry;
		uint8_t rec[BK_WAL_CREATE_MAX];
		uint64_t lsn;

		wal_build_init(&b, SEG_LEN, BLCKSZ, BASE, 0);
		fill_to(&b, 3 * BLCKSZ - before);
		lsn = wal_build_record(
			&b, rec, wal_create_record(rec, 0, 16400, "/srv/split", 0));
		assert_true(lsn == BASE + 3 * BLCKSZ - before);
		scan(&b, NULL, &carry, &found, &result);
		assert_int_equal(found.count, 1);
		assert_true(found.creates[0].lsn == lsn);
		assert_string_equal(found.creates[0].path, "/srv/split");
		free(b.buf);
	}
}

static void
test_continuation_and_data_long(void **state)
{
	WalBuild b;
	Found found;
	BkWalScanResult result;
	BkWalCarry carry;
	uint8_t rec[BK_WAL_CREATE_MAX];
	uint8_t filler[3000];
	char path[600];

	/* The segment begins with the last 3000 bytes of a record: skipped. */
	memset(filler, 0x5A, sizeof(filler));
	wal_build_init(&b, SEG_LEN, BLCKSZ, BASE, sizeof(filler));
	wal_build_bytes(&b, filler, sizeof(filler), sizeof(filler));
	memset(path, 'p', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	/* A path of 599 bytes: main data of 604, a long data header. */
	wal_build_record(&b, rec, wal_create_record(rec, 0, 16500, path, 0));
	scan(&b, NULL, &carry, &found, &result);
	assert_int_equal(found.count, 1);
	assert_int_equal(found.creates[0].oid, 16500);
	assert_string_equal(found.creates[0].path, path);
	assert_false(result.used_carry);
	free(b.buf);
}

static void
test_carry_into_next_segment(void **state)
{
	size_t cut_at[] = {8, 16, 24, 40};

	for (size_t i = 0; i < sizeof(cut_at) / sizeof(cut_at[0]); i++)
	{
		WalBuild a;
		WalBuild b;
		Found found;
		BkWalScanResult result;
		BkWalCarry carry;
		BkWalCarry carry2;
		uint8_t rec[BK_WAL_CREATE_MAX];
		size_t len = wal_create_record(rec, 0, 16600, "/srv/straddle", 0);
		uint64_t lsn;
		size_t written;

		/* Segment A ends cut_at[i] bytes into the record. */
		wal_build_init(&a, SEG_LEN, BLCKSZ, BASE, 0);
		fill_to(&a, SEG_LEN - cut_at[i]);
		lsn = wal_build_record_start(&a);
		assert_true(lsn == BASE + SEG_LEN - cut_at[i]);
		written = wal_build_bytes(&a, rec, len, len);
		assert_int_equal(written, cut_at[i]);
		scan(&a, NULL, &carry, &found, &result);
		assert_int_equal(found.count, 0);
		assert_true(result.has_carry);
		assert_true(carry.lsn == lsn);
		assert_true(carry.next_lsn == BASE + SEG_LEN);
		assert_int_equal(carry.len, cut_at[i]);

		/* Segment B begins with the rest. */
		wal_build_init(&b, SEG_LEN, BLCKSZ, BASE + SEG_LEN,
					   (uint32_t) (len - written));
		wal_build_bytes(&b, rec + written, len - written, len - written);
		scan(&b, &carry, &carry2, &found, &result);
		assert_true(result.used_carry);
		assert_int_equal(found.count, 1);
		assert_true(found.creates[0].lsn == lsn);
		assert_string_equal(found.creates[0].path, "/srv/straddle");

		/* Without the carry: skipped (its start was never walked). */
		scan(&b, NULL, &carry2, &found, &result);
		assert_false(result.used_carry);
		assert_int_equal(found.count, 0);

		/* A carry of another segment, or whose lengths disagree: unused. */
		carry.next_lsn += SEG_LEN;
		scan(&b, &carry, &carry2, &found, &result);
		assert_int_equal(found.count, 0);
		carry.next_lsn -= SEG_LEN;
		carry.len -= 8;
		scan(&b, &carry, &carry2, &found, &result);
		assert_int_equal(found.count, 0);
		free(a.buf);
		free(b.buf);
	}
}

static void
test_no_carry_for_other_records(void **state)
{
	WalBuild a;
	Found found;
	BkWalScanResult result;
	BkWalCarry carry;
	uint8_t rec[4096];
	size_t len = wal_other_record(rec, 200, 10, 0x00);

	/* Header whole, not a tablespace record: nothing to carry. */
	wal_build_init(&a, SEG_LEN, BLCKSZ, BASE, 0);
	fill_to(&a, SEG_LEN - 64);
	wal_build_record_start(&a);
	wal_build_bytes(&a, rec, len, len);
	scan(&a, NULL, &carry, &found, &result);
	assert_false(result.has_carry);
	free(a.buf);

	/* Header cut, but its length says it is too long to be one. */
	len = wal_other_record(rec, 4000, 5, 0x00);
	wal_build_init(&a, SEG_LEN, BLCKSZ, BASE, 0);
	fill_to(&a, SEG_LEN - 16);
	wal_build_record_start(&a);
	wal_build_bytes(&a, rec, len, len);
	scan(&a, NULL, &carry, &found, &result);
	assert_false(result.has_carry);
	free(a.buf);
}

static void
test_end_of_valid_wal(void **state)
{
	WalBuild b;
	Found found;
	BkWalScanResult result;
	BkWalCarry carry;
	uint8_t rec[BK_WAL_CREATE_MAX];
	uint8_t header[24];

	/* After an XLOG_SWITCH nothing is WAL. */
	wal_build_init(&b, SEG_LEN, BLCKSZ, BASE, 0);
	wal_record_header(header, 24, 0, 0x40, 0);
	wal_build_record(&b, header, 24);
	wal_build_record(&b, rec, wal_create_record(rec, 0, 1, "/srv/a", 0));
	scan(&b, NULL, &carry, &found, &result);
	assert_int_equal(found.count, 0);
	assert_string_equal(result.stop, "an XLOG_SWITCH record");
	free(b.buf);

	/* A page of another segment (recycled): the walk stops there. */
	wal_build_init(&b, SEG_LEN, BLCKSZ, BASE, 0);
	fill_to(&b, 4 * BLCKSZ + 100);
	wal_build_record(&b, rec, wal_create_record(rec, 0, 1, "/srv/a", 0));
	wal_put64(b.buf + 4 * BLCKSZ + 8, BASE - SEG_LEN + 4 * BLCKSZ);
	scan(&b, NULL, &carry, &found, &result);
	assert_int_equal(found.count, 0);
	assert_non_null(result.stop);
	free(b.buf);

	/* Not a segment: a size other than the header's, bad magic. */
	wal_build_init(&b, SEG_LEN, BLCKSZ, BASE, 0);
	wal_build_record(&b, rec, wal_create_record(rec, 0, 1, "/srv/a", 0));
	memset(&result, 0, sizeof(result));
	result.carry = &carry;
	bk_wal_scan_segment(b.buf, SEG_LEN - BLCKSZ, NULL, collect, &found,
						&result);
	assert_false(result.recognized);
	b.buf[0] = 0;
	scan(&b, NULL, &carry, &found, &result);
	assert_false(result.recognized);
	assert_int_equal(found.count, 0);
	free(b.buf);
}

/*
 * Random damage to a segment full of records, in a buffer of exactly its
 * size (run under valgrind or ASan to see a stray read; here it must at
 * least not crash and stay within what it reports).
 */
static void
test_damage(void **state)
{
	WalBuild b;
	uint8_t rec[BK_WAL_CREATE_MAX];
	unsigned seed = 12345;

	wal_build_init(&b, SEG_LEN, BLCKSZ, BASE, 100);
	wal_build_bytes(&b, rec, 100, 100);
	while (b.pos < SEG_LEN - 64)
	{
		size_t len = (seed = seed * 1103515245 + 12345) % 3
						 ? wal_other_record(rec, 48 + (seed >> 8) % 900, 10, 0)
						 : wal_create_record(rec, 0, 7, "/srv/d", 0);

		wal_build_record_start(&b);
		wal_build_bytes(&b, rec, len, len);
	}
	for (int round = 0; round < 20000; round++)
	{
		uint8_t *copy = malloc(SEG_LEN);
		BkWalCarry carry_in;
		BkWalCarry carry_out;
		BkWalScanResult result = {.carry = &carry_out};
		Found found = {0};
		int flips;

		memcpy(copy, b.buf, SEG_LEN);
		seed = seed * 1103515245 + 12345;
		flips = 1 + (seed >> 16) % 8;
		for (int f = 0; f < flips; f++)
		{
			seed = seed * 1103515245 + 12345;
			copy[(seed >> 8) % SEG_LEN] = (uint8_t) (seed >> 3);
		}
		/* A carry of random bytes that claims to fit. */
		for (size_t i = 0; i < sizeof(carry_in.bytes); i++)
			carry_in.bytes[i] = (uint8_t) (seed >> (i % 24));
		carry_in.next_lsn = BASE;
		carry_in.lsn = BASE - 8;
		carry_in.len = (seed >> 20) % (sizeof(carry_in.bytes) + 16);
		bk_wal_scan_segment(copy, SEG_LEN, round % 2 ? &carry_in : NULL,
							collect, &found, &result);
		if (result.recognized)
		{
			uint64_t base;

			memcpy(&base, copy + 8, sizeof(base));
			assert_true(result.end_lsn - base <= SEG_LEN);
		}
		if (result.has_carry)
			assert_true(carry_out.len <= sizeof(carry_out.bytes));
		for (int i = 0; i < found.count && i < 8; i++)
			assert_true(strlen(found.creates[i].path) <
						sizeof(found.creates[i].path));
		free(copy);
	}
	free(b.buf);
}

/* bk wal-get of segment segno into pg_wal/RECOVERYXLOG of the cwd. */
static int
run_wal_get(const char *dir, const char *location, uint64_t segno)
{
	char config[600];
	char key[600];
	char name[32];
	char *argv[] = {"bk",
					"--config",
					config,
					"--repo",
					(char *) location,
					"--source",
					"src",
					name,
					"pg_wal/RECOVERYXLOG",
					"--key-file",
					key,
					NULL};

	snprintf(config, sizeof(config), "%s/bk.conf", dir);
	snprintf(key, sizeof(key), "%s/key", dir);
	bk_wal_segment_name(1, segno, SEG_LEN, name);
	unlink("pg_wal/RECOVERYXLOG");
	return bk_cmd_wal_get(11, argv);
}

static void
test_wal_get_straddle(void **state)
{
	char *dir = test_mkdtemp();
	char location[600];
	char pgdata[600];
	char ts[600];
	char path[700];
	char cwd[4096];
	char meta[256];
	char auto_conf[256];
	BkKey key;
	BkKeyring ring;
	BkRepo *repo;
	BkError err;
	WalBuild a;
	WalBuild b;
	uint8_t rec[BK_WAL_CREATE_MAX];
	size_t len;
	size_t written;
	int uploads = 0;
	uint64_t prev_lsn = BASE + SEG_LEN - 256;
	char target[BK_LSN_TEXT_SIZE];

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	snprintf(location, sizeof(location), "%s/repo", dir);
	snprintf(pgdata, sizeof(pgdata), "%s/pgdata", dir);
	snprintf(ts, sizeof(ts), "%s/ts", dir);
	test_key(&key, &ring);
	repo = bk_repo_open(location, true, &err);
	assert_non_null(repo);
	assert_true(bk_repo_spool_open(repo, "unit-wal-scan", &err));
	snprintf(path, sizeof(path), "%s/bk.conf", dir);
	assert_true(bk_write_file_durable(path, "", 0, 0600, &err));
	snprintf(path, sizeof(path), "%s/key", dir);
	assert_true(bk_key_write_files(&key, path, &err));

	/* The location exists with a version directory: a live tablespace. */
	snprintf(path, sizeof(path), "%s/PG_15_202209061", ts);
	assert_int_equal(mkdir(ts, 0700), 0);
	assert_int_equal(mkdir(path, 0700), 0);

	/* Segment 3 ends 16 bytes into a CREATE TABLESPACE; 4 has the rest. */
	len = wal_create_record(rec, prev_lsn, 16700, ts, 0);
	wal_build_init(&a, SEG_LEN, BLCKSZ, BASE, 0);
	fill_to(&a, SEG_LEN - 16);
	wal_build_record_start(&a);
	written = wal_build_bytes(&a, rec, len, len);
	wal_build_init(&b, SEG_LEN, BLCKSZ, BASE + SEG_LEN,
				   (uint32_t) (len - written));
	wal_build_bytes(&b, rec + written, len - written, len - written);
	for (uint64_t segno = 3; segno <= 4; segno++)
	{
		char name[32];

		bk_wal_segment_name(1, segno, SEG_LEN, name);
		snprintf(meta, sizeof(meta),
				 "type=segment\ntimeline=1\nsegment-size=%u\n"
				 "system-identifier=7441\ncreated=2026-11-24T05:12:00.000Z",
				 SEG_LEN);
		test_archive_object(repo, &key, &uploads, BK_KIND_WAL, "src", name,
							meta, segno == 3 ? a.buf : b.buf, SEG_LEN);
	}

	/* As PostgreSQL runs it: in the data directory. */
	assert_int_equal(mkdir(pgdata, 0700), 0);
	assert_int_equal(chdir(pgdata), 0);
	assert_int_equal(mkdir("pg_wal", 0700), 0);
	assert_int_equal(mkdir("pg_tblspc", 0700), 0);
	assert_int_equal(run_wal_get(dir, location, 3), 0);
	assert_int_equal(access("pg_wal/bk-wal-carry", F_OK), 0);
	assert_int_equal(run_wal_get(dir, location, 4), 200);
	assert_int_not_equal(access("pg_wal/RECOVERYXLOG", F_OK), 0);

	/* Without segment 3 walked first, the record's start was never seen. */
	unlink("pg_wal/bk-wal-carry");
	assert_int_equal(run_wal_get(dir, location, 4), 0);

	/* An LSN target at the record before it: recovery stops first. */
	assert_int_equal(run_wal_get(dir, location, 3), 0);
	bk_format_lsn(prev_lsn, target, sizeof(target));
	snprintf(auto_conf, sizeof(auto_conf),
			 "recovery_target_lsn = '0/1'\nrecovery_target_lsn = '%s'\n"
			 "recovery_target_inclusive = 'on'\n",
			 target);
	assert_true(bk_write_file_durable("postgresql.auto.conf", auto_conf,
									  strlen(auto_conf), 0600, &err));
	assert_int_equal(run_wal_get(dir, location, 4), 0);
	/* One past it replays the record: refused. */
	bk_format_lsn(prev_lsn + 1, target, sizeof(target));
	snprintf(auto_conf, sizeof(auto_conf), "recovery_target_lsn = '%s'\n",
			 target);
	assert_true(bk_write_file_durable("postgresql.auto.conf", auto_conf,
									  strlen(auto_conf), 0600, &err));
	assert_int_equal(run_wal_get(dir, location, 3), 0);
	assert_int_equal(run_wal_get(dir, location, 4), 200);

	/* The cluster's own link points there: its own earlier replay. */
	unlink("postgresql.auto.conf");
	assert_int_equal(symlink(ts, "pg_tblspc/16700"), 0);
	assert_int_equal(run_wal_get(dir, location, 3), 0);
	assert_int_equal(run_wal_get(dir, location, 4), 0);

	/* The end of the archive: nothing left to carry. */
	assert_int_equal(run_wal_get(dir, location, 3), 0);
	assert_int_equal(run_wal_get(dir, location, 5), 1);
	assert_int_not_equal(access("pg_wal/bk-wal-carry", F_OK), 0);

	assert_int_equal(chdir(cwd), 0);
	free(a.buf);
	free(b.buf);
	bk_repo_close(repo);
	test_rmdir(dir);
	free(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_short_and_long_headers),
		cmocka_unit_test(test_split_header),
		cmocka_unit_test(test_continuation_and_data_long),
		cmocka_unit_test(test_carry_into_next_segment),
		cmocka_unit_test(test_no_carry_for_other_records),
		cmocka_unit_test(test_end_of_valid_wal),
		cmocka_unit_test(test_damage),
		cmocka_unit_test(test_wal_get_straddle),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
