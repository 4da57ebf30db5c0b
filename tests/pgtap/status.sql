--
-- tests/pgtap/status.sql: bk_status() against a live archiver.
--
-- Run with pg_prove against a server where bk archives to a reachable
-- Kafka (tests/integration/extension.t sets that up).  No transaction
-- around the tests: ALTER SYSTEM cannot run inside one, and the archiver
-- must see what we do.  Waits poll with a deadline, never sleep a fixed time.
--
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off

SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS bk;

-- Write a little WAL and switch to a new segment; returns the name of the
-- segment that was completed.
CREATE FUNCTION pg_temp.bk_switch_wal() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    written pg_lsn;
BEGIN
    written := pg_logical_emit_message(false, 'bk-pgtap', 'switch');
    PERFORM pg_switch_wal();
    RETURN pg_walfile_name(written);
END
$$;

-- Wait until pg_stat_archiver reports segment (or a later one) archived.
CREATE FUNCTION pg_temp.bk_wait_archived(segment text, timeout interval)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        IF (SELECT last_archived_wal >= segment FROM pg_stat_archiver) THEN
            RETURN true;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.2);
    END LOOP;
END
$$;

-- Wait until bk counts a failed attempt after failures_before; whenever
-- nothing waits for the archiver, give it a new segment to fail on.
CREATE FUNCTION pg_temp.bk_wait_failure(failures_before bigint,
                                        timeout interval)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
    status record;
BEGIN
    LOOP
        SELECT failed_count, backlog INTO status FROM bk_status();
        IF status.failed_count > failures_before THEN
            RETURN true;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RETURN false;
        END IF;
        IF status.backlog = 0 THEN
            PERFORM pg_temp.bk_switch_wal();
        END IF;
        PERFORM pg_sleep(0.2);
    END LOOP;
END
$$;

-- Wait until no .ready file is left.
CREATE FUNCTION pg_temp.bk_wait_drained(timeout interval) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
BEGIN
    LOOP
        IF (SELECT backlog = 0 FROM bk_status()) THEN
            RETURN true;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.2);
    END LOOP;
END
$$;

SELECT plan(20);

-- 1. A switched segment is archived, and bk_status() says so.
CREATE TEMP TABLE before_switch AS
SELECT archived_count, archived_bytes, sent_bytes FROM bk_status();
SELECT pg_temp.bk_switch_wal() AS segment \gset

SELECT ok(pg_temp.bk_wait_archived(:'segment', '60 s'),
          'the archiver archives the switched segment ' || :'segment');
SELECT cmp_ok((SELECT archived_count FROM bk_status()), '>',
              (SELECT archived_count FROM before_switch),
              'bk_status().archived_count increased');
SELECT cmp_ok((SELECT s.archived_bytes - b.archived_bytes
               FROM bk_status() s, before_switch b),
              '>=', 16777216::bigint,
              'archived_bytes grew by at least one 16 MiB segment');
SELECT cmp_ok((SELECT sent_bytes FROM bk_status()), '>',
              (SELECT sent_bytes FROM before_switch),
              'sent_bytes grew');
SELECT is((SELECT last_archived_file FROM bk_status()),
          (SELECT last_archived_wal FROM pg_stat_archiver),
          'last_archived_file is pg_stat_archiver.last_archived_wal');
SELECT is((SELECT pg_walfile_name(last_archived_lsn - 1) FROM bk_status()),
          (SELECT last_archived_file FROM bk_status()),
          'last_archived_lsn is the end of the last archived segment');
SELECT is((SELECT backlog FROM bk_status()), 0, 'no backlog');
SELECT cmp_ok((SELECT current_rpo FROM bk_status()), '<', interval '10 s',
              'the current RPO is small once everything is archived');

-- 2. Kafka unreachable: attempts fail, the file waits.
CREATE TEMP TABLE before_outage AS
SELECT failed_count FROM bk_status();
ALTER SYSTEM SET bk.kafka_brokers = '127.0.0.1:1';
SELECT ok(pg_reload_conf(), 'reloaded with an unreachable broker');

SELECT ok(pg_temp.bk_wait_failure(
              (SELECT failed_count FROM before_outage), '60 s'),
          'archiving fails while the broker is unreachable');
SELECT cmp_ok((SELECT failed_count FROM bk_status()), '>',
              (SELECT failed_count FROM before_outage),
              'bk_status().failed_count increased');
SELECT matches((SELECT last_failure FROM bk_status()), 'Kafka',
               'last_failure says Kafka failed');
SELECT cmp_ok((SELECT backlog FROM bk_status()), '>', 0,
              'the segment is backlog');
SELECT ok((SELECT last_failed_file || '.ready' IN
                  (SELECT pg_ls_dir('pg_wal/archive_status'))
           FROM bk_status()),
          'PostgreSQL keeps the .ready file of the failed segment');
SELECT ok((SELECT last_failed_time IS NOT NULL FROM bk_status()),
          'last_failed_time is set');
SELECT cmp_ok((SELECT current_rpo FROM bk_status()), '>', interval '0',
              'the current RPO grows while nothing is archived');

-- 3. Broker back: the backlog drains.
ALTER SYSTEM RESET bk.kafka_brokers;
SELECT ok(pg_reload_conf(), 'reloaded with the real broker');
SELECT ok(pg_temp.bk_wait_drained('90 s'), 'the backlog drains');
SELECT is((SELECT last_archived_file FROM bk_status()),
          (SELECT last_archived_wal FROM pg_stat_archiver),
          'bk_status() and pg_stat_archiver agree on the last archived file');
SELECT is((SELECT backlog FROM bk_status()), 0, 'backlog is 0 again');

SELECT * FROM finish();
