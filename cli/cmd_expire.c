/*
 * cmd_expire.c
 *		bk expire: remove the snapshots and log a retention policy no longer
 *		needs, and nothing a kept snapshot needs for its point-in-time
 *		window.
 *
 * The command and the decision (retention.h) are the same for every
 * engine; what is removed of the log comes from the engine (engine.h):
 * PostgreSQL's WAL in postgres/expire.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bk_util.h"
#include "commands.h"
#include "engine.h"

static const char *expire_help =
	"Usage: bk expire --source S (--retain-full N | --retain-days D) "
	"[--dry-run] [--json]\n\n"
	"Removes snapshots, and the WAL (MariaDB: binlog) before the oldest kept\n"
	"one, that the retention policy no longer needs.  Never removes what a\n"
	"kept snapshot needs to restore any moment of its window, nor a snapshot\n"
	"still arriving.  With the key (key_file, --key-file), a snapshot counts\n"
	"as restorable only if its record decrypts and authenticates; without\n"
	"it, their metadata is taken on trust, and a run that removes says so.\n\n"
	"  --source S        source id\n"
	"  --retain-full N   keep the N newest restorable full snapshots and "
	"their\n                    diff/incr snapshots\n"
	"  --retain-days D   keep what restores any moment of the last D days\n"
	"  --dry-run         only say what would be removed\n" BK_COMMON_HELP;

enum
{
	OPT_SOURCE = OPT_COMMAND_BASE,
	OPT_RETAIN_FULL,
	OPT_RETAIN_DAYS,
	OPT_DRY_RUN
};

typedef struct ExpireOptions
{
	const char *program;
	const char *source;
	BkCommonOptions common;
	BkRetention policy;
} ExpireOptions;

static int
expire_option(void *arg, int code, const char *value)
{
	ExpireOptions *ex = arg;

	switch (code)
	{
		case OPT_SOURCE:
			ex->source = value;
			break;
		case OPT_RETAIN_FULL:
		case OPT_RETAIN_DAYS:
		{
			char *end;
			long long number = strtoll(value, &end, 10);

			if (end == value || *end != '\0' || number < 1 || number > 100000)
				return bk_cli_usage_error(
					ex->program,
					"%s must be a number from 1 to 100000, not \"%s\"",
					code == OPT_RETAIN_FULL ? "--retain-full" : "--retain-days",
					value);
			if (code == OPT_RETAIN_FULL)
				ex->policy.retain_full = number;
			else
				ex->policy.retain_days = number;
			break;
		}
		case OPT_DRY_RUN:
			ex->policy.dry_run = true;
			break;
	}
	return BK_EXIT_OK;
}

static int
parse_options(ExpireOptions *ex, int argc, char **argv)
{
	static const struct option options[] = {
		{"source", required_argument, NULL, OPT_SOURCE},
		{"retain-full", required_argument, NULL, OPT_RETAIN_FULL},
		{"retain-days", required_argument, NULL, OPT_RETAIN_DAYS},
		{"dry-run", no_argument, NULL, OPT_DRY_RUN},
		BK_COMMON_LONG_OPTIONS,
		{NULL, 0, NULL, 0}};
	int status = bk_command_parse(argc, argv, options, expire_help, &ex->common,
								  expire_option, ex);

	if (status != BK_COMMAND_RUN)
		return status;
	if (ex->source == NULL)
		return bk_cli_usage_error(ex->program, "--source S is required");
	if (!bk_source_id_valid(ex->source, strlen(ex->source)))
		return bk_cli_usage_error(
			ex->program,
			"invalid source id \"%s\": a source id is " BK_SOURCE_ID_RULE,
			ex->source);
	if ((ex->policy.retain_full > 0) == (ex->policy.retain_days > 0))
		return bk_cli_usage_error(ex->program,
								  "give exactly one of --retain-full and "
								  "--retain-days");
	return BK_COMMAND_RUN;
}

int
bk_cmd_expire(int argc, char **argv)
{
	ExpireOptions ex = {.program = argv[0]};
	BkCommandContext ctx = {0};
	const BkEngine *engine;
	BkError err;
	int status;

	bk_error_clear(&err);
	status = parse_options(&ex, argc, argv);
	if (status != BK_COMMAND_RUN)
		return status;
	ex.policy.json = ex.common.json;
	/*
	 * With the keyring, only snapshots whose records authenticate count as
	 * restorable (the engines' expire): a key_file configured that does
	 * not load stops the run rather than let it remove on what nothing
	 * authenticates.
	 */
	if (!bk_command_open(&ctx, ex.program, &ex.common, ex.source, BK_KEY_USED,
						 &err) ||
		(engine = bk_engine_for(ctx.repo, ex.source, &err)) == NULL)
		status = bk_cli_report_error(ex.program, &err);
	else
	{
		ex.policy.decoder = ctx.decoder;
		status =
			engine->expire(ex.program, ctx.repo, ex.source, &ex.policy, &err);
	}
	bk_command_close(&ctx);
	return status;
}
