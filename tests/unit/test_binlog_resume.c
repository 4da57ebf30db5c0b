/*
 * test_binlog_resume.c
 *		Where the agent resumes the binlog: the scan of the binlog topic
 *		(mysql_agent/binlog_resume.c, compiled in) counts a range only
 *		when every chunk of one attempt of it was read, and takes which file
 *		of its name the archive ends in from it; the local state file.
 *
 * The messages are handed to the scan as the consumer hands them (payload
 * and length); the frames are real, encoded with a test key.
 */
#include "testutil.h"

#include "../../mysql_agent/binlog_resume.c"

#define SOURCE "test-db"
#define CHUNK  BK_CHUNK_SIZE_MIN

/* What binlog_resume.c needs of the agent around it. */
volatile sig_atomic_t agent_stop_requested;

void
agent_log(const char *level, const char *fmt, ...)
{
	va_list args;

	fprintf(stderr, "%s: ", level);
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fputc('\n', stderr);
}

/* The frames of range [start, end) of mariadb-bin.000001, in chunks. */
static void
encode_range_meta(const BkKey *key, uint64_t start, uint64_t end, int chunks,
				  const char *meta, FrameList *frames)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	size_t size = (size_t) CHUNK * (size_t) (chunks - 1) + 100;
	uint8_t *data = malloc(size);
	BkObjectInfo info = {.kind = BK_KIND_BINLOG,
						 .source_id = SOURCE,
						 .name = name,
						 .meta = meta,
						 .size = size};

	assert_true(bk_binlog_range_name("mariadb-bin.000001", start, end, name,
									 sizeof(name)));
	test_fill(data, size, start, false);
	test_encode_object(key, CHUNK, &info, data, frames);
	assert_int_equal(frames->count, chunks);
	free(data);
}

static void
encode_range(const BkKey *key, uint64_t start, uint64_t end, int chunks,
			 FrameList *frames)
{
	encode_range_meta(key, start, end, chunks, "gtid=0-1-5", frames);
}

static void
feed(ResumeScan *scan, const FrameList *frames, int skip)
{
	for (int frameIdx = 0; frameIdx < frames->count; frameIdx++)
	{
		rd_kafka_message_t message;

		if (frameIdx == skip)
			continue;
		memset(&message, 0, sizeof(message));
		message.payload = frames->data[frameIdx];
		message.len = frames->len[frameIdx];
		scan_message(scan, &message);
	}
}

/*
 * A range whose last chunk is in Kafka without one before it (a delivery
 * that failed while later chunks got through, and an agent stopped before
 * its retry) is not where the archive ends: the scan resumes after the
 * range before it, so the range is sent again.  A later attempt of the same
 * range, whole, counts.
 */
static void
test_range_with_missing_chunk(void **state)
{
	BkKey key;
	BkKeyring ring;
	FrameList first, second, again;
	ResumeScan scan;

	test_key(&key, &ring);
	encode_range(&key, 4, 1000, 2, &first);
	encode_range(&key, 1000, 5000, 3, &second);
	encode_range(&key, 1000, 5000, 3, &again);

	memset(&scan, 0, sizeof(scan));
	scan.source = SOURCE;
	feed(&scan, &first, -1);
	feed(&scan, &second, 1); /* its chunk 1 never reached Kafka */
	assert_true(scan.found);
	assert_string_equal(scan.position.file, "mariadb-bin.000001");
	assert_int_equal(scan.position.offset, 1000);

	feed(&scan, &again, -1);
	assert_int_equal(scan.position.offset, 5000);

	test_frames_free(&first);
	test_frames_free(&second);
	test_frames_free(&again);
}

/*
 * A range whose first chunks are before the window read is not taken on
 * its last chunk alone; nor is one whose chunks come out of order.
 */
