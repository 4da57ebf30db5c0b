/*
 * bk_kafka.h
 *		bk's Kafka producer: one call that returns only when every chunk of an
 *		object is acknowledged by the broker, or fails clearly within a
 *		bounded time.
 *
 * What "acknowledged" means is set here, once, for every source: an
 * idempotent producer (enable.idempotence=true, hence acks=all, no
 * duplicates or reordering from internal retries), no Kafka-level
 * compression (payloads are lz4'd and encrypted already), delivery reports
 * checked for every message, and a bounded message.timeout.ms (librdkafka's
 * default of 300 s would hold an archiver for five minutes per attempt).
 *
 * Threads: librdkafka runs its own threads.  Everything this module does
 * with the host (delivery reports, errors, logs) is delivered on the
 * caller's thread inside bk_producer_* calls: logs go through librdkafka's
 * log queue, never from its internal threads.  That is what lets a
 * PostgreSQL backend use this module while calling PostgreSQL functions
 * only from its own thread.
 */
#ifndef BK_KAFKA_H
#define BK_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "bk_error.h"
#include "bk_frame.h"

/*
 * Upper bound on what a Kafka message adds around a frame: record batch and
 * record overhead, the bk-* headers (object name and metadata included) and
 * the message key.
 */
#define BK_KAFKA_MESSAGE_OVERHEAD (16 * 1024)

#define BK_KAFKA_TIMEOUT_DEFAULT_MS 30000
/*
 * A producer's wait for delivery reports gives up after message.timeout.ms
 * plus this much without any (librdkafka's own timeout scan may lag).
 */
#define BK_KAFKA_TIMEOUT_SLACK_MS 2000

/*
 * The longest the broker's clock may run between two consecutive chunks of
 * one object that a producer reports acknowledged.  A shipper gives an
 * attempt up when its next chunk is abandon_after late by the broker's
 * clock (bk_kafka_attempt_stalled), so an object whose source paused that
 * long between two chunks (a suspended host, a stopped process) and then
 * sent the rest would be acknowledged by Kafka and never stored.  The
 * producer reads the broker's append time of every chunk from its delivery
 * report and fails the send when two chunks of one object lie further
 * apart than this, or than twice message.timeout.ms when that is longer
 * (a slow link takes up to the timeout per chunk, and must not fail every
 * send); the caller sends the object again, as after any failed send.
 * Shippers' abandon_after must be longer than both (the shipper warns
 * below this one).
 */
#define BK_CHUNK_GAP_MAX_MS ((int64_t) 60 * 1000)

/* Largest Kafka message (value, key, headers, overhead) for a chunk size. */
extern size_t bk_kafka_message_max(uint32_t chunk_size);

/*
 * Chunks a producer may put in one produce request: the broker appends and
 * flushes once per request, so four compressed chunks cost it one fsync.
 */
#define BK_KAFKA_BATCH_CHUNKS 4

/*
 * A producer's message.max.bytes and batch.size: BK_KAFKA_BATCH_CHUNKS
 * messages, capped at the max.message.bytes of the topics bk creates (the
 * largest message of the largest chunk size).  Topics must accept it.
 */
extern size_t bk_kafka_batch_max(uint32_t chunk_size);

/*
 * The broker time a consumed message proves: its timestamp when the broker
 * stamped it on append (message.timestamp.type=LogAppendTime), -1 when it
 * carries none.  A CreateTime timestamp is the producer's clock, which a
 * source with a clock hours fast sets hours ahead: it proves nothing.
 */
extern int64_t bk_kafka_broker_time(const rd_kafka_message_t *msg);

/*
 * The last header name of msg, as text: bytes outside printable ASCII
 * become '?', cut to out_len - 1; "" when msg has none.
 */
extern void bk_kafka_header_string(const rd_kafka_message_t *msg,
								   const char *name, char *out, size_t out_len);

