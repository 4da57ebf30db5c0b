/*
 * restore_server.c
 *		The target server of a MariaDB restore: connecting, the checks made
 *		before anything is written, the marker of an incomplete restore,
 *		and the GTID state.
 *
 * Every connection bk makes for loading writes nothing to the target's
 * binlog (sql_log_bin = 0): the snapshot is not a transaction of the
 * target's history.  The target's GTID state is set to the snapshot's
 * before anything is replayed, and replay goes through the binlog, so a
 * target with log_bin and gtid_strict_mode on neither skips nor repeats a
 * transaction, and ends with the source's GTID state at the target.
 *
 * From the first write on, the server holds the database
 * bk_restore_incomplete, whose one row says what is being restored and
 * which step runs or failed; it is dropped as the last step.
 */
#include <ctype.h>
#include <errmsg.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bk_util.h"
#include "restore.h"

/* What loading and replay need, with GRANT OPTION to restore grants. */
static const char *const needed_privileges[] = {
	"SELECT",       "INSERT",         "UPDATE",        "DELETE",
	"CREATE",       "DROP",           "ALTER",         "INDEX",
	"CREATE VIEW",  "CREATE ROUTINE", "ALTER ROUTINE", "TRIGGER",
	"EVENT",        "CREATE USER",    "SET USER",      "SUPER",
	"BINLOG ADMIN", "BINLOG REPLAY",  "REFERENCES",    "LOCK TABLES"};

const char *
restore_server_name(const MariadbRestore *r, char *out, size_t out_len)
{
	if (r->socket != NULL)
		snprintf(out, out_len, "socket %s", r->socket);
	else
		snprintf(out, out_len, "%s:%u", r->host, r->port);
	return out;
}

/* Connector/C's and the probe's wait for the server, in seconds. */
#define RESTORE_CONNECT_TIMEOUT 10

bool
restore_tls_probe(const MariadbRestore *r, BkError *err)
{
	char where[512];

	/*
	 * Every connection is looked at first, not only the first one: a
	 * restore makes a few (its own, one per --jobs, the replay client's),
	 * each look counts one aborted connection on the server, and the
	 * login that follows it clears the count.
	 */
	if (r->tls.mode != BK_MYSQL_SSL_REQUIRED)
		return true;
	return bk_mysql_tls_probe(&r->tls, r->host, r->port,
							  restore_server_name(r, where, sizeof(where)),
							  RESTORE_CONNECT_TIMEOUT, err);
}

bool
restore_sql(MariadbRestore *r, MYSQL *conn, const char *sql, const char *what,
			BkError *err)
{
	MYSQL_RES *res;

	if (mysql_query(conn, sql) != 0)
		return bk_error_set(err, BK_ERR_INTERNAL, "%s: %s (error %u)", what,
							mysql_error(conn), mysql_errno(conn));
	res = mysql_store_result(conn);
	mysql_free_result(res);
	return true;
}

/*
 * restore_sql_params
 *		A statement with string parameters, bound: never pasted into SQL.
 */
bool
restore_sql_params(MYSQL *conn, const char *sql, int count,
				   const char *const *values, const char *what, BkError *err)
{
	MYSQL_STMT *stmt = mysql_stmt_init(conn);
	MYSQL_BIND bind[8];
	unsigned long lengths[8];
	bool ok;

	if (stmt == NULL || count > 8)
		return bk_error_set(err, BK_ERR_NOMEM, "%s: out of memory", what);
	memset(bind, 0, sizeof(bind));
	for (int idx = 0; idx < count; idx++)
	{
		lengths[idx] = values[idx] ? (unsigned long) strlen(values[idx]) : 0;
		bind[idx].buffer_type = MYSQL_TYPE_STRING;
		bind[idx].buffer = (void *) values[idx];
		bind[idx].buffer_length = lengths[idx];
		bind[idx].length = &lengths[idx];
	}
	ok = mysql_stmt_prepare(stmt, sql, (unsigned long) strlen(sql)) == 0 &&
		 mysql_stmt_bind_param(stmt, bind) == 0 &&
		 mysql_stmt_execute(stmt) == 0 && mysql_stmt_store_result(stmt) == 0;
	if (!ok)
		bk_error_set(err, BK_ERR_INTERNAL, "%s: %s (error %u)", what,
					 mysql_stmt_error(stmt), mysql_stmt_errno(stmt));
	else if (mysql_stmt_num_rows(stmt) == 0 && mysql_stmt_field_count(stmt) > 0)
		ok = bk_error_set(err, BK_ERR_NOT_FOUND, "%s: no row", what);
	mysql_stmt_close(stmt);
	return ok;
}

