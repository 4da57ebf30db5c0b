/*
 * bk_snapshot_record.c
 *		What a snapshot says about itself: the record's entry for each file,
 *		the record (snapshot.json) and its metadata, PostgreSQL's
 *		backup_manifest, and the snapshot-begin and snapshot-end audit
 *		events.  Every JSON document the snapshot writes is built here.
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "bk_snapshot.h"

/* ISO 8601 UTC with milliseconds, as everywhere else in bk. */
static void
snap_time_text(TimestampTz time, char *out, size_t len)
{
	int64 unix_ms =
		time / 1000 +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;

	bk_format_time_utc(unix_ms, out, len);
}

/*
 * snap_path_is_utf8
 *		Whether a path can be a JSON string.  File names are bytes, whatever
 *		the database encoding is, and JSON text is UTF-8: bk restore's parser
 *		refuses anything else, so a single name that is not UTF-8 would make
 *		the whole record unreadable.
 */
static bool
snap_path_is_utf8(const char *path)
{
	return pg_verify_mbstr(PG_UTF8, path, strlen(path), true);
}

/* The path's bytes as lower-case hex, in a JSON string. */
static void
snap_append_hex(StringInfo buf, const char *path)
{
	size_t len = strlen(path);
	char *hex = palloc(2 * len + 1);

	bk_hex_encode((const uint8 *) path, len, hex);
	appendStringInfo(buf, "\"%s\"", hex);
	pfree(hex);
}

/*
 * snap_append_path
 *		A record entry's "path": the path as a JSON string, or, when it is not
 *		valid UTF-8, its bytes in hex under "path_hex" (docs/snapshot-format.md),
 *		as PostgreSQL's backup_manifest uses "Encoded-Path".
 */
static void
snap_append_path(SnapRun *run, StringInfo buf, const char *path)
{
	if (snap_path_is_utf8(path))
	{
		appendStringInfoString(buf, "\"path\":");
		escape_json(buf, path);
	}
	else
	{
		appendStringInfoString(buf, "\"path_hex\":");
		snap_append_hex(buf, path);
		run->hex_paths = true;
	}
}

/*
 * snap_record_file
 *		A copied file's entry in the record, its line in the manifest, its
 *		name in the history's file list; and the totals.  item is the file,
 *		or the first of its ranges (the others follow it in the work list).
 *
 * No process saw a ranged file whole, so the record keeps a SHA-256 per
 * range, and the manifest, which wants one checksum per file, gets the
 * file's CRC-32C, combined from its ranges' (PostgreSQL's manifest allows
 * a checksum algorithm per file).
 */
