/*
 * engine.c
 *		The MariaDB engine (engine.h): a source whose archive holds binlog
 *		ranges.  bk list shows each file's coverage and every gap; bk verify
 *		checks every range (keyless, and with the key every chunk, event
 *		position and CRC-32, and that a range sent again equals the bytes
 *		it overlaps) and reports gaps; bk expire is expire.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "binlog_catalog.h"
#include "bk_util.h"
#include "cli.h"
#include "engine.h"
#include "mariadb.h"
#include "snapshot_catalog.h"

/*
 * The first snapshot object whose metadata can be read says whether the
 * snapshots are MariaDB's (engine=mariadb, on every object the agent
 * sends).  One that holds something else (a format error) or is gone is
 * passed over; one the repository could not read (an I/O error, a store
 * that did not answer) is remembered: if no object could be read, that
 * says nothing of the engine.
 */
typedef struct SnapshotEngine
{
	const BkRepo *repo;
	const char *source;
	bool read;
	bool mariadb;
	bool failed;
	BkError failure; /* the last read that failed, when failed */
} SnapshotEngine;

static bool
read_snapshot_engine(void *arg, const BkRepoEntry *entry, BkError *err)
{
	SnapshotEngine *look = arg;
	BkObjectIdentity identity;
	BkObjectTracker *object;
	BkError unreadable;
	char engine[16];

	if (entry->is_prefix)
		return true;
	object = bk_cli_alloc(sizeof(*object));
	if (bk_repo_object_identity(look->repo, BK_REPO_ARCHIVE, look->source,
								BK_KIND_SNAPSHOT, entry->name, &identity,
								object, &unreadable))
	{
		look->read = true;
		look->mariadb = bk_meta_get(object->meta, object->meta_len, "engine",
									engine, sizeof(engine)) &&
						strcmp(engine, "mariadb") == 0;
	}
	else if (unreadable.code != BK_ERR_FORMAT &&
			 unreadable.code != BK_ERR_SEQUENCE &&
			 unreadable.code != BK_ERR_NOT_FOUND)
	{
		look->failed = true;
		look->failure = unreadable;
	}
	free(object);
	return !look->read || bk_error_set(err, BK_ERR_INTERNAL, "found");
}

/*
 * Without binlog archived (engine.c looks for it first), a source whose
 * snapshots are MariaDB's: one whose binlog never reached the archive is
 * still MariaDB's, and its snapshots are checked as such.
 */
static bool
bk_mariadb_holds(const BkRepo *repo, const char *source, bool *holds,
				 BkError *err)
{
	SnapshotEngine look = {.repo = repo, .source = source};
	BkError stop;

	*holds = false;
	if (!bk_repo_list(repo, BK_REPO_ARCHIVE, source, BK_KIND_SNAPSHOT, "", true,
					  read_snapshot_engine, &look, &stop) &&
		!look.read)
	{
		*err = stop;
		return false;
	}
	if (!look.read && look.failed)
	{
		*err = look.failure;
		bk_error_prefix(err,
						"could not tell whose snapshots source \"%s\" "
						"holds: ",
						source);
		return false;
	}
	*holds = look.mariadb;
	return true;
}

/*
 * file_number
 *		The numeric extension of a binlog file name.
 */
static unsigned long long
file_number(const char *name)
{
	const char *dot = strrchr(name, '.');

	return dot ? strtoull(dot + 1, NULL, 10) : 0;
}

/*
 * gap_before_archived
 *		Does the archive hold the file a gap-before= mark ("FILE:OFFSET")
 *		names, where the archive ended when the agent went on elsewhere?
 */
static bool
gap_before_archived(const BinlogCatalog *catalog, const char *gap_before)
{
	const char *colon = strrchr(gap_before, ':');
	char name[BK_BINLOG_FILE_NAME_MAX + 1];
	size_t len = colon ? (size_t) (colon - gap_before) : strlen(gap_before);

	if (len >= sizeof(name))
		return false;
	memcpy(name, gap_before, len);
	name[len] = '\0';
	return binlog_catalog_file(catalog, name) != NULL;
}

