/*
 * restore_manifest.c
 *		A backup_manifest for what was restored (pg_verifybackup reads it),
 *		and global/pg_control written last.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk_util.h"

#include "restore.h"

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

/* One file's entry, with its checksum. */
static void
manifest_file(Text *text, bool *first, const char *path, uint64_t size,
			  int64_t mtime, const BkFileChecksum *sum)
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
	if (sum->is_crc32c)
	{
		/* As PostgreSQL's pg_checksum_final: the CRC's bytes in memory. */
		uint8_t bytes[sizeof(sum->crc32c)];

		memcpy(bytes, &sum->crc32c, sizeof(bytes));
		bk_hex_encode(bytes, sizeof(bytes), hex);
	}
	else
		bk_hex_encode(sum->sha256, BK_SHA256_LEN, hex);
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
				"\"Checksum-Algorithm\": \"%s\", \"Checksum\": \"%s\" }",
				size, stamp, sum->is_crc32c ? "CRC32C" : "SHA256", hex);
}

/* A manifest entry for a file we wrote ourselves, read back. */
static bool
manifest_written_file(const Restore *r, Text *text, bool *first,
					  const char *rel, BkError *err)
{
	char path[RESTORE_PATH_MAX];
	BkFileChecksum sum = {.is_crc32c = false};
	struct stat st;
	int fd;

	if (!restore_join_path(path, sizeof(path), r->pgdata, rel, err))
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true; /* not written: not listed */
	if (fstat(fd, &st) != 0 || !bk_sha256_fd(fd, path, sum.sha256, err))
	{
		close(fd);
		return bk_error_set(err, BK_ERR_IO, "could not read \"%s\"", path);
	}
	close(fd);
	manifest_file(text, first, rel, (uint64_t) st.st_size,
				  (int64_t) st.st_mtime, &sum);
	return true;
}

/*
 * backup_manifest for the directory as restored, in PostgreSQL's format, so
 * that pg_verifybackup --no-parse-wal can check it before recovery starts.
 * Manifest-Checksum is the SHA-256 of everything before its line.
 */
bool
restore_write_manifest(Restore *r, BkError *err)
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
			restore_skipped_file(file->path))
			continue; /* rewritten (listed as written below), or skipped */
		manifest_file(&text, &first, file->path, file->size, file->mtime,
					  &r->results[fileIdx].sum);
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
		 restore_join_path(path, sizeof(path), r->pgdata, "backup_manifest",
						   err) &&
		 restore_write_text_file(r, path, text.data, err);
	free(text.data);
	return ok;
}

/*
 * The last step: pg_control into place makes the directory startable.  It
 * was fsynced under its temporary name with every other file
 * (restore_sync_files); the rename is made durable here.
 */
bool
restore_install_pg_control(Restore *r, BkError *err)
{
	char temp[RESTORE_PATH_MAX];
	char final[RESTORE_PATH_MAX];
	char global_dir[RESTORE_PATH_MAX];

	if (bk_snapshot_record_file(r->record, PG_CONTROL) == NULL)
		return bk_error_set(err, BK_ERR_FORMAT,
							"snapshot %s has no global/pg_control",
							r->record->id);
	if (!restore_join_path(temp, sizeof(temp), r->pgdata, PG_CONTROL_TEMP,
						   err) ||
		!restore_join_path(final, sizeof(final), r->pgdata, PG_CONTROL, err) ||
		!restore_join_path(global_dir, sizeof(global_dir), r->pgdata, "global",
						   err))
		return false;
	if (rename(temp, final) != 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not rename \"%s\" to \"%s\": %s", temp,
							final, strerror(errno));
	r->wrote_pg_control_temp = false;
	return bk_fsync_dir(global_dir, err);
}
