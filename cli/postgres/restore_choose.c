/*
 * restore_choose.c
 *		Choosing the snapshot chain for the target (by time and LSN from the
 *		catalog, by xid or restore point name with pg_waldump in the archived
 *		WAL), and checking every WAL segment from it to the target.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "bk_util.h"

#include "restore.h"

/* ---------------------------------------------------- choosing a snapshot */

/* The directory pg_waldump lives in, for the snapshot's major version. */
static void
find_pg_waldump(char *out, size_t out_len)
{
	const char *env = getenv("BK_PG_BINDIR");
	FILE *pipe;
	char line[RESTORE_PATH_MAX];

	if (env != NULL && env[0] != '\0')
	{
		snprintf(out, out_len, "%s/pg_waldump", env);
		return;
	}
	snprintf(out, out_len, "/usr/lib/postgresql/15/bin/pg_waldump");
	if (access(out, X_OK) == 0)
		return;
	pipe = popen("pg_config --bindir 2>/dev/null", "r");
	if (pipe != NULL)
	{
		if (fgets(line, sizeof(line), pipe) != NULL)
		{
			line[strcspn(line, "\n")] = '\0';
			snprintf(out, out_len, "%s/pg_waldump", line);
		}
		pclose(pipe);
		if (access(out, X_OK) == 0)
			return;
	}
	snprintf(out, out_len, "pg_waldump");
}

/* Called with each line pg_waldump prints; false: stop reading. */
typedef bool (*WaldumpLine)(const char *line, void *arg);

/*
 * The environment with TZ=UTC: pg_waldump prints record times in its local
 * time zone, named by abbreviation, which only "UTC" reads back without
 * ambiguity.  Built before fork (the child only calls exec).
 */
static char **
environ_utc(void)
{
	extern char **environ;
	static char tz_utc[] = "TZ=UTC";
	size_t count = 0;
	size_t used = 0;
	char **env;

	while (environ[count] != NULL)
		count++;
	env = calloc(count + 2, sizeof(*env));
	if (env == NULL)
		return NULL;
	for (size_t envIdx = 0; envIdx < count; envIdx++)
		if (strncmp(environ[envIdx], "TZ=", 3) != 0)
			env[used++] = environ[envIdx];
	env[used++] = tz_utc;
	env[used] = NULL;
	return env;
}

/*
 * Run pg_waldump over [start, end) of timeline's segments in dir, with the
 * options in filter (NULL-terminated), handing on_line each line it prints
 * until on_line returns false.  *exit_status (may be NULL): how it ended,
 * 0 when it read up to end (or to a record that crosses it), -1 when it
 * was stopped or killed.
 */
