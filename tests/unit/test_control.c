/*
 * test_control.c
 *		bk-mysql-agent's control socket (mysql_agent/control.c): a request's
 *		round trip to the handler and back, handler errors, malformed and
 *		oversize requests, a peer that goes away while its call runs, a peer
 *		whose uid is not allowed, stale and live socket files, a stop
 *		with a call in progress, and a flood of refused callers, which
 *		neither keeps an authorized caller out nor floods the log.
 */
#include "testutil.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "control.h"

static char *dir;
static char socket_path[256];
static BkControl *control;

/* What the handler saw, shared with the test thread. */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t seen_cond = PTHREAD_COND_INITIALIZER;
static bool waiting;        /* a "wait" call has started */
static bool saw_peer_gone;  /* ... and then saw bk_control_peer_gone() */
static char last_log[1024]; /* the last log line */
static int handled;         /* handler calls so far */

/*
 * The log callback; arg, when not NULL, counts the lines of one agent.
 * Agents are counted apart: a call thread of an earlier test's agent may
 * log late on a loaded machine (a probe's connection closed, say).
 */
static void
test_log(void *arg, const char *message)
{
	pthread_mutex_lock(&seen_lock);
	snprintf(last_log, sizeof(last_log), "%s", message);
	if (arg != NULL)
		(*(int *) arg)++;
	pthread_mutex_unlock(&seen_lock);
}

/*
 * The log callback of an agent whose own lines a test checks: arg is its
 * LogCapture.  The shared last_log is not enough there: a call thread of
 * an earlier test's agent may log late ("could not send the reply") after
 * the line looked for, and replace it.
 */
typedef struct LogCapture
{
	char last[1024];
} LogCapture;

static void
capture_log(void *arg, const char *message)
{
	LogCapture *capture = arg;

	pthread_mutex_lock(&seen_lock);
	snprintf(capture->last, sizeof(capture->last), "%s", message);
	pthread_mutex_unlock(&seen_lock);
}

/*
 * status: echo the request as the result.  snapshot "wait": wait (5 s at
 * most) until the peer is gone.  snapshot_cancel: an error with a hint.
 */
static char *
test_handler(void *arg, BkControlCall *call, const BkControlRequest *req,
			 BkError *err)
{
	pthread_mutex_lock(&seen_lock);
	handled++;
	pthread_mutex_unlock(&seen_lock);
	if (strcmp(req->op, "snapshot_cancel") == 0 && req->args != NULL &&
		strcmp(req->args, "bad-utf8") == 0)
		return bk_error_set(err, BK_ERR_INTERNAL, "a stray byte \xff"), NULL;
	if (strcmp(req->op, "snapshot_cancel") == 0)
	{
		bk_error_set(err, BK_ERR_NOT_FOUND, "no snapshot %s", req->args);
		bk_error_hint(err, "see bk_status()");
		return NULL;
	}
	if (strcmp(req->op, "snapshot") == 0 && req->args != NULL &&
		strcmp(req->args, "wait") == 0)
	{
		bool gone = false;

		pthread_mutex_lock(&seen_lock);
		waiting = true;
		pthread_cond_broadcast(&seen_cond);
		pthread_mutex_unlock(&seen_lock);
		for (int i = 0; i < 500 && !gone; i++)
		{
			gone = bk_control_peer_gone(call);
			if (!gone)
				poll(NULL, 0, 10);
		}
		pthread_mutex_lock(&seen_lock);
		saw_peer_gone = gone;
		pthread_cond_broadcast(&seen_cond);
		pthread_mutex_unlock(&seen_lock);
		return strdup("{}");
	}
	{
		json_t *echo =
			json_pack("{s:s,s:s,s:s,s:I,s:s?}", "op", req->op, "user",
					  req->user, "host", req->host, "connection_id",
					  (json_int_t) req->connection_id, "args", req->args);
		char *text = json_dumps(echo, JSON_COMPACT);

		json_decref(echo);
		return text;
	}
}

