/*
 * shipper.c
 *		bk-shipper: consume bk frames from Kafka and archive them, durably,
 *		in the repository.
 *
 * The shipper holds no keys.  It checks every frame without them (structure,
 * CRC-32C, chunk sequence), assembles each object attempt in a spool file as
 * its chunks arrive (so memory stays bounded whatever the object size or
 * backlog), and commits a complete attempt into the repository with
 * put-if-absent (repository/repo.h: durable when it returns; an existing
 * object is never replaced).  Then it emits an audit event.
 *
 * Audit events go out in batches: a snapshot of thousands of small files
 * would otherwise pay one broker round trip (a replicated write, or the
 * single-node default's flush) per file.  While messages keep arriving, the
 * events of the objects they complete are queued, and the shipper waits for
 * all of them at once when the consumer has nothing more at hand, or after
 * AUDIT_BATCH_MAX events or AUDIT_BATCH_MS.  Until its event is
 * acknowledged an object holds its partition's offset back like an object
 * not yet durable (audit_hold), so a crash re-reads it and the re-send
 * produces the event again (as a duplicate).
 *
 * Commits go in batches too, for the same reason: the directory backend's
 * fsync of a file and of its directory each cost a journal commit, and a
 * snapshot's thousand small objects paid two each.  An attempt whose last
 * chunk arrived is sealed (all its bytes written, not yet durable) and
 * queued; when the consumer has nothing more at hand, or after
 * COMMIT_BATCH_MAX attempts or COMMIT_BATCH_MS, the queued attempts are
 * fsynced and committed one after another (the first fsync commits the
 * journal for all of them), their directories synced once each
 * (bk_repo_batch_end), and only then reported, in the order they completed.
 * A queued attempt stays open, so it holds its partition's offset back until
 * it is durable, exactly as before it completed.
 *
 * Offsets.  Chunks of several objects and attempts interleave in a
 * partition, so a partition's committed offset is the oldest first offset of
 * any attempt not yet durable (or the next offset when none is open).  A
 * crash at any instant therefore re-reads at least everything not yet
 * durable; whatever was already durable comes back as an identical re-send,
 * which the repository recognises (same key id and fingerprint) and does not
 * store twice.
 *
 * Abandoned attempts.  A source that crashes mid-object starts the object
 * over under a new attempt id; the old attempt never completes.  The shipper
 * gives an attempt up only when two clocks agree that its chunks stopped
 * (bk_kafka_attempt_stalled): a later message in the same partition is
 * stamped by the broker (LogAppendTime) more than abandon_after after the
 * attempt's newest chunk, and this process's monotonic clock shows more
 * than abandon_after since it handled that chunk.  Broker time alone is not
 * enough: a broker clock stepped forward (an NTP correction) or a partition
 * leader moved to a broker whose clock runs ahead stamps the next message
 * hours "later" while the attempt's next chunk is seconds away, and giving
 * the attempt up would drop an object Kafka acknowledged, which its source
 * has reported archived.  A CreateTime stamp is a source's clock and never
 * counts: one source with a clock hours fast would otherwise give up
 * another's acknowledged objects in flight.  On a topic without
 * LogAppendTime nothing is given up (the topic check refuses such a topic,
 * and the shipper warns once per partition).  Chunks of an object whose
 * every chunk the broker acknowledged are never that far apart while the
 * source keeps going: each chunk is acknowledged within the source's Kafka
 * timeout of the one before, and handled here once the few messages
 * between them are.  A source that stops mid-object (a suspended host, a
 * stopped process, hung storage) and then sends the rest does not report
 * the object sent when two of its chunks were appended more than
 * BK_CHUNK_GAP_MAX_MS apart by the broker's clock: it sends the object
 * again.  So abandon_after must be longer than that (a warning at start
 * says so); it gives up only attempts their source gave up too.
 * Giving up earlier, say when the same name starts again, would discard the
 * first of two sources that collide on one source id, and both copies must
 * be kept.
 * The rule is applied after each message and, for a partition gone quiet,
 * once a second against the broker time of its newest message.
 * Local time delays a give-up, never hastens one: reading a backlog fast,
 * a dead attempt waits up to abandon_after of local time longer than broker
 * time alone would have it wait, and a restarted shipper starts the local
 * time of the attempts it re-reads again.  Meanwhile it holds its
 * partition's committed offset back, which costs a longer re-read after a
 * crash, nothing more.
 * So an attempt stays open only while its newest chunk is within
 * abandon_after of the partition's newest broker time, or was handled
 * within abandon_after of local time: the attempts open in a partition are
 * at most the chunks 0 it carried in abandon_after of broker time together
 * with those the shipper read in the last abandon_after of local time.
 * Live, both are about the same chunks: thousands in a Kafka brownout,
 * where every retry of a source starts a new attempt.  Reading a backlog,
 * the second is the larger: every chunk 0 of as much backlog as the
 * shipper reads in abandon_after, bounded still by its read rate and by
 * what Kafka retains.  Each holds about 16 KiB and no file descriptor (the
 * repository opens a spool file only to write a chunk or to commit), so
 * that costs memory, not the shipper's limit of open files.  Pausing a
 * partition at a cap of attempts instead would stop the very messages that
 * complete or give them up.
 *
 * Static group membership (group.instance.id) lets a restarted shipper take
 * its partitions back within seconds instead of after a session timeout.
 *
 * Metrics (metrics_listen, metrics.c): the main loop counts as it goes and
 * refreshes the consumer lag once a second, after committing; an HTTP
 * thread serves a copy.  Nothing else runs outside the main thread but
 * librdkafka's own threads.
 *
 * Signals only set a flag; the main loop polls with a short timeout (the
 * kcat pattern).  SIGTERM and SIGINT stop cleanly: offsets of durable objects
 * are committed, the consumer is closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "bk_audit.h"
#include "bk_crypto.h"
#include "bk_frame.h"
#include "bk_kafka.h"
#include "bk_topics.h"
#include "bk_util.h"
#include "cli.h"
#include "metrics.h"
#include "repo.h"

#define PROGRAM            "bk-shipper"
#define COMMIT_INTERVAL_MS 1000
#define POLL_MS            200
#define AUDIT_BATCH_MAX    256
#define AUDIT_BATCH_MS     200
#define COMMIT_BATCH_MAX   256
#define COMMIT_BATCH_MS    200
#define COMMITTED_QUERY_MS 5000
#define WATERMARK_QUERY_MS 5000
#define ASSIGNED_UNKNOWN   (-1)
#define ASSIGNED_AT_LOW    (-2) /* nothing committed: starts at the low mark */

static volatile sig_atomic_t stop_requested;

typedef enum LogLevel
{
	LOG_ERROR,
	LOG_WARNING,
	LOG_INFO,
	LOG_DEBUG
} LogLevel;

static LogLevel log_level = LOG_INFO;

/* One object attempt being assembled. */
typedef struct Attempt
{
	struct Attempt *next;
	int64_t first_offset;
	int64_t last_timestamp; /* of its newest chunk, any type: for metrics */
	int64_t broker_time;    /* of its newest chunk; -1: none (CreateTime) */
	int64_t local_ms;       /* bk_monotonic_ms() when its newest chunk was
							 * handled: broker time alone can jump */
	BkObjectTracker tracker;
	BkRepoUpload *upload; /* spooled as its chunks arrive */
	BkSha256 *stored_sha; /* SHA-256 of the stored bytes, for the audit */
	uint64_t stored_bytes;
	bool queued; /* complete and sealed, in the commit batch */
	/* Once stored (commit_flush), until reported: */
	BkPutResult result;
	uint8_t stored_digest[BK_SHA256_LEN];
	double commit_seconds;
	char *refusal; /* the repository refuses it for good: why; or NULL */
} Attempt;

/* One assigned partition. */
typedef struct Partition
{
	struct Partition *next;
	char topic[BK_TOPIC_NAME_MAX + 1];
	int32_t partition;
	int kind;            /* the object kind its topic carries */
	int64_t next_offset; /* after the last message handled; -1: none */
	int64_t committed;   /* last committed; -1: none */
	/* The group's committed offset when assigned, ASSIGNED_AT_LOW or
	 * ASSIGNED_UNKNOWN: for the lag metric, and where the partition's
	 * first message is expected (check_offset_gap). */
	int64_t assigned_offset;
	bool warned_create_time; /* a message without broker time was seen */
	bool warned_markers;     /* transaction markers were seen (once) */
	int64_t broker_time;     /* of the newest message handled; -1: none */
	int64_t audit_hold; /* oldest offset whose audit event is unacknowledged;
						 * -1: none */
	bool vanished;      /* its topic was deleted: never commit its offset */
	Attempt *attempts;
} Partition;

typedef struct Shipper
{
	BkKafkaLogSink sink; /* first: the consumer's opaque (bk_kafka.h) */
	BkCliConfig *config;
	BkRepo *repo;
	rd_kafka_t *consumer;
	BkProducer *audit;
	char topics[3][BK_TOPIC_NAME_MAX + 1];
	int topic_kinds[3];
	char audit_topic[BK_TOPIC_NAME_MAX + 1];
	char instance_id[256];
	Partition *partitions;
	BkMetrics *metrics;      /* NULL: no metrics_listen */
	int audit_queued;        /* events in the open audit batch; 0: none open */
	int64_t audit_opened_ms; /* when the open batch was begun */
	/* The commit batch: complete attempts, in the order they completed. */
	Attempt *commit_queue[COMMIT_BATCH_MAX];
	Partition *commit_partitions[COMMIT_BATCH_MAX];
	int commit_queued;
	int64_t commit_opened_ms;
	int64_t last_commit_ms;
	uint64_t archived;
	uint64_t duplicates;
	uint64_t conflicts;
	uint64_t rejected;
	uint64_t abandoned;
	uint64_t messages_lost; /* removed by Kafka before we read them */
	bool fatal;             /* stop: an error that must not be skipped */
	bool vanished;          /* stop: a partition we held was deleted */
	bool fenced;            /* another consumer took our group.instance.id */
	int exit_code;          /* for a fatal error that is not BK_EXIT_FAILURE */
} Shipper;

static void shipper_log(LogLevel level, const char *fmt, ...) BK_PRINTF(2, 3);

static void
shipper_log(LogLevel level, const char *fmt, ...)
{
	static const char *const names[] = {"ERROR", "WARNING", "INFO", "DEBUG"};
	char stamp[40];
	va_list args;

	if (level > log_level)
		return;
	bk_format_time_utc(bk_wall_ms(), stamp, sizeof(stamp));
	/* One line at a time: the metrics thread logs too. */
	flockfile(stderr);
	fprintf(stderr, "%s %s[%d]: %s: ", stamp, PROGRAM, (int) getpid(),
			names[level]);
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fputc('\n', stderr);
	funlockfile(stderr);
}

