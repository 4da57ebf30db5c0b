/*
 * kafka_roundtrip.c
 *		Integration test against the real broker (scripts/services): a
 *		multi-chunk object goes out through bk's producer and comes back
 *		through a real librdkafka consumer, byte-identical; the Kafka headers
 *		carry the metadata; no plaintext is anywhere on the topic; and an
 *		object stays in one partition when partitions are added to its
 *		topic while it is being sent.
 *
 *	   kafka_roundtrip BROKERS TOPIC_PREFIX      (prints TAP)
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "bk_frame.h"
#include "bk_kafka.h"
#include "bk_keys.h"
#include "bk_topics.h"
#include "bk_util.h"

#define CHUNK  (1024 * 1024)
#define MARKER "BK-PLAINTEXT-MARKER-7f3a9c"

static int test_count;
static int test_failed;

static void
ok(bool pass, const char *fmt, ...)
{
	va_list args;

	test_count++;
	if (!pass)
		test_failed++;
	printf("%sok %d - ", pass ? "" : "not ", test_count);
	va_start(args, fmt);
	vprintf(fmt, args);
	va_end(args);
	printf("\n");
	fflush(stdout);
}

static void
quiet_log(void *arg, int level, const char *facility, const char *message)
{
	if (level <= 3)
		fprintf(stderr, "# kafka: %s: %s\n", facility, message);
}

typedef struct EncodeSource
{
	BkEncoder *enc;
	const uint8_t *data;
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

static bool
header_is(rd_kafka_headers_t *headers, const char *name, const char *expected)
{
	const void *value;
	size_t size;

	return headers != NULL &&
		   rd_kafka_header_get_last(headers, name, &value, &size) ==
			   RD_KAFKA_RESP_ERR_NO_ERROR &&
		   size == strlen(expected) && memcmp(value, expected, size) == 0;
}

/*
 * Send one object and read it back with a consumer assigned to where the
 * producer said it landed; returns the decoded bytes.
 */
static void
round_trip(BkProducer *producer, const char *brokers, const char *topic,
		   const BkKey *key, const BkKeyring *ring, const char *name,
		   const uint8_t *data, size_t size)
{
	BkObjectInfo info = {.kind = BK_KIND_WAL,
						 .source_id = "it-source",
						 .name = name,
						 .meta = "timeline=1",
						 .size = size};
	EncodeSource source = {0};
	BkSendStats stats = {0};
	BkError err;
	rd_kafka_conf_t *conf;
	rd_kafka_t *consumer;
	rd_kafka_topic_partition_list_t *assignment;
	BkDecoder *dec;
	uint8_t *decoded = malloc(size + 1);
	size_t decoded_len = 0;
	uint32_t expected_chunks =
		size == 0 ? 1 : (uint32_t) ((size + CHUNK - 1) / CHUNK);
	uint32_t received = 0;
	bool headers_ok = true;
	bool decode_ok = true;
	char errstr[256];
	char group[64];
	int64_t deadline;

	bk_error_clear(&err);
	source.enc = bk_encoder_new(key, CHUNK, &err);
	source.data = data;
	if (source.enc == NULL || !bk_encoder_begin(source.enc, &info, &err))
	{
		ok(false, "%s: encoder: %s", name, err.message);
		return;
	}
	ok(bk_producer_send_object(producer, topic, "it-source", 9, next_frame,
							   &source, NULL, NULL, &stats, &err),
	   "%s (%zu bytes): every chunk acknowledged by the broker%s%s", name, size,
	   err.code ? ": " : "", err.code ? err.message : "");
	ok(stats.messages == expected_chunks &&
		   stats.last_offset - stats.first_offset == expected_chunks - 1,
	   "%s: %" PRIu32 " chunks at consecutive offsets %" PRId64 "..%" PRId64,
	   name, stats.messages, stats.first_offset, stats.last_offset);
	bk_encoder_free(source.enc);

	conf = rd_kafka_conf_new();
	snprintf(group, sizeof(group), "bk-it-%d", (int) getpid());
	rd_kafka_conf_set(conf, "bootstrap.servers", brokers, NULL, 0);
	rd_kafka_conf_set(conf, "group.id", group, NULL, 0);
	rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
	consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (consumer == NULL)
	{
		ok(false, "%s: consumer: %s", name, errstr);
		return;
	}
	assignment = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(assignment, topic, stats.partition)
		->offset = stats.first_offset;
	rd_kafka_assign(consumer, assignment);
	rd_kafka_topic_partition_list_destroy(assignment);

	dec = bk_decoder_new(ring, &err);
	deadline = bk_monotonic_ms() + 30000;
	while (received < expected_chunks && bk_monotonic_ms() < deadline)
	{
		rd_kafka_message_t *msg = rd_kafka_consumer_poll(consumer, 200);
		rd_kafka_headers_t *headers = NULL;
		const uint8_t *plain;
		size_t plain_len;
		char index[16];

		if (msg == NULL)
			continue;
		if (msg->err)
		{
			fprintf(stderr, "# consumer: %s\n", rd_kafka_message_errstr(msg));
			rd_kafka_message_destroy(msg);
			continue;
		}
		snprintf(index, sizeof(index), "%" PRIu32, received);
		rd_kafka_message_headers(msg, &headers);
		headers_ok = headers_ok && header_is(headers, "bk-object", name) &&
					 header_is(headers, "bk-kind", "wal") &&
					 header_is(headers, "bk-source", "it-source") &&
					 header_is(headers, "bk-chunk-index", index) &&
					 header_is(headers, "bk-meta-timeline", "1");
		if (!bk_decoder_push(dec, msg->payload, msg->len, &plain, &plain_len,
							 &err))
		{
			fprintf(stderr, "# decode: %s\n", err.message);
			decode_ok = false;
		}
		else
		{
			memcpy(decoded + decoded_len, plain, plain_len);
			decoded_len += plain_len;
		}
		received++;
		rd_kafka_message_destroy(msg);
	}
	ok(received == expected_chunks,
	   "%s: consumer read %" PRIu32 " of %" PRIu32 " chunks", name, received,
	   expected_chunks);
	ok(headers_ok,
	   "%s: every message carries bk-object, bk-kind, bk-source, "
	   "bk-chunk-index and metadata headers",
	   name);
	ok(decode_ok && bk_decoder_finish(dec, &err),
	   "%s: decoder verified every chunk and the fingerprint", name);
	ok(decoded_len == size && memcmp(decoded, data, size) == 0,
	   "%s: decoded object is byte-identical (%zu bytes)", name, decoded_len);
	bk_decoder_free(dec);
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);
	free(decoded);
}

