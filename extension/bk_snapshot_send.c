/*
 * bk_snapshot_send.c
 *		Sending one file: whole, or (diff/incr) the pages that changed since
 *		the parent, verifying page checksums as pages are read.  The
 *		callbacks libbk calls from here use system calls and pure functions
 *		only.
 */
#include "postgres.h"

#include "bk_snapshot.h"

/* How far ahead of its reads a file is asked for (snap_read_ahead). */
#define SNAP_READ_AHEAD ((uint64) 8 * 1024 * 1024)

static bool snap_load_parent_map(SnapRun *run, const char *path);
static void snap_read_ahead(int fd, uint64 *advised, uint64 read_end,
							uint64 read_len, uint64 file_end);
static bool snap_scan_incremental(SnapRun *run, SnapWorkItem *item,
								  const char *path, int fd, int64 *blocks,
								  uint8 **header, size_t *header_len,
								  PlainSource *scan);
static bool snap_check_block(PlainSource *source, uint8 *page,
							 BlockNumber blkno, off_t file_offset);
static void snap_encode_path(const char *path, StringInfo out);
static bool snap_next_frame(void *arg, const uint8_t **frame, size_t *len,
							BkFrame *info, BkError *err);
static void snap_send_object(SnapRun *run, const char *name, const char *meta,
							 PlainSource *source, const char *what,
							 bool batched);

/*
 * snap_send_file
 *		One file, or one range of a large file: whole, or (diff/incr, a main
 *		fork the parent had) as its changed pages.  What it found goes into
 *		the item, for the record.
 */
void
snap_send_file(SnapRun *run, SnapWorkItem *item)
{
	const char *path = snap_item_path(run->work, item);
	bool ranged = item->range_count > 0;
	int64 files_done = item->range_index == 0 ? 1 : 0;
	uint64 part_length;
	PlainSource source;
	StringInfoData name;
	StringInfoData meta;
	int64 read_before = run->bytes_read;
	int64 sent_before = run->bytes_sent;
	uint8 *header = NULL;
	size_t header_len = 0;
	int fd;
	struct stat st;

	/*
	 * A file that vanished since the listing is not in the snapshot: a
	 * relation file's removal is in the WAL that replay applies, and any
	 * other file is simply gone.  For a ranged file, the other ranges may be
	 * sent already; the record leaves the whole file out all the same
	 * (snap_record_file), rather than restore a file of zeros.
	 */
	fd = open(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno == ENOENT)
		{
			item->vanished = true;
			snap_add_progress(run->slot, 0, 0, files_done);
			return;
		}
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not open \"%s\": %m", path)));
	}

	/*
	 * The size when we start reading is the size the snapshot records.  A
	 * ranged file keeps the size it was listed with, which its ranges
	 * cover; the part of it that shrank away is read as zeros (WAL replay
	 * truncates a relation file again).
	 */
	if (!ranged && fstat(fd, &st) == 0)
	{
		item->size = st.st_size;
		item->mtime = st.st_mtime;
	}
	part_length = ranged ? (uint64) item->range_length : (uint64) item->size;
	memset(&source, 0, sizeof(source));
	source.run = run;
	source.fd = fd;
	source.file_base = ranged ? (uint64) item->range_offset : 0;
	source.file_len = part_length;
	source.advised = source.file_base;
	source.segment_base = item->segment_base;
	source.crc = ranged; /* the manifest's checksum of a ranged file */

	/* Main forks: the digest of every page read, for the next snapshot. */
	if (item->main_fork)
	{
		bk_blockmap_start(&run->map, part_length);
		source.map = &run->map;
	}
	if (strcmp(run->kind, "full") != 0 && item->main_fork &&
		item->size % BLCKSZ == 0 && item->parent_has)
	{
		if (snap_load_parent_map(run, path))
			item->incremental =
				snap_scan_incremental(run, item, path, fd, &item->blocks,
									  &header, &header_len, &source);
		else
			item->no_parent_digests = true;
	}

	initStringInfo(&name);
	appendStringInfo(&name, "%s/%s/", run->id,
					 ranged ? BK_SNAPSHOT_RANGE : BK_SNAPSHOT_DATA);
	snap_encode_path(path, &name);
	if (ranged)
		appendStringInfo(&name, "/%lld", (long long) item->range_offset);
	initStringInfo(&meta);
	appendStringInfo(
		&meta, "snapshot=%s\nmode=%04o\nmtime=%lld\nsize=%lld\nencoding=%s",
		run->id, (unsigned int) (item->mode & 07777), (long long) item->mtime,
		(long long) item->size, item->incremental ? "incremental" : "whole");
	if (ranged)
		appendStringInfo(&meta, "\nrange-offset=%lld\nrange-length=%lld",
						 (long long) item->range_offset,
						 (long long) item->range_length);

	if (!item->incremental)
	{
		if (source.map != NULL)
			bk_blockmap_start(source.map, part_length);
		source.total = part_length;
		source.counts_as_read = true;
		source.verify = item->checksummed;
		snap_send_object(run, name.data, meta.data, &source, path, true);
		memcpy(item->sha256, bk_encoder_digest(run->encoder), BK_SHA256_LEN);
		item->objects = 1;
	}
	else if (item->blocks > 0)
	{
		/* Header and block list from memory, then the spooled pages. */
		PlainSource spooled;

		memset(&spooled, 0, sizeof(spooled));
		spooled.run = run;
		spooled.mem = header;
		spooled.mem_len = header_len;
		spooled.fd = run->spool_fd;
		spooled.file_len = (uint64) item->blocks * BLCKSZ;
		spooled.total = header_len + spooled.file_len;
		snap_send_object(run, name.data, meta.data, &spooled, path, true);
		item->objects = 1;
	}
	item->crc32c = source.crc32c;
	close(fd);
	pfree(name.data);
	pfree(meta.data);
	if (header != NULL)
		free(header);
	if (item->main_fork &&
		bk_blockmap_queue(&run->map_writer, path,
						  (BlockNumber) (source.file_base / BLCKSZ), &run->map))
		snap_flush_maps(run);

	if (source.failures > 0)
	{
		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("bk: snapshot %s: %d page%s of \"%s\" failed checksum "
						"verification",
						run->id, source.failures,
						source.failures == 1 ? "" : "s", path),
				 errdetail("The pages were read twice; they are backed up as "
						   "read.")));
		item->failures = source.failures;
		memcpy(item->failed_blocks, source.failed_blocks,
			   sizeof(item->failed_blocks));
		SpinLockAcquire(&bk_shared->mutex);
		run->slot->checksum_failures += source.failures;
		SpinLockRelease(&bk_shared->mutex);
	}
	item->bytes_read = run->bytes_read - read_before;
	item->bytes_sent = run->bytes_sent - sent_before;
	item->sent = true;
	snap_add_progress(run->slot, 0, 0, files_done);
}

