/*
 * cmd_restore.c
 *		bk restore: rebuild a PostgreSQL data directory from the newest
 *		snapshot chain that ends before the recovery target, and configure
 *		recovery through bk wal-get to reach the target.
 *
 * Picking the snapshot.  A snapshot can serve a target only if its stop
 * point (where recovery becomes consistent) is at or before the target;
 * recovery from a later one would fail ("requested recovery stop point is
 * before consistent recovery point") or, worse, pass the target.  Times
 * and LSNs compare with the catalog directly.  A transaction id or a
 * restore point name has no place in the catalog, so the archived WAL is
 * decrypted window by window, newest first, and PostgreSQL's own
 * pg_waldump finds the commit (or restore point) record in it: windows are
 * [stop of snapshot i, stop of snapshot i+1), so the window holding the
 * record names the snapshot.
 *
 * Writing the directory.  Files are decrypted, decompressed and verified
 * one chunk at a time (memory stays bounded), by --jobs threads, each with
 * its own decoder (the keyring is read-only and shared).  Incremental
 * files are rebuilt in place: the parent's version first, then the changed
 * blocks at their offsets (snapshot_data.c).  Each rebuilt file is checked
 * against the record's SHA-256.
 *
 * A restore that fails half way must never leave a directory that starts:
 * PostgreSQL would start from the checkpoint in pg_control and silently
 * produce a corrupt cluster.  So global/pg_control is written last, after
 * every file, backup_label, tablespace_map, the recovery settings and the
 * manifest are durable; without it the server refuses to start.  With
 * --delta the old pg_control is removed first, for the same reason.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bk_crypto.h"
#include "bk_keys.h"
#include "bk_util.h"
#include "commands.h"
#include "repo.h"
#include "snapshot_catalog.h"
#include "snapshot_data.h"

#define JOBS_DEFAULT        2
#define PREFETCH_DEFAULT    4 /* segments bk wal-get decrypts ahead */
#define JOBS_MAX            64
#define PG_CONTROL          "global/pg_control"
#define PG_CONTROL_TEMP     "global/pg_control.bk-restore"
#define WALDUMP_BATCH       32 /* segments decrypted at a time */
#define OWNER_DEFAULT       "postgres"
#define TABLESPACE_MAPS_MAX 64
#define RESTORE_PATH_MAX    PATH_MAX

static const char *restore_help =
	"Usage: bk restore --source S --pgdata DIR [TARGET] [OPTIONS]\n\n"
	"Rebuilds a PostgreSQL data directory from the newest snapshot that ends "
	"at or\nbefore the target, and configures recovery (restore_command = bk "
	"wal-get) to\nreplay the archived WAL up to the target.\n\n"
	"Target (at most one; none: replay all archived WAL):\n"
	"  --target-time TS      recovery_target_time (\"2026-11-24 05:12:00+00\"; "
	"no\n                        zone: local time)\n"
	"  --target-lsn LSN      recovery_target_lsn\n"
	"  --target-xid XID      recovery_target_xid (found in the WAL with "
	"pg_waldump)\n"
	"  --target-name NAME    recovery_target_name (a restore point)\n"
	"  --target immediate    stop as soon as the snapshot is consistent\n\n"
	"Options:\n"
	"  --source S            source id\n"
	"  --pgdata DIR          directory to restore into (must be empty, or "
	"--delta)\n"
	"  --snapshot ID         restore this snapshot (bk list shows them)\n"
	"  --target-timeline T   latest (default), current, or a timeline id\n"
	"  --tablespace-map OLD=NEW\n"
	"                        restore the tablespace at OLD into NEW "
	"(repeatable)\n"
	"  --delta               reuse a non-empty DIR: rewrite only files whose "
	"content\n                        differs, remove files the snapshot does "
	"not have\n"
	"  --archive             keep archive_mode: this copy becomes the "
	"source's primary\n"
	"  --jobs N              files restored in parallel (default 2)\n"
	"  --owner USER          owner of the restored files (default postgres "
	"when run\n                        as root)\n"
	"  --prefetch N          restore_command prefetches N segments ahead\n"
	"                        (default 4; 0: off)\n\n"
	"Exit status: 0 restored; 1 no snapshot fits the target, or another "
	"failure;\n2 usage; 3 configuration or key; 4 corrupt, tampered or "
	"missing data;\n5 repository unreachable.\n\n" BK_COMMON_HELP;

enum
{
	OPT_SOURCE = OPT_COMMAND_BASE,
	OPT_PGDATA,
	OPT_TARGET_TIME,
	OPT_TARGET_LSN,
	OPT_TARGET_XID,
	OPT_TARGET_NAME,
	OPT_TARGET,
	OPT_SNAPSHOT,
	OPT_TARGET_TIMELINE,
	OPT_TABLESPACE_MAP,
	OPT_DELTA,
	OPT_ARCHIVE,
	OPT_JOBS,
	OPT_OWNER,
	OPT_PREFETCH
};

typedef enum TargetType
{
	TARGET_NONE,
	TARGET_TIME,
	TARGET_LSN,
	TARGET_XID,
	TARGET_NAME,
	TARGET_IMMEDIATE
} TargetType;

typedef struct TablespaceMapping
{
	const char *old_path;
	const char *new_path;
	bool used;
} TablespaceMapping;

/* A tablespace of the restored snapshot, and where it goes. */
typedef struct RestoreTablespace
{
	uint32_t oid;
	char original[RESTORE_PATH_MAX];
	char location[RESTORE_PATH_MAX];
} RestoreTablespace;

/* The SHA-256 of one restored file, for the manifest. */
typedef struct FileResult
{
	uint8_t sha256[BK_SHA256_LEN];
} FileResult;

typedef struct Restore
{
	const char *program;
	/* Options. */
	const char *source;
	const char *pgdata_arg;
	const char *snapshot_id;
	TargetType target;
	const char *target_text;
	int64_t target_us;
	char target_time[64]; /* normalised, with an explicit zone */
	uint64_t target_lsn;
	uint64_t target_xid;
	const char *target_timeline;
	TablespaceMapping maps[TABLESPACE_MAPS_MAX];
	int map_count;
	bool delta;
	bool archive;
	int jobs;
	const char *owner;
	int prefetch;
	BkCommonOptions common;

	/* State. */
	BkCliConfig config;
	BkRepo repo;
	BkKeyring *ring;
	BkDecoder *decoder;
	BkSnapshotCatalog catalog;
	int chosen;
	uint64_t found_lsn; /* where an xid or name target was found */
	BkSnapRecord **chain;
	int chain_len;
	const BkSnapRecord *record; /* chain[chain_len - 1] */
	char pgdata[RESTORE_PATH_MAX];
	RestoreTablespace *tablespaces;
	int tablespace_count;
	bool set_owner;
	uid_t uid;
	gid_t gid;
	FileResult *results; /* parallel to record->files */
	bool wrote_pg_control_temp;

	/* Parallel restore. */
	size_t *work; /* indexes into record->files, largest first */
	size_t work_count;
	atomic_size_t next_work;
	atomic_bool abort;
	pthread_mutex_t error_lock;
	BkError first_error;
	atomic_uint_fast64_t files_written;
	atomic_uint_fast64_t files_kept;
	atomic_uint_fast64_t bytes_written;
	atomic_uint_fast64_t bytes_decrypted;
	atomic_uint_fast64_t hint_bit_mismatches;

	char restore_command[8192];
	json_t *settings; /* recovery settings written */
} Restore;

/* ------------------------------------------------------------ helpers */

static bool
join_path(char *out, size_t out_len, const char *dir, const char *rel,
		  BkError *err)
{
	if ((size_t) snprintf(out, out_len, "%s/%s", dir, rel) >= out_len)
		return bk_error_set(err, BK_ERR_USAGE, "path too long: \"%s/%s\"", dir,
							rel);
	return true;
}

/* Where a path of the record lives: under PGDATA, or in a tablespace. */
static bool
resolve_path(const Restore *r, const char *rel, char *out, size_t out_len,
			 BkError *err)
{
	if (strncmp(rel, "pg_tblspc/", 10) == 0)
	{
		const char *oid_text = rel + 10;
		char *end;
		unsigned long oid = strtoul(oid_text, &end, 10);

		if (end != oid_text && (*end == '/' || *end == '\0'))
			for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
				if (r->tablespaces[spcIdx].oid == oid)
				{
					if (*end == '\0')
						return join_path(out, out_len, r->pgdata, rel, err);
					return join_path(out, out_len,
									 r->tablespaces[spcIdx].location, end + 1,
									 err);
				}
	}
	return join_path(out, out_len, r->pgdata, rel, err);
}

static bool
is_tablespace_link(const Restore *r, const char *rel)
{
	char *end;
	unsigned long oid;

	if (strncmp(rel, "pg_tblspc/", 10) != 0)
		return false;
	oid = strtoul(rel + 10, &end, 10);
	if (end == rel + 10 || *end != '\0')
		return false;
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
		if (r->tablespaces[spcIdx].oid == oid)
			return true;
	return false;
}

/*
 * Files of the snapshot bk restore does not put back: the recovery signal
 * files (a standby.signal from the source would turn point-in-time
 * recovery into a standby; recovery.signal is written afresh).
 */
static bool
skipped_file(const char *path)
{
	return strcmp(path, "standby.signal") == 0 ||
		   strcmp(path, "recovery.signal") == 0;
}

/* Does the record list a file below directory rel?  (files are sorted) */
static bool
record_has_below(const BkSnapRecord *record, const char *rel)
{
	char prefix[RESTORE_PATH_MAX];
	size_t low = 0;
	size_t high = record->file_count;
	size_t prefix_len = (size_t) snprintf(prefix, sizeof(prefix), "%s/", rel);

	while (low < high)
	{
		size_t mid = low + (high - low) / 2;

		if (strcmp(record->files[mid].path, prefix) < 0)
			low = mid + 1;
		else
			high = mid;
	}
	return low < record->file_count &&
		   strncmp(record->files[low].path, prefix, prefix_len) == 0;
}

static int
directory_cmp(const void *a, const void *b)
{
	return strcmp(((const BkSnapDirectory *) a)->path,
				  ((const BkSnapDirectory *) b)->path);
}

/* Does the record list directory rel?  (sorted by create_directories) */
static bool
record_has_directory(const BkSnapRecord *record, const char *rel)
{
	BkSnapDirectory key = {.path = (char *) rel};

	return record->directory_count > 0 &&
		   bsearch(&key, record->directories, record->directory_count,
				   sizeof(key), directory_cmp) != NULL;
}

