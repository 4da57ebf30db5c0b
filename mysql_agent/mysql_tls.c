/*
 * mysql_tls.c
 *		TLS on the agent's connections to MariaDB.  See mysql_tls.h.
 */
#include "mysql_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

bool
agent_tls_confirm(const AgentTls *tls, MYSQL *conn, const char *server,
				  BkError *err)
{
	/*
	 * Connector/C 3.3 asked for TLS without checking the certificate goes
	 * on in plain text when the server offers none: the session is asked.
	 */
	if (tls->mode == AGENT_SSL_DISABLED || mysql_get_ssl_cipher(conn) != NULL)
		return true;
	return bk_error_set(err, BK_ERR_IO,
						"the connection to MariaDB at %s is not encrypted, and"
						" mysql_ssl_mode = %s refuses it",
						server, agent_tls_mode_name(tls->mode)) ||
		   bk_error_hint(err,
						 "Enable TLS on the server (ssl_cert and ssl_key in"
						 " its [mariadbd] section; SHOW GLOBAL VARIABLES LIKE"
						 " 'have_ssl' then says YES), or, on a network you"
						 " trust, set mysql_ssl_mode = disabled.");
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
