/*
 * bk_test_control.c
 *		A stand-in for bk-mysql-agent's control side, for mysql_udf.t: the
 *		real mysql_agent/control.c with a trivial handler, so the UDF can be
 *		driven through a real mariadbd without the agent's backup machinery.
 *
 *   bk_test_control --socket PATH --allow-uid UID --mysql-port PORT
 *                   [--mysql-host HOST] [--mysql-user USER]
 *
 * Every call is first authorized with bk_control_auth_check() against the
 * role bk_admin (the agent's own code: one connection to the server, kept
 * open), then:
 *
 *   status           {"agent":"test","user":U,"host":H,"connection_id":N}
 *   snapshot         {"snapshot":N,"args":A}, N counting snapshot calls;
 *                    args "slow": wait until the caller goes away (60 s at
 *                    most); args "big": a result over the 1 MiB limit
 *   snapshot_cancel  {"cancelled":A}
 *
 * One line per event goes to stdout ("call OP USER HOST ARGS", "refused
 * ...", "cancelled N"), which the test reads.  Runs until SIGTERM/SIGINT.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <mysql.h>

#include "bk_error.h"
#include "control.h"

static const char *server_host = "127.0.0.1";
static const char *server_user = "root";
static unsigned int server_port;
static atomic_int snapshots;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static BkControlAuth *auth;
static const char *const roles[] = {"bk_admin"};

/* One event line on stdout, whole lines only. */
static void event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
event(const char *fmt, ...)
{
	va_list args;

	pthread_mutex_lock(&out_lock);
	va_start(args, fmt);
	vprintf(fmt, args);
	va_end(args);
	putchar('\n');
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

static void
log_line(void *arg, const char *message)
{
	event("log %s", message);
}

/* The authorization connection (BkControlConnect). */
static MYSQL *
connect_server(void *arg, BkError *err)
{
	MYSQL *conn = mysql_init(NULL);

	if (conn == NULL || mysql_real_connect(conn, server_host, server_user, NULL,
										   NULL, server_port, NULL, 0) == NULL)
	{
		bk_error_set(err, BK_ERR_IO, "test agent: cannot connect: %s",
					 conn != NULL ? mysql_error(conn) : "out of memory");
		mysql_close(conn);
		return NULL;
	}
	return conn;
}

/* Ask the server whether the caller holds bk_admin (BkControlAuthorize). */
static bool
authorize(void *arg, const BkControlRequest *req, BkError *err)
{
	event("call %s %s %s %s", req->op, req->user, req->host,
		  req->args != NULL ? req->args : "(null)");
	if (bk_control_auth_check(auth, req->user, req->host, err))
		return true;
	event("refused %s", err->message);
	return false;
}

static char *
handler(void *arg, BkControlCall *call, const BkControlRequest *req,
		BkError *err)
{
	json_t *result;
	char *text;

	if (strcmp(req->op, "status") == 0)
		result = json_pack("{s:s,s:s,s:s,s:I}", "agent", "test", "user",
						   req->user, "host", req->host, "connection_id",
						   (json_int_t) req->connection_id);
	else if (strcmp(req->op, "snapshot_cancel") == 0)
		result = json_pack("{s:s?}", "cancelled", req->args);
	else
	{
		int n = atomic_fetch_add(&snapshots, 1) + 1;

		event("snapshot %d", n);
		if (req->args != NULL && strcmp(req->args, "slow") == 0)
		{
			for (int i = 0; i < 600; i++)
			{
				if (bk_control_peer_gone(call))
				{
					event("cancelled %d", n);
					bk_error_set(err, BK_ERR_INTERRUPTED,
								 "snapshot %d cancelled", n);
					return NULL;
				}
				poll(NULL, 0, 100);
			}
		}
		if (req->args != NULL && strcmp(req->args, "big") == 0)
		{
			char *big = malloc(1100 * 1024);

			memset(big, 'x', 1100 * 1024 - 1);
			big[1100 * 1024 - 1] = '\0';
			result = json_pack("{s:s}", "big", big);
			free(big);
		}
		else
			result = json_pack("{s:i,s:s?}", "snapshot", n, "args", req->args);
	}
	text = json_dumps(result, JSON_COMPACT);
	json_decref(result);
	if (text == NULL)
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	return text;
}

static void
usage(void)
{
	fprintf(stderr, "usage: bk_test_control --socket PATH --allow-uid UID "
					"--mysql-port PORT [--mysql-host HOST] "
					"[--mysql-user USER]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *socket_path = NULL;
	uid_t allowed = (uid_t) -1;
	BkControl *control;
	BkError err;
	sigset_t stop_signals;
	int signo;

	for (int i = 1; i + 1 < argc; i += 2)
	{
		if (strcmp(argv[i], "--socket") == 0)
			socket_path = argv[i + 1];
		else if (strcmp(argv[i], "--allow-uid") == 0)
			allowed = (uid_t) strtoul(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--mysql-port") == 0)
			server_port = (unsigned int) strtoul(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--mysql-host") == 0)
			server_host = argv[i + 1];
		else if (strcmp(argv[i], "--mysql-user") == 0)
			server_user = argv[i + 1];
		else
			usage();
	}
	if (socket_path == NULL || allowed == (uid_t) -1 || server_port == 0 ||
		argc % 2 == 0)
		usage();

	/* Block the stop signals in every thread; main waits for them. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	if (mysql_library_init(0, NULL, NULL) != 0)
	{
		fprintf(stderr, "bk_test_control: mysql_library_init failed\n");
		return 1;
	}
	auth = bk_control_auth_new(connect_server, NULL, roles, 1, &err);
	control = auth == NULL
				  ? NULL
				  : bk_control_start(socket_path, &allowed, 1, authorize,
									 handler, log_line, NULL, &err);
	if (control == NULL)
	{
		fprintf(stderr, "bk_test_control: %s\n", err.message);
		return 1;
	}
	event("ready");
	sigwait(&stop_signals, &signo);
	bk_control_stop(control);
	bk_control_auth_free(auth);
	mysql_library_end();
	event("stopped");
	return 0;
}
