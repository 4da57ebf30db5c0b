/*
 * restore.c
 *		bk restore --source S --mysql-socket PATH ...: rebuild a MariaDB
 *		server's databases as they were at a moment the archive covers.
 *
 * The newest complete snapshot at or before the target is loaded into the
 * target server, and the archived binlog is replayed from the snapshot's
 * coordinates to the end of the last transaction the target includes
 * (restore_binlog.c decides where that is from the archive itself).  See
 * restore.h for the steps.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bk_secret_file.h"
#include "bk_snapshot_format.h"
#include "bk_util.h"
#include "mariadb.h"
#include "restore.h"
#include "times.h"

static const char restore_help[] =
	"Usage: bk restore --source S (--mysql-socket PATH | --mysql-host H\n"
	"                  [--mysql-port P]) [TARGET] [OPTIONS]\n"
	"\n"
	"Rebuilds the databases of MariaDB source S in the running server given\n"
	"by --mysql-socket or --mysql-host, as they were at the target moment:\n"
	"loads the newest complete snapshot at or before it, then replays the\n"
	"archived binlog from the snapshot's coordinates up to the target.\n"
	"The binlog is decrypted and checked, and every snapshot part found,\n"
	"before the server is touched; the parts are decrypted as they load.\n"
	"\n"
	"Target (at most one; default: everything archived):\n"
	"  --target-time TS          every transaction that committed at or "
	"before\n"
	"                            TS (ISO 8601; UTC unless it has a zone); an\n"
	"                            XID commit counts from the start of the\n"
	"                            statement that committed it (README)\n"
	"  --target-position F:POS   up to the end of the last transaction ending\n"
	"                            at or before byte POS of binlog file F\n"
	"  --target-gtid G           up to and including GTID G (per domain)\n"
	"  --target immediate        the snapshot alone\n"
	"  --target latest           everything archived (the default); refused\n"
	"                            when the binlog archive has a hole before\n"
	"                            its end\n"
	"\n"
	"Options:\n"
	"  --source S                the source to restore (required)\n"
	"  --mysql-socket PATH       the target server's Unix socket\n"
	"  --mysql-host H            the target server's host (TCP)\n"
	"  --mysql-port P            its port (default 3306)\n"
	"  --mysql-user U            account to restore as (default root); it "
	"needs\n"
	"                            ALL PRIVILEGES ON *.* WITH GRANT OPTION\n"
	"  --mysql-password-file F   its password (else from ~/.my.cnf, [client])\n"
	"  --mysql-ssl-mode M        TLS to the target: disabled, required (the\n"
	"                            server's certificate unchecked) or\n"
	"                            verify_identity (signed by --mysql-ssl-ca,\n"
	"                            naming --mysql-host); default "
	"verify_identity\n"
	"                            with --mysql-ssl-ca, else disabled over the\n"
	"                            socket or loopback, else required.  A server\n"
	"                            without TLS is refused before the login\n"
	"  --mysql-ssl-ca F          PEM file of the CAs the server's certificate\n"
	"                            is checked against\n"
	"  --mysql-ssl-cert F        client certificate (with --mysql-ssl-key)\n"
	"  --mysql-ssl-key F         its private key (mode 0600 or stricter)\n"
	"  --mysql-ssl-crl F         revoked server certificates (PEM)\n"
	"  --snapshot ID             restore this snapshot (must be at or before\n"
	"                            the target)\n"
	"  --jobs N                  tables loaded in parallel (default 2)\n"
	"  --work-dir DIR            where the binlog is rebuilt for replay\n"
	"                            (default $TMPDIR or /tmp)\n"
	"  --force                   restore into a server that holds databases:\n"
	"                            the snapshot's databases are dropped first,\n"
	"                            and RESET MASTER if its binlog holds GTIDs;\n"
	"                            when it drops or resets anything, every\n"
	"                            part of the snapshot is checked first\n"
	"  --dry-run                 check everything and print the plan; change\n"
	"                            nothing\n"
	"\n"
	"TLS comes from these options alone: over TCP, unless given\n"
	"--mysql-ssl-mode=disabled (no TLS asked for, none checked),\n"
	"ssl and tls settings in the option files the mariadb client reads\n"
	"(~/.my.cnf and others) are refused.  Over --mysql-socket TLS protects\n"
	"nothing, and asking for it is refused.\n"
	"\n"
	"The target server must be empty (no database but mysql, sys and the\n"
	"schemas of the server), have local_infile=ON, secure_timestamp other\n"
	"than YES, and be of the snapshot's version or newer.\n"
	"\n"
	"Exit status: 0 restored; 1 the target is not restorable or the restore\n"
	"failed; 2 usage; 3 configuration or key; 4 the archive failed a check;\n"
	"5 the repository unreachable.  A restore that failed after its first\n"
	"write, whatever the status, leaves the database bk_restore_incomplete,\n"
	"which says which step failed.\n"
	"\n" BK_COMMON_HELP;

enum
{
	OPT_SOURCE = OPT_COMMAND_BASE,
	OPT_SOCKET,
	OPT_HOST,
	OPT_PORT,
	OPT_USER,
	OPT_PASSWORD_FILE,
	OPT_SSL_MODE,
	OPT_SSL_CA,
	OPT_SSL_CERT,
	OPT_SSL_KEY,
	OPT_SSL_CRL,
	OPT_SNAPSHOT,
	OPT_TARGET,
	OPT_TARGET_TIME,
	OPT_TARGET_POSITION,
	OPT_TARGET_GTID,
	OPT_JOBS,
	OPT_WORK_DIR,
	OPT_FORCE,
	OPT_DRY_RUN
};

static const struct option restore_options[] = {
	{"source", required_argument, NULL, OPT_SOURCE},
	{"mysql-socket", required_argument, NULL, OPT_SOCKET},
	{"mysql-host", required_argument, NULL, OPT_HOST},
	{"mysql-port", required_argument, NULL, OPT_PORT},
	{"mysql-user", required_argument, NULL, OPT_USER},
	{"mysql-password-file", required_argument, NULL, OPT_PASSWORD_FILE},
	{"mysql-ssl-mode", required_argument, NULL, OPT_SSL_MODE},
	{"mysql-ssl-ca", required_argument, NULL, OPT_SSL_CA},
	{"mysql-ssl-cert", required_argument, NULL, OPT_SSL_CERT},
	{"mysql-ssl-key", required_argument, NULL, OPT_SSL_KEY},
	{"mysql-ssl-crl", required_argument, NULL, OPT_SSL_CRL},
	{"snapshot", required_argument, NULL, OPT_SNAPSHOT},
	{"target", required_argument, NULL, OPT_TARGET},
	{"target-time", required_argument, NULL, OPT_TARGET_TIME},
	{"target-position", required_argument, NULL, OPT_TARGET_POSITION},
	{"target-gtid", required_argument, NULL, OPT_TARGET_GTID},
	{"jobs", required_argument, NULL, OPT_JOBS},
	{"work-dir", required_argument, NULL, OPT_WORK_DIR},
	{"force", no_argument, NULL, OPT_FORCE},
	{"dry-run", no_argument, NULL, OPT_DRY_RUN},
	BK_COMMON_LONG_OPTIONS,
	{NULL, 0, NULL, 0}};

static int
set_target(MariadbRestore *r, RestoreTargetType type, const char *text)
{
	BkError err;

	if (r->target.text != NULL)
		return bk_cli_usage_error(r->program,
								  "give one target at most (\"%s\" and \"%s\")",
								  r->target.text, text);
	r->target.type = type;
	r->target.text = text;
	switch (type)
	{
		case TARGET_TIME:
			if (!bk_timestamp_parse(text, true, &r->target.time_us, &err))
				return bk_cli_usage_error(r->program,
										  "invalid --target-time \"%s\": %s;"
										  " give an ISO 8601 time such as"
										  " 2026-12-02T10:00:00Z",
										  text, err.message);
			break;
		case TARGET_POSITION:
		{
			const char *colon = strrchr(text, ':');
			char *end;
			size_t len = colon ? (size_t) (colon - text) : 0;

			if (colon == NULL || len == 0 || len >= sizeof(r->target.file))
				return bk_cli_usage_error(r->program,
										  "invalid --target-position \"%s\":"
										  " give FILE:POS, such as"
										  " mariadb-bin.000042:1234",
										  text);
			memcpy(r->target.file, text, len);
			r->target.file[len] = '\0';
			errno = 0;
			r->target.pos = strtoull(colon + 1, &end, 10);
			if (!bk_binlog_file_name_valid(r->target.file) || colon[1] < '0' ||
				colon[1] > '9' || *end != '\0' || errno != 0)
				return bk_cli_usage_error(r->program,
										  "invalid --target-position \"%s\":"
										  " give FILE:POS, such as"
										  " mariadb-bin.000042:1234",
										  text);
			break;
		}
		case TARGET_GTID:
			if (!bk_gtid_state_parse(text, &r->target.gtid, &err) ||
				r->target.gtid.count == 0)
				return bk_cli_usage_error(r->program,
										  "invalid --target-gtid \"%s\": give"
										  " domain-server-sequence, such as"
										  " 0-1-4242 (one per domain)",
										  text);
			break;
		default:
			break;
	}
	return BK_EXIT_OK;
}

/* --mysql-ssl-*: the agent's mysql_ssl_* setting of the same name. */
static int
set_tls(MariadbRestore *r, const char *key, const char *value)
{
	BkError err;
	bool known;

	bk_error_clear(&err);
	if (bk_mysql_tls_set(&r->tls, key, value, &known, &err))
		return BK_EXIT_OK;
	return bk_cli_usage_error(r->program, "%s%s%s", err.message,
							  err.hint[0] ? "\nHINT: " : "", err.hint);
}

