/*
 * cmd_binlog_get.c
 *		bk binlog-get: rebuild one archived binlog file, verified, for DBAs
 *		who replay by hand with mariadb-binlog.
 *
 * The file is rebuilt from its ranges (binlog_catalog.h) into a temporary
 * file next to OUT and renamed into place only when everything held: every
 * chunk decrypted and authenticated, every event complete with its
 * position chained and its CRC-32 right, the ranges contiguous from the
 * magic to the file's end, and a range sent twice equal to the bytes it
 * overlaps.  A file that is missing, has a hole, or is not complete yet is
 * refused with the range that is missing; nothing is written then.
 *
 * OUT must not exist: the file is put there with link(2), which never
 * replaces one.  bk wal-get overwrites because PostgreSQL's restore_command
 * contract asks it to; binlog-get is run by hand, where OUT may be a file
 * that matters (the server's own binlog, a copy being compared), and
 * bk restore rebuilds the files it replays itself, in its own directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "binlog_catalog.h"
#include "bk_util.h"
#include "commands.h"
#include "mariadb.h"

static const char binlog_get_help[] =
	"Usage: bk binlog-get --source S [OPTIONS] FILE OUT\n"
	"\n"
	"Writes the archived MariaDB binlog file FILE (for example\n"
	"mariadb-bin.000042) of source S to OUT, rebuilt from its ranges and\n"
	"verified: every chunk authenticated, every event's position and CRC-32,\n"
	"the ranges contiguous and complete.  OUT is equal to the server's own\n"
	"file (as \"mariadb-binlog --read-from-remote-server --raw\" writes it)\n"
	"and can be replayed with mariadb-binlog.  Needs the private key.\n"
	"\n"
	"OUT must not exist: bk binlog-get never replaces a file.\n"
	"\n"
	"Exit status: 0 written; 4 the file is incomplete, has a gap, or failed a\n"
	"check (the message names the missing range), or is missing: removed by\n"
	"bk expire (wholly or in part: the message says so), before the first\n"
	"archived file, between archived files, or of a source with no binlog\n"
	"archived; 1 after the newest archived file\n"
	"(and nothing else); 2 usage (OUT exists already); 3 configuration or "
	"key;\n"
	"5 the repository unreachable, OUT could not be written, or another\n"
	"failure (the message names it): fix it and try again.\n"
	"\n"
	"  --source S        the source id (the agent's source_id; "
	"required)\n" BK_COMMON_HELP;

typedef struct RebuildState
{
	int checksum_alg;
	uint64_t events;
	BkBinlogEventFn fn;
	void *arg;
} RebuildState;

/*
 * visit_event
 *		Count one checked event and pass it on (BkBinlogEventFn).
 */
static bool
visit_event(void *arg, uint64_t offset, const BkBinlogEventHeader *header,
			const uint8_t *event, BkError *err)
{
	RebuildState *state = arg;

	state->events++;
	return state->fn == NULL ||
		   state->fn(state->arg, offset, header, event, err);
}

/*
 * refuse_incomplete
 *		Say what is missing of file, and what to do.
 */
static bool
refuse_incomplete(const BinlogFile *file, const char *source, BkError *err)
{
	if (file->covered_end == 0)
		return bk_error_set(err, BK_ERR_SEQUENCE,
							"the archive of source \"%s\" lacks the start of"
							" binlog \"%s\": no range begins at offset 0"
							" (the first held begins at %" PRIu64 ")",
							source, file->name, file->ranges[0].start);
	if (file->gap_end != 0)
		return bk_error_set(
				   err, BK_ERR_SEQUENCE,
				   "binlog \"%s\" of source \"%s\" has a gap: bytes"
				   " %" PRIu64 " to %" PRIu64 " are missing from the archive",
				   file->name, source, file->gap_start, file->gap_end) ||
			   bk_error_hint(err,
							 "Run \"bk verify --source %s\"; the agent"
							 " resends what Kafka still holds.",
							 source);
	if (file->short_end)
	{
		char what[512];

		binlog_catalog_describe_short(file, what, sizeof(what));
		return bk_error_set(err, BK_ERR_SEQUENCE,
							"binlog \"%s\" of source \"%s\" is %s", file->name,
							source, what) ||
			   bk_error_hint(err,
							 "Run \"bk verify --source %s\": no point in"
							 " time after %s:%" PRIu64 " can be restored from"
							 " the snapshots before it.",
							 source, file->name, file->covered_end);
	}
	if (file->cut)
		return bk_error_set(err, BK_ERR_SEQUENCE,
							"binlog \"%s\" of source \"%s\" is archived up to"
							" offset %" PRIu64 " only: the archive goes on"
							" with a later file after a gap (the server purged"
							" the rest of it before the agent archived it)",
							file->name, source, file->covered_end) ||
			   bk_error_hint(err,
							 "Run \"bk list --source %s\": no point in time"
							 " inside the gap can be restored.",
							 source);
	bk_error_set(
		err, BK_ERR_SEQUENCE,
		"binlog \"%s\" of source \"%s\" is archived up to offset %" PRIu64
		" but not complete: it has no ROTATE or STOP event yet and no"
		" later file follows it",
		file->name, source, file->covered_end);
	return bk_error_hint(err,
						 "The server is still writing it.  FLUSH BINARY"
						 " LOGS on the server closes it; once the agent has"
						 " archived the rest, try again.");
}

