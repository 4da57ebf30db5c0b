/*
 * wal_catalog.h
 *		What the repository holds of a PostgreSQL source's WAL: the archived
 *		segments of each timeline, the timelines' branch points, and so
 *		which segments a recovery needs and which of those are missing.
 *
 * Timelines are not independent.  When a server is promoted, timeline N+1
 * branches off timeline N at a switch point, and PostgreSQL writes
 * N+1.history, which lists where every ancestor ended.  A recovery that
 * follows timeline N+1 reads timeline N's segments below the switch point
 * and N+1's from the segment that holds it.  So timeline N's WAL is needed
 * up to the segment before the one holding the switch point, whatever N's
 * newest archived segment is: a missing segment there is a gap, never the
 * end of the archive.
 *
 * Branch points come from each history file's metadata (branch-points,
 * written by the archive module), or, for history files archived without
 * it, from the file itself when a key is at hand.  Without either, the
 * timeline's history is "unknown" and the catalog says so rather than
 * guess.
 *
 * Everything is derived from the objects themselves (names, keyless
 * metadata, history files), so the catalog can never disagree with what a
 * restore would find; and from bk expire's records of what it removed,
 * which only the objects' absence can no longer tell (BkWalExpired).
 */
#ifndef BK_WAL_CATALOG_H
#define BK_WAL_CATALOG_H

#include <stdint.h>

#include "bk_crypto.h"
#include "bk_error.h"
#include "bk_frame.h"
#include "bk_timeline.h"
#include "repo.h"

/* A segment number that stands for "the end of the archive". */
#define BK_WAL_END UINT64_MAX

/* WAL file names, as PostgreSQL makes them. */
typedef enum BkWalFileType
{
	BK_WAL_SEGMENT, /* TTTTTTTTXXXXXXXXYYYYYYYY */
	BK_WAL_HISTORY, /* TTTTTTTT.history */
	BK_WAL_BACKUP,  /* TTTTTTTTXXXXXXXXYYYYYYYY.OOOOOOOO.backup */
	BK_WAL_PARTIAL, /* TTTTTTTTXXXXXXXXYYYYYYYY.partial */
	BK_WAL_OTHER
} BkWalFileType;

/* Classify a WAL file name; for segment-like names fill timeline and log/seg. */
extern BkWalFileType bk_wal_file_type(const char *name, uint32_t *timeline,
									  uint32_t *log, uint32_t *seg);

/* segno from log/seg numbers for a segment size. */
extern uint64_t bk_wal_segno(uint32_t log, uint32_t seg, uint32_t segment_size);

/* "TTTTTTTTXXXXXXXXYYYYYYYY" for a timeline and segno (out: 25 bytes). */
extern void bk_wal_segment_name(uint32_t timeline, uint64_t segno,
								uint32_t segment_size, char *out);

/* One timeline: its archived segments and its place in the history. */
typedef struct BkWalTimeline
{
	uint32_t timeline;
	uint64_t *segnos; /* archived segments, ascending */
	uint64_t segments;
	uint64_t first_segno; /* valid when segments > 0 */
	uint64_t last_segno;
	uint64_t partials;

	/* From its history file (every timeline but the first has one). */
	bool has_history;          /* TTTTTTTT.history is archived */
	bool history_known;        /* ... and its branch points were read */
	char history_problem[256]; /* why not: has_history && !known, or WAL
								* archived without a history file */
	BkErrorCode history_error; /* and the code of that failure */
	int ancestor_count;
	BkTimelineBranch *ancestors; /* oldest first; the last is its parent */
	uint32_t parent;             /* 0: none, or unknown */
	uint64_t begin_lsn;          /* where it branched off its parent */

	/*
	 * A later timeline (needed_by) branched off this one at needed_until:
	 * this timeline's WAL is needed below that point.  0 if none did.
	 */
	uint64_t needed_until;
	uint32_t needed_by;

	/*
	 * Segments missing where the archive must have them: from the first
	 * archived segment (or from the segment where it branched off its
	 * parent, when the archive holds the parent's WAL from before that)
	 * up to the last one, or up to the branch point of a later timeline.
	 */
	uint64_t gap_count;
	uint64_t first_gap_segno;
} BkWalTimeline;

/*
 * What bk expire removed of a timeline, from its records in the expired
 * area (<source>/expired/wal/, one per timeline, named after the last
 * segment removed): every segment of the timeline up to that one was
 * archived once, so one missing now is gone, never past the end.
 */
typedef struct BkWalExpired
{
	uint32_t timeline;
	uint64_t through_segno; /* the last segment removed */
	char through[32];       /* its name */
} BkWalExpired;