/*
 * A LOAD DATA LOCAL request bk did not make (the target, or whoever holds
 * its address, asking for a file of ours): refused.  Connector/C's default
 * handler would read and send any file bk can read, a key file included.
 */
static int
refuse_infile_init(void **ptr, const char *filename, void *userdata)
{
	*ptr = NULL;
	return 1;
}

static int
refuse_infile_read(void *ptr, char *buf, unsigned int len)
{
	return -1;
}

static void
refuse_infile_end(void *ptr)
{
}

static int
refuse_infile_error(void *ptr, char *msg, unsigned int len)
{
	snprintf(msg, len,
			 "bk refuses a LOAD DATA LOCAL request it did not make itself");
	return CR_UNKNOWN_ERROR;
}

void
restore_refuse_local_infile(MYSQL *conn)
{
	mysql_set_local_infile_handler(conn, refuse_infile_init, refuse_infile_read,
								   refuse_infile_end, refuse_infile_error,
								   NULL);
}

MYSQL *
restore_connect(MariadbRestore *r, bool loading, BkError *err)
{
	MYSQL *conn = mysql_init(NULL);
	unsigned int timeout = RESTORE_CONNECT_TIMEOUT;
	/* Only the loading connections send files, and only bk's own. */
	unsigned int local_infile = loading ? 1 : 0;
	unsigned long packet = 1024UL * 1024 * 1024;
	unsigned int protocol =
		r->socket ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
	char where[512];

	if (conn == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	/* The password may come from ~/.my.cnf, as for the mariadb client. */
	mysql_optionsv(conn, MYSQL_READ_DEFAULT_GROUP, "client");
	mysql_optionsv(conn, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	mysql_optionsv(conn, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	mysql_optionsv(conn, MYSQL_OPT_MAX_ALLOWED_PACKET, &packet);
	/*
	 * The protocol is explicit: MYSQL_HOST or MYSQL_TCP_PORT in the
	 * environment must never send a restore to another server.  The option
	 * files, read at connect time, would override it (and reconnect,
	 * init-command, local-infile): restore_check_client_defaults refused
	 * them there.
	 */
	mysql_optionsv(conn, MYSQL_OPT_PROTOCOL, &protocol);
	/*
	 * local-infile in the option files was refused; the handler refuses
	 * every file bk itself does not hand over all the same (restore_data.c
	 * installs its own per LOAD DATA).
	 */
	mysql_optionsv(conn, MYSQL_OPT_LOCAL_INFILE, &local_infile);
	restore_refuse_local_infile(conn);
	/*
	 * TLS as --mysql-ssl-* say; [client] in ~/.my.cnf, read at connect
	 * time, could replace these, which is why restore_check_client_defaults
	 * refused TLS settings there.  required: a server without TLS is
	 * refused before the login, which Connector/C would send it in clear.
	 */
	if (!bk_mysql_tls_options(&r->tls, conn, err) || !restore_tls_probe(r, err))
	{
		mysql_close(conn);
		return NULL;
	}
	restore_server_name(r, where, sizeof(where));
	if (mysql_real_connect(conn, r->socket ? "localhost" : r->host, r->user,
						   r->password, NULL, r->port, r->socket, 0) == NULL)
	{
		bk_error_set(err, BK_ERR_INTERNAL,
					 "could not connect to the target server (%s) as %s: %s",
					 where, r->user, mysql_error(conn));
		if (!bk_mysql_tls_failure_hint(&r->tls, conn, r->host, where, err))
			bk_error_hint(err, "Check --mysql-socket/--mysql-host, --mysql-user"
							   " and the password (--mysql-password-file or"
							   " ~/.my.cnf).");
		mysql_close(conn);
		return NULL;
	}
	/* The session itself, before any query: the probe was another one. */
	if (!bk_mysql_tls_confirm(&r->tls, conn, where, err))
	{
		mysql_close(conn);
		return NULL;
	}

	if (loading && !restore_session_setup(r, conn, err))
	{
		mysql_close(conn);
		return NULL;
	}
	return conn;
}

/*
 * restore_session_setup
 *		Loading as the source stored it: UTC, zero dates and id 0 as they
 *		are, no checks the source already made, and nothing in the binlog.
 *		And never closed for idling: the restore's own session waits
 *		through the whole load and the whole replay, which other sessions
 *		do, and the server's wait_timeout (8 hours by default, often
 *		minutes) would close it under them; the settings the replay
 *		changed (max_allowed_packet, slave_exec_mode, ...) were then never
 *		put back, and the restore failed at its end.  A year is the most
 *		MariaDB takes; the session goes with bk, however it ends.
 */
bool
restore_session_setup(MariadbRestore *r, MYSQL *conn, BkError *err)
{
	return restore_sql(
		r, conn,
		"SET SESSION sql_log_bin = 0, foreign_key_checks = 0,"
		" unique_checks = 0, time_zone = '+00:00',"
		" sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION',"
		" check_constraint_checks = 0,"
		" system_versioning_insert_history = 1,"
		" lock_wait_timeout = 60, wait_timeout = 31536000",
		"setting up the loading session", err);
}

/* "10.11.19-MariaDB-..." -> 1011 */
static int
major_minor(const char *version)
{
	int major = 0, minor = 0;

	if (version == NULL || sscanf(version, "%d.%d", &major, &minor) != 2)
		return 0;
	return major * 100 + minor;
}

static bool
check_privileges(MariadbRestore *r, BkError *err)
{
	enum
	{
		NOT_HELD,
		HELD,
		GRANTABLE
	};
	size_t count = sizeof(needed_privileges) / sizeof(needed_privileges[0]);
	int have[sizeof(needed_privileges) / sizeof(needed_privileges[0])] = {0};
	MYSQL_RES *res;
	MYSQL_ROW row;
	char missing[1024] = "", ungrantable[1024] = "";
	size_t missing_len = 0, ungrantable_len = 0;

	if (mysql_query(r->conn,
					"SELECT PRIVILEGE_TYPE, IS_GRANTABLE FROM"
					" information_schema.USER_PRIVILEGES WHERE GRANTEE ="
					" CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1),"
					" '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1),"
					" '''')") != 0 ||
		(res = mysql_store_result(r->conn)) == NULL)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"could not read the privileges of %s: %s", r->user,
							mysql_error(r->conn));
	while ((row = mysql_fetch_row(res)) != NULL)
		for (size_t idx = 0; idx < count; idx++)
			if (strcmp(row[0], needed_privileges[idx]) == 0)
				have[idx] = strcmp(row[1], "YES") == 0 ? GRANTABLE : HELD;
	mysql_free_result(res);
	for (size_t idx = 0; idx < count; idx++)
	{
		char *list = have[idx] == NOT_HELD ? missing : ungrantable;
		size_t *len = have[idx] == NOT_HELD ? &missing_len : &ungrantable_len;

		if (have[idx] != GRANTABLE && *len < sizeof(missing) - 64)
			*len +=
				(size_t) snprintf(list + *len, sizeof(missing) - *len, "%s%s",
								  *len ? ", " : "", needed_privileges[idx]);
	}
	if (missing_len == 0 && ungrantable_len == 0)
		return true;
	bk_error_set(err, BK_ERR_CONFIG,
				 "%s on the target server lacks what a restore needs%s%s%s%s",
				 r->user, missing_len ? ": " : "", missing,
				 ungrantable_len == 0 ? ""
				 : missing_len        ? "; and it holds without GRANT OPTION: "
									  : ": it holds without GRANT OPTION: ",
				 ungrantable);
	return bk_error_hint(err, "Restore as root, or as an account with ALL"
							  " PRIVILEGES ON *.* WITH GRANT OPTION (grants"
							  " are restored too).");
}

/*
 * check_empty
 *		No database but the server's own; with --force, only that none is
 *		an incomplete restore's marker left without --force.
 */
static bool
check_empty(MariadbRestore *r, BkError *err)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	char found[1024] = "";
	size_t used = 0;
	bool marker = false;
	uint64_t count = 0;

	if (mysql_query(r->conn,
					"SELECT SCHEMA_NAME FROM information_schema.SCHEMATA"
					" WHERE SCHEMA_NAME NOT IN ('mysql', 'information_schema',"
					" 'performance_schema', 'sys') ORDER BY 1") != 0 ||
		(res = mysql_store_result(r->conn)) == NULL)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"could not list the target's databases: %s",
							mysql_error(r->conn));
	while ((row = mysql_fetch_row(res)) != NULL)
	{
		marker |= strcmp(row[0], RESTORE_MARKER_DB) == 0;
		count++;
		if (used < sizeof(found) - 80)
			used += (size_t) snprintf(found + used, sizeof(found) - used,
									  "%s%s", used ? ", " : "", row[0]);
	}
	mysql_free_result(res);
	/*
	 * --force drops and writes over what the target holds: every part of
	 * the snapshot is checked first (restore_check_data) when there is
	 * anything to lose, a database of any name (lower_case_table_names
	 * may make a snapshot's `MyDB` drop the target's `mydb`).
	 */
	r->force_drops |= r->force && count > 0;
	if (count == 0 || r->force)
		return true;
	if (marker)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"the target server holds an incomplete restore"
							" (database %s; its table restore says which"
							" step failed)",
							RESTORE_MARKER_DB) ||
			   bk_error_hint(err,
							 "Drop the databases it created and %s, or"
							 " pass --force to restore over them.",
							 RESTORE_MARKER_DB);
	bk_error_set(err, BK_ERR_INTERNAL,
				 "the target server is not empty: it holds %" PRIu64
				 " database(s): %s",
				 count, found);
	return bk_error_hint(err, "Restore into a new server, or pass --force:"
							  " the snapshot's databases are then dropped"
							  " and created again.");
}

