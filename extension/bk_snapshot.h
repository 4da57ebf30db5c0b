/*
 * bk_snapshot.h
 *		What the files of SELECT bk_snapshot() share (extension-internal).
 *
 * The backup runs in a dynamic background worker, not in the calling
 * backend.  A backup of a large cluster takes hours; a backend doing it would
 * hold a snapshot (and so an xmin that stops vacuum) for all that time and
 * would die with its session.  The worker takes no snapshot while it copies
 * files (it opens short transactions only to read and record the snapshot
 * history), survives the caller, and can be watched (bk_snapshot_progress)
 * and cancelled (bk_snapshot_cancel).  A caller that waits in SELECT
 * bk_snapshot() holds its statement's snapshot all the while; CALL
 * bk_snapshot_wait(id) waits holding none (it commits first).
 *
 * Why not PostgreSQL's own BASE_BACKUP with a bk backup target: a backup
 * target (BaseBackupAddTarget) is reachable only through the replication
 * protocol, so SELECT bk_snapshot() could not start it without a
 * replication connection back to the server, and the incremental mode below
 * needs per-page decisions BASE_BACKUP cannot make.  So the worker drives
 * do_pg_backup_start/do_pg_backup_stop (the non-exclusive API pg_backup_start
 * uses) itself and applies the exclusion and checksum rules of PostgreSQL
 * 15's basebackup.c: pg_wal and the transient directories (pg_stat_tmp,
 * pg_replslot, pg_dynshmem, pg_notify, pg_serial, pg_snapshots,
 * pg_subtrans) are kept empty; postmaster.pid and friends, pgsql_tmp files,
 * temporary relations and the non-init forks of unlogged relations are
 * skipped; page checksums are verified as pages are read (a failing page is
 * read again once before it is reported); pg_control is read last.
 *
 * Everything is produced as objects of kind "snapshot", named and encoded as
 * docs/snapshot-format.md specifies, keyed by source and object name so
 * several shippers can share one snapshot.  backup_label and tablespace_map
 * go into the snapshot, never into the source's data directory.  The
 * snapshot record (snapshot.json) goes last: without it a snapshot is never
 * restorable, which is what a cancelled snapshot or a crash mid-snapshot
 * must leave behind.
 *
 * Parallel copying (bk.snapshot_jobs > 1): the worker lists the files into
 * a work list in dynamic shared memory and starts bk.snapshot_jobs - 1
 * helper workers.  Every process, the worker included, takes the next file
 * from the list (largest first, so the last files to finish are small ones),
 * sends it through a Kafka producer of its own, and writes what it found
 * (size, digest, pages, checksum failures) into the file's entry.  A file
 * larger than bk.snapshot_range_size is several entries, one per range,
 * each its own object with its own SHA-256 and page digests, so that one
 * 1 GiB relation segment is read by several processes at once.  Helpers
 * report done only once Kafka acknowledged everything they sent; the worker
 * then reads pg_control, stops backup mode and writes the record from the
 * entries, in listing order.  A helper that fails or dies fails the
 * snapshot; a worker that fails stops its helpers first.
 *
 * Differential ("diff", parent = the last full) and incremental ("incr",
 * parent = the last snapshot of any kind) snapshots send the main forks of
 * relations the parent also had as the pages that changed: the page's LSN
 * is at or after the parent's start LSN, or its digest differs from the one
 * the parent kept for that block (bk_blockmap.c: PostgreSQL changes some
 * pages without moving their LSN), or the parent had no such block, or the
 * page claims an LSN beyond the current WAL position.  Everything else goes
 * whole (see the spec for why: visibility-map and free-space-map forks
 * change without a new page LSN, and FILE_COPY database creation copies
 * pages with old LSNs), and so does a main fork whose parent kept no
 * digests.  Pages are chosen in a first pass that also checksums the whole
 * file, and kept in a spool file under base/pgsql_tmp until they are sent,
 * so the object holds exactly the bytes that pass read.  Every snapshot
 * keeps the digests of every main fork page it read, for the next one.
 *
 * The history of snapshots (which one is the parent, and the parent's file
 * list) is kept in the extension's table bk_snapshot_history, the page
 * digests in bk_snapshot_blocks.
 *
 * Threads: as in the archive module, only this process's own thread calls
 * PostgreSQL.  The callbacks libbk calls while producing (reading the next
 * chunk, asking whether to stop) use plain system calls and pure functions
 * (pg_checksum_page) only, never ereport or palloc.
 */