/*
 * snap_load_parent_map
 *		The parent's page digests of path into run->parent_map; false if the
 *		parent kept none (the file then goes whole).
 *
 * The map is of the whole file, so the ranges of one file, which come one
 * after another in the work list and usually to the same process, load it
 * once: loading it per range would read a 1 GiB segment's 1 MB of digests
 * as many times as it has ranges.
 */
static bool
snap_load_parent_map(SnapRun *run, const char *path)
{
	if (strcmp(run->parent_map_path, path) == 0)
		return run->parent_map_found;
	snap_sql_begin();
	run->parent_map_found = bk_blockmap_load(
		run->work->blocks_table, run->parent_id, path, &run->parent_map);
	snap_sql_end();
	strlcpy(run->parent_map_path, path, sizeof(run->parent_map_path));
	return run->parent_map_found;
}

/* Write the page digests queued so far. */
void
snap_flush_maps(SnapRun *run)
{
	if (!bk_blockmap_pending(&run->map_writer))
		return;
	snap_sql_begin();
	bk_blockmap_flush(&run->map_writer);
	snap_sql_end();
}

/*
 * snap_scan_incremental
 *		First pass over a relation main fork, or over one range of it:
 *		checksum every page, keep the pages a restore needs from this
 *		snapshot in the spool file, and build the object's header (the
 *		file's length, block numbers counted from the file's start).
 *		Returns false to send the file whole (it changed under us in a way
 *		that makes pages unreliable).
 */
