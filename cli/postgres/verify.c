/*
 * verify.c
 *		bk verify for PostgreSQL sources: the WAL and the snapshots.
 *
 * Without a key it checks what the shipper can: every object parses, every
 * frame passes its CRC-32C, every object is one complete attempt and is
 * the object its name says, the WAL each timeline needs has no gap
 * (wal_catalog.h: up to the branch points of later timelines), and every
 * WAL object is of one database system.  With the private key it also
 * decrypts every object, which checks every AEAD tag and each object's
 * fingerprint, and looks inside WAL segments: the first page's header must
 * name the segment's own LSN, segment size and the source's system
 * identifier.
 *
 * Conflicting copies (same name, different content) are decrypted side by
 * side, and verify says which copy agrees with the rest of the source's
 * archive, so the operator knows which one to move away.
 *
 * Snapshots: without a key, every object's structure and CRCs, and each
 * snapshot's completeness, chain, WAL and system (snapshot_catalog.h).
 * With the key, every object is decrypted, every object the record names
 * must be there, backup_label, tablespace_map and backup_manifest are read
 * (the manifest must parse and its checksum hold), and every file is
 * rebuilt exactly as bk restore would (whole, or through its incremental
 * chain, in a temporary file, so memory stays bounded) and checked against
 * the record's SHA-256.  An incremental file that differs is a problem,
 * except in a snapshot taken before sources compared page digests on a
 * cluster without data checksums (its record says so): there hint bits
 * changed without moving a page's LSN and were legitimately not sent.  A
 * snapshot without a record is reported but is not a problem: it was
 * cancelled, failed, or is still arriving.
 *
 * With the key every object is read once: its decoder checks every frame's
 * CRC as well, so decrypting it finds all its keyless check would, and only
 * objects nothing decrypted (no record names them, or a rebuild failed
 * before reaching them) get a keyless read.  An
 * incremental file unchanged since its parent, whose copy was found good in
 * this run, is not rebuilt again (same_as_parent).  WAL objects, the files
 * of a snapshot and its unread objects are checked by --jobs threads.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "bk_crypto.h"
#include "bk_keys.h"
#include "bk_timeline.h"
#include "bk_util.h"
#include "cli.h"
#include "pg_engine.h"
#include "repo.h"
#include "snapshot_catalog.h"
#include "snapshot_data.h"
#include "verify.h"

#define XLP_LONG_HEADER     0x0002
#define WAL_LONG_HEADER_LEN 40

/* What we learn about one stored object. */
typedef struct ObjectReport
{
	char where[4096]; /* for messages */
	bool ok;
	char problem[BK_ERROR_MESSAGE_MAX];
	BkErrorCode problem_code; /* of the read that failed; FORMAT otherwise */
	BkObjectTracker object;
	bool decrypted;
	uint8_t digest[BK_SHA256_LEN];
	bool has_page_header;
	uint16_t page_magic;
	uint32_t page_tli;
	uint64_t page_addr;
	uint64_t page_sysid;
	uint32_t page_seg_size;
} ObjectReport;

static uint16_t
le16(const uint8_t *p)
{
	return (uint16_t) (p[0] | (p[1] << 8));
}

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) |
		   ((uint32_t) p[3] << 24);
}

static uint64_t
le64(const uint8_t *p)
{
	return (uint64_t) le32(p) | ((uint64_t) le32(p + 4) << 32);
}

typedef struct DecodeVisit
{
	BkDecoder *decoder;
	ObjectReport *report;
	bool first;
} DecodeVisit;

static bool
decode_frame(void *arg, const uint8_t *frame, size_t len, BkError *err)
{
	DecodeVisit *visit = arg;
	const uint8_t *plain;
	size_t plain_len;

	if (!bk_decoder_push(visit->decoder, frame, len, &plain, &plain_len, err))
		return false;
	if (visit->first && plain_len >= WAL_LONG_HEADER_LEN)
	{
		ObjectReport *r = visit->report;

		/* XLogLongPageHeaderData, in the source's (little-endian) byte order. */
		r->page_magic = le16(plain);
		r->has_page_header = (le16(plain + 2) & XLP_LONG_HEADER) != 0;
		r->page_tli = le32(plain + 4);
		r->page_addr = le64(plain + 8);
		r->page_sysid = le64(plain + 24);
		r->page_seg_size = le32(plain + 32);
	}
	visit->first = false;
	return true;
}

static uint64_t
parse_lsn(const char *text)
{
	uint64_t lsn;

	return bk_parse_lsn(text, &lsn) ? lsn : UINT64_MAX;
}

/*
 * Check one stored WAL object (name in area, which must be the object
 * expect_name says) with decoder (NULL without the key); fills report.
 */