/*
 * history_goes_past
 *		Does the archive hold a file after file in its history (its
 *		basename)?  Files of another history are no continuation of it.
 */
static bool
history_goes_past(const BinlogCatalog *catalog, const char *file)
{
	for (int idx = 0; idx < catalog->file_count; idx++)
		if (bk_binlog_file_same_base(catalog->files[idx].name, file) &&
			bk_binlog_file_compare(catalog->files[idx].name, file) > 0)
			return true;
	return false;
}

/*
 * expired_up_to_before
 *		Did bk expire record that it removes every file of file's basename
 *		before file (binlog_catalog_expired)?
 */
static bool
expired_up_to_before(const BinlogCatalog *catalog, const char *file)
{
	const char *dot = strrchr(file, '.');
	char before[BK_BINLOG_FILE_NAME_MAX + 24];
	unsigned long long number = file_number(file);

	if (dot == NULL || number == 0)
		return false;
	snprintf(before, sizeof(before), "%.*s.%06llu", (int) (dot - file), file,
			 number - 1);
	return binlog_catalog_expired(catalog, before);
}

/*
 * describe_gaps
 *		Every hole in the archive, oldest first, to fn: a file that does not
 *		start at 0, a hole inside a file, a file older than the newest that
 *		is not complete, file numbers skipped between two files, and a file
 *		the agent marked gap-before= after a complete one.  What bk expire
 *		recorded it removes is not a hole.
 */
typedef void (*GapFn)(void *arg, const char *file, const char *what);

static int
describe_gaps(const BinlogCatalog *catalog, GapFn fn, void *arg)
{
	int gaps = 0;
	char what[512];

	for (int idx = 0; idx < catalog->file_count; idx++)
	{
		const BinlogFile *file = &catalog->files[idx];
		bool newest = idx + 1 == catalog->file_count;

		/*
		 * bk expire removes a file's ranges from its start, having recorded
		 * that it does: a run cut short inside a file leaves the rest, and
		 * the files after it up to where it was to stop.
		 */
		if (file->expired)
			continue;
		if (idx > 0 &&
			!bk_binlog_file_same_base(catalog->files[idx - 1].name, file->name))
		{
			/*
			 * The catalog puts one history after the other; one bk expire
			 * removes whole does not lead anywhere.
			 */
			snprintf(what, sizeof(what),
					 "the archive does not go on into it from %s: another"
					 " binlog basename, another server's binlog",
					 catalog->files[idx - 1].name);
			if (!catalog->files[idx - 1].expired)
			{
				fn(arg, file->name, what);
				gaps++;
			}
		}
		else if (idx > 0 &&
				 file_number(file->name) >
					 file_number(catalog->files[idx - 1].name) + 1 &&
				 !expired_up_to_before(catalog, file->name))
		{
			snprintf(what, sizeof(what), "files between %s and %s are missing",
					 catalog->files[idx - 1].name, file->name);
			fn(arg, file->name, what);
			gaps++;
		}
		/*
		 * Not said twice: the file before is not complete, or is missing,
		 * or of another basename.  The oldest file's mark is said when the
		 * archive holds the file it names, which then leads nowhere (a file
		 * of another basename, in a history the catalog puts after this
		 * one); not when bk expire removed the files before it.
		 */
		if (file->gap_before != NULL && idx == 0 &&
			gap_before_archived(catalog, file->gap_before))
		{
			snprintf(what, sizeof(what),
					 "the archive does not go on into it from where it ended:"
					 " the agent marked it gap-before=%s",
					 file->gap_before);
			fn(arg, file->name, what);
			gaps++;
		}
		else if (file->gap_before != NULL && idx > 0 &&
				 catalog->files[idx - 1].complete &&
				 bk_binlog_file_follows(catalog->files[idx - 1].name,
										file->name))
		{
			snprintf(what, sizeof(what),
					 "the archive does not go on into it from %s: the agent"
					 " marked it gap-before=%s",
					 catalog->files[idx - 1].name, file->gap_before);
			fn(arg, file->name, what);
			gaps++;
		}
		if (file->covered_end == 0)
		{
			snprintf(what, sizeof(what),
					 "bytes 0 to %" PRIu64 " are missing (its first range)",
					 file->ranges[0].start);
			fn(arg, file->name, what);
			gaps++;
		}
		else if (file->gap_end != 0)
		{
			snprintf(what, sizeof(what),
					 "bytes %" PRIu64 " to %" PRIu64 " are missing",
					 file->gap_start, file->gap_end);
			fn(arg, file->name, what);
			gaps++;
		}
		else if (file->short_end)
		{
			binlog_catalog_describe_short(file, what, sizeof(what));
			fn(arg, file->name, what);
			gaps++;
		}
		else if (!newest && !file->complete)
		{
			snprintf(what, sizeof(what),
					 "archived up to %" PRIu64 " only, and not complete",
					 file->covered_end);
			fn(arg, file->name, what);
			gaps++;
		}
	}
	return gaps;
}

