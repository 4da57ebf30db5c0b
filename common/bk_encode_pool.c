/*
 * bk_encode_pool.c
 *		Objects encoded in parallel, frames handed out in order
 *		(bk_encode_pool.h).
 *
 * Every thread has a ring of frame slots and a ring of plaintext buffers.
 * A slot goes FREE -> FILLED (the caller read a chunk into the next
 * plaintext buffer) -> ENCODED or FAILED (the thread encoded it into the
 * slot's frame buffer and gave the plaintext buffer back) -> taken by the
 * caller, who holds it until the next call, then FREE again.  The caller
 * fills a thread's slots in the order of the thread's objects, the thread
 * encodes them in that order, and the caller takes them in that order, so
 * one ring per thread keeps every object's chunks in sequence, and taking
 * object k from thread k % jobs keeps the run in sequence.
 *
 * Only the caller moves a slot out of FREE, ENCODED and FAILED, only a
 * thread moves it out of FILLED, and every state change happens under the
 * pool's lock; the buffers themselves are touched without it by whoever
 * owns the slot's state.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "bk_encode_pool.h"

/* Plaintext buffers per thread: one being encoded, one being read. */
#define PLAIN_BUFFERS 2

typedef enum SlotState
{
	SLOT_FREE,
	SLOT_FILLED,
	SLOT_ENCODED,
	SLOT_FAILED
} SlotState;

typedef struct PoolObject
{
	BkObjectInfo info; /* strings below */
	char *source_id;
	char *name;
	char *meta;
	BkEncodeReadFn read;
	void *read_arg;
	uint32_t chunk_count;
	uint8_t attempt_id[BK_ATTEMPT_ID_LEN];
	uint8_t digest[BK_SHA256_LEN]; /* once the last chunk is encoded */
} PoolObject;

typedef struct Slot
{
	SlotState state;
	PoolObject *object;
	uint32_t chunk_index;
	uint8_t *plain; /* the thread's plaintext buffer, while FILLED */
	size_t plain_len;
	uint8_t *frame;
	size_t frame_len;
	BkFrame info;
	BkError err; /* FAILED */
} Slot;

typedef struct Worker
{
	struct BkEncodePool *pool;
	pthread_t thread;
	bool started;
	pthread_cond_t work; /* a slot of this thread was filled, or stop */
	BkEncoder *encoder;
	bool busy; /* encoding a slot, outside the lock */

	Slot *slots;
	int fill_pos;   /* next slot the caller fills */
	int encode_pos; /* next slot the thread encodes */
	int take_pos;   /* next slot the caller takes */

	uint8_t *plain[PLAIN_BUFFERS];
	int plain_next;   /* next plaintext buffer the caller reads into */
	int plain_in_use; /* filled and not yet encoded */

	/* What the caller reads next for this thread. */
	int feed_object;
	uint32_t feed_chunk;
	uint64_t feed_offset;
} Worker;

struct BkEncodePool
{
	pthread_mutex_t lock;
	pthread_cond_t done; /* a slot was encoded, or a thread went idle */
	bool stopping;
	uint32_t chunk_size;
	size_t frame_cap;
	int jobs;
	int frames;
	uint8_t key_id[BK_KEY_ID_LEN];
	Worker *workers;

	PoolObject **objects;
	int object_count;
	int object_cap;
	int take_object;     /* the object whose frames are taken now */
	uint32_t take_chunk; /* its next chunk */
	Slot *held;          /* returned by the last call, freed by the next */
};

static void *encode_thread(void *arg);
static void run_clear(BkEncodePool *pool);
static bool feed(BkEncodePool *pool, BkError *err);

