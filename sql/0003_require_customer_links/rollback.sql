-- 0003_require_customer_links: back to Batch 1 (nullable links, ON DELETE SET NULL). Idempotent: each
-- statement checks the catalog first, so a re-run after a partial rollback only does what is left.

ALTER TABLE "Lead" DROP CONSTRAINT IF EXISTS "Lead_customer_id_not_null";

ALTER TABLE "Job" DROP CONSTRAINT IF EXISTS "Job_customer_id_not_null";

ALTER TABLE "Lead" DROP CONSTRAINT IF EXISTS "Lead_customer_id_restrict_fkey";

ALTER TABLE "Job" DROP CONSTRAINT IF EXISTS "Job_customer_id_restrict_fkey";

ALTER TABLE "Lead" ALTER COLUMN "customer_id" DROP NOT NULL;

ALTER TABLE "Job" ALTER COLUMN "customer_id" DROP NOT NULL;

-- "Customer" first, in the application's order (see migration.sql): swapping a key locks it after the child.
LOCK TABLE "Customer" IN ACCESS EXCLUSIVE MODE;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'Lead_customer_id_fkey' AND confdeltype <> 'n') THEN
        ALTER TABLE "Lead" DROP CONSTRAINT "Lead_customer_id_fkey";
        ALTER TABLE "Lead" ADD CONSTRAINT "Lead_customer_id_fkey" FOREIGN KEY ("customer_id")
            REFERENCES "Customer" ("id") ON DELETE SET NULL ON UPDATE CASCADE NOT VALID;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'Job_customer_id_fkey' AND confdeltype <> 'n') THEN
        ALTER TABLE "Job" DROP CONSTRAINT "Job_customer_id_fkey";
        ALTER TABLE "Job" ADD CONSTRAINT "Job_customer_id_fkey" FOREIGN KEY ("customer_id")
            REFERENCES "Customer" ("id") ON DELETE SET NULL ON UPDATE CASCADE NOT VALID;
    END IF;
END
$$;

ALTER TABLE "Lead" VALIDATE CONSTRAINT "Lead_customer_id_fkey";

ALTER TABLE "Job" VALIDATE CONSTRAINT "Job_customer_id_fkey";
