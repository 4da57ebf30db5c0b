/*
 * bk_snapshot.c
 *		SELECT bk_snapshot(): online base backups streamed through Kafka.
 *
 * The backup runs in a dynamic background worker, not in the calling
 * backend.  A backup of a large cluster takes hours; a backend doing it would
 * hold a snapshot (and so an xmin that stops vacuum) for all that time and
 * would die with its session.  The worker takes no snapshot while it copies
 * files (it opens short transactions only to read and record the snapshot
 * history), survives the caller, and can be watched (bk_snapshot_progress)
 * and cancelled (bk_snapshot_cancel).
 *
 * Why not PostgreSQL's own BASE_BACKUP with a bk backup target: a backup
 * target (BaseBackupAddTarget) is reachable only through the replication
 * protocol, so SELECT bk_snapshot() could not start it without a
 * replication connection back to the server, and the incremental mode below
 * needs per-page decisions BASE_BACKUP cannot make.  So the worker drives
 * do_pg_backup_start/do_pg_backup_stop (the non-exclusive API pg_backup_start
 * uses) itself and applies the exclusion and checksum rules of PostgreSQL
 * 15's basebackup.c: pg_wal and the transient directories (pg_stat_tmp,
 * pg_replslot, pg_dynshmem, pg_notify, pg_serial, pg_snapshots,
 * pg_subtrans) are kept empty; postmaster.pid and friends, pgsql_tmp files,
 * temporary relations and the non-init forks of unlogged relations are
 * skipped; page checksums are verified as pages are read (a failing page is
 * read again once before it is reported); pg_control is read last.
 *
 * Everything is produced as objects of kind "snapshot", named and encoded as
 * docs/snapshot-format.md specifies, keyed by source and object name so
 * several shippers can share one snapshot.  backup_label and tablespace_map
 * go into the snapshot, never into the source's data directory.  The
 * snapshot record (snapshot.json) goes last: without it a snapshot is never
 * restorable, which is what a cancelled snapshot or a crash mid-snapshot
 * must leave behind.
 *
 * Parallel copying (bk.snapshot_jobs > 1): the worker lists the files into
 * a work list in dynamic shared memory and starts bk.snapshot_jobs - 1
 * helper workers.  Every process, the worker included, takes the next file
 * from the list (largest first, so the last files to finish are small ones),
 * sends it through a Kafka producer of its own, and writes what it found
 * (size, digest, pages, checksum failures) into the file's entry.  Helpers
 * report done only once Kafka acknowledged everything they sent; the worker
 * then reads pg_control, stops backup mode and writes the record from the
 * entries, in listing order.  A helper that fails or dies fails the
 * snapshot; a worker that fails stops its helpers first.
 *
 * Differential ("diff", parent = the last full) and incremental ("incr",
 * parent = the last snapshot of any kind) snapshots send the main forks of
 * relations the parent also had as the pages that changed: the page's LSN
 * is at or after the parent's start LSN, or its digest differs from the one
 * the parent kept for that block (bk_blockmap.c: PostgreSQL changes some
 * pages without moving their LSN), or the parent had no such block, or the
 * page claims an LSN beyond the current WAL position.  Everything else goes
 * whole (see the spec for why: visibility-map and free-space-map forks
 * change without a new page LSN, and FILE_COPY database creation copies
 * pages with old LSNs), and so does a main fork whose parent kept no
 * digests.  Pages are chosen in a first pass that also checksums the whole
 * file, and kept in a spool file under base/pgsql_tmp until they are sent,
 * so the object holds exactly the bytes that pass read.  Every snapshot
 * keeps the digests of every main fork page it read, for the next one.
 *
 * The history of snapshots (which one is the parent, and the parent's file
 * list) is kept in the extension's table bk_snapshot_history, the page
 * digests in bk_snapshot_blocks.
 *
 * Threads: as in the archive module, only this process's own thread calls
 * PostgreSQL.  The callbacks libbk calls while producing (reading the next
 * chunk, asking whether to stop) use plain system calls and pure functions
 * (pg_checksum_page) only, never ereport or palloc.
 */
#include "postgres.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "catalog/catalog.h"
#include "catalog/pg_type_d.h"
#include "common/relpath.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/bufpage.h"
#include "storage/checksum.h"
#include "storage/dsm.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "storage/reinit.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "bk.h"
#include "bk_crypto.h"
#include "bk_frame.h"
#include "bk_kafka.h"
#include "bk_topics.h"
#include "bk_util.h"

PG_FUNCTION_INFO_V1(bk_snapshot);
PG_FUNCTION_INFO_V1(bk_snapshot_cancel);
PG_FUNCTION_INFO_V1(bk_snapshot_progress);

/* Incremental file objects (docs/snapshot-format.md, section 2). */
#define INCR_MAGIC      "BKINCR01"
#define INCR_HEADER_LEN 24

/* Blocks read at a time when scanning a relation file. */
#define SCAN_BLOCKS 128

/* Checksum failures reported per file before we stop listing them. */
#define FAILURES_LISTED_PER_FILE 5

/* One file or directory found in the data directory. */
typedef struct SnapEntry
{
	char *path; /* relative to the data directory */
	bool is_dir;
	mode_t mode;
	time_t mtime;
	off_t size;
	bool checksummed;         /* a relation file whose pages carry checksums */
	bool main_fork;           /* a relation main fork: incremental candidate */
	BlockNumber segment_base; /* first block number of this segment file */
} SnapEntry;

/*
 * One file of the work list: what the listing found, then what copying it
 * found, written by the process that copied it.
 */
typedef struct SnapWorkItem
{
	Size path_offset; /* in the work list's path area */
	mode_t mode;
	time_t mtime;
	off_t size;
	bool checksummed;
	bool main_fork;
	bool parent_has; /* the parent snapshot has this file */
	BlockNumber segment_base;

	/* The outcome. */
	bool sent;     /* queued to Kafka (acknowledged once its sender is done) */
	bool vanished; /* gone before it was opened: not in the snapshot */
	bool incremental;
	bool no_parent_digests; /* the parent kept no digests: sent whole */
	int64 blocks;
	int64 objects;
	int64 bytes_read;
	int64 bytes_sent;
	int failures;
	BlockNumber failed_blocks[FAILURES_LISTED_PER_FILE];
	uint8 sha256[BK_SHA256_LEN];
} SnapWorkItem;

typedef enum SnapHelperState
{
	SNAP_HELPER_NOT_STARTED,
	SNAP_HELPER_COPYING,
	SNAP_HELPER_DONE, /* everything it sent is acknowledged */
	SNAP_HELPER_FAILED
} SnapHelperState;

/*
 * The work list, in dynamic shared memory: header, items, the order in
 * which they are handed out, then the paths.  The leader writes everything
 * before it starts helpers; afterwards the mutex protects next, stop and the
 * helper fields, and each item belongs to the process that took it.
 */
typedef struct SnapWork
{
	slock_t mutex;
	char source_id[BK_SOURCE_ID_MAX + 1];
	char snapshot_topic[BK_TOPIC_NAME_MAX + 1];
	XLogRecPtr start_lsn;
	XLogRecPtr parent_start_lsn;
	char parent_id[BK_SNAPSHOT_ID_LEN];       /* "" for a full snapshot */
	char blocks_table[BK_QUALIFIED_NAME_LEN]; /* the page digests */
	int count;                                /* items */
	int queued; /* entries of order[]: every item but pg_control */
	int next;   /* next entry of order[] to hand out */
	bool stop;  /* a process gave up: the others take no more files */
	SnapHelperState helper_state[BK_SNAPSHOT_MAX_JOBS];
	char helper_error[BK_FAILURE_LEN];
	Size order_offset;
	Size paths_offset;
	SnapWorkItem items[FLEXIBLE_ARRAY_MEMBER];
} SnapWork;

/* What a helper is told at start (in bgw_extra). */
typedef struct SnapHelperArgs
{
	int slot_index;
	int helper;
	dsm_handle work_handle;
} SnapHelperArgs;

/* Everything one snapshot run needs. */
typedef struct SnapRun
{
	BkSnapshotSlot *slot;
	char id[BK_SNAPSHOT_ID_LEN];
	char kind[8];
	char source_id[BK_SOURCE_ID_MAX + 1];
	char snapshot_topic[BK_TOPIC_NAME_MAX + 1];
	char audit_topic[BK_TOPIC_NAME_MAX + 1];

	char *history_table; /* quoted, in the extension's schema */
	char *blocks_table;  /* likewise: bk_snapshot_blocks */

	/* The work list (every process); the helpers sharing it (leader). */
	SnapWork *work;
	dsm_segment *work_segment;
	int helper;        /* -1 in the leader, else this helper's number */
	int control_index; /* pg_control's item, sent last; -1 if none */
	BackgroundWorkerHandle *helpers[BK_SNAPSHOT_MAX_JOBS];
	int helper_count;

	/* Parent (diff/incr). */
	char *parent_id;
	XLogRecPtr parent_start_lsn;
	char **parent_files; /* sorted, for bsearch */
	int parent_file_count;

	/* Page digests: of the file being read, of its parent, and the writer. */
	BkBlockMap map;
	BkBlockMap parent_map;
	BkBlockMapWriter map_writer;

	/* libbk objects (malloc'd by libbk). */
	BkProducer *producer;
	BkEncoder *encoder;
	uint32 chunk_size;
	uint8 *chunk_buffer; /* malloc'd, chunk_size bytes */
	uint8 *block_buffer; /* malloc'd, SCAN_BLOCKS * BLCKSZ */
	int spool_fd;
	char spool_path[MAXPGPATH];

	/* The backup. */
	XLogRecPtr start_lsn;
	XLogRecPtr stop_lsn;
	TimeLineID start_tli;
	TimeLineID stop_tli;
	TimestampTz start_time;
	TimestampTz stop_time;
	StringInfoData label;
	StringInfoData tablespace_map;
	bool backup_started;

	/* What the snapshot holds, as it is built. */
	List *entries; /* SnapEntry * */
	StringInfoData files_json;
	StringInfoData dirs_json;
	StringInfoData tablespaces_json;
	StringInfoData manifest_files;
	StringInfoData file_list; /* paths, one per line, for the history */
	StringInfoData failures_json;
	int64 files;
	int64 objects;
	int64 bytes;
	int64 bytes_read;
	int64 bytes_sent;
	int64 checksum_failures;
} SnapRun;

/*
 * The plaintext of one object, as the encoder pulls it chunk by chunk: an
 * optional in-memory part, then an optional part of a file (padded with
 * zeros if the file shrank while it was read: WAL replay rewrites whatever
 * changed).  Used from inside libbk callbacks: system calls only.
 */
typedef struct PlainSource
{
	SnapRun *run;
	const uint8 *mem;
	size_t mem_len;
	int fd;
	uint64 file_len;
	uint64 pos; /* plaintext bytes handed out so far */
	uint64 total;
	bool counts_as_read; /* the file part is data read (not the spool) */
	BkBlockMap *map;     /* page digests of the file part, or NULL */
	/* Checksum verification of a relation file's pages, as they are read. */
	bool verify;
	BlockNumber segment_base;
	int failures;
	BlockNumber failed_blocks[FAILURES_LISTED_PER_FILE];
	int read_errno; /* a read failed: reported after the send */
} PlainSource;

static int snap_allocate_slot(void);
static void snap_make_id(char *out, size_t len);
static void snap_fail_unfinished(BkSnapshotSlot *slot, const char *error);
static void snap_wait_for_worker(BkSnapshotSlot *slot,
								 BackgroundWorkerHandle *handle);
static Datum snap_result_datum(FunctionCallInfo fcinfo,
							   const BkSnapshotSlot *slot);
static void snap_run(SnapRun *run);
static void snap_prepare(SnapRun *run);
static void snap_take(SnapRun *run);
static void snap_walk(SnapRun *run, const char *path, bool in_database_dir,
					  bool in_tablespace);
static void snap_open_sender(SnapRun *run, const char *client_id);
static void snap_open_spool(SnapRun *run);
static void snap_close_spool(SnapRun *run);
static void snap_release(SnapRun *run);
static void snap_build_work(SnapRun *run);
static void snap_stop_on_exit(int code, Datum arg);
static void snap_request_stop(SnapWork *work);
static void snap_start_helpers(SnapRun *run);
static void snap_copy_share(SnapRun *run);
static void snap_wait_for_helpers(SnapRun *run);
static void snap_stop_helpers(SnapRun *run);
static void snap_send_file(SnapRun *run, SnapWorkItem *item);
static void snap_record_file(SnapRun *run, SnapWorkItem *item);
static bool snap_load_parent_map(SnapRun *run, const char *path);
static void snap_flush_maps(SnapRun *run);
static bool snap_scan_incremental(SnapRun *run, SnapWorkItem *item,
								  const char *path, int fd, int64 *blocks,
								  uint8 **header, size_t *header_len,
								  PlainSource *scan);
