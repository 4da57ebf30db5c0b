/*
 * test_encode_pool.c
 *		The encoding pool: every object of a run comes back decodable, byte
 *		for byte, in the order the objects were added, whatever the number
 *		of threads and of frame buffers; a failed read or encode is reported
 *		under the object's name and a reset pool runs again; the threads
 *		never take a signal.
 */
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bk_crypto.h"
#include "bk_encode_pool.h"
#include "bk_frame.h"
#include "bk_util.h"

#define CHUNK 4096

static BkKey key;
static BkKeyring ring;

typedef struct MemObject
{
	uint8_t *data;
	size_t size;
	size_t fail_at; /* a read at or past this offset fails; SIZE_MAX: none */
	int reads;
} MemObject;

static bool
mem_read(void *arg, uint64_t offset, uint8_t *buf, size_t len, BkError *err)
{
	MemObject *object = arg;

	object->reads++;
	if (offset + len > object->size)
		return bk_error_set(err, BK_ERR_IO, "read past the end");
	if (offset + len > object->fail_at)
		return bk_error_set(err, BK_ERR_IO, "disk on fire at offset %llu",
							(unsigned long long) offset);
	memcpy(buf, object->data + offset, len);
	return true;
}

static int
setup(void **state)
{
	test_key(&key, &ring);
	return 0;
}

/*
 * Encode objects of the given sizes as one run; decode every object's
 * frames and compare with what went in.
 */
static void
run_and_check(BkEncodePool *pool, const size_t *sizes, int count, uint64_t seed)
{
	MemObject *objects = calloc((size_t) count, sizeof(MemObject));
	BkError err;

	for (int objectIdx = 0; objectIdx < count; objectIdx++)
	{
		char name[64];
		BkObjectInfo info = {.kind = BK_KIND_WAL, .source_id = "pool-test"};

		objects[objectIdx].size = sizes[objectIdx];
		objects[objectIdx].data = malloc(sizes[objectIdx] + 1);
		objects[objectIdx].fail_at = SIZE_MAX;
		test_fill(objects[objectIdx].data, sizes[objectIdx],
				  seed + (uint64_t) objectIdx, objectIdx % 2 == 0);
		snprintf(name, sizeof(name), "object-%03d", objectIdx);
		info.name = name;
		info.meta = "type=segment\n";
		info.size = sizes[objectIdx];
		if (!bk_encode_pool_add(pool, &info, mem_read, &objects[objectIdx],
								&err))
			fail_msg("add: %s", err.message);
	}

	for (int objectIdx = 0; objectIdx < count; objectIdx++)
	{
		FrameList frames = {0};
		uint8_t *out = NULL;
		size_t out_len = 0;
		char name[64];
		const uint8_t *frame;
		size_t len;
		BkFrame info;
		int capacity = 0;
		uint8_t digest[BK_SHA256_LEN];

		snprintf(name, sizeof(name), "object-%03d", objectIdx);
		for (;;)
		{
			if (!bk_encode_pool_next(pool, &frame, &len, &info, &err))
				fail_msg("next: %s", err.message);
			if (frame == NULL)
				break;
			/* Each frame names its object: the run stays in order. */
			assert_int_equal(info.name_len, strlen(name));
			assert_memory_equal(info.name, name, info.name_len);
			assert_int_equal(info.chunk_index, frames.count);
			assert_memory_equal(info.attempt_id,
								bk_encode_pool_attempt_id(pool, objectIdx),
								BK_ATTEMPT_ID_LEN);
			if (frames.count == capacity)
			{
				capacity = capacity == 0 ? 8 : capacity * 2;
				frames.data =
					realloc(frames.data, capacity * sizeof(uint8_t *));
				frames.len = realloc(frames.len, capacity * sizeof(size_t));
			}
			frames.data[frames.count] = malloc(len);
			memcpy(frames.data[frames.count], frame, len);
			frames.len[frames.count] = len;
			frames.count++;
		}
		if (!test_decode_digest(&ring, &frames, NULL, &out, &out_len, digest,
								&err))
			fail_msg("decode of %s: %s", name, err.message);
		assert_non_null(bk_encode_pool_digest(pool, objectIdx));
		assert_memory_equal(bk_encode_pool_digest(pool, objectIdx), digest,
							BK_SHA256_LEN);
		assert_int_equal(out_len, objects[objectIdx].size);
		if (out_len > 0)
			assert_memory_equal(out, objects[objectIdx].data, out_len);
		free(out);
		test_frames_free(&frames);
	}
	for (int objectIdx = 0; objectIdx < count; objectIdx++)
		free(objects[objectIdx].data);
	free(objects);
}