/*
 * refuse_expired
 *		name is at or before its basename's bk expire record: what is
 *		missing of it, bk expire removed (if it was ever archived), and no
 *		kept snapshot needs it.
 *		file is what a run cut short (or one still running) left of it, or
 *		NULL when nothing is left.
 */
static bool
refuse_expired(const BinlogCatalog *catalog, const BinlogFile *file,
			   const char *name, const char *source, BkError *err)
{
	const char *record = binlog_catalog_expired_record(catalog, name);
	const char *first = NULL;

	for (int idx = 0; idx < catalog->file_count && first == NULL; idx++)
		if (bk_binlog_file_same_base(catalog->files[idx].name, name) &&
			!catalog->files[idx].expired)
			first = catalog->files[idx].name;
	if (file != NULL && file->range_count > 0)
		bk_error_set(err, BK_ERR_SEQUENCE,
					 "bk expire removed binlog \"%s\" of source \"%s\" in part"
					 " (it recorded removing that basename's files up to %s):"
					 " a run cut short, or one still running, left %d"
					 " range%s of it from offset %" PRIu64
					 ", which the next run removes",
					 name, source, record, file->range_count,
					 file->range_count == 1 ? "" : "s", file->ranges[0].start);
	else
		/*
		 * The record says up to where bk expire removed, not where the
		 * archive began: a file that old may never have been archived.
		 */
		bk_error_set(err, BK_ERR_SEQUENCE,
					 "binlog \"%s\" of source \"%s\" is not in the archive:"
					 " bk expire removed that basename's files up to %s",
					 name, source, record);
	if (first != NULL)
		return bk_error_hint(err,
							 "No kept snapshot needs it: that binlog is kept"
							 " from %s on.  Restore from a later snapshot, or"
							 " to a later time (\"bk list --source %s\" shows"
							 " the restorable window).",
							 first, source);
	return bk_error_hint(err,
						 "bk expire removed that binlog history whole: no"
						 " kept snapshot is in it.  \"bk list --source %s\""
						 " shows the restorable window.",
						 source);
}

/*
 * same_as_rebuilt
 *		The len bytes of range at offset equal what fd holds there: a range
 *		sent again must not be of another history of the file.
 */
