/*
 * restore_target.c
 *		The target directory and its tablespaces, made ready: no server
 *		running, empty unless --delta, the directory tree the snapshot had,
 *		and (with --delta) what it does not have removed.
 */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "bk_util.h"

#include "restore.h"

/* ------------------------------------------------------------ preparing */

/* Parse a tablespace_map ("<oid> <path>" lines, '\' escapes). */
static bool
parse_tablespace_map(Restore *r, const char *text, BkError *err)
{
	const char *line = text;

	while (*line != '\0')
	{
		char path[RESTORE_PATH_MAX];
		size_t used = 0;
		char *end;
		unsigned long oid = strtoul(line, &end, 10);
		const char *p;
		bool known = false;

		if (end == line || *end != ' ')
			return bk_error_set(err, BK_ERR_FORMAT,
								"snapshot %s: malformed tablespace_map line",
								r->record->id);
		for (p = end + 1; *p != '\0' && *p != '\n' && *p != '\r'; p++)
		{
			if (*p == '\\' && (p[1] == '\n' || p[1] == '\r' || p[1] == '\\'))
				p++;
			if (used + 1 < sizeof(path))
				path[used++] = *p;
		}
		path[used] = '\0';
		while (*p == '\n' || *p == '\r')
			p++;
		line = p;
		for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
			known |= r->tablespaces[spcIdx].oid == oid;
		if (!known)
		{
			RestoreTablespace *spc = &r->tablespaces[r->tablespace_count++];

			spc->oid = (uint32_t) oid;
			bk_strlcpy(spc->original, path, sizeof(spc->original));
		}
	}
	return true;
}

bool
restore_plan_tablespaces(Restore *r, BkError *err)
{
	char name[BK_OBJECT_NAME_MAX + 1];
	char *map_text = NULL;
	size_t map_len;
	size_t capacity;

	snprintf(name, sizeof(name), "%s/%s", r->record->id, BK_SNAPSHOT_MAP);
	if (!bk_snapshot_read_small(r->repo, r->decoder, r->source, name,
								1024 * 1024, &map_text, &map_len, err))
		return bk_error_prefix(err, "snapshot %s: ", r->record->id);
	capacity = r->record->tablespace_count + map_len / 2 + 1;
	r->tablespaces = calloc(capacity, sizeof(*r->tablespaces));
	if (r->tablespaces == NULL)
	{
		free(map_text);
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	for (size_t spcIdx = 0; spcIdx < r->record->tablespace_count; spcIdx++)
	{
		RestoreTablespace *spc = &r->tablespaces[r->tablespace_count++];

		spc->oid = r->record->tablespaces[spcIdx].oid;
		bk_strlcpy(spc->original, r->record->tablespaces[spcIdx].path,
				   sizeof(spc->original));
	}
	if (!parse_tablespace_map(r, map_text, err))
	{
		free(map_text);
		return false;
	}
	free(map_text);
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		RestoreTablespace *spc = &r->tablespaces[spcIdx];

		bk_strlcpy(spc->location, spc->original, sizeof(spc->location));
		for (int mapIdx = 0; mapIdx < r->map_count; mapIdx++)
			if (strcmp(r->maps[mapIdx].old_path, spc->original) == 0)
			{
				bk_strlcpy(spc->location, r->maps[mapIdx].new_path,
						   sizeof(spc->location));
				spc->mapped = true;
				r->maps[mapIdx].used = true;
			}
	}
	for (int mapIdx = 0; mapIdx < r->map_count; mapIdx++)
		if (!r->maps[mapIdx].used)
		{
			bk_error_set(err, BK_ERR_USAGE,
						 "--tablespace-map %s=%s: snapshot %s has no "
						 "tablespace at %s",
						 r->maps[mapIdx].old_path, r->maps[mapIdx].new_path,
						 r->record->id, r->maps[mapIdx].old_path);
			if (r->tablespace_count > 0)
				bk_error_hint(err, "Its tablespaces are at: %s%s",
							  r->tablespaces[0].original,
							  r->tablespace_count > 1 ? " and others" : "");
			return false;
		}
	return true;
}

