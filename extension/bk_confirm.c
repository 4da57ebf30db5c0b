/*
 * bk_confirm.c
 *		bk.wait_for = 'repository': wait for the shipper's word that a file
 *		is in the repository before telling PostgreSQL it is archived.
 *
 * Kafka's acknowledgement is durable when Kafka replicates, or when a
 * single broker flushes every message.  Where neither holds, the operator
 * can make the archiver wait for bk-shipper, which announces every object it
 * made durable with a JSON event on <prefix>.audit:
 *
 *	 {"event": "archived" | "duplicate" | "conflict", "source": ..., "kind": "wal",
 *	  "object": <file name>, "attempt": <32 hex digits>, ...}
 *
 * and every attempt it gave up (its chunks stopped arriving for longer than
 * its abandon_after) with an "abandoned" event, which ends the wait at once:
 * that attempt will never be stored, and waiting out bk.repository_timeout
 * would only delay the retry.
 *
 * Matching the attempt id (not just the name) makes sure the event is about
 * the bytes we just sent, not an older attempt at the same file.
 *
 * Race: the event may be produced before we start reading.  So the audit
 * topic's end offsets (high watermarks) are read BEFORE the WAL object is
 * produced, and the consumer is assigned to every partition from there: any
 * event about our attempt comes later and is seen.  The consumer uses
 * assign(), never subscribe(): no group membership, no rebalance, nothing
 * committed (group.id is only there because librdkafka requires one).
 *
 * The JSON is parsed with PostgreSQL's own parser (common/jsonapi.h), on
 * the archiver's thread, in a memory context reset after every message.  A
 * message that is not JSON, or is about something else, is skipped.
 *
 * Shutdown.  Once PostgreSQL asked the archiver to finish, bk_interrupted
 * abandons a send when Kafka has been silent for a few seconds, so that an
 * unreachable broker does not hold the shutdown up.  While we wait here,
 * Kafka acknowledges nothing (our chunks are all acknowledged) and the
 * shipper may well take longer than that to store the file (an object
 * store, fsync, its audit batches, a pause).  So the wait shows Kafka's
 * life itself: every audit message read, and once a second the end offset
 * of the audit topic asked from the broker, count as progress
 * (bk_confirm_last_progress_ms).  A healthy Kafka thus lets the final cycle
 * wait for a slow shipper, up to bk.shutdown_timeout; a broker gone quiet
 * still ends the wait within the grace period.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "bk.h"
#include "bk_kafka.h"
#include "bk_topics.h"
#include "bk_util.h"

/* Longest single blocking librdkafka call, so interrupts are seen. */
#define BK_CONFIRM_SLICE_MS 500

/* How often a wait asks the broker for the audit topic's end. */
#define BK_CONFIRM_PROBE_MS 1000

/* Fields of an audit event we look at. */
/* What an audit message says about our attempt. */
typedef enum BkAuditVerdict
{
	BK_AUDIT_OTHER,    /* about something else, or not an event */
	BK_AUDIT_STORED,   /* "archived" or "duplicate": durable */
	BK_AUDIT_CONFLICT, /* durable, kept beside a different copy */
	BK_AUDIT_ABANDONED /* the shipper gave this attempt up: never stored */
} BkAuditVerdict;

typedef enum BkAuditField
{
	BK_AUDIT_EVENT,
	BK_AUDIT_SOURCE,
	BK_AUDIT_KIND,
	BK_AUDIT_OBJECT,
	BK_AUDIT_ATTEMPT,
	BK_AUDIT_REASON, /* optional: why an attempt was given up */
	BK_AUDIT_FIELDS
} BkAuditField;

/* Fields every event about an attempt has: those before BK_AUDIT_REASON. */
#define BK_AUDIT_REQUIRED_FIELDS BK_AUDIT_REASON

static const char *const bk_audit_field_names[BK_AUDIT_FIELDS] = {
	"event", "source", "kind", "object", "attempt", "reason"};

