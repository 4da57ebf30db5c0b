/*
 * snapshot.c
 *		SELECT bk_snapshot(): a consistent logical snapshot of a MariaDB
 *		server at exact binlog coordinates, without FLUSH TABLES WITH READ
 *		LOCK.
 *
 * The consistent point (docs/mariadb-snapshot-format.md says what is sent):
 *
 *   control connection                 reader connections (one per job)
 *   (accounts connection: LOCK TABLES on the account tables; account
 *    statements wait from here, BLOCK_DDL does not stop them)
 *   BACKUP STAGE START
 *   BACKUP STAGE BLOCK_DDL             (DDL waits from here)
 *   every definition captured          (SHOW CREATE is not MVCC: DDL must
 *                                       be held off while it is read;
 *                                       accounts on their connection)
 *   (locker connection: LOCK TABLES ... READ on the tables without
 *    transactions; their writes wait from here)
 *                                      START TRANSACTION READ ONLY, each:
 *                                      no read view yet; every reader
 *                                      touches every table it reads: its
 *                                      metadata lock keeps DDL off them
 *                                      until the snapshot ends (250 tables
 *                                      a statement, readers at once)
 *   (servers connection: LOCK TABLES mysql.servers READ, the server
 *    definitions read; CREATE/ALTER/DROP SERVER, which no binlog holds,
 *    wait from here)
 *   BACKUP STAGE BLOCK_COMMIT          (commits wait, for a moment)
 *   XA RECOVER lists nothing           (else the attempt is undone and
 *                                       tried again once those end)
 *                                      each reads one row of an InnoDB
 *                                      table: its read view, one and the
 *                                      same state
 *   Binlog_snapshot_file/_position:    (the binlog's last commit; with
 *   the coordinates                     MyRocks tables the readers start
 *                                       WITH CONSISTENT SNAPSHOT here and
 *                                       lock metadata only then)
 *   (servers connection: UNLOCK TABLES; server statements go on)
 *   BACKUP STAGE END                   (commits and other DDL go on)
 *   (accounts connection: UNLOCK TABLES; account statements go on)
 *   (locker: the locked tables read, then UNLOCK TABLES)
 *                                      tables read in parallel, largest first
 *
 * BACKUP STAGE runs on its own connection because it auto-commits: on a
 * reader it would end the snapshot transaction.  Waits for locks are short
 * (lock_wait_timeout), so a session holding LOCK TABLES or a running
 * mariabackup makes the snapshot fail at once with a message that says so,
 * never hang.  Tables of engines without transactions (Aria, MyISAM) are
 * not covered by the consistent read: they are held still by a read lock
 * from before the consistent point until they are read (remote ones,
 * FEDERATED, CONNECT, SPIDER, are read later, as they are then).
 *
 * Values are read byte-exact: query text in utf8mb4, results unconverted
 * (character_set_results NULL), UTC session time zone, lengths from the
 * protocol.  Rows stream (mysql_use_result) into parts of at most
 * part_size bytes in LOAD DATA form, each part one object, so memory stays
 * jobs x part_size whatever the table size.
 *
 * Each job thread has its own connection, encoder and producer; the job's
 * main thread sends the schema and, once every part was acknowledged, the
 * record (snapshot.json), which makes the snapshot complete.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <mysql.h>

#include "bk_audit.h"
#include "bk_config.h"
#include "bk_crypto.h"
#include "bk_mariadb_part.h"
#include "bk_util.h"
#include "snapshot.h"
#include "snapshot_meta.h"

typedef struct Worker Worker;

/* One table (or view-less object with rows) to copy. */
typedef struct SnapTable
{
	int index;
	char *database;
	char *name;
	char *type; /* BASE TABLE, SYSTEM VERSIONED, SEQUENCE */
	char *engine;
	/*
	 * In the consistent read (InnoDB, MyRocks); else read under a table
	 * read lock taken before the consistent point (MyISAM, Aria, MEMORY,
	 * ...), unless remote (FEDERATED, CONNECT, SPIDER: their data lives
	 * elsewhere and is read after, outside the snapshot).
	 */
	bool transactional;
	bool remote;
	bool no_data; /* MERGE: its rows are its children's, copied as theirs */
	uint64_t estimated_rows;
	uint64_t data_length; /* bytes, as the engine's statistics say */
	char *select_sql;     /* identifiers quoted */
	json_t *dumped_columns;

	/* Results, written by the job thread that copied the table. */
	uint64_t rows;
	uint64_t bytes;
	int parts;
	char sha256[2 * BK_SHA256_LEN + 1];
} SnapTable;

typedef struct SnapRun
{
	SnapshotJob *job;
	Agent *agent;
	MYSQL *control;
	MYSQL *accounts; /* reads the accounts, holding their tables */
	bool accounts_locked;
	MYSQL *servers; /* reads mysql.servers, holding it to the point */
	bool servers_locked;
	MYSQL *locker;     /* holds and reads the tables without transactions */
	int locked_count;  /* those tables, first in tables[] once locked */
	int64_t locked_ms; /* when their read lock was granted */
	MYSQL *readers[SNAPSHOT_JOBS_MAX];
	int reader_count;
	json_t *schema;
	SnapTable *tables;
	int table_count;
	int next_table;  /* guarded by job->lock */
	int table_end;   /* the tables being copied end here */
	Worker *workers; /* one per reader, made at the first copy */
	char binlog_file[BK_BINLOG_FILE_NAME_MAX + 1];
	uint64_t binlog_pos;
	char gtid[BK_BINLOG_GTID_STATE_MAX];
	char server_version[64];
	int64_t started_ms;
	/*
	 * Wall time taken while commits were blocked at the consistent point:
	 * every transaction the snapshot holds committed before it, which
	 * started_ms (before the definitions were read and BLOCK_DDL waited)
	 * does not promise.
	 */
	int64_t consistent_ms;
	BkProducer *producer; /* the main thread's: schema, record, audit */
	/* key_file's key when the snapshot began: all its objects are sealed
	 * to it, a rotation meanwhile applying from the next snapshot on */
	BkKey key;
	BkEncoder *encoder;
	char topic[BK_TOPIC_NAME_MAX + 1];
	bool stage_open; /* BACKUP STAGE not yet ended */
	/*
	 * XA transactions found prepared under BLOCK_COMMIT, one per line in
	 * XA RECOVER's SQL form: the attempt cannot be the consistent point.
	 */
	bool xa_blocked;
	char xa_prepared[2048];
	BkError worker_error;
	bool worker_failed;      /* guarded by job->lock */
	unsigned int last_errno; /* of the last statement that failed */
	bool mdl_failed;         /* a reader's metadata locks; job->lock */
	/*
	 * The readers took their metadata locks under BLOCK_DDL, before
	 * commits were blocked, in transactions without a read view yet (no
	 * engine but InnoDB has a consistent read to capture): see
	 * consistent_point().
	 */
	bool locked_before_commits;
	int64_t mdl_ms;     /* how long taking them took */
	int mdl_statements; /* per reader */
} SnapRun;

/* ------------------------------------------------------------ helpers */

/*
 * json_text
 *		A JSON string for server text; text that is not UTF-8 (a binary
 *		default in a definition) travels as {"hex": ...}.
 */
static json_t *
json_text(const char *data, size_t len)
{
	json_t *value;
	char *hex;

	if (data == NULL)
		return json_null();
	value = json_stringn(data, len);
	if (value != NULL)
		return value;
	hex = malloc(2 * len + 1);
	if (hex == NULL)
		return NULL;
	bk_hex_encode((const uint8_t *) data, len, hex);
	value = json_pack("{s:s}", "hex", hex);
	free(hex);
	return value;
}

static bool
set_cancelled(SnapRun *run, BkError *err)
{
	return bk_error_set(err, BK_ERR_INTERRUPTED, "snapshot %s was cancelled",
						run->job->id);
}

/*
 * lock_wait_hint
 *		A lock wait that timed out says who is likely holding the lock.  The
 *		session calling bk_snapshot() comes first: it waits for the agent
 *		meanwhile, so locks of its own (BACKUP STAGE, or LOCK TABLES ...
 *		WRITE where bk_udf.so cannot see it: a server without
 *		thd_test_options) are never released in time.  Kept short: the UDF
 *		passes on at most 447 bytes of the error, the SQL text included.
 */
static void
lock_wait_hint(unsigned int code, BkError *err)
{
	if (code == 1205 /* ER_LOCK_WAIT_TIMEOUT */)
		bk_error_hint(err,
					  "A session holds a lock the snapshot needs: the one"
					  " calling bk_snapshot() (its own LOCK TABLES or"
					  " BACKUP STAGE: end them first), or another (LOCK"
					  " TABLES, a long DDL, a long write to a MyISAM or"
					  " Aria table, a backup such as mariabackup); bk"
					  " waits at most %d s.",
					  SNAPSHOT_LOCK_WAIT_S);
}

/*
 * run_sql
 *		A statement on conn; with rows, its result stored there.  A lock wait
 *		that times out says who is likely holding the lock.
 */
static bool
run_sql(SnapRun *run, MYSQL *conn, const char *sql, MYSQL_RES **rows,
		BkError *err)
{
	MYSQL_RES *res;

	if (run->job->cancel)
		return set_cancelled(run, err);
	if (mysql_real_query(conn, sql, strlen(sql)) != 0)
	{
		unsigned int code = mysql_errno(conn);

		run->last_errno = code;

		bk_error_set(err, BK_ERR_IO, "snapshot %s: \"%.200s\" failed: %s",
					 run->job->id, sql, mysql_error(conn));
		lock_wait_hint(code, err);
		return false;
	}
	res = mysql_store_result(conn);
	if (rows == NULL)
	{
		if (res != NULL)
			mysql_free_result(res);
		return true;
	}
	if (res == NULL)
		return bk_error_set(err, BK_ERR_IO,
							"snapshot %s: \"%.200s\" returned no rows: %s",
							run->job->id, sql, mysql_error(conn));
	*rows = res;
	return true;
}

static MYSQL_RES *
run_query(SnapRun *run, MYSQL *conn, const char *sql, bool want_rows,
		  BkError *err)
{
	MYSQL_RES *res = NULL;

	return run_sql(run, conn, sql, &res, err) ? res : NULL;
}

static bool
run_statement(SnapRun *run, MYSQL *conn, const char *sql, BkError *err)
{
	return run_sql(run, conn, sql, NULL, err);
}

/*
 * snapshot_connect
 *		A connection for the snapshot: utf8mb4 queries, unconverted results,
 *		UTC, short lock waits, no query cache.
 */
