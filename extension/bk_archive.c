/*
 * bk_archive.c
 *		The archive module (archive_library = 'bk'): every WAL file the
 *		archiver hands over is compressed, encrypted and produced to Kafka,
 *		and reported archived only when it is durable.
 *
 * "Archived" means durable (docs/architecture.md, section 5): the callback
 * returns true only after bk_producer_send_object reported that the broker
 * acknowledged every chunk (idempotent producer, acks=all), and, with
 * bk.wait_for = 'repository', after the shipper's audit event said the file
 * is in the repository.  Anything else returns false: PostgreSQL keeps the
 * file and its .ready status and tries again, so nothing is lost.
 *
 * The archiver process sits at the bottom of PostgreSQL's exception stack:
 * an ERROR there becomes FATAL and restarts it.  Like contrib/basic_archive,
 * bk_archive_file catches errors itself (sigsetjmp), logs them and returns
 * false.  Most failures do not even get that far: the library reports them
 * as a BkError, which is logged as a WARNING naming the file, what failed
 * and what to do.
 *
 * The library objects (producers, encoding pool, key) live in the archiver
 * from the first archive call to the archiver's exit, malloc'd by libbk,
 * never palloc'd: they must survive the per-call memory context, and
 * librdkafka must not be created in the postmaster (its threads would not
 * survive fork).  They are recreated when a setting they depend on changes,
 * and dropped after an unexpected ERROR so the next call starts clean.
 *
 * Only the archiver's own thread ever calls PostgreSQL.  librdkafka's
 * threads never call back into us: libbk serves delivery reports and logs
 * on the calling thread, inside bk_producer_* calls.  Even there we must not
 * ereport (a longjmp out of a librdkafka callback would corrupt its state),
 * so log messages are copied into a small malloc'd buffer and logged after
 * the library call returned, and the frame and interrupt callbacks use
 * plain system calls only.
 *
 * Batches.  PostgreSQL hands the archiver one file per call and waits for
 * the answer, so a backlog would be shipped one acknowledgement round trip
 * (a replicated write, or a broker fsync) at a time.  So when PostgreSQL
 * asks for a segment, up to bk.archive_batch - 1 of the next ready segments
 * go out in the same batch and are acknowledged together; when PostgreSQL
 * then asks for one of them, it is already durable, and the call returns
 * true at once.  A segment sent ahead counts only if its file is still the
 * same (device, inode, size, modification and change time to the
 * nanosecond) and it went to the topic and under the source id now in
 * effect, through the producers now in use; otherwise it is simply sent
 * again, which the shipper recognises as an identical re-send.  Nothing is
 * ever reported archived before Kafka acknowledged it.  With bk.wait_for =
 * 'repository' every file waits for its own confirmation, so nothing sent
 * ahead counts.  A batch's segments go over bk.archive_producers producers
 * in turn: a broker works through one connection's requests one at a time,
 * so with more connections their transfers, appends and acknowledgements
 * overlap.  When a batch fails, the archiver goes back to one segment per
 * call for a minute, so that a segment that cannot be read or sent fails
 * alone, under its own name.
 *
 * Shutdown.  PostgreSQL 15 tells the archiver to finish with SIGUSR2 (a flag
 * private to pgarch.c), then runs one last archiving cycle in which a
 * failing file is tried three times, a second apart.  With Kafka unreachable
 * each try would wait bk.kafka_timeout, holding up the shutdown.  So we
 * chain our own SIGUSR2 handler in front of PostgreSQL's, and the interrupt
 * callback abandons a send once shutdown was requested and Kafka has
 * acknowledged nothing for a short grace period (nor, while waiting for the
 * shipper's confirmation, answered that wait), counted from the attempt's
 * start at the earliest.  PostgreSQL's retry of an attempt that failed that
 * way gets its own grace period: nothing is acknowledged between the two
 * (the failed attempt's handle is gone), so counted from the last
 * acknowledgement the retry would be abandoned before it sent anything, even
 * to a Kafka that is back (messages librdkafka timed out while the archiver
 * was descheduled, a broker connection being re-established).  After two
 * attempts failed that way with no success between them, or once the
 * shipper let bk.repository_timeout pass, the rest of the cycle fails at
 * once (a retry would only wait as long again): a broker that went away
 * delays a fast shutdown by about ten seconds, not minutes.  While Kafka keeps
 * acknowledging, the final cycle archives the ready files, in batches, as
 * PostgreSQL's own archive_command would, for up to bk.shutdown_timeout:
 * PostgreSQL waits for the archiver, and pg_ctl gives up after 60 s by
 * default (a restart then does not start the server), so a large backlog
 * after a Kafka outage must not hold a shutdown for its whole length.  A
 * segment left in pg_wal is archived only when this server next runs as a
 * primary, and a switchover that makes it a standby never archives it (a
 * promoted standby archives only the WAL it wrote itself).  A SIGTERM
 * (ShutdownRequestPending) or a dead postmaster interrupts at once.
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "postmaster/pgarch.h"
#include "storage/fd.h"
#include "storage/pmsignal.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "bk.h"
#include "bk_config.h"
#include "bk_encode_pool.h"
#include "bk_frame.h"
#include "bk_kafka.h"
#include "bk_keys.h"
#include "bk_timeline.h"
#include "bk_topics.h"
#include "bk_util.h"

/*
 * Bytes of frames each of the archiver's producers keeps queued or in
 * flight (bk.archive_producers of them).  One produce request of up to
 * BK_KAFKA_BATCH_CHUNKS chunks is in flight at a time (bk_kafka.c), so two
 * requests' worth keep the connection busy; more would only raise the
 * archiver's memory, which must stay small next to the database.
 */
#define BK_ARCHIVE_WINDOW_BYTES (8 * 1024 * 1024)

/*
 * Frame buffers of the encoding threads together: each thread may run this
 * far ahead of the frames being sent (a buffer is resident only as far as
 * frames filled it; incompressible WAL fills them).
 */
#define BK_ARCHIVE_FRAME_BYTES (16 * 1024 * 1024)

/*
 * What to do about a file that cannot be read whole.  PostgreSQL retries
 * the same file for ever and archives nothing after it, so the WARNING must
 * say how archiving goes on.  A truncated file cannot be archived as it
 * is: only an intact copy of it, or giving it up (a gap that a new
 * snapshot makes harmless for restores after it), moves on.
 * README.md, "Troubleshooting", says the same at more length.
 */
#define BK_HINT_UNREADABLE                                                     \
	"Check the disk and the file (the kernel log, the file system). "          \
	"PostgreSQL retries this file and archives nothing after it until it "     \
	"can be read whole."
#define BK_HINT_TRUNCATED                                                      \
	"The file was truncated, and PostgreSQL retries it and archives nothing "  \
	"after it until it is whole. Copy the complete file over it from a "       \
	"standby's pg_wal or another intact copy; if there is none, rename its "   \
	".ready file in pg_wal/archive_status to .done and take a new snapshot "   \
	"at once: restores cannot pass this gap."

/* How long the final archiving cycle waits for an acknowledgement. */
#define BK_SHUTDOWN_GRACE_MS 3000

/* Kafka log messages kept per library call; the rest are counted. */
#define BK_LOG_SLOTS    16
#define BK_LOG_TEXT_LEN 512

typedef struct BkLogSlot
{
	int level; /* syslog level, as librdkafka gives it */
	char text[BK_LOG_TEXT_LEN];
} BkLogSlot;

