/*
 * retention.h
 *		Which snapshots a retention policy keeps, for every engine.
 *
 *	  --retain-full N   the N newest restorable full snapshots and every
 *						diff/incr built on them, and the newest full the
 *						source's current timeline descends from if none of
 *						those is one
 *	  --retain-days D   whatever restores any moment of the last D days:
 *						every snapshot ending inside the window, the newest
 *						one ending before it (down to one the current
 *						timeline descends from), and their parents
 *
 * Only snapshots older than the oldest kept one are removed, so a snapshot
 * that is still arriving (shippers archive a snapshot's objects in any
 * order, the record possibly first) or broken but recent stays.  A source
 * takes one snapshot at a time, so one in progress is newer than every
 * finished one: ids sort by start time.  But that time is the source's
 * clock, which may step back: a snapshot started after the step sorts
 * before the ones it follows.  So a snapshot that is not restorable also
 * stays while the store wrote an object of it less than a day ago
 * (BK_RETENTION_ARRIVING_MS, the store's time against ours), whatever its
 * id; an abandoned one goes a day after its last object at the latest.
 * The store's times only ever keep a snapshot: a repository copied without
 * them keeps its unfinished snapshots a day longer, nothing else.  Which
 * restorable snapshots the policy needs follows where they end in the log
 * (stop_order), not their ids, so a step back only makes the order by id
 * keep more: the snapshots before it sort as newer than those after.
 * Whatever stays keeps its parents: after a restore to an earlier moment
 * the server bases its next incremental snapshot on the newest one its
 * restored history has as complete, which may be older than the fulls the
 * policy keeps.  The snapshots the source may name as the parent of its
 * next diff/incr snapshot stay too, with their parents (the engine says
 * which: a snapshot still arriving names its parent only in its record,
 * which comes last).  With no restorable snapshot to anchor it, nothing is
 * removed.  What the engine removes of its log (WAL, binlog) follows from
 * the snapshots kept.
 */
#ifndef BK_RETENTION_H
#define BK_RETENTION_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"

typedef enum BkVerdict
{
	BK_VERDICT_EXPIRE = 0,
	BK_VERDICT_KEEP,
	BK_VERDICT_IN_PROGRESS, /* not restorable, newer than the oldest kept */
	BK_VERDICT_ARRIVING,    /* not restorable, older, but stored recently */
	BK_VERDICT_NEWER,       /* restorable, not needed, but newer likewise */
	BK_VERDICT_PARENT,      /* older, but a snapshot that stays builds on it */
	BK_VERDICT_NEXT_PARENT, /* older, but the source may build on it next */
	BK_VERDICT_FOREIGN,     /* of another database system: never removed */
	BK_VERDICT_KEY_MISSING  /* sealed to a key the keyring lacks: kept */
} BkVerdict;

/* What the decision needs to know of a snapshot, whatever the engine. */
typedef struct BkRetentionSnapshot
{
	const char *id;   /* ids sort by start time */
	const char *kind; /* "full", "diff", "incr" */
	int parent_index; /* into the same array, or -1 */
	bool restorable;
	int64_t stop_us;     /* when it ended, or BK_TIME_UNKNOWN */
	uint64_t stop_order; /* where it ended in the log: orders by end */
	int64_t stored_ms;   /* when the store wrote its newest object, or 0 */
	/*
	 * It ended where the source's current timeline does not pass: a
	 * restore to an earlier moment branched off before its end, so it
	 * restores nothing of what the source did since.  false when the
	 * engine has no timelines or cannot tell.
	 */
	bool off_latest;
	/*
	 * Of another database system than the source's newest log (a second
	 * cluster archiving under the same source id): which one is the
	 * source's is not bk's to guess, so it is never removed, nor what it
	 * builds on.
	 */
	bool foreign;
	/*
	 * The source may name it as the parent of its next diff/incr snapshot,
	 * or of one it is taking now: that one's record, which names its
	 * parent, is sent last, so until it arrives bk cannot tell.  Set by
	 * engines whose snapshots build on others, from how the source
	 * chooses a parent.
	 */
	bool next_parent;
	/*
	 * Its record (or its chain's) is sealed to a key the keyring lacks: a
	 * rotation whose old or new private key is not in the keyring.  Not
	 * counted as restorable, since the keyring cannot tell, but it may
	 * well restore with that key: never removed, and kept as a snapshot
	 * that stays (its parents, its log).  A snapshot forged under a key of
	 * the forger's own stays too, until removed by hand: space, not data.
	 */
	bool key_missing;
} BkRetentionSnapshot;

/*
 * How long after the store wrote its newest object a snapshot that is not
 * restorable may still be arriving: a day, as for an upload the S3
 * housekeeping leaves to a running shipper.  A running snapshot sends
 * objects all along; a day covers a shipper or Kafka that lags that much.
 */
#define BK_RETENTION_ARRIVING_MS ((int64_t) 24 * 3600 * 1000)

/*
 * What bk expire says when it removes something without the keyring: the
 * snapshots it counted as restorable were judged on their records'
 * keyless metadata (the engines authenticate it when they hold the
 * keyring).
 */
#define BK_RETENTION_KEYLESS_WARNING                                           \
	"no key: snapshots were counted as restorable on their records' "          \
	"unauthenticated metadata, so a forged one, or one sealed to a key "       \
	"you lack, counts too; run bk expire with the restore key (key_file "      \
	"or --key-file) to count only those whose records authenticate"

/*
 * Decide a verdict for each of count snapshots at now_ms (our clock); false
 * (every verdict KEEP) when no restorable snapshot anchors the policy.
 */
extern bool bk_retention_decide(const BkRetentionSnapshot *snapshots, int count,
								const BkRetention *policy, int64_t now_ms,
								BkVerdict *verdicts);

/*
 * The start time a snapshot id encodes ("YYYYMMDDTHHMMSSZ-...", from the
 * source host's clock), in microseconds; false for an id that encodes none.
 */
extern bool bk_retention_id_start_us(const char *id, int64_t *us);

/* Why a verdict, in words ("kept: retention", "expired: ..."). */
extern const char *bk_retention_reason(const BkRetentionSnapshot *snapshot,
									   BkVerdict verdict,
									   const BkRetention *policy);

#endif /* BK_RETENTION_H */
