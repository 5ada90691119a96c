-- 0002_backfill_customers: the machinery of the backfill; the data itself moves in chunks afterwards.
-- See README.md for the dedupe rule, the legacy-conversation mapping and the rollout order.
--
--   1. schema customer_backfill: what the backfill created and linked (so rollback.sql removes exactly that),
--      the dedupe key function and one chunk function per part (backfill.toml names them);
--   2. an expression index on "Customer", CONCURRENTLY, so a chunk finds a customer the application already
--      created for the same contact key instead of creating a duplicate.
-- After these steps the engine runs the parts of backfill.toml in keyset-paginated chunks, each in its own
-- short transaction, throttled (infra/migrations/backfill.py), then validation.sql.

-- 1. New objects only: one transaction, no lock on an existing table ---------------------------------

CREATE SCHEMA customer_backfill;

COMMENT ON SCHEMA customer_backfill IS 'Batch 0002: what the customer/conversation backfill created and linked; rollback.sql undoes exactly this';

-- The dedupe rule: normalized phone, else lower-cased email, else the lead itself (one customer per lead).
CREATE FUNCTION customer_backfill.contact_key(phone text, email text, lead_id text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN length(regexp_replace(coalesce(phone, ''), '\D', '', 'g')) = 10
            THEN 'phone:1' || regexp_replace(phone, '\D', '', 'g')
        WHEN length(regexp_replace(coalesce(phone, ''), '\D', '', 'g')) >= 7
            THEN 'phone:' || regexp_replace(phone, '\D', '', 'g')
        WHEN position('@' IN btrim(coalesce(email, ''))) > 1
            THEN 'email:' || lower(btrim(email))
        WHEN lead_id IS NOT NULL
            THEN 'lead:' || lead_id
    END;

-- A legacy timestamp (ISO 8601 text) or NULL when it is not one.
CREATE FUNCTION customer_backfill.legacy_time(value text) RETURNS timestamp(3)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN value ~ '^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?$'
                THEN (value::timestamptz AT TIME ZONE 'UTC')::timestamp(3) END;

-- The message role of a legacy sender.
CREATE FUNCTION customer_backfill.legacy_role(sender text) RETURNS "MessageRole"
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE lower(coalesce(sender, ''))
        WHEN 'user' THEN 'user' WHEN 'customer' THEN 'user' WHEN 'inbound' THEN 'user'
        WHEN 'assistant' THEN 'assistant' WHEN 'bot' THEN 'assistant' WHEN 'agent' THEN 'assistant'
        WHEN 'staff' THEN 'assistant' WHEN 'outbound' THEN 'assistant'
        WHEN 'tool' THEN 'tool'
        ELSE 'system' END::"MessageRole";

CREATE TABLE customer_backfill.customer_key (
    "key" TEXT NOT NULL,
    "customer_id" TEXT NOT NULL,
    "created" BOOLEAN NOT NULL,
    CONSTRAINT "customer_key_pkey" PRIMARY KEY ("key")
);
COMMENT ON TABLE customer_backfill.customer_key IS 'Dedupe key -> customer; created=true when the backfill inserted that "Customer" row';
CREATE INDEX "customer_key_customer_id_idx" ON customer_backfill.customer_key ("customer_id");

CREATE TABLE customer_backfill.lead_link (
    "lead_id" TEXT NOT NULL,
    "customer_id" TEXT NOT NULL,
    CONSTRAINT "lead_link_pkey" PRIMARY KEY ("lead_id")
);
COMMENT ON TABLE customer_backfill.lead_link IS '"Lead".customer_id values the backfill set (rollback unlinks only these)';

CREATE TABLE customer_backfill.job_link (
    "job_id" TEXT NOT NULL,
    "customer_id" TEXT NOT NULL,
    CONSTRAINT "job_link_pkey" PRIMARY KEY ("job_id")
);
COMMENT ON TABLE customer_backfill.job_link IS '"Job".customer_id values the backfill set (rollback unlinks only these)';

CREATE TABLE customer_backfill.conversation (
    "conversation_id" TEXT NOT NULL,
    CONSTRAINT "conversation_pkey" PRIMARY KEY ("conversation_id")
);
COMMENT ON TABLE customer_backfill.conversation IS '"Conversation" rows the backfill inserted';

CREATE TABLE customer_backfill.message (
    "legacy_ref" TEXT NOT NULL,
    "message_id" TEXT NOT NULL,
    CONSTRAINT "message_pkey" PRIMARY KEY ("legacy_ref")
);
COMMENT ON TABLE customer_backfill.message IS 'One row per legacy entry moved: state:<lead id>:<n> or audit:<audit id> -> "Message".id';
CREATE INDEX "message_message_id_idx" ON customer_backfill.message ("message_id");

-- Every chunk function reads and writes through indexes only, its work bounded by the chunk's keys: the
-- tables it probes ("Customer", "Conversation", the tracking tables) grow by millions of rows while the
-- backfill runs, faster than ANALYZE sees, and a plan made on their old statistics (a sequential scan of a
-- table believed empty) would make each chunk slower than the last. SET enable_seqscan = off keeps every
-- plan on the indexes; plan_cache_mode = force_custom_plan plans each call for its own keys.
-- The link functions also SET enable_bitmapscan = off: for "id" = ANY (ids) AND "customer_id" IS NULL the
-- planner may AND a bitmap of the primary key with one of "<Table>_customer_id_idx" for IS NULL, which reads
-- every NULL entry of that index (the dead ones of the rows linked so far included) whatever the chunk's size:
-- 62 to 85 ms for 1,000 leads' lookup at 2M leads, 1.9 ms through the primary key alone. The IS NULL test stays
-- as it is, so it keeps the column's statistics (a form no index serves, ("customer_id" || '') IS NULL, had none,
-- and misled the rest of the plan: bench/RESULTS.md). A plain index scan of the NULL index remains possible
-- where the statistics expect fewer NULL rows than the chunk has keys (the end of a pass, the sweeps).

