/*
 * bk_snapshot.c
 *		SELECT bk_snapshot(): the SQL functions (bk_snapshot,
 *		bk_snapshot_cancel, bk_snapshot_progress), the procedure
 *		bk_snapshot_wait, and the shared-memory slot
 *		through which a caller starts, watches and cancels the background
 *		worker that takes the snapshot.
 *
 * How a snapshot is taken is described in bk_snapshot.h; the pieces are
 *
 *	 bk_snapshot.c          SQL functions and the shared slot
 *	 bk_snapshot_worker.c   the worker's lifecycle and the history table
 *	 bk_snapshot_backup.c   backup start/stop and the directory walk
 *	 bk_snapshot_work.c     the shared work list and the helper workers
 *	 bk_snapshot_send.c     sending one file: whole, or its changed pages
 *	 bk_snapshot_record.c   the snapshot's own objects: record, manifest,
 *							label and map, and its audit events
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "mb/pg_wchar.h"
#include "nodes/parsenodes.h"
#include "postmaster/pgarch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/procarray.h"

#include "bk_snapshot.h"

PG_FUNCTION_INFO_V1(bk_snapshot);
PG_FUNCTION_INFO_V1(bk_snapshot_cancel);
PG_FUNCTION_INFO_V1(bk_snapshot_progress);
PG_FUNCTION_INFO_V1(bk_snapshot_wait);

/* How long bk_snapshot_wait waits for a worker that has not started. */
#define BK_SNAPSHOT_START_WAIT_MS 60000

static int snap_allocate_slot(void);
static void snap_make_id(char *out, size_t len);
static void snap_wait_for_startup(BkSnapshotSlot *slot,
								  BackgroundWorkerHandle *handle);
static bool snap_waits_for_us(int pid);
static void snap_wait_for_worker(BkSnapshotSlot *slot,
								 BackgroundWorkerHandle *handle);
static Datum snap_result_datum(FunctionCallInfo fcinfo,
							   const BkSnapshotSlot *slot);
static void snap_report_end(const BkSnapshotSlot *slot);
static void snap_check_id_argument(const char *id);
static void snap_require_shared(void);
static void snap_refuse_entangled_caller(Oid funcid);
static void snap_refuse_locked_catalog(void);
static char *snap_excerpt(const char *text);

/*
 * Is the WAL archived, and by bk?  A snapshot is restorable only with the
 * WAL from its start to its stop in the repository, and only bk's archive
 * module puts it there.  archive_library may name the module as "bk",
 * "$libdir/bk" or a path, with or without ".so".
 */
static bool
snap_wal_archived_by_bk(void)
{
	const char *name;
	size_t len;

	if (!XLogArchivingActive() || XLogArchiveLibrary == NULL)
		return false;
	name = strrchr(XLogArchiveLibrary, '/');
	name = name ? name + 1 : XLogArchiveLibrary;
	len = strlen(name);
	if (len > 3 && strcmp(name + len - 3, ".so") == 0)
		len -= 3;
	return len == 2 && strncmp(name, "bk", 2) == 0;
}

/*
 * bk_snapshot(kind, label, wait, fast)
 *		Start a snapshot in a background worker; by default wait for it.
 */