static void
check_object(BkVerifier *verifier, BkDecoder *decoder, const BkRepo *repo,
			 BkRepoArea area, const char *source, const char *name,
			 const char *expect_name, ObjectReport *report)
{
	BkError err;
	uint32_t tli;
	uint32_t log;
	uint32_t seg;
	BkWalFileType type = bk_wal_file_type(expect_name, &tli, &log, &seg);
	const char *path = report->where;

	memset(report, 0, sizeof(*report));
	report->problem_code = BK_ERR_FORMAT;
	bk_repo_describe(repo, area, source, BK_KIND_WAL, name, report->where,
					 sizeof(report->where));
	bk_error_clear(&err);
	bk_verify_lock(verifier);
	verifier->objects++;
	bk_verify_unlock(verifier);
	if (decoder == NULL)
	{
		if (!bk_repo_check_object(repo, area, source, BK_KIND_WAL, name,
								  expect_name, &report->object, &err))
		{
			bk_strlcpy(report->problem, err.message, sizeof(report->problem));
			report->problem_code = err.code;
			return;
		}
	}
	else
	{
		/*
		 * One read: the decoder checks every frame's CRC as well (verify
		 * turns that on), the sequence and completeness, every tag and the
		 * fingerprint, which is all the keyless check does but the name.
		 */
		DecodeVisit visit = {decoder, report, true};
		const BkObjectTracker *object;

		bk_decoder_reset(decoder);
		if (!bk_repo_read_frames(repo, area, source, BK_KIND_WAL, name, false,
								 decode_frame, &visit, &err) ||
			!bk_decoder_finish(decoder, &err))
		{
			snprintf(report->problem, sizeof(report->problem), "%s: %s", path,
					 err.message);
			report->problem_code = err.code;
			return;
		}
		object = bk_decoder_object(decoder);
		report->object = *object;
		if (strcmp(object->source, source) != 0 ||
			object->kind != BK_KIND_WAL ||
			strcmp(object->name, expect_name) != 0)
		{
			snprintf(report->problem, sizeof(report->problem),
					 "\"%s\" holds %s object \"%s\" of source \"%s\", not "
					 "the one its name says",
					 path, bk_kind_name(object->kind), object->name,
					 object->source);
			return;
		}
		report->decrypted = true;
		memcpy(report->digest, bk_decoder_digest(decoder), BK_SHA256_LEN);

		if (type == BK_WAL_SEGMENT || type == BK_WAL_PARTIAL)
		{
			const BkObjectTracker *o = &report->object;
			char value[64];
			uint64_t seg_size = 0;
			uint64_t sysid = 0;
			uint64_t start = UINT64_MAX;

			if (bk_meta_get(o->meta, o->meta_len, "segment-size", value,
							sizeof(value)))
				seg_size = strtoull(value, NULL, 10);
			if (bk_meta_get(o->meta, o->meta_len, "system-identifier", value,
							sizeof(value)))
				sysid = strtoull(value, NULL, 10);
			if (bk_meta_get(o->meta, o->meta_len, "lsn-start", value,
							sizeof(value)))
				start = parse_lsn(value);
			if (type == BK_WAL_SEGMENT && o->object_size != seg_size)
				snprintf(report->problem, sizeof(report->problem),
						 "%s: %" PRIu64 " bytes, the segment size is %" PRIu64,
						 path, o->object_size, seg_size);
			else if (!report->has_page_header)
				snprintf(report->problem, sizeof(report->problem),
						 "%s: the first page has no long WAL page header",
						 path);
			else if (report->page_addr != start ||
					 report->page_seg_size != seg_size ||
					 report->page_sysid != sysid)
				snprintf(
					report->problem, sizeof(report->problem),
					"%s: the first page header (address %X/%X, segment size "
					"%" PRIu32 ", system identifier %" PRIu64
					") does not match the segment (%X/%X, %" PRIu64 ", %" PRIu64
					")",
					path, (unsigned) (report->page_addr >> 32),
					(unsigned) report->page_addr, report->page_seg_size,
					report->page_sysid, (unsigned) (start >> 32),
					(unsigned) start, seg_size, sysid);
			if (report->problem[0] != '\0')
				return;
		}
	}
	report->ok = true;
}

static json_t *
copy_json(const ObjectReport *r)
{
	char hex[2 * BK_FINGERPRINT_LEN + 1];
	json_t *copy = json_object();

	json_object_set_new(copy, "path", json_string(r->where));
	json_object_set_new(copy, "ok", json_boolean(r->ok));
	if (!r->ok)
		json_object_set_new(copy, "problem", json_string(r->problem));
	if (r->object.complete)
	{
		bk_hex_encode(r->object.attempt_id, BK_ATTEMPT_ID_LEN, hex);
		json_object_set_new(copy, "attempt", json_string(hex));
		bk_hex_encode(r->object.key_id, BK_KEY_ID_LEN, hex);
		json_object_set_new(copy, "key_id", json_string(hex));
	}
	if (r->decrypted && r->page_seg_size != 0)
	{
		json_object_set_new(copy, "system_identifier",
							json_integer((json_int_t) r->page_sysid));
		json_object_set_new(copy, "page_timeline", json_integer(r->page_tli));
	}
	return copy;
}

typedef struct ConflictCheck
{
	BkVerifier *verifier;
	const BkRepo *repo;
	const char *source;
	uint64_t majority_sysid;
} ConflictCheck;

/* One conflicting copy: decrypt it and the archived one, say which fits. */
static bool
check_conflict(void *arg, const BkRepoEntry *entry, BkError *err)
{
	ConflictCheck *check = arg;
	BkVerifier *verifier = check->verifier;
	char name[BK_OBJECT_NAME_MAX + 1];
	char *dot;
	ObjectReport *first;
	ObjectReport *second;
	char verdict[2 * 4096 + 512];

	if (entry->is_prefix)
		return true;
	bk_strlcpy(name, entry->name, sizeof(name));
	dot = strrchr(name, '.');
	if (dot != NULL)
		*dot = '\0';
	first = bk_cli_alloc_zero(1, sizeof(*first));
	second = bk_cli_alloc_zero(1, sizeof(*second));
	check_object(verifier, verifier->decoder, check->repo, BK_REPO_ARCHIVE,
				 check->source, name, name, first);
	check_object(verifier, verifier->decoder, check->repo, BK_REPO_CONFLICTS,
				 check->source, entry->name, name, second);
	/* A copy that could not be read must not decide which copy to keep. */
	for (int copyIdx = 0; copyIdx < 2; copyIdx++)
	{
		ObjectReport *copy = copyIdx == 0 ? first : second;

		if (!copy->ok && bk_verify_read_failure(copy->problem_code))
		{
			bk_error_set(err, copy->problem_code, "%s", copy->problem);
			bk_verify_object_failed(verifier, copyIdx == 0 ? name : entry->name,
									err);
			free(first);
			free(second);
			(void) bk_verify_local_failed(verifier, err);
			return false; /* the run stops with that */
		}
	}
	if (verifier->ring == NULL)
		snprintf(verdict, sizeof(verdict),
				 "two copies; decrypt them with the key (--key-file) to tell "
				 "them apart");
	else if (first->decrypted && second->decrypted &&
			 memcmp(first->digest, second->digest, BK_SHA256_LEN) == 0)
		snprintf(verdict, sizeof(verdict),
				 "both copies decrypt to identical content (a re-send under "
				 "another key); either will do");
	else
	{
		bool first_fits =
			first->ok && first->page_sysid == check->majority_sysid;
		bool second_fits =
			second->ok && second->page_sysid == check->majority_sysid;

		if (first_fits && !second_fits)
			snprintf(verdict, sizeof(verdict),
					 "different content; the archived copy %s fits this "
					 "source's history, the conflict copy %s does not",
					 first->where, second->where);
		else if (second_fits && !first_fits)
			snprintf(verdict, sizeof(verdict),
					 "different content; the conflict copy %s fits this "
					 "source's history, the archived copy %s does not: move "
					 "the archived copy away and the conflict copy into its "
					 "place",
					 second->where, first->where);
		else
			snprintf(verdict, sizeof(verdict),
					 "different content, both valid WAL of system %" PRIu64
					 ": two servers archived onto one source and timeline; "
					 "keep the copy of the server whose history you restore",
					 check->majority_sysid);
	}
	bk_verify_conflict(verifier, name, verdict,
					   json_pack("[o,o]", copy_json(first), copy_json(second)));
	free(first);
	free(second);
	return true;
}

