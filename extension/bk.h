/*
 * bk.h
 *		Declarations shared by the files of the bk extension.
 *
 * The extension has one file per part:
 *
 *	 bk.c			_PG_init: settings (bk.*), shared memory, worker registration
 *	 bk_archive.c	the archive module (archive_library = 'bk'): every WAL
 *					file PostgreSQL hands over is compressed, encrypted and
 *					produced to Kafka through libbk, and reported archived
 *					only once Kafka acknowledged every chunk
 *	 bk_confirm.c	bk.wait_for = 'repository': waiting for the shipper's
 *					audit event that says the object is in the repository
 *	 bk_status.c	SQL function bk_status()
 *	 bk_worker.c	background worker: RPO samples and bk.target_rpo
 *	 bk_snapshot.c	bk_snapshot(): base backups taken by a background worker
 *					and streamed to Kafka; progress and cancellation
 *	 bk_blockmap.c	page digests of each snapshot's relation files, which
 *					tell the next incremental snapshot what changed
 *
 * What the archiver, the worker and the backends share lives in one
 * spinlock-protected struct in shared memory.  It exists only when bk is in
 * shared_preload_libraries (shared memory can only be requested then); the
 * archive module still works without it, it just keeps no status.
 */
#ifndef BK_H
#define BK_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "postmaster/pgarch.h"
#include "storage/block.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

#include "bk_error.h"
#include "bk_kafka.h"
#include "bk_keys.h"

/* Samples of the WAL position kept for the RPO: one per second, an hour. */
#define BK_RPO_SAMPLES 3600

/* Room for any file name the archiver hands over (MAX_XFN_CHARS is 40). */
#define BK_FILE_NAME_LEN 64

/* Text of the last failure kept for bk_status(). */
#define BK_FAILURE_LEN 512

/* Snapshots known to shared memory: the running one and recent ones. */
#define BK_SNAPSHOT_SLOTS     8
#define BK_SNAPSHOT_ID_LEN    32
#define BK_SNAPSHOT_KIND_LEN  8 /* full, diff, incr */
#define BK_SNAPSHOT_LABEL_LEN 256

/* The LWLock tranche of snapshot_signal_lock (BkSharedState). */
#define BK_SNAPSHOT_LOCK_TRANCHE "bk snapshot"

/*
 * bk.snapshot_range_size is 0 (files are never split) or at least this:
 * smaller ranges only multiply a snapshot's objects, its record's entries
 * and its work list, without reading any faster.
 */
#define BK_SNAPSHOT_RANGE_MIN_BYTES (1024 * 1024)

/* Most processes that copy one snapshot's files (bk.snapshot_jobs). */
#define BK_SNAPSHOT_MAX_JOBS 32

typedef enum BkSnapshotState
{
	BK_SNAPSHOT_FREE,
	BK_SNAPSHOT_STARTING, /* requested, worker not yet running */
	BK_SNAPSHOT_RUNNING,
	BK_SNAPSHOT_COMPLETE,
	BK_SNAPSHOT_FAILED,
	BK_SNAPSHOT_CANCELLED
} BkSnapshotState;

/*
 * One snapshot, as the requesting backend, the worker and the progress view
 * see it.  The worker owns the progress fields; cancel_requested is the only
 * field another process writes while it runs.
 *
 * pid is the worker's while it is alive: the worker sets it, and clears it
 * under snapshot_signal_lock before it exits (snap_forget_worker_pid).  So
 * a process that holds that lock and finds pid set is signalling a process
 * that has not exited, whose PID cannot belong to anyone else yet.
 *
 * helper_pids are the helpers' (0: none), each set by the helper before it
 * connects and cleared as it exits, so that a caller waiting in
 * bk_snapshot() can see whether one waits for its transaction.  Only read
 * for that: nobody signals a helper through them.
 */
