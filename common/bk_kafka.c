/*
 * bk_kafka.c
 *		Idempotent, acknowledged, bounded Kafka production.  See bk_kafka.h.
 *
 * Delivery tracking: each object send gets a new generation number, and every
 * message carries (generation, chunk index) as its opaque.  Delivery reports
 * from an earlier, abandoned send are recognised and ignored, so no report
 * can ever land in state that is no longer the sender's.
 *
 * After any failed send the handle is purged and destroyed, and the next send
 * creates a fresh one.  A failure is rare and already costs a timeout, and a
 * fresh handle guarantees that nothing from the failed attempt is still
 * queued or retried behind the caller's back (for example after PostgreSQL
 * was told the segment failed).  Chunks of the failed attempt that did reach
 * the broker are harmless: the shipper discards incomplete attempts.
 */
#include "bk_kafka.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bk_audit.h"
#include "bk_config.h"
#include "bk_util.h"

/* Bytes queued but not yet acknowledged, per producer: bounds memory. */
#define PRODUCER_WINDOW_BYTES (64 * 1024 * 1024)
/* Requests of request_messages queued at most (BkKafkaSettings). */
#define PRODUCER_WINDOW_REQUESTS 16
/* Granularity of waiting, so interrupts are seen quickly. */
#define PRODUCER_POLL_MS 50
/* linger.ms unless the caller asks for more (BkKafkaSettings.linger_ms). */
#define PRODUCER_LINGER_MS_DEFAULT 5
/* How long to wait for reports of purged messages before giving up on them. */
#define PRODUCER_DRAIN_MS 1000
/* How long a topic's partition count is used before it is read again. */
#define PARTITION_COUNT_MAX_AGE_MS 60000
/* Topics whose partition count a producer keeps (WAL, snapshot, audit). */
#define PARTITION_COUNT_TOPICS 4
/*
 * Partitions whose newest acknowledgement a producer keeps per batch, to
 * time chunks against the one before (BK_CHUNK_GAP_MAX_MS).  WAL and
 * binlog objects are keyed by source id (one partition per topic), but a
 * snapshot's by file, so its batch spreads over every partition: the slot
 * acknowledged least recently is the one taken over, never that of an
 * object whose chunks are still being acknowledged (objects of a batch are
 * produced one after another, so only the newest few are in flight).
 */
#define ACK_TIME_SLOTS 16
/*
 * A message's opaque: the send's generation in the high 32 bits, then this
 * flag when the message is a chunk after the first of its object, then its
 * index among the messages of the send.
 */
#define TAG_CONTINUES  ((uintptr_t) 1 << 31)
#define TAG_INDEX_MASK ((uintptr_t) 0x7fffffff)

typedef int32_t (*PartitionerFn)(const rd_kafka_topic_t *rkt, const void *key,
								 size_t key_len, int32_t partition_count,
								 void *rkt_opaque, void *msg_opaque);

/*
 * librdkafka's partitioners by their property name.  "random" is missing on
 * purpose: it spreads one key over every partition.
 */
static const struct
{
	const char *name;
	PartitionerFn fn;
} partitioners[] = {
	{"consistent_random", rd_kafka_msg_partitioner_consistent_random},
	{"consistent", rd_kafka_msg_partitioner_consistent},
	{"murmur2_random", rd_kafka_msg_partitioner_murmur2_random},
	{"murmur2", rd_kafka_msg_partitioner_murmur2},
	{"fnv1a_random", rd_kafka_msg_partitioner_fnv1a_random},
	{"fnv1a", rd_kafka_msg_partitioner_fnv1a},
};

/* A topic's partition count, and when it was read (bk_monotonic_ms). */
typedef struct PartitionCount
{
	char topic[256];
	int32_t count;
	int64_t read_ms;
} PartitionCount;

/* A partition's newest acknowledged message in the current send. */
typedef struct AckTime
{
	const rd_kafka_topic_t *rkt;
	int32_t partition;
	uint32_t index;      /* among the messages of the send */
	int64_t broker_time; /* the newest append time the broker gave in this
						  * partition (a report may carry none): -1 none */
	uint32_t used;       /* the producer's acked count when last updated */
} AckTime;

struct BkProducer
{
	BkKafkaLogSink sink; /* first: the handle's opaque (bk_kafka.h) */
	rd_kafka_conf_t *template_conf; /* copied for each handle */
	rd_kafka_t *rk;
	rd_kafka_topic_t *known_topic; /* made known by bk_producer_connect */
	int timeout_ms;                /* message.timeout.ms in effect */
	size_t message_max;            /* message.max.bytes in effect */
	PartitionerFn partitioner;     /* the partitioner property's function */
	PartitionCount partition_counts[PARTITION_COUNT_TOPICS];

	/* Delivery state of the current send. */
	uint32_t generation;
	uint32_t produced;
	uint32_t acked;
	uint32_t failed;
	size_t inflight_bytes;
	size_t window_bytes; /* bound on inflight_bytes */
	size_t inflight_messages;
	size_t window_messages; /* bound on inflight_messages; 0: none */
	int64_t last_progress_ms;
	rd_kafka_resp_err_t first_error;
	uint32_t first_error_chunk;
	int32_t partition;
	int64_t first_offset;
	int64_t last_offset;

	/* Broker time between chunks of an object (BK_CHUNK_GAP_MAX_MS). */
	int64_t chunk_gap_max_ms;
	AckTime ack_times[ACK_TIME_SLOTS];
	int ack_time_count;
	int64_t gap_ms; /* > 0: the first gap found too long */
	uint32_t gap_chunk;
	char gap_object[BK_OBJECT_NAME_MAX + 1];

	bool fatal;
	char fatal_text[512];
	char last_broker_error[512];

	/* Fatal errors raised as alarms (BkKafkaAlarm). */
	BkKafkaAlarmFn alarm_fn;
	void *alarm_arg;
	char audit_topic[256]; /* "": no producer-fatal event */
	char source_id[BK_SOURCE_ID_MAX + 1];
	bool audit_pending;       /* an alarm's event Kafka has not taken yet */
	uint32_t audit_fatals;    /* fatal errors the pending event stands for */
	BkKafkaAlarm audit_alarm; /* the first of them */
	bool audit_sending;       /* sending it: no second attempt inside */
	int64_t audit_retry_ms;   /* bk_monotonic_ms: no attempt before */

	/* The batch being sent (one object, or many: bk_producer_batch_*). */
	bool batch_open;
	uint32_t batch_objects;
	int64_t batch_start_ms;
	char batch_topic[256];
	char what[BK_OBJECT_NAME_MAX + 64];  /* the message being queued */
	char object[BK_OBJECT_NAME_MAX + 8]; /* its object, quoted */
	bool chunked;                        /* object messages, not single */
	char first_error_key[BK_OBJECT_NAME_MAX + BK_SOURCE_ID_MAX + 2];
	char first_error_object[BK_OBJECT_NAME_MAX + 1]; /* its bk-object */
};

size_t
bk_kafka_message_max(uint32_t chunk_size)
{
	return bk_frame_max_len(chunk_size) + BK_KAFKA_MESSAGE_OVERHEAD;
}

int64_t
bk_kafka_broker_time(const rd_kafka_message_t *msg)
{
	rd_kafka_timestamp_type_t type;
	int64_t timestamp = rd_kafka_message_timestamp(msg, &type);

	return type == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME && timestamp >= 0
			   ? timestamp
			   : -1;
}

bool
bk_kafka_attempt_stalled(int64_t *attempt_time, int64_t message_time,
						 int64_t attempt_local_ms, int64_t now_local_ms,
						 int64_t abandon_after_ms)
{
	if (message_time < 0)
		return false;
	if (*attempt_time < 0)
	{
		*attempt_time = message_time;
		return false;
	}
	return message_time - *attempt_time > abandon_after_ms &&
		   now_local_ms - attempt_local_ms > abandon_after_ms;
}

size_t
bk_kafka_batch_max(uint32_t chunk_size)
{
	size_t one = bk_kafka_message_max(chunk_size);
	size_t batch = one * BK_KAFKA_BATCH_CHUNKS;
	size_t topic_max = bk_kafka_message_max(BK_CHUNK_SIZE_MAX);

	/*
	 * What the topics bk creates accept (max.message.bytes), never less than
	 * one message, nor less than librdkafka's default.
	 */
	if (batch > topic_max)
		batch = topic_max;
	if (batch < one)
		batch = one;
	return batch > 1000000 ? batch : (size_t) 1000000;
}

