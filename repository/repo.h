/*
 * repo.h
 *		The bk repository: where archived objects live, and the one interface
 *		to it.  Nothing outside this library knows where or how an object is
 *		kept (docs/repository-layout.md): callers name objects by source,
 *		kind and name, and get back bytes, sizes, identities and lists.
 *
 * The operations are the ones both a local directory and an S3-compatible
 * object store can implement with the same guarantees:
 *
 *	 put-if-absent   an upload (spooled by the shipper as chunks arrive) is
 *					 committed as an object only if no object has that name:
 *					 CREATED, or EXISTS_IDENTICAL (same key id and
 *					 fingerprint: a re-send), or EXISTS_DIFFERENT (the caller
 *					 keeps it as a conflict copy, in the conflicts area).
 *					 A commit that returned is durable.
 *	 read            byte ranges of an object; frames and decryption are
 *					 built on that here, the same for every store.
 *	 stat            size and the time the store committed the object (set
 *					 by the store, never by bk).
 *	 list            the names under a prefix, one level or all, paged
 *					 inside the library.
 *	 delete          a missing object is success.
 *	 housekeeping    uploads nobody will finish (a shipper that died) are
 *					 removed.
 *
 * Objects live in two areas: the archive (what restores read) and the
 * conflicts (second copies that arrived with different content, kept for
 * bk verify to judge; their names get ".<attempt id>" appended).  Messages
 * the shipper rejects are kept apart, per topic, partition and offset.
 * A third area, expired, holds small records bk itself writes (never
 * frames): what bk expire removed, so that a restore reading it meanwhile
 * can tell removed WAL from WAL not archived yet.
 *
 * The backend is chosen by the repository setting: a directory, or
 * "s3://BUCKET/PREFIX" for an S3-compatible object store (repo_s3.c).
 */
#ifndef BK_REPO_H
#define BK_REPO_H

#include <stdint.h>
#include <sys/types.h>

#include "bk_crypto.h"
#include "bk_error.h"
#include "bk_frame.h"

typedef struct BkRepo BkRepo;
typedef struct BkRepoReader BkRepoReader;
typedef struct BkRepoUpload BkRepoUpload;

typedef enum BkRepoArea
{
	BK_REPO_ARCHIVE,   /* what restores read */
	BK_REPO_CONFLICTS, /* second copies with different content */
	BK_REPO_EXPIRED    /* bk's records of what bk expire removed */
} BkRepoArea;

/*
 * Settings of the S3 backend (ignored by the directory backend).  Strings
 * are copied at open; NULL or 0 means the default.
 */
#define BK_SPOOL_DIR_DEFAULT     "/var/lib/bk/spool"
#define BK_S3_TIMEOUT_DEFAULT_MS ((int64_t) 120 * 1000)
#define BK_S3_PART_SIZE_DEFAULT  ((uint64_t) 16 * 1024 * 1024)
#define BK_S3_READ_JOBS_DEFAULT  4
/*
 * Multipart uploads begun longer ago are aborted by housekeeping; a longer
 * age may be asked, never a shorter one.  It has nothing to do with
 * abandon_after (broker time between two chunks of an object): an upload
 * takes as long as its object takes to send, which on a slow link is
 * hours, and it may be another running shipper's.  A day, as the bucket
 * lifecycle rule the README advises.
 */
#define BK_S3_STALE_UPLOAD_MS ((int64_t) 24 * 3600 * 1000)

typedef struct BkRepoOptions
{
	const char *s3_endpoint;  /* https://host[:port]; default AWS's */
	const char *s3_region;    /* default us-east-1 */
	const char *s3_uri_style; /* "host" (default) or "path" */
	const char *s3_ca_file;
	bool s3_verify_tls; /* default true */
	const char *s3_storage_class;
	const char *s3_access_key_file; /* else AWS_* environment */
	const char *spool_dir;          /* where a shipper assembles uploads */
	int64_t s3_timeout_ms;          /* how long a failing request is retried */
	uint64_t s3_part_size;          /* first multipart part size */
	int s3_read_jobs;               /* parallel range GETs per read */
	int64_t s3_stale_upload_ms;     /* older multipart uploads are aborted
									 * (at least BK_S3_STALE_UPLOAD_MS) */
	int s3_list_page; /* keys per listing request; 0: the store's 1000 */
} BkRepoOptions;

