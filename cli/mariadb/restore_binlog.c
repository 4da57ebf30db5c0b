/*
 * restore_binlog.c
 *		The binlog of a MariaDB restore: rebuilt from the archive, cut at
 *		the target, and replayed with the server's own tools.
 *
 * Where to stop is decided from the archive itself, transaction by
 * transaction (bk_binlog_txn_feed), never by mariadb-binlog's
 * --stop-datetime: binlog timestamps are statement starts with one-second
 * resolution, and a --stop-datetime stops at the first event at or after
 * the time, in the middle of a transaction or before a later commit that
 * started earlier.  The binlog is in commit order, so the rules are:
 *
 *	 time      every transaction before the first one whose end
 *			   (BkBinlogTxn.end_time: a Query event's stamp plus its
 *			   exec_time, so a DDL or COMMIT statement counts when it
 *			   ended, not when it started) is a second that had not ended
 *			   by the target: binlog stamps are whole seconds, so a commit
 *			   stamped 10:00:05 may be at 10:00:05.9, and is taken only for
 *			   a target of 10:00:06 or later.  A second is never split, and
 *			   nothing stamped after the target is taken.  An XID event
 *			   carries the start of the statement that committed, not the
 *			   commit: an autocommit statement that ran long counts from
 *			   its start (README, time targets).
 *	 position  every transaction ending at or before FILE:POS
 *	 GTID      every transaction up to the one with that GTID, per domain;
 *			   a domain that passes its GTID first makes the target
 *			   unreachable
 *
 * The files from the snapshot's on are rebuilt in a private work directory
 * (every chunk authenticated, every event's position and CRC-32 checked)
 * and the last one is truncated at the end of the last transaction the
 * target includes, so replay needs no stop option at all:
 * mariadb-binlog --start-position=<snapshot position> FILES... | mariadb
 * --binary-mode.  A replay that fails is traced back to the event it
 * failed on.
 */
#include <ctype.h>
#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bk_util.h"
#include "mariadb.h"
#include "restore.h"
#include "times.h"

/*
 * A temporary table a session created, as statement-based logging (MIXED
 * or STATEMENT) logs it: the session's thread id, the table's database
 * and name, and whether it was created before the snapshot's position.
 */
typedef struct TempTable
{
	uint32_t thread;
	bool before_snapshot;
	char db[256];
	char name[256];
} TempTable;

typedef struct Scan
{
	MariadbRestore *r;
	const BinlogFile *file;
	bool first; /* the snapshot's own file */
	int checksum_alg;
	BkBinlogTxn txn;
	BkGtidState state; /* after the transactions taken */
	bool stopped;
	bool passed; /* a GTID target's domain went past it */
	BkGtid passed_gtid;
	bool passed_reached; /* ... after reaching it: not one moment's GTIDs */
	bool reached[BK_BINLOG_DOMAINS_MAX];
	uint32_t newest_in_snapshot; /* latest end stamp before the snapshot */
	uint64_t target_second;
	/*
	 * The GTID list the file scanned began with, followed with every
	 * transaction it ended since (the snapshot's part too): the next file's
	 * own list must equal it.
	 */
	const BinlogFile *previous; /* the file scanned before, or NULL */
	BkGtidList file_gtids;
	bool file_gtids_known;
	bool list_seen; /* the file's GTID list was met */
	/* The snapshot's position was met in its file and checked there. */
	bool snapshot_checked;
	/* Temporary tables open in their sessions (statement-based logging). */
	TempTable *temps;
	int temp_count;
	int temp_cap;
	/* Bytes of the row statement in progress: its Table_map and row events */
	uint64_t statement_bytes;
	/* The group in progress uses one created before the snapshot. */
	bool temp_use;
	bool temp_use_drops; /* ... a DROP TEMPORARY TABLE IF EXISTS of it */
	uint64_t temp_use_at;
	uint32_t temp_use_thread;
	char temp_use_name[520];
	/*
	 * The first transaction after the snapshot whose sequence number is
	 * not above its domain's last (note_backwards), counted among those
	 * taken (0: none met yet): it is replayed if that count is reached.
	 */
	uint64_t backwards_group;
	BkGtid backwards_gtid;
	BkGtid backwards_after;
	char backwards_at[BK_BINLOG_FILE_NAME_MAX + 32]; /* "file:end" */
	/*
	 * An Incident event after the snapshot that refuse_incident judged
	 * after a time target by its stamp: binlog order is commit order and
	 * stamps are statement starts, so a transaction after it may still be
	 * within the target, and taking one would replay past it (take).
	 */
	bool incident_pending;
	char incident_file[BK_BINLOG_FILE_NAME_MAX + 1];
	uint64_t incident_offset;
	uint32_t incident_stamp;
	uint16_t incident_number;
	char incident_message[256];
} Scan;

static bool incident_refusal(const Scan *scan, const char *file,
							 uint64_t offset, uint32_t stamp, uint16_t number,
							 const char *message, BkError *err);

static int
target_domain(const MariadbRestore *r, uint32_t domain)
{
	for (int idx = 0; idx < r->target.gtid.count; idx++)
		if (r->target.gtid.gtids[idx].domain == domain)
			return idx;
	return -1;
}

/*
 * take
 *		The transaction just ended, at end, is part of the restore.  Its
 *		domain is one more of the GTID state the target ends with: past the
 *		domains that state holds, the plan fails rather than leave one out.
 */
static bool
take(Scan *scan, uint64_t end, uint32_t stamp, BkError *err)
{
	MariadbRestore *r = scan->r;

	if (scan->incident_pending)
		return incident_refusal(scan, scan->incident_file,
								scan->incident_offset, scan->incident_stamp,
								scan->incident_number, scan->incident_message,
								err);
	if (!bk_gtid_state_set(&scan->state, &scan->txn.gtid, err))
		return bk_error_prefix(err,
							   "binlog \"%s\", the transaction ending at"
							   " %" PRIu64 ": ",
							   scan->file->name, end) ||
			   bk_error_hint(err,
							 "bk restores at most %d GTID domains: restore"
							 " to a target before this transaction (an"
							 " earlier --target-position, -time or -gtid).",
							 BK_BINLOG_DOMAINS_MAX);
	bk_strlcpy(r->cut_file, scan->file->name, sizeof(r->cut_file));
	r->cut_pos = end;
	if (scan->txn.ddl && scan->txn.table_created_with_rows &&
		r->split_group_gtid[0] == 0)
	{
		snprintf(r->split_group_at, sizeof(r->split_group_at), "%s:%" PRIu64,
				 scan->file->name, end);
		snprintf(r->split_group_gtid, sizeof(r->split_group_gtid),
				 "%" PRIu32 "-%" PRIu32 "-%" PRIu64, scan->txn.gtid.domain,
				 scan->txn.gtid.server, scan->txn.gtid.seq);
	}
	if (scan->temp_use && r->temp_table_gtid[0] == 0 && !scan->temp_use_drops)
	{
		snprintf(r->temp_table_at, sizeof(r->temp_table_at), "%s:%" PRIu64,
				 scan->file->name, scan->temp_use_at);
		snprintf(r->temp_table_gtid, sizeof(r->temp_table_gtid),
				 "%" PRIu32 "-%" PRIu32 "-%" PRIu64, scan->txn.gtid.domain,
				 scan->txn.gtid.server, scan->txn.gtid.seq);
		r->temp_table_thread = scan->temp_use_thread;
		bk_strlcpy(r->temp_table_name, scan->temp_use_name,
				   sizeof(r->temp_table_name));
	}
	if (scan->temp_use && r->temp_drop_gtid[0] == 0 && scan->temp_use_drops)
	{
		snprintf(r->temp_drop_at, sizeof(r->temp_drop_at), "%s:%" PRIu64,
				 scan->file->name, scan->temp_use_at);
		snprintf(r->temp_drop_gtid, sizeof(r->temp_drop_gtid),
				 "%" PRIu32 "-%" PRIu32 "-%" PRIu64, scan->txn.gtid.domain,
				 scan->txn.gtid.server, scan->txn.gtid.seq);
		r->temp_drop_thread = scan->temp_use_thread;
		bk_strlcpy(r->temp_drop_name, scan->temp_use_name,
				   sizeof(r->temp_drop_name));
	}
	r->groups++;
	r->last_group_time = stamp;
	return true;
}

/*
 * follow_gtid_list
 *		A file's GTID list, the server's account of every transaction it had
 *		logged before the file, against what the file before it in the
 *		archive reached.  The catalog lets a file without ROTATE or STOP
 *		pass for complete when the next one follows (a crash leaves such a
 *		file), so a lost last range looks like no hole at all, and
 *		gtid_strict_mode allows gaps in sequence numbers: only this tells.
 *		Events are missing whatever ended the file before, so a difference
 *		refuses any target past that file's archived end.
 */
static bool
follow_gtid_list(Scan *scan, uint64_t offset, const uint8_t *event,
				 uint32_t len, BkError *err)
{
	MariadbRestore *r = scan->r;
	BkGtidList listed;
	char differs[512];

	scan->list_seen = true;
	if (!bk_gtid_list_read(&listed, event, len, err))
		return bk_error_prefix(err, "binlog \"%s\" at %" PRIu64 ": ",
							   scan->file->name, offset);
	if (scan->previous != NULL && scan->file_gtids_known &&
		!bk_gtid_list_follows(&scan->file_gtids, &listed, differs,
							  sizeof(differs)) &&
		/*
		 * A position in the file before is reached without this one, but
		 * only up to where that file is archived: a position past it, in
		 * the range lost, needs the transactions the list says are missing.
		 */
		!(r->target.type == TARGET_POSITION &&
		  (bk_binlog_file_compare(r->target.file, scan->previous->name) < 0 ||
		   (strcmp(r->target.file, scan->previous->name) == 0 &&
			r->target.pos <= scan->previous->covered_end))))
		return bk_error_set(err, BK_ERR_NOT_FOUND,
							"binlog %s does not follow %s in the archive:"
							" its GTID list says the server had logged %s"
							" before it, and %s, archived up to %" PRIu64
							", does not reach that: transactions between"
							" them are missing from the archive",
							scan->file->name, scan->previous->name, differs,
							scan->previous->name,
							scan->previous->covered_end) ||
			   bk_error_hint(err,
							 "A range of %s was lost (a message the shipper"
							 " rejected, or one Kafka no longer holds):"
							 " \"bk verify --source %s\" names the file."
							 "  Restore to a target at or before %s:%" PRIu64
							 " (--target-position, or a time or GTID before"
							 " it).",
							 scan->previous->name, r->source,
							 scan->previous->name, scan->previous->covered_end);
	scan->file_gtids = listed;
	scan->file_gtids_known = true;
	return true;
}

/*
 * check_snapshot_point
 *		The archived file is the one the snapshot was taken of: an event of
 *		it starts at the snapshot's position (offset: where the first event
 *		at or after it starts, or the file's archived end), and the GTID
 *		state the file reached there (its GTID list followed with every
 *		transaction before) is the snapshot's.  A RESET MASTER, or another
 *		server under the same source id, writes the file names again; the
 *		agent does not archive that history, but the snapshots it takes of
 *		it name the old history's files, and replaying those on top of the
 *		snapshot would restore transactions of a history it never had.
 */
static const char another_history_hint[] =
	"Restore an older snapshot of the archived history (--snapshot), or the"
	" snapshot alone (--target immediate); archive the source under a new"
	" source id.";

static bool
check_snapshot_point(Scan *scan, uint64_t offset, BkError *err)
{
	MariadbRestore *r = scan->r;
	const char *name = scan->file->name;
	uint64_t pos = r->snapshot->binlog_pos;
	BkGtidState want;
	char reached[BK_BINLOG_GTID_STATE_MAX];
	bool same = true;

	scan->snapshot_checked = true;
	if (offset != pos)
		return bk_error_set(err, BK_ERR_CONFLICT,
							"snapshot %s was taken at %s:%" PRIu64
							", but no event of the archived %s starts there:"
							" the archived file is of another binlog history"
							" (the source was reset with RESET MASTER, or"
							" replaced, since the agent archived it)",
							r->snapshot->id, name, pos, name) ||
			   bk_error_hint(err, "%s", another_history_hint);
	if (!scan->file_gtids_known)
		return true; /* a file without a GTID list: nothing to compare */
	if (!bk_gtid_state_parse(r->snapshot->gtid, &want, err))
		return bk_error_prefix(err, "snapshot %s: ", r->snapshot->id);
	for (int idx = 0; idx < want.count && same; idx++)
	{
		bool found = false;

		for (int have = 0; have < scan->file_gtids.count; have++)
			if (scan->file_gtids.gtids[have].domain == want.gtids[idx].domain &&
				scan->file_gtids.gtids[have].server == want.gtids[idx].server)
				found = scan->file_gtids.gtids[have].seq == want.gtids[idx].seq;
		same = found;
	}
	for (int have = 0; have < scan->file_gtids.count && same; have++)
	{
		bool found = false;

		for (int idx = 0; idx < want.count; idx++)
			found |=
				want.gtids[idx].domain == scan->file_gtids.gtids[have].domain;
		same = found;
	}
	if (same)
		return true;
	if (!bk_gtid_list_format(&scan->file_gtids, reached, sizeof(reached)))
		bk_strlcpy(reached, "(too long to show)", sizeof(reached));
	bk_error_set(err, BK_ERR_CONFLICT,
				 "snapshot %s was taken at %s:%" PRIu64 " with GTID state"
				 " %s, but the archived %s had logged %s there: the"
				 " archived file is of another binlog history (the source"
				 " was reset with RESET MASTER, or replaced, since the agent"
				 " archived it)",
				 r->snapshot->id, name, pos,
				 r->snapshot->gtid[0] ? r->snapshot->gtid : "(none)", name,
				 reached[0] ? reached : "no GTID");
	return bk_error_hint(err, "%s", another_history_hint);
}

