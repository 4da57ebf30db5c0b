/*
 * binlog_gtids.c
 *		What the archive reached, GTID by GTID (binlog_gtids.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binlog_gtids.h"
#include "bk_frame.h"

/*
 * binlog_gtids_forget
 *		Nothing known.
 */
void
binlog_gtids_forget(BinlogGtids *gtids)
{
	gtids->known = BINLOG_GTIDS_UNKNOWN;
	gtids->reached.count = 0;
	gtids->list_due = false;
	gtids->open = false;
}

/*
 * take_back_open
 *		The open transaction's GTID out of what was reached: the entry of
 *		its domain and server as it was before.
 */
static void
take_back_open(BinlogGtids *gtids)
{
	BkGtidList *list = &gtids->reached;

	gtids->open = false;
	for (int idx = 0; idx < list->count; idx++)
	{
		BkGtid *have = &list->gtids[idx];

		if (have->domain != gtids->open_gtid.domain ||
			have->server != gtids->open_gtid.server ||
			have->seq != gtids->open_gtid.seq)
			continue;
		if (gtids->open_had_prev)
			*have = gtids->open_prev;
		else
		{
			memmove(have, have + 1,
					(size_t) (list->count - idx - 1) * sizeof(BkGtid));
			list->count--;
		}
		return;
	}
}

/*
 * binlog_gtids_file_ended
 *		No list is coming for a file that ended.
 */
void
binlog_gtids_file_ended(BinlogGtids *gtids)
{
	gtids->list_due = false;
}

/*
 * binlog_gtids_open_meta
 *		The open transaction as a range's metadata (binlog_gtids.h).
 */
bool
binlog_gtids_open_meta(const BinlogGtids *gtids, const BkBinlogTxn *txn,
					   char *out, size_t out_len)
{
	int n;

	if (out_len == 0)
		return false;
	out[0] = '\0';
	if (!gtids->open)
		return true;
	n = snprintf(out, out_len, "\nopen-gtid=%" PRIu32 "-%" PRIu32 "-%" PRIu64,
				 gtids->open_gtid.domain, gtids->open_gtid.server,
				 gtids->open_gtid.seq);
	if (n > 0 && (size_t) n < out_len && gtids->open_had_prev)
		n += snprintf(out + n, out_len - (size_t) n,
					  "\nopen-gtid-before=%" PRIu32 "-%" PRIu32 "-%" PRIu64,
					  gtids->open_prev.domain, gtids->open_prev.server,
					  gtids->open_prev.seq);
	/* The follower's flag, of the same GTID event (binlog_gtids.h). */
	if (n > 0 && (size_t) n < out_len && txn->in_group && txn->standalone)
		n += snprintf(out + n, out_len - (size_t) n, "\nopen-standalone=1");
	if (n <= 0 || (size_t) n >= out_len)
	{
		out[0] = '\0';
		return false;
	}
	return true;
}

/*
 * parse_one_gtid
 *		"domain-server-seq", one GTID.
 */
static bool
parse_one_gtid(const char *key, const char *text, BkGtid *gtid, BkError *err)
{
	BkGtidList list;

	if (!bk_gtid_list_parse(text, &list, err))
		return bk_error_prefix(err, "%s=: ", key);
	if (list.count != 1)
		return bk_error_set(err, BK_ERR_FORMAT, "%s=\"%s\" is not one GTID",
							key, text);
	*gtid = list.gtids[0];
	return true;
}

/*
 * binlog_gtids_resume_open
 *		Inside the transaction a range's metadata says it ends in.
 */
bool
binlog_gtids_resume_open(BinlogGtids *gtids, BkBinlogTxn *txn, const char *meta,
						 size_t meta_len, BkError *err)
{
	char text[64];
	BkGtid gtid, prev;
	bool had_prev;
	bool standalone = false;

	if (!bk_meta_get(meta, meta_len, "open-gtid", text, sizeof(text)))
		return true;
	if (!parse_one_gtid("open-gtid", text, &gtid, err))
		return false;
	had_prev =
		bk_meta_get(meta, meta_len, "open-gtid-before", text, sizeof(text));
	if (had_prev)
	{
		if (!parse_one_gtid("open-gtid-before", text, &prev, err))
			return false;
		if (prev.domain != gtid.domain || prev.server != gtid.server)
			return bk_error_set(err, BK_ERR_FORMAT,
								"open-gtid-before=\"%s\" is not of the"
								" domain and server of open-gtid=",
								text);
	}
	if (bk_meta_get(meta, meta_len, "open-standalone", text, sizeof(text)))
		standalone = strcmp(text, "1") == 0;
	gtids->open = true;
	gtids->open_gtid = gtid;
	gtids->open_had_prev = had_prev;
	if (had_prev)
		gtids->open_prev = prev;
	memset(txn, 0, sizeof(*txn));
	txn->in_group = true;
	txn->gtid = gtid;
	txn->standalone = standalone;
	return true;
}

