/*
 * bk_test_produce.c
 *		Test tool: send files to the real broker as bk WAL objects, the way
 *		the PostgreSQL archive module does, and on request the way a faulty
 *		or hostile party would.
 *
 *	  bk_test_produce --brokers B --prefix P --key FILE.pub --source S
 *					  [--chunk-size N] [--segment-size N] [--system-id N]
 *					  [--name NAME] [--stop-after-chunks N]
 *					  [--tamper-chunk I --tamper-offset O [--fix-crc]]
 *					  [--pause-after-chunks N --pause-ms MS [--pause-file F]]
 *					  [--chunk-gap-max MS]
 *					  FILE...
 *	  bk_test_produce --brokers B --prefix P --delete-records
 *	  bk_test_produce --brokers B --prefix P --add-partitions TOTAL
 *	  bk_test_produce --brokers B --prefix P --delete-topic
 *	  bk_test_produce --brokers B --prefix P --source S
 *					  --foreign-transaction commit|abort|open [--open-ms MS]
 *
 * Each FILE becomes one object named after its base name (or --name), with
 * the metadata a PostgreSQL source writes.  --stop-after-chunks sends only the
 * first N chunks, like an archiver that crashed mid-object.  --tamper-chunk
 * flips one bit of chunk I at byte offset O of the frame; with --fix-crc the
 * CRC-32C is recomputed so only the AEAD can notice.  --pause-after-chunks
 * stops for --pause-ms after the first N chunks of each object, like a
 * source host suspended mid-object, creating --pause-file when the pause
 * starts; --chunk-gap-max replaces the producer's BK_CHUNK_GAP_MAX_MS.
 * Prints one line per object: name, attempt id, chunks sent (or "failed").
 *
 * --delete-records removes every message of the WAL topic (Kafka's
 * DeleteRecords, up to each partition's high watermark), as retention would
 * while no shipper reads the topic.  --add-partitions gives the WAL topic
 * TOTAL partitions (Kafka's CreatePartitions), as an operator would.
 * --delete-topic deletes the WAL topic (Kafka's DeleteTopics), as an
 * operator would, in a fraction of the seconds the JVM's TopicCommand takes.
 *
 * --foreign-transaction writes one message that is not a bk frame to the WAL
 * topic, keyed by --source (so it lands in that source's partition), with a
 * transactional producer, as another application sharing the cluster could:
 * commit commits it (the log then holds a transaction marker after it),
 * abort aborts it once the broker has it (the message and a marker stay in
 * the log), open leaves its transaction open for --open-ms (default 60000)
 * and exits without ending it, printing "open" once the broker has the
 * message.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bk_crc32c.h"
#include "bk_frame.h"
#include "bk_kafka.h"
#include "bk_keys.h"
#include "bk_topics.h"
#include "bk_util.h"

typedef struct Sender
{
	BkEncoder *enc;
	int fd;
	uint8_t *buf;
	uint8_t *frame_copy;
	uint32_t sent;
	int64_t stop_after;
	int64_t tamper_chunk;
	int64_t tamper_offset;
	bool fix_crc;
	int64_t pause_after;
	int64_t pause_ms;
	const char *pause_file;
} Sender;

/* Stop for pause_ms, as a suspended host does, saying so in pause_file. */
static void
pause_sending(Sender *sender)
{
	struct timespec delay = {.tv_sec = sender->pause_ms / 1000,
							 .tv_nsec = (sender->pause_ms % 1000) * 1000000};

	if (sender->pause_file != NULL)
	{
		FILE *file = fopen(sender->pause_file, "w");

		if (file != NULL)
			fclose(file);
	}
	while (nanosleep(&delay, &delay) != 0 && errno == EINTR)
		;
}

