/*
 * test_mariadb.c
 *		The decisions of a MariaDB restore, without servers, on a real
 *		repository directory with real frames: where the archived binlog
 *		stops being continuous and what a restore to the latest does there;
 *		when a snapshot whose objects arrive apart is complete, and the
 *		check of its parts before a restore touches the server; what
 *		bk expire keeps when the agent host's clock stepped back; that
 *		bk restore's connections send no file a server asks for.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "binlog_catalog.h"
#include "bk_crypto.h"
#include "bk_mariadb_part.h"
#include "bk_snapshot_format.h"
#include "bk_util.h"
#include "cli.h"
#include "commands.h"
#include "engine.h"
#include "mariadb.h"
#include "repo.h"
#include "repo_backend.h"
#include "restore.h"
#include "snapshot_catalog.h"
#include "testrepo.h"
#include "times.h"
#include "verify.h"

#define SOURCE "test-mariadb"

typedef struct Fixture
{
	char *dir;
	char location[512];
	BkKey key;
	BkKeyring ring;
	BkRepo *repo;
	BkDecoder *decoder;
	int uploads;
	int groups; /* transactions the last plan replays */
	/* the temporary table from before the snapshot it uses, if any */
	char temp_table[520];
	/* the GTID it replays after its domain's last, that one, and where */
	char backwards[64];
	char backwards_after[64];
	char backwards_at[64];
	uint64_t largest_statement; /* the plan's */
	/*
	 * Set: a file is left in the plan's work directory before it is
	 * removed, as mariadb-binlog --local-load leaves one; work_dir is it.
	 */
	bool leave_load_file;
	char work_dir[4096];
} Fixture;

/* The faults of __wrap_bk_repo_open_with, below. */
static int command_faults;
static const char *command_fault_key;

static int
setup(void **state)
{
	Fixture *f = calloc(1, sizeof(*f));
	BkError err;

	command_faults = 0;
	f->dir = test_mkdtemp();
	snprintf(f->location, sizeof(f->location), "%s/repo", f->dir);
	test_key(&f->key, &f->ring);
	f->repo = bk_repo_open(f->location, true, &err);
	assert_non_null(f->repo);
	assert_true(bk_repo_spool_open(f->repo, "unit-mariadb", &err));
	f->decoder = bk_decoder_new(&f->ring, &err);
	assert_non_null(f->decoder);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	Fixture *f = *state;

	bk_decoder_free(f->decoder);
	bk_repo_close(f->repo);
	test_rmdir(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

/* Archive an object as the shipper would. */
static void
archive(Fixture *f, int kind, const char *name, const char *meta,
		const uint8_t *content, size_t len)
{
	test_archive_object(f->repo, &f->key, &f->uploads, kind, SOURCE, name, meta,
						content, len);
}

/*
 * A binlog file's first range: the magic bytes alone (a file with no
 * event yet), closed by a ROTATE to the next file when rotate is set.
 */
static void
archive_binlog_start(Fixture *f, const char *file, bool rotate)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	char meta[256];

	snprintf(name, sizeof(name), "%s/0000000000-0000000004", file);
	snprintf(meta, sizeof(meta),
			 "type=binlog-range\nbinlog-file=%s\nstart=0\nend=4\nevents=0\n"
			 "gtid=\ncreated=2026-11-24T05:12:00.000Z%s",
			 file, rotate ? "\nclosed=rotate" : "");
	archive(f, BK_KIND_BINLOG, name, meta,
			(const uint8_t *) "\xfe"
							  "bin",
			4);
}

/* A range past a hole: its bytes are never read by what is tested. */
static void
archive_binlog_range(Fixture *f, const char *file, uint64_t start, uint64_t end)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	char meta[256];
	uint8_t *bytes = calloc(1, (size_t) (end - start));

	snprintf(name, sizeof(name), "%s/%010" PRIu64 "-%010" PRIu64, file, start,
			 end);
	snprintf(meta, sizeof(meta),
			 "type=binlog-range\nbinlog-file=%s\nstart=%" PRIu64
			 "\nend=%" PRIu64 "\nevents=1\ngtid=\n"
			 "created=2026-11-24T05:12:00.000Z",
			 file, start, end);
	archive(f, BK_KIND_BINLOG, name, meta, bytes, (size_t) (end - start));
	free(bytes);
}

/*
 * plan_from
 *		restore_plan_replay from a snapshot at mariadb-bin.000001:
 *		snapshot_pos with GTID state snapshot_gtid to the target (position:
 *		"FILE:POS"; time: an ISO 8601 time).  plan_target: from the start
 *		of the file.
 */
static bool
plan_from(Fixture *f, uint64_t snapshot_pos, const char *snapshot_gtid,
		  RestoreTargetType type, const char *target, BkError *err)
{
	MariadbRestore *r = calloc(1, sizeof(*r));
	MariadbSnapshot snap = {0};
	bool ok;

	bk_strlcpy(snap.id, "20261124T051200Z-0000abcd", sizeof(snap.id));
	bk_strlcpy(snap.binlog_file, "mariadb-bin.000001",
			   sizeof(snap.binlog_file));
	snap.binlog_pos = snapshot_pos;
	bk_strlcpy(snap.gtid, snapshot_gtid, sizeof(snap.gtid));
	r->program = "test";
	r->source = SOURCE;
	r->work_parent = f->dir;
	r->ctx.repo = f->repo;
	r->ctx.decoder = f->decoder;
	r->snapshot = &snap;
	r->target.type = type;
	r->target.text = target ? target : "latest";
	if (type == TARGET_TIME)
		assert_true(bk_parse_timestamp_zone(target, true, &r->target.time_us));
	else if (type == TARGET_GTID)
		assert_true(bk_gtid_state_parse(target, &r->target.gtid, err));
	else if (target != NULL)
	{
		const char *colon = strrchr(target, ':');

		memcpy(r->target.file, target, (size_t) (colon - target));
		r->target.pos = strtoull(colon + 1, NULL, 10);
	}
	assert_true(binlog_catalog_load(f->repo, SOURCE, &r->binlog, err));
	bk_error_clear(err);
	ok = restore_plan_replay(r, err);
	f->groups = (int) r->groups;
	bk_strlcpy(f->temp_table, r->temp_table_name, sizeof(f->temp_table));
	bk_strlcpy(f->backwards, r->backwards_gtid, sizeof(f->backwards));
	bk_strlcpy(f->backwards_after, r->backwards_after,
			   sizeof(f->backwards_after));
	bk_strlcpy(f->backwards_at, r->backwards_at, sizeof(f->backwards_at));
	f->largest_statement = r->largest_statement;
	bk_strlcpy(f->work_dir, r->work_dir, sizeof(f->work_dir));
	if (f->leave_load_file && r->work_dir[0] != '\0')
	{
		char path[4200];
		FILE *load;

		snprintf(path, sizeof(path), "%s/SQL_LOAD_MB-1-0", r->work_dir);
		load = fopen(path, "w");
		assert_non_null(load);
		fputs("1,plaintext row\n", load);
		fclose(load);
	}
	restore_remove_work_dir(r);
	free(r->replay);
	binlog_catalog_free(&r->binlog);
	free(r);
	return ok;
}

static bool
plan_target(Fixture *f, RestoreTargetType type, const char *target,
			BkError *err)
{
	return plan_from(f, 4, "", type, target, err);
}

static bool
plan(Fixture *f, RestoreTargetType type, const char *position, BkError *err)
{
	return plan_target(f, type, position, err);
}

/*
 * A position past the end of a file the server closed is in no binlog: a
 * mistyped position (or file number) is refused, not planned silently up
 * to that file's end.
 */