static void snap_send_object(SnapRun *run, const char *name, const char *meta,
							 PlainSource *source, const char *what,
							 bool batched);
static void snap_kafka_error(SnapRun *run, const BkError *err,
							 const char *what);
static void snap_send_memory(SnapRun *run, const char *part, const char *meta,
							 const char *content, size_t len,
							 uint8 digest[BK_SHA256_LEN]);
static void snap_audit(SnapRun *run, const char *json);
static void snap_finish_record(SnapRun *run, BkSnapshotState state,
							   const char *error);
static bool snap_next_frame(void *arg, const uint8_t **frame, size_t *len,
							BkFrame *info, BkError *err);
static bool snap_interrupted(void *arg);
static bool snap_check_block(PlainSource *source, uint8 *page,
							 BlockNumber blkno, off_t file_offset);
static void snap_encode_path(const char *path, StringInfo out);
static void snap_set_phase(BkSnapshotSlot *slot, const char *phase);
static void snap_add_progress(BkSnapshotSlot *slot, int64 read, int64 sent,
							  int64 files_done);
static char *snap_extension_table(const char *name);
static void snap_time_text(TimestampTz time, char *out, size_t len);
static void snap_fail_stale_history(SnapRun *run);
static const char *snap_state_name(BkSnapshotState state);
static int snap_cmp_str(const void *a, const void *b);

/* ------------------------------------------------------------ SQL side */

/*
 * bk_snapshot(kind, label, wait, fast)
 *		Start a snapshot in a background worker; by default wait for it.
 */
Datum
bk_snapshot(PG_FUNCTION_ARGS)
{
	text *kind_text = PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0);
	char *kind = kind_text ? text_to_cstring(kind_text) : "full";
	char *label = PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	bool wait = PG_ARGISNULL(2) ? true : PG_GETARG_BOOL(2);
	bool fast = PG_ARGISNULL(3) ? true : PG_GETARG_BOOL(3);
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	BkSnapshotSlot *slot;
	BkSnapshotSlot copy;
	int slot_index;

	if (strcmp(kind, "full") != 0 && strcmp(kind, "diff") != 0 &&
		strcmp(kind, "incr") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid snapshot kind \"%s\"", kind),
				 errhint("Use 'full', 'diff' (changes since the last full "
						 "snapshot) or 'incr' (changes since the last "
						 "snapshot).")));
	if (strlen(label) >= BK_SNAPSHOT_LABEL_LEN)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("snapshot label is too long"),
						errdetail("A label is at most %d bytes.",
								  BK_SNAPSHOT_LABEL_LEN - 1)));
	for (const char *c = label; *c; c++)
		if ((unsigned char) *c < 0x20 || *c == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("snapshot label contains a control character")));
	if (bk_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bk snapshots are not available"),
				 errdetail("The bk library was not loaded through "
						   "shared_preload_libraries."),
				 errhint("Add bk to shared_preload_libraries and restart the "
						 "server.")));
	if (RecoveryInProgress())
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("bk snapshots cannot be taken during recovery"),
						errhint("Take the snapshot on the primary.")));
	if (bk_kafka_brokers == NULL || bk_kafka_brokers[0] == '\0' ||
		bk_key_file == NULL || bk_key_file[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bk is not configured"),
				 errhint("Set bk.kafka_brokers and bk.key_file, and reload.")));

	slot_index = snap_allocate_slot();
	slot = &bk_shared->snapshots[slot_index];

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags =
		BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "bk", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "bk_snapshot_worker_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "bk snapshot %s", slot->id);
	strlcpy(worker.bgw_type, "bk snapshot", BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(slot_index);
	worker.bgw_notify_pid = MyProcPid;

	SpinLockAcquire(&bk_shared->mutex);
	strlcpy(slot->kind, kind, sizeof(slot->kind));
	strlcpy(slot->label, label, sizeof(slot->label));
	slot->fast = fast;
	slot->jobs = bk_snapshot_jobs;
	slot->database = MyDatabaseId;
	SpinLockRelease(&bk_shared->mutex);

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		SpinLockAcquire(&bk_shared->mutex);
		slot->state = BK_SNAPSHOT_FREE;
		SpinLockRelease(&bk_shared->mutex);
		ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						errmsg("could not start the bk snapshot worker"),
						errhint("Raise max_worker_processes.")));
	}

	if (wait)
		snap_wait_for_worker(slot, handle);

	SpinLockAcquire(&bk_shared->mutex);
	copy = *slot;
	SpinLockRelease(&bk_shared->mutex);
	if (wait && copy.state == BK_SNAPSHOT_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("bk snapshot %s failed", copy.id),
				 errdetail("%s", copy.error),
				 copy.error_hint[0] ? errhint("%s", copy.error_hint) : 0));
	if (wait && copy.state == BK_SNAPSHOT_CANCELLED)
		ereport(ERROR, (errcode(ERRCODE_QUERY_CANCELED),
						errmsg("bk snapshot %s was cancelled", copy.id)));
	return snap_result_datum(fcinfo, &copy);
}

/*
 * snap_allocate_slot
 *		A slot for a new snapshot: refuse while one runs, reuse the oldest
 *		finished one when none is free.
 */
static int
snap_allocate_slot(void)
{
	int chosen = -1;
	TimestampTz oldest = 0;
	char id[BK_SNAPSHOT_ID_LEN];
	char running[BK_SNAPSHOT_ID_LEN] = "";

	snap_make_id(id, sizeof(id));
	SpinLockAcquire(&bk_shared->mutex);
	for (int slotIdx = 0; slotIdx < BK_SNAPSHOT_SLOTS; slotIdx++)
	{
		BkSnapshotSlot *slot = &bk_shared->snapshots[slotIdx];

		if (slot->state == BK_SNAPSHOT_STARTING ||
			slot->state == BK_SNAPSHOT_RUNNING)
		{
			strlcpy(running, slot->id, sizeof(running));
			break;
		}
		if (slot->state == BK_SNAPSHOT_FREE)
		{
			if (chosen < 0 ||
				bk_shared->snapshots[chosen].state != BK_SNAPSHOT_FREE)
				chosen = slotIdx;
		}
		else if (chosen < 0 ||
				 (bk_shared->snapshots[chosen].state != BK_SNAPSHOT_FREE &&
				  slot->requested_time < oldest))
		{
			chosen = slotIdx;
			oldest = slot->requested_time;
		}
	}
	if (running[0] == '\0')
	{
		BkSnapshotSlot *slot = &bk_shared->snapshots[chosen];

		memset(slot, 0, sizeof(*slot));
		slot->state = BK_SNAPSHOT_STARTING;
		strlcpy(slot->id, id, sizeof(slot->id));
		strlcpy(slot->phase, "starting", sizeof(slot->phase));
		slot->requested_time = GetCurrentTimestamp();
	}
	SpinLockRelease(&bk_shared->mutex);
	if (running[0] != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("bk snapshot %s is already running", running),
				 errhint("Wait for it (bk_snapshot_progress), or cancel it "
						 "with bk_snapshot_cancel('%s').",
						 running)));
	return chosen;
}

/* "YYYYMMDDTHHMMSSZ-xxxxxxxx": sorts by start time, unique. */
static void
snap_make_id(char *out, size_t len)
{
	pg_time_t now = (pg_time_t) time(NULL);
	struct pg_tm *tm = pg_gmtime(&now);
	uint8 random[4];
	char hex[9];

	if (!pg_strong_random(random, sizeof(random)))
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
						errmsg("could not generate a random snapshot id")));
	bk_hex_encode(random, sizeof(random), hex);
	snprintf(out, len, "%04d%02d%02dT%02d%02d%02dZ-%s", tm->tm_year + 1900,
			 tm->tm_mon + 1, tm->tm_mday, tm->tm_hour, tm->tm_min, tm->tm_sec,
			 hex);
}

/*
 * snap_fail_unfinished
 *		Fail a snapshot whose worker is gone (or going) without having
 *		recorded how it ended; an ended snapshot keeps its outcome.
 */
static void
snap_fail_unfinished(BkSnapshotSlot *slot, const char *error)
{
	SpinLockAcquire(&bk_shared->mutex);
	if (slot->state == BK_SNAPSHOT_STARTING ||
		slot->state == BK_SNAPSHOT_RUNNING)
	{
		slot->state = BK_SNAPSHOT_FAILED;
		slot->stop_time = GetCurrentTimestamp();
		strlcpy(slot->phase, "failed", sizeof(slot->phase));
		strlcpy(slot->error, error, sizeof(slot->error));
	}
	SpinLockRelease(&bk_shared->mutex);
}

/*
 * snap_wait_for_worker
 *		Wait until the snapshot ends.  Cancelling this wait (Ctrl-C) does not
 *		cancel the snapshot: it runs on in its worker.
 */