#ifndef BK_SNAPSHOT_H
#define BK_SNAPSHOT_H

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "catalog/catalog.h"
#include "catalog/pg_type_d.h"
#include "common/relpath.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/bufpage.h"
#include "storage/checksum.h"
#include "storage/dsm.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "storage/reinit.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "bk.h"
#include "bk_audit.h"
#include "bk_crc32c.h"
#include "bk_crypto.h"
#include "bk_frame.h"
#include "bk_kafka.h"
#include "bk_snapshot_format.h"
#include "bk_topics.h"
#include "bk_util.h"

/* Blocks read at a time when scanning a relation file. */
#define SCAN_BLOCKS 128

/*
 * Bytes a copying process keeps queued or in flight for Kafka: four
 * produce requests of four chunks.  A deeper queue does not go faster (one
 * request is in flight at a time), and librdkafka 2.0's broker thread
 * burns CPU walking a long queue while it waits.
 */
#define SNAP_KAFKA_WINDOW_BYTES (16 * 1024 * 1024)

/*
 * How long a partly filled produce request waits for more (linger.ms).  A
 * copying process queues files back to back and flushes once, at the end,
 * so a long linger costs no latency; librdkafka's default short one let its
 * broker thread poll without sleeping whenever a request of five messages
 * or more was in flight and another was ready behind it (the idempotent
 * producer counts its limit of five requests in flight in messages): 40%
 * of the worker's CPU (BENCHMARKS.md).  With the first message waiting
 * less than this, the thread sleeps until the broker answers.
 */
#define SNAP_KAFKA_LINGER_MS 1000

/*
 * Most ranges one snapshot's work list may hold.  Each is an item in
 * dynamic shared memory (about 170 bytes), an object and an entry of the
 * record: a million is 1 TB at the smallest range size, 128 TB at the
 * default.  Beyond that the snapshot fails as it lists its files, before
 * it copies any, naming bk.snapshot_range_size.
 */
#define SNAP_MAX_RANGES 1000000

/*
 * The running snapshot's database and id, while its history row says
 * "running": what tells, after a crash-restart has wiped shared memory,
 * which row to fail (bk_snapshot_start_cleanup).  Under pg_stat_tmp, whose
 * contents neither snapshots nor base backups copy, and which PostgreSQL
 * does not empty at start (pg_stat_statements keeps its texts there).
 */
#define SNAP_RUNNING_FILE PG_STAT_TMP_DIR "/bk_snapshot.running"

/* Checksum failures reported per file before we stop listing them. */
#define FAILURES_LISTED_PER_FILE 5

/* One file or directory found in the data directory. */
typedef struct SnapEntry
{
	char *path; /* relative to the data directory */
	bool is_dir;
	mode_t mode;
	time_t mtime;
	off_t size;
	bool checksummed;         /* a relation file whose pages carry checksums */
	bool main_fork;           /* a relation main fork: incremental candidate */
	BlockNumber segment_base; /* first block number of this segment file */
} SnapEntry;

/*
 * One file of the work list, or one range of a file larger than
 * bk.snapshot_range_size (the ranges of a file are consecutive items that
 * share its path): what the listing found, then what copying it found,
 * written by the process that copied it.
 */
typedef struct SnapWorkItem
{
	Size path_offset; /* in the work list's path area */
	mode_t mode;
	time_t mtime;
	off_t size; /* a ranged file's: as listed, for every range */
	bool checksummed;
	bool main_fork;
	bool parent_has; /* the parent snapshot has this file */
	BlockNumber segment_base;
	int range_count; /* ranges of the file; 0: sent as one object */
	int range_index;
	off_t range_offset; /* a multiple of BLCKSZ */
	off_t range_length;

	/* The outcome. */
	bool sent;     /* queued to Kafka (acknowledged once its sender is done) */
	bool vanished; /* gone before it was opened: not in the snapshot */
	bool incremental;
	bool no_parent_digests; /* the parent kept no digests: sent whole */
	int64 blocks;
	int64 objects;
	int64 bytes_read;
	int64 bytes_sent;
	int failures;
	BlockNumber failed_blocks[FAILURES_LISTED_PER_FILE];
	uint8 sha256[BK_SHA256_LEN]; /* of the file, or of the range */
	uint32
		crc32c; /* a range's, as read: the manifest's CRC-32C combines them */
} SnapWorkItem;

typedef enum SnapHelperState
{
	SNAP_HELPER_NOT_STARTED,
	SNAP_HELPER_COPYING,
	SNAP_HELPER_DONE, /* everything it sent is acknowledged */
	SNAP_HELPER_FAILED
} SnapHelperState;