static int
setup(void **state)
{
	uid_t me = getuid();
	BkError err;

	dir = test_mkdtemp();
	snprintf(socket_path, sizeof(socket_path), "%s/agent.sock", dir);
	control = bk_control_start(socket_path, &me, 1, NULL, test_handler,
							   test_log, NULL, &err);
	if (control == NULL)
		fail_msg("bk_control_start: %s", err.message);
	return 0;
}

static int
teardown(void **state)
{
	bk_control_stop(control);
	test_rmdir(dir);
	return 0;
}

/* A connected client socket to path. */
static int
connect_to(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *) &addr, sizeof(addr)) != 0)
		fail_msg("connect %s: %s", path, strerror(errno));
	return fd;
}

/* Read until EOF; returns the malloc'd text. */
static char *
read_all(int fd)
{
	size_t cap = 4096;
	size_t len = 0;
	char *buf = malloc(cap);
	ssize_t n;

	while ((n = read(fd, buf + len, cap - len - 1)) > 0)
	{
		len += (size_t) n;
		if (len + 1 == cap)
			buf = realloc(buf, cap *= 2);
	}
	buf[len] = '\0';
	return buf;
}

/*
 * Send data on a fresh connection to path and return the whole answer.
 * The agent answers an oversized request and closes without reading the
 * rest, so the send may meet a closed socket (EPIPE, not SIGPIPE): the
 * answer is read all the same.
 */
static char *
exchange(const char *path, const char *data, size_t len)
{
	int fd = connect_to(path);
	size_t sent = 0;
	char *reply;

	while (sent < len)
	{
		ssize_t n = send(fd, data + sent, len - sent, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EPIPE)
			break;
		assert_true(n > 0);
		sent += (size_t) n;
	}
	reply = read_all(fd);
	close(fd);
	return reply;
}

/* Parse a reply line; asserts it is one line of JSON. */
static json_t *
parse_reply(const char *reply)
{
	size_t len = strlen(reply);
	json_error_t jerr;
	json_t *root;

	if (len == 0 || reply[len - 1] != '\n' || memchr(reply, '\n', len - 1))
		fail_msg("reply is not one line: \"%s\"", reply);
	root = json_loads(reply, 0, &jerr);
	if (root == NULL)
		fail_msg("reply is not JSON (%s): \"%s\"", jerr.text, reply);
	return root;
}

/* Assert an error reply whose message contains needle. */
static void
assert_error_reply(const char *reply, const char *needle)
{
	json_t *root = parse_reply(reply);
	const char *message;

	assert_true(json_is_false(json_object_get(root, "ok")));
	message = json_string_value(json_object_get(root, "error"));
	assert_non_null(message);
	if (strstr(message, needle) == NULL)
		fail_msg("error \"%s\" does not contain \"%s\"", message, needle);
	json_decref(root);
}

static void
test_round_trip(void **state)
{
	const char *request =
		"{\"version\":1,\"op\":\"status\",\"user\":\"al\\\"ice\","
		"\"host\":\"%\",\"connection_id\":42,\"args\":\"a=1,b=\\u00e9\"}\n";
	char *reply = exchange(socket_path, request, strlen(request));
	json_t *root = parse_reply(reply);
	json_t *result = json_object_get(root, "result");

	assert_true(json_is_true(json_object_get(root, "ok")));
	assert_string_equal(json_string_value(json_object_get(result, "op")),
						"status");
	assert_string_equal(json_string_value(json_object_get(result, "user")),
						"al\"ice");
	assert_string_equal(json_string_value(json_object_get(result, "host")),
						"%");
	assert_int_equal(
		json_integer_value(json_object_get(result, "connection_id")), 42);
	assert_string_equal(json_string_value(json_object_get(result, "args")),
						"a=1,b=\xc3\xa9");
	json_decref(root);
	free(reply);

	/* No "args" member, or null: the handler sees NULL. */
	request = "{\"version\":1,\"op\":\"status\",\"user\":\"u\",\"host\":\"h\","
			  "\"connection_id\":1,\"args\":null}\n";
	reply = exchange(socket_path, request, strlen(request));
	root = parse_reply(reply);
	assert_true(
		json_is_null(json_object_get(json_object_get(root, "result"), "args")));
	json_decref(root);
	free(reply);
}