static bool
next_frame(void *arg, const uint8_t **frame, size_t *len, BkFrame *info,
		   BkError *err)
{
	Sender *sender = arg;
	uint32_t chunk_len;
	ssize_t got;

	if (bk_encoder_done(sender->enc) ||
		(sender->stop_after >= 0 && sender->sent >= sender->stop_after))
	{
		*frame = NULL;
		return true;
	}
	if (sender->pause_after >= 0 && sender->sent == sender->pause_after)
		pause_sending(sender);
	chunk_len = bk_encoder_next_chunk_len(sender->enc);
	got = read(sender->fd, sender->buf, chunk_len);
	if (got != (ssize_t) chunk_len)
		return bk_error_set(err, BK_ERR_IO, "short read");
	if (!bk_encoder_chunk(sender->enc, sender->buf, chunk_len, frame, len, info,
						  err))
		return false;
	if (sender->tamper_chunk == (int64_t) sender->sent &&
		sender->tamper_offset < (int64_t) *len)
	{
		memcpy(sender->frame_copy, *frame, *len);
		sender->frame_copy[sender->tamper_offset] ^= 0x01;
		if (sender->fix_crc)
			bk_put_be32(sender->frame_copy + *len - 4,
						bk_crc32c(0, sender->frame_copy, *len - 4));
		*frame = sender->frame_copy;
	}
	sender->sent++;
	return true;
}

/* Delete every record of topic, as retention removes old log segments. */
static int
delete_records(const char *brokers, const char *topic)
{
	BkKafkaSettings settings = {.brokers = brokers};
	BkError err;
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	const struct rd_kafka_metadata *metadata = NULL;
	rd_kafka_topic_partition_list_t *before;
	rd_kafka_DeleteRecords_t *request;
	rd_kafka_queue_t *queue;
	rd_kafka_event_t *event;
	const rd_kafka_topic_partition_list_t *offsets;
	int status = 0;

	bk_error_clear(&err);
	rk = bk_kafka_admin_new(&settings, &err);
	if (rk == NULL)
	{
		fprintf(stderr, "%s\n", err.message);
		return 1;
	}
	rkt = rd_kafka_topic_new(rk, topic, NULL);
	if (rd_kafka_metadata(rk, 0, rkt, &metadata, 10000) !=
			RD_KAFKA_RESP_ERR_NO_ERROR ||
		metadata->topic_cnt != 1 || metadata->topics[0].partition_cnt < 1)
	{
		fprintf(stderr, "no metadata for topic %s\n", topic);
		return 1;
	}
	before =
		rd_kafka_topic_partition_list_new(metadata->topics[0].partition_cnt);
	for (int partIdx = 0; partIdx < metadata->topics[0].partition_cnt;
		 partIdx++)
		rd_kafka_topic_partition_list_add(
			before, topic, metadata->topics[0].partitions[partIdx].id)
			->offset = RD_KAFKA_OFFSET_END;
	rd_kafka_metadata_destroy(metadata);
	rd_kafka_topic_destroy(rkt);
	request = rd_kafka_DeleteRecords_new(before);
	rd_kafka_topic_partition_list_destroy(before);
	queue = rd_kafka_queue_new(rk);
	rd_kafka_DeleteRecords(rk, &request, 1, NULL, queue);
	event = rd_kafka_queue_poll(queue, 30000);
	if (event == NULL || rd_kafka_event_error(event))
	{
		fprintf(stderr, "DeleteRecords failed: %s\n",
				event ? rd_kafka_event_error_string(event) : "no answer");
		status = 1;
	}
	else
	{
		offsets = rd_kafka_DeleteRecords_result_offsets(
			rd_kafka_event_DeleteRecords_result(event));
		for (int itemIdx = 0; itemIdx < offsets->cnt; itemIdx++)
		{
			if (offsets->elems[itemIdx].err != RD_KAFKA_RESP_ERR_NO_ERROR)
			{
				fprintf(stderr, "DeleteRecords of partition %d: %s\n",
						offsets->elems[itemIdx].partition,
						rd_kafka_err2str(offsets->elems[itemIdx].err));
				status = 1;
			}
			else
				printf("partition %d starts at %" PRId64 "\n",
					   offsets->elems[itemIdx].partition,
					   offsets->elems[itemIdx].offset);
		}
	}
	if (event != NULL)
		rd_kafka_event_destroy(event);
	rd_kafka_DeleteRecords_destroy(request);
	rd_kafka_queue_destroy(queue);
	bk_kafka_admin_free(rk);
	return status;
}

