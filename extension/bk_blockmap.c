/*
 * bk_blockmap.c
 *		Page digests of the relation files a snapshot read, so that the next
 *		differential or incremental snapshot can tell which pages changed.
 *
 * A page's LSN does not say whether the page changed.  PostgreSQL changes
 * pages without WAL, or without moving the LSN, in several places: the
 * SP-GiST metapage's cache of recently used pages, hint bits and the
 * PD_ALL_VISIBLE flag on clusters without data checksums, LP_DEAD marks
 * set by index scans once a page is dirty, and more (docs/snapshot-format.md
 * lists them).  An incremental snapshot that trusted the LSN alone would
 * rebuild such a page as the parent had it, and the rebuilt file would not
 * be the file the snapshot read.
 *
 * So every snapshot keeps, for each main fork file it read, one 64-bit
 * digest (XXH3) of every page as it read it: 8 bytes per 8 kB page, 1 MiB
 * for a 1 GiB segment file.  The next snapshot sends a page when its LSN is
 * at or after the parent's start, or when its digest differs from the
 * parent's digest for that block, or when the parent had no such block.
 * The rebuilt file is then byte-identical to the file read, which the
 * whole-file SHA-256 in the snapshot record proves at restore time; the
 * digests only have to detect change, not resist an adversary.
 *
 * A file the snapshot read in ranges (bk.snapshot_range_size) has one row
 * per range, first_block saying where it starts; the next snapshot puts
 * them together, whatever ranges it cuts itself.
 *
 * The maps live in the extension's table bk_snapshot_blocks, which is
 * UNLOGGED: it costs no WAL, is not part of any snapshot, and is emptied by
 * a crash.  A missing map (a crash, a parent taken before digests existed,
 * a promoted standby) only means that the file is sent whole.  Only the two
 * snapshots a new one can build on are kept: the newest complete full
 * snapshot (the parent of a diff) and the newest complete snapshot of any
 * kind (the parent of an incr).
 *
 * bk_blockmap_add runs inside libbk callbacks (while a file is read chunk by
 * chunk for Kafka), so it uses no PostgreSQL facilities: plain memory only.
 * The SQL functions run inside a transaction and SPI connection the caller
 * opened.
 */
#include "postgres.h"

#include <xxhash.h>

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "bk.h"
#include "bk_util.h"

/* Bytes of one stored digest. */
#define DIGEST_BYTES sizeof(uint64)

/* Maps are written in batches of about this many bytes, or this many files. */
#define WRITE_BATCH_BYTES (4 * 1024 * 1024)
#define WRITE_BATCH_FILES 512

/*
 * bk_block_digest
 *		The digest of one page.
 */
uint64
bk_block_digest(const uint8 *block)
{
	return (uint64) XXH3_64bits(block, BLCKSZ);
}

/*
 * bk_blockmap_start
 *		Get map ready for a file of file_size bytes: empty, with room for
 *		every whole block of the file.
 */
void
bk_blockmap_start(BkBlockMap *map, uint64 file_size)
{
	uint64 blocks = file_size / BLCKSZ;

	if (blocks > PG_UINT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("relation file of " UINT64_FORMAT " bytes is too large",
						file_size)));
	if (blocks > map->capacity || map->digests == NULL)
	{
		free(map->digests);
		map->digests = malloc(Max(blocks, 1) * DIGEST_BYTES);
		map->capacity = (uint32) Max(blocks, 1);
	}
	if (map->partial == NULL)
		map->partial = malloc(BLCKSZ);
	if (map->digests == NULL || map->partial == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	map->count = 0;
	map->partial_len = 0;
}

/*
 * bk_blockmap_add
 *		The next len bytes of the file, in order: every block they complete
 *		gets its digest.  Bytes past the room bk_blockmap_start made (the
 *		file grew while it was read) are not digested: the snapshot's object
 *		ends at the size it started with.  No PostgreSQL calls: libbk
 *		callbacks call this.
 */
void
bk_blockmap_add(BkBlockMap *map, const uint8 *data, size_t len)
{
	while (len > 0 && map->count < map->capacity)
	{
		if (map->partial_len == 0 && len >= BLCKSZ)
		{
			map->digests[map->count++] = bk_block_digest(data);
			data += BLCKSZ;
			len -= BLCKSZ;
			continue;
		}
		{
			size_t take = Min(len, BLCKSZ - map->partial_len);

			memcpy(map->partial + map->partial_len, data, take);
			map->partial_len += take;
			data += take;
			len -= take;
			if (map->partial_len == BLCKSZ)
			{
				map->digests[map->count++] = bk_block_digest(map->partial);
				map->partial_len = 0;
			}
		}
	}
}

