/*
 * bk_topics.c
 *		Topic creation and checks through librdkafka's Admin API.  See
 *		bk_topics.h for what is checked and why.
 */
#include "bk_topics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bk_frame.h"
#include "bk_kafka.h"
#include "bk_util.h"

static const char *const topic_suffixes[BK_TOPIC_COUNT] = {"wal", "snapshot",
														   "binlog", "audit"};

bool
bk_topic_name(const char *prefix, BkTopicKind kind, char *out, size_t out_len,
			  BkError *err)
{
	size_t prefix_len = strlen(prefix);

	if (prefix_len == 0 || prefix_len > BK_TOPIC_NAME_MAX - 10)
		return bk_error_set(err, BK_ERR_CONFIG,
							"topic prefix must be 1 to %d characters",
							BK_TOPIC_NAME_MAX - 10);
	for (size_t pos = 0; pos < prefix_len; pos++)
	{
		char c = prefix[pos];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return bk_error_set(
				err, BK_ERR_CONFIG,
				"topic prefix \"%s\" has a character Kafka does "
				"not allow in topic names (use A-Z a-z 0-9 . _ -)",
				prefix);
	}
	snprintf(out, out_len, "%s.%s", prefix, topic_suffixes[kind]);
	return true;
}

/* What we learn about one topic. */
typedef struct TopicState
{
	char name[BK_TOPIC_NAME_MAX + 1];
	BkTopicKind kind;
	bool exists;
	int partitions;
	int replication; /* smallest replica count of its partitions */
	char cleanup_policy[64];
	int64_t retention_ms;
	int64_t retention_bytes;
	int64_t max_message_bytes;
	int64_t min_insync;
	int64_t flush_messages;
	bool unclean_election;
	char timestamp_type[32]; /* message.timestamp.type; "": not reported */
} TopicState;

static void report_finding(BkTopicReportFn report, void *arg,
						   BkTopicResult *result, BkReportLevel level,
						   const char *topic, const char *fmt, ...)
	BK_PRINTF(6, 7);

static void
report_finding(BkTopicReportFn report, void *arg, BkTopicResult *result,
			   BkReportLevel level, const char *topic, const char *fmt, ...)
{
	char message[1024];
	va_list args;

	va_start(args, fmt);
	vsnprintf(message, sizeof(message), fmt, args);
	va_end(args);
	if (level == BK_REPORT_WARNING)
		result->warnings++;
	else if (level == BK_REPORT_ERROR)
		result->errors++;
	if (report != NULL)
		report(arg, level, topic, message);
}

static bool
read_metadata(rd_kafka_t *rk, TopicState *topics, int timeout_ms, int *brokers,
			  int32_t *first_broker, BkError *err)
{
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t kerr;

	kerr = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
	if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		bk_error_set(err, BK_ERR_KAFKA,
					 "could not read metadata from Kafka: %s",
					 rd_kafka_err2str(kerr));
		return bk_error_hint(
			err, "Check kafka_brokers and that the brokers are up.");
	}
	*brokers = md->broker_cnt;
	*first_broker = md->broker_cnt > 0 ? md->brokers[0].id : -1;
	for (int topicIdx = 0; topicIdx < BK_TOPIC_COUNT; topicIdx++)
	{
		TopicState *topic = &topics[topicIdx];

		topic->exists = false;
		for (int mdIdx = 0; mdIdx < md->topic_cnt; mdIdx++)
		{
			const rd_kafka_metadata_topic_t *mt = &md->topics[mdIdx];

			if (strcmp(mt->topic, topic->name) != 0 ||
				mt->err != RD_KAFKA_RESP_ERR_NO_ERROR || mt->partition_cnt == 0)
				continue;
			topic->exists = true;
			topic->partitions = mt->partition_cnt;
			topic->replication = mt->partitions[0].replica_cnt;
			for (int partIdx = 1; partIdx < mt->partition_cnt; partIdx++)
				if (mt->partitions[partIdx].replica_cnt < topic->replication)
					topic->replication = mt->partitions[partIdx].replica_cnt;
		}
	}
	rd_kafka_metadata_destroy(md);
	return true;
}

