/*
 * test_shipper.c
 *		bk-shipper's consumer-group handling, with librdkafka's mock
 *		cluster: the shipper's own source is compiled in (its main renamed),
 *		so its rebalance callback is the one the consumer calls.
 *
 * kafka_properties may choose the assignment strategy; with a cooperative
 * one, librdkafka refuses rd_kafka_assign() in the rebalance callback, and
 * a shipper that ignored that refusal consumed nothing while it logged the
 * partitions as assigned.
 */
#include "testutil.h"

#define main shipper_main
#include "../../shipper/shipper.c"
#undef main

#include <librdkafka/rdkafka_mock.h>
#include <sys/stat.h>

#define TOPIC    "bk.wal"
#define MESSAGES 10

#define BATCH_TOPIC "bk.batch.wal"
#define AUDIT_TOPIC "bk.batch.audit"
/* test_repeated_chunks: its own topic, as its own group (AUDIT_TOPIC too). */
#define REPEAT_TOPIC "bk.repeat.wal"

/*
 * Directory fsyncs fail while set (--wrap=fsync): test_commit_batch.  File
 * fsyncs fail for a full file system (ENOSPC, as delayed allocation or NFS
 * reports it) while fail_file_fsync_no_space is set.
 */
static bool fail_dir_fsync;
static bool fail_file_fsync_no_space;
extern int __real_fsync(int fd);
extern int __wrap_fsync(int fd);

