/*
 * cmd_snapshot_get.c
 *		bk snapshot-get: write one MariaDB snapshot, decrypted and verified,
 *		into a directory; and the same checks for bk verify.
 *
 * A snapshot's record (snapshot.json) names every table with its rows,
 * bytes, parts and SHA-256 (docs/mariadb-snapshot-format.md).  Each table's
 * parts are decrypted in order (every chunk authenticated), their bytes
 * hashed and their lines counted, and both must match the record: a part
 * missing, added, or changed is found.  The directory receives
 * schema.json, snapshot.json and data/<index>.tsv per table, each written
 * atomically, ready for LOAD DATA INFILE ... CHARACTER SET binary.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "bk_crypto.h"
#include "bk_mariadb_part.h"
#include "bk_snapshot_format.h"
#include "bk_util.h"
#include "commands.h"
#include "mariadb.h"
#include "snapshot_catalog.h"

static const char snapshot_get_help[] =
	"Usage: bk snapshot-get --source S [--snapshot ID] [OPTIONS] DIR\n"
	"\n"
	"Writes a MariaDB snapshot of source S (the newest complete one, or ID)\n"
	"into the new directory DIR, decrypted and verified against its record:\n"
	"schema.json (every definition), snapshot.json (binlog coordinates,\n"
	"rows and SHA-256 per table) and data/NNNNNN.tsv per table in LOAD DATA\n"
	"form (FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\', NULL as \\N,\n"
	"CHARACTER SET binary).  Needs the private key.\n"
	"\n"
	"Without --snapshot, each newer snapshot stepped over is named on stderr\n"
	"with why.\n"
	"\n"
	"Exit status: 0 written; 4 a part is missing or fails a check, or every\n"
	"snapshot with a record is damaged; 1 no such snapshot (and nothing\n"
	"else); 2 usage (DIR exists already); 3\n"
	"configuration or key; 5 the repository unreachable, DIR could not be\n"
	"written, or another failure (the message names it): fix it and try\n"
	"again.\n"
	"\n"
	"  --source S        the source id (the agent's source_id; required)\n"
	"  --snapshot ID     this snapshot instead of the newest complete one\n"
	"                    (bk list shows them)\n" BK_COMMON_HELP;

typedef struct PartSink
{
	BkSha256 *sha;
	uint64_t bytes;
	uint64_t lines;
	int fd; /* -1: check only */
	const char *path;
} PartSink;

static bool
part_sink(void *arg, const uint8_t *data, size_t len, BkError *err)
{
	PartSink *sink = arg;

	if (!bk_sha256_update(sink->sha, data, len, err))
		return false;
	for (size_t idx = 0; idx < len; idx++)
		sink->lines += data[idx] == '\n';
	if (sink->fd >= 0 && !bk_write_all(sink->fd, data, len, sink->path, err))
		return false;
	sink->bytes += len;
	return true;
}

/*
 * write_memory
 *		A small decrypted object into dir/name, durably.
 */
static bool
write_memory(const char *dir, const char *name, const uint8_t *data, size_t len,
			 BkError *err)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return bk_write_file_durable(path, data, len, 0600, err);
}

/*
 * check_table
 *		Decrypt every part of one table, in order, against the record.
 */
