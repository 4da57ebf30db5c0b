/*
 * snapshot_meta.c
 *		The frame metadata of a MariaDB snapshot's objects.
 *
 * bk restore takes the snapshot's binlog coordinates and GTID state from
 * its record's metadata, so a field cut short there (the GTID state of a
 * server with many domains has no small bound) would restore a wrong GTID
 * state without a word.  Metadata is built whole or the object is not sent.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bk_frame.h"
#include "snapshot_meta.h"

bool
snapshot_object_meta(const char *id, const char *extra, char *out,
					 size_t out_len, BkError *err)
{
	int n = snprintf(out, out_len, "snapshot=%s\nengine=mariadb%s%s", id,
					 extra ? "\n" : "", extra ? extra : "");

	if (n < 0 || (size_t) n >= out_len || n > BK_FRAME_META_MAX)
	{
		if (out_len > 0)
			out[0] = '\0';
		return bk_error_set(err, BK_ERR_FORMAT,
							"the metadata of an object of snapshot %s would"
							" be %d bytes, more than the %d a frame carries",
							id, n, BK_FRAME_META_MAX);
	}
	return true;
}

bool
snapshot_record_meta(const char *id, const SnapshotRecordMeta *rec, char *out,
					 size_t out_len, BkError *err)
{
	char extra[BK_FRAME_META_MAX + 1];
	int n;

	/* The count first, the GTID state after the short fields. */
	n = snprintf(extra, sizeof(extra),
				 "type=record\nobjects=%" PRIu64 "\nbinlog-file=%s\n"
				 "binlog-pos=%" PRIu64 "\ngtid=%s\nstarted=%s\n"
				 "consistent-at=%s\nfinished=%s\ntables=%d\nrows=%" PRIu64,
				 rec->objects, rec->binlog_file, rec->binlog_pos, rec->gtid,
				 rec->started, rec->consistent_at, rec->finished, rec->tables,
				 rec->rows);
	if (n < 0 || (size_t) n >= sizeof(extra) ||
		!snapshot_object_meta(id, extra, out, out_len, err))
	{
		if (out_len > 0)
			out[0] = '\0';
		return bk_error_set(err, BK_ERR_FORMAT,
							"the record of snapshot %s cannot carry its GTID"
							" state (%zu bytes) in its metadata: with the"
							" other fields it passes the %d bytes a frame"
							" carries",
							id, strlen(rec->gtid), BK_FRAME_META_MAX) ||
			   bk_error_hint(err, "bk restores a server's GTID state from the"
								  " snapshot record's metadata: fewer"
								  " replication domains in @@gtid_binlog_pos"
								  " (old ones can be removed with FLUSH BINARY"
								  " LOGS DELETE_DOMAIN_ID) make it fit.");
	}
	return true;
}
