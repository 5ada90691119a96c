"""The ephemeral stack's database on its server: created with a comment naming the stack, dropped only when that
comment is there, and the hand-over of restored objects to the stack's migrator role. Identifiers reach SQL only
through psycopg.sql.Identifier or PostgreSQL's own format('%I')."""

from __future__ import annotations

from psycopg import sql

from ..localdb import DEFAULT_DATA_DIR, DEFAULT_PORT, LocalServer
from ..migrations.catalog import LEDGER_SCHEMA
from ..migrations.target import Target
from .errors import DatabaseNotOurs

MAINTENANCE_DB = "postgres"
COMMENT = "junkquote-db ephemeral stack {stack}"
_COMMENT_OF = """SELECT shobj_description(d.oid, 'pg_database') FROM pg_database d WHERE d.datname = %s"""
# Application schemas: every schema but the system's and the ledger's ({ledger} is its name, as a literal).
_APP_SCHEMA = """n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', {ledger})
                 AND n.nspname NOT LIKE 'pg\\_%'"""
_MINE = "pg_get_userbyid({owner}) = current_user"
_ADMIN_OWNED = f"""SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE {_MINE.format(owner='c.relowner')} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                     AND {_APP_SCHEMA}"""
# Everything the connecting admin owns in the application schemas goes to the migrator (a setting carries its name
# into the block). Sequences that belong to a column move with their table.
_HAND_OVER = f"""DO $$
DECLARE r record; migrator text := current_setting('junkquote.migrator');
BEGIN
  FOR r IN SELECT n.nspname FROM pg_namespace n
           WHERE {_MINE.format(owner='n.nspowner')} AND n.nspname <> 'public' AND {_APP_SCHEMA} LOOP
    EXECUTE format('ALTER SCHEMA %I OWNER TO %I', r.nspname, migrator);
  END LOOP;
  FOR r IN SELECT c.oid::regclass AS rel, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE {_MINE.format(owner='c.relowner')} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {_APP_SCHEMA}
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                               AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')) LOOP
    EXECUTE format('ALTER %s %s OWNER TO %I', CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                   WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, r.rel, migrator);
  END LOOP;
  FOR r IN SELECT t.oid::regtype AS typ FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE {_MINE.format(owner='t.typowner')} AND t.typtype IN ('e', 'd', 'r') AND {_APP_SCHEMA} LOOP
    EXECUTE format('ALTER TYPE %s OWNER TO %I', r.typ, migrator);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE {_MINE.format(owner='p.proowner')} AND {_APP_SCHEMA} LOOP
    EXECUTE format('ALTER ROUTINE %s OWNER TO %I', r.fn, migrator);
  END LOOP;
END $$"""


def _with_ledger(query: str) -> sql.Composed:
    return sql.SQL(query).format(ledger=sql.Literal(LEDGER_SCHEMA))


def maintenance(admin: Target) -> Target:
    return admin.with_database(MAINTENANCE_DB)


def start_local_if_needed(admin: Target) -> None:
    """The local embedded server (as `make db-start`), when that is where the stack's database lives."""
    if admin.host == "127.0.0.1" and admin.port == DEFAULT_PORT:
        LocalServer(DEFAULT_DATA_DIR, DEFAULT_PORT).start()


def ensure_database(admin: Target, stack: str) -> bool:
    """The stack's database, created (empty, owned by the admin) with a comment naming the stack; True if created."""
    with maintenance(admin).connect(autocommit=True) as conn:
        row = conn.execute(_COMMENT_OF, (admin.dbname,)).fetchone()
        if row is not None:
            _refuse_unless_ours(admin.dbname, stack, row[0])
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(admin.dbname)))
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(admin.dbname), sql.Literal(COMMENT.format(stack=stack))))
        return True


def drop_database(admin: Target, stack: str) -> bool:
    """Drops the stack's database if it exists and its comment names the stack; True if dropped."""
    with maintenance(admin).connect(autocommit=True) as conn:
        row = conn.execute(_COMMENT_OF, (admin.dbname,)).fetchone()
        if row is None:
            return False
        _refuse_unless_ours(admin.dbname, stack, row[0])
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(admin.dbname)))
        return True


def database_exists(admin: Target) -> bool:
    with maintenance(admin).connect(autocommit=True) as conn:
        return conn.execute(_COMMENT_OF, (admin.dbname,)).fetchone() is not None


def _refuse_unless_ours(database: str, stack: str, comment: str | None) -> None:
    if comment != COMMENT.format(stack=stack):
        raise DatabaseNotOurs(database, stack, comment)


def has_ledger(target: Target) -> bool:
    with target.connect(autocommit=True) as conn:
        return conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (LEDGER_SCHEMA,)).fetchone() == (True,)


def admin_owned_objects(target: Target) -> int:
    """How many tables, views and sequences of the application schemas the connecting admin owns."""
    with target.connect(autocommit=True) as conn:
        row = conn.execute(_with_ledger(_ADMIN_OWNED)).fetchone()
        return int(row[0]) if row else 0


def hand_over(target: Target, migrator: str) -> None:
    """Everything the admin owns in the application schemas becomes the migrator's, in one transaction."""
    with target.connect() as conn, conn.transaction():
        conn.execute("SELECT set_config('junkquote.migrator', %s, true)", (migrator,))
        conn.execute(_with_ledger(_HAND_OVER))


def remaining_roles(admin: Target, names: list[str]) -> list[str]:
    with maintenance(admin).connect(autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1", (names,))]