/* ------------------------------------------------------------ snapshots */

typedef struct SnapshotCheck
{
	BkVerifier *verifier;
	const BkRepo *repo;
	const char *source;
	BkSnapshotCatalog *catalog;
	BkSnapRecord **records; /* per catalog index; NULL if not loaded */
	/*
	 * Per catalog index, per file of its record: rebuilt (or read) in this
	 * run and found to be what the record says.  NULL until checked.
	 */
	bool **file_ok;
	BkVerifyListing listing; /* the current snapshot's objects */
	uint64_t objects;
	uint64_t files;
	uint64_t files_as_parent; /* of those, unchanged since a checked parent */
} SnapshotCheck;

static void snapshot_problem(SnapshotCheck *check, const char *object,
							 const char *fmt, ...) BK_PRINTF(3, 4);
static void snapshot_object_failed(SnapshotCheck *check,
								   const char *snapshot_id, const char *object,
								   const BkError *err);

static void
snapshot_problem(SnapshotCheck *check, const char *object, const char *fmt, ...)
{
	char message[BK_ERROR_MESSAGE_MAX + 256];
	va_list args;

	va_start(args, fmt);
	vsnprintf(message, sizeof(message), fmt, args);
	va_end(args);
	bk_verify_problem(check->verifier, object, "%s", message);
}

/*
 * An object of a snapshot could not be read.  bk expire removes a
 * snapshot's record, then its objects: an object gone now, of a snapshot
 * whose record is gone too, was removed while bk verify read it (listed,
 * then gone), which is a note.  Anything else is reported as it is, a
 * "no such object" once a listing confirms it (bk_verify_read_failed).
 */
static void
snapshot_object_failed(SnapshotCheck *check, const char *snapshot_id,
					   const char *object, const BkError *err)
{
	char record[BK_SNAPSHOT_ID_MAX + 32];
	BkRepoStat object_stat, record_stat;
	BkError stat_err;

	snprintf(record, sizeof(record), "%s/%s", snapshot_id, BK_SNAPSHOT_RECORD);
	if ((err->code == BK_ERR_SEQUENCE || err->code == BK_ERR_NOT_FOUND) &&
		bk_repo_stat(check->repo, BK_REPO_ARCHIVE, check->source,
					 BK_KIND_SNAPSHOT, object, &object_stat, &stat_err) &&
		!object_stat.exists &&
		bk_repo_stat(check->repo, BK_REPO_ARCHIVE, check->source,
					 BK_KIND_SNAPSHOT, record, &record_stat, &stat_err) &&
		!record_stat.exists)
	{
		bk_verify_note(check->verifier, object,
					   "%s: snapshot %s was removed while bk verify read it "
					   "(by bk expire?); not checked",
					   object, snapshot_id);
		return;
	}
	bk_verify_read_failed(check->verifier, check->repo, BK_REPO_ARCHIVE,
						  check->source, BK_KIND_SNAPSHOT, object, err);
}

/*
 * Name of part partIdx of file's objects in snapshot id: its one object,
 * or that of its range partIdx.  False when that part has no object (an
 * incremental file or range without changed blocks) or its name does not
 * fit; *offset gets where the part starts.
 */
static bool
file_part_name(const char *id, const BkSnapFile *file, size_t partIdx,
			   char *name, size_t name_len, uint64_t *offset, bool *too_long)
{
	*offset = 0;
	*too_long = false;
	if (file->range_count > 0)
	{
		const BkSnapRange *range = &file->ranges[partIdx];

		*offset = range->offset;
		if (file->incremental && range->blocks == 0)
			return false;
		*too_long = !bk_snapshot_range_name(id, file->path, range->offset, name,
											name_len);
	}
	else
	{
		if (file->incremental && file->blocks == 0)
			return false;
		*too_long = !bk_snapshot_data_name(id, file->path, name, name_len);
	}
	return !*too_long;
}

static bool
discard_sink(void *arg, const uint8_t *data, size_t len, BkError *err)
{
	return true;
}

/*
 * Whether file, incremental without a changed block, must rebuild to
 * exactly what parent_file (the same path in the parent snapshot) rebuilt
 * to.  Its rebuild is the parent's, cut or extended to its size: with the
 * same size and the same SHA-256 (of the file, or of each range) in both
 * records, a parent found to rebuild to its record's content proves the
 * child's too, and reading the whole chain again would add nothing.
 */
static bool
same_as_parent(const BkSnapFile *file, const BkSnapFile *parent_file)
{
	if (!file->incremental || file->blocks != 0 ||
		file->size != parent_file->size ||
		file->has_sha256 != parent_file->has_sha256 ||
		file->range_count != parent_file->range_count)
		return false;
	if (file->has_sha256)
		return memcmp(file->sha256, parent_file->sha256, BK_SHA256_LEN) == 0;
	if (file->range_count == 0)
		return false; /* nothing to compare */
	for (size_t rangeIdx = 0; rangeIdx < file->range_count; rangeIdx++)
	{
		const BkSnapRange *mine = &file->ranges[rangeIdx];
		const BkSnapRange *theirs = &parent_file->ranges[rangeIdx];

		if (mine->offset != theirs->offset || mine->length != theirs->length ||
			memcmp(mine->sha256, theirs->sha256, BK_SHA256_LEN) != 0)
			return false;
	}
	return true;
}

/* How a snapshot's file came out (FilesTask.state). */
typedef enum FileState
{
	FILE_FAILED = 0, /* a problem, or an incremental with nothing to compare */
	FILE_OK,         /* rebuilt or read, and what the record says */
	FILE_AS_PARENT,  /* unchanged since the parent, whose copy was checked */
} FileState;

/* The files of one snapshot, checked by bk_verify_parallel. */
typedef struct FilesTask
{
	SnapshotCheck *check;
	const BkSnapshot *snapshot;
	const BkSnapRecord *record;
	BkSnapRecord **chain;
	int chain_len;
	const BkSnapRecord *parent;
	const bool *parent_ok; /* NULL: the parent's files not checked */
	uint8_t *state;        /* FileState per file of record */
	/* Files are taken in order: every one below this has been. */
	atomic_size_t taken;
} FilesTask;