/* The one topic's result of an admin request: 0 if it succeeded. */
static int
admin_topic_status(const char *request, bool answered,
				   const rd_kafka_topic_result_t **topics, size_t count)
{
	if (!answered)
	{
		fprintf(stderr, "%s: no answer\n", request);
		return 1;
	}
	if (count != 1)
		return 1;
	if (rd_kafka_topic_result_error(topics[0]) == RD_KAFKA_RESP_ERR_NO_ERROR)
		return 0;
	fprintf(stderr, "%s: %s\n", request,
			rd_kafka_topic_result_error_string(topics[0]));
	return 1;
}

/* Give topic total partitions. */
static int
add_partitions(const char *brokers, const char *topic, int total)
{
	BkKafkaSettings settings = {.brokers = brokers};
	rd_kafka_NewPartitions_t *request;
	rd_kafka_queue_t *queue;
	rd_kafka_event_t *event;
	const rd_kafka_CreatePartitions_result_t *result;
	const rd_kafka_topic_result_t **topics = NULL;
	size_t count = 0;
	char errstr[256];
	BkError err;
	rd_kafka_t *rk;
	int status;

	bk_error_clear(&err);
	rk = bk_kafka_admin_new(&settings, &err);
	if (rk == NULL)
	{
		fprintf(stderr, "%s\n", err.message);
		return 1;
	}
	request = rd_kafka_NewPartitions_new(topic, (size_t) total, errstr,
										 sizeof(errstr));
	queue = rd_kafka_queue_new(rk);
	rd_kafka_CreatePartitions(rk, &request, 1, NULL, queue);
	event = rd_kafka_queue_poll(queue, 30000);
	result = event ? rd_kafka_event_CreatePartitions_result(event) : NULL;
	if (result != NULL)
		topics = rd_kafka_CreatePartitions_result_topics(result, &count);
	status =
		admin_topic_status("CreatePartitions", result != NULL, topics, count);
	if (event != NULL)
		rd_kafka_event_destroy(event);
	rd_kafka_NewPartitions_destroy(request);
	rd_kafka_queue_destroy(queue);
	bk_kafka_admin_free(rk);
	return status;
}

/* Delete topic. */
static int
delete_topic(const char *brokers, const char *topic)
{
	BkKafkaSettings settings = {.brokers = brokers};
	rd_kafka_DeleteTopic_t *request;
	rd_kafka_queue_t *queue;
	rd_kafka_event_t *event;
	const rd_kafka_DeleteTopics_result_t *result;
	const rd_kafka_topic_result_t **topics = NULL;
	size_t count = 0;
	BkError err;
	rd_kafka_t *rk;
	int status;

	bk_error_clear(&err);
	rk = bk_kafka_admin_new(&settings, &err);
	if (rk == NULL)
	{
		fprintf(stderr, "%s\n", err.message);
		return 1;
	}
	request = rd_kafka_DeleteTopic_new(topic);
	queue = rd_kafka_queue_new(rk);
	rd_kafka_DeleteTopics(rk, &request, 1, NULL, queue);
	event = rd_kafka_queue_poll(queue, 30000);
	result = event ? rd_kafka_event_DeleteTopics_result(event) : NULL;
	if (result != NULL)
		topics = rd_kafka_DeleteTopics_result_topics(result, &count);
	status = admin_topic_status("DeleteTopics", result != NULL, topics, count);
	if (event != NULL)
		rd_kafka_event_destroy(event);
	rd_kafka_DeleteTopic_destroy(request);
	rd_kafka_queue_destroy(queue);
	bk_kafka_admin_free(rk);
	return status;
}

