/*
 * agent.h
 *		bk-mysql-agent: configuration, shared state and the parts of the
 *		daemon (binlog streaming, resume, control socket).
 *
 * The agent runs beside mariadbd.  One thread streams the binlog (registered
 * as a replica) into Kafka as byte ranges; the control socket's threads
 * answer the bk_udf.so functions.  They share one AgentStatus under a mutex;
 * nothing else is shared between threads.
 */
#ifndef BK_AGENT_H
#define BK_AGENT_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <mysql.h>

#include "binlog_gtids.h"
#include "bk_binlog.h"
#include "bk_error.h"
#include "bk_frame.h"
#include "bk_kafka.h"
#include "bk_keys.h"
#include "cli.h"
#include "bk_mysql_tls.h"

#define AGENT_PROGRAM "bk-mysql-agent"

#define AGENT_CONTROL_SOCKET_DEFAULT "/run/bk/mysql-agent.sock"
#define AGENT_STATE_DIR_DEFAULT      "/var/lib/bk-mysql-agent"
#define AGENT_RANGE_SIZE_DEFAULT     ((uint64_t) 16 * 1024 * 1024)
#define AGENT_RANGE_INTERVAL_DEFAULT 500  /* ms: the p99 lag stays under 1 s */
#define AGENT_HEARTBEAT_DEFAULT      1000 /* ms */
#define AGENT_RETRY_MAX_MS           30000
#define AGENT_ROLES_MAX              8

typedef struct AgentConfig
{
	BkCliConfig
		common; /* kafka_*, topic_prefix, key_file (public), chunk_size */
	char *source_id;
	char *mysql_host;
	unsigned int mysql_port;
	char *mysql_socket;
	char *mysql_user;
	char *mysql_password_file;
	BkMysqlTls mysql_tls;   /* mysql_ssl_*: every connection's TLS */
	uint32_t server_id;     /* the replica id the agent registers with */
	uint64_t range_size;    /* a range is sent once this many bytes wait */
	int64_t range_interval; /* ... or once its first event waited this long */
	int64_t heartbeat;      /* server heartbeat period when idle */
	char *start_binlog;     /* first file when the archive is empty */
	char *state_dir;
	char *control_socket;
	char *control_user; /* OS user allowed on the socket besides ours */
	int n_roles;
	char *roles[AGENT_ROLES_MAX];
} AgentConfig;

/* A position in the source's binlog. */
typedef struct BinlogPosition
{
	char file[BK_BINLOG_FILE_NAME_MAX + 1];
	uint64_t offset;
} BinlogPosition;

/* What bk_status() reports; guarded by AgentStatus.lock. */
typedef struct AgentStatus
{
	pthread_mutex_t lock;
	bool streaming;          /* connected and receiving */
	BinlogPosition received; /* end of the newest event received */
	BinlogPosition archived; /* end of the newest range Kafka acknowledged */
	int64_t archived_at_ms;  /* when that acknowledgement came */
	uint32_t archived_event_time; /* timestamp of its newest event */
	char gtid[BK_BINLOG_GTID_STATE_MAX];
	int64_t caught_up_at_ms; /* last heartbeat at the server's end */
	uint64_t backlog_bytes;  /* received but not yet acknowledged */
	uint64_t ranges_sent;
	uint64_t bytes_sent;
	char last_error[BK_ERROR_MESSAGE_MAX];
	int64_t last_error_at_ms;
	/*
	 * The last fatal Kafka producer error (BkKafkaAlarm): acknowledged
	 * messages may be lost.  Kept until a snapshot that started after it
	 * completes.
	 */
	char kafka_alarm[BK_ERROR_MESSAGE_MAX];
	int64_t kafka_alarm_at_ms;
} AgentStatus;

struct SnapshotJob;
struct BkControlAuth;

/* A snapshot's connections: control, accounts, servers, locker, readers. */
#define AGENT_SNAPSHOT_IDS_MAX (4 + 16 /* SNAPSHOT_JOBS_MAX */)

typedef struct Agent
{
	AgentConfig config;
	/*
	 * The public key of key_file and the file's identity when it was read:
	 * agent_source_key reads it again when the file changes.  Under
	 * key_lock: the stream and the snapshot threads seal.
	 */
	BkKeyring *keyring; /* one public key */
	struct stat keyring_stat;
	char keyring_logged[BK_KEY_ID_HEX_LEN + 1];
	pthread_mutex_t key_lock;
	BkProducer *producer;
	char binlog_topic[BK_TOPIC_NAME_MAX + 1];
	char audit_topic[BK_TOPIC_NAME_MAX + 1];
	char *mysql_password;
	AgentStatus status;
	pthread_mutex_t snapshot_lock;
	/*
	 * Held by bk_snapshot() while it replaces the last job (joining its
	 * thread, which may still be sending its audit event) and starts the
	 * next: snapshot_lock is not held meanwhile, so bk_status() and
	 * bk_snapshot_cancel() do not wait for that.
	 */
	pthread_mutex_t snapshot_start_lock;
	struct SnapshotJob *snapshot; /* the running or the last snapshot */
	struct BkControlAuth *auth;   /* who may call: control.h */
	/*
	 * agent_connect probed the server's greeting (mysql_ssl_mode =
	 * required) and no login has succeeded since; __atomic access, as
	 * every thread connects.
	 */
	bool tls_probed;
	/*
	 * The server's ids of the running snapshot's connections, which
	 * complete-until does not wait for (binlog_stream.c, probe_ask): they
	 * only read.  Under snapshot_ids_lock: the snapshot's thread adds them,
	 * the stream's reads them.
	 */
	pthread_mutex_t snapshot_ids_lock;
	unsigned long snapshot_ids[AGENT_SNAPSHOT_IDS_MAX];
	int snapshot_id_count;
} Agent;