static bool
waldump_exec(const char *waldump, const char *dir, uint32_t timeline,
			 uint64_t start, uint64_t end, const char *const *filter,
			 WaldumpLine on_line, void *arg, int *exit_status, BkError *err)
{
	char start_text[32];
	char end_text[32];
	char tli[16];
	const char *argv[16];
	int argc = 0;
	int pipe_fds[2];
	char **env;
	pid_t pid;
	FILE *out;
	char line[4096];
	bool reading = true;
	int status;

	bk_format_lsn(start, start_text, sizeof(start_text));
	bk_format_lsn(end, end_text, sizeof(end_text));
	snprintf(tli, sizeof(tli), "%" PRIu32, timeline);
	argv[argc++] = waldump;
	argv[argc++] = "--path";
	argv[argc++] = dir;
	argv[argc++] = "--timeline";
	argv[argc++] = tli;
	argv[argc++] = "--start";
	argv[argc++] = start_text;
	argv[argc++] = "--end";
	argv[argc++] = end_text;
	for (int filterIdx = 0; filter[filterIdx] != NULL && argc < 15; filterIdx++)
		argv[argc++] = filter[filterIdx];
	argv[argc] = NULL;
	env = environ_utc();
	if (env == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	if (pipe(pipe_fds) != 0)
	{
		free(env);
		return bk_error_set(err, BK_ERR_IO, "pipe: %s", strerror(errno));
	}
	pid = fork();
	if (pid < 0)
	{
		free(env);
		close(pipe_fds[0]);
		close(pipe_fds[1]);
		return bk_error_set(err, BK_ERR_IO, "fork: %s", strerror(errno));
	}
	if (pid == 0)
	{
		int null_fd = open("/dev/null", O_WRONLY);

		dup2(pipe_fds[1], STDOUT_FILENO);
		if (null_fd >= 0)
			dup2(null_fd, STDERR_FILENO);
		close(pipe_fds[0]);
		close(pipe_fds[1]);
		execvpe(waldump, (char *const *) argv, env);
		_exit(127);
	}
	free(env);
	close(pipe_fds[1]);
	out = fdopen(pipe_fds[0], "r");
	while (reading && out != NULL && fgets(line, sizeof(line), out) != NULL)
	{
		line[strcspn(line, "\n")] = '\0';
		reading = on_line(line, arg);
	}
	/* Found what was wanted: the rest of its output is not needed. */
	if (!reading)
		kill(pid, SIGTERM);
	if (out != NULL)
		fclose(out);
	else
		close(pipe_fds[0]);
	if (waitpid(pid, &status, 0) < 0)
		return bk_error_set(err, BK_ERR_IO, "waitpid: %s", strerror(errno));
	if (exit_status != NULL)
		*exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	/* pg_waldump ends with an error at the end of the WAL it was given,
	 * which is expected here; only a missing program is a failure. */
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
	{
		bk_error_set(err, BK_ERR_CONFIG, "could not run \"%s\"", waldump);
		return bk_error_hint(err, "Install PostgreSQL's client programs, or "
								  "set BK_PG_BINDIR to the directory that "
								  "holds pg_waldump.");
	}
	return true;
}

/* waldump_exec, where how pg_waldump ended does not matter. */
static bool
waldump_run(const char *waldump, const char *dir, uint32_t timeline,
			uint64_t start, uint64_t end, const char *const *filter,
			WaldumpLine on_line, void *arg, BkError *err)
{
	return waldump_exec(waldump, dir, timeline, start, end, filter, on_line,
						arg, NULL, err);
}

/* The search for an xid's commit or abort, or a restore point. */
typedef struct TargetSearch
{
	const Restore *r;
	char wanted[128];
	uint64_t match_from;
	uint64_t match_to;
	bool *found;
	uint64_t *found_lsn;
} TargetSearch;

static bool
target_search_line(const char *line, void *arg)
{
	TargetSearch *search = arg;
	const char *lsn_text = strstr(line, "lsn: ");
	const char *match = strstr(line, search->wanted);
	char lsn_buf[32];
	uint64_t lsn;

	if (match == NULL || lsn_text == NULL ||
		sscanf(lsn_text + 5, "%31[0-9A-Fa-f/]", lsn_buf) != 1 ||
		!bk_parse_lsn(lsn_buf, &lsn) || lsn < search->match_from ||
		lsn >= search->match_to)
		return true;
	if (search->r->target.type == BK_PG_TARGET_XID)
	{
		/*
		 * "tx:        748, lsn: ..., desc: COMMIT ...", or for a prepared
		 * transaction, whose COMMIT PREPARED or ROLLBACK PREPARED is logged
		 * by a session with no xid of its own, "tx:          0, ...,
		 * desc: COMMIT_PREPARED 748: ...": recovery stops at either.
		 */
		const char *desc = strstr(line, "desc: ");
		const char *xid_text = NULL;
		unsigned long long line_xid;

		if (desc == NULL)
			return true;
		desc += 6;
		if (strncmp(desc, "COMMIT_PREPARED ", 16) == 0 ||
			strncmp(desc, "ABORT_PREPARED ", 15) == 0)
			xid_text = strchr(desc, ' ');
		else if ((strncmp(desc, "COMMIT", 6) == 0 ||
				  strncmp(desc, "ABORT", 5) == 0) &&
				 (xid_text = strstr(line, "tx:")) != NULL)
			xid_text += 3;
		if (xid_text == NULL || sscanf(xid_text, "%llu", &line_xid) != 1 ||
			line_xid != (uint32_t) search->r->target.xid)
			return true;
	}
	else if (strcmp(match, search->wanted) != 0)
		return true;
	*search->found = true;
	*search->found_lsn = lsn;
	return false;
}

/*
 * Run pg_waldump over [from, to) of the segments in dir; return the LSN of
 * the first record matching the target in [match_from, match_to).
 */
static bool
waldump_search(const Restore *r, const char *waldump, const char *dir,
			   uint32_t timeline, uint64_t from, uint64_t to,
			   uint64_t match_from, uint64_t match_to, bool *found,
			   uint64_t *found_lsn, BkError *err)
{
	const char *filter[2] = {NULL};
	TargetSearch search = {.r = r,
						   .match_from = match_from,
						   .match_to = match_to,
						   .found = found,
						   .found_lsn = found_lsn};

	if (*found)
		return true;
	if (r->target.type == BK_PG_TARGET_XID)
	{
		/* Not --xid: a prepared transaction's end is not logged under it. */
		filter[0] = "--rmgr=Transaction";
		snprintf(search.wanted, sizeof(search.wanted), "rmgr: Transaction ");
	}
	else
	{
		filter[0] = "--rmgr=XLOG";
		snprintf(search.wanted, sizeof(search.wanted), "desc: RESTORE_POINT %s",
				 r->target.text);
	}
	return waldump_run(waldump, dir, timeline, from, to, filter,
					   target_search_line, &search, err);
}

/*
 * Decrypt segments first..last into dir as recovery along timeline `along`
 * reads them (bk_wal_segment_timeline: the segment where a timeline
 * branched off from the new timeline's copy, which holds the old one's WAL
 * up to the branch point even when the old timeline's copy was archived
 * only as .partial), each named as a segment of `timeline`, stopping at the
 * first one not archived; *end is one past the last decrypted.  pg_waldump
 * --timeline only builds file names from the timeline, and the timeline ids
 * in the page headers rise along the history, as it requires.
 */
static bool
decrypt_segments(Restore *r, const char *dir, uint32_t timeline, uint32_t along,
				 uint64_t first, uint64_t last, uint64_t *end, BkError *err)
{
	uint32_t segment_size = r->catalog.wal.segment_size;

	*end = first;
	for (uint64_t segno = first; segno <= last; segno++)
	{
		uint32_t source_timeline =
			bk_wal_segment_timeline(&r->catalog.wal, along, segno);
		char name[32];
		char dest_name[32];
		char dest[RESTORE_PATH_MAX];

		if (!bk_wal_has_segment(&r->catalog.wal, source_timeline, segno))
			break;
		bk_wal_segment_name(source_timeline, segno, segment_size, name);
		bk_wal_segment_name(timeline, segno, segment_size, dest_name);
		if (!restore_join_path(dest, sizeof(dest), dir, dest_name, err))
			return false;
		if (!bk_repo_decrypt_to_file(r->repo, BK_REPO_ARCHIVE, r->source,
									 BK_KIND_WAL, name, r->decoder, dest, NULL,
									 err))
		{
			/*
			 * The temporary copy failed, not the repository (whose errors
			 * name the object): a full or read-only TMPDIR said only
			 * "could not write", and not that --pgdata is untouched.
			 */
			if (strstr(err->message, dir) != NULL)
				bk_error_hint(
					err,
					"bk restore decrypts the WAL it searches with pg_waldump"
					" into TMPDIR (here \"%s\"), up to %d segments of %u MB"
					" at a time, before it writes anything to --pgdata: set"
					" TMPDIR to a writable directory with room for them and"
					" run bk restore again.",
					bk_cli_scratch_dir(), WALDUMP_BATCH + 1,
					segment_size / (1024 * 1024));
			return bk_error_prefix(err, "WAL file \"%s\": ", name);
		}
		*end = segno + 1;
	}
	return true;
}

/* Remove what decrypt_segments wrote, so the temporary space stays small. */
static void
remove_segments(const Restore *r, const char *dir, uint32_t timeline,
				uint64_t first, uint64_t end)
{
	for (uint64_t segno = first; segno < end; segno++)
	{
		char name[32];
		char dest[RESTORE_PATH_MAX];
		BkError ignored;

		bk_wal_segment_name(timeline, segno, r->catalog.wal.segment_size, name);
		if (restore_join_path(dest, sizeof(dest), dir, name, &ignored))
			unlink(dest);
	}
}

/* A temporary directory for the segments pg_waldump reads. */
static bool
waldump_dir(char *out, size_t out_len, BkError *err)
{
	const char *tmp_root = getenv("TMPDIR");

	snprintf(out, out_len, "%s/bk-restore-waldump.XXXXXX",
			 tmp_root && tmp_root[0] ? tmp_root : "/tmp");
	if (mkdtemp(out) == NULL)
		return bk_error_set(err, BK_ERR_IO,
							"could not create a temporary directory: %s",
							strerror(errno));
	return true;
}

/*
 * Search the window [from, to) of the WAL recovery along timeline reads
 * (its history's: each ancestor's up to where it branched off) for the
 * target's record, WALDUMP_BATCH segments at a time (plus one, for a record
 * that crosses into the next batch), so the temporary space stays bounded.
 */
static bool
search_window(Restore *r, const char *waldump, const char *tmp_dir,
			  uint32_t timeline, uint64_t from, uint64_t to, bool *found,
			  uint64_t *found_lsn, BkError *err)
{
	uint32_t segment_size = r->catalog.wal.segment_size;
	uint64_t first = from / segment_size;
	uint64_t last = (to - 1) / segment_size;

	for (uint64_t batch = first; batch <= last && !*found;
		 batch += WALDUMP_BATCH)
	{
		uint64_t batch_last = batch + WALDUMP_BATCH - 1;
		uint64_t decrypted_end;
		bool gap;

		if (batch_last > last)
			batch_last = last;
		if (!decrypt_segments(r, tmp_dir, timeline, timeline, batch,
							  batch_last + 1, &decrypted_end, err))
			return false;
		gap = decrypted_end <= batch_last;
		if (decrypted_end > batch &&
			!waldump_search(r, waldump, tmp_dir, timeline,
							batch == first ? from : batch * segment_size,
							decrypted_end * segment_size,
							batch == first ? from : batch * segment_size,
							(batch_last + 1) * segment_size < to
								? (batch_last + 1) * segment_size
								: to,
							found, found_lsn, err))
			return false;
		remove_segments(r, tmp_dir, timeline, batch, decrypted_end);
		if (gap)
			break;
	}
	return true;
}

/*
 * The timeline recovery from snapshot follows: what --target-timeline
 * says, 'latest' being the newest in the archive and 'current' the
 * snapshot's own (snapshot NULL: 0, not known yet).
 */
static uint32_t
recovery_timeline_of(const Restore *r, const BkSnapshot *snapshot)
{
	if (strcmp(r->target_timeline, "latest") == 0)
		return bk_wal_latest_timeline(&r->catalog.wal);
	if (strcmp(r->target_timeline, "current") == 0)
		return snapshot != NULL ? snapshot->timeline : 0;
	return (uint32_t) strtoul(r->target_timeline, NULL, 10);
}

/*
 * --target immediate follows the timeline --target-timeline names by its
 * id; with 'latest' or 'current' (the default), the snapshot's own
 * (immediate_timeline).
 */
static bool
immediate_on_named_timeline(const Restore *r)
{
	return r->target.type == BK_PG_TARGET_IMMEDIATE &&
		   strcmp(r->target_timeline, "latest") != 0 &&
		   strcmp(r->target_timeline, "current") != 0;
}

/*
 * The end of the WAL archived along timeline's history after snapshot's
 * stop: one past the last segment bk_wal_path walks to (holes in it end
 * the search where they are); the stop itself if none.
 */
static uint64_t
archive_end_along(const Restore *r, const BkSnapshot *snapshot,
				  uint32_t timeline)
{
	const BkWalCatalog *wal = &r->catalog.wal;
	BkWalPath path;

	bk_wal_path(wal, snapshot->timeline,
				bk_lsn_segno(snapshot->stop_lsn, wal->segment_size), timeline,
				BK_WAL_END, &path);
	if (!path.reachable || path.end_segno == BK_WAL_END)
		return snapshot->stop_lsn;
	return (path.end_segno + 1) * (uint64_t) wal->segment_size;
}

/*
 * search_along
 *		Search the WAL recovery along timeline replays for the target's
 *		record: from the stop of each snapshot that becomes consistent along
 *		it (own_only: of each snapshot taken on it) to the next one's stop
 *		or the end of the archive, the newest first, skipping what lies
 *		below skip_below; the WAL is timeline's history's, each ancestor's up
 *		to where it branched off and the next timeline's from there, as
 *		recovery reads it.  Sets r->chosen, r->found_lsn and
 *		r->found_timeline when found.
 */
static bool
search_along(Restore *r, const char *waldump, const char *tmp_dir,
			 BkSnapshot **restorable, int count, uint32_t timeline,
			 bool own_only, uint64_t skip_below, bool *found, BkError *err)
{
	BkSnapshot *next = NULL;

	for (int snapIdx = count - 1; snapIdx >= 0 && !*found; snapIdx--)
	{
		BkSnapshot *snapshot = restorable[snapIdx];
		uint64_t from = snapshot->stop_lsn;
		uint64_t to;

		if (own_only ? snapshot->timeline != timeline
					 : !bk_snapshot_consistent_along(&r->catalog.wal, snapshot,
													 timeline, NULL))
			continue;
		/* Stops along one history are points of it: they compare. */
		to = next != NULL ? next->stop_lsn
						  : archive_end_along(r, snapshot, timeline);
		next = snapshot;
		if (from < skip_below)
			from = skip_below;
		if (to <= from)
			continue;
		if (!search_window(r, waldump, tmp_dir, timeline, from, to, found,
						   &r->found_lsn, err))
			return false;
		if (*found)
		{
			r->chosen = (int) (snapshot - r->catalog.snapshots);
			r->found_timeline =
				bk_wal_lsn_timeline(&r->catalog.wal, timeline, r->found_lsn);
		}
	}
	return true;
}

/*
 * search_while_taken
 *		Search the WAL written while snapshot was taken, [start, stop), for
 *		the target's record, as recovery from it reads it (a snapshot whose
 *		stop segment its own timeline archived only as .partial is read from
 *		the later timeline's copy).  Recovery from the snapshot stops at
 *		such a record before it is consistent: PostgreSQL replays the whole
 *		restore, then fails with "requested recovery stop point is before
 *		consistent recovery point".
 */
static bool
search_while_taken(Restore *r, const char *waldump, const char *tmp_dir,
				   const BkSnapshot *snapshot, bool *found, uint64_t *found_lsn,
				   BkError *err)
{
	uint32_t along = recovery_timeline_of(r, snapshot);

	if (along == 0 ||
		!bk_snapshot_consistent_along(&r->catalog.wal, snapshot, along, NULL))
		along = snapshot->timeline;
	return search_window(r, waldump, tmp_dir, along, snapshot->start_lsn,
						 snapshot->stop_lsn, found, found_lsn, err);
}

/* "the restore point \"x\"" or "transaction 748", for messages. */
static const char *
target_what(const Restore *r, char *out, size_t out_len)
{
	if (r->target.type == BK_PG_TARGET_XID)
		snprintf(out, out_len, "transaction %s", r->target.text);
	else
		snprintf(out, out_len, "the restore point \"%s\"", r->target.text);
	return out;
}

/*
 * check_taken_once
 *		Recovery stops at the first record of the target it replays: the
 *		commit or abort of the xid, or the first use of a restore point name
 *		(which may be used again, a daily "before_batch").  One written while
 *		the chosen snapshot was taken, between its start and its stop,
 *		would stop recovery before it is consistent (a FATAL error once the
 *		whole restore is done): refused.  After the search, only a name
 *		can be there too (an xid ends once along a history), and the error
 *		gives the LSN of the one found; with --snapshot nothing was searched
 *		for.
 */
static bool
check_taken_once(Restore *r, const char *waldump, const char *tmp_dir,
				 BkError *err)
{
	const BkSnapshot *snapshot = &r->catalog.snapshots[r->chosen];
	bool again = false;
	uint64_t again_lsn = 0;
	char lsn[BK_LSN_TEXT_SIZE];
	char found[BK_LSN_TEXT_SIZE];
	char what[160];

	if (r->target.type == BK_PG_TARGET_XID && r->found_lsn != 0)
		return true;
	if (!search_while_taken(r, waldump, tmp_dir, snapshot, &again, &again_lsn,
							err))
		return false;
	if (!again)
		return true;
	bk_format_lsn(again_lsn, lsn, sizeof(lsn));
	if (r->found_lsn == 0) /* --snapshot: not searched for after it */
	{
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "%s %s at %s, while snapshot %s was being taken: "
					 "recovery from it would stop there, before it is "
					 "consistent",
					 target_what(r, what, sizeof(what)),
					 r->target.type == BK_PG_TARGET_XID
						 ? "was committed or aborted"
						 : "was created",
					 lsn, snapshot->id);
		return bk_error_hint(err, "Name an older snapshot with --snapshot "
								  "(or none, for bk to choose), or restore "
								  "by --target-lsn.");
	}
	bk_format_lsn(r->found_lsn, found, sizeof(found));
	bk_error_set(err, BK_ERR_NOT_FOUND,
				 "the restore point \"%s\" found at %s was also created at "
				 "%s, while snapshot %s was being taken: recovery from it "
				 "would stop there, before it is consistent",
				 r->target.text, found, lsn, snapshot->id);
	return bk_error_hint(err,
						 "Restore to --target-lsn %s, the restore point "
						 "found, or name an older snapshot with --snapshot "
						 "to stop at an earlier use of the name.",
						 found);
}

/* check_taken_once for the snapshot --snapshot named (no search before). */
static bool
check_named_snapshot(Restore *r, BkError *err)
{
	char waldump[RESTORE_PATH_MAX];
	char tmp_dir[RESTORE_PATH_MAX];
	bool ok;

	if (r->catalog.wal.segment_size == 0)
		return true; /* no WAL: nothing to search (and not restorable) */
	find_pg_waldump(waldump, sizeof(waldump));
	if (!waldump_dir(tmp_dir, sizeof(tmp_dir), err))
		return false;
	ok = check_taken_once(r, waldump, tmp_dir, err);
	bk_remove_tree(tmp_dir, NULL);
	return ok;
}

/*
 * locate_in_wal
 *		Find which snapshot an xid or restore point name needs, in the WAL
 *		recovery along the timeline it follows replays ('current': each
 *		timeline along its own snapshots), the newest first.
 *
 *		Not found there, along every other timeline, reading only the WAL
 *		off the recovery timeline's history, from the segment where they
 *		part (which the recovery timeline may not have archived yet, so
 *		that recovery reads the other timeline's copy of it): a record
 *		before the branch point is one recovery reaches; one after it (on
 *		the old timeline, where the new timeline may have given the xid to
 *		another transaction) is what restore_check_wal_path refuses,
 *		naming the timeline that holds it (--target-timeline), rather than
 *		"not found".
 */