/*
 * An error's hint says what to do about it; the operator reading the log
 * needs it as much as one reading a command's output.
 */
static const char *
hint_of(const BkError *err)
{
	return err->hint[0] != '\0' ? err->hint : "";
}

static const char *
hint_sep(const BkError *err)
{
	return err->hint[0] != '\0' ? " HINT: " : "";
}

/*
 * A write that failed because its file system is full (or the user's quota
 * is): where is that, for a hint.  BkError keeps no errno, so the message's
 * strerror() text tells; it names the file, and no hint says what to do.
 * The repository's directory, or an object store's spool_dir.
 */
static const char *
no_space_where(const Shipper *shipper, const BkError *err)
{
	const BkCliConfig *config = shipper->config;

	if (err->hint[0] != '\0' ||
		(strstr(err->message, strerror(ENOSPC)) == NULL &&
		 strstr(err->message, strerror(EDQUOT)) == NULL))
		return NULL;
	if (!bk_repo_location_is_s3(config->repository))
		return config->repository;
	return config->spool_dir ? config->spool_dir : BK_SPOOL_DIR_DEFAULT;
}

/*
 * The start's write (the repository's marker, the spool and its lock, an
 * object store's probe) failed for a full file system: nothing was consumed,
 * so nothing was committed in Kafka.
 */
static void
start_no_space_hint(const Shipper *shipper, BkError *err)
{
	const char *where = no_space_where(shipper, err);

	if (where == NULL)
		return;
	bk_error_hint(err,
				  "The file system of %s%s is full: free space there (or "
				  "grow it). bk-shipper stopped before it consumed "
				  "anything, so nothing was committed in Kafka: started "
				  "again (systemd does), it resumes where it stopped.",
				  bk_repo_location_is_s3(shipper->config->repository)
					  ? "spool_dir "
					  : "the repository ",
				  where);
}

/*
 * An object could not be spooled or stored for a full file system: its
 * offset, and every one after it, stays uncommitted.
 */
static void
object_no_space_hint(const Shipper *shipper, BkError *err)
{
	const char *where = no_space_where(shipper, err);

	if (where == NULL)
		return;
	bk_error_hint(err,
				  "The file system of %s%s is full: free space there (or "
				  "grow it). No offset at or after this object's is "
				  "committed in Kafka: started again (systemd does), "
				  "bk-shipper resumes at it.",
				  bk_repo_location_is_s3(shipper->config->repository)
					  ? "spool_dir "
					  : "the repository ",
				  where);
}

static void
metrics_log(const char *message)
{
	shipper_log(LOG_WARNING, "metrics: %s", message);
}

/* The errors_total kind of a failure to spool or store an object. */
static BkMetricsError
error_kind(const BkError *err)
{
	return err->code == BK_ERR_NOMEM ? BK_METRICS_ERROR_MEMORY
									 : BK_METRICS_ERROR_REPOSITORY;
}

static void
kafka_log(void *arg, int level, const char *facility, const char *message)
{
	/* syslog levels: 0-3 errors, 4 warning, 5-6 info, 7 debug. */
	shipper_log(level <= 3   ? LOG_ERROR
				: level == 4 ? LOG_WARNING
				: level <= 6 ? LOG_INFO
							 : LOG_DEBUG,
				"kafka: %s: %s", facility, message);
}

static void
handle_stop_signal(int signo)
{
	stop_requested = 1;
}

/* ------------------------------------------------------------ audit */

/*
 * Queue an audit event about an object that starts at offset hold of
 * partition p; that offset stays held back until audit_flush.  False means
 * the event could not be queued: the caller stops, so that the message is
 * consumed again and the event re-sent after a restart.
 */
static bool
audit_send(Shipper *shipper, Partition *p, int64_t hold, const char *source,
		   BkAuditEvent *event)
{
	size_t len = 0;
	char *text;
	BkError err;
	bool ok;

	bk_audit_string(event, "shipper", shipper->instance_id);
	text = bk_audit_finish(event, bk_wall_ms(), &len);
	if (text == NULL)
	{
		shipper_log(LOG_ERROR, "could not build an audit event: out of memory");
		bk_metrics_error(shipper->metrics, BK_METRICS_ERROR_AUDIT);
		return false;
	}
	/* Held first, so that even a failed attempt to queue holds it. */
	if (p->audit_hold < 0 || hold < p->audit_hold)
		p->audit_hold = hold;
	bk_error_clear(&err);
	ok = (shipper->audit_queued > 0 ||
		  bk_producer_batch_begin(shipper->audit, &err)) &&
		 bk_producer_batch_add_message(shipper->audit, shipper->audit_topic,
									   source, text, len, &err);
	if (ok)
	{
		if (shipper->audit_queued++ == 0)
			shipper->audit_opened_ms = bk_monotonic_ms();
	}
	else
	{
		shipper->audit_queued = 0;
		shipper_log(LOG_ERROR,
					"could not deliver audit event %s to topic %s: %s%s%s",
					text, shipper->audit_topic, err.message, hint_sep(&err),
					hint_of(&err));
		bk_metrics_error(shipper->metrics, BK_METRICS_ERROR_AUDIT);
	}
	free(text);
	return ok;
}

/*
 * Wait until every queued audit event is acknowledged; then the offsets they
 * held back may be committed.  False (the shipper stops) when one was not:
 * the offsets stay held, so a restart re-reads those objects and sends their
 * events again.
 */
static bool
audit_flush(Shipper *shipper)
{
	BkError err;
	int queued = shipper->audit_queued;

	if (queued == 0)
		return true;
	shipper->audit_queued = 0;
	bk_error_clear(&err);
	if (!bk_producer_batch_wait(shipper->audit, NULL, NULL, NULL, &err))
	{
		shipper_log(LOG_ERROR,
					"could not deliver %d audit event%s to topic %s: %s%s%s",
					queued, queued == 1 ? "" : "s", shipper->audit_topic,
					err.message, hint_sep(&err), hint_of(&err));
		bk_metrics_error(shipper->metrics, BK_METRICS_ERROR_AUDIT);
		return false;
	}
	for (Partition *p = shipper->partitions; p != NULL; p = p->next)
		p->audit_hold = -1;
	return true;
}

/* ------------------------------------------------------------ partitions */

static Partition *
partition_find(Shipper *shipper, const char *topic, int32_t partition)
{
	for (Partition *p = shipper->partitions; p != NULL; p = p->next)
		if (p->partition == partition && strcmp(p->topic, topic) == 0)
			return p;
	return NULL;
}

static Partition *
partition_add(Shipper *shipper, const char *topic, int32_t partition)
{
	Partition *p = partition_find(shipper, topic, partition);

	if (p != NULL)
		return p;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	bk_strlcpy(p->topic, topic, sizeof(p->topic));
	p->partition = partition;
	p->next_offset = -1;
	p->committed = -1;
	p->broker_time = -1;
	p->assigned_offset = ASSIGNED_UNKNOWN;
	p->audit_hold = -1;
	p->kind = 0;
	for (int topicIdx = 0; topicIdx < 3; topicIdx++)
		if (strcmp(shipper->topics[topicIdx], topic) == 0)
			p->kind = shipper->topic_kinds[topicIdx];
	p->next = shipper->partitions;
	shipper->partitions = p;
	return p;
}

static void
attempt_free(Attempt *attempt)
{
	bk_repo_upload_free(attempt->upload);
	bk_sha256_free(attempt->stored_sha);
	free(attempt->refusal);
	free(attempt);
}

static void
attempt_unlink(Partition *p, Attempt *attempt)
{
	for (Attempt **link = &p->attempts; *link != NULL; link = &(*link)->next)
		if (*link == attempt)
		{
			*link = attempt->next;
			return;
		}
}

/* Drop a partition (revoked): its open attempts are rebuilt by whoever gets it. */
static void
partition_drop(Shipper *shipper, const char *topic, int32_t partition)
{
	for (Partition **link = &shipper->partitions; *link != NULL;
		 link = &(*link)->next)
	{
		Partition *p = *link;

		if (p->partition != partition || strcmp(p->topic, topic) != 0)
			continue;
		while (p->attempts != NULL)
		{
			Attempt *attempt = p->attempts;

			p->attempts = attempt->next;
			attempt_free(attempt);
		}
		*link = p->next;
		free(p);
		return;
	}
}

/* The offset below which everything is durable (or rejected, or abandoned). */
static int64_t
partition_safe_offset(const Partition *p)
{
	int64_t safe = p->next_offset;

	if (p->audit_hold >= 0 && p->audit_hold < safe)
		safe = p->audit_hold;
	for (const Attempt *attempt = p->attempts; attempt != NULL;
		 attempt = attempt->next)
		if (attempt->first_offset < safe)
			safe = attempt->first_offset;
	return safe;
}

static void partition_recreated(Shipper *shipper, Partition *p, int64_t known,
								int64_t now);

/*
 * Before a commit, read back the group's committed offset of every
 * partition in list, and stop at a partition where Kafka no longer holds
 * what this shipper knows it holds (its last commit, or the group's offset
 * when the partition was assigned).  A topic deleted and created again (bk
 * init) before the consumer saw it go is the same topic to librdkafka 2.0,
 * which has no topic ids: it keeps the old partition's position, and reads
 * the new topic from there, skipping what the new topic holds below it
 * unnoticed.  Kafka drops a deleted topic's committed offsets, so the
 * group's offset is gone (or lower, should something have committed in the
 * new topic since): that is how it shows.  Committing the old position into the new
 * topic would make the skip permanent, so such a partition is not
 * committed (partition_recreated).  One OffsetFetch per commit, at most
 * once per COMMIT_INTERVAL_MS, not per message.  A partition this shipper
 * knows no offset of (never committed in the group), or offset 0, is not
 * checked: a position kept from there skips nothing.  Expired offsets
 * (offsets.retention.minutes) are no false alarm: Kafka expires those of an
 * empty group only, and this shipper is a member.  A recreation between
 * this read and the commit, one round trip, still goes unseen.
 * False when the offsets could not be read: nothing is committed, and the
 * next commit tries again.  Partitions with an error of their own (their
 * topic deleted) are left out of list.
 */
