/*
 * restore_report.c
 *		What was restored, as text or JSON, and the warnings a restore leaves
 *		behind.
 */
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk_util.h"

#include "restore.h"

/* ------------------------------------------------------------ output */

void
restore_json_path(json_t *object, const char *key, const char *path)
{
	json_t *text = json_string(path); /* NULL unless UTF-8 */
	char hex_key[64];
	char *hex;

	if (text != NULL)
	{
		json_object_set_new(object, key, text);
		return;
	}
	hex = malloc(2 * strlen(path) + 1);
	if (hex == NULL)
		return;
	bk_hex_encode((const uint8_t *) path, strlen(path), hex);
	snprintf(hex_key, sizeof(hex_key), "%s_hex", key);
	json_object_set_new(object, hex_key, json_string(hex));
	free(hex);
}

static const char *
target_setting(const Restore *r)
{
	switch (r->target.type)
	{
		case BK_PG_TARGET_TIME:
			return "recovery_target_time";
		case BK_PG_TARGET_LSN:
			return "recovery_target_lsn";
		case BK_PG_TARGET_XID:
			return "recovery_target_xid";
		case BK_PG_TARGET_NAME:
			return "recovery_target_name";
		case BK_PG_TARGET_IMMEDIATE:
			return "recovery_target";
		case BK_PG_TARGET_NONE:
			break;
	}
	return NULL;
}

/*
 * The snapshots of the chain that read pages whose checksum failed: for
 * each, how many its record lists and the first.  A page still damaged is
 * listed again by every later snapshot that read it, so the counts are not
 * added up.
 */
static json_t *
checksum_failures_json(const Restore *r)
{
	json_t *list = json_array();

	for (int linkIdx = 0; linkIdx < r->chain_len; linkIdx++)
	{
		const BkSnapRecord *record = r->chain[linkIdx];
		json_t *entry;

		if (record->checksum_failure_count == 0)
			continue;
		entry = json_pack(
			"{s:s, s:I, s:I}", "snapshot", record->id, "pages_listed",
			(json_int_t) record->checksum_failure_count, "first_block",
			(json_int_t) record->checksum_failure_block);
		if (record->checksum_failure_path != NULL)
			restore_json_path(entry, "first_path",
							  record->checksum_failure_path);
		json_array_append_new(list, entry);
	}
	return list;
}

