/*
 * agent.c
 *		bk-mysql-agent: the MariaDB side of bk, beside mariadbd.
 *
 * Why a daemon and not threads inside the server: a UDF library has no
 * library-level deinit, and DROP FUNCTION or a shutdown dlclose()s it under
 * a server-wide lock, so a thread left running in it crashes mariadbd.  The
 * binlog must also stream whether or not anyone calls SQL.  So the UDFs
 * (bk_udf.so, libc only) are a thin shim that asks this agent over a Unix
 * socket, and the agent holds everything heavy: the public key, librdkafka,
 * lz4, OpenSSL and MariaDB Connector/C.
 *
 * The main thread streams the binlog (binlog_stream.c); the control socket
 * (control.c) answers bk_status() from the shared status.  Signals only set
 * a flag; every wait in the agent is bounded and checks it (the kcat
 * pattern).  SIGTERM and SIGINT stop cleanly: the events received are sent
 * and acknowledged before the agent exits.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "agent.h"
#include "bk_audit.h"
#include "bk_config.h"
#include "bk_secret_file.h"
#include "bk_util.h"
#include "control.h"
#include "snapshot.h"

volatile sig_atomic_t agent_stop_requested;

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char usage_text[] =
	"Usage: " AGENT_PROGRAM " --config FILE [--brokers LIST]\n"
	"\n"
	"Streams a MariaDB server's binlog into Kafka, compressed and encrypted,\n"
	"as byte ranges of its files, and answers the bk_udf.so functions\n"
	"(bk_status(), bk_snapshot()) over a Unix socket.  Runs until SIGTERM.\n"
	"\n"
	"Settings (key = value lines in FILE):\n"
	"  source_id            this server's name in the archive (required)\n"
	"  kafka_brokers        bootstrap servers (or --brokers)\n"
	"  key_file             the PUBLIC key file (FILE.pub of bk keygen)\n"
	"  mysql_socket | mysql_host, mysql_port\n"
	"  mysql_user           [root]  mysql_password_file (mode 0600)\n"
	"  mysql_ssl_mode       disabled, required (TLS, server unchecked) or\n"
	"                       verify_identity (TLS, the server's certificate\n"
	"                       signed by mysql_ssl_ca and naming mysql_host)\n"
	"                       [verify_identity with mysql_ssl_ca; else required\n"
	"                       over TCP; disabled on the socket and loopback]\n"
	"  mysql_ssl_ca         PEM file of the CA of the server's certificate\n"
	"  mysql_ssl_cert, mysql_ssl_key (mode 0600)\n"
	"                       a client certificate (REQUIRE X509 accounts)\n"
	"  mysql_ssl_crl        revoked certificates (verify_identity)\n"
	"  server_id            replica id to register with (unique, non-zero)\n"
	"  range_size [16MiB]   range_interval [500ms]   heartbeat [1s]\n"
	"  start_binlog         first file when the archive is empty [current]\n"
	"  state_dir            [" AGENT_STATE_DIR_DEFAULT "]\n"
	"  control_socket       [" AGENT_CONTROL_SOCKET_DEFAULT "]\n"
	"  control_user         OS user of mariadbd allowed on the socket [mysql]\n"
	"  roles                roles allowed to call bk functions [bk_admin]\n"
	"  kafka_properties, topic_prefix, chunk_size, kafka_timeout\n"
	"  topic_partitions, topic_replication_factor, topic_retention,\n"
	"  audit_retention     (for the topics it creates when missing)\n"
	"\n"
	"Exit status: 0 after a clean stop; 2 a bad option; 3 a bad\n"
	"configuration or key; 5 Kafka unreachable at the start or the final\n"
	"flush, or state_dir or control_socket not writable; 1 otherwise.  A\n"
	"MariaDB server that is down is waited for, not an exit.\n";

/*
 * agent_log
 *		One line to stderr: time, program, level, message.
 */
void
agent_log(const char *level, const char *fmt, ...)
{
	char stamp[40];
	va_list args;

	bk_format_time_utc(bk_wall_ms(), stamp, sizeof(stamp));
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "%s %s[%d]: %s: ", stamp, AGENT_PROGRAM, (int) getpid(),
			level);
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fputc('\n', stderr);
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
}

/*
 * agent_report_error
 *		Log an error with its hint and keep it for bk_status().
 */
void
agent_report_error(Agent *agent, const BkError *err)
{
	agent_log("ERROR", "%s%s%s", err->message, err->hint[0] ? " HINT: " : "",
			  err->hint);
	pthread_mutex_lock(&agent->status.lock);
	bk_strlcpy(agent->status.last_error, err->message,
			   sizeof(agent->status.last_error));
	agent->status.last_error_at_ms = bk_wall_ms();
	pthread_mutex_unlock(&agent->status.lock);
}

bool
agent_source_key(Agent *agent, BkKey *key, BkError *err)
{
	const char *path = agent->config.common.key_file;
	struct stat st;
	bool have_stat;
	BkKeyring *ring;
	char id_hex[BK_KEY_ID_HEX_LEN + 1];
	bool ok = true;

	pthread_mutex_lock(&agent->key_lock);
	have_stat = stat(path, &st) == 0;
	if (agent->keyring == NULL || !have_stat ||
		st.st_dev != agent->keyring_stat.st_dev ||
		st.st_ino != agent->keyring_stat.st_ino ||
		st.st_size != agent->keyring_stat.st_size ||
		st.st_mtim.tv_sec != agent->keyring_stat.st_mtim.tv_sec ||
		st.st_mtim.tv_nsec != agent->keyring_stat.st_mtim.tv_nsec)
	{
		/* Stat first: if the file changes after this, the next call reads it. */
		bk_keyring_free(agent->keyring);
		agent->keyring = NULL;
		ring = bk_keyring_load(path, BK_KEYS_FOR_SOURCE, err);
		if (ring == NULL)
		{
			if (err->hint[0] == '\0')
				bk_error_hint(err,
							  "key_file must be the public key file (FILE.pub "
							  "of \"bk keygen --out FILE\"); the private key "
							  "stays with the restore side.");
			ok = false;
		}
		else
		{
			agent->keyring = ring;
			if (have_stat)
				agent->keyring_stat = st;
			else
				memset(&agent->keyring_stat, 0, sizeof(agent->keyring_stat));
			bk_key_id_hex(ring->keys[0].id, id_hex);
			if (strcmp(id_hex, agent->keyring_logged) != 0)
			{
				agent_log("INFO", "sealing to public key %s from \"%s\"",
						  id_hex, path);
				bk_strlcpy(agent->keyring_logged, id_hex,
						   sizeof(agent->keyring_logged));
			}
		}
	}
	if (ok)
		*key = agent->keyring->keys[0];
	pthread_mutex_unlock(&agent->key_lock);
	return ok;
}

