/*
 * test_kafka_mock.c
 *		Fault injection for the producer wrapper with librdkafka's mock
 *		cluster (the real broker is used by tests/integration; this is only
 *		for faults a real broker cannot be made to show on demand): broker
 *		down, produce errors, fatal idempotence errors, interruption, the
 *		configuration checks at start, and the shipper's give-up rule on a
 *		message stamped by a source's clock.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "bk_kafka.h"
#include "bk_util.h"

#define TOPIC      "bk.wal"
#define TIMEOUT_MS 2000

static rd_kafka_t *mock_owner;
static rd_kafka_mock_cluster_t *mock;
static char brokers[256];
static BkKey key;

static void
quiet_log(void *arg, int level, const char *facility, const char *message)
{
}

static int
setup(void **state)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char errstr[256];

	rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
	mock_owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	assert_non_null(mock_owner);
	mock = rd_kafka_mock_cluster_new(mock_owner, 1);
	assert_non_null(mock);
	bk_strlcpy(brokers, rd_kafka_mock_cluster_bootstraps(mock),
			   sizeof(brokers));
	assert_int_equal(rd_kafka_mock_topic_create(mock, TOPIC, 1, 1), 0);
	test_key(&key, NULL);
	return 0;
}

static int
teardown(void **state)
{
	rd_kafka_mock_cluster_destroy(mock);
	rd_kafka_destroy(mock_owner);
	return 0;
}

/*
 * Before each test, undo the faults a test injects into the one cluster all
 * share: broker down, round-trip time, Produce errors pushed and not yet
 * answered.  A test that fails between injecting a fault and undoing it
 * must fail alone: one failing with the broker down (test_batch, say)
 * failed every later test that uses the broker, all with "Broker transport
 * failure", its own failure lost among theirs.
 */