static bool
set_owner_path(const Restore *r, const char *path, bool follow, BkError *err)
{
	if (!r->set_owner)
		return true;
	if ((follow ? chown(path, r->uid, r->gid) : lchown(path, r->uid, r->gid)) !=
		0)
		return bk_error_set(err, BK_ERR_IO,
							"could not change the owner of \"%s\": %s", path,
							strerror(errno));
	return true;
}

/* True if dir exists and holds anything. */
static bool
dir_not_empty(const char *path)
{
	DIR *dir = opendir(path);
	struct dirent *entry;
	bool found = false;

	if (dir == NULL)
		return false;
	while (!found && (entry = readdir(dir)) != NULL)
		found =
			strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0;
	closedir(dir);
	return found;
}

static bool
write_text_file(const Restore *r, const char *path, const char *text,
				BkError *err)
{
	return bk_write_file_durable(path, text, strlen(text), 0600, err) &&
		   set_owner_path(r, path, false, err);
}

/* ------------------------------------------------------------ options */

static bool
parse_u64(const char *text, uint64_t *value)
{
	char *end;

	if (text == NULL || text[0] < '0' || text[0] > '9')
		return false;
	errno = 0;
	*value = strtoull(text, &end, 10);
	return errno == 0 && *end == '\0';
}

static bool
set_target(Restore *r, TargetType type, const char *text)
{
	if (r->target != TARGET_NONE)
		return false;
	r->target = type;
	r->target_text = text;
	return true;
}

static int
parse_options(Restore *r, int argc, char **argv)
{
	static const struct option options[] = {
		{"source", required_argument, NULL, OPT_SOURCE},
		{"pgdata", required_argument, NULL, OPT_PGDATA},
		{"target-time", required_argument, NULL, OPT_TARGET_TIME},
		{"target-lsn", required_argument, NULL, OPT_TARGET_LSN},
		{"target-xid", required_argument, NULL, OPT_TARGET_XID},
		{"target-name", required_argument, NULL, OPT_TARGET_NAME},
		{"target", required_argument, NULL, OPT_TARGET},
		{"snapshot", required_argument, NULL, OPT_SNAPSHOT},
		{"target-timeline", required_argument, NULL, OPT_TARGET_TIMELINE},
		{"tablespace-map", required_argument, NULL, OPT_TABLESPACE_MAP},
		{"delta", no_argument, NULL, OPT_DELTA},
		{"archive", no_argument, NULL, OPT_ARCHIVE},
		{"jobs", required_argument, NULL, OPT_JOBS},
		{"owner", required_argument, NULL, OPT_OWNER},
		{"prefetch", required_argument, NULL, OPT_PREFETCH},
		BK_COMMON_LONG_OPTIONS,
		{NULL, 0, NULL, 0}};
	const char *program = argv[0];
	bool two_targets = false;
	uint64_t number;
	int code;

	optind = 1;
	opterr = 0;
	while ((code = getopt_long(argc, argv, "", options, NULL)) != -1)
	{
		switch (code)
		{
			case OPT_SOURCE:
				r->source = optarg;
				break;
			case OPT_PGDATA:
				r->pgdata_arg = optarg;
				break;
			case OPT_TARGET_TIME:
				two_targets |= !set_target(r, TARGET_TIME, optarg);
				break;
			case OPT_TARGET_LSN:
				two_targets |= !set_target(r, TARGET_LSN, optarg);
				break;
			case OPT_TARGET_XID:
				two_targets |= !set_target(r, TARGET_XID, optarg);
				break;
			case OPT_TARGET_NAME:
				two_targets |= !set_target(r, TARGET_NAME, optarg);
				break;
			case OPT_TARGET:
				if (strcmp(optarg, "immediate") != 0)
					return bk_cli_usage_error(program,
											  "--target accepts only "
											  "\"immediate\", not \"%s\"",
											  optarg);
				two_targets |= !set_target(r, TARGET_IMMEDIATE, optarg);
				break;
			case OPT_SNAPSHOT:
				r->snapshot_id = optarg;
				break;
			case OPT_TARGET_TIMELINE:
				if (strcmp(optarg, "latest") != 0 &&
					strcmp(optarg, "current") != 0 &&
					(!parse_u64(optarg, &number) || number == 0 ||
					 number > UINT32_MAX))
					return bk_cli_usage_error(
						program,
						"--target-timeline must be latest, current or a "
						"timeline id, not \"%s\"",
						optarg);
				r->target_timeline = optarg;
				break;
			case OPT_TABLESPACE_MAP:
			{
				char *eq = strchr(optarg, '=');

				if (eq == NULL || optarg[0] != '/' || eq[1] != '/' ||
					r->map_count == TABLESPACE_MAPS_MAX)
					return bk_cli_usage_error(
						program,
						"--tablespace-map expects OLD=NEW, two absolute "
						"paths, not \"%s\"",
						optarg);
				*eq = '\0';
				r->maps[r->map_count].old_path = optarg;
				r->maps[r->map_count++].new_path = eq + 1;
				break;
			}
			case OPT_DELTA:
				r->delta = true;
				break;
			case OPT_ARCHIVE:
				r->archive = true;
				break;
			case OPT_JOBS:
				if (!parse_u64(optarg, &number) || number < 1 ||
					number > JOBS_MAX)
					return bk_cli_usage_error(
						program, "--jobs must be from 1 to %d, not \"%s\"",
						JOBS_MAX, optarg);
				r->jobs = (int) number;
				break;
			case OPT_OWNER:
				r->owner = optarg;
				break;
			case OPT_PREFETCH:
				if (!parse_u64(optarg, &number) || number > 1000)
					return bk_cli_usage_error(
						program,
						"--prefetch must be from 0 to 1000, not \"%s\"",
						optarg);
				r->prefetch = (int) number;
				break;
			default:
				if (!bk_common_option(&r->common, code, optarg))
					return bk_cli_bad_option(program, argv[optind - 1]);
		}
	}
	if (r->common.help)
		return -1;
	if (optind < argc)
		return bk_cli_usage_error(program, "unexpected argument \"%s\"",
								  argv[optind]);
	if (two_targets)
		return bk_cli_usage_error(program,
								  "give at most one of --target-time, "
								  "--target-lsn, --target-xid, --target-name "
								  "and --target");
	if (r->source == NULL || r->pgdata_arg == NULL)
		return bk_cli_usage_error(program,
								  "--source and --pgdata are required");
	if (!bk_source_id_valid(r->source, strlen(r->source)))
		return bk_cli_usage_error(program, "invalid source id \"%s\"",
								  r->source);
	switch (r->target)
	{
		case TARGET_TIME:
			if (!bk_parse_timestamp(r->target_text, &r->target_us))
				return bk_cli_usage_error(
					program,
					"--target-time \"%s\" is not a timestamp such as "
					"\"2026-11-24 05:12:00+00\"",
					r->target_text);
			{
				/* Written with an explicit zone, so that PostgreSQL reads the
				 * moment bk chose the snapshot for, whatever its TimeZone. */
				time_t seconds = (time_t) (r->target_us / 1000000);
				struct tm tm;

				gmtime_r(&seconds, &tm);
				snprintf(r->target_time, sizeof(r->target_time),
						 "%04d-%02d-%02d %02d:%02d:%02d.%06d+00",
						 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
						 tm.tm_hour, tm.tm_min, tm.tm_sec,
						 (int) (r->target_us % 1000000));
			}
			break;
		case TARGET_LSN:
			if (!bk_parse_lsn(r->target_text, &r->target_lsn))
				return bk_cli_usage_error(
					program,
					"--target-lsn \"%s\" is not an LSN such as 0/5000028",
					r->target_text);
			break;
		case TARGET_XID:
			if (!parse_u64(r->target_text, &r->target_xid) ||
				(uint32_t) r->target_xid < 3)
				return bk_cli_usage_error(
					program, "--target-xid \"%s\" is not a transaction id",
					r->target_text);
			break;
		case TARGET_NAME:
			if (r->target_text[0] == '\0' || strlen(r->target_text) >= 64)
				return bk_cli_usage_error(
					program,
					"--target-name must be a restore point name of 1 to 63 "
					"bytes");
			break;
		default:
			break;
	}
	if (r->target_timeline == NULL)
		r->target_timeline = "latest";
	return 0;
}

/* ---------------------------------------------------- choosing a snapshot */

static int
restorable_by_stop_cmp(const void *a, const void *b)
{
	const BkSnapshot *x = *(const BkSnapshot *const *) a;
	const BkSnapshot *y = *(const BkSnapshot *const *) b;

	if (x->stop_lsn != y->stop_lsn)
		return x->stop_lsn < y->stop_lsn ? -1 : 1;
	return strcmp(x->id, y->id);
}

