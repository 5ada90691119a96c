-- 0002_backfill_customers: checks after the backfill (run in a transaction that is always rolled back).
-- Every result set of (check_name, ok, detail) is a set of checks; all must pass.

-- No lead or job is left unlinked (every lead gets a customer: by phone, by email, or its own).
SELECT 'leads_with_contact_linked' AS check_name, count(*) = 0 AS ok,
       count(*) || ' leads with a phone or email have no customer' AS detail
FROM "Lead" WHERE "customer_id" IS NULL AND (coalesce("phone", '') <> '' OR coalesce("email", '') <> '');

SELECT 'every_lead_linked' AS check_name, count(*) = 0 AS ok, count(*) || ' leads have no customer' AS detail
FROM "Lead" WHERE "customer_id" IS NULL;

SELECT 'jobs_linked' AS check_name, count(*) = 0 AS ok,
       count(*) || ' jobs of a linked lead have no customer' AS detail
FROM "Job" j JOIN "Lead" l ON l."id" = j."leadId" WHERE j."customer_id" IS NULL AND l."customer_id" IS NOT NULL;

-- No orphan links.
SELECT 'no_orphan_lead_links' AS check_name, count(*) = 0 AS ok, count(*) || ' leads point at a missing customer' AS detail
FROM "Lead" l WHERE l."customer_id" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "Customer" c WHERE c."id" = l."customer_id");

SELECT 'no_orphan_job_links' AS check_name, count(*) = 0 AS ok, count(*) || ' jobs point at a missing customer' AS detail
FROM "Job" j WHERE j."customer_id" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "Customer" c WHERE c."id" = j."customer_id");

SELECT 'backfilled_jobs_follow_their_lead' AS check_name, count(*) = 0 AS ok,
       count(*) || ' jobs linked by the backfill have another customer than their lead' AS detail
FROM customer_backfill.job_link t JOIN "Job" j ON j."id" = t."job_id" JOIN "Lead" l ON l."id" = j."leadId"
WHERE j."customer_id" = t."customer_id" AND l."customer_id" IS DISTINCT FROM j."customer_id";

SELECT 'no_orphan_messages' AS check_name, count(*) = 0 AS ok, count(*) || ' moved entries have no message' AS detail
FROM customer_backfill.message t WHERE NOT EXISTS (SELECT 1 FROM "Message" m WHERE m."id" = t."message_id");

-- Counts reconcile.
SELECT 'customers_created_reconcile' AS check_name, created = existing AS ok,
       created || ' customers recorded as created, ' || existing || ' of them exist' AS detail
FROM (SELECT count(*) AS created,
             count(*) FILTER (WHERE EXISTS (SELECT 1 FROM "Customer" c WHERE c."id" = t."customer_id")) AS existing
      FROM customer_backfill.customer_key t WHERE t."created") s;

SELECT 'one_customer_per_key' AS check_name, count(*) = 0 AS ok,
       count(*) || ' leads linked by the backfill share a contact key with a lead of another backfilled customer' AS detail
FROM (SELECT customer_backfill.contact_key(l."phone", l."email", l."id") AS "key"
      FROM customer_backfill.lead_link t JOIN "Lead" l ON l."id" = t."lead_id"
      GROUP BY 1 HAVING count(DISTINCT t."customer_id") > 1) dup;

SELECT 'messages_moved_equal_legacy_entries' AS check_name, moved = legacy AS ok,
       moved || ' messages moved, ' || legacy || ' legacy entries (' || history || ' stateMetadata history, '
       || audits || ' message audits)' AS detail
FROM (SELECT (SELECT count(*) FROM customer_backfill.message) AS moved,
             h.n AS history, a.n AS audits, h.n + a.n AS legacy
      FROM (SELECT coalesce(sum(jsonb_array_length("stateMetadata"->'history')), 0) AS n FROM "Lead"
            WHERE jsonb_typeof("stateMetadata"->'history') = 'array') h,
           (SELECT count(*) AS n FROM "Audit" WHERE "action" IN ('message.inbound', 'message.outbound', 'message.system')) a) s;

-- Spot checks of the mapping (a sample of each source).
SELECT 'spot_check_lead_customer' AS check_name, count(*) = 0 AS ok,
       count(*) || ' sampled leads whose customer has another contact key' AS detail
FROM (SELECT t.* FROM customer_backfill.lead_link t ORDER BY t."lead_id" LIMIT 200) t
JOIN "Lead" l ON l."id" = t."lead_id" JOIN customer_backfill.customer_key k ON k."customer_id" = t."customer_id"
WHERE k."key" <> customer_backfill.contact_key(l."phone", l."email", l."id");

SELECT 'spot_check_history_messages' AS check_name, count(*) = 0 AS ok,
       count(*) || ' sampled stateMetadata entries moved with another content, role, time or conversation' AS detail
FROM (SELECT * FROM customer_backfill.message WHERE "legacy_ref" LIKE 'state:%' ORDER BY "legacy_ref" LIMIT 200) t
JOIN "Message" m ON m."id" = t."message_id"
JOIN "Conversation" c ON c."id" = m."conversation_id"
JOIN "Lead" l ON l."id" = split_part(t."legacy_ref", ':', 2)
CROSS JOIN LATERAL (SELECT l."stateMetadata"->'history'->(split_part(t."legacy_ref", ':', 3)::int - 1) AS entry) h
WHERE m."content" <> coalesce(h.entry->>'text', h.entry->>'content', '')
   OR m."role" <> customer_backfill.legacy_role(h.entry->>'role')
   OR m."created_at" <> coalesce(customer_backfill.legacy_time(h.entry->>'at'), l."createdAt")
   OR c."lead_id" IS DISTINCT FROM l."id" AND c."external_id" = 'lead:' || l."id";

SELECT 'spot_check_audit_messages' AS check_name, count(*) = 0 AS ok,
       count(*) || ' sampled audit rows moved with another content, time or thread' AS detail
FROM (SELECT * FROM customer_backfill.message WHERE "legacy_ref" LIKE 'audit:%' ORDER BY "legacy_ref" LIMIT 200) t
JOIN "Message" m ON m."id" = t."message_id"
JOIN "Conversation" c ON c."id" = m."conversation_id"
JOIN "Audit" a ON a."id" = substr(t."legacy_ref", 7)
WHERE m."content" <> coalesce(a."data"->>'body', a."data"->>'text', '')
   OR m."created_at" <> a."createdAt"
   OR c."external_id" <> coalesce(nullif(a."data"->>'threadId', ''), 'lead:' || a."leadId", 'audit:' || a."id");
