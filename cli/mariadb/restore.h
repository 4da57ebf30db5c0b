/*
 * restore.h
 *		bk restore of a MariaDB source: what its steps share.
 *
 * The command (restore.c) runs the steps in order, one file each:
 *
 *	 restore.c          options, the target moment, the snapshot chosen
 *	 restore_binlog.c   the binlog from the snapshot to the target, rebuilt
 *						and checked, and where replay stops; replay itself
 *	 restore_server.c   the target server: connections, checks, the
 *						incomplete marker, GTID state
 *	 restore_schema.c   accounts, databases, tables, routines, views,
 *						triggers, events, grants
 *	 restore_data.c     table data, loaded in parallel
 *	 restore_indexes.c  plain secondary indexes built after the data
 *
 * The binlog is read and checked (every range decrypted, every event's
 * CRC, the target within the archive), the snapshot's record and schema
 * decrypted and every data part found, and what the replay needs checked,
 * before the server is touched; the data parts are decrypted and checked
 * as they load.  From the first write on, the server holds a database
 * bk_restore_incomplete until the restore ends well.
 */
#ifndef BK_MARIADB_RESTORE_H
#define BK_MARIADB_RESTORE_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <mysql.h>

#include "binlog_catalog.h"
#include "bk_binlog.h"
#include "bk_mariadb_part.h"
#include "bk_mysql_tls.h"
#include "commands.h"
#include "snapshot_catalog.h"

#define RESTORE_JOBS_DEFAULT 2
#define RESTORE_JOBS_MAX     32
#define RESTORE_MARKER_DB    "bk_restore_incomplete"
/* Largest decrypted snapshot part bk loads (the agent keeps within it). */
#define RESTORE_PART_MAX BK_MARIADB_PART_MAX

typedef enum RestoreTargetType
{
	TARGET_LATEST = 0, /* everything archived */
	TARGET_IMMEDIATE,  /* the snapshot alone */
	TARGET_TIME,
	TARGET_POSITION,
	TARGET_GTID
} RestoreTargetType;

typedef struct RestoreTarget
{
	RestoreTargetType type;
	const char *text; /* as given */
	int64_t time_us;
	char file[BK_BINLOG_FILE_NAME_MAX + 1];
	uint64_t pos;
	BkGtidState gtid;
} RestoreTarget;

/* One binlog file to replay, rebuilt in the work directory. */
typedef struct ReplayFile
{
	const BinlogFile *file;
	char path[4096];
	uint64_t size; /* after the cut */
} ReplayFile;

