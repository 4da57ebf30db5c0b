/* extension/bk--0.5--0.6.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION bk UPDATE TO '0.6'" to load this file. \quit

-- CALL bk_snapshot_wait(id): wait for a snapshot started with
-- bk_snapshot(wait => false) without holding a snapshot of the database,
-- which a waiting SELECT bk_snapshot() holds for the whole backup (VACUUM
-- cannot remove dead rows meanwhile).
CREATE PROCEDURE bk_snapshot_wait(snapshot_id text)
LANGUAGE C
AS 'MODULE_PATHNAME', 'bk_snapshot_wait';

COMMENT ON PROCEDURE bk_snapshot_wait(text) IS
'Wait, holding no database snapshot, until the bk snapshot ends; an error if it failed or was cancelled. CALL it outside a transaction block.';

REVOKE ALL ON PROCEDURE bk_snapshot_wait(text) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE bk_snapshot_wait(text) TO bk_admin;
