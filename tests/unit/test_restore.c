/*
 * test_restore.c
 *		The decisions of the restore side, without servers: timestamps as
 *		DBAs write them, recovery targets, which snapshot serves a target,
 *		what retention keeps, which WAL segments a recovery needs and
 *		misses (on a real repository directory, with real frames), and
 *		whether recovery to a time stops before a missing one.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bk_keys.h"
#include "bk_snapshot_format.h"
#include "bk_util.h"
#include "commands.h"
#include "pg_engine.h"
#include "repo.h"
#include "repo_backend.h"
#include "restore.h"
#include "retention.h"
#include "target.h"
#include "testrepo.h"
#include "times.h"
#include "verify.h"
#include "wal_catalog.h"

#define SOURCE   "test-source"
#define SEG_SIZE 16777216u

/* ------------------------------------------------------------ target paths */

/* Links, "." and "//" resolved where the path exists; ".." beyond refused. */
static void
test_canonical_path(void **state)
{
	char base[] = "/tmp/bk-test-canon-XXXXXX";
	char real[PATH_MAX];
	char in[PATH_MAX];
	char out[PATH_MAX];
	char want[PATH_MAX];
	BkError err;

	(void) state;
	assert_non_null(mkdtemp(base));
	assert_non_null(realpath(base, real));
	snprintf(in, sizeof(in), "%s/dir", base);
	assert_int_equal(mkdir(in, 0700), 0);
	snprintf(want, sizeof(want), "%s/link", base);
	assert_int_equal(symlink(in, want), 0);

	snprintf(in, sizeof(in), "%s//./link/new/./x//", base);
	assert_true(restore_canonical_path(in, out, sizeof(out), &err));
	snprintf(want, sizeof(want), "%s/dir/new/x", real);
	assert_string_equal(out, want);
	snprintf(in, sizeof(in), "%s/link/../dir", base);
	assert_true(restore_canonical_path(in, out, sizeof(out), &err));
	snprintf(want, sizeof(want), "%s/dir", real);
	assert_string_equal(out, want);
	snprintf(in, sizeof(in), "%s/new/../dir", base);
	assert_false(restore_canonical_path(in, out, sizeof(out), &err));
	assert_non_null(strstr(err.message, "\"..\" follows"));

	snprintf(in, sizeof(in), "rm -rf '%s'", base);
	assert_int_equal(system(in), 0);
}

/*
 * The opened target is where bk writes, whatever its parents become; and a
 * link where a directory was when the path was resolved is refused.
 */
static void
test_open_root(void **state)
{
	char base[] = "/tmp/bk-test-root-XXXXXX";
	char canonical[PATH_MAX];
	char path[PATH_MAX];
	char moved[PATH_MAX];
	char root[32];
	Restore r = {.program = "bk", .pgdata_fd = -1};
	struct stat st;
	BkError err;
	int fd;

	(void) state;
	assert_non_null(mkdtemp(base));
	snprintf(path, sizeof(path), "%s/parent/data", base);
	assert_true(
		restore_canonical_path(path, canonical, sizeof(canonical), &err));
	assert_true(
		restore_open_root(&r, canonical, &fd, root, sizeof(root), &err));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);

	/* Its parent renamed, a link in its place: bk still writes into it. */
	snprintf(path, sizeof(path), "%s/parent", base);
	snprintf(moved, sizeof(moved), "%s/moved", base);
	assert_int_equal(rename(path, moved), 0);
	snprintf(moved, sizeof(moved), "%s/elsewhere", base);
	assert_int_equal(mkdir(moved, 0700), 0);
	assert_int_equal(symlink(moved, path), 0);
	snprintf(path, sizeof(path), "%s/file", root);
	assert_int_equal(close(open(path, O_CREAT | O_WRONLY, 0600)), 0);
	snprintf(path, sizeof(path), "%s/moved/data/file", base);
	assert_int_equal(stat(path, &st), 0);
	snprintf(path, sizeof(path), "%s/elsewhere/data", base);
	assert_int_equal(stat(path, &st), -1);
	close(fd);

	/* Opened again by the path resolved before: the link is refused. */
	assert_false(
		restore_open_root(&r, canonical, &fd, root, sizeof(root), &err));
	assert_non_null(strstr(err.message, "is no longer a directory"));

	snprintf(path, sizeof(path), "rm -rf '%s'", base);
	assert_int_equal(system(path), 0);
}

/*
 * A tablespace location reached through a symbolic link (a linked parent,
 * as /var/lib/postgresql -> /data/pg): its directories are made in the
 * opened location, the link is neither refused nor, under --delta,
 * replaced by an empty directory.
 */
static void
test_tablespace_through_link(void **state)
{
	char base[] = "/tmp/bk-test-spclink-XXXXXX";
	char path[PATH_MAX];
	char canonical[PATH_MAX];
	RestoreTablespace spc = {.oid = 16384, .fd = -1};
	Restore r = {.program = "bk", .pgdata_fd = -1};
	struct stat st;
	BkError err;

	(void) state;
	assert_non_null(mkdtemp(base));
	snprintf(path, sizeof(path), "%s/real", base);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(canonical, sizeof(canonical), "%s/link", base);
	assert_int_equal(symlink(path, canonical), 0);

	snprintf(path, sizeof(path), "%s/data", base);
	assert_true(restore_canonical_path(path, r.pgdata_shown,
									   sizeof(r.pgdata_shown), &err));
	assert_true(restore_open_root(&r, r.pgdata_shown, &r.pgdata_fd, r.pgdata,
								  sizeof(r.pgdata), &err));
	snprintf(spc.location, sizeof(spc.location), "%s/link/ts", base);
	bk_strlcpy(spc.original, spc.location, sizeof(spc.original));
	assert_true(restore_canonical_path(spc.location, spc.canonical,
									   sizeof(spc.canonical), &err));
	assert_true(restore_open_root(&r, spc.canonical, &spc.fd, spc.root,
								  sizeof(spc.root), &err));
	r.tablespaces = &spc;
	r.tablespace_count = 1;

	for (int delta = 0; delta <= 1; delta++)
	{
		r.delta = delta;
		assert_true(restore_resolve_path(&r, "pg_tblspc/16384/PG_15_1/5", path,
										 sizeof(path), &err));
		if (!restore_ensure_dir(&r, path, 0700, &err))
			fail_msg("delta %d: %s", delta, err.message);
		snprintf(path, sizeof(path), "%s/link", base);
		assert_int_equal(lstat(path, &st), 0);
		assert_true(S_ISLNK(st.st_mode));
		snprintf(path, sizeof(path), "%s/real/ts/PG_15_1/5", base);
		assert_int_equal(lstat(path, &st), 0);
		assert_true(S_ISDIR(st.st_mode));
	}

	close(spc.fd);
	close(r.pgdata_fd);
	snprintf(path, sizeof(path), "rm -rf '%s'", base);
	assert_int_equal(system(path), 0);
}

/* ------------------------------------------------------------ timestamps */

static void
test_timestamps(void **state)
{
	int64_t us;
	int64_t utc;
	int64_t want;
	char text[BK_TIMESTAMP_TEXT_SIZE];
	BkError err;

	/* The same moment, as ISO 8601 and as PostgreSQL writes it. */
	assert_true(bk_parse_timestamp("2026-11-24T05:12:00Z", &utc));
	assert_true(utc == 1795497120LL * 1000000);
	assert_true(bk_parse_timestamp("2026-11-24 05:12:00+00", &us));
	assert_true(us == utc);
	assert_true(bk_parse_timestamp("2026-11-24 05:12:00 UTC", &us));
	assert_true(us == utc);
	assert_true(bk_parse_timestamp("2026-11-24 06:42:00+01:30", &us));
	assert_true(us == utc);
	assert_true(bk_parse_timestamp("2026-11-23 21:12:00-0800", &us));
	assert_true(us == utc);
	assert_true(bk_parse_timestamp("2026-11-24 05:12:00.123456+00", &us));
	assert_true(us == utc + 123456);
	assert_true(bk_parse_timestamp("2026-11-24T05:12Z", &us));
	assert_true(us == utc);
	bk_format_timestamp(utc + 5, text, sizeof(text));
	assert_string_equal(text, "2026-11-24T05:12:00.000005Z");

	/* Without a zone: the local time of the restore host. */
	setenv("TZ", "Asia/Kolkata", 1);
	tzset();
	assert_true(bk_parse_timestamp("2026-11-24 10:42:00", &us));
	assert_true(us == utc);

	/*
	 * Around a daylight-saving change a local time names two instants, or
	 * none: refused, asking for the zone (glibc picked one, by the zone's
	 * history, or moved a skipped time by an hour).
	 */
	setenv("TZ", "America/New_York", 1);
	tzset();
	assert_false(bk_timestamp_parse("2026-11-01 01:30:00", false, &us, &err));
	assert_error_contains(&err, "names two times in the local time zone");
	assert_false(bk_timestamp_parse("2026-03-08 02:30:00", false, &us, &err));
	assert_error_contains(&err, "names no time in the local time zone");
	assert_true(bk_parse_timestamp("2026-11-01 03:30:00", &us));
	assert_true(bk_parse_timestamp("2026-11-01T08:30:00Z", &want));
	assert_true(us == want);
	assert_true(bk_parse_timestamp("2026-07-01 12:00:00.5", &us));
	assert_true(bk_parse_timestamp("2026-07-01T16:00:00.5Z", &want));
	assert_true(us == want);
	setenv("TZ", "Europe/Berlin", 1);
	tzset();
	assert_false(bk_timestamp_parse("2026-10-25 02:30:00", false, &us, &err));
	assert_error_contains(&err, "names two times in the local time zone (a "
								"change of its UTC offset repeats it), at "
								"+02:00 and at +01:00");
	assert_true(bk_parse_timestamp("2026-10-25 02:30:00+01", &us));
	/* Not daylight saving: Moscow's standard offset went from +04 to +03
	 * at 02:00 on 2014-10-26, repeating 01:00 to 02:00. */
	setenv("TZ", "Europe/Moscow", 1);
	tzset();
	assert_false(bk_timestamp_parse("2014-10-26 01:30:00", false, &us, &err));
	assert_error_contains(&err, "at +04:00 and at +03:00");
	assert_true(bk_parse_timestamp("2014-10-26 03:30:00", &us));
	assert_true(bk_parse_timestamp("2014-10-26T00:30:00Z", &want));
	assert_true(us == want);
	/*
	 * A TZ that names no zone: glibc takes UTC without a word, and the
	 * target would be another instant than the one meant.  Refused; with
	 * its zone the time is fine.  POSIX rules and zone files are zones.
	 */
	setenv("TZ", "Europe/Pairs", 1);
	tzset();
	assert_false(bk_timestamp_parse("2026-07-01 12:00:00", false, &us, &err));
	assert_error_contains(&err, "TZ=\"Europe/Pairs\", is no time zone");
	assert_true(bk_parse_timestamp("2026-07-01 12:00:00+02", &us));
	setenv("TZ", "Europe", 1);
	tzset();
	assert_false(bk_timestamp_parse("2026-07-01 12:00:00", false, &us, &err));
	assert_error_contains(&err, "TZ=\"Europe\", is no time zone");
	setenv("TZ", "EST5EDT", 1);
	tzset();
	assert_true(bk_parse_timestamp("2026-07-01 12:00:00", &us));
	assert_true(bk_parse_timestamp("2026-07-01T16:00:00Z", &want));
	assert_true(us == want);
	setenv("TZ", ":Europe/Paris", 1);
	tzset();
	assert_true(bk_parse_timestamp("2026-07-01 12:00:00", &us));
	assert_true(bk_parse_timestamp("2026-07-01T10:00:00Z", &want));
	assert_true(us == want);
	setenv("TZ", "UTC", 1);
	tzset();

	/* What timestamptz input refuses. */
	assert_false(bk_parse_timestamp("2026-02-29 00:00:00+00", &us));
	assert_true(bk_parse_timestamp("2028-02-29 00:00:00+00", &us));
	assert_false(bk_parse_timestamp("2026-13-01 00:00:00+00", &us));
	assert_false(bk_parse_timestamp("2026-11-31 00:00:00+00", &us));
	assert_false(bk_parse_timestamp("2026-11-24 24:00:00+00", &us));
	assert_false(bk_parse_timestamp("2026-11-24 05:12:00+16", &us));
	assert_false(bk_parse_timestamp("2026-11-24 05:12:00+01:60", &us));
	assert_false(bk_parse_timestamp("2026-11-24 05:12:00 CET", &us));
	assert_false(bk_parse_timestamp("2026-11-24", &us));
	assert_false(bk_parse_timestamp("yesterday", &us));
	assert_false(bk_parse_timestamp("2026-11-24 05:12:00Z junk", &us));
	assert_false(bk_parse_timestamp("", &us));

	/* A zone written whole: no colon without minutes, no stray digits. */
	assert_false(bk_parse_timestamp("2026-11-24 10:12:00+05:", &us));
	assert_false(bk_parse_timestamp("2026-11-24 10:12:00+05:3", &us));
	assert_false(bk_parse_timestamp("2026-11-24 10:12:00+05:3030", &us));
	assert_false(bk_parse_timestamp("2026-11-24 10:12:00+053", &us));
	assert_false(bk_parse_timestamp("2026-11-24 10:12:00+5", &us));
	assert_false(bk_parse_timestamp("2026-11-24 10:12:00+", &us));
	assert_true(bk_parse_timestamp("2026-11-24 10:12:00+05", &us));
	assert_true(us == utc);
	assert_true(bk_parse_timestamp("2026-11-24 10:42:00+05:30", &us));
	assert_true(us == utc);
	assert_true(bk_parse_timestamp("2026-11-24 10:42:00+0530", &us));
	assert_true(us == utc);

	/* Microseconds at most, as PostgreSQL keeps them: finer digits would be
	 * rounded (by PostgreSQL) or cut (by bk) to another target; zeros are
	 * the same moment. */
	assert_false(bk_parse_timestamp("2026-11-24 05:12:00.1234567+00", &us));
	assert_false(bk_parse_timestamp("2026-11-24 05:12:00.9999995+00", &us));
	assert_false(bk_parse_timestamp("2026-11-24 05:12:00.0000001+00", &us));
	assert_true(bk_parse_timestamp("2026-11-24 05:12:00.123456000+00", &us));
	assert_true(us == utc + 123456);
	assert_true(bk_parse_timestamp("2026-11-24 05:12:00.1+00", &us));
	assert_true(us == utc + 100000);
	assert_false(bk_parse_timestamp("2026-11-24 05:12:00.+00", &us));
}

/* ------------------------------------------------------------ targets */

static void
test_target_parse(void **state)
{
	BkPgTarget target;
	BkError err;

	assert_true(bk_pg_target_parse(&target, BK_PG_TARGET_TIME,
								   "2026-11-24 06:12:00.5+01", &err));
	/* Normalised to UTC with an explicit zone, whatever the server's. */
	assert_string_equal(target.time_text, "2026-11-24 05:12:00.500000+00");
	assert_false(bk_pg_target_parse(&target, BK_PG_TARGET_TIME,
									"2026-02-30 00:00:00", &err));
	assert_error_contains(&err, "--target-time \"2026-02-30 00:00:00\" is "
								"not a timestamp");
	assert_error_contains(&err, "2026-02-30 is not a date");
	/* The message says what is wrong with the text. */
	assert_false(bk_pg_target_parse(&target, BK_PG_TARGET_TIME,
									"2026-11-24 10:12:00+05:", &err));
	assert_error_contains(&err, "its zone \"+05:\" is not Z, UTC, GMT, +HH, "
								"+HHMM or +HH:MM");
	assert_false(bk_pg_target_parse(&target, BK_PG_TARGET_TIME,
									"2026-11-24 05:12:00.1234567+00", &err));
	assert_error_contains(&err, "more than 6 fractional digits (\"1234567\")");
	assert_true(err.code == BK_ERR_USAGE);

	assert_true(
		bk_pg_target_parse(&target, BK_PG_TARGET_LSN, "16/B374D848", &err));
	assert_true(target.lsn == 0x16B374D848ull);
	assert_false(bk_pg_target_parse(&target, BK_PG_TARGET_LSN, "16", &err));
	assert_error_contains(&err, "is not an LSN");

	assert_true(bk_pg_target_parse(&target, BK_PG_TARGET_XID, "742", &err));
	assert_true(target.xid == 742);
	/* With its epoch, as pg_current_xact_id() shows it: the low 32 bits. */
	assert_true(
		bk_pg_target_parse(&target, BK_PG_TARGET_XID, "4294967338", &err));
	assert_false(bk_pg_target_parse(&target, BK_PG_TARGET_XID, "2", &err));
	assert_false(
		bk_pg_target_parse(&target, BK_PG_TARGET_XID, "4294967296", &err));
	assert_false(bk_pg_target_parse(&target, BK_PG_TARGET_XID, "-5", &err));
	assert_false(bk_pg_target_parse(&target, BK_PG_TARGET_XID, "12a", &err));
	assert_error_contains(&err, "is not a transaction id");

	assert_true(
		bk_pg_target_parse(&target, BK_PG_TARGET_NAME, "before-upgrade", &err));
	assert_false(bk_pg_target_parse(&target, BK_PG_TARGET_NAME, "", &err));
	assert_false(bk_pg_target_parse(
		&target, BK_PG_TARGET_NAME,
		"a-restore-point-name-that-is-longer-than-sixty-three-bytes-in-all",
		&err));
	assert_error_contains(&err, "1 to 63 bytes");

	assert_true(
		bk_pg_target_parse(&target, BK_PG_TARGET_IMMEDIATE, "immediate", &err));
	assert_false(
		bk_pg_target_parse(&target, BK_PG_TARGET_IMMEDIATE, "now", &err));
	assert_error_contains(&err, "accepts only \"immediate\"");
}

/* ------------------------------------------------------------ choosing */

/* A catalog of snapshots ending at (LSN, time), oldest first. */
static void
make_catalog(BkSnapshotCatalog *catalog, int count, const uint64_t *stop_lsn,
			 const bool *restorable)
{
	memset(catalog, 0, sizeof(*catalog));
	catalog->count = count;
	catalog->snapshots = calloc((size_t) count, sizeof(BkSnapshot));
	for (int snapIdx = 0; snapIdx < count; snapIdx++)
	{
		BkSnapshot *s = &catalog->snapshots[snapIdx];

		snprintf(s->id, sizeof(s->id), "20261124T0%d0000Z-0000000%d", snapIdx,
				 snapIdx);
		strcpy(s->kind, "full");
		s->stop_lsn = stop_lsn[snapIdx];
		/* One hour apart, from 00:00 UTC. */
		s->stop_us = (1795478400LL + 3600LL * snapIdx) * 1000000 + 1;
		bk_format_timestamp(s->stop_us, s->stop_time, sizeof(s->stop_time));
		s->parent_index = -1;
		s->restorable = restorable[snapIdx];
		if (!s->restorable)
		{
			s->problem = BK_SNAP_INCOMPLETE;
			strcpy(s->reason, "no record");
		}
	}
}

