/*
 * bk_mysql_tls.h
 *		TLS on bk's connections to MariaDB: bk-mysql-agent's (the settings
 *		mysql_ssl_mode, mysql_ssl_ca, mysql_ssl_cert, mysql_ssl_key,
 *		mysql_ssl_crl) and bk restore's (the options --mysql-ssl-mode,
 *		--mysql-ssl-ca, ... of the same names and meaning).
 *
 * Every connection the agent opens (the binlog dump, each snapshot reader,
 * the callers' checks) carries the password, the binlog and the rows of
 * every table, and so does every connection of a restore: all of them take
 * these settings.  Only the programs that link Connector/C link this
 * (libbk_mysql.a), not the extension or the UDF plugin.  The modes are
 * those of the mariadb client and MySQL's --ssl-mode:
 *
 *   disabled         never TLS
 *   required         TLS or no connection; the server's certificate is not
 *                    checked (it stops a reader on the wire, not a server
 *                    that poses as the real one)
 *   verify_identity  TLS, and the server's certificate signed by
 *                    mysql_ssl_ca and naming the host connected to
 *
 * Left unset, the mode follows what the other settings say: verify_identity
 * when a CA is given (it is there to check the server, and a CA not used
 * would look like protection that is not), required over TCP to another
 * host, disabled over the Unix socket or loopback, where nothing leaves the
 * machine.  There is no "preferred": TLS when the server offers it and
 * plain text otherwise is what anyone on the path can choose for us.
 */
#ifndef BK_MYSQL_TLS_H
#define BK_MYSQL_TLS_H

#include <stdbool.h>

#include <mysql.h>

#include "bk_error.h"

typedef enum BkMysqlSslMode
{
	BK_MYSQL_SSL_UNSET =
		0, /* not in the file: settled by bk_mysql_tls_settle */
	BK_MYSQL_SSL_DISABLED,
	BK_MYSQL_SSL_REQUIRED,
	BK_MYSQL_SSL_VERIFY_IDENTITY,
} BkMysqlSslMode;

/* How the user names the settings, for the messages. */
typedef enum BkMysqlTlsStyle
{
	BK_MYSQL_TLS_CONFIG = 0, /* the agent's file: mysql_ssl_mode = required */
	BK_MYSQL_TLS_OPTIONS,    /* a command's: --mysql-ssl-mode=required */
} BkMysqlTlsStyle;

typedef struct BkMysqlTls
{
	BkMysqlTlsStyle style; /* set before anything else */
	BkMysqlSslMode mode;
	bool mode_defaulted; /* not given: chosen by bk_mysql_tls_settle */
	char *ca;            /* mysql_ssl_ca: PEM file of the trusted CAs */
	char *cert;          /* mysql_ssl_cert: the client's certificate */
	char *key;           /* mysql_ssl_key: its private key (a secret) */
	char *crl;           /* mysql_ssl_crl: revoked server certificates */
} BkMysqlTls;

/*
 * A mysql_ssl_* setting into tls (a command's --mysql-ssl-* option passes
 * the setting's name).  *known is false for any other key (nothing set,
 * true returned), for the caller's other settings.
 */
extern bool bk_mysql_tls_set(BkMysqlTls *tls, const char *key,
							 const char *value, bool *known, BkError *err);

/*
 * Once the whole file is read: the mode chosen when it was not given, for
 * a connection to host (NULL or "localhost": the Unix socket, as
 * Connector/C does) or the Unix socket (non-NULL); settings that contradict
 * each other or the transport refused, naming them; the files opened, the
 * key held to bk's rule of secret files.
 */
extern bool bk_mysql_tls_settle(BkMysqlTls *tls, const char *host,
								const char *socket, BkError *err);

/*
 * The same, for a connection whose transport the caller chose itself
 * (MYSQL_OPT_PROTOCOL): over_socket, through socket (NULL: the default
 * one), else TCP to host, "localhost" included.
 */