/* ------------------------------------------------------- temporary tables */

/*
 * Under binlog_format MIXED or STATEMENT the server logs CREATE TEMPORARY
 * TABLE and the statements that use the table as statements of their
 * session (thread id), which the replay's mariadb-binlog output keeps
 * apart (pseudo_thread_id).  A replay starting at the snapshot's position
 * never runs a CREATE TEMPORARY TABLE logged before it: a later statement
 * of that session on the table fails the replay after the whole load, or,
 * when a real table has the same name, runs on that one, silently.  The
 * scan follows, from the start of the snapshot's file, which temporary
 * tables each session has open, and the plan names the first group to
 * replay that uses one created before the snapshot; restore_check_replay
 * refuses it before the server is touched.  One created in an older file
 * is not seen: its statement fails the replay, and the failure's hint
 * says why.
 */

typedef struct Words
{
	const char *text;
	size_t len;
	size_t at;
} Words;

static bool
identifier_char(unsigned char c)
{
	return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

/*
 * The next word of a statement into out: an identifier (without its
 * backquotes) or one other character.  Comments are skipped, but the text
 * of a versioned one is read: the server logs the DROP of a session's
 * tables with TEMPORARY inside one (of MySQL version 40005).  False at the
 * end.
 */
static bool
next_word(Words *words, char *out, size_t out_len)
{
	const char *text = words->text;
	size_t len = words->len;
	size_t used = 0;

	for (;;)
	{
		while (words->at < len && isspace((unsigned char) text[words->at]))
			words->at++;
		if (words->at >= len)
			return false;
		if (len - words->at >= 3 && strncmp(text + words->at, "/*!", 3) == 0)
		{
			words->at += 3;
			while (words->at < len && isdigit((unsigned char) text[words->at]))
				words->at++;
		}
		else if (len - words->at >= 2 &&
				 strncmp(text + words->at, "/*", 2) == 0)
		{
			const char *close =
				memmem(text + words->at + 2, len - words->at - 2, "*/", 2);

			words->at = close ? (size_t) (close - text) + 2 : len;
		}
		else if (len - words->at >= 2 &&
				 strncmp(text + words->at, "*/", 2) == 0)
			words->at += 2;
		else
			break;
	}
	if (text[words->at] == '`')
	{
		words->at++;
		while (words->at < len)
		{
			if (text[words->at] == '`' &&
				(words->at + 1 >= len || text[words->at + 1] != '`'))
				break;
			if (text[words->at] == '`')
				words->at++;
			if (used + 1 < out_len)
				out[used++] = text[words->at];
			words->at++;
		}
		words->at++;
	}
	else if (identifier_char((unsigned char) text[words->at]))
		while (words->at < len &&
			   identifier_char((unsigned char) text[words->at]))
		{
			if (used + 1 < out_len)
				out[used++] = text[words->at];
			words->at++;
		}
	else
		out[used++] = text[words->at++];
	out[used] = '\0';
	return true;
}

/* A table name, [db.]name, the database defaulting to the session's. */
static bool
next_table(Words *words, const BkBinlogQuery *query, char *db, char *name)
{
	Words after;
	char dot[4];

	if (!next_word(words, name, 256))
		return false;
	after = *words;
	if (next_word(&after, dot, sizeof(dot)) && strcmp(dot, ".") == 0)
	{
		bk_strlcpy(db, name, 256);
		*words = after;
		return next_word(words, name, 256);
	}
	snprintf(db, 256, "%.*s", (int) query->db_len, query->db);
	return true;
}

/*
 * Does the statement name the table: an identifier (backquoted or not)
 * equal to it, outside string literals and comments?  A column, an alias
 * or another database's table of that name still counts: a refusal the
 * DBA can read beats a replay that runs on the wrong table.
 */
static bool
mentions(const BkBinlogQuery *query, const char *name)
{
	Words words = {query->text, query->text_len, 0};
	char word[256];

	if (name[0] == '\0')
		return false;
	while (next_word(&words, word, sizeof(word)))
	{
		const char *text = words.text;
		size_t len = words.len;
		bool line_comment = strcmp(word, "#") == 0 ||
							(strcmp(word, "-") == 0 && words.at < len &&
							 text[words.at] == '-' &&
							 (words.at + 1 >= len ||
							  isspace((unsigned char) text[words.at + 1])));

		if (line_comment)
		{
			while (words.at < len && text[words.at] != '\n')
				words.at++;
			continue;
		}
		if (strcmp(word, "'") == 0 || strcmp(word, "\"") == 0)
		{
			/* A literal: to its closing quote ('' and \' stay inside). */
			while (words.at < len)
			{
				if (text[words.at] == '\\')
					words.at += 2;
				else if (text[words.at] == word[0] && words.at + 1 < len &&
						 text[words.at + 1] == word[0])
					words.at += 2;
				else if (text[words.at++] == word[0])
					break;
			}
			continue;
		}
		if (strcmp(word, name) == 0)
			return true;
	}
	return false;
}

static void
temp_add(Scan *scan, uint32_t thread, bool before, const char *db,
		 const char *name)
{
	TempTable *temp;

	if (scan->temp_count == scan->temp_cap)
	{
		int cap = scan->temp_cap ? scan->temp_cap * 2 : 16;
		TempTable *grown = bk_cli_alloc_zero((size_t) cap, sizeof(TempTable));

		if (scan->temps != NULL)
			memcpy(grown, scan->temps,
				   (size_t) scan->temp_count * sizeof(TempTable));
		free(scan->temps);
		scan->temps = grown;
		scan->temp_cap = cap;
	}
	temp = &scan->temps[scan->temp_count++];
	temp->thread = thread;
	temp->before_snapshot = before;
	bk_strlcpy(temp->db, db, sizeof(temp->db));
	bk_strlcpy(temp->name, name, sizeof(temp->name));
}

static void
temp_drop(Scan *scan, uint32_t thread, const char *db, const char *name)
{
	for (int idx = 0; idx < scan->temp_count; idx++)
		if (scan->temps[idx].thread == thread &&
			strcmp(scan->temps[idx].db, db) == 0 &&
			strcmp(scan->temps[idx].name, name) == 0)
		{
			scan->temps[idx] = scan->temps[--scan->temp_count];
			return;
		}
}

/*
 * follow_temp_tables
 *		A statement of a session that uses temporary tables (the event's
 *		LOG_EVENT_THREAD_SPECIFIC_F): the tables it creates and drops, and
 *		whether, after the snapshot's position, it names one its session
 *		created before it.
 */
static bool
follow_temp_tables(Scan *scan, uint64_t offset, const uint8_t *event,
				   uint32_t len, BkError *err)
{
	bool before = scan->first && offset < scan->r->snapshot->binlog_pos;
	BkBinlogQuery query;
	Words words;
	char word[256], db[256], name[256];
	bool drop_if_exists = false;

	if (!bk_binlog_query_read(event, len, scan->checksum_alg, &query, err))
		return bk_error_prefix(err, "binlog \"%s\" at %" PRIu64 ": ",
							   scan->file->name, offset);
	words = (Words){query.text, query.text_len, 0};
	if (next_word(&words, word, sizeof(word)) && strcasecmp(word, "DROP") == 0)
	{
		Words peek = words;
		char second[16], third[16];

		/* DROP TEMPORARY TABLE IF EXISTS, as a session's end logs it */
		drop_if_exists = next_word(&peek, second, sizeof(second)) &&
						 strcasecmp(second, "TEMPORARY") == 0 &&
						 next_word(&peek, third, sizeof(third)) &&
						 strcasecmp(third, "TABLE") == 0 &&
						 next_word(&peek, second, sizeof(second)) &&
						 strcasecmp(second, "IF") == 0;
	}
	/*
	 * A DROP ... IF EXISTS of a table the target never had runs, but the
	 * server logs nothing for it: the target's GTIDs would miss its own.
	 */
	for (int idx = 0; idx < scan->temp_count && !before && !scan->temp_use;
		 idx++)
	{
		const TempTable *temp = &scan->temps[idx];

		if (temp->thread == query.thread_id && temp->before_snapshot &&
			mentions(&query, temp->name))
		{
			scan->temp_use = true;
			scan->temp_use_drops = drop_if_exists;
			scan->temp_use_at = offset;
			scan->temp_use_thread = query.thread_id;
			snprintf(scan->temp_use_name, sizeof(scan->temp_use_name), "%s.%s",
					 temp->db, temp->name);
		}
	}
	words.at = 0;
	if (next_word(&words, word, sizeof(word)) &&
		strcasecmp(word, "CREATE") == 0)
	{
		while (
			next_word(&words, word, sizeof(word)) &&
			(strcasecmp(word, "OR") == 0 || strcasecmp(word, "REPLACE") == 0))
			;
		if (strcasecmp(word, "TEMPORARY") == 0 &&
			next_word(&words, word, sizeof(word)) &&
			strcasecmp(word, "TABLE") == 0)
		{
			Words peek = words;

			if (next_word(&peek, word, sizeof(word)) &&
				strcasecmp(word, "IF") == 0 &&
				next_word(&peek, word, sizeof(word)) &&
				next_word(&peek, word, sizeof(word)))
				words = peek; /* IF NOT EXISTS */
			if (next_table(&words, &query, db, name))
			{
				temp_drop(scan, query.thread_id, db, name);
				temp_add(scan, query.thread_id, before, db, name);
			}
		}
	}
	else if (strcasecmp(word, "DROP") == 0)
	{
		bool temporary = false;

		while (next_word(&words, word, sizeof(word)))
		{
			if (strcasecmp(word, "TEMPORARY") == 0)
				temporary = true;
			else if (strcasecmp(word, "TABLE") == 0 ||
					 strcasecmp(word, "TABLES") == 0)
				break;
		}
		if (temporary)
		{
			Words peek = words;

			if (next_word(&peek, word, sizeof(word)) &&
				strcasecmp(word, "IF") == 0 &&
				next_word(&peek, word, sizeof(word)))
				words = peek; /* IF EXISTS */
			while (next_table(&words, &query, db, name))
			{
				temp_drop(scan, query.thread_id, db, name);
				if (!next_word(&words, word, sizeof(word)) ||
					strcmp(word, ",") != 0)
					break;
			}
		}
	}
	bk_binlog_query_free(&query);
	return true;
}

/*
 * note_backwards
 *		A source with gtid_strict_mode off (MariaDB's default) logs a
 *		sequence number not above its domain's last when a session sets
 *		gtid_seq_no, or a replica's own writes meet its source's.  A target
 *		with log_bin and gtid_strict_mode on refuses to log it, which would
 *		stop the replay there, after the load: the first one that would be
 *		replayed is kept for restore_check_replay.  Against the state taken
 *		so far, which starts as the snapshot's: what the target's binlog
 *		holds when it comes.
 */
static void
note_backwards(Scan *scan, uint64_t end)
{
	const BkGtid *gtid = &scan->txn.gtid;

	if (scan->backwards_group != 0)
		return;
	for (int idx = 0; idx < scan->state.count; idx++)
		if (scan->state.gtids[idx].domain == gtid->domain &&
			gtid->seq <= scan->state.gtids[idx].seq)
		{
			scan->backwards_group = scan->r->groups + 1;
			scan->backwards_gtid = *gtid;
			scan->backwards_after = scan->state.gtids[idx];
			snprintf(scan->backwards_at, sizeof(scan->backwards_at),
					 "%s:%" PRIu64, scan->file->name, end);
		}
}

/*
 * refuse_incident
 *		An Incident event after the snapshot and before the target: the
 *		source applied a change there that it could not log (LOST_EVENTS),
 *		so no restore past it holds the source's data.  Replayed, it fails
 *		on mariadb-binlog's "RELOAD DATABASE" (a syntax error) once all
 *		before it is replayed; cut off, when no transaction follows it, the
 *		restore would end without the change and without a word.  Refused
 *		before anything is written.  An Incident in a time target's second
 *		or later, at or after a position target, or after every GTID of a
 *		GTID target (the scan stopped) is after the target.
 */
static bool
refuse_incident(Scan *scan, uint64_t offset, const BkBinlogEventHeader *header,
				const uint8_t *event, BkError *err)
{
	MariadbRestore *r = scan->r;
	uint16_t number;
	char message[256];
	bool after_target = false;

	switch (r->target.type)
	{
		case TARGET_TIME:
			after_target = header->timestamp >= scan->target_second;
			break;
		case TARGET_POSITION:
		{
			int order =
				bk_binlog_file_compare(scan->file->name, r->target.file);

			if (order > 0 || (order == 0 && offset >= r->target.pos))
				return true; /* and so is every transaction after it */
			break;
		}
		default:
			break;
	}
	if (!bk_binlog_incident_read(event, header->length, scan->checksum_alg,
								 &number, message, sizeof(message), err))
		return bk_error_prefix(err, "binlog \"%s\" at %" PRIu64 ": ",
							   scan->file->name, offset);
	if (!after_target)
		return incident_refusal(scan, scan->file->name, offset,
								header->timestamp, number, message, err);
	if (!scan->incident_pending)
	{
		scan->incident_pending = true;
		bk_strlcpy(scan->incident_file, scan->file->name,
				   sizeof(scan->incident_file));
		scan->incident_offset = offset;
		scan->incident_stamp = header->timestamp;
		scan->incident_number = number;
		bk_strlcpy(scan->incident_message, message,
				   sizeof(scan->incident_message));
	}
	return true;
}

/* The refusal of a restore that would replay past an Incident event. */
static bool
incident_refusal(const Scan *scan, const char *file, uint64_t offset,
				 uint32_t stamp, uint16_t number, const char *message,
				 BkError *err)
{
	const MariadbRestore *r = scan->r;
	char when[64];

	bk_format_time_utc((int64_t) stamp * 1000, when, sizeof(when));
	return bk_error_set(err, BK_ERR_SEQUENCE,
						"binlog %s holds at %" PRIu64 " an Incident event"
						" (%s%s%s), stamped %s, that a restore to target %s"
						" replays past: the source applied a change there"
						" that it could not log, so no restore past it holds"
						" the source's data",
						file, offset, number == 1 ? "LOST_EVENTS" : "incident",
						message[0] ? ": " : "", message, when,
						r->target.text ? r->target.text : "latest") ||
		   bk_error_hint(err,
						 "Restore to a target before it (--target-position"
						 " %s:%" PRIu64 "), or from a snapshot taken after it"
						 " (--snapshot).  The source's error log names the"
						 " statement it could not log.",
						 file, offset);
}

/* A row event: Write, Update or Delete rows, of any version, compressed. */
static bool
is_rows_event(uint8_t type)
{
	return (type >= 20 && type <= 25) || (type >= 30 && type <= 32) ||
		   (type >= BK_BINLOG_WRITE_ROWS_COMPRESSED_EVENT_V1 &&
			type <= BK_BINLOG_DELETE_ROWS_COMPRESSED_EVENT);
}

/*
 * printed_size
 *		The bytes mariadb-binlog prints of an event: a compressed row event
 *		(log_bin_compress) is printed decompressed, so a 600-byte event of
 *		a 500 kB row is a 500 kB BINLOG statement.  Its rows are
 *		compressed after the post-header (table id 6, flags 2; the v2 ones
 *		add extra data, its length counting itself), the column count and
 *		one column bitmap (two for updates), as binlog_buf_compress writes
 *		them: a byte 0x80 | n, then the decompressed length in n bytes, high
 *		byte first.  The event's length where that cannot be read.
 */
static uint64_t
printed_size(const BkBinlogEventHeader *header, const uint8_t *event)
{
	const uint8_t *body = event + BK_BINLOG_HEADER_LEN;
	size_t len = header->length - BK_BINLOG_HEADER_LEN;
	size_t at = 8;
	uint64_t width = 0;
	uint32_t declared = 0;
	unsigned int n;
	int bitmaps;

	if (header->type < BK_BINLOG_WRITE_ROWS_COMPRESSED_EVENT_V1 ||
		header->type > BK_BINLOG_DELETE_ROWS_COMPRESSED_EVENT ||
		header->length < BK_BINLOG_HEADER_LEN + 10)
		return header->length;
	if (header->type >= BK_BINLOG_WRITE_ROWS_COMPRESSED_EVENT)
		at += (size_t) (body[8] | body[9] << 8);
	if (at >= len)
		return header->length;
	/* The column count, a length-encoded integer. */
	if (body[at] < 0xfb)
		width = body[at++];
	else
	{
		int bytes = body[at] == 0xfc ? 2 : body[at] == 0xfd ? 3 : 8;

		if (at + 1 + (size_t) bytes > len)
			return header->length;
		for (int idx = bytes; idx > 0; idx--)
			width = width << 8 | body[at + (size_t) idx];
		at += 1 + (size_t) bytes;
	}
	bitmaps = header->type == BK_BINLOG_UPDATE_ROWS_COMPRESSED_EVENT ||
					  header->type == BK_BINLOG_UPDATE_ROWS_COMPRESSED_EVENT_V1
				  ? 2
				  : 1;
	if (width > len || at + (size_t) bitmaps * ((width + 7) / 8) >= len)
		return header->length;
	at += (size_t) bitmaps * ((width + 7) / 8);
	n = body[at] & 0x07;
	if ((body[at] & 0x80) == 0 || n < 1 || n > 4 || at + 1 + n > len)
		return header->length;
	for (unsigned int idx = 0; idx < n; idx++)
		declared = declared << 8 | body[at + 1 + idx];
	return (uint64_t) header->length + declared;
}

/*
 * note_statement_size
 *		mariadb-binlog writes a statement's Table_map and row events, up to
 *		the one flagged STMT_END_F, as one BINLOG statement: a DELETE of
 *		a hundred 1 MiB rows is one 140 MiB packet though no event reaches
 *		2 MiB.  The largest such sum (or lone event) sizes the packet.
 */
static void
note_statement_size(Scan *scan, const BkBinlogEventHeader *header,
					const uint8_t *event)
{
	MariadbRestore *r = scan->r;
	uint64_t size = printed_size(header, event);

	if (header->type == 19 /* TABLE_MAP_EVENT */ || is_rows_event(header->type))
	{
		scan->statement_bytes += size;
		size = scan->statement_bytes;
		/* Post-header: table id (6 bytes), flags (2); STMT_END_F is 1. */
		if (is_rows_event(header->type) &&
			header->length >= BK_BINLOG_HEADER_LEN + 8 &&
			(event[BK_BINLOG_HEADER_LEN + 6] & 1) != 0)
			scan->statement_bytes = 0;
	}
	else
		scan->statement_bytes = 0;
	if (size > r->largest_statement)
		r->largest_statement = size;
}

/*
 * scan_event
 *		Follow transactions and decide where the target ends
 *		(BkBinlogEventFn).
 */
static bool
scan_event(void *arg, uint64_t offset, const BkBinlogEventHeader *header,
		   const uint8_t *event, BkError *err)
{
	Scan *scan = arg;
	MariadbRestore *r = scan->r;
	uint64_t end = offset + header->length;
	bool ended;
	int domain;

	if (header->type == BK_BINLOG_FORMAT_DESCRIPTION_EVENT)
	{
		scan->checksum_alg = bk_binlog_fde_checksum_alg(event, header->length);
		/*
		 * created (after the binlog and server versions) is set in the
		 * first file of a server's start: no session, no temporary table
		 * goes on from before it.
		 */
		if (header->length >= BK_BINLOG_HEADER_LEN + 56 &&
			(event[BK_BINLOG_HEADER_LEN + 52] |
			 event[BK_BINLOG_HEADER_LEN + 53] |
			 event[BK_BINLOG_HEADER_LEN + 54] |
			 event[BK_BINLOG_HEADER_LEN + 55]) != 0)
			scan->temp_count = 0;
	}
	if (header->type == BK_BINLOG_GTID_EVENT)
		scan->temp_use = scan->temp_use_drops = false;
	note_statement_size(scan, header, event);
	if (scan->first && !scan->snapshot_checked &&
		offset >= r->snapshot->binlog_pos &&
		!check_snapshot_point(scan, offset, err))
		return false;
	if (scan->stopped)
		return true;
	if (header->type == BK_BINLOG_INCIDENT_EVENT &&
		!(scan->first && offset < r->snapshot->binlog_pos) &&
		!refuse_incident(scan, offset, header, event, err))
		return false;
	if (header->type == BK_BINLOG_GTID_LIST_EVENT && !scan->list_seen &&
		!follow_gtid_list(scan, offset, event, header->length, err))
		return false;
	if ((header->type == BK_BINLOG_QUERY_EVENT ||
		 header->type == BK_BINLOG_QUERY_COMPRESSED_EVENT) &&
		(header->flags & BK_BINLOG_F_THREAD_SPECIFIC) != 0 &&
		!follow_temp_tables(scan, offset, event, header->length, err))
		return false;
	if (!bk_binlog_txn_feed(&scan->txn, event, header->length,
							scan->checksum_alg, &ended, err))
		return bk_error_prefix(err, "binlog \"%s\" at %" PRIu64 ": ",
							   scan->file->name, offset);
	if (!ended)
	{
		/*
		 * An event ending at or past a position target that ends no
		 * transaction (a Binlog_checkpoint after the last commit, or one
		 * inside a transaction that so ends past the target) leaves
		 * nothing more to take.  Read on to the next transaction's end,
		 * the scan would open the range after the position, which may be
		 * sealed to a key the keyring lacks, and refuse a restore whose
		 * every byte it can read.
		 */
		if (r->target.type == TARGET_POSITION &&
			!(scan->first && end <= r->snapshot->binlog_pos))
		{
			int order =
				bk_binlog_file_compare(scan->file->name, r->target.file);

			scan->stopped = order > 0 || (order == 0 && end >= r->target.pos);
		}
		return true;
	}
	if (scan->file_gtids_known &&
		!bk_gtid_list_note(&scan->file_gtids, &scan->txn.gtid, err))
		return bk_error_prefix(err, "binlog \"%s\" at %" PRIu64 ": ",
							   scan->file->name, offset);
	if (scan->first && end <= r->snapshot->binlog_pos)
	{
		/* In the snapshot already. */
		if (scan->txn.end_time > scan->newest_in_snapshot)
			scan->newest_in_snapshot = scan->txn.end_time;
		return true;
	}
	note_backwards(scan, end);
	switch (r->target.type)
	{
		case TARGET_TIME:
			if (scan->txn.end_time >= scan->target_second)
			{
				scan->stopped = true;
				return true;
			}
			break;
		case TARGET_POSITION:
		{
			int order =
				bk_binlog_file_compare(scan->file->name, r->target.file);

			if (order > 0 || (order == 0 && end > r->target.pos))
			{
				scan->stopped = true;
				return true;
			}
			/*
			 * A transaction ending at the position is the last one taken:
			 * the rest of the archive is not read (nor need its keys).
			 */
			if (order == 0 && end == r->target.pos)
			{
				if (!take(scan, end, scan->txn.end_time, err))
					return false;
				scan->stopped = true;
				return true;
			}
			break;
		}
		case TARGET_GTID:
			domain = target_domain(r, scan->txn.gtid.domain);
			if (domain >= 0 &&
				scan->txn.gtid.seq > r->target.gtid.gtids[domain].seq)
			{
				scan->stopped = true;
				scan->passed = true;
				scan->passed_gtid = scan->txn.gtid;
				scan->passed_reached = scan->reached[domain];
				return true;
			}
			if (!take(scan, end, scan->txn.end_time, err))
				return false;
			if (domain >= 0 &&
				scan->txn.gtid.seq == r->target.gtid.gtids[domain].seq &&
				scan->txn.gtid.server == r->target.gtid.gtids[domain].server)
			{
				bool all = true;

				scan->reached[domain] = true;
				for (int idx = 0; idx < r->target.gtid.count; idx++)
					all &= scan->reached[idx];
				scan->stopped = all;
			}
			return true;
		default:
			break;
	}
	return take(scan, end, scan->txn.end_time, err);
}

/*
 * make_work_dir
 *		A private directory for the rebuilt binlog: it is plaintext.
 */
static bool
make_work_dir(MariadbRestore *r, BkError *err)
{
	const char *parent = r->work_parent;

	if (parent == NULL)
		parent = getenv("TMPDIR");
	if (parent == NULL || parent[0] == '\0')
		parent = "/tmp";
	/*
	 * mariadb-binlog writes the file of a statement-logged LOAD DATA into
	 * this directory and names it, unescaped, in the LOAD DATA statement it
	 * prints: a quote or a backslash there would break the replay half way.
	 */
	if (strpbrk(parent, "'\\") != NULL)
		return bk_error_set(err, BK_ERR_USAGE,
							"the work directory's parent \"%s\" has a quote"
							" or a backslash in its name, which mariadb-binlog"
							" writes unescaped into the statements it replays",
							parent) ||
			   bk_error_hint(err, "Pass --work-dir with a plainer name.");
	if ((size_t) snprintf(r->work_dir, sizeof(r->work_dir),
						  "%s/bk-restore-XXXXXX",
						  parent) >= sizeof(r->work_dir))
	{
		r->work_dir[0] = '\0'; /* never a cut name to remove later */
		return bk_error_set(err, BK_ERR_USAGE,
							"the work directory's parent \"%.200s...\" has"
							" too long a name",
							parent);
	}
	if (mkdtemp(r->work_dir) == NULL)
	{
		/* Local, not the repository: exit 1 ("the restore failed"), not 5. */
		bk_error_set(err, BK_ERR_INTERNAL,
					 "could not create a work directory in \"%s\": %s", parent,
					 strerror(errno));
		r->work_dir[0] = '\0';
		return bk_error_hint(err, "Pass --work-dir DIR on a file system"
								  " with room for the binlog to replay.");
	}
	return true;
}

/*
 * work_dir_hint
 *		A rebuilt binlog file could not be written: say where, that the
 *		target was not touched yet, and what to do.  Returns false.
 */
static bool
work_dir_hint(const MariadbRestore *r, BkError *err)
{
	char parent[sizeof(r->work_dir)];
	char *slash;

	/* The parent: the work directory itself is removed on the way out. */
	bk_strlcpy(parent, r->work_dir, sizeof(parent));
	if ((slash = strrchr(parent, '/')) != NULL && slash != parent)
		*slash = '\0';
	return bk_error_hint(err,
						 "The binlog to replay is rebuilt whole in a work"
						 " directory in \"%s\" before the target server is"
						 " touched, and the target was not: make room there,"
						 " or pass --work-dir DIR on a file system with room"
						 " for it (the files from the snapshot's to the"
						 " target's: \"bk list\" gives their size), and run"
						 " bk restore again.",
						 parent);
}

/*
 * restore_remove_work_dir
 *		Everything in the work directory goes: the rebuilt binlog, and the
 *		files mariadb-binlog writes there (--local-load: the file of a LOAD
 *		DATA logged as a statement, for the client to load), plaintext
 *		rows all.  mkdtemp made it private to this run, so nothing in it is
 *		anyone else's.
 */
void
restore_remove_work_dir(MariadbRestore *r)
{
	DIR *dir;
	struct dirent *entry;

	if (r->work_dir[0] == '\0')
		return;
	dir = opendir(r->work_dir);
	while (dir != NULL && (entry = readdir(dir)) != NULL)
		if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0)
			unlinkat(dirfd(dir), entry->d_name, 0);
	if (dir != NULL)
		closedir(dir);
	if (rmdir(r->work_dir) != 0 && errno != ENOENT)
		fprintf(stderr,
				"%s: WARNING: could not remove the work directory \"%s\": %s;"
				" it holds plaintext binlog and rows: remove it by hand\n",
				r->program, r->work_dir, strerror(errno));
}

