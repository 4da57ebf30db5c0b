--
-- bk_snapshot(): the SQL surface of snapshots.
--
-- Run after bk.sql on the server tests/integration/extension.t prepares
-- (bk preloaded, Kafka reachable, topics created).  Only deterministic
-- properties are printed: ids, LSNs, times and sizes are compared.
--

CREATE EXTENSION IF NOT EXISTS bk;

-- The functions, their arguments and their results.
SELECT p.oid::regprocedure AS function, p.proretset, p.provolatile,
       p.proisstrict, pg_get_function_arguments(p.oid) AS arguments
FROM pg_proc p
WHERE p.proname IN ('bk_snapshot', 'bk_snapshot_cancel', 'bk_snapshot_progress',
                    'bk_snapshot_wait')
ORDER BY 1;
SELECT a.name, format_type(a.type, NULL) AS type
FROM pg_proc p,
     unnest(p.proargnames, p.proallargtypes, p.proargmodes)
         WITH ORDINALITY AS a(name, type, mode, n)
WHERE p.oid = 'bk_snapshot(text,text,boolean,boolean)'::regprocedure
  AND a.mode = 'o'
ORDER BY a.n;

-- Nothing for PUBLIC; everything for bk_admin.
SELECT f AS object,
       has_function_privilege('public', f, 'execute') AS public_may,
       has_function_privilege('bk_admin', f, 'execute') AS bk_admin_may
FROM unnest(ARRAY['bk_snapshot(text,text,boolean,boolean)',
                  'bk_snapshot_cancel(text)', 'bk_snapshot_progress()',
                  'bk_snapshot_wait(text)']) AS f;
SELECT has_table_privilege('public', 'bk_snapshot_history', 'select') AS public_reads_history,
       has_table_privilege('bk_admin', 'bk_snapshot_history', 'select') AS bk_admin_reads_history,
       has_table_privilege('bk_admin', 'bk_snapshot_history', 'insert') AS bk_admin_writes_history,
       has_table_privilege('public', 'bk_snapshot_progress', 'select') AS public_reads_progress,
       has_table_privilege('public', 'bk_snapshot_blocks', 'select') AS public_reads_digests,
       has_table_privilege('bk_admin', 'bk_snapshot_blocks', 'select') AS bk_admin_reads_digests;
CREATE ROLE regress_bk_snap;
SET ROLE regress_bk_snap;
SELECT * FROM bk_snapshot();
SELECT bk_snapshot_cancel('x');
SELECT * FROM bk_snapshot_progress;
RESET ROLE;
DROP ROLE regress_bk_snap;

