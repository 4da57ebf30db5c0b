/*
 * binlog_stream.c
 *		Stream the source's binlog into Kafka as byte ranges of its files.
 *
 * The agent registers as a replica (its own non-zero server_id) and asks for
 * the binlog from the end of the newest range Kafka acknowledged, so a
 * restart of the agent, the server, the broker or a shipper loses nothing
 * and skips nothing.  It asks for what makes the stream equal to the file:
 * capability 4 (real GTID, GTID_LIST and BINLOG_CHECKPOINT events instead of
 * dummies), ANNOTATE_ROWS events, and the server's own checksum setting.
 *
 * Every event is checked as it arrives: its position must continue the
 * previous one (next_pos = offset + length) and its CRC-32 must match.  The
 * events the server makes up (the artificial ROTATE that names the file, the
 * format description repeated on a resume, heartbeats) are not in the file
 * and are not archived; heartbeats only say the stream is caught up.
 *
 * Events collect in one buffer, sent as a range when it reaches range_size,
 * when its first event has waited range_interval (so a quiet server keeps
 * its RPO), and at the end of each file; a file's first range not before
 * the file's GTID list, which decides whether it is marked as a gap.  A
 * range is sent and acknowledged before the next event is read: while
 * Kafka is down the server's dump thread simply waits (and drops the
 * connection after its net_write_timeout; the agent then reconnects at the
 * same position).  Memory is one range, or one event when an event is
 * larger.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mysql.h>
/* after mysql.h, which it needs */
#include <errmsg.h>
#include <mariadb_rpl.h>
#include <mysqld_error.h>

#include "agent.h"
#include "bk_util.h"

/* What to do when the server's binlog is another history than the archive's. */
#define SECOND_HISTORY_HINT                                                    \
	"bk does not archive a second history under the same names.  Give the "    \
	"agent a new source_id and take a snapshot; the old archive stays "        \
	"restorable."

/* How long a failed probe_binlog_end waits before it asks again. */
#define PROBE_RETRY_MS 10000
/* How often a stream that is never idle asks. */
#define PROBE_BUSY_MS 1000
/*
 * The most a probe may hold the stream, which waits for it, connecting or
 * for its answer (seconds); and the timeouts in a row said as a failure.
 */
#define PROBE_TIMEOUT_S     2
#define PROBE_TIMEOUTS_SAID 3

/* The pending range and where the stream stands. */
typedef struct Stream
{
	Agent *agent;
	MYSQL *conn;
	MARIADB_RPL *rpl;
	BinlogPosition position; /* where the next event of the file starts */
	BkGtidState gtid;        /* after the newest event received */
	/*
	 * The same, every server of each domain: what each file's GTID list
	 * is checked against (follow_gtids).
	 */
	BinlogGtids gtids;
	/*
	 * Where the transaction the stream is in ends: one a crash of the
	 * server cut is not reached (binlog_gtids_txn_ended).
	 */
	BkBinlogTxn txn;
	/*
	 * Which file of its name the stream is in (its format description's
	 * creation), sent as file-created= with every range; unknown when the
	 * archive's end came from a range of an older agent.  file_id_due: the
	 * dump starts inside the file, and the format description the server
	 * resends first must be that file's (check_resume_file).
	 */
	BinlogFileId file_id;
	bool file_id_due;
	int checksum_alg;
	bool file_closed;     /* the newest event was a ROTATE or a STOP */
	const char *ended_by; /* with file_closed: "rotate" or "stop" */
	bool lost_connection; /* the dump connection broke while streaming */
	bool torn_file;       /* the server found the file cut mid-event */
	bool state_failing;   /* the last write of the state file failed */

	uint8_t *buf; /* the pending range */
	size_t len;
	size_t cap;
	uint64_t range_start;   /* file offset of buf[0] */
	int64_t range_first_ms; /* when its first event arrived (monotonic) */
	uint32_t first_event_time;
	uint32_t last_event_time;
	uint64_t range_events;
	/*
	 * Server time (Unix ms) such that a restore to any target up to it
	 * takes nothing the stream has not received: the server's clock when
	 * it said where its binlog ended, once the stream has received up to
	 * there, stopping short of the second the oldest statement then
	 * running began (probe_binlog_end).  Event stamps do not move it: a
	 * restore compares targets with them, but a statement that began
	 * earlier can be written after an event of a later stamp.  Sent as
	 * complete-until=, because a range's send time proves nothing when the
	 * agent was behind (a catch-up after a restart that stalls leaves the
	 * archive short of what it was sent at).
	 */
	int64_t complete_until_ms;
	/*
	 * The server's answer to where its binlog ends, asked when the stream
	 * is idle, or every second when it never is (probe_binlog_end), on a
	 * connection of its own: probe_end
	 * and the server's clock before it (probe_time_ms), pending until the
	 * stream reaches probe_end.
	 */
	MYSQL *probe_conn;      /* NULL until needed, or after a failure */
	int64_t probe_asked_ms; /* monotonic */
	bool probe_pending;
	bool probe_failed;  /* the last one failed: said once, not every time */
	int probe_timeouts; /* in a row */
	BinlogPosition probe_end;
	int64_t probe_time_ms;
	const char *closing; /* "rotate" or "stop" when the range ends the file */
	char next_file[BK_BINLOG_FILE_NAME_MAX + 1];
	/*
	 * "file:offset" where the archive ended when the server had purged that
	 * file: sent as gap-before= with the first range after the gap, so that
	 * bk list, bk verify and bk binlog-get know the file before it is cut
	 * even when the next file's number follows (PURGE TO the next file).
	 */
	char gap_before[BK_BINLOG_FILE_NAME_MAX + 32];
	/*
	 * "file:offset" where the file before the current one ended as the
	 * agent read it, and how: "rotate", "stop", or "none" (the server
	 * crashed: the file just stops).  Sent as previous-end= and
	 * previous-closed= with the file's first range: a file whose last
	 * range never reached the archive (a message the shipper rejected,
	 * Kafka losing acknowledged ones, an object removed) otherwise passes
	 * for one a crash left, and what that range held (an Incident event,
	 * which has no GTID) for nothing.  Empty: not known.
	 */
	char previous_end[BK_BINLOG_FILE_NAME_MAX + 32];
	const char *previous_closed;
	/*
	 * Where the archive ended in a file purged before its end was archived,
	 * while the stream goes on with the next file: whether anything is
	 * missing is that file's GTID list's to say (follow_gtids), not the
	 * purge's.  Empty file: none pending.
	 */
	BinlogPosition purged_end;
	/*
	 * Where the agent last refused to stream another history under the
	 * archive's names and said so with a binlog-reset audit event: it
	 * retries that refusal every backoff until given a new source_id, and
	 * one event is the news, not one every 30 s.  Empty file: none yet.
	 */
	BinlogPosition reset_audited;
	/*
	 * The same for a read that fails where the archive ends (the server's
	 * refusal, error 1236, or an event the agent cannot check): retried
	 * with growing backoff, and one binlog-read-error event per position.
	 */
	BinlogPosition read_error_audited;

	BkEncoder *encoder; /* sealing to key_id; NULL before the first range */
	uint8_t key_id[BK_KEY_ID_LEN];
	size_t encoded;   /* bytes of buf handed to the encoder */
	bool final_flush; /* the send at a clean stop: not interrupted */
} Stream;

static bool stream_interrupted(void *arg);

/*
 * set_status_streaming
 *		Say in the status whether the dump connection is up.
 */
static void
set_status_streaming(Stream *stream, bool streaming)
{
	pthread_mutex_lock(&stream->agent->status.lock);
	stream->agent->status.streaming = streaming;
	pthread_mutex_unlock(&stream->agent->status.lock);
}

/*
 * range_next_frame
 *		Encode the next chunk of the pending range (BkNextFrameFn).
 */
static bool
range_next_frame(void *arg, const uint8_t **frame, size_t *len, BkFrame *info,
				 BkError *err)
{
	Stream *stream = arg;
	uint32_t chunk_len;

	if (bk_encoder_done(stream->encoder))
	{
		*frame = NULL;
		*len = 0;
		return true;
	}
	chunk_len = bk_encoder_next_chunk_len(stream->encoder);
	if (chunk_len > stream->len - stream->encoded)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"range encoder asks for %" PRIu32
							" bytes, %zu are left",
							chunk_len, stream->len - stream->encoded);
	stream->encoded += chunk_len;
	return bk_encoder_chunk(stream->encoder,
							stream->buf + stream->encoded - chunk_len,
							chunk_len, frame, len, info, err);
}

/*
 * range_meta
 *		The metadata of the pending range (docs/frame-format.md, section 9).
 */
static void
range_meta(Stream *stream, char *meta, size_t meta_len)
{
	char gtid[BK_BINLOG_GTID_STATE_MAX];
	char gtid_list[BK_FRAME_META_MAX + 1];
	char created[64];
	char file_id[BINLOG_FILE_ID_TEXT_MAX + 1];
	char open_txn[BINLOG_OPEN_META_MAX];
	int n;

	if (!bk_gtid_state_format(&stream->gtid, gtid, sizeof(gtid)))
		gtid[0] = '\0';
	bk_format_time_utc(bk_wall_ms(), created, sizeof(created));
	n = snprintf(
		meta, meta_len,
		"type=binlog-range\nbinlog-file=%s\nstart=%" PRIu64 "\nend=%" PRIu64
		"\nevents=%" PRIu64 "\nfirst-event-time=%" PRIu32
		"\nlast-event-time=%" PRIu32 "\ncomplete-until=%" PRId64
		"\ngtid=%s\nchecksum=%s\ncreated=%s",
		stream->position.file, stream->range_start,
		stream->range_start + stream->len, stream->range_events,
		stream->first_event_time, stream->last_event_time,
		stream->complete_until_ms, gtid,
		stream->checksum_alg == BK_BINLOG_CHECKSUM_CRC32 ? "crc32" : "none",
		created);
	if (stream->closing != NULL && n > 0 && (size_t) n < meta_len)
		n += snprintf(meta + n, meta_len - (size_t) n, "\nclosed=%s",
					  stream->closing);
	if (stream->closing != NULL && strcmp(stream->closing, "rotate") == 0 &&
		n > 0 && (size_t) n < meta_len)
		n += snprintf(meta + n, meta_len - (size_t) n, "\nnext-file=%s",
					  stream->next_file);
	if (stream->gap_before[0] != '\0' && n > 0 && (size_t) n < meta_len)
		n += snprintf(meta + n, meta_len - (size_t) n, "\ngap-before=%s",
					  stream->gap_before);
	if (stream->previous_end[0] != '\0' && stream->range_start == 0 && n > 0 &&
		(size_t) n < meta_len)
		n += snprintf(meta + n, meta_len - (size_t) n,
					  "\nprevious-end=%s\nprevious-closed=%s",
					  stream->previous_end, stream->previous_closed);
	/* Which file of that name: what a resume inside it checks. */
	if (binlog_file_id_format(&stream->file_id, file_id, sizeof(file_id)) &&
		n > 0 && (size_t) n < meta_len)
		n += snprintf(meta + n, meta_len - (size_t) n, "\nfile-created=%s",
					  file_id);
	/*
	 * The transaction the range ends inside, if any: an agent resuming at
	 * its end must know the GTID it reached is not yet ended
	 * (binlog_gtids_resume_open).  Only whole, before gtid-list=, which
	 * names that GTID.
	 */
	if (binlog_gtids_open_meta(&stream->gtids, &stream->txn, open_txn,
							   sizeof(open_txn)) &&
		n > 0 && (size_t) n < meta_len &&
		strlen(open_txn) < meta_len - (size_t) n)
		n += snprintf(meta + n, meta_len - (size_t) n, "%s", open_txn);
	/*
	 * Every server's last GTID per domain, for the next start to check the
	 * next file's GTID list exactly (binlog_resume_from_kafka).  Only when
	 * known exactly, and only whole: last, so that it crowds out no other
	 * field, and left out rather than cut when too long for what is left
	 * of the metadata; the next start then checks each domain's newest
	 * GTID (gtid=) only.
	 */
	if (stream->gtids.known == BINLOG_GTIDS_EXACT &&
		binlog_gtids_format(&stream->gtids, gtid_list, sizeof(gtid_list)) &&
		n > 0 && (size_t) n < meta_len &&
		strlen("\ngtid-list=") + strlen(gtid_list) < meta_len - (size_t) n)
		snprintf(meta + n, meta_len - (size_t) n, "\ngtid-list=%s", gtid_list);
}

