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

-- Snapshots (base backups streamed through Kafka), taken by a background
-- worker so the calling session holds nothing back and may go away.
-- The history says which snapshot a 'diff' or 'incr' builds on, and what
-- that parent held.  Only the worker writes it.
CREATE TABLE bk_snapshot_history (
    snapshot_id     text PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('full', 'diff', 'incr')),
    parent_id       text,
    state           text NOT NULL
                    CHECK (state IN ('running', 'complete', 'failed', 'cancelled')),
    label           text,
    requested_time  timestamptz NOT NULL,
    start_lsn       pg_lsn,
    stop_lsn        pg_lsn,
    start_time      timestamptz,
    stop_time       timestamptz,
    files           bigint,
    bytes_read      bigint,
    bytes_sent      bigint,
    error           text,
    file_list       text
);
COMMENT ON TABLE bk_snapshot_history IS
'bk snapshots taken by this cluster: kind, parent, LSNs, times, sizes, outcome';

CREATE FUNCTION bk_snapshot(
    kind text DEFAULT 'full',
    label text DEFAULT NULL,
    wait boolean DEFAULT true,
    fast boolean DEFAULT true,
    OUT snapshot_id text,
    OUT snapshot_kind text,
    OUT parent_id text,
    OUT state text,
    OUT start_lsn pg_lsn,
    OUT stop_lsn pg_lsn,
    OUT start_time timestamptz,
    OUT stop_time timestamptz,
    OUT files bigint,
    OUT bytes_read bigint,
    OUT bytes_sent bigint,
    OUT snapshot_label text
)
RETURNS record
AS 'MODULE_PATHNAME', 'bk_snapshot'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

COMMENT ON FUNCTION bk_snapshot(text, text, boolean, boolean) IS
'take a bk snapshot: kind full (default), diff or incr; wait => false returns at once; fast => false spreads the checkpoint';

CREATE FUNCTION bk_snapshot_cancel(snapshot_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'bk_snapshot_cancel'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION bk_snapshot_progress(
    OUT snapshot_id text,
    OUT kind text,
    OUT parent_id text,
    OUT state text,
    OUT phase text,
    OUT pid integer,
    OUT start_lsn pg_lsn,
    OUT stop_lsn pg_lsn,
    OUT start_time timestamptz,
    OUT stop_time timestamptz,
    OUT files_done bigint,
    OUT files_total bigint,
    OUT bytes_read bigint,
    OUT bytes_total bigint,
    OUT bytes_sent bigint,
    OUT checksum_failures bigint,
    OUT error text
)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'bk_snapshot_progress'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW bk_snapshot_progress AS SELECT * FROM bk_snapshot_progress();

REVOKE ALL ON TABLE bk_snapshot_history FROM PUBLIC;
REVOKE ALL ON FUNCTION bk_snapshot(text, text, boolean, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION bk_snapshot_cancel(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION bk_snapshot_progress() FROM PUBLIC;
REVOKE ALL ON bk_snapshot_progress FROM PUBLIC;
GRANT SELECT ON TABLE bk_snapshot_history TO bk_admin;
GRANT EXECUTE ON FUNCTION bk_snapshot(text, text, boolean, boolean) TO bk_admin;
GRANT EXECUTE ON FUNCTION bk_snapshot_cancel(text) TO bk_admin;
GRANT EXECUTE ON FUNCTION bk_snapshot_progress() TO bk_admin;
GRANT SELECT ON bk_snapshot_progress TO bk_admin;