/*
 * check_servers
 *		No server definition (CREATE SERVER) of the snapshot's names exists
 *		on the target, unless --force, which drops them (drop_for_force):
 *		refused before anything is written, like a database.
 */
static bool
check_servers(MariadbRestore *r, BkError *err)
{
	size_t idx;
	json_t *item;
	char found[1024] = "";
	size_t used = 0;
	uint64_t count = 0;

	if (r->force)
		return true;
	json_array_foreach(json_object_get(r->schema, "servers"), idx, item)
	{
		const char *name = json_string_value(json_object_get(item, "name"));
		BkError probe;

		if (name == NULL)
			continue; /* not a name the target can hold: CREATE fails */
		if (!restore_sql_params(r->conn,
								"SELECT 1 FROM mysql.servers WHERE"
								" Server_name = ?",
								1, &name, "looking up a server definition",
								&probe))
		{
			if (probe.code == BK_ERR_NOT_FOUND)
				continue;
			*err = probe;
			return false;
		}
		count++;
		if (used < sizeof(found) - 80)
			used += (size_t) snprintf(found + used, sizeof(found) - used,
									  "%s%.70s", used ? ", " : "", name);
	}
	if (count == 0)
		return true;
	bk_error_set(err, BK_ERR_INTERNAL,
				 "the target server already has %" PRIu64
				 " of the snapshot's server definitions (CREATE SERVER): %s",
				 count, found);
	return bk_error_hint(err, "Drop them on the target (DROP SERVER), or"
							  " pass --force: they are then dropped and"
							  " created again.");
}

