/*
 * restore_data.c
 *		Table data of a MariaDB snapshot, loaded into the target by --jobs
 *		connections in parallel, largest tables first.
 *
 * Each part (at most 32 MiB of rows) is decrypted and authenticated whole,
 * in memory, then streamed to the server with LOAD DATA LOCAL INFILE
 * through the client library's infile callbacks: no plaintext file, one
 * transaction per part.  While the server loads a part, the next one is
 * decrypted: memory stays bounded by 2 x jobs x part size.  The server must
 * load every line of a part without a warning; a table's rows, bytes and
 * SHA-256 must equal its record once its last part is in.  A sequence is
 * a table too (created in its CREATE TABLE ... SEQUENCE=1 form): loading
 * its one row gives it its whole state, increment and cache included.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bk_crypto.h"
#include "bk_util.h"
#include "restore.h"

typedef struct InfileBuffer
{
	const uint8_t *data;
	size_t len;
	size_t pos;
} InfileBuffer;

static int
infile_init(void **ptr, const char *filename, void *userdata)
{
	*ptr = userdata;
	return 0;
}

static int
infile_read(void *ptr, char *buf, unsigned int buf_len)
{
	InfileBuffer *in = ptr;
	size_t n = in->len - in->pos;

	if (n > buf_len)
		n = buf_len;
	memcpy(buf, in->data + in->pos, n);
	in->pos += n;
	return (int) n;
}

static void
infile_end(void *ptr)
{
}

static int
infile_error(void *ptr, char *msg, unsigned int msg_len)
{
	return 0;
}

/* The schema.json entry of a record's table. */
static json_t *
schema_table(const MariadbRestore *r, json_t *record_table)
{
	json_int_t index =
		json_integer_value(json_object_get(record_table, "index"));
	size_t idx;
	json_t *item;

	json_array_foreach(
		json_object_get(r->schema, "tables"), idx,
		item) if (json_integer_value(json_object_get(item, "index")) ==
				  index) return item;
	return NULL;
}

/*
 * load_statement
 *		LOAD DATA LOCAL INFILE ... INTO TABLE `db`.`t` CHARACTER SET binary
 *		(`c1`, ...), identifiers quoted.
 */
static char *
load_statement(json_t *table, BkError *err)
{
	json_t *columns = json_object_get(table, "copied_columns");
	const char *db = json_string_value(json_object_get(table, "database"));
	const char *name = json_string_value(json_object_get(table, "name"));
	size_t cap =
		256 + 2 * (db ? strlen(db) : 0) + 2 * (name ? strlen(name) : 0);
	size_t used;
	size_t idx;
	json_t *column;
	char *sql;
	char quoted[2 * 256 + 3];

	json_array_foreach(columns, idx, column) cap +=
		2 * strlen(json_string_value(column) ? json_string_value(column) : "") +
		4;
	sql = bk_cli_alloc_zero(cap, 1);
	if (db == NULL || name == NULL || !json_is_array(columns) ||
		!bk_sql_quote_ident(quoted, sizeof(quoted), db))
	{
		free(sql);
		bk_error_set(err, BK_ERR_FORMAT, "a table of schema.json is malformed");
		return NULL;
	}
	used = (size_t) snprintf(
		sql, cap, "LOAD DATA LOCAL INFILE 'bk' INTO TABLE %s.", quoted);
	bk_sql_quote_ident(quoted, sizeof(quoted), name);
	used += (size_t) snprintf(sql + used, cap - used,
							  "%s CHARACTER SET binary (", quoted);
	json_array_foreach(columns, idx, column)
	{
		if (!bk_sql_quote_ident(
				quoted, sizeof(quoted),
				json_string_value(column) ? json_string_value(column) : ""))
		{
			free(sql);
			bk_error_set(err, BK_ERR_FORMAT,
						 "a column name of `%s`.`%s` is too long", db, name);
			return NULL;
		}
		used += (size_t) snprintf(sql + used, cap - used, "%s%s",
								  idx ? ", " : "", quoted);
	}
	snprintf(sql + used, cap - used, ")");
	return sql;
}

