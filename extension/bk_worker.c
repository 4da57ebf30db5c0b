/*
 * bk_worker.c
 *		Background worker: samples the WAL position for the RPO, and forces
 *		WAL switches so that bk.target_rpo holds on a quiet server.
 *
 * PostgreSQL archives only complete segments.  A busy server fills one
 * quickly; a quiet one may take hours, and until then its latest changes
 * exist only in pg_wal.  archive_timeout is PostgreSQL's answer: the
 * checkpointer forces a switch when archive_timeout has passed since the
 * last switch and important WAL was written since.  It measures from the
 * last switch, not from the change, so a change written just before the
 * timer fires is shipped at once and one written just after waits almost
 * the whole period; and it leaves no time for the shipping itself.
 *
 * bk.target_rpo measures from the change.  The worker polls (every second,
 * or a tenth of the target if that is shorter) the same two signals the
 * checkpointer uses (GetLastSegSwitchData, GetLastImportantRecPtr).  When
 * it first sees important WAL beyond the last switch, that WAL was written
 * after its previous poll (which saw none, or saw an older switch position,
 * and the WAL beyond a newer switch is newer still): it counts from that
 * poll, never later than the change, rather than from the sighting, which
 * would spend up to one poll interval of the budget unseen.  Once the change
 * has been pending for 60% of the target (at least a second) it requests a
 * switch.  The remaining 40% of the budget is for archiving and shipping the
 * segment.  Like archive_timeout, the switch record is marked unimportant,
 * so a server that wrote nothing since does not switch again and again.  A
 * busy server that fills segments faster than that never gets a forced
 * switch at all.
 *
 * Use bk.target_rpo instead of archive_timeout (set archive_timeout = 0):
 * with both set, whichever fires first forces the switch.
 *
 * Each second the worker also records (important LSN, flush LSN, time) in
 * a ring in shared memory; bk_status() turns those into the current RPO.
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "bk.h"

/* Milliseconds between samples for the RPO ring. */
#define BK_SAMPLE_INTERVAL_MS 1000

/* Share of bk.target_rpo allowed to pass before a switch is forced. */
#define BK_SWITCH_FRACTION 0.6

/*
 * bk_worker_register
 *		Register the worker (from _PG_init, while preloading).
 */
void
bk_worker_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	strlcpy(worker.bgw_library_name, "bk", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "bk_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "bk RPO worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "bk RPO worker", BGW_MAXLEN);
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

/*
 * bk_worker_sample
 *		Record where WAL stands now in the shared ring.
 */
static void
bk_worker_sample(TimestampTz now)
{
	BkRpoSample sample;

	sample.important_lsn = GetLastImportantRecPtr();
	sample.flush_lsn = GetFlushRecPtr(NULL);
	sample.time = now;

	SpinLockAcquire(&bk_shared->mutex);
	bk_shared->rpo[bk_shared->rpo_next] = sample;
	bk_shared->rpo_next = (bk_shared->rpo_next + 1) % BK_RPO_SAMPLES;
	if (bk_shared->rpo_count < BK_RPO_SAMPLES)
		bk_shared->rpo_count++;
	SpinLockRelease(&bk_shared->mutex);
}

/*
 * bk_worker_main
 *		Sample every second; with bk.target_rpo, force switches in time.
 */
void
bk_worker_main(Datum main_arg)
{
	TimestampTz last_sample = 0;
	XLogRecPtr pending_switch_lsn = InvalidXLogRecPtr;
	TimestampTz pending_since = 0;
	TimestampTz previous_poll = 0; /* the last time the switch was checked */
	bool snapshot_cleaned = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	if (bk_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bk RPO worker started without bk's shared memory"),
				 errhint("Add bk to shared_preload_libraries.")));

	for (;;)
	{
		TimestampTz now;
		long poll_ms = BK_SAMPLE_INTERVAL_MS;

		if (ShutdownRequestPending)
			break;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/*
		 * A snapshot that was running when the server last stopped or
		 * crashed: its history row is failed once per start, which this
		 * worker sees first.
		 */
		if (!snapshot_cleaned && !RecoveryInProgress())
			snapshot_cleaned = bk_snapshot_start_cleanup();

		now = GetCurrentTimestamp();
		if (now - last_sample >= BK_SAMPLE_INTERVAL_MS * (int64) 1000)
		{
			bk_worker_sample(now);
			last_sample = now;
		}

		if (bk_target_rpo_s > 0 && XLogArchivingActive() &&
			!RecoveryInProgress())
		{
			int64 threshold_ms = Max(
				1000, (int64) (bk_target_rpo_s * 1000 * BK_SWITCH_FRACTION));
			XLogRecPtr last_switch_lsn;

			(void) GetLastSegSwitchData(&last_switch_lsn);
			if (GetLastImportantRecPtr() > last_switch_lsn)
			{
				if (pending_since == 0 || pending_switch_lsn != last_switch_lsn)
				{
					/*
					 * First sighting of unswitched changes after this switch:
					 * written after the previous poll (none before: now).
					 */
					pending_switch_lsn = last_switch_lsn;
					pending_since = previous_poll != 0 ? previous_poll : now;
				}
				else if (now - pending_since >= threshold_ms * 1000)
				{
					XLogRecPtr switchpoint = RequestXLogSwitch(true);

					/* A pointer at a segment boundary: nothing to switch. */
					if (XLogSegmentOffset(switchpoint, wal_segment_size) != 0)
					{
						SpinLockAcquire(&bk_shared->mutex);
						bk_shared->forced_switches++;
						SpinLockRelease(&bk_shared->mutex);
						ereport(DEBUG1, (errmsg_internal(
											"bk: WAL switch forced at %X/%X "
											"(bk.target_rpo = %d s)",
											LSN_FORMAT_ARGS(switchpoint),
											bk_target_rpo_s)));
					}
					pending_since = 0;
				}
			}
			else
				pending_since = 0;

			poll_ms = Min(poll_ms, Max(100, bk_target_rpo_s * 100L));
			previous_poll = now;
		}
		else
		{
			pending_since = 0;
			previous_poll = 0;
		}

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 poll_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	proc_exit(0);
}