/* A postmaster.pid naming a live process means a server uses the directory. */
static bool
check_no_server(const char *pgdata, BkError *err)
{
	char path[RESTORE_PATH_MAX];
	char *text = NULL;
	size_t len;
	long pid;

	if (!restore_join_path(path, sizeof(path), pgdata, "postmaster.pid", err))
		return false;
	if (!bk_read_file(path, 4096, &text, &len, NULL))
		return true;
	pid = strtol(text, NULL, 10);
	free(text);
	if (pid > 0 && (kill((pid_t) pid, 0) == 0 || errno == EPERM))
	{
		bk_error_set(err, BK_ERR_USAGE,
					 "a PostgreSQL server (pid %ld) is running in \"%s\"", pid,
					 pgdata);
		return bk_error_hint(err, "Stop it before restoring into its data "
								  "directory.");
	}
	return true;
}

/*
 * Is location where --pgdata's own link for tablespace oid points: the
 * tablespace of the directory --delta rewrites, not somebody else's?
 */
static bool
linked_from_pgdata(Restore *r, uint32_t oid, const char *location)
{
	char link[RESTORE_PATH_MAX];
	char linked[PATH_MAX];
	char wanted[PATH_MAX];

	snprintf(link, sizeof(link), "%s/pg_tblspc/%" PRIu32, r->pgdata_arg, oid);
	return realpath(link, linked) != NULL &&
		   realpath(location, wanted) != NULL && strcmp(linked, wanted) == 0;
}

/* Is path a or inside b?  (both canonical) */
static bool
path_within(const char *a, const char *b)
{
	size_t len = strlen(b);

	return strcmp(b, "/") == 0 ||
		   (strncmp(a, b, len) == 0 && (a[len] == '/' || a[len] == '\0'));
}

/*
 * Compared without links, "." or "//": no tablespace in the data directory
 * or the data directory in one, no tablespace in another, no two in one
 * place.  Each would have bk write one tree over another (and --delta
 * remove one's files as extra to the other).
 */
static bool
check_locations(Restore *r, BkError *err)
{
	if (!restore_canonical_path(r->pgdata_arg, r->pgdata_shown,
								sizeof(r->pgdata_shown), err))
		return bk_error_prefix(err, "--pgdata: ");
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		RestoreTablespace *spc = &r->tablespaces[spcIdx];

		if (!restore_canonical_path(spc->location, spc->canonical,
									sizeof(spc->canonical), err))
			return bk_error_prefix(err, "tablespace %" PRIu32 ": ", spc->oid);
		if (path_within(spc->canonical, r->pgdata_shown))
			return bk_error_set(err, BK_ERR_USAGE,
								"tablespace %" PRIu32 " would be restored to "
								"\"%s\" (\"%s\"), inside the data "
								"directory \"%s\"",
								spc->oid, spc->location, spc->canonical,
								r->pgdata_shown) ||
				   bk_error_hint(err,
								 "Restore it elsewhere with "
								 "--tablespace-map %s=NEW.",
								 spc->original);
		if (path_within(r->pgdata_shown, spc->canonical))
			return bk_error_set(err, BK_ERR_USAGE,
								"the data directory \"%s\" would be inside "
								"the location \"%s\" (\"%s\") of "
								"tablespace %" PRIu32,
								r->pgdata_shown, spc->location, spc->canonical,
								spc->oid) ||
				   bk_error_hint(err,
								 "Restore it elsewhere with "
								 "--tablespace-map %s=NEW.",
								 spc->original);
	}
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
		for (int otherIdx = 0; otherIdx < r->tablespace_count; otherIdx++)
		{
			RestoreTablespace *spc = &r->tablespaces[spcIdx];
			RestoreTablespace *other = &r->tablespaces[otherIdx];
			bool same = strcmp(spc->canonical, other->canonical) == 0;

			if (otherIdx == spcIdx || (same && otherIdx < spcIdx) ||
				!path_within(spc->canonical, other->canonical))
				continue;
			if (same)
				bk_error_set(err, BK_ERR_USAGE,
							 "tablespaces %" PRIu32 " (\"%s\") and %" PRIu32
							 " (\"%s\") would both be restored to \"%s\"",
							 spc->oid, spc->location, other->oid,
							 other->location, spc->canonical);
			else
				bk_error_set(err, BK_ERR_USAGE,
							 "tablespace %" PRIu32 " would be restored to "
							 "\"%s\", inside the location \"%s\" of "
							 "tablespace %" PRIu32,
							 spc->oid, spc->canonical, other->canonical,
							 other->oid);
			return bk_error_hint(err,
								 "Give each tablespace its own location with "
								 "--tablespace-map (their locations in the "
								 "snapshot: %s and %s).",
								 spc->original, other->original);
		}
	return true;
}