static void
snap_wait_for_worker(BkSnapshotSlot *slot, BackgroundWorkerHandle *handle)
{
	for (;;)
	{
		BkSnapshotState state;
		pid_t pid;

		SpinLockAcquire(&bk_shared->mutex);
		state = slot->state;
		SpinLockRelease(&bk_shared->mutex);
		if (state == BK_SNAPSHOT_COMPLETE || state == BK_SNAPSHOT_FAILED ||
			state == BK_SNAPSHOT_CANCELLED)
			return;
		if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
		{
			/* The worker is gone and never said how it ended: it died. */
			snap_fail_unfinished(slot,
								 "the snapshot worker exited unexpectedly");
			return;
		}
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 200L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

static const char *
snap_state_name(BkSnapshotState state)
{
	switch (state)
	{
		case BK_SNAPSHOT_FREE:
			return "free";
		case BK_SNAPSHOT_STARTING:
			return "starting";
		case BK_SNAPSHOT_RUNNING:
			return "running";
		case BK_SNAPSHOT_COMPLETE:
			return "complete";
		case BK_SNAPSHOT_FAILED:
			return "failed";
		case BK_SNAPSHOT_CANCELLED:
			return "cancelled";
	}
	return "unknown";
}

/* The row bk_snapshot() returns. */
static Datum
snap_result_datum(FunctionCallInfo fcinfo, const BkSnapshotSlot *slot)
{
	TupleDesc tupdesc;
	Datum values[12];
	bool nulls[12];

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	memset(nulls, 0, sizeof(nulls));
	values[0] = CStringGetTextDatum(slot->id);
	values[1] = CStringGetTextDatum(slot->kind);
	values[2] = slot->parent[0] ? CStringGetTextDatum(slot->parent) : (Datum) 0;
	nulls[2] = slot->parent[0] == '\0';
	values[3] = CStringGetTextDatum(snap_state_name(slot->state));
	values[4] = LSNGetDatum(slot->start_lsn);
	nulls[4] = XLogRecPtrIsInvalid(slot->start_lsn);
	values[5] = LSNGetDatum(slot->stop_lsn);
	nulls[5] = XLogRecPtrIsInvalid(slot->stop_lsn);
	values[6] = TimestampTzGetDatum(slot->start_time);
	nulls[6] = slot->start_time == 0;
	values[7] = TimestampTzGetDatum(slot->stop_time);
	nulls[7] = slot->stop_time == 0;
	values[8] = Int64GetDatum(slot->files_done);
	values[9] = Int64GetDatum(slot->bytes_read);
	values[10] = Int64GetDatum(slot->bytes_sent);
	values[11] = slot->label[0] ? CStringGetTextDatum(slot->label) : (Datum) 0;
	nulls[11] = slot->label[0] == '\0';
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/*
 * bk_snapshot_cancel(id)
 *		Ask a running snapshot to stop: backup mode ends, the snapshot is
 *		marked cancelled and never becomes restorable.
 */
Datum
bk_snapshot_cancel(PG_FUNCTION_ARGS)
{
	char *id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int pid = 0;
	bool found = false;

	if (bk_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bk snapshots are not available"),
				 errhint("Add bk to shared_preload_libraries and restart the "
						 "server.")));
	SpinLockAcquire(&bk_shared->mutex);
	for (int slotIdx = 0; slotIdx < BK_SNAPSHOT_SLOTS; slotIdx++)
	{
		BkSnapshotSlot *slot = &bk_shared->snapshots[slotIdx];

		if (strcmp(slot->id, id) != 0 || (slot->state != BK_SNAPSHOT_STARTING &&
										  slot->state != BK_SNAPSHOT_RUNNING))
			continue;
		slot->cancel_requested = true;
		pid = slot->pid;
		found = true;
	}
	SpinLockRelease(&bk_shared->mutex);
	if (!found)
	{
		ereport(NOTICE, (errmsg("no running bk snapshot \"%s\"", id)));
		PG_RETURN_BOOL(false);
	}
	/* SIGINT cancels whatever the worker waits on (a checkpoint, Kafka). */
	if (pid != 0)
		kill(pid, SIGINT);
	PG_RETURN_BOOL(true);
}

/*
 * bk_snapshot_progress()
 *		The running snapshot and the recent ones, from shared memory.
 */
Datum
bk_snapshot_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	BkSnapshotSlot slots[BK_SNAPSHOT_SLOTS];

	if (bk_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bk snapshots are not available"),
				 errhint("Add bk to shared_preload_libraries and restart the "
						 "server.")));
	InitMaterializedSRF(fcinfo, 0);
	SpinLockAcquire(&bk_shared->mutex);
	memcpy(slots, bk_shared->snapshots, sizeof(slots));
	SpinLockRelease(&bk_shared->mutex);

	for (int slotIdx = 0; slotIdx < BK_SNAPSHOT_SLOTS; slotIdx++)
	{
		const BkSnapshotSlot *slot = &slots[slotIdx];
		Datum values[17];
		bool nulls[17];

		if (slot->state == BK_SNAPSHOT_FREE)
			continue;
		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(slot->id);
		values[1] = CStringGetTextDatum(slot->kind);
		values[2] =
			slot->parent[0] ? CStringGetTextDatum(slot->parent) : (Datum) 0;
		nulls[2] = slot->parent[0] == '\0';
		values[3] = CStringGetTextDatum(snap_state_name(slot->state));
		values[4] = CStringGetTextDatum(slot->phase);
		values[5] = Int32GetDatum(slot->pid);
		nulls[5] = slot->pid == 0 || (slot->state != BK_SNAPSHOT_RUNNING &&
									  slot->state != BK_SNAPSHOT_STARTING);
		values[6] = LSNGetDatum(slot->start_lsn);
		nulls[6] = XLogRecPtrIsInvalid(slot->start_lsn);
		values[7] = LSNGetDatum(slot->stop_lsn);
		nulls[7] = XLogRecPtrIsInvalid(slot->stop_lsn);
		values[8] = TimestampTzGetDatum(slot->start_time);
		nulls[8] = slot->start_time == 0;
		values[9] = TimestampTzGetDatum(slot->stop_time);
		nulls[9] = slot->stop_time == 0;
		values[10] = Int64GetDatum(slot->files_done);
		values[11] = Int64GetDatum(slot->files_total);
		values[12] = Int64GetDatum(slot->bytes_read);
		values[13] = Int64GetDatum(slot->bytes_total);
		values[14] = Int64GetDatum(slot->bytes_sent);
		values[15] = Int64GetDatum(slot->checksum_failures);
		values[16] =
			slot->error[0] ? CStringGetTextDatum(slot->error) : (Datum) 0;
		nulls[16] = slot->error[0] == '\0';
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ------------------------------------------------------------ the worker */

/*
 * bk_snapshot_worker_main
 *		Take the snapshot described by shared-memory slot main_arg.
 */
void
bk_snapshot_worker_main(Datum main_arg)
{
	int slot_index = DatumGetInt32(main_arg);
	SnapRun *run;

	pqsignal(SIGTERM, die);
	pqsignal(SIGINT, StatementCancelHandler);
	BackgroundWorkerUnblockSignals();
	if (bk_shared == NULL || slot_index < 0 || slot_index >= BK_SNAPSHOT_SLOTS)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
						errmsg("bk snapshot worker started without its slot")));
	BackgroundWorkerInitializeConnectionByOid(
		bk_shared->snapshots[slot_index].database, InvalidOid, 0);

	run = MemoryContextAllocZero(TopMemoryContext, sizeof(SnapRun));
	run->slot = &bk_shared->snapshots[slot_index];
	run->spool_fd = -1;
	run->helper = -1;
	run->control_index = -1;
	SpinLockAcquire(&bk_shared->mutex);
	strlcpy(run->id, run->slot->id, sizeof(run->id));
	strlcpy(run->kind, run->slot->kind, sizeof(run->kind));
	run->slot->pid = MyProcPid;
	run->slot->state = BK_SNAPSHOT_RUNNING;
	SpinLockRelease(&bk_shared->mutex);
	pgstat_report_activity(STATE_RUNNING, run->id);

	/*
	 * However this process ends (FATAL too), its helpers stop with it.
	 * Registered here, before PG_ENSURE_ERROR_CLEANUP registers (and
	 * cancels) its own callback, which must be the latest one.
	 */
	before_shmem_exit(snap_stop_on_exit, PointerGetDatum(run));
	snap_run(run);
	proc_exit(0);
}

/*
 * snap_run
 *		Prepare, take and record the snapshot; on any error, end backup mode
 *		(done by do_pg_backup_start's and our error cleanup), and record the
 *		snapshot as failed or cancelled, everywhere it is visible.
 */
static void
snap_run(SnapRun *run)
{
	MemoryContext context = CurrentMemoryContext;

	PG_TRY();
	{
		snap_prepare(run);
		snap_take(run);
		snap_finish_record(run, BK_SNAPSHOT_COMPLETE, NULL);
	}
	PG_CATCH();
	{
		ErrorData *edata;
		bool cancelled = run->slot->cancel_requested;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();

		/*
		 * The cancel request (SIGINT) has done its work; left pending, it
		 * would interrupt the bookkeeping below too (any ereport, even LOG,
		 * checks for interrupts).  Recording the outcome must not be
		 * interrupted either.
		 */
		QueryCancelPending = false;
		HOLD_INTERRUPTS();
		AbortOutOfAnyTransaction();
		snap_stop_helpers(run);
		snap_close_spool(run);
		ereport(cancelled ? LOG : WARNING,
				(errmsg("bk: snapshot %s %s", run->id,
						cancelled ? "cancelled" : "failed"),
				 errdetail("%s", edata->message),
				 get_backup_status() == SESSION_BACKUP_NONE
					 ? errhint("Backup mode has ended; this snapshot will "
							   "never be restorable.")
					 : errhint("Backup mode is still active.")));
		if (edata->hint != NULL)
		{
			SpinLockAcquire(&bk_shared->mutex);
			strlcpy(run->slot->error_hint, edata->hint,
					sizeof(run->slot->error_hint));
			SpinLockRelease(&bk_shared->mutex);
		}
		snap_finish_record(
			run, cancelled ? BK_SNAPSHOT_CANCELLED : BK_SNAPSHOT_FAILED,
			edata->message);
		RESUME_INTERRUPTS();
	}
	PG_END_TRY();
	snap_release(run);
}

/*
 * snap_open_sender
 *		What a process needs to send files: the key, a Kafka producer of its
 *		own, an encoder, buffers.
 */
static void
snap_open_sender(SnapRun *run, const char *client_id)
{
	BkKafkaSettings settings;
	const BkKey *key;
	BkError err;

	bk_error_clear(&err);
	if (!bk_source_key(&key, &err))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR), errmsg("%s", err.message),
				 err.hint[0] ? errhint("%s", err.hint) : 0));
	bk_source_kafka_settings(&settings, client_id);
	run->chunk_size = (uint32) bk_chunk_size;
	run->producer = bk_producer_new(&settings, &err);
	if (run->producer != NULL)
		run->encoder = bk_encoder_new(key, run->chunk_size, &err);
	if (run->encoder == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR), errmsg("%s", err.message),
				 err.hint[0] ? errhint("%s", err.hint) : 0));
	run->chunk_buffer = malloc(run->chunk_size);
	run->block_buffer = malloc((size_t) SCAN_BLOCKS * BLCKSZ);
	if (run->chunk_buffer == NULL || run->block_buffer == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
}

/*
 * snap_open_spool
 *		A spool file for the pages of incremental files, under
 *		base/pgsql_tmp: excluded from snapshots, removed at server start.
 */
static void
snap_open_spool(SnapRun *run)
{
	MakePGDirectory("base/" PG_TEMP_FILES_DIR);
	snprintf(run->spool_path, sizeof(run->spool_path),
			 "base/%s/%s_bk_snapshot.%d", PG_TEMP_FILES_DIR,
			 PG_TEMP_FILE_PREFIX, MyProcPid);
	run->spool_fd =
		open(run->spool_path, O_RDWR | O_CREAT | O_TRUNC | PG_BINARY, 0600);
	if (run->spool_fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create \"%s\": %m", run->spool_path)));
}

static void
snap_close_spool(SnapRun *run)
{
	if (run->spool_fd >= 0)
	{
		close(run->spool_fd);
		unlink(run->spool_path);
		run->spool_fd = -1;
	}
}

/* Free what snap_open_sender made. */
static void
snap_release(SnapRun *run)
{
	bk_producer_free(run->producer);
	run->producer = NULL;
	bk_encoder_free(run->encoder);
	run->encoder = NULL;
	free(run->chunk_buffer);
	run->chunk_buffer = NULL;
	free(run->block_buffer);
	run->block_buffer = NULL;
	bk_blockmap_release(&run->map);
	bk_blockmap_release(&run->parent_map);
	bk_kafka_log_flush();
}

/* Run SQL with parameters in a transaction of its own, through SPI. */
static void
snap_sql_begin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
snap_sql_end(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
}

/*
 * snap_extension_table
 *		"schema.name", quoted, for a table of the extension; an error that
 *		says what to do if the installed extension predates the table.
 */
static char *
snap_extension_table(const char *name)
{
	char *schema;
	bool exists;
	bool isnull;

	/* Inside the worker's SPI transaction (snap_sql_begin). */
	if (SPI_execute_with_args(
			"SELECT n.nspname, EXISTS (SELECT FROM pg_catalog.pg_class c "
			"WHERE c.relnamespace = n.oid AND c.relname = $1) "
			"FROM pg_catalog.pg_extension e "
			"JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
			"WHERE e.extname = 'bk'",
			1, (Oid[]){TEXTOID}, (Datum[]){CStringGetTextDatum(name)}, NULL,
			true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"bk\" is not installed in this database")));
	schema = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	exists = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 2, &isnull));
	if (!exists)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"bk\" in this database is older than its "
						"library: table \"%s\" is missing",
						name),
				 errhint("Run ALTER EXTENSION bk UPDATE.")));
	return quote_qualified_identifier(schema, name);
}

/*
 * snap_fail_stale_history
 *		Rows still "running" whose snapshot is no longer running (the server
 *		crashed, or the worker died) are marked failed.
 */
