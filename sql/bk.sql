--
-- bk: the extension's SQL surface.
--
-- Needs a server with shared_preload_libraries = 'bk' and a configured
-- archive module (tests/integration/extension.t sets one up, then runs
-- "make -C extension installcheck").  Everything printed here is
-- deterministic: values that differ between servers (system identifier,
-- key id, topic prefix, counters) are compared, not printed.
--
CREATE EXTENSION bk;

-- bk_status() returns one row with these columns.
SELECT p.proretset, p.prorettype::regtype, p.provolatile, p.prosecdef,
       p.proisstrict, array_to_string(p.proargmodes, '') AS modes
FROM pg_proc p
WHERE p.oid = 'bk_status()'::regprocedure;

SELECT a.n, a.name, format_type(a.type, NULL) AS type
FROM pg_proc p,
     unnest(p.proargnames, p.proallargtypes) WITH ORDINALITY AS a(name, type, n)
WHERE p.oid = 'bk_status()'::regprocedure
ORDER BY a.n;

-- Not executable by PUBLIC; granted to the NOLOGIN role bk_admin.
SELECT has_function_privilege('public', 'bk_status()', 'execute')
    AS public_may_execute;
SELECT has_function_privilege('bk_admin', 'bk_status()', 'execute')
    AS bk_admin_may_execute;
SELECT rolcanlogin FROM pg_roles WHERE rolname = 'bk_admin';
-- bk_monitor: bk_status() and the snapshots' progress, no snapshot.
SELECT has_function_privilege('bk_monitor', 'bk_status()', 'execute')
    AS bk_monitor_may_execute,
       has_table_privilege('bk_monitor', 'bk_snapshot_progress', 'select')
    AS bk_monitor_reads_progress,
       has_function_privilege('bk_monitor',
           'bk_snapshot(text,text,boolean,boolean)', 'execute')
    AS bk_monitor_may_snapshot,
       has_function_privilege('bk_monitor', 'bk_snapshot_cancel(text)',
           'execute')
    AS bk_monitor_may_cancel;
SELECT rolcanlogin FROM pg_roles WHERE rolname = 'bk_monitor';

CREATE ROLE regress_bk_user;
SET ROLE regress_bk_user;
SELECT archived_count >= 0 AS ok FROM bk_status();
RESET ROLE;
GRANT bk_admin TO regress_bk_user;
SET ROLE regress_bk_user;
SELECT archived_count >= 0 AS ok FROM bk_status();
RESET ROLE;

-- Reinstalling keeps working when bk_admin exists already.
DROP EXTENSION bk;
CREATE EXTENSION bk;
SELECT has_function_privilege('public', 'bk_status()', 'execute')
    AS public_may_execute;
SET ROLE regress_bk_user;
SELECT archived_count >= 0 AS ok FROM bk_status();
RESET ROLE;
REVOKE bk_admin FROM regress_bk_user;
DROP ROLE regress_bk_user;

-- What bk_status() reports, checked against the settings in effect.
\x on
SELECT source_id = coalesce(nullif(current_setting('bk.source_id'), ''),
                            (SELECT system_identifier::text
                             FROM pg_control_system())) AS source_id_ok,
       key_id ~ '^[0-9a-f]{16}$' AS key_id_is_hex,
       wal_topic = current_setting('bk.topic_prefix') || '.wal' AS wal_topic_ok,
       wait_for = current_setting('bk.wait_for') AS wait_for_ok,
       archived_count >= 0 AND archived_bytes >= 0 AND sent_bytes >= 0
           AS archive_counters_ok,
       failed_count >= 0 AS failed_count_ok,
       backlog >= 0 AS backlog_ok,
       current_rpo IS NULL OR current_rpo >= interval '0' AS current_rpo_ok,
       (target_rpo IS NULL) = (current_setting('bk.target_rpo') = '0')
           AS target_rpo_ok,
       forced_switches >= 0 AS forced_switches_ok