/*
 * file_complete_until
 *		Raise *until_ms to the latest time up to which a range of file's
 *		chain says the agent had read everything the server wrote
 *		(complete-until), so nothing committed before it is missing from
 *		the archive up to there.  A range without it (an older agent) counts
 *		for its newest event's timestamp: that event was written then or
 *		later, after everything before it; *guessed says the latest is
 *		such a one.
 */
static void
file_complete_until(const BinlogFile *file, int64_t *until_ms, bool *guessed)
{
	for (int idx = 0; idx < file->range_count; idx++)
	{
		const BinlogRange *range = &file->ranges[idx];
		int64_t ms = range->complete_until_ms;

		if (!range->in_chain)
			continue;
		if (ms < 0)
			ms = (int64_t) range->last_event_time * 1000;
		if (ms > *until_ms)
		{
			*until_ms = ms;
			*guessed = range->complete_until_ms < 0;
		}
	}
}

/*
 * refuse_target
 *		The target lies past what the archive holds from the snapshot on;
 *		for a time target, complete_ms is how far the archive is known to
 *		hold every commit (guessed: from event timestamps only).
 */
static bool
refuse_target(MariadbRestore *r, const Scan *scan, const char *until_file,
			  uint64_t until_pos, const char *sent, int64_t complete_ms,
			  bool guessed, BkError *err)
{
	char when[64] = "none";
	char complete[64] = "";
	bool gap = false;

	if (r->groups > 0)
		bk_format_time_utc((int64_t) r->last_group_time * 1000, when,
						   sizeof(when));
	if (scan->passed && scan->passed_reached)
	{
		bk_error_set(
			err, BK_ERR_NOT_FOUND,
			"GTID target %s is not one moment of the binlog: domain "
			"%" PRIu32 " reached its GTID and went on with %" PRIu32 "-%" PRIu32
			"-%" PRIu64 " before every domain of the target was reached",
			r->target.text, scan->passed_gtid.domain, scan->passed_gtid.domain,
			scan->passed_gtid.server, scan->passed_gtid.seq);
		return bk_error_hint(err, "Give the GTIDs of one moment, as the "
								  "server printed them in @@gtid_binlog_pos, "
								  "or one domain's GTID alone.");
	}
	if (scan->passed)
		bk_error_set(
			err, BK_ERR_NOT_FOUND,
			"GTID target %s is not in the archive: domain %" PRIu32
			" goes on with %" PRIu32 "-%" PRIu32 "-%" PRIu64 " without it",
			r->target.text, scan->passed_gtid.domain, scan->passed_gtid.domain,
			scan->passed_gtid.server, scan->passed_gtid.seq);
	else
	{
		const BinlogFile *newest = &r->binlog.files[r->binlog.file_count - 1];
		const BinlogFile *until = binlog_catalog_file(&r->binlog, until_file);

		gap = until != newest || until->gap_end != 0;
		if (until != NULL && until->short_end)
		{
			char what[512];

			binlog_catalog_describe_short(until, what, sizeof(what));
			bk_error_set(err, BK_ERR_NOT_FOUND,
						 "target %s is past the end of what the archive holds"
						 " from snapshot %s on: binlog %s is %s",
						 r->target.text, r->snapshot->id, until->name, what);
			return bk_error_hint(
				err,
				"Restore to a target at or before %s:%" PRIu64
				" (--target-position, or a time or GTID before it).  \"bk"
				" verify --source %s\" names the file; what the lost range"
				" held (an Incident event has no GTID) cannot be checked, so"
				" only a later snapshot covers what follows.",
				until_file, until_pos, r->source);
		}
		if (r->target.type == TARGET_TIME && complete_ms > 0)
			bk_format_time_utc(complete_ms, complete, sizeof(complete));
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "target %s is past the end of what the archive holds from"
					 " snapshot %s on: the binlog is archived to %s:%" PRIu64
					 " (its last transaction stamped %s, sent %s)%s%s%s%s",
					 r->target.text, r->snapshot->id, until_file, until_pos,
					 when, sent[0] ? sent : "at an unknown time",
					 gap ? ", where a gap in the archive begins" : "",
					 complete[0] ? ", and holds every commit only up to " : "",
					 complete,
					 complete[0] && guessed
						 ? " (its newest event: its ranges do not say when"
						   " the agent had caught up with the server)"
						 : "");
	}
	if (complete[0] && !gap)
		return bk_error_hint(
			err,
			"Commits after %s may be missing from the archive: the agent had"
			" not read the server's binlog further when it sent its last range"
			" (it was behind the server, then stalled or stopped), unless"
			" nothing was written since.  Restore to a target at or before"
			" %s, or, once the agent has caught up and sent a range (its"
			" status shows the lag), try again.",
			complete, complete);
	return bk_error_hint(err,
						 "A gap in the archive, or a target later than what"
						 " the agent has archived; \"bk list --source %s\""
						 " shows the restorable window.  Without a target,"
						 " bk restore replays everything archived.",
						 r->source);
}