static bool
check_table(const BkRepo *repo, const char *source, BkDecoder *decoder,
			const char *id, json_t *table, const char *out_dir,
			const MariadbCheckHooks *hooks, char *failed_object, BkError *err)
{
	int index = (int) json_integer_value(json_object_get(table, "index"));
	int parts = (int) json_integer_value(json_object_get(table, "parts"));
	uint64_t rows =
		(uint64_t) json_integer_value(json_object_get(table, "rows"));
	uint64_t bytes =
		(uint64_t) json_integer_value(json_object_get(table, "bytes"));
	const char *want_sha = json_string_value(json_object_get(table, "sha256"));
	const char *db = json_string_value(json_object_get(table, "database"));
	const char *name = json_string_value(json_object_get(table, "name"));
	PartSink sink = {0};
	uint8_t digest[BK_SHA256_LEN];
	char hex[2 * BK_SHA256_LEN + 1];
	char path[4096];
	bool ok = true;

	/* What a failure is reported under: the record, the table's first
	 * part, or the part that failed. */
	snprintf(failed_object, BK_OBJECT_NAME_MAX + 1, "%s/%s", id,
			 BK_SNAPSHOT_RECORD);
	if (index <= 0 || parts < 0 || want_sha == NULL || db == NULL ||
		name == NULL)
		return bk_error_set(err, BK_ERR_FORMAT,
							"snapshot %s: a table entry of its record is"
							" malformed",
							id);
	if (parts > 0)
		snprintf(failed_object, BK_OBJECT_NAME_MAX + 1, "%s/data/%06d.%06d", id,
				 index, 1);
	else
		snprintf(failed_object, BK_OBJECT_NAME_MAX + 1, "%s/data/%06d", id,
				 index);
	sink.sha = bk_sha256_new(err);
	if (sink.sha == NULL)
		return false;
	sink.fd = -1;
	if (out_dir != NULL)
	{
		snprintf(path, sizeof(path), "%s/data/%06d.tsv", out_dir, index);
		sink.path = path;
		sink.fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (sink.fd < 0)
		{
			bk_sha256_free(sink.sha);
			return bk_error_set(err, BK_ERR_IO, "could not create \"%s\": %s",
								path, strerror(errno));
		}
	}
	for (int part = 1; ok && part <= parts; part++)
	{
		char object[BK_OBJECT_NAME_MAX + 1];
		uint64_t before = sink.bytes;

		snprintf(object, sizeof(object), "%s/data/%06d.%06d", id, index, part);
		if (hooks != NULL && hooks->object_read != NULL)
			hooks->object_read(hooks->arg, object);
		ok = bk_repo_decrypt(repo, BK_REPO_ARCHIVE, source, BK_KIND_SNAPSHOT,
							 object, decoder, part_sink, &sink, err);
		/*
		 * Sound, yet larger than bk restore loads: a check says so (the
		 * agent cuts no such part since it checks; older ones could, for
		 * a row near the limit).  Written out, the table is usable.
		 */
		if (ok && out_dir == NULL && sink.bytes - before > BK_MARIADB_PART_MAX)
			ok = bk_error_set(err, BK_ERR_FORMAT,
							  "snapshot %s: part %d of table `%s`.`%s` holds"
							  " %" PRIu64 " bytes, more than bk restore loads"
							  " (%" PRIu64 "): the table cannot be restored"
							  " from this snapshot",
							  id, part, db, name, sink.bytes - before,
							  BK_MARIADB_PART_MAX);
		if (!ok)
			bk_strlcpy(failed_object, object, BK_OBJECT_NAME_MAX + 1);
		if (!ok && err->code == BK_ERR_NOT_FOUND)
			bk_error_set(err, BK_ERR_SEQUENCE,
						 "snapshot %s: part %d of %d of table `%s`.`%s` (%s)"
						 " is missing",
						 id, part, parts, db, name, object);
	}
	if (ok)
		ok = bk_sha256_final(sink.sha, digest, err);
	bk_sha256_free(sink.sha);
	if (sink.fd >= 0)
	{
		if (ok && fsync(sink.fd) != 0)
			ok = bk_error_set(err, BK_ERR_IO, "could not fsync \"%s\": %s",
							  path, strerror(errno));
		close(sink.fd);
	}
	if (!ok)
		return false;
	bk_hex_encode(digest, BK_SHA256_LEN, hex);
	if (sink.bytes != bytes || sink.lines != rows || strcmp(hex, want_sha) != 0)
		return bk_error_set(err, BK_ERR_FORMAT,
							"snapshot %s: table `%s`.`%s` rebuilt with %" PRIu64
							" rows, %" PRIu64 " bytes and SHA-256 %.16s...;"
							" its record says %" PRIu64 ", %" PRIu64 " and"
							" %.16s...",
							id, db, name, sink.lines, sink.bytes, hex, rows,
							bytes, want_sha);
	return true;
}

/* The tables of one snapshot, checked by MariadbCheckHooks.run_tables. */
typedef struct TablesTask
{
	const BkRepo *repo;
	const char *source;
	const char *id;
	json_t *tables; /* only read, from every thread */
	const MariadbCheckHooks *hooks;
	atomic_uint_fast64_t good;
} TablesTask;

static void
check_table_task(void *ctx, BkDecoder *decoder, size_t index)
{
	TablesTask *task = ctx;
	char failed_object[BK_OBJECT_NAME_MAX + 1];
	BkError err;

	bk_error_clear(&err);
	if (check_table(task->repo, task->source, decoder, task->id,
					json_array_get(task->tables, index), NULL, task->hooks,
					failed_object, &err))
		atomic_fetch_add(&task->good, 1);
	else
		task->hooks->table_failed(task->hooks->arg, failed_object, &err);
}

