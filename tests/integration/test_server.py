from __future__ import annotations

import psycopg


def test_each_test_gets_an_empty_database_of_its_own(db: psycopg.Connection) -> None:
    tables = db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert tables == (0,)
    assert db.execute("SELECT current_database()").fetchone()[0].startswith("t_")