int
__wrap_fsync(int fd)
{
	struct stat st;

	if (fail_dir_fsync && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
	{
		errno = EIO;
		return -1;
	}
	if (fail_file_fsync_no_space && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
	{
		errno = ENOSPC;
		return -1;
	}
	return __real_fsync(fd);
}

static rd_kafka_t *mock_owner;
static rd_kafka_mock_cluster_t *mock;
static char brokers[256];

static int
setup(void **state)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *producer;
	char errstr[256];

	rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
	mock_owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	assert_non_null(mock_owner);
	mock = rd_kafka_mock_cluster_new(mock_owner, 1);
	assert_non_null(mock);
	bk_strlcpy(brokers, rd_kafka_mock_cluster_bootstraps(mock),
			   sizeof(brokers));
	assert_int_equal(rd_kafka_mock_topic_create(mock, TOPIC, 2, 1), 0);

	conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "bootstrap.servers", brokers, NULL, 0);
	rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
	producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	assert_non_null(producer);
	for (int msgIdx = 0; msgIdx < MESSAGES; msgIdx++)
		assert_int_equal(rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(TOPIC),
										   RD_KAFKA_V_PARTITION(msgIdx % 2),
										   RD_KAFKA_V_VALUE("x", 1),
										   RD_KAFKA_V_END),
						 RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_int_equal(rd_kafka_flush(producer, 10000),
					 RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_destroy(producer);
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
 * A consumer set up as shipper_setup sets it up (its callbacks, opaque and
 * group settings), in group, with the assignment strategy kafka_properties
 * chose (""; librdkafka's default), subscribed to topic.
 */
static void
subscribe_as_shipper(Shipper *shipper, const char *topic, const char *group,
					 const char *strategy)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_topic_partition_list_t *subscription;
	char errstr[256];

#define SET(key, value)                                                        \
	assert_int_equal(                                                          \
		rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)),           \
		RD_KAFKA_CONF_OK)
	SET("bootstrap.servers", brokers);
	SET("log_level", "0");
	SET("group.id", group);
	SET("group.instance.id", "unit-shipper");
	SET("enable.auto.commit", "false");
	SET("enable.auto.offset.store", "false");
	SET("auto.offset.reset", "earliest");
	if (strategy[0])
		SET("partition.assignment.strategy", strategy);
#undef SET
	rd_kafka_conf_set_opaque(conf, shipper);
	rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
	rd_kafka_conf_set_error_cb(conf, consumer_error_cb);
	shipper->consumer =
		rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	assert_non_null(shipper->consumer);
	rd_kafka_poll_set_consumer(shipper->consumer);
	subscription = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(subscription, topic,
									  RD_KAFKA_PARTITION_UA);
	assert_int_equal(rd_kafka_subscribe(shipper->consumer, subscription),
					 RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_topic_partition_list_destroy(subscription);
}

/*
 * Subscribed to TOPIC as the shipper, polled until every message was
 * consumed or 20 s passed.  Returns the messages consumed.
 */
static int
consume_as_shipper(Shipper *shipper, const char *strategy)
{
	int64_t deadline = bk_monotonic_ms() + 20000;
	int consumed = 0;

	subscribe_as_shipper(shipper, TOPIC, strategy[0] ? strategy : "eager",
						 strategy);
	while (consumed < MESSAGES && !shipper->fatal &&
		   bk_monotonic_ms() < deadline)
	{
		rd_kafka_message_t *msg =
			rd_kafka_consumer_poll(shipper->consumer, 100);

		if (msg == NULL)
			continue;
		if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
			consumed++;
		rd_kafka_message_destroy(msg);
	}
	return consumed;
}

static void
run_strategy(const char *strategy)
{
	BkCliConfig config;
	Shipper shipper;

	log_level = LOG_ERROR;
	bk_cli_config_init(&config);
	memset(&shipper, 0, sizeof(shipper));
	shipper.config = &config;
	shipper.sink.log_fn = kafka_log;
	assert_int_equal(consume_as_shipper(&shipper, strategy), MESSAGES);
	assert_false(shipper.fatal);
	/* Both partitions are the shipper's, and it says so. */
	assert_non_null(partition_find(&shipper, TOPIC, 0));
	assert_non_null(partition_find(&shipper, TOPIC, 1));
	/* Closing gives them up as cleanly. */
	shipper_close(&shipper);
	assert_false(shipper.fatal);
	assert_null(shipper.partitions);
	bk_cli_config_free(&config);
}

/* librdkafka's default strategies: an eager rebalance protocol. */
static void
test_eager_assignment(void **state)
{
	run_strategy("");
}

/* A cooperative strategy set in kafka_properties consumes all the same. */
static void
test_cooperative_assignment(void **state)
{
	run_strategy("cooperative-sticky");
}

/* WAL segment n's name. */
static void
segment_name(int n, char *out, size_t out_len)
{
	snprintf(out, out_len, "0000000100000000%08X", n);
}

/* A producer of the mock cluster. */
static rd_kafka_t *
mock_producer(void)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *producer;
	char errstr[256];

	rd_kafka_conf_set(conf, "bootstrap.servers", brokers, NULL, 0);
	rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
	producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	assert_non_null(producer);
	return producer;
}

/* Produce one frame to partition 0 of topic. */
static void
produce_frame(rd_kafka_t *producer, const char *topic, const uint8_t *frame,
			  size_t len)
{
	assert_int_equal(rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic),
									   RD_KAFKA_V_PARTITION(0),
									   RD_KAFKA_V_VALUE((void *) frame, len),
									   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
									   RD_KAFKA_V_END),
					 RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void
producer_done(rd_kafka_t *producer)
{
	assert_int_equal(rd_kafka_flush(producer, 10000),
					 RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_destroy(producer);
}

/* Produce segments first .. first + count - 1, one frame each. */
static void
produce_segments(const BkKey *key, int first, int count)
{
	rd_kafka_t *producer = mock_producer();

	for (int segIdx = first; segIdx < first + count; segIdx++)
	{
		char name[32];
		uint8_t content[3000];
		FrameList frames;

		segment_name(segIdx, name, sizeof(name));
		test_fill(content, sizeof(content), (uint64_t) segIdx, true);
		test_encode(key, BK_CHUNK_SIZE_MIN, name, content, sizeof(content),
					&frames);
		assert_int_equal(frames.count, 1);
		produce_frame(producer, BATCH_TOPIC, frames.data[0], frames.len[0]);
		test_frames_free(&frames);
	}
	producer_done(producer);
}

/* Hand the shipper count messages of BATCH_TOPIC, as its main loop would. */
static void
handle_messages(Shipper *shipper, int count)
{
	int64_t deadline = bk_monotonic_ms() + 20000;
	int handled = 0;

	while (handled < count && bk_monotonic_ms() < deadline)
	{
		rd_kafka_message_t *msg =
			rd_kafka_consumer_poll(shipper->consumer, 100);

		if (msg == NULL)
			continue;
		if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			assert_true(handle_message(shipper, msg));
			handled++;
		}
		rd_kafka_message_destroy(msg);
	}
	assert_int_equal(handled, count);
}

