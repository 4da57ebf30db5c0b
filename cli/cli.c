/*
 * cli.c
 *		Configuration, error reporting and exit codes for bk and bk-shipper.
 */
#include "cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "bk_config.h"
#include "bk_frame.h"
#include "bk_util.h"
#include "repo.h"

void
bk_cli_config_init(BkCliConfig *config)
{
	memset(config, 0, sizeof(*config));
	config->chunk_size = BK_CHUNK_SIZE_DEFAULT;
	config->kafka_timeout_ms = BK_KAFKA_TIMEOUT_DEFAULT_MS;
	config->abandon_after_ms = BK_ABANDON_AFTER_DEFAULT_MS;
	config->s3_verify_tls = true;
}

void
bk_cli_config_free(BkCliConfig *config)
{
	free(config->kafka_brokers);
	free(config->kafka_properties);
	free(config->topic_prefix);
	free(config->repository);
	free(config->key_file);
	free(config->group_id);
	free(config->shipper_id);
	free(config->s3_endpoint);
	free(config->s3_region);
	free(config->s3_uri_style);
	free(config->s3_ca_file);
	free(config->s3_storage_class);
	free(config->s3_access_key_file);
	free(config->spool_dir);
	free(config->metrics_listen);
	memset(config, 0, sizeof(*config));
}

static bool
set_string(char **field, const char *value, BkError *err)
{
	char *copy = strdup(value);

	if (copy == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	free(*field);
	*field = copy;
	return true;
}

static bool
set_int(int *field, const char *key, const char *value, int min, int max,
		BkError *err)
{
	char *end;
	long parsed;

	errno = 0;
	parsed = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || parsed < min ||
		parsed > max)
		return bk_error_set(err, BK_ERR_CONFIG,
							"%s must be an integer from %d to %d, not \"%s\"",
							key, min, max, value);
	*field = (int) parsed;
	return true;
}

static bool
set_duration(int64_t *field, const char *key, const char *value, int64_t min,
			 BkError *err)
{
	if (!bk_parse_duration_ms(value, field) || *field < min)
		return bk_error_set(err, BK_ERR_CONFIG,
							"%s must be a duration of at least %" PRId64
							" ms such as \"30s\" or \"7d\", not \"%s\"",
							key, min, value);
	return true;
}

bool
bk_cli_parse_listen_address(const char *key, const char *text,
							struct sockaddr_storage *addr, socklen_t *addr_len,
							BkError *err)
{
	char host[INET6_ADDRSTRLEN];
	const char *host_start = text;
	const char *port_text;
	size_t host_len;
	char *end;
	long port;
	int family = AF_INET;

	memset(addr, 0, sizeof(*addr));
	if (text[0] == '[')
	{
		const char *close = strchr(text, ']');

		family = AF_INET6;
		host_start = text + 1;
		port_text = close != NULL && close[1] == ':' ? close + 2 : NULL;
		host_len = close != NULL ? (size_t) (close - host_start) : 0;
	}
	else
	{
		const char *colon = strchr(text, ':');

		/* A second colon: an IPv6 address without its brackets. */
		port_text =
			colon != NULL && strchr(colon + 1, ':') == NULL ? colon + 1 : NULL;
		host_len = colon != NULL ? (size_t) (colon - text) : 0;
	}
	if (port_text != NULL && host_len > 0 && host_len < sizeof(host))
	{
		memcpy(host, host_start, host_len);
		host[host_len] = '\0';
		errno = 0;
		port = port_text[0] >= '0' && port_text[0] <= '9'
				   ? strtol(port_text, &end, 10)
				   : 0;
		if (port >= 1 && port <= 65535 && errno == 0 && *end == '\0')
		{
			struct sockaddr_in *in4 = (struct sockaddr_in *) addr;
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) addr;

			if (family == AF_INET && inet_pton(AF_INET, host, &in4->sin_addr))
			{
				in4->sin_family = AF_INET;
				in4->sin_port = htons((uint16_t) port);
				*addr_len = sizeof(*in4);
				return true;
			}
			if (family == AF_INET6 &&
				inet_pton(AF_INET6, host, &in6->sin6_addr))
			{
				in6->sin6_family = AF_INET6;
				in6->sin6_port = htons((uint16_t) port);
				*addr_len = sizeof(*in6);
				return true;
			}
		}
	}
	bk_error_set(err, BK_ERR_CONFIG,
				 "%s must be an IPv4 address and a port such as "
				 "\"127.0.0.1:9187\", or an IPv6 address in brackets and a "
				 "port such as \"[::1]:9187\", not \"%s\"",
				 key, text);
	return bk_error_hint(err, "Leave %s empty for no metrics endpoint.", key);
}

