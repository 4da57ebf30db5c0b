/*
 * list.c
 *		bk list for PostgreSQL sources: the archived WAL per timeline (with
 *		the branch points of the history files, and the segments missing
 *		below them), each snapshot and whether it is restorable (and if not,
 *		why: incomplete, parent missing, WAL missing, conflict), the
 *		restorable window (from the oldest restorable snapshot's stop point
 *		to the end of the archived WAL, along the timelines' branch points)
 *		and the achieved RPO (the age of the newest archived WAL).
 *
 * Everything comes from the repository itself (names and frame headers),
 * so it needs no key and shows exactly what a restore would find; with a
 * key it also reads history files archived without their branch points.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bk_timeline.h"
#include "bk_util.h"
#include "pg_engine.h"
#include "snapshot_catalog.h"

static json_t *
lsn_or_null(uint64_t lsn)
{
	char text[BK_LSN_TEXT_SIZE];

	if (lsn == 0)
		return json_null();
	bk_format_lsn(lsn, text, sizeof(text));
	return json_string(text);
}

static json_t *
catalog_json(const BkWalCatalog *catalog, int64_t now_ms)
{
	json_t *wal = json_object();
	json_t *timelines = json_array();

	for (int tlIdx = 0; tlIdx < catalog->timeline_count; tlIdx++)
	{
		const BkWalTimeline *tl = &catalog->timelines[tlIdx];
		char first[32] = "";
		char last[32] = "";
		char gap[32] = "";
		json_t *item;

		if (tl->segments > 0)
		{
			bk_wal_segment_name(tl->timeline, tl->first_segno,
								catalog->segment_size, first);
			bk_wal_segment_name(tl->timeline, tl->last_segno,
								catalog->segment_size, last);
		}
		if (tl->gap_count > 0)
			bk_wal_segment_name(tl->timeline, tl->first_gap_segno,
								catalog->segment_size, gap);
		item = json_pack("{s:i, s:I, s:I, s:I}", "timeline", (int) tl->timeline,
						 "segments", (json_int_t) tl->segments, "missing",
						 (json_int_t) tl->gap_count, "partial",
						 (json_int_t) tl->partials);
		json_object_set_new(item, "parent",
							tl->parent ? json_integer(tl->parent)
									   : json_null());
		json_object_set_new(item, "branch_lsn", lsn_or_null(tl->begin_lsn));
		json_object_set_new(item, "needed_until_lsn",
							lsn_or_null(tl->needed_until));
		json_object_set_new(item, "history",
							!tl->has_history ? json_null()
							: tl->history_known
								? json_string("known")
								: json_string(tl->history_problem));
		json_object_set_new(item, "first",
							tl->segments ? json_string(first) : json_null());
		json_object_set_new(item, "last",
							tl->segments ? json_string(last) : json_null());
		json_object_set_new(item, "first_missing",
							tl->gap_count ? json_string(gap) : json_null());
		json_array_append_new(timelines, item);
	}
	json_object_set_new(wal, "timelines", timelines);
	json_object_set_new(wal, "segment_size",
						json_integer(catalog->segment_size));
	json_object_set_new(wal, "history_files",
						json_integer((json_int_t) catalog->history_files));
	json_object_set_new(wal, "unknown_histories",
						json_integer((json_int_t) catalog->unknown_histories));
	json_object_set_new(wal, "system_identifier",
						catalog->system_identifier[0]
							? json_string(catalog->system_identifier)
							: json_null());
	json_object_set_new(wal, "backup_files",
						json_integer((json_int_t) catalog->backup_files));
	json_object_set_new(wal, "conflicts",
						json_integer((json_int_t) catalog->conflicts));
	if (catalog->newest_name[0] != '\0')
	{
		char stamp[40];

		bk_format_time_utc(catalog->newest_archived_ms, stamp, sizeof(stamp));
		json_object_set_new(wal, "newest", json_string(catalog->newest_name));
		json_object_set_new(wal, "newest_archived_at", json_string(stamp));
		json_object_set_new(wal, "newest_created_at",
							json_string(catalog->newest_created));
		json_object_set_new(
			wal, "newest_age_seconds",
			json_real((now_ms - catalog->newest_archived_ms) / 1000.0));
	}
	return wal;
}

/* Where a timeline came from and how far a later one needs it. */
static void
print_branches(const BkWalTimeline *tl)
{
	char lsn[BK_LSN_TEXT_SIZE];

	if (tl->parent != 0)
	{
		bk_format_lsn(tl->begin_lsn, lsn, sizeof(lsn));
		printf(", branched off timeline %" PRIu32 " at %s", tl->parent, lsn);
	}
	if (tl->needed_until != 0)
	{
		bk_format_lsn(tl->needed_until, lsn, sizeof(lsn));
		printf(", needed up to %s (timeline %" PRIu32 " branched there)", lsn,
			   tl->needed_by);
	}
	if (tl->has_history && !tl->history_known)
		printf(", branch points UNKNOWN: %s", tl->history_problem);
}