Datum
bk_snapshot(PG_FUNCTION_ARGS)
{
	char *kind;
	char *label;
	char *label_utf8;
	bool wait;
	bool fast;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	BkSnapshotSlot *slot;
	BkSnapshotSlot copy;
	int slot_index;

	/*
	 * Only the label may be NULL (no label).  A NULL kind, wait or fast is a
	 * caller's mistake (a NULL column, an unset variable), not a request for
	 * the default: taking a full snapshot for it would be a guess.
	 */
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("snapshot kind must not be null"),
						errhint("Use 'full', 'diff' or 'incr', or leave the "
								"argument out for 'full'.")));
	if (PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("argument \"%s\" of bk_snapshot() must not be "
							   "null",
							   PG_ARGISNULL(2) ? "wait" : "fast"),
						errhint("Use true or false, or leave the argument "
								"out for true.")));
	kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	label = PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	wait = PG_GETARG_BOOL(2);
	fast = PG_GETARG_BOOL(3);

	if (strcmp(kind, "full") != 0 && strcmp(kind, "diff") != 0 &&
		strcmp(kind, "incr") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid snapshot kind \"%s\"", snap_excerpt(kind)),
				 errhint("Use 'full', 'diff' (changes since the last full "
						 "snapshot) or 'incr' (changes since the last "
						 "snapshot).")));

	if (strlen(label) >= BK_SNAPSHOT_LABEL_LEN)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("snapshot label is too long"),
						errdetail("A label is at most %d bytes.",
								  BK_SNAPSHOT_LABEL_LEN - 1)));

	/*
	 * The snapshot's record (JSON) and audit events carry the label in
	 * UTF-8; the restore tool's JSON parser refuses anything else, so a
	 * label in another encoding, copied as it is, would leave a "complete"
	 * snapshot nobody can restore.  Convert it here, in a transaction (the
	 * worker sends the record outside one), and refuse what cannot be.
	 */
	if (GetDatabaseEncoding() == PG_SQL_ASCII &&
		!pg_verify_mbstr(PG_UTF8, label, strlen(label), true))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("snapshot label is not valid UTF-8"),
				 errdetail("The database encoding is SQL_ASCII; a snapshot's "
						   "record keeps its label in UTF-8."),
				 errhint("Use a label in UTF-8, or in ASCII.")));
	label_utf8 = pg_server_to_any(label, strlen(label), PG_UTF8);
	if (strlen(label_utf8) >= BK_SNAPSHOT_LABEL_LEN)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("snapshot label is too long"),
						errdetail("A label is at most %d bytes in UTF-8.",
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
	if (!snap_wal_archived_by_bk())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bk snapshots need WAL archived through bk"),
				 errdetail("archive_mode is \"%s\" and archive_library is "
						   "\"%s\": the WAL from the snapshot's start to its "
						   "stop would never reach the repository, so the "
						   "snapshot could never be restored.",
						   XLogArchivingActive() ? "on" : "off",
						   XLogArchiveLibrary ? XLogArchiveLibrary : ""),
				 errhint("Set archive_mode = on (restart) and archive_library "
						 "= 'bk' (reload).")));

	/*
	 * The worker writes in a transaction of its own (the history, the page
	 * digests) and the backup writes WAL: a caller who asked for a read-only
	 * transaction must not get that through us.
	 */
	PreventCommandIfReadOnly("bk_snapshot()");
	snap_refuse_entangled_caller(fcinfo->flinfo->fn_oid);
	if (bk_kafka_brokers == NULL || bk_kafka_brokers[0] == '\0' ||
		bk_key_file == NULL || bk_key_file[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bk is not configured"),
				 errhint("Set bk.kafka_brokers and bk.key_file, and reload.")));

	slot_index = snap_allocate_slot();
	slot = &bk_shared->snapshots[slot_index];

	snap_worker_init(&worker, "bk_snapshot_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "bk snapshot %s", slot->id);
	strlcpy(worker.bgw_type, "bk snapshot", BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(slot_index);
	worker.bgw_notify_pid = MyProcPid;

	SpinLockAcquire(&bk_shared->mutex);
	strlcpy(slot->kind, kind, sizeof(slot->kind));
	strlcpy(slot->label, label, sizeof(slot->label));
	strlcpy(slot->label_utf8, label_utf8, sizeof(slot->label_utf8));
	slot->fast = fast;
	slot->jobs = bk_snapshot_jobs;
	slot->range_blocks = bk_snapshot_range_blocks;
	slot->database = MyDatabaseId;
	SpinLockRelease(&bk_shared->mutex);

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		SpinLockAcquire(&bk_shared->mutex);
		slot->state = BK_SNAPSHOT_FREE;
		SpinLockRelease(&bk_shared->mutex);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the bk snapshot worker"),
				 errdetail("All %d background worker slots "
						   "(max_worker_processes) are in use.",
						   max_worker_processes),
				 errhint("Raise max_worker_processes (restart), or retry "
						 "once other background workers have ended.")));
	}
	snap_wait_for_startup(slot, handle);

	if (wait)
		snap_wait_for_worker(slot, handle);

	SpinLockAcquire(&bk_shared->mutex);
	copy = *slot;
	SpinLockRelease(&bk_shared->mutex);
	if (wait)
		snap_report_end(&copy);
	return snap_result_datum(fcinfo, &copy);
}