/*
 * binlog_gtids_from_newest
 *		Each domain's newest GTID.  Whether it came from a GTID event or
 *		from a list (the domain's last entry, its most recent GTID), it is
 *		the last GTID of its domain and server, so each entry is one the
 *		next list must hold as it is: checking them can miss a transaction
 *		of another server, never report one missing that is not.
 */
void
binlog_gtids_from_newest(BinlogGtids *gtids, const BkGtidState *newest)
{
	binlog_gtids_forget(gtids);
	if (newest->count == 0)
		return;
	for (int idx = 0; idx < newest->count; idx++)
		gtids->reached.gtids[idx] = newest->gtids[idx];
	/* Sorted by domain, one server each: sorted as a list. */
	gtids->reached.count = newest->count;
	gtids->known = BINLOG_GTIDS_NEWEST;
}

/*
 * binlog_gtids_from_text
 *		The exact list a range's gtid-list= carries.
 */
bool
binlog_gtids_from_text(BinlogGtids *gtids, const char *text, BkError *err)
{
	BkGtidList list;

	if (!bk_gtid_list_parse(text, &list, err))
		return false;
	gtids->reached = list;
	gtids->known = BINLOG_GTIDS_EXACT;
	return true;
}

/*
 * binlog_gtids_format
 *		The reached list as text.
 */
bool
binlog_gtids_format(const BinlogGtids *gtids, char *out, size_t out_len)
{
	return bk_gtid_list_format(&gtids->reached, out, out_len);
}

/*
 * assume_unknown_servers
 *		What was reached when only some servers' entries are known: in the
 *		domains known, the list's entries for the servers not known, then
 *		the known ones over them.  Compared with the list, only the known
 *		entries (and the domains not known at all) can differ.
 */
static bool
assume_unknown_servers(const BkGtidList *known, const BkGtidList *listed,
					   BkGtidList *assumed, BkError *err)
{
	assumed->count = 0;
	for (int idx = 0; idx < listed->count; idx++)
	{
		bool domain_known = false;

		for (int known_idx = 0; known_idx < known->count; known_idx++)
			domain_known |=
				known->gtids[known_idx].domain == listed->gtids[idx].domain;
		if (domain_known &&
			!bk_gtid_list_note(assumed, &listed->gtids[idx], err))
			return false;
	}
	for (int idx = 0; idx < known->count; idx++)
		if (!bk_gtid_list_note(assumed, &known->gtids[idx], err))
			return false;
	return true;
}

/*
 * binlog_gtids_event
 *		Note a GTID; check a GTID list, then take it as the base.
 */
bool
binlog_gtids_event(BinlogGtids *gtids, const uint8_t *event, size_t len,
				   bool *follows, char *differs, size_t differs_len,
				   BkError *err)
{
	BkBinlogEventHeader header;
	BkGtidList listed;

	*follows = true;
	if (differs_len > 0)
		differs[0] = '\0';
	if (!bk_binlog_header_parse(event, len, &header, err))
		return false;
	if (header.type == BK_BINLOG_FORMAT_DESCRIPTION_EVENT)
	{
		/* The file's first event, right after the magic. */
		gtids->list_due =
			header.next_pos == (uint64_t) BK_BINLOG_MAGIC_LEN + header.length;
		/*
		 * The one the server resends on a resume inside a file is not in
		 * it: the transaction the stream resumes in goes on.
		 */
		if (!gtids->list_due)
			return true;
		if (gtids->open && gtids->known != BINLOG_GTIDS_UNKNOWN)
			take_back_open(gtids);
		gtids->open = false;
		return true;
	}
	if (header.type == BK_BINLOG_START_ENCRYPTION_EVENT)
		return true; /* the list comes next */
	gtids->list_due = false;
	if (header.type == BK_BINLOG_GTID_EVENT)
	{
		BkGtid gtid;

		/* Unknown: the next list replaces whatever would be noted. */
		if (gtids->known == BINLOG_GTIDS_UNKNOWN)
			return true;
		if (!bk_binlog_gtid_read(event, len, &gtid, err))
			return false;
		gtids->open = true;
		gtids->open_gtid = gtid;
		gtids->open_had_prev = false;
		for (int idx = 0; idx < gtids->reached.count; idx++)
		{
			const BkGtid *have = &gtids->reached.gtids[idx];

			if (have->domain == gtid.domain && have->server == gtid.server)
			{
				gtids->open_had_prev = true;
				gtids->open_prev = *have;
				break;
			}
		}
		return bk_gtid_list_note(&gtids->reached, &gtid, err);
	}
	if (header.type != BK_BINLOG_GTID_LIST_EVENT)
		return true;

	if (!bk_gtid_list_read(&listed, event, len, err))
		return false;
	switch (gtids->known)
	{
		case BINLOG_GTIDS_UNKNOWN:
			break;
		case BINLOG_GTIDS_NEWEST:
		{
			BkGtidList assumed;

			if (!assume_unknown_servers(&gtids->reached, &listed, &assumed,
										err))
				return false;
			*follows =
				bk_gtid_list_follows(&assumed, &listed, differs, differs_len);
			break;
		}
		case BINLOG_GTIDS_EXACT:
			*follows = bk_gtid_list_follows(&gtids->reached, &listed, differs,
											differs_len);
			break;
	}
	gtids->reached = listed;
	gtids->known = BINLOG_GTIDS_EXACT;
	return true;
}