typedef struct BkSnapshotSlot
{
	BkSnapshotState state;
	char id[BK_SNAPSHOT_ID_LEN];
	char kind[BK_SNAPSHOT_KIND_LEN];
	char parent[BK_SNAPSHOT_ID_LEN];
	char label[BK_SNAPSHOT_LABEL_LEN];      /* in the database's encoding */
	char label_utf8[BK_SNAPSHOT_LABEL_LEN]; /* for the record and the audit */
	bool fast;
	int jobs;           /* bk.snapshot_jobs of the caller */
	int32 range_blocks; /* bk.snapshot_range_size of the caller */
	Oid database;
	int pid;
	int helper_pids[BK_SNAPSHOT_MAX_JOBS];
	bool cancel_requested;
	char phase[32];
	XLogRecPtr start_lsn;
	XLogRecPtr stop_lsn;
	TimestampTz requested_time;
	TimestampTz start_time;
	TimestampTz stop_time;
	int64 files_total;
	int64 files_done;
	int64 bytes_total;
	int64 bytes_read;
	int64 bytes_sent;
	int64 checksum_failures;
	char error[BK_FAILURE_LEN];
	char error_hint[BK_FAILURE_LEN]; /* what to do about it, if known */
} BkSnapshotSlot;

/* A schema-qualified, quoted table name (two quoted identifiers). */
#define BK_QUALIFIED_NAME_LEN (4 * NAMEDATALEN + 8)

/*
 * The page digests of one relation file (bk_blockmap.c): one per whole
 * block, in block order.
 */
typedef struct BkBlockMap
{
	uint64 *digests; /* malloc'd, capacity entries */
	uint32 count;
	uint32 capacity;
	uint8 *partial; /* malloc'd, BLCKSZ: a block not yet complete */
	size_t partial_len;
} BkBlockMap;

/* Maps of one snapshot, queued to be written in batches. */
typedef struct BkBlockMapWriter
{
	char table[BK_QUALIFIED_NAME_LEN];
	char snapshot_id[BK_SNAPSHOT_ID_LEN];
	MemoryContext context;
	List *paths;        /* char * */
	List *first_blocks; /* int: a range's first block, 0 for a file */
	List *values;       /* bytea * */
	size_t queued_bytes;
} BkBlockMapWriter;

/* Values of bk.wait_for. */
typedef enum BkWaitFor
{
	BK_WAIT_FOR_KAFKA,
	BK_WAIT_FOR_REPOSITORY
} BkWaitFor;

/*
 * One RPO sample: at time, the last important WAL record started at
 * important_lsn and WAL was flushed up to flush_lsn.
 */
typedef struct BkRpoSample
{
	XLogRecPtr important_lsn;
	XLogRecPtr flush_lsn;
	TimestampTz time;
} BkRpoSample;

/* Status shared by the archiver, the worker and bk_status(). */
typedef struct BkSharedState
{
	slock_t mutex;

	/* Written by the archiver. */
	uint64 archived_count;
	uint64 archived_bytes; /* plaintext bytes of archived files */
	uint64 sent_bytes;     /* frame bytes acknowledged by Kafka */
	char last_archived_file[BK_FILE_NAME_LEN];
	TimestampTz last_archived_time;
	XLogRecPtr last_archived_end_lsn; /* end of the newest archived segment */
	uint64 failed_count;
	char last_failed_file[BK_FILE_NAME_LEN];
	TimestampTz last_failed_time;
	char last_failure[BK_FAILURE_LEN];

	/*
	 * The last fatal Kafka producer error of any process (BkKafkaAlarm):
	 * acknowledged WAL or snapshot files may be lost.  Cleared when a
	 * snapshot that started after it completes.
	 */
	char kafka_alarm[BK_FAILURE_LEN];
	TimestampTz kafka_alarm_time;

	/* Written by the worker. */
	uint64 forced_switches;
	int rpo_next;  /* where the next sample goes */
	int rpo_count; /* valid samples, at most BK_RPO_SAMPLES */
	BkRpoSample rpo[BK_RPO_SAMPLES];

	/* Written by bk_snapshot() and the snapshot workers. */
	BkSnapshotSlot snapshots[BK_SNAPSHOT_SLOTS];

	/*
	 * Held (shared) by whoever signals a snapshot worker, across the kill(),
	 * and (exclusive) by the worker to clear its pid before it exits.
	 */
	LWLock *snapshot_signal_lock;
} BkSharedState;

/* The shared status; NULL unless bk is in shared_preload_libraries. */
extern BkSharedState *bk_shared;