static bool
locate_in_wal(Restore *r, BkSnapshot **restorable, int count, BkError *err)
{
	const BkWalCatalog *wal = &r->catalog.wal;
	uint32_t recovery_timeline = recovery_timeline_of(r, NULL);
	char waldump[RESTORE_PATH_MAX];
	char tmp_dir[RESTORE_PATH_MAX];
	bool found = false;
	bool taken = false;
	uint64_t taken_lsn = 0;
	bool ok = true;

	if (wal->segment_size == 0)
		return bk_error_set(err, BK_ERR_NOT_FOUND,
							"source \"%s\" has no archived WAL to search",
							r->source);
	find_pg_waldump(waldump, sizeof(waldump));
	if (!waldump_dir(tmp_dir, sizeof(tmp_dir), err))
		return false;
	if (!r->common.json)
		fprintf(stderr,
				"%s: searching the archived WAL for %s \"%s\" with "
				"pg_waldump\n",
				r->program,
				r->target.type == BK_PG_TARGET_XID ? "the commit of transaction"
												   : "the restore point",
				r->target.text);
	if (recovery_timeline != 0)
		ok = search_along(r, waldump, tmp_dir, restorable, count,
						  recovery_timeline, false, 0, &found, err);
	for (int tlIdx = wal->timeline_count - 1; ok && tlIdx >= 0 && !found;
		 tlIdx--)
	{
		uint32_t timeline = wal->timelines[tlIdx].timeline;

		if (recovery_timeline == 0)
			ok = search_along(r, waldump, tmp_dir, restorable, count, timeline,
							  true, 0, &found, err);
		else if (timeline != recovery_timeline)
		{
			/*
			 * From the start of the segment where the histories part, not
			 * the branch point: when the recovery timeline has not
			 * archived that segment yet, recovery reads this timeline's
			 * copy (XLogFileReadAnyTLI), whose WAL up to the branch point
			 * the search along the recovery timeline could not read.
			 */
			uint64_t shared =
				bk_wal_shared_until(wal, timeline, recovery_timeline);

			ok = search_along(r, waldump, tmp_dir, restorable, count, timeline,
							  false, shared - shared % wal->segment_size,
							  &found, err);
		}
	}
	if (ok && found)
		ok = check_taken_once(r, waldump, tmp_dir, err);
	/*
	 * Not after any snapshot's stop: written while the oldest was taken,
	 * no snapshot restores to it (recovery from that one would stop before
	 * it is consistent, and every older one is gone or not restorable).
	 */
	if (ok && !found)
		ok = search_while_taken(r, waldump, tmp_dir, restorable[0], &taken,
								&taken_lsn, err);
	bk_remove_tree(tmp_dir, NULL);
	if (!ok)
		return false;
	if (taken)
	{
		char lsn[BK_LSN_TEXT_SIZE];
		char start[BK_LSN_TEXT_SIZE];
		char stop[BK_LSN_TEXT_SIZE];
		char what[160];

		bk_format_lsn(taken_lsn, lsn, sizeof(lsn));
		bk_format_lsn(restorable[0]->start_lsn, start, sizeof(start));
		bk_format_lsn(restorable[0]->stop_lsn, stop, sizeof(stop));
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "%s %s at %s, while snapshot %s (start %s, stop %s), "
					 "the oldest restorable, was being taken: no snapshot "
					 "restores to it",
					 target_what(r, what, sizeof(what)),
					 r->target.type == BK_PG_TARGET_XID
						 ? "was committed or aborted"
						 : "was created",
					 lsn, restorable[0]->id, start, stop);
		return bk_error_hint(err,
							 "Recovery from that snapshot would stop there, "
							 "before it is consistent. The earliest state a "
							 "restore reaches is that snapshot's end: "
							 "--snapshot %s --target immediate.",
							 restorable[0]->id);
	}
	if (!found)
	{
		char oldest[32];

		bk_format_lsn(restorable[0]->stop_lsn, oldest, sizeof(oldest));
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "%s \"%s\" is not in the archived WAL of source \"%s\" "
					 "after the oldest restorable snapshot (%s, stop %s)",
					 r->target.type == BK_PG_TARGET_XID
						 ? "the commit or abort record of transaction"
						 : "a restore point named",
					 r->target.text, r->source, restorable[0]->id, oldest);
		return bk_error_hint(err, "Name the snapshot to restore from with "
								  "--snapshot ID (\"bk list\" shows them); "
								  "recovery then stops at the target if it "
								  "comes after that snapshot.");
	}
	return true;
}

/*
 * authenticate_records
 *		A restore point name may be used again, and recovery stops at the
 *		first use after the snapshot it starts from; the search settles on
 *		a snapshot by windows that end at the next snapshot's stop, among
 *		the restorable ones.  So which use a restore reaches rests on every
 *		snapshot's record metadata (its stop LSN, timeline, whether it is
 *		complete), read without keys: each is authenticated first (chunk 0
 *		of each record), and a record that is there but cannot be read
 *		refuses the search, since it might hide the snapshot of a later use.
 */
static bool
authenticate_records(Restore *r, BkError *err)
{
	char name[BK_SNAPSHOT_ID_MAX + 32];

	for (int snapIdx = 0; snapIdx < r->catalog.count; snapIdx++)
	{
		const BkSnapshot *snapshot = &r->catalog.snapshots[snapIdx];

		if (!snapshot->record_listed)
			continue;
		if (!snapshot->meta_read)
		{
			bk_error_set(err, BK_ERR_FORMAT,
						 "snapshot %s: %s, so bk cannot tell which use of "
						 "the restore point \"%s\" recovery from each "
						 "snapshot reaches",
						 snapshot->id, snapshot->reason, r->target.text);
			return bk_error_hint(err,
								 "Name the snapshot to restore from with "
								 "--snapshot, or restore by --target-lsn; \"bk "
								 "verify --source %s\" checks the record.",
								 r->source);
		}
		snprintf(name, sizeof(name), "%s/%s", snapshot->id, BK_SNAPSHOT_RECORD);
		if (!bk_repo_meta_still(r->repo, BK_REPO_ARCHIVE, r->source,
								BK_KIND_SNAPSHOT, name, r->decoder,
								snapshot->meta_digest, err))
			return bk_error_prefix(err, "snapshot %s: ", snapshot->id);
	}
	return true;
}

/*
 * warn_skipped
 *		Name each snapshot newer than the one chosen that might have served
 *		the target but is not restorable, with why: the DBA must know that
 *		a damaged newest snapshot was stepped over, even when the older one
 *		and the WAL still reach the target.
 */
static void
warn_skipped(const Restore *r)
{
	const BkSnapshot *chosen = &r->catalog.snapshots[r->chosen];

	for (int snapIdx = r->catalog.count - 1; snapIdx > r->chosen; snapIdx--)
	{
		const BkSnapshot *snapshot = &r->catalog.snapshots[snapIdx];

		if (snapshot->restorable || snapshot->other_engine ||
			!bk_pg_target_might_fit(&r->target, snapshot))
			continue;
		/* An xid or a name: found in the WAL, before this one's stop. */
		if (r->found_lsn != 0 && snapshot->has_record &&
			snapshot->stop_lsn > r->found_lsn)
			continue;
		fprintf(stderr,
				"%s: warning: snapshot %s of source \"%s\" is newer than "
				"snapshot %s but not restorable (%s: %s): restoring from %s\n",
				r->program, snapshot->id, r->source, chosen->id,
				bk_snapshot_problem_name(snapshot->problem), snapshot->reason,
				chosen->id);
	}
}

static bool
choose_snapshot(Restore *r, BkError *err)
{
	BkSnapshot **restorable;
	int count;
	bool ok;

	r->chosen = -1;
	r->found_lsn = 0;
	r->found_timeline = 0;
	/*
	 * --target immediate: the timeline restore_check_wal_path picks, unless
	 * --target-timeline names one, whose snapshots alone are candidates.
	 */
	if (!bk_pg_choose_snapshot(&r->catalog, r->source, &r->target,
							   r->snapshot_id,
							   r->target.type == BK_PG_TARGET_IMMEDIATE &&
									   !immediate_on_named_timeline(r)
								   ? 0
								   : recovery_timeline_of(r, NULL),
							   &r->chosen, err))
		return false;
	if (r->chosen >= 0 && (r->target.type == BK_PG_TARGET_XID ||
						   r->target.type == BK_PG_TARGET_NAME))
		return check_named_snapshot(r, err);
	if (r->chosen >= 0)
		return true;
	/* An xid or a restore point name: the WAL says which snapshot. */
	if ((r->target.type == BK_PG_TARGET_NAME && r->decoder != NULL &&
		 !authenticate_records(r, err)) ||
		!bk_pg_restorable_by_stop(&r->catalog, &restorable, &count, err))
		return false;
	ok = locate_in_wal(r, restorable, count, err);
	free(restorable);
	return ok;
}

bool
restore_choose_snapshot(Restore *r, BkError *err)
{
	if (!choose_snapshot(r, err))
		return false;
	if (r->snapshot_id == NULL && r->chosen >= 0)
		warn_skipped(r);
	return true;
}

/* The "created" time of a WAL segment (when the source read it), or false. */
static bool
segment_created_us(const Restore *r, uint32_t timeline, uint64_t segno,
				   int64_t *us)
{
	char name[32];
	char value[64];
	BkObjectIdentity identity;
	BkObjectTracker *object = malloc(sizeof(*object));
	BkError err;
	bool ok;

	if (object == NULL)
		return false;
	bk_wal_segment_name(timeline, segno, r->catalog.wal.segment_size, name);
	ok = bk_repo_object_identity(r->repo, BK_REPO_ARCHIVE, r->source,
								 BK_KIND_WAL, name, &identity, object, &err) &&
		 bk_meta_get(object->meta, object->meta_len, "created", value,
					 sizeof(value)) &&
		 bk_parse_timestamp(value, us);
	free(object);
	return ok;
}

/* ------------------------------------- a time target before a WAL gap */

bool
restore_waldump_xact_time(const char *line, uint64_t *lsn, int64_t *us)
{
	static const char *const kinds[] = {"COMMIT", "ABORT", "COMMIT_PREPARED",
										"ABORT_PREPARED", NULL};
	const char *lsn_text = strstr(line, ", lsn: ");
	const char *desc = strstr(line, ", desc: ");
	char lsn_buf[32];
	char when[64];
	size_t kind_len;
	size_t digits;
	size_t when_len;
	bool known = false;

	if (strncmp(line, "rmgr: Transaction ", 18) != 0 || lsn_text == NULL ||
		desc == NULL || sscanf(lsn_text + 7, "%31[0-9A-Fa-f/]", lsn_buf) != 1 ||
		!bk_parse_lsn(lsn_buf, lsn))
		return false;
	desc += 8;
	kind_len = strcspn(desc, " ");
	for (int kindIdx = 0; kinds[kindIdx] != NULL && !known; kindIdx++)
		known = strlen(kinds[kindIdx]) == kind_len &&
				strncmp(desc, kinds[kindIdx], kind_len) == 0;
	if (!known || desc[kind_len] != ' ')
		return false;
	desc += kind_len + 1;
	/* A prepared transaction's record names its xid first: "740: ". */
	digits = strspn(desc, "0123456789");
	if (digits > 0 && desc[digits] == ':')
	{
		desc += digits + 1;
		while (*desc == ' ')
			desc++;
	}
	/* The time runs to the "; " before the rest (relations, subxacts...). */
	when_len = strcspn(desc, ";");
	while (when_len > 0 && desc[when_len - 1] == ' ')
		when_len--;
	if (when_len == 0 || when_len >= sizeof(when))
		return false;
	memcpy(when, desc, when_len);
	when[when_len] = '\0';
	/* pg_waldump runs with TZ=UTC (waldump_run): a time without a zone is
	 * UTC, and any other zone name is not one bk can read. */
	return bk_parse_timestamp_zone(when, true, us);
}

/* A run of segments of one timeline that recovery reads, first..last. */
typedef struct WalRange
{
	uint32_t timeline;
	uint64_t first;
	uint64_t last;
} WalRange;

/*
 * The segments recovery reads from the snapshot's stop up to the first
 * missing one, along the history of the timeline it follows, as bk_wal_path
 * walks it: each ancestor up to the segment before its branch point, the
 * next timeline from the segment that holds it.  Returns how many ranges
 * (0: the gap comes before the stop).
 */