static bool
snap_scan_incremental(SnapRun *run, SnapWorkItem *item, const char *path,
					  int fd, int64 *blocks, uint8 **header, size_t *header_len,
					  PlainSource *scan)
{
	BlockNumber base = (BlockNumber) (scan->file_base / BLCKSZ);
	BlockNumber nblocks = (BlockNumber) (scan->file_len / BLCKSZ);
	BlockNumber *chosen = palloc(sizeof(BlockNumber) * (nblocks + 1));
	BkSha256 *sha;
	BkError err;
	XLogRecPtr current = GetXLogInsertRecPtr();
	const BkBlockMap *parent = &run->parent_map;
	int64 kept = 0;
	off_t spool_pos = 0;
	uint64 advised = scan->file_base;
	uint8 *head;

	sha = bk_sha256_new(&err);
	if (sha == NULL)
		ereport(ERROR, (errmsg("%s", err.message)));
	if (ftruncate(run->spool_fd, 0) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not truncate \"%s\": %m", run->spool_path)));
	scan->verify = item->checksummed;

	for (BlockNumber first = 0; first < nblocks; first += SCAN_BLOCKS)
	{
		BlockNumber count = Min(SCAN_BLOCKS, nblocks - first);
		size_t want = (size_t) count * BLCKSZ;
		size_t got = 0;

		CHECK_FOR_INTERRUPTS();
		snap_read_ahead(fd, &advised, (uint64) (base + first) * BLCKSZ + want,
						want, (uint64) (base + nblocks) * BLCKSZ);
		while (got < want)
		{
			ssize_t n = pread(fd, run->block_buffer + got, want - got,
							  (off_t) (base + first) * BLCKSZ + got);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				ereport(ERROR, (errcode_for_file_access(),
								errmsg("could not read \"%s\": %m", path)));
			if (n == 0)
				break;
			got += n;
		}
		/* Shrank while we read: zeros, as for whole files; replay fixes it. */
		if (got < want)
			memset(run->block_buffer + got, 0, want - got);

		for (BlockNumber idx = 0; idx < count; idx++)
		{
			uint8 *page = run->block_buffer + (size_t) idx * BLCKSZ;
			BlockNumber blkno = base + first + idx;
			XLogRecPtr lsn;
			uint64 digest;

			if (scan->verify)
				(void) snap_check_block(scan, page, blkno,
										(off_t) blkno * BLCKSZ);
			/* The page as read (and read again, if its checksum failed). */
			bk_blockmap_add(scan->map, page, BLCKSZ);
			digest = scan->map->digests[scan->map->count - 1];
			lsn = PageGetLSN((Page) page);
			if (lsn >= run->parent_start_lsn || lsn > current ||
				blkno >= parent->count || digest != parent->digests[blkno])
			{
				if (pg_pwrite(run->spool_fd, page, BLCKSZ, spool_pos) != BLCKSZ)
					ereport(ERROR, (errcode_for_file_access(),
									errmsg("could not write \"%s\": %m",
										   run->spool_path)));
				spool_pos += BLCKSZ;
				chosen[kept++] = blkno;
			}
		}
		if (!bk_sha256_update(sha, run->block_buffer, want, &err))
			ereport(ERROR, (errmsg("%s", err.message)));
		if (scan->crc)
			scan->crc32c = bk_crc32c(scan->crc32c, run->block_buffer, want);
		snap_add_progress(run->slot, (int64) want, 0, 0);
		run->bytes_read += (int64) want;
	}
	if (!bk_sha256_final(sha, item->sha256, &err))
		ereport(ERROR, (errmsg("%s", err.message)));
	bk_sha256_free(sha);
	/* From here on the spooled pages are sent, not checked or digested. */
	scan->verify = false;

	*blocks = kept;
	*header_len = BK_INCR_HEADER_LEN + sizeof(uint32) * (size_t) kept;
	head = malloc(*header_len);
	if (head == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	bk_incr_header_write(head,
						 &(BkIncrHeader){.file_length = (uint64) item->size,
										 .block_size = BLCKSZ,
										 .block_count = (uint32) kept});
	for (int64 idx = 0; idx < kept; idx++)
		bk_put_be32(head + BK_INCR_HEADER_LEN + 4 * idx, chosen[idx]);
	*header = head;
	pfree(chosen);
	return true;
}

/*
 * snap_check_block
 *		Verify one page's checksum, reading it again once before calling it
 *		a failure.  New pages and pages changed since the backup started are
 *		not checked (WAL replay rewrites them).  No ereport: libbk callbacks
 *		call this.
 */
static bool
snap_check_block(PlainSource *source, uint8 *page, BlockNumber blkno,
				 off_t file_offset)
{
	PageHeader header = (PageHeader) page;
	BlockNumber absolute = source->segment_base + blkno;

	if (PageIsNew((Page) page) ||
		PageGetLSN((Page) page) >= source->run->start_lsn)
		return true;
	if (pg_checksum_page((char *) page, absolute) == header->pd_checksum)
		return true;
	/* Maybe we read it while it was being written: once more. */
	if (pread(source->fd, page, BLCKSZ, file_offset) == BLCKSZ &&
		(PageIsNew((Page) page) ||
		 PageGetLSN((Page) page) >= source->run->start_lsn ||
		 pg_checksum_page((char *) page, absolute) == header->pd_checksum))
		return true;
	if (source->failures < FAILURES_LISTED_PER_FILE)
		source->failed_blocks[source->failures] = blkno;
	source->failures++;
	return false;
}

