/*
 * cmd_verify.c
 *		bk verify: check the repository end to end without restoring.
 *
 * The command is the same for every engine: which sources, with or
 * without the key, how problems and conflicts are reported (text or
 * --json), the messages the shipper rejected, and the exit status (4 when
 * anything is wrong).  What is checked is the engine's (engine.h):
 * PostgreSQL's WAL and snapshots in postgres/verify.c.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "bk_util.h"
#include "commands.h"
#include "engine.h"
#include "verify.h"

static const char *verify_help =
	"Usage: bk verify [--config FILE] [--repo LOCATION] [--key-file FILE] "
	"[--source S] [--jobs N] [--repair] [--json]\n\n"
	"Checks every archived object without restoring: structure, checksums, "
	"WAL\ngaps, and whether each snapshot is complete and restorable; with "
	"the private\nkey also decrypts everything, checks each object's "
	"authentication tags,\nfingerprint and WAL page headers, and rebuilds "
	"every file of every snapshot\nto check it against the snapshot's "
	"record (a file an incremental snapshot did\nnot change is checked "
	"once, in its parent).  Exit\nstatus 4 when "
	"anything is wrong.\n\n"
	"  --source S        only this source\n"
	"  --jobs N          objects checked in parallel (default 2, at most "
	"64; more\n"
	"                    for an object store far away)\n"
	"  --repair          also remove uploads nobody will finish (spools of\n"
	"                    shippers that stopped; on S3, multipart uploads\n"
	"                    of bk objects begun more than a day "
	"ago)\n" BK_COMMON_HELP;

#define OPT_REPAIR (OPT_COMMAND_BASE + 1)
#define OPT_JOBS   (OPT_COMMAND_BASE + 2)

static const struct option verify_options[] = {
	{"source", required_argument, NULL, 's'},
	{"repair", no_argument, NULL, OPT_REPAIR},
	{"jobs", required_argument, NULL, OPT_JOBS},
	BK_COMMON_LONG_OPTIONS,
	{NULL, 0, NULL, 0}};

typedef struct VerifyOptions
{
	const char *program;
	const char *only_source;
	bool repair;
	int jobs;
} VerifyOptions;

static int
verify_option(void *arg, int code, const char *value)
{
	VerifyOptions *options = arg;
	uint64_t number;

	if (code == OPT_REPAIR)
		options->repair = true;
	else if (code == OPT_JOBS)
	{
		if (!bk_parse_u64(value, &number) || number < 1 ||
			number > BK_VERIFY_JOBS_MAX)
			return bk_cli_usage_error(options->program,
									  "--jobs must be from 1 to %d, not \"%s\"",
									  BK_VERIFY_JOBS_MAX, value);
		options->jobs = (int) number;
	}
	else
		options->only_source = value;
	return BK_EXIT_OK;
}

/*
 * Append {"object": object, field: message} to list.  JSON strings are
 * UTF-8, file names need not be: jansson refuses a message naming a
 * Latin-1 file, which would drop the entry from the list while it still
 * counts.
 */
static void
json_list_append(json_t *list, const char *object, const char *field,
				 const char *message)
{
	char *object_text = bk_utf8_readable(object);
	char *message_text = bk_utf8_readable(message);

	json_array_append_new(
		list, json_pack("{s:s, s:s}", "object",
						object_text ? object_text : "(out of memory)", field,
						message_text ? message_text : "(out of memory)"));
	free(object_text);
	free(message_text);
}

void
bk_verify_problem(BkVerifier *verifier, const char *object, const char *fmt,
				  ...)
{
	char message[BK_ERROR_MESSAGE_MAX + 1024];
	char key_id[BK_KEY_ID_HEX_LEN + 1];
	va_list args;

	va_start(args, fmt);
	vsnprintf(message, sizeof(message), fmt, args);
	va_end(args);
	bk_verify_lock(verifier);
	verifier->problems++;
	if (bk_error_missing_key(message, key_id))
	{
		bool seen = false;

		verifier->key_problems++;
		for (int keyIdx = 0; keyIdx < verifier->missing_key_count; keyIdx++)
			seen |= strcmp(verifier->missing_keys[keyIdx], key_id) == 0;
		if (!seen && verifier->missing_key_count < BK_VERIFY_MISSING_KEYS_MAX)
			strcpy(verifier->missing_keys[verifier->missing_key_count++],
				   key_id);
	}
	if (verifier->json)
		json_list_append(verifier->problem_list, object, "problem", message);
	else
		printf("  PROBLEM %s: %s\n", object, message);
	bk_verify_unlock(verifier);
}

