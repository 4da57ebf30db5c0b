/*
 * bk_mysql_tls.c
 *		TLS on the connections to MariaDB of bk-mysql-agent and bk restore.
 *		See bk_mysql_tls.h.
 */
#include "bk_mysql_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <errmsg.h>

#include "bk_secret_file.h"
#include "bk_util.h"

static const char *const mode_names[] = {
	[BK_MYSQL_SSL_UNSET] = "unset",
	[BK_MYSQL_SSL_DISABLED] = "disabled",
	[BK_MYSQL_SSL_REQUIRED] = "required",
	[BK_MYSQL_SSL_VERIFY_IDENTITY] = "verify_identity",
};

const char *
bk_mysql_tls_mode_name(BkMysqlSslMode mode)
{
	return mode_names[mode];
}

/* Each setting, as the agent's file and as a command's option name it. */
static const char *const setting_names[][2] = {
	{"mysql_ssl_mode", "--mysql-ssl-mode"},
	{"mysql_ssl_ca", "--mysql-ssl-ca"},
	{"mysql_ssl_cert", "--mysql-ssl-cert"},
	{"mysql_ssl_key", "--mysql-ssl-key"},
	{"mysql_ssl_crl", "--mysql-ssl-crl"},
	{"mysql_host", "--mysql-host"},
	{"mysql_port", "--mysql-port"},
};

const char *
bk_mysql_tls_setting_name(const BkMysqlTls *tls, const char *key)
{
	for (size_t i = 0; i < sizeof(setting_names) / sizeof(setting_names[0]);
		 i++)
		if (strcmp(key, setting_names[i][0]) == 0)
			return setting_names[i][tls->style == BK_MYSQL_TLS_OPTIONS];
	return key;
}

/* Short for the messages. */
#define NAME(key) bk_mysql_tls_setting_name(tls, key)

/* "mysql_ssl_mode = required", or "--mysql-ssl-mode=required". */
static const char *
mode_said(const BkMysqlTls *tls, BkMysqlSslMode mode, char *buf, size_t size)
{
	snprintf(buf, size, "%s%s%s", NAME("mysql_ssl_mode"),
			 tls->style == BK_MYSQL_TLS_OPTIONS ? "=" : " = ",
			 mode_names[mode]);
	return buf;
}

/* Who connects, for the messages. */
static const char *
who(const BkMysqlTls *tls)
{
	return tls->style == BK_MYSQL_TLS_OPTIONS ? "bk" : "the agent";
}