/* The repository's S3 settings; false with err unset if key is not one. */
static bool
set_repo_setting(BkCliConfig *config, const char *key, const char *value,
				 BkError *err)
{
	struct
	{
		const char *key;
		char **field;
	} strings[] = {
		{"s3_endpoint", &config->s3_endpoint},
		{"s3_region", &config->s3_region},
		{"s3_uri_style", &config->s3_uri_style},
		{"s3_ca_file", &config->s3_ca_file},
		{"s3_storage_class", &config->s3_storage_class},
		{"s3_access_key_file", &config->s3_access_key_file},
		{"spool_dir", &config->spool_dir},
	};

	for (size_t itemIdx = 0; itemIdx < sizeof(strings) / sizeof(strings[0]);
		 itemIdx++)
		if (strcmp(key, strings[itemIdx].key) == 0)
		{
			if (strcmp(key, "s3_uri_style") == 0 &&
				strcmp(value, "path") != 0 && strcmp(value, "host") != 0)
				return bk_error_set(err, BK_ERR_CONFIG,
									"s3_uri_style must be \"path\" or "
									"\"host\", not \"%s\"",
									value);
			return set_string(strings[itemIdx].field, value, err);
		}
	if (strcmp(key, "s3_verify_tls") == 0)
	{
		if (!bk_parse_bool(value, &config->s3_verify_tls))
			return bk_error_set(err, BK_ERR_CONFIG,
								"s3_verify_tls must be on or off, not \"%s\"",
								value);
		return true;
	}
	if (strcmp(key, "s3_timeout") == 0)
		return set_duration(&config->s3_timeout_ms, key, value, 1000, err);
	if (strcmp(key, "s3_read_jobs") == 0)
		return set_int(&config->s3_read_jobs, key, value, 1, 16, err);
	if (strcmp(key, "s3_part_size") == 0)
	{
		uint64_t bytes;

		if (!bk_parse_size(value, &bytes) || bytes < ((uint64_t) 5 << 20) ||
			bytes > ((uint64_t) 5 << 30))
			return bk_error_set(err, BK_ERR_CONFIG,
								"s3_part_size must be a size from 5MiB to "
								"5GiB, not \"%s\"",
								value);
		config->s3_part_size = bytes;
		return true;
	}
	return false;
}

BkRepo *
bk_cli_repo_open(const BkCliConfig *config, bool create, BkError *err)
{
	BkRepoOptions options;

	bk_repo_options_init(&options);
	options.s3_endpoint = config->s3_endpoint;
	options.s3_region = config->s3_region;
	options.s3_uri_style = config->s3_uri_style;
	options.s3_ca_file = config->s3_ca_file;
	options.s3_verify_tls = config->s3_verify_tls;
	options.s3_storage_class = config->s3_storage_class;
	options.s3_access_key_file = config->s3_access_key_file;
	options.spool_dir = config->spool_dir;
	options.s3_timeout_ms = config->s3_timeout_ms;
	options.s3_part_size = config->s3_part_size;
	options.s3_read_jobs = config->s3_read_jobs;
	/*
	 * s3_stale_upload_ms stays the repository's day: abandon_after is broker
	 * time between two chunks and says nothing about how long an upload of
	 * another running shipper may take.
	 */
	return bk_repo_open_with(config->repository, &options, create, err);
}

