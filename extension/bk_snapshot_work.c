/*
 * bk_snapshot_work.c
 *		The work list in dynamic shared memory and the helper workers that
 *		share it (bk.snapshot_jobs > 1): every process takes the next file or
 *		range of a large file, largest first, and writes what it found into
 *		its entry.
 */
#include "postgres.h"

#include "bk_snapshot.h"

static void snap_request_stop(SnapWork *work);

static inline int *
snap_work_order(SnapWork *work)
{
	return (int *) ((char *) work + work->order_offset);
}

/* Bytes one item reads: its range, or its file. */
static off_t
snap_item_length(const SnapWorkItem *item)
{
	return item->range_count > 0 ? item->range_length : item->size;
}

static int
snap_cmp_item_size(const void *a, const void *b, void *arg)
{
	SnapWork *work = arg;
	off_t length_a = snap_item_length(&work->items[*(const int *) a]);
	off_t length_b = snap_item_length(&work->items[*(const int *) b]);

	if (length_a != length_b)
		return length_a > length_b ? -1 : 1;
	return *(const int *) a - *(const int *) b;
}

/*
 * How many items a file of size bytes is: one, or one per range when it is
 * larger than a range (range_size 0: never split).
 */
static int
snap_file_ranges(off_t size, off_t range_size)
{
	if (range_size <= 0 || size <= range_size)
		return 0;
	if ((size + range_size - 1) / range_size > INT_MAX / 2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a file of %lld bytes needs too many ranges of %lld "
						"bytes",
						(long long) size, (long long) range_size),
				 errhint("Raise bk.snapshot_range_size.")));
	return (int) ((size + range_size - 1) / range_size);
}

/*
 * snap_build_work
 *		The work list, in dynamic shared memory so that helpers can share it,
 *		from the listing; the directories go straight into the record, the
 *		totals into the progress view.  A file larger than
 *		bk.snapshot_range_size becomes one item per range, so that several
 *		processes read it at once; its ranges are cut at the size the
 *		listing saw (the file may grow while it is read: WAL replay
 *		restores what was added, as for any file).
 */
void
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
	int files = 0;
	int64 range_items = 0;
	off_t range_size = (off_t) run->slot->range_blocks * BLCKSZ;

	foreach (cell, run->entries)
	{
		SnapEntry *entry = lfirst(cell);

		if (!entry->is_dir)
		{
			int file_ranges = snap_file_ranges(entry->size, range_size);

			files++;
			count += Max(file_ranges, 1);
			range_items += file_ranges;
			paths_len += strlen(entry->path) + 1;
			bytes_total += entry->size;

			/*
			 * Checked as the list grows: the items are counted in an int
			 * and allocated in one piece of shared memory.
			 */
			if (range_items > SNAP_MAX_RANGES)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("bk.snapshot_range_size of %lldkB cuts this "
								"snapshot's files into more than %d ranges",
								(long long) range_size / 1024, SNAP_MAX_RANGES),
						 errdetail("Each range is an item of the work list "
								   "in shared memory, an object and an entry "
								   "of the snapshot's record."),
						 errhint("Raise bk.snapshot_range_size, or set it "
								 "to 0 to send every file as one object.")));
		}
	}
	SpinLockAcquire(&bk_shared->mutex);
	run->slot->files_total = files;
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
		int ranges;
		bool parent_has;

		if (entry->is_dir)
		{
			snap_record_directory(run, entry->path, entry->mode);
			continue;
		}
		ranges = snap_file_ranges(entry->size, range_size);
		parent_has = snap_parent_has(run, entry->path);
		for (int range = 0; range < Max(ranges, 1); range++)
		{
			item = &work->items[count];
			memset(item, 0, sizeof(*item));
			item->path_offset = path_pos;
			if (range == 0)
				strcpy(snap_item_path(work, item), entry->path);
			item->mode = entry->mode;
			item->mtime = entry->mtime;
			item->size = entry->size;
			item->checksummed = entry->checksummed;
			item->main_fork = entry->main_fork;
			item->segment_base = entry->segment_base;
			item->parent_has = parent_has;
			item->range_count = ranges;
			item->range_index = range;
			if (ranges > 0)
			{
				item->range_offset = range * range_size;
				item->range_length =
					Min(range_size, entry->size - item->range_offset);
			}
			/* pg_control is small: never ranged. */
			if (strcmp(entry->path, XLOG_CONTROL_FILE) == 0)
				run->control_index = count;
			else
				order[queued++] = count;
			count++;
		}
		path_pos += strlen(entry->path) + 1;
	}
	work->queued = queued;
	qsort_arg(order, queued, sizeof(int), snap_cmp_item_size, work);
	run->work = work;
}

/*
 * snap_stop_on_exit
 *		However the worker ends: its helpers take no more files, and a
 *		snapshot it could not record (FATAL: terminated, its database would
 *		not take the connection, or the server shuts down) is failed in
 *		shared memory, so it neither shows as running forever nor blocks the
 *		next bk_snapshot().  The history row was failed just before, while
 *		the connection could still write (snap_fail_history_on_exit).
 */
