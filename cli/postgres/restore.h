/*
 * restore.h
 *		bk restore of a PostgreSQL data directory: what its steps share.
 *
 * The command (restore.c) runs the steps in order, one file each:
 *
 *	 restore_choose.c    choosing the snapshot chain for the target, and
 *						 checking the WAL from it to the target
 *	 restore_target.c    the target directory and tablespaces, made ready
 *	 restore_paths.c     where a file of the snapshot goes, and ownership
 *	 restore_files.c     the files, decrypted by a pool of threads, then
 *						 every file and directory fsynced, in parallel
 *	 restore_recovery.c  backup_label, tablespace_map, recovery settings
 *	 restore_manifest.c  backup_manifest, pg_control last
 *	 restore_report.c    what was restored, and warnings
 */
#ifndef BK_RESTORE_H
#define BK_RESTORE_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include <jansson.h>

#include "bk_crypto.h"
#include "bk_keys.h"
#include "commands.h"
#include "repo.h"
#include "snapshot_catalog.h"
#include "snapshot_data.h"
#include "target.h"

#define JOBS_DEFAULT        2
#define PREFETCH_DEFAULT    4 /* segments bk wal-get decrypts ahead */
#define JOBS_MAX            64
#define PG_CONTROL          "global/pg_control"
#define PG_CONTROL_TEMP     "global/pg_control.bk-restore"
#define WALDUMP_BATCH       32 /* segments decrypted at a time */
#define OWNER_DEFAULT       "postgres"
#define TABLESPACE_MAPS_MAX 64
#define RESTORE_PATH_MAX    PATH_MAX

typedef struct TablespaceMapping
{
	const char *old_path;
	const char *new_path;
	bool used;
} TablespaceMapping;

/* A tablespace of the restored snapshot, and where it goes. */
typedef struct RestoreTablespace
{
	uint32_t oid;
	char original[RESTORE_PATH_MAX];
	char location[RESTORE_PATH_MAX];  /* as given: the link's target */
	char canonical[RESTORE_PATH_MAX]; /* location without links, . or // */
	char root[32]; /* restore_open_root's name for it, while restoring */
	int fd;
	bool mapped; /* location given by --tablespace-map */
} RestoreTablespace;

/* The checksum of one restored file, for the manifest. */
typedef struct FileResult
{
	BkFileChecksum sum;
} FileResult;

typedef struct Restore
{
	const char *program;
	/* Options. */
	const char *source;
	const char *pgdata_arg;
	const char *snapshot_id;
	const char *target_option; /* the target's text, once given */
	bool two_targets;
	BkPgTarget target;
	const char *target_timeline;
	TablespaceMapping maps[TABLESPACE_MAPS_MAX];
	int map_count;
	bool delta;
	bool archive;
	bool no_prefetch; /* the target is just before a gap: recovery_prefetch
					   * off, or recovery reads into the gap and fails */
	int jobs;
	const char *owner;
	int prefetch;
	BkCommonOptions common;

	/* State. */
	BkCliConfig config;
	BkRepo *repo;
	BkKeyring *ring;
	BkDecoder *decoder;
	BkSnapshotCatalog catalog;
	int chosen;
	uint64_t found_lsn;      /* where an xid or name target was found */
	uint32_t found_timeline; /* ... on the WAL of this timeline */
	/* The timeline restore_check_wal_path checked the WAL up to (0: none) */
	uint32_t recovery_timeline;
	/*
	 * The first and last segments it found recovery needs (segno
	 * BK_WAL_END: none; for a time target the end of the archive, which
	 * restore_check_wal_keys narrows), whose keys it checks.
	 */
	uint32_t wal_first_timeline;
	uint64_t wal_first_segno;
	uint32_t wal_last_timeline;
	uint64_t wal_last_segno;
	/*
	 * An LSN target: the segment recovery needs to reach it (the one that
	 * ends the first record at or after it), not archived yet; "" if none.
	 */
	char stop_unarchived[32];
	BkSnapRecord **chain;
	int chain_len;
	const BkSnapRecord *record; /* chain[chain_len - 1] */
	/*
	 * Where files are written: the directory restore_prepare_target opened,
	 * through /proc/self/fd (restore_open_root), so that renaming a parent
	 * of --pgdata cannot point bk elsewhere half way.
	 */
	char pgdata[RESTORE_PATH_MAX];
	char pgdata_shown[RESTORE_PATH_MAX]; /* --pgdata without links */
	int pgdata_fd;
	RestoreTablespace *tablespaces;
	int tablespace_count;
	bool set_owner;
	/*
	 * The owner is another user: the target stays bk's own, mode 0700, until
	 * restore_hand_over gives it to the owner once everything is durable.
	 */
	bool protect;
	uid_t uid;
	gid_t gid;
	FileResult *results; /* parallel to record->files */
	bool wrote_pg_control_temp;

	/* Parallel restore. */
	size_t *work; /* indexes into record->files, largest first */
	size_t work_count;
	atomic_size_t next_work;
	atomic_bool abort;
	pthread_mutex_t error_lock;
	BkError first_error;
	atomic_uint_fast64_t files_written;
	atomic_uint_fast64_t files_kept;
	atomic_uint_fast64_t bytes_written;
	atomic_uint_fast64_t bytes_decrypted;
	atomic_uint_fast64_t hint_bit_mismatches;

	char restore_command[8192];
	json_t *settings; /* recovery settings written */
} Restore;

