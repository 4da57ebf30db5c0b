/*
 * bk_snapshot_worker.c
 *		The snapshot worker's lifecycle: claim the slot, prepare (source,
 *		parent, history row), take the snapshot, record how it ended in the
 *		slot, the history table and the audit topic, and release what it
 *		opened.  Also the Kafka producer and spool each copying process
 *		opens.
 */
#include "postgres.h"

#include "bk_snapshot.h"

static void snap_run(SnapRun *run);
static char *snap_extension_table(const char *name, const char *column);
static void snap_prepare(SnapRun *run);
static void snap_finish_record(SnapRun *run, BkSnapshotState state,
							   const char *error);
static void snap_release_cancel(SnapRun *run);
static void snap_refuse_after_unknown(SnapRun *run, const char *table,
									  TimestampTz parent_start);
static void snap_refuse_other_source(SnapRun *run, const char *parent_id,
									 const char *parent_source,
									 const char *parent_prefix);
static void snap_fail_history_on_exit(int code, Datum arg);
static void snap_cleanup_on_exit(int code, Datum arg);
static void snap_write_running_file(SnapRun *run);
static bool snap_read_running_file(Oid *database, char *id, size_t id_len,
								   char *kind, TimestampTz *requested);
static void snap_remove_running_file(const char *id);
static bool snap_id_live(const char *id);
static void snap_fail_history_row(const char *table, const char *id,
								  const char *kind, TimestampTz requested,
								  const char *error);

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

	run = MemoryContextAllocZero(TopMemoryContext, sizeof(SnapRun));
	run->slot = &bk_shared->snapshots[slot_index];
	run->spool_fd = -1;
	run->helper = -1;
	run->control_index = -1;

	/*
	 * However this process ends (FATAL too), its helpers stop with it and
	 * an unfinished snapshot is failed.  Registered before connecting: a
	 * connection that fails (the database was dropped, or no longer allows
	 * connections) would otherwise leave the slot "starting" for good, and
	 * every later bk_snapshot() refused as already running until a restart
	 * (nobody watches the slot when the caller did not wait).  Also before
	 * PG_ENSURE_ERROR_CLEANUP registers (and cancels) its own callback,
	 * which must be the latest one.
	 */
	before_shmem_exit(snap_stop_on_exit, PointerGetDatum(run));
	snap_worker_connect(bk_shared->snapshots[slot_index].database);

	/*
	 * Registered after connecting, so that it runs before the connection's
	 * own exit callbacks (ShutdownPostgres, the statistics) while it can
	 * still write: a FATAL (terminated, server shut down) fails the
	 * history row at once instead of leaving it "running" until the next
	 * snapshot.
	 */
	before_shmem_exit(snap_fail_history_on_exit, PointerGetDatum(run));

	SpinLockAcquire(&bk_shared->mutex);
	strlcpy(run->id, run->slot->id, sizeof(run->id));
	strlcpy(run->kind, run->slot->kind, sizeof(run->kind));
	run->slot->pid = MyProcPid;
	run->slot->state = BK_SNAPSHOT_RUNNING;
	SpinLockRelease(&bk_shared->mutex);
	pgstat_report_activity(STATE_RUNNING, run->id);

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
		bk_kafka_alarm_covered(run->start_time);
		snap_release_cancel(run);
	}
	PG_CATCH();
	{
		ErrorData *edata;
		bool cancelled;
		char helper_error[BK_FAILURE_LEN];
		char helper_hint[BK_FAILURE_LEN];
		char *failure;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();

		/*
		 * Cancelled only if the cancel is what stopped us: a failure that
		 * came first (here, or in a helper) while a cancel was on its way
		 * is what the DBA must see, not "cancelled".  Once the record may
		 * be out a cancel is held off and stops nothing: what failed then
		 * was not the cancel, and the snapshot may be restorable (a
		 * cancelled one never is).
		 */
		cancelled = run->slot->cancel_requested && !run->record_sending &&
					snap_error_is_stop(edata);
		if (cancelled &&
			snap_helper_failure(run, helper_error, sizeof(helper_error),
								helper_hint, sizeof(helper_hint)))
		{
			cancelled = false;
			edata->message = pstrdup(helper_error);
			edata->detail = NULL;
			edata->hint = helper_hint[0] ? pstrdup(helper_hint) : NULL;
		}
		failure = snap_failure_text(edata);

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
				 errdetail("%s", failure),
				 run->record_sending
					 ? errhint("Its record may have reached Kafka: the "
							   "repository may hold it (bk list says), and "
							   "diff and incr snapshots are refused until a "
							   "newer full snapshot completes.")
				 : get_backup_status() == SESSION_BACKUP_NONE
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
			failure);
		snap_release_cancel(run);
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
void
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
	settings.window_bytes = SNAP_KAFKA_WINDOW_BYTES;
	settings.linger_ms = SNAP_KAFKA_LINGER_MS;
	run->chunk_size = (uint32) bk_chunk_size;
	run->producer = bk_producer_new(&settings, &err);
	if (run->producer != NULL)
		run->encoder = bk_encoder_new(key, run->chunk_size, &err);

	/*
	 * Connect and learn the snapshot topic now, while the backup starts:
	 * left to the first file, librdkafka 2.0 fetches the topic's metadata
	 * only at its broker thread's next wake-up, up to a second later.
	 */
	if (run->encoder != NULL &&
		!bk_producer_connect(run->producer, run->snapshot_topic, &err))
	{
		bk_encoder_free(run->encoder);
		run->encoder = NULL;
	}
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
void
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

