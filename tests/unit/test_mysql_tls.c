/*
 * test_mysql_tls.c
 *		The TLS settings of bk's MariaDB connections (common/bk_mysql_tls.c),
 *		the agent's mysql_ssl_* and bk restore's --mysql-ssl-*: the modes,
 *		the default each transport gets, every contradiction refused naming
 *		its setting, the files checked at the start, the options a
 *		connection is given, and the look at the server's greeting that
 *		refuses a server without TLS before the login (its parser fed
 *		truncated and hostile packets, its probe real sockets); and the
 *		messages naming bk restore's options when the settings are those.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bk_mysql_tls.h"
#include "bk_util.h"

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
configure(BkMysqlTls *tls, BkError *err, ...)
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

		if (!bk_mysql_tls_set(tls, name, value, &known, err))
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
	BkMysqlTls tls;
	BkError err;
	bool known = true;

	/* Not a TLS setting: left to the agent's other settings. */
	memset(&tls, 0, sizeof(tls));
	assert_true(bk_mysql_tls_set(&tls, "mysql_host", "db1", &known, &err));
	assert_false(known);
	assert_true(
		bk_mysql_tls_set(&tls, "mysql_ssl_capath", "/etc/ssl", &known, &err));
	assert_false(known);

	assert_true(configure(&tls, &err, "mysql_ssl_mode", "verify_identity",
						  "mysql_ssl_ca", ca, NULL));
	assert_int_equal(tls.mode, BK_MYSQL_SSL_VERIFY_IDENTITY);
	assert_string_equal(tls.ca, ca);
	bk_mysql_tls_free(&tls);
	assert_true(configure(&tls, &err, "mysql_ssl_mode", "required", NULL));
	assert_int_equal(tls.mode, BK_MYSQL_SSL_REQUIRED);
	assert_true(configure(&tls, &err, "mysql_ssl_mode", "disabled", NULL));
	assert_int_equal(tls.mode, BK_MYSQL_SSL_DISABLED);

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
static BkMysqlSslMode
settled(const char *host, const char *socket, const char *mode,
		const char *ca_path)
{
	BkMysqlTls tls;
	BkError err;
	BkMysqlSslMode result;

	memset(&tls, 0, sizeof(tls));
	if (mode != NULL)
		assert_true(configure(&tls, &err, "mysql_ssl_mode", mode, NULL));
	if (ca_path != NULL)
		tls.ca = strdup(ca_path);
	if (!bk_mysql_tls_settle(&tls, host, socket, &err))
		fail_msg("settle refused: %s", err.message);
	result = tls.mode;
	assert_int_equal(tls.mode_defaulted, mode == NULL);
	bk_mysql_tls_free(&tls);
	return result;
}

static void
test_defaults(void **state)
{
	/* Nothing leaves the machine: no TLS unless asked for over TCP. */
	assert_int_equal(settled(NULL, NULL, NULL, NULL), BK_MYSQL_SSL_DISABLED);
	assert_int_equal(settled(NULL, "/run/mysqld/mysqld.sock", NULL, NULL),
					 BK_MYSQL_SSL_DISABLED);
	assert_int_equal(settled("localhost", NULL, NULL, NULL),
					 BK_MYSQL_SSL_DISABLED);
	assert_int_equal(settled("127.0.0.1", NULL, NULL, NULL),
					 BK_MYSQL_SSL_DISABLED);
	assert_int_equal(settled("127.3.2.1", NULL, NULL, NULL),
					 BK_MYSQL_SSL_DISABLED);
	assert_int_equal(settled("::1", NULL, NULL, NULL), BK_MYSQL_SSL_DISABLED);
	/* Another host: TLS, or no connection. */
	assert_int_equal(settled("db1.example", NULL, NULL, NULL),
					 BK_MYSQL_SSL_REQUIRED);
	assert_int_equal(settled("10.0.0.5", NULL, NULL, NULL),
					 BK_MYSQL_SSL_REQUIRED);
	assert_int_equal(settled("128.0.0.1", NULL, NULL, NULL),
					 BK_MYSQL_SSL_REQUIRED);
	assert_int_equal(settled("fe80::1", NULL, NULL, NULL),
					 BK_MYSQL_SSL_REQUIRED);
	/* A CA is there to check the server, loopback or not. */
	assert_int_equal(settled("db1.example", NULL, NULL, ca),
					 BK_MYSQL_SSL_VERIFY_IDENTITY);
	assert_int_equal(settled("127.0.0.1", NULL, NULL, ca),
					 BK_MYSQL_SSL_VERIFY_IDENTITY);
	/* What is given is kept. */
	assert_int_equal(settled("db1.example", NULL, "disabled", NULL),
					 BK_MYSQL_SSL_DISABLED);
	assert_int_equal(settled("127.0.0.1", NULL, "required", NULL),
					 BK_MYSQL_SSL_REQUIRED);
	assert_int_equal(settled(NULL, "/run/mysqld/mysqld.sock", "disabled", NULL),
					 BK_MYSQL_SSL_DISABLED);
}

