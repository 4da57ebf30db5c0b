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
 *			   history file, the segment after the newest one archived);
 *	 exit 200  anything else: bad usage or configuration, unreachable
 *			   repository, wrong key, corrupt or tampered data, conflicting
 *			   copies, or a gap inside the archived range.  PostgreSQL stops
 *			   recovery with a FATAL error and the message below says why.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk_frame.h"
#include "bk_keys.h"
#include "bk_util.h"
#include "commands.h"
#include "repo.h"

#define EXIT_RESTORED       0
#define EXIT_NOT_IN_ARCHIVE 1
#define EXIT_FATAL          200

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
	"its\n                    system identifier)\n" BK_COMMON_HELP;

/* Decoding the object straight into the temporary destination file. */
typedef struct WalWrite
{
	BkDecoder *decoder;
	int fd;
	const char *tmp_path;
	uint64_t written;
} WalWrite;

static bool
write_frame(void *arg, const uint8_t *frame, size_t len, BkError *err)
{
	WalWrite *out = arg;
	const uint8_t *plain;
	size_t plain_len;

	if (!bk_decoder_push(out->decoder, frame, len, &plain, &plain_len, err))
		return false;
	if (!bk_write_all(out->fd, plain, plain_len, out->tmp_path, err))
		return false;
	out->written += plain_len;
	return true;
}

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

/*
 * absent_file_status
 *		A requested file is not in the repository: beyond the archive's end
 *		(exit 1), or a hole in it (fatal)?
 */
static int
absent_file_status(const char *program, const BkRepo *repo, const char *source,
				   const char *file, BkError *err)
{
	uint32_t timeline;
	uint32_t log;
	uint32_t seg;
	BkWalFileType type = bk_wal_file_type(file, &timeline, &log, &seg);
	BkWalCatalog catalog;
	int status = EXIT_NOT_IN_ARCHIVE;

	/* History files of timelines that do not exist are asked for routinely. */
	if (type != BK_WAL_SEGMENT)
	{
		fprintf(stderr, "%s: \"%s\" is not in the archive of source \"%s\"\n",
				program, file, source);
		return EXIT_NOT_IN_ARCHIVE;
	}
	if (!bk_wal_catalog_load(repo, source, &catalog, err))
		return fail(program, err);
	for (int tlIdx = 0; tlIdx < catalog.timeline_count; tlIdx++)
	{
		const BkWalTimeline *tl = &catalog.timelines[tlIdx];
		uint64_t segno = bk_wal_segno(log, seg, catalog.segment_size);

		if (tl->timeline != timeline || tl->segments == 0)
			continue;
		if (segno >= tl->first_segno && segno < tl->last_segno)
		{
			bk_error_set(
				err, BK_ERR_SEQUENCE,
				"WAL file \"%s\" is missing from the archive of source "
				"\"%s\", which holds timeline %" PRIu32
				" segments on both sides of it (a gap)",
				file, source, timeline);
			bk_error_hint(err,
						  "Recovery cannot continue past a gap. Check the "
						  "shipper's log and \"bk verify --source %s\"; "
						  "restore to a target before the gap, or put the "
						  "segment back (from pg_wal of the source if it "
						  "still has it).",
						  source);
			status = EXIT_FATAL;
		}
	}
	bk_wal_catalog_free(&catalog);
	if (status == EXIT_FATAL)
		return fail(program, err);
	fprintf(stderr,
			"%s: \"%s\" is beyond the end of the archive of source \"%s\"\n",
			program, file, source);
	return EXIT_NOT_IN_ARCHIVE;
}

