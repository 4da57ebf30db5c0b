/*
 * bk_udf.c
 *		bk_snapshot(), bk_snapshot_cancel() and bk_status(): SQL functions
 *		that forward the call to bk-mysql-agent over a Unix socket.
 *
 * The functions do no backup work inside mariadbd.  Each call connects to
 * the agent's control socket, sends one JSON request line naming the
 * function, the calling account (thd_priv_user/thd_priv_host, which the
 * agent uses to authorize the call) and the raw argument, and waits for one
 * JSON reply line: the result text becomes the function's value, an error
 * becomes an SQL error (ER_UNKNOWN_ERROR, raised through the server's own
 * my_message).  The protocol is written down in docs/mysql-agent-protocol.md.
 *
 * Constraints from living in the server, and how they are met:
 *
 * - Only libc.  No threads, no OpenSSL, no librdkafka, no JSON library: the
 *	 request is built with a small escaper and the reply is scanned, not
 *	 parsed into a tree.  Nothing is left behind on DROP FUNCTION (dlclose).
 * - x_init runs at prepare time (EXPLAIN, "WHERE 0"), so it only checks the
 *	 arguments and resolves the server functions we need; the agent is
 *	 contacted at the first x() call only.  The server calls x() once per
 *	 row: the first call's result (or failure) is cached in initid->ptr and
 *	 returned for every later row, so a snapshot is requested once per
 *	 statement.
 * - The server symbols are looked up with dlsym(RTLD_DEFAULT), and x_init
 *	 fails (fail closed) if one is missing: without the caller's identity
 *	 the agent could not authorize anything.  One is optional:
 *	 thd_test_options(), which tells bk_snapshot() that its caller is under
 *	 LOCK TABLES; without it the call goes to the agent as before.
 * - A call may last long (a snapshot), so the wait polls the socket with a
 *	 short tick and checks thd_kill_level() and thd_is_connected() at each
 *	 tick: KILL QUERY, max_statement_time, or the client going away, ends
 *	 the call promptly, and closing the socket tells the agent to cancel.
 * - Connection threads have small stacks: buffers of unbounded size are
 *	 malloc'd; the stack holds messages of at most 512 bytes.
 *
 * The socket path is BK_AGENT_SOCKET from mariadbd's environment (read with
 * secure_getenv at each call) or else the compiled-in default below.
 */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bk_udf_abi.h"
#include "control_protocol.h"

#ifndef BK_AGENT_SOCKET
#define BK_AGENT_SOCKET "/run/bk/mysql-agent.sock"
#endif

#define BK_UDF_EXPORT __attribute__((visibility("default")))

/* How often a blocked call looks at thd_kill_level(), in milliseconds. */
#define TICK_MS 100
/* A connect() refused with EAGAIN (full backlog) is retried this long. */
#define CONNECT_RETRY_MS 5000
/* The agent refuses requests over 64 KiB; leave room for the other fields. */
#define MAX_ARGUMENT_LEN (60 * 1024)
/* ... and counts the request line as sent, escapes and '\n' included. */
#define MAX_REQUEST_LEN BK_CONTROL_MAX_REQUEST
/*
 * bk_status() and bk_snapshot_cancel() are answered at once (the agent's
 * own waits for them are bounded); a longer silence is a hung agent, and
 * a connection thread is not held for it.  bk_snapshot() waits as long as
 * the snapshot runs, the agent sending a keepalive (a space) every 5 s
 * meanwhile (BK_CONTROL_KEEPALIVE_MS); silent for BK_UDF_SILENCE_MS, six
 * of them missed, it is taken for hung or stopped.  Its only silent waits,
 * the role check and starting the job, take a few seconds at most; a
 * longer limit would only hold a connection thread longer for a dead
 * agent.
 */
#ifndef QUICK_CALL_TIMEOUT_MS
#define QUICK_CALL_TIMEOUT_MS (60 * 1000)
#endif
#ifndef BK_UDF_SILENCE_MS
#define BK_UDF_SILENCE_MS (30 * 1000)
#endif
#define MAX_REPLY_LEN BK_CONTROL_MAX_REPLY
/*
 * A "busy" reply (the agent's call slots or its authorization connection
 * taken, a flood of other callers, say) is retried this long, waiting
 * BUSY_BACKOFF_MS at first and twice as long each time, up to a second.
 */
#ifndef BUSY_RETRY_MS
#define BUSY_RETRY_MS (15 * 1000)
#endif
#define BUSY_BACKOFF_MS 50
/* The server truncates error messages at 512 bytes (ERRMSGSIZE). */
#define MESSAGE_MAX 512

/* The server functions we call, found in mariadbd's symbol table. */
typedef struct ServerApi
{
	void *(*current_thd)(void);
	const char *(*priv_user)(void *thd, size_t *length);
	const char *(*priv_host)(void *thd, size_t *length);
	unsigned long (*thread_id)(const void *thd);
	enum thd_kill_levels (*kill_level)(const void *thd);
	int (*connected)(void *thd);
	void (*message)(unsigned int error, const char *text, unsigned long flags);
	/* Optional (NULL if the server has none): see under_lock_tables(). */
	long long (*test_options)(const void *thd, long long options);
} ServerApi;