static int
ranges_before_gap(const Restore *r, const BkSnapshot *snapshot,
				  const BkWalPath *path, const BkWalTimeline *to,
				  WalRange *ranges)
{
	uint32_t segment_size = r->catalog.wal.segment_size;
	uint64_t segno = bk_lsn_segno(snapshot->stop_lsn, segment_size);
	bool started = false;
	int count = 0;

	for (int stepIdx = 0; stepIdx <= to->ancestor_count; stepIdx++)
	{
		bool last_step = stepIdx == to->ancestor_count;
		uint32_t timeline =
			last_step ? to->timeline : to->ancestors[stepIdx].timeline;
		bool gap_here = timeline == path->first_missing_timeline;
		uint64_t branch_segno =
			last_step ? 0 : to->ancestors[stepIdx].end_lsn / segment_size;
		/* One past the last segment read on this timeline. */
		uint64_t end = gap_here ? path->first_missing_segno : branch_segno;

		started = started || timeline == snapshot->timeline;
		if (!started)
			continue;
		if (end > segno)
			ranges[count++] = (WalRange){timeline, segno, end - 1};
		if (gap_here || last_step)
			break;
		if (branch_segno > segno)
			segno = branch_segno;
	}
	return count;
}

/* What the WAL before a gap says about a time target. */
typedef struct GapScan
{
	int64_t target_us;
	uint64_t match_from; /* the records of the batch being read */
	uint64_t match_to;
	/* A commit or abort record after the target: recovery stops at one. */
	bool found;
	uint64_t found_lsn;
	int64_t found_us;
	/* The last commit or abort record before the gap, when read. */
	bool last_known;
	uint64_t last_lsn;
	int64_t last_us;
	/* A segment the source read no later than the target ended the search. */
	bool archived_early;
	char archived_name[32];
	int64_t archived_us;
} GapScan;

static bool
gap_scan_line(const char *line, void *arg)
{
	GapScan *scan = arg;
	uint64_t lsn;
	int64_t us;

	if (!restore_waldump_xact_time(line, &lsn, &us) || lsn < scan->match_from ||
		lsn >= scan->match_to)
		return true;
	if (!scan->last_known || lsn > scan->last_lsn)
	{
		scan->last_known = true;
		scan->last_lsn = lsn;
		scan->last_us = us;
	}
	/*
	 * recoveryStopsBefore: with recovery_target_inclusive on (bk writes it
	 * at that default) recovery stops before the first commit or abort
	 * whose time is after the target; off, at an equal time too.  "After"
	 * is right for both.
	 */
	if (us <= scan->target_us)
		return true;
	scan->found = true;
	scan->found_lsn = lsn;
	scan->found_us = us;
	return false;
}

/* Read segments first..last of timeline for a commit after the target. */
static bool
gap_scan_batch(Restore *r, const char *waldump, const char *tmp_dir,
			   uint32_t timeline, uint64_t first, uint64_t last,
			   uint64_t stop_lsn, GapScan *scan, BkError *err)
{
	static const char *const filter[] = {"--rmgr=Transaction", NULL};
	uint32_t segment_size = r->catalog.wal.segment_size;
	uint64_t start = first * segment_size;
	uint64_t end;
	bool ok = true;

	/* One segment more, if archived, for a record that crosses into it. */
	if (!decrypt_segments(r, tmp_dir, timeline, r->recovery_timeline, first,
						  last + 1, &end, err))
		return false;
	/* Recovery must reach consistency first: a commit before the stop
	 * would end it too early, never at the target. */
	if (start < stop_lsn)
		start = stop_lsn;
	scan->match_from = start;
	scan->match_to = (last + 1) * segment_size;
	if (end > first && start < scan->match_to)
		ok = waldump_run(waldump, tmp_dir, timeline, start, end * segment_size,
						 filter, gap_scan_line, scan, err);
	remove_segments(r, tmp_dir, timeline, first, end);
	return ok;
}

/*
 * gap_scan
 *		Does recovery to the time target stop before the first missing
 *		segment?  PostgreSQL checks a time target only at commit and abort
 *		records, so it does exactly when one whose time is after the target
 *		lies between the snapshot's stop and the gap: the segment's
 *		"created" metadata (when the source read it) cannot tell, as a
 *		segment archived late (a Kafka outage, a slow archiver) may hold
 *		nothing committed after the target.
 *
 *		Searched from the gap backwards, 1, 2, 4 ... WALDUMP_BATCH segments
 *		at a time, stopping at the first such record: the records nearest
 *		the gap are the newest, so when the target lies before the gap the
 *		first segment read usually settles it, where reading forwards from
 *		the stop would first decode all the WAL up to the target.  And the
 *		"created" time bounds the search: every record of a segment, and of
 *		the segments before it, was written before the source read it, so
 *		one read at or before the target (to its milliseconds) ends the
 *		search without reading it or anything older.
 */