static bool
set_path(const BkMysqlTls *tls, char **field, const char *key,
		 const char *value, BkError *err)
{
	char *copy;

	if (value[0] == '\0')
		return bk_error_set(err, BK_ERR_CONFIG, "%s is empty: name a file",
							NAME(key));
	copy = strdup(value);
	if (copy == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	free(*field);
	*field = copy;
	return true;
}

bool
bk_mysql_tls_set(BkMysqlTls *tls, const char *key, const char *value,
				 bool *known, BkError *err)
{
	*known = true;
	if (strcmp(key, "mysql_ssl_mode") == 0)
	{
		for (int mode = BK_MYSQL_SSL_DISABLED;
			 mode <= BK_MYSQL_SSL_VERIFY_IDENTITY; mode++)
			if (strcmp(value, mode_names[mode]) == 0)
			{
				tls->mode = (BkMysqlSslMode) mode;
				return true;
			}
		bk_error_set(err, BK_ERR_CONFIG,
					 "%s must be disabled, required or verify_identity,"
					 " not \"%s\"",
					 NAME("mysql_ssl_mode"), value);
		/* The names other clients give, and why bk has neither. */
		if (strcmp(value, "preferred") == 0 || strcmp(value, "prefer") == 0)
			bk_error_hint(err, "bk has no preferred mode: it would go on in"
							   " plain text whenever the server, or anyone on"
							   " the path, offers no TLS.  Give required, or"
							   " disabled on a network you trust.");
		else if (strcmp(value, "verify_ca") == 0 ||
				 strcmp(value, "verify-ca") == 0 ||
				 strcmp(value, "verify-identity") == 0)
			bk_error_hint(err,
						  "verify_identity checks the server's"
						  " certificate against %s and the host name;"
						  " bk has no mode that checks the one without"
						  " the other.",
						  NAME("mysql_ssl_ca"));
		return false;
	}
	if (strcmp(key, "mysql_ssl_ca") == 0)
		return set_path(tls, &tls->ca, key, value, err);
	if (strcmp(key, "mysql_ssl_cert") == 0)
		return set_path(tls, &tls->cert, key, value, err);
	if (strcmp(key, "mysql_ssl_key") == 0)
		return set_path(tls, &tls->key, key, value, err);
	if (strcmp(key, "mysql_ssl_crl") == 0)
		return set_path(tls, &tls->crl, key, value, err);
	*known = false;
	return true;
}

bool
bk_mysql_tls_over_socket(const char *host, const char *socket)
{
	/* Connector/C takes no host, or "localhost", for its Unix socket. */
	return socket != NULL || host == NULL || strcmp(host, "localhost") == 0;
}

/* 127.0.0.0/8 or ::1: TCP that never leaves this machine. */
static bool
host_is_loopback(const char *host)
{
	struct in_addr v4;
	struct in6_addr v6;

	/* A command may connect to "localhost" over TCP (MYSQL_OPT_PROTOCOL). */
	if (strcmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &v4) == 1)
		return (ntohl(v4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &v6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&v6);
	return false;
}

/*
 * A file Connector/C will read by its path: a regular file the agent can
 * open now, so that a typo is said at the start and not as a TLS failure
 * at every retry.  The key is held to the rule of secret files.
 */
static bool
check_file(const BkMysqlTls *tls, const char *key, const char *path,
		   bool secret, BkError *err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	bool ok;

	if (fd < 0)
		return bk_error_set(err, BK_ERR_CONFIG, "%s \"%s\" cannot be read: %s",
							NAME(key), path, strerror(errno));
	if (fstat(fd, &st) != 0)
	{
		bk_error_set(err, BK_ERR_CONFIG, "%s \"%s\": %s", NAME(key), path,
					 strerror(errno));
		close(fd);
		return false;
	}
	close(fd);
	if (!S_ISREG(st.st_mode))
		return bk_error_set(err, BK_ERR_CONFIG,
							"%s \"%s\" is not a regular file", NAME(key), path);
	/* Named as the user gave it: the agent's setting, or bk's option. */
	ok = !secret || bk_secret_file_ok(path, &st,
									  tls->style == BK_MYSQL_TLS_OPTIONS
										  ? BK_SECRET_MARIADB_TLS_KEY_OPTION
										  : BK_SECRET_MARIADB_TLS_KEY,
									  err);
	return ok;
}

/* The first TLS file setting given, for the messages. */
static const char *
first_file_setting(const BkMysqlTls *tls)
{
	return tls->ca     ? NAME("mysql_ssl_ca")
		   : tls->cert ? NAME("mysql_ssl_cert")
		   : tls->key  ? NAME("mysql_ssl_key")
		   : tls->crl  ? NAME("mysql_ssl_crl")
					   : NULL;
}

bool
bk_mysql_tls_settle(BkMysqlTls *tls, const char *host, const char *socket,
					BkError *err)
{
	return bk_mysql_tls_settle_transport(
		tls, host, bk_mysql_tls_over_socket(host, socket), socket, err);
}

bool
bk_mysql_tls_settle_transport(BkMysqlTls *tls, const char *host,
							  bool over_socket, const char *socket,
							  BkError *err)
{
	const char *file_setting = first_file_setting(tls);
	bool options = tls->style == BK_MYSQL_TLS_OPTIONS;
	char mode[64];

	tls->mode_defaulted = tls->mode == BK_MYSQL_SSL_UNSET;
	if (over_socket)
	{
		/*
		 * Nothing on a Unix socket leaves the machine, and whoever can read
		 * it there can read the server's files too: TLS would only cost.
		 * Settings asking for it are refused rather than left doing nothing.
		 */
		if (tls->mode > BK_MYSQL_SSL_DISABLED || file_setting != NULL)
			return bk_error_set(err, BK_ERR_CONFIG,
								"%s is set, but %s connects through the Unix"
								" socket %s, where TLS protects nothing",
								tls->mode > BK_MYSQL_SSL_DISABLED
									? NAME("mysql_ssl_mode")
									: file_setting,
								who(tls),
								socket ? socket : "(the default one)") ||
				   bk_error_hint(
					   err, options ? "Leave out the --mysql-ssl-* options,"
									  " or give --mysql-host and"
									  " --mysql-port instead of"
									  " --mysql-socket to connect over TCP."
									: "Remove the mysql_ssl_* settings, or"
									  " set mysql_host (not \"localhost\")"
									  " and mysql_port to connect over"
									  " TCP.");
		tls->mode = BK_MYSQL_SSL_DISABLED;
		return true;
	}
	if (tls->mode == BK_MYSQL_SSL_UNSET)
		tls->mode = tls->ca != NULL          ? BK_MYSQL_SSL_VERIFY_IDENTITY
					: host_is_loopback(host) ? BK_MYSQL_SSL_DISABLED
											 : BK_MYSQL_SSL_REQUIRED;
	if (tls->mode == BK_MYSQL_SSL_DISABLED && file_setting != NULL)
		return bk_error_set(err, BK_ERR_CONFIG, "%s is set, but %s is disabled",
							file_setting, NAME("mysql_ssl_mode")) ||
			   bk_error_hint(
				   err, "%s %s%s%s, or %s %s.", options ? "Give" : "Set",
				   NAME("mysql_ssl_mode"), options ? "=" : " = ",
				   tls->ca || tls->crl
					   ? "verify_identity"
					   : (options ? "required (or verify_identity with"
									" --mysql-ssl-ca)"
								  : "required (or verify_identity with"
									" mysql_ssl_ca)"),
				   options ? "leave out" : "remove", file_setting);
	if (tls->mode == BK_MYSQL_SSL_REQUIRED &&
		(tls->ca != NULL || tls->crl != NULL))
		return bk_error_set(
				   err, BK_ERR_CONFIG,
				   "%s is set, but %s does not check the server's"
				   " certificate",
				   NAME(tls->ca ? "mysql_ssl_ca" : "mysql_ssl_crl"),
				   mode_said(tls, BK_MYSQL_SSL_REQUIRED, mode, sizeof(mode))) ||
			   bk_error_hint(err, "%s %s to check it, or %s %s.",
							 options ? "Give" : "Set",
							 mode_said(tls, BK_MYSQL_SSL_VERIFY_IDENTITY, mode,
									   sizeof(mode)),
							 options ? "leave out" : "remove",
							 NAME(tls->ca ? "mysql_ssl_ca" : "mysql_ssl_crl"));
	if (tls->mode == BK_MYSQL_SSL_VERIFY_IDENTITY && tls->ca == NULL)
		return bk_error_set(err, BK_ERR_CONFIG, "%s needs %s",
							mode_said(tls, BK_MYSQL_SSL_VERIFY_IDENTITY, mode,
									  sizeof(mode)),
							NAME("mysql_ssl_ca")) ||
			   bk_error_hint(err, "Name the PEM file of the CA that signed the"
								  " server's certificate (the system's bundle,"
								  " such as /etc/ssl/certs/ca-certificates.crt,"
								  " for a public CA).");
	if ((tls->cert == NULL) != (tls->key == NULL))
		return bk_error_set(
				   err, BK_ERR_CONFIG, "%s is set without %s",
				   NAME(tls->cert ? "mysql_ssl_cert" : "mysql_ssl_key"),
				   NAME(tls->cert ? "mysql_ssl_key" : "mysql_ssl_cert")) ||
			   bk_error_hint(err, "A client certificate goes with its private"
								  " key: set both, or neither.");
	return (tls->ca == NULL ||
			check_file(tls, "mysql_ssl_ca", tls->ca, false, err)) &&
		   (tls->cert == NULL ||
			check_file(tls, "mysql_ssl_cert", tls->cert, false, err)) &&
		   (tls->key == NULL ||
			check_file(tls, "mysql_ssl_key", tls->key, true, err)) &&
		   (tls->crl == NULL ||
			check_file(tls, "mysql_ssl_crl", tls->crl, false, err));
}

bool
bk_mysql_tls_options(const BkMysqlTls *tls, MYSQL *conn, BkError *err)
{
	my_bool enforce = tls->mode != BK_MYSQL_SSL_DISABLED;
	my_bool verify = tls->mode == BK_MYSQL_SSL_VERIFY_IDENTITY;
	int failed = 0;

	if (tls->mode == BK_MYSQL_SSL_DISABLED)
		return true;
	failed |= mysql_optionsv(conn, MYSQL_OPT_SSL_ENFORCE, &enforce);
	failed |= mysql_optionsv(conn, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify);
	/* What OpenSSL's default security level allows anyway, said here. */
	failed |= mysql_optionsv(conn, MARIADB_OPT_TLS_VERSION, "TLSv1.2,TLSv1.3");
	if (tls->ca != NULL)
		failed |= mysql_optionsv(conn, MYSQL_OPT_SSL_CA, tls->ca);
	if (tls->cert != NULL)
		failed |= mysql_optionsv(conn, MYSQL_OPT_SSL_CERT, tls->cert);
	if (tls->key != NULL)
		failed |= mysql_optionsv(conn, MYSQL_OPT_SSL_KEY, tls->key);
	if (tls->crl != NULL)
		failed |= mysql_optionsv(conn, MYSQL_OPT_SSL_CRL, tls->crl);
	if (failed)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"MariaDB Connector/C refused a TLS option: %s",
							mysql_error(conn));
	return true;
}