/*
 * restore_target_file_normalize
 *		mariadb-bin.42 in --target-position is the archive's
 *		mariadb-bin.000042: spelled as the archive and the snapshots spell
 *		it before anything compares it, or two spellings of one file would
 *		order by name and the position within it be passed over.
 */
void
restore_target_file_normalize(MariadbRestore *r)
{
	const char *dot_target = strrchr(r->target.file, '.');

	if (r->target.type != TARGET_POSITION || dot_target == NULL)
		return;
	for (int idx = 0; idx < r->binlog.file_count; idx++)
	{
		const char *name = r->binlog.files[idx].name;
		const char *dot = strrchr(name, '.');

		if (dot != NULL &&
			strtoull(dot + 1, NULL, 10) == strtoull(dot_target + 1, NULL, 10) &&
			dot - name == dot_target - r->target.file &&
			strncmp(name, r->target.file, (size_t) (dot - name)) == 0)
		{
			bk_strlcpy(r->target.file, name, sizeof(r->target.file));
			return;
		}
	}
}

static bool plan_replay(MariadbRestore *r, Scan *scan, BkError *err);

bool
restore_plan_replay(MariadbRestore *r, BkError *err)
{
	Scan scan = {0};
	bool ok = plan_replay(r, &scan, err);

	free(scan.temps);
	return ok;
}