static bool
first_warning(MYSQL *conn, char *out, size_t out_len)
{
	MYSQL_RES *res;
	MYSQL_ROW row;

	out[0] = '\0';
	if (mysql_query(conn, "SHOW WARNINGS LIMIT 1") != 0 ||
		(res = mysql_store_result(conn)) == NULL)
		return false;
	if ((row = mysql_fetch_row(res)) != NULL)
		snprintf(out, out_len, "%s %s: %s", row[0] ? row[0] : "",
				 row[1] ? row[1] : "", row[2] ? row[2] : "");
	mysql_free_result(res);
	return true;
}

/*
 * One part decrypted by a thread of its own, so the next part of a table is
 * authenticated and counted while the server loads the current one.  A
 * loader has at most two parts in memory.
 */
typedef struct PartFetch
{
	MariadbRestore *r;
	BkDecoder *decoder; /* the loader's: one fetch at a time uses it */
	char object[BK_OBJECT_NAME_MAX + 1];
	uint8_t *data;
	size_t len;
	uint64_t lines;
	bool ok;
	BkError err;
	pthread_t thread;
	bool started;
} PartFetch;

/* The rows of a part: one per line, every line ending in a newline. */
static uint64_t
count_lines(const uint8_t *data, size_t len)
{
	uint64_t lines = 0;

	for (size_t idx = 0; idx < len; idx++)
		lines += data[idx] == '\n';
	return lines;
}

static void *
fetch_part(void *arg)
{
	PartFetch *fetch = arg;

	bk_error_clear(&fetch->err);
	fetch->ok = bk_repo_decrypt_to_memory(
		fetch->r->ctx.repo, BK_REPO_ARCHIVE, fetch->r->source, BK_KIND_SNAPSHOT,
		fetch->object, fetch->decoder, RESTORE_PART_MAX, &fetch->data,
		&fetch->len, &fetch->err);
	fetch->lines = fetch->ok ? count_lines(fetch->data, fetch->len) : 0;
	return NULL;
}

/* The object of part `part` of table number `index` (both from 1). */
static void
part_object(const MariadbRestore *r, int index, int part, char *out,
			size_t out_len)
{
	snprintf(out, out_len, "%s/data/%06d.%06d", r->snapshot->id, index, part);
}

static void
fetch_start(PartFetch *fetch, MariadbRestore *r, BkDecoder *decoder, int index,
			int part)
{
	memset(fetch, 0, sizeof(*fetch));
	fetch->r = r;
	fetch->decoder = decoder;
	part_object(r, index, part, fetch->object, sizeof(fetch->object));
	fetch->started = true;
	if (pthread_create(&fetch->thread, NULL, fetch_part, fetch) != 0)
	{
		fetch_part(fetch); /* no thread: do it here */
		fetch->started = false;
	}
}

/* Wait for the fetch; its data stays for the caller to free. */
static void
fetch_wait(PartFetch *fetch)
{
	if (fetch->started)
		pthread_join(fetch->thread, NULL);
	fetch->started = false;
}

typedef struct Recreate
{
	MYSQL *conn;
	json_t *table; /* schema.json's */
} Recreate;

/*
 * recreate_table
 *		Drop the table and create it again from its definition.
 */
static bool
recreate_table(void *arg, BkError *err)
{
	Recreate *re = arg;
	const char *db = json_string_value(json_object_get(re->table, "database"));
	const char *name = json_string_value(json_object_get(re->table, "name"));
	char quoted_db[2 * 256 + 3], quoted_name[2 * 256 + 3];
	char sql[1100];
	char *text;
	size_t len;
	bool ok;

	if (!bk_sql_quote_ident(quoted_db, sizeof(quoted_db), db) ||
		!bk_sql_quote_ident(quoted_name, sizeof(quoted_name), name) ||
		!restore_text(json_object_get(re->table, "create"), &text, &len))
		return bk_error_set(err, BK_ERR_FORMAT,
							"table `%s`.`%s`: its definition is malformed", db,
							name);
	snprintf(sql, sizeof(sql), "DROP TABLE %s.%s", quoted_db, quoted_name);
	ok = mysql_query(re->conn, sql) == 0 &&
		 mysql_select_db(re->conn, db) == 0 &&
		 mysql_real_query(re->conn, text, (unsigned long) len) == 0;
	free(text);
	if (!ok)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"table `%s`.`%s`: creating it again: %s", db, name,
							mysql_error(re->conn));
	return true;
}