void
bk_verify_note(BkVerifier *verifier, const char *object, const char *fmt, ...)
{
	char message[BK_ERROR_MESSAGE_MAX + 1024];
	va_list args;

	va_start(args, fmt);
	vsnprintf(message, sizeof(message), fmt, args);
	va_end(args);
	bk_verify_lock(verifier);
	if (verifier->json)
		json_list_append(verifier->note_list, object, "note", message);
	else
		printf("  note: %s\n", message);
	bk_verify_unlock(verifier);
}

void
bk_verify_conflict(BkVerifier *verifier, const char *object,
				   const char *verdict, json_t *copies)
{
	bk_verify_lock(verifier);
	verifier->problems++;
	if (verifier->json)
		json_array_append_new(verifier->conflict_list,
							  json_pack("{s:s, s:s, s:o}", "object", object,
										"verdict", verdict, "copies", copies));
	else
	{
		printf("  CONFLICT %s: %s\n", object, verdict);
		json_decref(copies);
	}
	bk_verify_unlock(verifier);
}

void
bk_verify_local_failure(BkVerifier *verifier, const BkError *err)
{
	bk_verify_lock(verifier);
	if (!verifier->local_failed)
	{
		verifier->local_failed = true;
		verifier->local_error = *err;
	}
	bk_verify_unlock(verifier);
}

bool
bk_verify_local_failed(BkVerifier *verifier, BkError *err)
{
	bool failed;

	bk_verify_lock(verifier);
	failed = verifier->local_failed;
	if (failed && err != NULL)
		*err = verifier->local_error;
	bk_verify_unlock(verifier);
	return failed;
}

bool
bk_verify_read_failure(BkErrorCode code)
{
	switch (code)
	{
		case BK_ERR_CONFIG: /* refused: a store's 403, a permission */
		case BK_ERR_IO:
		case BK_ERR_STORE:
		case BK_ERR_TIMEOUT:
		case BK_ERR_NOMEM:
		case BK_ERR_CRYPTO:
		case BK_ERR_INTERRUPTED:
			return true;
		default:
			return false;
	}
}

void
bk_verify_object_failed(BkVerifier *verifier, const char *object,
						const BkError *err)
{
	BkError failure;

	/*
	 * Listed, then gone when read: removed meanwhile, by bk expire most
	 * likely.  Not damage of what remains; what it leaves missing (a gap,
	 * an incomplete snapshot) shows in the listing of the next run.
	 */
	if (err->code == BK_ERR_NOT_FOUND)
	{
		bk_verify_note(verifier, object,
					   "%s: listed, but gone when read (removed meanwhile, "
					   "by bk expire?); not checked. Run bk verify again "
					   "once nothing removes objects: %s",
					   object, err->message);
		return;
	}
	if (!bk_verify_read_failure(err->code))
	{
		bk_verify_problem(verifier, object, "%s", err->message);
		return;
	}
	failure = *err;
	bk_error_prefix(&failure, "could not check \"%s\": ", object);
	bk_error_hint(&failure,
				  "%s%sbk verify stopped before checking everything: the "
				  "object could not be read, which is not damage. Fix what "
				  "the message names (the repository's disk, the object "
				  "store, the network, this host) and run it again.",
				  err->hint, err->hint[0] != '\0' ? " " : "");
	bk_verify_local_failure(verifier, &failure);
}

void
bk_verify_read_failed(BkVerifier *verifier, const BkRepo *repo, BkRepoArea area,
					  const char *source, int kind, const char *name,
					  const BkError *err)
{
	BkError confirmed = *err;

	/*
	 * "No such object" is what the store said, not what it holds: a proxy's
	 * passing 404, or a store whose reads lag its listings, says it of an
	 * object it still has.  Taken as a removal, that object would be left
	 * unchecked with a note and exit 0.  Only a listing made now without it
	 * confirms the removal; otherwise the read failed and the run stops.
	 */
	if (confirmed.code == BK_ERR_NOT_FOUND)
		(void) bk_repo_read_gone(repo, area, source, kind, name, &confirmed);
	bk_verify_object_failed(verifier, name, &confirmed);
}