static const size_t sizes[] = {
	16 * CHUNK, 0,          1,         CHUNK,     CHUNK + 1,     7 * CHUNK / 2,
	3 * CHUNK,  16 * CHUNK, CHUNK - 1, 2 * CHUNK, 5 * CHUNK + 17};
#define NSIZES ((int) (sizeof(sizes) / sizeof(sizes[0])))

static void
check_shape(int jobs, int frames)
{
	BkError err;
	BkEncodePool *pool = bk_encode_pool_new(&key, CHUNK, jobs, frames, &err);

	if (pool == NULL)
		fail_msg("pool: %s", err.message);
	assert_int_equal(bk_encode_pool_jobs(pool), jobs);
	/* Two runs in a row: the second starts from a drained first. */
	run_and_check(pool, sizes, NSIZES, 1);
	run_and_check(pool, sizes + 3, NSIZES - 3, 100);
	bk_encode_pool_free(pool);
}

static void
test_one_thread_one_frame(void **state)
{
	check_shape(1, 1);
}

static void
test_two_threads_whole_objects(void **state)
{
	check_shape(2, 16);
}

static void
test_three_threads_two_frames(void **state)
{
	check_shape(3, 2);
}

static void
test_more_threads_than_objects(void **state)
{
	BkError err;
	BkEncodePool *pool = bk_encode_pool_new(&key, CHUNK, 8, 4, &err);
	size_t one[] = {3 * CHUNK + 5};

	assert_non_null(pool);
	run_and_check(pool, one, 1, 7);
	run_and_check(pool, sizes, 3, 8);
	bk_encode_pool_free(pool);
}

/* A read failing in the middle of a later object: named, then reset works. */
static void
test_read_failure_then_reset(void **state)
{
	BkError err;
	BkEncodePool *pool = bk_encode_pool_new(&key, CHUNK, 2, 4, &err);
	MemObject objects[3];
	const uint8_t *frame;
	size_t len;
	bool failed = false;

	assert_non_null(pool);
	for (int objectIdx = 0; objectIdx < 3; objectIdx++)
	{
		BkObjectInfo info = {.kind = BK_KIND_WAL,
							 .source_id = "pool-test",
							 .name = objectIdx == 1 ? "bad" : "good",
							 .size = 6 * CHUNK};

		objects[objectIdx].size = 6 * CHUNK;
		objects[objectIdx].data = calloc(1, 6 * CHUNK);
		objects[objectIdx].fail_at = objectIdx == 1 ? 4 * CHUNK : SIZE_MAX;
		assert_true(bk_encode_pool_add(pool, &info, mem_read,
									   &objects[objectIdx], &err));
	}
	for (int call = 0; call < 100 && !failed; call++)
	{
		bk_error_clear(&err);
		failed = !bk_encode_pool_next(pool, &frame, &len, NULL, &err);
	}
	assert_true(failed);
	assert_error_contains(&err, "disk on fire at offset 16384");

	bk_encode_pool_reset(pool);
	run_and_check(pool, sizes, NSIZES, 3);
	bk_encode_pool_free(pool);
	for (int objectIdx = 0; objectIdx < 3; objectIdx++)
		free(objects[objectIdx].data);
}

/* The encoder refuses an object: its name and the reason come back. */
static void
test_encode_failure(void **state)
{
	BkError err;
	BkEncodePool *pool = bk_encode_pool_new(&key, CHUNK, 2, 4, &err);
	MemObject object = {.size = CHUNK, .fail_at = SIZE_MAX};
	BkObjectInfo info = {.kind = BK_KIND_WAL,
						 .source_id = "not a valid id",
						 .name = "x",
						 .size = CHUNK};
	const uint8_t *frame;
	size_t len;

	assert_non_null(pool);
	object.data = calloc(1, CHUNK);
	assert_true(bk_encode_pool_add(pool, &info, mem_read, &object, &err));
	bk_error_clear(&err);
	assert_false(bk_encode_pool_next(pool, &frame, &len, NULL, &err));
	assert_error_contains(&err, "invalid source id \"not a valid id\"");
	bk_encode_pool_reset(pool);
	run_and_check(pool, sizes, 4, 9);
	bk_encode_pool_free(pool);
	free(object.data);
}