/*
 * The work list, in dynamic shared memory: header, items, the order in
 * which they are handed out, then the paths.  The leader writes everything
 * before it starts helpers; afterwards the mutex protects next, stop and the
 * helper fields, and each item belongs to the process that took it.
 */
typedef struct SnapWork
{
	slock_t mutex;
	char source_id[BK_SOURCE_ID_MAX + 1];
	char snapshot_topic[BK_TOPIC_NAME_MAX + 1];
	XLogRecPtr start_lsn;
	XLogRecPtr parent_start_lsn;
	char parent_id[BK_SNAPSHOT_ID_LEN];       /* "" for a full snapshot */
	char blocks_table[BK_QUALIFIED_NAME_LEN]; /* the page digests */
	int count;                                /* items */
	int queued; /* entries of order[]: every item but pg_control */
	int next;   /* next entry of order[] to hand out */
	bool stop;  /* a process gave up: the others take no more files */
	SnapHelperState helper_state[BK_SNAPSHOT_MAX_JOBS];
	char helper_error[BK_FAILURE_LEN];      /* the first helper failure's */
	char helper_error_hint[BK_FAILURE_LEN]; /* and its hint, if any */
	int helper_error_helper;                /* whose it is */
	bool helper_error_own; /* it failed of itself, not stopped by a cancel
							* or by another process giving up */
	Size order_offset;
	Size paths_offset;
	SnapWorkItem items[FLEXIBLE_ARRAY_MEMBER];
} SnapWork;

/* What a helper is told at start (in bgw_extra). */
typedef struct SnapHelperArgs
{
	int slot_index;
	int helper;
	dsm_handle work_handle;
} SnapHelperArgs;

/* Everything one snapshot run needs. */
typedef struct SnapRun
{
	BkSnapshotSlot *slot;
	char id[BK_SNAPSHOT_ID_LEN];
	char kind[BK_SNAPSHOT_KIND_LEN];
	char source_id[BK_SOURCE_ID_MAX + 1];
	char topic_prefix[BK_TOPIC_NAME_MAX + 1]; /* bk.topic_prefix */
	char snapshot_topic[BK_TOPIC_NAME_MAX + 1];
	char audit_topic[BK_TOPIC_NAME_MAX + 1];

	char *history_table; /* quoted, in the extension's schema */
	char *blocks_table;  /* likewise: bk_snapshot_blocks */

	/* The work list (every process); the helpers sharing it (leader). */
	SnapWork *work;
	dsm_segment *work_segment;
	int helper;        /* -1 in the leader, else this helper's number */
	int control_index; /* pg_control's item, sent last; -1 if none */
	BackgroundWorkerHandle *helpers[BK_SNAPSHOT_MAX_JOBS];
	int helper_count;

	/* Parent (diff/incr). */
	char *parent_id;
	XLogRecPtr parent_start_lsn;
	char **parent_files; /* sorted, for bsearch */
	int parent_file_count;

	/* Page digests: of the file being read, of its parent, and the writer. */
	BkBlockMap map;
	BkBlockMap parent_map;
	char parent_map_path[MAXPGPATH]; /* whose parent_map is loaded ("": none) */
	bool parent_map_found;
	BkBlockMapWriter map_writer;

	/* libbk objects (malloc'd by libbk). */
	BkProducer *producer;
	BkEncoder *encoder;
	uint32 chunk_size;
	uint8 *chunk_buffer; /* malloc'd, chunk_size bytes */
	uint8 *block_buffer; /* malloc'd, SCAN_BLOCKS * BLCKSZ */
	int spool_fd;
	char spool_path[MAXPGPATH];

	/* The backup. */
	XLogRecPtr start_lsn;
	XLogRecPtr stop_lsn;
	TimeLineID start_tli;
	TimeLineID stop_tli;
	TimestampTz start_time;
	TimestampTz stop_time;
	StringInfoData label;
	StringInfoData tablespace_map;
	bool backup_started;
	bool record_sending; /* the record may be out: cancel is held off */
	/* bk.wait_for = repository when it started (snap_confirm_wait) */
	bool confirm_in_repository;

	/* What the snapshot holds, as it is built. */
	List *entries; /* SnapEntry * */
	StringInfoData files_json;
	StringInfoData dirs_json;
	StringInfoData tablespaces_json;
	StringInfoData manifest_files;
	StringInfoData file_list; /* paths, one per line, for the history */
	StringInfoData failures_json;
	bool hex_paths; /* a path above is not UTF-8: written as path_hex */
	int64 files;
	int64 objects;
	int64 bytes;
	int64 bytes_read;
	int64 bytes_sent;
	int64 checksum_failures;
} SnapRun;