bool
bk_cli_config_set(BkCliConfig *config, const char *key, const char *value,
				  BkError *err)
{
	if (strncmp(key, "s3_", 3) == 0 || strcmp(key, "spool_dir") == 0)
	{
		bk_error_clear(err);
		if (set_repo_setting(config, key, value, err))
			return true;
		if (err->code != BK_OK)
			return false;
	}
	if (strcmp(key, "kafka_brokers") == 0)
		return set_string(&config->kafka_brokers, value, err);
	if (strcmp(key, "kafka_properties") == 0)
		return set_string(&config->kafka_properties, value, err);
	if (strcmp(key, "topic_prefix") == 0)
	{
		char probe[BK_TOPIC_NAME_MAX + 1];

		if (!bk_topic_name(value, BK_TOPIC_WAL, probe, sizeof(probe), err))
			return false;
		return set_string(&config->topic_prefix, value, err);
	}
	if (strcmp(key, "repository") == 0)
		return set_string(&config->repository, value, err);
	if (strcmp(key, "key_file") == 0)
		return set_string(&config->key_file, value, err);
	if (strcmp(key, "group_id") == 0)
	{
		/*
		 * Kafka has no group with an empty name: the shipper would fail to
		 * subscribe ("Unknown group") as if Kafka were unreachable, and be
		 * restarted for ever without a word about group_id.
		 */
		if (value[0] == '\0')
		{
			bk_error_set(err, BK_ERR_CONFIG, "group_id must not be empty");
			return bk_error_hint(err,
								 "Leave group_id out for the default consumer "
								 "group, \"" BK_GROUP_ID_DEFAULT "\".");
		}
		return set_string(&config->group_id, value, err);
	}
	if (strcmp(key, "chunk_size") == 0)
	{
		uint64_t bytes;

		if (!bk_parse_size(value, &bytes) || bytes < BK_CHUNK_SIZE_MIN ||
			bytes > BK_CHUNK_SIZE_MAX)
			return bk_error_set(err, BK_ERR_CONFIG,
								"chunk_size must be a size from %d bytes to %d "
								"MiB, such as \"1MiB\", not \"%s\"",
								BK_CHUNK_SIZE_MIN, BK_CHUNK_SIZE_MAX >> 20,
								value);
		config->chunk_size = (uint32_t) bytes;
		return true;
	}
	if (strcmp(key, "kafka_timeout") == 0)
	{
		int64_t ms;

		if (!set_duration(&ms, key, value, 1000, err))
			return false;
		if (ms > 3600 * 1000)
			return bk_error_set(err, BK_ERR_CONFIG,
								"kafka_timeout must be at most 1h, not \"%s\"",
								value);
		config->kafka_timeout_ms = (int) ms;
		return true;
	}
	if (strcmp(key, "topic_partitions") == 0)
		return set_int(&config->topic_partitions, key, value, 1, 10000, err);
	if (strcmp(key, "topic_replication_factor") == 0)
		return set_int(&config->topic_replication_factor, key, value, 1, 32,
					   err);
	if (strcmp(key, "topic_retention") == 0)
		return set_duration(&config->topic_retention_ms, key, value, 60000,
							err);
	if (strcmp(key, "audit_retention") == 0)
		return set_duration(&config->audit_retention_ms, key, value, 60000,
							err);
	if (strcmp(key, "shipper_id") == 0)
	{
		if (!bk_shipper_id_valid(value))
		{
			bk_error_set(err, BK_ERR_CONFIG, "invalid shipper_id \"%s\"",
						 value);
			return bk_error_hint(err, "Use 1 to 64 letters, digits, '.', "
									  "'_' or '-' (it names the shipper's "
									  "spool directory).");
		}
		return set_string(&config->shipper_id, value, err);
	}
	if (strcmp(key, "abandon_after") == 0)
		return set_duration(&config->abandon_after_ms, key, value, 1000, err);
	if (strcmp(key, "metrics_listen") == 0)
	{
		struct sockaddr_storage addr;
		socklen_t addr_len;

		/* Empty: no endpoint, so a flag can turn off what the file set. */
		if (value[0] == '\0')
		{
			free(config->metrics_listen);
			config->metrics_listen = NULL;
			return true;
		}
		if (!bk_cli_parse_listen_address(key, value, &addr, &addr_len, err))
			return false;
		return set_string(&config->metrics_listen, value, err);
	}
	bk_error_set(err, BK_ERR_CONFIG, "unknown setting \"%s\"", key);
	return bk_error_hint(err,
						 "Known settings: kafka_brokers, kafka_properties, "
						 "topic_prefix, repository, key_file, group_id, "
						 "chunk_size, kafka_timeout, topic_partitions, "
						 "topic_replication_factor, topic_retention, "
						 "audit_retention, shipper_id, abandon_after, "
						 "metrics_listen, spool_dir, s3_endpoint, s3_region, "
						 "s3_uri_style, s3_access_key_file, s3_ca_file, "
						 "s3_verify_tls, s3_storage_class, s3_timeout, "
						 "s3_part_size, s3_read_jobs.");
}