void
bk_verify_lock(BkVerifier *verifier)
{
	pthread_mutex_lock(&verifier->lock);
}

void
bk_verify_unlock(BkVerifier *verifier)
{
	pthread_mutex_unlock(&verifier->lock);
}

typedef struct VerifyRun
{
	BkVerifier *verifier;
	size_t count;
	atomic_size_t next;
	BkVerifyTask task;
	void *arg;
} VerifyRun;

typedef struct VerifyThread
{
	VerifyRun *run;
	BkVerifyWorker *worker;
} VerifyThread;

static void *
verify_thread(void *arg)
{
	VerifyThread *thread = arg;
	VerifyRun *run = thread->run;

	for (;;)
	{
		size_t index = atomic_fetch_add(&run->next, 1);

		/* After a failure to read, the run stops: nothing more is taken. */
		if (index >= run->count || bk_verify_local_failed(run->verifier, NULL))
			break;
		run->task(run->arg, thread->worker, index);
	}
	return NULL;
}

void
bk_verify_parallel(BkVerifier *verifier, size_t count, BkVerifyTask task,
				   void *arg)
{
	VerifyRun run = {
		.verifier = verifier, .count = count, .task = task, .arg = arg};
	VerifyThread threads[BK_VERIFY_JOBS_MAX];
	pthread_t ids[BK_VERIFY_JOBS_MAX];
	int started = 0;
	int wanted = verifier->jobs < 1 ? 1 : verifier->jobs;

	atomic_init(&run.next, 0);
	if ((size_t) wanted > count)
		wanted = (int) count;
	/* The calling thread is the first worker; threads for the others. */
	for (int jobIdx = 1; jobIdx < wanted; jobIdx++)
	{
		threads[jobIdx].run = &run;
		threads[jobIdx].worker = &verifier->workers[jobIdx];
		if (pthread_create(&ids[jobIdx], NULL, verify_thread,
						   &threads[jobIdx]) != 0)
			break; /* fewer threads: the work gets done all the same */
		started++;
	}
	threads[0].run = &run;
	threads[0].worker = &verifier->workers[0];
	verify_thread(&threads[0]);
	for (int jobIdx = 1; jobIdx <= started; jobIdx++)
		pthread_join(ids[jobIdx], NULL);
}

/* ------------------------------------------------------- listed objects */

static void
listing_clear(BkVerifyListing *listing)
{
	for (size_t objIdx = 0; objIdx < listing->count; objIdx++)
		free(listing->names[objIdx]);
	listing->count = 0;
	free(listing->first_not_object);
	listing->first_not_object = NULL;
	listing->not_objects = 0;
}

static bool
listing_add(void *arg, const BkRepoEntry *entry, BkError *err)
{
	BkVerifyListing *listing = arg;

	/* Recursive listings have none: they descend into directories. */
	if (entry->is_prefix)
	{
		if (listing->not_objects++ == 0)
			listing->first_not_object = bk_cli_strdup(entry->name);
		return true;
	}
	if (listing->count == listing->cap)
	{
		listing->cap = listing->cap ? 2 * listing->cap : 256;
		listing->names =
			bk_cli_realloc(listing->names, listing->cap * sizeof(char *));
	}
	listing->names[listing->count++] = bk_cli_strdup(entry->name);
	return true;
}

static int
listing_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

bool
bk_verify_list_objects(BkVerifyListing *listing, const BkRepo *repo,
					   const char *source, int kind, const char *prefix,
					   bool recursive, BkError *err)
{
	listing_clear(listing);
	free(listing->read);
	listing->read = NULL;
	listing->kind = kind;
	if (!bk_repo_list(repo, BK_REPO_ARCHIVE, source, kind, prefix, recursive,
					  listing_add, listing, err))
		return false;
	if (listing->count > 0)
		qsort(listing->names, listing->count, sizeof(char *), listing_name_cmp);
	listing->read = bk_cli_alloc_zero(listing->count, sizeof(bool));
	return true;
}

