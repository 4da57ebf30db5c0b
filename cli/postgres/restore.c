/*
 * restore.c
 *		bk restore: rebuild a PostgreSQL data directory from the newest
 *		snapshot chain that ends before the recovery target, and configure
 *		recovery through bk wal-get to reach the target.
 *
 * Picking the snapshot.  A snapshot can serve a target only if its stop
 * point (where recovery becomes consistent) is at or before the target;
 * recovery from a later one would fail ("requested recovery stop point is
 * before consistent recovery point") or, worse, pass the target.  Times
 * and LSNs compare with the catalog directly.  A transaction id or a
 * restore point name has no place in the catalog, so the archived WAL is
 * decrypted window by window, newest first, and PostgreSQL's own
 * pg_waldump finds the commit (or restore point) record in it: windows are
 * [stop of snapshot i, stop of snapshot i+1), so the window holding the
 * record names the snapshot.
 *
 * Writing the directory.  Files are decrypted, decompressed and verified
 * one chunk at a time (memory stays bounded), by --jobs threads, each with
 * its own decoder (the keyring is read-only and shared).  Incremental
 * files are rebuilt in place: the parent's version first, then the changed
 * blocks at their offsets (snapshot_data.c).  Each rebuilt file is checked
 * against the record's SHA-256.  Files are not fsynced one by one: the
 * kernel starts writing each out as it is written, and once all are
 * written every file and directory is fsynced on the --jobs threads
 * (restore_sync_files), before backup_label, the recovery settings, the
 * manifest and pg_control, whose own writes are each made durable.
 *
 * A restore that fails half way must never leave a directory that starts:
 * PostgreSQL would start from the checkpoint in pg_control and silently
 * produce a corrupt cluster.  So global/pg_control is written last, after
 * every file, backup_label, tablespace_map, the recovery settings and the
 * manifest are durable; without it the server refuses to start.  With
 * --delta the old pg_control is removed first, for the same reason.
 */
#include <string.h>
#include <unistd.h>

#include "bk_util.h"

#include "engine.h"
#include "restore.h"

static const char *restore_help =
	"Usage: bk restore --source S --pgdata DIR [TARGET] [OPTIONS]\n\n"
	"Rebuilds a PostgreSQL data directory from the newest snapshot that ends "
	"at or\nbefore the target, and configures recovery (restore_command = bk "
	"wal-get) to\nreplay the archived WAL up to the target.  (A MariaDB "
	"source is restored\ninto a running server: bk restore --mysql-socket "
	"PATH --help.)\n\n"
	"Target (at most one; none: replay all archived WAL):\n"
	"  --target-time TS      recovery_target_time (\"2026-11-24 05:12:00+00\"; "
	"no\n                        zone: local time)\n"
	"  --target-lsn LSN      recovery_target_lsn\n"
	"  --target-xid XID      recovery_target_xid (found in the WAL with "
	"pg_waldump)\n"
	"  --target-name NAME    recovery_target_name (a restore point)\n"
	"  --target immediate    stop as soon as the snapshot is consistent\n\n"
	"Options:\n"
	"  --source S            source id\n"
	"  --pgdata DIR          directory to restore into (must be empty, or "
	"--delta)\n"
	"  --snapshot ID         restore this snapshot (bk list shows them)\n"
	"  --target-timeline T   latest (default), current, or a timeline id; bk "
	"resolves\n                        it and writes the timeline's id\n"
	"  --tablespace-map OLD=NEW\n"
	"                        restore the tablespace at OLD into NEW "
	"(repeatable)\n"
	"  --delta               reuse a non-empty DIR: rewrite only files whose "
	"content\n                        differs, remove files the snapshot does "
	"not have\n"
	"  --archive             keep archive_mode: this copy becomes the "
	"source's primary\n"
	"  --jobs N              files restored in parallel (default 2)\n"
	"  --owner USER          owner of the restored files (default postgres "
	"when run\n                        as root)\n"
	"  --prefetch N          restore_command prefetches N segments ahead\n"
	"                        (default 4; 0: off)\n\n"
	"Exit status: 0 restored; 1 no snapshot fits the target, or another "
	"failure;\n2 usage; 3 configuration or key; 4 corrupt, tampered or "
	"missing data;\n5 repository unreachable.\n\n" BK_COMMON_HELP;