/*
 * range_buffer_shrink
 *		The range was sent and the buffer is empty: give back what an event
 *		larger than range_size made it grow to (bk_binlog.h).  A failed
 *		shrink keeps the larger buffer, which still works.
 */
static void
range_buffer_shrink(Stream *stream)
{
	size_t keep = bk_binlog_range_capacity_after_flush(
		stream->cap, stream->agent->config.range_size);
	uint8_t *shrunk;

	if (keep == stream->cap || stream->len > keep)
		return;
	shrunk = realloc(stream->buf, keep);
	if (shrunk == NULL)
		return;
	stream->buf = shrunk;
	stream->cap = keep;
}

/*
 * stream_key
 *		Seal the next range to key_file's key as it is now (agent_source_key):
 *		a new encoder when the key was rotated.
 */
static bool
stream_key(Stream *stream, BkError *err)
{
	BkKey key;
	BkEncoder *encoder;

	if (!agent_source_key(stream->agent, &key, err))
		return false;
	if (stream->encoder != NULL &&
		memcmp(stream->key_id, key.id, BK_KEY_ID_LEN) == 0)
		return true;
	encoder =
		bk_encoder_new(&key, stream->agent->config.common.chunk_size, err);
	if (encoder == NULL)
		return false;
	bk_encoder_free(stream->encoder);
	stream->encoder = encoder;
	memcpy(stream->key_id, key.id, BK_KEY_ID_LEN);
	return true;
}

/*
 * range_flush
 *		Send the pending range and wait for Kafka's acknowledgement; retried
 *		with backoff until it is acknowledged or the agent is stopped.  The
 *		same bytes go out on every try, under the same name.
 */
static bool
range_flush(Stream *stream, bool retry, BkError *err)
{
	Agent *agent = stream->agent;
	char name[BK_OBJECT_NAME_MAX + 1];
	char meta[BK_FRAME_META_MAX + 1];
	char state_open[BINLOG_OPEN_META_MAX];
	BkObjectInfo info;
	int64_t backoff_ms = 500;
	BinlogPosition end;
	bool keyed = false;

	if (stream->len == 0)
		return true;
	/*
	 * A file's first range is the one readers look at for gap-before=,
	 * which the file's GTID list decides (follow_gtids): cut before the
	 * list, the mark would go with the second range, unseen.  The list
	 * follows the format description directly, so the range waits an
	 * instant (a timer or a reconnection meanwhile sends nothing; at a
	 * stop, the next start streams the file's start again; a file purged
	 * before the reconnection is a gap from its start: stream_open).
	 */
	if (binlog_gtids_list_due(&stream->gtids))
		return true;
	if (!bk_binlog_range_name(stream->position.file, stream->range_start,
							  stream->range_start + stream->len, name,
							  sizeof(name)))
		return bk_error_set(err, BK_ERR_INTERNAL,
							"cannot name the range %" PRIu64 "+%zu of \"%s\"",
							stream->range_start, stream->len,
							stream->position.file);
	range_meta(stream, meta, sizeof(meta));
	memset(&info, 0, sizeof(info));
	info.kind = BK_KIND_BINLOG;
	info.source_id = agent->config.source_id;
	info.name = name;
	info.meta = meta;
	info.size = stream->len;

	for (;;)
	{
		BkSendStats stats;

		stream->encoded = 0;
		memset(&stats, 0, sizeof(stats));
		/*
		 * The key is chosen once per range: its retries go out under the
		 * same one, since the same bytes sealed to another key would be a
		 * different copy of the range to the shipper (a conflict).
		 */
		if ((keyed || (keyed = stream_key(stream, err))) &&
			bk_encoder_begin(stream->encoder, &info, err) &&
			bk_producer_send_object(
				agent->producer, agent->binlog_topic, agent->config.source_id,
				strlen(agent->config.source_id), range_next_frame, stream,
				stream_interrupted, stream, &stats, err))
			break;
		if (!keyed && !retry)
			return false;
		if (!retry || agent_stop_requested)
			return bk_error_set(err, BK_ERR_INTERRUPTED,
								"stopped before Kafka acknowledged the binlog"
								" range %s; it is sent again at the next start",
								name);
		bk_error_prefix(err, "sending binlog range %s: ", name);
		agent_report_error(agent, err);
		for (int64_t waited = 0; waited < backoff_ms && !agent_stop_requested;
			 waited += 100)
			usleep(100 * 1000);
		backoff_ms = backoff_ms * 2 > AGENT_RETRY_MAX_MS ? AGENT_RETRY_MAX_MS
														 : backoff_ms * 2;
	}

	bk_strlcpy(end.file, stream->position.file, sizeof(end.file));
	end.offset = stream->range_start + stream->len;
	pthread_mutex_lock(&agent->status.lock);
	agent->status.archived = end;
	agent->status.archived_at_ms = bk_wall_ms();
	agent->status.archived_event_time = stream->last_event_time;
	bk_gtid_state_format(&stream->gtid, agent->status.gtid,
						 sizeof(agent->status.gtid));
	agent->status.backlog_bytes = 0;
	agent->status.ranges_sent++;
	agent->status.bytes_sent += stream->len;
	agent->status.last_error[0] = '\0';
	pthread_mutex_unlock(&agent->status.lock);

	if (!binlog_gtids_open_meta(&stream->gtids, &stream->txn, state_open,
								sizeof(state_open)))
		state_open[0] = '\0';
	if (!binlog_state_write(agent, &end, &stream->file_id, &stream->gtid,
							state_open, err))
	{
		/*
		 * Only a hint for the next start: Kafka holds the real position.
		 * Logged once until a write succeeds again: at every range (each
		 * range_interval on a busy server) it flooded the log, perhaps on
		 * the very file system that is full; bk_status() keeps showing it.
		 */
		if (!stream->state_failing)
			agent_report_error(agent, err);
		else
		{
			pthread_mutex_lock(&agent->status.lock);
			bk_strlcpy(agent->status.last_error, err->message,
					   sizeof(agent->status.last_error));
			agent->status.last_error_at_ms = bk_wall_ms();
			pthread_mutex_unlock(&agent->status.lock);
		}
		stream->state_failing = true;
		bk_error_clear(err);
	}
	else if (stream->state_failing)
	{
		agent_log("INFO", "saved the archived binlog position in state_dir"
						  " again");
		stream->state_failing = false;
	}
	stream->range_start += stream->len;
	stream->len = 0;
	range_buffer_shrink(stream);
	stream->range_events = 0;
	stream->closing = NULL;
	stream->gap_before[0] = '\0'; /* only the first range after a gap */
	stream->previous_end[0] = '\0';
	return true;
}

/*
 * range_append
 *		Add one event (with the magic first, for a file's first range).
 */
static bool
range_append(Stream *stream, const uint8_t *event, size_t len,
			 const BkBinlogEventHeader *header, BkError *err)
{
	size_t need = len;
	bool with_magic = stream->len == 0 && stream->range_start == 0;

	if (with_magic)
		need += BK_BINLOG_MAGIC_LEN;
	if (stream->len + need > stream->cap)
	{
		size_t cap = stream->cap ? stream->cap : 64 * 1024;
		uint8_t *grown;

		while (cap < stream->len + need)
			cap *= 2;
		grown = realloc(stream->buf, cap);
		if (grown == NULL)
			return bk_error_set(err, BK_ERR_NOMEM,
								"out of memory holding a binlog range of %zu"
								" bytes",
								stream->len + need);
		stream->buf = grown;
		stream->cap = cap;
	}
	if (with_magic)
	{
		memcpy(stream->buf, bk_binlog_magic, BK_BINLOG_MAGIC_LEN);
		stream->len = BK_BINLOG_MAGIC_LEN;
	}
	memcpy(stream->buf + stream->len, event, len);
	stream->len += len;
	if (stream->range_events == 0)
	{
		stream->range_first_ms = bk_monotonic_ms();
		stream->first_event_time = header->timestamp;
	}
	/*
	 * complete-until does not follow the stamps: a statement that began
	 * before this one's second may still be running, to be written next
	 * with its older stamp (probe_ask).
	 */
	stream->last_event_time = header->timestamp;
	stream->range_events++;
	return true;
}

/*
 * stream_interrupted
 *		Abandon a Kafka wait on SIGTERM (BkInterruptFn).
 */
static bool
stream_interrupted(void *arg)
{
	Stream *stream = arg;

	return agent_stop_requested != 0 && !stream->final_flush;
}

/*
 * note_previous_end
 *		The stream leaves the current file, read to its end: say where that
 *		was, and what ended it, with the next file's first range.
 */
static void
note_previous_end(Stream *stream)
{
	snprintf(stream->previous_end, sizeof(stream->previous_end), "%s:%" PRIu64,
			 stream->position.file, stream->position.offset);
	stream->previous_closed = stream->file_closed && stream->ended_by != NULL
								  ? stream->ended_by
								  : "none";
}

/*
 * stream_switch_file
 *		The server names the file it streams from next (the artificial ROTATE
 *		it sends first, and at every change of file).
 */
static bool
stream_switch_file(Stream *stream, const char *file, uint64_t offset,
				   BkError *err)
{
	Agent *agent = stream->agent;
	int order;

	if (strcmp(file, stream->position.file) == 0)
	{
		if (offset != stream->position.offset)
			return bk_error_set(err, BK_ERR_FORMAT,
								"the server streams \"%s\" from offset %" PRIu64
								", but the archive ends at %" PRIu64,
								file, offset, stream->position.offset);
		return true;
	}
	order = bk_binlog_file_compare(file, stream->position.file);
	if (order < 0 || offset != 4)
		return bk_error_set(
			err, BK_ERR_FORMAT,
			"the server moved from \"%s\" at offset %" PRIu64
			" to \"%s\" at offset %" PRIu64 ", which does not follow it",
			stream->position.file, stream->position.offset, file, offset);
	binlog_gtids_file_ended(&stream->gtids);
	if (!range_flush(stream, true, err))
		return false;
	if (!stream->file_closed)
	{
		/* A file that ends without ROTATE or STOP: the server crashed. */
		agent_log("WARNING",
				  "binlog \"%s\" ends at offset %" PRIu64
				  " without a ROTATE or STOP event (the server stopped"
				  " without closing it); streaming continues with \"%s\"",
				  stream->position.file, stream->position.offset, file);
		agent_audit(agent, "binlog-unclosed-file",
					"the file ends without ROTATE or STOP: the server crashed"
					" or was killed",
					&stream->position);
	}
	note_previous_end(stream);
	bk_strlcpy(stream->position.file, file, sizeof(stream->position.file));
	stream->position.offset = 4;
	stream->range_start = 0;
	stream->file_closed = false;
	memset(&stream->file_id, 0, sizeof(stream->file_id)); /* its FDE says */
	return true;
}

