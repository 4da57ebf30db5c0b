/*
 * binlog_catalog.h
 *		What a repository holds of a MariaDB source's binlog: its files, the
 *		ranges of each, where they chain and where they do not.
 *
 * Built without keys, from object names and the metadata in frame headers
 * (docs/frame-format.md, section 9), so bk list and bk verify see gaps and
 * coverage with or without the private key.  A file is covered from 0 to
 * the end of the longest chain of ranges that each go on where the one
 * before ends: ranges sent again (after a crash, or from an older
 * acknowledged position) overlap, and one that holds that point goes on
 * with its rest; overlapping bytes are compared when the file is rebuilt.  A file is complete when that chain
 * ends with the file's ROTATE or STOP event, or, for a file a crash left
 * without one, when the file numbered next follows it in the archive and
 * the agent did not mark that file's first range gap-before= (the server
 * purged the rest before the agent read it).  The archive never continues
 * into a file marked gap-before=, even from a file closed by ROTATE.  When
 * the next file's first range says where the agent read this one end and
 * what ended it (previous-end=, previous-closed=), a chain that ends
 * elsewhere, or without that ROTATE or STOP, is a gap (short_end): its
 * last ranges were lost, and what they held (an Incident event has no
 * GTID) no GTID list can show.
 */
#ifndef BK_BINLOG_CATALOG_H
#define BK_BINLOG_CATALOG_H

#include <stdint.h>

#include "bk_binlog.h"
#include "repo.h"

typedef struct BinlogRange
{
	char name[BK_OBJECT_NAME_MAX + 1];
	uint64_t start;
	uint64_t end;
	bool in_chain; /* part of the chain from 0 */
	/*
	 * Where its part of the chain starts: start, or, for a range sent
	 * again that the chain goes on with, the end of the range before it
	 * (the bytes before are the chain's already, compared on rebuild).
	 */
	uint64_t chain_start;
	char closed[16]; /* "rotate", "stop" or "" */
	char next_file[BK_BINLOG_FILE_NAME_MAX + 1];
	char gtid[BK_BINLOG_GTID_STATE_MAX];
	uint32_t last_event_time; /* binlog timestamp of its newest event */
	/*
	 * complete-until: the agent had read everything the server wrote up to
	 * this time (Unix ms); -1 when the range does not say (older agents).
	 */
	int64_t complete_until_ms;
	char created[40]; /* when the agent sent it (ISO 8601), or "" */
	/* "file:offset" where the archive ended before a purge gap, or "" */
	char gap_before[BK_BINLOG_FILE_NAME_MAX + 32];
	/*
	 * On a file's first range: "file:offset" where the agent read the file
	 * before it end, and what ended it ("rotate", "stop", or "none" for a
	 * file a crash left); "" from agents that did not say.
	 */
	char previous_end[BK_BINLOG_FILE_NAME_MAX + 32];
	char previous_closed[16];
	/*
	 * SHA-256 of the metadata the fields above come from, read without
	 * keys: whoever rebuilds the range checks that decrypting it
	 * authenticates the same (mariadb_binlog_rebuild), so that no plan
	 * rests on metadata the range did not carry.
	 */
	uint8_t meta_digest[BK_SHA256_LEN];
} BinlogRange;

typedef struct BinlogFile
{
	char name[BK_BINLOG_FILE_NAME_MAX + 1];
	BinlogRange *ranges; /* sorted by start, then end */
	int range_count;
	uint64_t covered_end; /* the chain from 0 reaches here */
	uint64_t gap_start;   /* if a later range exists past a hole: the hole */
	uint64_t gap_end;     /* (0, 0 when there is none) */
	bool closed;          /* the chain ends with ROTATE or STOP */
	bool complete;        /* closed, or followed by the next file; not */
						  /* when short_end */
	bool cut;             /* not complete, yet a later file follows */
	/*
	 * Its first range says gap-before=: the agent did not go on into it
	 * from the file before (purged before it was read, or a GTID list that
	 * did not follow what was archived), whatever ended that one.
	 */
	const char *gap_before;
	const BinlogRange *last; /* the chain's last range */
	/*
	 * Where the agent read this file end, and what ended it ("rotate",
	 * "stop", "none"), as the next file's first range says
	 * (previous-end=, previous-closed=); ended_by NULL when it does not
	 * (agents before it, or a file the archive did not go on from).
	 */
	uint64_t ended_at;
	const char *ended_by;
	/*
	 * The archive lacks that end: its chain ends elsewhere, or without the
	 * ROTATE or STOP the agent read.  The file's last ranges were lost on
	 * the way (rejected by the shipper, lost by Kafka, removed from the
	 * repository): a gap, never a file a crash left.
	 */
	bool short_end;
	/*
	 * When the agent first sent a range of this file's basename (its
	 * history: another basename is another server's binlog), as the
	 * ranges say (created=); BK_TIME_UNKNOWN when none says.  Orders the
	 * histories of a source that holds more than one.
	 */
	int64_t history_since_us;
	/*
	 * bk expire recorded that it removes its history's files up to this
	 * one or a later one (<source>/expired/binlog/, docs/repository-
	 * layout.md): what is missing of it was removed, not lost.
	 */
	bool expired;
} BinlogFile;