enum
{
	OPT_SOURCE = OPT_COMMAND_BASE,
	OPT_PGDATA,
	OPT_TARGET_TIME,
	OPT_TARGET_LSN,
	OPT_TARGET_XID,
	OPT_TARGET_NAME,
	OPT_TARGET,
	OPT_SNAPSHOT,
	OPT_TARGET_TIMELINE,
	OPT_TABLESPACE_MAP,
	OPT_DELTA,
	OPT_ARCHIVE,
	OPT_JOBS,
	OPT_OWNER,
	OPT_PREFETCH
};

/* ------------------------------------------------------------ options */

/* Remember the target option; false if one was given already. */
static bool
set_target(Restore *r, BkPgTargetType type, const char *text)
{
	if (r->target_option != NULL)
		return false;
	r->target_option = text;
	r->target.type = type;
	return true;
}

static int
restore_option(void *arg, int code, const char *value)
{
	Restore *r = arg;
	uint64_t number;

	switch (code)
	{
		case OPT_SOURCE:
			r->source = value;
			break;
		case OPT_PGDATA:
			r->pgdata_arg = value;
			break;
		case OPT_TARGET_TIME:
			r->two_targets |= !set_target(r, BK_PG_TARGET_TIME, value);
			break;
		case OPT_TARGET_LSN:
			r->two_targets |= !set_target(r, BK_PG_TARGET_LSN, value);
			break;
		case OPT_TARGET_XID:
			r->two_targets |= !set_target(r, BK_PG_TARGET_XID, value);
			break;
		case OPT_TARGET_NAME:
			r->two_targets |= !set_target(r, BK_PG_TARGET_NAME, value);
			break;
		case OPT_TARGET:
			r->two_targets |= !set_target(r, BK_PG_TARGET_IMMEDIATE, value);
			break;
		case OPT_SNAPSHOT:
			r->snapshot_id = value;
			break;
		case OPT_TARGET_TIMELINE:
			if (strcmp(value, "latest") != 0 && strcmp(value, "current") != 0 &&
				(!bk_parse_u64(value, &number) || number == 0 ||
				 number > UINT32_MAX))
				return bk_cli_usage_error(
					r->program,
					"--target-timeline must be latest, current or a "
					"timeline id, not \"%s\"",
					value);
			r->target_timeline = value;
			break;
		case OPT_TABLESPACE_MAP:
		{
			char *eq = strchr(value, '=');

			if (r->map_count == TABLESPACE_MAPS_MAX)
				return bk_cli_usage_error(r->program,
										  "at most %d --tablespace-map options",
										  TABLESPACE_MAPS_MAX);
			if (eq == NULL || value[0] != '/' || eq[1] != '/')
				return bk_cli_usage_error(
					r->program,
					"--tablespace-map expects OLD=NEW, two absolute "
					"paths, not \"%s\"",
					value);
			*eq = '\0';
			/* Else the last would win, silently: which copy did they mean? */
			for (int mapIdx = 0; mapIdx < r->map_count; mapIdx++)
				if (strcmp(r->maps[mapIdx].old_path, value) == 0)
					return bk_cli_usage_error(
						r->program,
						"--tablespace-map maps %s twice (to %s and to %s); "
						"give one NEW for each tablespace",
						value, r->maps[mapIdx].new_path, eq + 1);
			r->maps[r->map_count].old_path = value;
			r->maps[r->map_count++].new_path = eq + 1;
			break;
		}
		case OPT_DELTA:
			r->delta = true;
			break;
		case OPT_ARCHIVE:
			r->archive = true;
			break;
		case OPT_JOBS:
			if (!bk_parse_u64(value, &number) || number < 1 ||
				number > JOBS_MAX)
				return bk_cli_usage_error(
					r->program, "--jobs must be from 1 to %d, not \"%s\"",
					JOBS_MAX, value);
			r->jobs = (int) number;
			break;
		case OPT_OWNER:
			r->owner = value;
			break;
		case OPT_PREFETCH:
			if (!bk_parse_u64(value, &number) || number > 1000)
				return bk_cli_usage_error(
					r->program, "--prefetch must be from 0 to 1000, not \"%s\"",
					value);
			r->prefetch = (int) number;
			break;
	}
	return BK_EXIT_OK;
}