static void
test_range_cut_by_window(void **state)
{
	BkKey key;
	BkKeyring ring;
	FrameList range;
	ResumeScan scan;
	rd_kafka_message_t message;

	test_key(&key, &ring);
	encode_range(&key, 4, 1000, 3, &range);

	memset(&scan, 0, sizeof(scan));
	scan.source = SOURCE;
	feed(&scan, &range, 0); /* the window starts after chunk 0 */
	assert_false(scan.found);

	memset(&scan, 0, sizeof(scan));
	scan.source = SOURCE;
	for (int frameIdx = 0; frameIdx < 3; frameIdx++)
	{
		int order[3] = {0, 2, 1};

		memset(&message, 0, sizeof(message));
		message.payload = range.data[order[frameIdx]];
		message.len = range.len[order[frameIdx]];
		scan_message(&scan, &message);
	}
	assert_false(scan.found);

	/* Whole and in order: found. */
	memset(&scan, 0, sizeof(scan));
	scan.source = SOURCE;
	feed(&scan, &range, -1);
	assert_true(scan.found);
	assert_int_equal(scan.position.offset, 1000);
	test_frames_free(&range);
}

/*
 * Which file of its name the archive ends in: the newest range's
 * file-created=, and none when that range is an older agent's (not the
 * value of a range before it).
 */
static void
test_range_file_created(void **state)
{
	BkKey key;
	BkKeyring ring;
	FrameList with, older;
	ResumeScan scan;

	test_key(&key, &ring);
	encode_range_meta(&key, 4, 1000, 1, "gtid=0-1-5\nfile-created=1764000000:1",
					  &with);
	encode_range_meta(&key, 1000, 2000, 1, "gtid=0-1-6", &older);

	memset(&scan, 0, sizeof(scan));
	scan.source = SOURCE;
	feed(&scan, &with, -1);
	assert_true(scan.found);
	assert_string_equal(scan.file_created, "1764000000:1");
	feed(&scan, &older, -1);
	assert_int_equal(scan.position.offset, 2000);
	assert_string_equal(scan.file_created, "");
	test_frames_free(&with);
	test_frames_free(&older);
}

/*
 * The local state file: the position, which file of its name, the GTID
 * state there; an older agent's (the position alone) still read, with
 * neither known, so that the resume refuses to go on inside that file
 * unchecked.
 */
static void
test_state_file(void **state)
{
	Agent agent;
	BinlogPosition position = {.file = "mariadb-bin.000001", .offset = 7920};
	BinlogPosition read;
	BinlogFileId id = {.known = true, .created = 1764000000, .server_id = 1};
	BinlogFileId read_id;
	BkGtidState gtid, read_gtid;
	BkError err;
	bool found;
	char open[BINLOG_OPEN_META_MAX];
	char path[4096];
	char *data;
	size_t len;
	char source[BK_SOURCE_ID_MAX + 1];

	memset(&agent, 0, sizeof(agent));
	agent.config.state_dir = test_mkdtemp();
	assert_true(bk_gtid_state_parse("0-1-30,1-2-3", &gtid, &err));

	assert_true(binlog_state_read(&agent, &read, &read_id, &read_gtid, open,
								  sizeof(open), &found, &err));
	assert_false(found);

	assert_true(binlog_state_write(&agent, &position, &id, &gtid, "", &err));
	snprintf(path, sizeof(path), "%s/binlog.position", agent.config.state_dir);
	assert_true(bk_read_file(path, 8192, &data, &len, &err));
	assert_string_equal(
		data, "mariadb-bin.000001 7920 file-created=1764000000:1 gtid=0-1-30,"
			  "1-2-3\n");
	free(data);
	assert_true(binlog_state_read(&agent, &read, &read_id, &read_gtid, open,
								  sizeof(open), &found, &err));
	assert_true(found);
	assert_string_equal(read.file, "mariadb-bin.000001");
	assert_int_equal(read.offset, 7920);
	assert_true(read_id.known);
	assert_int_equal(read_id.created, 1764000000);
	assert_int_equal(read_id.server_id, 1);
	assert_int_equal(read_gtid.count, 2);

	/* Neither known (a fresh file, no GTID yet): the position alone. */
	memset(&id, 0, sizeof(id));
	memset(&gtid, 0, sizeof(gtid));
	assert_true(binlog_state_write(&agent, &position, &id, &gtid, "", &err));
	assert_true(bk_read_file(path, 8192, &data, &len, &err));
	assert_string_equal(data, "mariadb-bin.000001 7920\n");
	free(data);

	/* An older agent's line, and a later agent's key: read. */
	assert_true(state_parse("mariadb-bin.000002 120\n", &read, &read_id,
							&read_gtid, source, sizeof(source), open,
							sizeof(open)));
	assert_int_equal(read.offset, 120);
	assert_false(read_id.known);
	assert_int_equal(read_gtid.count, 0);
	assert_true(state_parse("mariadb-bin.000002 120 later=x file-created=5:2\n",
							&read, &read_id, &read_gtid, source, sizeof(source),
							open, sizeof(open)));
	assert_true(read_id.known);
	assert_int_equal(read_id.created, 5);

	/* Not a state line: refused (the agent says to remove it). */
	assert_false(state_parse("mariadb-bin.000002\n", &read, &read_id,
							 &read_gtid, source, sizeof(source), open,
							 sizeof(open)));
	assert_false(state_parse("mariadb-bin.000002 120 file-created=x\n", &read,
							 &read_id, &read_gtid, source, sizeof(source), open,
							 sizeof(open)));
	assert_false(state_parse("mariadb-bin.000002 120 gtid=0-1\n", &read,
							 &read_id, &read_gtid, source, sizeof(source), open,
							 sizeof(open)));
	assert_false(state_parse("mariadb-bin.000002 120x\n", &read, &read_id,
							 &read_gtid, source, sizeof(source), open,
							 sizeof(open)));

	test_rmdir(agent.config.state_dir);
	free(agent.config.state_dir);
}