static void
test_handler_error(void **state)
{
	const char *request =
		"{\"version\":1,\"op\":\"snapshot_cancel\",\"user\":\"u\","
		"\"host\":\"h\",\"connection_id\":1,\"args\":\"7\"}\n";
	char *reply = exchange(socket_path, request, strlen(request));

	assert_error_reply(reply, "no snapshot 7; see bk_status()");
	free(reply);
}

static void
test_malformed(void **state)
{
	static const struct
	{
		const char *request;
		const char *error;
	} cases[] = {
		{"not json\n", "malformed request"},
		{"[1,2]\n", "not a JSON object"},
		{"{\"version\":2,\"op\":\"status\",\"user\":\"u\",\"host\":\"h\","
		 "\"connection_id\":1}\n",
		 "unsupported protocol version 2"},
		{"{\"version\":1,\"op\":\"status\",\"host\":\"h\","
		 "\"connection_id\":1}\n",
		 "\"user\" must be a string"},
		{"{\"version\":1,\"op\":\"drop_everything\",\"user\":\"u\","
		 "\"host\":\"h\",\"connection_id\":1}\n",
		 "unknown operation \"drop_everything\""},
		{"{\"version\":1,\"op\":\"status\",\"user\":\"u\",\"host\":\"h\","
		 "\"connection_id\":-1}\n",
		 "\"connection_id\" must be a non-negative integer"},
		{"{\"version\":1,\"op\":\"status\",\"user\":\"u\",\"host\":\"h\","
		 "\"connection_id\":1,\"args\":5}\n",
		 "\"args\" must be a string or null"},
		{"{\"version\":1,\"version\":1}\n", "malformed request"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		char *reply =
			exchange(socket_path, cases[i].request, strlen(cases[i].request));

		assert_error_reply(reply, cases[i].error);
		free(reply);
	}
}

static void
test_oversize(void **state)
{
	size_t len = BK_CONTROL_MAX_REQUEST + 1000;
	char *request = malloc(len);
	char *reply;

	memset(request, 'x', len);
	reply = exchange(socket_path, request, len);
	assert_error_reply(reply, "request is longer than 65536 bytes");
	free(reply);
	free(request);
}

/* Wait (5 s at most) until flag is true; returns it. */
static bool
wait_flag(bool *flag)
{
	struct timespec deadline;
	bool value;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5;
	pthread_mutex_lock(&seen_lock);
	while (!*flag &&
		   pthread_cond_timedwait(&seen_cond, &seen_lock, &deadline) == 0)
		;
	value = *flag;
	pthread_mutex_unlock(&seen_lock);
	return value;
}

static const char bad_utf8_request[] =
	"{\"version\":1,\"op\":\"snapshot_cancel\",\"user\":\"u\",\"host\":"
	"\"h\",\"connection_id\":1,\"args\":\"bad-utf8\"}\n";

static const char wait_request[] =
	"{\"version\":1,\"op\":\"snapshot\",\"user\":\"u\",\"host\":\"h\","
	"\"connection_id\":1,\"args\":\"wait\"}\n";

static void
test_peer_gone(void **state)
{
	int fd = connect_to(socket_path);

	waiting = saw_peer_gone = false;
	assert_int_equal(write(fd, wait_request, strlen(wait_request)),
					 (ssize_t) strlen(wait_request));
	assert_true(wait_flag(&waiting));
	/* Still connected: the handler keeps waiting. */
	poll(NULL, 0, 100);
	assert_false(saw_peer_gone);
	close(fd);
	assert_true(wait_flag(&saw_peer_gone));
}

static void
test_uid_not_allowed(void **state)
{
	char path[300];
	uid_t other = getuid() + 1;
	BkControl *strict;
	BkError err;
	char *reply;
	char expected[64];
	LogCapture capture = {""};
	char logged[sizeof(capture.last)];

	snprintf(path, sizeof(path), "%s/strict.sock", dir);
	strict = bk_control_start(path, &other, 1, NULL, test_handler, capture_log,
							  &capture, &err);
	if (strict == NULL)
		fail_msg("bk_control_start: %s", err.message);
	reply = exchange(path, wait_request, strlen(wait_request));
	snprintf(expected, sizeof(expected), "peer uid %u is not allowed",
			 (unsigned) getuid());
	assert_error_reply(reply, expected);
	/* Never an assertion under seen_lock: a failure would leave it held. */
	pthread_mutex_lock(&seen_lock);
	snprintf(logged, sizeof(logged), "%s", capture.last);
	pthread_mutex_unlock(&seen_lock);
	free(reply);
	bk_control_stop(strict);
	if (strstr(logged, expected) == NULL)
		fail_msg("the agent's last log line is not about the uid: \"%s\"",
				 logged);
}

static void
test_socket_files(void **state)
{
	char path[300];
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct stat st;
	BkControl *second;
	BkError err;
	uid_t me = getuid();
	int fd;
	FILE *f;

	/* A live agent on the path: refused, and its socket stays. */
	second = bk_control_start(socket_path, &me, 1, NULL, test_handler, NULL,
							  NULL, &err);
	assert_null(second);
	assert_error_contains(&err, "another bk-mysql-agent listens on");
	assert_int_equal(stat(socket_path, &st), 0);

	/* A stale socket file (bound, nobody listening): replaced. */
	snprintf(path, sizeof(path), "%s/stale.sock", dir);
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *) &addr, sizeof(addr)), 0);
	close(fd);
	second =
		bk_control_start(path, &me, 1, NULL, test_handler, NULL, NULL, &err);
	if (second == NULL)
		fail_msg("bk_control_start over a stale socket: %s", err.message);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0660);
	bk_control_stop(second);
	assert_int_not_equal(stat(path, &st), 0);

	/* A regular file is not ours to remove. */
	f = fopen(path, "w");
	fclose(f);
	second =
		bk_control_start(path, &me, 1, NULL, test_handler, NULL, NULL, &err);
	assert_null(second);
	assert_error_contains(&err, "exists and is not a socket");

	/* A directory that does not exist. */
	snprintf(path, sizeof(path), "%s/nodir/agent.sock", dir);
	second =
		bk_control_start(path, &me, 1, NULL, test_handler, NULL, NULL, &err);
	assert_null(second);
	assert_error_contains(&err, "could not bind the control socket");
}

