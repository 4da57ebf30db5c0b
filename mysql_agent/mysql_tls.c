/*
 * mysql_tls.c
 *		TLS on the agent's connections to MariaDB.  See mysql_tls.h.
 */
#include "mysql_tls.h"

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
	[AGENT_SSL_UNSET] = "unset",
	[AGENT_SSL_DISABLED] = "disabled",
	[AGENT_SSL_REQUIRED] = "required",
	[AGENT_SSL_VERIFY_IDENTITY] = "verify_identity",
};

const char *
agent_tls_mode_name(AgentSslMode mode)
{
	return mode_names[mode];
}

static bool
set_path(char **field, const char *key, const char *value, BkError *err)
{
	char *copy;

	if (value[0] == '\0')
		return bk_error_set(err, BK_ERR_CONFIG, "%s is empty: name a file",
							key);
	copy = strdup(value);
	if (copy == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	free(*field);
	*field = copy;
	return true;
}

bool
agent_tls_set(AgentTls *tls, const char *key, const char *value, bool *known,
			  BkError *err)
{
	*known = true;
	if (strcmp(key, "mysql_ssl_mode") == 0)
	{
		for (int mode = AGENT_SSL_DISABLED; mode <= AGENT_SSL_VERIFY_IDENTITY;
			 mode++)
			if (strcmp(value, mode_names[mode]) == 0)
			{
				tls->mode = (AgentSslMode) mode;
				return true;
			}
		return bk_error_set(err, BK_ERR_CONFIG,
							"mysql_ssl_mode must be disabled, required or"
							" verify_identity, not \"%s\"",
							value);
	}
	if (strcmp(key, "mysql_ssl_ca") == 0)
		return set_path(&tls->ca, key, value, err);
	if (strcmp(key, "mysql_ssl_cert") == 0)
		return set_path(&tls->cert, key, value, err);
	if (strcmp(key, "mysql_ssl_key") == 0)
		return set_path(&tls->key, key, value, err);
	if (strcmp(key, "mysql_ssl_crl") == 0)
		return set_path(&tls->crl, key, value, err);
	*known = false;
	return true;
}

bool
agent_tls_over_socket(const char *host, const char *socket)
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
check_file(const char *key, const char *path, bool secret, BkError *err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	bool ok;

	if (fd < 0)
		return bk_error_set(err, BK_ERR_CONFIG, "%s \"%s\" cannot be read: %s",
							key, path, strerror(errno));
	if (fstat(fd, &st) != 0)
	{
		bk_error_set(err, BK_ERR_CONFIG, "%s \"%s\": %s", key, path,
					 strerror(errno));
		close(fd);
		return false;
	}
	close(fd);
	if (!S_ISREG(st.st_mode))
		return bk_error_set(err, BK_ERR_CONFIG,
							"%s \"%s\" is not a regular file", key, path);
	ok =
		!secret || bk_secret_file_ok(path, &st, BK_SECRET_MARIADB_TLS_KEY, err);
	return ok;
}

/* The first TLS file setting given, for the messages. */
static const char *
first_file_setting(const AgentTls *tls)
{
	return tls->ca     ? "mysql_ssl_ca"
		   : tls->cert ? "mysql_ssl_cert"
		   : tls->key  ? "mysql_ssl_key"
		   : tls->crl  ? "mysql_ssl_crl"
					   : NULL;
}

bool
agent_tls_settle(AgentTls *tls, const char *host, const char *socket,
				 BkError *err)
{
	bool over_socket = agent_tls_over_socket(host, socket);
	const char *file_setting = first_file_setting(tls);

	tls->mode_defaulted = tls->mode == AGENT_SSL_UNSET;
	if (over_socket)
	{
		/*
		 * Nothing on a Unix socket leaves the machine, and whoever can read
		 * it there can read the server's files too: TLS would only cost.
		 * Settings asking for it are refused rather than left doing nothing.
		 */
		if (tls->mode > AGENT_SSL_DISABLED || file_setting != NULL)
			return bk_error_set(
					   err, BK_ERR_CONFIG,
					   "%s is set, but the agent connects through the Unix"
					   " socket %s, where TLS protects nothing",
					   tls->mode > AGENT_SSL_DISABLED ? "mysql_ssl_mode"
													  : file_setting,
					   socket ? socket : "(the default one)") ||
				   bk_error_hint(err, "Remove the mysql_ssl_* settings, or set"
									  " mysql_host (not \"localhost\") and"
									  " mysql_port to connect over TCP.");
		tls->mode = AGENT_SSL_DISABLED;
		return true;
	}
	if (tls->mode == AGENT_SSL_UNSET)
		tls->mode = tls->ca != NULL          ? AGENT_SSL_VERIFY_IDENTITY
					: host_is_loopback(host) ? AGENT_SSL_DISABLED
											 : AGENT_SSL_REQUIRED;
	if (tls->mode == AGENT_SSL_DISABLED && file_setting != NULL)
		return bk_error_set(err, BK_ERR_CONFIG,
							"%s is set, but mysql_ssl_mode is disabled",
							file_setting) ||
			   bk_error_hint(err, "Set mysql_ssl_mode = %s, or remove %s.",
							 tls->ca || tls->crl ? "verify_identity"
												 : "required (or"
												   " verify_identity with"
												   " mysql_ssl_ca)",
							 file_setting);
	if (tls->mode == AGENT_SSL_REQUIRED &&
		(tls->ca != NULL || tls->crl != NULL))
		return bk_error_set(err, BK_ERR_CONFIG,
							"%s is set, but mysql_ssl_mode = required does"
							" not check the server's certificate",
							tls->ca ? "mysql_ssl_ca" : "mysql_ssl_crl") ||
			   bk_error_hint(err,
							 "Set mysql_ssl_mode = verify_identity to"
							 " check it, or remove %s.",
							 tls->ca ? "mysql_ssl_ca" : "mysql_ssl_crl");
	if (tls->mode == AGENT_SSL_VERIFY_IDENTITY && tls->ca == NULL)
		return bk_error_set(err, BK_ERR_CONFIG,
							"mysql_ssl_mode = verify_identity needs"
							" mysql_ssl_ca") ||
			   bk_error_hint(err, "Name the PEM file of the CA that signed the"
								  " server's certificate (the system's bundle,"
								  " such as /etc/ssl/certs/ca-certificates.crt,"
								  " for a public CA).");
	if ((tls->cert == NULL) != (tls->key == NULL))
		return bk_error_set(err, BK_ERR_CONFIG, "%s is set without %s",
							tls->cert ? "mysql_ssl_cert" : "mysql_ssl_key",
							tls->cert ? "mysql_ssl_key" : "mysql_ssl_cert") ||
			   bk_error_hint(err, "A client certificate goes with its private"
								  " key: set both, or neither.");
	return (tls->ca == NULL ||
			check_file("mysql_ssl_ca", tls->ca, false, err)) &&
		   (tls->cert == NULL ||
			check_file("mysql_ssl_cert", tls->cert, false, err)) &&
		   (tls->key == NULL ||
			check_file("mysql_ssl_key", tls->key, true, err)) &&
		   (tls->crl == NULL ||
			check_file("mysql_ssl_crl", tls->crl, false, err));
}

bool
agent_tls_options(const AgentTls *tls, MYSQL *conn, BkError *err)
{
	my_bool enforce = tls->mode != AGENT_SSL_DISABLED;
	my_bool verify = tls->mode == AGENT_SSL_VERIFY_IDENTITY;
	int failed = 0;

	if (tls->mode == AGENT_SSL_DISABLED)
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
no_tls_hint(BkError *err)
{
	return bk_error_hint(err,
						 "Enable TLS on the server (ssl_cert and ssl_key in"
						 " its [mariadbd] section; SHOW GLOBAL VARIABLES LIKE"
						 " 'have_ssl' then says YES), or, on a network you"
						 " trust, set mysql_ssl_mode = disabled.");
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

static AgentGreetingStatus
greeting_malformed(AgentGreeting *out, const char *what)
{
	snprintf(out->detail, sizeof(out->detail), "%s", what);
	return AGENT_GREETING_MALFORMED;
}

AgentGreetingStatus
agent_tls_parse_greeting(const unsigned char *data, size_t len,
						 AgentGreeting *out)
{
	const unsigned char *payload = data + 4;
	const unsigned char *nul;
	size_t payload_len;
	size_t at;

	memset(out, 0, sizeof(*out));
	if (len < 4)
		return AGENT_GREETING_PARTIAL;
	/* The packet header: 3 bytes of length (little-endian), a sequence. */
	payload_len =
		(size_t) data[0] | (size_t) data[1] << 8 | (size_t) data[2] << 16;
	if (payload_len == 0)
		return greeting_malformed(out, "an empty packet");
	if (payload_len > AGENT_GREETING_MAX - 4)
	{
		snprintf(out->detail, sizeof(out->detail),
				 "a first packet of %zu bytes, more than any greeting",
				 payload_len);
		return AGENT_GREETING_MALFORMED;
	}
	/* Connector/C would refuse it too ("packets out of order"). */
	if (data[3] != 0)
		return greeting_malformed(out, "a first packet whose sequence"
									   " number is not 0");
	if (len < 4 + payload_len)
		return AGENT_GREETING_PARTIAL;

	if (payload[0] == 0xff)
	{
		/* 0xff, the error number (2 bytes), [#SQLSTATE], the message. */
		if (payload_len < 3)
			return greeting_malformed(out, "an error packet cut short");
		out->error_code = le16(payload + 1);
		at = payload_len >= 9 && payload[3] == '#' ? 9 : 3;
		copy_printable(out->detail, sizeof(out->detail), payload + at,
					   payload_len - at);
		return AGENT_GREETING_ERROR;
	}
	if (payload[0] != 10)
	{
		snprintf(out->detail, sizeof(out->detail),
				 "a handshake of protocol version %u, not 10", payload[0]);
		return AGENT_GREETING_MALFORMED;
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
	return AGENT_GREETING_HANDSHAKE;
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
 * or AGENT_GREETING_PARTIAL and why when it did not come whole.
 */
static AgentGreetingStatus
probe_read(int fd, int64_t deadline, AgentGreeting *greeting, char *why,
		   size_t why_size)
{
	unsigned char buf[AGENT_GREETING_MAX];
	size_t got = 0;
	AgentGreetingStatus status = AGENT_GREETING_PARTIAL;

	/* The parser says PARTIAL only below 4 + its largest payload. */
	while (status == AGENT_GREETING_PARTIAL && got < sizeof(buf))
	{
		ssize_t n;

		if (!wait_for(fd, POLLIN, deadline))
		{
			snprintf(why, why_size, "%s",
					 errno == ETIMEDOUT ? "it sent no greeting in time"
										: strerror(errno));
			return AGENT_GREETING_PARTIAL;
		}
		n = recv(fd, buf + got, sizeof(buf) - got, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
		{
			snprintf(why, why_size, "%s",
					 n == 0 ? "it closed the connection before its greeting"
							: strerror(errno));
			return AGENT_GREETING_PARTIAL;
		}
		got += (size_t) n;
		status = agent_tls_parse_greeting(buf, got, greeting);
	}
	if (status == AGENT_GREETING_PARTIAL)
		snprintf(why, why_size, "a greeting of more than %d bytes",
				 AGENT_GREETING_MAX);
	return status;
}

bool
agent_tls_probe(const AgentTls *tls, const char *host, unsigned int port,
				const char *server, unsigned int timeout, BkError *err)
{
	int64_t deadline = bk_monotonic_ms() + (int64_t) timeout * 1000;
	AgentGreeting greeting;
	AgentGreetingStatus status;
	char why[256];
	int fd;

	if (tls->mode != AGENT_SSL_REQUIRED)
		return true;
	fd = probe_connect(host, port != 0 ? port : default_port(), deadline, why,
					   sizeof(why));
	if (fd < 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not connect to MariaDB at %s: %s", server,
							why) ||
			   bk_error_hint(err, "Check mysql_host and mysql_port, and that"
								  " the server is up.");
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
		case AGENT_GREETING_HANDSHAKE:
			if (greeting.offers_tls)
				return true;
			return bk_error_set(err, BK_ERR_IO,
								"MariaDB at %s offers no TLS, and"
								" mysql_ssl_mode = required refuses it: the"
								" login was not sent",
								server) ||
				   no_tls_hint(err);
		case AGENT_GREETING_ERROR:
			bk_error_set(err, BK_ERR_IO,
						 "MariaDB at %s refused the connection before any"
						 " login: error %u: %s",
						 server, greeting.error_code, greeting.detail);
			if (greeting.error_code == 1129) /* ER_HOST_IS_BLOCKED */
				bk_error_hint(err, "FLUSH HOSTS on the server (or mariadb-admin"
								   " flush-hosts) unblocks this host.  Its"
								   " connections that failed before a login"
								   " count to max_connect_errors, clients on"
								   " this host other than the agent among"
								   " them.");
			return false;
		case AGENT_GREETING_MALFORMED:
			return bk_error_set(err, BK_ERR_IO,
								"what answers at %s is not MariaDB: %s", server,
								greeting.detail) ||
				   bk_error_hint(err, "Check mysql_host and mysql_port.");
		case AGENT_GREETING_PARTIAL:
			break;
	}
	return bk_error_set(err, BK_ERR_IO,
						"could not read the greeting of MariaDB at %s: %s",
						server, why) ||
		   bk_error_hint(err, "Check mysql_host and mysql_port, and that the"
							  " server is up.");
}

bool
agent_tls_confirm(const AgentTls *tls, MYSQL *conn, const char *server,
				  BkError *err)
{
	/*
	 * agent_tls_probe saw TLS offered on a connection of its own, but the
	 * login went on another: a server restarted without TLS in between, or
	 * an attacker on the path answering the probe with TLS offered and the
	 * login without.  Connector/C then went on in plain text, so the
	 * session is asked, and refused before any query.  That the login may
	 * have crossed in clear then is what required accepts: it stops a
	 * reader on the wire, and one who can rewrite the traffic can as well
	 * offer TLS with a certificate of his own, which required does not
	 * check; only verify_identity stops him, before anything is sent.
	 */
	if (tls->mode == AGENT_SSL_DISABLED || mysql_get_ssl_cipher(conn) != NULL)
		return true;
	return bk_error_set(err, BK_ERR_IO,
						"the connection to MariaDB at %s is not encrypted, and"
						" mysql_ssl_mode = %s refuses it",
						server, agent_tls_mode_name(tls->mode)) ||
		   no_tls_hint(err);
}

bool
agent_tls_failure_hint(const AgentTls *tls, MYSQL *conn, const char *host,
					   const char *server, BkError *err)
{
	if (tls->mode == AGENT_SSL_DISABLED ||
		mysql_errno(conn) != CR_SSL_CONNECTION_ERROR)
		return false;
	if (strstr(mysql_error(conn), "does not support") != NULL)
		bk_error_hint(err,
					  "mysql_ssl_mode = %s needs TLS, which the server does"
					  " not offer.  Enable it there (ssl_cert and ssl_key in"
					  " its [mariadbd] section; SHOW GLOBAL VARIABLES LIKE"
					  " 'have_ssl' then says YES), or, on a network you"
					  " trust, set mysql_ssl_mode = disabled.",
					  agent_tls_mode_name(tls->mode));
	else if (tls->mode == AGENT_SSL_VERIFY_IDENTITY)
		bk_error_hint(err,
					  "mysql_ssl_mode = verify_identity: the server's"
					  " certificate must be signed by a CA of mysql_ssl_ca"
					  " (\"%s\"), be valid now%s, and name \"%s\" (in its"
					  " subjectAltName).  See it with \"openssl s_client"
					  " -starttls mysql -connect %s%s\"; fix the CA or the"
					  " server's certificate, or set mysql_host to a name the"
					  " certificate has.",
					  tls->ca,
					  tls->crl ? " and not revoked in mysql_ssl_crl" : "", host,
					  server, strchr(server, ':') ? "" : ":3306");
	else
		bk_error_hint(err,
					  "mysql_ssl_mode = %s: check the server's TLS settings"
					  " (ssl_cert, ssl_key) and mysql_ssl_cert and"
					  " mysql_ssl_key if set.",
					  agent_tls_mode_name(tls->mode));
	return true;
}

void
agent_tls_free(AgentTls *tls)
{
	free(tls->ca);
	free(tls->cert);
	free(tls->key);
	free(tls->crl);
	memset(tls, 0, sizeof(*tls));
}