/* settle refuses, with needle in the message and hint in the hint. */
static void
refused(BkMysqlTls *tls, const char *host, const char *socket,
		const char *needle, const char *hint)
{
	BkError err;

	bk_error_clear(&err);
	assert_false(bk_mysql_tls_settle(tls, host, socket, &err));
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_error_contains(&err, needle);
	if (hint != NULL && strstr(err.hint, hint) == NULL)
		fail_msg("hint \"%s\" lacks \"%s\"", err.hint, hint);
	bk_mysql_tls_free(tls);
}

static void
test_contradictions(void **state)
{
	BkMysqlTls tls;
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
	BkMysqlTls tls;
	BkError err;
	char missing[600];

	/* All given and fine: verify_identity with a client certificate. */
	assert_true(configure(&tls, &err, "mysql_ssl_ca", ca, "mysql_ssl_cert",
						  cert, "mysql_ssl_key", key, "mysql_ssl_crl", crl,
						  NULL));
	assert_true(bk_mysql_tls_settle(&tls, "db1.example", NULL, &err));
	assert_int_equal(tls.mode, BK_MYSQL_SSL_VERIFY_IDENTITY);
	bk_mysql_tls_free(&tls);

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
	assert_true(bk_mysql_tls_settle(&tls, "db1.example", NULL, &err));
	bk_mysql_tls_free(&tls);
}

static void
test_options(void **state)
{
	BkMysqlTls tls;
	BkError err;
	MYSQL *conn = mysql_init(NULL);

	assert_non_null(conn);
	assert_true(configure(&tls, &err, "mysql_ssl_ca", ca, "mysql_ssl_cert",
						  cert, "mysql_ssl_key", key, "mysql_ssl_crl", crl,
						  NULL));
	assert_true(bk_mysql_tls_settle(&tls, "db1.example", NULL, &err));
	assert_true(bk_mysql_tls_options(&tls, conn, &err));
	/* Not connected: no cipher, which a mode requiring TLS refuses. */
	assert_false(bk_mysql_tls_confirm(&tls, conn, "db1.example:3306", &err));
	assert_error_contains(&err, "the connection to MariaDB at db1.example:3306"
								" is not encrypted, and mysql_ssl_mode ="
								" verify_identity refuses it");
	bk_mysql_tls_free(&tls);
	tls.mode = BK_MYSQL_SSL_DISABLED;
	assert_true(bk_mysql_tls_confirm(&tls, conn, "db1.example:3306", &err));
	mysql_close(conn);
}

/*
 * The greeting of MariaDB 10.11 (Debian 12) without TLS, as it was read
 * off the wire: capability flags 0xf7fe, CLIENT_SSL (0x0800) not among
 * them.
 */
static const unsigned char greeting_plain[] =
	"\x68\x00\x00\x00\x0a"
	"5.5.5-10.11.19-MariaDB-0+deb12u1-log\0"
	"\x05\x00\x00\x00"
	"q<rOoaz`\0"
	"\xfe\xf7"
	"\x08\x02\x00\xff\x81\x15\0\0\0\0\0\0\x1d\0\0\0"
	"Uf\"s?~}zk)+:\0"
	"mysql_native_password"; /* and its NUL, the literal's */