static void
test_position_past_closed_file_refused(void **state)
{
	Fixture *f = *state;
	BkError err;

	archive_binlog_start(f, "mariadb-bin.000001", true);
	archive_binlog_start(f, "mariadb-bin.000002", true);
	archive_binlog_start(f, "mariadb-bin.000003", false);
	assert_true(plan(f, TARGET_POSITION, "mariadb-bin.000002:4", &err));
	assert_false(plan(f, TARGET_POSITION, "mariadb-bin.000002:99999", &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_error_contains(&err, "--target-position mariadb-bin.000002:99999 "
								"is past the end of binlog "
								"mariadb-bin.000002, which the server "
								"closed at 4");
}

/*
 * A file whose message was rejected never reaches the archive: a restore
 * to the latest must not end silently before it, as if the archive ended
 * there.  An explicit target past the hole stays refused, and one with no
 * hole before the end of the archive goes through.
 */
static void
test_latest_refused_at_a_hole(void **state)
{
	Fixture *f = *state;
	BkError err;

	archive_binlog_start(f, "mariadb-bin.000001", true);
	archive_binlog_start(f, "mariadb-bin.000002", true);
	assert_true(plan(f, TARGET_LATEST, NULL, &err));

	/* 000003 lost, 000004 archived. */
	archive_binlog_start(f, "mariadb-bin.000004", false);
	assert_false(plan(f, TARGET_LATEST, NULL, &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_error_contains(&err, "not continuous after mariadb-bin.000002:4");
	assert_error_contains(&err, "files between mariadb-bin.000002 and"
								" mariadb-bin.000004 are missing");
	assert_non_null(strstr(err.hint, "bk verify --source " SOURCE));
	assert_non_null(strstr(err.hint, "at or before mariadb-bin.000002:4"));
	assert_false(plan(f, TARGET_POSITION, "mariadb-bin.000004:4", &err));
	assert_error_contains(&err, "past the end of what the archive holds");
	assert_true(plan(f, TARGET_POSITION, "mariadb-bin.000002:4", &err));

	/* The missing file arrives: the archive is whole again. */
	archive_binlog_start(f, "mariadb-bin.000003", true);
	assert_true(plan(f, TARGET_LATEST, NULL, &err));

	/* A hole inside the newest file: bytes 4 to 100 lost. */
	archive_binlog_range(f, "mariadb-bin.000004", 100, 200);
	assert_false(plan(f, TARGET_LATEST, NULL, &err));
	assert_error_contains(&err, "not continuous after mariadb-bin.000004:4");
	assert_error_contains(&err,
						  "bytes 4 to 100 of mariadb-bin.000004 are missing");
}

/*
 * The archive ended with 000001's ROTATE; while the agent was down the
 * server was reset and wrote 000001 and 000002 again, so the agent found
 * the new 000002 starting with a GTID list that did not follow the archive
 * and marked its first range gap-before=.  000001 is closed, so complete,
 * and 000002 has the next number: the mark alone keeps a restore from
 * crossing into the other history.
 */
static void
test_gap_before_after_rotate(void **state)
{
	Fixture *f = *state;
	BkError err;

	archive_binlog_start(f, "mariadb-bin.000001", true);
	archive(f, BK_KIND_BINLOG, "mariadb-bin.000002/0000000000-0000000004",
			"type=binlog-range\nbinlog-file=mariadb-bin.000002\nstart=0\n"
			"end=4\nevents=0\ngtid=\ncreated=2026-11-24T05:12:00.000Z\n"
			"gap-before=mariadb-bin.000002:4",
			(const uint8_t *) "\xfe"
							  "bin",
			4);
	assert_false(plan(f, TARGET_LATEST, NULL, &err));
	assert_error_contains(&err, "not continuous after mariadb-bin.000001:4");
	assert_error_contains(&err, "the agent did not go on into"
								" mariadb-bin.000002 from where the archive"
								" ended (mariadb-bin.000002:4)");
	assert_false(plan(f, TARGET_POSITION, "mariadb-bin.000002:4", &err));
	assert_error_contains(&err, "past the end of what the archive holds");
	assert_true(plan(f, TARGET_POSITION, "mariadb-bin.000001:4", &err));
}

/*
 * The agent went on, with the same source_id, at a server whose binlog has
 * another basename (MariaDB's default is <hostname>-bin), then back: by
 * number, the two interleave, and each has the number after the one before
 * it.  The archive must never chain from one basename into the other, nor
 * take db2-bin.000002, which no ROTATE ended, for complete because
 * mariadb-bin.000003 follows it; mariadb-bin.000002 is missing from its
 * history.
 */
static void
test_other_basename_never_chained(void **state)
{
	Fixture *f = *state;
	BinlogCatalog catalog = {0};
	const BinlogFile *file;
	BkError err;

	archive(f, BK_KIND_BINLOG, "mariadb-bin.000001/0000000000-0000000004",
			"type=binlog-range\nbinlog-file=mariadb-bin.000001\nstart=0\n"
			"end=4\nevents=0\ngtid=\ncreated=2026-11-24T05:12:00.000Z\n"
			"closed=stop",
			(const uint8_t *) "\xfe"
							  "bin",
			4);
	archive_binlog_start(f, "db2-bin.000001", true);
	archive_binlog_start(f, "db2-bin.000002", false);
	archive_binlog_start(f, "mariadb-bin.000003", false);
	assert_true(binlog_catalog_load(f->repo, SOURCE, &catalog, &err));
	assert_int_equal(catalog.file_count, 4);
	file = binlog_catalog_file(&catalog, "mariadb-bin.000001");
	assert_non_null(file);
	assert_true(file->complete); /* its STOP */
	file = binlog_catalog_file(&catalog, "db2-bin.000001");
	assert_non_null(file);
	assert_true(file->complete); /* its ROTATE */
	file = binlog_catalog_file(&catalog, "db2-bin.000002");
	assert_non_null(file);
	assert_false(file->complete);
	binlog_catalog_free(&catalog);

	assert_false(plan(f, TARGET_LATEST, NULL, &err));
	assert_error_contains(&err, "not continuous after mariadb-bin.000001:4");
	assert_error_contains(&err, "the files between mariadb-bin.000001 and"
								" mariadb-bin.000003 are missing");
	assert_true(plan(f, TARGET_POSITION, "mariadb-bin.000001:4", &err));
	assert_false(plan(f, TARGET_POSITION, "mariadb-bin.000003:4", &err));
	assert_error_contains(&err, "past the end of what the archive holds");
}

/* 2026-11-24 09:00:00 UTC */
#define T0900 1795510800U

/*
 * add_event
 *		Append an event stamped `stamp` to a binlog being built (no
 *		checksum: there is no format description saying otherwise).
 */
static void
add_event(uint8_t *file, size_t *len, uint8_t type, uint32_t stamp,
		  const uint8_t *body, size_t body_len)
{
	uint8_t *out = file + *len;
	size_t event_len = BK_BINLOG_HEADER_LEN + body_len;

	put_le32(out, stamp);
	out[4] = type;
	put_le32(out + 5, 1);
	put_le32(out + 9, (uint32_t) event_len);
	put_le32(out + 13, (uint32_t) (*len + event_len));
	out[17] = 0;
	out[18] = 0;
	memcpy(out + BK_BINLOG_HEADER_LEN, body, body_len);
	*len += event_len;
}

/* A GTID event (domain 0, sequence seq), then an XID event stamped commit. */
static void
add_transaction(uint8_t *file, size_t *len, uint64_t seq, uint32_t start,
				uint32_t commit)
{
	uint8_t gtid[13] = {0};

	for (int idx = 0; idx < 8; idx++)
		gtid[idx] = (uint8_t) (seq >> (8 * idx));
	add_event(file, len, BK_BINLOG_GTID_EVENT, start, gtid, sizeof(gtid));
	add_event(file, len, BK_BINLOG_XID_EVENT, commit,
			  (const uint8_t *) "\1\0\0\0\0\0\0\0", 8);
}

/* The binlog built, as one range from 0 with the metadata extra. */
static void
archive_binlog_bytes(Fixture *f, const char *file, const uint8_t *bytes,
					 size_t len, uint32_t last_event_time, const char *extra)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	char meta[512];

	snprintf(name, sizeof(name), "%s/%010d-%010zu", file, 0, len);
	snprintf(meta, sizeof(meta),
			 "type=binlog-range\nbinlog-file=%s\nstart=0\nend=%zu\n"
			 "events=4\nlast-event-time=%" PRIu32 "\ngtid=0-1-2\n"
			 "created=2026-11-24T10:00:01.000Z%s",
			 file, len, last_event_time, extra);
	archive(f, BK_KIND_BINLOG, name, meta, bytes, len);
}

/*
 * The agent was stopped from 09:00 to 10:00; at 10:00:01 it sent the
 * catch-up range of 09:00-09:05, then stalled.  The range's send time
 * (created) proves nothing about 09:30: commits from 09:05 on may never
 * have been read.  A time target in a stretch with no archived commit is
 * taken only up to where the agent knew it had read everything
 * (complete-until), and for a range without it (older agents), up to its
 * newest event.
 */
static void
test_time_target_needs_complete_archive(void **state)
{
	Fixture *f = *state;
	uint8_t bytes[256];
	size_t len = BK_BINLOG_MAGIC_LEN;
	BkError err;

	memcpy(bytes,
		   "\xfe"
		   "bin",
		   BK_BINLOG_MAGIC_LEN);
	add_transaction(bytes, &len, 1, T0900, T0900);
	add_transaction(bytes, &len, 2, T0900 + 300, T0900 + 300);

	/* Behind the server when it sent: complete up to its newest event. */
	archive_binlog_bytes(f, "mariadb-bin.000001", bytes, len, T0900 + 300,
						 "\ncomplete-until=1795511100000");
	assert_false(plan_target(f, TARGET_TIME, "2026-11-24 09:30:00", &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_error_contains(&err, "past the end of what the archive holds");
	assert_error_contains(&err, "sent 2026-11-24T10:00:01.000Z");
	assert_error_contains(&err, "holds every commit only up to"
								" 2026-11-24T09:05:00.000Z");
	assert_non_null(strstr(err.hint, "at or before 2026-11-24T09:05:00.000Z"));
	assert_non_null(strstr(err.hint, "behind the server"));
	/* Up to the watermark, and targets among the commits, are fine. */
	assert_true(plan_target(f, TARGET_TIME, "2026-11-24 09:05:00", &err));
	assert_true(plan_target(f, TARGET_TIME, "2026-11-24 09:02:00", &err));
}

/* Caught up with the server until 09:40: 09:30 is whole in the archive. */
static void
test_time_target_in_complete_archive(void **state)
{
	Fixture *f = *state;
	uint8_t bytes[256];
	size_t len = BK_BINLOG_MAGIC_LEN;
	BkError err;

	memcpy(bytes,
		   "\xfe"
		   "bin",
		   BK_BINLOG_MAGIC_LEN);
	add_transaction(bytes, &len, 1, T0900, T0900);
	add_transaction(bytes, &len, 2, T0900 + 300, T0900 + 300);
	archive_binlog_bytes(f, "mariadb-bin.000001", bytes, len, T0900 + 300,
						 "\ncomplete-until=1795513200000");
	assert_true(plan_target(f, TARGET_TIME, "2026-11-24 09:30:00", &err));
	assert_true(plan_target(f, TARGET_TIME, "2026-11-24 09:40:00", &err));
	assert_false(plan_target(f, TARGET_TIME, "2026-11-24 09:40:01", &err));
	assert_error_contains(&err, "only up to 2026-11-24T09:40:00.000Z");
}

/*
 * mariadb-binlog writes a statement's Table_map and row events as one
 * BINLOG statement: a DELETE of many large rows (one row event each) needs
 * a packet the size of them all, not of the largest event, or the replay
 * fails with the target's max_allowed_packet untouched.  Found with a
 * DELETE of 67 rows of 1 MiB: 1 MiB events, a 90 MiB BINLOG statement.
 */
static void
test_packet_sized_by_row_statement(void **state)
{
	Fixture *f = *state;
	static uint8_t bytes[8192];
	uint8_t gtid[13] = {3};
	uint8_t rows[1000] = {0};
	size_t len = BK_BINLOG_MAGIC_LEN;
	BkError err;

	memcpy(bytes,
		   "\xfe"
		   "bin",
		   BK_BINLOG_MAGIC_LEN);
	add_event(bytes, &len, BK_BINLOG_GTID_EVENT, T0900, gtid, sizeof(gtid));
	add_event(bytes, &len, 19 /* Table_map */, T0900, rows, 100);
	/* Three Delete_rows events, the last with STMT_END_F. */
	add_event(bytes, &len, 25, T0900, rows, sizeof(rows));
	add_event(bytes, &len, 25, T0900, rows, sizeof(rows));
	rows[6] = 1;
	add_event(bytes, &len, 25, T0900, rows, sizeof(rows));
	/* The next statement starts again from its own Table_map. */
	rows[6] = 0;
	add_event(bytes, &len, 19, T0900, rows, 100);
	rows[6] = 1;
	add_event(bytes, &len, 23, T0900, rows, 500);
	add_event(bytes, &len, BK_BINLOG_XID_EVENT, T0900,
			  (const uint8_t *) "\1\0\0\0\0\0\0\0", 8);
	archive_binlog_bytes(f, "mariadb-bin.000001", bytes, len, T0900, "");
	assert_true(plan(f, TARGET_LATEST, NULL, &err));
	assert_int_equal(f->largest_statement,
					 (BK_BINLOG_HEADER_LEN + 100) +
						 3 * (BK_BINLOG_HEADER_LEN + sizeof(rows)));
}

/*
 * With log_bin_compress, mariadb-binlog prints a row event decompressed:
 * a 600-byte Write_rows_compressed_v1 of a 500 kB row is a 500 kB BINLOG
 * statement (seen with mariadb-binlog 10.11).  The event as MariaDB
 * writes it: table id, flags (STMT_END_F), 3 columns, their bitmap, then
 * 0x83 and the length decompressed in 3 bytes, high byte first.
 */
static void
test_packet_sized_by_decompressed_rows(void **state)
{
	Fixture *f = *state;
	static uint8_t bytes[4096];
	uint8_t gtid[13] = {3};
	uint8_t rows[600] = {0};
	size_t len = BK_BINLOG_MAGIC_LEN;
	BkError err;

	memcpy(bytes,
		   "\xfe"
		   "bin",
		   BK_BINLOG_MAGIC_LEN);
	add_event(bytes, &len, BK_BINLOG_GTID_EVENT, T0900, gtid, sizeof(gtid));
	add_event(bytes, &len, 19 /* Table_map */, T0900, rows, 40);
	rows[6] = 1;    /* STMT_END_F */
	rows[8] = 3;    /* columns */
	rows[9] = 0x07; /* all of them */
	rows[10] = 0x83;
	rows[11] = 0x07;
	rows[12] = 0xa1;
	rows[13] = 0x20; /* 500000 */
	add_event(bytes, &len, BK_BINLOG_WRITE_ROWS_COMPRESSED_EVENT_V1, T0900,
			  rows, sizeof(rows));
	add_event(bytes, &len, BK_BINLOG_XID_EVENT, T0900,
			  (const uint8_t *) "\1\0\0\0\0\0\0\0", 8);
	archive_binlog_bytes(f, "mariadb-bin.000001", bytes, len, T0900, "");
	assert_true(plan(f, TARGET_LATEST, NULL, &err));
	assert_int_equal(f->largest_statement,
					 (BK_BINLOG_HEADER_LEN + 40) +
						 (BK_BINLOG_HEADER_LEN + sizeof(rows)) + 500000);
}

/*
 * A Query event of session thread, database db, that uses temporary
 * tables (LOG_EVENT_THREAD_SPECIFIC_F), as statement-based logging writes
 * it.
 */
static void
add_query(uint8_t *file, size_t *len, uint32_t thread, const char *db,
		  const char *text)
{
	uint8_t body[512] = {0};
	size_t db_len = strlen(db);
	size_t text_len = strlen(text);
	size_t start = *len;

	put_le32(body, thread);
	body[8] = (uint8_t) db_len;
	memcpy(body + 13, db, db_len + 1);
	memcpy(body + 13 + db_len + 1, text, text_len);
	add_event(file, len, BK_BINLOG_QUERY_EVENT, T0900, body,
			  13 + db_len + 1 + text_len);
	file[start + 17] = BK_BINLOG_F_THREAD_SPECIFIC;
}

/*
 * Under MIXED logging, session 7 created temporary table tmp before the
 * snapshot; after it, the session's statement is statement-logged.  Only
 * one that names the table (not a string or a comment holding the word)
 * is the replay's problem.
 */
static void
test_temp_table_from_before_snapshot(void **state)
{
	Fixture *f = *state;
	static const struct
	{
		const char *text;
		bool uses;
	} cases[] = {
		{"INSERT INTO t SELECT * FROM tmp", true},
		{"INSERT INTO t SELECT * FROM `tmp` WHERE a > 0", true},
		{"INSERT INTO t VALUES ('tmp')", false},
		{"INSERT INTO t VALUES ('it''s tmp'), (\"tmp\")", false},
		{"INSERT INTO t SELECT * FROM other -- tmp\n", false},
		{"INSERT INTO t /* tmp */ SELECT * FROM other # tmp", false},
	};

	for (size_t caseIdx = 0; caseIdx < sizeof(cases) / sizeof(cases[0]);
		 caseIdx++)
	{
		uint8_t bytes[2048];
		size_t len = BK_BINLOG_MAGIC_LEN;
		size_t snapshot_pos;
		uint8_t gtid[13] = {2};
		BkError err;

		memcpy(bytes,
			   "\xfe"
			   "bin",
			   BK_BINLOG_MAGIC_LEN);
		add_query(bytes, &len, 7, "d", "CREATE TEMPORARY TABLE tmp (a INT)");
		snapshot_pos = len;
		add_event(bytes, &len, BK_BINLOG_GTID_EVENT, T0900, gtid, sizeof(gtid));
		add_query(bytes, &len, 7, "d", cases[caseIdx].text);
		add_event(bytes, &len, BK_BINLOG_XID_EVENT, T0900,
				  (const uint8_t *) "\1\0\0\0\0\0\0\0", 8);
		archive_binlog_bytes(f, "mariadb-bin.000001", bytes, len, T0900, "");
		if (!plan_from(f, snapshot_pos, "0-1-1", TARGET_LATEST, NULL, &err))
			fail_msg("%s: %s", cases[caseIdx].text, err.message);
		if (cases[caseIdx].uses)
			assert_string_equal(f->temp_table, "d.tmp");
		else if (f->temp_table[0] != '\0')
			fail_msg("\"%s\" taken for a use of %s", cases[caseIdx].text,
					 f->temp_table);
		/* The next case's file in place of this one. */
		teardown(state);
		setup(state);
		f = *state;
	}
}

/* A range of an older agent, without complete-until: its newest event. */
static void
test_time_target_older_agent(void **state)
{
	Fixture *f = *state;
	uint8_t bytes[256];
	size_t len = BK_BINLOG_MAGIC_LEN;
	BkError err;

	memcpy(bytes,
		   "\xfe"
		   "bin",
		   BK_BINLOG_MAGIC_LEN);
	add_transaction(bytes, &len, 1, T0900, T0900);
	add_transaction(bytes, &len, 2, T0900 + 300, T0900 + 300);
	archive_binlog_bytes(f, "mariadb-bin.000001", bytes, len, T0900 + 300, "");
	assert_false(plan_target(f, TARGET_TIME, "2026-11-24 09:30:00", &err));
	assert_error_contains(&err, "only up to 2026-11-24T09:05:00.000Z (its"
								" newest event: its ranges do not say when");
	assert_true(plan_target(f, TARGET_TIME, "2026-11-24 09:05:00", &err));
}

/*
 * A DDL statement (a standalone group: its GTID event, then its Query
 * event) that started at 10:00:01 and ended at 10:00:09: its events are
 * stamped with the start, and the Query event says how long it ran
 * (exec_time).  It committed after 10:00:05, so a restore to then leaves
 * it out.
 */
static void
test_time_target_ddl_ends_after_its_start(void **state)
{
	Fixture *f = *state;
	uint8_t bytes[512];
	uint8_t gtid[13] = {3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
	uint8_t query[64] = {0};
	const char *text = "ALTER TABLE t ADD c INT";
	size_t len = BK_BINLOG_MAGIC_LEN;
	uint32_t ten = T0900 + 3600;
	BkError err;

	memcpy(bytes,
		   "\xfe"
		   "bin",
		   BK_BINLOG_MAGIC_LEN);
	add_transaction(bytes, &len, 1, ten, ten);
	/* thread id, exec_time 8, no db, no error, no status variables */
	put_le32(query + 4, 8);
	memcpy(query + 14, text, strlen(text));
	add_event(bytes, &len, BK_BINLOG_GTID_EVENT, ten + 1, gtid, sizeof(gtid));
	add_event(bytes, &len, BK_BINLOG_QUERY_EVENT, ten + 1, query,
			  14 + strlen(text));
	add_transaction(bytes, &len, 4, ten + 10, ten + 10);
	archive_binlog_bytes(f, "mariadb-bin.000001", bytes, len, ten + 10,
						 "\ncomplete-until=1795514410000");

	assert_true(plan_target(f, TARGET_TIME, "2026-11-24 10:00:05", &err));
	assert_int_equal(f->groups, 1);
	assert_true(plan_target(f, TARGET_TIME, "2026-11-24 10:00:09", &err));
	assert_int_equal(f->groups, 1);
	assert_true(plan_target(f, TARGET_TIME, "2026-11-24 10:00:10", &err));
	assert_int_equal(f->groups, 2);
}

/* A GTID_LIST event: count entries of (domain 0, server 1, seq). */
static void
add_gtid_list(uint8_t *file, size_t *len, uint32_t stamp, const uint64_t *seqs,
			  int count)
{
	uint8_t body[4 + 4 * 16] = {0};

	put_le32(body, (uint32_t) count);
	for (int idx = 0; idx < count; idx++)
	{
		uint8_t *entry = body + 4 + idx * 16;

		put_le32(entry + 4, 1);
		for (int byte = 0; byte < 8; byte++)
			entry[8 + byte] = (uint8_t) (seqs[idx] >> (8 * byte));
	}
	add_event(file, len, BK_BINLOG_GTID_LIST_EVENT, stamp, body,
			  4 + (size_t) count * 16);
}

/* Bytes [start, end) of a binlog built, as one range. */
static void
archive_binlog_part(Fixture *f, const char *file, const uint8_t *bytes,
					size_t start, size_t end, uint32_t last_event_time,
					const char *gtid, const char *extra)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	char meta[512];

	snprintf(name, sizeof(name), "%s/%010zu-%010zu", file, start, end);
	snprintf(meta, sizeof(meta),
			 "type=binlog-range\nbinlog-file=%s\nstart=%zu\nend=%zu\n"
			 "events=2\nlast-event-time=%" PRIu32 "\ngtid=%s\n"
			 "created=2026-11-24T10:00:01.000Z%s",
			 file, start, end, last_event_time, gtid, extra);
	archive(f, BK_KIND_BINLOG, name, meta, bytes + start, end - start);
}

/* bk verify of the source, with the key if with_key: its problems, as JSON. */
static char *
verify_problems_as(Fixture *f, bool with_key)
{
	BkVerifier verifier = {.json = true};
	BkError err;
	char *text;

	if (with_key)
	{
		verifier.ring = &f->ring;
		verifier.decoder = f->decoder;
	}
	verifier.problem_list = json_array();
	verifier.conflict_list = json_array();
	verifier.snapshot_list = json_array();
	assert_true(bk_engine_mariadb.verify(&verifier, f->repo, SOURCE, &err));
	text = json_dumps(verifier.problem_list, 0);
	json_decref(verifier.problem_list);
	json_decref(verifier.conflict_list);
	json_decref(verifier.snapshot_list);
	return text;
}

/* bk verify of the source with the key: its problems, as JSON text. */
static char *
verify_problems(Fixture *f)
{
	return verify_problems_as(f, true);
}

/*
 * The last range of 000001, the one with transaction 0-1-3 and the ROTATE,
 * never reached the archive (a message the shipper rejected).  Without
 * ROTATE the file passes for one a crash ended, complete because 000002
 * follows it, and nothing inside either file is a hole: only 000002's GTID
 * list, which says 0-1-3 was logged before it, shows the archive of 000001
 * ends short.  A restore across it is refused; one before it is not; bk
 * verify names it; with the range archived, all goes through.
 */
/*
 * 000001: an empty GTID list, 0-1-1 at 09:00, 0-1-2 at 09:01, then, from
 * *cut on, what a lost last range would hold (0-1-3 at 09:02, or with
 * incident an Incident event: LOST_EVENTS, a change the server applied but
 * could not log, no GTID) and the ROTATE; 000002: its GTID list (what
 * 000001 reached: 0-1-3, or 0-1-2, which the archive of 000001 reaches
 * without the lost part), and the next transaction at 09:05.
 */
static void
build_cut_files(uint8_t *first, size_t *len1, size_t *cut, uint8_t *second,
				size_t *len2, bool incident)
{
	uint8_t rotate[8 + 18] = {4};
	uint8_t lost_events[2 + 1 + 11] = {1, 0, 11};
	uint64_t reached = incident ? 2 : 3;

	*len1 = *len2 = BK_BINLOG_MAGIC_LEN;
	memcpy(first, bk_binlog_magic, BK_BINLOG_MAGIC_LEN);
	add_gtid_list(first, len1, T0900, NULL, 0);
	add_transaction(first, len1, 1, T0900, T0900);
	add_transaction(first, len1, 2, T0900 + 60, T0900 + 60);
	*cut = *len1;
	if (incident)
	{
		memcpy(lost_events + 3, "LOST_EVENTS", 11);
		add_event(first, len1, BK_BINLOG_INCIDENT_EVENT, T0900 + 120,
				  lost_events, sizeof(lost_events));
	}
	else
		add_transaction(first, len1, 3, T0900 + 120, T0900 + 120);
	memcpy(rotate + 8, "mariadb-bin.000002", 18);
	add_event(first, len1, BK_BINLOG_ROTATE_EVENT, T0900 + 120, rotate,
			  sizeof(rotate));
	memcpy(second, bk_binlog_magic, BK_BINLOG_MAGIC_LEN);
	add_gtid_list(second, len2, T0900 + 120, &reached, 1);
	add_transaction(second, len2, reached + 1, T0900 + 300, T0900 + 300);
}

static void
build_two_files(uint8_t *first, size_t *len1, size_t *cut, uint8_t *second,
				size_t *len2)
{
	build_cut_files(first, len1, cut, second, len2, false);
}

/*
 * 65 transactions in 65 GTID domains after the snapshot: the GTID state
 * the target would end with cannot hold the last domain.  The plan fails
 * naming the limit, where it once left the domain out of the final state
 * (a log_bin target then failed at the end, "skipped or repeated"; one
 * without, its gtid_slave_pos short of a domain).  A target before the
 * 65th domain's transaction goes through.
 */
static void
test_gtid_domains_past_the_limit(void **state)
{
	Fixture *f = *state;
	uint8_t bytes[8192];
	size_t len = BK_BINLOG_MAGIC_LEN;
	size_t before_last = 0;
	char target[64];
	BkError err;

	memcpy(bytes, bk_binlog_magic, BK_BINLOG_MAGIC_LEN);
	add_gtid_list(bytes, &len, T0900, NULL, 0);
	for (uint32_t domain = 0; domain <= BK_BINLOG_DOMAINS_MAX; domain++)
	{
		uint8_t gtid[13] = {1};

		put_le32(gtid + 8, domain);
		before_last = len;
		add_event(bytes, &len, BK_BINLOG_GTID_EVENT, T0900, gtid, sizeof(gtid));
		add_event(bytes, &len, BK_BINLOG_XID_EVENT, T0900,
				  (const uint8_t *) "\1\0\0\0\0\0\0\0", 8);
	}
	archive_binlog_bytes(f, "mariadb-bin.000001", bytes, len, T0900,
						 "\ncomplete-until=1795510800000");

	assert_false(plan_target(f, TARGET_LATEST, NULL, &err));
	assert_int_equal(err.code, BK_ERR_FORMAT);
	assert_error_contains(&err, "binlog \"mariadb-bin.000001\"");
	assert_error_contains(&err, "GTID 64-1-1 is of a GTID domain past the 64"
								" that bk handles");
	assert_non_null(strstr(err.hint, "at most 64 GTID domains"));
	snprintf(target, sizeof(target), "mariadb-bin.000001:%zu", before_last);
	assert_true(plan_target(f, TARGET_POSITION, target, &err));
	assert_int_equal(f->groups, BK_BINLOG_DOMAINS_MAX);
}

/*
 * A GTID target of two domains that no moment of the binlog had: domain 0
 * reaches 0-1-1 and goes on with 0-1-2 before domain 5 reaches 5-1-1.
 * 0-1-1 is in the archive: the refusal says the GTIDs are not one moment,
 * not that the target is missing.  Those of one moment go through.
 */
static void
test_gtid_target_not_one_moment(void **state)
{
	Fixture *f = *state;
	uint8_t bytes[512];
	uint8_t gtid[13] = {1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0};
	size_t len = BK_BINLOG_MAGIC_LEN;
	BkError err;

	memcpy(bytes, bk_binlog_magic, BK_BINLOG_MAGIC_LEN);
	add_gtid_list(bytes, &len, T0900, NULL, 0);
	add_transaction(bytes, &len, 1, T0900, T0900);
	add_transaction(bytes, &len, 2, T0900 + 60, T0900 + 60);
	/* 5-1-1 */
	add_event(bytes, &len, BK_BINLOG_GTID_EVENT, T0900 + 120, gtid,
			  sizeof(gtid));
	add_event(bytes, &len, BK_BINLOG_XID_EVENT, T0900 + 120,
			  (const uint8_t *) "\1\0\0\0\0\0\0\0", 8);
	archive_binlog_bytes(f, "mariadb-bin.000001", bytes, len, T0900 + 120,
						 "\ncomplete-until=1795514400000");

	assert_false(plan_target(f, TARGET_GTID, "0-1-1,5-1-1", &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_error_contains(&err, "GTID target 0-1-1,5-1-1 is not one moment "
								"of the binlog: domain 0 reached its GTID "
								"and went on with 0-1-2");
	assert_non_null(strstr(err.hint, "@@gtid_binlog_pos"));
	assert_true(plan_target(f, TARGET_GTID, "0-1-2,5-1-1", &err));
	assert_int_equal(f->groups, 3);
}

/*
 * 0-1-3 after 0-1-6 in domain 0, as a source with gtid_strict_mode off
 * logs a session's SET gtid_seq_no: a replay through it is planned (no
 * strict mode of mariadb-binlog's stops it), and the plan names it for
 * restore_check_replay; one that stops before it names nothing.  Against
 * the snapshot's GTID state too: 0-1-5 after a snapshot at 0-1-9.
 */
static void
test_gtid_backwards_noted(void **state)
{
	Fixture *f = *state;
	uint8_t bytes[512];
	size_t len = BK_BINLOG_MAGIC_LEN;
	uint64_t listed = 9;
	size_t end;
	char at[64];
	BkError err;

	memcpy(bytes, bk_binlog_magic, BK_BINLOG_MAGIC_LEN);
	add_gtid_list(bytes, &len, T0900, &listed, 1);
	add_transaction(bytes, &len, 5, T0900, T0900);
	add_transaction(bytes, &len, 6, T0900 + 60, T0900 + 60);
	add_transaction(bytes, &len, 3, T0900 + 120, T0900 + 120);
	end = len;
	add_transaction(bytes, &len, 7, T0900 + 180, T0900 + 180);
	archive_binlog_bytes(f, "mariadb-bin.000001", bytes, len, T0900 + 180,
						 "\ncomplete-until=1795514400000");
	snprintf(at, sizeof(at), "mariadb-bin.000001:%zu", end);

	assert_true(plan_from(f, 4, "", TARGET_LATEST, NULL, &err));
	assert_int_equal(f->groups, 4);
	assert_string_equal(f->backwards, "0-1-3");
	assert_string_equal(f->backwards_after, "0-1-6");
	assert_string_equal(f->backwards_at, at);
	/* Up to 09:02:00: 0-1-3 (09:02:00) is met, but not replayed. */
	assert_true(plan_from(f, 4, "", TARGET_TIME, "2026-11-24 09:02:00", &err));
	assert_int_equal(f->groups, 2);
	assert_string_equal(f->backwards, "");
	/* The first of the replay is not above the snapshot's. */
	assert_true(plan_from(f, 4, "0-1-9", TARGET_LATEST, NULL, &err));
	assert_string_equal(f->backwards, "0-1-5");
	assert_string_equal(f->backwards_after, "0-1-9");
}

/*
 * mariadb-binlog --local-load writes the file of a LOAD DATA logged as a
 * statement into the work directory: plaintext rows, which go with it.
 */
static void
test_work_dir_removed_whole(void **state)
{
	Fixture *f = *state;
	BkError err;
	struct stat st;

	archive_binlog_start(f, "mariadb-bin.000001", false);
	f->leave_load_file = true;
	assert_true(plan(f, TARGET_LATEST, NULL, &err));
	assert_true(f->work_dir[0] != '\0');
	assert_int_equal(stat(f->work_dir, &st), -1);
	assert_int_equal(errno, ENOENT);
}

static void
test_gtid_list_continuity(void **state)
{
	Fixture *f = *state;
	uint8_t first[512], second[256];
	size_t len1, len2, cut;
	char expect[64];
	char *problems;
	BkError err;

	build_two_files(first, &len1, &cut, second, &len2);

	archive_binlog_part(f, "mariadb-bin.000001", first, 0, cut, T0900 + 60,
						"0-1-2", "");
	archive_binlog_part(f, "mariadb-bin.000002", second, 0, len2, T0900 + 300,
						"0-1-4", "\ncomplete-until=1795514400000");

	/* bk verify reads the events with the key: it tells too. */
	problems = verify_problems(f);
	assert_non_null(strstr(problems, "binlog GTID discontinuity"));
	assert_non_null(strstr(problems, "0-1-3 (reached 0-1-2)"));
	free(problems);

	assert_false(plan_target(f, TARGET_LATEST, NULL, &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_error_contains(&err, "binlog mariadb-bin.000002 does not follow"
								" mariadb-bin.000001 in the archive");
	assert_error_contains(&err, "0-1-3 (reached 0-1-2)");
	snprintf(expect, sizeof(expect), "at or before mariadb-bin.000001:%zu",
			 cut);
	assert_non_null(strstr(err.hint, expect));
	assert_non_null(strstr(err.hint, "bk verify --source " SOURCE));
	assert_false(plan_target(f, TARGET_TIME, "2026-11-24 09:06:00", &err));
	assert_error_contains(&err, "does not follow");
	assert_false(plan_target(f, TARGET_POSITION, "mariadb-bin.000002:4", &err));
	assert_error_contains(&err, "does not follow");

	/*
	 * A time after the last archived commit of 000001 may hold commits of
	 * the missing range; one before a commit archived there cannot, nor
	 * can a position up to where 000001 is archived.
	 */
	assert_false(plan_target(f, TARGET_TIME, "2026-11-24 09:01:30", &err));
	assert_error_contains(&err, "does not follow");
	assert_true(plan_target(f, TARGET_TIME, "2026-11-24 09:00:30", &err));
	assert_int_equal(f->groups, 1);
	snprintf(expect, sizeof(expect), "mariadb-bin.000001:%zu", cut);
	assert_true(plan_target(f, TARGET_POSITION, expect, &err));
	assert_int_equal(f->groups, 2);
	/*
	 * A position in 000001 past its archived end, where 0-1-3 ended: the
	 * transaction is in the lost range, so the target is not reached.
	 */
	snprintf(expect, sizeof(expect), "mariadb-bin.000001:%zu",
			 cut + 2 * BK_BINLOG_HEADER_LEN + 13 + 8);
	assert_false(plan_target(f, TARGET_POSITION, expect, &err));
	assert_error_contains(&err, "does not follow");

	/* The range arrives: 000002 follows 000001. */
	archive_binlog_part(f, "mariadb-bin.000001", first, cut, len1, T0900 + 120,
						"0-1-3",
						"\nclosed=rotate\nnext-file=mariadb-bin.000002");
	assert_true(plan_target(f, TARGET_LATEST, NULL, &err));
	assert_int_equal(f->groups, 4);
	assert_true(plan_target(f, TARGET_TIME, "2026-11-24 09:06:00", &err));
	assert_int_equal(f->groups, 4);
	problems = verify_problems(f);
	assert_string_equal(problems, "[]");
	free(problems);
}

/*
 * The lost range held the XID of 0-1-3 and the ROTATE: 000001's archive
 * has the GTID event of 0-1-3, so the agent's gtid= metadata of its last
 * range says 0-1-3, as 000002's list does, but the transaction is not
 * whole.  bk verify, following whole transactions as restore does, names
 * it; restore refuses.
 */
static void
test_gtid_list_transaction_cut(void **state)
{
	Fixture *f = *state;
	uint8_t first[512], second[256];
	size_t len1, len2, cut;
	char *problems;
	BkError err;

	build_two_files(first, &len1, &cut, second, &len2);
	cut += BK_BINLOG_HEADER_LEN + 13; /* the GTID event of 0-1-3 */
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, cut, T0900 + 120,
						"0-1-3", "");
	archive_binlog_part(f, "mariadb-bin.000002", second, 0, len2, T0900 + 300,
						"0-1-4", "\ncomplete-until=1795514400000");
	problems = verify_problems(f);
	assert_non_null(strstr(problems, "binlog GTID discontinuity"));
	assert_non_null(strstr(problems, "0-1-3 (reached 0-1-2)"));
	free(problems);
	assert_false(plan_target(f, TARGET_LATEST, NULL, &err));
	assert_error_contains(&err, "0-1-3 (reached 0-1-2)");
}

static char *verify_problems_keyless(Fixture *f);

static void
build_incident_files(uint8_t *first, size_t *len1, size_t *cut, uint8_t *second,
					 size_t *len2)
{
	build_cut_files(first, len1, cut, second, len2, true);
}

/*
 * The last range of 000001, with an Incident event and the ROTATE, never
 * reached the archive.  Without its ROTATE, 000001 passed for a file a
 * crash left, complete because 000002 follows, and 000002's GTID list
 * shows nothing missing (the Incident has no GTID): a restore replayed
 * past the change the server never logged.  The agent now says on
 * 000002's first range where 000001 ended and how (previous-end=,
 * previous-closed=): the archive of 000001 ending before that is a gap,
 * for restore, bk verify and bk binlog-get alike.
 */
static void
test_lost_closing_range(void **state)
{
	Fixture *f = *state;
	uint8_t first[512], second[256];
	size_t len1, len2, cut;
	char extra[256], expect[160];
	BinlogCatalog catalog = {0};
	const BinlogFile *file;
	char *problems;
	BkError err;

	build_incident_files(first, &len1, &cut, second, &len2);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, cut, T0900 + 60,
						"0-1-2", "");
	snprintf(extra, sizeof(extra),
			 "\ncomplete-until=1795514400000\nprevious-end="
			 "mariadb-bin.000001:%zu\nprevious-closed=rotate",
			 len1);
	archive_binlog_part(f, "mariadb-bin.000002", second, 0, len2, T0900 + 300,
						"0-1-3", extra);

	assert_true(binlog_catalog_load(f->repo, SOURCE, &catalog, &err));
	file = binlog_catalog_file(&catalog, "mariadb-bin.000001");
	assert_non_null(file);
	assert_false(file->complete);
	assert_true(file->short_end);
	assert_int_equal(file->ended_at, len1);
	/* bk binlog-get refuses it, as a file cut by a gap (exit 4). */
	bk_error_clear(&err);
	assert_null(
		mariadb_binlog_get_file(&catalog, SOURCE, "mariadb-bin.000001", &err));
	assert_int_equal(err.code, BK_ERR_SEQUENCE);
	assert_error_contains(&err, "its last range is missing from the archive");
	binlog_catalog_free(&catalog);

	snprintf(expect, sizeof(expect),
			 "archived up to offset %zu, but the agent read it to offset"
			 " %zu, where its ROTATE event ended it",
			 cut, len1);
	assert_false(plan_target(f, TARGET_LATEST, NULL, &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_error_contains(&err, expect);
	snprintf(expect, sizeof(expect), "at or before mariadb-bin.000001:%zu",
			 cut);
	assert_non_null(strstr(err.hint, expect));
	assert_false(plan_target(f, TARGET_POSITION, "mariadb-bin.000002:4", &err));
	assert_error_contains(&err, "past the end of what the archive holds");
	assert_error_contains(&err, "binlog mariadb-bin.000001 is archived up to");
	assert_non_null(strstr(err.hint, expect));
	assert_false(plan_target(f, TARGET_TIME, "2026-11-24 09:06:00", &err));
	assert_error_contains(&err, "where its ROTATE event ended it");
	/* Up to where 000001 is archived, nothing is missing. */
	snprintf(expect, sizeof(expect), "mariadb-bin.000001:%zu", cut);
	assert_true(plan_target(f, TARGET_POSITION, expect, &err));
	assert_int_equal(f->groups, 2);

	snprintf(expect, sizeof(expect),
			 "binlog gap: archived up to offset %zu, but the agent read it"
			 " to offset %zu",
			 cut, len1);
	problems = verify_problems_keyless(f);
	assert_non_null(strstr(problems, expect));
	free(problems);
	problems = verify_problems(f);
	assert_non_null(strstr(problems, expect));
	free(problems);

	/* The range arrives: the archive is whole, the Incident in it. */
	archive_binlog_part(f, "mariadb-bin.000001", first, cut, len1, T0900 + 120,
						"0-1-2",
						"\nclosed=rotate\nnext-file=mariadb-bin.000002");
	problems = verify_problems(f);
	assert_null(strstr(problems, "binlog gap"));
	free(problems);
	assert_false(plan_target(f, TARGET_LATEST, NULL, &err));
	assert_error_contains(&err, "Incident");
}

/*
 * A key rotated while 000001 was open: the range from where the source
 * stood after 0-1-2 is sealed to a key the keyring lacks.  The server
 * logged a Binlog_checkpoint after 0-1-2's commit, so the position SHOW
 * MASTER STATUS printed (where the agent cut the range) ends no
 * transaction.  A restore to it needs no byte of the next range and is
 * planned with the keyring's key alone; one past it is refused, naming the
 * key.  The scan once read on to the next transaction's end, in the
 * sealed range, and refused both.
 */
static void
test_position_target_before_other_key(void **state)
{
	Fixture *f = *state;
	uint8_t bytes[512];
	uint8_t checkpoint[4 + 18] = {18};
	size_t len = BK_BINLOG_MAGIC_LEN, cut;
	BkKey other;
	char target[64];
	char name[BK_OBJECT_NAME_MAX + 1];
	char meta[512];
	BkError err;

	memcpy(bytes, bk_binlog_magic, BK_BINLOG_MAGIC_LEN);
	add_gtid_list(bytes, &len, T0900, NULL, 0);
	add_transaction(bytes, &len, 1, T0900, T0900);
	add_transaction(bytes, &len, 2, T0900 + 60, T0900 + 60);
	memcpy(checkpoint + 4, "mariadb-bin.000001", 18);
	add_event(bytes, &len, 161 /* BINLOG_CHECKPOINT_EVENT */, T0900 + 60,
			  checkpoint, sizeof(checkpoint));
	cut = len;
	add_transaction(bytes, &len, 3, T0900 + 120, T0900 + 120);
	archive_binlog_part(f, "mariadb-bin.000001", bytes, 0, cut, T0900 + 60,
						"0-1-2", "");
	test_key(&other, NULL);
	snprintf(name, sizeof(name), "mariadb-bin.000001/%010zu-%010zu", cut, len);
	snprintf(meta, sizeof(meta),
			 "type=binlog-range\nbinlog-file=mariadb-bin.000001\nstart=%zu\n"
			 "end=%zu\nevents=2\nlast-event-time=%" PRIu32 "\ngtid=0-1-3\n"
			 "created=2026-11-24T10:00:01.000Z",
			 cut, len, T0900 + 120);
	test_archive_object(f->repo, &other, &f->uploads, BK_KIND_BINLOG, SOURCE,
						name, meta, bytes + cut, len - cut);

	snprintf(target, sizeof(target), "mariadb-bin.000001:%zu", cut);
	if (!plan_target(f, TARGET_POSITION, target, &err))
		fail_msg("%s", err.message);
	assert_int_equal(f->groups, 2);
	snprintf(target, sizeof(target), "mariadb-bin.000001:%zu", len);
	assert_false(plan_target(f, TARGET_POSITION, target, &err));
	assert_int_equal(err.code, BK_ERR_KEY);
	assert_error_contains(&err, "not in the keyring");
}

/*
 * 000001 archived up to the Incident, and 000002 whole, its first range
 * saying 000001 ended at *cut (at_cut) or at *len1, without ROTATE or STOP
 * (previous-closed=none); nothing said when said is false.
 */
static void
archive_cut_incident_files(Fixture *f, bool said, bool at_cut, size_t *len1,
						   size_t *cut)
{
	uint8_t first[512], second[256];
	size_t len2;
	char extra[256] = "\ncomplete-until=1795514400000";

	build_incident_files(first, len1, cut, second, &len2);
	if (said)
		snprintf(extra, sizeof(extra),
				 "\ncomplete-until=1795514400000\nprevious-end="
				 "mariadb-bin.000001:%zu\nprevious-closed=none",
				 at_cut ? *cut : *len1);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, *cut, T0900 + 60,
						"0-1-2", "");
	archive_binlog_part(f, "mariadb-bin.000002", second, 0, len2, T0900 + 300,
						"0-1-3", extra);
}

/*
 * A file a crash left without ROTATE or STOP (previous-closed=none),
 * archived to where the agent read it end: complete, as before.
 */
static void
test_crashed_file_whole(void **state)
{
	Fixture *f = *state;
	size_t len1, cut;
	char *problems;
	BkError err;

	archive_cut_incident_files(f, true, true, &len1, &cut);
	assert_true(plan_target(f, TARGET_LATEST, NULL, &err));
	assert_int_equal(f->groups, 3);
	problems = verify_problems(f);
	assert_string_equal(problems, "[]");
	free(problems);
}

/*
 * The same file, but the agent read it to len1: its last range (which
 * held the Incident) was lost, and the crash that ended it does not make
 * the archive whole.  A gap, though 000002's GTID list shows nothing
 * missing.
 */
static void
test_crashed_file_lost_last_range(void **state)
{
	Fixture *f = *state;
	size_t len1, cut;
	char expect[200];
	char *problems;
	BkError err;

	archive_cut_incident_files(f, true, false, &len1, &cut);
	snprintf(expect, sizeof(expect),
			 "archived up to offset %zu, but the agent read it to offset %zu,"
			 " where it ended without ROTATE or STOP (a crash)",
			 cut, len1);
	assert_false(plan_target(f, TARGET_LATEST, NULL, &err));
	assert_error_contains(&err, expect);
	problems = verify_problems_keyless(f);
	assert_non_null(strstr(problems, expect));
	free(problems);
}

/*
 * A first range of the next file that is not the chain's (added to the
 * repository, say) saying the file ended where its archive now ends: the
 * real first range says otherwise, and any that disagrees makes the file
 * short.  An added object can refuse a restore, never let one pass.
 */
static void
test_extra_first_range_cannot_vouch(void **state)
{
	Fixture *f = *state;
	uint8_t first[512], second[256];
	size_t len1, len2, cut;
	char extra[256];
	BinlogCatalog catalog = {0};
	const BinlogFile *file;
	BkError err;

	build_incident_files(first, &len1, &cut, second, &len2);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, cut, T0900 + 60,
						"0-1-2", "");
	snprintf(extra, sizeof(extra),
			 "\ncomplete-until=1795514400000\nprevious-end="
			 "mariadb-bin.000001:%zu\nprevious-closed=rotate",
			 len1);
	archive_binlog_part(f, "mariadb-bin.000002", second, 0, len2, T0900 + 300,
						"0-1-3", extra);
	snprintf(extra, sizeof(extra),
			 "\ncomplete-until=1795514400000\nprevious-end="
			 "mariadb-bin.000001:%zu\nprevious-closed=none",
			 cut);
	archive_binlog_part(f, "mariadb-bin.000002", second, 0, 8, T0900 + 300,
						"0-1-3", extra);
	assert_true(binlog_catalog_load(f->repo, SOURCE, &catalog, &err));
	file = binlog_catalog_file(&catalog, "mariadb-bin.000001");
	assert_non_null(file);
	assert_true(file->short_end);
	assert_false(file->complete);
	binlog_catalog_free(&catalog);
	assert_false(plan_target(f, TARGET_LATEST, NULL, &err));
}

/*
 * Kafka losing its newest messages can take a file's last range (its
 * ROTATE with it) and the next file's first range, which says where the
 * file ended, together.  The next file's later ranges do not make the
 * first one whole: bk binlog-get refuses it.
 */
static void
test_next_file_start_lost_too(void **state)
{
	Fixture *f = *state;
	uint8_t first[512], second[256];
	size_t len1, len2, cut;
	BinlogCatalog catalog = {0};
	const BinlogFile *file;
	BkError err;

	build_incident_files(first, &len1, &cut, second, &len2);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, cut, T0900 + 60,
						"0-1-2", "");
	archive_binlog_part(f, "mariadb-bin.000002", second, 20, len2, T0900 + 300,
						"0-1-3", "");
	assert_true(binlog_catalog_load(f->repo, SOURCE, &catalog, &err));
	file = binlog_catalog_file(&catalog, "mariadb-bin.000001");
	assert_non_null(file);
	assert_false(file->complete);
	assert_true(file->cut);
	bk_error_clear(&err);
	assert_false(
		mariadb_binlog_get_file(&catalog, SOURCE, "mariadb-bin.000001", &err));
	binlog_catalog_free(&catalog);
}

/*
 * Ranges of agents that do not say where the file before ended keep the
 * rule of before: the next file following ends a file without ROTATE.
 */
static void
test_lost_closing_range_older_agent(void **state)
{
	Fixture *f = *state;
	size_t len1, cut;
	BkError err;

	archive_cut_incident_files(f, false, false, &len1, &cut);
	assert_true(plan_target(f, TARGET_LATEST, NULL, &err));
	assert_int_equal(f->groups, 3);
}

/* Where the first transaction (0-1-1) of build_two_files' first file ends. */
#define AFTER_FIRST_TRANSACTION                                                \
	(BK_BINLOG_MAGIC_LEN + BK_BINLOG_HEADER_LEN + 4 +                          \
	 2 * BK_BINLOG_HEADER_LEN + 13 + 8)

/* Both files of build_two_files archived whole, the first closed by ROTATE. */
static void
archive_both_files(Fixture *f)
{
	uint8_t first[512], second[256];
	size_t len1, len2, cut;

	build_two_files(first, &len1, &cut, second, &len2);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, len1, T0900 + 120,
						"0-1-3",
						"\nclosed=rotate\nnext-file=mariadb-bin.000002");
	archive_binlog_part(f, "mariadb-bin.000002", second, 0, len2, T0900 + 300,
						"0-1-4", "\ncomplete-until=1795514400000");
}

/*
 * The snapshot was taken of another history of the same file name: the
 * source was reset (RESET MASTER) or replaced after the agent archived
 * mariadb-bin.000001, and the agent, refusing to archive the new history
 * under the old names, goes on taking snapshots of the source.  The new
 * snapshot's coordinates then point into the archived file of the old
 * history: a restore must not replay the old history's transactions on
 * top of it.  The archive tells: the snapshot's position is not an event
 * boundary of the archived file, or the GTID state the file reached there
 * is not the snapshot's.
 */
static void
test_snapshot_of_another_history(void **state)
{
	Fixture *f = *state;
	/* After the GTID list and the first transaction (0-1-1). */
	uint64_t at = AFTER_FIRST_TRANSACTION;
	BkError err;

	archive_both_files(f);

	/* The snapshot of this history: 0-1-2 to 0-1-4 are replayed. */
	assert_true(plan_from(f, at, "0-1-1", TARGET_LATEST, NULL, &err));
	assert_int_equal(f->groups, 3);

	/* Another history: its state at that position was 0-1-7. */
	assert_false(plan_from(f, at, "0-1-7", TARGET_LATEST, NULL, &err));
	assert_int_equal(err.code, BK_ERR_CONFLICT);
	assert_error_contains(&err, "0-1-7");
	assert_error_contains(&err, "0-1-1");
	assert_false(plan_from(f, at, "0-1-7", TARGET_POSITION,
						   "mariadb-bin.000002:4", &err));
	assert_int_equal(err.code, BK_ERR_CONFLICT);
	/* A domain the archive never had, or no GTID at all. */
	assert_false(plan_from(f, at, "0-1-1,1-1-5", TARGET_LATEST, NULL, &err));
	assert_int_equal(err.code, BK_ERR_CONFLICT);
	assert_false(plan_from(f, at, "", TARGET_LATEST, NULL, &err));
	assert_int_equal(err.code, BK_ERR_CONFLICT);
	/* A position inside an event of the archived file. */
	assert_false(plan_from(f, at + BK_BINLOG_HEADER_LEN, "0-1-1", TARGET_LATEST,
						   NULL, &err));
	assert_int_equal(err.code, BK_ERR_CONFLICT);
	assert_error_contains(&err, "no event");
}

/*
 * A position names a binlog file: one of another name (a typo, or the
 * server's binlog base name from another host) with the same number as an
 * archived file ordered with it by number only, so the replay never
 * stopped in the file and took all of it, past the position given.
 */
static void
test_target_position_other_file_name(void **state)
{
	Fixture *f = *state;
	/* After the GTID list and the first transaction (0-1-1). */
	uint64_t at = AFTER_FIRST_TRANSACTION;
	char target[64];
	BkError err;

	archive_both_files(f);

	snprintf(target, sizeof(target), "mariadb-bin.000001:%" PRIu64, at);
	assert_true(plan_target(f, TARGET_POSITION, target, &err));
	assert_int_equal(f->groups, 1);
	snprintf(target, sizeof(target), "mysql-bin.000001:%" PRIu64, at);
	assert_false(plan_target(f, TARGET_POSITION, target, &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_error_contains(&err, "mysql-bin.000001");
	assert_error_contains(&err, "mariadb-bin.");
	/* The number without its leading zeros is the same file. */
	snprintf(target, sizeof(target), "mariadb-bin.1:%" PRIu64, at);
	assert_true(plan_target(f, TARGET_POSITION, target, &err));
	assert_int_equal(f->groups, 1);
}

/* An executable shell script at dir/name. */
static void
write_script(const char *dir, const char *name, const char *text)
{
	char path[1024];
	FILE *out;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	out = fopen(path, "w");
	assert_non_null(out);
	fputs(text, out);
	assert_int_equal(fclose(out), 0);
	assert_int_equal(chmod(path, 0700), 0);
}

/*
 * Stand-ins for mariadb-binlog and mariadb first on PATH, and a restore that
 * replays files files from them (freed with replay_done).
 */
static MariadbRestore *
replay_setup(Fixture *f, int files, const char *binlog_script,
			 const char *client_script, char **old_path)
{
	MariadbRestore *r = calloc(1, sizeof(*r));
	static MariadbSnapshot snap;
	static BinlogFile file;
	char bin[600], path[1200];

	*old_path = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
	snprintf(bin, sizeof(bin), "%s/bin", f->dir);
	assert_int_equal(mkdir(bin, 0700), 0);
	write_script(bin, "mariadb-binlog", binlog_script);
	write_script(bin, "mariadb", client_script);
	snprintf(path, sizeof(path), "%s:%s", bin, *old_path ? *old_path : "");
	setenv("PATH", path, 1);

	memset(&file, 0, sizeof(file));
	memset(&snap, 0, sizeof(snap));
	bk_strlcpy(file.name, "mariadb-bin.000001", sizeof(file.name));
	bk_strlcpy(snap.binlog_file, file.name, sizeof(snap.binlog_file));
	snap.binlog_pos = 4;
	r->program = "test";
	r->user = "root";
	r->socket = "/nonexistent/mysqld.sock";
	r->snapshot = &snap;
	r->max_packet = 1ULL << 30;
	r->replay = calloc((size_t) files, sizeof(ReplayFile));
	for (int idx = 0; idx < files; idx++)
	{
		r->replay[idx].file = &file;
		snprintf(r->replay[idx].path, sizeof(r->replay[idx].path),
				 "%s/work/mariadb-bin.%06d", f->dir, idx + 1);
	}
	r->replay_count = files;
	return r;
}

static void
replay_done(MariadbRestore *r, char *old_path)
{
	if (old_path != NULL)
		setenv("PATH", old_path, 1);
	free(old_path);
	free(r->replay);
	free(r);
}

/* The first number in file, or -1. */
static long
number_in(const char *file)
{
	FILE *in = fopen(file, "r");
	long value = -1;

	if (in != NULL)
	{
		if (fscanf(in, "%ld", &value) != 1)
			value = -1;
		fclose(in);
	}
	return value;
}

/*
 * Replay hands every rebuilt file to mariadb-binlog on its command line.
 * A replay of more files than a fixed argument table holds lost the later
 * ones without a word: mariadb-binlog replayed the first files only, both
 * tools exited 0, and on a target without log_bin (where the GTID check
 * after replay does not run) the restore reported success, short.  The
 * tools here are stand-ins that count what they are given.
 */
static void
test_replay_passes_every_file(void **state)
{
	Fixture *f = *state;
	enum
	{
		FILES = 9000
	};
	char count_file[600];
	char *old_path;
	MariadbRestore *r;
	BkError err;

	snprintf(count_file, sizeof(count_file), "%s/count", f->dir);
	setenv("BK_TEST_COUNT_FILE", count_file, 1);
	r = replay_setup(f, FILES,
					 "#!/bin/sh\n"
					 "n=0\n"
					 "for a in \"$@\"; do\n"
					 "  case \"$a\" in --*) ;; *) n=$((n+1)) ;; esac\n"
					 "done\n"
					 "echo $n > \"$BK_TEST_COUNT_FILE\"\n",
					 "#!/bin/sh\ncat > /dev/null\n", &old_path);
	bk_error_clear(&err);
	assert_true(restore_replay(r, &err));
	replay_done(r, old_path);
	unsetenv("BK_TEST_COUNT_FILE");
	assert_int_equal(number_in(count_file), FILES);
}

/*
 * The client echoes the statement that failed before its ERROR line, and a
 * BINLOG statement is megabytes of base64: the message, cut to its size,
 * said "--------------" and base64 but never what the server refused.
 */
static void
test_replay_failure_names_server_error(void **state)
{
	Fixture *f = *state;
	char *old_path;
	MariadbRestore *r;
	BkError err;

	r = replay_setup(
		f, 1, "#!/bin/sh\nexit 0\n",
		"#!/bin/sh\n"
		"[ \"$1\" = --print-defaults ] && exit 0\n"
		"cat > /dev/null\n"
		"{ echo --------------; echo \"BINLOG '\"\n"
		"  i=0; while [ $i -lt 100 ]; do\n"
		"    echo PZIWaxMBAAAALwAAAAOXhgwAACEAAAAAAAEAA2JreAADYmlnAAID;"
		" i=$((i+1)); done\n"
		"  echo \"'\"; echo --------------; echo\n"
		"  echo \"ERROR 1153 (08S01) at line 7: Got a packet bigger"
		" than 'max_allowed_packet' bytes\"; } >&2\n"
		"exit 1\n",
		&old_path);
	bk_error_clear(&err);
	assert_false(restore_replay(r, &err));
	replay_done(r, old_path);
	if (strstr(err.message, "mariadb exit 1): ERROR 1153 (08S01) at line 7:"
							" Got a packet bigger than") == NULL)
		fail_msg("no server error in \"%s\"", err.message);
}

/*
 * The target's disk filled during the replay: the server answers 1114 ("The
 * table is full"), or a write's errno 28.  The error said only that, with
 * nothing on how far the replay got or what to do: the hint names the
 * GTID of the transaction that failed (every one before it applied), and
 * says to make room and restore again with --force.  The stand-in
 * mariadb-binlog prints what the real one does around a GTID event.
 */
static void
test_replay_target_full(void **state)
{
	static const char *const errors[] = {
		"ERROR 1114 (HY000) at line 9: The table 't1' is full",
		"ERROR 3 (HY000) at line 9: Error writing file './mariadb-bin.000002'"
		" (Errcode: 28 \\\"No space left on device\\\")",
		"ERROR 1030 (HY000) at line 9: Got error 28 \\\"No space left on"
		" device\\\" from storage engine InnoDB",
	};
	Fixture *f = *state;

	for (size_t idx = 0; idx < sizeof(errors) / sizeof(errors[0]); idx++)
	{
		char client[1024];
		char bin[600];
		char *old_path;
		MariadbRestore *r;
		BkError err;

		snprintf(client, sizeof(client),
				 "#!/bin/sh\n"
				 "[ \"$1\" = --print-defaults ] && exit 0\n"
				 "cat > /dev/null\n"
				 "echo \"%s\" >&2\n"
				 "exit 1\n",
				 errors[idx]);
		r = replay_setup(
			f, 1,
			"#!/bin/sh\n"
			"printf '%s\\n' '# at 4' '#261207 16:16:41 server id 1  "
			"end_log_pos 256 CRC32 0x0 \tStart: binlog v 4' '# at 330' "
			"'#261207 16:16:41 server id 1  end_log_pos 372 CRC32 0x0 "
			"\tGTID 0-1-41 trans' "
			"'/*M!100001 SET @@session.gtid_seq_no=41*//*!*/;' 'BEGIN' "
			"'# at 372' '#261207 16:16:41 server id 1  end_log_pos 900 CRC32 "
			"0x0 \tTable_map: `d`.`t1` mapped to number 18' 'BINLOG ...'\n",
			client, &old_path);
		bk_error_clear(&err);
		assert_false(restore_replay(r, &err));
		replay_done(r, old_path);
		snprintf(bin, sizeof(bin), "%s/bin", f->dir);
		test_rmdir(bin);
		if (strstr(err.message, " at the event at mariadb-bin.000001:372") ==
				NULL ||
			strstr(err.hint, "ran out of room") == NULL ||
			strstr(err.hint, "every transaction before GTID 0-1-41") == NULL ||
			strstr(err.hint, "--force") == NULL)
			fail_msg("%zu: \"%s\", hint \"%s\"", idx, err.message, err.hint);
	}
}

/* A loader's stand-in: started while the signals are held, it inherits it. */
static void *
blocked_reader(void *arg)
{
	int *fds = arg;
	char byte;
	ssize_t got;

	/* A signal must not cut it short (EINTR) while it waits. */
	got = read(fds[0], &byte, 1);
	return (void *) (intptr_t) (got == 1 ? 0 : errno);
}

/*
 * From the first write until the settings are put back, a SIGTERM (or
 * SIGINT, SIGHUP) ended bk at once, the target's settings left changed.
 * Held now: the process goes on, a thread started meanwhile (a loader,
 * holding a connection) is not cut short, the signal is found and named
 * (restore_go_on), a second one during the putting back is held too, and
 * once released the signals are the process's own again.
 */
static void
test_signals_held_while_settings_changed(void **state)
{
	MariadbRestore *r = calloc(1, sizeof(*r));
	struct sigaction now;
	sigset_t mask;
	pthread_t reader;
	int fds[2];
	void *reader_status;
	BkError err;

	(void) state;
	assert_int_equal(pipe(fds), 0);
	restore_hold_signals(r);
	assert_int_equal(restore_signal_taken(r), 0);
	bk_error_clear(&err);
	assert_true(restore_go_on(r, "before the table data", &err));
	assert_int_equal(pthread_create(&reader, NULL, blocked_reader, fds), 0);
	usleep(50 * 1000);
	assert_int_equal(kill(getpid(), SIGTERM), 0);
	usleep(50 * 1000);
	assert_int_equal(write(fds[1], "x", 1), 1);
	pthread_join(reader, &reader_status);
	assert_int_equal((intptr_t) reader_status, 0);
	assert_false(restore_go_on(r, "during the table data", &err));
	assert_int_equal(err.code, BK_ERR_INTERRUPTED);
	assert_string_equal(err.message, "bk restore was stopped by signal 15"
									 " (Terminated) during the table data");
	/* The putting back: a second signal waits too. */
	assert_int_equal(kill(getpid(), SIGHUP), 0);
	assert_int_equal(restore_signal_taken(r), SIGTERM);
	restore_release_signals(r);
	assert_int_equal(r->stop_signal, SIGTERM);
	assert_int_equal(sigaction(SIGTERM, NULL, &now), 0);
	assert_true(now.sa_handler == SIG_DFL);
	assert_int_equal(sigaction(SIGHUP, NULL, &now), 0);
	assert_true(now.sa_handler == SIG_DFL);
	assert_int_equal(pthread_sigmask(SIG_SETMASK, NULL, &mask), 0);
	assert_false(sigismember(&mask, SIGTERM));
	close(fds[0]);
	close(fds[1]);
	free(r);
}

/* A thread that takes the process's signals while the test's blocks them. */
static void *
signal_taker(void *arg)
{
	int *stop = arg;

	while (!__atomic_load_n(stop, __ATOMIC_SEQ_CST))
		usleep(10 * 1000);
	return NULL;
}

/*
 * The replay runs with the target's max_allowed_packet at 1 GiB and its
 * slave_* settings changed.  A SIGTERM (a kill, a systemd stop; Ctrl-C and
 * a closed terminal alike) ended bk at once, the settings left so on the
 * target.  It now only stops the replay's tools: restore_replay returns,
 * puts the settings back, says why, and leaves bk_mariadb_restore to end
 * by the signal.  The client here is a stand-in that sends bk the signal
 * and waits; before, the signal killed this test.  Taken by another
 * thread too (bk's own, or a library's), where the replay's read of the
 * tools' messages is not interrupted: the tools stop all the same.
 */
static void
test_replay_signal_puts_back(void **state)
{
	Fixture *f = *state;
	char *old_path;
	MariadbRestore *r;
	struct sigaction now;
	int64_t started;
	BkError err;
	sigset_t term, saved_mask;
	pthread_t taker;
	char bin[600];
	int stop = 0;

	for (int round = 0; round < 2; round++)
	{
		if (round == 1)
		{
			assert_int_equal(pthread_create(&taker, NULL, signal_taker, &stop),
							 0);
			sigemptyset(&term);
			sigaddset(&term, SIGTERM);
			pthread_sigmask(SIG_BLOCK, &term, &saved_mask);
		}
		r = replay_setup(f, 1, "#!/bin/sh\nexec sleep 30\n",
						 "#!/bin/sh\n"
						 "[ \"$1\" = --print-defaults ] && exit 0\n"
						 "kill -TERM $PPID\n"
						 "exec sleep 30\n",
						 &old_path);
		bk_error_clear(&err);
		started = bk_monotonic_ms();
		/* As run() does from the first write on. */
		restore_hold_signals(r);
		assert_false(restore_replay(r, &err));
		assert_int_equal(err.code, BK_ERR_INTERRUPTED);
		if (strstr(err.message, "stopped by signal 15") == NULL)
			fail_msg("no signal in \"%s\"", err.message);
		assert_int_equal(r->stop_signal, SIGTERM);
		/* The tools were stopped, not waited for. */
		assert_true(bk_monotonic_ms() - started < 10000);
		/* And the signal is the process's own again once released. */
		restore_release_signals(r);
		assert_int_equal(sigaction(SIGTERM, NULL, &now), 0);
		assert_true(now.sa_handler == SIG_DFL);
		replay_done(r, old_path);
		snprintf(bin, sizeof(bin), "%s/bin", f->dir);
		assert_true(bk_remove_tree(bin, &err));
	}
	__atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(taker, NULL);
	pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
}

/*
 * The replay client reads the option files (that is how ~/.my.cnf gives it
 * the password).  "force" there made it carry on past a failed statement
 * and exit 0, and "one-database" made it skip every statement: a restore
 * short by any number of transactions, reported complete.  force is turned
 * off on the client's command line; one-database refuses the restore
 * before anything is replayed.  The client here is a stand-in whose
 * --print-defaults says what BK_TEST_DEFAULTS holds.
 */
/* Ways the option files can give the client one-database. */
static const char *const one_database_forms[] = {
	"--loose-one-database",
	"--one_database",
	"--user=u --LOOSE_One_Database --host=h",
	"--one-data",
	"--loose-o",
};

static void
test_replay_client_option_files(void **state)
{
	Fixture *f = *state;
	char args_file[600];
	char *old_path;
	MariadbRestore *r;
	char *args;
	size_t len;
	BkError err;

	snprintf(args_file, sizeof(args_file), "%s/client-args", f->dir);
	setenv("BK_TEST_ARGS_FILE", args_file, 1);
	r = replay_setup(
		f, 2, "#!/bin/sh\necho 'SELECT 1;'\n",
		"#!/bin/sh\n"
		"if [ \"$1\" = --print-defaults ]; then\n"
		"  echo 'mariadb would have been started with the following "
		"arguments:'\n"
		"  echo \"$BK_TEST_DEFAULTS\"\n"
		"  exit 0\n"
		"fi\n"
		"echo \"$@\" > \"$BK_TEST_ARGS_FILE\"\n"
		"cat > /dev/null\n",
		&old_path);

	setenv("BK_TEST_DEFAULTS", "--password=x --one-database --force", 1);
	bk_error_clear(&err);
	assert_false(restore_replay(r, &err));
	assert_non_null(strstr(err.message, "one-database"));
	assert_int_equal(access(args_file, F_OK), -1); /* nothing replayed */

	/*
	 * The client takes the option by any of these too (tried against
	 * MariaDB 10.11's: "loose-", "_" for "-", any case, a unique prefix).
	 */
	for (size_t formIdx = 0;
		 formIdx < sizeof(one_database_forms) / sizeof(one_database_forms[0]);
		 formIdx++)
	{
		setenv("BK_TEST_DEFAULTS", one_database_forms[formIdx], 1);
		bk_error_clear(&err);
		assert_false(restore_replay(r, &err));
		assert_non_null(strstr(err.message, "one-database"));
		assert_int_equal(access(args_file, F_OK), -1);
	}

	/* No option file can give "-o": in a value, it is not the option. */
	setenv("BK_TEST_DEFAULTS", "--password=se cret -o x --force", 1);
	bk_error_clear(&err);
	assert_true(restore_replay(r, &err));
	assert_true(bk_read_file(args_file, 4096, &args, &len, &err));
	assert_non_null(strstr(args, " --skip-force"));
	free(args);

	/* No client at all: said so, not "failed". */
	setenv("PATH", "/nonexistent", 1);
	bk_error_clear(&err);
	assert_false(restore_replay(r, &err));
	assert_non_null(strstr(err.message, "not on PATH"));
	replay_done(r, old_path);
	unsetenv("BK_TEST_DEFAULTS");
	unsetenv("BK_TEST_ARGS_FILE");
}

/*
 * What the replay needs is checked before the load (restore_check_replay,
 * before --force drops anything): found at the replay, after hours of
 * loading, a missing mariadb-binlog, option files giving one-database or
 * an event too large for any packet left a half-restored server.
 */
static void
test_check_replay_before_load(void **state)
{
	Fixture *f = *state;
	char path[700];
	char *old_path;
	MariadbRestore *r;
	BkError err;

	r = replay_setup(
		f, 1, "#!/bin/sh\nexit 0\n",
		"#!/bin/sh\n"
		"[ \"$1\" = --print-defaults ] && echo \"$BK_TEST_DEFAULTS\" && exit "
		"0\n"
		"for a in \"$@\"; do\n"
		"  if [ \"$a\" = '--execute=SELECT 1' ] && [ -n \"$BK_TEST_LOGIN\" ]; "
		"then\n"
		"    echo \"$BK_TEST_LOGIN\" >&2; exit 1\n"
		"  fi\n"
		"done\n"
		"exit 0\n",
		&old_path);
	setenv("BK_TEST_DEFAULTS", "--password=x", 1);
	bk_error_clear(&err);
	assert_true(restore_check_replay(r, &err));

	setenv("BK_TEST_DEFAULTS", "--one-database", 1);
	assert_false(restore_check_replay(r, &err));
	assert_non_null(strstr(err.message, "one-database"));
	setenv("BK_TEST_DEFAULTS", "--password=x", 1);

	/*
	 * With --mysql-password-file, a password in the option files would
	 * win over it for the replay (MYSQL_PWD counts only without one):
	 * Access denied after the whole load.
	 */
	r->password_file = "/etc/bk/mysql-password";
	setenv("BK_TEST_DEFAULTS", "--user=u --loose-pass=y", 1);
	bk_error_clear(&err);
	assert_false(restore_check_replay(r, &err));
	assert_non_null(strstr(err.message, "a password, which it would use"));
	setenv("BK_TEST_DEFAULTS", "--user=u --pager=less", 1);
	assert_true(restore_check_replay(r, &err));
	r->password_file = NULL;
	setenv("BK_TEST_DEFAULTS", "--password=x", 1);

	/*
	 * The client, run as the replay runs it, cannot log in (the option
	 * files give it an option it does not know, another password): said
	 * now, with its message.
	 */
	setenv("BK_TEST_LOGIN", "ERROR 1045 (28000): Access denied for user", 1);
	bk_error_clear(&err);
	assert_false(restore_check_replay(r, &err));
	assert_non_null(strstr(err.message, "run as the binlog replay runs it"));
	assert_non_null(strstr(err.message, "Access denied for user"));
	unsetenv("BK_TEST_LOGIN");

	r->largest_statement = 900ULL * 1024 * 1024;
	bk_error_clear(&err);
	assert_false(restore_check_replay(r, &err));
	assert_non_null(strstr(err.message, "too large to replay"));
	r->largest_statement = 0;

	/* Only the stand-in client on PATH, no mariadb-binlog. */
	snprintf(path, sizeof(path), "%s/bin/mariadb-binlog", f->dir);
	assert_int_equal(unlink(path), 0);
	snprintf(path, sizeof(path), "%s/bin", f->dir);
	setenv("PATH", path, 1);
	bk_error_clear(&err);
	assert_false(restore_check_replay(r, &err));
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_non_null(strstr(err.message, "mariadb-binlog"));
	assert_non_null(strstr(err.message, "not on PATH"));
	replay_done(r, old_path);
	unsetenv("BK_TEST_DEFAULTS");
}

/*
 * bk restore's TLS (--mysql-ssl-*): over TCP, TLS settings in the option
 * files (which Connector/C reads at connect time, over the options) are
 * refused before any connection, in any spelling, their values unsaid;
 * and the replay's client is given the options, with an init command
 * that refuses a session without TLS.
 */
static void
test_restore_tls_options(void **state)
{
	Fixture *f = *state;
	static const char *const tls_forms[] = {
		"--ssl",
		"--ssl-ca=/home/dba/other-ca.pem",
		"--loose-skip-ssl",
		"--ssl_verify_server_cert=0",
		"--TLS-version=TLSv1",
		"--disable-ssl-verify-server-cert",
		"--loose-enable-ssl",
	};
	char args_file[600];
	char *old_path;
	char *args;
	size_t len;
	MariadbRestore *r;
	BkError err;

	snprintf(args_file, sizeof(args_file), "%s/client-args", f->dir);
	setenv("BK_TEST_ARGS_FILE", args_file, 1);
	r = replay_setup(f, 1, "#!/bin/sh\nexit 0\n",
					 "#!/bin/sh\n"
					 "[ \"$1\" = --print-defaults ] && echo "
					 "\"$BK_TEST_DEFAULTS\" && exit 0\n"
					 "echo \"$@\" >\"$BK_TEST_ARGS_FILE\"\n"
					 "exit 0\n",
					 &old_path);
	r->socket = NULL;
	r->host = "db1.example";
	r->port = 3306;
	r->tls.style = BK_MYSQL_TLS_OPTIONS;
	r->tls.mode = BK_MYSQL_SSL_VERIFY_IDENTITY;
	r->tls.ca = "/etc/bk/mysql-ca.pem";
	for (size_t idx = 0; idx < sizeof(tls_forms) / sizeof(tls_forms[0]); idx++)
	{
		char want[128];

		setenv("BK_TEST_DEFAULTS", tls_forms[idx], 1);
		bk_error_clear(&err);
		assert_false(restore_check_client_defaults(r, &err));
		assert_int_equal(err.code, BK_ERR_CONFIG);
		snprintf(want, sizeof(want), "give the mariadb client %.*s, a TLS",
				 (int) strcspn(tls_forms[idx], "="), tls_forms[idx]);
		if (strstr(err.message, want) == NULL)
			fail_msg("\"%s\" lacks \"%s\"", err.message, want);
		assert_null(strstr(err.message, "other-ca"));
	}
	/* Other settings pass; so does the socket, where TLS is not used. */
	setenv("BK_TEST_DEFAULTS", "--user=u --pager=less", 1);
	assert_true(restore_check_client_defaults(r, &err));
	setenv("BK_TEST_DEFAULTS", "--ssl-ca=/x", 1);
	r->socket = "/nonexistent/mysqld.sock";
	assert_true(restore_check_client_defaults(r, &err));
	r->socket = NULL;
	/* disabled given, not defaulted: bk asks for no TLS, checks none. */
	r->tls.mode = BK_MYSQL_SSL_DISABLED;
	r->tls.mode_defaulted = true;
	assert_false(restore_check_client_defaults(r, &err));
	assert_non_null(strstr(err.message, "--mysql-ssl-mode=disabled, the"
										" default"));
	r->tls.mode_defaulted = false;
	assert_true(restore_check_client_defaults(r, &err));

	/* The replay's client, as restore_check_replay runs it. */
	setenv("BK_TEST_DEFAULTS", "--user=u", 1);
	r->tls.mode = BK_MYSQL_SSL_VERIFY_IDENTITY;
	bk_error_clear(&err);
	assert_true(restore_check_replay(r, &err));
	assert_true(bk_read_file(args_file, 4096, &args, &len, &err));
	assert_non_null(strstr(args, " --protocol=TCP --host=db1.example"
								 " --port=3306 --ssl --ssl-verify-server-cert"
								 " --ssl-ca=/etc/bk/mysql-ca.pem"));
	assert_non_null(strstr(args, " --init-command=IF IFNULL((SELECT"
								 " VARIABLE_VALUE"));
	assert_non_null(strstr(args, " 'Ssl_cipher'), '') = '' THEN"));
	assert_non_null(strstr(args, "--mysql-ssl-mode=verify_identity refuses"
								 " it'; END IF"));
	free(args);
	r->tls.mode = BK_MYSQL_SSL_DISABLED;
	assert_true(restore_check_replay(r, &err));
	assert_true(bk_read_file(args_file, 4096, &args, &len, &err));
	assert_null(strstr(args, "--ssl"));
	assert_null(strstr(args, "--init-command"));
	free(args);
	replay_done(r, old_path);
	unsetenv("BK_TEST_DEFAULTS");
	unsetenv("BK_TEST_ARGS_FILE");
}

/*
 * Settings bk makes itself on its connections to the target, which
 * Connector/C reads from [client] at connect time over bk's: reconnect
 * (a login again without the TLS check or the loading session's
 * settings), protocol (socket for bk, TCP for the replay's client),
 * init-command, local-infile.  Refused in any spelling, with or without a
 * replay, over TCP or the socket.  A world-writable option file, which
 * the client skips with a warning and Connector/C reads, is refused
 * naming it.
 */
static void
test_restore_own_settings(void **state)
{
	Fixture *f = *state;
	static const struct
	{
		const char *word;
		const char *name;
	} forms[] = {
		{"--reconnect=1", "reconnect"},
		{"--reconnect", "reconnect"},
		{"--loose-RECONNECT", "reconnect"},
		{"--enable-reconnect", "reconnect"},
		{"--skip-reconnect", "reconnect"},
		{"--recon", "reconnect"},
		{"--protocol=socket", "protocol"},
		{"--loose_protocol=SOCKET", "protocol"},
		{"--prot=socket", "protocol"},
		{"--init-command=SET sql_log_bin=1", "init-command"},
		{"--init_command=x", "init-command"},
		{"--loose-init-com=x", "init-command"},
		{"--local-infile=1", "local-infile"},
		{"--local_infile", "local-infile"},
		{"--disable-local-infile", "local-infile"},
		{"--loc", "local-infile"},
	};
	static const char *const fine[] = {
		"--user=u --pager=less --socket=/run/mysqld/mysqld.sock",
		"--prompt=x --progress-reports --i-am-a-dummy --line-numbers",
		"--raw --ignore-spaces --port=3306 --host=h",
	};
	char *old_path;
	MariadbRestore *r;
	BkError err;

	r = replay_setup(f, 0, "#!/bin/sh\nexit 0\n",
					 "#!/bin/sh\n"
					 "[ -n \"$BK_TEST_DEFAULTS_ERR\" ] && "
					 "echo \"$BK_TEST_DEFAULTS_ERR\" >&2\n"
					 "[ \"$1\" = --print-defaults ] && echo "
					 "\"$BK_TEST_DEFAULTS\" && exit 0\n"
					 "exit 0\n",
					 &old_path);
	for (int transport = 0; transport < 2; transport++)
	{
		if (transport == 0)
		{
			r->socket = NULL;
			r->host = "127.0.0.1";
			r->port = 3306;
			r->tls.mode = BK_MYSQL_SSL_DISABLED;
			r->tls.mode_defaulted = false;
		}
		else
			r->socket = "/nonexistent/mysqld.sock";
		for (size_t idx = 0; idx < sizeof(forms) / sizeof(forms[0]); idx++)
		{
			char want[160];

			setenv("BK_TEST_DEFAULTS", forms[idx].word, 1);
			bk_error_clear(&err);
			if (restore_check_client_defaults(r, &err))
				fail_msg("\"%s\" passed", forms[idx].word);
			assert_int_equal(err.code, BK_ERR_CONFIG);
			snprintf(want, sizeof(want),
					 "give the mariadb client %s, a "
					 "setting bk restore makes itself",
					 forms[idx].name);
			if (strstr(err.message, want) == NULL)
				fail_msg("\"%s\" lacks \"%s\"", err.message, want);
			assert_null(strstr(err.message, "sql_log_bin"));
		}
		for (size_t idx = 0; idx < sizeof(fine) / sizeof(fine[0]); idx++)
		{
			setenv("BK_TEST_DEFAULTS", fine[idx], 1);
			bk_error_clear(&err);
			if (!restore_check_client_defaults(r, &err))
				fail_msg("\"%s\" refused: %s", fine[idx], err.message);
		}
	}

	/* mariadb --print-defaults' own words, the file left out of its list. */
	setenv("BK_TEST_DEFAULTS", "--user=u", 1);
	setenv("BK_TEST_DEFAULTS_ERR",
		   "Warning: World-writable config file '/home/dba/.my.cnf' is "
		   "ignored",
		   1);
	bk_error_clear(&err);
	assert_false(restore_check_client_defaults(r, &err));
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_non_null(strstr(err.message, "the option file /home/dba/.my.cnf "
										"is world-writable"));
	/* Anything else on stderr is no refusal. */
	setenv("BK_TEST_DEFAULTS_ERR", "mariadb: some other warning", 1);
	bk_error_clear(&err);
	assert_true(restore_check_client_defaults(r, &err));
	unsetenv("BK_TEST_DEFAULTS_ERR");
	replay_done(r, old_path);
	unsetenv("BK_TEST_DEFAULTS");
}

#define SNAP_NEW "20261124T051200Z-0000abcd"
#define SNAP_OLD "20261123T051200Z-0000abcd"

/* The paths fsync() was called on (through /proc/self/fd), in order. */
static char synced[64][1024];
static int synced_count;

extern int __real_fsync(int fd);
extern int __wrap_fsync(int fd);

int
__wrap_fsync(int fd)
{
	char link[64];
	ssize_t len;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if (synced_count < 64 &&
		(len = readlink(link, synced[synced_count], sizeof(synced[0]) - 1)) > 0)
		synced[synced_count++][len] = '\0';
	return __real_fsync(fd);
}

static bool
was_synced(const char *path)
{
	char real[PATH_MAX];

	if (realpath(path, real) == NULL)
		return false;
	for (int idx = 0; idx < synced_count; idx++)
		if (strcmp(synced[idx], real) == 0)
			return true;
	return false;
}

/*
 * bk snapshot-get says it wrote the snapshot: a crash right after must not
 * lose a file of it.  Each data file is created in DIR/data, so that
 * directory must be synced for the file's name to last, and DIR itself
 * in the directory that holds it.
 */
static void archive_whole_snapshot(Fixture *f, const char *id);

static void
test_snapshot_get_durable(void **state)
{
	Fixture *f = *state;
	char out_dir[600], path[700];
	uint64_t tables = 0;
	BkError err;

	archive_whole_snapshot(f, SNAP_NEW);

	snprintf(out_dir, sizeof(out_dir), "%s/out", f->dir);
	synced_count = 0;
	assert_true(mariadb_snapshot_check(f->repo, SOURCE, f->decoder, SNAP_NEW,
									   out_dir, NULL, &tables, &err));
	assert_int_equal(tables, 1);
	snprintf(path, sizeof(path), "%s/data/000001.tsv", out_dir);
	assert_true(was_synced(path));
	snprintf(path, sizeof(path), "%s/data", out_dir);
	assert_true(was_synced(path));
	assert_true(was_synced(out_dir));
	assert_true(was_synced(f->dir));

	/* DIR must be new: one that exists is a usage error (exit 2), not an
	 * unreachable repository (exit 5), and what is in it stays. */
	bk_error_clear(&err);
	assert_false(mariadb_snapshot_check(f->repo, SOURCE, f->decoder, SNAP_NEW,
										out_dir, NULL, &tables, &err));
	assert_int_equal(err.code, BK_ERR_USAGE);
	assert_non_null(strstr(err.hint, "must not exist"));
	snprintf(path, sizeof(path), "%s/data/000001.tsv", out_dir);
	assert_int_equal(access(path, F_OK), 0);
}

/*
 * Faults in the repositories the commands open themselves (linked with
 * --wrap=bk_repo_open_with): test_repo_faults(command_faults,
 * command_fault_key) on each, while command_faults is set (cleared by
 * setup, so that a test that failed midway leaves none behind).
 */
extern BkRepo *__real_bk_repo_open_with(const char *location,
										const BkRepoOptions *options,
										bool create, BkError *err);
extern BkRepo *__wrap_bk_repo_open_with(const char *location,
										const BkRepoOptions *options,
										bool create, BkError *err);

BkRepo *
__wrap_bk_repo_open_with(const char *location, const BkRepoOptions *options,
						 bool create, BkError *err)
{
	BkRepo *repo = __real_bk_repo_open_with(location, options, create, err);

	if (repo != NULL && command_faults != 0)
		test_repo_faults(repo, command_faults, command_fault_key);
	return repo;
}

static int snapshot_get_to(Fixture *f, const char *id, const char *out,
						   char **messages);

/*
 * bk snapshot-get [--snapshot ID] DIR on the fixture's repository, DIR
 * removed first, its messages in *messages (freed by the caller); the
 * exit status.
 */
static int
snapshot_get_fresh(Fixture *f, const char *id, char **messages)
{
	char out_dir[600];
	char command[700];

	snprintf(out_dir, sizeof(out_dir), "%s/snapshot-out", f->dir);
	snprintf(command, sizeof(command), "rm -rf '%s'", out_dir);
	assert_int_equal(system(command), 0);
	return snapshot_get_to(f, id, out_dir, messages);
}

/*
 * bk snapshot-get exits 1 only when the snapshot asked for is not in the
 * archive (a script fetches until it sees 1).  The newest snapshot's
 * record the repository fails to read (a store that does not answer, or
 * answers 404 for an object it lists) says nothing of that snapshot: not
 * "no complete snapshot" (exit 1), nor the older snapshot written as the
 * newest (exit 0), but the repository's failure (exit 5).  Its
 * schema.json listed, then gone when read, is missing data (exit 4).
 */
static void
test_snapshot_get_failure_is_not_absent(void **state)
{
	Fixture *f = *state;
	char *messages = NULL;

	archive_whole_snapshot(f, SNAP_OLD);
	archive_whole_snapshot(f, SNAP_NEW);
	assert_int_equal(snapshot_get_fresh(f, NULL, &messages), BK_EXIT_OK);
	assert_non_null(strstr(messages, "wrote snapshot " SNAP_NEW));
	free(messages);

	command_faults = TEST_FAIL_READS;
	command_fault_key = SNAP_NEW "/" BK_SNAPSHOT_RECORD;
	assert_int_equal(snapshot_get_fresh(f, NULL, &messages),
					 BK_EXIT_UNAVAILABLE);
	assert_non_null(strstr(messages, "injected failure reading"));
	free(messages);
	assert_int_equal(snapshot_get_fresh(f, SNAP_NEW, &messages),
					 BK_EXIT_UNAVAILABLE);
	free(messages);
	/* Another snapshot asked for by name: that record is not needed. */
	assert_int_equal(snapshot_get_fresh(f, SNAP_OLD, &messages), BK_EXIT_OK);
	free(messages);

	command_faults = TEST_READS_NOT_FOUND;
	assert_int_equal(snapshot_get_fresh(f, NULL, &messages),
					 BK_EXIT_UNAVAILABLE);
	free(messages);

	/* The catalog lists schema.json and never reads it; the writing does. */
	command_fault_key = SNAP_NEW "/schema.json";
	assert_int_equal(snapshot_get_fresh(f, NULL, &messages), BK_EXIT_INTEGRITY);
	assert_non_null(strstr(messages, "schema.json"));
	free(messages);
	command_faults = 0;

	/* What exit 1 is for. */
	assert_int_equal(
		snapshot_get_fresh(f, "20261125T051200Z-0000abcd", &messages),
		BK_EXIT_FAILURE);
	assert_non_null(strstr(messages, "has no snapshot"));
	free(messages);
}

/*
 * bk snapshot-get --snapshot ID when the store fails to read what that
 * snapshot needs (a disk that answers EIO, which the directory backend
 * reports as the store's failure, as it does a store that does not
 * answer; or a 404 for an object it lists): the repository's failure
 * (exit 5, try again), never "no such snapshot" (exit 1), and DIR is not
 * written, so a retry finds it new.  The record and schema.json are read
 * before DIR is made; a data part fails while DIR is written, and what
 * was written goes: a DIR left half written would hold a snapshot.json
 * that says the snapshot is all there, and stop the retry (exit 2).
 */
static void
test_snapshot_get_named_unreadable(void **state)
{
	static const char *const keys[] = {
		SNAP_NEW "/" BK_SNAPSHOT_RECORD,
		SNAP_NEW "/schema.json",
		SNAP_NEW "/data/",
	};
	static const int faults[] = {TEST_FAIL_READS, TEST_READS_NOT_FOUND};
	Fixture *f = *state;
	char out[600];
	char *messages = NULL;

	archive_whole_snapshot(f, SNAP_OLD);
	archive_whole_snapshot(f, SNAP_NEW);
	snprintf(out, sizeof(out), "%s/named-out", f->dir);
	for (size_t key = 0; key < sizeof(keys) / sizeof(keys[0]); key++)
		for (size_t fault = 0; fault < sizeof(faults) / sizeof(faults[0]);
			 fault++)
		{
			int want = BK_EXIT_UNAVAILABLE;

			/* Listed, then "not there" when read: missing data. */
			if (faults[fault] == TEST_READS_NOT_FOUND && key > 0)
				want = BK_EXIT_INTEGRITY;
			command_faults = faults[fault];
			command_fault_key = keys[key];
			assert_int_equal(snapshot_get_to(f, SNAP_NEW, out, &messages),
							 want);
			command_faults = 0;
			if (faults[fault] == TEST_FAIL_READS)
				assert_non_null(strstr(messages, "injected failure reading"));
			assert_non_null(strstr(messages, SNAP_NEW));
			assert_null(strstr(messages, "wrote snapshot"));
			assert_int_not_equal(access(out, F_OK), 0);
			assert_int_equal(errno, ENOENT);
			free(messages);
		}

	/* The store back: the same command writes it. */
	assert_int_equal(snapshot_get_to(f, SNAP_NEW, out, &messages), BK_EXIT_OK);
	assert_non_null(strstr(messages, "wrote snapshot " SNAP_NEW));
	free(messages);
}

/*
 * bk binlog-get is run by hand, and OUT may be a file that matters (the
 * server's own binlog): it is written when new, and an OUT that exists is
 * a usage error (exit 2) that leaves it as it was, as bk snapshot-get's DIR.
 * bk restore does not go through it.
 */
static void
test_binlog_get_keeps_existing_out(void **state)
{
	Fixture *f = *state;
	uint8_t first[1024], second[1024];
	size_t len1, len2, cut;
	BinlogCatalog catalog = {0};
	const BinlogFile *file;
	char out_path[600], tmp_path[700];
	char *data = NULL;
	size_t data_len = 0;
	uint64_t events = 0;
	FILE *keep;
	BkError err;

	build_two_files(first, &len1, &cut, second, &len2);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, len1, T0900 + 120,
						"0-1-3", "\nclosed=rotate");
	archive_binlog_part(f, "mariadb-bin.000002", second, 0, len2, T0900 + 300,
						"0-1-4", "\ncomplete-until=1795514400000");
	assert_true(binlog_catalog_load(f->repo, SOURCE, &catalog, &err));
	file = binlog_catalog_file(&catalog, "mariadb-bin.000001");
	assert_non_null(file);
	assert_true(file->complete);

	/* A new OUT: the file, nothing else left beside it. */
	snprintf(out_path, sizeof(out_path), "%s/mariadb-bin.000001", f->dir);
	assert_true(mariadb_binlog_write(f->repo, SOURCE, f->decoder, file,
									 out_path, &events, &err));
	assert_true(bk_read_file(out_path, 1 << 20, &data, &data_len, &err));
	assert_int_equal(data_len, len1);
	assert_memory_equal(data, first, len1);
	free(data);
	snprintf(tmp_path, sizeof(tmp_path), "%s.bk-tmp.%d", out_path,
			 (int) getpid());
	assert_int_not_equal(access(tmp_path, F_OK), 0);

	/* Again onto a file that exists: refused, the file as it was. */
	keep = fopen(out_path, "w");
	assert_non_null(keep);
	fputs("the DBA's own file\n", keep);
	assert_int_equal(fclose(keep), 0);
	bk_error_clear(&err);
	assert_false(mariadb_binlog_write(f->repo, SOURCE, f->decoder, file,
									  out_path, &events, &err));
	assert_int_equal(err.code, BK_ERR_USAGE);
	assert_error_contains(&err, "exists already");
	assert_non_null(strstr(err.hint, "never replaces a file"));
	assert_true(bk_read_file(out_path, 1 << 20, &data, &data_len, &err));
	assert_int_equal(data_len, strlen("the DBA's own file\n"));
	assert_memory_equal(data, "the DBA's own file\n", data_len);
	free(data);
	assert_int_not_equal(access(tmp_path, F_OK), 0);

	/* A dangling symbolic link is a name taken too: never followed. */
	assert_int_equal(unlink(out_path), 0);
	assert_int_equal(symlink("nowhere", out_path), 0);
	bk_error_clear(&err);
	assert_false(mariadb_binlog_write(f->repo, SOURCE, f->decoder, file,
									  out_path, &events, &err));
	assert_int_equal(err.code, BK_ERR_USAGE);
	snprintf(tmp_path, sizeof(tmp_path), "%s/nowhere", f->dir);
	assert_int_not_equal(access(tmp_path, F_OK), 0);
	binlog_catalog_free(&catalog);
}

/*
 * bk binlog-get exits 1 only for a file that is not in the archive: a
 * script may fetch files until it sees 1.  A range the catalog listed
 * that is gone when it is read (bk expire meanwhile) is missing data
 * (exit 4), and a failure of another kind exits 5, never 1.
 */
static void
test_binlog_get_gone_range_is_not_absent(void **state)
{
	Fixture *f = *state;
	uint8_t first[1024], second[1024];
	size_t len1, len2, cut;
	BinlogCatalog catalog = {0};
	const BinlogFile *file;
	char out_path[600], range_path[1200];
	uint64_t events = 0;
	BkError err;

	build_two_files(first, &len1, &cut, second, &len2);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, cut, T0900 + 60,
						"0-1-2", "");
	archive_binlog_part(f, "mariadb-bin.000001", first, cut, len1, T0900 + 120,
						"0-1-3", "\nclosed=rotate");
	archive_binlog_part(f, "mariadb-bin.000002", second, 0, len2, T0900 + 300,
						"0-1-4", "\ncomplete-until=1795514400000");
	assert_true(binlog_catalog_load(f->repo, SOURCE, &catalog, &err));
	file = binlog_catalog_file(&catalog, "mariadb-bin.000001");
	assert_non_null(file);
	assert_true(file->complete);
	assert_int_equal(file->range_count, 2);

	snprintf(range_path, sizeof(range_path), "%s/%s/binlog/%s", f->location,
			 SOURCE, file->ranges[1].name);
	assert_int_equal(unlink(range_path), 0);
	snprintf(out_path, sizeof(out_path), "%s/mariadb-bin.000001", f->dir);
	bk_error_clear(&err);
	assert_false(mariadb_binlog_write(f->repo, SOURCE, f->decoder, file,
									  out_path, &events, &err));
	assert_int_equal(err.code, BK_ERR_SEQUENCE);
	assert_error_contains(&err, file->ranges[1].name);
	assert_int_equal(bk_cli_exit_code(err.code), BK_EXIT_INTEGRITY);
	assert_int_not_equal(access(out_path, F_OK), 0);
	binlog_catalog_free(&catalog);

	/* The exit statuses of the failures bk_cli_exit_code calls 1. */
	bk_error_set(&err, BK_ERR_NOT_FOUND, "binlog \"x\" is not in the archive");
	assert_int_equal(bk_cli_report_absent_error("bk binlog-get", &err),
					 BK_EXIT_FAILURE);
	bk_error_set(&err, BK_ERR_NOMEM, "out of memory");
	assert_int_equal(bk_cli_report_absent_error("bk binlog-get", &err),
					 BK_EXIT_UNAVAILABLE);
	bk_error_set(&err, BK_ERR_INTERNAL, "an OpenSSL call failed");
	assert_int_equal(bk_cli_report_absent_error("bk binlog-get", &err),
					 BK_EXIT_UNAVAILABLE);
	bk_error_set(&err, BK_ERR_FORMAT, "a frame is damaged");
	assert_int_equal(bk_cli_report_absent_error("bk binlog-get", &err),
					 BK_EXIT_INTEGRITY);
}

/*
 * bk restore tells the repository's failure (exit 5: a script retries)
 * from its own host's (exit 1: the target or a work directory, which a
 * retry cannot fix), by the error's class alone.  A range the repository's
 * disk cannot read (ELOOP, as root, where chmod 000 would not stop reads)
 * is the repository's, named; a file the restore cannot create is local.
 */
static void
test_restore_store_failure_not_local(void **state)
{
	Fixture *f = *state;
	uint8_t first[1024], second[1024];
	size_t len1, len2, cut;
	BinlogCatalog catalog = {0};
	const BinlogFile *file;
	char out_path[600], range_path[1200];
	uint64_t events = 0;
	BkError err;

	build_two_files(first, &len1, &cut, second, &len2);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, cut, T0900 + 60,
						"0-1-2", "");
	archive_binlog_part(f, "mariadb-bin.000001", first, cut, len1, T0900 + 120,
						"0-1-3", "\nclosed=rotate");
	assert_true(binlog_catalog_load(f->repo, SOURCE, &catalog, &err));
	file = binlog_catalog_file(&catalog, "mariadb-bin.000001");
	assert_non_null(file);
	assert_int_equal(file->range_count, 2);

	snprintf(range_path, sizeof(range_path), "%s/%s/binlog/%s", f->location,
			 SOURCE, file->ranges[1].name);
	assert_int_equal(unlink(range_path), 0);
	assert_int_equal(symlink(range_path, range_path), 0);
	snprintf(out_path, sizeof(out_path), "%s/mariadb-bin.000001", f->dir);
	bk_error_clear(&err);
	assert_false(mariadb_binlog_write(f->repo, SOURCE, f->decoder, file,
									  out_path, &events, &err));
	assert_int_equal(err.code, BK_ERR_STORE);
	assert_error_contains(&err, file->ranges[1].name);
	assert_int_equal(bk_cli_report_restore_error("bk restore", &err, true),
					 BK_EXIT_UNAVAILABLE);

	/* This host's file: exit 1, once the repository was open. */
	assert_int_equal(unlink(range_path), 0);
	snprintf(out_path, sizeof(out_path), "%s/no-such-dir/mariadb-bin.000001",
			 f->dir);
	bk_error_clear(&err);
	assert_false(mariadb_binlog_write(f->repo, SOURCE, f->decoder, file,
									  out_path, &events, &err));
	assert_int_equal(err.code, BK_ERR_IO);
	assert_error_contains(&err, "no-such-dir");
	assert_int_equal(bk_cli_report_restore_error("bk restore", &err, true),
					 BK_EXIT_FAILURE);
	/* Unless the repository itself could not be opened. */
	assert_int_equal(bk_cli_report_restore_error("bk restore", &err, false),
					 BK_EXIT_UNAVAILABLE);
	binlog_catalog_free(&catalog);
}

/* The fixture's configuration and key files for bk's commands, made once. */
static void
command_files(Fixture *f, char *config, char *key, size_t size)
{
	BkError err;

	snprintf(config, size, "%s/bk.conf", f->dir);
	snprintf(key, size, "%s/key", f->dir);
	if (access(config, F_OK) != 0)
	{
		assert_true(bk_write_file_durable(config, "", 0, 0600, &err));
		assert_true(bk_key_write_files(&f->key, key, &err));
	}
}

/* command(argc, argv) with its stderr in the file path; its exit status. */
static int
run_command(int (*command)(int, char **), int argc, char **argv,
			const char *path)
{
	int saved = test_stderr_to(path);
	int status = command(argc, argv);

	test_stderr_restore(saved);
	return status;
}

/*
 * bk binlog-get FILE OUT on the fixture's repository, its messages in
 * f->dir/binlog-get.err; the exit status.
 */
static int
binlog_get_to(Fixture *f, const char *file, const char *out)
{
	char config[600];
	char key[600];
	char messages[700];
	char *argv[] = {"bk binlog-get", "--config",   config,
					"--repo",        f->location,  "--source",
					SOURCE,          "--key-file", key,
					(char *) file,   (char *) out, NULL};

	command_files(f, config, key, sizeof(config));
	snprintf(messages, sizeof(messages), "%s/binlog-get.err", f->dir);
	return run_command(bk_cmd_binlog_get,
					   (int) (sizeof(argv) / sizeof(argv[0])) - 1, argv,
					   messages);
}

/*
 * bk snapshot-get [--snapshot ID] DIR on the fixture's repository, its
 * messages in *messages (to free); the exit status.
 */
static int
snapshot_get_to(Fixture *f, const char *id, const char *out, char **messages)
{
	char config[600];
	char key[600];
	char errors[700];
	char *argv[13] = {
		"bk snapshot-get", "--config", config,       "--repo", f->location,
		"--source",        SOURCE,     "--key-file", key};
	int argc = 9;
	size_t len;
	int status;
	BkError err;

	command_files(f, config, key, sizeof(config));
	snprintf(errors, sizeof(errors), "%s/snapshot-get.err", f->dir);
	if (id != NULL)
	{
		argv[argc++] = "--snapshot";
		argv[argc++] = (char *) id;
	}
	argv[argc++] = (char *) out;
	argv[argc] = NULL;
	status = run_command(bk_cmd_snapshot_get, argc, argv, errors);
	assert_true(bk_read_file(errors, 65536, messages, &len, &err));
	return status;
}

static void archive_snapshot_object(Fixture *f, const char *id,
									const char *part, const char *record_meta);

/* A snapshot bk snapshot-get writes: one table of one part. */
static void
archive_whole_snapshot(Fixture *f, const char *id)
{
	const char *rows = "1\talpha\n";
	uint8_t digest[BK_SHA256_LEN];
	char hex[2 * BK_SHA256_LEN + 1];
	char record[1024];
	char meta[256];
	BkError err;

	assert_true(bk_sha256(rows, strlen(rows), digest, &err));
	bk_hex_encode(digest, BK_SHA256_LEN, hex);
	snprintf(record, sizeof(record),
			 "{\"format\": 1, \"engine\": \"mariadb\", \"snapshot_id\":"
			 " \"%s\", \"tables\": [{\"index\": 1, \"database\": \"d\","
			 " \"name\": \"t\", \"rows\": 1, \"bytes\": %zu,"
			 " \"parts\": 1, \"sha256\": \"%s\"}]}",
			 id, strlen(rows), hex);
	archive_snapshot_object(f, id, "schema.json", NULL);
	snprintf(meta, sizeof(meta), "%s/data/000001.000001", id);
	archive(f, BK_KIND_SNAPSHOT, meta, "engine=mariadb", (const uint8_t *) rows,
			strlen(rows));
	snprintf(meta, sizeof(meta),
			 "snapshot=%s\nengine=mariadb\ntype=record\nobjects=1\n"
			 "binlog-file=mariadb-bin.000001\nbinlog-pos=4\ntables=1\nrows=1",
			 id);
	snprintf(hex, sizeof(hex), "%s/" BK_SNAPSHOT_RECORD, id);
	archive(f, BK_KIND_SNAPSHOT, hex, meta, (const uint8_t *) record,
			strlen(record));
}

/*
 * The newest snapshot is damaged: bk snapshot-get without --snapshot may
 * write an older one, but says which newer one it stepped over and why.
 * With no complete snapshot left it exits 4 naming the damaged one, never
 * 1, which a script reads as "nothing archived"; with none there at all,
 * 1.
 */
static void
test_snapshot_get_damaged_newest(void **state)
{
	Fixture *f = *state;
	char out[600], path[700];
	char *messages;

	archive_whole_snapshot(f, SNAP_OLD);
	archive_whole_snapshot(f, SNAP_NEW);
	snprintf(out, sizeof(out), "%s/out1", f->dir);
	assert_int_equal(snapshot_get_to(f, NULL, out, &messages), BK_EXIT_OK);
	assert_non_null(strstr(messages, "wrote snapshot " SNAP_NEW));
	assert_null(strstr(messages, "warning"));
	free(messages);

	snprintf(path, sizeof(path), "%s/%s/snapshot/%s/%s", f->location, SOURCE,
			 SNAP_NEW, BK_SNAPSHOT_RECORD);
	/* The newest's record cut short: the older one, with a warning. */
	assert_int_equal(truncate(path, 20), 0);
	snprintf(out, sizeof(out), "%s/out2", f->dir);
	assert_int_equal(snapshot_get_to(f, NULL, out, &messages), BK_EXIT_OK);
	assert_non_null(strstr(messages, "wrote snapshot " SNAP_OLD));
	assert_non_null(strstr(messages, "warning: snapshot " SNAP_NEW));
	assert_non_null(strstr(messages, "its record cannot be read"));
	free(messages);

	/* The older one's data object removed too: nothing complete is left,
	 * and that is damage (4), naming the newest damaged snapshot. */
	snprintf(path, sizeof(path), "%s/%s/snapshot/%s/data/000001.000001",
			 f->location, SOURCE, SNAP_OLD);
	assert_int_equal(unlink(path), 0);
	snprintf(out, sizeof(out), "%s/out3", f->dir);
	assert_int_equal(snapshot_get_to(f, NULL, out, &messages),
					 BK_EXIT_INTEGRITY);
	assert_non_null(strstr(messages, "snapshot " SNAP_NEW));
	assert_non_null(strstr(messages, "is damaged"));
	assert_int_not_equal(access(out, F_OK), 0);
	free(messages);
	/* Named, each is refused as not complete (4). */
	assert_int_equal(snapshot_get_to(f, SNAP_OLD, out, &messages),
					 BK_EXIT_INTEGRITY);
	assert_non_null(strstr(messages, "0 of its 1 data objects"));
	free(messages);

	/* The newest's record empty, the older's removed: still damage. */
	snprintf(path, sizeof(path), "%s/%s/snapshot/%s/%s", f->location, SOURCE,
			 SNAP_NEW, BK_SNAPSHOT_RECORD);
	assert_int_equal(truncate(path, 0), 0);
	snprintf(path, sizeof(path), "%s/%s/snapshot/%s/%s", f->location, SOURCE,
			 SNAP_OLD, BK_SNAPSHOT_RECORD);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(snapshot_get_to(f, NULL, out, &messages),
					 BK_EXIT_INTEGRITY);
	assert_non_null(strstr(messages, "snapshot " SNAP_NEW));
	free(messages);

	/* No record at all (failed, or arriving): not in the archive, 1. */
	snprintf(path, sizeof(path), "%s/%s/snapshot/%s/%s", f->location, SOURCE,
			 SNAP_NEW, BK_SNAPSHOT_RECORD);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(snapshot_get_to(f, NULL, out, &messages), BK_EXIT_FAILURE);
	assert_non_null(strstr(messages, "has no complete snapshot"));
	free(messages);
}

/*
 * mariadb-bin.000001 has no ROTATE (the server crashed), and the agent
 * marked mariadb-bin.000002's first range gap-before= (the server purged
 * the rest of 000001 before it was read): 000001 is cut, and bk
 * binlog-get refuses it.  Someone renames that key in the range's
 * metadata (the CRC recomputed): without it, 000002 follows 000001
 * directly, 000001 looks complete, and the truncated file would be served
 * as whole, though binlog-get never decrypts 000002.  It authenticates
 * what the completeness rests on: refused, and OUT never written.
 */
static void
test_binlog_get_altered_successor(void **state)
{
	Fixture *f = *state;
	uint8_t first[1024], second[1024];
	size_t len1, len2, cut;
	char out_path[600];
	char name[128];
	char gap[128];
	char *messages;
	size_t messages_len;
	BkError err;

	build_two_files(first, &len1, &cut, second, &len2);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, cut, T0900 + 60,
						"0-1-2", "");
	snprintf(gap, sizeof(gap), "\ngap-before=mariadb-bin.000001:%zu", cut);
	archive_binlog_part(f, "mariadb-bin.000002", second, 0, len2, T0900 + 300,
						"0-1-4", gap);
	snprintf(out_path, sizeof(out_path), "%s/mariadb-bin.000001", f->dir);
	assert_int_equal(binlog_get_to(f, "mariadb-bin.000001", out_path),
					 BK_EXIT_INTEGRITY);
	assert_int_not_equal(access(out_path, F_OK), 0);

	snprintf(name, sizeof(name), "mariadb-bin.000002/%010d-%010zu", 0, len2);
	test_alter_stored(f->location, SOURCE, "binlog", name,
					  "\ngap-before=", "\ngap-befora=", true);
	assert_int_equal(binlog_get_to(f, "mariadb-bin.000001", out_path),
					 BK_EXIT_INTEGRITY);
	assert_int_not_equal(access(out_path, F_OK), 0);
	snprintf(out_path, sizeof(out_path), "%s/binlog-get.err", f->dir);
	assert_true(bk_read_file(out_path, 65536, &messages, &messages_len, &err));
	assert_non_null(strstr(messages, name));
	assert_non_null(strstr(messages, "failed authentication"));
	free(messages);
}

/*
 * mariadb-bin.000001 has no ROTATE event archived and no closed= (the
 * server crashed): it is complete because mariadb-bin.000002 follows it
 * directly, which bk binlog-get authenticates by reading 000002's first
 * range.  That range listed by the catalog, then gone when read (bk expire
 * meanwhile, a store whose reads lag its listings), says nothing of
 * whether 000001 is in the archive: missing data (exit 4), never "not in
 * the archive" (exit 1, where a script fetching until 1 would stop).
 */
static void
test_binlog_get_gone_successor_is_not_absent(void **state)
{
	Fixture *f = *state;
	uint8_t first[1024], second[1024];
	size_t len1, len2, cut;
	BinlogCatalog catalog = {0};
	const BinlogFile *file;
	char range_path[1200];
	BkError err;

	build_two_files(first, &len1, &cut, second, &len2);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, len1, T0900 + 120,
						"0-1-3", "");
	archive_binlog_part(f, "mariadb-bin.000002", second, 0, len2, T0900 + 300,
						"0-1-4", "\ncomplete-until=1795514400000");
	assert_true(binlog_catalog_load(f->repo, SOURCE, &catalog, &err));
	file =
		mariadb_binlog_get_file(&catalog, SOURCE, "mariadb-bin.000001", &err);
	assert_non_null(file);
	assert_false(file->closed);
	assert_true(binlog_catalog_check_successor(f->repo, SOURCE, f->decoder,
											   &catalog, file, &err));

	snprintf(range_path, sizeof(range_path), "%s/%s/binlog/%s", f->location,
			 SOURCE, file[1].ranges[0].name);
	assert_int_equal(unlink(range_path), 0);
	bk_error_clear(&err);
	assert_false(binlog_catalog_check_successor(f->repo, SOURCE, f->decoder,
												&catalog, file, &err));
	assert_int_equal(err.code, BK_ERR_SEQUENCE);
	assert_error_contains(&err, file[1].ranges[0].name);
	assert_int_equal(bk_cli_report_absent_error("bk binlog-get", &err),
					 BK_EXIT_INTEGRITY);
	binlog_catalog_free(&catalog);
}

/*
 * What decides whether a file is complete and where it ends (closed=,
 * complete-until=...) is read from its ranges' metadata without keys.
 * Rebuilding a file decrypts its ranges: one whose authenticated
 * metadata is not what the catalog read (another attempt at the range
 * put in its place meanwhile) is refused, naming it.
 */
static void
test_binlog_rebuild_swapped_range(void **state)
{
	Fixture *f = *state;
	uint8_t first[1024], second[1024];
	size_t len1, len2, cut;
	BinlogCatalog catalog = {0};
	const BinlogFile *file;
	char out_path[600];
	char name[128];
	char path[1200];
	uint64_t events = 0;
	BkError err;

	build_two_files(first, &len1, &cut, second, &len2);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, len1, T0900 + 120,
						"0-1-3", "");
	archive_binlog_part(f, "mariadb-bin.000002", second, 0, len2, T0900 + 300,
						"0-1-4", "\ncomplete-until=1795514400000");
	/* Another attempt at 000001's range, which says it was closed. */
	snprintf(name, sizeof(name), "mariadb-bin.000001/%010d-%010zu", 0, len1);
	snprintf(path, sizeof(path), "%s/%s/binlog/%s", f->location, SOURCE, name);
	assert_int_equal(unlink(path), 0);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, len1, T0900 + 120,
						"0-1-3", "\nclosed=rotate");
	assert_true(binlog_catalog_load(f->repo, SOURCE, &catalog, &err));
	file = binlog_catalog_file(&catalog, "mariadb-bin.000001");
	assert_non_null(file);
	assert_true(file->closed);

	/* The first attempt back in its place before it is read. */
	assert_int_equal(unlink(path), 0);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, len1, T0900 + 120,
						"0-1-3", "");
	snprintf(out_path, sizeof(out_path), "%s/mariadb-bin.000001", f->dir);
	bk_error_clear(&err);
	assert_false(mariadb_binlog_write(f->repo, SOURCE, f->decoder, file,
									  out_path, &events, &err));
	assert_int_equal(err.code, BK_ERR_AUTH);
	assert_error_contains(&err, name);
	assert_error_contains(&err, "altered or damaged");
	assert_int_not_equal(access(out_path, F_OK), 0);
	binlog_catalog_free(&catalog);
}

