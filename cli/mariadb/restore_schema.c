/*
 * restore_schema.c
 *		The definitions of a MariaDB snapshot (schema.json), created on the
 *		target server in the order that lets each one load:
 *
 *	 accounts (before anything with a DEFINER names them), the server
 *	 definitions of CREATE SERVER (a FEDERATED or SPIDER table names one in
 *	 CONNECTION, and its CREATE TABLE may need it), databases,
 *	 tables and sequences, then the data (restore_data.c), then views
 *	 (several passes: a view may read another), procedures and functions,
 *	 triggers (after the data, so loading fires none), events (with the
 *	 scheduler off), and last the grants (they name tables and routines).
 *
 * The definitions are the source server's own SHOW CREATE output, run as
 * they are under the session settings they were created with (sql_mode,
 * character sets, time zone): bk pastes nothing into them.  Accounts that
 * already exist on the target (root, say) are kept as they are, grants
 * included, and listed in the report.  PUBLIC is not an account (below):
 * its grants are always replayed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bk_util.h"
#include "restore.h"

/* Put the loading session back after running a definition in its own. */
static const char session_reset[] =
	"SET NAMES utf8mb4, SESSION time_zone = '+00:00',"
	" sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'";

bool
restore_text(json_t *value, char **text, size_t *len)
{
	const char *hex;

	*text = NULL;
	*len = 0;
	if (json_is_string(value))
	{
		*len = json_string_length(value);
		*text = bk_cli_alloc_zero(*len + 1, 1);
		memcpy(*text, json_string_value(value), *len);
		return true;
	}
	hex = json_string_value(json_object_get(value, "hex"));
	if (hex == NULL || strlen(hex) % 2 != 0)
		return false;
	*len = strlen(hex) / 2;
	*text = bk_cli_alloc_zero(*len + 1, 1);
	if (!bk_hex_decode(hex, (uint8_t *) *text, *len))
	{
		free(*text);
		*text = NULL;
		return false;
	}
	return true;
}

/*
 * run_definition
 *		One definition, in database db (or none), under the session settings
 *		of item (those it has of sql_mode, character_set_client,
 *		collation_connection, time_zone).
 */
static bool
run_definition(MariadbRestore *r, const char *db, json_t *item, const char *key,
			   const char *what, BkError *err)
{
	static const char *const settings[] = {"sql_mode", "character_set_client",
										   "collation_connection", "time_zone"};
	char *text;
	size_t len;
	bool changed = false;
	bool ok = true;

	if (!restore_text(json_object_get(item, key), &text, &len))
		return bk_error_set(err, BK_ERR_FORMAT,
							"%s: its definition in schema.json is malformed",
							what);
	if (db != NULL && mysql_select_db(r->conn, db) != 0)
		ok = bk_error_set(err, BK_ERR_INTERNAL, "%s: USE: %s", what,
						  mysql_error(r->conn));
	for (size_t idx = 0; ok && idx < sizeof(settings) / sizeof(settings[0]);
		 idx++)
	{
		const char *value =
			json_string_value(json_object_get(item, settings[idx]));
		char sql[80];

		if (value == NULL)
			continue;
		snprintf(sql, sizeof(sql), "SET SESSION %s = ?", settings[idx]);
		ok = restore_sql_params(r->conn, sql, 1, &value, what, err);
		changed = true;
	}
	if (ok && mysql_real_query(r->conn, text, (unsigned long) len) != 0)
		ok = bk_error_set(err, BK_ERR_INTERNAL, "%s: %s (error %u)", what,
						  mysql_error(r->conn), mysql_errno(r->conn));
	if (ok)
		mysql_free_result(mysql_store_result(r->conn));
	free(text);
	if (changed)
	{
		BkError reset_err;

		if (!restore_sql(r, r->conn, session_reset, "resetting the session",
						 &reset_err) &&
			ok)
		{
			*err = reset_err;
			ok = false;
		}
	}
	return ok;
}

static const char *
item_string(json_t *item, const char *key)
{
	const char *value = json_string_value(json_object_get(item, key));

	return value ? value : "";
}

/*
 * is_public
 *		MariaDB 10.11 stores the grants of PUBLIC (GRANT ... TO PUBLIC) in
 *		mysql.global_priv as User 'PUBLIC', Host '' with is_role true, from
 *		the first such grant on; it cannot be created (CREATE ROLE PUBLIC is
 *		ERROR 1959), and a target that has the row holds its own grants, not
 *		the source's.  So it is never created nor kept: its grants are
 *		replayed, which creates the row where it is missing.
 */