/*
 * A state written for one source id is not another's: after a binlog reset
 * the way out is a new source_id, with the same state_dir, and the new
 * source's archive starts empty instead of at the old source's position
 * (where the reset server's files are refused as a reused history).  A line
 * of an older agent, without a source, is still read.
 */
static void
test_state_file_of_another_source(void **state)
{
	Agent agent;
	BinlogPosition position = {.file = "mariadb-bin.000002", .offset = 389};
	BinlogPosition read;
	BinlogFileId id = {.known = true, .created = 1764000000, .server_id = 1};
	BinlogFileId read_id;
	BkGtidState gtid, read_gtid;
	BkError err;
	bool found;
	char path[4096];
	char source[BK_SOURCE_ID_MAX + 1];
	char open[BINLOG_OPEN_META_MAX];
	char first[] = "db1.example";
	char second[] = "db1.example-2";

	memset(&agent, 0, sizeof(agent));
	agent.config.state_dir = test_mkdtemp();
	agent.config.source_id = first;
	assert_true(bk_gtid_state_parse("0-1-14", &gtid, &err));
	assert_true(binlog_state_write(&agent, &position, &id, &gtid, "", &err));
	assert_true(binlog_state_read(&agent, &read, &read_id, &read_gtid, open,
								  sizeof(open), &found, &err));
	assert_true(found);
	assert_int_equal(read.offset, 389);

	agent.config.source_id = second;
	assert_true(binlog_state_read(&agent, &read, &read_id, &read_gtid, open,
								  sizeof(open), &found, &err));
	assert_false(found);

	/* Written by an older agent: no source, taken as this one's. */
	snprintf(path, sizeof(path), "%s/binlog.position", agent.config.state_dir);
	assert_true(bk_write_file_durable(path, "mariadb-bin.000002 389\n", 23,
									  0600, &err));
	assert_true(binlog_state_read(&agent, &read, &read_id, &read_gtid, open,
								  sizeof(open), &found, &err));
	assert_true(found);

	/* A source id that is not one: not a state line. */
	assert_false(state_parse("mariadb-bin.000002 389 source=a/b\n", &read,
							 &read_id, &read_gtid, source, sizeof(source), open,
							 sizeof(open)));
	assert_true(state_parse(
		"mariadb-bin.000002 389 source=db1.example gtid=0-1-14\n", &read,
		&read_id, &read_gtid, source, sizeof(source), open, sizeof(open)));
	assert_string_equal(source, "db1.example");

	/*
	 * A state_dir it cannot write (gone here; full or read-only in the
	 * field): the message says it is the position hint in state_dir, and
	 * the hint that archiving goes on and what to fix.
	 */
	{
		char *dir = agent.config.state_dir;
		char gone[4096];

		snprintf(gone, sizeof(gone), "%s/gone", dir);
		agent.config.state_dir = gone;
		bk_error_clear(&err);
		assert_false(
			binlog_state_write(&agent, &position, &id, &gtid, "", &err));
		assert_non_null(strstr(err.message, "could not save the archived binlog"
											" position in state_dir: "));
		assert_non_null(strstr(err.message, "No such file or directory"));
		assert_non_null(strstr(err.hint, "Archiving goes on"));
		assert_non_null(strstr(err.hint, gone));
		agent.config.state_dir = dir;
	}

	test_rmdir(agent.config.state_dir);
	free(agent.config.state_dir);
}

