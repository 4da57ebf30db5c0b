/*
 * times.h
 *		Timestamps as DBAs write them (restore targets) and as bk prints
 *		them, for every engine.
 */
#ifndef BK_TIMES_H
#define BK_TIMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bk_error.h"

/* A time that is not known: microseconds since the epoch otherwise. */
#define BK_TIME_UNKNOWN        INT64_MIN
#define BK_TIMESTAMP_TEXT_SIZE 40

/*
 * A timestamp as ISO 8601 or PostgreSQL writes it: "2026-11-24T05:12:00Z",
 * "2026-11-24 05:12:00.123456+00", "2026-11-24 05:12:00 UTC",
 * "2026-11-24 06:12:00+01:00".  Without a zone it is local time.  Checked
 * as PostgreSQL's timestamptz input checks it: real dates (no February 30),
 * zones within 15:59 written whole (+HH, +HHMM, +HH:MM).  At most 6
 * fractional digits that are not 0: PostgreSQL keeps microseconds, and a
 * finer time rounded or cut would be another target than the one written.
 * Microseconds since the epoch.
 */
extern bool bk_parse_timestamp(const char *text, int64_t *us);

/* The same, taking a time without a zone as UTC when default_utc. */
extern bool bk_parse_timestamp_zone(const char *text, bool default_utc,
									int64_t *us);

/*
 * The same, with err (BK_ERR_USAGE; may be NULL) saying what in text is not
 * a timestamp ("its zone \"+05:\" is not ...") for a message that names the
 * option and the text.
 */
extern bool bk_timestamp_parse(const char *text, bool default_utc, int64_t *us,
							   BkError *err);

/* "2026-11-24T05:12:00.123456Z" */
extern void bk_format_timestamp(int64_t us, char *out, size_t out_len);

/*
 * The start time a snapshot id leads with ("YYYYMMDDTHHMMSSZ-...", whole
 * seconds, UTC) in microseconds; false if id does not.  For a snapshot
 * whose record cannot be read, the only time known of it.
 */
extern bool bk_snapshot_id_start(const char *id, int64_t *us);

#endif /* BK_TIMES_H */
