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

#define TOPIC    "bk.wal"
#define MESSAGES 10

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
 * group settings), with the assignment strategy kafka_properties chose;
 * polled until it has consumed every message or 20 s passed.  Returns the
 * messages consumed.
 */
static int
consume_as_shipper(Shipper *shipper, const char *strategy)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_topic_partition_list_t *subscription;
	char errstr[256];
	int64_t deadline = bk_monotonic_ms() + 20000;
	int consumed = 0;

#define SET(key, value)                                                        \
	assert_int_equal(                                                          \
		rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)),           \
		RD_KAFKA_CONF_OK)
	SET("bootstrap.servers", brokers);
	SET("log_level", "0");
	SET("group.id", strategy[0] ? strategy : "eager");
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
	rd_kafka_topic_partition_list_add(subscription, TOPIC,
									  RD_KAFKA_PARTITION_UA);
	assert_int_equal(rd_kafka_subscribe(shipper->consumer, subscription),
					 RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_topic_partition_list_destroy(subscription);

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
close_shipper(Shipper *shipper)
{
	rd_kafka_consumer_close(shipper->consumer);
	rd_kafka_destroy(shipper->consumer);
	while (shipper->partitions != NULL)
		partition_drop(shipper, shipper->partitions->topic,
					   shipper->partitions->partition);
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
	close_shipper(&shipper);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eager_assignment),
		cmocka_unit_test(test_cooperative_assignment),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, setup, teardown);
}