/*
 * snap_refuse_entangled_caller
 *		Refuse a calling transaction that the worker would wait for, or
 *		that has written what the worker cannot see.
 *
 * The worker is another backend, in transactions of its own: it writes the
 * history and the page digests (RowExclusiveLock), and sees only what was
 * committed.  A caller holding a lock on one of those tables that conflicts
 * with RowExclusiveLock (ShareLock and stronger: LOCK ... IN SHARE MODE,
 * TRUNCATE, an ALTER TABLE of an update script) blocks the worker while
 * waiting for it on a latch, where the deadlock detector never looks: the
 * call hung until statement_timeout, forever without one.  A lock on a
 * system catalog that conflicts with AccessShareLock (LOCK pg_class, or a
 * view on it, IN ACCESS EXCLUSIVE MODE) blocks the worker too: it reads the
 * catalogs to connect, to plan its SQL and on every cache miss, so which
 * ones depends on its caches (25 in a snapshot on PostgreSQL 15), and any
 * catalog counts.  It takes nothing stronger than AccessShareLock on them,
 * and no lock at all on the relations whose files it copies.  A caller that
 * has an xid has written something: an ALTER EXTENSION bk UPDATE just run
 * (the worker still sees the old version and says to run it), rows the
 * snapshot would not contain although taken after them.  Archiving needs
 * wal_level replica, which logs an AccessExclusiveLock on a relation and so
 * gives its transaction an xid: only such a transaction can hold the one
 * lock mode that conflicts with AccessShareLock, and only there are the
 * catalog locks looked for (in the whole lock table), to be named rather
 * than taken for writes.  bk_snapshot_wait needs no such check: it runs
 * only as a CALL outside a transaction block, and commits before it waits.
 */
static void
snap_refuse_entangled_caller(Oid funcid)
{
	static const char *const tables[] = {"bk_snapshot_history",
										 "bk_snapshot_blocks"};
	/* The extension is not relocatable: its tables are in our schema. */
	Oid schema = get_func_namespace(funcid);

	for (size_t tableIdx = 0; tableIdx < lengthof(tables); tableIdx++)
	{
		Oid relid = get_relname_relid(tables[tableIdx], schema);
		LOCKTAG tag;

		if (!OidIsValid(relid))
			continue;
		SET_LOCKTAG_RELATION(tag, MyDatabaseId, relid);
		/* Strongest first: TRUNCATE holds ShareLock too, for its indexes. */
		for (LOCKMODE mode = AccessExclusiveLock; mode >= ShareLock; mode--)
			if (LockHeldByMe(&tag, mode))
				ereport(ERROR,
						(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
						 errmsg("bk_snapshot() cannot be called in a "
								"transaction that holds %s on table "
								"\"%s\"",
								GetLockmodeName(DEFAULT_LOCKMETHOD, mode),
								tables[tableIdx]),
						 errdetail("The snapshot worker writes that table "
								   "in a transaction of its own: it would "
								   "wait for this transaction, and this "
								   "transaction for it."),
						 errhint("Call bk_snapshot() in a transaction of "
								 "its own.")));
	}
	if (GetTopTransactionIdIfAny() != InvalidTransactionId)
	{
		snap_refuse_locked_catalog();
		/*
		 * A LOCK ... IN ACCESS EXCLUSIVE MODE alone gets an xid too (above):
		 * say so, rather than tell its caller that it wrote.
		 */
		if (MyXactFlags & XACT_FLAGS_ACQUIREDACCESSEXCLUSIVELOCK)
			ereport(ERROR,
					(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
					 errmsg("bk_snapshot() cannot be called in a transaction "
							"that has written to the database or taken an "
							"ACCESS EXCLUSIVE lock"),
					 errdetail("Such a lock gives the transaction an id, as a "
							   "write does, and bk cannot tell them apart: the "
							   "snapshot worker runs in a transaction of its "
							   "own and sees only what is committed."),
					 errhint("Commit first, then call bk_snapshot() in a "
							 "transaction of its own.")));
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("bk_snapshot() cannot be called in a transaction "
						"that has written to the database"),
				 errdetail("The snapshot worker runs in a transaction of its "
						   "own and sees only what is committed: not what "
						   "this transaction wrote, such as an ALTER "
						   "EXTENSION bk UPDATE."),
				 errhint("Commit first, then call bk_snapshot() in a "
						 "transaction of its own.")));
	}
}