-- Part "customers": link the chunk's leads to a customer per contact key, creating the customers that do
-- not exist yet (neither in customer_key nor, created by the application, in "Customer"). Rows another
-- transaction holds are skipped (SKIP LOCKED); the sweep picks them up. Returns the leads linked.
CREATE FUNCTION customer_backfill.link_leads(ids text[]) RETURNS integer
    LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan SET enable_seqscan = off SET enable_bitmapscan = off AS $$
DECLARE
    linked integer;
BEGIN
    WITH src AS (
        SELECT l."id", l."name", l."phone", l."email", customer_backfill.contact_key(l."phone", l."email", l."id") AS "key"
        FROM "Lead" l
        WHERE l."id" = ANY (ids) AND l."customer_id" IS NULL
        FOR UPDATE OF l SKIP LOCKED
    ), keyed AS (
        SELECT DISTINCT ON ("key") "key", "name", "phone", "email" FROM src ORDER BY "key", "id"
    ), new_keys AS (
        INSERT INTO customer_backfill.customer_key ("key", "customer_id", "created")
        SELECT k."key", coalesce(app."id", gen_random_uuid()::text), app."id" IS NULL
        FROM keyed k
        LEFT JOIN LATERAL (
            -- the first by id, through "Customer_contact_key_idx" (min(id) would walk "Customer_pkey" instead)
            SELECT (array_agg(c."id" ORDER BY c."id"))[1] AS "id" FROM "Customer" c
            WHERE customer_backfill.contact_key(c."phone", c."email", NULL) = k."key"
        ) app ON true
        WHERE NOT EXISTS (SELECT 1 FROM customer_backfill.customer_key t WHERE t."key" = k."key")
        ON CONFLICT ("key") DO NOTHING
        RETURNING "key", "customer_id", "created"
    ), new_customers AS (
        INSERT INTO "Customer" ("id", "name", "phone", "email", "metadata")
        SELECT n."customer_id", k."name", k."phone", k."email", '{"source": "backfill 0002"}'::jsonb
        FROM new_keys n JOIN keyed k USING ("key")
        WHERE n."created"
        RETURNING "id"
    ), keys AS MATERIALIZED (
        SELECT "key", "customer_id" FROM new_keys
        UNION ALL
        SELECT t."key", t."customer_id" FROM customer_backfill.customer_key t JOIN keyed k USING ("key")
    ), links AS (
        UPDATE "Lead" l SET "customer_id" = keys."customer_id"
        FROM src JOIN keys USING ("key")
        WHERE l."id" = src."id"
        RETURNING l."id", l."customer_id"
    )
    INSERT INTO customer_backfill.lead_link ("lead_id", "customer_id")
    SELECT "id", "customer_id" FROM links
    ON CONFLICT ("lead_id") DO UPDATE SET "customer_id" = EXCLUDED."customer_id";
    GET DIAGNOSTICS linked = ROW_COUNT;
    RETURN linked;
END
$$;

-- Part "jobs": a job gets its lead's customer. Returns the jobs linked.
CREATE FUNCTION customer_backfill.link_jobs(ids text[]) RETURNS integer
    LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan SET enable_seqscan = off SET enable_bitmapscan = off AS $$