static bool
segment_archived(Shipper *shipper, int n)
{
	char name[32];
	BkRepoStat stat;
	BkError err;

	segment_name(n, name, sizeof(name));
	assert_true(bk_repo_stat(shipper->repo, BK_REPO_ARCHIVE, "test-source",
							 BK_KIND_WAL, name, &stat, &err));
	return stat.exists;
}

/*
 * A shipper of topic (a WAL topic) into DIR/repo, reporting to AUDIT_TOPIC,
 * subscribed in group.
 */
static void
batch_shipper_open(Shipper *shipper, BkCliConfig *config, const char *dir,
				   const char *topic, const char *group)
{
	char location[600];
	BkRepoOptions options;
	BkKafkaSettings settings;
	BkError err;

	bk_cli_config_init(config);
	memset(shipper, 0, sizeof(*shipper));
	shipper->config = config;
	shipper->sink.log_fn = kafka_log;
	bk_strlcpy(shipper->instance_id, "unit-shipper",
			   sizeof(shipper->instance_id));
	bk_strlcpy(shipper->topics[0], topic, sizeof(shipper->topics[0]));
	shipper->topic_kinds[0] = BK_KIND_WAL;
	bk_strlcpy(shipper->audit_topic, AUDIT_TOPIC, sizeof(shipper->audit_topic));
	snprintf(location, sizeof(location), "%s/repo", dir);
	bk_repo_options_init(&options);
	shipper->repo = bk_repo_open_with(location, &options, true, &err);
	assert_non_null(shipper->repo);
	assert_true(bk_repo_spool_open(shipper->repo, "unit-shipper", &err));
	memset(&settings, 0, sizeof(settings));
	settings.brokers = brokers;
	settings.properties = "linger.ms=0;log_level=0";
	shipper->audit = bk_producer_new(&settings, &err);
	assert_non_null(shipper->audit);
	subscribe_as_shipper(shipper, topic, group, "");
}

/*
 * Objects that complete together are committed together, and until their
 * batch is durable they hold the partition's offset back, as objects still
 * arriving do: nothing is reported (no audit event), nothing is visible in
 * the repository, and the offset to commit stays at the first one.  A batch
 * that cannot be made durable reports nothing and moves no offset.
 */
static void
test_commit_batch(void **state)
{
	char *dir = test_mkdtemp();
	BkCliConfig config;
	Shipper shipper;
	Partition *p;
	BkKey key;
	BkKeyring ring;

	log_level = LOG_ERROR;
	test_key(&key, &ring);
	assert_int_equal(rd_kafka_mock_topic_create(mock, BATCH_TOPIC, 1, 1), 0);
	assert_int_equal(rd_kafka_mock_topic_create(mock, AUDIT_TOPIC, 1, 1), 0);
	produce_segments(&key, 1, 3);

	batch_shipper_open(&shipper, &config, dir, BATCH_TOPIC, "batch");

	/* Three complete objects: queued, not stored, the offset held at 0. */
	handle_messages(&shipper, 3);
	p = partition_find(&shipper, BATCH_TOPIC, 0);
	assert_non_null(p);
	assert_int_equal(shipper.commit_queued, 3);
	assert_int_equal(shipper.audit_queued, 0);
	assert_false(segment_archived(&shipper, 1));
	assert_int_equal(partition_safe_offset(p), 0);

	/* The batch: all three durable, then reported, in order. */
	assert_true(commit_flush(&shipper));
	assert_int_equal(shipper.commit_queued, 0);
	assert_int_equal(shipper.archived, 3);
	for (int segIdx = 1; segIdx <= 3; segIdx++)
		assert_true(segment_archived(&shipper, segIdx));
	assert_int_equal(shipper.audit_queued, 3);
	assert_int_equal(partition_safe_offset(p), 0); /* events not acked yet */
	assert_true(audit_flush(&shipper));
	assert_int_equal(partition_safe_offset(p), 3);

	/* A batch whose directory cannot be synced: nothing reported, held. */
	produce_segments(&key, 4, 2);
	handle_messages(&shipper, 2);
	fail_dir_fsync = true;
	assert_false(commit_flush(&shipper));
	fail_dir_fsync = false;
	assert_int_equal(shipper.archived, 3);
	assert_int_equal(shipper.audit_queued, 0);
	assert_int_equal(partition_safe_offset(p), 3);

	shipper_close(&shipper);
	bk_cli_config_free(&config);
	test_rmdir(dir);
	free(dir);
}