static bool
fits_target(const Restore *r, const BkSnapshot *snapshot)
{
	switch (r->target)
	{
		case TARGET_TIME:
			return snapshot->stop_us != BK_TIME_UNKNOWN &&
				   snapshot->stop_us <= r->target_us;
		case TARGET_LSN:
			return snapshot->stop_lsn <= r->target_lsn;
		default:
			return true;
	}
}

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
	char start[32];
	char end[32];
	char tli[16];
	char xid[32];
	const char *argv[16];
	int argc = 0;
	int pipe_fds[2];
	pid_t pid;
	FILE *out;
	char line[4096];
	char wanted[128];
	int status;

	bk_format_lsn(from, start, sizeof(start));
	bk_format_lsn(to, end, sizeof(end));
	snprintf(tli, sizeof(tli), "%" PRIu32, timeline);
	argv[argc++] = waldump;
	argv[argc++] = "--path";
	argv[argc++] = dir;
	argv[argc++] = "--timeline";
	argv[argc++] = tli;
	argv[argc++] = "--start";
	argv[argc++] = start;
	argv[argc++] = "--end";
	argv[argc++] = end;
	if (r->target == TARGET_XID)
	{
		snprintf(xid, sizeof(xid), "%" PRIu32, (uint32_t) r->target_xid);
		argv[argc++] = "--rmgr=Transaction";
		argv[argc++] = "--xid";
		argv[argc++] = xid;
		snprintf(wanted, sizeof(wanted), "rmgr: Transaction ");
	}
	else
	{
		argv[argc++] = "--rmgr=XLOG";
		snprintf(wanted, sizeof(wanted), "desc: RESTORE_POINT %s",
				 r->target_text);
	}
	argv[argc] = NULL;
	if (pipe(pipe_fds) != 0)
		return bk_error_set(err, BK_ERR_IO, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		return bk_error_set(err, BK_ERR_IO, "fork: %s", strerror(errno));
	if (pid == 0)
	{
		int null_fd = open("/dev/null", O_WRONLY);

		dup2(pipe_fds[1], STDOUT_FILENO);
		if (null_fd >= 0)
			dup2(null_fd, STDERR_FILENO);
		close(pipe_fds[0]);
		close(pipe_fds[1]);
		execvp(waldump, (char *const *) argv);
		_exit(127);
	}
	close(pipe_fds[1]);
	out = fdopen(pipe_fds[0], "r");
	while (out != NULL && fgets(line, sizeof(line), out) != NULL)
	{
		const char *lsn_text = strstr(line, "lsn: ");
		const char *match;
		char lsn_buf[32];
		uint64_t lsn;

		line[strcspn(line, "\n")] = '\0';
		match = strstr(line, wanted);
		if (*found || match == NULL || lsn_text == NULL ||
			sscanf(lsn_text + 5, "%31[0-9A-Fa-f/]", lsn_buf) != 1 ||
			!bk_parse_lsn(lsn_buf, &lsn) || lsn < match_from || lsn >= match_to)
			continue;
		if (r->target == TARGET_XID)
		{
			/* "tx:        748, lsn: ..., desc: COMMIT ..." */
			const char *tx = strstr(line, "tx:");
			unsigned long long line_xid;

			if (tx == NULL || sscanf(tx + 3, "%llu", &line_xid) != 1 ||
				line_xid != (uint32_t) r->target_xid ||
				(strstr(line, "desc: COMMIT") == NULL &&
				 strstr(line, "desc: ABORT") == NULL))
				continue;
		}
		else if (strcmp(match, wanted) != 0)
			continue;
		*found = true;
		*found_lsn = lsn;
	}
	if (out != NULL)
		fclose(out);
	else
		close(pipe_fds[0]);
	if (waitpid(pid, &status, 0) < 0)
		return bk_error_set(err, BK_ERR_IO, "waitpid: %s", strerror(errno));
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

/*
 * Search the window [from, to) of timeline for the target's record,
 * WALDUMP_BATCH segments at a time (plus one, for a record that crosses
 * into the next batch), so the temporary space stays bounded.
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
		uint64_t decrypted_end = batch;
		bool gap = false;

		if (batch_last > last)
			batch_last = last;
		for (uint64_t segno = batch; segno <= batch_last + 1; segno++)
		{
			char name[32];
			char object[BK_REPO_PATH_MAX];
			char dest[RESTORE_PATH_MAX];
			struct stat st;

			bk_wal_segment_name(timeline, segno, segment_size, name);
			if (!bk_repo_object_path(&r->repo, r->source, BK_KIND_WAL, name,
									 object, sizeof(object), err) ||
				!join_path(dest, sizeof(dest), tmp_dir, name, err))
				return false;
			if (stat(object, &st) != 0)
			{
				gap = segno <= batch_last;
				break;
			}
			if (!bk_repo_decrypt_to_file(object, r->decoder, r->source,
										 BK_KIND_WAL, name, dest, NULL, err))
				return bk_error_prefix(err, "WAL file \"%s\": ", name);
			decrypted_end = segno + 1;
		}
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
		for (uint64_t segno = batch; segno < decrypted_end; segno++)
		{
			char name[32];
			char dest[RESTORE_PATH_MAX];

			bk_wal_segment_name(timeline, segno, segment_size, name);
			if (join_path(dest, sizeof(dest), tmp_dir, name, err))
				unlink(dest);
		}
		if (gap)
			break;
	}
	return true;
}

/* Find which snapshot an xid or restore point name needs. */
static bool
locate_in_wal(Restore *r, BkSnapshot **restorable, int count, BkError *err)
{
	char waldump[RESTORE_PATH_MAX];
	char tmp_dir[RESTORE_PATH_MAX];
	const char *tmp_root = getenv("TMPDIR");
	bool found = false;
	bool ok = true;

	if (r->catalog.wal.segment_size == 0)
		return bk_error_set(err, BK_ERR_NOT_FOUND,
							"source \"%s\" has no archived WAL to search",
							r->source);
	find_pg_waldump(waldump, sizeof(waldump));
	snprintf(tmp_dir, sizeof(tmp_dir), "%s/bk-restore-waldump.XXXXXX",
			 tmp_root && tmp_root[0] ? tmp_root : "/tmp");
	if (mkdtemp(tmp_dir) == NULL)
		return bk_error_set(err, BK_ERR_IO,
							"could not create a temporary directory: %s",
							strerror(errno));
	if (!r->common.json)
		fprintf(stderr,
				"%s: searching the archived WAL for %s \"%s\" with "
				"pg_waldump\n",
				r->program,
				r->target == TARGET_XID ? "the commit of transaction"
										: "the restore point",
				r->target_text);
	for (int windowIdx = count - 1; windowIdx >= 0 && !found; windowIdx--)
	{
		BkSnapshot *snapshot = restorable[windowIdx];
		uint64_t from = snapshot->stop_lsn;
		uint64_t to = 0;

		if (windowIdx < count - 1)
			to = restorable[windowIdx + 1]->stop_lsn;
		else
			for (int tlIdx = 0; tlIdx < r->catalog.wal.timeline_count; tlIdx++)
				if (r->catalog.wal.timelines[tlIdx].timeline ==
					snapshot->timeline)
					to = (r->catalog.wal.timelines[tlIdx].last_segno + 1) *
						 (uint64_t) r->catalog.wal.segment_size;
		if (to <= from)
			continue;
		if (!search_window(r, waldump, tmp_dir, snapshot->timeline, from, to,
						   &found, &r->found_lsn, err))
		{
			ok = false;
			break;
		}
		if (found)
			r->chosen = (int) (snapshot - r->catalog.snapshots);
	}
	bk_remove_tree(tmp_dir, NULL);
	if (!ok)
		return false;
	if (!found)
	{
		char oldest[32];

		bk_format_lsn(restorable[0]->stop_lsn, oldest, sizeof(oldest));
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "%s \"%s\" is not in the archived WAL of source \"%s\" "
					 "after the oldest restorable snapshot (%s, stop %s)",
					 r->target == TARGET_XID
						 ? "the commit or abort record of transaction"
						 : "a restore point named",
					 r->target_text, r->source, restorable[0]->id, oldest);
		return bk_error_hint(err, "Name the snapshot to restore from with "
								  "--snapshot ID (\"bk list\" shows them); "
								  "recovery then stops at the target if it "
								  "comes after that snapshot.");
	}
	return true;
}

static bool
choose_snapshot(Restore *r, BkError *err)
{
	BkSnapshotCatalog *catalog = &r->catalog;
	BkSnapshot **restorable;
	int count = 0;

	if (catalog->count == 0)
		return bk_error_set(err, BK_ERR_NOT_FOUND,
							"the repository holds no snapshot of source \"%s\"",
							r->source);
	if (r->snapshot_id != NULL)
	{
		BkSnapshot *snapshot;

		r->chosen = bk_snapshot_catalog_find(catalog, r->snapshot_id);
		if (r->chosen < 0)
			return bk_error_set(err, BK_ERR_NOT_FOUND,
								"source \"%s\" has no snapshot \"%s\"",
								r->source, r->snapshot_id);
		snapshot = &catalog->snapshots[r->chosen];
		if (!snapshot->restorable)
			return bk_error_set(
				err, BK_ERR_NOT_FOUND, "snapshot %s is not restorable: %s: %s",
				snapshot->id, bk_snapshot_problem_name(snapshot->problem),
				snapshot->reason);
		if (!fits_target(r, snapshot))
		{
			bk_error_set(err, BK_ERR_NOT_FOUND,
						 "snapshot %s ends (%s, %s) after the target %s: "
						 "recovery from it cannot stop there",
						 snapshot->id, snapshot->stop_time,
						 r->target == TARGET_LSN ? "stop LSN" : "stop time",
						 r->target_text);
			return bk_error_hint(err, "Choose an older snapshot, or leave "
									  "out --snapshot.");
		}
		return true;
	}

	restorable = calloc((size_t) catalog->count, sizeof(*restorable));
	if (restorable == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	for (int snapIdx = 0; snapIdx < catalog->count; snapIdx++)
		if (catalog->snapshots[snapIdx].restorable)
			restorable[count++] = &catalog->snapshots[snapIdx];
	if (count == 0)
	{
		free(restorable);
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "source \"%s\" has %d snapshot%s, none of them "
					 "restorable",
					 r->source, catalog->count, catalog->count == 1 ? "" : "s");
		return bk_error_hint(err, "\"bk list --source %s\" says why.",
							 r->source);
	}
	qsort(restorable, (size_t) count, sizeof(*restorable),
		  restorable_by_stop_cmp);
	r->chosen = -1;
	if (r->target == TARGET_XID || r->target == TARGET_NAME)
	{
		bool ok = locate_in_wal(r, restorable, count, err);

		free(restorable);
		return ok;
	}
	for (int snapIdx = count - 1; snapIdx >= 0; snapIdx--)
		if (fits_target(r, restorable[snapIdx]))
		{
			r->chosen = (int) (restorable[snapIdx] - catalog->snapshots);
			break;
		}
	if (r->chosen < 0)
	{
		char oldest_lsn[32];

		bk_format_lsn(restorable[0]->stop_lsn, oldest_lsn, sizeof(oldest_lsn));
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "no restorable snapshot of source \"%s\" ends at or "
					 "before the target %s; the oldest ends at %s (%s)",
					 r->source, r->target_text, restorable[0]->stop_time,
					 oldest_lsn);
		bk_error_hint(err, "The archive cannot restore a moment before its "
						   "oldest snapshot's stop point.");
	}
	free(restorable);
	return r->chosen >= 0;
}

/* The "created" time of a WAL segment (when the source read it), or false. */
static bool
segment_created_us(const Restore *r, uint32_t timeline, uint64_t segno,
				   int64_t *us)
{
	char name[32];
	char path[BK_REPO_PATH_MAX];
	char value[64];
	BkObjectIdentity identity;
	BkObjectTracker *object = malloc(sizeof(*object));
	BkError err;
	bool ok;

	if (object == NULL)
		return false;
	bk_wal_segment_name(timeline, segno, r->catalog.wal.segment_size, name);
	ok = bk_repo_object_path(&r->repo, r->source, BK_KIND_WAL, name, path,
							 sizeof(path), &err) &&
		 bk_repo_object_identity(path, &identity, object, &err) &&
		 bk_meta_get(object->meta, object->meta_len, "created", value,
					 sizeof(value)) &&
		 bk_parse_timestamp(value, us);
	free(object);
	return ok;
}