/* Offset of the capability flags' upper byte in greeting_plain. */
#define CAPS_HIGH (4 + 1 + 37 + 4 + 8 + 1 + 1)

/* A greeting of the same server with TLS on. */
static void
greeting_tls(unsigned char *out)
{
	memcpy(out, greeting_plain, sizeof(greeting_plain));
	assert_int_equal(out[CAPS_HIGH], 0xf7);
	out[CAPS_HIGH] |= 0x08;
}

/* A packet of payload_len bytes: header (sequence 0), then payload. */
static size_t
packet(unsigned char *out, const void *payload, size_t payload_len)
{
	out[0] = (unsigned char) payload_len;
	out[1] = (unsigned char) (payload_len >> 8);
	out[2] = (unsigned char) (payload_len >> 16);
	out[3] = 0;
	memcpy(out + 4, payload, payload_len);
	return payload_len + 4;
}

static const char blocked[] =
	"\xff\x69\x04Host '192.0.2.9' is blocked because of many connection"
	" errors; unblock with 'mariadb-admin flush-hosts'";
static const char hostile[] = "\xff\x01\x00\x1b[2J\r\nok\xc3\xa9\x7f";
static const char too_many[] = "\xff\x10\x04#08004Too many connections";

static BkMysqlGreetingStatus
parse(const void *data, size_t len, BkMysqlGreeting *greeting)
{
	return bk_mysql_tls_parse_greeting(data, len, greeting);
}