/* State of the JSON semantic actions: top-level string fields only. */
typedef struct BkAuditParse
{
	int depth;
	const char *field; /* current top-level field, or NULL */
	char *values[BK_AUDIT_FIELDS];
} BkAuditParse;

/*
 * The consumer.  It is the handle's opaque, so its first member is the log
 * sink libbk's log callback delivers to (served on our thread by
 * rd_kafka_poll; bk_kafka_log_collect only copies, it never ereports).
 */
typedef struct BkAuditConsumer
{
	BkKafkaLogSink sink;
	rd_kafka_t *rk;
	char *brokers; /* settings it was made with */
	char *properties;
	char topic[BK_TOPIC_NAME_MAX + 1];
	bool assigned;
} BkAuditConsumer;

static BkAuditConsumer consumer;

/* When Kafka last answered the consumer during a wait (monotonic ms). */
static int64 confirm_progress_ms = 0;

static bool bk_consumer_ensure(const BkKafkaSettings *settings, BkError *err);
static void bk_consumer_unassign(void);
static void bk_confirm_probe(int64 deadline);
static int bk_slice_ms(int64 deadline);
static bool bk_audit_parse(const void *payload, size_t len,
						   BkAuditParse *parse);
static BkAuditVerdict bk_audit_verdict(const char *event);
static BkAuditVerdict bk_audit_event_matches(const void *payload, size_t len,
											 const char *source_id,
											 const char *object,
											 const char *attempt_hex,
											 char *reason, size_t reason_size);
static void bk_audit_object_start(void *state);
static void bk_audit_object_end(void *state);
static void bk_audit_field_start(void *state, char *fname, bool isnull);
static void bk_audit_field_end(void *state, char *fname, bool isnull);
static void bk_audit_scalar(void *state, char *token, JsonTokenType tokentype);

/*
 * bk_confirm_prepare
 *		Assign the consumer to the current end of every partition of the
 *		audit topic, before the object is produced.
 */
