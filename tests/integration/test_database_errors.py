"""The one boundary where the server's errors become the engine's, on a real PostgreSQL: what stopped a statement
decides what the message tells the user to do."""

from __future__ import annotations

import pytest
from psycopg import sql

from infra.migrations.database_errors import database_errors
from infra.migrations.errors import DatabaseError, OperationalFailure
from infra.migrations.target import Target


def test_a_statement_the_server_stops_for_a_passing_reason_says_run_it_again_not_check_the_privileges(
        db_target: Target) -> None:
    with pytest.raises(OperationalFailure, match=r"^checking the schema for drift on .* was stopped by the server: "
                                                 r"canceling statement due to statement timeout \(SQLSTATE 57014\); "
                                                 r"not a fault of the SQL or of a privilege: see to what stopped it "
                                                 r"\(a lock held, a time limit, disk or memory running short\), "
                                                 r"then run it again$"):
        with database_errors(db_target, "checking the schema for drift"), db_target.connect(autocommit=True) as conn:
            conn.execute("SET statement_timeout = '10ms'")
            conn.execute("SELECT pg_sleep(5)")


def test_a_statement_the_server_refuses_says_check_the_privileges(db_target: Target) -> None:
    with pytest.raises(DatabaseError, match=r"^checking privileges on .* failed: permission denied to create role "
                                            r"\(SQLSTATE 42501\); check the connecting user's privileges$"):
        with database_errors(db_target, "checking privileges"), db_target.connect(autocommit=True) as conn:
            weak = sql.Identifier(f"weak_{db_target.dbname}")
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(weak))
            try:
                conn.execute(sql.SQL("SET ROLE {}").format(weak))
                conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(f"nope_{db_target.dbname}")))
            finally:
                conn.execute("RESET ROLE")
                conn.execute(sql.SQL("DROP ROLE {}").format(weak))
