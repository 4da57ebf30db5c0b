/*
 * bk_test_snapshot.c
 *		Test fixture: send a plain-format base backup directory to the real
 *		broker as a bk snapshot, exactly as docs/snapshot-format.md says
 *		bk_snapshot() does, so that restore, verify, list and expire can be
 *		tested before (and independently of) the producer inside PostgreSQL.
 *
 *	  bk_test_snapshot --brokers B --prefix P --key FILE.pub --source S
 *					   [--id ID] [--chunk-size N] [--segment-size N]
 *					   [--pg-version N] [--data-checksums true|false]
 *					   [--tablespace-origin NEW=OLD]...
 *					   [--kind incr|diff --parent ID --parent-dir DIR]
 *					   [--no-record] [--skip PATH]
 *					   DIR
 *
 * DIR is what "pg_basebackup -D DIR -Fp -X none --manifest-checksums=SHA256"
 * wrote: backup_label, backup_manifest, and the files.  The start LSN and
 * timeline come from backup_label, the stop LSN from the manifest's
 * WAL-Ranges, the start and stop times from the mtimes of backup_label
 * (received first) and backup_manifest (received after the backup
 * stopped).  Tablespaces are the symlinks in pg_tblspc; with -T
 * OLD=NEW given to pg_basebackup, pass --tablespace-origin NEW=OLD so the
 * record names the original location.  tablespace_map is generated
 * (pg_basebackup writes none in plain format).
 *
 * With --kind and --parent/--parent-dir (an earlier such directory, sent
 * as snapshot ID), main-fork relation files the parent has are sent
 * incremental: the blocks whose page LSN is at or after the parent's start
 * LSN, and all-zero blocks; everything else whole.  --no-record leaves out
 * snapshot.json (a cancelled snapshot); --skip PATH leaves out one data
 * object (an incomplete one).  Prints "ID START-LSN STOP-LSN".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bk_crypto.h"
#include "bk_frame.h"
#include "bk_kafka.h"
#include "bk_keys.h"
#include "bk_snapshot_format.h"
#include "bk_topics.h"
#include "bk_util.h"

#define BLOCK_SIZE 8192

typedef struct Sender
{
	BkEncoder *enc;
	int fd;              /* read from a file, or */
	const uint8_t *data; /* from memory */
	uint64_t data_pos;
	uint8_t *buf;
} Sender;

typedef struct Fixture
{
	const char *dir;
	const char *source;
	const char *id;
	char topic[BK_TOPIC_NAME_MAX + 1];
	BkProducer *producer;
	Sender sender;
	const char *kind;
	const char *parent;
	const char *parent_dir;
	uint64_t parent_start_lsn;
	const char *skip;
	json_t *files;
	json_t *directories;
	json_t *tablespaces;
	char map_text[8192];
	int origin_count;
	char *origin_new[16];
	char *origin_old[16];
	uint64_t objects;
	uint64_t bytes;
	uint64_t bytes_sent;
} Fixture;

static void
die(const char *what, const char *detail)
{
	fprintf(stderr, "bk_test_snapshot: %s: %s\n", what, detail);
	exit(1);
}

static bool
next_frame(void *arg, const uint8_t **frame, size_t *len, BkFrame *info,
		   BkError *err)
{
	Sender *sender = arg;
	uint32_t chunk_len;
	const uint8_t *plain;

	if (bk_encoder_done(sender->enc))
	{
		*frame = NULL;
		return true;
	}
	chunk_len = bk_encoder_next_chunk_len(sender->enc);
	if (sender->data != NULL)
	{
		plain = sender->data + sender->data_pos;
		sender->data_pos += chunk_len;
	}
	else
	{
		size_t have = 0;

		while (have < chunk_len)
		{
			ssize_t got =
				read(sender->fd, sender->buf + have, chunk_len - have);

			if (got <= 0)
				return bk_error_set(err, BK_ERR_IO, "short read");
			have += (size_t) got;
		}
		plain = sender->buf;
	}
	return bk_encoder_chunk(sender->enc, plain, chunk_len, frame, len, info,
							err);
}

/* Object names: "<id>/<part>[/<encoded path>]". */
static void
object_name(const Fixture *fx, const char *part, const char *path, char *out,
			size_t out_len)
{
	size_t used = (size_t) snprintf(out, out_len, "%s/%s", fx->id, part);

	if (path == NULL)
		return;
	out[used++] = '/';
	if (!bk_snapshot_path_encode(path, out + used, out_len - used))
	{
		fprintf(stderr, "bk_test_snapshot: path too long: %s\n", path);
		exit(1);
	}
}

