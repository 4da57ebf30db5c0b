/*
 * bk_status.c
 *		SQL function bk_status(): the archiving and RPO state in one row.
 *
 * Everything comes from the shared status the archiver and the worker keep
 * (bk.h), read under its spinlock into a private copy, plus what only the
 * calling backend can know now: the backlog (the .ready files in
 * pg_wal/archive_status, counted at call time), the id of the key
 * bk.key_file names (loaded here, so a key the archiver cannot use shows up
 * as NULL), and the current WAL positions for the RPO.
 *
 * current_rpo is the age of the oldest change that is not archived yet:
 * zero when every important WAL record lies before the end of the newest
 * archived segment; otherwise now minus the time of the worker's first
 * sample that saw an important record beyond it.  "Important" is
 * PostgreSQL's own notion (GetLastImportantRecPtr, the one archive_timeout
 * uses): WAL that carries changes, as opposed to the standby snapshots and
 * segment switches an idle server writes, which would otherwise make an
 * idle, fully archived server look like it falls further and further
 * behind.  When the ring of samples no longer reaches back that far, the
 * oldest sample's age is a lower bound.  NULL means unknown: nothing
 * archived yet that tells where archiving stands, or no samples (no worker).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "funcapi.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "bk.h"
#include "bk_keys.h"
#include "bk_topics.h"

/* Columns of bk_status(), in the order of its OUT parameters. */
typedef enum BkStatusColumn
{
	COL_SOURCE_ID,
	COL_KEY_ID,
	COL_WAL_TOPIC,
	COL_WAIT_FOR,
	COL_LAST_ARCHIVED_FILE,
	COL_LAST_ARCHIVED_TIME,
	COL_ARCHIVED_COUNT,
	COL_ARCHIVED_BYTES,
	COL_SENT_BYTES,
	COL_FAILED_COUNT,
	COL_LAST_FAILED_FILE,
	COL_LAST_FAILED_TIME,
	COL_LAST_FAILURE,
	COL_BACKLOG,
	COL_CURRENT_RPO,
	COL_TARGET_RPO,
	COL_FORCED_SWITCHES,
	COL_LAST_ARCHIVED_LSN,
	BK_STATUS_COLS
} BkStatusColumn;

PG_FUNCTION_INFO_V1(bk_status);

static int bk_count_ready(void);
static XLogRecPtr bk_archived_end(const BkSharedState *snap);
static bool bk_current_rpo(const BkSharedState *snap, TimestampTz now,
						   int64 *usecs);
static Datum bk_interval_datum(int64 usecs);
static Datum bk_text_or_null(const char *text, bool *isnull);
static Datum bk_time_or_null(TimestampTz time, bool *isnull);

/*
 * bk_status
 *		One row: configuration in effect, archiving counters, last success
 *		and failure, backlog, RPO.
 */
