/*
 * snapshot.h
 *		Logical snapshots of a MariaDB server at exact binlog coordinates,
 *		without a global read lock (snapshot.c), and the jobs that run them.
 */
#ifndef BK_AGENT_SNAPSHOT_H
#define BK_AGENT_SNAPSHOT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "agent.h"
#include "snapshot_options.h"

#define SNAPSHOT_ID_LEN       25 /* YYYYMMDDTHHMMSSZ-xxxxxxxx */
#define SNAPSHOT_PART_DEFAULT ((uint64_t) 32 * 1024 * 1024)
#define SNAPSHOT_LOCK_WAIT_S  10
#define SNAPSHOT_ATTEMPTS     5 /* tries at the consistent point */
/* The server's largest net_write_timeout (a year). */
#define SNAPSHOT_NET_WRITE_TIMEOUT_MAX_S 31536000
/* The server's largest wait_timeout on Linux (a year). */
#define SNAPSHOT_WAIT_TIMEOUT_S 31536000

typedef enum SnapshotState
{
	SNAPSHOT_RUNNING,
	SNAPSHOT_DONE,
	SNAPSHOT_FAILED,
	SNAPSHOT_CANCELLED
} SnapshotState;

/* One snapshot run; shared by its threads and the control calls. */
typedef struct SnapshotJob
{
	Agent *agent;
	SnapshotOptions options;
	char id[SNAPSHOT_ID_LEN + 1];
	pthread_t thread;
	bool joined; /* thread joined: under snapshot_start_lock, or at exit */
	volatile bool cancel; /* set by bk_snapshot_cancel or a caller gone */

	/*
	 * Under the agent's snapshot_lock: the control calls that still use the
	 * job (its bk_snapshot() caller, waiting or answering), and whether it
	 * has been replaced as agent->snapshot meanwhile.  A replaced job is
	 * freed by whichever of the replacing call and its last user comes last.
	 */
	int users;
	bool replaced;

	pthread_mutex_t lock; /* guards what follows */
	SnapshotState state;
	int tables_total;
	int tables_done;
	uint64_t rows;
	uint64_t bytes; /* plaintext bytes of table data */
	uint64_t sent;  /* bytes sent to Kafka, all objects */
	json_t *result; /* the summary, once done */
	char error[BK_ERROR_MESSAGE_MAX + BK_ERROR_HINT_MAX + 8];
} SnapshotJob;

/* Start a job in its own thread (one at a time per agent). */
extern SnapshotJob *snapshot_start(Agent *agent, const SnapshotOptions *options,
								   BkError *err);

/* The job's state as JSON (for bk_status and bk_snapshot's answer). */
extern json_t *snapshot_progress_json(SnapshotJob *job);

/*
 * Wait for the job's thread, unless done before (a job that stays the
 * agent's current one may be joined by several calls in turn); after this
 * the job is only read.
 */
extern void snapshot_join(SnapshotJob *job);

/* snapshot_join, waiting at most ms: false if the thread still runs. */
extern bool snapshot_join_within(SnapshotJob *job, int ms);

/* Free a joined job and its result. */
extern void snapshot_free(SnapshotJob *job);

#endif /* BK_AGENT_SNAPSHOT_H */