static void
default_log(void *arg, int level, const char *facility, const char *message)
{
	fprintf(stderr, "bk: kafka %d %s: %s\n", level, facility, message);
}

/* librdkafka's log callback: served from rd_kafka_poll via the log queue. */
static void
kafka_log_cb(const rd_kafka_t *rk, int level, const char *facility,
			 const char *message)
{
	const BkKafkaLogSink *sink = rd_kafka_opaque(rk);

	if (sink != NULL && sink->log_fn != NULL)
		sink->log_fn(sink->log_arg, level, facility, message);
	else
		default_log(NULL, level, facility, message);
}

typedef struct ConfApply
{
	rd_kafka_conf_t *conf;
} ConfApply;

static bool
conf_apply_one(void *arg, const char *key, const char *value, BkError *err)
{
	ConfApply *apply = arg;
	char errstr[512];

	if (rd_kafka_conf_set(apply->conf, key, value, errstr, sizeof(errstr)) !=
		RD_KAFKA_CONF_OK)
	{
		bk_error_set(err, BK_ERR_CONFIG, "Kafka property \"%s\": %s", key,
					 errstr);
		return bk_error_hint(err,
							 "Check the librdkafka property name and value "
							 "(CONFIGURATION.md of librdkafka 2.0).");
	}
	return true;
}

static bool
conf_get_string(rd_kafka_conf_t *conf, const char *key, char *buf, size_t size)
{
	return rd_kafka_conf_get(conf, key, buf, &size) == RD_KAFKA_CONF_OK;
}

/*
 * conf_build
 *		Base settings, then role defaults, then the user's properties (which
 *		win).
 */
static rd_kafka_conf_t *
conf_build(const BkKafkaSettings *settings, const char *const *defaults,
		   BkError *err)
{
	rd_kafka_conf_t *conf;
	ConfApply apply;
	char value[16];

	if (settings->brokers == NULL || settings->brokers[0] == '\0')
	{
		bk_error_set(err, BK_ERR_CONFIG, "no Kafka brokers configured");
		bk_error_hint(err, "Set kafka_brokers (bk.kafka_brokers in PostgreSQL, "
						   "--brokers on the command line), e.g. "
						   "\"kafka1:9092,kafka2:9092\".");
		return NULL;
	}
	conf = rd_kafka_conf_new();
	apply.conf = conf;
	if (!conf_apply_one(&apply, "bootstrap.servers", settings->brokers, err) ||
		!conf_apply_one(&apply, "client.id",
						settings->client_id ? settings->client_id : "bk",
						err) ||
		!conf_apply_one(&apply, "log.queue", "true", err))
		goto fail;
	for (const char *const *pair = defaults; pair != NULL && pair[0] != NULL;
		 pair += 2)
		if (!conf_apply_one(&apply, pair[0], pair[1], err))
			goto fail;
	if (!bk_config_parse_properties(settings->properties, conf_apply_one,
									&apply, err))
		goto fail;

	/*
	 * The user's properties win, but not over the log queue: without it
	 * librdkafka calls the log callback from its own threads, where a
	 * PostgreSQL process must run none of its code and the sinks'
	 * buffers have no lock (bk_kafka.h).
	 */
	if (!conf_get_string(conf, "log.queue", value, sizeof(value)) ||
		strcmp(value, "true") != 0)
	{
		bk_error_set(err, BK_ERR_CONFIG,
					 "Kafka property log.queue must stay true for bk");
		bk_error_hint(err, "Remove log.queue from the Kafka properties: bk "
						   "serves librdkafka's logs on its own thread.");
		goto fail;
	}
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	return conf;

fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

rd_kafka_conf_t *
bk_kafka_conf_new(const BkKafkaSettings *settings, BkError *err)
{
	return conf_build(settings, NULL, err);
}

rd_kafka_t *
bk_kafka_admin_new(const BkKafkaSettings *settings, BkError *err)
{
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	BkKafkaLogSink *log;
	char errstr[512];

	/* The handle's opaque; freed by bk_kafka_admin_free. */
	log = malloc(sizeof(*log));
	if (log == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	log->log_fn = settings->log_fn ? settings->log_fn : default_log;
	log->log_arg = settings->log_arg;
	conf = conf_build(settings, NULL, err);
	if (conf == NULL)
	{
		free(log);
		return NULL;
	}
	rd_kafka_conf_set_opaque(conf, log);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		free(log);
		bk_error_set(err, BK_ERR_KAFKA, "could not create a Kafka client: %s",
					 errstr);
		return NULL;
	}
	bk_kafka_route_logs(rk);
	return rk;
}

void
bk_kafka_admin_free(rd_kafka_t *rk)
{
	BkKafkaLogSink *log;

	if (rk == NULL)
		return;
	log = rd_kafka_opaque(rk);
	rd_kafka_poll(rk, 0);
	rd_kafka_destroy(rk);
	free(log);
}

void
bk_kafka_route_logs(rd_kafka_t *rk)
{
	/* NULL: the main queue, served by rd_kafka_poll on the caller's thread. */
	rd_kafka_set_log_queue(rk, NULL);
}

static bool
conf_get_long(rd_kafka_conf_t *conf, const char *key, long *value, BkError *err)
{
	char buf[64];
	size_t size = sizeof(buf);
	char *end;

	if (rd_kafka_conf_get(conf, key, buf, &size) != RD_KAFKA_CONF_OK)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"Kafka property %s unreadable", key);
	*value = strtol(buf, &end, 10);
	return true;
}

/* The slot of a partition's newest acknowledgement in this send. */
static AckTime *
ack_time_slot(BkProducer *producer, const rd_kafka_message_t *msg)
{
	AckTime *slot;

	for (int slotIdx = 0; slotIdx < producer->ack_time_count; slotIdx++)
		if (producer->ack_times[slotIdx].rkt == msg->rkt &&
			producer->ack_times[slotIdx].partition == msg->partition)
			return &producer->ack_times[slotIdx];
	if (producer->ack_time_count < ACK_TIME_SLOTS)
		slot = &producer->ack_times[producer->ack_time_count++];
	else
	{
		/* The least recently acknowledged partition's (see above). */
		slot = &producer->ack_times[0];
		for (int slotIdx = 1; slotIdx < ACK_TIME_SLOTS; slotIdx++)
			if (producer->ack_times[slotIdx].used < slot->used)
				slot = &producer->ack_times[slotIdx];
	}
	slot->rkt = msg->rkt;
	slot->partition = msg->partition;
	slot->index = UINT32_MAX;
	slot->broker_time = -1;
	return slot;
}

