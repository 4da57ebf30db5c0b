/*
 * bk_timeline.c
 *		LSNs and timeline histories.  See bk_timeline.h.
 */
#include "bk_timeline.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bk_frame.h"

/* Up to 8 hex digits at *p; advances *p.  False if there are none or more. */
static bool
parse_hex32(const char **p, uint32_t *value)
{
	int digits = 0;

	*value = 0;
	while (isxdigit((unsigned char) **p))
	{
		int c = tolower((unsigned char) **p);

		if (++digits > 8)
			return false;
		*value =
			(*value << 4) | (uint32_t) (isdigit(c) ? c - '0' : c - 'a' + 10);
		(*p)++;
	}
	return digits > 0;
}

/* An LSN at *p, advancing *p past it. */
static bool
parse_lsn_at(const char **p, uint64_t *lsn)
{
	uint32_t hi;
	uint32_t lo;

	if (!parse_hex32(p, &hi) || **p != '/')
		return false;
	(*p)++;
	if (!parse_hex32(p, &lo))
		return false;
	*lsn = ((uint64_t) hi << 32) | lo;
	return true;
}

bool
bk_parse_lsn(const char *text, uint64_t *lsn)
{
	const char *p = text;

	return text != NULL && parse_lsn_at(&p, lsn) && *p == '\0';
}

void
bk_format_lsn(uint64_t lsn, char *out, size_t out_len)
{
	snprintf(out, out_len, "%X/%X", (unsigned) (lsn >> 32), (unsigned) lsn);
}

/* A decimal timeline id at *p (1 .. 2^32-1), advancing *p. */
static bool
parse_timeline_at(const char **p, uint32_t *timeline)
{
	uint64_t value = 0;
	int digits = 0;

	while (isdigit((unsigned char) **p))
	{
		value = value * 10 + (uint64_t) (**p - '0');
		if (++digits > 10 || value > UINT32_MAX)
			return false;
		(*p)++;
	}
	*timeline = (uint32_t) value;
	return digits > 0 && value > 0;
}

