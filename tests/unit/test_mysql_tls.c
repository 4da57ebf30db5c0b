/*
 * test_mysql_tls.c
 *		bk-mysql-agent's TLS settings (mysql_agent/mysql_tls.c): the modes,
 *		the default each transport gets, every contradiction refused naming
 *		its setting, the files checked at the start, and the options a
 *		connection is given.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mysql_tls.h"

static char *tmp;
static char ca[512], cert[512], key[512], crl[512];

static void
write_file(const char *path, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs("-----BEGIN CERTIFICATE-----\n", f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static int
setup(void **state)
{
	tmp = test_mkdtemp();
	snprintf(ca, sizeof(ca), "%s/ca.pem", tmp);
	snprintf(cert, sizeof(cert), "%s/client.pem", tmp);
	snprintf(key, sizeof(key), "%s/client.key", tmp);
	snprintf(crl, sizeof(crl), "%s/crl.pem", tmp);
	write_file(ca, 0644);
	write_file(cert, 0644);
	write_file(key, 0600);
	write_file(crl, 0644);
	return 0;
}

static int
teardown(void **state)
{
	test_rmdir(tmp);
	free(tmp);
	return 0;
}

/* Settings as a file gives them: "key", "value", ..., NULL. */
static bool
configure(AgentTls *tls, BkError *err, ...)
{
	va_list args;
	const char *name;
	bool known;

	memset(tls, 0, sizeof(*tls));
	bk_error_clear(err);
	va_start(args, err);
	while ((name = va_arg(args, const char *)) != NULL)
	{
		const char *value = va_arg(args, const char *);

		if (!agent_tls_set(tls, name, value, &known, err))
		{
			va_end(args);
			return false;
		}
		assert_true(known);
	}
	va_end(args);
	return true;
}

static void
test_settings(void **state)
{
	AgentTls tls;
	BkError err;
	bool known = true;

	/* Not a TLS setting: left to the agent's other settings. */
	memset(&tls, 0, sizeof(tls));
	assert_true(agent_tls_set(&tls, "mysql_host", "db1", &known, &err));
	assert_false(known);
	assert_true(
		agent_tls_set(&tls, "mysql_ssl_capath", "/etc/ssl", &known, &err));
	assert_false(known);

	assert_true(configure(&tls, &err, "mysql_ssl_mode", "verify_identity",
						  "mysql_ssl_ca", ca, NULL));
	assert_int_equal(tls.mode, AGENT_SSL_VERIFY_IDENTITY);
	assert_string_equal(tls.ca, ca);
	agent_tls_free(&tls);
	assert_true(configure(&tls, &err, "mysql_ssl_mode", "required", NULL));
	assert_int_equal(tls.mode, AGENT_SSL_REQUIRED);
	assert_true(configure(&tls, &err, "mysql_ssl_mode", "disabled", NULL));
	assert_int_equal(tls.mode, AGENT_SSL_DISABLED);

	/* Spelled as the setting says, not as other tools do. */
	assert_false(configure(&tls, &err, "mysql_ssl_mode", "REQUIRED", NULL));
	assert_error_contains(&err, "mysql_ssl_mode must be disabled, required or"
								" verify_identity, not \"REQUIRED\"");
	assert_false(configure(&tls, &err, "mysql_ssl_mode", "preferred", NULL));
	assert_error_contains(&err, "not \"preferred\"");
	assert_false(configure(&tls, &err, "mysql_ssl_ca", "", NULL));
	assert_error_contains(&err, "mysql_ssl_ca is empty");
}

/* The mode settled for host/socket from the given settings. */
static AgentSslMode
settled(const char *host, const char *socket, const char *mode,
		const char *ca_path)
{
	AgentTls tls;
	BkError err;
	AgentSslMode result;

	memset(&tls, 0, sizeof(tls));
	if (mode != NULL)
		assert_true(configure(&tls, &err, "mysql_ssl_mode", mode, NULL));
	if (ca_path != NULL)
		tls.ca = strdup(ca_path);
	if (!agent_tls_settle(&tls, host, socket, &err))
		fail_msg("settle refused: %s", err.message);
	result = tls.mode;
	assert_int_equal(tls.mode_defaulted, mode == NULL);
	agent_tls_free(&tls);
	return result;
}

