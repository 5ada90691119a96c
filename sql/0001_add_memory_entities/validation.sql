-- 0001_add_memory_entities validation: every catalog fact of the batch, then the delete behaviour on test
-- rows that live only inside this transaction.
--
-- The engine runs this file in one transaction that is always rolled back and collects every row of
-- (check_name text, ok boolean, detail text); ok NULL counts as a failure. Every check yields its row even
-- when the object is missing: catalog checks LEFT JOIN a list of expected facts to the catalog, and the
-- behaviour checks run in pg_temp functions that catch errors, so a missing table fails checks instead of
-- aborting the run.

-- "a,b" for the attribute numbers of a table (a key, an index) in their declared order.
CREATE FUNCTION pg_temp.column_names(rel oid, attnums int2[]) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT string_agg(a.attname, ',' ORDER BY k.ord)
    FROM unnest(attnums) WITH ORDINALITY AS k (attnum, ord)
    JOIN pg_attribute a ON a.attrelid = rel AND a.attnum = k.attnum
$$;

-- Tables ------------------------------------------------------------------------------------------------

WITH expected (check_name, table_name) AS (
    VALUES ('table_customer_exists', 'Customer'),
           ('table_customer_address_exists', 'CustomerAddress'),
           ('table_conversation_exists', 'Conversation'),
           ('table_message_exists', 'Message'),
           ('table_memory_note_exists', 'MemoryNote'),
           ('table_job_item_exists', 'JobItem'),
           ('table_job_event_exists', 'JobEvent')
)
SELECT e.check_name,
       c.oid IS NOT NULL AS ok,
       'expected table ' || e.table_name || ' in schema ' || current_schema() || ', found '
           || coalesce('relkind ' || c.relkind::text, 'none') AS detail
FROM expected e
LEFT JOIN pg_class c
       ON c.relname = e.table_name AND c.relkind IN ('r', 'p')
      AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema());

-- Columns: type (format_type) and nullability; the new tables must have exactly these columns ---------