static bool
check_committed(Shipper *shipper, rd_kafka_topic_partition_list_t *list)
{
	rd_kafka_topic_partition_list_t *query;
	rd_kafka_resp_err_t kerr;

	query = rd_kafka_topic_partition_list_copy(list);
	kerr = rd_kafka_committed(shipper->consumer, query, COMMITTED_QUERY_MS);
	if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		shipper_log(LOG_WARNING,
					"could not read the group's committed offsets before "
					"committing (will retry): %s",
					rd_kafka_err2str(kerr));
		bk_metrics_error(shipper->metrics, BK_METRICS_ERROR_KAFKA);
		rd_kafka_topic_partition_list_destroy(query);
		return false;
	}
	for (int itemIdx = 0; itemIdx < query->cnt; itemIdx++)
	{
		const rd_kafka_topic_partition_t *item = &query->elems[itemIdx];
		Partition *p = partition_find(shipper, item->topic, item->partition);
		int64_t known;

		if (p == NULL)
			continue;
		if (item->err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			shipper_log(LOG_WARNING,
						"could not read the group's committed offset of %s "
						"[%" PRId32 "] before committing (will retry): %s",
						item->topic, item->partition,
						rd_kafka_err2str(item->err));
			rd_kafka_topic_partition_list_del(list, item->topic,
											  item->partition);
			continue;
		}
		known = p->committed >= 0 ? p->committed : p->assigned_offset;
		if (known > 0 && item->offset < known)
		{
			partition_recreated(shipper, p, known, item->offset);
			rd_kafka_topic_partition_list_del(list, item->topic,
											  item->partition);
		}
	}
	rd_kafka_topic_partition_list_destroy(query);
	return true;
}

/*
 * Commit the safe offset of every partition (or of one topic/partition when
 * only is set) that moved.  Synchronous: after it returns, a restart resumes
 * from there.
 */
static void
commit_offsets(Shipper *shipper, const Partition *only)
{
	rd_kafka_topic_partition_list_t *list;
	rd_kafka_resp_err_t kerr;

	/*
	 * After an error that must not be skipped, commit nothing more: the
	 * message that failed (a chunk 0 whose spool could not be created, an
	 * audit event that could not be queued) is not held by any attempt, and
	 * committing past it would lose it.  A restart re-reads from the last
	 * commit; what was already durable comes back as identical re-sends.
	 */
	if (shipper->fatal)
		return;
	list = rd_kafka_topic_partition_list_new(8);

	for (Partition *p = shipper->partitions; p != NULL; p = p->next)
	{
		int64_t safe;

		if ((only != NULL && p != only) || p->vanished)
			continue;
		safe = partition_safe_offset(p);
		if (p->next_offset < 0 || safe == p->committed)
			continue;
		rd_kafka_topic_partition_list_add(list, p->topic, p->partition)
			->offset = safe;
	}
	if (list->cnt > 0 && check_committed(shipper, list) && list->cnt > 0)
	{
		kerr = rd_kafka_commit(shipper->consumer, list, 0);
		if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			shipper_log(LOG_WARNING,
						"could not commit offsets (will retry): %s",
						rd_kafka_err2str(kerr));
			bk_metrics_error(shipper->metrics, BK_METRICS_ERROR_KAFKA);
		}
		else
			for (int itemIdx = 0; itemIdx < list->cnt; itemIdx++)
			{
				Partition *p =
					partition_find(shipper, list->elems[itemIdx].topic,
								   list->elems[itemIdx].partition);

				if (p != NULL)
					p->committed = list->elems[itemIdx].offset;
			}
	}
	rd_kafka_topic_partition_list_destroy(list);
	shipper->last_commit_ms = bk_monotonic_ms();
}

/*
 * Where the group stood in each newly assigned partition: the offset its
 * first message should have (check_offset_gap), and for the lag metric.
 * Until this shipper commits in a partition, that is the only committed
 * offset it knows, and an idle partition would otherwise show no lag at
 * all after a restart.  One request per rebalance, on a copy of the list so
 * that the assignment itself is left as it was.  A failure leaves those
 * partitions out of the metric, and their first message unchecked.
 */
static void
query_assigned_offsets(Shipper *shipper,
					   const rd_kafka_topic_partition_list_t *parts)
{
	rd_kafka_topic_partition_list_t *query;
	rd_kafka_resp_err_t kerr;

	query = rd_kafka_topic_partition_list_copy(parts);
	kerr = rd_kafka_committed(shipper->consumer, query, COMMITTED_QUERY_MS);
	if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
		shipper_log(LOG_WARNING,
					"could not read the group's committed offsets (for the "
					"lag metric and the check for messages Kafka removed): %s",
					rd_kafka_err2str(kerr));
	else
		for (int itemIdx = 0; itemIdx < query->cnt; itemIdx++)
		{
			const rd_kafka_topic_partition_t *item = &query->elems[itemIdx];
			Partition *p =
				partition_find(shipper, item->topic, item->partition);

			if (p == NULL || item->err != RD_KAFKA_RESP_ERR_NO_ERROR)
				continue;
			/* Nothing committed: auto.offset.reset=earliest starts at the
			 * low watermark. */
			p->assigned_offset =
				item->offset >= 0 ? item->offset : ASSIGNED_AT_LOW;
		}
	rd_kafka_topic_partition_list_destroy(query);
}

/*
 * The consumer lag of every assigned partition, for the metrics: the high
 * watermark librdkafka cached from its last fetch response (no request is
 * made) minus the offset committed behind durable objects: this shipper's
 * last commit, else the group's when the partition was assigned.
 */
static void
update_lag_metrics(Shipper *shipper)
{
	BkMetricsLag *lags;
	int count = 0;
	int lagIdx = 0;

	if (shipper->metrics == NULL)
		return;
	for (Partition *p = shipper->partitions; p != NULL; p = p->next)
		count++;
	lags = calloc(count > 0 ? (size_t) count : 1, sizeof(*lags));
	if (lags == NULL)
		return;
	for (Partition *p = shipper->partitions; p != NULL; p = p->next)
	{
		int64_t low = RD_KAFKA_OFFSET_INVALID;
		int64_t high = RD_KAFKA_OFFSET_INVALID;
		int64_t committed =
			p->committed >= 0 ? p->committed : p->assigned_offset;

		if (rd_kafka_get_watermark_offsets(shipper->consumer, p->topic,
										   p->partition, &low, &high) !=
				RD_KAFKA_RESP_ERR_NO_ERROR ||
			high < 0 || committed == ASSIGNED_UNKNOWN)
			continue;
		/* Retention may have deleted what was committed, or never read. */
		if (low >= 0 && (committed == ASSIGNED_AT_LOW || committed < low))
			committed = low;
		if (committed < 0)
			continue;
		bk_strlcpy(lags[lagIdx].topic, p->topic, sizeof(lags[lagIdx].topic));
		lags[lagIdx].partition = p->partition;
		lags[lagIdx].lag = high > committed ? high - committed : 0;
		lagIdx++;
	}
	bk_metrics_set_lag(shipper->metrics, lags, lagIdx);
	free(lags);
}

static bool commit_flush(Shipper *shipper);

/*
 * Take (assign) or give up the partitions of a rebalance, as its protocol
 * wants it: kafka_properties may choose a cooperative assignment strategy
 * (cooperative-sticky), whose changes are incremental, and librdkafka then
 * refuses rd_kafka_assign().  A refusal would leave the shipper consuming
 * nothing while it says the partitions are its own: it stops instead.
 */
static void
assignment_change(Shipper *shipper, rd_kafka_t *rk,
				  rd_kafka_topic_partition_list_t *parts, bool take)
{
	rd_kafka_error_t *error = NULL;
	rd_kafka_resp_err_t kerr = RD_KAFKA_RESP_ERR_NO_ERROR;
	const char *problem = NULL;

	if (strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0)
	{
		error = take ? rd_kafka_incremental_assign(rk, parts)
					 : rd_kafka_incremental_unassign(rk, parts);
		if (error != NULL)
			problem = rd_kafka_error_string(error);
	}
	else
	{
		kerr = rd_kafka_assign(rk, take ? parts : NULL);
		if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
			problem = rd_kafka_err2str(kerr);
	}
	if (problem != NULL)
	{
		shipper_log(LOG_ERROR, "could not %s %d partitions: %s",
					take ? "take" : "give up", parts->cnt, problem);
		bk_metrics_error(shipper->metrics, BK_METRICS_ERROR_KAFKA);
		shipper->fatal = true;
	}
	if (error != NULL)
		rd_kafka_error_destroy(error);
}

static void
rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	Shipper *shipper = opaque;

	char summary[1024];
	size_t pos = 0;

	summary[0] = '\0';
	for (int itemIdx = 0; itemIdx < parts->cnt && pos < sizeof(summary) - 64;
		 itemIdx++)
		pos += (size_t) snprintf(
			summary + pos, sizeof(summary) - pos, " %s[%" PRId32 "]",
			parts->elems[itemIdx].topic, parts->elems[itemIdx].partition);
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
	{
		for (int itemIdx = 0; itemIdx < parts->cnt; itemIdx++)
			partition_add(shipper, parts->elems[itemIdx].topic,
						  parts->elems[itemIdx].partition);
		shipper_log(LOG_INFO, "assigned %d partitions:%s", parts->cnt, summary);
		assignment_change(shipper, rk, parts, true);
		query_assigned_offsets(shipper, parts);
		return;
	}
	/* Revoked (or an error): commit what is durable, forget the rest. */
	if (shipper->fatal)
		shipper->commit_queued = 0; /* their attempts are dropped below */
	else if (!commit_flush(shipper))
		shipper->fatal = true;
	if (!audit_flush(shipper))
		shipper->fatal = true;
	commit_offsets(shipper, NULL);
	for (int itemIdx = 0; itemIdx < parts->cnt; itemIdx++)
		partition_drop(shipper, parts->elems[itemIdx].topic,
					   parts->elems[itemIdx].partition);
	shipper_log(LOG_INFO, "revoked %d partitions (%s):%s", parts->cnt,
				rd_kafka_err2str(err), summary);
	assignment_change(shipper, rk, parts, false);
}

/*
 * consumer_fatal
 *		librdkafka raised a fatal error: the consumer is unusable and will
 *		never consume again.  Stop, saying why, so that a supervisor
 *		restarts us and the operator sees the cause; never idle.
 */