/*
 * mariadb_snapshot_check
 *		Decrypt and check a whole snapshot; with out_dir, write it there.
 */
bool
mariadb_snapshot_check(const BkRepo *repo, const char *source,
					   BkDecoder *decoder, const char *id, const char *out_dir,
					   const MariadbCheckHooks *hooks, uint64_t *tables_checked,
					   BkError *err)
{
	char object[BK_OBJECT_NAME_MAX + 1];
	uint8_t *record_text = NULL;
	uint8_t *schema_text = NULL;
	size_t record_len = 0, schema_len = 0;
	json_t *record = NULL;
	json_error_t jerr;
	size_t idx;
	json_t *table;
	bool made_dir = false;
	bool ok = false;

	snprintf(object, sizeof(object), "%s/%s", id, BK_SNAPSHOT_RECORD);
	if (hooks != NULL && hooks->object_read != NULL)
		hooks->object_read(hooks->arg, object);
	if (!bk_repo_decrypt_to_memory(
			repo, BK_REPO_ARCHIVE, source, BK_KIND_SNAPSHOT, object, decoder,
			64 * 1024 * 1024, &record_text, &record_len, err))
		return bk_error_prefix(err, "snapshot %s: ", id);
	snprintf(object, sizeof(object), "%s/schema.json", id);
	if (hooks != NULL && hooks->object_read != NULL)
		hooks->object_read(hooks->arg, object);
	if (!bk_repo_decrypt_to_memory(
			repo, BK_REPO_ARCHIVE, source, BK_KIND_SNAPSHOT, object, decoder,
			512 * 1024 * 1024, &schema_text, &schema_len, err))
	{
		bk_error_prefix(err, "snapshot %s: ", id);
		goto done;
	}
	record = json_loadb((const char *) record_text, record_len, 0, &jerr);
	if (record == NULL || !json_is_array(json_object_get(record, "tables")) ||
		strcmp(json_string_value(json_object_get(record, "snapshot_id"))
				   ? json_string_value(json_object_get(record, "snapshot_id"))
				   : "",
			   id) != 0)
	{
		bk_error_set(err, BK_ERR_FORMAT,
					 "snapshot %s: its record is not a MariaDB snapshot record"
					 " of this snapshot",
					 id);
		goto done;
	}
	if (out_dir != NULL)
	{
		char data_dir[4096];

		snprintf(data_dir, sizeof(data_dir), "%s/data", out_dir);
		if (mkdir(out_dir, 0700) != 0)
		{
			bool exists = errno == EEXIST;

			/* DIR there already is a bad argument (exit 2), not an
			 * unreachable repository (exit 5). */
			bk_error_set(err, exists ? BK_ERR_USAGE : BK_ERR_IO,
						 "could not create \"%s\": %s", out_dir,
						 strerror(errno));
			/* Only then: for a missing parent or a read-only file system
			 * it sent the user after the wrong problem. */
			if (exists)
				bk_error_hint(err, "DIR must not exist yet.");
			goto done;
		}
		made_dir = true;
		if (mkdir(data_dir, 0700) != 0 ||
			!write_memory(out_dir, "schema.json", schema_text, schema_len,
						  err) ||
			!write_memory(out_dir, BK_SNAPSHOT_RECORD, record_text, record_len,
						  err))
		{
			if (err->code == BK_OK)
				bk_error_set(err, BK_ERR_IO, "could not create \"%s\": %s",
							 data_dir, strerror(errno));
			goto done;
		}
	}
	if (hooks != NULL && hooks->run_tables != NULL &&
		hooks->table_failed != NULL && out_dir == NULL)
	{
		TablesTask task = {.repo = repo,
						   .source = source,
						   .id = id,
						   .tables = json_object_get(record, "tables"),
						   .hooks = hooks};

		atomic_init(&task.good, 0);
		hooks->run_tables(hooks->arg, json_array_size(task.tables),
						  check_table_task, &task);
		if (tables_checked)
			*tables_checked += atomic_load(&task.good);
		ok = true;
		goto done;
	}
	json_array_foreach(json_object_get(record, "tables"), idx, table)
	{
		char failed_object[BK_OBJECT_NAME_MAX + 1];

		if (check_table(repo, source, decoder, id, table, out_dir, hooks,
						failed_object, err))
		{
			if (tables_checked)
				(*tables_checked)++;
			continue;
		}
		/* A directory being written stops at its first failure. */
		if (hooks == NULL || hooks->table_failed == NULL || out_dir != NULL)
			goto done;
		hooks->table_failed(hooks->arg, failed_object, err);
		bk_error_clear(err);
	}
	/*
	 * Durable once said written: each data file's name is in DIR/data,
	 * DIR/data's in DIR, and DIR's in the directory that holds it.
	 */
	if (out_dir != NULL)
	{
		char data_dir[4096];
		char parent[4096];

		snprintf(data_dir, sizeof(data_dir), "%s/data", out_dir);
		bk_dir_of(out_dir, parent, sizeof(parent));
		if (!bk_fsync_dir(data_dir, err) || !bk_fsync_dir(out_dir, err) ||
			!bk_fsync_dir(parent, err))
			goto done;
	}
	ok = true;
done:
	/*
	 * DIR half written holds a snapshot.json that says the snapshot is all
	 * there, and would stop the retry the failure asks for (DIR must be
	 * new): it goes.  It is the command's own (made above, new).
	 */
	if (!ok && made_dir)
	{
		BkError rm_err;

		if (!bk_remove_tree(out_dir, &rm_err))
			bk_error_hint(err,
						  "\"%s\" is left half written (%s): remove it"
						  " before trying again.",
						  out_dir, rm_err.message);
	}
	json_decref(record);
	free(record_text);
	free(schema_text);
	return ok;
}

