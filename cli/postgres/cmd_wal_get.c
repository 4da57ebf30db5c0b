/*
 * cmd_wal_get.c
 *		bk wal-get --source S FILE DEST: PostgreSQL's restore_command.
 *
 *	  restore_command = 'bk wal-get --config /etc/bk/bk.conf --source S %f %p'
 *
 * PostgreSQL 15 takes any exit status up to 125 as "this file is not in the
 * archive": recovery ends there and, without a target, the server promotes.
 * Mistaking a failure for the end of the archive would therefore silently
 * throw away everything after it.  So:
 *
 *	 exit 0    the file was decrypted, verified and written to DEST;
 *	 exit 1    the file is beyond what the archive holds (a later timeline's
 *			   history file, the segment after the newest one archived),
 *			   and bk is sure of it;
 *	 exit 200  anything else: bad usage or configuration, unreachable
 *			   repository, wrong key, corrupt or tampered data, conflicting
 *			   copies, a source that is not in the repository or has no
 *			   WAL (a mistyped --source must not end recovery), a segment
 *			   before the archive's start, a gap inside the archived range,
 *			   a segment below a point where a later timeline branched
 *			   off (that timeline's history says the WAL must exist), or
 *			   one bk expire recorded it removed (wal_catalog.h).
 *			   PostgreSQL stops recovery with a FATAL error and the message
 *			   below says why.
 *
 * A history file that is not archived although a later timeline descends
 * from its timeline (the server that created it died before archiving it)
 * is served rebuilt from the descendant's history, whose first lines are
 * exactly its content.  "Not found" would be wrong there: PostgreSQL
 * probes history files upwards, resolving recovery_target_timeline =
 * 'latest' and choosing a new timeline at promotion, and stops at the first
 * one not found, so it would follow the old timeline and promote without
 * the later ones' WAL, or reuse a timeline id the archive already holds.
 *
 * Prefetch (--prefetch N), for a short recovery time: PostgreSQL asks for
 * one segment at a time and waits for each, so decrypting the next ones
 * meanwhile hides the repository's latency and the decryption.  After
 * serving segment X, a detached process (double fork, setsid, stdio to
 * /dev/null, errors to bk-prefetch/prefetch.log) decrypts and verifies
 * segments X+1 .. X+N of the same timeline into bk-prefetch/ beside DEST,
 * each atomically (temporary file, fsync, rename), under a lock so that
 * concurrent calls never duplicate the work; the lock file names the
 * segment being fetched.  Beside each spooled segment, "<segment>.id" names
 * the archived object it was decrypted from (key id and fingerprint),
 * written before the segment.  A later call moves its segment from there
 * into DEST if the spooled file has the object's size and was decrypted
 * from the object the archive holds now (waiting for a prefetch of exactly
 * that segment in flight), and otherwise decrypts it as usual: a copy
 * spooled before an operator replaced the archived one (two conflicting
 * copies, the wrong one moved out) is never served.
 * Nothing the prefetcher does changes an exit status: a segment it could
 * not fetch is fetched, and its failure reported, by the call that needs
 * it.
 *
 * Tablespaces created after the snapshot began: PostgreSQL 15 replays
 * CREATE TABLESPACE by linking pg_tblspc/<oid> to the record's LOCATION,
 * accepting a LOCATION/PG_15_<catversion> directory that already exists.
 * On a host where it exists (the source's own, above all) the restored
 * cluster would write into the source's live tablespace, after every check
 * bk restore made.  So before a segment is handed over, its records are
 * walked (wal_scan.h), and one that creates a tablespace whose version
 * directory exists here, unless one of the cluster's pg_tblspc links
 * already points there (the directory is its own: an earlier replay),
 * makes wal-get exit 200.  A record cut by
 * the segment's end is judged with the segment that ends it: its start is
 * kept in bk-wal-carry beside DEST (PostgreSQL runs restore_command in the
 * data directory, and replays a record only once it has read all of it).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bk_frame.h"
#include "bk_keys.h"
#include "bk_timeline.h"
#include "bk_util.h"
#include "commands.h"
#include "repo.h"
#include "wal_catalog.h"
#include "wal_scan.h"

#define EXIT_RESTORED       0
#define EXIT_NOT_IN_ARCHIVE 1
#define EXIT_FATAL          200
/* absent_file_status: the file was archived meanwhile, serve it (internal) */
#define EXIT_APPEARED (-1)

#define PREFETCH_DIR     "bk-prefetch"
#define PREFETCH_LOCK    ".lock"
#define PREFETCH_LOG     "prefetch.log"
#define PREFETCH_ID      ".id"
#define PREFETCH_MAX     1000
#define PREFETCH_WAIT_MS 60000

/* History files are a few lines; anything larger is not one. */
#define HISTORY_MAX (1024 * 1024)

static const char *wal_get_help =
	"Usage: bk wal-get [--config FILE] --source S FILE DEST\n\n"
	"For restore_command: restores WAL file FILE of source S from the "
	"repository\nto DEST, decrypted and verified.\n\n"
	"  restore_command = 'bk wal-get --config /etc/bk/bk.conf --source S %f "
	"%p'\n\n"
	"Exit status: 0 restored; 1 FILE is beyond the end of the archive; 200 "
	"any\nfailure (PostgreSQL then stops recovery instead of ending it "
	"early).\n\n"
	"  --source S        source id (bk.source_id on the database; by default "
	"its\n                    system identifier)\n"
	"  --prefetch N      after a segment, decrypt the next N into "
	"bk-prefetch/ beside\n                    DEST in the "
	"background\n" BK_COMMON_HELP;

/*
 * fail
 *		Report and return the fatal exit code: for wal-get every failure is
 *		fatal, including those other commands would call usage errors.
 */
static int
fail(const char *program, const BkError *err)
{
	bk_cli_report_error(program, err);
	fprintf(stderr,
			"%s: exiting with %d so that PostgreSQL stops recovery "
			"rather than ending it here\n",
			program, EXIT_FATAL);
	return EXIT_FATAL;
}

