-- 0003_require_customer_links: the columns are NOT NULL, the temporary checks are gone, and the foreign keys
-- are validated and RESTRICT deletes.

SELECT 'lead_customer_id_not_null' AS check_name, attnotnull AS ok, 'Lead.customer_id attnotnull=' || attnotnull AS detail
FROM pg_attribute WHERE attrelid = '"Lead"'::regclass AND attname = 'customer_id';

SELECT 'job_customer_id_not_null' AS check_name, attnotnull AS ok, 'Job.customer_id attnotnull=' || attnotnull AS detail
FROM pg_attribute WHERE attrelid = '"Job"'::regclass AND attname = 'customer_id';

SELECT 'temporary_checks_dropped' AS check_name, count(*) = 0 AS ok, count(*) || ' temporary not-null checks left' AS detail
FROM pg_constraint WHERE conname IN ('Lead_customer_id_not_null', 'Job_customer_id_not_null');

SELECT 'customer_fkeys_restrict' AS check_name, count(*) = 2 AS ok,
       count(*) || ' of 2 customer foreign keys are validated and ON DELETE RESTRICT' AS detail
FROM pg_constraint
WHERE conname IN ('Lead_customer_id_fkey', 'Job_customer_id_fkey') AND contype = 'f' AND convalidated
  AND confdeltype = 'r' AND confrelid = '"Customer"'::regclass;