void
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
void
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
	bk_confirm_reset(); /* snap_confirm_prepare's consumer, if any */
	bk_kafka_log_flush();
}

/* Run SQL with parameters in a transaction of its own, through SPI. */
void
snap_sql_begin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
}

void
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
 *		says what to do if the installed extension predates the table, or
 *		the table's newest column.
 */
static char *
snap_extension_table(const char *name, const char *column)
{
	char *schema;
	bool exists;
	bool isnull;

	/* Inside the worker's SPI transaction (snap_sql_begin). */
	if (SPI_execute_with_args(
			"SELECT n.nspname, EXISTS (SELECT FROM pg_catalog.pg_class c "
			"JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid "
			"WHERE c.relnamespace = n.oid AND c.relname = $1 "
			"AND a.attname = $2 AND NOT a.attisdropped) "
			"FROM pg_catalog.pg_extension e "
			"JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
			"WHERE e.extname = 'bk'",
			2, (Oid[]){TEXTOID, TEXTOID},
			(Datum[]){CStringGetTextDatum(name), CStringGetTextDatum(column)},
			NULL, true, 1) != SPI_OK_SELECT ||
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
						"library: table \"%s\" or its column \"%s\" is "
						"missing",
						name, column),
				 errhint("Run ALTER EXTENSION bk UPDATE.")));
	return quote_qualified_identifier(schema, name);
}

/*
 * snap_fail_stale_history
 *		Rows still "running" whose snapshot is no longer running (the server
 *		crashed, or the worker died) are marked failed.
 */