/*
 * A repository whose file system is full when the shipper starts (here its
 * first write, the marker): exit 5 (systemd starts it again), naming the
 * file, and a hint saying where to make room and that nothing was
 * committed in Kafka.
 */
static void
test_start_repository_full(void **state)
{
	char *dir = test_mkdtemp();
	char config[600];
	char repo[600];
	char out[600];
	char text[600];
	char *argv[] = {"bk-shipper", "--config", config, "--repo", repo, NULL};
	char *said = NULL;
	size_t said_len;
	int saved;
	int status;
	BkError err;

	log_level = LOG_ERROR;
	snprintf(config, sizeof(config), "%s/bk.conf", dir);
	snprintf(repo, sizeof(repo), "%s/repo", dir);
	snprintf(out, sizeof(out), "%s/stderr", dir);
	snprintf(text, sizeof(text), "kafka_brokers = %s\n", brokers);
	assert_true(bk_write_file_durable(config, text, strlen(text), 0600, &err));

	saved = test_stderr_to(out);
	optind = 0;
	fail_file_fsync_no_space = true;
	status = shipper_main(5, argv);
	fail_file_fsync_no_space = false;
	test_stderr_restore(saved);

	assert_true(bk_read_file(out, 65536, &said, &said_len, &err));
	if (status != BK_EXIT_UNAVAILABLE ||
		strstr(said, strerror(ENOSPC)) == NULL ||
		strstr(said, "HINT: The file system of the repository") == NULL ||
		strstr(said, repo) == NULL ||
		strstr(said, "nothing was committed in Kafka") == NULL)
		fail_msg("exit %d: %s", status, said);
	free(said);
	test_rmdir(dir);
	free(dir);
}

/* The next count messages of the shipper's consumer, not handled. */
static void
fetch_messages(Shipper *shipper, rd_kafka_message_t **out, int count)
{
	int64_t deadline = bk_monotonic_ms() + 20000;
	int got = 0;

	while (got < count && bk_monotonic_ms() < deadline)
	{
		rd_kafka_message_t *msg =
			rd_kafka_consumer_poll(shipper->consumer, 100);

		if (msg == NULL)
			continue;
		if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
			out[got++] = msg;
		else
			rd_kafka_message_destroy(msg);
	}
	assert_int_equal(got, count);
}

/* The segment is archived, and its object passes the keyless check. */
static void
assert_segment_whole(Shipper *shipper, int n, uint64_t size)
{
	char name[32];
	BkRepoStat stat;
	BkObjectTracker object;
	BkError err;

	segment_name(n, name, sizeof(name));
	assert_true(bk_repo_stat(shipper->repo, BK_REPO_ARCHIVE, "test-source",
							 BK_KIND_WAL, name, &stat, &err));
	assert_true(stat.exists);
	assert_int_equal(stat.size, size);
	if (!bk_repo_check_object(shipper->repo, BK_REPO_ARCHIVE, "test-source",
							  BK_KIND_WAL, name, name, &object, &err))
		fail_msg("%s", err.message);
}