static bool
is_public(const char *user, const char *host)
{
	return strcmp(user, "PUBLIC") == 0 && host[0] == '\0';
}

/*
 * A role name is char(128) in utf8mb3 (MariaDB 10.11): up to 384 bytes, 512
 * counted in utf8mb4 as the agent does; quoted, every byte may be a doubled
 * backtick, with the two backticks around it and the NUL.
 */
#define ROLE_NAME_MAX   (128 * 4)
#define ROLE_QUOTED_MAX (2 * ROLE_NAME_MAX + 3)

static bool
account_exists(MariadbRestore *r, const char *user, const char *host,
			   bool *exists, BkError *err)
{
	const char *values[2] = {user, host};
	BkError probe;

	if (restore_sql_params(r->conn,
						   "SELECT 1 FROM mysql.global_priv WHERE User = ? AND"
						   " Host = ?",
						   2, values, "looking up an account", &probe))
	{
		*exists = true;
		return true;
	}
	if (probe.code != BK_ERR_NOT_FOUND)
	{
		*err = probe;
		return false;
	}
	*exists = false;
	return true;
}

bool
restore_create_accounts(MariadbRestore *r, BkError *err)
{
	json_t *accounts = json_object_get(r->schema, "accounts");
	size_t idx;
	json_t *item;

	restore_mark_step(r, "accounts");
	json_array_foreach(accounts, idx, item)
	{
		const char *user = item_string(item, "user");
		const char *host = item_string(item, "host");
		bool role = json_is_true(json_object_get(item, "role"));
		char what[2048];
		bool exists;

		snprintf(what, sizeof(what), "account '%s'@'%s'", user, host);
		if (json_object_get(item, "unreadable") != NULL)
		{
			const char *why = item_string(item, "unreadable");

			/*
			 * The source server could not show it either: under
			 * skip_name_resolve it ignores accounts with host names.
			 */
			fprintf(stderr,
					"%s: note: %s is not restored: the source server could"
					" not show it (%s)%s\n",
					r->program, what, why,
					strstr(why, "matching row") != NULL
						? "; a server with skip_name_resolve ignores accounts"
						  " whose host is a name"
						: "");
			continue;
		}
		if (is_public(user, host))
		{
			json_object_set_new(item, "restored", json_true());
			continue;
		}
		if (!account_exists(r, user, host, &exists, err))
			return false;
		if (exists)
		{
			json_array_append_new(r->kept_accounts, json_string(what + 8));
			continue;
		}
		if (role)
		{
			char quoted[ROLE_QUOTED_MAX];
			char sql[sizeof(quoted) + 16];

			if (!bk_sql_quote_ident(quoted, sizeof(quoted), user))
				return bk_error_set(err, BK_ERR_FORMAT, "%s: name too long",
									what);
			snprintf(sql, sizeof(sql), "CREATE ROLE %s", quoted);
			if (!restore_sql(r, r->conn, sql, what, err))
				return false;
		}
		else if (!run_definition(r, NULL, item, "create", what, err))
			return false;
		json_object_set_new(item, "restored", json_true());
		r->accounts_created++;
	}
	return true;
}

/*
 * source_role_grant
 *		How the source's account user@host held role (its grants as
 *		captured, SHOW GRANTS output): ROLE_HELD_ADMIN, ROLE_HELD, or
 *		ROLE_NOT_HELD (the account is not in the snapshot, or holds it not).
 */
typedef enum RoleHeld
{
	ROLE_NOT_HELD,
	ROLE_HELD,
	ROLE_HELD_ADMIN
} RoleHeld;