/*
 * Only a file after the newest archived one is "not in the archive" (exit
 * 1, where a script fetching file after file stops).  A file bk expire
 * removed while a script replays forward, one missing between archived
 * files, or a source without binlog (a mistyped --source) is missing data
 * (exit 4): taken for the end, it would cut the replay short.
 */
static void
test_binlog_get_end_only_after_newest(void **state)
{
	Fixture *f = *state;
	uint8_t first[1024], second[1024];
	size_t len1, len2, cut;
	BinlogCatalog catalog = {0};
	char path[1200];
	BkError err;

	assert_true(binlog_catalog_load(f->repo, SOURCE, &catalog, &err));
	bk_error_clear(&err);
	assert_null(
		mariadb_binlog_get_file(&catalog, SOURCE, "mariadb-bin.000001", &err));
	assert_int_equal(bk_cli_exit_code(err.code), BK_EXIT_INTEGRITY);
	assert_error_contains(&err, "has no binlog archived");
	binlog_catalog_free(&catalog);

	build_two_files(first, &len1, &cut, second, &len2);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, len1, T0900 + 120,
						"0-1-3", "\nclosed=rotate");
	archive_binlog_part(f, "mariadb-bin.000002", second, 0, len2, T0900 + 300,
						"0-1-4", "\nclosed=rotate");
	archive_binlog_part(f, "mariadb-bin.000004", second, 0, len2, T0900 + 400,
						"0-1-5", "\ncomplete-until=1795514400000");
	assert_true(binlog_catalog_load(f->repo, SOURCE, &catalog, &err));
	assert_non_null(
		mariadb_binlog_get_file(&catalog, SOURCE, "mariadb-bin.000002", &err));
	bk_error_clear(&err);
	assert_null(
		mariadb_binlog_get_file(&catalog, SOURCE, "mariadb-bin.000005", &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_int_equal(bk_cli_report_absent_error("bk binlog-get", &err),
					 BK_EXIT_FAILURE);
	bk_error_clear(&err);
	assert_null(
		mariadb_binlog_get_file(&catalog, SOURCE, "mariadb-bin.000003", &err));
	assert_int_equal(bk_cli_report_absent_error("bk binlog-get", &err),
					 BK_EXIT_INTEGRITY);
	assert_error_contains(&err, "holds files on both sides of it");
	binlog_catalog_free(&catalog);

	/* bk expire removes the oldest file while a script replays forward. */
	snprintf(path, sizeof(path), "%s/%s/binlog/mariadb-bin.000001", f->location,
			 SOURCE);
	assert_true(bk_remove_tree(path, &err));
	assert_true(binlog_catalog_load(f->repo, SOURCE, &catalog, &err));
	bk_error_clear(&err);
	assert_null(
		mariadb_binlog_get_file(&catalog, SOURCE, "mariadb-bin.000001", &err));
	assert_int_equal(bk_cli_report_absent_error("bk binlog-get", &err),
					 BK_EXIT_INTEGRITY);
	assert_error_contains(&err, "comes before the first archived file");
	binlog_catalog_free(&catalog);

	/*
	 * A binlog history bk expire removed whole (another basename, where no
	 * snapshot stays): removed data, exit 4, not a file after the newest.
	 */
	assert_true(binlog_expired_record(f->repo, SOURCE, "db2-bin.000003", &err));
	assert_true(binlog_catalog_load(f->repo, SOURCE, &catalog, &err));
	bk_error_clear(&err);
	assert_null(
		mariadb_binlog_get_file(&catalog, SOURCE, "db2-bin.000002", &err));
	assert_int_equal(bk_cli_report_absent_error("bk binlog-get", &err),
					 BK_EXIT_INTEGRITY);
	assert_error_contains(&err, "bk expire removed that basename's files up"
								" to db2-bin.000003");
	assert_non_null(strstr(err.hint, "history whole"));
	bk_error_clear(&err);
	assert_null(
		mariadb_binlog_get_file(&catalog, SOURCE, "db2-bin.000004", &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	binlog_catalog_free(&catalog);
}

/* A snapshot object; the record's metadata as the agent writes it. */
static void
archive_snapshot_object(Fixture *f, const char *id, const char *part,
						const char *record_meta)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	char meta[512];

	snprintf(name, sizeof(name), "%s/%s", id, part);
	snprintf(meta, sizeof(meta), "snapshot=%s\nengine=mariadb%s%s", id,
			 record_meta ? "\n" : "", record_meta ? record_meta : "");
	archive(f, BK_KIND_SNAPSHOT, name, meta, (const uint8_t *) "{}", 2);
}

static const MariadbSnapshot *
load_snapshot(Fixture *f, MariadbSnapshotCatalog *catalog, const char *id)
{
	BkError err;

	assert_true(mariadb_snapshot_catalog_load(f->repo, SOURCE, catalog, &err));
	for (int idx = 0; idx < catalog->count; idx++)
		if (strcmp(catalog->snapshots[idx].id, id) == 0)
			return &catalog->snapshots[idx];
	fail_msg("snapshot %s is not in the catalog", id);
	return NULL;
}

/*
 * The record is sent last, but its data objects travel on other
 * partitions: archived after it, or never (a rejected message).  Until
 * every one the record counts is there, the snapshot is not complete, so
 * neither bk restore nor bk expire counts on it.
 */
static void
test_snapshot_complete(void **state)
{
	Fixture *f = *state;
	const char *record = "type=record\nobjects=2\nbinlog-file="
						 "mariadb-bin.000001\nbinlog-pos=4\ntables=1\nrows=9";
	MariadbSnapshotCatalog catalog;
	const MariadbSnapshot *snap;

	archive_snapshot_object(f, SNAP_NEW, "schema.json", NULL);
	archive_snapshot_object(f, SNAP_NEW, "data/000001.000001", NULL);
	archive_snapshot_object(f, SNAP_NEW, BK_SNAPSHOT_RECORD, record);
	snap = load_snapshot(f, &catalog, SNAP_NEW);
	assert_false(snap->complete);
	assert_string_equal(snap->reason,
						"1 of its 2 data objects are in the repository");
	mariadb_snapshot_catalog_free(&catalog);

	archive_snapshot_object(f, SNAP_NEW, "data/000001.000002", NULL);
	snap = load_snapshot(f, &catalog, SNAP_NEW);
	assert_true(snap->complete);
	assert_int_equal(snap->data_objects, 2);
	assert_string_equal(snap->binlog_file, "mariadb-bin.000001");
	mariadb_snapshot_catalog_free(&catalog);

	/* schema.json is an object of its own too. */
	archive_snapshot_object(f, SNAP_OLD, BK_SNAPSHOT_RECORD,
							"type=record\nbinlog-file=mariadb-bin.000001\n"
							"binlog-pos=4\ntables=1\nrows=9");
	snap = load_snapshot(f, &catalog, SNAP_OLD);
	assert_false(snap->complete);
	assert_string_equal(snap->reason, "its schema.json is missing");
	mariadb_snapshot_catalog_free(&catalog);

	/* A record without the count (written before it): judged as before. */
	archive_snapshot_object(f, SNAP_OLD, "schema.json", NULL);
	snap = load_snapshot(f, &catalog, SNAP_OLD);
	assert_true(snap->complete);
	assert_true(snap->data_expected == -1);
	mariadb_snapshot_catalog_free(&catalog);
}

/*
 * A time target is served by a snapshot only if every transaction it holds
 * committed at or before the target: its consistent point must be, not its
 * start (the definitions are read and BLOCK_DDL waits before it).  A
 * record without the consistent point (an older agent) is judged by when
 * the snapshot finished.
 */
static void
test_snapshot_before_time(void **state)
{
	Fixture *f = *state;
	MariadbSnapshotCatalog catalog;
	const MariadbSnapshot *snap;
	int64_t target;

	archive_snapshot_object(f, SNAP_NEW, "schema.json", NULL);
	archive_snapshot_object(
		f, SNAP_NEW, BK_SNAPSHOT_RECORD,
		"type=record\nobjects=0\nbinlog-file=mariadb-bin.000001\n"
		"binlog-pos=4\nstarted=2026-11-24T09:00:00.000Z\n"
		"consistent-at=2026-11-24T09:10:00.000Z\n"
		"finished=2026-11-24T09:20:00.000Z\ntables=0\nrows=0");
	archive_snapshot_object(f, SNAP_OLD, "schema.json", NULL);
	archive_snapshot_object(
		f, SNAP_OLD, BK_SNAPSHOT_RECORD,
		"type=record\nbinlog-file=mariadb-bin.000001\nbinlog-pos=4\n"
		"started=2026-11-23T09:00:00.000Z\n"
		"finished=2026-11-23T09:20:00.000Z\ntables=0\nrows=0");

	snap = load_snapshot(f, &catalog, SNAP_NEW);
	assert_string_equal(snap->consistent_at, "2026-11-24T09:10:00.000Z");
	assert_true(bk_parse_timestamp_zone("2026-11-24 09:05:00", true, &target));
	assert_false(mariadb_snapshot_before_time(snap, target));
	assert_true(bk_parse_timestamp_zone("2026-11-24 09:10:00", true, &target));
	assert_true(mariadb_snapshot_before_time(snap, target));
	mariadb_snapshot_catalog_free(&catalog);

	snap = load_snapshot(f, &catalog, SNAP_OLD);
	assert_string_equal(snap->consistent_at, "");
	assert_true(bk_parse_timestamp_zone("2026-11-23 09:10:00", true, &target));
	assert_false(mariadb_snapshot_before_time(snap, target));
	assert_true(bk_parse_timestamp_zone("2026-11-23 09:20:00", true, &target));
	assert_true(mariadb_snapshot_before_time(snap, target));
	mariadb_snapshot_catalog_free(&catalog);
}

/*
 * ...so bk restore checks every part the record lists before it touches
 * the server: a missing one would fail the load half way, after --force
 * dropped the databases.
 */
static void
test_restore_check_parts(void **state)
{
	Fixture *f = *state;
	MariadbRestore *r = calloc(1, sizeof(*r));
	MariadbSnapshot snap = {0};
	BkError err;

	bk_strlcpy(snap.id, SNAP_OLD, sizeof(snap.id));
	r->source = SOURCE;
	r->ctx.repo = f->repo;
	r->snapshot = &snap;
	r->record = json_pack("{s:[{s:i, s:i}, {s:i, s:i}, {s:i, s:i}]}", "tables",
						  "index", 1, "parts", 2, "index", 2, "parts", 0,
						  "index", 3, "parts", 1);
	archive_snapshot_object(f, SNAP_OLD, "data/000001.000001", NULL);
	archive_snapshot_object(f, SNAP_OLD, "data/000003.000001", NULL);
	assert_false(restore_check_parts(r, &err));
	assert_int_equal(err.code, BK_ERR_SEQUENCE);
	assert_error_contains(&err, "1 of the 3 data objects its record lists are"
								" not in the repository (the first: " SNAP_OLD
								"/data/000001.000002)");
	archive_snapshot_object(f, SNAP_OLD, "data/000001.000002", NULL);
	assert_true(restore_check_parts(r, &err));
	json_decref(r->record);
	free(r);
}

/* ------------------------------------------------------------ expire */

/* bk expire --retain-full N on the fixture's repository, its report out of
 * the TAP. */
static int
expire(Fixture *f, int64_t retain_full)
{
	BkRetention policy = {.retain_full = retain_full};
	int saved = test_stdout_quiet();
	int status;
	BkError err;

	status = bk_mariadb_expire("bk expire", f->repo, SOURCE, &policy, &err);
	test_stdout_restore(saved);
	return status;
}

/* bk expire --json [--dry-run]: its report, parsed. */
static json_t *
expire_json(Fixture *f, int64_t retain_full, bool dry_run)
{
	BkRetention policy = {
		.retain_full = retain_full, .json = true, .dry_run = dry_run};
	FILE *out = tmpfile();
	int saved;
	json_t *report;
	json_error_t error;
	BkError err;

	assert_non_null(out);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	assert_true(dup2(fileno(out), STDOUT_FILENO) >= 0);
	assert_int_equal(
		bk_mariadb_expire("bk expire", f->repo, SOURCE, &policy, &err), 0);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	rewind(out);
	report = json_loadf(out, 0, &error);
	fclose(out);
	if (report == NULL)
		fail_msg("bk expire --json: %s", error.text);
	return report;
}

/* bk expire --json with a decoder on ring: its report, parsed. */
static json_t *
expire_keyed_json(Fixture *f, BkKeyring *ring, int64_t retain_full)
{
	BkRetention policy = {.retain_full = retain_full, .json = true};
	FILE *out = tmpfile();
	int saved;
	json_t *report;
	json_error_t error;
	BkError err;

	assert_non_null(out);
	policy.decoder = bk_decoder_new(ring, &err);
	assert_non_null(policy.decoder);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	assert_true(dup2(fileno(out), STDOUT_FILENO) >= 0);
	assert_int_equal(
		bk_mariadb_expire("bk expire", f->repo, SOURCE, &policy, &err), 0);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	bk_decoder_free(policy.decoder);
	rewind(out);
	report = json_loadf(out, 0, &error);
	fclose(out);
	if (report == NULL)
		fail_msg("bk expire --json: %s", error.text);
	return report;
}

static bool
exists(Fixture *f, int kind, const char *name)
{
	BkRepoStat stat;
	BkError err;

	assert_true(bk_repo_stat(f->repo, BK_REPO_ARCHIVE, SOURCE, kind, name,
							 &stat, &err));
	return stat.exists;
}

/* Is binlog file's first range (archive_binlog_start) archived? */
static bool
binlog_exists(Fixture *f, const char *file)
{
	char name[BK_OBJECT_NAME_MAX + 1];

	snprintf(name, sizeof(name), "%s/0000000000-0000000004", file);
	return exists(f, BK_KIND_BINLOG, name);
}

/* Binlog files 1..count, each closed by a ROTATE but the last. */
static void
archive_binlog_files(Fixture *f, int count)
{
	char file[32];

	for (int fileNo = 1; fileNo <= count; fileNo++)
	{
		snprintf(file, sizeof(file), "mariadb-bin.%06d", fileNo);
		archive_binlog_start(f, file, fileNo < count);
	}
}

/*
 * The listing of the binlog, with the first range of file 000001 removed
 * (as bk expire does) after it was listed and before its header is read,
 * in the first listing only.
 */
static const BkRepoBackend *real_backend;
static int binlog_listings;
static char vanishing_path[1200];

typedef struct VanishingList
{
	BkRepoListFn fn;
	void *arg;
} VanishingList;

static bool
remove_then_take(void *arg, const BkRepoEntry *entry, BkError *err)
{
	VanishingList *list = arg;

	if (binlog_listings == 1 &&
		strncmp(entry->name, "mariadb-bin.000001/", 19) == 0)
		unlink(vanishing_path);
	return list->fn(list->arg, entry, err);
}

static bool
list_removing(const BkRepo *repo, const char *prefix, bool recursive,
			  BkRepoListFn fn, void *arg, BkError *err)
{
	VanishingList list = {fn, arg};

	/* The catalog's listings; not a look at one file's (a read's check). */
	if (strstr(prefix, "/binlog/") == NULL || !recursive)
		return real_backend->list(repo, prefix, recursive, fn, arg, err);
	binlog_listings++;
	return real_backend->list(repo, prefix, recursive, remove_then_take, &list,
							  err);
}

/*
 * bk expire removes the oldest binlog file while a restore or binlog-get
 * of a kept one loads the catalog: the catalog lists once more instead of
 * failing (exit 4) over a file nobody asked for.
 */
static void
test_binlog_catalog_lists_again(void **state)
{
	Fixture *f = *state;
	BkRepoBackend removing;
	BinlogCatalog catalog = {0};
	BkError err;

	archive_binlog_files(f, 3);
	snprintf(vanishing_path, sizeof(vanishing_path),
			 "%s/%s/binlog/mariadb-bin.000001/0000000000-0000000004",
			 f->location, SOURCE);
	assert_int_equal(access(vanishing_path, F_OK), 0);
	real_backend = f->repo->backend;
	removing = *real_backend;
	removing.list = list_removing;
	f->repo->backend = &removing;
	binlog_listings = 0;
	bk_error_clear(&err);
	if (!binlog_catalog_load(f->repo, SOURCE, &catalog, &err))
		fail_msg("%s", err.message);
	f->repo->backend = real_backend;
	assert_int_equal(binlog_listings, 2);
	assert_null(binlog_catalog_file(&catalog, "mariadb-bin.000001"));
	assert_non_null(binlog_catalog_file(&catalog, "mariadb-bin.000002"));
	binlog_catalog_free(&catalog);
}

/* A complete snapshot at the start of binlog file number file_no. */
static void
archive_complete_snapshot(Fixture *f, const char *id, int file_no)
{
	char record[256];

	snprintf(record, sizeof(record),
			 "type=record\nobjects=0\nbinlog-file=mariadb-bin.%06d\n"
			 "binlog-pos=4\ntables=0\nrows=0",
			 file_no);
	archive_snapshot_object(f, id, "schema.json", NULL);
	archive_snapshot_object(f, id, BK_SNAPSHOT_RECORD, record);
}

/* Differing copies of binlog file's ranges in the conflicts area. */
static int
conflict_copies(Fixture *f, const char *file)
{
	char path[1024];
	DIR *dir;
	struct dirent *entry;
	int count = 0;

	snprintf(path, sizeof(path), "%s/%s/conflicts/binlog/%s", f->location,
			 SOURCE, file);
	dir = opendir(path);
	if (dir == NULL)
		return 0;
	while ((entry = readdir(dir)) != NULL)
		count += entry->d_name[0] != '.';
	closedir(dir);
	return count;
}

/* A differing copy of binlog file's first range (archive_binlog_start). */
static void
archive_conflict_start(Fixture *f, const char *file)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	char meta[256];

	snprintf(name, sizeof(name), "%s/0000000000-0000000004", file);
	snprintf(meta, sizeof(meta),
			 "type=binlog-range\nbinlog-file=%s\nstart=0\nend=4\nevents=0\n"
			 "gtid=\ncreated=2026-11-24T05:12:00.000Z\nclosed=rotate",
			 file);
	test_archive_conflict(f->repo, &f->key, &f->uploads, BK_KIND_BINLOG, SOURCE,
						  name, meta,
						  (const uint8_t *) "\xfe"
											"BIN",
						  4);
}

/*
 * A binlog file expired takes the differing copies of its ranges with it
 * (kept in conflicts/ by the shipper): they were kept for good before.
 * So do the copies left of a file expired before (no longer in the
 * archive).
 */
static void
test_expire_removes_binlog_conflicts(void **state)
{
	Fixture *f = *state;

	BkError err;

	archive_binlog_files(f, 4);
	archive_conflict_start(f, "mariadb-bin.000001");
	archive_conflict_start(f, "mariadb-bin.000002");
	archive_conflict_start(f, "mariadb-bin.000003");
	/* File 1 went before, its copy left behind (as before this fix). */
	assert_true(bk_repo_delete(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_BINLOG,
							   "mariadb-bin.000001/0000000000-0000000004",
							   &err));
	archive_complete_snapshot(f, "20261110T000000Z-0000abcd", 3);
	assert_int_equal(conflict_copies(f, "mariadb-bin.000001"), 1);
	assert_int_equal(conflict_copies(f, "mariadb-bin.000002"), 1);

	/* Said, in a dry run too (which removes nothing), and then done. */
	for (int run = 0; run < 2; run++)
	{
		json_t *report = expire_json(f, 1, run == 0);
		json_t *copies =
			json_object_get(report, "binlog_conflict_copies_removed");

		assert_int_equal(json_array_size(copies), 2);
		assert_string_equal(json_string_value(json_array_get(copies, 0)),
							"mariadb-bin.000001");
		assert_string_equal(json_string_value(json_array_get(copies, 1)),
							"mariadb-bin.000002");
		json_decref(report);
		assert_int_equal(conflict_copies(f, "mariadb-bin.000002"),
						 run == 0 ? 1 : 0);
	}
	assert_false(binlog_exists(f, "mariadb-bin.000002"));
	assert_int_equal(conflict_copies(f, "mariadb-bin.000002"), 0);
	assert_int_equal(conflict_copies(f, "mariadb-bin.000001"), 0);
	assert_true(binlog_exists(f, "mariadb-bin.000003"));
	assert_int_equal(conflict_copies(f, "mariadb-bin.000003"), 1);
}

/*
 * A snapshot whose record the keyring cannot decrypt: forged by a client
 * that can write to bk's topics but holds no restore key (sealed to a key
 * of its own), or sealed by the agent to a new key never added to the
 * keyring.  Its keyless metadata says it is complete, at binlog file 3.
 * With the keyring, bk expire --retain-full 1 does not count it: the
 * snapshot that restores, and the binlog from its file, stay, and the
 * report says why.  With the key added, the newer one counts.
 */
static void
test_expire_record_not_in_keyring(void **state)
{
	Fixture *f = *state;
	const char *genuine = "20261110T000000Z-0000abcd";
	const char *sealed_away = "20261111T000000Z-0000beef";
	char record[BK_OBJECT_NAME_MAX + 1];
	BkKey own_key = f->key;
	BkKey other_key;
	BkKeyring both;
	json_t *report;
	json_t *snaps;
	json_t *warnings;

	archive_binlog_files(f, 3);
	archive_complete_snapshot(f, genuine, 1);
	test_key(&other_key, NULL);
	f->key = other_key;
	archive_complete_snapshot(f, sealed_away, 3);
	f->key = own_key;

	report = expire_keyed_json(f, &f->ring, 1);
	snprintf(record, sizeof(record), "%s/%s", genuine, BK_SNAPSHOT_RECORD);
	assert_true(exists(f, BK_KIND_SNAPSHOT, record));
	assert_true(binlog_exists(f, "mariadb-bin.000001"));
	assert_true(json_is_true(json_object_get(report, "authenticated")));
	snaps = json_object_get(report, "snapshots");
	assert_int_equal(json_array_size(snaps), 2);
	assert_true(json_is_true(
		json_object_get(json_array_get(snaps, 0), "authenticated")));
	assert_true(json_is_false(
		json_object_get(json_array_get(snaps, 1), "authenticated")));
	warnings = json_object_get(report, "warnings");
	assert_int_equal(json_array_size(warnings), 1);
	if (strstr(json_string_value(json_array_get(warnings, 0)),
			   "snapshot 20261111T000000Z-0000beef does not count as "
			   "restorable: its record does not decrypt and authenticate "
			   "with the keyring: ") == NULL)
		fail_msg("warning: %s", json_string_value(json_array_get(warnings, 0)));
	json_decref(report);

	memset(&both, 0, sizeof(both));
	both.keys[0] = own_key;
	both.keys[1] = other_key;
	both.count = 2;
	report = expire_keyed_json(f, &both, 1);
	assert_false(exists(f, BK_KIND_SNAPSHOT, record));
	assert_false(binlog_exists(f, "mariadb-bin.000001"));
	assert_int_equal(json_array_size(json_object_get(report, "warnings")), 0);
	json_decref(report);
}

/*
 * After a rotation, the keyring holds only the new key: the old snapshot,
 * sealed to the old key and days old, does not count, but it may restore
 * with that key.  --retain-full 2 keeps it and the binlog from its file,
 * and says to add the key; it is not an abandoned snapshot to remove.
 */
static void
test_expire_old_key_missing_keeps_snapshot(void **state)
{
	Fixture *f = *state;
	const char *old = "20261110T000000Z-0000abcd";
	const char *newer = "20261111T000000Z-0000beef";
	char record[BK_OBJECT_NAME_MAX + 1];
	BkKey old_key = f->key;
	BkKey new_key;
	BkKeyring new_only;
	json_t *report;
	json_t *snaps;
	char *text;

	archive_binlog_files(f, 3);
	archive_complete_snapshot(f, old, 1);
	test_age_snapshot(f->location, SOURCE, old, 72);
	test_key(&new_key, &new_only);
	f->key = new_key;
	archive_complete_snapshot(f, newer, 3);
	f->key = old_key;

	report = expire_keyed_json(f, &new_only, 2);
	text = json_dumps(report, JSON_INDENT(1));
	snprintf(record, sizeof(record), "%s/%s", old, BK_SNAPSHOT_RECORD);
	if (!exists(f, BK_KIND_SNAPSHOT, record) ||
		!binlog_exists(f, "mariadb-bin.000001"))
		fail_msg("the old snapshot or its binlog was removed:\n%s", text);
	snaps = json_object_get(report, "snapshots");
	assert_int_equal(json_array_size(snaps), 2);
	if (strstr(text, "add it to the keyring") == NULL)
		fail_msg("the report does not say what to do:\n%s", text);
	free(text);
	json_decref(report);
}

/* Opens of the old snapshot's record; the second (expire decrypting it)
 * finds it removed, as another bk expire would have. */
static int record_opens;
static Fixture *record_fixture;
static const char *record_removed;

static BkRepoReader *
open_removed_second(const BkRepo *repo, const char *key, BkError *err)
{
	char path[1200];

	if (strstr(key, record_removed) != NULL && ++record_opens == 2)
	{
		snprintf(path, sizeof(path), "%s/%s", record_fixture->location, key);
		assert_int_equal(unlink(path), 0);
	}
	return real_backend->reader_open(repo, key, err);
}

/*
 * With the keyring, expire decrypts each record after the catalog read its
 * metadata: one removed in between (by another bk expire) is gone, as when
 * the catalog finds it so, not a record that fails authentication.
 */
static void
test_expire_keyed_record_gone_when_decrypted(void **state)
{
	Fixture *f = *state;
	const char *old = "20261101T000000Z-0000aaaa";
	char record[BK_OBJECT_NAME_MAX + 1];
	BkRepoBackend hooked;
	json_t *report;

	archive_binlog_files(f, 3);
	archive_complete_snapshot(f, old, 1);
	archive_complete_snapshot(f, "20261110T000000Z-0000abcd", 2);
	test_age_snapshot(f->location, SOURCE, old, 48);
	snprintf(record, sizeof(record), "%s/%s", old, BK_SNAPSHOT_RECORD);
	record_fixture = f;
	record_removed = record;
	record_opens = 0;
	real_backend = f->repo->backend;
	hooked = *real_backend;
	hooked.reader_open = open_removed_second;
	f->repo->backend = &hooked;
	report = expire_keyed_json(f, &f->ring, 1);
	f->repo->backend = real_backend;
	assert_int_equal(record_opens, 2);
	assert_false(exists(f, BK_KIND_SNAPSHOT, record));
	assert_false(binlog_exists(f, "mariadb-bin.000001"));
	assert_int_equal(json_array_size(json_object_get(report, "warnings")), 0);
	assert_true(json_is_null(
		json_object_get(json_array_get(json_object_get(report, "snapshots"), 0),
						"authenticated")));
	json_decref(report);
}

/*
 * A PostgreSQL cluster archives snapshots under this MariaDB source's id
 * (source_id set alike by mistake): its record has no engine=mariadb and
 * no schema.json beside it, so it looked incomplete, and once older than
 * the kept snapshot and a day old, it was removed.  It is another
 * engine's: bk expire leaves it, and the catalog says why it is not one.
 */
static void
test_expire_keeps_other_engine(void **state)
{
	Fixture *f = *state;
	const char *other = "20261101T000000Z-0000beef";
	MariadbSnapshotCatalog catalog;
	const MariadbSnapshot *snap;

	archive_binlog_files(f, 3);
	archive_complete_snapshot(f, "20261110T000000Z-0000abcd", 2);
	archive(f, BK_KIND_SNAPSHOT, "20261101T000000Z-0000beef/snapshot.json",
			"snapshot=20261101T000000Z-0000beef\nkind=full\n"
			"start-lsn=0/2000028\nstop-lsn=0/2000100\ntimeline=1\n"
			"objects=1",
			(const uint8_t *) "{}", 2);
	archive(f, BK_KIND_SNAPSHOT, "20261101T000000Z-0000beef/data/000001",
			"snapshot=20261101T000000Z-0000beef", (const uint8_t *) "{}", 2);
	test_age_snapshot(f->location, SOURCE, other, 48);

	snap = load_snapshot(f, &catalog, other);
	assert_true(snap->other_engine);
	assert_false(snap->complete);
	assert_non_null(strstr(snap->reason, "not a MariaDB snapshot's"));
	mariadb_snapshot_catalog_free(&catalog);

	assert_int_equal(expire(f, 1), 0);
	assert_true(
		exists(f, BK_KIND_SNAPSHOT, "20261101T000000Z-0000beef/snapshot.json"));
	assert_true(
		exists(f, BK_KIND_SNAPSHOT, "20261101T000000Z-0000beef/data/000001"));
	assert_false(binlog_exists(f, "mariadb-bin.000001"));
}

/*
 * One snapshot's record is damaged (its header overwritten): the others,
 * the catalog and bk expire go on, as PostgreSQL's do; that snapshot is
 * not complete, saying why, and goes like any unfinished one older than
 * the kept snapshots.  A record the repository cannot read at all (an I/O
 * error) says nothing of its snapshot: bk expire removes nothing.
 */
static void
test_damaged_record_is_not_complete(void **state)
{
	Fixture *f = *state;
	const char *damaged = "20261101T000000Z-0000aaaa";
	MariadbSnapshotCatalog catalog;
	const MariadbSnapshot *snap;
	char path[1024];
	char *problems;
	FILE *file;

	archive_binlog_files(f, 3);
	archive_complete_snapshot(f, damaged, 1);
	archive_complete_snapshot(f, "20261110T000000Z-0000abcd", 2);
	snprintf(path, sizeof(path), "%s/%s/snapshot/%s/%s", f->location, SOURCE,
			 damaged, BK_SNAPSHOT_RECORD);
	file = fopen(path, "r+");
	assert_non_null(file);
	assert_int_equal(fwrite("garbage!", 1, 8, file), 8);
	assert_int_equal(fclose(file), 0);
	test_age_snapshot(f->location, SOURCE, damaged, 48);

	snap = load_snapshot(f, &catalog, damaged);
	assert_false(snap->complete);
	assert_non_null(strstr(snap->reason, "its record cannot be read"));
	assert_true(catalog.snapshots[1].complete);
	mariadb_snapshot_catalog_free(&catalog);
	problems = verify_problems_as(f, false);
	assert_non_null(strstr(problems, "0000aaaa/snapshot.json"));
	free(problems);

	/* Unreadable: nothing removed, the snapshot named. */
	test_repo_faults(f->repo, TEST_FAIL_READS, "0000aaaa/snapshot.json");
	assert_int_not_equal(expire(f, 1), 0);
	test_repo_faults_end(f->repo);
	assert_true(exists(f, BK_KIND_SNAPSHOT,
					   "20261101T000000Z-0000aaaa/"
					   "schema.json"));
	assert_true(binlog_exists(f, "mariadb-bin.000001"));

	/* Damaged: it goes, with the binlog before the kept snapshot. */
	assert_int_equal(expire(f, 1), 0);
	assert_false(exists(f, BK_KIND_SNAPSHOT,
						"20261101T000000Z-0000aaaa/"
						"schema.json"));
	assert_false(binlog_exists(f, "mariadb-bin.000001"));
	assert_true(binlog_exists(f, "mariadb-bin.000002"));
}

/*
 * Two bk expire runs at once on one repository (two cron jobs, a cron job
 * and a manual run, hosts sharing a bucket).  Snapshots S1, S2 and S3 at
 * binlog files 1, 2 and 3; --retain-full 1 keeps S3 and the binlog from
 * file 3.  The second run (B) runs whole while the first (A) lists the
 * snapshots, just before A reads S2's record: the record A listed is gone
 * when read.  That is what another expire did, not a repository that
 * failed: A goes on, dry run or not, and the policy's result stays.
 */
#define SNAP_S1 "20261101T000000Z-0000e001"
#define SNAP_S2 "20261102T000000Z-0000e002"
#define SNAP_S3 "20261103T000000Z-0000e003"

static Fixture *beside_fixture;
static bool beside_fired;
static int beside_status;
static int beside_binlog_listings;

typedef struct BesideList
{
	BkRepoListFn fn;
	void *arg;
} BesideList;

static bool
expire_then_take(void *arg, const BkRepoEntry *entry, BkError *err)
{
	BesideList *list = arg;

	if (!beside_fired && strcmp(entry->name, SNAP_S2 "/snapshot.json") == 0)
	{
		BkRetention policy = {.retain_full = 1};
		BkError beside_err;

		beside_fired = true;
		beside_status =
			bk_mariadb_expire("bk expire (beside)", beside_fixture->repo,
							  SOURCE, &policy, &beside_err);
	}
	return list->fn(list->arg, entry, err);
}

/*
 * B removing the binlog oldest file first, A listing it as B goes: at A's
 * listing n, file n's first range goes just before A reads it.
 */
static bool
remove_nth_then_take(void *arg, const BkRepoEntry *entry, BkError *err)
{
	BesideList *list = arg;
	char file[32];
	char path[1200];

	snprintf(file, sizeof(file), "mariadb-bin.%06d/", beside_binlog_listings);
	if (strncmp(entry->name, file, strlen(file)) == 0)
	{
		snprintf(path, sizeof(path), "%s/%s/binlog/%s0000000000-0000000004",
				 beside_fixture->location, SOURCE, file);
		unlink(path);
	}
	return list->fn(list->arg, entry, err);
}

static bool
list_beside(const BkRepo *repo, const char *prefix, bool recursive,
			BkRepoListFn fn, void *arg, BkError *err)
{
	BesideList list = {fn, arg};

	/* The catalog's listings; not a look at one file's (a read's check). */
	if (strstr(prefix, "/binlog/") != NULL && recursive &&
		beside_binlog_listings >= 0)
	{
		beside_binlog_listings++;
		return real_backend->list(repo, prefix, recursive, remove_nth_then_take,
								  &list, err);
	}
	if (strstr(prefix, "/snapshot/") != NULL)
		return real_backend->list(repo, prefix, recursive, expire_then_take,
								  &list, err);
	return real_backend->list(repo, prefix, recursive, fn, arg, err);
}

/* bk expire --retain-full 1 (A) with the hooks; A's exit status. */
static int
expire_beside(Fixture *f, bool dry_run, bool binlog_goes)
{
	BkRetention policy = {.retain_full = 1, .dry_run = dry_run};
	BkRepoBackend hooked;
	int saved;
	int status;
	BkError err;

	beside_fixture = f;
	beside_fired = binlog_goes;
	beside_status = -1;
	beside_binlog_listings = binlog_goes ? 0 : -1;
	real_backend = f->repo->backend;
	hooked = *real_backend;
	hooked.list = list_beside;
	f->repo->backend = &hooked;
	saved = test_stdout_quiet();
	status = bk_mariadb_expire("bk expire", f->repo, SOURCE, &policy, &err);
	test_stdout_restore(saved);
	f->repo->backend = real_backend;
	if (status != 0)
		print_message("# bk expire: %s\n", err.message);
	return status;
}

static void
archive_beside_fixture(Fixture *f)
{
	archive_binlog_files(f, 4);
	archive_complete_snapshot(f, SNAP_S1, 1);
	archive_complete_snapshot(f, SNAP_S2, 2);
	archive_complete_snapshot(f, SNAP_S3, 3);
	test_age_snapshot(f->location, SOURCE, SNAP_S1, 48);
	test_age_snapshot(f->location, SOURCE, SNAP_S2, 48);
}

static void
assert_expired_beside(Fixture *f)
{
	assert_false(exists(f, BK_KIND_SNAPSHOT, SNAP_S1 "/schema.json"));
	assert_false(exists(f, BK_KIND_SNAPSHOT, SNAP_S2 "/schema.json"));
	assert_true(exists(f, BK_KIND_SNAPSHOT, SNAP_S3 "/snapshot.json"));
	assert_false(binlog_exists(f, "mariadb-bin.000001"));
	assert_false(binlog_exists(f, "mariadb-bin.000002"));
	assert_true(binlog_exists(f, "mariadb-bin.000003"));
	assert_true(binlog_exists(f, "mariadb-bin.000004"));
}

static void
test_expire_record_gone_when_read(void **state)
{
	Fixture *f = *state;

	archive_beside_fixture(f);
	assert_int_equal(expire_beside(f, false, false), 0);
	assert_true(beside_fired);
	assert_int_equal(beside_status, 0);
	assert_expired_beside(f);
}

static void
test_expire_dry_run_record_gone_when_read(void **state)
{
	Fixture *f = *state;

	archive_beside_fixture(f);
	assert_int_equal(expire_beside(f, true, false), 0);
	assert_true(beside_fired);
	assert_int_equal(beside_status, 0);
	assert_expired_beside(f);
}

/*
 * B removes binlog files while A lists them, so a range A listed is gone
 * when read, in every listing A would make: A counts it as gone, and still
 * keeps the binlog from the kept snapshot's file.  Restores and binlog-get
 * list once more, and then stop (test_binlog_catalog_lists_again).
 */
static void
test_expire_binlog_gone_when_read(void **state)
{
	Fixture *f = *state;

	archive_beside_fixture(f);
	assert_int_equal(expire_beside(f, false, true), 0);
	assert_true(beside_binlog_listings >= 1);
	assert_expired_beside(f);
}

/*
 * The store says "no such object" of a binlog range of file 3, which the
 * kept snapshot S3 starts in, though it still holds and lists it (a store
 * whose reads lag its listings, a proxy's passing 404).  Counted as gone,
 * the range would leave file 3 short and S3 not restorable, and the run
 * would decide on that.  A new listing still has the range: the run
 * stops, saying so, and removes nothing.
 */
static void
test_expire_binlog_not_found_still_listed(void **state)
{
	Fixture *f = *state;
	BkRetention policy = {.retain_full = 1};
	int saved;
	int status;
	BkError err;

	archive_beside_fixture(f);
	test_repo_faults(f->repo, TEST_READS_NOT_FOUND,
					 "/binlog/mariadb-bin.000003/");
	saved = test_stdout_quiet();
	status = bk_mariadb_expire("bk expire", f->repo, SOURCE, &policy, &err);
	test_stdout_restore(saved);
	test_repo_faults_end(f->repo);
	assert_int_equal(status, BK_EXIT_UNAVAILABLE);
	assert_error_contains(&err, "mariadb-bin.000003/");
	assert_error_contains(&err, "still lists it");
	assert_true(exists(f, BK_KIND_SNAPSHOT, SNAP_S1 "/schema.json"));
	assert_true(exists(f, BK_KIND_SNAPSHOT, SNAP_S2 "/schema.json"));
	assert_true(binlog_exists(f, "mariadb-bin.000001"));
	assert_true(binlog_exists(f, "mariadb-bin.000002"));
	assert_true(binlog_exists(f, "mariadb-bin.000003"));

	/* Read as it is: what the policy keeps. */
	saved = test_stdout_quiet();
	status = bk_mariadb_expire("bk expire", f->repo, SOURCE, &policy, &err);
	test_stdout_restore(saved);
	assert_int_equal(status, 0);
	assert_expired_beside(f);
}

/*
 * The same with two processes, as two cron jobs run: both start at once,
 * round after round.  Neither may fail over what the other removed, and
 * together they leave what the policy keeps.
 */
#define BESIDE_ROUNDS  30
#define BESIDE_OBJECTS 16

static void
archive_snapshot_with_data(Fixture *f, const char *id, int file_no)
{
	char record[256];
	char part[64];

	for (int objectIdx = 0; objectIdx < BESIDE_OBJECTS; objectIdx++)
	{
		snprintf(part, sizeof(part), "data/%06d", objectIdx + 1);
		archive_snapshot_object(f, id, part, NULL);
	}
	snprintf(record, sizeof(record),
			 "type=record\nobjects=%d\nbinlog-file=mariadb-bin.%06d\n"
			 "binlog-pos=4\ntables=0\nrows=0",
			 BESIDE_OBJECTS, file_no);
	archive_snapshot_object(f, id, "schema.json", NULL);
	archive_snapshot_object(f, id, BK_SNAPSHOT_RECORD, record);
}

static void
test_expire_two_processes(void **state)
{
	(void) state;
	for (int round = 0; round < BESIDE_ROUNDS; round++)
	{
		void *fixture;
		Fixture *f;
		int start[2];
		pid_t pids[2];

		setup(&fixture);
		f = fixture;
		archive_binlog_files(f, 4);
		archive_snapshot_with_data(f, SNAP_S1, 1);
		archive_snapshot_with_data(f, SNAP_S2, 2);
		archive_snapshot_with_data(f, SNAP_S3, 3);
		test_age_snapshot(f->location, SOURCE, SNAP_S1, 48);
		test_age_snapshot(f->location, SOURCE, SNAP_S2, 48);
		assert_int_equal(pipe(start), 0);
		fflush(NULL);
		for (int run = 0; run < 2; run++)
		{
			pids[run] = fork();
			assert_true(pids[run] >= 0);
			if (pids[run] == 0)
			{
				BkRetention policy = {.retain_full = 1};
				int quiet = open("/dev/null", O_WRONLY);
				char go;
				BkError err;

				dup2(quiet, STDOUT_FILENO);
				/* Both wait for the same bytes: they start together. */
				if (read(start[0], &go, 1) != 1)
					_exit(99);
				_exit(bk_mariadb_expire("bk expire", f->repo, SOURCE, &policy,
										&err));
			}
		}
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
		teardown(&fixture);
	}
}

/*
 * The agent host's clock stepped back nine days after snapshot S: R,
 * started since, has an id older than S's.  While the store writes R's
 * objects, R stays, and so does the binlog the agent sent since R's id
 * (R has no record yet to say where it is in the binlog); once the store
 * wrote none of R's objects for a day, R was abandoned and goes, and the
 * binlog before S's file with it.
 */
static void
test_expire_keeps_arriving_snapshot_with_older_id(void **state)
{
	Fixture *f = *state;
	const char *snap_r = "20261101T000000Z-0000abcd";

	archive_binlog_files(f, 3);
	archive_complete_snapshot(f, "20261110T000000Z-0000abcd", 2);
	archive_snapshot_object(f, snap_r, "schema.json", NULL);
	assert_int_equal(expire(f, 1), 0);
	assert_true(
		exists(f, BK_KIND_SNAPSHOT, "20261101T000000Z-0000abcd/schema.json"));
	assert_true(binlog_exists(f, "mariadb-bin.000001"));
	assert_true(binlog_exists(f, "mariadb-bin.000002"));

	test_age_snapshot(f->location, SOURCE, snap_r, 25);
	assert_int_equal(expire(f, 1), 0);
	assert_false(
		exists(f, BK_KIND_SNAPSHOT, "20261101T000000Z-0000abcd/schema.json"));
	assert_false(binlog_exists(f, "mariadb-bin.000001"));
	assert_true(binlog_exists(f, "mariadb-bin.000002"));
}

/*
 * Snapshot O was taken before N, but only N's record has arrived: O's
 * lags on its partition.  --retain-full 2 keeps N, and O as arriving;
 * where O is in the binlog is unknown until its record comes, so the
 * binlog the agent sent after O began stays.  Binlog sent before O began
 * (every range here, at 05:12 on 24 November) cannot hold O's position,
 * and goes when O's id says it began later.
 */
static void
test_expire_keeps_binlog_of_arriving_snapshot(void **state)
{
	Fixture *f = *state;

	archive_binlog_files(f, 4);
	archive_snapshot_object(f, "20261124T050000Z-0000abcd", "schema.json",
							NULL);
	archive_complete_snapshot(f, "20261125T000000Z-0000abcd", 3);
	assert_int_equal(expire(f, 2), 0);
	assert_true(binlog_exists(f, "mariadb-bin.000001"));
	assert_true(binlog_exists(f, "mariadb-bin.000002"));

	test_age_snapshot(f->location, SOURCE, "20261124T050000Z-0000abcd", 25);
	archive_snapshot_object(f, "20261124T060000Z-0000abcd", "schema.json",
							NULL);
	assert_int_equal(expire(f, 2), 0);
	assert_false(binlog_exists(f, "mariadb-bin.000001"));
	assert_false(binlog_exists(f, "mariadb-bin.000002"));
	assert_true(binlog_exists(f, "mariadb-bin.000003"));
}

/*
 * The same step back, with the snapshot after it complete: the policy
 * keeps that one, the newest in the binlog, and the older one stays too
 * (newer by id).  The binlog goes only before the kept snapshot earliest
 * in it, not before the one with the oldest id: the older snapshot still
 * restores.
 */
static void
test_expire_binlog_by_position(void **state)
{
	Fixture *f = *state;
	MariadbSnapshotCatalog catalog;
	const MariadbSnapshot *snap;
	BinlogCatalog binlog;
	const char *until_file;
	uint64_t until_pos;
	char problem[256];
	BkError err;

	archive_binlog_files(f, 4);
	archive_complete_snapshot(f, "20261110T000000Z-0000abcd", 2);
	archive_complete_snapshot(f, "20261101T000000Z-0000abcd", 4);
	assert_int_equal(expire(f, 1), 0);
	assert_false(binlog_exists(f, "mariadb-bin.000001"));
	assert_true(binlog_exists(f, "mariadb-bin.000002"));
	assert_true(binlog_exists(f, "mariadb-bin.000003"));

	snap = load_snapshot(f, &catalog, "20261110T000000Z-0000abcd");
	assert_true(binlog_catalog_load(f->repo, SOURCE, &binlog, &err));
	assert_true(mariadb_snapshot_reach(snap, &binlog, &until_file, &until_pos,
									   problem, sizeof(problem)));
	assert_string_equal(until_file, "mariadb-bin.000004");
	binlog_catalog_free(&binlog);
	mariadb_snapshot_catalog_free(&catalog);
}

/*
 * Binlog files base.000001 to base.<count>, each closed by a ROTATE but the
 * last, their ranges sent at created.
 */
static void
archive_history(Fixture *f, const char *base, int count, const char *created)
{
	for (int fileNo = 1; fileNo <= count; fileNo++)
	{
		char name[BK_OBJECT_NAME_MAX + 1];
		char meta[256];

		snprintf(name, sizeof(name), "%s.%06d/0000000000-0000000004", base,
				 fileNo);
		snprintf(meta, sizeof(meta),
				 "type=binlog-range\nbinlog-file=%s.%06d\nstart=0\nend=4\n"
				 "events=0\ngtid=\ncreated=%s%s",
				 base, fileNo, created,
				 fileNo < count ? "\nclosed=rotate" : "");
		archive(f, BK_KIND_BINLOG, name, meta,
				(const uint8_t *) "\xfe"
								  "bin",
				4);
	}
}

/* A complete snapshot at the start of binlog file. */
static void
archive_snapshot_at(Fixture *f, const char *id, const char *file)
{
	char record[256];

	snprintf(record, sizeof(record),
			 "type=record\nobjects=0\nbinlog-file=%s\n"
			 "binlog-pos=4\ntables=0\nrows=0",
			 file);
	archive_snapshot_object(f, id, "schema.json", NULL);
	archive_snapshot_object(f, id, BK_SNAPSHOT_RECORD, record);
}

/* Which of base.000001 to base.<count> are archived, as "1.0.1..." */
static void
history_left(Fixture *f, const char *base, int count, char *out)
{
	for (int fileNo = 1; fileNo <= count; fileNo++)
	{
		char file[64];

		snprintf(file, sizeof(file), "%s.%06d", base, fileNo);
		out[fileNo - 1] = binlog_exists(f, file) ? '1' : '0';
	}
	out[count] = '\0';
}

/* Snapshot kept taken on the server failed over to, in db2-bin.000005. */
#define SNAP_DB1 "20261124T060000Z-0000d001"
#define SNAP_DB2 "20261125T000000Z-0000d002"

/*
 * A source whose archive holds two servers' binlogs (another basename: an
 * agent that went on across a failover, or two agents given one source
 * id): mariadb-bin.000001..000010 of the old server, sent on 11-24, then
 * db2-bin.000001..000007 of the new one, sent on 11-24 later.  Snapshot
 * SNAP_DB1 (older) is at mariadb-bin.000008, SNAP_DB2 (newer) at
 * db2-bin.000005.  By number alone, SNAP_DB1 ends after SNAP_DB2: it was
 * the one --retain-full 1 kept, the newer server's only snapshot went, and
 * with it every db2-bin file (numbered below 8).  No restore goes from one
 * history into the other: each keeps, from its own kept snapshot's file.
 */
static void
test_expire_binlog_histories_apart(void **state)
{
	Fixture *f = *state;
	MariadbSnapshotCatalog catalog;
	const MariadbSnapshot *snap;
	BinlogCatalog binlog;
	const char *until_file;
	uint64_t until_pos;
	char problem[256];
	char left[16];
	BkError err;

	archive_history(f, "mariadb-bin", 10, "2026-11-24T05:12:00.000Z");
	archive_history(f, "db2-bin", 7, "2026-11-24T08:00:00.000Z");
	archive_snapshot_at(f, SNAP_DB1, "mariadb-bin.000008");
	archive_snapshot_at(f, SNAP_DB2, "db2-bin.000005");

	/* Both kept: each history from its snapshot's file. */
	assert_int_equal(expire(f, 2), 0);
	assert_true(exists(f, BK_KIND_SNAPSHOT, SNAP_DB1 "/" BK_SNAPSHOT_RECORD));
	assert_true(exists(f, BK_KIND_SNAPSHOT, SNAP_DB2 "/" BK_SNAPSHOT_RECORD));
	history_left(f, "db2-bin", 7, left);
	assert_string_equal(left, "0000111");
	history_left(f, "mariadb-bin", 10, left);
	assert_string_equal(left, "0000000111");

	/* Each restores to the end of its history, not of its own file. */
	assert_true(binlog_catalog_load(f->repo, SOURCE, &binlog, &err));
	snap = load_snapshot(f, &catalog, SNAP_DB2);
	assert_true(mariadb_snapshot_reach(snap, &binlog, &until_file, &until_pos,
									   problem, sizeof(problem)));
	assert_string_equal(until_file, "db2-bin.000007");
	for (int idx = 0; idx < catalog.count; idx++)
		if (strcmp(catalog.snapshots[idx].id, SNAP_DB1) == 0)
			snap = &catalog.snapshots[idx];
	assert_true(mariadb_snapshot_reach(snap, &binlog, &until_file, &until_pos,
									   problem, sizeof(problem)));
	assert_string_equal(until_file, "mariadb-bin.000010");
	binlog_catalog_free(&binlog);
	mariadb_snapshot_catalog_free(&catalog);
}

/*
 * The same archive, --retain-full 1: the newer server's snapshot is the
 * one kept.  The old server's history, where no snapshot stays, was all
 * sent long before it began: it goes whole.
 */
static void
test_expire_binlog_history_of_newest_kept(void **state)
{
	Fixture *f = *state;
	char left[16];

	archive_history(f, "mariadb-bin", 10, "2026-11-24T05:12:00.000Z");
	archive_history(f, "db2-bin", 7, "2026-11-24T08:00:00.000Z");
	archive_snapshot_at(f, SNAP_DB1, "mariadb-bin.000008");
	archive_snapshot_at(f, SNAP_DB2, "db2-bin.000005");
	assert_int_equal(expire(f, 1), 0);
	assert_true(exists(f, BK_KIND_SNAPSHOT, SNAP_DB2 "/" BK_SNAPSHOT_RECORD));
	assert_false(exists(f, BK_KIND_SNAPSHOT, SNAP_DB1 "/" BK_SNAPSHOT_RECORD));
	history_left(f, "db2-bin", 7, left);
	assert_string_equal(left, "0000111");
	history_left(f, "mariadb-bin", 10, left);
	assert_string_equal(left, "0000000000");
}

/*
 * Two kept snapshots at the same number in two histories, the older one
 * earlier in its file: by number and offset it was the kept snapshot
 * earliest in the binlog, and db2-bin.000005, ordered before
 * mariadb-bin.000005 by name, went although SNAP_DB2 starts in it.
 */
static void
test_expire_binlog_histories_same_number(void **state)
{
	Fixture *f = *state;
	char left[16];

	archive_history(f, "mariadb-bin", 6, "2026-11-24T05:12:00.000Z");
	archive_history(f, "db2-bin", 6, "2026-11-24T08:00:00.000Z");
	archive_snapshot_at(f, SNAP_DB1, "mariadb-bin.000005");
	archive_snapshot_at(f, SNAP_DB2, "db2-bin.000005");
	assert_int_equal(expire(f, 2), 0);
	history_left(f, "db2-bin", 6, left);
	assert_string_equal(left, "000011");
	history_left(f, "mariadb-bin", 6, left);
	assert_string_equal(left, "000011");
}

/*
 * A history where no snapshot stays, the agent still sending it after the
 * newest kept snapshot began (a second server under the same source id,
 * its first snapshot still to come, which will need its newest file from
 * offset 0): it stays whole.
 */
static void
test_expire_binlog_history_still_written(void **state)
{
	Fixture *f = *state;
	char left[16];

	archive_history(f, "mariadb-bin", 4, "2026-11-24T05:12:00.000Z");
	archive_history(f, "db2-bin", 3, "2026-11-25T00:30:00.000Z");
	archive_snapshot_at(f, SNAP_DB2, "mariadb-bin.000003");
	assert_int_equal(expire(f, 1), 0);
	history_left(f, "mariadb-bin", 4, left);
	assert_string_equal(left, "0011");
	history_left(f, "db2-bin", 3, left);
	assert_string_equal(left, "111");
}

/* The store refuses the delete_fail_at-th delete, and every one after. */
static int deletes;
static int delete_fail_at;

static bool
delete_failing(BkRepo *repo, const char *key, BkError *err)
{
	if (++deletes >= delete_fail_at)
		return bk_error_set(err, BK_ERR_IO, "the store refused the delete");
	return real_backend->delete (repo, key, err);
}

/*
 * A bk expire that stops inside a binlog file (the store failed its third
 * removal: mariadb-bin.000001 gone, mariadb-bin.000002 without its first
 * range) leaves that file starting past offset 0: bk expire recorded what
 * it removes before it began, so bk verify and bk list do not call the
 * rest of it a gap, as they did until the next bk expire finished.  A
 * range lost past the record is still one.
 */
static void
test_expire_cut_short_inside_a_file(void **state)
{
	Fixture *f = *state;
	BkRepoBackend failing;
	BinlogCatalog catalog = {0};
	BkError err;
	json_t *item = json_object();
	char *problems;
	int saved;

	for (int fileNo = 1; fileNo <= 2; fileNo++)
	{
		char file[32];
		char name[BK_OBJECT_NAME_MAX + 1];
		char meta[256];
		uint8_t bytes[46] = {0};

		snprintf(file, sizeof(file), "mariadb-bin.%06d", fileNo);
		archive_binlog_start(f, file, false);
		snprintf(name, sizeof(name), "%s/0000000004-0000000050", file);
		snprintf(meta, sizeof(meta),
				 "type=binlog-range\nbinlog-file=%s\nstart=4\nend=50\n"
				 "events=1\ngtid=\ncreated=2026-11-24T05:12:00.000Z\n"
				 "closed=rotate",
				 file);
		archive(f, BK_KIND_BINLOG, name, meta, bytes, sizeof(bytes));
	}
	archive_binlog_start(f, "mariadb-bin.000003", true);
	archive_binlog_start(f, "mariadb-bin.000004", false);
	archive_complete_snapshot(f, "20261110T000000Z-0000abcd", 3);

	real_backend = f->repo->backend;
	failing = *real_backend;
	failing.delete = delete_failing;
	f->repo->backend = &failing;
	deletes = 0;
	delete_fail_at = 4;
	assert_int_not_equal(expire(f, 1), 0);
	f->repo->backend = real_backend;
	assert_false(binlog_exists(f, "mariadb-bin.000001"));
	assert_false(binlog_exists(f, "mariadb-bin.000002"));
	assert_true(
		exists(f, BK_KIND_BINLOG, "mariadb-bin.000002/0000000004-0000000050"));

	problems = verify_problems_keyless(f);
	if (strstr(problems, "binlog gap") != NULL)
		fail_msg("%s", problems);
	free(problems);
	saved = test_stdout_quiet();
	assert_true(bk_engine_mariadb.list(f->repo, SOURCE, NULL, item, 0, &err));
	test_stdout_restore(saved);
	assert_int_equal(json_array_size(json_object_get(item, "binlog_gaps")), 0);
	json_decref(item);
	/*
	 * bk binlog-get of what it removed, in part or whole: removed by bk
	 * expire (exit 4), not a file the archive lacks the start of, with the
	 * file the binlog is kept from.
	 */
	assert_true(binlog_catalog_load(f->repo, SOURCE, &catalog, &err));
	for (int fileNo = 1; fileNo <= 2; fileNo++)
	{
		char file[32];

		snprintf(file, sizeof(file), "mariadb-bin.%06d", fileNo);
		bk_error_clear(&err);
		assert_null(mariadb_binlog_get_file(&catalog, SOURCE, file, &err));
		assert_int_equal(bk_cli_report_absent_error("bk binlog-get", &err),
						 BK_EXIT_INTEGRITY);
		assert_error_contains(&err, "bk expire removed");
		assert_error_contains(&err, fileNo == 2 ? "in part" : "up to");
		assert_non_null(strstr(err.hint, "kept from mariadb-bin.000003"));
	}
	binlog_catalog_free(&catalog);

	/* The next run finishes, and leaves one record. */
	assert_int_equal(expire(f, 1), 0);
	assert_false(
		exists(f, BK_KIND_BINLOG, "mariadb-bin.000002/0000000004-0000000050"));
	assert_true(binlog_exists(f, "mariadb-bin.000003"));

	/* A first range lost from a file after the record is a gap still. */
	assert_true(bk_repo_delete(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_BINLOG,
							   "mariadb-bin.000004/0000000000-0000000004",
							   &err));
	archive_binlog_range(f, "mariadb-bin.000004", 4, 20);
	problems = verify_problems_keyless(f);
	assert_non_null(strstr(problems, "binlog gap"));
	free(problems);
}

/*
 * Snapshot O ended at 000001; its record arrived, one data part is still on
 * its way (another partition lags).  N, taken after it, is complete at
 * 000003.  --retain-full 2 keeps both: O as arriving (not complete yet).
 * The binlog O's record names must stay, or O, once its part arrives,
 * never restores although the policy keeps it.
 */
static void
test_expire_keeps_binlog_of_arriving_record(void **state)
{
	Fixture *f = *state;
	const char *snap_o = "20261101T000000Z-0000abcd";

	archive_binlog_files(f, 4);
	archive_snapshot_object(f, snap_o, "schema.json", NULL);
	archive_snapshot_object(f, snap_o, BK_SNAPSHOT_RECORD,
							"type=record\nobjects=1\n"
							"binlog-file=mariadb-bin.000001\nbinlog-pos=4\n"
							"tables=1\nrows=1");
	archive_complete_snapshot(f, "20261105T000000Z-0000abcd", 3);
	assert_int_equal(expire(f, 2), 0);
	assert_true(exists(f, BK_KIND_SNAPSHOT,
					   "20261101T000000Z-0000abcd/" BK_SNAPSHOT_RECORD));
	assert_true(binlog_exists(f, "mariadb-bin.000001"));
	assert_true(binlog_exists(f, "mariadb-bin.000002"));
}

/*
 * 000003 never reached the archive: the snapshot at 000001:4 restores up
 * to 000002:4 only (bk restore refuses anything past it), so bk list must
 * not call the archive restorable to the end of 000004.
 */
static void
test_list_restorable_stops_at_hole(void **state)
{
	Fixture *f = *state;
	json_t *item = json_object();
	json_t *restorable;
	BkError err;
	int saved;

	archive_binlog_start(f, "mariadb-bin.000001", true);
	archive_binlog_start(f, "mariadb-bin.000002", true);
	archive_binlog_start(f, "mariadb-bin.000004", false);
	archive_snapshot_object(f, SNAP_OLD, "schema.json", NULL);
	archive_snapshot_object(f, SNAP_OLD, BK_SNAPSHOT_RECORD,
							"type=record\nbinlog-file=mariadb-bin.000001\n"
							"binlog-pos=4\ntables=1\nrows=9");
	saved = test_stdout_quiet();
	assert_true(bk_engine_mariadb.list(f->repo, SOURCE, NULL, item, 0, &err));
	test_stdout_restore(saved);
	restorable = json_object_get(item, "restorable");
	assert_non_null(restorable);
	assert_string_equal(json_string_value(json_object_get(
							json_object_get(restorable, "from"), "snapshot")),
						SNAP_OLD);
	assert_string_equal(json_string_value(json_object_get(
							json_object_get(restorable, "to"), "file")),
						"mariadb-bin.000002");
	assert_int_equal(json_integer_value(json_object_get(
						 json_object_get(restorable, "to"), "pos")),
					 4);
	json_decref(item);
}

/*
 * bk list of the archive whose 000001 lost its closing range (see
 * test_lost_closing_range): the restorable window ends where 000001 is
 * archived, and the gap is named, though 000002 follows.
 */
static void
test_list_lost_closing_range(void **state)
{
	Fixture *f = *state;
	uint8_t first[512], second[256];
	size_t len1, len2, cut;
	char extra[256];
	json_t *item = json_object();
	json_t *to;
	char *gaps;
	BkError err;
	int saved;

	build_incident_files(first, &len1, &cut, second, &len2);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, cut, T0900 + 60,
						"0-1-2", "");
	snprintf(extra, sizeof(extra),
			 "\nprevious-end=mariadb-bin.000001:%zu\nprevious-closed=rotate",
			 len1);
	archive_binlog_part(f, "mariadb-bin.000002", second, 0, len2, T0900 + 300,
						"0-1-3", extra);
	archive_snapshot_object(f, SNAP_OLD, "schema.json", NULL);
	archive_snapshot_object(f, SNAP_OLD, BK_SNAPSHOT_RECORD,
							"type=record\nbinlog-file=mariadb-bin.000001\n"
							"binlog-pos=4\ntables=1\nrows=9");
	saved = test_stdout_quiet();
	assert_true(bk_engine_mariadb.list(f->repo, SOURCE, NULL, item, 0, &err));
	test_stdout_restore(saved);
	to = json_object_get(json_object_get(item, "restorable"), "to");
	assert_non_null(to);
	assert_string_equal(json_string_value(json_object_get(to, "file")),
						"mariadb-bin.000001");
	assert_int_equal(json_integer_value(json_object_get(to, "pos")), cut);
	gaps = json_dumps(json_object_get(item, "binlog_gaps"), 0);
	assert_non_null(strstr(gaps, "but the agent read it to offset"));
	assert_non_null(strstr(gaps, "mariadb-bin.000001"));
	free(gaps);
	json_decref(item);
}

