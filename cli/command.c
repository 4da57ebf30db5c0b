/*
 * command.c
 *		What every bk command shares: the common options, the configuration
 *		they override, and what list, verify and expire open (repository,
 *		key, sources).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bk_util.h"
#include "commands.h"

bool
bk_common_option(BkCommonOptions *common, int code, const char *arg)
{
	switch (code)
	{
		case OPT_CONFIG:
			common->config_path = arg;
			return true;
		case OPT_BROKERS:
			common->brokers = arg;
			return true;
		case OPT_REPO:
			common->repository = arg;
			return true;
		case OPT_KEY_FILE:
			common->key_file = arg;
			return true;
		case OPT_JSON:
			common->json = true;
			return true;
		case OPT_HELP:
			common->help = true;
			return true;
	}
	return false;
}

int
bk_cli_bad_option(const char *program, const char *option)
{
	if (optopt != 0 && strncmp(option, "--", 2) != 0)
		return bk_cli_usage_error(program, "invalid option \"-%c\"", optopt);
	return bk_cli_usage_error(program,
							  "unknown option, or option missing its "
							  "argument: \"%s\"",
							  option);
}

const struct option bk_source_options[] = {
	{"source", required_argument, NULL, 's'},
	BK_COMMON_LONG_OPTIONS,
	{NULL, 0, NULL, 0}};

int
bk_option_store(void *arg, int code, const char *value)
{
	*(const char **) arg = value;
	return BK_EXIT_OK;
}

int
bk_command_parse(int argc, char **argv, const struct option *options,
				 const char *help, BkCommonOptions *common, BkOptionFn fn,
				 void *arg)
{
	return bk_command_parse_args(argc, argv, options, help, common, fn, arg,
								 NULL, 0, NULL);
}

int
bk_command_parse_args(int argc, char **argv, const struct option *options,
					  const char *help, BkCommonOptions *common, BkOptionFn fn,
					  void *arg, const char *arg_names, int arg_count,
					  char **args)
{
	static const char *const repeatable[] = {"tablespace-map", NULL};
	const char *seen[BK_CLI_OPTIONS_MAX] = {0};
	const char *program = argv[0];
	int code;
	int index = -1;

	optind = 1;
	opterr = 0;
	while ((code = getopt_long(argc, argv, "", options, &index)) != -1)
	{
		BkError err;
		int status;

		if (code == '?' || code == ':')
			return bk_cli_bad_option(program, argv[optind - 1]);
		/* A second, other value of a one-value option: which one? */
		if (!bk_cli_option_repeat(options, index, optarg, seen, repeatable,
								  &err))
			return bk_cli_usage_error(program, "%s", err.message);
		index = -1;
		if (bk_common_option(common, code, optarg))
			continue;
		status = fn(arg, code, optarg);
		if (status != BK_EXIT_OK)
			return status;
	}
	if (common->help)
	{
		fputs(help, stdout);
		return BK_EXIT_OK;
	}
	if (argc - optind > arg_count)
		return bk_cli_usage_error(program, "unexpected argument \"%s\"",
								  argv[optind + arg_count]);
	if (argc - optind < arg_count)
		return bk_cli_usage_error(program, "expected %s", arg_names);
	for (int argIdx = 0; argIdx < arg_count; argIdx++)
		args[argIdx] = argv[optind + argIdx];
	return BK_COMMAND_RUN;
}

bool
bk_common_config(const BkCommonOptions *common, BkCliConfig *config,
				 BkError *err)
{
	if (!bk_cli_config_load(config, common->config_path, err))
		return false;
	if (common->brokers != NULL &&
		!bk_cli_config_set(config, "kafka_brokers", common->brokers, err))
		return false;
	if (common->repository != NULL &&
		!bk_cli_config_set(config, "repository", common->repository, err))
		return false;
	if (common->key_file != NULL &&
		!bk_cli_config_set(config, "key_file", common->key_file, err))
		return false;
	return true;
}

bool
bk_command_open(BkCommandContext *ctx, const char *program,
				const BkCommonOptions *common, const char *only_source,
				BkKeyNeed key, BkError *err)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->program = program;
	bk_cli_config_init(&ctx->config);
	if (!bk_common_config(common, &ctx->config, err))
		return false;
	ctx->repo = bk_cli_repo_open(&ctx->config, false, err);
	if (ctx->repo == NULL)
		return false;
	if (key != BK_KEY_NONE && ctx->config.key_file != NULL)
	{
		BkError key_err;

		bk_error_clear(&key_err);
		ctx->ring = bk_keyring_load(ctx->config.key_file, BK_KEYS_FOR_RESTORE,
									&key_err);
		if (ctx->ring != NULL)
			ctx->decoder = bk_decoder_new(ctx->ring, &key_err);
		if (ctx->decoder == NULL)
		{
			bk_keyring_free(ctx->ring);
			ctx->ring = NULL;
			if (key == BK_KEY_USED)
			{
				*err = key_err;
				return false;
			}
			fprintf(stderr,
					"%s: note: going on without the key (%s): history files "
					"archived without their branch points stay unread\n",
					program, key_err.message);
		}
	}
	if (only_source == NULL)
		return bk_repo_sources(ctx->repo, &ctx->sources, &ctx->source_count,
							   err);
	if (!bk_source_id_valid(only_source, strlen(only_source)))
		return bk_error_set(
			err, BK_ERR_USAGE,
			"invalid source id \"%s\": a source id is " BK_SOURCE_ID_RULE,
			only_source);
	ctx->sources = bk_cli_alloc_zero(1, sizeof(char *));
	ctx->sources[0] = bk_cli_strdup(only_source);
	ctx->source_count = 1;
	return true;
}

void
bk_command_close(BkCommandContext *ctx)
{
	bk_repo_free_list(ctx->sources, ctx->source_count);
	bk_decoder_free(ctx->decoder);
	bk_keyring_free(ctx->ring);
	bk_repo_close(ctx->repo);
	bk_cli_config_free(&ctx->config);
	memset(ctx, 0, sizeof(*ctx));
}