static void
consumer_fatal(Shipper *shipper, rd_kafka_t *rk)
{
	char reason[512];
	rd_kafka_resp_err_t cause;

	if (shipper->fatal)
		return;
	cause = rd_kafka_fatal_error(rk, reason, sizeof(reason));
	shipper->fatal = true;
	bk_metrics_error(shipper->metrics, BK_METRICS_ERROR_KAFKA);
	if (cause == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID)
	{
		shipper->fenced = true;
		shipper->exit_code = BK_EXIT_CONFIG;
		shipper_log(LOG_ERROR,
					"another bk-shipper joined group \"%s\" with the same "
					"shipper_id \"%s\" (Kafka's group.instance.id), and "
					"Kafka fenced this one out: %s. Give every shipper its "
					"own shipper_id.",
					shipper->config->group_id ? shipper->config->group_id
											  : BK_GROUP_ID_DEFAULT,
					shipper->instance_id, reason);
		return;
	}
	shipper_log(LOG_ERROR, "the Kafka consumer failed for good: %s (%s)",
				reason, rd_kafka_err2name(cause));
}

/*
 * partition_vanished
 *		The consumer says a partition we hold no longer exists: its topic
 *		was deleted (Kafka never removes partitions otherwise).  librdkafka
 *		(2.0 at least) keeps the partition's fetch position, and resumes
 *		there once a topic of the same name is created again: every message
 *		the new topic took below that offset, objects Kafka acknowledged to
 *		their sources, would be skipped unread, and no loss reported.  So
 *		stop, committing no offset of that partition (Kafka dropped the
 *		group's offsets with the topic, and committing the old position into
 *		a new topic would skip the same messages after a restart); what is
 *		complete is still stored.  A restart creates a missing topic and reads
 *		it from its first message.  A topic created again before the
 *		consumer saw it go is caught before the next commit instead
 *		(check_committed).
 */
static void
partition_vanished(Shipper *shipper, const char *topic, int32_t partition)
{
	Partition *p = partition_find(shipper, topic, partition);

	if (p == NULL || p->vanished)
		return;
	p->vanished = true;
	shipper->vanished = true;
	bk_metrics_error(shipper->metrics, BK_METRICS_ERROR_KAFKA);
	shipper_log(LOG_ERROR,
				"partition %s [%" PRId32 "] no longer exists: topic \"%s\" "
				"was deleted while bk-shipper ran, and its messages not "
				"archived yet are gone from Kafka. Run \"bk list\" and \"bk "
				"verify\" to find gaps, and take a new snapshot if they show "
				"one. Start bk-shipper again: it creates a missing topic and "
				"reads it from its first message.",
				topic, partition, topic);
}

/*
 * partition_recreated
 *		Kafka no longer holds the group's committed offset of a partition
 *		this shipper holds (check_committed): its topic was deleted, and
 *		perhaps created again already, before the consumer saw it go.  Stop
 *		as partition_vanished does, committing nothing of the partition:
 *		the consumer's position is the old topic's, and the new topic's
 *		messages below it, not read, must be read after a restart, which
 *		finds no committed offset and reads the topic from its first
 *		message.
 */
static void
partition_recreated(Shipper *shipper, Partition *p, int64_t known, int64_t now)
{
	char now_text[64];

	if (p->vanished)
		return;
	p->vanished = true;
	shipper->vanished = true;
	bk_metrics_error(shipper->metrics, BK_METRICS_ERROR_KAFKA);
	if (now < 0)
		bk_strlcpy(now_text, "none", sizeof(now_text));
	else
		snprintf(now_text, sizeof(now_text), "%" PRId64, now);
	shipper_log(LOG_ERROR,
				"partition %s [%" PRId32 "]: group \"%s\" had committed "
				"offset %" PRId64 " there and Kafka now holds %s: topic "
				"\"%s\" was deleted, and perhaps created again (bk init), "
				"while bk-shipper ran. Its messages not archived yet are gone "
				"from Kafka, and a topic created again would be read from the "
				"old topic's offset, skipping what it holds below it, so "
				"nothing of the partition is committed. Run \"bk list\" and "
				"\"bk verify\" to find gaps, and take a new snapshot if they "
				"show one. Start bk-shipper again: it creates a missing topic "
				"and reads it from its first message.",
				p->topic, p->partition,
				shipper->config->group_id ? shipper->config->group_id
										  : BK_GROUP_ID_DEFAULT,
				known, now_text, p->topic);
}

/* librdkafka's error callback (on the consumer's poll): fatal errors stop. */
static void
consumer_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	Shipper *shipper = opaque;

	char topic[BK_TOPIC_NAME_MAX + 1]; /* 249: the %249 below */
	int32_t partition;

	if (err == RD_KAFKA_RESP_ERR__FATAL)
		consumer_fatal(shipper, rk);
	else if (err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION &&
			 sscanf(reason, "%249[^ ] [%" SCNd32 "]", topic, &partition) == 2)
	{
		/* With an error callback set, librdkafka reports it here, naming
		 * the partition only in the text: "TOPIC [N]: desired partition is
		 * no longer available" (topic names hold no spaces). */
		shipper_log(LOG_WARNING, "consumer: %s: %s",
					rd_kafka_err2name((rd_kafka_resp_err_t) err), reason);
		partition_vanished(shipper, topic, partition);
	}
	else
	{
		/* Usually transient (a broker down): counted, so a rate can alert. */
		shipper_log(LOG_WARNING, "consumer: %s: %s",
					rd_kafka_err2name((rd_kafka_resp_err_t) err), reason);
		bk_metrics_error(shipper->metrics, BK_METRICS_ERROR_KAFKA);
	}
}

/* ------------------------------------------------------------ messages */

/*
 * The rejected event of what was kept in rejected/ at offset, keyed by its
 * source, or "unknown" when it names none.
 */
static bool
audit_rejected(Shipper *shipper, Partition *p, int64_t offset,
			   const char *source, const char *object, const char *reason)
{
	BkAuditEvent *event = bk_audit_begin("rejected", source);

	bk_audit_string(event, "topic", p->topic);
	bk_audit_int(event, "partition", p->partition);
	bk_audit_int(event, "offset", offset);
	bk_audit_string(event, "reason", reason);
	bk_audit_string(event, "object", object);
	return audit_send(shipper, p, offset, source[0] ? source : "unknown",
					  event);
}

/*
 * A message that fails the keyless checks: keep its bytes in rejected/,
 * report it, and move on.  It can never become valid, so it must not hold
 * the partition's offset back.
 */
static bool
reject_message(Shipper *shipper, Partition *p, rd_kafka_message_t *msg,
			   const char *reason)
{
	char source[BK_SOURCE_ID_MAX + 1];
	char object[BK_OBJECT_NAME_MAX + 1];
	BkError err;

	bk_kafka_header_string(msg, "bk-source", source, sizeof(source));
	bk_kafka_header_string(msg, "bk-object", object, sizeof(object));
	shipper->rejected++;
	bk_metrics_rejected(shipper->metrics);
	shipper_log(LOG_WARNING,
				"rejected message %s [%" PRId32 "] at offset %" PRId64
				" (bk-source \"%s\", bk-object \"%s\"): %s; kept in "
				"rejected/, not archived",
				p->topic, p->partition, msg->offset, source, object, reason);
	bk_error_clear(&err);
	if (!bk_repo_quarantine(shipper->repo, p->topic, p->partition, msg->offset,
							msg->payload, msg->len, reason, &err))
	{
		shipper_log(LOG_ERROR, "could not keep the rejected message: %s",
					err.message);
		bk_metrics_error(shipper->metrics, BK_METRICS_ERROR_REPOSITORY);
		return false;
	}
	return audit_rejected(shipper, p, msg->offset, source, object, reason);
}

/*
 * Whether the repository holds this very attempt.  A chunk of an attempt
 * stored already and handed out again (the idempotent producer appends a
 * request twice when its epoch is bumped while the request is in flight;
 * a message produced again by hand or by a mirror) opens the attempt anew,
 * and it never completes a second time.  Giving it up would report an
 * archived attempt abandoned, which a snapshot waiting for the repository
 * takes for a failure.  Not known (not found, unreadable): false.
 */
static bool
attempt_archived(Shipper *shipper, const Attempt *attempt)
{
	BkObjectIdentity identity;
	BkError err;

	if (!attempt->tracker.started)
		return false;
	bk_error_clear(&err);
	return bk_repo_object_identity(shipper->repo, BK_REPO_ARCHIVE,
								   attempt->tracker.source,
								   attempt->tracker.kind, attempt->tracker.name,
								   &identity, NULL, &err) &&
		   memcmp(identity.attempt_id, attempt->tracker.attempt_id,
				  BK_ATTEMPT_ID_LEN) == 0;
}

static bool
abandon_attempt(Shipper *shipper, Partition *p, Attempt *attempt,
				const char *reason)
{
	char attempt_hex[2 * BK_ATTEMPT_ID_LEN + 1];
	BkAuditEvent *event;
	bool ok;

	bk_hex_encode(attempt->tracker.attempt_id, BK_ATTEMPT_ID_LEN, attempt_hex);
	if (attempt_archived(shipper, attempt))
	{
		shipper_log(LOG_INFO,
					"dropped %" PRIu32 " chunk%s of %s object \"%s\" of "
					"source \"%s\" (attempt %s) that Kafka handed out again "
					"from %s [%" PRId32 "] offset %" PRId64
					": that attempt is archived already",
					attempt->tracker.next_index,
					attempt->tracker.next_index == 1 ? "" : "s",
					bk_kind_name(attempt->tracker.kind), attempt->tracker.name,
					attempt->tracker.source, attempt_hex, p->topic,
					p->partition, attempt->first_offset);
		attempt_unlink(p, attempt);
		attempt_free(attempt);
		return true;
	}
	shipper->abandoned++;
	bk_metrics_abandoned(shipper->metrics);
	shipper_log(
		LOG_INFO,
		"gave up %s object \"%s\" of source \"%s\" (attempt %s, %" PRIu32
		" of %" PRIu32 " chunks): %s",
		bk_kind_name(attempt->tracker.kind), attempt->tracker.name,
		attempt->tracker.source, attempt_hex, attempt->tracker.next_index,
		attempt->tracker.chunk_count, reason);
	event = bk_audit_begin("abandoned", attempt->tracker.source);
	bk_audit_string(event, "kind", bk_kind_name(attempt->tracker.kind));
	bk_audit_string(event, "object", attempt->tracker.name);
	bk_audit_string(event, "attempt", attempt_hex);
	bk_audit_int(event, "chunks", attempt->tracker.next_index);
	bk_audit_int(event, "chunk_count", attempt->tracker.chunk_count);
	bk_audit_string(event, "reason", reason);
	ok = audit_send(shipper, p, attempt->first_offset, attempt->tracker.source,
					event);
	attempt_unlink(p, attempt);
	attempt_free(attempt);
	return ok;
}

