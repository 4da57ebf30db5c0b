/*
 * mariadb.h
 *		What the MariaDB engine's files share.
 */
#ifndef BK_MARIADB_H
#define BK_MARIADB_H

#include <stdint.h>

#include "binlog_catalog.h"
#include "bk_frame.h"
#include "engine.h"
#include "repo.h"

/*
 * For bk verify: told each object mariadb_snapshot_check decrypts (or
 * tries to), and each table that fails, after which it goes on with the
 * next table instead of stopping (not when it writes a directory: that
 * stops at the first failure).  run_tables is used only with table_failed.
 */
typedef void (*MariadbTableFn)(void *ctx, BkDecoder *decoder, size_t index);
typedef struct MariadbCheckHooks
{
	void (*object_read)(void *arg, const char *object);
	void (*table_failed)(void *arg, const char *object, const BkError *err);
	/*
	 * Runs fn(ctx, decoder, index) for every index below count and returns
	 * when all are done, on threads each with its own decoder: the tables
	 * are then checked that way (object_read and table_failed called from
	 * those threads).  NULL: one after another on the caller's decoder.
	 */
	void (*run_tables)(void *arg, size_t count, MariadbTableFn fn, void *ctx);
	void *arg;
} MariadbCheckHooks;

/*
 * Decrypt a snapshot and check every table against its record (rows,
 * bytes, SHA-256, every part present); with out_dir (which must not exist),
 * write schema.json, snapshot.json and data/NNNNNN.tsv there.  hooks may
 * be NULL.  *tables_checked counts the tables found good, even in a
 * snapshot where another failed.
 */
extern bool mariadb_snapshot_check(const BkRepo *repo, const char *source,
								   BkDecoder *decoder, const char *id,
								   const char *out_dir,
								   const MariadbCheckHooks *hooks,
								   uint64_t *tables_checked, BkError *err);

/*
 * Rebuild the archived file from its ranges into fd (path for messages):
 * the chain from 0 to file->covered_end, every chunk authenticated, every
 * event walked (position, CRC-32) and passed to fn when not NULL; then
 * every range sent again compared with the bytes it overlaps.  Ranges past
 * a gap are left out.  *events counts the events.  When enough is not
 * NULL and *enough is true after a range of the chain (fn set it: a
 * restore's target was met), the rebuild ends with that range: nothing
 * after it is read, decrypted or compared, and fd holds the file up to
 * there.  *fd_failed (may be NULL) says whether a failure was fd's
 * (writing or reading it back) rather than the archive's.
 */
extern bool mariadb_binlog_rebuild(const BkRepo *repo, const char *source,
								   BkDecoder *decoder, const BinlogFile *file,
								   int fd, const char *path, uint64_t *events,
								   BkBinlogEventFn fn, void *arg,
								   const bool *enough, bool *fd_failed,
								   BkError *err);

/*
 * The complete file bk binlog-get is asked for, or NULL with err set:
 * BK_ERR_NOT_FOUND (exit 1) only for a file after the newest archived one.
 */
extern const BinlogFile *mariadb_binlog_get_file(const BinlogCatalog *catalog,
												 const char *source,
												 const char *name,
												 BkError *err);

/*
 * bk binlog-get's work: rebuild file (mariadb_binlog_rebuild) into a new
 * file next to out_path, synced, and give it that name, which must not be
 * taken (BK_ERR_USAGE, before anything is read, and again when the file is
 * complete: it is never replaced).  Nothing is left behind on failure.
 */
extern bool mariadb_binlog_write(const BkRepo *repo, const char *source,
								 BkDecoder *decoder, const BinlogFile *file,
								 const char *out_path, uint64_t *events,
								 BkError *err);

/* bk expire of a MariaDB source (expire.c). */
extern int bk_mariadb_expire(const char *program, BkRepo *repo,
							 const char *source, const BkRetention *retention,
							 BkError *err);

/* bk restore of a MariaDB source (restore.c). */
extern int bk_mariadb_restore(int argc, char **argv);

#endif /* BK_MARIADB_H */