typedef struct BkLogBuffer
{
	int count;
	int dropped;
	BkLogSlot slots[BK_LOG_SLOTS];
} BkLogBuffer;

/* What one WAL file's name says about it. */
typedef struct BkWalFile
{
	const char *type; /* segment, history, backup, partial */
	TimeLineID timeline;
	bool is_segment;
	bool has_range; /* segments and partials */
	XLogRecPtr start_lsn;
	XLogRecPtr end_lsn;
} BkWalFile;

/* A file being sent, read chunk by chunk by bk_read_wal. */
typedef struct BkFileReader
{
	int fd;
	const char *path;
	uint64 size;
} BkFileReader;

/* Per-call memory, reset after every archive call. */
static MemoryContext archive_context = NULL;

/*
 * Library objects: malloc'd by libbk, kept across calls.  The producers:
 * bk.archive_producers of them (one without batches).  The first sends
 * single segments; a batch's segments go over all of them in turn.
 */
static BkProducer *producers[BK_ARCHIVE_PRODUCERS_MAX];
static int producer_count = 0;
static char *producer_brokers = NULL; /* settings they were made with */
static char *producer_properties = NULL;
static int producer_timeout_ms = 0;
static int producer_chunk_size = 0;
static char *producer_audit_topic = NULL; /* of their producer-fatal events */
static char *producer_source_id = NULL;

static BkKeyring *keyring = NULL;
static char *keyring_path = NULL;
static struct stat keyring_stat;
static char logged_key_id[BK_KEY_ID_HEX_LEN + 1] = "";

static BkEncodePool *encode_pool = NULL;

static BkLogBuffer *kafka_logs = NULL;

/* Fatal producer errors not logged yet (bk_kafka_alarm_collect). */
static BkKafkaAlarm pending_alarm;
static int pending_alarms = 0;

/* Shutdown: set by our SIGUSR2 handler, which then calls PostgreSQL's. */
static volatile sig_atomic_t stop_requested = false;
static pqsigfunc prev_sigusr2 = NULL;
static int64 stop_seen_ms = 0;

/* Segments sent ahead in a batch and acknowledged, until PostgreSQL asks. */
#define BK_READAHEAD_MAX 64

typedef struct BkReadAhead
{
	char name[BK_FILE_NAME_LEN];
	char topic[BK_TOPIC_NAME_MAX + 1]; /* where it went, under which source */
	char source_id[BK_SOURCE_ID_MAX + 1];
	dev_t dev; /* the file as it was read; a rename changes ctime */
	ino_t ino;
	off_t size;
	struct timespec mtime;
	struct timespec ctime;
	uint64 sent;
	XLogRecPtr end_lsn;
} BkReadAhead;

static BkReadAhead sent_ahead[BK_READAHEAD_MAX];
static int sent_ahead_count = 0;

/*
 * After a batch failed, archive one segment per call for a while, so that a
 * segment that cannot be read or sent fails alone, under its own name,
 * instead of holding back the one PostgreSQL asked for.
 */
#define BK_READAHEAD_BACKOFF_MS 60000
static int64 readahead_off_until_ms = 0;

/* Failed attempts since the last success, for the log. */
static int consecutive_failures = 0;

/*
 * The final cycle's attempts that Kafka's silence failed since one last
 * succeeded: at BK_SHUTDOWN_SILENT_ATTEMPTS, the rest of the cycle is
 * abandoned at once.  One is not enough: PostgreSQL's retry a second later
 * may find Kafka acknowledging again.
 */
#define BK_SHUTDOWN_SILENT_ATTEMPTS 2
static int silent_attempts_since_stop = 0;

/* The shipper let bk.repository_timeout pass in the final cycle. */
static bool confirm_timed_out_since_stop = false;

/*
 * When the current archive call started: each gets the grace period, a
 * retry too (bk_interrupted).
 */
static int64 attempt_start_ms = 0;

static bool bk_archive_configured(void);
static bool bk_archive_file(const char *file, const char *path);
static void bk_archive_shutdown(void);
static void bk_archiver_sigusr2(SIGNAL_ARGS);
static bool bk_archive_file_internal(const char *file, const char *path,
									 BkError *err);
static bool bk_archive_batch_internal(const char *file, const char *path,
									  const char *source_id, const char *topic,
									  BkError *err);
static int bk_open_wal_file(const char *path, bool is_segment, struct stat *st,
							BkError *err);
static bool bk_readahead_take(const char *file, const char *path,
							  const char *topic, const char *source_id);
static int bk_ready_segments_after(const char *file,
								   char names[][BK_FILE_NAME_LEN], int max);
static bool bk_ensure_producer(const BkKafkaSettings *settings, BkError *err);
static void bk_free_producers(void);
static bool bk_ensure_encode_pool(BkError *err);
static bool bk_archiver_ready(const char *topic, BkKafkaSettings *settings,
							  BkError *err);
static void bk_archive_warm_up(void);
static void bk_drop_library_state(void);
static bool bk_wal_file_parse(const char *file, BkWalFile *wal, BkError *err);
static void bk_wal_metadata(const BkWalFile *wal, const char *path,
							StringInfo meta);
static bool bk_read_wal(void *arg, uint64_t offset, uint8_t *buf, size_t len,
						BkError *err);
static bool bk_interrupted(void *arg);
static void bk_report_failure(const char *file, const BkError *err);
static void bk_record_success(const char *file, uint64 size, uint64 sent,
							  XLogRecPtr end_lsn);
static void bk_record_failure(const char *file, const char *message);
static bool bk_str_equal(const char *a, const char *b);

/*
 * _PG_archive_module_init
 *		Hand the archiver our callbacks; set up what every call needs.
 *
 * Runs in the archiver process only, once (PostgreSQL 15 restarts the
 * archiver when archive_library changes).
 */
void
_PG_archive_module_init(ArchiveModuleCallbacks *cb)
{
	pqsigfunc prev;

	AssertVariableIsOfType(&_PG_archive_module_init, ArchiveModuleInit);

	cb->check_configured_cb = bk_archive_configured;
	cb->archive_file_cb = bk_archive_file;
	cb->shutdown_cb = bk_archive_shutdown;

	archive_context = AllocSetContextCreate(TopMemoryContext, "bk archive",
											ALLOCSET_DEFAULT_SIZES);
	kafka_logs = calloc(1, sizeof(BkLogBuffer));
	if (kafka_logs == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));

	prev = pqsignal(SIGUSR2, bk_archiver_sigusr2);
	if (prev != bk_archiver_sigusr2 && prev != SIG_ERR)
		prev_sigusr2 = prev;

	if (bk_archive_configured())
		bk_archive_warm_up();
}

/*
 * bk_archive_warm_up
 *		Load the key, start the encoding threads and connect the producer as
 *		the archiver starts, not at its first segment.
 *
 * librdkafka 2.0 asks for the idempotent producer's id only on a timer tick
 * (500 ms), and for an unknown topic's metadata at its broker thread's next
 * wake-up (up to 1 s); done here, that time passes while there is nothing
 * to archive yet.  A failure is only logged: the first archive call tries
 * again and reports it under the file's name.
 */
