/*
 * metrics.c
 *		bk-shipper's Prometheus text endpoint.  See metrics.h.
 *
 * libmicrohttpd runs one internal thread (epoll) with a small connection
 * limit: a scraper or two, never a load.  We bind the listening socket
 * ourselves so that a failure names the address and the system's reason,
 * and so that the socket is exactly the configured address (IPv6 only for
 * an IPv6 address, no dual stack).
 */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "bk_frame.h"
#include "bk_util.h"
#include "cli.h"

#define METRICS_PATH         "/metrics"
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_CONNECTIONS  8
#define METRICS_TIMEOUT_S    10

/* Upper bounds of the commit latency buckets, seconds (+Inf implied). */
static const double commit_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
										0.5,   1,    2.5,   5,    10,  30};
#define COMMIT_BUCKETS (sizeof(commit_buckets) / sizeof(commit_buckets[0]))

static const char *const error_kinds[BK_METRICS_ERROR_KINDS] = {
	"kafka", "repository", "audit", "memory"};

typedef struct SourceNewest
{
	char source[BK_SOURCE_ID_MAX + 1];
	int64_t newest_ms;
} SourceNewest;

/* Everything a scrape shows: copied whole under the mutex. */
typedef struct MetricsData
{
	int64_t start_ms;
	uint64_t archived;
	uint64_t duplicates;
	uint64_t conflicts;
	uint64_t rejected;
	uint64_t abandoned;
	uint64_t messages_lost;
	uint64_t archived_bytes;
	uint64_t errors[BK_METRICS_ERROR_KINDS];
	uint64_t commit_buckets[COMMIT_BUCKETS]; /* not cumulative */
	uint64_t commit_count;
	double commit_sum;
	BkMetricsLag *lags;
	int lag_count;
	SourceNewest *sources;
	int source_count;
	int source_alloc;
} MetricsData;

struct BkMetrics
{
	pthread_mutex_t lock;
	MetricsData data;
	struct MHD_Daemon *daemon;
	BkMetricsLogFn log_fn;
};

double
bk_metrics_clock(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double) now.tv_sec + (double) now.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ updates */

void
bk_metrics_object(BkMetrics *metrics, BkMetricsOutcome outcome,
				  const char *source, int64_t timestamp_ms,
				  uint64_t stored_bytes, double commit_seconds)
{
	MetricsData *data;
	size_t bucket = 0;

	if (metrics == NULL)
		return;
	data = &metrics->data;
	while (bucket < COMMIT_BUCKETS && commit_seconds > commit_buckets[bucket])
		bucket++;

	pthread_mutex_lock(&metrics->lock);
	if (bucket < COMMIT_BUCKETS)
		data->commit_buckets[bucket]++;
	data->commit_count++;
	data->commit_sum += commit_seconds;
	switch (outcome)
	{
		case BK_METRICS_ARCHIVED:
			data->archived++;
			data->archived_bytes += stored_bytes;
			break;
		case BK_METRICS_DUPLICATE:
			data->duplicates++;
			break;
		case BK_METRICS_CONFLICT:
			/* Not the source's history: it must not make the source look
			 * up to date. */
			data->conflicts++;
			pthread_mutex_unlock(&metrics->lock);
			return;
	}

	/*
	 * The source's newest archived time.  Sources are few (one per database
	 * server), so a linear search is fine.  Out of memory, the source stays
	 * unreported, and its RPO alert fires: better than a wrong value.
	 */
	{
		SourceNewest *entry = NULL;

		for (int sourceIdx = 0; sourceIdx < data->source_count; sourceIdx++)
			if (strcmp(data->sources[sourceIdx].source, source) == 0)
				entry = &data->sources[sourceIdx];
		if (entry == NULL && data->source_count == data->source_alloc)
		{
			int alloc = data->source_alloc ? 2 * data->source_alloc : 8;
			SourceNewest *grown =
				realloc(data->sources, (size_t) alloc * sizeof(*grown));

			if (grown != NULL)
			{
				data->sources = grown;
				data->source_alloc = alloc;
			}
		}
		if (entry == NULL && data->source_count < data->source_alloc)
		{
			entry = &data->sources[data->source_count++];
			bk_strlcpy(entry->source, source, sizeof(entry->source));
			entry->newest_ms = timestamp_ms;
		}
		if (entry != NULL && timestamp_ms > entry->newest_ms)
			entry->newest_ms = timestamp_ms;
	}
	pthread_mutex_unlock(&metrics->lock);
}