typedef struct BkWalCatalog
{
	char source[BK_SOURCE_ID_MAX + 1];
	bool source_exists;    /* <source>/ is in the repository at all */
	uint32_t segment_size; /* from the objects' metadata; 0 if unknown */
	int timeline_count;
	BkWalTimeline *timelines; /* sorted by timeline */
	uint64_t history_files;
	uint64_t unknown_histories; /* history files whose branch points are
								 * unknown (no metadata, no key) */
	uint64_t backup_files;
	uint64_t conflicts;
	char system_identifier[32];               /* of the newest segment */
	char newest_name[BK_OBJECT_NAME_MAX + 1]; /* newest segment */
	int64_t newest_archived_ms; /* when the store committed it: shown only */
	char newest_created[64];    /* its "created" metadata */
	int expired_count;
	BkWalExpired *expired; /* by timeline; empty when segment_size is 0 */
} BkWalCatalog;

/*
 * Scan <source>/wal and <source>/conflicts/wal.  decoder (may be NULL) is
 * used to read the branch points of history files archived without them.
 */
extern bool bk_wal_catalog_load(const BkRepo *repo, const char *source,
								BkDecoder *decoder, BkWalCatalog *catalog,
								BkError *err);
extern void bk_wal_catalog_free(BkWalCatalog *catalog);

/* The timeline, or NULL if the archive knows nothing of it. */
extern const BkWalTimeline *bk_wal_timeline(const BkWalCatalog *catalog,
											uint32_t timeline);

/* Is this segment archived? */
extern bool bk_wal_has_segment(const BkWalCatalog *catalog, uint32_t timeline,
							   uint64_t segno);

/*
 * The newest timeline the archive knows (segments or history file): what
 * recovery_target_timeline = 'latest' follows.  0 if none.
 */
extern uint32_t bk_wal_latest_timeline(const BkWalCatalog *catalog);

/*
 * The nearest later timeline whose history lists `timeline` as an ancestor,
 * or 0.  When `timeline`'s own history file is not archived (its server
 * died before archiving it), that descendant's history holds it: its lines
 * up to `timeline` (bk_timeline_history_rebuild).
 */
extern uint32_t bk_wal_history_descendant(const BkWalCatalog *catalog,
										  uint32_t timeline);

/*
 * A timeline later than `timeline` whose history file is archived but whose
 * branch points could not be read (no metadata and no key, or the object
 * is unreadable), or whose WAL is archived without its history file or a
 * later timeline's that lists it, or NULL.  Such a timeline may descend
 * from `timeline` anywhere: nothing about `timeline` can be called the end
 * of the archive.
 */
extern const BkWalTimeline *
bk_wal_later_unknown_history(const BkWalCatalog *catalog, uint32_t timeline);

/* What a walk along the history found. */
typedef struct BkWalPath
{
	bool reachable;    /* to's history holds from (or they are equal) */
	char problem[512]; /* why not reachable */
	uint64_t missing;  /* segments needed and not archived */
	uint32_t first_missing_timeline;
	uint64_t first_missing_segno;
	char first_missing[32]; /* its file name */
	uint32_t end_timeline;  /* where the walk ended */
	uint64_t end_segno;     /* the last segment it needed (BK_WAL_END: none) */
	/*
	 * to_segno lies beyond the newest segment archived on to_timeline:
	 * the segments from first_beyond_segno on are not archived yet (not
	 * counted as missing: the source may still send them).
	 */
	bool beyond_end;
	uint64_t first_beyond_segno;
} BkWalPath;

/*
 * The segments a recovery needs from segment from_segno of timeline
 * from_timeline up to segment to_segno (or BK_WAL_END: the end of the
 * archive) as seen from timeline to_timeline: each ancestor's segments up to
 * its branch point, then the next timeline's from the segment holding it.
 * Missing means needed and absent below the newest segment archived on the
 * way; what lies past the archive's end is beyond_end.
 */
extern void bk_wal_path(const BkWalCatalog *catalog, uint32_t from_timeline,
						uint64_t from_segno, uint32_t to_timeline,
						uint64_t to_segno, BkWalPath *path);

/*
 * Does recovery along to_timeline's history replay the WAL of timeline up
 * to lsn?  It does when timeline is to_timeline, or an ancestor of it that
 * its history leaves at lsn or later.  A snapshot whose stop point it does
 * not replay never becomes consistent along to_timeline: recovery follows
 * the next timeline from the branch point, and the snapshot's end-of-backup
 * record is not there.  False with why (may be NULL) when it does not, or
 * when to_timeline's branch points are not known.
 */
extern bool bk_wal_history_holds(const BkWalCatalog *catalog, uint32_t timeline,
								 uint64_t lsn, uint32_t to_timeline, char *why,
								 size_t why_len);