void
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
	strlcpy(run->topic_prefix, bk_topic_prefix, sizeof(run->topic_prefix));
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
	/* Newest change last: an old version names its oldest missing piece. */
	run->blocks_table = MemoryContextStrdup(
		TopMemoryContext,
		snap_extension_table("bk_snapshot_blocks", "first_block"));
	(void) snap_extension_table("bk_snapshot_history", "record_sent");
	run->history_table = MemoryContextStrdup(
		TopMemoryContext,
		snap_extension_table("bk_snapshot_history", "topic_prefix"));
	table = run->history_table;
	snap_fail_stale_history(run);
	bk_blockmap_prune(run->blocks_table, run->history_table);
	/* Kept even if this snapshot is refused below. */
	snap_sql_end();
	snap_sql_begin();
	bk_blockmap_writer_init(&run->map_writer, run->blocks_table, run->id);
	if (strcmp(run->kind, "full") != 0)
	{
		initStringInfo(&sql);
		appendStringInfo(
			&sql,
			"SELECT snapshot_id, start_lsn, file_list, start_time, "
			"source_id, topic_prefix FROM %s "
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
			MemoryContext old;

			snap_refuse_other_source(run, SPI_getvalue(tuple, desc, 1),
									 SPI_getvalue(tuple, desc, 5),
									 SPI_getvalue(tuple, desc, 6));
			snap_refuse_after_unknown(
				run, table,
				DatumGetTimestampTz(SPI_getbinval(tuple, desc, 4, &isnull)));
			old = MemoryContextSwitchTo(TopMemoryContext);
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
	/* Before the row: no "running" row without it. */
	snap_write_running_file(run);
	initStringInfo(&sql);
	appendStringInfo(
		&sql,
		"INSERT INTO %s (snapshot_id, kind, parent_id, state, label, "
		"requested_time, source_id, topic_prefix) VALUES ($1, $2, $3, "
		"'running', NULLIF($4, ''), now(), $5, $6)",
		table);
	if (SPI_execute_with_args(
			sql.data, 6,
			(Oid[]){TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID},
			(Datum[]){CStringGetTextDatum(run->id),
					  CStringGetTextDatum(run->kind),
					  run->parent_id ? CStringGetTextDatum(run->parent_id)
									 : (Datum) 0,
					  CStringGetTextDatum(run->slot->label),
					  CStringGetTextDatum(run->source_id),
					  CStringGetTextDatum(run->topic_prefix)},
			run->parent_id ? NULL : "  n   ", false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the snapshot in its history");
	snap_sql_end();
}

/*
 * snap_refuse_other_source
 *		A diff or incr restores only with its parent, which must then be in
 *		the archive this snapshot goes to: sent under the same source id
 *		(bk list --source looks for it there) and the same topic prefix
 *		(another prefix's topics may feed another shipper and repository).
 *		After bk.source_id or bk.topic_prefix changed, the newest complete
 *		snapshot is in the old archive, and a diff or incr built on it would
 *		complete here yet never be restorable, nor any incr after it.
 *
 * A row from before 0.7 does not say where it went (NULL) and is refused
 * too: the change that must be caught is exactly the one the row cannot
 * tell, and the cost of the doubt is one full snapshot.
 */
static void
snap_refuse_other_source(SnapRun *run, const char *parent_id,
						 const char *parent_source, const char *parent_prefix)
{
	if (parent_source != NULL && parent_prefix != NULL &&
		strcmp(parent_source, run->source_id) == 0 &&
		strcmp(parent_prefix, run->topic_prefix) == 0)
		return;
	if (parent_source == NULL || parent_prefix == NULL)
		ereport(
			ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot take a%s %s snapshot: the history does not say "
					"which source id and topic prefix its parent %s was sent "
					"under",
					strcmp(run->kind, "incr") == 0 ? "n" : "", run->kind,
					parent_id),
			 errdetail("The parent was taken before bk 0.7 recorded them; "
					   "if bk.source_id or bk.topic_prefix changed since, "
					   "the parent is not in the archive this snapshot goes "
					   "to, and it would never be restorable."),
			 errhint("Take a full snapshot: SELECT * FROM bk_snapshot('full')."
					 " Diff and incr snapshots build on it again.")));
	ereport(
		ERROR,
		(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		 errmsg("cannot take a%s %s snapshot: its parent %s was sent under "
				"another source id or topic prefix",
				strcmp(run->kind, "incr") == 0 ? "n" : "", run->kind,
				parent_id),
		 errdetail("The parent went to source id \"%s\" with topic prefix "
				   "\"%s\"; this snapshot goes to source id \"%s\" with topic "
				   "prefix \"%s\". A diff or incr restores only from the "
				   "archive that holds its parent.",
				   parent_source, parent_prefix, run->source_id,
				   run->topic_prefix),
		 errhint("Take a full snapshot: SELECT * FROM bk_snapshot('full')."
				 " Diff and incr snapshots build on it again.")));
}

/*
 * snap_refuse_after_unknown
 *		A diff or incr must not build on its parent when a later snapshot
 *		that could have been its parent (a full, for a diff) did not
 *		complete after its record went to Kafka (a cancel is held off by
 *		then, so it failed): the repository may hold
 *		that one, bk expire then counts it as the newest and may remove the
 *		parent chosen here.  A newer complete snapshot ends the doubt.
 */
static void
snap_refuse_after_unknown(SnapRun *run, const char *table,
						  TimestampTz parent_start)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT snapshot_id, kind FROM %s "
					 "WHERE record_sent AND state <> 'complete' "
					 "AND ($1 OR kind = 'full') AND start_time > $2 "
					 "ORDER BY start_time DESC LIMIT 1",
					 table);
	if (SPI_execute_with_args(
			sql.data, 2, (Oid[]){BOOLOID, TIMESTAMPTZOID},
			(Datum[]){BoolGetDatum(strcmp(run->kind, "incr") == 0),
					  TimestampTzGetDatum(parent_start)},
			NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the snapshot history");
	if (SPI_processed == 0)
		return;
	ereport(
		ERROR,
		(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		 errmsg("cannot take a%s %s snapshot: the outcome of %s snapshot "
				"%s is not known",
				strcmp(run->kind, "incr") == 0 ? "n" : "", run->kind,
				SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2),
				SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
		 errdetail("It ended without completing after its record was sent "
				   "to Kafka, so the repository may hold it as the newest "
				   "snapshot, and bk expire may remove the older parent "
				   "this snapshot would build on."),
		 errhint("Take a full snapshot: SELECT * FROM bk_snapshot('full')."
				 " Diff and incr snapshots build on it again.")));
}

/*
 * snap_mark_record_sent
 *		Commit, before the record goes to Kafka, that it may be out, with
 *		the LSNs and start time it names: whatever the end, the row then
 *		says which snapshot the repository may hold, and where it falls
 *		among the others (snap_refuse_after_unknown).
 */
void
snap_mark_record_sent(SnapRun *run)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "UPDATE %s SET record_sent = true, start_lsn = $2, "
					 "stop_lsn = $3, start_time = $4 WHERE snapshot_id = $1",
					 run->history_table);
	snap_sql_begin();
	if (SPI_execute_with_args(
			sql.data, 4, (Oid[]){TEXTOID, PG_LSNOID, PG_LSNOID, TIMESTAMPTZOID},
			(Datum[]){CStringGetTextDatum(run->id), LSNGetDatum(run->start_lsn),
					  LSNGetDatum(run->stop_lsn),
					  TimestampTzGetDatum(run->start_time)},
			NULL, false, 0) != SPI_OK_UPDATE ||
		SPI_processed != 1)
		elog(ERROR, "could not update the snapshot history");
	snap_sql_end();

	/*
	 * Durable before the record goes, whatever synchronous_commit says: an
	 * asynchronous commit lost in a crash would leave a snapshot the
	 * repository may hold, failed as stale without the mark.
	 */
	XLogFlush(XactLastCommitEnd);
}