void
snap_record_file(SnapRun *run, SnapWorkItem *item)
{
	const char *path = snap_item_path(run->work, item);
	int parts = Max(item->range_count, 1);
	char hex[2 * BK_SHA256_LEN + 1];
	char mtime_text[64];
	pg_time_t mtime;
	int64 blocks = 0;
	uint32 crc = 0;

	/*
	 * A file with a range that vanished is left out, as a file that vanished
	 * whole.  Its ranges sent before it did are objects in the repository
	 * that nothing reads; the count of objects includes them, so that the
	 * catalog, which counts what the repository holds, finds them all.
	 */
	for (int part = 0; part < parts; part++)
		if (item[part].vanished)
		{
			for (part = 0; part < parts; part++)
			{
				run->objects += item[part].objects;
				run->bytes_read += item[part].bytes_read;
				run->bytes_sent += item[part].bytes_sent;
			}
			return;
		}
	for (int part = 0; part < parts; part++)
	{
		SnapWorkItem *piece = item + part;

		if (!piece->sent || piece->range_index != part ||
			piece->path_offset != item->path_offset ||
			piece->incremental != item->incremental)
			ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
							errmsg("snapshot %s: \"%s\" was not copied whole",
								   run->id, path)));
		for (int idx = 0;
			 idx < piece->failures && idx < FAILURES_LISTED_PER_FILE; idx++)
		{
			if (run->failures_json.len > 0)
				appendStringInfoChar(&run->failures_json, ',');
			appendStringInfoChar(&run->failures_json, '{');
			snap_append_path(run, &run->failures_json, path);
			appendStringInfo(&run->failures_json, ",\"block\":%u}",
							 piece->failed_blocks[idx]);
		}
		run->checksum_failures += piece->failures;
		blocks += piece->blocks;
		crc = part == 0 ? piece->crc32c
						: bk_crc32c_combine(crc, piece->crc32c,
											(uint64) piece->range_length);
		run->objects += piece->objects;
		run->bytes_read += piece->bytes_read;
		run->bytes_sent += piece->bytes_sent;
	}

	if (run->files_json.len > 0)
		appendStringInfoChar(&run->files_json, ',');
	appendStringInfoChar(&run->files_json, '{');
	snap_append_path(run, &run->files_json, path);
	appendStringInfo(
		&run->files_json,
		",\"size\":%lld,\"mode\":\"%04o\",\"mtime\":%lld,"
		"\"encoding\":\"%s\"",
		(long long) item->size, (unsigned int) (item->mode & 07777),
		(long long) item->mtime, item->incremental ? "incremental" : "whole");
	if (item->incremental)
		appendStringInfo(&run->files_json, ",\"blocks\":" INT64_FORMAT, blocks);
	if (item->range_count == 0)
	{
		bk_hex_encode(item->sha256, BK_SHA256_LEN, hex);
		appendStringInfo(&run->files_json, ",\"sha256\":\"%s\"}", hex);
	}
	else
	{
		appendStringInfoString(&run->files_json, ",\"ranges\":[");
		for (int part = 0; part < parts; part++)
		{
			SnapWorkItem *piece = item + part;

			bk_hex_encode(piece->sha256, BK_SHA256_LEN, hex);
			appendStringInfo(
				&run->files_json, "%s{\"offset\":%lld,\"length\":%lld,",
				part == 0 ? "" : ",", (long long) piece->range_offset,
				(long long) piece->range_length);
			if (item->incremental)
				appendStringInfo(&run->files_json,
								 "\"blocks\":" INT64_FORMAT ",", piece->blocks);
			appendStringInfo(&run->files_json, "\"sha256\":\"%s\"}", hex);
		}
		appendStringInfoString(&run->files_json, "]}");
	}

	mtime = (pg_time_t) item->mtime;
	pg_strftime(mtime_text, sizeof(mtime_text), "%Y-%m-%d %H:%M:%S GMT",
				pg_gmtime(&mtime));
	/* As PostgreSQL's AddFileToBackupManifest, which pg_verifybackup reads. */
	if (snap_path_is_utf8(path))
	{
		appendStringInfoString(&run->manifest_files, ",\n{ \"Path\": ");
		escape_json(&run->manifest_files, path);
	}
	else
	{
		appendStringInfoString(&run->manifest_files, ",\n{ \"Encoded-Path\": ");
		snap_append_hex(&run->manifest_files, path);
	}
	if (item->range_count == 0)
		bk_hex_encode(item->sha256, BK_SHA256_LEN, hex);
	else
	{
		/* As pg_checksum_final: the CRC's bytes in memory order. */
		uint8 crc_bytes[sizeof(crc)];

		memcpy(crc_bytes, &crc, sizeof(crc_bytes));
		bk_hex_encode(crc_bytes, sizeof(crc_bytes), hex);
	}
	appendStringInfo(&run->manifest_files,
					 ", \"Size\": %lld, \"Last-Modified\": \"%s\", "
					 "\"Checksum-Algorithm\": \"%s\", \"Checksum\": \"%s\" }",
					 (long long) item->size, mtime_text,
					 item->range_count == 0 ? "SHA256" : "CRC32C", hex);
	appendStringInfo(&run->file_list, "%s\n", bk_path_as_text(path));
	run->files++;
	run->bytes += item->size;
}

/*
 * snap_record_directory, snap_record_tablespace
 *		A directory's and a tablespace's entries in the record.
 */