extern void bk_repo_options_init(BkRepoOptions *options);

/* Is location an object store ("s3://BUCKET/PREFIX")? */
extern bool bk_repo_location_is_s3(const char *location);

/*
 * Open the repository at location.  With create, make it (and its marker)
 * if it does not exist; without, fail unless the marker is there, so a
 * typo in --repo is never mistaken for an empty archive.
 */
extern BkRepo *bk_repo_open(const char *location, bool create, BkError *err);
extern BkRepo *bk_repo_open_with(const char *location,
								 const BkRepoOptions *options, bool create,
								 BkError *err);
extern void bk_repo_close(BkRepo *repo);

/* The repository's location, for messages. */
extern const char *bk_repo_location(const BkRepo *repo);

/*
 * Where an object is, for messages ("<root>/<source>/wal/<name>" on a
 * directory): never to be opened by the caller.
 */
extern void bk_repo_describe(const BkRepo *repo, BkRepoArea area,
							 const char *source, int kind, const char *name,
							 char *out, size_t out_len);

/* ------------------------------------------------------------ sources */

/* Sources present in the repository (sorted); free with bk_repo_free_list. */
extern bool bk_repo_sources(const BkRepo *repo, char ***sources, int *count,
							BkError *err);
extern void bk_repo_free_list(char **list, int count);

/* Has the repository anything of this source? */
extern bool bk_repo_source_exists(const BkRepo *repo, const char *source,
								  bool *exists, BkError *err);

/* ------------------------------------------------------------ listing */

typedef struct BkRepoEntry
{
	const char *name; /* the object's name, or a prefix ending before "/" */
	bool is_prefix;   /* names continue below name + "/" */
	uint64_t size;
	int64_t stored_ms; /* when the store committed it; 0 for a prefix */
} BkRepoEntry;

/* Return false (with err set) to stop the listing. */
typedef bool (*BkRepoListFn)(void *arg, const BkRepoEntry *entry, BkError *err);

/*
 * The objects of (source, kind) in area whose names start with prefix
 * (which is "" or ends with "/"), in no particular order.  Not recursive:
 * a name with another "/" after the prefix is given once, as a prefix
 * entry.  A source or kind with nothing stored lists nothing.
 */
extern bool bk_repo_list(const BkRepo *repo, BkRepoArea area,
						 const char *source, int kind, const char *prefix,
						 bool recursive, BkRepoListFn fn, void *arg,
						 BkError *err);

/* ------------------------------------------------------------ reading */

typedef struct BkRepoStat
{
	bool exists;
	uint64_t size;
	int64_t stored_ms;
} BkRepoStat;

/* Size and commit time; exists false (and success) if there is none. */
extern bool bk_repo_stat(const BkRepo *repo, BkRepoArea area,
						 const char *source, int kind, const char *name,
						 BkRepoStat *stat, BkError *err);

/*
 * A read of an object that was listed failed with err: is the object gone,
 * removed since the listing (by a bk expire running meanwhile)?  A read
 * that failed as NOT_FOUND, or another failure after which the store says
 * it holds no such object, is confirmed by listing the object's prefix
 * again: gone only if the listing no longer has it.  A store whose reads
 * lag its listings, or a proxy's passing 404, says "no such object" of
 * one it holds, and a caller that acts on "gone" removes what depends on
 * it.  When gone, err's code becomes BK_ERR_NOT_FOUND (its message
 * stays).  Otherwise err says what failed, and is never NOT_FOUND: a
 * listing that still has the object makes it BK_ERR_STORE, one that
 * failed gives its own error.
 */
extern bool bk_repo_read_gone(const BkRepo *repo, BkRepoArea area,
							  const char *source, int kind, const char *name,
							  BkError *err);

/* An object opened for reading; NULL with BK_ERR_NOT_FOUND if absent. */
extern BkRepoReader *bk_repo_reader_open(const BkRepo *repo, BkRepoArea area,
										 const char *source, int kind,
										 const char *name, BkError *err);