static bool
gap_scan(Restore *r, const BkSnapshot *snapshot, const BkWalPath *path,
		 GapScan *scan, bool *nothing_between, BkError *err)
{
	const BkWalTimeline *to =
		bk_wal_timeline(&r->catalog.wal, r->recovery_timeline);
	char waldump[RESTORE_PATH_MAX];
	char tmp_dir[RESTORE_PATH_MAX];
	WalRange *ranges;
	int count;
	bool ok = true;

	memset(scan, 0, sizeof(*scan));
	scan->target_us = r->target.time_us;
	*nothing_between = true;
	if (to == NULL)
		return true;
	ranges = calloc((size_t) to->ancestor_count + 1, sizeof(*ranges));
	if (ranges == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	count = ranges_before_gap(r, snapshot, path, to, ranges);
	*nothing_between = count == 0;
	if (count == 0)
	{
		free(ranges);
		return true;
	}
	if (!waldump_dir(tmp_dir, sizeof(tmp_dir), err))
	{
		free(ranges);
		return false;
	}
	find_pg_waldump(waldump, sizeof(waldump));
	for (int rangeIdx = count - 1;
		 ok && rangeIdx >= 0 && !scan->found && !scan->archived_early;
		 rangeIdx--)
	{
		const WalRange *range = &ranges[rangeIdx];
		uint64_t top = range->last;
		uint64_t size = 1;

		for (;;)
		{
			uint64_t bottom =
				top - range->first + 1 > size ? top - size + 1 : range->first;

			for (uint64_t segno = top + 1; segno-- > bottom;)
			{
				int64_t created_us;

				/* "created" has milliseconds: the read was before the
				 * next one. */
				if (segment_created_us(r, range->timeline, segno,
									   &created_us) &&
					created_us + 999 <= scan->target_us)
				{
					scan->archived_early = true;
					scan->archived_us = created_us;
					bk_wal_segment_name(range->timeline, segno,
										r->catalog.wal.segment_size,
										scan->archived_name);
					bottom = segno + 1;
					break;
				}
			}
			if (bottom <= top &&
				!gap_scan_batch(r, waldump, tmp_dir, range->timeline, bottom,
								top, snapshot->stop_lsn, scan, err))
			{
				ok = false;
				break;
			}
			if (scan->found || scan->archived_early || bottom == range->first)
				break;
			top = bottom - 1;
			if (size < WALDUMP_BATCH)
				size *= 2;
		}
	}
	bk_remove_tree(tmp_dir, NULL);
	free(ranges);
	return ok;
}

/* The refusal: the first missing file, and the recovery that needs it. */
static void
set_missing_error(const Restore *r, const BkSnapshot *snapshot,
				  const BkWalPath *path, BkError *err)
{
	char lsn[BK_LSN_TEXT_SIZE];

	bk_format_lsn(snapshot->start_lsn, lsn, sizeof(lsn));
	bk_error_set(err, BK_ERR_SEQUENCE,
				 "WAL file %s is missing from the archive of source \"%s\" "
				 "(%" PRIu64 " segment%s missing): recovery from snapshot %s "
				 "(start %s, timeline %" PRIu32 ") to the target on timeline "
				 "%" PRIu32 " needs it",
				 path->first_missing, r->source, path->missing,
				 path->missing == 1 ? "" : "s", snapshot->id, lsn,
				 snapshot->timeline, r->recovery_timeline);
}

static bool
hint_missing(const Restore *r, BkError *err)
{
	return bk_error_hint(err,
						 "Choose a target before the gap, or put the "
						 "missing WAL back; \"bk list --source %s\" and "
						 "\"bk verify\" show what is missing.",
						 r->source);
}

/*
 * check_time_before_gap
 *		A time target with a segment missing on the way: accepted only when
 *		recovery stops before the gap (gap_scan), else refused like any
 *		other target, the hint giving the time of the last commit before the
 *		gap, so that the DBA can choose a target before it.
 */
static bool
check_time_before_gap(Restore *r, const BkSnapshot *snapshot,
					  const BkWalPath *path, BkError *err)
{
	GapScan scan;
	bool nothing_between;
	char lsn[BK_LSN_TEXT_SIZE];
	char when[BK_TIMESTAMP_TEXT_SIZE];

	if (!gap_scan(r, snapshot, path, &scan, &nothing_between, err))
		return bk_error_prefix(err,
							   "checking whether recovery to %s stops before "
							   "WAL file %s, missing from the archive: ",
							   r->target.text, path->first_missing);
	if (scan.found)
	{
		bk_format_lsn(scan.found_lsn, lsn, sizeof(lsn));
		bk_format_timestamp(scan.found_us, when, sizeof(when));
		fprintf(stderr,
				"%s: WARNING: WAL file %s is missing from the archive, after "
				"the target time: recovery stops before it, at or before the "
				"commit or abort at %s (%s), which comes after the target\n",
				r->program, path->first_missing, lsn, when);
		r->no_prefetch = true;
		return true;
	}
	set_missing_error(r, snapshot, path, err);
	if (nothing_between)
		return hint_missing(r, err);
	if (scan.last_known)
	{
		bk_format_lsn(scan.last_lsn, lsn, sizeof(lsn));
		bk_format_timestamp(scan.last_us, when, sizeof(when));
		return bk_error_hint(
			err,
			"The target time %s is at or after the last commit or abort "
			"before the gap (%s, at LSN %s), so recovery would go on into "
			"the gap. "
			"Choose a target time before %s, or put the missing WAL back; "
			"\"bk list --source %s\" and \"bk verify\" show what is missing.",
			r->target.text, when, lsn, when, r->source);
	}
	if (scan.archived_early)
	{
		bk_format_timestamp(scan.archived_us, when, sizeof(when));
		return bk_error_hint(
			err,
			"The target time %s lies past the last commit before the gap: "
			"WAL file %s was archived at %s, so nothing in it or before it "
			"was committed after the target. Choose an earlier target time, "
			"or put the missing WAL back; \"bk list --source %s\" and \"bk "
			"verify\" show what is missing.",
			r->target.text, scan.archived_name, when, r->source);
	}
	bk_format_lsn(snapshot->stop_lsn, lsn, sizeof(lsn));
	return bk_error_hint(
		err,
		"The target time %s lies past the last commit before the gap: no "
		"commit or abort record between the snapshot's stop (%s) and the "
		"gap comes after it. Choose an earlier target time, or put the "
		"missing WAL back; \"bk list --source %s\" and \"bk verify\" show "
		"what is missing.",
		r->target.text, lsn, r->source);
}

/*
 * A timeline other than except along which recovery from snapshot becomes
 * consistent (bk_snapshot_consistent_along), the lowest; 0 if none.
 */
static uint32_t
other_consistent_timeline(const Restore *r, const BkSnapshot *snapshot,
						  uint32_t except)
{
	const BkWalCatalog *wal = &r->catalog.wal;

	for (int tlIdx = 0; tlIdx < wal->timeline_count; tlIdx++)
		if (wal->timelines[tlIdx].timeline != except &&
			bk_snapshot_consistent_along(wal, snapshot,
										 wal->timelines[tlIdx].timeline, NULL))
			return wal->timelines[tlIdx].timeline;
	return 0;
}

/*
 * The timeline --target immediate recovers along: the snapshot's own, so
 * that no later timeline is followed (recovery stops at consistency), or,
 * when its own copy of the WAL up to the stop is not archived whole (a
 * later timeline branched off in the segment that holds the stop, and the
 * old timeline's copy of it is only a .partial), a later timeline that
 * holds that WAL: its history leaves the snapshot's timeline at or after
 * the stop, so it replays the same records up to there.
 */
static uint32_t
immediate_timeline(const Restore *r, const BkSnapshot *snapshot)
{
	uint32_t other;

	if (bk_snapshot_consistent_along(&r->catalog.wal, snapshot,
									 snapshot->timeline, NULL))
		return snapshot->timeline;
	other = other_consistent_timeline(r, snapshot, snapshot->timeline);
	return other != 0 ? other : snapshot->timeline;
}

/*
 * The refusal of a snapshot whose WAL up to its stop point recovery along
 * to_timeline cannot read; ready is that walk (bk_wal_backup_readable).
 */
static bool
set_unready_error(const Restore *r, const BkSnapshot *snapshot,
				  uint32_t to_timeline, const BkWalPath *ready, BkError *err)
{
	char name[32];
	char start[BK_LSN_TEXT_SIZE];
	char stop[BK_LSN_TEXT_SIZE];
	uint32_t other = other_consistent_timeline(r, snapshot, to_timeline);

	if (ready->missing > 0)
		bk_strlcpy(name, ready->first_missing, sizeof(name));
	else
		bk_wal_segment_name(to_timeline, ready->first_beyond_segno,
							r->catalog.wal.segment_size, name);
	bk_format_lsn(snapshot->start_lsn, start, sizeof(start));
	bk_format_lsn(snapshot->stop_lsn, stop, sizeof(stop));
	bk_error_set(err, BK_ERR_SEQUENCE,
				 "WAL file %s is missing from the archive of source \"%s\": "
				 "recovery from snapshot %s (start %s, stop %s, timeline "
				 "%" PRIu32 ") along timeline %" PRIu32
				 " (recovery_target_timeline = '%s') needs it to become "
				 "consistent",
				 name, r->source, snapshot->id, start, stop, snapshot->timeline,
				 to_timeline, r->target_timeline);
	if (other != 0)
		return bk_error_hint(err,
							 "Timeline %" PRIu32 " holds the snapshot's WAL "
							 "up to its stop, archived: restore along it with "
							 "--target-timeline %" PRIu32 ", or choose another "
							 "snapshot with --snapshot.",
							 other, other);
	return hint_missing(r, err);
}

/*
 * check_old_timeline_copy
 *		Where recovery along r->recovery_timeline runs past what that
 *		timeline's history has archived (the end of the archive, or a target
 *		beyond it), PostgreSQL asks for the next segment of the older
 *		timelines too (bk_wal_old_copy): when one of them has archived it
 *		(the old timeline went on after the branch point, and the new one
 *		has not archived the segment where it began yet), recovery replays
 *		that copy, then the old timeline's later segments, past the branch
 *		point: the WAL of another history, silently.  Refused before anything
 *		is written, unless the target stops recovery first: --target
 *		immediate (at the snapshot's stop, at or before the branch point),
 *		an xid or restore point found before where the copy leaves the
 *		history, a time target with a commit after it in the segments before
 *		(gap_scan).  An LSN target is refused: recovery stops after the
 *		first record at or past it, which may be the first one past the
 *		branch point.
 */
static bool
check_old_timeline_copy(Restore *r, const BkSnapshot *snapshot,
						const BkWalPath *path, uint64_t to_segno, BkError *err)
{
	const BkWalCatalog *wal = &r->catalog.wal;
	uint32_t to_timeline = r->recovery_timeline;
	uint64_t segno;
	uint64_t valid_until;
	uint32_t old;
	char wanted[32];
	char copy[32];
	char until[BK_LSN_TEXT_SIZE];

	if (path->beyond_end)
		segno = path->first_beyond_segno;
	else if (to_segno == BK_WAL_END && path->end_segno != BK_WAL_END)
		segno = path->end_segno + 1;
	else
		return true; /* the target lies in what is archived */
	old = bk_wal_old_copy(wal, to_timeline, segno, &valid_until);
	if (old == 0)
		return true;
	bk_wal_segment_name(bk_wal_segment_timeline(wal, to_timeline, segno), segno,
						wal->segment_size, wanted);
	bk_wal_segment_name(old, segno, wal->segment_size, copy);
	bk_format_lsn(valid_until, until, sizeof(until));
	if (r->target.type == BK_PG_TARGET_IMMEDIATE ||
		((r->target.type == BK_PG_TARGET_XID ||
		  r->target.type == BK_PG_TARGET_NAME) &&
		 r->found_lsn != 0 && r->found_lsn < valid_until))
		return true;
	if (r->target.type == BK_PG_TARGET_TIME)
	{
		BkWalPath before = *path;
		GapScan scan;
		bool nothing_between;

		/* The segments before it, as before a gap there. */
		before.first_missing_timeline =
			bk_wal_segment_timeline(wal, to_timeline, segno);
		before.first_missing_segno = segno;
		if (!gap_scan(r, snapshot, &before, &scan, &nothing_between, err))
			return bk_error_prefix(err,
								   "checking whether recovery to %s stops "
								   "before WAL file %s: ",
								   r->target.text, wanted);
		if (scan.found)
			return true;
	}
	bk_error_set(err, BK_ERR_NOT_FOUND,
				 "WAL file %s is not archived yet: recovery along timeline "
				 "%" PRIu32 " (recovery_target_timeline = '%s') would be told "
				 "it is beyond the end of the archive and read %s instead, "
				 "whose WAL from %s on (and timeline %" PRIu32
				 "'s later segments) timeline %" PRIu32 " never had",
				 wanted, to_timeline, r->target_timeline, copy, until, old,
				 to_timeline);
	return bk_error_hint(err,
						 "Wait until the source archives %s, restore along "
						 "timeline %" PRIu32 " with --target-timeline %" PRIu32
						 ", or choose a target recovery reaches before "
						 "segment %s.",
						 wanted, old, old, wanted);
}

/*
 * check_later_histories
 *		At its end, recovery promotes to a new timeline whose id PostgreSQL
 *		chooses by asking for the history files after the one it followed
 *		until one is not found (findNewestTimeLine).  A later timeline with
 *		WAL but a history file missing or unreadable may descend from the
 *		followed one anywhere, so bk wal-get refuses those requests rather
 *		than say "not found" and let the server take an id the archive
 *		already has: the restored server would stop there, after the whole
 *		replay.  Refused before anything is written.  (With 'latest' the
 *		walk to that timeline refuses already: its branch points are
 *		unknown.)
 */
static bool
check_later_histories(const Restore *r, uint32_t to_timeline, BkError *err)
{
	const BkWalTimeline *unknown =
		bk_wal_later_unknown_history(&r->catalog.wal, to_timeline);

	if (unknown == NULL)
		return true;
	bk_error_set(err, BK_ERR_SEQUENCE,
				 "bk cannot tell where timeline %" PRIu32 " of source \"%s\" "
				 "branched off (%s): at the end of recovery along timeline "
				 "%" PRIu32 " (recovery_target_timeline = '%s'), PostgreSQL "
				 "asks for the history files after timeline %" PRIu32
				 " to choose the timeline it promotes to, and bk wal-get "
				 "refuses them, so the restored server would stop there "
				 "after the whole replay",
				 unknown->timeline, r->source, unknown->history_problem,
				 to_timeline, r->target_timeline, to_timeline);
	if (unknown->has_history)
		return bk_error_hint(err,
							 "Check %08" PRIX32 ".history with \"bk verify "
							 "--source %s\"; if it is damaged, put it back "
							 "(from pg_wal of the server that created "
							 "timeline %" PRIu32 "), then restore again.",
							 unknown->timeline, r->source, unknown->timeline);
	return bk_error_hint(err,
						 "If a shipper is still storing %08" PRIX32
						 ".history, wait for it; if it was lost, put it back "
						 "(from pg_wal of the server that created timeline "
						 "%" PRIu32 "), then restore again.",
						 unknown->timeline, unknown->timeline);
}

/*
 * check_time_in_archive
 *		A time target with no segment missing up to the end of the archive:
 *		recovery stops at the first commit or abort record stamped after
 *		the target, and without one it replays everything archived and
 *		fails ("recovery ended before configured recovery target was
 *		reached") once the restore is done.  Accepted only when the archived
 *		WAL after the snapshot's stop holds such a record (gap_scan, from the
 *		end of the archive backwards, which the "created" times bound: only
 *		segments the source read after the target can hold one, so a target
 *		in the past reads the newest segment or few), else refused, giving
 *		the time of the archive's last commit.  Recovery is never pointed
 *		at another target than the one asked for.
 */
static bool
check_time_in_archive(Restore *r, const BkSnapshot *snapshot,
					  const BkWalPath *path, uint64_t to_segno, BkError *err)
{
	const BkWalCatalog *wal = &r->catalog.wal;
	BkWalPath end = *path;
	GapScan scan;
	bool nothing_between;
	char last[32] = "";
	char lsn[BK_LSN_TEXT_SIZE];
	char when[BK_TIMESTAMP_TEXT_SIZE];

	if (path->end_segno != BK_WAL_END)
	{
		bk_wal_segment_name(path->end_timeline, path->end_segno,
							wal->segment_size, last);
		end.first_missing_segno = path->end_segno + 1;
		end.first_missing_timeline = bk_wal_segment_timeline(
			wal, r->recovery_timeline, end.first_missing_segno);
		if (!gap_scan(r, snapshot, &end, &scan, &nothing_between, err))
			return bk_error_prefix(err,
								   "checking whether the archived WAL holds a "
								   "commit after %s: ",
								   r->target.text);
		if (scan.found)
			return true;
	}
	else
	{
		memset(&scan, 0, sizeof(scan));
		nothing_between = true;
	}
	/* Past the end, recovery may read another timeline's copy: that
	 * refusal says which. */
	if (!check_old_timeline_copy(r, snapshot, path, to_segno, err))
		return false;
	bk_error_set(err, BK_ERR_NOT_FOUND,
				 "no commit or abort record in the archived WAL of source "
				 "\"%s\" after snapshot %s is stamped after the target time "
				 "%s: recovery along timeline %" PRIu32
				 " would replay all of it%s%s without reaching the target, "
				 "and PostgreSQL would stop with \"recovery ended before "
				 "configured recovery target was reached\"",
				 r->source, snapshot->id, r->target.text, r->recovery_timeline,
				 last[0] ? ", up to WAL file " : "", last);
	if (scan.last_known)
	{
		bk_format_lsn(scan.last_lsn, lsn, sizeof(lsn));
		bk_format_timestamp(scan.last_us, when, sizeof(when));
		return bk_error_hint(
			err,
			"The last commit or abort in the archive is at %s (LSN %s). "
			"Choose a target time before %s, wait until the source archives "
			"a commit after the target (SELECT pg_switch_wal() on it sends "
			"the current segment), or restore to the end of the archive "
			"(no target).",
			when, lsn, when);
	}
	if (scan.archived_early)
	{
		bk_format_timestamp(scan.archived_us, when, sizeof(when));
		return bk_error_hint(
			err,
			"WAL file %s was archived at %s, so nothing in it or before it "
			"was committed after the target. Choose an earlier target time, "
			"wait until the source archives a commit after the target "
			"(SELECT pg_switch_wal() on it sends the current segment), or "
			"restore to the end of the archive (no target).",
			scan.archived_name, when);
	}
	return bk_error_hint(err,
						 "Nothing was committed after the snapshot's stop. "
						 "Wait until the source archives a commit after the "
						 "target (SELECT pg_switch_wal() on it sends the "
						 "current segment), or restore with --target "
						 "immediate or to the end of the archive (no "
						 "target).");
}

/* The search for the record recovery to an LSN target stops after. */
typedef struct StopRecordSearch
{
	uint64_t target;
	bool found;
	uint64_t found_lsn;
} StopRecordSearch;

static bool
stop_record_line(const char *line, void *arg)
{
	StopRecordSearch *search = arg;
	const char *lsn_text = strstr(line, ", lsn: ");
	char lsn_buf[32];
	uint64_t lsn;

	if (strncmp(line, "rmgr: ", 6) != 0 || lsn_text == NULL ||
		sscanf(lsn_text + 7, "%31[0-9A-Fa-f/]", lsn_buf) != 1 ||
		!bk_parse_lsn(lsn_buf, &lsn) || lsn < search->target)
		return true;
	search->found = true;
	search->found_lsn = lsn;
	return false;
}

/*
 * lsn_stop_segment
 *		With recovery_target_inclusive on, recovery to an LSN stops after
 *		the first record that starts at or after it, which need not lie in
 *		the segment that holds the target: after an XLOG_SWITCH the rest of
 *		the segment holds no record (pg_switch_wal() returns an LSN there,
 *		as is any LSN after a snapshot's closing switch), the target may
 *		fall inside a record that crosses into the next segment, and the
 *		record recovery stops after may itself cross into the next one.
 *		*stop_segno: the segment that holds its end, as recovery along
 *		r->recovery_timeline reads the WAL.  pg_waldump reads from the start
 *		of the target's segment, given one more segment each time, until it
 *		prints a record at or after the target (it prints a record only once
 *		it has all of it; it ends with status 0 when it reached the end of
 *		what it was given).  A segment not archived ends the search there:
 *		*stop_segno is that segment, which the walk then calls a gap or the
 *		end of the archive.
 */
static bool
lsn_stop_segment(Restore *r, uint64_t *stop_segno, BkError *err)
{
	static const char *const no_filter[] = {NULL};
	uint32_t segment_size = r->catalog.wal.segment_size;
	uint32_t timeline = r->recovery_timeline;
	uint64_t first = bk_lsn_segno(r->target.lsn, segment_size);
	uint64_t last = first;
	uint64_t end = first;
	StopRecordSearch search = {.target = r->target.lsn};
	char waldump[RESTORE_PATH_MAX];
	char tmp_dir[RESTORE_PATH_MAX];
	char name[32];
	char from[BK_LSN_TEXT_SIZE];
	int status = 0;
	bool ok = true;

	find_pg_waldump(waldump, sizeof(waldump));
	if (!waldump_dir(tmp_dir, sizeof(tmp_dir), err))
		return false;
	for (;; last++)
	{
		if (!decrypt_segments(r, tmp_dir, timeline, timeline, last, last, &end,
							  err))
		{
			ok = false;
			break;
		}
		if (end == last)
			break; /* not archived: recovery needs it */
		if (!waldump_exec(waldump, tmp_dir, timeline, first * segment_size,
						  end * segment_size, no_filter, stop_record_line,
						  &search, &status, err))
		{
			ok = false;
			break;
		}
		if (search.found || status != 0)
			break;
	}
	bk_remove_tree(tmp_dir, NULL);
	if (!ok)
		return bk_error_prefix(err,
							   "looking for the record recovery to %s stops "
							   "after: ",
							   r->target.text);
	*stop_segno = last;
	if (search.found || end == last)
		return true;
	bk_wal_segment_name(
		bk_wal_segment_timeline(&r->catalog.wal, timeline, first), first,
		segment_size, name);
	bk_format_lsn(first * segment_size, from, sizeof(from));
	bk_error_set(err, BK_ERR_FORMAT,
				 "pg_waldump (%s) could not read the WAL recovery along "
				 "timeline %" PRIu32 " replays from %s (WAL file %s) up to a "
				 "record at or after the target LSN %s (exit status %d), so "
				 "bk cannot tell which segment recovery stops in",
				 waldump, timeline, from, name, r->target.text, status);
	return bk_error_hint(err,
						 "Check that pg_waldump is the source's major version "
						 "(BK_PG_BINDIR names its directory) and run it on "
						 "the file; \"bk verify --source %s\" checks the "
						 "archive.",
						 r->source);
}

static uint64_t time_target_last_segment(Restore *r, uint64_t first,
										 uint64_t last);

/* The first conflicting copy of a WAL file recovery reads, if any. */
typedef struct ConflictScan
{
	const Restore *r;
	uint64_t last_segno; /* the last segment recovery needs surely */
	/* A time target, or an xid or a name not searched for (--snapshot):
	 * recovery may stop before what lies past last_segno. */
	bool open_end;
	char file[BK_OBJECT_NAME_MAX + 1];  /* a file recovery reads */
	char copy[BK_OBJECT_NAME_MAX + 1];  /* its conflicting copy */
	char after[BK_OBJECT_NAME_MAX + 1]; /* one only an open end may read */
	uint64_t after_segno;
	bool next_read_ahead; /* one in the segment after the last */
} ConflictScan;

/*
 * Does PostgreSQL ask for history file timeline of its recovery along
 * r->recovery_timeline?  It reads that timeline's own at the start and,
 * to choose the new timeline's id at promotion, probes the later ones one
 * after the other until one is not in the archive.
 */
static bool
history_asked(const Restore *r, uint32_t timeline, bool *asked, BkError *err)
{
	*asked = timeline == r->recovery_timeline && timeline > 1;
	if (timeline <= r->recovery_timeline)
		return true;
	for (uint32_t probe = r->recovery_timeline + 1; probe < timeline; probe++)
	{
		char name[32];
		BkRepoStat st;

		snprintf(name, sizeof(name), "%08X.history", probe);
		if (!bk_repo_stat(r->repo, BK_REPO_ARCHIVE, r->source, BK_KIND_WAL,
						  name, &st, err))
			return false;
		if (!st.exists)
			return true;
	}
	*asked = true;
	return true;
}

static bool
conflict_entry(void *arg, const BkRepoEntry *entry, BkError *err)
{
	ConflictScan *scan = arg;
	const Restore *r = scan->r;
	const BkWalCatalog *wal = &r->catalog.wal;
	size_t len = strlen(entry->name);
	char file[BK_OBJECT_NAME_MAX + 1];
	uint32_t timeline;
	uint32_t log;
	uint32_t seg;
	uint64_t segno;
	bool asked;

	/* "<file>.<32 hex digits of the attempt id>" */
	if (entry->is_prefix || len < 34 || len - 33 >= sizeof(file) ||
		entry->name[len - 33] != '.')
		return true;
	memcpy(file, entry->name, len - 33);
	file[len - 33] = '\0';
	switch (bk_wal_file_type(file, &timeline, &log, &seg))
	{
		case BK_WAL_SEGMENT:
			segno = bk_wal_segno(log, seg, wal->segment_size);
			if (segno < r->wal_first_segno ||
				bk_wal_segment_timeline(wal, r->recovery_timeline, segno) !=
					timeline)
				return true;
			/* Read ahead from a stop close to its segment's end
			 * (restore_write_recovery_settings). */
			if (segno == scan->last_segno + 1 && !scan->open_end)
				scan->next_read_ahead = true;
			if (segno > scan->last_segno)
			{
				if (scan->open_end &&
					(scan->after[0] == '\0' || segno < scan->after_segno))
				{
					bk_strlcpy(scan->after, file, sizeof(scan->after));
					scan->after_segno = segno;
				}
				return true;
			}
			break;
		case BK_WAL_HISTORY:
			if (!history_asked(r, timeline, &asked, err))
				return false;
			if (!asked)
				return true;
			break;
		default:
			return true;
	}
	if (scan->file[0] == '\0' || strcmp(file, scan->file) < 0)
	{
		bk_strlcpy(scan->file, file, sizeof(scan->file));
		bk_strlcpy(scan->copy, entry->name, sizeof(scan->copy));
	}
	return true;
}

/*
 * check_wal_conflicts
 *		bk wal-get serves no WAL file the archive holds two different copies
 *		of (two servers archived onto one source and timeline): it stops
 *		recovery there with exit 200.  A restore whose recovery reads one
 *		would fail only once the whole snapshot is written and part of the
 *		WAL replayed, so it is refused first, naming both copies.  A time
 *		target may stop recovery before a copy past the snapshot's end:
 *		that one is a warning.
 */
static bool
check_wal_conflicts(Restore *r, BkError *err)
{
	const BkSnapshot *snapshot = &r->catalog.snapshots[r->chosen];
	const BkWalCatalog *wal = &r->catalog.wal;
	ConflictScan scan = {.r = r};
	char archived[4096];
	char copy[4096];

	if (wal->conflicts == 0 || wal->segment_size == 0 ||
		r->recovery_timeline == 0)
		return true;
	/*
	 * A time target's last segment is the end of the archive: recovery
	 * surely reads up to the snapshot's stop, and on to the segment after
	 * the newest one the source read before the target, where it looks for
	 * the first commit after it (as restore_check_wal_keys narrows it).
	 */
	scan.open_end = r->target.type == BK_PG_TARGET_TIME ||
					r->wal_last_segno == BK_WAL_END ||
					((r->target.type == BK_PG_TARGET_XID ||
					  r->target.type == BK_PG_TARGET_NAME) &&
					 r->found_lsn == 0);
	scan.last_segno = r->wal_last_segno;
	if (scan.open_end)
		scan.last_segno =
			bk_lsn_segno(snapshot->stop_lsn - 1, wal->segment_size);
	if (r->target.type == BK_PG_TARGET_TIME &&
		r->wal_last_segno != BK_WAL_END &&
		r->wal_last_segno > r->wal_first_segno)
	{
		uint64_t surely =
			time_target_last_segment(r, r->wal_first_segno, r->wal_last_segno);

		if (surely > scan.last_segno)
			scan.last_segno = surely;
	}
	if (!bk_repo_list(r->repo, BK_REPO_CONFLICTS, r->source, BK_KIND_WAL, "",
					  false, conflict_entry, &scan, err))
		return bk_error_prefix(err, "listing the conflicting copies of WAL: ");
	if (scan.next_read_ahead)
		r->no_prefetch = true;
	if (scan.file[0] == '\0')
	{
		if (scan.after[0] != '\0')
			fprintf(stderr,
					"%s: WARNING: the archive holds two different copies of "
					"WAL file \"%s\" of source \"%s\": recovery stops with "
					"a FATAL error if it reaches that file before the "
					"target (\"bk verify --source %s\" says which copy is "
					"this history's)\n",
					r->program, scan.after, r->source, r->source);
		return true;
	}
	bk_repo_describe(r->repo, BK_REPO_ARCHIVE, r->source, BK_KIND_WAL,
					 scan.file, archived, sizeof(archived));
	bk_repo_describe(r->repo, BK_REPO_CONFLICTS, r->source, BK_KIND_WAL,
					 scan.copy, copy, sizeof(copy));
	bk_error_set(err, BK_ERR_CONFLICT,
				 "the archive holds two different copies of WAL file \"%s\" "
				 "of source \"%s\" (\"%s\" and \"%s\"), which recovery "
				 "along timeline %" PRIu32 " reads: bk wal-get would stop "
				 "recovery there",
				 scan.file, r->source, archived, copy, r->recovery_timeline);
	return bk_error_hint(err,
						 "Run \"bk verify --source %s\" with the key to see "
						 "which copy belongs to the history you restore, move "
						 "the other out of the repository, and retry; or "
						 "restore to a target before that file.",
						 r->source);
}

/*
 * check_wal_path
 *		Every WAL segment recovery will need, from the snapshot's start to
 *		the target, following the timelines' branch points (the history
 *		files), is in the archive; else refuse, naming the first missing
 *		file, before anything is written.  Recovery would otherwise stop at
 *		the gap (bk wal-get makes it fatal) after a long restore.  A time
 *		target passes only if the WAL before the gap holds a commit after it
 *		(check_time_before_gap).  The timeline checked is the one recovery
 *		is then told to follow.
 */
static bool check_wal_path(Restore *r, BkError *err);

/* The path's end, seen as one segment missing there, not past the end. */
static void
path_one_missing(BkWalPath *path, uint32_t timeline, uint64_t segno,
				 uint32_t segment_size)
{
	path->missing = 1;
	path->first_missing_timeline = timeline;
	path->first_missing_segno = segno;
	bk_wal_segment_name(timeline, segno, segment_size, path->first_missing);
	path->beyond_end = false;
}

/*
 * old_timeline_runs_on
 *		Recovery along a timeline that a later one branched off, past its
 *		newest archived segment: its WAL runs on up to the branch point, so
 *		the segments up to there are missing, not beyond the end of the
 *		archive (bk wal-get stops recovery at them).  A standby promoted
 *		after its primary crashed archives the old timeline's segment that
 *		holds the branch point only as .partial; the new timeline's copy
 *		holds its WAL.  A time target is still checked for a commit after it
 *		before the gap; others are refused there.
 */
static bool
old_timeline_runs_on(Restore *r, uint32_t to_timeline, uint64_t to_segno,
					 BkWalPath *path, BkError *err)
{
	const BkWalCatalog *wal = &r->catalog.wal;
	const BkWalTimeline *tl = bk_wal_timeline(wal, to_timeline);
	uint64_t next;
	char lsn[BK_LSN_TEXT_SIZE];

	if (path->missing > 0 || tl == NULL || tl->segments == 0 ||
		tl->needed_until == 0 || path->end_timeline != to_timeline ||
		path->end_segno != tl->last_segno)
		return true;
	next = tl->last_segno + 1;
	if (next > (tl->needed_until - 1) / wal->segment_size ||
		(to_segno != BK_WAL_END && to_segno < next))
		return true;
	path_one_missing(path, to_timeline, next, wal->segment_size);
	if (r->target.type == BK_PG_TARGET_TIME)
		return true; /* check_time_before_gap */
	r->recovery_timeline = to_timeline;
	set_missing_error(r, &r->catalog.snapshots[r->chosen], path, err);
	bk_format_lsn(tl->needed_until, lsn, sizeof(lsn));
	return bk_error_hint(err,
						 "Timeline %" PRIu32 " branched off timeline %" PRIu32
						 " at %s, so timeline %" PRIu32 "'s WAL runs on up "
						 "to there, and the archive holds it only in "
						 "timeline %" PRIu32 "'s copy (and a .partial file): "
						 "restore along timeline %" PRIu32
						 " (--target-timeline %" PRIu32 "), or choose a "
						 "target before %s.",
						 tl->needed_by, to_timeline, lsn, to_timeline,
						 tl->needed_by, tl->needed_by, tl->needed_by,
						 path->first_missing);
}

/*
 * branch_segment_unarchived
 *		Just after a standby's promotion: the walk to the end of the archive
 *		ends on an older timeline just before the segment that holds the
 *		branch point, which the promoted server is still writing on the new
 *		timeline (not archived yet), while the old one archived it only as
 *		.partial.  Recovery asks for the new timeline's copy (not in the
 *		archive yet), then the old timeline's, which bk wal-get refuses
 *		(its WAL runs on only up to the branch point, bk_wal_segment_is_hole):
 *		it would stop there with a FATAL error, after a restore said done.
 *		A time target is still checked for a commit before it; others are
 *		refused, saying what to wait for.
 */
static bool
branch_segment_unarchived(Restore *r, uint32_t to_timeline, uint64_t to_segno,
						  BkWalPath *path, BkError *err)
{
	const BkWalCatalog *wal = &r->catalog.wal;
	const BkWalTimeline *tl;
	uint64_t branch_segno;
	uint32_t timeline;
	char lsn[BK_LSN_TEXT_SIZE];

	if (path->missing > 0 || path->end_segno == BK_WAL_END ||
		path->end_timeline == to_timeline ||
		(tl = bk_wal_timeline(wal, path->end_timeline)) == NULL ||
		tl->needed_until % wal->segment_size == 0)
		return true;
	branch_segno = tl->needed_until / wal->segment_size;
	if (path->end_segno + 1 != branch_segno ||
		(to_segno != BK_WAL_END && to_segno < branch_segno))
		return true;
	timeline = bk_wal_segment_timeline(wal, to_timeline, branch_segno);
	/* The old timeline's archived whole (it went on): recovery would read
	 * it past the branch point, which check_wal_path refuses below. */
	if (timeline == path->end_timeline ||
		bk_wal_has_segment(wal, timeline, branch_segno) ||
		bk_wal_has_segment(wal, path->end_timeline, branch_segno))
		return true;
	path_one_missing(path, timeline, branch_segno, wal->segment_size);
	if (r->target.type == BK_PG_TARGET_TIME)
		return true; /* check_time_before_gap */
	r->recovery_timeline = to_timeline;
	bk_format_lsn(tl->needed_until, lsn, sizeof(lsn));
	bk_error_set(err, BK_ERR_NOT_FOUND,
				 "WAL file %s of source \"%s\", which recovery along "
				 "timeline %" PRIu32 " needs, is not archived yet: timeline "
				 "%" PRIu32 " branched off timeline %" PRIu32 " at %s, inside "
				 "it, and timeline %" PRIu32 "'s WAL up to there is archived "
				 "only as a .partial file, which recovery does not read; "
				 "nothing was written",
				 path->first_missing, r->source, to_timeline, timeline,
				 path->end_timeline, lsn, path->end_timeline);
	return bk_error_hint(err,
						 "The promoted server (timeline %" PRIu32 ") archives "
						 "%s once it leaves that segment: run SELECT "
						 "pg_switch_wal() on it, wait until \"bk list\" shows "
						 "it, and run bk restore again; or choose a target "
						 "before %s.",
						 timeline, path->first_missing, path->first_missing);
}

bool
restore_check_wal_path(Restore *r, BkError *err)
{
	return check_wal_path(r, err) && check_wal_conflicts(r, err);
}

static bool
check_wal_path(Restore *r, BkError *err)
{
	const BkSnapshot *snapshot = &r->catalog.snapshots[r->chosen];
	const BkWalCatalog *wal = &r->catalog.wal;
	uint32_t to_timeline;
	uint64_t to_segno = BK_WAL_END;
	BkWalPath path;
	BkWalPath ready;
	uint32_t found_timeline =
		r->found_timeline != 0 ? r->found_timeline : snapshot->timeline;
	char why[256];

	r->stop_unarchived[0] = '\0';
	if (wal->segment_size == 0)
		return true; /* no WAL: the snapshot was not restorable anyway */
	to_timeline = recovery_timeline_of(r, snapshot);
	switch (r->target.type)
	{
		case BK_PG_TARGET_LSN:
			to_segno = bk_lsn_segno(r->target.lsn, wal->segment_size);
			break;
		case BK_PG_TARGET_XID:
		case BK_PG_TARGET_NAME:
			/* Found by pg_waldump; with --snapshot it was not searched for,
			 * and only the snapshot's own WAL is known to be needed. */
			to_segno = bk_lsn_segno(r->found_lsn ? r->found_lsn
												 : snapshot->stop_lsn - 1,
									wal->segment_size);
			break;
		case BK_PG_TARGET_IMMEDIATE:
			to_segno = bk_lsn_segno(snapshot->stop_lsn - 1, wal->segment_size);
			if (!immediate_on_named_timeline(r))
				to_timeline = immediate_timeline(r, snapshot);
			break;
		default:
			break;
	}
	bk_wal_path(wal, snapshot->timeline,
				bk_lsn_segno(snapshot->start_lsn, wal->segment_size),
				to_timeline, to_segno, &path);
	if (!path.reachable)
	{
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "snapshot %s (timeline %" PRIu32 ") cannot reach the "
					 "target on timeline %" PRIu32 " (recovery_target_timeline "
					 "= '%s'): %s",
					 snapshot->id, snapshot->timeline, to_timeline,
					 r->target_timeline, path.problem);
		return bk_error_hint(err, "Choose the timeline with "
								  "--target-timeline, or a snapshot taken on "
								  "it; \"bk list\" shows timelines and their "
								  "branch points.");
	}
	/*
	 * An xid or restore point was found on a timeline that recovery along
	 * to_timeline leaves before the record (the search found it only off
	 * to_timeline's history): recovery never replays it, and may stop
	 * somewhere else (xids go on from the branch point, so the new timeline
	 * gives the same xid to another transaction).
	 */
	if ((r->target.type == BK_PG_TARGET_XID ||
		 r->target.type == BK_PG_TARGET_NAME) &&
		r->found_lsn != 0 &&
		!bk_wal_history_holds(wal, found_timeline, r->found_lsn + 1,
							  to_timeline, why, sizeof(why)))
	{
		char found[BK_LSN_TEXT_SIZE];

		bk_format_lsn(r->found_lsn, found, sizeof(found));
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "%s \"%s\" was found at %s on timeline %" PRIu32
					 ", which recovery along timeline %" PRIu32
					 " (recovery_target_timeline = '%s') never replays: %s",
					 r->target.type == BK_PG_TARGET_XID
						 ? "the commit or abort record of transaction"
						 : "the restore point",
					 r->target.text, found, found_timeline, to_timeline,
					 r->target_timeline, why);
		return bk_error_hint(err,
							 "Restore along the timeline that holds it with "
							 "--target-timeline %" PRIu32 ", or name the "
							 "snapshot with --snapshot.",
							 found_timeline);
	}
	/*
	 * Reachable from the snapshot's start is not enough: recovery becomes
	 * consistent only at the snapshot's end-of-backup record, which it
	 * never replays if to_timeline left the snapshot's timeline before it
	 * (PostgreSQL would replay to the target and then fail, "requested
	 * recovery stop point is before consistent recovery point", after the
	 * whole restore).
	 */
	if (!bk_wal_history_holds(wal, snapshot->timeline, snapshot->stop_lsn,
							  to_timeline, why, sizeof(why)))
	{
		char stop[BK_LSN_TEXT_SIZE];

		bk_format_lsn(snapshot->stop_lsn, stop, sizeof(stop));
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "snapshot %s (timeline %" PRIu32 ", stop %s) cannot "
					 "reach the target on timeline %" PRIu32
					 " (recovery_target_timeline = '%s'): %s, so recovery "
					 "along timeline %" PRIu32 " never replays the end of "
					 "the snapshot and never becomes consistent",
					 snapshot->id, snapshot->timeline, stop, to_timeline,
					 r->target_timeline, why, to_timeline);
		return bk_error_hint(err, "Choose an older snapshot with --snapshot "
								  "(\"bk list\" shows timelines and their "
								  "branch points), or the timeline with "
								  "--target-timeline.");
	}
	/*
	 * Nor does it without every segment up to the stop, as recovery along
	 * to_timeline reads them: the snapshot may be restorable only along
	 * another timeline (the segment holding its stop archived whole only
	 * there), and the walk to the target below does not see a segment
	 * past the end of to_timeline's archive as missing.
	 */
	if (!bk_snapshot_consistent_along(wal, snapshot, to_timeline, &ready))
		return set_unready_error(r, snapshot, to_timeline, &ready, err);
	if (!check_later_histories(r, to_timeline, err) ||
		!old_timeline_runs_on(r, to_timeline, to_segno, &path, err) ||
		!branch_segment_unarchived(r, to_timeline, to_segno, &path, err))
		return false;
	r->recovery_timeline = to_timeline;
	/*
	 * An LSN target: recovery reads on to the end of the first record at
	 * or after it, in a later segment when the target's own holds none.
	 */
	if (r->target.type == BK_PG_TARGET_LSN && path.missing == 0 &&
		!path.beyond_end)
	{
		uint64_t stop_segno = to_segno;

		if (!lsn_stop_segment(r, &stop_segno, err))
			return false;
		if (stop_segno != to_segno)
		{
			to_segno = stop_segno;
			bk_wal_path(wal, snapshot->timeline,
						bk_lsn_segno(snapshot->start_lsn, wal->segment_size),
						to_timeline, to_segno, &path);
		}
	}
	if (r->target.type == BK_PG_TARGET_LSN && path.missing == 0 &&
		path.beyond_end)
		bk_wal_segment_name(
			bk_wal_segment_timeline(wal, to_timeline, path.first_beyond_segno),
			path.first_beyond_segno, wal->segment_size, r->stop_unarchived);
	if (path.missing == 0 && to_segno != BK_WAL_END)
	{
		BkWalPath on;

		/*
		 * The target in the last segment before a gap: reading ahead (up to
		 * wal_decode_buffer_size) from a stop close to its end would ask
		 * for the missing one (restore_write_recovery_settings).
		 */
		bk_wal_path(wal, snapshot->timeline,
					bk_lsn_segno(snapshot->start_lsn, wal->segment_size),
					to_timeline, BK_WAL_END, &on);
		if (on.missing > 0 && on.first_missing_segno == to_segno + 1)
			r->no_prefetch = true;
	}
	{
		uint64_t first = bk_lsn_segno(snapshot->start_lsn, wal->segment_size);

		r->wal_first_timeline =
			bk_wal_segment_timeline(wal, to_timeline, first);
		r->wal_first_segno = first;
		r->wal_last_timeline = path.end_timeline;
		/* A time target's path runs to the end of the archive, and
		 * recovery stops before: restore_check_wal_keys narrows it. */
		r->wal_last_segno = path.end_segno;
	}
	if (path.missing == 0 && r->target.type == BK_PG_TARGET_TIME)
		return check_time_in_archive(r, snapshot, &path, to_segno, err);
	if (path.missing == 0)
		return check_old_timeline_copy(r, snapshot, &path, to_segno, err);
	if (r->target.type == BK_PG_TARGET_TIME)
		return check_time_before_gap(r, snapshot, &path, err);
	set_missing_error(r, snapshot, &path, err);
	return hint_missing(r, err);
}