bool
bk_confirm_prepare(const BkKafkaSettings *settings, const char *audit_topic,
				   BkInterruptFn interrupted, BkError *err)
{
	int64 deadline = bk_monotonic_ms() + settings->timeout_ms;
	const rd_kafka_metadata_t *metadata = NULL;
	rd_kafka_topic_t *rkt;
	rd_kafka_topic_partition_list_t *assignment;
	rd_kafka_resp_err_t kerr;
	int partitions;

	if (!bk_consumer_ensure(settings, err))
		return false;
	bk_consumer_unassign();

	rkt = rd_kafka_topic_new(consumer.rk, audit_topic, NULL);
	if (rkt == NULL)
		return bk_error_set(err, BK_ERR_KAFKA,
							"could not use Kafka topic \"%s\": %s", audit_topic,
							rd_kafka_err2str(rd_kafka_last_error()));
	for (;;)
	{
		kerr = rd_kafka_metadata(consumer.rk, 0, rkt, &metadata,
								 bk_slice_ms(deadline));
		rd_kafka_poll(consumer.rk, 0);
		if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR)
			break;
		if (interrupted(NULL) || bk_monotonic_ms() >= deadline)
		{
			rd_kafka_topic_destroy(rkt);
			if (interrupted(NULL))
				return bk_error_set(err, BK_ERR_INTERRUPTED,
									"reading the partitions of Kafka topic "
									"\"%s\" was interrupted",
									audit_topic);
			bk_error_set(err, BK_ERR_KAFKA,
						 "could not read the partitions of Kafka topic \"%s\" "
						 "within %d ms: %s",
						 audit_topic, settings->timeout_ms,
						 rd_kafka_err2str(kerr));
			return bk_error_hint(err, "Check that Kafka is up and reachable; "
									  "the file will be archived again.");
		}
	}
	rd_kafka_topic_destroy(rkt);

	if (metadata->topic_cnt != 1 ||
		metadata->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR ||
		metadata->topics[0].partition_cnt <= 0)
	{
		kerr = metadata->topic_cnt == 1
				   ? metadata->topics[0].err
				   : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
		rd_kafka_metadata_destroy(metadata);
		bk_error_set(err, BK_ERR_KAFKA,
					 "could not read the partitions of Kafka topic \"%s\": %s",
					 audit_topic, rd_kafka_err2str(kerr));
		return bk_error_hint(err, "bk.wait_for = repository reads the "
								  "shipper's events from that topic. Create "
								  "the topics with \"bk init\".");
	}
	partitions = metadata->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(metadata);

	assignment = rd_kafka_topic_partition_list_new(partitions);
	for (int partition = 0; partition < partitions; partition++)
	{
		int64_t low;
		int64_t high;

		for (;;)
		{
			kerr = rd_kafka_query_watermark_offsets(consumer.rk, audit_topic,
													partition, &low, &high,
													bk_slice_ms(deadline));
			rd_kafka_poll(consumer.rk, 0);
			if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR)
				break;
			if (interrupted(NULL) || bk_monotonic_ms() >= deadline)
			{
				rd_kafka_topic_partition_list_destroy(assignment);
				if (interrupted(NULL))
					return bk_error_set(err, BK_ERR_INTERRUPTED,
										"reading the end of Kafka topic \"%s\" "
										"was interrupted",
										audit_topic);
				bk_error_set(err, BK_ERR_KAFKA,
							 "could not read the end offset of partition %d "
							 "of Kafka topic \"%s\" within %d ms: %s",
							 partition, audit_topic, settings->timeout_ms,
							 rd_kafka_err2str(kerr));
				return bk_error_hint(err,
									 "Check that Kafka is up and reachable; "
									 "the file will be archived again.");
			}
		}
		rd_kafka_topic_partition_list_add(assignment, audit_topic, partition)
			->offset = high;
	}
	kerr = rd_kafka_assign(consumer.rk, assignment);
	rd_kafka_topic_partition_list_destroy(assignment);
	if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
		return bk_error_set(err, BK_ERR_KAFKA,
							"could not assign the partitions of Kafka topic "
							"\"%s\": %s",
							audit_topic, rd_kafka_err2str(kerr));
	consumer.assigned = true;
	strlcpy(consumer.topic, audit_topic, sizeof(consumer.topic));
	return true;
}

/*
 * bk_confirm_wait
 *		Read the audit topic from where bk_confirm_prepare left it until the
 *		shipper's event about this attempt arrives, or timeout_ms pass.
 */