/*
 * The archive of a failover to a server of another binlog basename, as an
 * agent that took it for a purge gap left it: it ends at mariadb-bin.000003
 * (the old server's STOP), then db2-bin.000001 on, its first range marked
 * gap-before=.  Ordered by number, db2-bin.000004 would come right after
 * mariadb-bin.000003; the catalog puts the histories one after the other,
 * the one the agent sent first first: bk list and bk verify name the
 * crossing as one gap, and the snapshot in mariadb-bin.000003 is
 * restorable up to its end only, not on into db2-bin.000004.
 */
static void
test_list_other_basename_gaps(void **state)
{
	Fixture *f = *state;
	json_t *item = json_object();
	json_t *to;
	char *gaps;
	char *problems;
	BkError err;
	int saved;

	archive(f, BK_KIND_BINLOG, "mariadb-bin.000003/0000000000-0000000004",
			"type=binlog-range\nbinlog-file=mariadb-bin.000003\nstart=0\n"
			"end=4\nevents=0\ngtid=\ncreated=2026-11-24T05:12:00.000Z\n"
			"closed=stop",
			(const uint8_t *) "\xfe"
							  "bin",
			4);
	archive(f, BK_KIND_BINLOG, "db2-bin.000001/0000000000-0000000004",
			"type=binlog-range\nbinlog-file=db2-bin.000001\nstart=0\n"
			"end=4\nevents=0\ngtid=\ncreated=2026-11-24T05:13:00.000Z\n"
			"gap-before=mariadb-bin.000003:4\nclosed=rotate",
			(const uint8_t *) "\xfe"
							  "bin",
			4);
	for (int fileNo = 2; fileNo <= 4; fileNo++)
	{
		char name[64];
		char meta[256];

		snprintf(name, sizeof(name), "db2-bin.%06d/0000000000-0000000004",
				 fileNo);
		snprintf(meta, sizeof(meta),
				 "type=binlog-range\nbinlog-file=db2-bin.%06d\nstart=0\n"
				 "end=4\nevents=0\ngtid=\ncreated=2026-11-24T05:13:00.000Z%s",
				 fileNo, fileNo < 4 ? "\nclosed=rotate" : "");
		archive(f, BK_KIND_BINLOG, name, meta,
				(const uint8_t *) "\xfe"
								  "bin",
				4);
	}
	archive_snapshot_object(f, SNAP_OLD, "schema.json", NULL);
	archive_snapshot_object(f, SNAP_OLD, BK_SNAPSHOT_RECORD,
							"type=record\nbinlog-file=mariadb-bin.000003\n"
							"binlog-pos=4\ntables=1\nrows=9");
	saved = test_stdout_quiet();
	assert_true(bk_engine_mariadb.list(f->repo, SOURCE, NULL, item, 0, &err));
	test_stdout_restore(saved);
	to = json_object_get(json_object_get(item, "restorable"), "to");
	assert_non_null(to);
	assert_string_equal(json_string_value(json_object_get(to, "file")),
						"mariadb-bin.000003");
	assert_int_equal(json_array_size(json_object_get(item, "binlog_gaps")), 1);
	gaps = json_dumps(json_object_get(item, "binlog_gaps"), 0);
	assert_non_null(strstr(gaps, "\"file\": \"db2-bin.000001\""));
	assert_non_null(strstr(gaps, "not go on into it from mariadb-bin.000003:"
								 " another binlog basename"));
	free(gaps);
	json_decref(item);

	problems = verify_problems(f);
	assert_non_null(strstr(problems, "another binlog basename"));
	free(problems);
}