void
bk_kafka_header_string(const rd_kafka_message_t *msg, const char *name,
					   char *out, size_t out_len)
{
	rd_kafka_headers_t *headers = NULL;
	const void *value;
	size_t size;

	out[0] = '\0';
	if (rd_kafka_message_headers(msg, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR &&
		rd_kafka_header_get_last(headers, name, &value, &size) ==
			RD_KAFKA_RESP_ERR_NO_ERROR &&
		value != NULL)
		bk_printable_copy(out, out_len, value, size);
}

/*
 * The object a chunk belongs to and its index there, by its bk-object and
 * bk-chunk-index headers: object "?" and *chunk unchanged where missing.
 */
static void
message_chunk(const rd_kafka_message_t *msg, char *object, size_t object_len,
			  uint32_t *chunk)
{
	char number[12];

	bk_kafka_header_string(msg, "bk-object", object, object_len);
	if (object[0] == '\0')
		bk_strlcpy(object, "?", object_len);
	bk_kafka_header_string(msg, "bk-chunk-index", number, sizeof(number));
	if (number[0] != '\0')
		*chunk = (uint32_t) strtoul(number, NULL, 10);
}

/*
 * note_ack_time
 *		Time an acknowledged chunk against the chunk of its object before it
 *		(BK_CHUNK_GAP_MAX_MS), by the broker's append times.  The idempotent
 *		producer reports a partition's messages in the order they were
 *		produced, and an object's chunks are produced one after another
 *		into one partition, so the partition's previous report is that
 *		chunk's.  A topic without LogAppendTime gives no broker time: its
 *		shipper gives nothing up, and there is nothing to check.
 */
static void
note_ack_time(BkProducer *producer, const rd_kafka_message_t *msg,
			  uintptr_t tag)
{
	AckTime *slot = ack_time_slot(producer, msg);
	uint32_t index = (uint32_t) (tag & TAG_INDEX_MASK);
	int64_t broker_time = bk_kafka_broker_time(msg);

	if ((tag & TAG_CONTINUES) != 0 && slot->index + 1 == index &&
		slot->broker_time >= 0 && broker_time >= 0 &&
		broker_time - slot->broker_time > producer->chunk_gap_max_ms &&
		producer->gap_ms == 0)
	{
		producer->gap_ms = broker_time - slot->broker_time;
		producer->gap_chunk = index;
		message_chunk(msg, producer->gap_object, sizeof(producer->gap_object),
					  &producer->gap_chunk);
	}
	slot->index = index;
	slot->used = producer->acked;
	/*
	 * A report without broker time (a message acknowledged implicitly, or
	 * as a duplicate) keeps the time before: the next gap measured can
	 * then only come out longer than it was, never shorter.
	 */
	if (broker_time >= 0)
		slot->broker_time = broker_time;
}

/* bk_kafka_last_ack_ms: set by whichever thread serves a producer's reports. */
static int64_t last_ack_ms = 0;

int64_t
bk_kafka_last_ack_ms(void)
{
	return __atomic_load_n(&last_ack_ms, __ATOMIC_RELAXED);
}

static void
dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	BkProducer *producer = opaque;
	uintptr_t tag = (uintptr_t) msg->_private;

	/* A report from an abandoned send: its state is gone, ignore it. */
	if ((uint32_t) (tag >> 32) != producer->generation)
		return;
	producer->inflight_bytes -= msg->len + msg->key_len;
	producer->inflight_messages--;
	producer->last_progress_ms = bk_monotonic_ms();
	if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		if (producer->failed++ == 0)
		{
			producer->first_error = msg->err;
			producer->first_error_chunk = (uint32_t) (tag & TAG_INDEX_MASK);
			/* Keys are source ids and object names: printable ASCII. */
			bk_printable_copy(producer->first_error_key,
							  sizeof(producer->first_error_key),
							  (const char *) msg->key, msg->key_len);
			message_chunk(msg, producer->first_error_object,
						  sizeof(producer->first_error_object),
						  &producer->first_error_chunk);
		}
		return;
	}
	producer->acked++;
	__atomic_store_n(&last_ack_ms, producer->last_progress_ms,
					 __ATOMIC_RELAXED);
	note_ack_time(producer, msg, tag);
	producer->partition = msg->partition;
	if (producer->first_offset < 0 || msg->offset < producer->first_offset)
		producer->first_offset = msg->offset;
	if (msg->offset > producer->last_offset)
		producer->last_offset = msg->offset;
}

static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	BkProducer *producer = opaque;

	if (err == RD_KAFKA_RESP_ERR__FATAL)
	{
		char fatal[400];

		producer->fatal = true;
		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		snprintf(producer->fatal_text, sizeof(producer->fatal_text), "%s",
				 fatal);
		return;
	}
	snprintf(producer->last_broker_error, sizeof(producer->last_broker_error),
			 "%s", reason);
}

