/*
 * restore_recovery.c
 *		Backup_label and a remapped tablespace_map, and the recovery settings:
 *		restore_command = bk wal-get, the target, the timeline, archiving off
 *		unless --archive.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk_util.h"

#include "restore.h"

/* ------------------------------------------------- recovery settings */

/* Quote for a POSIX shell: '...' with ' written '\''. */
static void
shell_quote(const char *arg, char *out, size_t out_len)
{
	size_t used = 0;
	bool plain = arg[0] != '\0';

	for (const char *p = arg; *p && plain; p++)
		plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
				(*p >= '0' && *p <= '9') || strchr("/._-=:+,@", *p) != NULL;
	if (plain)
	{
		bk_strlcpy(out, arg, out_len);
		return;
	}
	out[used++] = '\'';
	for (const char *p = arg; *p && used + 5 < out_len; p++)
	{
		if (*p == '\'')
		{
			memcpy(out + used, "'\\''", 4);
			used += 4;
		}
		else
			out[used++] = *p;
	}
	out[used++] = '\'';
	out[used] = '\0';
}

/* Append one argument of restore_command: shell-quoted, '%' doubled. */
static void
append_arg(char *command, size_t size, const char *arg)
{
	char quoted[RESTORE_PATH_MAX * 2];
	size_t used = strlen(command);

	shell_quote(arg, quoted, sizeof(quoted));
	if (used > 0 && used + 1 < size)
		command[used++] = ' ';
	for (const char *p = quoted; *p && used + 2 < size; p++)
	{
		if (*p == '%')
			command[used++] = '%';
		command[used++] = *p;
	}
	command[used] = '\0';
}

/* A PostgreSQL configuration string literal: '...' with ' and \ doubled. */
static void
conf_quote(const char *value, char *out, size_t out_len)
{
	size_t used = 0;

	out[used++] = '\'';
	for (const char *p = value; *p && used + 3 < out_len; p++)
	{
		if (*p == '\'' || *p == '\\')
			out[used++] = *p;
		out[used++] = *p;
	}
	out[used++] = '\'';
	out[used] = '\0';
}

static bool
absolute(const char *path, char *out, size_t out_len, BkError *err)
{
	if (realpath(path, out) == NULL)
		return bk_error_set(err, BK_ERR_CONFIG, "could not resolve \"%s\": %s",
							path, strerror(errno));
	(void) out_len;
	return true;
}

/*
 * A line break in restore_command would end its line of
 * postgresql.auto.conf: the server would not start, for a syntax error,
 * after a restore that said it succeeded.
 */
static bool
single_line(const char *what, const char *value, BkError *err)
{
	if (strpbrk(value, "\n\r") == NULL)
		return true;
	bk_error_set(err, BK_ERR_USAGE,
				 "%s \"%s\" holds a line break, which restore_command "
				 "cannot hold in postgresql.auto.conf",
				 what, value);
	return bk_error_hint(err, "Give a path without one (a symbolic link "
							  "named without one will do).");
}

/*
 * restore_self_path
 *		This bk program's path, from link (what /proc/self/exe reads).
 *
 * Linux appends " (deleted)" to that link once the file was unlinked: a
 * "make install" or a package upgrade replaces the binary while a restore
 * runs.  restore_command must name the path, where the bk now installed
 * is, not that suffix: the recovery of the restored cluster failed with
 * "sh: 1: /usr/local/bin/bk (deleted): not found".  A path that exists as
 * read is taken as it is (a file whose name ends so).
 */
bool
restore_self_path(const char *link, char *out, size_t out_len, BkError *err)
{
	static const char deleted[] = " (deleted)";
	size_t len = strlen(link);
	struct stat st;

	if (len >= out_len)
		return bk_error_set(err, BK_ERR_IO,
							"the path of this bk program is too long");
	memcpy(out, link, len + 1);
	if (stat(out, &st) == 0 || len <= sizeof(deleted) - 1 ||
		strcmp(out + len - (sizeof(deleted) - 1), deleted) != 0)
		return true;
	out[len - (sizeof(deleted) - 1)] = '\0';
	if (stat(out, &st) != 0 || !S_ISREG(st.st_mode))
	{
		bk_error_set(err, BK_ERR_IO,
					 "this bk program, \"%s\", was removed while it ran, "
					 "and restore_command must name a bk that exists",
					 out);
		return bk_error_hint(err, "Install bk again, then run the restore "
								  "again.");
	}
	return true;
}

/*
 * restore_command = bk wal-get with this run's options, paths made
 * absolute (the server runs it from the data directory).  Built before
 * anything is written, so that a failure here leaves no half-restored
 * directory behind.
 */
