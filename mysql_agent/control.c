/*
 * control.c
 *		The agent's control socket: accepts the calls bk_udf.so makes from
 *		inside mariadbd, checks who is calling, and runs a handler per call.
 *
 * Design:
 *
 * - One accept thread polls the listening socket and a stop pipe.  For each
 *	 connection it checks the peer's uid (SO_PEERCRED: the kernel's word,
 *	 so only mariadbd's OS user, or whoever the configuration names, can
 *	 talk to us) and the number of connections not yet authorized, then
 *	 hands the connection to a detached thread.  Refusals get an error
 *	 reply at once, so the SQL caller sees why.
 * - The call thread reads one request line (at most 64 KiB, within 5 s: a
 *	 silent or flooding peer cannot hold a thread), validates it with
 *	 jansson, asks the authorizer whether the SQL account may call, and
 *	 only then takes one of the BK_CONTROL_MAX_CALLS slots: any SQL account
 *	 can make mariadbd connect to us, and were the slots taken before the
 *	 check, a few sessions looping on a refused bk_status() would keep the
 *	 DBA's calls out.  Then it runs the handler and writes one reply line.
 *	 A call that finds no slot free, or the authorizer busy, gets a "busy"
 *	 reply, which the UDF retries for a while.  Refusals are logged at most
 *	 once a minute with a count, so a flood cannot fill the journal (which
 *	 would then drop the agent's own errors).  The handler may
 *	 take hours (a snapshot); it polls bk_control_peer_gone(), which sees
 *	 the UDF's socket close on KILL QUERY, max_statement_time or disconnect
 *	 (POLLRDHUP), so the work is cancelled when nobody waits for it any
 *	 more.
 * - bk_control_stop() raises a flag that bk_control_peer_gone() also
 *	 reports, and waits for the call count to reach zero: detached threads
 *	 are tracked by that count instead of being joined.
 * - The socket file is made mode 0660 between bind() and listen(): nobody
 *	 can connect before listen(), so no connection sees a wider mode, and
 *	 the process-wide umask (shared with every other thread) is not touched.
 *
 * bk_control_auth_check() answers the other question, whether the SQL
 * account may call bk functions, from mysql.roles_mapping with a statement
 * prepared once on a connection kept open (the account names come from the
 * request, so nothing is pasted into SQL text).
 */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bk_util.h"

#define LISTEN_BACKLOG 64
/* Time a peer has to take our reply before we give up on it. */
#define REPLY_TIMEOUT_MS 5000

struct BkControl
{
	char *socket_path;
	int listen_fd;
	int stop_pipe[2]; /* written once by bk_control_stop */
	dev_t socket_dev; /* the socket file we created, so that stop */
	ino_t socket_ino; /* removes ours only, not a successor's */
	uid_t *allowed_uids;
	int n_allowed;
	BkControlAuthorize authorize;
	BkControlHandler handler;
	BkControlLog log;
	void *arg;
	pthread_t accept_thread;
	pthread_mutex_t lock;
	pthread_cond_t idle; /* signalled when active drops */
	int active;          /* call threads, under lock */
	int pending;         /* ... of them not yet authorized */
	int running;         /* ... of them authorized: at most MAX_CALLS */
	/* Refusals not logged yet, under lock: see note_refusal. */
	int64_t refusal_logged_ms; /* when a refusal line was last logged */
	int refused;               /* refusals since, not logged */
	char refused_last[BK_ERROR_MESSAGE_MAX + 256]; /* the last of them */
	atomic_bool stopping;
};

struct BkControlCall
{
	BkControl *control;
	int fd;
	uid_t peer_uid;
	pid_t peer_pid;
	bool pending; /* counted in control->pending */
	bool running; /* counted in control->running */
};

static const char *const known_ops[] = {"snapshot", "snapshot_cancel",
										"status"};

/* ---------------------------------------------------------------- helpers */

static void control_log(BkControl *control, const char *fmt, ...)
	BK_PRINTF(2, 3);

/* Log one line through the configured logger, or to stderr. */
static void
control_log(BkControl *control, const char *fmt, ...)
{
	char line[BK_ERROR_MESSAGE_MAX + 128];
	va_list args;

	va_start(args, fmt);
	vsnprintf(line, sizeof(line), fmt, args);
	va_end(args);
	if (control->log != NULL)
		control->log(control->arg, line);
	else
		fprintf(stderr, "bk-mysql-agent: control: %s\n", line);
}

/* Milliseconds on the monotonic clock. */
static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Write all of buf to the non-blocking socket fd within timeout_ms.
 * Returns false (errno set) on error or timeout.
 */