/*
 * When a chunk of any producer of this process was last acknowledged
 * (bk_monotonic_ms), 0 if none was: how a caller that may cut a send short
 * (the archiver at shutdown) tells a slow Kafka from one that stopped
 * answering.
 */
extern int64_t bk_kafka_last_ack_ms(void);

/*
 * The shipper's rule for giving up an object attempt whose chunks stopped
 * coming, applied to each open attempt of a partition: true when both
 * clocks say more than abandon_after_ms passed since the attempt's newest
 * chunk.
 *
 * The broker's: message_time, the broker time (bk_kafka_broker_time) of a
 * later message of the partition, is more than abandon_after_ms past
 * *attempt_time, the broker time of the attempt's newest chunk.  A message
 * without broker time decides nothing.  An attempt whose newest chunk had
 * none (*attempt_time -1, a topic switched from CreateTime) takes the
 * broker time of the next message that has one, which the broker appended
 * after that chunk, so the wait is never cut short.
 *
 * And the shipper's own: now_local_ms is more than abandon_after_ms past
 * attempt_local_ms, both CLOCK_MONOTONIC (bk_monotonic_ms), the latter
 * taken when this process handled the attempt's newest chunk.  Broker time
 * alone is not enough: a broker's clock stepped forward, or a partition
 * leader moved to a broker whose clock runs ahead, stamps the next message
 * hours "later" while the attempt's next chunk is seconds away; giving the
 * attempt up then loses an object Kafka acknowledged.  Local time cannot
 * jump so, and a live attempt's next chunk is handled well within
 * abandon_after of it.  Nor is local time alone: it says nothing about
 * when the sources sent, so a shipper held up longer than abandon_after
 * between two chunks of a live attempt (a slow repository, a dense
 * backlog) would give it up.
 */
extern bool bk_kafka_attempt_stalled(int64_t *attempt_time,
									 int64_t message_time,
									 int64_t attempt_local_ms,
									 int64_t now_local_ms,
									 int64_t abandon_after_ms);

typedef void (*BkKafkaLogFn)(void *arg, int level, const char *facility,
							 const char *message);

/*
 * Where a handle's librdkafka logs go.  Every handle built from
 * bk_kafka_conf_new must have an opaque (rd_kafka_conf_set_opaque) that is
 * NULL (logs go to stderr) or points to a struct whose first member is a
 * BkKafkaLogSink.
 */
typedef struct BkKafkaLogSink
{
	BkKafkaLogFn log_fn;
	void *log_arg;
} BkKafkaLogSink;

/*
 * A fatal error of an idempotent producer (librdkafka's
 * RD_KAFKA_RESP_ERR__FATAL, read with rd_kafka_fatal_error).  librdkafka
 * raises one when the brokers' state of the producer's sequence no longer
 * matches what they acknowledged (OUT_OF_ORDER_SEQUENCE_NUMBER after an
 * unclean leader election, a broker that lost or truncated its log): a
 * message Kafka acknowledged earlier, whose source was told it is archived
 * (PostgreSQL may have recycled the WAL segment), may be gone.  The handle
 * can never send again; the producer replaces it and sends what was not
 * acknowledged, but only a repository check can tell whether something
 * acknowledged is missing, and only a new snapshot makes up for it.
 */
typedef struct BkKafkaAlarm
{
	char topic[256];    /* the topic of the send that found it */
	char error[64];     /* librdkafka's name of the error */
	char detail[512];   /* librdkafka's text, naming the partition */
	char message[1024]; /* a log line: topic, error and detail */
	char hint[512];     /* what the DBA must do */
	int64_t wall_ms;    /* when it was found (bk_wall_ms) */
} BkKafkaAlarm;

/*
 * Called once per fatal error, on the caller's thread inside a bk_producer_*
 * call, after the failed handle was destroyed.  It must not use the
 * producer that calls it.
 */
typedef void (*BkKafkaAlarmFn)(void *arg, const BkKafkaAlarm *alarm);

/*
 * The audit event a producer sends for each fatal error
 * (docs/audit-events.md).
 */