/*
 * Give up attempts that stalled longer than abandon_after in broker time,
 * as told by a message with broker time message_time (-1: none), and in
 * our own monotonic time.
 */
static bool
abandon_stalled(Shipper *shipper, Partition *p, int64_t message_time)
{
	Attempt *attempt = p->attempts;
	int64_t now = bk_monotonic_ms();

	while (attempt != NULL)
	{
		Attempt *next = attempt->next;

		/* Complete: waits for the commit batch, not for chunks. */
		if (attempt->queued)
		{
			attempt = next;
			continue;
		}
		if (bk_kafka_attempt_stalled(&attempt->broker_time, message_time,
									 attempt->local_ms, now,
									 shipper->config->abandon_after_ms) &&
			!abandon_attempt(
				shipper, p, attempt,
				"no chunk for longer than abandon_after, by the broker's "
				"clock and by ours, while later messages arrived; the "
				"source started over"))
			return false;
		attempt = next;
	}
	return true;
}

/*
 * The same, for every partition, against the broker time of its newest
 * message: run once a second, before committing.  An attempt that broker
 * time gave up before our own clock did would otherwise wait for the
 * partition's next message, holding its committed offset and lag up for as
 * long as the partition stays quiet.  No new evidence is used: it is the
 * decision the partition's newest message would take now.
 */
static bool
abandon_stalled_all(Shipper *shipper)
{
	for (Partition *p = shipper->partitions; p != NULL; p = p->next)
		if (!abandon_stalled(shipper, p, p->broker_time))
			return false;
	return true;
}

/* The open or queued (complete, being stored) attempt a frame belongs to. */
static Attempt *
attempt_find(Partition *p, const BkFrame *frame)
{
	for (Attempt *attempt = p->attempts; attempt != NULL;
		 attempt = attempt->next)
		if (bk_tracker_same_attempt(&attempt->tracker, frame))
			return attempt;
	return NULL;
}