/* "a, b, c" of the sources the repository holds, for messages. */
static void
sources_text(const BkRepo *repo, char *out, size_t out_len)
{
	char **sources = NULL;
	int count = 0;
	size_t used = 0;
	BkError err;

	out[0] = '\0';
	if (!bk_repo_sources(repo, &sources, &count, &err))
		return;
	for (int sourceIdx = 0; sourceIdx < count && used < out_len; sourceIdx++)
		used += (size_t) snprintf(out + used, out_len - used, "%s%s",
								  sourceIdx ? ", " : "", sources[sourceIdx]);
	if (count == 0)
		bk_strlcpy(out, "none", out_len);
	bk_repo_free_list(sources, count);
}

/*
 * rebuild_history
 *		The history file of timeline is not archived, but timeline
 *		descendant descends from it: write it to dest, rebuilt from the
 *		descendant's history (see the top of this file).  Fatal if that
 *		cannot be done, naming the missing file.
 */
static int
rebuild_history(const char *program, const BkRepo *repo, BkDecoder *decoder,
				const char *source, const char *file, uint32_t timeline,
				uint32_t descendant, const char *dest, BkError *err)
{
	char name[32];
	uint8_t *text = NULL;
	size_t len;
	char *history = NULL;
	size_t history_len;
	bool ok;

	snprintf(name, sizeof(name), "%08X.history", descendant);
	if (decoder == NULL)
		ok = bk_error_set(err, BK_ERR_CONFIG, "no key file configured");
	else
		ok = bk_repo_decrypt_to_memory(repo, BK_REPO_ARCHIVE, source,
									   BK_KIND_WAL, name, decoder, HISTORY_MAX,
									   &text, &len, err) &&
			 bk_timeline_history_rebuild((const char *) text, len, descendant,
										 timeline, &history, &history_len,
										 err) &&
			 bk_write_file_durable(dest, history, history_len, 0600, err);
	free(text);
	free(history);
	if (ok)
	{
		fprintf(stderr,
				"%s: \"%s\" is not in the archive of source \"%s\": served "
				"as rebuilt from \"%s\" (timeline %" PRIu32
				" descends from timeline %" PRIu32 ")\n",
				program, file, source, name, descendant, timeline);
		return EXIT_RESTORED;
	}
	bk_error_prefix(err,
					"history file \"%s\" is missing from the archive of "
					"source \"%s\", and rebuilding it from \"%s\" (timeline "
					"%" PRIu32 " descends from timeline %" PRIu32 ") failed: ",
					file, source, name, descendant, timeline);
	bk_error_hint(err,
				  "Recovery cannot choose its timeline without it. Set "
				  "key_file if it is missing, or put \"%s\" back (from "
				  "pg_wal of the server that created timeline %" PRIu32 ").",
				  file, timeline);
	return fail(program, err);
}

/*
 * absent_file_status
 *		A requested file is not in the repository: beyond the end of what
 *		the archive holds (exit 1), or anything else (fatal)?  Exit 1 only
 *		when sure: the source exists and has WAL, the file's timeline is in
 *		the archive, the file is not before the archive's start, not inside
 *		the archived range, and not below a point where a later timeline
 *		branched off (wal_catalog.h).  A history file a later timeline's
 *		history holds is served rebuilt from it (exit 0).
 */