/* Add one branch, checking the order PostgreSQL requires. */
static bool
add_branch(BkTimelineBranch **branches, int *count, uint32_t timeline,
		   uint64_t end_lsn, uint32_t child, int line_no, BkError *err)
{
	BkTimelineBranch *grown;

	if (*count > 0 && timeline <= (*branches)[*count - 1].timeline)
		return bk_error_set(err, BK_ERR_FORMAT,
							"history of timeline %" PRIu32 ", entry %d: "
							"timeline %" PRIu32 " does not follow %" PRIu32,
							child, line_no, timeline,
							(*branches)[*count - 1].timeline);
	if (*count > 0 && end_lsn < (*branches)[*count - 1].end_lsn)
		return bk_error_set(err, BK_ERR_FORMAT,
							"history of timeline %" PRIu32 ", entry %d: "
							"branch points go backwards",
							child, line_no);
	if (timeline >= child)
		return bk_error_set(err, BK_ERR_FORMAT,
							"history of timeline %" PRIu32 ", entry %d: "
							"ancestor %" PRIu32 " is not older than it",
							child, line_no, timeline);
	if (*count >= BK_TIMELINE_BRANCHES_MAX)
		return bk_error_set(err, BK_ERR_FORMAT,
							"history of timeline %" PRIu32
							" has more than %d entries",
							child, BK_TIMELINE_BRANCHES_MAX);
	grown = realloc(*branches, (size_t) (*count + 1) * sizeof(*grown));
	if (grown == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	*branches = grown;
	grown[*count].timeline = timeline;
	grown[*count].end_lsn = end_lsn;
	(*count)++;
	return true;
}

bool
bk_timeline_history_parse(const char *text, size_t len, uint32_t timeline,
						  BkTimelineBranch **branches, int *count, BkError *err)
{
	size_t pos = 0;
	int line_no = 0;

	*branches = NULL;
	*count = 0;
	while (pos < len)
	{
		const char *line = text + pos;
		const char *end = memchr(line, '\n', len - pos);
		size_t line_len = end ? (size_t) (end - line) : len - pos;
		char buf[256];
		const char *p = buf;
		uint32_t parent;
		uint64_t switchpoint;

		pos += line_len + 1;
		line_no++;
		if (memchr(line, '\0', line_len) != NULL)
			goto bad;
		/* Only the first two fields matter; a long reason is cut. */
		snprintf(buf, sizeof(buf), "%.*s", (int) line_len, line);
		while (isspace((unsigned char) *p))
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		if (!parse_timeline_at(&p, &parent) || (*p != '\t' && *p != ' '))
			goto bad;
		while (*p == '\t' || *p == ' ')
			p++;
		if (!parse_lsn_at(&p, &switchpoint) ||
			(*p != '\0' && !isspace((unsigned char) *p)))
			goto bad;
		if (!add_branch(branches, count, parent, switchpoint, timeline, line_no,
						err))
			goto fail;
	}
	return true;

bad:
	bk_error_set(err, BK_ERR_FORMAT,
				 "history of timeline %" PRIu32 ", line %d: expected "
				 "\"timeline<TAB>LSN<TAB>reason\"",
				 timeline, line_no);
fail:
	free(*branches);
	*branches = NULL;
	*count = 0;
	return false;
}

bool
bk_branch_points_format(const BkTimelineBranch *branches, int count, char *out,
						size_t out_len)
{
	size_t used = 0;

	if (out_len == 0)
		return false;
	out[0] = '\0';
	for (int branchIdx = 0; branchIdx < count; branchIdx++)
	{
		int n = snprintf(out + used, out_len - used, "%s%" PRIu32 ":%X/%X",
						 branchIdx ? "," : "", branches[branchIdx].timeline,
						 (unsigned) (branches[branchIdx].end_lsn >> 32),
						 (unsigned) branches[branchIdx].end_lsn);

		if (n < 0 || (size_t) n >= out_len - used)
			return false;
		used += (size_t) n;
	}
	return true;
}

bool
bk_branch_points_parse(const char *text, uint32_t timeline,
					   BkTimelineBranch **branches, int *count, BkError *err)
{
	const char *p = text;
	int entry = 0;

	*branches = NULL;
	*count = 0;
	while (*p != '\0')
	{
		uint32_t parent;
		uint64_t end_lsn;

		entry++;
		if (!parse_timeline_at(&p, &parent) || *p != ':')
			goto bad;
		p++;
		if (!parse_lsn_at(&p, &end_lsn) || (*p != ',' && *p != '\0'))
			goto bad;
		if (*p == ',' && *++p == '\0')
			goto bad; /* a trailing comma */
		if (!add_branch(branches, count, parent, end_lsn, timeline, entry, err))
			goto fail;
	}
	return true;

bad:
	bk_error_set(err, BK_ERR_FORMAT,
				 "branch points of timeline %" PRIu32
				 ", entry %d: expected \"timeline:LSN\"",
				 timeline, entry);
fail:
	free(*branches);
	*branches = NULL;
	*count = 0;
	return false;
}

void
bk_branch_points_meta(const BkTimelineBranch *branches, int count,
					  size_t other_len, char *out, size_t out_len)
{
	size_t line_len = strlen("branch-points=\n");

	if (!bk_branch_points_format(branches, count, out, out_len) ||
		other_len + line_len + strlen(out) > BK_FRAME_META_MAX)
		out[0] = '\0';
}

bool
bk_timeline_history_rebuild(const char *text, size_t len, uint32_t descendant,
							uint32_t timeline, char **out, size_t *out_len,
							BkError *err)
{
	BkTimelineBranch *branches;
	int count;
	bool listed = false;
	size_t pos = 0;
	size_t used = 0;

	/* The same strict reading as the catalog's: no guessing on bad input. */
	if (!bk_timeline_history_parse(text, len, descendant, &branches, &count,
								   err))
		return false;
	for (int branchIdx = 0; branchIdx < count; branchIdx++)
		listed |= branches[branchIdx].timeline == timeline;
	free(branches);
	if (!listed)
		return bk_error_set(err, BK_ERR_FORMAT,
							"the history of timeline %" PRIu32
							" does not list timeline %" PRIu32
							" as an ancestor",
							descendant, timeline);
	*out = malloc(len + 2); /* a last line may need its newline */
	if (*out == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	/* Parsed above, so every line that is not blank or '#' is an entry. */
	while (pos < len)
	{
		const char *line = text + pos;
		const char *end = memchr(line, '\n', len - pos);
		size_t line_len = end ? (size_t) (end - line) : len - pos;
		const char *p = line;
		uint32_t parent = 0;

		pos += line_len + 1;
		while (p < line + line_len && isspace((unsigned char) *p))
			p++;
		if (p == line + line_len || *p == '#')
			continue;
		while (isdigit((unsigned char) *p))
			parent = parent * 10 + (uint32_t) (*p++ - '0');
		if (parent >= timeline)
			break; /* entries ascend: the rest is the descendant's own */
		memcpy(*out + used, line, line_len);
		used += line_len;
		(*out)[used++] = '\n';
	}
	(*out)[used] = '\0';
	*out_len = used;
	return true;
}