static void
bk_archive_warm_up(void)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	BkKafkaSettings settings;
	char topic[BK_TOPIC_NAME_MAX + 1];
	BkError err;

	bk_error_clear(&err);
	PG_TRY();
	{
		if (!bk_topic_name(bk_topic_prefix, BK_TOPIC_WAL, topic, sizeof(topic),
						   &err) ||
			!bk_archiver_ready(topic, &settings, &err))
			ereport(LOG, (errmsg("bk: could not prepare the archiver: %s",
								 err.message),
						  errdetail("The first archive call will try again.")));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		EmitErrorReport();
		FlushErrorState();
		bk_drop_library_state();
	}
	PG_END_TRY();
	bk_kafka_log_flush();
}

/*
 * bk_archiver_ready
 *		Key, encoding pool and producer current for the settings in effect
 *		(returned in *settings, with the archiver's memory bound), and topic
 *		known to the producer.
 */
static bool
bk_archiver_ready(const char *topic, BkKafkaSettings *settings, BkError *err)
{
	bk_source_kafka_settings(settings, "bk-archiver");
	settings->window_bytes = BK_ARCHIVE_WINDOW_BYTES;
	/* Keeps librdkafka's broker thread from spinning (bk_producer_new). */
	settings->request_messages = BK_KAFKA_BATCH_CHUNKS;
	if (!bk_source_key(NULL, err) || !bk_ensure_encode_pool(err) ||
		!bk_ensure_producer(settings, err))
		return false;
	for (int prodIdx = 0; prodIdx < producer_count; prodIdx++)
		if (!bk_producer_connect(producers[prodIdx], topic, err))
			return false;
	return true;
}

/*
 * bk_archiver_sigusr2
 *		Note that shutdown was requested, then do what PostgreSQL does.
 */
static void
bk_archiver_sigusr2(SIGNAL_ARGS)
{
	int save_errno = errno;

	stop_requested = true;
	if (prev_sigusr2 != NULL && prev_sigusr2 != SIG_IGN &&
		prev_sigusr2 != SIG_DFL)
		prev_sigusr2(postgres_signal_arg);
	errno = save_errno;
}

/*
 * bk_archive_configured
 *		Archiving needs brokers and a key; without them PostgreSQL says
 *		"archive_mode enabled, yet archiving is not configured".
 */
static bool
bk_archive_configured(void)
{
	return bk_kafka_brokers != NULL && bk_kafka_brokers[0] != '\0' &&
		   bk_key_file != NULL && bk_key_file[0] != '\0';
}

/*
 * bk_archive_file
 *		Archive one file; false (logged, counted) on any failure, never an
 *		ERROR escaping into the archiver.
 */
static bool
bk_archive_file(const char *file, const char *path)
{
	sigjmp_buf local_sigjmp_buf;
	sigjmp_buf *save_exception_stack = PG_exception_stack;
	ErrorContextCallback *save_context_stack = error_context_stack;
	MemoryContext oldcontext;
	BkError err;
	bool archived;

	oldcontext = MemoryContextSwitchTo(archive_context);
	attempt_start_ms = bk_monotonic_ms();

	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		ErrorData *edata;

		/* Not PG_TRY: restore the error stacks by hand. */
		error_context_stack = save_context_stack;
		HOLD_INTERRUPTS();

		MemoryContextSwitchTo(archive_context);
		edata = CopyErrorData();
		EmitErrorReport();
		FlushErrorState();

		/* Close the file if it was open. */
		AtEOSubXact_Files(false, InvalidSubTransactionId,
						  InvalidSubTransactionId);

		/*
		 * An ERROR never comes from inside a library call (no callback of
		 * ours ereports), but start the next call from fresh objects anyway.
		 * One segment per call for a while, as after a failed batch: a batch
		 * holds many files open, and an ERROR such as "exceeded
		 * maxAllocatedDescs" would otherwise come back at every call.
		 */
		bk_drop_library_state();
		readahead_off_until_ms = bk_monotonic_ms() + BK_READAHEAD_BACKOFF_MS;
		bk_record_failure(file, edata->message);
		consecutive_failures++;

		MemoryContextSwitchTo(oldcontext);
		MemoryContextReset(archive_context);
		PG_exception_stack = save_exception_stack;
		RESUME_INTERRUPTS();

		bk_kafka_log_flush();
		return false;
	}
	PG_exception_stack = &local_sigjmp_buf;

	bk_error_clear(&err);
	archived = bk_archive_file_internal(file, path, &err);
	bk_kafka_log_flush();
	if (!archived)
	{
		consecutive_failures++;
		/*
		 * Kafka silent: counts towards BK_SHUTDOWN_SILENT_ATTEMPTS.  Not an
		 * ERROR, nor a failure Kafka answered (a retry goes one file at a
		 * time, or may find the error gone, and fails fast if not).
		 */
		if (stop_requested &&
			(err.code == BK_ERR_INTERRUPTED || err.code == BK_ERR_TIMEOUT))
			silent_attempts_since_stop++;
		bk_report_failure(file, &err);
	}
	else
	{
		silent_attempts_since_stop = 0;
		if (consecutive_failures > 0)
		{
			ereport(LOG, (errmsg("bk: archived \"%s\" after %d failed attempts",
								 file, consecutive_failures)));
			consecutive_failures = 0;
		}
	}

	PG_exception_stack = save_exception_stack;
	MemoryContextSwitchTo(oldcontext);
	MemoryContextReset(archive_context);
	return archived;
}

/*
 * bk_archive_file_internal
 *		The work: key and producer current, file opened, metadata built,
 *		every chunk sent and acknowledged (and confirmed, if asked).
 */
static bool
bk_archive_file_internal(const char *file, const char *path, BkError *err)
{
	char source_id[BK_SOURCE_ID_MAX + 1];
	char topic[BK_TOPIC_NAME_MAX + 1];
	char audit_topic[BK_TOPIC_NAME_MAX + 1];
	char attempt_hex[2 * BK_ATTEMPT_ID_LEN + 1];
	BkKafkaSettings settings;
	BkWalFile wal;
	StringInfoData meta;
	BkObjectInfo info;
	BkFileReader reader;
	BkSendStats stats;
	struct stat st;
	int fd;

	ereport(DEBUG1, (errmsg_internal("bk: archiving \"%s\"", file)));

	bk_effective_source_id(source_id, sizeof(source_id));
	if (!bk_topic_name(bk_topic_prefix, BK_TOPIC_WAL, topic, sizeof(topic),
					   err) ||
		!bk_topic_name(bk_topic_prefix, BK_TOPIC_AUDIT, audit_topic,
					   sizeof(audit_topic), err))
		return false;
	if (!bk_wal_file_parse(file, &wal, err))
		return false;

	if (!bk_archiver_ready(topic, &settings, err))
		return false;

	/* Sent ahead in an earlier batch and unchanged since: durable already. */
	if (bk_readahead_take(file, path, topic, source_id))
		return true;
	if (bk_wait_for == BK_WAIT_FOR_KAFKA && bk_archive_batch > 1 &&
		wal.is_segment && bk_monotonic_ms() >= readahead_off_until_ms)
	{
		if (bk_archive_batch_internal(file, path, source_id, topic, err))
			return true;
		readahead_off_until_ms = bk_monotonic_ms() + BK_READAHEAD_BACKOFF_MS;
		return false;
	}

	fd = bk_open_wal_file(path, wal.is_segment, &st, err);
	if (fd < 0)
		return false;

	initStringInfo(&meta);
	bk_wal_metadata(&wal, path, &meta);
	info.kind = BK_KIND_WAL;
	info.source_id = source_id;
	info.name = file;
	info.meta = meta.data;
	info.size = (uint64) st.st_size;
	reader.fd = fd;
	reader.path = path;
	reader.size = (uint64) st.st_size;
	if (!bk_encode_pool_add(encode_pool, &info, bk_read_wal, &reader, err))
		goto fail;

	/*
	 * For a confirmation, find where the audit topic ends before producing:
	 * the shipper's event for this attempt can only come after that.
	 */
	if (bk_wait_for == BK_WAIT_FOR_REPOSITORY &&
		!bk_confirm_prepare(&settings, audit_topic, bk_interrupted, err))
		goto fail;

	memset(&stats, 0, sizeof(stats));
	if (!bk_producer_send_object(producers[0], topic, source_id,
								 strlen(source_id), bk_encode_pool_next,
								 encode_pool, bk_interrupted, NULL, &stats,
								 err))
		goto fail;
	bk_kafka_log_flush();

	if (bk_wait_for == BK_WAIT_FOR_REPOSITORY)
	{
		bk_hex_encode(bk_encode_pool_attempt_id(encode_pool, 0),
					  BK_ATTEMPT_ID_LEN, attempt_hex);
		if (!bk_confirm_wait(source_id, file, attempt_hex,
							 bk_repository_timeout_ms, bk_interrupted, err))
		{
			/*
			 * Kafka answered all along (else the wait is interrupted), the
			 * shipper did not: a retry would wait for it as long again.
			 */
			if (stop_requested && err->code == BK_ERR_TIMEOUT)
				confirm_timed_out_since_stop = true;
			goto fail;
		}
	}

	CloseTransientFile(fd);
	bk_record_success(file, (uint64) st.st_size, stats.bytes,
					  wal.is_segment ? wal.end_lsn : InvalidXLogRecPtr);
	ereport(DEBUG1,
			(errmsg_internal("bk: archived \"%s\": %u chunks, " UINT64_FORMAT
							 " bytes sent to \"%s\" in " INT64_FORMAT " ms",
							 file, stats.messages, stats.bytes, topic,
							 stats.elapsed_ms)));
	return true;

fail:
	/* The pool must not read the file again once it is closed. */
	bk_encode_pool_reset(encode_pool);
	CloseTransientFile(fd);
	return false;
}