extern uint64_t bk_repo_reader_size(const BkRepoReader *reader);
/*
 * Exactly len bytes at offset, or an error: BK_ERR_NOT_FOUND for an object
 * removed since it was opened (an object store; a directory's open file
 * reads on).
 */
extern bool bk_repo_reader_read(BkRepoReader *reader, uint64_t offset,
								void *buf, size_t len, BkError *err);
extern void bk_repo_reader_close(BkRepoReader *reader);
/*
 * A hint: the object will be opened soon, start opening it (an object
 * store's first GET) so that the open finds it done.  Nothing is reported;
 * the open reports what it would have.  Up to BK_REPO_PREFETCHES objects
 * are opened ahead at a time, each holding a thread and what it read
 * until its open, bk_repo_prefetch_end or bk_repo_close (or, with every
 * place taken, until it is stale and a new hint takes its place).
 */
#define BK_REPO_PREFETCHES 8
extern void bk_repo_prefetch(const BkRepo *repo, BkRepoArea area,
							 const char *source, int kind, const char *name);
/*
 * Give up the objects opened ahead that were not opened, and wait.  Not
 * while other threads hint or open objects of repo: its give-up applies to
 * the opens it starts meanwhile too.
 */
extern void bk_repo_prefetch_end(const BkRepo *repo);

/*
 * Read a stored object frame by frame.  fn gets each frame (a buffer valid
 * until the next call) and returns false (with err set) to stop.  With
 * headers_only, payloads are skipped and the frame given to fn holds the
 * header only (its CRC is not checked): enough for identity, not for
 * integrity.
 */
typedef bool (*BkFrameVisitor)(void *arg, const uint8_t *frame, size_t len,
							   BkError *err);
extern bool bk_repo_read_frames(const BkRepo *repo, BkRepoArea area,
								const char *source, int kind, const char *name,
								bool headers_only, BkFrameVisitor fn, void *arg,
								BkError *err);

/* Identity of an object's content, readable without keys. */
typedef struct BkObjectIdentity
{
	uint8_t key_id[BK_KEY_ID_LEN];
	uint8_t fingerprint[BK_FINGERPRINT_LEN];
	uint8_t attempt_id[BK_ATTEMPT_ID_LEN];
} BkObjectIdentity;

/* Identity (key id, fingerprint, attempt) and headers of a stored object. */
extern bool bk_repo_object_identity(const BkRepo *repo, BkRepoArea area,
									const char *source, int kind,
									const char *name,
									BkObjectIdentity *identity,
									BkObjectTracker *object, BkError *err);

/*
 * Check a stored object without keys: every frame parses and passes its
 * CRC, the chunks form one complete attempt, and the object is (source,
 * kind, expect_name), the one its name says (for a conflict copy, the name
 * without its ".<attempt>").
 */
extern bool bk_repo_check_object(const BkRepo *repo, BkRepoArea area,
								 const char *source, int kind, const char *name,
								 const char *expect_name,
								 BkObjectTracker *object, BkError *err);

/*
 * The metadata of a stored object, to plan by.  Without keys it is
 * bk_repo_object_identity's: every frame's header read, their CRCs not
 * checked, so nothing is authenticated (bit rot, or anyone who can write
 * to the repository, can change it).  With decoder (may be NULL) chunk 0
 * is read whole and authenticated too (its CRC, and its AEAD tag, whose
 * associated data is the whole header), and must be this object (source,
 * kind, name) of the same attempt, key and metadata: then the metadata is
 * authentic, every frame carrying chunk 0's.  That costs one chunk read
 * and decrypted (the source's chunk_size, 1 MiB by default, 16 MiB at
 * most), and an envelope opened.  A disagreement is BK_ERR_AUTH, naming
 * the object.  The decoder is left reset.
 */
extern bool bk_repo_object_meta(const BkRepo *repo, BkRepoArea area,
								const char *source, int kind, const char *name,
								BkDecoder *decoder, BkObjectTracker *object,
								BkError *err);

/*
 * A plan made from keyless metadata, checked once the object is decrypted
 * anyway: keep the SHA-256 of the metadata planned by
 * (bk_repo_meta_digest), and after bk_repo_decrypt* of that object ask
 * whether the decoder authenticated the same (bk_repo_meta_agrees;
 * BK_ERR_AUTH naming the object otherwise).
 */
