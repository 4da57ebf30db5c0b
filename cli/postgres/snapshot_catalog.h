/*
 * snapshot_catalog.h
 *		What the repository knows about a source's snapshots, without keys:
 *		which snapshots there are, whether each is complete, whether its
 *		chain of parents holds, whether the WAL it needs to reach consistency
 *		is archived, and so which moments the archive can restore.
 *
 * Everything comes from the files themselves (docs/snapshot-format.md):
 * the keyless metadata of each snapshot's record object (snapshot.json),
 * the objects present under <source>/snapshot/<id>/, and the WAL catalog
 * of repo.h.  Nothing is cached, so what this says is what a restore would
 * find.  The keyed side (the record's contents, rebuilding files) is in
 * snapshot_data.h.
 *
 * A snapshot is restorable (snapshot-format.md section 5) when
 *	 1. its record is there, the number of data/ objects present equals the
 *		record's "objects", and backup_label, tablespace_map and
 *		backup_manifest are there (the keyed check, every object the record
 *		names, is verify's and restore's job);
 *	 2. its parent, if any, is restorable;
 *	 3. the WAL from the segment holding start-lsn through the segment
 *		holding the last byte before stop-lsn is archived on its timeline,
 *		or along a later timeline that left it at or after stop-lsn (whose
 *		copy of the segment where it branched off recovery reads);
 *	 4. it is of the database system whose WAL the source holds (its
 *		system identifier matches the newest WAL's and the WAL's at its
 *		start), so a second cluster misconfigured with the same source id
 *		is reported as a conflict, never restored with the wrong WAL.
 */
#ifndef BK_SNAPSHOT_CATALOG_H
#define BK_SNAPSHOT_CATALOG_H

#include <stdint.h>

#include <jansson.h>

#include "bk_error.h"
#include "bk_snapshot_format.h"
#include "bk_timeline.h"
#include "repo.h"
#include "times.h"
#include "wal_catalog.h"

#define BK_SNAPSHOT_ID_MAX 64
/* An id's leading start time in whole seconds: "YYYYMMDDTHHMMSSZ". */
#define BK_SNAPSHOT_ID_SECONDS_LEN 16
#define BK_LSN_INVALID             UINT64_MAX

/* Why a snapshot cannot be restored. */
typedef enum BkSnapshotProblem
{
	BK_SNAP_RESTORABLE = 0,
	BK_SNAP_INCOMPLETE,     /* no record, or objects missing */
	BK_SNAP_PARENT_MISSING, /* parent absent or itself not restorable */
	BK_SNAP_WAL_MISSING,    /* a segment it needs is not archived */
	BK_SNAP_CONFLICT,       /* of another database system than the WAL */
	/*
	 * Its record, or one of its chain's, does not decrypt with the keyring
	 * or does not authenticate the metadata judged by: only bk expire,
	 * which holds the keyring, says so (bk_pg_expire).
	 */
	BK_SNAP_UNAUTHENTICATED
} BkSnapshotProblem;

typedef struct BkSnapshot
{
	char id[BK_SNAPSHOT_ID_MAX + 1];

	/* From the record's metadata (valid when has_record). */
	bool has_record;
	/*
	 * Reading the record failed for another reason than what it holds (an
	 * I/O error, a store that did not answer): the code, else BK_OK.  The
	 * snapshot may well be complete; only its reason says why not.
	 * BK_ERR_NOT_FOUND: listed, then gone when read (bk_repo_read_gone),
	 * removed meanwhile as bk expire removes it, its record first.
	 */
	BkErrorCode record_error;
	char kind[8]; /* full, diff, incr */
	char parent[BK_SNAPSHOT_ID_MAX + 1];
	uint64_t start_lsn;
	uint64_t stop_lsn;
	uint32_t timeline;
	/*
	 * The OID of the database whose bk_snapshot_history chose its parent
	 * (each database with the extension keeps its own), or 0 in records
	 * older than this field.
	 */
	uint32_t history_database;
	char start_time[BK_TIMESTAMP_TEXT_SIZE];
	char stop_time[BK_TIMESTAMP_TEXT_SIZE];
	int64_t start_us; /* microseconds since the epoch, or BK_TIME_UNKNOWN */
	int64_t stop_us;
	uint64_t files;
	uint64_t objects;
	uint64_t bytes;
	uint32_t segment_size;
	char system_identifier[32];
	/*
	 * SHA-256 of the record's metadata read here, without keys: a restore
	 * plans by it, and checks it against what decrypting the record
	 * authenticates (bk_repo_meta_agrees) before it trusts the plan.
	 */
	uint8_t meta_digest[BK_SHA256_LEN];
	bool record_listed; /* snapshot.json is among its objects */
	bool meta_read;     /* ... and its metadata was read: meta_digest */
	/*
	 * The record names another engine (engine=mariadb: a MariaDB server
	 * archiving under the same source id by mistake): bk expire leaves
	 * the snapshot alone.  Valid whether or not has_record.
	 */
	bool other_engine;

	/* What is present. */
	uint64_t data_objects;
	bool has_label;
	bool has_map;
	bool has_manifest;
	uint64_t stored_bytes; /* bytes of its objects */
	int64_t stored_ms;     /* when the store wrote the newest of them */

	/* Judgement. */
	bool complete;
	int parent_index; /* into the catalog, or -1 */
	bool restorable;
	BkSnapshotProblem problem;
	char reason[512];
} BkSnapshot;