static void
snap_fail_stale_history(SnapRun *run)
{
	StringInfoData sql;
	char *running[BK_SNAPSHOT_SLOTS];
	int running_count = 0;
	Datum ids;

	SpinLockAcquire(&bk_shared->mutex);
	for (int slotIdx = 0; slotIdx < BK_SNAPSHOT_SLOTS; slotIdx++)
		if (bk_shared->snapshots[slotIdx].state == BK_SNAPSHOT_RUNNING ||
			bk_shared->snapshots[slotIdx].state == BK_SNAPSHOT_STARTING)
			running[running_count++] =
				pstrdup(bk_shared->snapshots[slotIdx].id);
	SpinLockRelease(&bk_shared->mutex);
	{
		Datum *elems = palloc(sizeof(Datum) * (running_count + 1));

		for (int idx = 0; idx < running_count; idx++)
			elems[idx] = CStringGetTextDatum(running[idx]);
		ids = PointerGetDatum(construct_array(elems, running_count, TEXTOID, -1,
											  false, TYPALIGN_INT));
	}
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "UPDATE %s SET state = 'failed', stop_time = now(), "
					 "error = 'interrupted: the server or the snapshot "
					 "worker stopped while it ran' "
					 "WHERE state = 'running' AND snapshot_id <> ALL ($1)",
					 run->history_table);
	if (SPI_execute_with_args(sql.data, 1, (Oid[]){TEXTARRAYOID}, &ids, NULL,
							  false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update the snapshot history");
}

/*
 * snap_prepare
 *		Settings, key, producer; the parent (for diff/incr) and its file
 *		list; a "running" row in the history.
 */
static void
snap_prepare(SnapRun *run)
{
	BkError err;
	StringInfoData sql;
	char *table;

	bk_error_clear(&err);
	snap_set_phase(run->slot, "preparing");
	bk_effective_source_id(run->source_id, sizeof(run->source_id));
	if (!bk_topic_name(bk_topic_prefix, BK_TOPIC_SNAPSHOT, run->snapshot_topic,
					   sizeof(run->snapshot_topic), &err) ||
		!bk_topic_name(bk_topic_prefix, BK_TOPIC_AUDIT, run->audit_topic,
					   sizeof(run->audit_topic), &err))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR), errmsg("%s", err.message),
				 err.hint[0] ? errhint("%s", err.hint) : 0));
	snap_open_sender(run, "bk-snapshot");

	initStringInfo(&run->label);
	initStringInfo(&run->tablespace_map);
	initStringInfo(&run->files_json);
	initStringInfo(&run->dirs_json);
	initStringInfo(&run->tablespaces_json);
	initStringInfo(&run->manifest_files);
	initStringInfo(&run->file_list);
	initStringInfo(&run->failures_json);

	snap_sql_begin();
	/* SPI calls switch to SPI's own context: copy what must outlive it. */
	run->history_table = MemoryContextStrdup(
		TopMemoryContext, snap_extension_table("bk_snapshot_history"));
	run->blocks_table = MemoryContextStrdup(
		TopMemoryContext, snap_extension_table("bk_snapshot_blocks"));
	table = run->history_table;
	snap_fail_stale_history(run);
	bk_blockmap_prune(run->blocks_table, run->history_table);
	bk_blockmap_writer_init(&run->map_writer, run->blocks_table, run->id);
	if (strcmp(run->kind, "full") != 0)
	{
		initStringInfo(&sql);
		appendStringInfo(&sql,
						 "SELECT snapshot_id, start_lsn, file_list FROM %s "
						 "WHERE state = 'complete' AND ($1 OR kind = 'full') "
						 "ORDER BY start_time DESC LIMIT 1",
						 table);
		if (SPI_execute_with_args(
				sql.data, 1, (Oid[]){BOOLOID},
				(Datum[]){BoolGetDatum(strcmp(run->kind, "incr") == 0)}, NULL,
				true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read the snapshot history");
		if (SPI_processed == 0)
			ereport(
				ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no complete snapshot to base a%s %s snapshot on",
						strcmp(run->kind, "incr") == 0 ? "n" : "", run->kind),
				 errhint("Take a full snapshot first: SELECT * FROM "
						 "bk_snapshot('full').")));
		else
		{
			HeapTuple tuple = SPI_tuptable->vals[0];
			TupleDesc desc = SPI_tuptable->tupdesc;
			bool isnull;
			char *files;
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			run->parent_id = SPI_getvalue(tuple, desc, 1);
			run->parent_start_lsn =
				DatumGetLSN(SPI_getbinval(tuple, desc, 2, &isnull));
			files = SPI_getvalue(tuple, desc, 3);
			run->parent_file_count = 0;
			run->parent_files =
				palloc(sizeof(char *) * (strlen(files ? files : "") / 2 + 1));
			for (char *line = files ? strtok(files, "\n") : NULL; line != NULL;
				 line = strtok(NULL, "\n"))
				run->parent_files[run->parent_file_count++] = line;
			qsort(run->parent_files, run->parent_file_count, sizeof(char *),
				  snap_cmp_str);
			MemoryContextSwitchTo(old);
			SpinLockAcquire(&bk_shared->mutex);
			strlcpy(run->slot->parent, run->parent_id,
					sizeof(run->slot->parent));
			SpinLockRelease(&bk_shared->mutex);
		}
	}
	initStringInfo(&sql);
	appendStringInfo(
		&sql,
		"INSERT INTO %s (snapshot_id, kind, parent_id, state, label, "
		"requested_time) VALUES ($1, $2, $3, 'running', "
		"NULLIF($4, ''), now())",
		table);
	if (SPI_execute_with_args(
			sql.data, 4, (Oid[]){TEXTOID, TEXTOID, TEXTOID, TEXTOID},
			(Datum[]){CStringGetTextDatum(run->id),
					  CStringGetTextDatum(run->kind),
					  run->parent_id ? CStringGetTextDatum(run->parent_id)
									 : (Datum) 0,
					  CStringGetTextDatum(run->slot->label)},
			run->parent_id ? NULL : "  n ", false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the snapshot in its history");
	snap_sql_end();
}

static int
snap_cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static bool
snap_parent_has(SnapRun *run, const char *path)
{
	return run->parent_files != NULL &&
		   bsearch(&path, run->parent_files, run->parent_file_count,
				   sizeof(char *), snap_cmp_str) != NULL;
}

/*
 * snap_take
 *		Backup start, every file, backup stop, then the snapshot's own
 *		objects: label, tablespace map, manifest, and the record last.
 */
static void
snap_take(SnapRun *run)
{
	List *tablespaces = NIL;
	StringInfoData json;
	StringInfoData meta;
	char start_time[64];
	char stop_time[64];
	char lsn[32];

	/* Announce it; without Kafka there is no point in starting backup mode. */
	initStringInfo(&json);
	appendStringInfoString(&json, "{\"event\":\"snapshot-begin\",\"source\":");
	escape_json(&json, run->source_id);
	appendStringInfoString(&json, ",\"snapshot\":");
	escape_json(&json, run->id);
	appendStringInfoString(&json, ",\"kind\":");
	escape_json(&json, run->kind);
	if (run->parent_id)
	{
		appendStringInfoString(&json, ",\"parent\":");
		escape_json(&json, run->parent_id);
	}
	appendStringInfoString(&json, ",\"label\":");
	escape_json(&json, run->slot->label);
	snap_time_text(GetCurrentTimestamp(), start_time, sizeof(start_time));
	appendStringInfo(&json, ",\"time\":\"%s\"}", start_time);
	snap_audit(run, json.data);

	snap_set_phase(run->slot, run->slot->fast ? "checkpoint (fast)"
											  : "checkpoint (spread)");
	run->start_lsn =
		do_pg_backup_start(run->id, run->slot->fast, &run->start_tli,
						   &run->label, &tablespaces, &run->tablespace_map);
	run->backup_started = true;
	run->start_time = GetCurrentTimestamp();

	PG_ENSURE_ERROR_CLEANUP(do_pg_abort_backup, BoolGetDatum(false));
	{
		SpinLockAcquire(&bk_shared->mutex);
		run->slot->start_lsn = run->start_lsn;
		run->slot->start_time = run->start_time;
		SpinLockRelease(&bk_shared->mutex);

		/* Find every file first, so progress knows the total. */
		snap_set_phase(run->slot, "listing files");
		snap_walk(run, ".", false, false);
		snap_build_work(run);
		if (strcmp(run->kind, "full") != 0)
			snap_open_spool(run);
		snap_start_helpers(run);

		/*
		 * Our share of the files goes out as one batch: queued back to back,
		 * acknowledged together, so small files do not each wait for a
		 * broker round trip.  pg_control goes last, once every other file
		 * has been read, as PostgreSQL's own base backup sends it.
		 */
		snap_set_phase(run->slot, "copying files");
		snap_copy_share(run);
		if (run->helper_count > 0)
		{
			snap_set_phase(run->slot, "waiting for helpers");
			snap_wait_for_helpers(run);
		}
		if (run->control_index >= 0)
			snap_send_file(run, &run->work->items[run->control_index]);
		snap_set_phase(run->slot, "waiting for Kafka");
		{
			BkError err;

			bk_error_clear(&err);
			if (!bk_producer_batch_wait(run->producer, snap_interrupted, run,
										NULL, &err))
				snap_kafka_error(run, &err, "the data files");
		}
		snap_close_spool(run);

		snap_set_phase(run->slot, "stopping backup");
		run->stop_lsn =
			do_pg_backup_stop(run->label.data, false, &run->stop_tli);
		run->backup_started = false;
	}
	PG_END_ENSURE_ERROR_CLEANUP(do_pg_abort_backup, BoolGetDatum(false));

	/* The record's entries, the manifest's lines, in listing order. */
	run->bytes_read = 0;
	run->bytes_sent = 0;
	for (int idx = 0; idx < run->work->count; idx++)
		if (idx != run->control_index)
			snap_record_file(run, &run->work->items[idx]);
	if (run->control_index >= 0)
		snap_record_file(run, &run->work->items[run->control_index]);
	{
		int whole = 0;

		for (int idx = 0; idx < run->work->count; idx++)
			if (run->work->items[idx].no_parent_digests)
				whole++;
		if (whole > 0)
			ereport(LOG,
					(errmsg("bk: snapshot %s sent %d relation file%s whole: "
							"snapshot %s kept no page digests for %s",
							run->id, whole, whole == 1 ? "" : "s",
							run->parent_id, whole == 1 ? "it" : "them"),
					 errdetail("Page digests are kept in the unlogged table "
							   "bk_snapshot_blocks: a crash empties it, and "
							   "snapshots taken before bk 0.2 have none.")));
	}
	run->stop_time = GetCurrentTimestamp();
	SpinLockAcquire(&bk_shared->mutex);
	run->slot->stop_lsn = run->stop_lsn;
	SpinLockRelease(&bk_shared->mutex);

	/* The snapshot's own objects. */
	snap_set_phase(run->slot, "sending label, map and manifest");
	{
		uint8 label_digest[BK_SHA256_LEN];
		uint8 map_digest[BK_SHA256_LEN];
		uint8 manifest_digest[BK_SHA256_LEN];
		char hex[2 * BK_SHA256_LEN + 1];
		StringInfoData manifest;
		uint8 checksum[BK_SHA256_LEN];
		BkError err;
		char now_text[64];
		pg_time_t now = (pg_time_t) time(NULL);

		snap_send_memory(run, "backup_label", "", run->label.data,
						 run->label.len, label_digest);
		snap_send_memory(run, "tablespace_map", "", run->tablespace_map.data,
						 run->tablespace_map.len, map_digest);

		/* PostgreSQL's backup_manifest format: pg_verifybackup reads it. */
		pg_strftime(now_text, sizeof(now_text), "%Y-%m-%d %H:%M:%S GMT",
					pg_gmtime(&now));
		initStringInfo(&manifest);
		appendStringInfoString(&manifest,
							   "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n"
							   "\"Files\": [\n");
		bk_hex_encode(label_digest, BK_SHA256_LEN, hex);
		appendStringInfo(&manifest,
						 "{ \"Path\": \"backup_label\", \"Size\": %d, "
						 "\"Last-Modified\": \"%s\", \"Checksum-Algorithm\": "
						 "\"SHA256\", \"Checksum\": \"%s\" }",
						 run->label.len, now_text, hex);
		if (run->tablespace_map.len > 0)
		{
			bk_hex_encode(map_digest, BK_SHA256_LEN, hex);
			appendStringInfo(
				&manifest,
				",\n{ \"Path\": \"tablespace_map\", \"Size\": %d, "
				"\"Last-Modified\": \"%s\", \"Checksum-Algorithm\": "
				"\"SHA256\", \"Checksum\": \"%s\" }",
				run->tablespace_map.len, now_text, hex);
		}
		appendBinaryStringInfo(&manifest, run->manifest_files.data,
							   run->manifest_files.len);
		appendStringInfo(
			&manifest,
			"\n],\n\"WAL-Ranges\": [\n{ \"Timeline\": %u, "
			"\"Start-LSN\": \"%X/%X\", \"End-LSN\": \"%X/%X\" }\n],\n",
			run->start_tli, LSN_FORMAT_ARGS(run->start_lsn),
			LSN_FORMAT_ARGS(run->stop_lsn));
		/* The checksum covers everything up to the last line. */
		if (!bk_sha256(manifest.data, manifest.len, checksum, &err))
			ereport(ERROR, (errmsg("%s", err.message)));
		bk_hex_encode(checksum, BK_SHA256_LEN, hex);
		appendStringInfo(&manifest, "\"Manifest-Checksum\": \"%s\"}\n", hex);
		snap_send_memory(run, "backup_manifest", "", manifest.data,
						 manifest.len, manifest_digest);
	}

	/* The record, last: its arrival is what makes the snapshot complete. */
	snap_set_phase(run->slot, "sending record");
	snap_time_text(run->start_time, start_time, sizeof(start_time));
	snap_time_text(run->stop_time, stop_time, sizeof(stop_time));
	initStringInfo(&json);
	appendStringInfoString(&json, "{\"format\":1,\"snapshot\":");
	escape_json(&json, run->id);
	appendStringInfoString(&json, ",\"source\":");
	escape_json(&json, run->source_id);
	appendStringInfoString(&json, ",\"kind\":");
	escape_json(&json, run->kind);
	appendStringInfoString(&json, ",\"parent\":");
	if (run->parent_id)
		escape_json(&json, run->parent_id);
	else
		appendStringInfoString(&json, "null");
	appendStringInfoString(&json, ",\"label\":");
	escape_json(&json, run->slot->label);
	appendStringInfo(&json,
					 ",\"start_lsn\":\"%X/%X\",\"stop_lsn\":\"%X/%X\","
					 "\"start_timeline\":%u,\"stop_timeline\":%u,"
					 "\"start_time\":\"%s\",\"stop_time\":\"%s\","
					 "\"system_identifier\":\"" UINT64_FORMAT "\","
					 "\"pg_version\":%d,\"segment_size\":%d,\"block_size\":%d,"
					 "\"data_checksums\":%s,\"page_digests\":true,",
					 LSN_FORMAT_ARGS(run->start_lsn),
					 LSN_FORMAT_ARGS(run->stop_lsn), run->start_tli,
					 run->stop_tli, start_time, stop_time,
					 GetSystemIdentifier(), PG_VERSION_NUM, wal_segment_size,
					 BLCKSZ, DataChecksumsEnabled() ? "true" : "false");
	appendStringInfo(
		&json,
		"\"tablespaces\":[%s],\"directories\":[%s],"
		"\"files\":[%s],\"bytes_read\":" INT64_FORMAT
		",\"bytes_sent\":" INT64_FORMAT ",\"checksum_failures\":[%s]}",
		run->tablespaces_json.data, run->dirs_json.data, run->files_json.data,
		run->bytes_read, run->bytes_sent, run->failures_json.data);

	initStringInfo(&meta);
	snprintf(lsn, sizeof(lsn), "%X/%X", LSN_FORMAT_ARGS(run->start_lsn));
	appendStringInfo(&meta, "snapshot=%s\nkind=%s\n", run->id, run->kind);
	if (run->parent_id)
		appendStringInfo(&meta, "parent=%s\n", run->parent_id);
	appendStringInfo(
		&meta,
		"start-lsn=%s\nstop-lsn=%X/%X\ntimeline=%u\n"
		"start-time=%s\nstop-time=%s\nobjects=" INT64_FORMAT
		"\nfiles=" INT64_FORMAT "\nbytes=" INT64_FORMAT
		"\nsystem-identifier=" UINT64_FORMAT "\npg-version=%d\nsegment-size=%d",
		lsn, LSN_FORMAT_ARGS(run->stop_lsn), run->start_tli, start_time,
		stop_time, run->objects, run->files, run->bytes, GetSystemIdentifier(),
		PG_VERSION_NUM, wal_segment_size);
	{
		uint8 digest[BK_SHA256_LEN];

		snap_send_memory(run, "snapshot.json", meta.data, json.data, json.len,
						 digest);
	}
}

/*
 * snap_walk
 *		Collect the files and directories under path (relative to the data
 *		directory), applying PostgreSQL's base backup exclusions.
 */
static void
snap_walk(SnapRun *run, const char *path, bool in_database_dir,
		  bool in_tablespace)
{
	static const char *const exclude_dir_contents[] = {
		"pg_stat_tmp", "pg_replslot",  "pg_dynshmem", "pg_notify",
		"pg_serial",   "pg_snapshots", "pg_subtrans", NULL};
	static const char *const exclude_files[] = {"postgresql.auto.conf.tmp",
												"current_logfiles.tmp",
												"backup_label",
												"tablespace_map",
												"backup_manifest",
												"postmaster.pid",
												"postmaster.opts",
												NULL};
	bool top = strcmp(path, ".") == 0;
	DIR *dir = AllocateDir(path);
	struct dirent *de;
	List *names = NIL;
	List *init_forks = NIL; /* relfilenodes with an _init fork here */
	ListCell *cell;

	while ((de = ReadDir(dir, path)) != NULL)
	{
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		names = lappend(names, pstrdup(de->d_name));
		if (in_database_dir)
		{
			int oidchars;
			ForkNumber fork;

			if (parse_filename_for_nontemp_relation(de->d_name, &oidchars,
													&fork) &&
				fork == INIT_FORKNUM)
				init_forks =
					lappend(init_forks, pnstrdup(de->d_name, oidchars));
		}
	}
	FreeDir(dir);
	list_sort(names, (list_sort_comparator) snap_cmp_str);

	foreach (cell, names)
	{
		char *name = lfirst(cell);
		char full[MAXPGPATH];
		const char *rel;
		struct stat st;
		SnapEntry *entry;
		bool skip = false;
		int oidchars;
		ForkNumber fork;

		snprintf(full, sizeof(full), "%s/%s", path, name);
		rel = top ? name : full + 2; /* without "./" */

		for (int idx = 0; exclude_files[idx] != NULL; idx++)
			if (top && strcmp(name, exclude_files[idx]) == 0)
				skip = true;
		if (strncmp(name, "pg_internal.init", 16) == 0 ||
			strncmp(name, PG_TEMP_FILE_PREFIX, strlen(PG_TEMP_FILE_PREFIX)) ==
				0)
			skip = true;
		if (in_database_dir && looks_like_temp_rel_name(name))
			skip = true;
		/* Unlogged relations: only their init fork is kept. */
		if (in_database_dir &&
			parse_filename_for_nontemp_relation(name, &oidchars, &fork) &&
			fork != INIT_FORKNUM)
		{
			ListCell *init;

			foreach (init, init_forks)
				if (strncmp(lfirst(init), name, oidchars) == 0 &&
					strlen(lfirst(init)) == (size_t) oidchars)
					skip = true;
		}
		if (skip)
			continue;

		if (lstat(full, &st) != 0)
		{
			if (errno == ENOENT)
				continue; /* vanished: WAL replay recreates what matters */
			ereport(ERROR, (errcode_for_file_access(),
							errmsg("could not stat \"%s\": %m", full)));
		}

		/* Tablespaces: pg_tblspc/<oid> links are followed, and recorded. */
		if (top == false && strcmp(path, "./pg_tblspc") == 0 &&
			S_ISLNK(st.st_mode))
		{
			char target[MAXPGPATH];
			ssize_t len = readlink(full, target, sizeof(target) - 1);

			if (len < 0)
				ereport(
					ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read symbolic link \"%s\": %m", full)));
			target[len] = '\0';
			if (run->tablespaces_json.len > 0)
				appendStringInfoChar(&run->tablespaces_json, ',');
			appendStringInfo(&run->tablespaces_json,
							 "{\"oid\":%s,\"path\":", name);
			escape_json(&run->tablespaces_json, target);
			appendStringInfoChar(&run->tablespaces_json, '}');
			if (stat(full, &st) != 0 || !S_ISDIR(st.st_mode))
				ereport(
					ERROR,
					(errcode_for_file_access(),
					 errmsg(
						 "tablespace link \"%s\" does not lead to a directory",
						 full)));
			snap_walk(run, full, false, true);
			continue;
		}
		/* pg_wal may be a symlink (initdb --waldir): it is kept empty anyway. */
		if (top && strcmp(name, "pg_wal") == 0)
		{
			entry = palloc0(sizeof(SnapEntry));
			entry->path = pstrdup("pg_wal");
			entry->is_dir = true;
			entry->mode = S_IRWXU;
			run->entries = lappend(run->entries, entry);
			entry = palloc0(sizeof(SnapEntry));
			entry->path = pstrdup("pg_wal/archive_status");
			entry->is_dir = true;
			entry->mode = S_IRWXU;
			run->entries = lappend(run->entries, entry);
			continue;
		}
		if (S_ISLNK(st.st_mode))
			continue; /* other symlinks are not PostgreSQL's */

		entry = palloc0(sizeof(SnapEntry));
		entry->path = pstrdup(rel);
		entry->mode = st.st_mode;
		entry->mtime = st.st_mtime;
		if (S_ISDIR(st.st_mode))
		{
			bool contents_excluded = false;

			entry->is_dir = true;
			run->entries = lappend(run->entries, entry);
			for (int idx = 0; exclude_dir_contents[idx] != NULL; idx++)
				if (top && strcmp(name, exclude_dir_contents[idx]) == 0)
					contents_excluded = true;
			if (contents_excluded)
				continue;
			/*
			 * base/<db>, global and <tablespace>/<version>/<db> hold
			 * relations.
			 */
			{
				size_t path_len = strlen(path);
				size_t version_len = strlen(TABLESPACE_VERSION_DIRECTORY);
				bool in_version_dir = in_tablespace && path_len > version_len &&
									  strcmp(path + path_len - version_len,
											 TABLESPACE_VERSION_DIRECTORY) == 0;

				snap_walk(run, full,
						  strcmp(path, "./base") == 0 ||
							  (top && strcmp(name, "global") == 0) ||
							  in_version_dir,
						  in_tablespace);
			}
			continue;
		}
		if (!S_ISREG(st.st_mode))
			continue;
		entry->size = st.st_size;
		if (in_database_dir &&
			parse_filename_for_nontemp_relation(name, &oidchars, &fork))
		{
			const char *dot = strchr(name + oidchars, '.');
			BlockNumber segno =
				dot ? (BlockNumber) strtoul(dot + 1, NULL, 10) : 0;

			entry->checksummed = DataChecksumsEnabled();
			entry->main_fork = fork == MAIN_FORKNUM;
			entry->segment_base = segno * RELSEG_SIZE;
		}
		run->entries = lappend(run->entries, entry);
	}
}

