-- 0002_backfill_customers: removes exactly what the backfill created and unlinks what it linked.
-- Rows the application wrote are never touched: a "Lead"/"Job" link is cleared only while it still holds the
-- customer the backfill set; a customer or conversation the backfill created is kept (and reported by the
-- engine's log) while an application-written row still refers to it. Idempotent: once the schema
-- customer_backfill is gone every statement has nothing to do.

DO $$
BEGIN
    IF to_regclass('customer_backfill.message') IS NOT NULL THEN
        DELETE FROM "Message" m USING customer_backfill.message t WHERE m."id" = t."message_id";
        DELETE FROM "Conversation" c USING customer_backfill.conversation t
         WHERE c."id" = t."conversation_id"
           AND NOT EXISTS (SELECT 1 FROM "Message" m WHERE m."conversation_id" = c."id")
           AND NOT EXISTS (SELECT 1 FROM "MemoryNote" n WHERE n."conversation_id" = c."id");
        UPDATE "Job" j SET "customer_id" = NULL FROM customer_backfill.job_link t
         WHERE j."id" = t."job_id" AND j."customer_id" = t."customer_id";
        UPDATE "Lead" l SET "customer_id" = NULL FROM customer_backfill.lead_link t
         WHERE l."id" = t."lead_id" AND l."customer_id" = t."customer_id";
        DELETE FROM "Customer" c USING customer_backfill.customer_key t
         WHERE t."created" AND c."id" = t."customer_id"
           AND NOT EXISTS (SELECT 1 FROM "Lead" l WHERE l."customer_id" = c."id")
           AND NOT EXISTS (SELECT 1 FROM "Job" j WHERE j."customer_id" = c."id")
           AND NOT EXISTS (SELECT 1 FROM "Conversation" v WHERE v."customer_id" = c."id")
           AND NOT EXISTS (SELECT 1 FROM "MemoryNote" n WHERE n."customer_id" = c."id")
           AND NOT EXISTS (SELECT 1 FROM "CustomerAddress" a WHERE a."customer_id" = c."id");
    END IF;
END
$$;

DROP INDEX CONCURRENTLY IF EXISTS "Customer_contact_key_idx";

DROP SCHEMA IF EXISTS customer_backfill CASCADE;