/*
 * A second binlog range of the same name with other content (a second
 * server archiving under this source id) is kept in the conflicts area;
 * bk restore replays the archived copy, which may be the other server's.
 * bk verify must say so, as it does for PostgreSQL sources.
 */
static void
test_verify_reports_conflict_copy(void **state)
{
	Fixture *f = *state;
	const char *name = "mariadb-bin.000001/0000000000-0000000004";
	const char *meta = "type=binlog-range\nbinlog-file=mariadb-bin.000001\n"
					   "start=0\nend=4\nevents=0\ngtid=\n"
					   "created=2026-11-24T05:12:00.000Z\nclosed=rotate";
	char *problems;
	BkError err;

	archive_binlog_start(f, "mariadb-bin.000001", true);
	problems = verify_problems(f);
	assert_string_equal(problems, "[]");
	free(problems);

	test_archive_conflict(f->repo, &f->key, &f->uploads, BK_KIND_BINLOG, SOURCE,
						  name, meta,
						  (const uint8_t *) "\xfe"
											"BIN",
						  4);

	problems = verify_problems(f);
	assert_non_null(strstr(problems, "a second copy with different content"));
	assert_non_null(strstr(problems, "conflicts/binlog/mariadb-bin.000001/"));
	free(problems);

	/* The range expired (bk expire leaves the copy): nothing reads it. */
	assert_true(bk_repo_delete(f->repo, BK_REPO_ARCHIVE, SOURCE, BK_KIND_BINLOG,
							   name, &err));
	problems = verify_problems(f);
	assert_string_equal(problems, "[]");
	free(problems);
}

