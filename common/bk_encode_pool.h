/*
 * bk_encode_pool.h
 *		Objects compressed, encrypted and hashed by a small pool of threads,
 *		their frames handed out in order.
 *
 * The caller adds a run of objects, then takes their frames one after
 * another, object after object, exactly as one encoder would give them.
 * Object k of a run is encoded by thread k % jobs, each thread with its own
 * encoder, so while the caller sends the frames of one object the next
 * objects are already being encoded on other cores.
 *
 * The threads only do codec work on memory.  The caller's thread reads the
 * plaintext (the read callback is only ever called from inside
 * bk_encode_pool_next, on the caller's thread) into a thread's buffers and
 * takes the frames back out.  The threads start with every signal blocked,
 * call nothing but libbk's encoder, and never call back; that is what makes
 * the pool usable inside a PostgreSQL process (the archiver, a background
 * worker), where only the main thread may call PostgreSQL.
 *
 * Memory is fixed when the pool is made: per thread, two chunks of
 * plaintext and `frames` frame buffers (a frame is at most a chunk plus its
 * header).  Enough frames to hold one whole object let a thread encode the
 * next object completely while the caller is still sending the current
 * one; fewer still work, with less overlap.
 */
#ifndef BK_ENCODE_POOL_H
#define BK_ENCODE_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bk_error.h"
#include "bk_frame.h"
#include "bk_keys.h"

#define BK_ENCODE_JOBS_MAX 16

/*
 * Read len bytes of the object at offset into buf; false with err set on
 * failure (a short file is a failure).
 */
typedef bool (*BkEncodeReadFn)(void *arg, uint64_t offset, uint8_t *buf,
							   size_t len, BkError *err);

typedef struct BkEncodePool BkEncodePool;

/*
 * A pool of jobs threads (1..BK_ENCODE_JOBS_MAX) sealing to recipient,
 * chunks of chunk_size, each thread with `frames` frame buffers (at least 1).
 */
extern BkEncodePool *bk_encode_pool_new(const BkKey *recipient,
										uint32_t chunk_size, int jobs,
										int frames, BkError *err);

/* Stops and joins the threads. */
extern void bk_encode_pool_free(BkEncodePool *pool);

extern int bk_encode_pool_jobs(const BkEncodePool *pool);
extern uint32_t bk_encode_pool_chunk_size(const BkEncodePool *pool);
extern const uint8_t *bk_encode_pool_key_id(const BkEncodePool *pool);

/*
 * Drop the current run, taken or not, and wait until no thread works on
 * it.  Needed before a new run only after a failure; a run whose frames
 * were all taken is ended by the next bk_encode_pool_add.
 */
extern void bk_encode_pool_reset(BkEncodePool *pool);

/*
 * Add an object to the current run; info is copied.  The read callback and
 * its argument must stay valid until the object's last frame was taken.
 * Its index in the run is the number of objects added before it.
 */
extern bool bk_encode_pool_add(BkEncodePool *pool, const BkObjectInfo *info,
							   BkEncodeReadFn read, void *read_arg,
							   BkError *err);

/*
 * The next frame of the run (a BkNextFrameFn, for bk_producer_batch_add):
 * *frame is NULL once at the end of each object, and the call after that
 * starts the next object.  The frame and *info stay valid until the next
 * call.  After a failure, bk_encode_pool_reset.
 */
extern bool bk_encode_pool_next(void *pool, const uint8_t **frame, size_t *len,
								BkFrame *info, BkError *err);

/* The attempt id of object index of the run, once its first frame was taken. */
extern const uint8_t *bk_encode_pool_attempt_id(const BkEncodePool *pool,
												int index);

/* SHA-256 of object index's plaintext, once all its frames were taken. */
extern const uint8_t *bk_encode_pool_digest(const BkEncodePool *pool,
											int index);

#endif /* BK_ENCODE_POOL_H */
