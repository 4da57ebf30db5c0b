/*
 * test_udf_agent.c
 *		The agent side of test_udf (see test_udf_agent.h).
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "control.h"
#include "test_udf_agent.h"

static BkControl *control;

static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static int calls;          /* handler calls */
static bool saw_peer_gone; /* a waiting call saw its caller go */
static char last_user[1024];
static char last_host[1024];
static uint64_t last_connection_id;
static bool last_had_args;
static int busy_left; /* busy replies still to give; -1: always */

/* User "busy" gets busy replies while busy_left says so (BkControlAuthorize). */
static bool
udf_authorize(void *arg, const BkControlRequest *req, BkError *err)
{
	bool busy;

	if (strcmp(req->user, "busy") != 0)
		return true;
	pthread_mutex_lock(&seen_lock);
	busy = busy_left != 0;
	if (busy_left > 0)
		busy_left--;
	calls++;
	pthread_mutex_unlock(&seen_lock);
	if (!busy)
		return true;
	return bk_error_set(err, BK_ERR_TIMEOUT, "the test agent is busy");
}

/*
 * status and snapshot_cancel: echo the op and account; with user "hang",
 * or for snapshot, first wait (10 s at most) for the caller to go, silent.
 * User "keepalive": a snapshot sends a keepalive every 300 ms for 3 s
 * (longer than the UDF's silence limit), then answers, unless the caller
 * goes first.
 */
static char *
udf_handler(void *arg, BkControlCall *call, const BkControlRequest *req,
			BkError *err)
{
	json_t *echo;
	char *text;

	pthread_mutex_lock(&seen_lock);
	calls++;
	snprintf(last_user, sizeof(last_user), "%s", req->user);
	snprintf(last_host, sizeof(last_host), "%s", req->host);
	last_connection_id = req->connection_id;
	last_had_args = req->args != NULL;
	pthread_mutex_unlock(&seen_lock);
	if (strcmp(req->op, "snapshot") == 0 && strcmp(req->user, "keepalive") == 0)
	{
		for (int tick = 0; tick < 10; tick++)
		{
			if (bk_control_peer_gone(call))
			{
				pthread_mutex_lock(&seen_lock);
				saw_peer_gone = true;
				pthread_mutex_unlock(&seen_lock);
				break;
			}
			bk_control_keepalive(call);
			usleep(300 * 1000);
		}
	}
	else if (strcmp(req->op, "snapshot") == 0 || strcmp(req->user, "hang") == 0)
	{
		for (int tick = 0; tick < 1000; tick++)
		{
			if (bk_control_peer_gone(call))
			{
				pthread_mutex_lock(&seen_lock);
				saw_peer_gone = true;
				pthread_mutex_unlock(&seen_lock);
				break;
			}
			usleep(10 * 1000);
		}
	}
	echo = json_pack("{s:s, s:s, s:s, s:I}", "op", req->op, "user", req->user,
					 "host", req->host, "connection_id",
					 (json_int_t) req->connection_id);
	text = json_dumps(echo, JSON_COMPACT);
	json_decref(echo);
	return text;
}

void
udf_agent_start(const char *path)
{
	uid_t self = getuid();
	BkError err;

	bk_error_clear(&err);
	control = bk_control_start(path, &self, 1, udf_authorize, udf_handler, NULL,
							   NULL, &err);
	if (control == NULL)
		fail_msg("bk_control_start: %s", err.message);
}

void
udf_agent_stop(void)
{
	bk_control_stop(control);
	control = NULL;
}

void
udf_agent_reset(void)
{
	pthread_mutex_lock(&seen_lock);
	calls = 0;
	saw_peer_gone = false;
	last_user[0] = last_host[0] = '\0';
	last_connection_id = 0;
	last_had_args = false;
	busy_left = 0;
	pthread_mutex_unlock(&seen_lock);
}

void
udf_agent_set_busy(int times)
{
	pthread_mutex_lock(&seen_lock);
	busy_left = times;
	pthread_mutex_unlock(&seen_lock);
}

int
udf_agent_calls(void)
{
	int n;

	pthread_mutex_lock(&seen_lock);
	n = calls;
	pthread_mutex_unlock(&seen_lock);
	return n;
}

bool
udf_agent_saw_peer_gone(void)
{
	bool gone;

	pthread_mutex_lock(&seen_lock);
	gone = saw_peer_gone;
	pthread_mutex_unlock(&seen_lock);
	return gone;
}

const char *
udf_agent_last_user(void)
{
	return last_user;
}

const char *
udf_agent_last_host(void)
{
	return last_host;
}

uint64_t
udf_agent_last_connection_id(void)
{
	return last_connection_id;
}

bool
udf_agent_last_had_args(void)
{
	return last_had_args;
}