static bool
config_file_setter(void *arg, const char *key, const char *value, BkError *err)
{
	return bk_cli_config_set(arg, key, value, err);
}

bool
bk_cli_config_load(BkCliConfig *config, const char *path, BkError *err)
{
	if (path == NULL)
		path = getenv("BK_CONFIG");
	if (path == NULL)
	{
		if (access(BK_CONFIG_DEFAULT_PATH, F_OK) != 0)
			return true;
		path = BK_CONFIG_DEFAULT_PATH;
	}
	config->config_path = path;
	if (!bk_config_parse_file(path, config_file_setter, config, err))
	{
		/* Missing or unreadable, it is still a configuration problem. */
		err->code = BK_ERR_CONFIG;
		return false;
	}
	return true;
}

void
bk_cli_kafka_settings(const BkCliConfig *config, BkKafkaSettings *settings,
					  const char *client_id)
{
	memset(settings, 0, sizeof(*settings));
	settings->brokers = config->kafka_brokers;
	settings->properties = config->kafka_properties;
	settings->client_id = client_id;
	settings->timeout_ms = config->kafka_timeout_ms;
	settings->chunk_size = config->chunk_size;
}

void
bk_cli_topic_policy(const BkCliConfig *config, BkTopicPolicy *policy)
{
	memset(policy, 0, sizeof(*policy));
	policy->prefix =
		config->topic_prefix ? config->topic_prefix : BK_TOPIC_PREFIX_DEFAULT;
	policy->partitions = config->topic_partitions;
	policy->replication_factor = config->topic_replication_factor;
	policy->retention_ms = config->topic_retention_ms;
	policy->audit_retention_ms = config->audit_retention_ms;
	policy->chunk_size = config->chunk_size;
	policy->timeout_ms = config->kafka_timeout_ms;
}

int
bk_cli_exit_code(BkErrorCode code)
{
	switch (code)
	{
		case BK_OK:
			return BK_EXIT_OK;
		case BK_ERR_USAGE:
			return BK_EXIT_USAGE;
		case BK_ERR_CONFIG:
		case BK_ERR_KEY:
			return BK_EXIT_CONFIG;
		case BK_ERR_FORMAT:
		case BK_ERR_SEQUENCE:
		case BK_ERR_AUTH:
		case BK_ERR_CONFLICT:
			return BK_EXIT_INTEGRITY;
		case BK_ERR_KAFKA:
		case BK_ERR_TIMEOUT:
		case BK_ERR_IO:
		case BK_ERR_STORE:
			return BK_EXIT_UNAVAILABLE;
		default:
			return BK_EXIT_FAILURE;
	}
}

int
bk_cli_report_error(const char *program, const BkError *err)
{
	fprintf(stderr, "%s: error: %s\n", program, err->message);
	if (err->hint[0] != '\0')
		fprintf(stderr, "HINT: %s\n", err->hint);
	return bk_cli_exit_code(err->code);
}

/*
 * For commands whose exit status 1 says only "not in the archive" (a
 * script fetches until it sees it): any other failure that would exit 1
 * (out of memory, a library failure, an interrupt) exits 5, try again.
 */