/*
 * snap_release_cancel
 *		End the hold on cancel that began with the record: the outcome is
 *		recorded, and a cancel that came meanwhile has nothing left to stop.
 *
 * An ERROR resets QueryCancelHoldoffCount (errfinish): in the error handler
 * the hold is already gone, and another decrement would wrap the count
 * (or fail its assertion).
 */
static void
snap_release_cancel(SnapRun *run)
{
	if (!run->record_sending)
		return;
	run->record_sending = false;
	QueryCancelPending = false;
	if (QueryCancelHoldoffCount > 0)
		RESUME_CANCEL_INTERRUPTS();
}

int
snap_cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Is path in the parent's file list (which keeps bk_path_as_text forms)? */
bool
snap_parent_has(SnapRun *run, const char *path)
{
	char *text;
	bool found;

	if (run->parent_files == NULL)
		return false;
	text = bk_path_as_text(path);
	found = bsearch(&text, run->parent_files, run->parent_file_count,
					sizeof(char *), snap_cmp_str) != NULL;
	pfree(text);
	return found;
}

/*
 * An error while recording the end: the snapshot itself is decided, so the
 * error is logged and cleared.  An ERROR resets the hold-off counts
 * (errfinish); the caller's holds are put back.
 */
static void
snap_finish_error(uint32 interrupt_holdoff, uint32 cancel_holdoff)
{
	InterruptHoldoffCount = interrupt_holdoff;
	QueryCancelHoldoffCount = cancel_holdoff;
	EmitErrorReport();
	FlushErrorState();
	AbortOutOfAnyTransaction();
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
	const char *state_name = snap_state_name(state);
	/* An ERROR resets these (errfinish); the caller's holds must stay. */
	uint32 interrupt_holdoff = InterruptHoldoffCount;
	uint32 cancel_holdoff = QueryCancelHoldoffCount;

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
			snap_remove_running_file(run->id);
		}
	}
	PG_CATCH();
	{
		snap_finish_error(interrupt_holdoff, cancel_holdoff);
	}
	PG_END_TRY();

	/*
	 * Only now does bk_snapshot(), waiting on the slot, learn the outcome:
	 * once it returns, bk_snapshot_history says the same, for the caller's
	 * next statement and for the parent the next diff or incr picks.
	 */
	SpinLockAcquire(&bk_shared->mutex);
	run->slot->state = state;
	run->slot->stop_time = GetCurrentTimestamp();
	strlcpy(run->slot->phase, state_name, sizeof(run->slot->phase));
	if (error != NULL)
		strlcpy(run->slot->error, error, sizeof(run->slot->error));
	SpinLockRelease(&bk_shared->mutex);

	if (run->producer != NULL)
	{
		PG_TRY();
		{
			snap_announce_end(run, state_name, error);
		}
		PG_CATCH();
		{
			snap_finish_error(interrupt_holdoff, cancel_holdoff);
		}
		PG_END_TRY();
	}
	bk_kafka_log_flush();
}