/* A path as object names write it (docs/snapshot-format.md). */
static void
snap_encode_path(const char *path, StringInfo out)
{
	char encoded[3 * MAXPGPATH + 1];

	if (!bk_snapshot_path_encode(path, encoded, sizeof(encoded)))
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("path \"%s\" is too long for an object name", path)));
	appendStringInfoString(out, encoded);
}

/* libbk callback: the next chunk of a PlainSource, encoded. */
static bool
snap_next_frame(void *arg, const uint8_t **frame, size_t *len, BkFrame *info,
				BkError *err)
{
	PlainSource *source = arg;
	SnapRun *run = source->run;
	uint32 chunk_len;
	size_t filled = 0;

	if (bk_encoder_done(run->encoder))
	{
		*frame = NULL;
		return true;
	}
	chunk_len = bk_encoder_next_chunk_len(run->encoder);
	while (filled < chunk_len && source->pos + filled < source->mem_len)
	{
		size_t take =
			Min(chunk_len - filled, source->mem_len - (source->pos + filled));

		memcpy(run->chunk_buffer + filled, source->mem + source->pos + filled,
			   take);
		filled += take;
	}
	if (filled < chunk_len)
	{
		uint64 file_pos = source->pos + filled - source->mem_len;
		size_t file_start = filled;

		if (source->fd >= 0)
			snap_read_ahead(source->fd, &source->advised,
							source->file_base + file_pos + chunk_len - filled,
							chunk_len - filled,
							source->file_base + source->file_len);
		while (source->fd >= 0 && filled < chunk_len &&
			   file_pos < source->file_len)
		{
			ssize_t n =
				pread(source->fd, run->chunk_buffer + filled,
					  Min(chunk_len - filled, source->file_len - file_pos),
					  (off_t) (source->file_base + file_pos));

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
			{
				source->read_errno = errno;
				return bk_error_set(err, BK_ERR_IO, "could not read a file: %s",
									strerror(errno));
			}
			if (n == 0)
				break; /* shrank: the rest is zeros */
			filled += n;
			file_pos += n;
		}
		if (filled < chunk_len)
			memset(run->chunk_buffer + filled, 0, chunk_len - filled);
		if (source->verify)
		{
			/* Offsets in the file (a range starts at a block boundary). */
			uint64 chunk_file_start =
				source->file_base + source->pos + file_start - source->mem_len;
			uint64 chunk_file_end = chunk_file_start + (chunk_len - file_start);

			/*
			 * Every block that ends in this chunk; one that began in the
			 * previous chunk is read whole again (only when the chunk size is
			 * not a multiple of the block size).
			 */
			for (uint64 block_start =
					 chunk_file_start - chunk_file_start % BLCKSZ;
				 block_start + BLCKSZ <= chunk_file_end; block_start += BLCKSZ)
			{
				if (block_start + BLCKSZ <= chunk_file_start)
					continue;
				if (block_start >= chunk_file_start)
					(void) snap_check_block(
						source,
						run->chunk_buffer + file_start +
							(block_start - chunk_file_start),
						(BlockNumber) (block_start / BLCKSZ),
						(off_t) block_start);
				else
				{
					PGAlignedBlock block;

					if (pread(source->fd, block.data, BLCKSZ,
							  (off_t) block_start) == BLCKSZ)
						(void) snap_check_block(
							source, (uint8 *) block.data,
							(BlockNumber) (block_start / BLCKSZ),
							(off_t) block_start);
				}
			}
		}
		/* After verification: a failing page may have been read again. */
		if (source->map != NULL)
			bk_blockmap_add(source->map, run->chunk_buffer + file_start,
							chunk_len - file_start);
		if (source->crc)
			source->crc32c =
				bk_crc32c(source->crc32c, run->chunk_buffer + file_start,
						  chunk_len - file_start);
		if (source->counts_as_read)
		{
			run->bytes_read += chunk_len - file_start;
			snap_add_progress(run->slot, chunk_len - file_start, 0, 0);
		}
	}
	source->pos += chunk_len;
	if (!bk_encoder_chunk(run->encoder, run->chunk_buffer, chunk_len, frame,
						  len, info, err))
		return false;
	run->bytes_sent += *len;
	snap_add_progress(run->slot, 0, *len, 0);
	return true;
}