/*
 * binlog_gtids_follow_txn
 *		Where the transaction ends.  A format description starts a file
 *		only at offset 4; the one sent again when the stream resumes inside
 *		a file must not end the transaction it resumes in.  An event the
 *		follower cannot place leaves the transaction reached: at worst a
 *		gap said, never one hidden.
 */
void
binlog_gtids_follow_txn(BinlogGtids *gtids, BkBinlogTxn *txn,
						const uint8_t *event, size_t len, int checksum_alg)
{
	BkBinlogEventHeader header;
	BkError ignore;
	bool ended;

	if (!bk_binlog_header_parse(event, len, &header, &ignore))
		return;
	if (header.type == BK_BINLOG_FORMAT_DESCRIPTION_EVENT &&
		header.next_pos != (uint64_t) BK_BINLOG_MAGIC_LEN + header.length)
		return;
	if (!bk_binlog_txn_feed(txn, event, len, checksum_alg, &ended, &ignore))
	{
		memset(txn, 0, sizeof(*txn));
		binlog_gtids_txn_ended(gtids);
	}
	else if (ended)
		binlog_gtids_txn_ended(gtids);
}

/*
 * binlog_resume_check
 *		The server's answer at the archive's end, as binlog_gtids.h says.
 *		Only a NULL for a file still listed, or a state that differs, stops
 *		the archive; whatever else could be a passing failure is not turned
 *		into a refusal.
 */
BinlogResumeCheck
binlog_resume_check(const BkGtidState *reached, bool answered,
					const char *state, bool listed, BkError *why)
{
	BkGtidState server;

	if (!answered)
		return BINLOG_RESUME_UNCHECKED;
	if (state == NULL)
		return listed ? BINLOG_RESUME_UNPLACED : BINLOG_RESUME_RECHECK;
	if (!bk_gtid_state_parse(state, &server, why))
		return BINLOG_RESUME_UNCHECKED;
	return bk_gtid_state_follows(reached, &server) ? BINLOG_RESUME_FOLLOWS
												   : BINLOG_RESUME_DIFFERS;
}

/*
 * binlog_file_id_read
 *		The identity of the file a format description event opens.
 */
bool
binlog_file_id_read(const uint8_t *event, size_t len, BinlogFileId *id,
					BkError *err)
{
	BkBinlogEventHeader header;

	id->known = false;
	if (!bk_binlog_header_parse(event, len, &header, err))
		return false;
	if (header.type != BK_BINLOG_FORMAT_DESCRIPTION_EVENT)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"event type %u is not a format description",
							(unsigned) header.type);
	id->created = header.timestamp;
	id->server_id = header.server_id;
	id->known = true;
	return true;
}

/*
 * binlog_file_id_format
 *		"<created>:<server_id>".
 */
bool
binlog_file_id_format(const BinlogFileId *id, char *out, size_t out_len)
{
	int n;

	if (!id->known)
		return false;
	n = snprintf(out, out_len, "%" PRIu32 ":%" PRIu32, id->created,
				 id->server_id);
	return n > 0 && (size_t) n < out_len;
}

/*
 * parse_uint32
 *		A decimal number up to UINT32_MAX, digits only; *end after it.
 */
static bool
parse_uint32(const char *text, uint32_t *value, const char **end)
{
	uint64_t n = 0;
	const char *p = text;

	while (*p >= '0' && *p <= '9' && p - text < 11)
		n = n * 10 + (uint64_t) (*p++ - '0');
	if (p == text || p - text > 10 || n > UINT32_MAX)
		return false;
	*value = (uint32_t) n;
	*end = p;
	return true;
}

/*
 * binlog_file_id_parse
 *		binlog_file_id_format's text back.
 */
bool
binlog_file_id_parse(const char *text, BinlogFileId *id)
{
	const char *p;

	id->known = false;
	if (!parse_uint32(text, &id->created, &p) || *p != ':' ||
		!parse_uint32(p + 1, &id->server_id, &p) || *p != '\0')
		return false;
	id->known = true;
	return true;
}

/*
 * binlog_file_id_check
 *		The server's file at the archive's end, by its creation.
 */
BinlogResumeCheck
binlog_file_id_check(const BinlogFileId *archived, const BinlogFileId *server)
{
	if (!archived->known)
		return BINLOG_RESUME_UNCHECKED;
	if (!server->known || archived->created != server->created ||
		archived->server_id != server->server_id)
		return BINLOG_RESUME_DIFFERS;
	return BINLOG_RESUME_FOLLOWS;
}
