/*
 * cmd_expire.c
 *		bk expire: remove the snapshots and WAL a retention policy no longer
 *		needs, and nothing a kept snapshot needs for its point-in-time
 *		window.
 *
 *	  bk expire --source S --retain-full N   the N newest restorable full
 *											 snapshots and every diff/incr
 *											 built on them
 *	  bk expire --source S --retain-days D   whatever restores any moment of
 *											 the last D days: every snapshot
 *											 ending inside the window, the
 *											 newest one ending before it, and
 *											 their parents
 *
 * Only snapshots older than the oldest kept one are removed, so a snapshot
 * that is broken or still arriving but recent stays for inspection; and a
 * snapshot without a complete record whose newest file is younger than a
 * day is in progress (shippers archive a snapshot's objects in any order,
 * the record possibly first), never touched.  WAL goes only when it lies
 * entirely before the segment of the oldest kept snapshot's start LSN
 * (segments, .partial and .backup files, on every timeline), and, while a
 * snapshot without a record is in progress, only WAL its source read
 * before that snapshot began (the id says when); history files stay, as
 * pg_archivecleanup leaves them.  With no restorable snapshot to
 * anchor it, nothing is removed: the WAL may serve a base backup bk does
 * not know about.
 *
 * A snapshot's record goes first (and its directory is synced), so a
 * removal cut short leaves an incomplete snapshot, never one that looks
 * restorable with objects missing.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "bk_util.h"
#include "commands.h"
#include "repo.h"
#include "snapshot_catalog.h"

#define IN_PROGRESS_MS ((int64_t) 24 * 3600 * 1000)

static const char *expire_help =
	"Usage: bk expire --source S (--retain-full N | --retain-days D) "
	"[--dry-run] [--json]\n\n"
	"Removes snapshots, and the WAL before the oldest kept one, that the "
	"retention\npolicy no longer needs.  Never removes what a kept snapshot "
	"needs to restore\nany moment of its window, nor a snapshot still "
	"arriving.\n\n"
	"  --source S        source id\n"
	"  --retain-full N   keep the N newest restorable full snapshots and "
	"their\n                    diff/incr snapshots\n"
	"  --retain-days D   keep what restores any moment of the last D days\n"
	"  --dry-run         only say what would be removed\n" BK_COMMON_HELP;

enum
{
	OPT_SOURCE = OPT_COMMAND_BASE,
	OPT_RETAIN_FULL,
	OPT_RETAIN_DAYS,
	OPT_DRY_RUN
};

typedef enum Verdict
{
	VERDICT_EXPIRE = 0,
	VERDICT_KEEP,
	VERDICT_IN_PROGRESS,
	VERDICT_NEWER /* not needed, but newer than the oldest kept one */
} Verdict;

typedef struct Expire
{
	const char *program;
	const char *source;
	int64_t retain_full;
	int64_t retain_days;
	bool dry_run;
	BkCommonOptions common;
	BkRepo repo;
	BkSnapshotCatalog catalog;
	Verdict *verdicts;
	char why_kept_note[256];
} Expire;

/* Mark snapshot index and its parents kept. */
static void
keep_chain(Expire *ex, int index)
{
	for (int depth = 0; index >= 0 && depth <= ex->catalog.count; depth++)
	{
		ex->verdicts[index] = VERDICT_KEEP;
		index = ex->catalog.snapshots[index].parent_index;
	}
}

/* Does snapshot index build (through its parents) on a kept full? */
static bool
built_on_kept_full(const Expire *ex, int index)
{
	for (int depth = 0; index >= 0 && depth <= ex->catalog.count; depth++)
	{
		const BkSnapshot *snapshot = &ex->catalog.snapshots[index];

		if (strcmp(snapshot->kind, "full") == 0)
			return ex->verdicts[index] == VERDICT_KEEP;
		index = snapshot->parent_index;
	}
	return false;
}