/*
 * check_engines
 *		Every engine of the snapshot's tables is one the target has.  A
 *		CREATE TABLE of an engine the server lacks fails (the restore's
 *		sql_mode has NO_ENGINE_SUBSTITUTION, so no table silently becomes
 *		InnoDB), but only after the target was written to: refuse before.
 *		The first such engine is named, with up to three of its tables.
 */
static bool
check_engines(MariadbRestore *r, BkError *err)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	char have[1024] = "";
	size_t have_len = 0;
	const char *lacking = NULL;
	char names[2048] = ""; /* three names of at most 256 + 1 + 256 bytes */
	size_t names_len = 0;
	int count = 0;
	size_t idx;
	json_t *table;

	if (mysql_query(r->conn,
					"SELECT ENGINE FROM information_schema.ENGINES"
					" WHERE SUPPORT IN ('YES', 'DEFAULT') ORDER BY 1") != 0 ||
		(res = mysql_store_result(r->conn)) == NULL)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"could not list the target's storage engines: %s",
							mysql_error(r->conn));
	/* ",InnoDB,Aria,...,": a whole name is found between commas. */
	have[have_len++] = ',';
	while ((row = mysql_fetch_row(res)) != NULL)
		if (row[0] != NULL && have_len + strlen(row[0]) + 2 < sizeof(have))
			have_len += (size_t) snprintf(
				have + have_len, sizeof(have) - have_len, "%s,", row[0]);
	mysql_free_result(res);

	json_array_foreach(json_object_get(r->schema, "tables"), idx, table)
	{
		const char *engine =
			json_string_value(json_object_get(table, "engine"));
		char quoted[160];

		if (engine == NULL || engine[0] == '\0' ||
			(lacking != NULL && strcasecmp(engine, lacking) != 0))
			continue;
		snprintf(quoted, sizeof(quoted), ",%s,", engine);
		if (strcasestr(have, quoted) != NULL)
			continue;
		lacking = engine;
		if (++count <= 3)
			names_len += (size_t) snprintf(
				names + names_len, sizeof(names) - names_len, "%s%s.%s",
				names_len ? ", " : "",
				json_string_value(json_object_get(table, "database")),
				json_string_value(json_object_get(table, "name")));
	}
	if (lacking == NULL)
		return true;
	bk_error_set(err, BK_ERR_CONFIG,
				 "the snapshot has %d table(s) of engine %s (%s%s), which"
				 " the target server does not have: no plugin of it is"
				 " loaded",
				 count, lacking, names, count > 3 ? ", ..." : "");
	if (strcasecmp(lacking, "ROCKSDB") == 0)
		return bk_error_hint(err, "Load MyRocks on the target at its start"
								  " (plugin_load_add = ha_rocksdb; the"
								  " Debian package mariadb-plugin-rocksdb"
								  " does it), restart it and restore again.");
	return bk_error_hint(err,
						 "Load the plugin of engine %s on the target"
						 " (plugin_load_add in its configuration), restart"
						 " it and restore again.",
						 lacking);
}

