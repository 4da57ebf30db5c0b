/*
 * bk_snapshot_backup.c
 *		The backup itself: backup mode on (do_pg_backup_start), the
 *		directory walk with PostgreSQL 15's base backup exclusions, the
 *		copy (bk_snapshot_work.c), backup mode off, then the snapshot's own
 *		objects (bk_snapshot_record.c).
 */
#include "postgres.h"

#include "bk_snapshot.h"

static void snap_walk(SnapRun *run, const char *path, bool in_database_dir,
					  bool in_tablespace);

/*
 * snap_take
 *		Backup start, every file, backup stop, then the snapshot's own
 *		objects: label, tablespace map, manifest, and the record last.
 */
void
snap_take(SnapRun *run)
{
	List *tablespaces = NIL;

	/* Announce it; without Kafka there is no point in starting backup mode. */
	snap_announce_begin(run);
	/* Before the first object: its confirmation comes after this point. */
	snap_confirm_prepare(run);

	snap_set_phase(run->slot, run->slot->fast ? "checkpoint (fast)"
											  : "checkpoint (spread)");
	run->start_lsn =
		do_pg_backup_start(run->id, run->slot->fast, &run->start_tli,
						   &run->label, &tablespaces, &run->tablespace_map);
	run->backup_started = true;
	run->start_time = GetCurrentTimestamp();

	PG_ENSURE_ERROR_CLEANUP(do_pg_abort_backup, BoolGetDatum(false));
	{
		SpinLockAcquire(&bk_shared->mutex);
		run->slot->start_lsn = run->start_lsn;
		run->slot->start_time = run->start_time;
		SpinLockRelease(&bk_shared->mutex);

		/* Find every file first, so progress knows the total. */
		snap_set_phase(run->slot, "listing files");
		snap_walk(run, ".", false, false);
		snap_build_work(run);
		if (strcmp(run->kind, "full") != 0)
			snap_open_spool(run);
		snap_start_helpers(run);

		/*
		 * Our share of the files goes out as one batch: queued back to back,
		 * acknowledged together, so small files do not each wait for a
		 * broker round trip.  pg_control goes last, once every other file
		 * has been read, as PostgreSQL's own base backup sends it.
		 */
		snap_set_phase(run->slot, "copying files");
		snap_copy_share(run);
		if (run->helper_count > 0)
		{
			snap_set_phase(run->slot, "waiting for helpers");
			snap_wait_for_helpers(run);
		}
		if (run->control_index >= 0)
			snap_send_file(run, &run->work->items[run->control_index]);
		snap_set_phase(run->slot, "waiting for Kafka");
		{
			BkError err;

			bk_error_clear(&err);
			if (!bk_producer_batch_wait(run->producer, snap_interrupted, run,
										NULL, &err))
				snap_kafka_error(run, &err, "the data files");
		}
		snap_close_spool(run);

		snap_set_phase(run->slot, "stopping backup");
		run->stop_lsn =
			do_pg_backup_stop(run->label.data, false, &run->stop_tli);
		run->backup_started = false;
	}
	PG_END_ENSURE_ERROR_CLEANUP(do_pg_abort_backup, BoolGetDatum(false));

	/* The record's entries, the manifest's lines, in listing order. */
	run->bytes_read = 0;
	run->bytes_sent = 0;
	for (int idx = 0; idx < run->work->count; idx++)
		if (idx != run->control_index && run->work->items[idx].range_index == 0)
			snap_record_file(run, &run->work->items[idx]);
	if (run->control_index >= 0)
		snap_record_file(run, &run->work->items[run->control_index]);
	{
		int whole = 0;

		for (int idx = 0; idx < run->work->count; idx++)
			if (run->work->items[idx].no_parent_digests &&
				run->work->items[idx].range_index == 0)
				whole++;
		if (whole > 0)
			ereport(LOG,
					(errmsg("bk: snapshot %s sent %d relation file%s whole: "
							"snapshot %s kept no page digests for %s",
							run->id, whole, whole == 1 ? "" : "s",
							run->parent_id, whole == 1 ? "it" : "them"),
					 errdetail("Page digests are kept in the unlogged table "
							   "bk_snapshot_blocks: a crash empties it, and "
							   "snapshots taken before bk 0.2 have none.")));
	}
	run->stop_time = GetCurrentTimestamp();
	SpinLockAcquire(&bk_shared->mutex);
	run->slot->stop_lsn = run->stop_lsn;
	SpinLockRelease(&bk_shared->mutex);

	/* The snapshot's own objects, the record last. */
	snap_send_own_objects(run);
}