static void
print_gap(void *arg, const char *file, const char *what)
{
	printf("  GAP: binlog %s: %s\n", file, what);
}

static void
json_gap(void *arg, const char *file, const char *what)
{
	json_array_append_new(
		arg, json_pack("{s:s, s:s}", "file", file, "problem", what));
}

/*
 * snapshot_json
 *		One snapshot for bk list --json, with how far the binlog carries it.
 */
static json_t *
snapshot_json(const MariadbSnapshot *snap, const BinlogCatalog *binlog)
{
	const char *until_file = NULL;
	uint64_t until_pos = 0;
	char problem[256] = "";
	bool reach = snap->complete &&
				 mariadb_snapshot_reach(snap, binlog, &until_file, &until_pos,
										problem, sizeof(problem));
	json_t *item = json_pack(
		"{s:s, s:b, s:s, s:I, s:s, s:s, s:s, s:s, s:I, s:I,"
		" s:I}",
		"id", snap->id, "complete", snap->complete, "binlog_file",
		snap->binlog_file, "binlog_pos", (json_int_t) snap->binlog_pos, "gtid",
		snap->gtid, "started", snap->started, "consistent_at",
		snap->consistent_at, "finished", snap->finished, "tables",
		(json_int_t) snap->tables, "rows", (json_int_t) snap->rows,
		"stored_bytes", (json_int_t) snap->stored_bytes);

	if (reach)
		json_object_set_new(item, "restorable_to",
							json_pack("{s:s, s:I}", "file", until_file, "pos",
									  (json_int_t) until_pos));
	else
	{
		if (!snap->complete)
			snprintf(problem, sizeof(problem), "not complete: %s",
					 snap->reason);
		json_object_set_new(item, "restorable_to", json_null());
		json_object_set_new(item, "problem", json_string(problem));
	}
	return item;
}

