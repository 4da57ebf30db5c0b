/*
 * cli.h
 *		What the bk command-line tool and the bk-shipper daemon share: the
 *		configuration (file, then flags), error reporting and exit codes.
 *
 * Configuration comes from a file of "key = value" lines (--config FILE, or
 * $BK_CONFIG, or /etc/bk/bk.conf when it exists), then from flags, which
 * win.  Every key is known here; an unknown key is an error naming the file
 * and line, because a misspelt setting silently ignored is how backups end
 * up somewhere nobody looks.
 */
#ifndef BK_CLI_H
#define BK_CLI_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "bk_error.h"
#include "bk_kafka.h"
#include "bk_topics.h"

#define BK_VERSION             "0.1.0"
#define BK_CONFIG_DEFAULT_PATH "/etc/bk/bk.conf"

/* Exit codes of bk and bk-shipper (README, "Exit codes"). */
#define BK_EXIT_OK          0
#define BK_EXIT_FAILURE     1 /* anything not below */
#define BK_EXIT_USAGE       2 /* unknown option, bad argument */
#define BK_EXIT_CONFIG      3 /* bad configuration or key file */
#define BK_EXIT_INTEGRITY   4 /* corrupt, tampered or missing data */
#define BK_EXIT_UNAVAILABLE 5 /* Kafka or repository unreachable */

typedef struct BkCliConfig
{
	const char *config_path; /* the file read, or NULL */
	char *kafka_brokers;
	char *kafka_properties;
	char *topic_prefix;
	char *repository;
	char *key_file;
	char *group_id;
	uint32_t chunk_size;
	int kafka_timeout_ms;
	int topic_partitions;
	int topic_replication_factor;
	int64_t topic_retention_ms;
	int64_t audit_retention_ms;
	char *shipper_id;         /* group.instance.id; NULL: from the host name */
	int64_t abandon_after_ms; /* when a stalled attempt is given up */
	/* The S3 backend's settings (repo.h, BkRepoOptions). */
	char *s3_endpoint;
	char *s3_region;
	char *s3_uri_style;
	char *s3_ca_file;
	char *s3_storage_class;
	char *s3_access_key_file;
	char *spool_dir;
	bool s3_verify_tls;
	int64_t s3_timeout_ms;
	uint64_t s3_part_size;
	int s3_read_jobs;
	/* bk-shipper's Prometheus endpoint, ADDR:PORT; NULL: none. */
	char *metrics_listen;
} BkCliConfig;

#define BK_GROUP_ID_DEFAULT         "bk-shipper"
#define BK_ABANDON_AFTER_DEFAULT_MS ((int64_t) 3600 * 1000)

/* Defaults; nothing allocated yet. */
extern void bk_cli_config_init(BkCliConfig *config);
extern void bk_cli_config_free(BkCliConfig *config);

/*
 * Read the config file: path if given, else $BK_CONFIG, else the default
 * path if it exists.  A file named explicitly must exist.
 */
extern bool bk_cli_config_load(BkCliConfig *config, const char *path,
							   BkError *err);

/* Set one key as the file would ("kafka_brokers", "repository", ...). */
extern bool bk_cli_config_set(BkCliConfig *config, const char *key,
							  const char *value, BkError *err);

/*
 * "127.0.0.1:9187" or "[::1]:9187": a numeric address and a port, so that
 * a listener binds to exactly what the operator wrote.  Errors name key.
 */
extern bool bk_cli_parse_listen_address(const char *key, const char *text,
										struct sockaddr_storage *addr,
										socklen_t *addr_len, BkError *err);

/*
 * Open the configured repository with its settings (the S3 ones when it
 * is "s3://..."); create as bk_repo_open.
 */
struct BkRepo;
extern struct BkRepo *bk_cli_repo_open(const BkCliConfig *config, bool create,
									   BkError *err);

/* Kafka settings derived from the configuration. */
extern void bk_cli_kafka_settings(const BkCliConfig *config,
								  BkKafkaSettings *settings,
								  const char *client_id);
extern void bk_cli_topic_policy(const BkCliConfig *config,
								BkTopicPolicy *policy);

/*
 * Print "<program>: error: message" and "HINT: hint" to stderr and return
 * the exit code for the error's class.
 */
extern int bk_cli_report_error(const char *program, const BkError *err);

/*
 * The same, for commands whose exit status 1 means "not in the archive" and
 * nothing else: another failure that would exit 1 exits 5.
 */
extern int bk_cli_report_absent_error(const char *program, const BkError *err);

/*
 * The same, for bk restore: once the repository is open (repo_open), its
 * failures are BK_ERR_STORE, BK_ERR_TIMEOUT or BK_ERR_CONFIG (exit 5 or
 * 3), and BK_ERR_IO is this host's own files (the target, a work
 * directory), which a retry cannot fix: exit 1.
 */
extern int bk_cli_report_restore_error(const char *program, const BkError *err,
									   bool repo_open);

/*
 * bk restore, choosing a snapshot: one whose record the repository failed
 * to read (code: its failure; not BK_ERR_NOT_FOUND, a record removed
 * meanwhile) may be the one that fits, and choosing around it would
 * restore from an older snapshot, or say none fits.  False, with the
 * repository's failure in err (exit 5, or 3 for a refusal), unless
 * wanted (--snapshot) names another.
 */
extern bool bk_cli_check_record_read(const char *id, const char *source,
									 BkErrorCode code, const char *reason,
									 const char *wanted, BkError *err);

extern int bk_cli_exit_code(BkErrorCode code);

/*
 * Memory for the bk tool: out of memory ends the command with a message
 * naming the size asked for (exit BK_EXIT_FAILURE) instead of crashing
 * later on a NULL.  bk_cli_alloc_init makes jansson allocate through it
 * too, so building --json output cannot silently drop a field.  Not for
 * libraries or the shipper, which report BK_ERR_NOMEM and carry on.
 */
extern void bk_cli_alloc_init(void);
extern void *bk_cli_alloc(size_t size);
extern void *bk_cli_alloc_zero(size_t count, size_t size);
extern void *bk_cli_realloc(void *block, size_t size);
extern char *bk_cli_strdup(const char *text);

/* Where temporary files go: $TMPDIR, default /tmp. */
extern const char *bk_cli_scratch_dir(void);

/*
 * A temporary file in bk_cli_scratch_dir(), gone when closed: O_TMPFILE,
 * or a file unlinked at once where that is not supported.  -1 (errno set)
 * on failure.
 */
extern int bk_cli_open_scratch(void);

/* Print a usage error ("bk init: unknown option ...") and return BK_EXIT_USAGE. */
extern int bk_cli_usage_error(const char *program, const char *fmt, ...)
	BK_PRINTF(2, 3);

/* Entries of an option table bk_cli_option_repeat can follow. */
#define BK_CLI_OPTIONS_MAX 64

/*
 * An option that takes a value, given a second time with another value
 * ("--source a ... --source b"): which one wins is not what the operator
 * meant, so it is a usage error naming both.  index is getopt_long's
 * longindex into options (-1 for a short option: not followed); seen holds
 * BK_CLI_OPTIONS_MAX values, NULL at first; names in repeatable (NULL-
 * terminated, or NULL) may be given many times.  False, with err set
 * (BK_ERR_USAGE), for a second different value.
 */
struct option;
extern bool bk_cli_option_repeat(const struct option *options, int index,
								 const char *value, const char **seen,
								 const char *const *repeatable, BkError *err);

#endif /* BK_CLI_H */