/* An event without checksum, a body of zeros unless given. */
static size_t
make_event(uint8_t *out, uint8_t type, const uint8_t *body, size_t body_len)
{
	size_t len = BK_BINLOG_HEADER_LEN + body_len;

	memset(out, 0, BK_BINLOG_HEADER_LEN);
	put_le32(out, 1764000000);
	out[4] = type;
	put_le32(out + 5, 1);
	put_le32(out + 9, (uint32_t) len);
	memcpy(out + BK_BINLOG_HEADER_LEN, body, body_len);
	return len;
}

/* event through the agent's followers; whether a GTID list follows. */
static bool
follow(BinlogGtids *gtids, BkBinlogTxn *txn, const uint8_t *event, size_t len)
{
	char differs[256];
	bool follows;
	BkError err;

	assert_true(binlog_gtids_event(gtids, event, len, &follows, differs,
								   sizeof(differs), &err));
	binlog_gtids_follow_txn(gtids, txn, event, len, BK_BINLOG_CHECKSUM_OFF);
	return follows;
}

/*
 * The next file's start, as a server restarted after a crash writes it: a
 * format description at offset 4, then a GTID list of one entry.
 */
static bool
next_file_follows(BinlogGtids *gtids, BkBinlogTxn *txn, uint64_t seq)
{
	uint8_t event[128];
	uint8_t body[57] = {4};
	uint8_t list[20];
	size_t len = make_event(event, BK_BINLOG_FORMAT_DESCRIPTION_EVENT, body,
							sizeof(body));

	put_le32(event + 13, (uint32_t) (BK_BINLOG_MAGIC_LEN + len));
	follow(gtids, txn, event, len);
	put_le32(list, 1);
	put_le32(list + 4, 0);
	put_le32(list + 8, 1);
	put_le64(list + 12, seq);
	return follow(
		gtids, txn, event,
		make_event(event, BK_BINLOG_GTID_LIST_EVENT, list, sizeof(list)));
}

/*
 * Kafka lost every range of the source, and the local state is where the
 * archive ends: inside a large transaction (0-1-12), which a crash of the
 * server then cut, so the next file's GTID list names 0-1-11 only.  The
 * state file keeps the transaction as a range's metadata does
 * (open-gtid=...), and the agent resuming from it takes the GTID back at
 * the next file's start: no gap reported, as when it resumes from Kafka.
 * Without it, 0-1-12 counts as reached and the list as transactions
 * missing, a gap no restore crosses.
 */