static int
mock_reset(void **state)
{
	assert_int_equal(rd_kafka_mock_broker_set_up(mock, 1),
					 RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_int_equal(rd_kafka_mock_broker_set_rtt(mock, 1, 0),
					 RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_mock_clear_request_errors(mock, 0 /* Produce */);
	return 0;
}

static BkKafkaSettings
settings_for_test(const char *properties)
{
	BkKafkaSettings settings = {0};

	settings.brokers = brokers;
	settings.properties = properties;
	settings.timeout_ms = TIMEOUT_MS;
	settings.chunk_size = 64 * 1024;
	settings.log_fn = quiet_log;
	return settings;
}

/* Frames of one object, produced lazily by the encoder. */
typedef struct EncodeSource
{
	BkEncoder *enc;
	uint8_t *data;
	size_t offset;
} EncodeSource;

static bool
next_frame(void *arg, const uint8_t **frame, size_t *len, BkFrame *info,
		   BkError *err)
{
	EncodeSource *source = arg;
	uint32_t chunk_len;

	if (bk_encoder_done(source->enc))
	{
		*frame = NULL;
		return true;
	}
	chunk_len = bk_encoder_next_chunk_len(source->enc);
	if (!bk_encoder_chunk(source->enc, source->data + source->offset, chunk_len,
						  frame, len, info, err))
		return false;
	source->offset += chunk_len;
	return true;
}

static void
source_begin(EncodeSource *source, size_t size)
{
	BkObjectInfo info = {.kind = BK_KIND_WAL,
						 .source_id = "mock",
						 .name = "000000010000000000000001",
						 .size = size};
	BkError err;

	source->enc = bk_encoder_new(&key, 64 * 1024, &err);
	assert_non_null(source->enc);
	source->data = malloc(size + 1);
	test_fill(source->data, size, 1, false);
	source->offset = 0;
	assert_true(bk_encoder_begin(source->enc, &info, &err));
}

static void
source_end(EncodeSource *source)
{
	bk_encoder_free(source->enc);
	free(source->data);
}

static void
test_send_acknowledged(void **state)
{
	BkKafkaSettings settings = settings_for_test(NULL);
	BkProducer *producer;
	EncodeSource source;
	BkSendStats stats;
	BkError err;

	producer = bk_producer_new(&settings, &err);
	assert_non_null(producer);
	source_begin(&source, 300 * 1024);
	if (!bk_producer_send_object(producer, TOPIC, "mock", 4, next_frame,
								 &source, NULL, NULL, &stats, &err))
		fail_msg("%s", err.message);
	assert_int_equal(stats.messages, 5);
	assert_int_equal(stats.partition, 0);
	assert_true(stats.last_offset - stats.first_offset == 4);
	source_end(&source);
	bk_producer_free(producer);
}

/*
 * How long a send may wait on the brokers, for a peer that must wait as
 * long (the MariaDB snapshot's net_write_timeout): message.timeout.ms in
 * effect (the user's property wins) plus the slack, for each window of
 * bytes an object fills, and one more.
 */
static void
test_send_wait_max(void **state)
{
	static const struct
	{
		const char *properties;
		size_t window_bytes;
		uint64_t bytes;
		int64_t expected;
	} cases[] = {
		{NULL, 0, 1, TIMEOUT_MS + BK_KAFKA_TIMEOUT_SLACK_MS},
		{NULL, 0, 256 * 1024 * 1024,
		 5 * (TIMEOUT_MS + BK_KAFKA_TIMEOUT_SLACK_MS)},
		{"message.timeout.ms=5000", 0, 256 * 1024 * 1024,
		 5 * (5000 + BK_KAFKA_TIMEOUT_SLACK_MS)},
		{NULL, 1024 * 1024, 3 * 1024 * 1024,
		 4 * (TIMEOUT_MS + BK_KAFKA_TIMEOUT_SLACK_MS)},
	};

	for (size_t caseIdx = 0; caseIdx < sizeof(cases) / sizeof(cases[0]);
		 caseIdx++)
	{
		BkKafkaSettings settings = settings_for_test(cases[caseIdx].properties);
		BkProducer *producer;
		BkError err;

		settings.window_bytes = cases[caseIdx].window_bytes;
		producer = bk_producer_new(&settings, &err);
		assert_non_null(producer);
		assert_int_equal(
			bk_producer_send_wait_max_ms(producer, cases[caseIdx].bytes),
			cases[caseIdx].expected);
		bk_producer_free(producer);
	}
}

/*
 * request_messages caps the messages of one produce request
 * (batch.num.messages: with five or more in flight librdkafka 2.0's broker
 * thread spins); 0 leaves librdkafka's default, and the user's Kafka
 * properties still win.
 */
static void
test_request_messages(void **state)
{
	static const struct
	{
		int request_messages;
		const char *properties;
		const char *expected;
	} cases[] = {
		{4, NULL, "4"},
		{4, "batch.num.messages=100", "100"},
		{0, NULL, "10000"},
	};

	for (size_t caseIdx = 0; caseIdx < sizeof(cases) / sizeof(cases[0]);
		 caseIdx++)
	{
		BkKafkaSettings settings = settings_for_test(cases[caseIdx].properties);
		BkProducer *producer;
		char value[32];
		size_t value_len = sizeof(value);
		BkError err;

		settings.request_messages = cases[caseIdx].request_messages;
		producer = bk_producer_new(&settings, &err);
		assert_non_null(producer);
		if (!bk_producer_connect(producer, NULL, &err))
			fail_msg("%s", err.message);
		assert_int_equal(
			rd_kafka_conf_get(rd_kafka_conf(bk_producer_handle(producer)),
							  "batch.num.messages", value, &value_len),
			RD_KAFKA_CONF_OK);
		assert_string_equal(value, cases[caseIdx].expected);
		bk_producer_free(producer);
	}
}

/*
 * Many small, compressible chunks with requests capped at four messages: a
 * 4 MiB object of zeros in 4 KiB chunks is 1024 tiny frames, far below the
 * byte window.  Queued all at once behind one request in flight at a time,
 * 10 ms a round trip, the last ones waited past message.timeout.ms and the
 * send failed ("Message timed out").  The message window keeps each one's
 * wait short.
 */
static void
test_small_chunks_not_timed_out(void **state)
{
	BkKafkaSettings settings = settings_for_test(NULL);
	BkObjectInfo info = {.kind = BK_KIND_WAL,
						 .source_id = "mock",
						 .name = "000000010000000000000001",
						 .size = 4 * 1024 * 1024};
	BkProducer *producer;
	EncodeSource source;
	BkSendStats stats;
	BkError err;

	settings.chunk_size = 4096;
	settings.request_messages = 4;
	producer = bk_producer_new(&settings, &err);
	assert_non_null(producer);
	source.enc = bk_encoder_new(&key, 4096, &err);
	assert_non_null(source.enc);
	source.data = calloc(1, info.size);
	source.offset = 0;
	assert_true(bk_encoder_begin(source.enc, &info, &err));
	rd_kafka_mock_broker_set_rtt(mock, 1, 10);
	if (!bk_producer_send_object(producer, TOPIC, "mock", 4, next_frame,
								 &source, NULL, NULL, &stats, &err))
		fail_msg("%s", err.message);
	assert_int_equal(stats.messages, 1024);
	rd_kafka_mock_broker_set_rtt(mock, 1, 0);
	source_end(&source);
	bk_producer_free(producer);
}

/* Broker down: a clear timeout error within the bound, then recovery. */
static void
test_broker_down_bounded(void **state)
{
	BkKafkaSettings settings = settings_for_test(NULL);
	BkProducer *producer;
	EncodeSource source;
	BkError err;
	int64_t start;
	int64_t elapsed;
	bool sent;

	producer = bk_producer_new(&settings, &err);
	assert_non_null(producer);
	/* Down before the producer knew the topic: its partitions are unknown. */
	rd_kafka_mock_broker_set_down(mock, 1);
	source_begin(&source, 200 * 1024);
	start = bk_monotonic_ms();
	sent = bk_producer_send_object(producer, TOPIC, "mock", 4, next_frame,
								   &source, NULL, NULL, NULL, &err);
	elapsed = bk_monotonic_ms() - start;
	/* Up again before any assert, so that a failure here fails no other. */
	rd_kafka_mock_broker_set_up(mock, 1);
	assert_false(sent);
	assert_error_code(&err, BK_ERR_TIMEOUT);
	assert_error_contains(&err, "could not read the partitions of Kafka topic "
								"\"bk.wal\" within 2000 ms");
	assert_true(strstr(err.hint, "Check that Kafka is up") != NULL);
	assert_true(elapsed >= TIMEOUT_MS - 100);
	assert_true(elapsed < TIMEOUT_MS + 3000);
	source_end(&source);

	/*
	 * Down after a send: the chunks are queued and time out.  librdkafka
	 * reports them timed out, or, its timeout scan lagging while it backs
	 * off reconnecting to the dead broker (about half the runs here), not
	 * at all, and bk gives up after message.timeout.ms plus slack
	 * (report_silence): a timeout either way, within the bound.
	 */
	source_begin(&source, 200 * 1024);
	if (!bk_producer_send_object(producer, TOPIC, "mock", 4, next_frame,
								 &source, NULL, NULL, NULL, &err))
		fail_msg("%s", err.message);
	source_end(&source);
	rd_kafka_mock_broker_set_down(mock, 1);
	source_begin(&source, 200 * 1024);
	start = bk_monotonic_ms();
	sent = bk_producer_send_object(producer, TOPIC, "mock", 4, next_frame,
								   &source, NULL, NULL, NULL, &err);
	elapsed = bk_monotonic_ms() - start;
	rd_kafka_mock_broker_set_up(mock, 1);
	assert_false(sent);
	assert_error_code(&err, BK_ERR_TIMEOUT);
	if (strstr(err.message, "no delivery report from Kafka for chunk") == NULL)
	{
		assert_error_contains(&err, "Kafka did not acknowledge chunk");
		assert_error_contains(&err, "Message timed out");
	}
	assert_error_contains(&err, "of \"000000010000000000000001\"");
	assert_true(strstr(err.hint, "message.timeout.ms (2000 ms)") != NULL);
	/* Bounded: the timeout plus slack, never librdkafka's default 300 s. */
	assert_true(elapsed >= TIMEOUT_MS - 100);
	assert_true(elapsed < TIMEOUT_MS + 3000);
	source_end(&source);

	/* The broker comes back: the next attempt succeeds on a fresh handle. */
	source_begin(&source, 200 * 1024);
	if (!bk_producer_send_object(producer, TOPIC, "mock", 4, next_frame,
								 &source, NULL, NULL, NULL, &err))
		fail_msg("%s", err.message);
	source_end(&source);
	bk_producer_free(producer);
}

/*
 * An object larger than the producer's window, the broker down: the send
 * waits for room in the window, and gives up within the same bound as the
 * wait for the last acknowledgement (librdkafka's timeout scan lags in
 * about half the runs while it backs off reconnecting, and the wait for
 * room had no bound of its own: up to 10 s was seen).  Several tries, since
 * the lag comes and goes; it did not come in twelve tries of the code before
 * the bound, so this guards the bound rather than proving its absence.
 */
static void
test_broker_down_window_bounded(void **state)
{
	BkKafkaSettings settings = settings_for_test(NULL);
	BkProducer *producer;
	EncodeSource source;
	BkError err;

	(void) state;
	settings.window_bytes = 256 * 1024;
	producer = bk_producer_new(&settings, &err);
	assert_non_null(producer);
	source_begin(&source, 200 * 1024);
	if (!bk_producer_send_object(producer, TOPIC, "mock", 4, next_frame,
								 &source, NULL, NULL, NULL, &err))
		fail_msg("%s", err.message);
	source_end(&source);
	for (int attempt = 0; attempt < 3; attempt++)
	{
		int64_t start;
		int64_t elapsed;
		bool sent;

		rd_kafka_mock_broker_set_down(mock, 1);
		source_begin(&source, 4 * 1024 * 1024);
		start = bk_monotonic_ms();
		sent = bk_producer_send_object(producer, TOPIC, "mock", 4, next_frame,
									   &source, NULL, NULL, NULL, &err);
		elapsed = bk_monotonic_ms() - start;
		rd_kafka_mock_broker_set_up(mock, 1);
		source_end(&source);
		assert_false(sent);
		assert_error_code(&err, BK_ERR_TIMEOUT);
		if (elapsed >= TIMEOUT_MS + 3000)
			fail_msg("attempt %d gave up after %" PRId64 " ms: %s", attempt,
					 elapsed, err.message);
	}
	bk_producer_free(producer);
}

/* Transient broker errors are retried by the idempotent producer. */
static void
test_transient_errors_retried(void **state)
{
	BkKafkaSettings settings = settings_for_test(NULL);
	BkProducer *producer = bk_producer_new(&settings, NULL);
	EncodeSource source;
	BkSendStats stats;
	BkError err;

	assert_non_null(producer);
	rd_kafka_mock_push_request_errors(
		mock, 0 /* Produce */, 3, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
		RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
		RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
	source_begin(&source, 100 * 1024);
	if (!bk_producer_send_object(producer, TOPIC, "mock", 4, next_frame,
								 &source, NULL, NULL, &stats, &err))
		fail_msg("%s", err.message);
	assert_int_equal(stats.messages, 2);
	/* Exactly two new records: retries did not duplicate. */
	assert_true(stats.last_offset - stats.first_offset == 1);
	source_end(&source);
	bk_producer_free(producer);
}

/* A permanent broker error fails the send and names the error. */
static void
test_permanent_error_reported(void **state)
{
	BkKafkaSettings settings = settings_for_test(NULL);
	BkProducer *producer = bk_producer_new(&settings, NULL);
	EncodeSource source;
	BkError err;

	assert_non_null(producer);
	rd_kafka_mock_push_request_errors(
		mock, 0 /* Produce */, 1, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
	source_begin(&source, 10 * 1024);
	assert_false(bk_producer_send_object(producer, TOPIC, "mock", 4, next_frame,
										 &source, NULL, NULL, NULL, &err));
	assert_error_code(&err, BK_ERR_KAFKA);
	assert_error_contains(&err,
						  "Kafka did not acknowledge chunk 0 of "
						  "\"000000010000000000000001\" on topic \"bk.wal\"");
	assert_error_contains(&err, "Topic authorization failed");
	source_end(&source);
	bk_producer_free(producer);
}

/*
 * A topic the brokers refuse to describe (no ACL for it): the metadata says
 * so at once, and waiting does not change it.  Reported at once, as the
 * refusal it is, not after message.timeout.ms as a Kafka that did not
 * answer.
 */
static void
test_topic_refused_at_once(void **state)
{
	BkKafkaSettings settings = settings_for_test(NULL);
	BkProducer *producer = bk_producer_new(&settings, NULL);
	EncodeSource source;
	BkError err;
	int64_t start;

	assert_non_null(producer);
	assert_int_equal(rd_kafka_mock_topic_create(mock, "bk.denied", 1, 1), 0);
	rd_kafka_mock_topic_set_error(mock, "bk.denied",
								  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
	source_begin(&source, 10 * 1024);
	start = bk_monotonic_ms();
	assert_false(bk_producer_send_object(producer, "bk.denied", "mock", 4,
										 next_frame, &source, NULL, NULL, NULL,
										 &err));
	assert_true(bk_monotonic_ms() - start < TIMEOUT_MS / 2);
	assert_error_code(&err, BK_ERR_KAFKA);
	assert_error_contains(&err, "\"bk.denied\"");
	assert_error_contains(&err, "Topic authorization failed");
	assert_true(strstr(err.hint, "Describe") != NULL);
	source_end(&source);
	bk_producer_free(producer);
}

/*
 * Messages without a key (bk_kafka.h allows them for single messages) are
 * partitioned by librdkafka, as before bk chose partitions: there is no key
 * to apply a partitioner to, and librdkafka's random partitioner may only
 * run inside librdkafka (it reads the topic's partitions under the topic's
 * lock).  Its sticky partitioner puts a burst of them in one partition;
 * random per message, 24 of them would all but never share one of 4.
 */
static void
test_keyless_messages_left_to_librdkafka(void **state)
{
	BkKafkaSettings settings =
		settings_for_test("sticky.partitioning.linger.ms=60000");
	BkProducer *producer = bk_producer_new(&settings, NULL);
	int used = 0;
	BkError err;

	assert_non_null(producer);
	assert_int_equal(rd_kafka_mock_topic_create(mock, "bk.keyless", 4, 1), 0);
	/* First the partitions' leaders known, whose partitions stick. */
	if (!bk_producer_send_message(producer, "bk.keyless", NULL, "event", 5,
								  NULL, NULL, &err) ||
		!bk_producer_batch_begin(producer, &err))
		fail_msg("%s", err.message);
	for (int msgIdx = 0; msgIdx < 24; msgIdx++)
		if (!bk_producer_batch_add_message(producer, "bk.keyless",
										   msgIdx % 2 ? NULL : "", "event", 5,
										   &err))
			fail_msg("%s", err.message);
	if (!bk_producer_batch_wait(producer, NULL, NULL, NULL, &err))
		fail_msg("%s", err.message);
	for (int32_t partition = 0; partition < 4; partition++)
	{
		int64_t low = 0;
		int64_t high = 0;

		assert_int_equal(rd_kafka_query_watermark_offsets(
							 bk_producer_handle(producer), "bk.keyless",
							 partition, &low, &high, TIMEOUT_MS),
						 RD_KAFKA_RESP_ERR_NO_ERROR);
		used += high > low;
	}
	assert_int_equal(used, 1);
	bk_producer_free(producer);
}

/* After a fatal error the handle is replaced before the next send. */
static void
test_fatal_error_recreates_handle(void **state)
{
	BkKafkaSettings settings = settings_for_test(NULL);
	BkProducer *producer = bk_producer_new(&settings, NULL);
	rd_kafka_t *first_handle;
	EncodeSource source;
	BkError err;

	assert_non_null(producer);
	first_handle = bk_producer_handle(producer);
	assert_non_null(first_handle);
	assert_int_equal(rd_kafka_test_fatal_error(
						 first_handle,
						 RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
						 "injected by test"),
					 RD_KAFKA_RESP_ERR_NO_ERROR);
	source_begin(&source, 10 * 1024);
	if (!bk_producer_send_object(producer, TOPIC, "mock", 4, next_frame,
								 &source, NULL, NULL, NULL, &err))
		fail_msg("%s", err.message);
	assert_int_equal(
		rd_kafka_fatal_error(bk_producer_handle(producer), NULL, 0),
		RD_KAFKA_RESP_ERR_NO_ERROR);
	source_end(&source);
	bk_producer_free(producer);
}

static int64_t interrupt_at_ms;

static bool
interrupt_after_a_while(void *arg)
{
	return bk_monotonic_ms() >= interrupt_at_ms;
}

/*
 * A shutdown request ends the wait at once, never after the full timeout:
 * while the topic's partitions are read, and while chunks wait for their
 * acknowledgements.
 */
static void
test_interrupt(void **state)
{
	BkKafkaSettings settings = settings_for_test("message.timeout.ms=60000");
	BkProducer *producer = bk_producer_new(&settings, NULL);
	EncodeSource source;
	BkError err;
	int64_t start;

	assert_non_null(producer);
	for (int round = 0; round < 2; round++)
	{
		if (round == 1)
		{
			/* The partition count known: the chunks themselves wait. */
			source_begin(&source, 10 * 1024);
			if (!bk_producer_send_object(producer, TOPIC, "mock", 4, next_frame,
										 &source, NULL, NULL, NULL, &err))
				fail_msg("%s", err.message);
			source_end(&source);
		}
		rd_kafka_mock_broker_set_down(mock, 1);
		source_begin(&source, 10 * 1024);
		start = bk_monotonic_ms();
		interrupt_at_ms = start + 300;
		assert_false(bk_producer_send_object(
			producer, TOPIC, "mock", 4, next_frame, &source,
			interrupt_after_a_while, NULL, NULL, &err));
		assert_error_code(&err, BK_ERR_INTERRUPTED);
		assert_error_contains(&err, round == 0
										? "reading the partitions"
										: "waiting for Kafka to acknowledge");
		assert_error_contains(&err, "was interrupted");
		assert_true(bk_monotonic_ms() - start < 3000);
		rd_kafka_mock_broker_set_up(mock, 1);
		source_end(&source);
	}
	bk_producer_free(producer);
}

static void
expect_producer_error(const char *properties, const char *needle)
{
	BkKafkaSettings settings = settings_for_test(properties);
	BkError err;

	bk_error_clear(&err);
	assert_null(bk_producer_new(&settings, &err));
	assert_error_code(&err, BK_ERR_CONFIG);
	assert_error_contains(&err, needle);
}

/* What would stall or weaken delivery is refused at start, clearly. */
static void
test_configuration_checks(void **state)
{
	BkKafkaSettings settings = settings_for_test(NULL);
	BkError err;

	expect_producer_error(
		"message.max.bytes=50000",
		"chunk size 65536 makes Kafka messages of up to 87388 "
		"bytes, above the producer's message.max.bytes of 50000");
	expect_producer_error("acks=1", "acks must stay \"all\"");
	expect_producer_error("enable.idempotence=false",
						  "enable.idempotence must stay true");
	/*
	 * Chunks of one object spread over partitions would each be
	 * acknowledged, yet no shipper could assemble the object.
	 */
	expect_producer_error("partitioner=random",
						  "partitioner must keep a key's messages");
	/* Logs from librdkafka's threads would run host code there. */
	expect_producer_error("log.queue=false", "log.queue must stay true");
	assert_null(bk_kafka_conf_new(
		&(BkKafkaSettings){.brokers = brokers, .properties = "log.queue=false"},
		&err));
	assert_error_contains(&err, "log.queue must stay true");
	expect_producer_error("no.such.property=1",
						  "Kafka property \"no.such.property\"");
	expect_producer_error("linger.ms", "is not \"key=value\"");
	settings.brokers = NULL;
	assert_null(bk_producer_new(&settings, &err));
	assert_error_contains(&err, "no Kafka brokers configured");
}

/* A batch: several objects, one wait; a failure fails it and names the key. */
static void
test_batch(void **state)
{
	BkKafkaSettings settings = settings_for_test(NULL);
	BkProducer *producer = bk_producer_new(&settings, NULL);
	EncodeSource sources[3];
	BkSendStats stats;
	BkError err;
	uint64_t bytes;

	assert_non_null(producer);
	assert_true(bk_producer_batch_begin(producer, &err));
	for (int idx = 0; idx < 3; idx++)
	{
		source_begin(&sources[idx], 100 * 1024);
		if (!bk_producer_batch_add(producer, TOPIC, "src/obj", 7, next_frame,
								   &sources[idx], NULL, NULL, &bytes, &err))
			fail_msg("%s", err.message);
		assert_true(bytes > 100 * 1024);
	}
	if (!bk_producer_batch_wait(producer, NULL, NULL, &stats, &err))
		fail_msg("%s", err.message);
	assert_int_equal(stats.messages, 6);
	for (int idx = 0; idx < 3; idx++)
		source_end(&sources[idx]);

	/* The broker goes away mid-batch: the whole batch fails, clearly. */
	rd_kafka_mock_broker_set_down(mock, 1);
	assert_true(bk_producer_batch_begin(producer, &err));
	for (int idx = 0; idx < 2; idx++)
	{
		source_begin(&sources[idx], 10 * 1024);
		assert_true(bk_producer_batch_add(
			producer, TOPIC, "src/snap/base/1/1259", 20, next_frame,
			&sources[idx], NULL, NULL, NULL, &err));
	}
	assert_false(bk_producer_batch_wait(producer, NULL, NULL, NULL, &err));
	assert_error_code(&err, BK_ERR_TIMEOUT);

	/*
	 * Either librdkafka reported the timeout (the chunk that failed is
	 * named by its headers, not by its key, which for WAL is only the
	 * source id), or it stayed silent past the bound (its timeout scan lags
	 * while it backs off reconnecting) and the batch itself is named.
	 * Never the last object queued as if it alone were missing.  When the
	 * two messages straddle one of the scans (a loaded machine delays the
	 * second), the first is reported timed out and the second not before
	 * the scan after it, which waits out the reconnect backoff (5 to 10 s
	 * seen): that first timeout is the batch's error, not a silence about
	 * "1 of the 2 messages" (test_batch_first_timeout_reported_at_once).
	 */
	if (strstr(err.message, "Kafka did not acknowledge") != NULL)
		assert_error_contains(&err, "chunk 0 of "
									"\"000000010000000000000001\" on topic");
	else
		assert_error_contains(&err, "no delivery report from Kafka for 2 of "
									"the 2 messages of a batch of 2 objects "
									"on topic \"bk.wal\" within 2000 ms");
	for (int idx = 0; idx < 2; idx++)
		source_end(&sources[idx]);
	rd_kafka_mock_broker_set_up(mock, 1);
	bk_producer_free(producer);
}

/* The end offset of TOPIC's one partition, asked through producer. */
static int64_t
topic_high(BkProducer *producer)
{
	int64_t low = 0;
	int64_t high = 0;

	assert_int_equal(
		rd_kafka_query_watermark_offsets(bk_producer_handle(producer), TOPIC, 0,
										 &low, &high, TIMEOUT_MS),
		RD_KAFKA_RESP_ERR_NO_ERROR);
	return high;
}

/* A batch begun on producer with one object of size bytes in it. */
static void
batch_with_object(BkProducer *producer, EncodeSource *source, size_t size)
{
	BkError err;

	assert_true(bk_producer_batch_begin(producer, &err));
	source_begin(source, size);
	if (!bk_producer_batch_add(producer, TOPIC, "src/obj", 7, next_frame,
							   source, NULL, NULL, NULL, &err))
		fail_msg("%s", err.message);
}

/*
 * Batches open on two producers, waited on in turn (the archiver with
 * bk.archive_producers = 2): acknowledgements that came while the caller
 * was busy elsewhere, longer than the timeout, are progress, not silence;
 * and a failed batch's other producer is given up with nothing delivered.
 */
static void
test_batches_on_two_producers(void **state)
{
	BkKafkaSettings settings = settings_for_test(NULL);
	BkProducer *producers[2];
	EncodeSource sources[2];
	BkSendStats stats;
	BkError err;
	int64_t high_before;
	int64_t start_ms;

	for (int prodIdx = 0; prodIdx < 2; prodIdx++)
	{
		producers[prodIdx] = bk_producer_new(&settings, NULL);
		assert_non_null(producers[prodIdx]);
		batch_with_object(producers[prodIdx], &sources[prodIdx], 100 * 1024);
	}
	/* Neither producer is polled for longer than timeout and slack. */
	usleep((TIMEOUT_MS + BK_KAFKA_TIMEOUT_SLACK_MS + 500) * 1000);
	for (int prodIdx = 0; prodIdx < 2; prodIdx++)
	{
		if (!bk_producer_batch_wait(producers[prodIdx], NULL, NULL, &stats,
									&err))
			fail_msg("producer %d: %s", prodIdx, err.message);
		assert_int_equal(stats.messages, 2);
		source_end(&sources[prodIdx]);
	}

	/*
	 * The broker goes away with a batch open on each (the archiver's failed
	 * batch): the first wait fails within its bound, the other batch is
	 * given up at once, nothing of either is delivered later, and both
	 * producers send again once the broker is back.
	 */
	high_before = topic_high(producers[0]);
	rd_kafka_mock_broker_set_down(mock, 1);
	for (int prodIdx = 0; prodIdx < 2; prodIdx++)
		batch_with_object(producers[prodIdx], &sources[prodIdx], 10 * 1024);
	start_ms = bk_monotonic_ms();
	assert_false(bk_producer_batch_wait(producers[0], NULL, NULL, NULL, &err));
	assert_error_code(&err, BK_ERR_TIMEOUT);
	assert_true(bk_monotonic_ms() - start_ms <
				TIMEOUT_MS + BK_KAFKA_TIMEOUT_SLACK_MS + 1500);
	bk_producer_batch_abandon(producers[1]);
	assert_false(bk_producer_batch_wait(producers[1], NULL, NULL, NULL, &err));
	assert_error_contains(&err, "no Kafka batch is open");
	bk_producer_batch_abandon(producers[1]); /* none open: nothing done */
	for (int prodIdx = 0; prodIdx < 2; prodIdx++)
		source_end(&sources[prodIdx]);
	rd_kafka_mock_broker_set_up(mock, 1);
	for (int prodIdx = 0; prodIdx < 2; prodIdx++)
	{
		batch_with_object(producers[prodIdx], &sources[prodIdx], 10 * 1024);
		if (!bk_producer_batch_wait(producers[prodIdx], NULL, NULL, &stats,
									&err))
			fail_msg("producer %d after the outage: %s", prodIdx, err.message);
		assert_int_equal(stats.messages, 1);
		source_end(&sources[prodIdx]);
	}
	sleep(1); /* anything given up that still went out would be there now */
	assert_int_equal(topic_high(producers[0]) - high_before, 2);
	for (int prodIdx = 0; prodIdx < 2; prodIdx++)
		bk_producer_free(producers[prodIdx]);
}

/*
 * Once a batch's last object is queued nothing more is coming: waiting for
 * the acknowledgements must send the last, partly filled produce request at
 * once, not after linger.ms (here far longer than a mock round trip).
 */
static void
test_batch_end_not_lingering(void **state)
{
	BkKafkaSettings settings = settings_for_test("linger.ms=1500");
	BkProducer *producer = bk_producer_new(&settings, NULL);
	EncodeSource source;
	BkSendStats stats;
	BkError err;
	int64_t waited_ms = 0;

	assert_non_null(producer);
	/* The first batch connects and learns the topic; the second is timed. */
	for (int round = 0; round < 2; round++)
	{
		int64_t started;

		assert_true(bk_producer_batch_begin(producer, &err));
		source_begin(&source, 1000);
		if (!bk_producer_batch_add(producer, TOPIC, "src/obj", 7, next_frame,
								   &source, NULL, NULL, NULL, &err))
			fail_msg("%s", err.message);
		started = bk_monotonic_ms();
		if (!bk_producer_batch_wait(producer, NULL, NULL, &stats, &err))
			fail_msg("%s", err.message);
		waited_ms = bk_monotonic_ms() - started;
		source_end(&source);
		assert_int_equal(stats.messages, 1);
	}
	if (waited_ms >= 750)
		fail_msg("the last request waited %lld ms, linger.ms is 1500",
				 (long long) waited_ms);
	bk_producer_free(producer);
}

/*
 * A producer that lingers long (the snapshot worker's) sends a request only
 * once a full one is queued.  Its window must hold two full requests and a
 * message, or every time it filled, a partly filled request would wait out
 * linger.ms with nothing in flight: here a window of one byte, widened,
 * sends more than two full requests (batch.size is 1,000,000 bytes at this
 * chunk size) without a single wait, where each chunk would have waited.
 */
static void
test_long_linger_widens_window(void **state)
{
	BkKafkaSettings settings = settings_for_test(NULL);
	BkProducer *producer;
	EncodeSource source;
	BkSendStats stats;
	BkError err;
	char value[32];
	size_t value_len = sizeof(value);
	int64_t elapsed_ms = 0;

	settings.linger_ms = 1500;
	settings.window_bytes = 1;
	producer = bk_producer_new(&settings, &err);
	assert_non_null(producer);
	/* The first batch connects and learns the topic; the second is timed. */
	for (int round = 0; round < 2; round++)
	{
		int64_t started = bk_monotonic_ms();

		assert_true(bk_producer_batch_begin(producer, &err));
		source_begin(&source, 48 * 64 * 1024);
		if (!bk_producer_batch_add(producer, TOPIC, "src/obj", 7, next_frame,
								   &source, NULL, NULL, NULL, &err) ||
			!bk_producer_batch_wait(producer, NULL, NULL, &stats, &err))
			fail_msg("%s", err.message);
		elapsed_ms = bk_monotonic_ms() - started;
		source_end(&source);
		assert_int_equal(stats.messages, 48);
	}
	assert_int_equal(
		rd_kafka_conf_get(rd_kafka_conf(bk_producer_handle(producer)),
						  "linger.ms", value, &value_len),
		RD_KAFKA_CONF_OK);
	assert_int_equal((int) strtod(value, NULL), 1500);
	if (elapsed_ms >= 750)
		fail_msg("48 chunks took %lld ms with linger.ms 1500",
				 (long long) elapsed_ms);
	bk_producer_free(producer);

	/* The user's properties still win. */
	settings.properties = "linger.ms=20";
	producer = bk_producer_new(&settings, &err);
	assert_non_null(producer);
	if (!bk_producer_connect(producer, NULL, &err))
		fail_msg("%s", err.message);
	value_len = sizeof(value);
	assert_int_equal(
		rd_kafka_conf_get(rd_kafka_conf(bk_producer_handle(producer)),
						  "linger.ms", value, &value_len),
		RD_KAFKA_CONF_OK);
	assert_int_equal((int) strtod(value, NULL), 20);
	bk_producer_free(producer);
}

/* Auditors see metadata in headers, never data. */
static void
test_frame_headers(void **state)
{
	uint8_t data[100];
	FrameList frames;
	BkFrame frame;
	BkError err;
	rd_kafka_headers_t *headers;
	const void *value;
	size_t size;

	test_fill(data, sizeof(data), 9, false);
	test_encode(&key, 4096, "000000010000000000000002", data, sizeof(data),
				&frames);
	assert_true(bk_frame_parse(frames.data[0], frames.len[0], &frame, &err));
	headers = bk_frame_headers(&frame);
#define EXPECT_HEADER(name, expected)                                          \
	do                                                                         \
	{                                                                          \
		assert_int_equal(                                                      \
			rd_kafka_header_get_last(headers, name, &value, &size),            \
			RD_KAFKA_RESP_ERR_NO_ERROR);                                       \
		assert_int_equal(size, strlen(expected));                              \
		assert_memory_equal(value, expected, size);                            \
	} while (0)
	EXPECT_HEADER("bk-format", "1");
	EXPECT_HEADER("bk-source", "test-source");
	EXPECT_HEADER("bk-kind", "wal");
	EXPECT_HEADER("bk-object", "000000010000000000000002");
	EXPECT_HEADER("bk-chunk-index", "0");
	EXPECT_HEADER("bk-chunk-count", "1");
	EXPECT_HEADER("bk-object-size", "100");
	EXPECT_HEADER("bk-chunk-size", "100");
	EXPECT_HEADER("bk-meta-lsn", "0/1000000");
	EXPECT_HEADER("bk-meta-timeline", "1");
	assert_int_equal(
		rd_kafka_header_get_last(headers, "bk-fingerprint", &value, &size),
		RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_int_equal(size, 64);
	rd_kafka_headers_destroy(headers);
	test_frames_free(&frames);
}

/*
 * One produce request carries up to four chunks (one broker append and
 * flush), never more than the topics bk creates accept, never less than one
 * message.
 */
static void
test_batch_limits(void **state)
{
	size_t one_mib = bk_kafka_message_max(1024 * 1024);
	size_t topic_max = bk_kafka_message_max(BK_CHUNK_SIZE_MAX);

	assert_int_equal(bk_kafka_batch_max(1024 * 1024),
					 BK_KAFKA_BATCH_CHUNKS * one_mib);
	assert_true(bk_kafka_batch_max(1024 * 1024) <= topic_max);
	assert_int_equal(bk_kafka_batch_max(BK_CHUNK_SIZE_MAX), topic_max);
	assert_int_equal(bk_kafka_batch_max(8 * 1024 * 1024), topic_max);
	assert_int_equal(bk_kafka_batch_max(BK_CHUNK_SIZE_MIN), 1000000);
}

/* Consume the first message of a one-partition mock topic. */
static rd_kafka_message_t *
consume_first(rd_kafka_t **consumer, const char *topic)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_topic_partition_list_t *assignment;
	rd_kafka_message_t *msg = NULL;
	char errstr[256];
	int64_t deadline = bk_monotonic_ms() + 10 * TIMEOUT_MS;

	assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers,
									   errstr, sizeof(errstr)),
					 RD_KAFKA_CONF_OK);
	assert_int_equal(
		rd_kafka_conf_set(conf, "group.id", "bk-clock", errstr, sizeof(errstr)),
		RD_KAFKA_CONF_OK);
	assert_int_equal(
		rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr)),
		RD_KAFKA_CONF_OK);
	*consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	assert_non_null(*consumer);
	assignment = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(assignment, topic, 0)->offset =
		RD_KAFKA_OFFSET_BEGINNING;
	assert_int_equal(rd_kafka_assign(*consumer, assignment), 0);
	rd_kafka_topic_partition_list_destroy(assignment);
	while (bk_monotonic_ms() < deadline)
	{
		msg = rd_kafka_consumer_poll(*consumer, 100);
		if (msg == NULL)
			continue;
		if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
			break;
		rd_kafka_message_destroy(msg);
		msg = NULL;
	}
	assert_non_null(msg);
	return msg;
}

/* What the alarm callback saw. */
typedef struct AlarmSeen
{
	int count;
	BkKafkaAlarm last;
} AlarmSeen;

static void
count_alarm(void *arg, const BkKafkaAlarm *alarm)
{
	AlarmSeen *seen = arg;

	seen->count++;
	seen->last = *alarm;
}

static bool
send_one(BkProducer *producer, BkError *err)
{
	EncodeSource source;
	bool ok;

	source_begin(&source, 10 * 1024);
	ok = bk_producer_send_object(producer, TOPIC, "mock", 4, next_frame,
								 &source, NULL, NULL, NULL, err);
	source_end(&source);
	return ok;
}

/*
 * A real fatal idempotence error: the broker answers a produce request
 * after an acknowledged one with OUT_OF_ORDER_SEQUENCE_NUMBER, what a
 * leader that lost acknowledged messages answers.  librdkafka makes it
 * fatal; the send fails, the alarm is raised once (callback and one
 * producer-fatal audit event), the handle is replaced and the object is
 * sent again, and later sends raise nothing more.
 */
static void
test_fatal_error_raises_alarm(void **state)
{
	BkKafkaSettings settings = settings_for_test(NULL);
	AlarmSeen seen = {0};
	BkProducer *producer;
	rd_kafka_t *consumer;
	rd_kafka_message_t *msg;
	int64_t low = -1;
	int64_t high = -1;
	char *event;
	BkError err;

	assert_int_equal(rd_kafka_mock_topic_create(mock, "bk.audit", 1, 1), 0);
	settings.alarm_fn = count_alarm;
	settings.alarm_arg = &seen;
	settings.audit_topic = "bk.audit";
	settings.source_id = "mock";
	producer = bk_producer_new(&settings, NULL);
	assert_non_null(producer);
	if (!send_one(producer, &err))
		fail_msg("%s", err.message);
	assert_int_equal(seen.count, 0);

	rd_kafka_mock_push_request_errors(
		mock, 0 /* Produce */, 1,
		RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
	assert_false(send_one(producer, &err));
	assert_non_null(strstr(err.message, "failed fatally"));
	assert_int_equal(seen.count, 1);
	assert_string_equal(seen.last.error, "OUT_OF_ORDER_SEQUENCE_NUMBER");
	assert_string_equal(seen.last.topic, TOPIC);
	assert_non_null(strstr(seen.last.message, TOPIC));
	assert_non_null(strstr(seen.last.hint, "bk verify"));
	assert_non_null(strstr(seen.last.hint, "bk_snapshot()"));

	/* Sent again on a new handle; nothing raised twice. */
	for (int sendIdx = 0; sendIdx < 2; sendIdx++)
		if (!send_one(producer, &err))
			fail_msg("%s", err.message);
	assert_int_equal(seen.count, 1);
	bk_producer_free(producer);
	assert_int_equal(seen.count, 1);

	/* Exactly one audit event, naming the topic and the error. */
	msg = consume_first(&consumer, "bk.audit");
	assert_int_equal(rd_kafka_query_watermark_offsets(consumer, "bk.audit", 0,
													  &low, &high, 5000),
					 RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_int_equal(high - low, 1);
	event = strndup(msg->payload, msg->len);
	assert_non_null(strstr(event, "\"event\":\"producer-fatal\""));
	assert_non_null(strstr(event, "\"source\":\"mock\""));
	assert_non_null(strstr(event, "\"topic\":\"" TOPIC "\""));
	assert_non_null(
		strstr(event, "\"error\":\"OUT_OF_ORDER_SEQUENCE_NUMBER\""));
	assert_non_null(strstr(event, "\"fatal_errors\":1"));
	free(event);
	rd_kafka_message_destroy(msg);
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);
}

/*
 * The shipper gives up an attempt by broker time, never by a producer's
 * clock.  A source whose clock runs 2 h fast writes CreateTime stamps
 * 2 h ahead into a topic that lacks LogAppendTime (as an operator's topic
 * does by default; the mock broker keeps producer stamps too): such a
 * message must not make another source's attempt, whose last chunk the
 * broker stamped a second ago, look stalled.  Local time is well past
 * abandon_after throughout, so broker time alone decides here.
 */
static void
test_give_up_by_broker_time(void **state)
{
	const int64_t abandon_after = 10 * 60 * 1000;
	const int64_t now = bk_wall_ms();
	const int64_t local = 1000;
	const int64_t local_later = local + 2 * abandon_after;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *producer;
	rd_kafka_t *consumer;
	rd_kafka_message_t *msg;
	rd_kafka_timestamp_type_t type;
	char errstr[256];
	int64_t attempt_time;

	assert_int_equal(rd_kafka_mock_topic_create(mock, "bk.clock", 1, 1), 0);
	rd_kafka_conf_set(conf, "bootstrap.servers", brokers, NULL, 0);
	rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
	producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	assert_non_null(producer);
	assert_int_equal(
		rd_kafka_producev(
			producer, RD_KAFKA_V_TOPIC("bk.clock"), RD_KAFKA_V_VALUE("x", 1),
			RD_KAFKA_V_TIMESTAMP(now + 2 * 3600 * 1000), RD_KAFKA_V_END),
		RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_int_equal(rd_kafka_flush(producer, 10 * TIMEOUT_MS),
					 RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_destroy(producer);

	msg = consume_first(&consumer, "bk.clock");
	assert_int_equal(rd_kafka_message_timestamp(msg, &type),
					 now + 2 * 3600 * 1000);
	assert_int_equal(type, RD_KAFKA_TIMESTAMP_CREATE_TIME);
	assert_int_equal(bk_kafka_broker_time(msg), -1);
	attempt_time = now - 1000;
	assert_false(bk_kafka_attempt_stalled(&attempt_time,
										  bk_kafka_broker_time(msg), local,
										  local_later, abandon_after));
	assert_int_equal(attempt_time, now - 1000);
	rd_kafka_message_destroy(msg);
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);

	/* Broker time past abandon_after: given up; up to it: not yet. */
	attempt_time = now;
	assert_false(bk_kafka_attempt_stalled(&attempt_time, now + abandon_after,
										  local, local_later, abandon_after));
	assert_true(bk_kafka_attempt_stalled(&attempt_time, now + abandon_after + 1,
										 local, local_later, abandon_after));

	/*
	 * An attempt whose newest chunk had no broker time (a topic switched to
	 * LogAppendTime meanwhile) is timed from the next broker time, which is
	 * later than that chunk: never from an older clock.
	 */
	attempt_time = -1;
	assert_false(bk_kafka_attempt_stalled(&attempt_time, -1, local, local_later,
										  abandon_after));
	assert_int_equal(attempt_time, -1);
	assert_false(bk_kafka_attempt_stalled(&attempt_time, now, local,
										  local_later, abandon_after));
	assert_int_equal(attempt_time, now);
	assert_false(bk_kafka_attempt_stalled(&attempt_time, now + abandon_after,
										  local, local_later, abandon_after));
	assert_true(bk_kafka_attempt_stalled(&attempt_time, now + abandon_after + 1,
										 local, local_later, abandon_after));
}

/*
 * Broker time alone must not give an attempt up: a broker clock stepped
 * forward (NTP), or a partition leader moved to a broker whose clock runs
 * ahead, stamps the next message hours "later" while the attempt's next
 * chunk, acknowledged like the others, is seconds away.  The shipper's own
 * monotonic clock must agree.
 */
static void
test_give_up_needs_both_clocks(void **state)
{
	const int64_t abandon_after = 10 * 60 * 1000;
	const int64_t now = bk_wall_ms();
	const int64_t local = 5000; /* any CLOCK_MONOTONIC reading */
	int64_t attempt_time;

	/* The broker's clock jumps 2 x abandon_after, ours moved 1 s: kept. */
	attempt_time = now;
	assert_false(bk_kafka_attempt_stalled(&attempt_time,
										  now + 2 * abandon_after, local,
										  local + 1000, abandon_after));
	assert_int_equal(attempt_time, now);

	/* Ours up to abandon_after: still kept; past it too: given up. */
	assert_false(
		bk_kafka_attempt_stalled(&attempt_time, now + 2 * abandon_after, local,
								 local + abandon_after, abandon_after));
	assert_true(bk_kafka_attempt_stalled(&attempt_time, now + 2 * abandon_after,
										 local, local + abandon_after + 1,
										 abandon_after));

	/*
	 * Ours past abandon_after, the broker's not (a shipper held up, or one
	 * reading a backlog slowly): kept.
	 */
	assert_false(bk_kafka_attempt_stalled(&attempt_time, now + abandon_after,
										  local, local + 2 * abandon_after,
										  abandon_after));
	assert_false(bk_kafka_attempt_stalled(&attempt_time, now + 1000, local,
										  local + 2 * abandon_after,
										  abandon_after));

	/* No broker time (CreateTime): never, however long ours. */
	assert_false(bk_kafka_attempt_stalled(
		&attempt_time, -1, local, local + 100 * abandon_after, abandon_after));
	assert_int_equal(attempt_time, now);
	attempt_time = -1;
	assert_false(bk_kafka_attempt_stalled(
		&attempt_time, -1, local, local + 100 * abandon_after, abandon_after));
	assert_int_equal(attempt_time, -1);
}

/*
 * An audit topic Kafka cannot take (no leader for its partition) holds the
 * next object back for a bounded moment only, not for kafka_timeout: the
 * producer-fatal event waits 2 s at most, and is not tried again before a
 * minute has passed.
 */
static void
test_fatal_alarm_audit_topic_stuck(void **state)
{
	BkKafkaSettings settings = settings_for_test(NULL);
	AlarmSeen seen = {0};
	BkProducer *producer;
	int64_t start;
	BkError err;

	assert_int_equal(rd_kafka_mock_topic_create(mock, "bk.audit.stuck", 1, 1),
					 0);
	rd_kafka_mock_topic_set_error(mock, "bk.audit.stuck",
								  RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
	settings.timeout_ms = 10000;
	settings.alarm_fn = count_alarm;
	settings.alarm_arg = &seen;
	settings.audit_topic = "bk.audit.stuck";
	settings.source_id = "mock";
	producer = bk_producer_new(&settings, NULL);
	assert_non_null(producer);
	if (!send_one(producer, &err))
		fail_msg("%s", err.message);
	rd_kafka_mock_push_request_errors(
		mock, 0 /* Produce */, 1,
		RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
	assert_false(send_one(producer, &err));
	assert_int_equal(seen.count, 1);

	/* The event cannot go: the object goes after 2 s, not 10. */
	start = bk_monotonic_ms();
	if (!send_one(producer, &err))
		fail_msg("%s", err.message);
	assert_true(bk_monotonic_ms() - start < 6000);
	/* Not tried again before a minute: no wait at all. */
	start = bk_monotonic_ms();
	if (!send_one(producer, &err))
		fail_msg("%s", err.message);
	assert_true(bk_monotonic_ms() - start < 1500);
	assert_int_equal(seen.count, 1);
	bk_producer_free(producer);
	rd_kafka_mock_topic_set_error(mock, "bk.audit.stuck",
								  RD_KAFKA_RESP_ERR_NO_ERROR);
}

/*
 * A producer closed with an alarm's event unsent (the error found by its
 * last send) still sends it: the agent closes a snapshot's producer at
 * the snapshot's end, the archiver its producers at a reload.
 */
static void
test_fatal_alarm_event_sent_at_free(void **state)
{
	BkKafkaSettings settings = settings_for_test(NULL);
	AlarmSeen seen = {0};
	BkProducer *producer;
	rd_kafka_t *consumer;
	rd_kafka_message_t *msg;
	int64_t low = -1;
	int64_t high = -1;
	char *event;
	BkError err;

	assert_int_equal(rd_kafka_mock_topic_create(mock, "bk.audit.free", 1, 1),
					 0);
	settings.alarm_fn = count_alarm;
	settings.alarm_arg = &seen;
	settings.audit_topic = "bk.audit.free";
	settings.source_id = "mock";
	producer = bk_producer_new(&settings, NULL);
	assert_non_null(producer);
	if (!send_one(producer, &err))
		fail_msg("%s", err.message);
	rd_kafka_mock_push_request_errors(
		mock, 0 /* Produce */, 1,
		RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
	assert_false(send_one(producer, &err));
	assert_int_equal(seen.count, 1);
	bk_producer_free(producer);
	assert_int_equal(seen.count, 1);

	msg = consume_first(&consumer, "bk.audit.free");
	event = strndup(msg->payload, msg->len);
	assert_non_null(strstr(event, "\"event\":\"producer-fatal\""));
	free(event);
	assert_int_equal(rd_kafka_query_watermark_offsets(consumer, "bk.audit.free",
													  0, &low, &high, 5000),
					 RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_int_equal(high - low, 1);
	rd_kafka_message_destroy(msg);
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);
}

/*
 * A batch one message of which librdkafka has reported timed out while the
 * rest are not reported yet: the batch fails at once with that timeout,
 * named.  It used to wait for the rest, at least until they timed out too,
 * and with the broker down often for the whole silence bound (the scan
 * after the one that failed the first waits out the reconnect backoff),
 * then to report the batch silent, "no delivery report", its known timeout
 * lost.  The second object is queued once the first has timed out in
 * librdkafka, its report not yet served: the wait then begins with one
 * message failed and one that cannot time out before message.timeout.ms.
 */
static void
test_batch_first_timeout_reported_at_once(void **state)
{
	/* The first report is not held back by a long reconnect backoff. */
	BkKafkaSettings settings =
		settings_for_test("reconnect.backoff.max.ms=500");
	BkProducer *producer = bk_producer_new(&settings, NULL);
	EncodeSource sources[2];
	BkError err;
	int64_t start;
	int64_t elapsed;
	bool sent;

	assert_non_null(producer);
	/* The partition count read while the broker is up. */
	batch_with_object(producer, &sources[0], 10 * 1024);
	if (!bk_producer_batch_wait(producer, NULL, NULL, NULL, &err))
		fail_msg("%s", err.message);
	source_end(&sources[0]);

	rd_kafka_mock_broker_set_down(mock, 1);
	batch_with_object(producer, &sources[0], 10 * 1024);
	/* Its timeout, a scan a second, and more: nothing polls meanwhile. */
	usleep((TIMEOUT_MS + 2500) * 1000);
	source_begin(&sources[1], 10 * 1024);
	if (!bk_producer_batch_add(producer, TOPIC, "src/obj", 7, next_frame,
							   &sources[1], NULL, NULL, NULL, &err))
		fail_msg("%s", err.message);
	start = bk_monotonic_ms();
	sent = bk_producer_batch_wait(producer, NULL, NULL, NULL, &err);
	elapsed = bk_monotonic_ms() - start;
	rd_kafka_mock_broker_set_up(mock, 1);
	for (int idx = 0; idx < 2; idx++)
		source_end(&sources[idx]);
	bk_producer_free(producer);
	assert_false(sent);
	assert_error_code(&err, BK_ERR_TIMEOUT);
	assert_error_contains(&err, "Kafka did not acknowledge chunk 0 of "
								"\"000000010000000000000001\" on topic "
								"\"bk.wal\": Local: Message timed out");
	assert_true(strstr(err.hint, "message.timeout.ms (2000 ms)") != NULL);
	/*
	 * The second message cannot be reported before its own timeout, which
	 * the wait used to await (2.2 to 2.5 s measured); now it takes only
	 * the purge of what is left (1 ms measured).
	 */
	if (elapsed >= TIMEOUT_MS)
		fail_msg("the batch failed after %" PRId64 " ms of waiting, not at "
				 "once: %s",
				 elapsed, err.message);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_send_acknowledged, mock_reset),
		cmocka_unit_test_setup(test_request_messages, mock_reset),
		cmocka_unit_test_setup(test_send_wait_max, mock_reset),
		cmocka_unit_test_setup(test_small_chunks_not_timed_out, mock_reset),
		cmocka_unit_test_setup(test_broker_down_bounded, mock_reset),
		cmocka_unit_test_setup(test_broker_down_window_bounded, mock_reset),
		cmocka_unit_test_setup(test_transient_errors_retried, mock_reset),
		cmocka_unit_test_setup(test_permanent_error_reported, mock_reset),
		cmocka_unit_test_setup(test_topic_refused_at_once, mock_reset),
		cmocka_unit_test_setup(test_keyless_messages_left_to_librdkafka,
							   mock_reset),
		cmocka_unit_test_setup(test_fatal_error_recreates_handle, mock_reset),
		cmocka_unit_test_setup(test_fatal_error_raises_alarm, mock_reset),
		cmocka_unit_test_setup(test_fatal_alarm_audit_topic_stuck, mock_reset),
		cmocka_unit_test_setup(test_fatal_alarm_event_sent_at_free, mock_reset),
		cmocka_unit_test_setup(test_interrupt, mock_reset),
		cmocka_unit_test_setup(test_configuration_checks, mock_reset),
		cmocka_unit_test_setup(test_batch, mock_reset),
		cmocka_unit_test_setup(test_batch_end_not_lingering, mock_reset),
		cmocka_unit_test_setup(test_long_linger_widens_window, mock_reset),
		cmocka_unit_test_setup(test_batches_on_two_producers, mock_reset),
		cmocka_unit_test_setup(test_frame_headers, mock_reset),
		cmocka_unit_test_setup(test_batch_limits, mock_reset),
		cmocka_unit_test_setup(test_give_up_by_broker_time, mock_reset),
		cmocka_unit_test_setup(test_give_up_needs_both_clocks, mock_reset),
		cmocka_unit_test_setup(test_batch_first_timeout_reported_at_once,
							   mock_reset),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, setup, teardown);
}