static int
absent_file_status(const char *program, const BkRepo *repo, BkDecoder *decoder,
				   const char *source, const char *file, const char *dest,
				   BkError *err)
{
	uint32_t timeline;
	uint32_t log;
	uint32_t seg;
	BkWalFileType type = bk_wal_file_type(file, &timeline, &log, &seg);
	BkWalCatalog catalog;
	const BkWalTimeline *tl;
	const BkWalTimeline *unknown;
	const BkWalExpired *expired;
	char why[512];
	char text[1024];

	/* PostgreSQL asks for segments and history files; nothing else is ours. */
	if (type != BK_WAL_SEGMENT && type != BK_WAL_HISTORY)
	{
		fprintf(stderr, "%s: \"%s\" is not in the archive of source \"%s\"\n",
				program, file, source);
		return EXIT_NOT_IN_ARCHIVE;
	}
	if (!bk_wal_catalog_load(repo, source, decoder, &catalog, err))
		return fail(program, err);
	if (!catalog.source_exists || catalog.timeline_count == 0)
	{
		sources_text(repo, text, sizeof(text));
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 catalog.source_exists
						 ? "source \"%s\" has no archived WAL in repository "
						   "%s, so \"%s\" cannot be the end of its archive "
						   "(sources with data: %s)"
						 : "source \"%s\" is not in repository %s, so \"%s\" "
						   "cannot be the end of its archive (the repository "
						   "holds sources: %s)",
					 source, bk_repo_location(repo), file, text);
		bk_error_hint(err, "Check --source in restore_command: it must be "
						   "the id the database archives under (its system "
						   "identifier unless bk.source_id is set); \"bk "
						   "list\" shows the sources.");
		bk_wal_catalog_free(&catalog);
		return fail(program, err);
	}
	tl = bk_wal_timeline(&catalog, timeline);

	/*
	 * The listing has it although the read did not find it: archived in
	 * between (the shipper commits at any moment), or a store whose reads
	 * lag its listings.  Either way not the end of the archive: read again.
	 */
	if (type == BK_WAL_SEGMENT
			? catalog.segment_size != 0 &&
				  bk_wal_has_segment(
					  &catalog, timeline,
					  bk_wal_segno(log, seg, catalog.segment_size))
			: tl != NULL && tl->has_history)
	{
		BkRepoStat again;

		bk_wal_catalog_free(&catalog);
		if (!bk_repo_stat(repo, BK_REPO_ARCHIVE, source, BK_KIND_WAL, file,
						  &again, err))
			return fail(program, err);
		if (again.exists)
			return EXIT_APPEARED;
		bk_error_set(err, BK_ERR_SEQUENCE,
					 "WAL file \"%s\" of source \"%s\" is listed in "
					 "repository %s, but reading it finds nothing",
					 file, source, bk_repo_location(repo));
		bk_error_hint(err,
					  "The repository's listing and its reads disagree (an "
					  "object store whose reads lag its listings, or the "
					  "file was removed meanwhile). Retry; if it persists, "
					  "check it with \"bk verify --source %s\".",
					  source);
		return fail(program, err);
	}
	if (type == BK_WAL_HISTORY)
	{
		uint32_t descendant =
			timeline > 1 ? bk_wal_history_descendant(&catalog, timeline) : 0;

		/*
		 * History files of timelines that do not exist are asked for
		 * routinely (and timeline 1 never has one), at promotion for the
		 * first free timeline id, which must stay "not found"; a timeline
		 * an archived history lists as an ancestor, or with archived
		 * segments, exists.
		 */
		if (descendant != 0)
		{
			bk_wal_catalog_free(&catalog);
			return rebuild_history(program, repo, decoder, source, file,
								   timeline, descendant, dest, err);
		}
		/*
		 * A later timeline whose history could not be read may descend
		 * from this one: "not found" would make PostgreSQL stop probing
		 * here and never see it.
		 */
		unknown = bk_wal_later_unknown_history(&catalog, timeline);
		if (unknown != NULL)
		{
			bk_error_set(err, BK_ERR_SEQUENCE,
						 "history file \"%s\" is not in the archive of source "
						 "\"%s\", and bk cannot tell whether timeline "
						 "%" PRIu32 " descends from timeline %" PRIu32 ": %s",
						 file, source, unknown->timeline, timeline,
						 unknown->history_problem);
			if (unknown->has_history)
				bk_error_hint(err,
							  "Recovery cannot choose its timeline without "
							  "knowing. Set key_file if it is missing, or "
							  "check %08" PRIX32 ".history with \"bk verify "
							  "--source %s\", and retry.",
							  unknown->timeline, source);
			else
				bk_error_hint(err,
							  "Recovery cannot choose its timeline without "
							  "knowing. If a shipper is still storing it, "
							  "retry; if it was lost, put %08" PRIX32
							  ".history back (from pg_wal of the server "
							  "that created the timeline).",
							  unknown->timeline);
			bk_wal_catalog_free(&catalog);
			return fail(program, err);
		}
		if (timeline > 1 && tl != NULL &&
			(tl->segments > 0 || tl->partials > 0))
		{
			bk_error_set(err, BK_ERR_NOT_FOUND,
						 "history file \"%s\" is missing from the archive of "
						 "source \"%s\", which holds WAL of timeline %" PRIu32,
						 file, source, timeline);
			bk_error_hint(err,
						  "Recovery cannot follow timeline %" PRIu32
						  " without it. Put it back (from pg_wal of "
						  "the server that created the timeline).",
						  timeline);
			bk_wal_catalog_free(&catalog);
			return fail(program, err);
		}
		bk_wal_catalog_free(&catalog);
		fprintf(stderr, "%s: \"%s\" is not in the archive of source \"%s\"\n",
				program, file, source);
		return EXIT_NOT_IN_ARCHIVE;
	}
	expired = bk_wal_expired(&catalog, timeline);
	if (expired != NULL &&
		bk_wal_segno(log, seg, catalog.segment_size) <= expired->through_segno)
	{
		bk_error_set(err, BK_ERR_SEQUENCE,
					 "WAL file \"%s\" of source \"%s\" was removed by bk "
					 "expire (it removed timeline %" PRIu32 "'s WAL up to %s), "
					 "so it is not the end of the archive",
					 file, source, timeline, expired->through);
		bk_error_hint(err,
					  "Recovery cannot go on: the retention no longer keeps "
					  "the snapshot it started from, or the WAL that "
					  "snapshot needs. Restore again from a snapshot \"bk "
					  "list --source %s\" shows, and keep bk expire from "
					  "removing the one a restore is using.",
					  source);
		bk_wal_catalog_free(&catalog);
		return fail(program, err);
	}
	if (catalog.segment_size == 0 ||
		bk_wal_segment_is_hole(&catalog, timeline,
							   bk_wal_segno(log, seg, catalog.segment_size),
							   why, sizeof(why)))
	{
		bk_error_set(err, BK_ERR_SEQUENCE,
					 "WAL file \"%s\" is missing from the archive of source "
					 "\"%s\": %s",
					 file, source,
					 catalog.segment_size == 0
						 ? "the archive holds no WAL segment of it at all"
						 : why);
		bk_error_hint(err,
					  "Recovery cannot continue without it. Check the "
					  "shipper's log and \"bk verify --source %s\"; restore "
					  "to a target before it, or put the segment back "
					  "(from pg_wal of the source if it still has it).",
					  source);
		bk_wal_catalog_free(&catalog);
		return fail(program, err);
	}
	if (tl != NULL && tl->segments > 0)
	{
		char last[32];

		bk_wal_segment_name(timeline, tl->last_segno, catalog.segment_size,
							last);
		snprintf(text, sizeof(text),
				 " (its newest segment on timeline "
				 "%" PRIu32 " is %s)",
				 timeline, last);
	}
	else
		text[0] = '\0';
	bk_wal_catalog_free(&catalog);
	fprintf(stderr,
			"%s: \"%s\" is beyond the end of the archive of source \"%s\"%s\n",
			program, file, source, text);
	return EXIT_NOT_IN_ARCHIVE;
}

/* --------------------------------------------------------- tablespaces */

/* A record cut by a segment's end, kept for the next segment's walk. */
#define CARRY_FILE "bk-wal-carry"

/* global/pg_control: pg_control_version at 8, catalog_version_no at 12 */
#define PG_CONTROL_VERSION_15 1300

/* "<directory of dest>/bk-wal-carry" */
static void
carry_path_of(const char *dest, char *out, size_t out_len)
{
	const char *slash = strrchr(dest, '/');

	if (slash == NULL)
		snprintf(out, out_len, "%s", CARRY_FILE);
	else
		snprintf(out, out_len, "%.*s/%s", (int) (slash - dest), dest,
				 CARRY_FILE);
}

/*
 * The name PostgreSQL gives a tablespace's version directory,
 * "PG_<major>_<catversion>", from the data directory (the working
 * directory): PG_VERSION and global/pg_control.  If either cannot be read,
 * out is only the prefix "PG_<major>_" (15 unless PG_VERSION says), and
 * any directory of that prefix is taken for one.
 */