static bool
bk_mariadb_list(const BkRepo *repo, const char *source, BkDecoder *decoder,
				json_t *into, int64_t now_ms, BkError *err)
{
	BinlogCatalog catalog;
	MariadbSnapshotCatalog snapshots;
	const BinlogFile *newest;
	const MariadbSnapshot *oldest_restorable = NULL;
	const char *until_file = NULL;
	uint64_t until_pos = 0;

	if (!binlog_catalog_load(repo, source, &catalog, err))
		return false;
	if (!mariadb_snapshot_catalog_load(repo, source, &snapshots, err))
	{
		binlog_catalog_free(&catalog);
		return false;
	}
	/* From there to where the archive carries it, as bk restore says. */
	for (int idx = 0; idx < snapshots.count && !oldest_restorable; idx++)
	{
		char problem[256];

		if (snapshots.snapshots[idx].complete &&
			mariadb_snapshot_reach(&snapshots.snapshots[idx], &catalog,
								   &until_file, &until_pos, problem,
								   sizeof(problem)))
			oldest_restorable = &snapshots.snapshots[idx];
	}
	newest = catalog.file_count ? &catalog.files[catalog.file_count - 1] : NULL;
	if (into != NULL)
	{
		json_t *files = json_array();
		json_t *gaps = json_array();
		json_t *snaps = json_array();

		for (int idx = 0; idx < catalog.file_count; idx++)
		{
			const BinlogFile *file = &catalog.files[idx];

			json_array_append_new(
				files,
				json_pack("{s:s, s:I, s:i, s:b, s:b}", "name", file->name,
						  "archived_to", (json_int_t) file->covered_end,
						  "ranges", file->range_count, "closed", file->closed,
						  "complete", file->complete));
		}
		describe_gaps(&catalog, json_gap, gaps);
		for (int idx = 0; idx < snapshots.count; idx++)
			json_array_append_new(
				snaps, snapshot_json(&snapshots.snapshots[idx], &catalog));
		json_object_set_new(into, "binlog_files", files);
		json_object_set_new(into, "binlog_gaps", gaps);
		if (newest != NULL && newest->last != NULL)
			json_object_set_new(into, "binlog_archived_to",
								json_pack("{s:s, s:I, s:s, s:s}", "file",
										  newest->name, "pos",
										  (json_int_t) newest->covered_end,
										  "gtid", newest->last->gtid, "created",
										  newest->last->created));
		else
			json_object_set_new(into, "binlog_archived_to", json_null());
		json_object_set_new(into, "snapshots", snaps);
		if (oldest_restorable != NULL && newest != NULL)
			json_object_set_new(
				into, "restorable",
				json_pack("{s:{s:s, s:I, s:s}, s:{s:s, s:I}}", "from", "file",
						  oldest_restorable->binlog_file, "pos",
						  (json_int_t) oldest_restorable->binlog_pos,
						  "snapshot", oldest_restorable->id, "to", "file",
						  until_file, "pos", (json_int_t) until_pos));
		else
			json_object_set_new(into, "restorable", json_null());
	}
	else
	{
		printf("  engine: mariadb\n");
		if (newest == NULL)
			printf("  binlog: nothing archived\n");
		else
		{
			printf("  binlog: %d file(s), %s to %s, %" PRIu64
				   " range(s), %" PRIu64 " bytes stored\n",
				   catalog.file_count, catalog.files[0].name, newest->name,
				   catalog.objects, catalog.stored_bytes);
			if (newest->last != NULL)
				printf("  archived to %s:%" PRIu64 " (GTID %s), sent %s\n",
					   newest->name, newest->covered_end,
					   newest->last->gtid[0] ? newest->last->gtid : "none",
					   newest->last->created[0] ? newest->last->created : "?");
			if (describe_gaps(&catalog, print_gap, NULL) == 0)
				printf("  no gap\n");
		}
		if (snapshots.count == 0)
			printf("  snapshots: none\n");
		for (int idx = 0; idx < snapshots.count; idx++)
		{
			const MariadbSnapshot *snap = &snapshots.snapshots[idx];

			if (snap->complete)
				printf("  snapshot %s at %s:%" PRIu64 " (GTID %s), %" PRIu64
					   " tables, %" PRIu64 " rows, finished %s\n",
					   snap->id, snap->binlog_file, snap->binlog_pos,
					   snap->gtid[0] ? snap->gtid : "none", snap->tables,
					   snap->rows, snap->finished);
			else
				printf("  snapshot %s: not complete (%s)\n", snap->id,
					   snap->reason);
		}
		if (oldest_restorable != NULL && newest != NULL)
			printf("  restorable: from %s:%" PRIu64
				   " (snapshot %s) to %s:%" PRIu64 "\n",
				   oldest_restorable->binlog_file,
				   oldest_restorable->binlog_pos, oldest_restorable->id,
				   until_file, until_pos);
		else
			printf("  restorable: nothing (no complete snapshot the archived"
				   " binlog carries forward)\n");
	}
	mariadb_snapshot_catalog_free(&snapshots);
	binlog_catalog_free(&catalog);
	return true;
}

typedef struct VerifyWalk
{
	BkVerifier *verifier;
	const BkRepo *repo;
	const char *source;
	int kind;
} VerifyWalk;