/*
 * A MariaDB source whose binlog never reached the archive (every range
 * rejected, say) holds only snapshots.  It is still MariaDB's: taken for
 * a PostgreSQL source, its records read as snapshots "without start-lsn",
 * not a problem, and bk verify with the key said every object was checked
 * and decrypted while it never opened one, whatever they held.
 */
static void
test_snapshots_without_binlog_are_mariadb(void **state)
{
	Fixture *f = *state;
	const BkEngine *engine;
	BkVerifier verifier = {
		.ring = &f->ring, .decoder = f->decoder, .json = true};
	BkError err;

	archive_snapshot_object(f, SNAP_OLD, "schema.json", NULL);
	archive_snapshot_object(f, SNAP_OLD, BK_SNAPSHOT_RECORD,
							"type=record\nbinlog-file=mariadb-bin.000001\n"
							"binlog-pos=4\ntables=1\nrows=9");
	engine = bk_engine_for(f->repo, SOURCE, &err);
	assert_non_null(engine);
	assert_string_equal(engine->name, "mariadb");

	/* Its record ("{}" here) is read and checked with the key. */
	verifier.problem_list = json_array();
	verifier.conflict_list = json_array();
	verifier.snapshot_list = json_array();
	assert_true(engine->verify(&verifier, f->repo, SOURCE, &err));
	assert_true(verifier.problems > 0);
	json_decref(verifier.problem_list);
	json_decref(verifier.conflict_list);
	json_decref(verifier.snapshot_list);
}