static void
version_directory_name(char *out, size_t out_len, bool *exact)
{
	char major[16] = "15";
	char *text = NULL;
	size_t len = 0;
	uint8_t control[16];
	int fd;
	BkError err;

	*exact = false;
	if (bk_read_file("PG_VERSION", 64, &text, &len, &err))
	{
		size_t digits = 0;

		while (digits < len && digits < sizeof(major) - 1 &&
			   text[digits] >= '0' && text[digits] <= '9')
			digits++;
		if (digits > 0)
			snprintf(major, sizeof(major), "%.*s", (int) digits, text);
		free(text);
	}
	snprintf(out, out_len, "PG_%s_", major);
	fd = open("global/pg_control", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (pread(fd, control, sizeof(control), 0) == (ssize_t) sizeof(control))
	{
		uint32_t control_version;
		uint32_t catversion;

		memcpy(&control_version, control + 8, sizeof(control_version));
		memcpy(&catversion, control + 12, sizeof(catversion));
		if (strcmp(major, "15") == 0 &&
			control_version == PG_CONTROL_VERSION_15)
		{
			snprintf(out, out_len, "PG_%s_%" PRIu32, major, catversion);
			*exact = true;
		}
	}
	close(fd);
}

/*
 * Does location hold a tablespace version directory (name, or any of
 * prefix name when not exact)?  One that cannot be looked into counts as
 * holding one: it may.  found gets its path.
 */
static bool
has_version_directory(const char *location, const char *name, bool exact,
					  char *found, size_t found_len)
{
	struct stat st;
	DIR *dir;
	struct dirent *entry;
	bool has = false;

	if (exact)
	{
		snprintf(found, found_len, "%s/%s", location, name);
		if (stat(found, &st) == 0)
			return S_ISDIR(st.st_mode);
		return errno != ENOENT && errno != ENOTDIR;
	}
	snprintf(found, found_len, "%s/%s*", location, name);
	dir = opendir(location);
	if (dir == NULL)
		return errno != ENOENT && errno != ENOTDIR;
	while (!has && (entry = readdir(dir)) != NULL)
	{
		if (strncmp(entry->d_name, name, strlen(name)) != 0)
			continue;
		snprintf(found, found_len, "%s/%s", location, entry->d_name);
		has = stat(found, &st) == 0 && S_ISDIR(st.st_mode);
	}
	closedir(dir);
	return has;
}

/*
 * Does one of this cluster's pg_tblspc links (in the working directory)
 * point to location?  Then its version directory is this cluster's own:
 * an earlier replay of this record (recovery started again), or of a
 * tablespace dropped and created again there, or one bk restore put there.
 */
static bool
cluster_links_to(const char *location)
{
	struct stat location_st;
	DIR *dir;
	struct dirent *entry;
	bool links = false;

	if (stat(location, &location_st) != 0 ||
		(dir = opendir("pg_tblspc")) == NULL)
		return false;
	while (!links && (entry = readdir(dir)) != NULL)
	{
		char link_path[300];
		struct stat link_st;
		struct stat target_st;

		snprintf(link_path, sizeof(link_path), "pg_tblspc/%s", entry->d_name);
		links = entry->d_name[0] != '.' && lstat(link_path, &link_st) == 0 &&
				S_ISLNK(link_st.st_mode) && stat(link_path, &target_st) == 0 &&
				target_st.st_dev == location_st.st_dev &&
				target_st.st_ino == location_st.st_ino;
	}
	closedir(dir);
	return links;
}

/*
 * The value of setting key in the data directory's postgresql.auto.conf
 * (the working directory), where bk restore writes the recovery target:
 * the last "key = 'value'" line, as PostgreSQL reads it.  False if none.
 */
static bool
auto_conf_setting(const char *key, char *value, size_t value_len)
{
	char *text = NULL;
	size_t len = 0;
	size_t key_len = strlen(key);
	bool found = false;
	BkError err;

	if (!bk_read_file("postgresql.auto.conf", 1024 * 1024, &text, &len, &err))
		return false;
	for (size_t start = 0; start < len;)
	{
		size_t end = start;
		size_t at = start;
		size_t out = 0;

		while (end < len && text[end] != '\n')
			end++;
		while (at < end && (text[at] == ' ' || text[at] == '\t'))
			at++;
		if (end - at > key_len && strncmp(text + at, key, key_len) == 0 &&
			strchr(" \t=", text[at + key_len]) != NULL)
		{
			at += key_len;
			while (at < end && (text[at] == ' ' || text[at] == '\t'))
				at++;
			if (at < end && text[at] == '=')
				at++;
			while (at < end && (text[at] == ' ' || text[at] == '\t'))
				at++;
			if (at < end && text[at] == '\'')
			{
				for (at++; at < end && out + 1 < value_len; at++)
				{
					if (text[at] == '\'' && at + 1 < end &&
						text[at + 1] == '\'')
						at++;
					else if (text[at] == '\'')
						break;
					value[out++] = text[at];
				}
			}
			else
				while (at < end && out + 1 < value_len &&
					   strchr(" \t#", text[at]) == NULL)
					value[out++] = text[at++];
			value[out] = '\0';
			found = true;
		}
		start = end + 1;
	}
	free(text);
	return found;
}

/*
 * Does the recovery target stop recovery before the record at lsn, whose
 * previous record is at prev_lsn?  Only an LSN target is judged (bk restore
 * writes it to postgresql.auto.conf): with recovery_target_inclusive on,
 * PostgreSQL stops after the first record at or past the target, so one
 * at or before prev_lsn stops it before lsn; with it off, it stops before
 * the first record at or past the target.
 */
static bool
target_stops_before(uint64_t lsn, uint64_t prev_lsn, char *target,
					size_t target_len)
{
	char inclusive[16] = "on";
	uint64_t target_lsn;

	if (!auto_conf_setting("recovery_target_lsn", target, target_len) ||
		!bk_parse_lsn(target, &target_lsn))
		return false;
	auto_conf_setting("recovery_target_inclusive", inclusive,
					  sizeof(inclusive));
	if (strcmp(inclusive, "off") == 0 || strcmp(inclusive, "false") == 0 ||
		strcmp(inclusive, "no") == 0 || strcmp(inclusive, "0") == 0)
		return target_lsn <= lsn;
	return target_lsn <= prev_lsn;
}

typedef struct TablespaceCheck
{
	const char *file;
	const char *source;
	char version_name[64];
	bool exact;
	bool refused;
	BkError *err;
} TablespaceCheck;

static bool
check_tablespace_create(void *arg, const BkWalTablespaceCreate *create)
{
	TablespaceCheck *check = arg;
	char found[4200];
	char lsn[BK_LSN_TEXT_SIZE];
	char prev[BK_LSN_TEXT_SIZE];
	char target[64];

	/* An in-place tablespace (developers' option) stays in pg_tblspc. */
	if (create->path[0] == '\0')
		return true;
	if (!has_version_directory(create->path, check->version_name, check->exact,
							   found, sizeof(found)) ||
		cluster_links_to(create->path))
		return true;
	bk_format_lsn(create->lsn, lsn, sizeof(lsn));
	bk_format_lsn(create->prev_lsn, prev, sizeof(prev));
	if (target_stops_before(create->lsn, create->prev_lsn, target,
							sizeof(target)))
	{
		fprintf(stderr,
				"bk wal-get: WAL file \"%s\" creates tablespace %" PRIu32
				" at \"%s\" at LSN %s, past recovery_target_lsn %s: "
				"recovery stops before it\n",
				check->file, create->oid, create->path, lsn, target);
		return true;
	}
	bk_error_set(check->err, BK_ERR_CONFLICT,
				 "WAL file \"%s\" of source \"%s\" creates tablespace %" PRIu32
				 " at \"%s\" (CREATE TABLESPACE, at LSN %s), and \"%s\" "
				 "already exists on this host: replaying it, PostgreSQL "
				 "would link this cluster's pg_tblspc/%" PRIu32
				 " to that directory and write into it (on the source's "
				 "host, the source's live tablespace)",
				 check->file, check->source, create->oid, create->path, lsn,
				 found, create->oid);
	bk_error_hint(check->err,
				  "Nothing was replayed from this file. Restore on a host "
				  "where \"%s\" does not exist (PostgreSQL then asks for the "
				  "directory: create it empty); or stop recovery before "
				  "this record: restore again with --target-lsn %s (the "
				  "record before it; bk wal-get reads the target from "
				  "postgresql.auto.conf); or, for a tablespace that must "
				  "come back, restore from a snapshot taken after it was "
				  "created, with --tablespace-map \"%s=NEW\".",
				  create->path, prev, create->path);
	check->refused = true;
	return false;
}

/*
 * Before segment dest (file) is handed over: refuse it if replaying it
 * would make a tablespace link to a directory that exists on this host
 * (see the top of this file).  False with err set when refused, or when
 * the file cannot be read.
 */
static bool
check_segment_tablespaces(const char *file, const char *source,
						  const char *dest, BkError *err)
{
	char carry_path[4200];
	BkWalCarry *carry_in = NULL;
	BkWalCarry *carry_out = NULL;
	char *carry_text = NULL;
	size_t carry_len = 0;
	BkWalScanResult result = {0};
	TablespaceCheck check = {.file = file, .source = source, .err = err};
	struct stat st;
	void *map = MAP_FAILED;
	int fd;
	bool ok = false;
	BkError ignored;

	carry_path_of(dest, carry_path, sizeof(carry_path));
	fd = open(dest, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not read \"%s\": %s", dest,
					 strerror(errno));
		goto out;
	}
	carry_out = malloc(sizeof(*carry_out));
	if (carry_out == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (st.st_size > 0 && (map = mmap(NULL, (size_t) st.st_size, PROT_READ,
									  MAP_PRIVATE, fd, 0)) == MAP_FAILED)
	{
		bk_error_set(err, BK_ERR_IO, "could not map \"%s\": %s", dest,
					 strerror(errno));
		goto out;
	}
	if (bk_read_file(carry_path, sizeof(BkWalCarry) + 1, &carry_text,
					 &carry_len, &ignored) &&
		carry_len == sizeof(BkWalCarry))
		carry_in = (BkWalCarry *) carry_text;
	version_directory_name(check.version_name, sizeof(check.version_name),
						   &check.exact);
	result.carry = carry_out;
	if (map != MAP_FAILED)
		bk_wal_scan_segment(map, (size_t) st.st_size, carry_in,
							check_tablespace_create, &check, &result);
	if (check.refused)
		goto out;
	if (result.has_carry)
	{
		if (!bk_write_file_durable(carry_path, carry_out, sizeof(*carry_out),
								   0600, err))
			goto out;
	}
	else if (carry_text != NULL)
		unlink(carry_path);
	ok = true;
out:
	if (map != MAP_FAILED)
		munmap(map, (size_t) st.st_size);
	if (fd >= 0)
		close(fd);
	free(carry_text);
	free(carry_out);
	return ok;
}

/* ------------------------------------------------------------ prefetch */

/* "<directory of dest>/bk-prefetch" */
static void
spool_dir_of(const char *dest, char *out, size_t out_len)
{
	const char *slash = strrchr(dest, '/');

	if (slash == NULL)
		snprintf(out, out_len, "%s", PREFETCH_DIR);
	else
		snprintf(out, out_len, "%.*s/%s", (int) (slash - dest), dest,
				 PREFETCH_DIR);
}

/*
 * The segment a running prefetcher is fetching, or "" if none runs (the
 * lock is free).
 */
static void
prefetcher_current(const char *spool_dir, char *current, size_t len)
{
	char path[4096];
	int fd;
	ssize_t got;

	current[0] = '\0';
	snprintf(path, sizeof(path), "%s/%s", spool_dir, PREFETCH_LOCK);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (flock(fd, LOCK_SH | LOCK_NB) == 0)
	{
		close(fd); /* nobody holds it */
		return;
	}
	got = pread(fd, current, len - 1, 0);
	current[got > 0 ? got : 0] = '\0';
	if (current[0] == '\0')
		bk_strlcpy(current, "?", len);
	close(fd);
}

/* An archived object's identity as text: key id, then fingerprint. */
#define IDENTITY_TEXT_LEN (2 * (BK_KEY_ID_LEN + BK_FINGERPRINT_LEN))

static void
identity_text(const uint8_t *key_id, const uint8_t *fingerprint, char *out)
{
	bk_hex_encode(key_id, BK_KEY_ID_LEN, out);
	bk_hex_encode(fingerprint, BK_FINGERPRINT_LEN, out + 2 * BK_KEY_ID_LEN);
}

/* "<segment>.id" beside the spooled segment at path. */
static void
spool_id_path(const char *path, char *out, size_t len)
{
	snprintf(out, len, "%s%s", path, PREFETCH_ID);
}

/* Was the spooled file at path decrypted from the object of identity? */
static bool
spooled_from(const char *path, const BkObjectIdentity *identity)
{
	char id_path[4200];
	char want[IDENTITY_TEXT_LEN + 1];
	char *text = NULL;
	size_t len = 0;
	BkError err;
	bool same;

	spool_id_path(path, id_path, sizeof(id_path));
	identity_text(identity->key_id, identity->fingerprint, want);
	same = bk_read_file(id_path, 4096, &text, &len, &err) &&
		   len == IDENTITY_TEXT_LEN && memcmp(text, want, len) == 0;
	free(text);
	return same;
}

/* Remove a spooled segment and what names its object. */
static void
unspool(const char *path)
{
	char id_path[4200];

	spool_id_path(path, id_path, sizeof(id_path));
	unlink(path);
	unlink(id_path);
}

/*
 * Serve file from the spool if a prefetcher put it there with the object's
 * size, decrypted from the object of identity (the archived one); waits
 * while a prefetcher is fetching exactly this file.
 */
static bool
serve_from_spool(const char *spool_dir, const char *file, const char *dest,
				 uint64_t expected_size, const BkObjectIdentity *identity)
{
	char path[4096];
	char id_path[4200];
	char dest_dir[4096];
	char current[64];
	struct stat st;
	int64_t deadline = bk_monotonic_ms() + PREFETCH_WAIT_MS;
	const char *slash;

	snprintf(path, sizeof(path), "%s/%s", spool_dir, file);
	spool_id_path(path, id_path, sizeof(id_path));
	for (;;)
	{
		if (stat(path, &st) == 0)
			break;
		prefetcher_current(spool_dir, current, sizeof(current));
		if (strcmp(current, file) != 0 || bk_monotonic_ms() > deadline)
			return false;
		usleep(20 * 1000);
	}
	if ((uint64_t) st.st_size != expected_size || !spooled_from(path, identity))
	{
		unspool(path);
		return false;
	}
	if (rename(path, dest) != 0)
		return false;
	unlink(id_path);
	slash = strrchr(dest, '/');
	if (slash == NULL)
		bk_strlcpy(dest_dir, ".", sizeof(dest_dir));
	else
		snprintf(dest_dir, sizeof(dest_dir), "%.*s", (int) (slash - dest),
				 dest);
	return bk_fsync_dir(dest_dir, NULL);
}

/* Remove spooled segments before segno (stale: recovery has passed them). */
static void
drop_stale(const char *spool_dir, uint64_t segno, uint32_t segment_size)
{
	DIR *dir = opendir(spool_dir);
	struct dirent *entry;

	while (dir != NULL && (entry = readdir(dir)) != NULL)
	{
		uint32_t timeline;
		uint32_t log;
		uint32_t seg;
		char path[4096];

		BkWalFileType type =
			bk_wal_file_type(entry->d_name, &timeline, &log, &seg);

		/* Segments, and the files naming their objects. */
		if ((type != BK_WAL_SEGMENT &&
			 (type != BK_WAL_OTHER ||
			  strlen(entry->d_name) != 24 + strlen(PREFETCH_ID) ||
			  strcmp(entry->d_name + 24, PREFETCH_ID) != 0)) ||
			bk_wal_segno(log, seg, segment_size) >= segno)
			continue;
		snprintf(path, sizeof(path), "%s/%s", spool_dir, entry->d_name);
		unlink(path);
	}
	if (dir != NULL)
		closedir(dir);
}

/*
 * The end of recovery (PostgreSQL asks for what is beyond the archive, or
 * for the next timeline's history file as it promotes): the spool has
 * served its purpose.  A prefetcher still at work is waited for, briefly,
 * so that nothing is left behind in pg_wal.
 */
static void
clear_spool(const char *dest)
{
	char spool_dir[4096];
	char lock_path[4200];
	int64_t deadline = bk_monotonic_ms() + 10000;
	int lock_fd;

	spool_dir_of(dest, spool_dir, sizeof(spool_dir));
	snprintf(lock_path, sizeof(lock_path), "%s/%s", spool_dir, PREFETCH_LOCK);
	lock_fd = open(lock_path, O_RDONLY | O_CLOEXEC);
	if (lock_fd < 0)
	{
		if (access(spool_dir, F_OK) == 0)
			bk_remove_tree(spool_dir, NULL);
		return;
	}
	while (flock(lock_fd, LOCK_EX | LOCK_NB) != 0)
	{
		if (bk_monotonic_ms() > deadline)
		{
			close(lock_fd);
			return;
		}
		usleep(20 * 1000);
	}
	bk_remove_tree(spool_dir, NULL);
	close(lock_fd);
}

/* In the detached process: fetch the segments after segno. */
static void
prefetch_segments(const BkRepo *repo, BkDecoder *decoder, const char *source,
				  const char *spool_dir, uint32_t timeline, uint64_t segno,
				  uint32_t segment_size, int count)
{
	char path[4096];
	int lock_fd;

	snprintf(path, sizeof(path), "%s/%s", spool_dir, PREFETCH_LOCK);
	lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0)
		return; /* another prefetcher is at work */
	for (int ahead = 1; ahead <= count; ahead++)
	{
		char name[32];
		char spool_path[4096];
		char id_path[4200];
		char text[IDENTITY_TEXT_LEN + 1];
		struct stat st;
		BkRepoStat stat_object;
		BkObjectIdentity identity;
		const BkObjectTracker *decrypted;
		BkError err;

		bk_wal_segment_name(timeline, segno + (uint64_t) ahead, segment_size,
							name);
		snprintf(spool_path, sizeof(spool_path), "%s/%s", spool_dir, name);
		if (stat(spool_path, &st) == 0)
			continue;
		if (!bk_repo_stat(repo, BK_REPO_ARCHIVE, source, BK_KIND_WAL, name,
						  &stat_object, &err) ||
			!stat_object.exists)
			break; /* the end of the archive, or a gap: not ours to judge */
		if (ftruncate(lock_fd, 0) != 0 ||
			pwrite(lock_fd, name, strlen(name), 0) != (ssize_t) strlen(name))
			break;
		/* What names the object goes first: a segment never lacks it. */
		spool_id_path(spool_path, id_path, sizeof(id_path));
		if (!bk_repo_object_identity(repo, BK_REPO_ARCHIVE, source, BK_KIND_WAL,
									 name, &identity, NULL, &err))
		{
			fprintf(stderr, "bk wal-get --prefetch: %s: %s\n", name,
					err.message);
			break;
		}
		identity_text(identity.key_id, identity.fingerprint, text);
		if (!bk_write_file_durable(id_path, text, IDENTITY_TEXT_LEN, 0600,
								   &err) ||
			!bk_repo_decrypt_to_file(repo, BK_REPO_ARCHIVE, source, BK_KIND_WAL,
									 name, decoder, spool_path, NULL, &err))
		{
			fprintf(stderr, "bk wal-get --prefetch: %s: %s\n", name,
					err.message);
			unspool(spool_path);
			break;
		}
		/* Replaced between the two reads: keep nothing. */
		decrypted = bk_decoder_object(decoder);
		if (memcmp(decrypted->key_id, identity.key_id, BK_KEY_ID_LEN) != 0 ||
			memcmp(decrypted->fingerprint, identity.fingerprint,
				   BK_FINGERPRINT_LEN) != 0)
		{
			fprintf(stderr,
					"bk wal-get --prefetch: %s changed while it was read\n",
					name);
			unspool(spool_path);
			break;
		}
	}
	if (ftruncate(lock_fd, 0) != 0)
		fprintf(stderr, "bk wal-get --prefetch: could not clear the lock\n");
	close(lock_fd);
}

