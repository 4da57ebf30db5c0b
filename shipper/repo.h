/*
 * repo.h
 *		The bk repository on a local file system: layout, durable commit of
 *		objects, reading them back, and the WAL catalog.
 *
 * Layout (all paths relative to the repository root):
 *
 *	 bk-repository                 marker: "bk repository 1"
 *	 <source>/wal/<name>           an archived WAL object
 *	 <source>/snapshot/<name>      an archived snapshot file
 *	 <source>/binlog/<name>        an archived binlog object
 *	 <source>/conflicts/<kind>/<name>.<attempt>
 *	                               a second copy whose content differs
 *	 rejected/<topic>.<partition>.<offset>
 *	                               a message that failed the keyless checks,
 *	                               kept for forensics, never restored
 *	 .spool/                       attempts being assembled (wiped at start)
 *
 * An object file is the frames of one attempt, in order, concatenated; each
 * frame says its own length (docs/frame-format.md), so the file needs no
 * other structure.  The object's rename into place is the commit point: a
 * crash before it leaves nothing visible, a crash after it leaves a complete,
 * fsynced object.  The catalog is derived from the files themselves (names
 * and frame headers), so it can never disagree with what is stored.
 *
 * Files are created 0644 and directories 0755 whatever the umask: they hold
 * ciphertext only, and restores run as another user (postgres) than the
 * shipper.
 */
#ifndef BK_REPO_H
#define BK_REPO_H

#include <stdint.h>
#include <sys/types.h>

#include "bk_error.h"
#include "bk_frame.h"

#define BK_REPO_MARKER      "bk-repository"
#define BK_REPO_MARKER_TEXT "bk repository 1\n"
#define BK_REPO_PATH_MAX    4096

typedef struct BkRepo
{
	char root[BK_REPO_PATH_MAX];
} BkRepo;

/*
 * Open the repository at path.  With create, make it (and its marker) if it
 * does not exist; without, fail unless the marker is there, so a typo in
 * --repo is never mistaken for an empty archive.
 */
extern bool bk_repo_open(BkRepo *repo, const char *path, bool create,
						 BkError *err);

/* "<root>/<source>/<kind>/<name>" */
extern bool bk_repo_object_path(const BkRepo *repo, const char *source,
								int kind, const char *name, char *out,
								size_t out_len, BkError *err);

/* mkdir -p with mode 0755, fsyncing each parent of a directory it creates. */
extern bool bk_repo_mkdirs(const char *path, BkError *err);

/* "<root>/<source>/<sub>" (sub may be "wal", "conflicts/wal", ...). */
extern bool bk_repo_source_path(const BkRepo *repo, const char *source,
								const char *sub, char *out, size_t out_len,
								BkError *err);

/* Remove everything in .spool (called at shipper start). */
extern bool bk_repo_clear_spool(const BkRepo *repo, BkError *err);

/* A fresh spool file path for an attempt. */
extern void bk_repo_spool_path(const BkRepo *repo, const char *tag, char *out,
							   size_t out_len);

/* Identity of an object's content, readable without keys. */
typedef struct BkObjectIdentity
{
	uint8_t key_id[BK_KEY_ID_LEN];
	uint8_t fingerprint[BK_FINGERPRINT_LEN];
	uint8_t attempt_id[BK_ATTEMPT_ID_LEN];
} BkObjectIdentity;

typedef enum BkCommitResult
{
	BK_COMMIT_ARCHIVED,  /* new object */
	BK_COMMIT_DUPLICATE, /* identical content was already archived */
	BK_COMMIT_CONFLICT   /* different content: kept as a conflict copy */
} BkCommitResult;

/*
 * Move a complete, fsynced spool file into place as object (source, kind,
 * name).  If the object exists: identical identity (key id and fingerprint)
 * is a duplicate and the spool file is removed; anything else is a conflict,
 * kept under conflicts/.  Never overwrites.  *stored_path gets the path the
 * content now lives at (the existing object for a duplicate).
 */
extern bool bk_repo_commit(const BkRepo *repo, const char *spool_path,
						   const char *source, int kind, const char *name,
						   const BkObjectIdentity *identity,
						   BkCommitResult *result, char *stored_path,
						   size_t stored_path_len, BkError *err);