/* Wait for one admin result event of the given type. */
static rd_kafka_event_t *
admin_wait(rd_kafka_queue_t *queue, rd_kafka_event_type_t type, int timeout_ms,
		   const char *what, BkError *err)
{
	int64_t deadline = bk_monotonic_ms() + timeout_ms + 5000;

	while (bk_monotonic_ms() < deadline)
	{
		rd_kafka_event_t *event = rd_kafka_queue_poll(queue, 100);

		if (event == NULL)
			continue;
		if (rd_kafka_event_type(event) != type)
		{
			rd_kafka_event_destroy(event);
			continue;
		}
		if (rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			bk_error_set(err, BK_ERR_KAFKA, "%s failed: %s", what,
						 rd_kafka_event_error_string(event));
			rd_kafka_event_destroy(event);
			return NULL;
		}
		return event;
	}
	bk_error_set(err, BK_ERR_TIMEOUT, "%s: no answer from Kafka within %d ms",
				 what, timeout_ms);
	return NULL;
}

/*
 * A refusal that no retry will change: the settings or the account's rights
 * must change first (exit 3, not 5).
 */
static bool
creation_refused(rd_kafka_resp_err_t terr)
{
	switch (terr)
	{
		case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
		case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
		case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
		case RD_KAFKA_RESP_ERR_INVALID_REPLICA_ASSIGNMENT:
		case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
		case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
		case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
			return true;
		default:
			return false;
	}
}