/* The index of name in listing, or -1: it is not stored. */
static ssize_t
listing_find(const BkVerifyListing *listing, const char *name)
{
	char **found;

	if (listing->count == 0)
		return -1;
	found = bsearch(&name, listing->names, listing->count, sizeof(char *),
					listing_name_cmp);
	return found == NULL ? -1 : found - listing->names;
}

bool
bk_verify_listed(const BkVerifyListing *listing, const char *name)
{
	return listing_find(listing, name) >= 0;
}

void
bk_verify_mark_read(BkVerifyListing *listing, const char *name)
{
	ssize_t index = listing_find(listing, name);

	if (index >= 0)
		listing->read[index] = true;
}

typedef struct UnreadRun
{
	BkVerifier *verifier;
	const BkRepo *repo;
	const char *source;
	const BkVerifyListing *listing;
} UnreadRun;

static void
check_unread_object(void *arg, BkVerifyWorker *worker, size_t index)
{
	UnreadRun *run = arg;
	const char *name = run->listing->names[index];
	BkObjectTracker *tracker;
	BkError problem;

	(void) worker;
	if (run->listing->read[index])
		return;
	tracker = bk_cli_alloc(sizeof(*tracker));
	bk_error_clear(&problem);
	if (!bk_repo_check_object(run->repo, BK_REPO_ARCHIVE, run->source,
							  run->listing->kind, name, name, tracker,
							  &problem))
		bk_verify_read_failed(run->verifier, run->repo, BK_REPO_ARCHIVE,
							  run->source, run->listing->kind, name, &problem);
	free(tracker);
}

void
bk_verify_unread_objects(BkVerifier *verifier, const BkRepo *repo,
						 const char *source, BkVerifyListing *listing)
{
	UnreadRun run = {verifier, repo, source, listing};

	bk_verify_parallel(verifier, listing->count, check_unread_object, &run);
}

void
bk_verify_listing_free(BkVerifyListing *listing)
{
	listing_clear(listing);
	free(listing->names);
	free(listing->read);
	memset(listing, 0, sizeof(*listing));
}

/* A decoder for each worker (with the key), checking CRCs as well. */
static bool
verify_workers_start(BkVerifier *verifier, BkError *err)
{
	if (verifier->ring == NULL)
		return true;
	for (int jobIdx = 0; jobIdx < verifier->jobs; jobIdx++)
	{
		verifier->workers[jobIdx].decoder = bk_decoder_new(verifier->ring, err);
		if (verifier->workers[jobIdx].decoder == NULL)
			return false;
		bk_decoder_check_crc(verifier->workers[jobIdx].decoder, true);
	}
	return true;
}

static void
verify_workers_stop(BkVerifier *verifier)
{
	for (int jobIdx = 0; jobIdx < BK_VERIFY_JOBS_MAX; jobIdx++)
	{
		bk_decoder_free(verifier->workers[jobIdx].decoder);
		verifier->workers[jobIdx].decoder = NULL;
		if (verifier->workers[jobIdx].scratch_fd >= 0)
			close(verifier->workers[jobIdx].scratch_fd);
		verifier->workers[jobIdx].scratch_fd = -1;
	}
}

/*
 * One source, through its engine; its report goes into sources_json.
 * listed_by: the program, when the source was found by listing the
 * repository rather than named (--source).
 */