/*
 * audit_reset
 *		The binlog-reset audit event for a refusal at the archive's end,
 *		once for that position (Stream.reset_audited), with the archive's
 *		GTID state there (when it reached one) and the server's when it
 *		gave one.  Sent again only when Kafka did not take it: the log line
 *		and bk_status() say it on every retry.
 */
static void
audit_reset(Stream *stream, const char *detail, const char *server_gtid)
{
	char ours[BK_BINLOG_GTID_STATE_MAX];

	if (strcmp(stream->reset_audited.file, stream->position.file) == 0 &&
		stream->reset_audited.offset == stream->position.offset)
		return;
	if (!bk_gtid_state_format(&stream->gtid, ours, sizeof(ours)))
		bk_strlcpy(ours, "(too long to show)", sizeof(ours));
	if (agent_audit_gtids(stream->agent, "binlog-reset", detail,
						  &stream->position, ours[0] ? ours : NULL,
						  server_gtid))
		stream->reset_audited = stream->position;
}

/*
 * check_resume_file
 *		A format description event from the server.  A file's own (at its
 *		start) says which file the stream is in.  The one the server resends
 *		at the start of a dump inside a file must be the archived file's:
 *		RESET MASTER writes the names again, and a regular workload can put
 *		an event at the archive's end with the same GTID state there
 *		(numbering restarts at 1), which check_resume_gtid cannot tell from
 *		the file archived; the file's creation tells.  Refused as a GTID
 *		state that differs: nothing of that file is streamed.  A range of an
 *		older agent does not say: the server's is taken, as before.
 */
static bool
check_resume_file(Stream *stream, const uint8_t *event,
				  const BkBinlogEventHeader *header, BkError *err)
{
	BinlogFileId server;
	char ours[64];
	char theirs[64];

	if (!binlog_file_id_read(event, header->length, &server, err))
		return false;
	if (header->next_pos != 0)
	{
		stream->file_id = server; /* the file's own, at its start */
		return true;
	}
	if (!stream->file_id_due)
		return true;
	stream->file_id_due = false;
	switch (binlog_file_id_check(&stream->file_id, &server))
	{
		case BINLOG_RESUME_FOLLOWS:
			return true;
		case BINLOG_RESUME_DIFFERS:
			break;
		default:
			stream->file_id = server;
			return true;
	}
	bk_format_time_utc((int64_t) server.created * 1000, theirs, sizeof(theirs));
	bk_format_time_utc((int64_t) stream->file_id.created * 1000, ours,
					   sizeof(ours));
	audit_reset(stream,
				"the server's binlog file was created at another time, or by"
				" another server, than the file archived: it is another one"
				" under the same name",
				NULL);
	return bk_error_set(err, BK_ERR_CONFLICT,
						"at %s:%" PRIu64 ", where the archive ends, the"
						" server's \"%s\" was created at %s by server_id"
						" %" PRIu32 ", but the file archived was created at %s"
						" by server_id %" PRIu32 ": it is not the file archived"
						" (RESET MASTER, or a new server, reused the binlog"
						" names)",
						stream->position.file, stream->position.offset,
						stream->position.file, theirs, server.server_id, ours,
						stream->file_id.server_id) ||
		   bk_error_hint(err, SECOND_HISTORY_HINT);
}

/*
 * event_type_name
 *		MariaDB's name of a binlog event type (log_event.h), for messages.
 */
static const char *
event_type_name(unsigned int type)
{
	switch (type)
	{
		case 2:
			return "Query";
		case 3:
			return "Stop";
		case 4:
			return "Rotate";
		case 5:
			return "Intvar";
		case 9:
			return "Append_block";
		case 11:
			return "Delete_file";
		case 13:
			return "Rand";
		case 14:
			return "User_var";
		case 15:
			return "Format_desc";
		case 16:
			return "Xid";
		case 17:
			return "Begin_load_query";
		case 18:
			return "Execute_load_query";
		case 19:
			return "Table_map";
		case 23:
			return "Write_rows_v1";
		case 24:
			return "Update_rows_v1";
		case 25:
			return "Delete_rows_v1";
		case 26:
			return "Incident";
		case 27:
			return "Heartbeat";
		case 160:
			return "Annotate_rows";
		case 161:
			return "Binlog_checkpoint";
		case 162:
			return "Gtid";
		case 163:
			return "Gtid_list";
		case 164:
			return "Start_encryption";
		case 165:
			return "Query_compressed";
		case 166:
		case 169:
			return "Write_rows_compressed";
		case 167:
		case 170:
			return "Update_rows_compressed";
		case 168:
		case 171:
			return "Delete_rows_compressed";
	}
	return "unknown";
}

/*
 * audit_read_error
 *		The binlog-read-error audit event for a read that failed at where,
 *		once for that position (Stream.read_error_audited), as audit_reset:
 *		the agent retries it, and the log line and bk_status() say it on
 *		every retry.
 */
static void
audit_read_error(Stream *stream, const BinlogPosition *where,
				 const char *detail)
{
	if (strcmp(stream->read_error_audited.file, where->file) == 0 &&
		stream->read_error_audited.offset == where->offset)
		return;
	if (agent_audit_gtids(stream->agent, "binlog-read-error", detail, where,
						  NULL, NULL))
		stream->read_error_audited = *where;
}

/*
 * report_purge_gap
 *		The server purged its binlog from end on before the archive got
 *		there: say so everywhere (an ERROR saying what to do, bk_status(),
 *		a binlog-gap audit event), and mark the next range sent with where
 *		the archive ends (gap-before=); a gap whose mark has not gone out
 *		yet keeps its start.  next: the file streaming goes on with;
 *		missing: the GTIDs that prove the gap, when a GTID list did, "" when
 *		the list shows none (the purged part is unchecked all the same),
 *		else NULL (whole files are gone).
 */
static void
report_purge_gap(Stream *stream, const BinlogPosition *end, const char *next,
				 const char *missing)
{
	BkError gap;

	bk_error_clear(&gap);
	if (missing != NULL && missing[0] == '\0')
		bk_error_set(&gap, BK_ERR_NOT_FOUND,
					 "the binlog file \"%s\", where the archive ends (offset"
					 " %" PRIu64 "), is no longer on the server: it was purged"
					 " before bk archived its end; the GTID list of \"%s\""
					 " shows no transaction missing, but an Incident event"
					 " (a change the server could not log) carries no GTID"
					 " and could have been in the purged part, so the"
					 " archive has a gap up to \"%s\", where streaming"
					 " continues",
					 end->file, end->offset, next, next);
	else if (missing != NULL)
		bk_error_set(&gap, BK_ERR_NOT_FOUND,
					 "the binlog file \"%s\", where the archive ends (offset"
					 " %" PRIu64 "), is no longer on the server: it was purged"
					 " before bk archived its end, and the GTID list of"
					 " \"%s\" names transactions the archive lacks (%s), so"
					 " the archive has a gap up to \"%s\", where streaming"
					 " continues",
					 end->file, end->offset, next, missing, next);
	else
		bk_error_set(&gap, BK_ERR_NOT_FOUND,
					 "the binlog file \"%s\", where the archive ends (offset"
					 " %" PRIu64 "), is no longer on the server: it was purged"
					 " before bk archived it, so the archive has a gap up to"
					 " \"%s\", where streaming continues",
					 end->file, end->offset, next);
	bk_error_hint(&gap,
				  "No point in time inside the gap can be restored,"
				  " nor anything after it from older snapshots: take a new"
				  " snapshot now (SELECT bk_snapshot()), and keep binlogs"
				  " until bk archived them (binlog_expire_logs_seconds).");
	agent_report_error(stream->agent, &gap);
	agent_audit(stream->agent, "binlog-gap",
				"binlog purged before it was archived; streaming continues"
				" after the gap",
				end);
	if (stream->gap_before[0] == '\0')
		snprintf(stream->gap_before, sizeof(stream->gap_before), "%s:%" PRIu64,
				 end->file, end->offset);
}

/*
 * follow_gtids
 *		Follow the GTIDs of the stream (binlog_gtids.h).  A file's GTID_LIST
 *		is the server's account of everything logged before the file: it
 *		must equal what the archive reached by following the GTID events of
 *		the files before, server by server in each domain.  A difference
 *		means transactions the archive never saw: a RESET MASTER while the
 *		agent was down wrote the file names again (the agent resumed at
 *		000006:4 of one history and the server sends 000006 of another), or
 *		a binlog state changed by hand.  Said loudly, and the file's first
 *		range is marked gap-before= like one after a purge, so no restore
 *		goes on into it from the archive before.  The stream goes on from
 *		the server's account.
 */
static bool
follow_gtids(Stream *stream, const BkBinlogEventHeader *header,
			 const uint8_t *event, BkError *err)
{
	char ours[BK_BINLOG_GTID_STATE_MAX];
	char theirs[BK_BINLOG_GTID_STATE_MAX];
	char differs[1024];
	bool follows;

	/* What was reached, to say it if the list does not follow it. */
	if (header->type == BK_BINLOG_GTID_LIST_EVENT &&
		!binlog_gtids_format(&stream->gtids, ours, sizeof(ours)))
		bk_strlcpy(ours, "(too long to show)", sizeof(ours));
	if (!binlog_gtids_event(&stream->gtids, event, header->length, &follows,
							differs, sizeof(differs), err))
		return false;
	binlog_gtids_follow_txn(&stream->gtids, &stream->txn, event, header->length,
							stream->checksum_alg);
	if (header->type == BK_BINLOG_GTID_LIST_EVENT &&
		stream->purged_end.file[0] != '\0')
	{
		/*
		 * The file before was purged after the archive's end, before the
		 * rest of it arrived (stream_open): the list says whether the
		 * server logged any transaction there.  Even when it did not, the
		 * purged part may have held an Incident event (LOST_EVENTS: a
		 * change the server applied but could not log, such as a statement
		 * on a non-transactional table that overflowed the binlog cache),
		 * which carries no GTID and so leaves the list as it was.  A
		 * restore would replay past it as if nothing were lost; nothing
		 * the server still has can tell, so the purged part is a gap.
		 */
		report_purge_gap(stream, &stream->purged_end, stream->position.file,
						 follows ? "" : differs);
		memset(&stream->purged_end, 0, sizeof(stream->purged_end));
		return true;
	}
	if (stream->purged_end.file[0] != '\0' &&
		header->type != BK_BINLOG_FORMAT_DESCRIPTION_EVENT &&
		header->type != BK_BINLOG_START_ENCRYPTION_EVENT)
	{
		/* No list where MariaDB writes one: nothing proves there is no gap. */
		report_purge_gap(stream, &stream->purged_end, stream->position.file,
						 NULL);
		memset(&stream->purged_end, 0, sizeof(stream->purged_end));
	}
	if (follows)
		return true;
	if (!binlog_gtids_format(&stream->gtids, theirs, sizeof(theirs)))
		bk_strlcpy(theirs, "(too long to show)", sizeof(theirs));
	agent_log("ERROR",
			  "binlog \"%s\" starts with the GTID list %s, but the archive"
			  " reached %s: they differ in %s; transactions between them"
			  " are not in the archive (or the server's binlog state was"
			  " changed): the archive is marked with a gap before \"%s\","
			  " and no restore crosses it: take a new snapshot (SELECT"
			  " bk_snapshot())",
			  stream->position.file, theirs[0] ? theirs : "(empty)",
			  ours[0] ? ours : "(empty)", differs, stream->position.file);
	agent_audit(stream->agent, "binlog-gtid-discontinuity",
				"the file's GTID list differs from the GTID state the archive"
				" reached; marked as a gap",
				&stream->position);
	/*
	 * Where the archive ended, as a purge gap says it: the start of this
	 * file.  The mark goes out with the file's first range, where readers
	 * look: range_flush holds that range until the list has arrived.  Only
	 * a range an older agent sent with the format description alone (a
	 * resume just after it) can have gone before.
	 */
	if (stream->gap_before[0] == '\0')
		snprintf(stream->gap_before, sizeof(stream->gap_before), "%s:%d",
				 stream->position.file, BK_BINLOG_MAGIC_LEN);
	if (stream->range_start != 0)
		agent_log("WARNING",
				  "the first range of \"%s\" was sent before its GTID list"
				  " arrived: the gap mark goes with the range from %" PRIu64,
				  stream->position.file, stream->range_start);
	return true;
}