bool
restore_build_restore_command(Restore *r, BkError *err)
{
	char link[RESTORE_PATH_MAX];
	char self[RESTORE_PATH_MAX];
	char path[RESTORE_PATH_MAX];
	char number[16];
	ssize_t len = readlink("/proc/self/exe", link, sizeof(link) - 1);
	char *command = r->restore_command;
	size_t size = sizeof(r->restore_command);

	if (len <= 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not find the path of this bk program: %s",
							strerror(errno));
	link[len] = '\0';
	if (!restore_self_path(link, self, sizeof(self), err) ||
		!single_line("this bk program's path", self, err))
		return false;
	command[0] = '\0';
	append_arg(command, size, self);
	append_arg(command, size, "wal-get");
	if (r->config.config_path != NULL)
	{
		if (!absolute(r->config.config_path, path, sizeof(path), err) ||
			!single_line("the configuration file", path, err))
			return false;
		append_arg(command, size, "--config");
		append_arg(command, size, path);
	}
	append_arg(command, size, "--source");
	append_arg(command, size, r->source);
	if (r->common.repository != NULL)
	{
		/* An object store's location is no path: it goes as given. */
		if (bk_repo_location_is_s3(r->common.repository))
			bk_strlcpy(path, r->common.repository, sizeof(path));
		else if (!absolute(r->common.repository, path, sizeof(path), err))
			return false;
		if (!single_line("--repo", path, err))
			return false;
		append_arg(command, size, "--repo");
		append_arg(command, size, path);
	}
	if (r->common.key_file != NULL)
	{
		if (!absolute(r->common.key_file, path, sizeof(path), err) ||
			!single_line("--key-file", path, err))
			return false;
		append_arg(command, size, "--key-file");
		append_arg(command, size, path);
	}
	if (r->prefetch > 0)
	{
		snprintf(number, sizeof(number), "%d", r->prefetch);
		append_arg(command, size, "--prefetch");
		append_arg(command, size, number);
	}
	if (strlen(command) + 8 >= size)
		return bk_error_set(err, BK_ERR_USAGE, "restore_command too long");
	strcat(command, " %f %p");
	return true;
}

static const char *const managed_settings[] = {"restore_command",
											   "recovery_target",
											   "recovery_target_time",
											   "recovery_target_lsn",
											   "recovery_target_xid",
											   "recovery_target_name",
											   "recovery_target_timeline",
											   "recovery_target_action",
											   "recovery_target_inclusive",
											   "recovery_min_apply_delay",
											   "recovery_prefetch",
											   "archive_mode",
											   NULL};

/*
 * The recovery targets, each written: empty but the one chosen.  The
 * restored postgresql.conf (or a file it includes) may hold one from an
 * earlier point-in-time recovery of the source, which PostgreSQL ignores
 * once out of recovery; postgresql.auto.conf is read last, so an empty value
 * here cancels it, where leaving the key out would let recovery stop at that
 * old target (or refuse to start, two targets being set).  The empty ones
 * come first: PostgreSQL refuses a second target once one is set, even an
 * empty one.
 */
static const char *const target_settings[] = {
	"recovery_target",     "recovery_target_time", "recovery_target_lsn",
	"recovery_target_xid", "recovery_target_name", NULL};

static bool
managed_line(const char *line, size_t len)
{
	size_t key_len;

	while (len > 0 && (*line == ' ' || *line == '\t'))
	{
		line++;
		len--;
	}
	for (key_len = 0; key_len < len && line[key_len] != '=' &&
					  line[key_len] != ' ' && line[key_len] != '\t';
		 key_len++)
		;
	for (int keyIdx = 0; managed_settings[keyIdx] != NULL; keyIdx++)
		if (strlen(managed_settings[keyIdx]) == key_len &&
			strncasecmp(line, managed_settings[keyIdx], key_len) == 0)
			return true;
	return false;
}

static void
add_setting(Restore *r, char *text, size_t size, const char *key,
			const char *value)
{
	char quoted[sizeof(r->restore_command) * 2 + 8];
	size_t used = strlen(text);

	conf_quote(value, quoted, sizeof(quoted));
	snprintf(text + used, size - used, "%s = %s\n", key, quoted);
	json_object_set_new(r->settings, key, json_string(value));
}

/*
 * postgresql.auto.conf: our keys replaced, everything else kept; the
 * restore_command restore_build_restore_command built.
 */