-- Bad arguments are refused before anything starts.
SELECT * FROM bk_snapshot('weekly');
SELECT * FROM bk_snapshot('full', repeat('x', 300));
SELECT * FROM bk_snapshot('full', E'two\nlines');
SELECT * FROM bk_snapshot(NULL);
SELECT * FROM bk_snapshot('full', wait => NULL);
SELECT * FROM bk_snapshot('full', fast => NULL);
-- A read-only transaction gets no snapshot: its worker would write.
BEGIN READ ONLY;
SELECT * FROM bk_snapshot();
ROLLBACK;
-- Nor does a transaction the worker would wait for: one that holds a lock
-- on the extension's tables conflicting with the worker's writes.  The
-- caller waits for the worker on a latch, where the deadlock detector does
-- not look: this hung until statement_timeout.  It is refused at once.
SELECT clock_timestamp() AS t0 \gset
BEGIN;
LOCK bk_snapshot_history IN SHARE MODE;
SET LOCAL statement_timeout = '10s';
SELECT * FROM bk_snapshot();
ROLLBACK;
SELECT clock_timestamp() - :'t0' < interval '1 s' AS refused_within_1s;
BEGIN;
TRUNCATE bk_snapshot_blocks;
SET LOCAL statement_timeout = '10s';
SELECT * FROM bk_snapshot(wait => false);
ROLLBACK;
-- Nor one that holds a lock on a system catalog that conflicts with the
-- worker's reads, on a catalog of the database or a shared one, or through
-- a view.  It was refused as a transaction that has written (wal_level
-- replica logs the lock and gives the transaction an xid), not naming the
-- lock.
BEGIN;
LOCK pg_class IN ACCESS EXCLUSIVE MODE;
SET LOCAL statement_timeout = '10s';
SELECT * FROM bk_snapshot();
ROLLBACK;
BEGIN;
LOCK pg_database IN ACCESS EXCLUSIVE MODE;
SET LOCAL statement_timeout = '10s';
SELECT * FROM bk_snapshot(wait => false);
ROLLBACK;
BEGIN;
LOCK pg_tables IN ACCESS EXCLUSIVE MODE;
SET LOCAL statement_timeout = '10s';
SELECT * FROM bk_snapshot();
ROLLBACK;
-- Nor one that has written: the worker could not see what it wrote.
BEGIN;
CREATE TEMPORARY TABLE bk_regress_written (a int);
SELECT * FROM bk_snapshot();
ROLLBACK;
CREATE TABLE bk_regress_locked (a int);
BEGIN;
INSERT INTO bk_regress_locked VALUES (1);
SELECT * FROM bk_snapshot();
ROLLBACK;
-- A table locked, not written: its lock gives an xid as a write would, and
-- the refusal says so rather than call it a write.
BEGIN;
LOCK bk_regress_locked IN ACCESS EXCLUSIVE MODE;
SELECT * FROM bk_snapshot();
ROLLBACK;
DROP TABLE bk_regress_locked;
-- Such as an update of the extension: its worker saw the old version and
-- failed the snapshot, saying to run the ALTER EXTENSION just run.
SELECT current_database() AS regress_db \gset
CREATE DATABASE regress_bk_update;
\c regress_bk_update
CREATE EXTENSION bk VERSION '0.6';
BEGIN;
ALTER EXTENSION bk UPDATE;
SELECT * FROM bk_snapshot();
ROLLBACK;
\c :regress_db
DROP DATABASE regress_bk_update;
SELECT bk_snapshot_cancel('20261124T000000Z-00000000');
SELECT bk_snapshot_cancel('20261124T000000Z-0000000');
SELECT bk_snapshot_cancel('x');
SELECT bk_snapshot_cancel(NULL);
CALL bk_snapshot_wait(NULL);
-- An error quotes 64 characters of what it refuses, control characters
-- escaped: a 1 MB argument made a 1 MB error (and twice that in the server
-- log), and a newline in it let the caller write log lines of its own.
SELECT bk_snapshot_cancel(E'20261124T000000Z-0000000\nLOG:  forged');
SELECT * FROM bk_snapshot(E'full\n');
SELECT * FROM bk_snapshot(repeat('é', 100));
CREATE FUNCTION pg_temp.bk_error_of(call text, arg text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    message text;
BEGIN
    EXECUTE call USING arg;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS message = MESSAGE_TEXT;
    RETURN message;
END
$$;
SELECT call, octet_length(m) < 1024 AS under_1kb,
       strpos(m, E'\n') = 0 AS no_newline, m LIKE '%..."' AS says_there_is_more
FROM (VALUES ('SELECT bk_snapshot_cancel($1)'), ('SELECT bk_snapshot($1)')) AS c(call),
     LATERAL pg_temp.bk_error_of(call, repeat(E'x\n', 500000)) AS m;
-- CALL bk_snapshot_wait() runs only outside a transaction block, not in
-- the function above: its error is printed.
CALL bk_snapshot_wait(repeat(E'x\n', 500000));
-- bk.snapshot_range_size is 0 (files are not split) or at least 1MB: a
-- smaller range only multiplies the work list, the objects and the record.
SET bk.snapshot_range_size = 1;
SET bk.snapshot_range_size = '512kB';
SET bk.snapshot_range_size = '1MB';
SHOW bk.snapshot_range_size;
SET bk.snapshot_range_size = 0;
RESET bk.snapshot_range_size;

-- A full snapshot, then an incremental one on top of it.  The full one is
-- taken in a transaction that read the history and holds locks on a catalog
-- and on a table that the worker's locks do not conflict with: that is no
-- reason to refuse.
BEGIN;
SELECT count(*) >= 0 AS read_history FROM bk_snapshot_history;
LOCK pg_class IN EXCLUSIVE MODE;
LOCK bk_snapshot_history IN SHARE UPDATE EXCLUSIVE MODE;
SELECT snapshot_kind, parent_id IS NULL AS no_parent, state,
       files > 0 AS has_files, bytes_read > 0 AS read_bytes,
       bytes_sent > 0 AS sent_bytes, stop_lsn > start_lsn AS lsn_order,
       stop_time >= start_time AS time_order, snapshot_label
FROM bk_snapshot(label => 'regress full');
COMMIT;
CREATE TABLE bk_regress_new AS SELECT g FROM generate_series(1, 1000) g;
SELECT s.snapshot_kind, s.parent_id = h.snapshot_id AS parent_is_last_full,
       s.state, s.bytes_sent < h.bytes_sent AS sends_less
FROM bk_snapshot('incr') s,
     LATERAL (SELECT snapshot_id, bytes_sent FROM bk_snapshot_history
              WHERE kind = 'full' AND state = 'complete'
              ORDER BY start_time DESC LIMIT 1) h;
SELECT kind, state, label, file_list LIKE '%PG_VERSION%' AS lists_files
FROM bk_snapshot_history ORDER BY requested_time DESC LIMIT 2;
SELECT kind, state, phase, files_done = files_total AS all_files,
       bytes_read = bytes_total AS all_bytes, checksum_failures, error
FROM bk_snapshot_progress ORDER BY start_time DESC LIMIT 2;
DROP TABLE bk_regress_new;

-- A worker that cannot connect (its database stopped taking connections
-- after the call) fails its snapshot: the slot must not stay "starting"
-- and refuse every later snapshot until a restart.  A second session
-- (dblink) calls from the database this one closes.
CREATE EXTENSION dblink;
CREATE DATABASE regress_bk_closed;
SELECT dblink_connect('regress_bk_closed',
                      format('host=127.0.0.1 port=%s dbname=regress_bk_closed user=%s',
                             current_setting('port'), current_user)) = 'OK' AS ok;
SELECT dblink_exec('regress_bk_closed', 'CREATE EXTENSION bk') = 'CREATE EXTENSION' AS ok;
ALTER DATABASE regress_bk_closed ALLOW_CONNECTIONS false;
SELECT snapshot_id AS closed_id
FROM dblink('regress_bk_closed',
            'SELECT snapshot_id FROM bk_snapshot(wait => false)')
     AS t(snapshot_id text) \gset
CREATE FUNCTION pg_temp.bk_wait_ended(wanted text, timeout interval)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
BEGIN
    LOOP
        IF NOT EXISTS (SELECT FROM bk_snapshot_progress
                       WHERE snapshot_id = wanted
                         AND state IN ('starting', 'running')) THEN
            RETURN true;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT pg_temp.bk_wait_ended(:'closed_id', '60 s') AS ok;
SELECT state, error LIKE '%exited before it finished%' AS says_why
FROM bk_snapshot_progress WHERE snapshot_id = :'closed_id';
SELECT dblink_disconnect('regress_bk_closed') = 'OK' AS ok;
DROP DATABASE regress_bk_closed;

-- bk_snapshot() does not wait for a worker that waits for this transaction
-- through another session: this transaction read the history (no reason
-- to refuse), a second session asks for AccessExclusiveLock on it and
-- waits for this transaction, and the worker's RowExclusiveLock queues
-- behind that.  The deadlock detector, which sees this transaction wait for
-- nothing, found no cycle: this hung until statement_timeout.  The error
-- comes within about two seconds, with an SQLSTATE that does not invite an
-- automatic retry (40P01 did); the snapshot goes on once this transaction
-- and the session queued ahead of the worker have ended.
SELECT dblink_connect('regress_bk_queued',
                      format('host=127.0.0.1 port=%s dbname=%s user=%s',
                             current_setting('port'), current_database(),
                             current_user)) = 'OK' AS ok;
SELECT dblink_exec('regress_bk_queued', 'BEGIN') = 'BEGIN' AS ok;
BEGIN;
SELECT count(*) >= 0 AS read_history FROM bk_snapshot_history;
SELECT dblink_send_query('regress_bk_queued',
                         'LOCK bk_snapshot_history IN ACCESS EXCLUSIVE MODE') AS sent;
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN EXISTS (SELECT FROM pg_locks
                          WHERE relation = 'bk_snapshot_history'::regclass
                            AND mode = 'AccessExclusiveLock' AND NOT granted);
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT clock_timestamp() AS t0 \gset
SET LOCAL statement_timeout = '20s';
SAVEPOINT before_call;
\set VERBOSITY terse
SELECT * FROM bk_snapshot('incr');
\set VERBOSITY default
-- Still holding the lock that blocks the worker: the snapshot is running.
ROLLBACK TO before_call;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT clock_timestamp() - :'t0' < interval '10 s' AS refused_within_10s;
SELECT snapshot_id AS queued_id FROM bk_snapshot_progress
WHERE state IN ('starting', 'running') \gset
ROLLBACK;
SELECT * FROM dblink_get_result('regress_bk_queued') AS r(status text);
SELECT count(*) AS no_more FROM dblink_get_result('regress_bk_queued') AS r(status text);
-- The second session has its lock now: the worker waits for it.
SELECT state FROM bk_snapshot_progress WHERE snapshot_id = :'queued_id';
SELECT dblink_exec('regress_bk_queued', 'ROLLBACK') = 'ROLLBACK' AS ok;
SELECT dblink_disconnect('regress_bk_queued') = 'OK' AS ok;
SELECT pg_temp.bk_wait_ended(:'queued_id', '60 s') AS ok;
SELECT kind, state FROM bk_snapshot_history WHERE snapshot_id = :'queued_id';

-- Nor for a helper of the worker that waits for the caller through another
-- session.  Helpers connect once the files are listed, and their
-- connection reads pg_database: a session that asks for AccessExclusiveLock
-- on it, which the caller read, holds them up behind the caller while the
-- worker copies, then waits for its helpers, never for a lock.  This hung
-- until statement_timeout.  The caller is a dblink session here, so that a third
-- one can hold the worker up (SHARE on the history) until the lock on
-- pg_database is queued: the worker has connected by then, and only the
-- helper meets it.  Every connection is made before that lock is asked for.
SELECT dblink_connect(name, format('host=127.0.0.1 port=%s dbname=%s user=%s',
                                   current_setting('port'),
                                   current_database(), current_user)) = 'OK' AS ok
FROM unnest(ARRAY['regress_bk_caller', 'regress_bk_queued',
                  'regress_bk_holder']) AS name;
SELECT dblink_exec(name, 'BEGIN') = 'BEGIN' AS ok
FROM unnest(ARRAY['regress_bk_caller', 'regress_bk_queued',
                  'regress_bk_holder']) AS name;
SELECT dblink_exec('regress_bk_holder',
                   'LOCK bk_snapshot_history IN SHARE MODE') = 'LOCK TABLE' AS ok;
SELECT dblink_exec('regress_bk_caller',
                   'SET LOCAL statement_timeout = ''20s''') = 'SET' AS ok;
SELECT * FROM dblink('regress_bk_caller',
                     'SELECT count(*) > 0 FROM pg_database') AS r(read_database bool);
SELECT dblink_send_query('regress_bk_caller',
                         'SELECT snapshot_id FROM bk_snapshot(''incr'')') AS sent;
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN EXISTS (SELECT FROM pg_locks
                          WHERE relation = 'bk_snapshot_history'::regclass
                            AND mode = 'RowExclusiveLock' AND NOT granted);
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT snapshot_id AS helper_id FROM bk_snapshot_progress
WHERE state IN ('starting', 'running') \gset
SELECT dblink_send_query('regress_bk_queued',
                         'LOCK pg_database IN ACCESS EXCLUSIVE MODE') AS sent;
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN EXISTS (SELECT FROM pg_locks
                          WHERE relation = 'pg_database'::regclass
                            AND mode = 'AccessExclusiveLock' AND NOT granted);
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT clock_timestamp() AS t0 \gset
SELECT dblink_exec('regress_bk_holder', 'COMMIT') = 'COMMIT' AS ok;
\set VERBOSITY terse
SELECT * FROM dblink_get_result('regress_bk_caller') AS r(snapshot_id text);
\set VERBOSITY default
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate,
       clock_timestamp() - :'t0' < interval '10 s' AS refused_within_10s;
SELECT regexp_split_to_table(
           regexp_replace(dblink_error_message('regress_bk_caller'),
                          '[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}|PID [0-9]+', '...',
                          'g'), '\n') AS error;
SELECT count(*) AS no_more
FROM dblink_get_result('regress_bk_caller') AS r(snapshot_id text);
SELECT dblink_exec('regress_bk_caller', 'ROLLBACK') = 'ROLLBACK' AS ok;
SELECT * FROM dblink_get_result('regress_bk_queued') AS r(status text);
SELECT count(*) AS no_more FROM dblink_get_result('regress_bk_queued') AS r(status text);
-- The helper waits for the session that now holds the lock.
SELECT state FROM bk_snapshot_progress WHERE snapshot_id = :'helper_id';
SELECT dblink_exec('regress_bk_queued', 'ROLLBACK') = 'ROLLBACK' AS ok;
SELECT dblink_disconnect(name) = 'OK' AS ok
FROM unnest(ARRAY['regress_bk_caller', 'regress_bk_queued',
                  'regress_bk_holder']) AS name;
SELECT pg_temp.bk_wait_ended(:'helper_id', '60 s') AS ok;
SELECT kind, state FROM bk_snapshot_history WHERE snapshot_id = :'helper_id';
DROP EXTENSION dblink;

-- The snapshot worker runs as superuser with this database's settings.  A
-- search_path set on the database (its owner may) must not make it call
-- functions of that schema: now() here is a trap that fails the snapshot.
CREATE SCHEMA regress_bk_trap;
CREATE FUNCTION regress_bk_trap.now() RETURNS timestamptz
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'regress_bk_trap.now() ran in the snapshot worker';
END
$$;
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET search_path = '
                   'regress_bk_trap, pg_catalog, public', current_database());