static void
catalog_print(const BkWalCatalog *catalog, int64_t now_ms)
{
	if (catalog->timeline_count == 0)
	{
		printf("  WAL: none archived\n");
		return;
	}
	for (int tlIdx = 0; tlIdx < catalog->timeline_count; tlIdx++)
	{
		const BkWalTimeline *tl = &catalog->timelines[tlIdx];
		char first[32];
		char last[32];
		char gap[32];

		if (tl->segments == 0)
		{
			printf("  WAL timeline %" PRIu32 ": no segment", tl->timeline);
			if (tl->gap_count > 0)
			{
				bk_wal_segment_name(tl->timeline, tl->first_gap_segno,
									catalog->segment_size, gap);
				printf(", %" PRIu64 " MISSING (first: %s)", tl->gap_count, gap);
			}
			if (tl->partials > 0)
				printf(", %" PRIu64 " partial", tl->partials);
			print_branches(tl);
			printf("\n");
			continue;
		}
		bk_wal_segment_name(tl->timeline, tl->first_segno,
							catalog->segment_size, first);
		bk_wal_segment_name(tl->timeline, tl->last_segno, catalog->segment_size,
							last);
		printf("  WAL timeline %" PRIu32 ": %s .. %s, %" PRIu64 " segment%s",
			   tl->timeline, first, last, tl->segments,
			   tl->segments == 1 ? "" : "s");
		if (tl->gap_count > 0)
		{
			bk_wal_segment_name(tl->timeline, tl->first_gap_segno,
								catalog->segment_size, gap);
			printf(", %" PRIu64 " MISSING (first: %s)", tl->gap_count, gap);
		}
		if (tl->partials > 0)
			printf(", %" PRIu64 " partial", tl->partials);
		print_branches(tl);
		printf("\n");
	}
	printf("  history files %" PRIu64 ", backup history files %" PRIu64
		   ", conflicting copies %" PRIu64 "\n",
		   catalog->history_files, catalog->backup_files, catalog->conflicts);
	if (catalog->system_identifier[0] != '\0')
		printf("  database system %s (of the newest WAL)\n",
			   catalog->system_identifier);
	if (catalog->newest_name[0] != '\0')
	{
		char stamp[40];

		bk_format_time_utc(catalog->newest_archived_ms, stamp, sizeof(stamp));
		printf("  newest WAL %s archived %s (%.0f s ago)\n",
			   catalog->newest_name, stamp,
			   (now_ms - catalog->newest_archived_ms) / 1000.0);
	}
}

static void
format_bytes(uint64_t bytes, char *out, size_t out_len)
{
	static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
	double value = (double) bytes;
	int unit = 0;

	while (value >= 1024 && unit < 5)
	{
		value /= 1024;
		unit++;
	}
	snprintf(out, out_len, unit == 0 ? "%.0f %s" : "%.1f %s", value,
			 units[unit]);
}

static json_t *
window_json(const BkSnapshotCatalog *catalog)
{
	char start[32];
	char end[32];

	if (!catalog->has_window)
		return json_null();
	bk_format_lsn(catalog->window_start_lsn, start, sizeof(start));
	bk_format_lsn(catalog->window_end_lsn, end, sizeof(end));
	return json_pack(
		"{s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:o}", "from_snapshot",
		catalog->snapshots[catalog->window_snapshot].id, "start_lsn", start,
		"start_time", catalog->window_start_time, "end_lsn", end, "end_time",
		catalog->window_end_time, "end_timeline",
		(int) catalog->window_end_timeline, "missing_segments",
		(json_int_t) catalog->window_missing_segments, "first_missing",
		catalog->window_first_missing[0]
			? json_string(catalog->window_first_missing)
			: json_null());
}

