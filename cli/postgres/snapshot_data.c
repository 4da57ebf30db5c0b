/*
 * snapshot_data.c
 *		Decrypting snapshot objects, the snapshot record, and rebuilding
 *		files from whole and incremental objects: see snapshot_data.h.
 */
#include "snapshot_data.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk_crc32c.h"
#include "bk_util.h"

#define IO_BUFFER_SIZE (1024 * 1024)
/* Pieces of a rebuilt file are gathered into writes of up to this size. */
#define WRITE_BUFFER_SIZE (1024 * 1024)
/* A piece at least this large, with nothing gathered, is written as it is. */
#define WRITE_DIRECT_MIN (256 * 1024)
/* With writeback on, the kernel is told to write out every this many bytes. */
#define WRITEBACK_STEP (8 * 1024 * 1024)

static bool
object_name(const char *id, const char *part, const char *path, char *out,
			size_t out_len, size_t *end)
{
	size_t used = (size_t) snprintf(out, out_len, "%s/%s/", id, part);

	if (used >= out_len ||
		!bk_snapshot_path_encode(path, out + used, out_len - used))
		return false;
	*end = used + strlen(out + used);
	return true;
}

bool
bk_snapshot_data_name(const char *id, const char *path, char *out,
					  size_t out_len)
{
	size_t end;

	return object_name(id, BK_SNAPSHOT_DATA, path, out, out_len, &end);
}

bool
bk_snapshot_range_name(const char *id, const char *path, uint64_t offset,
					   char *out, size_t out_len)
{
	size_t end;

	return object_name(id, BK_SNAPSHOT_RANGE, path, out, out_len, &end) &&
		   (size_t) snprintf(out + end, out_len - end, "/%" PRIu64, offset) <
			   out_len - end;
}

/* SHA-256 of no bytes. */
static const uint8_t empty_sha256[BK_SHA256_LEN] = {
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4,
	0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
	0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};

bool
bk_snapshot_file_empty(const BkSnapFile *file)
{
	return file->size == 0 && file->range_count == 0 && file->has_sha256 &&
		   memcmp(file->sha256, empty_sha256, BK_SHA256_LEN) == 0;
}

bool
bk_snapshot_path_safe(const char *path)
{
	const char *component = path;

	if (path == NULL || path[0] == '\0' || path[0] == '/')
		return false;
	for (const char *p = path;; p++)
	{
		if (*p == '/' || *p == '\0')
		{
			size_t len = (size_t) (p - component);

			if (len == 0 || (len == 1 && component[0] == '.') ||
				(len == 2 && component[0] == '.' && component[1] == '.'))
				return false;
			if (*p == '\0')
				return true;
			component = p + 1;
		}
	}
}

/* ------------------------------------------------------- decrypting */

/* A snapshot object the record lists is not there: not the end of anything. */
static bool
missing_object(const BkRepo *repo, const char *source, const char *name,
			   BkError *err)
{
	char where[4096];

	bk_repo_describe(repo, BK_REPO_ARCHIVE, source, BK_KIND_SNAPSHOT, name,
					 where, sizeof(where));
	return bk_error_set(err, BK_ERR_SEQUENCE,
						"object \"%s\" is missing from the repository (%s)",
						name, where);
}

bool
bk_snapshot_read_object(const BkRepo *repo, BkDecoder *decoder,
						const char *source, const char *name, BkPlainSink sink,
						void *sink_arg, uint8_t *digest, uint64_t *size,
						BkError *err)
{
	if (!bk_repo_decrypt(repo, BK_REPO_ARCHIVE, source, BK_KIND_SNAPSHOT, name,
						 decoder, sink, sink_arg, err))
		return err->code == BK_ERR_NOT_FOUND
				   ? missing_object(repo, source, name, err)
				   : false;
	if (digest != NULL)
		memcpy(digest, bk_decoder_digest(decoder), BK_SHA256_LEN);
	if (size != NULL)
		*size = bk_decoder_object(decoder)->object_size;
	return true;
}

bool
bk_snapshot_read_small(const BkRepo *repo, BkDecoder *decoder,
					   const char *source, const char *name, size_t max_len,
					   char **data, size_t *len, BkError *err)
{
	if (!bk_repo_decrypt_to_memory(repo, BK_REPO_ARCHIVE, source,
								   BK_KIND_SNAPSHOT, name, decoder, max_len,
								   (uint8_t **) data, len, err))
		return err->code == BK_ERR_NOT_FOUND
				   ? missing_object(repo, source, name, err)
				   : false;
	return true;
}

/* ------------------------------------------------------------ record */

static int
file_cmp(const void *a, const void *b)
{
	return strcmp(((const BkSnapFile *) a)->path,
				  ((const BkSnapFile *) b)->path);
}

const BkSnapFile *
bk_snapshot_record_file(const BkSnapRecord *record, const char *path)
{
	BkSnapFile key = {.path = (char *) path};

	if (record->file_count == 0)
		return NULL;
	return bsearch(&key, record->files, record->file_count, sizeof(key),
				   file_cmp);
}

void
bk_snapshot_record_free(BkSnapRecord *record)
{
	if (record == NULL)
		return;
	for (size_t fileIdx = 0; fileIdx < record->file_count; fileIdx++)
	{
		free(record->files[fileIdx].path);
		free(record->files[fileIdx].ranges);
	}
	for (size_t dirIdx = 0; dirIdx < record->directory_count; dirIdx++)
		free(record->directories[dirIdx].path);
	for (size_t spcIdx = 0; spcIdx < record->tablespace_count; spcIdx++)
		free(record->tablespaces[spcIdx].path);
	free(record->files);
	free(record->directories);
	free(record->tablespaces);
	free(record->checksum_failure_path);
	free(record);
}

bool
bk_snapshot_record_checksum_note(const BkSnapRecord *record, char *out,
								 size_t out_len)
{
	size_t count = record->checksum_failure_count;

	out[0] = '\0';
	if (count == 0)
		return false;
	snprintf(out, out_len,
			 "snapshot %s read pages whose checksum failed twice: its record "
			 "lists %zu (up to 5 per file or range), the first \"%s\" block "
			 "%" PRIu32 "; they were corrupt in the source when it ran, and "
			 "a restore brings them back as read; check the source with "
			 "pg_amcheck, and take a new full snapshot once it is repaired",
			 record->id, count,
			 record->checksum_failure_path ? record->checksum_failure_path
										   : "?",
			 record->checksum_failure_block);
	return true;
}

