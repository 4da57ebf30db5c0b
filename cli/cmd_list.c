/*
 * cmd_list.c
 *		bk list: what the repository can restore, per source, and how
 *		current it is.
 *
 * The command is the same for every engine (which sources, text or
 * --json, the optional key); what a source's archive is comes from its
 * engine (engine.h): PostgreSQL's WAL, snapshots, restorable window and
 * RPO in postgres/list.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bk_util.h"
#include "commands.h"
#include "engine.h"

static const char *list_help =
	"Usage: bk list [--config FILE] [--repo LOCATION] [--source S] [--json]\n\n"
	"Shows, per source, the archived WAL (timelines, ranges, gaps, "
	"conflicts), the\nsnapshots and whether each can be restored, the "
	"restorable window, and the\nachieved RPO (the age of the newest "
	"archived WAL).\n\n"
	"  --source S        only this source\n" BK_COMMON_HELP;

int
bk_cmd_list(int argc, char **argv)
{
	BkCommonOptions common = {0};
	const char *only_source = NULL;
	BkCommandContext ctx = {0};
	json_t *result = NULL;
	int64_t now_ms = bk_wall_ms();
	BkError err;
	int status;

	bk_error_clear(&err);
	status = bk_command_parse(argc, argv, bk_source_options, list_help, &common,
							  bk_option_store, &only_source);
	if (status != BK_COMMAND_RUN)
		return status;
	status = BK_EXIT_OK;
	/* The key only reads history files archived without branch points. */
	if (!bk_command_open(&ctx, argv[0], &common, only_source, BK_KEY_OPTIONAL,
						 &err))
		goto fail;
	if (common.json)
		result = json_pack("{s:s, s:[]}", "repository",
						   bk_repo_location(ctx.repo), "sources");
	else if (ctx.source_count == 0)
		printf("repository %s holds no source yet\n",
			   bk_repo_location(ctx.repo));
	for (int sourceIdx = 0; sourceIdx < ctx.source_count; sourceIdx++)
	{
		const char *source = ctx.sources[sourceIdx];
		const BkEngine *engine;
		json_t *item = NULL;

		if (only_source != NULL)
		{
			if ((engine = bk_engine_for(ctx.repo, source, &err)) == NULL)
				goto fail;
		}
		else if (!bk_engine_for_listed(argv[0], ctx.repo, source, &engine,
									   &err))
			goto fail;
		else if (engine == NULL)
			continue;
		if (common.json)
			item = json_pack("{s:s, s:s}", "source", source, "engine",
							 engine->name);
		else
			printf("source %s\n", source);
		if (!engine->list(ctx.repo, source, ctx.decoder, item, now_ms, &err))
		{
			json_decref(item);
			goto fail;
		}
		if (item != NULL)
			json_array_append_new(json_object_get(result, "sources"), item);
	}
	if (common.json)
	{
		json_dumpf(result, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	}
	goto done;

fail:
	status = bk_cli_report_error(argv[0], &err);
done:
	json_decref(result);
	bk_command_close(&ctx);
	return status;
}