static void
test_choose_snapshot(void **state)
{
	const uint64_t stops[] = {0x1000000, 0x3000000, 0x5000000, 0x7000000};
	const bool restorable[] = {true, true, false, true};
	BkSnapshotCatalog catalog;
	BkPgTarget target;
	BkError err;
	int chosen;

	make_catalog(&catalog, 4, stops, restorable);

	/* The end of the archive: the newest restorable one. */
	assert_true(bk_pg_target_parse(&target, BK_PG_TARGET_NONE, NULL, &err));
	assert_true(bk_pg_choose_snapshot(&catalog, SOURCE, &target, NULL, 0,
									  &chosen, &err));
	assert_int_equal(chosen, 3);

	/* An LSN: the newest that stops at or before it, skipping the broken. */
	assert_true(
		bk_pg_target_parse(&target, BK_PG_TARGET_LSN, "0/6000000", &err));
	assert_true(bk_pg_choose_snapshot(&catalog, SOURCE, &target, NULL, 0,
									  &chosen, &err));
	assert_int_equal(chosen, 1);
	assert_true(
		bk_pg_target_parse(&target, BK_PG_TARGET_LSN, "0/3000000", &err));
	assert_true(bk_pg_choose_snapshot(&catalog, SOURCE, &target, NULL, 0,
									  &chosen, &err));
	assert_int_equal(chosen, 1);

	/* A time: 01:30 is served by the one that stopped just after 01:00. */
	assert_true(bk_pg_target_parse(&target, BK_PG_TARGET_TIME,
								   "2026-11-24 01:30:00+00", &err));
	assert_true(bk_pg_choose_snapshot(&catalog, SOURCE, &target, NULL, 0,
									  &chosen, &err));
	assert_int_equal(chosen, 1);

	/* Before the oldest stop point: nothing can, and bk says why. */
	assert_true(bk_pg_target_parse(&target, BK_PG_TARGET_TIME,
								   "2026-11-24 00:00:00+00", &err));
	assert_false(bk_pg_choose_snapshot(&catalog, SOURCE, &target, NULL, 0,
									   &chosen, &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_error_contains(&err, "no restorable snapshot of source "
								"\"test-source\" ends at or before");
	assert_error_contains(&err, "the oldest ends at 2026-11-24T00:00:00");

	/* A named one: it must restore, and stop before the target. */
	assert_true(
		bk_pg_target_parse(&target, BK_PG_TARGET_LSN, "0/4000000", &err));
	assert_false(bk_pg_choose_snapshot(
		&catalog, SOURCE, &target, catalog.snapshots[2].id, 0, &chosen, &err));
	assert_error_contains(&err, "is not restorable: incomplete: no record");
	assert_false(bk_pg_choose_snapshot(
		&catalog, SOURCE, &target, catalog.snapshots[3].id, 0, &chosen, &err));
	assert_error_contains(&err, "after the target 0/4000000");
	assert_true(err.hint[0] != '\0');
	assert_true(bk_pg_choose_snapshot(
		&catalog, SOURCE, &target, catalog.snapshots[0].id, 0, &chosen, &err));
	assert_int_equal(chosen, 0);
	assert_false(bk_pg_choose_snapshot(&catalog, SOURCE, &target,
									   "20200101T000000Z-00000000", 0, &chosen,
									   &err));
	assert_error_contains(&err, "has no snapshot");

	/* An xid: the catalog cannot say, the WAL will. */
	assert_true(bk_pg_target_parse(&target, BK_PG_TARGET_XID, "742", &err));
	assert_true(bk_pg_choose_snapshot(&catalog, SOURCE, &target, NULL, 0,
									  &chosen, &err));
	assert_int_equal(chosen, -1);

	/* Nothing restorable at all. */
	for (int snapIdx = 0; snapIdx < catalog.count; snapIdx++)
		catalog.snapshots[snapIdx].restorable = false;
	assert_false(bk_pg_choose_snapshot(&catalog, SOURCE, &target, NULL, 0,
									   &chosen, &err));
	assert_error_contains(&err, "has 4 snapshots, none of them restorable");
	free(catalog.snapshots);
	catalog.count = 0;
	assert_false(bk_pg_choose_snapshot(&catalog, SOURCE, &target, NULL, 0,
									   &chosen, &err));
	assert_error_contains(&err, "holds no snapshot");
}

/* ------------------------------------------------------------ retention */

typedef struct RetentionCase
{
	const char *id;
	const char *kind;
	int parent;
	bool restorable;
	int stop_hours_ago;
} RetentionCase;

#define NOW_MS (1795478400LL * 1000 + 30LL * 24 * 3600 * 1000)

/* off_latest: a bit per case that ends off the source's timeline. */
static void
decide_off(const RetentionCase *cases, int count, const BkRetention *policy,
		   BkVerdict *verdicts, bool anchored, unsigned off_latest)
{
	BkRetentionSnapshot snapshots[16];

	for (int caseIdx = 0; caseIdx < count; caseIdx++)
		snapshots[caseIdx] = (BkRetentionSnapshot){
			.id = cases[caseIdx].id,
			.kind = cases[caseIdx].kind,
			.parent_index = cases[caseIdx].parent,
			.restorable = cases[caseIdx].restorable,
			.stop_us =
				(NOW_MS - cases[caseIdx].stop_hours_ago * 3600000LL) * 1000,
			.stop_order = (uint64_t) (1000 - cases[caseIdx].stop_hours_ago),
			.off_latest = (off_latest & (1u << caseIdx)) != 0,
		};
	assert_int_equal(
		bk_retention_decide(snapshots, count, policy, NOW_MS, verdicts),
		anchored);
}

static void
decide(const RetentionCase *cases, int count, const BkRetention *policy,
	   BkVerdict *verdicts, bool anchored)
{
	decide_off(cases, count, policy, verdicts, anchored, 0);
}

static void
test_retention(void **state)
{
	/* Ids sort by start time, oldest first. */
	const RetentionCase cases[] = {
		{"20261101T000000Z-a", "full", -1, true, 700}, /* 0 */
		{"20261102T000000Z-b", "incr", 0, true, 680},  /* 1: on 0 */
		{"20261103T000000Z-c", "full", -1, false, 0},  /* 2: abandoned */
		{"20261110T000000Z-d", "full", -1, true, 480}, /* 3 */
		{"20261111T000000Z-e", "diff", 3, true, 460},  /* 4: on 3 */
		{"20261120T000000Z-f", "full", -1, true, 240}, /* 5 */
		{"20261121T000000Z-g", "incr", 5, true, 220},  /* 6: on 5 */
		{"20261130T000000Z-h", "full", -1, false, 0},  /* 7: arriving */
	};
	BkVerdict v[8];
	BkRetention policy = {.retain_full = 2};

	decide(cases, 8, &policy, v, true);
	/* The two newest fulls and what builds on them. */
	assert_int_equal(v[3], BK_VERDICT_KEEP);
	assert_int_equal(v[4], BK_VERDICT_KEEP);
	assert_int_equal(v[5], BK_VERDICT_KEEP);
	assert_int_equal(v[6], BK_VERDICT_KEEP);
	/* Older ones go, the abandoned one too; the one arriving stays. */
	assert_int_equal(v[0], BK_VERDICT_EXPIRE);
	assert_int_equal(v[1], BK_VERDICT_EXPIRE);
	assert_int_equal(v[2], BK_VERDICT_EXPIRE);
	assert_int_equal(v[7], BK_VERDICT_IN_PROGRESS);
	assert_non_null(
		strstr(bk_retention_reason(&(BkRetentionSnapshot){0}, v[7], &policy),
			   "in progress"));

	/* One full: the diff on the older full goes with it. */
	policy.retain_full = 1;
	decide(cases, 8, &policy, v, true);
	assert_int_equal(v[3], BK_VERDICT_EXPIRE);
	assert_int_equal(v[4], BK_VERDICT_EXPIRE);
	assert_int_equal(v[5], BK_VERDICT_KEEP);
	assert_int_equal(v[6], BK_VERDICT_KEEP);

	/*
	 * 12 days (288 h): every snapshot ending inside the window (5, 6), the
	 * newest ending before it (4) and its parent (3).
	 */
	policy = (BkRetention){.retain_days = 12};
	decide(cases, 8, &policy, v, true);
	assert_int_equal(v[6], BK_VERDICT_KEEP);
	assert_int_equal(v[5], BK_VERDICT_KEEP);
	assert_int_equal(v[4], BK_VERDICT_KEEP);
	assert_int_equal(v[3], BK_VERDICT_KEEP);
	assert_int_equal(v[1], BK_VERDICT_EXPIRE);
	assert_int_equal(v[0], BK_VERDICT_EXPIRE);
	assert_int_equal(v[7], BK_VERDICT_IN_PROGRESS);

	/* A restorable snapshot newer than the oldest kept is never removed. */
	{
		const RetentionCase newer[] = {
			{"20261101T000000Z-a", "full", -1, true, 300},
			{"20261102T000000Z-b", "diff", 0, true, 200},
			{"20261103T000000Z-c", "full", -1, true, 100},
		};
		BkRetention full2 = {.retain_full = 2};

		decide(newer, 3, &full2, v, true);
		assert_int_equal(v[0], BK_VERDICT_KEEP);
		assert_int_equal(v[1], BK_VERDICT_KEEP);
		assert_int_equal(v[2], BK_VERDICT_KEEP);
	}

	/*
	 * A restore from 0 to a moment before full 1 made a new timeline, whose
	 * server bases its incremental snapshots on 0, the newest it knows: 2
	 * builds on 0 and ends before 1 in the WAL.  Left alone as newer than
	 * the full kept (1), it needs 0: 0 stays, as it does for an
	 * incremental snapshot still arriving on it.
	 */
	{
		const RetentionCase restored[] = {
			{"20261101T000000Z-a", "full", -1, true, 300}, /* 0 */
			{"20261102T000000Z-b", "full", -1, true, 100}, /* 1 */
			{"20261103T000000Z-c", "incr", 0, true, 250},  /* 2: on 0 */
		};
		const RetentionCase arriving[] = {
			{"20261101T000000Z-a", "full", -1, true, 300}, /* 0 */
			{"20261102T000000Z-b", "full", -1, true, 100}, /* 1 */
			{"20261104T000000Z-d", "incr", 0, false, 0},   /* 2: on 0 */
		};
		BkRetention full1 = {.retain_full = 1};

		decide(restored, 3, &full1, v, true);
		assert_int_equal(v[1], BK_VERDICT_KEEP);
		assert_int_equal(v[2], BK_VERDICT_NEWER);
		assert_int_equal(v[0], BK_VERDICT_PARENT);
		assert_non_null(
			strstr(bk_retention_reason(&(BkRetentionSnapshot){0}, v[0], &full1),
				   "builds on it"));

		decide(arriving, 3, &full1, v, true);
		assert_int_equal(v[1], BK_VERDICT_KEEP);
		assert_int_equal(v[2], BK_VERDICT_IN_PROGRESS);
		assert_int_equal(v[0], BK_VERDICT_PARENT);
	}

	/*
	 * Not restorable and older than the oldest kept, by id: kept while the
	 * store wrote an object of it in the last day (the source's clock may
	 * have stepped back since the snapshots kept), removed after.
	 */
	{
		BkRetentionSnapshot stepped[] = {
			{.id = "20261101T000000Z-a",
			 .kind = "",
			 .parent_index = -1,
			 .stored_ms = NOW_MS - 3600 * 1000},
			{.id = "20261110T000000Z-b",
			 .kind = "full",
			 .parent_index = -1,
			 .restorable = true,
			 .stop_order = 1},
		};
		BkRetention full1 = {.retain_full = 1};

		assert_true(bk_retention_decide(stepped, 2, &full1, NOW_MS, v));
		assert_int_equal(v[0], BK_VERDICT_ARRIVING);
		assert_non_null(strstr(bk_retention_reason(&stepped[0], v[0], &full1),
							   "in progress"));
		stepped[0].stored_ms = NOW_MS - 25 * 3600 * 1000LL;
		assert_true(bk_retention_decide(stepped, 2, &full1, NOW_MS, v));
		assert_int_equal(v[0], BK_VERDICT_EXPIRE);
	}

	/*
	 * The engine says the source may build its next incremental snapshot
	 * on 1: 1 stays whatever the policy, and 0 with it.
	 */
	{
		BkRetentionSnapshot next[] = {
			{.id = "20261101T000000Z-a",
			 .kind = "full",
			 .parent_index = -1,
			 .restorable = true,
			 .stop_order = 1},
			{.id = "20261102T000000Z-b",
			 .kind = "incr",
			 .parent_index = 0,
			 .restorable = true,
			 .stop_order = 2,
			 .next_parent = true},
			{.id = "20261103T000000Z-c",
			 .kind = "full",
			 .parent_index = -1,
			 .restorable = true,
			 .stop_order = 3},
		};
		BkRetention full1 = {.retain_full = 1};

		assert_true(bk_retention_decide(next, 3, &full1, NOW_MS, v));
		assert_int_equal(v[2], BK_VERDICT_KEEP);
		assert_int_equal(v[1], BK_VERDICT_NEXT_PARENT);
		assert_int_equal(v[0], BK_VERDICT_PARENT);
		assert_non_null(strstr(bk_retention_reason(&next[1], v[1], &full1),
							   "may build its next diff/incr snapshot"));
		next[1].next_parent = false;
		assert_true(bk_retention_decide(next, 3, &full1, NOW_MS, v));
		assert_int_equal(v[1], BK_VERDICT_EXPIRE);
		assert_int_equal(v[0], BK_VERDICT_EXPIRE);
	}

	/*
	 * Restored from 0 to a moment before 1 ended: the source's timeline
	 * branched off before 1's end, so only 0 restores what it did since.
	 * 1 ends later in the WAL and is kept; 0 stays with it.
	 */
	{
		const RetentionCase branched[] = {
			{"20261101T000000Z-a", "full", -1, true, 300}, /* 0 */
			{"20261102T000000Z-b", "full", -1, true, 200}, /* 1: off */
		};
		BkRetention full1 = {.retain_full = 1};
		BkRetention day1 = {.retain_days = 1};

		decide_off(branched, 2, &full1, v, true, 1u << 1);
		assert_int_equal(v[1], BK_VERDICT_KEEP);
		assert_int_equal(v[0], BK_VERDICT_KEEP);
		decide_off(branched, 2, &day1, v, true, 1u << 1);
		assert_int_equal(v[1], BK_VERDICT_KEEP);
		assert_int_equal(v[0], BK_VERDICT_KEEP);
	}

	/* Nothing restorable anchors the policy: nothing is removed. */
	{
		const RetentionCase broken[] = {
			{"20261101T000000Z-a", "full", -1, false, 300},
			{"20261102T000000Z-b", "full", -1, false, 200},
		};

		decide(broken, 2, &policy, v, false);
		assert_int_equal(v[0], BK_VERDICT_KEEP);
		assert_int_equal(v[1], BK_VERDICT_KEEP);
	}
}

/* ------------------------------------------------------------ WAL */

typedef struct WalFixture
{
	char *dir;
	char location[512];
	BkKey key;
	BkKeyring ring;
	BkRepo *repo;
	int uploads;
	const char *system;           /* what archived objects say; NULL: 7441 */
	const char *start_time;       /* records' start-time; NULL: 2020-11-24 */
	const char *history_database; /* records' history-database, or NULL */
} WalFixture;

static int
wal_setup(void **state)
{
	WalFixture *f = calloc(1, sizeof(*f));
	BkError err;

	f->dir = test_mkdtemp();
	snprintf(f->location, sizeof(f->location), "%s/repo", f->dir);
	test_key(&f->key, &f->ring);
	f->repo = bk_repo_open(f->location, true, &err);
	assert_non_null(f->repo);
	assert_true(bk_repo_spool_open(f->repo, "unit-restore", &err));
	*state = f;
	return 0;
}

static int
wal_teardown(void **state)
{
	WalFixture *f = *state;

	bk_repo_close(f->repo);
	test_rmdir(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

/* Archive a WAL object as the shipper would. */
static void
archive_content(WalFixture *f, const char *name, const char *meta,
				const char *content)
{
	test_archive_object(f->repo, &f->key, &f->uploads, BK_KIND_WAL, SOURCE,
						name, meta, (const uint8_t *) content, strlen(content));
}

static void
archive(WalFixture *f, const char *name, const char *meta)
{
	archive_content(f, name, meta, "not really WAL");
}

static void
archive_segment(WalFixture *f, uint32_t timeline, uint64_t segno)
{
	char name[32];
	char meta[256];

	bk_wal_segment_name(timeline, segno, SEG_SIZE, name);
	snprintf(meta, sizeof(meta),
			 "type=segment\ntimeline=%u\nsegment-size=%u\n"
			 "system-identifier=%s\ncreated=2026-11-24T05:12:00.000Z",
			 timeline, SEG_SIZE, f->system ? f->system : "7441");
	archive(f, name, meta);
}

/* A history file; its text, if given, is what the file holds. */
static void
archive_history_text(WalFixture *f, uint32_t timeline,
					 const char *branch_points, const char *text)
{
	char name[32];
	char meta[256];

	snprintf(name, sizeof(name), "%08X.history", timeline);
	snprintf(meta, sizeof(meta),
			 "type=history\ntimeline=%u\nbranch-points=%s\n"
			 "system-identifier=7441\ncreated=2026-11-24T05:12:00.000Z",
			 timeline, branch_points);
	archive_content(f, name, meta, text ? text : "not really a history");
}

static void
archive_history(WalFixture *f, uint32_t timeline, const char *branch_points)
{
	archive_history_text(f, timeline, branch_points, NULL);
}

static void
test_wal_gap(void **state)
{
	WalFixture *f = *state;
	BkWalCatalog catalog;
	const BkWalTimeline *tl;
	BkWalPath path;
	char why[256];
	BkError err;

	for (uint64_t segno = 1; segno <= 6; segno++)
		if (segno != 3)
			archive_segment(f, 1, segno);
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_int_equal(catalog.segment_size, SEG_SIZE);
	assert_string_equal(catalog.newest_name, "000000010000000000000006");
	tl = bk_wal_timeline(&catalog, 1);
	assert_non_null(tl);
	assert_int_equal(tl->segments, 5);
	assert_int_equal(tl->gap_count, 1);
	assert_int_equal(tl->first_gap_segno, 3);

	/* A recovery from segment 1 to the end misses segment 3... */
	bk_wal_path(&catalog, 1, 1, 1, BK_WAL_END, &path);
	assert_true(path.reachable);
	assert_int_equal(path.missing, 1);
	assert_string_equal(path.first_missing, "000000010000000000000003");
	assert_false(path.beyond_end);
	/* ...one from segment 4 misses nothing; one to segment 9 goes past the
	 * end, which is not a gap (the source may still send them). */
	bk_wal_path(&catalog, 1, 4, 1, BK_WAL_END, &path);
	assert_int_equal(path.missing, 0);
	bk_wal_path(&catalog, 1, 4, 1, 9, &path);
	assert_int_equal(path.missing, 0);
	assert_true(path.beyond_end);
	assert_int_equal(path.first_beyond_segno, 7);

	/* What bk wal-get tells PostgreSQL: a hole is an error, the end is not. */
	assert_true(bk_wal_segment_is_hole(&catalog, 1, 3, why, sizeof(why)));
	assert_false(bk_wal_segment_is_hole(&catalog, 1, 7, why, sizeof(why)));
	bk_wal_catalog_free(&catalog);
}

static void
test_wal_timelines(void **state)
{
	WalFixture *f = *state;
	BkWalCatalog catalog;
	const BkWalTimeline *tl1;
	BkWalPath path;
	char why[256];
	BkError err;

	/*
	 * Timeline 2 branched off timeline 1 at 0/4800000, in segment 4: a
	 * recovery on timeline 2 reads timeline 1's segments 1-3, then
	 * timeline 2's from 4.  Timeline 1's segment 2 is missing, and its
	 * newest archived segment is 3: segment 2 is a hole even though
	 * timeline 1 "ends" near it.
	 */
	archive_segment(f, 1, 1);
	archive_segment(f, 1, 3);
	archive_history(f, 2, "1:0/4800000");
	for (uint64_t segno = 4; segno <= 6; segno++)
		archive_segment(f, 2, segno);
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_int_equal(bk_wal_latest_timeline(&catalog), 2);
	tl1 = bk_wal_timeline(&catalog, 1);
	assert_non_null(tl1);
	assert_true(tl1->needed_until == 0x4800000);
	assert_int_equal(tl1->needed_by, 2);
	assert_true(bk_wal_timeline(&catalog, 2)->history_known);

	bk_wal_path(&catalog, 1, 1, 2, BK_WAL_END, &path);
	assert_true(path.reachable);
	assert_int_equal(path.missing, 1);
	assert_int_equal(path.first_missing_timeline, 1);
	assert_string_equal(path.first_missing, "000000010000000000000002");
	assert_int_equal(path.end_timeline, 2);
	assert_true(path.end_segno == 6);

	assert_true(bk_wal_segment_is_hole(&catalog, 1, 2, why, sizeof(why)));
	/* Timeline 1 past the branch: never needed, so not a hole. */
	assert_false(bk_wal_segment_is_hole(&catalog, 1, 5, why, sizeof(why)));

	/* Timeline 3 is not known: not reachable from timeline 1's start. */
	bk_wal_path(&catalog, 1, 1, 3, BK_WAL_END, &path);
	assert_false(path.reachable);
	bk_wal_catalog_free(&catalog);
}

/*
 * A verifier reporting in --json, with the key (a decoder of the fixture's
 * ring) when ring is not NULL; verifier_close frees what it holds.
 */
static void
verifier_open(BkVerifier *verifier, const BkKeyring *ring)
{
	BkError err;

	memset(verifier, 0, sizeof(*verifier));
	for (int jobIdx = 0; jobIdx < BK_VERIFY_JOBS_MAX; jobIdx++)
		verifier->workers[jobIdx].scratch_fd = -1; /* none open yet */
	verifier->json = true;
	if (ring != NULL)
	{
		verifier->ring = ring;
		verifier->decoder = bk_decoder_new(ring, &err);
		assert_non_null(verifier->decoder);
	}
	verifier->problem_list = json_array();
	verifier->note_list = json_array();
	verifier->conflict_list = json_array();
	/* bk_pg_verify makes its snapshot_list itself. */
}

static void
verifier_close(BkVerifier *verifier)
{
	for (int jobIdx = 0; jobIdx < BK_VERIFY_JOBS_MAX; jobIdx++)
		if (verifier->workers[jobIdx].scratch_fd >= 0)
			close(verifier->workers[jobIdx].scratch_fd);
	bk_decoder_free(verifier->decoder);
	json_decref(verifier->problem_list);
	json_decref(verifier->note_list);
	json_decref(verifier->conflict_list);
	json_decref(verifier->snapshot_list);
}

/* bk verify of the fixture's source without the key: its problems, as JSON. */
static char *
verify_problems(WalFixture *f, uint64_t *problems)
{
	BkVerifier verifier;
	BkError err;
	char *text;

	verifier_open(&verifier, NULL);
	assert_true(bk_pg_verify(&verifier, f->repo, SOURCE, &err));
	*problems = verifier.problems;
	text = json_dumps(verifier.problem_list, 0);
	verifier_close(&verifier);
	return text;
}

/*
 * Timeline 2 branched off timeline 1 at 0/4800000, in segment 4, whose
 * timeline 2 copy never reached the archive; timeline 2's archive starts
 * at segment 5.  Recovery along timeline 2 from timeline 1's WAL needs
 * 000000020000000000000004, and bk wal-get calls it a hole (fatal): it is
 * a gap, that bk list and bk verify must show, not where timeline 2's
 * archive starts.  Once timeline 1's WAL before the branch is gone (as
 * expire leaves it), timeline 2 starting at segment 5 is no gap.
 */
static void
test_wal_branch_segment_missing(void **state)
{
	WalFixture *f = *state;
	BkWalCatalog catalog;
	const BkWalTimeline *tl2;
	uint64_t problems;
	char why[256];
	char *text;
	BkError err;

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	archive_history(f, 2, "1:0/4800000");
	for (uint64_t segno = 5; segno <= 6; segno++)
		archive_segment(f, 2, segno);
	text = verify_problems(f, &problems);
	assert_int_equal(problems, 1);
	assert_non_null(strstr(text, "000000020000000000000004"));
	free(text);
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_true(bk_wal_segment_is_hole(&catalog, 2, 4, why, sizeof(why)));
	tl2 = bk_wal_timeline(&catalog, 2);
	assert_int_equal(tl2->gap_count, 1);
	assert_int_equal(tl2->first_gap_segno, 4);
	assert_int_equal(bk_wal_timeline(&catalog, 1)->gap_count, 0);
	bk_wal_catalog_free(&catalog);

	/* Timeline 1 before the branch removed: timeline 2 starts at 5. */
	for (uint64_t segno = 1; segno <= 3; segno++)
	{
		char name[32];

		bk_wal_segment_name(1, segno, SEG_SIZE, name);
		assert_true(bk_repo_delete(f->repo, BK_REPO_ARCHIVE, SOURCE,
								   BK_KIND_WAL, name, &err));
	}
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_int_equal(bk_wal_timeline(&catalog, 2)->gap_count, 0);
	bk_wal_catalog_free(&catalog);
	text = verify_problems(f, &problems);
	assert_int_equal(problems, 0);
	free(text);
}

/*
 * Timeline 2 branched off timeline 1 in segment 4 and timeline 3 off
 * timeline 2 in segment 6; none of timeline 2's WAL was archived.
 * Recovery along timeline 3 from timeline 1 needs timeline 2's segments
 * 4 and 5: a gap, though timeline 2 has no segment to start from.
 */
static void
test_wal_timeline_lost_between(void **state)
{
	WalFixture *f = *state;
	BkWalCatalog catalog;
	const BkWalTimeline *tl2;
	BkWalPath path;
	uint64_t problems;
	char *text;
	BkError err;

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	archive_history(f, 2, "1:0/4800000");
	archive_history(f, 3, "1:0/4800000,2:0/6800000");
	for (uint64_t segno = 6; segno <= 7; segno++)
		archive_segment(f, 3, segno);
	text = verify_problems(f, &problems);
	assert_int_equal(problems, 1);
	assert_non_null(strstr(text, "000000020000000000000004"));
	free(text);
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	bk_wal_path(&catalog, 1, 1, 3, BK_WAL_END, &path);
	assert_int_equal(path.missing, 2);
	tl2 = bk_wal_timeline(&catalog, 2);
	assert_int_equal(tl2->gap_count, 2);
	assert_int_equal(tl2->first_gap_segno, 4);
	assert_int_equal(bk_wal_timeline(&catalog, 3)->gap_count, 0);
	bk_wal_catalog_free(&catalog);
}

/*
 * Timeline 2's WAL is archived, its history file is not (its message was
 * rejected): bk cannot tell where timeline 2 branched off timeline 1, and
 * recovery from timeline 1 never reaches it.  bk verify must say so.  An
 * archive that begins on timeline 2 (bk installed after a promotion) needs
 * no history file.
 */
static void
test_verify_history_file_missing(void **state)
{
	WalFixture *f = *state;
	uint64_t problems;
	char *text;

	for (uint64_t segno = 4; segno <= 5; segno++)
		archive_segment(f, 2, segno);
	text = verify_problems(f, &problems);
	assert_int_equal(problems, 0);
	free(text);

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	text = verify_problems(f, &problems);
	assert_int_equal(problems, 1);
	assert_non_null(strstr(text, "00000002.history"));
	assert_non_null(strstr(text, "has WAL archived but not its history"));
	free(text);

	archive_history(f, 2, "1:0/4800000");
	text = verify_problems(f, &problems);
	assert_int_equal(problems, 0);
	free(text);
}

/*
 * A source directory that holds nothing (a shipper stopped between making
 * it and storing the source's first object, or its objects removed by
 * hand) is said and skipped by bk list and bk verify of the repository:
 * it must not stop them (exit 1, "holds nothing of source") before they
 * report every other source.  Named with --source, it is still an error.
 */
static void
test_list_verify_skip_empty_source(void **state)
{
	WalFixture *f = *state;
	char config[600];
	char empty[700];
	char *list[] = {"bk list", "--config", config, "--repo", f->location, NULL};
	char *verify[] = {"bk verify", "--config",  config,
					  "--repo",    f->location, NULL};
	char *named[] = {"bk list",   "--config", config,      "--repo",
					 f->location, "--source", "aaa-empty", NULL};
	BkError err;

	snprintf(config, sizeof(config), "%s/bk.conf", f->dir);
	assert_true(bk_write_file_durable(config, "", 0, 0600, &err));
	for (uint64_t segno = 1; segno <= 2; segno++)
		archive_segment(f, 1, segno);
	/* Sorted before the source that holds WAL, and after it. */
	snprintf(empty, sizeof(empty), "%s/aaa-empty/wal", f->location);
	assert_true(bk_mkdirs(empty, 0755, false, &err));
	snprintf(empty, sizeof(empty), "%s/zzz-empty", f->location);
	assert_int_equal(mkdir(empty, 0755), 0);

	assert_int_equal(bk_cmd_list(5, list), BK_EXIT_OK);
	assert_int_equal(bk_cmd_verify(5, verify), BK_EXIT_OK);
	assert_int_equal(bk_cmd_list(7, named), BK_EXIT_FAILURE);
}

/*
 * A repository setting that names no repository (a directory that does
 * not exist, one without the marker) is a configuration error, exit 3:
 * exit 5 says "the store failed, try again", and trying again reads the
 * same nothing.
 */
static void
test_list_verify_no_repository(void **state)
{
	WalFixture *f = *state;
	char config[600];
	char missing[600];
	char *list[] = {"bk list", "--config", config, "--repo", missing, NULL};
	char *verify[] = {"bk verify", "--config", config, "--repo", missing, NULL};
	BkError err;

	snprintf(config, sizeof(config), "%s/bk.conf", f->dir);
	assert_true(bk_write_file_durable(config, "", 0, 0600, &err));
	snprintf(missing, sizeof(missing), "%s/no-such-repository", f->dir);
	assert_int_equal(bk_cmd_list(5, list), BK_EXIT_CONFIG);
	assert_int_equal(bk_cmd_verify(5, verify), BK_EXIT_CONFIG);
	/* There, and without the marker. */
	assert_int_equal(mkdir(missing, 0755), 0);
	assert_int_equal(bk_cmd_list(5, list), BK_EXIT_CONFIG);
	assert_int_equal(bk_cmd_verify(5, verify), BK_EXIT_CONFIG);
}

/*
 * --tablespace-map naming one tablespace twice is refused as it is read:
 * the last NEW would silently win over the first.
 */
static void
test_tablespace_map_twice(void **state)
{
	WalFixture *f = *state;
	char config[600];
	char pgdata[600];
	char first[] = "/srv/ts1=/restore/a";
	char second[] = "/srv/ts1=/restore/b";
	char *argv[] = {"bk restore", "--config",
					config,       "--repo",
					f->location,  "--source",
					SOURCE,       "--pgdata",
					pgdata,       "--tablespace-map",
					first,        "--tablespace-map",
					second,       NULL};
	BkError err;

	snprintf(config, sizeof(config), "%s/bk.conf", f->dir);
	snprintf(pgdata, sizeof(pgdata), "%s/pgdata", f->dir);
	assert_true(bk_write_file_durable(config, "", 0, 0600, &err));
	archive_segment(f, 1, 1);
	assert_int_equal(bk_cmd_restore(13, argv), BK_EXIT_USAGE);
	assert_int_equal(access(pgdata, F_OK), -1);
}

/*
 * A directory where the newest segment's object belongs is not the end of
 * the archive: bk wal-get exits 200 (PostgreSQL stops recovery), never 1
 * (PostgreSQL would end recovery before that segment and promote), and
 * bk verify reports it.
 */
static int wal_get(WalFixture *f, const char *file, bool with_key, char *got,
				   size_t got_len);

static void
test_wal_get_object_not_a_file(void **state)
{
	WalFixture *f = *state;
	char path[700];
	char got[64];
	char name[32];
	uint64_t problems;
	char *text;

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	bk_wal_segment_name(1, 3, SEG_SIZE, name);
	snprintf(path, sizeof(path), "%s/%s/wal/%s", f->location, SOURCE, name);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(wal_get(f, name, true, got, sizeof(got)), 200);
	/* bk verify names it (its listing skipped it: the WAL looked whole). */
	text = verify_problems(f, &problems);
	assert_int_equal(problems, 1);
	assert_non_null(strstr(text, name));
	assert_non_null(strstr(text, "not an object"));
	free(text);
	bk_wal_segment_name(1, 2, SEG_SIZE, name);
	assert_int_equal(wal_get(f, name, true, got, sizeof(got)), 0);
}

/*
 * A rotation whose new private key the restore keyring lacks: segments 1-3
 * sealed to the old key, 4-9 (more than the few newest tried for the
 * catalog's metadata) to the new one.  With the old key alone, the WAL
 * catalog still loads (from segment 3, the newest the keyring opens), so
 * what needs only the old key works: wal-get of segment 2, and of segment
 * 10, after the newest, is the end of the archive (exit 1).  A segment
 * sealed to the new key stops recovery (exit 200), never "not in the
 * archive".
 */
static void
test_wal_catalog_new_key_missing(void **state)
{
	WalFixture *f = *state;
	BkKey old_key = f->key;
	BkKey new_key;
	BkDecoder *decoder;
	BkWalCatalog catalog;
	char name[32];
	char got[64];
	BkError err;

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	test_key(&new_key, NULL);
	f->key = new_key;
	for (uint64_t segno = 4; segno <= 9; segno++)
		archive_segment(f, 1, segno);
	f->key = old_key;

	decoder = bk_decoder_new(&f->ring, &err);
	assert_non_null(decoder);
	if (!bk_wal_catalog_load(f->repo, SOURCE, decoder, &catalog, &err))
		fail_msg("the catalog does not load with the old key: %s", err.message);
	assert_int_equal(catalog.segment_size, SEG_SIZE);
	bk_wal_segment_name(1, 3, SEG_SIZE, name);
	assert_string_equal(catalog.newest_name, name);
	bk_wal_catalog_free(&catalog);
	bk_decoder_free(decoder);

	bk_wal_segment_name(1, 2, SEG_SIZE, name);
	assert_int_equal(wal_get(f, name, true, got, sizeof(got)), 0);
	bk_wal_segment_name(1, 5, SEG_SIZE, name);
	assert_int_equal(wal_get(f, name, true, got, sizeof(got)), 200);
	bk_wal_segment_name(1, 10, SEG_SIZE, name);
	assert_int_equal(wal_get(f, name, true, got, sizeof(got)), 1);
}

/* The directory backend, but listing in descending name order. */
typedef struct ListedEntry
{
	char *name;
	BkRepoEntry entry;
} ListedEntry;

typedef struct Listed
{
	ListedEntry *entries;
	size_t count;
} Listed;

static bool
collect_entry(void *arg, const BkRepoEntry *entry, BkError *err)
{
	Listed *listed = arg;

	listed->entries = realloc(listed->entries,
							  (listed->count + 1) * sizeof(*listed->entries));
	assert_non_null(listed->entries);
	listed->entries[listed->count].name = strdup(entry->name);
	listed->entries[listed->count].entry = *entry;
	listed->count++;
	return true;
}

static int
entry_desc_cmp(const void *a, const void *b)
{
	return -strcmp(((const ListedEntry *) a)->name,
				   ((const ListedEntry *) b)->name);
}

static const BkRepoBackend *listing_backend;

static bool
list_descending(const BkRepo *repo, const char *prefix, bool recursive,
				BkRepoListFn fn, void *arg, BkError *err)
{
	Listed listed = {0};
	bool ok = listing_backend->list(repo, prefix, recursive, collect_entry,
									&listed, err);

	if (listed.count > 0)
		qsort(listed.entries, listed.count, sizeof(*listed.entries),
			  entry_desc_cmp);
	for (size_t idx = 0; idx < listed.count; idx++)
	{
		listed.entries[idx].entry.name = listed.entries[idx].name;
		if (ok && !fn(arg, &listed.entries[idx].entry, err))
			ok = false;
		free(listed.entries[idx].name);
	}
	free(listed.entries);
	return ok;
}

#define SMALL_SEG 4096u

/*
 * Segment segno of timeline 1 (of SMALL_SEG bytes) of database system
 * sysid, with the long page header that says so; in the conflicts area
 * when conflict (after the archived copy refused it).
 */
static void
archive_small_segment(WalFixture *f, uint64_t segno, const char *sysid,
					  bool conflict)
{
	uint8_t *content = calloc(1, SMALL_SEG);
	uint64_t lsn = segno * SMALL_SEG;
	uint64_t system = strtoull(sysid, NULL, 10);
	char name[32];
	char meta[512];

	content[0] = 0x10; /* xlp_magic of PostgreSQL 15 */
	content[1] = 0xD1;
	content[2] = 0x02; /* XLP_LONG_HEADER */
	content[4] = 1;    /* timeline */
	for (int byte = 0; byte < 8; byte++)
	{
		content[8 + byte] = (uint8_t) (lsn >> (8 * byte));
		content[24 + byte] = (uint8_t) (system >> (8 * byte));
	}
	content[33] = SMALL_SEG >> 8;
	content[37] = 8192 >> 8;
	bk_wal_segment_name(1, segno, SMALL_SEG, name);
	snprintf(meta, sizeof(meta),
			 "type=segment\ntimeline=1\nsegment-size=%u\n"
			 "system-identifier=%s\nlsn-start=%X/%X\n"
			 "created=2026-11-24T05:12:00.000Z",
			 SMALL_SEG, sysid, (unsigned) (lsn >> 32), (unsigned) lsn);
	if (conflict)
		test_archive_conflict(f->repo, &f->key, &f->uploads, BK_KIND_WAL,
							  SOURCE, name, meta, content, SMALL_SEG);
	else
		test_archive_object(f->repo, &f->key, &f->uploads, BK_KIND_WAL, SOURCE,
							name, meta, content, SMALL_SEG);
	free(content);
}

/*
 * bk verify with a keyring that lacks the new key of a rotation: the
 * objects sealed to it are problems (no restore reads them either), but
 * the archive shows no damage: exit 3 (a key problem), not 4, and the
 * missing key in --json; with both keys, exit 0.  Damage besides the
 * missing key is still exit 4.
 */
static void
test_verify_new_key_missing(void **state)
{
	WalFixture *f = *state;
	BkKey old_key = f->key;
	BkKey new_key;
	char config[600];
	char old_file[600];
	char both_file[600];
	char new_hex[BK_KEY_ID_HEX_LEN + 1];
	char *old_text;
	char *new_text;
	char *joined;
	size_t old_len;
	size_t new_len;
	char *verify_old[] = {"bk verify", "--config",  config,
						  "--repo",    f->location, "--key-file",
						  old_file,    "--json",    NULL};
	char *verify_both[] = {"bk verify", "--config",   config,    "--repo",
						   f->location, "--key-file", both_file, NULL};
	char report[700];
	char *text;
	size_t len;
	int saved;
	int fd;
	int status;
	BkError err;

	snprintf(config, sizeof(config), "%s/bk.conf", f->dir);
	snprintf(old_file, sizeof(old_file), "%s/old.key", f->dir);
	snprintf(both_file, sizeof(both_file), "%s/both.key", f->dir);
	snprintf(report, sizeof(report), "%s/verify.json", f->dir);
	assert_true(bk_write_file_durable(config, "", 0, 0600, &err));
	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_small_segment(f, segno, "7441", false);
	test_key(&new_key, NULL);
	f->key = new_key;
	for (uint64_t segno = 4; segno <= 5; segno++)
		archive_small_segment(f, segno, "7441", false);
	f->key = old_key;
	bk_key_id_hex(new_key.id, new_hex);

	assert_true(bk_key_write_files(&old_key, old_file, &err));
	snprintf(report, sizeof(report), "%s/new.key", f->dir);
	assert_true(bk_key_write_files(&new_key, report, &err));
	assert_true(bk_read_file(old_file, 4096, &old_text, &old_len, &err));
	assert_true(bk_read_file(report, 4096, &new_text, &new_len, &err));
	joined = malloc(old_len + new_len + 1);
	assert_non_null(joined);
	memcpy(joined, old_text, old_len);
	memcpy(joined + old_len, new_text, new_len);
	assert_true(bk_write_file_durable(both_file, joined, old_len + new_len,
									  0600, &err));
	free(joined);
	free(old_text);
	free(new_text);

	snprintf(report, sizeof(report), "%s/verify.json", f->dir);
	fd = open(report, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	dup2(fd, STDOUT_FILENO);
	close(fd);
	status = bk_cmd_verify(8, verify_old);
	test_stdout_restore(saved);
	assert_true(bk_read_file(report, 1 << 20, &text, &len, &err));
	if (status != BK_EXIT_CONFIG)
		fail_msg("bk verify exited %d, not 3:\n%s", status, text);
	if (strstr(text, "\"missing_keys\": [\n    \"") == NULL ||
		strstr(text, new_hex) == NULL)
		fail_msg("--json does not name the missing key %s:\n%s", new_hex, text);
	free(text);
	assert_int_equal(bk_cmd_verify(7, verify_both), BK_EXIT_OK);

	/* Damage as well: that decides. */
	test_alter_stored(f->location, SOURCE, "wal", "000000010000000000000002",
					  "segment-size", "segment-sizE", true);
	assert_int_equal(bk_cmd_verify(7, verify_both), BK_EXIT_INTEGRITY);
	verify_old[7] = NULL;
	assert_int_equal(bk_cmd_verify(7, verify_old), BK_EXIT_INTEGRITY);
}

/*
 * Segments 2 and 3 are of the source's system (7441), segment 1 of another
 * cluster (9999) that archived under the same source id, and so is a
 * second copy of segment 3.  bk verify must say the archived copy of
 * segment 3 fits the source and the other does not, whatever order the
 * store lists the WAL in: told the reverse, the operator would put the
 * other cluster's WAL in place and restore it.
 */
static void
test_verify_conflict_verdict_any_order(void **state)
{
	WalFixture *f = *state;
	BkRepoBackend descending;
	BkVerifier verifier;
	const char *verdict;
	BkError err;

	archive_small_segment(f, 1, "9999", false);
	archive_small_segment(f, 2, "7441", false);
	archive_small_segment(f, 3, "7441", false);
	archive_small_segment(f, 3, "9999", true);

	verifier_open(&verifier, &f->ring);
	listing_backend = f->repo->backend;
	descending = *listing_backend;
	descending.list = list_descending;
	f->repo->backend = &descending;
	assert_true(bk_pg_verify(&verifier, f->repo, SOURCE, &err));
	f->repo->backend = listing_backend;

	assert_int_equal(json_array_size(verifier.conflict_list), 1);
	verdict = json_string_value(
		json_object_get(json_array_get(verifier.conflict_list, 0), "verdict"));
	assert_non_null(verdict);
	assert_non_null(strstr(verdict, "the archived copy"));
	assert_non_null(strstr(verdict, "fits this source's history, the "
									"conflict copy"));
	assert_null(strstr(verdict, "move the archived copy away"));
	verifier_close(&verifier);
}

/*
 * bk expire removes the oldest WAL between verify's listing and its read
 * of it: a note (removed meanwhile), not a problem (exit 4, "damage"), so
 * that a verify scheduled beside expire raises no false integrity alarm.
 */
static int vanish_after_listings;
static char vanish_path[1024];

static bool
list_then_remove(const BkRepo *repo, const char *prefix, bool recursive,
				 BkRepoListFn fn, void *arg, BkError *err)
{
	bool ok = listing_backend->list(repo, prefix, recursive, fn, arg, err);

	/* Listings of WAL objects; bk expire's records are not. */
	if (strstr(prefix, "/wal/") != NULL &&
		strstr(prefix, "/expired/") == NULL && --vanish_after_listings == 0)
		unlink(vanish_path);
	return ok;
}

static void
test_verify_object_removed_meanwhile(void **state)
{
	WalFixture *f = *state;
	BkRepoBackend removing;
	BkVerifier verifier;
	char *notes;
	BkError err;

	for (uint64_t segno = 1; segno <= 6; segno++)
		archive_segment(f, 1, segno);
	snprintf(vanish_path, sizeof(vanish_path),
			 "%s/" SOURCE "/wal/000000010000000000000001", f->location);
	/* The third listing of WAL is the one whose objects are read. */
	vanish_after_listings = 3;
	verifier_open(&verifier, &f->ring);
	listing_backend = f->repo->backend;
	removing = *listing_backend;
	removing.list = list_then_remove;
	f->repo->backend = &removing;
	assert_true(bk_pg_verify(&verifier, f->repo, SOURCE, &err));
	f->repo->backend = listing_backend;
	assert_int_not_equal(access(vanish_path, F_OK), 0);
	assert_int_equal(verifier.problems, 0);
	notes = json_dumps(verifier.note_list, 0);
	assert_non_null(strstr(notes, "gone when read"));
	assert_non_null(strstr(notes, "000000010000000000000001"));
	free(notes);
	verifier_close(&verifier);
}

/*
 * A store that answers the read of an object it still lists with "no such
 * object" (a proxy's passing 404, reads lagging listings): not a removal.
 * bk verify must not leave the object unchecked with a note and exit 0; it
 * confirms by listing, and stops with a read failure that says so.
 */
static const char *phantom_missing_key;

static BkRepoReader *
open_says_missing(const BkRepo *repo, const char *key, BkError *err)
{
	if (strstr(key, phantom_missing_key) != NULL)
	{
		bk_error_set(err, BK_ERR_NOT_FOUND, "no object %s (a passing 404)",
					 key);
		return NULL;
	}
	return listing_backend->reader_open(repo, key, err);
}

static void
test_verify_listed_object_said_missing(void **state)
{
	WalFixture *f = *state;
	BkRepoBackend lying;
	BkVerifier verifier;
	char *notes;
	BkError err;

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	phantom_missing_key = "/wal/000000010000000000000002";
	verifier_open(&verifier, &f->ring);
	listing_backend = f->repo->backend;
	lying = *listing_backend;
	lying.reader_open = open_says_missing;
	f->repo->backend = &lying;
	assert_false(bk_pg_verify(&verifier, f->repo, SOURCE, &err));
	f->repo->backend = listing_backend;
	assert_int_equal(err.code, BK_ERR_STORE);
	assert_error_contains(&err, "000000010000000000000002");
	assert_error_contains(&err, "still lists it");
	assert_int_equal(verifier.problems, 0);
	notes = json_dumps(verifier.note_list, 0);
	assert_null(strstr(notes, "gone when read"));
	free(notes);
	verifier_close(&verifier);
}

/* ------------------------------------------------------------ expire */

/*
 * A snapshot as the source archives it: its record (with the metadata bk
 * reads without keys), label, map, manifest and data objects.  present
 * data objects of the objects the record counts arrive; no record when
 * kind is NULL.
 */
static void archive_snapshot_record(WalFixture *f, const char *id,
									const char *kind, const char *parent,
									uint32_t timeline, const char *start_lsn,
									const char *stop_lsn, int objects,
									int present, const char *record);

static void
archive_snapshot(WalFixture *f, const char *id, const char *kind,
				 const char *parent, uint32_t timeline, const char *start_lsn,
				 const char *stop_lsn, int objects, int present)
{
	char record[1024];

	/* The record agrees with its metadata: bk expire with the keyring
	 * checks that it does, as a restore does. */
	snprintf(record, sizeof(record),
			 "{\"format\":3,\"snapshot\":\"%s\",\"source\":\"" SOURCE "\","
			 "\"kind\":\"%s\",\"parent\":%s%s%s,\"start_lsn\":\"%s\","
			 "\"stop_lsn\":\"%s\",\"start_timeline\":%u,"
			 "\"stop_timeline\":%u,\"system_identifier\":\"%s\","
			 "\"pg_version\":160000,\"block_size\":8192,"
			 "\"data_checksums\":true,\"tablespaces\":[],"
			 "\"directories\":[],\"files\":[],\"checksum_failures\":[]}",
			 id, kind ? kind : "full", parent ? "\"" : "",
			 parent ? parent : "null", parent ? "\"" : "", start_lsn, stop_lsn,
			 timeline, timeline, f->system ? f->system : "7441");
	archive_snapshot_record(f, id, kind, parent, timeline, start_lsn, stop_lsn,
							objects, present, record);
}

/* archive_snapshot, with record as the body of its snapshot.json. */
static void
archive_snapshot_record(WalFixture *f, const char *id, const char *kind,
						const char *parent, uint32_t timeline,
						const char *start_lsn, const char *stop_lsn,
						int objects, int present, const char *record)
{
	const char *parts[] = {BK_SNAPSHOT_LABEL, BK_SNAPSHOT_MAP,
						   BK_SNAPSHOT_MANIFEST};
	char name[128];
	char meta[1024];

	snprintf(meta, sizeof(meta), "snapshot=%s", id);
	for (int partIdx = 0; partIdx < 3; partIdx++)
	{
		snprintf(name, sizeof(name), "%s/%s", id, parts[partIdx]);
		test_archive_object(f->repo, &f->key, &f->uploads, BK_KIND_SNAPSHOT,
							SOURCE, name, meta, (const uint8_t *) "x", 1);
	}
	for (int objectIdx = 0; objectIdx < present; objectIdx++)
	{
		snprintf(name, sizeof(name), "%s/" BK_SNAPSHOT_DATA "/%06d", id,
				 objectIdx + 1);
		test_archive_object(f->repo, &f->key, &f->uploads, BK_KIND_SNAPSHOT,
							SOURCE, name, meta, (const uint8_t *) "data", 4);
	}
	if (kind == NULL)
		return;
	snprintf(meta, sizeof(meta),
			 "snapshot=%s\nkind=%s\n%s%s%sstart-lsn=%s\nstop-lsn=%s\n"
			 "timeline=%u\nstart-time=%s\n"
			 "stop-time=2020-11-24T00:01:00.000Z\nobjects=%d\nfiles=%d\n"
			 "bytes=4\nsystem-identifier=%s\npg-version=160000\n"
			 "segment-size=%u%s%s",
			 id, kind, parent ? "parent=" : "", parent ? parent : "",
			 parent ? "\n" : "", start_lsn, stop_lsn, timeline,
			 f->start_time ? f->start_time : "2020-11-24T00:00:00.000Z",
			 objects, objects, f->system ? f->system : "7441", SEG_SIZE,
			 f->history_database ? "\nhistory-database=" : "",
			 f->history_database ? f->history_database : "");
	snprintf(name, sizeof(name), "%s/" BK_SNAPSHOT_RECORD, id);
	test_archive_object(f->repo, &f->key, &f->uploads, BK_KIND_SNAPSHOT, SOURCE,
						name, meta, (const uint8_t *) record, strlen(record));
}

/* bk expire on the fixture's repository, its report out of the TAP. */
static int
expire(WalFixture *f, int64_t retain_full, int64_t retain_days)
{
	BkRetention policy = {.retain_full = retain_full,
						  .retain_days = retain_days};
	int saved = test_stdout_quiet();
	int status;
	BkError err;

	status = bk_pg_expire("bk expire", f->repo, SOURCE, &policy, &err);
	test_stdout_restore(saved);
	return status;
}

static bool
object_exists(WalFixture *f, int kind, const char *name)
{
	BkRepoStat stat;
	BkError err;

	assert_true(bk_repo_stat(f->repo, BK_REPO_ARCHIVE, SOURCE, kind, name,
							 &stat, &err));
	return stat.exists;
}

static bool
record_exists(WalFixture *f, const char *id)
{
	char name[128];

	snprintf(name, sizeof(name), "%s/" BK_SNAPSHOT_RECORD, id);
	return object_exists(f, BK_KIND_SNAPSHOT, name);
}

static bool
segment_exists(WalFixture *f, uint32_t timeline, uint64_t segno)
{
	char name[32];

	bk_wal_segment_name(timeline, segno, SEG_SIZE, name);
	return object_exists(f, BK_KIND_WAL, name);
}

#define SNAP_P "20261101T000000Z-0000000a"
#define SNAP_K "20261102T000000Z-0000000b"
#define SNAP_C "20261103T000000Z-0000000c"

/*
 * Full P on timeline 1, full K after it; then a restore from P to 0/3800000
 * made timeline 2, whose server bases its next incremental snapshot, C, on
 * P, the newest it knows.  --retain-full 1 keeps K (it ends last in the
 * WAL) and C (newer than K): P, C's parent, and the WAL from P's start
 * must stay, or C cannot be restored.
 */
static void
archive_restored_timeline(WalFixture *f)
{
	for (uint64_t segno = 1; segno <= 6; segno++)
		archive_segment(f, 1, segno);
	archive_history(f, 2, "1:0/3800000");
	for (uint64_t segno = 3; segno <= 4; segno++)
		archive_segment(f, 2, segno);
	archive_snapshot(f, SNAP_P, "full", NULL, 1, "0/1000028", "0/1800000", 1,
					 1);
	archive_snapshot(f, SNAP_K, "full", NULL, 1, "0/5000028", "0/5800000", 1,
					 1);
}

/*
 * bk expire with the keyring and --json, its report read back (NULL on
 * failure): what the run said of each snapshot.
 */
static char *
expire_keyed_report(WalFixture *f, BkKeyring *ring, int64_t retain_full,
					int *status)
{
	BkRetention policy = {.retain_full = retain_full, .json = true};
	char path[1024];
	int saved;
	int fd;
	char *text;
	size_t len;
	BkError err;

	snprintf(path, sizeof(path), "%s/expire-report.json", f->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	saved = dup(STDOUT_FILENO);
	fflush(stdout);
	dup2(fd, STDOUT_FILENO);
	close(fd);
	policy.decoder = bk_decoder_new(ring, &err);
	assert_non_null(policy.decoder);
	*status = bk_pg_expire("bk expire", f->repo, SOURCE, &policy, &err);
	bk_decoder_free(policy.decoder);
	test_stdout_restore(saved);
	assert_true(bk_read_file(path, 1 << 20, &text, &len, &err));
	return text;
}

/*
 * A full snapshot forged by a client that holds no restore key (sealed
 * here to a key of its own, which the restore keyring does not hold), with
 * record metadata copied from what the topics show (system identifier,
 * LSNs of archived WAL).  The keyless catalog calls it restorable; bk
 * expire --retain-full 1 with the keyring must not count it as the newest
 * full: the genuine snapshot and its WAL stay, and the run names the
 * forgery and why.
 */
static void
test_expire_forged_snapshot_keeps_genuine(void **state)
{
	WalFixture *f = *state;
	BkKey genuine_key = f->key;
	BkKey attacker;
	BkKeyring attacker_ring;
	BkSnapshotCatalog catalog;
	int status;
	char *report;
	BkError err;

	for (uint64_t segno = 1; segno <= 6; segno++)
		archive_segment(f, 1, segno);
	archive_snapshot(f, SNAP_P, "full", NULL, 1, "0/1000028", "0/1800000", 1,
					 1);

	/* The forgery, under a key the restore host does not have. */
	test_key(&attacker, &attacker_ring);
	f->key = attacker;
	archive_snapshot(f, SNAP_K, "full", NULL, 1, "0/5000028", "0/5800000", 1,
					 1);
	f->key = genuine_key;

	assert_true(
		bk_snapshot_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_true(catalog.snapshots[bk_snapshot_catalog_find(&catalog, SNAP_K)]
					.restorable);
	bk_snapshot_catalog_free(&catalog);

	/* As "bk expire --key-file" runs it: with the restore keyring. */
	report = expire_keyed_report(f, &f->ring, 1, &status);
	assert_int_equal(status, 0);
	assert_true(record_exists(f, SNAP_P));
	assert_true(segment_exists(f, 1, 1));
	assert_true(record_exists(f, SNAP_K)); /* newer than P: it stays */
	if (strstr(report, "\"warnings\": [\n    \"snapshot " SNAP_K
					   " does not count as restorable: its record does not "
					   "decrypt and authenticate with the keyring: ") == NULL ||
		strstr(report, "\"authenticated\": false") == NULL ||
		strstr(report, "\"problem\": \"not authenticated\"") == NULL)
		fail_msg("the report does not name the forgery:\n%s", report);
	free(report);
}

/*
 * The keyring lacks the key a snapshot was sealed to (a rotation whose new
 * private key was never added to it): full K, and diff C built on K whose
 * record the keyring does read.  Neither restores with this keyring, so
 * neither may displace P, which does: --retain-full 1 keeps P and its WAL.
 * Once the missing key is in the keyring, K is the newest full and P goes.
 */
static void
test_expire_key_not_in_keyring(void **state)
{
	WalFixture *f = *state;
	BkKey old_key = f->key;
	BkKey new_key;
	BkKeyring both;
	int status;
	char *report;

	for (uint64_t segno = 1; segno <= 7; segno++)
		archive_segment(f, 1, segno);
	archive_snapshot(f, SNAP_P, "full", NULL, 1, "0/1000028", "0/1800000", 1,
					 1);
	test_key(&new_key, NULL);
	f->key = new_key;
	archive_snapshot(f, SNAP_K, "full", NULL, 1, "0/5000028", "0/5800000", 1,
					 1);
	f->key = old_key;
	archive_snapshot(f, SNAP_C, "diff", SNAP_K, 1, "0/6000028", "0/6800000", 1,
					 1);

	report = expire_keyed_report(f, &f->ring, 1, &status);
	assert_int_equal(status, 0);
	assert_true(record_exists(f, SNAP_P));
	assert_true(segment_exists(f, 1, 1));
	assert_true(record_exists(f, SNAP_K));
	assert_true(record_exists(f, SNAP_C));
	if (strstr(report, "snapshot " SNAP_K " does not count as restorable: "
					   "its record does not decrypt and authenticate with the "
					   "keyring") == NULL ||
		strstr(report, "snapshot " SNAP_C " does not count as restorable: "
					   "its chain holds snapshot " SNAP_K) == NULL)
		fail_msg("the report does not say why:\n%s", report);
	free(report);

	/* The key added to the keyring: K restores, and P goes. */
	memset(&both, 0, sizeof(both));
	both.keys[0] = old_key;
	both.keys[1] = new_key;
	both.count = 2;
	report = expire_keyed_report(f, &both, 1, &status);
	assert_int_equal(status, 0);
	assert_false(record_exists(f, SNAP_P));
	assert_false(segment_exists(f, 1, 1));
	assert_true(record_exists(f, SNAP_K));
	assert_true(record_exists(f, SNAP_C));
	if (strstr(report, "\"warnings\": []") == NULL)
		fail_msg("warnings with every key in the keyring:\n%s", report);
	free(report);
}

/*
 * The other side of a rotation: the keyring holds only the new key, and
 * the old full P (sealed to the old key) is days old.  --retain-full 2
 * keeps both fulls when every key is in the keyring; with the old key
 * missing, P does not count, yet it may well restore (with that key): it
 * is not an abandoned snapshot to remove, nor is the WAL it needs.  The
 * run keeps them, names P and the key, and once the key is in the keyring
 * the policy decides as usual.
 */
static void
test_expire_old_key_missing_keeps_snapshot(void **state)
{
	WalFixture *f = *state;
	BkKey old_key = f->key;
	BkKey new_key;
	BkKeyring new_only;
	char old_id[BK_KEY_ID_HEX_LEN + 1];
	char expected[256];
	int status;
	char *report;

	for (uint64_t segno = 1; segno <= 4; segno++)
		archive_segment(f, 1, segno);
	archive_snapshot(f, SNAP_P, "full", NULL, 1, "0/1000028", "0/1800000", 1,
					 1);
	test_age_snapshot(f->location, SOURCE, SNAP_P, 72);
	/* The rotation: the WAL and the snapshot after it, to the new key. */
	test_key(&new_key, &new_only);
	f->key = new_key;
	for (uint64_t segno = 5; segno <= 7; segno++)
		archive_segment(f, 1, segno);
	archive_snapshot(f, SNAP_K, "full", NULL, 1, "0/5000028", "0/5800000", 1,
					 1);
	f->key = old_key;
	bk_key_id_hex(old_key.id, old_id);

	report = expire_keyed_report(f, &new_only, 2, &status);
	assert_int_equal(status, 0);
	if (!record_exists(f, SNAP_P) || !segment_exists(f, 1, 1))
		fail_msg("snapshot " SNAP_P " or its WAL was removed:\n%s", report);
	assert_true(record_exists(f, SNAP_K));
	snprintf(expected, sizeof(expected),
			 "is sealed to key %s, which is not "
			 "in the keyring",
			 old_id);
	if (strstr(report, "snapshot " SNAP_P " does not count as restorable") ==
			NULL ||
		strstr(report, expected) == NULL ||
		strstr(report, "add it to the keyring") == NULL)
		fail_msg("the report does not say why:\n%s", report);
	free(report);
}

static void
test_expire_keeps_parent_of_newer(void **state)
{
	WalFixture *f = *state;
	BkSnapshotCatalog catalog;
	BkError err;

	archive_restored_timeline(f);
	archive_snapshot(f, SNAP_C, "incr", SNAP_P, 2, "0/4000028", "0/4800000", 1,
					 1);
	assert_true(
		bk_snapshot_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_int_equal(catalog.count, 3);
	for (int snapIdx = 0; snapIdx < catalog.count; snapIdx++)
		assert_true(catalog.snapshots[snapIdx].restorable);
	bk_snapshot_catalog_free(&catalog);

	assert_int_equal(expire(f, 1, 0), 0);
	assert_true(record_exists(f, SNAP_K));
	assert_true(record_exists(f, SNAP_C));
	assert_true(record_exists(f, SNAP_P));
	assert_true(segment_exists(f, 1, 1));
	assert_true(segment_exists(f, 2, 3));
	assert_true(
		bk_snapshot_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_true(catalog.snapshots[bk_snapshot_catalog_find(&catalog, SNAP_C)]
					.restorable);
	bk_snapshot_catalog_free(&catalog);
}

/*
 * Segment 2, in P's own WAL (P ends at 0/2800000), was never archived: P is
 * not restorable, but C, built on it, is (recovery of C starts at C's
 * start, and C holds every page changed since P's start).  It was refused
 * as "its parent is not restorable" before.
 */
static void
test_child_of_parent_without_wal(void **state)
{
	WalFixture *f = *state;
	BkSnapshotCatalog catalog;
	const BkSnapshot *p;
	const BkSnapshot *c;
	BkError err;

	archive_segment(f, 1, 1);
	for (uint64_t segno = 3; segno <= 5; segno++)
		archive_segment(f, 1, segno);
	archive_snapshot(f, SNAP_P, "full", NULL, 1, "0/1000028", "0/2800000", 1,
					 1);
	archive_snapshot(f, SNAP_C, "incr", SNAP_P, 1, "0/4000028", "0/4800000", 1,
					 1);
	assert_true(
		bk_snapshot_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	p = &catalog.snapshots[bk_snapshot_catalog_find(&catalog, SNAP_P)];
	c = &catalog.snapshots[bk_snapshot_catalog_find(&catalog, SNAP_C)];
	assert_false(p->restorable);
	assert_int_equal(p->problem, BK_SNAP_WAL_MISSING);
	assert_true(c->restorable);
	bk_snapshot_catalog_free(&catalog);

	/* And bk expire keeps P for it. */
	assert_int_equal(expire(f, 1, 0), 0);
	assert_true(record_exists(f, SNAP_P));
	assert_true(record_exists(f, SNAP_C));
}

/*
 * The same for a snapshot: bk expire removes its record, then its
 * objects, between verify's listing of the snapshot and its reads.  A
 * note; but an object missing from a snapshot whose record is still there
 * stays a problem.
 */
static char vanish_record[1024];

static bool
list_then_remove_snapshot(const BkRepo *repo, const char *prefix,
						  bool recursive, BkRepoListFn fn, void *arg,
						  BkError *err)
{
	bool ok = listing_backend->list(repo, prefix, recursive, fn, arg, err);

	if (strstr(prefix, "/snapshot/" SNAP_P) != NULL &&
		--vanish_after_listings == 0)
	{
		if (vanish_record[0])
			unlink(vanish_record);
		unlink(vanish_path);
	}
	return ok;
}

static void
verify_snapshot_removing(WalFixture *f, bool with_record, uint64_t *problems,
						 char **notes)
{
	BkRepoBackend removing;
	BkVerifier verifier;
	char snapshot_dir[1024];
	BkError err;

	/* What the run before left of it goes first. */
	snprintf(snapshot_dir, sizeof(snapshot_dir),
			 "%s/" SOURCE "/snapshot/" SNAP_P, f->location);
	assert_true(bk_remove_tree(snapshot_dir, &err));
	archive_snapshot_record(
		f, SNAP_P, "full", NULL, 1, "0/1000028", "0/1800000", 0, 0,
		"{\"format\":3,\"snapshot\":\"" SNAP_P "\",\"kind\":\"full\","
		"\"start_lsn\":\"0/1000028\",\"stop_lsn\":\"0/1800000\","
		"\"start_timeline\":1,\"stop_timeline\":1,"
		"\"system_identifier\":\"7441\",\"pg_version\":150020,"
		"\"block_size\":8192,\"data_checksums\":true,"
		"\"tablespaces\":[],\"directories\":[],\"files\":[],"
		"\"bytes_read\":0,\"bytes_sent\":0,\"checksum_failures\":[]}");
	snprintf(vanish_path, sizeof(vanish_path),
			 "%s/" SOURCE "/snapshot/" SNAP_P "/" BK_SNAPSHOT_LABEL,
			 f->location);
	snprintf(vanish_record, sizeof(vanish_record),
			 "%s/" SOURCE "/snapshot/" SNAP_P "/" BK_SNAPSHOT_RECORD,
			 with_record ? "" : f->location);
	if (with_record)
		vanish_record[0] = '\0';
	/* The second listing of the snapshot is the one its reads follow. */
	vanish_after_listings = 2;
	verifier_open(&verifier, &f->ring);
	listing_backend = f->repo->backend;
	removing = *listing_backend;
	removing.list = list_then_remove_snapshot;
	f->repo->backend = &removing;
	assert_true(bk_pg_verify(&verifier, f->repo, SOURCE, &err));
	f->repo->backend = listing_backend;
	assert_int_not_equal(access(vanish_path, F_OK), 0);
	*problems = verifier.problems;
	*notes = json_dumps(verifier.note_list, 0);
	verifier_close(&verifier);
}

static void
test_verify_snapshot_removed_meanwhile(void **state)
{
	WalFixture *f = *state;
	uint64_t problems;
	char *notes;

	for (uint64_t segno = 1; segno <= 6; segno++)
		archive_segment(f, 1, segno);
	verify_snapshot_removing(f, false, &problems, &notes);
	assert_int_equal(problems, 0);
	assert_non_null(strstr(notes, "was removed while bk verify read it"));
	free(notes);

	/* Its record still there: the label's absence is damage. */
	verify_snapshot_removing(f, true, &problems, &notes);
	assert_true(problems > 0);
	assert_null(strstr(notes, "was removed while bk verify read it"));
	free(notes);
}

/*
 * A restore along timeline 1 from P (after timeline 2 branched off it) is
 * running when bk expire, keeping only the newer K on timeline 2, removes
 * P and every timeline 1 segment.  Timeline 1 is then known only from
 * timeline 2's history: the segment the recovery asks for next was
 * archived and removed, and must never read as the end of the archive.
 */
static void
test_expired_timeline_is_hole(void **state)
{
	WalFixture *f = *state;
	BkWalCatalog catalog;
	char why[256];
	BkError err;

	for (uint64_t segno = 1; segno <= 10; segno++)
		archive_segment(f, 1, segno);
	archive_history(f, 2, "1:0/3800000");
	for (uint64_t segno = 3; segno <= 20; segno++)
		archive_segment(f, 2, segno);
	archive_snapshot(f, SNAP_P, "full", NULL, 1, "0/5000028", "0/5800000", 1,
					 1);
	archive_snapshot(f, SNAP_K, "full", NULL, 2, "0/F000028", "0/F800000", 1,
					 1);
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	/* Timeline 1 past its last segment: the end, while it has segments. */
	assert_false(bk_wal_segment_is_hole(&catalog, 1, 11, why, sizeof(why)));
	bk_wal_catalog_free(&catalog);

	assert_int_equal(expire(f, 1, 0), 0);
	assert_false(record_exists(f, SNAP_P));
	assert_false(segment_exists(f, 1, 7));
	assert_false(segment_exists(f, 1, 10));
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_true(bk_wal_segment_is_hole(&catalog, 1, 7, why, sizeof(why)));
	assert_non_null(strstr(why, "bk expire removed it"));
	assert_true(bk_wal_segment_is_hole(&catalog, 1, 11, why, sizeof(why)));
	bk_wal_catalog_free(&catalog);

	/* Without bk expire's record (a repository expired by an older bk). */
	assert_true(bk_repo_delete(f->repo, BK_REPO_EXPIRED, SOURCE, BK_KIND_WAL,
							   "00000001000000000000000A", &err));
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_true(bk_wal_segment_is_hole(&catalog, 1, 7, why, sizeof(why)));
	assert_non_null(strstr(why, "no segment left"));
	assert_true(bk_wal_segment_is_hole(&catalog, 1, 11, why, sizeof(why)));
	/* Timeline 2 past its end is still the end. */
	assert_false(bk_wal_segment_is_hole(&catalog, 2, 21, why, sizeof(why)));
	bk_wal_catalog_free(&catalog);
}

/*
 * Two snapshots started within one second: their ids sort by their random
 * suffixes, while the extension takes the newest by its exact start time
 * as the next parent.  The catalog (bk list, bk expire's next parents, bk
 * restore's newest) orders them by the records' start times; one whose
 * record is not there yet comes after.
 */
static void
test_catalog_order_within_second(void **state)
{
	WalFixture *f = *state;
	BkSnapshotCatalog catalog;
	BkError err;

	for (uint64_t segno = 1; segno <= 6; segno++)
		archive_segment(f, 1, segno);
	f->start_time = "2026-11-01T00:00:00.100Z";
	archive_snapshot(f, "20261101T000000Z-ffffffff", "full", NULL, 1,
					 "0/1000028", "0/1800000", 1, 1);
	f->start_time = "2026-11-01T00:00:00.600Z";
	archive_snapshot(f, "20261101T000000Z-00000001", "full", NULL, 1,
					 "0/2000028", "0/2800000", 1, 1);
	/* Still being taken: no record yet. */
	archive_snapshot(f, "20261101T000000Z-00000000", NULL, NULL, 1, NULL, NULL,
					 1, 1);
	archive_snapshot(f, "20261031T235959Z-fffffffe", "full", NULL, 1,
					 "0/1000028", "0/1800000", 1, 1);
	assert_true(
		bk_snapshot_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_int_equal(catalog.count, 4);
	assert_string_equal(catalog.snapshots[0].id, "20261031T235959Z-fffffffe");
	assert_string_equal(catalog.snapshots[1].id, "20261101T000000Z-ffffffff");
	assert_string_equal(catalog.snapshots[2].id, "20261101T000000Z-00000001");
	assert_string_equal(catalog.snapshots[3].id, "20261101T000000Z-00000000");
	bk_snapshot_catalog_free(&catalog);
}

/* A full snapshot taken from database (history-database), or NULL. */
static void
archive_full_from(WalFixture *f, const char *id, const char *database,
				  const char *start_lsn, const char *stop_lsn)
{
	f->history_database = database;
	archive_snapshot(f, id, "full", NULL, 1, start_lsn, stop_lsn, 1, 1);
}

/*
 * The extension installed in two databases of one cluster: each keeps its
 * own history, so A's next diff or incr takes A's newest full as its
 * parent although B took a newer one.  --retain-full 1 keeps B's (the
 * newest) and must keep A's too, or A's next snapshots name a parent that
 * is gone.  Records say which history they belong to (history-database).
 */
static void
test_expire_keeps_next_parent_per_database(void **state)
{
	WalFixture *f = *state;

	for (uint64_t segno = 1; segno <= 6; segno++)
		archive_segment(f, 1, segno);
	archive_full_from(f, SNAP_P, "16384", "0/1000028", "0/1800000");
	archive_full_from(f, SNAP_K, "16385", "0/3000028", "0/3800000");
	assert_int_equal(expire(f, 1, 0), 0);
	assert_true(record_exists(f, SNAP_K));
	assert_true(record_exists(f, SNAP_P));

	/* From one database, the older full goes as before. */
	archive_full_from(f, SNAP_C, "16384", "0/5000028", "0/5800000");
	assert_int_equal(expire(f, 1, 0), 0);
	assert_false(record_exists(f, SNAP_P));
	assert_true(record_exists(f, SNAP_K));
	assert_true(record_exists(f, SNAP_C));
}

/*
 * Records older than history-database next to new ones.  With one
 * database named, they are of its history: the newest of all is its next
 * parent, and an older full goes as before (nothing kept for good).  With
 * two named, which history they belong to is unknown: the newest of them
 * is kept too.
 */
static void
test_expire_next_parent_unnamed_records(void **state)
{
	WalFixture *f = *state;

	for (uint64_t segno = 1; segno <= 6; segno++)
		archive_segment(f, 1, segno);
	archive_full_from(f, SNAP_P, NULL, "0/1000028", "0/1800000");
	archive_full_from(f, SNAP_K, "16384", "0/3000028", "0/3800000");
	assert_int_equal(expire(f, 1, 0), 0);
	assert_false(record_exists(f, SNAP_P));
	assert_true(record_exists(f, SNAP_K));

	/* The same unnamed full again, and a second database's. */
	archive_full_from(f, SNAP_P, NULL, "0/1000028", "0/1800000");
	archive_full_from(f, SNAP_C, "16385", "0/5000028", "0/5800000");
	assert_int_equal(expire(f, 1, 0), 0);
	assert_true(record_exists(f, SNAP_P));
	assert_true(record_exists(f, SNAP_K));
	assert_true(record_exists(f, SNAP_C));
}

/*
 * test_expire_keeps_parent_of_newer's case with C still arriving: its
 * record is there, a data object not.
 */
static void
test_expire_keeps_parent_of_arriving(void **state)
{
	WalFixture *f = *state;

	archive_restored_timeline(f);
	archive_snapshot(f, SNAP_C, "incr", SNAP_P, 2, "0/4000028", "0/4800000", 2,
					 1);
	assert_int_equal(expire(f, 1, 0), 0);
	assert_true(record_exists(f, SNAP_C));
	assert_true(record_exists(f, SNAP_P));
	assert_true(segment_exists(f, 1, 1));
}

/*
 * Without C: the source's timeline (2) branched off before K ended, so
 * only P restores it.  K is the newest full, and ends before the window of
 * one day (the records say 2020), like P: P must stay either way.
 */
static void
test_expire_keeps_full_of_current_timeline(void **state)
{
	WalFixture *f = *state;

	archive_restored_timeline(f);
	assert_int_equal(expire(f, 1, 0), 0);
	assert_true(record_exists(f, SNAP_K));
	assert_true(record_exists(f, SNAP_P));
	assert_true(segment_exists(f, 1, 1));
	assert_int_equal(expire(f, 0, 1), 0);
	assert_true(record_exists(f, SNAP_K));
	assert_true(record_exists(f, SNAP_P));
	assert_true(segment_exists(f, 1, 1));
}

/* Data objects of a snapshot still being taken: no record, label, map... */
static void
archive_arriving(WalFixture *f, const char *id, int present)
{
	char name[128];
	char meta[128];

	snprintf(meta, sizeof(meta), "snapshot=%s\nencoding=incremental", id);
	for (int objectIdx = 0; objectIdx < present; objectIdx++)
	{
		snprintf(name, sizeof(name), "%s/" BK_SNAPSHOT_DATA "/%06d", id,
				 objectIdx + 1);
		test_archive_object(f->repo, &f->key, &f->uploads, BK_KIND_SNAPSHOT,
							SOURCE, name, meta, (const uint8_t *) "data", 4);
	}
}

#define SNAP_F1 "20261101T000000Z-000000f1"
#define SNAP_F2 "20261102T000000Z-000000f2"
#define SNAP_X  "20261103T000000Z-0000000e"

/*
 * Fulls F1 and F2 on timeline 1; then a restore from F2 with --target
 * immediate made timeline 2 at F2's end.  The restored server's history
 * table stopped there, with F2 still running (marked failed when the
 * next snapshot starts), so the newest complete snapshot it knows is F1:
 * its next incremental snapshot, X, builds on F1.  While X arrives, its
 * record (sent last) is not there to say so.
 */
static void
archive_restored_immediate(WalFixture *f)
{
	for (uint64_t segno = 1; segno <= 6; segno++)
		archive_segment(f, 1, segno);
	archive_history(f, 2, "1:0/5800000");
	for (uint64_t segno = 5; segno <= 7; segno++)
		archive_segment(f, 2, segno);
	archive_snapshot(f, SNAP_F1, "full", NULL, 1, "0/1000028", "0/1800000", 1,
					 1);
	archive_snapshot(f, SNAP_F2, "full", NULL, 1, "0/5000028", "0/5800000", 1,
					 1);
}

/*
 * F1 stays, with its WAL, whatever the policy: X builds on it, as does
 * any diff or incr snapshot the source takes before one on timeline 2
 * completes, so before X sent anything too.
 */
static void
test_expire_keeps_parent_the_source_may_name(void **state)
{
	WalFixture *f = *state;

	archive_restored_immediate(f);
	assert_int_equal(expire(f, 1, 0), 0);
	assert_true(record_exists(f, SNAP_F1));
	archive_arriving(f, SNAP_X, 2);
	assert_int_equal(expire(f, 1, 0), 0);
	assert_true(record_exists(f, SNAP_F2));
	assert_true(record_exists(f, SNAP_F1));
	assert_true(segment_exists(f, 1, 1));
	assert_int_equal(expire(f, 0, 1), 0);
	assert_true(record_exists(f, SNAP_F1));
	assert_true(segment_exists(f, 1, 1));

	/* X arrived whole: its record names F1, which stays as its parent. */
	archive_snapshot(f, SNAP_X, "incr", SNAP_F1, 2, "0/6000028", "0/6800000", 2,
					 0);
	assert_int_equal(expire(f, 1, 0), 0);
	assert_true(record_exists(f, SNAP_F1));

	/*
	 * A full on timeline 2 is the newest complete snapshot the source
	 * knows: F1 is no longer a parent it may name, and goes with X.
	 */
	archive_snapshot(f, "20261104T000000Z-000000f3", "full", NULL, 2,
					 "0/7000028", "0/7800000", 1, 1);
	assert_int_equal(expire(f, 1, 0), 0);
	assert_false(record_exists(f, SNAP_X));
	assert_false(record_exists(f, SNAP_F1));
	assert_false(record_exists(f, SNAP_F2));
	assert_false(segment_exists(f, 1, 1));
}

/*
 * The source's clock stepped back nine days after full K: snapshot R,
 * started since, has an id older than K's.  While R's objects arrive, R
 * stays, and so does the WAL it may need (it has no start LSN yet); once
 * the store wrote none of them for a day, R was abandoned and goes.
 */
static void
test_expire_keeps_arriving_snapshot_with_older_id(void **state)
{
	WalFixture *f = *state;
	const char *snap_r = "20261101T000000Z-0000000c";
	char object[128];

	for (uint64_t segno = 1; segno <= 8; segno++)
		archive_segment(f, 1, segno);
	archive_snapshot(f, "20261110T000000Z-0000000b", "full", NULL, 1,
					 "0/5000028", "0/5800000", 1, 1);
	archive_arriving(f, snap_r, 2);
	snprintf(object, sizeof(object), "%s/" BK_SNAPSHOT_DATA "/000001", snap_r);

	assert_int_equal(expire(f, 1, 0), 0);
	assert_true(object_exists(f, BK_KIND_SNAPSHOT, object));
	assert_true(segment_exists(f, 1, 1));
	assert_int_equal(expire(f, 0, 1), 0);
	assert_true(object_exists(f, BK_KIND_SNAPSHOT, object));

	test_age_snapshot(f->location, SOURCE, snap_r, 25);
	assert_int_equal(expire(f, 1, 0), 0);
	assert_false(object_exists(f, BK_KIND_SNAPSHOT, object));
	assert_false(segment_exists(f, 1, 4));
	assert_true(segment_exists(f, 1, 5));
}

/*
 * A MariaDB server archives snapshots under this PostgreSQL source's id
 * (source_id set alike by mistake): its record, without start-lsn, looks
 * like no record at all, and a day after its last object such a snapshot
 * was removed as abandoned.  It is another engine's: bk expire leaves it.
 */
static void
test_expire_keeps_other_engine(void **state)
{
	WalFixture *f = *state;
	const char *other = "20261101T000000Z-0000000d";
	char name[128];

	for (uint64_t segno = 1; segno <= 8; segno++)
		archive_segment(f, 1, segno);
	archive_snapshot(f, "20261110T000000Z-0000000b", "full", NULL, 1,
					 "0/5000028", "0/5800000", 1, 1);
	snprintf(name, sizeof(name), "%s/" BK_SNAPSHOT_RECORD, other);
	test_archive_object(f->repo, &f->key, &f->uploads, BK_KIND_SNAPSHOT, SOURCE,
						name,
						"snapshot=20261101T000000Z-0000000d\nengine=mariadb\n"
						"type=record\nobjects=0\nbinlog-file=mariadb-bin."
						"000001\nbinlog-pos=4",
						(const uint8_t *) "{}", 2);
	test_age_snapshot(f->location, SOURCE, other, 48);

	assert_int_equal(expire(f, 1, 0), 0);
	assert_true(record_exists(f, other));
	assert_false(segment_exists(f, 1, 4));
	assert_true(segment_exists(f, 1, 5));
}

/*
 * A second cluster archives under the same source id (bk.source_id set
 * alike on both): its WAL is now the newest, so the first cluster's
 * snapshots are conflicts, not restorable, and its snapshot is.  Neither
 * cluster's snapshots, nor the WAL they need, are bk expire's to remove.
 */
static void
test_expire_keeps_other_system(void **state)
{
	WalFixture *f = *state;
	BkSnapshotCatalog catalog;
	BkError err;

	archive_restored_timeline(f);
	archive_snapshot(f, "20261102T120000Z-0000000e", "incr", SNAP_K, 1,
					 "0/6000028", "0/6800000", 1, 1);
	f->system = "9999";
	for (uint64_t segno = 7; segno <= 9; segno++)
		archive_segment(f, 2, segno);
	archive_snapshot(f, "20261104T000000Z-0000000d", "full", NULL, 2,
					 "0/8000028", "0/8800000", 1, 1);
	f->system = NULL;
	assert_true(
		bk_snapshot_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_int_equal(catalog.snapshots[0].problem, BK_SNAP_CONFLICT);
	assert_true(catalog.snapshots[3].restorable);
	bk_snapshot_catalog_free(&catalog);

	assert_int_equal(expire(f, 1, 0), 0);
	assert_true(record_exists(f, SNAP_P));
	assert_true(record_exists(f, SNAP_K));
	assert_true(record_exists(f, "20261102T120000Z-0000000e"));
	assert_true(segment_exists(f, 1, 1));
	assert_true(segment_exists(f, 1, 5));
}

/*
 * Expire stopped part way (here: removing I fails): what it removed must
 * not be what a snapshot left behind builds on.  I on F, both expired for
 * the newer full G: I goes first, so F is still whole when expire stops.
 */
static void
expire_dependents_first(WalFixture *f, const char *snap_f, const char *snap_i,
						const char *snap_g)
{
	int status;

	for (uint64_t segno = 1; segno <= 6; segno++)
		archive_segment(f, 1, segno);
	archive_snapshot(f, snap_f, "full", NULL, 1, "0/1000028", "0/1800000", 1,
					 1);
	archive_snapshot(f, snap_i, "incr", snap_f, 1, "0/3000028", "0/3800000", 1,
					 1);
	archive_snapshot(f, snap_g, "full", NULL, 1, "0/5000028", "0/5800000", 1,
					 1);
	test_repo_faults(f->repo, TEST_FAIL_DELETES, snap_i);
	status = expire(f, 1, 0);
	test_repo_faults_end(f->repo);
	assert_int_not_equal(status, 0);
	assert_true(record_exists(f, snap_i));
	assert_true(record_exists(f, snap_f));
	assert_true(segment_exists(f, 1, 1));

	/* Run again, it finishes. */
	assert_int_equal(expire(f, 1, 0), 0);
	assert_false(record_exists(f, snap_i));
	assert_false(record_exists(f, snap_f));
	assert_false(segment_exists(f, 1, 4));
	assert_true(segment_exists(f, 1, 5));
}

static void
test_expire_removes_dependents_first(void **state)
{
	expire_dependents_first(*state, "20261101T000000Z-0000000f",
							"20261102T000000Z-0000000a",
							"20261103T000000Z-0000000b");
}

/*
 * The same after the source's clock stepped back: I's id sorts before its
 * parent F's, and F must still wait for I.
 */
static void
test_expire_removes_dependents_first_clock_back(void **state)
{
	expire_dependents_first(*state, "20261102T000000Z-0000000f",
							"20261101T000000Z-0000000a",
							"20261103T000000Z-0000000b");
}

/*
 * Expire stopped part way through the WAL (removing segment 4 fails): what
 * is left before the kept snapshot's start runs on without a hole, oldest
 * gone first, so bk list and bk verify see an archive that starts later,
 * not a gap.
 */
static void
test_expire_removes_oldest_wal_first(void **state)
{
	WalFixture *f = *state;
	BkWalCatalog catalog;
	BkError err;
	int status;

	for (uint64_t segno = 1; segno <= 8; segno++)
		archive_segment(f, 1, segno);
	archive_snapshot(f, SNAP_K, "full", NULL, 1, "0/7000028", "0/7800000", 1,
					 1);
	test_repo_faults(f->repo, TEST_FAIL_DELETES, "000000010000000000000004");
	status = expire(f, 1, 0);
	test_repo_faults_end(f->repo);
	assert_int_not_equal(status, 0);
	for (uint64_t segno = 1; segno <= 8; segno++)
		assert_int_equal(segment_exists(f, 1, segno), segno >= 4);
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_int_equal(bk_wal_timeline(&catalog, 1)->gap_count, 0);
	bk_wal_catalog_free(&catalog);
}

/*
 * Two bk expire runs at once on one repository (two cron jobs, a cron job
 * and a manual run, hosts sharing a bucket).  Full F, incr I on it, fulls
 * G and H; --retain-full 1 keeps H, and F, I, G and the WAL before H's
 * start go.  The second run (B) runs whole while the first (A) loads its
 * catalog, between A's listing of a snapshot and its read of the record:
 * the record A listed is gone when read.  That is what another expire
 * did, not a repository that failed: A goes on, and both leave what the
 * policy keeps.
 */
#define SNAP_CF "20261101T000000Z-000000d1"
#define SNAP_CI "20261102T000000Z-000000d2"
#define SNAP_CG "20261103T000000Z-000000d3"
#define SNAP_CH "20261104T000000Z-000000d4"

static const BkRepoBackend *beside_backend;
static BkRepoBackend beside_hooked;
static const char *beside_prefix; /* B runs after this listing ... */
static const char *beside_delete; /* ... or after this removal */
static atomic_bool beside_fired;
static BkRetention beside_policy;
static int beside_status;
static WalFixture *beside_fixture;

static void
run_beside(void)
{
	BkError err;

	beside_status = bk_pg_expire("bk expire (beside)", beside_fixture->repo,
								 SOURCE, &beside_policy, &err);
}

static bool
list_then_expire(const BkRepo *repo, const char *prefix, bool recursive,
				 BkRepoListFn fn, void *arg, BkError *err)
{
	bool ok = beside_backend->list(repo, prefix, recursive, fn, arg, err);

	if (beside_prefix != NULL && strstr(prefix, beside_prefix) != NULL &&
		!atomic_exchange(&beside_fired, true))
		run_beside();
	return ok;
}

static bool
delete_then_expire(BkRepo *repo, const char *key, BkError *err)
{
	bool ok = beside_backend->delete (repo, key, err);

	if (beside_delete != NULL && strstr(key, beside_delete) != NULL &&
		!atomic_exchange(&beside_fired, true))
		run_beside();
	return ok;
}

/* The record is gone when A opens it; the store says so its own way. */
static BkRepoReader *
open_removed(const BkRepo *repo, const char *key, BkError *err)
{
	char path[1200];

	if (beside_prefix == NULL || strstr(key, beside_prefix) == NULL ||
		strstr(key, BK_SNAPSHOT_RECORD) == NULL)
		return beside_backend->reader_open(repo, key, err);
	snprintf(path, sizeof(path), "%s/%s", beside_fixture->location, key);
	assert_int_equal(unlink(path), 0);
	bk_error_set(err, BK_ERR_STORE, "GET %s: HTTP 503 SlowDown", key);
	return NULL;
}

static void
archive_beside_fixture(WalFixture *f)
{
	for (uint64_t segno = 1; segno <= 8; segno++)
		archive_segment(f, 1, segno);
	archive_snapshot(f, SNAP_CF, "full", NULL, 1, "0/1000028", "0/1800000", 1,
					 1);
	archive_snapshot(f, SNAP_CI, "incr", SNAP_CF, 1, "0/3000028", "0/3800000",
					 1, 1);
	archive_snapshot(f, SNAP_CG, "full", NULL, 1, "0/5000028", "0/5800000", 1,
					 1);
	archive_snapshot(f, SNAP_CH, "full", NULL, 1, "0/7000028", "0/7800000", 1,
					 1);
	test_age_snapshot(f->location, SOURCE, SNAP_CF, 48);
	test_age_snapshot(f->location, SOURCE, SNAP_CI, 48);
	test_age_snapshot(f->location, SOURCE, SNAP_CG, 48);
}

/*
 * bk expire (A, dry_run or not) with B (dry_run or not) run once where
 * the hooks say; A's exit status.
 */
static int
expire_beside(WalFixture *f, bool a_dry_run, bool b_dry_run,
			  const char *after_listing, const char *after_delete,
			  bool open_gone)
{
	BkRetention policy = {.retain_full = 1, .dry_run = a_dry_run};
	int saved;
	int status;
	BkError err;

	beside_fixture = f;
	beside_policy = (BkRetention){.retain_full = 1, .dry_run = b_dry_run};
	beside_prefix = after_listing;
	beside_delete = after_delete;
	beside_status = -1;
	atomic_store(&beside_fired, open_gone);
	beside_backend = f->repo->backend;
	beside_hooked = *beside_backend;
	beside_hooked.list = list_then_expire;
	beside_hooked.delete = delete_then_expire;
	if (open_gone)
		beside_hooked.reader_open = open_removed;
	f->repo->backend = &beside_hooked;
	saved = test_stdout_quiet();
	status = bk_pg_expire("bk expire", f->repo, SOURCE, &policy, &err);
	test_stdout_restore(saved);
	f->repo->backend = beside_backend;
	if (status != 0)
		print_message("# bk expire: %s\n", err.message);
	return status;
}

/* What --retain-full 1 leaves of archive_beside_fixture's. */
static void
assert_expired_beside(WalFixture *f)
{
	assert_false(record_exists(f, SNAP_CF));
	assert_false(record_exists(f, SNAP_CI));
	assert_false(record_exists(f, SNAP_CG));
	assert_true(record_exists(f, SNAP_CH));
	assert_false(object_exists(f, BK_KIND_SNAPSHOT,
							   SNAP_CF "/" BK_SNAPSHOT_DATA "/000001"));
	assert_false(segment_exists(f, 1, 6));
	assert_true(segment_exists(f, 1, 7));
	assert_true(segment_exists(f, 1, 8));
}

static void
test_expire_record_gone_when_read(void **state)
{
	WalFixture *f = *state;

	archive_beside_fixture(f);
	assert_int_equal(
		expire_beside(f, false, false, "/snapshot/" SNAP_CI "/", NULL, false),
		0);
	assert_int_equal(beside_status, 0);
	assert_expired_beside(f);
}

/* A dry run beside a run that removes: A says, B removes, neither fails. */
static void
test_expire_dry_run_record_gone_when_read(void **state)
{
	WalFixture *f = *state;

	archive_beside_fixture(f);
	assert_int_equal(
		expire_beside(f, true, false, "/snapshot/" SNAP_CI "/", NULL, false),
		0);
	assert_int_equal(beside_status, 0);
	assert_expired_beside(f);
}

/* B starts while A removes: after A removed G's record. */
static void
test_expire_beside_removal(void **state)
{
	WalFixture *f = *state;

	archive_beside_fixture(f);
	assert_int_equal(expire_beside(f, false, false, NULL,
								   SNAP_CG "/" BK_SNAPSHOT_RECORD, false),
					 0);
	assert_int_equal(beside_status, 0);
	assert_expired_beside(f);
}

/*
 * A store may answer the read of an object removed meanwhile with an
 * error of its own rather than "no such object": it is gone when looked
 * up (and listed), and counts as gone.  One still
 * there when the read fails is test_expire_unreadable_record_removes_
 * nothing's: the run stops.
 */
static void
test_expire_record_gone_store_error(void **state)
{
	WalFixture *f = *state;

	archive_beside_fixture(f);
	assert_int_equal(
		expire_beside(f, false, false, "/snapshot/" SNAP_CI "/", NULL, true),
		0);
	assert_expired_beside(f);
}

/* Opens of G's record so far; the second (expire's decrypting it) finds it
 * removed, as another bk expire would have. */
static int record_opens;

static BkRepoReader *
open_removed_second(const BkRepo *repo, const char *key, BkError *err)
{
	char path[1200];

	if (strstr(key, SNAP_CG "/" BK_SNAPSHOT_RECORD) != NULL &&
		++record_opens == 2)
	{
		snprintf(path, sizeof(path), "%s/%s", beside_fixture->location, key);
		assert_int_equal(unlink(path), 0);
	}
	return beside_backend->reader_open(repo, key, err);
}

/*
 * With the keyring, expire decrypts each record after the catalog read its
 * metadata: one removed in between (by another bk expire) is gone, as when
 * the catalog finds it so, not a record that fails authentication.  The
 * run goes on, and warns of nothing.
 */
static void
test_expire_keyed_record_gone_when_decrypted(void **state)
{
	WalFixture *f = *state;
	int status;
	char *report;

	archive_beside_fixture(f);
	beside_fixture = f;
	record_opens = 0;
	beside_backend = f->repo->backend;
	beside_hooked = *beside_backend;
	beside_hooked.reader_open = open_removed_second;
	f->repo->backend = &beside_hooked;
	report = expire_keyed_report(f, &f->ring, 1, &status);
	f->repo->backend = beside_backend;
	assert_int_equal(status, 0);
	assert_int_equal(record_opens, 2);
	assert_expired_beside(f);
	if (strstr(report, "\"warnings\": []") == NULL ||
		strstr(report, "\"authenticated\": false") != NULL)
		fail_msg("a record removed meanwhile taken for an unauthentic one:\n%s",
				 report);
	free(report);
}

/*
 * The store says "no such object" of the newest full's record, which it
 * still holds and lists (a store whose reads lag its listings, a proxy's
 * passing 404).  Taken for a record another expire removed, that full
 * would count as one without a record, older than the policy keeps: it
 * would go, and with it what the policy keeps to restore.  A new listing
 * still has the record: the run stops, saying so, and removes nothing.
 */
static void
test_expire_record_not_found_still_listed(void **state)
{
	WalFixture *f = *state;
	BkRetention policy = {.retain_full = 1};
	char record[128];
	int saved;
	int status;
	BkError err;

	archive_beside_fixture(f);
	test_age_snapshot(f->location, SOURCE, SNAP_CH, 48);
	snprintf(record, sizeof(record), "%s/" BK_SNAPSHOT_RECORD, SNAP_CH);
	test_repo_faults(f->repo, TEST_READS_NOT_FOUND, record);
	saved = test_stdout_quiet();
	status = bk_pg_expire("bk expire", f->repo, SOURCE, &policy, &err);
	test_stdout_restore(saved);
	test_repo_faults_end(f->repo);
	assert_int_equal(status, BK_EXIT_UNAVAILABLE);
	assert_error_contains(&err, "nothing removed: snapshot " SNAP_CH);
	assert_error_contains(&err, "still lists it");
	assert_true(record_exists(f, SNAP_CF));
	assert_true(record_exists(f, SNAP_CI));
	assert_true(record_exists(f, SNAP_CG));
	assert_true(record_exists(f, SNAP_CH));
	assert_true(segment_exists(f, 1, 1));

	/* Read as it is: what the policy keeps. */
	assert_int_equal(expire(f, 1, 0), 0);
	assert_expired_beside(f);
}

/*
 * The same with two processes, as two cron jobs run: both start at once,
 * on a directory repository, round after round.  Neither may fail over
 * what the other removed (a record, a snapshot's directory half emptied,
 * a WAL segment), and together they leave what the policy keeps.
 */
#define BESIDE_ROUNDS 40

static pid_t
fork_expire(WalFixture *f, int start_fd)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
	{
		BkRetention policy = {.retain_full = 1};
		char go;
		BkError err;
		int quiet = open("/dev/null", O_WRONLY);

		dup2(quiet, STDOUT_FILENO);
		/* Both wait for the same byte, so that they start together. */
		if (read(start_fd, &go, 1) != 1)
			_exit(99);
		_exit(bk_pg_expire("bk expire", f->repo, SOURCE, &policy, &err));
	}
	return pid;
}

static void
test_expire_two_processes(void **state)
{
	(void) state;
	for (int round = 0; round < BESIDE_ROUNDS; round++)
	{
		void *fixture;
		WalFixture *f;
		int start[2];
		pid_t pids[2];

		wal_setup(&fixture);
		f = fixture;
		for (uint64_t segno = 1; segno <= 8; segno++)
			archive_segment(f, 1, segno);
		archive_snapshot(f, SNAP_CF, "full", NULL, 1, "0/1000028", "0/1800000",
						 24, 24);
		archive_snapshot(f, SNAP_CI, "incr", SNAP_CF, 1, "0/3000028",
						 "0/3800000", 24, 24);
		archive_snapshot(f, SNAP_CG, "full", NULL, 1, "0/5000028", "0/5800000",
						 24, 24);
		archive_snapshot(f, SNAP_CH, "full", NULL, 1, "0/7000028", "0/7800000",
						 1, 1);
		assert_int_equal(pipe(start), 0);
		fflush(NULL);
		for (int run = 0; run < 2; run++)
			pids[run] = fork_expire(f, start[0]);
		assert_int_equal(write(start[1], "gg", 2), 2);
		close(start[0]);
		close(start[1]);
		for (int run = 0; run < 2; run++)
		{
			int status;

			assert_int_equal(waitpid(pids[run], &status, 0), pids[run]);
			assert_true(WIFEXITED(status));
			if (WEXITSTATUS(status) != 0)
				fail_msg("round %d: bk expire %d exited with %d", round, run,
						 WEXITSTATUS(status));
		}
		assert_expired_beside(f);
		wal_teardown(&fixture);
	}
}

/*
 * Fulls F1 and F2, --retain-full 2 keeps both.  Reading F1's record fails
 * (an I/O error, a store that does not answer): that says nothing of F1,
 * so expire must not take F1 for a snapshot without a record, older than
 * the one kept, and remove it with the WAL from its start.  It fails,
 * naming the record, and removes nothing.
 */
static void
test_expire_unreadable_record_removes_nothing(void **state)
{
	WalFixture *f = *state;
	char record[128];
	int status;

	for (uint64_t segno = 1; segno <= 6; segno++)
		archive_segment(f, 1, segno);
	archive_snapshot(f, SNAP_F1, "full", NULL, 1, "0/1000028", "0/1800000", 1,
					 1);
	archive_snapshot(f, SNAP_F2, "full", NULL, 1, "0/5000028", "0/5800000", 1,
					 1);
	test_age_snapshot(f->location, SOURCE, SNAP_F1, 25);
	snprintf(record, sizeof(record), "%s/" BK_SNAPSHOT_RECORD, SNAP_F1);
	test_repo_faults(f->repo, TEST_FAIL_READS, record);
	status = expire(f, 2, 0);
	test_repo_faults_end(f->repo);
	assert_int_not_equal(status, 0);
	assert_true(record_exists(f, SNAP_F1));
	assert_true(segment_exists(f, 1, 1));

	/* Readable again: both fulls stay, as the policy says. */
	assert_int_equal(expire(f, 2, 0), 0);
	assert_true(record_exists(f, SNAP_F1));
	assert_true(record_exists(f, SNAP_F2));
	assert_true(segment_exists(f, 1, 1));
}

/*
 * Fulls P, K1 and K2 on timeline 1; a restore from P to 0/3800000 made
 * timeline 2, whose history file was archived without its branch points
 * (the source could not parse it, or they did not fit), and expire has no
 * key to read it: which fulls timeline 2 passes through is unknown.  Only
 * P restores it, with timeline 1's WAL from its start and timeline 2's.
 * Unknown must not read as "every full is on it": expire keeps P, or
 * removes nothing, under either policy.
 */
#define SNAP_OLD "20261031T000000Z-00000001"

static void
test_expire_unknown_history_keeps_current_timeline(void **state)
{
	WalFixture *f = *state;
	BkRetention policy = {.retain_full = 1};
	const char *old_object = SNAP_OLD "/" BK_SNAPSHOT_DATA "/000001";
	BkError err;
	int saved;
	int status;

	for (uint64_t segno = 1; segno <= 7; segno++)
		archive_segment(f, 1, segno);
	archive_history_text(f, 2, "",
						 "1\t0/3800000\tbefore 2000-01-01 00:00:00+00\n");
	for (uint64_t segno = 3; segno <= 4; segno++)
		archive_segment(f, 2, segno);
	archive_snapshot(f, SNAP_P, "full", NULL, 1, "0/1000028", "0/1800000", 1,
					 1);
	archive_snapshot(f, SNAP_K, "full", NULL, 1, "0/5000028", "0/5800000", 1,
					 1);
	archive_snapshot(f, SNAP_C, "full", NULL, 1, "0/6000028", "0/6800000", 1,
					 1);
	archive_arriving(f, SNAP_OLD, 1); /* abandoned long ago */
	test_age_snapshot(f->location, SOURCE, SNAP_OLD, 25);
	assert_int_equal(expire(f, 1, 0), 0);
	assert_true(record_exists(f, SNAP_P));
	assert_true(object_exists(f, BK_KIND_SNAPSHOT, old_object));
	assert_true(segment_exists(f, 1, 1));
	assert_true(segment_exists(f, 2, 3));
	assert_int_equal(expire(f, 0, 1), 0);
	assert_true(record_exists(f, SNAP_P));
	assert_true(segment_exists(f, 1, 1));
	assert_true(segment_exists(f, 2, 3));

	/* With the key, bk reads the history file: P stays, as the one the
	 * source's timeline descends from, and the abandoned snapshot goes. */
	policy.decoder = bk_decoder_new(&f->ring, &err);
	assert_non_null(policy.decoder);
	saved = test_stdout_quiet();
	status = bk_pg_expire("bk expire", f->repo, SOURCE, &policy, &err);
	test_stdout_restore(saved);
	bk_decoder_free(policy.decoder);
	assert_int_equal(status, 0);
	assert_true(record_exists(f, SNAP_P));
	assert_true(record_exists(f, SNAP_C));
	assert_true(record_exists(f, SNAP_K)); /* newer than P */
	assert_false(object_exists(f, BK_KIND_SNAPSHOT, old_object));
	assert_true(segment_exists(f, 1, 1));
	assert_true(segment_exists(f, 2, 3));
}

/* ------------------------------------------------- object names of files */

static void
test_snapshot_path_encode(void **state)
{
	char out[64];

	(void) state;
	assert_true(bk_snapshot_path_encode("base/16384/2619", out, sizeof(out)));
	assert_string_equal(out, "base/16384/2619");
	/* A leading dot of any component: repositories hide those names. */
	assert_true(bk_snapshot_path_encode(".git/.x.y/a.b", out, sizeof(out)));
	assert_string_equal(out, "%2Egit/%2Ex.y/a.b");
	assert_true(bk_snapshot_path_encode("a b%c\\d\xc3\xa9", out, sizeof(out)));
	assert_string_equal(out, "a%20b%25c%5Cd%C3%A9");
	/* Exactly fits (with its NUL), one byte short. */
	assert_true(bk_snapshot_path_encode(".ab", out, 6));
	assert_string_equal(out, "%2Eab");
	assert_false(bk_snapshot_path_encode(".ab", out, 5));
	assert_false(bk_snapshot_path_encode(".", out, 3));
}

/*
 * bk wal-get FILE into the fixture's directory, as PostgreSQL runs it, with
 * --prefetch prefetch unless 0.
 */
static int
wal_get_prefetch(WalFixture *f, const char *file, bool with_key, int prefetch,
				 char *got, size_t got_len)
{
	char config[600];
	char key[600];
	char dest[600];
	char count[16];
	char *text = NULL;
	size_t len = 0;
	char *argv[] = {"bk",        "--config", config, "--repo",
					f->location, "--source", SOURCE, (char *) file,
					dest,        NULL,       NULL,   NULL,
					NULL,        NULL};
	int argc = 9;
	int status;
	BkError err;

	snprintf(config, sizeof(config), "%s/bk.conf", f->dir);
	snprintf(key, sizeof(key), "%s/key", f->dir);
	snprintf(dest, sizeof(dest), "%s/RECOVERYHISTORY", f->dir);
	if (access(config, F_OK) != 0)
	{
		assert_true(bk_write_file_durable(config, "", 0, 0600, &err));
		assert_true(bk_key_write_files(&f->key, key, &err));
	}
	if (with_key)
	{
		argv[argc++] = "--key-file";
		argv[argc++] = key;
	}
	if (prefetch > 0)
	{
		snprintf(count, sizeof(count), "%d", prefetch);
		argv[argc++] = "--prefetch";
		argv[argc++] = count;
	}
	unlink(dest);
	status = bk_cmd_wal_get(argc, argv);
	got[0] = '\0';
	if (bk_read_file(dest, 65536, &text, &len, &err))
		snprintf(got, got_len, "%.*s", (int) len, text);
	free(text);
	return status;
}

static int
wal_get(WalFixture *f, const char *file, bool with_key, char *got,
		size_t got_len)
{
	return wal_get_prefetch(f, file, with_key, 0, got, got_len);
}

/*
 * Wait (10 s at most) until no prefetcher holds the spool's lock, and
 * until spooled (if not NULL) is there.  The prefetcher is detached: give
 * it time to start.
 */
static void
wait_prefetcher(WalFixture *f, const char *spooled)
{
	char path[700];

	for (int tries = 0; spooled != NULL && access(spooled, F_OK) != 0; tries++)
	{
		if (tries == 1000)
			fail_msg("the prefetcher did not spool %s", spooled);
		usleep(10 * 1000);
	}
	usleep(100 * 1000);
	snprintf(path, sizeof(path), "%s/bk-prefetch/.lock", f->dir);
	for (int tries = 0; tries < 1000; tries++)
	{
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		bool free_now = fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0;

		if (fd >= 0)
			close(fd);
		if (free_now)
			return;
		usleep(10 * 1000);
	}
	fail_msg("the prefetcher did not finish");
}

/*
 * A segment spooled by --prefetch is served only if it was decrypted from
 * the object the archive holds now.  A copy left in the spool from before
 * (two conflicting copies, the archived one moved out and the other put in
 * its place, recovery restarted) has the same size, and serving it would
 * feed PostgreSQL the WAL of the copy the operator removed.
 */
static void
test_wal_prefetch_stale_spool(void **state)
{
	WalFixture *f = *state;
	char spool[700];
	char path[800];
	char name[32];
	char meta[256];
	char got[4096];
	BkError err;

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);

	/* Segment 1 is served; the prefetcher spools segment 2. */
	bk_wal_segment_name(1, 1, SEG_SIZE, name);
	assert_int_equal(wal_get_prefetch(f, name, true, 1, got, sizeof(got)), 0);
	assert_string_equal(got, "not really WAL");
	bk_wal_segment_name(1, 2, SEG_SIZE, name);
	snprintf(spool, sizeof(spool), "%s/bk-prefetch", f->dir);
	snprintf(path, sizeof(path), "%s/%s", spool, name);
	wait_prefetcher(f, path);
	/* ... and it is served from there (moved out of the spool). */
	assert_int_equal(wal_get_prefetch(f, name, true, 1, got, sizeof(got)), 0);
	assert_string_equal(got, "not really WAL");
	assert_int_not_equal(access(path, F_OK), 0);

	/*
	 * Segment 3 was spooled from the copy archived then; the operator
	 * replaces that copy with another of the same size.
	 */
	bk_wal_segment_name(1, 3, SEG_SIZE, name);
	snprintf(path, sizeof(path), "%s/%s", spool, name);
	wait_prefetcher(f, path);
	assert_true(bk_repo_delete(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_WAL,
							   name, &err));
	snprintf(meta, sizeof(meta),
			 "type=segment\ntimeline=1\nsegment-size=%u\n"
			 "system-identifier=7441\ncreated=2026-11-24T05:12:00.000Z",
			 SEG_SIZE);
	archive_content(f, name, meta, "the other copy");
	assert_int_equal(wal_get_prefetch(f, name, true, 1, got, sizeof(got)), 0);
	assert_string_equal(got, "the other copy");
	wait_prefetcher(f, NULL);
}

/*
 * stat() of a path ending in stat_miss_suffix fails with ENOENT the next
 * stat_misses times (linked with --wrap=stat): the directory backend's read
 * of one object says "absent" while its listing (lstat) has it, as when the
 * shipper commits the object in between, or a store's reads lag its
 * listings.
 */
static const char *stat_miss_suffix;
static int stat_misses;
extern int __real_stat(const char *path, struct stat *st);
extern int __wrap_stat(const char *path, struct stat *st);

int
__wrap_stat(const char *path, struct stat *st)
{
	size_t len = strlen(path);

	if (stat_misses > 0 && stat_miss_suffix != NULL &&
		len >= strlen(stat_miss_suffix) &&
		strcmp(path + len - strlen(stat_miss_suffix), stat_miss_suffix) == 0)
	{
		stat_misses--;
		errno = ENOENT;
		return -1;
	}
	return __real_stat(path, st);
}

/*
 * The newest segment is archived between wal-get's read and its listing:
 * "not found" (exit 1) would end recovery before WAL the archive holds.
 * It is served; and when the read keeps missing what the listing has,
 * wal-get stops (exit 200) naming the file, never exit 1.
 */
static void
test_wal_listed_but_not_read(void **state)
{
	WalFixture *f = *state;
	char name[32];
	char got[4096];

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	bk_wal_segment_name(1, 3, SEG_SIZE, name);
	stat_miss_suffix = name;
	stat_misses = 1;
	assert_int_equal(wal_get(f, name, true, got, sizeof(got)), 0);
	assert_string_equal(got, "not really WAL");
	assert_int_equal(stat_misses, 0);

	stat_misses = 2;
	assert_int_equal(wal_get(f, name, true, got, sizeof(got)), 200);
	assert_string_equal(got, "");
	stat_misses = 0;
	stat_miss_suffix = NULL;
}

/* 00000003.history of the two tests below: timeline 2 began in 0/48... */
static const char HISTORY3_AFTER_MISSING_2[] =
	"1\t0/4800000\tno recovery target specified\n"
	"\n"
	"2\t0/4900000\tno recovery target specified\n";

/*
 * Timeline 2's server died before archiving 00000002.history: timeline 3
 * branched off timeline 2 in the segment where timeline 2 began, so no
 * timeline 2 segment is archived either, and timeline 2 is known only from
 * 00000003.history.  PostgreSQL probes 00000002.history to resolve 'latest'
 * and to choose a timeline at promotion; "not found" would make it follow
 * timeline 1 and promote without timeline 3's WAL.
 */
static void
test_wal_missing_history(void **state)
{
	WalFixture *f = *state;
	const char *history3 = HISTORY3_AFTER_MISSING_2;
	BkWalCatalog catalog;
	const BkWalTimeline *tl2;
	BkWalPath path;
	char got[4096];
	BkError err;

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	archive_history_text(f, 3, "1:0/4800000,2:0/4900000", history3);
	for (uint64_t segno = 4; segno <= 6; segno++)
		archive_segment(f, 3, segno);
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	tl2 = bk_wal_timeline(&catalog, 2);
	assert_non_null(tl2);
	assert_false(tl2->has_history);
	assert_int_equal(tl2->segments, 0);
	assert_int_equal(bk_wal_history_descendant(&catalog, 2), 3);
	assert_int_equal(bk_wal_history_descendant(&catalog, 3), 0);
	assert_int_equal(bk_wal_history_descendant(&catalog, 4), 0);
	/* What bk restore checks: timeline 3 is reachable, nothing missing. */
	assert_int_equal(bk_wal_latest_timeline(&catalog), 3);
	bk_wal_path(&catalog, 1, 1, 3, BK_WAL_END, &path);
	assert_true(path.reachable);
	assert_int_equal(path.missing, 0);
	bk_wal_catalog_free(&catalog);

	/* wal-get serves timeline 2's history, rebuilt from timeline 3's. */
	assert_int_equal(wal_get(f, "00000002.history", true, got, sizeof(got)), 0);
	assert_string_equal(got, "1\t0/4800000\tno recovery target specified\n");
	/* The next free timeline, at promotion: still not found. */
	assert_int_equal(wal_get(f, "00000004.history", true, got, sizeof(got)), 1);
	/* Without the key it cannot be rebuilt: fatal, never "not found". */
	assert_int_equal(wal_get(f, "00000002.history", false, got, sizeof(got)),
					 200);
	assert_string_equal(got, "");
	/* An archived history is served as it is. */
	assert_int_equal(wal_get(f, "00000003.history", true, got, sizeof(got)), 0);
	assert_string_equal(got, history3);
}

/*
 * As above, but timeline 3's history cannot be read (archived without
 * branch points and no key, or its object unreadable): bk cannot tell
 * whether timeline 3 descends from timeline 2, so 00000002.history must
 * not be "not found", which would make PostgreSQL stop probing there and
 * promote without timeline 3.
 */
static void
test_wal_missing_history_unknown_descendant(void **state)
{
	WalFixture *f = *state;
	const char *history3 = HISTORY3_AFTER_MISSING_2;
	char path[1024];
	char got[4096];

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	archive_history_text(f, 3, "", history3);
	for (uint64_t segno = 4; segno <= 6; segno++)
		archive_segment(f, 3, segno);

	/* No branch-points metadata and no key: unknown, so fatal. */
	assert_int_equal(wal_get(f, "00000002.history", false, got, sizeof(got)),
					 200);
	/* With the key, bk reads the file and rebuilds timeline 2's. */
	assert_int_equal(wal_get(f, "00000002.history", true, got, sizeof(got)), 0);
	assert_string_equal(got, "1\t0/4800000\tno recovery target specified\n");

	/* The object is there but unreadable: fatal, never "not found". */
	snprintf(path, sizeof(path), "%s/%s/wal/00000003.history", f->location,
			 SOURCE);
	assert_int_equal(truncate(path, 10), 0);
	assert_int_equal(wal_get(f, "00000002.history", true, got, sizeof(got)),
					 200);
	/* A timeline after every known one is still free. */
	assert_int_equal(wal_get(f, "00000004.history", true, got, sizeof(got)), 1);
}

/*
 * Timeline 3's WAL is archived but no history file says where it branched
 * off (00000003.history still on its way to the repository, or lost), and
 * timeline 2 left nothing.  PostgreSQL, looking for the latest timeline,
 * asks for 00000002.history: "not found" would make it stop probing there
 * and recover along timeline 1 only, where 000000010000000000000004 "not
 * found" would end recovery without timeline 3's WAL.  Both are fatal.
 * The same for a timeline whose only trace is a .partial.
 */
static void
test_wal_later_timeline_without_history(void **state)
{
	WalFixture *f = *state;
	char got[4096];
	char meta[256];

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	for (uint64_t segno = 4; segno <= 6; segno++)
		archive_segment(f, 3, segno);

	assert_int_equal(wal_get(f, "00000002.history", true, got, sizeof(got)),
					 200);
	assert_int_equal(
		wal_get(f, "000000010000000000000004", true, got, sizeof(got)), 200);
	/* Archived segments are still served; its own history is missing. */
	assert_int_equal(
		wal_get(f, "000000010000000000000003", true, got, sizeof(got)), 0);
	assert_int_equal(wal_get(f, "00000003.history", true, got, sizeof(got)),
					 200);
	/* The next free timeline, at promotion: still not found. */
	assert_int_equal(wal_get(f, "00000004.history", true, got, sizeof(got)), 1);

	/* Once the history is there, timeline 2's is rebuilt from it.
	 * Timeline 1's WAL runs into segment 4, up to 0/4800000: recovery
	 * along timeline 3 reads timeline 3's copy; along timeline 1 it cannot
	 * go on (200), and its segment 5 is the end. */
	archive_history_text(f, 3, "1:0/4800000,2:0/4900000",
						 HISTORY3_AFTER_MISSING_2);
	assert_int_equal(wal_get(f, "00000002.history", true, got, sizeof(got)), 0);
	assert_int_equal(
		wal_get(f, "000000010000000000000004", true, got, sizeof(got)), 200);
	assert_int_equal(
		wal_get(f, "000000010000000000000005", true, got, sizeof(got)), 1);

	/* A later timeline known only by a .partial: fatal as well. */
	snprintf(meta, sizeof(meta),
			 "type=partial\ntimeline=5\nsegment-size=%u\n"
			 "system-identifier=7441\ncreated=2026-11-24T05:12:00.000Z",
			 SEG_SIZE);
	archive(f, "000000050000000000000007.partial", meta);
	assert_int_equal(wal_get(f, "00000004.history", true, got, sizeof(got)),
					 200);
	assert_int_equal(wal_get(f, "00000005.history", true, got, sizeof(got)),
					 200);
	assert_int_equal(wal_get(f, "00000006.history", true, got, sizeof(got)), 1);
}

/*
 * Timelines 2 and 3 both branched off timeline 1: 2 at 0/3800000 (a
 * restore to a moment, then a snapshot P on it), 3 at 0/2800000 (a later
 * restore from before that), where the source goes on and takes K.  No
 * timeline branched off 2: a leaf.  A restore from P along timeline 2 is
 * running when bk expire, keeping only K, removes P and every segment
 * before K's start, all of timeline 2's among them.  Only its history file
 * is left, which says nothing of how far its WAL went: the segment the
 * recovery asks for next must be a hole, never the end of the archive.
 */
static void
expired_leaf_fixture(WalFixture *f)
{
	for (uint64_t segno = 1; segno <= 10; segno++)
		archive_segment(f, 1, segno);
	archive_history(f, 2, "1:0/3800000");
	for (uint64_t segno = 3; segno <= 8; segno++)
		archive_segment(f, 2, segno);
	archive_history(f, 3, "1:0/2800000");
	for (uint64_t segno = 2; segno <= 20; segno++)
		archive_segment(f, 3, segno);
	archive_snapshot(f, SNAP_P, "full", NULL, 2, "0/5000028", "0/5800000", 1,
					 1);
	archive_snapshot(f, SNAP_K, "full", NULL, 3, "0/F000028", "0/F800000", 1,
					 1);
}

static void
test_expired_leaf_timeline_is_hole(void **state)
{
	WalFixture *f = *state;
	BkWalCatalog catalog;
	char got[4096];
	char why[256];
	BkError err;

	expired_leaf_fixture(f);
	/* Past timeline 2's newest segment: the end, as it should be. */
	assert_int_equal(
		wal_get(f, "000000020000000000000009", true, got, sizeof(got)), 1);

	assert_int_equal(expire(f, 1, 0), 0);
	assert_false(record_exists(f, SNAP_P));
	assert_true(record_exists(f, SNAP_K));
	for (uint64_t segno = 3; segno <= 8; segno++)
		assert_false(segment_exists(f, 2, segno));
	assert_true(segment_exists(f, 3, 15));

	assert_true(bk_wal_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_int_equal(bk_wal_timeline(&catalog, 2)->segments, 0);
	assert_true(bk_wal_segment_is_hole(&catalog, 2, 6, why, sizeof(why)));
	assert_non_null(strstr(why, "bk expire removed it"));
	assert_true(bk_wal_segment_is_hole(&catalog, 2, 8, why, sizeof(why)));
	/* Past what expire removed: what the timeline never archived. */
	assert_false(bk_wal_segment_is_hole(&catalog, 2, 9, why, sizeof(why)));
	assert_false(bk_wal_segment_is_hole(&catalog, 3, 21, why, sizeof(why)));
	bk_wal_catalog_free(&catalog);

	/* What PostgreSQL sees: recovery stops instead of promoting. */
	assert_int_equal(
		wal_get(f, "000000020000000000000006", true, got, sizeof(got)), 200);
	assert_int_equal(
		wal_get(f, "000000020000000000000008", true, got, sizeof(got)), 200);
	assert_int_equal(
		wal_get(f, "000000020000000000000009", true, got, sizeof(got)), 1);
	assert_int_equal(
		wal_get(f, "00000003000000000000000F", true, got, sizeof(got)), 0);
	assert_int_equal(
		wal_get(f, "000000030000000000000015", true, got, sizeof(got)), 1);
}

/* bk expire's records of timeline, as listed: "name name ...". */
typedef struct ExpiredListing
{
	uint32_t timeline;
	char names[1024];
	int count;
} ExpiredListing;

static bool
list_expired(void *arg, const BkRepoEntry *entry, BkError *err)
{
	ExpiredListing *listing = arg;
	char prefix[16];

	(void) err;
	snprintf(prefix, sizeof(prefix), "%08X", listing->timeline);
	if (entry->is_prefix || strncmp(entry->name, prefix, 8) != 0)
		return true;
	snprintf(listing->names + strlen(listing->names),
			 sizeof(listing->names) - strlen(listing->names), "%s%s",
			 listing->count++ ? " " : "", entry->name);
	return true;
}

static const char *
expired_records(WalFixture *f, uint32_t timeline, ExpiredListing *listing)
{
	BkError err;

	memset(listing, 0, sizeof(*listing));
	listing->timeline = timeline;
	assert_true(bk_repo_list(f->repo, BK_REPO_EXPIRED, SOURCE, BK_KIND_WAL, "",
							 false, list_expired, listing, &err));
	return listing->names;
}

/*
 * bk expire records what it is about to remove before it removes it, a
 * dry run nothing; a record never goes down, whatever order two bk expire
 * runs write theirs in; a lower record left beside a higher one (a run cut
 * short between its write and its clean-up) does not count.
 */
static void
test_expired_record_never_lowered(void **state)
{
	WalFixture *f = *state;
	BkRetention dry = {.retain_full = 1, .dry_run = true};
	ExpiredListing listing;
	BkWalCatalog catalog;
	char why[256];
	int saved;
	BkError err;

	expired_leaf_fixture(f);
	saved = test_stdout_quiet();
	assert_int_equal(bk_pg_expire("bk expire", f->repo, SOURCE, &dry, &err), 0);
	test_stdout_restore(saved);
	assert_true(segment_exists(f, 2, 8));
	assert_string_equal(expired_records(f, 2, &listing), "");
	assert_string_equal(expired_records(f, 3, &listing), "");

	assert_int_equal(expire(f, 1, 0), 0);
	assert_string_equal(expired_records(f, 1, &listing),
						"00000001000000000000000A");
	assert_string_equal(expired_records(f, 2, &listing),
						"000000020000000000000008");
	assert_string_equal(expired_records(f, 3, &listing),
						"00000003000000000000000E");

	/* Another bk expire, which listed before this one removed anything. */
	assert_true(bk_wal_expired_record(f->repo, SOURCE,
									  "000000020000000000000005", &err));
	assert_string_equal(expired_records(f, 2, &listing),
						"000000020000000000000008");
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_int_equal(bk_wal_expired(&catalog, 2)->through_segno, 8);
	assert_true(bk_wal_segment_is_hole(&catalog, 2, 8, why, sizeof(why)));
	bk_wal_catalog_free(&catalog);

	/* A higher one raises it; the lower goes. */
	assert_true(bk_wal_expired_record(f->repo, SOURCE,
									  "00000002000000000000000B", &err));
	assert_string_equal(expired_records(f, 2, &listing),
						"00000002000000000000000B");

	/* A lower one left beside it: the higher counts. */
	assert_true(bk_repo_put_record(f->repo, BK_REPO_EXPIRED, SOURCE,
								   BK_KIND_WAL, "000000020000000000000003", "x",
								   1, &err));
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_int_equal(bk_wal_expired(&catalog, 2)->through_segno, 11);
	assert_string_equal(bk_wal_expired(&catalog, 2)->through,
						"00000002000000000000000B");
	assert_true(bk_wal_segment_is_hole(&catalog, 2, 11, why, sizeof(why)));
	assert_false(bk_wal_segment_is_hole(&catalog, 2, 12, why, sizeof(why)));
	bk_wal_catalog_free(&catalog);

	/* Records are the repository's own: only the expired area takes them. */
	assert_false(bk_repo_put_record(f->repo, BK_REPO_ARCHIVE, SOURCE,
									BK_KIND_WAL, "000000020000000000000003",
									"x", 1, &err));
}

/*
 * What bk expire leaves of a timeline it removed only part of, under a
 * running restore: the source's current timeline 3, with K on it, and
 * the leaf timeline 2 (abandoned by the restore to an earlier point that
 * started timeline 3), whose newest segments lie past K's start.  A
 * restore from P (expired meanwhile) along either asks for a segment that
 * is gone: below the first one kept, never the end of the archive,
 * whether expire finished or was cut short, and in a repository an older
 * bk expired (no record): the keys alone tell it there.
 */
static void
test_expired_kept_part_is_hole(void **state)
{
	WalFixture *f = *state;
	char got[4096];
	BkError err;

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	archive_history(f, 2, "1:0/3800000");
	for (uint64_t segno = 3; segno <= 18; segno++)
		archive_segment(f, 2, segno);
	archive_history(f, 3, "1:0/2800000");
	for (uint64_t segno = 2; segno <= 20; segno++)
		archive_segment(f, 3, segno);
	archive_snapshot(f, SNAP_P, "full", NULL, 3, "0/5000028", "0/5800000", 1,
					 1);
	archive_snapshot(f, SNAP_K, "full", NULL, 3, "0/F000028", "0/F800000", 1,
					 1);

	/* Cut short before timeline 3's segment 9: it starts there. */
	test_repo_faults(f->repo, TEST_FAIL_DELETES, "000000030000000000000009");
	assert_int_not_equal(expire(f, 1, 0), 0);
	test_repo_faults_end(f->repo);
	assert_false(segment_exists(f, 3, 7));
	assert_true(segment_exists(f, 3, 9));
	assert_int_equal(
		wal_get(f, "000000030000000000000007", true, got, sizeof(got)), 200);
	assert_int_equal(
		wal_get(f, "000000030000000000000009", true, got, sizeof(got)), 0);

	assert_int_equal(expire(f, 1, 0), 0);
	assert_false(record_exists(f, SNAP_P));
	assert_false(segment_exists(f, 3, 14));
	assert_true(segment_exists(f, 3, 15));
	assert_false(segment_exists(f, 2, 14));
	assert_true(segment_exists(f, 2, 15));
	for (int pass = 0; pass < 2; pass++)
	{
		assert_int_equal(
			wal_get(f, "000000030000000000000007", true, got, sizeof(got)),
			200);
		assert_int_equal(
			wal_get(f, "00000003000000000000000E", true, got, sizeof(got)),
			200);
		assert_int_equal(
			wal_get(f, "000000020000000000000009", true, got, sizeof(got)),
			200);
		/* Past the newest segment of each: the end. */
		assert_int_equal(
			wal_get(f, "000000030000000000000015", true, got, sizeof(got)), 1);
		assert_int_equal(
			wal_get(f, "000000020000000000000013", true, got, sizeof(got)), 1);

		/* The same in a repository an older bk expired: no record. */
		assert_true(bk_repo_delete(f->repo, BK_REPO_EXPIRED, SOURCE,
								   BK_KIND_WAL, "00000003000000000000000E",
								   &err));
		assert_true(bk_repo_delete(f->repo, BK_REPO_EXPIRED, SOURCE,
								   BK_KIND_WAL, "00000002000000000000000E",
								   &err));
	}
}

/*
 * A history file archived without branch points (too many for the
 * metadata, or bk 0.1): read with the key, unknown without it.
 */
static void
test_wal_history_without_branch_points(void **state)
{
	WalFixture *f = *state;
	BkDecoder *decoder;
	BkWalCatalog catalog;
	const BkWalTimeline *tl;
	char why[256];
	BkError err;

	archive_segment(f, 1, 1);
	archive_history_text(f, 2, "", "1\t0/3000028\tno recovery target\n");
	archive_segment(f, 2, 3);

	assert_true(bk_wal_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	tl = bk_wal_timeline(&catalog, 2);
	assert_true(tl->has_history);
	assert_false(tl->history_known);
	assert_non_null(strstr(tl->history_problem, "with the key"));
	assert_int_equal(catalog.unknown_histories, 1);
	/* Without the branch points no gap on timeline 1 passes for its end. */
	assert_true(bk_wal_segment_is_hole(&catalog, 1, 2, why, sizeof(why)));
	bk_wal_catalog_free(&catalog);

	decoder = bk_decoder_new(&f->ring, &err);
	assert_non_null(decoder);
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, decoder, &catalog, &err));
	tl = bk_wal_timeline(&catalog, 2);
	assert_true(tl->history_known);
	assert_int_equal(tl->parent, 1);
	assert_true(tl->begin_lsn == 0x3000028);
	assert_int_equal(catalog.unknown_histories, 0);
	assert_true(bk_wal_segment_is_hole(&catalog, 1, 2, why, sizeof(why)));
	bk_wal_catalog_free(&catalog);
	bk_decoder_free(decoder);
}

/*
 * bk verify without the key cannot tell whether timeline 1's segment 2 is
 * needed (timeline 2's branch points are unknown): no problem, but its
 * output must say what it did not check, in --json as in text, or a
 * monitor reading "ok": true takes the WAL for checked.
 */
static void
test_verify_notes_unchecked_history(void **state)
{
	WalFixture *f = *state;
	BkVerifier verifier;
	json_t *note;
	BkError err;

	archive_segment(f, 1, 1);
	archive_history_text(f, 2, "", "1\t0/3000028\tno recovery target\n");
	archive_segment(f, 2, 3);
	verifier_open(&verifier, NULL);
	assert_true(bk_pg_verify(&verifier, f->repo, SOURCE, &err));
	assert_int_equal(verifier.problems, 0);
	assert_int_equal(json_array_size(verifier.note_list), 1);
	note = json_array_get(verifier.note_list, 0);
	assert_string_equal(json_string_value(json_object_get(note, "object")),
						"00000002.history");
	assert_non_null(strstr(json_string_value(json_object_get(note, "note")),
						   "the branch points of timeline 2 are not checked "
						   "without the key"));
	verifier_close(&verifier);
}

/*
 * A stand-in for pg_waldump over segments whose records run to their end:
 * it prints a record near the end of the last segment it was given, so
 * that an LSN target is reached in its own segment (lsn_stop_segment).
 */
static const char dense_waldump[] =
	"#!/bin/sh\n"
	"while [ $# -gt 0 ]; do\n"
	"	case \"$1\" in\n"
	"	--end) end=\"$2\"; shift ;;\n"
	"	esac\n"
	"	shift\n"
	"done\n"
	"printf 'rmgr: XLOG        len (rec/tot):     24/    24, tx:          0, "
	"lsn: %X/%08X, prev 0/00000000, desc: CHECKPOINT_ONLINE\\n' "
	"$((0x${end%/*})) $((0x${end#*/} - 256))\n"
	"exit 0\n";

/* Read the WAL of an LSN target through dense_waldump. */
static void
dense_waldump_begin(WalFixture *f, Restore *r)
{
	char bin[600];
	char path[700];
	BkError err;

	snprintf(bin, sizeof(bin), "%s/dense-bin", f->dir);
	assert_int_equal(mkdir(bin, 0700), 0);
	snprintf(path, sizeof(path), "%s/pg_waldump", bin);
	assert_true(bk_write_file_durable(path, dense_waldump,
									  strlen(dense_waldump), 0700, &err));
	setenv("BK_PG_BINDIR", bin, 1);
	r->decoder = bk_decoder_new(&f->ring, &err);
	assert_non_null(r->decoder);
}

static void
dense_waldump_end(Restore *r)
{
	bk_decoder_free(r->decoder);
	r->decoder = NULL;
	unsetenv("BK_PG_BINDIR");
}

/*
 * r restores snapshot (its id set here), the one snapshot of the source,
 * along the latest timeline, from the fixture's WAL catalog, pg_waldump
 * being dense_waldump.
 */
static void
one_snapshot_begin(WalFixture *f, Restore *r, BkSnapshot *snapshot)
{
	BkError err;

	strcpy(snapshot->id, "20261124T000000Z-00000000");
	assert_true(
		bk_wal_catalog_load(f->repo, SOURCE, NULL, &r->catalog.wal, &err));
	r->catalog.snapshots = snapshot;
	r->catalog.count = 1;
	r->chosen = 0;
	r->program = "bk";
	r->source = SOURCE;
	r->target_timeline = "latest";
	r->repo = f->repo;
	dense_waldump_begin(f, r);
}

/*
 * What bk restore tells PostgreSQL to follow: the timeline it checked the
 * WAL path to, by its id.  With 'latest', PostgreSQL would probe
 * 00000002.history first and, finding none (timeline 2's server died before
 * archiving it), recover timeline 1 only and promote.
 */
static void
test_recovery_timeline(void **state)
{
	WalFixture *f = *state;
	Restore *r = calloc(1, sizeof(*r));
	BkSnapshot snapshot = {
		.start_lsn = 0x1000028, .stop_lsn = 0x1000100, .timeline = 1};
	char path[600];
	char *conf;
	size_t len;
	BkError err;

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	archive_history(f, 3, "1:0/4800000,2:0/4900000");
	for (uint64_t segno = 4; segno <= 6; segno++)
		archive_segment(f, 3, segno);
	one_snapshot_begin(f, r, &snapshot);
	snprintf(r->pgdata, sizeof(r->pgdata), "%s", f->dir);

	/* The end of the archive: timeline 3, the newest, checked and written. */
	assert_true(restore_check_wal_path(r, &err));
	assert_int_equal(r->recovery_timeline, 3);
	assert_true(restore_build_restore_command(r, &err));
	assert_true(restore_write_recovery_settings(r, &err));
	snprintf(path, sizeof(path), "%s/postgresql.auto.conf", f->dir);
	assert_true(bk_read_file(path, 65536, &conf, &len, &err));
	assert_non_null(strstr(conf, "recovery_target_timeline = '3'\n"));
	/* No target: each written empty, so that none in postgresql.conf
	 * applies; bk's own semantics written whatever that file says. */
	assert_non_null(strstr(conf, "recovery_target = ''\n"
								 "recovery_target_time = ''\n"
								 "recovery_target_lsn = ''\n"
								 "recovery_target_xid = ''\n"
								 "recovery_target_name = ''\n"
								 "recovery_target_inclusive = 'on'\n"
								 "recovery_min_apply_delay = '0'\n"));
	assert_null(strstr(conf, "recovery_target_action"));
	free(conf);
	json_decref(r->settings);

	/* An xid as bk read it: PostgreSQL would read "01366" as octal. */
	r->target.type = BK_PG_TARGET_XID;
	r->target.xid = 1366;
	r->target.text = "01366";
	assert_true(restore_write_recovery_settings(r, &err));
	assert_true(bk_read_file(path, 65536, &conf, &len, &err));
	/* The empty ones first: PostgreSQL refuses one after a target is set. */
	assert_non_null(strstr(conf, "recovery_target = ''\n"
								 "recovery_target_time = ''\n"
								 "recovery_target_lsn = ''\n"
								 "recovery_target_name = ''\n"
								 "recovery_target_xid = '1366'\n"));
	assert_non_null(strstr(conf, "recovery_target_action = 'promote'\n"));
	free(conf);
	json_decref(r->settings);
	r->target.type = BK_PG_TARGET_NONE;

	/* An LSN target on timeline 3; 'current' is the snapshot's timeline. */
	r->target.type = BK_PG_TARGET_LSN;
	r->target.lsn = 0x5000000;
	assert_true(restore_check_wal_path(r, &err));
	assert_int_equal(r->recovery_timeline, 3);
	r->target_timeline = "current";
	r->target.type = BK_PG_TARGET_NONE;
	/* To its end: timeline 1's WAL runs into segment 4, up to where
	 * timeline 2 branched off, and only timeline 3's copy holds it. */
	assert_false(restore_check_wal_path(r, &err));
	assert_error_contains(&err, "WAL file 000000010000000000000004 is "
								"missing from the archive");
	r->target.type = BK_PG_TARGET_LSN;
	r->target.lsn = 0x3000100;
	assert_true(restore_check_wal_path(r, &err));
	assert_int_equal(r->recovery_timeline, 1);
	r->target.type = BK_PG_TARGET_NONE;

	/* Immediate: consistency on the snapshot's own timeline, whatever the
	 * option says (bk checks that path, and a later timeline branching off
	 * before the snapshot's end would never reach consistency). */
	r->target_timeline = "latest";
	r->target.type = BK_PG_TARGET_IMMEDIATE;
	assert_true(restore_check_wal_path(r, &err));
	assert_int_equal(r->recovery_timeline, 1);
	assert_true(restore_write_recovery_settings(r, &err));
	assert_true(bk_read_file(path, 65536, &conf, &len, &err));
	assert_non_null(strstr(conf, "recovery_target_timeline = '1'\n"));
	assert_non_null(strstr(conf, "recovery_target = 'immediate'\n"));
	free(conf);
	json_decref(r->settings);

	dense_waldump_end(r);
	bk_wal_catalog_free(&r->catalog.wal);
	free(r);
}

/*
 * Two copies of a segment's backup history file are no conflict of the
 * segment: bk wal-get serves the segment (it stopped recovery there, its
 * name being a prefix of the backup file's), and still refuses the backup
 * file itself and a segment with two copies of its own.
 */
static void
test_wal_get_backup_conflict_not_segment(void **state)
{
	WalFixture *f = *state;
	const char *backup = "000000010000000000000002.00000028.backup";
	const char *meta = "type=backup\ntimeline=1\nsegment-size=16777216\n"
					   "system-identifier=7441\n"
					   "created=2026-11-24T05:12:00.000Z";
	char got[4096];

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	archive_content(f, backup, meta, "START WAL LOCATION: 0/2000028");
	test_archive_conflict(
		f->repo, &f->key, &f->uploads, BK_KIND_WAL, SOURCE, backup, meta,
		(const uint8_t *) "START WAL LOCATION: 0/2000060", 29);
	assert_int_equal(
		wal_get(f, "000000010000000000000002", true, got, sizeof(got)), 0);
	assert_string_equal(got, "not really WAL");
	assert_int_equal(wal_get(f, backup, true, got, sizeof(got)), 200);
	test_archive_conflict(
		f->repo, &f->key, &f->uploads, BK_KIND_WAL, SOURCE,
		"000000010000000000000002",
		"type=segment\ntimeline=1\nsegment-size=16777216\n"
		"system-identifier=7441\ncreated=2026-11-24T05:12:00.000Z",
		(const uint8_t *) "other WAL", 9);
	assert_int_equal(
		wal_get(f, "000000010000000000000002", true, got, sizeof(got)), 200);
}

/*
 * Two servers archived segment 4 of timeline 1 with different contents:
 * bk wal-get stops recovery there (exit 200), after the whole snapshot is
 * written.  bk restore refuses first, naming the file, when recovery reads
 * it: to the end of the archive, or to an LSN in it; not to an LSN before
 * it.  Along timeline 2, which branched off in segment 3, recovery reads
 * timeline 2's segment 4, and timeline 1's two copies are no obstacle;
 * two copies of 00000002.history, which it reads, are.
 */
static void
test_wal_conflict_refused(void **state)
{
	WalFixture *f = *state;
	Restore *r = calloc(1, sizeof(*r));
	BkSnapshot snapshot = {
		.start_lsn = 0x1000028, .stop_lsn = 0x1000100, .timeline = 1};
	const char *meta = "type=segment\ntimeline=1\nsegment-size=16777216\n"
					   "system-identifier=7441\n"
					   "created=2026-11-24T05:12:00.000Z";
	BkError err;

	for (uint64_t segno = 1; segno <= 6; segno++)
		archive_segment(f, 1, segno);
	test_archive_conflict(f->repo, &f->key, &f->uploads, BK_KIND_WAL, SOURCE,
						  "000000010000000000000004", meta,
						  (const uint8_t *) "other WAL", 9);
	one_snapshot_begin(f, r, &snapshot);

	/* The end of the archive: refused, naming the file. */
	assert_false(restore_check_wal_path(r, &err));
	assert_int_equal(err.code, BK_ERR_CONFLICT);
	assert_non_null(strstr(err.message, "two different copies of WAL file "
										"\"000000010000000000000004\""));
	/* An LSN in it: refused; before it: restored. */
	r->target.type = BK_PG_TARGET_LSN;
	r->target.text = "0/4000100";
	r->target.lsn = 0x4000100;
	assert_false(restore_check_wal_path(r, &err));
	assert_int_equal(err.code, BK_ERR_CONFLICT);
	r->target.text = "0/2000100";
	r->target.lsn = 0x2000100;
	assert_true(restore_check_wal_path(r, &err));
	/*
	 * An xid not searched for (--snapshot): recovery may read on to the
	 * copies or stop before; restored, with a warning naming the file.
	 */
	{
		char path[1024];
		char *text = NULL;
		size_t len;
		int saved;
		bool ok;

		r->target.type = BK_PG_TARGET_XID;
		r->target.text = "741";
		r->found_lsn = 0;
		snprintf(path, sizeof(path), "%s/conflict.err", f->dir);
		saved = test_stderr_to(path);
		ok = restore_check_wal_path(r, &err);
		test_stderr_restore(saved);
		assert_true(ok);
		assert_true(bk_read_file(path, 65536, &text, &len, &err));
		if (strstr(text, "two different copies of WAL file "
						 "\"000000010000000000000004\"") == NULL)
			fail_msg("no warning: %s", text);
		free(text);
	}
	bk_wal_catalog_free(&r->catalog.wal);

	/* Along timeline 2, which has its own segment 4: restored. */
	archive_history(f, 2, "1:0/3800000");
	for (uint64_t segno = 3; segno <= 6; segno++)
		archive_segment(f, 2, segno);
	assert_true(
		bk_wal_catalog_load(f->repo, SOURCE, NULL, &r->catalog.wal, &err));
	r->target.type = BK_PG_TARGET_NONE;
	if (!restore_check_wal_path(r, &err))
		fail_msg("%s", err.message);
	assert_int_equal(r->recovery_timeline, 2);
	bk_wal_catalog_free(&r->catalog.wal);

	/* Two copies of timeline 2's history file: refused. */
	test_archive_conflict(f->repo, &f->key, &f->uploads, BK_KIND_WAL, SOURCE,
						  "00000002.history",
						  "type=history\ntimeline=2\n"
						  "branch-points=1:0/3800000\n"
						  "system-identifier=7441\n"
						  "created=2026-11-24T05:12:00.000Z",
						  (const uint8_t *) "another history", 15);
	assert_true(
		bk_wal_catalog_load(f->repo, SOURCE, NULL, &r->catalog.wal, &err));
	assert_false(restore_check_wal_path(r, &err));
	assert_int_equal(err.code, BK_ERR_CONFLICT);
	assert_non_null(strstr(err.message, "\"00000002.history\""));

	dense_waldump_end(r);
	bk_wal_catalog_free(&r->catalog.wal);
	free(r);
}

/*
 * Timeline 2 branched off timeline 1 at 0/3800000 (a restore to that
 * point, promoted), while timeline 1's server went on: full P ended before
 * the branch, S started before it (in the segment that holds it) and
 * ended after it, K started and ended after it.  Recovery along timeline
 * 2 leaves timeline 1 at the branch point, so it never replays S's or K's
 * end-of-backup record: neither can become consistent there, and only P
 * serves a target on timeline 2.  On timeline 1, K is the newest.
 */
#define SNAP_BP "20261101T000000Z-000000b1"
#define SNAP_BS "20261102T000000Z-000000b2"
#define SNAP_BK "20261103T000000Z-000000b3"

static void
branch_restore_begin(WalFixture *f, Restore *r)
{
	BkError err;

	for (uint64_t segno = 1; segno <= 6; segno++)
		archive_segment(f, 1, segno);
	archive_history(f, 2, "1:0/3800000");
	for (uint64_t segno = 3; segno <= 5; segno++)
		archive_segment(f, 2, segno);
	archive_snapshot(f, SNAP_BP, "full", NULL, 1, "0/1000028", "0/1800000", 1,
					 1);
	archive_snapshot(f, SNAP_BS, "full", NULL, 1, "0/3000028", "0/4000100", 1,
					 1);
	archive_snapshot(f, SNAP_BK, "full", NULL, 1, "0/5000028", "0/5800000", 1,
					 1);
	r->program = "bk";
	r->source = SOURCE;
	r->repo = f->repo;
	r->chosen = -1;
	r->target_timeline = "latest";
	dense_waldump_begin(f, r);
	assert_true(
		bk_snapshot_catalog_load(f->repo, SOURCE, NULL, &r->catalog, &err));
	for (int snapIdx = 0; snapIdx < r->catalog.count; snapIdx++)
		assert_true(r->catalog.snapshots[snapIdx].restorable);
}

/* A snapshot that ends past the branch point is refused before anything
 * is written, not accepted for a recovery that cannot become consistent. */
static void
test_snapshot_ends_past_branch(void **state)
{
	WalFixture *f = *state;
	Restore *r = calloc(1, sizeof(*r));
	BkError err;

	branch_restore_begin(f, r);
	r->chosen = bk_snapshot_catalog_find(&r->catalog, SNAP_BS);
	assert_false(restore_check_wal_path(r, &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_error_contains(&err, "timeline 2 left timeline 1 at 0/3800000, "
								"before 0/4000100");
	r->target.type = BK_PG_TARGET_LSN;
	r->target.lsn = 0x4400000;
	assert_false(restore_check_wal_path(r, &err));

	/* Along timeline 1 it is consistent at its stop. */
	r->target_timeline = "1";
	assert_true(restore_check_wal_path(r, &err));
	assert_int_equal(r->recovery_timeline, 1);
	r->target_timeline = "current";
	assert_true(restore_check_wal_path(r, &err));

	/* P ends before the branch: it serves timeline 2. */
	r->target_timeline = "latest";
	r->chosen = bk_snapshot_catalog_find(&r->catalog, SNAP_BP);
	assert_true(restore_check_wal_path(r, &err));
	assert_int_equal(r->recovery_timeline, 2);
	dense_waldump_end(r);
	bk_snapshot_catalog_free(&r->catalog);
	free(r);
}

/* What restore_warn_target_beyond_archive says, into text. */
static void
beyond_archive_warning(WalFixture *f, const Restore *r, char *text,
					   size_t text_len)
{
	char path[600];
	char *said = NULL;
	size_t said_len;
	int saved;
	BkError err;

	snprintf(path, sizeof(path), "%s/warning", f->dir);
	saved = test_stderr_to(path);
	restore_warn_target_beyond_archive(r);
	test_stderr_restore(saved);
	assert_true(bk_read_file(path, 65536, &said, &said_len, &err));
	bk_strlcpy(text, said, text_len);
	free(said);
}

/*
 * The warning that an LSN target is beyond the archived WAL measured it
 * against the restorable window's end, the newest timeline's (timeline 2
 * here, archived to 0/6000000), whatever timeline the restore follows.
 * Along timeline 1, archived to 0/7000000, a target in its segment 6 was
 * said to be beyond the archive, and one past it was given timeline 2's
 * end.  It is measured along the timeline recovery follows.
 */
static void
test_target_beyond_archive_of_its_timeline(void **state)
{
	WalFixture *f = *state;
	Restore *r = calloc(1, sizeof(*r));
	char text[2048];
	BkError err;

	branch_restore_begin(f, r);
	assert_true(r->catalog.has_window);
	assert_int_equal(r->catalog.window_end_timeline, 2);
	assert_int_equal(r->catalog.window_end_lsn, 0x6000000);
	r->chosen = bk_snapshot_catalog_find(&r->catalog, SNAP_BK);
	r->target_timeline = "1";
	r->target.type = BK_PG_TARGET_LSN;

	/* In timeline 1's archive, past timeline 2's: no warning. */
	r->target.lsn = 0x6800000;
	r->target.text = "0/6800000";
	assert_true(restore_check_wal_path(r, &err));
	assert_int_equal(r->recovery_timeline, 1);
	beyond_archive_warning(f, r, text, sizeof(text));
	assert_string_equal(text, "");

	/* Past timeline 1's archive: its end, not timeline 2's. */
	r->target.lsn = 0x7800000;
	r->target.text = "0/7800000";
	assert_true(restore_check_wal_path(r, &err));
	beyond_archive_warning(f, r, text, sizeof(text));
	if (strstr(text, "the target LSN 0/7800000 is beyond the archived WAL of "
					 "timeline 1 (which ends at 0/7000000)") == NULL)
		fail_msg("said: %s", text);

	/* Along timeline 2 (latest), from a snapshot before the branch. */
	r->target_timeline = "latest";
	r->chosen = bk_snapshot_catalog_find(&r->catalog, SNAP_BP);
	r->target.lsn = 0x6800000;
	r->target.text = "0/6800000";
	assert_true(restore_check_wal_path(r, &err));
	assert_int_equal(r->recovery_timeline, 2);
	beyond_archive_warning(f, r, text, sizeof(text));
	if (strstr(text, "the target LSN 0/6800000 is beyond the archived WAL of "
					 "timeline 2 (which ends at 0/6000000)") == NULL)
		fail_msg("said: %s", text);
	dense_waldump_end(r);
	bk_snapshot_catalog_free(&r->catalog);
	free(r);
}

/*
 * Two rotations, A to B to C, and a keyring that holds A and C only: the
 * first segment recovery reads (A) and the last (C) open, but recovery to
 * the end would stop at the first segment sealed to B.  The restore says
 * so before writing anything, naming that segment and B; a target before
 * B's segments needs only A, and with B in the keyring the end restores.
 */
static void
test_wal_keys_middle_rotation(void **state)
{
	WalFixture *f = *state;
	Restore *r = calloc(1, sizeof(*r));
	BkKey key_a = f->key;
	BkKey key_b;
	BkKey key_c;
	BkKeyring a_and_c = {0};
	BkKeyring all = {0};
	char b_hex[BK_KEY_ID_HEX_LEN + 1];
	char name[32];
	BkError err;

	test_key(&key_b, NULL);
	test_key(&key_c, NULL);
	for (uint64_t segno = 1; segno <= 12; segno++)
	{
		f->key = segno <= 3 ? key_a : segno <= 5 ? key_b : key_c;
		archive_segment(f, 1, segno);
	}
	f->key = key_a;
	archive_snapshot(f, SNAP_BP, "full", NULL, 1, "0/1000028", "0/1800000", 1,
					 1);
	a_and_c.keys[a_and_c.count++] = key_a;
	a_and_c.keys[a_and_c.count++] = key_c;
	all = a_and_c;
	all.keys[all.count++] = key_b;
	bk_key_id_hex(key_b.id, b_hex);

	r->program = "bk";
	r->source = SOURCE;
	r->repo = f->repo;
	r->chosen = -1;
	r->target_timeline = "latest";
	r->ring = &a_and_c;
	r->config.key_file = "/etc/bk/restore.key";
	dense_waldump_begin(f, r);
	bk_decoder_free(r->decoder);
	r->decoder = bk_decoder_new(&a_and_c, &err);
	assert_non_null(r->decoder);
	assert_true(
		bk_snapshot_catalog_load(f->repo, SOURCE, NULL, &r->catalog, &err));
	r->chosen = bk_snapshot_catalog_find(&r->catalog, SNAP_BP);
	assert_true(r->chosen >= 0);

	/* To the end: stopped at segment 4, B's first. */
	assert_true(restore_check_wal_path(r, &err));
	assert_false(restore_check_wal_keys(r, &err));
	assert_int_equal(err.code, BK_ERR_KEY);
	bk_wal_segment_name(1, 4, SEG_SIZE, name);
	assert_error_contains(&err, name);
	assert_error_contains(&err, b_hex);
	assert_error_contains(&err, "nothing was written");

	/* To a target in segment 3: A is all it needs. */
	r->target.type = BK_PG_TARGET_LSN;
	r->target.lsn = 0x3000100;
	assert_true(restore_check_wal_path(r, &err));
	assert_true(restore_check_wal_keys(r, &err));

	/* With B in the keyring, to the end. */
	r->target.type = BK_PG_TARGET_NONE;
	bk_decoder_free(r->decoder);
	r->ring = &all;
	r->decoder = bk_decoder_new(&all, &err);
	assert_non_null(r->decoder);
	assert_true(restore_check_wal_path(r, &err));
	if (!restore_check_wal_keys(r, &err))
		fail_msg("refused with every key in the keyring: %s", err.message);
	dense_waldump_end(r);
	bk_snapshot_catalog_free(&r->catalog);
	free(r);
}

/*
 * restore_choose_snapshot on a fresh catalog of the fixture, its messages
 * in *messages (to free); whether it chose.
 */
static bool
choose_capturing(WalFixture *f, Restore *r, char **messages, BkError *err)
{
	char path[1024];
	size_t len;
	int saved;
	bool ok;
	BkError read_err;

	bk_snapshot_catalog_free(&r->catalog);
	assert_true(
		bk_snapshot_catalog_load(f->repo, SOURCE, NULL, &r->catalog, err));
	snprintf(path, sizeof(path), "%s/choose.err", f->dir);
	saved = test_stderr_to(path);
	ok = restore_choose_snapshot(r, err);
	test_stderr_restore(saved);
	assert_true(bk_read_file(path, 65536, messages, &len, &read_err));
	return ok;
}

#define SNAP_DA "20261101T000000Z-000000d1"
#define SNAP_DB "20261102T000000Z-000000d2"

/*
 * The newest snapshot damaged (its record truncated, or a data object
 * gone): the restore may start from the older one, whose WAL reaches the
 * target, but says on stderr which newer snapshot it stepped over and
 * why.  With no restorable snapshot left, and one damaged, the failure is
 * one of integrity (exit 4) naming it, not "none restorable" (exit 1); a
 * damaged snapshot named with --snapshot too.
 */
static void
test_choose_skips_damaged_newest(void **state)
{
	WalFixture *f = *state;
	Restore *r = calloc(1, sizeof(*r));
	char path[1024];
	char *messages;
	BkError err;

	for (uint64_t segno = 1; segno <= 6; segno++)
		archive_segment(f, 1, segno);
	archive_snapshot(f, SNAP_DA, "full", NULL, 1, "0/1000028", "0/1800000", 1,
					 1);
	archive_snapshot(f, SNAP_DB, "full", NULL, 1, "0/3000028", "0/3800000", 1,
					 1);
	r->program = "bk restore";
	r->source = SOURCE;
	r->repo = f->repo;
	r->target_timeline = "latest";
	assert_true(bk_pg_target_parse(&r->target, BK_PG_TARGET_NONE, NULL, &err));
	assert_true(choose_capturing(f, r, &messages, &err));
	assert_string_equal(r->catalog.snapshots[r->chosen].id, SNAP_DB);
	assert_null(strstr(messages, "warning"));
	free(messages);

	/* The newest's record cut short: the older one, and a warning. */
	snprintf(path, sizeof(path), "%s/%s/snapshot/%s/%s", f->location, SOURCE,
			 SNAP_DB, BK_SNAPSHOT_RECORD);
	assert_int_equal(truncate(path, 30), 0);
	assert_true(choose_capturing(f, r, &messages, &err));
	assert_string_equal(r->catalog.snapshots[r->chosen].id, SNAP_DA);
	assert_non_null(strstr(messages, "warning: snapshot " SNAP_DB));
	assert_non_null(strstr(messages, "its record cannot be read"));
	free(messages);
	/* The same for a time target after it. */
	assert_true(bk_pg_target_parse(&r->target, BK_PG_TARGET_TIME,
								   "2026-11-03 00:00:00+00", &err));
	assert_true(choose_capturing(f, r, &messages, &err));
	assert_string_equal(r->catalog.snapshots[r->chosen].id, SNAP_DA);
	assert_non_null(strstr(messages, "warning: snapshot " SNAP_DB));
	free(messages);
	/* Not for a target before it: it could not have served that. */
	assert_true(bk_pg_target_parse(&r->target, BK_PG_TARGET_TIME,
								   "2026-11-01 12:00:00+00", &err));
	assert_true(choose_capturing(f, r, &messages, &err));
	assert_null(strstr(messages, "warning"));
	free(messages);

	/* The older one's data object removed too: nothing restores, and
	 * that is damage, naming the newest damaged snapshot. */
	assert_true(bk_pg_target_parse(&r->target, BK_PG_TARGET_NONE, NULL, &err));
	snprintf(path, sizeof(path), "%s/%s/snapshot/%s/" BK_SNAPSHOT_DATA "/%06d",
			 f->location, SOURCE, SNAP_DA, 1);
	assert_int_equal(unlink(path), 0);
	assert_false(choose_capturing(f, r, &messages, &err));
	free(messages);
	assert_int_equal(err.code, BK_ERR_SEQUENCE);
	assert_error_contains(&err, "none of them restorable");
	assert_error_contains(&err, "snapshot " SNAP_DB " is damaged");
	r->snapshot_id = SNAP_DA;
	assert_false(choose_capturing(f, r, &messages, &err));
	free(messages);
	assert_int_equal(err.code, BK_ERR_SEQUENCE);
	assert_error_contains(&err, "0 of its 1 data objects");
	r->snapshot_id = NULL;

	/* Only record-less snapshots (cancelled, or arriving): not damage. */
	snprintf(path, sizeof(path), "%s/%s/snapshot/%s/%s", f->location, SOURCE,
			 SNAP_DB, BK_SNAPSHOT_RECORD);
	assert_int_equal(unlink(path), 0);
	snprintf(path, sizeof(path), "%s/%s/snapshot/%s/%s", f->location, SOURCE,
			 SNAP_DA, BK_SNAPSHOT_RECORD);
	assert_int_equal(unlink(path), 0);
	assert_false(choose_capturing(f, r, &messages, &err));
	free(messages);
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	bk_snapshot_catalog_free(&r->catalog);
	free(r);
}

/*
 * A snapshot whose record is there but does not read (cut short), or whose
 * record lacks a stop LSN (its metadata altered, the CRC made to match:
 * without the key nothing else tells), is damaged: bk restore refuses it
 * (exit 4), and bk verify must count it a problem, once, not call it "not
 * a problem unless it should have finished", nor pass it.
 */
static void
test_verify_damaged_record(void **state)
{
	WalFixture *f = *state;
	char path[1024];
	char name[128];
	uint64_t problems;
	char *text;

	archive_snapshot(f, SNAP_DA, "full", NULL, 1, "0/1000028", "0/1800000", 1,
					 1);
	archive_snapshot(f, SNAP_DB, "full", NULL, 1, "0/3000028", "0/3800000", 1,
					 1);
	snprintf(name, sizeof(name), "%s/" BK_SNAPSHOT_RECORD, SNAP_DA);
	test_alter_stored(f->location, SOURCE, "snapshot", name,
					  "\nstop-lsn=", "\nstop-lsx=", true);
	snprintf(path, sizeof(path), "%s/%s/snapshot/%s/%s", f->location, SOURCE,
			 SNAP_DB, BK_SNAPSHOT_RECORD);
	assert_int_equal(truncate(path, 30), 0);
	text = verify_problems(f, &problems);
	assert_non_null(strstr(text, "snapshot " SNAP_DA " is not restorable: "
								 "its record's metadata lacks"));
	assert_non_null(strstr(text, "snapshot " SNAP_DB " is not restorable: "
								 "its record cannot be read"));
	/* Once each: not again as an object unread. */
	assert_null(strstr(strstr(text, "\"object\": \"" SNAP_DB) + 1,
					   "\"object\": \"" SNAP_DB));
	free(text);
}

/* The choice: the newest snapshot on the history of the timeline
 * recovery follows, not the newest of all. */
static void
test_choose_snapshot_on_timeline(void **state)
{
	WalFixture *f = *state;
	Restore *r = calloc(1, sizeof(*r));
	BkError err;

	branch_restore_begin(f, r);
	assert_true(restore_choose_snapshot(r, &err));
	assert_string_equal(r->catalog.snapshots[r->chosen].id, SNAP_BP);
	assert_true(restore_check_wal_path(r, &err));

	/* An LSN on timeline 2, after S's stop: still P. */
	assert_true(
		bk_pg_target_parse(&r->target, BK_PG_TARGET_LSN, "0/4400000", &err));
	assert_true(restore_choose_snapshot(r, &err));
	assert_string_equal(r->catalog.snapshots[r->chosen].id, SNAP_BP);
	assert_true(restore_check_wal_path(r, &err));

	/* Timeline 1 (named, or the snapshot's own): the newest, K. */
	assert_true(bk_pg_target_parse(&r->target, BK_PG_TARGET_NONE, NULL, &err));
	r->target_timeline = "1";
	assert_true(restore_choose_snapshot(r, &err));
	assert_string_equal(r->catalog.snapshots[r->chosen].id, SNAP_BK);
	r->target_timeline = "current";
	assert_true(restore_choose_snapshot(r, &err));
	assert_string_equal(r->catalog.snapshots[r->chosen].id, SNAP_BK);
	/* Immediate: consistency on the snapshot's own timeline. */
	r->target_timeline = "latest";
	assert_true(bk_pg_target_parse(&r->target, BK_PG_TARGET_IMMEDIATE,
								   "immediate", &err));
	assert_true(restore_choose_snapshot(r, &err));
	assert_string_equal(r->catalog.snapshots[r->chosen].id, SNAP_BK);
	assert_true(restore_check_wal_path(r, &err));
	/* Immediate, timeline 2 named: the newest snapshot on its history, P,
	 * recovered along timeline 2 (K, the newest of all, was chosen and
	 * recovered along timeline 1 before). */
	r->target_timeline = "2";
	assert_true(restore_choose_snapshot(r, &err));
	assert_string_equal(r->catalog.snapshots[r->chosen].id, SNAP_BP);
	assert_true(restore_check_wal_path(r, &err));
	assert_int_equal(r->recovery_timeline, 2);
	/* Named with a snapshot off its history: refused, not recovered along
	 * another timeline. */
	r->snapshot_id = SNAP_BK;
	assert_false(restore_choose_snapshot(r, &err) &&
				 restore_check_wal_path(r, &err));
	r->snapshot_id = NULL;
	dense_waldump_end(r);
	bk_snapshot_catalog_free(&r->catalog);
	free(r);
}

/*
 * Timeline 2 branched off timeline 1 at 0/4800000, in segment 4, and
 * timeline 1's server stopped there: timeline 1's segment 4 is archived only
 * as 000000010000000000000004.partial (by the promoted server), while
 * timeline 2's segment 4 holds the same bytes up to the branch point.
 * Snapshot B ends in segment 4 before the branch point, E starts in it and
 * ends exactly at it, A ends one byte past it.  Recovery along timeline 2
 * reads timeline 2's segment 4 (PostgreSQL asks for the newest timeline's
 * file first), so B and E become consistent there; A never does.
 */
#define SNAP_PB "20261101T000000Z-000000c1"
#define SNAP_PE "20261102T000000Z-000000c2"
#define SNAP_PA "20261103T000000Z-000000c3"

static void
branch_partial_begin(WalFixture *f, Restore *r)
{
	char meta[256];
	BkError err;

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	snprintf(meta, sizeof(meta),
			 "type=partial\ntimeline=1\nsegment-size=%u\n"
			 "system-identifier=7441\ncreated=2026-11-24T05:12:00.000Z",
			 SEG_SIZE);
	archive(f, "000000010000000000000004.partial", meta);
	archive_history(f, 2, "1:0/4800000");
	for (uint64_t segno = 4; segno <= 6; segno++)
		archive_segment(f, 2, segno);
	archive_snapshot(f, SNAP_PB, "full", NULL, 1, "0/3000028", "0/4000100", 1,
					 1);
	archive_snapshot(f, SNAP_PE, "full", NULL, 1, "0/4000028", "0/4800000", 1,
					 1);
	archive_snapshot(f, SNAP_PA, "full", NULL, 1, "0/3000028", "0/4800001", 1,
					 1);
	r->program = "bk";
	r->source = SOURCE;
	r->repo = f->repo;
	r->chosen = -1;
	r->target_timeline = "latest";
	dense_waldump_begin(f, r);
	assert_true(
		bk_snapshot_catalog_load(f->repo, SOURCE, NULL, &r->catalog, &err));
}

/* A snapshot that ends in the branch segment, at or before the branch
 * point, restores along the new timeline. */
static void
test_snapshot_ends_in_branch_segment(void **state)
{
	WalFixture *f = *state;
	Restore *r = calloc(1, sizeof(*r));
	const BkSnapshot *a;
	BkWalPath path;
	char got[64];
	BkError err;

	branch_partial_begin(f, r);
	assert_true(
		bk_wal_history_holds(&r->catalog.wal, 1, 0x4800000, 2, NULL, 0));
	assert_false(
		bk_wal_history_holds(&r->catalog.wal, 1, 0x4800001, 2, NULL, 0));
	/* The segments from B's start to its stop: timeline 2's segment 4. */
	bk_wal_path(&r->catalog.wal, 1, 3, 2, 4, &path);
	assert_true(path.reachable);
	assert_int_equal(path.missing, 0);
	assert_false(path.beyond_end);
	assert_int_equal(path.end_timeline, 2);
	/* What restore_command is asked for segment 4: timeline 2's file
	 * first, served, and recovery along timeline 2 never asks for timeline
	 * 1's.  Recovery along timeline 1 does, and timeline 1's WAL runs into
	 * it up to the branch point, archived only in timeline 2's copy and
	 * the .partial: a hole (exit 200), not the end of the archive (exit 1
	 * would end recovery at 0/4000000, silently without timeline 1's WAL
	 * up to 0/4800000). */
	assert_int_equal(
		wal_get(f, "000000020000000000000004", true, got, sizeof(got)), 0);
	assert_string_equal(got, "not really WAL");
	assert_int_equal(
		wal_get(f, "000000010000000000000004", true, got, sizeof(got)), 200);
	/* Past the segment of the branch point: the end along timeline 1. */
	assert_int_equal(
		wal_get(f, "000000010000000000000005", true, got, sizeof(got)), 1);

	assert_true(
		r->catalog.snapshots[bk_snapshot_catalog_find(&r->catalog, SNAP_PB)]
			.restorable);
	assert_true(
		r->catalog.snapshots[bk_snapshot_catalog_find(&r->catalog, SNAP_PE)]
			.restorable);
	a = &r->catalog.snapshots[bk_snapshot_catalog_find(&r->catalog, SNAP_PA)];
	assert_false(a->restorable);
	assert_non_null(strstr(a->reason, "000000010000000000000004"));

	/* The end of the archive: E, the newest, along timeline 2. */
	assert_true(restore_choose_snapshot(r, &err));
	assert_string_equal(r->catalog.snapshots[r->chosen].id, SNAP_PE);
	assert_true(restore_check_wal_path(r, &err));
	assert_int_equal(r->recovery_timeline, 2);

	/* An LSN between B's stop and E's: B. */
	assert_true(
		bk_pg_target_parse(&r->target, BK_PG_TARGET_LSN, "0/4400000", &err));
	assert_true(restore_choose_snapshot(r, &err));
	assert_string_equal(r->catalog.snapshots[r->chosen].id, SNAP_PB);
	assert_true(restore_check_wal_path(r, &err));
	assert_int_equal(r->recovery_timeline, 2);

	/* Immediate: consistent along timeline 2, not its own (timeline 1's
	 * segment 4 is not archived whole). */
	assert_true(bk_pg_target_parse(&r->target, BK_PG_TARGET_IMMEDIATE,
								   "immediate", &err));
	assert_true(restore_choose_snapshot(r, &err));
	assert_string_equal(r->catalog.snapshots[r->chosen].id, SNAP_PE);
	assert_true(restore_check_wal_path(r, &err));
	assert_int_equal(r->recovery_timeline, 2);

	/* Along timeline 1 only its .partial holds segment 4: refused before
	 * anything is written, pointing at timeline 2. */
	assert_true(bk_pg_target_parse(&r->target, BK_PG_TARGET_NONE, NULL, &err));
	r->target_timeline = "1";
	assert_true(restore_choose_snapshot(r, &err));
	assert_false(restore_check_wal_path(r, &err));
	assert_int_equal(err.code, BK_ERR_SEQUENCE);
	assert_error_contains(&err, "WAL file 000000010000000000000004 is "
								"missing from the archive");
	assert_non_null(strstr(err.hint, "--target-timeline 2"));

	/* A ends past the branch point: not restorable at all. */
	r->target_timeline = "latest";
	r->snapshot_id = SNAP_PA;
	assert_false(restore_choose_snapshot(r, &err));
	assert_error_contains(&err, "is not restorable");
	dense_waldump_end(r);
	bk_snapshot_catalog_free(&r->catalog);
	free(r);
}

/*
 * The same branch, from a snapshot that ends before segment 4: recovery
 * along timeline 1 to its end, or to an LSN in segment 4, needs timeline
 * 1's segment 4, which holds its WAL up to the branch point and is archived
 * only as .partial.  bk restore refused nothing (the segment after timeline
 * 1's newest looked like the end of the archive), and recovery ended at
 * 0/4000000 without timeline 1's WAL up to 0/4800000: refused now, pointing
 * at timeline 2.  An LSN before segment 4 and the latest timeline restore.
 */
static void
test_old_timeline_runs_into_branch_segment(void **state)
{
	WalFixture *f = *state;
	Restore *r = calloc(1, sizeof(*r));
	BkSnapshot snapshot = {
		.start_lsn = 0x1000028, .stop_lsn = 0x1000100, .timeline = 1};
	char meta[256];
	BkError err;

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	snprintf(meta, sizeof(meta),
			 "type=partial\ntimeline=1\nsegment-size=%u\n"
			 "system-identifier=7441\ncreated=2026-11-24T05:12:00.000Z",
			 SEG_SIZE);
	archive(f, "000000010000000000000004.partial", meta);
	archive_history(f, 2, "1:0/4800000");
	for (uint64_t segno = 4; segno <= 6; segno++)
		archive_segment(f, 2, segno);
	one_snapshot_begin(f, r, &snapshot);

	r->target_timeline = "1";
	assert_false(restore_check_wal_path(r, &err));
	assert_int_equal(err.code, BK_ERR_SEQUENCE);
	assert_error_contains(&err, "WAL file 000000010000000000000004 is "
								"missing from the archive");
	assert_non_null(strstr(err.hint, "--target-timeline 2"));
	assert_true(
		bk_pg_target_parse(&r->target, BK_PG_TARGET_LSN, "0/4000100", &err));
	assert_false(restore_check_wal_path(r, &err));
	assert_error_contains(&err, "000000010000000000000004");
	assert_true(
		bk_pg_target_parse(&r->target, BK_PG_TARGET_LSN, "0/3000100", &err));
	if (!restore_check_wal_path(r, &err))
		fail_msg("%s", err.message);
	assert_int_equal(r->recovery_timeline, 1);

	r->target_timeline = "latest";
	assert_true(bk_pg_target_parse(&r->target, BK_PG_TARGET_NONE, NULL, &err));
	if (!restore_check_wal_path(r, &err))
		fail_msg("%s", err.message);
	assert_int_equal(r->recovery_timeline, 2);

	dense_waldump_end(r);
	bk_wal_catalog_free(&r->catalog.wal);
	free(r);
}

/*
 * Just after a standby's promotion: timeline 1's segment 4, which holds
 * the branch point, is archived only as .partial, and the promoted server
 * (timeline 2) has not archived its segment 4 yet.  Recovery to the end
 * would ask for timeline 2's copy (not archived), then timeline 1's, which
 * bk wal-get refuses as a hole: a FATAL stop after the restore said done.
 * Refused before anything is written, saying what to wait for; a target
 * before segment 4 restores, and so does the end once timeline 2's copy is
 * archived.
 */
static void
test_branch_segment_not_archived_yet(void **state)
{
	WalFixture *f = *state;
	Restore *r = calloc(1, sizeof(*r));
	BkSnapshot snapshot = {
		.start_lsn = 0x1000028, .stop_lsn = 0x1000100, .timeline = 1};
	char meta[256];
	char got[64];
	BkError err;

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	snprintf(meta, sizeof(meta),
			 "type=partial\ntimeline=1\nsegment-size=%u\n"
			 "system-identifier=7441\ncreated=2026-11-24T05:12:00.000Z",
			 SEG_SIZE);
	archive(f, "000000010000000000000004.partial", meta);
	archive_history(f, 2, "1:0/4800000");
	one_snapshot_begin(f, r, &snapshot);

	/* What recovery would meet: one not archived, then a hole. */
	assert_int_equal(
		wal_get(f, "000000020000000000000004", true, got, sizeof(got)), 1);
	assert_int_equal(
		wal_get(f, "000000010000000000000004", true, got, sizeof(got)), 200);

	assert_false(restore_check_wal_path(r, &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_error_contains(&err, "WAL file 000000020000000000000004");
	assert_error_contains(&err, "is not archived yet");
	assert_non_null(strstr(err.hint, "pg_switch_wal()"));

	assert_true(
		bk_pg_target_parse(&r->target, BK_PG_TARGET_LSN, "0/3000100", &err));
	if (!restore_check_wal_path(r, &err))
		fail_msg("a target before segment 4: %s", err.message);

	/* Timeline 2's copy archived: the end restores along timeline 2. */
	bk_wal_catalog_free(&r->catalog.wal);
	archive_segment(f, 2, 4);
	assert_true(
		bk_wal_catalog_load(f->repo, SOURCE, NULL, &r->catalog.wal, &err));
	assert_true(bk_pg_target_parse(&r->target, BK_PG_TARGET_NONE, NULL, &err));
	if (!restore_check_wal_path(r, &err))
		fail_msg("with timeline 2's segment 4: %s", err.message);
	assert_int_equal(r->recovery_timeline, 2);

	dense_waldump_end(r);
	bk_wal_catalog_free(&r->catalog.wal);
	free(r);
}

/* ----------------------------------- a time target before a WAL gap */

#define XACT_LINE(xid, lsn, desc)                                              \
	"rmgr: Transaction len (rec/tot):     34/    34, tx: " xid ", lsn: " lsn   \
	", prev 0/00000000, desc: " desc "\n"

/* A record of another kind, which only an LSN target looks at. */
#define XLOG_LINE(lsn, desc)                                                   \
	"rmgr: XLOG        len (rec/tot):     24/    24, tx:          0, "         \
	"lsn: " lsn ", prev 0/00000000, desc: " desc "\n"

static void
test_waldump_xact_time(void **state)
{
	int64_t base;
	int64_t us;
	uint64_t lsn;

	(void) state;
	assert_true(bk_parse_timestamp("2026-11-24T05:12:00Z", &base));
	/* As pg_waldump prints a commit, with TZ=UTC. */
	assert_true(restore_waldump_xact_time(
		"rmgr: Transaction len (rec/tot):     34/    34, tx:        735, "
		"lsn: 0/0301A1D8, prev 0/0301A1A0, desc: COMMIT 2026-11-24 "
		"05:12:00.123456 UTC",
		&lsn, &us));
	assert_true(lsn == 0x301A1D8);
	assert_true(us == base + 123456);
	/* What follows the time: relations, subtransactions, invalidations. */
	assert_true(restore_waldump_xact_time(
		"rmgr: Transaction len (rec/tot):    130/   130, tx:        736, "
		"lsn: 1/00000028, prev 0/FFFFFFB0, desc: COMMIT 2026-11-24 "
		"05:12:00.000001 UTC; inval msgs: catcache 7 relcache 16384",
		&lsn, &us));
	assert_true(lsn == 0x100000028ull);
	assert_true(us == base + 1);
	assert_true(restore_waldump_xact_time(
		"rmgr: Transaction len (rec/tot):     42/    42, tx:        737, "
		"lsn: 0/03000100, prev 0/03000028, desc: ABORT 2026-11-24 "
		"05:12:01.000000 UTC; subxacts: 738",
		&lsn, &us));
	assert_true(us == base + 1000000);
	/* Prepared transactions: their xid first. */
	assert_true(restore_waldump_xact_time(
		"rmgr: Transaction len (rec/tot):     46/    46, tx:          0, "
		"lsn: 0/03000200, prev 0/03000100, desc: COMMIT_PREPARED 740: "
		"2026-11-24 05:12:02.500000 UTC",
		&lsn, &us));
	assert_true(lsn == 0x3000200 && us == base + 2500000);
	assert_true(restore_waldump_xact_time(
		"rmgr: Transaction len (rec/tot):     46/    46, tx:          0, "
		"lsn: 0/03000300, prev 0/03000200, desc: ABORT_PREPARED 741: "
		"2026-11-24 05:12:03.000000 UTC",
		&lsn, &us));
	assert_true(us == base + 3000000);

	/* Not what recovery checks a time target at. */
	assert_false(restore_waldump_xact_time(
		"rmgr: Transaction len (rec/tot):     38/    38, tx:        742, "
		"lsn: 0/03000400, prev 0/03000300, desc: ASSIGNMENT xtop 742: "
		"subxacts: 743",
		&lsn, &us));
	assert_false(restore_waldump_xact_time(
		"rmgr: Transaction len (rec/tot):     90/    90, tx:        744, "
		"lsn: 0/03000500, prev 0/03000400, desc: PREPARE gid t1: "
		"2026-11-24 05:12:04.000000 UTC",
		&lsn, &us));
	assert_false(restore_waldump_xact_time(
		"rmgr: XLOG        len (rec/tot):     98/    98, tx:          0, "
		"lsn: 0/03000600, prev 0/03000500, desc: RESTORE_POINT COMMIT "
		"2026-11-24 05:12:05.000000 UTC",
		&lsn, &us));
	assert_false(restore_waldump_xact_time(
		"rmgr: Heap        len (rec/tot):     59/    59, tx:        745, "
		"lsn: 0/03000700, prev 0/03000600, desc: INSERT off 3 flags 0x00",
		&lsn, &us));
	/* A zone other than UTC (pg_waldump run without TZ=UTC): unreadable,
	 * never taken for UTC. */
	assert_false(restore_waldump_xact_time(
		"rmgr: Transaction len (rec/tot):     34/    34, tx:        746, "
		"lsn: 0/03000800, prev 0/03000700, desc: COMMIT 2026-11-24 "
		"06:12:00.000000 CET",
		&lsn, &us));
	assert_false(restore_waldump_xact_time("", &lsn, &us));
	assert_false(restore_waldump_xact_time(
		"rmgr: Transaction len (rec/tot):     34/    34, tx:        747, "
		"lsn: 0/03000900, prev 0/03000800, desc: COMMIT ",
		&lsn, &us));
}

/*
 * A stand-in for pg_waldump: each archived "segment" holds the lines
 * pg_waldump would print for it (bk selects the records by LSN, as with
 * the real one; a record that crosses into the next segment is printed
 * only once that segment is given, so its line is in the next segment's);
 * each run is logged with its time zone, its range and the segments it
 * was given, and a segment it would not open (named for another timeline
 * than --timeline) too.  It ends with status 0, as pg_waldump does when
 * it reads to the end of what it was given.
 */
static const char fake_waldump[] =
	"#!/bin/sh\n"
	"while [ $# -gt 0 ]; do\n"
	"	case \"$1\" in\n"
	"	--path) dir=\"$2\"; shift ;;\n"
	"	--timeline) tli=$(printf %08X \"$2\"); shift ;;\n"
	"	--start) start=\"$2\"; shift ;;\n"
	"	--end) end=\"$2\"; shift ;;\n"
	"	esac\n"
	"	shift\n"
	"done\n"
	"files=$(cd \"$dir\" && ls)\n"
	"echo \"TZ=$TZ start=$start end=$end files=\"$files >>\"$BK_FAKE_LOG\"\n"
	"for f in $files; do\n"
	"	case \"$f\" in\n"
	"	\"$tli\"*) cat \"$dir/$f\" ;;\n"
	"	*) echo \"not on timeline $tli: $f\" >>\"$BK_FAKE_LOG\" ;;\n"
	"	esac\n"
	"done\n"
	"exit 0\n";

typedef struct GapFixture
{
	Restore *r;
	BkSnapshot snapshot;
	char log[600];
} GapFixture;

static void
archive_dump(WalFixture *f, uint32_t timeline, uint64_t segno,
			 const char *created, const char *lines)
{
	char name[32];
	char meta[256];

	bk_wal_segment_name(timeline, segno, SEG_SIZE, name);
	snprintf(meta, sizeof(meta),
			 "type=segment\ntimeline=%u\nsegment-size=%u\n"
			 "system-identifier=7441\ncreated=%s",
			 timeline, SEG_SIZE, created);
	archive_content(f, name, meta, lines);
}

/* The restore of a snapshot of timeline 1 that stops at 0/1000100. */
static void
gap_begin(GapFixture *g, WalFixture *f)
{
	char bin[600];
	char path[700];
	BkError err;

	memset(g, 0, sizeof(*g));
	snprintf(bin, sizeof(bin), "%s/bin", f->dir);
	assert_int_equal(mkdir(bin, 0700), 0);
	snprintf(path, sizeof(path), "%s/pg_waldump", bin);
	assert_true(bk_write_file_durable(path, fake_waldump, strlen(fake_waldump),
									  0700, &err));
	setenv("BK_PG_BINDIR", bin, 1);
	snprintf(g->log, sizeof(g->log), "%s/waldump.log", f->dir);
	setenv("BK_FAKE_LOG", g->log, 1);

	g->r = calloc(1, sizeof(*g->r));
	g->snapshot = (BkSnapshot){.start_lsn = 0x1000028,
							   .stop_lsn = 0x1000100,
							   .timeline = 1,
							   .restorable = true};
	strcpy(g->snapshot.id, "20261124T045900Z-00000000");
	g->r->program = "bk";
	g->r->source = SOURCE;
	g->r->repo = f->repo;
	g->r->decoder = bk_decoder_new(&f->ring, &err);
	assert_non_null(g->r->decoder);
	g->r->target_timeline = "latest";
	assert_true(
		bk_wal_catalog_load(f->repo, SOURCE, NULL, &g->r->catalog.wal, &err));
	g->r->catalog.snapshots = &g->snapshot;
	g->r->catalog.count = 1;
	g->r->chosen = 0;
}

static void
gap_end(GapFixture *g)
{
	bk_wal_catalog_free(&g->r->catalog.wal);
	bk_decoder_free(g->r->decoder);
	free(g->r);
	unsetenv("BK_PG_BINDIR");
	unsetenv("BK_FAKE_LOG");
}

/* Check the WAL for a restore to the target; the pg_waldump runs in runs. */
static bool
target_check(GapFixture *g, BkPgTargetType type, const char *target, char *runs,
			 size_t runs_len, BkError *err)
{
	char *text = NULL;
	size_t len = 0;
	BkError ignored;
	bool ok;

	unlink(g->log);
	assert_true(bk_pg_target_parse(&g->r->target, type, target, &ignored));
	ok = restore_check_wal_path(g->r, err);
	runs[0] = '\0';
	if (bk_read_file(g->log, 65536, &text, &len, &ignored))
		snprintf(runs, runs_len, "%.*s", (int) len, text);
	free(text);
	return ok;
}

static bool
gap_check(GapFixture *g, const char *time, char *runs, size_t runs_len,
		  BkError *err)
{
	return target_check(g, BK_PG_TARGET_TIME, time, runs, runs_len, err);
}

/*
 * Segment 5 is missing.  Segment 4 was archived at 05:30, late (a Kafka
 * outage), but its last commit is of 05:20:30: a target of 05:25 lies past
 * everything before the gap, and recovery would ask for segment 5.
 */
static void
test_time_target_gap(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	char runs[4096];
	BkError err;

	archive_dump(f, 1, 1, "2026-11-24T05:00:10.000Z",
				 XACT_LINE("730", "0/01000200",
						   "COMMIT 2026-11-24 05:00:00.000000 UTC"));
	archive_dump(f, 1, 2, "2026-11-24T05:10:10.000Z",
				 XACT_LINE("731", "0/02000100",
						   "COMMIT 2026-11-24 05:10:00.000000 UTC"));
	archive_dump(f, 1, 3, "2026-11-24T05:15:10.000Z", "");
	archive_dump(
		f, 1, 4, "2026-11-24T05:30:00.000Z",
		XACT_LINE("732", "0/04000100", "COMMIT 2026-11-24 05:20:00.000001 UTC")
			XACT_LINE("733", "0/04000200",
					  "COMMIT 2026-11-24 05:20:30.000000 UTC; inval msgs: "
					  "catcache 7"));
	archive_dump(f, 1, 6, "2026-11-24T05:31:00.000Z",
				 XACT_LINE("734", "0/06000100",
						   "COMMIT 2026-11-24 05:31:00.000000 UTC"));
	gap_begin(&g, f);

	/* The defect: segment 4 was archived after the target, yet nothing in
	 * it was committed after it.  Refused, giving the last commit. */
	assert_false(
		gap_check(&g, "2026-11-24 05:25:00+00", runs, sizeof(runs), &err));
	assert_int_equal(err.code, BK_ERR_SEQUENCE);
	assert_error_contains(&err, "WAL file 000000010000000000000005 is "
								"missing from the archive");
	assert_non_null(strstr(err.hint, "at or after the last commit or abort "
									 "before the gap "
									 "(2026-11-24T05:20:30.000000Z, at LSN "
									 "0/4000200)"));
	assert_non_null(strstr(err.hint, "before 2026-11-24T05:20:30.000000Z"));
	/* Read: segment 4 alone, with TZ=UTC; segment 3 was archived before the
	 * target, which ends the search there. */
	assert_string_equal(runs, "TZ=UTC start=0/4000000 end=0/5000000 "
							  "files=000000010000000000000004\n");

	/* Equal to the last commit's time: recovery_target_inclusive (on)
	 * replays that commit and goes on. */
	assert_false(
		gap_check(&g, "2026-11-24 05:20:30+00", runs, sizeof(runs), &err));
	assert_non_null(strstr(err.hint, "2026-11-24T05:20:30.000000Z"));

	/* A commit after the target before the gap: recovery stops there,
	 * without reading ahead into the gap. */
	assert_false(g.r->no_prefetch);
	assert_true(
		gap_check(&g, "2026-11-24 05:20:00+00", runs, sizeof(runs), &err));
	assert_string_equal(runs, "TZ=UTC start=0/4000000 end=0/5000000 "
							  "files=000000010000000000000004\n");
	assert_int_equal(g.r->recovery_timeline, 1);
	assert_true(g.r->no_prefetch);

	/* Segment 4 archived before the target: refused without reading. */
	assert_false(
		gap_check(&g, "2026-11-24 05:35:00+00", runs, sizeof(runs), &err));
	assert_string_equal(runs, "");
	assert_non_null(strstr(err.hint, "WAL file 000000010000000000000004 was "
									 "archived at "
									 "2026-11-24T05:30:00.000000Z"));
	/* ...but within the millisecond it was archived, it is read. */
	assert_false(gap_check(&g, "2026-11-24 05:30:00.000998+00", runs,
						   sizeof(runs), &err));
	assert_non_null(strstr(runs, "files=000000010000000000000004\n"));

	/* Other targets are refused as they were. */
	g.r->target.type = BK_PG_TARGET_NONE;
	assert_false(restore_check_wal_path(g.r, &err));
	assert_error_contains(&err, "WAL file 000000010000000000000005 is "
								"missing");
	assert_non_null(strstr(err.hint, "Choose a target before the gap"));
	gap_end(&g);
}

/*
 * Two rotations, A (segments 1-3) to B (4-5) to C (6-9), each segment read
 * by the source ten seconds past its minute and holding one commit at its
 * minute, and a keyring of A and C.  The WAL a time target needs runs to
 * the segment after the newest one read before the target: recovery looks
 * there for the first commit after it.  Up to segment 3 A suffices; from a
 * target in segment 3's minute on, recovery reads segment 4, sealed to B,
 * and the restore refuses before writing anything, naming segment 4.
 */
static void
test_time_target_wal_keys(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	BkKey key_a = f->key;
	BkKey key_b;
	BkKey key_c;
	BkKeyring a_and_c = {0};
	char b_hex[BK_KEY_ID_HEX_LEN + 1];
	char runs[4096];
	BkError err;
	static const struct
	{
		const char *target;
		bool refused;
	} cases[] = {
		{"2026-11-24 05:02:30+00", false},
		{"2026-11-24 05:03:30+00", true},
		{"2026-11-24 05:07:30+00", true},
	};

	test_key(&key_b, NULL);
	test_key(&key_c, NULL);
	for (uint64_t segno = 1; segno <= 9; segno++)
	{
		char created[64];
		char lsn[32];
		char commit[64];
		char line[512];

		f->key = segno <= 3 ? key_a : segno <= 5 ? key_b : key_c;
		snprintf(created, sizeof(created), "2026-11-24T05:%02u:10.000Z",
				 (unsigned) segno);
		snprintf(lsn, sizeof(lsn), "0/%02X000100", (unsigned) segno);
		snprintf(commit, sizeof(commit),
				 "COMMIT 2026-11-24 05:%02u:00.000000 UTC", (unsigned) segno);
		snprintf(line, sizeof(line), XACT_LINE("%u", "%s", "%s"),
				 (unsigned) (730 + segno), lsn, commit);
		archive_dump(f, 1, segno, created, line);
	}
	f->key = key_a;
	a_and_c.keys[a_and_c.count++] = key_a;
	a_and_c.keys[a_and_c.count++] = key_c;
	bk_key_id_hex(key_b.id, b_hex);
	f->ring = a_and_c;
	gap_begin(&g, f);
	g.r->ring = &a_and_c;
	g.r->config.key_file = "/etc/bk/restore.key";

	for (size_t caseIdx = 0; caseIdx < sizeof(cases) / sizeof(cases[0]);
		 caseIdx++)
	{
		if (!gap_check(&g, cases[caseIdx].target, runs, sizeof(runs), &err))
			fail_msg("%s: %s", cases[caseIdx].target, err.message);
		if (!cases[caseIdx].refused)
		{
			if (!restore_check_wal_keys(g.r, &err))
				fail_msg("%s, which needs key A only: %s",
						 cases[caseIdx].target, err.message);
			continue;
		}
		if (restore_check_wal_keys(g.r, &err))
			fail_msg("%s: recovery reads segment 4 (key B), yet accepted",
					 cases[caseIdx].target);
		assert_int_equal(err.code, BK_ERR_KEY);
		assert_error_contains(&err, "000000010000000000000004");
		assert_error_contains(&err, b_hex);
	}
	gap_end(&g);
}

/*
 * Two copies of segment 5 and a time target whose first commit after it
 * is in segment 3: recovery stops there and never reads segment 5, so the
 * restore goes on (with a warning), as with every target that ends
 * before the copies.
 */
static void
test_wal_conflict_after_time_target(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	char runs[4096];
	BkError err;

	for (uint64_t segno = 1; segno <= 6; segno++)
	{
		char created[64];
		char lsn[32];
		char commit[64];
		char line[512];

		snprintf(created, sizeof(created), "2026-11-24T05:%02u:10.000Z",
				 (unsigned) segno);
		snprintf(lsn, sizeof(lsn), "0/%02X000100", (unsigned) segno);
		snprintf(commit, sizeof(commit),
				 "COMMIT 2026-11-24 05:%02u:00.000000 UTC", (unsigned) segno);
		snprintf(line, sizeof(line), XACT_LINE("%u", "%s", "%s"),
				 (unsigned) (730 + segno), lsn, commit);
		archive_dump(f, 1, segno, created, line);
	}
	test_archive_conflict(f->repo, &f->key, &f->uploads, BK_KIND_WAL, SOURCE,
						  "000000010000000000000005",
						  "type=segment\ntimeline=1\nsegment-size=16777216\n"
						  "system-identifier=7441\n"
						  "created=2026-11-24T05:05:10.000Z",
						  (const uint8_t *) "other WAL", 9);
	gap_begin(&g, f);
	if (!gap_check(&g, "2026-11-24 05:02:30+00", runs, sizeof(runs), &err))
		fail_msg("refused, although recovery stops in segment 3: %s",
				 err.message);
	/*
	 * Segment 4 was read by the source at 05:04:10, before the target:
	 * every commit in it is older, so recovery surely reads segment 5 for
	 * the first one after the target, and bk wal-get would stop it there
	 * once the whole snapshot is written.
	 */
	if (gap_check(&g, "2026-11-24 05:04:30+00", runs, sizeof(runs), &err))
		fail_msg("accepted, although recovery reads segment 5's copies");
	assert_int_equal(err.code, BK_ERR_CONFLICT);
	assert_error_contains(&err, "000000010000000000000005");
	gap_end(&g);
}

/*
 * Everything after the snapshot was archived late, at 06:00: the search
 * goes back from the gap, 1, then 2 segments at a time, down to the
 * snapshot's stop, and a commit before the stop does not count (recovery
 * must reach consistency first).
 */
static void
test_time_target_gap_outage(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	char runs[4096];
	BkError err;

	archive_dump(
		f, 1, 1, "2026-11-24T06:00:00.000Z",
		XACT_LINE("729", "0/01000080", "COMMIT 2026-11-24 05:40:00.000000 UTC")
			XACT_LINE("730", "0/01000200",
					  "COMMIT 2026-11-24 05:00:00.000000 UTC"));
	archive_dump(f, 1, 2, "2026-11-24T06:00:00.000Z",
				 XACT_LINE("740", "0/02000100",
						   "COMMIT 2026-11-24 05:10:00.000000 UTC"));
	archive_dump(
		f, 1, 3, "2026-11-24T06:00:00.000Z",
		XACT_LINE("741", "0/03000100", "ASSIGNMENT xtop 741: subxacts: 742"));
	archive_dump(f, 1, 4, "2026-11-24T06:00:00.000Z", "");
	archive_dump(f, 1, 6, "2026-11-24T06:00:01.000Z", "");
	gap_begin(&g, f);

	assert_true(
		gap_check(&g, "2026-11-24 05:05:00+00", runs, sizeof(runs), &err));
	/* Segments 2-3 with 4, for a record crossing into it. */
	assert_string_equal(runs, "TZ=UTC start=0/4000000 end=0/5000000 "
							  "files=000000010000000000000004\n"
							  "TZ=UTC start=0/2000000 end=0/5000000 "
							  "files=000000010000000000000002 "
							  "000000010000000000000003 "
							  "000000010000000000000004\n");

	assert_false(
		gap_check(&g, "2026-11-24 05:10:00+00", runs, sizeof(runs), &err));
	assert_non_null(strstr(err.hint, "(2026-11-24T05:10:00.000000Z, at LSN "
									 "0/2000100)"));
	/* Segment 1 from the snapshot's stop: its commit of 05:40 before the
	 * stop does not count. */
	assert_string_equal(runs, "TZ=UTC start=0/4000000 end=0/5000000 "
							  "files=000000010000000000000004\n"
							  "TZ=UTC start=0/2000000 end=0/5000000 "
							  "files=000000010000000000000002 "
							  "000000010000000000000003 "
							  "000000010000000000000004\n"
							  "TZ=UTC start=0/1000100 end=0/3000000 "
							  "files=000000010000000000000001 "
							  "000000010000000000000002\n");

	/* The xid search shares the machinery. */
	g.r->chosen = -1;
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_XID, "740", &err));
	assert_true(restore_choose_snapshot(g.r, &err));
	assert_int_equal(g.r->chosen, 0);
	assert_true(g.r->found_lsn == 0x2000100);
	gap_end(&g);
}

/*
 * Nothing is missing, and the archive ends with segment 4, archived at
 * 05:30, whose last commit is of 05:20:30 (a quiet period after it, then a
 * switch).  A target after that commit is never reached: recovery replays
 * everything and PostgreSQL fails ("recovery ended before configured
 * recovery target was reached").  Refused before anything is written,
 * giving the last commit; a target before it is accepted, and so is the
 * end of the archive.
 */
static void
test_time_target_after_last_commit(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	char runs[4096];
	BkError err;

	archive_dump(f, 1, 1, "2026-11-24T05:00:10.000Z",
				 XACT_LINE("730", "0/01000200",
						   "COMMIT 2026-11-24 05:00:00.000000 UTC"));
	archive_dump(f, 1, 2, "2026-11-24T05:10:10.000Z",
				 XACT_LINE("731", "0/02000100",
						   "COMMIT 2026-11-24 05:10:00.000000 UTC"));
	archive_dump(f, 1, 3, "2026-11-24T05:15:10.000Z", "");
	archive_dump(
		f, 1, 4, "2026-11-24T05:30:00.000Z",
		XACT_LINE("732", "0/04000100", "COMMIT 2026-11-24 05:20:00.000001 UTC")
			XACT_LINE("733", "0/04000200",
					  "ABORT 2026-11-24 05:20:30.000000 UTC"));
	gap_begin(&g, f);

	assert_false(
		gap_check(&g, "2026-11-24 05:25:00+00", runs, sizeof(runs), &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_error_contains(&err, "no commit or abort record in the archived "
								"WAL of source \"" SOURCE "\"");
	assert_error_contains(&err, "up to WAL file 000000010000000000000004 "
								"without reaching the target");
	assert_non_null(strstr(err.hint, "The last commit or abort in the archive "
									 "is at 2026-11-24T05:20:30.000000Z (LSN "
									 "0/4000200)"));
	assert_non_null(strstr(err.hint, "before 2026-11-24T05:20:30.000000Z"));
	/* Segment 4 alone: segment 3 was archived before the target. */
	assert_string_equal(runs, "TZ=UTC start=0/4000000 end=0/5000000 "
							  "files=000000010000000000000004\n");

	/* After the newest segment was archived: refused without reading. */
	assert_false(
		gap_check(&g, "2026-11-24 05:35:00+00", runs, sizeof(runs), &err));
	assert_string_equal(runs, "");
	assert_non_null(strstr(err.hint, "WAL file 000000010000000000000004 was "
									 "archived at "
									 "2026-11-24T05:30:00.000000Z"));

	/* Before the last commit: recovery stops at it. */
	assert_true(
		gap_check(&g, "2026-11-24 05:20:00+00", runs, sizeof(runs), &err));
	assert_int_equal(g.r->recovery_timeline, 1);
	assert_false(g.r->no_prefetch);

	/* The end of the archive needs no commit. */
	g.r->target.type = BK_PG_TARGET_NONE;
	assert_true(restore_check_wal_path(g.r, &err));
	gap_end(&g);
}

/*
 * Segment 5 is missing, 6 archived: an LSN target in segment 4 is reached,
 * but PostgreSQL reading ahead from it would ask for segment 5 (fatal), so
 * prefetching is turned off; a target in segment 3 needs nothing of it.
 */
static void
test_lsn_target_before_gap_no_prefetch(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	BkError err;

	for (uint64_t segno = 1; segno <= 2; segno++)
		archive_dump(f, 1, segno, "2026-11-24T06:00:00.000Z", "");
	archive_dump(f, 1, 3, "2026-11-24T06:00:00.000Z",
				 XLOG_LINE("0/03FFFF00", "CHECKPOINT_ONLINE"));
	archive_dump(f, 1, 4, "2026-11-24T06:00:00.000Z",
				 XLOG_LINE("0/04FFFF00", "CHECKPOINT_ONLINE"));
	archive_dump(f, 1, 6, "2026-11-24T06:00:00.000Z", "");
	gap_begin(&g, f);

	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_LSN, "0/3F00000", &err));
	assert_true(restore_check_wal_path(g.r, &err));
	assert_false(g.r->no_prefetch);
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_LSN, "0/4F00000", &err));
	assert_true(restore_check_wal_path(g.r, &err));
	assert_true(g.r->no_prefetch);
	gap_end(&g);
}

static bool
lsn_check(GapFixture *g, const char *lsn, char *runs, size_t runs_len,
		  BkError *err)
{
	return target_check(g, BK_PG_TARGET_LSN, lsn, runs, runs_len, err);
}

/*
 * Segment 4 ends with a switch: its XLOG_SWITCH record starts at
 * 0/4000200 and ends at 0/4000218, the LSN pg_switch_wal() returns, and
 * nothing follows it in segment 4.  Recovery to 0/4000218 stops after the
 * first record at or after it, the first of segment 5, so it needs segment
 * 5: lost, the restore is refused (it was accepted, and bk wal-get stopped
 * recovery at the gap); archived, it is read; the same for a target inside
 * a record that crosses into the next segment (its line is in segment 6's
 * dump: pg_waldump prints it once it has both), and a target whose record
 * is not archived yet is accepted with a warning, as one past the archive.
 */
static void
test_lsn_target_after_switch(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	char runs[4096];
	BkError err;

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_dump(f, 1, segno, "2026-11-24T06:00:00.000Z", "");
	archive_dump(
		f, 1, 4, "2026-11-24T06:00:00.000Z",
		XACT_LINE("730", "0/04000100", "COMMIT 2026-11-24 05:00:00.000000 UTC")
			XLOG_LINE("0/04000200", "SWITCH"));
	archive_dump(f, 1, 6, "2026-11-24T06:00:01.000Z",
				 XLOG_LINE("0/05FFFFC8", "FPI_FOR_HINT")
					 XLOG_LINE("0/06000100", "CHECKPOINT_ONLINE"));
	gap_begin(&g, f);

	/* Segment 5 lost: refused, naming it, before anything is written. */
	assert_false(lsn_check(&g, "0/4000218", runs, sizeof(runs), &err));
	assert_int_equal(err.code, BK_ERR_SEQUENCE);
	assert_error_contains(&err, "WAL file 000000010000000000000005 is "
								"missing from the archive");
	assert_string_equal(runs, "TZ=UTC start=0/4000000 end=0/5000000 "
							  "files=000000010000000000000004\n");
	/* Anywhere in the unused rest of segment 4. */
	assert_false(lsn_check(&g, "0/4800000", runs, sizeof(runs), &err));
	assert_error_contains(&err, "000000010000000000000005 is missing");
	/* The switch record itself is in segment 4: reached, without reading
	 * ahead into the gap. */
	assert_true(lsn_check(&g, "0/4000200", runs, sizeof(runs), &err));
	assert_true(g.r->no_prefetch);

	/* Segment 5 archived: read, then the target is reached in it. */
	archive_dump(f, 1, 5, "2026-11-24T06:00:00.500Z",
				 XLOG_LINE("0/05000028", "RUNNING_XACTS")
					 XLOG_LINE("0/05FFFF00", "CHECKPOINT_ONLINE"));
	bk_wal_catalog_free(&g.r->catalog.wal);
	assert_true(
		bk_wal_catalog_load(f->repo, SOURCE, NULL, &g.r->catalog.wal, &err));
	g.r->no_prefetch = false;
	assert_true(lsn_check(&g, "0/4000218", runs, sizeof(runs), &err));
	assert_string_equal(runs, "TZ=UTC start=0/4000000 end=0/5000000 "
							  "files=000000010000000000000004\n"
							  "TZ=UTC start=0/4000000 end=0/6000000 "
							  "files=000000010000000000000004 "
							  "000000010000000000000005\n");
	assert_false(g.r->no_prefetch);
	assert_string_equal(g.r->stop_unarchived, "");

	/* Inside the record that crosses from segment 5 into 6: segment 6. */
	assert_true(lsn_check(&g, "0/5FFFFC0", runs, sizeof(runs), &err));
	assert_non_null(strstr(runs, "end=0/7000000 "
								 "files=000000010000000000000005 "
								 "000000010000000000000006\n"));
	/* Past segment 6's last record: segment 7, not archived yet. */
	assert_true(lsn_check(&g, "0/6000200", runs, sizeof(runs), &err));
	assert_string_equal(g.r->stop_unarchived, "000000010000000000000007");
	gap_end(&g);
}

/*
 * Timeline 2 branched off timeline 1 at 0/3800000; timeline 1's server
 * went on and committed transaction 742 at 0/3900000.  Timeline 2 never
 * had that commit (and reuses xid 742 for a transaction of its own), so a
 * recovery along timeline 2 told to stop at xid 742 would not stop where
 * bk found it: refused, naming the timeline that holds it.
 */
static void
test_xid_target_past_branch(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	BkError err;

	archive_dump(f, 1, 1, "2026-11-24T06:00:00.000Z", "");
	archive_dump(f, 1, 2, "2026-11-24T06:00:00.000Z", "");
	archive_dump(f, 1, 3, "2026-11-24T06:00:00.000Z",
				 XACT_LINE("742", "0/03900000",
						   "COMMIT 2026-11-24 05:50:00.000000 UTC"));
	archive_history(f, 2, "1:0/3800000");
	archive_dump(f, 2, 3, "2026-11-24T06:00:00.000Z", "");
	archive_dump(f, 2, 4, "2026-11-24T06:00:00.000Z", "");
	gap_begin(&g, f);

	g.r->chosen = -1;
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_XID, "742", &err));
	assert_true(restore_choose_snapshot(g.r, &err));
	assert_int_equal(g.r->chosen, 0);
	assert_true(g.r->found_lsn == 0x3900000);
	assert_false(restore_check_wal_path(g.r, &err));
	assert_error_contains(&err, "timeline 2 left timeline 1 at 0/3800000, "
								"before 0/3900001");
	assert_non_null(strstr(err.hint, "--target-timeline 1"));

	/* Along timeline 1, where it was found, it is reached. */
	g.r->target_timeline = "1";
	assert_true(restore_check_wal_path(g.r, &err));
	assert_int_equal(g.r->recovery_timeline, 1);
	gap_end(&g);
}

/*
 * Transaction 745 was prepared in segment 2 and committed with COMMIT
 * PREPARED in segment 3, by a session without an xid of its own: that
 * record is "tx: 0", the prepared xid in its description, and recovery
 * stops at it.  It was "not in the archived WAL" before.
 */
static void
test_xid_target_prepared(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	BkError err;

	archive_dump(f, 1, 1, "2026-11-24T06:00:00.000Z", "");
	archive_dump(f, 1, 2, "2026-11-24T06:00:00.000Z",
				 XACT_LINE("745", "0/02000100",
						   "PREPARE gid bk-2pc: "
						   "2026-11-24 05:40:00.000000 "
						   "UTC"));
	archive_dump(
		f, 1, 3, "2026-11-24T06:00:00.000Z",
		XACT_LINE("0", "0/03000100", "COMMIT 2026-11-24 05:49:00.000000 UTC")
			XACT_LINE("0", "0/03000200",
					  "COMMIT_PREPARED 745: 2026-11-24 "
					  "05:50:00.000000 UTC"));
	gap_begin(&g, f);

	g.r->chosen = -1;
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_XID, "745", &err));
	assert_true(restore_choose_snapshot(g.r, &err));
	assert_int_equal(g.r->chosen, 0);
	assert_true(g.r->found_lsn == 0x3000200);
	assert_true(restore_check_wal_path(g.r, &err));
	gap_end(&g);
}

#define RESTORE_POINT_LINE(name, lsn)                                          \
	"rmgr: XLOG        len (rec/tot):     98/    98, tx:          0, "         \
	"lsn: " lsn ", prev 0/00000000, desc: RESTORE_POINT " name "\n"

/*
 * The restore point "daily" was created while the snapshot was taken
 * (0/1000080, before its stop at 0/1000100) and again after it: recovery
 * from that snapshot stops at the first, before it is consistent, a FATAL
 * error after the whole restore.  Refused before anything is written.
 */
static void
test_name_target_reused(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	BkError err;

	archive_dump(f, 1, 1, "2026-11-24T06:00:00.000Z",
				 RESTORE_POINT_LINE("daily", "0/01000080"));
	archive_dump(f, 1, 2, "2026-11-24T06:00:00.000Z",
				 RESTORE_POINT_LINE("daily", "0/02000100")
					 RESTORE_POINT_LINE("weekly", "0/02000200"));
	archive_dump(f, 1, 3, "2026-11-24T06:00:00.000Z", "");
	gap_begin(&g, f);

	g.r->chosen = -1;
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_NAME, "daily", &err));
	assert_false(restore_choose_snapshot(g.r, &err));
	assert_error_contains(&err, "the restore point \"daily\" found at "
								"0/2000100 was also created at 0/1000080, "
								"while snapshot");
	assert_non_null(strstr(err.hint, "--target-lsn 0/2000100"));

	/* The same snapshot named with --snapshot: refused too. */
	g.r->chosen = -1;
	g.r->snapshot_id = g.snapshot.id;
	assert_false(restore_choose_snapshot(g.r, &err));
	assert_error_contains(&err, "the restore point \"daily\" was created "
								"at 0/1000080, while snapshot");
	g.r->snapshot_id = NULL;

	/* A name used once: found, accepted. */
	g.r->chosen = -1;
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_NAME, "weekly", &err));
	assert_true(restore_choose_snapshot(g.r, &err));
	assert_true(g.r->found_lsn == 0x2000200);
	gap_end(&g);
}

/*
 * Transaction 769 committed at 0/1000080, while the only snapshot was being
 * taken (start 0/1000028, stop 0/1000100): recovery from it stops there,
 * before it is consistent ("requested recovery stop point is before
 * consistent recovery point", after the whole restore).  Not after any
 * snapshot's stop, no snapshot restores to it: said so, without the hint
 * to name the snapshot with --snapshot, which was accepted.
 */
static void
test_xid_target_while_taken(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	BkError err;

	archive_dump(f, 1, 1, "2026-11-24T06:00:00.000Z",
				 XACT_LINE("769", "0/01000080",
						   "COMMIT 2026-11-24 05:00:00.000000 UTC"));
	archive_dump(f, 1, 2, "2026-11-24T06:00:00.000Z",
				 XACT_LINE("770", "0/02000100",
						   "COMMIT 2026-11-24 05:10:00.000000 UTC"));
	gap_begin(&g, f);

	g.r->chosen = -1;
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_XID, "769", &err));
	assert_false(restore_choose_snapshot(g.r, &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_error_contains(&err, "transaction 769 was committed or aborted at "
								"0/1000080, while snapshot "
								"20261124T045900Z-00000000 (start 0/1000028, "
								"stop 0/1000100), the oldest restorable, was "
								"being taken: no snapshot restores to it");
	assert_null(strstr(err.hint, "Name the snapshot"));
	assert_non_null(strstr(err.hint, "--snapshot 20261124T045900Z-00000000 "
									 "--target immediate"));

	/* Named with --snapshot: refused too (it was accepted). */
	g.r->chosen = -1;
	g.r->snapshot_id = g.snapshot.id;
	assert_false(restore_choose_snapshot(g.r, &err));
	assert_error_contains(&err, "transaction 769 was committed or aborted at "
								"0/1000080, while snapshot "
								"20261124T045900Z-00000000 was being taken: "
								"recovery from it would stop there, before "
								"it is consistent");

	/* One committed after the stop: accepted, with --snapshot or not. */
	g.r->chosen = -1;
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_XID, "770", &err));
	assert_true(restore_choose_snapshot(g.r, &err));
	assert_int_equal(g.r->chosen, 0);
	assert_true(g.r->found_lsn == 0);
	g.r->snapshot_id = NULL;
	g.r->chosen = -1;
	assert_true(restore_choose_snapshot(g.r, &err));
	assert_true(g.r->found_lsn == 0x2000100);

	/* Neither after the stop nor while it was taken: "not found". */
	g.r->chosen = -1;
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_XID, "771", &err));
	assert_false(restore_choose_snapshot(g.r, &err));
	assert_error_contains(&err, "is not in the archived WAL");
	gap_end(&g);
}