/* Stop with a call in progress: the handler sees it and stop waits. */
static void
test_stop_with_call(void **state)
{
	char path[300];
	uid_t me = getuid();
	BkControl *busy;
	BkError err;
	char *reply;
	bool gone;
	int fd;

	snprintf(path, sizeof(path), "%s/busy.sock", dir);
	busy = bk_control_start(path, &me, 1, NULL, test_handler, NULL, NULL, &err);
	if (busy == NULL)
		fail_msg("bk_control_start: %s", err.message);
	waiting = saw_peer_gone = false;
	fd = connect_to(path);
	assert_int_equal(write(fd, wait_request, strlen(wait_request)),
					 (ssize_t) strlen(wait_request));
	assert_true(wait_flag(&waiting));
	bk_control_stop(busy);
	pthread_mutex_lock(&seen_lock);
	gone = saw_peer_gone;
	pthread_mutex_unlock(&seen_lock);
	assert_true(gone);
	/* The call was still answered before stop returned. */
	reply = read_all(fd);
	json_decref(parse_reply(reply));
	free(reply);
	close(fd);
}

/*
 * User "evil" is refused after 20 ms (a role query on a loaded server),
 * "busy" is told to try again, "slow" allowed after 300 ms, anyone else is
 * allowed (BkControlAuthorize).
 */
static bool
flood_authorize(void *arg, const BkControlRequest *req, BkError *err)
{
	if (strcmp(req->user, "busy") == 0)
		return bk_error_set(err, BK_ERR_TIMEOUT, "busy, try again");
	if (strcmp(req->user, "slow") == 0)
	{
		poll(NULL, 0, 300);
		return true;
	}
	if (strcmp(req->user, "evil") != 0)
		return true;
	poll(NULL, 0, 20);
	return bk_error_set(err, BK_ERR_USAGE, "user 'evil' is not allowed");
}