static int
parse_options(Restore *r, int argc, char **argv)
{
	static const struct option options[] = {
		{"source", required_argument, NULL, OPT_SOURCE},
		{"pgdata", required_argument, NULL, OPT_PGDATA},
		{"target-time", required_argument, NULL, OPT_TARGET_TIME},
		{"target-lsn", required_argument, NULL, OPT_TARGET_LSN},
		{"target-xid", required_argument, NULL, OPT_TARGET_XID},
		{"target-name", required_argument, NULL, OPT_TARGET_NAME},
		{"target", required_argument, NULL, OPT_TARGET},
		{"snapshot", required_argument, NULL, OPT_SNAPSHOT},
		{"target-timeline", required_argument, NULL, OPT_TARGET_TIMELINE},
		{"tablespace-map", required_argument, NULL, OPT_TABLESPACE_MAP},
		{"delta", no_argument, NULL, OPT_DELTA},
		{"archive", no_argument, NULL, OPT_ARCHIVE},
		{"jobs", required_argument, NULL, OPT_JOBS},
		{"owner", required_argument, NULL, OPT_OWNER},
		{"prefetch", required_argument, NULL, OPT_PREFETCH},
		BK_COMMON_LONG_OPTIONS,
		{NULL, 0, NULL, 0}};
	const char *program = argv[0];
	int status = bk_command_parse(argc, argv, options, restore_help, &r->common,
								  restore_option, r);

	if (status != BK_COMMAND_RUN)
		return status;
	if (r->two_targets)
		return bk_cli_usage_error(program,
								  "give at most one of --target-time, "
								  "--target-lsn, --target-xid, --target-name "
								  "and --target");
	if (r->source == NULL || r->pgdata_arg == NULL)
		return bk_cli_usage_error(program,
								  "--source and --pgdata are required");
	if (!bk_source_id_valid(r->source, strlen(r->source)))
		return bk_cli_usage_error(
			program,
			"invalid source id \"%s\": a source id is " BK_SOURCE_ID_RULE,
			r->source);
	if (r->target_option != NULL)
	{
		BkError err;

		if (!bk_pg_target_parse(&r->target, r->target.type, r->target_option,
								&err))
			return bk_cli_usage_error(program, "%s", err.message);
	}
	if (r->target_timeline == NULL)
		r->target_timeline = "latest";
	return BK_COMMAND_RUN;
}

/* bk_cli_check_record_read, for every snapshot of the catalog. */
static bool
refuse_unread_records(Restore *r, BkError *err)
{
	for (int snapIdx = r->catalog.count - 1; snapIdx >= 0; snapIdx--)
	{
		const BkSnapshot *snapshot = &r->catalog.snapshots[snapIdx];

		if (!bk_cli_check_record_read(snapshot->id, r->source,
									  snapshot->record_error, snapshot->reason,
									  r->snapshot_id, err))
			return false;
	}
	return true;
}

/*
 * refuse_other_engine
 *		A MariaDB source restores into a server, not a data directory.
 */
static bool
refuse_other_engine(Restore *r, BkError *err)
{
	const BkEngine *engine = bk_engine_for(r->repo, r->source, err);

	if (engine == NULL)
		return false;
	if (engine == &bk_engine_mariadb)
		return bk_error_set(err, BK_ERR_CONFIG,
							"source \"%s\" is a MariaDB source: it is"
							" restored into a running server, not a data"
							" directory",
							r->source) ||
			   bk_error_hint(err,
							 "bk restore --source %s --mysql-socket PATH"
							 " (or --mysql-host H --mysql-port P).",
							 r->source);
	return true;
}