BkEncodePool *
bk_encode_pool_new(const BkKey *recipient, uint32_t chunk_size, int jobs,
				   int frames, BkError *err)
{
	BkEncodePool *pool;
	sigset_t all_signals;
	sigset_t old_signals;

	if (jobs < 1 || jobs > BK_ENCODE_JOBS_MAX || frames < 1)
	{
		bk_error_set(err, BK_ERR_USAGE,
					 "an encoding pool needs 1 to %d threads and at least one "
					 "frame each, not %d and %d",
					 BK_ENCODE_JOBS_MAX, jobs, frames);
		return NULL;
	}
	pool = calloc(1, sizeof(*pool));
	if (pool == NULL)
		goto nomem;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->done, NULL);
	pool->chunk_size = chunk_size;
	pool->frame_cap = bk_frame_max_len(chunk_size);
	pool->jobs = jobs;
	pool->frames = frames;
	memcpy(pool->key_id, recipient->id, BK_KEY_ID_LEN);
	pool->workers = calloc((size_t) jobs, sizeof(Worker));
	if (pool->workers == NULL)
		goto nomem;
	for (int workerIdx = 0; workerIdx < jobs; workerIdx++)
		pthread_cond_init(&pool->workers[workerIdx].work, NULL);
	for (int workerIdx = 0; workerIdx < jobs; workerIdx++)
	{
		Worker *worker = &pool->workers[workerIdx];

		worker->pool = pool;
		worker->feed_object = workerIdx;
		worker->encoder = bk_encoder_new(recipient, chunk_size, err);
		if (worker->encoder == NULL)
		{
			bk_encode_pool_free(pool);
			return NULL;
		}
		worker->slots = calloc((size_t) frames, sizeof(Slot));
		if (worker->slots == NULL)
			goto nomem;
		/*
		 * malloc'd, not touched: a frame buffer only becomes resident as far
		 * as frames filled it, so compressible data costs what it fills.
		 */
		for (int slotIdx = 0; slotIdx < frames; slotIdx++)
			if ((worker->slots[slotIdx].frame = malloc(pool->frame_cap)) ==
				NULL)
				goto nomem;
		for (int bufIdx = 0; bufIdx < PLAIN_BUFFERS; bufIdx++)
			if ((worker->plain[bufIdx] = malloc(chunk_size)) == NULL)
				goto nomem;
	}

	/*
	 * The threads must never take a signal: in a PostgreSQL process the
	 * handlers assume the main thread (they set latches, longjmp).  They
	 * inherit the mask they are created with.
	 */
	sigfillset(&all_signals);
	pthread_sigmask(SIG_SETMASK, &all_signals, &old_signals);
	for (int workerIdx = 0; workerIdx < jobs; workerIdx++)
	{
		Worker *worker = &pool->workers[workerIdx];
		int failure =
			pthread_create(&worker->thread, NULL, encode_thread, worker);

		if (failure != 0)
		{
			pthread_sigmask(SIG_SETMASK, &old_signals, NULL);
			bk_error_set(err, BK_ERR_NOMEM,
						 "could not start an encoding thread: %s",
						 strerror(failure));
			bk_encode_pool_free(pool);
			return NULL;
		}
		worker->started = true;
	}
	pthread_sigmask(SIG_SETMASK, &old_signals, NULL);
	return pool;

nomem:
	bk_encode_pool_free(pool);
	bk_error_set(err, BK_ERR_NOMEM, "out of memory for an encoding pool");
	return NULL;
}