void
bk_metrics_rejected(BkMetrics *metrics)
{
	if (metrics == NULL)
		return;
	pthread_mutex_lock(&metrics->lock);
	metrics->data.rejected++;
	pthread_mutex_unlock(&metrics->lock);
}

void
bk_metrics_abandoned(BkMetrics *metrics)
{
	if (metrics == NULL)
		return;
	pthread_mutex_lock(&metrics->lock);
	metrics->data.abandoned++;
	pthread_mutex_unlock(&metrics->lock);
}

void
bk_metrics_messages_lost(BkMetrics *metrics, uint64_t count)
{
	if (metrics == NULL)
		return;
	pthread_mutex_lock(&metrics->lock);
	metrics->data.messages_lost += count;
	pthread_mutex_unlock(&metrics->lock);
}

void
bk_metrics_error(BkMetrics *metrics, BkMetricsError kind)
{
	if (metrics == NULL || (unsigned int) kind >= BK_METRICS_ERROR_KINDS)
		return;
	pthread_mutex_lock(&metrics->lock);
	metrics->data.errors[kind]++;
	pthread_mutex_unlock(&metrics->lock);
}

void
bk_metrics_set_lag(BkMetrics *metrics, const BkMetricsLag *lags, int count)
{
	BkMetricsLag *copy = NULL;

	if (metrics == NULL)
		return;
	/* Allocated outside the lock; out of memory, the old values stay. */
	if (count > 0)
	{
		copy = malloc((size_t) count * sizeof(*copy));
		if (copy == NULL)
			return;
		memcpy(copy, lags, (size_t) count * sizeof(*copy));
	}
	pthread_mutex_lock(&metrics->lock);
	free(metrics->data.lags);
	metrics->data.lags = copy;
	metrics->data.lag_count = count;
	pthread_mutex_unlock(&metrics->lock);
}

/* ------------------------------------------------------------ formatting */

/* A consistent copy of the data, arrays included; false: out of memory. */
static bool
metrics_copy(BkMetrics *metrics, MetricsData *copy)
{
	bool ok = true;

	pthread_mutex_lock(&metrics->lock);
	*copy = metrics->data;
	copy->lags = NULL;
	copy->sources = NULL;
	if (copy->lag_count > 0)
	{
		copy->lags = malloc((size_t) copy->lag_count * sizeof(*copy->lags));
		if (copy->lags != NULL)
			memcpy(copy->lags, metrics->data.lags,
				   (size_t) copy->lag_count * sizeof(*copy->lags));
		else
			ok = false;
	}
	if (ok && copy->source_count > 0)
	{
		copy->sources =
			malloc((size_t) copy->source_count * sizeof(*copy->sources));
		if (copy->sources != NULL)
			memcpy(copy->sources, metrics->data.sources,
				   (size_t) copy->source_count * sizeof(*copy->sources));
		else
			ok = false;
	}
	pthread_mutex_unlock(&metrics->lock);
	if (!ok)
	{
		free(copy->lags);
		free(copy->sources);
	}
	return ok;
}

/* A label value as the text format wants it: \\, \" and \n escaped. */
static void
put_label_value(FILE *out, const char *value)
{
	for (const char *c = value; *c != '\0'; c++)
	{
		if (*c == '\\')
			fputs("\\\\", out);
		else if (*c == '"')
			fputs("\\\"", out);
		else if (*c == '\n')
			fputs("\\n", out);
		else
			fputc(*c, out);
	}
}