bool
restore_write_recovery_settings(Restore *r, BkError *err)
{
	char path[RESTORE_PATH_MAX];
	char *old_text = NULL;
	size_t old_len = 0;
	size_t size;
	char *text;
	const char *line;
	char timeline[16];
	char xid[24];
	const char *target_key = NULL;
	const char *target_value = NULL;

	if (!restore_join_path(path, sizeof(path), r->pgdata,
						   "postgresql.auto.conf", err))
		return false;
	if (!bk_read_file(path, 16 * 1024 * 1024, &old_text, &old_len, NULL))
		old_text = NULL;
	size = old_len + 4 * sizeof(r->restore_command) + 4096;
	text = calloc(1, size);
	if (text == NULL)
	{
		free(old_text);
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	for (line = old_text; line != NULL && *line != '\0';)
	{
		const char *newline = strchr(line, '\n');
		size_t len = newline ? (size_t) (newline - line) + 1 : strlen(line);

		if (!managed_line(line, len))
			strncat(text, line, len);
		line += len;
	}
	free(old_text);
	if (text[0] != '\0' && text[strlen(text) - 1] != '\n')
		strcat(text, "\n");
	strcat(text, "# Recovery settings written by bk restore\n");
	r->settings = json_object();
	add_setting(r, text, size, "restore_command", r->restore_command);
	switch (r->target.type)
	{
		case BK_PG_TARGET_TIME:
			target_key = "recovery_target_time";
			target_value = r->target.time_text;
			break;
		case BK_PG_TARGET_LSN:
			target_key = "recovery_target_lsn";
			target_value = r->target.text;
			break;
		case BK_PG_TARGET_XID:
			/*
			 * As bk read it (decimal): PostgreSQL reads the text in base 0,
			 * so "01366" would be an octal xid to it.
			 */
			snprintf(xid, sizeof(xid), "%" PRIu64, r->target.xid);
			target_key = "recovery_target_xid";
			target_value = xid;
			break;
		case BK_PG_TARGET_NAME:
			target_key = "recovery_target_name";
			target_value = r->target.text;
			break;
		case BK_PG_TARGET_IMMEDIATE:
			target_key = "recovery_target";
			target_value = "immediate";
			break;
		case BK_PG_TARGET_NONE:
			break;
	}
	for (int keyIdx = 0; target_settings[keyIdx] != NULL; keyIdx++)
		if (target_key == NULL || strcmp(target_settings[keyIdx], target_key))
			add_setting(r, text, size, target_settings[keyIdx], "");
	if (target_key != NULL)
		add_setting(r, text, size, target_key, target_value);
	/* bk's targets are inclusive; a delay would hold recent commits back. */
	add_setting(r, text, size, "recovery_target_inclusive", "on");
	add_setting(r, text, size, "recovery_min_apply_delay", "0");
	/*
	 * Prefetching decodes WAL ahead of replay, up to wal_decode_buffer_size:
	 * past a stop record close to the gap it asks for the missing file,
	 * which bk wal-get makes fatal.  Off, recovery reads only what it
	 * replays.
	 */
	if (r->no_prefetch)
		add_setting(r, text, size, "recovery_prefetch", "off");
	/*
	 * The timeline whose WAL path restore_check_wal_path checked, by its
	 * id: 'latest' would leave PostgreSQL to find it by probing history
	 * files upwards from the snapshot's timeline and stopping at the first
	 * one missing, so a timeline id that was never archived (or a history
	 * file lost) would make it recover an older timeline than the one
	 * checked and promote.  With a number it reads only that timeline's
	 * history, which lists its ancestors.
	 */
	if (r->recovery_timeline != 0)
		snprintf(timeline, sizeof(timeline), "%" PRIu32, r->recovery_timeline);
	else
		bk_strlcpy(timeline, r->target_timeline, sizeof(timeline));
	add_setting(r, text, size, "recovery_target_timeline", timeline);
	if (r->target.type != BK_PG_TARGET_NONE)
		add_setting(r, text, size, "recovery_target_action", "promote");
	if (!r->archive)
		add_setting(r, text, size, "archive_mode", "off");
	if (!restore_write_text_file(r, path, text, err))
	{
		free(text);
		return false;
	}
	free(text);
	if (!restore_join_path(path, sizeof(path), r->pgdata, "recovery.signal",
						   err) ||
		!restore_write_text_file(r, path, "", err))
		return false;
	return true;
}

/* backup_label as the snapshot took it, tablespace_map remapped. */
bool
restore_write_label_and_map(Restore *r, BkError *err)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	char path[RESTORE_PATH_MAX];
	char *map;
	size_t used = 0;
	size_t map_size = 64;

	snprintf(name, sizeof(name), "%s/%s", r->record->id, BK_SNAPSHOT_LABEL);
	if (!restore_join_path(path, sizeof(path), r->pgdata, "backup_label", err))
		return false;
	if (!bk_repo_decrypt_to_file(r->repo, BK_REPO_ARCHIVE, r->source,
								 BK_KIND_SNAPSHOT, name, r->decoder, path, NULL,
								 err))
		return bk_error_prefix(err,
							   "snapshot %s, backup_label: ", r->record->id);
	if (!restore_chmod_file(path, 0600, err))
		return false;
	if (r->tablespace_count == 0)
		return true;
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
		map_size += 2 * strlen(r->tablespaces[spcIdx].location) + 16;
	map = malloc(map_size);
	if (map == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		used += (size_t) snprintf(map + used, map_size - used, "%" PRIu32 " ",
								  r->tablespaces[spcIdx].oid);
		for (const char *p = r->tablespaces[spcIdx].location; *p; p++)
		{
			if (*p == '\n' || *p == '\r' || *p == '\\')
				map[used++] = '\\';
			map[used++] = *p;
		}
		map[used++] = '\n';
	}
	map[used] = '\0';
	if (!restore_join_path(path, sizeof(path), r->pgdata, "tablespace_map",
						   err) ||
		!restore_write_text_file(r, path, map, err))
	{
		free(map);
		return false;
	}
	free(map);
	return true;
}