/*
 * report_incident
 *		The server logged an Incident event: it applied a change there that
 *		it could not log (LOST_EVENTS), so the binlog after it is not the
 *		data's whole history.  The event is archived like any other, and
 *		bk restore refuses a target past it; said now as well, while a new
 *		snapshot can still cover what follows.
 */
static void
report_incident(Stream *stream, const uint8_t *event, uint32_t len)
{
	uint16_t number = 0;
	char message[256] = "";
	char detail[512];
	BkError err;

	if (!bk_binlog_incident_read(event, len, stream->checksum_alg, &number,
								 message, sizeof(message), &err))
		bk_strlcpy(message, err.message, sizeof(message));
	snprintf(detail, sizeof(detail),
			 "the server logged an Incident event (%s%s%s): it applied a"
			 " change it could not log",
			 number == 1 ? "LOST_EVENTS" : "incident", message[0] ? ": " : "",
			 message);
	bk_error_clear(&err);
	bk_error_set(&err, BK_ERR_FORMAT,
				 "binlog \"%s\" at %" PRIu64 ": %s, so no point in time"
				 " after it can be restored from an earlier snapshot (bk"
				 " restore refuses such a target)",
				 stream->position.file, stream->position.offset, detail);
	bk_error_hint(&err, "Take a new snapshot now (SELECT bk_snapshot()); the"
						" server's error log names the statement.");
	agent_report_error(stream->agent, &err);
	agent_audit(stream->agent, "binlog-incident", detail, &stream->position);
}

/*
 * probe_close
 *		Drop the connection that asks where the binlog ends.
 */
static void
probe_close(Stream *stream)
{
	if (stream->probe_conn != NULL)
		mysql_close(stream->probe_conn);
	stream->probe_conn = NULL;
}

/*
 * probe_reached
 *		Once the stream has received up to where the server said its binlog
 *		ended, everything written before it said so is here: complete-until
 *		moves to the server's clock before that answer.
 */
static void
probe_reached(Stream *stream)
{
	if (!stream->probe_pending ||
		bk_binlog_position_compare(
			stream->position.file, stream->position.offset,
			stream->probe_end.file, stream->probe_end.offset) < 0)
		return;
	stream->probe_pending = false;
	if (stream->probe_time_ms > stream->complete_until_ms)
		stream->complete_until_ms = stream->probe_time_ms;
}

/* How probe_ask ended. */
typedef enum ProbeResult
{
	PROBE_OK,
	PROBE_FAILED,  /* a refusal, an error from the server, an odd answer */
	PROBE_LOST,    /* the connection was gone (wait_timeout, a restart) */
	PROBE_TIMEOUT, /* no answer within PROBE_TIMEOUT_S */
} ProbeResult;

/*
 * probe_ask
 *		The server's clock, the start of the oldest statement still running,
 *		then where its binlog ends, in one round trip.  The statements run
 *		in order: NOW(6) is when the first began, so the second reads the
 *		end after that time, and SHOW MASTER STATUS waits for a binlog write
 *		in progress (both take the binlog's lock).  So every commit written
 *		before *server_ms is before *end.
 *
 *		That is not yet what a restore needs: it takes a transaction by its
 *		events' stamps, when its committing statement STARTED (whole
 *		seconds; bk_binlog_txn_feed), not when it was written.  A statement
 *		running at *server_ms is written after *end with an older stamp.
 *		PROCESSLIST lists it (one that ended before it was read was written
 *		before SHOW MASTER STATUS ran), and *oldest_s is the second its
 *		oldest began, rounded down, or -1 when none runs.  Its TIME_MS is
 *		counted to when the table was filled, after NOW(6): the start
 *		computed from NOW(6) is early, which only claims less.  The open
 *		transactions idle between statements (INNODB_TRX) need not count:
 *		their GTID and Xid events carry the stamp of the COMMIT, which
 *		starts later (checked on 10.11).  INNODB_TRX is read only because
 *		it needs PROCESS, without which PROCESSLIST would show the agent's
 *		own user's statements and hide the others' without a word.  Not
 *		counted: the binlog dump threads (they write nothing), the
 *		replication threads, whose events carry the source's stamps (the
 *		README says what that costs a replica with log_slave_updates), and
 *		the running snapshot's connections, by their ids: none of their
 *		statements is binlogged (snapshot_connect), and a table read that
 *		lasts an hour would hold complete-until back that long.  Not every
 *		session of the agent's account: another client may log in as it
 *		(root by default) and write.  Nor plain SELECTs (a statement whose
 *		text starts, after whitespace, with SELECT and a character that
 *		cannot go on an identifier): a report running an hour, or the
 *		caller's own waiting SELECT bk_snapshot(), would hold complete-until
 *		back that long on a busy server, refusing restores to recent times
 *		and tripping RPO alarms.  A SELECT is binlogged only through a stored
 *		function that writes, logged with the SELECT's stamp: that case is
 *		not covered, like SET TIMESTAMP sessions and log_slave_updates.
 *		Anything else counts, to be safe: a leading comment, WITH, INSERT
 *		... SELECT, CALL, DO, prepared statements (COMMAND 'Execute').  A
 *		NULL INFO counts too (IFNULL).  No backslash in the pattern, so
 *		sql_mode NO_BACKSLASH_ESCAPES cannot change it.  In a
 *		multi-statement request INFO starts at the statement running, so a
 *		SELECT before a DELETE does not hide the DELETE.
 */
static ProbeResult
probe_ask(Stream *stream, int64_t *server_ms, int64_t *oldest_s,
		  BinlogPosition *end, BkError *err)
{
	char ids[AGENT_SNAPSHOT_IDS_MAX * 21 + 1];
	char sql[1024 + sizeof(ids)];
	int sql_len;
	MYSQL *conn;
	MYSQL_RES *res;
	MYSQL_ROW row;
	bool ok;
	int64_t started = bk_monotonic_ms();

	if (stream->probe_conn == NULL)
	{
		stream->probe_conn = agent_connect_timed(stream->agent, PROBE_TIMEOUT_S,
												 PROBE_TIMEOUT_S, err);
		if (stream->probe_conn == NULL)
			return PROBE_FAILED;
		if (mysql_set_server_option(stream->probe_conn,
									MYSQL_OPTION_MULTI_STATEMENTS_ON) != 0)
			goto failed;
	}
	conn = stream->probe_conn;
	agent_snapshot_ids_sql(stream->agent, ids, sizeof(ids));
	sql_len = snprintf(
		sql, sizeof(sql),
		"SELECT UNIX_TIMESTAMP(NOW(6)),"
		" (SELECT FLOOR(UNIX_TIMESTAMP(NOW(6)) - MAX(TIME_MS) / 1000)"
		" FROM information_schema.PROCESSLIST"
		" WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Sleep', 'Daemon',"
		" 'Binlog Dump', 'Slave_IO', 'Slave_SQL', 'Slave_worker')"
		" AND NOT (COMMAND = 'Query' AND IFNULL(INFO, '') REGEXP"
		" '^(?i)[[:space:]]*select([^0-9a-z_$[:^ascii:]]|$)')%s%s%s),"
		" (SELECT COUNT(*) FROM information_schema.INNODB_TRX);"
		" SHOW MASTER STATUS",
		ids[0] != '\0' ? " AND ID NOT IN (" : "", ids,
		ids[0] != '\0' ? ")" : "");
	if (mysql_real_query(conn, sql, (unsigned long) sql_len) != 0 ||
		(res = mysql_store_result(conn)) == NULL)
		goto failed;
	row = mysql_fetch_row(res);
	ok = row != NULL && row[0] != NULL &&
		 bk_binlog_unix_ms_parse(row[0], server_ms);
	*oldest_s = -1;
	if (ok && row[1] != NULL)
	{
		int64_t ms;

		ok = bk_binlog_unix_ms_parse(row[1], &ms);
		*oldest_s = ms / 1000;
	}
	mysql_free_result(res);
	if (!ok)
	{
		bk_error_set(err, BK_ERR_FORMAT,
					 "the server's clock is not a Unix time");
		return PROBE_FAILED;
	}
	if (mysql_next_result(conn) != 0 ||
		(res = mysql_store_result(conn)) == NULL)
		goto failed;
	row = mysql_fetch_row(res);
	ok = row != NULL && row[0] != NULL && row[1] != NULL &&
		 strlen(row[0]) < sizeof(end->file) &&
		 bk_parse_u64(row[1], &end->offset);
	if (ok)
		bk_strlcpy(end->file, row[0], sizeof(end->file));
	mysql_free_result(res);
	if (!ok)
	{
		bk_error_set(err, BK_ERR_FORMAT,
					 "SHOW MASTER STATUS returns no binlog position");
		return PROBE_FAILED;
	}
	/* Nothing else may follow: the next query would fail out of sync. */
	if (mysql_more_results(conn))
	{
		bk_error_set(err, BK_ERR_FORMAT,
					 "the server returned more than was asked");
		return PROBE_FAILED;
	}
	return PROBE_OK;

failed:
	bk_error_set(err, BK_ERR_IO, "%s", mysql_error(stream->probe_conn));
	if (mysql_errno(stream->probe_conn) == ER_SPECIFIC_ACCESS_DENIED_ERROR)
		bk_error_hint(err, "Grant the agent's account PROCESS.");
	switch (mysql_errno(stream->probe_conn))
	{
		case CR_SERVER_GONE_ERROR:
		case CR_SERVER_LOST:
			/* A read that gave up after its timeout, or a closed socket. */
			return bk_monotonic_ms() - started >= PROBE_TIMEOUT_S * 1000 - 100
					   ? PROBE_TIMEOUT
					   : PROBE_LOST;
		default:
			return PROBE_FAILED;
	}
}