bool
bk_confirm_wait(const char *source_id, const char *object,
				const char *attempt_hex, int timeout_ms,
				BkInterruptFn interrupted, BkError *err)
{
	int64 deadline = bk_monotonic_ms() + timeout_ms;
	int64 next_probe_ms = bk_monotonic_ms() + BK_CONFIRM_PROBE_MS;
	MemoryContext event_context;
	BkAuditVerdict verdict = BK_AUDIT_OTHER;
	char last_error[256] = "";
	char reason[256] = "";

	if (consumer.rk == NULL || !consumer.assigned)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"no audit consumer was prepared for \"%s\"",
							object);

	event_context = AllocSetContextCreate(
		CurrentMemoryContext, "bk audit event", ALLOCSET_SMALL_SIZES);
	while (verdict == BK_AUDIT_OTHER)
	{
		rd_kafka_message_t *msg;

		if (interrupted(NULL))
		{
			bk_error_set(err, BK_ERR_INTERRUPTED,
						 "waiting for the shipper to confirm \"%s\" was "
						 "interrupted",
						 object);
			break;
		}
		if (bk_monotonic_ms() >= deadline)
		{
			bk_error_set(err, BK_ERR_TIMEOUT,
						 "Kafka acknowledged \"%s\", but the shipper did not "
						 "confirm it on topic \"%s\" within "
						 "bk.repository_timeout (%d ms)%s%s",
						 object, consumer.topic, timeout_ms,
						 last_error[0] ? "; last consumer error: " : "",
						 last_error);
			bk_error_hint(err,
						  "With bk.wait_for = repository a file counts as "
						  "archived only once bk-shipper stored it. Check "
						  "that bk-shipper runs and reads the same topics; "
						  "the segment stays in pg_wal and will be retried.");
			break;
		}
		if (bk_monotonic_ms() >= next_probe_ms)
		{
			bk_confirm_probe(deadline);
			next_probe_ms = bk_monotonic_ms() + BK_CONFIRM_PROBE_MS;
		}
		msg = rd_kafka_consumer_poll(consumer.rk,
									 Min(100, bk_slice_ms(deadline)));
		rd_kafka_poll(consumer.rk, 0);
		bk_kafka_log_flush();
		if (msg == NULL)
			continue;
		if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			MemoryContext oldcontext = MemoryContextSwitchTo(event_context);

			confirm_progress_ms = bk_monotonic_ms();

			verdict = bk_audit_event_matches(msg->payload, msg->len, source_id,
											 object, attempt_hex, reason,
											 sizeof(reason));
			MemoryContextSwitchTo(oldcontext);
			MemoryContextReset(event_context);
		}
		else if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			strlcpy(last_error, rd_kafka_message_errstr(msg),
					sizeof(last_error));
		rd_kafka_message_destroy(msg);
	}
	MemoryContextDelete(event_context);
	bk_consumer_unassign();

	if (verdict == BK_AUDIT_ABANDONED)
	{
		bk_error_set(err, BK_ERR_SEQUENCE,
					 "the shipper gave up \"%s\" (attempt %s) although Kafka "
					 "acknowledged it: %s",
					 object, attempt_hex,
					 reason[0] ? reason : "no reason given");
		bk_error_hint(err,
					  "The shipper gives an object up when its chunks stop "
					  "arriving for longer than its abandon_after (the "
					  "archiver was paused, or Kafka stalled). The segment "
					  "stays in pg_wal and is sent again.");
		return false;
	}

	/*
	 * The shipper keeps a conflicting copy beside the first one: our bytes
	 * are durable, so the file is archived, but someone must look.
	 */
	if (verdict == BK_AUDIT_CONFLICT)
		ereport(
			WARNING,
			(errmsg("bk: \"%s\" is in the repository only as a conflicting "
					"copy",
					object),
			 errdetail("The repository already held a different file of that "
					   "name for source \"%s\"; bk-shipper keeps both.",
					   source_id),
			 errhint("Another server is probably archiving with the same "
					 "bk.source_id. Give each server its own, and run "
					 "\"bk verify --source %s\" with the key to tell the "
					 "copies apart.",
					 source_id)));
	return verdict != BK_AUDIT_OTHER;
}

/*
 * bk_confirm_wait_snapshot
 *		Read the audit topic from where bk_confirm_prepare left it until the
 *		shipper has confirmed every object of snapshot snapshot_id: each of
 *		its own parts by name (own_parts: "snapshot.json" and the like) and
 *		data_objects other objects named "<snapshot_id>/...", or timeout_ms
 *		pass.
 *
 * The snapshot's objects are sent by several processes, whose attempt ids
 * the caller does not know; the snapshot id, unique to this snapshot, names
 * them instead.  Each name counts once (the shipper may repeat an event
 * after a crash), remembered by a 64-bit hash: two names with one hash
 * would count once, and the wait time out rather than end early.  An
 * object the shipper gave up ("abandoned") before any copy of it was
 * stored ends the wait at once: nothing sends it again.
 */