static bool
write_all(int fd, const char *buf, size_t len, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	while (len > 0)
	{
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		int64_t left;

		if (n > 0)
		{
			buf += n;
			len -= (size_t) n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return false;
		left = deadline - now_ms();
		if (left <= 0)
		{
			errno = ETIMEDOUT;
			return false;
		}
		if (poll(&pfd, 1, (int) left) < 0 && errno != EINTR)
			return false;
	}
	return true;
}

/*
 * Send {"ok":false,"error":message}, with "busy":true if busy (the UDF
 * then tries again); failures are only logged.  A message the reply
 * cannot carry (invalid UTF-8, no memory) is replaced by a fixed one: the
 * caller must get an answer, not a closed connection.
 */
static void
reply_error(BkControl *control, int fd, const char *message, bool busy)
{
	static const char fallback[] =
		"{\"ok\":false,\"error\":\"bk-mysql-agent could not build its error "
		"reply (see the agent's log)\"}\n";
	json_t *reply = json_pack("{s:b,s:s}", "ok", 0, "error", message);
	char *text;
	char *line = NULL;
	const char *out = fallback;

	if (reply != NULL && busy)
		json_object_set_new(reply, "busy", json_true());
	text = reply != NULL ? json_dumps(reply, JSON_COMPACT) : NULL;
	if (text != NULL && (line = malloc(strlen(text) + 2)) != NULL)
	{
		sprintf(line, "%s\n", text);
		out = line;
	}
	else
		control_log(control, "could not build the error reply \"%s\"", message);
	if (!write_all(fd, out, strlen(out), REPLY_TIMEOUT_MS))
		control_log(control, "could not send the error reply \"%s\": %s",
					message,
					errno == EPIPE ? "the caller has gone" : strerror(errno));
	free(line);
	free(text);
	json_decref(reply);
}

/*
 * A call was refused (who: the caller, message: why).  The first refusal
 * after a quiet minute is logged at once; the next ones are counted and
 * logged as one line a minute later (flush_refusals): a flood of refused
 * callers costs a line a minute, not one each.
 */
static void
note_refusal(BkControl *control, const char *who, const char *message)
{
	char line[sizeof(control->refused_last) + 128];
	int64_t now = now_ms();
	bool log_now;

	pthread_mutex_lock(&control->lock);
	log_now = control->refusal_logged_ms == 0 ||
			  now - control->refusal_logged_ms >= BK_CONTROL_REFUSAL_LOG_MS;
	if (log_now)
	{
		if (control->refused > 0)
			snprintf(line, sizeof(line),
					 "call from %s refused: %s (and %d more refused in the "
					 "last minute)",
					 who, message, control->refused);
		else
			snprintf(line, sizeof(line), "call from %s refused: %s", who,
					 message);
		control->refused = 0;
		control->refusal_logged_ms = now;
	}
	else
	{
		control->refused++;
		snprintf(control->refused_last, sizeof(control->refused_last),
				 "%s (%s)", who, message);
	}
	pthread_mutex_unlock(&control->lock);
	if (log_now)
		control_log(control, "%s", line);
}

/* Log the refusals note_refusal counted, once their minute is over. */
static void
flush_refusals(BkControl *control)
{
	char line[sizeof(control->refused_last) + 128];
	int64_t now = now_ms();
	bool log_now;

	pthread_mutex_lock(&control->lock);
	log_now = control->refused > 0 &&
			  now - control->refusal_logged_ms >= BK_CONTROL_REFUSAL_LOG_MS;
	if (log_now)
	{
		snprintf(line, sizeof(line),
				 "%d calls refused in the last minute, last from %s",
				 control->refused, control->refused_last);
		control->refused = 0;
		control->refusal_logged_ms = now;
	}
	pthread_mutex_unlock(&control->lock);
	if (log_now)
		control_log(control, "%s", line);
}

/*
 * Send {"ok":true,"result":<result>}.  The handler's text is parsed and
 * dumped again: the reply must be one line of valid JSON whatever the
 * handler produced.  Returns false with err set if it is not JSON or the
 * reply would be too large (the caller then sends an error instead).
 */
static bool
reply_result(BkControl *control, int fd, const char *result, BkError *err)
{
	json_error_t jerr;
	json_t *value = json_loads(result, JSON_DECODE_ANY, &jerr);
	json_t *reply;
	char *text;
	size_t len;

	if (value == NULL)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"internal error: the agent produced an invalid "
							"result (%s)",
							jerr.text);
	reply = json_pack("{s:b,s:o}", "ok", 1, "result", value);
	text = reply != NULL ? json_dumps(reply, JSON_COMPACT | JSON_ENCODE_ANY)
						 : NULL;
	json_decref(reply);
	if (text == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	len = strlen(text);
	if (len + 1 > BK_CONTROL_MAX_REPLY)
	{
		free(text);
		return bk_error_set(err, BK_ERR_INTERNAL,
							"the result is %zu bytes long, more than the "
							"%d bytes a reply may carry",
							len, BK_CONTROL_MAX_REPLY);
	}
	/* Room for the newline: json_dumps leaves none. */
	{
		char *line = realloc(text, len + 2);

		if (line == NULL)
		{
			free(text);
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		}
		text = line;
	}
	text[len] = '\n';
	text[len + 1] = '\0';
	if (!write_all(fd, text, len + 1, REPLY_TIMEOUT_MS))
		control_log(control, "could not send the reply: %s",
					errno == EPIPE ? "the caller has gone" : strerror(errno));
	free(text);
	return true;
}

/*
 * Read one request line (without its '\n') into buf, NUL-terminated.
 * Returns its length, or -1 with err set (timeout, too long, peer gone).
 */
static ssize_t
read_request(int fd, char *buf, size_t size, BkError *err)
{
	int64_t deadline = now_ms() + BK_CONTROL_REQUEST_TIMEOUT_MS;
	size_t len = 0;

	for (;;)
	{
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int64_t left;
		ssize_t n;
		char *newline;

		if (len == size - 1)
		{
			bk_error_set(err, BK_ERR_USAGE, "request is longer than %d bytes",
						 BK_CONTROL_MAX_REQUEST);
			return -1;
		}
		n = recv(fd, buf + len, size - 1 - len, 0);
		if (n > 0)
		{
			newline = memchr(buf + len, '\n', (size_t) n);
			len += (size_t) n;
			if (newline != NULL)
			{
				*newline = '\0';
				return newline - buf;
			}
			continue;
		}
		if (n == 0)
		{
			bk_error_set(err, BK_ERR_IO,
						 "peer closed the connection before a complete "
						 "request");
			return -1;
		}
		if (errno != EAGAIN && errno != EINTR)
		{
			bk_error_set(err, BK_ERR_IO, "could not read the request: %s",
						 strerror(errno));
			return -1;
		}
		left = deadline - now_ms();
		if (left <= 0)
		{
			bk_error_set(err, BK_ERR_TIMEOUT,
						 "no complete request within %d ms",
						 BK_CONTROL_REQUEST_TIMEOUT_MS);
			return -1;
		}
		if (poll(&pfd, 1, (int) left) < 0 && errno != EINTR)
		{
			bk_error_set(err, BK_ERR_IO, "poll failed: %s", strerror(errno));
			return -1;
		}
	}
}

/* String member name of obj, or NULL with err set. */
static const char *
member_string(json_t *obj, const char *name, BkError *err)
{
	json_t *value = json_object_get(obj, name);

	if (!json_is_string(value))
	{
		bk_error_set(err, BK_ERR_FORMAT,
					 "malformed request: \"%s\" must be a string", name);
		return NULL;
	}
	return json_string_value(value);
}

/*
 * Validate the parsed request and fill req (pointing into root).  Returns
 * false with err set if a field is missing, of the wrong type or unknown.
 */
static bool
parse_request(json_t *root, BkControlRequest *req, BkError *err)
{
	json_t *version;
	json_t *connection_id;
	json_t *args;
	bool known = false;

	if (!json_is_object(root))
		return bk_error_set(err, BK_ERR_FORMAT,
							"malformed request: not a JSON object");
	version = json_object_get(root, "version");
	if (!json_is_integer(version))
		return bk_error_set(err, BK_ERR_FORMAT,
							"malformed request: \"version\" must be an "
							"integer");
	if (json_integer_value(version) != 1)
		return bk_error_set(err, BK_ERR_FORMAT,
							"unsupported protocol version %lld (this agent "
							"speaks version 1): install the bk_udf.so that "
							"comes with this agent",
							(long long) json_integer_value(version));
	if ((req->op = member_string(root, "op", err)) == NULL ||
		(req->user = member_string(root, "user", err)) == NULL ||
		(req->host = member_string(root, "host", err)) == NULL)
		return false;
	for (size_t i = 0; i < sizeof(known_ops) / sizeof(known_ops[0]); i++)
		known = known || strcmp(req->op, known_ops[i]) == 0;
	if (!known)
		return bk_error_set(err, BK_ERR_USAGE,
							"unknown operation \"%s\": this agent may be "
							"older than bk_udf.so",
							req->op);
	connection_id = json_object_get(root, "connection_id");
	if (!json_is_integer(connection_id) ||
		json_integer_value(connection_id) < 0)
		return bk_error_set(err, BK_ERR_FORMAT,
							"malformed request: \"connection_id\" must be a "
							"non-negative integer");
	req->connection_id = (uint64_t) json_integer_value(connection_id);
	args = json_object_get(root, "args");
	if (args == NULL || json_is_null(args))
		req->args = NULL;
	else if (json_is_string(args))
		req->args = json_string_value(args);
	else
		return bk_error_set(err, BK_ERR_FORMAT,
							"malformed request: \"args\" must be a string or "
							"null");
	return true;
}

/* The message the SQL caller sees: the error and its hint, if any. */
static void
error_text(const BkError *err, char *buf, size_t size)
{
	if (err->hint[0] != '\0')
		snprintf(buf, size, "%s; %s", err->message, err->hint);
	else
		snprintf(buf, size, "%s", err->message);
}

/* ---------------------------------------------------------------- calls */

/* 'user'@'host' of req for a log line, each cut between characters. */
static void
caller_name(const BkControlRequest *req, char *buf, size_t size)
{
	char user[300];
	char host[300];

	bk_text_excerpt(user, sizeof(user), req->user, 64);
	bk_text_excerpt(host, sizeof(host), req->host, 64);
	snprintf(buf, size, "'%s'@'%s'", user, host);
}

/*
 * Authorize the call, then take a slot for it; false with err set
 * (BK_ERR_TIMEOUT: busy) if either fails.  The call stops counting as
 * pending either way.
 */
static bool
admit(BkControlCall *call, const BkControlRequest *req, BkError *err)
{
	BkControl *control = call->control;
	bool allowed = control->authorize == NULL ||
				   control->authorize(control->arg, req, err);

	pthread_mutex_lock(&control->lock);
	control->pending--;
	call->pending = false;
	if (allowed && control->running >= BK_CONTROL_MAX_CALLS)
	{
		bk_error_set(err, BK_ERR_TIMEOUT,
					 "too many bk function calls in progress (%d); try "
					 "again later",
					 BK_CONTROL_MAX_CALLS);
		allowed = false;
	}
	else if (allowed)
	{
		control->running++;
		call->running = true;
	}
	pthread_mutex_unlock(&control->lock);
	return allowed;
}

/* Read, validate, handle and answer one call. */
static void
serve_call(BkControlCall *call)
{
	BkControl *control = call->control;
	char *buf = malloc(BK_CONTROL_MAX_REQUEST + 1);
	char message[BK_ERROR_MESSAGE_MAX + BK_ERROR_HINT_MAX + 2];
	BkControlRequest req;
	json_error_t jerr;
	json_t *root = NULL;
	char *result = NULL;
	ssize_t len;
	BkError err;

	bk_error_clear(&err);
	if (buf == NULL)
	{
		reply_error(control, call->fd, "bk-mysql-agent: out of memory", false);
		return;
	}
	len = read_request(call->fd, buf, BK_CONTROL_MAX_REQUEST + 1, &err);
	if (len < 0)
	{
		control_log(control, "call from pid %d: %s", (int) call->peer_pid,
					err.message);
		reply_error(control, call->fd, err.message, false);
		goto done;
	}
	root = json_loadb(buf, (size_t) len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
	{
		bk_error_set(&err, BK_ERR_FORMAT, "malformed request: %s", jerr.text);
		control_log(control, "call from pid %d: %s", (int) call->peer_pid,
					err.message);
		reply_error(control, call->fd, err.message, false);
		goto done;
	}
	if (!parse_request(root, &req, &err))
	{
		control_log(control, "call from pid %d: %s", (int) call->peer_pid,
					err.message);
		reply_error(control, call->fd, err.message, false);
		goto done;
	}
	if (!admit(call, &req, &err))
	{
		char who[BK_ERROR_MESSAGE_MAX];

		caller_name(&req, who, sizeof(who));
		error_text(&err, message, sizeof(message));
		note_refusal(control, who, message);
		reply_error(control, call->fd, message, err.code == BK_ERR_TIMEOUT);
		goto done;
	}
	/*
	 * The caller may have given up while the call waited to be read or
	 * admitted (the agent stopped or slow, the role check): KILL QUERY,
	 * max_statement_time or the UDF's own time limit, after which it told
	 * its client that the call is abandoned.  It is not run then.  A
	 * request read whole stays readable after the caller's close, so only
	 * the socket's state tells.
	 */
	if (bk_control_peer_gone(call))
	{
		char who[BK_ERROR_MESSAGE_MAX];

		if (atomic_load(&control->stopping))
			reply_error(control, call->fd,
						"bk-mysql-agent is stopping; the call was not run",
						false);
		else
		{
			caller_name(&req, who, sizeof(who));
			control_log(control,
						"%s call from %s not run: its caller went away before "
						"it started (KILL QUERY, max_statement_time, or the "
						"function's own time limit)",
						req.op, who);
		}
		goto done;
	}

	result = control->handler(control->arg, call, &req, &err);
	if (result != NULL && reply_result(control, call->fd, result, &err))
		goto done;
	if (err.code == BK_OK)
		bk_error_set(&err, BK_ERR_INTERNAL,
					 "internal error: the %s handler failed without saying "
					 "why",
					 req.op);
	error_text(&err, message, sizeof(message));
	reply_error(control, call->fd, message, false);

done:
	free(result);
	json_decref(root);
	free(buf);
}

/* Thread body of one call; frees the call and releases its slot. */
static void *
call_thread(void *p)
{
	BkControlCall *call = p;
	BkControl *control = call->control;

	serve_call(call);
	close(call->fd);
	pthread_mutex_lock(&control->lock);
	if (call->pending)
		control->pending--;
	if (call->running)
		control->running--;
	free(call);
	control->active--;
	pthread_cond_broadcast(&control->idle);
	pthread_mutex_unlock(&control->lock);
	return NULL;
}

bool
bk_control_peer_gone(BkControlCall *call)
{
	struct pollfd pfd = {.fd = call->fd, .events = POLLRDHUP};

	if (atomic_load(&call->control->stopping))
		return true;
	if (poll(&pfd, 1, 0) < 0)
		return false;
	return (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

void
bk_control_keepalive(BkControlCall *call)
{
	ssize_t rc = send(call->fd, " ", 1, MSG_NOSIGNAL | MSG_DONTWAIT);

	(void) rc; /* a full buffer: the caller has a keepalive unread anyway */
}

/* Is uid one of the allowed peers? */
static bool
uid_allowed(const BkControl *control, uid_t uid)
{
	for (int i = 0; i < control->n_allowed; i++)
		if (control->allowed_uids[i] == uid)
			return true;
	return false;
}

/* Check one accepted connection and start its thread, or refuse it. */
static void
dispatch(BkControl *control, int fd)
{
	struct ucred cred;
	socklen_t cred_len = sizeof(cred);
	BkControlCall *call;
	pthread_attr_t attr;
	pthread_t thread;
	char message[128];
	char who[32];
	int rc;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0)
	{
		control_log(control, "SO_PEERCRED failed: %s; connection closed",
					strerror(errno));
		close(fd);
		return;
	}
	if (!uid_allowed(control, cred.uid))
	{
		snprintf(message, sizeof(message), "peer uid %u is not allowed",
				 (unsigned) cred.uid);
		control_log(control,
					"%s (pid %d); the allowed uids are set by the agent's "
					"configuration",
					message, (int) cred.pid);
		reply_error(control, fd, message, false);
		close(fd);
		return;
	}

	/* Not yet authorized: bounded apart from the authorized calls. */
	pthread_mutex_lock(&control->lock);
	if (control->pending >= BK_CONTROL_MAX_PENDING)
	{
		pthread_mutex_unlock(&control->lock);
		snprintf(message, sizeof(message),
				 "too many bk function calls waiting for authorization "
				 "(%d); try again later",
				 BK_CONTROL_MAX_PENDING);
		snprintf(who, sizeof(who), "pid %d", (int) cred.pid);
		note_refusal(control, who, message);
		reply_error(control, fd, message, true);
		close(fd);
		return;
	}
	control->active++;
	control->pending++;
	pthread_mutex_unlock(&control->lock);

	call = malloc(sizeof(BkControlCall));
	rc = ENOMEM;
	if (call != NULL)
	{
		call->control = control;
		call->fd = fd;
		call->peer_uid = cred.uid;
		call->peer_pid = cred.pid;
		call->pending = true;
		call->running = false;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = pthread_create(&thread, &attr, call_thread, call);
		pthread_attr_destroy(&attr);
		if (rc == 0)
			return;
		free(call);
	}
	control_log(control, "could not start a call thread: %s", strerror(rc));
	reply_error(control, fd, "bk-mysql-agent could not start a thread", false);
	close(fd);
	pthread_mutex_lock(&control->lock);
	control->active--;
	control->pending--;
	pthread_cond_broadcast(&control->idle);
	pthread_mutex_unlock(&control->lock);
}

/* The accept loop: until the stop pipe becomes readable. */
static void *
accept_thread(void *p)
{
	BkControl *control = p;

	for (;;)
	{
		struct pollfd pfd[2] = {
			{.fd = control->listen_fd, .events = POLLIN},
			{.fd = control->stop_pipe[0], .events = POLLIN}};
		int fd;

		/* A second's timeout: counted refusals are logged on time. */
		int ready = poll(pfd, 2, 1000);

		flush_refusals(control);
		if (ready < 0)
		{
			if (errno == EINTR)
				continue;
			control_log(control, "poll failed: %s; no more calls accepted",
						strerror(errno));
			return NULL;
		}
		if (pfd[1].revents != 0 || atomic_load(&control->stopping))
			return NULL;
		if ((pfd[0].revents & POLLIN) == 0)
			continue;
		fd = accept4(control->listen_fd, NULL, NULL,
					 SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
		{
			/* EMFILE and the like: wait a little rather than spin. */
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			{
				control_log(control, "accept failed: %s", strerror(errno));
				poll(NULL, 0, 100);
			}
			continue;
		}
		dispatch(control, fd);
	}
}

/* ---------------------------------------------------------------- socket */

/*
 * Remove a stale socket file at path (one nobody listens on).  True if the
 * path is now free; false with err set if something live or foreign is
 * there.
 */
static bool
clear_stale_socket(const char *path, const struct sockaddr_un *addr,
				   BkError *err)
{
	struct stat st;
	int fd;

	if (lstat(path, &st) != 0)
	{
		if (errno == ENOENT)
			return true;
		return bk_error_set(err, BK_ERR_IO, "could not stat \"%s\": %s", path,
							strerror(errno));
	}
	if (!S_ISSOCK(st.st_mode))
		return bk_error_set(err, BK_ERR_CONFIG,
							"\"%s\" exists and is not a socket: choose "
							"another control_socket or remove it",
							path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return bk_error_set(err, BK_ERR_IO, "could not create a socket: %s",
							strerror(errno));
	if (connect(fd, (const struct sockaddr *) addr, sizeof(*addr)) == 0)
	{
		close(fd);
		return bk_error_set(err, BK_ERR_CONFLICT,
							"another bk-mysql-agent listens on %s", path);
	}
	if (errno != ECONNREFUSED)
	{
		int saved = errno;

		close(fd);
		return bk_error_set(err, BK_ERR_IO, "could not probe \"%s\": %s", path,
							strerror(saved));
	}
	close(fd);
	if (unlink(path) != 0 && errno != ENOENT)
		return bk_error_set(err, BK_ERR_IO,
							"could not remove the stale socket \"%s\": %s",
							path, strerror(errno));
	return true;
}

/* Create, bind (mode 0660) and listen on the socket; false with err set. */
static bool
open_listener(BkControl *control, BkError *err)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	const char *path = control->socket_path;
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path))
		return bk_error_set(err, BK_ERR_CONFIG,
							"control socket path \"%s\" is too long (at most "
							"%zu bytes)",
							path, sizeof(addr.sun_path) - 1);
	strcpy(addr.sun_path, path);
	if (!clear_stale_socket(path, &addr, err))
		return false;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return bk_error_set(err, BK_ERR_IO, "could not create a socket: %s",
							strerror(errno));
	if (bind(fd, (struct sockaddr *) &addr, sizeof(addr)) != 0)
	{
		int saved = errno;

		close(fd);
		bk_error_set(err, BK_ERR_IO, "could not bind the control socket %s: %s",
					 path, strerror(saved));
		if (saved == ENOENT)
			bk_error_hint(err, "create its directory first (owned by the "
							   "agent, group of the mariadbd user)");
		return false;
	}
	/* Before listen(): nobody can connect through a wider mode meanwhile. */
	if (chmod(path, 0660) != 0 || stat(path, &st) != 0 ||
		listen(fd, LISTEN_BACKLOG) != 0)
	{
		int saved = errno;

		close(fd);
		unlink(path);
		return bk_error_set(err, BK_ERR_IO,
							"could not set up the control socket %s: %s", path,
							strerror(saved));
	}
	control->listen_fd = fd;
	control->socket_dev = st.st_dev;
	control->socket_ino = st.st_ino;
	return true;
}

BkControl *
bk_control_start(const char *socket_path, const uid_t *allowed_uids,
				 int n_allowed, BkControlAuthorize authorize,
				 BkControlHandler handler, BkControlLog log, void *arg,
				 BkError *err)
{
	BkControl *control;
	int rc;

	if (n_allowed < 0 || (n_allowed > 0 && allowed_uids == NULL) ||
		handler == NULL || socket_path == NULL)
	{
		bk_error_set(err, BK_ERR_INTERNAL, "bk_control_start: bad arguments");
		return NULL;
	}
	control = calloc(1, sizeof(BkControl));
	if (control == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	control->listen_fd = -1;
	control->stop_pipe[0] = control->stop_pipe[1] = -1;
	control->socket_path = strdup(socket_path);
	control->allowed_uids = malloc(sizeof(uid_t) * (size_t) (n_allowed + 1));
	if (control->socket_path == NULL || control->allowed_uids == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if (n_allowed > 0)
		memcpy(control->allowed_uids, allowed_uids,
			   sizeof(uid_t) * (size_t) n_allowed);
	control->n_allowed = n_allowed;
	control->authorize = authorize;
	control->handler = handler;
	control->log = log;
	control->arg = arg;
	atomic_init(&control->stopping, false);
	pthread_mutex_init(&control->lock, NULL);
	pthread_cond_init(&control->idle, NULL);

	if (pipe2(control->stop_pipe, O_CLOEXEC) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not create a pipe: %s",
					 strerror(errno));
		goto fail_sync;
	}
	if (!open_listener(control, err))
		goto fail_sync;
	rc = pthread_create(&control->accept_thread, NULL, accept_thread, control);
	if (rc != 0)
	{
		bk_error_set(err, BK_ERR_INTERNAL,
					 "could not start the control thread: %s", strerror(rc));
		close(control->listen_fd);
		unlink(control->socket_path);
		goto fail_sync;
	}
	return control;

fail_sync:
	pthread_cond_destroy(&control->idle);
	pthread_mutex_destroy(&control->lock);
fail:
	if (control->stop_pipe[0] >= 0)
		close(control->stop_pipe[0]);
	if (control->stop_pipe[1] >= 0)
		close(control->stop_pipe[1]);
	free(control->allowed_uids);
	free(control->socket_path);
	free(control);
	return NULL;
}

void
bk_control_stop(BkControl *control)
{
	struct stat st;
	ssize_t written;

	if (control == NULL)
		return;
	atomic_store(&control->stopping, true);
	do
		written = write(control->stop_pipe[1], "x", 1);
	while (written < 0 && errno == EINTR);
	pthread_join(control->accept_thread, NULL);
	close(control->listen_fd);
	/* Only our own file: a new agent may already have replaced it. */
	if (stat(control->socket_path, &st) == 0 &&
		st.st_dev == control->socket_dev && st.st_ino == control->socket_ino)
		unlink(control->socket_path);

	pthread_mutex_lock(&control->lock);
	while (control->active > 0)
		pthread_cond_wait(&control->idle, &control->lock);
	pthread_mutex_unlock(&control->lock);

	pthread_cond_destroy(&control->idle);
	pthread_mutex_destroy(&control->lock);
	close(control->stop_pipe[0]);
	close(control->stop_pipe[1]);
	free(control->allowed_uids);
	free(control->socket_path);
	free(control);
}

/* ---------------------------------------------------------------- authz */

/* Longest User/Role value: char(128) in utf8mb3. */
#define NAME_MAX_BYTES (128 * 3 + 1)
/* Levels of roles granted to roles that are followed. */
#define ROLE_DEPTH 4
/* Roles looked at in all, against grant cycles and huge role graphs. */
#define ROLES_MAX 256

/*
 * Is name one of roles?  See control.h.  An account (host set) matches
 * "name@host" only: an account may share a role's name (MariaDB keeps a
 * role as name@''), and whoever may CREATE USER could otherwise make
 * 'bk_admin'@'%' and pass for the role without being granted it.  A role
 * (host NULL) matches a bare entry.
 */
static bool
name_listed(const char *name, const char *host, const char *const *roles,
			int n_roles)
{
	size_t name_len = strlen(name);

	for (int i = 0; i < n_roles; i++)
	{
		const char *entry = roles[i];
		const char *at = strchr(entry, '@');

		if (at == NULL && host == NULL && strcmp(entry, name) == 0)
			return true;
		if (at != NULL && host != NULL && (size_t) (at - entry) == name_len &&
			strncmp(entry, name, name_len) == 0 && strcmp(at + 1, host) == 0)
			return true;
	}
	return false;
}

/* Add a copy of name to the list unless it is there; false when full. */
static bool
add_role(char **list, int *n, const char *name)
{
	for (int i = 0; i < *n; i++)
		if (strcmp(list[i], name) == 0)
			return true;
	if (*n >= ROLES_MAX)
		return false;
	list[*n] = strdup(name);
	if (list[*n] == NULL)
		return false;
	(*n)++;
	return true;
}

/*
 * Append to roles_out the roles granted to grantee@host (a role has Host
 * ''), with the prepared statement stmt.  False with err set on failure.
 */
static bool
granted_roles(MYSQL_STMT *stmt, const char *grantee, const char *host,
			  char **found, int *n_found, BkError *err)
{
	MYSQL_BIND param[2];
	MYSQL_BIND column[1];
	char role[NAME_MAX_BYTES];
	unsigned long grantee_len = strlen(grantee);
	unsigned long host_len = strlen(host);
	unsigned long role_len = 0;
	my_bool role_null = 0;
	int rc;

	memset(param, 0, sizeof(param));
	param[0].buffer_type = MYSQL_TYPE_STRING;
	param[0].buffer = (void *) grantee;
	param[0].buffer_length = grantee_len;
	param[0].length = &grantee_len;
	param[1].buffer_type = MYSQL_TYPE_STRING;
	param[1].buffer = (void *) host;
	param[1].buffer_length = host_len;
	param[1].length = &host_len;
	memset(column, 0, sizeof(column));
	column[0].buffer_type = MYSQL_TYPE_STRING;
	column[0].buffer = role;
	column[0].buffer_length = sizeof(role);
	column[0].length = &role_len;
	column[0].is_null = &role_null;

	if (mysql_stmt_bind_param(stmt, param) != 0 ||
		mysql_stmt_execute(stmt) != 0 ||
		mysql_stmt_bind_result(stmt, column) != 0 ||
		mysql_stmt_store_result(stmt) != 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not read mysql.roles_mapping: %s",
							mysql_stmt_error(stmt));
	while ((rc = mysql_stmt_fetch(stmt)) == 0 || rc == MYSQL_DATA_TRUNCATED)
	{
		if (role_null || rc == MYSQL_DATA_TRUNCATED)
			continue;
		role[role_len < sizeof(role) ? role_len : sizeof(role) - 1] = '\0';
		if (!add_role(found, n_found, role))
			break; /* more roles than we follow: the rest is not searched */
	}
	mysql_stmt_free_result(stmt);
	if (rc == 1)
		return bk_error_set(err, BK_ERR_IO,
							"could not read mysql.roles_mapping: %s",
							mysql_stmt_error(stmt));
	return true;
}

/* The question asked of the server, prepared once per connection. */
static const char roles_query[] =
	"SELECT Role FROM mysql.roles_mapping WHERE User = ? AND Host = ?";

struct BkControlAuth
{
	BkControlConnect connect;
	void *arg;
	char **roles;
	int n_roles;
	pthread_mutex_t lock; /* one check at a time on conn */
	MYSQL *conn;          /* NULL until needed, or after a failure */
	MYSQL_STMT *stmt;     /* roles_query, prepared on conn */
};

BkControlAuth *
bk_control_auth_new(BkControlConnect connect, void *arg,
					const char *const *roles, int n_roles, BkError *err)
{
	BkControlAuth *auth = calloc(1, sizeof(BkControlAuth));

	if (auth == NULL ||
		(auth->roles = calloc((size_t) n_roles + 1, sizeof(char *))) == NULL)
	{
		free(auth);
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	auth->connect = connect;
	auth->arg = arg;
	for (int i = 0; i < n_roles; i++)
	{
		if ((auth->roles[i] = strdup(roles[i])) == NULL)
		{
			auth->n_roles = i;
			bk_control_auth_free(auth);
			bk_error_set(err, BK_ERR_NOMEM, "out of memory");
			return NULL;
		}
	}
	auth->n_roles = n_roles;
	pthread_mutex_init(&auth->lock, NULL);
	return auth;
}

/* Close the connection (lost or failed): the next check opens another. */
static void
auth_disconnect(BkControlAuth *auth)
{
	if (auth->stmt != NULL)
		mysql_stmt_close(auth->stmt);
	if (auth->conn != NULL)
		mysql_close(auth->conn);
	auth->stmt = NULL;
	auth->conn = NULL;
}

void
bk_control_auth_free(BkControlAuth *auth)
{
	if (auth == NULL)
		return;
	auth_disconnect(auth);
	for (int i = 0; i < auth->n_roles; i++)
		free(auth->roles[i]);
	free(auth->roles);
	pthread_mutex_destroy(&auth->lock);
	free(auth);
}

/* Connect and prepare roles_query, unless done; false with err set. */
static bool
auth_connect(BkControlAuth *auth, BkError *err)
{
	if (auth->stmt != NULL)
		return true;
	auth->conn = auth->connect(auth->arg, err);
	if (auth->conn == NULL)
		return false;
	auth->stmt = mysql_stmt_init(auth->conn);
	if (auth->stmt == NULL)
	{
		auth_disconnect(auth);
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	if (mysql_stmt_prepare(auth->stmt, roles_query, sizeof(roles_query) - 1) !=
		0)
	{
		bk_error_set(err, BK_ERR_IO, "could not read mysql.roles_mapping: %s",
					 mysql_stmt_error(auth->stmt));
		auth_disconnect(auth);
		return false;
	}
	return true;
}

/* The role check proper, with the prepared statement; see control.h. */
static bool
authorize_stmt(MYSQL_STMT *stmt, const char *user, const char *host,
			   const char *const *roles, int n_roles, BkError *err)
{
	char *found[ROLES_MAX];
	int n_found = 0;
	int level_start = 0;
	bool allowed = false;
	bool ok;

	/* Breadth first: the account's own roles, then roles of those roles. */
	ok = granted_roles(stmt, user, host, found, &n_found, err);
	for (int depth = 0; ok && !allowed && depth < ROLE_DEPTH; depth++)
	{
		int level_end = n_found;

		for (int i = level_start; i < level_end; i++)
			if (name_listed(found[i], NULL, roles, n_roles))
				allowed = true;
		for (int i = level_start;
			 ok && !allowed && i < level_end && depth + 1 < ROLE_DEPTH; i++)
			ok = granted_roles(stmt, found[i], "", found, &n_found, err);
		level_start = level_end;
	}
	for (int i = 0; i < n_found; i++)
		free(found[i]);
	if (!ok)
		return false;
	if (allowed)
		return true;
	bk_error_set(err, BK_ERR_USAGE,
				 "user '%s'@'%s' is not allowed to call bk functions: grant "
				 "it the role %s (GRANT %s TO '%s'@'%s')",
				 user, host, n_roles > 0 ? roles[0] : "bk_admin",
				 n_roles > 0 ? roles[0] : "bk_admin", user, host);
	return false;
}

bool
bk_control_auth_check(BkControlAuth *auth, const char *user, const char *host,
					  BkError *err)
{
	const char *const *roles = (const char *const *) auth->roles;
	struct timespec deadline;
	bool allowed = false;
	int rc;

	if (user[0] == '\0')
		return bk_error_set(err, BK_ERR_USAGE,
							"anonymous accounts may not call bk functions");
	if (name_listed(user, host, roles, auth->n_roles))
		return true;

	/* Bounded: a hung server must not pile up call threads behind it. */
	deadline = bk_wall_deadline(BK_CONTROL_AUTH_WAIT_MS);
	rc = pthread_mutex_timedlock(&auth->lock, &deadline);
	if (rc == ETIMEDOUT)
		return bk_error_set(err, BK_ERR_TIMEOUT,
							"bk-mysql-agent is busy checking other calls "
							"(waited %d ms); try again later",
							BK_CONTROL_AUTH_WAIT_MS);
	if (rc != 0)
		return bk_error_set(err, BK_ERR_INTERNAL, "pthread_mutex_timedlock: %s",
							strerror(rc));
	/*
	 * A failure may be a connection the server closed (a restart,
	 * wait_timeout): the statement is tried once more on a new one.
	 */
	for (int attempt = 0; attempt < 2; attempt++)
	{
		if (!auth_connect(auth, err))
			break;
		allowed =
			authorize_stmt(auth->stmt, user, host, roles, auth->n_roles, err);
		if (allowed || err->code != BK_ERR_IO)
			break;
		auth_disconnect(auth);
	}
	pthread_mutex_unlock(&auth->lock);
	return allowed;
}