static Attempt *
attempt_start(Shipper *shipper, Partition *p, rd_kafka_message_t *msg,
			  const BkFrame *frame, BkError *err)
{
	Attempt *attempt = calloc(1, sizeof(*attempt));
	char tag[BK_TOPIC_NAME_MAX + 96];
	char attempt_hex[2 * BK_ATTEMPT_ID_LEN + 1];

	if (attempt == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	attempt->first_offset = msg->offset;
	attempt->broker_time = -1;
	attempt->local_ms = bk_monotonic_ms();
	bk_tracker_reset(&attempt->tracker);
	bk_hex_encode(frame->attempt_id, BK_ATTEMPT_ID_LEN, attempt_hex);
	snprintf(tag, sizeof(tag), "%s.%" PRId32 ".%" PRId64 ".%s", p->topic,
			 p->partition, msg->offset, attempt_hex);
	attempt->upload = bk_repo_upload_begin(shipper->repo, tag, err);
	if (attempt->upload == NULL)
	{
		attempt_free(attempt);
		return NULL;
	}
	attempt->stored_sha = bk_sha256_new(err);
	if (attempt->stored_sha == NULL)
	{
		attempt_free(attempt);
		return NULL;
	}
	attempt->next = p->attempts;
	p->attempts = attempt;
	return attempt;
}

/*
 * A complete attempt the repository will never store under its name (a
 * component or key too long for it): kept in rejected/ at the offset of its
 * first chunk, reported, and let go like a malformed message.  Stopping
 * instead would meet it again after every restart, for ever.
 */
static bool
reject_attempt(Shipper *shipper, Partition *p, Attempt *attempt,
			   const char *reason)
{
	const BkObjectTracker *object = &attempt->tracker;
	BkError err;
	bool ok;

	shipper->rejected++;
	bk_metrics_rejected(shipper->metrics);
	shipper_log(LOG_WARNING,
				"rejected %s object \"%s\" of source \"%s\" from %s [%" PRId32
				"] offset %" PRId64
				": the repository refuses it for good (%s); kept in "
				"rejected/, not archived",
				bk_kind_name(object->kind), object->name, object->source,
				p->topic, p->partition, attempt->first_offset, reason);
	bk_error_clear(&err);
	if (!bk_repo_upload_quarantine(attempt->upload, p->topic, p->partition,
								   attempt->first_offset, reason, &err))
	{
		shipper_log(LOG_ERROR, "could not keep the rejected object: %s",
					err.message);
		bk_metrics_error(shipper->metrics, BK_METRICS_ERROR_REPOSITORY);
		return false;
	}
	ok = audit_rejected(shipper, p, attempt->first_offset, object->source,
						object->name, reason);
	attempt_unlink(p, attempt);
	attempt_free(attempt);
	return ok;
}

/* An object the repository could not take: logged, counted; false. */
static bool
archive_failed(Shipper *shipper, const BkObjectTracker *object,
			   const BkError *cause)
{
	BkError err = *cause;

	object_no_space_hint(shipper, &err);
	shipper_log(LOG_ERROR,
				"could not archive %s object \"%s\" of source \"%s\": %s%s%s",
				bk_kind_name(object->kind), object->name, object->source,
				err.message, hint_sep(&err), hint_of(&err));
	bk_metrics_error(shipper->metrics, error_kind(&err));
	return false;
}

/*
 * A complete attempt: all its bytes written, not yet durable; it joins the
 * commit batch (commit_flush), still open so that it holds its partition's
 * offset back.
 */
static bool
queue_attempt(Shipper *shipper, Partition *p, Attempt *attempt)
{
	BkError err;

	if (shipper->commit_queued == COMMIT_BATCH_MAX && !commit_flush(shipper))
		return false;
	bk_error_clear(&err);
	if (!bk_repo_upload_seal(attempt->upload, &err))
		return archive_failed(shipper, &attempt->tracker, &err);
	if (shipper->commit_queued == 0)
		shipper->commit_opened_ms = bk_monotonic_ms();
	attempt->queued = true;
	shipper->commit_queue[shipper->commit_queued] = attempt;
	shipper->commit_partitions[shipper->commit_queued] = p;
	shipper->commit_queued++;
	return true;
}

/*
 * Store a queued attempt with put-if-absent, in the open repository batch:
 * durable once the batch ends.  A name the repository refuses for good sets
 * attempt->refusal and is not a failure: report_attempt keeps it in
 * rejected/.
 */
static bool
store_attempt(Shipper *shipper, Attempt *attempt)
{
	const BkObjectTracker *object = &attempt->tracker;
	BkObjectIdentity identity;
	BkPutResult conflict_result; /* kept, or kept before: either is fine */
	BkError err;
	double commit_started = bk_metrics_clock();

	bk_error_clear(&err);
	memcpy(identity.key_id, object->key_id, BK_KEY_ID_LEN);
	memcpy(identity.fingerprint, object->fingerprint, BK_FINGERPRINT_LEN);
	memcpy(identity.attempt_id, object->attempt_id, BK_ATTEMPT_ID_LEN);
	/*
	 * Put-if-absent: a re-send with the same content is a duplicate; other
	 * content under the same name is kept beside it, as a conflict copy.
	 */
	if (!bk_sha256_final(attempt->stored_sha, attempt->stored_digest, &err) ||
		!bk_repo_upload_finish(attempt->upload, &err) ||
		!bk_repo_upload_commit(attempt->upload, BK_REPO_ARCHIVE, object->source,
							   object->kind, object->name, &identity,
							   &attempt->result, &err) ||
		(attempt->result == BK_PUT_EXISTS_DIFFERENT &&
		 !bk_repo_upload_commit(attempt->upload, BK_REPO_CONFLICTS,
								object->source, object->kind, object->name,
								&identity, &conflict_result, &err)))
	{
		if (err.code == BK_ERR_REFUSED)
		{
			attempt->refusal = strdup(err.message);
			if (attempt->refusal != NULL)
				return true;
			bk_error_set(&err, BK_ERR_NOMEM, "out of memory");
		}
		return archive_failed(shipper, object, &err);
	}
	attempt->commit_seconds = bk_metrics_clock() - commit_started;
	return true;
}

/* A stored attempt, durable now: report it, let offsets move past it. */
static bool
report_attempt(Shipper *shipper, Partition *p, Attempt *attempt)
{
	const BkObjectTracker *object = &attempt->tracker;
	const char *event_name;
	BkAuditEvent *event;

	if (attempt->refusal != NULL)
		return reject_attempt(shipper, p, attempt, attempt->refusal);
	switch (attempt->result)
	{
		case BK_PUT_CREATED:
			event_name = "archived";
			shipper->archived++;
			bk_metrics_object(shipper->metrics, BK_METRICS_ARCHIVED,
							  object->source, attempt->last_timestamp,
							  attempt->stored_bytes, attempt->commit_seconds);
			shipper_log(LOG_INFO,
						"archived %s \"%s\" of source \"%s\": %" PRIu64
						" bytes in %" PRIu32 " chunks, %" PRIu64
						" stored, from %s [%" PRId32 "] offset %" PRId64,
						bk_kind_name(object->kind), object->name,
						object->source, object->object_size,
						object->chunk_count, attempt->stored_bytes, p->topic,
						p->partition, attempt->first_offset);
			break;
		case BK_PUT_EXISTS_IDENTICAL:
			event_name = "duplicate";
			shipper->duplicates++;
			bk_metrics_object(shipper->metrics, BK_METRICS_DUPLICATE,
							  object->source, attempt->last_timestamp,
							  attempt->stored_bytes, attempt->commit_seconds);
			shipper_log(LOG_INFO,
						"%s \"%s\" of source \"%s\" was already archived with "
						"identical content; this re-send is not stored again",
						bk_kind_name(object->kind), object->name,
						object->source);
			break;
		default:
			event_name = "conflict";
			shipper->conflicts++;
			bk_metrics_object(shipper->metrics, BK_METRICS_CONFLICT,
							  object->source, attempt->last_timestamp,
							  attempt->stored_bytes, attempt->commit_seconds);
			shipper_log(
				LOG_ERROR,
				"ALARM: %s \"%s\" of source \"%s\" arrived with content "
				"different from the archived copy; both are kept, this "
				"one as \"%s\". Run \"bk verify --source %s\" with the "
				"key to tell them apart.",
				bk_kind_name(object->kind), object->name, object->source,
				bk_repo_upload_key(attempt->upload), object->source);
			break;
	}

	event = bk_audit_begin(event_name, object->source);
	bk_audit_string(event, "kind", bk_kind_name(object->kind));
	bk_audit_string(event, "object", object->name);
	bk_audit_hex(event, "attempt", object->attempt_id, BK_ATTEMPT_ID_LEN);
	bk_audit_hex(event, "key_id", object->key_id, BK_KEY_ID_LEN);
	bk_audit_hex(event, "fingerprint", object->fingerprint, BK_FINGERPRINT_LEN);
	bk_audit_int(event, "size", (int64_t) object->object_size);
	bk_audit_int(event, "stored_size", (int64_t) attempt->stored_bytes);
	bk_audit_int(event, "chunks", object->chunk_count);
	bk_audit_hex(event, "stored_sha256", attempt->stored_digest, BK_SHA256_LEN);
	bk_audit_meta(event, "meta", object->meta, object->meta_len);
	bk_audit_string(event, "topic", p->topic);
	bk_audit_int(event, "partition", p->partition);
	bk_audit_int(event, "first_offset", attempt->first_offset);
	bk_audit_string(event, "path", bk_repo_upload_key(attempt->upload));
	if (!audit_send(shipper, p, attempt->first_offset, object->source, event))
		return false;

	attempt_unlink(p, attempt);
	attempt_free(attempt);
	return true;
}

/*
 * Store every queued attempt in one repository batch, then report them in
 * the order they completed.  False (the shipper stops) when one could not be
 * stored or the batch not made durable: every queued attempt is then still
 * open and holds its partition's offset, so a restart re-reads them.
 */
static bool
commit_flush(Shipper *shipper)
{
	int queued = shipper->commit_queued;
	int stored = 0;
	BkError err;
	bool ok;

	if (queued == 0)
		return true;
	shipper->commit_queued = 0;
	bk_repo_batch_begin(shipper->repo);
	while (stored < queued &&
		   store_attempt(shipper, shipper->commit_queue[stored]))
		stored++;
	bk_error_clear(&err);
	ok = bk_repo_batch_end(shipper->repo, &err) && stored == queued;
	if (stored == queued && !ok)
	{
		shipper_log(LOG_ERROR,
					"could not make %d archived object%s durable: %s%s%s",
					queued, queued == 1 ? "" : "s", err.message, hint_sep(&err),
					hint_of(&err));
		bk_metrics_error(shipper->metrics, error_kind(&err));
	}
	for (int queueIdx = 0; queueIdx < queued; queueIdx++)
	{
		Attempt *attempt = shipper->commit_queue[queueIdx];

		attempt->queued = false;
		if (ok && !report_attempt(shipper, shipper->commit_partitions[queueIdx],
								  attempt))
			ok = false;
	}
	return ok;
}

/*
 * check_offset_gap
 *		Report messages Kafka removed before this shipper read them.  bk's
 *		topics are never compacted (the topic check refuses it), so a
 *		message past the offset expected (after the last one handled, or
 *		the group's committed offset for the first one) means the offsets
 *		between were removed, or hold records a consumer is never handed:
 *		the markers that end a transaction.  bk's producers are idempotent,
 *		never transactional, but another application's producer writing to
 *		the topic may be (its messages are rejected like any that is not a
 *		frame), and every transaction it ends leaves a marker.  Removal
 *		only ever moves a partition's log start offset forward, so the
 *		broker says which: offsets below its log start offset were removed,
 *		those at or above it are still there and lose nothing.
 *		Retention removed them while no shipper read the partition (all
 *		stopped, or lagging more than topic_retention), or someone deleted
 *		records; librdkafka then resumes at the oldest message left
 *		(auto.offset.reset) and says so only in a warning.  They may be
 *		chunks of objects their sources count as archived, so this is an
 *		ERROR, an audit event and a metric; the shipper goes on with what
 *		is left, as stopping would lose nothing less.  When the broker
 *		cannot be asked, the whole hole counts.  The hole may also cover
 *		messages of objects already stored (the committed offset stays
 *		behind attempts still open), so the count is of messages not known
 *		to be stored, an upper bound of what is lost.  In a partition the
 *		group never committed in, the first message is expected at offset
 *		0, where the topic's partitions start: what went before the group
 *		read it, this group never stored.
 */
static bool
check_offset_gap(Shipper *shipper, Partition *p, const rd_kafka_message_t *msg)
{
	/*
	 * A partition the group never committed in is read from its start,
	 * offset 0 when the topic was created: what went below it before this
	 * group read it was never stored by this group.
	 */
	bool never_committed =
		p->next_offset < 0 && p->assigned_offset == ASSIGNED_AT_LOW;
	int64_t expected = p->next_offset >= 0       ? p->next_offset
					   : p->assigned_offset >= 0 ? p->assigned_offset
					   : never_committed         ? 0
												 : -1;
	int64_t removed_end = msg->offset; /* the removed: expected.. before it */
	int64_t low = -1;
	int64_t high = -1;
	rd_kafka_resp_err_t kerr;
	BkAuditEvent *event;

	if (expected < 0 || msg->offset <= expected)
		return true;
	kerr = rd_kafka_query_watermark_offsets(shipper->consumer, p->topic,
											p->partition, &low, &high,
											WATERMARK_QUERY_MS);
	if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR && never_committed)
	{
		/* Offsets below the first message may all be transaction markers:
		 * without the broker's answer, nothing is known lost. */
		shipper_log(LOG_WARNING,
					"%s [%" PRId32 "]: the group never committed an offset in "
					"this partition, whose first message is at offset %" PRId64
					", and Kafka could not be asked where the partition "
					"starts (%s): messages retention removed before this "
					"group read them, if any, are not counted",
					p->topic, p->partition, msg->offset,
					rd_kafka_err2str(kerr));
		return true;
	}
	if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
		shipper_log(LOG_WARNING,
					"%s [%" PRId32 "]: could not ask Kafka where the "
					"partition starts, to tell offsets %" PRId64 " to %" PRId64
					" removed from transaction markers: %s; counting them "
					"all as removed",
					p->topic, p->partition, expected, msg->offset - 1,
					rd_kafka_err2str(kerr));
	else if (low >= 0 && low < removed_end)
	{
		removed_end = low > expected ? low : expected;
		/* Once per partition: such a producer leaves one per transaction. */
		shipper_log(p->warned_markers ? LOG_DEBUG : LOG_WARNING,
					"%s [%" PRId32 "]: offsets %" PRId64 " to %" PRId64
					" are not below where Kafka starts the partition but "
					"hold nothing a consumer is handed: the markers of "
					"transactions, which bk's producers never write, so "
					"another application's transactional producer writes "
					"to topic %s; nothing of bk's is lost there (unless "
					"someone set cleanup.policy=compact on the topic, which "
					"bk refuses at start)",
					p->topic, p->partition, removed_end, msg->offset - 1,
					p->topic);
		p->warned_markers = true;
	}
	if (removed_end == expected)
		return true;
	shipper->messages_lost += (uint64_t) (removed_end - expected);
	bk_metrics_messages_lost(shipper->metrics,
							 (uint64_t) (removed_end - expected));
	if (never_committed)
		shipper_log(LOG_ERROR,
					"%s [%" PRId32 "]: Kafka no longer holds offsets %" PRId64
					" to %" PRId64 " (%" PRId64
					" messages), and group \"%s\" never committed an offset "
					"in this partition, so it never stored them: retention "
					"removed them before any shipper of the group read them "
					"(the shippers started later than the topic's "
					"retention, or group_id changed), or Kafka expired the "
					"group's offsets (offsets.retention.minutes) while no "
					"shipper ran. Objects their sources count as archived "
					"may be missing from this repository: run \"bk verify\" "
					"and \"bk list\" to find gaps, and take new snapshots of "
					"the sources concerned.",
					p->topic, p->partition, expected, removed_end - 1,
					removed_end - expected,
					shipper->config->group_id ? shipper->config->group_id
											  : BK_GROUP_ID_DEFAULT);
	else
		shipper_log(LOG_ERROR,
					"%s [%" PRId32 "]: Kafka no longer holds offsets %" PRId64
					" to %" PRId64 " (%" PRId64
					" messages), which this group had not committed as "
					"stored: retention removed them first (shippers stopped "
					"or lagging longer than the topic's retention) or "
					"records were deleted. Objects their sources count as "
					"archived may be lost: run \"bk verify\" and "
					"\"bk list\" to find gaps, take new snapshots of the "
					"sources concerned, and keep topic_retention above any "
					"shipper outage.",
					p->topic, p->partition, expected, removed_end - 1,
					removed_end - expected);
	event = bk_audit_begin("messages-lost", "unknown");
	bk_audit_string(event, "topic", p->topic);
	bk_audit_int(event, "partition", p->partition);
	bk_audit_int(event, "first_offset", expected);
	bk_audit_int(event, "last_offset", removed_end - 1);
	/*
	 * Held at the hole's start: a crash before the event is acknowledged
	 * restarts there, and finds the hole again.
	 */
	return audit_send(shipper, p, expected, "unknown", event);
}

/*
 * A message could not be spooled (the spool's file system full, say): say
 * so and stop at it, its offset held (next_offset goes back to it) so that
 * nothing is committed past it.  The attempts already complete in the
 * commit batch need no more spool, only storing: store and report them and
 * commit the offsets behind them first.  Otherwise a restart re-reads them
 * all, fills the spool with them again and stops at the same message, so a
 * backlog larger than the spool never got archived, whatever room was made.
 */
static bool
spool_failed(Shipper *shipper, Partition *p, int64_t offset,
			 const BkError *cause)
{
	BkError err = *cause;

	object_no_space_hint(shipper, &err);
	shipper_log(LOG_ERROR, "%s%s%s", err.message, hint_sep(&err),
				hint_of(&err));
	bk_metrics_error(shipper->metrics, error_kind(&err));
	p->next_offset = offset;
	if ((shipper->commit_queued > 0 || shipper->audit_queued > 0) &&
		commit_flush(shipper) && audit_flush(shipper))
		commit_offsets(shipper, NULL);
	return false;
}