/*
 * Timeline 2 branched off timeline 1 at 0/3800000, in segment 3, and
 * timeline 1's server stopped there: its segment 3 is archived only as
 * .partial, timeline 2's copy holds timeline 1's commit of 741 (0/3100000)
 * and, after the branch point, timeline 2's own commit of 743 and a
 * restore point; its segment 4 the commit of 744.  Recovery along timeline
 * 2 replays them all: the search reads what it reads, timeline 1's
 * segments 1-2, then timeline 2's from 3.
 */
static void
test_xid_target_on_new_timeline(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	char runs[4096];
	char *text = NULL;
	size_t len = 0;
	BkError err;

	archive_dump(f, 1, 1, "2026-11-24T06:00:00.000Z", "");
	archive_dump(f, 1, 2, "2026-11-24T06:00:00.000Z",
				 XACT_LINE("740", "0/02000100",
						   "COMMIT 2026-11-24 05:10:00.000000 UTC"));
	archive_content(f, "000000010000000000000003.partial",
					"type=partial\ntimeline=1\nsegment-size=16777216\n"
					"system-identifier=7441\n"
					"created=2026-11-24T06:00:00.000Z",
					XACT_LINE("741", "0/03100000",
							  "COMMIT 2026-11-24 05:12:00.000000 UTC"));
	archive_history(f, 2, "1:0/3800000");
	archive_dump(
		f, 2, 3, "2026-11-24T06:00:00.000Z",
		XACT_LINE("741", "0/03100000", "COMMIT 2026-11-24 05:12:00.000000 UTC")
			XACT_LINE("743", "0/03900000",
					  "COMMIT 2026-11-24 05:50:00.000000 UTC")
				RESTORE_POINT_LINE("before_drop", "0/03A00000"));
	archive_dump(f, 2, 4, "2026-11-24T06:00:00.000Z",
				 XACT_LINE("744", "0/04100000",
						   "COMMIT 2026-11-24 05:55:00.000000 UTC"));
	gap_begin(&g, f);

	/* A commit on timeline 2, after the branch point. */
	g.r->chosen = -1;
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_XID, "744", &err));
	unlink(g.log);
	assert_true(restore_choose_snapshot(g.r, &err));
	assert_int_equal(g.r->chosen, 0);
	assert_true(g.r->found_lsn == 0x4100000);
	assert_int_equal(g.r->found_timeline, 2);
	assert_true(bk_read_file(g.log, 65536, &text, &len, &err));
	snprintf(runs, sizeof(runs), "%.*s", (int) len, text);
	free(text);
	/* One run along timeline 2's history: timeline 1's segments 1-2 and
	 * timeline 2's 3-4, as segments of timeline 2 for pg_waldump. */
	assert_string_equal(runs, "TZ=UTC start=0/1000100 end=0/5000000 "
							  "files=000000020000000000000001 "
							  "000000020000000000000002 "
							  "000000020000000000000003 "
							  "000000020000000000000004\n");
	assert_true(restore_check_wal_path(g.r, &err));
	assert_int_equal(g.r->recovery_timeline, 2);

	/* Timeline 2's own, in the segment where it branched off. */
	g.r->chosen = -1;
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_XID, "743", &err));
	assert_true(restore_choose_snapshot(g.r, &err));
	assert_true(g.r->found_lsn == 0x3900000);
	assert_int_equal(g.r->found_timeline, 2);
	assert_true(restore_check_wal_path(g.r, &err));

	/* Timeline 1's, before the branch point, in timeline 2's copy of the
	 * segment (timeline 1's is a .partial). */
	g.r->chosen = -1;
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_XID, "741", &err));
	assert_true(restore_choose_snapshot(g.r, &err));
	assert_true(g.r->found_lsn == 0x3100000);
	assert_int_equal(g.r->found_timeline, 1);
	assert_true(restore_check_wal_path(g.r, &err));
	assert_int_equal(g.r->recovery_timeline, 2);

	/* A restore point on timeline 2. */
	g.r->chosen = -1;
	assert_true(bk_pg_target_parse(&g.r->target, BK_PG_TARGET_NAME,
								   "before_drop", &err));
	assert_true(restore_choose_snapshot(g.r, &err));
	assert_true(g.r->found_lsn == 0x3A00000);
	assert_true(restore_check_wal_path(g.r, &err));

	/* Along timeline 1 it is never replayed: refused, naming timeline 2. */
	g.r->chosen = -1;
	g.r->target_timeline = "1";
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_XID, "744", &err));
	assert_true(restore_choose_snapshot(g.r, &err));
	assert_int_equal(g.r->found_timeline, 2);
	assert_false(restore_check_wal_path(g.r, &err));
	assert_error_contains(&err, "found at 0/4100000 on timeline 2");
	assert_non_null(strstr(err.hint, "--target-timeline 2"));
	gap_end(&g);
}

