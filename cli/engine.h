/*
 * engine.h
 *		The seam between bk's engine-neutral commands and what each database
 *		engine keeps in the repository.
 *
 * bk list, bk verify and bk expire are the same commands for every engine:
 * options, keys, the repository, the sources, output framing and exit
 * codes live in cli/.  What a source's archive is (PostgreSQL: WAL
 * segments on timelines, snapshots with LSNs; MariaDB: binlog files,
 * snapshots with binlog coordinates) lives in the engine's folder, behind
 * these operations.  The restore and log-fetching commands are the
 * engine's own: bk restore and bk wal-get (restore_command) are
 * PostgreSQL's today; MariaDB's restore will be chosen by the source's
 * engine.
 */
#ifndef BK_ENGINE_H
#define BK_ENGINE_H

#include <stdint.h>

#include <jansson.h>

#include "bk_crypto.h"
#include "bk_error.h"
#include "repo.h"
#include "verify.h"

/* What bk expire is asked to keep. */
typedef struct BkRetention
{
	int64_t retain_full; /* the newest N full snapshots, or 0 */
	int64_t retain_days; /* everything to restore the last D days, or 0 */
	bool dry_run;
	bool json;
	/*
	 * The key, when one is configured (may be NULL): bk reads a history
	 * file archived without its branch points itself, so that it knows
	 * which snapshots the source's timeline descends from.
	 */
	BkDecoder *decoder;
} BkRetention;

typedef struct BkEngine
{
	const char *name; /* "postgresql" */

	/*
	 * The log only this engine archives (BK_KIND_WAL, BK_KIND_BINLOG): a
	 * source with any of it archived is this engine's.
	 */
	int log_kind;

	/*
	 * Does the repository hold this engine's archive of source, when no
	 * engine's log is archived for it (its snapshots alone)?
	 */
	bool (*holds)(const BkRepo *repo, const char *source, bool *holds,
				  BkError *err);

	/*
	 * bk list: the source's archive, printed, or as the members of its JSON
	 * object (into, which already holds "source").  decoder may be NULL.
	 */
	bool (*list)(const BkRepo *repo, const char *source, BkDecoder *decoder,
				 json_t *into, int64_t now_ms, BkError *err);

	/* bk verify: every object and catalog check of the source. */
	bool (*verify)(BkVerifier *verifier, const BkRepo *repo, const char *source,
				   BkError *err);

	/* bk expire: apply the retention; returns the exit status. */
	int (*expire)(const char *program, BkRepo *repo, const char *source,
				  const BkRetention *retention, BkError *err);
} BkEngine;

/*
 * The engine whose archive the repository holds for source; NULL with err
 * set when it holds nothing of it.  The engine whose log is archived;
 * otherwise the first whose holds says so.
 */
extern const BkEngine *bk_engine_for(const BkRepo *repo, const char *source,
									 BkError *err);

/* bk_engine_for, but *engine NULL (and true) when it holds nothing. */
extern bool bk_engine_find(const BkRepo *repo, const char *source,
						   const BkEngine **engine, BkError *err);

/*
 * For a source found by listing the repository (list, verify of every
 * source): one it holds nothing of (a directory left empty) is said on
 * stderr and *engine NULL, to be skipped.  It must not stop the report of
 * every other source, as it would for a source named with --source.
 */
extern bool bk_engine_for_listed(const char *program, const BkRepo *repo,
								 const char *source, const BkEngine **engine,
								 BkError *err);

/* Has the archive anything of (source, kind)? */
extern bool bk_engine_has_any(const BkRepo *repo, const char *source, int kind,
							  bool *found, BkError *err);

/* The engines bk knows, for messages. */
extern const BkEngine bk_engine_postgresql;
extern const BkEngine bk_engine_mariadb;

#endif /* BK_ENGINE_H */