END
$$;
SELECT snapshot_kind, state FROM bk_snapshot('incr');
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I RESET search_path', current_database());
END
$$;
DROP FUNCTION regress_bk_trap.now();
DROP SCHEMA regress_bk_trap;

-- The record keeps the label in UTF-8 (the restore tool parses it as
-- JSON): in a SQL_ASCII database a label that is not UTF-8 is refused,
-- instead of leaving a complete snapshot whose record cannot be read.
SELECT current_database() AS regress_db \gset
CREATE DATABASE regress_bk_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C'
    LC_CTYPE 'C' TEMPLATE template0;
\c regress_bk_ascii
CREATE EXTENSION bk;
SELECT * FROM bk_snapshot('full', 'caf' || chr(233));
\c :regress_db
DROP DATABASE regress_bk_ascii;

-- bk_snapshot() returns only once bk_snapshot_history says how the
-- snapshot ended: with the history update slowed down (a trigger sleeps
-- 1 s), the caller's next statement must still read "complete", as must
-- the next diff or incr when it picks its parent.
CREATE FUNCTION bk_regress_slow_history() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF NEW.state = 'complete' THEN
        PERFORM pg_sleep(1);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER bk_regress_slow BEFORE UPDATE ON bk_snapshot_history
    FOR EACH ROW EXECUTE FUNCTION bk_regress_slow_history();
