/*
 * repo_backend.h
 *		What a repository backend implements (private to this library).
 *
 * repo.c turns the interface's (area, source, kind, name) into keys, the
 * backend-neutral names of docs/repository-layout.md
 * ("<source>/wal/<name>", "<source>/conflicts/wal/<name>.<attempt>",
 * "rejected/<topic>.<partition>.<offset>"), and builds everything that is
 * the same for every store (frames, identities, decryption, conflict
 * names, listing filters) on the few operations a backend provides on
 * keys.  A backend knows nothing of sources, kinds or frames.
 */
#ifndef BK_REPO_BACKEND_H
#define BK_REPO_BACKEND_H

#include "repo.h"

/* Longest key: source, area and kind words, an object name, an attempt. */
#define BK_REPO_KEY_MAX                                                        \
	(BK_SOURCE_ID_MAX + BK_OBJECT_NAME_MAX + 2 * BK_ATTEMPT_ID_LEN + 64)

/* The marker object every repository has; its content says the format. */
#define BK_REPO_MARKER_KEY  BK_REPO_MARKER_NAME
#define BK_REPO_MARKER_TEXT "bk repository 1\n"

/* Where rejected messages go. */
#define BK_REPO_REJECTED_PREFIX BK_REPO_REJECTED_NAME "/"

/*
 * Where the S3 backend probes the store's conditional writes: random keys
 * of 32 hex digits, never listed as content, but bk's for housekeeping (a
 * probe whose multipart abort failed leaves an upload behind).
 */
#define BK_REPO_PROBE_PREFIX  ".bk-probe/"
#define BK_REPO_PROBE_HEX_LEN 32

/*
 * Is key (below the repository root) one bk uploads objects to:
 * "<source>/<kind>/<name>", "<source>/conflicts/<kind>/<name>.<attempt>"
 * or "rejected/<topic>.<partition>.<offset>"?
 * Housekeeping aborts only uploads of such keys: a bucket (or an empty
 * prefix) may be shared with other applications, whose uploads are theirs.
 */
extern bool bk_repo_key_is_bk(const char *key);

/*
 * How old a multipart upload must be before housekeeping aborts it:
 * requested_ms (0: the default), never less than BK_S3_STALE_UPLOAD_MS.
 */
extern int64_t bk_repo_stale_upload_ms(int64_t requested_ms);

/*
 * Spool files are not kept open between chunks: a shipper may hold
 * thousands of attempts at once (a Kafka brownout where every retry of a
 * source starts a new one, each given up only after abandon_after), and an
 * fd each ran it out of files.  Create (empty, mode) and append to one.
 */
extern bool bk_spool_create(const char *path, mode_t mode, BkError *err);
extern bool bk_spool_append(const char *path, const void *data, size_t len,
							BkError *err);

typedef struct BkRepoBackend
{
	const char *name;

	/* Set up repo->state for location; create it when asked. */
	bool (*open)(BkRepo *repo, const char *location, bool create, BkError *err);
	void (*close)(BkRepo *repo);
	void (*describe)(const BkRepo *repo, const char *key, char *out,
					 size_t out_len);

	/*
	 * Keys under prefix ("" or ending with "/"), names given relative to
	 * it; not recursive: what continues after another "/" once, as a prefix.
	 */
	bool (*list)(const BkRepo *repo, const char *prefix, bool recursive,
				 BkRepoListFn fn, void *arg, BkError *err);
	bool (*stat)(const BkRepo *repo, const char *key, BkRepoStat *stat,
				 BkError *err);
	/*
	 * An absent object is BK_ERR_NOT_FOUND, at the open and, for one
	 * removed since (an object store's later byte range), at a read.
	 */
	BkRepoReader *(*reader_open)(const BkRepo *repo, const char *key,
								 BkError *err);
	bool (*reader_read)(BkRepoReader *reader, uint64_t offset, void *buf,
						size_t len, BkError *err);
	void (*reader_close)(BkRepoReader *reader);
	/*
	 * Optional (NULL: nothing to gain): start opening key, which will be
	 * opened soon, so that a later reader_open of it finds it open.  A
	 * hint: it may do nothing, and reports nothing.
	 */
	void (*prefetch)(const BkRepo *repo, const char *key);
	/* With prefetch: give up the opens nobody took over, and wait. */
	void (*prefetch_end)(const BkRepo *repo);

	/* A small object written whole and durably; replaces. */
	bool (*put_small)(BkRepo *repo, const char *key, const void *data,
					  size_t len, BkError *err);

	bool (*spool_open)(BkRepo *repo, const char *shipper_id, BkError *err);
	BkRepoUpload *(*upload_begin)(BkRepo *repo, const char *tag, BkError *err);
	bool (*upload_write)(BkRepoUpload *upload, const void *data, size_t len,
						 BkError *err);
	/* Optional (NULL: nothing to do): all written, not yet durable. */
	bool (*upload_seal)(BkRepoUpload *upload, BkError *err);
	bool (*upload_finish)(BkRepoUpload *upload, BkError *err);
	/*
	 * Commit as key unless it exists: *created false then (the caller
	 * compares identities).  Durable when it returns true with *created,
	 * or, between batch_begin and batch_end, once batch_end returns true.
	 */
	bool (*upload_commit)(BkRepoUpload *upload, const char *key, bool *created,
						  BkError *err);
	/* Optional (NULL: every commit is durable in itself). */
	void (*batch_begin)(BkRepo *repo);
	bool (*batch_end)(BkRepo *repo, BkError *err);
	void (*upload_free)(BkRepoUpload *upload);

	bool (*delete)(BkRepo *repo, const char *key, BkError *err);
	bool (*delete_prefix)(BkRepo *repo, const char *prefix, BkError *err);
	bool (*clean_uploads)(BkRepo *repo, uint64_t *removed, BkError *err);
} BkRepoBackend;

struct BkRepo
{
	const BkRepoBackend *backend;
	char location[4096];
	const BkRepoOptions *options; /* during open only */
	void *state;                  /* the backend's */
};

/* What every reader and upload starts with. */
struct BkRepoReader
{
	const BkRepo *repo;
	uint64_t size;
	char where[4096]; /* for messages */
	bool in_order;    /* every byte will be read, in order: read ahead */
};

struct BkRepoUpload
{
	BkRepo *repo;
	char where[4096];          /* for messages */
	char key[BK_REPO_KEY_MAX]; /* of the last commit */
};

extern const BkRepoBackend bk_repo_directory_backend;
extern const BkRepoBackend bk_repo_s3_backend;

#endif /* BK_REPO_BACKEND_H */