static void
test_greeting(void **state)
{
	unsigned char buf[2048];
	unsigned char payload[1500];
	BkMysqlGreeting g;
	size_t len = sizeof(greeting_plain);
	size_t n;

	assert_int_equal(len, 4 + 0x68);
	assert_int_equal(parse(greeting_plain, len, &g),
					 BK_MYSQL_GREETING_HANDSHAKE);
	assert_false(g.offers_tls);
	greeting_tls(buf);
	assert_int_equal(parse(buf, len, &g), BK_MYSQL_GREETING_HANDSHAKE);
	assert_true(g.offers_tls);
	/* Every prefix asks for more; bytes after the packet are not looked at. */
	for (size_t i = 0; i < len; i++)
		assert_int_equal(parse(buf, i, &g), BK_MYSQL_GREETING_PARTIAL);
	memset(buf + len, 0xee, 16);
	assert_int_equal(parse(buf, len + 16, &g), BK_MYSQL_GREETING_HANDSHAKE);

	/* The error packets of a blocked host, with and without SQLSTATE. */
	n = packet(buf, blocked, sizeof(blocked) - 1);
	assert_int_equal(parse(buf, n, &g), BK_MYSQL_GREETING_ERROR);
	assert_int_equal(g.error_code, 1129);
	assert_string_equal(g.detail, "Host '192.0.2.9' is blocked because of"
								  " many connection errors; unblock with"
								  " 'mariadb-admin flush-hosts'");
	n = packet(buf, too_many, sizeof(too_many) - 1);
	assert_int_equal(parse(buf, n, &g), BK_MYSQL_GREETING_ERROR);
	assert_int_equal(g.error_code, 1040);
	assert_string_equal(g.detail, "Too many connections");
	for (size_t i = 0; i < n; i++)
		assert_int_equal(parse(buf, i, &g), BK_MYSQL_GREETING_PARTIAL);
	/* A message of control characters and 8-bit bytes, then a long one. */
	n = packet(buf, hostile, sizeof(hostile) - 1);
	assert_int_equal(parse(buf, n, &g), BK_MYSQL_GREETING_ERROR);
	assert_string_equal(g.detail, "?[2J??ok???");
	memset(payload, 'x', sizeof(payload));
	memcpy(payload, "\xff\x01\x00", 3);
	n = packet(buf, payload, BK_MYSQL_GREETING_MAX - 4);
	assert_int_equal(parse(buf, n, &g), BK_MYSQL_GREETING_ERROR);
	assert_int_equal(strlen(g.detail), sizeof(g.detail) - 1);
	/* Cut short: no error number. */
	n = packet(buf, "\xff\x01", 2);
	assert_int_equal(parse(buf, n, &g), BK_MYSQL_GREETING_MALFORMED);
	assert_string_equal(g.detail, "an error packet cut short");
	n = packet(buf, "\xff\x01\x00", 3);
	assert_int_equal(parse(buf, n, &g), BK_MYSQL_GREETING_ERROR);
	assert_string_equal(g.detail, "");

	/* Lengths no greeting has: refused from the header alone. */
	n = packet(buf, "", 0);
	assert_int_equal(parse(buf, n, &g), BK_MYSQL_GREETING_MALFORMED);
	assert_string_equal(g.detail, "an empty packet");
	assert_int_equal(parse("\xff\xff\xff\x00", 4, &g),
					 BK_MYSQL_GREETING_MALFORMED);
	assert_string_equal(g.detail,
						"a first packet of 16777215 bytes, more than any"
						" greeting");
	n = packet(buf, payload, BK_MYSQL_GREETING_MAX - 3);
	assert_int_equal(parse(buf, 4, &g), BK_MYSQL_GREETING_MALFORMED);
	/* Another protocol on the port. */
	assert_int_equal(parse("SSH-2.0-OpenSSH_9.2p1\r\n", 23, &g),
					 BK_MYSQL_GREETING_MALFORMED);
	assert_int_equal(parse("HTTP/1.1 400 Bad Request", 24, &g),
					 BK_MYSQL_GREETING_MALFORMED);
	/* Not the first packet of the connection. */
	memcpy(buf, greeting_plain, len);
	buf[3] = 1;
	assert_int_equal(parse(buf, len, &g), BK_MYSQL_GREETING_MALFORMED);
	assert_string_equal(g.detail,
						"a first packet whose sequence number is not 0");
	/* Protocol 9 (MySQL 3.21), or none at all. */
	memcpy(buf, greeting_plain, len);
	buf[4] = 9;
	assert_int_equal(parse(buf, len, &g), BK_MYSQL_GREETING_MALFORMED);
	assert_string_equal(g.detail, "a handshake of protocol version 9, not 10");

	/* The version string: without its NUL, or longer than any. */
	memset(payload, 'v', sizeof(payload));
	payload[0] = 10;
	n = packet(buf, payload, 200);
	assert_int_equal(parse(buf, n, &g), BK_MYSQL_GREETING_MALFORMED);
	assert_string_equal(g.detail, "a server version without its end");
	payload[1 + 256] = '\0';
	memset(payload + 1 + 256 + 1, 0, 15);
	payload[1 + 256 + 1 + 13] = 0x08; /* CLIENT_SSL, cast there */
	n = packet(buf, payload, 1 + 256 + 1 + 15);
	assert_int_equal(parse(buf, n, &g), BK_MYSQL_GREETING_MALFORMED);
	/* The longest version taken, and the shortest handshake after it. */
	payload[1 + 255] = '\0';
	memset(payload + 1 + 255 + 1, 0, 15);
	payload[1 + 255 + 1 + 14] = 0x08;
	n = packet(buf, payload, 1 + 255 + 1 + 15);
	assert_int_equal(parse(buf, n, &g), BK_MYSQL_GREETING_HANDSHAKE);
	assert_true(g.offers_tls);
	/* One byte fewer: the capability flags are not all there. */
	n = packet(buf, payload, 1 + 255 + 1 + 14);
	assert_int_equal(parse(buf, n, &g), BK_MYSQL_GREETING_MALFORMED);
	assert_string_equal(g.detail,
						"a handshake cut short before its capability flags");
	/* An empty version, then nothing. */
	n = packet(buf, "\x0a\0", 2);
	assert_int_equal(parse(buf, n, &g), BK_MYSQL_GREETING_MALFORMED);
	/* The filler after the scramble is not 0: not where it should be. */
	memcpy(buf, greeting_plain, len);
	buf[CAPS_HIGH - 2] = 'x';
	assert_int_equal(parse(buf, len, &g), BK_MYSQL_GREETING_MALFORMED);
	assert_string_equal(g.detail,
						"a handshake whose filler after the scramble is not 0");
}

/*
 * A one-connection server on 127.0.0.1: it sends bytes (in two parts, a
 * pause between them), then reads until the client closes, and exits with
 * the number of bytes it was sent (at most 255): the probe must send none.
 * bytes NULL: it sends nothing; close_at_once: it closes on accepting.
 */