static void
send_object(Fixture *fx, const char *name, const char *meta, int fd,
			const uint8_t *data, uint64_t size)
{
	BkObjectInfo info = {0};
	char key[BK_SOURCE_ID_MAX + BK_OBJECT_NAME_MAX + 2];
	BkError err;

	info.kind = BK_KIND_SNAPSHOT;
	info.source_id = fx->source;
	info.name = name;
	info.meta = meta;
	info.size = size;
	fx->sender.fd = fd;
	fx->sender.data = data;
	fx->sender.data_pos = 0;
	snprintf(key, sizeof(key), "%s/%s", fx->source, name);
	bk_error_clear(&err);
	if (!bk_encoder_begin(fx->sender.enc, &info, &err) ||
		!bk_producer_send_object(fx->producer, fx->topic, key, strlen(key),
								 next_frame, &fx->sender, NULL, NULL, NULL,
								 &err))
		die(name, err.message);
	fx->bytes_sent += bk_encoder_bytes_out(fx->sender.enc);
}

static void
file_sha256(const char *path, char *hex)
{
	int fd = open(path, O_RDONLY);
	BkSha256 *sha;
	uint8_t buf[65536];
	uint8_t digest[BK_SHA256_LEN];
	ssize_t got;
	BkError err;

	if (fd < 0)
		die(path, strerror(errno));
	sha = bk_sha256_new(&err);
	while ((got = read(fd, buf, sizeof(buf))) > 0)
		bk_sha256_update(sha, buf, (size_t) got, &err);
	bk_sha256_final(sha, digest, &err);
	bk_sha256_free(sha);
	close(fd);
	bk_hex_encode(digest, BK_SHA256_LEN, hex);
}

static bool
all_digits(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t pos = 0; pos < len; pos++)
		if (s[pos] < '0' || s[pos] > '9')
			return false;
	return true;
}

/* "<n>" or "<n>.<segment>" */
static bool
relation_file_name(const char *name)
{
	const char *dot = strchr(name, '.');

	if (dot == NULL)
		return all_digits(name, strlen(name));
	return all_digits(name, (size_t) (dot - name)) &&
		   all_digits(dot + 1, strlen(dot + 1));
}

/* Main fork of a relation: base/<db>/<n>, global/<n>, or in a tablespace. */
static bool
main_fork(const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[4096];

	if (slash == NULL || !relation_file_name(slash + 1))
		return false;
	snprintf(dir, sizeof(dir), "%.*s", (int) (slash - path), path);
	if (strcmp(dir, "global") == 0)
		return true;
	if (strncmp(dir, "base/", 5) == 0)
		return all_digits(dir + 5, strlen(dir + 5));
	if (strncmp(dir, "pg_tblspc/", 10) == 0)
	{
		const char *last = strrchr(dir, '/');

		return all_digits(last + 1, strlen(last + 1));
	}
	return false;
}

static bool
block_changed(const uint8_t *block, uint64_t parent_start_lsn)
{
	uint64_t lsn = ((uint64_t) (block[0] | block[1] << 8 | block[2] << 16 |
								(uint32_t) block[3] << 24)
					<< 32) |
				   (uint32_t) (block[4] | block[5] << 8 | block[6] << 16 |
							   (uint32_t) block[7] << 24);
	bool zero = true;

	for (size_t pos = 0; pos < BLOCK_SIZE && zero; pos++)
		zero = block[pos] == 0;
	return zero || lsn >= parent_start_lsn;
}