/*
 * bk_open_wal_file
 *		Open a file to archive and stat it; a segment must have
 *		wal_segment_size bytes.  The descriptor, or -1 with err set.
 */
static int
bk_open_wal_file(const char *path, bool is_segment, struct stat *st,
				 BkError *err)
{
	int fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);

	if (fd < 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s", path,
					 strerror(errno));
		bk_error_hint(err, "Check the file's permissions; PostgreSQL keeps "
						   "the file and retries.");
		return -1;
	}
	if (fstat(fd, st) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not stat \"%s\": %s", path,
					 strerror(errno));
		bk_error_hint(err, BK_HINT_UNREADABLE);
		CloseTransientFile(fd);
		return -1;
	}
	if (is_segment && st->st_size != wal_segment_size)
	{
		bk_error_set(err, BK_ERR_FORMAT,
					 "WAL segment \"%s\" has %lld bytes, not the %d of "
					 "wal_segment_size",
					 path, (long long) st->st_size, wal_segment_size);
		bk_error_hint(err, BK_HINT_TRUNCATED);
		CloseTransientFile(fd);
		return -1;
	}
	return fd;
}

/*
 * bk_readahead_take
 *		Was file sent ahead, acknowledged, to the topic and under the source
 *		id now in effect, and is it unchanged since?  Then record it
 *		archived and say so.  Either way it leaves the cache.  With
 *		bk.wait_for = 'repository' nothing sent ahead counts: each file waits
 *		for its own confirmation.
 */
static bool
bk_readahead_take(const char *file, const char *path, const char *topic,
				  const char *source_id)
{
	for (int slotIdx = 0; slotIdx < sent_ahead_count; slotIdx++)
	{
		BkReadAhead entry = sent_ahead[slotIdx];
		struct stat st;

		if (strcmp(entry.name, file) != 0)
			continue;
		sent_ahead[slotIdx] = sent_ahead[--sent_ahead_count];
		if (bk_wait_for != BK_WAIT_FOR_KAFKA ||
			strcmp(entry.topic, topic) != 0 ||
			strcmp(entry.source_id, source_id) != 0)
			return false;
		if (stat(path, &st) != 0 || st.st_dev != entry.dev ||
			st.st_ino != entry.ino || st.st_size != entry.size ||
			st.st_mtim.tv_sec != entry.mtime.tv_sec ||
			st.st_mtim.tv_nsec != entry.mtime.tv_nsec ||
			st.st_ctim.tv_sec != entry.ctime.tv_sec ||
			st.st_ctim.tv_nsec != entry.ctime.tv_nsec)
			return false;
		bk_record_success(file, (uint64) entry.size, entry.sent, entry.end_lsn);
		ereport(DEBUG1, (errmsg_internal("bk: \"%s\" was archived ahead, in an "
										 "earlier batch",
										 file)));
		return true;
	}
	return false;
}

/*
 * bk_ready_segments_after
 *		Up to max WAL segments (not history, backup or partial files) whose
 *		.ready file says they wait for archiving, other than file, oldest
 *		first: the order PostgreSQL will ask for them.
 *
 * Only the max oldest names are kept while the directory is read, in
 * order: a backlog of a million segments costs this call a million
 * comparisons, not a million names in memory and a sort.
 */
static int
bk_ready_segments_after(const char *file, char names[][BK_FILE_NAME_LEN],
						int max)
{
	DIR *dir;
	struct dirent *de;
	int count = 0;

	/* A listing that fails only means no read-ahead this time (LOG). */
	dir = AllocateDir(XLOGDIR "/archive_status");
	while ((de = ReadDirExtended(dir, XLOGDIR "/archive_status", LOG)) != NULL)
	{
		size_t len = strlen(de->d_name);
		char name[BK_FILE_NAME_LEN];
		int pos;

		if (len != XLOG_FNAME_LEN + 6 ||
			strcmp(de->d_name + XLOG_FNAME_LEN, ".ready") != 0)
			continue;
		memcpy(name, de->d_name, XLOG_FNAME_LEN);
		name[XLOG_FNAME_LEN] = '\0';
		if (!IsXLogFileName(name) || strcmp(name, file) == 0)
			continue;
		/* Where it goes among the oldest kept so far, if at all. */
		pos = count;
		while (pos > 0 && strcmp(name, names[pos - 1]) < 0)
			pos--;
		if (pos >= max)
			continue;
		if (count < max)
			count++;
		memmove(names[pos + 1], names[pos],
				(size_t) (count - 1 - pos) * BK_FILE_NAME_LEN);
		strlcpy(names[pos], name, BK_FILE_NAME_LEN);
	}
	if (dir != NULL)
		FreeDir(dir);
	return count;
}

/*
 * bk_archive_batch_internal
 *		Send file and the next ready segments as one batch; true once Kafka
 *		acknowledged all of them.  The others wait in the read-ahead cache
 *		until PostgreSQL asks for them.
 *
 * Every file of the batch is opened first and handed to the encoding pool,
 * whose threads encode the segments in parallel while this thread reads
 * their chunks and sends the frames in order.
 */