/*
 * check_wal_path
 *		Every WAL segment recovery will need, from the snapshot's start to
 *		the target, following the timelines' branch points (the history
 *		files), is in the archive; else refuse, naming the first missing
 *		file, before anything is written.  Recovery would otherwise stop at
 *		the gap (bk wal-get makes it fatal) after a long restore.
 */
static bool
check_wal_path(Restore *r, BkError *err)
{
	const BkSnapshot *snapshot = &r->catalog.snapshots[r->chosen];
	const BkWalCatalog *wal = &r->catalog.wal;
	uint32_t to_timeline;
	uint64_t to_segno = BK_WAL_END;
	BkWalPath path;
	char lsn[BK_LSN_TEXT_SIZE];

	if (wal->segment_size == 0)
		return true; /* no WAL: the snapshot was not restorable anyway */
	if (strcmp(r->target_timeline, "latest") == 0)
		to_timeline = bk_wal_latest_timeline(wal);
	else if (strcmp(r->target_timeline, "current") == 0)
		to_timeline = snapshot->timeline;
	else
		to_timeline = (uint32_t) strtoul(r->target_timeline, NULL, 10);
	switch (r->target)
	{
		case TARGET_LSN:
			to_segno = bk_lsn_segno(r->target_lsn, wal->segment_size);
			break;
		case TARGET_XID:
		case TARGET_NAME:
			/* Found by pg_waldump; with --snapshot it was not searched for,
			 * and only the snapshot's own WAL is known to be needed. */
			to_segno = bk_lsn_segno(r->found_lsn ? r->found_lsn
												 : snapshot->stop_lsn - 1,
									wal->segment_size);
			break;
		case TARGET_IMMEDIATE:
			to_segno = bk_lsn_segno(snapshot->stop_lsn - 1, wal->segment_size);
			to_timeline = snapshot->timeline;
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
	if (path.missing == 0)
		return true;
	/*
	 * A time target may come before the gap: recovery stops at the first
	 * commit after it and never asks for the missing file.  Only when the
	 * source read the segment before the gap after the target time can that
	 * be; otherwise the target lies beyond the gap.
	 */
	if (r->target == TARGET_TIME && path.first_missing_segno > 0)
	{
		int64_t created_us;

		if (segment_created_us(r, path.first_missing_timeline,
							   path.first_missing_segno - 1, &created_us) &&
			created_us > r->target_us)
		{
			fprintf(stderr,
					"%s: WARNING: WAL file %s is missing from the archive, "
					"after the target time: recovery must reach the target "
					"before it\n",
					r->program, path.first_missing);
			return true;
		}
	}
	bk_format_lsn(snapshot->start_lsn, lsn, sizeof(lsn));
	bk_error_set(err, BK_ERR_SEQUENCE,
				 "WAL file %s is missing from the archive of source \"%s\" "
				 "(%" PRIu64 " segment%s missing): recovery from snapshot %s "
				 "(start %s, timeline %" PRIu32 ") to the target on timeline "
				 "%" PRIu32 " needs it",
				 path.first_missing, r->source, path.missing,
				 path.missing == 1 ? "" : "s", snapshot->id, lsn,
				 snapshot->timeline, to_timeline);
	return bk_error_hint(err,
						 "Choose a target before the gap, or put the "
						 "missing WAL back; \"bk list --source %s\" and "
						 "\"bk verify\" show what is missing.",
						 r->source);
}

/* Decrypt the records of the chain, full first. */
static bool
load_chain(Restore *r, BkError *err)
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

		if (!bk_snapshot_record_load(&r->repo, r->decoder, r->source,
									 snapshot->id, &record, err))
			return false;
		r->chain[slot] = record;
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

/* ------------------------------------------------------------ preparing */

/* Parse a tablespace_map ("<oid> <path>" lines, '\' escapes). */
static bool
parse_tablespace_map(Restore *r, const char *text, BkError *err)
{
	const char *line = text;

	while (*line != '\0')
	{
		char path[RESTORE_PATH_MAX];
		size_t used = 0;
		char *end;
		unsigned long oid = strtoul(line, &end, 10);
		const char *p;
		bool known = false;

		if (end == line || *end != ' ')
			return bk_error_set(err, BK_ERR_FORMAT,
								"snapshot %s: malformed tablespace_map line",
								r->record->id);
		for (p = end + 1; *p != '\0' && *p != '\n' && *p != '\r'; p++)
		{
			if (*p == '\\' && (p[1] == '\n' || p[1] == '\r' || p[1] == '\\'))
				p++;
			if (used + 1 < sizeof(path))
				path[used++] = *p;
		}
		path[used] = '\0';
		while (*p == '\n' || *p == '\r')
			p++;
		line = p;
		for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
			known |= r->tablespaces[spcIdx].oid == oid;
		if (!known)
		{
			RestoreTablespace *spc = &r->tablespaces[r->tablespace_count++];

			spc->oid = (uint32_t) oid;
			bk_strlcpy(spc->original, path, sizeof(spc->original));
		}
	}
	return true;
}

static bool
plan_tablespaces(Restore *r, BkError *err)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	char *map_text = NULL;
	size_t map_len;
	size_t capacity;

	snprintf(name, sizeof(name), "%s/%s", r->record->id, BK_SNAPSHOT_MAP);
	if (!bk_snapshot_read_small(&r->repo, r->decoder, r->source, name,
								1024 * 1024, &map_text, &map_len, err))
		return bk_error_prefix(err, "snapshot %s: ", r->record->id);
	capacity = r->record->tablespace_count + map_len / 2 + 1;
	r->tablespaces = calloc(capacity, sizeof(*r->tablespaces));
	if (r->tablespaces == NULL)
	{
		free(map_text);
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	for (size_t spcIdx = 0; spcIdx < r->record->tablespace_count; spcIdx++)
	{
		RestoreTablespace *spc = &r->tablespaces[r->tablespace_count++];

		spc->oid = r->record->tablespaces[spcIdx].oid;
		bk_strlcpy(spc->original, r->record->tablespaces[spcIdx].path,
				   sizeof(spc->original));
	}
	if (!parse_tablespace_map(r, map_text, err))
	{
		free(map_text);
		return false;
	}
	free(map_text);
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		RestoreTablespace *spc = &r->tablespaces[spcIdx];

		bk_strlcpy(spc->location, spc->original, sizeof(spc->location));
		for (int mapIdx = 0; mapIdx < r->map_count; mapIdx++)
			if (strcmp(r->maps[mapIdx].old_path, spc->original) == 0)
			{
				bk_strlcpy(spc->location, r->maps[mapIdx].new_path,
						   sizeof(spc->location));
				r->maps[mapIdx].used = true;
			}
	}
	for (int mapIdx = 0; mapIdx < r->map_count; mapIdx++)
		if (!r->maps[mapIdx].used)
		{
			bk_error_set(err, BK_ERR_USAGE,
						 "--tablespace-map %s=%s: snapshot %s has no "
						 "tablespace at %s",
						 r->maps[mapIdx].old_path, r->maps[mapIdx].new_path,
						 r->record->id, r->maps[mapIdx].old_path);
			if (r->tablespace_count > 0)
				bk_error_hint(err, "Its tablespaces are at: %s%s",
							  r->tablespaces[0].original,
							  r->tablespace_count > 1 ? " and others" : "");
			return false;
		}
	return true;
}

/* A postmaster.pid naming a live process means a server uses the directory. */
static bool
check_no_server(const char *pgdata, BkError *err)
{
	char path[RESTORE_PATH_MAX];
	char *text = NULL;
	size_t len;
	long pid;

	if (!join_path(path, sizeof(path), pgdata, "postmaster.pid", err))
		return false;
	if (!bk_read_file(path, 4096, &text, &len, NULL))
		return true;
	pid = strtol(text, NULL, 10);
	free(text);
	if (pid > 0 && (kill((pid_t) pid, 0) == 0 || errno == EPERM))
	{
		bk_error_set(err, BK_ERR_USAGE,
					 "a PostgreSQL server (pid %ld) is running in \"%s\"", pid,
					 pgdata);
		return bk_error_hint(err, "Stop it before restoring into its data "
								  "directory.");
	}
	return true;
}

/* Refuse what must be refused before anything is created. */
static bool
check_targets(Restore *r, BkError *err)
{
	struct stat st;

	if (stat(r->pgdata_arg, &st) == 0)
	{
		if (!S_ISDIR(st.st_mode))
			return bk_error_set(err, BK_ERR_USAGE,
								"--pgdata \"%s\" is not a directory",
								r->pgdata_arg);
		if (!check_no_server(r->pgdata_arg, err))
			return false;
		if (dir_not_empty(r->pgdata_arg) && !r->delta)
		{
			bk_error_set(err, BK_ERR_USAGE,
						 "the target directory \"%s\" is not empty",
						 r->pgdata_arg);
			return bk_error_hint(err,
								 "Restore into an empty directory, or pass "
								 "--delta to reuse this one (files that "
								 "differ are rewritten, files the snapshot "
								 "does not have are removed).");
		}
	}
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		RestoreTablespace *spc = &r->tablespaces[spcIdx];

		if (spc->location[0] != '/')
			return bk_error_set(err, BK_ERR_USAGE,
								"tablespace %" PRIu32 " has no absolute "
								"location (\"%s\")",
								spc->oid, spc->location);
		if (stat(spc->location, &st) != 0)
			continue;
		if (!S_ISDIR(st.st_mode))
			return bk_error_set(err, BK_ERR_USAGE,
								"tablespace location \"%s\" is not a "
								"directory",
								spc->location);
		if (dir_not_empty(spc->location) && !r->delta)
		{
			bk_error_set(err, BK_ERR_USAGE,
						 "the location \"%s\" of tablespace %" PRIu32
						 " is not empty",
						 spc->location, spc->oid);
			return bk_error_hint(err,
								 "Restore it elsewhere with --tablespace-map "
								 "%s=NEW, or pass --delta to reuse it.",
								 spc->original);
		}
	}
	return true;
}

