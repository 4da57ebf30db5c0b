/*
 * test_udf_agent.h
 *		The agent side of test_udf: mysql_agent/control.c with a handler
 *		that records what it was asked.  Apart from test_udf.c because
 *		<mysql.h> and <jansson.h> clash with bk_udf.c's own names.
 */
#ifndef BK_TEST_UDF_AGENT_H
#define BK_TEST_UDF_AGENT_H

#include <stdbool.h>
#include <stdint.h>

/* Listen on path (fails the test if it cannot); stop and remove it. */
extern void udf_agent_start(const char *path);
extern void udf_agent_stop(void);

/* Forget the calls seen so far. */
extern void udf_agent_reset(void);

/*
 * The next times calls of user "busy" get a "busy" reply (-1: all); each
 * counts as a call.
 */
extern void udf_agent_set_busy(int times);

/* Handler calls since the reset. */
extern int udf_agent_calls(void);

/* A call that waited saw its caller go (bk_control_peer_gone). */
extern bool udf_agent_saw_peer_gone(void);

/* The last request's account, connection id and whether it had args. */
extern const char *udf_agent_last_user(void);
extern const char *udf_agent_last_host(void);
extern uint64_t udf_agent_last_connection_id(void);
extern bool udf_agent_last_had_args(void);

#endif /* BK_TEST_UDF_AGENT_H */