/* ------------------------------------------------------------ the work list */

static inline char *
snap_item_path(SnapWork *work, const SnapWorkItem *item)
{
	return (char *) work + work->paths_offset + item->path_offset;
}

static inline int *
snap_work_order(SnapWork *work)
{
	return (int *) ((char *) work + work->order_offset);
}

static int
snap_cmp_item_size(const void *a, const void *b, void *arg)
{
	SnapWork *work = arg;
	const SnapWorkItem *item_a = &work->items[*(const int *) a];
	const SnapWorkItem *item_b = &work->items[*(const int *) b];

	if (item_a->size != item_b->size)
		return item_a->size > item_b->size ? -1 : 1;
	return *(const int *) a - *(const int *) b;
}

/*
 * snap_build_work
 *		The work list, in dynamic shared memory so that helpers can share it,
 *		from the listing; the directories go straight into the record, the
 *		totals into the progress view.
 */
static void
snap_build_work(SnapRun *run)
{
	ListCell *cell;
	int count = 0;
	Size paths_len = 0;
	Size items_size;
	Size size;
	SnapWork *work;
	int *order;
	int queued = 0;
	Size path_pos = 0;
	int64 bytes_total = 0;

	foreach (cell, run->entries)
	{
		SnapEntry *entry = lfirst(cell);

		if (!entry->is_dir)
		{
			count++;
			paths_len += strlen(entry->path) + 1;
			bytes_total += entry->size;
		}
	}
	SpinLockAcquire(&bk_shared->mutex);
	run->slot->files_total = count;
	run->slot->bytes_total = bytes_total;
	SpinLockRelease(&bk_shared->mutex);
	items_size =
		MAXALIGN(offsetof(SnapWork, items) + sizeof(SnapWorkItem) * count);
	size = items_size + MAXALIGN(sizeof(int) * count) + paths_len;
	run->work_segment = dsm_create(size, 0);
	/* Mapped until this process exits, whatever resource owner is current. */
	dsm_pin_mapping(run->work_segment);
	work = dsm_segment_address(run->work_segment);
	memset(work, 0, offsetof(SnapWork, items));
	SpinLockInit(&work->mutex);
	strlcpy(work->source_id, run->source_id, sizeof(work->source_id));
	strlcpy(work->snapshot_topic, run->snapshot_topic,
			sizeof(work->snapshot_topic));
	work->start_lsn = run->start_lsn;
	work->parent_start_lsn = run->parent_start_lsn;
	if (run->parent_id != NULL)
		strlcpy(work->parent_id, run->parent_id, sizeof(work->parent_id));
	strlcpy(work->blocks_table, run->blocks_table, sizeof(work->blocks_table));
	work->count = count;
	work->order_offset = items_size;
	work->paths_offset = items_size + MAXALIGN(sizeof(int) * count);
	order = snap_work_order(work);

	count = 0;
	foreach (cell, run->entries)
	{
		SnapEntry *entry = lfirst(cell);
		SnapWorkItem *item;

		if (entry->is_dir)
		{
			if (run->dirs_json.len > 0)
				appendStringInfoChar(&run->dirs_json, ',');
			appendStringInfoString(&run->dirs_json, "{\"path\":");
			escape_json(&run->dirs_json, entry->path);
			appendStringInfo(&run->dirs_json, ",\"mode\":\"%04o\"}",
							 (unsigned int) (entry->mode & 07777));
			continue;
		}
		item = &work->items[count];
		memset(item, 0, sizeof(*item));
		item->path_offset = path_pos;
		strcpy(snap_item_path(work, item), entry->path);
		path_pos += strlen(entry->path) + 1;
		item->mode = entry->mode;
		item->mtime = entry->mtime;
		item->size = entry->size;
		item->checksummed = entry->checksummed;
		item->main_fork = entry->main_fork;
		item->segment_base = entry->segment_base;
		item->parent_has = snap_parent_has(run, entry->path);
		if (strcmp(entry->path, XLOG_CONTROL_FILE) == 0)
			run->control_index = count;
		else
			order[queued++] = count;
		count++;
	}
	work->queued = queued;
	qsort_arg(order, queued, sizeof(int), snap_cmp_item_size, work);
	run->work = work;
}