static void
send_file(Fixture *fx, const char *full, const char *rel, const struct stat *st)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	char meta[1024];
	char hex[2 * BK_SHA256_LEN + 1];
	char parent_path[8192];
	json_t *item;
	bool incremental = false;
	struct stat parent_st;

	file_sha256(full, hex);
	object_name(fx, "data", rel, name, sizeof(name));
	item = json_pack("{s:s, s:I, s:I, s:s}", "path", rel, "size",
					 (json_int_t) st->st_size, "mtime",
					 (json_int_t) st->st_mtime, "sha256", hex);
	{
		char mode[16];

		snprintf(mode, sizeof(mode), "%04o", (unsigned) (st->st_mode & 07777));
		json_object_set_new(item, "mode", json_string(mode));
	}
	snprintf(parent_path, sizeof(parent_path), "%s/%s",
			 fx->parent_dir ? fx->parent_dir : "", rel);
	if (fx->parent_dir != NULL && main_fork(rel) &&
		stat(parent_path, &parent_st) == 0 && st->st_size % BLOCK_SIZE == 0)
		incremental = true;
	fx->bytes += (uint64_t) st->st_size;

	if (incremental)
	{
		int fd = open(full, O_RDONLY);
		uint64_t block_total = (uint64_t) st->st_size / BLOCK_SIZE;
		uint8_t *content = malloc((size_t) st->st_size + 1);
		uint8_t *object;
		uint32_t changed = 0;
		size_t object_len;

		if (fd < 0 || content == NULL ||
			read(fd, content, (size_t) st->st_size) != st->st_size)
			die(full, "cannot read");
		close(fd);
		for (uint64_t blockIdx = 0; blockIdx < block_total; blockIdx++)
			if (block_changed(content + blockIdx * BLOCK_SIZE,
							  fx->parent_start_lsn))
				changed++;
		json_object_set_new(item, "encoding", json_string("incremental"));
		json_object_set_new(item, "blocks", json_integer(changed));
		json_array_append_new(fx->files, item);
		if (changed == 0 || (fx->skip && strcmp(fx->skip, rel) == 0))
		{
			free(content);
			if (changed > 0)
				fx->objects++;
			return;
		}
		object_len = BK_INCR_HEADER_LEN + (size_t) changed * (4 + BLOCK_SIZE);
		object = malloc(object_len);
		bk_incr_header_write(
			object, &(BkIncrHeader){.file_length = (uint64_t) st->st_size,
									.block_size = BLOCK_SIZE,
									.block_count = changed});
		{
			size_t slot = 0;

			for (uint64_t blockIdx = 0; blockIdx < block_total; blockIdx++)
			{
				if (!block_changed(content + blockIdx * BLOCK_SIZE,
								   fx->parent_start_lsn))
					continue;
				bk_put_be32(object + BK_INCR_HEADER_LEN + 4 * slot,
							(uint32_t) blockIdx);
				memcpy(object + BK_INCR_HEADER_LEN + 4 * (size_t) changed +
						   slot * BLOCK_SIZE,
					   content + blockIdx * BLOCK_SIZE, BLOCK_SIZE);
				slot++;
			}
		}
		snprintf(meta, sizeof(meta),
				 "snapshot=%s\nmode=%04o\nmtime=%lld\nsize=%lld\nencoding="
				 "incremental",
				 fx->id, (unsigned) (st->st_mode & 07777),
				 (long long) st->st_mtime, (long long) st->st_size);
		send_object(fx, name, meta, -1, object, object_len);
		fx->objects++;
		free(object);
		free(content);
		return;
	}

	json_object_set_new(item, "encoding", json_string("whole"));
	json_array_append_new(fx->files, item);
	fx->objects++;
	if (fx->skip && strcmp(fx->skip, rel) == 0)
		return;
	{
		int fd = open(full, O_RDONLY);

		if (fd < 0)
			die(full, strerror(errno));
		snprintf(
			meta, sizeof(meta),
			"snapshot=%s\nmode=%04o\nmtime=%lld\nsize=%lld\nencoding=whole",
			fx->id, (unsigned) (st->st_mode & 07777), (long long) st->st_mtime,
			(long long) st->st_size);
		send_object(fx, name, meta, fd, NULL, (uint64_t) st->st_size);
		close(fd);
	}
}

static void
add_directory(Fixture *fx, const char *rel, const struct stat *st)
{
	char mode[16];

	snprintf(mode, sizeof(mode), "%04o", (unsigned) (st->st_mode & 07777));
	json_array_append_new(fx->directories,
						  json_pack("{s:s, s:s}", "path", rel, "mode", mode));
}

static const char *
origin_of(const Fixture *fx, const char *target)
{
	for (int originIdx = 0; originIdx < fx->origin_count; originIdx++)
		if (strcmp(fx->origin_new[originIdx], target) == 0)
			return fx->origin_old[originIdx];
	return target;
}

