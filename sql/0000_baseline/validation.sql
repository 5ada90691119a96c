-- 0000_baseline validation: the parts of the existing "Lead", "Job" and "Audit" tables that batch 0001 and
-- Batch 2 rely on. It also confirms a live database before the baseline is adopted (recorded, not run), so
-- it checks names, types, nullability and keys, never defaults or columns nobody relies on.
--
-- The engine runs this file in one transaction that is always rolled back and collects every row of
-- (check_name text, ok boolean, detail text); ok NULL counts as a failure. Every check yields its row even
-- when the object is missing (expected facts LEFT JOIN the catalog).

-- "a,b" for the attribute numbers of a table (a key, an index) in their declared order.
CREATE FUNCTION pg_temp.column_names(rel oid, attnums int2[]) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT string_agg(a.attname, ',' ORDER BY k.ord)
    FROM unnest(attnums) WITH ORDINALITY AS k (attnum, ord)
    JOIN pg_attribute a ON a.attrelid = rel AND a.attnum = k.attnum
$$;

-- Tables ------------------------------------------------------------------------------------------------

WITH expected (check_name, table_name) AS (
    VALUES ('table_lead_exists', 'Lead'),
           ('table_job_exists', 'Job'),
           ('table_audit_exists', 'Audit')
)
SELECT e.check_name,
       c.oid IS NOT NULL AS ok,
       'expected table ' || e.table_name || ' in schema ' || current_schema() || ', found '
           || coalesce('relkind ' || c.relkind::text, 'none') AS detail
FROM expected e
LEFT JOIN pg_class c
       ON c.relname = e.table_name AND c.relkind IN ('r', 'p')
      AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema());

-- Columns: type (format_type) and nullability of the columns later batches read or write -------------

WITH expected (check_name, table_name, column_name, column_type, not_null) AS (
    VALUES ('columns_lead', 'Lead', 'id', 'text', true),
           ('columns_lead', 'Lead', 'name', 'text', false),
           ('columns_lead', 'Lead', 'phone', 'text', false),
           ('columns_lead', 'Lead', 'email', 'text', false),
           ('columns_lead', 'Lead', 'address', 'text', false),
           ('columns_lead', 'Lead', 'channel', 'text', true),
           ('columns_lead', 'Lead', 'stateMetadata', 'jsonb', false),
           ('columns_lead', 'Lead', 'createdAt', 'timestamp(3) without time zone', true),
           ('columns_lead', 'Lead', 'updatedAt', 'timestamp(3) without time zone', true),
           ('columns_job', 'Job', 'id', 'text', true),
           ('columns_job', 'Job', 'leadId', 'text', true),
           ('columns_job', 'Job', 'createdAt', 'timestamp(3) without time zone', true),
           ('columns_job', 'Job', 'updatedAt', 'timestamp(3) without time zone', true),
           ('columns_audit', 'Audit', 'id', 'text', true),
           ('columns_audit', 'Audit', 'leadId', 'text', false),
           ('columns_audit', 'Audit', 'jobId', 'text', false),
           ('columns_audit', 'Audit', 'action', 'text', true),
           ('columns_audit', 'Audit', 'actor', 'text', false),
           ('columns_audit', 'Audit', 'data', 'jsonb', false),
           ('columns_audit', 'Audit', 'createdAt', 'timestamp(3) without time zone', true)
),
found AS (
    SELECT c.relname AS table_name, a.attname AS column_name,
           format_type(a.atttypid, a.atttypmod) AS column_type, a.attnotnull AS not_null
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p')
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
    WHERE a.attnum > 0 AND NOT a.attisdropped
)
SELECT e.check_name,
       bool_and(f.column_type IS NOT DISTINCT FROM e.column_type AND f.not_null IS NOT DISTINCT FROM e.not_null) AS ok,
       'expected ' || min(e.table_name) || ' columns '
           || string_agg(e.column_name || ' ' || e.column_type || CASE WHEN e.not_null THEN ' not null' ELSE ' null' END,
                         ', ' ORDER BY e.column_name)
           || '; found ' || coalesce(
               string_agg(e.column_name || ' ' || coalesce(f.column_type || CASE WHEN f.not_null THEN ' not null' ELSE ' null' END, 'missing'),
                          ', ' ORDER BY e.column_name)
                   FILTER (WHERE f.column_type IS DISTINCT FROM e.column_type OR f.not_null IS DISTINCT FROM e.not_null),
               'all of them as expected') AS detail
FROM expected e
LEFT JOIN found f USING (table_name, column_name)
GROUP BY e.check_name;

-- Primary keys (Prisma names them "<Table>_pkey") -------------------------------------------------------

WITH expected (check_name, table_name, constraint_name, columns) AS (
    VALUES ('pk_lead', 'Lead', 'Lead_pkey', 'id'),
           ('pk_job', 'Job', 'Job_pkey', 'id'),
           ('pk_audit', 'Audit', 'Audit_pkey', 'id')
),
found AS (
    SELECT c.relname AS table_name, k.conname AS constraint_name,
           pg_temp.column_names(k.conrelid, k.conkey) AS columns
    FROM pg_constraint k
    JOIN pg_class c ON c.oid = k.conrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
    WHERE k.contype = 'p'
)
SELECT e.check_name,
       coalesce(f.constraint_name = e.constraint_name AND f.columns = e.columns, false) AS ok,
       'expected primary key ' || e.constraint_name || ' on ' || e.table_name || ' (' || e.columns || '), found '
           || coalesce(f.constraint_name || ' (' || f.columns || ')', 'none') AS detail
FROM expected e
LEFT JOIN found f USING (table_name);

-- The job -> lead link Batch 2 follows to give jobs the customer of their lead ---------------------------

SELECT 'fk_job_lead_id' AS check_name,
       coalesce(pg_temp.column_names(k.conrelid, k.conkey) = 'leadId' AND r.relname = 'Lead'
                AND pg_temp.column_names(k.confrelid, k.confkey) = 'id' AND k.convalidated, false) AS ok,
       'expected validated foreign key Job_leadId_fkey on Job (leadId) referencing Lead (id), found '
           || coalesce(pg_get_constraintdef(k.oid), 'none') AS detail
FROM (VALUES (1)) AS one (x)
LEFT JOIN (pg_constraint k
           JOIN pg_class c ON c.oid = k.conrelid AND c.relname = 'Job'
           JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
           JOIN pg_class r ON r.oid = k.confrelid)
       ON k.conname = 'Job_leadId_fkey' AND k.contype = 'f';

-- Server: batch 0001 defaults every new id to gen_random_uuid() (built in since PostgreSQL 13) -----------

SELECT 'gen_random_uuid_available' AS check_name,
       to_regprocedure('gen_random_uuid()') IS NOT NULL AS ok,
       'expected function gen_random_uuid() (PostgreSQL 13 or later), found '
           || coalesce(to_regprocedure('gen_random_uuid()')::text, 'none') || ' on PostgreSQL '
           || current_setting('server_version') AS detail;