bool
restore_check_server(MariadbRestore *r, BkError *err)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	const char *source_version =
		json_string_value(json_object_get(r->record, "server_version"));
	bool local_infile, secure_timestamp;
	char scheduler[16];

	if (mysql_query(
			r->conn,
			"SELECT VERSION(), @@log_bin, @@gtid_binlog_pos,"
			" @@event_scheduler, @@secure_timestamp, @@local_infile,"
			" @@max_allowed_packet, @@global.slave_run_triggers_for_rbr,"
			" @@global.slave_exec_mode") != 0 ||
		(res = mysql_store_result(r->conn)) == NULL ||
		(row = mysql_fetch_row(res)) == NULL)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"could not read the target server's settings: %s",
							mysql_error(r->conn));
	bk_strlcpy(r->server_version, row[0], sizeof(r->server_version));
	r->log_bin = strcmp(row[1], "1") == 0;
	bk_strlcpy(r->binlog_gtid_pos, row[2] ? row[2] : "",
			   sizeof(r->binlog_gtid_pos));
	bk_strlcpy(scheduler, row[3] ? row[3] : "", sizeof(scheduler));
	secure_timestamp = row[4] != NULL && strcmp(row[4], "YES") == 0;
	local_infile = strcmp(row[5], "1") == 0;
	r->max_packet = strtoull(row[6], NULL, 10);
	bk_strlcpy(r->triggers_setting, row[7] ? row[7] : "",
			   sizeof(r->triggers_setting));
	bk_strlcpy(r->exec_mode_setting, row[8] ? row[8] : "",
			   sizeof(r->exec_mode_setting));
	mysql_free_result(res);
	r->scheduler_was_on = strcmp(scheduler, "ON") == 0;

	if (major_minor(r->server_version) < major_minor(source_version))
		return bk_error_set(err, BK_ERR_CONFIG,
							"the target server runs %s, older than the"
							" snapshot's server %s: its definitions may not"
							" load",
							r->server_version,
							source_version ? source_version : "?") ||
			   bk_error_hint(err, "Restore into MariaDB %d.%d or newer.",
							 major_minor(source_version) / 100,
							 major_minor(source_version) % 100);
	if (!check_privileges(r, err) || !check_empty(r, err) ||
		!check_servers(r, err) || !check_engines(r, err))
		return false;
	if (!local_infile)
		return bk_error_set(err, BK_ERR_CONFIG,
							"the target server has local_infile=OFF: bk loads"
							" table data with LOAD DATA LOCAL") ||
			   bk_error_hint(err, "SET GLOBAL local_infile = ON for the"
								  " restore.");
	if (secure_timestamp && r->replay_count > 0)
		return bk_error_set(err, BK_ERR_CONFIG,
							"the target server has secure_timestamp=YES:"
							" replayed binlog must set the timestamp of each"
							" statement") ||
			   bk_error_hint(err, "Start it with secure_timestamp=NO (or"
								  " REPLICATION) for the restore.");
	if (!restore_session_setup(r, r->conn, err))
		return false;
	/* --force's RESET MASTER erases the target's binlog: check first too. */
	r->force_drops |= r->force && r->log_bin && r->binlog_gtid_pos[0] != '\0';
	if (r->log_bin && r->binlog_gtid_pos[0] != '\0' && !r->force)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"the target server's binlog already holds GTIDs"
							" (%s): its GTID state cannot be set to the"
							" snapshot's without RESET MASTER",
							r->binlog_gtid_pos) ||
			   bk_error_hint(err, "RESET MASTER on the target if its binlog"
								  " is not needed, or pass --force (which"
								  " does it).");
	return true;
}