/*
 * snap_stop_on_exit
 *		However the worker ends: its helpers take no more files, and a
 *		snapshot it could not record (FATAL: terminated, or the server shuts
 *		down) is failed in shared memory, so it neither shows as running
 *		forever nor blocks the next bk_snapshot().  The history row is
 *		failed by the next snapshot (snap_fail_stale_history).
 */
static void
snap_stop_on_exit(int code, Datum arg)
{
	SnapRun *run = (SnapRun *) DatumGetPointer(arg);

	if (run->work != NULL)
		snap_request_stop(run->work);
	snap_fail_unfinished(run->slot,
						 "the snapshot worker exited before it finished "
						 "(terminated, or the server shut down)");
}

/* Helpers take no more files once this is set. */
static void
snap_request_stop(SnapWork *work)
{
	SpinLockAcquire(&work->mutex);
	work->stop = true;
	SpinLockRelease(&work->mutex);
}

/* The next file to copy, or NULL when every file has been handed out. */
static SnapWorkItem *
snap_next_item(SnapWork *work)
{
	int index = -1;

	SpinLockAcquire(&work->mutex);
	if (!work->stop && work->next < work->queued)
		index = snap_work_order(work)[work->next++];
	SpinLockRelease(&work->mutex);
	return index < 0 ? NULL : &work->items[index];
}

/*
 * snap_start_helpers
 *		bk.snapshot_jobs - 1 helper workers; fewer if max_worker_processes
 *		leaves no room, in which case we copy with what we got.
 */
static void
snap_start_helpers(SnapRun *run)
{
	int wanted = Min(run->slot->jobs, BK_SNAPSHOT_MAX_JOBS) - 1;

	/* More helpers than files would only open producers for nothing. */
	wanted = Min(wanted, run->work->queued - 1);
	for (int helper = 0; helper < wanted; helper++)
	{
		BackgroundWorker worker;
		SnapHelperArgs args;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags =
			BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = BGW_NEVER_RESTART;
		strlcpy(worker.bgw_library_name, "bk", BGW_MAXLEN);
		strlcpy(worker.bgw_function_name, "bk_snapshot_helper_main",
				BGW_MAXLEN);
		snprintf(worker.bgw_name, BGW_MAXLEN, "bk snapshot %s helper %d",
				 run->id, helper + 1);
		strlcpy(worker.bgw_type, "bk snapshot helper", BGW_MAXLEN);
		args.slot_index = (int) (run->slot - bk_shared->snapshots);
		args.helper = helper;
		args.work_handle = dsm_segment_handle(run->work_segment);
		StaticAssertStmt(sizeof(args) <= BGW_EXTRALEN,
						 "helper arguments do not fit in bgw_extra");
		memcpy(worker.bgw_extra, &args, sizeof(args));
		worker.bgw_notify_pid = MyProcPid;
		if (!RegisterDynamicBackgroundWorker(&worker,
											 &run->helpers[run->helper_count]))
			break;
		run->helper_count++;
	}
	if (run->helper_count < wanted)
		ereport(LOG, (errmsg("bk: snapshot %s: started %d of %d helper workers",
							 run->id, run->helper_count, wanted),
					  errhint("Raise max_worker_processes, or lower "
							  "bk.snapshot_jobs.")));
	ereport(LOG, (errmsg("bk: snapshot %s copies %d files with %d process%s",
						 run->id, run->work->count, run->helper_count + 1,
						 run->helper_count == 0 ? "" : "es")));
}

/* Interrupts, and bk_snapshot_cancel(), between files. */
static void
snap_check_cancel(SnapRun *run)
{
	CHECK_FOR_INTERRUPTS();
	if (run->slot->cancel_requested)
		ereport(ERROR, (errcode(ERRCODE_QUERY_CANCELED),
						errmsg("snapshot cancelled by bk_snapshot_cancel()")));
}

/*
 * snap_copy_share
 *		Take files from the work list and send them, as one batch, until the
 *		list is empty; return once Kafka acknowledged them (helpers) or with
 *		the batch still open (the leader adds pg_control to it).
 */
static void
snap_copy_share(SnapRun *run)
{
	SnapWorkItem *item;
	BkError err;

	bk_error_clear(&err);
	if (!bk_producer_batch_begin(run->producer, &err))
		snap_kafka_error(run, &err, "the data files");
	for (;;)
	{
		snap_check_cancel(run);
		item = snap_next_item(run->work);
		if (item == NULL)
			break;
		snap_send_file(run, item);
	}
	snap_flush_maps(run);
	/* Stopped early: a helper failed (the leader reports it) or we did. */
	if (run->helper >= 0 && run->work->stop)
		ereport(ERROR, (errcode(ERRCODE_QUERY_CANCELED),
						errmsg("snapshot %s was given up", run->id)));
	if (run->helper >= 0 &&
		!bk_producer_batch_wait(run->producer, snap_interrupted, run, NULL,
								&err))
		snap_kafka_error(run, &err, "the data files");
}

/* A helper's state, as the leader sees it. */
static SnapHelperState
snap_helper_state(SnapWork *work, int helper)
{
	SnapHelperState state;

	SpinLockAcquire(&work->mutex);
	state = work->helper_state[helper];
	SpinLockRelease(&work->mutex);
	return state;
}

/*
 * snap_wait_for_helpers
 *		Until every helper has had what it sent acknowledged.  A helper that
 *		failed or died fails the snapshot: its files may be missing.
 */
static void
snap_wait_for_helpers(SnapRun *run)
{
	for (;;)
	{
		bool all_done = true;

		snap_check_cancel(run);
		for (int helper = 0; helper < run->helper_count; helper++)
		{
			SnapHelperState state = snap_helper_state(run->work, helper);
			pid_t pid;

			if (state == SNAP_HELPER_FAILED)
			{
				char error[BK_FAILURE_LEN];

				SpinLockAcquire(&run->work->mutex);
				strlcpy(error, run->work->helper_error, sizeof(error));
				SpinLockRelease(&run->work->mutex);
				ereport(ERROR, (errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
								errmsg("helper %d of snapshot %s failed: %s",
									   helper + 1, run->id, error)));
			}
			if (state == SNAP_HELPER_DONE)
				continue;
			if (GetBackgroundWorkerPid(run->helpers[helper], &pid) !=
				BGWH_STOPPED)
			{
				all_done = false;
				continue;
			}
			/* Stopped: read the state again, it may have just finished. */
			state = snap_helper_state(run->work, helper);
			if (state == SNAP_HELPER_COPYING)
				ereport(ERROR,
						(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
						 errmsg("helper %d of snapshot %s exited while copying",
								helper + 1, run->id),
						 errhint("The server log says why.")));
			/* NOT_STARTED and stopped: it never took a file. */
			if (state == SNAP_HELPER_FAILED)
				all_done = false; /* reported on the next round */
		}
		if (all_done)
			return;
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * snap_stop_helpers
 *		The leader is failing: helpers stop taking files, are told to exit,
 *		and are waited for, so no helper sends for a snapshot that is over.
 *		Called with interrupts held.
 */
static void
snap_stop_helpers(SnapRun *run)
{
	if (run->work == NULL || run->helper_count == 0)
		return;
	snap_request_stop(run->work);
	for (int helper = 0; helper < run->helper_count; helper++)
		TerminateBackgroundWorker(run->helpers[helper]);
	for (int helper = 0; helper < run->helper_count; helper++)
		(void) WaitForBackgroundWorkerShutdown(run->helpers[helper]);
}

/*
 * bk_snapshot_helper_main
 *		Copy files of the work list of the snapshot that started us.
 */
void
bk_snapshot_helper_main(Datum main_arg)
{
	SnapHelperArgs args;
	SnapRun *run;
	dsm_segment *segment;
	SnapWork *work;
	MemoryContext context;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	if (bk_shared == NULL || args.slot_index < 0 ||
		args.slot_index >= BK_SNAPSHOT_SLOTS || args.helper < 0 ||
		args.helper >= BK_SNAPSHOT_MAX_JOBS)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("bk snapshot helper started without its snapshot")));
	BackgroundWorkerInitializeConnectionByOid(
		bk_shared->snapshots[args.slot_index].database, InvalidOid, 0);
	segment = dsm_attach(args.work_handle);
	if (segment == NULL)
		proc_exit(0); /* the snapshot ended before we started */
	dsm_pin_mapping(segment);
	work = dsm_segment_address(segment);

	run = MemoryContextAllocZero(TopMemoryContext, sizeof(SnapRun));
	run->slot = &bk_shared->snapshots[args.slot_index];
	run->work = work;
	run->helper = args.helper;
	run->spool_fd = -1;
	run->control_index = -1;
	SpinLockAcquire(&bk_shared->mutex);
	strlcpy(run->id, run->slot->id, sizeof(run->id));
	strlcpy(run->kind, run->slot->kind, sizeof(run->kind));
	SpinLockRelease(&bk_shared->mutex);
	strlcpy(run->source_id, work->source_id, sizeof(run->source_id));
	strlcpy(run->snapshot_topic, work->snapshot_topic,
			sizeof(run->snapshot_topic));
	run->start_lsn = work->start_lsn;
	run->parent_start_lsn = work->parent_start_lsn;
	if (work->parent_id[0] != '\0')
		run->parent_id = pstrdup(work->parent_id);
	bk_blockmap_writer_init(&run->map_writer, work->blocks_table, run->id);
	pgstat_report_activity(STATE_RUNNING, run->id);

	SpinLockAcquire(&work->mutex);
	work->helper_state[args.helper] = work->stop || work->next >= work->queued
										  ? SNAP_HELPER_DONE
										  : SNAP_HELPER_COPYING;
	SpinLockRelease(&work->mutex);
	if (work->helper_state[args.helper] == SNAP_HELPER_DONE)
		proc_exit(0); /* nothing left to copy */

	context = CurrentMemoryContext;
	PG_TRY();
	{
		snap_open_sender(run, "bk-snapshot-helper");
		if (strcmp(run->kind, "full") != 0)
			snap_open_spool(run);
		snap_copy_share(run);
		snap_close_spool(run);
		SpinLockAcquire(&work->mutex);
		work->helper_state[args.helper] = SNAP_HELPER_DONE;
		SpinLockRelease(&work->mutex);
	}
	PG_CATCH();
	{
		ErrorData *edata;

		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		snap_close_spool(run);
		SpinLockAcquire(&work->mutex);
		if (work->helper_error[0] == '\0')
			strlcpy(work->helper_error, edata->message,
					sizeof(work->helper_error));
		work->helper_state[args.helper] = SNAP_HELPER_FAILED;
		work->stop = true;
		SpinLockRelease(&work->mutex);
		RESUME_INTERRUPTS();
		PG_RE_THROW();
	}
	PG_END_TRY();
	snap_release(run);
	proc_exit(0);
}

/*
 * snap_send_file
 *		One file: whole, or (diff/incr, a main fork the parent had) as its
 *		changed pages.  What it found goes into the item, for the record.
 */