static pid_t
serve(const void *bytes, size_t len, bool close_at_once, unsigned int *port)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t addr_len = sizeof(addr);
	int listener = socket(AF_INET, SOCK_STREAM, 0);
	pid_t pid;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(listener >= 0);
	assert_int_equal(bind(listener, (struct sockaddr *) &addr, sizeof(addr)),
					 0);
	assert_int_equal(listen(listener, 1), 0);
	assert_int_equal(
		getsockname(listener, (struct sockaddr *) &addr, &addr_len), 0);
	*port = ntohs(addr.sin_port);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
	{
		int fd;
		size_t half = len / 2;
		char sink[256];
		ssize_t n;
		int received = 0;

		alarm(10);
		fd = accept(listener, NULL, NULL);
		if (fd < 0)
			_exit(254);
		if (close_at_once)
			_exit(0);
		if (bytes != NULL)
		{
			if (write(fd, bytes, half) != (ssize_t) half)
				_exit(253);
			usleep(50000);
			if (write(fd, (const char *) bytes + half, len - half) !=
				(ssize_t) (len - half))
				_exit(253);
		}
		while ((n = read(fd, sink, sizeof(sink))) > 0)
			received += (int) n;
		_exit(received > 250 ? 250 : received);
	}
	close(listener);
	return pid;
}