/*
 * A copy of an archived object that arrived with different content, kept
 * in the conflicts area: bk restore reads the archived copy, which may be
 * the other server's.  A copy whose archived object is gone (bk expire
 * removed the range) stands for nothing a restore reads.
 */
static bool
report_conflict(void *arg, const BkRepoEntry *entry, BkError *err)
{
	VerifyWalk *walk = arg;
	char name[BK_OBJECT_NAME_MAX + 1];
	char where[4096];
	char *dot;
	BkRepoStat stat;

	if (entry->is_prefix)
		return true;
	bk_strlcpy(name, entry->name, sizeof(name));
	dot = strrchr(name, '.');
	if (dot != NULL)
		*dot = '\0';
	if (!bk_repo_stat(walk->repo, BK_REPO_ARCHIVE, walk->source, walk->kind,
					  name, &stat, err))
		return false;
	if (!stat.exists)
		return true;
	bk_repo_describe(walk->repo, BK_REPO_CONFLICTS, walk->source, walk->kind,
					 entry->name, where, sizeof(where));
	bk_verify_problem(walk->verifier, entry->name,
					  "a second copy with different content is kept at "
					  "\"%s\" (two servers archive under one source id, or "
					  "the object was sent again with other content); bk "
					  "restore reads the archived copy: keep the copy of the "
					  "server whose history you restore, and move the other "
					  "out of the repository",
					  where);
	return true;
}

static void
verify_gap(void *arg, const char *file, const char *what)
{
	bk_verify_problem(arg, file, "binlog gap: %s", what);
}

/*
 * verify_snapshots
 *		With the key, each complete snapshot decrypted and checked against
 *		its record, every table even after one fails; then, keyless, every
 *		object nothing decrypted (all of them without the key).  Each object
 *		is read once: decrypting checks all the keyless check does (the
 *		verifier's decoder checks every frame's CRC too).
 */
typedef struct SnapshotObjects
{
	BkVerifier *verifier;
	const BkRepo *repo;
	const char *source;
	BkVerifyListing listing;
} SnapshotObjects;

static void
snapshot_object_read(void *arg, const char *object)
{
	SnapshotObjects *objects = arg;

	bk_verify_mark_read(&objects->listing, object);
}

static void
snapshot_table_failed(void *arg, const char *object, const BkError *err)
{
	SnapshotObjects *objects = arg;

	bk_verify_read_failed(objects->verifier, objects->repo, BK_REPO_ARCHIVE,
						  objects->source, BK_KIND_SNAPSHOT, object, err);
}

/* A snapshot's tables on bk verify's threads, each with its decoder. */
typedef struct TablesRun
{
	MariadbTableFn fn;
	void *ctx;
} TablesRun;

static void
run_table(void *arg, BkVerifyWorker *worker, size_t index)
{
	TablesRun *run = arg;

	run->fn(run->ctx, worker->decoder, index);
}

static void
snapshot_run_tables(void *arg, size_t count, MariadbTableFn fn, void *ctx)
{
	SnapshotObjects *objects = arg;
	TablesRun run = {fn, ctx};

	/* Without the workers' decoders (a verifier of the unit tests): here. */
	if (objects->verifier->workers[0].decoder == NULL)
	{
		for (size_t index = 0; index < count; index++)
			fn(ctx, objects->verifier->decoder, index);
		return;
	}
	bk_verify_parallel(objects->verifier, count, run_table, &run);
}

