/*
 * metrics.h
 *		bk-shipper's Prometheus endpoint (metrics_listen): counters that the
 *		main loop updates, served as text by an HTTP thread.
 *
 * The main loop is the only writer; libmicrohttpd's thread takes a copy
 * under the same mutex and formats that, so a scrape never sees an object
 * counted as archived but not yet in the latency histogram, and the main
 * loop never waits for a slow client.  Every function accepts a NULL
 * BkMetrics (no metrics_listen) and then does nothing.
 */
#ifndef BK_SHIPPER_METRICS_H
#define BK_SHIPPER_METRICS_H

#include <stdint.h>

#include "bk_error.h"
#include "bk_topics.h"

/* The kind label of bk_shipper_errors_total. */
typedef enum BkMetricsError
{
	BK_METRICS_ERROR_KAFKA,      /* consumer errors, failed offset commits */
	BK_METRICS_ERROR_REPOSITORY, /* spool, upload, commit, quarantine */
	BK_METRICS_ERROR_AUDIT,      /* audit events not queued or not delivered */
	BK_METRICS_ERROR_MEMORY,
	BK_METRICS_ERROR_KINDS
} BkMetricsError;

/* What committing a complete object into the repository found. */
typedef enum BkMetricsOutcome
{
	BK_METRICS_ARCHIVED,
	BK_METRICS_DUPLICATE,
	BK_METRICS_CONFLICT
} BkMetricsOutcome;

/* One assigned partition's consumer lag, in messages. */
typedef struct BkMetricsLag
{
	char topic[BK_TOPIC_NAME_MAX + 1];
	int32_t partition;
	int64_t lag;
} BkMetricsLag;

typedef struct BkMetrics BkMetrics;

/* Where libmicrohttpd's own complaints go (one line, no newline). */
typedef void (*BkMetricsLogFn)(const char *message);

/*
 * Listen on address ("127.0.0.1:9187", "[::1]:9187") and serve GET /metrics
 * from a thread of its own.  NULL with err set (BK_ERR_CONFIG, naming the
 * address) when the address is malformed or cannot be bound.
 */
extern BkMetrics *bk_metrics_start(const char *address, BkMetricsLogFn log_fn,
								   BkError *err);
extern void bk_metrics_stop(BkMetrics *metrics);

/* A monotonic clock in seconds, for the commit latency. */
extern double bk_metrics_clock(void);

/*
 * A complete object committed: outcome, its source, the broker time of its
 * newest chunk (ms), its stored bytes and how long the repository took.
 */
extern void bk_metrics_object(BkMetrics *metrics, BkMetricsOutcome outcome,
							  const char *source, int64_t timestamp_ms,
							  uint64_t stored_bytes, double commit_seconds);
extern void bk_metrics_rejected(BkMetrics *metrics);
extern void bk_metrics_abandoned(BkMetrics *metrics);
/* Messages Kafka removed before this shipper read them (retention). */
extern void bk_metrics_messages_lost(BkMetrics *metrics, uint64_t count);
extern void bk_metrics_error(BkMetrics *metrics, BkMetricsError kind);

/* Replace the lag of every assigned partition (revoked ones disappear). */
extern void bk_metrics_set_lag(BkMetrics *metrics, const BkMetricsLag *lags,
							   int count);

#endif /* BK_SHIPPER_METRICS_H */
