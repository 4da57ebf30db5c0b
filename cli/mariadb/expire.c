/*
 * expire.c
 *		bk expire for MariaDB sources: which snapshots the policy keeps
 *		(retention.c decides, for every engine), and the binlog that goes
 *		with the others.
 *
 * Binlog goes file by file, only for files older than the binlog file of
 * the kept snapshot earliest in the binlog: that file is kept whole (a
 * restore rebuilds it from offset 0, its format description included), and
 * so is everything after it; while a snapshot without a record yet stays,
 * so is every file the agent sent a range of after it began.  With no
 * restorable snapshot to anchor the policy, nothing is removed.  A
 * snapshot's record goes first, so a removal cut short leaves an
 * incomplete snapshot, never one that looks restorable with parts missing.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "binlog_catalog.h"
#include "bk_snapshot_format.h"
#include "bk_util.h"
#include "cli.h"
#include "mariadb.h"
#include "retention.h"
#include "snapshot_catalog.h"
#include "times.h"

static uint64_t
binlog_order(const char *file, uint64_t pos)
{
	const char *dot = strrchr(file, '.');
	uint64_t number = dot ? strtoull(dot + 1, NULL, 10) : 0;

	return (number << 32) | (pos & 0xffffffffu);
}

/*
 * May a snapshot that began at guard_us (and whose record, naming its
 * binlog position, is not there) need file?  Only if the agent sent a range
 * of it after that, less a minute for the time between the snapshot's id
 * and its position: the range holding the position, or any after it, was
 * sent after the snapshot began.  A range that does not say when is taken
 * for one sent since.
 */
static bool
file_after_guard(const BinlogFile *file, int64_t guard_us)
{
	for (int idx = 0; idx < file->range_count; idx++)
	{
		int64_t created_us;

		if (!bk_parse_timestamp(file->ranges[idx].created, &created_us) ||
			created_us >= guard_us - (int64_t) 60 * 1000000)
			return true;
	}
	return false;
}

static bool
remove_snapshot(BkRepo *repo, const char *source, const char *id, BkError *err)
{
	char record[MARIADB_SNAPSHOT_ID_MAX + 32];
	char prefix[MARIADB_SNAPSHOT_ID_MAX + 2];

	snprintf(record, sizeof(record), "%s/%s", id, BK_SNAPSHOT_RECORD);
	snprintf(prefix, sizeof(prefix), "%s/", id);
	return bk_repo_delete(repo, BK_REPO_ARCHIVE, source, BK_KIND_SNAPSHOT,
						  record, err) &&
		   bk_repo_delete_prefix(repo, BK_REPO_ARCHIVE, source,
								 BK_KIND_SNAPSHOT, prefix, err) &&
		   bk_repo_delete_prefix(repo, BK_REPO_CONFLICTS, source,
								 BK_KIND_SNAPSHOT, prefix, err);
}

/* Binlog files with conflict copies (BkRepoListFn). */
typedef struct ConflictFiles
{
	char **names;
	int count;
} ConflictFiles;