static bool
verify_snapshots(BkVerifier *verifier, const BkRepo *repo, const char *source,
				 const BinlogCatalog *binlog, BkError *err)
{
	MariadbSnapshotCatalog snapshots;
	SnapshotObjects objects = {
		.verifier = verifier, .repo = repo, .source = source};
	MariadbCheckHooks hooks = {snapshot_object_read, snapshot_table_failed,
							   snapshot_run_tables, &objects};
	bool ok = false;

	if (!bk_verify_list_objects(&objects.listing, repo, source,
								BK_KIND_SNAPSHOT, "", true, err))
		goto done;
	if (!mariadb_snapshot_catalog_load(repo, source, &snapshots, err))
		goto done;
	for (int idx = 0; idx < snapshots.count; idx++)
	{
		const MariadbSnapshot *snap = &snapshots.snapshots[idx];
		BkError problem;
		uint64_t tables = 0;

		/* An object that could not be read: the run stops with that. */
		if (bk_verify_local_failed(verifier, err))
		{
			mariadb_snapshot_catalog_free(&snapshots);
			goto done;
		}
		/* A record without all its objects: bk restore will not use it. */
		if (snap->has_record && !snap->complete)
			bk_verify_problem(verifier, snap->id, "snapshot not complete: %s",
							  snap->reason);
		/*
		 * No record: cancelled, failed, still arriving, or its record
		 * removed.  Not a problem by itself, but said, as for PostgreSQL:
		 * its objects otherwise pass unremarked, and bk restore passes
		 * over it.
		 */
		else if (!snap->has_record && !snap->record_unreadable)
			bk_verify_note(verifier, snap->id,
						   "snapshot %s is not complete (%s); not a problem"
						   " unless it should have finished",
						   snap->id, snap->reason);
		/*
		 * The archive goes on past its binlog file, yet not from the
		 * snapshot's position: bk restore cannot carry it forward.  (Its
		 * file not archived that far yet is the end of the archive.)
		 */
		if (snap->complete && snap->binlog_file[0] != '\0' &&
			history_goes_past(binlog, snap->binlog_file))
		{
			const char *until_file;
			uint64_t until_pos;
			char reach[256];

			if (!mariadb_snapshot_reach(snap, binlog, &until_file, &until_pos,
										reach, sizeof(reach)))
				bk_verify_problem(verifier, snap->id,
								  "snapshot cannot be carried forward by the "
								  "archived binlog: %s",
								  reach);
		}
		if (!snap->complete || verifier->decoder == NULL)
			continue;
		bk_error_clear(&problem);
		/* Tables that fail are reported by the hook; this is the rest. */
		if (!mariadb_snapshot_check(repo, source, verifier->decoder, snap->id,
									NULL, &hooks, &tables, &problem))
			bk_verify_object_failed(verifier, snap->id, &problem);
		verifier->snapshot_files += tables;
	}
	mariadb_snapshot_catalog_free(&snapshots);
	verifier->objects += objects.listing.count;
	bk_verify_unread_objects(verifier, repo, source, &objects.listing);
	ok = true;
done:
	bk_verify_listing_free(&objects.listing);
	return ok;
}

/*
 * A file's GTID state as verify walks its chain (BkBinlogEventFn): its
 * GTID list, followed with every transaction that ends in it, as bk
 * restore follows it.  Whole transactions: one the archive holds only the
 * start of is not reached (a replay would stop inside it).
 */
typedef struct FileGtids
{
	BkVerifier *verifier;
	const BinlogFile *file;
	const BinlogFile *previous;     /* the archive goes on from it, or NULL */
	const BkGtidList *previous_end; /* what previous reached */
	const int *checksum_alg;
	BkBinlogTxn txn;
	BkGtidList reached;
	bool known; /* its GTID list was met */
	/* Events before it were followed in the range before (sent again). */
	uint64_t from;
} FileGtids;

