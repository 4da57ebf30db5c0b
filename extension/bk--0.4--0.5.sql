/* extension/bk--0.4--0.5.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION bk UPDATE TO '0.5'" to load this file. \quit

-- bk_monitor: what monitoring needs (bk_status(), bk_snapshot_progress)
-- and nothing else.  bk_admin also takes and cancels snapshots, which a
-- monitoring account's leaked password must not be able to do.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'bk_monitor') THEN
        CREATE ROLE bk_monitor NOLOGIN;
    END IF;
END
$$;

GRANT EXECUTE ON FUNCTION bk_status() TO bk_monitor;
GRANT EXECUTE ON FUNCTION bk_snapshot_progress() TO bk_monitor;
GRANT SELECT ON bk_snapshot_progress TO bk_monitor;