static void
walk(Fixture *fx, const char *full_dir, const char *rel_dir)
{
	DIR *dir = opendir(full_dir);
	struct dirent *entry;

	if (dir == NULL)
		die(full_dir, strerror(errno));
	while ((entry = readdir(dir)) != NULL)
	{
		char full[8192];
		char rel[8192];
		struct stat st;

		if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
			continue;
		snprintf(full, sizeof(full), "%s/%s", full_dir, entry->d_name);
		if (rel_dir[0] == '\0')
		{
			snprintf(rel, sizeof(rel), "%s", entry->d_name);
			if (strcmp(rel, "backup_label") == 0 ||
				strcmp(rel, "tablespace_map") == 0 ||
				strcmp(rel, "backup_manifest") == 0)
				continue;
		}
		else
			snprintf(rel, sizeof(rel), "%s/%s", rel_dir, entry->d_name);
		if (lstat(full, &st) != 0)
			die(full, strerror(errno));
		if (S_ISLNK(st.st_mode) && strcmp(rel_dir, "pg_tblspc") == 0)
		{
			char target[4096];
			ssize_t len = readlink(full, target, sizeof(target) - 1);
			size_t used = strlen(fx->map_text);

			if (len <= 0)
				die(full, "unreadable symlink");
			target[len] = '\0';
			json_array_append_new(
				fx->tablespaces,
				json_pack("{s:I, s:s}", "oid",
						  (json_int_t) strtoll(entry->d_name, NULL, 10), "path",
						  origin_of(fx, target)));
			snprintf(fx->map_text + used, sizeof(fx->map_text) - used,
					 "%s %s\n", entry->d_name, origin_of(fx, target));
			walk(fx, target, rel);
		}
		else if (S_ISDIR(st.st_mode))
		{
			add_directory(fx, rel, &st);
			walk(fx, full, rel);
		}
		else if (S_ISREG(st.st_mode))
			send_file(fx, full, rel, &st);
	}
	closedir(dir);
}

static char *
read_text(const char *path)
{
	char *data;
	size_t len;
	BkError err;

	if (!bk_read_file(path, 64 * 1024 * 1024, &data, &len, &err))
		die(path, err.message);
	return data;
}

static void
iso_time(const struct timespec *ts, char *out, size_t out_len)
{
	bk_format_time_utc((int64_t) ts->tv_sec * 1000 + ts->tv_nsec / 1000000, out,
					   out_len);
}