/*
 * snap_fail_history_on_exit
 *		A worker leaving before it recorded how its snapshot ended (a FATAL:
 *		terminated, or the server shuts down) fails the history row itself,
 *		in a transaction of its own, as PostgreSQL removes a session's
 *		temporary tables on exit.  An error here is a FATAL (proc_exit is in
 *		progress): the row then waits for the next snapshot, as before.
 */
static void
snap_fail_history_on_exit(int code, Datum arg)
{
	SnapRun *run = (SnapRun *) DatumGetPointer(arg);
	bool unfinished;

	if (run->history_table == NULL)
		return; /* no row yet */
	SpinLockAcquire(&bk_shared->mutex);
	unfinished = run->slot->state == BK_SNAPSHOT_STARTING ||
				 run->slot->state == BK_SNAPSHOT_RUNNING;
	SpinLockRelease(&bk_shared->mutex);
	if (!unfinished)
		return;
	AbortOutOfAnyTransaction();
	snap_sql_begin();
	snap_fail_history_row(run->history_table, run->id, run->kind,
						  run->slot->requested_time,
						  "the snapshot worker exited before it finished "
						  "(terminated, or the server shut down: the server "
						  "log says why)");
	snap_sql_end();
	snap_remove_running_file(run->id);
}

/*
 * snap_fail_history_row
 *		Fail a snapshot's history row if it still says "running" (inside
 *		the caller's SPI transaction).
 *
 * A worker that died before it committed the row (killed, or the server
 * crashed, while it looked for the parent or inserted the row) left none,
 * though bk_snapshot(wait => false) had returned the id: with the kind
 * known, a failed row is recorded, so that the history never lacks an id
 * a caller was given.  One that ended otherwise is left as it is.
 */
