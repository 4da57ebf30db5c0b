/*
 * test_udf.c
 *		bk_udf.so's functions (mysql_udf/bk_udf.c, compiled in) against the
 *		agent's real control socket (mysql_agent/control.c) and a stand-in
 *		for the server: the server functions the UDF looks up with dlsym
 *		(_current_thd, thd_priv_user, ..., my_message) are defined here and
 *		exported (-rdynamic).  No mariadbd is needed.
 *
 * What is checked: the caller's account reaches the agent as the server
 * gave it, whatever its bytes; an argument too long once escaped is refused
 * with the limit named; a hung agent does not hold bk_status() forever,
 * nor bk_snapshot(), whose agent's keepalives keep a long call going;
 * KILL QUERY ends a waiting bk_snapshot() and the agent sees its caller
 * gone, and so does max_statement_time, which kills softly; no agent is a
 * clear error; one call per statement; malformed
 * replies are errors, never crashes; a "busy" agent is asked again, for a
 * while; a NUL byte (UTF-16 text) is refused; an error cut short is cut on
 * a character boundary; a session under LOCK TABLES is refused
 * bk_snapshot() without asking the agent, and a server without
 * thd_test_options() gets the call through as before.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_udf_agent.h"

/* A shorter retry of busy replies, so that giving up is tested quickly. */
#define BUSY_RETRY_MS 1500

/* The UDF itself, its static helpers included. */
#include "../../mysql_udf/bk_udf.c"

/* ------------------------------------------------ the server, faked */

static struct
{
	const char *user;
	size_t user_len;
	const char *host;
	size_t host_len;
	int64_t killed_at_ms;  /* THD::killed is killed_state from then on */
	int killed_state;      /* ... 0: never */
	int64_t gone_at_ms;    /* thd_is_connected() false from then on; 0: never */
	long long option_bits; /* THD::variables.option_bits */
	char message[1024];    /* the last my_message() */
	int messages;
} server;

BK_UDF_EXPORT void *_current_thd(void);
BK_UDF_EXPORT const char *thd_priv_user(void *thd, size_t *length);
BK_UDF_EXPORT const char *thd_priv_host(void *thd, size_t *length);
BK_UDF_EXPORT unsigned long thd_get_thread_id(const void *thd);
BK_UDF_EXPORT enum thd_kill_levels thd_kill_level(const void *thd);
BK_UDF_EXPORT int thd_killed(const void *thd);
BK_UDF_EXPORT int thd_is_connected(void *thd);
BK_UDF_EXPORT void my_message(unsigned int error, const char *text,
							  unsigned long flags);
BK_UDF_EXPORT long long thd_test_options(const void *thd,
										 long long test_options);

void *
_current_thd(void)
{
	return &server;
}

const char *
thd_priv_user(void *thd, size_t *length)
{
	*length = server.user_len;
	return server.user;
}

const char *
thd_priv_host(void *thd, size_t *length)
{
	*length = server.host_len;
	return server.host;
}

unsigned long
thd_get_thread_id(const void *thd)
{
	return 77;
}

/*
 * THD::killed values (sql/sql_class.h, enum killed_state): bit 0 is HARD.
 * KILL QUERY is KILL_QUERY_HARD; max_statement_time's timer sets
 * KILL_TIMEOUT (thd_kill_timeout: "kill queries that can't cause data
 * corruptions"), without it.
 */
#define KILL_QUERY_HARD 5
#define KILL_TIMEOUT    8

/* As mariadbd's (sql/sql_class.cc). */
enum thd_kill_levels
thd_kill_level(const void *thd)
{
	if (server.killed_at_ms == 0 || monotonic_ms() < server.killed_at_ms)
		return THD_IS_NOT_KILLED;
	return server.killed_state & 1 ? THD_ABORT_ASAP : THD_ABORT_SOFTLY;
}