extern bool bk_repo_meta_digest(const BkObjectTracker *object,
								uint8_t digest[BK_SHA256_LEN], BkError *err);
extern bool bk_repo_meta_agrees(const BkDecoder *decoder,
								const uint8_t planned[BK_SHA256_LEN],
								const char *source, BkError *err);

/*
 * A plan made from keyless metadata, checked without decrypting the rest:
 * the object's metadata, authenticated with decoder (bk_repo_object_meta),
 * must still be what was planned by (BK_ERR_AUTH naming the object).
 */
extern bool bk_repo_meta_still(const BkRepo *repo, BkRepoArea area,
							   const char *source, int kind, const char *name,
							   BkDecoder *decoder,
							   const uint8_t planned[BK_SHA256_LEN],
							   BkError *err);

/* Where decrypted bytes go, in order; false (with err set) to stop. */
typedef bool (*BkPlainSink)(void *arg, const uint8_t *data, size_t len,
							BkError *err);

/*
 * Decrypt a stored object into sink, chunk by chunk (memory stays bounded):
 * every chunk's tag and the whole object's fingerprint are checked, and
 * the frames must say they are (source, kind, name), so no other object
 * can be substituted.  An absent object is BK_ERR_NOT_FOUND.  The decoder
 * holds the plaintext's SHA-256 and size afterwards.
 */
extern bool bk_repo_decrypt(const BkRepo *repo, BkRepoArea area,
							const char *source, int kind, const char *name,
							BkDecoder *decoder, BkPlainSink sink, void *arg,
							BkError *err);

/*
 * Decrypt a stored object into the file dest, atomically
 * ("<dest>.bk-tmp.<pid>", fsync, rename, fsync of the directory), checked
 * as bk_repo_decrypt checks.  size (may be NULL) gets the plaintext size.
 */
extern bool bk_repo_decrypt_to_file(const BkRepo *repo, BkRepoArea area,
									const char *source, int kind,
									const char *name, BkDecoder *decoder,
									const char *dest, uint64_t *size,
									BkError *err);

/* The same into memory (malloc'd, NUL-terminated), for at most max_len. */
extern bool bk_repo_decrypt_to_memory(const BkRepo *repo, BkRepoArea area,
									  const char *source, int kind,
									  const char *name, BkDecoder *decoder,
									  size_t max_len, uint8_t **data,
									  size_t *len, BkError *err);

/* ------------------------------------------------------------ writing */

/* A shipper id usable in names: [A-Za-z0-9._-], 1 to 64, not "."-led. */
extern bool bk_shipper_id_valid(const char *id);

/*
 * Where this shipper spools uploads: its own, locked for as long as the
 * repository stays open, and emptied of what an earlier run of the same
 * shipper left.  Fails if another process holds it: two shippers must not
 * share an id.  Other shippers' uploads are never touched.
 */
extern bool bk_repo_spool_open(BkRepo *repo, const char *shipper_id,
							   BkError *err);

/* A new upload, spooled under tag (unique among this shipper's uploads). */
extern BkRepoUpload *bk_repo_upload_begin(BkRepo *repo, const char *tag,
										  BkError *err);
extern bool bk_repo_upload_write(BkRepoUpload *upload, const void *data,
								 size_t len, BkError *err);
/*
 * Everything is written, nothing more will be; not yet durable.  Optional
 * before bk_repo_upload_finish: uploads sealed together, then finished one
 * after another, share the file system's work of making them durable (one
 * journal commit on ext4 for the directory backend) instead of paying it
 * each.
 */
extern bool bk_repo_upload_seal(BkRepoUpload *upload, BkError *err);
/* Everything is written: make the spooled bytes durable. */
extern bool bk_repo_upload_finish(BkRepoUpload *upload, BkError *err);
/* Where it is spooled, for messages. */
extern const char *bk_repo_upload_where(const BkRepoUpload *upload);

typedef enum BkPutResult
{
	BK_PUT_CREATED,          /* stored now, or by this same attempt before */
	BK_PUT_EXISTS_IDENTICAL, /* same key id and fingerprint: a re-send */
	BK_PUT_EXISTS_DIFFERENT  /* another content under that name, or a copy
							  * read and found malformed */
} BkPutResult;

