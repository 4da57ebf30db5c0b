/*
 * snapshot_catalog.h
 *		The MariaDB snapshots a repository holds of a source, read without
 *		keys from the metadata of each snapshot's record (snapshot.json),
 *		and where each one can be restored to with the archived binlog.
 */
#ifndef BK_MARIADB_SNAPSHOT_CATALOG_H
#define BK_MARIADB_SNAPSHOT_CATALOG_H

#include <stdint.h>

#include "binlog_catalog.h"
#include "repo.h"

#define MARIADB_SNAPSHOT_ID_MAX 64

typedef struct MariadbSnapshot
{
	char id[MARIADB_SNAPSHOT_ID_MAX + 1];
	/*
	 * Its record and schema.json arrived, and every data object the record
	 * counts.  The objects travel as separate messages, on other partitions
	 * and shippers: the record, sent last, may be archived before a part
	 * (or a part never, when its message was rejected).  A record written
	 * before the count was added (no "objects" in its metadata) is judged
	 * on its own presence; bk restore then checks the parts it loads.
	 */
	bool complete;
	bool has_record;
	/*
	 * Its record is another engine's (no engine=mariadb: a PostgreSQL
	 * cluster archiving under the same source id by mistake).  Never
	 * judged complete, and bk expire leaves it alone.
	 */
	bool other_engine;
	/*
	 * Its record is there but could not be read: damaged (BK_OK here: the
	 * snapshot is not complete, like one without a record) or unread (the
	 * repository failed: what the snapshot is is unknown, and bk expire
	 * removes nothing), or gone (BK_ERR_NOT_FOUND: listed, then removed
	 * before it was read, as bk expire removes a snapshot, record first).
	 * reason says which.
	 */
	bool record_unreadable;
	BkErrorCode record_error;
	bool has_schema;
	int64_t data_expected; /* the record's count, or -1 if it has none */
	uint64_t data_objects; /* data/ objects in the repository */
	char reason[512];      /* why it is not complete */
	char binlog_file[BK_BINLOG_FILE_NAME_MAX + 1];
	uint64_t binlog_pos;
	char gtid[BK_BINLOG_GTID_STATE_MAX];
	char started[40];
	/*
	 * The wall time of the consistent point: every transaction the
	 * snapshot holds committed before it.  "" in records of agents that
	 * did not write it.
	 */
	char consistent_at[40];
	char finished[40];
	uint64_t tables;
	uint64_t rows;
	/*
	 * SHA-256 of the record's metadata read here, without keys, which the
	 * fields above come from: bk restore plans by them (where the replay
	 * starts, the GTID state, whether the snapshot fits the target) and
	 * checks them against what decrypting the record authenticates.
	 */
	uint8_t meta_digest[BK_SHA256_LEN];
	uint64_t objects;
	uint64_t stored_bytes;
	int64_t stored_ms; /* when the store wrote its newest object */
} MariadbSnapshot;

typedef struct MariadbSnapshotCatalog
{
	MariadbSnapshot *snapshots; /* sorted by id (start time) */
	int count;
} MariadbSnapshotCatalog;

extern bool mariadb_snapshot_catalog_load(const BkRepo *repo,
										  const char *source,
										  MariadbSnapshotCatalog *catalog,
										  BkError *err);
extern void mariadb_snapshot_catalog_free(MariadbSnapshotCatalog *catalog);

/*
 * Is the snapshot damaged, rather than absent or still arriving?  Its
 * record is there but its header does not read (truncated, bit-flipped,
 * empty), or the record is read and objects it counts are missing.  A
 * snapshot without a record (failed, cancelled, or arriving) is not, nor
 * one whose record the repository failed to read (record_error: what it
 * is is unknown), nor another engine's.
 */
extern bool mariadb_snapshot_damaged(const MariadbSnapshot *snapshot);

/*
 * Can the archived binlog carry snapshot forward?  True when the
 * snapshot's binlog file is archived from its start to the snapshot's
 * position; *until_file / *until_pos say how far the archive then goes on
 * without a hole (through complete files, to the end of the archive or
 * to the first gap).  Otherwise *problem says what is missing.
 */
/*
 * Does the snapshot hold only transactions committed at or before
 * target_us (a time target, Unix microseconds)?  Judged by its consistent
 * point; a record without one (an older agent) by when it finished, which
 * is later, never by when it started, which is earlier: a transaction
 * committed between the start and the consistent point, after the target,
 * would be restored.
 */
extern bool mariadb_snapshot_before_time(const MariadbSnapshot *snapshot,
										 int64_t target_us);

extern bool mariadb_snapshot_reach(const MariadbSnapshot *snapshot,
								   const BinlogCatalog *binlog,
								   const char **until_file, uint64_t *until_pos,
								   char *problem, size_t problem_len);

/*
 * Does the archive go on after until_file (where mariadb_snapshot_reach
 * stopped) past a hole: bytes missing inside that file, file numbers
 * skipped, a file not archived from its start, or that file not complete
 * with a later one archived?  Then *hole says which, and what was archived
 * beyond it cannot be replayed.  False when until_file is the newest file
 * archived and has no hole: there the archive simply ends.
 */
extern bool mariadb_binlog_hole_after(const BinlogCatalog *binlog,
									  const char *until_file, char *hole,
									  size_t hole_len);

#endif /* BK_MARIADB_SNAPSHOT_CATALOG_H */