/* What to do about a server without TLS, when the mode requires it. */
static bool
no_tls_hint(const BkMysqlTls *tls, BkError *err)
{
	char disabled[64];

	return bk_error_hint(
		err,
		"Enable TLS on the server (ssl_cert and ssl_key in"
		" its [mariadbd] section; SHOW GLOBAL VARIABLES LIKE"
		" 'have_ssl' then says YES), or, on a network you"
		" trust, %s %s.",
		tls->style == BK_MYSQL_TLS_OPTIONS ? "give" : "set",
		mode_said(tls, BK_MYSQL_SSL_DISABLED, disabled, sizeof(disabled)));
}

/* Where the server is given, for "check ..." hints. */
static const char *
where_given(const BkMysqlTls *tls)
{
	return tls->style == BK_MYSQL_TLS_OPTIONS ? "--mysql-host and --mysql-port"
											  : "mysql_host and mysql_port";
}

/* ------------------------------------------------------------ the probe */

/* The capability flag of a server that offers TLS (CLIENT_SSL). */
#define GREETING_CLIENT_SSL 0x0800
/* The longest server version taken; MariaDB's are < 64 bytes. */
#define GREETING_VERSION_MAX 255

/* len bytes of src into dst as printable ASCII, for a message. */
static void
copy_printable(char *dst, size_t size, const unsigned char *src, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len && n + 1 < size; i++)
		dst[n++] = src[i] >= 0x20 && src[i] < 0x7f ? (char) src[i] : '?';
	dst[n] = '\0';
}

