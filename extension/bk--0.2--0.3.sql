/* extension/bk--0.2--0.3.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION bk UPDATE TO '0.3'" to load this file. \quit

-- A snapshot sends a file larger than bk.snapshot_range_size in ranges,
-- read by several processes at once; each range keeps the digests of its
-- own pages, in a row of its own: first_block is the range's first block
-- (0 for a file read as one piece).  Rows kept before are whole files.
ALTER TABLE bk_snapshot_blocks ADD COLUMN first_block bigint NOT NULL DEFAULT 0;
ALTER TABLE bk_snapshot_blocks DROP CONSTRAINT bk_snapshot_blocks_pkey;
ALTER TABLE bk_snapshot_blocks ADD PRIMARY KEY (snapshot_id, path, first_block);