static bool
bk_archive_batch_internal(const char *file, const char *path,
						  const char *source_id, const char *topic,
						  BkError *err)
{
	char names[BK_READAHEAD_MAX][BK_FILE_NAME_LEN];
	BkReadAhead sent[BK_READAHEAD_MAX];
	BkFileReader readers[BK_READAHEAD_MAX];
	char paths[BK_READAHEAD_MAX][MAXPGPATH];
	int count;
	int in_batch = 0;
	int room = Min(bk_archive_batch, BK_READAHEAD_MAX) - 1;
	int used = 0; /* producers with a batch open */
	int64 start_ms;
	bool ok = false;

	/* The cache holds only one batch: what is left of the last one is stale. */
	sent_ahead_count = 0;
	strlcpy(names[0], file, BK_FILE_NAME_LEN);
	count = 1 + bk_ready_segments_after(file, names + 1, room);

	for (int fileIdx = 0; fileIdx < count; fileIdx++)
	{
		BkReadAhead *entry = &sent[in_batch];
		BkFileReader *reader = &readers[in_batch];
		BkWalFile wal;
		StringInfoData meta;
		BkObjectInfo info;
		struct stat st;
		int fd;

		if (fileIdx == 0)
			strlcpy(paths[in_batch], path, MAXPGPATH);
		else
			snprintf(paths[in_batch], MAXPGPATH, XLOGDIR "/%s", names[fileIdx]);
		if (!bk_wal_file_parse(names[fileIdx], &wal, err))
			goto done;

		/*
		 * Only the file PostgreSQL asked for must be there; one sent ahead
		 * may have gone since we looked (PostgreSQL will not ask for it).
		 */
		if (fileIdx == 0)
			fd = bk_open_wal_file(paths[in_batch], true, &st, err);
		else
		{
			BkError ignored;

			bk_error_clear(&ignored);
			fd = bk_open_wal_file(paths[in_batch], true, &st, &ignored);
		}
		if (fd < 0 && fileIdx == 0)
			goto done;
		if (fd < 0)
			continue;
		reader->fd = fd;
		reader->path = paths[in_batch];
		reader->size = (uint64) st.st_size;

		initStringInfo(&meta);
		bk_wal_metadata(&wal, paths[in_batch], &meta);
		memset(&info, 0, sizeof(info));
		info.kind = BK_KIND_WAL;
		info.source_id = source_id;
		info.name = names[fileIdx];
		info.meta = meta.data;
		info.size = (uint64) st.st_size;

		strlcpy(entry->name, names[fileIdx], BK_FILE_NAME_LEN);
		entry->dev = st.st_dev;
		entry->ino = st.st_ino;
		entry->size = st.st_size;
		entry->mtime = st.st_mtim;
		entry->ctime = st.st_ctim;
		strlcpy(entry->topic, topic, sizeof(entry->topic));
		strlcpy(entry->source_id, source_id, sizeof(entry->source_id));
		entry->sent = 0;
		entry->end_lsn = wal.end_lsn;
		in_batch++;
		if (!bk_encode_pool_add(encode_pool, &info, bk_read_wal, reader, err))
			goto done;
	}

	start_ms = bk_monotonic_ms();

	/*
	 * The segments go over the producers in turn, in the pool's order: while
	 * one producer's window is full, the others' requests are on their way,
	 * and the broker's work on one connection's request overlaps the
	 * others' transfers and acknowledgements.
	 */
	for (int fileIdx = 0; fileIdx < in_batch; fileIdx++)
	{
		BkProducer *segment_producer = producers[fileIdx % producer_count];

		if (fileIdx < producer_count)
		{
			if (!bk_producer_batch_begin(segment_producer, err))
				goto done;
			used++;
		}
		if (!bk_producer_batch_add(segment_producer, topic, source_id,
								   strlen(source_id), bk_encode_pool_next,
								   encode_pool, bk_interrupted, NULL,
								   &sent[fileIdx].sent, err))
			goto done;
	}
	for (int prodIdx = 0; prodIdx < used; prodIdx++)
	{
		BkSendStats stats;

		memset(&stats, 0, sizeof(stats));
		if (!bk_producer_batch_wait(producers[prodIdx], bk_interrupted, NULL,
									&stats, err))
			goto done;
	}
	bk_kafka_log_flush();
	ok = true;

done:
	/* The pool must not read a file again once it is closed. */
	if (!ok)
	{
		bk_encode_pool_reset(encode_pool);
		/* Nothing of a failed batch goes out later, nor holds memory. */
		for (int prodIdx = 0; prodIdx < used; prodIdx++)
			bk_producer_batch_abandon(producers[prodIdx]);
	}
	for (int fileIdx = 0; fileIdx < in_batch; fileIdx++)
		CloseTransientFile(readers[fileIdx].fd);
	if (!ok)
		return false;

	bk_record_success(file, (uint64) sent[0].size, sent[0].sent,
					  sent[0].end_lsn);
	for (int fileIdx = 1; fileIdx < in_batch; fileIdx++)
		sent_ahead[sent_ahead_count++] = sent[fileIdx];
	ereport(DEBUG1,
			(errmsg_internal(
				"bk: archived \"%s\" and %d more segment%s in one "
				"batch to \"%s\" over %d producer%s in " INT64_FORMAT " ms",
				file, in_batch - 1, in_batch == 2 ? "" : "s", topic, used,
				used == 1 ? "" : "s", bk_monotonic_ms() - start_ms)));
	return true;
}

/* Appends text to a list in bk.kafka_properties' syntax, escaped. */
static void
bk_append_escaped(StringInfo list, const char *text)
{
	enlargeStringInfo(list, 2 * (int) strlen(text));
	list->len += (int) bk_config_escape_property(text, list->data + list->len);
}

static bool
bk_append_property(void *arg, const char *key, const char *value, BkError *err)
{
	StringInfo list = arg;

	if (list->len > 0)
		appendStringInfoChar(list, ';');
	bk_append_escaped(list, key);
	appendStringInfoChar(list, '=');
	bk_append_escaped(list, value);
	return true;
}

/*
 * bk_source_kafka_properties
 *		bk.kafka_properties followed by the properties of
 *		bk.kafka_properties_file (later ones win), built once per change of
 *		either.  The first is rewritten property by property, so that a
 *		backslash at its end cannot escape the ";" that joins the two.
 */
static const char *
bk_source_kafka_properties(void)
{
	static char *joined = NULL;
	static char *joined_own = NULL;
	static char *joined_file = NULL;
	const char *own = bk_kafka_properties ? bk_kafka_properties : "";
	const char *file = bk_kafka_file_properties;
	MemoryContext old;
	StringInfoData list;
	BkError err;
	char *new_own;
	char *new_file;

	if (file == NULL || file[0] == '\0')
		return own;
	if (own[0] == '\0')
		return file;
	if (joined != NULL && strcmp(joined_own, own) == 0 &&
		strcmp(joined_file, file) == 0)
		return joined;

	old = MemoryContextSwitchTo(TopMemoryContext);
	initStringInfo(&list);
	/* Checked when it was set: it parses. */
	(void) bk_config_parse_properties(own, bk_append_property, &list, &err);
	appendStringInfo(&list, ";%s", file);
	new_own = pstrdup(own);
	new_file = pstrdup(file);
	MemoryContextSwitchTo(old);
	if (joined != NULL)
	{
		explicit_bzero(joined, strlen(joined));
		pfree(joined);
		explicit_bzero(joined_own, strlen(joined_own));
		pfree(joined_own);
		explicit_bzero(joined_file, strlen(joined_file));
		pfree(joined_file);
	}
	joined = list.data;
	joined_own = new_own;
	joined_file = new_file;
	return joined;
}

/*
 * bk_source_kafka_settings
 *		The Kafka settings of this server's producers, from the bk.* settings
 *		(the archiver's and the snapshot worker's).
 */