/* Refuse what must be refused before anything is created. */
bool
restore_check_targets(Restore *r, BkError *err)
{
	struct stat st;

	if (stat(r->pgdata_arg, &st) == 0)
	{
		if (!S_ISDIR(st.st_mode))
			return bk_error_set(err, BK_ERR_USAGE,
								"--pgdata \"%s\" is not a directory",
								r->pgdata_arg);
		if (!check_no_server(r->pgdata_arg, err))
			return false;
		if (restore_dir_not_empty(r->pgdata_arg) && !r->delta)
		{
			bk_error_set(err, BK_ERR_USAGE,
						 "the target directory \"%s\" is not empty",
						 r->pgdata_arg);
			return bk_error_hint(err,
								 "Restore into an empty directory, or pass "
								 "--delta to reuse this one (files that "
								 "differ are rewritten, files the snapshot "
								 "does not have are removed).");
		}
	}
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		RestoreTablespace *spc = &r->tablespaces[spcIdx];

		if (spc->location[0] != '/')
			return bk_error_set(err, BK_ERR_USAGE,
								"tablespace %" PRIu32 " has no absolute "
								"location (\"%s\")",
								spc->oid, spc->location);
		if (stat(spc->location, &st) != 0)
			continue;
		if (!S_ISDIR(st.st_mode))
			return bk_error_set(err, BK_ERR_USAGE,
								"tablespace location \"%s\" is not a "
								"directory",
								spc->location);
		if (!restore_dir_not_empty(spc->location))
			continue;
		if (!r->delta)
		{
			bk_error_set(err, BK_ERR_USAGE,
						 "the location \"%s\" of tablespace %" PRIu32
						 " is not empty",
						 spc->location, spc->oid);
			return bk_error_hint(err,
								 "Restore it elsewhere with --tablespace-map "
								 "%s=NEW, or pass --delta to reuse it.",
								 spc->original);
		}
		/*
		 * --delta removes what the snapshot does not have.  Unmapped, the
		 * location is the source's own: on the source's host that is the
		 * live cluster's tablespace, which no check of --pgdata protects.
		 */
		if (!spc->mapped && !linked_from_pgdata(r, spc->oid, spc->location))
		{
			bk_error_set(err, BK_ERR_USAGE,
						 "--delta would rewrite the location \"%s\" of "
						 "tablespace %" PRIu32
						 ", which --pgdata does not link to and "
						 "--tablespace-map does not name",
						 spc->location, spc->oid);
			return bk_error_hint(err,
								 "It may be the source's own tablespace, in "
								 "use. Restore it elsewhere with "
								 "--tablespace-map %s=NEW, or name it there "
								 "(%s=%s) to reuse it.",
								 spc->original, spc->original, spc->original);
		}
	}
	return check_locations(r, err);
}

/*
 * Open --pgdata and every tablespace location, made as needed, and make
 * them bk's own until restore_hand_over (restore_paths.c says why).
 */
bool
restore_prepare_target(Restore *r, BkError *err)
{
	char path[RESTORE_PATH_MAX];

	if (!restore_open_root(r, r->pgdata_shown, &r->pgdata_fd, r->pgdata,
						   sizeof(r->pgdata), err))
		return false;
	/* Empty when checked, before it was bk's: still empty now? */
	if (!r->delta && restore_dir_not_empty(r->pgdata))
		return bk_error_set(err, BK_ERR_USAGE,
							"the target directory \"%s\" is not empty",
							r->pgdata_shown);
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		RestoreTablespace *spc = &r->tablespaces[spcIdx];

		if (!restore_open_root(r, spc->canonical, &spc->fd, spc->root,
							   sizeof(spc->root), err))
			return false;
		if (!r->delta && restore_dir_not_empty(spc->root))
			return bk_error_set(err, BK_ERR_USAGE,
								"the location \"%s\" of tablespace %" PRIu32
								" is not empty",
								spc->location, spc->oid);
	}
	if (!restore_take_back(r, err))
		return false;

	/* A half-restored directory must not start: pg_control goes first. */
	if (r->delta)
	{
		char global_dir[RESTORE_PATH_MAX];

		if (!restore_join_path(path, sizeof(path), r->pgdata, PG_CONTROL,
							   err) ||
			!restore_join_path(global_dir, sizeof(global_dir), r->pgdata,
							   "global", err))
			return false;
		if (unlink(path) == 0 && !bk_fsync_dir(global_dir, err))
			return false;
	}
	return true;
}

