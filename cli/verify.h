/*
 * verify.h
 *		What bk verify's engine-neutral command and each engine's checks
 *		share: the running totals and how a problem is reported.
 */
#ifndef BK_VERIFY_H
#define BK_VERIFY_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "bk_crypto.h"
#include "bk_error.h"
#include "bk_keys.h"
#include "repo.h"

#define BK_VERIFY_JOBS_DEFAULT     2
#define BK_VERIFY_JOBS_MAX         64
#define BK_VERIFY_MISSING_KEYS_MAX 8

/* What one verify thread has of its own. */
typedef struct BkVerifyWorker
{
	BkDecoder *decoder; /* NULL without the key */
	int scratch_fd;     /* for the engine, -1 until it opens one */
} BkVerifyWorker;

typedef struct BkVerifier
{
	const BkKeyring *ring; /* NULL: no key, keyless checks only */
	BkDecoder *decoder;    /* the main thread's */
	int jobs;              /* --jobs: threads of bk_verify_parallel */
	BkVerifyWorker workers[BK_VERIFY_JOBS_MAX];
	/*
	 * Held by the functions below while they count and report, so that
	 * bk_verify_parallel's tasks may call them; taken by tasks themselves
	 * (bk_verify_lock) only around totals of their own, never around
	 * those calls.
	 */
	pthread_mutex_t lock;
	bool json;
	uint64_t objects; /* checked */
	uint64_t problems;
	json_t *problem_list; /* of the current source */
	json_t *note_list;    /* what was not checked, and why */
	json_t *conflict_list;
	json_t *snapshot_list;
	uint64_t snapshot_files; /* rebuilt and checked */
	uint64_t hint_bit_differences;
	/*
	 * The first failure of this host rather than of the archive (a
	 * temporary file it could not write), under the lock: the engine stops
	 * and returns it as its error.
	 */
	bool local_failed;
	BkError local_error;
	/*
	 * Of the problems, those of an object sealed to a key the keyring
	 * lacks (bk_error_missing_key), and the ids of up to
	 * BK_VERIFY_MISSING_KEYS_MAX such keys: not damage the archive shows,
	 * but a keyring short of a key (a rotation), said as such at the end.
	 */
	uint64_t key_problems;
	int missing_key_count;
	char missing_keys[BK_VERIFY_MISSING_KEYS_MAX][BK_KEY_ID_HEX_LEN + 1];
} BkVerifier;

/* A problem with object (a name), said as the output format wants. */
extern void bk_verify_problem(BkVerifier *verifier, const char *object,
							  const char *fmt, ...) BK_PRINTF(3, 4);

/*
 * Something about object that was not checked (not a problem), said as the
 * output format wants: text prints it, --json lists it under "notes".
 */
extern void bk_verify_note(BkVerifier *verifier, const char *object,
						   const char *fmt, ...) BK_PRINTF(3, 4);

/* Two copies of object: the verdict, and the copies' details (JSON). */
extern void bk_verify_conflict(BkVerifier *verifier, const char *object,
							   const char *verdict, json_t *copies);

/*
 * Record a failure of this host (not a problem of the archive); only the
 * first is kept.  bk_verify_local_failed says whether one was recorded,
 * and copies it into err.
 */
extern void bk_verify_local_failure(BkVerifier *verifier, const BkError *err);
extern bool bk_verify_local_failed(BkVerifier *verifier, BkError *err);

/*
 * Reading or checking object failed with err.  Damage (a bad format, tag,
 * sequence or size, a missing or conflicting object) is a problem of the
 * archive, reported under object.  An object not found when read was
 * listed before, and removed meanwhile (bk expire): a note, not a problem
 * (callers that read the object confirm that with bk_verify_read_failed
 * first).  A failure to read at all (the repository
 * did not answer or refused bk's credentials, or this host ran out of memory
 * or failed in OpenSSL) says nothing about the object: it is recorded as
 * bk_verify_local_failure, the verifier's threads take no more tasks, and
 * the run stops with it (its error's exit status, 5 for I/O), so that an
 * outage of the store is never reported as damage.
 */
extern void bk_verify_object_failed(BkVerifier *verifier, const char *object,
									const BkError *err);

/*
 * Reading or checking name, an object of (area, source, kind) that was
 * listed, failed with err: as bk_verify_object_failed, once "no such
 * object" is confirmed by a listing without it (bk_repo_read_gone).  An
 * object the store still lists is a read that failed, never a note.
 */
extern void bk_verify_read_failed(BkVerifier *verifier, const BkRepo *repo,
								  BkRepoArea area, const char *source, int kind,
								  const char *name, const BkError *err);

/* Whether code says a read failed, rather than what was read is wrong. */
extern bool bk_verify_read_failure(BkErrorCode code);

extern void bk_verify_lock(BkVerifier *verifier);
extern void bk_verify_unlock(BkVerifier *verifier);

/*
 * Run task(arg, worker, index) for every index below count, on up to
 * verifier->jobs threads, each with its own worker; returns when all are
 * done.  Tasks report through the functions above.  Indexes are handed out
 * in order, so checks that fetch objects keep that many requests in flight
 * (an object store answers each after a round trip).
 */
typedef void (*BkVerifyTask)(void *arg, BkVerifyWorker *worker, size_t index);
extern void bk_verify_parallel(BkVerifier *verifier, size_t count,
							   BkVerifyTask task, void *arg);

/*
 * The objects of one kind listed under a prefix of one source.  A check
 * that reads an object with the key (every frame's CRC checked as well)
 * marks it read; bk_verify_unread_objects then gives every other listed
 * object the keyless check, so that each object is read once.
 */
typedef struct BkVerifyListing
{
	int kind;     /* BK_KIND_* */
	char **names; /* sorted */
	bool *read;   /* per name: read (or tried) by a check with the key */
	size_t count;
	size_t cap;
	/*
	 * Entries of a listing that are not objects (a directory where only
	 * objects belong): their number, and the first one's name.
	 */
	size_t not_objects;
	char *first_not_object;
} BkVerifyListing;

/*
 * List the objects of (source, kind) whose names start with prefix ("" or
 * ending with "/"; recursive: under deeper "/" too), replacing what listing
 * held; none marked read.
 */
extern bool bk_verify_list_objects(BkVerifyListing *listing, const BkRepo *repo,
								   const char *source, int kind,
								   const char *prefix, bool recursive,
								   BkError *err);

/* Whether name is listed. */
extern bool bk_verify_listed(const BkVerifyListing *listing, const char *name);

/*
 * Mark name read, if listed.  Tasks of bk_verify_parallel may call this:
 * each name is its own flag.
 */
extern void bk_verify_mark_read(BkVerifyListing *listing, const char *name);

/*
 * The keyless check (it parses, passes its CRCs, is whole and is the object
 * its name says) of every listed object not marked read, on the verifier's
 * threads; problems are reported under the object's name.
 */
extern void bk_verify_unread_objects(BkVerifier *verifier, const BkRepo *repo,
									 const char *source,
									 BkVerifyListing *listing);

extern void bk_verify_listing_free(BkVerifyListing *listing);

#endif /* BK_VERIFY_H */