/*
 * probe_binlog_end
 *		Ask the server where its binlog ends and what its clock says: when
 *		the stream is idle at the server's end (a heartbeat, idle) at most
 *		once per range_interval, else at most once a second.  This is exact
 *		where a heartbeat is not: whatever the answer's or the heartbeat's
 *		time in transit, a commit not yet received comes after that end, so
 *		was written after that time.  The time is the server's, as the
 *		event stamps a restore target is compared with, and stops short of
 *		the second the oldest statement still running began (probe_ask).
 *		A failure costs only that: complete-until stays until a probe
 *		succeeds again.
 */
static void
probe_binlog_end(Stream *stream, bool idle)
{
	int64_t now = bk_monotonic_ms();
	int64_t server_ms = 0;
	int64_t oldest_s = -1;
	BinlogPosition end;
	BkError err;
	ProbeResult result;
	int64_t every = stream->agent->config.range_interval;

	/* A server refusing it (max_connections) is not asked twice a second. */
	if (stream->probe_failed && every < PROBE_RETRY_MS)
		every = PROBE_RETRY_MS;
	/* A busy stream waits for each probe: not more than once a second. */
	if (!idle && every < PROBE_BUSY_MS)
		every = PROBE_BUSY_MS;
	if (stream->probe_pending ||
		(stream->probe_asked_ms != 0 && now - stream->probe_asked_ms < every))
		return;
	stream->probe_asked_ms = now;
	memset(&end, 0, sizeof(end));
	bk_error_clear(&err);
	result = probe_ask(stream, &server_ms, &oldest_s, &end, &err);
	if (result == PROBE_LOST)
	{
		/*
		 * The server closes a connection idle for wait_timeout, and the
		 * probe's is idle between bursts: a new one, silently, once.
		 */
		probe_close(stream);
		bk_error_clear(&err);
		result = probe_ask(stream, &server_ms, &oldest_s, &end, &err);
	}
	if (result == PROBE_TIMEOUT && !stream->probe_failed &&
		++stream->probe_timeouts < PROBE_TIMEOUTS_SAID)
	{
		/*
		 * SHOW MASTER STATUS waits while a large transaction is copied into
		 * the binlog, and the stream waits for the probe: this round is
		 * skipped, on a new connection next time (the answer may yet come).
		 */
		probe_close(stream);
		return;
	}
	if (result != PROBE_OK)
	{
		if (!stream->probe_failed)
			agent_log("WARNING",
					  "cannot ask the server where its binlog ends (%s):"
					  " complete-until stays where it is until it can%s%s",
					  err.message, err.hint[0] != '\0' ? " HINT: " : "",
					  err.hint);
		stream->probe_failed = true;
		probe_close(stream);
		return;
	}
	if (stream->probe_failed)
		agent_log("INFO", "the server says where its binlog ends again");
	stream->probe_failed = false;
	stream->probe_timeouts = 0;
	/*
	 * The stream past the server's end: only a server whose binlog went
	 * back (RESET MASTER), which the stream finds out by itself.
	 */
	if (bk_binlog_position_compare(stream->position.file,
								   stream->position.offset, end.file,
								   end.offset) > 0)
		return;
	/*
	 * A restore to T takes a transaction stamped S when S < T's second
	 * (restore_binlog.c), so claiming up to the end of S's second would
	 * do; ending before it leaves a second's margin for the start's
	 * estimate.
	 */
	if (oldest_s >= 0 && oldest_s * 1000 - 1 < server_ms)
		server_ms = oldest_s * 1000 - 1;
	stream->probe_end = end;
	stream->probe_time_ms = server_ms;
	stream->probe_pending = true;
	probe_reached(stream);
}

/*
 * stream_event
 *		Check one event from the server and add it to the pending range.
 */
static bool
stream_event(Stream *stream, const uint8_t *event, size_t avail, BkError *err)
{
	Agent *agent = stream->agent;
	BkBinlogEventHeader header;
	uint64_t offset = stream->position.offset;

	if (!bk_binlog_header_parse(event, avail, &header, err))
		return false;
	/* One packet, one event: more bytes would be a protocol unknown here. */
	if (header.length != avail)
		return bk_error_set(err, BK_ERR_FORMAT,
							"the server sent %zu bytes for a %" PRIu32
							"-byte event",
							avail, header.length);

	if (header.type == BK_BINLOG_HEARTBEAT_EVENT)
	{
		/* Body: the server's current file name; next_pos its end. */
		size_t name_len = header.length - BK_BINLOG_HEADER_LEN;
		char name[BK_BINLOG_FILE_NAME_MAX + 1];

		if (stream->checksum_alg == BK_BINLOG_CHECKSUM_CRC32 &&
			name_len >= BK_BINLOG_CHECKSUM_LEN)
			name_len -= BK_BINLOG_CHECKSUM_LEN;
		if (name_len < sizeof(name))
		{
			memcpy(name, event + BK_BINLOG_HEADER_LEN, name_len);
			name[name_len] = '\0';
			if (strcmp(name, stream->position.file) == 0 &&
				header.next_pos == stream->position.offset)
			{
				/*
				 * The server had nothing more when it sent it, but when
				 * that was the heartbeat does not say (its timestamp is 0)
				 * and its transit has no bound (a retransmission, a
				 * congested link, a dump thread descheduled before the
				 * send): a commit since then is behind it in the stream.
				 * What it tells is that the stream is idle, when asking
				 * the server itself costs nothing.
				 */
				probe_binlog_end(stream, true);
				pthread_mutex_lock(&agent->status.lock);
				agent->status.caught_up_at_ms = bk_wall_ms();
				pthread_mutex_unlock(&agent->status.lock);
			}
		}
		return true;
	}
	if (header.type == BK_BINLOG_ROTATE_EVENT &&
		(header.flags & BK_BINLOG_F_ARTIFICIAL || header.next_pos == 0))
	{
		/*
		 * Made up by the server: with a CRC-32 or without, whatever the
		 * stream's setting; the CRC-32 itself tells.
		 */
		char name[BK_BINLOG_FILE_NAME_MAX + 1];
		uint64_t pos;

		if (!bk_binlog_rotate_read(event, header.length, -1, &pos, name,
								   sizeof(name), err))
			return bk_error_prefix(err, "from the server: ");
		if (!bk_binlog_file_name_valid(name))
			return bk_error_set(err, BK_ERR_FORMAT,
								"the server names a binlog file \"%s\" that"
								" bk cannot archive",
								name);
		return stream_switch_file(stream, name, pos, err);
	}
	if (header.type == BK_BINLOG_FORMAT_DESCRIPTION_EVENT)
	{
		int alg = bk_binlog_fde_checksum_alg(event, header.length);

		if (alg != BK_BINLOG_CHECKSUM_OFF && alg != BK_BINLOG_CHECKSUM_CRC32)
			return bk_error_set(err, BK_ERR_FORMAT,
								"the server's format description declares"
								" checksum algorithm %d, unknown to bk",
								alg);
		stream->checksum_alg = alg;
		if (!check_resume_file(stream, event, &header, err))
			return false;
		/* On a resume the server repeats it with next_pos 0: not in the file. */
		if (header.next_pos == 0)
			return true;
	}
	if (header.flags & BK_BINLOG_F_ARTIFICIAL)
		return true;
	if (stream->file_id_due)
		return bk_error_set(err, BK_ERR_FORMAT,
							"the server sent no format description before"
							" the first event of a dump inside the file: bk"
							" cannot check that its file is the one"
							" archived");

	if (header.next_pos != offset + header.length)
		return bk_error_set(err, BK_ERR_FORMAT,
							"it claims to end at %" PRIu32
							", but it is %" PRIu32
							" bytes long: events are missing",
							header.next_pos, header.length);
	if (stream->checksum_alg == BK_BINLOG_CHECKSUM_CRC32 &&
		!bk_binlog_crc_ok(event, header.length))
		return bk_error_set(err, BK_ERR_FORMAT,
							"its CRC-32 is wrong: the event was damaged"
							" on the server's disk or on the way");
	if (!follow_gtids(stream, &header, event, err))
		return false;
	if (!bk_gtid_state_apply(&stream->gtid, event, header.length, err))
		return false;
	if (!range_append(stream, event, header.length, &header, err))
		return false;
	if (header.type == BK_BINLOG_INCIDENT_EVENT)
		report_incident(stream, event, header.length);
	stream->position.offset = header.next_pos;
	stream->file_closed = false;

	pthread_mutex_lock(&agent->status.lock);
	agent->status.received = stream->position;
	agent->status.backlog_bytes = stream->len;
	pthread_mutex_unlock(&agent->status.lock);

	if (header.type == BK_BINLOG_ROTATE_EVENT)
	{
		uint64_t pos;

		if (!bk_binlog_rotate_read(event, header.length, stream->checksum_alg,
								   &pos, stream->next_file,
								   sizeof(stream->next_file), err))
			return false;
		stream->closing = "rotate";
		stream->file_closed = true;
		stream->ended_by = "rotate";
		return range_flush(stream, true, err);
	}
	if (header.type == BK_BINLOG_STOP_EVENT)
	{
		stream->closing = "stop";
		stream->file_closed = true;
		stream->ended_by = "stop";
		return range_flush(stream, true, err);
	}
	if (stream->len >= stream->agent->config.range_size)
		return range_flush(stream, true, err);
	return true;
}

/*
 * check_server
 *		What must hold before streaming: log_bin on, encrypt_binlog off;
 *		and what is reported loudly but does not stop it (sync_binlog=0).
 */
static bool
check_server(Stream *stream, BkError *err)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	bool log_bin;
	bool encrypted;
	long sync_binlog;

	if (mysql_query(stream->conn,
					"SELECT @@global.log_bin, @@global.sync_binlog,"
					" @@global.encrypt_binlog") != 0 ||
		(res = mysql_store_result(stream->conn)) == NULL)
		return bk_error_set(err, BK_ERR_IO,
							"reading log_bin, sync_binlog and encrypt_binlog:"
							" %s",
							mysql_error(stream->conn));
	row = mysql_fetch_row(res);
	log_bin = row && row[0] && strcmp(row[0], "1") == 0;
	sync_binlog = row && row[1] ? strtol(row[1], NULL, 10) : 0;
	encrypted = row && row[2] && strcmp(row[2], "1") == 0;
	mysql_free_result(res);
	if (!log_bin)
	{
		agent_audit(stream->agent, "binlog-disabled",
					"log_bin is OFF: the server writes no binlog, so nothing"
					" after a snapshot can be restored",
					NULL);
		return bk_error_set(err, BK_ERR_CONFIG,
							"the server has log_bin OFF: there is no binlog to"
							" archive, and no point in time after a snapshot"
							" can be restored") ||
			   bk_error_hint(err,
							 "Start mariadbd with log_bin (for example"
							 " log_bin=mariadb-bin in its configuration).");
	}
	if (encrypted)
	{
		/*
		 * The dump thread sends an encrypted binlog's events decrypted
		 * (the server's sql_repl.cc), after the file's START_ENCRYPTION
		 * event: what the agent would archive is not the file, and not a
		 * binlog mariadb-binlog could replay.
		 */
		agent_audit(stream->agent, "binlog-encrypted",
					"encrypt_binlog is ON: bk cannot archive an encrypted"
					" binlog",
					NULL);
		return bk_error_set(err, BK_ERR_CONFIG,
							"the server has encrypt_binlog ON: bk cannot"
							" archive an encrypted binlog (the replication"
							" stream is not the file, and could not be"
							" replayed)") ||
			   bk_error_hint(err,
							 "Turn encrypt_binlog off for this server: bk"
							 " encrypts everything it archives with its own"
							 " key.");
	}
	if (sync_binlog == 0)
	{
		agent_log("WARNING",
				  "sync_binlog is 0: after an operating system crash the"
				  " server's binlog can lose transactions the archive already"
				  " holds, and its replicas and restores diverge; set"
				  " sync_binlog=1");
		agent_audit(stream->agent, "binlog-not-durable",
					"sync_binlog=0: the server does not fsync its binlog",
					NULL);
	}
	return true;
}