WITH expected (check_name, table_name, column_name, column_type, not_null) AS (
    VALUES ('columns_customer', 'Customer', 'id', 'text', true),
           ('columns_customer', 'Customer', 'name', 'text', false),
           ('columns_customer', 'Customer', 'phone', 'text', false),
           ('columns_customer', 'Customer', 'email', 'text', false),
           ('columns_customer', 'Customer', 'metadata', 'jsonb', true),
           ('columns_customer', 'Customer', 'created_at', 'timestamp(3) without time zone', true),
           ('columns_customer', 'Customer', 'updated_at', 'timestamp(3) without time zone', true),

           ('columns_customer_address', 'CustomerAddress', 'id', 'text', true),
           ('columns_customer_address', 'CustomerAddress', 'customer_id', 'text', true),
           ('columns_customer_address', 'CustomerAddress', 'address', 'text', true),
           ('columns_customer_address', 'CustomerAddress', 'city', 'text', false),
           ('columns_customer_address', 'CustomerAddress', 'state', 'text', false),
           ('columns_customer_address', 'CustomerAddress', 'zip', 'text', false),
           ('columns_customer_address', 'CustomerAddress', 'lat', 'double precision', false),
           ('columns_customer_address', 'CustomerAddress', 'lng', 'double precision', false),
           ('columns_customer_address', 'CustomerAddress', 'is_primary', 'boolean', true),
           ('columns_customer_address', 'CustomerAddress', 'created_at', 'timestamp(3) without time zone', true),
           ('columns_customer_address', 'CustomerAddress', 'updated_at', 'timestamp(3) without time zone', true),

           ('columns_conversation', 'Conversation', 'id', 'text', true),
           ('columns_conversation', 'Conversation', 'customer_id', 'text', false),
           ('columns_conversation', 'Conversation', 'lead_id', 'text', false),
           ('columns_conversation', 'Conversation', 'channel', 'text', true),
           ('columns_conversation', 'Conversation', 'external_id', 'text', true),
           ('columns_conversation', 'Conversation', 'started_at', 'timestamp(3) without time zone', true),
           ('columns_conversation', 'Conversation', 'last_message_at', 'timestamp(3) without time zone', false),
           ('columns_conversation', 'Conversation', 'metadata', 'jsonb', true),
           ('columns_conversation', 'Conversation', 'created_at', 'timestamp(3) without time zone', true),
           ('columns_conversation', 'Conversation', 'updated_at', 'timestamp(3) without time zone', true),

           ('columns_message', 'Message', 'id', 'text', true),
           ('columns_message', 'Message', 'conversation_id', 'text', true),
           ('columns_message', 'Message', 'role', '"MessageRole"', true),
           ('columns_message', 'Message', 'content', 'text', true),
           ('columns_message', 'Message', 'metadata', 'jsonb', true),
           ('columns_message', 'Message', 'created_at', 'timestamp(3) without time zone', true),

           ('columns_memory_note', 'MemoryNote', 'id', 'text', true),
           ('columns_memory_note', 'MemoryNote', 'customer_id', 'text', true),
           ('columns_memory_note', 'MemoryNote', 'conversation_id', 'text', false),
           ('columns_memory_note', 'MemoryNote', 'content', 'text', true),
           ('columns_memory_note', 'MemoryNote', 'metadata', 'jsonb', true),
           ('columns_memory_note', 'MemoryNote', 'expires_at', 'timestamp(3) without time zone', false),
           ('columns_memory_note', 'MemoryNote', 'created_at', 'timestamp(3) without time zone', true),
           ('columns_memory_note', 'MemoryNote', 'updated_at', 'timestamp(3) without time zone', true),

           ('columns_job_item', 'JobItem', 'id', 'text', true),
           ('columns_job_item', 'JobItem', 'job_id', 'text', true),
           ('columns_job_item', 'JobItem', 'description', 'text', true),
           ('columns_job_item', 'JobItem', 'quantity', 'numeric(10,2)', true),
           ('columns_job_item', 'JobItem', 'unit_price', 'numeric(10,2)', true),
           ('columns_job_item', 'JobItem', 'total', 'numeric(10,2)', true),
           ('columns_job_item', 'JobItem', 'metadata', 'jsonb', true),
           ('columns_job_item', 'JobItem', 'created_at', 'timestamp(3) without time zone', true),
           ('columns_job_item', 'JobItem', 'updated_at', 'timestamp(3) without time zone', true),

           ('columns_job_event', 'JobEvent', 'id', 'text', true),
           ('columns_job_event', 'JobEvent', 'job_id', 'text', true),
           ('columns_job_event', 'JobEvent', 'event_type', 'text', true),
           ('columns_job_event', 'JobEvent', 'actor', 'text', false),
           ('columns_job_event', 'JobEvent', 'metadata', 'jsonb', true),
           ('columns_job_event', 'JobEvent', 'created_at', 'timestamp(3) without time zone', true),

           ('column_lead_customer_id', 'Lead', 'customer_id', 'text', false),
           ('column_job_customer_id', 'Job', 'customer_id', 'text', false)
),
found AS (
    SELECT c.relname AS table_name, a.attname AS column_name,
           format_type(a.atttypid, a.atttypmod) AS column_type, a.attnotnull AS not_null
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p')
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
    WHERE a.attnum > 0 AND NOT a.attisdropped
),
new_tables (table_name) AS (
    SELECT DISTINCT table_name FROM expected WHERE table_name NOT IN ('Lead', 'Job')
),
unexpected AS (
    SELECT f.table_name || '.' || f.column_name AS name
    FROM found f
    JOIN new_tables USING (table_name)
    LEFT JOIN expected e USING (table_name, column_name)
    WHERE e.column_name IS NULL
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
GROUP BY e.check_name
UNION ALL
SELECT 'no_unexpected_columns_on_new_tables',
       count(*) = 0,
       'expected only the declared columns on the new tables, found extra: ' || coalesce(string_agg(name, ', ' ORDER BY name), 'none')
FROM unexpected
ORDER BY 1;

-- Primary keys ------------------------------------------------------------------------------------------

WITH expected (check_name, table_name, constraint_name, columns) AS (
    VALUES ('pk_customer', 'Customer', 'Customer_pkey', 'id'),
           ('pk_customer_address', 'CustomerAddress', 'CustomerAddress_pkey', 'id'),
           ('pk_conversation', 'Conversation', 'Conversation_pkey', 'id'),
           ('pk_message', 'Message', 'Message_pkey', 'id'),
           ('pk_memory_note', 'MemoryNote', 'MemoryNote_pkey', 'id'),
           ('pk_job_item', 'JobItem', 'JobItem_pkey', 'id'),
           ('pk_job_event', 'JobEvent', 'JobEvent_pkey', 'id')
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

-- Foreign keys: columns, referenced table, delete rule, ON UPDATE CASCADE (Prisma's), validated --------

WITH expected (check_name, table_name, constraint_name, columns, ref_table, on_delete) AS (
    VALUES ('fk_customer_address_customer_id', 'CustomerAddress', 'CustomerAddress_customer_id_fkey', 'customer_id', 'Customer', 'CASCADE'),
           ('fk_conversation_customer_id', 'Conversation', 'Conversation_customer_id_fkey', 'customer_id', 'Customer', 'SET NULL'),
           ('fk_conversation_lead_id', 'Conversation', 'Conversation_lead_id_fkey', 'lead_id', 'Lead', 'SET NULL'),
           ('fk_message_conversation_id', 'Message', 'Message_conversation_id_fkey', 'conversation_id', 'Conversation', 'CASCADE'),
           ('fk_memory_note_customer_id', 'MemoryNote', 'MemoryNote_customer_id_fkey', 'customer_id', 'Customer', 'CASCADE'),
           ('fk_memory_note_conversation_id', 'MemoryNote', 'MemoryNote_conversation_id_fkey', 'conversation_id', 'Conversation', 'SET NULL'),
           ('fk_job_item_job_id', 'JobItem', 'JobItem_job_id_fkey', 'job_id', 'Job', 'CASCADE'),
           ('fk_job_event_job_id', 'JobEvent', 'JobEvent_job_id_fkey', 'job_id', 'Job', 'CASCADE'),
           ('fk_lead_customer_id', 'Lead', 'Lead_customer_id_fkey', 'customer_id', 'Customer', 'SET NULL'),
           ('fk_job_customer_id', 'Job', 'Job_customer_id_fkey', 'customer_id', 'Customer', 'SET NULL')
),
found AS (
    SELECT c.relname AS table_name, k.conname AS constraint_name,
           pg_temp.column_names(k.conrelid, k.conkey) AS columns,
           r.relname AS ref_table, pg_temp.column_names(k.confrelid, k.confkey) AS ref_columns,
           CASE k.confdeltype WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE'
                              WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' END AS on_delete,
           k.confupdtype = 'c' AS update_cascades,
           k.convalidated,
           pg_get_constraintdef(k.oid) AS definition
    FROM pg_constraint k
    JOIN pg_class c ON c.oid = k.conrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
    JOIN pg_class r ON r.oid = k.confrelid
    WHERE k.contype = 'f'
)
SELECT e.check_name,
       coalesce(f.columns = e.columns AND f.ref_table = e.ref_table AND f.ref_columns = 'id'
                AND f.on_delete = e.on_delete AND f.update_cascades AND f.convalidated, false) AS ok,
       'expected validated ' || e.constraint_name || ' on ' || e.table_name || ': FOREIGN KEY (' || e.columns
           || ') REFERENCES ' || e.ref_table || '(id) ON UPDATE CASCADE ON DELETE ' || e.on_delete || ', found '
           || coalesce(f.definition || CASE WHEN f.convalidated THEN ' (validated)' ELSE '' END, 'none') AS detail
FROM expected e
LEFT JOIN found f USING (table_name, constraint_name);

-- The unique key inbound messages are matched on ---------------------------------------------------------

SELECT 'unique_conversation_channel_external_id' AS check_name,
       coalesce(pg_temp.column_names(k.conrelid, k.conkey) = 'channel,external_id' AND x.indisvalid, false) AS ok,
       'expected unique constraint Conversation_channel_external_id_key on Conversation (channel,external_id) '
           || 'with a valid index, found '
           || coalesce(pg_get_constraintdef(k.oid) || CASE WHEN x.indisvalid THEN ', index valid' ELSE ', index INVALID' END,
                       'none') AS detail
FROM (VALUES (1)) AS one (x)
LEFT JOIN (pg_constraint k
           JOIN pg_class c ON c.oid = k.conrelid AND c.relname = 'Conversation'
           JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
           JOIN pg_index x ON x.indexrelid = k.conindid)
       ON k.conname = 'Conversation_channel_external_id_key' AND k.contype = 'u';

-- Indexes: name, table, columns in order, plain btree, valid; and nothing else on the new tables --------

WITH expected (check_name, index_name, table_name, columns) AS (
    VALUES ('index_customer_phone', 'Customer_phone_idx', 'Customer', 'phone'),
           ('index_customer_email', 'Customer_email_idx', 'Customer', 'email'),
           ('index_customer_created_at', 'Customer_created_at_idx', 'Customer', 'created_at'),
           ('index_customer_address_customer_id', 'CustomerAddress_customer_id_idx', 'CustomerAddress', 'customer_id'),
           ('index_customer_address_customer_id_is_primary', 'CustomerAddress_customer_id_is_primary_idx', 'CustomerAddress', 'customer_id,is_primary'),
           ('index_conversation_customer_id', 'Conversation_customer_id_idx', 'Conversation', 'customer_id'),
           ('index_conversation_lead_id', 'Conversation_lead_id_idx', 'Conversation', 'lead_id'),
           ('index_conversation_last_message_at', 'Conversation_last_message_at_idx', 'Conversation', 'last_message_at'),
           ('index_conversation_started_at', 'Conversation_started_at_idx', 'Conversation', 'started_at'),
           ('index_message_conversation_id', 'Message_conversation_id_idx', 'Message', 'conversation_id'),
           ('index_message_conversation_id_created_at', 'Message_conversation_id_created_at_idx', 'Message', 'conversation_id,created_at'),
           ('index_message_created_at', 'Message_created_at_idx', 'Message', 'created_at'),
           ('index_memory_note_customer_id', 'MemoryNote_customer_id_idx', 'MemoryNote', 'customer_id'),
           ('index_memory_note_conversation_id', 'MemoryNote_conversation_id_idx', 'MemoryNote', 'conversation_id'),
           ('index_memory_note_created_at', 'MemoryNote_created_at_idx', 'MemoryNote', 'created_at'),
           ('index_memory_note_expires_at', 'MemoryNote_expires_at_idx', 'MemoryNote', 'expires_at'),
           ('index_job_item_job_id', 'JobItem_job_id_idx', 'JobItem', 'job_id'),
           ('index_job_event_job_id', 'JobEvent_job_id_idx', 'JobEvent', 'job_id'),
           ('index_job_event_job_id_created_at', 'JobEvent_job_id_created_at_idx', 'JobEvent', 'job_id,created_at'),
           ('index_job_event_event_type', 'JobEvent_event_type_idx', 'JobEvent', 'event_type'),
           ('index_lead_customer_id', 'Lead_customer_id_idx', 'Lead', 'customer_id'),
           ('index_job_customer_id', 'Job_customer_id_idx', 'Job', 'customer_id')
),
found AS (
    SELECT i.relname AS index_name, t.relname AS table_name,
           pg_temp.column_names(x.indrelid, x.indkey::int2[]) AS columns,
           x.indisvalid AND x.indisready AS valid,
           NOT x.indisunique AND x.indpred IS NULL AND x.indexprs IS NULL AND am.amname = 'btree' AS plain_btree,
           pg_get_indexdef(i.oid) AS definition
    FROM pg_index x
    JOIN pg_class i ON i.oid = x.indexrelid
    JOIN pg_class t ON t.oid = x.indrelid
    JOIN pg_namespace n ON n.oid = i.relnamespace AND n.nspname = current_schema()
    JOIN pg_am am ON am.oid = i.relam
),
keys (index_name) AS (
    VALUES ('Customer_pkey'), ('CustomerAddress_pkey'), ('Conversation_pkey'), ('Message_pkey'),
           ('MemoryNote_pkey'), ('JobItem_pkey'), ('JobEvent_pkey'), ('Conversation_channel_external_id_key')
),
unexpected AS (
    SELECT f.index_name || CASE WHEN f.valid THEN '' ELSE ' (INVALID)' END AS name
    FROM found f
    WHERE f.table_name IN ('Customer', 'CustomerAddress', 'Conversation', 'Message', 'MemoryNote', 'JobItem', 'JobEvent')
      AND f.index_name NOT IN (SELECT index_name FROM expected UNION ALL SELECT index_name FROM keys)
)
SELECT e.check_name,
       coalesce(f.table_name = e.table_name AND f.columns = e.columns AND f.valid AND f.plain_btree, false) AS ok,
       'expected valid btree index ' || e.index_name || ' on ' || e.table_name || ' (' || e.columns || '), found '
           || coalesce(f.definition || CASE WHEN f.valid THEN ' (valid)' ELSE ' (INVALID)' END, 'none') AS detail
FROM expected e
LEFT JOIN found f USING (index_name)
UNION ALL
SELECT 'no_unexpected_indexes_on_new_tables',
       count(*) = 0,
       'expected only the declared indexes and keys on the new tables, found extra: '
           || coalesce(string_agg(name, ', ' ORDER BY name), 'none')
FROM unexpected
ORDER BY 1;

-- A CREATE INDEX CONCURRENTLY that failed leaves an INVALID index that still slows down every write.
SELECT 'no_invalid_indexes_on_lead_job' AS check_name,
       count(i.relname) = 0 AS ok,
       'expected every index on Lead and Job valid, found invalid: '
           || coalesce(string_agg(i.relname, ', ' ORDER BY i.relname), 'none') AS detail
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid AND t.relname IN ('Lead', 'Job')
JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = current_schema()
WHERE NOT (x.indisvalid AND x.indisready);

-- Enum --------------------------------------------------------------------------------------------------

SELECT 'enum_message_role_labels' AS check_name,
       coalesce(labels = 'user,assistant,system,tool', false) AS ok,
       'expected MessageRole labels user,assistant,system,tool, found ' || coalesce(labels, 'none') AS detail
FROM (
    SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) AS labels
    FROM pg_type t
    JOIN pg_namespace n ON n.oid = t.typnamespace AND n.nspname = current_schema()
    JOIN pg_enum e ON e.enumtypid = t.oid
    WHERE t.typname = 'MessageRole'
) AS found;

-- Behaviour ---------------------------------------------------------------------------------------------
-- Each scenario inserts its own rows (fresh UUIDs), deletes one parent and returns what it observes as
-- jsonb, or {"error": ...} when a statement fails. Of "Lead" and "Job" only the columns the baseline
-- validation checks are filled in, so the scenarios also run on an adopted production schema.

CREATE FUNCTION pg_temp.after_customer_delete() RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_customer text := gen_random_uuid()::text;
    v_lead text := gen_random_uuid()::text;
    v_job text := gen_random_uuid()::text;
    v_conversation text := gen_random_uuid()::text;
    v_address text := gen_random_uuid()::text;
    v_note text := gen_random_uuid()::text;
BEGIN
    INSERT INTO "Customer" ("id", "name") VALUES (v_customer, 'validation customer');
    INSERT INTO "Lead" ("id", "name", "customer_id", "updatedAt") VALUES (v_lead, 'validation lead', v_customer, CURRENT_TIMESTAMP);
    INSERT INTO "Job" ("id", "leadId", "customer_id", "updatedAt") VALUES (v_job, v_lead, v_customer, CURRENT_TIMESTAMP);
    INSERT INTO "Conversation" ("id", "customer_id", "channel", "external_id")
    VALUES (v_conversation, v_customer, 'validation', v_conversation);
    INSERT INTO "CustomerAddress" ("id", "customer_id", "address") VALUES (v_address, v_customer, '1 Validation Way');
    INSERT INTO "MemoryNote" ("id", "customer_id", "content") VALUES (v_note, v_customer, 'validation note');
    DELETE FROM "Customer" WHERE "id" = v_customer;
    RETURN jsonb_build_object(
        'leads_kept_unlinked', (SELECT count(*) FROM "Lead" WHERE "id" = v_lead AND "customer_id" IS NULL),
        'jobs_kept_unlinked', (SELECT count(*) FROM "Job" WHERE "id" = v_job AND "customer_id" IS NULL),
        'conversations_kept_unlinked',
            (SELECT count(*) FROM "Conversation" WHERE "id" = v_conversation AND "customer_id" IS NULL),
        'addresses_left', (SELECT count(*) FROM "CustomerAddress" WHERE "id" = v_address),
        'notes_left', (SELECT count(*) FROM "MemoryNote" WHERE "id" = v_note));
EXCEPTION WHEN OTHERS THEN
    RETURN jsonb_build_object('error', SQLSTATE || ' ' || SQLERRM);
END
$$;

CREATE FUNCTION pg_temp.after_job_delete() RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_lead text := gen_random_uuid()::text;
    v_job text := gen_random_uuid()::text;
BEGIN
    INSERT INTO "Lead" ("id", "name", "updatedAt") VALUES (v_lead, 'validation lead', CURRENT_TIMESTAMP);
    INSERT INTO "Job" ("id", "leadId", "updatedAt") VALUES (v_job, v_lead, CURRENT_TIMESTAMP);
    INSERT INTO "JobItem" ("job_id", "description", "quantity", "unit_price", "total")
    VALUES (v_job, 'sofa', 1, 80.00, 80.00), (v_job, 'mattress', 2, 45.50, 91.00);
    INSERT INTO "JobEvent" ("job_id", "event_type", "actor")
    VALUES (v_job, 'scheduled', 'validation'), (v_job, 'completed', NULL);
    DELETE FROM "Job" WHERE "id" = v_job;
    RETURN jsonb_build_object(
        'items_left', (SELECT count(*) FROM "JobItem" WHERE "job_id" = v_job),
        'events_left', (SELECT count(*) FROM "JobEvent" WHERE "job_id" = v_job));
EXCEPTION WHEN OTHERS THEN
    RETURN jsonb_build_object('error', SQLSTATE || ' ' || SQLERRM);
END
$$;

CREATE FUNCTION pg_temp.after_conversation_delete() RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_customer text := gen_random_uuid()::text;
    v_conversation text := gen_random_uuid()::text;
    v_note text := gen_random_uuid()::text;
BEGIN
    INSERT INTO "Customer" ("id") VALUES (v_customer);
    INSERT INTO "Conversation" ("id", "customer_id", "channel", "external_id")
    VALUES (v_conversation, v_customer, 'validation', v_conversation);
    INSERT INTO "Message" ("conversation_id", "role", "content")
    VALUES (v_conversation, 'user', 'I have a couch to haul'), (v_conversation, 'assistant', 'We can take it Tuesday');
    INSERT INTO "MemoryNote" ("id", "customer_id", "conversation_id", "content")
    VALUES (v_note, v_customer, v_conversation, 'has a couch');
    DELETE FROM "Conversation" WHERE "id" = v_conversation;
    RETURN jsonb_build_object(
        'messages_left', (SELECT count(*) FROM "Message" WHERE "conversation_id" = v_conversation),
        'notes_kept_unlinked', (SELECT count(*) FROM "MemoryNote" WHERE "id" = v_note AND "conversation_id" IS NULL));
EXCEPTION WHEN OTHERS THEN
    RETURN jsonb_build_object('error', SQLSTATE || ' ' || SQLERRM);
END
$$;

CREATE FUNCTION pg_temp.after_lead_delete() RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_lead text := gen_random_uuid()::text;
    v_conversation text := gen_random_uuid()::text;
BEGIN
    INSERT INTO "Lead" ("id", "name", "updatedAt") VALUES (v_lead, 'validation lead', CURRENT_TIMESTAMP);
    INSERT INTO "Conversation" ("id", "lead_id", "channel", "external_id")
    VALUES (v_conversation, v_lead, 'validation', v_conversation);
    DELETE FROM "Lead" WHERE "id" = v_lead;
    RETURN jsonb_build_object(
        'conversations_kept_unlinked',
            (SELECT count(*) FROM "Conversation" WHERE "id" = v_conversation AND "lead_id" IS NULL));
EXCEPTION WHEN OTHERS THEN
    RETURN jsonb_build_object('error', SQLSTATE || ' ' || SQLERRM);
END
$$;

CREATE FUNCTION pg_temp.new_customer_defaults() RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_id text;
    v_metadata jsonb;
    v_timestamps_set boolean;
BEGIN
    INSERT INTO "Customer" DEFAULT VALUES
    RETURNING "id", "metadata", "created_at" IS NOT NULL AND "updated_at" IS NOT NULL
    INTO v_id, v_metadata, v_timestamps_set;
    RETURN jsonb_build_object(
        'id_is_uuid', v_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$',
        'metadata', v_metadata,
        'timestamps_set', v_timestamps_set);
EXCEPTION WHEN OTHERS THEN
    RETURN jsonb_build_object('error', SQLSTATE || ' ' || SQLERRM);
END
$$;

WITH observed (scenario, found) AS MATERIALIZED (
    VALUES ('deleting a Customer', pg_temp.after_customer_delete()),
           ('deleting a Job', pg_temp.after_job_delete()),
           ('deleting a Conversation', pg_temp.after_conversation_delete()),
           ('deleting a Lead', pg_temp.after_lead_delete()),
           ('inserting a Customer with DEFAULT VALUES', pg_temp.new_customer_defaults())
),
expected (check_name, scenario, observation, value) AS (
    VALUES ('delete_customer_nulls_lead_customer_id', 'deleting a Customer', 'leads_kept_unlinked', '1'::jsonb),
           ('delete_customer_nulls_job_customer_id', 'deleting a Customer', 'jobs_kept_unlinked', '1'),
           ('delete_customer_nulls_conversation_customer_id', 'deleting a Customer', 'conversations_kept_unlinked', '1'),
           ('delete_customer_cascades_to_customer_address', 'deleting a Customer', 'addresses_left', '0'),
           ('delete_customer_cascades_to_memory_note', 'deleting a Customer', 'notes_left', '0'),
           ('delete_job_cascades_to_job_item', 'deleting a Job', 'items_left', '0'),
           ('delete_job_cascades_to_job_event', 'deleting a Job', 'events_left', '0'),
           ('delete_conversation_cascades_to_message', 'deleting a Conversation', 'messages_left', '0'),
           ('delete_conversation_nulls_memory_note_conversation_id', 'deleting a Conversation', 'notes_kept_unlinked', '1'),
           ('delete_lead_nulls_conversation_lead_id', 'deleting a Lead', 'conversations_kept_unlinked', '1'),
           ('new_customer_gets_uuid_id', 'inserting a Customer with DEFAULT VALUES', 'id_is_uuid', 'true'),
           ('new_customer_gets_empty_metadata', 'inserting a Customer with DEFAULT VALUES', 'metadata', '{}'),
           ('new_customer_gets_timestamps', 'inserting a Customer with DEFAULT VALUES', 'timestamps_set', 'true')
)
SELECT e.check_name,
       coalesce(o.found -> e.observation = e.value, false) AS ok,
       'after ' || e.scenario || ' expected ' || e.observation || ' = ' || e.value::text || ', found '
           || coalesce('error ' || (o.found ->> 'error'), e.observation || ' = ' || (o.found -> e.observation)::text, 'nothing')
           AS detail
FROM expected e
LEFT JOIN observed o USING (scenario);

-- A second conversation with the same (channel, external_id) must fail on the unique key.
CREATE FUNCTION pg_temp.duplicate_conversation_rejected() RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_external_id text := gen_random_uuid()::text;
    v_constraint text;
BEGIN
    INSERT INTO "Conversation" ("channel", "external_id") VALUES ('validation', v_external_id);
    INSERT INTO "Conversation" ("channel", "external_id") VALUES ('validation', v_external_id);
    RETURN false;
EXCEPTION
    WHEN unique_violation THEN
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
        RETURN v_constraint = 'Conversation_channel_external_id_key';
    WHEN OTHERS THEN
        RETURN NULL;
END
$$;

SELECT 'duplicate_conversation_channel_external_id_rejected' AS check_name,
       rejected AS ok,
       'expected a second Conversation with the same (channel, external_id) to violate '
           || 'Conversation_channel_external_id_key, found '
           || CASE WHEN rejected THEN 'that violation'
                   WHEN NOT rejected THEN 'the duplicate accepted, or another key violated'
                   ELSE 'another error (is the table there?)' END AS detail
FROM (SELECT pg_temp.duplicate_conversation_rejected() AS rejected) AS attempt;