void
snap_record_directory(SnapRun *run, const char *path, mode_t mode)
{
	if (run->dirs_json.len > 0)
		appendStringInfoChar(&run->dirs_json, ',');
	appendStringInfoChar(&run->dirs_json, '{');
	snap_append_path(run, &run->dirs_json, path);
	appendStringInfo(&run->dirs_json, ",\"mode\":\"%04o\"}",
					 (unsigned int) (mode & 07777));
}

void
snap_record_tablespace(SnapRun *run, const char *oid_text, const char *target)
{
	/* pg_tblspc holds one link per tablespace, named by its OID. */
	if (oid_text[0] == '\0' ||
		strspn(oid_text, "0123456789") != strlen(oid_text))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("unexpected link \"pg_tblspc/%s\": not a tablespace",
						oid_text),
				 errhint("Remove what does not belong in pg_tblspc.")));
	if (run->tablespaces_json.len > 0)
		appendStringInfoChar(&run->tablespaces_json, ',');
	appendStringInfo(&run->tablespaces_json, "{\"oid\":%s,", oid_text);
	snap_append_path(run, &run->tablespaces_json, target);
	appendStringInfoChar(&run->tablespaces_json, '}');
}

/*
 * snap_send_manifest
 *		backup_label, tablespace_map and PostgreSQL's backup_manifest (the
 *		format pg_verifybackup reads), built from the entries recorded.
 */
static void
snap_send_manifest(SnapRun *run)
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

	snap_send_memory(run, BK_SNAPSHOT_LABEL, "", run->label.data,
					 run->label.len, label_digest);
	snap_send_memory(run, BK_SNAPSHOT_MAP, "", run->tablespace_map.data,
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
		appendStringInfo(&manifest,
						 ",\n{ \"Path\": \"tablespace_map\", \"Size\": %d, "
						 "\"Last-Modified\": \"%s\", \"Checksum-Algorithm\": "
						 "\"SHA256\", \"Checksum\": \"%s\" }",
						 run->tablespace_map.len, now_text, hex);
	}
	appendBinaryStringInfo(&manifest, run->manifest_files.data,
						   run->manifest_files.len);
	appendStringInfo(&manifest,
					 "\n],\n\"WAL-Ranges\": [\n{ \"Timeline\": %u, "
					 "\"Start-LSN\": \"%X/%X\", \"End-LSN\": \"%X/%X\" }\n],\n",
					 run->start_tli, LSN_FORMAT_ARGS(run->start_lsn),
					 LSN_FORMAT_ARGS(run->stop_lsn));
	/* The checksum covers everything up to the last line. */
	if (!bk_sha256(manifest.data, manifest.len, checksum, &err))
		ereport(ERROR, (errmsg("%s", err.message)));
	bk_hex_encode(checksum, BK_SHA256_LEN, hex);
	appendStringInfo(&manifest, "\"Manifest-Checksum\": \"%s\"}\n", hex);
	snap_send_memory(run, BK_SNAPSHOT_MANIFEST, "", manifest.data, manifest.len,
					 manifest_digest);
}

/*
 * snap_send_record
 *		The record (snapshot.json) and the metadata an auditor may read.
 */
static void
snap_send_record(SnapRun *run)
{
	StringInfoData json;
	StringInfoData meta;
	char start_time[64];
	char stop_time[64];
	char lsn[32];

	snap_time_text(run->start_time, start_time, sizeof(start_time));
	snap_time_text(run->stop_time, stop_time, sizeof(stop_time));
	initStringInfo(&json);
	/*
	 * Format 3 only when a path needed hex: a bk that reads up to 2 then
	 * says it is too old instead of calling the path missing, and still
	 * reads every other record.
	 */
	appendStringInfo(&json, "{\"format\":%d,\"snapshot\":",
					 run->hex_paths ? BK_SNAPSHOT_RECORD_FORMAT_HEX_PATHS
									: BK_SNAPSHOT_RECORD_FORMAT_RANGES);
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
	escape_json(&json, run->slot->label_utf8);
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
		"\nsystem-identifier=" UINT64_FORMAT "\npg-version=%d\nsegment-size=%d"
		"\nhistory-database=%u",
		lsn, LSN_FORMAT_ARGS(run->stop_lsn), run->start_tli, start_time,
		stop_time, run->objects, run->files, run->bytes, GetSystemIdentifier(),
		PG_VERSION_NUM, wal_segment_size, MyDatabaseId);
	{
		uint8 digest[BK_SHA256_LEN];

		snap_send_memory(run, BK_SNAPSHOT_RECORD, meta.data, json.data,
						 json.len, digest);
	}
}