/*
 * snap_refuse_locked_catalog
 *		Refuse a caller holding a lock on a system catalog that conflicts
 *		with the worker's AccessShareLock; the one of lowest OID is named.
 *
 * Which catalogs the worker opens depends on its cache misses, so this
 * looks at every lock of ours, from the lock manager (as pg_locks does):
 * relations of our database and shared ones alike.
 */
static void
snap_refuse_locked_catalog(void)
{
	LockData *locks = GetLockStatusData();
	Oid found = InvalidOid;
	LOCKMODE found_mode = NoLock;

	for (int lockIdx = 0; lockIdx < locks->nelements; lockIdx++)
	{
		const LockInstanceData *lock = &locks->locks[lockIdx];
		Oid relid = lock->locktag.locktag_field2;

		if (lock->pid != MyProcPid ||
			lock->locktag.locktag_type != LOCKTAG_RELATION ||
			!IsCatalogRelationOid(relid) ||
			(OidIsValid(found) && relid >= found))
			continue;
		for (LOCKMODE mode = MaxLockMode; mode > NoLock; mode--)
			if ((lock->holdMask & LOCKBIT_ON(mode)) &&
				DoLockModesConflict(mode, AccessShareLock))
			{
				found = relid;
				found_mode = mode;
				break;
			}
	}
	if (OidIsValid(found))
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("bk_snapshot() cannot be called in a transaction "
						"that holds %s on system catalog \"%s\"",
						GetLockmodeName(DEFAULT_LOCKMETHOD, found_mode),
						get_rel_name(found)),
				 errdetail("The snapshot worker reads the system catalogs in "
						   "a transaction of its own: it would wait for this "
						   "transaction, and this transaction for it."),
				 errhint("Call bk_snapshot() in a transaction of its own.")));
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

/* Is id of snap_make_id's form? */
static bool
snap_id_valid(const char *id)
{
	static const char form[] = "ddddddddTddddddZ-xxxxxxxx";

	if (strlen(id) != sizeof(form) - 1)
		return false;
	for (size_t pos = 0; pos < sizeof(form) - 1; pos++)
	{
		char c = id[pos];

		if (form[pos] == 'd' ? !(c >= '0' && c <= '9')
			: form[pos] == 'x'
				? !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))
				: c != form[pos])
			return false;
	}
	return true;
}

/*
 * snap_fail_unfinished
 *		Fail a snapshot whose worker is gone (or going) without having
 *		recorded how it ended; an ended snapshot keeps its outcome.
 */
void
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
 * snap_wait_for_startup
 *		Wait until the postmaster has started the worker, even for a caller
 *		that does not wait for the snapshot.
 *
 * A worker the postmaster cannot start (fork() fails, no free child
 * process slot) is forgotten without ever running: it never claims its
 * slot, and only this caller's handle can tell.  Not waiting here left the
 * slot "starting" for good, and every later bk_snapshot() refused as
 * already running until a restart.  The wait is short: the postmaster
 * starts a registered worker at once.
 */
static void
snap_wait_for_startup(BkSnapshotSlot *slot, BackgroundWorkerHandle *handle)
{
	pid_t pid;
	BgwHandleStatus status = WaitForBackgroundWorkerStartup(handle, &pid);
	bool never_ran;

	if (status == BGWH_STARTED)
		return;

	/*
	 * Stopped: the worker may also have run and ended already, and then it
	 * claimed the slot (or failed it on its way out).
	 */
	SpinLockAcquire(&bk_shared->mutex);
	never_ran = slot->state == BK_SNAPSHOT_STARTING && slot->pid == 0;
	SpinLockRelease(&bk_shared->mutex);
	if (status == BGWH_STOPPED && !never_ran)
		return;
	snap_fail_unfinished(slot, status == BGWH_POSTMASTER_DIED
								   ? "the postmaster died before the snapshot "
									 "worker started"
								   : "the snapshot worker did not start");
	if (status == BGWH_POSTMASTER_DIED)
		ereport(ERROR, (errcode(ERRCODE_ADMIN_SHUTDOWN),
						errmsg("the postmaster died before the bk snapshot "
							   "worker started")));
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("the bk snapshot worker did not start"),
			 errdetail("The postmaster could not start it: no process slot "
					   "was free, or fork() failed."),
			 errhint("The server log says why.  Raise max_worker_processes "
					 "(or max_connections) if slots ran out, then retry.")));
}

