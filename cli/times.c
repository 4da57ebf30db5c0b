/*
 * times.c
 *		Timestamps as DBAs write them and as bk prints them.  See times.h.
 */
#include "times.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static bool
parse_digits(const char **p, int count, int *value)
{
	*value = 0;
	for (int digitIdx = 0; digitIdx < count; digitIdx++)
	{
		if (**p < '0' || **p > '9')
			return false;
		*value = *value * 10 + (**p - '0');
		(*p)++;
	}
	return true;
}

static int
days_in_month(int year, int month)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return month == 2 && leap ? 29 : days[month - 1];
}

/* "+HH:MM" for a UTC offset in seconds. */
static void
format_offset(long offset, char *out, size_t out_len)
{
	long minutes = (offset < 0 ? -offset : offset) / 60;

	snprintf(out, out_len, "%c%02ld:%02ld", offset < 0 ? '-' : '+',
			 minutes / 60, minutes % 60);
}

/*
 * Is the local time zone one this system knows?  A TZ naming no zone
 * ("Europe/Pairs") makes glibc use UTC without a word, and a target time
 * without a zone would silently name another instant than the one meant.
 * Unset or empty, TZ is the system's zone or UTC, as documented; a zone
 * file must exist; a POSIX rule ("EST5EDT", "<+03>-3") carries its offset
 * in digits.
 */
static bool
local_zone_known(BkError *err)
{
	const char *tz = getenv("TZ");
	const char *name;
	const char *tzdir = getenv("TZDIR");
	char path[4096];
	struct stat st;

	if (tz == NULL || tz[0] == '\0')
		return true;
	name = tz[0] == ':' ? tz + 1 : tz;
	if (strcmp(name, "UTC") == 0 || strcmp(name, "GMT") == 0)
		return true;
	if (tzdir == NULL || tzdir[0] == '\0')
		tzdir = "/usr/share/zoneinfo";
	if (name[0] == '/')
		snprintf(path, sizeof(path), "%s", name);
	else
		snprintf(path, sizeof(path), "%s/%s", tzdir, name);
	/* A directory ("Europe") is no zone file: glibc takes UTC there too. */
	if (name[0] != '\0' && strstr(name, "..") == NULL && stat(path, &st) == 0 &&
		S_ISREG(st.st_mode) && access(path, R_OK) == 0)
		return true;
	if (tz[0] != ':' && strpbrk(name, "0123456789") != NULL)
		return true;
	return bk_error_set(err, BK_ERR_USAGE,
						"it has no zone, and the local one, TZ=\"%s\", is no "
						"time zone this system knows (no \"%s\"): the time "
						"would be taken as UTC; give its zone, or fix TZ",
						tz, path);
}

/*
 * The instant a wall-clock time without a zone names in the local time
 * zone.  mktime's guess is not used: where the zone's offset changes (a
 * daylight-saving change, or a new standard offset) a time may name two
 * instants (the hour repeated) or none (the hour skipped), and glibc picks
 * one of the two by the zone's history, or moves a skipped time.  So each
 * offset the zone has within a day either side is tried, and a time that
 * comes back as written under more than one, or under none, is refused,
 * asking for the zone.
 */
static bool
local_seconds(const struct tm *wall, time_t *seconds, BkError *err)
{
	struct tm expected = *wall;
	time_t as_utc;
	long offsets[3];
	int offset_count = 0;
	time_t found[3];
	long found_offset[3];
	int count = 0;
	char first[16];
	char second[16];

	if (!local_zone_known(err))
		return false;
	/* What the fields name once normalised (second 60 is the next minute). */
	as_utc = timegm(&expected);
	gmtime_r(&as_utc, &expected);
	for (int day = -1; day <= 1; day++)
	{
		time_t t = as_utc + day * 86400;
		struct tm local;
		bool known = false;

		if (localtime_r(&t, &local) == NULL)
			continue;
		for (int offIdx = 0; offIdx < offset_count; offIdx++)
			known |= offsets[offIdx] == local.tm_gmtoff;
		if (!known)
			offsets[offset_count++] = local.tm_gmtoff;
	}
	for (int offIdx = 0; offIdx < offset_count; offIdx++)
	{
		time_t t = as_utc - offsets[offIdx];
		struct tm back;

		if (localtime_r(&t, &back) == NULL ||
			back.tm_gmtoff != offsets[offIdx] ||
			back.tm_year != expected.tm_year ||
			back.tm_mon != expected.tm_mon ||
			back.tm_mday != expected.tm_mday ||
			back.tm_hour != expected.tm_hour ||
			back.tm_min != expected.tm_min || back.tm_sec != expected.tm_sec)
			continue;
		found_offset[count] = offsets[offIdx];
		found[count++] = t;
	}
	if (count == 1)
	{
		*seconds = found[0];
		return true;
	}
	if (count == 0)
		return bk_error_set(err, BK_ERR_USAGE,
							"it names no time in the local time zone (a "
							"change of its UTC offset skips it): give its "
							"zone");
	format_offset(found_offset[0], first, sizeof(first));
	format_offset(found_offset[1], second, sizeof(second));
	return bk_error_set(err, BK_ERR_USAGE,
						"it names two times in the local time zone (a "
						"change of its UTC offset repeats it), at %s and at "
						"%s: give its zone",
						first, second);
}

bool
bk_parse_timestamp(const char *text, int64_t *us)
{
	return bk_timestamp_parse(text, false, us, NULL);
}

bool
bk_parse_timestamp_zone(const char *text, bool default_utc, int64_t *us)
{
	return bk_timestamp_parse(text, default_utc, us, NULL);
}