static bool
verify_source(BkVerifier *verifier, const BkRepo *repo, const char *source,
			  const char *listed_by, json_t *sources_json, BkError *err)
{
	const BkEngine *engine;
	uint64_t objects_before = verifier->objects;
	uint64_t problems_before = verifier->problems;
	bool ok;
	bool stopped;

	if (listed_by == NULL)
		engine = bk_engine_for(repo, source, err);
	else if (!bk_engine_for_listed(listed_by, repo, source, &engine, err))
		return false;
	else if (engine == NULL)
		return true;
	if (engine == NULL)
		return false;
	verifier->problem_list = json_array();
	verifier->note_list = json_array();
	verifier->conflict_list = json_array();
	verifier->snapshot_list = json_array();
	if (!verifier->json)
		printf("source %s\n", source);
	ok = engine->verify(verifier, repo, source, err);
	/*
	 * An object it could not read stopped the run (whatever error the
	 * engine then returned): what was found so far is still reported, as
	 * not complete, and that failure is the error.
	 */
	stopped = bk_verify_local_failed(verifier, err);
	if ((ok || stopped) && verifier->json)
	{
		json_array_append_new(
			sources_json,
			json_pack("{s:s, s:s, s:I, s:b, s:b, s:o, s:o, s:o, s:o}", "source",
					  source, "engine", engine->name, "objects",
					  (json_int_t) (verifier->objects - objects_before), "ok",
					  !stopped && verifier->problems == problems_before,
					  "complete", !stopped, "problems", verifier->problem_list,
					  "notes", verifier->note_list, "conflicts",
					  verifier->conflict_list, "snapshots",
					  verifier->snapshot_list));
		return !stopped;
	}
	if (ok || stopped)
		printf("  %" PRIu64 " object%s checked%s: %s\n",
			   verifier->objects - objects_before,
			   verifier->objects - objects_before == 1 ? "" : "s",
			   verifier->ring ? " and decrypted"
							  : " (no key: contents not decrypted)",
			   stopped ? "STOPPED, not every object was checked"
			   : verifier->problems == problems_before ? "OK"
													   : "PROBLEMS FOUND");
	json_decref(verifier->problem_list);
	json_decref(verifier->note_list);
	json_decref(verifier->conflict_list);
	json_decref(verifier->snapshot_list);
	return ok && !stopped;
}