/*
 * snap_waits_for_us
 *		Does the worker or a helper (pid) wait for a lock this transaction
 *		holds, directly or behind sessions that wait for one?
 *
 * snap_refuse_entangled_caller sees only this transaction's own locks.
 * One that conflicts with nothing of the worker's can still hold it up
 * through a third session: this transaction read bk_snapshot_history
 * (AccessShareLock), a session asks for AccessExclusiveLock on it (ALTER
 * EXTENSION bk UPDATE, VACUUM FULL) and waits for this transaction, and
 * the worker's RowExclusiveLock queues behind that request.  The deadlock
 * detector sees this transaction waiting for nothing and finds no cycle:
 * the call hung until statement_timeout.  A helper can be held up the same
 * way while the worker waits for it, not for a lock: helpers connect once
 * the files are listed, and connecting reads pg_database, so a LOCK
 * pg_database IN ACCESS EXCLUSIVE MODE queued behind a caller that read it
 * held up the helper, and the call hung.  pg_blocking_pids() follows the
 * chain from the process, as the isolation tester does; only while its
 * wait event says it waits for a lock, so the lock manager is not scanned
 * while it copies.  Each call of pg_blocking_pids() is a view of its own
 * moment, so a chain can join edges that never held at once, or a PID
 * since reused: snap_wait_for_worker acts only on a process found on two
 * looks in a row.
 */