static void
snap_fail_history_row(const char *table, const char *id, const char *kind,
					  TimestampTz requested, const char *error)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "UPDATE %s SET state = 'failed', stop_time = now(), "
					 "error = $2 WHERE snapshot_id = $1 AND state = 'running'",
					 table);
	if (SPI_execute_with_args(
			sql.data, 2, (Oid[]){TEXTOID, TEXTOID},
			(Datum[]){CStringGetTextDatum(id), CStringGetTextDatum(error)},
			NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update the snapshot history");
	if (SPI_processed == 0 && kind != NULL && kind[0] != '\0')
	{
		resetStringInfo(&sql);
		appendStringInfo(&sql,
						 "INSERT INTO %s (snapshot_id, kind, state, "
						 "requested_time, stop_time, error) VALUES ($1, $2, "
						 "'failed', $3, now(), $4) "
						 "ON CONFLICT (snapshot_id) DO NOTHING",
						 table);
		if (SPI_execute_with_args(
				sql.data, 4, (Oid[]){TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID},
				(Datum[]){CStringGetTextDatum(id), CStringGetTextDatum(kind),
						  TimestampTzGetDatum(requested),
						  CStringGetTextDatum(error)},
				NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record the snapshot in its history");
	}
	if (SPI_processed > 0)
		ereport(LOG, (errmsg("bk: snapshot %s failed: %s", id, error)));
}

/*
 * snap_write_running_file
 *		Note the database, id, kind and request time of this snapshot,
 *		durably, before its history row says "running" (the last two make
 *		the row of a worker that died before it committed one).
 */
static void
snap_write_running_file(SnapRun *run)
{
	char tmp[MAXPGPATH];
	char content[64 + BK_SNAPSHOT_ID_LEN];
	int len;
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", SNAP_RUNNING_FILE);
	len = snprintf(content, sizeof(content), "%u %s %s " INT64_FORMAT "\n",
				   MyDatabaseId, run->id, run->kind, run->slot->requested_time);
	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not create \"%s\": %m", tmp)));
	errno = 0;
	if (write(fd, content, len) != len)
	{
		if (errno == 0)
			errno = ENOSPC;
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not write \"%s\": %m", tmp)));
	}
	if (pg_fsync(fd) != 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not fsync \"%s\": %m", tmp)));
	CloseTransientFile(fd);
	durable_rename(tmp, SNAP_RUNNING_FILE, ERROR);
}

/*
 * snap_read_running_file
 *		The database and id the file names, and when kind is not NULL the
 *		kind and request time ("" when a file of an older version has
 *		none); false without a file (or with one that names none: removed).
 */
static bool
snap_read_running_file(Oid *database, char *id, size_t id_len, char *kind,
					   TimestampTz *requested)
{
	char content[64 + BK_SNAPSHOT_ID_LEN];
	char read_id[BK_SNAPSHOT_ID_LEN + 1];
	char read_kind[BK_SNAPSHOT_KIND_LEN] = "";
	int64 read_requested = 0;
	ssize_t len;
	int fd;

	fd = OpenTransientFile(SNAP_RUNNING_FILE, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno != ENOENT)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not open \"%s\": %m", SNAP_RUNNING_FILE)));
		return false;
	}
	len = read(fd, content, sizeof(content) - 1);
	CloseTransientFile(fd);
	content[Max(len, 0)] = '\0';
	if (sscanf(content,
			   "%u %" CppAsString2(BK_SNAPSHOT_ID_LEN) "s %4s " INT64_FORMAT,
			   database, read_id, read_kind, &read_requested) < 2 ||
		strlen(read_id) >= id_len)
	{
		ereport(LOG, (errmsg("bk: removing \"%s\", which names no snapshot",
							 SNAP_RUNNING_FILE)));
		unlink(SNAP_RUNNING_FILE);
		return false;
	}
	strlcpy(id, read_id, id_len);
	if (kind != NULL)
	{
		strlcpy(kind, read_kind, BK_SNAPSHOT_KIND_LEN);
		*requested = read_requested;
	}
	return true;
}

/*
 * snap_remove_running_file
 *		Remove the file if it still names this snapshot (a newer snapshot
 *		may have written its own since).
 */
static void
snap_remove_running_file(const char *id)
{
	Oid database;
	char named[BK_SNAPSHOT_ID_LEN];

	if (snap_read_running_file(&database, named, sizeof(named), NULL, NULL) &&
		strcmp(named, id) == 0 && unlink(SNAP_RUNNING_FILE) != 0 &&
		errno != ENOENT)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not remove \"%s\": %m", SNAP_RUNNING_FILE)));
}