/*
 * Timeline 1's segments 1-3: commits of 740 (0/2000100, 05:10), 741
 * (0/3100000, 05:12) and 742 (0/3900000, 05:50).
 */
static void
archive_timeline1_commits(WalFixture *f)
{
	archive_dump(f, 1, 1, "2026-11-24T06:00:00.000Z", "");
	archive_dump(
		f, 1, 2, "2026-11-24T06:00:00.000Z",
		XACT_LINE("740", "0/02000100", "COMMIT 2026-11-24 05:10:00.000000 UTC")
			XLOG_LINE("0/02FFFF00", "CHECKPOINT_ONLINE"));
	archive_dump(
		f, 1, 3, "2026-11-24T06:00:00.000Z",
		XACT_LINE("741", "0/03100000", "COMMIT 2026-11-24 05:12:00.000000 UTC")
			XACT_LINE("742", "0/03900000",
					  "COMMIT 2026-11-24 05:50:00.000000 UTC"));
}

/*
 * Timeline 2 branched off timeline 1 at 0/3800000 and lost its segment 5:
 * recovery on timeline 2 reads timeline 1's segments 1-2, then timeline
 * 2's 3-4.  Timeline 1's own segment 3 holds, after the branch point, a
 * commit timeline 2 never had: it must not count.
 */