#define BK_AUDIT_PRODUCER_FATAL "producer-fatal"

typedef struct BkKafkaSettings
{
	const char *brokers;      /* bootstrap.servers */
	const char *properties;   /* "key=value;..." passed to librdkafka */
	const char *client_id;    /* NULL: "bk" */
	int timeout_ms;           /* delivery bound; 0: default */
	uint32_t chunk_size;      /* to size and check message.max.bytes */
	size_t window_bytes;      /* producers: bytes in flight; 0: 64 MiB */
	int request_messages;     /* producers: messages per produce request at
							 * most (batch.num.messages); 0: as many as
							 * batch.size holds */
	int linger_ms;            /* producers: how long a partly filled produce
							 * request waits for more (linger.ms); 0: 5 */
	int64_t chunk_gap_max_ms; /* producers: 0: BK_CHUNK_GAP_MAX_MS (only
							   * tests set another) */
	BkKafkaLogFn log_fn;      /* NULL: stderr */
	void *log_arg;
	/* producers: fatal errors (BkKafkaAlarm); NULL: log_fn, level 3 */
	BkKafkaAlarmFn alarm_fn;
	void *alarm_arg;
	/*
	 * producers: where the producer-fatal audit event of a fatal error goes,
	 * keyed by source_id; NULL: no event.  It is sent before the next send
	 * that follows the error, on the new handle, until Kafka takes it.
	 */
	const char *audit_topic;
	const char *source_id;
} BkKafkaSettings;

/*
 * A librdkafka configuration with bootstrap servers, client id and the
 * user's properties applied (user properties win).  Logs go through the log
 * queue, served by rd_kafka_poll (or consumer_poll) on the caller's thread,
 * to the handle's BkKafkaLogSink (see above).  For consumers and others.
 */
extern rd_kafka_conf_t *bk_kafka_conf_new(const BkKafkaSettings *settings,
										  BkError *err);

/* Route logs to the main queue after rd_kafka_new (pairs with the conf above). */
extern void bk_kafka_route_logs(rd_kafka_t *rk);

/*
 * A handle for admin requests only (topic set-up, metadata): no idempotence,
 * so it asks the broker for nothing it does not need.  Logs go to
 * settings->log_fn, served by rd_kafka_poll on the caller's thread.
 */
extern rd_kafka_t *bk_kafka_admin_new(const BkKafkaSettings *settings,
									  BkError *err);
extern void bk_kafka_admin_free(rd_kafka_t *rk);

typedef struct BkProducer BkProducer;

/*
 * Create a producer.  Fails at once, with a message saying what to change,
 * when the largest message this chunk size can produce does not fit the
 * producer's message.max.bytes.  Does not contact the broker.
 */
extern BkProducer *bk_producer_new(const BkKafkaSettings *settings,
								   BkError *err);

/*
 * Create the librdkafka handle now rather than at the first send, so that
 * connecting, the idempotent producer's id request and (if topic is not
 * NULL) the topic's metadata happen in the background before there is
 * anything to send.
 */
extern bool bk_producer_connect(BkProducer *producer, const char *topic,
								BkError *err);

/*
 * Purge what is still queued and destroy, without waiting for the broker:
 * bounded even when the broker is unreachable.
 */
extern void bk_producer_free(BkProducer *producer);

/*
 * About the longest bk_producer_send_object of an object of this many bytes
 * may wait on the brokers before it returns, acknowledged or failed: every
 * message is acknowledged or fails within message.timeout.ms of being
 * queued (plus the slack librdkafka's timeout scan may take), and a window
 * of bytes at most is queued at a time.  For a caller that must tell a
 * peer how long it may stop reading meanwhile.  A bound on messages in
 * flight (request_messages) is not counted.
 */
extern int64_t bk_producer_send_wait_max_ms(const BkProducer *producer,
											uint64_t bytes);