/* The server's exit: the number of bytes the probe sent it. */
static int
served(pid_t pid)
{
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/*
 * bk restore's options: the same settings, the messages naming them as
 * given on its command line, and its TCP to "localhost".
 */
static void
test_option_style(void **state)
{
	BkMysqlTls tls = {.style = BK_MYSQL_TLS_OPTIONS};
	BkError err;
	bool known;

	bk_error_clear(&err);
	assert_false(
		bk_mysql_tls_set(&tls, "mysql_ssl_mode", "preferred", &known, &err));
	assert_error_contains(&err, "--mysql-ssl-mode must be disabled, required"
								" or verify_identity, not \"preferred\"");
	assert_non_null(strstr(err.hint, "no preferred mode"));
	bk_error_clear(&err);
	assert_false(
		bk_mysql_tls_set(&tls, "mysql_ssl_mode", "verify-ca", &known, &err));
	assert_non_null(strstr(err.hint, "verify_identity checks the server's"
									 " certificate against --mysql-ssl-ca"));
	assert_false(bk_mysql_tls_set(&tls, "mysql_ssl_key", "", &known, &err));
	assert_error_contains(&err, "--mysql-ssl-key is empty");

	/* "localhost" over TCP: loopback, and TLS may be asked for there. */
	assert_true(
		bk_mysql_tls_settle_transport(&tls, "localhost", false, NULL, &err));
	assert_int_equal(tls.mode, BK_MYSQL_SSL_DISABLED);
	assert_true(tls.mode_defaulted);
	tls = (BkMysqlTls){.style = BK_MYSQL_TLS_OPTIONS,
					   .mode = BK_MYSQL_SSL_REQUIRED};
	assert_true(
		bk_mysql_tls_settle_transport(&tls, "localhost", false, NULL, &err));
	assert_int_equal(tls.mode, BK_MYSQL_SSL_REQUIRED);
	assert_false(tls.mode_defaulted);

	/* Over the socket: refused, saying how to connect over TCP instead. */
	assert_true(configure(&tls, &err, "mysql_ssl_ca", ca, NULL));
	tls.style = BK_MYSQL_TLS_OPTIONS;
	assert_false(bk_mysql_tls_settle_transport(&tls, NULL, true, "/s", &err));
	assert_error_contains(&err, "--mysql-ssl-ca is set, but bk connects"
								" through the Unix socket /s, where TLS"
								" protects nothing");
	assert_non_null(strstr(err.hint, "give --mysql-host and --mysql-port"
									 " instead of --mysql-socket"));
	bk_mysql_tls_free(&tls);

	assert_true(
		configure(&tls, &err, "mysql_ssl_mode", "verify_identity", NULL));
	tls.style = BK_MYSQL_TLS_OPTIONS;
	assert_false(bk_mysql_tls_settle_transport(&tls, "db1", false, NULL, &err));
	assert_error_contains(&err, "--mysql-ssl-mode=verify_identity needs"
								" --mysql-ssl-ca");
	assert_true(configure(&tls, &err, "mysql_ssl_mode", "required",
						  "mysql_ssl_ca", ca, NULL));
	tls.style = BK_MYSQL_TLS_OPTIONS;
	assert_false(bk_mysql_tls_settle_transport(&tls, "db1", false, NULL, &err));
	assert_error_contains(&err, "--mysql-ssl-ca is set, but"
								" --mysql-ssl-mode=required does not check the"
								" server's certificate");
	assert_string_equal(err.hint, "Give --mysql-ssl-mode=verify_identity to"
								  " check it, or leave out --mysql-ssl-ca.");
	bk_mysql_tls_free(&tls);
	assert_true(configure(&tls, &err, "mysql_ssl_mode", "disabled",
						  "mysql_ssl_cert", cert, NULL));
	tls.style = BK_MYSQL_TLS_OPTIONS;
	assert_false(bk_mysql_tls_settle_transport(&tls, "db1", false, NULL, &err));
	assert_error_contains(&err, "--mysql-ssl-cert is set, but"
								" --mysql-ssl-mode is disabled");
	assert_string_equal(err.hint, "Give --mysql-ssl-mode=required (or"
								  " verify_identity with --mysql-ssl-ca), or"
								  " leave out --mysql-ssl-cert.");
	bk_mysql_tls_free(&tls);
	assert_true(configure(&tls, &err, "mysql_ssl_cert", cert, NULL));
	tls.style = BK_MYSQL_TLS_OPTIONS;
	assert_false(bk_mysql_tls_settle_transport(&tls, "db1", false, NULL, &err));
	assert_error_contains(&err,
						  "--mysql-ssl-cert is set without --mysql-ssl-key");
	bk_mysql_tls_free(&tls);

	/* The key's owner and mode rule, naming the option, not the setting. */
	assert_int_equal(chmod(key, 0644), 0);
	assert_true(configure(&tls, &err, "mysql_ssl_mode", "required",
						  "mysql_ssl_cert", cert, "mysql_ssl_key", key, NULL));
	tls.style = BK_MYSQL_TLS_OPTIONS;
	assert_false(bk_mysql_tls_settle_transport(&tls, "db1", false, NULL, &err));
	assert_error_contains(&err, "--mysql-ssl-key file \"");
	assert_null(strstr(err.message, "mysql_ssl_key"));
	if (strstr(err.hint, "mysql_ssl_key") != NULL)
		fail_msg("hint \"%s\" names the agent's setting", err.hint);
	bk_mysql_tls_free(&tls);
	assert_int_equal(chmod(key, 0600), 0);
}

/* The probe of mode against 127.0.0.1:port, described as server. */
static bool
probe(BkMysqlSslMode mode, unsigned int port, unsigned int timeout,
	  BkError *err)
{
	BkMysqlTls tls = {.mode = mode};
	char server[64];

	snprintf(server, sizeof(server), "127.0.0.1:%u", port);
	bk_error_clear(err);
	return bk_mysql_tls_probe(&tls, "127.0.0.1", port, server, timeout, err);
}

static void
test_probe(void **state)
{
	unsigned char tls_greeting[sizeof(greeting_plain)];
	size_t len = sizeof(greeting_plain);
	unsigned char buf[256];
	char expected[256];
	unsigned int port;
	BkError err;
	pid_t pid;
	int64_t started;
	char env_port[16];

	greeting_tls(tls_greeting);
	/* TLS offered: the login may go on, and the probe sent nothing. */
	pid = serve(tls_greeting, len, false, &port);
	assert_true(probe(BK_MYSQL_SSL_REQUIRED, port, 5, &err));
	assert_int_equal(served(pid), 0);

	/* No TLS: refused, saying the login was not sent. */
	pid = serve(greeting_plain, len, false, &port);
	assert_false(probe(BK_MYSQL_SSL_REQUIRED, port, 5, &err));
	assert_int_equal(served(pid), 0);
	assert_int_equal(err.code, BK_ERR_IO);
	snprintf(expected, sizeof(expected),
			 "MariaDB at 127.0.0.1:%u offers no TLS, and mysql_ssl_mode ="
			 " required refuses it: the login was not sent",
			 port);
	assert_error_contains(&err, expected);
	assert_non_null(strstr(err.hint, "Enable TLS on the server"));

	/* The same for bk restore, naming its options. */
	{
		BkMysqlTls options = {.style = BK_MYSQL_TLS_OPTIONS,
							  .mode = BK_MYSQL_SSL_REQUIRED};

		pid = serve(greeting_plain, len, false, &port);
		bk_error_clear(&err);
		assert_false(bk_mysql_tls_probe(&options, "127.0.0.1", port,
										"127.0.0.1:1", 5, &err));
		assert_int_equal(served(pid), 0);
		assert_error_contains(&err, "MariaDB at 127.0.0.1:1 offers no TLS, and"
									" --mysql-ssl-mode=required refuses it:"
									" the login was not sent");
		assert_non_null(strstr(err.hint, "give --mysql-ssl-mode=disabled."));
	}

	/* The port Connector/C takes when given none: MYSQL_TCP_PORT's. */
	pid = serve(greeting_plain, len, false, &port);
	snprintf(env_port, sizeof(env_port), "%u", port);
	setenv("MYSQL_TCP_PORT", env_port, 1);
	assert_false(probe(BK_MYSQL_SSL_REQUIRED, 0, 5, &err));
	unsetenv("MYSQL_TCP_PORT");
	assert_int_equal(served(pid), 0);
	assert_error_contains(&err, "offers no TLS");

	/* The server's error, said. */
	{
		size_t n = packet(buf, blocked, sizeof(blocked) - 1);

		pid = serve(buf, n, false, &port);
		assert_false(probe(BK_MYSQL_SSL_REQUIRED, port, 5, &err));
		assert_int_equal(served(pid), 0);
		assert_error_contains(&err, "refused the connection before any login:"
									" error 1129: Host '192.0.2.9' is blocked"
									" because of many connection errors");
		assert_non_null(strstr(err.hint, "FLUSH HOSTS"));
	}

	/* Not MariaDB on the port. */
	pid = serve("SSH-2.0-OpenSSH_9.2p1\r\n", 23, false, &port);
	assert_false(probe(BK_MYSQL_SSL_REQUIRED, port, 5, &err));
	assert_int_equal(served(pid), 0);
	assert_error_contains(&err, "is not MariaDB: a first packet of");

	/* Silent: the timeout bounds the wait. */
	pid = serve(NULL, 0, false, &port);
	/* The monotonic clock: whole seconds of the wall clock made the bound
	 * depend on where the second boundaries fell, and a clock step broke
	 * it. */
	started = bk_monotonic_ms();
	assert_false(probe(BK_MYSQL_SSL_REQUIRED, port, 1, &err));
	assert_true(bk_monotonic_ms() - started < 3000);
	assert_int_equal(served(pid), 0);
	assert_error_contains(&err, "could not read the greeting of MariaDB at"
								" 127.0.0.1:");
	assert_error_contains(&err, "it sent no greeting in time");

	/* Closed before a whole greeting. */
	pid = serve(NULL, 0, true, &port);
	assert_false(probe(BK_MYSQL_SSL_REQUIRED, port, 5, &err));
	served(pid);
	assert_error_contains(&err, "before its greeting");

	/* Nothing listens (the port of a server gone). */
	assert_false(probe(BK_MYSQL_SSL_REQUIRED, port, 5, &err));
	assert_error_contains(&err, "could not connect to MariaDB at 127.0.0.1:");
	assert_error_contains(&err, "Connection refused");

	/* The other modes do not probe: verify_identity is Connector/C's. */
	assert_true(probe(BK_MYSQL_SSL_VERIFY_IDENTITY, port, 5, &err));
	assert_true(probe(BK_MYSQL_SSL_DISABLED, port, 5, &err));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_settings),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_contradictions),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_greeting),
		cmocka_unit_test(test_probe),
		cmocka_unit_test(test_option_style),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, setup, teardown);
}