void
bk_source_kafka_settings(BkKafkaSettings *settings, const char *client_id)
{
	static char alarm_source_id[BK_SOURCE_ID_MAX + 1];
	static char alarm_audit_topic[BK_TOPIC_NAME_MAX + 1];
	BkError err;

	memset(settings, 0, sizeof(*settings));
	settings->brokers = bk_kafka_brokers;
	settings->properties = bk_source_kafka_properties();
	settings->client_id = client_id;
	settings->timeout_ms = bk_kafka_timeout_ms;
	settings->chunk_size = (uint32) bk_chunk_size;
	settings->log_fn = bk_kafka_log_collect;
	settings->log_arg = NULL;
	settings->alarm_fn = bk_kafka_alarm_collect;
	settings->alarm_arg = NULL;
	/* Copied by bk_producer_new: the producer sends the alarm's event. */
	bk_effective_source_id(alarm_source_id, sizeof(alarm_source_id));
	bk_error_clear(&err);
	if (bk_topic_name(bk_topic_prefix, BK_TOPIC_AUDIT, alarm_audit_topic,
					  sizeof(alarm_audit_topic), &err))
	{
		settings->audit_topic = alarm_audit_topic;
		settings->source_id = alarm_source_id;
	}
}

/* Free the producers: none until bk_ensure_producer makes them again. */
static void
bk_free_producers(void)
{
	for (int prodIdx = 0; prodIdx < producer_count; prodIdx++)
	{
		bk_producer_free(producers[prodIdx]);
		producers[prodIdx] = NULL;
	}
	producer_count = 0;
}

/*
 * bk_ensure_producer
 *		A producer made with the current settings (made now if the settings
 *		changed since the last one; bk_producer_new contacts no broker).
 */
static bool
bk_ensure_producer(const BkKafkaSettings *settings, BkError *err)
{
	/* Without batches, only the first would ever send. */
	int wanted = bk_wait_for == BK_WAIT_FOR_KAFKA && bk_archive_batch > 1
					 ? bk_archive_producers
					 : 1;

	if (producer_count == wanted &&
		bk_str_equal(producer_brokers, settings->brokers) &&
		bk_str_equal(producer_properties, settings->properties) &&
		producer_timeout_ms == settings->timeout_ms &&
		producer_chunk_size == (int) settings->chunk_size &&
		bk_str_equal(producer_audit_topic, settings->audit_topic) &&
		bk_str_equal(producer_source_id, settings->source_id))
		return true;

	if (producer_count > 0)
	{
		bk_free_producers();
		bk_kafka_log_flush();
	}
	/* Sent with other settings: not what the operator asks for now. */
	sent_ahead_count = 0;
	for (int prodIdx = 0; prodIdx < wanted; prodIdx++)
	{
		producers[prodIdx] = bk_producer_new(settings, err);
		if (producers[prodIdx] == NULL)
		{
			bk_free_producers();
			return false;
		}
		producer_count++;
	}

	if (producer_brokers)
		pfree(producer_brokers);
	if (producer_properties)
		pfree(producer_properties);
	producer_brokers = MemoryContextStrdup(TopMemoryContext, settings->brokers);
	producer_properties = MemoryContextStrdup(
		TopMemoryContext, settings->properties ? settings->properties : "");
	producer_timeout_ms = settings->timeout_ms;
	producer_chunk_size = (int) settings->chunk_size;
	if (producer_audit_topic)
		pfree(producer_audit_topic);
	if (producer_source_id)
		pfree(producer_source_id);
	producer_audit_topic = MemoryContextStrdup(
		TopMemoryContext, settings->audit_topic ? settings->audit_topic : "");
	producer_source_id = MemoryContextStrdup(
		TopMemoryContext, settings->source_id ? settings->source_id : "");
	return true;
}

/*
 * bk_source_key
 *		The public key of bk.key_file, reloaded whenever the setting or the
 *		file (inode, size, modification time) changed; *key (if not NULL)
 *		points to it, valid until the next call.
 *
 * A file that cannot be loaded drops the key we had: the operator changed
 * it, so sealing to the old key would no longer be what they asked for.
 */
bool
bk_source_key(const BkKey **key, BkError *err)
{
	struct stat st;
	bool have_stat;
	BkKeyring *ring;
	char id_hex[BK_KEY_ID_HEX_LEN + 1];

	have_stat = stat(bk_key_file, &st) == 0;
	if (keyring != NULL && have_stat &&
		bk_str_equal(keyring_path, bk_key_file) &&
		st.st_dev == keyring_stat.st_dev && st.st_ino == keyring_stat.st_ino &&
		st.st_size == keyring_stat.st_size &&
		st.st_mtim.tv_sec == keyring_stat.st_mtim.tv_sec &&
		st.st_mtim.tv_nsec == keyring_stat.st_mtim.tv_nsec)
	{
		if (key != NULL)
			*key = &keyring->keys[0];
		return true;
	}

	/*
	 * Segments sent ahead stay valid: they are durable, sealed to a key the
	 * operator had configured.  Sending them again under the new key would
	 * make the shipper see different content under one name (a conflict).
	 */
	bk_keyring_free(keyring);
	keyring = NULL;

	/* Stat first: if the file changes after this, the next call reloads. */
	ring = bk_keyring_load(bk_key_file, BK_KEYS_FOR_SOURCE, err);
	if (ring == NULL)
	{
		if (err->hint[0] == '\0')
			bk_error_hint(err,
						  "Set bk.key_file to the public key file (FILE.pub) "
						  "written by \"bk keygen --out FILE\", readable by "
						  "the server's operating system user, and reload.");
		return false;
	}
	keyring = ring;
	if (keyring_path)
		pfree(keyring_path);
	keyring_path = MemoryContextStrdup(TopMemoryContext, bk_key_file);
	if (have_stat)
		keyring_stat = st;
	else
		memset(&keyring_stat, 0, sizeof(keyring_stat));

	bk_key_id_hex(keyring->keys[0].id, id_hex);
	if (strcmp(id_hex, logged_key_id) != 0)
	{
		ereport(LOG, (errmsg("bk: sealing to public key %s from \"%s\"", id_hex,
							 bk_key_file)));
		strlcpy(logged_key_id, id_hex, sizeof(logged_key_id));
	}
	if (key != NULL)
		*key = &keyring->keys[0];
	return true;
}

/*
 * bk_ensure_encode_pool
 *		An encoding pool for the current key, chunk size and bk.archive_jobs,
 *		with frame buffers for up to one segment per thread, so a thread can
 *		encode the next segment while this one sends the current one.
 */
static bool
bk_ensure_encode_pool(BkError *err)
{
	const BkKey *key = &keyring->keys[0];
	int frames;

	if (encode_pool != NULL &&
		bk_encode_pool_chunk_size(encode_pool) == (uint32) bk_chunk_size &&
		bk_encode_pool_jobs(encode_pool) == bk_archive_jobs &&
		memcmp(bk_encode_pool_key_id(encode_pool), key->id, BK_KEY_ID_LEN) == 0)
		return true;
	bk_encode_pool_free(encode_pool);
	/* Up to one segment per thread, within the archiver's memory bound. */
	frames = (wal_segment_size + bk_chunk_size - 1) / bk_chunk_size;
	frames =
		Min(frames, BK_ARCHIVE_FRAME_BYTES / bk_archive_jobs / bk_chunk_size);
	encode_pool = bk_encode_pool_new(key, (uint32) bk_chunk_size,
									 bk_archive_jobs, Max(frames, 2), err);
	return encode_pool != NULL;
}