/* A file sent whole, in one object or one per range. */
static bool
check_whole_file(FilesTask *task, BkVerifyWorker *worker,
				 const BkSnapFile *file)
{
	SnapshotCheck *check = task->check;
	const char *id = task->snapshot->id;
	size_t parts = file->range_count > 0 ? file->range_count : 1;
	bool good = true;

	for (size_t partIdx = 0; partIdx < parts; partIdx++)
	{
		const BkSnapRange *range =
			file->range_count > 0 ? &file->ranges[partIdx] : NULL;
		uint64_t offset = range != NULL ? range->offset : 0;
		uint64_t length = range != NULL ? range->length : file->size;
		/* Each object's digest is its bytes' SHA-256. */
		const uint8_t *want = range != NULL      ? range->sha256
							  : file->has_sha256 ? file->sha256
												 : NULL;
		char name[BK_OBJECT_NAME_MAX + 1];
		uint8_t digest[BK_SHA256_LEN];
		uint64_t size = 0;
		BkError err;

		/* An object that could not be read stopped the run. */
		if (bk_verify_local_failed(check->verifier, NULL))
			return false;
		if (!(range != NULL
				  ? bk_snapshot_range_name(id, file->path, offset, name,
										   sizeof(name))
				  : bk_snapshot_data_name(id, file->path, name, sizeof(name))))
			bk_strlcpy(name, file->path, sizeof(name));
		bk_verify_mark_read(&check->listing, name);
		/* Every part, even after a bad one: each is reported. */
		if (!bk_snapshot_read_object(check->repo, worker->decoder,
									 check->source, name, discard_sink, NULL,
									 digest, &size, &err))
		{
			bk_error_prefix(&err, "snapshot %s, file \"%s\": ", id, file->path);
			snapshot_object_failed(check, id, name, &err);
		}
		else if (size != length)
			snapshot_problem(check, name,
							 "snapshot %s, file \"%s\": %" PRIu64
							 " bytes from %" PRIu64
							 ", the record says %" PRIu64,
							 id, file->path, size, offset, length);
		else if (want != NULL && memcmp(digest, want, BK_SHA256_LEN) != 0)
			snapshot_problem(check, name,
							 "snapshot %s, file \"%s\": the SHA-256 of its "
							 "bytes from %" PRIu64 " differs from the record's",
							 id, file->path, offset);
		else
			continue;
		good = false;
	}
	return good;
}

/*
 * After an incremental file failed to rebuild: its own objects in this
 * snapshot, each read with the key and reported if it fails (a missing one
 * was reported with the record).  True when failed_object (the one the
 * rebuild stopped at) is one of them, reported already.
 */
static bool
report_own_objects(FilesTask *task, BkVerifyWorker *worker,
				   const BkSnapFile *file, const char *failed_object)
{
	SnapshotCheck *check = task->check;
	bool reported = false;

	for (size_t partIdx = 0;
		 partIdx < (file->range_count > 0 ? file->range_count : 1); partIdx++)
	{
		char part_name[BK_OBJECT_NAME_MAX + 1];
		uint64_t offset;
		uint64_t size = 0;
		bool too_long;
		BkError err;

		if (bk_verify_local_failed(check->verifier, NULL))
			return true; /* stopped: nothing more is said */
		if (!file_part_name(task->snapshot->id, file, partIdx, part_name,
							sizeof(part_name), &offset, &too_long))
			continue;
		if (bk_verify_listed(&check->listing, part_name))
		{
			bk_verify_mark_read(&check->listing, part_name);
			if (bk_snapshot_read_object(check->repo, worker->decoder,
										check->source, part_name, discard_sink,
										NULL, NULL, &size, &err))
				continue;
			bk_error_prefix(&err,
							"snapshot %s, file \"%s\": ", task->snapshot->id,
							file->path);
			snapshot_object_failed(check, task->snapshot->id, part_name, &err);
		}
		if (strcmp(part_name, failed_object) == 0)
			reported = true;
	}
	return reported;
}

/* An incremental file, rebuilt through its chain in the worker's scratch. */
static FileState
check_incremental_file(FilesTask *task, BkVerifyWorker *worker,
					   const BkSnapFile *file, const char *name)
{
	SnapshotCheck *check = task->check;
	BkFileChecksum rebuilt;
	BkError err;
	BkError local_err;
	char failed_object[BK_OBJECT_NAME_MAX + 1];
	bool rebuilt_ok;
	bool scratch_failed;

	/* This host's disk failed: the run stops, nothing more to learn. */
	if (bk_verify_local_failed(check->verifier, NULL))
		return FILE_FAILED;
	rebuilt_ok = bk_snapshot_rebuild_file(
		check->repo, worker->decoder, check->source, task->chain,
		task->chain_len, file, worker->scratch_fd, "(temporary file)", false,
		&rebuilt, NULL, &scratch_failed, failed_object, &err);
	if (scratch_failed)
		local_err = err;
	/* Its bytes are not kept: jobs files' worth of disk at most. */
	else if (ftruncate(worker->scratch_fd, 0) != 0)
	{
		bk_error_set(&local_err, BK_ERR_IO,
					 "could not truncate a temporary file in %s: %s",
					 bk_cli_scratch_dir(), strerror(errno));
		scratch_failed = true;
	}
	if (scratch_failed)
	{
		bk_error_prefix(&local_err,
						"could not rebuild files to check them "
						"(TMPDIR=%s): ",
						bk_cli_scratch_dir());
		bk_verify_local_failure(check->verifier, &local_err);
		return FILE_FAILED;
	}
	if (!rebuilt_ok)
	{
		/*
		 * Said once: by its own objects that fail, and by the rebuild
		 * unless it stopped at one of them (a parent's object is reported
		 * with the parent too: that snapshot cannot restore it either).
		 */
		if (!report_own_objects(task, worker, file, failed_object))
			bk_verify_object_failed(check->verifier, name, &err);
		return FILE_FAILED;
	}
	/* Rebuilt: the file's own objects in this snapshot were all read. */
	for (size_t partIdx = 0;
		 partIdx < (file->range_count > 0 ? file->range_count : 1); partIdx++)
	{
		char part_name[BK_OBJECT_NAME_MAX + 1];
		uint64_t offset;
		bool too_long;

		if (file_part_name(task->snapshot->id, file, partIdx, part_name,
						   sizeof(part_name), &offset, &too_long))
			bk_verify_mark_read(&check->listing, part_name);
	}
	if (file->has_sha256 &&
		memcmp(rebuilt.sha256, file->sha256, BK_SHA256_LEN) != 0)
	{
		if (task->record->data_checksums || task->record->page_digests)
			snapshot_problem(check, name,
							 "snapshot %s, file \"%s\": the file rebuilt "
							 "through its incremental chain differs from the "
							 "one the snapshot read",
							 task->snapshot->id, file->path);
		else
		{
			bk_verify_lock(check->verifier);
			check->verifier->hint_bit_differences++;
			bk_verify_unlock(check->verifier);
		}
		return FILE_FAILED;
	}
	/* Compared with the record: its SHA-256, or its ranges' on the way. */
	return file->has_sha256 || file->range_count > 0 ? FILE_OK : FILE_FAILED;
}