typedef struct MariadbRestore
{
	const char *program;

	/* Options. */
	const char *source;
	const char *socket;
	const char *host;
	unsigned int port;
	const char *user;
	const char *password_file;
	/*
	 * --mysql-ssl-*: TLS on every connection to the target, bk's own and
	 * the replay's mariadb client (bk_mysql_tls.h; settled by run()).
	 */
	BkMysqlTls tls;
	const char *snapshot_id;
	const char *work_parent;
	RestoreTarget target;
	int jobs;
	bool dry_run;
	bool force;
	bool force_drops; /* --force, and it drops or resets something */
	BkCommonOptions common;

	/* What the repository holds. */
	BkCommandContext ctx;
	BinlogCatalog binlog;
	MariadbSnapshotCatalog snapshots;
	const MariadbSnapshot *snapshot;
	json_t *schema; /* schema.json */
	json_t *record; /* snapshot.json */

	/* The replay plan (restore_binlog.c). */
	char work_dir[4096];
	ReplayFile *replay;
	int replay_count;
	uint64_t replay_bytes;
	uint64_t groups;          /* transactions replayed */
	uint32_t last_group_time; /* binlog timestamp of the last one */
	char cut_file[BK_BINLOG_FILE_NAME_MAX + 1];
	uint64_t cut_pos;
	char final_gtid[BK_BINLOG_GTID_STATE_MAX];
	/*
	 * The largest BINLOG statement mariadb-binlog writes for the replay: a
	 * statement's Table_map and row events together, or any other event.
	 */
	uint64_t largest_statement;
	bool too_new; /* the snapshot holds a commit not before a time target */

	/* The target server. */
	char *password;
	MYSQL *conn; /* the control connection */
	char server_version[64];
	bool log_bin;
	char binlog_gtid_pos[BK_BINLOG_GTID_STATE_MAX];
	bool scheduler_was_on;
	bool scheduler_turned_off; /* by this restore, and left so */
	bool flush_log_relaxed;    /* innodb_flush_log_at_trx_commit 1 -> 2 */
	bool marked;               /* bk_restore_incomplete exists */
	uint64_t max_packet;       /* the server's max_allowed_packet */
	uint64_t packet_before;    /* to put back, or 0 */
	/*
	 * slave_run_triggers_for_rbr and slave_exec_mode as the server has
	 * them, and which of them (bits, in restore_binlog.c's order) the
	 * replay changed, to put back.
	 */
	char triggers_setting[32];
	char exec_mode_setting[32];
	unsigned int settings_changed;
	/*
	 * A SIGINT, SIGTERM or SIGHUP that stopped the restore (held from the
	 * first write until the settings above are put back, to put them back
	 * first: restore_hold_signals); bk_mariadb_restore ends by it.  0: none.
	 */
	int stop_signal;
	bool signals_held;
	sigset_t saved_mask;
	struct sigaction saved_actions[3]; /* SIGINT, SIGTERM, SIGHUP */

	/* Data loading (restore_data.c). */
	pthread_mutex_t lock;
	BkError first_error;
	atomic_bool abort;
	size_t next_table;
	json_t **work; /* record tables to load, largest first */
	size_t work_count;
	atomic_uint_fast64_t tables_done;
	atomic_uint_fast64_t rows_loaded;
	atomic_uint_fast64_t bytes_loaded;
	atomic_uint_fast64_t indexes_deferred; /* tables whose indexes came after */
	/*
	 * The loaders' connection ids, 0 for none: a signal kills the
	 * statement each runs (KILL QUERY on the control connection).
	 */
	unsigned long loader_ids[RESTORE_JOBS_MAX];
	uint64_t bytes_total;

	/*
	 * The first group to replay that mariadb-binlog's output splits in two
	 * (CREATE TABLE ... SELECT with its rows): its GTID and "file:end".
	 */
	char split_group_gtid[64];
	char split_group_at[BK_BINLOG_FILE_NAME_MAX + 32];
	/*
	 * The first group to replay with a statement on a temporary table its
	 * session created before the snapshot: its GTID, the statement's
	 * "file:offset", the session's thread id and the table's db.name.
	 */
	char temp_table_gtid[64];
	char temp_table_at[BK_BINLOG_FILE_NAME_MAX + 32];
	uint32_t temp_table_thread;
	char temp_table_name[520];
	/*
	 * The same for the first group to replay that drops such a table at
	 * the end of its session: a target that never had the table logs
	 * nothing for it.
	 */
	char temp_drop_gtid[64];
	char temp_drop_at[BK_BINLOG_FILE_NAME_MAX + 32];
	uint32_t temp_drop_thread;
	char temp_drop_name[520];
	/*
	 * The first group to replay whose sequence number is not above its
	 * domain's last: its GTID, that last GTID, and "file:end".
	 */
	char backwards_gtid[64];
	char backwards_after[64];
	char backwards_at[BK_BINLOG_FILE_NAME_MAX + 32];

	/* Report. */
	json_t *kept_accounts;
	json_t *remote_left; /* FEDERATED, SPIDER tables: rows not loaded */
	json_t *xa_prepared; /* XA transactions the replay left prepared */
	uint64_t accounts_created;
	uint64_t objects_created;
	double load_seconds;
	double replay_seconds;
} MariadbRestore;

/* restore_binlog.c */
extern void restore_target_file_normalize(MariadbRestore *r);
/*
 * What the option files give the mariadb client (and Connector/C, which
 * reads [client] at each connection) checked before the first connection:
 * nothing that loses statements, no other password than
 * --mysql-password-file's, and no TLS setting that would override
 * --mysql-ssl-*.
 */