/* See --foreign-transaction above. */
static int
foreign_transaction(const char *brokers, const char *topic, const char *key,
					const char *mode, int64_t open_ms)
{
	static const char garbage[] = "not a bk frame, from another application";
	char transactional_id[64];
	char errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_error_t *error = NULL;
	rd_kafka_resp_err_t kerr;
	rd_kafka_t *rk;

	snprintf(transactional_id, sizeof(transactional_id), "bk-test-foreign-%d",
			 (int) getpid());
	if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr,
						  sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "transactional.id", transactional_id, errstr,
						  sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "transaction.timeout.ms", "120000", errstr,
						  sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))) ==
			NULL)
	{
		fprintf(stderr, "transactional producer: %s\n", errstr);
		return 1;
	}
	if ((error = rd_kafka_init_transactions(rk, 30000)) == NULL &&
		(error = rd_kafka_begin_transaction(rk)) == NULL)
	{
		kerr = rd_kafka_producev(
			rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
			RD_KAFKA_V_VALUE((void *) garbage, sizeof(garbage) - 1),
			RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
			error = rd_kafka_error_new(kerr, "produce failed");
		else if (strcmp(mode, "commit") == 0)
			error = rd_kafka_commit_transaction(rk, 30000);
		else if ((kerr = rd_kafka_flush(rk, 30000)) !=
				 RD_KAFKA_RESP_ERR_NO_ERROR)
			error = rd_kafka_error_new(kerr, "flush failed");
		else if (strcmp(mode, "abort") == 0)
			error = rd_kafka_abort_transaction(rk, 30000);
		else
		{
			printf("open\n");
			fflush(stdout);
			usleep((useconds_t) open_ms * 1000);
			/* Gone without ending it: the broker times it out. */
			_exit(0);
		}
	}
	if (error != NULL)
	{
		fprintf(stderr, "foreign transaction: %s\n",
				rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
		rd_kafka_destroy(rk);
		return 1;
	}
	rd_kafka_destroy(rk);
	return 0;
}

static void
quiet(void *arg, int level, const char *facility, const char *message)
{
	if (level <= 3)
		fprintf(stderr, "kafka: %s: %s\n", facility, message);
}

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{"brokers", required_argument, NULL, 'b'},
		{"prefix", required_argument, NULL, 'p'},
		{"key", required_argument, NULL, 'k'},
		{"source", required_argument, NULL, 's'},
		{"chunk-size", required_argument, NULL, 'c'},
		{"segment-size", required_argument, NULL, 'g'},
		{"system-id", required_argument, NULL, 'y'},
		{"name", required_argument, NULL, 'n'},
		{"stop-after-chunks", required_argument, NULL, 'a'},
		{"tamper-chunk", required_argument, NULL, 't'},
		{"tamper-offset", required_argument, NULL, 'o'},
		{"fix-crc", no_argument, NULL, 'f'},
		{"pause-after-chunks", required_argument, NULL, 'P'},
		{"pause-ms", required_argument, NULL, 'm'},
		{"pause-file", required_argument, NULL, 'F'},
		{"chunk-gap-max", required_argument, NULL, 'G'},
		{"delete-records", no_argument, NULL, 'D'},
		{"foreign-transaction", required_argument, NULL, 'T'},
		{"open-ms", required_argument, NULL, 'O'},
		{"add-partitions", required_argument, NULL, 'A'},
		{"delete-topic", no_argument, NULL, 'X'},
		{NULL, 0, NULL, 0}};
	const char *brokers = NULL;
	const char *prefix = "bk";
	const char *key_path = NULL;
	const char *source = NULL;
	const char *name_override = NULL;
	uint32_t chunk_size = BK_CHUNK_SIZE_DEFAULT;
	uint64_t segment_size = 16 * 1024 * 1024;
	const char *system_id = "7000000000000000001";
	Sender sender = {.stop_after = -1, .tamper_chunk = -1, .pause_after = -1};
	int64_t chunk_gap_max_ms = 0;
	bool delete = false;
	const char *foreign = NULL;
	int64_t open_ms = 60000;
	int add_total = 0;
	bool delete_wal_topic = false;
	BkKafkaSettings settings = {0};
	BkProducer *producer;
	BkKeyring *ring;
	char topic[BK_TOPIC_NAME_MAX + 1];
	BkError err;
	int code;

	while ((code = getopt_long(argc, argv, "", options, NULL)) != -1)
	{
		switch (code)
		{
			case 'b':
				brokers = optarg;
				break;
			case 'p':
				prefix = optarg;
				break;
			case 'k':
				key_path = optarg;
				break;
			case 's':
				source = optarg;
				break;
			case 'c':
				chunk_size = (uint32_t) strtoul(optarg, NULL, 10);
				break;
			case 'g':
				segment_size = strtoull(optarg, NULL, 10);
				break;
			case 'y':
				system_id = optarg;
				break;
			case 'n':
				name_override = optarg;
				break;
			case 'a':
				sender.stop_after = strtoll(optarg, NULL, 10);
				break;
			case 't':
				sender.tamper_chunk = strtoll(optarg, NULL, 10);
				break;
			case 'o':
				sender.tamper_offset = strtoll(optarg, NULL, 10);
				break;
			case 'f':
				sender.fix_crc = true;
				break;
			case 'P':
				sender.pause_after = strtoll(optarg, NULL, 10);
				break;
			case 'm':
				sender.pause_ms = strtoll(optarg, NULL, 10);
				break;
			case 'F':
				sender.pause_file = optarg;
				break;
			case 'G':
				chunk_gap_max_ms = strtoll(optarg, NULL, 10);
				break;
			case 'D':
				delete = true;
				break;
			case 'T':
				foreign = optarg;
				break;
			case 'O':
				open_ms = strtoll(optarg, NULL, 10);
				break;
			case 'A':
				add_total = atoi(optarg);
				break;
			case 'X':
				delete_wal_topic = true;
				break;
			default:
				return 2;
		}
	}
	if (delete &&brokers != NULL)
	{
		bk_error_clear(&err);
		if (!bk_topic_name(prefix, BK_TOPIC_WAL, topic, sizeof(topic), &err))
		{
			fprintf(stderr, "%s\n", err.message);
			return 1;
		}
		return delete_records(brokers, topic);
	}
	if (delete_wal_topic && brokers != NULL)
	{
		bk_error_clear(&err);
		if (!bk_topic_name(prefix, BK_TOPIC_WAL, topic, sizeof(topic), &err))
		{
			fprintf(stderr, "%s\n", err.message);
			return 1;
		}
		return delete_topic(brokers, topic);
	}
	if (add_total > 0 && brokers != NULL)
	{
		bk_error_clear(&err);
		if (!bk_topic_name(prefix, BK_TOPIC_WAL, topic, sizeof(topic), &err))
		{
			fprintf(stderr, "%s\n", err.message);
			return 1;
		}
		return add_partitions(brokers, topic, add_total);
	}
	if (foreign != NULL && brokers != NULL && source != NULL)
	{
		bk_error_clear(&err);
		if (!bk_topic_name(prefix, BK_TOPIC_WAL, topic, sizeof(topic), &err))
		{
			fprintf(stderr, "%s\n", err.message);
			return 1;
		}
		return foreign_transaction(brokers, topic, source, foreign, open_ms);
	}
	if (brokers == NULL || key_path == NULL || source == NULL || optind >= argc)
	{
		fprintf(stderr, "usage: bk_test_produce --brokers B --prefix P --key "
						"FILE.pub --source S [options] FILE...\n");
		return 2;
	}
	bk_error_clear(&err);
	ring = bk_keyring_load(key_path, BK_KEYS_FOR_SOURCE, &err);
	if (ring == NULL)
	{
		fprintf(stderr, "%s\n", err.message);
		return 1;
	}
	settings.brokers = brokers;
	settings.chunk_size = chunk_size;
	settings.timeout_ms = 20000;
	settings.log_fn = quiet;
	settings.chunk_gap_max_ms = chunk_gap_max_ms;
	producer = bk_producer_new(&settings, &err);
	sender.enc =
		producer ? bk_encoder_new(&ring->keys[0], chunk_size, &err) : NULL;
	if (sender.enc == NULL ||
		!bk_topic_name(prefix, BK_TOPIC_WAL, topic, sizeof(topic), &err))
	{
		fprintf(stderr, "%s\n", err.message);
		return 1;
	}
	sender.buf = malloc(chunk_size);
	sender.frame_copy = malloc(bk_frame_max_len(chunk_size));

	for (int fileIdx = optind; fileIdx < argc; fileIdx++)
	{
		char path_copy[4096];
		const char *name;
		char meta[1024];
		char created[40];
		char attempt_hex[2 * BK_ATTEMPT_ID_LEN + 1];
		struct stat st;
		BkObjectInfo info = {0};
		unsigned int tli = 1;
		unsigned int log = 0;
		unsigned int seg = 0;
		uint64_t start;

		bk_strlcpy(path_copy, argv[fileIdx], sizeof(path_copy));
		name = name_override ? name_override : basename(path_copy);
		sender.fd = open(argv[fileIdx], O_RDONLY);
		if (sender.fd < 0 || fstat(sender.fd, &st) != 0)
		{
			fprintf(stderr, "%s: %s\n", argv[fileIdx], strerror(errno));
			return 1;
		}
		sscanf(name, "%8X%8X%8X", &tli, &log, &seg);
		start = (uint64_t) log * 0x100000000ULL + (uint64_t) seg * segment_size;
		bk_format_time_utc(bk_wall_ms(), created, sizeof(created));
		snprintf(meta, sizeof(meta),
				 "type=%s\ntimeline=%u\nsegment-size=%" PRIu64
				 "\nlsn-start=%X/%X\nlsn-end=%X/%X\nsystem-identifier=%s\n"
				 "pg-version=150020\ncreated=%s",
				 strstr(name, ".history") ? "history" : "segment", tli,
				 segment_size, (unsigned) (start >> 32), (unsigned) start,
				 (unsigned) ((start + segment_size) >> 32),
				 (unsigned) (start + segment_size), system_id, created);
		info.kind = BK_KIND_WAL;
		info.source_id = source;
		info.name = name;
		info.meta = meta;
		info.size = (uint64_t) st.st_size;
		sender.sent = 0;
		if (!bk_encoder_begin(sender.enc, &info, &err) ||
			!bk_producer_send_object(producer, topic, source, strlen(source),
									 next_frame, &sender, NULL, NULL, NULL,
									 &err))
		{
			bk_hex_encode(bk_encoder_attempt_id(sender.enc), BK_ATTEMPT_ID_LEN,
						  attempt_hex);
			printf("%s %s failed\n", name, attempt_hex);
			fprintf(stderr, "%s: %s%s%s\n", name, err.message,
					err.hint[0] ? "\nHINT: " : "", err.hint);
			return 1;
		}
		close(sender.fd);
		bk_hex_encode(bk_encoder_attempt_id(sender.enc), BK_ATTEMPT_ID_LEN,
					  attempt_hex);
		printf("%s %s %" PRIu32 "/%" PRIu32 "\n", name, attempt_hex,
			   sender.sent, bk_encoder_chunk_count(sender.enc));
	}
	bk_producer_free(producer);
	bk_encoder_free(sender.enc);
	bk_keyring_free(ring);
	free(sender.buf);
	free(sender.frame_copy);
	return 0;
}