/* Unchanged since the parent, whose copy this run found good: not read. */
static bool
checked_with_parent(const FilesTask *task, const BkSnapFile *file)
{
	const BkSnapFile *parent_file;

	if (task->parent_ok == NULL)
		return false;
	parent_file = bk_snapshot_record_file(task->parent, file->path);
	return parent_file != NULL &&
		   task->parent_ok[parent_file - task->parent->files] &&
		   same_as_parent(file, parent_file);
}

/*
 * As bk restore does (bk_snapshot_prefetch_file): a file already taken is
 * not hinted, nor one unchanged since its parent.
 */
static void
prefetch_file(FilesTask *task, size_t fileIdx)
{
	const SnapshotCheck *check = task->check;
	size_t ahead = fileIdx + bk_snapshot_prefetch_lead(check->verifier->jobs);
	size_t taken = atomic_load(&task->taken);
	const BkSnapFile *file;

	while (taken < fileIdx + 1 &&
		   !atomic_compare_exchange_weak(&task->taken, &taken, fileIdx + 1))
		;
	if (ahead >= task->record->file_count || taken > ahead)
		return;
	file = &task->record->files[ahead];
	if (file->size <= BK_SNAPSHOT_PREFETCH_MAX_SIZE &&
		!checked_with_parent(task, file))
		bk_snapshot_prefetch_file(check->repo, check->source, task->chain,
								  task->chain_len, file,
								  BK_SNAPSHOT_PREFETCH_MAX_SIZE);
}

static void
check_snapshot_file(void *arg, BkVerifyWorker *worker, size_t fileIdx)
{
	FilesTask *task = arg;
	const BkSnapFile *file = &task->record->files[fileIdx];
	char name[BK_OBJECT_NAME_MAX + 1];

	prefetch_file(task, fileIdx);
	if (checked_with_parent(task, file))
	{
		task->state[fileIdx] = FILE_AS_PARENT;
		return;
	}
	if (!file->incremental)
	{
		task->state[fileIdx] =
			check_whole_file(task, worker, file) ? FILE_OK : FILE_FAILED;
		return;
	}
	if (!bk_snapshot_data_name(task->snapshot->id, file->path, name,
							   sizeof(name)))
		bk_strlcpy(name, file->path, sizeof(name));
	task->state[fileIdx] = check_incremental_file(task, worker, file, name);
}

/* Keyed: every file of the snapshot rebuilt and checked against the record. */
static void
check_snapshot_files(SnapshotCheck *check, int index)
{
	const BkSnapshot *snapshot = &check->catalog->snapshots[index];
	BkSnapRecord *record = check->records[index];
	FilesTask task = {.check = check, .snapshot = snapshot, .record = record};
	bool *file_ok;
	char name[BK_OBJECT_NAME_MAX + 1];
	char *text;
	size_t len;
	BkError err;

	for (int link = index; link >= 0;
		 link = check->catalog->snapshots[link].parent_index)
	{
		if (check->records[link] == NULL ||
			task.chain_len > check->catalog->count)
			return; /* reported already: parent missing or unreadable */
		task.chain_len++;
	}
	task.chain =
		bk_cli_alloc_zero((size_t) task.chain_len, sizeof(*task.chain));
	for (int link = index, slot = task.chain_len - 1; link >= 0;
		 link = check->catalog->snapshots[link].parent_index, slot--)
		task.chain[slot] = check->records[link];
	if (task.chain_len > 1)
	{
		task.parent = task.chain[task.chain_len - 2];
		task.parent_ok = check->file_ok[snapshot->parent_index];
	}

	/* Label, map and manifest decrypt; the manifest is PostgreSQL's. */
	{
		static const char *const parts[] = {BK_SNAPSHOT_LABEL, BK_SNAPSHOT_MAP,
											BK_SNAPSHOT_MANIFEST};

		for (size_t partIdx = 0;
			 partIdx < 3 && !bk_verify_local_failed(check->verifier, NULL);
			 partIdx++)
		{
			snprintf(name, sizeof(name), "%s/%s", snapshot->id, parts[partIdx]);
			bk_verify_mark_read(&check->listing, name);
			if (!bk_snapshot_read_small(check->repo, check->verifier->decoder,
										check->source, name,
										BK_RECORD_MAX_BYTES, &text, &len, &err))
			{
				bk_error_prefix(&err, "snapshot %s: ", snapshot->id);
				snapshot_object_failed(check, snapshot->id, name, &err);
				continue;
			}
			if (partIdx == 2 && !bk_manifest_check(text, len, &err))
				snapshot_problem(check, name, "snapshot %s: %s", snapshot->id,
								 err.message);
			free(text);
		}
	}

	task.state = bk_cli_alloc_zero(record->file_count, sizeof(uint8_t));
	atomic_init(&task.taken, 0);
	bk_verify_parallel(check->verifier, record->file_count, check_snapshot_file,
					   &task);
	/* Opens hinted for files never taken (the run stopped). */
	bk_repo_prefetch_end(check->repo);
	free(check->file_ok[index]);
	file_ok = bk_cli_alloc_zero(record->file_count, sizeof(bool));
	for (size_t fileIdx = 0; fileIdx < record->file_count; fileIdx++)
	{
		file_ok[fileIdx] = task.state[fileIdx] != FILE_FAILED;
		if (task.state[fileIdx] == FILE_AS_PARENT)
			check->files_as_parent++;
	}
	check->file_ok[index] = file_ok;
	check->files += record->file_count;
	check->verifier->snapshot_files += record->file_count;
	free(task.state);
	free(task.chain);
}

/* A copy of a snapshot object that arrived with different content. */
static bool
report_snapshot_conflict(void *arg, const BkRepoEntry *entry, BkError *err)
{
	SnapshotCheck *check = arg;
	char where[4096];

	if (entry->is_prefix)
		return true;
	bk_repo_describe(check->repo, BK_REPO_CONFLICTS, check->source,
					 BK_KIND_SNAPSHOT, entry->name, where, sizeof(where));
	snapshot_problem(check, entry->name,
					 "a second copy with different content is kept at \"%s\"; "
					 "restore uses the archived copy and checks it against "
					 "the snapshot's record",
					 where);
	return true;
}