extern bool restore_check_client_defaults(const MariadbRestore *r,
										  BkError *err);
extern bool restore_check_replay(MariadbRestore *r, BkError *err);
extern bool restore_plan_replay(MariadbRestore *r, BkError *err);
extern bool restore_replay(MariadbRestore *r, BkError *err);
extern void restore_remove_work_dir(MariadbRestore *r);

/* restore_server.c */
/* A connection to the target; loading ones are set up for loading. */
extern MYSQL *restore_connect(MariadbRestore *r, bool loading, BkError *err);
/* The target as the messages name it: "socket PATH" or "HOST:PORT". */
extern const char *restore_server_name(const MariadbRestore *r, char *out,
									   size_t out_len);
/*
 * --mysql-ssl-mode=required: the target offers TLS, seen in its greeting
 * before any login is sent (bk_mysql_tls_probe); true for other modes.
 */
extern bool restore_tls_probe(const MariadbRestore *r, BkError *err);
/*
 * Make conn refuse any LOAD DATA LOCAL file request (the server asking for
 * a file of its choice) until another handler is set: restore_connect does
 * it, and restore_data.c after each of its own LOAD DATA statements.
 */
extern void restore_refuse_local_infile(MYSQL *conn);
extern bool restore_session_setup(MariadbRestore *r, MYSQL *conn, BkError *err);
extern bool restore_sql(MariadbRestore *r, MYSQL *conn, const char *sql,
						const char *what, BkError *err);
extern bool restore_sql_params(MYSQL *conn, const char *sql, int count,
							   const char *const *values, const char *what,
							   BkError *err);
extern bool restore_check_server(MariadbRestore *r, BkError *err);
extern bool restore_mark(MariadbRestore *r, BkError *err);
extern void restore_mark_step(MariadbRestore *r, const char *step);
extern void restore_mark_failed(MariadbRestore *r, const BkError *err);
extern bool restore_unmark(MariadbRestore *r, BkError *err);
extern bool restore_set_gtid_binlog_state(MariadbRestore *r, BkError *err);
extern bool restore_finish_server(MariadbRestore *r, BkError *err);
extern void restore_find_xa_prepared(MariadbRestore *r);
extern void restore_put_back_settings(MariadbRestore *r);
/*
 * SIGINT, SIGTERM and SIGHUP held from before the first server-wide
 * setting changes until they are all put back (restore_server.c says how);
 * restore_signal_taken: the one that came (recorded in r->stop_signal), or
 * 0; restore_go_on: false, err set ("... stopped by signal 15 (Terminated)
 * WHEN"), if one came.  Main thread only.
 */
extern void restore_hold_signals(MariadbRestore *r);
extern int restore_signal_taken(MariadbRestore *r);
extern bool restore_go_on(MariadbRestore *r, const char *when, BkError *err);
extern void restore_release_signals(MariadbRestore *r);

/* restore_schema.c */
extern bool restore_text(json_t *value, char **text, size_t *len);
extern bool restore_create_accounts(MariadbRestore *r, BkError *err);
extern bool restore_create_servers(MariadbRestore *r, BkError *err);
extern bool restore_create_tables(MariadbRestore *r, BkError *err);
extern bool restore_create_objects(MariadbRestore *r, BkError *err);
extern bool restore_grant(MariadbRestore *r, BkError *err);

/* restore_indexes.c */
extern bool restore_defer_indexes(MYSQL *conn, const char *db, const char *name,
								  bool (*recreate)(void *arg, BkError *err),
								  void *arg, char **add_sql, BkError *err);

/* restore_data.c */
/* Every data object the record lists is stored (without reading them). */
extern bool restore_check_parts(MariadbRestore *r, BkError *err);
/*
 * Every part of every table whose rows a restore loads decrypted,
 * authenticated and checked against the record, nothing written: before
 * --force drops databases the target holds.
 */
extern bool restore_check_data(MariadbRestore *r, BkError *err);
extern bool restore_load_data(MariadbRestore *r, BkError *err);

#endif /* BK_MARIADB_RESTORE_H */