/* The older call, kept by mariadbd for old plugins: hard kills only. */
int
thd_killed(const void *thd)
{
	return thd_kill_level(thd) > THD_ABORT_SOFTLY;
}

int
thd_is_connected(void *thd)
{
	return server.gone_at_ms == 0 || monotonic_ms() < server.gone_at_ms;
}

/* As mariadbd's (sql/sql_class.cc). */
long long
thd_test_options(const void *thd, long long test_options)
{
	return server.option_bits & test_options;
}

void
my_message(unsigned int error, const char *text, unsigned long flags)
{
	assert_int_equal(error, BK_ER_UNKNOWN_ERROR);
	snprintf(server.message, sizeof(server.message), "%s", text);
	server.messages++;
}

/* ------------------------------------------------ the agent side */

static char dir[64];
static char socket_path[256];

static int
setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/bk-test-udf.XXXXXX");
	if (mkdtemp(dir) == NULL)
		fail_msg("mkdtemp failed");
	snprintf(socket_path, sizeof(socket_path), "%s/agent.sock", dir);
	setenv("BK_AGENT_SOCKET", socket_path, 1);
	udf_agent_start(socket_path);
	return 0;
}

static int
teardown(void **state)
{
	udf_agent_stop();
	rmdir(dir);
	return 0;
}

/* Each test starts with a plain account and no kill. */
static int
reset(void **state)
{
	server.user = "alice";
	server.user_len = 5;
	server.host = "%";
	server.host_len = 1;
	server.killed_at_ms = 0;
	server.killed_state = 0;
	server.gone_at_ms = 0;
	server.option_bits = 0;
	server.message[0] = '\0';
	server.messages = 0;
	udf_agent_reset();
	return 0;
}

/* ------------------------------------------------ calling the UDF */

typedef my_bool (*InitFn)(UDF_INIT *, UDF_ARGS *, char *);
typedef char *(*CallFn)(UDF_INIT *, UDF_ARGS *, char *, unsigned long *, char *,
						char *);
typedef void (*DeinitFn)(UDF_INIT *);

/*
 * One statement calling a function rows times with arg (NULL: none; len
 * bytes).  Returns the malloc'd result text, or NULL (the SQL error is in
 * server.message).
 */
static char *
call_udf(InitFn init_fn, CallFn call_fn, DeinitFn deinit_fn, const char *arg,
		 size_t len, int rows)
{
	UDF_INIT init;
	UDF_ARGS args;
	enum Item_result type = STRING_RESULT;
	char *value = (char *) arg;
	unsigned long length = len;
	char maybe_null = 1;
	char message[512];
	char *out = NULL;

	memset(&init, 0, sizeof(init));
	memset(&args, 0, sizeof(args));
	args.arg_count = arg != NULL ? 1 : 0;
	args.arg_type = &type;
	args.args = &value;
	args.lengths = &length;
	args.maybe_null = &maybe_null;
	if (init_fn(&init, &args, message) != 0)
		fail_msg("init failed: %s", message);
	for (int row = 0; row < rows; row++)
	{
		unsigned long result_len = 0;
		char is_null = 0;
		char error = 0;
		char *result =
			call_fn(&init, &args, NULL, &result_len, &is_null, &error);

		if (error)
		{
			assert_null(result);
			assert_true(is_null);
			assert_null(out);
			continue;
		}
		assert_non_null(result);
		if (out == NULL)
			out = strndup(result, result_len);
		else
			assert_memory_equal(out, result, result_len);
	}
	deinit_fn(&init);
	return out;
}

static char *
call_status(int rows)
{
	return call_udf(bk_status_init, bk_status, bk_status_deinit, NULL, 0, rows);
}

static void
assert_message(const char *needle)
{
	if (strstr(server.message, needle) == NULL)
		fail_msg("SQL error \"%s\" does not contain \"%s\"", server.message,
				 needle);
}

/* ------------------------------------------------ tests */

