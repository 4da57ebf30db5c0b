/* extension/bk--0.3--0.4.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION bk UPDATE TO '0.4'" to load this file. \quit

-- record_sent: the snapshot's record, which makes it restorable, was handed
-- to Kafka.  A snapshot that failed after that may still be in the
-- repository, where bk expire counts it as the newest; until a newer
-- snapshot completes, no diff or incr builds on an older parent that
-- expire may remove.
ALTER TABLE bk_snapshot_history
    ADD COLUMN record_sent boolean NOT NULL DEFAULT false;