DECLARE
    linked integer;
BEGIN
    WITH todo AS (
        SELECT j."id", l."customer_id"
        FROM "Job" j JOIN "Lead" l ON l."id" = j."leadId"
        WHERE j."id" = ANY (ids) AND j."customer_id" IS NULL
          AND coalesce(l."customer_id", '') <> ''  -- never a scan of "Lead_customer_id_idx" (every linked lead)
        FOR UPDATE OF j SKIP LOCKED
    ), links AS (
        UPDATE "Job" j SET "customer_id" = todo."customer_id" FROM todo WHERE j."id" = todo."id"
        RETURNING j."id", j."customer_id"
    )
    INSERT INTO customer_backfill.job_link ("job_id", "customer_id")
    SELECT "id", "customer_id" FROM links
    ON CONFLICT ("job_id") DO UPDATE SET "customer_id" = EXCLUDED."customer_id";
    GET DIAGNOSTICS linked = ROW_COUNT;
    RETURN linked;
END
$$;

-- Moves legacy entries (one row each: ref, lead, channel, thread, sender, text, time, extra metadata) into
-- Conversation/Message: a conversation per (channel, external_id), created when missing; a message per
-- entry not moved before. Returns the messages inserted.
CREATE FUNCTION customer_backfill.move_entries(entries jsonb) RETURNS integer
    LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan SET enable_seqscan = off AS $$
DECLARE
    moved integer;
    fresh text[];
BEGIN
    WITH e AS (
        SELECT x.* FROM jsonb_to_recordset(entries) AS x(
            "ref" text, "lead_id" text, "customer_id" text, "channel" text, "external_id" text,
            "sender" text, "content" text, "at" timestamp(3), "meta" jsonb)
        WHERE NOT EXISTS (SELECT 1 FROM customer_backfill.message m WHERE m."legacy_ref" = x."ref")
    ), threads AS (
        SELECT "channel", "external_id", min("lead_id") AS "lead_id", min("customer_id") AS "customer_id",
               min("at") AS "first_at", max("at") AS "last_at"
        FROM e GROUP BY "channel", "external_id"
    ), created AS (
        INSERT INTO "Conversation" ("id", "customer_id", "lead_id", "channel", "external_id", "started_at",
                                    "last_message_at", "metadata")
        SELECT gen_random_uuid()::text, "customer_id", "lead_id", "channel", "external_id", "first_at", "last_at",
               '{"source": "backfill 0002"}'::jsonb
        FROM threads
        ON CONFLICT ("channel", "external_id") DO NOTHING
        RETURNING "id"
    )
    INSERT INTO customer_backfill.conversation ("conversation_id") SELECT "id" FROM created;

    -- A new statement sees the conversations just created (and any that existed before). The entries not moved
    -- before are tracked first, each with its message's id, and their refs kept: joining the tracking rows just
    -- inserted back to the entries in one statement joins two CTEs, which the planner, estimating one row for
    -- each, did by a nested loop that costs in the square of the chunk (448 ms for 1,660 entries at 1M leads).
    -- FOR KEY SHARE keeps each conversation's key until the chunk commits, so the next statement finds it for
    -- every entry tracked here (a conversation deleted in between would leave an entry tracked without a message).
    WITH tracked AS (
        INSERT INTO customer_backfill.message ("legacy_ref", "message_id")
        SELECT x."ref", gen_random_uuid()::text
        FROM jsonb_to_recordset(entries) AS x("ref" text, "channel" text, "external_id" text)
        JOIN "Conversation" c ON c."channel" = x."channel" AND c."external_id" = x."external_id"
        FOR KEY SHARE OF c
        ON CONFLICT ("legacy_ref") DO NOTHING
        RETURNING "legacy_ref"
    )
    SELECT coalesce(array_agg("legacy_ref"), '{}') INTO fresh FROM tracked;

    -- Their messages: each entry's conversation and tracking row, through their unique keys in the expected plan;
    -- the refs just tracked are a constant here (planned per call: plan_cache_mode), which PostgreSQL matches
    -- through a hash from 9 refs up.
    INSERT INTO "Message" ("id", "conversation_id", "role", "content", "metadata", "created_at")
    SELECT m."message_id", c."id", customer_backfill.legacy_role(x."sender"), coalesce(x."content", ''),
           jsonb_build_object('source', 'backfill 0002', 'legacy_ref', x."ref") || coalesce(x."meta", '{}'::jsonb),
           x."at"
    FROM jsonb_to_recordset(entries) AS x(
            "ref" text, "channel" text, "external_id" text, "sender" text, "content" text, "at" timestamp(3), "meta" jsonb)
    JOIN "Conversation" c ON c."channel" = x."channel" AND c."external_id" = x."external_id"
    JOIN customer_backfill.message m ON m."legacy_ref" = x."ref"
    WHERE x."ref" = ANY (fresh);
    GET DIAGNOSTICS moved = ROW_COUNT;

    -- Keep the span of the conversations the backfill created in step with what moved into them.
    UPDATE "Conversation" c
       SET "started_at" = least(c."started_at", s."first_at"), "last_message_at" = greatest(c."last_message_at", s."last_at")
      FROM (SELECT x."channel", x."external_id", min(x."at") AS "first_at", max(x."at") AS "last_at"
              FROM jsonb_to_recordset(entries) AS x("channel" text, "external_id" text, "at" timestamp(3))
             GROUP BY 1, 2) s
     WHERE c."channel" = s."channel" AND c."external_id" = s."external_id"
       AND (c."started_at" > s."first_at" OR c."last_message_at" IS NULL OR c."last_message_at" < s."last_at")
       AND EXISTS (SELECT 1 FROM customer_backfill.conversation b WHERE b."conversation_id" = c."id");
    RETURN moved;