/* What a table's record says of its data. */
typedef struct TableWant
{
	const char *db;
	const char *name;
	int index; /* from 1 */
	int parts;
	uint64_t rows;
	uint64_t bytes;
	const char *sha256; /* hex */
} TableWant;

static void
table_want(json_t *record_table, TableWant *want)
{
	want->db = json_string_value(json_object_get(record_table, "database"));
	want->name = json_string_value(json_object_get(record_table, "name"));
	want->index =
		(int) json_integer_value(json_object_get(record_table, "index"));
	want->parts =
		(int) json_integer_value(json_object_get(record_table, "parts"));
	want->rows =
		(uint64_t) json_integer_value(json_object_get(record_table, "rows"));
	want->bytes =
		(uint64_t) json_integer_value(json_object_get(record_table, "bytes"));
	want->sha256 = json_string_value(json_object_get(record_table, "sha256"));
}

/*
 * table_matches
 *		A table's rows, bytes and SHA-256 (sha, finished here) against its
 *		record; `got` says what the counts are of ("loaded with", "holds").
 */
static bool
table_matches(const TableWant *want, BkSha256 *sha, uint64_t rows,
			  uint64_t bytes, const char *got, BkError *err)
{
	uint8_t digest[BK_SHA256_LEN];
	char hex[2 * BK_SHA256_LEN + 1];

	if (!bk_sha256_final(sha, digest, err))
		return false;
	bk_hex_encode(digest, BK_SHA256_LEN, hex);
	if (rows == want->rows && bytes == want->bytes &&
		strcmp(hex, want->sha256) == 0)
		return true;
	return bk_error_set(err, BK_ERR_FORMAT,
						"table `%s`.`%s` %s %" PRIu64 " rows, %" PRIu64
						" bytes and SHA-256 %.16s...;"
						" its record says %" PRIu64 ", %" PRIu64
						" and %.16s...",
						want->db, want->name, got, rows, bytes, hex, want->rows,
						want->bytes, want->sha256);
}

/*
 * load_table
 *		Every part of one table, in order, checked against its record;
 *		plain secondary indexes built after the data (restore_indexes.c).
 */