bool
bk_confirm_wait_snapshot(const char *source_id, const char *snapshot_id,
						 const char *const *own_parts, int own_part_count,
						 int64 data_objects, int timeout_ms,
						 BkInterruptFn interrupted, void *interrupt_arg,
						 BkError *err)
{
	int64 deadline = bk_monotonic_ms() + timeout_ms;
	size_t prefix_len = strlen(snapshot_id) + 1;
	char *prefix = psprintf("%s/", snapshot_id);
	bool *own_confirmed = palloc0(sizeof(bool) * Max(own_part_count, 1));
	int own_done = 0;
	int64 data_done = 0;
	int conflicts = 0;
	MemoryContext event_context;
	HASHCTL hash_ctl;
	HTAB *confirmed;
	char last_error[256] = "";
	char abandoned[BK_OBJECT_NAME_MAX + 1] = "";
	char reason[256] = "";
	bool done = false;
	bool stopped = false;

	if (consumer.rk == NULL || !consumer.assigned)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"no audit consumer was prepared for snapshot %s",
							snapshot_id);

	memset(&hash_ctl, 0, sizeof(hash_ctl));
	hash_ctl.keysize = sizeof(uint64);
	hash_ctl.entrysize = sizeof(uint64);
	hash_ctl.hcxt = CurrentMemoryContext;
	confirmed = hash_create("bk confirmed snapshot objects", 1024, &hash_ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	event_context = AllocSetContextCreate(
		CurrentMemoryContext, "bk audit event", ALLOCSET_SMALL_SIZES);
	for (;;)
	{
		rd_kafka_message_t *msg;

		done = own_done == own_part_count && data_done >= data_objects;
		if (done || abandoned[0] != '\0')
			break;
		if (interrupted(interrupt_arg))
		{
			bk_error_set(err, BK_ERR_INTERRUPTED,
						 "waiting for the shipper to confirm snapshot %s was "
						 "interrupted",
						 snapshot_id);
			stopped = true;
			break;
		}
		if (bk_monotonic_ms() >= deadline)
			break;
		msg = rd_kafka_consumer_poll(consumer.rk,
									 Min(100, bk_slice_ms(deadline)));
		rd_kafka_poll(consumer.rk, 0);
		bk_kafka_log_flush();
		if (msg == NULL)
			continue;
		if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			MemoryContext oldcontext = MemoryContextSwitchTo(event_context);
			BkAuditParse parse;
			BkAuditVerdict verdict = BK_AUDIT_OTHER;
			const char *object = NULL;

			confirm_progress_ms = bk_monotonic_ms();
			if (bk_audit_parse(msg->payload, msg->len, &parse) &&
				strcmp(parse.values[BK_AUDIT_SOURCE], source_id) == 0 &&
				strcmp(parse.values[BK_AUDIT_KIND], "snapshot") == 0 &&
				strncmp(parse.values[BK_AUDIT_OBJECT], prefix, prefix_len) == 0)
			{
				object = parse.values[BK_AUDIT_OBJECT];
				verdict = bk_audit_verdict(parse.values[BK_AUDIT_EVENT]);
			}
			if (verdict == BK_AUDIT_STORED || verdict == BK_AUDIT_CONFLICT)
			{
				uint64 key = hash_bytes_extended((const unsigned char *) object,
												 (int) strlen(object), 0);
				bool found;

				(void) hash_search(confirmed, &key, HASH_ENTER, &found);
				if (!found)
				{
					int part;

					for (part = 0; part < own_part_count; part++)
						if (strcmp(object + prefix_len, own_parts[part]) == 0)
							break;
					if (part < own_part_count)
					{
						own_confirmed[part] = true;
						own_done++;
					}
					else
						data_done++;
					if (verdict == BK_AUDIT_CONFLICT)
						conflicts++;
				}
			}
			else if (verdict == BK_AUDIT_ABANDONED)
			{
				uint64 key = hash_bytes_extended((const unsigned char *) object,
												 (int) strlen(object), 0);

				if (hash_search(confirmed, &key, HASH_FIND, NULL) == NULL)
				{
					strlcpy(abandoned, object, sizeof(abandoned));
					if (parse.values[BK_AUDIT_REASON] != NULL)
						bk_printable_copy(
							reason, sizeof(reason),
							parse.values[BK_AUDIT_REASON],
							strlen(parse.values[BK_AUDIT_REASON]));
				}
			}
			MemoryContextSwitchTo(oldcontext);
			MemoryContextReset(event_context);
		}
		else if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			strlcpy(last_error, rd_kafka_message_errstr(msg),
					sizeof(last_error));
		rd_kafka_message_destroy(msg);
	}
	MemoryContextDelete(event_context);
	hash_destroy(confirmed);
	pfree(prefix);
	bk_consumer_unassign();

	if (conflicts > 0)
		ereport(WARNING,
				(errmsg("bk: %d object%s of snapshot %s %s in the repository "
						"only as a conflicting copy",
						conflicts, conflicts == 1 ? "" : "s", snapshot_id,
						conflicts == 1 ? "is" : "are"),
				 errdetail("The repository already held a different object of "
						   "that name for source \"%s\"; bk-shipper keeps "
						   "both.",
						   source_id),
				 errhint("Another server is probably archiving with the same "
						 "bk.source_id. Give each server its own.")));
	if (done)
		return true;
	if (abandoned[0] != '\0')
	{
		bk_error_set(err, BK_ERR_SEQUENCE,
					 "the shipper gave up \"%s\" although Kafka acknowledged "
					 "it: %s",
					 abandoned, reason[0] ? reason : "no reason given");
		return bk_error_hint(err, "The shipper gives an object up when its "
								  "chunks stop arriving for longer than its "
								  "abandon_after. Take the snapshot again.");
	}
	if (stopped)
		return false;
	{
		StringInfoData missing;

		initStringInfo(&missing);
		for (int part = 0; part < own_part_count; part++)
			if (!own_confirmed[part])
				appendStringInfo(&missing, "%s\"%s\"",
								 missing.len > 0 ? ", " : "", own_parts[part]);
		if (data_done < data_objects)
			appendStringInfo(&missing,
							 "%s" INT64_FORMAT " of its " INT64_FORMAT
							 " data objects",
							 missing.len > 0 ? " and " : "",
							 data_objects - data_done, data_objects);
		bk_error_set(err, BK_ERR_TIMEOUT,
					 "Kafka acknowledged snapshot %s, but the shipper did not "
					 "confirm %s on topic \"%s\" within "
					 "bk.repository_timeout (%d ms)%s%s",
					 snapshot_id, missing.data, consumer.topic, timeout_ms,
					 last_error[0] ? "; last consumer error: " : "",
					 last_error);
		pfree(missing.data);
	}
	return bk_error_hint(err, "With bk.wait_for = repository a snapshot "
							  "completes only once bk-shipper stored all of "
							  "it. Check that bk-shipper runs and reads the "
							  "same topics, then take a full snapshot.");
}