/* What one function call in one statement keeps between rows. */
typedef struct UdfCall
{
	ServerApi api;
	const char *function; /* SQL name, for messages */
	const char *op;       /* protocol op */
	bool done;            /* the agent has been asked (once per statement) */
	bool failed;          /* ... and the call failed (error already raised) */
	bool heard;           /* a keepalive came: the agent waits for its job */
	char *result;         /* malloc'd result JSON text */
	size_t result_len;
	char *first_arg; /* the first row's argument (malloc'd), or NULL */
	size_t first_arg_len;
	bool first_arg_kept; /* first_arg holds it (not NULL, not out of memory) */
} UdfCall;

/* What an argument check accepts. */
typedef enum ArgRule
{
	ARG_NONE,            /* bk_status() */
	ARG_OPTIONAL_STRING, /* bk_snapshot([options]) */
	ARG_ID               /* bk_snapshot_cancel(id): string or integer */
} ArgRule;

/* ---------------------------------------------------------------- setup */

/* Look up one server symbol; false (and message filled) when absent. */
static bool
resolve(void **slot, const char *symbol, const char *function, char *message)
{
	*slot = dlsym(RTLD_DEFAULT, symbol);
	if (*slot != NULL)
		return true;
	snprintf(message, 80, "%s: server function %s not found", function, symbol);
	return false;
}

/*
 * Common x_init: check the arguments against rule, resolve the server API
 * and allocate the per-statement state.  Returns 0, or 1 with message set
 * (the client sees "Can't initialize function 'x'; <message>").
 */
static my_bool
udf_init(UDF_INIT *initid, UDF_ARGS *args, char *message, const char *function,
		 const char *op, ArgRule rule, const char *usage)
{
	UdfCall *call;
	ServerApi api;

	switch (rule)
	{
		case ARG_NONE:
			if (args->arg_count != 0)
			{
				snprintf(message, 80, "%s", usage);
				return 1;
			}
			break;
		case ARG_OPTIONAL_STRING:
			if (args->arg_count > 1)
			{
				snprintf(message, 80, "%s", usage);
				return 1;
			}
			if (args->arg_count == 1 && args->arg_type[0] != STRING_RESULT)
			{
				snprintf(message, 80,
						 "%s: options must be a string (JSON or key=value)",
						 function);
				return 1;
			}
			break;
		case ARG_ID:
			if (args->arg_count != 1)
			{
				snprintf(message, 80, "%s", usage);
				return 1;
			}
			if (args->arg_type[0] != STRING_RESULT &&
				args->arg_type[0] != INT_RESULT)
			{
				snprintf(message, 80,
						 "%s: the snapshot id must be a string or an integer",
						 function);
				return 1;
			}
			/* The server converts an integer to its decimal text for us. */
			args->arg_type[0] = STRING_RESULT;
			break;
	}

	if (!resolve((void **) &api.current_thd, "_current_thd", function,
				 message) ||
		!resolve((void **) &api.priv_user, "thd_priv_user", function,
				 message) ||
		!resolve((void **) &api.priv_host, "thd_priv_host", function,
				 message) ||
		!resolve((void **) &api.thread_id, "thd_get_thread_id", function,
				 message) ||
		!resolve((void **) &api.kill_level, "thd_kill_level", function,
				 message) ||
		!resolve((void **) &api.connected, "thd_is_connected", function,
				 message) ||
		!resolve((void **) &api.message, "my_message", function, message))
		return 1;
	api.test_options = dlsym(RTLD_DEFAULT, "thd_test_options");

	call = calloc(1, sizeof(UdfCall));
	if (call == NULL)
	{
		snprintf(message, 80, "%s: out of memory", function);
		return 1;
	}
	call->api = api;
	call->function = function;
	call->op = op;
	initid->ptr = (char *) call;
	initid->maybe_null = 1;
	initid->const_item = 0;
	initid->max_length = MAX_REPLY_LEN;
	return 0;
}

/* Common x_deinit: free the per-statement state. */
static void
udf_deinit(UDF_INIT *initid)
{
	UdfCall *call = (UdfCall *) initid->ptr;

	if (call == NULL)
		return;
	free(call->result);
	free(call->first_arg);
	free(call);
	initid->ptr = NULL;
}

/* ---------------------------------------------------------------- errors */

/*
 * Raise an SQL error with the function name as prefix and remember that
 * this statement's call failed.  Always returns false.
 */
static bool __attribute__((format(printf, 2, 3)))
raise_error(UdfCall *call, const char *fmt, ...)
{
	char text[MESSAGE_MAX];
	int prefix;
	va_list args;

	prefix = snprintf(text, sizeof(text), "%s: ", call->function);
	va_start(args, fmt);
	vsnprintf(text + prefix, sizeof(text) - prefix, fmt, args);
	va_end(args);
	call->failed = true;
	call->api.message(BK_ER_UNKNOWN_ERROR, text, 0);
	return false;
}

/* strerror into a caller buffer (strerror itself is not thread-safe). */
static const char *
error_text(int errnum, char *buf, size_t size)
{
	return strerror_r(errnum, buf, size);
}

/* ---------------------------------------------------------------- JSON out */