static void
quiet(void *arg, int level, const char *facility, const char *message)
{
	if (level <= 3)
		fprintf(stderr, "kafka: %s: %s\n", facility, message);
}

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{"brokers", required_argument, NULL, 'b'},
		{"prefix", required_argument, NULL, 'p'},
		{"key", required_argument, NULL, 'k'},
		{"source", required_argument, NULL, 's'},
		{"id", required_argument, NULL, 'i'},
		{"chunk-size", required_argument, NULL, 'c'},
		{"segment-size", required_argument, NULL, 'g'},
		{"pg-version", required_argument, NULL, 'v'},
		{"data-checksums", required_argument, NULL, 'd'},
		{"tablespace-origin", required_argument, NULL, 'T'},
		{"kind", required_argument, NULL, 'K'},
		{"parent", required_argument, NULL, 'P'},
		{"parent-dir", required_argument, NULL, 'D'},
		{"no-record", no_argument, NULL, 'n'},
		{"skip", required_argument, NULL, 'S'},
		{NULL, 0, NULL, 0}};
	Fixture fx = {.kind = "full"};
	const char *brokers = NULL;
	const char *prefix = "bk";
	const char *key_path = NULL;
	uint32_t chunk_size = BK_CHUNK_SIZE_DEFAULT;
	uint64_t segment_size = 16 * 1024 * 1024;
	long pg_version = 150000;
	bool data_checksums = true;
	bool send_record = true;
	BkKafkaSettings settings = {0};
	BkKeyring *ring;
	BkError err;
	char id_buf[64];
	char path[8192];
	char meta[4096];
	char name[BK_OBJECT_NAME_MAX + 1];
	char start_time[40];
	char stop_time[40];
	char start_lsn[32] = "";
	char stop_lsn[32] = "";
	unsigned int timeline = 0;
	uint64_t system_identifier = 0;
	struct stat label_st;
	struct stat manifest_st;
	char *label;
	char *manifest;
	json_t *manifest_json;
	json_t *record;
	char *record_text;
	int code;

	while ((code = getopt_long(argc, argv, "", options, NULL)) != -1)
	{
		switch (code)
		{
			case 'b':
				brokers = optarg;
				break;
			case 'p':
				prefix = optarg;
				break;
			case 'k':
				key_path = optarg;
				break;
			case 's':
				fx.source = optarg;
				break;
			case 'i':
				fx.id = optarg;
				break;
			case 'c':
				chunk_size = (uint32_t) strtoul(optarg, NULL, 10);
				break;
			case 'g':
				segment_size = strtoull(optarg, NULL, 10);
				break;
			case 'v':
				pg_version = strtol(optarg, NULL, 10);
				break;
			case 'd':
				data_checksums = strcmp(optarg, "true") == 0;
				break;
			case 'T':
			{
				char *copy = strdup(optarg);
				char *eq = strchr(copy, '=');

				if (eq == NULL || fx.origin_count == 16)
					die("--tablespace-origin", "expects NEW=OLD");
				*eq = '\0';
				fx.origin_new[fx.origin_count] = copy;
				fx.origin_old[fx.origin_count++] = eq + 1;
				break;
			}
			case 'K':
				fx.kind = optarg;
				break;
			case 'P':
				fx.parent = optarg;
				break;
			case 'D':
				fx.parent_dir = optarg;
				break;
			case 'n':
				send_record = false;
				break;
			case 'S':
				fx.skip = optarg;
				break;
			default:
				return 2;
		}
	}
	if (brokers == NULL || key_path == NULL || fx.source == NULL ||
		optind != argc - 1 ||
		(strcmp(fx.kind, "full") != 0 &&
		 (fx.parent == NULL || fx.parent_dir == NULL)))
	{
		fprintf(stderr,
				"usage: bk_test_snapshot --brokers B --prefix P --key FILE.pub "
				"--source S [--kind incr --parent ID --parent-dir DIR] "
				"[options] DIR\n");
		return 2;
	}
	fx.dir = argv[optind];

	/* What the base backup says about itself. */
	snprintf(path, sizeof(path), "%s/backup_label", fx.dir);
	if (stat(path, &label_st) != 0)
		die(path, strerror(errno));
	label = read_text(path);
	{
		const char *line = strstr(label, "START WAL LOCATION: ");
		const char *tli = strstr(label, "START TIMELINE: ");

		if (line == NULL || tli == NULL ||
			sscanf(line + 20, "%31s", start_lsn) != 1 ||
			sscanf(tli + 16, "%u", &timeline) != 1)
			die(path, "no START WAL LOCATION or START TIMELINE");
	}
	snprintf(path, sizeof(path), "%s/backup_manifest", fx.dir);
	if (stat(path, &manifest_st) != 0)
		die(path, strerror(errno));
	manifest = read_text(path);
	manifest_json = json_loads(manifest, 0, NULL);
	{
		json_t *ranges = json_object_get(manifest_json, "WAL-Ranges");
		const char *end = json_string_value(json_object_get(
			json_array_get(ranges, json_array_size(ranges) - 1), "End-LSN"));

		if (end == NULL)
			die(path, "no WAL-Ranges End-LSN");
		bk_strlcpy(stop_lsn, end, sizeof(stop_lsn));
	}
	if (fx.parent_dir != NULL)
	{
		char *parent_label;
		const char *line;
		unsigned int hi;
		unsigned int lo;

		snprintf(path, sizeof(path), "%s/backup_label", fx.parent_dir);
		parent_label = read_text(path);
		line = strstr(parent_label, "START WAL LOCATION: ");
		if (line == NULL || sscanf(line + 20, "%X/%X", &hi, &lo) != 2)
			die(path, "no START WAL LOCATION");
		fx.parent_start_lsn = ((uint64_t) hi << 32) | lo;
		free(parent_label);
	}
	snprintf(path, sizeof(path), "%s/global/pg_control", fx.dir);
	{
		int fd = open(path, O_RDONLY);
		uint8_t head[8];

		if (fd < 0 || read(fd, head, 8) != 8)
			die(path, "cannot read");
		close(fd);
		for (int byteIdx = 7; byteIdx >= 0; byteIdx--)
			system_identifier = system_identifier << 8 | head[byteIdx];
	}
	iso_time(&label_st.st_mtim, start_time, sizeof(start_time));
	iso_time(&manifest_st.st_mtim, stop_time, sizeof(stop_time));
	if (fx.id == NULL)
	{
		struct tm tm;
		uint32_t random_part;
		time_t start_s = label_st.st_mtim.tv_sec;

		bk_random_bytes(&random_part, sizeof(random_part), &err);
		gmtime_r(&start_s, &tm);
		snprintf(id_buf, sizeof(id_buf),
				 "%04d%02d%02dT%02d%02d%02dZ-%08" PRIx32, tm.tm_year + 1900,
				 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
				 random_part);
		fx.id = id_buf;
	}

	/* Kafka. */
	bk_error_clear(&err);
	ring = bk_keyring_load(key_path, BK_KEYS_FOR_SOURCE, &err);
	if (ring == NULL)
		die(key_path, err.message);
	settings.brokers = brokers;
	settings.chunk_size = chunk_size;
	settings.timeout_ms = 20000;
	settings.log_fn = quiet;
	fx.producer = bk_producer_new(&settings, &err);
	fx.sender.enc =
		fx.producer ? bk_encoder_new(&ring->keys[0], chunk_size, &err) : NULL;
	if (fx.sender.enc == NULL ||
		!bk_topic_name(prefix, BK_TOPIC_SNAPSHOT, fx.topic, sizeof(fx.topic),
					   &err))
		die("set-up", err.message);
	fx.sender.buf = malloc(chunk_size);
	fx.files = json_array();
	fx.directories = json_array();
	fx.tablespaces = json_array();

	/* The files, then label, map, manifest, and the record last. */
	walk(&fx, fx.dir, "");
	snprintf(meta, sizeof(meta), "snapshot=%s", fx.id);
	object_name(&fx, "backup_label", NULL, name, sizeof(name));
	send_object(&fx, name, meta, -1, (const uint8_t *) label, strlen(label));
	object_name(&fx, "tablespace_map", NULL, name, sizeof(name));
	send_object(&fx, name, meta, -1, (const uint8_t *) fx.map_text,
				strlen(fx.map_text));
	object_name(&fx, "backup_manifest", NULL, name, sizeof(name));
	send_object(&fx, name, meta, -1, (const uint8_t *) manifest,
				strlen(manifest));

	record = json_pack(
		"{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:s, s:s, s:s, s:I, "
		"s:I, s:i, s:b, s:o, s:o, s:o, s:I, s:I, s:[]}",
		"format", 1, "snapshot", fx.id, "source", fx.source, "kind", fx.kind,
		"label", "bk_test_snapshot", "start_lsn", start_lsn, "stop_lsn",
		stop_lsn, "start_timeline", timeline, "stop_timeline", timeline,
		"start_time", start_time, "stop_time", stop_time, "system_identifier",
		"0", "pg_version", (json_int_t) pg_version, "segment_size",
		(json_int_t) segment_size, "block_size", BLOCK_SIZE, "data_checksums",
		data_checksums, "tablespaces", fx.tablespaces, "directories",
		fx.directories, "files", fx.files, "bytes_read", (json_int_t) fx.bytes,
		"bytes_sent", (json_int_t) fx.bytes_sent, "checksum_failures");
	{
		char sysid[32];

		snprintf(sysid, sizeof(sysid), "%" PRIu64, system_identifier);
		json_object_set_new(record, "system_identifier", json_string(sysid));
		if (fx.parent != NULL)
			json_object_set_new(record, "parent", json_string(fx.parent));
		snprintf(
			meta, sizeof(meta),
			"snapshot=%s\nkind=%s\n%s%s%sstart-lsn=%s\nstop-lsn=%s\n"
			"timeline=%u\nstart-time=%s\nstop-time=%s\nobjects=%" PRIu64
			"\nfiles=%zu\nbytes=%" PRIu64
			"\nsystem-identifier=%s\npg-version=%ld\nsegment-size=%" PRIu64,
			fx.id, fx.kind, fx.parent ? "parent=" : "",
			fx.parent ? fx.parent : "", fx.parent ? "\n" : "", start_lsn,
			stop_lsn, timeline, start_time, stop_time, fx.objects,
			json_array_size(fx.files), fx.bytes, sysid, pg_version,
			segment_size);
	}
	record_text = json_dumps(record, JSON_COMPACT);
	if (send_record)
	{
		object_name(&fx, "snapshot.json", NULL, name, sizeof(name));
		send_object(&fx, name, meta, -1, (const uint8_t *) record_text,
					strlen(record_text));
	}
	printf("%s %s %s\n", fx.id, start_lsn, stop_lsn);
	free(record_text);
	json_decref(record);
	json_decref(manifest_json);
	free(label);
	free(manifest);
	free(fx.sender.buf);
	bk_encoder_free(fx.sender.enc);
	bk_producer_free(fx.producer);
	bk_keyring_free(ring);
	return 0;
}