/*
 * A chunk handed twice is skipped, not a reason to give its attempt up.
 * The idempotent producer can append a request twice (c0 c1 c0 c1 c2: every
 * chunk acknowledged); given up, the object was never stored while the
 * offsets were committed past it.  And a chunk handed again while its
 * attempt, complete, waits in the commit batch (a consumer's offset reset)
 * used to start the attempt again over the same spool file, cutting the
 * queued object short before it was stored.
 */
static void
test_repeated_chunks(void **state)
{
	char *dir = test_mkdtemp();
	const int order[] = {0, 1, 0, 1, 2};
	BkCliConfig config;
	Shipper shipper;
	Partition *p;
	BkKey key;
	BkKeyring ring;
	FrameList three, two;
	uint8_t content[10000];
	char name[32];
	rd_kafka_message_t *msgs[7];
	rd_kafka_t *producer;
	uint64_t size_three = 0, size_two = 0;

	log_level = LOG_ERROR;
	test_key(&key, &ring);
	assert_int_equal(rd_kafka_mock_topic_create(mock, REPEAT_TOPIC, 1, 1), 0);
	segment_name(70, name, sizeof(name));
	test_fill(content, sizeof(content), 70, false);
	test_encode(&key, BK_CHUNK_SIZE_MIN, name, content, sizeof(content),
				&three);
	assert_int_equal(three.count, 3);
	segment_name(71, name, sizeof(name));
	test_fill(content, 6000, 71, false);
	test_encode(&key, BK_CHUNK_SIZE_MIN, name, content, 6000, &two);
	assert_int_equal(two.count, 2);
	producer = mock_producer();
	for (int msgIdx = 0; msgIdx < 5; msgIdx++)
		produce_frame(producer, REPEAT_TOPIC, three.data[order[msgIdx]],
					  three.len[order[msgIdx]]);
	produce_frame(producer, REPEAT_TOPIC, two.data[0], two.len[0]);
	produce_frame(producer, REPEAT_TOPIC, two.data[1], two.len[1]);
	producer_done(producer);
	for (int chunk = 0; chunk < 3; chunk++)
		size_three += three.len[chunk];
	size_two = two.len[0] + two.len[1];

	batch_shipper_open(&shipper, &config, dir, REPEAT_TOPIC, "repeated");
	fetch_messages(&shipper, msgs, 7);
	for (int msgIdx = 0; msgIdx < 7; msgIdx++)
		assert_true(handle_message(&shipper, msgs[msgIdx]));
	assert_int_equal(shipper.commit_queued, 2);
	/* Segment 71's chunks again (an offset reset), its attempt queued. */
	assert_true(handle_message(&shipper, msgs[5]));
	assert_true(handle_message(&shipper, msgs[6]));
	assert_int_equal(shipper.commit_queued, 2);
	assert_true(commit_flush(&shipper));
	assert_true(audit_flush(&shipper));
	assert_int_equal(shipper.archived, 2);
	assert_int_equal(shipper.abandoned, 0);
	assert_int_equal(shipper.rejected, 0);
	assert_segment_whole(&shipper, 70, size_three);
	assert_segment_whole(&shipper, 71, size_two);
	p = partition_find(&shipper, REPEAT_TOPIC, 0);
	assert_non_null(p);
	assert_int_equal(partition_safe_offset(p), 7);

	for (int msgIdx = 0; msgIdx < 7; msgIdx++)
		rd_kafka_message_destroy(msgs[msgIdx]);
	test_frames_free(&three);
	test_frames_free(&two);
	shipper_close(&shipper);
	bk_cli_config_free(&config);
	test_rmdir(dir);
	free(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eager_assignment),
		cmocka_unit_test(test_cooperative_assignment),
		cmocka_unit_test(test_commit_batch),
		cmocka_unit_test(test_start_repository_full),
		cmocka_unit_test(test_repeated_chunks),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, setup, teardown);
}