/*
 * Records of snapshot index's chain, and only those: the records of a large
 * cluster list every file, so verify keeps one chain in memory at a time
 * (consecutive snapshots mostly share theirs).
 */
static void
load_chain_records(SnapshotCheck *check, int index)
{
	bool *in_chain =
		bk_cli_alloc_zero((size_t) check->catalog->count + 1, sizeof(bool));
	int depth = 0;

	for (int link = index; link >= 0 && depth <= check->catalog->count;
		 link = check->catalog->snapshots[link].parent_index, depth++)
		in_chain[link] = true;
	for (int snapIdx = 0; snapIdx < check->catalog->count; snapIdx++)
	{
		BkError err;

		if (!in_chain[snapIdx])
		{
			bk_snapshot_record_free(check->records[snapIdx]);
			check->records[snapIdx] = NULL;
			free(check->file_ok[snapIdx]);
			check->file_ok[snapIdx] = NULL;
		}
		else if (check->records[snapIdx] == NULL && snapIdx != index &&
				 !bk_snapshot_record_load(check->repo, check->verifier->decoder,
										  check->source,
										  check->catalog->snapshots[snapIdx].id,
										  &check->records[snapIdx], &err))
			check->records[snapIdx] = NULL; /* reported with its snapshot */
	}
	free(in_chain);
}

/*
 * With the key, the catalogs authenticate the metadata they plan by (the
 * newest segment's, the history files'): one object that does not pass is
 * what this run reports, as it decrypts every object, not a reason to
 * stop.  So the catalog is then read without the key, as bk verify reads
 * it without one.
 */
static bool
authentication_failure(const BkVerifier *verifier, const BkError *err)
{
	return verifier->decoder != NULL && bk_error_is_damage(err);
}

static bool
load_snapshot_catalog(BkVerifier *verifier, const BkRepo *repo,
					  const char *source, BkSnapshotCatalog *catalog,
					  BkError *err)
{
	if (bk_snapshot_catalog_load(repo, source, verifier->decoder, catalog, err))
		return true;
	if (!authentication_failure(verifier, err))
		return false;
	bk_error_clear(err);
	return bk_snapshot_catalog_load(repo, source, NULL, catalog, err);
}

static bool
load_wal_catalog(BkVerifier *verifier, const BkRepo *repo, const char *source,
				 BkWalCatalog *catalog, BkError *err)
{
	if (bk_wal_catalog_load(repo, source, verifier->decoder, catalog, err))
		return true;
	if (!authentication_failure(verifier, err))
		return false;
	bk_error_clear(err);
	return bk_wal_catalog_load(repo, source, NULL, catalog, err);
}