/*
 * Recovery along to_timeline: the timeline whose file of segment segno it
 * reads (PostgreSQL asks for the newest timeline of the history that began
 * at or before the segment first, so the segment where a timeline branched
 * off is read from the new timeline, whose copy holds the old one's WAL up
 * to the branch point), and the timeline whose WAL holds the record at lsn.
 * to_timeline itself when its branch points are not known.
 */
extern uint32_t bk_wal_segment_timeline(const BkWalCatalog *catalog,
										uint32_t to_timeline, uint64_t segno);

/*
 * Is the WAL object name sealed to a key of the decoder's keyring, and to
 * which (key_id, if not NULL)?  Read without the key from its first
 * frame's header (a few hundred bytes).  False with err only when that
 * could not be read.
 */
extern bool bk_wal_sealed_to_keyring(const BkRepo *repo, const char *source,
									 const char *name, BkDecoder *decoder,
									 bool *in_ring,
									 uint8_t key_id[BK_KEY_ID_LEN],
									 BkError *err);
extern uint32_t bk_wal_lsn_timeline(const BkWalCatalog *catalog,
									uint32_t to_timeline, uint64_t lsn);

/*
 * Recovery along to_timeline asks for segment segno, which the timeline it
 * belongs to (bk_wal_segment_timeline) has not archived, and bk wal-get
 * answers "not found" (beyond the end of the archive, no hole):
 * PostgreSQL then asks for the same segment of the older timelines of the
 * history, newest first, none older than the one it read the segment
 * before from (XLogFileReadAnyTLI), and replays the first it gets.  Such a
 * copy holds to_timeline's WAL only up to where the history leaves its
 * timeline; past that, WAL to_timeline never had.  The timeline of the copy
 * it would read, with *valid_until that point, or 0 if none is archived.
 */
extern uint32_t bk_wal_old_copy(const BkWalCatalog *catalog,
								uint32_t to_timeline, uint64_t segno,
								uint64_t *valid_until);

/*
 * Up to which LSN recovery along timeline a and along timeline b replay the
 * same WAL: where their histories part (the older's end where the newer
 * left it, or where each left a common ancestor, the earlier).  0 when
 * they share nothing bk knows of (a history file not read), UINT64_MAX for
 * a == b.
 */
extern uint64_t bk_wal_shared_until(const BkWalCatalog *catalog, uint32_t a,
									uint32_t b);

/*
 * Can recovery along to_timeline read every segment a snapshot of timeline
 * needs to become consistent, first_segno..last_segno (its start to its
 * stop)?  It reads them as bk_wal_path walks them: an ancestor's below its
 * branch point, the next timeline's from the segment that holds it.  So
 * the segment where to_timeline branched off comes from to_timeline, whose
 * copy holds the same bytes up to the branch point, even when the
 * ancestor's copy was archived only as .partial.  When to_timeline has
 * nothing archived from there on (bk wal-get answers "not found", not a
 * hole), PostgreSQL asks for the ancestor's file next: timeline's own
 * segments, all archived, do then.  path: the walk along to_timeline, which
 * names what is missing when false.
 */
extern bool bk_wal_backup_readable(const BkWalCatalog *catalog,
								   uint32_t timeline, uint64_t first_segno,
								   uint64_t last_segno, uint32_t to_timeline,
								   BkWalPath *path);

/* What bk expire removed of timeline, or NULL if it recorded nothing. */
extern const BkWalExpired *bk_wal_expired(const BkWalCatalog *catalog,
										  uint32_t timeline);

/*
 * bk expire is about to remove segments of a timeline, up to segment name
 * (the last of them): record it in the expired area, durably, before the
 * first removal.  A restore reading that timeline meanwhile (from a
 * snapshot expired since) would otherwise find no segment of it left, and
 * a leaf timeline (none branched off it) with none left reads as one whose
 * archive ends before the segment asked: PostgreSQL would end recovery
 * and promote there.  A record never goes down: each is a key of its own,
 * named by its segment, and only records below the highest one listed
 * after this one was written are removed, so two bk expire runs at once
 * keep the higher.
 */
extern bool bk_wal_expired_record(BkRepo *repo, const char *source,
								  const char *name, BkError *err);

/*
 * A segment PostgreSQL asked for is not archived: is it beyond the end of
 * what the archive holds for its timeline (false), or a hole the archive
 * must not have (true, with why)?  See cmd_wal_get.c.
 */
extern bool bk_wal_segment_is_hole(const BkWalCatalog *catalog,
								   uint32_t timeline, uint64_t segno, char *why,
								   size_t why_len);

/* The system identifier in segment's metadata ("" if none or unreadable). */
extern void bk_wal_segment_system_id(const BkRepo *repo, const char *source,
									 uint32_t timeline, uint64_t segno,
									 uint32_t segment_size, char *out,
									 size_t out_len);

#endif /* BK_WAL_CATALOG_H */