static bool
handle_message(Shipper *shipper, rd_kafka_message_t *msg)
{
	const char *topic = rd_kafka_topic_name(msg->rkt);
	Partition *p = partition_add(shipper, topic, msg->partition);
	int64_t timestamp = rd_kafka_message_timestamp(msg, NULL);
	int64_t broker_time = bk_kafka_broker_time(msg);
	Attempt *attempt;
	BkFrame frame;
	BkError err;
	char reason[BK_ERROR_MESSAGE_MAX + 64];

	if (p == NULL)
	{
		shipper_log(LOG_ERROR, "out of memory");
		bk_metrics_error(shipper->metrics, BK_METRICS_ERROR_MEMORY);
		return false;
	}
	if (!check_offset_gap(shipper, p, msg))
		return false;
	p->next_offset = msg->offset + 1;
	p->broker_time = broker_time;
	if (broker_time < 0 && !p->warned_create_time)
	{
		p->warned_create_time = true;
		shipper_log(LOG_WARNING,
					"%s [%" PRId32 "] offset %" PRId64
					": the message has no broker timestamp, so stalled "
					"attempts of this partition are never given up; set "
					"message.timestamp.type=LogAppendTime on topic %s",
					p->topic, p->partition, msg->offset, p->topic);
	}
	bk_error_clear(&err);

	if (!bk_frame_parse(msg->payload, msg->len, &frame, &err))
		return reject_message(shipper, p, msg, err.message);
	if (frame.kind != p->kind)
	{
		snprintf(reason, sizeof(reason), "a %s object on topic %s",
				 bk_kind_name(frame.kind), p->topic);
		return reject_message(shipper, p, msg, reason);
	}

	attempt = attempt_find(p, &frame);
	/*
	 * A chunk its attempt has already taken: the idempotent producer can
	 * append a request twice (a producer epoch bumped while it was in
	 * flight), and a consumer whose offset was reset is handed messages
	 * again.  The copy is skipped: it cannot change what was taken, and
	 * giving the attempt up for it would drop an object every chunk of
	 * which Kafka acknowledged, its offsets then committed past it.
	 */
	if (attempt != NULL &&
		(attempt->queued || frame.chunk_index < attempt->tracker.next_index))
	{
		shipper_log(LOG_INFO,
					"skipping chunk %" PRIu32 " of \"%.*s\" at %s [%" PRId32
					"] offset %" PRId64 ": its attempt has it already",
					frame.chunk_index, (int) frame.name_len, frame.name,
					p->topic, p->partition, msg->offset);
		/*
		 * A copy of the attempt's newest chunk times the attempt from now
		 * on: its source's delivery report carried this copy's broker
		 * time, and measured the gap to the next chunk from it
		 * (BK_CHUNK_GAP_MAX_MS), so the wait for that chunk starts here.
		 */
		if (!attempt->queued &&
			frame.chunk_index + 1 == attempt->tracker.next_index)
		{
			if (broker_time > attempt->broker_time)
				attempt->broker_time = broker_time;
			attempt->local_ms = bk_monotonic_ms();
		}
		return abandon_stalled(shipper, p, broker_time);
	}
	if (frame.chunk_index == 0)
	{
		attempt = attempt_start(shipper, p, msg, &frame, &err);
		if (attempt == NULL)
			return spool_failed(shipper, p, msg->offset, &err);
	}
	else if (attempt == NULL)
	{
		shipper_log(LOG_DEBUG,
					"discarding chunk %" PRIu32 " of \"%.*s\" at %s [%" PRId32
					"] offset %" PRId64
					": its attempt is not open (given up, or "
					"begun before the committed offset)",
					frame.chunk_index, (int) frame.name_len, frame.name,
					p->topic, p->partition, msg->offset);
		return abandon_stalled(shipper, p, broker_time);
	}

	if (!bk_tracker_accept(&attempt->tracker, &frame, &err))
	{
		snprintf(reason, sizeof(reason), "%s", err.message);
		if (!abandon_attempt(shipper, p, attempt, reason))
			return false;
		/*
		 * A chunk 0 the tracker refuses is malformed in itself: keep it.  A
		 * later chunk out of sequence is not; the attempt it belonged to is
		 * given up above, and its remaining chunks are dropped as strays.
		 */
		return frame.chunk_index == 0 ? reject_message(shipper, p, msg, reason)
									  : true;
	}
	if (!bk_repo_upload_write(attempt->upload, msg->payload, msg->len, &err) ||
		!bk_sha256_update(attempt->stored_sha, msg->payload, msg->len, &err))
		return spool_failed(shipper, p, msg->offset, &err);
	attempt->stored_bytes += msg->len;
	attempt->last_timestamp = timestamp;
	attempt->broker_time = broker_time;
	attempt->local_ms = bk_monotonic_ms();
	if (attempt->tracker.complete && !queue_attempt(shipper, p, attempt))
		return false;
	return abandon_stalled(shipper, p, broker_time);
}

/*
 * Leave the group and free what shipper_setup made: what is not durable is
 * forgotten, and read again by whoever takes its partitions.
 */
static void
shipper_close(Shipper *shipper)
{
	if (shipper->consumer != NULL)
	{
		rd_kafka_consumer_close(shipper->consumer);
		/*
		 * librdkafka 2.0's destroy waits for ever on a broker thread after
		 * an assigned partition was deleted: we are exiting, so leave the
		 * handle to the exit rather than hang (systemd would kill us only
		 * after TimeoutStopSec, and not restart us meanwhile).
		 */
		if (!shipper->vanished)
			rd_kafka_destroy(shipper->consumer);
		shipper->consumer = NULL;
	}
	while (shipper->partitions != NULL)
		partition_drop(shipper, shipper->partitions->topic,
					   shipper->partitions->partition);
	bk_producer_free(shipper->audit);
	shipper->audit = NULL;
	bk_repo_close(shipper->repo);
	shipper->repo = NULL;
	bk_metrics_stop(shipper->metrics);
	shipper->metrics = NULL;
}

/* ------------------------------------------------------------ main */

static const char *shipper_help =
	"Usage: bk-shipper [--config FILE] [--brokers LIST] [--repo LOCATION]\n"
	"                  [--metrics-listen ADDR:PORT]\n\n"
	"Consumes bk frames from Kafka and archives them in the repository, "
	"until\nSIGTERM or SIGINT. Needs no key.\n\n"
	"  --config FILE     configuration file (default $BK_CONFIG, then "
	"/etc/bk/bk.conf)\n"
	"  --brokers LIST    Kafka bootstrap servers (kafka_brokers)\n"
	"  --repo LOCATION   repository: a directory or s3://BUCKET/PREFIX\n"
	"  --metrics-listen ADDR:PORT\n"
	"                    serve Prometheus metrics at "
	"http://ADDR:PORT/metrics,\n"
	"                    e.g. 127.0.0.1:9187 or [::1]:9187; \"\": none "
	"(metrics_listen)\n"
	"  --verbose         log every message handled\n"
	"  --help            this help\n"
	"\n"
	"Exit status: 0 after a clean stop; 2 a bad option; 3 a bad\n"
	"configuration, or another shipper with the same shipper_id; 5 Kafka or\n"
	"the repository unreachable at the start; 1 an error while running (the\n"
	"log names it; offsets of what is not durable stay uncommitted).\n";

static bool
shipper_setup(Shipper *shipper, BkError *err)
{
	BkKafkaSettings settings;
	BkTopicPolicy policy;
	rd_kafka_t *admin;
	rd_kafka_conf_t *conf;
	rd_kafka_topic_partition_list_t *subscription;
	char audit_properties[8192];
	char host[200];
	char errstr[512];
	const char *prefix;
	bool ok;

	if (shipper->config->shipper_id != NULL)
		bk_strlcpy(shipper->instance_id, shipper->config->shipper_id,
				   sizeof(shipper->instance_id));
	else
	{
		if (gethostname(host, sizeof(host)) != 0)
			bk_strlcpy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		snprintf(shipper->instance_id, sizeof(shipper->instance_id),
				 "bk-shipper-%s", host);
	}
	shipper->repo = bk_cli_repo_open(shipper->config, true, err);
	if (shipper->repo == NULL ||
		!bk_repo_spool_open(shipper->repo, shipper->instance_id, err))
		return false;
	{
		BkError clean_err;
		uint64_t removed = 0;

		/* What shippers that are not running left half-written: their
		 * offsets were never committed, so others archive it again. */
		bk_error_clear(&clean_err);
		if (!bk_repo_clean_uploads(shipper->repo, &removed, &clean_err))
			shipper_log(LOG_WARNING,
						"could not remove unfinished uploads of stopped "
						"shippers: %s",
						clean_err.message);
		else if (removed > 0)
			shipper_log(LOG_INFO,
						"removed %" PRIu64 " unfinished upload%s of "
						"shippers that are not running",
						removed, removed == 1 ? "" : "s");
	}

	bk_cli_kafka_settings(shipper->config, &settings, "bk-shipper");
	settings.log_fn = kafka_log;
	bk_cli_topic_policy(shipper->config, &policy);
	prefix = policy.prefix;
	if (!bk_topic_name(prefix, BK_TOPIC_WAL, shipper->topics[0],
					   sizeof(shipper->topics[0]), err) ||
		!bk_topic_name(prefix, BK_TOPIC_SNAPSHOT, shipper->topics[1],
					   sizeof(shipper->topics[1]), err) ||
		!bk_topic_name(prefix, BK_TOPIC_BINLOG, shipper->topics[2],
					   sizeof(shipper->topics[2]), err) ||
		!bk_topic_name(prefix, BK_TOPIC_AUDIT, shipper->audit_topic,
					   sizeof(shipper->audit_topic), err))
		return false;
	shipper->topic_kinds[0] = BK_KIND_WAL;
	shipper->topic_kinds[1] = BK_KIND_SNAPSHOT;
	shipper->topic_kinds[2] = BK_KIND_BINLOG;

	/* Topics: create or check, reporting weak settings in the log. */
	admin = bk_kafka_admin_new(&settings, err);
	if (admin == NULL)
		return false;
	{
		BkTopicResult result;

		ok = bk_topics_ensure(admin, &policy, true, NULL, NULL, &result, err);
		if (ok)
			shipper_log(LOG_INFO,
						"topics under prefix \"%s\" ready (%d created, %d "
						"warnings; run \"bk init --check\" for details)",
						prefix, result.created, result.warnings);
	}
	bk_kafka_admin_free(admin);
	if (!ok)
		return false;

	/*
	 * No lingering: the shipper waits for its audit batch only when it has
	 * nothing else to do, and with one request in flight whatever queues
	 * behind it goes in the next request anyway.
	 */
	snprintf(audit_properties, sizeof(audit_properties), "linger.ms=0;%s",
			 shipper->config->kafka_properties
				 ? shipper->config->kafka_properties
				 : "");
	settings.properties = audit_properties;
	settings.client_id = "bk-shipper-audit";
	shipper->audit = bk_producer_new(&settings, err);
	if (shipper->audit == NULL)
		return false;

	settings.properties = shipper->config->kafka_properties;
	settings.client_id = "bk-shipper";
	conf = bk_kafka_conf_new(&settings, err);
	if (conf == NULL)
		return false;
#define SET(key, value)                                                        \
	if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) !=         \
		RD_KAFKA_CONF_OK)                                                      \
	{                                                                          \
		rd_kafka_conf_destroy(conf);                                           \
		return bk_error_set(err, BK_ERR_CONFIG, "Kafka property %s: %s", key,  \
							errstr);                                           \
	}
	SET("group.id", shipper->config->group_id ? shipper->config->group_id
											  : BK_GROUP_ID_DEFAULT);
	SET("group.instance.id", shipper->instance_id);
	SET("enable.auto.commit", "false");
	SET("enable.auto.offset.store", "false");
	SET("auto.offset.reset", "earliest");
	/*
	 * bk's producers are never transactional, so read_committed (the
	 * default) guards nothing of bk's; but it holds every message behind a
	 * transaction another application's producer left open on the topic
	 * until the broker times it out (transaction.timeout.ms, up to 15
	 * minutes), and with them every object archived after it, which a
	 * source waiting for the repository (bk.wait_for) waits for too.
	 * Whatever such a producer writes is rejected either way.
	 */
	SET("isolation.level", "read_uncommitted");
	/*
	 * A subscription takes partitions added to a topic only once its
	 * metadata is refreshed, every 5 minutes by default, while sources
	 * produce into them within a minute (they read the partition count at
	 * most that long before): objects waited up to 5 minutes in partitions
	 * no shipper had, with no lag to show it.
	 */
	SET("topic.metadata.refresh.interval.ms", "10000");
	SET("session.timeout.ms", "10000");
	SET("heartbeat.interval.ms", "1000");
	SET("max.poll.interval.ms", "600000");
	SET("fetch.max.bytes", "67108864");
	/* A partition's fetch brings many chunks, not one (default 1 MiB). */
	SET("fetch.message.max.bytes", "16777216");
	SET("receive.message.max.bytes", "100000000");