static unsigned int
le16(const unsigned char *p)
{
	return (unsigned int) p[0] | (unsigned int) p[1] << 8;
}

static BkMysqlGreetingStatus
greeting_malformed(BkMysqlGreeting *out, const char *what)
{
	snprintf(out->detail, sizeof(out->detail), "%s", what);
	return BK_MYSQL_GREETING_MALFORMED;
}

BkMysqlGreetingStatus
bk_mysql_tls_parse_greeting(const unsigned char *data, size_t len,
							BkMysqlGreeting *out)
{
	const unsigned char *payload = data + 4;
	const unsigned char *nul;
	size_t payload_len;
	size_t at;

	memset(out, 0, sizeof(*out));
	if (len < 4)
		return BK_MYSQL_GREETING_PARTIAL;
	/* The packet header: 3 bytes of length (little-endian), a sequence. */
	payload_len =
		(size_t) data[0] | (size_t) data[1] << 8 | (size_t) data[2] << 16;
	if (payload_len == 0)
		return greeting_malformed(out, "an empty packet");
	if (payload_len > BK_MYSQL_GREETING_MAX - 4)
	{
		snprintf(out->detail, sizeof(out->detail),
				 "a first packet of %zu bytes, more than any greeting",
				 payload_len);
		return BK_MYSQL_GREETING_MALFORMED;
	}
	/* Connector/C would refuse it too ("packets out of order"). */
	if (data[3] != 0)
		return greeting_malformed(out, "a first packet whose sequence"
									   " number is not 0");
	if (len < 4 + payload_len)
		return BK_MYSQL_GREETING_PARTIAL;

	if (payload[0] == 0xff)
	{
		/* 0xff, the error number (2 bytes), [#SQLSTATE], the message. */
		if (payload_len < 3)
			return greeting_malformed(out, "an error packet cut short");
		out->error_code = le16(payload + 1);
		at = payload_len >= 9 && payload[3] == '#' ? 9 : 3;
		copy_printable(out->detail, sizeof(out->detail), payload + at,
					   payload_len - at);
		return BK_MYSQL_GREETING_ERROR;
	}
	if (payload[0] != 10)
	{
		snprintf(out->detail, sizeof(out->detail),
				 "a handshake of protocol version %u, not 10", payload[0]);
		return BK_MYSQL_GREETING_MALFORMED;
	}
	/* The server's version, NUL-terminated. */
	nul = memchr(payload + 1, '\0',
				 payload_len - 1 < GREETING_VERSION_MAX + 1
					 ? payload_len - 1
					 : GREETING_VERSION_MAX + 1);
	if (nul == NULL)
		return greeting_malformed(out, "a server version without its end");
	at = (size_t) (nul - payload) + 1;
	/* The connection id (4), the scramble's first 8 bytes, a 0 filler. */
	if (payload_len < at + 4 + 8 + 1 + 2)
		return greeting_malformed(out, "a handshake cut short before its"
									   " capability flags");
	if (payload[at + 12] != 0)
		return greeting_malformed(out, "a handshake whose filler after the"
									   " scramble is not 0");
	/* The capability flags' lower 2 bytes, where CLIENT_SSL is. */
	out->offers_tls = (le16(payload + at + 13) & GREETING_CLIENT_SSL) != 0;
	return BK_MYSQL_GREETING_HANDSHAKE;
}

