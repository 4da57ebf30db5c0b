/*
 * restore_indexes.c
 *		Secondary indexes of a MariaDB restore built after the data.
 *
 * InnoDB builds an index over loaded rows by sorting them, which is faster
 * than maintaining it row by row during the load (about 30% on a sysbench
 * table here; BENCHMARKS.md).  Only plain secondary indexes are deferred
 * (non-unique B-trees without prefix, comment or IGNORED flag, on InnoDB
 * tables without foreign keys or system versioning), and only when the
 * table comes back exactly: before loading, on the empty table, bk drops
 * them, adds them back and compares SHOW CREATE TABLE with the original.
 * If it differs in any way, the table is created again from its definition
 * and loaded with its indexes in place.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bk_util.h"
#include "restore.h"

typedef struct Sql
{
	char *text;
	size_t len;
	size_t cap;
} Sql;

static void
sql_add(Sql *sql, const char *piece)
{
	size_t len = strlen(piece);

	if (sql->len + len + 1 > sql->cap)
	{
		sql->cap = (sql->len + len + 1) * 2;
		sql->text = realloc(sql->text, sql->cap);
		if (sql->text == NULL)
		{
			fprintf(stderr, "bk: out of memory\n");
			exit(70);
		}
	}
	memcpy(sql->text + sql->len, piece, len + 1);
	sql->len += len;
}

static void
sql_add_ident(Sql *sql, const char *name)
{
	char quoted[2 * 256 + 3];

	if (!bk_sql_quote_ident(quoted, sizeof(quoted), name))
		quoted[0] = '\0'; /* too long: the ALTER fails, nothing deferred */
	sql_add(sql, quoted);
}

/* SHOW CREATE TABLE of db.name, malloc'd, or NULL. */
static char *
show_create(MYSQL *conn, const char *db, const char *name)
{
	Sql sql = {0};
	MYSQL_RES *res;
	MYSQL_ROW row;
	char *text = NULL;

	sql_add(&sql, "SHOW CREATE TABLE ");
	sql_add_ident(&sql, db);
	sql_add(&sql, ".");
	sql_add_ident(&sql, name);
	if (mysql_query(conn, sql.text) == 0 &&
		(res = mysql_store_result(conn)) != NULL)
	{
		if ((row = mysql_fetch_row(res)) != NULL && row[1] != NULL)
			text = strdup(row[1]);
		mysql_free_result(res);
	}
	free(sql.text);
	return text;
}

/*
 * deferrable
 *		The plain secondary indexes of a table that may be deferred, as the
 *		ALTER statements that drop and add them back; false when none.
 */
