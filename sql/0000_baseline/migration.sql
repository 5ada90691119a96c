-- 0000_baseline: the application's existing tables, as Prisma created them (see README.md).
-- Production already has these tables: there this batch is adopted (validation.sql only), never run.
-- On an empty database (staging, tests) every table is new, so the engine runs the file in one transaction.

CREATE TABLE "Lead" (
    "id" TEXT NOT NULL DEFAULT gen_random_uuid()::text,
    "name" TEXT,
    "phone" TEXT,
    "email" TEXT,
    "address" TEXT,
    "zip" TEXT,
    "description" TEXT,
    "channel" TEXT NOT NULL DEFAULT 'web',
    "status" TEXT NOT NULL DEFAULT 'new',
    "quoteLow" NUMERIC(10,2),
    "quoteHigh" NUMERIC(10,2),
    "stateMetadata" JSONB,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Lead_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "Lead_phone_idx" ON "Lead" ("phone");
CREATE INDEX "Lead_email_idx" ON "Lead" ("email");
CREATE INDEX "Lead_status_idx" ON "Lead" ("status");
CREATE INDEX "Lead_createdAt_idx" ON "Lead" ("createdAt");

CREATE TABLE "Job" (
    "id" TEXT NOT NULL DEFAULT gen_random_uuid()::text,
    "leadId" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'scheduled',
    "address" TEXT,
    "scheduledAt" TIMESTAMP(3),
    "completedAt" TIMESTAMP(3),
    "quotedPrice" NUMERIC(10,2),
    "finalPrice" NUMERIC(10,2),
    "notes" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Job_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "Job_leadId_fkey" FOREIGN KEY ("leadId") REFERENCES "Lead" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

CREATE INDEX "Job_leadId_idx" ON "Job" ("leadId");
CREATE INDEX "Job_status_idx" ON "Job" ("status");
CREATE INDEX "Job_scheduledAt_idx" ON "Job" ("scheduledAt");

CREATE TABLE "Audit" (
    "id" TEXT NOT NULL DEFAULT gen_random_uuid()::text,
    "leadId" TEXT,
    "jobId" TEXT,
    "action" TEXT NOT NULL,
    "actor" TEXT,
    "data" JSONB,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Audit_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "Audit_leadId_fkey" FOREIGN KEY ("leadId") REFERENCES "Lead" ("id") ON DELETE SET NULL ON UPDATE CASCADE,
    CONSTRAINT "Audit_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "Job" ("id") ON DELETE SET NULL ON UPDATE CASCADE
);

CREATE INDEX "Audit_leadId_idx" ON "Audit" ("leadId");
CREATE INDEX "Audit_jobId_idx" ON "Audit" ("jobId");
CREATE INDEX "Audit_createdAt_idx" ON "Audit" ("createdAt");