static void
test_time_target_gap_timelines(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	char runs[4096];
	BkError err;

	archive_timeline1_commits(f);
	archive_history(f, 2, "1:0/3800000");
	archive_dump(f, 2, 3, "2026-11-24T06:00:00.000Z",
				 XACT_LINE("741", "0/03100000",
						   "COMMIT 2026-11-24 05:12:00.000000 UTC"));
	archive_dump(f, 2, 4, "2026-11-24T06:00:00.000Z", "");
	archive_dump(f, 2, 6, "2026-11-24T06:00:00.000Z", "");
	gap_begin(&g, f);

	assert_true(
		gap_check(&g, "2026-11-24 05:11:00+00", runs, sizeof(runs), &err));
	assert_int_equal(g.r->recovery_timeline, 2);

	assert_false(
		gap_check(&g, "2026-11-24 05:20:00+00", runs, sizeof(runs), &err));
	assert_error_contains(&err, "WAL file 000000020000000000000005 is "
								"missing");
	assert_non_null(strstr(err.hint, "(2026-11-24T05:12:00.000000Z, at LSN "
									 "0/3100000)"));
	/* Timeline 1's segment 3 is read only for a record crossing into it
	 * from segment 2: its commit after the branch point is not taken. */
	assert_string_equal(runs, "TZ=UTC start=0/4000000 end=0/5000000 "
							  "files=000000020000000000000004\n"
							  "TZ=UTC start=0/3000000 end=0/5000000 "
							  "files=000000020000000000000003 "
							  "000000020000000000000004\n"
							  "TZ=UTC start=0/2000000 end=0/4000000 "
							  "files=000000010000000000000002 "
							  "000000010000000000000003\n"
							  "TZ=UTC start=0/1000100 end=0/3000000 "
							  "files=000000010000000000000001 "
							  "000000010000000000000002\n");
	gap_end(&g);
}

