/*
 * test_config.c
 *		Configuration text: files, librdkafka property lists, sizes,
 *		durations and booleans, including every rejection; and which
 *		settings of bk and bk-shipper may be empty.
 */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk_config.h"
#include "bk_util.h"
#include "cli.h"

typedef struct Collected
{
	int count;
	char keys[16][64];
	char values[16][256];
} Collected;

static bool
collect(void *arg, const char *key, const char *value, BkError *err)
{
	Collected *collected = arg;

	if (strcmp(key, "reject") == 0)
		return bk_error_set(err, BK_ERR_CONFIG, "unknown setting \"%s\"", key);
	bk_strlcpy(collected->keys[collected->count], key, 64);
	bk_strlcpy(collected->values[collected->count], value, 256);
	collected->count++;
	return true;
}

static void
test_properties(void **state)
{
	Collected c = {0};
	BkError err;

	assert_true(bk_config_parse_properties(
		"security.protocol=SASL_SSL; sasl.password=a\\;b\\\\c ;;linger.ms = 5;",
		collect, &c, &err));
	assert_int_equal(c.count, 3);
	assert_string_equal(c.keys[0], "security.protocol");
	assert_string_equal(c.values[0], "SASL_SSL");
	assert_string_equal(c.keys[1], "sasl.password");
	assert_string_equal(c.values[1], "a;b\\c");
	assert_string_equal(c.keys[2], "linger.ms");
	assert_string_equal(c.values[2], "5");

	assert_false(bk_config_parse_properties("novalue", collect, &c, &err));
	assert_error_contains(&err,
						  "Kafka property 1 of the list is not \"key=value\"");
	assert_false(bk_config_parse_properties("=x", collect, &c, &err));
	/*
	 * A ";" left unescaped in a password cuts it in two: the error names
	 * the piece by its place, never by its text, which is the secret's end.
	 */
	assert_false(bk_config_parse_properties(
		"security.protocol=SASL_SSL;sasl.password=hun;ter2;linger.ms=5",
		collect, &c, &err));
	assert_error_contains(&err,
						  "Kafka property 3 of the list is not \"key=value\"");
	assert_null(strstr(err.message, "ter2"));
	assert_null(strstr(err.hint, "ter2"));
	assert_false(bk_config_parse_properties("sasl.password=a;=hunter2", collect,
											&c, &err));
	assert_null(strstr(err.message, "hunter2"));
	assert_true(bk_config_parse_properties(NULL, collect, &c, &err));
}

/* What bk_config_escape_property writes, the parser reads back literally. */
static void
test_escape_property(void **state)
{
	const char *value = "a;b\\c\\;d\\ #e;";
	char escaped[64];
	char list[160];
	Collected c = {0};
	BkError err;

	assert_int_equal(bk_config_escape_property(value, escaped),
					 strlen(value) + 6);
	assert_string_equal(escaped, "a\\;b\\\\c\\\\\\;d\\\\ #e\\;");
	snprintf(list, sizeof(list), "sasl.password=%s;linger.ms=5", escaped);
	assert_true(bk_config_parse_properties(list, collect, &c, &err));
	assert_int_equal(c.count, 2);
	assert_string_equal(c.values[0], value);
	assert_string_equal(c.values[1], "5");
	assert_int_equal(bk_config_escape_property("", escaped), 0);
	assert_string_equal(escaped, "");
}

static void
on_alarm(int signo)
{
	(void) signo;
}

/*
 * A FIFO in a configuration file's place is refused at once: opening it to
 * read would wait for a writer forever.  An alarm ends such a wait, so that
 * a regression fails instead of hanging the test.
 */
