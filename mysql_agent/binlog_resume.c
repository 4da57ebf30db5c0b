/*
 * binlog_resume.c
 *		Where the archive of the binlog ends: recovered from Kafka.
 *
 * A range counts as archived once Kafka acknowledged it, so the position to
 * resume from is the end of the newest range of this source in the binlog
 * topic.  The agent reads it back from the tail of every partition, and the
 * newest range of all wins: a source's ranges go to the partition its id
 * maps to, and after partitions are added to the topic its later ranges may
 * go to another (each range stays whole in one).  In each partition, a
 * window of the newest messages first, widened until a range of the source
 * turns up or the partition's start is reached.  A range counts only when every chunk
 * of one attempt of it was read, in order: its last chunk alone is not
 * enough.  An idempotent producer keeps Kafka's order, but does not promise
 * that a chunk whose delivery failed (a timeout, a permanent error) is not
 * followed by later chunks that were delivered; an agent stopped before its
 * retry sent the range again would otherwise resume after a range the
 * shipper can never assemble, and the archive would have a hole there.
 * Each window reaches up to the partition's end, so a range whose chunks
 * straddle two windows is read whole in the wider one.  Frames are read
 * without a key (the agent has only the public key): name and metadata are
 * in the frame header.
 *
 * The local state file (state_dir/binlog.position) is a hint only: it can
 * say that Kafka lost messages (retention, a recreated topic), never decide
 * alone where to resume when Kafka knows.  It keeps, like the ranges, which
 * file of its name the position is in and the GTID state there, so that a
 * resume from it is checked as one from Kafka; and the source id it was
 * written for, since it says nothing of another source's archive (the way
 * out of a reset binlog is a new source_id, in the same state_dir).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <librdkafka/rdkafka.h>

#include "agent.h"
#include "bk_util.h"

#define RESUME_WINDOW_FIRST 512
#define STATE_FILE_NAME     "binlog.position"
#define RESUME_ATTEMPTS                                                        \
	16 /* attempts followed at once (one sends at a
								* time; older ones are given up) */

/* An attempt of a range, as its chunks are read. */
typedef struct ResumeAttempt
{
	uint8_t id[BK_ATTEMPT_ID_LEN];
	uint32_t next_index; /* the chunk expected next; UINT32_MAX: broken */
	bool used;
} ResumeAttempt;

typedef struct ResumeScan
{
	BkKafkaLogSink sink; /* first: the consumer's opaque (bk_kafka.h) */
	const char *source;
	bool found;
	BinlogPosition position;
	char gtid[BK_BINLOG_GTID_STATE_MAX];
	char gtid_list[BK_FRAME_META_MAX + 1];
	bool has_gtid_list; /* a range of an older agent has none */
	char next_file[BK_BINLOG_FILE_NAME_MAX + 1]; /* closed=rotate: next-file */
	bool closed; /* the range ends its file (ROTATE or STOP) */
	char file_created[BINLOG_FILE_ID_TEXT_MAX + 1]; /* "": older agent */
	/* The range's whole metadata: the transaction it ends inside, if any. */
	char meta[BK_FRAME_META_MAX + 1];
	size_t meta_len;
	ResumeAttempt attempts[RESUME_ATTEMPTS];
	int attempt_next; /* the slot a new attempt takes */
} ResumeScan;

/*
 * position_after
 *		Is (file, offset) later than position?
 */
static bool
position_after(const char *file, uint64_t offset,
			   const BinlogPosition *position)
{
	int order = bk_binlog_file_compare(file, position->file);

	return order > 0 || (order == 0 && offset > position->offset);
}

/*
 * attempt_complete
 *		Follow the chunks of frame's attempt; true when frame is the last
 *		chunk and every chunk before it was read, in order.
 */