/*
 * Timeline 2 branched off timeline 1 at 0/3800000 (a restore to an earlier
 * moment: timeline 1 went on and its segment 3 is archived whole), and
 * timeline 2 has archived nothing yet but its history.  Recovery along
 * timeline 2 asks for its segment 3, is told "not found", and reads
 * timeline 1's, which holds timeline 2's history up to the branch point:
 * a commit there (741 at 0/3100000) is reached and must be found, as it
 * was before the search followed the recovery timeline.
 */
static void
test_xid_target_in_branch_segment_not_yet_archived(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	BkError err;

	archive_dump(f, 1, 1, "2026-11-24T06:00:00.000Z", "");
	archive_dump(f, 1, 2, "2026-11-24T06:00:00.000Z", "");
	archive_dump(
		f, 1, 3, "2026-11-24T06:00:00.000Z",
		XACT_LINE("741", "0/03100000", "COMMIT 2026-11-24 05:12:00.000000 UTC")
			XACT_LINE("742", "0/03900000",
					  "COMMIT 2026-11-24 05:50:00.000000 UTC"));
	archive_history(f, 2, "1:0/3800000");
	gap_begin(&g, f);

	g.r->chosen = -1;
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_XID, "741", &err));
	if (!restore_choose_snapshot(g.r, &err))
		fail_msg("741 not found: %s", err.message);
	assert_int_equal(g.r->chosen, 0);
	assert_true(g.r->found_lsn == 0x3100000);
	assert_int_equal(g.r->found_timeline, 1);
	assert_true(restore_check_wal_path(g.r, &err));
	assert_int_equal(g.r->recovery_timeline, 2);

	/* Past the branch point, on timeline 1 only: refused as before. */
	g.r->chosen = -1;
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_XID, "742", &err));
	assert_true(restore_choose_snapshot(g.r, &err));
	assert_true(g.r->found_lsn == 0x3900000);
	assert_false(restore_check_wal_path(g.r, &err));
	assert_non_null(strstr(err.hint, "--target-timeline 1"));
	gap_end(&g);
}