static void
put_family(FILE *out, const char *name, const char *type, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
put_counter(FILE *out, const char *name, const char *help, uint64_t value)
{
	put_family(out, name, "counter", help);
	fprintf(out, "%s %" PRIu64 "\n", name, value);
}

static void
metrics_format(const MetricsData *data, FILE *out)
{
	uint64_t cumulative = 0;

	put_family(out, "bk_shipper_up", "gauge",
			   "1 while bk-shipper runs and serves metrics.");
	fputs("bk_shipper_up 1\n", out);
	put_family(out, "bk_shipper_start_time_seconds", "gauge",
			   "When bk-shipper started, in seconds since the epoch.");
	fprintf(out, "bk_shipper_start_time_seconds %.3f\n",
			(double) data->start_ms / 1000.0);

	put_counter(out, "bk_shipper_objects_archived_total",
				"Objects stored in the repository.", data->archived);
	put_counter(out, "bk_shipper_objects_duplicate_total",
				"Objects that arrived again with identical content, not "
				"stored twice.",
				data->duplicates);
	put_counter(out, "bk_shipper_objects_conflict_total",
				"Objects that arrived with content different from the "
				"archived copy, kept under conflicts/.",
				data->conflicts);
	put_counter(out, "bk_shipper_messages_rejected_total",
				"Messages that failed the keyless checks, kept in rejected/.",
				data->rejected);
	put_counter(out, "bk_shipper_attempts_abandoned_total",
				"Object attempts given up (their chunks stopped).",
				data->abandoned);
	put_counter(out, "bk_shipper_messages_lost_total",
				"Messages Kafka removed (retention) before they were stored.",
				data->messages_lost);
	put_counter(out, "bk_shipper_archived_bytes_total",
				"Bytes (frames, as stored) of the objects archived.",
				data->archived_bytes);

	put_family(out, "bk_shipper_errors_total", "counter",
			   "Errors bk-shipper logged, by kind.");
	for (int kind = 0; kind < BK_METRICS_ERROR_KINDS; kind++)
		fprintf(out, "bk_shipper_errors_total{kind=\"%s\"} %" PRIu64 "\n",
				error_kinds[kind], data->errors[kind]);

	put_family(out, "bk_shipper_repository_commit_seconds", "histogram",
			   "Time to make a complete object durable in the repository.");
	for (size_t bucket = 0; bucket < COMMIT_BUCKETS; bucket++)
	{
		cumulative += data->commit_buckets[bucket];
		fprintf(out,
				"bk_shipper_repository_commit_seconds_bucket{le=\"%g\"} "
				"%" PRIu64 "\n",
				commit_buckets[bucket], cumulative);
	}
	fprintf(out,
			"bk_shipper_repository_commit_seconds_bucket{le=\"+Inf\"} "
			"%" PRIu64 "\n",
			data->commit_count);
	fprintf(out, "bk_shipper_repository_commit_seconds_sum %.9g\n",
			data->commit_sum);
	fprintf(out, "bk_shipper_repository_commit_seconds_count %" PRIu64 "\n",
			data->commit_count);

	put_family(out, "bk_shipper_consumer_lag_messages", "gauge",
			   "Messages of an assigned partition not yet committed: the "
			   "high watermark minus the committed offset.");
	for (int lagIdx = 0; lagIdx < data->lag_count; lagIdx++)
	{
		fputs("bk_shipper_consumer_lag_messages{topic=\"", out);
		put_label_value(out, data->lags[lagIdx].topic);
		fprintf(out, "\",partition=\"%" PRId32 "\"} %" PRId64 "\n",
				data->lags[lagIdx].partition, data->lags[lagIdx].lag);
	}

	put_family(out, "bk_shipper_source_newest_archived_timestamp_seconds",
			   "gauge",
			   "Kafka time of the newest object archived (or found already "
			   "archived) for a source, in seconds since the epoch.");
	for (int sourceIdx = 0; sourceIdx < data->source_count; sourceIdx++)
	{
		fputs("bk_shipper_source_newest_archived_timestamp_seconds{source=\"",
			  out);
		put_label_value(out, data->sources[sourceIdx].source);
		fprintf(out, "\"} %.3f\n",
				(double) data->sources[sourceIdx].newest_ms / 1000.0);
	}
}

/* ------------------------------------------------------------ HTTP */

static enum MHD_Result
respond_text(struct MHD_Connection *connection, unsigned int status,
			 const char *content_type, char *body, size_t len,
			 enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *response;
	enum MHD_Result result;

	response = MHD_create_response_from_buffer(len, body, mode);
	if (response == NULL)
	{
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
							content_type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	result = MHD_queue_response(connection, status, response);
	MHD_destroy_response(response);
	return result;
}

static enum MHD_Result
handle_request(void *cls, struct MHD_Connection *connection, const char *url,
			   const char *method, const char *version, const char *upload,
			   size_t *upload_size, void **request_state)
{
	static char not_found[] = "not found: metrics are at " METRICS_PATH "\n";
	static char not_allowed[] = "only GET and HEAD are allowed\n";
	BkMetrics *metrics = cls;
	MetricsData copy;
	char *body = NULL;
	size_t len = 0;
	FILE *out;

	if (strcmp(url, METRICS_PATH) != 0)
		return respond_text(connection, MHD_HTTP_NOT_FOUND, "text/plain",
							not_found, strlen(not_found),
							MHD_RESPMEM_PERSISTENT);
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
		strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return respond_text(connection, MHD_HTTP_METHOD_NOT_ALLOWED,
							"text/plain", not_allowed, strlen(not_allowed),
							MHD_RESPMEM_PERSISTENT);

	if (!metrics_copy(metrics, &copy))
		return MHD_NO;
	out = open_memstream(&body, &len);
	if (out != NULL)
	{
		metrics_format(&copy, out);
		if (fclose(out) != 0)
		{
			free(body);
			body = NULL;
		}
	}
	free(copy.lags);
	free(copy.sources);
	if (body == NULL)
		return MHD_NO; /* out of memory: MHD closes the connection */
	return respond_text(connection, MHD_HTTP_OK, METRICS_CONTENT_TYPE, body,
						len, MHD_RESPMEM_MUST_FREE);
}

static void
mhd_log(void *cls, const char *fmt, va_list args)
{
	BkMetrics *metrics = cls;
	char message[512];
	size_t len;

	vsnprintf(message, sizeof(message), fmt, args);
	len = strlen(message);
	while (len > 0 && message[len - 1] == '\n')
		message[--len] = '\0';
	if (metrics->log_fn != NULL)
		metrics->log_fn(message);
}

/* A listening socket on exactly address; -1 with err naming it. */
static int
listen_on(const char *address, BkError *err)
{
	struct sockaddr_storage addr;
	socklen_t addr_len;
	int on = 1;
	int fd;

	if (!bk_cli_parse_listen_address("metrics_listen", address, &addr,
									 &addr_len, err))
		return -1;
	fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
	{
		bk_error_set(err, BK_ERR_CONFIG,
					 "could not listen on metrics_listen %s: socket: %s",
					 address, strerror(errno));
		return -1;
	}
	/* Restarts must not wait for the old connections' TIME_WAIT; a second
	 * listener is still refused (EADDRINUSE) on Linux. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (addr.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	if (bind(fd, (struct sockaddr *) &addr, addr_len) != 0 ||
		listen(fd, METRICS_CONNECTIONS) != 0)
	{
		int bind_errno = errno;

		close(fd);
		bk_error_set(err, BK_ERR_CONFIG,
					 "could not listen on metrics_listen %s: %s", address,
					 strerror(bind_errno));
		if (bind_errno == EADDRINUSE)
			bk_error_hint(err, "Another process, perhaps another bk-shipper, "
							   "listens there: give each shipper its own "
							   "metrics_listen port.");
		else if (bind_errno == EADDRNOTAVAIL)
			bk_error_hint(err, "The address is not one of this host's.");
		return -1;
	}
	return fd;
}

BkMetrics *
bk_metrics_start(const char *address, BkMetricsLogFn log_fn, BkError *err)
{
	BkMetrics *metrics = calloc(1, sizeof(*metrics));
	sigset_t all;
	sigset_t saved;
	int fd;

	if (metrics == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&metrics->lock, NULL);
	metrics->log_fn = log_fn;
	metrics->data.start_ms = bk_wall_ms();
	fd = listen_on(address, err);
	if (fd < 0)
	{
		bk_metrics_stop(metrics);
		return NULL;
	}

	/*
	 * The HTTP thread inherits a mask with every signal blocked, so that
	 * SIGTERM and SIGINT always reach the main thread, whose loop checks
	 * the flag they set.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	/* The logger first: MHD reports options before it with its own. */
	metrics->daemon = MHD_start_daemon(
		MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
		NULL, NULL, handle_request, metrics, MHD_OPTION_EXTERNAL_LOGGER,
		mhd_log, metrics, MHD_OPTION_LISTEN_SOCKET, fd,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int) METRICS_CONNECTIONS,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) METRICS_TIMEOUT_S,
		MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (metrics->daemon == NULL)
	{
		close(fd);
		bk_metrics_stop(metrics);
		bk_error_set(err, BK_ERR_CONFIG,
					 "could not serve metrics on metrics_listen %s "
					 "(libmicrohttpd failed to start; see above)",
					 address);
		return NULL;
	}
	return metrics;
}

void
bk_metrics_stop(BkMetrics *metrics)
{
	if (metrics == NULL)
		return;
	/* Joins the HTTP thread and closes the listening socket. */
	if (metrics->daemon != NULL)
		MHD_stop_daemon(metrics->daemon);
	pthread_mutex_destroy(&metrics->lock);
	free(metrics->data.lags);
	free(metrics->data.sources);
	free(metrics);
}