static bool
snap_waits_for_us(int pid)
{
	PGPROC *proc = BackendPidGetProc(pid);
	MemoryContext context;
	MemoryContext old;
	List *pending;
	List *seen = NIL;
	bool found = false;

	/* Read without a lock, as pg_stat_activity does. */
	if (proc == NULL || (((volatile PGPROC *) proc)->wait_event_info &
						 0xFF000000) != PG_WAIT_LOCK)
		return false;
	context = AllocSetContextCreate(CurrentMemoryContext, "bk snapshot wait",
									ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(context);
	pending = list_make1_int(pid);
	while (pending != NIL && !found)
	{
		int blocked = linitial_int(pending);
		ArrayType *blockers;
		Datum *pids;
		int count;

		pending = list_delete_first(pending);
		if (list_member_int(seen, blocked))
			continue;
		seen = lappend_int(seen, blocked);
		blockers = DatumGetArrayTypeP(
			DirectFunctionCall1(pg_blocking_pids, Int32GetDatum(blocked)));
		deconstruct_array(blockers, INT4OID, sizeof(int32), true, TYPALIGN_INT,
						  &pids, NULL, &count);
		for (int idx = 0; idx < count; idx++)
		{
			if (DatumGetInt32(pids[idx]) == MyProcPid)
				found = true;
			pending = lappend_int(pending, DatumGetInt32(pids[idx]));
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(context);
	return found;
}

/*
 * snap_wait_for_worker
 *		Wait until the snapshot ends.  Cancelling this wait (Ctrl-C) does not
 *		cancel the snapshot: it runs on in its worker.  Nor does the error
 *		when the worker or a helper waits for this transaction, which only
 *		its end, and that of the sessions queued in between, can resolve.
 *
 * That error is SQLSTATE 25001, as the refusals of an entangled caller
 * before the start: the caller must call in a transaction of its own.  Not
 * 40P01 (deadlock_detected), whose class drivers and pools retry on their
 * own: a retry would start a second snapshot or meet "already running".
 * Nor 55P03, 55006 or 55000, which Npgsql counts as transient too.
 */
static void
snap_wait_for_worker(BkSnapshotSlot *slot, BackgroundWorkerHandle *handle)
{
	int suspect = 0; /* the PID found waiting for us at the last look */

	for (int round = 1;; round++)
	{
		BkSnapshotState state;
		BgwHandleStatus status;
		pid_t pid;
		char id[BK_SNAPSHOT_ID_LEN];
		int helper_pids[BK_SNAPSHOT_MAX_JOBS];

		SpinLockAcquire(&bk_shared->mutex);
		state = slot->state;
		strlcpy(id, slot->id, sizeof(id));
		memcpy(helper_pids, slot->helper_pids, sizeof(helper_pids));
		SpinLockRelease(&bk_shared->mutex);
		if (state == BK_SNAPSHOT_COMPLETE || state == BK_SNAPSHOT_FAILED ||
			state == BK_SNAPSHOT_CANCELLED)
			return;
		status = GetBackgroundWorkerPid(handle, &pid);
		if (status == BGWH_STOPPED)
		{
			/* The worker is gone and never said how it ended: it died. */
			snap_fail_unfinished(slot,
								 "the snapshot worker exited unexpectedly");
			return;
		}
		/* About once a second, from the start: connecting takes locks. */
		if (status == BGWH_STARTED && round % 5 == 0)
		{
			int found = -1; /* 0: the worker, else that helper's number */
			int found_pid = 0;
			char who[64 + BK_SNAPSHOT_ID_LEN];

			for (int proc = 0; proc <= BK_SNAPSHOT_MAX_JOBS && found < 0;
				 proc++)
			{
				int proc_pid = proc == 0 ? (int) pid : helper_pids[proc - 1];

				if (proc_pid != 0 && snap_waits_for_us(proc_pid))
				{
					found = proc;
					found_pid = proc_pid;
				}
			}
			if (found_pid != 0 && found_pid == suspect)
			{
				if (found == 0)
					snprintf(who, sizeof(who), "The worker of snapshot %s", id);
				else
					snprintf(who, sizeof(who), "Helper %d of snapshot %s",
							 found, id);
				ereport(ERROR,
						(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
						 errmsg("bk_snapshot() cannot wait for its worker, "
								"which waits for this transaction"),
						 errdetail("%s (PID %d) waits for a lock that this "
								   "transaction holds, or for a session that "
								   "waits for one.  The snapshot goes on once "
								   "this transaction has ended, and so have "
								   "the sessions queued in between.",
								   who, found_pid),
						 errhint("Call bk_snapshot() in a transaction of its "
								 "own.  CALL bk_snapshot_wait('%s') waits for "
								 "this one.",
								 id)));
			}
			suspect = found_pid;
		}
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 200L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

const char *
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

/*
 * How a snapshot ended, to the caller who waited: an error if it failed or
 * was cancelled; a warning if it read pages whose checksum failed, which
 * the worker could only say in the server log.
 */
static void
snap_report_end(const BkSnapshotSlot *slot)
{
	if (slot->state == BK_SNAPSHOT_COMPLETE && slot->checksum_failures > 0)
		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("bk snapshot %s read " INT64_FORMAT
						" page%s whose checksum failed",
						slot->id, slot->checksum_failures,
						slot->checksum_failures == 1 ? "" : "s"),
				 errdetail("It is complete and keeps the pages as read; the "
						   "server log names them, and so do bk verify and "
						   "bk restore."),
				 errhint("The data files of this cluster are damaged: check "
						 "it (pg_amcheck --all), repair it, then take a new "
						 "full snapshot.")));
	if (slot->state == BK_SNAPSHOT_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("bk snapshot %s failed", slot->id),
				 errdetail("%s", slot->error),
				 slot->error_hint[0] ? errhint("%s", slot->error_hint) : 0));
	if (slot->state == BK_SNAPSHOT_CANCELLED)
		ereport(ERROR, (errcode(ERRCODE_QUERY_CANCELED),
						errmsg("bk snapshot %s was cancelled", slot->id)));
}

/* Without the shared slots (bk not preloaded) there are no snapshots. */
static void
snap_require_shared(void)
{
	if (bk_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bk snapshots are not available"),
				 errhint("Add bk to shared_preload_libraries and restart the "
						 "server.")));
}

/*
 * snap_excerpt
 *		What a caller gave, for a message: its first SNAP_EXCERPT_CHARS
 *		characters, a control character as \xNN, and "..." if there was
 *		more.
 *
 * An argument may be of any length and hold newlines.  Echoed whole,
 * bk_snapshot_cancel(repeat(E'x\n', 5000000)) sent a 10 MB error and wrote
 * 25 MB to the server log, and a newline let the caller write log lines of
 * its choosing.  libbk's bk_text_excerpt reads UTF-8 and leaves control
 * characters as they are; an argument is in the database encoding, which
 * pg_mblen steps through by whole characters.
 */
#define SNAP_EXCERPT_CHARS 64

static char *
snap_excerpt(const char *text)
{
	StringInfoData buf;
	int chars = 0;

	initStringInfo(&buf);
	while (*text != '\0' && chars < SNAP_EXCERPT_CHARS)
	{
		int len = pg_mblen(text);

		/* A text argument is valid in its encoding: no NUL inside one. */
		for (int byte = 1; byte < len; byte++)
			if (text[byte] == '\0')
				len = byte;
		if (len == 1 && ((unsigned char) *text < 0x20 || *text == 0x7f))
			appendStringInfo(&buf, "\\x%02x", (unsigned char) *text);
		else
			appendBinaryStringInfo(&buf, text, len);
		text += len;
		chars++;
	}
	if (*text != '\0')
		appendStringInfoString(&buf, "...");
	return buf.data;
}

/*
 * An id argument, checked: a typo is not "no such snapshot running".
 */
static void
snap_check_id_argument(const char *id)
{
	if (!snap_id_valid(id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid snapshot id \"%s\"", snap_excerpt(id)),
				 errhint("A snapshot id reads like 20261124T051200Z-0a1b2c3d; "
						 "bk_snapshot_progress lists the recent ones.")));
	snap_require_shared();
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
 *		marked cancelled and never becomes restorable.  Once its record is
 *		on its way the request is too late (snap_send_own_objects).
 *
 * The worker's PID is signalled while snapshot_signal_lock is held, and the
 * worker clears its PID under that lock before it exits: a PID read under
 * the lock is that of a live worker, not one the kernel may since have given
 * to another process (which SIGINT would kill).  This is how PostgreSQL
 * signals other backends safely (CancelVirtualTransaction, CancelDBBackends:
 * kill under ProcArrayLock, which a backend takes to leave the proc array
 * before it exits).  A background worker handle would not do: it lives in
 * the caller's memory, and the caller may be gone (wait => false).
 */
Datum
bk_snapshot_cancel(PG_FUNCTION_ARGS)
{
	char *id;
	int pid = 0;
	bool found = false;

	/* Not STRICT from 0.8: a NULL id is a mistake to say, not a no-op. */
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("snapshot id must not be NULL")));
	id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	snap_check_id_argument(id);
	LWLockAcquire(bk_shared->snapshot_signal_lock, LW_SHARED);
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

	/*
	 * SIGINT cancels whatever the worker waits on (a checkpoint, Kafka).  No
	 * PID yet: the worker has not started, and finds the request when it
	 * does.
	 */
	if (pid != 0)
		kill(pid, SIGINT);
	LWLockRelease(bk_shared->snapshot_signal_lock);
	if (!found)
	{
		ereport(NOTICE, (errmsg("no running bk snapshot \"%s\"", id)));
		PG_RETURN_BOOL(false);
	}
	PG_RETURN_BOOL(true);
}

