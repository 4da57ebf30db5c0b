/*
 * bk.c
 *		The bk command-line tool: key generation, topic set-up, and (in the
 *		restore-side commands) everything that reads the repository.
 *
 * One binary with subcommands, like git or pgbackrest: scripts call
 * "bk <command> --config FILE ...", and PostgreSQL's restore_command calls
 * "bk wal-get".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

typedef struct BkCommand
{
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
} BkCommand;

static const BkCommand commands[] = {
	{"keygen", bk_cmd_keygen, "write a new key pair (private key and .pub)"},
	{"init", bk_cmd_init, "create or check the Kafka topics"},
	{"wal-get", bk_cmd_wal_get, "restore one WAL file (restore_command)"},
	{"binlog-get", bk_cmd_binlog_get, "rebuild one archived MariaDB binlog"},
	{"snapshot-get", bk_cmd_snapshot_get,
	 "write one MariaDB snapshot, checked"},
	{"list", bk_cmd_list, "show what the repository can restore"},
	{"verify", bk_cmd_verify, "check the repository end to end"},
	{"restore", bk_cmd_restore,
	 "rebuild a database as of a moment (a PostgreSQL data directory, a "
	 "MariaDB server)"},
	{"expire", bk_cmd_expire,
	 "remove snapshots, WAL and binlog beyond retention"},
};

static void
usage(FILE *out)
{
	fprintf(out,
			"bk %s: PostgreSQL and MariaDB backups through Kafka.\n\n"
			"Usage: bk COMMAND [OPTIONS]\n\nCommands:\n",
			BK_VERSION);
	for (size_t cmdIdx = 0; cmdIdx < sizeof(commands) / sizeof(commands[0]);
		 cmdIdx++)
		fprintf(out, "  %-12s %s\n", commands[cmdIdx].name,
				commands[cmdIdx].summary);
	fprintf(out, "\n\"bk COMMAND --help\" describes a command's options.\n");
}

int
main(int argc, char **argv)
{
	char program[64];

	bk_cli_alloc_init();
	if (argc < 2)
	{
		usage(stderr);
		return BK_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0 ||
		strcmp(argv[1], "-h") == 0)
	{
		usage(stdout);
		return BK_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)
	{
		printf("bk %s\n", BK_VERSION);
		return BK_EXIT_OK;
	}
	for (size_t cmdIdx = 0; cmdIdx < sizeof(commands) / sizeof(commands[0]);
		 cmdIdx++)
	{
		if (strcmp(argv[1], commands[cmdIdx].name) != 0)
			continue;
		snprintf(program, sizeof(program), "bk %s", commands[cmdIdx].name);
		argv[1] = program;
		return commands[cmdIdx].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "bk: unknown command \"%s\"\n\n", argv[1]);
	usage(stderr);
	return BK_EXIT_USAGE;
}