/*
 * agent_kafka_alarm
 *		A producer failed fatally (BkKafkaAlarm): something Kafka
 *		acknowledged may be lost.  Said as loudly as the agent can without
 *		stopping, and kept in bk_status() until a snapshot makes up for it;
 *		the producer sends the audit event itself.
 */
static void
agent_kafka_alarm(void *arg, const BkKafkaAlarm *alarm)
{
	Agent *agent = arg;

	agent_log("ERROR", "%s HINT: %s", alarm->message, alarm->hint);
	pthread_mutex_lock(&agent->status.lock);
	bk_strlcpy(agent->status.last_error, alarm->message,
			   sizeof(agent->status.last_error));
	agent->status.last_error_at_ms = alarm->wall_ms;
	bk_strlcpy(agent->status.kafka_alarm, alarm->message,
			   sizeof(agent->status.kafka_alarm));
	agent->status.kafka_alarm_at_ms = alarm->wall_ms;
	pthread_mutex_unlock(&agent->status.lock);
}

void
agent_kafka_alarms(Agent *agent, BkKafkaSettings *settings)
{
	settings->alarm_fn = agent_kafka_alarm;
	settings->alarm_arg = agent;
	settings->audit_topic = agent->audit_topic;
	settings->source_id = agent->config.source_id;
}

/*
 * agent_snapshot_completed
 *		A snapshot taken wholly after an alarm holds everything a gap
 *		before it could have lost: the alarm is over.  One that started
 *		before it may rely on what was lost, so it is not.
 */
void
agent_snapshot_completed(Agent *agent, int64_t started_ms)
{
	pthread_mutex_lock(&agent->status.lock);
	if (agent->status.kafka_alarm_at_ms > 0 &&
		agent->status.kafka_alarm_at_ms < started_ms)
	{
		agent->status.kafka_alarm[0] = '\0';
		agent->status.kafka_alarm_at_ms = 0;
	}
	pthread_mutex_unlock(&agent->status.lock);
}

/*
 * agent_audit
 *		An audit event about the stream (metadata only), best effort: the
 *		log line and bk_status() carry the same news.
 */
void
agent_audit(Agent *agent, const char *event, const char *detail,
			const BinlogPosition *position)
{
	(void) agent_audit_gtids(agent, event, detail, position, NULL, NULL);
}

/*
 * agent_audit_gtids
 *		The same, with the GTID states at position: the archive's (gtid) and
 *		the server's (server_gtid), each left out when NULL.  True once
 *		Kafka took the event, so that a caller that sends an event once can
 *		send it again after a failure.
 */
bool
agent_audit_gtids(Agent *agent, const char *event, const char *detail,
				  const BinlogPosition *position, const char *gtid,
				  const char *server_gtid)
{
	BkAuditEvent *audit = bk_audit_begin(event, agent->config.source_id);
	char *json;
	size_t len;
	BkError err;
	bool sent;

	if (audit == NULL)
		return false;
	bk_audit_string(audit, "kind", "binlog");
	bk_audit_string(audit, "detail", detail);
	if (position != NULL && position->file[0])
	{
		bk_audit_string(audit, "binlog_file", position->file);
		bk_audit_int(audit, "binlog_pos", (int64_t) position->offset);
	}
	if (gtid != NULL)
		bk_audit_string(audit, "gtid", gtid);
	if (server_gtid != NULL)
		bk_audit_string(audit, "server_gtid", server_gtid);
	json = bk_audit_finish(audit, bk_wall_ms(), &len); /* frees audit */
	if (json == NULL)
		return false;
	bk_error_clear(&err);
	sent = bk_producer_send_message(agent->producer, agent->audit_topic,
									agent->config.source_id, json, len, NULL,
									NULL, &err);
	if (!sent)
		agent_log("WARNING", "could not send the audit event \"%s\": %s", event,
				  err.message);
	free(json);
	return sent;
}

/*
 * agent_query
 *		Run a statement that returns no rows.
 */
bool
agent_query(MYSQL *conn, const char *sql, BkError *err)
{
	if (mysql_query(conn, sql) != 0)
		return bk_error_set(err, BK_ERR_IO, "\"%s\" failed: %s", sql,
							mysql_error(conn));
	return true;
}

/*
 * agent_binlog_gtid_pos
 *		BINLOG_GTID_POS(file, pos), the values bound, not pasted.  A state
 *		longer than out is an error (the fetch reports it truncated), never
 *		cut short.
 */