int
bk_cmd_verify(int argc, char **argv)
{
	BkCommonOptions common = {0};
	VerifyOptions options = {.program = argv[0],
							 .jobs = BK_VERIFY_JOBS_DEFAULT};
	BkCommandContext ctx = {0};
	BkVerifier verifier = {.lock = PTHREAD_MUTEX_INITIALIZER};
	json_t *sources_json = NULL;
	uint64_t rejected = 0;
	int64_t rejected_oldest_ms = 0;
	char rejected_since[40] = "";
	BkError err;
	int status;
	bool stopped = false; /* by an object it could not read */

	bk_error_clear(&err);
	for (int jobIdx = 0; jobIdx < BK_VERIFY_JOBS_MAX; jobIdx++)
		verifier.workers[jobIdx].scratch_fd = -1;
	status = bk_command_parse(argc, argv, verify_options, verify_help, &common,
							  verify_option, &options);
	if (status != BK_COMMAND_RUN)
		return status;
	if (!bk_command_open(&ctx, argv[0], &common, options.only_source,
						 BK_KEY_USED, &err))
		goto fail;
	if (options.repair)
	{
		uint64_t removed = 0;

		/* Before the checks: what it removes is never an archived object. */
		if (!bk_repo_clean_uploads(ctx.repo, &removed, &err))
			goto fail;
		fprintf(common.json ? stderr : stdout,
				"repair: %" PRIu64 " abandoned upload%s removed\n", removed,
				removed == 1 ? "" : "s");
	}
	verifier.ring = ctx.ring;
	verifier.decoder = ctx.decoder;
	/*
	 * Every decrypted frame's CRC too: an object decrypted is then checked
	 * for all its keyless check would find, and is not read twice.
	 */
	if (ctx.decoder != NULL)
		bk_decoder_check_crc(ctx.decoder, true);
	verifier.jobs = options.jobs;
	if (!verify_workers_start(&verifier, &err))
		goto fail;
	verifier.json = common.json;
	sources_json = json_array();
	for (int sourceIdx = 0; sourceIdx < ctx.source_count && !stopped;
		 sourceIdx++)
		if (!verify_source(&verifier, ctx.repo, ctx.sources[sourceIdx],
						   options.only_source == NULL ? argv[0] : NULL,
						   sources_json, &err))
		{
			/* Stopped: what was found is reported below, then why. */
			if (!bk_verify_local_failed(&verifier, NULL))
				goto fail;
			stopped = true;
		}

	/*
	 * Messages the shipper rejected (they failed its keyless checks) are
	 * not archived; an object they belonged to shows as missing above.
	 * Said here so that nobody has to know to look in rejected/.
	 */
	if (!stopped && !bk_repo_rejected_summary(ctx.repo, &rejected,
											  &rejected_oldest_ms, &err))
		goto fail;
	if (rejected > 0)
		bk_format_time_utc(rejected_oldest_ms, rejected_since,
						   sizeof(rejected_since));
	if (common.json)
	{
		json_t *missing = json_array();
		json_t *result = json_pack(
			"{s:s, s:b, s:b, s:o, s:b, s:I, s:I, s:I, s:I, s:o, s:{s:I, s:o}}",
			"repository", bk_repo_location(ctx.repo), "ok",
			!stopped && verifier.problems == 0, "complete", !stopped, "stopped",
			stopped ? json_pack("{s:s, s:s}", "error", err.message, "hint",
								err.hint)
					: json_null(),
			"decrypted", ctx.ring != NULL, "objects",
			(json_int_t) verifier.objects, "snapshot_files_checked",
			(json_int_t) verifier.snapshot_files, "hint_bit_differences",
			(json_int_t) verifier.hint_bit_differences, "problems",
			(json_int_t) verifier.problems, "sources", sources_json, "rejected",
			"count", (json_int_t) rejected, "oldest",
			rejected ? json_string(rejected_since) : json_null());

		for (int keyIdx = 0; keyIdx < verifier.missing_key_count; keyIdx++)
			json_array_append_new(missing,
								  json_string(verifier.missing_keys[keyIdx]));
		json_object_set_new(result, "missing_keys", missing);
		sources_json = NULL;
		json_dumpf(result, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(result);
	}
	else
	{
		if (rejected > 0)
			printf("%" PRIu64 " message%s rejected by the shipper since %s, "
				   "kept in %s/rejected (not archived; each has a .reason "
				   "file, and the shipper's log says more)\n",
				   rejected, rejected == 1 ? "" : "s", rejected_since,
				   bk_repo_location(ctx.repo));
		printf("%s: %" PRIu64 " object%s, %" PRIu64 " problem%s%s\n",
			   verifier.problems > 0 ? "FAILED"
			   : stopped             ? "STOPPED"
									 : "OK",
			   verifier.objects, verifier.objects == 1 ? "" : "s",
			   verifier.problems, verifier.problems == 1 ? "" : "s",
			   stopped ? " before it stopped (not every object was checked)"
					   : "");
	}
	fflush(stdout);
	status = verifier.problems == 0 ? BK_EXIT_OK : BK_EXIT_INTEGRITY;
	if (verifier.key_problems > 0)
	{
		char ids[BK_VERIFY_MISSING_KEYS_MAX * (BK_KEY_ID_HEX_LEN + 2) + 1] = "";

		for (int keyIdx = 0; keyIdx < verifier.missing_key_count; keyIdx++)
		{
			if (keyIdx > 0)
				strcat(ids, ", ");
			strcat(ids, verifier.missing_keys[keyIdx]);
		}
		fprintf(stderr,
				"%s: %" PRIu64 " of the problems are objects sealed to a key "
				"the keyring \"%s\" lacks (%s): not damage it could see, but "
				"what a restore that reads them cannot open either\n"
				"HINT: Add the private key file of each to the keyring (cat "
				"FILE.key >> %s: after a rotation the keyring keeps every key "
				"still in use) and run bk verify again.\n",
				argv[0], verifier.key_problems, ctx.config.key_file, ids,
				ctx.config.key_file);
		/* Only keys missing: a key problem (exit 3), not damage (4). */
		if (verifier.key_problems == verifier.problems)
			status = BK_EXIT_CONFIG;
	}
	if (stopped)
	{
		int stopped_status = bk_cli_report_error(argv[0], &err);

		/* Damage found before it stopped outranks why it stopped. */
		if (verifier.problems == 0)
			status = stopped_status;
	}
	goto done;

fail:
	fflush(stdout);
	status = bk_cli_report_error(argv[0], &err);
done:
	verify_workers_stop(&verifier);
	json_decref(sources_json);
	bk_command_close(&ctx);
	return status;
}