static bool
load_table(MariadbRestore *r, MYSQL *conn, BkDecoder *decoder,
		   json_t *record_table, BkError *err)
{
	json_t *table = schema_table(r, record_table);
	TableWant want;
	const char *db, *name;
	int index, parts;
	uint64_t rows = 0, bytes = 0;
	BkSha256 *sha;
	char *sql;
	char *add_indexes = NULL;
	Recreate recreate;
	PartFetch fetches[2] = {0};
	bool ok = true;

	table_want(record_table, &want);
	db = want.db;
	name = want.name;
	index = want.index;
	parts = want.parts;
	if (table == NULL || db == NULL || name == NULL || want.sha256 == NULL)
		return bk_error_set(err, BK_ERR_FORMAT,
							"snapshot %s: table number %d of its record is not"
							" in schema.json",
							r->snapshot->id, index);
	recreate.conn = conn;
	recreate.table = table;
	if (!restore_defer_indexes(conn, db, name, recreate_table, &recreate,
							   &add_indexes, err))
		return false;
	if ((sql = load_statement(table, err)) == NULL)
	{
		free(add_indexes);
		return false;
	}
	if ((sha = bk_sha256_new(err)) == NULL)
	{
		free(sql);
		free(add_indexes);
		return false;
	}
	if (parts > 0)
		fetch_start(&fetches[0], r, decoder, index, 1);
	for (int part = 1; part <= parts; part++)
	{
		PartFetch *fetch = &fetches[(part - 1) % 2];
		InfileBuffer in;
		char warning[512];

		fetch_wait(fetch);
		if (ok && part < parts && !atomic_load(&r->abort))
			fetch_start(&fetches[part % 2], r, decoder, index, part + 1);
		if (!ok || atomic_load(&r->abort))
		{
			free(fetch->data);
			fetch->data = NULL;
			continue;
		}
		if (!fetch->ok)
		{
			*err = fetch->err;
			ok = bk_error_prefix(err, "table `%s`.`%s`, part %d of %d: ", db,
								 name, part, parts);
			free(fetch->data);
			fetch->data = NULL;
			continue;
		}
		in.data = fetch->data;
		in.len = fetch->len;
		in.pos = 0;
		mysql_set_local_infile_handler(conn, infile_init, infile_read,
									   infile_end, infile_error, &in);
		if (!bk_sha256_update(sha, fetch->data, fetch->len, err))
			ok = false;
		else if (mysql_query(conn, sql) != 0)
			ok = bk_error_set(err, BK_ERR_INTERNAL,
							  "loading table `%s`.`%s`, part %d of %d: %s"
							  " (error %u)",
							  db, name, part, parts, mysql_error(conn),
							  mysql_errno(conn));
		else if (mysql_warning_count(conn) > 0)
		{
			first_warning(conn, warning, sizeof(warning));
			ok = bk_error_set(err, BK_ERR_INTERNAL,
							  "loading table `%s`.`%s`, part %d of %d: the"
							  " server changed a value: %s",
							  db, name, part, parts, warning);
		}
		else if ((uint64_t) mysql_affected_rows(conn) != fetch->lines)
			ok = bk_error_set(err, BK_ERR_INTERNAL,
							  "loading table `%s`.`%s`, part %d of %d: %" PRIu64
							  " rows loaded of %" PRIu64,
							  db, name, part, parts,
							  (uint64_t) mysql_affected_rows(conn),
							  fetch->lines);
		/* Not the default handler, which would send any file asked for. */
		restore_refuse_local_infile(conn);
		free(fetch->data);
		fetch->data = NULL;
		rows += fetch->lines;
		bytes += fetch->len;
		atomic_fetch_add(&r->rows_loaded, fetch->lines);
		atomic_fetch_add(&r->bytes_loaded, fetch->len);
	}
	free(sql);
	if (ok && !atomic_load(&r->abort))
		ok = table_matches(&want, sha, rows, bytes, "loaded with", err);
	bk_sha256_free(sha);
	if (ok && add_indexes != NULL)
		atomic_fetch_add(&r->indexes_deferred, 1);
	if (ok && add_indexes != NULL && mysql_query(conn, add_indexes) != 0)
		ok = bk_error_set(err, BK_ERR_INTERNAL,
						  "table `%s`.`%s`: building its secondary indexes"
						  " after the data: %s (error %u)",
						  db, name, mysql_error(conn), mysql_errno(conn));
	free(add_indexes);
	return ok;
}

/*
 * check_table
 *		What load_table checks of a table's data, without the server: every
 *		part decrypted and authenticated, and the table's rows, bytes and
 *		SHA-256 equal to its record.  Run before --force drops anything.
 */