END
$$;

-- Part "lead_history": every entry of "Lead"."stateMetadata"->'history'. Returns the messages moved.
CREATE FUNCTION customer_backfill.move_lead_history(ids text[]) RETURNS integer
    LANGUAGE sql SET enable_seqscan = off
    RETURN customer_backfill.move_entries(coalesce((
        SELECT jsonb_agg(jsonb_build_object(
            'ref', 'state:' || l."id" || ':' || h.n,
            'lead_id', l."id",
            'customer_id', l."customer_id",
            'channel', coalesce(nullif(l."stateMetadata"->>'channel', ''), l."channel"),
            'external_id', coalesce(nullif(l."stateMetadata"->>'threadId', ''), 'lead:' || l."id"),
            'sender', h.entry->>'role',
            'content', coalesce(h.entry->>'text', h.entry->>'content', ''),
            'at', coalesce(customer_backfill.legacy_time(h.entry->>'at'), l."createdAt"),
            'meta', jsonb_strip_nulls(jsonb_build_object('legacy_role', h.entry->>'role', 'state', l."stateMetadata"->>'state'))))
        FROM "Lead" l
        CROSS JOIN LATERAL jsonb_array_elements(
            CASE WHEN jsonb_typeof(l."stateMetadata"->'history') = 'array' THEN l."stateMetadata"->'history' ELSE '[]'::jsonb END
        ) WITH ORDINALITY AS h(entry, n)
        WHERE l."id" = ANY (ids)), '[]'::jsonb));

-- Part "audit_messages": every "Audit" row whose action is message.inbound, message.outbound or
-- message.system. Returns the messages moved.
CREATE FUNCTION customer_backfill.move_audit_messages(ids text[]) RETURNS integer
    LANGUAGE sql SET enable_seqscan = off
    RETURN customer_backfill.move_entries(coalesce((
        SELECT jsonb_agg(jsonb_build_object(
            'ref', 'audit:' || a."id",
            'lead_id', a."leadId",
            'customer_id', l."customer_id",
            'channel', coalesce(nullif(a."data"->>'channel', ''), l."channel", 'web'),
            'external_id', coalesce(nullif(a."data"->>'threadId', ''), 'lead:' || a."leadId", 'audit:' || a."id"),
            'sender', coalesce(a."data"->>'sender', CASE a."action" WHEN 'message.inbound' THEN 'user'
                                                                     WHEN 'message.outbound' THEN 'assistant'
                                                                     ELSE 'system' END),
            'content', coalesce(a."data"->>'body', a."data"->>'text', ''),
            'at', a."createdAt",
            'meta', jsonb_strip_nulls(jsonb_build_object('audit_action', a."action", 'actor', a."actor", 'job_id', a."jobId"))))
        FROM "Audit" a LEFT JOIN "Lead" l ON l."id" = a."leadId"
        WHERE a."id" = ANY (ids) AND a."action" IN ('message.inbound', 'message.outbound', 'message.system')), '[]'::jsonb));

-- 2. The lookup index for customers the application created (CONCURRENTLY: writes continue) ---------

CREATE INDEX CONCURRENTLY "Customer_contact_key_idx" ON "Customer" (customer_backfill.contact_key("phone", "email", NULL));
