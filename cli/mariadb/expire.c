/*
 * expire.c
 *		bk expire for MariaDB sources: which snapshots the policy keeps
 *		(retention.c decides, for every engine), and the binlog that goes
 *		with the others.
 *
 * A source can hold more than one binlog history: files of another
 * basename are another server's binlog (MariaDB names it <hostname>-bin,
 * so a failover renames it), archived by agents that went on across it,
 * or by two agents given one source id.  No restore goes from one history
 * into another, so snapshots are ordered by history (the catalog's order:
 * the one the agent sent first first), then by position in it, and the
 * binlog goes history by history, file by file.  In a history where a
 * snapshot stays, only files older than the binlog file of its kept
 * snapshot earliest in the binlog go: that file is kept whole (a restore
 * rebuilds it from offset 0, its format description included), and so is
 * everything after it.  A history where no snapshot stays goes whole only
 * if the agent sent all of it well before a kept snapshot (of another
 * history) began: no snapshot can start in it then; otherwise it stays
 * whole.  While a snapshot without a record yet stays, so does, in every
 * history, each file the agent sent a range of after it began.  With no
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

/*
 * The agent hosts of two servers need not agree on the time: a history
 * goes whole only if all of it was sent this long before a kept snapshot
 * of another history began.
 */
#define HISTORY_MARGIN_US ((int64_t) 3600 * 1000000)

/*
 * A history of the catalog: its files, binlog.files[first, end), one
 * basename.
 */
typedef struct History
{
	int first;
	int end;
	const MariadbSnapshot *oldest_kept; /* its kept one earliest in it */
	const char *keep_from;              /* its first file that stays, or NULL */
	const char *arriving;               /* keep_from moved back for it */
	const MariadbSnapshot *after;       /* gone whole: began after all of it */
} History;

/* The index of file's history among the catalog's, or -1. */
static int
history_of(const History *histories, int count, const BinlogCatalog *binlog,
		   const char *file)
{
	for (int idx = 0; idx < count; idx++)
		if (bk_binlog_file_same_base(binlog->files[histories[idx].first].name,
									 file))
			return idx;
	return -1;
}

/*
 * binlog_order
 *		Where a position is in the source's binlog, as a number: its
 *		history (its rank in the catalog; one the catalog does not hold,
 *		last), then its file number and offset.  Numbers of two histories
 *		say nothing of which came first.
 */
static uint64_t
binlog_order(int history, int history_count, const char *file, uint64_t pos)
{
	const char *dot = strrchr(file, '.');
	uint64_t number = dot ? strtoull(dot + 1, NULL, 10) : 0;
	uint64_t rank = (uint64_t) (history < 0 ? history_count : history);

	if (number > 0xffffffu)
		number = 0xffffffu;
	if (rank > 0xffu)
		rank = 0xffu;
	return (rank << 56) | (number << 32) | (pos & 0xffffffffu);
}

/*
 * sent_before
 *		Did the agent send every range of the history before before_us?  A
 *		range that does not say when is taken for one sent since.
 */