static bool
plan_replay(MariadbRestore *r, Scan *scan, BkError *err)
{
	const char *until_file = NULL;
	uint64_t until_pos = 0;
	char problem[512];
	const char *sent = "";
	int64_t complete_ms = 0;
	bool guessed = false;
	int first_index = -1, last_index = -1;
	bool reached;

	scan->r = r;
	scan->target_second = r->target.type == TARGET_TIME
							  ? (uint64_t) (r->target.time_us / 1000000)
							  : 0;
	if (!bk_gtid_state_parse(r->snapshot->gtid, &scan->state, err))
		return bk_error_prefix(err, "snapshot %s: ", r->snapshot->id);
	bk_gtid_state_format(&scan->state, r->final_gtid, sizeof(r->final_gtid));
	if (r->target.type == TARGET_IMMEDIATE)
		return true;
	if (r->target.type == TARGET_POSITION)
	{
		restore_target_file_normalize(r);
		/*
		 * The replay compares files by number: one of another name would
		 * pass for the archived file of its number, never stop the replay
		 * there, and have all of that file replayed, past the position.
		 */
		const char *dot_target = strrchr(r->target.file, '.');
		const char *dot_snap = strrchr(r->snapshot->binlog_file, '.');

		if (dot_target == NULL || dot_snap == NULL ||
			dot_target - r->target.file !=
				dot_snap - r->snapshot->binlog_file ||
			strncmp(r->target.file, r->snapshot->binlog_file,
					(size_t) (dot_snap - r->snapshot->binlog_file)) != 0)
			return bk_error_set(
					   err, BK_ERR_NOT_FOUND,
					   "--target-position names binlog %s, but the"
					   " binlog files of source \"%s\" are named"
					   " %.*s.NNNNNN",
					   r->target.file, r->source,
					   dot_snap ? (int) (dot_snap - r->snapshot->binlog_file)
								: (int) strlen(r->snapshot->binlog_file),
					   r->snapshot->binlog_file) ||
				   bk_error_hint(err,
								 "Give the file and position the source's"
								 " SHOW MASTER STATUS printed; \"bk list"
								 " --source %s\" shows the archived files.",
								 r->source);
		/*
		 * A position past the end of a file the server closed (its chain
		 * ends with ROTATE or STOP) is not in its binlog at all: a mistyped position or file number
		 * would otherwise be planned up to that file's end, silently.
		 */
		const BinlogFile *target_file =
			binlog_catalog_file(&r->binlog, r->target.file);

		if (target_file != NULL && target_file->closed &&
			target_file->gap_end == 0 &&
			r->target.pos > target_file->covered_end)
			return bk_error_set(err, BK_ERR_NOT_FOUND,
								"--target-position %s:%" PRIu64
								" is past the end of binlog %s, which the "
								"server closed at %" PRIu64,
								r->target.file, r->target.pos, r->target.file,
								target_file->covered_end) ||
				   bk_error_hint(err,
								 "Give a position SHOW MASTER STATUS or "
								 "SHOW BINLOG EVENTS printed; \"bk list "
								 "--source %s\" shows the archived files.",
								 r->source);
	}
	if (r->target.type == TARGET_GTID)
	{
		/* The snapshot may hold the target already. */
		bool all = true;

		for (int idx = 0; idx < r->target.gtid.count; idx++)
		{
			const BkGtid *want = &r->target.gtid.gtids[idx];

			for (int have = 0; have < scan->state.count; have++)
				if (scan->state.gtids[have].domain == want->domain &&
					scan->state.gtids[have].seq == want->seq &&
					scan->state.gtids[have].server == want->server)
					scan->reached[idx] = true;
			all &= scan->reached[idx];
		}
		if (all)
			return true;
	}
	if (!mariadb_snapshot_reach(r->snapshot, &r->binlog, &until_file,
								&until_pos, problem, sizeof(problem)))
		return bk_error_set(err, BK_ERR_SEQUENCE, "snapshot %s: %s",
							r->snapshot->id, problem);
	/*
	 * "Everything archived" cannot end at a hole: the replay would stop
	 * there and the restore would look complete while dropping every
	 * transaction archived after it (a message the shipper rejected never
	 * reaches the archive).  Refused before anything is rebuilt.
	 */
	if (r->target.type == TARGET_LATEST &&
		mariadb_binlog_hole_after(&r->binlog, until_file, problem,
								  sizeof(problem)))
		return bk_error_set(err, BK_ERR_NOT_FOUND,
							"the archived binlog is not continuous after"
							" %s:%" PRIu64 " (%s): a restore to the latest"
							" archived transaction from snapshot %s would stop"
							" there",
							until_file, until_pos, problem, r->snapshot->id) ||
			   bk_error_hint(err,
							 "Give a target at or before %s:%" PRIu64
							 " (--target-time, --target-position or"
							 " --target-gtid) to restore up to the hole, or"
							 " find the missing range: \"bk verify --source"
							 " %s\" names it.",
							 until_file, until_pos, r->source);
	for (int idx = 0; idx < r->binlog.file_count; idx++)
	{
		if (strcmp(r->binlog.files[idx].name, r->snapshot->binlog_file) == 0)
			first_index = idx;
		if (strcmp(r->binlog.files[idx].name, until_file) == 0)
			last_index = idx;
	}
	if (first_index < 0 || last_index < first_index)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"binlog %s of snapshot %s is not in the catalog",
							r->snapshot->binlog_file, r->snapshot->id);
	if (!make_work_dir(r, err))
		return false;
	r->replay = bk_cli_alloc_zero((size_t) (last_index - first_index + 1),
								  sizeof(ReplayFile));
	for (int idx = first_index; idx <= last_index && !scan->stopped; idx++)
	{
		const BinlogFile *file = &r->binlog.files[idx];
		ReplayFile *replay = &r->replay[r->replay_count];
		uint64_t events;
		int fd;
		bool ok;
		bool fd_failed;

		snprintf(replay->path, sizeof(replay->path), "%s/%s", r->work_dir,
				 file->name);
		fd = open(replay->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return bk_error_set(err, BK_ERR_IO, "could not create \"%s\": %s",
								replay->path, strerror(errno)) ||
				   work_dir_hint(r, err);
		replay->file = file;
		replay->size = file->covered_end;
		r->replay_count++;
		scan->previous = scan->file;
		scan->file = file;
		scan->first = idx == first_index;
		scan->list_seen = false;
		scan->checksum_alg = BK_BINLOG_CHECKSUM_OFF;
		ok = mariadb_binlog_rebuild(r->ctx.repo, r->source, r->ctx.decoder,
									file, fd, replay->path, &events, scan_event,
									scan, &scan->stopped, &fd_failed, err);
		close(fd);
		if (!ok && fd_failed)
			return work_dir_hint(r, err);
		if (!ok || (scan->first && !scan->snapshot_checked &&
					!check_snapshot_point(scan, file->covered_end, err)))
			return false;
		if (scan->first && r->target.type == TARGET_TIME &&
			scan->newest_in_snapshot >= scan->target_second)
		{
			char when[64];

			/* restore.c then tries the snapshot before this one. */
			bk_format_time_utc((int64_t) scan->newest_in_snapshot * 1000, when,
							   sizeof(when));
			r->too_new = true;
			return bk_error_set(err, BK_ERR_NOT_FOUND,
								"snapshot %s already holds a transaction"
								" stamped %s, not before the target %s",
								r->snapshot->id, when, r->target.text) ||
				   bk_error_hint(err,
								 "The target falls inside the second the"
								 " snapshot was taken; pass --snapshot with"
								 " an older one.");
		}
		if (file->last != NULL)
			sent = file->last->created;
		file_complete_until(file, &complete_ms, &guessed);
	}
	reached = scan->stopped && !scan->passed;
	if (r->target.type == TARGET_TIME && !reached)
	{
		/*
		 * Later than every archived commit: a quiet stretch only up to where
		 * the agent knew it had everything, not up to when it last sent (a
		 * lagging agent sends ranges of old events).
		 */
		reached = complete_ms > 0 && r->target.time_us <= complete_ms * 1000;
	}
	else if (r->target.type == TARGET_POSITION && !reached)
		reached = bk_binlog_file_compare(r->target.file, until_file) < 0 ||
				  (strcmp(r->target.file, until_file) == 0 &&
				   r->target.pos <= until_pos);
	else if (r->target.type == TARGET_LATEST)
		reached = true; /* the end of the archive: no hole before it */
	if (!reached)
		return refuse_target(r, scan, until_file, until_pos, sent, complete_ms,
							 guessed, err);

	/* Cut: files after the last transaction go, the last is truncated. */
	while (r->replay_count > 0 &&
		   (r->groups == 0 || strcmp(r->replay[r->replay_count - 1].file->name,
									 r->cut_file) != 0))
	{
		unlink(r->replay[r->replay_count - 1].path);
		r->replay_count--;
	}
	if (r->replay_count > 0)
	{
		ReplayFile *last = &r->replay[r->replay_count - 1];

		if (truncate(last->path, (off_t) r->cut_pos) != 0)
			return bk_error_set(err, BK_ERR_IO, "could not truncate \"%s\": %s",
								last->path, strerror(errno));
		last->size = r->cut_pos;
	}
	for (int idx = 0; idx < r->replay_count; idx++)
		r->replay_bytes +=
			r->replay[idx].size - (idx == 0 ? r->snapshot->binlog_pos : 0);
	bk_gtid_state_format(&scan->state, r->final_gtid, sizeof(r->final_gtid));
	/* Taken: the scan stops at the first transaction it does not take. */
	if (scan->backwards_group != 0 && scan->backwards_group <= r->groups)
	{
		const BkGtid *gtid = &scan->backwards_gtid;
		const BkGtid *after = &scan->backwards_after;

		snprintf(r->backwards_gtid, sizeof(r->backwards_gtid),
				 "%" PRIu32 "-%" PRIu32 "-%" PRIu64, gtid->domain, gtid->server,
				 gtid->seq);
		snprintf(r->backwards_after, sizeof(r->backwards_after),
				 "%" PRIu32 "-%" PRIu32 "-%" PRIu64, after->domain,
				 after->server, after->seq);
		bk_strlcpy(r->backwards_at, scan->backwards_at,
				   sizeof(r->backwards_at));
	}
	return true;
}

/* ------------------------------------------------------------------ replay */

/*
 * A command line of any length: replay names every rebuilt file on it, and
 * one dropped would replay the files before it only, without a word.
 */
typedef struct Argv
{
	char **items; /* NULL-terminated */
	int count;
	int cap;
	bool failed; /* an item could not be added: the line is not run */
} Argv;

static void argv_add(Argv *argv, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
argv_add(Argv *argv, const char *fmt, ...)
{
	va_list ap;
	char *item = NULL;

	if (argv->failed)
		return;
	if (argv->count + 2 > argv->cap)
	{
		int cap = argv->cap ? argv->cap * 2 : 16;
		char **grown = realloc(argv->items, (size_t) cap * sizeof(char *));

		if (grown == NULL)
		{
			argv->failed = true;
			return;
		}
		argv->items = grown;
		argv->cap = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&item, fmt, ap) < 0)
		item = NULL;
	va_end(ap);
	if (item == NULL)
	{
		argv->failed = true;
		return;
	}
	argv->items[argv->count++] = item;
	argv->items[argv->count] = NULL;
}

static void
argv_free(Argv *argv)
{
	for (int idx = 0; idx < argv->count; idx++)
		free(argv->items[idx]);
	free(argv->items);
	memset(argv, 0, sizeof(*argv));
}

/*
 * mariadb-binlog as the replay runs it, and binlog_tool_runs before it:
 *
 *	 --local-load			  the file of a LOAD DATA logged as a statement
 *							  (binlog_format STATEMENT or MIXED) is written
 *							  out for the client to load, by default in
 *							  TMPDIR, and never removed: plaintext rows,
 *							  outside the private work directory, which
 *							  restore_remove_work_dir empties
 *	 --skip-gtid-strict-mode  on by default, it stops at a sequence number
 *							  not above its domain's last, which a source
 *							  with gtid_strict_mode off may log, after
 *							  everything before it was applied; the scan
 *							  checks the events are the archive's and
 *							  continuous, and restore_check_replay refuses
 *							  what a strict target would stop at
 */
static void
binlog_tool_argv(const MariadbRestore *r, Argv *argv)
{
	argv_add(argv, "mariadb-binlog");
	argv_add(argv, "--no-defaults");
	argv_add(argv, "--skip-gtid-strict-mode");
	argv_add(argv, "--local-load=%s", r->work_dir);
}

static void
binlog_argv(const MariadbRestore *r, Argv *argv)
{
	binlog_tool_argv(r, argv);
	argv_add(argv, "--start-position=%" PRIu64, r->snapshot->binlog_pos);
	for (int idx = 0; idx < r->replay_count; idx++)
		argv_add(argv, "%s", r->replay[idx].path);
}

/*
 * spawn
 *		Run argv with stdin from in_fd (or /dev/null), stdout to out_fd, and
 *		stderr to err_fd; the password, if any, through the environment the
 *		client reads, never on its command line.
 */
static pid_t
spawn(const MariadbRestore *r, Argv *argv, int in_fd, int out_fd, int err_fd,
	  bool password, BkError *err)
{
	pid_t pid;

	if (argv->failed || argv->items == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM,
					 "out of memory building the command line of %s",
					 argv->items != NULL ? argv->items[0] : "a replay tool");
		return -1;
	}
	pid = fork();
	if (pid < 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not start %s: %s", argv->items[0],
					 strerror(errno));
		return -1;
	}
	if (pid == 0)
	{
		int null_fd = open("/dev/null", O_RDONLY);

		dup2(in_fd >= 0 ? in_fd : null_fd, 0);
		dup2(out_fd, 1);
		dup2(err_fd, 2);
		/* The server is the one on the command line, whatever is set. */
		unsetenv("MYSQL_HOST");
		unsetenv("MYSQL_TCP_PORT");
		unsetenv("MYSQL_UNIX_PORT");
		if (password && r->password != NULL)
			setenv("MYSQL_PWD", r->password, 1);
		/*
		 * Whatever a tool spills (mariadb-binlog's caches of large events)
		 * is plaintext too: into the private work directory.
		 */
		if (r->work_dir[0] != '\0')
			setenv("TMPDIR", r->work_dir, 1);
		signal(SIGPIPE, SIG_DFL);
		/*
		 * A mask is inherited through exec: a tool started by a thread
		 * that blocks SIGTERM would not stop when the replay is stopped.
		 */
		{
			sigset_t none;

			sigemptyset(&none);
			sigprocmask(SIG_SETMASK, &none, NULL);
		}
		execvp(argv->items[0], argv->items);
		fprintf(stderr, "could not run %s: %s\n", argv->items[0],
				strerror(errno));
		_exit(127);
	}
	return pid;
}

