/*
 * snapshot_meta.h
 *		The frame metadata of a MariaDB snapshot's objects
 *		(docs/mariadb-snapshot-format.md), checked against the frame's
 *		limit instead of cut.
 */
#ifndef BK_AGENT_SNAPSHOT_META_H
#define BK_AGENT_SNAPSHOT_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bk_error.h"

/* What the record's metadata says, for bk list and bk restore without it. */
typedef struct SnapshotRecordMeta
{
	uint64_t objects; /* data objects: the snapshot is complete with all */
	const char *binlog_file;
	uint64_t binlog_pos;
	const char *gtid; /* GTID state at the binlog position */
	const char *started;
	const char *consistent_at; /* the consistent point's wall time */
	const char *finished;
	int tables;
	uint64_t rows;
} SnapshotRecordMeta;

/*
 * "snapshot=<id>\nengine=mariadb", then extra's lines (extra may be
 * NULL), into out; fails (BK_ERR_FORMAT) when the whole is longer than a
 * frame's metadata may be (BK_FRAME_META_MAX) or than out holds.
 */
extern bool snapshot_object_meta(const char *id, const char *extra, char *out,
								 size_t out_len, BkError *err);

/* The record's metadata, whole or not at all, as snapshot_object_meta. */
extern bool snapshot_record_meta(const char *id, const SnapshotRecordMeta *rec,
								 char *out, size_t out_len, BkError *err);

#endif /* BK_AGENT_SNAPSHOT_META_H */