typedef struct BinlogCatalog
{
	/*
	 * Sorted in binlog order within each basename (a history), the
	 * histories one after the other, the one first sent first: files of
	 * two servers' binlogs never interleave by number.
	 */
	BinlogFile *files;
	int file_count;
	uint64_t objects;
	uint64_t stored_bytes;
	/* binlog_catalog_load_expiring: ranges listed, then gone when read. */
	uint64_t gone;
	char first_gone[BK_OBJECT_NAME_MAX + 1];
	/*
	 * bk expire's records: per basename, the last file it removed (or is
	 * about to remove), the highest of that basename's records.
	 */
	char (*expired)[BK_BINLOG_FILE_NAME_MAX + 1];
	int expired_count;
} BinlogCatalog;

/* Read the catalog of source; an empty catalog when nothing is stored. */
extern bool binlog_catalog_load(const BkRepo *repo, const char *source,
								BinlogCatalog *catalog, BkError *err);

/*
 * The same for bk expire: a range listed, then gone when its header is
 * read (another bk expire removing the same source's old files), is left
 * out, as a listing a moment later would have it, and counted in gone;
 * never an error.  Not for restores and binlog-get: a file there with
 * ranges left out would look shorter, or absent, and a script fetching
 * file after file would take that for the end of the archive.
 */
extern bool binlog_catalog_load_expiring(const BkRepo *repo, const char *source,
										 BinlogCatalog *catalog, BkError *err);
extern void binlog_catalog_free(BinlogCatalog *catalog);

/*
 * The highest file bk expire recorded it removes of file's basename (file
 * itself need not be archived, nor at or before it), or NULL.
 */
extern const char *binlog_catalog_expired_record(const BinlogCatalog *catalog,
												 const char *file);

/*
 * Did bk expire record that it removes file (which need not be archived)?
 * Whatever of it, or of the files of its basename numbered between, is
 * missing was then removed on purpose: not a gap.
 */
extern bool binlog_catalog_expired(const BinlogCatalog *catalog,
								   const char *file);

/*
 * Record, before bk expire removes anything of it, that it removes the
 * binlog files of file's basename up to file; then remove that basename's
 * lower records, which the highest makes moot.
 */
extern bool binlog_expired_record(BkRepo *repo, const char *source,
								  const char *file, BkError *err);

/*
 * A file that is not closed is complete when the next file follows it
 * directly (follows_directly): that rests on the metadata of the next
 * file's first ranges (no gap-before=, and previous-end= at its end),
 * which whoever serves the file without reading the next one must
 * authenticate (bk_repo_object_meta): else a purge gap removed from it
 * would pass a truncated file for a whole one.  BK_ERR_AUTH if it is not
 * what the catalog read.
 */
extern bool
binlog_catalog_check_successor(const BkRepo *repo, const char *source,
							   BkDecoder *decoder, const BinlogCatalog *catalog,
							   const BinlogFile *file, BkError *err);

/*
 * For a file with short_end: what is missing, for messages after "binlog
 * X is " ("archived up to A, but the agent read it to E, ...").
 */
extern void binlog_catalog_describe_short(const BinlogFile *file, char *buf,
										  size_t len);

/* The file of that name, or NULL. */
extern const BinlogFile *binlog_catalog_file(const BinlogCatalog *catalog,
											 const char *name);

#endif /* BK_BINLOG_CATALOG_H */