/*
 * snap_send_own_objects
 *		After every data file: label, map, manifest, then the record, whose
 *		arrival is what makes the snapshot complete.
 *
 * Once the record is handed to Kafka, the repository may hold a restorable
 * snapshot whatever happens next here, and bk expire takes it as the
 * source's newest.  So from then on a cancel waits until the outcome is
 * recorded (snap_release_cancel), and the history row says, before the
 * record goes, that it may be out: should the snapshot still fail (Kafka
 * times out, the server stops), no diff or incr builds on an older parent
 * that expire may remove (snap_prepare).
 */
void
snap_send_own_objects(SnapRun *run)
{
	snap_set_phase(run->slot, "sending label, map and manifest");
	snap_send_manifest(run);
	HOLD_CANCEL_INTERRUPTS();
	snap_set_phase(run->slot, "sending record");
	snap_mark_record_sent(run);
	/* Only once the mark is committed: the history then says so. */
	run->record_sending = true;
	snap_send_record(run);
	if (run->confirm_in_repository)
		snap_confirm_wait(run);
}

/* ------------------------------------------------ bk.wait_for = repository */

/* The run bk_confirm_prepare's interrupt callback asks about. */
static SnapRun *confirming_run = NULL;

static bool
snap_confirm_interrupted(void *arg)
{
	return snap_interrupted(confirming_run);
}

/*
 * snap_confirm_prepare
 *		With bk.wait_for = 'repository', find where the audit topic ends
 *		before the first object goes: the shipper's events about the
 *		snapshot's objects can only come after that (snap_confirm_wait).
 *		Kafka's acknowledgement is not durable where Kafka neither
 *		replicates nor flushes; a snapshot it lost would still complete,
 *		and later diff and incr snapshots build on it.
 */
void
snap_confirm_prepare(SnapRun *run)
{
	BkKafkaSettings settings;
	BkError err;

	run->confirm_in_repository = bk_wait_for == BK_WAIT_FOR_REPOSITORY;
	if (!run->confirm_in_repository)
		return;
	bk_error_clear(&err);
	bk_source_kafka_settings(&settings, "bk-snapshot-confirm");
	confirming_run = run;
	if (!bk_confirm_prepare(&settings, run->audit_topic,
							snap_confirm_interrupted, &err))
	{
		if (err.code != BK_ERR_INTERRUPTED)
			bk_error_hint(&err, "bk.wait_for = repository reads the "
								"shipper's events from that topic: check "
								"that Kafka is up and that \"bk init\" "
								"created the topics.");
		snap_kafka_error(run, &err, "the audit topic's end");
	}
}

/*
 * snap_confirm_wait
 *		The snapshot completes only once the shipper has said, on the audit
 *		topic, that every object of it is in the repository: the label, map,
 *		manifest and record by name, the data objects (the record's count)
 *		by number.  The record is out by now: a failure here fails the
 *		snapshot with record_sent set, so that no diff or incr builds on it
 *		or on an older parent until a newer full completes.
 */