/*
 * Timeline 2 branched off timeline 1 at 0/3800000 (a restore to an earlier
 * moment; timeline 1 went on: its segments 3-5 are archived whole), and has
 * archived nothing but its history yet.  Recovery along timeline 2 asks for
 * 000000020000000000000003, is told it is beyond the end of the archive,
 * and reads 000000010000000000000003 instead (XLogFileReadAnyTLI), then
 * timeline 1's segments 4 and 5: it would replay timeline 1's WAL after the
 * branch point, which timeline 2 never had, and end at timeline 1's end.
 * Refused before anything is written, unless the target stops recovery
 * before it reads that copy.
 */
static void
test_recovery_would_read_old_timeline_past_branch(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	char runs[4096];
	BkError err;

	archive_timeline1_commits(f);
	archive_dump(f, 1, 4, "2026-11-24T06:00:00.000Z", "");
	archive_dump(f, 1, 5, "2026-11-24T06:00:00.000Z", "");
	archive_history(f, 2, "1:0/3800000");
	gap_begin(&g, f);

	/* The end of the archive along timeline 2: refused. */
	assert_false(restore_check_wal_path(g.r, &err));
	assert_error_contains(&err, "000000020000000000000003");
	assert_error_contains(&err, "000000010000000000000003");
	assert_non_null(strstr(err.hint, "--target-timeline 1"));
	/* Along timeline 1, named, it is what recovery replays. */
	g.r->target_timeline = "1";
	assert_true(restore_check_wal_path(g.r, &err));
	assert_int_equal(g.r->recovery_timeline, 1);
	g.r->target_timeline = "latest";

	/* An LSN recovery reaches before segment 3: never reads it. */
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_LSN, "0/2800000", &err));
	assert_true(restore_check_wal_path(g.r, &err));
	assert_int_equal(g.r->recovery_timeline, 2);
	/* In segment 3: read from timeline 1's copy; refused. */
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_LSN, "0/3100000", &err));
	assert_false(restore_check_wal_path(g.r, &err));

	/* A time recovery stops at before segment 3 (the commit of 05:10). */
	assert_true(
		gap_check(&g, "2026-11-24 05:05:00+00", runs, sizeof(runs), &err));
	assert_int_equal(g.r->recovery_timeline, 2);
	/* One it would go past segment 2 for: refused. */
	assert_false(
		gap_check(&g, "2026-11-24 05:11:00+00", runs, sizeof(runs), &err));
	assert_non_null(strstr(err.hint, "--target-timeline 1"));

	/* An xid found before the branch point: recovery stops there. */
	g.r->chosen = -1;
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_XID, "741", &err));
	assert_true(restore_choose_snapshot(g.r, &err));
	assert_true(g.r->found_lsn == 0x3100000);
	assert_true(restore_check_wal_path(g.r, &err));

	/* Once timeline 2 archives its segment 3, the end of the archive is
	 * what it holds. */
	archive_dump(f, 2, 3, "2026-11-24T06:00:00.000Z", "");
	bk_wal_catalog_free(&g.r->catalog.wal);
	assert_true(
		bk_wal_catalog_load(f->repo, SOURCE, NULL, &g.r->catalog.wal, &err));
	g.r->found_lsn = 0;
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_NONE, NULL, &err));
	assert_true(restore_check_wal_path(g.r, &err));
	assert_int_equal(g.r->recovery_timeline, 2);
	gap_end(&g);
}

/* Read the WAL catalog again, after archiving more. */
static void
reload_wal_catalog(GapFixture *g, WalFixture *f)
{
	BkError err;

	bk_wal_catalog_free(&g->r->catalog.wal);
	assert_true(
		bk_wal_catalog_load(f->repo, SOURCE, NULL, &g->r->catalog.wal, &err));
}

/*
 * A restore along timeline 1 (--target-timeline 1, or 'current') while
 * timeline 2 has WAL archived but no history file (on its way, or lost):
 * at the end of recovery PostgreSQL asks for 00000002.history to choose the
 * timeline it promotes to, and bk wal-get refuses it (timeline 2 may
 * descend from timeline 1 anywhere), so the restored server stops there,
 * after the whole replay.  Refused before anything is written, naming the
 * history file; accepted once it is archived.
 */
static void
test_later_timeline_without_history_refused(void **state)
{
	WalFixture *f = *state;
	GapFixture g;
	static const char *const timelines[] = {"1", "current"};
	BkError err;

	archive_timeline1_commits(f);
	archive_dump(f, 2, 3, "2026-11-24T06:00:00.000Z", "");
	archive_dump(f, 2, 4, "2026-11-24T06:00:00.000Z", "");
	gap_begin(&g, f);

	for (size_t tlIdx = 0; tlIdx < 2; tlIdx++)
	{
		g.r->target_timeline = timelines[tlIdx];
		assert_true(bk_pg_target_parse(&g.r->target, BK_PG_TARGET_LSN,
									   "0/2800000", &err));
		assert_false(restore_check_wal_path(g.r, &err));
		assert_int_equal(err.code, BK_ERR_SEQUENCE);
		assert_error_contains(&err, "bk cannot tell where timeline 2 of "
									"source \"" SOURCE "\" branched off");
		assert_error_contains(&err, "00000002.history");
		assert_error_contains(&err, "at the end of recovery along timeline 1");
		assert_non_null(strstr(err.hint, "00000002.history"));
		assert_non_null(strstr(err.hint, "put it back"));
		assert_int_equal(g.r->recovery_timeline, 0);
	}
	/* --target immediate promotes as well. */
	assert_true(bk_pg_target_parse(&g.r->target, BK_PG_TARGET_IMMEDIATE,
								   "immediate", &err));
	assert_false(restore_check_wal_path(g.r, &err));
	assert_error_contains(&err, "00000002.history");

	/* With its branch point known, timeline 1 is followed and promotes to
	 * timeline 3. */
	archive_history(f, 2, "1:0/3800000");
	reload_wal_catalog(&g, f);
	assert_true(restore_check_wal_path(g.r, &err));
	assert_int_equal(g.r->recovery_timeline, 1);
	assert_true(
		bk_pg_target_parse(&g.r->target, BK_PG_TARGET_LSN, "0/2800000", &err));
	assert_true(restore_check_wal_path(g.r, &err));
	assert_int_equal(g.r->recovery_timeline, 1);

	/* A later history archived without branch points, read without the
	 * key: unknown too, and the hint says to check it. */
	archive_history_text(f, 3, "", NULL);
	reload_wal_catalog(&g, f);
	assert_false(restore_check_wal_path(g.r, &err));
	assert_error_contains(&err, "history file 00000003.history");
	assert_non_null(strstr(err.hint, "bk verify --source " SOURCE));
	gap_end(&g);
}

/* ------------------------------------------------------------ record */

/*
 * A record as the extension writes it, with tablespaces, directories and
 * files spliced in, archived as snapshot id's snapshot.json and loaded.
 */
static bool load_record_failures(WalFixture *f, const char *id,
								 const char *tablespaces,
								 const char *directories, const char *files,
								 const char *failures, BkSnapRecord **record,
								 BkError *err);

static bool
load_record(WalFixture *f, const char *id, const char *tablespaces,
			const char *directories, const char *files, BkSnapRecord **record,
			BkError *err)
{
	return load_record_failures(f, id, tablespaces, directories, files, "",
								record, err);
}

/* load_record, with failures as the record's checksum_failures list. */
static bool
load_record_failures(WalFixture *f, const char *id, const char *tablespaces,
					 const char *directories, const char *files,
					 const char *failures, BkSnapRecord **record, BkError *err)
{
	char json[4096];
	char name[128];
	char meta[256];
	BkDecoder *decoder = bk_decoder_new(&f->ring, err);
	bool ok;

	assert_non_null(decoder);
	snprintf(json, sizeof(json),
			 "{\"format\":3,\"snapshot\":\"%s\",\"source\":\"" SOURCE "\","
			 "\"kind\":\"full\",\"parent\":null,\"label\":\"\","
			 "\"start_lsn\":\"0/5000028\",\"stop_lsn\":\"0/6000100\","
			 "\"start_timeline\":1,\"stop_timeline\":1,"
			 "\"start_time\":\"2026-11-24T05:12:00.123Z\","
			 "\"stop_time\":\"2026-11-24T05:13:41.500Z\","
			 "\"system_identifier\":\"7441\",\"pg_version\":150020,"
			 "\"segment_size\":16777216,\"block_size\":8192,"
			 "\"data_checksums\":true,\"page_digests\":true,"
			 "\"tablespaces\":[%s],\"directories\":[%s],\"files\":[%s],"
			 "\"bytes_read\":0,\"bytes_sent\":0,\"checksum_failures\":[%s]}",
			 id, tablespaces, directories, files, failures);
	snprintf(name, sizeof(name), "%s/%s", id, BK_SNAPSHOT_RECORD);
	snprintf(meta, sizeof(meta), "snapshot=%s\nkind=full", id);
	test_archive_object(f->repo, &f->key, &f->uploads, BK_KIND_SNAPSHOT, SOURCE,
						name, meta, (const uint8_t *) json, strlen(json));
	ok = bk_snapshot_record_load(f->repo, decoder, SOURCE, id, record, err);
	bk_decoder_free(decoder);
	return ok;
}

#define SHA_ZERO                                                               \
	"0000000000000000000000000000000000000000000000000000000000000000"
/* base/1/caf\xe9 (Latin-1), a file name a user left in the data directory */
#define LATIN1_FILE_HEX "626173652f312f636166e9"

/*
 * Paths that are not UTF-8 (a Latin-1 tablespace directory, a Latin-1 file
 * name) cannot be JSON strings: the extension writes their bytes in hex as
 * path_hex, and the record gives back exactly those bytes.
 */
static void
test_record_hex_paths(void **state)
{
	WalFixture *f = *state;
	BkSnapRecord *record = NULL;
	BkError err;

	assert_true(load_record(
		f, "20261124T051200Z-00000001",
		"{\"oid\":16390,\"path_hex\":\"2f7372762f7473FF\"}",
		"{\"path\":\"base\",\"mode\":\"0700\"},"
		"{\"path_hex\":\"626173652f31\",\"mode\":\"0750\"},"
		"{\"path_hex\":\"70675f74626c7370632f31363339302f6e6f6ee9\","
		"\"mode\":\"0700\"}",
		"{\"path\":\"PG_VERSION\",\"size\":3,\"mode\":\"0600\",\"mtime\":1,"
		"\"encoding\":\"whole\",\"sha256\":\"" SHA_ZERO "\"},"
		"{\"path_hex\":\"" LATIN1_FILE_HEX "\",\"size\":5,\"mode\":\"0640\","
		"\"mtime\":2,\"encoding\":\"whole\",\"sha256\":\"" SHA_ZERO "\"}",
		&record, &err));
	assert_int_equal(record->tablespace_count, 1);
	assert_int_equal(record->tablespaces[0].oid, 16390);
	assert_string_equal(record->tablespaces[0].path, "/srv/ts\xff");
	assert_int_equal(record->directory_count, 3);
	assert_string_equal(record->directories[0].path, "base");
	assert_string_equal(record->directories[1].path, "base/1");
	assert_int_equal(record->directories[1].mode, 0750);
	assert_string_equal(record->directories[2].path, "pg_tblspc/16390/non\xe9");
	assert_int_equal(record->file_count, 2);
	/* Sorted by their bytes: 'P' before 'b'. */
	assert_string_equal(record->files[0].path, "PG_VERSION");
	assert_string_equal(record->files[1].path, "base/1/caf\xe9");
	assert_int_equal(record->files[1].size, 5);
	assert_int_equal(record->files[1].mode, 0640);
	assert_ptr_equal(bk_snapshot_record_file(record, "base/1/caf\xe9"),
					 &record->files[1]);
	bk_snapshot_record_free(record);

	/* Why: the same path as raw bytes is not JSON to the parser. */
	record = NULL;
	assert_false(load_record(f, "20261124T051200Z-00000002", "", "",
							 "{\"path\":\"base/1/caf\xe9\",\"size\":0,"
							 "\"mode\":\"0600\",\"mtime\":1,"
							 "\"encoding\":\"whole\",\"sha256\":\"" SHA_ZERO
							 "\"}",
							 &record, &err));
	assert_error_contains(&err, "not JSON");
	assert_null(record);
}

/*
 * Pages whose checksum failed while the snapshot read them: the record
 * lists them, and bk verify and bk restore must say so (the restored
 * cluster has them as read), naming the first.  A list entry without a
 * block number is not what the extension writes.
 */