static bool
create_topics(rd_kafka_t *rk, TopicState *topics, const BkTopicPolicy *policy,
			  int brokers, int timeout_ms, BkTopicReportFn report,
			  void *report_arg, BkTopicResult *result, BkError *err)
{
	rd_kafka_NewTopic_t *new_topics[BK_TOPIC_COUNT];
	int new_count = 0;
	int partitions = policy->partitions > 0 ? policy->partitions
											: BK_TOPIC_PARTITIONS_DEFAULT;
	int replication = policy->replication_factor > 0
						  ? policy->replication_factor
						  : (brokers < 3 ? brokers : 3);
	char message_max[32];
	char min_insync[16];
	rd_kafka_AdminOptions_t *options;
	rd_kafka_queue_t *queue;
	rd_kafka_event_t *event;
	const rd_kafka_CreateTopics_result_t *created;
	const rd_kafka_topic_result_t **results;
	size_t result_count;
	bool ok = true;

	/* Room for the largest chunk bk allows, so raising chunk_size later works. */
	snprintf(message_max, sizeof(message_max), "%zu",
			 bk_kafka_message_max(BK_CHUNK_SIZE_MAX));
	snprintf(min_insync, sizeof(min_insync), "%d", replication >= 3 ? 2 : 1);

	for (int topicIdx = 0; topicIdx < BK_TOPIC_COUNT; topicIdx++)
	{
		TopicState *topic = &topics[topicIdx];
		char errstr[256];
		char retention[32];
		rd_kafka_NewTopic_t *nt;

		if (topic->exists)
			continue;
		nt = rd_kafka_NewTopic_new(topic->name, partitions, replication, errstr,
								   sizeof(errstr));
		if (nt == NULL)
		{
			bk_error_set(err, BK_ERR_CONFIG, "topic \"%s\": %s", topic->name,
						 errstr);
			ok = false;
			break;
		}
		snprintf(retention, sizeof(retention), "%" PRId64,
				 topic->kind == BK_TOPIC_AUDIT
					 ? (policy->audit_retention_ms > 0
							? policy->audit_retention_ms
							: BK_TOPIC_AUDIT_RETENTION_DEFAULT_MS)
					 : (policy->retention_ms > 0
							? policy->retention_ms
							: BK_TOPIC_RETENTION_DEFAULT_MS));
		rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "delete");
		rd_kafka_NewTopic_set_config(nt, "retention.ms", retention);
		rd_kafka_NewTopic_set_config(nt, "retention.bytes", "-1");
		rd_kafka_NewTopic_set_config(nt, "max.message.bytes", message_max);
		rd_kafka_NewTopic_set_config(nt, "min.insync.replicas", min_insync);
		rd_kafka_NewTopic_set_config(nt, "unclean.leader.election.enable",
									 "false");
		/*
		 * The broker's clock stamps every message, so the shipper can judge
		 * how long ago an attempt stalled without trusting sources' clocks.
		 */
		rd_kafka_NewTopic_set_config(nt, "message.timestamp.type",
									 "LogAppendTime");
		/* One node acknowledges from its page cache unless it flushes. */
		if (brokers == 1)
			rd_kafka_NewTopic_set_config(nt, "flush.messages", "1");
		new_topics[new_count++] = nt;
	}
	if (!ok || new_count == 0)
	{
		rd_kafka_NewTopic_destroy_array(new_topics, (size_t) new_count);
		return ok;
	}
	/*
	 * The broker would refuse it too, but as a Kafka error: exit 5, which
	 * scripts and service managers take for "retry later", for ever.
	 */
	if (replication > brokers)
	{
		rd_kafka_NewTopic_destroy_array(new_topics, (size_t) new_count);
		bk_error_set(err, BK_ERR_CONFIG,
					 "topic_replication_factor = %d, but Kafka has %d "
					 "broker%s up: it cannot place %d replicas",
					 replication, brokers, brokers == 1 ? "" : "s",
					 replication);
		return bk_error_hint(err,
							 "Set topic_replication_factor to at most %d (or "
							 "leave it out: min(3, brokers)), or start or "
							 "add brokers.",
							 brokers);
	}

	options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
	rd_kafka_AdminOptions_set_operation_timeout(options, timeout_ms, NULL, 0);
	queue = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, new_topics, (size_t) new_count, options, queue);
	rd_kafka_NewTopic_destroy_array(new_topics, (size_t) new_count);
	rd_kafka_AdminOptions_destroy(options);

	event = admin_wait(queue, RD_KAFKA_EVENT_CREATETOPICS_RESULT, timeout_ms,
					   "creating the bk topics", err);
	if (event == NULL)
	{
		rd_kafka_queue_destroy(queue);
		return false;
	}
	created = rd_kafka_event_CreateTopics_result(event);
	results = rd_kafka_CreateTopics_result_topics(created, &result_count);
	for (size_t resIdx = 0; resIdx < result_count; resIdx++)
	{
		const char *name = rd_kafka_topic_result_name(results[resIdx]);
		rd_kafka_resp_err_t terr = rd_kafka_topic_result_error(results[resIdx]);

		if (terr == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			result->created++;
			report_finding(report, report_arg, result, BK_REPORT_INFO, name,
						   "created: %d partitions, replication factor %d, "
						   "cleanup.policy=delete",
						   partitions, replication);
		}
		else if (terr != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
		{
			bk_error_set(err,
						 creation_refused(terr) ? BK_ERR_CONFIG : BK_ERR_KAFKA,
						 "could not create topic \"%s\": %s", name,
						 rd_kafka_topic_result_error_string(results[resIdx]));
			ok = false;
		}
	}
	rd_kafka_event_destroy(event);
	rd_kafka_queue_destroy(queue);
	return ok;
}

static int64_t
parse_int64(const char *value)
{
	return value ? strtoll(value, NULL, 10) : -1;
}