/*
 * bk_confirm_last_progress_ms
 *		When Kafka last answered a confirmation wait (an audit message, or
 *		the audit topic's end offset), in bk_monotonic_ms time; 0 if never.
 */
int64
bk_confirm_last_progress_ms(void)
{
	return confirm_progress_ms;
}

/*
 * bk_confirm_reset
 *		Destroy the consumer (settings changed, error recovery, shutdown);
 *		bounded, it leaves no group because it never joined one.
 */
void
bk_confirm_reset(void)
{
	if (consumer.rk != NULL)
	{
		rd_kafka_destroy_flags(consumer.rk,
							   RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
		consumer.rk = NULL;
	}
	free(consumer.brokers);
	free(consumer.properties);
	consumer.brokers = NULL;
	consumer.properties = NULL;
	consumer.assigned = false;
	consumer.topic[0] = '\0';
}

/*
 * bk_consumer_ensure
 *		A consumer made with the current brokers and properties.
 */
static bool
bk_consumer_ensure(const BkKafkaSettings *settings, BkError *err)
{
	static const char *const consumer_properties[] = {
		"group.id",
		"bk-archiver-confirm",
		"enable.auto.commit",
		"false",
		"enable.auto.offset.store",
		"false",
		"enable.partition.eof",
		"false",
		NULL,
		NULL};
	const char *properties = settings->properties ? settings->properties : "";
	rd_kafka_conf_t *conf;
	char errstr[512];

	if (consumer.rk != NULL &&
		strcmp(consumer.brokers, settings->brokers) == 0 &&
		strcmp(consumer.properties, properties) == 0)
		return true;
	bk_confirm_reset();

	conf = bk_kafka_conf_new(settings, err);
	if (conf == NULL)
		return false;
	for (int propIdx = 0; consumer_properties[propIdx] != NULL; propIdx += 2)
	{
		if (rd_kafka_conf_set(conf, consumer_properties[propIdx],
							  consumer_properties[propIdx + 1], errstr,
							  sizeof(errstr)) != RD_KAFKA_CONF_OK)
		{
			rd_kafka_conf_destroy(conf);
			return bk_error_set(err, BK_ERR_CONFIG, "Kafka property \"%s\": %s",
								consumer_properties[propIdx], errstr);
		}
	}
	consumer.sink.log_fn = settings->log_fn;
	consumer.sink.log_arg = settings->log_arg;
	rd_kafka_conf_set_opaque(conf, &consumer);

	/* rd_kafka_new takes the configuration only when it succeeds. */
	consumer.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (consumer.rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		return bk_error_set(err, BK_ERR_KAFKA,
							"could not create a Kafka consumer for the "
							"shipper's confirmations: %s",
							errstr);
	}
	bk_kafka_route_logs(consumer.rk);
	consumer.brokers = strdup(settings->brokers);
	consumer.properties = strdup(properties);
	if (consumer.brokers == NULL || consumer.properties == NULL)
	{
		bk_confirm_reset();
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	return true;
}

/*
 * bk_consumer_unassign
 *		Stop fetching until the next prepare.
 */
static void
bk_consumer_unassign(void)
{
	if (consumer.rk != NULL && consumer.assigned)
		rd_kafka_assign(consumer.rk, NULL);
	consumer.assigned = false;
}

/*
 * bk_confirm_probe
 *		Ask the broker for the end of the audit topic's first partition: an
 *		answer shows Kafka alive while no audit message arrives.  The offsets
 *		themselves are not needed (the consumer reads every event).
 */
static void
bk_confirm_probe(int64 deadline)
{
	int64_t low;
	int64_t high;

	if (rd_kafka_query_watermark_offsets(consumer.rk, consumer.topic, 0, &low,
										 &high, bk_slice_ms(deadline)) ==
		RD_KAFKA_RESP_ERR_NO_ERROR)
		confirm_progress_ms = bk_monotonic_ms();
	rd_kafka_poll(consumer.rk, 0);
}

/*
 * bk_slice_ms
 *		Time left until deadline, capped to one slice, at least 1 ms.
 */
static int
bk_slice_ms(int64 deadline)
{
	int64 left = deadline - bk_monotonic_ms();

	if (left < 1)
		return 1;
	return (int) Min(left, BK_CONFIRM_SLICE_MS);
}

/*
 * bk_audit_parse
 *		The top-level string fields of an audit message; false if it is not
 *		JSON, or not an event about an attempt (a required field missing).
 *		The values point into memory of the current context.
 */
static bool
bk_audit_parse(const void *payload, size_t len, BkAuditParse *parse)
{
	JsonSemAction sem;
	MemoryContext context = CurrentMemoryContext;
	char *text;
	volatile bool parsed = false;

	if (payload == NULL || len == 0 || len > 65536)
		return false;
	text = palloc(len + 1);
	memcpy(text, payload, len);
	text[len] = '\0';

	memset(parse, 0, sizeof(*parse));
	memset(&sem, 0, sizeof(sem));
	sem.semstate = parse;
	sem.object_start = bk_audit_object_start;
	sem.object_end = bk_audit_object_end;
	sem.array_start = bk_audit_object_start;
	sem.array_end = bk_audit_object_end;
	sem.object_field_start = bk_audit_field_start;
	sem.object_field_end = bk_audit_field_end;
	sem.scalar = bk_audit_scalar;

	/*
	 * The parser reports malformed JSON by its return value, but converting
	 * a \u escape can still ereport.  Someone else's bad message must not
	 * fail our archive attempt: treat that as "not ours".  Nothing but
	 * memory in this context is involved, so catching is safe.
	 */
	PG_TRY();
	{
		JsonLexContext *lex =
			makeJsonLexContextCstringLen(text, (int) len, PG_UTF8, true);

		parsed = pg_parse_json(lex, &sem) == JSON_SUCCESS;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		FlushErrorState();
		parsed = false;
	}
	PG_END_TRY();
	if (!parsed)
		return false;

	for (int fieldIdx = 0; fieldIdx < BK_AUDIT_REQUIRED_FIELDS; fieldIdx++)
		if (parse->values[fieldIdx] == NULL)
			return false;
	return true;
}

/* What an event about one of our attempts says of it. */
static BkAuditVerdict
bk_audit_verdict(const char *event)
{
	if (strcmp(event, "archived") == 0 || strcmp(event, "duplicate") == 0)
		return BK_AUDIT_STORED;
	if (strcmp(event, "conflict") == 0)
		return BK_AUDIT_CONFLICT;
	if (strcmp(event, "abandoned") == 0)
		return BK_AUDIT_ABANDONED;
	return BK_AUDIT_OTHER;
}

/*
 * bk_audit_event_matches
 *		Is this audit message the shipper's word about our attempt?  For an
 *		"abandoned" event, its reason (if any) is copied to reason.
 */
static BkAuditVerdict
bk_audit_event_matches(const void *payload, size_t len, const char *source_id,
					   const char *object, const char *attempt_hex,
					   char *reason, size_t reason_size)
{
	BkAuditParse parse;
	BkAuditVerdict verdict;

	if (!bk_audit_parse(payload, len, &parse))
		return BK_AUDIT_OTHER;
	if (strcmp(parse.values[BK_AUDIT_SOURCE], source_id) != 0 ||
		strcmp(parse.values[BK_AUDIT_KIND], "wal") != 0 ||
		strcmp(parse.values[BK_AUDIT_OBJECT], object) != 0 ||
		pg_strcasecmp(parse.values[BK_AUDIT_ATTEMPT], attempt_hex) != 0)
		return BK_AUDIT_OTHER;
	verdict = bk_audit_verdict(parse.values[BK_AUDIT_EVENT]);
	if (verdict == BK_AUDIT_ABANDONED && parse.values[BK_AUDIT_REASON] != NULL)
		bk_printable_copy(reason, reason_size, parse.values[BK_AUDIT_REASON],
						  strlen(parse.values[BK_AUDIT_REASON]));
	return verdict;
}

/* JSON semantic actions: track depth, keep top-level string fields. */
static void
bk_audit_object_start(void *state)
{
	((BkAuditParse *) state)->depth++;
}

static void
bk_audit_object_end(void *state)
{
	((BkAuditParse *) state)->depth--;
}

static void
bk_audit_field_start(void *state, char *fname, bool isnull)
{
	BkAuditParse *parse = state;

	if (parse->depth == 1)
		parse->field = fname;
}

static void
bk_audit_field_end(void *state, char *fname, bool isnull)
{
	BkAuditParse *parse = state;

	if (parse->depth == 1)
		parse->field = NULL;
}

static void
bk_audit_scalar(void *state, char *token, JsonTokenType tokentype)
{
	BkAuditParse *parse = state;

	if (parse->depth != 1 || parse->field == NULL ||
		tokentype != JSON_TOKEN_STRING || token == NULL)
		return;
	for (int fieldIdx = 0; fieldIdx < BK_AUDIT_FIELDS; fieldIdx++)
		if (strcmp(parse->field, bk_audit_field_names[fieldIdx]) == 0)
			parse->values[fieldIdx] = token;
}