static const struct option snapshot_get_options[] = {
	{"source", required_argument, NULL, 's'},
	{"snapshot", required_argument, NULL, 'i'},
	BK_COMMON_LONG_OPTIONS,
	{NULL, 0, NULL, 0}};

typedef struct SnapshotGetArgs
{
	const char *source;
	const char *snapshot;
} SnapshotGetArgs;

static int
snapshot_get_option(void *arg, int code, const char *value)
{
	SnapshotGetArgs *args = arg;

	if (code == 's')
		args->source = value;
	else
		args->snapshot = value;
	return BK_EXIT_OK;
}

/*
 * find_named
 *		The index of snapshot id, complete; else -1 and err.
 */
static int
find_named(const MariadbSnapshotCatalog *catalog, const char *source,
		   const char *id, BkError *err)
{
	for (int idx = catalog->count - 1; idx >= 0; idx--)
	{
		const MariadbSnapshot *snap = &catalog->snapshots[idx];

		if (strcmp(snap->id, id) != 0)
			continue;
		if (snap->complete)
			return idx;
		/*
		 * Its record unread because the repository failed (exit 5, try
		 * again) says nothing of the snapshot; anything else that keeps
		 * it from being complete is an integrity failure (exit 4).
		 */
		bk_error_set(err,
					 snap->record_unreadable && snap->record_error != BK_OK &&
							 snap->record_error != BK_ERR_NOT_FOUND
						 ? snap->record_error
						 : BK_ERR_SEQUENCE,
					 "snapshot %s of source \"%s\" is not complete: %s",
					 snap->id, source, snap->reason);
		return -1;
	}
	bk_error_set(err, BK_ERR_NOT_FOUND, "source \"%s\" has no snapshot %s",
				 source, id);
	bk_error_hint(err, "\"bk list --source %s\" shows its snapshots.", source);
	return -1;
}

/*
 * choose_newest
 *		The index of the newest complete snapshot; else -1 and err.
 *
 * Exit 1 must mean only that the archive holds no snapshot: when every
 * one is damaged, that is an integrity failure (exit 4) naming the newest
 * damaged one, and a record the repository failed to read (exit 5) may
 * be the newest complete snapshot's, so it is not stepped over to an
 * older one.
 */