extern bool bk_mysql_tls_settle_transport(BkMysqlTls *tls, const char *host,
										  bool over_socket, const char *socket,
										  BkError *err);

/* The setting key ("mysql_ssl_ca") as tls->style spells it. */
extern const char *bk_mysql_tls_setting_name(const BkMysqlTls *tls,
											 const char *key);

/* The mode's name as the setting spells it. */
extern const char *bk_mysql_tls_mode_name(BkMysqlSslMode mode);

/* Does Connector/C take host and socket for its Unix socket (no TCP)? */
extern bool bk_mysql_tls_over_socket(const char *host, const char *socket);

/* The settled settings as Connector/C options of conn, before connecting. */
extern bool bk_mysql_tls_options(const BkMysqlTls *tls, MYSQL *conn,
								 BkError *err);

/*
 * The server's first packet on a connection, its greeting: a handshake
 * (protocol 10) whose capability flags say whether it offers TLS, or an
 * error packet (a blocked host, too many connections).  Read by
 * bk_mysql_tls_probe from whatever listens on the port, so bounded and
 * parsed as hostile.
 */
typedef enum BkMysqlGreetingStatus
{
	BK_MYSQL_GREETING_PARTIAL,   /* a prefix: more bytes are needed */
	BK_MYSQL_GREETING_HANDSHAKE, /* a handshake: offers_tls says */
	BK_MYSQL_GREETING_ERROR,     /* an error packet: error_code, detail */
	BK_MYSQL_GREETING_MALFORMED, /* neither: what is wrong in detail */
} BkMysqlGreetingStatus;

/* The largest greeting taken, header included: a real one is < 400 bytes. */
#define BK_MYSQL_GREETING_MAX 1024

typedef struct BkMysqlGreeting
{
	bool offers_tls;         /* CLIENT_SSL among its capabilities */
	unsigned int error_code; /* the server's error number */
	char detail[256];        /* its message (printable ASCII), or the flaw */
} BkMysqlGreeting;

/* The first len bytes the server sent, as far as they go. */
extern BkMysqlGreetingStatus
bk_mysql_tls_parse_greeting(const unsigned char *data, size_t len,
							BkMysqlGreeting *out);

/*
 * Before mysql_real_connect, with mysql_ssl_mode = required: does the
 * server at host:port (port 0: Connector/C's default) offer TLS?  A
 * connection of its own that reads the greeting, sends nothing and is
 * closed, within timeout seconds.  Connector/C 3.3 asked for TLS without
 * checking the certificate goes on in plain text when the server offers
 * none, and sends the login there: the user name and a challenge response
 * (mysql_native_password, ed25519, open to an offline dictionary attack)
 * or, for a PAM login, the password itself.  So a server without TLS is
 * refused here, before any of it is sent.  True, doing nothing, for the
 * other modes: verify_identity is refused by Connector/C before the login.
 */
extern bool bk_mysql_tls_probe(const BkMysqlTls *tls, const char *host,
							   unsigned int port, const char *server,
							   unsigned int timeout, BkError *err);

/*
 * After mysql_real_connect: a mode that requires TLS has it.  The second
 * check of required, after bk_mysql_tls_probe: the probe and the login are
 * two connections, and the server (or what answers on its port) may have
 * changed between them.  This one refuses such a session before any query,
 * though its login has crossed in clear.
 */
extern bool bk_mysql_tls_confirm(const BkMysqlTls *tls, MYSQL *conn,
								 const char *server, BkError *err);

/*
 * mysql_real_connect failed on conn, to host (server: host:port): the hint
 * for a TLS failure (the server offers none, or its certificate is
 * refused), saying which setting and what to do; false when the failure
 * is not TLS's.
 */
extern bool bk_mysql_tls_failure_hint(const BkMysqlTls *tls, MYSQL *conn,
									  const char *host, const char *server,
									  BkError *err);

extern void bk_mysql_tls_free(BkMysqlTls *tls);

#endif /* BK_MYSQL_TLS_H */