bool
agent_binlog_gtid_pos(MYSQL *conn, const char *file, uint64_t pos, char *out,
					  size_t out_len, bool *found, BkError *err)
{
	static const char sql[] = "SELECT BINLOG_GTID_POS(?, ?)";
	MYSQL_STMT *stmt = mysql_stmt_init(conn);
	MYSQL_BIND params[2];
	MYSQL_BIND result;
	unsigned long file_len = (unsigned long) strlen(file);
	unsigned long long position = pos;
	unsigned long out_got = 0;
	my_bool is_null = 0;

	*found = false;
	if (stmt == NULL || mysql_stmt_prepare(stmt, sql, sizeof(sql) - 1) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "preparing BINLOG_GTID_POS: %s",
					 stmt ? mysql_stmt_error(stmt) : "out of memory");
		if (stmt)
			mysql_stmt_close(stmt);
		return false;
	}
	memset(params, 0, sizeof(params));
	params[0].buffer_type = MYSQL_TYPE_STRING;
	params[0].buffer = (char *) file;
	params[0].buffer_length = file_len;
	params[0].length = &file_len;
	params[1].buffer_type = MYSQL_TYPE_LONGLONG;
	params[1].buffer = &position;
	params[1].is_unsigned = 1;
	memset(&result, 0, sizeof(result));
	result.buffer_type = MYSQL_TYPE_STRING;
	result.buffer = out;
	result.buffer_length = out_len - 1;
	result.length = &out_got;
	result.is_null = &is_null;
	if (mysql_stmt_bind_param(stmt, params) != 0 ||
		mysql_stmt_execute(stmt) != 0 ||
		mysql_stmt_bind_result(stmt, &result) != 0 ||
		mysql_stmt_fetch(stmt) != 0)
	{
		bk_error_set(
			err, BK_ERR_IO, "BINLOG_GTID_POS(%s, %" PRIu64 "): %s", file, pos,
			mysql_stmt_errno(stmt) != 0 ? mysql_stmt_error(stmt)
										: "the GTID state is too long");
		mysql_stmt_close(stmt);
		return false;
	}
	mysql_stmt_close(stmt);
	out[is_null ? 0 : (out_got < out_len ? out_got : out_len - 1)] = '\0';
	*found = !is_null;
	return true;
}

/*
 * agent_connect
 *		A connection to the source server: UTC, binary-safe, bounded waits,
 *		packets as large as any event, and no LOAD DATA LOCAL: the agent
 *		never loads files, and a server asking for one (another local user
 *		on the port while mariadbd restarts) would be sent the password
 *		file or the Kafka properties.  Whether Connector/C allows it by
 *		default depends on its build, so it is said here.  TLS as the
 *		mysql_ssl_* settings say (bk_mysql_tls.h): every connection the agent
 *		opens comes from here.
 */
MYSQL *
agent_connect(Agent *agent, BkError *err)
{
	return agent_connect_timed(
		agent, 10, (unsigned int) (agent->config.heartbeat * 3 / 1000) + 10,
		err);
}

/*
 * agent_snapshot_id_add
 *		A snapshot connection opened: complete-until does not wait for its
 *		statements.  A connection past the most known is left counted,
 *		which only holds complete-until back.
 */
void
agent_snapshot_id_add(Agent *agent, unsigned long id)
{
	pthread_mutex_lock(&agent->snapshot_ids_lock);
	if (agent->snapshot_id_count < AGENT_SNAPSHOT_IDS_MAX)
		agent->snapshot_ids[agent->snapshot_id_count++] = id;
	pthread_mutex_unlock(&agent->snapshot_ids_lock);
}

/*
 * agent_snapshot_ids_clear
 *		The snapshot's connections are closed.  (The server does not give
 *		a closed connection's id to another before its counter wraps, so
 *		one left a moment longer hides nobody else's statement.)
 */
void
agent_snapshot_ids_clear(Agent *agent)
{
	pthread_mutex_lock(&agent->snapshot_ids_lock);
	agent->snapshot_id_count = 0;
	pthread_mutex_unlock(&agent->snapshot_ids_lock);
}

/*
 * agent_snapshot_ids_sql
 *		The snapshot's connection ids, comma-separated.  out_len must hold
 *		AGENT_SNAPSHOT_IDS_MAX of them (21 bytes each).
 */
void
agent_snapshot_ids_sql(Agent *agent, char *out, size_t out_len)
{
	size_t used = 0;

	out[0] = '\0';
	pthread_mutex_lock(&agent->snapshot_ids_lock);
	for (int idx = 0; idx < agent->snapshot_id_count && used < out_len; idx++)
		used += (size_t) snprintf(out + used, out_len - used, "%s%lu",
								  idx ? "," : "", agent->snapshot_ids[idx]);
	pthread_mutex_unlock(&agent->snapshot_ids_lock);
	if (used >= out_len)
		out[0] = '\0'; /* cut short: count them all rather than a wrong id */
}

/*
 * agent_connect_timed
 *		agent_connect with its waits given: connect_timeout for the
 *		connection (and the TLS probe), read_timeout for each read or write
 *		on it, in seconds.
 */
