-- 0001_add_memory_entities: customers, addresses, conversations, messages, memory notes, job items and
-- job events; nullable customer_id links on "Lead" and "Job". Additive only: existing traffic keeps working.
-- See README.md for the decisions, the locks taken on "Lead" and "Job", and how to run this by hand.
--
-- Order (the engine groups statements by it, see infra/migrations/steps.py):
--   1. the enum, the new tables and their indexes: new objects only, one transaction, no lock on Lead/Job;
--   2. the customer_id columns on Lead and Job: nullable, no default, so a catalog-only change;
--   3. foreign keys onto Lead/Job/Customer that touch an existing table, NOT VALID: catalog-only;
--   4. the indexes on Lead and Job, CONCURRENTLY: reads and writes continue while they build;
--   5. VALIDATE CONSTRAINT: scans without blocking reads or writes.

-- 1. New objects ----------------------------------------------------------------------------------

CREATE TYPE "MessageRole" AS ENUM ('user', 'assistant', 'system', 'tool');

CREATE TABLE "Customer" (
    "id" TEXT NOT NULL DEFAULT gen_random_uuid()::text,
    "name" TEXT,
    "phone" TEXT,
    "email" TEXT,
    "metadata" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Customer_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "Customer_phone_idx" ON "Customer" ("phone");
CREATE INDEX "Customer_email_idx" ON "Customer" ("email");
CREATE INDEX "Customer_created_at_idx" ON "Customer" ("created_at");

CREATE TABLE "CustomerAddress" (
    "id" TEXT NOT NULL DEFAULT gen_random_uuid()::text,
    "customer_id" TEXT NOT NULL,
    "address" TEXT NOT NULL,
    "city" TEXT,
    "state" TEXT,
    "zip" TEXT,
    "lat" DOUBLE PRECISION,
    "lng" DOUBLE PRECISION,
    "is_primary" BOOLEAN NOT NULL DEFAULT false,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "CustomerAddress_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "CustomerAddress_customer_id_fkey" FOREIGN KEY ("customer_id")
        REFERENCES "Customer" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE INDEX "CustomerAddress_customer_id_idx" ON "CustomerAddress" ("customer_id");
CREATE INDEX "CustomerAddress_customer_id_is_primary_idx" ON "CustomerAddress" ("customer_id", "is_primary");

CREATE TABLE "Conversation" (
    "id" TEXT NOT NULL DEFAULT gen_random_uuid()::text,
    "customer_id" TEXT,
    "lead_id" TEXT,
    "channel" TEXT NOT NULL,
    "external_id" TEXT NOT NULL,
    "started_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_message_at" TIMESTAMP(3),
    "metadata" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Conversation_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "Conversation_channel_external_id_key" UNIQUE ("channel", "external_id"),
    CONSTRAINT "Conversation_customer_id_fkey" FOREIGN KEY ("customer_id")
        REFERENCES "Customer" ("id") ON DELETE SET NULL ON UPDATE CASCADE
    -- "Conversation_lead_id_fkey" onto the existing "Lead" is added in step 3.
);

CREATE INDEX "Conversation_customer_id_idx" ON "Conversation" ("customer_id");
CREATE INDEX "Conversation_lead_id_idx" ON "Conversation" ("lead_id");
CREATE INDEX "Conversation_last_message_at_idx" ON "Conversation" ("last_message_at");
CREATE INDEX "Conversation_started_at_idx" ON "Conversation" ("started_at");

CREATE TABLE "Message" (
    "id" TEXT NOT NULL DEFAULT gen_random_uuid()::text,
    "conversation_id" TEXT NOT NULL,
    "role" "MessageRole" NOT NULL,
    "content" TEXT NOT NULL,
    "metadata" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Message_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "Message_conversation_id_fkey" FOREIGN KEY ("conversation_id")
        REFERENCES "Conversation" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE INDEX "Message_conversation_id_idx" ON "Message" ("conversation_id");
CREATE INDEX "Message_conversation_id_created_at_idx" ON "Message" ("conversation_id", "created_at");
CREATE INDEX "Message_created_at_idx" ON "Message" ("created_at");

CREATE TABLE "MemoryNote" (
    "id" TEXT NOT NULL DEFAULT gen_random_uuid()::text,
    "customer_id" TEXT NOT NULL,
    "conversation_id" TEXT,
    "content" TEXT NOT NULL,
    "metadata" JSONB NOT NULL DEFAULT '{}',
    "expires_at" TIMESTAMP(3),
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "MemoryNote_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "MemoryNote_customer_id_fkey" FOREIGN KEY ("customer_id")
        REFERENCES "Customer" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "MemoryNote_conversation_id_fkey" FOREIGN KEY ("conversation_id")
        REFERENCES "Conversation" ("id") ON DELETE SET NULL ON UPDATE CASCADE
);

CREATE INDEX "MemoryNote_customer_id_idx" ON "MemoryNote" ("customer_id");
CREATE INDEX "MemoryNote_conversation_id_idx" ON "MemoryNote" ("conversation_id");
CREATE INDEX "MemoryNote_created_at_idx" ON "MemoryNote" ("created_at");
CREATE INDEX "MemoryNote_expires_at_idx" ON "MemoryNote" ("expires_at");

CREATE TABLE "JobItem" (
    "id" TEXT NOT NULL DEFAULT gen_random_uuid()::text,
    "job_id" TEXT NOT NULL,
    "description" TEXT NOT NULL,
    "quantity" NUMERIC(10,2) NOT NULL DEFAULT 1,
    "unit_price" NUMERIC(10,2) NOT NULL,
    "total" NUMERIC(10,2) NOT NULL,
    "metadata" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "JobItem_pkey" PRIMARY KEY ("id")
    -- "JobItem_job_id_fkey" onto the existing "Job" is added in step 3.
);

CREATE INDEX "JobItem_job_id_idx" ON "JobItem" ("job_id");

CREATE TABLE "JobEvent" (
    "id" TEXT NOT NULL DEFAULT gen_random_uuid()::text,
    "job_id" TEXT NOT NULL,
    "event_type" TEXT NOT NULL,
    "actor" TEXT,
    "metadata" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "JobEvent_pkey" PRIMARY KEY ("id")
    -- "JobEvent_job_id_fkey" onto the existing "Job" is added in step 3.
);

CREATE INDEX "JobEvent_job_id_idx" ON "JobEvent" ("job_id");
CREATE INDEX "JobEvent_job_id_created_at_idx" ON "JobEvent" ("job_id", "created_at");
CREATE INDEX "JobEvent_event_type_idx" ON "JobEvent" ("event_type");

-- 2. Nullable links on the existing tables (ACCESS EXCLUSIVE for milliseconds: catalog only) --------

ALTER TABLE "Lead" ADD COLUMN "customer_id" TEXT;

ALTER TABLE "Job" ADD COLUMN "customer_id" TEXT;

-- 3. Foreign keys touching an existing table, NOT VALID (SHARE ROW EXCLUSIVE on both tables, catalog only)

ALTER TABLE "Lead" ADD CONSTRAINT "Lead_customer_id_fkey" FOREIGN KEY ("customer_id")
    REFERENCES "Customer" ("id") ON DELETE SET NULL ON UPDATE CASCADE NOT VALID;

ALTER TABLE "Job" ADD CONSTRAINT "Job_customer_id_fkey" FOREIGN KEY ("customer_id")
    REFERENCES "Customer" ("id") ON DELETE SET NULL ON UPDATE CASCADE NOT VALID;

ALTER TABLE "Conversation" ADD CONSTRAINT "Conversation_lead_id_fkey" FOREIGN KEY ("lead_id")
    REFERENCES "Lead" ("id") ON DELETE SET NULL ON UPDATE CASCADE NOT VALID;

ALTER TABLE "JobItem" ADD CONSTRAINT "JobItem_job_id_fkey" FOREIGN KEY ("job_id")
    REFERENCES "Job" ("id") ON DELETE CASCADE ON UPDATE CASCADE NOT VALID;

ALTER TABLE "JobEvent" ADD CONSTRAINT "JobEvent_job_id_fkey" FOREIGN KEY ("job_id")
    REFERENCES "Job" ("id") ON DELETE CASCADE ON UPDATE CASCADE NOT VALID;

-- 4. Indexes on the existing tables, built without blocking writes (each outside any transaction) ---

CREATE INDEX CONCURRENTLY "Lead_customer_id_idx" ON "Lead" ("customer_id");

CREATE INDEX CONCURRENTLY "Job_customer_id_idx" ON "Job" ("customer_id");

-- 5. Validate the foreign keys (SHARE UPDATE EXCLUSIVE on the referencing table: reads and writes go on)

ALTER TABLE "Lead" VALIDATE CONSTRAINT "Lead_customer_id_fkey";

ALTER TABLE "Job" VALIDATE CONSTRAINT "Job_customer_id_fkey";

ALTER TABLE "Conversation" VALIDATE CONSTRAINT "Conversation_lead_id_fkey";

ALTER TABLE "JobItem" VALIDATE CONSTRAINT "JobItem_job_id_fkey";

ALTER TABLE "JobEvent" VALIDATE CONSTRAINT "JobEvent_job_id_fkey";