static int
stop_desc_cmp(const void *a, const void *b, void *arg)
{
	const BkSnapshot *snapshots = arg;
	const BkSnapshot *x = &snapshots[*(const int *) a];
	const BkSnapshot *y = &snapshots[*(const int *) b];

	if (x->stop_lsn != y->stop_lsn)
		return x->stop_lsn > y->stop_lsn ? -1 : 1;
	return strcmp(y->id, x->id);
}

/* Decide which snapshots stay; false when nothing may be removed. */
static bool
decide(Expire *ex, int64_t now_ms)
{
	BkSnapshotCatalog *catalog = &ex->catalog;
	int *restorable = calloc((size_t) catalog->count + 1, sizeof(int));
	int restorable_count = 0;
	int kept_fulls = 0;
	bool anchored = false;

	for (int snapIdx = 0; snapIdx < catalog->count; snapIdx++)
		if (catalog->snapshots[snapIdx].restorable)
			restorable[restorable_count++] = snapIdx;
	qsort_r(restorable, (size_t) restorable_count, sizeof(int), stop_desc_cmp,
			catalog->snapshots);

	if (ex->retain_full > 0)
	{
		for (int slot = 0;
			 slot < restorable_count && kept_fulls < ex->retain_full; slot++)
			if (strcmp(catalog->snapshots[restorable[slot]].kind, "full") == 0)
			{
				ex->verdicts[restorable[slot]] = VERDICT_KEEP;
				kept_fulls++;
			}
		anchored = kept_fulls > 0;
		for (int snapIdx = 0; snapIdx < catalog->count; snapIdx++)
			if (ex->verdicts[snapIdx] != VERDICT_KEEP &&
				built_on_kept_full(ex, snapIdx))
				keep_chain(ex, snapIdx);
	}
	else
	{
		int64_t window_start_us =
			(now_ms - ex->retain_days * 24 * 3600 * 1000) * 1000;

		for (int slot = 0; slot < restorable_count; slot++)
		{
			const BkSnapshot *snapshot = &catalog->snapshots[restorable[slot]];
			bool inside = snapshot->stop_us == BK_TIME_UNKNOWN ||
						  snapshot->stop_us >= window_start_us;

			keep_chain(ex, restorable[slot]);
			anchored = true;
			if (!inside)
				break; /* the newest one ending before the window */
		}
	}
	free(restorable);
	if (!anchored)
		return false;

	/* Young and unfinished: in progress.  Newer than every kept: left. */
	{
		const char *oldest_kept = NULL;

		for (int snapIdx = 0; snapIdx < catalog->count; snapIdx++)
			if (ex->verdicts[snapIdx] == VERDICT_KEEP &&
				(oldest_kept == NULL ||
				 strcmp(catalog->snapshots[snapIdx].id, oldest_kept) < 0))
				oldest_kept = catalog->snapshots[snapIdx].id;
		for (int snapIdx = 0; snapIdx < catalog->count; snapIdx++)
		{
			const BkSnapshot *snapshot = &catalog->snapshots[snapIdx];

			if (ex->verdicts[snapIdx] == VERDICT_KEEP)
				continue;
			if (!snapshot->restorable &&
				now_ms - snapshot->newest_mtime_ms < IN_PROGRESS_MS)
				ex->verdicts[snapIdx] = VERDICT_IN_PROGRESS;
			else if (strcmp(snapshot->id, oldest_kept) > 0)
				ex->verdicts[snapIdx] = VERDICT_NEWER;
		}
	}
	return true;
}

/* The start time a snapshot id encodes ("YYYYMMDDTHHMMSSZ-..."), in us. */
static bool
id_start_us(const char *id, int64_t *us)
{
	char text[32];

	if (strlen(id) < 16 || id[8] != 'T' || id[15] != 'Z')
		return false;
	snprintf(text, sizeof(text), "%.4s-%.2s-%.2sT%.2s:%.2s:%.2sZ", id, id + 4,
			 id + 6, id + 9, id + 11, id + 13);
	return bk_parse_timestamp(text, us);
}