/*
 * server_has_file
 *		Is file among SHOW BINARY LOGS?  Tells a purge (older than the oldest)
 *		from a RESET MASTER (newer than the newest, names reused).
 */
static bool
server_has_file(Stream *stream, const char *file, bool *has, bool *reset,
				char *oldest, char *newest, size_t name_len, BkError *err)
{
	MYSQL_RES *res;
	MYSQL_ROW row;

	*has = false;
	*reset = false;
	oldest[0] = '\0';
	newest[0] = '\0';
	if (mysql_query(stream->conn, "SHOW BINARY LOGS") != 0 ||
		(res = mysql_store_result(stream->conn)) == NULL)
		return bk_error_set(err, BK_ERR_IO, "SHOW BINARY LOGS: %s",
							mysql_error(stream->conn));
	while ((row = mysql_fetch_row(res)) != NULL)
	{
		if (row[0] == NULL)
			continue;
		if (strcmp(row[0], file) == 0)
			*has = true;
		if (oldest[0] == '\0')
			bk_strlcpy(oldest, row[0], name_len);
		bk_strlcpy(newest, row[0], name_len);
	}
	mysql_free_result(res);
	if (!*has && newest[0] && bk_binlog_file_compare(newest, file) < 0)
		*reset = true;
	return true;
}

/*
 * next_file_name
 *		The name of the binlog file the server opens after file: the number
 *		one higher, in at least as many digits.
 */
static bool
next_file_name(const char *file, char *out, size_t out_len)
{
	const char *dot = strrchr(file, '.');
	int digits;
	int n;

	if (dot == NULL || dot[1] == '\0')
		return false;
	digits = (int) strlen(dot + 1);
	n = snprintf(out, out_len, "%.*s.%0*llu", (int) (dot - file), file, digits,
				 strtoull(dot + 1, NULL, 10) + 1);
	return n > 0 && (size_t) n < out_len && bk_binlog_file_name_valid(out);
}

/*
 * file_follows
 *		next is the binlog file the server opens after file.
 */
static bool
file_follows(const char *file, const char *next)
{
	char expected[BK_BINLOG_FILE_NAME_MAX + 1];

	return next_file_name(file, expected, sizeof(expected)) &&
		   strcmp(expected, next) == 0;
}

/*
 * check_resume_gtid
 *		Resuming inside a file: the server's GTID state at that position
 *		(BINLOG_GTID_POS, the values bound) must be the one the archive
 *		reached there.  A RESET MASTER while the agent was down writes the
 *		names again, and server_has_file sees it only when the server's
 *		newest file is older than the archive's; a file's start is checked
 *		by its GTID list (follow_gtids), a position inside it only here.
 *		Two histories in one file cannot be marked as a gap (readers look
 *		for gap-before= on a file's first range), so streaming stops, as
 *		for a reset seen by name, and the agent retries the refusal until it
 *		is given a new source_id.
 *
 *		The new history need not have an event starting at the archive's
 *		end: the server then answers NULL, its definitive "not in my file of
 *		that name", and the dump would fail at the same position forever.
 *		That is the same refusal, once the file is seen still listed after
 *		the NULL (a PURGE or RESET MASTER in between is left to the next
 *		attempt, which sees it by name).  A failed call is no answer (a lost
 *		connection, a server going down): it is only reported, the dump then
 *		checks every event's position, and a lost connection is retried like
 *		any other (binlog_resume_check).
 */
static bool
check_resume_gtid(Stream *stream, BkError *err)
{
	char text[BK_BINLOG_GTID_STATE_MAX];
	char ours[BK_BINLOG_GTID_STATE_MAX];
	char oldest[BK_BINLOG_FILE_NAME_MAX + 1];
	char newest[BK_BINLOG_FILE_NAME_MAX + 1];
	BkError why;
	BkError call_err;
	bool found;
	bool called;
	bool listed = true;
	bool reset;

	bk_error_clear(&why);
	called = agent_binlog_gtid_pos(stream->conn, stream->position.file,
								   stream->position.offset, text, sizeof(text),
								   &found, &call_err);
	/* A NULL: is the file still there, or did it go meanwhile? */
	if (called && !found &&
		!server_has_file(stream, stream->position.file, &listed, &reset, oldest,
						 newest, sizeof(newest), err))
		return false;
	if (!bk_gtid_state_format(&stream->gtid, ours, sizeof(ours)))
		bk_strlcpy(ours, "(too long to show)", sizeof(ours));

	switch (binlog_resume_check(&stream->gtid, called, found ? text : NULL,
								listed, &why))
	{
		case BINLOG_RESUME_FOLLOWS:
			return true;
		case BINLOG_RESUME_UNCHECKED:
			if (called)
				agent_log("WARNING",
						  "could not check the server's GTID state at"
						  " %s:%" PRIu64 " before resuming: BINLOG_GTID_POS"
						  " gave \"%s\" (%s)",
						  stream->position.file, stream->position.offset, text,
						  why.message);
			else
				agent_log("WARNING",
						  "could not check the server's GTID state at"
						  " %s:%" PRIu64 " before resuming (%s)",
						  stream->position.file, stream->position.offset,
						  call_err.message);
			return true;
		case BINLOG_RESUME_RECHECK:
			return bk_error_set(err, BK_ERR_IO,
								"the binlog file \"%s\" left the server's list"
								" while the agent checked where the archive"
								" ends in it (offset %" PRIu64
								"): looking again",
								stream->position.file, stream->position.offset);
		case BINLOG_RESUME_DIFFERS:
			audit_reset(stream,
						"the server's GTID state where the archive ends"
						" differs from the archive's: the binlog file is"
						" another one under the same name",
						text);
			return bk_error_set(err, BK_ERR_CONFLICT,
								"at %s:%" PRIu64 ", where the archive ends, the"
								" server's GTID state is %s, but the archive"
								" reached %s there: the server's \"%s\" is"
								" not the file archived (RESET MASTER, or a"
								" new server, reused the binlog names)",
								stream->position.file, stream->position.offset,
								text[0] ? text : "(empty)",
								ours[0] ? ours : "(empty)",
								stream->position.file) ||
				   bk_error_hint(err, SECOND_HISTORY_HINT);
		case BINLOG_RESUME_UNPLACED:
			audit_reset(stream,
						"the server cannot place the archive's end in its"
						" binlog file of that name (BINLOG_GTID_POS is NULL:"
						" no event starts there): the binlog file is another"
						" one under the same name, or lost its end",
						NULL);
			return bk_error_set(err, BK_ERR_CONFLICT,
								"at %s:%" PRIu64 ", where the archive ends"
								" (GTID state %s), the server cannot place the"
								" position: no event of its \"%s\" starts"
								" there (BINLOG_GTID_POS is NULL), so it is"
								" not the file archived: RESET MASTER (or a"
								" new server) reused the binlog names, or the"
								" server lost the file's end in a crash",
								stream->position.file, stream->position.offset,
								ours[0] ? ours : "(empty)",
								stream->position.file) ||
				   bk_error_hint(err, SECOND_HISTORY_HINT);
	}
	return bk_error_set(err, BK_ERR_INTERNAL,
						"unknown verdict on the resume position");
}

/*
 * current_file
 *		The file the server writes now (SHOW MASTER STATUS).
 */
static bool
current_file(Stream *stream, char *file, size_t file_len, BkError *err)
{
	MYSQL_RES *res;
	MYSQL_ROW row;

	if (mysql_query(stream->conn, "SHOW MASTER STATUS") != 0 ||
		(res = mysql_store_result(stream->conn)) == NULL)
		return bk_error_set(err, BK_ERR_IO, "SHOW MASTER STATUS: %s",
							mysql_error(stream->conn));
	row = mysql_fetch_row(res);
	if (row == NULL || row[0] == NULL)
	{
		mysql_free_result(res);
		return bk_error_set(err, BK_ERR_CONFIG,
							"SHOW MASTER STATUS returns nothing: the server"
							" writes no binlog");
	}
	bk_strlcpy(file, row[0], file_len);
	mysql_free_result(res);
	return true;
}

/*
 * resume_from_state_checked
 *		The local state file alone says where the archive ends (Kafka lost
 *		the source's ranges): resuming inside a file, that file is checked
 *		by its creation (check_resume_file), as from Kafka.  A state file of
 *		an older agent does not say which file of that name it was, so the
 *		server's could be another history's, streamed on unchecked: refused.
 */
static bool
resume_from_state_checked(Stream *stream, const BinlogPosition *position,
						  const BinlogFileId *file_id, BkError *err)
{
	if (position->offset <= BK_BINLOG_MAGIC_LEN || file_id->known)
		return true;
	return bk_error_set(err, BK_ERR_CONFLICT,
						"Kafka holds no binlog range of source \"%s\", and"
						" the local state says %s:%" PRIu64 " was"
						" acknowledged, but not which binlog file of that"
						" name (it was written by an older agent): bk does"
						" not resume inside a file it cannot check is the"
						" one archived",
						stream->agent->config.source_id, position->file,
						position->offset) ||
		   bk_error_hint(err,
						 "Give the agent a new source_id and take a snapshot;"
						 " or, if the server's binlog was not reset since,"
						 " remove %s/binlog.position and set start_binlog = %s"
						 " to archive that file again from its start.",
						 stream->agent->config.state_dir, position->file);
}

/*
 * stream_start_position
 *		Where to stream from: the end of the newest range Kafka holds (the
 *		local state file can only move it forward, never decide alone), else
 *		the start of start_binlog or of the current file.
 */
