/*
 * target.h
 *		A PostgreSQL recovery target (--target-time, --target-lsn,
 *		--target-xid, --target-name, --target immediate): parsed, checked,
 *		and which archived snapshot can serve it.
 *
 * A snapshot serves a target only if its stop point (where recovery
 * becomes consistent) is at or before the target: recovery from a later
 * one would fail ("requested recovery stop point is before consistent
 * recovery point") or, worse, pass the target.  Times and LSNs compare
 * with the catalog directly; a transaction id or a restore point name has
 * no place in the catalog and is found in the WAL (restore_choose.c).
 */
#ifndef BK_PG_TARGET_H
#define BK_PG_TARGET_H

#include <stdbool.h>
#include <stdint.h>

#include "bk_error.h"
#include "snapshot_catalog.h"

typedef enum BkPgTargetType
{
	BK_PG_TARGET_NONE, /* the end of the archive */
	BK_PG_TARGET_TIME,
	BK_PG_TARGET_LSN,
	BK_PG_TARGET_XID,
	BK_PG_TARGET_NAME,
	BK_PG_TARGET_IMMEDIATE
} BkPgTargetType;

typedef struct BkPgTarget
{
	BkPgTargetType type;
	const char *text; /* as the operator gave it */
	int64_t time_us;
	char time_text[64]; /* for recovery_target_time: UTC, explicit zone */
	uint64_t lsn;
	uint64_t xid;
} BkPgTarget;

/*
 * Parse text as a target of type into target; false with a message that
 * names the option and gives an example.
 */
extern bool bk_pg_target_parse(BkPgTarget *target, BkPgTargetType type,
							   const char *text, BkError *err);

/* Can recovery from snapshot stop at the target?  (xid, name: not known
 * from the catalog; true.) */
extern bool bk_pg_target_fits(const BkPgTarget *target,
							  const BkSnapshot *snapshot);

/*
 * Could snapshot, were it restorable, serve the target?  By its stop point
 * when its record's metadata was read; else (a damaged record) by the
 * start time its id holds, which is before its stop: a time target before
 * it cannot be served, anything else might.
 */
extern bool bk_pg_target_might_fit(const BkPgTarget *target,
								   const BkSnapshot *snapshot);

/* The restorable snapshots, oldest stop point first (malloc'd array). */
extern bool bk_pg_restorable_by_stop(const BkSnapshotCatalog *catalog,
									 BkSnapshot ***list, int *count,
									 BkError *err);

/*
 * Which snapshot restores source to target: snapshot_id if given (checked:
 * restorable, and fits the target), else the newest restorable one that
 * fits and that recovery along timeline (0: any; restorable says one does)
 * replays to its stop point with the WAL archived
 * (bk_snapshot_consistent_along); if none is, the newest that fits, which
 * restore_check_wal_path then refuses with the reason.  *chosen is its
 * index in the catalog, or -1 for an xid or name target without
 * snapshot_id (the WAL decides).  BK_ERR_NOT_FOUND, with a hint, when none
 * can; BK_ERR_SEQUENCE (integrity) when none can and a damaged snapshot
 * (bk_snapshot_damaged) might have, or snapshot_id names a damaged one.
 */
extern bool bk_pg_choose_snapshot(const BkSnapshotCatalog *catalog,
								  const char *source, const BkPgTarget *target,
								  const char *snapshot_id, uint32_t timeline,
								  int *chosen, BkError *err);

#endif /* BK_PG_TARGET_H */