/*
 * The port Connector/C connects to when given none (its mysql_once_init):
 * MYSQL_TCP_PORT, else the "mysql" service, else 3306.  The probe must
 * look at the server the login then goes to.
 */
static unsigned int
default_port(void)
{
	const char *env = getenv("MYSQL_TCP_PORT");
	struct servent entry, *found = NULL;
	char buf[1024];

	if (env != NULL)
		return (unsigned int) atoi(env);
	if (getservbyname_r("mysql", "tcp", &entry, buf, sizeof(buf), &found) ==
			0 &&
		found != NULL)
		return ntohs((uint16_t) found->s_port);
	return 3306;
}

/* Wait until fd is ready for events, or the deadline: errno on false. */
static bool
wait_for(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};

	for (;;)
	{
		int64_t left = deadline - bk_monotonic_ms();
		int rc;

		if (left <= 0)
		{
			errno = ETIMEDOUT;
			return false;
		}
		rc = poll(&pfd, 1, (int) left);
		if (rc > 0)
			return true;
		if (rc < 0 && errno != EINTR)
			return false;
	}
}

/*
 * A TCP connection to host:port before the deadline, trying its addresses
 * in order as Connector/C does: the socket, or -1 and why.
 */
static int
probe_connect(const char *host, unsigned int port, int64_t deadline, char *why,
			  size_t why_size)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
							 .ai_socktype = SOCK_STREAM,
							 .ai_protocol = IPPROTO_TCP};
	struct addrinfo *list;
	char service[16];
	int fd = -1;
	int error = ETIMEDOUT;
	int rc;

	snprintf(service, sizeof(service), "%u", port);
	rc = getaddrinfo(host, service, &hints, &list);
	if (rc != 0)
	{
		snprintf(why, why_size, "%s",
				 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next)
	{
		socklen_t len = sizeof(error);

		fd = socket(ai->ai_family,
					ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
					ai->ai_protocol);
		if (fd < 0)
		{
			error = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS && wait_for(fd, POLLOUT, deadline) &&
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 &&
			error == 0)
			break;
		if (errno != EINPROGRESS)
			error = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(list);
	if (fd < 0)
		snprintf(why, why_size, "%s", strerror(error));
	return fd;
}

/*
 * The greeting of the server at fd, read before the deadline: its status,
 * or BK_MYSQL_GREETING_PARTIAL and why when it did not come whole.
 */
static BkMysqlGreetingStatus
probe_read(int fd, int64_t deadline, BkMysqlGreeting *greeting, char *why,
		   size_t why_size)
{
	unsigned char buf[BK_MYSQL_GREETING_MAX];
	size_t got = 0;
	BkMysqlGreetingStatus status = BK_MYSQL_GREETING_PARTIAL;

	/* The parser says PARTIAL only below 4 + its largest payload. */
	while (status == BK_MYSQL_GREETING_PARTIAL && got < sizeof(buf))
	{
		ssize_t n;

		if (!wait_for(fd, POLLIN, deadline))
		{
			snprintf(why, why_size, "%s",
					 errno == ETIMEDOUT ? "it sent no greeting in time"
										: strerror(errno));
			return BK_MYSQL_GREETING_PARTIAL;
		}
		n = recv(fd, buf + got, sizeof(buf) - got, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
		{
			snprintf(why, why_size, "%s",
					 n == 0 ? "it closed the connection before its greeting"
							: strerror(errno));
			return BK_MYSQL_GREETING_PARTIAL;
		}
		got += (size_t) n;
		status = bk_mysql_tls_parse_greeting(buf, got, greeting);
	}
	if (status == BK_MYSQL_GREETING_PARTIAL)
		snprintf(why, why_size, "a greeting of more than %d bytes",
				 BK_MYSQL_GREETING_MAX);
	return status;
}

bool
bk_mysql_tls_probe(const BkMysqlTls *tls, const char *host, unsigned int port,
				   const char *server, unsigned int timeout, BkError *err)
{
	int64_t deadline = bk_monotonic_ms() + (int64_t) timeout * 1000;
	BkMysqlGreeting greeting;
	BkMysqlGreetingStatus status;
	char why[256];
	char mode[64];
	int fd;

	if (tls->mode != BK_MYSQL_SSL_REQUIRED)
		return true;
	fd = probe_connect(host, port != 0 ? port : default_port(), deadline, why,
					   sizeof(why));
	if (fd < 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not connect to MariaDB at %s: %s", server,
							why) ||
			   bk_error_hint(err, "Check %s, and that the server is up.",
							 where_given(tls));
	/*
	 * Nothing is sent: the server counts a handshake error against this
	 * host (Aborted_connects, and max_connect_errors if it resolves host
	 * names), which the login that follows clears.  While logins keep
	 * failing (a wrong password) agent_connect probes only the first, so
	 * the count stays at one.  Sending an empty login instead would count
	 * as a refused one, logged by the server at every connection of the
	 * agent.
	 */
	status = probe_read(fd, deadline, &greeting, why, sizeof(why));
	close(fd);
	switch (status)
	{
		case BK_MYSQL_GREETING_HANDSHAKE:
			if (greeting.offers_tls)
				return true;
			return bk_error_set(err, BK_ERR_IO,
								"MariaDB at %s offers no TLS, and %s refuses"
								" it: the login was not sent",
								server,
								mode_said(tls, BK_MYSQL_SSL_REQUIRED, mode,
										  sizeof(mode))) ||
				   no_tls_hint(tls, err);
		case BK_MYSQL_GREETING_ERROR:
			bk_error_set(err, BK_ERR_IO,
						 "MariaDB at %s refused the connection before any"
						 " login: error %u: %s",
						 server, greeting.error_code, greeting.detail);
			if (greeting.error_code == 1129) /* ER_HOST_IS_BLOCKED */
				bk_error_hint(err,
							  "FLUSH HOSTS on the server (or mariadb-admin"
							  " flush-hosts) unblocks this host.  Its"
							  " connections that failed before a login"
							  " count to max_connect_errors, clients on"
							  " this host other than %s among them.",
							  who(tls));
			return false;
		case BK_MYSQL_GREETING_MALFORMED:
			return bk_error_set(err, BK_ERR_IO,
								"what answers at %s is not MariaDB: %s", server,
								greeting.detail) ||
				   bk_error_hint(err, "Check %s.", where_given(tls));
		case BK_MYSQL_GREETING_PARTIAL:
			break;
	}
	return bk_error_set(err, BK_ERR_IO,
						"could not read the greeting of MariaDB at %s: %s",
						server, why) ||
		   bk_error_hint(err, "Check %s, and that the server is up.",
						 where_given(tls));
}

bool
bk_mysql_tls_confirm(const BkMysqlTls *tls, MYSQL *conn, const char *server,
					 BkError *err)
{
	/*
	 * bk_mysql_tls_probe saw TLS offered on a connection of its own, but the
	 * login went on another: a server restarted without TLS in between, or
	 * an attacker on the path answering the probe with TLS offered and the
	 * login without.  Connector/C then went on in plain text, so the
	 * session is asked, and refused before any query.  That the login may
	 * have crossed in clear then is what required accepts: it stops a
	 * reader on the wire, and one who can rewrite the traffic can as well
	 * offer TLS with a certificate of his own, which required does not
	 * check; only verify_identity stops him, before anything is sent.
	 */
	char mode[64];

	if (tls->mode == BK_MYSQL_SSL_DISABLED ||
		mysql_get_ssl_cipher(conn) != NULL)
		return true;
	return bk_error_set(err, BK_ERR_IO,
						"the connection to MariaDB at %s is not encrypted, and"
						" %s refuses it",
						server,
						mode_said(tls, tls->mode, mode, sizeof(mode))) ||
		   no_tls_hint(tls, err);
}

bool
bk_mysql_tls_failure_hint(const BkMysqlTls *tls, MYSQL *conn, const char *host,
						  const char *server, BkError *err)
{
	bool options = tls->style == BK_MYSQL_TLS_OPTIONS;
	char mode[64], disabled[64];

	if (tls->mode == BK_MYSQL_SSL_DISABLED ||
		mysql_errno(conn) != CR_SSL_CONNECTION_ERROR)
		return false;
	mode_said(tls, tls->mode, mode, sizeof(mode));
	if (strstr(mysql_error(conn), "does not support") != NULL)
		bk_error_hint(
			err,
			"%s needs TLS, which the server does not offer.  Enable"
			" it there (ssl_cert and ssl_key in its [mariadbd]"
			" section; SHOW GLOBAL VARIABLES LIKE 'have_ssl' then"
			" says YES), or, on a network you trust, %s %s.",
			mode, options ? "give" : "set",
			mode_said(tls, BK_MYSQL_SSL_DISABLED, disabled, sizeof(disabled)));
	else if (tls->mode == BK_MYSQL_SSL_VERIFY_IDENTITY)
		bk_error_hint(err,
					  "%s: the server's certificate must be signed by a CA of"
					  " %s (\"%s\"), be valid now%s%s, and name \"%s\" (in"
					  " its subjectAltName).  See it with \"openssl s_client"
					  " -starttls mysql -connect %s%s\"; fix the CA or the"
					  " server's certificate, or %s %s to a name the"
					  " certificate has.",
					  mode, NAME("mysql_ssl_ca"), tls->ca,
					  tls->crl ? " and not revoked in " : "",
					  tls->crl ? NAME("mysql_ssl_crl") : "", host, server,
					  strchr(server, ':') ? "" : ":3306",
					  options ? "give" : "set", NAME("mysql_host"));
	else
		bk_error_hint(err,
					  "%s: check the server's TLS settings (ssl_cert, ssl_key)"
					  " and %s and %s if set.",
					  mode, NAME("mysql_ssl_cert"), NAME("mysql_ssl_key"));
	return true;
}

void
bk_mysql_tls_free(BkMysqlTls *tls)
{
	free(tls->ca);
	free(tls->cert);
	free(tls->key);
	free(tls->crl);
	memset(tls, 0, sizeof(*tls));
}