/*
 * bk_drop_library_state
 *		Free the producer, the confirmation consumer and the encoding pool; the
 *		next call makes new ones.
 */
static void
bk_drop_library_state(void)
{
	bk_confirm_reset();
	bk_free_producers();
	bk_encode_pool_free(encode_pool);
	encode_pool = NULL;
}

/*
 * bk_archive_shutdown
 *		The archiver exits: purge and destroy without waiting for Kafka.
 */
static void
bk_archive_shutdown(void)
{
	bk_drop_library_state();
	bk_keyring_free(keyring);
	keyring = NULL;
	bk_kafka_log_flush();
}

/*
 * bk_wal_file_parse
 *		Type, timeline and LSN range from the name the archiver gave us.
 */
static bool
bk_wal_file_parse(const char *file, BkWalFile *wal, BkError *err)
{
	XLogSegNo segno;

	memset(wal, 0, sizeof(*wal));
	if (IsXLogFileName(file) || IsPartialXLogFileName(file))
	{
		wal->is_segment = IsXLogFileName(file);
		wal->type = wal->is_segment ? "segment" : "partial";
		XLogFromFileName(file, &wal->timeline, &segno, wal_segment_size);
		XLogSegNoOffsetToRecPtr(segno, 0, wal_segment_size, wal->start_lsn);
		wal->end_lsn = wal->start_lsn + wal_segment_size;
		wal->has_range = true;
	}
	else if (IsTLHistoryFileName(file))
	{
		wal->type = "history";
		if (sscanf(file, "%08X", &wal->timeline) != 1)
			return bk_error_set(err, BK_ERR_USAGE,
								"no timeline in history file name \"%s\"",
								file);
	}
	else if (IsBackupHistoryFileName(file))
	{
		wal->type = "backup";
		XLogFromFileName(file, &wal->timeline, &segno, wal_segment_size);
	}
	else
	{
		bk_error_set(err, BK_ERR_USAGE,
					 "\"%s\" is not the name of a WAL segment, .history, "
					 ".backup or .partial file",
					 file);
		return bk_error_hint(err, "Only PostgreSQL's archiver should create "
								  ".ready files in pg_wal/archive_status.");
	}
	return true;
}

/*
 * bk_history_branch_points
 *		The branch points of the timeline history file at path, in the
 *		metadata's format, for metadata whose other keys take other_len
 *		bytes; "" (and a WARNING) if it cannot be read or parsed: the file is
 *		archived anyway, and readers with the key parse it themselves.  The
 *		same when they do not fit in the metadata (around timeline 255): a
 *		history file that cannot be archived would stop all archiving, as
 *		PostgreSQL archives history files first.
 */
static char *
bk_history_branch_points(const BkWalFile *wal, const char *path,
						 size_t other_len)
{
	BkTimelineBranch *branches = NULL;
	int count = 0;
	char *text = NULL;
	size_t len;
	char *out;
	BkError err;
	bool parsed;

	bk_error_clear(&err);
	parsed = bk_read_file(path, 1024 * 1024, &text, &len, &err) &&
			 bk_timeline_history_parse(text, len, wal->timeline, &branches,
									   &count, &err);
	free(text);
	if (!parsed)
	{
		ereport(
			WARNING,
			(errmsg("bk: \"%s\" is archived without its branch points", path),
			 errdetail("%s", bk_sentence(err.message)),
			 errhint("bk list and bk verify follow this timeline's "
					 "branch points only when they have the key.")));
		return pstrdup("");
	}
	out = palloc(BK_FRAME_META_MAX + 1);
	bk_branch_points_meta(branches, count, other_len, out,
						  BK_FRAME_META_MAX + 1);
	free(branches);
	if (out[0] == '\0' && count > 0)
		ereport(
			LOG,
			(errmsg("bk: \"%s\" is archived without its branch points", path),
			 errdetail("Its %d branch points do not fit in the object's "
					   "metadata (at most %d bytes).",
					   count, BK_FRAME_META_MAX),
			 errhint("bk list and bk verify follow this timeline's "
					 "branch points only when they have the key.")));
	return out;
}

/*
 * bk_wal_metadata
 *		The metadata of a WAL object, as docs/frame-format.md section 8
 *		specifies it: what an auditor may know about the file.  path is the
 *		file (a history file's branch points are read from it).
 */
static void
bk_wal_metadata(const BkWalFile *wal, const char *path, StringInfo meta)
{
	char created[64];
	const char *version = GetConfigOption("server_version_num", true, false);
	StringInfoData tail;

	/* Built first: the branch points get only the room the rest leaves. */
	initStringInfo(&tail);
	bk_format_time_utc(bk_wall_ms(), created, sizeof(created));
	appendStringInfo(
		&tail, "system-identifier=" UINT64_FORMAT "\npg-version=%s\ncreated=%s",
		GetSystemIdentifier(), version ? version : "0", created);
	appendStringInfo(meta, "type=%s\ntimeline=%u\nsegment-size=%d\n", wal->type,
					 wal->timeline, wal_segment_size);
	if (wal->has_range)
		appendStringInfo(meta, "lsn-start=%X/%X\nlsn-end=%X/%X\n",
						 LSN_FORMAT_ARGS(wal->start_lsn),
						 LSN_FORMAT_ARGS(wal->end_lsn));
	if (strcmp(wal->type, "history") == 0)
		appendStringInfo(meta, "branch-points=%s\n",
						 bk_history_branch_points(
							 wal, path, (size_t) (meta->len + tail.len)));
	appendBinaryStringInfo(meta, tail.data, tail.len);
	pfree(tail.data);
}

/*
 * bk_read_wal
 *		Read len bytes of a file being sent at offset (a BkEncodeReadFn).
 *
 * Called from inside the Kafka send, on the archiver's own thread: no
 * ereport here, only plain system calls.
 */
static bool
bk_read_wal(void *arg, uint64_t offset, uint8_t *buf, size_t len, BkError *err)
{
	BkFileReader *reader = arg;
	size_t done = 0;

	while (done < len)
	{
		ssize_t got =
			pread(reader->fd, buf + done, len - done, (off_t) (offset + done));

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
		{
			bk_error_set(err, BK_ERR_IO,
						 "could not read \"%s\" at offset %llu: %s",
						 reader->path, (unsigned long long) (offset + done),
						 strerror(errno));
			return bk_error_hint(err, BK_HINT_UNREADABLE);
		}
		if (got == 0)
		{
			bk_error_set(
				err, BK_ERR_IO,
				"\"%s\" ended at byte %llu of %llu while being archived",
				reader->path, (unsigned long long) (offset + done),
				(unsigned long long) reader->size);
			return bk_error_hint(err, BK_HINT_TRUNCATED);
		}
		done += (size_t) got;
	}
	return true;
}

/*
 * bk_interrupted
 *		Should the current send be abandoned (BkInterruptFn)?  Yes at once on
 *		SIGTERM or postmaster death; once the archiver was told to finish
 *		(SIGUSR2), at once if bk.shutdown_timeout has passed since the stop
 *		was seen, if Kafka's silence failed BK_SHUTDOWN_SILENT_ATTEMPTS
 *		attempts of the final cycle with no success between them or the
 *		shipper let bk.repository_timeout pass, else when Kafka
 *		acknowledged nothing for BK_SHUTDOWN_GRACE_MS since the stop was
 *		seen or this attempt started, nor answered a wait for the shipper's
 *		confirmation (bk_confirm.c): that wait gets no acknowledgement,
 *		however long the shipper takes.
 */
