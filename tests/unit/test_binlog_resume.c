/*
 * test_binlog_resume.c
 *		Where the agent resumes the binlog: the scan of the binlog topic
 *		(mysql_agent/binlog_resume.c, compiled in) counts a range only
 *		when every chunk of one attempt of it was read.
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
encode_range(const BkKey *key, uint64_t start, uint64_t end, int chunks,
			 FrameList *frames)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	size_t size = (size_t) CHUNK * (size_t) (chunks - 1) + 100;
	uint8_t *data = malloc(size);
	BkObjectInfo info = {.kind = BK_KIND_BINLOG,
						 .source_id = SOURCE,
						 .name = name,
						 .meta = "gtid=0-1-5",
						 .size = size};

	assert_true(bk_binlog_range_name("mariadb-bin.000001", start, end, name,
									 sizeof(name)));
	test_fill(data, size, start, false);
	test_encode_object(key, CHUNK, &info, data, frames);
	assert_int_equal(frames->count, chunks);
	free(data);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_range_with_missing_chunk),
		cmocka_unit_test(test_range_cut_by_window),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