/*
 * snap_read_ahead
 *		Keep a window of kernel read-ahead in front of a read of a file that
 *		ends at read_end.  Files are read 1 MiB at a time, each piece encoded
 *		before the next is read; with the device's own read-ahead (often
 *		128 kB) most of every read waited for the disk, and a data directory
 *		larger than memory is mostly read from disk.  Asking for the next
 *		window while this one is encoded overlaps the two.  Only advice:
 *		ignored, it costs nothing but time.  Called from libbk callbacks
 *		too: a system call only.
 */
static void
snap_read_ahead(int fd, uint64 *advised, uint64 read_end, uint64 read_len,
				uint64 file_end)
{
	/* At least the read itself ahead: a chunk may be larger (16 MiB). */
	uint64 window = Max(SNAP_READ_AHEAD, read_len);
	uint64 want_end = Min(file_end, read_end + window);

	if (*advised >= want_end || *advised > read_end + window / 2)
		return;
	(void) posix_fadvise(fd, (off_t) *advised, (off_t) (want_end - *advised),
						 POSIX_FADV_WILLNEED);
	*advised = want_end;
}

/* libbk callback: stop sending? (cancel, or the server wants us gone) */
bool
snap_interrupted(void *arg)
{
	SnapRun *run = arg;

	/*
	 * Once the record may be out, only the server's end stops the wait: a
	 * cancel then would leave a snapshot the repository may hold but the
	 * history calls cancelled (snap_send_own_objects).
	 */
	if (run->record_sending)
		return ProcDiePending || !PostmasterIsAlive();
	/* A helper also stops when another process gave the snapshot up. */
	return run->slot->cancel_requested || QueryCancelPending ||
		   ProcDiePending || !PostmasterIsAlive() ||
		   (run->helper >= 0 && run->work->stop);
}

/*
 * snap_send_object
 *		Send one object: batched (queued; acknowledged with the batch), or
 *		on its own (returns once Kafka acknowledged all of it).
 */
static void
snap_send_object(SnapRun *run, const char *name, const char *meta,
				 PlainSource *source, const char *what, bool batched)
{
	BkObjectInfo info;
	BkError err;
	StringInfoData key;
	bool ok;

	bk_error_clear(&err);
	memset(&info, 0, sizeof(info));
	info.kind = BK_KIND_SNAPSHOT;
	info.source_id = run->source_id;
	info.name = name;
	info.meta = meta;
	info.size = source->total;
	initStringInfo(&key);
	appendStringInfo(&key, "%s/%s", run->source_id, name);
	ok = bk_encoder_begin(run->encoder, &info, &err);
	if (ok && batched)
		ok = bk_producer_batch_add(run->producer, run->snapshot_topic, key.data,
								   key.len, snap_next_frame, source,
								   snap_interrupted, run, NULL, &err);
	else if (ok)
		ok = bk_producer_send_object(run->producer, run->snapshot_topic,
									 key.data, key.len, snap_next_frame, source,
									 snap_interrupted, run, NULL, &err);
	bk_kafka_log_flush();
	if (!ok)
		snap_kafka_error(run, &err, what);
	pfree(key.data);
}

/* Report a libbk failure while sending: cancelled, or an error. */
void
snap_kafka_error(SnapRun *run, const BkError *err, const char *what)
{
	bk_kafka_log_flush();
	if (err->code == BK_ERR_INTERRUPTED)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("snapshot interrupted while sending \"%s\"", what)));
	ereport(ERROR,
			(errcode(bk_sqlstate(err->code)),
			 errmsg("could not send \"%s\" of snapshot %s", what, run->id),
			 errdetail("%s", bk_sentence(err->message)),
			 err->hint[0] ? errhint("%s", err->hint) : 0));
}

/* An object whose plaintext is in memory; returns its SHA-256. */
void
snap_send_memory(SnapRun *run, const char *part, const char *meta,
				 const char *content, size_t len, uint8 digest[BK_SHA256_LEN])
{
	PlainSource source;
	char name[BK_OBJECT_NAME_MAX + 1];

	memset(&source, 0, sizeof(source));
	source.run = run;
	source.mem = (const uint8 *) content;
	source.mem_len = len;
	source.fd = -1;
	source.total = len;
	snprintf(name, sizeof(name), "%s/%s", run->id, part);
	snap_send_object(run, name, meta, &source, part, false);
	memcpy(digest, bk_encoder_digest(run->encoder), BK_SHA256_LEN);
}