static bool
bk_interrupted(void *arg)
{
	if (ShutdownRequestPending || !PostmasterIsAlive())
		return true;
	if (stop_requested)
	{
		int64 now = bk_monotonic_ms();
		int64 heard;

		if (stop_seen_ms == 0)
			stop_seen_ms = now;
		if (now - stop_seen_ms >= bk_shutdown_timeout_ms)
			return true;
		if (silent_attempts_since_stop >= BK_SHUTDOWN_SILENT_ATTEMPTS ||
			confirm_timed_out_since_stop)
			return true;
		heard = Max(Max(stop_seen_ms, attempt_start_ms),
					Max(bk_kafka_last_ack_ms(), bk_confirm_last_progress_ms()));
		return now - heard >= BK_SHUTDOWN_GRACE_MS;
	}
	return false;
}

/*
 * bk_report_failure
 *		Log why a file was not archived, and count it.
 */
static void
bk_report_failure(const char *file, const BkError *err)
{
	const char *hint = err->hint[0] != '\0' ? err->hint : NULL;

	if (hint == NULL && err->code == BK_ERR_INTERRUPTED)
		hint = "The server is shutting down. The file stays in pg_wal and is "
			   "archived when this server next runs as a primary: start it "
			   "as one before making it a standby, or the archive has a gap.";
	ereport(WARNING, (errcode(bk_sqlstate(err->code)),
					  errmsg("bk: could not archive \"%s\"", file),
					  errdetail("%s", bk_sentence(err->message[0] != '\0'
													  ? err->message
													  : "unknown failure")),
					  hint ? errhint("%s", hint) : 0));
	bk_record_failure(file, err->message);
}

/*
 * bk_record_success
 *		Update the shared status after a file was archived.
 */
static void
bk_record_success(const char *file, uint64 size, uint64 sent,
				  XLogRecPtr end_lsn)
{
	TimestampTz now = GetCurrentTimestamp();

	if (bk_shared == NULL)
		return;
	SpinLockAcquire(&bk_shared->mutex);
	bk_shared->archived_count++;
	bk_shared->archived_bytes += size;
	bk_shared->sent_bytes += sent;
	strlcpy(bk_shared->last_archived_file, file,
			sizeof(bk_shared->last_archived_file));
	bk_shared->last_archived_time = now;
	if (!XLogRecPtrIsInvalid(end_lsn) &&
		end_lsn > bk_shared->last_archived_end_lsn)
		bk_shared->last_archived_end_lsn = end_lsn;
	SpinLockRelease(&bk_shared->mutex);
}

/*
 * bk_record_failure
 *		Update the shared status after a failed attempt.
 */
static void
bk_record_failure(const char *file, const char *message)
{
	TimestampTz now = GetCurrentTimestamp();

	if (bk_shared == NULL)
		return;
	SpinLockAcquire(&bk_shared->mutex);
	bk_shared->failed_count++;
	strlcpy(bk_shared->last_failed_file, file,
			sizeof(bk_shared->last_failed_file));
	bk_shared->last_failed_time = now;
	strlcpy(bk_shared->last_failure, message ? message : "",
			sizeof(bk_shared->last_failure));
	SpinLockRelease(&bk_shared->mutex);
}

/*
 * bk_kafka_log_collect
 *		Keep a librdkafka log message for later (BkKafkaLogFn).
 *
 * Called on our thread, but from inside a librdkafka poll: no ereport.
 */
void
bk_kafka_log_collect(void *arg, int level, const char *facility,
					 const char *message)
{
	BkLogSlot *slot;

	if (kafka_logs == NULL)
		return;
	if (kafka_logs->count >= BK_LOG_SLOTS)
	{
		kafka_logs->dropped++;
		return;
	}
	slot = &kafka_logs->slots[kafka_logs->count++];
	slot->level = level;
	snprintf(slot->text, sizeof(slot->text), "%s: %s", facility ? facility : "",
			 message ? message : "");
}

/*
 * bk_kafka_alarm_collect
 *		A producer of this process failed fatally (BkKafkaAlarm): Kafka may
 *		have lost WAL PostgreSQL was told is archived.  Called inside a
 *		libbk call, so no ereport here: the shared status is set now (a
 *		spinlock and a copy), the WARNING waits for bk_kafka_log_flush.
 */
void
bk_kafka_alarm_collect(void *arg, const BkKafkaAlarm *alarm)
{
	if (pending_alarms++ == 0)
		pending_alarm = *alarm;
	if (bk_shared == NULL)
		return;
	SpinLockAcquire(&bk_shared->mutex);
	strlcpy(bk_shared->kafka_alarm, alarm->message,
			sizeof(bk_shared->kafka_alarm));
	/* To the millisecond: a snapshot begun just before must not clear it. */
	bk_shared->kafka_alarm_time =
		time_t_to_timestamptz((pg_time_t) (alarm->wall_ms / 1000)) +
		(TimestampTz) (alarm->wall_ms % 1000) * 1000;
	SpinLockRelease(&bk_shared->mutex);
}

/*
 * bk_kafka_alarm_covered
 *		A snapshot taken wholly after an alarm holds what a gap before it
 *		could have lost; one that started before may rely on it.
 */
void
bk_kafka_alarm_covered(TimestampTz start_time)
{
	if (bk_shared == NULL)
		return;
	SpinLockAcquire(&bk_shared->mutex);
	if (bk_shared->kafka_alarm_time != 0 &&
		bk_shared->kafka_alarm_time < start_time)
	{
		bk_shared->kafka_alarm[0] = '\0';
		bk_shared->kafka_alarm_time = 0;
	}
	SpinLockRelease(&bk_shared->mutex);
}

/*
 * bk_kafka_log_flush
 *		Log what librdkafka said during the last library calls: errors and
 *		warnings as LOG, the rest as DEBUG1; a fatal producer error as a
 *		WARNING with what to do.
 */
void
bk_kafka_log_flush(void)
{
	int count;
	int dropped;

	if (pending_alarms > 0)
	{
		BkKafkaAlarm alarm = pending_alarm;
		int more = pending_alarms - 1;

		pending_alarms = 0;
		ereport(WARNING, (errmsg("bk: %s", alarm.message),
						  more > 0 ? errdetail("%d more fatal producer errors "
											   "followed.",
											   more)
								   : 0,
						  errhint("%s", alarm.hint)));
	}
	if (kafka_logs == NULL ||
		(kafka_logs->count == 0 && kafka_logs->dropped == 0))
		return;
	count = kafka_logs->count;
	dropped = kafka_logs->dropped;
	kafka_logs->count = 0;
	kafka_logs->dropped = 0;
	for (int slotIdx = 0; slotIdx < count; slotIdx++)
	{
		const BkLogSlot *slot = &kafka_logs->slots[slotIdx];

		/* librdkafka uses syslog levels: 4 is warning, 3 error. */
		ereport(slot->level <= 4 ? LOG : DEBUG1,
				(errmsg_internal("bk: kafka: %s", slot->text)));
	}
	if (dropped > 0)
		ereport(LOG,
				(errmsg_internal("bk: kafka: %d more log messages not shown",
								 dropped)));
}

/*
 * bk_str_equal
 *		strcmp for settings, NULL being the empty string.
 */
static bool
bk_str_equal(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}