static bool
follow_file_gtids(void *arg, uint64_t offset, const BkBinlogEventHeader *header,
				  const uint8_t *event, BkError *err)
{
	FileGtids *walk = arg;
	char differs[512];
	bool ended;

	if (offset < walk->from)
		return true;

	if (header->type == BK_BINLOG_GTID_LIST_EVENT && !walk->known)
	{
		if (!bk_gtid_list_read(&walk->reached, event, header->length, err))
			return false;
		walk->known = true;
		/*
		 * The server's account of everything logged before the file: a
		 * file before it that lost its last range (and its ROTATE) still
		 * passes for complete, as after a crash, when this one follows.
		 */
		if (walk->previous_end != NULL &&
			!bk_gtid_list_follows(walk->previous_end, &walk->reached, differs,
								  sizeof(differs)))
			bk_verify_problem(walk->verifier, walk->file->name,
							  "binlog GTID discontinuity: its GTID list says"
							  " the server had logged %s before it, which the"
							  " archive of %s, up to %" PRIu64 ", does not"
							  " reach: transactions between them are missing",
							  differs, walk->previous->name,
							  walk->previous->covered_end);
		return true;
	}
	if (!bk_binlog_txn_feed(&walk->txn, event, header->length,
							*walk->checksum_alg, &ended, err))
		return bk_error_prefix(err, "binlog \"%s\" at %" PRIu64 ": ",
							   walk->file->name, offset);
	if (ended && walk->known)
		return bk_gtid_list_note(&walk->reached, &walk->txn.gtid, err);
	return true;
}

/*
 * A range off the file's chain that overlaps it, or one the chain goes on
 * with past its start: sent again.
 */
static bool
has_resent_range(const BinlogFile *file)
{
	for (int idx = 0; idx < file->range_count; idx++)
		if ((!file->ranges[idx].in_chain &&
			 file->ranges[idx].start < file->covered_end) ||
			(file->ranges[idx].in_chain &&
			 file->ranges[idx].chain_start > file->ranges[idx].start))
			return true;
	return false;
}

/*
 * Rebuild file as bk restore does, in a scratch file: a range sent again
 * must equal the bytes of the chain it overlaps, or the restore fails
 * (two histories of the file: a server crash with sync_binlog=0 rewrote
 * its tail).  False (err set) only when the scratch file fails (this
 * host's failure, not the archive's).
 */
static bool
check_resent_ranges(BkVerifier *verifier, const BkRepo *repo,
					const char *source, const BinlogFile *file, BkError *err)
{
	uint64_t events;
	BkError problem;
	bool scratch_failed;
	int fd = bk_cli_open_scratch();

	if (fd < 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not create a temporary file in %s: %s",
							bk_cli_scratch_dir(), strerror(errno));
	bk_error_clear(&problem);
	if (!mariadb_binlog_rebuild(repo, source, verifier->decoder, file, fd,
								"(temporary file)", &events, NULL, NULL, NULL,
								&scratch_failed, &problem))
	{
		if (scratch_failed)
		{
			close(fd);
			*err = problem;
			return bk_error_prefix(err,
								   "could not rebuild binlog \"%s\" "
								   "to check it (TMPDIR=%s): ",
								   file->name, bk_cli_scratch_dir());
		}
		bk_verify_object_failed(verifier, file->name, &problem);
	}
	close(fd);
	return true;
}

