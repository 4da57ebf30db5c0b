/*
 * cmd_init.c
 *		bk init: create the Kafka topics, or check existing ones.
 *
 * Prints one line per finding: what was created, and every setting weaker
 * than a backup needs.  Exits non-zero only for findings that lose data
 * with certainty (bk_topics.h says which) or when Kafka cannot be reached.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bk_kafka.h"
#include "bk_topics.h"
#include "commands.h"

static const char *init_help =
	"Usage: bk init [--config FILE] [--brokers LIST] [--check]\n\n"
	"Creates the topics <prefix>.wal, <prefix>.snapshot, <prefix>.binlog and\n"
	"<prefix>.audit with settings fit for backups, and checks existing ones,\n"
	"reporting every setting weaker than a backup needs.\n\n"
	"  --check           only check; never create\n" BK_COMMON_HELP;

typedef struct InitReport
{
	bool json;
	json_t *findings;
} InitReport;

static void
report_finding(void *arg, BkReportLevel level, const char *topic,
			   const char *message)
{
	InitReport *report = arg;
	const char *level_name = level == BK_REPORT_ERROR     ? "error"
							 : level == BK_REPORT_WARNING ? "warning"
														  : "info";

	if (report->json)
		json_array_append_new(report->findings,
							  json_pack("{s:s, s:s, s:s}", "level", level_name,
										"topic", topic, "message", message));
	else if (level == BK_REPORT_INFO)
		printf("%s: %s\n", topic, message);
	else
		printf("%s: %s: %s\n", level == BK_REPORT_ERROR ? "ERROR" : "WARNING",
			   topic, message);
}

static void
log_to_stderr(void *arg, int level, const char *facility, const char *message)
{
	/* librdkafka's informational chatter is noise for a one-shot command. */
	if (level <= 4)
		fprintf(stderr, "bk init: kafka: %s: %s\n", facility, message);
}

static int
init_option(void *arg, int code, const char *value)
{
	*(bool *) arg = true; /* --check, the only one */
	return BK_EXIT_OK;
}

int
bk_cmd_init(int argc, char **argv)
{
	static const struct option options[] = {{"check", no_argument, NULL, 'c'},
											BK_COMMON_LONG_OPTIONS,
											{NULL, 0, NULL, 0}};
	BkCommonOptions common = {0};
	BkCliConfig config;
	BkKafkaSettings settings;
	BkTopicPolicy policy;
	BkTopicResult result;
	BkProducer *producer = NULL;
	rd_kafka_t *admin = NULL;
	InitReport report = {0};
	bool check_only = false;
	bool ok;
	BkError err;
	int status;

	bk_error_clear(&err);
	status = bk_command_parse(argc, argv, options, init_help, &common,
							  init_option, &check_only);
	if (status != BK_COMMAND_RUN)
		return status;

	bk_cli_config_init(&config);
	if (!bk_common_config(&common, &config, &err))
	{
		bk_cli_config_free(&config);
		return bk_cli_report_error(argv[0], &err);
	}
	bk_cli_kafka_settings(&config, &settings, "bk-init");
	settings.log_fn = log_to_stderr;
	bk_cli_topic_policy(&config, &policy);

	report.json = common.json;
	report.findings = json_array();
	/*
	 * The producer is only built to check, before touching Kafka, that the
	 * configured chunk size and properties make a producer the sources can
	 * use; it never connects.  Admin requests go through a plain handle.
	 */
	producer = bk_producer_new(&settings, &err);
	if (producer != NULL)
		admin = bk_kafka_admin_new(&settings, &err);
	ok = admin != NULL &&
		 bk_topics_ensure(admin, &policy, !check_only, report_finding, &report,
						  &result, &err);
	if (report.json)
	{
		json_t *out =
			json_pack("{s:b, s:o}", "ok", ok, "findings", report.findings);

		if (!ok)
			json_object_set_new(out, "error", json_string(err.message));
		json_dumpf(out, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(out);
	}
	else
	{
		json_decref(report.findings);
		if (ok)
			printf("bk init: %d topic%s created, %d warning%s, Kafka has %d "
				   "broker%s\n",
				   result.created, result.created == 1 ? "" : "s",
				   result.warnings, result.warnings == 1 ? "" : "s",
				   result.brokers, result.brokers == 1 ? "" : "s");
	}
	bk_kafka_admin_free(admin);
	bk_producer_free(producer);
	bk_cli_config_free(&config);
	if (!ok)
		return bk_cli_report_error(argv[0], &err);
	return BK_EXIT_OK;
}