void
bk_encode_pool_free(BkEncodePool *pool)
{
	if (pool == NULL)
		return;
	if (pool->workers != NULL)
	{
		pthread_mutex_lock(&pool->lock);
		pool->stopping = true;
		for (int workerIdx = 0; workerIdx < pool->jobs; workerIdx++)
			pthread_cond_signal(&pool->workers[workerIdx].work);
		pthread_mutex_unlock(&pool->lock);
		for (int workerIdx = 0; workerIdx < pool->jobs; workerIdx++)
		{
			Worker *worker = &pool->workers[workerIdx];

			if (worker->started)
				pthread_join(worker->thread, NULL);
			bk_encoder_free(worker->encoder);
			if (worker->slots != NULL)
				for (int slotIdx = 0; slotIdx < pool->frames; slotIdx++)
					free(worker->slots[slotIdx].frame);
			free(worker->slots);
			for (int bufIdx = 0; bufIdx < PLAIN_BUFFERS; bufIdx++)
			{
				/* Plaintext of the database: wipe what may be in it. */
				if (worker->plain[bufIdx] != NULL)
					bk_secure_wipe(worker->plain[bufIdx], pool->chunk_size);
				free(worker->plain[bufIdx]);
			}
			pthread_cond_destroy(&worker->work);
		}
	}
	run_clear(pool);
	free(pool->objects);
	free(pool->workers);
	pthread_cond_destroy(&pool->done);
	pthread_mutex_destroy(&pool->lock);
	free(pool);
}

int
bk_encode_pool_jobs(const BkEncodePool *pool)
{
	return pool->jobs;
}

uint32_t
bk_encode_pool_chunk_size(const BkEncodePool *pool)
{
	return pool->chunk_size;
}

const uint8_t *
bk_encode_pool_key_id(const BkEncodePool *pool)
{
	return pool->key_id;
}

/*
 * encode_thread
 *		Encode this thread's filled slots, in order, until the pool stops.
 */