static bool
attempt_complete(ResumeScan *scan, const BkFrame *frame)
{
	ResumeAttempt *attempt = NULL;

	for (int idx = 0; idx < RESUME_ATTEMPTS; idx++)
		if (scan->attempts[idx].used &&
			memcmp(scan->attempts[idx].id, frame->attempt_id,
				   BK_ATTEMPT_ID_LEN) == 0)
			attempt = &scan->attempts[idx];
	if (frame->chunk_index == 0)
	{
		if (attempt == NULL)
		{
			attempt = &scan->attempts[scan->attempt_next];
			scan->attempt_next = (scan->attempt_next + 1) % RESUME_ATTEMPTS;
			memcpy(attempt->id, frame->attempt_id, BK_ATTEMPT_ID_LEN);
			attempt->used = true;
		}
		attempt->next_index = 1;
	}
	else if (attempt == NULL)
		return false; /* its chunk 0 is before the window */
	else if (attempt->next_index == frame->chunk_index)
		attempt->next_index++;
	else
		attempt->next_index = UINT32_MAX; /* a chunk missing */
	return frame->chunk_index + 1 == frame->chunk_count &&
		   attempt->next_index == frame->chunk_count;
}

/*
 * scan_message
 *		Keep the message if it completes a newer range of ours.
 */
static void
scan_message(ResumeScan *scan, const rd_kafka_message_t *message)
{
	BkFrame frame;
	BkError err;
	char file[BK_BINLOG_FILE_NAME_MAX + 1];
	char name[BK_OBJECT_NAME_MAX + 1];
	char gtid[BK_BINLOG_GTID_STATE_MAX];
	uint64_t start, end;

	if (message->len == 0 ||
		!bk_frame_parse_header(message->payload, message->len, &frame, &err))
		return;
	if (frame.kind != BK_KIND_BINLOG ||
		frame.source_len != strlen(scan->source) ||
		memcmp(frame.source, scan->source, frame.source_len) != 0 ||
		!attempt_complete(scan, &frame) || frame.name_len >= sizeof(name))
		return;
	memcpy(name, frame.name, frame.name_len);
	name[frame.name_len] = '\0';
	if (!bk_binlog_range_parse(name, file, sizeof(file), &start, &end))
		return;
	if (scan->found && !position_after(file, end, &scan->position))
		return;
	if (!bk_meta_get(frame.meta, frame.meta_len, "gtid", gtid, sizeof(gtid)))
		gtid[0] = '\0';
	scan->found = true;
	bk_strlcpy(scan->position.file, file, sizeof(scan->position.file));
	scan->position.offset = end;
	bk_strlcpy(scan->gtid, gtid, sizeof(scan->gtid));
	scan->has_gtid_list = bk_meta_get(frame.meta, frame.meta_len, "gtid-list",
									  scan->gtid_list, sizeof(scan->gtid_list));
	{
		char closed[16];

		scan->closed = bk_meta_get(frame.meta, frame.meta_len, "closed", closed,
								   sizeof(closed)) &&
					   closed[0] != '\0';
	}
	if (!bk_meta_get(frame.meta, frame.meta_len, "file-created",
					 scan->file_created, sizeof(scan->file_created)))
		scan->file_created[0] = '\0';
	scan->meta_len = frame.meta_len < sizeof(scan->meta) ? frame.meta_len : 0;
	memcpy(scan->meta, frame.meta, scan->meta_len);
	if (!bk_meta_get(frame.meta, frame.meta_len, "next-file", scan->next_file,
					 sizeof(scan->next_file)) ||
		!bk_binlog_file_name_valid(scan->next_file))
		scan->next_file[0] = '\0';
}

/*
 * scan_partition
 *		Read [from, to) of one partition into the scan.
 */
static bool
scan_partition(rd_kafka_t *rk, const char *topic, int32_t partition,
			   int64_t from, int64_t to, ResumeScan *scan, int timeout_ms,
			   BkError *err)
{
	rd_kafka_topic_partition_list_t *parts;
	rd_kafka_resp_err_t kerr;
	int64_t deadline = bk_monotonic_ms() + timeout_ms;
	int64_t next = from;

	parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(parts, topic, partition)->offset = from;
	kerr = rd_kafka_assign(rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
		return bk_error_set(err, BK_ERR_KAFKA,
							"could not read partition %" PRId32
							" of Kafka topic \"%s\": %s",
							partition, topic, rd_kafka_err2str(kerr));
	while (next < to)
	{
		rd_kafka_message_t *message = rd_kafka_consumer_poll(rk, 200);

		if (agent_stop_requested)
		{
			if (message)
				rd_kafka_message_destroy(message);
			rd_kafka_assign(rk, NULL);
			return bk_error_set(err, BK_ERR_INTERRUPTED, "stopped");
		}
		if (message == NULL)
		{
			if (bk_monotonic_ms() > deadline)
			{
				rd_kafka_assign(rk, NULL);
				return bk_error_set(err, BK_ERR_TIMEOUT,
									"reading partition %" PRId32
									" of Kafka topic \"%s\" stalled at offset"
									" %" PRId64 " of %" PRId64,
									partition, topic, next, to) ||
					   bk_error_hint(err, "Check that Kafka is up; the agent"
										  " tries again.");
			}
			continue;
		}
		if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
			{
				rd_kafka_message_destroy(message);
				break;
			}
			bk_error_set(err, BK_ERR_KAFKA,
						 "reading partition %" PRId32 " of Kafka topic \"%s\":"
						 " %s",
						 partition, topic, rd_kafka_message_errstr(message));
			rd_kafka_message_destroy(message);
			rd_kafka_assign(rk, NULL);
			return false;
		}
		deadline = bk_monotonic_ms() + timeout_ms;
		if (message->partition == partition && message->offset < to)
			scan_message(scan, message);
		next = message->offset + 1;
		rd_kafka_message_destroy(message);
	}
	rd_kafka_assign(rk, NULL);
	return true;
}