/*
 * The account reaches the agent byte for byte where it is text, with
 * quotes, backslashes and would-be JSON members inside the string, control
 * characters escaped and a byte that is not UTF-8 replaced: nothing the
 * server hands over can add or change a field of the request.
 */
static void
test_identity_round_trip(void **state)
{
	static const char user[] = "a\"b\\c\",\"user\":\"root\n\xff";
	static const char host[] = "10.0.0.%";
	char *result;

	server.user = user;
	server.user_len = sizeof(user) - 1;
	server.host = host;
	server.host_len = sizeof(host) - 1;
	result = call_status(1);
	assert_non_null(result);
	assert_string_equal(udf_agent_last_user(),
						"a\"b\\c\",\"user\":\"root\n\xef\xbf\xbd");
	assert_string_equal(udf_agent_last_host(), host);
	assert_int_equal(udf_agent_last_connection_id(), 77);
	assert_false(udf_agent_last_had_args());
	free(result);
}

/* A statement over many rows asks the agent once. */
static void
test_once_per_statement(void **state)
{
	char *result = call_status(5);

	assert_non_null(result);
	free(result);
	assert_int_equal(udf_agent_calls(), 1);
}

/*
 * An argument under the UDF's 60 KiB that escaping makes longer than the
 * agent's 64 KiB: refused with the limits named, the agent not bothered
 * (it used to be sent, cut off by the agent, and reported as a broken
 * pipe or a closed connection).
 */
static void
test_escaped_argument_too_long(void **state)
{
	size_t len = 20 * 1024;
	char *arg = malloc(len);
	char *result;

	memset(arg, '\x01', len);
	result = call_udf(bk_snapshot_init, bk_snapshot, bk_snapshot_deinit, arg,
					  len, 1);
	assert_null(result);
	assert_message("bk_snapshot: the argument is 20480 bytes long");
	assert_message("at most 65536 bytes");
	assert_int_equal(server.messages, 1);
	assert_int_equal(udf_agent_calls(), 0);
	free(arg);

	/* Just under the limit once escaped: it goes through whole. */
	len = (64 * 1024 - 200) / 6;
	arg = malloc(len);
	memset(arg, '\n', len);
	result = call_udf(bk_snapshot_cancel_init, bk_snapshot_cancel,
					  bk_snapshot_cancel_deinit, arg, len, 1);
	assert_non_null(result);
	assert_int_equal(udf_agent_calls(), 1);
	free(result);
	free(arg);
}

/*
 * An agent that accepts bk_status() and never answers: the call ends with
 * an error after QUICK_CALL_TIMEOUT_MS instead of holding the connection
 * thread until someone kills the query.
 */
static void
test_hung_agent_status(void **state)
{
	int64_t start = monotonic_ms();
	char *result;

	server.user = "hang";
	server.user_len = 4;
	result = call_status(1);
	assert_null(result);
	assert_message("bk_status: bk-mysql-agent did not answer within");
	assert_true(monotonic_ms() - start < 5000);
	/* The agent's handler sees its caller gone. */
	for (int tick = 0; tick < 200 && !udf_agent_saw_peer_gone(); tick++)
		usleep(10 * 1000);
	assert_true(udf_agent_saw_peer_gone());
}

/*
 * An agent that accepts bk_snapshot() and sends nothing (stopped, hung):
 * the call ends after BK_UDF_SILENCE_MS with an error that says so and
 * what may have become of the snapshot; it waited for ever before.
 */