static MYSQL *
snapshot_connect(SnapRun *run, BkError *err)
{
	MYSQL *conn = agent_connect(run->agent, err);
	char sql[96];
	char write_timeout[96];
	char idle_timeout[64];
	int64_t write_s;

	if (conn == NULL)
		return NULL;
	snprintf(sql, sizeof(sql), "SET SESSION lock_wait_timeout = %d",
			 SNAPSHOT_LOCK_WAIT_S);

	/*
	 * Rows stream (mysql_use_result): while a part is sent to Kafka, the
	 * reader (or the locker) reads nothing, and once the socket buffers
	 * are full the server waits to write the rest of the result.  It gives
	 * up after net_write_timeout (60 s by default), and the snapshot fails
	 * with a lost connection, though the send may legitimately take longer:
	 * a part of up to BK_MARIADB_PART_MAX bytes waits on the brokers up to
	 * about message.timeout.ms (kafka_timeout, 30 s by default) per window
	 * in flight before the send fails by itself.  Allow the server that,
	 * and its default on top; a Kafka that does not answer then fails the
	 * snapshot with Kafka's error, not the server's.  net_read_timeout is
	 * left alone: it bounds the server's read of a statement or of LOAD
	 * DATA LOCAL's data, and these connections send statements only.
	 */
	write_s = bk_producer_send_wait_max_ms(run->producer, BK_MARIADB_PART_MAX);
	write_s = write_s / 1000 + 60;
	if (write_s > SNAPSHOT_NET_WRITE_TIMEOUT_MAX_S)
		write_s = SNAPSHOT_NET_WRITE_TIMEOUT_MAX_S;
	snprintf(write_timeout, sizeof(write_timeout),
			 "SET SESSION net_write_timeout = %" PRId64, write_s);
	/*
	 * A connection waits idle while the others work: the control and
	 * accounts connections until the end, the readers while the locker
	 * reads the tables without transactions, each reader once the tables
	 * left are the others'.  That lasts as long as the largest table takes
	 * to read, and the server drops a connection idle for wait_timeout (8 h
	 * by default, often lowered to minutes): the snapshot failed then.  So
	 * the longest the server allows; an agent that dies closes them.
	 */
	snprintf(idle_timeout, sizeof(idle_timeout),
			 "SET SESSION wait_timeout = %d", SNAPSHOT_WAIT_TIMEOUT_S);
	if (!run_statement(run, conn, "SET NAMES utf8mb4", err) ||
		!run_statement(run, conn, "SET character_set_results = NULL", err) ||
		!run_statement(run, conn, sql, err) ||
		!run_statement(run, conn, write_timeout, err) ||
		!run_statement(run, conn, idle_timeout, err) ||
		!run_statement(run, conn, "SET SESSION sql_mode = ''", err))
	{
		mysql_close(conn);
		return NULL;
	}

	/*
	 * The query cache, where a DBA turned it on, must not serve or store
	 * these statements.  Storing a result checks with InnoDB whether its
	 * tables may be cached, and InnoDB then makes the transaction's read
	 * view: a reader's first metadata-lock statement (LIMIT 0, meant to
	 * read nothing) would fix its view before commits are blocked, and the
	 * snapshot would miss what commits until then, though its coordinates
	 * come after.  A result served from the cache opens no table, so it
	 * takes no metadata lock either.  A server built without the query
	 * cache has no such variable, and nothing to turn off.
	 */
	if (mysql_query(conn, "SET SESSION query_cache_type = OFF") != 0 &&
		mysql_errno(conn) != 1193 /* ER_UNKNOWN_SYSTEM_VARIABLE */)
	{
		bk_error_set(err, BK_ERR_IO,
					 "snapshot %s: could not turn the query cache off for the"
					 " snapshot's connection: %s",
					 run->job->id, mysql_error(conn));
		mysql_close(conn);
		return NULL;
	}
	/*
	 * Its statements only read (SELECT, SHOW, LOCK TABLES ... READ, BACKUP
	 * STAGE, read-only transactions): none is written to the binlog, so
	 * complete-until need not wait for them, and a table read for an hour
	 * would hold it back that long.  By its id, not by the agent's
	 * account: another client logged in as that account (root by default)
	 * can write.
	 */
	agent_snapshot_id_add(run->agent, mysql_thread_id(conn));
	return conn;
}

_Static_assert(AGENT_SNAPSHOT_IDS_MAX >= 4 + SNAPSHOT_JOBS_MAX,
			   "a snapshot's connections: control, accounts, servers, locker"
			   " and the readers");

/*
 * send_object
 *		Encode and send one in-memory object of the snapshot, waiting for
 *		Kafka's acknowledgement.
 */
typedef struct MemObject
{
	BkEncoder *encoder;
	const uint8_t *data;
	size_t len;
	size_t done;
} MemObject;

static bool
mem_next_frame(void *arg, const uint8_t **frame, size_t *len, BkFrame *info,
			   BkError *err)
{
	MemObject *obj = arg;
	uint32_t chunk;

	if (bk_encoder_done(obj->encoder))
	{
		*frame = NULL;
		*len = 0;
		return true;
	}
	chunk = bk_encoder_next_chunk_len(obj->encoder);
	if (chunk > obj->len - obj->done)
		return bk_error_set(err, BK_ERR_INTERNAL, "snapshot object too short");
	obj->done += chunk;
	return bk_encoder_chunk(obj->encoder, obj->data + obj->done - chunk, chunk,
							frame, len, info, err);
}

static bool
snap_interrupted(void *arg)
{
	SnapshotJob *job = arg;

	return job->cancel || agent_stop_requested;
}

/*
 * send_object
 *		One object of the snapshot, with its metadata (snapshot_object_meta,
 *		or NULL for the one every part has).
 */
static bool
send_object(SnapRun *run, BkProducer *producer, BkEncoder *encoder,
			const char *part, const uint8_t *data, size_t len,
			const char *object_meta, BkError *err)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	char key[BK_SOURCE_ID_MAX + BK_OBJECT_NAME_MAX + 2];
	char meta[BK_FRAME_META_MAX + 1];
	BkObjectInfo info;
	MemObject obj = {encoder, data, len, 0};
	BkSendStats stats;

	snprintf(name, sizeof(name), "%s/%s", run->job->id, part);
	snprintf(key, sizeof(key), "%s/%s", run->agent->config.source_id, name);
	if (object_meta != NULL)
		bk_strlcpy(meta, object_meta, sizeof(meta));
	else if (!snapshot_object_meta(run->job->id, NULL, meta, sizeof(meta), err))
		return false;
	memset(&info, 0, sizeof(info));
	info.kind = BK_KIND_SNAPSHOT;
	info.source_id = run->agent->config.source_id;
	info.name = name;
	info.meta = meta;
	info.size = len;
	memset(&stats, 0, sizeof(stats));
	if (!bk_encoder_begin(encoder, &info, err) ||
		!bk_producer_send_object(producer, run->topic, key, strlen(key),
								 mem_next_frame, &obj, snap_interrupted,
								 run->job, &stats, err))
	{
		if (run->job->cancel)
			return set_cancelled(run, err);
		return bk_error_prefix(err, "sending %s: ", name);
	}
	pthread_mutex_lock(&run->job->lock);
	run->job->sent += stats.bytes;
	pthread_mutex_unlock(&run->job->lock);
	return true;
}

/* ------------------------------------------------------------ schema */

#define EXCLUDED_SCHEMAS                                                       \
	"('information_schema', 'performance_schema', 'sys', 'mysql')"

/*
 * show_create
 *		"SHOW CREATE <what> `db`[.`name`]" on the control connection, its
 *		result stored; NULL with err set on failure.  Names are quoted, never
 *		pasted.
 */
static MYSQL_RES *
show_create(SnapRun *run, const char *what, const char *db, const char *name,
			BkError *err)
{
	char quoted_db[2 * 256 + 3];
	char quoted_name[2 * 256 + 3];
	char sql[1200];

	if (!bk_sql_quote_ident(quoted_db, sizeof(quoted_db), db) ||
		(name != NULL &&
		 !bk_sql_quote_ident(quoted_name, sizeof(quoted_name), name)))
	{
		bk_error_set(err, BK_ERR_INTERNAL, "name too long: `%s`.`%s`", db,
					 name ? name : "");
		return NULL;
	}
	if (name != NULL)
		snprintf(sql, sizeof(sql), "%s %s.%s", what, quoted_db, quoted_name);
	else
		snprintf(sql, sizeof(sql), "%s %s", what, quoted_db);
	return run_query(run, run->control, sql, true, err);
}

/*
 * capture_list
 *		For each row of a listing query, SHOW CREATE ... of the object it
 *		names, into an array of the schema: fields are the SHOW columns kept
 *		(by position), under the names given.
 */
typedef struct ShowSpec
{
	const char *array;   /* key in the schema */
	const char *listing; /* rows: database, name[, extra] */
	const char *show;    /* "SHOW CREATE VIEW" */
	int fields;
	const int positions[6];
	const char *names[6];
} ShowSpec;

static bool
capture_list(SnapRun *run, const ShowSpec *spec, BkError *err)
{
	MYSQL_RES *list = run_query(run, run->control, spec->listing, true, err);
	MYSQL_ROW row;
	json_t *array = json_array();

	if (list == NULL)
	{
		json_decref(array);
		return false;
	}
	while ((row = mysql_fetch_row(list)) != NULL)
	{
		MYSQL_RES *res;
		MYSQL_ROW show;
		unsigned long *lengths;
		json_t *item;

		res = show_create(run, spec->show, row[0], row[1], err);
		if (res == NULL)
		{
			mysql_free_result(list);
			json_decref(array);
			return false;
		}
		show = mysql_fetch_row(res);
		lengths = mysql_fetch_lengths(res);
		if (show == NULL)
		{
			mysql_free_result(res);
			continue; /* dropped meanwhile: cannot be, DDL is blocked */
		}
		item = json_pack("{s:s, s:s}", "database", row[0], "name", row[1]);
		if (mysql_num_fields(list) > 2 && row[2] != NULL)
			json_object_set_new(item, "type", json_string(row[2]));
		for (int idx = 0; idx < spec->fields; idx++)
		{
			int pos = spec->positions[idx];

			if ((unsigned) pos < mysql_num_fields(res))
				json_object_set_new(item, spec->names[idx],
									json_text(show[pos], lengths[pos]));
		}
		json_array_append_new(array, item);
		mysql_free_result(res);
	}
	mysql_free_result(list);
	json_object_set_new(run->schema, spec->array, array);
	return true;
}

static const ShowSpec show_specs[] = {
	{"views",
	 "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.VIEWS"
	 " WHERE TABLE_SCHEMA NOT IN " EXCLUDED_SCHEMAS
	 " ORDER BY TABLE_SCHEMA, TABLE_NAME",
	 "SHOW CREATE VIEW",
	 3,
	 {1, 2, 3},
	 {"create", "character_set_client", "collation_connection"}},
	{"procedures",
	 "SELECT ROUTINE_SCHEMA, ROUTINE_NAME FROM information_schema.ROUTINES"
	 " WHERE ROUTINE_TYPE = 'PROCEDURE' AND ROUTINE_SCHEMA NOT "
	 "IN " EXCLUDED_SCHEMAS " ORDER BY ROUTINE_SCHEMA, ROUTINE_NAME",
	 "SHOW CREATE PROCEDURE",
	 5,
	 {1, 2, 3, 4, 5},
	 {"sql_mode", "create", "character_set_client", "collation_connection",
	  "database_collation"}},
	{"functions",
	 "SELECT ROUTINE_SCHEMA, ROUTINE_NAME FROM information_schema.ROUTINES"
	 " WHERE ROUTINE_TYPE = 'FUNCTION' AND ROUTINE_SCHEMA NOT "
	 "IN " EXCLUDED_SCHEMAS " ORDER BY ROUTINE_SCHEMA, ROUTINE_NAME",
	 "SHOW CREATE FUNCTION",
	 5,
	 {1, 2, 3, 4, 5},
	 {"sql_mode", "create", "character_set_client", "collation_connection",
	  "database_collation"}},
	{"triggers",
	 "SELECT TRIGGER_SCHEMA, TRIGGER_NAME FROM information_schema.TRIGGERS"
	 " WHERE TRIGGER_SCHEMA NOT IN " EXCLUDED_SCHEMAS
	 " ORDER BY TRIGGER_SCHEMA, EVENT_OBJECT_TABLE, ACTION_ORDER",
	 "SHOW CREATE TRIGGER",
	 5,
	 {1, 2, 3, 4, 5},
	 {"sql_mode", "create", "character_set_client", "collation_connection",
	  "database_collation"}},
	{"events",
	 "SELECT EVENT_SCHEMA, EVENT_NAME FROM information_schema.EVENTS"
	 " WHERE EVENT_SCHEMA NOT IN " EXCLUDED_SCHEMAS
	 " ORDER BY EVENT_SCHEMA, EVENT_NAME",
	 "SHOW CREATE EVENT",
	 6,
	 {1, 2, 3, 4, 5, 6},
	 {"sql_mode", "time_zone", "create", "character_set_client",
	  "collation_connection", "database_collation"}},
};

/*
 * capture_databases
 *		Every database but the server's own, with SHOW CREATE DATABASE.
 */
static bool
capture_databases(SnapRun *run, BkError *err)
{
	MYSQL_RES *list =
		run_query(run, run->control,
				  "SELECT SCHEMA_NAME FROM"
				  " information_schema.SCHEMATA WHERE SCHEMA_NAME"
				  " NOT IN " EXCLUDED_SCHEMAS " ORDER BY SCHEMA_NAME",
				  true, err);
	MYSQL_ROW row;
	json_t *array = json_array();

	if (list == NULL)
	{
		json_decref(array);
		return false;
	}
	while ((row = mysql_fetch_row(list)) != NULL)
	{
		MYSQL_RES *res;
		MYSQL_ROW show;

		res = show_create(run, "SHOW CREATE DATABASE", row[0], NULL, err);
		if (res == NULL)
		{
			mysql_free_result(list);
			json_decref(array);
			return false;
		}
		show = mysql_fetch_row(res);
		if (show != NULL)
			json_array_append_new(
				array, json_pack("{s:s, s:o}", "name", row[0], "create",
								 json_text(show[1], strlen(show[1]))));
		mysql_free_result(res);
	}
	mysql_free_result(list);
	json_object_set_new(run->schema, "databases", array);
	return true;
}