static RoleHeld
source_role_grant(MariadbRestore *r, const char *user, const char *host,
				  const char *quoted_role)
{
	static const char admin[] = " WITH ADMIN OPTION";
	size_t idx;
	json_t *item;
	RoleHeld held = ROLE_NOT_HELD;
	char prefix[ROLE_QUOTED_MAX + 16];

	/* SHOW GRANTS says "GRANT `role` TO `user`@`host` [WITH ADMIN OPTION]". */
	snprintf(prefix, sizeof(prefix), "GRANT %s TO ", quoted_role);
	json_array_foreach(json_object_get(r->schema, "accounts"), idx, item)
	{
		size_t grantIdx;
		json_t *grant;

		if (json_is_true(json_object_get(item, "role")) ||
			strcmp(item_string(item, "user"), user) != 0 ||
			strcmp(item_string(item, "host"), host) != 0)
			continue;
		json_array_foreach(json_object_get(item, "grants"), grantIdx, grant)
		{
			char *text;
			size_t len;

			if (!restore_text(grant, &text, &len))
				continue;
			if (strncmp(text, prefix, strlen(prefix)) == 0)
				held = len >= strlen(admin) &&
							   strcmp(text + len - strlen(admin), admin) == 0
						   ? ROLE_HELD_ADMIN
						   : ROLE_HELD;
			free(text);
			if (held != ROLE_NOT_HELD)
				return held;
		}
	}
	return held;
}

/*
 * drop_role_admin
 *		CREATE ROLE grants the new role, WITH ADMIN OPTION, to the account
 *		that runs it: the restoring account would end up holding every role
 *		of the source.  It needs the admin option until the grants are
 *		replayed (granting a role takes it, whatever else the account
 *		holds); then each role it created is taken back from it, or only
 *		the admin option, unless the same account on the source held it so.
 */
static bool
drop_role_admin(MariadbRestore *r, BkError *err)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	char *current;
	char *at;
	size_t idx;
	json_t *item;
	bool ok = true;

	if (mysql_query(r->conn, "SELECT CURRENT_USER()") != 0 ||
		(res = mysql_store_result(r->conn)) == NULL)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"reading the restoring account: %s (error %u)",
							mysql_error(r->conn), mysql_errno(r->conn));
	row = mysql_fetch_row(res);
	current = bk_cli_alloc_zero(1, row && row[0] ? strlen(row[0]) + 1 : 1);
	if (row && row[0])
		strcpy(current, row[0]);
	mysql_free_result(res);
	/* user@host: a user name may hold '@', a host name not. */
	at = strrchr(current, '@');
	if (at == NULL)
	{
		free(current);
		return bk_error_set(err, BK_ERR_INTERNAL,
							"reading the restoring account: CURRENT_USER()"
							" gave no user@host");
	}
	*at = '\0';
	json_array_foreach(json_object_get(r->schema, "accounts"), idx, item)
	{
		const char *user = item_string(item, "user");
		char quoted[ROLE_QUOTED_MAX];
		char sql[sizeof(quoted) + 64];
		char what[ROLE_QUOTED_MAX + 128];
		RoleHeld held;

		if (!ok)
			break;
		if (!json_is_true(json_object_get(item, "role")) ||
			!json_is_true(json_object_get(item, "restored")) ||
			is_public(user, item_string(item, "host")))
			continue;
		if (!bk_sql_quote_ident(quoted, sizeof(quoted), user))
			continue; /* not created either (restore_create_accounts) */
		held = source_role_grant(r, current, at + 1, quoted);
		if (held == ROLE_HELD_ADMIN)
			continue;
		snprintf(sql, sizeof(sql), "REVOKE %s%s FROM CURRENT_USER",
				 held == ROLE_HELD ? "ADMIN OPTION FOR " : "", quoted);
		snprintf(what, sizeof(what),
				 "taking role %s back from the restoring account", quoted);
		ok = restore_sql(r, r->conn, sql, what, err);
	}
	free(current);
	return ok;
}

bool
restore_grant(MariadbRestore *r, BkError *err)
{
	json_t *accounts = json_object_get(r->schema, "accounts");
	size_t idx;
	json_t *item;

	restore_mark_step(r, "grants");
	json_array_foreach(accounts, idx, item)
	{
		size_t grantIdx;
		json_t *grant;
		char what[2048];

		if (!json_is_true(json_object_get(item, "restored")))
			continue;
		snprintf(what, sizeof(what), "grants of '%s'@'%s'",
				 item_string(item, "user"), item_string(item, "host"));
		json_array_foreach(json_object_get(item, "grants"), grantIdx, grant)
		{
			json_t *one = json_pack("{s:O}", "create", grant);
			bool ok = run_definition(r, NULL, one, "create", what, err);

			json_decref(one);
			if (!ok)
				return false;
		}
	}
	return drop_role_admin(r, err);
}

/*
 * The options of CREATE SERVER, in the order of the server's own
 * mysql.servers, with the schema.json key of each (port apart: a number).
 */