int
bk_cmd_wal_get(int argc, char **argv)
{
	static const struct option options[] = {
		{"source", required_argument, NULL, 's'},
		BK_COMMON_LONG_OPTIONS,
		{NULL, 0, NULL, 0}};
	BkCommonOptions common = {0};
	const char *source = NULL;
	const char *file;
	const char *dest;
	BkCliConfig config;
	BkRepo repo;
	BkKeyring *ring = NULL;
	char object_path[BK_REPO_PATH_MAX];
	char conflict_dir[BK_REPO_PATH_MAX + 64];
	char tmp_path[4096];
	char dest_dir[4096];
	WalWrite out = {.fd = -1};
	struct stat st;
	BkError err;
	int status = EXIT_FATAL;
	int code;

	bk_error_clear(&err);
	optind = 1;
	opterr = 0;
	while ((code = getopt_long(argc, argv, "", options, NULL)) != -1)
	{
		if (code == 's')
			source = optarg;
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
		!bk_repo_open(&repo, config.repository, false, &err) ||
		!bk_repo_object_path(&repo, source, BK_KIND_WAL, file, object_path,
							 sizeof(object_path), &err))
		goto done;

	/* Two different copies: never pick one silently. */
	if (!bk_repo_source_path(&repo, source, "conflicts/wal", conflict_dir,
							 sizeof(conflict_dir), &err))
		goto done;
	{
		char probe[BK_REPO_PATH_MAX + 512];
		DIR *dir = opendir(conflict_dir);
		struct dirent *entry;
		size_t file_len = strlen(file);

		while (dir != NULL && (entry = readdir(dir)) != NULL)
		{
			if (strncmp(entry->d_name, file, file_len) != 0 ||
				entry->d_name[file_len] != '.')
				continue;
			snprintf(probe, sizeof(probe), "%s/%s", conflict_dir,
					 entry->d_name);
			bk_error_set(&err, BK_ERR_CONFLICT,
						 "the archive holds two different copies of WAL file "
						 "\"%s\" of source \"%s\" (\"%s\" and \"%s\")",
						 file, source, object_path, probe);
			bk_error_hint(&err,
						  "Run \"bk verify --source %s\" with the key to "
						  "see which copy belongs to this cluster's "
						  "history, move the other out of the "
						  "repository, and retry.",
						  source);
			closedir(dir);
			goto done;
		}
		if (dir != NULL)
			closedir(dir);
	}

	if (stat(object_path, &st) != 0)
	{
		if (errno != ENOENT)
		{
			bk_error_set(&err, BK_ERR_IO, "could not stat \"%s\": %s",
						 object_path, strerror(errno));
			goto done;
		}
		status = absent_file_status(argv[0], &repo, source, file, &err);
		bk_cli_config_free(&config);
		return status;
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
	out.decoder = bk_decoder_new(ring, &err);
	if (out.decoder == NULL)
		goto done;

	/* Decrypt into a temporary file beside DEST, then rename: atomic. */
	snprintf(tmp_path, sizeof(tmp_path), "%s.bk-tmp.%d", dest, (int) getpid());
	out.tmp_path = tmp_path;
	out.fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out.fd < 0)
	{
		bk_error_set(&err, BK_ERR_IO, "could not create \"%s\": %s", tmp_path,
					 strerror(errno));
		goto done;
	}
	if (!bk_repo_read_frames(object_path, false, write_frame, &out, &err) ||
		!bk_decoder_finish(out.decoder, &err))
	{
		bk_error_prefix(&err, "WAL file \"%s\" of source \"%s\": ", file,
						source);
		goto done;
	}
	{
		const BkObjectTracker *object = bk_decoder_object(out.decoder);

		/* The frames must say they are this object: no substitution. */
		if (strcmp(object->source, source) != 0 ||
			strcmp(object->name, file) != 0 || object->kind != BK_KIND_WAL)
		{
			bk_error_set(
				&err, BK_ERR_FORMAT,
				"\"%s\" holds %s object \"%s\" of source \"%s\", not WAL "
				"file \"%s\" of source \"%s\"",
				object_path, bk_kind_name(object->kind), object->name,
				object->source, file, source);
			goto done;
		}
	}
	if (fsync(out.fd) != 0 || close(out.fd) != 0)
	{
		out.fd = -1;
		bk_error_set(&err, BK_ERR_IO, "could not write \"%s\": %s", tmp_path,
					 strerror(errno));
		goto done;
	}
	out.fd = -1;
	if (rename(tmp_path, dest) != 0)
	{
		bk_error_set(&err, BK_ERR_IO, "could not rename \"%s\" to \"%s\": %s",
					 tmp_path, dest, strerror(errno));
		goto done;
	}
	bk_strlcpy(dest_dir, dest, sizeof(dest_dir));
	{
		char *slash = strrchr(dest_dir, '/');

		if (slash == NULL)
			strcpy(dest_dir, ".");
		else
			*slash = '\0';
	}
	if (!bk_fsync_dir(dest_dir, &err))
		goto done;
	status = EXIT_RESTORED;

done:
	if (out.fd >= 0)
	{
		close(out.fd);
		unlink(tmp_path);
	}
	else if (status != EXIT_RESTORED && out.tmp_path != NULL)
		unlink(tmp_path);
	bk_decoder_free(out.decoder);
	bk_keyring_free(ring);
	bk_cli_config_free(&config);
	if (status == EXIT_RESTORED)
		return status;
	return fail(argv[0], &err);
}
