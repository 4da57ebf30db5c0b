/*
 * bk.c
 *		Entry point of the bk extension: settings, shared memory and the
 *		background worker's registration.
 *
 * bk is loaded twice over, in two roles:
 *
 *	 shared_preload_libraries = 'bk'	shared memory for the archiving status
 *										and the RPO samples, and the
 *										background worker (bk_worker.c)
 *	 archive_library = 'bk'				the archive module (bk_archive.c)
 *
 * The archive module works on its own too (archive_library only); then
 * there is no status and no worker, and bk_status() says how to get them.
 *
 * Every setting but one is PGC_SIGHUP: they describe where the cluster's
 * WAL goes, which is the server's business, not a session's, and the
 * archiver only ever sees the configuration files.  bk.snapshot_jobs and
 * bk.snapshot_range_size are PGC_USERSET: how many cores one snapshot may
 * use, and in how large pieces it shares them, is the caller's choice
 * (bounded by max_worker_processes), and only roles granted bk_snapshot()
 * can start one.  The check hooks validate with the
 * same libbk functions the archiver uses later, so that a value the
 * archiver would refuse is refused at ALTER SYSTEM or reload time, with the
 * library's own explanation, instead of failing every archive attempt.
 */
#include "postgres.h"

#include <ctype.h>

#include "access/parallel.h"
#include "access/xlog.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "bk.h"
#include "bk_config.h"
#include "bk_encode_pool.h"
#include "bk_frame.h"
#include "bk_kafka.h"
#include "bk_secret_file.h"
#include "bk_topics.h"

PG_MODULE_MAGIC;

BkSharedState *bk_shared = NULL;

char *bk_kafka_brokers = NULL;
char *bk_kafka_properties = NULL;
char *bk_kafka_properties_file = NULL;
const char *bk_kafka_file_properties = NULL;
char *bk_topic_prefix = NULL;
char *bk_source_id_setting = NULL;
char *bk_key_file = NULL;
int bk_chunk_size = BK_CHUNK_SIZE_DEFAULT;
int bk_kafka_timeout_ms = 10000;
int bk_target_rpo_s = 0;
int bk_wait_for = BK_WAIT_FOR_KAFKA;
int bk_repository_timeout_ms = 60000;
int bk_shutdown_timeout_ms = 30000;
int bk_archive_batch = 8;
int bk_archive_producers = 2;
int bk_archive_jobs = 2;
int bk_snapshot_jobs = 2;
int bk_snapshot_range_blocks = (128 * 1024 * 1024) / BLCKSZ;

static const struct config_enum_entry bk_wait_for_options[] = {
	{"kafka", BK_WAIT_FOR_KAFKA, false},
	{"repository", BK_WAIT_FOR_REPOSITORY, false},
	{NULL, 0, false}};

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static bool bk_check_one_property(void *arg, const char *key, const char *value,
								  BkError *err);
static bool bk_check_kafka_properties(char **newval, void **extra,
									  GucSource source);
static bool bk_check_kafka_properties_file(char **newval, void **extra,
										   GucSource source);
static void bk_assign_kafka_properties_file(const char *newval, void *extra);
static bool bk_check_topic_prefix(char **newval, void **extra,
								  GucSource source);
static bool bk_check_source_id(char **newval, void **extra, GucSource source);
static bool bk_check_snapshot_range_size(int *newval, void **extra,
										 GucSource source);
static void bk_shmem_request(void);
static void bk_shmem_startup(void);

/*
 * _PG_init
 *		Define the settings; when preloaded, also ask for shared memory and
 *		register the background worker.
 */