static int
restore_option(void *arg, int code, const char *value)
{
	MariadbRestore *r = arg;
	char *end;
	long number;

	switch (code)
	{
		case OPT_SOURCE:
			r->source = value;
			break;
		case OPT_SOCKET:
			r->socket = value;
			break;
		case OPT_HOST:
			r->host = value;
			break;
		case OPT_PORT:
			errno = 0;
			number = strtol(value, &end, 10);
			if (*value == '\0' || *end != '\0' || errno != 0 || number < 1 ||
				number > 65535)
				return bk_cli_usage_error(r->program,
										  "invalid --mysql-port \"%s\"", value);
			r->port = (unsigned int) number;
			break;
		case OPT_USER:
			r->user = value;
			break;
		case OPT_PASSWORD_FILE:
			r->password_file = value;
			break;
		case OPT_SSL_MODE:
			return set_tls(r, "mysql_ssl_mode", value);
		case OPT_SSL_CA:
			return set_tls(r, "mysql_ssl_ca", value);
		case OPT_SSL_CERT:
			return set_tls(r, "mysql_ssl_cert", value);
		case OPT_SSL_KEY:
			return set_tls(r, "mysql_ssl_key", value);
		case OPT_SSL_CRL:
			return set_tls(r, "mysql_ssl_crl", value);
		case OPT_SNAPSHOT:
			r->snapshot_id = value;
			break;
		case OPT_TARGET:
			if (strcmp(value, "immediate") == 0)
				return set_target(r, TARGET_IMMEDIATE, value);
			if (strcmp(value, "latest") == 0)
				return set_target(r, TARGET_LATEST, value);
			return bk_cli_usage_error(r->program,
									  "invalid --target \"%s\": immediate or"
									  " latest",
									  value);
		case OPT_TARGET_TIME:
			return set_target(r, TARGET_TIME, value);
		case OPT_TARGET_POSITION:
			return set_target(r, TARGET_POSITION, value);
		case OPT_TARGET_GTID:
			return set_target(r, TARGET_GTID, value);
		case OPT_JOBS:
			errno = 0;
			number = strtol(value, &end, 10);
			if (*value == '\0' || *end != '\0' || errno != 0 || number < 1 ||
				number > RESTORE_JOBS_MAX)
				return bk_cli_usage_error(r->program,
										  "invalid --jobs \"%s\": 1 to %d",
										  value, RESTORE_JOBS_MAX);
			r->jobs = (int) number;
			break;
		case OPT_WORK_DIR:
			r->work_parent = value;
			break;
		case OPT_FORCE:
			r->force = true;
			break;
		case OPT_DRY_RUN:
			r->dry_run = true;
			break;
	}
	return BK_EXIT_OK;
}