static void
test_state_inside_transaction(void **state)
{
	Agent agent;
	BinlogPosition position = {.file = "mariadb-bin.000001", .offset = 9000};
	BinlogPosition read;
	BinlogFileId id = {.known = true, .created = 1764000000, .server_id = 1};
	BinlogFileId read_id;
	BinlogGtids gtids;
	BkBinlogTxn txn;
	BkGtidState gtid, read_gtid;
	BkError err;
	bool found;
	char open[BINLOG_OPEN_META_MAX], read_open[BINLOG_OPEN_META_MAX];
	char source[BK_SOURCE_ID_MAX + 1];
	char path[4096];
	char *data;
	size_t len;
	uint8_t event[128];
	uint8_t body[64] = {0};

	memset(&agent, 0, sizeof(agent));
	agent.config.state_dir = test_mkdtemp();
	snprintf(path, sizeof(path), "%s/binlog.position", agent.config.state_dir);

	/* The stream: 0-1-11 reached, 0-1-12's GTID event and a row event. */
	assert_true(bk_gtid_state_parse("0-1-11", &gtid, &err));
	memset(&txn, 0, sizeof(txn));
	binlog_gtids_forget(&gtids);
	binlog_gtids_from_newest(&gtids, &gtid);
	put_le64(body, 12);
	follow(&gtids, &txn, event,
		   make_event(event, BK_BINLOG_GTID_EVENT, body, 13));
	memset(body, 0, sizeof(body));
	follow(&gtids, &txn, event,
		   make_event(event, BK_BINLOG_WRITE_ROWS_EVENT, body, sizeof(body)));
	assert_true(binlog_gtids_open_meta(&gtids, &txn, open, sizeof(open)));
	assert_string_equal(open, "\nopen-gtid=0-1-12\nopen-gtid-before=0-1-11");
	assert_true(bk_gtid_state_parse("0-1-12", &gtid, &err));

	assert_true(binlog_state_write(&agent, &position, &id, &gtid, open, &err));
	assert_true(bk_read_file(path, 8192, &data, &len, &err));
	assert_string_equal(data,
						"mariadb-bin.000001 9000 file-created=1764000000:1"
						" gtid=0-1-12 open-gtid=0-1-12"
						" open-gtid-before=0-1-11\n");
	free(data);
	assert_true(binlog_state_read(&agent, &read, &read_id, &read_gtid,
								  read_open, sizeof(read_open), &found, &err));
	assert_true(found);
	assert_int_equal(read.offset, 9000);
	assert_string_equal(read_open, open);

	/* The resume from the state (stream_start_position), then the crash. */
	memset(&txn, 0, sizeof(txn));
	binlog_gtids_forget(&gtids);
	binlog_gtids_from_newest(&gtids, &read_gtid);
	assert_true(binlog_gtids_resume_open(&gtids, &txn, read_open,
										 strlen(read_open), &err));
	assert_true(next_file_follows(&gtids, &txn, 11));

	/* Not cut: it ends after the resume, and the next list must name it. */
	memset(&txn, 0, sizeof(txn));
	binlog_gtids_forget(&gtids);
	binlog_gtids_from_newest(&gtids, &read_gtid);
	assert_true(binlog_gtids_resume_open(&gtids, &txn, read_open,
										 strlen(read_open), &err));
	follow(&gtids, &txn, event,
		   make_event(event, BK_BINLOG_XID_EVENT, body, 8));
	assert_false(next_file_follows(&gtids, &txn, 11));

	/* Between transactions: no open key; a later agent's open-x read. */
	assert_true(binlog_state_write(&agent, &position, &id, &gtid, "", &err));
	assert_true(bk_read_file(path, 8192, &data, &len, &err));
	assert_string_equal(data,
						"mariadb-bin.000001 9000 file-created=1764000000:1"
						" gtid=0-1-12\n");
	free(data);
	assert_true(binlog_state_read(&agent, &read, &read_id, &read_gtid,
								  read_open, sizeof(read_open), &found, &err));
	assert_string_equal(read_open, "");
	assert_false(state_parse("mariadb-bin.000002 120 open-gtid\n", &read,
							 &read_id, &read_gtid, source, sizeof(source),
							 read_open, sizeof(read_open)));

	unlink(path);
	test_rmdir(agent.config.state_dir);
	free(agent.config.state_dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_range_with_missing_chunk),
		cmocka_unit_test(test_range_cut_by_window),
		cmocka_unit_test(test_range_file_created),
		cmocka_unit_test(test_state_file),
		cmocka_unit_test(test_state_file_of_another_source),
		cmocka_unit_test(test_state_inside_transaction),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