/*
 * A snapshot's record removed (or never archived: cancelled, failed,
 * arriving) leaves its schema and data objects, which bk verify decrypts
 * and finds sound: it said nothing of the snapshot, while bk restore
 * passes over it.  It is a note, as for PostgreSQL, not a problem.
 */
static void
test_verify_notes_snapshot_without_record(void **state)
{
	Fixture *f = *state;
	BkVerifier verifier = {
		.ring = &f->ring, .decoder = f->decoder, .json = true};
	char *notes;
	BkError err;

	archive_snapshot_object(f, SNAP_NEW, "schema.json", NULL);
	archive_snapshot_object(f, SNAP_NEW, "data/000001.000001", NULL);
	verifier.problem_list = json_array();
	verifier.note_list = json_array();
	verifier.conflict_list = json_array();
	verifier.snapshot_list = json_array();
	assert_true(bk_engine_mariadb.verify(&verifier, f->repo, SOURCE, &err));
	assert_int_equal(verifier.problems, 0);
	notes = json_dumps(verifier.note_list, 0);
	assert_non_null(strstr(notes, "snapshot " SNAP_NEW " is not complete"));
	assert_non_null(strstr(notes, "no record"));
	free(notes);
	json_decref(verifier.problem_list);
	json_decref(verifier.note_list);
	json_decref(verifier.conflict_list);
	json_decref(verifier.snapshot_list);
}

/*
 * A source with WAL archived is PostgreSQL's, decided without listing its
 * snapshots' objects (a page of up to a thousand names from an object
 * store before every command): even a snapshot object that says
 * engine=mariadb does not make it MariaDB's.
 */
static void
test_wal_makes_postgresql(void **state)
{
	Fixture *f = *state;
	const BkEngine *engine;
	BkError err;

	archive_snapshot_object(f, SNAP_OLD, "schema.json", NULL);
	archive(f, BK_KIND_WAL, "000000010000000000000001",
			"segment-size=16777216\nsystem-identifier=7\n"
			"created=2026-11-24T05:12:00.000Z",
			(const uint8_t *) "wal", 3);
	engine = bk_engine_for(f->repo, SOURCE, &err);
	assert_non_null(engine);
	assert_string_equal(engine->name, "postgresql");
}

/*
 * A source with MariaDB's snapshots and no binlog, whose snapshot objects
 * cannot be read (a store that does not answer): that says nothing of
 * whose snapshots they are.  The engine is not guessed (PostgreSQL's
 * would take MariaDB's snapshots for its own): the failure is the answer,
 * naming the source and what failed.
 */
static void
test_unreadable_snapshots_no_engine(void **state)
{
	Fixture *f = *state;
	const BkEngine *engine;
	BkError err;

	archive_snapshot_object(f, SNAP_OLD, "schema.json", NULL);
	archive_snapshot_object(f, SNAP_OLD, BK_SNAPSHOT_RECORD,
							"type=record\nbinlog-file=mariadb-bin.000001\n"
							"binlog-pos=4\ntables=1\nrows=9");
	test_repo_faults(f->repo, TEST_FAIL_READS, "/snapshot/");
	engine = bk_engine_for(f->repo, SOURCE, &err);
	test_repo_faults_end(f->repo);
	assert_null(engine);
	assert_int_equal(err.code, BK_ERR_STORE);
	assert_non_null(strstr(err.message, "could not tell whose snapshots"));
	assert_non_null(strstr(err.message, "injected failure reading"));

	/* Readable again: MariaDB's. */
	engine = bk_engine_for(f->repo, SOURCE, &err);
	assert_non_null(engine);
	assert_string_equal(engine->name, "mariadb");
}

/* bk verify of the source without the key: its problems, as JSON text. */
static char *
verify_problems_keyless(Fixture *f)
{
	return verify_problems_as(f, false);
}

/*
 * Every range of mariadb-bin.000003, the first file, was lost; the archive
 * starts with 000004.  No gap shows (nothing archived before 000004), yet
 * the complete snapshot at 000003:4 cannot be carried forward: bk restore
 * refuses every target but "immediate".  bk verify must say so.  A
 * snapshot whose file the archive has not reached yet is its end, not a
 * problem.
 */
static void
test_verify_snapshot_not_carried_forward(void **state)
{
	Fixture *f = *state;
	char *problems;

	archive_binlog_start(f, "mariadb-bin.000004", false);
	archive_snapshot_object(f, SNAP_NEW, "schema.json", NULL);
	archive_snapshot_object(f, SNAP_NEW, BK_SNAPSHOT_RECORD,
							"type=record\nbinlog-file=mariadb-bin.000005\n"
							"binlog-pos=4\ntables=1\nrows=9");
	problems = verify_problems_keyless(f);
	assert_string_equal(problems, "[]");
	free(problems);

	archive_snapshot_object(f, SNAP_OLD, "schema.json", NULL);
	archive_snapshot_object(f, SNAP_OLD, BK_SNAPSHOT_RECORD,
							"type=record\nbinlog-file=mariadb-bin.000003\n"
							"binlog-pos=4\ntables=1\nrows=9");
	problems = verify_problems_keyless(f);
	assert_non_null(strstr(problems, SNAP_OLD));
	assert_non_null(strstr(problems, "cannot be carried forward"));
	assert_non_null(strstr(problems, "mariadb-bin.000003"));
	assert_null(strstr(problems, SNAP_NEW));
	free(problems);
}