static bool
parse_mode(json_t *value, mode_t *mode)
{
	const char *text = json_string_value(value);
	char *end;
	unsigned long parsed;

	if (text == NULL || text[0] == '\0')
		return false;
	parsed = strtoul(text, &end, 8);
	if (*end != '\0' || parsed > 07777)
		return false;
	*mode = (mode_t) parsed;
	return true;
}

static bool
copy_string(json_t *object, const char *key, char *out, size_t out_len,
			bool required)
{
	const char *text = json_string_value(json_object_get(object, key));

	if (text == NULL)
	{
		out[0] = '\0';
		return !required;
	}
	if (strlen(text) >= out_len)
		return false;
	bk_strlcpy(out, text, out_len);
	return true;
}

static bool
record_bad(BkError *err, const char *id, const char *what)
{
	return bk_error_set(err, BK_ERR_FORMAT,
						"snapshot %s: its record (snapshot.json) is invalid: "
						"%s",
						id, what);
}

/*
 * An entry's path, malloc'd into *path: "path", a JSON string, or
 * "path_hex", the hex of its bytes, which the extension writes for a path
 * that is not UTF-8 (JSON text is, and file names need not be).  NULL in
 * *path if the entry has neither.  False, with the reason in what, if
 * both are there or path_hex is not hex of a path (a NUL byte is in no
 * path); false with what empty and err set if memory runs out.
 */