int
bk_pg_restore(int argc, char **argv)
{
	Restore *r = bk_cli_alloc_zero(1, sizeof(*r));
	BkError err;
	uint64_t removed = 0;
	int status;
	bool started_writing = false;

	bk_error_clear(&err);
	r->program = argv[0];
	r->jobs = JOBS_DEFAULT;
	r->prefetch = PREFETCH_DEFAULT;
	r->chosen = -1;
	r->pgdata_fd = -1;
	bk_cli_config_init(&r->config);
	status = parse_options(r, argc, argv);
	if (status != BK_COMMAND_RUN)
	{
		free(r);
		return status;
	}

	if (!bk_common_config(&r->common, &r->config, &err) ||
		(r->repo = bk_cli_repo_open(&r->config, false, &err)) == NULL)
		goto fail;
	if (r->config.key_file == NULL)
	{
		bk_error_set(&err, BK_ERR_CONFIG, "no key file configured");
		bk_error_hint(&err, "Set key_file in the configuration or pass "
							"--key-file: restoring needs the private key.");
		goto fail;
	}
	r->ring = bk_keyring_load(r->config.key_file, BK_KEYS_FOR_RESTORE, &err);
	if (r->ring == NULL)
		goto fail;
	r->decoder = bk_decoder_new(r->ring, &err);
	if (r->decoder == NULL || !refuse_other_engine(r, &err) ||
		!restore_resolve_owner(r, &err) ||
		!bk_snapshot_catalog_load(r->repo, r->source, r->decoder, &r->catalog,
								  &err) ||
		!refuse_unread_records(r, &err) || !restore_choose_snapshot(r, &err) ||
		!restore_check_wal_path(r, &err) || !restore_load_chain(r, &err) ||
		!restore_check_wal_keys(r, &err) || !restore_plan_tablespaces(r, &err))
		goto fail;
	if (r->archive)
		fprintf(stderr,
				"%s: WARNING: --archive: the restored cluster keeps "
				"archive_mode and, once promoted, archives onto source %s "
				"as a new timeline. Only one cluster may do so: if the "
				"original primary (or another restored copy) still archives "
				"onto this source, their timelines collide. Use --archive "
				"only for the copy that replaces the primary.\n",
				r->program, r->source);

	if (!restore_build_restore_command(r, &err) ||
		!restore_check_targets(r, &err) || !restore_prepare_target(r, &err))
		goto fail;
	started_writing = true;
	if (!restore_create_directories(r, &err))
		goto fail;
	if (r->delta && !restore_remove_extra(r, r->pgdata, "", &removed, &err))
		goto fail;
	if (!restore_files(r, &err) || !restore_sync_files(r, &err) ||
		!restore_write_label_and_map(r, &err) ||
		!restore_write_recovery_settings(r, &err) ||
		!restore_write_manifest(r, &err) ||
		!restore_install_pg_control(r, &err) || !restore_hand_over(r, &err))
		goto fail;
	restore_warn_unreadable(r);
	restore_warn_target_beyond_archive(r);
	restore_warn_checksum_failures(r);
	restore_report(r, removed);
	status = BK_EXIT_OK;
	goto done;

fail:
	restore_show_paths(r, &err);
	status = bk_cli_report_restore_error(r->program, &err, r->repo != NULL);
	if (started_writing)
	{
		char temp[RESTORE_PATH_MAX];

		if (r->wrote_pg_control_temp &&
			restore_join_path(temp, sizeof(temp), r->pgdata, PG_CONTROL_TEMP,
							  NULL))
			unlink(temp);
		fprintf(stderr,
				"%s: the restore is incomplete: \"%s\" will not start (its "
				"global/pg_control is written last%s). Fix the cause and run "
				"bk restore again%s, with --delta to reuse what was "
				"restored.\n",
				r->program,
				r->pgdata_shown[0] ? r->pgdata_shown : r->pgdata_arg,
				r->protect ? ", and it stays root's until the restore "
							 "completes"
						   : "",
				r->protect ? " as root" : "");
	}
done:
	restore_close_roots(r);
	bk_repo_close(r->repo);
	for (int linkIdx = 0; linkIdx < r->chain_len; linkIdx++)
		bk_snapshot_record_free(r->chain[linkIdx]);
	free(r->chain);
	free(r->tablespaces);
	free(r->results);
	free(r->work);
	json_decref(r->settings);
	bk_snapshot_catalog_free(&r->catalog);
	bk_decoder_free(r->decoder);
	bk_keyring_free(r->ring);
	bk_cli_config_free(&r->config);
	free(r);
	return status;
}
