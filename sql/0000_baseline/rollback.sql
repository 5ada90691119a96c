-- 0000_baseline rollback: empties the public schema of an ephemeral stack (staging, tests).
-- It destroys all application data; the engine never runs it for an adopted baseline (production).
-- No CASCADE: if a later batch still depends on these tables, this fails instead of silently
-- dropping that batch's objects; roll the later batches back first.

DROP TABLE IF EXISTS "Audit";
DROP TABLE IF EXISTS "Job";
DROP TABLE IF EXISTS "Lead";