/*
 * Start a detached prefetcher (double fork, new session, no stdio of
 * PostgreSQL's) and return at once.
 */
static void
launch_prefetch(const BkRepo *repo, BkDecoder *decoder, const char *source,
				const char *file, const char *dest, uint32_t segment_size,
				int count)
{
	char spool_dir[4096];
	char log_path[4200];
	uint32_t timeline;
	uint32_t log;
	uint32_t seg;
	uint64_t segno;
	pid_t child;

	if (bk_wal_file_type(file, &timeline, &log, &seg) != BK_WAL_SEGMENT ||
		segment_size == 0 || (segment_size & (segment_size - 1)) != 0)
		return;
	segno = bk_wal_segno(log, seg, segment_size);
	spool_dir_of(dest, spool_dir, sizeof(spool_dir));
	if (mkdir(spool_dir, 0700) != 0 && errno != EEXIST)
		return;
	drop_stale(spool_dir, segno + 1, segment_size);
	fflush(stdout);
	fflush(stderr);
	child = fork();
	if (child < 0)
		return;
	if (child > 0)
	{
		while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
			;
		return;
	}
	/* The intermediate child: a new session, then the real worker. */
	if (setsid() < 0 || fork() != 0)
		_exit(0);
	{
		int null_fd = open("/dev/null", O_RDWR);
		int log_fd;

		snprintf(log_path, sizeof(log_path), "%s/%s", spool_dir, PREFETCH_LOG);
		log_fd =
			open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (null_fd >= 0)
		{
			dup2(null_fd, STDIN_FILENO);
			dup2(null_fd, STDOUT_FILENO);
			dup2(log_fd >= 0 ? log_fd : null_fd, STDERR_FILENO);
		}
		signal(SIGHUP, SIG_IGN);
	}
	prefetch_segments(repo, decoder, source, spool_dir, timeline, segno,
					  segment_size, count);
	_exit(0);
}

