/* extension/bk--0.1--0.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION bk UPDATE TO '0.2'" to load this file. \quit

-- Page digests of the relation files each snapshot read: one 64-bit digest
-- (XXH3) per 8 kB page, big-endian, in block order.  A differential or
-- incremental snapshot compares every page with its parent's digest, because
-- PostgreSQL changes some pages without moving their LSN (the SP-GiST
-- metapage, hint bits without data checksums, ...).  Unlogged: it costs no
-- WAL and is in no snapshot; a crash empties it, and a file whose parent
-- has no digests is then sent whole.  Only the snapshot worker uses it; it
-- keeps the maps of the snapshots a new one can build on, and of running
-- ones.
CREATE UNLOGGED TABLE bk_snapshot_blocks (
    snapshot_id     text NOT NULL,
    path            text NOT NULL,
    digests         bytea NOT NULL,
    PRIMARY KEY (snapshot_id, path)
);
-- Digests do not compress: store them out of line without trying.
ALTER TABLE bk_snapshot_blocks ALTER COLUMN digests SET STORAGE EXTERNAL;
COMMENT ON TABLE bk_snapshot_blocks IS
'bk: per-page digests of the relation files of recent snapshots, for incremental snapshots';

REVOKE ALL ON TABLE bk_snapshot_blocks FROM PUBLIC;