/* Settings (bk.c). */
extern char *bk_kafka_brokers;
extern char *bk_kafka_properties;
extern char *bk_kafka_properties_file;
extern const char *bk_kafka_file_properties; /* its list, or NULL */
extern char *bk_topic_prefix;
extern char *bk_source_id_setting;
extern char *bk_key_file;
extern int bk_chunk_size;
extern int bk_kafka_timeout_ms;
extern int bk_target_rpo_s;
extern int bk_wait_for;
extern int bk_repository_timeout_ms;
extern int bk_shutdown_timeout_ms;
extern int bk_archive_batch;
/* Kafka producers of the archiver's batches: bk.archive_producers. */
#define BK_ARCHIVE_PRODUCERS_MAX 4
extern int bk_archive_producers;
extern int bk_archive_jobs;
extern int bk_snapshot_jobs;
extern int bk_snapshot_range_blocks;

/* bk.c */
extern PGDLLEXPORT void _PG_init(void);
extern void bk_effective_source_id(char *out, size_t out_len);
extern const char *bk_wait_for_name(int wait_for);
extern char *bk_sentence(const char *text);
extern int bk_sqlstate(BkErrorCode code);

/* bk_archive.c */
extern PGDLLEXPORT void _PG_archive_module_init(ArchiveModuleCallbacks *cb);
extern void bk_source_kafka_settings(BkKafkaSettings *settings,
									 const char *client_id);
extern bool bk_source_key(const BkKey **key, BkError *err);

/* bk_confirm.c */
extern bool bk_confirm_prepare(const BkKafkaSettings *settings,
							   const char *audit_topic,
							   BkInterruptFn interrupted, BkError *err);
extern bool bk_confirm_wait(const char *source_id, const char *object,
							const char *attempt_hex, int timeout_ms,
							BkInterruptFn interrupted, BkError *err);
extern bool bk_confirm_wait_snapshot(const char *source_id,
									 const char *snapshot_id,
									 const char *const *own_parts,
									 int own_part_count, int64 data_objects,
									 int timeout_ms, BkInterruptFn interrupted,
									 void *interrupt_arg, BkError *err);
extern int64 bk_confirm_last_progress_ms(void);
extern void bk_confirm_reset(void);

/* Kafka log messages collected during a library call (bk_archive.c). */
extern void bk_kafka_log_collect(void *arg, int level, const char *facility,
								 const char *message);
extern void bk_kafka_log_flush(void);

/*
 * Fatal producer errors (BkKafkaAlarm) of this process: kept in the shared
 * status at once, logged as a WARNING by the next bk_kafka_log_flush.
 */
extern void bk_kafka_alarm_collect(void *arg, const BkKafkaAlarm *alarm);

/* A snapshot that started at start_time completed: older alarms are over. */
extern void bk_kafka_alarm_covered(TimestampTz start_time);

/* bk_snapshot.c */
extern PGDLLEXPORT void bk_snapshot_worker_main(Datum main_arg);
extern PGDLLEXPORT void bk_snapshot_helper_main(Datum main_arg);
extern PGDLLEXPORT void bk_snapshot_cleanup_main(Datum main_arg);
extern bool bk_snapshot_start_cleanup(void);

/* bk_blockmap.c */
extern uint64 bk_block_digest(const uint8 *block);
extern void bk_blockmap_start(BkBlockMap *map, uint64 file_size);
extern void bk_blockmap_add(BkBlockMap *map, const uint8 *data, size_t len);
extern void bk_blockmap_release(BkBlockMap *map);
/* A file's path as bk's tables store it (text columns). */
extern char *bk_path_as_text(const char *path);
extern bool bk_blockmap_load(const char *table, const char *snapshot_id,
							 const char *path, BkBlockMap *map);
extern void bk_blockmap_writer_init(BkBlockMapWriter *writer, const char *table,
									const char *snapshot_id);
extern bool bk_blockmap_queue(BkBlockMapWriter *writer, const char *path,
							  BlockNumber first_block, const BkBlockMap *map);
extern bool bk_blockmap_pending(const BkBlockMapWriter *writer);
extern void bk_blockmap_flush(BkBlockMapWriter *writer);
extern void bk_blockmap_prune(const char *blocks_table,
							  const char *history_table);

/* bk_worker.c */
extern void bk_worker_register(void);
extern PGDLLEXPORT void bk_worker_main(Datum main_arg);

#endif /* BK_H */