/*
 * read_password
 *		The first line of --mysql-password-file, held to the rule of private
 *		key files (bk_secret_file.h).
 */
static bool
read_password(MariadbRestore *r, BkError *err)
{
	char *data = NULL;
	size_t len = 0;
	size_t kept;

	if (r->password_file == NULL)
		return true;
	if (!bk_secret_file_read(r->password_file, BK_SECRET_MARIADB_PASSWORD, 4096,
							 &data, &len, err))
		return false;
	kept = len;
	while (kept > 0 && (data[kept - 1] == '\n' || data[kept - 1] == '\r'))
		kept--;
	r->password = bk_cli_alloc_zero(kept + 1, 1);
	memcpy(r->password, data, kept);
	bk_secure_wipe(data, len);
	free(data);
	return true;
}

/* Binlog order of two coordinates. */
static int
coord_compare(const char *file_a, uint64_t pos_a, const char *file_b,
			  uint64_t pos_b)
{
	const char *dot_a = strrchr(file_a, '.');
	const char *dot_b = strrchr(file_b, '.');
	int order = bk_binlog_file_compare(file_a, file_b);

	/* One file spelled two ways (mariadb-bin.1, mariadb-bin.000001). */
	if (order != 0 && dot_a != NULL && dot_b != NULL &&
		dot_a - file_a == dot_b - file_b &&
		strncmp(file_a, file_b, (size_t) (dot_a - file_a)) == 0 &&
		strtoull(dot_a + 1, NULL, 10) == strtoull(dot_b + 1, NULL, 10))
		order = 0;
	if (order != 0)
		return order;
	return pos_a < pos_b ? -1 : pos_a > pos_b;
}

/*
 * snapshot_fits
 *		Is the snapshot at or before the target?  A time target is judged by
 *		the snapshot's consistent point (mariadb_snapshot_before_time); the
 *		binlog scan checks it once more against the transactions of the
 *		snapshot's binlog file.
 */
static bool
snapshot_fits(const MariadbRestore *r, const MariadbSnapshot *snap)
{
	switch (r->target.type)
	{
		case TARGET_TIME:
		{
			return mariadb_snapshot_before_time(snap, r->target.time_us);
		}
		case TARGET_POSITION:
			/*
			 * A position in another basename's binlog (another server's
			 * history) is before or after no position of this one, whatever
			 * the numbers: no replay goes from one into the other.
			 */
			return bk_binlog_file_same_base(snap->binlog_file,
											r->target.file) &&
				   coord_compare(snap->binlog_file, snap->binlog_pos,
								 r->target.file, r->target.pos) <= 0;
		case TARGET_GTID:
		{
			BkGtidState have;
			BkError err;

			if (!bk_gtid_state_parse(snap->gtid, &have, &err))
				return false;
			for (int idx = 0; idx < r->target.gtid.count; idx++)
				for (int haveIdx = 0; haveIdx < have.count; haveIdx++)
					if (have.gtids[haveIdx].domain ==
							r->target.gtid.gtids[idx].domain &&
						have.gtids[haveIdx].seq > r->target.gtid.gtids[idx].seq)
						return false;
			return true;
		}
		default:
			return true;
	}
}

/*
 * snapshot_might_fit
 *		Could the snapshot, were it complete, serve the target?  By its
 *		record when that was read; else (a damaged record) by the start
 *		time its id holds ("YYYYMMDDTHHMMSSZ-..."), before its consistent
 *		point: a time target before it cannot be served, anything else
 *		might.
 */
static bool
snapshot_might_fit(const MariadbRestore *r, const MariadbSnapshot *snap)
{
	int64_t start_us;

	if (snap->has_record)
		return snapshot_fits(r, snap);
	return r->target.type != TARGET_TIME ||
		   !bk_snapshot_id_start(snap->id, &start_us) ||
		   start_us <= r->target.time_us;
}

/*
 * warn_skipped
 *		Name each snapshot newer than the one chosen that might have served
 *		the target but is not complete, with why: the DBA must know that a
 *		damaged newest snapshot was stepped over, even when the older one
 *		and the binlog still reach the target.
 */
static void
warn_skipped(const MariadbRestore *r)
{
	int chosen = (int) (r->snapshot - r->snapshots.snapshots);

	for (int idx = r->snapshots.count - 1; idx > chosen; idx--)
	{
		const MariadbSnapshot *snap = &r->snapshots.snapshots[idx];

		if (snap->complete || snap->other_engine ||
			!snapshot_might_fit(r, snap))
			continue;
		fprintf(stderr,
				"%s: warning: snapshot %s of source \"%s\" is newer than"
				" snapshot %s but not complete (%s): restoring from %s\n",
				r->program, snap->id, r->source, r->snapshot->id, snap->reason,
				r->snapshot->id);
	}
}