/*
 * mariadb-bin.000001 archived whole, and its first transaction archived
 * again as a range of its own with other bytes: the server crashed with
 * sync_binlog=0 and wrote that part of the file anew.  Each range holds
 * valid events; bk restore, rebuilding the file, finds the two copies of
 * the same bytes differ and stops.  bk verify must find it too.
 */
static void
test_verify_resent_range_differs(void **state)
{
	Fixture *f = *state;
	uint8_t first[512], other[512];
	size_t len = BK_BINLOG_MAGIC_LEN;
	size_t other_len = BK_BINLOG_MAGIC_LEN;
	size_t cut;
	char *problems;
	BkError err;

	memcpy(first, bk_binlog_magic, BK_BINLOG_MAGIC_LEN);
	add_gtid_list(first, &len, T0900, NULL, 0);
	memcpy(other, first, len);
	other_len = len;
	add_transaction(first, &len, 1, T0900, T0900);
	add_transaction(other, &other_len, 1, T0900 + 1, T0900 + 1);
	cut = len;
	assert_int_equal(other_len, cut);
	add_transaction(first, &len, 2, T0900 + 60, T0900 + 60);
	archive_binlog_part(f, "mariadb-bin.000001", first, 0, len, T0900 + 60,
						"0-1-2", "");
	problems = verify_problems(f);
	assert_string_equal(problems, "[]");
	free(problems);

	archive_binlog_part(f, "mariadb-bin.000001", other, 0, cut, T0900 + 1,
						"0-1-1", "");
	assert_false(plan(f, TARGET_LATEST, NULL, &err));
	assert_error_contains(&err, "differs from the other archived copy");
	problems = verify_problems(f);
	assert_non_null(strstr(problems, "differs from the other archived copy"));
	free(problems);
}

/*
 * mariadb-bin.000001 sent as [0,a) and [a,c), then again from a (the agent
 * resumed from an older acknowledged position): [a,b), [b,d), [d,end),
 * with b < c < d.  No range starts at c, yet every byte is archived: the
 * chain goes on at c with the rest of [b,d), whose bytes before c must
 * equal [a,c)'s.  bk verify finds no gap, a restore to the latest takes
 * every transaction, bk binlog-get rebuilds the file as it was; with the
 * resent bytes before c differing, both refuse.
 */
static void
test_resent_ranges_overlap_the_chain(void **state)
{
	Fixture *f = *state;
	uint8_t bytes[1024], other[1024];
	size_t len = BK_BINLOG_MAGIC_LEN, other_len;
	size_t at[6], c;
	BinlogCatalog catalog = {0};
	const BinlogFile *file;
	char out_path[600];
	char *problems;
	char *rebuilt;
	size_t rebuilt_len;
	uint64_t events = 0;
	BkError err;

	memcpy(bytes, bk_binlog_magic, BK_BINLOG_MAGIC_LEN);
	add_gtid_list(bytes, &len, T0900, NULL, 0);
	at[0] = len;
	for (int seq = 1; seq <= 5; seq++)
	{
		add_transaction(bytes, &len, (uint64_t) seq, T0900 + 60 * seq,
						T0900 + 60 * seq);
		at[seq] = len;
	}
	/* The same file but transaction 3 (between b and c) stamped apart. */
	memcpy(other, bytes, len);
	other_len = at[2];
	add_transaction(other, &other_len, 3, T0900 + 181, T0900 + 181);
	assert_int_equal(other_len, at[3]);

	/*
	 * a, b, d: the ends of transactions 1, 2 and 4; c inside transaction 3,
	 * after its GTID event (a range may end inside a group): what follows
	 * c is taken from [b,d) as the rest of that group.
	 */
	c = at[2] + BK_BINLOG_HEADER_LEN + 13;
	archive_binlog_part(f, "mariadb-bin.000001", bytes, 0, at[1], T0900 + 60,
						"0-1-1", "");
	archive_binlog_part(f, "mariadb-bin.000001", bytes, at[1], c, T0900 + 180,
						"0-1-3", "");
	archive_binlog_part(f, "mariadb-bin.000001", bytes, at[1], at[2],
						T0900 + 120, "0-1-2", "");
	archive_binlog_part(f, "mariadb-bin.000001", bytes, at[2], at[4],
						T0900 + 240, "0-1-4", "");
	archive_binlog_part(f, "mariadb-bin.000001", bytes, at[4], len, T0900 + 300,
						"0-1-5", "\ncomplete-until=1795514400000");

	problems = verify_problems(f);
	assert_string_equal(problems, "[]");
	free(problems);
	if (!plan(f, TARGET_LATEST, NULL, &err))
		fail_msg("%s", err.message);
	assert_int_equal(f->groups, 5);

	assert_true(binlog_catalog_load(f->repo, SOURCE, &catalog, &err));
	file = binlog_catalog_file(&catalog, "mariadb-bin.000001");
	assert_non_null(file);
	assert_int_equal(file->covered_end, len);
	assert_int_equal(file->gap_end, 0);
	snprintf(out_path, sizeof(out_path), "%s/mariadb-bin.000001", f->dir);
	if (!mariadb_binlog_write(f->repo, SOURCE, f->decoder, file, out_path,
							  &events, &err))
		fail_msg("%s", err.message);
	assert_true(bk_read_file(out_path, 1 << 20, &rebuilt, &rebuilt_len, &err));
	assert_int_equal(rebuilt_len, len);
	assert_memory_equal(rebuilt, bytes, len);
	free(rebuilt);
	binlog_catalog_free(&catalog);

	/* [b,d) sent again with other bytes before c: two histories. */
	teardown(state);
	setup(state);
	f = *state;
	archive_binlog_part(f, "mariadb-bin.000001", bytes, 0, at[1], T0900 + 60,
						"0-1-1", "");
	archive_binlog_part(f, "mariadb-bin.000001", bytes, at[1], c, T0900 + 180,
						"0-1-3", "");
	archive_binlog_part(f, "mariadb-bin.000001", other, at[2], at[4],
						T0900 + 240, "0-1-4", "");
	archive_binlog_part(f, "mariadb-bin.000001", bytes, at[4], len, T0900 + 300,
						"0-1-5", "\ncomplete-until=1795514400000");
	assert_false(plan(f, TARGET_LATEST, NULL, &err));
	assert_int_equal(err.code, BK_ERR_CONFLICT);
	assert_error_contains(&err, "differs from the other archived copy");
	problems = verify_problems(f);
	assert_non_null(strstr(problems, "differs from the other archived copy"));
	free(problems);
}

/*
 * bk restore with these options on the fixture's repository, against a
 * server that is not there: what it decides before it connects.  Its
 * messages go to f->dir/restore.err.
 */
static int
restore_to(Fixture *f, const char *target_option, const char *target)
{
	char config[600];
	char key[600];
	char *argv[] = {"bk",
					"--config",
					config,
					"--repo",
					f->location,
					"--source",
					SOURCE,
					"--key-file",
					key,
					"--mysql-socket",
					"/nonexistent/bk-test.sock",
					(char *) target_option,
					(char *) target,
					NULL};
	char messages[700];

	command_files(f, config, key, sizeof(config));
	snprintf(messages, sizeof(messages), "%s/restore.err", f->dir);
	return run_command(bk_mariadb_restore,
					   (int) (sizeof(argv) / sizeof(argv[0])) - 1, argv,
					   messages);
}

/* What the last restore_to said. */
static char *
restore_messages(Fixture *f)
{
	char path[700];
	char *text = NULL;
	size_t len = 0;
	BkError err;

	snprintf(path, sizeof(path), "%s/restore.err", f->dir);
	assert_true(bk_read_file(path, 1 << 20, &text, &len, &err));
	return text;
}

/*
 * bk restore of a MariaDB source whose newest snapshot is damaged (its
 * record cut short): it may start from the older one, but says on stderr
 * which newer one it stepped over and why.  With the older one's data
 * object gone too, no snapshot is complete: an integrity failure (4)
 * naming the newest damaged one, not "no snapshot" (1); the older one
 * named with --snapshot, too.
 */
static void
test_restore_damaged_newest(void **state)
{
	Fixture *f = *state;
	char path[700];
	char *said;

	archive_binlog_files(f, 2);
	archive_whole_snapshot(f, SNAP_OLD);
	archive_whole_snapshot(f, SNAP_NEW);
	restore_to(f, "--target", "immediate");
	said = restore_messages(f);
	assert_null(strstr(said, "warning: snapshot"));
	free(said);

	snprintf(path, sizeof(path), "%s/%s/snapshot/%s/%s", f->location, SOURCE,
			 SNAP_NEW, BK_SNAPSHOT_RECORD);
	assert_int_equal(truncate(path, 20), 0);
	restore_to(f, "--target", "immediate");
	said = restore_messages(f);
	assert_non_null(strstr(said, "warning: snapshot " SNAP_NEW));
	assert_non_null(strstr(said, "its record cannot be read"));
	assert_non_null(strstr(said, "restoring from " SNAP_OLD));
	free(said);

	snprintf(path, sizeof(path), "%s/%s/snapshot/%s/data/000001.000001",
			 f->location, SOURCE, SNAP_OLD);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(restore_to(f, "--target", "immediate"), BK_EXIT_INTEGRITY);
	said = restore_messages(f);
	assert_non_null(strstr(said, "snapshot " SNAP_NEW " is damaged"));
	free(said);
	assert_int_equal(restore_to(f, "--snapshot", SNAP_OLD), BK_EXIT_INTEGRITY);
	said = restore_messages(f);
	assert_non_null(strstr(said, "0 of its 1 data objects"));
	free(said);
}

/*
 * --target-position before the only snapshot, its file spelled short
 * (mariadb-bin.1 for mariadb-bin.000001): the snapshot was taken for one at
 * or before it (the names compared as text, not the positions), and the
 * restore went on to bring back every transaction between the target and
 * the snapshot.  Both spellings are refused the same way.
 */
static void
test_target_position_short_file_name(void **state)
{
	Fixture *f = *state;
	char meta[512];
	char target[64];
	uint64_t snap_pos =
		AFTER_FIRST_TRANSACTION + 2 * BK_BINLOG_HEADER_LEN + 13 + 8;
	int status_full;
	int status_short;
	char *said;

	archive_both_files(f);
	snprintf(meta, sizeof(meta),
			 "type=record\nobjects=0\nbinlog-file=mariadb-bin.000001\n"
			 "binlog-pos=%" PRIu64 "\ngtid=0-1-2\n"
			 "consistent-at=2026-11-24T09:01:30.000Z",
			 snap_pos);
	archive_snapshot_object(f, SNAP_NEW, "schema.json", NULL);
	archive_snapshot_object(f, SNAP_NEW, BK_SNAPSHOT_RECORD, meta);

	snprintf(target, sizeof(target), "mariadb-bin.000001:%d",
			 (int) AFTER_FIRST_TRANSACTION);
	status_full = restore_to(f, "--target-position", target);
	said = restore_messages(f);
	assert_non_null(strstr(said, "no snapshot of source"));
	free(said);
	snprintf(target, sizeof(target), "mariadb-bin.1:%d",
			 (int) AFTER_FIRST_TRANSACTION);
	status_short = restore_to(f, "--target-position", target);
	said = restore_messages(f);
	assert_non_null(strstr(said, "no snapshot of source"));
	free(said);
	assert_int_equal(status_short, status_full);
}

/*
 * --target-position in mariadb-bin.000002, with a newer snapshot taken on a
 * server whose binlog has another basename, in db2-bin.000002: by number
 * (and db2-bin before mariadb-bin by name) that snapshot was at or before
 * the target, was chosen, and the restore refused the target as in no
 * file of the source, though the older snapshot, in mariadb-bin.000001,
 * reaches it.  A position of another history is before no snapshot of
 * this one.
 */
static void
test_target_position_other_history(void **state)
{
	Fixture *f = *state;
	char meta[512];
	uint64_t snap_pos = AFTER_FIRST_TRANSACTION;
	char *said;

	archive_both_files(f);
	snprintf(meta, sizeof(meta),
			 "type=record\nobjects=0\nbinlog-file=mariadb-bin.000001\n"
			 "binlog-pos=%" PRIu64 "\ngtid=0-1-1\n"
			 "consistent-at=2026-11-24T09:00:30.000Z",
			 snap_pos);
	archive_snapshot_object(f, SNAP_OLD, "schema.json", NULL);
	archive_snapshot_object(f, SNAP_OLD, BK_SNAPSHOT_RECORD, meta);
	archive_binlog_start(f, "db2-bin.000001", true);
	archive_binlog_start(f, "db2-bin.000002", false);
	archive_snapshot_object(f, SNAP_NEW, "schema.json", NULL);
	archive_snapshot_object(f, SNAP_NEW, BK_SNAPSHOT_RECORD,
							"type=record\nobjects=0\nbinlog-file=db2-bin."
							"000002\nbinlog-pos=4\ngtid=\n"
							"consistent-at=2026-11-24T09:10:00.000Z");

	restore_to(f, "--target-position", "mariadb-bin.000002:4");
	said = restore_messages(f);
	if (strstr(said, "are named") != NULL ||
		strstr(said, "no snapshot of source") != NULL)
		fail_msg("%s", said);
	/* Planned from SNAP_OLD: it goes on to the server, which is not there. */
	assert_non_null(strstr(said, "/nonexistent/bk-test.sock"));
	free(said);
}

/*
 * A time target before the oldest snapshot, whose basename bk expire
 * recorded removing binlog of.  bk expire records that for the binlog
 * before a source's first snapshot too, having removed no snapshot: the
 * refusal said "bk expire removed the older snapshots" all the same.  And
 * a target after that snapshot's consistent point but inside the second of
 * one of its transactions (the binlog stamps whole seconds), which
 * restore.c retries from the snapshot before it, was refused as "before
 * the oldest snapshot kept", which it is not.
 */
static void
test_target_before_expired_binlog(void **state)
{
	Fixture *f = *state;
	uint8_t bytes[256];
	size_t len = BK_BINLOG_MAGIC_LEN;
	size_t snap_pos;
	char meta[512];
	BkError err;
	char *said;

	memcpy(bytes,
		   "\xfe"
		   "bin",
		   BK_BINLOG_MAGIC_LEN);
	add_transaction(bytes, &len, 1, T0900 + 10, T0900 + 10);
	snap_pos = len;
	add_transaction(bytes, &len, 2, T0900 + 60, T0900 + 60);
	archive_binlog_bytes(f, "mariadb-bin.000002", bytes, len, T0900 + 60,
						 "\ncomplete-until=1795513200000");
	snprintf(meta, sizeof(meta),
			 "type=record\nobjects=0\nbinlog-file=mariadb-bin.000002\n"
			 "binlog-pos=%zu\ngtid=0-1-1\n"
			 "consistent-at=2026-11-24T09:00:10.500Z",
			 snap_pos);
	archive_snapshot_object(f, SNAP_NEW, "schema.json", NULL);
	archive_snapshot_object(f, SNAP_NEW, BK_SNAPSHOT_RECORD, meta);
	/* bk expire --retain-full 3 with this one snapshot: binlog only. */
	assert_true(
		binlog_expired_record(f->repo, SOURCE, "mariadb-bin.000001", &err));

	assert_int_equal(restore_to(f, "--target-time", "2026-11-24 09:00:05"),
					 BK_EXIT_FAILURE);
	said = restore_messages(f);
	if (strstr(said, "older snapshots and") != NULL ||
		strstr(said,
			   "bk expire removed the binlog before it (up to"
			   " mariadb-bin.000001), and no older snapshot is kept") == NULL ||
		strstr(said, "before the oldest restorable snapshot, " SNAP_NEW) ==
			NULL)
		fail_msg("%s", said);
	free(said);

	/* After the consistent point, in the second of transaction 0-1-1. */
	assert_int_equal(restore_to(f, "--target-time", "2026-11-24 09:00:10.700"),
					 BK_EXIT_FAILURE);
	said = restore_messages(f);
	if (strstr(said, "before the oldest") != NULL ||
		strstr(said, "already holds a transaction stamped"
					 " 2026-11-24T09:00:10") == NULL ||
		strstr(said, "no snapshot before it is at or before the target;"
					 " bk expire removed the binlog before it (up to"
					 " mariadb-bin.000001)") == NULL ||
		strstr(said, "whole seconds") == NULL)
		fail_msg("%s", said);
	free(said);
	/* The next second is after the snapshot: on to the server. */
	restore_to(f, "--target-time", "2026-11-24 09:00:11");
	said = restore_messages(f);
	if (strstr(said, "/nonexistent/bk-test.sock") == NULL)
		fail_msg("%s", said);
	free(said);

	/* An older snapshot kept without its record: named, not restorable. */
	archive_snapshot_object(f, SNAP_OLD, "schema.json", NULL);
	restore_to(f, "--target-time", "2026-11-24 09:00:05");
	said = restore_messages(f);
	if (strstr(said, "and the 1 older snapshot kept is incomplete or not"
					 " carried forward") == NULL)
		fail_msg("%s", said);
	free(said);
}

/*
 * The limit the agent cuts parts within is the one bk restore loads up to,
 * and a row is never split: a part ends before a row that would take it
 * past the limit, and a row larger than the limit alone has no part.
 */
static void
test_part_limit(void **state)
{
	const uint64_t max = BK_MARIADB_PART_MAX;

	(void) state;
	assert_int_equal(RESTORE_PART_MAX, BK_MARIADB_PART_MAX);
	assert_int_equal(bk_mariadb_part_row(0, 100), BK_MARIADB_PART_ROW_APPEND);
	assert_int_equal(bk_mariadb_part_row(max - 100, 100),
					 BK_MARIADB_PART_ROW_APPEND);
	assert_int_equal(bk_mariadb_part_row(max - 100, 101),
					 BK_MARIADB_PART_ROW_NEW_PART);
	/* A part cut at 32 MiB, then a row of 230 MiB: the part ends first. */
	assert_int_equal(bk_mariadb_part_row(32u << 20, 230u << 20),
					 BK_MARIADB_PART_ROW_NEW_PART);
	assert_int_equal(bk_mariadb_part_row(0, max), BK_MARIADB_PART_ROW_APPEND);
	assert_int_equal(bk_mariadb_part_row(0, max + 1),
					 BK_MARIADB_PART_ROW_TOO_LARGE);
	assert_int_equal(bk_mariadb_part_row(10, max + 1),
					 BK_MARIADB_PART_ROW_TOO_LARGE);
}

/* ------------------------------------------- a server asking for files */

/*
 * A fake server on 127.0.0.1 that lets one client in and answers its first
 * query with a LOAD DATA LOCAL request for file (a hostile server, or
 * another local user holding the target's port): sent[] gets what the
 * client sends back, sent_len -1 if it hung up before answering.
 */
typedef struct FakeServer
{
	int listen_fd;
	int port;
	const char *file;
	char sent[256];
	int sent_len;
	pthread_t thread;
} FakeServer;

static void
fake_packet(int fd, int seq, const void *payload, size_t len)
{
	unsigned char head[4] = {len & 0xFF, (len >> 8) & 0xFF, (len >> 16) & 0xFF,
							 (unsigned char) seq};

	assert_int_equal(write(fd, head, 4), 4);
	assert_int_equal(write(fd, payload, len), (ssize_t) len);
}

/* One packet's payload into buf; its length, or -1 on EOF. */
static int
fake_read_packet(int fd, int *seq, char *buf, size_t size)
{
	unsigned char head[4];
	size_t len;
	size_t got = 0;

	while (got < 4)
	{
		ssize_t n = read(fd, head + got, 4 - got);

		if (n <= 0)
			return -1;
		got += (size_t) n;
	}
	len = head[0] | head[1] << 8 | head[2] << 16;
	*seq = head[3];
	got = 0;
	while (got < len)
	{
		char skip[512];
		size_t want = len - got;
		ssize_t n;

		/* Only the first size bytes are kept. */
		if (got < size)
			n = read(fd, buf + got, want < size - got ? want : size - got);
		else
			n = read(fd, skip, want < sizeof(skip) ? want : sizeof(skip));
		if (n <= 0)
			return -1;
		got += (size_t) n;
	}
	return (int) len;
}

static void *
fake_server_thread(void *arg)
{
	/* Protocol 10: version, id, scramble, capabilities, charset, ... */
	static const unsigned char greeting[] = "\x0a"
											"5.5.5-10.11.0-fake\0"
											"\x07\0\0\0"
											"abcdefgh\0"
											"\x8d\xa2"
											"\x21"
											"\x02\0"
											"\x0a\0"
											"\x15"
											"\0\0\0\0\0\0\0\0\0\0"
											"ijklmnopqrst\0"
											"mysql_native_password";
	static const char ok[] = "\x00\x00\x00\x02\x00\x00\x00";
	static const char refusal[] = "\xff\x28\x04#HY000fake server";
	FakeServer *fake = arg;
	char buf[4096];
	char request[256];
	int fd = accept(fake->listen_fd, NULL, NULL);
	int seq;
	int len;

	fake->sent_len = -1;
	if (fd < 0)
		return NULL;
	fake_packet(fd, 0, greeting, sizeof(greeting));
	if (fake_read_packet(fd, &seq, buf, sizeof(buf)) < 0)
		goto done;
	fake_packet(fd, seq + 1, ok, sizeof(ok) - 1);
	if (fake_read_packet(fd, &seq, buf, sizeof(buf)) < 0 || buf[0] != 3)
		goto done;
	len = snprintf(request, sizeof(request), "\xfb%s", fake->file);
	fake_packet(fd, seq + 1, request, (size_t) len);
	fake->sent_len = 0;
	while ((len = fake_read_packet(fd, &seq, buf, sizeof(buf))) > 0)
	{
		memcpy(fake->sent + fake->sent_len, buf,
			   (size_t) len < sizeof(fake->sent) - 1 - fake->sent_len
				   ? (size_t) len
				   : sizeof(fake->sent) - 1 - fake->sent_len);
		fake->sent_len += len;
	}
	if (len == 0)
		fake_packet(fd, seq + 1, refusal, sizeof(refusal) - 1);
done:
	close(fd);
	return NULL;
}

static void
fake_server_start(FakeServer *fake, const char *file)
{
	struct sockaddr_in addr = {.sin_family = AF_INET,
							   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t addr_len = sizeof(addr);

	memset(fake, 0, sizeof(*fake));
	fake->file = file;
	fake->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fake->listen_fd >= 0);
	assert_int_equal(
		bind(fake->listen_fd, (struct sockaddr *) &addr, sizeof(addr)), 0);
	assert_int_equal(listen(fake->listen_fd, 4), 0);
	assert_int_equal(
		getsockname(fake->listen_fd, (struct sockaddr *) &addr, &addr_len), 0);
	fake->port = ntohs(addr.sin_port);
	assert_int_equal(
		pthread_create(&fake->thread, NULL, fake_server_thread, fake), 0);
}

static void
fake_server_stop(FakeServer *fake)
{
	pthread_join(fake->thread, NULL);
	close(fake->listen_fd);
}

/*
 * bk restore's connections, the loading ones too, do not send a file the
 * server asks for: restore_connect sets a handler that refuses, which
 * restore_data.c puts back after each of its own LOAD DATA statements
 * (the default handler would read the file, a key file, say).
 */
static void
test_restore_connection_refuses_file_requests(void **state)
{
	char secret[PATH_MAX];
	char *tmp = test_mkdtemp();
	FILE *f;

	snprintf(secret, sizeof(secret), "%s/secret", tmp);
	f = fopen(secret, "w");
	assert_non_null(f);
	fputs("the-secret\n", f);
	fclose(f);
	for (int loading = 0; loading <= 1; loading++)
	{
		MariadbRestore r;
		FakeServer fake;
		BkError err;
		MYSQL *conn;

		memset(&r, 0, sizeof(r));
		fake_server_start(&fake, secret);
		r.host = "127.0.0.1";
		r.port = (unsigned int) fake.port;
		r.user = "bk";
		r.password = "pw";
		/* As run() settles it for loopback: no TLS. */
		r.tls.style = BK_MYSQL_TLS_OPTIONS;
		r.tls.mode = BK_MYSQL_SSL_DISABLED;
		bk_error_clear(&err);
		conn = restore_connect(&r, loading, &err);
		/* A loading connection's set-up is the query the fake answers. */
		if (loading)
			assert_null(conn);
		else
		{
			assert_non_null(conn);
			assert_int_not_equal(mysql_query(conn, "SELECT 1"), 0);
			mysql_close(conn);
		}
		fake_server_stop(&fake);
		if (fake.sent_len > 0)
			fail_msg("loading=%d: the client sent %d bytes: \"%s\"", loading,
					 fake.sent_len, fake.sent);
		assert_int_equal(fake.sent_len, 0);
	}
	test_rmdir(tmp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_part_limit),
		cmocka_unit_test_setup_teardown(test_position_past_closed_file_refused,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_gtid_domains_past_the_limit, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_gtid_target_not_one_moment, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_gtid_backwards_noted, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_work_dir_removed_whole, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_latest_refused_at_a_hole, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_other_basename_never_chained,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_gap_before_after_rotate, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_time_target_needs_complete_archive,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_temp_table_from_before_snapshot,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_failure_names_server_error,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_target_full, setup,
										teardown),
		cmocka_unit_test(test_signals_held_while_settings_changed),
		cmocka_unit_test_setup_teardown(test_replay_signal_puts_back, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_packet_sized_by_decompressed_rows,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_packet_sized_by_row_statement,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_time_target_in_complete_archive,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_time_target_older_agent, setup,
										teardown),
		cmocka_unit_test_setup_teardown(
			test_time_target_ddl_ends_after_its_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gtid_list_continuity, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_extra_first_range_cannot_vouch,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_next_file_start_lost_too, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_position_target_before_other_key,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_closing_range, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_list_other_basename_gaps, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_list_lost_closing_range, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_crashed_file_whole, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_crashed_file_lost_last_range,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_closing_range_older_agent,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_gtid_list_transaction_cut, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_of_another_history, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_target_position_other_file_name,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_passes_every_file, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_replay_client_option_files, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_get_damaged_newest, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_restore_damaged_newest, setup,
										teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_notes_snapshot_without_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_get_durable, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_get_named_unreadable,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_get_failure_is_not_absent,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_binlog_get_keeps_existing_out,
										setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_binlog_get_gone_range_is_not_absent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_store_failure_not_local,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_binlog_get_end_only_after_newest,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_binlog_get_altered_successor,
										setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_binlog_get_gone_successor_is_not_absent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_binlog_rebuild_swapped_range,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_complete, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_before_time, setup,
										teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_keeps_arriving_snapshot_with_older_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expire_record_not_in_keyring,
										setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_old_key_missing_keeps_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_keyed_record_gone_when_decrypted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expire_keeps_other_engine, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_damaged_record_is_not_complete,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_binlog_catalog_lists_again, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_expire_record_gone_when_read,
										setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_dry_run_record_gone_when_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expire_binlog_gone_when_read,
										setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_binlog_not_found_still_listed, setup, teardown),
		cmocka_unit_test(test_expire_two_processes),
		cmocka_unit_test_setup_teardown(test_expire_removes_binlog_conflicts,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_target_before_expired_binlog,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_target_position_other_history,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_target_position_short_file_name,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_replay_before_load, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_restore_own_settings, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_restore_tls_options, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_expire_binlog_by_position, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_expire_binlog_histories_apart,
										setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_binlog_history_of_newest_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_binlog_histories_same_number, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_binlog_history_still_written, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expire_cut_short_inside_a_file,
										setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_keeps_binlog_of_arriving_record, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_expire_keeps_binlog_of_arriving_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_check_parts, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_list_restorable_stops_at_hole,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_reports_conflict_copy,
										setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_snapshots_without_binlog_are_mariadb, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_makes_postgresql, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_snapshots_no_engine,
										setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_snapshot_not_carried_forward, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resent_ranges_overlap_the_chain,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_resent_range_differs, setup,
										teardown),
		cmocka_unit_test(test_restore_connection_refuses_file_requests),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
