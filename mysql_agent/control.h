/*
 * control.h
 *		bk-mysql-agent's control socket: the server side of the calls that
 *		bk_udf.so (bk_snapshot(), bk_snapshot_cancel(), bk_status()) makes
 *		from inside mariadbd.
 *
 * One request line in, one reply line out, per connection; the protocol is
 * in docs/mysql-agent-protocol.md.  bk_control_start() listens on a Unix
 * socket and runs the handler in a thread per call (at most
 * BK_CONTROL_MAX_CALLS at once); only peers whose uid (SO_PEERCRED) is in
 * the allowed list get that far.  The handler decides, per call, whether
 * the SQL account that called the function may do so:
 * bk_control_auth_check() answers that from the server's role grants.
 */
#ifndef BK_CONTROL_H
#define BK_CONTROL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <mysql.h>

#include "bk_error.h"
#include "control_protocol.h"

/*
 * Authorized calls in progress at once; more get a "busy" reply.  Calls
 * not yet authorized do not count: a flood of refused callers cannot take
 * the slots of an authorized one.
 */
#define BK_CONTROL_MAX_CALLS 16
/*
 * Connections being read or authorized at once (authorization is one
 * short query); more get a "busy" reply, which the UDF retries.
 */
#define BK_CONTROL_MAX_PENDING 64
/* Longest wait for the authorization connection before a "busy" reply. */
#define BK_CONTROL_AUTH_WAIT_MS 2000
/* Refused calls are logged once per this many ms, with a count. */
#define BK_CONTROL_REFUSAL_LOG_MS 60000
/* Time a client has to send its request, in milliseconds. */
#define BK_CONTROL_REQUEST_TIMEOUT_MS 5000

/* One validated request.  The strings live until the handler returns. */
typedef struct BkControlRequest
{
	const char *op;         /* "snapshot", "snapshot_cancel" or "status" */
	const char *user;       /* SQL account that called: thd_priv_user */
	const char *host;       /* ... and its host part: thd_priv_host */
	uint64_t connection_id; /* the caller's connection (CONNECTION_ID()) */
	const char *args;       /* raw function argument; NULL if none or NULL */
} BkControlRequest;

/* One connection, from accept to reply. */
typedef struct BkControlCall BkControlCall;

/*
 * True once the caller has gone (closed or reset its end: KILL QUERY,
 * client disconnect) or the control socket is stopping.  Long handlers
 * poll it and abandon their work when it turns true.  Never blocks.
 */
extern bool bk_control_peer_gone(BkControlCall *call);

/*
 * Tell the caller the call is still being worked on: one space, which the
 * UDF skips before the reply (JSON white space).  A long handler sends one
 * every BK_CONTROL_KEEPALIVE_MS, or the UDF takes the agent for hung.
 * Never blocks; a failure is left to bk_control_peer_gone() to see.
 */
extern void bk_control_keepalive(BkControlCall *call);

/*
 * Runs in the call's own thread.  Returns the result as malloc'd JSON text
 * (any JSON value; it is freed by the caller), or NULL with err set, whose
 * message (and hint, if any) becomes the SQL error the caller sees.
 */
typedef char *(*BkControlHandler)(void *arg, BkControlCall *call,
								  const BkControlRequest *req, BkError *err);

/* Where log lines go (refused peers, failed replies); may be NULL: stderr. */
typedef void (*BkControlLog)(void *arg, const char *message);

/*
 * May req's account call at all?  Runs in the call's thread before the
 * call takes one of the BK_CONTROL_MAX_CALLS slots.  Returns false with
 * err set to refuse: BK_ERR_TIMEOUT means "busy, try again" (the reply
 * says so and the UDF retries), anything else is a refusal.  Refusals are
 * logged, at most one line per BK_CONTROL_REFUSAL_LOG_MS.
 */
typedef bool (*BkControlAuthorize)(void *arg, const BkControlRequest *req,
								   BkError *err);

typedef struct BkControl BkControl;

/*
 * Listen on socket_path (mode 0660; its directory must exist) and serve
 * calls until bk_control_stop().  A stale socket file left by a dead agent
 * is replaced; a live one is an error.  authorize (NULL: everyone), handler
 * and log get arg.  Returns NULL with err set on failure.
 */
extern BkControl *bk_control_start(const char *socket_path,
								   const uid_t *allowed_uids, int n_allowed,
								   BkControlAuthorize authorize,
								   BkControlHandler handler, BkControlLog log,
								   void *arg, BkError *err);

/*
 * Stop accepting, remove the socket file, and wait for the calls in
 * progress to finish (bk_control_peer_gone() is true for them from now on).
 * NULL is allowed.
 */
extern void bk_control_stop(BkControl *control);

/*
 * bk_control_auth: whether an SQL account may call bk functions, asked of
 * the server on one connection kept open, with the statement prepared
 * once.  Calls take turns on it (a mutex, waited for at most
 * BK_CONTROL_AUTH_WAIT_MS); a lost connection is opened again.
 */
typedef struct BkControlAuth BkControlAuth;

/* Open a connection to the server; NULL with err set on failure. */
typedef MYSQL *(*BkControlConnect)(void *arg, BkError *err);

/*
 * An authorizer against roles (copied), connecting with connect(arg) at
 * the first check.  NULL with err set when out of memory.
 */
extern BkControlAuth *bk_control_auth_new(BkControlConnect connect, void *arg,
										  const char *const *roles, int n_roles,
										  BkError *err);
extern void bk_control_auth_free(BkControlAuth *auth);

/*
 * May the SQL account user@host call bk functions?  True if the account is
 * one of the roles (an entry "name@host", exactly) or has been granted one
 * of them (an entry "name", a role), directly or through up to three
 * levels of roles granted to roles (mysql.roles_mapping).  An account
 * named like a role is not that role.
 * False with err set otherwise: BK_ERR_USAGE for a refusal (the message
 * says which GRANT fixes it), BK_ERR_TIMEOUT if other checks held the
 * connection too long (busy), BK_ERR_IO if the server could not be asked.
 * Thread-safe.
 */
extern bool bk_control_auth_check(BkControlAuth *auth, const char *user,
								  const char *host, BkError *err);

#endif /* BK_CONTROL_H */