/*
 * binlog_resume_from_kafka
 *		The end of the newest range of this source in the binlog topic.
 */
bool
binlog_resume_from_kafka(Agent *agent, BinlogPosition *position,
						 BinlogPosition *rotated_from, BkGtidState *gtid,
						 BinlogGtids *gtids, BkBinlogTxn *txn,
						 BinlogFileId *file_id, bool *closed, bool *found,
						 BkError *err)
{
	static const char *const consumer_properties[] = {
		"group.id",
		"bk-mysql-agent-resume",
		"enable.auto.commit",
		"false",
		"enable.auto.offset.store",
		"false",
		"enable.partition.eof",
		"true",
		"isolation.level",
		"read_uncommitted",
		NULL};
	BkKafkaSettings settings;
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	const rd_kafka_metadata_t *metadata = NULL;
	rd_kafka_topic_t *rkt;
	rd_kafka_resp_err_t kerr;
	char errstr[512];
	ResumeScan scan;
	int timeout_ms;
	bool ok = true;

	*found = false;
	*closed = false;
	memset(txn, 0, sizeof(*txn));
	memset(file_id, 0, sizeof(*file_id));
	memset(rotated_from, 0, sizeof(*rotated_from));
	memset(&scan, 0, sizeof(scan));
	scan.source = agent->config.source_id;
	bk_cli_kafka_settings(&agent->config.common, &settings, AGENT_PROGRAM);
	timeout_ms = settings.timeout_ms > 0 ? settings.timeout_ms
										 : BK_KAFKA_TIMEOUT_DEFAULT_MS;
	conf = bk_kafka_conf_new(&settings, err);
	if (conf == NULL)
		return false;
	for (int idx = 0; consumer_properties[idx] != NULL; idx += 2)
		if (rd_kafka_conf_set(conf, consumer_properties[idx],
							  consumer_properties[idx + 1], errstr,
							  sizeof(errstr)) != RD_KAFKA_CONF_OK)
		{
			rd_kafka_conf_destroy(conf);
			return bk_error_set(err, BK_ERR_CONFIG, "Kafka property \"%s\": %s",
								consumer_properties[idx], errstr);
		}
	rd_kafka_conf_set_opaque(conf, &scan);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		return bk_error_set(err, BK_ERR_KAFKA,
							"could not create a Kafka consumer: %s", errstr);
	}
	bk_kafka_route_logs(rk);

	rkt = rd_kafka_topic_new(rk, agent->binlog_topic, NULL);
	kerr = rd_kafka_metadata(rk, 0, rkt, &metadata, timeout_ms);
	rd_kafka_topic_destroy(rkt);
	if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR || metadata->topic_cnt != 1 ||
		metadata->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR)
			kerr = metadata->topic_cnt == 1
					   ? metadata->topics[0].err
					   : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
		bk_error_set(err, BK_ERR_KAFKA,
					 "could not read the partitions of Kafka topic \"%s\": %s",
					 agent->binlog_topic, rd_kafka_err2str(kerr));
		bk_error_hint(err, "Check that Kafka is up; create the topics with"
						   " \"bk init\".");
		ok = false;
	}

	for (int idx = 0; ok && idx < metadata->topics[0].partition_cnt; idx++)
	{
		int32_t partition = metadata->topics[0].partitions[idx].id;
		int64_t low, high;
		int64_t window = RESUME_WINDOW_FIRST;
		int64_t scanned_from;

		kerr = rd_kafka_query_watermark_offsets(
			rk, agent->binlog_topic, partition, &low, &high, timeout_ms);
		if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			ok = bk_error_set(err, BK_ERR_KAFKA,
							  "could not read the offsets of partition %" PRId32
							  " of Kafka topic \"%s\": %s",
							  partition, agent->binlog_topic,
							  rd_kafka_err2str(kerr));
			break;
		}
		scanned_from = high;
		while (ok && scanned_from > low)
		{
			int64_t from =
				scanned_from - window > low ? scanned_from - window : low;
			ResumeScan window_scan;

			memset(&window_scan, 0, sizeof(window_scan));
			window_scan.source = scan.source;
			/* To the end: a range cut by the last window is read whole. */
			ok = scan_partition(rk, agent->binlog_topic, partition, from, high,
								&window_scan, timeout_ms, err);
			if (ok && window_scan.found)
			{
				/* The newest window that holds one of ours has the newest. */
				if (!scan.found ||
					position_after(window_scan.position.file,
								   window_scan.position.offset, &scan.position))
				{
					scan.position = window_scan.position;
					bk_strlcpy(scan.gtid, window_scan.gtid, sizeof(scan.gtid));
					bk_strlcpy(scan.gtid_list, window_scan.gtid_list,
							   sizeof(scan.gtid_list));
					scan.has_gtid_list = window_scan.has_gtid_list;
					bk_strlcpy(scan.next_file, window_scan.next_file,
							   sizeof(scan.next_file));
					scan.closed = window_scan.closed;
					bk_strlcpy(scan.file_created, window_scan.file_created,
							   sizeof(scan.file_created));
					memcpy(scan.meta, window_scan.meta, window_scan.meta_len);
					scan.meta_len = window_scan.meta_len;
				}
				scan.found = true;
				break;
			}
			scanned_from = from;
			window *= 8;
		}
	}
	if (metadata != NULL)
		rd_kafka_metadata_destroy(metadata);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	if (!ok)
		return false;
	if (scan.found)
	{
		*position = scan.position;
		/*
		 * The newest range ends with the file's ROTATE: the archive of that
		 * file is complete, and the next byte to archive is the start of the
		 * file it names.  Resuming at the old file's end instead, the agent
		 * could not tell the server's move to the next file from a file a
		 * crash left without ROTATE, and reported a false
		 * binlog-unclosed-file.
		 */
		*closed = scan.closed;
		/*
		 * Which file of that name the archive ends in, for a resume inside
		 * it (ranges of older agents do not say: unknown).  A file the
		 * ROTATE named starts afresh, at its start.
		 */
		if (scan.file_created[0] != '\0' &&
			!binlog_file_id_parse(scan.file_created, file_id))
			agent_log("WARNING",
					  "the newest range in Kafka has a file-created= bk"
					  " cannot read (\"%s\"): the binlog file is checked by"
					  " its GTID state only",
					  scan.file_created);
		if (scan.next_file[0] != '\0')
		{
			memset(file_id, 0, sizeof(*file_id));
			*rotated_from = scan.position;
			bk_strlcpy(position->file, scan.next_file, sizeof(position->file));
			position->offset = 4;
			*closed = false; /* the next file has just begun */
		}
		if (!bk_gtid_state_parse(scan.gtid, gtid, err))
			return bk_error_prefix(err, "the newest range in Kafka: ");
		/*
		 * The next file's GTID list is checked against what the archive
		 * reached: restored here, not rebuilt from the next list (taking
		 * it unchecked would miss the gap a RESET MASTER while the agent
		 * was down leaves at exactly this point, the next file's start).
		 * Exactly when the range carries every server's last GTID; else
		 * each domain's newest only, which can miss another server's
		 * transaction but reports none missing that is not.
		 */
		binlog_gtids_from_newest(gtids, gtid);
		if (scan.has_gtid_list)
		{
			BkError list_err;

			if (!binlog_gtids_from_text(gtids, scan.gtid_list, &list_err))
				agent_log("WARNING",
						  "the newest range in Kafka has a gtid-list= bk"
						  " cannot read (%s): the next binlog file's GTID"
						  " list is checked against each domain's newest"
						  " GTID only",
						  list_err.message);
		}
		/*
		 * The range ends inside a transaction: its GTID is reached only
		 * when its end is streamed.  A crash of the server while the agent
		 * was down cuts it, and the next file's list does not name it: the
		 * next file's start takes it back (binlog_gtids_resume_open).
		 */
		{
			BkError open_err;

			if (!binlog_gtids_resume_open(gtids, txn, scan.meta, scan.meta_len,
										  &open_err))
				agent_log("WARNING",
						  "the newest range in Kafka ends inside a"
						  " transaction bk cannot read (%s): if the server"
						  " rolled it back, the next binlog file's GTID list"
						  " is reported as a gap",
						  open_err.message);
		}
		*found = true;
	}
	return true;
}

