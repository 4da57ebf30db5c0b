/*
 * snapshot_data.h
 *		The keyed side of snapshots: decrypting objects, reading the
 *		snapshot record, and rebuilding a file of the data directory from
 *		a chain of snapshots (docs/snapshot-format.md, sections 2 and 3).
 *
 * Memory stays bounded whatever the file size: objects are decrypted one
 * chunk at a time into the destination, and an incremental file is
 * rebuilt in place: the parent's version is written first (recursively,
 * down to the snapshot that sent the file whole), then cut or extended
 * to the new length, then each changed block is written at its offset.
 * Only the block-number list of one incremental object is held in memory
 * (4 bytes per changed block).
 *
 * bk restore and bk verify share this code, so verify checks exactly what
 * a restore would do.
 */
#ifndef BK_SNAPSHOT_DATA_H
#define BK_SNAPSHOT_DATA_H

#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "bk_crypto.h"
#include "bk_error.h"
#include "bk_frame.h"
#include "repo.h"
#include "snapshot_catalog.h"

#define BK_RECORD_MAX_BYTES ((size_t) 1 << 30)

/* A range of a file sent in ranges (format 2). */
typedef struct BkSnapRange
{
	uint64_t offset;
	uint64_t length;
	uint64_t blocks; /* incremental: changed blocks sent (0: no object) */
	uint8_t sha256[BK_SHA256_LEN]; /* of the range as the snapshot read it */
} BkSnapRange;

typedef struct BkSnapFile
{
	char *path; /* plain, relative to the data directory */
	uint64_t size;
	mode_t mode;
	int64_t mtime;
	bool incremental;
	uint64_t blocks; /* incremental: changed blocks sent (0: no object) */
	bool has_sha256;
	uint8_t sha256[BK_SHA256_LEN];
	/*
	 * A file sent in ranges: one object per range, a SHA-256 per range, none
	 * for the file (has_sha256 is false).  0: one object.
	 */
	size_t range_count;
	BkSnapRange *ranges;
} BkSnapFile;

typedef struct BkSnapDirectory
{
	char *path;
	mode_t mode;
} BkSnapDirectory;

typedef struct BkSnapTablespace
{
	uint32_t oid;
	char *path;
} BkSnapTablespace;

/*
 * What a rebuilt file is listed with in a backup manifest: its SHA-256,
 * or, for a file sent in ranges (which no process of the snapshot read
 * whole, and whose ranges a restore writes on several threads), its
 * CRC-32C.
 */
typedef struct BkFileChecksum
{
	bool is_crc32c;
	uint32_t crc32c;
	uint8_t sha256[BK_SHA256_LEN];
} BkFileChecksum;

/* A decrypted, parsed snapshot record. */
typedef struct BkSnapRecord
{
	char id[BK_SNAPSHOT_ID_MAX + 1];
	char source[BK_SOURCE_ID_MAX + 1];
	char kind[8];
	char parent[BK_SNAPSHOT_ID_MAX + 1];
	char label[256];
	uint64_t start_lsn;
	uint64_t stop_lsn;
	uint32_t start_timeline;
	uint32_t stop_timeline;
	char start_time[BK_TIMESTAMP_TEXT_SIZE];
	char stop_time[BK_TIMESTAMP_TEXT_SIZE];
	char system_identifier[32];
	int64_t pg_version;
	uint32_t segment_size;
	uint32_t block_size;
	bool data_checksums;
	/*
	 * The source compared page digests, not only page LSNs, when it chose
	 * the pages of incremental files: every rebuilt file must then equal
	 * the file read, byte for byte.  Older records lack it.
	 */
	bool page_digests;
	size_t file_count;
	BkSnapFile *files; /* sorted by path */
	size_t directory_count;
	BkSnapDirectory *directories;
	size_t tablespace_count;
	BkSnapTablespace *tablespaces;
	/*
	 * Pages whose checksum failed twice while the snapshot read them, as
	 * many as the record lists (up to five per file or range: a lower
	 * bound), and the first of them.
	 */
	size_t checksum_failure_count;
	char *checksum_failure_path; /* NULL when none is listed */
	uint32_t checksum_failure_block;
	uint64_t bytes; /* sum of file sizes */
} BkSnapRecord;

/*
 * Object name of a data file: "<id>/data/<path>", the path encoded by
 * bk_snapshot_path_encode.
 */
extern bool bk_snapshot_data_name(const char *id, const char *path, char *out,
								  size_t out_len);

/* Object name of a range of a file: "<id>/range/<path>/<offset>". */
extern bool bk_snapshot_range_name(const char *id, const char *path,
								   uint64_t offset, char *out, size_t out_len);

/*
 * Read fd's first file->size bytes once: sum gets their checksum (see
 * BkFileChecksum), and *matches whether they are what the snapshot read
 * (the record's SHA-256 of the file, or of each of its ranges; true when
 * the record has neither).  drop (a restore's file, or one --delta
 * checks: nothing reads it again soon): what has been read is dropped from
 * the page cache as it goes, since reading through a few warm pages costs
 * less than taking fresh ones.  Not for a scratch file, whose dirty pages
 * the kernel would start writing out to drop them.
 */
extern bool bk_snapshot_file_hash(int fd, const char *path,
								  const BkSnapFile *file, bool drop,
								  BkFileChecksum *sum, bool *matches,
								  BkError *err);