static bool
describe_configs(rd_kafka_t *rk, TopicState *topics, int32_t broker_id,
				 int64_t *broker_flush_messages, int timeout_ms, BkError *err)
{
	rd_kafka_ConfigResource_t *resources[BK_TOPIC_COUNT + 1];
	int resource_count = 0;
	rd_kafka_AdminOptions_t *options;
	rd_kafka_queue_t *queue;
	rd_kafka_event_t *event;
	const rd_kafka_DescribeConfigs_result_t *described;
	const rd_kafka_ConfigResource_t **results;
	size_t result_count;
	char broker_name[16];

	for (int topicIdx = 0; topicIdx < BK_TOPIC_COUNT; topicIdx++)
		resources[resource_count++] = rd_kafka_ConfigResource_new(
			RD_KAFKA_RESOURCE_TOPIC, topics[topicIdx].name);
	snprintf(broker_name, sizeof(broker_name), "%d", (int) broker_id);
	if (broker_id >= 0)
		resources[resource_count++] =
			rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_BROKER, broker_name);

	options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
	rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, NULL, 0);
	queue = rd_kafka_queue_new(rk);
	rd_kafka_DescribeConfigs(rk, resources, (size_t) resource_count, options,
							 queue);
	rd_kafka_ConfigResource_destroy_array(resources, (size_t) resource_count);
	rd_kafka_AdminOptions_destroy(options);

	event = admin_wait(queue, RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT, timeout_ms,
					   "reading the bk topics' configuration", err);
	if (event == NULL)
	{
		rd_kafka_queue_destroy(queue);
		return false;
	}
	described = rd_kafka_event_DescribeConfigs_result(event);
	results =
		rd_kafka_DescribeConfigs_result_resources(described, &result_count);
	*broker_flush_messages = -1;
	for (size_t resIdx = 0; resIdx < result_count; resIdx++)
	{
		const rd_kafka_ConfigResource_t *res = results[resIdx];
		const rd_kafka_ConfigEntry_t **entries;
		size_t entry_count;
		TopicState *topic = NULL;
		bool is_broker =
			rd_kafka_ConfigResource_type(res) == RD_KAFKA_RESOURCE_BROKER;

		if (rd_kafka_ConfigResource_error(res) != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			bk_error_set(err, BK_ERR_KAFKA,
						 "reading configuration of %s \"%s\": %s",
						 is_broker ? "broker" : "topic",
						 rd_kafka_ConfigResource_name(res),
						 rd_kafka_ConfigResource_error_string(res));
			rd_kafka_event_destroy(event);
			rd_kafka_queue_destroy(queue);
			return false;
		}
		for (int topicIdx = 0; !is_broker && topicIdx < BK_TOPIC_COUNT;
			 topicIdx++)
			if (strcmp(topics[topicIdx].name,
					   rd_kafka_ConfigResource_name(res)) == 0)
				topic = &topics[topicIdx];
		entries = rd_kafka_ConfigResource_configs(res, &entry_count);
		for (size_t entryIdx = 0; entryIdx < entry_count; entryIdx++)
		{
			const char *name = rd_kafka_ConfigEntry_name(entries[entryIdx]);
			const char *value = rd_kafka_ConfigEntry_value(entries[entryIdx]);

			if (is_broker)
			{
				if (strcmp(name, "log.flush.interval.messages") == 0)
					*broker_flush_messages = parse_int64(value);
				continue;
			}
			if (topic == NULL)
				continue;
			if (strcmp(name, "cleanup.policy") == 0)
				bk_strlcpy(topic->cleanup_policy, value ? value : "",
						   sizeof(topic->cleanup_policy));
			else if (strcmp(name, "retention.ms") == 0)
				topic->retention_ms = parse_int64(value);
			else if (strcmp(name, "retention.bytes") == 0)
				topic->retention_bytes = parse_int64(value);
			else if (strcmp(name, "max.message.bytes") == 0)
				topic->max_message_bytes = parse_int64(value);
			else if (strcmp(name, "min.insync.replicas") == 0)
				topic->min_insync = parse_int64(value);
			else if (strcmp(name, "flush.messages") == 0)
				topic->flush_messages = parse_int64(value);
			else if (strcmp(name, "message.timestamp.type") == 0)
				bk_strlcpy(topic->timestamp_type, value ? value : "",
						   sizeof(topic->timestamp_type));
			else if (strcmp(name, "unclean.leader.election.enable") == 0)
				topic->unclean_election =
					value != NULL && strcmp(value, "true") == 0;
		}
	}
	rd_kafka_event_destroy(event);
	rd_kafka_queue_destroy(queue);
	return true;
}

