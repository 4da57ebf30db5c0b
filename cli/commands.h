/*
 * commands.h
 *		The commands of the bk tool.  Each takes its own argv (argv[0] is
 *		"bk <command>") and returns the process exit code.
 */
#ifndef BK_COMMANDS_H
#define BK_COMMANDS_H

#include <getopt.h>
#include <stdbool.h>

#include "bk_crypto.h"
#include "bk_keys.h"
#include "cli.h"
#include "repo.h"

/*
 * Options every command accepts.  A command's getopt table lists them with
 * BK_COMMON_LONG_OPTIONS and passes unknown codes to bk_common_option.
 */
enum
{
	OPT_CONFIG = 1000,
	OPT_BROKERS,
	OPT_REPO,
	OPT_KEY_FILE,
	OPT_JSON,
	OPT_HELP,
	OPT_COMMAND_BASE = 1100 /* commands number their own options from here */
};

#define BK_COMMON_LONG_OPTIONS                                                 \
	{"config", required_argument, NULL, OPT_CONFIG},                           \
		{"brokers", required_argument, NULL, OPT_BROKERS},                     \
		{"repo", required_argument, NULL, OPT_REPO},                           \
		{"key-file", required_argument, NULL, OPT_KEY_FILE},                   \
		{"json", no_argument, NULL, OPT_JSON},                                 \
	{                                                                          \
		"help", no_argument, NULL, OPT_HELP                                    \
	}

#define BK_COMMON_HELP                                                         \
	"Common options:\n"                                                        \
	"  --config FILE     configuration file (default $BK_CONFIG, then "        \
	"/etc/bk/bk.conf)\n"                                                       \
	"  --brokers LIST    Kafka bootstrap servers (kafka_brokers)\n"            \
	"  --repo LOCATION   repository: a directory or s3://BUCKET/PREFIX "       \
	"(repository)\n"                                                           \
	"  --key-file FILE   key file (key_file)\n"                                \
	"  --json            machine-readable output where the output is data\n"   \
	"  --help            this help\n"

typedef struct BkCommonOptions
{
	const char *config_path;
	const char *brokers;
	const char *repository;
	const char *key_file;
	bool json;
	bool help;
} BkCommonOptions;

/*
 * Handle a common option code; false (with a message printed) for a code
 * that is not one, so the caller reports a usage error.
 */
extern bool bk_common_option(BkCommonOptions *common, int code,
							 const char *arg);

/* Report an option getopt rejected (unknown, or missing its argument). */
extern int bk_cli_bad_option(const char *program, const char *option);

/*
 * A command's own option: BK_EXIT_OK, or the exit status of the usage
 * error it reported (bk_cli_usage_error).
 */
typedef int (*BkOptionFn)(void *arg, int code, const char *value);

/* The options of a command that takes --source S and the common ones. */
extern const struct option bk_source_options[];

/* For a command whose one option takes a value: stores it in *(char **) arg. */
extern int bk_option_store(void *arg, int code, const char *value);

/* What bk_command_parse returns when the command should go on. */
#define BK_COMMAND_RUN (-1)

/*
 * The option loop of every command that takes no positional argument:
 * options (with BK_COMMON_LONG_OPTIONS) through getopt_long, common ones
 * into common, the command's own to fn.  BK_COMMAND_RUN to go on;
 * otherwise the status to exit with: BK_EXIT_OK once --help printed help,
 * or a usage error already reported.
 */
extern int bk_command_parse(int argc, char **argv, const struct option *options,
							const char *help, BkCommonOptions *common,
							BkOptionFn fn, void *arg);

/*
 * bk_command_parse for a command that also takes exactly arg_count
 * arguments after its options (arg_names says which, for the message);
 * they go into args.
 */
extern int bk_command_parse_args(int argc, char **argv,
								 const struct option *options, const char *help,
								 BkCommonOptions *common, BkOptionFn fn,
								 void *arg, const char *arg_names,
								 int arg_count, char **args);

/* Load the configuration and apply the flags on top. */
extern bool bk_common_config(const BkCommonOptions *common, BkCliConfig *config,
							 BkError *err);

/* Whether a command needs the private key. */
typedef enum BkKeyNeed
{
	BK_KEY_NONE,
	BK_KEY_OPTIONAL, /* used when configured; a key that fails to load is
					  * said on stderr and the command goes on without */
	BK_KEY_USED      /* used when configured; failing to load it fails */
} BkKeyNeed;

/*
 * What list, verify and expire open: the configuration, the repository,
 * the key if there is one, and the sources to look at (only_source, or
 * every source the repository holds).
 */
typedef struct BkCommandContext
{
	const char *program;
	BkCliConfig config;
	BkRepo *repo;
	BkKeyring *ring;
	BkDecoder *decoder;
	char **sources;
	int source_count;
} BkCommandContext;

extern bool bk_command_open(BkCommandContext *ctx, const char *program,
							const BkCommonOptions *common,
							const char *only_source, BkKeyNeed key,
							BkError *err);
extern void bk_command_close(BkCommandContext *ctx);

extern int bk_cmd_keygen(int argc, char **argv);
extern int bk_cmd_init(int argc, char **argv);
extern int bk_cmd_wal_get(int argc, char **argv);
extern int bk_cmd_list(int argc, char **argv);
extern int bk_cmd_verify(int argc, char **argv);
extern int bk_cmd_restore(int argc, char **argv);
/* bk restore of each engine; bk_cmd_restore picks one. */
extern int bk_pg_restore(int argc, char **argv);
extern int bk_cmd_expire(int argc, char **argv);
extern int bk_cmd_binlog_get(int argc, char **argv);
extern int bk_cmd_snapshot_get(int argc, char **argv);

#endif /* BK_COMMANDS_H */