static const struct
{
	const char *option;
	const char *key;
} server_options[] = {{"HOST", "host"},     {"DATABASE", "database"},
					  {"USER", "user"},     {"PASSWORD", "password"},
					  {"SOCKET", "socket"}, {"OWNER", "owner"}};

/*
 * append_literal
 *		A string literal for the target's connection: its bytes escaped by
 *		the client library for the connection's character set and sql_mode
 *		(NO_BACKSLASH_ESCAPES), between single quotes.
 */
static size_t
append_literal(MYSQL *conn, char *out, const char *text, size_t len)
{
	size_t used = 0;

	out[used++] = '\'';
	used +=
		mysql_real_escape_string(conn, out + used, text, (unsigned long) len);
	out[used++] = '\'';
	return used;
}

/*
 * create_server
 *		CREATE SERVER of one definition of schema.json: every option given,
 *		as the source stored it (an option not given there is stored as ''
 *		or 0, which is what the statement gives).  The options are
 *		literals of the grammar, not expressions, so they cannot be bound:
 *		each is escaped for the connection instead.  The statement holds
 *		the password: it is wiped after use, and a failure names the
 *		server and the server's error, never the statement (a syntax
 *		error's message quotes it).
 */
static bool
create_server(MariadbRestore *r, json_t *item, const char *what, BkError *err)
{
	char *values[sizeof(server_options) / sizeof(server_options[0]) + 2];
	size_t lens[sizeof(values) / sizeof(values[0])];
	size_t count = sizeof(values) / sizeof(values[0]);
	size_t cap = 128, used;
	json_t *port = json_object_get(item, "port");
	char *sql;
	bool ok = true;

	memset(values, 0, sizeof(values));
	/* values[0] the name, [1] the wrapper, then the options. */
	for (size_t idx = 0; idx < count; idx++)
	{
		const char *key =
			idx == 0 ? "name"
					 : (idx == 1 ? "wrapper" : server_options[idx - 2].key);
		json_t *value = json_object_get(item, key);

		if (value == NULL && idx > 1)
			value = json_string(""); /* not stored: as CREATE SERVER does */
		else
			json_incref(value);
		if (!restore_text(value, &values[idx], &lens[idx]) ||
			(idx == 0 && lens[idx] == 0))
			ok = false;
		json_decref(value);
		if (ok)
			cap += 2 * lens[idx] + 32;
	}
	if (!ok || (port != NULL &&
				(!json_is_integer(port) || json_integer_value(port) < 0 ||
				 json_integer_value(port) > INT32_MAX)))
	{
		for (size_t idx = 0; idx < count; idx++)
			if (values[idx] != NULL)
			{
				explicit_bzero(values[idx], lens[idx]);
				free(values[idx]);
			}
		return bk_error_set(err, BK_ERR_FORMAT,
							"%s: its definition in schema.json is malformed",
							what);
	}
	sql = bk_cli_alloc_zero(cap, 1);
	used = (size_t) snprintf(sql, cap, "CREATE SERVER ");
	used += append_literal(r->conn, sql + used, values[0], lens[0]);
	used += (size_t) snprintf(sql + used, cap - used, " FOREIGN DATA WRAPPER ");
	used += append_literal(r->conn, sql + used, values[1], lens[1]);
	used += (size_t) snprintf(sql + used, cap - used, " OPTIONS (PORT %" PRId64,
							  port ? (int64_t) json_integer_value(port) : 0);
	for (size_t idx = 2; idx < count; idx++)
	{
		used += (size_t) snprintf(sql + used, cap - used, ", %s ",
								  server_options[idx - 2].option);
		used += append_literal(r->conn, sql + used, values[idx], lens[idx]);
	}
	used += (size_t) snprintf(sql + used, cap - used, ")");
	if (mysql_real_query(r->conn, sql, (unsigned long) used) != 0)
	{
		unsigned int code = mysql_errno(r->conn);

		/* ER_PARSE_ERROR and ER_SYNTAX_ERROR quote the statement. */
		if (code == 1064 || code == 1149)
			ok = bk_error_set(err, BK_ERR_INTERNAL,
							  "%s: CREATE SERVER was refused as a syntax"
							  " error (error %u)",
							  what, code);
		else
			ok = bk_error_set(err, BK_ERR_INTERNAL, "%s: %s (error %u)", what,
							  mysql_error(r->conn), code);
	}
	else
		mysql_free_result(mysql_store_result(r->conn));
	explicit_bzero(sql, cap);
	free(sql);
	for (size_t idx = 0; idx < count; idx++)
	{
		explicit_bzero(values[idx], lens[idx]);
		free(values[idx]);
	}
	return ok;
}