static void
snap_send_file(SnapRun *run, SnapWorkItem *item)
{
	const char *path = snap_item_path(run->work, item);
	PlainSource source;
	StringInfoData name;
	StringInfoData meta;
	int64 read_before = run->bytes_read;
	int64 sent_before = run->bytes_sent;
	uint8 *header = NULL;
	size_t header_len = 0;
	int fd;
	struct stat st;

	fd = open(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno == ENOENT)
		{
			item->vanished = true; /* since the listing: not in the snapshot */
			snap_add_progress(run->slot, 0, 0, 1);
			return;
		}
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not open \"%s\": %m", path)));
	}
	/* The size when we start reading is the size the snapshot records. */
	if (fstat(fd, &st) == 0)
	{
		item->size = st.st_size;
		item->mtime = st.st_mtime;
	}
	memset(&source, 0, sizeof(source));
	source.run = run;
	source.fd = fd;
	source.segment_base = item->segment_base;

	/* Main forks: the digest of every page read, for the next snapshot. */
	if (item->main_fork)
	{
		bk_blockmap_start(&run->map, (uint64) item->size);
		source.map = &run->map;
	}
	if (strcmp(run->kind, "full") != 0 && item->main_fork &&
		item->size % BLCKSZ == 0 && item->parent_has)
	{
		if (snap_load_parent_map(run, path))
			item->incremental =
				snap_scan_incremental(run, item, path, fd, &item->blocks,
									  &header, &header_len, &source);
		else
			item->no_parent_digests = true;
	}

	initStringInfo(&name);
	appendStringInfo(&name, "%s/data/", run->id);
	snap_encode_path(path, &name);
	initStringInfo(&meta);
	appendStringInfo(
		&meta, "snapshot=%s\nmode=%04o\nmtime=%lld\nsize=%lld\nencoding=%s",
		run->id, (unsigned int) (item->mode & 07777), (long long) item->mtime,
		(long long) item->size, item->incremental ? "incremental" : "whole");

	if (!item->incremental)
	{
		if (source.map != NULL)
			bk_blockmap_start(source.map, (uint64) item->size);
		source.file_len = (uint64) item->size;
		source.total = (uint64) item->size;
		source.counts_as_read = true;
		source.verify = item->checksummed;
		snap_send_object(run, name.data, meta.data, &source, path, true);
		memcpy(item->sha256, bk_encoder_digest(run->encoder), BK_SHA256_LEN);
		item->objects = 1;
	}
	else if (item->blocks > 0)
	{
		/* Header and block list from memory, then the spooled pages. */
		PlainSource spooled;

		memset(&spooled, 0, sizeof(spooled));
		spooled.run = run;
		spooled.mem = header;
		spooled.mem_len = header_len;
		spooled.fd = run->spool_fd;
		spooled.file_len = (uint64) item->blocks * BLCKSZ;
		spooled.total = header_len + spooled.file_len;
		snap_send_object(run, name.data, meta.data, &spooled, path, true);
		item->objects = 1;
	}
	close(fd);
	pfree(name.data);
	pfree(meta.data);
	if (header != NULL)
		free(header);
	if (item->main_fork && bk_blockmap_queue(&run->map_writer, path, &run->map))
		snap_flush_maps(run);

	if (source.failures > 0)
	{
		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("bk: snapshot %s: %d page%s of \"%s\" failed checksum "
						"verification",
						run->id, source.failures,
						source.failures == 1 ? "" : "s", path),
				 errdetail("The pages were read twice; they are backed up as "
						   "read.")));
		item->failures = source.failures;
		memcpy(item->failed_blocks, source.failed_blocks,
			   sizeof(item->failed_blocks));
		SpinLockAcquire(&bk_shared->mutex);
		run->slot->checksum_failures += source.failures;
		SpinLockRelease(&bk_shared->mutex);
	}
	item->bytes_read = run->bytes_read - read_before;
	item->bytes_sent = run->bytes_sent - sent_before;
	item->sent = true;
	snap_add_progress(run->slot, 0, 0, 1);
}

/*
 * snap_record_file
 *		A copied file's entry in the record, its line in the manifest, its
 *		name in the history's file list; and the totals.
 */
static void
snap_record_file(SnapRun *run, SnapWorkItem *item)
{
	const char *path = snap_item_path(run->work, item);
	char hex[2 * BK_SHA256_LEN + 1];
	char mtime_text[64];
	pg_time_t mtime;

	if (item->vanished)
		return;
	if (!item->sent)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
						errmsg("snapshot %s: \"%s\" was never copied", run->id,
							   path)));
	for (int idx = 0; idx < item->failures && idx < FAILURES_LISTED_PER_FILE;
		 idx++)
	{
		if (run->failures_json.len > 0)
			appendStringInfoChar(&run->failures_json, ',');
		appendStringInfoString(&run->failures_json, "{\"path\":");
		escape_json(&run->failures_json, path);
		appendStringInfo(&run->failures_json, ",\"block\":%u}",
						 item->failed_blocks[idx]);
	}
	run->checksum_failures += item->failures;

	bk_hex_encode(item->sha256, BK_SHA256_LEN, hex);
	if (run->files_json.len > 0)
		appendStringInfoChar(&run->files_json, ',');
	appendStringInfoString(&run->files_json, "{\"path\":");
	escape_json(&run->files_json, path);
	appendStringInfo(
		&run->files_json,
		",\"size\":%lld,\"mode\":\"%04o\",\"mtime\":%lld,"
		"\"encoding\":\"%s\",",
		(long long) item->size, (unsigned int) (item->mode & 07777),
		(long long) item->mtime, item->incremental ? "incremental" : "whole");
	if (item->incremental)
		appendStringInfo(&run->files_json, "\"blocks\":" INT64_FORMAT ",",
						 item->blocks);
	appendStringInfo(&run->files_json, "\"sha256\":\"%s\"}", hex);

	mtime = (pg_time_t) item->mtime;
	pg_strftime(mtime_text, sizeof(mtime_text), "%Y-%m-%d %H:%M:%S GMT",
				pg_gmtime(&mtime));
	appendStringInfoString(&run->manifest_files, ",\n{ \"Path\": ");
	escape_json(&run->manifest_files, path);
	appendStringInfo(
		&run->manifest_files,
		", \"Size\": %lld, \"Last-Modified\": \"%s\", "
		"\"Checksum-Algorithm\": \"SHA256\", \"Checksum\": \"%s\" }",
		(long long) item->size, mtime_text, hex);
	appendStringInfo(&run->file_list, "%s\n", path);
	run->files++;
	run->bytes += item->size;
	run->objects += item->objects;
	run->bytes_read += item->bytes_read;
	run->bytes_sent += item->bytes_sent;
}

/*
 * snap_load_parent_map
 *		The parent's page digests of path into run->parent_map; false if the
 *		parent kept none (the file then goes whole).
 */
static bool
snap_load_parent_map(SnapRun *run, const char *path)
{
	bool found;

	snap_sql_begin();
	found = bk_blockmap_load(run->work->blocks_table, run->parent_id, path,
							 &run->parent_map);
	snap_sql_end();
	return found;
}

/* Write the page digests queued so far. */
static void
snap_flush_maps(SnapRun *run)
{
	if (!bk_blockmap_pending(&run->map_writer))
		return;
	snap_sql_begin();
	bk_blockmap_flush(&run->map_writer);
	snap_sql_end();
}

/*
 * snap_scan_incremental
 *		First pass over a relation main fork: checksum every page, keep the
 *		pages a restore needs from this snapshot in the spool file, and
 *		build the object's header.  Returns false to send the file whole
 *		(it changed under us in a way that makes pages unreliable).
 */
static bool
snap_scan_incremental(SnapRun *run, SnapWorkItem *item, const char *path,
					  int fd, int64 *blocks, uint8 **header, size_t *header_len,
					  PlainSource *scan)
{
	BlockNumber nblocks = (BlockNumber) (item->size / BLCKSZ);
	BlockNumber *chosen = palloc(sizeof(BlockNumber) * (nblocks + 1));
	BkSha256 *sha;
	BkError err;
	XLogRecPtr current = GetXLogInsertRecPtr();
	const BkBlockMap *parent = &run->parent_map;
	int64 kept = 0;
	off_t spool_pos = 0;
	uint8 *head;

	sha = bk_sha256_new(&err);
	if (sha == NULL)
		ereport(ERROR, (errmsg("%s", err.message)));
	if (ftruncate(run->spool_fd, 0) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not truncate \"%s\": %m", run->spool_path)));
	scan->verify = item->checksummed;

	for (BlockNumber first = 0; first < nblocks; first += SCAN_BLOCKS)
	{
		BlockNumber count = Min(SCAN_BLOCKS, nblocks - first);
		size_t want = (size_t) count * BLCKSZ;
		size_t got = 0;

		CHECK_FOR_INTERRUPTS();
		while (got < want)
		{
			ssize_t n = pread(fd, run->block_buffer + got, want - got,
							  (off_t) first * BLCKSZ + got);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				ereport(ERROR, (errcode_for_file_access(),
								errmsg("could not read \"%s\": %m", path)));
			if (n == 0)
				break;
			got += n;
		}
		/* Shrank while we read: zeros, as for whole files; replay fixes it. */
		if (got < want)
			memset(run->block_buffer + got, 0, want - got);

		for (BlockNumber idx = 0; idx < count; idx++)
		{
			uint8 *page = run->block_buffer + (size_t) idx * BLCKSZ;
			BlockNumber blkno = first + idx;
			XLogRecPtr lsn;
			uint64 digest;

			if (scan->verify)
				(void) snap_check_block(scan, page, blkno,
										(off_t) blkno * BLCKSZ);
			/* The page as read (and read again, if its checksum failed). */
			bk_blockmap_add(scan->map, page, BLCKSZ);
			digest = scan->map->digests[scan->map->count - 1];
			lsn = PageGetLSN((Page) page);
			if (lsn >= run->parent_start_lsn || lsn > current ||
				blkno >= parent->count || digest != parent->digests[blkno])
			{
				if (pg_pwrite(run->spool_fd, page, BLCKSZ, spool_pos) != BLCKSZ)
					ereport(ERROR, (errcode_for_file_access(),
									errmsg("could not write \"%s\": %m",
										   run->spool_path)));
				spool_pos += BLCKSZ;
				chosen[kept++] = blkno;
			}
		}
		if (!bk_sha256_update(sha, run->block_buffer, want, &err))
			ereport(ERROR, (errmsg("%s", err.message)));
		snap_add_progress(run->slot, (int64) want, 0, 0);
		run->bytes_read += (int64) want;
	}
	if (!bk_sha256_final(sha, item->sha256, &err))
		ereport(ERROR, (errmsg("%s", err.message)));
	bk_sha256_free(sha);
	/* From here on the spooled pages are sent, not checked or digested. */
	scan->verify = false;

	*blocks = kept;
	*header_len = INCR_HEADER_LEN + sizeof(uint32) * (size_t) kept;
	head = malloc(*header_len);
	if (head == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	memcpy(head, INCR_MAGIC, 8);
	bk_put_be64(head + 8, (uint64) item->size);
	bk_put_be32(head + 16, BLCKSZ);
	bk_put_be32(head + 20, (uint32) kept);
	for (int64 idx = 0; idx < kept; idx++)
		bk_put_be32(head + INCR_HEADER_LEN + 4 * idx, chosen[idx]);
	*header = head;
	pfree(chosen);
	return true;
}

/*
 * snap_check_block
 *		Verify one page's checksum, reading it again once before calling it
 *		a failure.  New pages and pages changed since the backup started are
 *		not checked (WAL replay rewrites them).  No ereport: libbk callbacks
 *		call this.
 */
static bool
snap_check_block(PlainSource *source, uint8 *page, BlockNumber blkno,
				 off_t file_offset)
{
	PageHeader header = (PageHeader) page;
	BlockNumber absolute = source->segment_base + blkno;

	if (PageIsNew((Page) page) ||
		PageGetLSN((Page) page) >= source->run->start_lsn)
		return true;
	if (pg_checksum_page((char *) page, absolute) == header->pd_checksum)
		return true;
	/* Maybe we read it while it was being written: once more. */
	if (pread(source->fd, page, BLCKSZ, file_offset) == BLCKSZ &&
		(PageIsNew((Page) page) ||
		 PageGetLSN((Page) page) >= source->run->start_lsn ||
		 pg_checksum_page((char *) page, absolute) == header->pd_checksum))
		return true;
	if (source->failures < FAILURES_LISTED_PER_FILE)
		source->failed_blocks[source->failures] = blkno;
	source->failures++;
	return false;
}

/* Percent-encode what object names do not allow (docs/snapshot-format.md). */
static void
snap_encode_path(const char *path, StringInfo out)
{
	for (const unsigned char *c = (const unsigned char *) path; *c; c++)
	{
		if (*c < 0x21 || *c > 0x7e || *c == '%' || *c == '\\')
			appendStringInfo(out, "%%%02X", *c);
		else
			appendStringInfoChar(out, (char) *c);
	}
}