static bool
same_as_rebuilt(int fd, const uint8_t *data, size_t len, uint64_t offset,
				const BinlogRange *range, const BinlogFile *file,
				const char *tmp_path, bool *fd_failed, BkError *err)
{
	uint8_t *have = malloc(len ? len : 1);
	bool ok = true;

	if (have == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	if (pread(fd, have, len, (off_t) offset) != (ssize_t) len)
	{
		ok = bk_error_set(err, BK_ERR_IO, "could not read back \"%s\": %s",
						  tmp_path, strerror(errno));
		if (fd_failed != NULL)
			*fd_failed = true;
	}
	else if (memcmp(have, data, len) != 0)
		ok = bk_error_set(err, BK_ERR_CONFLICT,
						  "binlog range %s differs from the other archived"
						  " copy of the same bytes of \"%s\"",
						  range->name, file->name);
	free(have);
	return ok;
}

/*
 * mariadb_binlog_rebuild
 *		Decrypt the chain into fd, then compare the ranges off the chain.
 *		A range the chain goes on with past its start (sent again from an
 *		older position) is compared up to there, and only its rest walked
 *		and written.
 */
bool
mariadb_binlog_rebuild(const BkRepo *repo, const char *source,
					   BkDecoder *decoder, const BinlogFile *file, int fd,
					   const char *tmp_path, uint64_t *events,
					   BkBinlogEventFn fn, void *arg, const bool *enough,
					   bool *fd_failed, BkError *err)
{
	RebuildState rebuilt = {BK_BINLOG_CHECKSUM_OFF, 0, fn, arg};
	RebuildState *state = &rebuilt;
	uint64_t rebuilt_end = file->covered_end;
	bool had_enough = false;

	if (fd_failed != NULL)
		*fd_failed = false;
	for (int pass = 0; pass < 2; pass++)
	{
		for (int idx = 0; idx < file->range_count; idx++)
		{
			const BinlogRange *range = &file->ranges[idx];
			uint64_t want = range->end - range->start;
			uint8_t *data = NULL;
			size_t len = 0;
			bool ok;

			/*
			 * Ranges beyond a gap are not part of what is rebuilt, nor
			 * those past where the caller had enough.
			 */
			if (range->in_chain != (pass == 0) || (pass == 0 && had_enough) ||
				(pass == 1 && range->start >= rebuilt_end))
				continue;
			if (!bk_repo_decrypt_to_memory(repo, BK_REPO_ARCHIVE, source,
										   BK_KIND_BINLOG, range->name, decoder,
										   (size_t) want, &data, &len, err))
			{
				/*
				 * Listed, then gone (bk expire meanwhile): data missing
				 * from what the archive said it holds, not a file that is
				 * not in the archive.
				 */
				if (err->code == BK_ERR_NOT_FOUND)
					err->code = BK_ERR_SEQUENCE;
				return bk_error_prefix(err, "binlog range %s: ", range->name);
			}
			/* What the plan read of it (closed, complete-until...) is
			 * what its tag just authenticated, not another attempt's. */
			if (!bk_repo_meta_agrees(decoder, range->meta_digest, source, err))
			{
				free(data);
				return bk_error_prefix(err, "binlog range %s: ", range->name);
			}
			if (len != want)
			{
				free(data);
				return bk_error_set(err, BK_ERR_FORMAT,
									"binlog range %s holds %zu bytes, its name"
									" says %" PRIu64,
									range->name, len, want);
			}
			if (pass == 0)
			{
				size_t head = (size_t) (range->chain_start - range->start);

				ok = (head == 0 ||
					  same_as_rebuilt(fd, data, head, range->start, range, file,
									  tmp_path, fd_failed, err)) &&
					 bk_binlog_walk(file->name, range->chain_start, data + head,
									len - head, &state->checksum_alg,
									visit_event, state, err);
				if (ok && !bk_pwrite_all(fd, data + head, len - head,
										 range->chain_start, tmp_path, err))
				{
					ok = false;
					if (fd_failed != NULL)
						*fd_failed = true;
				}
			}
			else if (range->end > file->covered_end)
				ok = bk_error_set(err, BK_ERR_FORMAT,
								  "binlog range %s reaches past the"
								  " rebuilt file's end %" PRIu64,
								  range->name, file->covered_end);
			else /* a range sent again: its bytes must equal the chain's */
				ok = same_as_rebuilt(
					fd, data,
					(size_t) ((range->end < rebuilt_end ? range->end
														: rebuilt_end) -
							  range->start),
					range->start, range, file, tmp_path, fd_failed, err);
			free(data);
			if (!ok)
				return false;
			/*
			 * The caller has all it needs (a restore's target is in what
			 * was walked): what follows is not read, so a range sealed to
			 * a key the keyring lacks, after the target, costs nothing.
			 */
			if (pass == 0 && enough != NULL && *enough)
			{
				had_enough = true;
				rebuilt_end = range->end;
			}
		}
	}
	*events = state->events;
	return true;
}

/*
 * refuse_existing_out
 *		OUT there already (a file, a link, anything) is a bad argument, exit
 *		2: it is never replaced.
 */
static bool
refuse_existing_out(const char *out_path, BkError *err)
{
	struct stat st;

	if (lstat(out_path, &st) != 0)
		return true;
	bk_error_set(err, BK_ERR_USAGE, "\"%s\" exists already", out_path);
	return bk_error_hint(err, "bk binlog-get never replaces a file: remove it,"
							  " or give another OUT.");
}

/*
 * publish_out
 *		Give the complete, synced tmp_path the name out_path unless that
 *		name is taken, then sync the directory.
 *
 * link(2) fails on a name that exists, where rename(2) would replace it
 * (and a check before a rename leaves a window).  A file system without
 * hard links (vfat) gets the check and the rename.
 */
static bool
publish_out(const char *tmp_path, const char *out_path, BkError *err)
{
	char dir[4096];

	if (link(tmp_path, out_path) == 0)
	{
		if (unlink(tmp_path) != 0)
			return bk_error_set(err, BK_ERR_IO, "could not remove \"%s\": %s",
								tmp_path, strerror(errno));
		bk_dir_of(out_path, dir, sizeof(dir));
		return bk_fsync_dir(dir, err);
	}
	if (errno == EEXIST)
		return refuse_existing_out(out_path, err);
	if (errno != EPERM && errno != ENOTSUP && errno != ENOSYS)
		return bk_error_set(err, BK_ERR_IO,
							"could not link \"%s\" to \"%s\": %s", tmp_path,
							out_path, strerror(errno));
	return refuse_existing_out(out_path, err) &&
		   bk_rename_durable(tmp_path, out_path, err);
}

bool
mariadb_binlog_write(const BkRepo *repo, const char *source, BkDecoder *decoder,
					 const BinlogFile *file, const char *out_path,
					 uint64_t *events, BkError *err)
{
	char tmp_path[4096];
	int fd;
	bool ok;

	if (!refuse_existing_out(out_path, err))
		return false;
	if ((size_t) snprintf(tmp_path, sizeof(tmp_path), "%s.bk-tmp.%d", out_path,
						  (int) getpid()) >= sizeof(tmp_path))
		return bk_error_set(err, BK_ERR_USAGE, "path too long: \"%s\"",
							out_path);
	fd = open(tmp_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return bk_error_set(err, BK_ERR_IO, "could not create \"%s\": %s",
							tmp_path, strerror(errno));
	ok = mariadb_binlog_rebuild(repo, source, decoder, file, fd, tmp_path,
								events, NULL, NULL, NULL, NULL, err);
	if (ok && fsync(fd) != 0)
		ok = bk_error_set(err, BK_ERR_IO, "could not fsync \"%s\": %s",
						  tmp_path, strerror(errno));
	close(fd);
	ok = ok && publish_out(tmp_path, out_path, err);
	if (!ok)
		unlink(tmp_path);
	return ok;
}

/*
 * mariadb_binlog_get_file
 *		The file binlog-get is asked for, or NULL with err set.  Only a file
 *		after the newest archived one is "not in the archive" (BK_ERR_NOT_FOUND,
 *		exit 1), so that a script can fetch files until it sees 1: one before
 *		the first (removed by bk expire, or never archived), one missing
 *		between archived files, and a source without binlog (a mistyped
 *		--source) are missing data (exit 4), as an incomplete file is.
 */
const BinlogFile *
mariadb_binlog_get_file(const BinlogCatalog *catalog, const char *source,
						const char *name, BkError *err)
{
	const BinlogFile *file = binlog_catalog_file(catalog, name);
	const char *first;
	const char *last;

	if (file != NULL)
	{
		if (file->gap_end == 0 && file->covered_end != 0 && file->complete)
			return file;
		if (file->expired)
			refuse_expired(catalog, file, name, source, err);
		else
			refuse_incomplete(file, source, err);
		return NULL;
	}
	/* Before the first file too, or a history removed whole. */
	if (binlog_catalog_expired(catalog, name))
	{
		refuse_expired(catalog, NULL, name, source, err);
		return NULL;
	}
	if (catalog->file_count == 0)
	{
		bk_error_set(err, BK_ERR_SEQUENCE,
					 "binlog \"%s\" is not in the archive: source \"%s\" has "
					 "no binlog archived",
					 name, source);
		bk_error_hint(err, "Check --source (\"bk list\" names the sources) "
						   "and that bk-mysql-agent streams this server.");
		return NULL;
	}
	/*
	 * Within name's history (its basename): another's files, whatever their
	 * numbers, are neither before nor after it.
	 */
	first = last = NULL;
	for (int idx = 0; idx < catalog->file_count; idx++)
		if (bk_binlog_file_same_base(catalog->files[idx].name, name))
		{
			if (first == NULL)
				first = catalog->files[idx].name;
			last = catalog->files[idx].name;
		}
	if (first == NULL)
	{
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "binlog \"%s\" is not in the archive of source \"%s\"",
					 name, source);
		bk_error_hint(err, "The archive holds %s to %s.",
					  catalog->files[0].name,
					  catalog->files[catalog->file_count - 1].name);
		return NULL;
	}
	if (bk_binlog_file_compare(name, last) > 0)
	{
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "binlog \"%s\" is not in the archive of source \"%s\"",
					 name, source);
		bk_error_hint(err, "The archive holds %s to %s.", first, last);
		return NULL;
	}
	if (bk_binlog_file_compare(name, first) < 0)
		bk_error_set(err, BK_ERR_SEQUENCE,
					 "binlog \"%s\" comes before the first archived file of "
					 "source \"%s\" (%s): the archive does not reach back "
					 "that far",
					 name, source, first);
	else
		bk_error_set(err, BK_ERR_SEQUENCE,
					 "binlog \"%s\" is missing from the archive of source "
					 "\"%s\", which holds files on both sides of it (%s to "
					 "%s)",
					 name, source, first, last);
	bk_error_hint(err, "It was removed (bk expire keeps the binlog from the "
					   "oldest kept snapshot on) or never archived: \"bk "
					   "list\" shows the archive's files and gaps.");
	return NULL;
}