static void
test_defaults(void **state)
{
	/* Nothing leaves the machine: no TLS unless asked for over TCP. */
	assert_int_equal(settled(NULL, NULL, NULL, NULL), AGENT_SSL_DISABLED);
	assert_int_equal(settled(NULL, "/run/mysqld/mysqld.sock", NULL, NULL),
					 AGENT_SSL_DISABLED);
	assert_int_equal(settled("localhost", NULL, NULL, NULL),
					 AGENT_SSL_DISABLED);
	assert_int_equal(settled("127.0.0.1", NULL, NULL, NULL),
					 AGENT_SSL_DISABLED);
	assert_int_equal(settled("127.3.2.1", NULL, NULL, NULL),
					 AGENT_SSL_DISABLED);
	assert_int_equal(settled("::1", NULL, NULL, NULL), AGENT_SSL_DISABLED);
	/* Another host: TLS, or no connection. */
	assert_int_equal(settled("db1.example", NULL, NULL, NULL),
					 AGENT_SSL_REQUIRED);
	assert_int_equal(settled("10.0.0.5", NULL, NULL, NULL), AGENT_SSL_REQUIRED);
	assert_int_equal(settled("128.0.0.1", NULL, NULL, NULL),
					 AGENT_SSL_REQUIRED);
	assert_int_equal(settled("fe80::1", NULL, NULL, NULL), AGENT_SSL_REQUIRED);
	/* A CA is there to check the server, loopback or not. */
	assert_int_equal(settled("db1.example", NULL, NULL, ca),
					 AGENT_SSL_VERIFY_IDENTITY);
	assert_int_equal(settled("127.0.0.1", NULL, NULL, ca),
					 AGENT_SSL_VERIFY_IDENTITY);
	/* What is given is kept. */
	assert_int_equal(settled("db1.example", NULL, "disabled", NULL),
					 AGENT_SSL_DISABLED);
	assert_int_equal(settled("127.0.0.1", NULL, "required", NULL),
					 AGENT_SSL_REQUIRED);
	assert_int_equal(settled(NULL, "/run/mysqld/mysqld.sock", "disabled", NULL),
					 AGENT_SSL_DISABLED);
}

/* settle refuses, with needle in the message and hint in the hint. */
static void
refused(AgentTls *tls, const char *host, const char *socket, const char *needle,
		const char *hint)
{
	BkError err;

	bk_error_clear(&err);
	assert_false(agent_tls_settle(tls, host, socket, &err));
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_error_contains(&err, needle);
	if (hint != NULL && strstr(err.hint, hint) == NULL)
		fail_msg("hint \"%s\" lacks \"%s\"", err.hint, hint);
	agent_tls_free(tls);
}

static void
test_contradictions(void **state)
{
	AgentTls tls;
	BkError err;

	/* TLS asked for on the Unix socket, where it protects nothing. */
	assert_true(configure(&tls, &err, "mysql_ssl_mode", "required", NULL));
	refused(&tls, NULL, "/run/mysqld/mysqld.sock",
			"mysql_ssl_mode is set, but the agent connects through the Unix"
			" socket /run/mysqld/mysqld.sock",
			"set mysql_host");
	assert_true(configure(&tls, &err, "mysql_ssl_ca", ca, NULL));
	refused(&tls, "localhost", NULL,
			"mysql_ssl_ca is set, but the agent connects through the Unix"
			" socket (the default one)",
			"Remove the mysql_ssl_* settings");

	/* Files for a mode that does not use them. */
	assert_true(configure(&tls, &err, "mysql_ssl_mode", "disabled",
						  "mysql_ssl_ca", ca, NULL));
	refused(&tls, "db1.example", NULL,
			"mysql_ssl_ca is set, but mysql_ssl_mode is disabled",
			"Set mysql_ssl_mode = verify_identity, or remove mysql_ssl_ca");
	assert_true(configure(&tls, &err, "mysql_ssl_mode", "disabled",
						  "mysql_ssl_cert", cert, "mysql_ssl_key", key, NULL));
	refused(&tls, "db1.example", NULL,
			"mysql_ssl_cert is set, but mysql_ssl_mode is disabled",
			"Set mysql_ssl_mode = required");
	assert_true(configure(&tls, &err, "mysql_ssl_mode", "required",
						  "mysql_ssl_ca", ca, NULL));
	refused(&tls, "db1.example", NULL,
			"mysql_ssl_ca is set, but mysql_ssl_mode = required does not"
			" check the server's certificate",
			"verify_identity");
	assert_true(configure(&tls, &err, "mysql_ssl_mode", "required",
						  "mysql_ssl_crl", crl, NULL));
	refused(&tls, "db1.example", NULL, "mysql_ssl_crl is set, but", NULL);

	/* Checking the server needs a CA to check it against. */
	assert_true(
		configure(&tls, &err, "mysql_ssl_mode", "verify_identity", NULL));
	refused(&tls, "db1.example", NULL,
			"mysql_ssl_mode = verify_identity needs mysql_ssl_ca", NULL);

	/* A certificate without its key, and the reverse. */
	assert_true(configure(&tls, &err, "mysql_ssl_cert", cert, NULL));
	refused(&tls, "db1.example", NULL,
			"mysql_ssl_cert is set without mysql_ssl_key", "set both");
	assert_true(configure(&tls, &err, "mysql_ssl_key", key, NULL));
	refused(&tls, "db1.example", NULL,
			"mysql_ssl_key is set without mysql_ssl_cert", NULL);
}