/*
 * describe_window
 *		"from X (snapshot S) to Y" for the messages that refuse a target.
 */
static const MariadbSnapshot *
describe_window(const MariadbRestore *r, char *out, size_t out_len)
{
	const MariadbSnapshot *oldest = NULL;
	const char *until_file = NULL;
	uint64_t until_pos = 0;

	for (int idx = 0; idx < r->snapshots.count && oldest == NULL; idx++)
	{
		char problem[256];

		if (r->snapshots.snapshots[idx].complete &&
			mariadb_snapshot_reach(&r->snapshots.snapshots[idx], &r->binlog,
								   &until_file, &until_pos, problem,
								   sizeof(problem)))
			oldest = &r->snapshots.snapshots[idx];
	}
	if (oldest == NULL)
		snprintf(out, out_len, "nothing is restorable");
	else
		snprintf(out, out_len,
				 "the restorable window is from %s:%" PRIu64
				 " (snapshot %s, started %s) to %s:%" PRIu64
				 "; \"bk list --source %s\" shows it",
				 oldest->binlog_file, oldest->binlog_pos, oldest->id,
				 oldest->started, until_file, until_pos, r->source);
	return oldest;
}

/*
 * refuse_expired_target
 *		No snapshot is at or before the target, and bk expire recorded that
 *		it removed the binlog before the oldest restorable one's: say so,
 *		rather than leave the reader to wonder what the archive lost.  The
 *		record says which binlog went, not whether snapshots went with it
 *		(a source's first snapshot leaves the binlog before it to remove
 *		too): what is said of the older snapshots is what the catalog holds.
 *		False (err untouched) when that is not the case.
 */
static bool
refuse_expired_target(const MariadbRestore *r, const MariadbSnapshot *oldest,
					  const char *window, BkError *err)
{
	const char *record;
	int older = (int) (oldest != NULL ? oldest - r->snapshots.snapshots : 0);
	char kept[160];

	if (oldest == NULL || r->snapshot_id != NULL || r->target.text == NULL ||
		(r->target.type == TARGET_POSITION &&
		 !bk_binlog_file_same_base(oldest->binlog_file, r->target.file)))
		return false;
	record = binlog_catalog_expired_record(&r->binlog, oldest->binlog_file);
	if (record == NULL)
		return false;
	if (older == 0)
		snprintf(kept, sizeof(kept), "no older snapshot is kept");
	else
		snprintf(kept, sizeof(kept),
				 "the %d older snapshot%s kept %s incomplete or not carried"
				 " forward by the archived binlog",
				 older, older == 1 ? "" : "s", older == 1 ? "is" : "are");
	bk_error_set(err, BK_ERR_NOT_FOUND,
				 "no snapshot of source \"%s\" is at or before the target"
				 " %s: it is before the oldest restorable snapshot, %s (at"
				 " %s:%" PRIu64 "); bk expire removed the binlog before it"
				 " (up to %s), and %s",
				 r->source, r->target.text, oldest->id, oldest->binlog_file,
				 oldest->binlog_pos, record, kept);
	bk_error_hint(err, "Choose a later target: %s.", window);
	return true;
}

/*
 * refuse_target_in_snapshot_second
 *		The oldest snapshot at or before a time target holds a transaction
 *		stamped in the target's own second (too_new, from the binlog scan),
 *		and no snapshot before it is at or before the target.  The snapshot
 *		is not after the target, but the binlog's whole-second stamps cannot
 *		tell whether that transaction came before it: say that, not that the
 *		target is before every snapshot, with what bk expire removed if it
 *		recorded that.
 */
static bool
refuse_target_in_snapshot_second(const MariadbRestore *r,
								 const MariadbSnapshot *snap,
								 const BkError *too_new, const char *window,
								 BkError *err)
{
	const char *record =
		binlog_catalog_expired_record(&r->binlog, snap->binlog_file);

	bk_error_set(
		err, BK_ERR_NOT_FOUND,
		"%s, and no snapshot before it is at or before the target%s%s%s",
		too_new->message,
		record != NULL ? "; bk expire removed the binlog before it"
						 " (up to "
					   : "",
		record != NULL ? record : "", record != NULL ? ")" : "");
	return bk_error_hint(err,
						 "The binlog stamps whole seconds: a target inside the"
						 " second the snapshot was taken cannot be told from"
						 " the snapshot's own transactions.  Choose a target"
						 " after that second: %s.",
						 window);
}

/* bk_cli_check_record_read, for every snapshot of the catalog. */
static bool
refuse_unread_records(MariadbRestore *r, BkError *err)
{
	for (int idx = r->snapshots.count - 1; idx >= 0; idx--)
	{
		const MariadbSnapshot *snap = &r->snapshots.snapshots[idx];

		if (snap->record_unreadable &&
			!bk_cli_check_record_read(snap->id, r->source, snap->record_error,
									  snap->reason, r->snapshot_id, err))
			return false;
	}
	return true;
}

/*
 * choose_snapshot
 *		The named snapshot, or the newest complete one at or before the
 *		target whose binlog the archive carries on from, below index below.
 *		too_new: why the snapshot at below was not taken (it holds a
 *		transaction in a time target's second), or NULL.
 */