/* Order of SnapTable pointers by database, then name, byte by byte. */
static int
compare_table_names(const void *a, const void *b)
{
	const SnapTable *ta = *(const SnapTable *const *) a;
	const SnapTable *tb = *(const SnapTable *const *) b;
	int cmp = strcmp(ta->database, tb->database);

	return cmp != 0 ? cmp : strcmp(ta->name, tb->name);
}

/*
 * capture_tables
 *		Tables with SHOW CREATE TABLE and the columns that are copied: all
 *		but generated ones, plus the period columns of system-versioned
 *		tables (their history is copied too).
 */
static bool
capture_tables(SnapRun *run, BkError *err)
{
	MYSQL_RES *list;
	MYSQL_RES *cols;
	MYSQL_ROW row;
	SnapTable **by_name;
	json_t *array = json_array();
	int count;

	list = run_query(run, run->control,
					 "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE,"
					 " IFNULL(ENGINE, ''), IFNULL(TABLE_ROWS, 0),"
					 " IFNULL(DATA_LENGTH, 0)"
					 " FROM information_schema.TABLES WHERE TABLE_TYPE IN"
					 " ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE') AND"
					 " TABLE_SCHEMA NOT IN " EXCLUDED_SCHEMAS
					 " ORDER BY TABLE_SCHEMA, TABLE_NAME",
					 true, err);
	if (list == NULL)
	{
		json_decref(array);
		return false;
	}
	count = (int) mysql_num_rows(list);
	run->tables = calloc((size_t) (count ? count : 1), sizeof(SnapTable));
	if (run->tables == NULL)
	{
		mysql_free_result(list);
		json_decref(array);
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	while ((row = mysql_fetch_row(list)) != NULL)
	{
		SnapTable *t = &run->tables[run->table_count];
		MYSQL_RES *res;
		MYSQL_ROW show;
		unsigned long *lengths;

		res = show_create(run, "SHOW CREATE TABLE", row[0], row[1], err);
		if (res == NULL)
		{
			mysql_free_result(list);
			json_decref(array);
			return false;
		}
		show = mysql_fetch_row(res);
		lengths = mysql_fetch_lengths(res);
		t->index = run->table_count + 1;
		t->database = strdup(row[0]);
		t->name = strdup(row[1]);
		t->type = strdup(row[2]);
		t->engine = strdup(row[3]);
		t->estimated_rows = strtoull(row[4], NULL, 10);
		t->data_length = strtoull(row[5], NULL, 10);
		t->transactional = strcasecmp(row[3], "InnoDB") == 0 ||
						   strcasecmp(row[3], "ROCKSDB") == 0;
		t->remote = strcasecmp(row[3], "FEDERATED") == 0 ||
					strcasecmp(row[3], "CONNECT") == 0 ||
					strcasecmp(row[3], "SPIDER") == 0;
		t->no_data = strcasecmp(row[3], "MRG_MyISAM") == 0;
		t->dumped_columns = json_array();
		json_array_append_new(
			array,
			json_pack("{s:i, s:s, s:s, s:s, s:s, s:o, s:b, s:[]}", "index",
					  t->index, "database", row[0], "name", row[1], "type",
					  row[2], "engine", row[3], "create",
					  show ? json_text(show[1], lengths[1]) : json_null(),
					  "transactional", t->transactional, "columns"));
		mysql_free_result(res);
		run->table_count++;
	}
	mysql_free_result(list);

	/* Columns of every table at once, in order. */
	cols = run_query(run, run->control,
					 "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE,"
					 " COLUMN_TYPE, IS_GENERATED,"
					 " IFNULL(GENERATION_EXPRESSION, ''), EXTRA"
					 " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA NOT "
					 "IN " EXCLUDED_SCHEMAS
					 " ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
					 true, err);
	if (cols == NULL)
	{
		json_decref(array);
		return false;
	}
	by_name = malloc(sizeof(SnapTable *) * (size_t) (run->table_count + 1));
	if (by_name == NULL)
	{
		mysql_free_result(cols);
		json_decref(array);
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	for (int idx = 0; idx < run->table_count; idx++)
		by_name[idx] = &run->tables[idx];
	qsort(by_name, (size_t) run->table_count, sizeof(SnapTable *),
		  compare_table_names);
	while ((row = mysql_fetch_row(cols)) != NULL)
	{
		SnapTable key = {.database = row[0], .name = row[1]};
		SnapTable *keyp = &key;
		SnapTable **found;
		json_t *table_json;
		bool period =
			strcmp(row[6], "ROW START") == 0 || strcmp(row[6], "ROW END") == 0;
		bool copied = strcmp(row[5], "NEVER") == 0 || period;

		/* A lookup per column, not a scan: 50k tables have 500k columns. */
		found = bsearch(&keyp, by_name, (size_t) run->table_count,
						sizeof(SnapTable *), compare_table_names);
		if (found == NULL)
			continue; /* a view's */
		table_json = json_array_get(array, (size_t) (*found - run->tables));
		json_array_append_new(json_object_get(table_json, "columns"),
							  json_pack("{s:s, s:s, s:s, s:b, s:b, s:s}",
										"name", row[2], "data_type", row[3],
										"column_type", row[4], "copied", copied,
										"period", period, "extra", row[7]));
		if (copied)
			json_array_append_new((*found)->dumped_columns,
								  json_string(row[2]));
	}
	free(by_name);
	mysql_free_result(cols);

	/* The SELECT of each table, identifiers quoted. */
	for (int idx = 0; idx < run->table_count; idx++)
	{
		SnapTable *t = &run->tables[idx];
		json_t *table_json = json_array_get(array, (size_t) idx);
		bool versioned = strcmp(t->type, "SYSTEM VERSIONED") == 0;
		bool explicit_period = false;
		size_t cap = 256, used;
		char *sql;
		char quoted[2 * 256 + 3];
		size_t colIdx;
		json_t *col;

		json_array_foreach(t->dumped_columns, colIdx, col) cap +=
			2 * strlen(json_string_value(col)) + 4;
		cap += 2 * strlen(t->database) + 2 * strlen(t->name) + 64;
		sql = malloc(cap);
		if (sql == NULL)
		{
			json_decref(array);
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		}
		used = (size_t) snprintf(sql, cap, "SELECT ");
		json_array_foreach(t->dumped_columns, colIdx, col)
		{
			bk_sql_quote_ident(quoted, sizeof(quoted), json_string_value(col));
			used += (size_t) snprintf(sql + used, cap - used, "%s%s",
									  colIdx ? ", " : "", quoted);
		}
		if (versioned)
		{
			/* Implicit period columns are not listed: name them. */
			json_array_foreach(json_object_get(table_json, "columns"), colIdx,
							   col) explicit_period |=
				json_is_true(json_object_get(col, "period"));
			if (!explicit_period)
			{
				used += (size_t) snprintf(sql + used, cap - used,
										  ", `ROW_START`, `ROW_END`");
				json_array_append_new(t->dumped_columns,
									  json_string("ROW_START"));
				json_array_append_new(t->dumped_columns,
									  json_string("ROW_END"));
			}
		}
		bk_sql_quote_ident(quoted, sizeof(quoted), t->database);
		used += (size_t) snprintf(sql + used, cap - used, " FROM %s.", quoted);
		bk_sql_quote_ident(quoted, sizeof(quoted), t->name);
		snprintf(sql + used, cap - used, "%s%s", quoted,
				 versioned ? " FOR SYSTEM_TIME ALL" : "");
		t->select_sql = sql;
		json_object_set(table_json, "copied_columns", t->dumped_columns);
	}
	json_object_set_new(run->schema, "tables", array);
	return true;
}

/*
 * The tables every account statement (CREATE/ALTER/DROP/RENAME USER,
 * GRANT, REVOKE, SET PASSWORD, roles) writes, read-locked from before the
 * accounts are read until the consistent point.  BACKUP STAGE BLOCK_DDL
 * does not hold those statements off (they are not DDL to the backup
 * lock), so without the lock an account changed after it was read and
 * before the consistent point would be in neither the snapshot nor the
 * binlog after it.  Under BLOCK_COMMIT they do wait, but reading the
 * accounts there cannot work: a GRANT waiting to commit already holds the
 * write lock on mysql.global_priv, and the read would wait for it.  With
 * the read lock taken first, an account statement waits for it before it
 * changes anything, holding nothing the backup stages need, and is logged
 * after the snapshot's coordinates.  A writer queued on these tables stops
 * other connections' reads of them (table locks serve writers first), so
 * the accounts are read on the connection holding the lock.
 */
#define ACCOUNT_TABLES_LOCK                                                    \
	"LOCK TABLES mysql.global_priv READ, mysql.db READ,"                       \
	" mysql.tables_priv READ, mysql.columns_priv READ,"                        \
	" mysql.procs_priv READ, mysql.proxies_priv READ,"                         \
	" mysql.roles_mapping READ"

static bool
lock_account_tables(SnapRun *run, BkError *err)
{
	if (!run_statement(run, run->accounts, ACCOUNT_TABLES_LOCK, err))
		return bk_error_hint(err, "The agent's MariaDB user needs LOCK TABLES"
								  " and SELECT on the mysql schema, to hold"
								  " account changes off while it reads the"
								  " accounts.");
	run->accounts_locked = true;
	return true;
}

static void
unlock_account_tables(SnapRun *run)
{
	if (run->accounts_locked)
		mysql_query(run->accounts, "UNLOCK TABLES");
	run->accounts_locked = false;
}

/*
 * Tables without transactions (MyISAM, Aria, MEMORY, ...) are outside the
 * consistent read.  Read after the consistent point, they would hold
 * writes the binlog after it holds too, and a restore would apply them
 * twice (a duplicate key stops the replay; n = n + 1 counts twice).  The
 * backup stages do not hold all their writes (Aria's go on under
 * BLOCK_DDL and then wait at commit under BLOCK_COMMIT, holding their
 * table lock), so before BLOCK_COMMIT one connection takes a read lock on
 * all of them: writes wait for it before they change anything, and what
 * it reads after the consistent point is the tables as they were there.
 * It reads them once commits go on again, then lets their writes go on.
 * Readers must not touch them meanwhile: a writer waiting for the lock
 * holds other sessions' reads of the table back too.
 */

/* Read under the locker's table lock (see above)? */
static bool
table_is_locked(const SnapTable *t)
{
	return !t->transactional && !t->remote && !t->no_data;
}

/*
 * lock_tables_without_transactions
 *		Put the tables to lock first in tables[] and read-lock them on the
 *		locker connection (DDL is held off: the list stays true).
 */
static bool
lock_tables_without_transactions(SnapRun *run, BkError *err)
{
	size_t cap = 64, len;
	char *sql;
	bool ok;

	run->locked_count = 0;
	for (int idx = 0; idx < run->table_count; idx++)
		if (table_is_locked(&run->tables[idx]))
			run->locked_count++;
	if (run->locked_count == 0)
		return true;
	/* A stable partition in one pass (moving each one down was quadratic). */
	if (run->locked_count < run->table_count)
	{
		SnapTable *sorted =
			malloc(sizeof(SnapTable) * (size_t) run->table_count);
		int first = 0, rest = run->locked_count;

		if (sorted == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		for (int idx = 0; idx < run->table_count; idx++)
			sorted[table_is_locked(&run->tables[idx]) ? first++ : rest++] =
				run->tables[idx];
		free(run->tables);
		run->tables = sorted;
	}
	for (int idx = 0; idx < run->locked_count; idx++)
		cap += 2 * (2 * strlen(run->tables[idx].database) + 3) +
			   2 * (2 * strlen(run->tables[idx].name) + 3) + 16;
	sql = malloc(cap);
	if (sql == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	len = (size_t) snprintf(sql, cap, "LOCK TABLES ");
	for (int idx = 0; idx < run->locked_count; idx++)
	{
		SnapTable *t = &run->tables[idx];
		char db[2 * 256 + 3], name[2 * 256 + 3];

		bk_sql_quote_ident(db, sizeof(db), t->database);
		bk_sql_quote_ident(name, sizeof(name), t->name);
		len += (size_t) snprintf(sql + len, cap - len, "%s%s.%s READ",
								 idx ? ", " : "", db, name);
	}
	ok = run_statement(run, run->locker, sql, err);
	free(sql);
	if (!ok)
		return false;
	run->locked_ms = bk_monotonic_ms();
	return true;
}

static void
unlock_tables_without_transactions(SnapRun *run)
{
	if (run->locker != NULL && run->locked_ms != 0)
		mysql_query(run->locker, "UNLOCK TABLES");
	run->locked_ms = 0;
}

/*
 * capture_accounts
 *		Users and roles with their definition and grants.  mysql.user is a
 *		view over mysql.global_priv; the statements are the server's own.
 *		Read under the account tables' lock, on its connection.
 */
/* The longest account name and host, in bytes (char(128), char(255)). */
#define ACCOUNT_NAME_MAX (128 * 4)
#define ACCOUNT_HOST_MAX (255 * 4)

static bool
capture_accounts(SnapRun *run, BkError *err)
{
	MYSQL_RES *list =
		run_query(run, run->accounts,
				  "SELECT User, Host,"
				  " IFNULL(JSON_VALUE(Priv, '$.is_role'), 'false')"
				  " FROM mysql.global_priv"
				  " WHERE NOT (User = 'mariadb.sys')"
				  " ORDER BY User, Host",
				  true, err);
	MYSQL_ROW row;
	json_t *array = json_array();

	if (list == NULL)
	{
		json_decref(array);
		return bk_error_hint(err, "The agent's MariaDB user needs SELECT on"
								  " mysql.global_priv to capture accounts.");
	}
	while ((row = mysql_fetch_row(list)) != NULL)
	{
		/*
		 * User is char(128) in utf8mb3, Host char(255): counted in bytes of
		 * utf8mb4, with room for every byte escaped.
		 */
		char user[2 * ACCOUNT_NAME_MAX + 1], host[2 * ACCOUNT_HOST_MAX + 1];
		char sql[64 + 2 * sizeof(user) + sizeof(host)];
		bool is_role = strcmp(row[2], "1") == 0 || strcmp(row[2], "true") == 0;
		json_t *item = json_pack("{s:s, s:s, s:b, s:[]}", "user", row[0],
								 "host", row[1], "role", is_role, "grants");
		MYSQL_RES *res;
		MYSQL_ROW show;

		if (strlen(row[0]) > ACCOUNT_NAME_MAX ||
			strlen(row[1]) > ACCOUNT_HOST_MAX)
		{
			/* Not possible in 10.11; kept with the reason, never dropped. */
			agent_log("WARNING",
					  "snapshot %s: account '%s'@'%s' not captured: name"
					  " longer than the server allows",
					  run->job->id, row[0], row[1]);
			json_object_set_new(item, "unreadable",
								json_string("name longer than the server"
											" allows"));
			json_array_append_new(array, item);
			continue;
		}
		/* String literals, escaped by the client library for this connection. */
		mysql_real_escape_string(run->accounts, user, row[0],
								 (unsigned long) strlen(row[0]));
		mysql_real_escape_string(run->accounts, host, row[1],
								 (unsigned long) strlen(row[1]));
		/*
		 * An account the server itself cannot show (a host name under
		 * skip_name_resolve) is kept with the reason, not a failed snapshot.
		 */
		if (!is_role)
		{
			snprintf(sql, sizeof(sql), "SHOW CREATE USER '%s'@'%s'", user,
					 host);
			if (mysql_query(run->accounts, sql) != 0 ||
				(res = mysql_store_result(run->accounts)) == NULL)
			{
				agent_log("WARNING",
						  "snapshot %s: account '%s'@'%s' not"
						  " captured: %s",
						  run->job->id, row[0], row[1],
						  mysql_error(run->accounts));
				json_object_set_new(item, "unreadable",
									json_string(mysql_error(run->accounts)));
				json_array_append_new(array, item);
				continue;
			}
			if ((show = mysql_fetch_row(res)) != NULL)
				json_object_set_new(item, "create",
									json_text(show[0], strlen(show[0])));
			mysql_free_result(res);
			snprintf(sql, sizeof(sql), "SHOW GRANTS FOR '%s'@'%s'", user, host);
		}
		else
			snprintf(sql, sizeof(sql), "SHOW GRANTS FOR '%s'", user);
		if (mysql_query(run->accounts, sql) != 0 ||
			(res = mysql_store_result(run->accounts)) == NULL)
		{
			agent_log("WARNING",
					  "snapshot %s: grants of '%s'@'%s' not"
					  " captured: %s",
					  run->job->id, row[0], row[1], mysql_error(run->accounts));
			json_object_set_new(item, "unreadable",
								json_string(mysql_error(run->accounts)));
			json_array_append_new(array, item);
			continue;
		}
		while ((show = mysql_fetch_row(res)) != NULL)
			json_array_append_new(json_object_get(item, "grants"),
								  json_text(show[0], strlen(show[0])));
		mysql_free_result(res);
		json_array_append_new(array, item);
	}
	mysql_free_result(list);
	json_object_set_new(run->schema, "accounts", array);
	return true;
}

/*
 * The definitions of CREATE SERVER (mysql.servers), which FEDERATED and
 * SPIDER tables name in CONNECTION.  MariaDB writes CREATE, ALTER and DROP
 * SERVER to no binlog, so no replay after the snapshot carries them: the
 * snapshot holds them as they are at its consistent point, and a restore
 * to any later point has those.  BACKUP STAGE BLOCK_DDL does not hold
 * them off, so they are read under a read lock on mysql.servers kept
 * until the coordinates are read: a server statement waits for it before
 * it changes anything.  The lock is taken only then, just before
 * BLOCK_COMMIT, on a connection of its own: a server statement waiting
 * for it holds the server's cache of definitions (THR_LOCK_servers)
 * meanwhile, and opening a FEDERATED or SPIDER table that is not open yet
 * waits for that cache, so nothing the snapshot does while the lock is
 * held may open one (the definitions and the readers' metadata locks are
 * taken before, the MyRocks path's metadata locks after it is released).
 *
 * Every value is read as stored, with its length; the password is a
 * secret: it goes to the schema (encrypted like everything else) and
 * never into a log line or an error.
 */
static bool
capture_servers(SnapRun *run, BkError *err)
{
	static const char *const names[] = {"name",     "wrapper", "host",
										"database", "user",    "password",
										"port",     "socket",  "owner"};
	MYSQL_RES *list;
	MYSQL_ROW row;
	json_t *array;

	if (!run_statement(run, run->servers, "LOCK TABLES mysql.servers READ",
					   err))
		return bk_error_hint(err, "The agent's MariaDB user needs LOCK TABLES"
								  " and SELECT on the mysql schema, to hold"
								  " CREATE/ALTER/DROP SERVER off while it"
								  " reads the server definitions.");
	run->servers_locked = true;
	list = run_query(run, run->servers,
					 "SELECT Server_name, Wrapper, Host, Db, Username,"
					 " Password, Port, Socket, Owner FROM mysql.servers"
					 " ORDER BY Server_name",
					 true, err);
	if (list == NULL)
		return bk_error_hint(err, "The agent's MariaDB user needs SELECT on"
								  " mysql.servers to capture the server"
								  " definitions.");
	array = json_array();
	while ((row = mysql_fetch_row(list)) != NULL)
	{
		unsigned long *lengths = mysql_fetch_lengths(list);
		json_t *item = json_object();

		for (size_t idx = 0; idx < sizeof(names) / sizeof(names[0]); idx++)
		{
			json_t *value;

			if (strcmp(names[idx], "port") == 0)
				value =
					json_integer(row[idx] ? strtoll(row[idx], NULL, 10) : 0);
			else
				value = json_text(row[idx] ? row[idx] : "",
								  row[idx] ? lengths[idx] : 0);
			if (value == NULL)
			{
				json_decref(item);
				json_decref(array);
				mysql_free_result(list);
				return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
			}
			json_object_set_new(item, names[idx], value);
		}
		json_array_append_new(array, item);
	}
	mysql_free_result(list);
	json_object_set_new(run->schema, "servers", array);
	return true;
}

static void
unlock_servers(SnapRun *run)
{
	if (run->servers_locked)
		mysql_query(run->servers, "UNLOCK TABLES");
	run->servers_locked = false;
}

/* ------------------------------------------------------------ consistent point */

/*
 * A transaction prepared with XA PREPARE is in the binlog (since MariaDB
 * 10.5, its changes are logged at the prepare) but not readable by another
 * session until XA COMMIT, which is logged on its own, later.  A snapshot
 * taken while one is prepared would hold none of its changes, and a restore
 * replaying the binlog from the snapshot's position would meet its XA COMMIT
 * with no prepared transaction to commit: the replay fails (XAER_NOTA)
 * after the whole load.  So the consistent point is taken only when no XA
 * transaction is prepared.  Under BLOCK_COMMIT none can be prepared or
 * ended (both wait for the stage), so XA RECOVER's answer holds until the
 * readers have started.  A prepared transaction found there ends the
 * attempt; the snapshot waits for it to end (a transaction manager commits
 * within moments) and tries again, SNAPSHOT_LOCK_WAIT_S at most.
 */

/*
 * xa_prepared_now
 *		The prepared XA transactions, one xid per line (SQL form), as many
 *		whole lines as fit; an empty string when there are none.
 */
static bool
xa_prepared_now(SnapRun *run, char *out, size_t outlen, BkError *err)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	size_t used = 0;

	out[0] = '\0';
	res = run_query(run, run->control, "XA RECOVER FORMAT='SQL'", true, err);
	if (res == NULL)
		return false;
	while ((row = mysql_fetch_row(res)) != NULL)
	{
		const char *xid = row[3] ? row[3] : "?";
		size_t len = strlen(xid);

		if (used + len + 2 > outlen)
			continue; /* listed in part; the first ones are enough */
		memcpy(out + used, xid, len);
		used += len;
		out[used++] = '\n';
		out[used] = '\0';
	}
	mysql_free_result(res);
	return true;
}

/*
 * xa_still_prepared
 *		The first xid of before (lines) that now still lists, or NULL.
 */
static const char *
xa_still_prepared(const char *before, const char *now, char *xid, size_t len)
{
	for (const char *line = before; *line != '\0';)
	{
		const char *end = strchr(line, '\n');
		size_t n = (size_t) (end - line);

		for (const char *other = now; *other != '\0';)
		{
			const char *other_end = strchr(other, '\n');

			if ((size_t) (other_end - other) == n &&
				memcmp(other, line, n) == 0)
			{
				snprintf(xid, len, "%.*s", (int) n, line);
				return xid;
			}
			other = other_end + 1;
		}
		line = end + 1;
	}
	return NULL;
}

/*
 * xa_give_up
 *		The error for XA transactions still prepared when the wait ends.
 */
static bool
xa_give_up(SnapRun *run, const char *xid, int count, bool ended, BkError *err)
{
	if (ended)
		bk_error_set(err, BK_ERR_TIMEOUT,
					 "snapshot %s: XA transactions were prepared at every"
					 " attempt at the consistent point for %d s (%d at the"
					 " last one, among them %s): a logical snapshot cannot"
					 " read a prepared transaction's changes, and a restore"
					 " could not replay its XA COMMIT",
					 run->job->id, SNAPSHOT_LOCK_WAIT_S, count, xid);
	else
		bk_error_set(err, BK_ERR_TIMEOUT,
					 "snapshot %s: XA transaction %s (one of %d prepared at"
					 " the consistent point) was still prepared after"
					 " waiting %d s: a logical snapshot cannot read a"
					 " prepared transaction's changes, and a restore could"
					 " not replay its XA COMMIT",
					 run->job->id, xid, count, SNAPSHOT_LOCK_WAIT_S);
	return bk_error_hint(err, "XA RECOVER lists the prepared transactions;"
							  " a transaction manager that died leaves them"
							  " prepared for good (even read-only ones, which"
							  " bk cannot tell apart).  Have it recover them,"
							  " or end them with XA COMMIT or XA ROLLBACK,"
							  " then take the snapshot again.  A server where"
							  " XA transactions are prepared at every moment"
							  " cannot be snapshotted this way.");
}

/*
 * xa_wait_ended
 *		Commits flowing again (the attempt undone), wait until none of the
 *		transactions found prepared is prepared any longer; false, saying
 *		which one stayed, when deadline_ms (monotonic) comes first.  Even
 *		when they ended, the deadline bounds the attempts: a server where
 *		other XA transactions are prepared at every attempt fails too.
 */
static bool
xa_wait_ended(SnapRun *run, int64_t deadline_ms, BkError *err)
{
	char before[sizeof(run->xa_prepared)];
	char now[sizeof(run->xa_prepared)];
	char xid[sizeof(run->xa_prepared)];
	int count = 0;
	bool ended = false;

	bk_strlcpy(before, run->xa_prepared, sizeof(before));
	for (const char *c = before; *c != '\0'; c++)
		count += *c == '\n';
	for (;;)
	{
		bool expired = bk_monotonic_ms() >= deadline_ms;

		if (!xa_prepared_now(run, now, sizeof(now), err))
			return false;
		if (xa_still_prepared(before, now, xid, sizeof(xid)) == NULL)
		{
			if (!expired)
				return true;
			snprintf(xid, sizeof(xid), "%.*s", (int) strcspn(before, "\n"),
					 before);
			ended = true;
			break;
		}
		if (expired)
			break;
		usleep(100 * 1000);
	}
	return xa_give_up(run, xid, count, ended, err);
}

/*
 * read_gtid_state
 *		The GTID state at the coordinates.
 */
static bool
read_gtid_state(SnapRun *run, BkError *err)
{
	bool found;

	/*
	 * The GTID state at the snapshot's position, read once commits flow
	 * again: BINLOG_GTID_POS reads the binlog file from its start (up to
	 * max_binlog_size), and under BLOCK_COMMIT every commit on the server
	 * would wait for that scan.  The position is fixed, so the answer is
	 * the same.  No answer (NULL: the file purged meanwhile, or no event
	 * boundary there) fails the snapshot: a restore could not tell which
	 * transactions it holds.
	 */
	if (!agent_binlog_gtid_pos(run->readers[0], run->binlog_file,
							   run->binlog_pos, run->gtid, sizeof(run->gtid),
							   &found, err))
		return false;
	if (!found)
		return bk_error_set(err, BK_ERR_IO,
							"the server has no GTID state at the snapshot's"
							" binlog position %s:%" PRIu64
							" (BINLOG_GTID_POS returned NULL; the file was"
							" purged meanwhile?): take the snapshot again",
							run->binlog_file, run->binlog_pos);
	return true;
}

/*
 * Metadata locks: DDL waits while they are taken (and with MyRocks tables
 * every commit too), so they go in batches, every reader at once.  One
 * statement reads no row of up to MDL_BATCH_TABLES tables,
 * "(SELECT 1 FROM a LIMIT 0) UNION ALL (SELECT 1 FROM b LIMIT 0) ...",
 * which opens each of them and keeps its shared metadata lock to the end of
 * the transaction, as the same statement on one table does; a statement per
 * table took about a millisecond per table and reader, one reader after the
 * other.  Every table of a batch is open at once: the bound keeps that well
 * inside table_open_cache (2000 by default) and open_files_limit with a
 * few readers, and the statement short.  Each reader takes its own locks:
 * an ALTER waiting for its exclusive lock would stop a reader that had
 * none from reading the table (a pending exclusive lock queues every later
 * shared one).  The readers go through the tables in the same order, so
 * the definitions one opens are still cached when the next opens them.
 */
#define MDL_BATCH_TABLES 250
#define MDL_BATCH_SQL    (64 * 1024)

typedef struct MdlReader
{
	SnapRun *run;
	MYSQL *conn;
	int number; /* from 1, for messages */
	int statements;
	unsigned int code; /* of the statement that failed; 0: none */
	int64_t failed_ms; /* when it failed: the first failure is the cause */
	pthread_t thread;
	bool ok;
	BkError err;
} MdlReader;

/*
 * mdl_batch
 *		One statement touching the count tables from first (no_data ones
 *		left out); a failure names them.
 */
static bool
mdl_batch(MdlReader *r, const char *sql, const SnapTable *first,
		  const SnapTable *last, int count)
{
	SnapRun *run = r->run;
	MYSQL_RES *res;

	if (run->job->cancel)
		return set_cancelled(run, &r->err);
	r->statements++;
	if (mysql_real_query(r->conn, sql, strlen(sql)) == 0)
	{
		/* LIMIT 0: an empty result, or none; NULL with an error fails. */
		res = mysql_store_result(r->conn);
		if (res != NULL)
		{
			mysql_free_result(res);
			return true;
		}
		if (mysql_errno(r->conn) == 0)
			return true;
	}
	r->code = mysql_errno(r->conn);
	bk_error_set(&r->err, BK_ERR_IO,
				 "snapshot %s: reader %d: metadata locks on %d table(s)"
				 " (%s.%s to %s.%s) failed: %s",
				 run->job->id, r->number, count, first->database, first->name,
				 last->database, last->name, mysql_error(r->conn));
	lock_wait_hint(r->code, &r->err);
	return false;
}

static bool
mdl_stopped(SnapRun *run)
{
	bool stopped;

	pthread_mutex_lock(&run->job->lock);
	stopped = run->mdl_failed;
	pthread_mutex_unlock(&run->job->lock);
	return stopped;
}

/*
 * mdl_reader_run
 *		Every table but the locked ones (and MERGE tables) on one reader, in
 *		batches, until done or another reader failed.
 */
static bool
mdl_reader_run(MdlReader *r)
{
	static const char glue[] = " UNION ALL ";
	SnapRun *run = r->run;
	char *sql = malloc(MDL_BATCH_SQL);
	size_t len = 0;
	int count = 0;
	const SnapTable *first = NULL;
	const SnapTable *last = NULL;
	bool ok = true;

	if (sql == NULL)
		return bk_error_set(&r->err, BK_ERR_NOMEM, "out of memory");
	for (int idx = run->locked_count; idx < run->table_count; idx++)
	{
		const SnapTable *t = &run->tables[idx];
		char db[2 * 256 + 3], name[2 * 256 + 3];
		char one[sizeof(glue) + sizeof(db) + sizeof(name) + 32];
		size_t one_len, skip;

		if (t->no_data)
			continue; /* opening it opens its (locked) children */
		if (!bk_sql_quote_ident(db, sizeof(db), t->database) ||
			!bk_sql_quote_ident(name, sizeof(name), t->name))
		{
			ok = bk_error_set(&r->err, BK_ERR_INTERNAL,
							  "name too long: `%s`.`%s`", t->database, t->name);
			break;
		}
		one_len = (size_t) snprintf(one, sizeof(one),
									"%s(SELECT 1 FROM %s.%s LIMIT 0)", glue, db,
									name);
		/* Full, or without room for this table: the batch goes first. */
		if (count == MDL_BATCH_TABLES || len + one_len >= MDL_BATCH_SQL)
		{
			if (mdl_stopped(run))
				break;
			ok = mdl_batch(r, sql, first, last, count);
			len = 0;
			count = 0;
			if (!ok)
				break;
		}
		/* A batch's first table without the glue. */
		skip = count == 0 ? sizeof(glue) - 1 : 0;
		memcpy(sql + len, one + skip, one_len - skip + 1);
		len += one_len - skip;
		if (count++ == 0)
			first = t;
		last = t;
	}
	if (ok && count > 0 && !mdl_stopped(run))
		ok = mdl_batch(r, sql, first, last, count);
	free(sql);
	return ok;
}

/* r failed (its err says why): the others stop at their next batch. */
static void
mdl_reader_failed(MdlReader *r)
{
	r->ok = false;
	r->failed_ms = bk_monotonic_ms();
	pthread_mutex_lock(&r->run->job->lock);
	r->run->mdl_failed = true;
	pthread_mutex_unlock(&r->run->job->lock);
}

static void *
mdl_reader_main(void *arg)
{
	MdlReader *r = arg;

	r->ok = mdl_reader_run(r);
	if (!r->ok)
		mdl_reader_failed(r);
	return NULL;
}

/*
 * lock_metadata
 *		Every reader's metadata locks, the readers at once, one thread each.
 *		A failure is the first reader's that failed (the others stop at
 *		their next batch): its statement's error code decides whether the
 *		attempt is tried again.
 */
static bool
lock_metadata(SnapRun *run, int *statements, BkError *err)
{
	MdlReader readers[SNAPSHOT_JOBS_MAX];
	int started = 0;
	MdlReader *failed = NULL;

	run->mdl_failed = false;
	memset(readers, 0, sizeof(readers));
	for (int idx = 0; idx < run->reader_count; idx++)
	{
		readers[idx].run = run;
		readers[idx].conn = run->readers[idx];
		readers[idx].number = idx + 1;
		bk_error_clear(&readers[idx].err);
	}
	/* The last reader on this thread: one thread fewer to start. */
	for (int idx = 0; idx < run->reader_count - 1; idx++)
	{
		MdlReader *r = &readers[idx];

		if (pthread_create(&r->thread, NULL, mdl_reader_main, r) != 0)
		{
			bk_error_set(&r->err, BK_ERR_INTERNAL,
						 "could not start a thread for the metadata locks");
			mdl_reader_failed(r);
			break;
		}
		started++;
	}
	if (!mdl_stopped(run))
		mdl_reader_main(&readers[run->reader_count - 1]);
	for (int idx = 0; idx < started; idx++)
		pthread_join(readers[idx].thread, NULL);
	for (int idx = 0; idx < run->reader_count; idx++)
	{
		MdlReader *r = &readers[idx];

		/* Readers never started have no message. */
		if (!r->ok && r->err.message[0] != '\0' &&
			(failed == NULL || r->failed_ms < failed->failed_ms))
			failed = r;
	}
	*statements = readers[0].statements;
	if (failed != NULL)
	{
		*err = failed->err;
		run->last_errno = failed->code;
		return false;
	}
	if (run->mdl_failed)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"snapshot %s: metadata locks failed", run->job->id);
	return true;
}

/*
 * take_metadata_locks
 *		lock_metadata(), timed for the log.
 */
static bool
take_metadata_locks(SnapRun *run, BkError *err)
{
	int64_t begun_ms = bk_monotonic_ms();

	if (!lock_metadata(run, &run->mdl_statements, err))
		return false;
	run->mdl_ms = bk_monotonic_ms() - begun_ms;
	return true;
}

/*
 * Metadata locks before commits are blocked.  Taken under BLOCK_COMMIT,
 * they held every commit on the server for as long as the server took to
 * open every table for every reader: about a millisecond a table once the
 * tables outnumber table_open_cache and table_definition_cache, a minute
 * at 30,000 tables.  They need no more than BLOCK_DDL (nothing can change
 * a definition from there), so the readers take them in plain
 * transactions before BLOCK_COMMIT.  What makes the snapshot consistent is
 * not the transaction's start but its InnoDB read view, which InnoDB
 * creates at the transaction's first consistent read, and "SELECT 1 FROM t
 * LIMIT 0" reads no row: under BLOCK_COMMIT, one read of a row of an
 * InnoDB table creates it, on every reader in turn, and every reader sees
 * one and the same state, that of the binlog's last commit then.
 *
 * MyRocks makes its snapshot by its own rules, which nothing here checks,
 * so a snapshot with MyRocks tables takes them as before: every reader
 * starts with START TRANSACTION WITH CONSISTENT SNAPSHOT under
 * BLOCK_COMMIT, and takes its metadata locks there.
 */

/* Only InnoDB tables in the consistent read (or none)? */
static bool
only_innodb_consistent(const SnapRun *run)
{
	for (int idx = run->locked_count; idx < run->table_count; idx++)
		if (run->tables[idx].transactional &&
			strcasecmp(run->tables[idx].engine, "InnoDB") != 0)
			return false;
	return true;
}

/*
 * lock_metadata_early
 *		Every reader in a transaction without a read view, holding its
 *		metadata locks, with commits going on.
 */
static bool
lock_metadata_early(SnapRun *run, BkError *err)
{
	for (int idx = 0; idx < run->reader_count; idx++)
		if (!run_statement(run, run->readers[idx],
						   "START TRANSACTION READ ONLY", err))
			return false;
	return take_metadata_locks(run, err);
}

/*
 * create_read_views
 *		Under BLOCK_COMMIT: every reader's InnoDB read view, by a read of
 *		one row of the smallest InnoDB table (a sequence's reads are not
 *		consistent reads).  The read skips the records it cannot see,
 *		deleted ones not yet purged among them, while every commit on the
 *		server waits: the smallest table has the fewest (a queue table's
 *		head can hold millions).  Without an InnoDB table there is no
 *		consistent read to capture.
 */
static bool
create_read_views(SnapRun *run, BkError *err)
{
	const SnapTable *t = NULL;
	char db[2 * 256 + 3], name[2 * 256 + 3];
	char sql[sizeof(db) + sizeof(name) + 32];

	for (int idx = run->locked_count; idx < run->table_count; idx++)
	{
		const SnapTable *c = &run->tables[idx];

		if (strcasecmp(c->engine, "InnoDB") == 0 &&
			strcmp(c->type, "SEQUENCE") != 0 &&
			(t == NULL || c->data_length < t->data_length))
			t = c;
	}
	if (t == NULL)
		return true;
	if (!bk_sql_quote_ident(db, sizeof(db), t->database) ||
		!bk_sql_quote_ident(name, sizeof(name), t->name))
		return bk_error_set(err, BK_ERR_INTERNAL, "name too long: `%s`.`%s`",
							t->database, t->name);
	snprintf(sql, sizeof(sql), "SELECT 1 FROM %s.%s LIMIT 1", db, name);
	for (int idx = 0; idx < run->reader_count; idx++)
	{
		MYSQL_RES *res = run_query(run, run->readers[idx], sql, true, err);

		if (res == NULL)
			return false;
		mysql_free_result(res);
	}
	return true;
}

/*
 * consistent_point
 *		Every reader in one snapshot with the coordinates, under a brief
 *		BLOCK_COMMIT (with MyRocks tables, metadata locks on every table
 *		there too); then the stage ends.
 */
static bool
consistent_point(SnapRun *run, BkError *err)
{
	MYSQL *position_conn = run->readers[0];
	MYSQL_RES *res;
	MYSQL_ROW row;
	int64_t blocked_ms;
	int touched = 0; /* tables the readers lock (MERGE ones are not) */

	if (!run_statement(run, run->control, "BACKUP STAGE BLOCK_COMMIT", err))
		return false;
	blocked_ms = bk_monotonic_ms();
	if (!xa_prepared_now(run, run->xa_prepared, sizeof(run->xa_prepared), err))
		return false;
	if (run->xa_prepared[0] != '\0')
	{
		run->xa_blocked = true;
		return bk_error_set(err, BK_ERR_TIMEOUT,
							"snapshot %s: XA transactions are prepared at the"
							" consistent point",
							run->job->id);
	}
	if (run->locked_before_commits)
	{
		if (!create_read_views(run, err))
			return false;

		/*
		 * The binlog's last commit, as the server reports it to a session
		 * that never started a consistent snapshot nor committed anything:
		 * the control connection.  With commits blocked it is the state
		 * the read views see.
		 */
		position_conn = run->control;
	}
	else
		for (int idx = 0; idx < run->reader_count; idx++)
			if (!run_statement(run, run->readers[idx],
							   "START TRANSACTION WITH CONSISTENT SNAPSHOT",
							   err))
				return false;
	run->consistent_ms = bk_wall_ms();

	res = run_query(run, position_conn, "SHOW STATUS LIKE 'binlog_snapshot_%'",
					true, err);
	if (res == NULL)
		return false;
	while ((row = mysql_fetch_row(res)) != NULL)
	{
		if (strcasecmp(row[0], "Binlog_snapshot_file") == 0 && row[1])
			bk_strlcpy(run->binlog_file, row[1], sizeof(run->binlog_file));
		else if (strcasecmp(row[0], "Binlog_snapshot_position") == 0 && row[1])
			run->binlog_pos = strtoull(row[1], NULL, 10);
	}
	mysql_free_result(res);
	/*
	 * Server statements go on from here: the definitions captured are
	 * those at the coordinates.  Before the MyRocks path's metadata locks,
	 * which may open FEDERATED and SPIDER tables (see capture_servers).
	 */
	unlock_servers(run);
	if (run->binlog_file[0] == '\0' || run->binlog_pos == 0)
		return bk_error_set(err, BK_ERR_CONFIG,
							"the server reports no binlog position for the"
							" snapshot (Binlog_snapshot_file is empty): log_bin"
							" is off, so no point in time after the snapshot"
							" could be restored");

	/*
	 * Every reader holds a metadata lock on every table it may read from
	 * now on (the locked ones are the locker's).
	 */
	if (!run->locked_before_commits && !take_metadata_locks(run, err))
		return false;
	if (!run_statement(run, run->control, "BACKUP STAGE END", err))
		return false;
	run->stage_open = false;
	for (int idx = run->locked_count; idx < run->table_count; idx++)
		touched += run->tables[idx].no_data ? 0 : 1;
	agent_log("INFO",
			  "snapshot %s: commits waited %" PRId64 " ms (BACKUP STAGE"
			  " BLOCK_COMMIT to END); %d reader(s) took metadata locks on"
			  " %d table(s) in %d statement(s) each in %" PRId64 " ms, %s",
			  run->job->id, bk_monotonic_ms() - blocked_ms, run->reader_count,
			  touched, run->mdl_statements, run->mdl_ms,
			  run->locked_before_commits
				  ? "before commits were blocked"
				  : "while commits were blocked (MyRocks tables)");
	return true;
}

/* ------------------------------------------------------------ table data */

struct Worker
{
	SnapRun *run;
	MYSQL *conn;
	BkProducer *producer;
	BkEncoder *encoder;
	uint8_t *buf;
	size_t len;
	size_t cap;
	uint64_t part_size;
	uint64_t row_number; /* of the row being appended, from 1: for errors */
	pthread_t thread;
	bool ok;
	BkError err;
};

/*
 * buf_reserve
 *		Room for more bytes in the part buffer.
 */
static bool
buf_reserve(Worker *w, size_t more, BkError *err)
{
	size_t cap = w->cap ? w->cap : 64 * 1024;
	uint8_t *grown;

	if (w->len + more <= w->cap)
		return true;
	while (cap < w->len + more)
		cap *= 2;
	grown = realloc(w->buf, cap);
	if (grown == NULL)
		return bk_error_set(err, BK_ERR_NOMEM,
							"out of memory for a part of"
							" %zu bytes",
							w->len + more);
	w->buf = grown;
	w->cap = cap;
	return true;
}

/*
 * escape_of
 *		What LOAD DATA's escape character must precede: 0 for a plain byte.
 */
static const uint8_t escape_of[256] = {
	['\\'] = '\\',
	['\t'] = 't',
	['\n'] = 'n',
	['\0'] = '0',
};

/*
 * append_value
 *		One value, escaped, at out; returns the end.  Runs of plain bytes are
 *		copied whole: this loop is the hottest of a snapshot.
 */
static uint8_t *
append_value(uint8_t *out, const uint8_t *in, size_t len)
{
	const uint8_t *end = in + len;

	while (in < end)
	{
		const uint8_t *run = in;

		while (in < end && escape_of[*in] == 0)
			in++;
		memcpy(out, run, (size_t) (in - run));
		out += in - run;
		if (in < end)
		{
			*out++ = '\\';
			*out++ = escape_of[*in];
			in++;
		}
	}
	return out;
}

/*
 * append_row
 *		One row in LOAD DATA's default form: tab-separated, backslash
 *		escapes for backslash, tab, newline and NUL, \N for NULL.
 */
static bool
append_row(Worker *w, MYSQL_ROW row, unsigned long *lengths,
		   unsigned int fields, BkError *err)
{
	size_t need = 1;
	uint64_t least = 1;
	uint8_t *out;

	for (unsigned int idx = 0; idx < fields; idx++)
	{
		need += row[idx] ? 2 * lengths[idx] + 1 : 3;
		least += row[idx] ? (uint64_t) lengths[idx] + 1 : 3;
	}
	/* Before its room is reserved: twice what no part could hold anyway. */
	if (least > BK_MARIADB_PART_MAX)
		return bk_error_set(err, BK_ERR_FORMAT,
							"row %" PRIu64 " takes %" PRIu64 " bytes or more"
							" in LOAD DATA form, more than a snapshot part"
							" may hold (%" PRIu64 " bytes, the most bk"
							" restore loads): a logical snapshot cannot hold"
							" this table",
							w->row_number, least, BK_MARIADB_PART_MAX);
	if (!buf_reserve(w, need, err))
		return false;
	out = w->buf + w->len;
	for (unsigned int idx = 0; idx < fields; idx++)
	{
		if (idx > 0)
			*out++ = '\t';
		if (row[idx] == NULL)
		{
			*out++ = '\\';
			*out++ = 'N';
		}
		else
			out = append_value(out, (const uint8_t *) row[idx], lengths[idx]);
	}
	*out++ = '\n';
	w->len = (size_t) (out - w->buf);
	return true;
}

/*
 * flush_part
 *		The first len bytes of the buffer as the table's next part; what
 *		follows them stays for the part after.
 */
static bool
flush_part(Worker *w, SnapTable *t, BkSha256 *sha, size_t len, BkError *err)
{
	char part[64];

	if (len == 0)
		return true;
	snprintf(part, sizeof(part), "data/%06d.%06d", t->index, t->parts + 1);
	if (!bk_sha256_update(sha, w->buf, len, err) ||
		!send_object(w->run, w->producer, w->encoder, part, w->buf, len, NULL,
					 err))
		return false;
	t->parts++;
	t->bytes += len;
	pthread_mutex_lock(&w->run->job->lock);
	w->run->job->bytes += len;
	pthread_mutex_unlock(&w->run->job->lock);
	memmove(w->buf, w->buf + len, w->len - len);
	w->len -= len;
	return true;
}

/*
 * place_row
 *		The row just appended after before bytes of the part: a part ends
 *		before it if with it the part would be larger than bk restore loads
 *		(a row is never split); a row larger than that alone fails the
 *		snapshot here, rather than a restore after it.
 */
static bool
place_row(Worker *w, SnapTable *t, BkSha256 *sha, size_t before, BkError *err)
{
	uint64_t row_len = w->len - before;

	switch (bk_mariadb_part_row(before, row_len))
	{
		case BK_MARIADB_PART_ROW_APPEND:
			return true;
		case BK_MARIADB_PART_ROW_NEW_PART:
			return flush_part(w, t, sha, before, err);
		case BK_MARIADB_PART_ROW_TOO_LARGE:
			break;
	}
	return bk_error_set(err, BK_ERR_FORMAT,
						"row %" PRIu64 " takes %" PRIu64 " bytes in LOAD DATA"
						" form, more than a snapshot part may hold (%" PRIu64
						" bytes, the most bk restore loads): a logical"
						" snapshot cannot hold this table",
						w->row_number, row_len, BK_MARIADB_PART_MAX);
}

/*
 * copy_table
 *		Stream one table's rows into parts.
 */
static bool
copy_table(Worker *w, SnapTable *t, BkError *err)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	BkSha256 *sha = bk_sha256_new(err);
	uint8_t digest[BK_SHA256_LEN];
	unsigned int fields;
	uint64_t since_check = 0;
	bool ok = true;

	if (sha == NULL)
		return false;
	if (t->no_data)
	{
		/*
		 * Reading a MERGE table reads its children again (and loading the
		 * rows would add them to a child): none, and no lock either (under
		 * BACKUP STAGE its lock waits for the stage).
		 */
		ok = bk_sha256_final(sha, digest, err);
		bk_sha256_free(sha);
		if (!ok)
			return false;
		bk_hex_encode(digest, BK_SHA256_LEN, t->sha256);
		pthread_mutex_lock(&w->run->job->lock);
		w->run->job->tables_done++;
		pthread_mutex_unlock(&w->run->job->lock);
		return true;
	}
	if (mysql_real_query(w->conn, t->select_sql, strlen(t->select_sql)) != 0 ||
		(res = mysql_use_result(w->conn)) == NULL)
	{
		bk_error_set(err, BK_ERR_IO, "reading %s.%s: %s", t->database, t->name,
					 mysql_error(w->conn));
		bk_sha256_free(sha);
		return false;
	}
	fields = mysql_num_fields(res);
	while (ok && (row = mysql_fetch_row(res)) != NULL)
	{
		size_t before = w->len;

		w->row_number = t->rows + 1;
		ok = append_row(w, row, mysql_fetch_lengths(res), fields, err) &&
			 place_row(w, t, sha, before, err);
		t->rows++;
		if (ok && w->len >= w->part_size)
			ok = flush_part(w, t, sha, w->len, err);
		if (++since_check == 1000)
		{
			since_check = 0;
			pthread_mutex_lock(&w->run->job->lock);
			w->run->job->rows += 1000;
			pthread_mutex_unlock(&w->run->job->lock);
			if (w->run->job->cancel)
				ok = set_cancelled(w->run, err);
		}
	}
	if (ok && mysql_errno(w->conn) != 0)
		ok = bk_error_set(err, BK_ERR_IO, "reading %s.%s: %s", t->database,
						  t->name, mysql_error(w->conn));
	if (!ok)
	{
		/* Drain what the server still sends before the connection is reused. */
		while (mysql_fetch_row(res) != NULL)
			;
	}
	mysql_free_result(res);
	if (ok)
		ok = flush_part(w, t, sha, w->len, err);
	if (ok)
		ok = bk_sha256_final(sha, digest, err);
	bk_sha256_free(sha);
	if (!ok)
		return bk_error_prefix(err, "table %s.%s: ", t->database, t->name);
	bk_hex_encode(digest, BK_SHA256_LEN, t->sha256);
	pthread_mutex_lock(&w->run->job->lock);
	w->run->job->rows += since_check;
	w->run->job->tables_done++;
	pthread_mutex_unlock(&w->run->job->lock);
	return true;
}

/*
 * worker_main
 *		Take tables (largest first) until none is left or one fails.
 */
static void *
worker_main(void *arg)
{
	Worker *w = arg;
	SnapRun *run = w->run;

	w->ok = true;
	for (;;)
	{
		SnapTable *t = NULL;

		pthread_mutex_lock(&run->job->lock);
		if (!run->worker_failed && run->next_table < run->table_end)
			t = &run->tables[run->next_table++];
		pthread_mutex_unlock(&run->job->lock);
		if (t == NULL)
			break;
		if (!copy_table(w, t, &w->err))
		{
			w->ok = false;
			pthread_mutex_lock(&run->job->lock);
			run->worker_failed = true;
			pthread_mutex_unlock(&run->job->lock);
			break;
		}
	}
	return NULL;
}

static int
compare_size(const void *a, const void *b)
{
	const SnapTable *ta = a;
	const SnapTable *tb = b;

	if (ta->estimated_rows != tb->estimated_rows)
		return ta->estimated_rows > tb->estimated_rows ? -1 : 1;
	return ta->index - tb->index;
}

/*
 * workers_open
 *		A producer and an encoder for each reader connection, once.
 */
static bool
workers_open(SnapRun *run, BkError *err)
{
	BkKafkaSettings settings;

	if (run->workers != NULL)
		return true;
	run->workers = calloc((size_t) run->reader_count, sizeof(Worker));
	if (run->workers == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	bk_cli_kafka_settings(&run->agent->config.common, &settings, AGENT_PROGRAM);
	agent_kafka_alarms(run->agent, &settings);
	for (int idx = 0; idx < run->reader_count; idx++)
	{
		Worker *w = &run->workers[idx];

		w->run = run;
		w->conn = run->readers[idx];
		w->part_size = SNAPSHOT_PART_DEFAULT;
		w->producer = bk_producer_new(&settings, err);
		if (w->producer == NULL)
			return false;
		w->encoder = bk_encoder_new(&run->key,
									run->agent->config.common.chunk_size, err);
		if (w->encoder == NULL)
			return false;
	}
	return true;
}

static void
workers_free(SnapRun *run)
{
	if (run->workers == NULL)
		return;
	for (int idx = 0; idx < run->reader_count; idx++)
	{
		Worker *w = &run->workers[idx];

		if (w->encoder)
			bk_encoder_free(w->encoder);
		if (w->producer)
			bk_producer_free(w->producer);
		free(w->buf);
	}
	free(run->workers);
	run->workers = NULL;
}

/*
 * copy_tables
 *		The tables from first to end, largest first, on the connections of
 *		the first threads workers, one thread each.
 */
static bool
copy_tables(SnapRun *run, int first, int end, int threads, BkError *err)
{
	bool ok = true;
	int started = 0;

	if (first >= end)
		return true;
	if (!workers_open(run, err))
		return false;
	/* Largest first, so one big table does not start last. */
	qsort(run->tables + first, (size_t) (end - first), sizeof(SnapTable),
		  compare_size);
	run->next_table = first;
	run->table_end = end;
	for (int idx = 0; idx < threads; idx++)
	{
		Worker *w = &run->workers[idx];

		bk_error_clear(&w->err);
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
		{
			ok = bk_error_set(err, BK_ERR_INTERNAL,
							  "could not start a copy thread");
			pthread_mutex_lock(&run->job->lock);
			run->worker_failed = true;
			pthread_mutex_unlock(&run->job->lock);
			break;
		}
		started++;
	}
	for (int idx = 0; idx < started; idx++)
	{
		pthread_join(run->workers[idx].thread, NULL);
		if (!run->workers[idx].ok && ok)
		{
			*err = run->workers[idx].err;
			ok = false;
		}
	}
	return ok;
}

/* ------------------------------------------------------------ record */

static void
format_time(int64_t ms, char *out, size_t len)
{
	bk_format_time_utc(ms, out, len);
}

/*
 * send_record
 *		snapshot.json: the coordinates and every table's rows, bytes and
 *		SHA-256.  Sent last: its presence makes the snapshot complete.
 */
static bool
send_record(SnapRun *run, int64_t finished_ms, BkError *err)
{
	json_t *record;
	json_t *tables = json_array();
	json_t *not_consistent = json_array();
	char started[40], finished[40], consistent[40];
	char *text;
	bool ok;

	format_time(run->started_ms, started, sizeof(started));
	format_time(run->consistent_ms, consistent, sizeof(consistent));
	format_time(finished_ms, finished, sizeof(finished));
	for (int idx = 0; idx < run->table_count; idx++)
	{
		SnapTable *t = &run->tables[idx];

		json_array_append_new(
			tables, json_pack("{s:i, s:s, s:s, s:I, s:I, s:i, s:s, s:b}",
							  "index", t->index, "database", t->database,
							  "name", t->name, "rows", (json_int_t) t->rows,
							  "bytes", (json_int_t) t->bytes, "parts", t->parts,
							  "sha256", t->sha256, "consistent", !t->remote));
		if (t->remote)
			json_array_append_new(not_consistent,
								  json_pack("{s:s, s:s, s:s}", "database",
											t->database, "name", t->name,
											"engine", t->engine));
	}
	record = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s,"
					   " s:s, s:o, s:o, s:s}",
					   "format", 1, "engine", "mariadb", "snapshot_id",
					   run->job->id, "source", run->agent->config.source_id,
					   "label", run->job->options.label, "started", started,
					   "consistent_at", consistent, "finished", finished,
					   "binlog_file", run->binlog_file, "binlog_pos",
					   (json_int_t) run->binlog_pos, "gtid", run->gtid,
					   "server_version", run->server_version, "tables", tables,
					   "not_consistent", not_consistent, "data_format",
					   "LOAD DATA INFILE defaults: FIELDS TERMINATED BY '\\t'"
					   " ESCAPED BY '\\\\' LINES TERMINATED BY '\\n', NULL as"
					   " \\N, CHARACTER SET binary");
	if (record == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	text = json_dumps(record, JSON_INDENT(1) | JSON_SORT_KEYS);
	json_decref(record);
	if (text == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	{
		/*
		 * What bk list shows without the key (an auditor may see it too),
		 * and the number of data objects: they travel on other partitions
		 * and may be archived after the record, or never, so the record's
		 * presence alone does not make the snapshot complete.
		 */
		SnapshotRecordMeta rec = {.binlog_file = run->binlog_file,
								  .binlog_pos = run->binlog_pos,
								  .gtid = run->gtid,
								  .started = started,
								  .consistent_at = consistent,
								  .finished = finished,
								  .tables = run->table_count};
		char meta[BK_FRAME_META_MAX + 1];

		for (int idx = 0; idx < run->table_count; idx++)
		{
			rec.rows += run->tables[idx].rows;
			rec.objects += (uint64_t) run->tables[idx].parts;
		}
		ok =
			snapshot_record_meta(run->job->id, &rec, meta, sizeof(meta), err) &&
			send_object(run, run->producer, run->encoder, "snapshot.json",
						(const uint8_t *) text, strlen(text), meta, err);
	}
	free(text);
	return ok;
}

static bool
send_schema(SnapRun *run, BkError *err)
{
	char *text;
	bool ok;

	json_object_set_new(run->schema, "format", json_integer(1));
	json_object_set_new(run->schema, "snapshot_id", json_string(run->job->id));
	json_object_set_new(run->schema, "server_version",
						json_string(run->server_version));
	text = json_dumps(run->schema, JSON_INDENT(1) | JSON_SORT_KEYS);
	if (text == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	ok = send_object(run, run->producer, run->encoder, "schema.json",
					 (const uint8_t *) text, strlen(text), NULL, err);
	free(text);
	return ok;
}

/*
 * audit_snapshot
 *		snapshot-begin / snapshot-end on the audit topic (metadata only).
 */
static void
audit_snapshot(SnapRun *run, const char *event_name, const char *state)
{
	BkAuditEvent *event =
		bk_audit_begin(event_name, run->agent->config.source_id);
	size_t len = 0;
	char *text;
	BkError err;

	if (event == NULL)
		return;
	bk_audit_string(event, "snapshot", run->job->id);
	bk_audit_string(event, "kind", "logical");
	bk_audit_string(event, "label", run->job->options.label);
	if (state != NULL)
	{
		bk_audit_string(event, "state", state);
		if (run->binlog_file[0])
		{
			bk_audit_string(event, "binlog_file", run->binlog_file);
			bk_audit_int(event, "binlog_pos", (int64_t) run->binlog_pos);
			bk_audit_string(event, "gtid", run->gtid);
		}
		if (run->job->error[0])
			bk_audit_string(event, "reason", run->job->error);
		bk_audit_int(event, "tables", run->job->tables_done);
		bk_audit_int(event, "rows", (int64_t) run->job->rows);
		bk_audit_int(event, "bytes", (int64_t) run->job->bytes);
	}
	text = bk_audit_finish(event, bk_wall_ms(), &len);
	if (text == NULL || run->producer == NULL)
	{
		free(text);
		return;
	}
	bk_error_clear(&err);
	if (!bk_producer_send_message(run->producer, run->agent->audit_topic,
								  run->agent->config.source_id, text, len, NULL,
								  NULL, &err))
		agent_log("WARNING", "snapshot %s: audit event %s not sent: %s",
				  run->job->id, event_name, err.message);
	free(text);
}

/* ------------------------------------------------------------ the run */

/*
 * capture_consistent
 *		Hold account changes and DDL off, capture every definition, and
 *		reach the consistent point (the stage and the lock end there).
 */
static bool
capture_consistent(SnapRun *run, BkError *err)
{
	SnapshotJob *job = run->job;

	if (!lock_account_tables(run, err))
		return false;
	if (!run_statement(run, run->control, "BACKUP STAGE START", err))
		return false;
	run->stage_open = true;
	if (!run_statement(run, run->control, "BACKUP STAGE BLOCK_DDL", err))
		return false;
	run->schema = json_object();
	if (!capture_databases(run, err) || !capture_tables(run, err) ||
		!capture_accounts(run, err))
		return false;
	for (size_t idx = 0; idx < sizeof(show_specs) / sizeof(show_specs[0]);
		 idx++)
		if (!capture_list(run, &show_specs[idx], err))
			return false;
	pthread_mutex_lock(&job->lock);
	job->tables_total = run->table_count;
	pthread_mutex_unlock(&job->lock);
	if (!lock_tables_without_transactions(run, err))
		return false;
	run->locked_before_commits = only_innodb_consistent(run);
	if (run->locked_before_commits && !lock_metadata_early(run, err))
		return false;
	if (!capture_servers(run, err) || !consistent_point(run, err))
		return false;
	unlock_account_tables(run);
	return true;
}

static void
free_tables(SnapRun *run)
{
	for (int idx = 0; idx < run->table_count; idx++)
	{
		free(run->tables[idx].database);
		free(run->tables[idx].name);
		free(run->tables[idx].type);
		free(run->tables[idx].engine);
		free(run->tables[idx].select_sql);
		json_decref(run->tables[idx].dumped_columns);
	}
	free(run->tables);
	run->tables = NULL;
	run->table_count = 0;
}

/*
 * release_locks
 *		Commits, DDL, account and server statements and writes go on.
 */
static void
release_locks(SnapRun *run)
{
	if (run->stage_open)
		mysql_query(run->control, "BACKUP STAGE END");
	run->stage_open = false;
	unlock_account_tables(run);
	unlock_servers(run);
	unlock_tables_without_transactions(run);
}

/*
 * snapshot_reset_attempt
 *		Undo a failed attempt at the consistent point: the stage ended, the
 *		readers' transactions rolled back, what was captured dropped.
 */
static void
snapshot_reset_attempt(SnapRun *run)
{
	release_locks(run);
	for (int idx = 0; idx < run->reader_count; idx++)
		mysql_query(run->readers[idx], "ROLLBACK");
	free_tables(run);
	json_decref(run->schema);
	run->schema = NULL;
	run->binlog_file[0] = '\0';
	run->binlog_pos = 0;
	run->gtid[0] = '\0';
	/* A later failure that is no statement's is not this deadlock again. */
	run->last_errno = 0;
}

static bool
snapshot_run(SnapRun *run, BkError *err)
{
	SnapshotJob *job = run->job;
	BkKafkaSettings settings;
	MYSQL_RES *res;
	MYSQL_ROW row;
	int64_t finished_ms;
	int64_t xa_deadline_ms = 0;
	int deadlocks = 0;

	bk_cli_kafka_settings(&run->agent->config.common, &settings, AGENT_PROGRAM);
	agent_kafka_alarms(run->agent, &settings);
	if (!bk_topic_name(run->agent->config.common.topic_prefix
						   ? run->agent->config.common.topic_prefix
						   : BK_TOPIC_PREFIX_DEFAULT,
					   BK_TOPIC_SNAPSHOT, run->topic, sizeof(run->topic), err))
		return false;
	run->producer = bk_producer_new(&settings, err);
	if (run->producer == NULL)
		return false;
	if (!agent_source_key(run->agent, &run->key, err))
		return false;
	run->encoder =
		bk_encoder_new(&run->key, run->agent->config.common.chunk_size, err);
	if (run->encoder == NULL)
		return false;
	audit_snapshot(run, "snapshot-begin", NULL);

	run->control = snapshot_connect(run, err);
	if (run->control == NULL)
		return false;
	run->accounts = snapshot_connect(run, err);
	if (run->accounts == NULL)
		return false;
	run->servers = snapshot_connect(run, err);
	if (run->servers == NULL)
		return false;
	res = run_query(run, run->control, "SELECT VERSION()", true, err);
	if (res == NULL)
		return false;
	if ((row = mysql_fetch_row(res)) != NULL && row[0])
		bk_strlcpy(run->server_version, row[0], sizeof(run->server_version));
	mysql_free_result(res);

	/* Readers connect before any lock is taken: nothing waits on them. */
	for (int idx = 0; idx < job->options.jobs; idx++)
	{
		run->readers[idx] = snapshot_connect(run, err);
		if (run->readers[idx] == NULL)
			return false;
		run->reader_count++;
		if (!run_statement(run, run->readers[idx],
						   "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE"
						   " READ",
						   err))
			return false;
	}
	run->locker = snapshot_connect(run, err);
	if (run->locker == NULL || !workers_open(run, err))
		return false;

	/*
	 * A DDL statement already running when BLOCK_DDL is taken (an ALTER
	 * between its start and its final rename) can make a SHOW CREATE or a
	 * metadata lock deadlock against the backup lock.  The server then
	 * picks the snapshot as the victim; the snapshot lets the DDL finish
	 * and tries again.  A lock wait timeout (LOCK TABLES) is not retried:
	 * it fails the snapshot at once, with what to do.
	 */
	while (!capture_consistent(run, err))
	{
		if (run->xa_blocked)
		{
			/* XA transactions prepared: wait for them, then again. */
			if (xa_deadline_ms == 0)
			{
				char listed[sizeof(run->xa_prepared)];

				bk_strlcpy(listed, run->xa_prepared, sizeof(listed));
				for (char *c = listed; *c != '\0'; c++)
					if (*c == '\n')
						*c = c[1] == '\0' ? '\0' : ' ';
				xa_deadline_ms =
					bk_monotonic_ms() + SNAPSHOT_LOCK_WAIT_S * 1000;
				agent_log("INFO",
						  "snapshot %s: waiting up to %d s for the XA"
						  " transactions prepared at the consistent point to"
						  " end: %s",
						  job->id, SNAPSHOT_LOCK_WAIT_S, listed);
			}
			run->xa_blocked = false;
			snapshot_reset_attempt(run);
			bk_error_clear(err);
			if (!xa_wait_ended(run, xa_deadline_ms, err))
				return false;
			continue;
		}
		if (run->last_errno != 1213 /* ER_LOCK_DEADLOCK */ ||
			++deadlocks == SNAPSHOT_ATTEMPTS || job->cancel)
			return false;
		agent_log("WARNING", "snapshot %s: %s; trying again (%d of %d)",
				  job->id, err->message, deadlocks + 1, SNAPSHOT_ATTEMPTS);
		snapshot_reset_attempt(run);
		bk_error_clear(err);
		usleep((useconds_t) deadlocks * 300 * 1000);
	}

	/*
	 * The tables without transactions first: writes to them wait until
	 * they are read.  Then the GTID state, which reads the binlog file.
	 */
	if (run->locked_count > 0)
	{
		/* On the connection that holds them, as they were at the point. */
		MYSQL *reader = run->workers[0].conn;
		bool copied;

		run->workers[0].conn = run->locker;
		copied = copy_tables(run, 0, run->locked_count, 1, err);
		run->workers[0].conn = reader;
		if (!copied)
			return false;
		agent_log("INFO",
				  "snapshot %s: %d table(s) without transactions read under"
				  " a read lock taken before the consistent point and held"
				  " %" PRId64 " ms (writes to them waited)",
				  job->id, run->locked_count,
				  bk_monotonic_ms() - run->locked_ms);
		unlock_tables_without_transactions(run);
	}
	if (!read_gtid_state(run, err))
		return false;
	agent_log("INFO",
			  "snapshot %s: consistent at %s:%" PRIu64 " (GTID %s),"
			  " %d tables, %d jobs",
			  job->id, run->binlog_file, run->binlog_pos, run->gtid,
			  run->table_count, run->reader_count);
	{
		/*
		 * The record, sent last, must carry the GTID state in its
		 * metadata: fail now, before the bulk of the data is copied, if it
		 * cannot (its other fields at their longest).
		 */
		SnapshotRecordMeta longest = {.objects = UINT64_MAX,
									  .binlog_file = run->binlog_file,
									  .binlog_pos = run->binlog_pos,
									  .gtid = run->gtid,
									  .started = "0000-00-00T00:00:00.000Z",
									  .consistent_at =
										  "0000-00-00T00:00:00.000Z",
									  .finished = "0000-00-00T00:00:00.000Z",
									  .tables = INT32_MAX,
									  .rows = UINT64_MAX};
		char meta[BK_FRAME_META_MAX + 1];

		if (!snapshot_record_meta(job->id, &longest, meta, sizeof(meta), err))
			return false;
	}

	if (!send_schema(run, err))
		return false;
	if (!copy_tables(run, run->locked_count, run->table_count,
					 run->reader_count, err))
		return false;
	for (int idx = 0; idx < run->reader_count; idx++)
		mysql_query(run->readers[idx],
					"COMMIT"); /* read-only: nothing to lose */
	finished_ms = bk_wall_ms();
	if (!send_record(run, finished_ms, err))
		return false;

	{
		char started[40], finished[40];
		json_t *result;

		format_time(run->started_ms, started, sizeof(started));
		format_time(finished_ms, finished, sizeof(finished));
		pthread_mutex_lock(&job->lock);
		result = json_pack(
			"{s:s, s:s, s:I, s:s, s:s, s:s, s:i, s:I, s:I, s:I}", "snapshot_id",
			job->id, "binlog_file", run->binlog_file, "binlog_pos",
			(json_int_t) run->binlog_pos, "gtid", run->gtid, "started", started,
			"finished", finished, "tables", run->table_count, "rows",
			(json_int_t) job->rows, "bytes", (json_int_t) job->bytes, "sent",
			(json_int_t) job->sent);
		job->result = result;
		pthread_mutex_unlock(&job->lock);
	}
	return true;
}

static void
snapshot_cleanup(SnapRun *run)
{
	if (run->control != NULL)
	{
		if (run->stage_open)
			mysql_query(run->control, "BACKUP STAGE END");
		mysql_close(run->control);
	}
	if (run->accounts != NULL)
		mysql_close(run->accounts); /* and its lock with it */
	if (run->servers != NULL)
		mysql_close(run->servers); /* the same */
	if (run->locker != NULL)
		mysql_close(run->locker); /* the same */
	for (int idx = 0; idx < run->reader_count; idx++)
		mysql_close(run->readers[idx]);
	agent_snapshot_ids_clear(run->agent);
	workers_free(run);
	free_tables(run);
	json_decref(run->schema);
	if (run->encoder)
		bk_encoder_free(run->encoder);
	if (run->producer)
		bk_producer_free(run->producer);
}

static void *
snapshot_thread(void *arg)
{
	SnapshotJob *job = arg;
	SnapRun run;
	BkError err;
	bool ok;

	memset(&run, 0, sizeof(run));
	run.job = job;
	run.agent = job->agent;
	run.started_ms = bk_wall_ms();
	bk_error_clear(&err);
	ok = snapshot_run(&run, &err);
	if (!ok)
		release_locks(&run); /* before anything else is said */
	pthread_mutex_lock(&job->lock);
	if (ok)
		job->state = SNAPSHOT_DONE;
	else
	{
		job->state = job->cancel ? SNAPSHOT_CANCELLED : SNAPSHOT_FAILED;
		snprintf(job->error, sizeof(job->error), "%s%s%s", err.message,
				 err.hint[0] ? "; " : "", err.hint);
	}
	pthread_mutex_unlock(&job->lock);
	if (ok)
	{
		agent_log("INFO",
				  "snapshot %s done: %d tables, %" PRIu64 " rows, %" PRIu64
				  " bytes",
				  job->id, job->tables_done, job->rows, job->bytes);
		agent_snapshot_completed(job->agent, run.started_ms);
	}
	else
		agent_log("ERROR", "snapshot %s %s: %s", job->id,
				  job->cancel ? "cancelled" : "failed", job->error);
	audit_snapshot(&run, "snapshot-end",
				   ok            ? "complete"
				   : job->cancel ? "cancelled"
								 : "failed");
	snapshot_cleanup(&run);
	return NULL;
}

/*
 * snapshot_start
 *		A new job in its own thread.
 */
SnapshotJob *
snapshot_start(Agent *agent, const SnapshotOptions *options, BkError *err)
{
	SnapshotJob *job = calloc(1, sizeof(SnapshotJob));
	uint8_t random[4];
	char hex[9];
	time_t now = time(NULL);
	struct tm tm;

	if (job == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	if (!bk_random_bytes(random, sizeof(random), err))
	{
		free(job);
		return NULL;
	}
	bk_hex_encode(random, sizeof(random), hex);
	gmtime_r(&now, &tm);
	strftime(job->id, sizeof(job->id), "%Y%m%dT%H%M%SZ-", &tm);
	bk_strlcpy(job->id + 17, hex, sizeof(job->id) - 17);
	job->agent = agent;
	job->options = *options;
	job->state = SNAPSHOT_RUNNING;
	pthread_mutex_init(&job->lock, NULL);
	if (pthread_create(&job->thread, NULL, snapshot_thread, job) != 0)
	{
		free(job);
		bk_error_set(err, BK_ERR_INTERNAL,
					 "could not start the snapshot thread");
		return NULL;
	}
	agent_log("INFO", "snapshot %s started (%d jobs%s%s)", job->id,
			  options->jobs, options->label[0] ? ", label " : "",
			  options->label);
	return job;
}

void
snapshot_join(SnapshotJob *job)
{
	if (job->joined)
		return;
	pthread_join(job->thread, NULL);
	job->joined = true;
}

bool
snapshot_join_within(SnapshotJob *job, int ms)
{
	struct timespec deadline;

	if (job->joined)
		return true;
	deadline = bk_wall_deadline(ms);
	if (pthread_timedjoin_np(job->thread, NULL, &deadline) != 0)
		return false;
	job->joined = true;
	return true;
}

void
snapshot_free(SnapshotJob *job)
{
	json_decref(job->result);
	pthread_mutex_destroy(&job->lock);
	free(job);
}

/*
 * snapshot_progress_json
 *		{snapshot_id, state, tables_done, tables_total, rows, bytes, sent,
 *		 error} for bk_status() and bk_snapshot(wait=false).
 */
json_t *
snapshot_progress_json(SnapshotJob *job)
{
	static const char *const names[] = {"running", "done", "failed",
										"cancelled"};
	json_t *obj;

	pthread_mutex_lock(&job->lock);
	obj = json_pack("{s:s, s:s, s:i, s:i, s:I, s:I, s:I}", "snapshot_id",
					job->id, "state", names[job->state], "tables_done",
					job->tables_done, "tables_total", job->tables_total, "rows",
					(json_int_t) job->rows, "bytes", (json_int_t) job->bytes,
					"sent", (json_int_t) job->sent);
	if (job->error[0])
		json_object_set_new(obj, "error", json_string(job->error));
	pthread_mutex_unlock(&job->lock);
	return obj;
}