/* Frames of one object; after grow_after chunks, the topic gets partitions. */
typedef struct GrowingSource
{
	EncodeSource frames;
	rd_kafka_t *rk;
	const char *topic;
	uint32_t chunks;
	uint32_t grow_after;
	bool grown;
} GrowingSource;

/* Add partitions to topic until it has total, and wait until rk sees them. */
static bool
grow_topic(rd_kafka_t *rk, const char *topic, int total)
{
	rd_kafka_NewPartitions_t *request;
	rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
	rd_kafka_event_t *event;
	rd_kafka_topic_t *rkt;
	char errstr[256];
	bool grown = false;
	int64_t deadline;

	request = rd_kafka_NewPartitions_new(topic, total, errstr, sizeof(errstr));
	rd_kafka_CreatePartitions(rk, &request, 1, NULL, queue);
	event = rd_kafka_queue_poll(queue, 30000);
	if (event != NULL)
	{
		const rd_kafka_CreatePartitions_result_t *result =
			rd_kafka_event_CreatePartitions_result(event);
		const rd_kafka_topic_result_t **topics;
		size_t count = 0;

		if (result != NULL)
		{
			topics = rd_kafka_CreatePartitions_result_topics(result, &count);
			grown = count == 1 && rd_kafka_topic_result_error(topics[0]) ==
									  RD_KAFKA_RESP_ERR_NO_ERROR;
			if (!grown && count == 1)
				fprintf(stderr, "# CreatePartitions: %s\n",
						rd_kafka_topic_result_error_string(topics[0]));
		}
		rd_kafka_event_destroy(event);
	}
	rd_kafka_NewPartitions_destroy(request);
	rd_kafka_queue_destroy(queue);
	if (!grown)
		return false;

	/* The handle's own metadata: what librdkafka partitions messages by. */
	rkt = rd_kafka_topic_new(rk, topic, NULL);
	deadline = bk_monotonic_ms() + 30000;
	grown = false;
	while (!grown && bk_monotonic_ms() < deadline)
	{
		const struct rd_kafka_metadata *metadata;

		if (rd_kafka_metadata(rk, 0, rkt, &metadata, 5000) ==
			RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			grown = metadata->topic_cnt == 1 &&
					metadata->topics[0].partition_cnt == total;
			rd_kafka_metadata_destroy(metadata);
		}
		if (!grown)
			usleep(100 * 1000);
	}
	rd_kafka_topic_destroy(rkt);
	return grown;
}