/* Free what the map holds; it can be started again. */
void
bk_blockmap_release(BkBlockMap *map)
{
	free(map->digests);
	free(map->partial);
	memset(map, 0, sizeof(*map));
}

/*
 * bk_path_as_text
 *		A file's path as bk_snapshot_history.file_list and
 *		bk_snapshot_blocks.path keep it: as it is when it is valid text in
 *		the database's encoding, otherwise "\x" and its bytes in hex.  File
 *		names are bytes; stored raw in a text column, one that is not valid
 *		text makes a dump of the database fail to load ("invalid byte
 *		sequence").  A path that starts with "\x" itself is hex-encoded too,
 *		so the two forms never meet.  Paths are only compared in this form,
 *		never turned back into file names.
 */
char *
bk_path_as_text(const char *path)
{
	size_t len = strlen(path);
	char *text;

	if (strncmp(path, "\\x", 2) != 0 &&
		pg_verify_mbstr(GetDatabaseEncoding(), path, (int) len, true))
		return pstrdup(path);
	text = palloc(2 * len + 3);
	text[0] = '\\';
	text[1] = 'x';
	bk_hex_encode((const uint8 *) path, len, text + 2);
	return text;
}

/*
 * bk_blockmap_load
 *		The map snapshot_id kept for path, into map; false if it kept none,
 *		or only part of one.  A file the snapshot read in ranges has one row
 *		per range (first_block: the range's first block); they are put
 *		together, and must follow one another from block 0.  Inside the
 *		caller's SPI connection.
 */
bool
bk_blockmap_load(const char *table, const char *snapshot_id, const char *path,
				 BkBlockMap *map)
{
	StringInfoData sql;
	uint64 total = 0;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT first_block, digests FROM %s "
					 "WHERE snapshot_id = $1 AND path = $2 "
					 "ORDER BY first_block",
					 table);
	if (SPI_execute_with_args(
			sql.data, 2, (Oid[]){TEXTOID, TEXTOID},
			(Datum[]){CStringGetTextDatum(snapshot_id),
					  CStringGetTextDatum(bk_path_as_text(path))},
			NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the page digests of snapshot %s",
			 snapshot_id);
	pfree(sql.data);
	if (SPI_processed == 0)
		return false;
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		bool isnull;
		int64 first = DatumGetInt64(SPI_getbinval(
			SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1, &isnull));
		bytea *stored = DatumGetByteaPP(SPI_getbinval(
			SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 2, &isnull));
		size_t len = VARSIZE_ANY_EXHDR(stored);

		if (len % DIGEST_BYTES != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("the page digests of \"%s\" in snapshot %s are "
							"damaged (%zu bytes)",
							path, snapshot_id, len),
					 errhint("Take a full snapshot: SELECT * FROM "
							 "bk_snapshot('full').")));
		/* A range without digests: the map is not whole. */
		if ((uint64) first != total)
			return false;
		total += len / DIGEST_BYTES;
	}
	bk_blockmap_start(map, total * BLCKSZ);
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		bool isnull;
		bytea *stored = DatumGetByteaPP(SPI_getbinval(
			SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 2, &isnull));
		size_t len = VARSIZE_ANY_EXHDR(stored);
		const uint8 *bytes = (const uint8 *) VARDATA_ANY(stored);

		for (size_t pos = 0; pos < len; pos += DIGEST_BYTES)
			map->digests[map->count++] = bk_get_be64(bytes + pos);
	}
	return true;
}

/*
 * bk_blockmap_writer_init
 *		A writer of snapshot_id's maps into table (quoted), batching them.
 */
void
bk_blockmap_writer_init(BkBlockMapWriter *writer, const char *table,
						const char *snapshot_id)
{
	memset(writer, 0, sizeof(*writer));
	strlcpy(writer->table, table, sizeof(writer->table));
	strlcpy(writer->snapshot_id, snapshot_id, sizeof(writer->snapshot_id));
	writer->context = AllocSetContextCreate(TopMemoryContext, "bk page digests",
											ALLOCSET_DEFAULT_SIZES);
}

/*
 * bk_blockmap_queue
 *		Keep path's map (of the range from first_block, or of the whole
 *		file: 0) to be written; true when enough is queued that the caller
 *		should flush.
 */