void
snap_confirm_wait(SnapRun *run)
{
	static const char *const own_parts[] = {BK_SNAPSHOT_LABEL, BK_SNAPSHOT_MAP,
											BK_SNAPSHOT_MANIFEST,
											BK_SNAPSHOT_RECORD};
	BkError err;

	bk_error_clear(&err);
	snap_set_phase(run->slot, "waiting for the repository");
	if (!bk_confirm_wait_snapshot(run->source_id, run->id, own_parts,
								  lengthof(own_parts), run->objects,
								  bk_repository_timeout_ms, snap_interrupted,
								  run, &err))
	{
		bk_kafka_log_flush();
		if (err.code == BK_ERR_INTERRUPTED)
			ereport(ERROR, (errcode(ERRCODE_QUERY_CANCELED),
							errmsg("snapshot interrupted while waiting for "
								   "the shipper's confirmation")));
		/* The message names the snapshot and what is missing. */
		ereport(ERROR,
				(errcode(bk_sqlstate(err.code)), errmsg("%s", err.message),
				 err.hint[0] ? errhint("%s", err.hint) : 0));
	}
	bk_kafka_log_flush();
}

/* ------------------------------------------------------------ audit events */

/* Send a finished event (NULL: memory ran out) to the audit topic. */
static void
snap_send_event(SnapRun *run, char *text, size_t len, bool interruptible,
				const char *what)
{
	BkError err;

	bk_error_clear(&err);
	if (text == NULL)
		bk_error_set(&err, BK_ERR_NOMEM, "out of memory");
	else if (bk_producer_send_message(
				 run->producer, run->audit_topic, run->source_id, text, len,
				 interruptible ? snap_interrupted : NULL, run, &err))
	{
		free(text);
		bk_kafka_log_flush();
		return;
	}
	free(text);
	bk_kafka_log_flush();
	/* The begin event is a precondition; a missing end event is logged. */
	ereport(interruptible ? ERROR : WARNING,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("could not announce %s of snapshot %s on topic \"%s\"",
					what, run->id, run->audit_topic),
			 errdetail("%s", bk_sentence(err.message)),
			 err.hint[0] ? errhint("%s", err.hint) : 0));
}

/*
 * snap_announce_begin
 *		snapshot-begin (docs/audit-events.md).  Without Kafka there is no
 *		point in starting backup mode, so failing to send it fails the
 *		snapshot.
 */
void
snap_announce_begin(SnapRun *run)
{
	BkAuditEvent *event = bk_audit_begin("snapshot-begin", run->source_id);
	size_t len = 0;
	char *text;

	bk_audit_string(event, "snapshot", run->id);
	bk_audit_string(event, "kind", run->kind);
	if (run->parent_id)
		bk_audit_string(event, "parent", run->parent_id);
	bk_audit_string(event, "label", run->slot->label_utf8);
	text = bk_audit_finish(event, bk_wall_ms(), &len);
	if (run->producer == NULL)
	{
		free(text);
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
						errmsg("snapshot %s has no Kafka producer", run->id)));
	}
	snap_send_event(run, text, len, true, "the start");
}

/*
 * snap_announce_end
 *		snapshot-end: how it ended.  Not interruptible (a cancellation is
 *		what it may report); a failure is logged, the snapshot stays decided.
 */
void
snap_announce_end(SnapRun *run, const char *state_name, const char *error)
{
	BkAuditEvent *event = bk_audit_begin("snapshot-end", run->source_id);
	size_t len = 0;
	char *text;

	bk_audit_string(event, "snapshot", run->id);
	bk_audit_string(event, "kind", run->kind);
	bk_audit_string(event, "state", state_name);
	if (!XLogRecPtrIsInvalid(run->stop_lsn))
	{
		char lsn[32];

		snprintf(lsn, sizeof(lsn), "%X/%X", LSN_FORMAT_ARGS(run->stop_lsn));
		bk_audit_string(event, "stop_lsn", lsn);
	}
	bk_audit_int(event, "files", run->files);
	bk_audit_int(event, "bytes_read", run->bytes_read);
	bk_audit_int(event, "bytes_sent", run->bytes_sent);
	if (error != NULL)
		bk_audit_string(event, "reason", error);
	text = bk_audit_finish(event, bk_wall_ms(), &len);
	snap_send_event(run, text, len, false, "the end");
}