/* A copy of the file in the conflicts area ("<file>.<attempt>"). */
typedef struct ConflictProbe
{
	const char *file;
	char prefix[64];
	char copy[BK_OBJECT_NAME_MAX + 1];
} ConflictProbe;

/*
 * Only "<file>.<32 hex digits>": the prefix "<file>." also lists the copies
 * of another file whose name starts with it, a segment's backup history
 * file ("<segment>.<offset>.backup.<attempt>").
 */
static bool
find_conflict(void *arg, const BkRepoEntry *entry, BkError *err)
{
	ConflictProbe *probe = arg;
	size_t len = strlen(probe->prefix);

	if (entry->is_prefix || probe->copy[0] != '\0' ||
		strlen(entry->name) != len + 32 ||
		strspn(entry->name + len, "0123456789abcdefABCDEF") != 32)
		return true;
	bk_strlcpy(probe->copy, entry->name, sizeof(probe->copy));
	return true;
}

int
bk_cmd_wal_get(int argc, char **argv)
{
	static const struct option options[] = {
		{"source", required_argument, NULL, 's'},
		{"prefetch", required_argument, NULL, 'p'},
		BK_COMMON_LONG_OPTIONS,
		{NULL, 0, NULL, 0}};
	BkCommonOptions common = {0};
	const char *source = NULL;
	const char *file;
	const char *dest;
	int prefetch = 0;
	BkCliConfig config;
	BkRepo *repo = NULL;
	BkKeyring *ring = NULL;
	BkDecoder *decoder = NULL;
	uint32_t segment_size = 0;
	bool served = false;
	bool looked_again = false; /* after EXIT_APPEARED */
	BkRepoStat object_stat;
	ConflictProbe conflict = {0};
	BkError err;
	int status = EXIT_FATAL;
	int code;
	int index = -1;
	uint32_t file_timeline;
	uint32_t file_log;
	uint32_t file_seg;
	const char *seen[BK_CLI_OPTIONS_MAX] = {0};

	bk_error_clear(&err);
	optind = 1;
	opterr = 0;
	while ((code = getopt_long(argc, argv, "", options, &index)) != -1)
	{
		if (code != '?' &&
			!bk_cli_option_repeat(options, index, optarg, seen, NULL, &err))
			return fail(argv[0], &err);
		index = -1;
		if (code == 's')
			source = optarg;
		else if (code == 'p')
		{
			char *end;
			long value = strtol(optarg, &end, 10);

			if (end == optarg || *end != '\0' || value < 0 ||
				value > PREFETCH_MAX)
			{
				bk_error_set(&err, BK_ERR_USAGE,
							 "--prefetch must be from 0 to %d, not \"%s\"",
							 PREFETCH_MAX, optarg);
				return fail(argv[0], &err);
			}
			prefetch = (int) value;
		}
		else if (!bk_common_option(&common, code, optarg))
		{
			bk_error_set(
				&err, BK_ERR_USAGE,
				"unknown option, or option missing its argument: \"%s\"",
				argv[optind - 1]);
			return fail(argv[0], &err);
		}
	}
	if (common.help)
	{
		fputs(wal_get_help, stdout);
		return EXIT_RESTORED;
	}
	if (source == NULL || argc - optind != 2)
	{
		bk_error_set(&err, BK_ERR_USAGE,
					 "usage: bk wal-get [--config FILE] --source S FILE DEST");
		return fail(argv[0], &err);
	}
	file = argv[optind];
	dest = argv[optind + 1];

	bk_cli_config_init(&config);
	if (!bk_common_config(&common, &config, &err) ||
		(repo = bk_cli_repo_open(&config, false, &err)) == NULL)
		goto done;
look:
	if (!bk_repo_stat(repo, BK_REPO_ARCHIVE, source, BK_KIND_WAL, file,
					  &object_stat, &err))
		goto done;

	/* Two different copies: never pick one silently. */
	memset(&conflict, 0, sizeof(conflict));
	conflict.file = file;
	snprintf(conflict.prefix, sizeof(conflict.prefix), "%s.", file);
	if (!bk_repo_list(repo, BK_REPO_CONFLICTS, source, BK_KIND_WAL,
					  conflict.prefix, false, find_conflict, &conflict, &err))
		goto done;
	if (conflict.copy[0] != '\0')
	{
		char archived[4096];
		char copy[4096];

		bk_repo_describe(repo, BK_REPO_ARCHIVE, source, BK_KIND_WAL, file,
						 archived, sizeof(archived));
		bk_repo_describe(repo, BK_REPO_CONFLICTS, source, BK_KIND_WAL,
						 conflict.copy, copy, sizeof(copy));
		bk_error_set(&err, BK_ERR_CONFLICT,
					 "the archive holds two different copies of WAL file "
					 "\"%s\" of source \"%s\" (\"%s\" and \"%s\")",
					 file, source, archived, copy);
		bk_error_hint(&err,
					  "Run \"bk verify --source %s\" with the key to see "
					  "which copy belongs to this cluster's history, move the "
					  "other out of the repository, and retry.",
					  source);
		goto done;
	}

	if (!object_stat.exists)
	{
		/* The key reads history files archived without branch points, and
		 * those a missing history file is rebuilt from. */
		if (config.key_file != NULL &&
			((ring = bk_keyring_load(config.key_file, BK_KEYS_FOR_RESTORE,
									 &err)) == NULL ||
			 (decoder = bk_decoder_new(ring, &err)) == NULL))
			goto done;
		status = absent_file_status(argv[0], repo, decoder, source, file, dest,
									&err);
		bk_decoder_free(decoder);
		bk_keyring_free(ring);
		decoder = NULL;
		ring = NULL;
		if (status == EXIT_APPEARED && !looked_again)
		{
			/* Archived meanwhile: look again, conflicting copies too. */
			looked_again = true;
			status = EXIT_FATAL;
			goto look;
		}
		if (status == EXIT_APPEARED)
		{
			bk_error_set(&err, BK_ERR_SEQUENCE,
						 "WAL file \"%s\" of source \"%s\" keeps "
						 "appearing and vanishing in repository %s",
						 file, source, bk_repo_location(repo));
			bk_error_hint(&err, "The repository's listing and its reads "
								"disagree; retry, and check the store.");
			goto done;
		}
		if (status == EXIT_NOT_IN_ARCHIVE)
		{
			char carry_path[4200];

			/* The end of recovery: no segment follows to complete it. */
			carry_path_of(dest, carry_path, sizeof(carry_path));
			unlink(carry_path);
			if (prefetch > 0)
				clear_spool(dest);
		}
		bk_repo_close(repo);
		bk_cli_config_free(&config);
		return status;
	}

	/* A segment a prefetcher already decrypted and verified. */
	if (prefetch > 0)
	{
		BkObjectIdentity identity;
		BkObjectTracker *object = malloc(sizeof(*object));
		char value[32];
		char spool_dir[4096];

		if (object != NULL &&
			bk_repo_object_identity(repo, BK_REPO_ARCHIVE, source, BK_KIND_WAL,
									file, &identity, object, &err))
		{
			if (bk_meta_get(object->meta, object->meta_len, "segment-size",
							value, sizeof(value)))
				segment_size = (uint32_t) strtoul(value, NULL, 10);
			spool_dir_of(dest, spool_dir, sizeof(spool_dir));
			served = serve_from_spool(spool_dir, file, dest,
									  object->object_size, &identity);
		}
		free(object);
		bk_error_clear(&err); /* decrypting below reports any problem */
	}

	if (config.key_file == NULL)
	{
		bk_error_set(&err, BK_ERR_CONFIG, "no key file configured");
		bk_error_hint(&err, "Set key_file in the configuration or pass "
							"--key-file: decrypting needs the private key.");
		goto done;
	}
	ring = bk_keyring_load(config.key_file, BK_KEYS_FOR_RESTORE, &err);
	if (ring == NULL)
		goto done;
	decoder = bk_decoder_new(ring, &err);
	if (decoder == NULL)
		goto done;

	/* Decrypt into a temporary file beside DEST, then rename: atomic. */
	if (!served &&
		!bk_repo_decrypt_to_file(repo, BK_REPO_ARCHIVE, source, BK_KIND_WAL,
								 file, decoder, dest, NULL, &err))
	{
		bk_error_prefix(&err, "WAL file \"%s\" of source \"%s\": ", file,
						source);
		goto done;
	}
	if (bk_wal_file_type(file, &file_timeline, &file_log, &file_seg) ==
			BK_WAL_SEGMENT &&
		!check_segment_tablespaces(file, source, dest, &err))
	{
		unlink(dest);
		goto done;
	}
	status = EXIT_RESTORED;
	if (prefetch > 0)
		launch_prefetch(repo, decoder, source, file, dest, segment_size,
						prefetch);

done:
	bk_decoder_free(decoder);
	bk_keyring_free(ring);
	bk_repo_close(repo);
	bk_cli_config_free(&config);
	if (status == EXIT_RESTORED)
		return status;
	return fail(argv[0], &err);
}