static bool
prepare_target(Restore *r, BkError *err)
{
	char path[RESTORE_PATH_MAX];

	if (!bk_mkdirs(r->pgdata_arg, 0700, false, err))
		return false;
	if (realpath(r->pgdata_arg, r->pgdata) == NULL)
		return bk_error_set(err, BK_ERR_IO, "could not resolve \"%s\": %s",
							r->pgdata_arg, strerror(errno));
	if (chmod(r->pgdata, 0700) != 0)
		return bk_error_set(err, BK_ERR_IO, "could not set mode of \"%s\": %s",
							r->pgdata, strerror(errno));
	if (!set_owner_path(r, r->pgdata, true, err))
		return false;

	/* A half-restored directory must not start: pg_control goes first. */
	if (r->delta)
	{
		char global_dir[RESTORE_PATH_MAX];

		if (!join_path(path, sizeof(path), r->pgdata, PG_CONTROL, err) ||
			!join_path(global_dir, sizeof(global_dir), r->pgdata, "global",
					   err))
			return false;
		if (unlink(path) == 0 && !bk_fsync_dir(global_dir, err))
			return false;
	}

	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		RestoreTablespace *spc = &r->tablespaces[spcIdx];
		size_t pgdata_len = strlen(r->pgdata);

		if (strncmp(spc->location, r->pgdata, pgdata_len) == 0 &&
			(spc->location[pgdata_len] == '/' ||
			 spc->location[pgdata_len] == '\0'))
			return bk_error_set(err, BK_ERR_USAGE,
								"tablespace %" PRIu32 " would be restored to "
								"\"%s\", inside the data directory",
								spc->oid, spc->location);
		if (!bk_mkdirs(spc->location, 0700, false, err))
			return false;
		if (chmod(spc->location, 0700) != 0)
			return bk_error_set(err, BK_ERR_IO,
								"could not set mode of \"%s\": %s",
								spc->location, strerror(errno));
		if (!set_owner_path(r, spc->location, true, err))
			return false;
	}
	return true;
}

/* Every recorded directory, with its mode; tablespaces as symlinks. */
static bool
create_directories(Restore *r, BkError *err)
{
	BkSnapRecord *record = r->chain[r->chain_len - 1];
	char path[RESTORE_PATH_MAX];
	char link_path[RESTORE_PATH_MAX];

	qsort(record->directories, record->directory_count, sizeof(BkSnapDirectory),
		  directory_cmp);
	if (!join_path(path, sizeof(path), r->pgdata, "pg_tblspc", err) ||
		!bk_mkdirs(path, 0700, false, err) ||
		!set_owner_path(r, path, true, err))
		return false;
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		char target[RESTORE_PATH_MAX];
		ssize_t len;
		struct stat st;

		snprintf(link_path, sizeof(link_path), "%s/pg_tblspc/%" PRIu32,
				 r->pgdata, r->tablespaces[spcIdx].oid);
		len = readlink(link_path, target, sizeof(target) - 1);
		if (len >= 0)
		{
			target[len] = '\0';
			if (strcmp(target, r->tablespaces[spcIdx].location) == 0)
				continue;
		}
		if (lstat(link_path, &st) == 0 && !bk_remove_tree(link_path, err))
			return false;
		if (symlink(r->tablespaces[spcIdx].location, link_path) != 0)
			return bk_error_set(err, BK_ERR_IO,
								"could not create symbolic link \"%s\": %s",
								link_path, strerror(errno));
		if (!set_owner_path(r, link_path, false, err))
			return false;
	}
	for (size_t dirIdx = 0; dirIdx < record->directory_count; dirIdx++)
	{
		const BkSnapDirectory *dir = &record->directories[dirIdx];
		struct stat st;

		if (is_tablespace_link(r, dir->path))
			continue;
		if (!resolve_path(r, dir->path, path, sizeof(path), err))
			return false;
		if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode))
		{
			if (!r->delta)
				return bk_error_set(err, BK_ERR_IO,
									"\"%s\" exists and is not a directory",
									path);
			if (!bk_remove_tree(path, err))
				return false;
		}
		if (!bk_mkdirs(path, 0700, false, err))
			return false;
		if (chmod(path, dir->mode) != 0)
			return bk_error_set(err, BK_ERR_IO,
								"could not set mode of \"%s\": %s", path,
								strerror(errno));
		if (!set_owner_path(r, path, true, err))
			return false;
	}
	/* Parents of files the record lists without their directory. */
	for (size_t fileIdx = 0; fileIdx < record->file_count; fileIdx++)
	{
		char *slash;
		struct stat st;

		if (!resolve_path(r, record->files[fileIdx].path, path, sizeof(path),
						  err))
			return false;
		slash = strrchr(path, '/');
		*slash = '\0';
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			continue;
		if (!bk_mkdirs(path, 0700, false, err) ||
			!set_owner_path(r, path, true, err))
			return false;
	}
	return true;
}

/* --delta: remove what the snapshot does not have. */
static bool
remove_extra(Restore *r, const char *dir_path, const char *rel_dir,
			 uint64_t *removed, BkError *err)
{
	DIR *dir = opendir(dir_path);
	struct dirent *entry;
	bool ok = true;

	if (dir == NULL)
		return bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s",
							dir_path, strerror(errno));
	while (ok && (entry = readdir(dir)) != NULL)
	{
		char path[RESTORE_PATH_MAX];
		char rel[RESTORE_PATH_MAX];
		struct stat st;
		bool keep = false;

		if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
			continue;
		if (!join_path(path, sizeof(path), dir_path, entry->d_name, err))
		{
			ok = false;
			break;
		}
		if (rel_dir[0] == '\0')
			bk_strlcpy(rel, entry->d_name, sizeof(rel));
		else if (!join_path(rel, sizeof(rel), rel_dir, entry->d_name, err))
		{
			ok = false;
			break;
		}
		if (lstat(path, &st) != 0)
			continue;
		if (is_tablespace_link(r, rel))
		{
			for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
				if (strtoul(rel + 10, NULL, 10) == r->tablespaces[spcIdx].oid)
					ok = remove_extra(r, r->tablespaces[spcIdx].location, rel,
									  removed, err);
			continue;
		}
		if (S_ISDIR(st.st_mode))
		{
			keep = record_has_directory(r->record, rel) ||
				   record_has_below(r->record, rel);
			if (keep)
				ok = remove_extra(r, path, rel, removed, err);
			else
			{
				ok = bk_remove_tree(path, err);
				(*removed)++;
			}
			continue;
		}
		keep = S_ISREG(st.st_mode) && !skipped_file(rel) &&
			   (bk_snapshot_record_file(r->record, rel) != NULL ||
				strcmp(rel, PG_CONTROL_TEMP) == 0);
		if (!keep)
		{
			ok = bk_remove_tree(path, err);
			(*removed)++;
		}
	}
	closedir(dir);
	return ok;
}

/* ------------------------------------------------------- the files */

static int
work_cmp(const void *a, const void *b, void *arg)
{
	const BkSnapRecord *record = arg;
	uint64_t x = record->files[*(const size_t *) a].size;
	uint64_t y = record->files[*(const size_t *) b].size;

	return x == y ? 0 : (x > y ? -1 : 1);
}

static bool
digest_equal(const uint8_t *a, const uint8_t *b)
{
	return memcmp(a, b, BK_SHA256_LEN) == 0;
}

/* Restore one file of the record. */
static bool
restore_file(Restore *r, BkDecoder *decoder, size_t file_index, BkError *err)
{
	const BkSnapFile *file = &r->record->files[file_index];
	FileResult *result = &r->results[file_index];
	char path[RESTORE_PATH_MAX];
	char write_path[RESTORE_PATH_MAX];
	struct timespec times[2];
	struct stat st;
	uint64_t decrypted = 0;
	bool pg_control = strcmp(file->path, PG_CONTROL) == 0;
	int fd;

	if (!resolve_path(r, file->path, path, sizeof(path), err) ||
		!resolve_path(r, pg_control ? PG_CONTROL_TEMP : file->path, write_path,
					  sizeof(write_path), err))
		return false;
	if (lstat(write_path, &st) == 0 && !S_ISREG(st.st_mode) &&
		!bk_remove_tree(write_path, err))
		return false;

	/* --delta: a file that already has the recorded content stays. */
	if (r->delta && !pg_control && file->has_sha256 && lstat(path, &st) == 0 &&
		S_ISREG(st.st_mode) && (uint64_t) st.st_size == file->size)
	{
		uint8_t existing[BK_SHA256_LEN];
		BkError hash_err; /* unreadable: rewritten below */

		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0 && bk_sha256_fd(fd, path, existing, &hash_err) &&
			digest_equal(existing, file->sha256))
		{
			close(fd);
			memcpy(result->sha256, existing, BK_SHA256_LEN);
			times[0].tv_sec = times[1].tv_sec = (time_t) file->mtime;
			times[0].tv_nsec = times[1].tv_nsec = 0;
			if (chmod(path, file->mode) != 0 ||
				utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) != 0)
				return bk_error_set(err, BK_ERR_IO,
									"could not set mode or time of \"%s\": %s",
									path, strerror(errno));
			atomic_fetch_add(&r->files_kept, 1);
			return set_owner_path(r, path, false, err);
		}
		if (fd >= 0)
			close(fd);
	}

	fd = open(write_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
			  0600);
	if (fd < 0)
		return bk_error_set(err, BK_ERR_IO, "could not create \"%s\": %s",
							write_path, strerror(errno));
	if (!bk_snapshot_rebuild_file(&r->repo, decoder, r->source, r->chain,
								  r->chain_len, file, fd, write_path,
								  result->sha256, &decrypted, err))
		goto failed;
	if (file->has_sha256 && !digest_equal(result->sha256, file->sha256))
	{
		if (!file->incremental || r->record->data_checksums ||
			r->record->page_digests)
		{
			bk_error_set(err, BK_ERR_FORMAT,
						 "snapshot %s, file \"%s\": the restored file's "
						 "SHA-256 differs from the one the snapshot recorded",
						 r->record->id, file->path);
			goto failed;
		}
		/* A snapshot taken before bk compared page digests, on a cluster
		 * without data checksums: hint-bit changes left the page LSN
		 * alone, so its pages were not sent, and the rebuilt file may
		 * differ in hint bits. */
		atomic_fetch_add(&r->hint_bit_mismatches, 1);
	}
	times[0].tv_sec = times[1].tv_sec = (time_t) file->mtime;
	times[0].tv_nsec = times[1].tv_nsec = 0;
	if (fchmod(fd, file->mode) != 0 || futimens(fd, times) != 0 ||
		(r->set_owner && fchown(fd, r->uid, r->gid) != 0))
	{
		bk_error_set(err, BK_ERR_IO,
					 "could not set mode, time or owner of \"%s\": %s",
					 write_path, strerror(errno));
		goto failed;
	}
	if (fsync(fd) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not fsync \"%s\": %s", write_path,
					 strerror(errno));
		goto failed;
	}
	if (close(fd) != 0)
		return bk_error_set(err, BK_ERR_IO, "could not write \"%s\": %s",
							write_path, strerror(errno));
	atomic_fetch_add(&r->files_written, 1);
	atomic_fetch_add(&r->bytes_written, file->size);
	atomic_fetch_add(&r->bytes_decrypted, decrypted);
	return true;