static bool
check_table(MariadbRestore *r, MYSQL *conn, BkDecoder *decoder,
			json_t *record_table, BkError *err)
{
	TableWant want;
	uint64_t rows = 0, bytes = 0;
	BkSha256 *sha;
	bool ok = true;

	(void) conn;
	table_want(record_table, &want);
	if (want.db == NULL || want.name == NULL || want.sha256 == NULL)
		return bk_error_set(err, BK_ERR_FORMAT,
							"snapshot %s: table number %d of its record is"
							" malformed",
							r->snapshot->id, want.index);
	if ((sha = bk_sha256_new(err)) == NULL)
		return false;
	for (int part = 1; ok && part <= want.parts && !atomic_load(&r->abort);
		 part++)
	{
		char object[BK_OBJECT_NAME_MAX + 1];
		uint8_t *data = NULL;
		size_t len = 0;
		uint64_t lines = 0;

		part_object(r, want.index, part, object, sizeof(object));
		if (!bk_repo_decrypt_to_memory(r->ctx.repo, BK_REPO_ARCHIVE, r->source,
									   BK_KIND_SNAPSHOT, object, decoder,
									   RESTORE_PART_MAX, &data, &len, err))
		{
			ok = bk_error_prefix(err,
								 "table `%s`.`%s`, part %d of %d: ", want.db,
								 want.name, part, want.parts);
			break;
		}
		lines = count_lines(data, len);
		ok = bk_sha256_update(sha, data, len, err);
		free(data);
		rows += lines;
		bytes += len;
		atomic_fetch_add(&r->rows_loaded, lines);
		atomic_fetch_add(&r->bytes_loaded, len);
	}
	if (ok && !atomic_load(&r->abort))
		ok = table_matches(&want, sha, rows, bytes, "holds", err);
	bk_sha256_free(sha);
	return ok;
}

/* What one pass over the tables does to each, on r->jobs threads. */
typedef bool (*TableTask)(MariadbRestore *r, MYSQL *conn, BkDecoder *decoder,
						  json_t *record_table, BkError *err);

typedef struct TablePass
{
	MariadbRestore *r;
	TableTask task;
	bool connect;      /* the task needs a connection to the target */
	const char *label; /* of the progress line */
} TablePass;

static void
fail_all(MariadbRestore *r, const BkError *err)
{
	pthread_mutex_lock(&r->lock);
	if (!atomic_load(&r->abort))
		r->first_error = *err;
	atomic_store(&r->abort, true);
	pthread_mutex_unlock(&r->lock);
}

static void *
table_worker(void *arg)
{
	const TablePass *pass = arg;
	MariadbRestore *r = pass->r;
	BkError err;
	MYSQL *conn = NULL;
	BkDecoder *decoder;
	int slot = RESTORE_JOBS_MAX;

	bk_error_clear(&err);
	/* A decoder follows one object at a time: one per loader. */
	decoder = bk_decoder_new(r->ctx.ring, &err);
	if (decoder == NULL)
	{
		fail_all(r, &err);
		return NULL;
	}
	if (pass->connect && (conn = restore_connect(r, true, &err)) == NULL)
	{
		bk_decoder_free(decoder);
		fail_all(r, &err);
		return NULL;
	}
	if (conn != NULL)
	{
		pthread_mutex_lock(&r->lock);
		for (slot = 0; slot < RESTORE_JOBS_MAX; slot++)
			if (r->loader_ids[slot] == 0)
			{
				r->loader_ids[slot] = mysql_thread_id(conn);
				break;
			}
		pthread_mutex_unlock(&r->lock);
	}
	while (!atomic_load(&r->abort))
	{
		json_t *table = NULL;

		pthread_mutex_lock(&r->lock);
		if (r->next_table < r->work_count)
			table = r->work[r->next_table++];
		pthread_mutex_unlock(&r->lock);
		if (table == NULL)
			break;
		if (!pass->task(r, conn, decoder, table, &err))
		{
			fail_all(r, &err);
			break;
		}
		atomic_fetch_add(&r->tables_done, 1);
	}
	if (conn != NULL)
	{
		/* Not killed once closed: its id may be another's by then. */
		pthread_mutex_lock(&r->lock);
		if (slot < RESTORE_JOBS_MAX)
			r->loader_ids[slot] = 0;
		pthread_mutex_unlock(&r->lock);
		mysql_close(conn);
	}
	mysql_thread_end();
	bk_decoder_free(decoder);
	return NULL;
}