static void *
encode_thread(void *arg)
{
	Worker *worker = arg;
	BkEncodePool *pool = worker->pool;

	pthread_mutex_lock(&pool->lock);
	for (;;)
	{
		Slot *slot = &worker->slots[worker->encode_pos];
		bool ok;

		if (pool->stopping)
			break;
		if (slot->state != SLOT_FILLED)
		{
			pthread_cond_wait(&worker->work, &pool->lock);
			continue;
		}
		worker->busy = true;
		pthread_mutex_unlock(&pool->lock);

		bk_error_clear(&slot->err);
		ok = true;
		if (slot->chunk_index == 0)
		{
			ok = bk_encoder_begin(worker->encoder, &slot->object->info,
								  &slot->err);
			if (ok)
				memcpy(slot->object->attempt_id,
					   bk_encoder_attempt_id(worker->encoder),
					   BK_ATTEMPT_ID_LEN);
		}
		if (ok)
			ok = bk_encoder_chunk_into(
				worker->encoder, slot->plain, slot->plain_len, slot->frame,
				pool->frame_cap, &slot->frame_len, &slot->info, &slot->err);
		if (ok && bk_encoder_done(worker->encoder))
			memcpy(slot->object->digest, bk_encoder_digest(worker->encoder),
				   BK_SHA256_LEN);

		pthread_mutex_lock(&pool->lock);
		worker->busy = false;
		slot->state = ok ? SLOT_ENCODED : SLOT_FAILED;
		slot->plain = NULL;
		worker->plain_in_use--;
		worker->encode_pos = (worker->encode_pos + 1) % pool->frames;
		pthread_cond_broadcast(&pool->done);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* Free the run's objects; the threads must be idle on it. */
static void
run_clear(BkEncodePool *pool)
{
	for (int objectIdx = 0; objectIdx < pool->object_count; objectIdx++)
	{
		PoolObject *object = pool->objects[objectIdx];

		free(object->source_id);
		free(object->name);
		free(object->meta);
		free(object);
	}
	pool->object_count = 0;
	pool->take_object = 0;
	pool->take_chunk = 0;
	pool->held = NULL;
}

void
bk_encode_pool_reset(BkEncodePool *pool)
{
	pthread_mutex_lock(&pool->lock);
	/* Nothing new starts: the caller (us) is the only one who fills. */
	for (int workerIdx = 0; workerIdx < pool->jobs; workerIdx++)
	{
		Worker *worker = &pool->workers[workerIdx];

		for (int slotIdx = 0; slotIdx < pool->frames; slotIdx++)
			if (worker->slots[slotIdx].state == SLOT_FILLED &&
				!(worker->busy && slotIdx == worker->encode_pos))
				worker->slots[slotIdx].state = SLOT_FREE;
	}
	for (;;)
	{
		bool busy = false;

		for (int workerIdx = 0; workerIdx < pool->jobs; workerIdx++)
			busy |= pool->workers[workerIdx].busy;
		if (!busy)
			break;
		pthread_cond_wait(&pool->done, &pool->lock);
	}
	for (int workerIdx = 0; workerIdx < pool->jobs; workerIdx++)
	{
		Worker *worker = &pool->workers[workerIdx];

		for (int slotIdx = 0; slotIdx < pool->frames; slotIdx++)
			worker->slots[slotIdx].state = SLOT_FREE;
		worker->fill_pos = worker->encode_pos = worker->take_pos = 0;
		worker->plain_next = 0;
		worker->plain_in_use = 0;
		worker->feed_object = workerIdx;
		worker->feed_chunk = 0;
		worker->feed_offset = 0;
	}
	run_clear(pool);
	pthread_mutex_unlock(&pool->lock);
}

static char *
copy_string(const char *s, bool *ok)
{
	char *copy;

	if (s == NULL)
		return NULL;
	copy = strdup(s);
	if (copy == NULL)
		*ok = false;
	return copy;
}

bool
bk_encode_pool_add(BkEncodePool *pool, const BkObjectInfo *info,
				   BkEncodeReadFn read, void *read_arg, BkError *err)
{
	PoolObject *object;
	bool ok = true;

	/* A run whose frames were all taken ends here. */
	if (pool->object_count > 0 && pool->take_object == pool->object_count)
		bk_encode_pool_reset(pool);
	if (pool->object_count == pool->object_cap)
	{
		int cap = pool->object_cap == 0 ? 16 : pool->object_cap * 2;
		PoolObject **objects = realloc(pool->objects, cap * sizeof(*objects));

		if (objects == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		pool->objects = objects;
		pool->object_cap = cap;
	}
	object = calloc(1, sizeof(*object));
	if (object == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	object->source_id = copy_string(info->source_id, &ok);
	object->name = copy_string(info->name, &ok);
	object->meta = copy_string(info->meta, &ok);
	if (!ok)
	{
		free(object->source_id);
		free(object->name);
		free(object->meta);
		free(object);
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	object->info = *info;
	object->info.source_id = object->source_id;
	object->info.name = object->name;
	object->info.meta = object->meta;
	object->read = read;
	object->read_arg = read_arg;
	/* As the encoder counts them: an empty object is one empty chunk. */
	object->chunk_count =
		info->size == 0 ? 1
						: (uint32_t) ((info->size + pool->chunk_size - 1) /
									  pool->chunk_size);
	if (info->size > (uint64_t) UINT32_MAX * pool->chunk_size)
		object->chunk_count = UINT32_MAX; /* the encoder refuses it */

	pthread_mutex_lock(&pool->lock);
	pool->objects[pool->object_count++] = object;
	pthread_mutex_unlock(&pool->lock);
	return true;
}

/*
 * feed
 *		Read plaintext into every thread's free slots, the thread whose
 *		object is taken now first.  Runs on the caller's thread only.
 */
static bool
feed(BkEncodePool *pool, BkError *err)
{
	for (int n = 0; n < pool->jobs; n++)
	{
		Worker *worker = &pool->workers[(pool->take_object + n) % pool->jobs];

		for (;;)
		{
			Slot *slot = &worker->slots[worker->fill_pos];
			PoolObject *object;
			uint8_t *plain;
			uint64_t remaining;
			size_t len;
			bool room;

			pthread_mutex_lock(&pool->lock);
			room = slot->state == SLOT_FREE &&
				   worker->plain_in_use < PLAIN_BUFFERS;
			pthread_mutex_unlock(&pool->lock);
			if (!room)
				break;

			/* Past the objects fully read: this thread's next one. */
			while (worker->feed_object < pool->object_count &&
				   worker->feed_chunk ==
					   pool->objects[worker->feed_object]->chunk_count)
			{
				worker->feed_object += pool->jobs;
				worker->feed_chunk = 0;
				worker->feed_offset = 0;
			}
			if (worker->feed_object >= pool->object_count)
				break;
			object = pool->objects[worker->feed_object];
			remaining = object->info.size - worker->feed_offset;
			len = remaining < pool->chunk_size ? (size_t) remaining
											   : pool->chunk_size;
			plain = worker->plain[worker->plain_next];
			if (len > 0 && !object->read(object->read_arg, worker->feed_offset,
										 plain, len, err))
				return false;

			slot->object = object;
			slot->chunk_index = worker->feed_chunk;
			slot->plain = plain;
			slot->plain_len = len;
			worker->feed_chunk++;
			worker->feed_offset += len;
			worker->fill_pos = (worker->fill_pos + 1) % pool->frames;
			worker->plain_next = (worker->plain_next + 1) % PLAIN_BUFFERS;

			pthread_mutex_lock(&pool->lock);
			slot->state = SLOT_FILLED;
			worker->plain_in_use++;
			pthread_cond_signal(&worker->work);
			pthread_mutex_unlock(&pool->lock);
		}
	}
	return true;
}

bool
bk_encode_pool_next(void *arg, const uint8_t **frame, size_t *len,
					BkFrame *info, BkError *err)
{
	BkEncodePool *pool = arg;
	PoolObject *object;
	Worker *worker;
	Slot *slot;

	if (pool->held != NULL)
	{
		pthread_mutex_lock(&pool->lock);
		pool->held->state = SLOT_FREE;
		pthread_mutex_unlock(&pool->lock);
		pool->held = NULL;
	}
	if (pool->take_object >= pool->object_count)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"no object left in the encoding pool's run");
	object = pool->objects[pool->take_object];
	if (pool->take_chunk == object->chunk_count)
	{
		pool->take_object++;
		pool->take_chunk = 0;
		*frame = NULL;
		*len = 0;
		return true;
	}

	worker = &pool->workers[pool->take_object % pool->jobs];
	slot = &worker->slots[worker->take_pos];
	for (;;)
	{
		SlotState state;

		if (!feed(pool, err))
			return false;
		pthread_mutex_lock(&pool->lock);
		state = slot->state;
		if (state == SLOT_FILLED)
			pthread_cond_wait(&pool->done, &pool->lock);
		pthread_mutex_unlock(&pool->lock);
		if (state == SLOT_ENCODED || state == SLOT_FAILED)
			break;
		if (state == SLOT_FREE)
			return bk_error_set(err, BK_ERR_INTERNAL,
								"chunk %" PRIu32 " of \"%s\" was never read",
								pool->take_chunk, object->name);
	}
	if (slot->object != object || slot->chunk_index != pool->take_chunk)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"the encoding pool lost the order of \"%s\"",
							object->name);
	worker->take_pos = (worker->take_pos + 1) % pool->frames;
	pool->held = slot;
	if (slot->state == SLOT_FAILED)
	{
		*err = slot->err;
		return false;
	}
	pool->take_chunk++;
	*frame = slot->frame;
	*len = slot->frame_len;
	if (info != NULL)
		*info = slot->info;
	return true;
}

const uint8_t *
bk_encode_pool_attempt_id(const BkEncodePool *pool, int index)
{
	if (index < 0 || index >= pool->object_count)
		return NULL;
	return pool->objects[index]->attempt_id;
}

const uint8_t *
bk_encode_pool_digest(const BkEncodePool *pool, int index)
{
	/* Taken to its end: the thread wrote the digest before the last frame. */
	if (index < 0 || index >= pool->take_object)
		return NULL;
	return pool->objects[index]->digest;
}
