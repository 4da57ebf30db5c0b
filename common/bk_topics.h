/*
 * bk_topics.h
 *		Creating and checking bk's Kafka topics.
 *
 * bk never relies on broker auto-creation: "bk init"
 * and the shipper at start call bk_topics_ensure, which creates what is
 * missing with settings fit for a backup stream and reports, for existing
 * topics, every setting weaker than a backup needs.  Three findings are
 * errors, not warnings, because they lose data or stop archiving with
 * certainty rather than under some failure: compaction (keeps only the
 * newest message per key, and all of a source's chunks share its key), a
 * max.message.bytes below our largest message (every large chunk would be
 * refused), and a data topic without message.timestamp.type=LogAppendTime
 * (without broker time the shipper never gives up a stalled attempt).
 */
#ifndef BK_TOPICS_H
#define BK_TOPICS_H

#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "bk_error.h"

typedef enum BkTopicKind
{
	BK_TOPIC_WAL,
	BK_TOPIC_SNAPSHOT,
	BK_TOPIC_BINLOG,
	BK_TOPIC_AUDIT,
	BK_TOPIC_COUNT
} BkTopicKind;

#define BK_TOPIC_NAME_MAX                   249
#define BK_TOPIC_PREFIX_DEFAULT             "bk"
#define BK_TOPIC_PARTITIONS_DEFAULT         6
#define BK_TOPIC_RETENTION_DEFAULT_MS       ((int64_t) 7 * 24 * 3600 * 1000)
#define BK_TOPIC_AUDIT_RETENTION_DEFAULT_MS ((int64_t) 90 * 24 * 3600 * 1000)
#define BK_TOPIC_RETENTION_MIN_MS           ((int64_t) 24 * 3600 * 1000)

/* "<prefix>.wal" etc.; fails on a prefix Kafka would not accept. */
extern bool bk_topic_name(const char *prefix, BkTopicKind kind, char *out,
						  size_t out_len, BkError *err);

typedef struct BkTopicPolicy
{
	const char *prefix;
	int partitions;             /* for new topics; 0: default */
	int replication_factor;     /* for new topics; 0: min(3, brokers) */
	int64_t retention_ms;       /* data topics; 0: default */
	int64_t audit_retention_ms; /* 0: default */
	uint32_t chunk_size;        /* largest chunk the sources will send */
	int timeout_ms;             /* per admin request; 0: 30 s */
} BkTopicPolicy;

typedef enum BkReportLevel
{
	BK_REPORT_INFO,
	BK_REPORT_WARNING,
	BK_REPORT_ERROR
} BkReportLevel;

typedef void (*BkTopicReportFn)(void *arg, BkReportLevel level,
								const char *topic, const char *message);

typedef struct BkTopicResult
{
	int brokers;
	int created;
	int warnings;
	int errors;
} BkTopicResult;

/*
 * Create (if create) and check the four topics.  Every finding goes to
 * report; returns false when a topic is missing (and create is false), when
 * creation fails, when Kafka cannot be reached, or when a finding is an
 * error.
 */
extern bool bk_topics_ensure(rd_kafka_t *rk, const BkTopicPolicy *policy,
							 bool create, BkTopicReportFn report,
							 void *report_arg, BkTopicResult *result,
							 BkError *err);

#endif /* BK_TOPICS_H */