/*
 * Decrypt snapshot object name of source into sink (repo.h), checking
 * every chunk's tag, the fingerprint, and that the frames are the object
 * the name says.  digest (may be NULL) gets the plaintext's SHA-256 and
 * size its length.
 */
extern bool bk_snapshot_read_object(const BkRepo *repo, BkDecoder *decoder,
									const char *source, const char *name,
									BkPlainSink sink, void *sink_arg,
									uint8_t *digest, uint64_t *size,
									BkError *err);

/* A whole (small) object in memory, NUL-terminated; at most max_len. */
extern bool bk_snapshot_read_small(const BkRepo *repo, BkDecoder *decoder,
								   const char *source, const char *name,
								   size_t max_len, char **data, size_t *len,
								   BkError *err);

/* Decrypt and parse <id>/snapshot.json. */
extern bool bk_snapshot_record_load(const BkRepo *repo, BkDecoder *decoder,
									const char *source, const char *id,
									BkSnapRecord **record, BkError *err);
extern void bk_snapshot_record_free(BkSnapRecord *record);

/*
 * What a record's checksum failures mean for the data it restores, as one
 * sentence naming the snapshot, the count and the first page, into out;
 * false (out empty) when the snapshot read no page that failed.
 */
extern bool bk_snapshot_record_checksum_note(const BkSnapRecord *record,
											 char *out, size_t out_len);

/*
 * The record says the file is empty: its size is 0 and its SHA-256 that
 * of no bytes.  A restore makes it without reading its object, which
 * holds nothing more (bk verify still reads and checks it).
 */
extern bool bk_snapshot_file_empty(const BkSnapFile *file);

/* The record's entry for path, or NULL. */
extern const BkSnapFile *bk_snapshot_record_file(const BkSnapRecord *record,
												 const char *path);

/*
 * A path from a record is safe to join to a directory: relative, no empty,
 * "." or ".." component.
 */
extern bool bk_snapshot_path_safe(const char *path);

/*
 * Rebuild file (an entry of chain[chain_len - 1]) into fd (open for
 * reading and writing, empty or of any content: it is overwritten and cut
 * to size).  chain runs from the full snapshot to the one restored, each
 * the parent of the next.  sum gets the rebuilt file's checksum.
 * Errors name the snapshot and the file.  bytes_read (may be NULL) adds
 * the plaintext bytes decrypted.  Pieces that continue one another are
 * written together, up to 1 MiB at a time.  writeback (a restore, not a
 * scratch file): the kernel is asked to start writing the file to disk as
 * it is written (sync_file_range), and the caller fsyncs; what is written
 * out is dropped from the page cache as the file goes on, 8 MiB at a time
 * (a patched file is read back from disk for its digest).  A file of the
 * target snapshot sent in ranges is checked here, range by range, against
 * the record (the caller has no SHA-256 of the whole to compare:
 * has_sha256 is false).  *fd_failed (may be NULL) says whether a failure
 * was fd's (writing, resizing or reading it back) rather than the
 * repository's or its data's.  failed_object (may be NULL; room
 * for BK_OBJECT_NAME_MAX + 1) gets the name of the object that failed,
 * when one did, else "".
 */
extern bool bk_snapshot_rebuild_file(
	const BkRepo *repo, BkDecoder *decoder, const char *source,
	BkSnapRecord *const *chain, int chain_len, const BkSnapFile *file, int fd,
	const char *fd_path, bool writeback, BkFileChecksum *sum,
	uint64_t *bytes_read, bool *fd_failed, char *failed_object, BkError *err);

/*
 * Hint that bk_snapshot_rebuild_file of file will follow soon: start
 * opening its objects of at most max_size bytes of data (on an object
 * store, their first GETs).
 *
 * bk restore and bk verify hint the file bk_snapshot_prefetch_lead(jobs)
 * places after the one a thread takes, with max_size
 * BK_SNAPSHOT_PREFETCH_MAX_SIZE: the many small files would each wait for
 * an object store's first answer, and opening them ahead lets the threads
 * go on meanwhile.  Larger objects are read ahead as they are read (a
 * window at a time) instead.
 */
#define BK_SNAPSHOT_PREFETCH_MAX_SIZE ((uint64_t) 1024 * 1024)
static inline size_t
bk_snapshot_prefetch_lead(int jobs)
{
	size_t lead = 2 * (size_t) (jobs < 1 ? 1 : jobs);

	return lead < BK_REPO_PREFETCHES ? lead : BK_REPO_PREFETCHES;
}

extern void bk_snapshot_prefetch_file(const BkRepo *repo, const char *source,
									  BkSnapRecord *const *chain, int chain_len,
									  const BkSnapFile *file,
									  uint64_t max_size);

/* SHA-256 of a file's first size bytes (fails if shorter). */
extern bool bk_sha256_fd(int fd, const char *path, uint8_t out[BK_SHA256_LEN],
						 BkError *err);

/*
 * Check a PostgreSQL backup manifest: it parses, has version 1, a Files
 * array, and its Manifest-Checksum is the SHA-256 of everything before
 * that line.
 */
extern bool bk_manifest_check(const char *text, size_t len, BkError *err);

#endif /* BK_SNAPSHOT_DATA_H */