/* The key the first frame of one segment recovery reads is sealed to. */
typedef struct KeyProbe
{
	uint32_t timeline;
	uint64_t segno;
	uint8_t key_id[BK_KEY_ID_LEN];
	bool in_ring;
} KeyProbe;

static bool
probe_segment_key(Restore *r, uint32_t timeline, uint64_t segno,
				  KeyProbe *probe, BkError *err)
{
	char name[32];

	bk_wal_segment_name(timeline, segno, r->catalog.wal.segment_size, name);
	probe->timeline = timeline;
	probe->segno = segno;
	if (!bk_wal_sealed_to_keyring(r->repo, r->source, name, r->decoder,
								  &probe->in_ring, probe->key_id, err))
		return bk_error_prefix(err, "WAL file \"%s\": ", name);
	return true;
}

static bool
missing_key_error(Restore *r, const KeyProbe *probe, BkError *err)
{
	char name[32];
	char key_hex[BK_KEY_ID_HEX_LEN + 1];
	char ring_ids[512];

	bk_wal_segment_name(probe->timeline, probe->segno,
						r->catalog.wal.segment_size, name);
	bk_key_id_hex(probe->key_id, key_hex);
	bk_keyring_ids(r->ring, ring_ids, sizeof(ring_ids));
	bk_error_set(err, BK_ERR_KEY,
				 "WAL file \"%s\", which recovery from snapshot %s needs, is "
				 "sealed to key %s, which is not in the keyring (it holds "
				 "%s); nothing was written",
				 name, r->catalog.snapshots[r->chosen].id, key_hex, ring_ids);
	return bk_error_hint(err,
						 "Add key %s's private key file to the keyring (cat "
						 "FILE.key >> %s: after a rotation the keyring keeps "
						 "the old keys and gets the new ones), or restore to "
						 "a target before that segment.",
						 key_hex, r->config.key_file);
}

