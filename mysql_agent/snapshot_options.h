/*
 * snapshot_options.h
 *		bk_snapshot()'s argument: a JSON object or key=value[,key=value].
 *		No <mysql.h>: the unit tests build it alone.
 */
#ifndef BK_AGENT_SNAPSHOT_OPTIONS_H
#define BK_AGENT_SNAPSHOT_OPTIONS_H

#include <stdbool.h>

#include "bk_error.h"

#define SNAPSHOT_JOBS_DEFAULT 2
#define SNAPSHOT_JOBS_MAX     16
#define SNAPSHOT_LABEL_MAX    200

typedef struct SnapshotOptions
{
	bool wait;
	int jobs;
	char label[SNAPSHOT_LABEL_MAX + 1];
} SnapshotOptions;

/* Parse bk_snapshot()'s argument: JSON object or key=value[,key=value]. */
extern bool snapshot_parse_options(const char *text, SnapshotOptions *options,
								   BkError *err);

#endif /* BK_AGENT_SNAPSHOT_OPTIONS_H */