static void
test_record_checksum_failures(void **state)
{
	WalFixture *f = *state;
	BkSnapRecord *record = NULL;
	char note[BK_ERROR_MESSAGE_MAX];
	BkError err;

	assert_true(
		load_record(f, "20261124T051200Z-00000003", "", "", "", &record, &err));
	assert_int_equal(record->checksum_failure_count, 0);
	assert_false(bk_snapshot_record_checksum_note(record, note, sizeof(note)));
	assert_string_equal(note, "");
	bk_snapshot_record_free(record);

	record = NULL;
	assert_true(load_record_failures(
		f, "20261124T051200Z-00000004", "", "", "",
		"{\"path\":\"base/16384/16385\",\"block\":7},"
		"{\"path_hex\":\"" LATIN1_FILE_HEX "\",\"block\":0}",
		&record, &err));
	assert_int_equal(record->checksum_failure_count, 2);
	assert_string_equal(record->checksum_failure_path, "base/16384/16385");
	assert_int_equal(record->checksum_failure_block, 7);
	assert_true(bk_snapshot_record_checksum_note(record, note, sizeof(note)));
	assert_non_null(strstr(note, "snapshot 20261124T051200Z-00000004 read "
								 "pages whose checksum failed twice: its "
								 "record lists 2 (up to 5 per file or range), "
								 "the first \"base/16384/16385\" block 7"));
	bk_snapshot_record_free(record);

	record = NULL;
	assert_false(load_record_failures(f, "20261124T051200Z-00000005", "", "",
									  "", "{\"path\":\"base/1/2\"}", &record,
									  &err));
	assert_error_contains(&err, "a checksum failure lacks a path or a block");
	assert_null(record);
}

/*
 * bk verify with the key: a snapshot whose record lists pages that failed
 * their checksum is noted (the archive holds what the source had, so it is
 * no problem of the archive), in --json as in text.
 */
static void
test_verify_notes_checksum_failures(void **state)
{
	WalFixture *f = *state;
	BkVerifier verifier;
	const char *id = "20261101T000000Z-0000000a";
	char record[2048];
	bool found = false;
	BkError err;

	for (uint64_t segno = 1; segno <= 2; segno++)
		archive_segment(f, 1, segno);
	snprintf(record, sizeof(record),
			 "{\"format\":3,\"snapshot\":\"%s\",\"source\":\"" SOURCE "\","
			 "\"kind\":\"full\",\"parent\":null,\"label\":\"\","
			 "\"start_lsn\":\"0/1000028\",\"stop_lsn\":\"0/1800000\","
			 "\"start_timeline\":1,\"stop_timeline\":1,"
			 "\"start_time\":\"2020-11-24T00:00:00.000Z\","
			 "\"stop_time\":\"2020-11-24T00:01:00.000Z\","
			 "\"system_identifier\":\"7441\",\"pg_version\":150020,"
			 "\"segment_size\":%u,\"block_size\":8192,"
			 "\"data_checksums\":true,\"page_digests\":true,"
			 "\"tablespaces\":[],\"directories\":[],\"files\":[],"
			 "\"bytes_read\":0,\"bytes_sent\":0,\"checksum_failures\":"
			 "[{\"path\":\"base/16384/16385\",\"block\":7}]}",
			 id, SEG_SIZE);
	archive_snapshot_record(f, id, "full", NULL, 1, "0/1000028", "0/1800000", 0,
							0, record);

	verifier_open(&verifier, &f->ring);
	assert_true(bk_pg_verify(&verifier, f->repo, SOURCE, &err));
	for (size_t noteIdx = 0; noteIdx < json_array_size(verifier.note_list);
		 noteIdx++)
	{
		const char *text = json_string_value(json_object_get(
			json_array_get(verifier.note_list, noteIdx), "note"));

		if (text != NULL &&
			strstr(text, "read pages whose checksum failed twice: its record "
						 "lists 1 (up to 5 per file or range), the first "
						 "\"base/16384/16385\" block 7"))
			found = true;
	}
	assert_true(found);
	verifier_close(&verifier);
}

/* A path_hex that is not a path's bytes in hex is refused, naming it. */
static void
test_record_bad_hex_paths(void **state)
{
	WalFixture *f = *state;
	static const struct
	{
		const char *tablespaces;
		const char *directories;
		const char *files;
		const char *message;
	} cases[] = {
		/* An odd number of digits, not hex, a NUL byte, empty, a number. */
		{"{\"oid\":16390,\"path_hex\":\"2f73727\"}", "", "",
		 "\"path_hex\" \"2f73727\" is not a path's bytes in hex"},
		{"", "{\"path_hex\":\"62617365zz\",\"mode\":\"0700\"}", "",
		 "\"path_hex\" \"62617365zz\" is not a path's bytes in hex"},
		{"", "",
		 "{\"path_hex\":\"626100\",\"size\":0,\"mode\":\"0600\","
		 "\"mtime\":1,\"encoding\":\"whole\",\"sha256\":\"" SHA_ZERO "\"}",
		 "\"path_hex\" \"626100\" is not a path's bytes in hex"},
		{"", "{\"path_hex\":\"\",\"mode\":\"0700\"}", "",
		 "\"path_hex\" \"\" is not a path's bytes in hex"},
		{"{\"oid\":16390,\"path_hex\":47}", "", "",
		 "\"path_hex\" \"(not a string)\" is not a path's bytes in hex"},
		/* Both keys: which one holds the path is not clear. */
		{"", "",
		 "{\"path\":\"PG_VERSION\",\"path_hex\":\"" LATIN1_FILE_HEX "\","
		 "\"size\":0,\"mode\":\"0600\",\"mtime\":1,\"encoding\":\"whole\","
		 "\"sha256\":\"" SHA_ZERO "\"}",
		 "an entry has both \"path\" and \"path_hex\""},
		/* Decoded, a path is checked as any other. */
		{"", "{\"path_hex\":\"2e2e2f6574630a\",\"mode\":\"0700\"}", "",
		 "a directory has an unsafe path"},
		{"{\"oid\":16390,\"path_hex\":\"7473ff\"}", "", "",
		 "a tablespace lacks an oid or an absolute path"},
	};

	for (size_t caseIdx = 0; caseIdx < sizeof(cases) / sizeof(cases[0]);
		 caseIdx++)
	{
		BkSnapRecord *record = NULL;
		char id[64];
		BkError err;

		snprintf(id, sizeof(id), "20261124T051200Z-%08zx", 0x100 + caseIdx);
		assert_false(load_record(f, id, cases[caseIdx].tablespaces,
								 cases[caseIdx].directories,
								 cases[caseIdx].files, &record, &err));
		assert_error_contains(&err, "its record (snapshot.json) is invalid");
		assert_error_contains(&err, cases[caseIdx].message);
		assert_null(record);
	}
}

/*
 * A file entry with neither a sha256 nor ranges gives bk restore nothing to
 * compare the rebuilt file with: it was written unchecked.  The extension
 * never writes one, so only a record that is not what it wrote (yet
 * authentic) can; refused as invalid, whole or incremental.
 */
static void
test_record_file_without_digest(void **state)
{
	WalFixture *f = *state;
	static const char *const files[] = {
		"{\"path\":\"PG_VERSION\",\"size\":3,\"mode\":\"0600\",\"mtime\":1,"
		"\"encoding\":\"whole\"}",
		"{\"path\":\"base/1/1259\",\"size\":8192,\"mode\":\"0600\","
		"\"mtime\":1,\"encoding\":\"incremental\",\"blocks\":1}",
	};
	static const char *const paths[] = {"PG_VERSION", "base/1/1259"};

	for (size_t caseIdx = 0; caseIdx < 2; caseIdx++)
	{
		BkSnapRecord *record = NULL;
		char id[64];
		char message[128];
		BkError err;

		snprintf(id, sizeof(id), "20261124T051200Z-%08zx", 0x200 + caseIdx);
		assert_false(load_record(f, id, "", "", files[caseIdx], &record, &err));
		assert_int_equal(err.code, BK_ERR_FORMAT);
		assert_error_contains(&err, "its record (snapshot.json) is invalid");
		snprintf(message, sizeof(message),
				 "file \"%s\" has neither a sha256 nor ranges", paths[caseIdx]);
		assert_error_contains(&err, message);
		assert_null(record);
	}
}

/*
 * The backup_manifest bk restore writes names a file that is not UTF-8 by
 * Encoded-Path, as PostgreSQL's own does, so that it is JSON and
 * pg_verifybackup finds the file.
 */
static void
test_restore_manifest_encoded_path(void **state)
{
	Restore *r = calloc(1, sizeof(*r));
	BkSnapRecord *record = calloc(1, sizeof(*record));
	char *dir = test_mkdtemp();
	char path[PATH_MAX];
	char *text = NULL;
	size_t len = 0;
	BkError err;

	(void) state;
	assert_non_null(r);
	assert_non_null(record);
	record->file_count = 2;
	record->files = calloc(2, sizeof(BkSnapFile));
	r->results = calloc(2, sizeof(FileResult));
	assert_non_null(record->files);
	assert_non_null(r->results);
	record->files[0].path = strdup("PG_VERSION");
	record->files[0].size = 3;
	record->files[1].path = strdup("base/1/caf\xe9");
	record->files[1].size = 5;
	record->start_timeline = 1;
	record->start_lsn = 0x5000028;
	record->stop_lsn = 0x6000100;
	r->record = record;
	bk_strlcpy(r->pgdata, dir, sizeof(r->pgdata));

	assert_true(restore_write_manifest(r, &err));
	snprintf(path, sizeof(path), "%s/backup_manifest", dir);
	assert_true(bk_read_file(path, 65536, &text, &len, &err));
	assert_true(bk_manifest_check(text, len, &err));
	assert_non_null(strstr(text, "{ \"Path\": \"PG_VERSION\", "));
	assert_non_null(
		strstr(text, "{ \"Encoded-Path\": \"" LATIN1_FILE_HEX "\", "));
	assert_null(strstr(text, "caf\xe9"));

	free(text);
	bk_snapshot_record_free(record);
	free(r->results);
	free(r);
	test_rmdir(dir);
	free(dir);
}

/*
 * A cluster initialised with group access (initdb -g: directories 0750)
 * gets its data directory back 0750: PostgreSQL takes the mode of the files
 * it creates from it, so a directory left 0700 would stop giving the group
 * what the source gave it.  Without group access it stays 0700.
 */
static void
test_restore_pgdata_group_mode(void **state)
{
	Restore *r = calloc(1, sizeof(*r));
	BkSnapRecord *record = calloc(1, sizeof(*record));
	char *dir = test_mkdtemp();
	struct stat st;
	BkError err;

	(void) state;
	assert_non_null(r);
	assert_non_null(record);
	record->directory_count = 2;
	record->directories = calloc(2, sizeof(BkSnapDirectory));
	assert_non_null(record->directories);
	record->directories[0].path = strdup("base");
	record->directories[0].mode = 0750;
	record->directories[1].path = strdup("global");
	record->directories[1].mode = 0750;
	r->record = record;
	bk_strlcpy(r->pgdata_shown, dir, sizeof(r->pgdata_shown));
	assert_int_equal(chmod(dir, 0700), 0);
	r->pgdata_fd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(r->pgdata_fd >= 0);

	assert_true(restore_hand_over(r, &err));
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0750);

	record->directories[1].mode = 0700;
	assert_int_equal(chmod(dir, 0700), 0);
	assert_true(restore_hand_over(r, &err));
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);

	close(r->pgdata_fd);
	bk_snapshot_record_free(record);
	free(r);
	test_rmdir(dir);
	free(dir);
}

/*
 * JSON reports name paths that need not be UTF-8: the restore report gives
 * such a path's bytes in hex under key_hex, and a verify problem names a
 * Latin-1 file with \xNN for each stray byte, instead of jansson refusing
 * the string and the entry going missing.
 */
static void
test_json_output_non_utf8(void **state)
{
	json_t *spc = json_object();
	BkVerifier verifier = {.json = true};
	char *readable;

	(void) state;
	restore_json_path(spc, "original", "/srv/ts\xff");
	restore_json_path(spc, "location", "/srv/caf\xc3\xa9");
	assert_null(json_object_get(spc, "original"));
	assert_string_equal(json_string_value(json_object_get(spc, "original_hex")),
						"2f7372762f7473ff");
	assert_string_equal(json_string_value(json_object_get(spc, "location")),
						"/srv/caf\xc3\xa9");
	assert_null(json_object_get(spc, "location_hex"));
	json_decref(spc);

	readable = bk_utf8_readable("caf\xe9 caf\xc3\xa9 \xc3 \xed\xa0\x80");
	assert_non_null(readable);
	assert_string_equal(readable, "caf\\xe9 caf\xc3\xa9 \\xc3 \\xed\\xa0\\x80");
	free(readable);

	verifier.problem_list = json_array();
	bk_verify_problem(&verifier, "snap/data/base/1/caf%E9",
					  "snapshot x, file \"%s\": its object is missing",
					  "base/1/caf\xe9");
	assert_int_equal(verifier.problems, 1);
	assert_int_equal(json_array_size(verifier.problem_list), 1);
	assert_string_equal(
		json_string_value(json_object_get(
			json_array_get(verifier.problem_list, 0), "problem")),
		"snapshot x, file \"base/1/caf\\xe9\": its object is missing");
	json_decref(verifier.problem_list);
}

/*
 * A bk replaced while a restore runs (make install, a package upgrade):
 * /proc/self/exe then reads "<path> (deleted)", and restore_command must
 * name the path, where the new bk is.
 */
static void
test_restore_self_path_deleted(void **state)
{
	char *dir = test_mkdtemp();
	char path[PATH_MAX];
	char link[PATH_MAX + 16];
	char out[PATH_MAX];
	BkError err;
	FILE *file;

	(void) state;
	snprintf(path, sizeof(path), "%s/bk", dir);
	file = fopen(path, "w");
	assert_non_null(file);
	fclose(file);
	assert_true(restore_self_path(path, out, sizeof(out), &err));
	assert_string_equal(out, path);
	snprintf(link, sizeof(link), "%s (deleted)", path);
	assert_true(restore_self_path(link, out, sizeof(out), &err));
	assert_string_equal(out, path);
	/* Nothing there any more: no restore_command naming nothing. */
	assert_int_equal(unlink(path), 0);
	assert_false(restore_self_path(link, out, sizeof(out), &err));
	assert_error_contains(&err, "was removed while it ran");
	/* A file whose name ends so is taken as it is. */
	file = fopen(link, "w");
	assert_non_null(file);
	fclose(file);
	assert_true(restore_self_path(link, out, sizeof(out), &err));
	assert_string_equal(out, link);
	assert_int_equal(unlink(link), 0);
	test_rmdir(dir);
	free(dir);
}

static void
test_restore_command_repo(void **state)
{
	Restore *r = calloc(1, sizeof(*r));
	char *dir = test_mkdtemp();
	char cwd[PATH_MAX];
	char expected[PATH_MAX + 32];
	BkError err;

	r->source = SOURCE;
	r->common.repository = "s3://bk-bucket/prod/eu";
	assert_true(restore_build_restore_command(r, &err));
	assert_non_null(strstr(r->restore_command,
						   " wal-get --source " SOURCE
						   " --repo s3://bk-bucket/prod/eu "));
	assert_non_null(strstr(r->restore_command, " %f %p"));

	/* A relative directory: absolute, as the server runs it elsewhere. */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(mkdir("repo", 0700), 0);
	r->common.repository = "repo";
	assert_true(restore_build_restore_command(r, &err));
	assert_int_equal(chdir(cwd), 0);
	assert_non_null(realpath(dir, cwd));
	snprintf(expected, sizeof(expected), " --repo %s/repo ", cwd);
	assert_non_null(strstr(r->restore_command, expected));

	/* One that does not exist is refused (before anything is written). */
	r->common.repository = "/nonexistent/bk-repo";
	assert_false(restore_build_restore_command(r, &err));
	assert_error_contains(&err, "could not resolve");

	/*
	 * A line break would end restore_command's line in
	 * postgresql.auto.conf, and the server would not start: refused.
	 */
	r->common.repository = "s3://bk-bucket/prod\neu";
	assert_false(restore_build_restore_command(r, &err));
	assert_error_contains(&err, "holds a line break");
	snprintf(expected, sizeof(expected), "%s/line\nbreak", dir);
	assert_int_equal(mkdir(expected, 0700), 0);
	r->common.repository = expected;
	assert_false(restore_build_restore_command(r, &err));
	assert_error_contains(&err, "--repo");
	assert_error_contains(&err, "holds a line break");
	r->common.repository = NULL;
	r->config.config_path = expected;
	assert_false(restore_build_restore_command(r, &err));
	assert_error_contains(&err, "the configuration file");
	r->config.config_path = NULL;

	test_rmdir(dir);
	free(dir);
	free(r);
}

/* Each option that takes a value once: a second, other value is refused. */
static int
store_last(void *arg, int code, const char *value)
{
	if (value != NULL)
		*(const char **) arg = value;
	return BK_EXIT_OK;
}

static void
test_option_given_twice(void **state)
{
	static const struct option options[] = {
		{"source", required_argument, NULL, 's'},
		{"tablespace-map", required_argument, NULL, 't'},
		{"dry-run", no_argument, NULL, 'd'},
		BK_COMMON_LONG_OPTIONS,
		{NULL, 0, NULL, 0}};
	char *twice[] = {"bk test", "--source", "a", "--source=b", NULL};
	char *same[] = {"bk test", "--source", "a", "--source", "a", NULL};
	char *repeatable[] = {
		"bk test", "--tablespace-map", "/a=/b",     "--tablespace-map",
		"/c=/d",   "--dry-run",        "--dry-run", NULL};
	char *config[] = {"bk test", "--config", "x.conf", "--repo",
					  "/r",      "--config", "y.conf", NULL};
	const char *last = NULL;
	BkCommonOptions common;
	BkError err;

	memset(&common, 0, sizeof(common));
	assert_int_equal(
		bk_command_parse(4, twice, options, "", &common, store_last, &last),
		BK_EXIT_USAGE);
	memset(&common, 0, sizeof(common));
	assert_int_equal(
		bk_command_parse(5, same, options, "", &common, store_last, &last),
		BK_COMMAND_RUN);
	assert_string_equal(last, "a");
	memset(&common, 0, sizeof(common));
	assert_int_equal(bk_command_parse(7, repeatable, options, "", &common,
									  store_last, &last),
					 BK_COMMAND_RUN);
	assert_string_equal(last, "/c=/d");
	memset(&common, 0, sizeof(common));
	assert_int_equal(
		bk_command_parse(7, config, options, "", &common, store_last, &last),
		BK_EXIT_USAGE);

	/* The message names the option and both values. */
	{
		const char *seen[BK_CLI_OPTIONS_MAX] = {0};

		assert_true(bk_cli_option_repeat(options, 0, "a", seen, NULL, &err));
		assert_true(bk_cli_option_repeat(options, 0, "a", seen, NULL, &err));
		assert_false(bk_cli_option_repeat(options, 0, "b", seen, NULL, &err));
		assert_int_equal(err.code, BK_ERR_USAGE);
		assert_string_equal(err.message, "--source is given twice (\"a\" "
										 "and \"b\"); give it once");
		/* A short option (no long index) is not followed. */
		assert_true(bk_cli_option_repeat(options, -1, "c", seen, NULL, &err));
	}
}

/* ------------------------------------------- metadata planning trusts */

/*
 * Timeline 2 branched off timeline 1 in segment 4, so timeline 1's
 * segment 3, not archived, is a hole: bk wal-get must exit 200, never 1.
 * Someone lowers the branch point in 00000002.history's metadata (the
 * CRC recomputed): with it, segment 3 would lie past what timeline 1 is
 * needed for, "the end of the archive", and recovery would end and
 * promote there.  With the key the metadata is authenticated, and
 * timeline 2's history is unknown: a hole, and the reason says why.  A
 * damaged header (CRC not recomputed) is caught without the key too.
 */
static void
test_wal_altered_branch_points(void **state)
{
	WalFixture *f = *state;
	BkDecoder *decoder;
	BkWalCatalog catalog;
	const BkWalTimeline *tl2;
	char why[512];
	BkError err;

	decoder = bk_decoder_new(&f->ring, &err);
	assert_non_null(decoder);
	for (uint64_t segno = 1; segno <= 2; segno++)
		archive_segment(f, 1, segno);
	archive_history(f, 2, "1:0/4800000");
	for (uint64_t segno = 4; segno <= 5; segno++)
		archive_segment(f, 2, segno);
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, decoder, &catalog, &err));
	assert_true(bk_wal_segment_is_hole(&catalog, 1, 3, why, sizeof(why)));
	bk_wal_catalog_free(&catalog);

	test_alter_stored(f->location, SOURCE, "wal", "00000002.history",
					  "branch-points=1:0/4800000", "branch-points=1:0/2800000",
					  true);
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, decoder, &catalog, &err));
	tl2 = bk_wal_timeline(&catalog, 2);
	assert_non_null(tl2);
	assert_false(tl2->history_known);
	assert_int_equal(tl2->history_error, BK_ERR_AUTH);
	assert_non_null(strstr(tl2->history_problem, "failed authentication"));
	assert_true(bk_wal_segment_is_hole(&catalog, 1, 3, why, sizeof(why)));
	assert_non_null(strstr(why, "00000002.history"));
	bk_wal_catalog_free(&catalog);

	/* Damaged, not forged: the CRC says so, key or not. */
	test_alter_stored(f->location, SOURCE, "wal", "00000002.history",
					  "branch-points=1:0/2800000", "branch-points=1:0/1800000",
					  false);
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, NULL, &catalog, &err));
	assert_false(bk_wal_timeline(&catalog, 2)->history_known);
	assert_true(bk_wal_segment_is_hole(&catalog, 1, 3, why, sizeof(why)));
	bk_wal_catalog_free(&catalog);
	bk_decoder_free(decoder);
}

/*
 * The segment size numbers every segment, and so places every gap and
 * branch point: read from the newest segment's metadata, it is
 * authenticated when the key is at hand.  An altered one is not believed:
 * the segments before it give it; when none passes, the newest's failure is
 * the error, naming it.
 */
static void
test_wal_altered_segment_size(void **state)
{
	WalFixture *f = *state;
	BkDecoder *decoder;
	BkWalCatalog catalog;
	BkVerifier verifier;
	char *text;
	BkError err;

	decoder = bk_decoder_new(&f->ring, &err);
	assert_non_null(decoder);
	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	test_alter_stored(f->location, SOURCE, "wal", "000000010000000000000003",
					  "segment-size=16777216", "segment-size=33554432", true);
	/*
	 * The altered size is not believed: it comes from the segment before,
	 * which authenticates (a damaged newest segment must not stop every
	 * restore).
	 */
	assert_true(bk_wal_catalog_load(f->repo, SOURCE, decoder, &catalog, &err));
	assert_int_equal(catalog.segment_size, 16777216);
	assert_string_equal(catalog.newest_name, "000000010000000000000002");
	bk_wal_catalog_free(&catalog);
	/* None authenticates: the newest's failure is the error. */
	for (uint64_t segno = 1; segno <= 2; segno++)
	{
		char seg_name[32];

		snprintf(seg_name, sizeof(seg_name), "00000001%016" PRIX64, segno);
		test_alter_stored(f->location, SOURCE, "wal", seg_name,
						  "segment-size=16777216", "segment-size=33554432",
						  true);
	}
	assert_false(bk_wal_catalog_load(f->repo, SOURCE, decoder, &catalog, &err));
	assert_int_equal(err.code, BK_ERR_AUTH);
	assert_non_null(strstr(err.message, "000000010000000000000003"));
	assert_non_null(strstr(err.message, "failed authentication"));
	bk_decoder_free(decoder);

	/* bk verify with the key goes on, and reports that segment (the
	 * others it reports: the fixture's segments are not 16 MiB). */
	verifier_open(&verifier, &f->ring);
	for (int jobIdx = 0; jobIdx < BK_VERIFY_JOBS_MAX; jobIdx++)
		assert_non_null(verifier.workers[jobIdx].decoder =
							bk_decoder_new(&f->ring, &err));
	assert_true(bk_pg_verify(&verifier, f->repo, SOURCE, &err));
	text = json_dumps(verifier.problem_list, 0);
	assert_non_null(strstr(text, "000000010000000000000003\\\" chunk 0 of 1 "
								 "failed authentication"));
	free(text);
	for (int jobIdx = 0; jobIdx < BK_VERIFY_JOBS_MAX; jobIdx++)
		bk_decoder_free(verifier.workers[jobIdx].decoder);
	verifier_close(&verifier);
}

/*
 * A time target chooses the newest snapshot that stopped before it, by the
 * stop-time in its record's metadata.  Snapshot S stopped at 00:01:00,
 * after the target 00:00:30: nothing fits.  A record altered in place
 * fails its tag when the restore decrypts it; but one the plan read that
 * is not the one decrypted later (another attempt at the record, sealed
 * with the public key, swapped in while the plan is made and back
 * after) would pass, and the restore would go on from a snapshot chosen
 * by metadata it never authenticated: refused, naming the snapshot.
 */
static void
test_restore_swapped_record_meta(void **state)
{
	WalFixture *f = *state;
	Restore *r = calloc(1, sizeof(*r));
	const char *id = "20201124T000000Z-0000000a";
	char record[2048];
	char name[128];
	char path[1024];
	char meta[1024];
	char *genuine;
	size_t genuine_len;
	BkError err;

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	snprintf(record, sizeof(record),
			 "{\"format\":3,\"snapshot\":\"%s\",\"source\":\"" SOURCE "\","
			 "\"kind\":\"full\",\"parent\":null,\"label\":\"\","
			 "\"start_lsn\":\"0/1000028\",\"stop_lsn\":\"0/1800000\","
			 "\"start_timeline\":1,\"stop_timeline\":1,"
			 "\"start_time\":\"2020-11-24T00:00:00.000Z\","
			 "\"stop_time\":\"2020-11-24T00:01:00.000Z\","
			 "\"system_identifier\":\"7441\",\"pg_version\":150020,"
			 "\"segment_size\":%u,\"block_size\":8192,"
			 "\"data_checksums\":true,\"page_digests\":true,"
			 "\"tablespaces\":[],\"directories\":[],\"files\":[],"
			 "\"bytes_read\":0,\"bytes_sent\":0,\"checksum_failures\":[]}",
			 id, SEG_SIZE);
	archive_snapshot_record(f, id, "full", NULL, 1, "0/1000028", "0/1800000", 0,
							0, record);
	r->program = "bk";
	r->source = SOURCE;
	r->repo = f->repo;
	r->target_timeline = "latest";
	r->decoder = bk_decoder_new(&f->ring, &err);
	assert_non_null(r->decoder);
	assert_true(bk_pg_target_parse(&r->target, BK_PG_TARGET_TIME,
								   "2020-11-24 00:00:30+00", &err));
	assert_true(bk_snapshot_catalog_load(f->repo, SOURCE, r->decoder,
										 &r->catalog, &err));
	assert_false(restore_choose_snapshot(r, &err));
	bk_snapshot_catalog_free(&r->catalog);

	/* Another attempt at the record, whose metadata says 00:00:10. */
	snprintf(name, sizeof(name), "%s/%s", id, BK_SNAPSHOT_RECORD);
	snprintf(path, sizeof(path), "%s/" SOURCE "/snapshot/%s", f->location,
			 name);
	assert_true(bk_read_file(path, 1024 * 1024, &genuine, &genuine_len, &err));
	assert_int_equal(unlink(path), 0);
	snprintf(meta, sizeof(meta),
			 "snapshot=%s\nkind=full\nstart-lsn=0/1000028\n"
			 "stop-lsn=0/1800000\ntimeline=1\n"
			 "start-time=2020-11-24T00:00:00.000Z\n"
			 "stop-time=2020-11-24T00:00:10.000Z\nobjects=0\nfiles=0\n"
			 "bytes=4\nsystem-identifier=7441\npg-version=160000\n"
			 "segment-size=%u",
			 id, SEG_SIZE);
	test_archive_object(f->repo, &f->key, &f->uploads, BK_KIND_SNAPSHOT, SOURCE,
						name, meta, (const uint8_t *) record, strlen(record));
	assert_true(bk_snapshot_catalog_load(f->repo, SOURCE, r->decoder,
										 &r->catalog, &err));
	assert_true(restore_choose_snapshot(r, &err));
	assert_int_equal(r->chosen, 0);

	/* The genuine record back before the restore decrypts it. */
	assert_true(bk_write_file_durable(path, genuine, genuine_len, 0644, &err));
	free(genuine);
	assert_false(restore_load_chain(r, &err));
	assert_int_equal(err.code, BK_ERR_AUTH);
	assert_non_null(strstr(err.message, id));
	assert_non_null(strstr(err.message, "altered or damaged"));

	for (int linkIdx = 0; linkIdx < r->chain_len; linkIdx++)
		bk_snapshot_record_free(r->chain[linkIdx]);
	free(r->chain);
	bk_snapshot_catalog_free(&r->catalog);
	bk_decoder_free(r->decoder);
	free(r);
}

/*
 * A restore point name used again: recovery stops at the first use after
 * the snapshot it starts from, and the search settles on the snapshot
 * whose window (up to the next snapshot's stop) holds a use.  A later
 * snapshot's stop LSN moved up in its record's metadata (the CRC
 * recomputed) would widen the window of the one before it, and the
 * restore would stop at an older use.  With a name target every record's
 * metadata is authenticated before the search: refused, naming it.
 */
static void
test_name_target_altered_record(void **state)
{
	WalFixture *f = *state;
	Restore *r = calloc(1, sizeof(*r));
	char name[128];
	BkError err;

	for (uint64_t segno = 1; segno <= 3; segno++)
		archive_segment(f, 1, segno);
	archive_snapshot(f, SNAP_P, "full", NULL, 1, "0/1000028", "0/1800000", 1,
					 1);
	archive_snapshot(f, SNAP_K, "full", NULL, 1, "0/2000028", "0/2800000", 1,
					 1);
	snprintf(name, sizeof(name), "%s/%s", SNAP_K, BK_SNAPSHOT_RECORD);
	test_alter_stored(f->location, SOURCE, "snapshot", name,
					  "stop-lsn=0/2800000", "stop-lsn=0/2F00000", true);
	r->program = "bk";
	r->source = SOURCE;
	r->repo = f->repo;
	r->target_timeline = "latest";
	r->common.json = true; /* no progress line */
	r->decoder = bk_decoder_new(&f->ring, &err);
	assert_non_null(r->decoder);
	assert_true(
		bk_pg_target_parse(&r->target, BK_PG_TARGET_NAME, "daily", &err));
	assert_true(bk_snapshot_catalog_load(f->repo, SOURCE, r->decoder,
										 &r->catalog, &err));
	assert_int_equal(r->catalog.count, 2);
	assert_false(restore_choose_snapshot(r, &err));
	assert_int_equal(err.code, BK_ERR_AUTH);
	assert_error_contains(&err, SNAP_K);
	assert_error_contains(&err, "failed authentication");

	bk_snapshot_catalog_free(&r->catalog);
	bk_decoder_free(r->decoder);
	free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timestamps),
		cmocka_unit_test(test_target_parse),
		cmocka_unit_test(test_option_given_twice),
		cmocka_unit_test(test_choose_snapshot),
		cmocka_unit_test(test_retention),
		cmocka_unit_test_setup_teardown(test_wal_gap, wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_wal_timelines, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_wal_branch_segment_missing,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_wal_timeline_lost_between,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_verify_conflict_verdict_any_order,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_verify_history_file_missing,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_list_verify_skip_empty_source,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_list_verify_no_repository,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_tablespace_map_twice, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_wal_get_object_not_a_file,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_wal_catalog_new_key_missing,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_verify_new_key_missing, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_child_of_parent_without_wal,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_expired_timeline_is_hole,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_catalog_order_within_second,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_keeps_next_parent_per_database, wal_setup,
			wal_teardown),
		cmocka_unit_test_setup_teardown(test_expire_next_parent_unnamed_records,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_verify_object_removed_meanwhile,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_verify_listed_object_said_missing,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_verify_snapshot_removed_meanwhile,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_forged_snapshot_keeps_genuine, wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_expire_key_not_in_keyring,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_old_key_missing_keeps_snapshot, wal_setup,
			wal_teardown),
		cmocka_unit_test_setup_teardown(test_expire_keeps_parent_of_newer,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_expire_keeps_parent_of_arriving,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_keeps_full_of_current_timeline, wal_setup,
			wal_teardown),
		cmocka_unit_test_setup_teardown(test_expire_keeps_other_engine,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_expire_keeps_other_system,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_keeps_parent_the_source_may_name, wal_setup,
			wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_keeps_arriving_snapshot_with_older_id, wal_setup,
			wal_teardown),
		cmocka_unit_test_setup_teardown(test_expire_removes_dependents_first,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_removes_dependents_first_clock_back, wal_setup,
			wal_teardown),
		cmocka_unit_test_setup_teardown(test_expire_removes_oldest_wal_first,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_unreadable_record_removes_nothing, wal_setup,
			wal_teardown),
		cmocka_unit_test_setup_teardown(test_expire_record_gone_when_read,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_dry_run_record_gone_when_read, wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_expire_beside_removal, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_expire_record_gone_store_error,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_keyed_record_gone_when_decrypted, wal_setup,
			wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_record_not_found_still_listed, wal_setup, wal_teardown),
		cmocka_unit_test(test_expire_two_processes),
		cmocka_unit_test_setup_teardown(
			test_expire_unknown_history_keeps_current_timeline, wal_setup,
			wal_teardown),
		cmocka_unit_test(test_snapshot_path_encode),
		cmocka_unit_test_setup_teardown(test_wal_prefetch_stale_spool,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_wal_listed_but_not_read, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_wal_missing_history, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_wal_missing_history_unknown_descendant, wal_setup,
			wal_teardown),
		cmocka_unit_test_setup_teardown(test_wal_later_timeline_without_history,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_expired_leaf_timeline_is_hole,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_expired_record_never_lowered,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_expired_kept_part_is_hole,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_wal_history_without_branch_points,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_verify_notes_unchecked_history,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_wal_get_backup_conflict_not_segment, wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_wal_conflict_refused, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_recovery_timeline, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_ends_past_branch,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_target_beyond_archive_of_its_timeline, wal_setup,
			wal_teardown),
		cmocka_unit_test_setup_teardown(test_wal_keys_middle_rotation,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_choose_snapshot_on_timeline,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_choose_skips_damaged_newest,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_verify_damaged_record, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_old_timeline_runs_into_branch_segment, wal_setup,
			wal_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_ends_in_branch_segment,
										wal_setup, wal_teardown),
		cmocka_unit_test(test_restore_self_path_deleted),
		cmocka_unit_test(test_restore_command_repo),
		cmocka_unit_test_setup_teardown(test_record_checksum_failures,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_verify_notes_checksum_failures,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_record_hex_paths, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_record_bad_hex_paths, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_record_file_without_digest,
										wal_setup, wal_teardown),
		cmocka_unit_test(test_restore_manifest_encoded_path),
		cmocka_unit_test(test_restore_pgdata_group_mode),
		cmocka_unit_test(test_json_output_non_utf8),
		cmocka_unit_test(test_waldump_xact_time),
		cmocka_unit_test(test_canonical_path),
		cmocka_unit_test(test_open_root),
		cmocka_unit_test(test_tablespace_through_link),
		cmocka_unit_test_setup_teardown(test_time_target_gap, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_time_target_wal_keys, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_branch_segment_not_archived_yet,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_wal_conflict_after_time_target,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_time_target_gap_outage, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_time_target_gap_timelines,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_xid_target_past_branch, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_xid_target_prepared, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_time_target_after_last_commit,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_lsn_target_after_switch, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_lsn_target_before_gap_no_prefetch,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_name_target_reused, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_xid_target_while_taken, wal_setup,
										wal_teardown),
		cmocka_unit_test_setup_teardown(test_xid_target_on_new_timeline,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_xid_target_in_branch_segment_not_yet_archived, wal_setup,
			wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_recovery_would_read_old_timeline_past_branch, wal_setup,
			wal_teardown),
		cmocka_unit_test_setup_teardown(
			test_later_timeline_without_history_refused, wal_setup,
			wal_teardown),
		cmocka_unit_test_setup_teardown(test_wal_altered_branch_points,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_wal_altered_segment_size,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_restore_swapped_record_meta,
										wal_setup, wal_teardown),
		cmocka_unit_test_setup_teardown(test_name_target_altered_record,
										wal_setup, wal_teardown),
	};

	setenv("TZ", "UTC", 1);
	tzset();
	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