static const char evil_request[] =
	"{\"version\":1,\"op\":\"status\",\"user\":\"evil\",\"host\":\"%\","
	"\"connection_id\":1,\"args\":null}\n";

/* One of the flood's callers: 10 refused calls in a row. */
static void *
evil_caller(void *arg)
{
	const char *path = arg;

	for (int i = 0; i < 10; i++)
	{
		char *reply = exchange(path, evil_request, strlen(evil_request));

		if (strstr(reply, "is not allowed") == NULL)
			fail_msg("evil caller: \"%s\"", reply);
		free(reply);
	}
	return NULL;
}

/*
 * 48 callers that are refused, calling all the time, while an authorized
 * one calls: its calls all go through (the refused ones never take the
 * slots of authorized calls), and the 480 refusals make one log line, not
 * 480.  A "busy" refusal says so in the reply.
 */
static void
test_flood_of_refused_callers(void **state)
{
	static const char ok_request[] =
		"{\"version\":1,\"op\":\"status\",\"user\":\"dba\",\"host\":\"%\","
		"\"connection_id\":2,\"args\":null}\n";
	static const char busy_request[] =
		"{\"version\":1,\"op\":\"status\",\"user\":\"busy\",\"host\":"
		"\"%\",\"connection_id\":3,\"args\":null}\n";
	pthread_t callers[48];
	char path[300];
	uid_t me = getuid();
	BkControl *flooded;
	BkError err;
	json_t *root;
	char *reply;
	int lines = 0;

	snprintf(path, sizeof(path), "%s/flood.sock", dir);
	flooded = bk_control_start(path, &me, 1, flood_authorize, test_handler,
							   test_log, &lines, &err);
	if (flooded == NULL)
		fail_msg("bk_control_start: %s", err.message);
	for (int i = 0; i < 48; i++)
		assert_int_equal(
			pthread_create(&callers[i], NULL, evil_caller, (void *) path), 0);
	poll(NULL, 0, 50);
	for (int i = 0; i < 50; i++)
	{
		reply = exchange(path, ok_request, strlen(ok_request));
		root = parse_reply(reply);
		if (!json_is_true(json_object_get(root, "ok")))
			fail_msg("authorized call %d refused: %s", i, reply);
		json_decref(root);
		free(reply);
	}
	for (int i = 0; i < 48; i++)
		pthread_join(callers[i], NULL);

	reply = exchange(path, busy_request, strlen(busy_request));
	root = parse_reply(reply);
	assert_true(json_is_true(json_object_get(root, "busy")));
	assert_string_equal(json_string_value(json_object_get(root, "error")),
						"busy, try again");
	json_decref(root);
	free(reply);
	bk_control_stop(flooded);

	/* Stopped: no thread of its writes lines any more. */
	if (lines != 1)
		fail_msg("%d log lines for 481 refusals", lines);
}

/*
 * A caller that goes away before its call is admitted (the agent slow or
 * stopped, here a role check of 300 ms) was told its call is abandoned:
 * the call is not run, and the log says so.  The request, read whole, is
 * still there to read after the caller's close; the call ran before.
 */
static void
test_gone_before_admitted(void **state)
{
	static const char slow_request[] =
		"{\"version\":1,\"op\":\"snapshot\",\"user\":\"slow\",\"host\":"
		"\"%\",\"connection_id\":4,\"args\":\"label=phantom\"}\n";
	char path[300];
	uid_t me = getuid();
	BkControl *slow;
	BkError err;
	char log_line[sizeof(last_log)];
	bool logged = false;
	bool ran;
	int handled_before;
	int fd;

	snprintf(path, sizeof(path), "%s/slow.sock", dir);
	slow = bk_control_start(path, &me, 1, flood_authorize, test_handler,
							test_log, NULL, &err);
	if (slow == NULL)
		fail_msg("bk_control_start: %s", err.message);
	pthread_mutex_lock(&seen_lock);
	handled_before = handled;
	pthread_mutex_unlock(&seen_lock);
	fd = connect_to(path);
	assert_int_equal(write(fd, slow_request, strlen(slow_request)),
					 (ssize_t) strlen(slow_request));
	close(fd);
	/*
	 * 10 s at most: the log line comes after the 300 ms role check, and
	 * bk_control_stop() below must not come first (a stopping agent's
	 * calls see their callers gone too); 2 s was a loaded machine's
	 * scheduling away from that.
	 */
	for (int i = 0; i < 1000 && !logged; i++)
	{
		poll(NULL, 0, 10);
		pthread_mutex_lock(&seen_lock);
		logged = strstr(last_log, "snapshot call from 'slow'@'%' not run: "
								  "its caller went away") != NULL;
		pthread_mutex_unlock(&seen_lock);
	}
	bk_control_stop(slow); /* waits for the call to end */
	pthread_mutex_lock(&seen_lock);
	ran = handled != handled_before;
	snprintf(log_line, sizeof(log_line), "%s", last_log);
	pthread_mutex_unlock(&seen_lock);
	if (ran)
		fail_msg("the call of a caller gone was run (log: \"%s\")", log_line);
	if (!logged)
		fail_msg("no log line says the call was not run (last: \"%s\")",
				 log_line);
}