void
snap_stop_on_exit(int code, Datum arg)
{
	SnapRun *run = (SnapRun *) DatumGetPointer(arg);

	if (run->work != NULL)
		snap_request_stop(run->work);
	snap_fail_unfinished(run->slot,
						 "the snapshot worker exited before it finished "
						 "(terminated, could not connect, or the server shut "
						 "down: the server log says why)");
	/* Last: bk_snapshot_cancel signals this PID until it is cleared. */
	snap_forget_worker_pid(run->slot);
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
void
snap_start_helpers(SnapRun *run)
{
	int wanted = Min(run->slot->jobs, BK_SNAPSHOT_MAX_JOBS) - 1;

	/* More helpers than files would only open producers for nothing. */
	wanted = Min(wanted, run->work->queued - 1);
	for (int helper = 0; helper < wanted; helper++)
	{
		BackgroundWorker worker;
		SnapHelperArgs args;

		snap_worker_init(&worker, "bk_snapshot_helper_main");
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
	ereport(LOG,
			(errmsg("bk: snapshot %s copies %lld files with %d "
					"process%s, in %d pieces",
					run->id, (long long) run->slot->files_total,
					run->helper_count + 1, run->helper_count == 0 ? "" : "es",
					run->work->count)));
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
void
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
void
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
				char hint[BK_FAILURE_LEN];

				SpinLockAcquire(&run->work->mutex);
				strlcpy(error, run->work->helper_error, sizeof(error));
				strlcpy(hint, run->work->helper_error_hint, sizeof(hint));
				SpinLockRelease(&run->work->mutex);
				ereport(ERROR, (errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
								errmsg("helper %d of snapshot %s failed: %s",
									   helper + 1, run->id, error),
								hint[0] ? errhint("%s", hint) : 0));
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
 * snap_error_is_stop
 *		Was this error a process being asked to stop (bk_snapshot_cancel,
 *		or another copying process giving up), rather than a failure of its
 *		own?  A termination (SIGTERM) reaches the copy loop as the same
 *		"interrupted" error, with the die request still pending: a failure.
 */
bool
snap_error_is_stop(const ErrorData *edata)
{
	return edata->sqlerrcode == ERRCODE_QUERY_CANCELED && !ProcDiePending;
}

/*
 * snap_failure_text
 *		An error as one line for bk_snapshot_history.error and the caller
 *		of bk_snapshot(), who never see the server log: its message, and
 *		its detail, which says why (Kafka's own error, the file's errno).
 *		Palloc'd, whole: the history row keeps it all, however long (a
 *		path), where the shared slots keep what fits.
 */
char *
snap_failure_text(const ErrorData *edata)
{
	if (edata->detail != NULL && edata->detail[0] != '\0')
		return psprintf("%s: %s", edata->message, edata->detail);
	return pstrdup(edata->message);
}

/*
 * snap_helper_failure
 *		Has a helper failed of itself (an error, or it died while copying)?
 *		Then true, with what the leader would have reported and its hint
 *		("" if none).  Read before snap_stop_helpers, which terminates them
 *		all.
 */
bool
snap_helper_failure(SnapRun *run, char *error, size_t len, char *hint,
					size_t hint_len)
{
	pid_t pid;

	hint[0] = '\0';
	if (run->work == NULL)
		return false;
	SpinLockAcquire(&run->work->mutex);
	if (run->work->helper_error[0] != '\0' && run->work->helper_error_own)
	{
		snprintf(error, len, "helper %d of snapshot %s failed: %s",
				 run->work->helper_error_helper + 1, run->id,
				 run->work->helper_error);
		strlcpy(hint, run->work->helper_error_hint, hint_len);
	}
	else
		error[0] = '\0';
	SpinLockRelease(&run->work->mutex);
	if (error[0] != '\0')
		return true;
	for (int helper = 0; helper < run->helper_count; helper++)
		if (snap_helper_state(run->work, helper) == SNAP_HELPER_COPYING &&
			GetBackgroundWorkerPid(run->helpers[helper], &pid) ==
				BGWH_STOPPED &&
			snap_helper_state(run->work, helper) == SNAP_HELPER_COPYING)
		{
			snprintf(error, len,
					 "helper %d of snapshot %s exited while copying",
					 helper + 1, run->id);
			return true;
		}
	return false;
}

/*
 * snap_stop_helpers
 *		The leader is failing: helpers stop taking files, are told to exit,
 *		and are waited for, so no helper sends for a snapshot that is over.
 *		Called with interrupts held.
 */
void
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

/* A helper's last word in its slot: its PID is no longer to be looked at. */
static void
snap_forget_helper_pid(int code, Datum arg)
{
	int *pid = (int *) DatumGetPointer(arg);

	SpinLockAcquire(&bk_shared->mutex);
	/* The slot may hold a newer snapshot by now. */
	if (*pid == MyProcPid)
		*pid = 0;
	SpinLockRelease(&bk_shared->mutex);
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
	int *helper_pid;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	if (bk_shared == NULL || args.slot_index < 0 ||
		args.slot_index >= BK_SNAPSHOT_SLOTS || args.helper < 0 ||
		args.helper >= BK_SNAPSHOT_MAX_JOBS)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("bk snapshot helper started without its snapshot")));

	/*
	 * Before connecting, which reads catalogs: a caller waiting in
	 * bk_snapshot() must see us wait for a lock its transaction holds.
	 */
	helper_pid =
		&bk_shared->snapshots[args.slot_index].helper_pids[args.helper];
	SpinLockAcquire(&bk_shared->mutex);
	*helper_pid = MyProcPid;
	SpinLockRelease(&bk_shared->mutex);
	before_shmem_exit(snap_forget_helper_pid, PointerGetDatum(helper_pid));
	snap_worker_connect(bk_shared->snapshots[args.slot_index].database);
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
		char *failure;

		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		snap_close_spool(run);
		/* Not under the spinlock: it allocates. */
		failure = snap_failure_text(edata);
		SpinLockAcquire(&work->mutex);
		if (work->helper_error[0] == '\0')
		{
			strlcpy(work->helper_error, failure, sizeof(work->helper_error));
			if (edata->hint != NULL)
				strlcpy(work->helper_error_hint, edata->hint,
						sizeof(work->helper_error_hint));
			work->helper_error_helper = args.helper;
			work->helper_error_own = !snap_error_is_stop(edata);
		}
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