/*
 * state_path
 *		state_dir/binlog.position
 */
static bool
state_path(Agent *agent, char *path, size_t len, BkError *err)
{
	int n =
		snprintf(path, len, "%s/%s", agent->config.state_dir, STATE_FILE_NAME);

	if (n < 0 || (size_t) n >= len)
		return bk_error_set(err, BK_ERR_CONFIG, "state_dir \"%s\" is too long",
							agent->config.state_dir);
	return true;
}

/*
 * state_parse
 *		"file offset[ source=ID][ file-created=ID][ gtid=STATE]
 *		[ open-...=V...]\n": binlog_state_write's line (an older agent's has
 *		the position only, or no source).  source gets the source id, ""
 *		when the line has none.  The open-* keys (the transaction the
 *		position is inside, as a range's metadata says it) go to open as
 *		metadata lines, "\nkey=V".  False if it is not one.
 */
static bool
state_parse(const char *data, BinlogPosition *position, BinlogFileId *file_id,
			BkGtidState *gtid, char *source, size_t source_len, char *open,
			size_t open_len)
{
	char file[BK_BINLOG_FILE_NAME_MAX + 1];
	unsigned long long offset;
	int used = 0;
	const char *p;

	memset(file_id, 0, sizeof(*file_id));
	memset(gtid, 0, sizeof(*gtid));
	source[0] = '\0';
	open[0] = '\0';
	if (sscanf(data, "%255s %llu%n", file, &offset, &used) != 2 ||
		!bk_binlog_file_name_valid(file) || offset > UINT32_MAX)
		return false;
	p = data + used;
	while (*p == ' ')
	{
		char token[BK_BINLOG_GTID_STATE_MAX + 32];
		size_t token_len = strcspn(p + 1, " \n");
		BkError err;

		if (token_len >= sizeof(token))
			return false;
		memcpy(token, p + 1, token_len);
		token[token_len] = '\0';
		if (strncmp(token, "file-created=", 13) == 0)
		{
			if (!binlog_file_id_parse(token + 13, file_id))
				return false;
		}
		else if (strncmp(token, "gtid=", 5) == 0)
		{
			if (!bk_gtid_state_parse(token + 5, gtid, &err))
				return false;
		}
		else if (strncmp(token, "source=", 7) == 0)
		{
			if (!bk_source_id_valid(token + 7, strlen(token + 7)) ||
				strlen(token + 7) >= source_len)
				return false;
			bk_strlcpy(source, token + 7, source_len);
		}
		else if (strncmp(token, "open-", 5) == 0)
		{
			size_t used_open = strlen(open);

			if (strchr(token, '=') == NULL ||
				used_open + 1 + token_len >= open_len)
				return false;
			snprintf(open + used_open, open_len - used_open, "\n%s", token);
		}
		/* else: a key of a later agent */
		p += 1 + token_len;
	}
	if (*p != '\n' && *p != '\0')
		return false;
	bk_strlcpy(position->file, file, sizeof(position->file));
	position->offset = offset;
	return true;
}

