"""Realistic legacy data for the backfill's tests and benchmark: leads, jobs, stateMetadata and Audit rows.

What the Prisma application wrote before Batch 1 (the shapes batch 0002's README maps):
- "Lead": phone in the formats people type ('+1 (555) 010-0042', '555-010-0042', '5550100042', '+15550100042'),
  repeat customers (the same phone or e-mail on several leads, e-mail in any case), some leads with neither;
- "Lead"."stateMetadata": {"state", "channel", "threadId" (half of them), "history": [{"role", "text", "at"}]}
  with roles user/bot/agent/system;
- "Audit": message.inbound / message.outbound / message.system rows ({"channel", "threadId", "body", "sender"})
  and other actions (status.changed, quote.sent) that are not conversation data;
- one "Job" per lead.
Everything is set-based SQL over generate_series, deterministic for a given size.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

LEADS = """
INSERT INTO "Lead" ("name", "phone", "email", "address", "zip", "description", "channel", "status",
                    "quoteLow", "quoteHigh", "stateMetadata", "createdAt", "updatedAt")
SELECT 'Customer ' || p,
       CASE WHEN g %% 10 < 3 THEN NULL
            WHEN g %% 4 = 0 THEN '+1 (555) ' || substr(d, 1, 3) || '-' || substr(d, 4)
            WHEN g %% 4 = 1 THEN '555-' || substr(d, 1, 3) || '-' || substr(d, 4)
            WHEN g %% 4 = 2 THEN '555' || d
            ELSE '+1555' || d END,
       CASE WHEN g %% 10 < 2 THEN (CASE WHEN g %% 3 = 0 THEN 'Cust' ELSE 'cust' END) || p || '@Example.com'
            WHEN g %% 10 < 3 THEN NULL
            WHEN g %% 5 = 0 THEN 'cust' || p || '@example.com' END,
       g || ' Main St', lpad((g %% 99999)::text, 5, '0'), 'garage clean-out, ' || (1 + g %% 9) || ' items',
       ch, (ARRAY['new', 'quoted', 'booked', 'lost'])[1 + g %% 4], 100 + g %% 400, 200 + g %% 800,
       CASE WHEN g %% 100 < %(history_pct)s THEN jsonb_build_object(
           'state', (ARRAY['greeting', 'collecting_items', 'quoted', 'booked'])[1 + g %% 4],
           'channel', ch,
           'threadId', CASE WHEN g %% 2 = 0 THEN 'TH' || g END,
           'history', (SELECT jsonb_agg(jsonb_build_object(
                              'role', (ARRAY['user', 'bot', 'user', 'agent', 'system'])[1 + (g + i) %% 5],
                              'text', 'message ' || i || ' about item ' || (g %% 97),
                              'at', to_char(ts + i * interval '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')) ORDER BY i)
                       FROM generate_series(1, 1 + g %% %(history_max)s) AS i))
       END,
       ts, ts
FROM generate_series(1, %(leads)s) AS g,
     LATERAL (SELECT (g::bigint * 7919) %% greatest(%(leads)s * 6 / 10, 1) AS p) AS pool,
     LATERAL (SELECT lpad(p::text, 7, '0') AS d,
                     (ARRAY['web', 'sms', 'phone', 'email'])[1 + g %% 4] AS ch,
                     timestamp '2025-01-01' + (g %% 525600) * interval '1 minute' AS ts) AS t
"""
JOBS = """
INSERT INTO "Job" ("leadId", "status", "address", "scheduledAt", "quotedPrice", "createdAt", "updatedAt")
SELECT "id", 'scheduled', "address", "createdAt" + interval '2 days', "quoteHigh", "createdAt", "createdAt" FROM "Lead"
"""
AUDITS = """
INSERT INTO "Audit" ("leadId", "jobId", "action", "actor", "data", "createdAt")
SELECT l."id", CASE WHEN k %% 3 = 0 THEN j."id" END,
       CASE WHEN k %% 5 = 4 THEN 'status.changed'
            ELSE (ARRAY['message.inbound', 'message.outbound', 'message.inbound', 'message.system'])[1 + k %% 4] END,
       CASE WHEN k %% 2 = 0 THEN 'bot' ELSE 'system' END,
       CASE WHEN k %% 5 = 4 THEN jsonb_build_object('from', 'new', 'to', 'quoted')
            ELSE jsonb_strip_nulls(jsonb_build_object('channel', l."channel",
                     'threadId', CASE WHEN k %% 2 = 0 THEN l."stateMetadata"->>'threadId' END,
                     'body', 'audit message ' || k, 'sender', CASE WHEN k %% 7 = 0 THEN 'staff' END)) END,
       l."createdAt" + k * interval '30 seconds'
FROM (SELECT "id", "channel", "stateMetadata", "createdAt", row_number() OVER () AS n FROM "Lead") l
JOIN "Job" j ON j."leadId" = l."id",
     generate_series(1, %(audits_per_lead)s) AS k
WHERE l.n %% 100 < %(audit_pct)s
"""
LEGACY_ENTRIES = """
SELECT (SELECT coalesce(sum(jsonb_array_length("stateMetadata"->'history')), 0) FROM "Lead"
         WHERE jsonb_typeof("stateMetadata"->'history') = 'array')
     + (SELECT count(*) FROM "Audit" WHERE "action" IN ('message.inbound', 'message.outbound', 'message.system'))
"""


@dataclass(frozen=True)
class LegacyShape:
    """How much legacy data per lead: % of leads with a history (1..history_max entries), % with audits."""

    leads: int
    history_pct: int = 20
    history_max: int = 3
    audit_pct: int = 20
    audits_per_lead: int = 2


def generate(conn: psycopg.Connection, shape: LegacyShape) -> int:
    """Insert the leads, their jobs and audits (autocommit conn; one transaction per table). Returns legacy entries."""
    params = {"leads": shape.leads, "history_pct": shape.history_pct, "history_max": shape.history_max,
              "audit_pct": shape.audit_pct, "audits_per_lead": shape.audits_per_lead}
    for statement in (LEADS, JOBS, AUDITS):
        with conn.transaction():
            conn.execute(statement, params)
    return legacy_entries(conn)


def legacy_entries(conn: psycopg.Connection) -> int:
    return int(conn.execute(LEGACY_ENTRIES).fetchone()[0])