static bool
next_frame_growing(void *arg, const uint8_t **frame, size_t *len, BkFrame *info,
				   BkError *err)
{
	GrowingSource *source = arg;

	if (source->chunks == source->grow_after && !source->grown)
	{
		source->grown = true;
		if (!grow_topic(source->rk, source->topic, 2))
			return bk_error_set(err, BK_ERR_KAFKA,
								"could not add a partition to \"%s\"",
								source->topic);
	}
	if (!next_frame(&source->frames, frame, len, info, err))
		return false;
	if (*frame != NULL)
		source->chunks++;
	return true;
}

static int64_t
partition_messages(rd_kafka_t *rk, const char *topic, int32_t partition)
{
	int64_t low;
	int64_t high;

	if (rd_kafka_query_watermark_offsets(rk, topic, partition, &low, &high,
										 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	return high - low;
}

/*
 * Partitions added to the topic in the middle of an object: librdkafka
 * partitions each message by the count it knows when the message is queued,
 * so the chunks queued after the change went by the new count to another
 * partition.  Every chunk was acknowledged and the object reported sent,
 * yet no shipper could ever assemble it.  The key is one that two
 * partitions map elsewhere than one does.
 */
static void
partitions_added_mid_object(BkProducer *producer, const char *prefix,
							const BkKey *key, const uint8_t *data, size_t size)
{
	BkObjectInfo info = {.kind = BK_KIND_WAL,
						 .source_id = "grow",
						 .name = "000000010000000000000007",
						 .size = size};
	BkTopicPolicy policy = {0};
	GrowingSource source = {0};
	BkSendStats stats = {0};
	rd_kafka_t *rk = bk_producer_handle(producer);
	char topic[BK_TOPIC_NAME_MAX + 1];
	char grow_prefix[128];
	char source_key[64];
	uint32_t expected_chunks = (uint32_t) ((size + CHUNK - 1) / CHUNK);
	BkError err;

	bk_error_clear(&err);
	for (int keyIdx = 0;; keyIdx++)
	{
		snprintf(source_key, sizeof(source_key), "grow-%d", keyIdx);
		if (rd_kafka_msg_partitioner_consistent(
				NULL, source_key, strlen(source_key), 2, NULL, NULL) == 1)
			break;
	}
	snprintf(grow_prefix, sizeof(grow_prefix), "%s-grow", prefix);
	policy.prefix = grow_prefix;
	policy.partitions = 1;
	policy.chunk_size = CHUNK;
	if (!bk_topics_ensure(rk, &policy, true, NULL, NULL, NULL, &err))
	{
		ok(false, "one-partition topics under %s: %s", grow_prefix,
		   err.message);
		return;
	}
	bk_topic_name(grow_prefix, BK_TOPIC_WAL, topic, sizeof(topic), &err);

	source.frames.enc = bk_encoder_new(key, CHUNK, &err);
	source.frames.data = data;
	source.rk = rk;
	source.topic = topic;
	source.grow_after = 2;
	if (source.frames.enc == NULL ||
		!bk_encoder_begin(source.frames.enc, &info, &err))
	{
		ok(false, "grow: encoder: %s", err.message);
		return;
	}
	ok(bk_producer_send_object(producer, topic, source_key, strlen(source_key),
							   next_frame_growing, &source, NULL, NULL, &stats,
							   &err) &&
		   source.grown,
	   "a partition added after chunk 2 of %" PRIu32
	   ": the object still sent%s%s",
	   expected_chunks, err.code ? ": " : "", err.code ? err.message : "");
	bk_encoder_free(source.frames.enc);
	ok(partition_messages(rk, topic, 0) == expected_chunks &&
		   partition_messages(rk, topic, 1) == 0 && stats.partition == 0 &&
		   stats.last_offset - stats.first_offset == expected_chunks - 1,
	   "every chunk in the partition its first chunk went to (partition 0: "
	   "%" PRId64 ", partition 1: %" PRId64 ")",
	   partition_messages(rk, topic, 0), partition_messages(rk, topic, 1));
}

/* Count how often needle occurs in the output of a shell command. */
static long
count_in_command_output(const char *command, const char *needle)
{
	FILE *pipe = popen(command, "r");
	size_t cap = 1 << 20;
	size_t len = 0;
	char *buf = malloc(cap);
	long count = 0;
	size_t got;

	if (pipe == NULL)
		return -1;
	while ((got = fread(buf + len, 1, cap - len, pipe)) > 0)
	{
		len += got;
		if (len == cap)
			buf = realloc(buf, cap *= 2);
	}
	if (pclose(pipe) != 0)
		count = -1;
	for (char *p = buf;
		 count >= 0 && (p = memmem(p, (size_t) (buf + len - p), needle,
								   strlen(needle))) != NULL;
		 p++)
		count++;
	free(buf);
	return count;
}

int
main(int argc, char **argv)
{
	const char *brokers;
	const char *prefix;
	char topic[BK_TOPIC_NAME_MAX + 1];
	char command[1024];
	BkKafkaSettings settings = {0};
	BkTopicPolicy policy = {0};
	BkProducer *producer;
	BkKey key;
	BkKeyring ring = {0};
	BkError err;
	size_t size = 5 * CHUNK + 17;
	uint8_t *data;
	long hits;

	bk_error_clear(&err);
	if (argc != 3)
	{
		fprintf(stderr, "usage: kafka_roundtrip BROKERS TOPIC_PREFIX\n");
		return 2;
	}
	brokers = argv[1];
	prefix = argv[2];
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (!bk_key_generate(&key, &err))
		return 1;
	ring.keys[0] = key;
	ring.count = 1;

	settings.brokers = brokers;
	settings.chunk_size = CHUNK;
	settings.timeout_ms = 20000;
	settings.log_fn = quiet_log;
	producer = bk_producer_new(&settings, &err);
	ok(producer != NULL, "producer created%s%s", producer ? "" : ": ",
	   producer ? "" : err.message);
	if (producer == NULL)
		return 1;

	policy.prefix = prefix;
	policy.partitions = 3;
	policy.chunk_size = CHUNK;
	ok(bk_topics_ensure(bk_producer_handle(producer), &policy, true, NULL, NULL,
						NULL, &err),
	   "topics created under prefix %s%s%s", prefix, err.code ? ": " : "",
	   err.code ? err.message : "");
	bk_topic_name(prefix, BK_TOPIC_WAL, topic, sizeof(topic), &err);

	/* Mildly compressible data with a marker that must never appear on the wire. */
	data = malloc(size);
	for (size_t pos = 0; pos < size; pos++)
		data[pos] = (uint8_t) ((pos * 7919) ^ (pos >> 9));
	for (size_t pos = 0; pos + sizeof(MARKER) < size; pos += 65536)
		memcpy(data + pos, MARKER, sizeof(MARKER) - 1);

	round_trip(producer, brokers, topic, &key, &ring,
			   "000000010000000000000042", data, size);
	round_trip(producer, brokers, topic, &key, &ring, "00000002.history", data,
			   0);
	round_trip(producer, brokers, topic, &key, &ring, "exactly-one-chunk", data,
			   CHUNK);
	partitions_added_mid_object(producer, prefix, &key, data, size);

	snprintf(command, sizeof(command),
			 "kcat -C -b '%s' -t '%s' -o beginning -e -q -f '%%s' 2>/dev/null",
			 brokers, topic);
	hits = count_in_command_output(command, MARKER);
	ok(hits == 0,
	   "kcat: the plaintext marker appears %ld times in the topic's messages",
	   hits);
	snprintf(
		command, sizeof(command),
		"kcat -C -b '%s' -t '%s' -o beginning -e -q -f '%%h\\n' 2>/dev/null",
		brokers, topic);
	hits =
		count_in_command_output(command, "bk-object=000000010000000000000042");
	ok(hits == 6,
	   "kcat: an auditor sees the object name in the headers of all 6 chunks "
	   "(saw %ld)",
	   hits);
	hits = count_in_command_output(command, MARKER);
	ok(hits == 0, "kcat: no plaintext in the headers either (saw %ld)", hits);

	bk_producer_free(producer);
	free(data);
	printf("1..%d\n", test_count);
	return test_failed == 0 ? 0 : 1;
}