BkProducer *
bk_producer_new(const BkKafkaSettings *settings, BkError *err)
{
	BkProducer *producer;
	char message_max[32];
	char timeout[32];
	char idempotence[16];
	char partitioner[32] = "";
	char linger[16];
	long value;
	size_t needed;

	/*
	 * One produce request in flight per broker, carrying up to batch.size
	 * bytes (BK_KAFKA_BATCH_CHUNKS chunks that did not compress, more that
	 * did, unless the caller bounds the count): the broker appends (and, on
	 * a single node, fsyncs) once per request, not once per chunk, which
	 * was most of its CPU per archived segment.  A pipeline of five gains
	 * little, and puts five messages or more in flight, which makes
	 * librdkafka 2.0's broker thread spin (below): it burned as much CPU as
	 * compressing and encrypting (48% of a snapshot worker's samples,
	 * against 9-14% with one).  A high-latency link can raise it through
	 * the Kafka properties, or (better) raise the chunk size.
	 */
	const char *defaults[] = {"max.in.flight.requests.per.connection",
							  "1",
							  "enable.idempotence",
							  "true",
							  "acks",
							  "all",
							  "compression.type",
							  "none",
							  "message.timeout.ms",
							  timeout,
							  "message.max.bytes",
							  message_max,
							  "batch.size",
							  message_max,
							  "linger.ms",
							  linger,
							  NULL, /* the optional pair (below), then the */
							  NULL, /* end */
							  NULL,
							  NULL};
	char request_messages[16];

	/*
	 * With librdkafka 2.0, a producer whose in-flight request carries five
	 * messages or more spins its broker thread (poll with no timeout) until
	 * the acknowledgement, as long as more messages wait: the idempotent
	 * producer's limit of five requests in flight per partition is checked
	 * against the messages in flight, after the thread's next wake-up was
	 * set to "now".  With at most four messages per request the next request
	 * is built while one is in flight and the thread sleeps until the
	 * broker answers.  Compressed WAL chunks are a third of their size, so
	 * batch.size alone let eleven into a request: the archiver's broker
	 * thread spent 15 ms of CPU per segment spinning (BENCHMARKS.md).  The
	 * price: a round trip carries at most four chunks.
	 */
	if (settings->request_messages > 0)
	{
		size_t slot = 0;

		while (defaults[slot] != NULL)
			slot += 2;
		snprintf(request_messages, sizeof(request_messages), "%d",
				 settings->request_messages);
		defaults[slot] = "batch.num.messages";
		defaults[slot + 1] = request_messages;
	}

	snprintf(linger, sizeof(linger), "%d",
			 settings->linger_ms > 0 ? settings->linger_ms
									 : PRODUCER_LINGER_MS_DEFAULT);
	needed = bk_kafka_message_max(settings->chunk_size);
	snprintf(message_max, sizeof(message_max), "%zu",
			 bk_kafka_batch_max(settings->chunk_size));
	snprintf(timeout, sizeof(timeout), "%d",
			 settings->timeout_ms > 0 ? settings->timeout_ms
									  : BK_KAFKA_TIMEOUT_DEFAULT_MS);

	producer = calloc(1, sizeof(*producer));
	if (producer == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	producer->sink.log_fn = settings->log_fn ? settings->log_fn : default_log;
	producer->sink.log_arg = settings->log_arg;
	producer->alarm_fn = settings->alarm_fn;
	producer->alarm_arg = settings->alarm_arg;
	if (settings->audit_topic != NULL && settings->source_id != NULL)
	{
		bk_strlcpy(producer->audit_topic, settings->audit_topic,
				   sizeof(producer->audit_topic));
		bk_strlcpy(producer->source_id, settings->source_id,
				   sizeof(producer->source_id));
	}
	producer->template_conf = conf_build(settings, defaults, err);
	if (producer->template_conf == NULL)
	{
		free(producer);
		return NULL;
	}

	/* What the user's properties left in effect must still mean "durable". */
	if (!conf_get_string(producer->template_conf, "enable.idempotence",
						 idempotence, sizeof(idempotence)) ||
		strcmp(idempotence, "true") != 0)
	{
		bk_error_set(err, BK_ERR_CONFIG,
					 "Kafka property enable.idempotence must stay true for bk");
		bk_error_hint(err,
					  "Remove enable.idempotence from the Kafka properties: "
					  "without it a retry can duplicate or reorder chunks.");
		goto fail;
	}
	if (!conf_get_long(producer->template_conf, "acks", &value, err))
		goto fail;
	if (value != -1)
	{
		bk_error_set(err, BK_ERR_CONFIG,
					 "Kafka property acks must stay \"all\" for bk (found %ld)",
					 value);
		bk_error_hint(err, "Remove acks from the Kafka properties: an archived "
						   "segment must be on every in-sync replica.");
		goto fail;
	}
	/*
	 * Every chunk of an object must reach the same partition, where the
	 * shipper assembles it: partitioned by key, as every partitioner but
	 * "random" does for a non-empty key.  Spread at random, each chunk is
	 * acknowledged, and the object reported archived, yet no shipper ever
	 * sees it whole.  bk applies the partitioner itself, once per object
	 * (object_partition).
	 */
	if (conf_get_string(producer->template_conf, "partitioner", partitioner,
						sizeof(partitioner)))
	{
		for (size_t fnIdx = 0;
			 fnIdx < sizeof(partitioners) / sizeof(partitioners[0]); fnIdx++)
			if (strcmp(partitioner, partitioners[fnIdx].name) == 0)
				producer->partitioner = partitioners[fnIdx].fn;
	}
	if (producer->partitioner == NULL)
	{
		bk_error_set(err, BK_ERR_CONFIG,
					 "Kafka property partitioner must keep a key's messages "
					 "in one partition for bk (found \"%s\")",
					 partitioner);
		bk_error_hint(err, "Remove partitioner from the Kafka properties: the "
						   "shipper assembles each object from one "
						   "partition.");
		goto fail;
	}
	if (!conf_get_long(producer->template_conf, "message.max.bytes", &value,
					   err))
		goto fail;
	producer->message_max = (size_t) value;
	if (producer->message_max < needed)
	{
		bk_error_set(err, BK_ERR_CONFIG,
					 "chunk size %" PRIu32 " makes Kafka messages of up to %zu "
					 "bytes, above the producer's message.max.bytes of %zu",
					 settings->chunk_size, needed, producer->message_max);
		bk_error_hint(err,
					  "Lower the chunk size, or raise message.max.bytes in "
					  "the Kafka properties (and the topics' "
					  "max.message.bytes) to at least %zu.",
					  needed);
		goto fail;
	}
	if (!conf_get_long(producer->template_conf, "message.timeout.ms", &value,
					   err))
		goto fail;
	producer->timeout_ms = (int) value;
	/* A message always goes when nothing is in flight, whatever the bound. */
	/*
	 * Without a pause, two chunks of an object are appended at most about
	 * message.timeout.ms apart (the second is queued once the first is
	 * acknowledged, or before, and is appended within the timeout or
	 * fails): a bound below twice that would fail sends over a slow link
	 * forever.
	 */
	producer->chunk_gap_max_ms =
		settings->chunk_gap_max_ms > 0 ? settings->chunk_gap_max_ms
		: 2 * (int64_t) producer->timeout_ms > BK_CHUNK_GAP_MAX_MS
			? 2 * (int64_t) producer->timeout_ms
			: BK_CHUNK_GAP_MAX_MS;
	producer->window_bytes = settings->window_bytes > 0 ? settings->window_bytes
														: PRODUCER_WINDOW_BYTES;
	/*
	 * With requests capped at request_messages and one in flight, a message
	 * waits its turn behind every request queued before it, while
	 * message.timeout.ms runs from the moment it was queued.  Bytes alone do
	 * not bound that wait: small, compressible chunks (a switched segment
	 * under bk.chunk_size = 8kB) put thousands of frames into the byte
	 * window, and the last ones timed out on a loaded machine.  Sixteen
	 * requests' worth keeps the connection busy.
	 */
	producer->window_messages =
		settings->request_messages > 0
			? (size_t) settings->request_messages * PRODUCER_WINDOW_REQUESTS
			: 0;

	/*
	 * Lingering longer than the default, librdkafka sends a request once a
	 * full one is queued (or on a flush).  A window smaller than a full
	 * request would leave a partly filled one waiting out linger.ms each
	 * time it fills, with nothing in flight; one smaller than two full
	 * requests and one more message (of this chunk size) would leave none
	 * ready behind the request in flight.  Widen it to that.
	 */
	if (!conf_get_long(producer->template_conf, "linger.ms", &value, err))
		goto fail;
	if (value > PRODUCER_LINGER_MS_DEFAULT)
	{
		long batch_bytes;
		size_t floor_bytes;

		if (!conf_get_long(producer->template_conf, "batch.size", &batch_bytes,
						   err))
			goto fail;
		floor_bytes = 2 * (size_t) batch_bytes + needed;
		if (producer->window_bytes < floor_bytes)
			producer->window_bytes = floor_bytes;
	}
	if (producer->timeout_ms <= 0)
	{
		bk_error_set(
			err, BK_ERR_CONFIG,
			"Kafka property message.timeout.ms must be bounded (found %d)",
			producer->timeout_ms);
		bk_error_hint(err,
					  "An infinite delivery timeout would hold the archiver "
					  "forever while Kafka is down.");
		goto fail;
	}
	return producer;

fail:
	rd_kafka_conf_destroy(producer->template_conf);
	free(producer);
	return NULL;
}

/* Create the handle if there is none. */
static bool
producer_connect(BkProducer *producer, BkError *err)
{
	rd_kafka_conf_t *conf;
	char errstr[512];

	if (producer->rk != NULL)
		return true;
	conf = rd_kafka_conf_dup(producer->template_conf);
	rd_kafka_conf_set_opaque(conf, producer);
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	/* rd_kafka_new takes ownership of conf only on success. */
	producer->rk =
		rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (producer->rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		return bk_error_set(err, BK_ERR_KAFKA,
							"could not create a Kafka producer: %s", errstr);
	}
	bk_kafka_route_logs(producer->rk);
	producer->fatal = false;
	producer->fatal_text[0] = '\0';
	producer->last_broker_error[0] = '\0';
	return true;
}

/*
 * raise_alarm
 *		A handle failed fatally (bk_kafka.h, BkKafkaAlarm): tell the host
 *		once, and keep the audit event for the next send.  Silence here
 *		would leave a DBA to find the hole at restore time.
 */
static void
raise_alarm(BkProducer *producer, rd_kafka_resp_err_t kerr, const char *detail,
			const char *topic)
{
	BkKafkaAlarm alarm;

	memset(&alarm, 0, sizeof(alarm));
	bk_strlcpy(alarm.topic, topic, sizeof(alarm.topic));
	bk_strlcpy(alarm.error, rd_kafka_err2name(kerr), sizeof(alarm.error));
	bk_strlcpy(alarm.detail, detail, sizeof(alarm.detail));
	alarm.wall_ms = bk_wall_ms();
	snprintf(alarm.message, sizeof(alarm.message),
			 "the Kafka producer failed fatally (%s) while sending to topic "
			 "\"%s\": messages Kafka acknowledged earlier may be lost: %s",
			 alarm.error, alarm.topic, alarm.detail);
	bk_strlcpy(alarm.hint,
			   "The brokers lost or reordered acknowledged messages (an "
			   "unclean leader election, a broker that lost its log). "
			   "Check the repository for a gap since the last object known "
			   "archived with \"bk list\" and \"bk verify\", and take a "
			   "new snapshot (SELECT bk_snapshot()). What was not "
			   "acknowledged is sent again.",
			   sizeof(alarm.hint));
	if (producer->alarm_fn != NULL)
		producer->alarm_fn(producer->alarm_arg, &alarm);
	else
	{
		char line[sizeof(alarm.message) + sizeof(alarm.hint) + 8];

		snprintf(line, sizeof(line), "%s. %s", alarm.message, alarm.hint);
		producer->sink.log_fn(producer->sink.log_arg, 3, "FATAL", line);
	}
	if (producer->audit_topic[0] == '\0')
		return;
	if (!producer->audit_pending)
	{
		producer->audit_alarm = alarm;
		producer->audit_fatals = 0;
	}
	producer->audit_pending = true;
	producer->audit_fatals++;
}

/*
 * The producer-fatal event goes before the next object, which waits for
 * it: an audit topic Kafka cannot take (its partition without a leader, a
 * missing ACL) must not hold WAL back for kafka_timeout at every send.  So
 * an attempt waits ALARM_AUDIT_WAIT_MS at most, and after a failed one the
 * next waits ALARM_AUDIT_RETRY_MS.
 */
#define ALARM_AUDIT_WAIT_MS  2000
#define ALARM_AUDIT_RETRY_MS 60000

static bool
alarm_audit_deadline(void *arg)
{
	return bk_monotonic_ms() >= *(const int64_t *) arg;
}

/*
 * send_alarm_audit
 *		Send the producer-fatal event of the alarms raised since the last
 *		one Kafka took, on a fresh handle.  Kept for a later send when
 *		Kafka does not take it, so that each fatal error gets its event.
 */
static void
send_alarm_audit(BkProducer *producer, bool last)
{
	int64_t deadline_ms;

	BkAuditEvent *event;
	const BkKafkaAlarm *alarm = &producer->audit_alarm;
	char found[40];
	char *json;
	size_t len;
	BkError err;

	event = bk_audit_begin(BK_AUDIT_PRODUCER_FATAL, producer->source_id);
	bk_audit_string(event, "topic", alarm->topic);
	bk_audit_string(event, "error", alarm->error);
	bk_audit_string(event, "detail", alarm->detail);
	bk_format_time_utc(alarm->wall_ms, found, sizeof(found));
	bk_audit_string(event, "found", found);
	bk_audit_int(event, "fatal_errors", producer->audit_fatals);
	json = bk_audit_finish(event, bk_wall_ms(), &len);
	if (json == NULL)
		return; /* out of memory: kept for the next send */
	bk_error_clear(&err);
	producer->audit_sending = true;
	deadline_ms = bk_monotonic_ms() + ALARM_AUDIT_WAIT_MS;
	if (bk_producer_send_message(producer, producer->audit_topic,
								 producer->source_id, json, len,
								 alarm_audit_deadline, &deadline_ms, &err))
		producer->audit_pending = false;
	else
	{
		char line[BK_ERROR_MESSAGE_MAX + 128];

		producer->audit_retry_ms = bk_monotonic_ms() + ALARM_AUDIT_RETRY_MS;
		if (last)
			snprintf(line, sizeof(line),
					 "could not send the %s audit event within %d ms before "
					 "the producer closed; it is lost (the alarm was "
					 "logged): %s",
					 BK_AUDIT_PRODUCER_FATAL, ALARM_AUDIT_WAIT_MS, err.message);
		else
			snprintf(line, sizeof(line),
					 "could not send the %s audit event within %d ms, sent "
					 "again before an object in %d s: %s",
					 BK_AUDIT_PRODUCER_FATAL, ALARM_AUDIT_WAIT_MS,
					 ALARM_AUDIT_RETRY_MS / 1000, err.message);
		producer->sink.log_fn(producer->sink.log_arg, 4, "FATAL", line);
	}
	producer->audit_sending = false;
	free(json);
}

/* Purge everything queued or in flight and destroy the handle, bounded. */
static void
producer_disconnect(BkProducer *producer)
{
	char detail[512];
	char topic[256];
	rd_kafka_resp_err_t fatal;

	if (producer->rk == NULL)
		return;
	/*
	 * Read before destroying: the handle is the only record of it, and the
	 * error callback may not have been served.  The topic is that of the
	 * send that found it; detail names the partition.
	 */
	fatal = rd_kafka_fatal_error(producer->rk, detail, sizeof(detail));
	bk_strlcpy(topic,
			   producer->batch_topic[0] ? producer->batch_topic
			   : producer->known_topic
				   ? rd_kafka_topic_name(producer->known_topic)
				   : "(none)",
			   sizeof(topic));
	if (producer->known_topic != NULL)
	{
		rd_kafka_topic_destroy(producer->known_topic);
		producer->known_topic = NULL;
	}
	rd_kafka_purge(producer->rk,
				   RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	/* Serve the purge reports (and pending logs) before destroying. */
	rd_kafka_poll(producer->rk, 0);
	rd_kafka_destroy(producer->rk);
	producer->rk = NULL;
	/* Reports still arriving belong to a generation no one waits for. */
	producer->generation++;
	/* A failed send may come from a stale count: the next handle reads it. */
	memset(producer->partition_counts, 0, sizeof(producer->partition_counts));
	if (fatal != RD_KAFKA_RESP_ERR_NO_ERROR)
		raise_alarm(producer, fatal, detail, topic);
}

bool
bk_producer_connect(BkProducer *producer, const char *topic, BkError *err)
{
	if (!producer_connect(producer, err))
		return false;
	/*
	 * A topic handle makes librdkafka fetch the topic's metadata now.  Left
	 * to the first message, librdkafka 2.0 queues that request without
	 * waking its broker thread, which sends it at its next 1 s poll timeout:
	 * the first segment after a start took 0.8 s, against 30 ms for the
	 * next ones.
	 */
	if (topic != NULL && producer->known_topic != NULL &&
		strcmp(rd_kafka_topic_name(producer->known_topic), topic) != 0)
	{
		rd_kafka_topic_destroy(producer->known_topic);
		producer->known_topic = NULL;
	}
	if (topic != NULL && producer->known_topic == NULL)
	{
		producer->known_topic = rd_kafka_topic_new(producer->rk, topic, NULL);
		if (producer->known_topic == NULL)
			return bk_error_set(err, BK_ERR_KAFKA,
								"could not make topic \"%s\" known to the "
								"producer: %s",
								topic, rd_kafka_err2str(rd_kafka_last_error()));
	}
	return true;
}

void
bk_producer_free(BkProducer *producer)
{
	if (producer == NULL)
		return;
	/* May find a fatal error, and so raise the alarm. */
	producer_disconnect(producer);
	/* The alarm's event, unsent: one last attempt, bounded, on a new handle. */
	if (producer->audit_pending && !producer->audit_sending)
	{
		send_alarm_audit(producer, true);
		producer_disconnect(producer);
	}
	rd_kafka_conf_destroy(producer->template_conf);
	free(producer);
}

int64_t
bk_producer_send_wait_max_ms(const BkProducer *producer, uint64_t bytes)
{
	uint64_t windows = bytes / producer->window_bytes + 1;

	return (int64_t) windows *
		   ((int64_t) producer->timeout_ms + BK_KAFKA_TIMEOUT_SLACK_MS);
}

rd_kafka_t *
bk_producer_handle(BkProducer *producer)
{
	BkError ignored;

	if (!producer_connect(producer, &ignored))
		return NULL;
	return producer->rk;
}

void
bk_producer_poll(BkProducer *producer, int timeout_ms)
{
	if (producer->rk != NULL)
		rd_kafka_poll(producer->rk, timeout_ms);
}

/* One message to produce: value, key and headers (ownership passes on success). */
typedef struct OutMessage
{
	const void *value;
	size_t len;
	rd_kafka_headers_t *headers;
	const char *description; /* "chunk 3 of 16 of \"name\"", for errors */
	const char *object;      /* "\"name\"", or NULL for a single message */
	bool continues;          /* a chunk after the first of its object */
} OutMessage;

typedef bool (*NextMessageFn)(void *arg, OutMessage *out, bool *end,
							  BkError *err);

/* What to do when the brokers did not acknowledge in time. */
static void
hint_unacknowledged(BkProducer *producer, BkError *err)
{
	bk_error_hint(err,
				  "The brokers did not acknowledge within message.timeout.ms "
				  "(%d ms). Check that Kafka is up and reachable: WAL and "
				  "binlog are sent again; a snapshot stops and can be taken "
				  "again.",
				  producer->timeout_ms);
}

/*
 * send_failure
 *		Describe the current failure into err, naming the message that
 *		failed: for one object, the first chunk whose delivery failed; in a
 *		batch of several objects, the key of that chunk.
 */
static bool
send_failure(BkProducer *producer, BkError *err)
{
	char failed[BK_OBJECT_NAME_MAX + BK_SOURCE_ID_MAX + 64];
	const char *topic = producer->batch_topic;

	if (producer->chunked && producer->batch_objects > 1 &&
		strcmp(producer->first_error_object, "?") != 0)
		snprintf(failed, sizeof(failed), "chunk %" PRIu32 " of \"%s\"",
				 producer->first_error_chunk, producer->first_error_object);
	else if (producer->chunked && producer->batch_objects > 1)
		snprintf(failed, sizeof(failed),
				 "a chunk of the object with key \"%s\"",
				 producer->first_error_key);
	else if (producer->chunked)
		snprintf(failed, sizeof(failed), "chunk %" PRIu32 " of %s",
				 producer->first_error_chunk, producer->object);
	else
		bk_strlcpy(failed, "the message", sizeof(failed));
	if (producer->failed == 0 && !producer->fatal && producer->gap_ms > 0)
	{
		bk_error_set(err, BK_ERR_KAFKA,
					 "Kafka appended chunk %" PRIu32 " of \"%s\" on topic "
					 "\"%s\" %" PRId64 " ms after the chunk before it, by the "
					 "broker's clock: more than the %" PRId64 " ms a source "
					 "may leave between two chunks of an object, after which "
					 "a shipper may give the object up",
					 producer->gap_chunk, producer->gap_object, topic,
					 producer->gap_ms, producer->chunk_gap_max_ms);
		bk_error_hint(err, "The source was paused or suspended mid-object, or "
						   "Kafka stalled. Nothing was reported sent: WAL and "
						   "binlog are sent again as a new attempt; a snapshot "
						   "stops and can be taken again.");
		return false;
	}
	if (producer->fatal)
		return bk_error_set(err, BK_ERR_KAFKA,
							"Kafka producer failed fatally while sending %s to "
							"topic \"%s\": %s",
							producer->chunked ? producer->object
											  : "the message",
							topic, producer->fatal_text);
	bk_error_set(err,
				 producer->first_error == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT
					 ? BK_ERR_TIMEOUT
					 : BK_ERR_KAFKA,
				 "Kafka did not acknowledge %s on topic \"%s\": %s%s%s", failed,
				 topic, rd_kafka_err2str(producer->first_error),
				 producer->last_broker_error[0] ? "; last broker error: " : "",
				 producer->last_broker_error);
	if (producer->first_error == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT)
		hint_unacknowledged(producer, err);
	else if (producer->first_error == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
		bk_error_hint(err, "Raise the topic's max.message.bytes (bk init "
						   "checks it) or lower the chunk size.");
	else if (producer->first_error == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
			 producer->first_error == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
			 producer->first_error == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
		/* The last: a topic deleted while the producer ran (its partitions
		 * went from N to none). */
		bk_error_hint(err, "The topic does not exist (deleted?): create "
						   "the topics with \"bk init\".");
	return false;
}

/*
 * report_silence
 *		librdkafka gave no delivery report at all within message.timeout.ms
 *		plus slack (its timeout scan can lag while it backs off reconnecting
 *		to a dead broker).  Name what is unacknowledged: the message being
 *		sent, or, in a batch of several objects, how much of the batch.
 */
static void
report_silence(BkProducer *producer, BkError *err)
{
	char pending[BK_OBJECT_NAME_MAX + 96];

	if (producer->batch_objects > 1)
		snprintf(pending, sizeof(pending),
				 "%" PRIu32 " of the %" PRIu32
				 " messages of a batch of %" PRIu32 " objects",
				 producer->produced - producer->acked - producer->failed,
				 producer->produced, producer->batch_objects);
	else
		bk_strlcpy(pending, producer->what, sizeof(pending));
	bk_error_set(err, BK_ERR_TIMEOUT,
				 "no delivery report from Kafka for %s on topic \"%s\" "
				 "within %d ms%s%s",
				 pending, producer->batch_topic, producer->timeout_ms,
				 producer->last_broker_error[0] ? "; last broker error: " : "",
				 producer->last_broker_error);
	hint_unacknowledged(producer, err);
}

/*
 * batch_abandon
 *		Give up the batch: purge what is queued or in flight, serve the
 *		reports briefly, and destroy the handle (see the file header).
 */
static void
batch_abandon(BkProducer *producer)
{
	int64_t drain_until = bk_monotonic_ms() + PRODUCER_DRAIN_MS;

	if (producer->rk != NULL)
	{
		rd_kafka_purge(producer->rk,
					   RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		while (producer->acked + producer->failed < producer->produced &&
			   bk_monotonic_ms() < drain_until)
			rd_kafka_poll(producer->rk, 10);
	}
	producer_disconnect(producer);
	producer->batch_open = false;
}

void
bk_producer_batch_abandon(BkProducer *producer)
{
	if (producer->batch_open)
		batch_abandon(producer);
}

bool
bk_producer_batch_begin(BkProducer *producer, BkError *err)
{
	/*
	 * A batch its caller left on an error path is given up now, so that its
	 * queued messages neither escape the memory window nor go out later.
	 */
	if (producer->batch_open)
		batch_abandon(producer);
	/* A handle in a fatal state can never send again: replace it first. */
	if (producer->rk != NULL && rd_kafka_fatal_error(producer->rk, NULL, 0) !=
									RD_KAFKA_RESP_ERR_NO_ERROR)
		producer_disconnect(producer);
	/*
	 * The event of a fatal error goes before anything else this producer
	 * sends (a batch of its own, so not from inside another).
	 */
	if (producer->audit_pending && !producer->audit_sending &&
		bk_monotonic_ms() >= producer->audit_retry_ms)
		send_alarm_audit(producer, false);
	if (!producer_connect(producer, err))
		return false;
	producer->generation++;
	producer->produced = 0;
	producer->acked = 0;
	producer->failed = 0;
	producer->inflight_bytes = 0;
	producer->inflight_messages = 0;
	producer->first_error = RD_KAFKA_RESP_ERR_NO_ERROR;
	producer->first_error_key[0] = '\0';
	producer->first_error_object[0] = '\0';
	producer->first_offset = -1;
	producer->last_offset = -1;
	producer->partition = -1;
	producer->ack_time_count = 0;
	producer->gap_ms = 0;
	producer->batch_start_ms = bk_monotonic_ms();
	producer->last_progress_ms = producer->batch_start_ms;
	producer->batch_objects = 0;
	producer->batch_topic[0] = '\0';
	bk_strlcpy(producer->what, "the message", sizeof(producer->what));
	producer->object[0] = '\0';
	producer->chunked = false;
	producer->batch_open = true;
	return true;
}

/*
 * read_partition_count
 *		Ask the brokers how many partitions a topic has, for at most
 *		message.timeout.ms.
 */
static bool
read_partition_count(BkProducer *producer, rd_kafka_topic_t *rkt,
					 int32_t *count, BkInterruptFn interrupted,
					 void *interrupt_arg, BkError *err)
{
	int64_t deadline = bk_monotonic_ms() + producer->timeout_ms;
	const char *topic = rd_kafka_topic_name(rkt);
	int wait_ms = 100;

	for (;;)
	{
		const struct rd_kafka_metadata *metadata = NULL;
		rd_kafka_resp_err_t kerr;

		/*
		 * The call blocks: short waits first, so that an interrupt is seen
		 * soon, longer ones for a slow link.
		 */
		kerr = rd_kafka_metadata(producer->rk, 0, rkt, &metadata, wait_ms);
		wait_ms = wait_ms < 1000 ? wait_ms * 2 : 1000;
		if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			if (metadata->topic_cnt == 1)
			{
				kerr = metadata->topics[0].err;
				*count = metadata->topics[0].partition_cnt;
			}
			else
				kerr = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
			rd_kafka_metadata_destroy(metadata);
			if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR && *count > 0)
				return true;
			/*
			 * Refusals waiting does not change, which librdkafka itself
			 * fails a message on at once: no ACL for the topic, a name
			 * the brokers reject.
			 */
			if (kerr == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
				kerr == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION)
			{
				bk_error_set(err, BK_ERR_KAFKA,
							 "Kafka refused to describe topic \"%s\": %s",
							 topic, rd_kafka_err2str(kerr));
				return bk_error_hint(
					err, "Grant the producer's principal Describe and "
						 "Write on the topic (or fix the topic name): WAL "
						 "and binlog are sent again; a snapshot stops and "
						 "can be taken again.");
			}
		}
		if (interrupted != NULL && interrupted(interrupt_arg))
			return bk_error_set(err, BK_ERR_INTERRUPTED,
								"reading the partitions of Kafka topic \"%s\" "
								"was interrupted",
								topic);
		if (bk_monotonic_ms() >= deadline)
		{
			bk_error_set(err, BK_ERR_TIMEOUT,
						 "could not read the partitions of Kafka topic \"%s\" "
						 "within %d ms: %s",
						 topic, producer->timeout_ms,
						 kerr == RD_KAFKA_RESP_ERR_NO_ERROR
							 ? "the topic has no partitions"
							 : rd_kafka_err2str(kerr));
			return bk_error_hint(err, "Check that Kafka is up and reachable "
									  "and that the topic exists (bk init "
									  "creates it); the object will be sent "
									  "again.");
		}
		/*
		 * An error answered at once (no such topic yet) backs off as the
		 * waits grow: a couple of requests a second, not twenty.
		 */
		if (kerr != RD_KAFKA_RESP_ERR__TIMED_OUT)
			rd_kafka_poll(producer->rk, wait_ms < 500 ? wait_ms : 500);
	}
}

/*
 * object_partition
 *		The one partition every message of an object goes to.
 *
 * librdkafka partitions a message when it is queued, by the partition count
 * it knows at that moment.  Partitions added to the topic while an object is
 * being sent would change that count between two of its chunks and split
 * the object over two partitions: every chunk acknowledged, the segment
 * reported archived, and no shipper ever seeing it whole.  So bk applies the
 * configured partitioner itself, once per object, over a count read from
 * the brokers at most PARTITION_COUNT_MAX_AGE_MS ago.  Partitions are only
 * ever added, so an older count still names a partition that exists, and a
 * key maps where librdkafka would have put it.
 */
static bool
object_partition(BkProducer *producer, const char *topic, const char *key,
				 size_t key_len, int32_t *partition, BkInterruptFn interrupted,
				 void *interrupt_arg, BkError *err)
{
	PartitionCount *entry = NULL;
	int64_t now = bk_monotonic_ms();
	rd_kafka_topic_t *rkt;
	bool ok = true;

	for (int countIdx = 0; countIdx < PARTITION_COUNT_TOPICS; countIdx++)
	{
		PartitionCount *candidate = &producer->partition_counts[countIdx];

		if (strcmp(candidate->topic, topic) == 0)
		{
			entry = candidate;
			break;
		}
		if (entry == NULL || candidate->read_ms < entry->read_ms)
			entry = candidate; /* the oldest, replaced if topic is new */
	}
	rkt = rd_kafka_topic_new(producer->rk, topic, NULL);
	if (rkt == NULL)
		return bk_error_set(err, BK_ERR_KAFKA,
							"could not open Kafka topic \"%s\": %s", topic,
							rd_kafka_err2str(rd_kafka_last_error()));
	if (strcmp(entry->topic, topic) != 0 || entry->count <= 0 ||
		now - entry->read_ms >= PARTITION_COUNT_MAX_AGE_MS)
	{
		int32_t count = 0;

		ok = read_partition_count(producer, rkt, &count, interrupted,
								  interrupt_arg, err);
		if (ok)
		{
			bk_strlcpy(entry->topic, topic, sizeof(entry->topic));
			entry->count = count;
			entry->read_ms = now;
		}
	}
	if (ok)
		*partition =
			producer->partitioner(rkt, key, key_len, entry->count, NULL, NULL);
	rd_kafka_topic_destroy(rkt);
	return ok;
}

/*
 * batch_produce
 *		Queue every message next yields, within the memory window; fails
 *		(and abandons the batch) as soon as anything in the batch failed.
 */
static bool
batch_produce(BkProducer *producer, const char *topic, const char *key,
			  size_t key_len, NextMessageFn next, void *next_arg,
			  BkInterruptFn interrupted, void *interrupt_arg, BkError *err)
{
	OutMessage out;
	bool end = false;
	int32_t partition = RD_KAFKA_PARTITION_UA;

	if (!producer->batch_open)
		return bk_error_set(err, BK_ERR_INTERNAL, "no Kafka batch is open");
	bk_strlcpy(producer->batch_topic, topic, sizeof(producer->batch_topic));
	producer->batch_objects++;
	/*
	 * A message without a key (a single one: objects always have one) is
	 * left to librdkafka, as before: there is no key to partition by, and
	 * the partitioners' random fallback reads the topic's partitions, which
	 * only librdkafka may do, under the topic's lock.
	 */
	if (key_len > 0 &&
		!object_partition(producer, topic, key, key_len, &partition,
						  interrupted, interrupt_arg, err))
		goto abandon;
	for (;;)
	{
		rd_kafka_resp_err_t kerr;
		uintptr_t tag;

		if (!next(next_arg, &out, &end, err))
			goto abandon;
		if (end)
			break;
		bk_strlcpy(producer->what, out.description, sizeof(producer->what));
		if (out.object != NULL)
		{
			bk_strlcpy(producer->object, out.object, sizeof(producer->object));
			producer->chunked = true;
		}
		if (out.len + key_len + BK_KAFKA_MESSAGE_OVERHEAD / 2 >
			producer->message_max)
		{
			if (out.headers)
				rd_kafka_headers_destroy(out.headers);
			bk_error_set(
				err, BK_ERR_INTERNAL,
				"%s is %zu bytes, larger than message.max.bytes allows",
				producer->what, out.len);
			goto abandon;
		}
		tag = ((uintptr_t) producer->generation << 32) |
			  (out.continues ? TAG_CONTINUES : 0) | producer->produced;
		for (;;)
		{
			if (interrupted != NULL && interrupted(interrupt_arg))
			{
				if (out.headers)
					rd_kafka_headers_destroy(out.headers);
				bk_error_set(err, BK_ERR_INTERRUPTED,
							 "sending %s to Kafka was interrupted",
							 producer->what);
				goto abandon;
			}
			if (producer->failed > 0 || producer->fatal || producer->gap_ms > 0)
			{
				if (out.headers)
					rd_kafka_headers_destroy(out.headers);
				send_failure(producer, err);
				goto abandon;
			}
			/*
			 * Bound memory: wait for acknowledgements before queueing more,
			 * as long as bk_producer_batch_wait would: librdkafka's timeout
			 * scan can lag while it backs off reconnecting to a dead broker.
			 */
			if (producer->inflight_bytes >= producer->window_bytes ||
				(producer->window_messages > 0 &&
				 producer->inflight_messages >= producer->window_messages))
			{
				rd_kafka_poll(producer->rk, PRODUCER_POLL_MS);
				if (bk_monotonic_ms() - producer->last_progress_ms >
					producer->timeout_ms + BK_KAFKA_TIMEOUT_SLACK_MS)
				{
					if (out.headers)
						rd_kafka_headers_destroy(out.headers);
					report_silence(producer, err);
					goto abandon;
				}
				continue;
			}
			kerr = rd_kafka_producev(
				producer->rk, RD_KAFKA_V_TOPIC(topic),
				RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(key, key_len),
				RD_KAFKA_V_VALUE((void *) out.value, out.len),
				RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				RD_KAFKA_V_HEADERS(out.headers),
				RD_KAFKA_V_OPAQUE((void *) tag), RD_KAFKA_V_END);
			if (kerr == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			{
				rd_kafka_poll(producer->rk, PRODUCER_POLL_MS);
				continue;
			}
			break;
		}
		if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			/* Headers stay ours when producev fails. */
			if (out.headers)
				rd_kafka_headers_destroy(out.headers);
			bk_error_set(err, BK_ERR_KAFKA,
						 "could not queue %s for topic \"%s\": %s",
						 producer->what, topic, rd_kafka_err2str(kerr));
			goto abandon;
		}
		producer->produced++;
		producer->inflight_bytes += out.len + key_len;
		producer->inflight_messages++;
		rd_kafka_poll(producer->rk, 0);
	}
	return true;

abandon:
	batch_abandon(producer);
	return false;
}

bool
bk_producer_batch_wait(BkProducer *producer, BkInterruptFn interrupted,
					   void *interrupt_arg, BkSendStats *stats, BkError *err)
{
	bool served = false;

	if (!producer->batch_open)
		return bk_error_set(err, BK_ERR_INTERNAL, "no Kafka batch is open");
	while (producer->acked + producer->failed < producer->produced)
	{
		if (interrupted != NULL && interrupted(interrupt_arg))
		{
			bk_error_set(err, BK_ERR_INTERRUPTED,
						 "waiting for Kafka to acknowledge %s was interrupted",
						 producer->what);
			goto abandon;
		}
		/*
		 * A message that failed fails the batch, whatever becomes of the
		 * others: its error is reported as soon as it is known.  Waiting
		 * for the rest gained nothing and could cost the whole silence
		 * bound: librdkafka reports queued messages timed out in a scan
		 * once a second, and with the broker down the scan after the one
		 * that failed the first message waits out the reconnect backoff
		 * (5 to 10 s), so the batch was reported silent ("no delivery
		 * report"), its known timeout lost.  The reports already waiting
		 * were served with it (rd_kafka_flush below); batch_abandon purges
		 * the rest and a new handle leaves none of them to a later batch.
		 */
		if (producer->fatal || producer->gap_ms > 0 || producer->failed > 0)
		{
			send_failure(producer, err);
			goto abandon;
		}
		/*
		 * Silence counts only once the reports waiting are served: a caller
		 * with several producers waits on them in turn, and this one's
		 * acknowledgements may have come while it waited on another.
		 */
		if (served && bk_monotonic_ms() - producer->last_progress_ms >
						  producer->timeout_ms + BK_KAFKA_TIMEOUT_SLACK_MS)
		{
			report_silence(producer, err);
			goto abandon;
		}

		/*
		 * rd_kafka_flush serves delivery reports as rd_kafka_poll does, and
		 * while it runs librdkafka sends what is queued at once: nothing more
		 * is coming for this batch, so the last, partly filled produce
		 * request must not wait out linger.ms.  It returns a time-out when
		 * messages are still unacknowledged after PRODUCER_POLL_MS; the loop
		 * goes on.  Every message of this producer belongs to the batch.
		 */
		(void) rd_kafka_flush(producer->rk, PRODUCER_POLL_MS);
		served = true;
	}
	if (producer->failed > 0 || producer->gap_ms > 0)
	{
		send_failure(producer, err);
		goto abandon;
	}
	if (stats != NULL)
	{
		stats->messages = producer->acked;
		stats->elapsed_ms = bk_monotonic_ms() - producer->batch_start_ms;
		stats->partition = producer->partition;
		stats->first_offset = producer->first_offset;
		stats->last_offset = producer->last_offset;
	}
	producer->batch_open = false;
	return true;

abandon:
	batch_abandon(producer);
	return false;
}

/* Adapter: frames from a BkNextFrameFn become messages with bk-* headers. */
typedef struct FrameSource
{
	BkNextFrameFn next;
	void *arg;
	uint64_t bytes;
	char description[BK_OBJECT_NAME_MAX + 64];
	char object[BK_OBJECT_NAME_MAX + 8];
} FrameSource;

static bool
next_frame_message(void *arg, OutMessage *out, bool *end, BkError *err)
{
	FrameSource *source = arg;
	const uint8_t *frame = NULL;
	size_t len = 0;
	BkFrame info;

	if (!source->next(source->arg, &frame, &len, &info, err))
		return false;
	if (frame == NULL)
	{
		*end = true;
		return true;
	}
	snprintf(source->description, sizeof(source->description),
			 "chunk %" PRIu32 " of %" PRIu32 " of \"%.*s\"", info.chunk_index,
			 info.chunk_count, (int) info.name_len, info.name);
	out->value = frame;
	out->len = len;
	out->headers = bk_frame_headers(&info);
	snprintf(source->object, sizeof(source->object), "\"%.*s\"",
			 (int) info.name_len, info.name);
	out->description = source->description;
	out->object = source->object;
	out->continues = info.chunk_index > 0;
	source->bytes += len;
	return true;
}

bool
bk_producer_send_object(BkProducer *producer, const char *topic,
						const char *key, size_t key_len, BkNextFrameFn next,
						void *next_arg, BkInterruptFn interrupted,
						void *interrupt_arg, BkSendStats *stats, BkError *err)
{
	FrameSource source = {.next = next, .arg = next_arg};

	if (!bk_producer_batch_begin(producer, err) ||
		!batch_produce(producer, topic, key, key_len, next_frame_message,
					   &source, interrupted, interrupt_arg, err) ||
		!bk_producer_batch_wait(producer, interrupted, interrupt_arg, stats,
								err))
		return false;
	if (stats != NULL)
		stats->bytes = source.bytes;
	return true;
}

bool
bk_producer_batch_add(BkProducer *producer, const char *topic, const char *key,
					  size_t key_len, BkNextFrameFn next, void *next_arg,
					  BkInterruptFn interrupted, void *interrupt_arg,
					  uint64_t *bytes, BkError *err)
{
	FrameSource source = {.next = next, .arg = next_arg};

	if (!batch_produce(producer, topic, key, key_len, next_frame_message,
					   &source, interrupted, interrupt_arg, err))
		return false;
	if (bytes != NULL)
		*bytes = source.bytes;
	return true;
}

typedef struct SingleMessage
{
	const void *value;
	size_t len;
	bool sent;
} SingleMessage;

static bool
next_single_message(void *arg, OutMessage *out, bool *end, BkError *err)
{
	SingleMessage *single = arg;

	if (single->sent)
	{
		*end = true;
		return true;
	}
	single->sent = true;
	out->value = single->value;
	out->len = single->len;
	out->headers = NULL;
	out->description = "the message";
	out->object = NULL;
	out->continues = false;
	return true;
}

bool
bk_producer_batch_add_message(BkProducer *producer, const char *topic,
							  const char *key, const void *value, size_t len,
							  BkError *err)
{
	SingleMessage single = {.value = value, .len = len};

	return batch_produce(producer, topic, key, key ? strlen(key) : 0,
						 next_single_message, &single, NULL, NULL, err);
}

bool
bk_producer_send_message(BkProducer *producer, const char *topic,
						 const char *key, const void *value, size_t len,
						 BkInterruptFn interrupted, void *interrupt_arg,
						 BkError *err)
{
	SingleMessage single = {.value = value, .len = len};

	return bk_producer_batch_begin(producer, err) &&
		   batch_produce(producer, topic, key, key ? strlen(key) : 0,
						 next_single_message, &single, interrupted,
						 interrupt_arg, err) &&
		   bk_producer_batch_wait(producer, interrupted, interrupt_arg, NULL,
								  err);
}

static void
header_add(rd_kafka_headers_t *headers, const char *name, const char *value)
{
	rd_kafka_header_add(headers, name, -1, value, -1);
}

rd_kafka_headers_t *
bk_frame_headers(const BkFrame *frame)
{
	rd_kafka_headers_t *headers = rd_kafka_headers_new(16);
	char number[32];
	char hex[2 * BK_FINGERPRINT_LEN + 1];
	char name[BK_OBJECT_NAME_MAX + 1];
	size_t pos = 0;

	header_add(headers, "bk-format", "1");
	rd_kafka_header_add(headers, "bk-source", -1, frame->source,
						frame->source_len);
	header_add(headers, "bk-kind", bk_kind_name(frame->kind));
	rd_kafka_header_add(headers, "bk-object", -1, frame->name, frame->name_len);
	snprintf(number, sizeof(number), "%" PRIu32, frame->chunk_index);
	header_add(headers, "bk-chunk-index", number);
	snprintf(number, sizeof(number), "%" PRIu32, frame->chunk_count);
	header_add(headers, "bk-chunk-count", number);
	snprintf(number, sizeof(number), "%" PRIu64, frame->object_size);
	header_add(headers, "bk-object-size", number);
	snprintf(number, sizeof(number), "%" PRIu32, frame->chunk_len);
	header_add(headers, "bk-chunk-size", number);
	snprintf(number, sizeof(number), "%" PRIu32, frame->payload_len);
	header_add(headers, "bk-stored-size", number);
	bk_hex_encode(frame->key_id, BK_KEY_ID_LEN, hex);
	header_add(headers, "bk-key-id", hex);
	bk_hex_encode(frame->attempt_id, BK_ATTEMPT_ID_LEN, hex);
	header_add(headers, "bk-attempt", hex);
	if (frame->flags & BK_FRAME_F_LAST)
	{
		bk_hex_encode(frame->fingerprint, BK_FINGERPRINT_LEN, hex);
		header_add(headers, "bk-fingerprint", hex);
	}
	/* Each metadata line "key=value" becomes header "bk-meta-key". */
	while (pos < frame->meta_len)
	{
		const char *line = frame->meta + pos;
		const char *line_end = memchr(line, '\n', frame->meta_len - pos);
		size_t line_len =
			line_end ? (size_t) (line_end - line) : frame->meta_len - pos;
		const char *eq = memchr(line, '=', line_len);

		if (eq != NULL)
		{
			snprintf(name, sizeof(name), "bk-meta-%.*s", (int) (eq - line),
					 line);
			rd_kafka_header_add(
				headers, name, -1, eq + 1,
				(ssize_t) (line_len - (size_t) (eq - line) - 1));
		}
		pos += line_len + 1;
	}
	return headers;
}