static int
wait_status(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/*
 * locate_line
 *		Which event line `line` of mariadb-binlog's output belongs to: run it
 *		again and follow its "# at POS" and "Rotate to FILE" comments.  The
 *		GTID event seen last before it ("#... GTID D-S-N ...") is the one
 *		of the transaction that line is in, into gtid ("" if none): the
 *		client stops at the first error, so every transaction before it was
 *		applied.
 */
static void
locate_line(const MariadbRestore *r, long line, char *out, size_t out_len,
			char *gtid, size_t gtid_len)
{
	Argv argv = {0};
	int fds[2];
	pid_t pid;
	FILE *in;
	char *text = NULL;
	size_t cap = 0;
	long number = 0;
	char file[BK_BINLOG_FILE_NAME_MAX + 1];
	uint64_t at = 0;
	int devnull = open("/dev/null", O_WRONLY);
	BkError err;

	out[0] = '\0';
	gtid[0] = '\0';
	if (pipe(fds) != 0)
		return;
	bk_strlcpy(file, r->replay[0].file->name, sizeof(file));
	binlog_argv(r, &argv);
	pid = spawn(r, &argv, -1, fds[1], devnull, false, &err);
	close(fds[1]);
	close(devnull);
	argv_free(&argv);
	in = fdopen(fds[0], "r");
	while (in != NULL && getline(&text, &cap, in) >= 0 && ++number <= line)
	{
		const char *rotate = strstr(text, "Rotate to ");
		const char *gtid_event = strstr(text, "\tGTID ");
		unsigned int domain, server;
		unsigned long long seq;

		if (strncmp(text, "# at ", 5) == 0)
			at = strtoull(text + 5, NULL, 10);
		else if (text[0] == '#' && rotate != NULL)
			sscanf(rotate + 10, "%255s", file);
		else if (text[0] == '#' && gtid_event != NULL &&
				 sscanf(gtid_event + 6, "%u-%u-%llu", &domain, &server, &seq) ==
					 3)
			snprintf(gtid, gtid_len, "%u-%u-%llu", domain, server, seq);
	}
	free(text);
	if (in != NULL)
		fclose(in);
	if (pid > 0)
	{
		kill(pid, SIGTERM);
		wait_status(pid);
	}
	if (at > 0)
		snprintf(out, out_len, "the event at %s:%" PRIu64, file, at);
}

/*
 * target_out_of_room
 *		Does the server's error say it ran out of room: ER_RECORD_FILE_FULL
 *		(1114, "The table ... is full": the disk, InnoDB's data files at
 *		their innodb_data_file_path max, a MEMORY table at
 *		max_heap_table_size), ER_DISK_FULL (1021), or a write that failed
 *		with ENOSPC (errno 28: ER_ERROR_ON_WRITE, 3; "Got error 28" from
 *		the engine, 1030)?
 */
static bool
target_out_of_room(const char *error_line)
{
	size_t len;

	if (error_line == NULL)
		return false;
	if (strncmp(error_line, "ERROR 1114 ", 11) == 0 ||
		strncmp(error_line, "ERROR 1021 ", 11) == 0)
		return true;
	len = strcspn(error_line, "\n");
	return (memmem(error_line, len, "Errcode: 28 ", 12) != NULL ||
			memmem(error_line, len, "error 28 ", 9) != NULL ||
			memmem(error_line, len, "errno: 28 ", 10) != NULL ||
			memmem(error_line, len, "No space left on device", 23) != NULL);
}

/*
 * replay_out_of_room_hint
 *		The replay stopped because the target had no room: how far it got,
 *		and what to do.  A restore does not resume (README): the target
 *		is marked incomplete (bk_restore_incomplete), and --force starts
 *		over from the snapshot.
 */
static void
replay_out_of_room_hint(const char *where, const char *gtid, BkError *err)
{
	char applied[400];

	if (gtid[0] != '\0')
		snprintf(applied, sizeof(applied),
				 "The replay applied every transaction before GTID %s, the "
				 "one that failed%s%s%s.",
				 gtid, where[0] ? " (" : "", where, where[0] ? ")" : "");
	else if (where[0] != '\0')
		snprintf(applied, sizeof(applied),
				 "The replay applied the binlog up to %s, where it failed.",
				 where);
	else
		snprintf(applied, sizeof(applied),
				 "The replay applied part of the binlog (the target's "
				 "gtid_binlog_pos says how far, with log_bin).");
	bk_error_hint(err,
				  "The target server ran out of room: a full disk, or a "
				  "file at its limit (innodb_data_file_path's max, "
				  "max_heap_table_size). %s The target is marked "
				  "incomplete (bk_restore_incomplete): free space on its "
				  "disk (or raise the limit) and run bk restore again with "
				  "--force, which starts over from the snapshot.",
				  applied);
}

/*
 * server_error_line
 *		The client's "ERROR nnnn ... at line N" line in what the tools said,
 *		or NULL.  The client echoes the failed statement before it (a
 *		BINLOG statement can be megabytes of base64): the message leads
 *		with this line, or the cut to the message's size loses it.
 */
static const char *
server_error_line(const char *messages)
{
	const char *line = messages;

	while (line != NULL && *line != '\0')
	{
		if (strncmp(line, "ERROR ", 6) == 0)
			return line;
		line = strchr(line, '\n');
		if (line != NULL)
			line++;
	}
	return NULL;
}

/*
 * raise_packet_limit
 *		mariadb-binlog writes a statement's row events as one BINLOG
 *		statement in base64, 76 characters a line: the server must take a
 *		packet 4/3 * 77/76 the size of the largest (note_statement_size).
 */
#define REPLAY_PACKET_LIMIT (1024ULL * 1024 * 1024)

static uint64_t
packet_needed(const MariadbRestore *r)
{
	return (r->largest_statement + 2) / 3 * 4 / 76 * 77 + 64 * 1024;
}

static bool
raise_packet_limit(MariadbRestore *r, BkError *err)
{
	uint64_t limit = REPLAY_PACKET_LIMIT;
	char sql[128];

	if (packet_needed(r) <= r->max_packet)
		return true;
	snprintf(sql, sizeof(sql), "SET GLOBAL max_allowed_packet = %" PRIu64,
			 limit);
	if (!restore_sql(r, r->conn, sql, "raising max_allowed_packet for replay",
					 err))
		return false;
	r->packet_before = r->max_packet;
	fprintf(stderr,
			"%s: max_allowed_packet raised from %" PRIu64
			" to 1 GiB for the replay (a statement of %" PRIu64
			" bytes of events); it is put back afterwards\n",
			r->program, r->max_packet, r->largest_statement);
	return true;
}

/*
 * Two settings of the target server alone, global only, decide how it
 * applies the row events the replay's BINLOG statements carry, as they do
 * for a replica's:
 *
 *	 slave_run_triggers_for_rbr  ENFORCE fires the target's triggers for
 *								 every row, although the source logged what
 *								 its triggers did as rows of their own: an
 *								 AFTER trigger writing another table fails
 *								 the replay (ERROR 1442), a BEFORE trigger
 *								 that changes NEW applies its change twice,
 *								 silently
 *	 slave_exec_mode			 IDEMPOTENT skips a row that is already
 *								 there or missing, without a word: a replay
 *								 that does not match the snapshot would end
 *								 well
 *
 * Both are set to the defaults (NO, STRICT) for the replay and put back
 * afterwards.
 */
typedef struct ReplaySetting
{
	const char *name;
	const char *replay_value;
	size_t offset; /* of the server's value in MariadbRestore */
} ReplaySetting;

static const ReplaySetting replay_settings[] = {
	{"slave_run_triggers_for_rbr", "NO",
	 offsetof(MariadbRestore, triggers_setting)},
	{"slave_exec_mode", "STRICT", offsetof(MariadbRestore, exec_mode_setting)},
};

#define REPLAY_SETTINGS (sizeof(replay_settings) / sizeof(replay_settings[0]))

static const char *
server_setting(const MariadbRestore *r, const ReplaySetting *setting)
{
	return (const char *) r + setting->offset;
}

static bool
set_replay_settings(MariadbRestore *r, BkError *err)
{
	for (size_t idx = 0; idx < REPLAY_SETTINGS; idx++)
	{
		const ReplaySetting *setting = &replay_settings[idx];
		const char *server = server_setting(r, setting);
		char sql[128];

		/* Read by restore_check_server. */
		if (server[0] == '\0' || strcasecmp(server, setting->replay_value) == 0)
			continue;
		snprintf(sql, sizeof(sql), "SET GLOBAL %s = %s", setting->name,
				 setting->replay_value);
		if (!restore_sql(r, r->conn, sql, "setting the replay's settings", err))
			return false;
		r->settings_changed |= 1u << idx;
		fprintf(stderr,
				"%s: %s set from %s to %s for the replay (the source "
				"logged what it applied); it is put back afterwards\n",
				r->program, setting->name, server, setting->replay_value);
	}
	return true;
}

static void
put_back_replay_settings(MariadbRestore *r)
{
	for (size_t idx = 0; idx < REPLAY_SETTINGS; idx++)
	{
		const ReplaySetting *setting = &replay_settings[idx];
		const char *values[1] = {server_setting(r, setting)};
		char sql[128];
		BkError ignore;

		if ((r->settings_changed & (1u << idx)) == 0)
			continue;
		snprintf(sql, sizeof(sql), "SET GLOBAL %s = ?", setting->name);
		if (!restore_sql_params(r->conn, sql, 1, values,
								"putting back a replay setting", &ignore))
			fprintf(stderr, "%s: WARNING: %s; set %s back to %s by hand\n",
					r->program, ignore.message, setting->name, values[0]);
		r->settings_changed &= ~(1u << idx);
	}
}

static void
put_back_packet_limit(MariadbRestore *r)
{
	char sql[128];
	BkError ignore;

	if (r->packet_before == 0)
		return;
	snprintf(sql, sizeof(sql), "SET GLOBAL max_allowed_packet = %" PRIu64,
			 r->packet_before);
	if (!restore_sql(r, r->conn, sql, "putting back max_allowed_packet",
					 &ignore))
		fprintf(stderr,
				"%s: WARNING: %s; set max_allowed_packet back to %" PRIu64
				" by hand\n",
				r->program, ignore.message, r->packet_before);
	r->packet_before = 0;
}

/*
 * The name of a long option from the output of --print-defaults: what
 * follows "--" and any number of "loose-"; NULL for anything else.
 */
static const char *
option_name(const char *word)
{
	const char *name;

	if (strncmp(word, "--", 2) != 0)
		return NULL;
	name = word + 2;
	while (strncasecmp(name, "loose", 5) == 0 &&
		   (name[5] == '-' || name[5] == '_'))
		name += 6;
	return name;
}

/*
 * Whether a word of mariadb --print-defaults is option full (given at
 * least shortest of its characters) as the client's option parser takes
 * it: after "--", any number of "loose-", then
 * any prefix of the name (the parser takes a unique one; "o" is), in any
 * case, "_" for "-", with or without a value.  Option files give long
 * options only: "-o" in the output is a piece of some value.
 */
static bool
name_is(const char *name, const char *full, size_t shortest)
{
	size_t len;

	if (name == NULL)
		return false;
	len = strcspn(name, "=");
	if (len < shortest || len > strlen(full))
		return false;
	for (size_t pos = 0; pos < len; pos++)
	{
		char c =
			name[pos] == '_' ? '-' : (char) tolower((unsigned char) name[pos]);

		if (c != full[pos])
			return false;
	}
	return true;
}

static bool
names_option(const char *word, const char *full, size_t shortest)
{
	return name_is(option_name(word), full, shortest);
}

static bool
names_one_database(const char *word)
{
	return names_option(word, "one-database", 1);
}

/* "pa" is also pager's: "pas" and longer are password's alone. */
static bool
names_password(const char *word)
{
	return names_option(word, "password", 3);
}

/*
 * The name of a setting after "--", any "loose-" and at most one of
 * "skip-", "disable-" or "enable-", which turn a switch off or on.
 */
static const char *
switch_name(const char *word)
{
	static const char *const prefixes[] = {"skip", "disable", "enable"};
	const char *name = option_name(word);

	if (name == NULL)
		return NULL;
	for (size_t idx = 0; idx < sizeof(prefixes) / sizeof(prefixes[0]); idx++)
	{
		size_t len = strlen(prefixes[idx]);

		if (strncasecmp(name, prefixes[idx], len) == 0 &&
			(name[len] == '-' || name[len] == '_'))
			return name + len + 1;
	}
	return name;
}

/*
 * A TLS setting (ssl, ssl-ca, ssl-verify-server-cert, tls-version, ...),
 * turned on, off or given a value.
 */
static bool
names_tls(const char *word)
{
	const char *name = switch_name(word);

	return name != NULL && (strncasecmp(name, "ssl", 3) == 0 ||
							strncasecmp(name, "tls", 3) == 0);
}

/*
 * Settings bk makes itself on its own connections, which Connector/C reads
 * from [client] at connect time over what bk set (client_defaults_checked
 * says why each matters); the full name, or NULL.  The shortest prefix is
 * the one the mariadb client takes as that option alone ("re" is
 * reconnect's, "pro" is also prompt's); Connector/C takes full names only.
 * socket is not among them: bk's TCP connections use no socket while
 * protocol is theirs, and Debian's own mariadb.cnf names one in
 * [client-server].
 */
static const char *
names_own_setting(const char *word)
{
	static const struct
	{
		const char *full;
		size_t shortest;
	} own[] = {
		{"reconnect", 2},
		{"protocol", 4},
		{"init-command", 2},
		{"local-infile", 2},
	};
	const char *name = switch_name(word);

	for (size_t idx = 0; idx < sizeof(own) / sizeof(own[0]); idx++)
		if (name_is(name, own[idx].full, own[idx].shortest))
			return own[idx].full;
	return NULL;
}

/*
 * The client reads the option files (groups [mysql], [mariadb-client],
 * [client], [client-server] and [client-mariadb]), which is how it gets
 * the password when no --mysql-password-file is given.  Two options there
 * would lose transactions without a word: "force" carries on after a
 * statement fails (and the client exits 0), "one-database" skips every
 * statement outside the database named on the command line, which here is
 * none.  The first is turned off on the command line (--skip-force); the
 * second cannot be, so a restore it would empty is refused before it
 * starts.  mariadb --print-defaults lists what the option files give.
 * A password there wins over MYSQL_PWD, through which the client gets
 * --mysql-password-file's: the replay would log in with another password
 * than bk's own connection, and fail after the whole load; refused too.
 *
 * So are TLS settings there (tls_from_options says when): bk's own
 * connections read [client] when they connect (for the password), after
 * the --mysql-ssl-* options are set, so that a file's ssl-ca,
 * ssl-verify-server-cert=0, tls-version or skip-ssl would silently replace
 * what the command line asked for; and a file's "ssl" alone is what let a
 * restore go on in plain text to a server without TLS.  TLS has one
 * place: the options.  The same holds for the other settings bk makes on
 * its own connections (names_own_setting), refused always, with or
 * without a replay: reconnect would let Connector/C log in again after a
 * lost connection without the TLS probe and check and without the loading
 * session's settings (sql_log_bin = 0, ...); protocol=socket would send
 * bk's connections to --mysql-host localhost's Unix socket and the
 * replay's client, whose --protocol=TCP wins, to TCP: two servers, maybe;
 * an init-command would run on every connection of bk's; local-infile
 * would let the server ask for files over the connections that load none.
 *
 * A world-writable option file is skipped by the mariadb client, with a
 * warning on stderr, so --print-defaults does not list it; Connector/C
 * reads it all the same.  Its settings cannot be checked: refused.
 */
/*
 * Whether TLS settings in the option files are refused: always over TCP,
 * unless --mysql-ssl-mode=disabled was given, with which bk asks for no
 * TLS and checks none.  Over the Unix socket TLS protects nothing.
 */
static bool
tls_from_options(const MariadbRestore *r)
{
	return r->socket == NULL &&
		   (r->tls.mode != BK_MYSQL_SSL_DISABLED || r->tls.mode_defaulted);
}

/*
 * The first option file mariadb --print-defaults said it skipped as
 * world-writable, from its stderr; false if none.
 */
static bool
world_writable_file(FILE *messages, char *file, size_t file_len)
{
	static const char marker[] = "World-writable config file '";
	char *line = NULL;
	size_t cap = 0;
	bool found = false;

	rewind(messages);
	while (!found && getline(&line, &cap, messages) >= 0)
	{
		const char *start = strstr(line, marker);
		const char *end;

		if (start == NULL)
			continue;
		start += sizeof(marker) - 1;
		end = strstr(start, "' is ignored");
		if (end == NULL)
			end = start + strcspn(start, "'\n");
		snprintf(file, file_len, "%.*s", (int) (end - start), start);
		found = true;
	}
	free(line);
	return found;
}

static bool
client_defaults_checked(const MariadbRestore *r, bool replay, BkError *err)
{
	Argv argv = {0};
	int out_pipe[2];
	FILE *messages;
	pid_t pid;
	char buf[4096];
	char *text = NULL;
	size_t len = 0;
	ssize_t got;
	int status;
	bool ok = true;
	char ignored[PATH_MAX];

	if ((messages = tmpfile()) == NULL)
		return bk_error_set(err, BK_ERR_IO,
							"could not create a temporary file: %s",
							strerror(errno));
	if (pipe2(out_pipe, O_CLOEXEC) != 0)
	{
		fclose(messages);
		return bk_error_set(err, BK_ERR_IO, "could not create a pipe: %s",
							strerror(errno));
	}
	argv_add(&argv, "mariadb");
	argv_add(&argv, "--print-defaults");
	pid = spawn(r, &argv, -1, out_pipe[1], fileno(messages), false, err);
	close(out_pipe[1]);
	while (pid > 0 && (got = read(out_pipe[0], buf, sizeof(buf))) != 0)
	{
		char *grown;

		if (got < 0)
		{
			if (errno == EINTR)
				continue;
			break;
		}
		grown = realloc(text, len + (size_t) got + 1);
		if (grown == NULL)
		{
			ok = bk_error_set(err, BK_ERR_NOMEM, "out of memory");
			break;
		}
		text = grown;
		memcpy(text + len, buf, (size_t) got);
		len += (size_t) got;
		text[len] = '\0';
	}
	close(out_pipe[0]);
	explicit_bzero(buf, sizeof(buf)); /* the password may be in it */
	status = pid > 0 ? wait_status(pid) : -1;
	argv_free(&argv);
	if (pid < 0)
		ok = false;
	else if (ok && status == 127)
	{
		ok = bk_error_set(err, BK_ERR_CONFIG,
						  "the mariadb client, which replays the binlog and "
						  "says what the option files give, is not on PATH");
		bk_error_hint(err, "Install it (Debian: mariadb-client).");
	}
	else if (ok && status != 0)
		ok = bk_error_set(err, BK_ERR_CONFIG,
						  "mariadb --print-defaults failed (exit %d): the "
						  "option files the replay client would read could "
						  "not be checked",
						  status);
	else if (ok && world_writable_file(messages, ignored, sizeof(ignored)))
	{
		ok = bk_error_set(
			err, BK_ERR_CONFIG,
			"the option file %s is world-writable: the mariadb client skips "
			"it, bk's own connections (Connector/C) read it, and what it "
			"gives cannot be checked",
			ignored);
		bk_error_hint(err, "Make it writable by its owner alone (chmod "
						   "o-w), or remove it.");
	}
	fclose(messages);
	for (char *word = text ? strtok(text, " \t\n") : NULL; ok && word != NULL;
		 word = strtok(NULL, " \t\n"))
	{
		const char *own = names_own_setting(word);

		if (own != NULL)
		{
			ok = bk_error_set(
				err, BK_ERR_CONFIG,
				"the option files give the mariadb client %s, a setting bk "
				"restore makes itself on its connections to the target, "
				"which the file would override",
				own);
			bk_error_hint(err,
						  "Remove it from the option files the mariadb client "
						  "reads (\"mariadb --print-defaults\" shows what they "
						  "give): bk restore sets it.");
		}
		else if (replay && r->password_file != NULL && names_password(word))
		{
			ok = bk_error_set(
				err, BK_ERR_CONFIG,
				"the option files give the mariadb client a password, which "
				"it would use for the binlog replay instead of the one in "
				"%s",
				r->password_file);
			bk_error_hint(
				err, "Remove the password from the option files the mariadb "
					 "client reads (\"mariadb --print-defaults\" shows what "
					 "they give), or leave out --mysql-password-file.");
		}
		else if (tls_from_options(r) && names_tls(word))
		{
			char setting[128];

			/* The name alone: a value may be a path, or a passphrase. */
			bk_strlcpy(setting, word, sizeof(setting));
			setting[strcspn(setting, "=")] = '\0';
			ok = bk_error_set(
				err, BK_ERR_CONFIG,
				"the option files give the mariadb client %s, a TLS "
				"setting: bk restore takes TLS from its --mysql-ssl-* "
				"options alone (here --mysql-ssl-mode=%s%s), and the file "
				"would override them",
				setting, bk_mysql_tls_mode_name(r->tls.mode),
				r->tls.mode_defaulted ? ", the default" : "");
			bk_error_hint(
				err, "Give TLS as --mysql-ssl-mode (required, or "
					 "verify_identity with --mysql-ssl-ca) and remove the "
					 "TLS settings from the option files (\"mariadb "
					 "--print-defaults\" shows what they give); or, on a "
					 "network you trust, give --mysql-ssl-mode=disabled: bk "
					 "then asks for no TLS and checks none.");
		}
		else if (replay && names_one_database(word))
		{
			ok = bk_error_set(
				err, BK_ERR_CONFIG,
				"the option files give the mariadb client one-database, which "
				"would skip every replayed statement");
			bk_error_hint(
				err, "Remove one-database from the option files the mariadb "
					 "client reads (\"mariadb --print-defaults\" shows what "
					 "they give).");
		}
	}
	if (text != NULL)
	{
		explicit_bzero(text, len); /* it lists the password too */
		free(text);
	}
	return ok;
}

/* The replay's client, reading from its stdin. */
static void
client_argv(const MariadbRestore *r, Argv *argv)
{
	argv_add(argv, "mariadb");
	argv_add(argv, "--binary-mode");
	argv_add(argv, "--skip-force"); /* client_defaults_checked */
	argv_add(argv, "--max-allowed-packet=1073741824");
	argv_add(argv, "--user=%s", r->user);
	/* Explicit, so MYSQL_HOST and the like cannot redirect the replay. */
	if (r->socket != NULL)
	{
		argv_add(argv, "--protocol=SOCKET");
		argv_add(argv, "--host=localhost");
		argv_add(argv, "--socket=%s", r->socket);
	}
	else
	{
		argv_add(argv, "--protocol=TCP");
		argv_add(argv, "--host=%s", r->host);
		argv_add(argv, "--port=%u", r->port);
	}
	/*
	 * TLS as bk's own connections have it (on the command line, which wins
	 * over the option files).  The client asked for TLS without checking
	 * the certificate goes on in plain text when the server offers none,
	 * as Connector/C does for bk: restore_tls_probe looks first, and the
	 * init command, run before anything of the replay is sent, refuses a
	 * session that is not encrypted after all.
	 */
	if (r->tls.mode == BK_MYSQL_SSL_DISABLED)
		return;
	argv_add(argv, "--ssl");
	if (r->tls.mode == BK_MYSQL_SSL_VERIFY_IDENTITY)
		argv_add(argv, "--ssl-verify-server-cert");
	if (r->tls.ca != NULL)
		argv_add(argv, "--ssl-ca=%s", r->tls.ca);
	if (r->tls.crl != NULL)
		argv_add(argv, "--ssl-crl=%s", r->tls.crl);
	if (r->tls.cert != NULL)
		argv_add(argv, "--ssl-cert=%s", r->tls.cert);
	if (r->tls.key != NULL)
		argv_add(argv, "--ssl-key=%s", r->tls.key);
	argv_add(argv, "--tls-version=TLSv1.2,TLSv1.3");
	argv_add(argv,
			 "--init-command=IF IFNULL((SELECT VARIABLE_VALUE FROM"
			 " information_schema.SESSION_STATUS WHERE VARIABLE_NAME ="
			 " 'Ssl_cipher'), '') = '' THEN SIGNAL SQLSTATE '45000' SET"
			 " MESSAGE_TEXT = 'bk: this session is not encrypted, and"
			 " --mysql-ssl-mode=%s refuses it'; END IF",
			 bk_mysql_tls_mode_name(r->tls.mode));
}

/*
 * The replay's client, run as the replay runs it, logs in and runs a
 * statement: the option files' own errors (an option it does not know, a
 * value it refuses) and another password than bk's fail it here, not
 * after the load.  Its first line of errors is the message.
 */
static bool
client_probe(const MariadbRestore *r, BkError *err)
{
	Argv argv = {0};
	int err_pipe[2];
	int devnull;
	pid_t pid;
	char said[512];
	size_t said_len = 0;
	ssize_t got;
	int status;

	if (!restore_tls_probe(r, err))
		return false;
	if (pipe2(err_pipe, O_CLOEXEC) != 0)
		return bk_error_set(err, BK_ERR_IO, "could not create a pipe: %s",
							strerror(errno));
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	client_argv(r, &argv);
	argv_add(&argv, "--execute=SELECT 1");
	pid = spawn(r, &argv, -1, devnull, err_pipe[1], true, err);
	close(devnull);
	close(err_pipe[1]);
	while (pid > 0 && (got = read(err_pipe[0], said + said_len,
								  sizeof(said) - 1 - said_len)) != 0)
	{
		if (got < 0)
		{
			if (errno == EINTR)
				continue;
			break;
		}
		said_len += (size_t) got;
		if (said_len == sizeof(said) - 1)
		{
			char drain[512];

			/* The rest is not needed, but the child must not block. */
			while ((got = read(err_pipe[0], drain, sizeof(drain))) > 0 ||
				   (got < 0 && errno == EINTR))
				;
			break;
		}
	}
	close(err_pipe[0]);
	argv_free(&argv);
	if (pid < 0)
		return false;
	status = wait_status(pid);
	said[said_len] = '\0';
	said[strcspn(said, "\n")] = '\0';
	if (status == 0)
		return true;
	bk_error_set(err, BK_ERR_CONFIG,
				 "the mariadb client, run as the binlog replay runs it, "
				 "failed (exit %d)%s%s",
				 status, said[0] ? ": " : "", said);
	return bk_error_hint(
		err, "Check the option files it reads (\"mariadb --print-defaults\" "
			 "shows what they give) and the account's password.");
}

/* The replay's mariadb-binlog starts (not on PATH: exit 127). */
static bool
binlog_tool_runs(const MariadbRestore *r, BkError *err)
{
	Argv argv = {0};
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	pid_t pid;
	int status;

	/*
	 * As the replay runs it: option files would fail it on what they give
	 * the client ([client] default-character-set, say), and one older than
	 * 10.11 on --skip-gtid-strict-mode.
	 */
	binlog_tool_argv(r, &argv);
	argv_add(&argv, "--version");
	pid = spawn(r, &argv, -1, devnull, devnull, false, err);
	close(devnull);
	argv_free(&argv);
	if (pid < 0)
		return false;
	status = wait_status(pid);
	if (status == 127)
		return bk_error_set(err, BK_ERR_CONFIG,
							"mariadb-binlog, which reads the binlog for the "
							"replay, is not on PATH") ||
			   bk_error_hint(err, "Install it (Debian: mariadb-client).");
	if (status != 0)
		return bk_error_set(err, BK_ERR_CONFIG,
							"mariadb-binlog --version failed (exit %d), run"
							" with the options the replay needs"
							" (--skip-gtid-strict-mode, --local-load)",
							status) ||
			   bk_error_hint(err, "Install the mariadb-binlog of MariaDB"
								  " 10.11 or newer.");
	return true;
}

/*
 * check_gtid_order
 *		The binlog to replay logs a sequence number not above its domain's
 *		last (note_backwards), which a target with log_bin on logs only
 *		with gtid_strict_mode off: with it on, the replay would stop there
 *		after the whole load.
 */
static bool
check_gtid_order(MariadbRestore *r, BkError *err)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	bool strict;

	if (mysql_query(r->conn, "SELECT @@global.gtid_strict_mode") != 0 ||
		(res = mysql_store_result(r->conn)) == NULL)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"could not read the target server's"
							" gtid_strict_mode: %s",
							mysql_error(r->conn));
	row = mysql_fetch_row(res);
	strict = row != NULL && row[0] != NULL && strcmp(row[0], "1") == 0;
	mysql_free_result(res);
	if (!strict)
		return true;
	return bk_error_set(err, BK_ERR_CONFIG,
						"the binlog to replay logs GTID %s after %s (the"
						" transaction ending at %s), a sequence number not"
						" above its domain's last, as a source with"
						" gtid_strict_mode off may: the target, with log_bin"
						" and gtid_strict_mode on, would refuse to log it and"
						" stop the replay there, after the whole load",
						r->backwards_gtid, r->backwards_after,
						r->backwards_at) ||
		   bk_error_hint(err, "SET GLOBAL gtid_strict_mode = OFF on the target"
							  " for the restore (its binlog then logs the"
							  " source's GTIDs as the source did; turn it back"
							  " on afterwards), restore into a server with"
							  " log_bin off, or to a target before that"
							  " transaction.");
}