/* Keep a rejected message's bytes and the reason, durably. */
extern bool bk_repo_quarantine(const BkRepo *repo, const char *topic,
							   int32_t partition, int64_t offset,
							   const void *data, size_t len, const char *reason,
							   BkError *err);

/*
 * Read an object file frame by frame.  fn gets each frame (a buffer valid
 * until the next call) and returns false (with err set) to stop.  With
 * headers_only, payloads are skipped rather than read and the frame given to
 * fn holds the header only (its CRC is not checked): enough for identity,
 * not for integrity.
 */
typedef bool (*BkFrameVisitor)(void *arg, const uint8_t *frame, size_t len,
							   BkError *err);
extern bool bk_repo_read_frames(const char *path, bool headers_only,
								BkFrameVisitor fn, void *arg, BkError *err);

/* Identity (key id, fingerprint, attempt) and size of a stored object. */
extern bool bk_repo_object_identity(const char *path,
									BkObjectIdentity *identity,
									BkObjectTracker *object, BkError *err);

/*
 * Check a stored object without keys: every frame parses and passes its CRC,
 * the chunks form one complete attempt, and the object is the one its path
 * says (source, kind, name).
 */
extern bool bk_repo_check_object(const char *path, const char *source, int kind,
								 const char *name, BkObjectTracker *object,
								 BkError *err);

/*
 * Decrypt the stored object at object_path into dest, atomically
 * ("<dest>.bk-tmp.<pid>", fsync, rename, fsync of the directory): every
 * chunk's tag and the whole object's fingerprint are checked, and the
 * frames must say they are object (source, kind, name), so no other object
 * can be substituted.  size (may be NULL) gets the plaintext size.
 */
extern bool bk_repo_decrypt_to_file(const char *object_path, BkDecoder *decoder,
									const char *source, int kind,
									const char *name, const char *dest,
									uint64_t *size, BkError *err);

/*
 * rm -rf that never follows a symbolic link (a link is removed, not its
 * target).  A path that does not exist is success.
 */
extern bool bk_remove_tree(const char *path, BkError *err);

/* ------------------------------------------------------------ WAL catalog */

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

/* One timeline's archived segments. */
typedef struct BkWalTimeline
{
	uint32_t timeline;
	uint64_t first_segno;
	uint64_t last_segno;
	uint64_t segments;        /* how many are present */
	uint64_t gap_count;       /* segments missing between first and last */
	uint64_t first_gap_segno; /* the first missing one, if any */
	uint64_t partials;
	bool has_history;
} BkWalTimeline;

typedef struct BkWalCatalog
{
	char source[BK_SOURCE_ID_MAX + 1];
	uint32_t segment_size; /* from the objects' metadata; 0 if unknown */
	int timeline_count;
	BkWalTimeline *timelines; /* sorted by timeline */
	uint64_t history_files;
	uint64_t backup_files;
	uint64_t conflicts;
	char newest_name[BK_OBJECT_NAME_MAX + 1]; /* newest segment */
	int64_t newest_archived_ms;               /* its file's mtime */
	char newest_created[64];                  /* its "created" metadata */
} BkWalCatalog;

/* Scan <source>/wal and <source>/conflicts/wal. */
extern bool bk_wal_catalog_load(const BkRepo *repo, const char *source,
								BkWalCatalog *catalog, BkError *err);
extern void bk_wal_catalog_free(BkWalCatalog *catalog);

/* segno from log/seg numbers for a segment size. */
extern uint64_t bk_wal_segno(uint32_t log, uint32_t seg, uint32_t segment_size);

/* "TTTTTTTTXXXXXXXXYYYYYYYY" for a timeline and segno (out: 25 bytes). */
extern void bk_wal_segment_name(uint32_t timeline, uint64_t segno,
								uint32_t segment_size, char *out);

/* Sources present in the repository (sorted); free with bk_repo_free_list. */
extern bool bk_repo_sources(const BkRepo *repo, char ***sources, int *count,
							BkError *err);
extern void bk_repo_free_list(char **list, int count);

#endif /* BK_REPO_H */