SELECT snapshot_kind, state FROM bk_snapshot('incr');
SELECT kind, state, file_list IS NOT NULL AS lists_files
FROM bk_snapshot_history ORDER BY requested_time DESC LIMIT 1;
DROP TRIGGER bk_regress_slow ON bk_snapshot_history;
DROP FUNCTION bk_regress_slow_history();

-- An updated extension has what a new one has: the same functions, as
-- strict or not, and the same grants (none to PUBLIC).  From 0.8 on,
-- bk_snapshot_cancel(NULL) is refused, not a silent NULL.
\set bk_objects 'SELECT string_agg(o, E\'\\n\' ORDER BY o) FROM (SELECT p.oid::regprocedure::text || \' strict \' || p.proisstrict || \' \' || coalesce(p.proacl::text, \'default\') AS o FROM pg_proc p JOIN pg_depend d ON d.classid = \'pg_proc\'::regclass AND d.objid = p.oid JOIN pg_extension e ON d.refobjid = e.oid WHERE d.deptype = \'e\' AND e.extname = \'bk\' UNION ALL SELECT c.oid::regclass::text || \' \' || coalesce(c.relacl::text, \'default\') FROM pg_class c JOIN pg_depend d ON d.classid = \'pg_class\'::regclass AND d.objid = c.oid JOIN pg_extension e ON d.refobjid = e.oid WHERE d.deptype = \'e\' AND e.extname = \'bk\') s'
SELECT extversion AS fresh_version FROM pg_extension WHERE extname = 'bk';
:bk_objects \gset fresh_
SELECT :'fresh_string_agg' LIKE '%bk_snapshot_cancel(text) strict false %'
    AS cancel_not_strict;
SELECT count(*) FILTER (WHERE d.classid = 'pg_proc'::regclass
                          AND has_function_privilege('public', d.objid, 'execute'))
       AS public_functions,
       count(*) FILTER (WHERE d.classid = 'pg_class'::regclass
                          AND has_table_privilege('public', d.objid,
                              'select, insert, update, delete, truncate'))
       AS public_tables
FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid
WHERE d.deptype = 'e' AND e.extname = 'bk';
CREATE DATABASE regress_bk_update;
\c regress_bk_update
CREATE EXTENSION bk VERSION '0.6';
ALTER EXTENSION bk UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'bk';
:bk_objects \gset from06_
SELECT :'from06_string_agg' = :'fresh_string_agg' AS from_06_as_fresh;
DROP EXTENSION bk;
CREATE EXTENSION bk VERSION '0.7';
SELECT bk_snapshot_cancel(NULL) IS NULL AS silent_on_07;
ALTER EXTENSION bk UPDATE;
:bk_objects \gset from07_
SELECT :'from07_string_agg' = :'fresh_string_agg' AS from_07_as_fresh;
SELECT bk_snapshot_cancel(NULL);
\c :regress_db
DROP DATABASE regress_bk_update;