/*
 * restore_check_replay
 *		What the replay needs, checked before anything is written (with
 *		--force, before any database is dropped): an event the server can
 *		take, the two client tools, option files that would not skip what
 *		is replayed, and the client logging in as it will for the replay.
 *		Found only at the replay, after hours of loading, each would leave
 *		a half-restored server.
 */
bool
restore_check_replay(MariadbRestore *r, BkError *err)
{
	if (r->replay_count == 0)
		return true;
	/*
	 * CREATE TABLE ... SELECT logged with its rows is one group, which
	 * mariadb-binlog's output replays as two transactions: the CREATE
	 * commits by itself under the group's GTID and the rows take the next
	 * sequence number (MDEV-29803).  A target that logs binlog then holds
	 * a GTID history that is not the source's: gtid_strict_mode stops the
	 * replay after the whole load, and without it a sequence number is
	 * logged twice.  Refused before anything is written; a target without
	 * log_bin replays it right.
	 */
	if (r->log_bin && r->split_group_gtid[0] != '\0')
		return bk_error_set(err, BK_ERR_CONFIG,
							"the binlog to replay holds CREATE TABLE ... "
							"SELECT with its rows (GTID %s, ending at %s), "
							"which replaying into a server with log_bin on "
							"would log as two transactions: the restored "
							"binlog's GTIDs would not be the source's",
							r->split_group_gtid, r->split_group_at) ||
			   bk_error_hint(err, "Restore into a server started with log_bin "
								  "off (the data and gtid_slave_pos come out "
								  "right; turn log_bin on afterwards), or to a "
								  "target before that transaction.");
	/* follow_temp_tables */
	if (r->temp_table_gtid[0] != '\0')
		return bk_error_set(err, BK_ERR_CONFIG,
							"the binlog to replay holds a statement on"
							" temporary table %s (GTID %s, at %s, thread"
							" %" PRIu32 "), which its session created before"
							" snapshot %s at %s:%" PRIu64 ": the replay"
							" starts after the CREATE TEMPORARY TABLE and"
							" would fail there, or use another table of that"
							" name",
							r->temp_table_name, r->temp_table_gtid,
							r->temp_table_at, r->temp_table_thread,
							r->snapshot->id, r->snapshot->binlog_file,
							r->snapshot->binlog_pos) ||
			   bk_error_hint(err, "Restore to a target before that"
								  " transaction, or from a snapshot taken"
								  " after the session ended (--snapshot).  "
								  "With binlog_format=ROW the source logs"
								  " no statement on temporary tables.");
	if (r->log_bin && r->temp_drop_gtid[0] != '\0')
		return bk_error_set(err, BK_ERR_CONFIG,
							"the binlog to replay holds the DROP of"
							" temporary table %s at the end of its session"
							" (GTID %s, at %s, thread %" PRIu32 "), which the"
							" session created before snapshot %s at"
							" %s:%" PRIu64 ": the target never has the table"
							" and, with log_bin on, would log nothing for"
							" it, so its binlog's GTIDs would not be the"
							" source's",
							r->temp_drop_name, r->temp_drop_gtid,
							r->temp_drop_at, r->temp_drop_thread,
							r->snapshot->id, r->snapshot->binlog_file,
							r->snapshot->binlog_pos) ||
			   bk_error_hint(err, "Restore into a server started with log_bin"
								  " off, to a target before that transaction,"
								  " or from a snapshot taken after the session"
								  " ended (--snapshot).  With"
								  " binlog_format=ROW the source logs no"
								  " statement on temporary tables.");
	if (r->log_bin && r->backwards_gtid[0] != '\0' && !check_gtid_order(r, err))
		return false;
	if (packet_needed(r) > REPLAY_PACKET_LIMIT)
		return bk_error_set(err, BK_ERR_FORMAT,
							"a statement of %" PRIu64 " bytes of events (a"
							" statement's row events are replayed as one"
							" packet) is too large to replay"
							" (max_allowed_packet is at most 1 GiB)",
							r->largest_statement);
	return client_defaults_checked(r, true, err) && binlog_tool_runs(r, err) &&
		   client_probe(r, err);
}