static void
test_hung_agent_snapshot(void **state)
{
	int64_t start = monotonic_ms();
	char *result;

	result = call_udf(bk_snapshot_init, bk_snapshot, bk_snapshot_deinit,
					  "label=hung", 10, 1);
	assert_null(result);
	assert_message("bk_snapshot: bk-mysql-agent is not answering: nothing "
				   "for 1 s, though it sends a keepalive every 5 s");
	assert_message("the agent cancels the snapshot, or does not start it "
				   "(one started with wait=false runs on: see bk_status())");
	assert_true(monotonic_ms() - start >= BK_UDF_SILENCE_MS);
	assert_true(monotonic_ms() - start < BK_UDF_SILENCE_MS + 2000);
	for (int tick = 0; tick < 200 && !udf_agent_saw_peer_gone(); tick++)
		usleep(10 * 1000);
	assert_true(udf_agent_saw_peer_gone());
}

/*
 * An agent that works on the snapshot longer than the silence limit,
 * sending keepalives: the call waits for its answer, the keepalives
 * (spaces) not part of the result.
 */
static void
test_keepalive(void **state)
{
	int64_t start = monotonic_ms();
	char *result;

	server.user = "keepalive";
	server.user_len = 9;
	result = call_udf(bk_snapshot_init, bk_snapshot, bk_snapshot_deinit,
					  "label=long", 10, 1);
	if (result == NULL)
		fail_msg("bk_snapshot() failed: %s", server.message);
	assert_true(monotonic_ms() - start >= 2 * BK_UDF_SILENCE_MS - 500);
	assert_true(strncmp(result, "{\"op\":\"snapshot\"", 14) == 0);
	assert_int_equal(server.messages, 0);
	free(result);
}

/*
 * A keepalive heard means the agent started the snapshot and waits for
 * it: a kill then says plainly that the agent cancels it.
 */
static void
test_kill_after_keepalive(void **state)
{
	int64_t start = monotonic_ms();
	char *result;

	server.user = "keepalive";
	server.user_len = 9;
	server.killed_at_ms = start + 700;
	server.killed_state = KILL_QUERY_HARD;
	result = call_udf(bk_snapshot_init, bk_snapshot, bk_snapshot_deinit,
					  "label=long", 10, 1);
	assert_null(result);
	assert_string_equal(server.message,
						"bk_snapshot: query killed; the agent cancels the "
						"snapshot");
	for (int tick = 0; tick < 200 && !udf_agent_saw_peer_gone(); tick++)
		usleep(10 * 1000);
	assert_true(udf_agent_saw_peer_gone());
}

/* KILL QUERY ends a waiting bk_snapshot() within a tick or two. */
static void
test_kill_query(void **state)
{
	int64_t start = monotonic_ms();
	char *result;

	server.killed_at_ms = start + 300;
	server.killed_state = KILL_QUERY_HARD;
	result = call_udf(bk_snapshot_init, bk_snapshot, bk_snapshot_deinit,
					  "wait=true", 9, 1);
	assert_null(result);
	assert_message("bk_snapshot: query killed; the agent cancels");
	assert_true(monotonic_ms() - start < 2000);
	for (int tick = 0; tick < 200 && !udf_agent_saw_peer_gone(); tick++)
		usleep(10 * 1000);
	assert_true(udf_agent_saw_peer_gone());
}

/*
 * SET STATEMENT max_statement_time=N FOR SELECT bk_snapshot(): the timer
 * kills the statement softly, which thd_killed() does not report (the call
 * waited for the whole snapshot, and the snapshot went on); it ends the
 * wait within a tick or two too, and the agent cancels.
 */
static void
test_statement_timeout(void **state)
{
	int64_t start = monotonic_ms();
	char *result;

	server.killed_at_ms = start + 300;
	server.killed_state = KILL_TIMEOUT;
	result = call_udf(bk_snapshot_init, bk_snapshot, bk_snapshot_deinit,
					  "wait=true", 9, 1);
	assert_false(thd_killed(&server)); /* what the UDF must not rely on */
	assert_null(result);
	assert_message("bk_snapshot: query interrupted (max_statement_time");
	assert_message("the agent cancels the snapshot");
	assert_true(monotonic_ms() - start < 2000);
	for (int tick = 0; tick < 200 && !udf_agent_saw_peer_gone(); tick++)
		usleep(10 * 1000);
	assert_true(udf_agent_saw_peer_gone());
}