static void
test_files(void **state)
{
	AgentTls tls;
	BkError err;
	char missing[600];

	/* All given and fine: verify_identity with a client certificate. */
	assert_true(configure(&tls, &err, "mysql_ssl_ca", ca, "mysql_ssl_cert",
						  cert, "mysql_ssl_key", key, "mysql_ssl_crl", crl,
						  NULL));
	assert_true(agent_tls_settle(&tls, "db1.example", NULL, &err));
	assert_int_equal(tls.mode, AGENT_SSL_VERIFY_IDENTITY);
	agent_tls_free(&tls);

	snprintf(missing, sizeof(missing), "%s/nope.pem", tmp);
	assert_true(configure(&tls, &err, "mysql_ssl_ca", missing, NULL));
	refused(&tls, "db1.example", NULL, "mysql_ssl_ca \"", "");
	assert_true(configure(&tls, &err, "mysql_ssl_ca", ca, "mysql_ssl_crl",
						  missing, NULL));
	refused(&tls, "db1.example", NULL, "\" cannot be read: No such file", "");
	assert_true(configure(&tls, &err, "mysql_ssl_ca", tmp, NULL));
	refused(&tls, "db1.example", NULL, "is not a regular file", "");
	assert_true(configure(&tls, &err, "mysql_ssl_mode", "required",
						  "mysql_ssl_cert", missing, "mysql_ssl_key", key,
						  NULL));
	refused(&tls, "db1.example", NULL, "mysql_ssl_cert \"", "");

	/* The client key is a secret: bk's rule, as for the password file. */
	assert_int_equal(chmod(key, 0644), 0);
	assert_true(configure(&tls, &err, "mysql_ssl_mode", "required",
						  "mysql_ssl_cert", cert, "mysql_ssl_key", key, NULL));
	refused(&tls, "db1.example", NULL, "mysql_ssl_key file \"", "chmod 600");
	assert_int_equal(chmod(key, 0600), 0);
	assert_true(configure(&tls, &err, "mysql_ssl_mode", "required",
						  "mysql_ssl_cert", cert, "mysql_ssl_key", key, NULL));
	assert_true(agent_tls_settle(&tls, "db1.example", NULL, &err));
	agent_tls_free(&tls);
}

static void
test_options(void **state)
{
	AgentTls tls;
	BkError err;
	MYSQL *conn = mysql_init(NULL);

	assert_non_null(conn);
	assert_true(configure(&tls, &err, "mysql_ssl_ca", ca, "mysql_ssl_cert",
						  cert, "mysql_ssl_key", key, "mysql_ssl_crl", crl,
						  NULL));
	assert_true(agent_tls_settle(&tls, "db1.example", NULL, &err));
	assert_true(agent_tls_options(&tls, conn, &err));
	/* Not connected: no cipher, which a mode requiring TLS refuses. */
	assert_false(agent_tls_confirm(&tls, conn, "db1.example:3306", &err));
	assert_error_contains(&err, "the connection to MariaDB at db1.example:3306"
								" is not encrypted, and mysql_ssl_mode ="
								" verify_identity refuses it");
	agent_tls_free(&tls);
	tls.mode = AGENT_SSL_DISABLED;
	assert_true(agent_tls_confirm(&tls, conn, "db1.example:3306", &err));
	mysql_close(conn);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_settings),       cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_contradictions), cmocka_unit_test(test_files),
		cmocka_unit_test(test_options),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, setup, teardown);
}