/*
 * drop_for_force
 *		--force: the snapshot's databases, its server definitions and an old
 *		marker go first.
 */
static bool
drop_for_force(MariadbRestore *r, BkError *err)
{
	json_t *databases = json_object_get(r->schema, "databases");
	size_t idx;
	json_t *db;
	char quoted[2 * 256 + 3];
	char sql[600];

	if (!r->force)
		return true;
	if (!restore_sql(r, r->conn, "DROP DATABASE IF EXISTS " RESTORE_MARKER_DB,
					 "dropping an old " RESTORE_MARKER_DB, err))
		return false;
	json_array_foreach(databases, idx, db)
	{
		const char *name = json_string_value(json_object_get(db, "name"));

		if (name == NULL || !bk_sql_quote_ident(quoted, sizeof(quoted), name))
			continue;
		snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", quoted);
		if (!restore_sql(r, r->conn, sql, "--force: dropping a database", err))
			return false;
	}
	json_array_foreach(json_object_get(r->schema, "servers"), idx, db)
	{
		const char *name = json_string_value(json_object_get(db, "name"));

		if (name == NULL || !bk_sql_quote_ident(quoted, sizeof(quoted), name))
			continue;
		snprintf(sql, sizeof(sql), "DROP SERVER IF EXISTS %s", quoted);
		if (!restore_sql(r, r->conn, sql,
						 "--force: dropping a server definition", err))
			return false;
	}
	return true;
}

/*
 * relax_durability
 *		While restoring, a commit need not reach the disk: a restore cut
 *		short by a crash is marked incomplete and done again.  With
 *		innodb_flush_log_at_trx_commit = 2 the replay, one transaction at a
 *		time, no longer waits for an fsync per transaction.  Put back by
 *		restore_put_back_settings; the restore's last commit (dropping the
 *		marker) then makes everything before it durable.
 */
static bool
relax_durability(MariadbRestore *r, BkError *err)
{
	MYSQL_RES *res;
	MYSQL_ROW row;

	if (mysql_query(r->conn,
					"SELECT @@global.innodb_flush_log_at_trx_commit") != 0 ||
		(res = mysql_store_result(r->conn)) == NULL)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"could not read innodb_flush_log_at_trx_commit: %s",
							mysql_error(r->conn));
	row = mysql_fetch_row(res);
	if (row != NULL && row[0] != NULL && strcmp(row[0], "1") == 0)
		r->flush_log_relaxed = true;
	mysql_free_result(res);
	return !r->flush_log_relaxed ||
		   restore_sql(r, r->conn,
					   "SET GLOBAL innodb_flush_log_at_trx_commit = 2",
					   "relaxing innodb_flush_log_at_trx_commit for the"
					   " restore",
					   err);
}

/*
 * From the first write until the settings are put back the target runs
 * with server-wide settings changed (innodb_flush_log_at_trx_commit at 2,
 * and for the replay max_allowed_packet, slave_exec_mode and
 * slave_run_triggers_for_rbr): a Ctrl-C, a kill or a closed terminal that
 * ended bk at once left them so, unsaid.  Meanwhile those signals are
 * blocked in bk's threads (the loaders, started later, inherit the mask:
 * no statement of theirs or of the control connection is cut by EINTR)
 * and caught by a handler in any other thread; the main thread looks for
 * one between statements and while it waits (restore_signal_taken), stops
 * what runs, puts the settings back, says so and marks the restore
 * incomplete, and bk then ends by the signal (bk_mariadb_restore).
 */
static const int held_signals[] = {SIGINT, SIGTERM, SIGHUP};

#define HELD_SIGNALS (sizeof(held_signals) / sizeof(held_signals[0]))

static volatile sig_atomic_t held_signal;

static void
on_held_signal(int signo)
{
	if (held_signal == 0)
		held_signal = signo;
}

static void
held_signal_set(sigset_t *set)
{
	sigemptyset(set);
	for (size_t idx = 0; idx < HELD_SIGNALS; idx++)
		sigaddset(set, held_signals[idx]);
}

void
restore_hold_signals(MariadbRestore *r)
{
	struct sigaction action;
	sigset_t set;

	if (r->signals_held)
		return;
	memset(&action, 0, sizeof(action));
	action.sa_handler = on_held_signal;
	sigemptyset(&action.sa_mask);
	action.sa_flags = SA_RESTART;
	held_signal = 0;
	for (size_t idx = 0; idx < HELD_SIGNALS; idx++)
		sigaction(held_signals[idx], &action, &r->saved_actions[idx]);
	held_signal_set(&set);
	pthread_sigmask(SIG_BLOCK, &set, &r->saved_mask);
	r->signals_held = true;
}