bool
bk_timestamp_parse(const char *text, bool default_utc, int64_t *us,
				   BkError *err)
{
	const char *p = text;
	const char *zone;
	struct tm tm = {0};
	int year;
	int month;
	int day;
	int hour;
	int minute;
	int second = 0;
	int64_t fraction_us = 0;
	bool has_zone = false;
	int64_t offset_s = 0;
	time_t seconds = 0;

	if (text == NULL || !parse_digits(&p, 4, &year) || *p++ != '-' ||
		!parse_digits(&p, 2, &month) || *p++ != '-' ||
		!parse_digits(&p, 2, &day) || (*p != 'T' && *p != ' '))
		return bk_error_set(err, BK_ERR_USAGE,
							"it does not start with a date, YYYY-MM-DD, and"
							" \"T\" or a space");
	p++;
	if (!parse_digits(&p, 2, &hour) || *p++ != ':' ||
		!parse_digits(&p, 2, &minute))
		return bk_error_set(err, BK_ERR_USAGE,
							"its time of day is not HH:MM[:SS[.FFFFFF]]");
	if (*p == ':')
	{
		p++;
		if (!parse_digits(&p, 2, &second))
			return bk_error_set(err, BK_ERR_USAGE,
								"its seconds are not two digits");
		if (*p == '.')
		{
			const char *digits = ++p;
			int64_t scale = 100000;

			if (*p < '0' || *p > '9')
				return bk_error_set(err, BK_ERR_USAGE,
									"no digit follows its decimal point");
			for (; *p >= '0' && *p <= '9'; p++)
			{
				/*
				 * PostgreSQL keeps microseconds (as do commit times) and
				 * rounds finer digits: .1234567 is .123457, after the time
				 * written, and a commit at .123457 would be replayed though
				 * it came later; cut to .123456 it would not be what
				 * PostgreSQL makes of the same text.  So digits after the
				 * sixth may only be zeros, which change nothing.
				 */
				if (p - digits >= 6 && *p != '0')
					return bk_error_set(
						err, BK_ERR_USAGE,
						"it has more than 6 fractional digits (\"%.*s\"):"
						" PostgreSQL keeps microseconds, so give 6 at most",
						(int) strspn(digits, "0123456789"), digits);
				fraction_us += (*p - '0') * scale;
				scale /= 10;
			}
		}
	}
	while (*p == ' ')
		p++;
	zone = p;
	if ((*p == 'Z' && p[1] == '\0') || strcmp(p, "UTC") == 0 ||
		strcmp(p, "GMT") == 0)
		has_zone = true;
	else if (*p == '+' || *p == '-')
	{
		int sign = *p == '-' ? -1 : 1;
		int zone_hours;
		int zone_minutes = 0;
		bool zone_whole;

		/*
		 * +HH, +HHMM or +HH:MM, all of it: "+05:" (minutes cut off) is not
		 * guessed to mean +05:00.
		 */
		p++;
		zone_whole = parse_digits(&p, 2, &zone_hours);
		if (zone_whole && *p == ':')
		{
			p++;
			zone_whole = parse_digits(&p, 2, &zone_minutes);
		}
		else if (zone_whole && *p != '\0')
			zone_whole = parse_digits(&p, 2, &zone_minutes);
		if (!zone_whole || *p != '\0')
			return bk_error_set(err, BK_ERR_USAGE,
								"its zone \"%s\" is not Z, UTC, GMT, +HH, "
								"+HHMM or +HH:MM (or - for west of UTC)",
								zone);
		if (zone_hours > 15 || zone_minutes > 59)
			return bk_error_set(err, BK_ERR_USAGE,
								"its zone \"%s\" is beyond 15:59 hours"
								" from UTC",
								zone);
		has_zone = true;
		offset_s = sign * (zone_hours * 3600 + zone_minutes * 60);
	}
	else if (*p != '\0')
		return bk_error_set(err, BK_ERR_USAGE,
							"its zone \"%s\" is not Z, UTC, GMT, +HH, +HHMM"
							" or +HH:MM (or - for west of UTC)",
							zone);
	/* As PostgreSQL's timestamptz input: real dates, zones within 15:59. */
	if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month))
		return bk_error_set(err, BK_ERR_USAGE, "%04d-%02d-%02d is not a date",
							year, month, day);
	if (hour > 23 || minute > 59 || second > 60)
		return bk_error_set(err, BK_ERR_USAGE,
							"%02d:%02d:%02d is not a time of day", hour, minute,
							second);
	tm.tm_year = year - 1900;
	tm.tm_mon = month - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = minute;
	tm.tm_sec = second;
	if (has_zone || default_utc)
		seconds = timegm(&tm) - (time_t) offset_s;
	else if (!local_seconds(&tm, &seconds, err))
		return false;
	*us = (int64_t) seconds * 1000000 + fraction_us;
	return true;
}

void
bk_format_timestamp(int64_t us, char *out, size_t out_len)
{
	time_t seconds =
		(time_t) (us >= 0 ? us / 1000000 : (us - 999999) / 1000000);
	int64_t fraction = us - (int64_t) seconds * 1000000;
	struct tm tm;

	gmtime_r(&seconds, &tm);
	snprintf(out, out_len, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			 tm.tm_min, tm.tm_sec, (int) fraction);
}

bool
bk_snapshot_id_start(const char *id, int64_t *us)
{
	struct tm tm = {0};
	char zulu;

	if (sscanf(id, "%4d%2d%2dT%2d%2d%2d%c", &tm.tm_year, &tm.tm_mon,
			   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &zulu) != 7 ||
		zulu != 'Z')
		return false;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*us = (int64_t) timegm(&tm) * 1000000;
	return true;
}