/*
 * bk_snapshot_wait(id), a procedure
 *		CALL bk_snapshot_wait(id): wait until a snapshot started with
 *		bk_snapshot(wait => false) ends, without holding a snapshot of the
 *		database meanwhile; an error if it failed or was cancelled.
 *
 * A function called by SELECT runs under its statement's snapshot, which
 * holds back the xmin horizon for the whole call: a bk_snapshot() that
 * waits the hours a large backup takes keeps VACUUM from removing dead
 * rows in every database and makes CREATE INDEX CONCURRENTLY wait.  A
 * procedure called by CALL outside a transaction block may commit, which
 * releases the portal's snapshot (SPI_commit); it then waits in a
 * transaction that takes none, reading shared memory only.  Cancelling the
 * wait (Ctrl-C, statement_timeout) does not cancel the snapshot.
 */
Datum
bk_snapshot_wait(PG_FUNCTION_ARGS)
{
	char id[BK_SNAPSHOT_ID_LEN];
	char *arg;
	BkSnapshotSlot copy;
	TimestampTz waited_since;

	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext) ||
		castNode(CallContext, fcinfo->context)->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("bk_snapshot_wait() must be called with CALL "
						"outside a transaction block"),
				 errdetail("It commits the calling transaction so as to "
						   "hold no snapshot of the database while it "
						   "waits."),
				 errhint("Run \"CALL bk_snapshot_wait(id)\" on its own, in "
						 "autocommit mode.")));
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("snapshot id must not be NULL")));
	arg = text_to_cstring(PG_GETARG_TEXT_PP(0));
	snap_check_id_argument(arg);
	/* The argument lives in the transaction that SPI_commit ends. */
	strlcpy(id, arg, sizeof(id));

	SPI_connect_ext(SPI_OPT_NONATOMIC);
	SPI_commit();
	waited_since = GetCurrentTimestamp();
	for (;;)
	{
		bool found = false;

		SpinLockAcquire(&bk_shared->mutex);
		for (int slotIdx = 0; slotIdx < BK_SNAPSHOT_SLOTS; slotIdx++)
			if (strcmp(bk_shared->snapshots[slotIdx].id, id) == 0)
			{
				copy = bk_shared->snapshots[slotIdx];
				found = true;
				break;
			}
		SpinLockRelease(&bk_shared->mutex);
		if (!found)
			ereport(
				ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no bk snapshot \"%s\" in bk_snapshot_progress", id),
				 errhint("It ended before eight newer ones, or before "
						 "the server last started: bk_snapshot_history "
						 "says how it ended.")));
		if (copy.state == BK_SNAPSHOT_COMPLETE ||
			copy.state == BK_SNAPSHOT_FAILED ||
			copy.state == BK_SNAPSHOT_CANCELLED)
			break;

		/*
		 * A worker that never started (the postmaster could not fork it)
		 * leaves the slot starting for good; bk_snapshot() would have seen
		 * it through its worker handle, which only that caller has.
		 */
		if (copy.state == BK_SNAPSHOT_STARTING && copy.pid == 0 &&
			TimestampDifferenceExceeds(waited_since, GetCurrentTimestamp(),
									   BK_SNAPSHOT_START_WAIT_MS))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the worker of bk snapshot %s has not started in "
							"%d s",
							id, BK_SNAPSHOT_START_WAIT_MS / 1000),
					 errhint("The server log says why the postmaster could "
							 "not start it (max_worker_processes, a failed "
							 "fork).")));
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 200L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_finish();
	snap_report_end(&copy);
	PG_RETURN_VOID();
}