/*
 * snap_walk
 *		Collect the files and directories under path (relative to the data
 *		directory), applying PostgreSQL's base backup exclusions.
 */
static void
snap_walk(SnapRun *run, const char *path, bool in_database_dir,
		  bool in_tablespace)
{
	static const char *const exclude_dir_contents[] = {
		"pg_stat_tmp", "pg_replslot",  "pg_dynshmem", "pg_notify",
		"pg_serial",   "pg_snapshots", "pg_subtrans", NULL};
	static const char *const exclude_files[] = {"postgresql.auto.conf.tmp",
												"current_logfiles.tmp",
												"backup_label",
												"tablespace_map",
												"backup_manifest",
												"postmaster.pid",
												"postmaster.opts",
												NULL};
	bool top = strcmp(path, ".") == 0;
	DIR *dir = AllocateDir(path);
	struct dirent *de;
	List *names = NIL;
	List *init_forks = NIL; /* relfilenodes with an _init fork here */
	ListCell *cell;

	while ((de = ReadDir(dir, path)) != NULL)
	{
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		names = lappend(names, pstrdup(de->d_name));
		if (in_database_dir)
		{
			int oidchars;
			ForkNumber fork;

			if (parse_filename_for_nontemp_relation(de->d_name, &oidchars,
													&fork) &&
				fork == INIT_FORKNUM)
				init_forks =
					lappend(init_forks, pnstrdup(de->d_name, oidchars));
		}
	}
	FreeDir(dir);
	list_sort(names, (list_sort_comparator) snap_cmp_str);

	foreach (cell, names)
	{
		char *name = lfirst(cell);
		char full[MAXPGPATH];
		int full_len;
		const char *rel;
		struct stat st;
		SnapEntry *entry;
		bool skip = false;
		int oidchars;
		ForkNumber fork;

		full_len = snprintf(full, sizeof(full), "%s/%s", path, name);
		rel = top ? name : full + 2; /* without "./" */

		for (int idx = 0; exclude_files[idx] != NULL; idx++)
			if (top && strcmp(name, exclude_files[idx]) == 0)
				skip = true;
		if (strncmp(name, "pg_internal.init", 16) == 0 ||
			strncmp(name, PG_TEMP_FILE_PREFIX, strlen(PG_TEMP_FILE_PREFIX)) ==
				0)
			skip = true;
		if (in_database_dir && looks_like_temp_rel_name(name))
			skip = true;
		/* Unlogged relations: only their init fork is kept. */
		if (in_database_dir &&
			parse_filename_for_nontemp_relation(name, &oidchars, &fork) &&
			fork != INIT_FORKNUM)
		{
			ListCell *init;

			foreach (init, init_forks)
				if (strncmp(lfirst(init), name, oidchars) == 0 &&
					strlen(lfirst(init)) == (size_t) oidchars)
					skip = true;
		}
		if (skip)
			continue;

		/*
		 * Cut short, the path would name another file or none at all: the
		 * file would be left out as if it had vanished, or another one
		 * copied in its place.  No object name could hold it anyway.
		 */
		if (full_len >= (int) sizeof(full))
			ereport(ERROR,
					(errcode(ERRCODE_NAME_TOO_LONG),
					 errmsg("a path in the data directory is too long for a "
							"snapshot: \"%s/%s\"",
							path, name),
					 errdetail("Every object of a snapshot is named by its "
							   "file's path; no object name can hold this "
							   "one."),
					 errhint("Move the file out of the data directory.")));

		if (lstat(full, &st) != 0)
		{
			if (errno == ENOENT)
				continue; /* vanished: WAL replay recreates what matters */
			ereport(ERROR, (errcode_for_file_access(),
							errmsg("could not stat \"%s\": %m", full)));
		}

		/* Tablespaces: pg_tblspc/<oid> links are followed, and recorded. */
		if (top == false && strcmp(path, "./pg_tblspc") == 0 &&
			S_ISLNK(st.st_mode))
		{
			char target[MAXPGPATH];
			ssize_t len = readlink(full, target, sizeof(target) - 1);

			if (len < 0)
				ereport(
					ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read symbolic link \"%s\": %m", full)));
			target[len] = '\0';

			/*
			 * PostgreSQL follows a relative link from pg_tblspc, but a
			 * restore has no data directory to read it against: the record
			 * keeps where it leads, an absolute path --tablespace-map can
			 * name.
			 */
			if (!is_absolute_path(target))
			{
				char *resolved = realpath(full, NULL);

				if (resolved == NULL)
					ereport(ERROR,
							(errcode_for_file_access(),
							 errmsg("could not resolve tablespace link \"%s\" "
									"(to \"%s\"): %m",
									full, target)));
				if (strlen(resolved) >= sizeof(target))
				{
					free(resolved);
					ereport(ERROR,
							(errcode(ERRCODE_NAME_TOO_LONG),
							 errmsg("tablespace link \"%s\" leads to a path "
									"too long for a snapshot",
									full)));
				}
				strlcpy(target, resolved, sizeof(target));
				free(resolved);
			}
			snap_record_tablespace(run, name, target);
			if (stat(full, &st) != 0 || !S_ISDIR(st.st_mode))
				ereport(
					ERROR,
					(errcode_for_file_access(),
					 errmsg(
						 "tablespace link \"%s\" does not lead to a directory",
						 full)));
			snap_walk(run, full, false, true);
			continue;
		}
		/* pg_wal may be a symlink (initdb --waldir): it is kept empty anyway. */
		if (top && strcmp(name, "pg_wal") == 0)
		{
			entry = palloc0(sizeof(SnapEntry));
			entry->path = pstrdup("pg_wal");
			entry->is_dir = true;
			entry->mode = S_IRWXU;
			run->entries = lappend(run->entries, entry);
			entry = palloc0(sizeof(SnapEntry));
			entry->path = pstrdup("pg_wal/archive_status");
			entry->is_dir = true;
			entry->mode = S_IRWXU;
			run->entries = lappend(run->entries, entry);
			continue;
		}
		/*
		 * Other links, sockets and FIFOs are not PostgreSQL's: skipped, as
		 * pg_basebackup skips them, and said, as it says it.
		 */
		if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
		{
			ereport(WARNING,
					(errmsg("bk: snapshot %s skips \"%s\": %s", run->id, rel,
							S_ISLNK(st.st_mode) ? "a symbolic link"
												: "not a regular file"),
					 errdetail("A snapshot holds the data directory's "
							   "regular files and directories, tablespaces "
							   "and pg_wal; a restore will not have this "
							   "entry.")));
			continue;
		}

		entry = palloc0(sizeof(SnapEntry));
		entry->path = pstrdup(rel);
		entry->mode = st.st_mode;
		entry->mtime = st.st_mtime;
		if (S_ISDIR(st.st_mode))
		{
			bool contents_excluded = false;

			entry->is_dir = true;
			run->entries = lappend(run->entries, entry);
			for (int idx = 0; exclude_dir_contents[idx] != NULL; idx++)
				if (top && strcmp(name, exclude_dir_contents[idx]) == 0)
					contents_excluded = true;
			if (contents_excluded)
				continue;
			/*
			 * base/<db>, global and <tablespace>/<version>/<db> hold
			 * relations.
			 */
			{
				size_t path_len = strlen(path);
				size_t version_len = strlen(TABLESPACE_VERSION_DIRECTORY);
				bool in_version_dir = in_tablespace && path_len > version_len &&
									  strcmp(path + path_len - version_len,
											 TABLESPACE_VERSION_DIRECTORY) == 0;

				snap_walk(run, full,
						  strcmp(path, "./base") == 0 ||
							  (top && strcmp(name, "global") == 0) ||
							  in_version_dir,
						  in_tablespace);
			}
			continue;
		}
		entry->size = st.st_size;
		if (in_database_dir &&
			parse_filename_for_nontemp_relation(name, &oidchars, &fork))
		{
			const char *dot = strchr(name + oidchars, '.');
			BlockNumber segno =
				dot ? (BlockNumber) strtoul(dot + 1, NULL, 10) : 0;

			entry->checksummed = DataChecksumsEnabled();
			entry->main_fork = fork == MAIN_FORKNUM;
			entry->segment_base = segno * RELSEG_SIZE;
		}
		run->entries = lappend(run->entries, entry);
	}
}