/*
 * Length of the valid UTF-8 sequence at in[0..len), or 0 if it is not one
 * (bad lead byte, truncated, overlong, surrogate, above U+10FFFF).
 */
static size_t
utf8_sequence_length(const unsigned char *in, size_t len)
{
	size_t need;
	uint32_t cp;

	if (in[0] < 0x80)
		return 1;
	if (in[0] >= 0xC2 && in[0] <= 0xDF)
		need = 2, cp = in[0] & 0x1F;
	else if (in[0] >= 0xE0 && in[0] <= 0xEF)
		need = 3, cp = in[0] & 0x0F;
	else if (in[0] >= 0xF0 && in[0] <= 0xF4)
		need = 4, cp = in[0] & 0x07;
	else
		return 0;
	if (len < need)
		return 0;
	for (size_t i = 1; i < need; i++)
	{
		if ((in[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (in[i] & 0x3F);
	}
	if ((need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) ||
		(cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
		return 0;
	return need;
}

/*
 * Append in[0..len) to out as the inside of a JSON string: '"' and '\'
 * escaped, control characters as \u00XX, valid UTF-8 passed through and
 * any other byte replaced by \uFFFD.  out needs room for 6 * len bytes.
 * Returns the number of bytes written.
 */
static size_t
json_escape(char *out, const char *in, size_t len)
{
	const unsigned char *s = (const unsigned char *) in;
	char *o = out;
	size_t i = 0;

	while (i < len)
	{
		size_t n;

		if (s[i] == '"' || s[i] == '\\')
		{
			*o++ = '\\';
			*o++ = (char) s[i++];
			continue;
		}
		if (s[i] < 0x20 || s[i] == 0x7F)
		{
			o += sprintf(o, "\\u%04x", s[i++]);
			continue;
		}
		n = utf8_sequence_length(s + i, len - i);
		if (n == 0)
		{
			memcpy(o, "\\ufffd", 6);
			o += 6;
			i++;
			continue;
		}
		memcpy(o, s + i, n);
		o += n;
		i += n;
	}
	return (size_t) (o - out);
}

/* Append a JSON string value, quotes included. */
static size_t
json_string(char *out, const char *in, size_t len)
{
	size_t n;

	out[0] = '"';
	n = json_escape(out + 1, in, len);
	out[n + 1] = '"';
	return n + 2;
}

/*
 * The request line for this call, malloc'd, '\n'-terminated; NULL (error
 * raised) if the argument is too long or memory runs out.
 */
static char *
build_request(UdfCall *call, void *thd, UDF_ARGS *args, size_t *request_len)
{
	const char *user;
	const char *host;
	const char *arg = NULL;
	size_t user_len = 0;
	size_t host_len = 0;
	size_t arg_len = 0;
	size_t size;
	char *request;
	char *o;

	user = call->api.priv_user(thd, &user_len);
	host = call->api.priv_host(thd, &host_len);
	if (user == NULL)
		user = "", user_len = 0;
	if (host == NULL)
		host = "", host_len = 0;
	/*
	 * NULL is refused, not taken for no argument: bk_snapshot(@opts) with
	 * @opts unset would start a default snapshot the caller did not ask
	 * for (PostgreSQL's bk_snapshot(NULL) is an error too).
	 */
	if (args->arg_count == 1 && args->args[0] == NULL)
	{
		raise_error(call, "the argument is NULL");
		return NULL;
	}
	if (args->arg_count == 1)
	{
		arg = args->args[0];
		arg_len = args->lengths[0];
		if (arg_len > MAX_ARGUMENT_LEN)
		{
			raise_error(call, "the argument is %lu bytes long; at most %d",
						(unsigned long) arg_len, MAX_ARGUMENT_LEN);
			return NULL;
		}
		/*
		 * Text in another character set would reach the agent altered.
		 * UTF-16, UCS-2 and UTF-32 text is full of NUL bytes, which are
		 * valid UTF-8 but which the agent refuses in a request.
		 */
		if (memchr(arg, '\0', arg_len) != NULL)
		{
			raise_error(call, "the argument contains a NUL byte (UTF-16 or "
							  "UTF-32?): give it as utf8mb4 (CONVERT(... "
							  "USING utf8mb4))");
			return NULL;
		}
		for (size_t pos = 0; pos < arg_len;)
		{
			size_t n = utf8_sequence_length((const unsigned char *) arg + pos,
											arg_len - pos);

			if (n == 0)
			{
				raise_error(call,
							"the argument is not UTF-8 (byte %lu); give it "
							"as UTF-8 text (SET NAMES utf8mb4, or "
							"CONVERT(... USING utf8mb4))",
							(unsigned long) pos + 1);
				return NULL;
			}
			pos += n;
		}
	}

	size = 256 + 6 * (user_len + host_len + arg_len);
	request = malloc(size);
	if (request == NULL)
	{
		raise_error(call, "out of memory");
		return NULL;
	}
	o = request;
	o += sprintf(o, "{\"version\":1,\"op\":\"%s\",\"user\":", call->op);
	o += json_string(o, user, user_len);
	o += sprintf(o, ",\"host\":");
	o += json_string(o, host, host_len);
	o += sprintf(o,
				 ",\"connection_id\":%lu,\"args\":", call->api.thread_id(thd));
	if (arg != NULL)
		o += json_string(o, arg, arg_len);
	else
		o += sprintf(o, "null");
	o += sprintf(o, "}\n");
	*request_len = (size_t) (o - request);
	/* Escaping can make a long argument up to six times longer. */
	if (*request_len > MAX_REQUEST_LEN)
	{
		raise_error(call,
					"the argument is %lu bytes long, %lu once escaped for "
					"bk-mysql-agent, which accepts requests of at most %d "
					"bytes; shorten it (control characters and invalid "
					"UTF-8 take six bytes each)",
					(unsigned long) arg_len, (unsigned long) *request_len,
					MAX_REQUEST_LEN);
		free(request);
		return NULL;
	}
	return request;
}

/* ---------------------------------------------------------------- JSON in */

/* Skip JSON white space. */
static const char *
skip_space(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

/* Past the end of the JSON string starting at p ('"'), or NULL. */
static const char *
skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++)
	{
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/*
 * Past the end of the JSON value starting at p, or NULL if it is cut short.
 * Containers are skipped by bracket depth: the agent produced the text with
 * a JSON library, so this only has to find its extent, not validate it.
 */
static const char *
skip_value(const char *p, const char *end)
{
	int depth = 0;

	if (p >= end)
		return NULL;
	if (*p == '"')
		return skip_string(p, end);
	if (*p != '{' && *p != '[')
	{
		const char *start = p;

		while (p < end && strchr(",}] \t\r\n", *p) == NULL)
			p++;
		return p > start ? p : NULL;
	}
	while (p < end)
	{
		if (*p == '"')
		{
			p = skip_string(p, end);
			if (p == NULL)
				return NULL;
			continue;
		}
		if (*p == '{' || *p == '[')
			depth++;
		else if (*p == '}' || *p == ']')
		{
			if (--depth == 0)
				return p + 1;
		}
		p++;
	}
	return NULL;
}

/* Append code point cp to out as UTF-8; returns the bytes written. */
static size_t
put_utf8(char *out, uint32_t cp)
{
	if (cp < 0x80)
		return out[0] = (char) cp, 1;
	if (cp < 0x800)
	{
		out[0] = (char) (0xC0 | (cp >> 6));
		out[1] = (char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		out[0] = (char) (0xE0 | (cp >> 12));
		out[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char) (0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char) (0xF0 | (cp >> 18));
	out[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char) (0x80 | (cp & 0x3F));
	return 4;
}

/* Four hex digits at p as a number, or -1. */
static long
hex4(const char *p, const char *end)
{
	long v = 0;

	if (end - p < 4)
		return -1;
	for (int i = 0; i < 4; i++)
	{
		int c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/*
 * Decode the JSON string [p, end) (quotes included) into out (size bytes,
 * NUL-terminated, cut short if needed, on a character boundary).  Line
 * breaks and other control characters become spaces: the text ends up in
 * a one-line SQL error.
 */
static void
decode_string(const char *p, const char *end, char *out, size_t size)
{
	size_t n = 0;

	p++;
	end--;
	while (p < end && n + 5 < size)
	{
		uint32_t cp;

		if (*p != '\\')
		{
			unsigned char c = (unsigned char) *p++;

			out[n++] = c < 0x20 ? ' ' : (char) c;
			continue;
		}
		p++;
		if (p >= end)
			break;
		switch (*p++)
		{
			case 'u':
			{
				long v = hex4(p, end);

				if (v < 0)
					v = 0xFFFD;
				else
					p += 4;
				cp = (uint32_t) v;
				if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 &&
					p[0] == '\\' && p[1] == 'u')
				{
					long low = hex4(p + 2, end);

					if (low >= 0xDC00 && low <= 0xDFFF)
					{
						cp = 0x10000 + ((cp - 0xD800) << 10) +
							 ((uint32_t) low - 0xDC00);
						p += 6;
					}
				}
				if (cp >= 0xD800 && cp <= 0xDFFF)
					cp = 0xFFFD;
				if (cp < 0x20)
					cp = ' ';
				n += put_utf8(out + n, cp);
				break;
			}
			case 'b':
			case 'f':
			case 'n':
			case 'r':
			case 't':
				out[n++] = ' ';
				break;
			default: /* \" \\ \/ */
				out[n++] = p[-1];
				break;
		}
	}
	/*
	 * Cut short in the middle of a character (raw UTF-8 bytes are copied
	 * one at a time): back up to its first byte, or the server would show
	 * a broken character, or refuse the message.
	 */
	if (p < end && n > 0)
	{
		size_t start = n;

		while (start > 0 && ((unsigned char) out[start - 1] & 0xC0) == 0x80)
			start--;
		if (start > 0 && (unsigned char) out[start - 1] >= 0xC0 &&
			utf8_sequence_length((unsigned char *) out + start - 1,
								 n - (start - 1)) == 0)
			n = start - 1;
	}
	out[n] = '\0';
}

/* Does the JSON string [p, end) (quotes included) equal word? */
static bool
key_is(const char *p, const char *end, const char *word)
{
	size_t len = strlen(word);

	return (size_t) (end - p) == len + 2 && memcmp(p + 1, word, len) == 0;
}

/* What handle_reply made of a reply. */
typedef enum ReplyOutcome
{
	REPLY_OK,     /* the result is kept */
	REPLY_FAILED, /* the error is raised */
	REPLY_BUSY    /* the agent asks to try again: nothing raised */
} ReplyOutcome;

/*
 * Take the reply line apart: {"ok":true,"result":V} keeps V's text as the
 * call's result, {"ok":false,"error":"..."} raises the message, unless it
 * also says "busy":true and retry is set (REPLY_BUSY).
 */
static ReplyOutcome
handle_reply(UdfCall *call, const char *reply, size_t len, bool retry)
{
	const char *end = reply + len;
	const char *p = skip_space(reply, end);
	const char *result = NULL;
	const char *result_end = NULL;
	const char *error = NULL;
	const char *error_end = NULL;
	bool busy = false;
	int ok = -1;

	if (p >= end || *p != '{')
		goto malformed;
	p = skip_space(p + 1, end);
	while (p < end && *p != '}')
	{
		const char *key = p;
		const char *key_end;
		const char *value;
		const char *value_end;

		if (*p != '"' || (key_end = skip_string(p, end)) == NULL)
			goto malformed;
		p = skip_space(key_end, end);
		if (p >= end || *p != ':')
			goto malformed;
		value = skip_space(p + 1, end);
		value_end = skip_value(value, end);
		if (value_end == NULL)
			goto malformed;
		if (key_is(key, key_end, "ok"))
		{
			if (value_end - value == 4 && memcmp(value, "true", 4) == 0)
				ok = 1;
			else if (value_end - value == 5 && memcmp(value, "false", 5) == 0)
				ok = 0;
			else
				goto malformed;
		}
		else if (key_is(key, key_end, "result"))
			result = value, result_end = value_end;
		else if (key_is(key, key_end, "error") && *value == '"')
			error = value, error_end = value_end;
		else if (key_is(key, key_end, "busy"))
			busy = value_end - value == 4 && memcmp(value, "true", 4) == 0;
		p = skip_space(value_end, end);
		if (p < end && *p == ',')
			p = skip_space(p + 1, end);
		else if (p >= end || *p != '}')
			goto malformed;
	}
	if (p >= end || skip_space(p + 1, end) != end)
		goto malformed;

	if (ok == 1 && result != NULL)
	{
		call->result_len = (size_t) (result_end - result);
		call->result = malloc(call->result_len + 1);
		if (call->result == NULL)
		{
			raise_error(call, "out of memory");
			return REPLY_FAILED;
		}
		memcpy(call->result, result, call->result_len);
		call->result[call->result_len] = '\0';
		return REPLY_OK;
	}
	if (ok == 0 && busy && retry)
		return REPLY_BUSY;
	if (ok == 0 && error != NULL)
	{
		char text[MESSAGE_MAX - 64];

		decode_string(error, error_end, text, sizeof(text));
		raise_error(call, "%s", text);
		return REPLY_FAILED;
	}
	if (ok == 0)
	{
		raise_error(call, "bk-mysql-agent refused the call without saying "
						  "why (see the agent's log)");
		return REPLY_FAILED;
	}

malformed:
	raise_error(call, "malformed reply from bk-mysql-agent (see the agent's "
					  "log)");
	return REPLY_FAILED;
}

/* ---------------------------------------------------------------- socket */

/* The agent's socket path: BK_AGENT_SOCKET from the environment or built in. */
static const char *
agent_socket_path(void)
{
	const char *path = secure_getenv("BK_AGENT_SOCKET");

	return path != NULL && path[0] != '\0' ? path : BK_AGENT_SOCKET;
}

/*
 * What becomes of the call once the UDF stops waiting for it, for the
 * message.  The agent does not start a call whose caller has gone, and
 * cancels a snapshot it is waiting for when its caller goes; but the UDF
 * cannot know whether the agent got that far: a snapshot started with
 * wait=false, or a cancel, may already be done.  A keepalive heard says
 * that the agent started the snapshot and waits for it: it cancels it.
 */
static const char *
abandoned_outcome(const UdfCall *call)
{
	if (strcmp(call->op, "snapshot") == 0 && call->heard)
		return "the agent cancels the snapshot";
	if (strcmp(call->op, "snapshot") == 0)
		return "the agent cancels the snapshot, or does not start it (one "
			   "started with wait=false runs on: see bk_status())";
	if (strcmp(call->op, "snapshot_cancel") == 0)
		return "the call was abandoned (the cancel may already have been "
			   "made: see bk_status())";
	return "the call was abandoned";
}

/*
 * abandoned
 *		The statement was killed, or its client went away.  Any kill ends the
 *		wait, the soft ones too: max_statement_time kills softly
 *		(KILL_TIMEOUT), and so do KILL SOFT QUERY and LIMIT ROWS EXAMINED;
 *		"soft" only spares tables a half-done change, and waiting for the
 *		agent changes none.  thd_killed(), true only for a hard kill, would
 *		let a timed-out statement wait for the whole snapshot.  The server
 *		does not kill a statement whose client disconnected, so the
 *		connection is asked too (thd_is_connected, which the server's own
 *		lock waits use).  Raises the error and returns true; the caller then
 *		closes the socket, which tells the agent to cancel.
 */
static bool
abandoned(UdfCall *call, void *thd)
{
	enum thd_kill_levels level = call->api.kill_level(thd);

	if (level == THD_ABORT_ASAP)
	{
		raise_error(call, "query killed; %s", abandoned_outcome(call));
		return true;
	}
	if (level != THD_IS_NOT_KILLED)
	{
		raise_error(call,
					"query interrupted (max_statement_time, or KILL SOFT); %s",
					abandoned_outcome(call));
		return true;
	}
	if (!call->api.connected(thd))
	{
		raise_error(call, "the client went away; %s", abandoned_outcome(call));
		return true;
	}
	return false;
}

/*
 * Wait up to one tick for events on fd.  Returns 1 if ready, 0 on timeout
 * or EINTR, -1 on error (errno set).
 */
static int
wait_tick(int fd, short events)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	int rc = poll(&pfd, 1, TICK_MS);

	if (rc < 0 && errno == EINTR)
		return 0;
	return rc;
}

/* Connect to the agent; returns the socket or -1 (error raised). */
static int
connect_agent(UdfCall *call, void *thd, const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	char ebuf[128];
	int waited_ms = 0;
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path))
	{
		raise_error(call, "socket path %s is too long for a Unix socket", path);
		return -1;
	}
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
	{
		raise_error(call, "could not create a socket: %s",
					error_text(errno, ebuf, sizeof(ebuf)));
		return -1;
	}
	while (connect(fd, (struct sockaddr *) &addr, sizeof(addr)) != 0)
	{
		/* A full listen backlog: the agent is busy, try again shortly. */
		if (errno == EAGAIN && waited_ms < CONNECT_RETRY_MS)
		{
			if (abandoned(call, thd))
			{
				close(fd);
				return -1;
			}
			poll(NULL, 0, TICK_MS);
			waited_ms += TICK_MS;
			continue;
		}
		if (errno == EINTR)
			continue;
		raise_error(call,
					"cannot reach bk-mysql-agent at %s: %s; is the agent "
					"running?",
					path, error_text(errno, ebuf, sizeof(ebuf)));
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Send the whole request; false (error raised) on failure or kill.  An
 * agent that refuses the caller (its uid, too many calls) answers and
 * closes without reading the request: a send that finds the connection
 * closed stops there, and the reply, already waiting, is read next.
 */
static bool
send_request(UdfCall *call, void *thd, int fd, const char *request, size_t len)
{
	char ebuf[128];
	size_t sent = 0;

	while (sent < len)
	{
		ssize_t n = send(fd, request + sent, len - sent, MSG_NOSIGNAL);

		if (n > 0)
		{
			sent += (size_t) n;
			continue;
		}
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			return true; /* receive_reply reads its answer, or says none */
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return raise_error(call,
							   "could not send the request to "
							   "bk-mysql-agent: %s",
							   error_text(errno, ebuf, sizeof(ebuf)));
		if (abandoned(call, thd))
			return false;
		if (wait_tick(fd, POLLOUT) < 0)
			return raise_error(call, "poll failed: %s",
							   error_text(errno, ebuf, sizeof(ebuf)));
	}
	return true;
}

/* Milliseconds on the monotonic clock. */
static int64_t
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Read the reply line (without its '\n') into a malloc'd buffer.  Waits as
 * long as the agent works (bk_snapshot: while its keepalives come, at
 * most BK_UDF_SILENCE_MS apart) or QUICK_CALL_TIMEOUT_MS (the other
 * functions), but gives up at once when the query is killed.
 */
static char *
receive_reply(UdfCall *call, void *thd, int fd, size_t *reply_len)
{
	bool quick = strcmp(call->op, "snapshot") != 0;
	int64_t deadline =
		monotonic_ms() + (quick ? QUICK_CALL_TIMEOUT_MS : BK_UDF_SILENCE_MS);
	char ebuf[128];
	size_t capacity = 4096;
	size_t len = 0;
	char *reply = malloc(capacity);

	if (reply == NULL)
	{
		raise_error(call, "out of memory");
		return NULL;
	}
	for (;;)
	{
		ssize_t n;
		char *newline;

		if (len == capacity)
		{
			char *bigger;

			if (capacity > MAX_REPLY_LEN)
			{
				raise_error(call,
							"the reply of bk-mysql-agent is larger than "
							"%d bytes; refused",
							MAX_REPLY_LEN);
				break;
			}
			capacity *= 2;
			bigger = realloc(reply, capacity + 1);
			if (bigger == NULL)
			{
				raise_error(call, "out of memory");
				break;
			}
			reply = bigger;
		}
		n = recv(fd, reply + len, capacity - len, 0);
		if (n > 0)
		{
			if (!quick)
				deadline = monotonic_ms() + BK_UDF_SILENCE_MS;
			/* Keepalives before the reply: dropped, not piled up. */
			if (len == 0)
			{
				size_t spaces = 0;

				while (spaces < (size_t) n && reply[spaces] == ' ')
					spaces++;
				call->heard = call->heard || spaces > 0;
				memmove(reply, reply + spaces, (size_t) n - spaces);
				n -= (ssize_t) spaces;
				if (n == 0)
					continue;
			}
			newline = memchr(reply + len, '\n', (size_t) n);
			len += (size_t) n;
			if (newline != NULL)
			{
				*reply_len = (size_t) (newline - reply);
				if (*reply_len > MAX_REPLY_LEN)
				{
					raise_error(call,
								"the reply of bk-mysql-agent is larger than "
								"%d bytes; refused",
								MAX_REPLY_LEN);
					break;
				}
				return reply;
			}
			continue;
		}
		if (n == 0)
		{
			raise_error(call, "bk-mysql-agent closed the connection without "
							  "a reply (see the agent's log)");
			break;
		}
		if (errno != EAGAIN && errno != EINTR)
		{
			raise_error(call, "could not read the reply of bk-mysql-agent: %s",
						error_text(errno, ebuf, sizeof(ebuf)));
			break;
		}
		if (abandoned(call, thd))
			break;
		if (quick && monotonic_ms() >= deadline)
		{
			raise_error(call,
						"bk-mysql-agent did not answer within %d s; the call "
						"was abandoned (see the agent's log: is it hung?)",
						QUICK_CALL_TIMEOUT_MS / 1000);
			break;
		}
		if (!quick && monotonic_ms() >= deadline)
		{
			raise_error(call,
						"bk-mysql-agent is not answering: nothing for %d s, "
						"though it sends a keepalive every %d s while it "
						"works on a snapshot (is it hung or stopped? see its "
						"log); the call was abandoned: %s",
						BK_UDF_SILENCE_MS / 1000,
						BK_CONTROL_KEEPALIVE_MS / 1000,
						abandoned_outcome(call));
			break;
		}
		if (wait_tick(fd, POLLIN) < 0)
		{
			raise_error(call, "poll failed: %s",
						error_text(errno, ebuf, sizeof(ebuf)));
			break;
		}
	}
	free(reply);
	return NULL;
}

/*
 * Wait ms before asking a busy agent again, a tick at a time; false (error
 * raised) if the statement is killed meanwhile.
 */
static bool
busy_wait(UdfCall *call, void *thd, int ms)
{
	for (int waited = 0; waited < ms; waited += TICK_MS)
	{
		if (abandoned(call, thd))
			return false;
		poll(NULL, 0, ms - waited < TICK_MS ? ms - waited : TICK_MS);
	}
	return !abandoned(call, thd);
}

/*
 * Send the request and take the reply apart, again while the agent says
 * it is busy (for BUSY_RETRY_MS at most, with a growing wait between
 * tries: the agent is busy when many calls come at once).  The error, if
 * any, is raised.
 */
static void
ask_agent(UdfCall *call, void *thd, const char *request, size_t request_len)
{
	int64_t give_up = monotonic_ms() + BUSY_RETRY_MS;
	/* Spread the retries of callers refused together. */
	int backoff = BUSY_BACKOFF_MS + (int) (monotonic_ms() % BUSY_BACKOFF_MS);

	for (;;)
	{
		bool retry = monotonic_ms() < give_up;
		ReplyOutcome outcome = REPLY_FAILED;
		char *reply = NULL;
		size_t reply_len = 0;
		int fd = connect_agent(call, thd, agent_socket_path());

		if (fd >= 0)
		{
			/* Closing fd before a reply is how the agent learns to cancel. */
			if (send_request(call, thd, fd, request, request_len))
				reply = receive_reply(call, thd, fd, &reply_len);
			close(fd);
		}
		if (reply != NULL)
			outcome = handle_reply(call, reply, reply_len, retry);
		free(reply);
		if (outcome != REPLY_BUSY || !busy_wait(call, thd, backoff))
			return;
		backoff = backoff * 2 < 1000 ? backoff * 2 : 1000;
	}
}

/*
 * under_lock_tables
 *		Whether the calling session is under LOCK TABLES, which the snapshot
 *		cannot be made under: the agent makes it on connections of its own,
 *		whose BACKUP STAGE START and table reads wait for the locks a LOCK
 *		TABLES ... WRITE holds, until its lock wait ends (10 s), and then
 *		blame another session.  The caller's session itself waits for the
 *		agent meanwhile, so it never releases them: refused at once.  A
 *		session under LOCK TABLES ... READ only does not block the snapshot,
 *		but the plugin API does not tell READ from WRITE: it is refused too,
 *		at the cost of an UNLOCK TABLES.  False if the server lacks
 *		thd_test_options() (the agent then fails the snapshot as before).
 */
static bool
under_lock_tables(const UdfCall *call, void *thd)
{
	if (call->api.test_options == NULL)
		return false;
	/* Only bit 21 is looked at: an older API returned an int. */
	return (call->api.test_options(thd, (long long) BK_OPTION_TABLE_LOCK) &
			(long long) BK_OPTION_TABLE_LOCK) != 0;
}

/*
 * Common x(): ask the agent at the first row, return the cached result for
 * every row.  On failure the SQL error is raised and NULL returned.
 */
static char *
udf_call(UDF_INIT *initid, UDF_ARGS *args, unsigned long *length, char *is_null,
		 char *error)
{
	UdfCall *call = (UdfCall *) initid->ptr;
	void *thd;
	char *request;
	size_t request_len = 0;

	/*
	 * One call per statement, made at the first row: a later row with
	 * another argument (SELECT bk_snapshot_cancel(id) FROM t) would get the
	 * first row's answer as its own.
	 */
	if (call->done && !call->failed && call->first_arg_kept &&
		(args->args[0] == NULL || args->lengths[0] != call->first_arg_len ||
		 memcmp(args->args[0], call->first_arg, call->first_arg_len) != 0))
	{
		raise_error(call, "one statement makes one call: a row gives "
						  "another argument than the first row, whose call "
						  "was made");
		call->failed = true;
	}
	if (!call->done)
	{
		call->done = true;
		if (args->arg_count == 1 && args->args[0] != NULL &&
			(call->first_arg = malloc(args->lengths[0] + 1)) != NULL)
		{
			memcpy(call->first_arg, args->args[0], args->lengths[0]);
			call->first_arg_len = args->lengths[0];
			call->first_arg_kept = true;
		}
		thd = call->api.current_thd();
		if (thd == NULL)
			raise_error(call, "no current connection");
		else if (strcmp(call->op, "snapshot") == 0 &&
				 under_lock_tables(call, thd))
			raise_error(call,
						"this session is under LOCK TABLES, whose locks the "
						"snapshot (made by bk-mysql-agent on connections of "
						"its own) would wait for in vain until its lock "
						"wait times out: run UNLOCK TABLES first, then call "
						"bk_snapshot() again");
		else if ((request = build_request(call, thd, args, &request_len)) !=
				 NULL)
		{
			ask_agent(call, thd, request, request_len);
			free(request);
		}
	}
	if (call->failed)
	{
		*is_null = 1;
		*error = 1;
		return NULL;
	}
	*length = call->result_len;
	return call->result;
}

/* ---------------------------------------------------------------- exports */

BK_UDF_EXPORT my_bool bk_snapshot_init(UDF_INIT *initid, UDF_ARGS *args,
									   char *message);
BK_UDF_EXPORT void bk_snapshot_deinit(UDF_INIT *initid);
BK_UDF_EXPORT char *bk_snapshot(UDF_INIT *initid, UDF_ARGS *args, char *result,
								unsigned long *length, char *is_null,
								char *error);
BK_UDF_EXPORT my_bool bk_snapshot_cancel_init(UDF_INIT *initid, UDF_ARGS *args,
											  char *message);
BK_UDF_EXPORT void bk_snapshot_cancel_deinit(UDF_INIT *initid);
BK_UDF_EXPORT char *bk_snapshot_cancel(UDF_INIT *initid, UDF_ARGS *args,
									   char *result, unsigned long *length,
									   char *is_null, char *error);
BK_UDF_EXPORT my_bool bk_status_init(UDF_INIT *initid, UDF_ARGS *args,
									 char *message);
BK_UDF_EXPORT void bk_status_deinit(UDF_INIT *initid);
BK_UDF_EXPORT char *bk_status(UDF_INIT *initid, UDF_ARGS *args, char *result,
							  unsigned long *length, char *is_null,
							  char *error);

/* bk_snapshot([options]): start a snapshot; options go to the agent raw. */
my_bool
bk_snapshot_init(UDF_INIT *initid, UDF_ARGS *args, char *message)
{
	return udf_init(initid, args, message, "bk_snapshot", "snapshot",
					ARG_OPTIONAL_STRING,
					"bk_snapshot() takes at most one argument: options as "
					"JSON or key=value");
}

void
bk_snapshot_deinit(UDF_INIT *initid)
{
	udf_deinit(initid);
}

char *
bk_snapshot(UDF_INIT *initid, UDF_ARGS *args, char *result,
			unsigned long *length, char *is_null, char *error)
{
	return udf_call(initid, args, length, is_null, error);
}

/* bk_snapshot_cancel(id): cancel a snapshot in progress. */
my_bool
bk_snapshot_cancel_init(UDF_INIT *initid, UDF_ARGS *args, char *message)
{
	return udf_init(initid, args, message, "bk_snapshot_cancel",
					"snapshot_cancel", ARG_ID,
					"bk_snapshot_cancel() takes one argument: the snapshot id");
}

void
bk_snapshot_cancel_deinit(UDF_INIT *initid)
{
	udf_deinit(initid);
}

char *
bk_snapshot_cancel(UDF_INIT *initid, UDF_ARGS *args, char *result,
				   unsigned long *length, char *is_null, char *error)
{
	return udf_call(initid, args, length, is_null, error);
}

/* bk_status(): the agent's state as JSON. */
my_bool
bk_status_init(UDF_INIT *initid, UDF_ARGS *args, char *message)
{
	return udf_init(initid, args, message, "bk_status", "status", ARG_NONE,
					"bk_status() takes no arguments");
}

void
bk_status_deinit(UDF_INIT *initid)
{
	udf_deinit(initid);
}

char *
bk_status(UDF_INIT *initid, UDF_ARGS *args, char *result, unsigned long *length,
		  char *is_null, char *error)
{
	return udf_call(initid, args, length, is_null, error);
}