FROM bk_status();
\x off

-- The bk.* settings belong to the server (PGC_SIGHUP), not to sessions.
SET bk.chunk_size = 100;

-- ALTER SYSTEM validates a value before writing it; bad ones are refused
-- with the reason.
ALTER SYSTEM SET bk.chunk_size = 100;
ALTER SYSTEM SET bk.chunk_size = '17MB';
ALTER SYSTEM SET bk.topic_prefix = 'a b';
ALTER SYSTEM SET bk.topic_prefix = '';
ALTER SYSTEM SET bk.wait_for = 'nowhere';
ALTER SYSTEM SET bk.source_id = '../x';
ALTER SYSTEM SET bk.source_id = '..';
ALTER SYSTEM SET bk.source_id = '.spool';
ALTER SYSTEM SET bk.source_id = 'rejected';
ALTER SYSTEM SET bk.source_id = 'BK-Repository';
ALTER SYSTEM SET bk.kafka_properties = 'novalue';
ALTER SYSTEM SET bk.kafka_properties = 'no.such.property=1';
ALTER SYSTEM SET bk.kafka_properties = 'acks=1';
ALTER SYSTEM SET bk.kafka_properties = 'enable.idempotence=false';
ALTER SYSTEM SET bk.kafka_properties = 'plugin.library.paths=libx.so';
ALTER SYSTEM SET bk.kafka_properties = 'ssl.engine.location=/tmp/x.so';
ALTER SYSTEM SET bk.kafka_properties = 'ssl.providers=/tmp/x.so';
ALTER SYSTEM SET bk.kafka_properties = 'sasl.kerberos.kinit.cmd=touch /tmp/x';
ALTER SYSTEM SET bk.kafka_properties = 'internal.termination.signal=12';
ALTER SYSTEM SET bk.kafka_properties_file = 'kafka.properties';
ALTER SYSTEM SET bk.kafka_properties_file = '/nonexistent/kafka.properties';
ALTER SYSTEM SET bk.target_rpo = -1;
ALTER SYSTEM SET bk.target_rpo = '2d';
ALTER SYSTEM SET bk.kafka_timeout = '100ms';
ALTER SYSTEM SET bk.repository_timeout = 0;
ALTER SYSTEM SET bk.shutdown_timeout = '2d';
ALTER SYSTEM SET bk.no_such_setting = 1;

-- Good values are written (and removed again at once).
ALTER SYSTEM SET bk.chunk_size = '64kB';
ALTER SYSTEM SET bk.kafka_properties = 'security.protocol=plaintext;linger.ms=10';
ALTER SYSTEM SET bk.wait_for = 'repository';
SELECT name, setting FROM pg_file_settings
WHERE name LIKE 'bk.%' AND sourcefile LIKE '%postgresql.auto.conf'
ORDER BY name;
ALTER SYSTEM RESET bk.chunk_size;
ALTER SYSTEM RESET bk.kafka_properties;
ALTER SYSTEM RESET bk.wait_for;
SELECT count(*) FROM pg_file_settings
WHERE name LIKE 'bk.%' AND sourcefile LIKE '%postgresql.auto.conf'
  AND name IN ('bk.chunk_size', 'bk.kafka_properties', 'bk.wait_for');


-- Every function and relation of the extension, whichever script (install
-- or upgrade) made it, is closed to PUBLIC: an upgrade that adds one and
-- forgets its REVOKE shows up here.
SELECT p.oid::regprocedure AS function
FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
  AND d.refclassid = 'pg_extension'::regclass
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'bk')
  AND has_function_privilege('public', p.oid, 'execute')
ORDER BY 1;
SELECT c.oid::regclass AS relation
FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
  AND d.refclassid = 'pg_extension'::regclass
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'bk')
  AND has_table_privilege('public', c.oid,
          'select, insert, update, delete, truncate, references, trigger')
ORDER BY 1;

DROP EXTENSION bk;