failed:
	close(fd);
	return false;
}

static void *
restore_worker(void *arg)
{
	Restore *r = arg;
	BkError err;
	BkDecoder *decoder;
	bool failed = false;

	bk_error_clear(&err);
	decoder = bk_decoder_new(r->ring, &err);
	failed = decoder == NULL;
	while (!failed)
	{
		size_t slot = atomic_fetch_add(&r->next_work, 1);

		if (slot >= r->work_count || atomic_load(&r->abort))
			break;
		failed = !restore_file(r, decoder, r->work[slot], &err);
	}
	if (failed)
	{
		pthread_mutex_lock(&r->error_lock);
		if (r->first_error.code == BK_OK)
			r->first_error = err;
		pthread_mutex_unlock(&r->error_lock);
		atomic_store(&r->abort, true);
	}
	bk_decoder_free(decoder);
	return NULL;
}

static bool
restore_files(Restore *r, BkError *err)
{
	pthread_t threads[JOBS_MAX];
	int started = 0;

	r->results = calloc(r->record->file_count + 1, sizeof(FileResult));
	r->work = calloc(r->record->file_count + 1, sizeof(size_t));
	if (r->results == NULL || r->work == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	for (size_t fileIdx = 0; fileIdx < r->record->file_count; fileIdx++)
		if (!skipped_file(r->record->files[fileIdx].path))
			r->work[r->work_count++] = fileIdx;
	qsort_r(r->work, r->work_count, sizeof(size_t), work_cmp,
			(void *) r->record);
	atomic_init(&r->next_work, 0);
	atomic_init(&r->abort, false);
	pthread_mutex_init(&r->error_lock, NULL);
	bk_error_clear(&r->first_error);
	r->wrote_pg_control_temp = true;
	for (int jobIdx = 0; jobIdx < r->jobs; jobIdx++)
	{
		int failure = pthread_create(&threads[jobIdx], NULL, restore_worker, r);

		if (failure != 0)
		{
			pthread_mutex_lock(&r->error_lock);
			if (r->first_error.code == BK_OK)
				bk_error_set(&r->first_error, BK_ERR_INTERNAL,
							 "could not start a restore thread: %s",
							 strerror(failure));
			pthread_mutex_unlock(&r->error_lock);
			atomic_store(&r->abort, true);
			break;
		}
		started++;
	}
	for (int jobIdx = 0; jobIdx < started; jobIdx++)
		pthread_join(threads[jobIdx], NULL);
	pthread_mutex_destroy(&r->error_lock);
	if (r->first_error.code != BK_OK)
	{
		*err = r->first_error;
		return false;
	}
	return true;
}

/* ------------------------------------------------- recovery settings */

/* Quote for a POSIX shell: '...' with ' written '\''. */
static void
shell_quote(const char *arg, char *out, size_t out_len)
{
	size_t used = 0;
	bool plain = arg[0] != '\0';

	for (const char *p = arg; *p && plain; p++)
		plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
				(*p >= '0' && *p <= '9') || strchr("/._-=:+,@", *p) != NULL;
	if (plain)
	{
		bk_strlcpy(out, arg, out_len);
		return;
	}
	out[used++] = '\'';
	for (const char *p = arg; *p && used + 5 < out_len; p++)
	{
		if (*p == '\'')
		{
			memcpy(out + used, "'\\''", 4);
			used += 4;
		}
		else
			out[used++] = *p;
	}
	out[used++] = '\'';
	out[used] = '\0';
}

/* Append one argument of restore_command: shell-quoted, '%' doubled. */
static void
append_arg(char *command, size_t size, const char *arg)
{
	char quoted[RESTORE_PATH_MAX * 2];
	size_t used = strlen(command);

	shell_quote(arg, quoted, sizeof(quoted));
	if (used > 0 && used + 1 < size)
		command[used++] = ' ';
	for (const char *p = quoted; *p && used + 2 < size; p++)
	{
		if (*p == '%')
			command[used++] = '%';
		command[used++] = *p;
	}
	command[used] = '\0';
}

/* A PostgreSQL configuration string literal: '...' with ' and \ doubled. */
static void
conf_quote(const char *value, char *out, size_t out_len)
{
	size_t used = 0;

	out[used++] = '\'';
	for (const char *p = value; *p && used + 3 < out_len; p++)
	{
		if (*p == '\'' || *p == '\\')
			out[used++] = *p;
		out[used++] = *p;
	}
	out[used++] = '\'';
	out[used] = '\0';
}

static bool
absolute(const char *path, char *out, size_t out_len, BkError *err)
{
	if (realpath(path, out) == NULL)
		return bk_error_set(err, BK_ERR_CONFIG, "could not resolve \"%s\": %s",
							path, strerror(errno));
	(void) out_len;
	return true;
}

static bool
build_restore_command(Restore *r, BkError *err)
{
	char self[RESTORE_PATH_MAX];
	char path[RESTORE_PATH_MAX];
	char number[16];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *command = r->restore_command;
	size_t size = sizeof(r->restore_command);

	if (len <= 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not find the path of this bk program: %s",
							strerror(errno));
	self[len] = '\0';
	command[0] = '\0';
	append_arg(command, size, self);
	append_arg(command, size, "wal-get");
	if (r->config.config_path != NULL)
	{
		if (!absolute(r->config.config_path, path, sizeof(path), err))
			return false;
		append_arg(command, size, "--config");
		append_arg(command, size, path);
	}
	append_arg(command, size, "--source");
	append_arg(command, size, r->source);
	if (r->common.repository != NULL)
	{
		if (!absolute(r->common.repository, path, sizeof(path), err))
			return false;
		append_arg(command, size, "--repo");
		append_arg(command, size, path);
	}
	if (r->common.key_file != NULL)
	{
		if (!absolute(r->common.key_file, path, sizeof(path), err))
			return false;
		append_arg(command, size, "--key-file");
		append_arg(command, size, path);
	}
	if (r->prefetch > 0)
	{
		snprintf(number, sizeof(number), "%d", r->prefetch);
		append_arg(command, size, "--prefetch");
		append_arg(command, size, number);
	}
	if (strlen(command) + 8 >= size)
		return bk_error_set(err, BK_ERR_USAGE, "restore_command too long");
	strcat(command, " %f %p");
	return true;
}

static const char *const managed_settings[] = {"restore_command",
											   "recovery_target",
											   "recovery_target_time",
											   "recovery_target_lsn",
											   "recovery_target_xid",
											   "recovery_target_name",
											   "recovery_target_timeline",
											   "recovery_target_action",
											   "recovery_target_inclusive",
											   "archive_mode",
											   NULL};

static bool
managed_line(const char *line, size_t len)
{
	size_t key_len;

	while (len > 0 && (*line == ' ' || *line == '\t'))
	{
		line++;
		len--;
	}
	for (key_len = 0; key_len < len && line[key_len] != '=' &&
					  line[key_len] != ' ' && line[key_len] != '\t';
		 key_len++)
		;
	for (int keyIdx = 0; managed_settings[keyIdx] != NULL; keyIdx++)
		if (strlen(managed_settings[keyIdx]) == key_len &&
			strncasecmp(line, managed_settings[keyIdx], key_len) == 0)
			return true;
	return false;
}

static void
add_setting(Restore *r, char *text, size_t size, const char *key,
			const char *value)
{
	char quoted[sizeof(r->restore_command) * 2 + 8];
	size_t used = strlen(text);

	conf_quote(value, quoted, sizeof(quoted));
	snprintf(text + used, size - used, "%s = %s\n", key, quoted);
	json_object_set_new(r->settings, key, json_string(value));
}

/* postgresql.auto.conf: our keys replaced, everything else kept. */
static bool
write_recovery_settings(Restore *r, BkError *err)
{
	char path[RESTORE_PATH_MAX];
	char *old_text = NULL;
	size_t old_len = 0;
	size_t size;
	char *text;
	const char *line;

	if (!build_restore_command(r, err) ||
		!join_path(path, sizeof(path), r->pgdata, "postgresql.auto.conf", err))
		return false;
	if (!bk_read_file(path, 16 * 1024 * 1024, &old_text, &old_len, NULL))
		old_text = NULL;
	size = old_len + 4 * sizeof(r->restore_command) + 4096;
	text = calloc(1, size);
	if (text == NULL)
	{
		free(old_text);
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	for (line = old_text; line != NULL && *line != '\0';)
	{
		const char *newline = strchr(line, '\n');
		size_t len = newline ? (size_t) (newline - line) + 1 : strlen(line);

		if (!managed_line(line, len))
			strncat(text, line, len);
		line += len;
	}
	free(old_text);
	if (text[0] != '\0' && text[strlen(text) - 1] != '\n')
		strcat(text, "\n");
	strcat(text, "# Recovery settings written by bk restore\n");
	r->settings = json_object();
	add_setting(r, text, size, "restore_command", r->restore_command);
	switch (r->target)
	{
		case TARGET_TIME:
			add_setting(r, text, size, "recovery_target_time", r->target_time);
			break;
		case TARGET_LSN:
			add_setting(r, text, size, "recovery_target_lsn", r->target_text);
			break;
		case TARGET_XID:
			add_setting(r, text, size, "recovery_target_xid", r->target_text);
			break;
		case TARGET_NAME:
			add_setting(r, text, size, "recovery_target_name", r->target_text);
			break;
		case TARGET_IMMEDIATE:
			add_setting(r, text, size, "recovery_target", "immediate");
			break;
		case TARGET_NONE:
			break;
	}
	add_setting(r, text, size, "recovery_target_timeline", r->target_timeline);
	if (r->target != TARGET_NONE)
		add_setting(r, text, size, "recovery_target_action", "promote");
	if (!r->archive)
		add_setting(r, text, size, "archive_mode", "off");
	if (!write_text_file(r, path, text, err))
	{
		free(text);
		return false;
	}
	free(text);
	if (!join_path(path, sizeof(path), r->pgdata, "recovery.signal", err) ||
		!write_text_file(r, path, "", err))
		return false;
	return true;
}

/* backup_label as the snapshot took it, tablespace_map remapped. */
static bool
write_label_and_map(Restore *r, BkError *err)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	char object[BK_REPO_PATH_MAX];
	char path[RESTORE_PATH_MAX];
	char *map;
	size_t used = 0;
	size_t map_size = 64;

	snprintf(name, sizeof(name), "%s/%s", r->record->id, BK_SNAPSHOT_LABEL);
	if (!join_path(path, sizeof(path), r->pgdata, "backup_label", err) ||
		!bk_repo_object_path(&r->repo, r->source, BK_KIND_SNAPSHOT, name,
							 object, sizeof(object), err))
		return false;
	if (!bk_repo_decrypt_to_file(object, r->decoder, r->source,
								 BK_KIND_SNAPSHOT, name, path, NULL, err))
		return bk_error_prefix(err,
							   "snapshot %s, backup_label: ", r->record->id);
	if (chmod(path, 0600) != 0 || !set_owner_path(r, path, false, err))
		return bk_error_set(err, BK_ERR_IO, "could not set mode of \"%s\"",
							path);
	if (r->tablespace_count == 0)
		return true;
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
		map_size += 2 * strlen(r->tablespaces[spcIdx].location) + 16;
	map = malloc(map_size);
	if (map == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		used += (size_t) snprintf(map + used, map_size - used, "%" PRIu32 " ",
								  r->tablespaces[spcIdx].oid);
		for (const char *p = r->tablespaces[spcIdx].location; *p; p++)
		{
			if (*p == '\n' || *p == '\r' || *p == '\\')
				map[used++] = '\\';
			map[used++] = *p;
		}
		map[used++] = '\n';
	}
	map[used] = '\0';
	if (!join_path(path, sizeof(path), r->pgdata, "tablespace_map", err) ||
		!write_text_file(r, path, map, err))
	{
		free(map);
		return false;
	}
	free(map);
	return true;
}

/* ------------------------------------------------------------ manifest */

typedef struct Text
{
	char *data;
	size_t len;
	size_t cap;
	bool failed;
} Text;

static void
text_append(Text *text, const char *data, size_t len)
{
	if (text->failed)
		return;
	if (text->len + len + 1 > text->cap)
	{
		size_t new_cap = (text->len + len + 1) * 2;
		char *grown = realloc(text->data, new_cap);

		if (grown == NULL)
		{
			text->failed = true;
			return;
		}
		text->data = grown;
		text->cap = new_cap;
	}
	memcpy(text->data + text->len, data, len);
	text->len += len;
	text->data[text->len] = '\0';
}

static void text_printf(Text *text, const char *fmt, ...) BK_PRINTF(2, 3);

static void
text_printf(Text *text, const char *fmt, ...)
{
	char buf[8192];
	va_list args;
	int len;

	va_start(args, fmt);
	len = vsnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);
	if (len < 0 || (size_t) len >= sizeof(buf))
		text->failed = true;
	else
		text_append(text, buf, (size_t) len);
}

