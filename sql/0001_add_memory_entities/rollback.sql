-- 0001_add_memory_entities rollback: returns the schema to exactly the 0000 baseline.
-- DATA LOSS: every customer, address, conversation, message, memory note, job item and job event,
-- and the customer links on "Lead" and "Job", are deleted.
--
-- Idempotent (IF EXISTS everywhere): the engine also runs it to undo a partially applied batch, and
-- running it twice, or on a database where 0001 never ran, changes nothing.
-- Order keeps locks on "Lead" and "Job" as small and short as possible:
--   1. their indexes go CONCURRENTLY (SHARE UPDATE EXCLUSIVE: reads and writes go on);
--   2. each foreign key touching Lead/Job is dropped alone (ACCESS EXCLUSIVE for milliseconds, catalog only),
--      so that dropping the new tables afterwards takes no lock on Lead or Job at all;
--   3. the customer_id columns are dropped (ACCESS EXCLUSIVE for milliseconds: the column is only marked
--      dropped, no table rewrite);
--   4. the new tables (children first) and the enum are dropped; no CASCADE, so an unexpected dependency
--      (a later batch not rolled back) stops the rollback instead of being dropped silently.

-- 1. Indexes on the existing tables (each outside any transaction)

DROP INDEX CONCURRENTLY IF EXISTS "Lead_customer_id_idx";

DROP INDEX CONCURRENTLY IF EXISTS "Job_customer_id_idx";

-- 2. Foreign keys that touch "Lead" or "Job"

ALTER TABLE IF EXISTS "Conversation" DROP CONSTRAINT IF EXISTS "Conversation_lead_id_fkey";

ALTER TABLE IF EXISTS "JobItem" DROP CONSTRAINT IF EXISTS "JobItem_job_id_fkey";

ALTER TABLE IF EXISTS "JobEvent" DROP CONSTRAINT IF EXISTS "JobEvent_job_id_fkey";

ALTER TABLE "Lead" DROP CONSTRAINT IF EXISTS "Lead_customer_id_fkey";

ALTER TABLE "Job" DROP CONSTRAINT IF EXISTS "Job_customer_id_fkey";

-- 3. The link columns

ALTER TABLE "Lead" DROP COLUMN IF EXISTS "customer_id";

ALTER TABLE "Job" DROP COLUMN IF EXISTS "customer_id";

-- 4. The new tables and the enum (no lock on Lead or Job any more)

DROP TABLE IF EXISTS "Message";

DROP TABLE IF EXISTS "MemoryNote";

DROP TABLE IF EXISTS "Conversation";

DROP TABLE IF EXISTS "CustomerAddress";

DROP TABLE IF EXISTS "JobItem";

DROP TABLE IF EXISTS "JobEvent";

DROP TABLE IF EXISTS "Customer";

DROP TYPE IF EXISTS "MessageRole";