/*
 * The plaintext of one object, as the encoder pulls it chunk by chunk: an
 * optional in-memory part, then an optional part of a file (padded with
 * zeros if the file shrank while it was read: WAL replay rewrites whatever
 * changed).  Used from inside libbk callbacks: system calls only.
 */
typedef struct PlainSource
{
	SnapRun *run;
	const uint8 *mem;
	size_t mem_len;
	int fd;           /* -1: the file vanished, its part reads as zeros */
	uint64 file_base; /* where in the file its part starts */
	uint64 file_len;
	uint64 advised; /* read ahead asked up to this file offset */
	uint64 pos;     /* plaintext bytes handed out so far */
	uint64 total;
	bool counts_as_read; /* the file part is data read (not the spool) */
	BkBlockMap *map;     /* page digests of the file part, or NULL */
	bool crc;            /* keep the CRC-32C of the file part */
	uint32 crc32c;
	/* Checksum verification of a relation file's pages, as they are read. */
	bool verify;
	BlockNumber segment_base;
	int failures;
	BlockNumber failed_blocks[FAILURES_LISTED_PER_FILE];
	int read_errno; /* a read failed: reported after the send */
} PlainSource;

static inline char *
snap_item_path(SnapWork *work, const SnapWorkItem *item)
{
	return (char *) work + work->paths_offset + item->path_offset;
}

/* bk_snapshot.c: the shared slot */
extern void snap_worker_init(BackgroundWorker *worker, const char *function);
extern void snap_worker_connect(Oid database);
extern void snap_fail_unfinished(BkSnapshotSlot *slot, const char *error);
extern void snap_forget_worker_pid(BkSnapshotSlot *slot);
extern const char *snap_state_name(BkSnapshotState state);
extern void snap_set_phase(BkSnapshotSlot *slot, const char *phase);
extern void snap_add_progress(BkSnapshotSlot *slot, int64 read, int64 sent,
							  int64 files_done);

/* bk_snapshot_worker.c */
extern void snap_open_sender(SnapRun *run, const char *client_id);
extern void snap_open_spool(SnapRun *run);
extern void snap_close_spool(SnapRun *run);
extern void snap_release(SnapRun *run);
extern void snap_sql_begin(void);
extern void snap_sql_end(void);
extern void snap_fail_stale_history(SnapRun *run);
extern void snap_mark_record_sent(SnapRun *run);
extern int snap_cmp_str(const void *a, const void *b);
extern bool snap_parent_has(SnapRun *run, const char *path);

/* bk_snapshot_backup.c */
extern void snap_take(SnapRun *run);

/* bk_snapshot_work.c */
extern void snap_build_work(SnapRun *run);
extern void snap_stop_on_exit(int code, Datum arg);
extern void snap_start_helpers(SnapRun *run);
extern void snap_copy_share(SnapRun *run);
extern void snap_wait_for_helpers(SnapRun *run);
extern void snap_stop_helpers(SnapRun *run);
extern bool snap_error_is_stop(const ErrorData *edata);
extern char *snap_failure_text(const ErrorData *edata);
extern bool snap_helper_failure(SnapRun *run, char *error, size_t len,
								char *hint, size_t hint_len);

/* bk_snapshot_send.c */
extern void snap_send_file(SnapRun *run, SnapWorkItem *item);
extern void snap_flush_maps(SnapRun *run);
extern bool snap_interrupted(void *arg);
extern void snap_kafka_error(SnapRun *run, const BkError *err,
							 const char *what);
extern void snap_send_memory(SnapRun *run, const char *part, const char *meta,
							 const char *content, size_t len,
							 uint8 digest[BK_SHA256_LEN]);

/* bk_snapshot_record.c */
extern void snap_record_file(SnapRun *run, SnapWorkItem *item);
extern void snap_record_directory(SnapRun *run, const char *path, mode_t mode);
extern void snap_record_tablespace(SnapRun *run, const char *oid_text,
								   const char *target);
extern void snap_send_own_objects(SnapRun *run);
extern void snap_confirm_prepare(SnapRun *run);
extern void snap_confirm_wait(SnapRun *run);
extern void snap_announce_begin(SnapRun *run);
extern void snap_announce_end(SnapRun *run, const char *state_name,
							  const char *error);

#endif /* BK_SNAPSHOT_H */
