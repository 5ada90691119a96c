"""The privileges of the three managed roles as plain facts, and the plain-SQL imitation of DatabaseAccess.

`privilege_snapshot` reads, for the migrator, app and readonly roles of one schema: the database and schema ACLs,
the privileges on its tables, sequences and types (per kind of object, so any set of tables compares), the default
privileges, the memberships among the three and who owns the relations. The e2e tests compare the snapshot of a
database the real component (pulumi-postgresql) set up with the snapshot of `grant_like_the_component`, which is what
the integration tests of the privilege checks run on: equal snapshots make those fast tests tests of the real thing.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from infra.access.settings import RoleNames

GRANTEE = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END"
DATABASE_ACL = f"SELECT 'database', {GRANTEE}, a.privilege_type FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = current_database()"
SCHEMA_ACL = f"SELECT 'schema', {GRANTEE}, a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = %(schema)s"
RELATION_ACL = (
    f"SELECT CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END, {GRANTEE}, a.privilege_type "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a "
    "WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'S')"
)
TYPE_ACL = (
    f"SELECT 'type', {GRANTEE}, a.privilege_type FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace, "
    "aclexplode(t.typacl) a WHERE n.nspname = %(schema)s AND t.typtype = 'e'"
)
DEFAULT_ACL = (
    f"SELECT 'default ' || d.defaclobjtype::text || ' for ' || pg_get_userbyid(d.defaclrole), {GRANTEE}, a.privilege_type "
    "FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace, aclexplode(d.defaclacl) a "
    "WHERE n.nspname = %(schema)s"
)
MEMBERSHIPS = "SELECT 'member of ' || pg_get_userbyid(m.roleid), pg_get_userbyid(m.member), 'MEMBER' FROM pg_auth_members m"
OWNERS = (
    "SELECT DISTINCT 'owns relations', pg_get_userbyid(c.relowner), 'OWNER' FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'S')"
)


def privilege_snapshot(conn: psycopg.Connection, names: RoleNames, schema: str = "public") -> set[tuple[str, str, str]]:
    """(object, role kind, privilege) for every privilege one of the three roles holds; role names become kinds."""
    kinds = {names.migrator: "migrator", names.app: "app", names.readonly: "readonly"}
    facts: set[tuple[str, str, str]] = set()
    for query in (DATABASE_ACL, SCHEMA_ACL, RELATION_ACL, TYPE_ACL, DEFAULT_ACL, MEMBERSHIPS, OWNERS):
        for what, role, privilege in conn.execute(query, {"schema": schema}):
            if role in kinds:
                for name, kind in kinds.items():
                    what = what.replace(f" {name}", f" {kind}")
                facts.add((what, kinds[role], privilege))
    return facts


def run(conn: psycopg.Connection, template: str, *identifiers: str) -> None:
    conn.execute(sql.SQL(template).format(*(sql.Identifier(i) for i in identifiers)))


def grant_like_the_component(conn: psycopg.Connection, roles: RoleNames, dbname: str) -> None:
    """The grants DatabaseAccess makes, in plain SQL, then two batch tables created as the migrator."""
    m, a, r = roles.migrator, roles.app, roles.readonly
    run(conn, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")  # PostgreSQL 14 and older grant it to everyone
    run(conn, "GRANT CONNECT ON DATABASE {} TO {}, {}, {}", dbname, m, a, r)
    run(conn, "GRANT CREATE ON DATABASE {} TO {}", dbname, m)
    run(conn, "GRANT USAGE, CREATE ON SCHEMA public TO {}", m)
    run(conn, "GRANT USAGE ON SCHEMA public TO {}, {}", a, r)
    run(conn, "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}", m, a)
    run(conn, "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {}", m, a)
    run(conn, "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT USAGE ON TYPES TO {}", m, a)
    run(conn, "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT SELECT ON TABLES TO {}", m, r)
    run(conn, "SET ROLE {}", m)
    conn.execute("CREATE TYPE \"MessageRole\" AS ENUM ('user', 'assistant', 'system', 'tool')")
    conn.execute('CREATE TABLE "Customer" (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL)')
    conn.execute('CREATE TABLE "Message" (id uuid PRIMARY KEY, role "MessageRole" NOT NULL, content text NOT NULL)')
    conn.execute("RESET ROLE")
    run(conn, "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}", a)
    run(conn, "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}", a)
    run(conn, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}", r)
