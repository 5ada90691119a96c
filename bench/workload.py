"""The data and the traffic: how the template is seeded and what one writer transaction does.

Everything that depends on the columns of the baseline "Lead" and "Job" tables lives here.
"""

from __future__ import annotations

import random

import psycopg

# N leads, then one job per lead. Set-based, so PostgreSQL does the work in two statements.
SEED_LEADS = """
INSERT INTO "Lead" ("name", "phone", "email", "address", "zip", "description", "channel", "status",
                    "quoteLow", "quoteHigh", "createdAt", "updatedAt")
SELECT 'Lead ' || g, '+1555' || lpad(g::text, 8, '0'), 'lead' || g || '@example.com', g || ' Main St',
       lpad((g %% 99999)::text, 5, '0'), 'garage clean-out, ' || (1 + g %% 9) || ' items',
       (ARRAY['web', 'sms', 'phone', 'email'])[1 + g %% 4], (ARRAY['new', 'quoted', 'booked', 'lost'])[1 + g %% 4],
       100 + g %% 400, 200 + g %% 800, ts, ts
FROM generate_series(1, %(rows)s) AS g, LATERAL (SELECT now() - (g %% 525600) * interval '1 minute' AS ts) AS t
"""
SEED_JOBS = """
INSERT INTO "Job" ("leadId", "status", "address", "scheduledAt", "quotedPrice", "createdAt", "updatedAt")
SELECT "id", 'scheduled', "address", "createdAt" + interval '2 days', "quoteHigh", "createdAt", "createdAt"
FROM "Lead"
"""
SAMPLE_JOB_IDS = 'SELECT "id" FROM "Job" TABLESAMPLE SYSTEM (%(percent)s) LIMIT %(limit)s'

INSERT_LEAD = """
INSERT INTO "Lead" ("name", "phone", "email", "description", "channel", "status")
VALUES (%(name)s, %(phone)s, %(email)s, 'couch and two chairs', 'web', 'new')
"""
UPDATE_JOB = 'UPDATE "Job" SET "status" = %(status)s, "updatedAt" = CURRENT_TIMESTAMP WHERE "id" = %(id)s'
JOB_STATUSES = ("scheduled", "en_route", "in_progress", "completed")


def seed(conn: psycopg.Connection, rows: int) -> None:
    """Fill "Lead" and "Job" with `rows` rows each (conn in autocommit; one transaction per table)."""
    with conn.transaction():
        conn.execute(SEED_LEADS, {"rows": rows})
    with conn.transaction():
        conn.execute(SEED_JOBS)


def sample_job_ids(conn: psycopg.Connection, rows: int, limit: int = 20_000) -> list[str]:
    """Random existing job ids for the writers to update."""
    percent = min(100.0, max(0.01, 100.0 * limit * 2 / max(rows, 1)))
    return [str(r[0]) for r in conn.execute(SAMPLE_JOB_IDS, {"percent": percent, "limit": limit})]


def write_once(conn: psycopg.Connection, rng: random.Random, job_ids: list[str]) -> None:
    """One application transaction: a new lead comes in and a random job changes status."""
    n = rng.randrange(10**9)
    with conn.transaction():
        conn.execute(INSERT_LEAD, {"name": f"Bench {n}", "phone": f"+1666{n:09d}", "email": f"b{n}@example.com"})
        conn.execute(UPDATE_JOB, {"status": rng.choice(JOB_STATUSES), "id": rng.choice(job_ids)})