void
restore_report(const Restore *r, uint64_t removed)
{
	const BkSnapshot *chosen = &r->catalog.snapshots[r->chosen];
	uint64_t written = atomic_load(&r->files_written);
	uint64_t kept = atomic_load(&r->files_kept);
	uint64_t bytes = atomic_load(&r->bytes_written);
	uint64_t mismatches = atomic_load(&r->hint_bit_mismatches);
	bool failures = false;
	char found[32] = "";

	for (int linkIdx = 0; linkIdx < r->chain_len; linkIdx++)
		if (r->chain[linkIdx]->checksum_failure_count > 0)
			failures = true;

	/* Where the search found an xid or a restore point; with --snapshot
	 * none was made, and there is nothing to say (not "0/0"). */
	if ((r->target.type == BK_PG_TARGET_XID ||
		 r->target.type == BK_PG_TARGET_NAME) &&
		r->found_lsn != 0)
		bk_format_lsn(r->found_lsn, found, sizeof(found));
	if (r->common.json)
	{
		json_t *chain = json_array();
		json_t *tablespaces = json_array();
		json_t *target = json_object();
		json_t *out;

		for (int linkIdx = 0; linkIdx < r->chain_len; linkIdx++)
		{
			int index =
				bk_snapshot_catalog_find(&r->catalog, r->chain[linkIdx]->id);

			json_array_append_new(
				chain, bk_snapshot_json(&r->catalog.snapshots[index]));
		}
		for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
		{
			json_t *spc = json_pack("{s:I}", "oid",
									(json_int_t) r->tablespaces[spcIdx].oid);

			restore_json_path(spc, "original", r->tablespaces[spcIdx].original);
			restore_json_path(spc, "location", r->tablespaces[spcIdx].location);
			json_array_append_new(tablespaces, spc);
		}
		json_object_set_new(target, "type",
							r->target.type == BK_PG_TARGET_NONE
								? json_string("end of archive")
								: json_string(target_setting(r)));
		json_object_set_new(
			target, "value",
			r->target.type == BK_PG_TARGET_NONE
				? json_null()
				: json_string(r->target.type == BK_PG_TARGET_TIME
								  ? r->target.time_text
								  : r->target.text));
		if (found[0] != '\0')
			json_object_set_new(target, "found_at_lsn", json_string(found));
		out = json_pack(
			"{s:s, s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:b, "
			"s:o, s:o, s:b}",
			"source", r->source, "snapshot", chosen->id, "chain", chain,
			"tablespaces", tablespaces, "files",
			(json_int_t) r->record->file_count, "files_written",
			(json_int_t) written, "files_unchanged", (json_int_t) kept,
			"files_removed", (json_int_t) removed, "bytes",
			(json_int_t) r->record->bytes, "bytes_written", (json_int_t) bytes,
			"delta", r->delta, "target", target, "recovery_settings",
			json_incref(r->settings), "archive", r->archive);
		restore_json_path(out, "pgdata", r->pgdata_shown);
		json_object_set_new(out, "hint_bit_differences",
							json_integer((json_int_t) mismatches));
		json_object_set_new(out, "checksum_failures",
							checksum_failures_json(r));
		json_object_set_new(
			out, "bytes_decrypted",
			json_integer((json_int_t) atomic_load(&r->bytes_decrypted)));
		json_object_set_new(out, "owner",
							r->set_owner ? json_integer(r->uid) : json_null());
		json_dumpf(out, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(out);
		return;
	}
	printf("restored snapshot %s (%s, stop %s) of source %s into %s\n",
		   chosen->id, chosen->kind, chosen->stop_time, r->source,
		   r->pgdata_shown);
	if (r->chain_len > 1)
	{
		printf("  chain:");
		for (int linkIdx = 0; linkIdx < r->chain_len; linkIdx++)
			printf("%s %s (%s)", linkIdx ? " ->" : "", r->chain[linkIdx]->id,
				   r->chain[linkIdx]->kind);
		printf("\n");
	}
	printf("  %zu files, %" PRIu64 " bytes: %" PRIu64 " written",
		   r->record->file_count, r->record->bytes, written);
	if (r->delta)
		printf(", %" PRIu64 " unchanged, %" PRIu64 " removed", kept, removed);
	printf("\n");
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		const RestoreTablespace *spc = &r->tablespaces[spcIdx];

		printf("  tablespace %" PRIu32 ": %s", spc->oid, spc->location);
		if (strcmp(spc->original, spc->location) != 0)
			printf(" (was %s)", spc->original);
		printf("\n");
	}
	if (mismatches > 0)
		printf("  note: %" PRIu64 " rebuilt file%s differ%s from what the "
			   "snapshot read: its record says data checksums were off and "
			   "it predates page digests, so pages whose hint bits changed "
			   "without a new LSN were not sent\n",
			   mismatches, mismatches == 1 ? "" : "s",
			   mismatches == 1 ? "s" : "");
	if (failures)
		printf("  WARNING: the snapshot read pages whose checksum failed in "
			   "the source (see above)\n");
	if (r->target.type == BK_PG_TARGET_NONE)
		printf("  target: the end of the archived WAL\n");
	else
		printf("  target: %s = '%s'%s%s%s\n", target_setting(r),
			   r->target.type == BK_PG_TARGET_TIME ? r->target.time_text
												   : r->target.text,
			   found[0] ? " (found at " : "", found, found[0] ? ")" : "");
	printf("  restore_command = '%s'\n", r->restore_command);
	printf("Start the server (as %s) to recover: pg_ctl -D %s start\n",
		   r->set_owner
			   ? (getpwuid(r->uid) ? getpwuid(r->uid)->pw_name : "the owner")
			   : "the owner",
		   r->pgdata_shown);
}

/*
 * Where the WAL archived along the timeline recovery follows ends, from the
 * chosen snapshot: false if not known (no WAL, or the path not checked).
 * Not the restorable window's end, which is the newest timeline's: with
 * --target-timeline 1 recovery never reads timeline 2, whose archive may
 * end before timeline 1's or after it.
 */
