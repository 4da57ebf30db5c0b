/*
 * times.c
 *		Timestamps as DBAs write them and as bk prints them.  See times.h.
 */
#include "times.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

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

/*
 * The instant a wall-clock time without a zone names in the local time
 * zone.  mktime's guess is not used: around a daylight-saving change a time
 * may name two instants (the hour repeated in autumn) or none (the hour
 * skipped in spring), and glibc picks one of the two by the zone's history,
 * or moves a skipped time by an hour.  Both are refused, asking for a zone.
 */
static bool
local_seconds(const struct tm *wall, time_t *seconds, BkError *err)
{
	struct tm expected = *wall;
	time_t as_utc;
	time_t found[2];
	int count = 0;

	/* What the fields name once normalised (second 60 is the next minute). */
	as_utc = timegm(&expected);
	gmtime_r(&as_utc, &expected);
	for (int isdst = 0; isdst <= 1; isdst++)
	{
		struct tm guess = *wall;
		struct tm back;
		time_t t;

		guess.tm_isdst = isdst;
		t = mktime(&guess);
		if (t == (time_t) -1 || localtime_r(&t, &back) == NULL)
			continue;
		if (back.tm_isdst != isdst || back.tm_year != expected.tm_year ||
			back.tm_mon != expected.tm_mon ||
			back.tm_mday != expected.tm_mday ||
			back.tm_hour != expected.tm_hour ||
			back.tm_min != expected.tm_min || back.tm_sec != expected.tm_sec)
			continue;
		if (count == 0 || found[0] != t)
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
							"daylight-saving change skips it): give its "
							"zone, e.g. +01:00 or Z");
	return bk_error_set(err, BK_ERR_USAGE,
						"it names two times in the local time zone (a "
						"daylight-saving change repeats it): give its zone, "
						"e.g. +01:00 or +02:00");
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