MYSQL *
agent_connect_timed(Agent *agent, unsigned int connect_timeout,
					unsigned int read_timeout, BkError *err)
{
	AgentConfig *config = &agent->config;
	MYSQL *conn = mysql_init(NULL);
	unsigned long max_packet = 1024UL * 1024 * 1024;
	unsigned int local_infile = 0;
	char server[600];
	bool probe;

	if (conn == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "mysql_init failed");
		return NULL;
	}
	if (bk_mysql_tls_over_socket(config->mysql_host, config->mysql_socket))
		snprintf(server, sizeof(server), "%s",
				 config->mysql_socket ? config->mysql_socket
									  : "the default socket");
	else if (config->mysql_port != 0)
		snprintf(server, sizeof(server), "%s:%u", config->mysql_host,
				 config->mysql_port);
	else /* Connector/C's default port: 3306, or MYSQL_TCP_PORT */
		snprintf(server, sizeof(server), "%s", config->mysql_host);
	mysql_optionsv(conn, MYSQL_OPT_LOCAL_INFILE, &local_infile);
	mysql_optionsv(conn, MYSQL_OPT_MAX_ALLOWED_PACKET, &max_packet);
	mysql_optionsv(conn, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
	mysql_optionsv(conn, MYSQL_OPT_READ_TIMEOUT, &read_timeout);
	mysql_optionsv(conn, MYSQL_OPT_WRITE_TIMEOUT, &read_timeout);
	mysql_optionsv(conn, MYSQL_SET_CHARSET_NAME, "binary");
	mysql_optionsv(conn, MYSQL_INIT_COMMAND, "SET time_zone = '+00:00'");
	/*
	 * required: a server without TLS is refused before the login, which
	 * Connector/C would send it in clear; bk_mysql_tls_confirm below is the
	 * second check, of the session itself.  The probe counts as an aborted
	 * connection toward the server's max_connect_errors, which only a
	 * successful login clears: logins that keep failing (a wrong password)
	 * are probed once, not once per retry, or the server would block this
	 * host after max_connect_errors retries.
	 */
	probe = !__atomic_load_n(&agent->tls_probed, __ATOMIC_RELAXED);
	if (!bk_mysql_tls_options(&config->mysql_tls, conn, err) ||
		(probe &&
		 !bk_mysql_tls_probe(&config->mysql_tls, config->mysql_host,
							 config->mysql_port, server, connect_timeout, err)))
	{
		mysql_close(conn);
		return NULL;
	}
	if (probe)
		__atomic_store_n(&agent->tls_probed, true, __ATOMIC_RELAXED);
	if (mysql_real_connect(conn, config->mysql_host, config->mysql_user,
						   agent->mysql_password, NULL, config->mysql_port,
						   config->mysql_socket, 0) == NULL)
	{
		bk_error_set(err, BK_ERR_IO, "could not connect to MariaDB at %s: %s",
					 server, mysql_error(conn));
		if (!bk_mysql_tls_failure_hint(&config->mysql_tls, conn,
									   config->mysql_host, server, err))
			bk_error_hint(err,
						  "Check mysql_socket (or mysql_host and mysql_port),"
						  " mysql_user and mysql_password_file; the agent"
						  " needs REPLICATION SLAVE, BINLOG MONITOR and SELECT"
						  " on mysql.roles_mapping.");
		mysql_close(conn);
		return NULL;
	}
	/* Either way the next connection probes again. */
	__atomic_store_n(&agent->tls_probed, false, __ATOMIC_RELAXED);
	if (!bk_mysql_tls_confirm(&config->mysql_tls, conn, server, err))
	{
		mysql_close(conn);
		return NULL;
	}
	return conn;
}

/* ------------------------------------------------------------ config */