/* libbk callback: the next chunk of a PlainSource, encoded. */
static bool
snap_next_frame(void *arg, const uint8_t **frame, size_t *len, BkFrame *info,
				BkError *err)
{
	PlainSource *source = arg;
	SnapRun *run = source->run;
	uint32 chunk_len;
	size_t filled = 0;

	if (bk_encoder_done(run->encoder))
	{
		*frame = NULL;
		return true;
	}
	chunk_len = bk_encoder_next_chunk_len(run->encoder);
	while (filled < chunk_len && source->pos + filled < source->mem_len)
	{
		size_t take =
			Min(chunk_len - filled, source->mem_len - (source->pos + filled));

		memcpy(run->chunk_buffer + filled, source->mem + source->pos + filled,
			   take);
		filled += take;
	}
	if (filled < chunk_len)
	{
		uint64 file_pos = source->pos + filled - source->mem_len;
		size_t file_start = filled;

		while (filled < chunk_len && file_pos < source->file_len)
		{
			ssize_t n =
				pread(source->fd, run->chunk_buffer + filled,
					  Min(chunk_len - filled, source->file_len - file_pos),
					  (off_t) file_pos);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
			{
				source->read_errno = errno;
				return bk_error_set(err, BK_ERR_IO, "could not read a file: %s",
									strerror(errno));
			}
			if (n == 0)
				break; /* shrank: the rest is zeros */
			filled += n;
			file_pos += n;
		}
		if (filled < chunk_len)
			memset(run->chunk_buffer + filled, 0, chunk_len - filled);
		if (source->verify)
		{
			uint64 chunk_file_start =
				source->pos + file_start - source->mem_len;
			uint64 chunk_file_end = chunk_file_start + (chunk_len - file_start);

			/*
			 * Every block that ends in this chunk; one that began in the
			 * previous chunk is read whole again (only when the chunk size is
			 * not a multiple of the block size).
			 */
			for (uint64 block_start =
					 chunk_file_start - chunk_file_start % BLCKSZ;
				 block_start + BLCKSZ <= chunk_file_end; block_start += BLCKSZ)
			{
				if (block_start + BLCKSZ <= chunk_file_start)
					continue;
				if (block_start >= chunk_file_start)
					(void) snap_check_block(
						source,
						run->chunk_buffer + file_start +
							(block_start - chunk_file_start),
						(BlockNumber) (block_start / BLCKSZ),
						(off_t) block_start);
				else
				{
					PGAlignedBlock block;

					if (pread(source->fd, block.data, BLCKSZ,
							  (off_t) block_start) == BLCKSZ)
						(void) snap_check_block(
							source, (uint8 *) block.data,
							(BlockNumber) (block_start / BLCKSZ),
							(off_t) block_start);
				}
			}
		}
		/* After verification: a failing page may have been read again. */
		if (source->map != NULL)
			bk_blockmap_add(source->map, run->chunk_buffer + file_start,
							chunk_len - file_start);
		if (source->counts_as_read)
		{
			run->bytes_read += chunk_len - file_start;
			snap_add_progress(run->slot, chunk_len - file_start, 0, 0);
		}
	}
	source->pos += chunk_len;
	if (!bk_encoder_chunk(run->encoder, run->chunk_buffer, chunk_len, frame,
						  len, info, err))
		return false;
	run->bytes_sent += *len;
	snap_add_progress(run->slot, 0, *len, 0);
	return true;
}

/* libbk callback: stop sending? (cancel, or the server wants us gone) */
static bool
snap_interrupted(void *arg)
{
	SnapRun *run = arg;

	/* A helper also stops when another process gave the snapshot up. */
	return run->slot->cancel_requested || QueryCancelPending ||
		   ProcDiePending || !PostmasterIsAlive() ||
		   (run->helper >= 0 && run->work->stop);
}

/*
 * snap_send_object
 *		Send one object: batched (queued; acknowledged with the batch), or
 *		on its own (returns once Kafka acknowledged all of it).
 */
static void
snap_send_object(SnapRun *run, const char *name, const char *meta,
				 PlainSource *source, const char *what, bool batched)
{
	BkObjectInfo info;
	BkError err;
	StringInfoData key;
	bool ok;

	bk_error_clear(&err);
	memset(&info, 0, sizeof(info));
	info.kind = BK_KIND_SNAPSHOT;
	info.source_id = run->source_id;
	info.name = name;
	info.meta = meta;
	info.size = source->total;
	initStringInfo(&key);
	appendStringInfo(&key, "%s/%s", run->source_id, name);
	ok = bk_encoder_begin(run->encoder, &info, &err);
	if (ok && batched)
		ok = bk_producer_batch_add(run->producer, run->snapshot_topic, key.data,
								   key.len, snap_next_frame, source,
								   snap_interrupted, run, NULL, &err);
	else if (ok)
		ok = bk_producer_send_object(run->producer, run->snapshot_topic,
									 key.data, key.len, snap_next_frame, source,
									 snap_interrupted, run, NULL, &err);
	bk_kafka_log_flush();
	if (!ok)
		snap_kafka_error(run, &err, what);
	pfree(key.data);
}

/* Report a libbk failure while sending: cancelled, or an error. */
static void
snap_kafka_error(SnapRun *run, const BkError *err, const char *what)
{
	bk_kafka_log_flush();
	if (err->code == BK_ERR_INTERRUPTED)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("snapshot interrupted while sending \"%s\"", what)));
	ereport(ERROR,
			(errcode(bk_sqlstate(err->code)),
			 errmsg("could not send \"%s\" of snapshot %s", what, run->id),
			 errdetail("%s", bk_sentence(err->message)),
			 err->hint[0] ? errhint("%s", err->hint) : 0));
}

/* An object whose plaintext is in memory; returns its SHA-256. */
static void
snap_send_memory(SnapRun *run, const char *part, const char *meta,
				 const char *content, size_t len, uint8 digest[BK_SHA256_LEN])
{
	PlainSource source;
	char name[BK_OBJECT_NAME_MAX + 1];

	memset(&source, 0, sizeof(source));
	source.run = run;
	source.mem = (const uint8 *) content;
	source.mem_len = len;
	source.fd = -1;
	source.total = len;
	snprintf(name, sizeof(name), "%s/%s", run->id, part);
	snap_send_object(run, name, meta, &source, part, false);
	memcpy(digest, bk_encoder_digest(run->encoder), BK_SHA256_LEN);
}

/* Best effort: a snapshot event on the audit topic. */
static void
snap_audit(SnapRun *run, const char *json)
{
	BkError err;

	bk_error_clear(&err);
	if (run->producer == NULL ||
		!bk_producer_send_message(run->producer, run->audit_topic,
								  run->source_id, json, strlen(json),
								  snap_interrupted, run, &err))
	{
		bk_kafka_log_flush();
		ereport(ERROR, (errcode(ERRCODE_CONNECTION_FAILURE),
						errmsg("could not announce snapshot %s on topic \"%s\"",
							   run->id, run->audit_topic),
						errdetail("%s", bk_sentence(err.message)),
						err.hint[0] ? errhint("%s", err.hint) : 0));
	}
	bk_kafka_log_flush();
}

/*
 * snap_finish_record
 *		The end, everywhere: shared memory, the history table, the audit
 *		topic.  Called for success and (from the error handler) failure.
 */
static void
snap_finish_record(SnapRun *run, BkSnapshotState state, const char *error)
{
	StringInfoData sql;
	StringInfoData json;
	const char *state_name = snap_state_name(state);

	SpinLockAcquire(&bk_shared->mutex);
	run->slot->state = state;
	run->slot->stop_time = GetCurrentTimestamp();
	strlcpy(run->slot->phase, state_name, sizeof(run->slot->phase));
	if (error != NULL)
		strlcpy(run->slot->error, error, sizeof(run->slot->error));
	SpinLockRelease(&bk_shared->mutex);

	PG_TRY();
	{
		/* Without the history table (prepare failed early) there is no row. */
		if (run->history_table != NULL)
		{
			initStringInfo(&sql);
			appendStringInfo(
				&sql,
				"UPDATE %s SET state = $2, start_lsn = $3, stop_lsn = $4, "
				"start_time = $5, stop_time = now(), files = $6, "
				"bytes_read = $7, bytes_sent = $8, error = $9, "
				"file_list = $10 WHERE snapshot_id = $1",
				run->history_table);
			snap_sql_begin();
			if (SPI_execute_with_args(
					sql.data, 10,
					(Oid[]){TEXTOID, TEXTOID, PG_LSNOID, PG_LSNOID,
							TIMESTAMPTZOID, INT8OID, INT8OID, INT8OID, TEXTOID,
							TEXTOID},
					(Datum[]){
						CStringGetTextDatum(run->id),
						CStringGetTextDatum(state_name),
						LSNGetDatum(run->start_lsn), LSNGetDatum(run->stop_lsn),
						TimestampTzGetDatum(run->start_time),
						Int64GetDatum(run->files),
						Int64GetDatum(run->bytes_read),
						Int64GetDatum(run->bytes_sent),
						error ? CStringGetTextDatum(error) : (Datum) 0,
						state == BK_SNAPSHOT_COMPLETE && run->file_list.data
							? CStringGetTextDatum(run->file_list.data)
							: (Datum) 0},
					(char[]){' ', ' ',
							 XLogRecPtrIsInvalid(run->start_lsn) ? 'n' : ' ',
							 XLogRecPtrIsInvalid(run->stop_lsn) ? 'n' : ' ',
							 run->start_time == 0 ? 'n' : ' ', ' ', ' ', ' ',
							 error ? ' ' : 'n',
							 state == BK_SNAPSHOT_COMPLETE &&
									 run->file_list.data
								 ? ' '
								 : 'n',
							 '\0'},
					false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "could not update the snapshot history");
			if (run->blocks_table != NULL)
				bk_blockmap_prune(run->blocks_table, run->history_table);
			snap_sql_end();
		}

		initStringInfo(&json);
		appendStringInfoString(&json,
							   "{\"event\":\"snapshot-end\",\"source\":");
		escape_json(&json, run->source_id);
		appendStringInfoString(&json, ",\"snapshot\":");
		escape_json(&json, run->id);
		appendStringInfoString(&json, ",\"kind\":");
		escape_json(&json, run->kind);
		appendStringInfoString(&json, ",\"state\":");
		escape_json(&json, state_name);
		if (!XLogRecPtrIsInvalid(run->stop_lsn))
			appendStringInfo(&json, ",\"stop_lsn\":\"%X/%X\"",
							 LSN_FORMAT_ARGS(run->stop_lsn));
		appendStringInfo(&json,
						 ",\"files\":" INT64_FORMAT
						 ",\"bytes_read\":" INT64_FORMAT
						 ",\"bytes_sent\":" INT64_FORMAT,
						 run->files, run->bytes_read, run->bytes_sent);
		if (error != NULL)
		{
			appendStringInfoString(&json, ",\"reason\":");
			escape_json(&json, error);
		}
		{
			char now_text[64];

			snap_time_text(GetCurrentTimestamp(), now_text, sizeof(now_text));
			appendStringInfo(&json, ",\"time\":\"%s\"}", now_text);
		}
		if (run->producer != NULL)
		{
			BkError err;

			/* Not interruptible: the cancellation itself is what we report. */
			if (!bk_producer_send_message(run->producer, run->audit_topic,
										  run->source_id, json.data, json.len,
										  NULL, NULL, &err))
				ereport(WARNING,
						(errmsg("bk: could not announce the end of snapshot %s",
								run->id),
						 errdetail("%s", bk_sentence(err.message))));
		}
	}
	PG_CATCH();
	{
		/* The snapshot itself is decided; failing to record it is logged. */
		EmitErrorReport();
		FlushErrorState();
		AbortOutOfAnyTransaction();
	}
	PG_END_TRY();
	bk_kafka_log_flush();
}

/* ISO 8601 UTC with milliseconds, as everywhere else in bk. */
static void
snap_time_text(TimestampTz time, char *out, size_t len)
{
	int64 unix_ms =
		time / 1000 +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;

	bk_format_time_utc(unix_ms, out, len);
}

static void
snap_set_phase(BkSnapshotSlot *slot, const char *phase)
{
	SpinLockAcquire(&bk_shared->mutex);
	strlcpy(slot->phase, phase, sizeof(slot->phase));
	SpinLockRelease(&bk_shared->mutex);
	pgstat_report_activity(STATE_RUNNING, phase);
}

static void
snap_add_progress(BkSnapshotSlot *slot, int64 read, int64 sent,
				  int64 files_done)
{
	SpinLockAcquire(&bk_shared->mutex);
	slot->bytes_read += read;
	slot->bytes_sent += sent;
	slot->files_done += files_done;
	SpinLockRelease(&bk_shared->mutex);
}
