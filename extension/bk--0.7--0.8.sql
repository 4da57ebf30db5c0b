/* extension/bk--0.7--0.8.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION bk UPDATE TO '0.8'" to load this file. \quit

-- bk_snapshot_cancel(NULL) returned NULL without a word (STRICT), where
-- every other entry point refuses a NULL argument with a message: a NULL
-- id (an unset variable, an empty subquery) looked like a cancel that did
-- nothing.  The library refuses it now; ALTER FUNCTION keeps the grants.
ALTER FUNCTION bk_snapshot_cancel(text) CALLED ON NULL INPUT;