/* Every recorded directory, with its mode; tablespaces as symlinks. */
bool
restore_create_directories(Restore *r, BkError *err)
{
	BkSnapRecord *record = r->chain[r->chain_len - 1];
	char path[RESTORE_PATH_MAX];
	char link_path[RESTORE_PATH_MAX];

	restore_sort_directories(record);
	if (!restore_join_path(path, sizeof(path), r->pgdata, "pg_tblspc", err) ||
		!restore_ensure_dir(r, path, -1, err))
		return false;
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		char target[RESTORE_PATH_MAX];
		ssize_t len;
		struct stat st;

		snprintf(link_path, sizeof(link_path), "%s/pg_tblspc/%" PRIu32,
				 r->pgdata, r->tablespaces[spcIdx].oid);
		len = readlink(link_path, target, sizeof(target) - 1);
		if (len >= 0)
		{
			target[len] = '\0';
			if (strcmp(target, r->tablespaces[spcIdx].location) == 0)
				continue;
		}
		if (lstat(link_path, &st) == 0 && !bk_remove_tree(link_path, err))
			return false;
		if (symlink(r->tablespaces[spcIdx].location, link_path) != 0)
			return bk_error_set(err, BK_ERR_IO,
								"could not create symbolic link \"%s\": %s",
								link_path, strerror(errno));
	}
	for (size_t dirIdx = 0; dirIdx < record->directory_count; dirIdx++)
	{
		const BkSnapDirectory *dir = &record->directories[dirIdx];

		if (restore_is_tablespace_link(r, dir->path))
			continue;
		if (!restore_resolve_path(r, dir->path, path, sizeof(path), err) ||
			!restore_ensure_dir(r, path, (int) dir->mode, err))
			return false;
	}
	/* Parents of files the record lists without their directory. */
	link_path[0] = '\0';
	for (size_t fileIdx = 0; fileIdx < record->file_count; fileIdx++)
	{
		if (!restore_resolve_path(r, record->files[fileIdx].path, path,
								  sizeof(path), err))
			return false;
		*strrchr(path, '/') = '\0';
		if (strcmp(path, link_path) == 0)
			continue;
		if (!restore_ensure_dir(r, path, -1, err))
			return false;
		bk_strlcpy(link_path, path, sizeof(link_path));
	}
	return true;
}

/* --delta: remove what the snapshot does not have. */
bool
restore_remove_extra(Restore *r, const char *dir_path, const char *rel_dir,
					 uint64_t *removed, BkError *err)
{
	DIR *dir = opendir(dir_path);
	struct dirent *entry;
	bool ok = true;

	if (dir == NULL)
		return bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s",
							dir_path, strerror(errno));
	while (ok && (entry = readdir(dir)) != NULL)
	{
		char path[RESTORE_PATH_MAX];
		char rel[RESTORE_PATH_MAX];
		struct stat st;
		bool keep = false;

		if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
			continue;
		if (!restore_join_path(path, sizeof(path), dir_path, entry->d_name,
							   err))
		{
			ok = false;
			break;
		}
		if (rel_dir[0] == '\0')
			bk_strlcpy(rel, entry->d_name, sizeof(rel));
		else if (!restore_join_path(rel, sizeof(rel), rel_dir, entry->d_name,
									err))
		{
			ok = false;
			break;
		}
		if (lstat(path, &st) != 0)
			continue;
		/*
		 * The top of a tablespace location holds one directory per server
		 * version and catalog (PG_15_...); another server's is not ours to
		 * remove.
		 */
		if (restore_is_tablespace_link(r, rel_dir) &&
			!restore_record_has_directory(r->record, rel) &&
			!restore_record_has_below(r->record, rel))
			continue;
		if (restore_is_tablespace_link(r, rel))
		{
			for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
				if (strtoul(rel + 10, NULL, 10) == r->tablespaces[spcIdx].oid)
					ok = restore_remove_extra(r, r->tablespaces[spcIdx].root,
											  rel, removed, err);
			continue;
		}
		if (S_ISDIR(st.st_mode))
		{
			keep = restore_record_has_directory(r->record, rel) ||
				   restore_record_has_below(r->record, rel);
			if (keep)
				ok = restore_remove_extra(r, path, rel, removed, err);
			else
			{
				ok = bk_remove_tree(path, err);
				(*removed)++;
			}
			continue;
		}
		keep = S_ISREG(st.st_mode) && !restore_skipped_file(rel) &&
			   (bk_snapshot_record_file(r->record, rel) != NULL ||
				strcmp(rel, PG_CONTROL_TEMP) == 0);
		if (!keep)
		{
			ok = bk_remove_tree(path, err);
			(*removed)++;
		}
	}
	closedir(dir);
	return ok;
}