typedef struct BkSnapshotCatalog
{
	char source[BK_SOURCE_ID_MAX + 1];
	BkWalCatalog wal;
	int count;
	BkSnapshot *snapshots; /* sorted by id: oldest first */

	/*
	 * The restorable window: from the oldest restorable snapshot's stop
	 * point to the end of the archived WAL on the newest timeline that
	 * descends from it, through the branch points of the history files.
	 */
	bool has_window;
	int window_snapshot;
	uint64_t window_start_lsn;
	char window_start_time[BK_TIMESTAMP_TEXT_SIZE];
	uint64_t window_end_lsn;
	uint32_t window_end_timeline;
	char window_end_time[BK_TIMESTAMP_TEXT_SIZE]; /* newest WAL's "created" */
	uint64_t window_missing_segments; /* needed inside it, not archived */
	char window_first_missing[32];
	/* A newer timeline that does not descend from the window's start. */
	uint32_t window_other_timeline;
	char window_other_reason[512];

	/* Achieved RPO: age of the newest archived WAL. */
	bool has_rpo;
	double rpo_seconds;
} BkSnapshotCatalog;

/*
 * Load the snapshots of source (and its WAL catalog), judge each one.
 * Keyless; decoder (may be NULL) only reads history files that were
 * archived without their branch points.  A source without snapshots gives
 * count 0.
 */
extern bool bk_snapshot_catalog_load(const BkRepo *repo, const char *source,
									 BkDecoder *decoder,
									 BkSnapshotCatalog *catalog, BkError *err);
extern void bk_snapshot_catalog_free(BkSnapshotCatalog *catalog);

/*
 * Is the snapshot damaged, rather than absent or still arriving?  Its
 * record is there but does not read (truncated, bit-flipped, empty, its
 * metadata incomplete), objects its record counts are missing, or its
 * parent is missing or damaged.  A snapshot without a record (cancelled,
 * failed, arriving) is not, nor one whose record the repository failed to
 * read or that bk expire removed meanwhile (record_error), nor one only
 * short of WAL or of another database system.
 */
extern bool bk_snapshot_damaged(const BkSnapshot *snapshot);

/* Index of the snapshot with this id, or -1. */
extern int bk_snapshot_catalog_find(const BkSnapshotCatalog *catalog,
									const char *id);

/* The snapshot as JSON, for list, restore and expire. */
extern json_t *bk_snapshot_json(const BkSnapshot *snapshot);

/*
 * "restorable", "incomplete", "parent missing", "WAL missing", "conflict",
 * "not authenticated"
 */
extern const char *bk_snapshot_problem_name(BkSnapshotProblem problem);

/*
 * Segment numbers of the WAL a snapshot needs: the segment holding
 * start-lsn through the one holding the last byte before stop-lsn.
 */
extern uint64_t bk_lsn_segno(uint64_t lsn, uint32_t segment_size);
extern void bk_snapshot_wal_range(const BkSnapshot *snapshot,
								  uint32_t segment_size, uint64_t *first_segno,
								  uint64_t *last_segno);

/*
 * Does recovery from snapshot along timeline become consistent?  It does
 * when timeline's history replays the snapshot's timeline up to its stop
 * point (bk_wal_history_holds) and every segment from its start to its stop
 * is archived as recovery along timeline reads them
 * (bk_wal_backup_readable).  path (may be NULL): that walk.
 */
extern bool bk_snapshot_consistent_along(const BkWalCatalog *wal,
										 const BkSnapshot *snapshot,
										 uint32_t timeline, BkWalPath *path);

#endif /* BK_SNAPSHOT_CATALOG_H */