static json_t *
snapshots_json(const BkSnapshotCatalog *catalog)
{
	json_t *list = json_array();

	for (int snapIdx = catalog->count - 1; snapIdx >= 0; snapIdx--)
		json_array_append_new(list,
							  bk_snapshot_json(&catalog->snapshots[snapIdx]));
	return list;
}

static void
snapshots_print(const BkSnapshotCatalog *catalog)
{
	if (catalog->count == 0)
		printf("  snapshots: none\n");
	else
		printf("  snapshots (%d, newest first):\n", catalog->count);
	for (int snapIdx = catalog->count - 1; snapIdx >= 0; snapIdx--)
	{
		const BkSnapshot *snapshot = &catalog->snapshots[snapIdx];
		char start[32];
		char stop[32];
		char size[32];

		if (!snapshot->has_record)
		{
			printf("    %s  NOT restorable: incomplete: %s\n", snapshot->id,
				   snapshot->reason);
			continue;
		}
		bk_format_lsn(snapshot->start_lsn, start, sizeof(start));
		bk_format_lsn(snapshot->stop_lsn, stop, sizeof(stop));
		format_bytes(snapshot->bytes, size, sizeof(size));
		printf("    %s  %s", snapshot->id, snapshot->kind);
		if (snapshot->parent[0])
			printf(" of %s", snapshot->parent);
		printf("  start %s %s  stop %s %s  %" PRIu64 " files, %s  ", start,
			   snapshot->start_time, stop, snapshot->stop_time, snapshot->files,
			   size);
		if (snapshot->restorable)
			printf("restorable\n");
		else
			printf("NOT restorable: %s: %s\n",
				   bk_snapshot_problem_name(snapshot->problem),
				   snapshot->reason);
	}
	if (catalog->has_window)
	{
		char start[32];
		char end[32];

		bk_format_lsn(catalog->window_start_lsn, start, sizeof(start));
		bk_format_lsn(catalog->window_end_lsn, end, sizeof(end));
		printf("  restorable window: %s (%s, stop of %s) .. %s on timeline "
			   "%" PRIu32 " (%s, newest WAL)",
			   start, catalog->window_start_time,
			   catalog->snapshots[catalog->window_snapshot].id, end,
			   catalog->window_end_timeline, catalog->window_end_time);
		if (catalog->window_missing_segments > 0)
			printf(", %" PRIu64 " WAL segment%s MISSING inside (first: %s)",
				   catalog->window_missing_segments,
				   catalog->window_missing_segments == 1 ? "" : "s",
				   catalog->window_first_missing);
		printf("\n");
		if (catalog->window_other_timeline != 0)
			printf("  note: timeline %" PRIu32 " is newer but outside the "
				   "window: %s\n",
				   catalog->window_other_timeline,
				   catalog->window_other_reason);
	}
	else
		printf("  restorable window: none (no restorable snapshot)\n");
	if (catalog->has_rpo)
		printf("  achieved RPO: %.0f s (age of the newest archived WAL)\n",
			   catalog->rpo_seconds);
}

bool
bk_pg_list(const BkRepo *repo, const char *source, BkDecoder *decoder,
		   json_t *into, int64_t now_ms, BkError *err)
{
	BkSnapshotCatalog catalog;

	if (!bk_snapshot_catalog_load(repo, source, decoder, &catalog, err))
		return false;
	if (into != NULL)
	{
		json_object_set_new(into, "wal", catalog_json(&catalog.wal, now_ms));
		json_object_set_new(into, "snapshots", snapshots_json(&catalog));
		json_object_set_new(into, "restorable_window", window_json(&catalog));
		json_object_set_new(into, "rpo_seconds",
							catalog.has_rpo ? json_real(catalog.rpo_seconds)
											: json_null());
	}
	else
	{
		catalog_print(&catalog.wal, now_ms);
		snapshots_print(&catalog);
	}
	bk_snapshot_catalog_free(&catalog);
	return true;
}