/* The underlying handle, for admin requests (topic set-up). */
extern rd_kafka_t *bk_producer_handle(BkProducer *producer);

/* Serve delivery reports, errors and queued logs; timeout_ms may be 0. */
extern void bk_producer_poll(BkProducer *producer, int timeout_ms);

/*
 * Supplies the frames of one object: sets *frame to the next frame (owned by
 * the callee, valid until the next call) and fills *info, or sets *frame to
 * NULL at the end.  Returns false on error.
 */
typedef bool (*BkNextFrameFn)(void *arg, const uint8_t **frame, size_t *len,
							  BkFrame *info, BkError *err);

/* Polled while waiting: return true to abandon the send (shutdown). */
typedef bool (*BkInterruptFn)(void *arg);

typedef struct BkSendStats
{
	uint32_t messages;
	uint64_t bytes;
	int64_t elapsed_ms;
	int32_t partition;    /* of the last acknowledged message */
	int64_t first_offset; /* offsets of the object's first and last */
	int64_t last_offset;  /* acknowledged chunks */
} BkSendStats;

/*
 * Produce every frame of an object to topic with this key, and wait until the
 * broker has acknowledged all of them.  Returns true only then.  On any
 * failure (a delivery error, the timeout with no progress, an interrupt,
 * two chunks appended more than BK_CHUNK_GAP_MAX_MS apart) nothing still queued is left behind, and the error names the object, the
 * chunk and the Kafka error.  After a fatal producer error the handle is
 * recreated, so the next call starts clean, and the error is raised as an
 * alarm (BkKafkaAlarm) once.
 */
extern bool bk_producer_send_object(BkProducer *producer, const char *topic,
									const char *key, size_t key_len,
									BkNextFrameFn next, void *next_arg,
									BkInterruptFn interrupted,
									void *interrupt_arg, BkSendStats *stats,
									BkError *err);

/*
 * Batches: many objects queued back to back, then one wait for all of them,
 * so a snapshot of thousands of small files does not pay a broker round
 * trip per file.  The same guarantees as bk_producer_send_object hold for the
 * batch as a whole: batch_wait returns true only when every chunk of every
 * object was acknowledged; any failure fails (and purges) the whole batch,
 * and memory stays bounded by the in-flight window.  Objects added to a
 * batch must not depend on each other being acknowledged.  A batch still
 * open when the next begins (its caller gave up on an error path) is
 * abandoned: purged, and the handle replaced.
 */
extern bool bk_producer_batch_begin(BkProducer *producer, BkError *err);
/* Give up the open batch now, if there is one (as the next begin would). */
extern void bk_producer_batch_abandon(BkProducer *producer);
extern bool bk_producer_batch_add(BkProducer *producer, const char *topic,
								  const char *key, size_t key_len,
								  BkNextFrameFn next, void *next_arg,
								  BkInterruptFn interrupted,
								  void *interrupt_arg, uint64_t *bytes,
								  BkError *err);
extern bool bk_producer_batch_wait(BkProducer *producer,
								   BkInterruptFn interrupted,
								   void *interrupt_arg, BkSendStats *stats,
								   BkError *err);

/* Add one plain message (an audit event) to the open batch. */
extern bool bk_producer_batch_add_message(BkProducer *producer,
										  const char *topic, const char *key,
										  const void *value, size_t len,
										  BkError *err);

/* Produce one plain message (an audit event) and wait for its acknowledgement. */
extern bool bk_producer_send_message(BkProducer *producer, const char *topic,
									 const char *key, const void *value,
									 size_t len, BkInterruptFn interrupted,
									 void *interrupt_arg, BkError *err);

/*
 * The bk-* Kafka headers of a frame: what an auditor may see (source, kind,
 * object, chunk i/n, sizes, key id, attempt, fingerprint, metadata), never
 * data.  Exposed for tests and for the spec.
 */
extern rd_kafka_headers_t *bk_frame_headers(const BkFrame *frame);

#endif /* BK_KAFKA_H */