bool
bk_blockmap_queue(BkBlockMapWriter *writer, const char *path,
				  BlockNumber first_block, const BkBlockMap *map)
{
	MemoryContext old = MemoryContextSwitchTo(writer->context);
	size_t len = (size_t) map->count * DIGEST_BYTES;
	bytea *value = palloc(VARHDRSZ + len);
	uint8 *out = (uint8 *) VARDATA(value);

	SET_VARSIZE(value, VARHDRSZ + len);
	for (uint32 idx = 0; idx < map->count; idx++)
		bk_put_be64(out + (size_t) idx * DIGEST_BYTES, map->digests[idx]);
	writer->paths = lappend(writer->paths, bk_path_as_text(path));
	writer->first_blocks = lappend_int(writer->first_blocks, (int) first_block);
	writer->values = lappend(writer->values, value);
	writer->queued_bytes += len;
	MemoryContextSwitchTo(old);
	return writer->queued_bytes >= WRITE_BATCH_BYTES ||
		   list_length(writer->paths) >= WRITE_BATCH_FILES;
}

/* Anything queued? */
bool
bk_blockmap_pending(const BkBlockMapWriter *writer)
{
	return writer->paths != NIL;
}

/*
 * bk_blockmap_flush
 *		Write what is queued, in one statement.  Inside the caller's SPI
 *		connection.
 */
void
bk_blockmap_flush(BkBlockMapWriter *writer)
{
	int count = list_length(writer->paths);
	Datum *paths;
	Datum *first_blocks;
	Datum *values;
	StringInfoData sql;
	int idx = 0;
	ListCell *path_cell;
	ListCell *first_cell;
	ListCell *value_cell;

	if (count == 0)
		return;
	paths = palloc(sizeof(Datum) * count);
	first_blocks = palloc(sizeof(Datum) * count);
	values = palloc(sizeof(Datum) * count);
	forthree(path_cell, writer->paths, first_cell, writer->first_blocks,
			 value_cell, writer->values)
	{
		paths[idx] = CStringGetTextDatum(lfirst(path_cell));
		first_blocks[idx] =
			Int64GetDatum((int64) (uint32) lfirst_int(first_cell));
		values[idx] = PointerGetDatum(lfirst(value_cell));
		idx++;
	}
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "INSERT INTO %s (snapshot_id, path, first_block, digests) "
					 "SELECT $1, p, f, d FROM unnest($2, $3, $4) AS m(p, f, d)",
					 writer->table);
	if (SPI_execute_with_args(
			sql.data, 4,
			(Oid[]){TEXTOID, TEXTARRAYOID, INT8ARRAYOID, BYTEAARRAYOID},
			(Datum[]){CStringGetTextDatum(writer->snapshot_id),
					  PointerGetDatum(construct_array(paths, count, TEXTOID, -1,
													  false, TYPALIGN_INT)),
					  PointerGetDatum(
						  construct_array(first_blocks, count, INT8OID, 8,
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
					  PointerGetDatum(construct_array(
						  values, count, BYTEAOID, -1, false, TYPALIGN_INT))},
			NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the page digests of snapshot %s",
			 writer->snapshot_id);
	MemoryContextReset(writer->context);
	writer->paths = NIL;
	writer->first_blocks = NIL;
	writer->values = NIL;
	writer->queued_bytes = 0;
}

/*
 * bk_blockmap_prune
 *		Drop every map no future snapshot can build on: keep those of running
 *		snapshots, of the newest complete full snapshot and of the newest
 *		complete snapshot (the parents bk_snapshot() picks).  Inside the
 *		caller's SPI connection.
 */
void
bk_blockmap_prune(const char *blocks_table, const char *history_table)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(
		&sql,
		"DELETE FROM %s WHERE snapshot_id <> ALL (ARRAY("
		"SELECT snapshot_id FROM %s WHERE state = 'running' "
		"UNION ALL (SELECT snapshot_id FROM %s WHERE state = 'complete' "
		"ORDER BY start_time DESC LIMIT 1) "
		"UNION ALL (SELECT snapshot_id FROM %s WHERE state = 'complete' "
		"AND kind = 'full' ORDER BY start_time DESC LIMIT 1)))",
		blocks_table, history_table, history_table, history_table);
	if (SPI_execute(sql.data, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not remove page digests no snapshot needs");
	pfree(sql.data);
}