/*
 * binlog_state_read
 *		The position the agent last saw acknowledged, which file of that
 *		name it was in (unknown: file_id->known false), the GTID state
 *		there (empty when unknown) and the transaction it is inside, as
 *		metadata lines for binlog_gtids_resume_open (empty when none).  A
 *		state written for another source id is not found: that source's
 *		position says nothing of this one's archive, which starts empty.
 */
bool
binlog_state_read(Agent *agent, BinlogPosition *position, BinlogFileId *file_id,
				  BkGtidState *gtid, char *open, size_t open_len, bool *found,
				  BkError *err)
{
	char path[4096];
	char *data = NULL;
	size_t len = 0;
	char source[BK_SOURCE_ID_MAX + 1];

	*found = false;
	open[0] = '\0';
	if (!state_path(agent, path, sizeof(path), err))
		return false;
	if (!bk_read_file(path, 2 * BK_BINLOG_GTID_STATE_MAX, &data, &len, err))
	{
		if (err->code == BK_ERR_NOT_FOUND)
		{
			bk_error_clear(err);
			return true;
		}
		return false;
	}
	if (!state_parse(data, position, file_id, gtid, source, sizeof(source),
					 open, open_len))
	{
		free(data);
		return bk_error_set(err, BK_ERR_FORMAT,
							"\"%s\" is not a binlog position (file offset);"
							" remove it: the agent finds its position in Kafka",
							path);
	}
	free(data);
	if (source[0] != '\0' && agent->config.source_id != NULL &&
		strcmp(source, agent->config.source_id) != 0)
	{
		agent_log("INFO",
				  "\"%s\" is the position of source \"%s\", not of \"%s\":"
				  " not used (it is replaced once this source's first range"
				  " is acknowledged)",
				  path, source, agent->config.source_id);
		open[0] = '\0';
		return true;
	}
	*found = true;
	return true;
}

