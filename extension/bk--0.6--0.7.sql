/* extension/bk--0.6--0.7.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION bk UPDATE TO '0.7'" to load this file. \quit

-- source_id, topic_prefix: where the snapshot went (bk.source_id, or the
-- system identifier, and bk.topic_prefix when it was taken).  A diff or
-- incr builds only on a parent sent to the same source and topics: after
-- either changes, the parent is in another archive, and the new source's
-- chain would be missing it.  Rows from before 0.7 say nothing (NULL) and
-- are no parent: a full snapshot starts the chain again.
ALTER TABLE bk_snapshot_history
    ADD COLUMN source_id text,
    ADD COLUMN topic_prefix text;