static bool
verify_snapshots(BkVerifier *verifier, const BkRepo *repo, const char *source,
				 BkError *err)
{
	BkSnapshotCatalog catalog;
	SnapshotCheck check = {.verifier = verifier,
						   .repo = repo,
						   .source = source,
						   .catalog = &catalog};
	bool ok = false;
	char prefix[BK_SNAPSHOT_ID_MAX + 2];

	if (!load_snapshot_catalog(verifier, repo, source, &catalog, err))
		return false;
	check.records =
		bk_cli_alloc_zero((size_t) catalog.count + 1, sizeof(BkSnapRecord *));
	check.file_ok =
		bk_cli_alloc_zero((size_t) catalog.count + 1, sizeof(bool *));
	/*
	 * Every worker's scratch file, made now: one that cannot be is this
	 * host's failure, said once, not a problem of each file it would hold.
	 */
	for (int jobIdx = 0; verifier->ring != NULL && catalog.count > 0 &&
						 jobIdx < (verifier->jobs < 1 ? 1 : verifier->jobs);
		 jobIdx++)
	{
		if (verifier->workers[jobIdx].scratch_fd >= 0)
			continue;
		verifier->workers[jobIdx].scratch_fd = bk_cli_open_scratch();
		if (verifier->workers[jobIdx].scratch_fd < 0)
		{
			bk_error_set(err, BK_ERR_IO,
						 "could not create a temporary file in %s to rebuild "
						 "files in: %s",
						 bk_cli_scratch_dir(), strerror(errno));
			bk_error_hint(err, "Set TMPDIR to a writable directory with "
							   "room for the largest files.");
			goto fail;
		}
	}
	for (int snapIdx = 0; snapIdx < catalog.count; snapIdx++)
	{
		BkSnapshot *snapshot = &catalog.snapshots[snapIdx];
		uint64_t problems_before = verifier->problems;
		uint64_t objects_before = check.objects;
		uint64_t files_before = check.files;
		uint64_t as_parent_before = check.files_as_parent;
		uint64_t as_parent;
		char record_name[BK_OBJECT_NAME_MAX + 1];
		BkError record_err;

		/* An object that could not be read: the run stops with that. */
		if (bk_verify_local_failed(verifier, err))
			goto fail;
		snprintf(prefix, sizeof(prefix), "%s/", snapshot->id);
		if (!bk_verify_list_objects(&check.listing, repo, source,
									BK_KIND_SNAPSHOT, prefix, true, err))
			goto fail;
		check.objects += check.listing.count;
		verifier->objects += check.listing.count;
		snprintf(record_name, sizeof(record_name), "%s/%s", snapshot->id,
				 BK_SNAPSHOT_RECORD);
		/* Its record could not be read: not an incomplete snapshot. */
		if (!snapshot->has_record &&
			bk_verify_read_failure(snapshot->record_error))
		{
			bk_error_set(&record_err, snapshot->record_error, "%s",
						 snapshot->reason);
			bk_verify_object_failed(verifier, record_name, &record_err);
			goto fail;
		}
		/*
		 * Its record is there but does not read, or lacks what a restore
		 * plans by: damage (bk restore refuses it, exit 4), said once,
		 * not also as an object unread, nor as a snapshot that may still
		 * be arriving.
		 */
		if (!snapshot->has_record && bk_snapshot_damaged(snapshot))
		{
			bk_verify_mark_read(&check.listing, record_name);
			snapshot_problem(&check, record_name,
							 "snapshot %s is not restorable: %s", snapshot->id,
							 snapshot->reason);
		}
		else if (!snapshot->has_record)
		{
			if (!verifier->json)
				printf("  snapshot %s: incomplete (%s); not a problem unless "
					   "it should have finished\n",
					   snapshot->id, snapshot->reason);
		}
		else if (!snapshot->restorable)
			snapshot_problem(
				&check, snapshot->id, "snapshot %s is not restorable: %s: %s",
				snapshot->id, bk_snapshot_problem_name(snapshot->problem),
				snapshot->reason);
		if (snapshot->has_record && verifier->ring != NULL)
		{
			load_chain_records(&check, snapIdx);
			bk_verify_mark_read(&check.listing, record_name);
			if (check.records[snapIdx] == NULL &&
				!bk_snapshot_record_load(repo, verifier->decoder, source,
										 snapshot->id, &check.records[snapIdx],
										 &record_err))
			{
				check.records[snapIdx] = NULL;
				snapshot_object_failed(&check, snapshot->id, record_name,
									   &record_err);
			}
			else
			{
				/* Every object the record names must be there. */
				const BkSnapRecord *record = check.records[snapIdx];
				char failures[BK_ERROR_MESSAGE_MAX];

				/*
				 * Not a problem of the archive, which holds what the source
				 * had; but the data it restores is damaged there.
				 */
				if (bk_snapshot_record_checksum_note(record, failures,
													 sizeof(failures)))
					bk_verify_note(verifier, record_name, "%s", failures);

				for (size_t fileIdx = 0; fileIdx < record->file_count;
					 fileIdx++)
				{
					const BkSnapFile *file = &record->files[fileIdx];
					size_t parts =
						file->range_count > 0 ? file->range_count : 1;

					for (size_t partIdx = 0; partIdx < parts; partIdx++)
					{
						char name[BK_OBJECT_NAME_MAX + 1];
						uint64_t offset;
						bool too_long;

						if (!file_part_name(snapshot->id, file, partIdx, name,
											sizeof(name), &offset, &too_long) &&
							!too_long)
							continue;
						if (too_long)
							bk_strlcpy(name, file->path, sizeof(name));
						else if (bk_verify_listed(&check.listing, name))
							continue;
						if (file->range_count > 0)
							snapshot_problem(&check, name,
											 "snapshot %s, file \"%s\": the "
											 "object of its range at %" PRIu64
											 " is missing",
											 snapshot->id, file->path, offset);
						else
							snapshot_problem(&check, name,
											 "snapshot %s, file \"%s\": its "
											 "object is missing",
											 snapshot->id, file->path);
					}
				}
				check_snapshot_files(&check, snapIdx);
				if (bk_verify_local_failed(verifier, err))
					goto fail;
			}
		}
		bk_verify_unread_objects(verifier, repo, source, &check.listing);
		/* Stopped in this snapshot: no verdict on it. */
		if (bk_verify_local_failed(verifier, err))
			goto fail;
		as_parent = check.files_as_parent - as_parent_before;
		if (verifier->json)
			json_array_append_new(
				verifier->snapshot_list,
				json_pack(
					"{s:s, s:s, s:b, s:b, s:I, s:I, s:I, s:b}", "id",
					snapshot->id, "kind",
					snapshot->kind[0] ? snapshot->kind : "unknown", "complete",
					snapshot->complete, "restorable", snapshot->restorable,
					"objects", (json_int_t) (check.objects - objects_before),
					"files_checked", (json_int_t) (check.files - files_before),
					"files_unchanged_since_parent", (json_int_t) as_parent,
					"ok", verifier->problems == problems_before));
		else if (snapshot->has_record && as_parent > 0)
			printf("  snapshot %s: %" PRIu64 " objects checked%s, %" PRIu64
				   " files rebuilt, %" PRIu64
				   " unchanged since snapshot %s (checked there): %s\n",
				   snapshot->id, check.objects - objects_before,
				   verifier->ring ? " and decrypted" : "",
				   check.files - files_before - as_parent, as_parent,
				   catalog.snapshots[snapshot->parent_index].id,
				   verifier->problems == problems_before ? "OK"
														 : "PROBLEMS FOUND");
		else if (snapshot->has_record)
			printf("  snapshot %s: %" PRIu64 " objects checked%s, %" PRIu64
				   " files rebuilt: %s\n",
				   snapshot->id, check.objects - objects_before,
				   verifier->ring ? " and decrypted" : "",
				   check.files - files_before,
				   verifier->problems == problems_before ? "OK"
														 : "PROBLEMS FOUND");
	}
	if (bk_verify_local_failed(verifier, err))
		goto fail;
	ok = bk_repo_list(repo, BK_REPO_CONFLICTS, source, BK_KIND_SNAPSHOT, "",
					  true, report_snapshot_conflict, &check, err);
fail:
	bk_verify_listing_free(&check.listing);
	for (int snapIdx = 0; snapIdx < catalog.count; snapIdx++)
	{
		bk_snapshot_record_free(check.records[snapIdx]);
		free(check.file_ok[snapIdx]);
	}
	free(check.records);
	free(check.file_ok);
	bk_snapshot_catalog_free(&catalog);
	return ok;
}

/* Every WAL object parses, is whole, and (with the key) decrypts. */
typedef struct WalCheck
{
	BkVerifier *verifier;
	const BkRepo *repo;
	const char *source;
	const BkWalCatalog *catalog;
	BkVerifyListing listing; /* checked by bk_verify_parallel */
	/* Under the verifier's lock: */
	uint64_t majority_sysid;
	uint64_t sysid_mismatches;
	char first_foreign[BK_OBJECT_NAME_MAX + 1];
} WalCheck;

static void
check_wal_object(void *arg, BkVerifyWorker *worker, size_t index)
{
	WalCheck *check = arg;
	const char *name = check->listing.names[index];
	ObjectReport *report = bk_cli_alloc_zero(1, sizeof(*report));
	char sysid[32];

	check_object(check->verifier, worker->decoder, check->repo, BK_REPO_ARCHIVE,
				 check->source, name, name, report);
	if (!report->ok)
	{
		BkError failure;

		bk_error_set(&failure, report->problem_code, "%s", report->problem);
		bk_verify_read_failed(check->verifier, check->repo, BK_REPO_ARCHIVE,
							  check->source, BK_KIND_WAL, name, &failure);
		free(report);
		return;
	}
	bk_verify_lock(check->verifier);
	if (report->decrypted && report->page_seg_size != 0)
		check->majority_sysid = report->page_sysid;
	/* Every WAL object of a source is of one database system. */
	if (check->catalog->system_identifier[0] != '\0' &&
		bk_meta_get(report->object.meta, report->object.meta_len,
					"system-identifier", sysid, sizeof(sysid)) &&
		strcmp(sysid, check->catalog->system_identifier) != 0 &&
		check->sysid_mismatches++ == 0)
		bk_strlcpy(check->first_foreign, name, sizeof(check->first_foreign));
	bk_verify_unlock(check->verifier);
	free(report);
}