static void
test_file_fifo(void **state)
{
	char *dir = test_mkdtemp();
	char path[512];
	struct sigaction action = {.sa_handler = on_alarm};
	struct sigaction saved;
	Collected c = {0};
	int64_t started;
	BkError err;

	snprintf(path, sizeof(path), "%s/bk.conf", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	sigemptyset(&action.sa_mask);
	assert_int_equal(sigaction(SIGALRM, &action, &saved), 0);
	alarm(5);
	started = bk_monotonic_ms();
	assert_false(bk_config_parse_file(path, collect, &c, &err));
	alarm(0);
	assert_int_equal(sigaction(SIGALRM, &saved, NULL), 0);
	assert_true(bk_monotonic_ms() - started < 2000);
	assert_error_contains(&err, "is not a regular file");
	assert_int_equal(c.count, 0);
	unlink(path);
	test_rmdir(dir);
	free(dir);
}

static void
test_file(void **state)
{
	char *dir = test_mkdtemp();
	char path[512];
	const char *text = "# bk configuration\n"
					   "kafka_brokers = 127.0.0.1:9092\n"
					   "\n"
					   "   repository=/var/lib/bk   \n"
					   "label = \"  spaced  \"\n";
	Collected c = {0};
	BkError err;

	sprintf(path, "%s/bk.conf", dir);
	assert_true(bk_write_file_durable(path, text, strlen(text), 0644, &err));
	assert_true(bk_config_parse_file(path, collect, &c, &err));
	assert_int_equal(c.count, 3);
	assert_string_equal(c.values[0], "127.0.0.1:9092");
	assert_string_equal(c.keys[1], "repository");
	assert_string_equal(c.values[1], "/var/lib/bk");
	assert_string_equal(c.values[2], "  spaced  ");

	text = "kafka_brokers = x\nreject = 1\n";
	assert_true(bk_write_file_durable(path, text, strlen(text), 0644, &err));
	assert_false(bk_config_parse_file(path, collect, &c, &err));
	assert_error_contains(&err, "line 2: unknown setting \"reject\"");

	text = "just words\n";
	assert_true(bk_write_file_durable(path, text, strlen(text), 0644, &err));
	assert_false(bk_config_parse_file(path, collect, &c, &err));
	assert_error_contains(&err, "line 1: expected \"key = value\"");
	/* Never the line itself: in a credentials file it may be the secret. */
	assert_null(strstr(err.message, "just words"));

	text = "a = \"open\n";
	assert_true(bk_write_file_durable(path, text, strlen(text), 0644, &err));
	assert_false(bk_config_parse_file(path, collect, &c, &err));
	assert_error_contains(&err, "unterminated quoted value");

	/* A NUL byte: refused with its line, not read as the end of the file. */
	assert_true(bk_write_file_durable(
		path, "kafka_brokers = x\n# note\0\nrepository = /r\n", 39, 0644,
		&err));
	assert_false(bk_config_parse_file(path, collect, &c, &err));
	assert_error_contains(&err, "line 2: a NUL byte");
	assert_int_equal(err.code, BK_ERR_CONFIG);

	/*
	 * A comment after a value, as the README's examples write them: from a
	 * '#' that follows white space.  One inside a word is part of the
	 * value, and a quoted value keeps its " #".
	 */
	text = "source_id = db1.example          # its name in the archive\n"
		   "server_id = 4242\t# unique\n"
		   "a = x#y\n"
		   "b = \"x # y\"\n"
		   "c = \"  q  \"   # after the quote\n"
		   "d = # nothing but a comment\n"
		   "e=#x\n"
		   "kafka_properties = sasl.password=p#w;ssl.ca.location=/ca # TLS\n";
	memset(&c, 0, sizeof(c));
	assert_true(bk_write_file_durable(path, text, strlen(text), 0644, &err));
	assert_true(bk_config_parse_file(path, collect, &c, &err));
	assert_int_equal(c.count, 8);
	assert_string_equal(c.values[0], "db1.example");
	assert_string_equal(c.values[1], "4242");
	assert_string_equal(c.values[2], "x#y");
	assert_string_equal(c.values[3], "x # y");
	assert_string_equal(c.values[4], "  q  ");
	assert_string_equal(c.values[5], "");
	assert_string_equal(c.values[6], "#x");
	assert_string_equal(c.values[7], "sasl.password=p#w;ssl.ca.location=/ca");
	/*
	 * The comment after a quoted value may quote words itself: the value
	 * ends at the first quote a comment (or the end of the line) follows,
	 * not at the comment's last quote.
	 */
	text = "repository = \"/srv/bk\"  # the \"main\" one\n"
		   "key_file = \"/etc/bk/key\"  # the \"restore\" key\"\n"
		   "kafka_properties = \"sasl.jaas.config=x password=\"p w\";\"\n";
	memset(&c, 0, sizeof(c));
	assert_true(bk_write_file_durable(path, text, strlen(text), 0644, &err));
	if (!bk_config_parse_file(path, collect, &c, &err))
		fail_msg("%s", err.message);
	assert_int_equal(c.count, 3);
	assert_string_equal(c.values[0], "/srv/bk");
	assert_string_equal(c.values[1], "/etc/bk/key");
	assert_string_equal(c.values[2], "sasl.jaas.config=x password=\"p w\";");
	text = "a = \"x\" y\n";
	assert_true(bk_write_file_durable(path, text, strlen(text), 0644, &err));
	assert_false(bk_config_parse_file(path, collect, &c, &err));
	assert_error_contains(&err, "line 1: text after the closing quote of a");
	assert_null(strstr(err.message, "\"y\""));

	/*
	 * A UTF-8 byte order mark, as Windows editors write at the start of a
	 * file, is not part of the first key; one further on (files joined
	 * with cat) is refused by name rather than as an invisible character.
	 */
	text = "\xEF\xBB\xBFrepository = /r\nkafka_brokers = x\n";
	memset(&c, 0, sizeof(c));
	assert_true(bk_write_file_durable(path, text, strlen(text), 0644, &err));
	if (!bk_config_parse_file(path, collect, &c, &err))
		fail_msg("%s", err.message);
	assert_int_equal(c.count, 2);
	assert_string_equal(c.keys[0], "repository");
	assert_string_equal(c.values[0], "/r");
	text = "\xEF\xBB\xBF";
	memset(&c, 0, sizeof(c));
	assert_true(bk_write_file_durable(path, text, strlen(text), 0644, &err));
	assert_true(bk_config_parse_file(path, collect, &c, &err));
	assert_int_equal(c.count, 0);
	text = "repository = /r\n\xEF\xBB\xBFkafka_brokers = x\n";
	assert_true(bk_write_file_durable(path, text, strlen(text), 0644, &err));
	assert_false(bk_config_parse_file(path, collect, &c, &err));
	assert_error_contains(&err, "line 2: a byte order mark");
	assert_int_equal(err.code, BK_ERR_CONFIG);

	sprintf(path, "%s/none.conf", dir);
	assert_false(bk_config_parse_file(path, collect, &c, &err));
	assert_error_contains(&err, "could not open");
	test_rmdir(dir);
	free(dir);
}

static void
test_sizes_durations_bools(void **state)
{
	uint64_t bytes;
	int64_t ms;
	bool flag;

	assert_true(bk_parse_size("1048576", &bytes));
	assert_true(bytes == 1048576);
	assert_true(bk_parse_size("1MiB", &bytes));
	assert_true(bytes == 1048576);
	assert_true(bk_parse_size("1 MB", &bytes));
	assert_true(bytes == 1048576);
	assert_true(bk_parse_size("64kB", &bytes));
	assert_true(bytes == 65536);
	assert_true(bk_parse_size("1.5GB", &bytes));
	assert_true(bytes == 1610612736ull);
	assert_false(bk_parse_size("1 parsec", &bytes));
	assert_false(bk_parse_size("-1", &bytes));
	assert_false(bk_parse_size("", &bytes));
	assert_false(bk_parse_size("0.5B", &bytes));
	/* Decimal only: strtod would read these as 65536 and 1000. */
	assert_false(bk_parse_size("0x10000", &bytes));
	assert_false(bk_parse_size("1e3", &bytes));
	assert_false(bk_parse_size("1.", &bytes));
	assert_false(bk_parse_size("inf", &bytes));
	assert_true(bk_parse_size("010", &bytes));
	assert_true(bytes == 10);

	assert_true(bk_parse_duration_ms("30s", &ms));
	assert_true(ms == 30000);
	assert_true(bk_parse_duration_ms("1500", &ms));
	assert_true(ms == 1500);
	assert_true(bk_parse_duration_ms("7d", &ms));
	assert_true(ms == 604800000);
	assert_true(bk_parse_duration_ms("5min", &ms));
	assert_true(ms == 300000);
	assert_false(bk_parse_duration_ms("5 fortnights", &ms));
	assert_false(bk_parse_duration_ms("soon", &ms));
	assert_false(bk_parse_duration_ms("0x10s", &ms));
	assert_false(bk_parse_duration_ms("1e2s", &ms));

	assert_true(bk_parse_bool("on", &flag) && flag);
	assert_true(bk_parse_bool("FALSE", &flag) && !flag);
	assert_false(bk_parse_bool("maybe", &flag));
}

/*
 * Each setting of bk and bk-shipper given an empty value ("key =" in the
 * file, or a flag given ""): refused, as a configuration error naming the
 * setting, where empty means nothing; taken where it means the default, or
 * none.  An empty group_id used to be taken: the shipper then failed to
 * subscribe ("Local: Unknown group") with the exit status of Kafka
 * unreachable, so systemd restarted it for ever, never naming group_id.
 */
static void
test_empty_settings(void **state)
{
	static const struct
	{
		const char *key;
		bool taken; /* empty means the default, or none */
	} settings[] = {
		/* Refused by name when used: "no Kafka brokers configured". */
		{"kafka_brokers", true},
		{"kafka_properties", true}, /* none */
		{"topic_prefix", false},
		/* Refused by name when used: "no repository configured". */
		{"repository", true},
		/* Refused by name when used: "could not open key file". */
		{"key_file", true},
		{"group_id", false},
		{"chunk_size", false},
		{"kafka_timeout", false},
		{"topic_partitions", false},
		{"topic_replication_factor", false},
		{"topic_retention", false},
		{"audit_retention", false},
		{"shipper_id", false},
		{"abandon_after", false},
		{"metrics_listen", true}, /* no endpoint */
		/* The default (repo_s3.c), as if left out. */
		{"spool_dir", true},
		{"s3_endpoint", true},
		{"s3_region", true},
		{"s3_uri_style", false},
		{"s3_access_key_file", true},
		{"s3_ca_file", true},
		{"s3_verify_tls", false},
		{"s3_storage_class", true},
		{"s3_timeout", false},
		{"s3_part_size", false},
		{"s3_read_jobs", false},
	};
	char path[] = "/tmp/bk-config-test-XXXXXX";
	BkCliConfig config;
	BkError err;
	int fd;

	for (size_t itemIdx = 0; itemIdx < sizeof(settings) / sizeof(settings[0]);
		 itemIdx++)
	{
		const char *key = settings[itemIdx].key;
		char spaced[64]; /* "topic prefix" names topic_prefix too */
		bool taken;

		bk_cli_config_init(&config);
		bk_error_clear(&err);
		taken = bk_cli_config_set(&config, key, "", &err);
		if (taken != settings[itemIdx].taken)
			fail_msg("empty %s: %s", key, taken ? "taken" : err.message);
		if (!taken)
		{
			assert_int_equal(err.code, BK_ERR_CONFIG);
			bk_strlcpy(spaced, key, sizeof(spaced));
			for (char *c = spaced; *c; c++)
				if (*c == '_')
					*c = ' ';
			if (strstr(err.message, key) == NULL &&
				strstr(err.message, spaced) == NULL)
				fail_msg("empty %s refused without naming it: %s", key,
						 err.message);
		}
		bk_cli_config_free(&config);
	}

	/* In a file: exit status 3, the file and the setting named. */
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_true(write(fd, "group_id =\n", 11) == 11);
	close(fd);
	bk_cli_config_init(&config);
	assert_false(bk_cli_config_load(&config, path, &err));
	assert_int_equal(bk_cli_exit_code(err.code), BK_EXIT_CONFIG);
	assert_error_contains(&err, path);
	assert_error_contains(&err, "group_id");
	bk_cli_config_free(&config);
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_properties),
		cmocka_unit_test(test_escape_property),
		cmocka_unit_test(test_file),
		cmocka_unit_test(test_file_fifo),
		cmocka_unit_test(test_sizes_durations_bools),
		cmocka_unit_test(test_empty_settings),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