static void
check_topic(const TopicState *topic, const BkTopicPolicy *policy, int brokers,
			int64_t broker_flush_messages, BkTopicReportFn report, void *arg,
			BkTopicResult *result)
{
	size_t needed = bk_kafka_batch_max(policy->chunk_size);

	if (strstr(topic->cleanup_policy, "compact") != NULL)
		report_finding(report, arg, result, BK_REPORT_ERROR, topic->name,
					   "cleanup.policy=%s: compaction keeps only the newest "
					   "message per key, and every chunk of a source shares "
					   "its key, so archived data would be deleted; set "
					   "cleanup.policy=delete",
					   topic->cleanup_policy);
	if (topic->kind != BK_TOPIC_AUDIT && topic->max_message_bytes >= 0 &&
		(size_t) topic->max_message_bytes < needed)
		report_finding(report, arg, result, BK_REPORT_ERROR, topic->name,
					   "max.message.bytes=%" PRId64 " is below the largest bk "
					   "message batch (%zu bytes: up to %d chunks of %" PRIu32
					   " bytes in one produce request); raise it or lower the "
					   "chunk size",
					   topic->max_message_bytes, needed, BK_KAFKA_BATCH_CHUNKS,
					   policy->chunk_size);
	/*
	 * The shipper gives up a stalled object attempt only when broker time
	 * (with its own clock) says so, never by a source's clock (shipper.c);
	 * under CreateTime the stamps are the sources' clocks, so it could
	 * never give one up and the partition's offset would stay behind it
	 * for good.  The audit topic is not judged by time.
	 */
	if (topic->kind != BK_TOPIC_AUDIT && topic->timestamp_type[0] &&
		strcmp(topic->timestamp_type, "LogAppendTime") != 0)
		report_finding(report, arg, result, BK_REPORT_ERROR, topic->name,
					   "message.timestamp.type=%s: messages carry the "
					   "sources' clocks, not the broker's, and the shipper "
					   "gives up the attempts of crashed sources only by "
					   "broker time; run \"kafka-configs.sh --bootstrap-server "
					   "BROKER --alter --entity-type topics --entity-name %s "
					   "--add-config message.timestamp.type=LogAppendTime\"",
					   topic->timestamp_type, topic->name);
	if (topic->retention_ms >= 0 &&
		topic->retention_ms < BK_TOPIC_RETENTION_MIN_MS)
		report_finding(report, arg, result, BK_REPORT_WARNING, topic->name,
					   "retention.ms=%" PRId64 " (%.1f h) is short: a shipper "
					   "outage longer than that loses data; keep it above the "
					   "longest outage you plan for (bk creates topics with "
					   "7 days)",
					   topic->retention_ms, topic->retention_ms / 3600000.0);
	if (topic->retention_bytes >= 0)
		report_finding(report, arg, result, BK_REPORT_WARNING, topic->name,
					   "retention.bytes=%" PRId64 " deletes data by size, "
					   "whether or not the shipper has archived it; set it "
					   "to -1",
					   topic->retention_bytes);
	if (topic->unclean_election)
		report_finding(report, arg, result, BK_REPORT_WARNING, topic->name,
					   "unclean.leader.election.enable=true lets an "
					   "out-of-date replica become leader and drop "
					   "acknowledged messages; set it to false");
	if (brokers > 1)
	{
		if (topic->replication < 3)
			report_finding(report, arg, result, BK_REPORT_WARNING, topic->name,
						   "replication factor %d is below 3: losing %s "
						   "loses acknowledged backups",
						   topic->replication,
						   topic->replication == 1 ? "one broker"
												   : "two brokers");
		if (topic->min_insync < 2)
			report_finding(report, arg, result, BK_REPORT_WARNING, topic->name,
						   "min.insync.replicas=%" PRId64 " is below 2: an "
						   "acknowledgement may rest on a single replica",
						   topic->min_insync);
	}
	else if (topic->flush_messages != 1 && broker_flush_messages != 1)
		report_finding(report, arg, result, BK_REPORT_WARNING, topic->name,
					   "single-node Kafka without a flush per message "
					   "(flush.messages=%" PRId64
					   ", broker log.flush.interval.messages=%" PRId64
					   "): an acknowledged chunk can be lost in a power "
					   "failure; set flush.messages=1, replicate, or use "
					   "bk.wait_for = 'repository'",
					   topic->flush_messages, broker_flush_messages);
}

