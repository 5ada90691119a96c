"""An ephemeral stack per pull request: up (stack, database, optional restore of a source's pg_dump, `pulumi up`),
down (`pulumi destroy`, drop the database, `pulumi stack rm`). Every step checks what exists first, so a run that
stopped halfway is finished by running the same command again.

Order matters for that: `up` writes the stack file (with the ephemeral mark) and creates the stack before the
database, so whenever a database exists its stack does too, and `down` removes the stack last.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config_errors import ConfigError
from ..localdb import DEFAULT_PORT, SUPERUSER
from ..migrations.dump import dump_database, restore_database
from ..migrations.errors import MigrationError
from ..migrations.target import Target
from ..providers.connection_props import target_of
from ..review.stack_config import settings_from_config
from ..settings import SQL_DIR, StackSettings
from . import server
from .errors import BaseStackUnusable, NotEphemeral
from .naming import Server, ephemeral_values, refuse_unless_ephemeral, secret_keys
from .workspace import Workspace

SCHEMA_URN = "urn:pulumi:{stack}::junkquote-db::junkquote:schema:SchemaMigrations::schema"


@dataclass(frozen=True)
class Request:
    """Which ephemeral stack, made from which base stack, optionally restored from a source stack's pg_dump."""

    stack: str
    base: str = "staging"
    restore_from: str | None = None
    data: str = "schema"  # what the dump holds: schema | full

    def __post_init__(self) -> None:
        refuse_unless_ephemeral(self.stack, {"ephemeral": True}, self.shared)  # a shared name, whatever its config

    @property
    def shared(self) -> set[str]:
        return {self.base, *([self.restore_from] if self.restore_from else [])}


def up(ws: Workspace, req: Request) -> None:
    settings = prepare(ws, req)
    apply(ws, settings)
    ws.out(f"ephemeral stack '{req.stack}' is up on {settings.database.target}")


def down(ws: Workspace, req: Request) -> None:
    if not ws.exists(req.stack):
        ws.out(f"nothing to do: stack '{req.stack}' does not exist")
        return
    settings = _own_settings(ws, req)
    ws.destroy(req.stack, "fix the cause (the rollback's error above) and run `make ephemeral-down` again; it resumes")
    admin = target_of(settings.database)
    if server.database_exists(admin):
        server.drop_database(admin, req.stack)
        ws.out(f"dropped database {settings.database.target}")
    left = server.remaining_roles(admin, _role_names(settings))
    if left:
        ws.out(f"warning: roles {', '.join(left)} remain after `pulumi destroy`; drop them by hand")
    ws.remove(req.stack)
    ws.out(f"ephemeral stack '{req.stack}' removed")


def prepare(ws: Workspace, req: Request) -> StackSettings:
    """The stack (file, backend, secrets) and its database, restored from the source when asked; no `pulumi up`."""
    _ensure_stack(ws, req)
    settings = _own_settings(ws, req)
    admin = target_of(settings.database)
    server.start_local_if_needed(admin)
    if server.ensure_database(admin, req.stack):
        ws.out(f"created database {settings.database.target}")
    if req.restore_from and not server.has_ledger(admin):
        _restore(ws, req, admin)
    return settings


def apply(ws: Workspace, settings: StackSettings) -> None:
    """`pulumi up`; restored objects are first handed to the stack's migrator (whose roles a first, schema-less
    `up` creates), since the batches run as the migrator and must own what they alter."""
    admin = target_of(settings.database)
    stack = settings.stack
    if settings.access and server.admin_owned_objects(admin):
        ws.up(stack, "pulumi up (roles only)", "fix the cause and run again",
              exclude=[SCHEMA_URN.format(stack=stack)], exclude_dependents=True)
        server.hand_over(admin, settings.access.migrator.name)
        ws.out(f"restored objects handed over to {settings.access.migrator.name}")
    ws.up(stack, "pulumi up", "fix the cause and run the same command again; applied batches stay recorded")


def _ensure_stack(ws: Workspace, req: Request) -> None:
    if ws.exists(req.stack) and ws.stack_file(req.stack).exists():
        refuse_unless_ephemeral(req.stack, ws.file_values(req.stack), req.shared)
    elif ws.exists(req.stack) and not ws.tagged(req.stack):
        refuse_unless_ephemeral(req.stack, None, req.shared)
    else:
        refuse_unless_ephemeral(req.stack, {"ephemeral": True}, req.shared)
        base_values, password, srv = _base(ws, req.base)
        ws.write_values(req.stack, ephemeral_values(req.base, base_values, req.stack, srv))
        ws.create(req.stack)
        if password:
            ws.set_secret(req.stack, "password", password)
    _ensure_role_passwords(ws, req.stack)