/* Is text valid UTF-8 (as jansson sees it)? */
static bool
valid_utf8(const char *text)
{
	json_t *str = json_string(text);

	json_decref(str);
	return str != NULL;
}

/*
 * A message cut to fit BK_ERROR_MESSAGE_MAX (or the hint's size) is cut
 * between characters, however the cut falls, and bk_error_prefix too.
 */
static void
test_error_cut_on_boundary(void **state)
{
	char euros[1200 * 3 + 1];
	BkError err;

	for (int i = 0; i < 1200; i++)
		memcpy(euros + 3 * i, "\xe2\x82\xac", 3);
	euros[sizeof(euros) - 1] = '\0';
	for (int shift = 0; shift < 3; shift++)
	{
		bk_error_set(&err, BK_ERR_USAGE, "%.*s%s", shift, "xx", euros);
		assert_true(valid_utf8(err.message));
		assert_true(strlen(err.message) >= BK_ERROR_MESSAGE_MAX - 4);
		bk_error_hint(&err, "%.*s%s", shift, "xx", euros);
		assert_true(valid_utf8(err.hint));
		assert_true(strlen(err.hint) >= BK_ERROR_HINT_MAX - 4);
		bk_error_set(&err, BK_ERR_USAGE, "%s", euros + 3 * 700);
		bk_error_prefix(&err, "%.*s%.*s: ", shift, "xx", 300, euros);
		assert_true(valid_utf8(err.message));
	}
}

/*
 * An error echoing a long argument of multi-byte characters (the handler
 * says "no snapshot <id>") still reaches the caller as a reply: it used to
 * be cut inside a character, and the reply, which must be valid UTF-8,
 * was not sent at all.  An error that is not UTF-8 gets a fixed reply.
 */
static void
test_error_reply_always_sent(void **state)
{
	char request[4096];
	char *reply;
	int n;

	n = snprintf(request, sizeof(request),
				 "{\"version\":1,\"op\":\"snapshot_cancel\",\"user\":\"u\","
				 "\"host\":\"h\",\"connection_id\":1,\"args\":\"x");
	for (int i = 0; i < 340; i++)
		n += snprintf(request + n, sizeof(request) - n, "\xe2\x82\xac");
	n += snprintf(request + n, sizeof(request) - n, "\"}\n");
	reply = exchange(socket_path, request, (size_t) n);
	assert_error_reply(reply, "no snapshot x\xe2\x82\xac");
	free(reply);

	reply = exchange(socket_path, bad_utf8_request, strlen(bad_utf8_request));
	assert_error_reply(reply, "bk-mysql-agent could not build its error reply");
	free(reply);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_handler_error),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_oversize),
		cmocka_unit_test(test_peer_gone),
		cmocka_unit_test(test_uid_not_allowed),
		cmocka_unit_test(test_socket_files),
		cmocka_unit_test(test_stop_with_call),
		cmocka_unit_test(test_flood_of_refused_callers),
		cmocka_unit_test(test_gone_before_admitted),
		cmocka_unit_test(test_error_cut_on_boundary),
		cmocka_unit_test(test_error_reply_always_sent),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, setup, teardown);
}
