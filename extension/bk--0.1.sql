/* extension/bk--0.1.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION bk" to load this file. \quit

-- The archiving and RPO state of this server in one row.  The archive
-- module itself needs no SQL objects (archive_library = 'bk'); this is what
-- an operator or a monitoring system reads.
CREATE FUNCTION bk_status(
    OUT source_id text,
    OUT key_id text,
    OUT wal_topic text,
    OUT wait_for text,
    OUT last_archived_file text,
    OUT last_archived_time timestamptz,
    OUT archived_count bigint,
    OUT archived_bytes bigint,
    OUT sent_bytes bigint,
    OUT failed_count bigint,
    OUT last_failed_file text,
    OUT last_failed_time timestamptz,
    OUT last_failure text,
    OUT backlog integer,
    OUT current_rpo interval,
    OUT target_rpo interval,
    OUT forced_switches bigint,
    OUT last_archived_lsn pg_lsn
)
RETURNS record
AS 'MODULE_PATHNAME', 'bk_status'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION bk_status() IS
'bk archiving status: counters, last success and failure, backlog, current and target RPO';

-- Not for everyone: the status names files, keys and failures.  Members of
-- bk_admin may call it.  The role is created if it does not exist yet (it
-- is global, so it outlives DROP EXTENSION and may already exist from an
-- earlier installation); NOLOGIN, it is only ever granted to other roles.
REVOKE ALL ON FUNCTION bk_status() FROM PUBLIC;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'bk_admin') THEN
        CREATE ROLE bk_admin NOLOGIN;
    END IF;
END
$$;

GRANT EXECUTE ON FUNCTION bk_status() TO bk_admin;