/*
 * binlog_state_write
 *		Remember position as acknowledged (durably, replacing the last), with
 *		which file of that name it is in and the GTID state there: resuming
 *		from this file alone, the agent checks the server's file by them.
 *		open (binlog_gtids_open_meta's lines, "" when none) is the
 *		transaction the position is inside: an agent resuming from this
 *		file alone takes its GTID back if the server's next file starts
 *		first, as one resuming from the range's metadata does.
 */
bool
binlog_state_write(Agent *agent, const BinlogPosition *position,
				   const BinlogFileId *file_id, const BkGtidState *gtid,
				   const char *open, BkError *err)
{
	char path[4096];
	char line[BK_BINLOG_FILE_NAME_MAX + BK_SOURCE_ID_MAX +
			  BK_BINLOG_GTID_STATE_MAX + BINLOG_OPEN_META_MAX + 104];
	char id[BINLOG_FILE_ID_TEXT_MAX + 1];
	char state[BK_BINLOG_GTID_STATE_MAX];
	int n;

	if (!state_path(agent, path, sizeof(path), err))
		return false;
	n = snprintf(line, sizeof(line), "%s %" PRIu64, position->file,
				 position->offset);
	if (agent->config.source_id != NULL)
		n += snprintf(line + n, sizeof(line) - (size_t) n, " source=%s",
					  agent->config.source_id);
	if (binlog_file_id_format(file_id, id, sizeof(id)))
		n += snprintf(line + n, sizeof(line) - (size_t) n, " file-created=%s",
					  id);
	if (bk_gtid_state_format(gtid, state, sizeof(state)) && state[0] != '\0' &&
		(size_t) n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t) n, " gtid=%s", state);
	/* One key a line there, one a word here. */
	for (const char *key = open;
		 key != NULL && *key == '\n' && n > 0 && (size_t) n < sizeof(line);
		 key = strchr(key + 1, '\n'))
		n += snprintf(line + n, sizeof(line) - (size_t) n, " %.*s",
					  (int) strcspn(key + 1, "\n"), key + 1);
	if (n <= 0 || (size_t) n + 1 >= sizeof(line))
		return bk_error_set(err, BK_ERR_INTERNAL,
							"the binlog position is too long for \"%s\"", path);
	line[n++] = '\n';
	line[n] = '\0';
	if (bk_write_file_durable(path, line, (size_t) n, 0600, err))
		return true;
	/*
	 * The bare "could not write" of a full or read-only state_dir read as
	 * if archiving had failed: say that it goes on, and what to fix.
	 */
	bk_error_prefix(err, "could not save the archived binlog position in"
						 " state_dir: ");
	return bk_error_hint(err,
						 "Archiving goes on: Kafka holds the position, and"
						 " this file is only a hint the agent checks Kafka"
						 " against when it starts.  Make room in state_dir"
						 " \"%s\" (or make it writable); the agent saves the"
						 " position again with the next range.",
						 agent->config.state_dir);
}