static bool
archive_end_along(const Restore *r, uint64_t *end_lsn)
{
	const BkWalCatalog *wal = &r->catalog.wal;
	const BkSnapshot *snapshot;
	BkWalPath path;

	if (r->recovery_timeline == 0 || wal->segment_size == 0 || r->chosen < 0 ||
		r->chosen >= r->catalog.count)
		return false;
	snapshot = &r->catalog.snapshots[r->chosen];
	bk_wal_path(wal, snapshot->timeline,
				bk_lsn_segno(snapshot->start_lsn, wal->segment_size),
				r->recovery_timeline, BK_WAL_END, &path);
	if (!path.reachable)
		return false;
	*end_lsn = path.end_segno == BK_WAL_END
				   ? snapshot->stop_lsn
				   : (path.end_segno + 1) * (uint64_t) wal->segment_size;
	return true;
}

/*
 * Warn when an LSN target lies beyond the archived WAL of the timeline
 * recovery follows: recovery would end with "recovery ended before
 * configured recovery target was reached" unless the source archives more
 * first.  (A time target no commit in the archive comes after is refused
 * before anything is written: restore_check_wal_path.)
 */
void
restore_warn_target_beyond_archive(const Restore *r)
{
	char end[32];
	uint64_t end_lsn;

	if (r->target.type == BK_PG_TARGET_LSN && archive_end_along(r, &end_lsn) &&
		r->target.lsn >= end_lsn)
	{
		bk_format_lsn(end_lsn, end, sizeof(end));
		fprintf(stderr,
				"%s: WARNING: the target LSN %s is beyond the archived WAL "
				"of timeline %" PRIu32 " (which ends at %s): recovery "
				"cannot reach it until the source archives that far\n",
				r->program, r->target.text, r->recovery_timeline, end);
	}
	else if (r->target.type == BK_PG_TARGET_LSN &&
			 r->stop_unarchived[0] != '\0')
		fprintf(stderr,
				"%s: WARNING: recovery to the target LSN %s stops after the "
				"first record at or after it, which the archived WAL does "
				"not hold: it needs WAL file %s, not archived yet, and "
				"cannot reach the target until the source archives it\n",
				r->program, r->target.text, r->stop_unarchived);
}

/*
 * Warn when a snapshot of the chain read pages whose checksum failed: the
 * restored cluster has them as the source had them, and the DBA should
 * know before relying on it.
 */
void
restore_warn_checksum_failures(const Restore *r)
{
	char message[BK_ERROR_MESSAGE_MAX];

	for (int linkIdx = 0; linkIdx < r->chain_len; linkIdx++)
		if (bk_snapshot_record_checksum_note(r->chain[linkIdx], message,
											 sizeof(message)))
			fprintf(stderr, "%s: WARNING: %s\n", r->program, message);
}

/* Warn when the server will not be able to read what restore_command needs. */
void
restore_warn_unreadable(const Restore *r)
{
	const char *paths[2] = {r->config.key_file, r->config.config_path};

	if (!r->set_owner)
		return;
	for (int pathIdx = 0; pathIdx < 2; pathIdx++)
	{
		struct stat st;

		if (paths[pathIdx] == NULL || stat(paths[pathIdx], &st) != 0)
			continue;
		if (st.st_uid != r->uid && (st.st_mode & 0004) == 0 &&
			!(st.st_gid == r->gid && (st.st_mode & 0040)))
			fprintf(stderr,
					"%s: WARNING: \"%s\" is not readable by the owner of "
					"the restored cluster (uid %d): restore_command will "
					"fail until it is\n",
					r->program, paths[pathIdx], (int) r->uid);
	}
}

bool
restore_resolve_owner(Restore *r, BkError *err)
{
	struct passwd *pw;

	if (r->owner != NULL)
	{
		pw = getpwnam(r->owner);
		if (pw == NULL)
			return bk_error_set(err, BK_ERR_USAGE, "--owner: no user \"%s\"",
								r->owner);
	}
	else if (geteuid() == 0 && (pw = getpwnam(OWNER_DEFAULT)) != NULL)
		;
	else
		return true;
	r->set_owner = true;
	r->uid = pw->pw_uid;
	r->gid = pw->pw_gid;
	r->protect = pw->pw_uid != geteuid();
	return true;
}