int
bk_cmd_binlog_get(int argc, char **argv)
{
	BkCommonOptions common = {0};
	const char *source = NULL;
	char *args[2];
	BkCommandContext ctx = {0};
	BinlogCatalog catalog = {0};
	const BinlogFile *file;
	uint64_t events = 0;
	BkError err;
	int status;

	bk_error_clear(&err);
	status = bk_command_parse_args(argc, argv, bk_source_options,
								   binlog_get_help, &common, bk_option_store,
								   &source, "FILE and OUT", 2, args);
	if (status != BK_COMMAND_RUN)
		return status;
	if (source == NULL)
		return bk_cli_usage_error(argv[0], "--source is required");
	if (!bk_binlog_file_name_valid(args[0]))
		return bk_cli_usage_error(argv[0],
								  "\"%s\" is not a binlog file name (such as"
								  " mariadb-bin.000042)",
								  args[0]);
	/* Before the repository is read: a name taken is known at once. */
	if (!refuse_existing_out(args[1], &err))
		goto fail;
	if (!bk_command_open(&ctx, argv[0], &common, source, BK_KEY_USED, &err))
		goto fail;
	if (ctx.decoder == NULL)
	{
		bk_error_set(&err, BK_ERR_KEY, "bk binlog-get needs the private key");
		bk_error_hint(&err, "Set key_file or pass --key-file.");
		goto fail;
	}
	if (!binlog_catalog_load(ctx.repo, source, &catalog, &err))
		goto fail;
	file = mariadb_binlog_get_file(&catalog, source, args[0], &err);
	if (file == NULL ||
		!binlog_catalog_check_successor(ctx.repo, source, ctx.decoder, &catalog,
										file, &err))
		goto fail;

	if (!mariadb_binlog_write(ctx.repo, source, ctx.decoder, file, args[1],
							  &events, &err))
		goto fail;
	fprintf(stderr,
			"%s: wrote %s (%" PRIu64 " bytes, %" PRIu64
			" events, %d ranges) to %s\n",
			argv[0], file->name, file->covered_end, events, file->range_count,
			args[1]);
	/* status still holds BK_COMMAND_RUN (-1) from the argument parsing. */
	status = BK_EXIT_OK;
	goto done;

fail:
	status = bk_cli_report_absent_error(argv[0], &err);
done:
	binlog_catalog_free(&catalog);
	bk_command_close(&ctx);
	return status;
}