static bool
deferrable(MYSQL *conn, const char *db, const char *name, Sql *drop, Sql *add)
{
	const char *values[2] = {db, name};
	MYSQL_STMT *stmt = mysql_stmt_init(conn);
	MYSQL_BIND param[2], result[2];
	unsigned long lengths[2];
	char index[256], column[256];
	unsigned long index_len, column_len;
	char previous[256] = "";
	bool any = false;
	int status;

	/*
	 * Tables with foreign keys (either side) or system versioning, and
	 * other engines, keep their indexes; so do indexes with anything but
	 * whole columns in ascending order.
	 */
	/*
	 * No ORDER BY: the server lists keys in the table's own order, which
	 * adding them back must keep (and the comparison below checks).
	 */
	static const char query[] =
		"SELECT s.INDEX_NAME, s.COLUMN_NAME FROM information_schema.STATISTICS "
		"s"
		" JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.TABLE_SCHEMA"
		" AND t.TABLE_NAME = s.TABLE_NAME"
		" WHERE s.TABLE_SCHEMA = ? AND s.TABLE_NAME = ? AND s.NON_UNIQUE = 1"
		" AND s.INDEX_TYPE = 'BTREE' AND t.ENGINE = 'InnoDB'"
		" AND t.TABLE_TYPE = 'BASE TABLE'"
		" AND NOT EXISTS (SELECT 1 FROM information_schema.STATISTICS o"
		"   WHERE o.TABLE_SCHEMA = s.TABLE_SCHEMA AND o.TABLE_NAME ="
		"   s.TABLE_NAME AND o.INDEX_NAME = s.INDEX_NAME AND (o.SUB_PART IS"
		"   NOT NULL OR o.INDEX_COMMENT <> '' OR o.IGNORED = 'YES' OR"
		"   IFNULL(o.COLLATION, 'A') <> 'A'))"
		" AND NOT EXISTS (SELECT 1 FROM"
		"   information_schema.REFERENTIAL_CONSTRAINTS r WHERE"
		"   r.CONSTRAINT_SCHEMA = s.TABLE_SCHEMA AND (r.TABLE_NAME ="
		"   s.TABLE_NAME OR r.REFERENCED_TABLE_NAME = s.TABLE_NAME))";

	if (stmt == NULL)
		return false;
	memset(param, 0, sizeof(param));
	memset(result, 0, sizeof(result));
	for (int idx = 0; idx < 2; idx++)
	{
		lengths[idx] = (unsigned long) strlen(values[idx]);
		param[idx].buffer_type = MYSQL_TYPE_STRING;
		param[idx].buffer = (void *) values[idx];
		param[idx].buffer_length = lengths[idx];
		param[idx].length = &lengths[idx];
	}
	result[0].buffer_type = MYSQL_TYPE_STRING;
	result[0].buffer = index;
	result[0].buffer_length = sizeof(index) - 1;
	result[0].length = &index_len;
	result[1].buffer_type = MYSQL_TYPE_STRING;
	result[1].buffer = column;
	result[1].buffer_length = sizeof(column) - 1;
	result[1].length = &column_len;
	if (mysql_stmt_prepare(stmt, query, sizeof(query) - 1) != 0 ||
		mysql_stmt_bind_param(stmt, param) != 0 ||
		mysql_stmt_execute(stmt) != 0 ||
		mysql_stmt_bind_result(stmt, result) != 0 ||
		mysql_stmt_store_result(stmt) != 0)
	{
		mysql_stmt_close(stmt);
		return false;
	}
	sql_add(drop, "ALTER TABLE ");
	sql_add_ident(drop, db);
	sql_add(drop, ".");
	sql_add_ident(drop, name);
	sql_add(add, drop->text);
	while ((status = mysql_stmt_fetch(stmt)) == 0)
	{
		index[index_len < sizeof(index) ? index_len : sizeof(index) - 1] = '\0';
		column[column_len < sizeof(column) ? column_len : sizeof(column) - 1] =
			'\0';
		if (strcmp(index, previous) != 0)
		{
			if (any)
				sql_add(add, "),");
			sql_add(drop, any ? ", DROP INDEX " : " DROP INDEX ");
			sql_add_ident(drop, index);
			sql_add(add, " ADD INDEX ");
			sql_add_ident(add, index);
			sql_add(add, " (");
			bk_strlcpy(previous, index, sizeof(previous));
			any = true;
		}
		else
			sql_add(add, ", ");
		sql_add_ident(add, column);
	}
	if (any)
		sql_add(add, ")");
	mysql_stmt_close(stmt);
	return any && status == MYSQL_NO_DATA;
}

/*
 * restore_defer_indexes
 *		Before a table is loaded: drop its deferrable indexes if adding them
 *		back gives the same table; *add_sql (malloc'd, or NULL) adds them
 *		after the load.  recreate makes the table again from its definition.
 */
bool
restore_defer_indexes(MYSQL *conn, const char *db, const char *name,
					  bool (*recreate)(void *arg, BkError *err), void *arg,
					  char **add_sql, BkError *err)
{
	Sql drop = {0}, add = {0};
	char *before = NULL, *after = NULL;
	bool same;

	*add_sql = NULL;
	if (!deferrable(conn, db, name, &drop, &add))
	{
		free(drop.text);
		free(add.text);
		return true;
	}
	before = show_create(conn, db, name);
	same = before != NULL && mysql_query(conn, drop.text) == 0 &&
		   mysql_query(conn, add.text) == 0 &&
		   (after = show_create(conn, db, name)) != NULL &&
		   strcmp(before, after) == 0 && mysql_query(conn, drop.text) == 0;
	free(before);
	free(after);
	free(drop.text);
	if (same)
	{
		*add_sql = add.text;
		return true;
	}
	free(add.text);
	/* Not the same table: back to its own definition, indexes in place. */
	return recreate(arg, err);
}