/* Is a worker running the snapshot id? */
static bool
snap_id_live(const char *id)
{
	bool live = false;

	SpinLockAcquire(&bk_shared->mutex);
	for (int slotIdx = 0; slotIdx < BK_SNAPSHOT_SLOTS; slotIdx++)
		if (strcmp(bk_shared->snapshots[slotIdx].id, id) == 0 &&
			(bk_shared->snapshots[slotIdx].state == BK_SNAPSHOT_STARTING ||
			 bk_shared->snapshots[slotIdx].state == BK_SNAPSHOT_RUNNING))
			live = true;
	SpinLockRelease(&bk_shared->mutex);
	return live;
}

/*
 * bk_snapshot_start_cleanup
 *		From the RPO worker, which starts with the server and again after
 *		every crash-restart: if the running-snapshot file names a snapshot
 *		no worker runs, the server (re)started while it ran, and a worker
 *		connected to its database fails its history row.  True once
 *		nothing is left to do; false to be called again (no worker slot
 *		free yet).
 */
bool
bk_snapshot_start_cleanup(void)
{
	BackgroundWorker worker;
	Oid database;
	char id[BK_SNAPSHOT_ID_LEN];

	if (!snap_read_running_file(&database, id, sizeof(id), NULL, NULL) ||
		snap_id_live(id))
		return true;
	snap_worker_init(&worker, "bk_snapshot_cleanup_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "bk snapshot %s cleanup", id);
	strlcpy(worker.bgw_type, "bk snapshot cleanup", BGW_MAXLEN);
	worker.bgw_main_arg = ObjectIdGetDatum(database);
	StaticAssertStmt(BK_SNAPSHOT_ID_LEN <= BGW_EXTRALEN,
					 "a snapshot id must fit in bgw_extra");
	memcpy(worker.bgw_extra, id, sizeof(id));
	return RegisterDynamicBackgroundWorker(&worker, NULL);
}

/*
 * snap_cleanup_on_exit
 *		A cleanup worker that failed (its database dropped since, or bk
 *		dropped from it: nothing left to fail; a shutdown under it) still
 *		removes the file, or it would fail again at every start of the
 *		server.  A row it could not fail is failed by the next snapshot in
 *		its database, which fails every row of a snapshot no longer running.
 */
static void
snap_cleanup_on_exit(int code, Datum arg)
{
	const char *id = (const char *) DatumGetPointer(arg);

	if (code == 0)
		return;
	snap_remove_running_file(id);
	ereport(LOG, (errmsg("bk: gave up failing the history row of snapshot %s, "
						 "whose worker died with the server (see the error "
						 "above); the next snapshot in its database fails it",
						 id)));
}

/*
 * bk_snapshot_cleanup_main
 *		Fail the history row of a snapshot whose worker died with the server
 *		(SIGKILL, a crash of any backend, an immediate shutdown): nothing
 *		else would before the next snapshot, and a DBA would see it
 *		"running" until then.
 */
void
bk_snapshot_cleanup_main(Datum main_arg)
{
	static char id[BK_SNAPSHOT_ID_LEN]; /* read by snap_cleanup_on_exit */
	char *table;
	Oid database;
	char named[BK_SNAPSHOT_ID_LEN];
	char kind[BK_SNAPSHOT_KIND_LEN] = "";
	TimestampTz requested = 0;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	memcpy(id, MyBgworkerEntry->bgw_extra, sizeof(id));
	id[sizeof(id) - 1] = '\0';
	/* Before connecting: the database may be gone (a FATAL there). */
	before_shmem_exit(snap_cleanup_on_exit, PointerGetDatum(id));
	snap_worker_connect(DatumGetObjectId(main_arg));
	snap_sql_begin();
	table = snap_extension_table("bk_snapshot_history", "record_sent");
	/* The kind and request time, for a row the worker never committed. */
	if (snap_read_running_file(&database, named, sizeof(named), kind,
							   &requested) &&
		strcmp(named, id) != 0)
		kind[0] = '\0'; /* another snapshot's since */
	/* A snapshot started since, under this id, is not ours to fail. */
	if (!snap_id_live(id))
		snap_fail_history_row(table, id, kind, requested,
							  "the snapshot worker died: the server "
							  "restarted while it ran (a process crashed, "
							  "or an immediate shutdown)");
	snap_sql_end();
	snap_remove_running_file(id);
	proc_exit(0);
}