static bool
stream_start_position(Stream *stream, BkError *err)
{
	Agent *agent = stream->agent;
	BinlogPosition from_kafka, from_state, rotated_from;
	BkGtidState gtid, state_gtid;
	BinlogGtids gtids;
	BkBinlogTxn txn;
	BinlogFileId file_id, state_file_id;
	char state_open[BINLOG_OPEN_META_MAX];
	bool in_kafka = false, in_state = false, closed_in_kafka = false;

	memset(&gtid, 0, sizeof(gtid));
	binlog_gtids_forget(&gtids);
	if (!binlog_resume_from_kafka(agent, &from_kafka, &rotated_from, &gtid,
								  &gtids, &txn, &file_id, &closed_in_kafka,
								  &in_kafka, err))
		return bk_error_prefix(err,
							   "finding where the archive ends in Kafka: ");
	if (!binlog_state_read(agent, &from_state, &state_file_id, &state_gtid,
						   state_open, sizeof(state_open), &in_state, err))
	{
		agent_report_error(agent, err);
		bk_error_clear(err);
		in_state = false;
	}
	if (in_kafka)
	{
		stream->position = from_kafka;
		stream->gtid = gtid;
		stream->gtids = gtids;
		stream->txn = txn;
		stream->file_id = file_id;
		/* A range that ended with STOP: the server moves on to a new file. */
		stream->file_closed = closed_in_kafka;
		stream->ended_by = closed_in_kafka ? "stop" : NULL;
		/* Resumed at the start of the file a ROTATE named: it says so. */
		if (rotated_from.file[0] != '\0')
		{
			snprintf(stream->previous_end, sizeof(stream->previous_end),
					 "%s:%" PRIu64, rotated_from.file, rotated_from.offset);
			stream->previous_closed = "rotate";
		}
		if (in_state &&
			(bk_binlog_file_compare(from_state.file, from_kafka.file) > 0 ||
			 (strcmp(from_state.file, from_kafka.file) == 0 &&
			  from_state.offset > from_kafka.offset)))
			agent_log("WARNING",
					  "the local state says %s:%" PRIu64
					  " was acknowledged, but the newest range in Kafka ends"
					  " at %s:%" PRIu64 "; resuming from Kafka's position",
					  from_state.file, from_state.offset, from_kafka.file,
					  from_kafka.offset);
		agent_log("INFO",
				  "resuming the binlog at %s:%" PRIu64
				  " (the end of the newest range in Kafka)",
				  stream->position.file, stream->position.offset);
	}
	else
	{
		if (in_state && !resume_from_state_checked(stream, &from_state,
												   &state_file_id, err))
			return false;
		if (in_state)
		{
			agent_log("WARNING",
					  "Kafka holds no binlog range of source \"%s\", but the"
					  " local state says %s:%" PRIu64 " was acknowledged:"
					  " the topic lost its messages (retention, or it was"
					  " recreated); resuming from the local state",
					  agent->config.source_id, from_state.file,
					  from_state.offset);
			agent_audit(agent, "binlog-position-from-state",
						"Kafka holds no range of this source; resumed from"
						" the agent's local state",
						&from_state);
			stream->position = from_state;
			stream->file_id = state_file_id;
			stream->gtid = state_gtid;
			binlog_gtids_from_newest(&stream->gtids, &state_gtid);
			/*
			 * Inside a transaction, as binlog_resume_from_kafka resumes
			 * from a range that ends inside one: if a crash cut it while
			 * the agent was down, the next file's GTID list does not name
			 * it, and that is no gap.
			 */
			memset(&stream->txn, 0, sizeof(stream->txn));
			{
				BkError open_err;

				if (!binlog_gtids_resume_open(&stream->gtids, &stream->txn,
											  state_open, strlen(state_open),
											  &open_err))
					agent_log("WARNING",
							  "the local state ends inside a transaction bk"
							  " cannot read (%s): if the server rolled it"
							  " back, the next binlog file's GTID list is"
							  " reported as a gap",
							  open_err.message);
			}
		}
		else
		{
			if (agent->config.start_binlog != NULL)
				bk_strlcpy(stream->position.file, agent->config.start_binlog,
						   sizeof(stream->position.file));
			else if (!current_file(stream, stream->position.file,
								   sizeof(stream->position.file), err))
				return false;
			stream->position.offset = 4;
			agent_log("INFO",
					  "the archive of source \"%s\" is empty:"
					  " streaming from the start of %s",
					  agent->config.source_id, stream->position.file);
		}
	}
	return true;
}

/*
 * check_server_basename
 *		The archive's file is not on the server: is the server's binlog the
 *		same one, named alike?  MariaDB's default basename is
 *		<hostname>-bin, so a failover to another host (or log_bin renamed)
 *		gives files of another basename, whose numbers say nothing of the
 *		archive's: taken by number, the server's oldest file would pass for
 *		a purge gap after the archive's end, its files would interleave with
 *		the archive's, and a restore would chain from one server's binlog
 *		into the other's.  It is a second history, refused as a RESET MASTER
 *		is: the agent retries until it is given a new source_id.
 */
static bool
check_server_basename(Stream *stream, const char *newest, BkError *err)
{
	if (newest[0] == '\0' ||
		bk_binlog_file_same_base(newest, stream->position.file))
		return true;
	audit_reset(stream,
				"the server's binlog has another basename than the"
				" archive's: another server's binlog, not a continuation",
				NULL);
	return bk_error_set(err, BK_ERR_CONFLICT,
						"the server writes \"%s\", but the archive ends in"
						" \"%s\", which the server does not have: its binlog"
						" has another basename (another server, or log_bin"
						" renamed), so it is another history than the"
						" archive's",
						newest, stream->position.file) ||
		   bk_error_hint(err, SECOND_HISTORY_HINT);
}

/*
 * dump_heartbeat_ms
 *		The heartbeat period asked of the server: heartbeat, or
 *		range_interval when that is shorter.  A range is sent when its first
 *		event has waited range_interval, and that is checked only when a
 *		packet arrives: on a quiet server the packet after a lone commit is
 *		the next heartbeat, so a longer period would hold the commit back
 *		for a heartbeat instead of range_interval.
 */
static int64_t
dump_heartbeat_ms(const Agent *agent)
{
	return agent->config.range_interval < agent->config.heartbeat
			   ? agent->config.range_interval
			   : agent->config.heartbeat;
}

/*
 * stream_open
 *		Connect, check the server, and start the dump at stream->position.
 */
static bool
stream_open(Stream *stream, bool *positioned, BkError *err)
{
	Agent *agent = stream->agent;
	char sql[128];
	bool has, reset;
	char oldest[BK_BINLOG_FILE_NAME_MAX + 1];
	char newest[BK_BINLOG_FILE_NAME_MAX + 1];
	uint64_t heartbeat_ns = (uint64_t) dump_heartbeat_ms(agent) * 1000000;

	stream->conn = agent_connect(agent, err);
	if (stream->conn == NULL)
		return false;
	if (!check_server(stream, err))
		return false;
	if (!*positioned)
	{
		if (!stream_start_position(stream, err))
			return false;
		/* A file's first range carries the magic, from offset 0. */
		stream->range_start =
			stream->position.offset == 4 ? 0 : stream->position.offset;
		*positioned = true;
	}
	if (!server_has_file(stream, stream->position.file, &has, &reset, oldest,
						 newest, sizeof(newest), err))
		return false;
	if (!has && !check_server_basename(stream, newest, err))
		return false;
	if (!has && !reset && stream->len > 0 &&
		binlog_gtids_list_due(&stream->gtids))
	{
		/*
		 * The connection broke between the file's format description and
		 * its GTID list, and the file was purged before we were back: the
		 * range held for the list (range_flush) is the magic and the
		 * format description, no transaction, and the list will never
		 * come.  Nothing of the file reached the archive, so it is purged
		 * from its start, as below; waiting for it would wait forever.
		 */
		stream->len = 0;
		stream->range_events = 0;
		stream->range_start = 0;
		stream->position.offset = BK_BINLOG_MAGIC_LEN;
		binlog_gtids_file_ended(&stream->gtids);
	}
	if (stream->torn_file && has && stream->len == 0 &&
		bk_binlog_file_compare(newest, stream->position.file) > 0)
	{
		char next[BK_BINLOG_FILE_NAME_MAX + 1];

		/*
		 * The file ends in the middle of an event and the server writes a
		 * later one: the server stopped (crashed) while it wrote that
		 * event, whose transaction never committed (its binlog write did
		 * not complete), and it went on in a new file.  The file is
		 * archived up to its last whole event, as the stream of any file
		 * a crash left without ROTATE or STOP; the next file's GTID list
		 * (follow_gtids) says whether a transaction is missing after all.
		 */
		stream->torn_file = false;
		if (!next_file_name(stream->position.file, next, sizeof(next)))
			return bk_error_set(err, BK_ERR_INTERNAL,
								"cannot name the binlog file after \"%s\"",
								stream->position.file);
		agent_log("WARNING",
				  "binlog \"%s\" is cut short in the middle of an event at"
				  " offset %" PRIu64 " (the server crashed while it wrote"
				  " it): archived up to its last whole event; streaming"
				  " continues with \"%s\"",
				  stream->position.file, stream->position.offset, next);
		if (!stream_switch_file(stream, next, BK_BINLOG_MAGIC_LEN, err))
			return false;
		if (!server_has_file(stream, stream->position.file, &has, &reset,
							 oldest, newest, sizeof(newest), err))
			return false;
	}
	stream->torn_file = false;
	if (reset)
	{
		audit_reset(stream,
					"the server's newest binlog is older than the archive's:"
					" RESET MASTER reused the names",
					NULL);
		return bk_error_set(err, BK_ERR_CONFLICT,
							"the server's newest binlog \"%s\" comes before"
							" \"%s\", where the archive ends: RESET MASTER"
							" (or a new server) reused the binlog names",
							newest, stream->position.file) ||
			   bk_error_hint(err, SECOND_HISTORY_HINT);
	}
	if (!has && !reset && stream->len == 0 && !stream->file_closed &&
		oldest[0] != '\0' && file_follows(stream->position.file, oldest) &&
		stream->gtids.known == BINLOG_GTIDS_EXACT &&
		stream->purged_end.file[0] == '\0')
	{
		/*
		 * Purged before its end was archived, but the next file is still
		 * there: its GTID list is the server's account of everything it
		 * logged before it, and the archive knows exactly what it reached
		 * (every server's last GTID per domain), so that list names the
		 * transactions after the archive's end that are missing
		 * (follow_gtids).  It is a gap even when the list names none: an
		 * Incident event has no GTID.  Known only by each domain's newest
		 * GTID, another server's transactions could go unseen: a gap
		 * without the list, below.
		 */
		stream->purged_end = stream->position;
		stream->previous_end[0] = '\0'; /* gap-before= says it */
		agent_log("WARNING",
				  "binlog \"%s\", where the archive ends (offset %" PRIu64
				  "), is no longer on the server: streaming continues with"
				  " \"%s\", whose GTID list tells which transactions are"
				  " missing",
				  stream->position.file, stream->position.offset, oldest);
		bk_strlcpy(stream->position.file, oldest,
				   sizeof(stream->position.file));
		stream->position.offset = 4;
		stream->range_start = 0;
		stream->file_closed = false;
		has = true;
	}
	if (!has && !reset && stream->len == 0 && stream->file_closed &&
		oldest[0] != '\0' && file_follows(stream->position.file, oldest))
	{
		/*
		 * The file ended (ROTATE or STOP) and was archived to its end, and
		 * only then purged: nothing is missing.  Streaming goes on at the
		 * next file, whose GTID list follow_gtids checks against what the
		 * archive reached.
		 */
		agent_log("INFO",
				  "binlog \"%s\" was archived to its end before it was"
				  " purged; streaming continues with \"%s\"",
				  stream->position.file, oldest);
		note_previous_end(stream);
		bk_strlcpy(stream->position.file, oldest,
				   sizeof(stream->position.file));
		stream->position.offset = 4;
		stream->range_start = 0;
		stream->file_closed = false;
		has = true;
	}
	if (!has && stream->len == 0 && oldest[0] != '\0')
	{
		/*
		 * Purged before it was archived: the archive has a gap that no
		 * waiting can fill.  Say so everywhere, then archive what the server
		 * still has, so the next snapshot is covered again; bk list and bk
		 * verify show the gap (the missing file numbers).  A file purged
		 * after its predecessor was (the next file's list never came): the
		 * archive ends in that predecessor.
		 */
		report_purge_gap(stream,
						 stream->purged_end.file[0] != '\0'
							 ? &stream->purged_end
							 : &stream->position,
						 oldest, NULL);
		memset(&stream->purged_end, 0, sizeof(stream->purged_end));
		stream->previous_end[0] = '\0'; /* gap-before= says it */
		bk_strlcpy(stream->position.file, oldest,
				   sizeof(stream->position.file));
		stream->position.offset = 4;
		stream->range_start = 0;
		stream->file_closed = false;
		memset(&stream->gtid, 0, sizeof(stream->gtid));
		binlog_gtids_forget(&stream->gtids);
	}
	else if (!has)
		return bk_error_set(err, BK_ERR_NOT_FOUND,
							"the binlog file \"%s\" is not on the server",
							stream->position.file);
	else if (stream->position.offset > BK_BINLOG_MAGIC_LEN &&
			 stream->gtid.count > 0 && !check_resume_gtid(stream, err))
		return false;
	/* Inside a file: which file, by the format description it resends. */
	stream->file_id_due = stream->position.offset > BK_BINLOG_MAGIC_LEN;

	/*
	 * Capability 4: real GTID events; the checksum variable: the server
	 * sends events as they are in the file, checksums included.
	 */
	snprintf(sql, sizeof(sql), "SET @master_heartbeat_period = %" PRIu64,
			 heartbeat_ns);
	if (!agent_query(stream->conn, "SET @mariadb_slave_capability = 4", err) ||
		!agent_query(stream->conn,
					 "SET @master_binlog_checksum = @@global.binlog_checksum",
					 err) ||
		!agent_query(stream->conn, sql, err))
		return false;

	stream->rpl = mariadb_rpl_init(stream->conn);
	if (stream->rpl == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "mariadb_rpl_init failed");
	{
		const char *report_host = "bk-mysql-agent";
		unsigned int flags = MARIADB_RPL_BINLOG_SEND_ANNOTATE_ROWS;

		if (mariadb_rpl_optionsv(stream->rpl, MARIADB_RPL_FILENAME,
								 stream->position.file,
								 strlen(stream->position.file)) ||
			mariadb_rpl_optionsv(stream->rpl, MARIADB_RPL_START,
								 (unsigned long) stream->position.offset) ||
			mariadb_rpl_optionsv(stream->rpl, MARIADB_RPL_SERVER_ID,
								 agent->config.server_id) ||
			mariadb_rpl_optionsv(stream->rpl, MARIADB_RPL_FLAGS, flags) ||
			mariadb_rpl_optionsv(stream->rpl, MARIADB_RPL_HOST, report_host,
								 strlen(report_host)) ||
			mariadb_rpl_optionsv(stream->rpl, MARIADB_RPL_PORT, 0))
			return bk_error_set(err, BK_ERR_INTERNAL,
								"setting replication options: %s",
								mariadb_rpl_error(stream->rpl));
	}
	if (mariadb_rpl_open(stream->rpl) != 0)
		return bk_error_set(err, BK_ERR_IO,
							"starting the binlog dump at %s:%" PRIu64 ": %s",
							stream->position.file, stream->position.offset,
							mysql_error(stream->conn));
	set_status_streaming(stream, true);
	agent_log("INFO",
			  "streaming the binlog from %s:%" PRIu64 " as replica %" PRIu32,
			  stream->position.file, stream->position.offset,
			  agent->config.server_id);
	return true;
}

