/*
 * control_protocol.h
 *		The limits of the control socket's protocol that both of its ends
 *		keep: bk-mysql-agent (control.c) and bk_udf.so, which includes this
 *		header alone (it links nothing of bk's).  docs/mysql-agent-protocol.md
 *		describes the protocol.
 */
#ifndef BK_CONTROL_PROTOCOL_H
#define BK_CONTROL_PROTOCOL_H

/* Longest request line accepted, '\n' included. */
#define BK_CONTROL_MAX_REQUEST (64 * 1024)
/* Longest reply the UDF accepts; a longer result becomes an error reply. */
#define BK_CONTROL_MAX_REPLY (1024 * 1024)
/*
 * A handler that works long sends a keepalive this often: bk_udf.so gives
 * up on an agent silent for BK_UDF_SILENCE_MS (bk_udf.c), six of these.
 */
#define BK_CONTROL_KEEPALIVE_MS 5000

#endif /* BK_CONTROL_PROTOCOL_H */