/*
 * stop_loaders
 *		A signal during the load: the loaders stop at their next part, and
 *		the statement each runs (a part's LOAD DATA, an index build that
 *		may take minutes) is killed; the server rolls back the part.  Each
 *		then closes its connection and ends: nothing of theirs runs when
 *		the settings are put back.
 */
static void
stop_loaders(MariadbRestore *r, int signo)
{
	BkError err;

	bk_error_set(&err, BK_ERR_INTERRUPTED,
				 "the table data load was stopped by signal %d (%s): the"
				 " target holds part of it",
				 signo, strsignal(signo));
	fail_all(r, &err);
	pthread_mutex_lock(&r->lock);
	for (int slot = 0; slot < RESTORE_JOBS_MAX; slot++)
		if (r->loader_ids[slot] != 0)
		{
			char sql[64];

			snprintf(sql, sizeof(sql), "KILL QUERY %lu", r->loader_ids[slot]);
			/* Between statements it kills nothing: the loader stops. */
			(void) mysql_query(r->conn, sql);
		}
	pthread_mutex_unlock(&r->lock);
}

static int
larger_first(const void *a, const void *b)
{
	json_int_t size_a =
		json_integer_value(json_object_get(*(json_t *const *) a, "bytes"));
	json_int_t size_b =
		json_integer_value(json_object_get(*(json_t *const *) b, "bytes"));

	return size_a < size_b ? 1 : size_a > size_b ? -1 : 0;
}

static void
print_progress(const MariadbRestore *r, const char *label, double elapsed,
			   bool last)
{
	double done = (double) atomic_load(&r->bytes_loaded);
	double rate = elapsed > 0 ? done / elapsed : 0;
	double eta = rate > 0 ? ((double) r->bytes_total - done) / rate : 0;

	fprintf(stderr,
			"\r%s: %" PRIu64 "/%zu tables, %" PRIu64
			" rows, %.1f of %.1f MB, %.1f MB/s, ETA %.0f s   %s",
			label, (uint64_t) atomic_load(&r->tables_done), r->work_count,
			(uint64_t) atomic_load(&r->rows_loaded), done / 1e6,
			(double) r->bytes_total / 1e6, rate / 1e6, eta, last ? "\n" : "");
}

bool
restore_check_parts(MariadbRestore *r, BkError *err)
{
	json_t *tables = json_object_get(r->record, "tables");
	uint64_t missing = 0, expected = 0;
	char first[BK_OBJECT_NAME_MAX + 1] = "";
	size_t idx;
	json_t *table;

	json_array_foreach(tables, idx, table)
	{
		int index = (int) json_integer_value(json_object_get(table, "index"));
		int parts = (int) json_integer_value(json_object_get(table, "parts"));

		for (int part = 1; part <= parts; part++)
		{
			char object[BK_OBJECT_NAME_MAX + 1];
			BkRepoStat stat;

			part_object(r, index, part, object, sizeof(object));
			if (!bk_repo_stat(r->ctx.repo, BK_REPO_ARCHIVE, r->source,
							  BK_KIND_SNAPSHOT, object, &stat, err))
				return false;
			expected++;
			if (!stat.exists && missing++ == 0)
				bk_strlcpy(first, object, sizeof(first));
		}
	}
	if (missing == 0)
		return true;
	bk_error_set(err, BK_ERR_SEQUENCE,
				 "snapshot %s is not complete: %" PRIu64 " of the %" PRIu64
				 " data objects its record lists are not in the repository"
				 " (the first: %s)",
				 r->snapshot->id, missing, expected, first);
	return bk_error_hint(err,
						 "\"bk verify --source %s\" checks the snapshots;"
						 " pass --snapshot with an older complete one.",
						 r->source);
}

/*
 * table_is_remote
 *		A FEDERATED or SPIDER table: its rows live on the servers it names.
 *		The snapshot read them, as they were then; loading them into the
 *		restored table would insert them into those servers' tables, on
 *		which the restore has no business (duplicates, or a refusal that
 *		fails the restore).  Its definition is restored, its rows are not.
 */