/*
 * stream_close
 *		Drop the connection (the pending range is kept: it is sent first).
 */
static void
stream_close(Stream *stream)
{
	/* A reconnection may skip a purged file: an answer counts only here. */
	probe_close(stream);
	stream->probe_pending = false;
	if (stream->rpl != NULL)
		mariadb_rpl_close(stream->rpl);
	stream->rpl = NULL;
	if (stream->conn != NULL)
		mysql_close(stream->conn);
	stream->conn = NULL;
	set_status_streaming(stream, false);
}

/*
 * stream_receive
 *		Read and handle events until stopped or an error.
 *
 *		The packets are read raw (mysql_net_read_packet), not through
 *		mariadb_rpl_fetch: that parses every event's body, and refuses
 *		valid events it does not know or misreads (a statement-logged LOAD
 *		DATA's Begin_load_query holds the file's raw bytes, which it reads
 *		as a string; Append_block, Delete_file and Incident it does not
 *		know at all), and the agent would fail at the same position for
 *		ever.  The agent only needs the common header, which stream_event
 *		parses, and checks positions and CRC-32s itself.  One packet is one
 *		event: a 0x00 byte, then the event as in the file (no semi-sync
 *		header: the agent never sets @rpl_semi_sync_slave); an EOF packet
 *		ends the stream; an error packet (0xFF) is the server's refusal,
 *		with its code and text in mysql_errno() and mysql_error().
 */
static bool
stream_receive(Stream *stream, BkError *err)
{
	BinlogPosition at;

	while (!agent_stop_requested)
	{
		unsigned long len = mysql_net_read_packet(stream->conn);
		const uint8_t *packet = stream->conn->net.read_pos;

		if (len == packet_error || (len < 9 && packet[0] == 0xFE))
		{
			unsigned int code =
				len == packet_error ? mysql_errno(stream->conn) : 0;

			/* CR_SERVER_GONE_ERROR, CR_SERVER_LOST, a shutdown or a kill */
			stream->lost_connection = code == 0 || code == 2006 ||
									  code == 2013 || code == 1053 ||
									  code == 1927;
			if (agent_stop_requested)
				break;
			/*
			 * A file that ends in the middle of an event: what a crash
			 * leaves when it stops the server while it writes (stream_open
			 * goes on with the next file, if there is one).
			 */
			stream->torn_file =
				code == 1236 &&
				strstr(mysql_error(stream->conn),
					   "truncated in the middle of event") != NULL;
			bk_error_set(
				err, BK_ERR_IO, "reading the binlog at %s:%" PRIu64 ": %s%s",
				stream->position.file, stream->position.offset,
				code ? mysql_error(stream->conn)
					 : "the server ended the stream",
				stream->torn_file ? " (a crash cut the file short)" : "");
			if (code != 1236 || stream->torn_file)
				return false;
			/*
			 * The server refuses to send the binlog from there: a file
			 * purged, or a binlog reset, between SHOW BINARY LOGS and the
			 * dump (the next attempt sees it by name), an event that fails
			 * its CRC check, an event larger than max_allowed_packet.  Its
			 * text says which; the rest is a guess, so it goes in the hint.
			 */
			audit_read_error(stream, &stream->position,
							 mysql_error(stream->conn));
			return bk_error_hint(
				err,
				"The server refused to send its binlog from there (error"
				" 1236), for the reason it gives.  A file purged or a binlog"
				" reset meanwhile is seen at the next attempt; a failed CRC"
				" check is a damaged binlog file: check it with"
				" mariadb-binlog --verify-binlog-checksum "
				"--start-position=%" PRIu64
				" %s.  The agent retries, less often each time.",
				stream->position.offset, stream->position.file);
		}
		if (len == 0 || packet[0] != 0x00)
			return bk_error_set(err, BK_ERR_FORMAT,
								"reading the binlog at %s:%" PRIu64
								": the server sent a packet of %lu bytes"
								" starting with 0x%02x, not an event",
								stream->position.file, stream->position.offset,
								len, len ? packet[0] : 0) ||
				   bk_error_hint(err, "The agent reconnects and asks for the"
									  " same position again; if this goes"
									  " on, report it with the server's"
									  " version.");
		at = stream->position;
		if (!stream_event(stream, packet + 1, len - 1, err))
		{
			unsigned int type = len > 5 ? packet[5] : 0;

			if (err->code != BK_ERR_FORMAT)
				return false;
			/* Where and what, before the check that failed. */
			bk_error_prefix(err,
							"reading the binlog at %s:%" PRIu64
							", a %s event (type %u): ",
							at.file, at.offset, event_type_name(type), type);
			audit_read_error(stream, &at, err->message);
			return bk_error_hint(
				err,
				"The agent archives nothing past an event it cannot check: it"
				" reconnects and reads it again, less often each time.  If"
				" this goes on, check the server's file there with"
				" mariadb-binlog --verify-binlog-checksum "
				"--start-position=%" PRIu64 " %s.",
				at.offset, at.file);
		}
		probe_reached(stream);
		/* A server never idle sends no heartbeat: ask it anyway. */
		probe_binlog_end(stream, false);
		if (stream->len > 0 &&
			bk_monotonic_ms() - stream->range_first_ms >=
				stream->agent->config.range_interval &&
			!range_flush(stream, true, err))
			return false;
	}
	return true;
}

/*
 * binlog_stream_run
 *		Stream until SIGTERM.  Connection and Kafka failures are retried with
 *		backoff; what cannot heal by waiting (a gap, a reset, a broken chain)
 *		is reported every time the agent tries again, never skipped.
 */
bool
binlog_stream_run(Agent *agent, BkError *err)
{
	Stream stream;
	bool have_position = false;
	int64_t backoff_ms = 1000;
	BinlogPosition failed_at; /* where the previous attempt failed */
	bool ok = true;

	memset(&failed_at, 0, sizeof(failed_at));

	memset(&stream, 0, sizeof(stream));
	stream.agent = agent;
	stream.checksum_alg = BK_BINLOG_CHECKSUM_OFF;
	while (!agent_stop_requested)
	{
		BkError step;
		int64_t opened_ms = 0;

		bk_error_clear(&step);
		stream.lost_connection = false;
		if (stream_open(&stream, &have_position, &step))
		{
			opened_ms = bk_monotonic_ms();
			if (stream_receive(&stream, &step))
				break;
		}
		stream_close(&stream);
		if (agent_stop_requested)
			break;
		/*
		 * The backoff starts again at 1 s when the stream got somewhere:
		 * past where it failed before, or streaming a while.  A failure
		 * at the same position again and again (a refusal, an event that
		 * cannot be read) heals only by someone's action, not by retrying
		 * every second: that backoff grows, up to AGENT_RETRY_MAX_MS.
		 */
		if (opened_ms != 0 &&
			(strcmp(stream.position.file, failed_at.file) != 0 ||
			 stream.position.offset != failed_at.offset ||
			 bk_monotonic_ms() - opened_ms >= AGENT_RETRY_MAX_MS))
			backoff_ms = 1000;
		failed_at = stream.position;
		if (step.code == BK_ERR_IO && stream.lost_connection)
		{
			/*
			 * A restart or shutdown of the server (its dump thread goes
			 * before it sends the STOP event; the agent reads it on
			 * reconnecting): a warning.  If the server stays away, the
			 * failed connections are errors.
			 */
			agent_log(
				"WARNING",
				"the server closed the replication connection at %s:%" PRIu64
				" (%s); reconnecting",
				stream.position.file, stream.position.offset, step.message);
		}
		else
			agent_report_error(agent, &step);

		/* The events received stay valid: send them before reconnecting. */
		if (!range_flush(&stream, true, &step))
			continue;
		agent_log("INFO", "retrying in %" PRId64 " ms", backoff_ms);
		for (int64_t waited = 0; waited < backoff_ms && !agent_stop_requested;
			 waited += 100)
			usleep(100 * 1000);
		backoff_ms = backoff_ms * 2 > AGENT_RETRY_MAX_MS ? AGENT_RETRY_MAX_MS
														 : backoff_ms * 2;
	}

	/* Clean stop: what was received goes out before the agent exits. */
	stream_close(&stream);
	if (stream.len > 0)
	{
		stream.final_flush = true;
		ok = range_flush(&stream, false, err);
		if (!ok)
			bk_error_hint(err, "The range is streamed again at the next"
							   " start: nothing is lost.");
	}
	bk_encoder_free(stream.encoder);
	free(stream.buf);
	return ok;
}