def _own_settings(ws: Workspace, req: Request) -> StackSettings:
    """The ephemeral stack's own settings, after checking it is ephemeral; a stack file missing from this checkout
    (another CI job made it) is written again from the base when the backend's tag marks the stack ephemeral."""
    if not ws.stack_file(req.stack).exists():
        if not ws.tagged(req.stack):
            refuse_unless_ephemeral(req.stack, None, req.shared)
        _ensure_stack(ws, req)
    refuse_unless_ephemeral(req.stack, ws.file_values(req.stack), req.shared)
    try:
        return settings_from_config(req.stack, _as_cli_json(ws.config(req.stack)), SQL_DIR)
    except ConfigError as err:
        raise BaseStackUnusable(req.base, str(err), "fix the base stack's config") from None


def _ensure_role_passwords(ws: Workspace, stack: str) -> None:
    """A generated password for each login role that has none yet (kept on a re-run)."""
    have = ws.config(stack)
    for key in secret_keys(ws.file_values(stack) or {}):
        top, _, entry = key.partition(".")
        current = have.get(top)
        if entry:
            current = current.get(entry) if isinstance(current, Mapping) else None
        if current in (None, ""):
            ws.set_secret(stack, key, secrets.token_urlsafe(24))


def _base(ws: Workspace, base: str) -> tuple[dict[str, Any], str | None, Server]:
    """The base stack's plain config, its admin password and its server; the local embedded server when the base
    stack does not exist in this backend (no server configured)."""
    if not ws.exists(base):
        values = ws.file_values(base)
        if values is None:
            raise BaseStackUnusable(base, f"there is no Pulumi.{base}.yaml and no such stack",
                                    "pass BASE=<stack> or create the base stack")
        ws.out(f"stack '{base}' is not in this backend: the ephemeral database goes to the local embedded PostgreSQL")
        return values, None, Server("127.0.0.1", DEFAULT_PORT, SUPERUSER, "disable", local=True)
    values = ws.config(base)
    migrations = values.get("migrations") or {}
    if isinstance(migrations, Mapping) and migrations.get("protected") is True:
        raise BaseStackUnusable(base, "it is protected (migrations.protected: true), its server is not for throwaway "
                                      "databases", "make ephemeral stacks from staging (BASE=staging)")
    db = values.get("database") or {}
    srv = Server(str(db.get("host")), int(db.get("port", 5432)), str(db.get("user")), str(db.get("sslmode", "prefer")))
    password = values.get("password")
    return {k: v for k, v in values.items() if k != "password"}, (str(password) if password else None), srv


def _restore(ws: Workspace, req: Request, admin: Target) -> None:
    """A pg_dump of the source stack's database restored into the (empty) ephemeral one, in one transaction."""
    try:
        source = settings_from_config(req.restore_from or "", _as_cli_json(ws.config(req.restore_from or "")), SQL_DIR)
    except ConfigError as err:
        raise BaseStackUnusable(str(req.restore_from), str(err), "fix the source stack's config") from None
    with tempfile.TemporaryDirectory(prefix="junkquote-dump-") as tmp:
        path = Path(tmp) / f"{source.stack}.dump"
        try:
            dump_database(target_of(source.database), path, data=req.data)
            restore_database(admin, path)
        except MigrationError as err:
            raise BaseStackUnusable(str(req.restore_from), str(err), "nothing was applied") from None
    ws.out(f"restored a pg_dump ({req.data}) of stack '{source.stack}' ({source.database.target}) into "
           f"{admin.display()}: the backup restores")


def _as_cli_json(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Values back in the shape settings_from_config reads (the CLI's `pulumi config --json`)."""
    return {f"junkquote-db:{k}": ({"objectValue": v} if isinstance(v, (dict, list)) else {"value": v})
            for k, v in values.items()}


def _role_names(settings: StackSettings) -> list[str]:
    return [r.name for r in settings.access.all_roles()] if settings.access else []


__all__ = ["NotEphemeral", "Request", "apply", "down", "prepare", "up"]