bool
restore_check_client_defaults(const MariadbRestore *r, BkError *err)
{
	/*
	 * bk's own connections read the option files whether or not there is
	 * a replay: its settings, TLS's over TCP, world-writable files.
	 */
	return client_defaults_checked(r, r->replay_count > 0, err);
}

/* A signal came: the tools stop (once), and the replay fails. */
static void
replay_stop_tools(MariadbRestore *r, pid_t binlog_pid, pid_t client_pid,
				  bool *stopped)
{
	if (*stopped || restore_signal_taken(r) == 0)
		return;
	*stopped = true;
	if (binlog_pid > 0)
		kill(binlog_pid, SIGTERM);
	if (client_pid > 0)
		kill(client_pid, SIGTERM);
}

bool
restore_replay(MariadbRestore *r, BkError *err)
{
	Argv binlog = {0}, client = {0};
	int data_pipe[2], err_pipe[2];
	pid_t binlog_pid, client_pid = -1;
	char *messages = NULL;
	size_t messages_len = 0, messages_cap = 0;
	bool messages_lost = false; /* out of memory keeping them */
	char buf[4096];
	ssize_t got;
	int binlog_status, client_status;
	bool stopped = false;
	bool ok = true;
	int devnull;

	if (r->replay_count == 0)
		return true;
	restore_mark_step(r, "binlog replay");
	if (!client_defaults_checked(r, true, err) || !restore_tls_probe(r, err))
		return false;
	/*
	 * The signals are held (restore_hold_signals) since before the first
	 * setting changed, until run() or the failure has put them back.
	 */
	if (!raise_packet_limit(r, err) || !set_replay_settings(r, err) ||
		restore_signal_taken(r) != 0)
	{
		put_back_packet_limit(r);
		put_back_replay_settings(r);
		ok = false;
		goto stop;
	}
	if (pipe2(data_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not create a pipe: %s",
					 strerror(errno));
		/* Nothing replayed: the target's settings as they were. */
		put_back_packet_limit(r);
		put_back_replay_settings(r);
		ok = false;
		goto stop;
	}
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	binlog_argv(r, &binlog);
	client_argv(r, &client);
	binlog_pid = spawn(r, &binlog, -1, data_pipe[1], err_pipe[1], false, err);
	if (binlog_pid > 0)
		client_pid =
			spawn(r, &client, data_pipe[0], devnull, err_pipe[1], true, err);
	close(devnull);
	close(data_pipe[0]);
	close(data_pipe[1]);
	close(err_pipe[1]);
	for (;;)
	{
		/* The signal is held, not taken here: looked for every 200 ms. */
		struct pollfd wait_messages = {.fd = err_pipe[0], .events = POLLIN};
		int ready;

		replay_stop_tools(r, binlog_pid, client_pid, &stopped);
		ready = poll(&wait_messages, 1, 200);
		if (ready == 0 || (ready < 0 && errno == EINTR))
			continue;
		got = read(err_pipe[0], buf, sizeof(buf));
		if (got == 0)
			break;
		if (got < 0)
		{
			if (errno == EINTR)
				continue;
			break;
		}
		if (messages_lost)
			continue; /* drained: the tools must not block on stderr */
		if (messages_len + (size_t) got + 1 > messages_cap)
		{
			size_t cap = (messages_len + (size_t) got + 1) * 2;
			char *grown = realloc(messages, cap);

			if (grown == NULL)
			{
				/* What was kept stays; the replay goes on. */
				messages_lost = true;
				continue;
			}
			messages = grown;
			messages_cap = cap;
		}
		memcpy(messages + messages_len, buf, (size_t) got);
		messages_len += (size_t) got;
		messages[messages_len] = '\0';
	}
	close(err_pipe[0]);
	binlog_status = binlog_pid > 0 ? wait_status(binlog_pid) : -1;
	client_status = client_pid > 0 ? wait_status(client_pid) : -1;
	while (messages_len > 0 && messages[messages_len - 1] == '\n')
		messages[--messages_len] = '\0';
	if (binlog_pid < 0 || client_pid < 0)
		ok = false;
	else if (stopped)
		ok = bk_error_set(err, BK_ERR_INTERRUPTED,
						  "the binlog replay was stopped by signal %d (%s):"
						  " the target holds part of it",
						  r->stop_signal, strsignal(r->stop_signal));
	else if (client_status != 0 || binlog_status != 0)
	{
		const char *error_line = server_error_line(messages);
		const char *at_line =
			error_line ? strstr(error_line, " at line ") : NULL;
		char where[512] = "";
		char gtid[64] = "";

		if (at_line != NULL)
			locate_line(r, strtol(at_line + 9, NULL, 10), where, sizeof(where),
						gtid, sizeof(gtid));
		ok = bk_error_set(
			err, BK_ERR_INTERNAL,
			"binlog replay failed%s%s (mariadb-binlog exit %d,"
			" mariadb exit %d): %.*s%s%s%s",
			where[0] ? " at " : "", where, binlog_status, client_status,
			error_line ? (int) strcspn(error_line, "\n") : 0,
			error_line ? error_line : "", error_line ? "; it said: " : "",
			messages && messages[0] ? messages : "no message",
			messages_lost ? " (out of memory: the tools' later"
							" messages were lost)"
						  : "");
		/*
		 * Older agents took snapshots while XA transactions were
		 * prepared: the XA COMMIT after the snapshot has nothing to
		 * commit.
		 */
		if (target_out_of_room(error_line))
			replay_out_of_room_hint(where, gtid, err);
		else if (messages && strstr(messages, "ERROR 1146 ") != NULL)
			bk_error_hint(err, "If the table is a temporary one, its session"
							   " created it before the binlog file the"
							   " snapshot was taken in (binlog_format MIXED"
							   " or STATEMENT logs statements on temporary"
							   " tables): restore to a target before that"
							   " statement, or from a snapshot taken after"
							   " the session ended (--snapshot).");
		else if (messages && strstr(messages, "ERROR 1397 ") != NULL)
			bk_error_hint(err, "The snapshot was most likely taken while"
							   " this XA transaction was prepared (older"
							   " agents did not wait for prepared XA"
							   " transactions to end), so it holds none of"
							   " its changes.  Restore from a later snapshot"
							   " (--snapshot).");
	}
	else
	{
		if (messages_len > 0)
			fprintf(stderr, "%s: replay said: %s\n", r->program, messages);
		if (messages_lost)
			fprintf(stderr,
					"%s: WARNING: out of memory keeping what the replay's"
					" tools said: their later messages were lost (both"
					" ended well)\n",
					r->program);
	}
	free(messages);
	argv_free(&binlog);
	argv_free(&client);
	put_back_packet_limit(r);
	put_back_replay_settings(r);
stop:
	if (restore_signal_taken(r) != 0)
	{
		/* A failure of its own, if any, is what is said. */
		if (!stopped && (ok || err->code == BK_OK))
			restore_go_on(r, "during the binlog replay", err);
		ok = false;
	}
	return ok;
}
