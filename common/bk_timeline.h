/*
 * bk_timeline.h
 *		PostgreSQL LSNs and timeline histories, as bk reads and writes them.
 *
 * A timeline history file (TLI.history, which PostgreSQL writes when a
 * server is promoted and archives like WAL) says where each ancestor
 * timeline ended: lines "parentTLI<TAB>switchpoint<TAB>reason", oldest
 * first.  The catalog needs those branch points to know how far each
 * timeline's WAL is needed: a recovery that follows timeline 2 needs
 * timeline 1's WAL up to the point where 2 branched off, and a gap there
 * must never look like the end of the archive.
 *
 * The archive module puts the branch points of every history file it
 * archives in the object's metadata (key "branch-points",
 * docs/frame-format.md section 8), so that the repository's keyless readers
 * (bk list, bk verify without the key) can follow them too; this is where
 * that format lives.  Reasons are left out: a restore point's name is the
 * user's text.
 */
#ifndef BK_TIMELINE_H
#define BK_TIMELINE_H

#include <stddef.h>
#include <stdint.h>

#include "bk_error.h"

/* Most ancestors a history may list (PostgreSQL has no limit; 4096 is ample). */
#define BK_TIMELINE_BRANCHES_MAX 4096

/* "FFFFFFFF/FFFFFFFF" plus NUL */
#define BK_LSN_TEXT_SIZE 18

/* Timeline `timeline` ended at `end_lsn`, where its child began. */
typedef struct BkTimelineBranch
{
	uint32_t timeline;
	uint64_t end_lsn;
} BkTimelineBranch;

/*
 * "16/B374D848" as PostgreSQL's pg_lsn input reads it: 1 to 8 hex digits,
 * a slash, 1 to 8 hex digits, nothing else.
 */
extern bool bk_parse_lsn(const char *text, uint64_t *lsn);
extern void bk_format_lsn(uint64_t lsn, char *out, size_t out_len);

/*
 * Parse the text of timeline `timeline`'s history file as PostgreSQL's
 * readTimeLineHistory does (blank lines and '#' comments skipped), strictly:
 * every ancestor below `timeline`, ascending, branch points not going
 * backwards.  *branches is malloc'd (NULL when *count is 0).
 */
extern bool bk_timeline_history_parse(const char *text, size_t len,
									  uint32_t timeline,
									  BkTimelineBranch **branches, int *count,
									  BkError *err);

/* "1:0/A64A07C8,2:0/B0000098" (empty for no branches); false if too long. */
extern bool bk_branch_points_format(const BkTimelineBranch *branches, int count,
									char *out, size_t out_len);

/* The inverse, with the same checks as bk_timeline_history_parse. */
extern bool bk_branch_points_parse(const char *text, uint32_t timeline,
								   BkTimelineBranch **branches, int *count,
								   BkError *err);

/*
 * The "branch-points" value for a history file's metadata, whose other keys
 * take other_len bytes: the formatted branch points, or "" when they would
 * push the whole metadata (this key's line included) over
 * BK_FRAME_META_MAX.  bk_frame.c refuses larger metadata, and since
 * PostgreSQL archives history files before anything else, one that cannot
 * be archived stops all archiving (near timeline 255 the branch points
 * alone reach the limit).  Readers with the key read such a file itself.
 * out_len of BK_FRAME_META_MAX + 1 is always enough.
 */
extern void bk_branch_points_meta(const BkTimelineBranch *branches, int count,
								  size_t other_len, char *out, size_t out_len);

/*
 * Timeline `timeline`'s history file rebuilt from the history of a
 * descendant (`descendant`, text/len): the descendant's lines whose parent
 * timeline is below `timeline`, which are exactly the ancestors `timeline`'s
 * own file lists, reasons included.  False if the descendant's history does
 * not parse or does not list `timeline` as an ancestor.  *out is malloc'd.
 */
extern bool bk_timeline_history_rebuild(const char *text, size_t len,
										uint32_t descendant, uint32_t timeline,
										char **out, size_t *out_len,
										BkError *err);

#endif /* BK_TIMELINE_H */