/*
 * The first segment number to keep: that of the oldest start LSN among the
 * snapshots that stay.  A snapshot that stays but has no record yet (so no
 * known start LSN) may need WAL from its start on: *guard_us gets the
 * oldest such start time (from its id), and WAL created after it is kept
 * (or BK_TIME_UNKNOWN when there is none).  0: remove no WAL.
 */
static uint64_t
wal_cutoff(const Expire *ex, int64_t *guard_us, uint32_t *timeline, char *note,
		   size_t note_len)
{
	const BkSnapshotCatalog *catalog = &ex->catalog;
	uint64_t oldest_lsn = BK_LSN_INVALID;

	*guard_us = BK_TIME_UNKNOWN;
	if (catalog->wal.segment_size == 0)
		return 0;
	for (int snapIdx = 0; snapIdx < catalog->count; snapIdx++)
	{
		const BkSnapshot *snapshot = &catalog->snapshots[snapIdx];
		int64_t start_us;

		if (ex->verdicts[snapIdx] == VERDICT_EXPIRE)
			continue;
		if (snapshot->start_lsn != BK_LSN_INVALID)
		{
			if (snapshot->start_lsn < oldest_lsn)
			{
				oldest_lsn = snapshot->start_lsn;
				*timeline = snapshot->timeline;
			}
			continue;
		}
		if (!id_start_us(snapshot->id, &start_us))
		{
			snprintf(note, note_len,
					 "no WAL removed: snapshot %s, still arriving, has no "
					 "start LSN yet and its id names no start time",
					 snapshot->id);
			return 0;
		}
		if (*guard_us == BK_TIME_UNKNOWN || start_us < *guard_us)
			*guard_us = start_us;
	}
	if (oldest_lsn == BK_LSN_INVALID)
		return 0;
	return bk_lsn_segno(oldest_lsn, catalog->wal.segment_size);
}

/*
 * May a WAL object be needed by a snapshot that began at guard_us?  Only if
 * the source read it (its "created" metadata) after that, less a minute for
 * the time between the snapshot's id and its start LSN.
 */
static bool
needed_after_guard(const char *path, int64_t guard_us)
{
	BkObjectIdentity identity;
	BkObjectTracker *object;
	char created[64];
	int64_t created_us;
	bool needed = true;
	BkError err;

	if (guard_us == BK_TIME_UNKNOWN)
		return false;
	object = malloc(sizeof(*object));
	if (object != NULL &&
		bk_repo_object_identity(path, &identity, object, &err) &&
		bk_meta_get(object->meta, object->meta_len, "created", created,
					sizeof(created)) &&
		bk_parse_timestamp(created, &created_us))
		needed = created_us >= guard_us - (int64_t) 60 * 1000000;
	free(object);
	return needed;
}

typedef struct WalRemoval
{
	uint64_t count;
	uint64_t bytes;
	char first[BK_OBJECT_NAME_MAX + 1];
	char last[BK_OBJECT_NAME_MAX + 1];
} WalRemoval;

/* WAL entries of dir (names, or "<name>.<attempt>" in conflicts) before cutoff. */
static bool
expire_wal_dir(Expire *ex, const char *dir_path, bool conflicts,
			   uint64_t cutoff, int64_t guard_us, WalRemoval *removal,
			   BkError *err)
{
	DIR *dir = opendir(dir_path);
	struct dirent *entry;
	bool removed_any = false;

	if (dir == NULL)
		return errno == ENOENT ||
			   bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s",
							dir_path, strerror(errno));
	while ((entry = readdir(dir)) != NULL)
	{
		char name[BK_OBJECT_NAME_MAX + 1];
		char path[BK_REPO_PATH_MAX];
		uint32_t timeline;
		uint32_t log;
		uint32_t seg;
		BkWalFileType type;
		struct stat st;

		if (entry->d_name[0] == '.')
			continue;
		bk_strlcpy(name, entry->d_name, sizeof(name));
		if (conflicts)
		{
			char *dot = strrchr(name, '.');

			if (dot != NULL)
				*dot = '\0';
		}
		type = bk_wal_file_type(name, &timeline, &log, &seg);
		if ((type != BK_WAL_SEGMENT && type != BK_WAL_PARTIAL &&
			 type != BK_WAL_BACKUP) ||
			bk_wal_segno(log, seg, ex->catalog.wal.segment_size) >= cutoff)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir_path, entry->d_name);
		if (lstat(path, &st) != 0 || needed_after_guard(path, guard_us))
			continue;
		removal->count++;
		removal->bytes += (uint64_t) st.st_size;
		if (removal->first[0] == '\0' || strcmp(name, removal->first) < 0)
			bk_strlcpy(removal->first, name, sizeof(removal->first));
		if (strcmp(name, removal->last) > 0)
			bk_strlcpy(removal->last, name, sizeof(removal->last));
		if (ex->dry_run)
			continue;
		if (unlink(path) != 0 && errno != ENOENT)
		{
			closedir(dir);
			return bk_error_set(err, BK_ERR_IO, "could not remove \"%s\": %s",
								path, strerror(errno));
		}
		removed_any = true;
	}
	closedir(dir);
	return !removed_any || bk_fsync_dir(dir_path, err);
}