#undef SET
	rd_kafka_conf_set_opaque(conf, shipper);
	rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
	rd_kafka_conf_set_error_cb(conf, consumer_error_cb);
	shipper->consumer =
		rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (shipper->consumer == NULL)
	{
		rd_kafka_conf_destroy(conf);
		return bk_error_set(err, BK_ERR_KAFKA,
							"could not create the consumer: %s", errstr);
	}
	bk_kafka_route_logs(shipper->consumer);
	rd_kafka_poll_set_consumer(shipper->consumer);

	subscription = rd_kafka_topic_partition_list_new(3);
	for (int topicIdx = 0; topicIdx < 3; topicIdx++)
		rd_kafka_topic_partition_list_add(
			subscription, shipper->topics[topicIdx], RD_KAFKA_PARTITION_UA);
	{
		rd_kafka_resp_err_t kerr =
			rd_kafka_subscribe(shipper->consumer, subscription);

		rd_kafka_topic_partition_list_destroy(subscription);
		if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
			return bk_error_set(err, BK_ERR_KAFKA, "could not subscribe: %s",
								rd_kafka_err2str(kerr));
	}
	shipper_log(
		LOG_INFO,
		"started: repository %s, topics %s %s %s, group %s, instance %s",
		bk_repo_location(shipper->repo), shipper->topics[0], shipper->topics[1],
		shipper->topics[2],
		shipper->config->group_id ? shipper->config->group_id
								  : BK_GROUP_ID_DEFAULT,
		shipper->instance_id);
	if (shipper->config->abandon_after_ms <= BK_CHUNK_GAP_MAX_MS)
		shipper_log(LOG_WARNING,
					"abandon_after (%" PRId64 " ms) is not above the %" PRId64
					" ms a source may leave between two chunks of an object: "
					"an object whose source pauses longer than abandon_after "
					"mid-object can be given up after Kafka acknowledged it. "
					"Set abandon_after above %" PRId64 " s outside tests.",
					shipper->config->abandon_after_ms, BK_CHUNK_GAP_MAX_MS,
					BK_CHUNK_GAP_MAX_MS / 1000);
	return true;
}

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"brokers", required_argument, NULL, 'b'},
		{"repo", required_argument, NULL, 'r'},
		{"metrics-listen", required_argument, NULL, 'm'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	const char *config_path = NULL;
	const char *brokers = NULL;
	const char *repository = NULL;
	const char *metrics_listen = NULL;
	BkCliConfig config;
	Shipper shipper;
	BkError err;
	struct sigaction action;
	int code;
	int index = -1;
	const char *seen[BK_CLI_OPTIONS_MAX] = {0};
	int exit_code = BK_EXIT_OK;

	opterr = 0;
	while ((code = getopt_long(argc, argv, "", options, &index)) != -1)
	{
		if (code != '?' &&
			!bk_cli_option_repeat(options, index, optarg, seen, NULL, &err))
			return bk_cli_usage_error(PROGRAM, "%s", err.message);
		index = -1;
		switch (code)
		{
			case 'c':
				config_path = optarg;
				break;
			case 'b':
				brokers = optarg;
				break;
			case 'r':
				repository = optarg;
				break;
			case 'm':
				metrics_listen = optarg;
				break;
			case 'v':
				log_level = LOG_DEBUG;
				break;
			case 'h':
				fputs(shipper_help, stdout);
				return BK_EXIT_OK;
			default:
				return bk_cli_usage_error(
					PROGRAM,
					"unknown option, or option missing its "
					"argument: \"%s\"",
					argv[optind - 1]);
		}
	}
	if (optind < argc)
		return bk_cli_usage_error(PROGRAM, "unexpected argument \"%s\"",
								  argv[optind]);

	bk_error_clear(&err);
	bk_cli_config_init(&config);
	if (!bk_cli_config_load(&config, config_path, &err) ||
		(brokers &&
		 !bk_cli_config_set(&config, "kafka_brokers", brokers, &err)) ||
		(repository &&
		 !bk_cli_config_set(&config, "repository", repository, &err)) ||
		(metrics_listen &&
		 !bk_cli_config_set(&config, "metrics_listen", metrics_listen, &err)))
	{
		bk_cli_config_free(&config);
		return bk_cli_report_error(PROGRAM, &err);
	}

	memset(&shipper, 0, sizeof(shipper));
	shipper.config = &config;
	shipper.sink.log_fn = kafka_log;

	memset(&action, 0, sizeof(action));
	action.sa_handler = handle_stop_signal;
	sigemptyset(&action.sa_mask);
	sigaction(SIGTERM, &action, NULL);
	sigaction(SIGINT, &action, NULL);
	signal(SIGPIPE, SIG_IGN);

	/*
	 * First, before Kafka or the repository: a listen address that is
	 * taken (another shipper's) is a configuration error and must stop us
	 * before we join the group and take partitions.
	 */
	if (config.metrics_listen != NULL)
	{
		shipper.metrics =
			bk_metrics_start(config.metrics_listen, metrics_log, &err);
		if (shipper.metrics == NULL)
		{
			exit_code = bk_cli_report_error(PROGRAM, &err);
			goto cleanup;
		}
		shipper_log(LOG_INFO, "serving metrics at http://%s/metrics",
					config.metrics_listen);
	}

	if (!shipper_setup(&shipper, &err))
	{
		start_no_space_hint(&shipper, &err);
		exit_code = bk_cli_report_error(PROGRAM, &err);
		goto cleanup;
	}

	while (!stop_requested && !shipper.fatal && !shipper.vanished)
	{
		/* With a batch open, only take what is already at hand. */
		rd_kafka_message_t *msg = rd_kafka_consumer_poll(
			shipper.consumer,
			shipper.audit_queued > 0 || shipper.commit_queued > 0 ? 0
																  : POLL_MS);
		bool idle = msg == NULL;

		if (msg != NULL)
		{
			if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
			{
				if (!handle_message(&shipper, msg))
					shipper.fatal = true;
			}
			else if (msg->err == RD_KAFKA_RESP_ERR__FATAL)
				consumer_fatal(&shipper, shipper.consumer);
			else if (msg->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION &&
					 msg->rkt != NULL)
				partition_vanished(&shipper, rd_kafka_topic_name(msg->rkt),
								   msg->partition);
			else if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			{
				shipper_log(LOG_WARNING, "consumer: %s",
							rd_kafka_message_errstr(msg));
				bk_metrics_error(shipper.metrics, BK_METRICS_ERROR_KAFKA);
			}
			rd_kafka_message_destroy(msg);
		}
		if (!shipper.fatal && shipper.commit_queued > 0 &&
			(idle || shipper.commit_queued >= COMMIT_BATCH_MAX ||
			 bk_monotonic_ms() - shipper.commit_opened_ms >= COMMIT_BATCH_MS) &&
			!commit_flush(&shipper))
			shipper.fatal = true;
		if (shipper.audit_queued > 0 &&
			(idle || shipper.audit_queued >= AUDIT_BATCH_MAX ||
			 bk_monotonic_ms() - shipper.audit_opened_ms >= AUDIT_BATCH_MS) &&
			!audit_flush(&shipper))
			shipper.fatal = true;
		if (shipper.audit_queued == 0)
			bk_producer_poll(shipper.audit, 0);
		if (bk_monotonic_ms() - shipper.last_commit_ms >= COMMIT_INTERVAL_MS)
		{
			if (!shipper.fatal && !abandon_stalled_all(&shipper))
				shipper.fatal = true;
			commit_offsets(&shipper, NULL);
			update_lag_metrics(&shipper);
		}
	}

	if (shipper.fatal)
	{
		shipper_log(LOG_ERROR,
					"stopping: the error above must not be skipped. Offsets of "
					"objects not yet durable stay uncommitted, so nothing is "
					"lost: fix the cause and start bk-shipper again.");
		exit_code = shipper.exit_code ? shipper.exit_code : BK_EXIT_FAILURE;
	}
	else if (!commit_flush(&shipper))
	{
		shipper.fatal = true; /* commit no offset after it (commit_offsets) */
		exit_code = BK_EXIT_FAILURE;
	}
	if (!audit_flush(&shipper))
		exit_code = BK_EXIT_FAILURE;
	if (shipper.vanished)
		exit_code = BK_EXIT_FAILURE; /* to be started again */
	commit_offsets(&shipper, NULL);
	shipper_log(LOG_INFO,
				"stopped: %" PRIu64 " archived, %" PRIu64
				" duplicates, %" PRIu64 " conflicts, %" PRIu64
				" rejected, %" PRIu64 " given up, %" PRIu64
				" messages lost in Kafka",
				shipper.archived, shipper.duplicates, shipper.conflicts,
				shipper.rejected, shipper.abandoned, shipper.messages_lost);

cleanup:
	shipper_close(&shipper);
	bk_cli_config_free(&config);
	return exit_code;
}