bool
bk_topics_ensure(rd_kafka_t *rk, const BkTopicPolicy *policy, bool create,
				 BkTopicReportFn report, void *report_arg,
				 BkTopicResult *result, BkError *err)
{
	TopicState topics[BK_TOPIC_COUNT];
	int timeout_ms = policy->timeout_ms > 0 ? policy->timeout_ms : 30000;
	int brokers = 0;
	int32_t broker_id = -1;
	int64_t broker_flush_messages = -1;
	BkTopicResult local_result;

	if (result == NULL)
		result = &local_result;
	memset(result, 0, sizeof(*result));
	memset(topics, 0, sizeof(topics));
	for (int topicIdx = 0; topicIdx < BK_TOPIC_COUNT; topicIdx++)
	{
		topics[topicIdx].kind = (BkTopicKind) topicIdx;
		if (!bk_topic_name(policy->prefix ? policy->prefix
										  : BK_TOPIC_PREFIX_DEFAULT,
						   (BkTopicKind) topicIdx, topics[topicIdx].name,
						   sizeof(topics[topicIdx].name), err))
			return false;
	}

	if (!read_metadata(rk, topics, timeout_ms, &brokers, &broker_id, err))
		return false;
	result->brokers = brokers;
	for (int topicIdx = 0; topicIdx < BK_TOPIC_COUNT; topicIdx++)
	{
		if (topics[topicIdx].exists || create)
			continue;
		bk_error_set(err, BK_ERR_NOT_FOUND, "Kafka topic \"%s\" does not exist",
					 topics[topicIdx].name);
		return bk_error_hint(err,
							 "Create the topics with \"bk init\"; bk never "
							 "relies on broker auto-creation.");
	}
	if (!create_topics(rk, topics, policy, brokers, timeout_ms, report,
					   report_arg, result, err))
		return false;

	/* New topics take a moment to appear in every broker's metadata. */
	if (result->created > 0)
	{
		int64_t deadline = bk_monotonic_ms() + timeout_ms;
		bool all_visible;

		do
		{
			if (!read_metadata(rk, topics, timeout_ms, &brokers, &broker_id,
							   err))
				return false;
			all_visible = true;
			for (int topicIdx = 0; topicIdx < BK_TOPIC_COUNT; topicIdx++)
				all_visible = all_visible && topics[topicIdx].exists;
			if (!all_visible)
				rd_kafka_poll(rk, 100);
		} while (!all_visible && bk_monotonic_ms() < deadline);
		if (!all_visible)
			return bk_error_set(err, BK_ERR_TIMEOUT,
								"created topics did not appear in Kafka's "
								"metadata within %d ms",
								timeout_ms);
	}

	if (!describe_configs(rk, topics, broker_id, &broker_flush_messages,
						  timeout_ms, err))
		return false;
	for (int topicIdx = 0; topicIdx < BK_TOPIC_COUNT; topicIdx++)
		check_topic(&topics[topicIdx], policy, brokers, broker_flush_messages,
					report, report_arg, result);
	if (result->errors > 0)
	{
		bk_error_set(err, BK_ERR_CONFIG,
					 "%d bk topic setting%s would lose data (see above)",
					 result->errors, result->errors == 1 ? "" : "s");
		return bk_error_hint(err,
							 "Fix them with kafka-configs.sh --alter, then "
							 "run \"bk init\" again.");
	}
	return true;
}