/*
 * The client goes away while bk_snapshot() waits: the server does not kill
 * the statement, the UDF sees the connection gone within a tick or two and
 * closes the socket, and the agent cancels.
 */
static void
test_client_gone(void **state)
{
	int64_t start = monotonic_ms();
	char *result;

	server.gone_at_ms = start + 300;
	result = call_udf(bk_snapshot_init, bk_snapshot, bk_snapshot_deinit,
					  "wait=true", 9, 1);
	assert_null(result);
	assert_message("bk_snapshot: the client went away; the agent cancels");
	assert_true(monotonic_ms() - start < 2000);
	for (int tick = 0; tick < 200 && !udf_agent_saw_peer_gone(); tick++)
		usleep(10 * 1000);
	assert_true(udf_agent_saw_peer_gone());
}

/* No agent on the socket: an error that says where and what to check. */
static void
test_no_agent(void **state)
{
	char path[300];
	char *result;

	snprintf(path, sizeof(path), "%s/none.sock", dir);
	setenv("BK_AGENT_SOCKET", path, 1);
	result = call_status(1);
	setenv("BK_AGENT_SOCKET", socket_path, 1);
	assert_null(result);
	assert_message("cannot reach bk-mysql-agent at");
	assert_message("is the agent running?");
}

/* Replies the agent would never send: errors, never a crash or a read
 * past the end. */
static void
test_malformed_replies(void **state)
{
	static const char *const bad[] = {
		"",
		"{",
		"{\"ok\":true}",
		"{\"ok\":true,\"result\":",
		"{\"ok\":true,\"result\":\"abc",
		"{\"ok\":true,\"result\":{\"a\":[1,2}",
		"{\"ok\":maybe,\"result\":1}",
		"{\"ok\":false,\"error\":\"\\u12\"}x",
		"{\"ok\":true,\"result\":1} trailing",
		"[1]",
		"{\"ok\":false,\"error\":\"\\",
	};
	UdfCall call;

	for (size_t idx = 0; idx < sizeof(bad) / sizeof(bad[0]); idx++)
	{
		char *copy = strdup(bad[idx]);

		memset(&call, 0, sizeof(call));
		call.function = "bk_status";
		call.op = "status";
		call.api.message = my_message;
		server.message[0] = '\0';
		/* The exact length: no terminator to stop a runaway scan. */
		copy = realloc(copy, strlen(bad[idx]) ? strlen(bad[idx]) : 1);
		assert_int_equal(handle_reply(&call, copy, strlen(bad[idx]), false),
						 REPLY_FAILED);
		assert_true(call.failed);
		assert_true(server.message[0] != '\0');
		free(call.result);
		free(copy);
	}

	/* An error text with a line break, \u0000 and a lone surrogate: one
	 * line of valid UTF-8. */
	{
		static const char reply[] =
			"{\"ok\":false,\"error\":\"a\\nb\\u00e9\\u0000c\\ud800\"}";

		memset(&call, 0, sizeof(call));
		call.function = "bk_status";
		call.api.message = my_message;
		assert_int_equal(handle_reply(&call, reply, sizeof(reply) - 1, false),
						 REPLY_FAILED);
		assert_string_equal(server.message,
							"bk_status: a b\xc3\xa9 c\xef\xbf\xbd");
	}
}

/* Is text valid UTF-8? */
static bool
valid_utf8(const char *text)
{
	size_t len = strlen(text);

	for (size_t pos = 0; pos < len;)
	{
		size_t n =
			utf8_sequence_length((const unsigned char *) text + pos, len - pos);

		if (n == 0)
			return false;
		pos += n;
	}
	return true;
}

/*
 * A "busy" reply (a flood of other callers) is retried: the call succeeds
 * once the agent has room, with no error raised meanwhile.
 */