int
restore_signal_taken(MariadbRestore *r)
{
	if (!r->signals_held)
		return r->stop_signal;
	if (held_signal == 0)
	{
		sigset_t set;
		struct timespec now = {0, 0};
		int signo;

		held_signal_set(&set);
		signo = sigtimedwait(&set, NULL, &now);
		if (signo > 0)
			held_signal = signo;
	}
	if (held_signal != 0)
		r->stop_signal = held_signal;
	return r->stop_signal;
}

bool
restore_go_on(MariadbRestore *r, const char *when, BkError *err)
{
	int signo = restore_signal_taken(r);

	if (signo == 0)
		return true;
	return bk_error_set(err, BK_ERR_INTERRUPTED,
						"bk restore was stopped by signal %d (%s) %s", signo,
						strsignal(signo), when);
}

void
restore_release_signals(MariadbRestore *r)
{
	if (!r->signals_held)
		return;
	/* One that came last is counted: bk still ends by it. */
	restore_signal_taken(r);
	pthread_sigmask(SIG_SETMASK, &r->saved_mask, NULL);
	for (size_t idx = 0; idx < HELD_SIGNALS; idx++)
		sigaction(held_signals[idx], &r->saved_actions[idx], NULL);
	r->signals_held = false;
}

void
restore_put_back_settings(MariadbRestore *r)
{
	BkError err;

	if (!r->flush_log_relaxed || r->conn == NULL)
		return;
	if (restore_sql(r, r->conn, "SET GLOBAL innodb_flush_log_at_trx_commit = 1",
					"putting back innodb_flush_log_at_trx_commit", &err))
		r->flush_log_relaxed = false;
	else
		fprintf(stderr, "%s: WARNING: %s; set it back to 1 by hand\n",
				r->program, err.message);
}

bool
restore_mark(MariadbRestore *r, BkError *err)
{
	const char *values[4];

	if (!drop_for_force(r, err) || !relax_durability(r, err))
		return false;
	if (r->scheduler_was_on)
	{
		if (!restore_sql(r, r->conn, "SET GLOBAL event_scheduler = OFF",
						 "turning the event scheduler off", err))
			return false;
		r->scheduler_turned_off = true;
	}
	if (!restore_sql(r, r->conn, "CREATE DATABASE " RESTORE_MARKER_DB,
					 "creating " RESTORE_MARKER_DB, err) ||
		!restore_sql(r, r->conn,
					 "CREATE TABLE " RESTORE_MARKER_DB ".restore ("
					 " started datetime(6) NOT NULL,"
					 " source varchar(255) NOT NULL,"
					 " snapshot varchar(64) NOT NULL,"
					 " target varchar(255) NOT NULL,"
					 " step varchar(64) NOT NULL,"
					 " error text)",
					 "creating " RESTORE_MARKER_DB ".restore", err))
		return false;
	r->marked = true;
	values[0] = r->source;
	values[1] = r->snapshot->id;
	values[2] = r->target.text ? r->target.text : "latest";
	values[3] = "starting";
	return restore_sql_params(r->conn,
							  "INSERT INTO " RESTORE_MARKER_DB ".restore"
							  " VALUES (UTC_TIMESTAMP(6), ?, ?, ?, ?, NULL)",
							  4, values, "writing " RESTORE_MARKER_DB, err);
}

void
restore_mark_step(MariadbRestore *r, const char *step)
{
	BkError ignore;

	if (r->marked)
		restore_sql_params(r->conn,
						   "UPDATE " RESTORE_MARKER_DB ".restore SET step = ?",
						   1, &step, "marking a step", &ignore);
}

void
restore_mark_failed(MariadbRestore *r, const BkError *err)
{
	BkError ignore;
	const char *message = err->message;

	if (r->marked && r->conn != NULL)
		restore_sql_params(r->conn,
						   "UPDATE " RESTORE_MARKER_DB ".restore SET error = ?",
						   1, &message, "marking the failure", &ignore);
}

bool
restore_unmark(MariadbRestore *r, BkError *err)
{
	if (!restore_sql(r, r->conn, "DROP DATABASE " RESTORE_MARKER_DB,
					 "dropping " RESTORE_MARKER_DB, err))
		return false;
	r->marked = false;
	return true;
}

