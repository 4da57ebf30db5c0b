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

#include "bk_util.h"

#define IO_BUFFER_SIZE (1024 * 1024)
/* Pieces of a rebuilt file are gathered into writes of up to this size. */
#define WRITE_BUFFER_SIZE (1024 * 1024)
/* A piece at least this large, with nothing gathered, is written as it is. */
#define WRITE_DIRECT_MIN (256 * 1024)
/* With writeback on, the kernel is told to write out every this many bytes. */
#define WRITEBACK_STEP (8 * 1024 * 1024)

bool
bk_snapshot_data_name(const char *id, const char *path, char *out,
					  size_t out_len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t used =
		(size_t) snprintf(out, out_len, "%s/%s/", id, BK_SNAPSHOT_DATA);

	if (used >= out_len)
		return false;
	for (const unsigned char *p = (const unsigned char *) path; *p; p++)
	{
		if (*p < 0x21 || *p > 0x7e || *p == '%' || *p == '\\')
		{
			if (used + 3 >= out_len)
				return false;
			out[used++] = '%';
			out[used++] = hex[*p >> 4];
			out[used++] = hex[*p & 0x0f];
		}
		else
		{
			if (used + 1 >= out_len)
				return false;
			out[used++] = (char) *p;
		}
	}
	out[used] = '\0';
	return true;
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
		free(record->files[fileIdx].path);
	for (size_t dirIdx = 0; dirIdx < record->directory_count; dirIdx++)
		free(record->directories[dirIdx].path);
	for (size_t spcIdx = 0; spcIdx < record->tablespace_count; spcIdx++)
		free(record->tablespaces[spcIdx].path);
	free(record->files);
	free(record->directories);
	free(record->tablespaces);
	free(record);
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
		const char *path = json_string_value(json_object_get(item, "path"));
		const char *encoding =
			json_string_value(json_object_get(item, "encoding"));
		const char *sha = json_string_value(json_object_get(item, "sha256"));
		json_t *size = json_object_get(item, "size");
		char what[BK_ERROR_MESSAGE_MAX / 2];

		if (!bk_snapshot_path_safe(path))
		{
			snprintf(what, sizeof(what), "file %zu has an unsafe path \"%s\"",
					 fileIdx, path ? path : "(none)");
			return record_bad(err, record->id, what);
		}
		file->path = strdup(path);
		record->file_count = fileIdx + 1;
		if (file->path == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
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
		const char *path = json_string_value(json_object_get(item, "path"));

		if (!bk_snapshot_path_safe(path) ||
			!parse_mode(json_object_get(item, "mode"), &dir->mode))
			return record_bad(err, record->id,
							  "a directory has an unsafe path or no mode");
		dir->path = strdup(path);
		record->directory_count = dirIdx + 1;
		if (dir->path == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
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
		const char *path = json_string_value(json_object_get(item, "path"));

		if (json_is_string(oid))
			spc->oid = (uint32_t) strtoul(json_string_value(oid), NULL, 10);
		else if (json_is_integer(oid))
			spc->oid = (uint32_t) json_integer_value(oid);
		if (spc->oid == 0 || path == NULL || path[0] != '/')
			return record_bad(err, record->id,
							  "a tablespace lacks an oid or an absolute path");
		spc->path = strdup(path);
		record->tablespace_count = spcIdx + 1;
		if (spc->path == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
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
	if (json_integer_value(json_object_get(root, "format")) != 1)
	{
		record_bad(err, id, "\"format\" is not 1");
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
	record->checksum_failure_count =
		json_array_size(json_object_get(root, "checksum_failures"));
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
 * write; its errors are left to that fsync.
 */
typedef struct FileWriter
{
	int fd;
	const char *path;
	bool writeback;
	size_t cap; /* size of buf, once allocated */
	uint8_t *buf;
	size_t len;
	uint64_t offset;   /* where buf[0] goes */
	uint64_t wb_start; /* the run written since writeback last started */
	uint64_t wb_end;
} FileWriter;

static void
writer_wrote(FileWriter *writer, uint64_t offset, size_t len)
{
	if (!writer->writeback)
		return;
	if (offset != writer->wb_end)
		writer->wb_start = offset;
	writer->wb_end = offset + len;
	if (writer->wb_end - writer->wb_start >= WRITEBACK_STEP)
	{
		(void) sync_file_range(writer->fd, (off_t) writer->wb_start,
							   (off_t) (writer->wb_end - writer->wb_start),
							   SYNC_FILE_RANGE_WRITE);
		writer->wb_start = writer->wb_end;
	}
}

static bool
writer_flush(FileWriter *writer, BkError *err)
{
	if (writer->len == 0)
		return true;
	if (!bk_pwrite_all(writer->fd, writer->buf, writer->len, writer->offset,
					   writer->path, err))
		return false;
	writer_wrote(writer, writer->offset, writer->len);
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
				return false;
			writer_wrote(writer, offset, len);
			return true;
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
} WholeSink;

static bool
whole_sink(void *arg, const uint8_t *data, size_t len, BkError *err)
{
	WholeSink *sink = arg;

	if (!writer_write(sink->writer, data, len, sink->offset, err))
		return false;
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
	if (sink->block_count != sink->file->blocks || sink->block_count == 0)
		return incr_bad(err, "its block count differs from the record's");
	if ((uint64_t) sink->block_count * block_size > length)
		return incr_bad(err, "more blocks than the file holds");
	sink->numbers = malloc((size_t) sink->block_count * 4);
	if (sink->numbers == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	/* Cut or extend (with zeros) the parent's version to the new length. */
	if (ftruncate(sink->fd, (off_t) length) != 0)
		return bk_error_set(err, BK_ERR_IO, "could not resize \"%s\": %s",
							sink->path, strerror(errno));
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

static bool
rebuild_failed(BkError *err, const char *snapshot_id, const char *path)
{
	return bk_error_prefix(err, "snapshot %s, file \"%s\": ", snapshot_id,
						   path);
}

bool
bk_snapshot_rebuild_file(const BkRepo *repo, BkDecoder *decoder,
						 const char *source, BkSnapRecord *const *chain,
						 int chain_len, const BkSnapFile *file, int fd,
						 const char *fd_path, bool writeback,
						 uint8_t sha256[BK_SHA256_LEN], uint64_t *bytes_read,
						 BkError *err)
{
	const BkSnapRecord *target = chain[chain_len - 1];
	int base = chain_len - 1;
	const BkSnapFile *entry = file;
	char name[BK_OBJECT_NAME_MAX + 1];
	FileWriter writer = {.fd = fd, .path = fd_path, .writeback = writeback};
	WholeSink whole = {.writer = &writer};
	uint64_t size = 0;
	uint64_t largest;
	bool ok = false;

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
		return rebuild_failed(err, target->id, file->path);
	}
	if (!bk_snapshot_data_name(chain[base]->id, file->path, name,
							   sizeof(name)) ||
		!bk_object_name_valid(name, strlen(name)))
	{
		bk_error_set(err, BK_ERR_FORMAT, "its object name is too long");
		return rebuild_failed(err, chain[base]->id, file->path);
	}
	if (!bk_snapshot_read_object(repo, decoder, source, name, whole_sink,
								 &whole, sha256, &size, err) ||
		!writer_flush(&writer, err))
	{
		rebuild_failed(err, chain[base]->id, file->path);
		goto done;
	}
	if (bytes_read != NULL)
		*bytes_read += size;
	if (size != entry->size)
	{
		bk_error_set(err, BK_ERR_FORMAT,
					 "its object holds %" PRIu64
					 " bytes, the record says %" PRIu64,
					 size, entry->size);
		rebuild_failed(err, chain[base]->id, file->path);
		goto done;
	}

	/* Patch the changed blocks of each later snapshot in place. */
	for (int step = base + 1; step < chain_len; step++)
	{
		IncrSink incr = {.fd = fd, .path = fd_path, .writer = &writer};
		bool read_ok;

		entry = bk_snapshot_record_file(chain[step], file->path);
		if (entry == NULL || !entry->incremental)
		{
			bk_error_set(err, BK_ERR_INTERNAL, "chain walk lost the file");
			rebuild_failed(err, chain[step]->id, file->path);
			goto done;
		}
		if (entry->blocks == 0)
		{
			if (ftruncate(fd, (off_t) entry->size) != 0)
			{
				bk_error_set(err, BK_ERR_IO, "could not resize \"%s\": %s",
							 fd_path, strerror(errno));
				rebuild_failed(err, chain[step]->id, file->path);
				goto done;
			}
			continue;
		}
		incr.file = entry;
		incr.block_size = chain[step]->block_size;
		if (!bk_snapshot_data_name(chain[step]->id, file->path, name,
								   sizeof(name)))
		{
			bk_error_set(err, BK_ERR_FORMAT, "its object name is too long");
			rebuild_failed(err, chain[step]->id, file->path);
			goto done;
		}
		read_ok = bk_snapshot_read_object(repo, decoder, source, name,
										  incr_sink, &incr, NULL, &size, err) &&
				  writer_flush(&writer, err);
		free(incr.numbers);
		if (!read_ok)
		{
			rebuild_failed(err, chain[step]->id, file->path);
			goto done;
		}
		if (bytes_read != NULL)
			*bytes_read += size;
		if (incr.header_have < BK_INCR_HEADER_LEN ||
			incr.data_have != (uint64_t) incr.block_count * incr.block_size)
		{
			incr_bad(err, "it ends before the blocks its header announces");
			rebuild_failed(err, chain[step]->id, file->path);
			goto done;
		}
	}
	/* Patched: read back for its digest (sent whole: the decoder's is). */
	if (base != chain_len - 1 && !bk_sha256_fd(fd, fd_path, sha256, err))
	{
		rebuild_failed(err, target->id, file->path);
		goto done;
	}
	ok = true;
done:
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