static bool
conflict_file_add(void *arg, const BkRepoEntry *entry, BkError *err)
{
	ConflictFiles *files = arg;
	char **grown;

	if (!entry->is_prefix)
		return true;
	grown = realloc(files->names, (size_t) (files->count + 1) * sizeof(char *));
	if (grown == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	files->names = grown;
	if ((files->names[files->count] = strdup(entry->name)) == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	files->count++;
	return true;
}

static int
conflict_file_cmp(const void *a, const void *b)
{
	return bk_binlog_file_compare(*(char *const *) a, *(char *const *) b);
}

/*
 * Remove the conflict copies of every binlog file before keep_from (only
 * say so with dry_run), and report each file whose copies go: in json, or
 * as a line of text.
 */
static bool
remove_conflict_copies(BkRepo *repo, const char *source, const char *keep_from,
					   bool dry_run, json_t *json, BkError *err)
{
	ConflictFiles files = {0};
	bool ok = bk_repo_list(repo, BK_REPO_CONFLICTS, source, BK_KIND_BINLOG, "",
						   false, conflict_file_add, &files, err);

	if (ok && files.count > 1)
		qsort(files.names, (size_t) files.count, sizeof(files.names[0]),
			  conflict_file_cmp);
	for (int fileIdx = 0; ok && fileIdx < files.count; fileIdx++)
	{
		char prefix[BK_BINLOG_FILE_NAME_MAX + 2];

		if (bk_binlog_file_compare(files.names[fileIdx], keep_from) >= 0)
			continue;
		snprintf(prefix, sizeof(prefix), "%s/", files.names[fileIdx]);
		ok = dry_run || bk_repo_delete_prefix(repo, BK_REPO_CONFLICTS, source,
											  BK_KIND_BINLOG, prefix, err);
		if (ok && json != NULL)
			json_array_append_new(json, json_string(files.names[fileIdx]));
		else if (ok)
			printf("  %s the conflicting copies of binlog %s: before "
				   "snapshot file %s\n",
				   dry_run ? "would remove" : "removed", files.names[fileIdx],
				   keep_from);
	}
	for (int fileIdx = 0; fileIdx < files.count; fileIdx++)
		free(files.names[fileIdx]);
	free(files.names);
	return ok;
}

/*
 * The catalog reads each snapshot's record metadata (its binlog position
 * above all) without keys, and nothing authenticates it: anyone who can
 * write to bk's topics can publish a complete-looking snapshot under any
 * source id, of garbage or sealed to a key of its own; so can an agent
 * sealing to a key whose private half the keyring lacks (a rotation not
 * finished).  Counted as the newest restorable snapshot, it would make the
 * genuine ones and their binlog expendable.  With the keyring, a snapshot
 * counts as restorable only if its record decrypts, is a JSON object, and
 * authenticates the metadata the catalog used: what bk restore checks
 * before it relies on it (check_planned_record).  One that does not counts
 * as not restorable: it never makes older snapshots or binlog expendable.
 *
 * A record removed since the listing (by another bk expire, which takes a
 * snapshot's record first) is gone (*gone), as when the catalog finds it
 * so: bk_repo_read_gone confirms it by a listing.  Why it does not
 * authenticate, or is gone, is in why; false only when the repository
 * failed to read it (what the snapshot is is then unknown, and nothing is
 * removed).
 */
static bool
record_authenticates(BkRepo *repo, const char *source, BkDecoder *decoder,
					 const MariadbSnapshot *snap, bool *gone, char *why,
					 size_t why_len, BkError *err)
{
	char name[MARIADB_SNAPSHOT_ID_MAX + 32];
	uint8_t *text = NULL;
	size_t len = 0;
	json_t *value = NULL;
	BkError fail;

	*gone = false;
	why[0] = '\0';
	bk_error_clear(&fail);
	snprintf(name, sizeof(name), "%s/%s", snap->id, BK_SNAPSHOT_RECORD);
	if (!bk_repo_decrypt_to_memory(repo, BK_REPO_ARCHIVE, source,
								   BK_KIND_SNAPSHOT, name, decoder,
								   512 * 1024 * 1024, &text, &len, &fail))
	{
		BkError still = fail;

		if (bk_repo_read_gone(repo, BK_REPO_ARCHIVE, source, BK_KIND_SNAPSHOT,
							  name, &still))
		{
			*gone = true;
			snprintf(why, why_len,
					 "its record was removed after it was listed (by a bk "
					 "expire running meanwhile?): %s",
					 fail.message);
			return true;
		}
		if (still.code != fail.code ||
			(!bk_error_is_damage(&fail) && fail.code != BK_ERR_NOT_FOUND))
		{
			*err = still;
			bk_error_prefix(err, "nothing removed: snapshot %s of source %s: ",
							snap->id, source);
			bk_error_hint(err, "What a snapshot is decides what stays.  Run "
							   "bk expire again once the repository answers.");
			return false;
		}
	}
	else if (bk_repo_meta_agrees(decoder, snap->meta_digest, source, &fail) &&
			 !json_is_object(value =
								 json_loadb((const char *) text, len, 0, NULL)))
		bk_error_set(&fail, BK_ERR_FORMAT, "its record is not a JSON object");
	json_decref(value);
	free(text);
	if (fail.code != BK_OK)
		snprintf(why, why_len,
				 "its record does not decrypt and authenticate with the "
				 "keyring: %s",
				 fail.message);
	return true;
}

int
bk_mariadb_expire(const char *program, BkRepo *repo, const char *source,
				  const BkRetention *policy, BkError *err)
{
	BinlogCatalog binlog = {0};
	MariadbSnapshotCatalog snapshots = {0};
	BkRetentionSnapshot *view = NULL;
	BkVerdict *verdicts = NULL;
	const MariadbSnapshot *oldest_kept = NULL;
	const char *keep_from = NULL; /* the first binlog file that stays */
	const char *arriving = NULL;  /* a snapshot without record that stays */
	int64_t guard_us = BK_TIME_UNKNOWN;
	json_t *result = NULL, *snaps_json = NULL, *files_json = NULL;
	json_t *conflicts_json = NULL;
	json_t *warnings_json = NULL;
	/* With the keyring: why a record does not authenticate, per snapshot */
	char **unauthenticated = NULL;
	uint64_t removed_snapshots = 0, removed_ranges = 0, freed = 0;
	bool anchored;
	int status = BK_EXIT_OK;

	if (!binlog_catalog_load_expiring(repo, source, &binlog, err) ||
		!mariadb_snapshot_catalog_load(repo, source, &snapshots, err))
	{
		status = bk_cli_report_error(program, err);
		goto done;
	}
	/*
	 * A record the repository could not read says nothing of its snapshot,
	 * which would count as one without a record: removed if older than
	 * those kept.  (A damaged one is what it is: not complete.)
	 *
	 * One listed, then gone when read, and binlog ranges likewise, were
	 * removed meanwhile by another bk expire (two cron jobs, a cron job
	 * and a manual run, hosts sharing a bucket): they count as gone, as a
	 * listing a moment later would have them.  That only ever makes
	 * snapshots not restorable, which restore nothing any more anyway: the
	 * decision then keeps older ones, and the binlog from the oldest kept
	 * one's file, not less.  Another expire removes a snapshot's record
	 * first, and whole binlog files, oldest first.
	 */
	if (binlog.gone > 0)
		fprintf(stderr,
				"%s: note: %" PRIu64 " binlog range%s of source %s (%s%s) "
				"%s removed after %s listed (by a bk expire running "
				"meanwhile?): counted as gone\n",
				program, binlog.gone, binlog.gone == 1 ? "" : "s", source,
				binlog.first_gone, binlog.gone == 1 ? "" : ", ...",
				binlog.gone == 1 ? "was" : "were",
				binlog.gone == 1 ? "it was" : "they were");
	for (int idx = 0; idx < snapshots.count; idx++)
		if (snapshots.snapshots[idx].record_error == BK_ERR_NOT_FOUND)
			fprintf(stderr,
					"%s: note: snapshot %s of source %s: %s; counted as a "
					"snapshot without a record\n",
					program, snapshots.snapshots[idx].id, source,
					snapshots.snapshots[idx].reason);
		else if (snapshots.snapshots[idx].record_error != BK_OK)
		{
			bk_error_set(err, snapshots.snapshots[idx].record_error,
						 "nothing removed: snapshot %s of source %s: %s",
						 snapshots.snapshots[idx].id, source,
						 snapshots.snapshots[idx].reason);
			bk_error_hint(err, "What a snapshot is decides what stays.  Run "
							   "bk expire again once the repository answers.");
			status = bk_cli_report_error(program, err);
			goto done;
		}
	if (policy->decoder != NULL)
	{
		char why[512];

		unauthenticated = bk_cli_alloc_zero((size_t) snapshots.count + 1,
											sizeof(*unauthenticated));
		for (int idx = 0; idx < snapshots.count; idx++)
		{
			MariadbSnapshot *snap = &snapshots.snapshots[idx];
			bool gone;

			if (!snap->has_record || snap->other_engine)
				continue;
			if (!record_authenticates(repo, source, policy->decoder, snap,
									  &gone, why, sizeof(why), err))
			{
				status = bk_cli_report_error(program, err);
				goto done;
			}
			if (gone)
			{
				/* As the catalog counts a record gone when it reads it. */
				fprintf(stderr,
						"%s: note: snapshot %s of source %s: %s; counted as "
						"a snapshot without a record\n",
						program, snap->id, source, why);
				snap->has_record = false;
				snap->complete = false;
				bk_strlcpy(snap->reason, why, sizeof(snap->reason));
			}
			else if (why[0] != '\0')
				unauthenticated[idx] = bk_cli_strdup(why);
		}
	}
	view = bk_cli_alloc_zero((size_t) snapshots.count + 1, sizeof(*view));
	verdicts =
		bk_cli_alloc_zero((size_t) snapshots.count + 1, sizeof(*verdicts));
	for (int idx = 0; idx < snapshots.count; idx++)
	{
		const MariadbSnapshot *snap = &snapshots.snapshots[idx];
		const char *until_file;
		uint64_t until_pos;
		char problem[256];
		int64_t finished = BK_TIME_UNKNOWN;

		if (!bk_parse_timestamp_zone(snap->finished, true, &finished))
			finished = BK_TIME_UNKNOWN;
		view[idx] = (BkRetentionSnapshot){
			.id = snap->id,
			.kind = "full",
			.parent_index = -1,
			.restorable =
				snap->complete &&
				(unauthenticated == NULL || unauthenticated[idx] == NULL) &&
				mariadb_snapshot_reach(snap, &binlog, &until_file, &until_pos,
									   problem, sizeof(problem)),
			.stop_us = finished,
			.stop_order = binlog_order(snap->binlog_file, snap->binlog_pos),
			.stored_ms = snap->stored_ms,
			/* Another engine's, under this source id by mistake. */
			.foreign = snap->other_engine,
		};
	}
	anchored = bk_retention_decide(view, snapshots.count, policy, bk_wall_ms(),
								   verdicts);
	/*
	 * The kept snapshot earliest in the binlog, by its position there: not
	 * the oldest by id, which comes from the agent host's clock, and sorts
	 * a snapshot taken after that clock stepped back before the ones it
	 * follows.  (A record without a binlog file orders first, and then
	 * no binlog goes.)  One that stays while its parts still arrive counts
	 * once its record names its position: it may end before every complete
	 * one (the part it lacks travels on a partition that lags), and the
	 * policy keeps it once complete.
	 */
	for (int idx = 0; anchored && idx < snapshots.count; idx++)
		if (verdicts[idx] != BK_VERDICT_EXPIRE &&
			snapshots.snapshots[idx].has_record &&
			!snapshots.snapshots[idx].other_engine &&
			(oldest_kept == NULL ||
			 view[idx].stop_order < binlog_order(oldest_kept->binlog_file,
												 oldest_kept->binlog_pos)))
			oldest_kept = &snapshots.snapshots[idx];

	/*
	 * A snapshot that stays without a record (still arriving: the record is
	 * sent last, and may lag on its partition) says nothing of where it is
	 * in the binlog, and may end before every snapshot kept: taken before
	 * one whose record came first, or before the agent host's clock stepped
	 * back.  Binlog the agent sent after it began stays (file_after_guard);
	 * without a start time in its id, none goes.
	 */
	for (int idx = 0; oldest_kept != NULL && idx < snapshots.count; idx++)
	{
		int64_t start_us;

		if (verdicts[idx] == BK_VERDICT_EXPIRE ||
			snapshots.snapshots[idx].has_record)
			continue;
		if (!bk_retention_id_start_us(snapshots.snapshots[idx].id, &start_us))
		{
			arriving = snapshots.snapshots[idx].id;
			guard_us = BK_TIME_UNKNOWN;
			break;
		}
		if (arriving == NULL || start_us < guard_us)
		{
			arriving = snapshots.snapshots[idx].id;
			guard_us = start_us;
		}
	}
	if (oldest_kept != NULL)
		keep_from = oldest_kept->binlog_file;
	for (int fileIdx = 0; arriving != NULL && fileIdx < binlog.file_count;
		 fileIdx++)
	{
		const BinlogFile *file = &binlog.files[fileIdx];

		if (bk_binlog_file_compare(file->name, keep_from) >= 0)
			break;
		if (guard_us == BK_TIME_UNKNOWN || file_after_guard(file, guard_us))
		{
			keep_from = file->name;
			break;
		}
	}

	if (policy->json)
	{
		snaps_json = json_array();
		files_json = json_array();
		warnings_json = json_array();
	}
	else
		printf("source %s (mariadb, %s %" PRId64 ")%s\n", source,
			   policy->retain_full > 0 ? "--retain-full" : "--retain-days",
			   policy->retain_full > 0 ? policy->retain_full
									   : policy->retain_days,
			   policy->dry_run ? ", dry run: nothing is removed" : "");
	for (int idx = 0; idx < snapshots.count; idx++)
	{
		const MariadbSnapshot *snap = &snapshots.snapshots[idx];
		BkVerdict verdict = anchored ? verdicts[idx] : BK_VERDICT_KEEP;
		const char *reason = bk_retention_reason(&view[idx], verdict, policy);
		const char *why = unauthenticated != NULL ? unauthenticated[idx] : NULL;

		if (verdict == BK_VERDICT_EXPIRE)
		{
			removed_snapshots++;
			freed += snap->stored_bytes;
			if (!policy->dry_run &&
				!remove_snapshot(repo, source, snap->id, err))
			{
				status = bk_cli_report_error(program, err);
				goto done;
			}
		}
		if (why != NULL)
			fprintf(stderr,
					"%s: warning: snapshot %s of source %s does not count as "
					"restorable: %s\n",
					program, snap->id, source, why);
		if (policy->json)
		{
			char warning[1024];

			/* authenticated null: not checked (no keyring, or no record) */
			json_array_append_new(
				snaps_json,
				json_pack("{s:s, s:s, s:I, s:b, s:s, s:o}", "id", snap->id,
						  "binlog_file", snap->binlog_file, "binlog_pos",
						  (json_int_t) snap->binlog_pos, "removed",
						  verdict == BK_VERDICT_EXPIRE, "verdict", reason,
						  "authenticated",
						  unauthenticated == NULL || !snap->has_record ||
								  snap->other_engine
							  ? json_null()
							  : json_boolean(why == NULL)));
			if (why != NULL)
			{
				snprintf(warning, sizeof(warning),
						 "snapshot %s does not count as restorable: %s",
						 snap->id, why);
				json_array_append_new(warnings_json, json_string(warning));
			}
		}
		else
		{
			printf("  %s snapshot %s (at %s:%" PRIu64 "): %s\n",
				   verdict != BK_VERDICT_EXPIRE ? "keep  "
				   : policy->dry_run            ? "would remove"
												: "removed",
				   snap->id, snap->binlog_file, snap->binlog_pos, reason);
			if (why != NULL)
				printf("    not counted as restorable: %s\n", why);
		}
	}

	/*
	 * Differing copies (conflicts) of the ranges of those files go first:
	 * once a file's ranges are gone, it is no longer listed, and its
	 * copies would stay for good.  Copies of files removed before are
	 * swept the same way.
	 */
	if (policy->json)
		conflicts_json = json_array();
	if (keep_from != NULL &&
		!remove_conflict_copies(repo, source, keep_from, policy->dry_run,
								conflicts_json, err))
	{
		status = bk_cli_report_error(program, err);
		goto done;
	}
	/*
	 * Binlog files before keep_from: the oldest kept snapshot's own file, or
	 * one a snapshot still arriving may need.
	 */
	for (int fileIdx = 0; keep_from != NULL && fileIdx < binlog.file_count;
		 fileIdx++)
	{
		const BinlogFile *file = &binlog.files[fileIdx];

		if (bk_binlog_file_compare(file->name, keep_from) >= 0)
			break;
		for (int idx = 0; idx < file->range_count; idx++)
		{
			removed_ranges++;
			if (!policy->dry_run &&
				!bk_repo_delete(repo, BK_REPO_ARCHIVE, source, BK_KIND_BINLOG,
								file->ranges[idx].name, err))
			{
				status = bk_cli_report_error(program, err);
				goto done;
			}
		}
		if (policy->json)
			json_array_append_new(files_json, json_string(file->name));
		else
			printf("  %s binlog %s (%d range%s): before snapshot %s's"
				   " file %s\n",
				   policy->dry_run ? "would remove" : "removed", file->name,
				   file->range_count, file->range_count == 1 ? "" : "s",
				   oldest_kept->id, oldest_kept->binlog_file);
	}
	if (!policy->json && oldest_kept != NULL &&
		keep_from != oldest_kept->binlog_file)
		printf("  binlog from %s stays: snapshot %s, still arriving, has no "
			   "record yet to say where it is in the binlog\n",
			   keep_from, arriving);
	if (policy->decoder == NULL &&
		(removed_snapshots > 0 || removed_ranges > 0))
	{
		/* Said once the run knows it removes something: then it matters. */
		fprintf(stderr, "%s: warning: %s\n", program,
				BK_RETENTION_KEYLESS_WARNING);
		if (policy->json)
			json_array_append_new(warnings_json,
								  json_string(BK_RETENTION_KEYLESS_WARNING));
	}
	if (policy->json)
	{
		result = json_pack("{s:s, s:s, s:b, s:o, s:o, s:o, s:I, s:I, s:s?, "
						   "s:b, s:o}",
						   "source", source, "engine", "mariadb", "dry_run",
						   policy->dry_run, "snapshots", snaps_json,
						   "binlog_files_removed", files_json,
						   "binlog_conflict_copies_removed", conflicts_json,
						   "binlog_ranges_removed", (json_int_t) removed_ranges,
						   "snapshots_removed", (json_int_t) removed_snapshots,
						   "keep_from", keep_from, "authenticated",
						   policy->decoder != NULL, "warnings", warnings_json);
		snaps_json = files_json = conflicts_json = warnings_json = NULL;
		json_dumpf(result, stdout, JSON_INDENT(2));
		printf("\n");
	}
	else if (!anchored)
		printf("  nothing removed: source %s has no restorable snapshot to"
			   " anchor the retention\n",
			   source);
	else
		printf("%s %" PRIu64 " snapshot%s and %" PRIu64
			   " binlog range%s (%" PRIu64 " bytes of snapshots)\n",
			   policy->dry_run ? "would remove" : "removed", removed_snapshots,
			   removed_snapshots == 1 ? "" : "s", removed_ranges,
			   removed_ranges == 1 ? "" : "s", freed);
done:
	json_decref(result);
	json_decref(snaps_json);
	json_decref(files_json);
	json_decref(conflicts_json);
	json_decref(warnings_json);
	for (int idx = 0; unauthenticated != NULL && idx < snapshots.count; idx++)
		free(unauthenticated[idx]);
	free(unauthenticated);
	free(view);
	free(verdicts);
	mariadb_snapshot_catalog_free(&snapshots);
	binlog_catalog_free(&binlog);
	return status;
}