/* Remove one snapshot: its record first, then the rest. */
static bool
remove_snapshot(Expire *ex, const BkSnapshot *snapshot, BkError *err)
{
	char path[BK_REPO_PATH_MAX + 64];
	char parent[BK_REPO_PATH_MAX];
	char conflict[BK_REPO_PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", snapshot->dir, BK_SNAPSHOT_RECORD);
	if (unlink(path) == 0)
	{
		if (!bk_fsync_dir(snapshot->dir, err))
			return false;
	}
	else if (errno != ENOENT)
		return bk_error_set(err, BK_ERR_IO, "could not remove \"%s\": %s", path,
							strerror(errno));
	if (!bk_remove_tree(snapshot->dir, err) ||
		!bk_repo_source_path(&ex->repo, ex->source, "snapshot", parent,
							 sizeof(parent), err) ||
		!bk_fsync_dir(parent, err))
		return false;
	if (!bk_repo_source_path(&ex->repo, ex->source, "conflicts/snapshot",
							 parent, sizeof(parent), err))
		return false;
	snprintf(conflict, sizeof(conflict), "%s/%s", parent, snapshot->id);
	if (access(conflict, F_OK) == 0 &&
		(!bk_remove_tree(conflict, err) || !bk_fsync_dir(parent, err)))
		return false;
	return true;
}

static const char *
verdict_reason(const Expire *ex, const BkSnapshot *snapshot, Verdict verdict)
{
	switch (verdict)
	{
		case VERDICT_KEEP:
			return "kept: retention";
		case VERDICT_IN_PROGRESS:
			return "kept: in progress (incomplete, newest file less than a "
				   "day old)";
		case VERDICT_NEWER:
			return "kept: newer than the oldest kept snapshot";
		case VERDICT_EXPIRE:
			break;
	}
	if (!snapshot->restorable)
		return "expired: not restorable and older than the kept snapshots";
	return ex->retain_full > 0 ? "expired: older than the full snapshots kept"
							   : "expired: not needed for the retention window";
}

static int
parse_options(Expire *ex, int argc, char **argv)
{
	static const struct option options[] = {
		{"source", required_argument, NULL, OPT_SOURCE},
		{"retain-full", required_argument, NULL, OPT_RETAIN_FULL},
		{"retain-days", required_argument, NULL, OPT_RETAIN_DAYS},
		{"dry-run", no_argument, NULL, OPT_DRY_RUN},
		BK_COMMON_LONG_OPTIONS,
		{NULL, 0, NULL, 0}};
	int code;

	optind = 1;
	opterr = 0;
	while ((code = getopt_long(argc, argv, "", options, NULL)) != -1)
	{
		char *end;

		switch (code)
		{
			case OPT_SOURCE:
				ex->source = optarg;
				break;
			case OPT_RETAIN_FULL:
			case OPT_RETAIN_DAYS:
			{
				long long value = strtoll(optarg, &end, 10);

				if (end == optarg || *end != '\0' || value < 1 ||
					value > 100000)
					return bk_cli_usage_error(
						ex->program, "%s must be a number from 1 to 100000",
						code == OPT_RETAIN_FULL ? "--retain-full"
												: "--retain-days");
				if (code == OPT_RETAIN_FULL)
					ex->retain_full = value;
				else
					ex->retain_days = value;
				break;
			}
			case OPT_DRY_RUN:
				ex->dry_run = true;
				break;
			default:
				if (!bk_common_option(&ex->common, code, optarg))
					return bk_cli_bad_option(ex->program, argv[optind - 1]);
		}
	}
	if (ex->common.help)
		return -1;
	if (optind < argc)
		return bk_cli_usage_error(ex->program, "unexpected argument \"%s\"",
								  argv[optind]);
	if (ex->source == NULL ||
		!bk_source_id_valid(ex->source, strlen(ex->source)))
		return bk_cli_usage_error(ex->program, "--source S is required");
	if ((ex->retain_full > 0) == (ex->retain_days > 0))
		return bk_cli_usage_error(ex->program,
								  "give exactly one of --retain-full and "
								  "--retain-days");
	return 0;
}

int
bk_cmd_expire(int argc, char **argv)
{
	Expire ex = {.program = argv[0]};
	BkCliConfig config;
	BkError err;
	json_t *result = NULL;
	json_t *snapshots_json = NULL;
	WalRemoval wal = {0};
	char note[512] = "";
	uint64_t cutoff = 0;
	int64_t guard_us = BK_TIME_UNKNOWN;
	uint32_t cutoff_timeline = 1;
	uint64_t removed_snapshots = 0;
	uint64_t freed = 0;
	int64_t now_ms = bk_wall_ms();
	int status;

	bk_error_clear(&err);
	status = parse_options(&ex, argc, argv);
	if (status != 0)
	{
		if (status < 0)
		{
			fputs(expire_help, stdout);
			status = BK_EXIT_OK;
		}
		return status;
	}
	bk_cli_config_init(&config);
	if (!bk_common_config(&ex.common, &config, &err) ||
		!bk_repo_open(&ex.repo, config.repository, false, &err) ||
		!bk_snapshot_catalog_load(&ex.repo, ex.source, NULL, &ex.catalog, &err))
		goto fail;
	ex.verdicts = calloc((size_t) ex.catalog.count + 1, sizeof(Verdict));
	if (ex.verdicts == NULL)
	{
		bk_error_set(&err, BK_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if (!decide(&ex, now_ms))
	{
		for (int snapIdx = 0; snapIdx < ex.catalog.count; snapIdx++)
			ex.verdicts[snapIdx] = VERDICT_KEEP;
		snprintf(note, sizeof(note),
				 "nothing removed: source %s has no restorable %ssnapshot to "
				 "anchor the retention",
				 ex.source, ex.retain_full > 0 ? "full " : "");
	}
	else
		cutoff =
			wal_cutoff(&ex, &guard_us, &cutoff_timeline, note, sizeof(note));

	if (ex.common.json)
	{
		snapshots_json = json_array();
		result = json_pack(
			"{s:s, s:b, s:o}", "source", ex.source, "dry_run", ex.dry_run,
			"policy",
			ex.retain_full > 0
				? json_pack("{s:I}", "retain_full", (json_int_t) ex.retain_full)
				: json_pack("{s:I}", "retain_days",
							(json_int_t) ex.retain_days));
	}
	else
		printf("source %s (%s %" PRId64 ")%s\n", ex.source,
			   ex.retain_full > 0 ? "--retain-full" : "--retain-days",
			   ex.retain_full > 0 ? ex.retain_full : ex.retain_days,
			   ex.dry_run ? ", dry run: nothing is removed" : "");
	for (int snapIdx = 0; snapIdx < ex.catalog.count; snapIdx++)
	{
		const BkSnapshot *snapshot = &ex.catalog.snapshots[snapIdx];
		Verdict verdict = ex.verdicts[snapIdx];
		const char *reason = verdict_reason(&ex, snapshot, verdict);

		if (verdict == VERDICT_EXPIRE)
		{
			removed_snapshots++;
			freed += snapshot->stored_bytes;
			if (!ex.dry_run && !remove_snapshot(&ex, snapshot, &err))
				goto fail;
		}
		if (ex.common.json)
		{
			json_t *item = bk_snapshot_json(snapshot);

			json_object_set_new(item, "removed",
								json_boolean(verdict == VERDICT_EXPIRE));
			json_object_set_new(item, "verdict", json_string(reason));
			json_array_append_new(snapshots_json, item);
		}
		else
			printf("  %s snapshot %s (%s, stop %s): %s\n",
				   verdict != VERDICT_EXPIRE ? "keep  "
				   : ex.dry_run              ? "would remove"
											 : "removed",
				   snapshot->id, snapshot->kind[0] ? snapshot->kind : "?",
				   snapshot->stop_time[0] ? snapshot->stop_time : "unknown",
				   reason);
	}
	if (cutoff > 0)
	{
		char wal_dir[BK_REPO_PATH_MAX];
		char conflict_dir[BK_REPO_PATH_MAX];

		if (!bk_repo_source_path(&ex.repo, ex.source, "wal", wal_dir,
								 sizeof(wal_dir), &err) ||
			!bk_repo_source_path(&ex.repo, ex.source, "conflicts/wal",
								 conflict_dir, sizeof(conflict_dir), &err) ||
			!expire_wal_dir(&ex, wal_dir, false, cutoff, guard_us, &wal,
							&err) ||
			!expire_wal_dir(&ex, conflict_dir, true, cutoff, guard_us, &wal,
							&err))
			goto fail;
		freed += wal.bytes;
	}
	{
		char keep_from[32] = "";

		if (cutoff > 0)
			bk_wal_segment_name(cutoff_timeline, cutoff,
								ex.catalog.wal.segment_size, keep_from);
		if (ex.common.json)
		{
			json_object_set_new(result, "snapshots", snapshots_json);
			snapshots_json = NULL;
			json_object_set_new(result, "snapshots_removed",
								json_integer((json_int_t) removed_snapshots));
			json_object_set_new(
				result, "wal",
				json_pack("{s:I, s:o, s:o, s:o}", "files_removed",
						  (json_int_t) wal.count, "first_removed",
						  wal.first[0] ? json_string(wal.first) : json_null(),
						  "last_removed",
						  wal.last[0] ? json_string(wal.last) : json_null(),
						  "kept_from_segment",
						  cutoff > 0 ? json_string(keep_from) : json_null()));
			json_object_set_new(result, "bytes_freed",
								json_integer((json_int_t) freed));
			json_object_set_new(result, "note",
								note[0] ? json_string(note) : json_null());
			json_dumpf(result, stdout, JSON_INDENT(2));
			fputc('\n', stdout);
		}
		else
		{
			if (wal.count > 0)
				printf("  %s %" PRIu64 " WAL file%s (%s .. %s): before the "
					   "oldest kept snapshot's start segment %s\n",
					   ex.dry_run ? "would remove" : "removed", wal.count,
					   wal.count == 1 ? "" : "s", wal.first, wal.last,
					   keep_from);
			else if (note[0] == '\0')
				printf("  no WAL to remove\n");
			if (note[0] != '\0')
				printf("  %s\n", note);
			printf("%s %" PRIu64 " snapshot%s and %" PRIu64
				   " WAL file%s, %" PRIu64 " bytes\n",
				   ex.dry_run ? "would remove" : "removed", removed_snapshots,
				   removed_snapshots == 1 ? "" : "s", wal.count,
				   wal.count == 1 ? "" : "s", freed);
		}
	}
	status = BK_EXIT_OK;
	goto done;

fail:
	status = bk_cli_report_error(ex.program, &err);
done:
	json_decref(snapshots_json);
	json_decref(result);
	free(ex.verdicts);
	bk_snapshot_catalog_free(&ex.catalog);
	bk_cli_config_free(&config);
	return status;
}