/* Abandoned halfway through a run (the caller failed): reset, run again. */
static void
test_abandon_midway(void **state)
{
	BkError err;
	BkEncodePool *pool = bk_encode_pool_new(&key, CHUNK, 2, 3, &err);
	MemObject objects[4];
	const uint8_t *frame;
	size_t len;

	assert_non_null(pool);
	for (int objectIdx = 0; objectIdx < 4; objectIdx++)
	{
		BkObjectInfo info = {.kind = BK_KIND_WAL,
							 .source_id = "pool-test",
							 .name = "o",
							 .size = 9 * CHUNK};

		objects[objectIdx] =
			(MemObject){.size = 9 * CHUNK, .fail_at = SIZE_MAX};
		objects[objectIdx].data = calloc(1, 9 * CHUNK);
		assert_true(bk_encode_pool_add(pool, &info, mem_read,
									   &objects[objectIdx], &err));
	}
	for (int call = 0; call < 5; call++)
		assert_true(bk_encode_pool_next(pool, &frame, &len, NULL, &err));
	bk_encode_pool_reset(pool);
	run_and_check(pool, sizes, NSIZES, 11);
	bk_encode_pool_free(pool);
	for (int objectIdx = 0; objectIdx < 4; objectIdx++)
		free(objects[objectIdx].data);
}

/*
 * A signal sent to the process while the main thread blocks it must stay
 * pending: a pool thread that could take it would run the handler off the
 * main thread (in PostgreSQL, a latch or a longjmp on the wrong stack).
 */
static volatile pthread_t handled_by;
static volatile sig_atomic_t handled;

static void
note_handler(int signo)
{
	handled_by = pthread_self();
	handled = 1;
}

static void
test_threads_block_signals(void **state)
{
	BkError err;
	BkEncodePool *pool = bk_encode_pool_new(&key, CHUNK, 4, 2, &err);
	struct sigaction action = {.sa_handler = note_handler};
	struct sigaction old_action;
	sigset_t usr1;
	sigset_t old_mask;
	struct timespec wait = {.tv_sec = 0, .tv_nsec = 300 * 1000 * 1000};
	int taken;

	assert_non_null(pool);
	sigemptyset(&action.sa_mask);
	sigaction(SIGUSR1, &action, &old_action);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, &old_mask);
	handled = 0;
	kill(getpid(), SIGUSR1);
	/* Pending for the whole process, not taken by a pool thread. */
	taken = sigtimedwait(&usr1, NULL, &wait);
	assert_int_equal(taken, SIGUSR1);
	assert_int_equal(handled, 0);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	sigaction(SIGUSR1, &old_action, NULL);
	bk_encode_pool_free(pool);
}

static void
test_bad_shape(void **state)
{
	BkError err;

	bk_error_clear(&err);
	assert_null(bk_encode_pool_new(&key, CHUNK, 0, 4, &err));
	assert_error_contains(&err, "1 to 16 threads");
	bk_error_clear(&err);
	assert_null(bk_encode_pool_new(&key, CHUNK, 2, 0, &err));
	bk_error_clear(&err);
	assert_null(bk_encode_pool_new(&key, 100, 2, 4, &err));
	assert_error_contains(&err, "chunk size 100 is outside");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_thread_one_frame),
		cmocka_unit_test(test_two_threads_whole_objects),
		cmocka_unit_test(test_three_threads_two_frames),
		cmocka_unit_test(test_more_threads_than_objects),
		cmocka_unit_test(test_read_failure_then_reset),
		cmocka_unit_test(test_encode_failure),
		cmocka_unit_test(test_abandon_midway),
		cmocka_unit_test(test_threads_block_signals),
		cmocka_unit_test(test_bad_shape),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, setup, NULL);
}
