/*
 * cmd_restore.c
 *		bk restore: the engine's own restore, chosen by where it restores to.
 *
 * A PostgreSQL source is restored into a data directory (--pgdata), a
 * MariaDB source into a running server (--mysql-socket or --mysql-host);
 * each refuses the other engine's source with a message saying so.
 */
#include <string.h>

#include "commands.h"
#include "mariadb/mariadb.h"

int
bk_cmd_restore(int argc, char **argv)
{
	for (int idx = 1; idx < argc; idx++)
	{
		if (strcmp(argv[idx], "--") == 0)
			break;
		if (strncmp(argv[idx], "--mysql-socket", 14) == 0 ||
			strncmp(argv[idx], "--mysql-host", 12) == 0)
			return bk_mariadb_restore(argc, argv);
	}
	return bk_pg_restore(argc, argv);
}