static bool
sent_before(const BinlogCatalog *binlog, const History *history,
			int64_t before_us)
{
	for (int fileIdx = history->first; fileIdx < history->end; fileIdx++)
		for (int idx = 0; idx < binlog->files[fileIdx].range_count; idx++)
		{
			int64_t created_us;

			if (!bk_parse_timestamp(binlog->files[fileIdx].ranges[idx].created,
									&created_us) ||
				created_us >= before_us)
				return false;
		}
	return true;
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

/* What goes of the binlog: history by history. */
typedef struct BinlogPlan
{
	const BinlogCatalog *binlog;
	History *histories;
	int count;
	const MariadbSnapshotCatalog *snapshots;
	const BkVerdict *verdicts;
} BinlogPlan;

/* Does a kept snapshot of another history than the catalog's need name? */
static bool
kept_needs(const BinlogPlan *plan, const char *name)
{
	for (int idx = 0; idx < plan->snapshots->count; idx++)
	{
		const MariadbSnapshot *snap = &plan->snapshots->snapshots[idx];

		if (plan->verdicts[idx] != BK_VERDICT_EXPIRE && snap->has_record &&
			!snap->other_engine &&
			bk_binlog_file_same_base(snap->binlog_file, name) &&
			bk_binlog_file_compare(name, snap->binlog_file) >= 0)
			return true;
	}
	return false;
}

/*
 * Does binlog file name go?  Before its history's first file that stays;
 * of a history the archive holds no file of any more (its files went
 * before), unless a snapshot kept there needs it.
 */
static bool
file_expires(const BinlogPlan *plan, const char *name)
{
	int history = history_of(plan->histories, plan->count, plan->binlog, name);

	if (history < 0)
		return !kept_needs(plan, name);
	return plan->histories[history].keep_from == NULL ||
		   bk_binlog_file_compare(name, plan->histories[history].keep_from) < 0;
}

/*
 * Remove the conflict copies of every binlog file that goes (only say so
 * with dry_run), and report each file whose copies go: in json, or as a
 * line of text.
 */
static bool
remove_conflict_copies(BkRepo *repo, const char *source, const BinlogPlan *plan,
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

		if (!file_expires(plan, files.names[fileIdx]))
			continue;
		snprintf(prefix, sizeof(prefix), "%s/", files.names[fileIdx]);
		ok = dry_run || bk_repo_delete_prefix(repo, BK_REPO_CONFLICTS, source,
											  BK_KIND_BINLOG, prefix, err);
		if (ok && json != NULL)
			json_array_append_new(json, json_string(files.names[fileIdx]));
		else if (ok)
			printf("  %s the conflicting copies of binlog %s: the file goes"
				   " (or went)\n",
				   dry_run ? "would remove" : "removed", files.names[fileIdx]);
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
					 const MariadbSnapshot *snap, bool *gone, bool *key_missing,
					 char *why, size_t why_len, BkError *err)
{
	char name[MARIADB_SNAPSHOT_ID_MAX + 32];
	uint8_t *text = NULL;
	size_t len = 0;
	json_t *value = NULL;
	BkError fail;

	*gone = false;
	*key_missing = false;
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
	*key_missing = fail.code == BK_ERR_KEY;
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
	History *histories = NULL;
	int history_count = 0;
	BinlogPlan plan = {0};
	const MariadbSnapshot *newest_kept = NULL; /* by its id */
	int64_t newest_start_us = BK_TIME_UNKNOWN;
	const MariadbSnapshot *unplaced = NULL; /* kept, of no binlog file */
	bool any_kept = false;                  /* a snapshot with a record stays */
	const char *keep_from = NULL; /* the newest history's first file kept */
	const char *arriving = NULL;  /* a snapshot without record that stays */
	int64_t guard_us = BK_TIME_UNKNOWN;
	json_t *result = NULL, *snaps_json = NULL, *files_json = NULL;
	json_t *histories_json = NULL;
	json_t *conflicts_json = NULL;
	json_t *warnings_json = NULL;
	/* With the keyring: why a record does not authenticate, per snapshot */
	char **unauthenticated = NULL;
	bool *key_missing = NULL; /* of those: sealed to a key the keyring lacks */
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
		key_missing = bk_cli_alloc_zero((size_t) snapshots.count + 1,
										sizeof(*key_missing));
		for (int idx = 0; idx < snapshots.count; idx++)
		{
			MariadbSnapshot *snap = &snapshots.snapshots[idx];
			bool gone;

			if (!snap->has_record || snap->other_engine)
				continue;
			if (!record_authenticates(repo, source, policy->decoder, snap,
									  &gone, &key_missing[idx], why,
									  sizeof(why), err))
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
	/* The catalog's histories, one basename each, in its order. */
	histories =
		bk_cli_alloc_zero((size_t) binlog.file_count + 1, sizeof(*histories));
	for (int fileIdx = 0; fileIdx < binlog.file_count; fileIdx++)
	{
		if (fileIdx == 0 ||
			!bk_binlog_file_same_base(binlog.files[fileIdx - 1].name,
									  binlog.files[fileIdx].name))
			histories[history_count++].first = fileIdx;
		histories[history_count - 1].end = fileIdx + 1;
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
		bool reaches =
			snap->complete &&
			mariadb_snapshot_reach(snap, &binlog, &until_file, &until_pos,
								   problem, sizeof(problem));

		if (!bk_parse_timestamp_zone(snap->finished, true, &finished))
			finished = BK_TIME_UNKNOWN;
		view[idx] = (BkRetentionSnapshot){
			.id = snap->id,
			.kind = "full",
			.parent_index = -1,
			.restorable = reaches && (unauthenticated == NULL ||
									  unauthenticated[idx] == NULL),
			/* Only one that restores but for the key (retention.h). */
			.key_missing = reaches && key_missing != NULL && key_missing[idx],
			.stop_us = finished,
			.stop_order = binlog_order(history_of(histories, history_count,
												  &binlog, snap->binlog_file),
									   history_count, snap->binlog_file,
									   snap->binlog_pos),
			.stored_ms = snap->stored_ms,
			/* Another engine's, under this source id by mistake. */
			.foreign = snap->other_engine,
		};
	}
	anchored = bk_retention_decide(view, snapshots.count, policy, bk_wall_ms(),
								   verdicts);
	/*
	 * In each history, the kept snapshot earliest in the binlog, by its
	 * position there: not the oldest by id, which comes from the agent
	 * host's clock, and sorts a snapshot taken after that clock stepped
	 * back before the ones it follows.  (A record without a binlog file
	 * says nothing of where it is: then no binlog goes.)  One that stays
	 * while its parts still arrive counts once its record names its
	 * position: it may end before every complete one (the part it lacks
	 * travels on a partition that lags), and the policy keeps it once
	 * complete.  The newest kept one, by its id, is what a history without
	 * a kept snapshot is dated against.
	 */
	for (int idx = 0; anchored && idx < snapshots.count; idx++)
	{
		const MariadbSnapshot *snap = &snapshots.snapshots[idx];
		int history;
		int64_t start_us;

		if (verdicts[idx] == BK_VERDICT_EXPIRE || !snap->has_record ||
			snap->other_engine)
			continue;
		any_kept = true;
		if (strrchr(snap->binlog_file, '.') == NULL)
			unplaced = snap;
		if (bk_retention_id_start_us(snap->id, &start_us) &&
			(newest_kept == NULL || start_us > newest_start_us))
		{
			newest_kept = snap;
			newest_start_us = start_us;
		}
		history =
			history_of(histories, history_count, &binlog, snap->binlog_file);
		if (history >= 0 &&
			(histories[history].oldest_kept == NULL ||
			 view[idx].stop_order <
				 binlog_order(history, history_count,
							  histories[history].oldest_kept->binlog_file,
							  histories[history].oldest_kept->binlog_pos)))
			histories[history].oldest_kept = snap;
	}

	/*
	 * A snapshot that stays without a record (still arriving: the record is
	 * sent last, and may lag on its partition) says nothing of where it is
	 * in the binlog, nor in which history, and may end before every
	 * snapshot kept: taken before one whose record came first, or before
	 * the agent host's clock stepped back.  Binlog the agent sent after it
	 * began stays (file_after_guard); without a start time in its id, none
	 * goes.
	 */
	for (int idx = 0; any_kept && idx < snapshots.count; idx++)
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

	/*
	 * Each history's first file that stays.  One without a kept snapshot
	 * goes whole only if all of it was sent well before the newest kept
	 * snapshot began: no snapshot still to come can start in it, and no
	 * restore goes from it into another history.  Otherwise (a history
	 * still written, its first snapshot still to be taken) it stays whole.
	 */
	for (int history = 0; history < history_count; history++)
	{
		History *h = &histories[history];

		h->keep_from = binlog.files[h->first].name;
		if (!any_kept || unplaced != NULL)
			continue;
		if (h->oldest_kept != NULL)
			h->keep_from = h->oldest_kept->binlog_file;
		else if (newest_kept != NULL &&
				 sent_before(&binlog, h, newest_start_us - HISTORY_MARGIN_US))
		{
			h->keep_from = NULL;
			h->after = newest_kept;
		}
		for (int fileIdx = h->first; arriving != NULL && fileIdx < h->end;
			 fileIdx++)
		{
			const BinlogFile *file = &binlog.files[fileIdx];

			if (h->keep_from != NULL &&
				bk_binlog_file_compare(file->name, h->keep_from) >= 0)
				break;
			if (guard_us == BK_TIME_UNKNOWN || file_after_guard(file, guard_us))
			{
				h->keep_from = file->name;
				h->arriving = arriving;
				break;
			}
		}
	}
	plan =
		(BinlogPlan){&binlog, histories, history_count, &snapshots, verdicts};

	if (policy->json)
	{
		snaps_json = json_array();
		files_json = json_array();
		histories_json = json_array();
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
	if (any_kept && unplaced == NULL &&
		!remove_conflict_copies(repo, source, &plan, policy->dry_run,
								conflicts_json, err))
	{
		status = bk_cli_report_error(program, err);
		goto done;
	}
	/*
	 * In each history, the files before its first that stays: its oldest
	 * kept snapshot's own file, or one a snapshot still arriving may need;
	 * all of a history no snapshot needs.
	 */
	for (int history = 0; history < history_count; history++)
	{
		const History *h = &histories[history];
		int doomed = h->first;

		/*
		 * Recorded before any range goes: a run cut short inside a file
		 * (a store error, a kill) leaves it without its start, and files
		 * before it missing, until the next run; bk verify and bk list
		 * then know that bk expire removed that, not that a range was lost.
		 */
		while (doomed < h->end &&
			   (h->keep_from == NULL ||
				bk_binlog_file_compare(binlog.files[doomed].name,
									   h->keep_from) < 0))
			doomed++;
		if (doomed > h->first && !policy->dry_run &&
			!binlog_expired_record(repo, source, binlog.files[doomed - 1].name,
								   err))
		{
			status = bk_cli_report_error(program, err);
			goto done;
		}
		for (int fileIdx = h->first; fileIdx < doomed; fileIdx++)
		{
			const BinlogFile *file = &binlog.files[fileIdx];

			for (int idx = 0; idx < file->range_count; idx++)
			{
				removed_ranges++;
				if (!policy->dry_run &&
					!bk_repo_delete(repo, BK_REPO_ARCHIVE, source,
									BK_KIND_BINLOG, file->ranges[idx].name,
									err))
				{
					status = bk_cli_report_error(program, err);
					goto done;
				}
			}
			if (policy->json)
				json_array_append_new(files_json, json_string(file->name));
			else if (h->oldest_kept != NULL)
				printf("  %s binlog %s (%d range%s): before snapshot %s's"
					   " file %s\n",
					   policy->dry_run ? "would remove" : "removed", file->name,
					   file->range_count, file->range_count == 1 ? "" : "s",
					   h->oldest_kept->id, h->oldest_kept->binlog_file);
			else if (h->after != NULL)
				printf("  %s binlog %s (%d range%s): of a binlog history"
					   " (another basename) where no snapshot stays, all"
					   " sent before snapshot %s began\n",
					   policy->dry_run ? "would remove" : "removed", file->name,
					   file->range_count, file->range_count == 1 ? "" : "s",
					   h->after->id);
		}
		if (policy->json)
			json_array_append_new(
				histories_json,
				json_pack("{s:s, s:o, s:o}", "first_file",
						  binlog.files[h->first].name, "keep_from",
						  h->keep_from ? json_string(h->keep_from)
									   : json_null(),
						  "snapshot",
						  h->oldest_kept ? json_string(h->oldest_kept->id)
										 : json_null()));
		else if (h->arriving != NULL)
			printf("  binlog from %s stays: snapshot %s, still arriving, has"
				   " no record yet to say where it is in the binlog\n",
				   h->keep_from, h->arriving);
		else if (any_kept && unplaced == NULL && h->oldest_kept == NULL &&
				 h->keep_from != NULL)
			printf("  binlog %s to %s stays: no snapshot stays in that"
				   " history (another basename), but the agent sent some of"
				   " it less than an hour before the newest kept snapshot"
				   " began, or after (or does not say when)\n",
				   binlog.files[h->first].name, binlog.files[h->end - 1].name);
	}
	/* The newest history's, in the catalog's order: the one written now. */
	if (any_kept && unplaced == NULL && history_count > 0)
		keep_from = histories[history_count - 1].keep_from;
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
		result = json_pack(
			"{s:s, s:s, s:b, s:o, s:o, s:o, s:I, s:I, s:s?, "
			"s:o, s:b, s:o}",
			"source", source, "engine", "mariadb", "dry_run", policy->dry_run,
			"snapshots", snaps_json, "binlog_files_removed", files_json,
			"binlog_conflict_copies_removed", conflicts_json,
			"binlog_ranges_removed", (json_int_t) removed_ranges,
			"snapshots_removed", (json_int_t) removed_snapshots, "keep_from",
			keep_from, "binlog_histories", histories_json, "authenticated",
			policy->decoder != NULL, "warnings", warnings_json);
		snaps_json = files_json = conflicts_json = warnings_json = NULL;
		histories_json = NULL;
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
	json_decref(histories_json);
	free(histories);
	for (int idx = 0; unauthenticated != NULL && idx < snapshots.count; idx++)
		free(unauthenticated[idx]);
	free(unauthenticated);
	free(key_missing);
	free(view);
	free(verdicts);
	mariadb_snapshot_catalog_free(&snapshots);
	binlog_catalog_free(&binlog);
	return status;
}