/*
 * snap_forget_worker_pid
 *		The worker's last word in its slot before it exits: its PID is no
 *		longer to be signalled.  Waits for a cancel that is signalling it.
 */
void
snap_forget_worker_pid(BkSnapshotSlot *slot)
{
	LWLockAcquire(bk_shared->snapshot_signal_lock, LW_EXCLUSIVE);
	SpinLockAcquire(&bk_shared->mutex);
	/* The slot may hold a newer snapshot by now, with its own worker. */
	if (slot->pid == MyProcPid)
		slot->pid = 0;
	SpinLockRelease(&bk_shared->mutex);
	LWLockRelease(bk_shared->snapshot_signal_lock);
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

	snap_require_shared();
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

/*
 * snap_worker_init
 *		What the snapshot worker and its helpers have in common: dynamic,
 *		connected to a database, never restarted (a snapshot that died is
 *		failed, not resumed).
 */
void
snap_worker_init(BackgroundWorker *worker, const char *function)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags =
		BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker->bgw_library_name, "bk", BGW_MAXLEN);
	strlcpy(worker->bgw_function_name, function, BGW_MAXLEN);
}

/*
 * snap_worker_connect
 *		Connect a snapshot worker or helper to the caller's database, with a
 *		search_path the database cannot change.
 *
 * The process runs as the bootstrap superuser, and the database's and the
 * role's settings (ALTER DATABASE ... SET search_path, which the database
 * owner may run) apply to it.  Its SQL names the extension's tables with
 * their schema, but functions and operators (now(), unnest(), =) are looked
 * up along search_path: a schema placed before pg_catalog, or an unnest(text[])
 * that matches better than pg_catalog's polymorphic one, would run someone
 * else's code as superuser.  Only pg_catalog, then, as autovacuum does.
 */
void
snap_worker_connect(Oid database)
{
	BackgroundWorkerInitializeConnectionByOid(database, InvalidOid, 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET,
					PGC_S_OVERRIDE);
}

void
snap_set_phase(BkSnapshotSlot *slot, const char *phase)
{
	SpinLockAcquire(&bk_shared->mutex);
	strlcpy(slot->phase, phase, sizeof(slot->phase));
	SpinLockRelease(&bk_shared->mutex);
	pgstat_report_activity(STATE_RUNNING, phase);
}

void
snap_add_progress(BkSnapshotSlot *slot, int64 read, int64 sent,
				  int64 files_done)
{
	SpinLockAcquire(&bk_shared->mutex);
	slot->bytes_read += read;
	slot->bytes_sent += sent;
	slot->files_done += files_done;
	SpinLockRelease(&bk_shared->mutex);
}