static void
manifest_file(Text *text, bool *first, const char *path, uint64_t size,
			  int64_t mtime, const uint8_t *sha256)
{
	char hex[2 * BK_SHA256_LEN + 1];
	char stamp[64];
	time_t seconds = (time_t) mtime;
	struct tm tm;
	bool plain = true;

	for (const unsigned char *p = (const unsigned char *) path; *p; p++)
		plain &= *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\';
	gmtime_r(&seconds, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S GMT", &tm);
	bk_hex_encode(sha256, BK_SHA256_LEN, hex);
	text_append(text, *first ? "\n" : ",\n", *first ? 1 : 2);
	*first = false;
	if (plain)
		text_printf(text, "{ \"Path\": \"%s\", ", path);
	else
	{
		char encoded[RESTORE_PATH_MAX * 2 + 1];

		bk_hex_encode((const uint8_t *) path, strlen(path), encoded);
		text_printf(text, "{ \"Encoded-Path\": \"%s\", ", encoded);
	}
	text_printf(text,
				"\"Size\": %" PRIu64 ", \"Last-Modified\": \"%s\", "
				"\"Checksum-Algorithm\": \"SHA256\", \"Checksum\": \"%s\" }",
				size, stamp, hex);
}

/* A manifest entry for a file we wrote ourselves, read back. */
static bool
manifest_written_file(const Restore *r, Text *text, bool *first,
					  const char *rel, BkError *err)
{
	char path[RESTORE_PATH_MAX];
	uint8_t digest[BK_SHA256_LEN];
	struct stat st;
	int fd;

	if (!join_path(path, sizeof(path), r->pgdata, rel, err))
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true; /* not written: not listed */
	if (fstat(fd, &st) != 0 || !bk_sha256_fd(fd, path, digest, err))
	{
		close(fd);
		return bk_error_set(err, BK_ERR_IO, "could not read \"%s\"", path);
	}
	close(fd);
	manifest_file(text, first, rel, (uint64_t) st.st_size,
				  (int64_t) st.st_mtime, digest);
	return true;
}

/*
 * backup_manifest for the directory as restored, in PostgreSQL's format, so
 * that pg_verifybackup --no-parse-wal can check it before recovery starts.
 * Manifest-Checksum is the SHA-256 of everything before its line.
 */
static bool
write_manifest(Restore *r, BkError *err)
{
	Text text = {0};
	bool first = true;
	char start[32];
	char stop[32];
	char path[RESTORE_PATH_MAX];
	uint8_t digest[BK_SHA256_LEN];
	char hex[2 * BK_SHA256_LEN + 1];
	bool ok;

	text_printf(&text,
				"{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [");
	for (size_t fileIdx = 0; fileIdx < r->record->file_count; fileIdx++)
	{
		const BkSnapFile *file = &r->record->files[fileIdx];

		if (strcmp(file->path, "postgresql.auto.conf") == 0 ||
			skipped_file(file->path))
			continue; /* rewritten (listed as written below), or skipped */
		manifest_file(&text, &first, file->path, file->size, file->mtime,
					  r->results[fileIdx].sha256);
	}
	if (!manifest_written_file(r, &text, &first, "postgresql.auto.conf", err) ||
		!manifest_written_file(r, &text, &first, "backup_label", err) ||
		!manifest_written_file(r, &text, &first, "tablespace_map", err))
	{
		free(text.data);
		return false;
	}
	bk_format_lsn(r->record->start_lsn, start, sizeof(start));
	bk_format_lsn(r->record->stop_lsn, stop, sizeof(stop));
	text_printf(&text,
				"\n],\n\"WAL-Ranges\": [\n{ \"Timeline\": %" PRIu32
				", \"Start-LSN\": \"%s\", \"End-LSN\": \"%s\" }\n],\n",
				r->record->start_timeline, start, stop);
	if (text.failed || !bk_sha256(text.data, text.len, digest, err))
	{
		free(text.data);
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	bk_hex_encode(digest, BK_SHA256_LEN, hex);
	text_printf(&text, "\"Manifest-Checksum\": \"%s\"}\n", hex);
	ok = !text.failed &&
		 join_path(path, sizeof(path), r->pgdata, "backup_manifest", err) &&
		 write_text_file(r, path, text.data, err);
	free(text.data);
	return ok;
}

/* fsync every directory of the restored tree. */
static bool
sync_directories(const Restore *r, BkError *err)
{
	char path[RESTORE_PATH_MAX];

	for (size_t dirIdx = 0; dirIdx < r->record->directory_count; dirIdx++)
	{
		if (is_tablespace_link(r, r->record->directories[dirIdx].path))
			continue;
		if (!resolve_path(r, r->record->directories[dirIdx].path, path,
						  sizeof(path), err) ||
			!bk_fsync_dir(path, err))
			return false;
	}
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
		if (!bk_fsync_dir(r->tablespaces[spcIdx].location, err))
			return false;
	return join_path(path, sizeof(path), r->pgdata, "pg_tblspc", err) &&
		   bk_fsync_dir(path, err) && bk_fsync_dir(r->pgdata, err);
}

/* The last step: pg_control into place makes the directory startable. */
static bool
install_pg_control(Restore *r, BkError *err)
{
	char temp[RESTORE_PATH_MAX];
	char final[RESTORE_PATH_MAX];
	char global_dir[RESTORE_PATH_MAX];

	if (bk_snapshot_record_file(r->record, PG_CONTROL) == NULL)
		return bk_error_set(err, BK_ERR_FORMAT,
							"snapshot %s has no global/pg_control",
							r->record->id);
	if (!join_path(temp, sizeof(temp), r->pgdata, PG_CONTROL_TEMP, err) ||
		!join_path(final, sizeof(final), r->pgdata, PG_CONTROL, err) ||
		!join_path(global_dir, sizeof(global_dir), r->pgdata, "global", err))
		return false;
	if (rename(temp, final) != 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not rename \"%s\" to \"%s\": %s", temp,
							final, strerror(errno));
	r->wrote_pg_control_temp = false;
	return bk_fsync_dir(global_dir, err);
}

/* ------------------------------------------------------------ output */

static const char *
target_setting(const Restore *r)
{
	switch (r->target)
	{
		case TARGET_TIME:
			return "recovery_target_time";
		case TARGET_LSN:
			return "recovery_target_lsn";
		case TARGET_XID:
			return "recovery_target_xid";
		case TARGET_NAME:
			return "recovery_target_name";
		case TARGET_IMMEDIATE:
			return "recovery_target";
		case TARGET_NONE:
			break;
	}
	return NULL;
}

static void
report(const Restore *r, uint64_t removed)
{
	const BkSnapshot *chosen = &r->catalog.snapshots[r->chosen];
	uint64_t written = atomic_load(&r->files_written);
	uint64_t kept = atomic_load(&r->files_kept);
	uint64_t bytes = atomic_load(&r->bytes_written);
	uint64_t mismatches = atomic_load(&r->hint_bit_mismatches);
	char found[32] = "";

	if (r->target == TARGET_XID || r->target == TARGET_NAME)
		bk_format_lsn(r->found_lsn, found, sizeof(found));
	if (r->common.json)
	{
		json_t *chain = json_array();
		json_t *tablespaces = json_array();
		json_t *target = json_object();
		json_t *out;

		for (int linkIdx = 0; linkIdx < r->chain_len; linkIdx++)
		{
			int index =
				bk_snapshot_catalog_find(&r->catalog, r->chain[linkIdx]->id);

			json_array_append_new(
				chain, bk_snapshot_json(&r->catalog.snapshots[index]));
		}
		for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
			json_array_append_new(
				tablespaces,
				json_pack("{s:I, s:s, s:s}", "oid",
						  (json_int_t) r->tablespaces[spcIdx].oid, "original",
						  r->tablespaces[spcIdx].original, "location",
						  r->tablespaces[spcIdx].location));
		json_object_set_new(target, "type",
							r->target == TARGET_NONE
								? json_string("end of archive")
								: json_string(target_setting(r)));
		json_object_set_new(target, "value",
							r->target == TARGET_NONE
								? json_null()
								: json_string(r->target == TARGET_TIME
												  ? r->target_time
												  : r->target_text));
		if (found[0] != '\0')
			json_object_set_new(target, "found_at_lsn", json_string(found));
		out = json_pack(
			"{s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:b, "
			"s:o, s:o, s:b}",
			"source", r->source, "pgdata", r->pgdata, "snapshot", chosen->id,
			"chain", chain, "tablespaces", tablespaces, "files",
			(json_int_t) r->record->file_count, "files_written",
			(json_int_t) written, "files_unchanged", (json_int_t) kept,
			"files_removed", (json_int_t) removed, "bytes",
			(json_int_t) r->record->bytes, "bytes_written", (json_int_t) bytes,
			"delta", r->delta, "target", target, "recovery_settings",
			json_incref(r->settings), "archive", r->archive);
		json_object_set_new(out, "hint_bit_differences",
							json_integer((json_int_t) mismatches));
		json_object_set_new(
			out, "bytes_decrypted",
			json_integer((json_int_t) atomic_load(&r->bytes_decrypted)));
		json_object_set_new(out, "owner",
							r->set_owner ? json_integer(r->uid) : json_null());
		json_dumpf(out, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(out);
		return;
	}
	printf("restored snapshot %s (%s, stop %s) of source %s into %s\n",
		   chosen->id, chosen->kind, chosen->stop_time, r->source, r->pgdata);
	if (r->chain_len > 1)
	{
		printf("  chain:");
		for (int linkIdx = 0; linkIdx < r->chain_len; linkIdx++)
			printf("%s %s (%s)", linkIdx ? " ->" : "", r->chain[linkIdx]->id,
				   r->chain[linkIdx]->kind);
		printf("\n");
	}
	printf("  %zu files, %" PRIu64 " bytes: %" PRIu64 " written",
		   r->record->file_count, r->record->bytes, written);
	if (r->delta)
		printf(", %" PRIu64 " unchanged, %" PRIu64 " removed", kept, removed);
	printf("\n");
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		const RestoreTablespace *spc = &r->tablespaces[spcIdx];

		printf("  tablespace %" PRIu32 ": %s", spc->oid, spc->location);
		if (strcmp(spc->original, spc->location) != 0)
			printf(" (was %s)", spc->original);
		printf("\n");
	}
	if (mismatches > 0)
		printf("  note: %" PRIu64 " rebuilt file%s differ%s from what the "
			   "snapshot read: its record says data checksums were off and "
			   "it predates page digests, so pages whose hint bits changed "
			   "without a new LSN were not sent\n",
			   mismatches, mismatches == 1 ? "" : "s",
			   mismatches == 1 ? "s" : "");
	if (r->target == TARGET_NONE)
		printf("  target: the end of the archived WAL\n");
	else
		printf("  target: %s = '%s'%s%s%s\n", target_setting(r),
			   r->target == TARGET_TIME ? r->target_time : r->target_text,
			   found[0] ? " (found at " : "", found, found[0] ? ")" : "");
	printf("  restore_command = '%s'\n", r->restore_command);
	printf("Start the server (as %s) to recover: pg_ctl -D %s start\n",
		   r->set_owner
			   ? (getpwuid(r->uid) ? getpwuid(r->uid)->pw_name : "the owner")
			   : "the owner",
		   r->pgdata);
}

/*
 * Warn when a target lies beyond the archived WAL: recovery would end with
 * "recovery ended before configured recovery target was reached" unless
 * the source archives more first.
 */
static void
warn_target_beyond_archive(const Restore *r)
{
	const BkSnapshotCatalog *catalog = &r->catalog;
	int64_t newest_us;
	char end[32];

	if (r->target == TARGET_LSN && catalog->has_window &&
		r->target_lsn >= catalog->window_end_lsn)
	{
		bk_format_lsn(catalog->window_end_lsn, end, sizeof(end));
		fprintf(stderr,
				"%s: WARNING: the target LSN %s is beyond the archived WAL "
				"(which ends at %s): recovery cannot reach it until the "
				"source archives that far\n",
				r->program, r->target_text, end);
	}
	if (r->target == TARGET_TIME &&
		bk_parse_timestamp(catalog->wal.newest_created, &newest_us) &&
		r->target_us > newest_us)
		fprintf(stderr,
				"%s: WARNING: the target time %s is after the newest "
				"archived WAL (read by the source at %s): recovery cannot "
				"reach it until the source archives a later segment\n",
				r->program, r->target_time, catalog->wal.newest_created);
}

/* Warn when the server will not be able to read what restore_command needs. */
static void
warn_unreadable(const Restore *r)
{
	const char *paths[2] = {r->config.key_file, r->config.config_path};

	if (!r->set_owner)
		return;
	for (int pathIdx = 0; pathIdx < 2; pathIdx++)
	{
		struct stat st;

		if (paths[pathIdx] == NULL || stat(paths[pathIdx], &st) != 0)
			continue;
		if (st.st_uid != r->uid && (st.st_mode & 0004) == 0 &&
			!(st.st_gid == r->gid && (st.st_mode & 0040)))
			fprintf(stderr,
					"%s: WARNING: \"%s\" is not readable by the owner of "
					"the restored cluster (uid %d): restore_command will "
					"fail until it is\n",
					r->program, paths[pathIdx], (int) r->uid);
	}
}

static bool
resolve_owner(Restore *r, BkError *err)
{
	struct passwd *pw;

	if (r->owner != NULL)
	{
		pw = getpwnam(r->owner);
		if (pw == NULL)
			return bk_error_set(err, BK_ERR_USAGE, "--owner: no user \"%s\"",
								r->owner);
	}
	else if (geteuid() == 0 && (pw = getpwnam(OWNER_DEFAULT)) != NULL)
		;
	else
		return true;
	r->set_owner = true;
	r->uid = pw->pw_uid;
	r->gid = pw->pw_gid;
	return true;
}

int
bk_cmd_restore(int argc, char **argv)
{
	Restore *r = calloc(1, sizeof(*r));
	BkError err;
	uint64_t removed = 0;
	int status;
	bool started_writing = false;

	if (r == NULL)
		return BK_EXIT_FAILURE;
	bk_error_clear(&err);
	r->program = argv[0];
	r->jobs = JOBS_DEFAULT;
	r->prefetch = PREFETCH_DEFAULT;
	r->chosen = -1;
	bk_cli_config_init(&r->config);
	status = parse_options(r, argc, argv);
	if (status != 0)
	{
		if (status < 0)
		{
			fputs(restore_help, stdout);
			status = BK_EXIT_OK;
		}
		free(r);
		return status;
	}

	if (!bk_common_config(&r->common, &r->config, &err) ||
		!bk_repo_open(&r->repo, r->config.repository, false, &err))
		goto fail;
	if (r->config.key_file == NULL)
	{
		bk_error_set(&err, BK_ERR_CONFIG, "no key file configured");
		bk_error_hint(&err, "Set key_file in the configuration or pass "
							"--key-file: restoring needs the private key.");
		goto fail;
	}
	r->ring = bk_keyring_load(r->config.key_file, BK_KEYS_FOR_RESTORE, &err);
	if (r->ring == NULL)
		goto fail;
	r->decoder = bk_decoder_new(r->ring, &err);
	if (r->decoder == NULL || !resolve_owner(r, &err) ||
		!bk_snapshot_catalog_load(&r->repo, r->source, r->decoder, &r->catalog,
								  &err) ||
		!choose_snapshot(r, &err) || !check_wal_path(r, &err) ||
		!load_chain(r, &err) || !plan_tablespaces(r, &err))
		goto fail;
	if (r->archive)
		fprintf(stderr,
				"%s: WARNING: --archive: the restored cluster keeps "
				"archive_mode and, once promoted, archives onto source %s "
				"as a new timeline. Only one cluster may do so: if the "
				"original primary (or another restored copy) still archives "
				"onto this source, their timelines collide. Use --archive "
				"only for the copy that replaces the primary.\n",
				r->program, r->source);

	if (!check_targets(r, &err) || !prepare_target(r, &err))
		goto fail;
	started_writing = true;
	if (!create_directories(r, &err))
		goto fail;
	if (r->delta && !remove_extra(r, r->pgdata, "", &removed, &err))
		goto fail;
	if (!restore_files(r, &err) || !write_label_and_map(r, &err) ||
		!write_recovery_settings(r, &err) || !write_manifest(r, &err) ||
		!sync_directories(r, &err) || !install_pg_control(r, &err))
		goto fail;
	warn_unreadable(r);
	warn_target_beyond_archive(r);
	report(r, removed);
	status = BK_EXIT_OK;
	goto done;

fail:
	/*
	 * Exit 5 means the repository is unreachable.  An I/O error while the
	 * repository still answers was local (the target directory: a full
	 * disk, permissions): exit 1, with the message saying what failed.
	 */
	if (err.code == BK_ERR_IO && r->config.repository != NULL)
	{
		BkRepo probe;
		BkError probe_err;

		if (bk_repo_open(&probe, r->config.repository, false, &probe_err))
			err.code = BK_ERR_INTERNAL;
	}
	status = bk_cli_report_error(r->program, &err);
	if (started_writing)
	{
		char temp[RESTORE_PATH_MAX];

		if (r->wrote_pg_control_temp &&
			join_path(temp, sizeof(temp), r->pgdata, PG_CONTROL_TEMP, NULL))
			unlink(temp);
		fprintf(stderr,
				"%s: the restore is incomplete: \"%s\" will not start (its "
				"global/pg_control is written last). Fix the cause and run "
				"bk restore again, with --delta to reuse what was restored.\n",
				r->program, r->pgdata[0] ? r->pgdata : r->pgdata_arg);
	}
done:
	for (int linkIdx = 0; linkIdx < r->chain_len; linkIdx++)
		bk_snapshot_record_free(r->chain[linkIdx]);
	free(r->chain);
	free(r->tablespaces);
	free(r->results);
	free(r->work);
	json_decref(r->settings);
	bk_snapshot_catalog_free(&r->catalog);
	bk_decoder_free(r->decoder);
	bk_keyring_free(r->ring);
	bk_cli_config_free(&r->config);
	free(r);
	return status;
}