static void
test_busy_retried(void **state)
{
	char *result;

	server.user = "busy";
	server.user_len = 4;
	udf_agent_set_busy(3);
	result = call_status(1);
	if (result == NULL)
		fail_msg("bk_status() failed: %s", server.message);
	assert_int_equal(server.messages, 0);
	/* Three busy replies, then the call that went through. */
	assert_int_equal(udf_agent_calls(), 4 + 1);
	free(result);
}

/* ... for BUSY_RETRY_MS, then the busy error is the SQL error. */
static void
test_busy_gives_up(void **state)
{
	int64_t start = monotonic_ms();
	char *result;

	server.user = "busy";
	server.user_len = 4;
	udf_agent_set_busy(-1);
	result = call_status(1);
	assert_null(result);
	assert_message("bk_status: the test agent is busy");
	assert_int_equal(server.messages, 1);
	assert_true(monotonic_ms() - start >= BUSY_RETRY_MS);
	assert_true(monotonic_ms() - start < BUSY_RETRY_MS + 3000);
	assert_true(udf_agent_calls() > 2);
}

/* ... and a KILL QUERY meanwhile ends the wait. */
static void
test_busy_killed(void **state)
{
	int64_t start = monotonic_ms();
	char *result;

	server.user = "busy";
	server.user_len = 4;
	udf_agent_set_busy(-1);
	server.killed_at_ms = start + 300;
	server.killed_state = KILL_QUERY_HARD;
	result = call_status(1);
	assert_null(result);
	assert_message("bk_status: query killed");
	assert_true(monotonic_ms() - start < 1000);
}

/*
 * UTF-16 text is full of NUL bytes, valid UTF-8 that the agent refuses:
 * the UDF says what to do instead, and does not call.
 */
static void
test_nul_argument(void **state)
{
	static const char utf16[] = "\0l\0a\0b\0e\0l\0=\0x";
	char *result;

	result = call_udf(bk_snapshot_init, bk_snapshot, bk_snapshot_deinit, utf16,
					  sizeof(utf16) - 1, 1);
	assert_null(result);
	assert_message("bk_snapshot: the argument contains a NUL byte (UTF-16 or "
				   "UTF-32?): give it as utf8mb4");
	assert_int_equal(udf_agent_calls(), 0);
}

/* An agent's error longer than the server takes is cut between characters. */
static void
test_long_error_cut_on_boundary(void **state)
{
	char reply[4096];
	UdfCall call;
	int n;

	for (int shift = 0; shift < 4; shift++)
	{
		n = snprintf(reply, sizeof(reply), "{\"ok\":false,\"error\":\"%.*s",
					 shift, "xxx");
		for (int i = 0; i < 300; i++)
			n += snprintf(reply + n, sizeof(reply) - n, "\xe2\x82\xac");
		n += snprintf(reply + n, sizeof(reply) - n, "\"}");
		memset(&call, 0, sizeof(call));
		call.function = "bk_status";
		call.api.message = my_message;
		assert_int_equal(handle_reply(&call, reply, (size_t) n, false),
						 REPLY_FAILED);
		if (!valid_utf8(server.message))
			fail_msg("shift %d: the message is not valid UTF-8", shift);
		assert_true(strlen(server.message) > 400);
	}
}

/* Other THD::variables.option_bits, for the tests below. */
#define OPTION_NOT_AUTOCOMMIT (1LL << 19)
#define OPTION_BEGIN          (1LL << 20)

/*
 * Under LOCK TABLES, bk_snapshot() is refused at once, naming it and what
 * to do, the agent not asked: its snapshot would wait for the caller's
 * locks, which the caller, waiting for the agent, holds until the agent's
 * lock wait ends.  bk_status() still goes through.
 */