/*
 * Put-if-absent: the finished upload becomes object (source, kind, name)
 * of area unless one exists.  In the conflicts area the name gets
 * ".<attempt id>" appended, so every differing copy is kept.  In the
 * archive area a copy in place of the same attempt (same attempt id, key id
 * and fingerprint: committed before a crash cut off its report) is CREATED,
 * another attempt's with the same content EXISTS_IDENTICAL.  A commit that
 * returned CREATED is durable; after any result the upload may be committed
 * again (the conflicts area after EXISTS_DIFFERENT), then freed.  A copy in
 * place that cannot be read to compare (an I/O error, a timeout) fails the
 * commit rather than make a conflict; one removed before it is read is
 * taken over by this upload, once (a second such race fails too).
 * BK_ERR_REFUSED: the store will never take this name (a component or key
 * too long for it); the caller keeps the upload with
 * bk_repo_upload_quarantine rather than retry for ever.
 */
extern bool bk_repo_upload_commit(BkRepoUpload *upload, BkRepoArea area,
								  const char *source, int kind,
								  const char *name,
								  const BkObjectIdentity *identity,
								  BkPutResult *result, BkError *err);

/*
 * Commits in a batch.  Between bk_repo_batch_begin and bk_repo_batch_end, a
 * commit's result (CREATED, or a copy found in place) is not yet durable: it
 * is once bk_repo_batch_end returns true, which syncs each directory the
 * batch committed into once, instead of once per object.  Nothing may be
 * reported archived before then; on false, nothing committed in the batch
 * may be taken as durable.  Backends whose every commit is durable in itself
 * (S3) ignore batches.  bk_repo_upload_quarantine is not for use in a batch.
 */
extern void bk_repo_batch_begin(BkRepo *repo);
extern bool bk_repo_batch_end(BkRepo *repo, BkError *err);

/* The key (docs/repository-layout.md) the last commit stored or found. */
extern const char *bk_repo_upload_key(const BkRepoUpload *upload);

/* Free an upload; what is still spooled is removed. */
extern void bk_repo_upload_free(BkRepoUpload *upload);

/*
 * A small record of the expired area, written whole, replacing any of that
 * name, durable when it returns (on a directory: a temporary file, fsync,
 * rename, fsync of the directory; on S3: one PUT).  The archive and the
 * conflicts take objects only by put-if-absent, so they refuse it.
 */
extern bool bk_repo_put_record(BkRepo *repo, BkRepoArea area,
							   const char *source, int kind, const char *name,
							   const void *data, size_t len, BkError *err);

/* Keep a rejected message's bytes and the reason, durably. */
extern bool bk_repo_quarantine(BkRepo *repo, const char *topic,
							   int32_t partition, int64_t offset,
							   const void *data, size_t len, const char *reason,
							   BkError *err);

/*
 * Keep a finished upload the repository refused (BK_ERR_REFUSED) as a
 * rejected message would be, at the offset of its first chunk, with the
 * reason: the object's frames, durably, never archived.
 */
extern bool bk_repo_upload_quarantine(BkRepoUpload *upload, const char *topic,
									  int32_t partition, int64_t offset,
									  const char *reason, BkError *err);

/* Messages the shipper rejected: how many, and the oldest (0 if none). */
extern bool bk_repo_rejected_summary(const BkRepo *repo, uint64_t *count,
									 int64_t *oldest_ms, BkError *err);

/* ------------------------------------------------------------ deleting */

/* Remove one object; a missing one is success. */
extern bool bk_repo_delete(BkRepo *repo, BkRepoArea area, const char *source,
						   int kind, const char *name, BkError *err);

/* Remove every object of (source, kind) in area whose name starts with
 * prefix (which ends with "/"). */
extern bool bk_repo_delete_prefix(BkRepo *repo, BkRepoArea area,
								  const char *source, int kind,
								  const char *prefix, BkError *err);

/*
 * Housekeeping: remove uploads that nobody will finish (the spools of
 * shippers that are not running).  *removed gets how many.
 */
extern bool bk_repo_clean_uploads(BkRepo *repo, uint64_t *removed,
								  BkError *err);

#endif /* BK_REPO_H */