/*
 * restore_set_gtid_binlog_state
 *		The target's binlog starts from the snapshot's GTID state.  Its own
 *		GTIDs go (RESET MASTER, which restore_check_server allows only under
 *		--force) even when the snapshot has none, taken before the source
 *		logged any: replay would otherwise log after them (gtid_strict_mode
 *		refuses the source's lower sequence numbers), and the target would
 *		end at neither history's state.
 */
bool
restore_set_gtid_binlog_state(MariadbRestore *r, BkError *err)
{
	const char *gtid = r->snapshot->gtid;

	if (!r->log_bin)
		return true;
	restore_mark_step(r, "GTID state");
	if (r->binlog_gtid_pos[0] != '\0' &&
		!restore_sql(r, r->conn, "RESET MASTER",
					 "--force: RESET MASTER on the target", err))
		return false;
	if (gtid[0] == '\0')
		return true; /* the state RESET MASTER leaves, or the target had */
	return restore_sql_params(r->conn, "SET GLOBAL gtid_binlog_state = ?", 1,
							  &gtid,
							  "setting gtid_binlog_state to the"
							  " snapshot's",
							  err);
}

/*
 * restore_finish_server
 *		The GTID state the restored server ends with is the source's at the
 *		target: checked against what replay logged, and set as its replica
 *		position so it can follow the source or another replica of it.
 */
bool
restore_finish_server(MariadbRestore *r, BkError *err)
{
	const char *gtid = r->final_gtid;

	restore_mark_step(r, "GTID position");
	if (r->log_bin && r->final_gtid[0] != '\0')
	{
		MYSQL_RES *res;
		MYSQL_ROW row;
		BkGtidState want, have;
		char have_text[BK_BINLOG_GTID_STATE_MAX] = "";
		BkError parse_err;

		if (mysql_query(r->conn, "SELECT @@gtid_binlog_pos") != 0 ||
			(res = mysql_store_result(r->conn)) == NULL)
			return bk_error_set(err, BK_ERR_INTERNAL,
								"could not read gtid_binlog_pos: %s",
								mysql_error(r->conn));
		row = mysql_fetch_row(res);
		if (row != NULL && row[0] != NULL)
			bk_strlcpy(have_text, row[0], sizeof(have_text));
		mysql_free_result(res);
		if (!bk_gtid_state_parse(r->final_gtid, &want, &parse_err) ||
			!bk_gtid_state_parse(have_text, &have, &parse_err) ||
			memcmp(&want, &have, sizeof(want)) != 0)
			return bk_error_set(err, BK_ERR_INTERNAL,
								"after replay the target's binlog is at GTID"
								" %s, but the archive is at %s there: a"
								" transaction was skipped or repeated",
								have_text[0] ? have_text : "(none)",
								r->final_gtid);
	}
	if (gtid[0] != '\0' &&
		!restore_sql_params(r->conn, "SET GLOBAL gtid_slave_pos = ?", 1, &gtid,
							"setting gtid_slave_pos", err))
		return false;
	restore_find_xa_prepared(r);
	return true;
}

/*
 * restore_find_xa_prepared
 *		A target between an XA PREPARE and its XA COMMIT leaves that
 *		transaction prepared on the restored server, as the source had it
 *		then.  It holds its locks until someone ends it, and a server taking
 *		over would block on them: the report names each one, as XA COMMIT
 *		and XA ROLLBACK take it (FORMAT='SQL': gtrid, bqual and formatID,
 *		in hex where they are not text).  Not being able to list them does
 *		not undo a restore that is done: a warning says so.
 */
void
restore_find_xa_prepared(MariadbRestore *r)
{
	MYSQL_RES *res;
	MYSQL_ROW row;

	if (mysql_query(r->conn, "XA RECOVER FORMAT='SQL'") != 0 ||
		(res = mysql_store_result(r->conn)) == NULL)
	{
		fprintf(stderr,
				"%s: WARNING: could not list the XA transactions left "
				"prepared (XA RECOVER): %s; run XA RECOVER on the restored "
				"server before it takes over\n",
				r->program, mysql_error(r->conn));
		return;
	}
	/* formatID, gtrid_length, bqual_length, data (the XID as SQL). */
	while ((row = mysql_fetch_row(res)) != NULL)
	{
		char *readable;

		if (row[3] == NULL || (readable = bk_utf8_readable(row[3])) == NULL)
			continue;
		if (r->xa_prepared == NULL)
			r->xa_prepared = json_array();
		json_array_append_new(r->xa_prepared, json_string(readable));
		free(readable);
	}
	mysql_free_result(res);
}
