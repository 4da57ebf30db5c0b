/*
 * pg_engine.h
 *		The PostgreSQL engine of the bk tool: what its engine-neutral
 *		commands call (engine.h), and its own commands.
 *
 * Files of this folder, one concern each:
 *
 *	 wal_catalog.c       archived WAL per timeline, branch points, gaps
 *	 snapshot_catalog.c  snapshots, their chains, restorability, window
 *	 snapshot_data.c     snapshot records and rebuilding their files
 *	 target.c            recovery targets and the snapshot that serves one
 *	 engine.c, list.c, verify.c, expire.c
 *	                     bk list, bk verify, bk expire for PostgreSQL
 *	 cmd_wal_get.c       bk wal-get, PostgreSQL's restore_command
 *	 restore*.c          bk restore of a PostgreSQL data directory
 *						 (restore.h says which file does what)
 */
#ifndef BK_PG_ENGINE_H
#define BK_PG_ENGINE_H

#include "engine.h"

extern bool bk_pg_holds(const BkRepo *repo, const char *source, bool *holds,
						BkError *err);
extern bool bk_pg_list(const BkRepo *repo, const char *source,
					   BkDecoder *decoder, json_t *into, int64_t now_ms,
					   BkError *err);
extern bool bk_pg_verify(BkVerifier *verifier, const BkRepo *repo,
						 const char *source, BkError *err);
extern int bk_pg_expire(const char *program, BkRepo *repo, const char *source,
						const BkRetention *policy, BkError *err);

#endif /* BK_PG_ENGINE_H */