bool
restore_create_servers(MariadbRestore *r, BkError *err)
{
	size_t idx;
	json_t *item;
	char what[300];

	/* Snapshots of agents before server definitions were captured: none. */
	if (json_array_size(json_object_get(r->schema, "servers")) == 0)
		return true;
	restore_mark_step(r, "server definitions");
	json_array_foreach(json_object_get(r->schema, "servers"), idx, item)
	{
		snprintf(what, sizeof(what), "server `%.200s`",
				 item_string(item, "name"));
		if (!create_server(r, item, what, err))
			return false;
		r->objects_created++;
	}
	return true;
}

bool
restore_create_tables(MariadbRestore *r, BkError *err)
{
	size_t idx;
	json_t *item;
	char what[700];

	restore_mark_step(r, "databases and tables");
	json_array_foreach(json_object_get(r->schema, "databases"), idx, item)
	{
		snprintf(what, sizeof(what), "database `%s`",
				 item_string(item, "name"));
		if (!run_definition(r, NULL, item, "create", what, err))
			return false;
	}
	json_array_foreach(json_object_get(r->schema, "tables"), idx, item)
	{
		/* Thousands of them take minutes: a signal is looked for. */
		if (!restore_go_on(r, "while creating the tables", err))
			return false;
		snprintf(what, sizeof(what), "table `%s`.`%s`",
				 item_string(item, "database"), item_string(item, "name"));
		if (!run_definition(r, item_string(item, "database"), item, "create",
							what, err))
			return false;
		r->objects_created++;
	}
	return true;
}

/*
 * create_views
 *		A view may read another: passes until every view is created or a
 *		pass creates none (then the first failure is the error).
 */
static bool
create_views(MariadbRestore *r, BkError *err)
{
	json_t *views = json_object_get(r->schema, "views");
	size_t count = json_array_size(views);
	bool *done = bk_cli_alloc_zero(count ? count : 1, sizeof(bool));
	size_t left = count;
	bool progress = true;
	BkError first;

	bk_error_clear(&first);
	while (left > 0 && progress)
	{
		progress = false;
		bk_error_clear(&first);
		for (size_t idx = 0; idx < count; idx++)
		{
			json_t *item = json_array_get(views, idx);
			char what[700];
			BkError one;

			if (done[idx])
				continue;
			snprintf(what, sizeof(what), "view `%s`.`%s`",
					 item_string(item, "database"), item_string(item, "name"));
			if (run_definition(r, item_string(item, "database"), item, "create",
							   what, &one))
			{
				done[idx] = true;
				left--;
				progress = true;
				r->objects_created++;
			}
			else if (first.code == BK_OK)
				first = one;
		}
	}
	free(done);
	if (left > 0)
	{
		*err = first;
		return false;
	}
	return true;
}

/* Every definition of one kind of schema.json, in order. */
static bool
create_kind(MariadbRestore *r, const char *key, const char *noun, BkError *err)
{
	size_t idx;
	json_t *item;

	json_array_foreach(json_object_get(r->schema, key), idx, item)
	{
		char what[700];

		snprintf(what, sizeof(what), "%s `%s`.`%s`", noun,
				 item_string(item, "database"), item_string(item, "name"));
		if (!run_definition(r, item_string(item, "database"), item, "create",
							what, err))
			return false;
		r->objects_created++;
	}
	return true;
}

/*
 * restore_create_objects
 *		Routines first: CREATE VIEW resolves every stored function the view
 *		calls and fails if one does not exist yet, while CREATE PROCEDURE
 *		and CREATE FUNCTION resolve nothing in their bodies (a routine may
 *		read a view, or call a routine, created after it).  Then views,
 *		which may read each other (create_views), then triggers and events,
 *		whose bodies are not resolved either.
 */
bool
restore_create_objects(MariadbRestore *r, BkError *err)
{
	restore_mark_step(r, "routines, views, triggers and events");
	return create_kind(r, "procedures", "procedure", err) &&
		   create_kind(r, "functions", "function", err) &&
		   create_views(r, err) && create_kind(r, "triggers", "trigger", err) &&
		   create_kind(r, "events", "event", err);
}