Datum
bk_status(PG_FUNCTION_ARGS)
{
	TupleDesc tupdesc;
	Datum values[BK_STATUS_COLS];
	bool nulls[BK_STATUS_COLS];
	BkSharedState *snap;
	char source_id[BK_SOURCE_ID_MAX + 1];
	char topic[BK_TOPIC_NAME_MAX + 1];
	char key_hex[BK_KEY_ID_HEX_LEN + 1];
	BkKeyring *ring;
	BkError err;
	TimestampTz now = GetCurrentTimestamp();
	int64 rpo_usecs;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != BK_STATUS_COLS)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bk_status() is declared with %d columns, but the bk "
						"library returns %d",
						tupdesc->natts, BK_STATUS_COLS),
				 errhint("Run ALTER EXTENSION bk UPDATE.")));
	if (bk_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bk status is not available"),
				 errdetail("The bk library was not loaded through "
						   "shared_preload_libraries, so it keeps no shared "
						   "status."),
				 errhint("Add bk to shared_preload_libraries and restart the "
						 "server.")));

	snap = palloc(sizeof(BkSharedState));
	SpinLockAcquire(&bk_shared->mutex);
	memcpy(snap, bk_shared, sizeof(BkSharedState));
	SpinLockRelease(&bk_shared->mutex);

	memset(nulls, 0, sizeof(nulls));

	bk_effective_source_id(source_id, sizeof(source_id));
	values[COL_SOURCE_ID] = CStringGetTextDatum(source_id);

	ring = NULL;
	if (bk_key_file != NULL && bk_key_file[0] != '\0')
		ring = bk_keyring_load(bk_key_file, BK_KEYS_FOR_SOURCE, &err);
	if (ring != NULL)
	{
		bk_key_id_hex(ring->keys[0].id, key_hex);
		bk_keyring_free(ring);
		values[COL_KEY_ID] = CStringGetTextDatum(key_hex);
	}
	else
		nulls[COL_KEY_ID] = true;

	if (bk_topic_name(bk_topic_prefix, BK_TOPIC_WAL, topic, sizeof(topic),
					  &err))
		values[COL_WAL_TOPIC] = CStringGetTextDatum(topic);
	else
		nulls[COL_WAL_TOPIC] = true;

	values[COL_WAIT_FOR] = CStringGetTextDatum(bk_wait_for_name(bk_wait_for));
	values[COL_LAST_ARCHIVED_FILE] = bk_text_or_null(
		snap->last_archived_file, &nulls[COL_LAST_ARCHIVED_FILE]);
	values[COL_LAST_ARCHIVED_TIME] = bk_time_or_null(
		snap->last_archived_time, &nulls[COL_LAST_ARCHIVED_TIME]);
	values[COL_ARCHIVED_COUNT] = Int64GetDatum((int64) snap->archived_count);
	values[COL_ARCHIVED_BYTES] = Int64GetDatum((int64) snap->archived_bytes);
	values[COL_SENT_BYTES] = Int64GetDatum((int64) snap->sent_bytes);
	values[COL_FAILED_COUNT] = Int64GetDatum((int64) snap->failed_count);
	values[COL_LAST_FAILED_FILE] =
		bk_text_or_null(snap->last_failed_file, &nulls[COL_LAST_FAILED_FILE]);
	values[COL_LAST_FAILED_TIME] =
		bk_time_or_null(snap->last_failed_time, &nulls[COL_LAST_FAILED_TIME]);
	/*
	 * A fatal producer error outranks any failure since: shown first until
	 * a snapshot covers it (no new column, so no extension upgrade).
	 */
	if (snap->kafka_alarm[0] != '\0')
		values[COL_LAST_FAILURE] = CStringGetTextDatum(psprintf(
			"%s (at %s; shown until a snapshot started after it "
			"completes)%s%s",
			snap->kafka_alarm, timestamptz_to_str(snap->kafka_alarm_time),
			snap->last_failure[0] ? "; last failure: " : "",
			snap->last_failure));
	else
		values[COL_LAST_FAILURE] =
			bk_text_or_null(snap->last_failure, &nulls[COL_LAST_FAILURE]);
	values[COL_BACKLOG] = Int32GetDatum(bk_count_ready());

	if (bk_current_rpo(snap, now, &rpo_usecs))
		values[COL_CURRENT_RPO] = bk_interval_datum(rpo_usecs);
	else
		nulls[COL_CURRENT_RPO] = true;

	if (bk_target_rpo_s > 0)
		values[COL_TARGET_RPO] =
			bk_interval_datum((int64) bk_target_rpo_s * USECS_PER_SEC);
	else
		nulls[COL_TARGET_RPO] = true;

	values[COL_FORCED_SWITCHES] = Int64GetDatum((int64) snap->forced_switches);

	if (XLogRecPtrIsInvalid(snap->last_archived_end_lsn))
		nulls[COL_LAST_ARCHIVED_LSN] = true;
	else
		values[COL_LAST_ARCHIVED_LSN] =
			LSNGetDatum(snap->last_archived_end_lsn);

	tupdesc = BlessTupleDesc(tupdesc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * bk_count_ready
 *		Files waiting for the archiver: pg_wal/archive_status/ *.ready.
 */
static int
bk_count_ready(void)
{
	const char *status_dir = XLOGDIR "/archive_status";
	DIR *dir;
	struct dirent *entry;
	int count = 0;

	dir = AllocateDir(status_dir);
	while ((entry = ReadDir(dir, status_dir)) != NULL)
	{
		size_t len = strlen(entry->d_name);

		if (len > 6 && strcmp(entry->d_name + len - 6, ".ready") == 0)
			count++;
	}
	FreeDir(dir);
	return count;
}

/*
 * bk_archived_end
 *		End of the newest archived segment: from our status, or, before bk
 *		archived anything in this server run, from pg_stat_archiver (the
 *		archiver archives segments in order, so all before it are too).
 */
static XLogRecPtr
bk_archived_end(const BkSharedState *snap)
{
	PgStat_ArchiverStats *stats;
	TimeLineID tli;
	XLogSegNo segno;
	XLogRecPtr end;

	if (!XLogRecPtrIsInvalid(snap->last_archived_end_lsn))
		return snap->last_archived_end_lsn;
	stats = pgstat_fetch_stat_archiver();
	if (stats == NULL || !IsXLogFileName(stats->last_archived_wal))
		return InvalidXLogRecPtr;
	XLogFromFileName(stats->last_archived_wal, &tli, &segno, wal_segment_size);
	XLogSegNoOffsetToRecPtr(segno + 1, 0, wal_segment_size, end);
	return end;
}

/*
 * bk_current_rpo
 *		The age of the oldest unarchived change (see the file header); false
 *		when unknown.
 */
static bool
bk_current_rpo(const BkSharedState *snap, TimestampTz now, int64 *usecs)
{
	XLogRecPtr archived_end;
	XLogRecPtr flushed;
	XLogRecPtr important;
	int oldest;

	if (RecoveryInProgress())
		return false;
	archived_end = bk_archived_end(snap);
	if (XLogRecPtrIsInvalid(archived_end))
		return false;

	flushed = GetFlushRecPtr(NULL);
	important = GetLastImportantRecPtr();
	if (flushed <= archived_end || important < archived_end)
	{
		*usecs = 0;
		return true;
	}
	if (snap->rpo_count == 0)
		return false;

	oldest =
		(snap->rpo_next - snap->rpo_count + BK_RPO_SAMPLES) % BK_RPO_SAMPLES;
	for (int sampleIdx = 0; sampleIdx < snap->rpo_count; sampleIdx++)
	{
		const BkRpoSample *sample =
			&snap->rpo[(oldest + sampleIdx) % BK_RPO_SAMPLES];

		if (sample->important_lsn >= archived_end)
		{
			*usecs = Max(now - sample->time, 0);
			return true;
		}
	}
	/* The change is newer than the newest sample: less than a second. */
	*usecs = 0;
	return true;
}

/*
 * bk_interval_datum
 *		An interval of usecs microseconds.
 */
static Datum
bk_interval_datum(int64 usecs)
{
	Interval *interval = palloc0(sizeof(Interval));

	interval->time = usecs;
	return IntervalPGetDatum(interval);
}

/*
 * bk_text_or_null
 *		A text Datum, or NULL for a NULL or empty string.
 */
static Datum
bk_text_or_null(const char *text, bool *isnull)
{
	if (text == NULL || text[0] == '\0')
	{
		*isnull = true;
		return (Datum) 0;
	}
	return CStringGetTextDatum(text);
}

/*
 * bk_time_or_null
 *		A timestamptz Datum, or NULL for "never" (0).
 */
static Datum
bk_time_or_null(TimestampTz time, bool *isnull)
{
	if (time == 0)
	{
		*isnull = true;
		return (Datum) 0;
	}
	return TimestampTzGetDatum(time);
}
