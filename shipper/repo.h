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
 *	 .spool/<shipper id>/          attempts one shipper is assembling; its
 *	                               .lock is held while that shipper runs,
 *	                               and only that shipper ever empties it
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
	char spool[BK_REPO_PATH_MAX]; /* this shipper's spool, once opened */
	int spool_lock_fd;            /* held while the shipper runs; -1 */
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

/* A shipper id usable as a directory name: [A-Za-z0-9._-], 1 to 64. */
extern bool bk_shipper_id_valid(const char *id);

/*
 * Open (create, lock, empty) this shipper's spool, .spool/<shipper_id>/.
 * Fails if another process holds that spool: two shippers must not share
 * an id.  Other shippers' spools are never touched.
 */
extern bool bk_repo_spool_open(BkRepo *repo, const char *shipper_id,
							   BkError *err);
extern void bk_repo_spool_close(BkRepo *repo);

/* A spool file path for an attempt, in this shipper's spool. */
extern void bk_repo_spool_path(const BkRepo *repo, const char *tag, char *out,
							   size_t out_len);

/* Copies of objects of this kind that arrived with different content. */
extern uint64_t bk_repo_conflict_count(const BkRepo *repo, const char *source,
									   int kind);

/* Messages the shipper rejected (rejected/): how many, and the oldest. */
extern bool bk_repo_rejected_summary(const BkRepo *repo, uint64_t *count,
									 int64_t *oldest_ms, BkError *err);

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

/* The same into memory (malloc'd, NUL-terminated), for at most max_len. */
extern bool bk_repo_decrypt_to_memory(const char *object_path,
									  BkDecoder *decoder, const char *source,
									  int kind, const char *name,
									  size_t max_len, uint8_t **data,
									  size_t *len, BkError *err);

/*
 * rm -rf that never follows a symbolic link (a link is removed, not its
 * target).  A path that does not exist is success.
 */
extern bool bk_remove_tree(const char *path, BkError *err);

/* Sources present in the repository (sorted); free with bk_repo_free_list. */
extern bool bk_repo_sources(const BkRepo *repo, char ***sources, int *count,
							BkError *err);
extern void bk_repo_free_list(char **list, int count);

#endif /* BK_REPO_H */