static bool
choose_snapshot(MariadbRestore *r, int below, const BkError *too_new,
				BkError *err)
{
	char window[1024];
	char problem[256] = "";
	const MariadbSnapshot *oldest;
	bool any_fits = false;

	oldest = describe_window(r, window, sizeof(window));
	for (int idx = below - 1; idx >= 0; idx--)
	{
		const MariadbSnapshot *snap = &r->snapshots.snapshots[idx];
		const char *until_file;
		uint64_t until_pos;

		if (r->snapshot_id != NULL)
		{
			if (strcmp(snap->id, r->snapshot_id) != 0)
				continue;
			if (!snap->complete)
				return bk_error_set(err,
									mariadb_snapshot_damaged(snap)
										? BK_ERR_SEQUENCE
										: BK_ERR_NOT_FOUND,
									"snapshot %s of source \"%s\" is not"
									" complete (%s): it cannot be restored",
									snap->id, r->source, snap->reason);
			if (r->target.type == TARGET_POSITION &&
				!bk_binlog_file_same_base(snap->binlog_file, r->target.file))
				return bk_error_set(err, BK_ERR_NOT_FOUND,
									"snapshot %s was taken at %s:%" PRIu64
									", in a binlog of another basename than"
									" the target %s: another server's"
									" history, which no replay reaches",
									snap->id, snap->binlog_file,
									snap->binlog_pos, r->target.text);
			if (!snapshot_fits(r, snap))
				return bk_error_set(
					err, BK_ERR_NOT_FOUND,
					"snapshot %s (at %s:%" PRIu64
					", consistent at %s) is later than the"
					" target %s",
					snap->id, snap->binlog_file, snap->binlog_pos,
					snap->consistent_at[0] != '\0' ? snap->consistent_at
												   : snap->finished,
					r->target.text);
		}
		else if (!snap->complete || !snapshot_fits(r, snap))
			continue;
		any_fits = true;
		if (r->target.type != TARGET_IMMEDIATE &&
			!mariadb_snapshot_reach(snap, &r->binlog, &until_file, &until_pos,
									problem, sizeof(problem)))
		{
			if (r->snapshot_id != NULL)
				return bk_error_set(err, BK_ERR_SEQUENCE,
									"snapshot %s cannot be carried forward:"
									" %s",
									snap->id, problem);
			continue;
		}
		r->snapshot = snap;
		return true;
	}
	if (r->snapshot_id != NULL && below == r->snapshots.count)
		return bk_error_set(err, BK_ERR_NOT_FOUND,
							"source \"%s\" has no snapshot %s", r->source,
							r->snapshot_id) ||
			   bk_error_hint(err, "\"bk list --source %s\" shows them.",
							 r->source);
	if (!any_fits && too_new != NULL)
		return refuse_target_in_snapshot_second(
			r, &r->snapshots.snapshots[below], too_new, window, err);
	if (!any_fits && refuse_expired_target(r, oldest, window, err))
		return false;
	bk_error_set(err, BK_ERR_NOT_FOUND,
				 "no snapshot of source \"%s\" is at or before the target%s%s"
				 " and carried forward by the archived binlog%s%s",
				 r->source, r->target.text ? " " : "",
				 r->target.text ? r->target.text : "", problem[0] ? ": " : "",
				 problem);
	/*
	 * A damaged snapshot might have: that is an integrity failure (4), not
	 * the archive simply holding nothing for the target.
	 */
	for (int idx = below - 1; idx >= 0; idx--)
	{
		const MariadbSnapshot *snap = &r->snapshots.snapshots[idx];
		char nothing[sizeof(err->message)];

		if (!mariadb_snapshot_damaged(snap) || !snapshot_might_fit(r, snap))
			continue;
		bk_strlcpy(nothing, err->message, sizeof(nothing));
		bk_error_set(err, BK_ERR_SEQUENCE, "%s; snapshot %s is damaged: %s",
					 nothing, snap->id, snap->reason);
		return bk_error_hint(err,
							 "\"bk verify --source %s\" checks every object."
							 " A snapshot whose objects are still arriving is"
							 " complete in a moment; otherwise restore from"
							 " another one (--snapshot) or take a new one.",
							 r->source);
	}
	return bk_error_hint(err, "%c%s.", window[0] - 32, window + 1);
}

/*
 * load_snapshot_json
 *		One small JSON object of the snapshot, decrypted.
 */
static json_t *
load_snapshot_json(MariadbRestore *r, const char *name, BkError *err)
{
	char object[BK_OBJECT_NAME_MAX + 1];
	uint8_t *text = NULL;
	size_t len = 0;
	json_t *value;
	json_error_t jerr;

	snprintf(object, sizeof(object), "%s/%s", r->snapshot->id, name);
	if (!bk_repo_decrypt_to_memory(r->ctx.repo, BK_REPO_ARCHIVE, r->source,
								   BK_KIND_SNAPSHOT, object, r->ctx.decoder,
								   512 * 1024 * 1024, &text, &len, err))
	{
		bk_error_prefix(err, "snapshot %s: ", r->snapshot->id);
		return NULL;
	}
	value = json_loadb((const char *) text, len, 0, &jerr);
	free(text);
	if (!json_is_object(value))
	{
		json_decref(value);
		bk_error_set(err, BK_ERR_FORMAT, "snapshot %s: %s is not valid JSON",
					 r->snapshot->id, name);
		return NULL;
	}
	return value;
}

/*
 * check_planned_record
 *		The snapshot was chosen, and the replay planned from its position and
 *		GTID state, by its record's keyless metadata.  The record was just
 *		decrypted (load_snapshot_json, whose tag covers the metadata it was
 *		stored with): the plan holds only if that is what it read, not
 *		another attempt at the record in its place meanwhile.
 */
static bool
check_planned_record(MariadbRestore *r, BkError *err)
{
	if (bk_repo_meta_agrees(r->ctx.decoder, r->snapshot->meta_digest, r->source,
							err))
		return true;
	return bk_error_prefix(err, "snapshot %s: ", r->snapshot->id);
}