extern volatile sig_atomic_t agent_stop_requested;

/* Logging: one line to stderr with a level, as the shipper does. */
extern void agent_log(const char *level, const char *fmt, ...) BK_PRINTF(2, 3);

/* Record an error in the status (bk_status().last_error) and log it. */
extern void agent_report_error(Agent *agent, const BkError *err);

/*
 * The public key to seal the next object to (a copy): key_file's, read
 * again whenever the file changed (inode, size, modification time), as
 * the PostgreSQL extension does, so that a rotation (the .pub rewritten
 * or replaced) takes effect without a restart.  A file that no longer
 * loads drops the old key: sealing to it would no longer be what the
 * operator asked for.
 */
extern bool agent_source_key(Agent *agent, BkKey *key, BkError *err);

/*
 * Have a producer's fatal errors raised as the agent's alarm: logged,
 * kept for bk_status(), and sent as producer-fatal audit events.
 */
extern void agent_kafka_alarms(Agent *agent, BkKafkaSettings *settings);

/* A snapshot that started at started_ms completed: it covers older alarms. */
extern void agent_snapshot_completed(Agent *agent, int64_t started_ms);

/* Send an audit event (kind of trouble, details) about the stream. */
extern void agent_audit(Agent *agent, const char *event, const char *detail,
						const BinlogPosition *position);

/*
 * The same with the GTID states at position, the archive's and the
 * server's (either NULL: not said); true once Kafka took it.
 */
extern bool agent_audit_gtids(Agent *agent, const char *event,
							  const char *detail,
							  const BinlogPosition *position, const char *gtid,
							  const char *server_gtid);

/* A connection to the source server with the agent's settings. */
extern MYSQL *agent_connect(Agent *agent, BkError *err);
extern MYSQL *agent_connect_timed(Agent *agent, unsigned int connect_timeout,
								  unsigned int read_timeout, BkError *err);

/*
 * The running snapshot's connections: one more (its server id), none (the
 * snapshot is over), and the list as SQL ("1,2,3", "" for none) in out.
 */
extern void agent_snapshot_id_add(Agent *agent, unsigned long id);
extern void agent_snapshot_ids_clear(Agent *agent);
extern void agent_snapshot_ids_sql(Agent *agent, char *out, size_t out_len);

/* Run one query, expecting no result set. */
extern bool agent_query(MYSQL *conn, const char *sql, BkError *err);

/*
 * The server's GTID state at a binlog position, BINLOG_GTID_POS(file,
 * pos), into out; *found false when the server has none there (NULL).
 */
extern bool agent_binlog_gtid_pos(MYSQL *conn, const char *file, uint64_t pos,
								  char *out, size_t out_len, bool *found,
								  BkError *err);

/*
 * binlog_resume.c: the end of the newest range of source Kafka holds, and
 * the GTIDs reached there (gtid: per domain; gtids: every server, as far
 * as its metadata says), and which file of its name it is in (file_id,
 * unknown for a range of an older agent); *closed says that range ended
 * its file with STOP.  One that ended it with ROTATE gives the start of the
 * next file, and in *rotated_from where the file ended (else an empty file
 * name).  When that range ends inside a transaction, gtids and txn are
 * inside it (binlog_gtids_resume_open); else txn is empty.
 */
extern bool binlog_resume_from_kafka(Agent *agent, BinlogPosition *position,
									 BinlogPosition *rotated_from,
									 BkGtidState *gtid, BinlogGtids *gtids,
									 BkBinlogTxn *txn, BinlogFileId *file_id,
									 bool *closed, bool *found, BkError *err);

/* binlog_resume.c: the local hint of the last acknowledged position. */
extern bool binlog_state_read(Agent *agent, BinlogPosition *position,
							  BinlogFileId *file_id, BkGtidState *gtid,
							  char *open, size_t open_len, bool *found,
							  BkError *err);
extern bool binlog_state_write(Agent *agent, const BinlogPosition *position,
							   const BinlogFileId *file_id,
							   const BkGtidState *gtid, const char *open,
							   BkError *err);

/* binlog_stream.c: stream until stopped; returns false on a fatal error. */
extern bool binlog_stream_run(Agent *agent, BkError *err);

#endif /* BK_AGENT_H */