/* What the catalog says is missing, and histories it could not read. */
static void
check_wal_catalog(BkVerifier *verifier, const BkWalCatalog *catalog)
{
	for (int tlIdx = 0; tlIdx < catalog->timeline_count; tlIdx++)
	{
		const BkWalTimeline *tl = &catalog->timelines[tlIdx];
		char gap[32];
		char lsn[BK_LSN_TEXT_SIZE];

		if (tl->has_history && !tl->history_known)
		{
			char name[32];

			snprintf(name, sizeof(name), "%08X.history", tl->timeline);
			if (verifier->ring != NULL)
			{
				BkError history_err;

				bk_error_set(&history_err, tl->history_error, "%s",
							 tl->history_problem);
				bk_verify_object_failed(verifier, name, &history_err);
			}
			else
				bk_verify_note(verifier, name,
							   "the branch points of timeline %" PRIu32
							   " are not checked without the key: %s",
							   tl->timeline, tl->history_problem);
		}
		/*
		 * WAL of a later timeline without the history file that says where
		 * it branched off, while the archive holds WAL of an earlier one:
		 * recovery from that WAL never reaches it (bk restore refuses,
		 * PostgreSQL would stay on the earlier timeline).
		 */
		if (tl->segments > 0 && !tl->has_history && tl->timeline > 1 &&
			bk_wal_history_descendant(catalog, tl->timeline) == 0)
			for (int lowerIdx = 0; lowerIdx < tlIdx; lowerIdx++)
				if (catalog->timelines[lowerIdx].segments > 0)
				{
					char name[32];

					snprintf(name, sizeof(name), "%08X.history", tl->timeline);
					bk_verify_problem(
						verifier, name,
						"timeline %" PRIu32 " has WAL archived but not its "
						"history file: nothing tells where it branched off, "
						"so recovery from timeline %" PRIu32
						"'s WAL cannot reach it; put %s back in the archive "
						"(from pg_wal of the server that created timeline "
						"%" PRIu32 ")",
						tl->timeline, catalog->timelines[lowerIdx].timeline,
						name, tl->timeline);
					break;
				}
		if (tl->gap_count == 0)
			continue;
		bk_wal_segment_name(tl->timeline, tl->first_gap_segno,
							catalog->segment_size, gap);
		bk_format_lsn(tl->needed_until, lsn, sizeof(lsn));
		if (tl->needed_until != 0 && tl->first_gap_segno > tl->last_segno)
			bk_verify_problem(
				verifier, gap,
				"%" PRIu64 " segment%s of timeline %" PRIu32
				" missing below %s, where timeline %" PRIu32
				" branched off it (first missing: %s); point-in-time "
				"recovery cannot reach timeline %" PRIu32,
				tl->gap_count, tl->gap_count == 1 ? "" : "s", tl->timeline, lsn,
				tl->needed_by, gap, tl->needed_by);
		else
			bk_verify_problem(
				verifier, gap,
				"%" PRIu64 " segment%s missing inside the range timeline "
				"%" PRIu32 " needs (first missing: %s); point-in-time "
				"recovery cannot cross it",
				tl->gap_count, tl->gap_count == 1 ? "" : "s", tl->timeline,
				gap);
	}
}

bool
bk_pg_verify(BkVerifier *verifier, const BkRepo *repo, const char *source,
			 BkError *err)
{
	BkWalCatalog catalog;
	uint64_t objects_before = verifier->objects;
	WalCheck check = {.verifier = verifier,
					  .repo = repo,
					  .source = source,
					  .catalog = &catalog};
	ConflictCheck conflicts = {
		.verifier = verifier, .repo = repo, .source = source};
	bool ok;

	if (!load_wal_catalog(verifier, repo, source, &catalog, err))
		return false;
	ok = bk_verify_list_objects(&check.listing, repo, source, BK_KIND_WAL, "",
								false, err);
	/*
	 * A directory where objects belong: bk wal-get refuses to read one
	 * with a WAL file's name, and the WAL file is not there either.
	 */
	if (ok && check.listing.not_objects > 0)
		bk_verify_problem(verifier, check.listing.first_not_object,
						  "%zu entr%s of the WAL of source \"%s\" %s not an "
						  "object (first: \"%s\", a directory); move %s out "
						  "of the repository",
						  check.listing.not_objects,
						  check.listing.not_objects == 1 ? "y" : "ies", source,
						  check.listing.not_objects == 1 ? "is" : "are",
						  check.listing.first_not_object,
						  check.listing.not_objects == 1 ? "it" : "them");
	if (ok)
		bk_verify_parallel(verifier, check.listing.count, check_wal_object,
						   &check);
	bk_verify_listing_free(&check.listing);
	/* An object that could not be read: the run stops with that. */
	if (ok && bk_verify_local_failed(verifier, err))
		ok = false;
	if (ok)
	{
		check_wal_catalog(verifier, &catalog);
		if (check.sysid_mismatches > 0)
			bk_verify_problem(
				verifier, check.first_foreign,
				"%" PRIu64 " WAL object%s (first: %s) of another database "
				"system than the source's newest WAL (%s): two clusters "
				"archive under source id \"%s\"",
				check.sysid_mismatches,
				check.sysid_mismatches == 1 ? " is" : "s are",
				check.first_foreign, catalog.system_identifier, source);
		/*
		 * The source's system is its newest segment's, as for every other
		 * check here, not that of whichever object was listed last (the
		 * listing has no order: a stray segment of another cluster, or a
		 * history file's text read as a page header).
		 */
		conflicts.majority_sysid =
			catalog.system_identifier[0] != '\0'
				? strtoull(catalog.system_identifier, NULL, 10)
				: check.majority_sysid;
		ok = bk_repo_list(repo, BK_REPO_CONFLICTS, source, BK_KIND_WAL, "",
						  false, check_conflict, &conflicts, err);
	}
	bk_wal_catalog_free(&catalog);
	if (!ok)
		return false;
	if (!verifier->json)
		printf("  %" PRIu64 " WAL object%s checked%s\n",
			   verifier->objects - objects_before,
			   verifier->objects - objects_before == 1 ? "" : "s",
			   verifier->ring ? " and decrypted"
							  : " (no key: contents not decrypted)");
	return verify_snapshots(verifier, repo, source, err);
}