static bool
bk_mariadb_verify(BkVerifier *verifier, const BkRepo *repo, const char *source,
				  BkError *err)
{
	BinlogCatalog catalog;
	FileGtids *walk = bk_cli_alloc_zero(1, sizeof(FileGtids));
	BkGtidList *previous_end = bk_cli_alloc_zero(1, sizeof(BkGtidList));
	bool previous_known = false;
	bool ok;

	if (!binlog_catalog_load(repo, source, &catalog, err))
	{
		free(walk);
		free(previous_end);
		return false;
	}
	for (int fileIdx = 0; fileIdx < catalog.file_count; fileIdx++)
	{
		const BinlogFile *file = &catalog.files[fileIdx];
		const BinlogFile *previous =
			fileIdx > 0 ? &catalog.files[fileIdx - 1] : NULL;
		int checksum_alg = BK_BINLOG_CHECKSUM_OFF;
		bool followed = file->gap_end == 0;
		uint64_t problems_before = verifier->problems;

		/* An object that could not be read: the run stops with that. */
		if (bk_verify_local_failed(verifier, err))
		{
			binlog_catalog_free(&catalog);
			free(walk);
			free(previous_end);
			return false;
		}
		memset(walk, 0, sizeof(*walk));
		walk->verifier = verifier;
		walk->file = file;
		walk->checksum_alg = &checksum_alg;
		/* Where the archive does not go on, a gap is reported instead. */
		if (previous_known && previous->complete && file->gap_before == NULL &&
			bk_binlog_file_follows(previous->name, file->name))
		{
			walk->previous = previous;
			walk->previous_end = previous_end;
		}
		for (int idx = 0;
			 idx < file->range_count && !bk_verify_local_failed(verifier, NULL);
			 idx++)
		{
			const BinlogRange *range = &file->ranges[idx];
			BkObjectTracker object;
			BkError problem;

			bk_error_clear(&problem);
			verifier->objects++;
			/*
			 * With the key, decrypting it below checks all this does (the
			 * verifier's decoders check every frame's CRC as well): one read.
			 */
			if (verifier->decoder == NULL &&
				!bk_repo_check_object(repo, BK_REPO_ARCHIVE, source,
									  BK_KIND_BINLOG, range->name, range->name,
									  &object, &problem))
			{
				bk_verify_read_failed(verifier, repo, BK_REPO_ARCHIVE, source,
									  BK_KIND_BINLOG, range->name, &problem);
				followed = false;
				continue;
			}
			if (verifier->decoder != NULL)
			{
				uint8_t *data = NULL;
				size_t len = 0;
				uint64_t want = range->end - range->start;

				walk->from = range->chain_start;
				if (!bk_repo_decrypt_to_memory(repo, BK_REPO_ARCHIVE, source,
											   BK_KIND_BINLOG, range->name,
											   verifier->decoder, (size_t) want,
											   &data, &len, &problem))
					bk_verify_read_failed(verifier, repo, BK_REPO_ARCHIVE,
										  source, BK_KIND_BINLOG, range->name,
										  &problem);
				else if (len != want)
					bk_verify_problem(verifier, range->name,
									  "holds %zu bytes, its name says %" PRIu64,
									  len, want);
				else if (bk_binlog_walk(
							 file->name, range->start, data, len, &checksum_alg,
							 range->in_chain ? follow_file_gtids : NULL, walk,
							 &problem))
				{
					free(data);
					continue;
				}
				else
					bk_verify_problem(verifier, range->name, "%s",
									  problem.message);
				free(data);
				/*
				 * Where the walk stopped is unknown: the next range starts
				 * outside any group, or a group left open here would be
				 * reported again at its first GTID.
				 */
				if (range->in_chain)
				{
					followed = false;
					walk->txn.in_group = false;
				}
			}
		}
		previous_known = verifier->decoder != NULL && followed && walk->known;
		*previous_end = walk->reached;
		/* Each range checked alone: now the ranges sent again. */
		if (verifier->decoder != NULL &&
			verifier->problems == problems_before && has_resent_range(file) &&
			!bk_verify_local_failed(verifier, NULL) &&
			!check_resent_ranges(verifier, repo, source, file, err))
		{
			binlog_catalog_free(&catalog);
			free(walk);
			free(previous_end);
			return false;
		}
	}
	free(walk);
	free(previous_end);
	/* An object that could not be read: the run stops with that. */
	if (bk_verify_local_failed(verifier, err))
	{
		binlog_catalog_free(&catalog);
		return false;
	}
	describe_gaps(&catalog, verify_gap, verifier);
	for (int kindIdx = 0; kindIdx < 2; kindIdx++)
	{
		VerifyWalk conflicts = {verifier, repo, source,
								kindIdx == 0 ? BK_KIND_BINLOG
											 : BK_KIND_SNAPSHOT};

		if (!bk_repo_list(repo, BK_REPO_CONFLICTS, source, conflicts.kind, "",
						  true, report_conflict, &conflicts, err))
		{
			binlog_catalog_free(&catalog);
			return false;
		}
	}
	ok = verify_snapshots(verifier, repo, source, &catalog, err);
	binlog_catalog_free(&catalog);
	return ok;
}

const BkEngine bk_engine_mariadb = {
	.name = "mariadb",
	.log_kind = BK_KIND_BINLOG,
	.holds = bk_mariadb_holds,
	.list = bk_mariadb_list,
	.verify = bk_mariadb_verify,
	.expire = bk_mariadb_expire,
};