extern bool restore_build_restore_command(Restore *r, BkError *err);
extern bool restore_self_path(const char *link, char *out, size_t out_len,
							  BkError *err);
extern bool restore_check_targets(Restore *r, BkError *err);
extern bool restore_check_wal_path(Restore *r, BkError *err);
extern bool restore_choose_snapshot(Restore *r, BkError *err);
extern bool restore_create_directories(Restore *r, BkError *err);
extern bool restore_dir_not_empty(const char *path);
extern bool restore_install_pg_control(Restore *r, BkError *err);
extern bool restore_is_tablespace_link(const Restore *r, const char *rel);
extern bool restore_join_path(char *out, size_t out_len, const char *dir,
							  const char *rel, BkError *err);
extern bool restore_load_chain(Restore *r, BkError *err);

/*
 * Does the keyring hold the keys of the WAL recovery needs?  Checked
 * before anything is written: bk wal-get reads it only once the server
 * starts.
 */
extern bool restore_check_wal_keys(Restore *r, BkError *err);
extern bool restore_plan_tablespaces(Restore *r, BkError *err);
extern bool restore_prepare_target(Restore *r, BkError *err);
extern bool restore_record_has_below(const BkSnapRecord *record,
									 const char *rel);
void restore_sort_directories(BkSnapRecord *record);
bool restore_record_has_directory(const BkSnapRecord *record, const char *rel);
extern bool restore_remove_extra(Restore *r, const char *dir_path,
								 const char *rel_dir, uint64_t *removed,
								 BkError *err);
extern void restore_report(const Restore *r, uint64_t removed);
extern bool restore_resolve_owner(Restore *r, BkError *err);
extern bool restore_resolve_path(const Restore *r, const char *rel, char *out,
								 size_t out_len, BkError *err);
/*
 * path under key in a JSON report, or, when it is not UTF-8 (JSON text is,
 * file names need not be), its bytes in hex under key_hex, as the snapshot
 * record does with path_hex.
 */
extern void restore_json_path(json_t *object, const char *key,
							  const char *path);

extern bool restore_canonical_path(const char *path, char *out, size_t out_len,
								   BkError *err);
extern bool restore_open_root(Restore *r, const char *canonical, int *fd,
							  char *root, size_t root_len, BkError *err);
extern bool restore_ensure_dir(const Restore *r, const char *path, int mode,
							   BkError *err);
extern bool restore_hand_over(Restore *r, BkError *err);
extern bool restore_take_back(Restore *r, BkError *err);
extern bool restore_chmod_file(const char *path, mode_t mode, BkError *err);
extern void restore_close_roots(Restore *r);
extern void restore_show_paths(const Restore *r, BkError *err);
extern bool restore_skipped_file(const char *path);
extern bool restore_sync_files(Restore *r, BkError *err);
extern void restore_warn_target_beyond_archive(const Restore *r);
extern void restore_warn_unreadable(const Restore *r);
extern void restore_warn_checksum_failures(const Restore *r);
extern bool restore_write_label_and_map(Restore *r, BkError *err);
extern bool restore_write_manifest(Restore *r, BkError *err);
extern bool restore_write_recovery_settings(Restore *r, BkError *err);
/*
 * A commit or abort record as pg_waldump, run with TZ=UTC, prints it: its
 * LSN and its time (microseconds since the epoch).  False for any other
 * line, and for a time bk cannot read.
 */
extern bool restore_waldump_xact_time(const char *line, uint64_t *lsn,
									  int64_t *us);
extern bool restore_write_text_file(const Restore *r, const char *path,
									const char *text, BkError *err);
extern bool restore_files(Restore *r, BkError *err);

#endif /* BK_RESTORE_H */
