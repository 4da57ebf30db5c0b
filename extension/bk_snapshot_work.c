/*
 * bk_snapshot_work.c
 *		The work list in dynamic shared memory and the helper workers that
 *		share it (bk.snapshot_jobs > 1): every process takes the next file,
 *		largest first, and writes what it found into the file's entry.
 */
#include "postgres.h"

#include "bk_snapshot.h"

static void snap_request_stop(SnapWork *work);

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
			snap_record_directory(run, entry->path, entry->mode);
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
void
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