int
bk_cli_report_absent_error(const char *program, const BkError *err)
{
	int status = bk_cli_report_error(program, err);

	if (status == BK_EXIT_FAILURE && err->code != BK_ERR_NOT_FOUND)
		status = BK_EXIT_UNAVAILABLE;
	return status;
}

int
bk_cli_report_restore_error(const char *program, const BkError *err,
							bool repo_open)
{
	BkError local = *err;

	/*
	 * A script retries on 5 ("the repository could not be read"): a full
	 * or failing target disk stays full or failing.
	 */
	if (repo_open && local.code == BK_ERR_IO)
		local.code = BK_ERR_INTERNAL;
	return bk_cli_report_error(program, &local);
}

bool
bk_cli_check_record_read(const char *id, const char *source, BkErrorCode code,
						 const char *reason, const char *wanted, BkError *err)
{
	if (code == BK_OK || code == BK_ERR_NOT_FOUND ||
		(wanted != NULL && strcmp(id, wanted) != 0))
		return true;
	bk_error_set(err, code, "snapshot %s of source \"%s\": %s", id, source,
				 reason);
	return bk_error_hint(err, "The repository failed to read it, which says "
							  "nothing of the snapshot. Fix what the message "
							  "names and run bk restore again, or name "
							  "another snapshot with --snapshot.");
}

int
bk_cli_usage_error(const char *program, const char *fmt, ...)
{
	va_list args;

	fprintf(stderr, "%s: ", program);
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fprintf(stderr, "\nTry \"%s --help\" for more information.\n", program);
	return BK_EXIT_USAGE;
}

bool
bk_cli_option_repeat(const struct option *options, int index, const char *value,
					 const char **seen, const char *const *repeatable,
					 BkError *err)
{
	if (index < 0 || index >= BK_CLI_OPTIONS_MAX ||
		options[index].has_arg != required_argument || value == NULL)
		return true;
	for (int nameIdx = 0; repeatable != NULL && repeatable[nameIdx] != NULL;
		 nameIdx++)
		if (strcmp(options[index].name, repeatable[nameIdx]) == 0)
			return true;
	if (seen[index] != NULL && strcmp(seen[index], value) != 0)
		return bk_error_set(err, BK_ERR_USAGE,
							"--%s is given twice (\"%s\" and \"%s\"); give "
							"it once",
							options[index].name, seen[index], value);
	seen[index] = value;
	return true;
}

/* ------------------------------------------------------------ memory */

static void
out_of_memory(size_t size)
{
	fprintf(stderr, "bk: error: out of memory (%zu bytes more were needed)\n",
			size);
	fflush(stderr);
	_exit(BK_EXIT_FAILURE);
}

void *
bk_cli_alloc(size_t size)
{
	void *block = malloc(size ? size : 1);

	if (block == NULL)
		out_of_memory(size);
	return block;
}

const char *
bk_cli_scratch_dir(void)
{
	const char *tmp_root = getenv("TMPDIR");

	return tmp_root == NULL || tmp_root[0] == '\0' ? "/tmp" : tmp_root;
}

int
bk_cli_open_scratch(void)
{
	const char *tmp_root = bk_cli_scratch_dir();
	char path[4096];
	int fd;

	fd = open(tmp_root, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	snprintf(path, sizeof(path), "%s/bk-scratch.XXXXXX", tmp_root);
	fd = mkstemp(path);
	if (fd >= 0)
		unlink(path);
	return fd;
}

void *
bk_cli_realloc(void *block, size_t size)
{
	void *grown = realloc(block, size ? size : 1);

	if (grown == NULL)
		out_of_memory(size);
	return grown;
}

void *
bk_cli_alloc_zero(size_t count, size_t size)
{
	void *block = calloc(count ? count : 1, size ? size : 1);

	if (block == NULL)
		out_of_memory(count * size);
	return block;
}

char *
bk_cli_strdup(const char *text)
{
	size_t len = strlen(text) + 1;
	char *copy = bk_cli_alloc(len);

	memcpy(copy, text, len);
	return copy;
}

void
bk_cli_alloc_init(void)
{
	json_set_alloc_funcs(bk_cli_alloc, free);
}