static int
choose_newest(const MariadbSnapshotCatalog *catalog, const char *source,
			  BkError *err)
{
	const MariadbSnapshot *damaged = NULL;

	for (int idx = catalog->count - 1; idx >= 0; idx--)
	{
		const MariadbSnapshot *snap = &catalog->snapshots[idx];

		if (snap->complete)
			return idx;
		if (snap->record_unreadable && snap->record_error != BK_OK &&
			snap->record_error != BK_ERR_NOT_FOUND)
		{
			bk_error_set(err, snap->record_error,
						 "snapshot %s of source \"%s\": %s", snap->id, source,
						 snap->reason);
			bk_error_hint(err,
						  "The repository failed to read its record, which "
						  "says nothing of the snapshot: fix what the "
						  "message names and run bk snapshot-get again, or "
						  "name an older snapshot with --snapshot.");
			return -1;
		}
		if (damaged == NULL && mariadb_snapshot_damaged(snap))
			damaged = snap;
	}
	if (damaged != NULL)
	{
		bk_error_set(err, BK_ERR_SEQUENCE,
					 "source \"%s\" has no complete snapshot: snapshot %s,"
					 " the newest with a record, is damaged: %s",
					 source, damaged->id, damaged->reason);
		bk_error_hint(err,
					  "\"bk verify --source %s\" checks every object. A"
					  " snapshot whose objects are still arriving is"
					  " complete in a moment; otherwise take a new snapshot.",
					  source);
		return -1;
	}
	bk_error_set(err, BK_ERR_NOT_FOUND,
				 "source \"%s\" has no complete snapshot", source);
	bk_error_hint(err, "\"bk list --source %s\" shows its snapshots.", source);
	return -1;
}

/*
 * warn_skipped
 *		Say which newer snapshots were stepped over, and why: what is
 *		written is then not the newest state the archive was sent.
 */
static void
warn_skipped(const char *program, const MariadbSnapshotCatalog *catalog,
			 const char *source, int chosen)
{
	for (int idx = catalog->count - 1; idx > chosen; idx--)
	{
		const MariadbSnapshot *snap = &catalog->snapshots[idx];

		if (snap->other_engine)
			continue;
		fprintf(stderr,
				"%s: warning: snapshot %s of source \"%s\" is newer than"
				" snapshot %s but not complete (%s): using %s\n",
				program, snap->id, source, catalog->snapshots[chosen].id,
				snap->reason, catalog->snapshots[chosen].id);
	}
}

int
bk_cmd_snapshot_get(int argc, char **argv)
{
	BkCommonOptions common = {0};
	SnapshotGetArgs args = {0};
	char *dir[1];
	BkCommandContext ctx = {0};
	MariadbSnapshotCatalog catalog = {0};
	const char *id = NULL;
	int chosen;
	uint64_t tables = 0;
	BkError err;
	int status;

	bk_error_clear(&err);
	status = bk_command_parse_args(argc, argv, snapshot_get_options,
								   snapshot_get_help, &common,
								   snapshot_get_option, &args, "DIR", 1, dir);
	if (status != BK_COMMAND_RUN)
		return status;
	if (args.source == NULL)
		return bk_cli_usage_error(argv[0], "--source is required");
	if (!bk_command_open(&ctx, argv[0], &common, args.source, BK_KEY_USED,
						 &err))
		goto fail;
	if (ctx.decoder == NULL)
	{
		bk_error_set(&err, BK_ERR_KEY, "bk snapshot-get needs the private key");
		bk_error_hint(&err, "Set key_file or pass --key-file.");
		goto fail;
	}
	if (!mariadb_snapshot_catalog_load(ctx.repo, args.source, &catalog, &err))
		goto fail;
	if (args.snapshot != NULL)
		chosen = find_named(&catalog, args.source, args.snapshot, &err);
	else
		chosen = choose_newest(&catalog, args.source, &err);
	if (chosen < 0)
		goto fail;
	id = catalog.snapshots[chosen].id;
	if (args.snapshot == NULL)
		warn_skipped(argv[0], &catalog, args.source, chosen);
	if (!mariadb_snapshot_check(ctx.repo, args.source, ctx.decoder, id, dir[0],
								NULL, &tables, &err))
	{
		/*
		 * Its record or schema.json listed, then gone when read (bk expire
		 * meanwhile, a store whose reads lag its listings): missing data,
		 * not a snapshot that is not in the archive (exit 1).
		 */
		if (err.code == BK_ERR_NOT_FOUND)
			err.code = BK_ERR_SEQUENCE;
		goto fail;
	}
	fprintf(stderr, "%s: wrote snapshot %s (%" PRIu64 " tables) to %s\n",
			argv[0], id, tables, dir[0]);
	status = BK_EXIT_OK;
	goto done;
fail:
	status = bk_cli_report_absent_error(argv[0], &err);
done:
	mariadb_snapshot_catalog_free(&catalog);
	bk_command_close(&ctx);
	return status;
}