static void
format_binlog_time(uint32_t seconds, char *out, size_t out_len)
{
	bk_format_time_utc((int64_t) seconds * 1000, out, out_len);
}

/*
 * print_plan
 *		What the restore does, for --dry-run and before it starts.
 */
static void
print_plan(const MariadbRestore *r)
{
	const MariadbSnapshot *snap = r->snapshot;
	/*
	 * Rates measured by bench/mariadb_restore.sh on a 2-core machine
	 * (BENCHMARKS.md): LOAD DATA at --jobs 2, and the replay, which runs
	 * one transaction after another.
	 */
	const double load_mb_s = 50.0, replay_mb_s = 2.0;
	double estimate = (double) r->bytes_total / 1e6 / load_mb_s +
					  (double) r->replay_bytes / 1e6 / replay_mb_s;
	char when[64] = "";

	if (r->groups > 0)
		format_binlog_time(r->last_group_time, when, sizeof(when));
	if (r->common.json)
	{
		json_t *plan;

		if (!r->dry_run)
			return;
		plan = json_pack(
			"{s:s, s:b, s:s, s:{s:s, s:I, s:s}, s:{s:s, s:I, s:s}, s:I, s:I,"
			" s:I, s:I, s:s, s:f}",
			"source", r->source, "dry_run", true, "snapshot", snap->id, "from",
			"file", snap->binlog_file, "pos", (json_int_t) snap->binlog_pos,
			"gtid", snap->gtid, "to", "file",
			r->groups ? r->cut_file : snap->binlog_file, "pos",
			(json_int_t) (r->groups ? r->cut_pos : snap->binlog_pos), "gtid",
			r->final_gtid, "tables", (json_int_t) snap->tables, "data_bytes",
			(json_int_t) r->bytes_total, "transactions", (json_int_t) r->groups,
			"binlog_bytes", (json_int_t) r->replay_bytes,
			"last_transaction_time", when, "estimated_seconds", estimate);
		json_dumpf(plan, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(plan);
		return;
	}
	printf("restore of source %s into %s%s\n", r->source,
		   r->socket ? r->socket : r->host, r->dry_run ? " (dry run)" : "");
	printf("  snapshot %s at %s:%" PRIu64 " (GTID %s), %" PRIu64
		   " tables, %" PRIu64 " rows, %" PRIu64 " bytes of data\n",
		   snap->id, snap->binlog_file, snap->binlog_pos,
		   snap->gtid[0] ? snap->gtid : "none", snap->tables, snap->rows,
		   r->bytes_total);
	if (r->groups > 0)
		printf("  binlog %s:%" PRIu64 " to %s:%" PRIu64 ": %" PRIu64
			   " transaction(s), %d file(s), %" PRIu64
			   " bytes; the last one at %s, GTID state after it %s\n",
			   snap->binlog_file, snap->binlog_pos, r->cut_file, r->cut_pos,
			   r->groups, r->replay_count, r->replay_bytes, when,
			   r->final_gtid[0] ? r->final_gtid : "none");
	else
		printf("  binlog: nothing to replay (the target is the snapshot's"
			   " own moment)\n");
	printf("  estimated time: %.0f s (at %.0f MB/s loading and %.0f MB/s of"
		   " binlog replayed)\n",
		   estimate, load_mb_s, replay_mb_s);
}

static void
report(const MariadbRestore *r)
{
	const MariadbSnapshot *snap = r->snapshot;
	char when[64] = "";

	if (r->groups > 0)
		format_binlog_time(r->last_group_time, when, sizeof(when));
	if (r->common.json)
	{
		json_t *out = json_pack(
			"{s:s, s:s, s:s, s:{s:s, s:I}, s:s, s:I, s:I, s:I, s:I, s:I,"
			" s:I, s:{s:s, s:I}, s:s, s:s, s:f, s:f, s:O, s:b, s:I, s:o}",
			"source", r->source, "snapshot", snap->id, "target",
			r->target.text ? r->target.text : "latest", "from", "file",
			snap->binlog_file, "pos", (json_int_t) snap->binlog_pos,
			"snapshot_gtid", snap->gtid, "tables",
			(json_int_t) atomic_load(&r->tables_done), "rows",
			(json_int_t) atomic_load(&r->rows_loaded), "bytes_loaded",
			(json_int_t) atomic_load(&r->bytes_loaded), "accounts_created",
			(json_int_t) r->accounts_created, "objects_created",
			(json_int_t) r->objects_created, "transactions_replayed",
			(json_int_t) r->groups, "to", "file",
			r->groups ? r->cut_file : snap->binlog_file, "pos",
			(json_int_t) (r->groups ? r->cut_pos : snap->binlog_pos), "gtid",
			r->final_gtid, "last_transaction_time", when, "load_seconds",
			r->load_seconds, "replay_seconds", r->replay_seconds,
			"existing_accounts_kept", r->kept_accounts, "event_scheduler_off",
			r->scheduler_was_on, "tables_indexed_after_load",
			(json_int_t) atomic_load(&r->indexes_deferred), "xa_prepared",
			r->xa_prepared ? json_incref(r->xa_prepared) : json_array());

		json_object_set(out, "remote_tables_not_loaded", r->remote_left);
		json_dumpf(out, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(out);
		return;
	}
	printf("restored source %s: snapshot %s (%" PRIu64 " tables, %" PRIu64
		   " rows) in %.1f s",
		   r->source, snap->id, (uint64_t) atomic_load(&r->tables_done),
		   (uint64_t) atomic_load(&r->rows_loaded), r->load_seconds);
	if (r->groups > 0)
		printf(", then %" PRIu64 " transaction(s) to %s:%" PRIu64
			   " (last at %s) in %.1f s",
			   r->groups, r->cut_file, r->cut_pos, when, r->replay_seconds);
	printf("\n  GTID state: %s\n", r->final_gtid[0] ? r->final_gtid : "none");
	if (atomic_load(&r->indexes_deferred) > 0)
		printf("  %" PRIu64 " table(s) had their secondary indexes built after"
			   " the data\n",
			   (uint64_t) atomic_load(&r->indexes_deferred));
	if (json_array_size(r->kept_accounts) > 0)
	{
		size_t idx;
		json_t *name;

		printf("  accounts that already existed were kept as they are:");
		json_array_foreach(r->kept_accounts, idx, name)
			printf(" %s", json_string_value(name));
		printf("\n");
	}
	if (json_array_size(json_object_get(r->record, "not_consistent")) > 0)
	{
		size_t idx;
		json_t *table;

		printf("  WARNING: tables without transactions were restored as the"
			   " snapshot read them, not at its consistent point:");
		json_array_foreach(json_object_get(r->record, "not_consistent"), idx,
						   table)
			printf(" `%s`.`%s`",
				   json_string_value(json_object_get(table, "database")),
				   json_string_value(json_object_get(table, "name")));
		printf("\n");
	}
	if (json_array_size(r->remote_left) > 0)
	{
		size_t idx;
		json_t *table;

		printf("  rows of remote tables (FEDERATED, SPIDER) not loaded: they"
			   " live on the servers the tables name, which loading would"
			   " write to:");
		json_array_foreach(r->remote_left, idx, table) printf(
			" `%s`.`%s`", json_string_value(json_object_get(table, "database")),
			json_string_value(json_object_get(table, "name")));
		printf("\n");
	}
	if (json_array_size(r->xa_prepared) > 0)
	{
		size_t idx;
		json_t *xid;

		printf("  WARNING: %zu XA transaction(s) left prepared, as on the"
			   " source at the target; each holds its locks until XA COMMIT"
			   " or XA ROLLBACK of it ends it:",
			   json_array_size(r->xa_prepared));
		json_array_foreach(r->xa_prepared, idx, xid)
			printf(" %s", json_string_value(xid));
		printf("\n");
	}
	if (r->scheduler_was_on)
		printf("  the event scheduler was turned OFF for the restore and is"
			   " left OFF: SET GLOBAL event_scheduler = ON when this server"
			   " takes over\n");
}

static double
seconds_since(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double) (now.tv_sec - start->tv_sec) +
		   (double) (now.tv_nsec - start->tv_nsec) / 1e9;
}

/* What writes the snapshot to the target, in order. */
static const struct
{
	bool (*run)(MariadbRestore *r, BkError *err);
	const char *name; /* for a signal taken before it */
} load_steps[] = {
	{restore_set_gtid_binlog_state, "the GTID state"},
	{restore_create_accounts, "the accounts"},
	{restore_create_servers, "the server definitions"},
	{restore_create_tables, "the databases and tables"},
	{restore_load_data, "the table data"},
	{restore_create_objects, "the routines, views, triggers and events"},
	{restore_grant, "the grants"},
};

/*
 * run
 *		Check, plan, then write: every step names what failed.
 */
static bool
run(MariadbRestore *r, BkError *err)
{
	struct timespec start;
	json_t *tables;
	size_t idx;
	json_t *table;

	/*
	 * TLS first: a contradiction or a file that cannot be read is said
	 * before the repository is read.  --mysql-host "localhost" is TCP
	 * here: restore_connect sets the protocol, the replay's client gets
	 * --protocol=TCP, and restore_check_client_defaults refuses a protocol
	 * in the option files, which Connector/C would read over bk's.
	 */
	if (!bk_mysql_tls_settle_transport(&r->tls, r->host, r->socket != NULL,
									   r->socket, err) ||
		!read_password(r, err) ||
		!bk_command_open(&r->ctx, r->program, &r->common, r->source,
						 BK_KEY_USED, err))
		return false;
	if (r->ctx.decoder == NULL)
		return bk_error_set(err, BK_ERR_KEY,
							"bk restore needs the private"
							" key") ||
			   bk_error_hint(err, "Set key_file or pass --key-file.");
	if (!binlog_catalog_load(r->ctx.repo, r->source, &r->binlog, err) ||
		!mariadb_snapshot_catalog_load(r->ctx.repo, r->source, &r->snapshots,
									   err))
		return false;
	if (r->binlog.file_count == 0 && r->snapshots.count == 0)
		return bk_error_set(err, BK_ERR_NOT_FOUND,
							"repository %s holds nothing of MariaDB source"
							" \"%s\"",
							bk_repo_location(r->ctx.repo), r->source) ||
			   bk_error_hint(err, "\"bk list\" shows the sources it holds.");
	/*
	 * The archive first: nothing is written before it all checks out.  A
	 * time target inside the second a snapshot was taken needs the one
	 * before it.
	 */
	restore_target_file_normalize(r);
	if (!refuse_unread_records(r, err) ||
		!choose_snapshot(r, r->snapshots.count, NULL, err))
		return false;
	while (!restore_plan_replay(r, err))
	{
		int below = (int) (r->snapshot - r->snapshots.snapshots);
		BkError too_new;

		if (!r->too_new || r->snapshot_id != NULL)
			return false;
		too_new = *err;
		restore_remove_work_dir(r);
		free(r->replay);
		r->replay = NULL;
		r->replay_count = 0;
		r->groups = 0;
		r->too_new = false;
		r->work_dir[0] = '\0';
		if (!choose_snapshot(r, below, &too_new, err))
			return false;
	}
	if (r->snapshot_id == NULL)
		warn_skipped(r);
	/*
	 * The parts travel apart from the record: one missing would fail the
	 * load half way, after --force dropped the databases.
	 */
	if ((r->record = load_snapshot_json(r, BK_SNAPSHOT_RECORD, err)) == NULL ||
		!check_planned_record(r, err) ||
		(r->schema = load_snapshot_json(r, "schema.json", err)) == NULL ||
		!restore_check_parts(r, err))
		return false;
	tables = json_object_get(r->record, "tables");
	json_array_foreach(tables, idx, table) r->bytes_total +=
		(uint64_t) json_integer_value(json_object_get(table, "bytes"));
	/*
	 * Before the first login: the option files may say ssl-*, protocol,
	 * reconnect, ..., or be world-writable, which Connector/C reads anyway.
	 */
	if (!restore_check_client_defaults(r, err))
		return false;
	r->conn = restore_connect(r, false, err);
	if (r->conn == NULL || !restore_check_server(r, err) ||
		!restore_check_replay(r, err))
		return false;
	/*
	 * --force is about to drop databases the target holds: a damaged part
	 * found while loading would leave them dropped and nothing in their
	 * place, so every part is checked first (the data read twice).
	 */
	if (r->force_drops && !restore_check_data(r, err))
		return false;
	print_plan(r);
	if (r->dry_run)
		return true;

	/*
	 * Held until the settings are put back, here or by the failure (the
	 * replay and the loaders look for a signal while they wait).
	 */
	restore_hold_signals(r);
	if (!restore_mark(r, err))
		return false;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (size_t step = 0; step < sizeof(load_steps) / sizeof(load_steps[0]);
		 step++)
	{
		char before[96];

		snprintf(before, sizeof(before), "before %s", load_steps[step].name);
		if (!restore_go_on(r, before, err) || !load_steps[step].run(r, err))
			return false;
	}
	r->load_seconds = seconds_since(&start);
	clock_gettime(CLOCK_MONOTONIC, &start);
	if (!restore_go_on(r, "before the binlog replay", err) ||
		!restore_replay(r, err))
		return false;
	r->replay_seconds = seconds_since(&start);
	/* Durable from here: the marker goes with a flushed commit. */
	restore_put_back_settings(r);
	if (!restore_go_on(r, "after the binlog replay", err))
		return false;
	restore_release_signals(r);
	if (!restore_finish_server(r, err) || !restore_unmark(r, err))
		return false;
	report(r);
	return true;
}

int
bk_mariadb_restore(int argc, char **argv)
{
	MariadbRestore *r = bk_cli_alloc_zero(1, sizeof(*r));
	BkError err;
	int status;
	int stop_signal;

	bk_error_clear(&err);
	r->program = argv[0];
	r->jobs = RESTORE_JOBS_DEFAULT;
	r->user = "root";
	r->tls.style = BK_MYSQL_TLS_OPTIONS;
	r->kept_accounts = json_array();
	r->remote_left = json_array();
	pthread_mutex_init(&r->lock, NULL);
	status = bk_command_parse(argc, argv, restore_options, restore_help,
							  &r->common, restore_option, r);
	if (status == BK_COMMAND_RUN)
	{
		if (r->source == NULL)
			status = bk_cli_usage_error(argv[0], "--source is required");
		else if ((r->socket == NULL) == (r->host == NULL))
			status =
				bk_cli_usage_error(argv[0], "give the target server with one of"
											" --mysql-socket or --mysql-host");
		else if (r->port != 0 && r->host == NULL)
			status = bk_cli_usage_error(argv[0],
										"--mysql-port goes with --mysql-host");
	}
	if (status != BK_COMMAND_RUN)
		goto done;
	if (r->host != NULL && r->port == 0)
		r->port = 3306;

	if (run(r, &err))
		status = BK_EXIT_OK;
	else
	{
		/* Still held: a second signal does not cut the putting back. */
		restore_put_back_settings(r);
		restore_mark_failed(r, &err);
		restore_release_signals(r);
		status =
			bk_cli_report_restore_error(argv[0], &err, r->ctx.repo != NULL);
		if (r->marked)
			fprintf(stderr,
					"%s: the target server holds an incomplete restore: drop"
					" the databases it created (and %s) before trying"
					" again, or pass --force\n",
					argv[0], RESTORE_MARKER_DB);
		/*
		 * Left OFF on purpose: the source's events would run on a part of
		 * its data, and their writes would mix with the next restore's.
		 */
		if (r->scheduler_turned_off)
			fprintf(stderr,
					"%s: the event scheduler was turned OFF for the restore"
					" and is left OFF: SET GLOBAL event_scheduler = ON once a"
					" restore completes and this server takes over\n",
					argv[0]);
	}
done:
	restore_release_signals(r);
	restore_remove_work_dir(r);
	if (r->conn != NULL)
		mysql_close(r->conn);
	json_decref(r->schema);
	json_decref(r->record);
	json_decref(r->kept_accounts);
	json_decref(r->remote_left);
	json_decref(r->xa_prepared);
	free(r->replay);
	free(r->work);
	if (r->password != NULL)
	{
		explicit_bzero(r->password, strlen(r->password));
		free(r->password);
	}
	bk_mysql_tls_free(&r->tls);
	binlog_catalog_free(&r->binlog);
	mariadb_snapshot_catalog_free(&r->snapshots);
	bk_command_close(&r->ctx);
	stop_signal = r->stop_signal;
	free(r);
	/*
	 * Stopped by a signal, held until the settings were put back and the
	 * failure said: bk ends by it, as the caller asked (a shell sees 128 +
	 * the signal).
	 */
	if (stop_signal != 0)
	{
		signal(stop_signal, SIG_DFL);
		raise(stop_signal);
	}
	return status;
}