static bool
set_text(char **field, const char *value, BkError *err)
{
	char *copy = strdup(value);

	if (copy == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	free(*field);
	*field = copy;
	return true;
}

static bool
set_size(uint64_t *field, const char *key, const char *value, uint64_t min,
		 uint64_t max, BkError *err)
{
	if (!bk_parse_size(value, field) || *field < min || *field > max)
		return bk_error_set(err, BK_ERR_CONFIG,
							"%s must be a size from %" PRIu64 " to %" PRIu64
							" bytes such as \"16MiB\", not \"%s\"",
							key, min, max, value);
	return true;
}

static bool
set_ms(int64_t *field, const char *key, const char *value, int64_t min,
	   int64_t max, BkError *err)
{
	if (!bk_parse_duration_ms(value, field) || *field < min || *field > max)
		return bk_error_set(err, BK_ERR_CONFIG,
							"%s must be a duration from %" PRId64 " to %" PRId64
							" ms such as \"1s\", not \"%s\"",
							key, min, max, value);
	return true;
}

/*
 * agent_config_set
 *		One setting: the agent's own, else the ones bk shares.
 */
static bool
agent_config_set(void *arg, const char *key, const char *value, BkError *err)
{
	AgentConfig *config = arg;
	uint64_t number;
	bool known;

	if (!bk_mysql_tls_set(&config->mysql_tls, key, value, &known, err))
		return false;
	if (known)
		return true;
	if (strcmp(key, "source_id") == 0)
	{
		if (!bk_source_id_valid(value, strlen(value)))
			return bk_error_set(
				err, BK_ERR_CONFIG,
				"source_id \"%s\" is not valid: " BK_SOURCE_ID_RULE, value);
		return set_text(&config->source_id, value, err);
	}
	if (strcmp(key, "mysql_host") == 0)
		return set_text(&config->mysql_host, value, err);
	if (strcmp(key, "mysql_socket") == 0)
		return set_text(&config->mysql_socket, value, err);
	if (strcmp(key, "mysql_user") == 0)
		return set_text(&config->mysql_user, value, err);
	if (strcmp(key, "mysql_password_file") == 0)
		return set_text(&config->mysql_password_file, value, err);
	if (strcmp(key, "mysql_port") == 0)
	{
		if (!bk_parse_u64(value, &number) || number == 0 || number > 65535)
			return bk_error_set(err, BK_ERR_CONFIG,
								"mysql_port must be a port number, not \"%s\"",
								value);
		config->mysql_port = (unsigned int) number;
		return true;
	}
	if (strcmp(key, "server_id") == 0)
	{
		if (!bk_parse_u64(value, &number) || number == 0 || number > UINT32_MAX)
			return bk_error_set(err, BK_ERR_CONFIG,
								"server_id must be an integer from 1 to"
								" 4294967295, not \"%s\"",
								value);
		config->server_id = (uint32_t) number;
		return true;
	}
	if (strcmp(key, "range_size") == 0)
		return set_size(&config->range_size, key, value, 4096,
						(uint64_t) 1024 * 1024 * 1024, err);
	if (strcmp(key, "range_interval") == 0)
		return set_ms(&config->range_interval, key, value, 10, 3600 * 1000,
					  err);
	if (strcmp(key, "heartbeat") == 0)
		return set_ms(&config->heartbeat, key, value, 100, 60 * 1000, err);
	if (strcmp(key, "start_binlog") == 0)
	{
		if (!bk_binlog_file_name_valid(value))
			return bk_error_set(err, BK_ERR_CONFIG,
								"start_binlog \"%s\" is not a binlog file name",
								value);
		return set_text(&config->start_binlog, value, err);
	}
	if (strcmp(key, "state_dir") == 0)
		return set_text(&config->state_dir, value, err);
	if (strcmp(key, "control_socket") == 0)
		return set_text(&config->control_socket, value, err);
	if (strcmp(key, "control_user") == 0)
		return set_text(&config->control_user, value, err);
	if (strcmp(key, "roles") == 0)
	{
		char *list = strdup(value);
		char *save = NULL;

		if (list == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		for (int idx = 0; idx < config->n_roles; idx++)
			free(config->roles[idx]);
		config->n_roles = 0;
		for (char *role = strtok_r(list, ", ", &save); role != NULL;
			 role = strtok_r(NULL, ", ", &save))
		{
			if (config->n_roles == AGENT_ROLES_MAX)
			{
				free(list);
				return bk_error_set(err, BK_ERR_CONFIG,
									"roles names more than %d roles",
									AGENT_ROLES_MAX);
			}
			if ((config->roles[config->n_roles] = strdup(role)) == NULL)
			{
				free(list);
				return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
			}
			config->n_roles++;
		}
		free(list);
		/*
		 * Empty, the default (bk_admin) would apply: not what "roles ="
		 * says to someone who meant to allow nobody.
		 */
		if (config->n_roles == 0)
		{
			bk_error_set(err, BK_ERR_CONFIG,
						 "roles names no role; it lists who may call the bk "
						 "functions");
			return bk_error_hint(err, "Name at least one role (or user@host)"
									  ", or leave roles out for bk_admin.");
		}
		return true;
	}
	/*
	 * Settings of bk-shipper (and bk) that bk_cli_config_set knows but the
	 * agent has no use for: refused, not silently ignored, like any setting
	 * that does nothing here.
	 */
	if (strcmp(key, "repository") == 0 || strcmp(key, "group_id") == 0 ||
		strcmp(key, "shipper_id") == 0 || strcmp(key, "abandon_after") == 0 ||
		strcmp(key, "metrics_listen") == 0 || strcmp(key, "spool_dir") == 0 ||
		strncmp(key, "s3_", 3) == 0)
		return bk_error_set(err, BK_ERR_CONFIG,
							"%s is a bk-shipper setting; the agent does not"
							" use it (it sends to Kafka and never reads the"
							" repository)",
							key);
	if (!bk_cli_config_set(&config->common, key, value, err))
	{
		if (strncmp(err->message, "unknown setting", 15) == 0)
			bk_error_hint(err, "Run " AGENT_PROGRAM " --help for the settings"
							   " it knows.");
		return false;
	}
	return true;
}

/*
 * agent_config_load
 *		Defaults, the file, the flags; then what must hold.
 */
static bool
agent_config_load(Agent *agent, const char *path, const char *brokers,
				  BkError *err)
{
	AgentConfig *config = &agent->config;

	bk_cli_config_init(&config->common);
	config->range_size = AGENT_RANGE_SIZE_DEFAULT;
	config->range_interval = AGENT_RANGE_INTERVAL_DEFAULT;
	config->heartbeat = AGENT_HEARTBEAT_DEFAULT;
	if (path == NULL)
		return bk_error_set(err, BK_ERR_USAGE, "--config FILE is required");
	config->common.config_path = path;
	if (!bk_config_parse_file(path, agent_config_set, config, err))
	{
		err->code = BK_ERR_CONFIG;
		return false;
	}
	if (brokers != NULL &&
		!bk_cli_config_set(&config->common, "kafka_brokers", brokers, err))
		return false;
	if (config->source_id == NULL)
		return bk_error_set(err, BK_ERR_CONFIG,
							"source_id is not set in \"%s\"", path) ||
			   bk_error_hint(
				   err, "Name this server in the archive, for example"
						" source_id = db1.example; keep it for the server's"
						" life.");
	if (config->common.kafka_brokers == NULL)
		return bk_error_set(err, BK_ERR_CONFIG, "kafka_brokers is not set");
	if (config->common.key_file == NULL)
		return bk_error_set(err, BK_ERR_CONFIG,
							"key_file is not set: the agent seals everything"
							" to a public key (FILE.pub of \"bk keygen\")");
	if (config->server_id == 0)
		return bk_error_set(err, BK_ERR_CONFIG, "server_id is not set") ||
			   bk_error_hint(err,
							 "Choose a replica id no server or replica of"
							 " this topology uses: a binlog dump ends any other"
							 " with the same id.");
	if (config->mysql_user == NULL &&
		!set_text(&config->mysql_user, "root", err))
		return false;
	if (!bk_mysql_tls_settle(&config->mysql_tls, config->mysql_host,
							 config->mysql_socket, err))
	{
		err->code = BK_ERR_CONFIG;
		return false;
	}
	if (config->state_dir == NULL &&
		!set_text(&config->state_dir, AGENT_STATE_DIR_DEFAULT, err))
		return false;
	if (config->control_socket == NULL &&
		!set_text(&config->control_socket, AGENT_CONTROL_SOCKET_DEFAULT, err))
		return false;
	if (config->control_user == NULL &&
		!set_text(&config->control_user, "mysql", err))
		return false;
	if (config->n_roles == 0)
		config->roles[config->n_roles++] = strdup("bk_admin");
	return true;
}

/*
 * load_password
 *		mysql_password_file: its first line, the file held to the rule of
 *		private key files (bk_secret_file.h).
 */
static bool
load_password(Agent *agent, BkError *err)
{
	const char *path = agent->config.mysql_password_file;
	char *data = NULL;
	size_t len = 0;

	if (path == NULL)
		return true;
	if (!bk_secret_file_read(path, BK_SECRET_MARIADB_PASSWORD, 4096, &data,
							 &len, err))
		return false;
	data[strcspn(data, "\r\n")] = '\0';
	agent->mysql_password = data;
	return true;
}

/*
 * kafka_log
 *		librdkafka's log lines, through ours.
 */
static void
kafka_log(void *arg, int level, const char *facility, const char *message)
{
	agent_log(level <= 3   ? "ERROR"
			  : level == 4 ? "WARNING"
						   : "INFO",
			  "kafka: %s: %s", facility, message);
}

/*
 * agent_setup_kafka
 *		Topics checked (created if missing) and the producer.
 */
static bool
agent_setup_kafka(Agent *agent, BkError *err)
{
	BkKafkaSettings settings;
	BkTopicPolicy policy;
	BkTopicResult result;
	rd_kafka_t *admin;
	bool ok;

	bk_cli_kafka_settings(&agent->config.common, &settings, AGENT_PROGRAM);
	settings.log_fn = kafka_log;
	bk_cli_topic_policy(&agent->config.common, &policy);
	if (!bk_topic_name(policy.prefix, BK_TOPIC_BINLOG, agent->binlog_topic,
					   sizeof(agent->binlog_topic), err) ||
		!bk_topic_name(policy.prefix, BK_TOPIC_AUDIT, agent->audit_topic,
					   sizeof(agent->audit_topic), err))
		return false;
	agent_kafka_alarms(agent, &settings);
	admin = bk_kafka_admin_new(&settings, err);
	if (admin == NULL)
		return false;
	ok = bk_topics_ensure(admin, &policy, true, NULL, NULL, &result, err);
	bk_kafka_admin_free(admin);
	if (!ok)
		return false;
	agent->producer = bk_producer_new(&settings, err);
	return agent->producer != NULL;
}

/* ------------------------------------------------------------ status */

static void
json_set_position(json_t *obj, const char *key, const BinlogPosition *position)
{
	if (position->file[0] == '\0')
	{
		json_object_set_new(obj, key, json_null());
		return;
	}
	json_object_set_new(obj, key,
						json_pack("{s:s, s:I}", "file", position->file, "pos",
								  (json_int_t) position->offset));
}

static void
json_set_time(json_t *obj, const char *key, int64_t wall_ms)
{
	char stamp[40];

	if (wall_ms <= 0)
	{
		json_object_set_new(obj, key, json_null());
		return;
	}
	bk_format_time_utc(wall_ms, stamp, sizeof(stamp));
	json_object_set_new(obj, key, json_string(stamp));
}

/*
 * agent_status_json
 *		bk_status(): what a DBA asks first.  The RPO is the age of the newest
 *		event archived, or 0 while the stream is caught up (a quiet server
 *		has nothing to lose).
 */
static char *
agent_status_json(Agent *agent)
{
	AgentStatus *status = &agent->status;
	json_t *obj = json_object();
	int64_t now = bk_wall_ms();
	char *text;

	pthread_mutex_lock(&status->lock);
	json_object_set_new(obj, "agent", json_string("up"));
	json_object_set_new(obj, "source_id", json_string(agent->config.source_id));
	json_object_set_new(obj, "streaming", json_boolean(status->streaming));
	json_set_position(obj, "received", &status->received);
	json_set_position(obj, "archived", &status->archived);
	json_set_time(obj, "archived_at", status->archived_at_ms);
	json_object_set_new(obj, "gtid", json_string(status->gtid));
	json_set_time(obj, "caught_up_at", status->caught_up_at_ms);
	json_object_set_new(obj, "backlog_bytes",
						json_integer((json_int_t) status->backlog_bytes));
	json_object_set_new(obj, "ranges_sent",
						json_integer((json_int_t) status->ranges_sent));
	json_object_set_new(obj, "bytes_sent",
						json_integer((json_int_t) status->bytes_sent));
	if (status->archived_event_time > 0)
	{
		bool caught_up =
			status->streaming && status->backlog_bytes == 0 &&
			now - status->caught_up_at_ms < 3 * agent->config.heartbeat;
		int64_t lag = now / 1000 - (int64_t) status->archived_event_time;

		/*
		 * The archive's lag behind the server is the current RPO: what a
		 * loss of the server now would lose, in seconds of changes.
		 */
		json_object_set_new(obj, "lag_seconds",
							json_integer(caught_up ? 0 : (lag > 0 ? lag : 0)));
		json_object_set_new(obj, "rpo_seconds",
							json_integer(caught_up ? 0 : (lag > 0 ? lag : 0)));
	}
	else
	{
		json_object_set_new(obj, "lag_seconds", json_null());
		json_object_set_new(obj, "rpo_seconds", json_null());
	}
	json_object_set_new(obj, "last_error",
						status->last_error[0] ? json_string(status->last_error)
											  : json_null());
	json_set_time(obj, "last_error_at", status->last_error_at_ms);
	json_object_set_new(obj, "kafka_alarm",
						status->kafka_alarm[0]
							? json_string(status->kafka_alarm)
							: json_null());
	json_set_time(obj, "kafka_alarm_at", status->kafka_alarm_at_ms);
	pthread_mutex_unlock(&status->lock);
	pthread_mutex_lock(&agent->snapshot_lock);
	json_object_set_new(obj, "snapshot",
						agent->snapshot
							? snapshot_progress_json(agent->snapshot)
							: json_null());
	pthread_mutex_unlock(&agent->snapshot_lock);
	text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(obj);
	return text;
}

/*
 * release_job
 *		A control call is done with job (it took a use under snapshot_lock):
 *		free the job if a later bk_snapshot() replaced it meanwhile.
 */
static void
release_job(Agent *agent, SnapshotJob *job)
{
	bool last;

	pthread_mutex_lock(&agent->snapshot_lock);
	last = --job->users == 0 && job->replaced;
	pthread_mutex_unlock(&agent->snapshot_lock);
	if (last)
		snapshot_free(job);
}

/*
 * control_snapshot
 *		bk_snapshot(): start a job (one at a time); with wait, follow it
 *		until it ends, cancelling it if the caller goes away (KILL QUERY,
 *		max_statement_time, a closed connection).
 */
static char *
control_snapshot(Agent *agent, BkControlCall *call, const BkControlRequest *req,
				 BkError *err)
{
	SnapshotOptions options;
	SnapshotJob *last;
	SnapshotJob *job;
	json_t *answer;
	char *text;

	if (!snapshot_parse_options(req->args, &options, err))
		return NULL;
	/* One bk_snapshot() at a time replaces the job; see Agent. */
	pthread_mutex_lock(&agent->snapshot_start_lock);
	pthread_mutex_lock(&agent->snapshot_lock);
	last = agent->snapshot;
	if (last != NULL)
	{
		bool running;

		pthread_mutex_lock(&last->lock);
		running = last->state == SNAPSHOT_RUNNING;
		pthread_mutex_unlock(&last->lock);
		if (running)
		{
			pthread_mutex_unlock(&agent->snapshot_lock);
			pthread_mutex_unlock(&agent->snapshot_start_lock);
			bk_error_set(err, BK_ERR_USAGE,
						 "snapshot %s is still running: one snapshot at a time",
						 last->id);
			bk_error_hint(err,
						  "Wait for it (bk_status() shows its progress)"
						  " or cancel it with bk_snapshot_cancel('%s').",
						  last->id);
			return NULL;
		}
	}
	pthread_mutex_unlock(&agent->snapshot_lock);
	/*
	 * Done, but its thread may still be sending its snapshot-end audit
	 * event, which waits out kafka_timeout when Kafka is down: joined
	 * without snapshot_lock, which bk_status() and bk_snapshot_cancel()
	 * take.  snapshot_start_lock makes this call the only one to join it.
	 * Meanwhile the caller is kept informed: it takes a silent agent for
	 * a hung one.
	 */
	while (last != NULL && !snapshot_join_within(last, BK_CONTROL_KEEPALIVE_MS))
		bk_control_keepalive(call);
	/*
	 * The join may have taken kafka_timeout: a caller that gave up meanwhile
	 * was told the snapshot would not run.  The previous job stays the
	 * current one (joined: the next call does not join it again).
	 */
	if (bk_control_peer_gone(call))
	{
		pthread_mutex_unlock(&agent->snapshot_start_lock);
		agent_log("INFO",
				  "bk_snapshot() not started: its caller went away (KILL "
				  "QUERY, max_statement_time, or the function's own time "
				  "limit) while it waited for the previous snapshot to end");
		bk_error_set(err, BK_ERR_IO,
					 "the caller went away before the snapshot started");
		return NULL;
	}
	job = snapshot_start(agent, &options, err);
	pthread_mutex_lock(&agent->snapshot_lock);
	/* Its own caller may still be reading it: the last one frees it. */
	if (last != NULL && last->users > 0)
		last->replaced = true;
	else if (last != NULL)
		snapshot_free(last);
	agent->snapshot = job;
	if (job != NULL)
		job->users++;
	pthread_mutex_unlock(&agent->snapshot_lock);
	pthread_mutex_unlock(&agent->snapshot_start_lock);
	if (job == NULL)
		return NULL;

	if (!options.wait)
	{
		answer = snapshot_progress_json(job);
		text = json_dumps(answer, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(answer);
		release_job(agent, job);
		return text;
	}
	/*
	 * A keepalive at once, then every BK_CONTROL_KEEPALIVE_MS: the UDF
	 * takes an agent silent for longer for a hung one, and one keepalive
	 * heard tells it the snapshot started and is waited for.
	 */
	for (int64_t keepalive_ms = 0;;)
	{
		SnapshotState state;

		pthread_mutex_lock(&job->lock);
		state = job->state;
		pthread_mutex_unlock(&job->lock);
		if (state != SNAPSHOT_RUNNING)
			break;
		if (bk_monotonic_ms() >= keepalive_ms)
		{
			bk_control_keepalive(call);
			keepalive_ms = bk_monotonic_ms() + BK_CONTROL_KEEPALIVE_MS;
		}
		if (!job->cancel &&
			(bk_control_peer_gone(call) || agent_stop_requested))
		{
			agent_log("INFO",
					  "snapshot %s: the caller went away (KILL QUERY,"
					  " max_statement_time or a closed connection):"
					  " cancelling",
					  job->id);
			job->cancel = true;
		}
		usleep(100 * 1000);
	}
	pthread_mutex_lock(&job->lock);
	if (job->state == SNAPSHOT_DONE)
		text = json_dumps(job->result, JSON_COMPACT | JSON_SORT_KEYS);
	else
	{
		text = NULL;
		bk_error_set(err, BK_ERR_IO, "snapshot %s %s: %s", job->id,
					 job->state == SNAPSHOT_CANCELLED ? "cancelled" : "failed",
					 job->error);
	}
	pthread_mutex_unlock(&job->lock);
	release_job(agent, job);
	return text;
}

/*
 * control_snapshot_cancel
 *		bk_snapshot_cancel(id): ask the running snapshot to stop.
 */
static char *
control_snapshot_cancel(Agent *agent, const BkControlRequest *req, BkError *err)
{
	SnapshotJob *job;
	json_t *answer;
	char *text;

	if (req->args == NULL || req->args[0] == '\0')
	{
		bk_error_set(err, BK_ERR_USAGE,
					 "bk_snapshot_cancel needs the snapshot id");
		return NULL;
	}
	pthread_mutex_lock(&agent->snapshot_lock);
	job = agent->snapshot;
	if (job == NULL || strcmp(job->id, req->args) != 0)
	{
		/* The caller's text, however long: 64 characters of it. */
		char id[64 * 4 + 4];

		pthread_mutex_unlock(&agent->snapshot_lock);
		bk_text_excerpt(id, sizeof(id), req->args, 64);
		bk_error_set(err, BK_ERR_NOT_FOUND, "no snapshot \"%s\" on this agent",
					 id);
		return NULL;
	}
	job->cancel = true;
	answer = snapshot_progress_json(job);
	pthread_mutex_unlock(&agent->snapshot_lock);
	json_object_set_new(answer, "cancel_requested", json_true());
	text = json_dumps(answer, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(answer);
	return text;
}

/*
 * control_authorize
 *		May the caller's SQL account call bk functions (BkControlAuthorize)?
 *		The UDF cannot guard itself: the agent asks the server.
 */
static bool
control_authorize(void *arg, const BkControlRequest *req, BkError *err)
{
	Agent *agent = arg;

	return bk_control_auth_check(agent->auth, req->user, req->host, err);
}

/* The authorization connection (BkControlConnect). */
static MYSQL *
control_connect(void *arg, BkError *err)
{
	return agent_connect(arg, err);
}

/*
 * control_handler
 *		Answer one call of a bk_udf.so function (BkControlHandler).
 */
static char *
control_handler(void *arg, BkControlCall *call, const BkControlRequest *req,
				BkError *err)
{
	Agent *agent = arg;

	if (strcmp(req->op, "status") == 0)
	{
		char *text = agent_status_json(agent);

		if (text == NULL)
			bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return text;
	}
	if (strcmp(req->op, "snapshot") == 0)
		return control_snapshot(agent, call, req, err);
	if (strcmp(req->op, "snapshot_cancel") == 0)
		return control_snapshot_cancel(agent, req, err);
	bk_error_set(err, BK_ERR_USAGE, "unknown operation \"%s\"", req->op);
	return NULL;
}

/*
 * control_log
 *		The control socket's log lines (refused peers, failed replies).
 */
static void
control_log(void *arg, const char *message)
{
	agent_log("WARNING", "control socket: %s", message);
}

static void
handle_stop_signal(int signo)
{
	agent_stop_requested = 1;
}

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"brokers", required_argument, NULL, 'b'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	const char *config_path = NULL;
	const char *brokers = NULL;
	Agent agent;
	BkKey key;
	BkError err;
	BkControl *control = NULL;
	struct sigaction sa;
	int opt;
	int status = BK_EXIT_OK;
	uid_t allowed[2];
	int n_allowed = 0;
	int index = -1;
	const char *seen[BK_CLI_OPTIONS_MAX] = {0};

	while ((opt = getopt_long(argc, argv, "c:b:h", options, &index)) != -1)
	{
		/* -c and -b are --config and --brokers: one value each too. */
		for (int optIdx = 0; index < 0 && options[optIdx].name != NULL;
			 optIdx++)
			if (options[optIdx].val == opt)
				index = optIdx;
		if (opt != '?' &&
			!bk_cli_option_repeat(options, index, optarg, seen, NULL, &err))
			return bk_cli_usage_error(AGENT_PROGRAM, "%s", err.message);
		index = -1;
		switch (opt)
		{
			case 'c':
				config_path = optarg;
				break;
			case 'b':
				brokers = optarg;
				break;
			case 'h':
				fputs(usage_text, stdout);
				return BK_EXIT_OK;
			default:
				fprintf(stderr, "Try \"%s --help\".\n", AGENT_PROGRAM);
				return BK_EXIT_USAGE;
		}
	}
	if (optind < argc)
		return bk_cli_usage_error(AGENT_PROGRAM, "unexpected argument \"%s\"",
								  argv[optind]);

	memset(&agent, 0, sizeof(agent));
	pthread_mutex_init(&agent.status.lock, NULL);
	pthread_mutex_init(&agent.snapshot_lock, NULL);
	pthread_mutex_init(&agent.snapshot_start_lock, NULL);
	pthread_mutex_init(&agent.snapshot_ids_lock, NULL);
	bk_error_clear(&err);
	if (!agent_config_load(&agent, config_path, brokers, &err) ||
		!load_password(&agent, &err))
		return bk_cli_report_error(AGENT_PROGRAM, &err);
	pthread_mutex_init(&agent.key_lock, NULL);
	if (!agent_source_key(&agent, &key, &err))
	{
		bk_error_hint(&err,
					  "key_file must be the public key file (FILE.pub"
					  " of \"bk keygen --out FILE\"); the private key stays"
					  " with the restore side.");
		return bk_cli_report_error(AGENT_PROGRAM, &err);
	}
	if (!bk_mkdirs(agent.config.state_dir, 0700, true, &err))
		return bk_cli_report_error(AGENT_PROGRAM, &err);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!agent_setup_kafka(&agent, &err))
	{
		status = bk_cli_report_error(AGENT_PROGRAM, &err);
		goto done;
	}

	/* The socket: our own user, and mariadbd's. */
	allowed[n_allowed++] = getuid();
	{
		struct passwd *pw = getpwnam(agent.config.control_user);

		if (pw != NULL && pw->pw_uid != getuid())
			allowed[n_allowed++] = pw->pw_uid;
		else if (pw == NULL)
			agent_log("WARNING",
					  "control_user \"%s\" does not exist: only"
					  " processes of uid %d may use the control socket",
					  agent.config.control_user, (int) getuid());
	}
	agent.auth = bk_control_auth_new(control_connect, &agent,
									 (const char *const *) agent.config.roles,
									 agent.config.n_roles, &err);
	if (agent.auth != NULL)
		control = bk_control_start(agent.config.control_socket, allowed,
								   n_allowed, control_authorize,
								   control_handler, control_log, &agent, &err);
	if (control == NULL)
	{
		status = bk_cli_report_error(AGENT_PROGRAM, &err);
		goto done;
	}
	agent_log("INFO", "source \"%s\": control socket %s, binlog topic %s",
			  agent.config.source_id, agent.config.control_socket,
			  agent.binlog_topic);
	if (!bk_mysql_tls_over_socket(agent.config.mysql_host,
								  agent.config.mysql_socket))
		agent_log("INFO", "MariaDB connections: mysql_ssl_mode = %s%s",
				  bk_mysql_tls_mode_name(agent.config.mysql_tls.mode),
				  agent.config.mysql_tls.mode_defaulted ? " (the default)"
														: "");

	if (!binlog_stream_run(&agent, &err))
		status = bk_cli_report_error(AGENT_PROGRAM, &err);
	agent_log("INFO", "stopped");

done:
	if (control != NULL)
		bk_control_stop(control);
	bk_control_auth_free(agent.auth);
	if (agent.snapshot != NULL)
	{
		agent.snapshot->cancel = true;
		snapshot_join(agent.snapshot);
	}
	if (agent.producer != NULL)
		bk_producer_free(agent.producer);
	bk_keyring_free(agent.keyring);
	free(agent.mysql_password);
	return status;
}