static bool
table_is_remote(const MariadbRestore *r, json_t *record_table)
{
	json_t *table = schema_table(r, record_table);
	const char *engine =
		table ? json_string_value(json_object_get(table, "engine")) : NULL;

	return engine != NULL && (strcasecmp(engine, "FEDERATED") == 0 ||
							  strcasecmp(engine, "SPIDER") == 0);
}

/*
 * build_work
 *		The tables whose rows are loaded, largest first; the rows of remote
 *		tables are listed as left where they live.  Once per restore.
 */
static void
build_work(MariadbRestore *r)
{
	json_t *tables = json_object_get(r->record, "tables");
	size_t count = json_array_size(tables);
	size_t idx;
	json_t *table;

	if (r->work != NULL)
		return;
	r->work = bk_cli_alloc_zero(count ? count : 1, sizeof(json_t *));
	json_array_foreach(tables, idx, table)
	{
		if (table_is_remote(r, table))
		{
			json_array_append_new(r->remote_left,
								  json_pack("{s:O, s:O}", "database",
											json_object_get(table, "database"),
											"name",
											json_object_get(table, "name")));
			continue;
		}
		r->work[r->work_count++] = table;
	}
	qsort(r->work, r->work_count, sizeof(json_t *), larger_first);
}

static double
seconds_from(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double) (now.tv_sec - start->tv_sec) +
		   (double) (now.tv_nsec - start->tv_nsec) / 1e9;
}

/*
 * run_pass
 *		pass->task on every table of the work list, on r->jobs threads; the
 *		first failure stops them all and is returned.
 */
static bool
run_pass(MariadbRestore *r, TablePass *pass, BkError *err)
{
	pthread_t threads[RESTORE_JOBS_MAX];
	int started = 0;
	bool tty = isatty(2) && !r->common.json;
	struct timespec start;

	build_work(r);
	r->next_table = 0;
	atomic_store(&r->tables_done, 0);
	atomic_store(&r->rows_loaded, 0);
	atomic_store(&r->bytes_loaded, 0);
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (int job = 0; job < r->jobs && (size_t) job < r->work_count; job++)
	{
		if (pthread_create(&threads[job], NULL, table_worker, pass) != 0)
		{
			BkError spawn_err;

			bk_error_set(&spawn_err, BK_ERR_NOMEM, "could not start a thread");
			fail_all(r, &spawn_err);
			break;
		}
		started++;
	}
	/* A signal is looked for every 100 ms (restore_signal_taken). */
	for (int tick = 1; atomic_load(&r->tables_done) < r->work_count &&
					   !atomic_load(&r->abort);
		 tick++)
	{
		int signo;

		usleep(100 * 1000);
		if (pass->connect && (signo = restore_signal_taken(r)) != 0)
			stop_loaders(r, signo);
		else if (tty && tick % 5 == 0)
			print_progress(r, pass->label, seconds_from(&start), false);
	}
	for (int job = 0; job < started; job++)
		pthread_join(threads[job], NULL);
	if (tty)
		print_progress(r, pass->label, seconds_from(&start), true);
	if (atomic_load(&r->abort))
	{
		*err = r->first_error;
		return false;
	}
	return true;
}

bool
restore_check_data(MariadbRestore *r, BkError *err)
{
	TablePass pass = {.r = r, .task = check_table, .label = "checking"};
	bool ok = run_pass(r, &pass, err);

	if (!ok && err->hint[0] == '\0')
		bk_error_hint(err,
					  "Nothing was written to the target: --force dropped"
					  " nothing.  \"bk verify --source %s\" checks the"
					  " snapshots; pass --snapshot with an older good one.",
					  r->source);
	return ok;
}

bool
restore_load_data(MariadbRestore *r, BkError *err)
{
	TablePass pass = {
		.r = r, .task = load_table, .connect = true, .label = "loading"};

	restore_mark_step(r, "table data");
	return run_pass(r, &pass, err);
}