void
_PG_init(void)
{
	DefineCustomStringVariable(
		"bk.kafka_brokers", "Kafka bootstrap servers bk archives WAL to.",
		"A comma-separated list of host:port. Archiving is off while empty.",
		&bk_kafka_brokers, "", PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomStringVariable(
		"bk.kafka_properties",
		"librdkafka properties for bk, as key=value pairs separated by ;.",
		"For TLS, SASL and tuning. A value that would weaken "
		"enable.idempotence=true or acks=all, or sets partitioner=random or "
		"log.queue=false, is refused.",
		&bk_kafka_properties, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
		bk_check_kafka_properties, NULL, NULL);

	/*
	 * PostgreSQL logs the new value of every parameter a reload changes, so
	 * a sasl.password in bk.kafka_properties ends up in the server log; in
	 * this file it does not.
	 */
	DefineCustomStringVariable(
		"bk.kafka_properties_file",
		"File of further librdkafka properties for bk, such as passwords.",
		"One key=value per line, taken literally; lines starting with # are "
		"comments. Applied after bk.kafka_properties. Read at start and "
		"reload; it must be owned by the server's user with mode 0600 or "
		"less, or by root with 0640 or less.",
		&bk_kafka_properties_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
		bk_check_kafka_properties_file, bk_assign_kafka_properties_file, NULL);

	DefineCustomStringVariable(
		"bk.topic_prefix", "Prefix of the Kafka topics bk uses.",
		"WAL goes to <prefix>.wal, confirmations come from <prefix>.audit.",
		&bk_topic_prefix, BK_TOPIC_PREFIX_DEFAULT, PGC_SIGHUP, 0,
		bk_check_topic_prefix, NULL, NULL);

	DefineCustomStringVariable(
		"bk.source_id", "Name of this cluster in the backups.",
		"Empty means the cluster's system identifier.", &bk_source_id_setting,
		"", PGC_SIGHUP, 0, bk_check_source_id, NULL, NULL);

	DefineCustomStringVariable(
		"bk.key_file", "Public key file WAL is encrypted to.",
		"The FILE.pub written by bk keygen. A private key is refused: "
		"database hosts hold only the public key.",
		&bk_key_file, "", PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable(
		"bk.chunk_size", "Plaintext bytes per Kafka message.",
		"Each chunk is compressed, encrypted and sent as one frame.",
		&bk_chunk_size, BK_CHUNK_SIZE_DEFAULT, BK_CHUNK_SIZE_MIN,
		BK_CHUNK_SIZE_MAX, PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);

	DefineCustomIntVariable(
		"bk.kafka_timeout",
		"How long one archive attempt waits for Kafka's acknowledgement.",
		"After that the attempt fails and PostgreSQL retries the file later.",
		&bk_kafka_timeout_ms, 10000, 1000, 600000, PGC_SIGHUP, GUC_UNIT_MS,
		NULL, NULL, NULL);

	DefineCustomIntVariable(
		"bk.target_rpo",
		"Target recovery point objective; forces WAL switches to meet it.",
		"0 turns it off. Use it instead of archive_timeout.", &bk_target_rpo_s,
		0, 0, 86400, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);

	DefineCustomEnumVariable(
		"bk.wait_for", "When a WAL file counts as archived.",
		"kafka: every chunk acknowledged by the brokers; repository: the "
		"shipper also confirmed it stored the file.",
		&bk_wait_for, BK_WAIT_FOR_KAFKA, bk_wait_for_options, PGC_SIGHUP, 0,
		NULL, NULL, NULL);

	DefineCustomIntVariable(
		"bk.repository_timeout",
		"How long bk.wait_for = repository waits for the shipper.", NULL,
		&bk_repository_timeout_ms, 60000, 1000, 3600000, PGC_SIGHUP,
		GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable(
		"bk.shutdown_timeout",
		"How long the archiver's last cycle at a shutdown may keep archiving.",
		"PostgreSQL waits for that cycle before it finishes shutting down, "
		"and pg_ctl gives up waiting after 60 s by default. Files left are "
		"archived when the server next runs as a primary. 0 archives "
		"nothing more once the shutdown is asked.",
		&bk_shutdown_timeout_ms, 30000, 0, 86400000, PGC_SIGHUP, GUC_UNIT_MS,
		NULL, NULL, NULL);

	DefineCustomIntVariable(
		"bk.archive_batch",
		"How many ready WAL segments one archive call may send together.",
		"The segments after the one PostgreSQL asked for are sent in the same "
		"batch, acknowledged together, and reported archived when PostgreSQL "
		"asks for them. 1 sends one segment per call. Only with "
		"bk.wait_for = kafka.",
		&bk_archive_batch, 8, 1, 64, PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable(
		"bk.archive_producers",
		"How many Kafka producers (broker connections) carry a batch's "
		"segments.",
		"A broker works through one connection's produce requests one at a "
		"time: with more producers, the segments of a batch go over them in "
		"turn and their requests overlap. Each producer keeps up to 8 MiB of "
		"frames in flight. Used only with bk.archive_batch above 1 and "
		"bk.wait_for = kafka.",
		&bk_archive_producers, 2, 1, BK_ARCHIVE_PRODUCERS_MAX, PGC_SIGHUP, 0,
		NULL, NULL, NULL);

	DefineCustomIntVariable(
		"bk.archive_jobs",
		"How many threads of the archiver compress, encrypt and hash WAL.",
		"The segments of a batch are encoded in parallel, one per thread, "
		"and sent in order. The threads do codec work only; they never call "
		"PostgreSQL.",
		&bk_archive_jobs, 2, 1, BK_ENCODE_JOBS_MAX, PGC_SIGHUP, 0, NULL, NULL,
		NULL);

	/*
	 * Two by default: a broker handles one produce request per connection
	 * at a time (receive, append, fsync), and each copying process has a
	 * connection of its own, so a second one keeps the broker busy while
	 * the first waits; it was faster than one even with the broker and the
	 * shipper on the same two cores (BENCHMARKS.md).
	 */
	DefineCustomIntVariable(
		"bk.snapshot_jobs",
		"How many processes copy the files of one snapshot.",
		"bk_snapshot() reads, checks, compresses and encrypts on this many "
		"cores: its background worker and bk.snapshot_jobs - 1 helper "
		"workers, each with its own Kafka producer. Helpers count against "
		"max_worker_processes.",
		&bk_snapshot_jobs, 2, 1, BK_SNAPSHOT_MAX_JOBS, PGC_USERSET, 0, NULL,
		NULL, NULL);

	DefineCustomIntVariable(
		"bk.snapshot_range_size",
		"Files larger than this are sent by a snapshot in ranges of this size.",
		"The ranges of one file are read, checked and encoded by several "
		"copying processes at once (bk.snapshot_jobs), so one large relation "
		"file does not serialise a snapshot. 0 sends every file as one "
		"object; otherwise at least 1MB.",
		&bk_snapshot_range_blocks, (128 * 1024 * 1024) / BLCKSZ, 0, INT_MAX / 2,
		PGC_USERSET, GUC_UNIT_BLOCKS, bk_check_snapshot_range_size, NULL, NULL);

	MarkGUCPrefixReserved("bk");

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = bk_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = bk_shmem_startup;

	bk_worker_register();
}

/*
 * bk_shmem_request
 *		Ask for the shared status (PG15: only from shmem_request_hook).
 */
static void
bk_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(BkSharedState)));
	RequestNamedLWLockTranche(BK_SNAPSHOT_LOCK_TRANCHE, 1);
}

/*
 * bk_shmem_startup
 *		Create (postmaster) or attach to the shared status.
 */
static void
bk_shmem_startup(void)
{
	bool found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	bk_shared = ShmemInitStruct("bk", sizeof(BkSharedState), &found);
	if (!found)
	{
		memset(bk_shared, 0, sizeof(BkSharedState));
		SpinLockInit(&bk_shared->mutex);
		bk_shared->last_archived_end_lsn = InvalidXLogRecPtr;
		bk_shared->snapshot_signal_lock =
			&(GetNamedLWLockTranche(BK_SNAPSHOT_LOCK_TRANCHE))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * bk_check_one_property
 *		Refuse what would run foreign code in a server process or take over
 *		its signals: librdkafka plugins, which it loads (dlopen) as soon as
 *		the property is set, and this hook runs in every server process,
 *		the postmaster included; an OpenSSL engine or provider library
 *		(a provider named by its path is loaded from it); the shell
 *		command it runs to renew Kerberos tickets; and the signal it would
 *		install a handler of its own for, process-wide (in the archiver,
 *		one PostgreSQL's shutdown relies on).
 */
static bool
bk_check_one_property(void *arg, const char *key, const char *value,
					  BkError *err)
{
	static const char *const refused[] = {
		"plugin.library.paths", "ssl.engine.location", "ssl.providers",
		"sasl.kerberos.kinit.cmd", "internal.termination.signal"};
	bool is_refused = false;

	for (size_t keyIdx = 0; keyIdx < lengthof(refused); keyIdx++)
		is_refused |= strcmp(key, refused[keyIdx]) == 0;
	if (is_refused)
	{
		bk_error_set(err, BK_ERR_CONFIG,
					 "Kafka property \"%s\" is not supported inside PostgreSQL",
					 key);
		return bk_error_hint(err, "Remove it from the Kafka properties.");
	}
	return true;
}

/*
 * bk_properties_valid
 *		Build (but do not start) a producer with these properties: catches
 *		bad syntax, unknown properties, bad values and properties that would
 *		weaken what "acknowledged" means, exactly as the archiver would.
 *
 * bk_producer_new only builds a librdkafka configuration; it creates no
 * handle and no thread, so it is safe in the postmaster.  The brokers are a
 * placeholder (they are a separate setting) and the chunk size the smallest,
 * so that this check does not depend on the order settings are loaded in.
 */
static bool
bk_properties_valid(const char *properties, BkError *err)
{
	BkKafkaSettings settings = {0};
	BkProducer *producer;

	settings.brokers = "localhost";
	settings.properties = properties;
	settings.chunk_size = BK_CHUNK_SIZE_MIN;
	bk_error_clear(err);
	if (!bk_config_parse_properties(properties, bk_check_one_property, NULL,
									err) ||
		(producer = bk_producer_new(&settings, err)) == NULL)
		return false;
	bk_producer_free(producer);
	return true;
}

static bool
bk_check_kafka_properties(char **newval, void **extra, GucSource source)
{
	BkError err;

	if (*newval == NULL || (*newval)[0] == '\0' ||
		bk_properties_valid(*newval, &err))
		return true;

	/*
	 * Not PostgreSQL's own message, which quotes the whole value: it may
	 * hold sasl.password.
	 */
	GUC_check_errmsg("invalid value for parameter \"bk.kafka_properties\"");
	GUC_check_errdetail("%s", bk_sentence(err.message));
	if (err.hint[0] != '\0')
		GUC_check_errhint("%s", err.hint);
	return false;
}

/*
 * bk_read_properties_file
 *		The properties of path as one list in bk.kafka_properties' syntax
 *		(malloc'd): one property per line, taken literally (its ";" and "\\"
 *		escaped), without blank lines and lines whose first non-blank
 *		character is "#".  Refuses a file others may read or change, by the
 *		rule of private key files (bk_secret_file.h), which PostgreSQL
 *		applies to ssl_key_file.  Errors name the file and a line number,
 *		never a line's text.
 */
#define BK_PROPERTIES_FILE_MAX (64 * 1024)

static char *
bk_read_properties_file(const char *path, BkError *err)
{
	char *text = NULL;
	char *list = NULL;
	size_t len = 0;
	size_t list_len = 0;
	int line_no = 0;

	/* The rule of private key files; a FIFO never hangs the postmaster. */
	if (!bk_secret_file_read(path, BK_SECRET_KAFKA_PROPERTIES,
							 BK_PROPERTIES_FILE_MAX, &text, &len, err))
		return NULL;
	/* Escaping at most doubles a line; ";" replaces its newline. */
	list = malloc(2 * len + 2);
	if (list == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		goto failed;
	}
	if (memchr(text, '\0', len) != NULL)
	{
		bk_error_set(err, BK_ERR_CONFIG, "\"%s\" contains a NUL byte", path);
		goto failed;
	}
	text[len] = '\0';
	for (char *line = text, *next; line != NULL; line = next)
	{
		char *start = line;
		char *end;

		line_no++;
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		while (*start == ' ' || *start == '\t')
			start++;
		end = start + strlen(start);
		while (end > start &&
			   (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
			end--;
		*end = '\0';
		if (*start == '\0' || *start == '#')
			continue;
		if (*start == '=' || strchr(start, '=') == NULL)
		{
			bk_error_set(err, BK_ERR_CONFIG,
						 "\"%s\" line %d is not \"key=value\"", path, line_no);
			goto failed;
		}
		if (list_len > 0)
			list[list_len++] = ';';
		list_len += bk_config_escape_property(start, list + list_len);
	}
	list[list_len] = '\0';
	explicit_bzero(text, len);
	free(text);
	return list;

failed:
	if (text != NULL)
		explicit_bzero(text, len);
	free(text);
	free(list);
	return NULL;
}

/*
 * bk_check_kafka_properties_file
 *		Read and check the file at start and at every reload, in every
 *		process, as bk.kafka_properties is checked; its list becomes the
 *		setting's extra, so the archiver never reads the file itself.
 */
static bool
bk_check_kafka_properties_file(char **newval, void **extra, GucSource source)
{
	char *list;
	char *copy;
	BkError err;

	/*
	 * A parallel worker restores its leader's settings, which would read the
	 * file again; it never sends to Kafka, and a file changed since the last
	 * reload must not fail parallel queries.
	 */
	if (*newval == NULL || (*newval)[0] == '\0' || InitializingParallelWorker)
		return true;
	bk_error_clear(&err);
	if (!is_absolute_path(*newval))
	{
		GUC_check_errdetail("It must be an absolute path.");
		return false;
	}
	list = bk_read_properties_file(*newval, &err);
	if (list != NULL && !bk_properties_valid(list, &err))
	{
		explicit_bzero(list, strlen(list));
		free(list);
		list = NULL;
		bk_error_prefix(&err, "\"%s\": ", *newval);
	}
	if (list == NULL)
	{
		/*
		 * The checks quote only values librdkafka validates (numbers,
		 * names), never a password.
		 */
		GUC_check_errdetail("%s", bk_sentence(err.message));
		if (err.hint[0] != '\0')
			GUC_check_errhint("%s", err.hint);
		return false;
	}
	/* PostgreSQL frees an extra with free(). */
	copy = strdup(list);
	explicit_bzero(list, strlen(list));
	free(list);
	if (copy == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	*extra = copy;
	return true;
}

static void
bk_assign_kafka_properties_file(const char *newval, void *extra)
{
	bk_kafka_file_properties = extra;
}

/*
 * bk_check_topic_prefix
 *		The prefix must make valid Kafka topic names.
 */
static bool
bk_check_topic_prefix(char **newval, void **extra, GucSource source)
{
	char topic[BK_TOPIC_NAME_MAX + 1];
	BkError err;

	bk_error_clear(&err);
	if (!bk_topic_name(*newval ? *newval : "", BK_TOPIC_WAL, topic,
					   sizeof(topic), &err))
	{
		GUC_check_errdetail("%s", bk_sentence(err.message));
		return false;
	}
	return true;
}

/*
 * bk_check_source_id
 *		Empty (the system identifier) or a valid source id: it becomes a
 *		directory name in the repository.
 */
static bool
bk_check_source_id(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (!bk_source_id_valid(*newval, strlen(*newval)))
	{
		GUC_check_errdetail("A source id is " BK_SOURCE_ID_RULE ".");
		return false;
	}
	return true;
}

/*
 * bk_check_snapshot_range_size
 *		0, or ranges of at least BK_SNAPSHOT_RANGE_MIN_BYTES.  One block per
 *		range would make a 100 GB database 13 million work-list items in
 *		shared memory and as many objects and record entries; the value is
 *		refused at SET time rather than when a snapshot lists its files.
 */
static bool
bk_check_snapshot_range_size(int *newval, void **extra, GucSource source)
{
	if (*newval == 0 || (int64) *newval * BLCKSZ >= BK_SNAPSHOT_RANGE_MIN_BYTES)
		return true;
	GUC_check_errdetail("The smallest range is %dMB (%lldkB was given); 0 "
						"sends every file as one object.",
						BK_SNAPSHOT_RANGE_MIN_BYTES / (1024 * 1024),
						(long long) *newval * BLCKSZ / 1024);
	return false;
}

/*
 * bk_effective_source_id
 *		bk.source_id, or the system identifier in decimal when it is empty.
 */
void
bk_effective_source_id(char *out, size_t out_len)
{
	if (bk_source_id_setting != NULL && bk_source_id_setting[0] != '\0')
		strlcpy(out, bk_source_id_setting, out_len);
	else
		snprintf(out, out_len, UINT64_FORMAT, GetSystemIdentifier());
}

/*
 * bk_wait_for_name
 *		The text of a bk.wait_for value.
 */
const char *
bk_wait_for_name(int wait_for)
{
	for (int optIdx = 0; bk_wait_for_options[optIdx].name != NULL; optIdx++)
		if (bk_wait_for_options[optIdx].val == wait_for)
			return bk_wait_for_options[optIdx].name;
	return "unknown";
}

/*
 * bk_sentence
 *		A library message as a detail sentence: capitalised, with a final
 *		period (libbk messages are lowercase fragments, as primary messages
 *		are; PostgreSQL wants details as full sentences).
 */
char *
bk_sentence(const char *text)
{
	size_t len = strlen(text);
	char *out = palloc(len + 2);

	memcpy(out, text, len + 1);
	if (len == 0)
		return out;
	out[0] = (char) toupper((unsigned char) out[0]);
	if (out[len - 1] != '.')
	{
		out[len] = '.';
		out[len + 1] = '\0';
	}
	return out;
}

/*
 * bk_sqlstate
 *		The SQLSTATE that best says what class of library failure this is.
 */
int
bk_sqlstate(BkErrorCode code)
{
	switch (code)
	{
		case BK_ERR_IO:
		case BK_ERR_STORE:
			return ERRCODE_IO_ERROR;
		case BK_ERR_USAGE:
		case BK_ERR_CONFIG:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case BK_ERR_KEY:
			return ERRCODE_CONFIG_FILE_ERROR;
		case BK_ERR_KAFKA:
		case BK_ERR_TIMEOUT:
		case BK_ERR_NOT_FOUND:
			return ERRCODE_CONNECTION_FAILURE;
		case BK_ERR_INTERRUPTED:
			return ERRCODE_ADMIN_SHUTDOWN;
		case BK_ERR_NOMEM:
			return ERRCODE_OUT_OF_MEMORY;
		case BK_ERR_FORMAT:
		case BK_ERR_SEQUENCE:
		case BK_ERR_AUTH:
		case BK_ERR_CONFLICT:
			return ERRCODE_DATA_CORRUPTED;
		default:
			return ERRCODE_INTERNAL_ERROR;
	}
}
