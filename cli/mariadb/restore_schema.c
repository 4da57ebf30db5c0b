/*
 * restore_schema.c
 *		The definitions of a MariaDB snapshot (schema.json), created on the
 *		target server in the order that lets each one load:
 *
 *	 accounts (before anything with a DEFINER names them), databases,
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
		char what[600];
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
			char quoted[2 * 128 + 3];
			char sql[300];

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
		char what[600];

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