/*
 * The archived segment recovery reads nearest the middle of (lo, hi), its
 * timeline in *timeline; false if none lies strictly between.
 */
static bool
middle_segment(Restore *r, uint64_t lo, uint64_t hi, uint32_t *timeline,
			   uint64_t *segno)
{
	const BkWalCatalog *wal = &r->catalog.wal;
	uint64_t mid = lo + (hi - lo) / 2;

	/* Outward from the middle: mid - step above lo, mid + step below hi. */
	for (uint64_t step = 0; mid - lo > step || mid + step < hi; step++)
	{
		bool below = mid - lo > step;
		bool above = step > 0 && mid + step < hi;
		uint64_t tries[2] = {below ? mid - step : 0, above ? mid + step : 0};

		for (int tryIdx = 0; tryIdx < 2; tryIdx++)
		{
			if (tryIdx == 0 ? !below : !above)
				continue;
			*timeline = bk_wal_segment_timeline(wal, r->recovery_timeline,
												tries[tryIdx]);
			if (bk_wal_has_segment(wal, *timeline, tries[tryIdx]))
			{
				*segno = tries[tryIdx];
				return true;
			}
		}
	}
	return false;
}

/*
 * Every key used between two probed segments, lo's in the keyring: a
 * rotation seals all WAL after it to the new key, so segments sealed to
 * one key form a run, and where lo's and hi's keys differ a bisection
 * finds each run's start.  Read lowest first, so that the segment named is
 * the first one recovery would stop at.  Equal keys at both ends stand for
 * the whole range: a rotation away and back (A, B, then A again) between
 * them goes unseen, and recovery stops at B's first segment, naming it.
 */