static bool
record_path(json_t *item, char **path, char *what, size_t what_len,
			BkError *err)
{
	json_t *text = json_object_get(item, "path");
	json_t *hex_value = json_object_get(item, "path_hex");
	const char *hex = json_string_value(hex_value);
	size_t len;

	*path = NULL;
	what[0] = '\0';
	if (hex_value == NULL)
	{
		if (json_string_value(text) == NULL)
			return true;
		*path = strdup(json_string_value(text));
		return *path != NULL ||
			   bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	if (text != NULL)
	{
		snprintf(what, what_len, "an entry has both \"path\" and \"path_hex\"");
		return false;
	}
	len = hex != NULL ? strlen(hex) : 0;
	*path = malloc(len / 2 + 1);
	if (*path == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	if (len == 0 || len % 2 != 0 ||
		!bk_hex_decode(hex, (uint8_t *) *path, len / 2) ||
		memchr(*path, '\0', len / 2) != NULL)
	{
		snprintf(what, what_len,
				 "\"path_hex\" \"%.64s%s\" is not a path's bytes in hex (an "
				 "even number of hex digits, no 00 byte)",
				 hex != NULL ? hex : "(not a string)", len > 64 ? "..." : "");
		free(*path);
		*path = NULL;
		return false;
	}
	(*path)[len / 2] = '\0';
	return true;
}

/*
 * A ranged file's ranges: they follow one another from offset 0 to the
 * file's size, each with its SHA-256 and, for an incremental file, its
 * block count (which add up to the file's).
 */
static bool
parse_ranges(json_t *ranges, BkSnapRecord *record, BkSnapFile *file,
			 BkError *err)
{
	size_t count = json_array_size(ranges);
	uint64_t next = 0;
	uint64_t blocks = 0;
	char what[BK_ERROR_MESSAGE_MAX / 2];

	if (!json_is_array(ranges) || count == 0)
	{
		snprintf(what, sizeof(what), "file \"%s\" has an empty \"ranges\"",
				 file->path);
		return record_bad(err, record->id, what);
	}
	file->ranges = calloc(count, sizeof(BkSnapRange));
	if (file->ranges == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	file->range_count = count;
	for (size_t rangeIdx = 0; rangeIdx < count; rangeIdx++)
	{
		json_t *item = json_array_get(ranges, rangeIdx);
		BkSnapRange *range = &file->ranges[rangeIdx];
		json_t *offset = json_object_get(item, "offset");
		json_t *length = json_object_get(item, "length");
		json_t *range_blocks = json_object_get(item, "blocks");
		const char *sha = json_string_value(json_object_get(item, "sha256"));

		if (!json_is_integer(offset) || !json_is_integer(length) ||
			json_integer_value(length) <= 0 ||
			(uint64_t) json_integer_value(offset) != next || sha == NULL ||
			!bk_hex_decode(sha, range->sha256, BK_SHA256_LEN) ||
			(file->incremental && (!json_is_integer(range_blocks) ||
								   json_integer_value(range_blocks) < 0)))
		{
			snprintf(what, sizeof(what),
					 "range %zu of file \"%s\" lacks a valid offset, length, "
					 "sha256 or block count, or does not follow the one "
					 "before",
					 rangeIdx, file->path);
			return record_bad(err, record->id, what);
		}
		range->offset = next;
		range->length = (uint64_t) json_integer_value(length);
		range->blocks =
			file->incremental ? (uint64_t) json_integer_value(range_blocks) : 0;
		next += range->length;
		blocks += range->blocks;
	}
	if (next != file->size || (file->incremental && blocks != file->blocks))
	{
		snprintf(what, sizeof(what),
				 "the ranges of file \"%s\" do not add up to its size or "
				 "block count",
				 file->path);
		return record_bad(err, record->id, what);
	}
	return true;
}

static bool
parse_files(json_t *files, BkSnapRecord *record, BkError *err)
{
	size_t count = json_array_size(files);

	if (!json_is_array(files))
		return record_bad(err, record->id, "no \"files\" array");
	record->files = calloc(count ? count : 1, sizeof(BkSnapFile));
	if (record->files == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	for (size_t fileIdx = 0; fileIdx < count; fileIdx++)
	{
		json_t *item = json_array_get(files, fileIdx);
		BkSnapFile *file = &record->files[fileIdx];
		const char *path;
		const char *encoding =
			json_string_value(json_object_get(item, "encoding"));
		const char *sha = json_string_value(json_object_get(item, "sha256"));
		json_t *size = json_object_get(item, "size");
		char what[BK_ERROR_MESSAGE_MAX / 2];

		record->file_count = fileIdx + 1;
		if (!record_path(item, &file->path, what, sizeof(what), err))
			return what[0] == '\0' ? false : record_bad(err, record->id, what);
		path = file->path;
		if (!bk_snapshot_path_safe(path))
		{
			snprintf(what, sizeof(what), "file %zu has an unsafe path \"%s\"",
					 fileIdx, path ? path : "(none)");
			return record_bad(err, record->id, what);
		}
		if (!json_is_integer(size) || json_integer_value(size) < 0 ||
			!parse_mode(json_object_get(item, "mode"), &file->mode) ||
			encoding == NULL ||
			(strcmp(encoding, "whole") != 0 &&
			 strcmp(encoding, "incremental") != 0))
		{
			snprintf(what, sizeof(what),
					 "file \"%s\" lacks a valid size, mode or encoding", path);
			return record_bad(err, record->id, what);
		}
		file->size = (uint64_t) json_integer_value(size);
		file->mtime = json_integer_value(json_object_get(item, "mtime"));
		file->incremental = strcmp(encoding, "incremental") == 0;
		if (file->incremental)
		{
			json_t *blocks = json_object_get(item, "blocks");

			if (!json_is_integer(blocks) || json_integer_value(blocks) < 0)
			{
				snprintf(what, sizeof(what),
						 "incremental file \"%s\" has no block count", path);
				return record_bad(err, record->id, what);
			}
			file->blocks = (uint64_t) json_integer_value(blocks);
		}
		if (sha != NULL)
		{
			if (!bk_hex_decode(sha, file->sha256, BK_SHA256_LEN))
			{
				snprintf(what, sizeof(what),
						 "file \"%s\" has a malformed sha256", path);
				return record_bad(err, record->id, what);
			}
			file->has_sha256 = true;
		}
		if (json_object_get(item, "ranges") != NULL &&
			(file->has_sha256 ||
			 !parse_ranges(json_object_get(item, "ranges"), record, file, err)))
		{
			if (file->has_sha256)
			{
				snprintf(what, sizeof(what),
						 "file \"%s\" has both a sha256 and ranges", path);
				return record_bad(err, record->id, what);
			}
			return false;
		}
		/*
		 * The restored file is compared with one or the other: an entry
		 * with neither would have its bytes written unchecked.
		 */
		if (!file->has_sha256 && file->range_count == 0)
		{
			snprintf(what, sizeof(what),
					 "file \"%s\" has neither a sha256 nor ranges", path);
			return record_bad(err, record->id, what);
		}
		record->bytes += file->size;
	}
	if (count > 1)
	{
		qsort(record->files, count, sizeof(BkSnapFile), file_cmp);
		for (size_t fileIdx = 1; fileIdx < count; fileIdx++)
			if (strcmp(record->files[fileIdx - 1].path,
					   record->files[fileIdx].path) == 0)
			{
				char what[BK_ERROR_MESSAGE_MAX / 2];

				snprintf(what, sizeof(what), "file \"%s\" is listed twice",
						 record->files[fileIdx].path);
				return record_bad(err, record->id, what);
			}
	}
	return true;
}

static bool
parse_directories(json_t *directories, BkSnapRecord *record, BkError *err)
{
	size_t count = json_array_size(directories);

	if (directories != NULL && !json_is_array(directories))
		return record_bad(err, record->id, "\"directories\" is not an array");
	record->directories = calloc(count ? count : 1, sizeof(BkSnapDirectory));
	if (record->directories == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	for (size_t dirIdx = 0; dirIdx < count; dirIdx++)
	{
		json_t *item = json_array_get(directories, dirIdx);
		BkSnapDirectory *dir = &record->directories[dirIdx];
		char what[BK_ERROR_MESSAGE_MAX / 2];

		record->directory_count = dirIdx + 1;
		if (!record_path(item, &dir->path, what, sizeof(what), err))
			return what[0] == '\0' ? false : record_bad(err, record->id, what);
		if (!bk_snapshot_path_safe(dir->path) ||
			!parse_mode(json_object_get(item, "mode"), &dir->mode))
			return record_bad(err, record->id,
							  "a directory has an unsafe path or no mode");
	}
	return true;
}

static bool
parse_tablespaces(json_t *tablespaces, BkSnapRecord *record, BkError *err)
{
	size_t count = json_array_size(tablespaces);

	if (tablespaces != NULL && !json_is_array(tablespaces))
		return record_bad(err, record->id, "\"tablespaces\" is not an array");
	record->tablespaces = calloc(count ? count : 1, sizeof(BkSnapTablespace));
	if (record->tablespaces == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	for (size_t spcIdx = 0; spcIdx < count; spcIdx++)
	{
		json_t *item = json_array_get(tablespaces, spcIdx);
		BkSnapTablespace *spc = &record->tablespaces[spcIdx];
		json_t *oid = json_object_get(item, "oid");
		char what[BK_ERROR_MESSAGE_MAX / 2];

		record->tablespace_count = spcIdx + 1;
		if (!record_path(item, &spc->path, what, sizeof(what), err))
			return what[0] == '\0' ? false : record_bad(err, record->id, what);
		if (json_is_string(oid))
			spc->oid = (uint32_t) strtoul(json_string_value(oid), NULL, 10);
		else if (json_is_integer(oid))
			spc->oid = (uint32_t) json_integer_value(oid);
		if (spc->oid == 0 || spc->path == NULL || spc->path[0] != '/')
			return record_bad(err, record->id,
							  "a tablespace lacks an oid or an absolute path");
	}
	return true;
}

/*
 * The pages the snapshot read with a failing checksum: counted, and the
 * first kept to name it.  A list that is not one, or an entry without a
 * path, is a record bk did not write.
 */
static bool
parse_checksum_failures(json_t *failures, BkSnapRecord *record, BkError *err)
{
	json_t *first;
	json_t *block;
	char what[BK_ERROR_MESSAGE_MAX / 2];

	if (failures != NULL && !json_is_array(failures))
		return record_bad(err, record->id,
						  "\"checksum_failures\" is not an array");
	record->checksum_failure_count = json_array_size(failures);
	if (record->checksum_failure_count == 0)
		return true;
	first = json_array_get(failures, 0);
	block = json_object_get(first, "block");
	if (!record_path(first, &record->checksum_failure_path, what, sizeof(what),
					 err))
		return what[0] == '\0' ? false : record_bad(err, record->id, what);
	if (record->checksum_failure_path == NULL || !json_is_integer(block) ||
		json_integer_value(block) < 0 ||
		json_integer_value(block) > (json_int_t) UINT32_MAX)
		return record_bad(err, record->id,
						  "a checksum failure lacks a path or a block number");
	record->checksum_failure_block = (uint32_t) json_integer_value(block);
	return true;
}

static bool
json_lsn(json_t *root, const char *key, uint64_t *lsn)
{
	return bk_parse_lsn(json_string_value(json_object_get(root, key)), lsn);
}

bool
bk_snapshot_record_load(const BkRepo *repo, BkDecoder *decoder,
						const char *source, const char *id, BkSnapRecord **out,
						BkError *err)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	char *text = NULL;
	size_t len;
	json_t *root;
	json_error_t json_err;
	BkSnapRecord *record;
	json_t *value;
	bool ok = false;

	*out = NULL;
	snprintf(name, sizeof(name), "%s/%s", id, BK_SNAPSHOT_RECORD);
	if (!bk_snapshot_read_small(repo, decoder, source, name,
								BK_RECORD_MAX_BYTES, &text, &len, err))
		return bk_error_prefix(err, "snapshot %s: ", id);
	root = json_loadb(text, len, 0, &json_err);
	free(text);
	if (root == NULL)
	{
		char what[BK_ERROR_MESSAGE_MAX / 2];

		snprintf(what, sizeof(what), "not JSON (line %d: %s)", json_err.line,
				 json_err.text);
		return record_bad(err, id, what);
	}
	record = calloc(1, sizeof(*record));
	if (record == NULL)
	{
		json_decref(root);
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	bk_strlcpy(record->id, id, sizeof(record->id));
	value = json_object_get(root, "format");
	if (json_integer_value(value) < 1 ||
		json_integer_value(value) > BK_SNAPSHOT_RECORD_FORMAT)
	{
		char what[BK_ERROR_MESSAGE_MAX / 2];

		if (json_is_integer(value))
			snprintf(what, sizeof(what),
					 "its format is %" JSON_INTEGER_FORMAT
					 ", this bk reads 1 to %d (a newer bk wrote it: use that "
					 "version's bk)",
					 json_integer_value(value), BK_SNAPSHOT_RECORD_FORMAT);
		else
			snprintf(what, sizeof(what),
					 "\"format\" is missing or not a number");
		record_bad(err, id, what);
		goto done;
	}
	if (!copy_string(root, "snapshot", record->id, sizeof(record->id), true) ||
		strcmp(record->id, id) != 0)
	{
		record_bad(err, id, "it names another snapshot");
		goto done;
	}
	if (!copy_string(root, "source", record->source, sizeof(record->source),
					 false) ||
		!copy_string(root, "kind", record->kind, sizeof(record->kind), true) ||
		!copy_string(root, "parent", record->parent, sizeof(record->parent),
					 false) ||
		!copy_string(root, "start_time", record->start_time,
					 sizeof(record->start_time), false) ||
		!copy_string(root, "stop_time", record->stop_time,
					 sizeof(record->stop_time), false))
	{
		record_bad(err, id, "a text field is missing or too long");
		goto done;
	}
	copy_string(root, "label", record->label, sizeof(record->label), false);
	if (strcmp(record->kind, "full") != 0 &&
		strcmp(record->kind, "diff") != 0 && strcmp(record->kind, "incr") != 0)
	{
		record_bad(err, id, "\"kind\" is not full, diff or incr");
		goto done;
	}
	if (strcmp(record->kind, "full") != 0 && record->parent[0] == '\0')
	{
		record_bad(err, id, "a diff or incr snapshot without a parent");
		goto done;
	}
	if (!json_lsn(root, "start_lsn", &record->start_lsn) ||
		!json_lsn(root, "stop_lsn", &record->stop_lsn))
	{
		record_bad(err, id, "start_lsn or stop_lsn is not an LSN");
		goto done;
	}
	record->start_timeline =
		(uint32_t) json_integer_value(json_object_get(root, "start_timeline"));
	record->stop_timeline =
		(uint32_t) json_integer_value(json_object_get(root, "stop_timeline"));
	if (record->start_timeline == 0)
	{
		record_bad(err, id, "no start_timeline");
		goto done;
	}
	if (record->stop_timeline == 0)
		record->stop_timeline = record->start_timeline;
	value = json_object_get(root, "system_identifier");
	if (json_is_string(value))
		bk_strlcpy(record->system_identifier, json_string_value(value),
				   sizeof(record->system_identifier));
	else if (json_is_integer(value))
		snprintf(record->system_identifier, sizeof(record->system_identifier),
				 "%" JSON_INTEGER_FORMAT, json_integer_value(value));
	record->pg_version =
		json_integer_value(json_object_get(root, "pg_version"));
	record->segment_size =
		(uint32_t) json_integer_value(json_object_get(root, "segment_size"));
	record->block_size =
		(uint32_t) json_integer_value(json_object_get(root, "block_size"));
	if (record->block_size == 0)
		record->block_size = 8192;
	record->data_checksums =
		json_is_true(json_object_get(root, "data_checksums"));
	record->page_digests = json_is_true(json_object_get(root, "page_digests"));
	if (!parse_checksum_failures(json_object_get(root, "checksum_failures"),
								 record, err))
		goto done;
	if (!parse_files(json_object_get(root, "files"), record, err) ||
		!parse_directories(json_object_get(root, "directories"), record, err) ||
		!parse_tablespaces(json_object_get(root, "tablespaces"), record, err))
		goto done;
	ok = true;
done:
	json_decref(root);
	if (!ok)
	{
		bk_snapshot_record_free(record);
		return false;
	}
	*out = record;
	return true;
}

/* ------------------------------------------------------------ rebuild */

/*
 * Writes into the rebuilt file.  The decoder hands over one chunk at a time
 * (bk.chunk_size, as small as 4 KiB) and an incremental object one block
 * at a time: pieces that continue one another are gathered and written
 * together, up to WRITE_BUFFER_SIZE (allocated on first need, at most the
 * file's size).  With writeback on (a restore), the kernel is asked to
 * start writing each WRITEBACK_STEP of a run of consecutive writes to disk
 * (sync_file_range SYNC_FILE_RANGE_WRITE, as PostgreSQL's pg_flush_data
 * does), so that the fsync the restore does later finds little left to
 * write; its errors are left to that fsync, but for those the wait below
 * reports.
 *
 * With drop_behind on as well (a restore), each step, once the next one
 * is on its way, is waited for and dropped from the page cache
 * (POSIX_FADV_DONTNEED).  A restore of a cluster larger than memory gains
 * nothing from keeping what it wrote cached, and taking fresh pages for
 * every byte is most of a buffered restore's CPU: the kernel allocates,
 * fills and later reclaims each one (and on a virtual machine that reports
 * free memory to its host, faults each one in from the host first).
 * Dropped pages are free again at once, so the restore writes through a
 * few steps' worth of warm pages.  The wait (SYNC_FILE_RANGE_WAIT_AFTER)
 * reports a write error the kernel met, and also marks it seen: the later
 * fsync, through another descriptor, would not report it again, so that
 * error fails the file here.
 */
typedef struct FileWriter
{
	int fd;
	const char *path;
	bool writeback;
	bool drop_behind;
	size_t cap; /* size of buf, once allocated */
	uint8_t *buf;
	size_t len;
	uint64_t offset;   /* where buf[0] goes */
	uint64_t wb_start; /* the run written since writeback last started */
	uint64_t wb_end;
	uint64_t drop_start; /* drop_behind: the step on its way to disk */
	uint64_t drop_len;
	bool failed; /* a write to fd failed */
} FileWriter;

/* drop_behind: wait for the step on its way to disk, then drop it. */
static bool
writer_drop_step(FileWriter *writer, BkError *err)
{
	if (writer->drop_len == 0)
		return true;
	if (sync_file_range(writer->fd, (off_t) writer->drop_start,
						(off_t) writer->drop_len,
						SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
							SYNC_FILE_RANGE_WAIT_AFTER) != 0)
	{
		if (errno != ENOSYS && errno != EINVAL && errno != ESPIPE &&
			errno != EOPNOTSUPP)
		{
			writer->failed = true;
			return bk_error_set(err, BK_ERR_IO, "could not write \"%s\": %s",
								writer->path, strerror(errno));
		}
		/* No sync_file_range here: the pages stay, the fsync writes them. */
		writer->drop_behind = false;
		return true;
	}
	(void) posix_fadvise(writer->fd, (off_t) writer->drop_start,
						 (off_t) writer->drop_len, POSIX_FADV_DONTNEED);
	writer->drop_len = 0;
	return true;
}

static bool
writer_wrote(FileWriter *writer, uint64_t offset, size_t len, BkError *err)
{
	uint64_t step_start;

	if (!writer->writeback)
		return true;
	if (offset != writer->wb_end)
		writer->wb_start = offset;
	writer->wb_end = offset + len;
	if (writer->wb_end - writer->wb_start < WRITEBACK_STEP)
		return true;
	step_start = writer->wb_start;
	(void) sync_file_range(writer->fd, (off_t) step_start,
						   (off_t) (writer->wb_end - step_start),
						   SYNC_FILE_RANGE_WRITE);
	writer->wb_start = writer->wb_end;
	if (!writer->drop_behind)
		return true;
	/* This step is on its way: the one before it should be on disk. */
	if (!writer_drop_step(writer, err))
		return false;
	writer->drop_start = step_start;
	writer->drop_len = writer->wb_end - step_start;
	return true;
}

static bool
writer_flush(FileWriter *writer, BkError *err)
{
	if (writer->len == 0)
		return true;
	if (!bk_pwrite_all(writer->fd, writer->buf, writer->len, writer->offset,
					   writer->path, err))
	{
		writer->failed = true;
		return false;
	}
	if (!writer_wrote(writer, writer->offset, writer->len, err))
		return false;
	writer->offset += writer->len;
	writer->len = 0;
	return true;
}

static bool
writer_write(FileWriter *writer, const uint8_t *data, size_t len,
			 uint64_t offset, BkError *err)
{
	if (writer->len > 0 && offset != writer->offset + writer->len &&
		!writer_flush(writer, err))
		return false;
	if (writer->len == 0)
	{
		writer->offset = offset;
		if (writer->buf == NULL && len < WRITE_DIRECT_MIN)
			writer->buf = malloc(writer->cap);
		if (len >= WRITE_DIRECT_MIN || writer->buf == NULL)
		{
			if (!bk_pwrite_all(writer->fd, data, len, offset, writer->path,
							   err))
			{
				writer->failed = true;
				return false;
			}
			return writer_wrote(writer, offset, len, err);
		}
	}
	while (len > 0)
	{
		size_t take = writer->cap - writer->len;

		if (take > len)
			take = len;
		memcpy(writer->buf + writer->len, data, take);
		writer->len += take;
		data += take;
		len -= take;
		if (writer->len == writer->cap && !writer_flush(writer, err))
			return false;
	}
	return true;
}

typedef struct WholeSink
{
	FileWriter *writer;
	uint64_t offset;
	bool crc; /* the ranges of a file, in order: the file's CRC-32C */
	uint32_t crc32c;
} WholeSink;

static bool
whole_sink(void *arg, const uint8_t *data, size_t len, BkError *err)
{
	WholeSink *sink = arg;

	if (!writer_write(sink->writer, data, len, sink->offset, err))
		return false;
	if (sink->crc)
		sink->crc32c = bk_crc32c(sink->crc32c, data, len);
	sink->offset += len;
	return true;
}

/* Applying an incremental object (snapshot-format.md section 2). */
typedef struct IncrSink
{
	int fd;
	const char *path;
	FileWriter *writer;
	const BkSnapFile *file; /* the record's entry */
	uint64_t part_start;    /* the bytes this object may patch */
	uint64_t part_end;
	uint64_t part_blocks; /* the blocks the record says it holds */
	uint32_t block_size;
	uint8_t header[BK_INCR_HEADER_LEN];
	size_t header_have;
	uint32_t block_count;
	uint8_t *numbers;
	size_t numbers_have;
	uint64_t data_have; /* bytes of block data consumed */
} IncrSink;

static bool
incr_bad(BkError *err, const char *what)
{
	return bk_error_set(err, BK_ERR_FORMAT, "malformed incremental object: %s",
						what);
}

static bool
incr_header_done(IncrSink *sink, BkError *err)
{
	BkIncrHeader header;
	uint64_t length;
	uint32_t block_size;

	if (!bk_incr_header_read(sink->header, &header))
		return incr_bad(err, "no " BK_INCR_MAGIC " magic");
	length = header.file_length;
	block_size = header.block_size;
	if (length != sink->file->size)
		return incr_bad(err, "its file length differs from the record's");
	if (block_size != sink->block_size)
		return incr_bad(err, "its block size differs from the record's");
	sink->block_count = header.block_count;
	if (sink->block_count != sink->part_blocks || sink->block_count == 0)
		return incr_bad(err, "its block count differs from the record's");
	if ((uint64_t) sink->block_count * block_size > length)
		return incr_bad(err, "more blocks than the file holds");
	sink->numbers = malloc((size_t) sink->block_count * 4);
	if (sink->numbers == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	return true;
}

static bool
incr_numbers_done(IncrSink *sink, BkError *err)
{
	uint64_t previous = 0;

	for (uint32_t blockIdx = 0; blockIdx < sink->block_count; blockIdx++)
	{
		uint64_t number = bk_get_be32(sink->numbers + 4 * (size_t) blockIdx);

		if (blockIdx > 0 && number <= previous)
			return incr_bad(err, "block numbers are not strictly ascending");
		if ((number + 1) * sink->block_size > sink->file->size)
			return incr_bad(err, "a block lies beyond the file's length");
		if (number * sink->block_size < sink->part_start ||
			(number + 1) * sink->block_size > sink->part_end)
			return incr_bad(err, "a block lies outside its range");
		previous = number;
	}
	return true;
}

static bool
incr_sink(void *arg, const uint8_t *data, size_t len, BkError *err)
{
	IncrSink *sink = arg;

	while (len > 0)
	{
		size_t take;

		if (sink->header_have < BK_INCR_HEADER_LEN)
		{
			take = BK_INCR_HEADER_LEN - sink->header_have;
			if (take > len)
				take = len;
			memcpy(sink->header + sink->header_have, data, take);
			sink->header_have += take;
			if (sink->header_have == BK_INCR_HEADER_LEN &&
				!incr_header_done(sink, err))
				return false;
		}
		else if (sink->numbers_have < (size_t) sink->block_count * 4)
		{
			take = (size_t) sink->block_count * 4 - sink->numbers_have;
			if (take > len)
				take = len;
			memcpy(sink->numbers + sink->numbers_have, data, take);
			sink->numbers_have += take;
			if (sink->numbers_have == (size_t) sink->block_count * 4 &&
				!incr_numbers_done(sink, err))
				return false;
		}
		else
		{
			uint64_t blockIdx = sink->data_have / sink->block_size;
			uint64_t within = sink->data_have % sink->block_size;
			uint64_t number;

			if (blockIdx >= sink->block_count)
				return incr_bad(err, "more block data than its header says");
			number = bk_get_be32(sink->numbers + 4 * blockIdx);
			take = sink->block_size - within;
			if (take > len)
				take = len;
			if (!writer_write(sink->writer, data, take,
							  number * sink->block_size + within, err))
				return false;
			sink->data_have += take;
		}
		data += take;
		len -= take;
	}
	return true;
}

bool
bk_sha256_fd(int fd, const char *path, uint8_t out[BK_SHA256_LEN], BkError *err)
{
	BkSha256 *sha = bk_sha256_new(err);
	uint8_t *buf = malloc(IO_BUFFER_SIZE);
	uint64_t offset = 0;
	bool ok = false;

	if (sha == NULL || buf == NULL)
	{
		if (buf == NULL)
			bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		goto done;
	}
	for (;;)
	{
		ssize_t got = pread(fd, buf, IO_BUFFER_SIZE, (off_t) offset);

		if (got < 0)
		{
			if (errno == EINTR)
				continue;
			bk_error_set(err, BK_ERR_IO, "could not read \"%s\": %s", path,
						 strerror(errno));
			goto done;
		}
		if (got == 0)
			break;
		if (!bk_sha256_update(sha, buf, (size_t) got, err))
			goto done;
		offset += (uint64_t) got;
	}
	ok = bk_sha256_final(sha, out, err);
done:
	bk_sha256_free(sha);
	free(buf);
	return ok;
}

bool
bk_snapshot_file_hash(int fd, const char *path, const BkSnapFile *file,
					  bool drop, BkFileChecksum *sum, bool *matches,
					  BkError *err)
{
	bool ranged = file->range_count > 0;
	BkSha256 *sha = NULL; /* of the file, or of the current range */
	uint8_t *buf = malloc(IO_BUFFER_SIZE);
	uint64_t offset = 0;
	uint64_t dropped = 0;
	size_t rangeIdx = 0;
	bool ok = false;

	*matches = true;
	memset(sum, 0, sizeof(*sum));
	sum->is_crc32c = ranged;
	if (buf == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		goto done;
	}
	while (offset < file->size)
	{
		uint64_t end = ranged ? file->ranges[rangeIdx].offset +
									file->ranges[rangeIdx].length
							  : file->size;
		size_t want = end - offset < IO_BUFFER_SIZE ? (size_t) (end - offset)
													: IO_BUFFER_SIZE;
		ssize_t got;

		if (sha == NULL && (sha = bk_sha256_new(err)) == NULL)
			goto done;
		got = pread(fd, buf, want, (off_t) offset);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
		{
			bk_error_set(err, BK_ERR_IO,
						 got < 0 ? "could not read \"%s\": %s"
								 : "\"%s\" is shorter than its recorded size%s",
						 path, got < 0 ? strerror(errno) : "");
			goto done;
		}
		if (!bk_sha256_update(sha, buf, (size_t) got, err))
			goto done;
		if (ranged)
			sum->crc32c = bk_crc32c(sum->crc32c, buf, (size_t) got);
		offset += (uint64_t) got;
		if (drop && offset - dropped >= WRITEBACK_STEP)
		{
			(void) posix_fadvise(fd, (off_t) dropped,
								 (off_t) (offset - dropped),
								 POSIX_FADV_DONTNEED);
			dropped = offset;
		}
		if (ranged && offset == end)
		{
			uint8_t digest[BK_SHA256_LEN];

			if (!bk_sha256_final(sha, digest, err))
				goto done;
			bk_sha256_free(sha);
			sha = NULL;
			if (memcmp(digest, file->ranges[rangeIdx].sha256, BK_SHA256_LEN) !=
				0)
				*matches = false;
			rangeIdx++;
		}
	}
	if (!ranged)
	{
		if ((sha == NULL && (sha = bk_sha256_new(err)) == NULL) ||
			!bk_sha256_final(sha, sum->sha256, err))
			goto done;
		if (file->has_sha256 &&
			memcmp(sum->sha256, file->sha256, BK_SHA256_LEN) != 0)
			*matches = false;
	}
	ok = true;
done:
	bk_sha256_free(sha);
	free(buf);
	return ok;
}

static bool
rebuild_failed(BkError *err, const char *snapshot_id, const char *path)
{
	return bk_error_prefix(err, "snapshot %s, file \"%s\": ", snapshot_id,
						   path);
}

/*
 * The objects of a file in one snapshot: one (range_count 0), or one per
 * range; for an incremental file only the ranges that have changed blocks.
 * Calls apply for each, with its name, the range it covers and its index
 * in file->ranges (-1: not ranged).
 */
typedef bool (*ObjectApply)(void *arg, const char *name, uint64_t start,
							uint64_t end, int range_index, BkError *err);

static bool
each_object(const char *snapshot_id, const BkSnapFile *file, ObjectApply apply,
			void *arg, BkError *err)
{
	char name[BK_OBJECT_NAME_MAX + 1];

	if (file->range_count == 0)
	{
		if (file->incremental && file->blocks == 0)
			return true;
		if (!bk_snapshot_data_name(snapshot_id, file->path, name,
								   sizeof(name)) ||
			!bk_object_name_valid(name, strlen(name)))
			return bk_error_set(err, BK_ERR_FORMAT,
								"its object name is too long");
		return apply(arg, name, 0, file->size, -1, err);
	}
	for (size_t rangeIdx = 0; rangeIdx < file->range_count; rangeIdx++)
	{
		const BkSnapRange *range = &file->ranges[rangeIdx];

		if (file->incremental && range->blocks == 0)
			continue;
		if (!bk_snapshot_range_name(snapshot_id, file->path, range->offset,
									name, sizeof(name)) ||
			!bk_object_name_valid(name, strlen(name)))
			return bk_error_set(err, BK_ERR_FORMAT,
								"its object name is too long");
		if (!apply(arg, name, range->offset, range->offset + range->length,
				   (int) rangeIdx, err))
			return false;
	}
	return true;
}

/* Rebuilding one file: the state both kinds of object work on. */
typedef struct Rebuild
{
	const BkRepo *repo;
	BkDecoder *decoder;
	const char *source;
	const BkSnapFile *entry; /* in the snapshot whose objects are applied */
	uint32_t block_size;
	int fd;
	const char *fd_path;
	FileWriter *writer;
	WholeSink whole;
	uint8_t *digest; /* a whole object's SHA-256 (not ranged), or NULL */
	uint64_t *bytes_read;
	char *failed_object; /* the caller's, or NULL */
} Rebuild;

/* Said to the caller: the object an apply failed on. */
static bool
object_failed(Rebuild *rb, const char *name)
{
	if (rb->failed_object != NULL)
		bk_strlcpy(rb->failed_object, name, BK_OBJECT_NAME_MAX + 1);
	return false;
}

/* A whole object (or range): written at its offset, checked by its size. */
static bool
apply_whole(void *arg, const char *name, uint64_t start, uint64_t end,
			int range_index, BkError *err)
{
	Rebuild *rb = arg;
	uint8_t digest[BK_SHA256_LEN];
	uint64_t size = 0;

	rb->whole.offset = start;
	if (!bk_snapshot_read_object(rb->repo, rb->decoder, rb->source, name,
								 whole_sink, &rb->whole, digest, &size, err) ||
		!writer_flush(rb->writer, err))
		return object_failed(rb, name);
	if (rb->bytes_read != NULL)
		*rb->bytes_read += size;
	if (size != end - start)
	{
		bk_error_set(err, BK_ERR_FORMAT,
					 "object \"%s\" holds %" PRIu64
					 " bytes, the record says %" PRIu64,
					 name, size, end - start);
		return object_failed(rb, name);
	}
	if (range_index < 0 && rb->digest != NULL)
		memcpy(rb->digest, digest, BK_SHA256_LEN);
	else if (memcmp(digest, rb->entry->ranges[range_index].sha256,
					BK_SHA256_LEN) != 0)
	{
		bk_error_set(err, BK_ERR_FORMAT,
					 "object \"%s\": its SHA-256 differs from the "
					 "record's for that range",
					 name);
		return object_failed(rb, name);
	}
	return true;
}

/* An incremental object (or range): its blocks patched in place. */
static bool
apply_incremental(void *arg, const char *name, uint64_t start, uint64_t end,
				  int range_index, BkError *err)
{
	Rebuild *rb = arg;
	IncrSink incr = {.fd = rb->fd,
					 .path = rb->fd_path,
					 .writer = rb->writer,
					 .file = rb->entry,
					 .part_start = start,
					 .part_end = end,
					 .part_blocks = range_index < 0
										? rb->entry->blocks
										: rb->entry->ranges[range_index].blocks,
					 .block_size = rb->block_size};
	uint64_t size = 0;
	bool ok;

	ok = bk_snapshot_read_object(rb->repo, rb->decoder, rb->source, name,
								 incr_sink, &incr, NULL, &size, err) &&
		 writer_flush(rb->writer, err);
	free(incr.numbers);
	if (!ok)
		return object_failed(rb, name);
	if (rb->bytes_read != NULL)
		*rb->bytes_read += size;
	if (incr.header_have < BK_INCR_HEADER_LEN ||
		incr.data_have != (uint64_t) incr.block_count * incr.block_size)
	{
		incr_bad(err, "it ends before the blocks its header announces");
		return object_failed(rb, name);
	}
	return true;
}

/* The objects bk_snapshot_prefetch_file hints at. */
typedef struct PrefetchHint
{
	const BkRepo *repo;
	const char *source;
	uint64_t max_size;
} PrefetchHint;

static bool
prefetch_object(void *arg, const char *name, uint64_t start, uint64_t end,
				int range_index, BkError *err)
{
	PrefetchHint *hint = arg;

	(void) range_index;
	(void) err;
	/* A large object is read ahead as it is read: no slot for it. */
	if (end - start <= hint->max_size)
		bk_repo_prefetch(hint->repo, BK_REPO_ARCHIVE, hint->source,
						 BK_KIND_SNAPSHOT, name);
	return true;
}

void
bk_snapshot_prefetch_file(const BkRepo *repo, const char *source,
						  BkSnapRecord *const *chain, int chain_len,
						  const BkSnapFile *file, uint64_t max_size)
{
	PrefetchHint hint = {.repo = repo, .source = source, .max_size = max_size};
	const BkSnapFile *entry = file;
	int base = chain_len - 1;
	BkError err;

	/* The objects in the order bk_snapshot_rebuild_file opens them. */
	while (entry != NULL && entry->incremental && base > 0)
		entry = bk_snapshot_record_file(chain[--base], file->path);
	if (entry == NULL || entry->incremental)
		return; /* the rebuild reports it */
	(void) each_object(chain[base]->id, entry, prefetch_object, &hint, &err);
	for (int step = base + 1; step < chain_len; step++)
	{
		entry = bk_snapshot_record_file(chain[step], file->path);
		if (entry == NULL || !entry->incremental)
			return; /* the rebuild reports it */
		(void) each_object(chain[step]->id, entry, prefetch_object, &hint,
						   &err);
	}
}

bool
bk_snapshot_rebuild_file(const BkRepo *repo, BkDecoder *decoder,
						 const char *source, BkSnapRecord *const *chain,
						 int chain_len, const BkSnapFile *file, int fd,
						 const char *fd_path, bool writeback,
						 BkFileChecksum *sum, uint64_t *bytes_read,
						 bool *fd_failed, char *failed_object, BkError *err)
{
	const BkSnapRecord *target = chain[chain_len - 1];
	int base = chain_len - 1;
	const BkSnapFile *entry = file;
	FileWriter writer = {.fd = fd,
						 .path = fd_path,
						 .writeback = writeback,
						 .drop_behind = writeback};
	Rebuild rb = {.repo = repo,
				  .decoder = decoder,
				  .source = source,
				  .fd = fd,
				  .fd_path = fd_path,
				  .writer = &writer,
				  .whole = {.writer = &writer},
				  .digest = sum->sha256,
				  .bytes_read = bytes_read,
				  .failed_object = failed_object};
	uint64_t largest;
	bool ok = false;

	if (fd_failed != NULL)
		*fd_failed = false;
	if (failed_object != NULL)
		failed_object[0] = '\0';
	/* Down the chain to the snapshot that sent this file whole. */
	while (entry->incremental)
	{
		if (base == 0)
		{
			bk_error_set(err, BK_ERR_FORMAT,
						 "it is incremental, but no older snapshot in the "
						 "chain has it");
			return rebuild_failed(err, target->id, file->path);
		}
		base--;
		entry = bk_snapshot_record_file(chain[base], file->path);
		if (entry == NULL)
		{
			bk_error_set(err, BK_ERR_FORMAT,
						 "it is incremental, but its parent snapshot %s "
						 "does not have it",
						 chain[base]->id);
			return rebuild_failed(err, target->id, file->path);
		}
	}
	largest = entry->size > file->size ? entry->size : file->size;
	writer.cap =
		largest < WRITE_BUFFER_SIZE ? (size_t) largest : WRITE_BUFFER_SIZE;
	if (writer.cap < 8192)
		writer.cap = 8192;
	if (ftruncate(fd, 0) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not truncate \"%s\": %s", fd_path,
					 strerror(errno));
		writer.failed = true;
		rebuild_failed(err, target->id, file->path);
		goto done;
	}
	/* Sent in ranges, and restored from them alone: its CRC as written. */
	memset(sum, 0, sizeof(*sum));
	sum->is_crc32c = file->range_count > 0;
	rb.whole.crc = base == chain_len - 1 && entry->range_count > 0;
	rb.entry = entry;
	if (!each_object(chain[base]->id, entry, apply_whole, &rb, err))
	{
		rebuild_failed(err, chain[base]->id, file->path);
		goto done;
	}
	sum->crc32c = rb.whole.crc32c;

	/* Patch the changed blocks of each later snapshot in place. */
	for (int step = base + 1; step < chain_len; step++)
	{
		entry = bk_snapshot_record_file(chain[step], file->path);
		if (entry == NULL || !entry->incremental)
		{
			bk_error_set(err, BK_ERR_INTERNAL, "chain walk lost the file");
			rebuild_failed(err, chain[step]->id, file->path);
			goto done;
		}
		/* Cut or extend (with zeros) the parent's version to the new length. */
		if (ftruncate(fd, (off_t) entry->size) != 0)
		{
			bk_error_set(err, BK_ERR_IO, "could not resize \"%s\": %s", fd_path,
						 strerror(errno));
			writer.failed = true;
			rebuild_failed(err, chain[step]->id, file->path);
			goto done;
		}
		rb.entry = entry;
		rb.block_size = chain[step]->block_size;
		if (!each_object(chain[step]->id, entry, apply_incremental, &rb, err))
		{
			rebuild_failed(err, chain[step]->id, file->path);
			goto done;
		}
	}
	/* Patched: read back for its digest, and its ranges' if it has them. */
	if (base != chain_len - 1)
	{
		bool matches;

		if (!bk_snapshot_file_hash(fd, fd_path, file, writeback, sum, &matches,
								   err))
		{
			writer.failed = true;
			rebuild_failed(err, target->id, file->path);
			goto done;
		}
		if (file->range_count > 0 && !matches)
		{
			bk_error_set(err, BK_ERR_FORMAT,
						 "the file rebuilt through its incremental chain "
						 "differs from the one the snapshot read (a range's "
						 "SHA-256 does not match)");
			rebuild_failed(err, target->id, file->path);
			goto done;
		}
	}
	ok = true;
done:
	if (fd_failed != NULL)
		*fd_failed = writer.failed;
	free(writer.buf);
	return ok;
}

/* ------------------------------------------------------------ manifest */

bool
bk_manifest_check(const char *text, size_t len, BkError *err)
{
	json_error_t json_err;
	json_t *root = json_loadb(text, len, 0, &json_err);
	const char *stated;
	size_t last_newline = 0;
	size_t previous_newline = 0;
	int newlines = 0;
	uint8_t digest[BK_SHA256_LEN];
	char hex[2 * BK_SHA256_LEN + 1];

	if (root == NULL)
		return bk_error_set(err, BK_ERR_FORMAT,
							"backup_manifest is not JSON (line %d: %s)",
							json_err.line, json_err.text);
	if (json_integer_value(
			json_object_get(root, "PostgreSQL-Backup-Manifest-Version")) != 1 ||
		!json_is_array(json_object_get(root, "Files")))
	{
		json_decref(root);
		return bk_error_set(err, BK_ERR_FORMAT,
							"backup_manifest is not a version 1 PostgreSQL "
							"backup manifest with a Files list");
	}
	stated = json_string_value(json_object_get(root, "Manifest-Checksum"));
	for (size_t pos = len; pos > 0; pos--)
		if (text[pos - 1] == '\n')
		{
			if (++newlines == 1)
				last_newline = pos - 1;
			else
			{
				previous_newline = pos - 1;
				break;
			}
		}
	if (stated == NULL || newlines < 2 || last_newline != len - 1 ||
		!bk_sha256(text, previous_newline + 1, digest, err))
	{
		json_decref(root);
		return bk_error_set(err, BK_ERR_FORMAT,
							"backup_manifest has no Manifest-Checksum line "
							"ending it");
	}
	bk_hex_encode(digest, BK_SHA256_LEN, hex);
	if (strcasecmp(hex, stated) != 0)
	{
		json_decref(root);
		return bk_error_set(err, BK_ERR_FORMAT,
							"backup_manifest's Manifest-Checksum does not "
							"match its content");
	}
	json_decref(root);
	return true;
}