static void
test_lock_tables_refused(void **state)
{
	int64_t start = monotonic_ms();
	char *result;

	server.option_bits = BK_OPTION_TABLE_LOCK | OPTION_NOT_AUTOCOMMIT;
	result = call_udf(bk_snapshot_init, bk_snapshot, bk_snapshot_deinit,
					  "label=x", 7, 3);
	assert_null(result);
	assert_message("bk_snapshot: this session is under LOCK TABLES");
	assert_message("run UNLOCK TABLES first, then call bk_snapshot() again");
	assert_int_equal(server.messages, 1);
	assert_int_equal(udf_agent_calls(), 0);
	assert_true(monotonic_ms() - start < 500);
	result = call_status(1);
	assert_non_null(result);
	free(result);
	assert_int_equal(udf_agent_calls(), 1);
}

/* A snapshot asked in a transaction, not under LOCK TABLES, goes through. */
static void
test_lock_tables_other_options(void **state)
{
	char *result;

	server.option_bits = OPTION_BEGIN | OPTION_NOT_AUTOCOMMIT;
	server.killed_at_ms = monotonic_ms() + 300;
	server.killed_state = KILL_QUERY_HARD;
	result = call_udf(bk_snapshot_init, bk_snapshot, bk_snapshot_deinit,
					  "label=x", 7, 1);
	assert_null(result);
	assert_message("bk_snapshot: query killed");
	assert_int_equal(udf_agent_calls(), 1);
}

/*
 * A server without thd_test_options() (its symbol is optional): the
 * snapshot is asked of the agent as before, the check skipped.
 */
static void
test_lock_tables_unknown(void **state)
{
	UDF_INIT init;
	UDF_ARGS args;
	char message[512];
	unsigned long length = 0;
	char is_null = 0;
	char error = 0;

	memset(&init, 0, sizeof(init));
	memset(&args, 0, sizeof(args));
	assert_int_equal(bk_snapshot_init(&init, &args, message), 0);
	assert_ptr_equal(((UdfCall *) init.ptr)->api.test_options,
					 thd_test_options);
	((UdfCall *) init.ptr)->api.test_options = NULL;
	server.option_bits = BK_OPTION_TABLE_LOCK;
	server.killed_at_ms = monotonic_ms() + 300;
	server.killed_state = KILL_QUERY_HARD;
	assert_null(bk_snapshot(&init, &args, NULL, &length, &is_null, &error));
	assert_true(error);
	assert_message("bk_snapshot: query killed");
	assert_int_equal(udf_agent_calls(), 1);
	bk_snapshot_deinit(&init);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_identity_round_trip, reset),
		cmocka_unit_test_setup(test_once_per_statement, reset),
		cmocka_unit_test_setup(test_escaped_argument_too_long, reset),
		cmocka_unit_test_setup(test_hung_agent_status, reset),
		cmocka_unit_test_setup(test_hung_agent_snapshot, reset),
		cmocka_unit_test_setup(test_keepalive, reset),
		cmocka_unit_test_setup(test_kill_after_keepalive, reset),
		cmocka_unit_test_setup(test_kill_query, reset),
		cmocka_unit_test_setup(test_statement_timeout, reset),
		cmocka_unit_test_setup(test_client_gone, reset),
		cmocka_unit_test_setup(test_no_agent, reset),
		cmocka_unit_test_setup(test_malformed_replies, reset),
		cmocka_unit_test_setup(test_busy_retried, reset),
		cmocka_unit_test_setup(test_busy_gives_up, reset),
		cmocka_unit_test_setup(test_busy_killed, reset),
		cmocka_unit_test_setup(test_nul_argument, reset),
		cmocka_unit_test_setup(test_long_error_cut_on_boundary, reset),
		cmocka_unit_test_setup(test_lock_tables_refused, reset),
		cmocka_unit_test_setup(test_lock_tables_other_options, reset),
		cmocka_unit_test_setup(test_lock_tables_unknown, reset),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, setup, teardown);
}