static bool
check_keys_between(Restore *r, const KeyProbe *lo, const KeyProbe *hi,
				   BkError *err)
{
	KeyProbe mid;
	uint32_t timeline;
	uint64_t segno;

	if (memcmp(lo->key_id, hi->key_id, BK_KEY_ID_LEN) == 0 ||
		!middle_segment(r, lo->segno, hi->segno, &timeline, &segno))
		return true;
	if (!probe_segment_key(r, timeline, segno, &mid, err) ||
		!check_keys_between(r, lo, &mid, err))
		return false;
	if (!mid.in_ring)
		return missing_key_error(r, &mid, err);
	return check_keys_between(r, &mid, hi, err);
}

/*
 * The last segment recovery to a time target surely reads, at most last:
 * the one after the newest segment the source read before the target
 * (its "created" time), where recovery looks for the first commit after
 * the target.  Found by bisection on "created", which grows with the
 * segment number; a segment read again later (archived anew after a crash)
 * only makes the answer earlier, never past what recovery reads.
 */
static uint64_t
time_target_last_segment(Restore *r, uint64_t first, uint64_t last)
{
	const BkWalCatalog *wal = &r->catalog.wal;
	const BkSnapshot *snapshot = &r->catalog.snapshots[r->chosen];
	/* Up to the snapshot's stop, recovery reads whatever the target. */
	uint64_t read_before =
		bk_lsn_segno(snapshot->stop_lsn - 1, wal->segment_size);
	uint64_t hi = last;

	if (read_before < first)
		read_before = first;
	while (read_before < hi)
	{
		uint64_t mid = read_before + (hi - read_before + 1) / 2;
		uint32_t timeline =
			bk_wal_segment_timeline(wal, r->recovery_timeline, mid);
		int64_t created_us;

		/* "created" has milliseconds: the read was before the next one. */
		if (segment_created_us(r, timeline, mid, &created_us) &&
			created_us + 999 <= r->target.time_us)
			read_before = mid;
		else
			hi = mid - 1;
	}
	return read_before < last ? read_before + 1 : last;
}

/*
 * restore_check_wal_keys
 *		The WAL recovery needs is read by bk wal-get once the server starts,
 *		after the restore reported it done: a segment sealed to a key the
 *		keyring lacks would stop recovery there (exit 200).  The first and
 *		the last segment recovery needs, and between them the first of each
 *		run sealed to another key (check_keys_between), tell whether the
 *		keyring holds what recovery reads: a few frame headers read, twice
 *		the logarithm of the segment count per rotation.
 */
bool
restore_check_wal_keys(Restore *r, BkError *err)
{
	const BkWalCatalog *wal = &r->catalog.wal;
	KeyProbe first;
	KeyProbe last;
	uint32_t last_timeline;
	uint64_t last_segno;
	bool have_first;

	if (wal->segment_size == 0)
		return true;
	have_first =
		bk_wal_has_segment(wal, r->wal_first_timeline, r->wal_first_segno);
	if (have_first)
	{
		if (!probe_segment_key(r, r->wal_first_timeline, r->wal_first_segno,
							   &first, err))
			return false;
		if (!first.in_ring)
			return missing_key_error(r, &first, err);
	}
	last_timeline = r->wal_last_timeline;
	last_segno = r->wal_last_segno;
	if (last_segno == BK_WAL_END || last_segno <= r->wal_first_segno)
		return true;
	if (r->target.type == BK_PG_TARGET_TIME)
	{
		last_segno =
			time_target_last_segment(r, r->wal_first_segno, last_segno);
		last_timeline =
			bk_wal_segment_timeline(wal, r->recovery_timeline, last_segno);
	}
	if (last_segno <= r->wal_first_segno ||
		!bk_wal_has_segment(wal, last_timeline, last_segno))
		return true;
	if (!probe_segment_key(r, last_timeline, last_segno, &last, err) ||
		(have_first && !check_keys_between(r, &first, &last, err)))
		return false;
	if (!last.in_ring)
		return missing_key_error(r, &last, err);
	return true;
}

/* Decrypt the records of the chain, full first. */
bool
restore_load_chain(Restore *r, BkError *err)
{
	int length = 0;

	for (int index = r->chosen; index >= 0;
		 index = r->catalog.snapshots[index].parent_index)
		if (++length > r->catalog.count)
			return bk_error_set(err, BK_ERR_FORMAT,
								"the parents of snapshot %s form a cycle",
								r->catalog.snapshots[r->chosen].id);
	r->chain = calloc((size_t) length, sizeof(*r->chain));
	if (r->chain == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	r->chain_len = length;
	for (int index = r->chosen, slot = length - 1; index >= 0;
		 index = r->catalog.snapshots[index].parent_index, slot--)
	{
		const BkSnapshot *snapshot = &r->catalog.snapshots[index];
		BkSnapRecord *record;

		if (!bk_snapshot_record_load(r->repo, r->decoder, r->source,
									 snapshot->id, &record, err))
			return false;
		r->chain[slot] = record;
		/*
		 * The choice of this chain (stop time and LSN against the target,
		 * timeline, parent) was made from the record's keyless metadata:
		 * it holds only if that is what the record's header authenticates.
		 */
		if (!bk_repo_meta_agrees(r->decoder, snapshot->meta_digest, r->source,
								 err))
			return bk_error_prefix(err, "snapshot %s: ", snapshot->id);
		if (strcmp(record->kind, snapshot->kind) != 0 ||
			strcmp(record->parent, snapshot->parent) != 0 ||
			record->start_lsn != snapshot->start_lsn ||
			record->stop_lsn != snapshot->stop_lsn)
			return bk_error_set(err, BK_ERR_FORMAT,
								"snapshot %s: its record disagrees with its "
								"metadata (kind, parent or LSNs)",
								snapshot->id);
		if (slot == 0 && strcmp(record->kind, "full") != 0)
			return bk_error_set(err, BK_ERR_FORMAT,
								"snapshot %s: its chain does not start with a "
								"full snapshot",
								snapshot->id);
	}
	r->record = r->chain[length - 1];
	return true;
}
