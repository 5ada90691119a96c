"""The one place that reads stack config. Returns frozen, validated settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from .access.settings import SECRET_KEYS, AccessSettings, PasswordFor, parse_access
from .backfill_settings import BackfillSettings, parse_backfill, parse_gates
from .config_errors import PROJECT, ConfigError, refuse_unknown
from .durations import parse_duration_ms
from .migrations.drift import parse_allowed
from .migrations.plan import BATCH_NAME

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
KNOWN_KEYS = frozenset({"database", "password", "migrations", "roles", "backfill", "gates"}) | SECRET_KEYS
SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$")
DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the schema lives. The password is kept out of repr; resources receive it as a secret Output."""

    host: str
    port: int
    name: str
    user: str
    sslmode: str
    password: str | None = field(default=None, repr=False)

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}/{self.name}"


@dataclass(frozen=True)
class MigrationSettings:
    """How batches are applied on this stack."""

    sql_dir: Path
    lock_timeout_ms: int
    statement_timeout_ms: int
    lock_retries: int
    lock_wait_ms: int
    protected: bool
    adopt_baseline: bool
    lint: str
    allowed_drift: frozenset[str] = frozenset()  # objects added outside the batches that are not drift
    roll_back_from: str | None = None  # this batch and every later one are rolled back and not applied


@dataclass(frozen=True)
class StackSettings:
    stack: str
    database: DatabaseSettings
    migrations: MigrationSettings
    access: AccessSettings | None = None
    backfill: BackfillSettings = field(default_factory=BackfillSettings)  # backfill_settings.py
    gates: frozenset[str] = frozenset()


def _require(obj: Mapping[str, Any], section: str, key: str) -> Any:
    value = obj.get(key)
    if value in (None, ""):
        raise ConfigError(f"{section}.{key}", "is required; set it in Pulumi.<stack>.yaml")
    return value


def parse_database(obj: Mapping[str, Any] | None, password: str | None) -> DatabaseSettings:
    if not isinstance(obj, Mapping):
        raise ConfigError("database", "is required: an object with host, port, name, user")
    refuse_unknown(obj, "database", {"host", "port", "name", "user", "sslmode"})
    host = str(_require(obj, "database", "host"))
    if not HOSTNAME.match(host):
        raise ConfigError("database.host", f"'{host}' is not a host name or IP address")
    port = _port(obj.get("port", 5432))
    name = str(_require(obj, "database", "name"))
    if not DATABASE_NAME.match(name):
        raise ConfigError("database.name", f"'{name}' is not a valid database name")
    sslmode = str(obj.get("sslmode", "prefer"))
    if sslmode not in SSL_MODES:
        raise ConfigError("database.sslmode", f"'{sslmode}' is not one of {', '.join(sorted(SSL_MODES))}")
    user = str(_require(obj, "database", "user"))
    return DatabaseSettings(host=host, port=port, name=name, user=user, sslmode=sslmode, password=password)


def _port(value: Any) -> int:
    """A TCP port, written as a number or as a string of digits (`port: "5432"`, as `pulumi config set` stores it)."""
    port = int(value) if isinstance(value, str) and value.strip().isdigit() else value
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError("database.port", f"'{value}' is not a TCP port (1-65535)")
    return port


MAX_TIMEOUT_MS = 2_147_483_647  # PostgreSQL's limit for lock_timeout and statement_timeout (about 24.8 days)


def _duration(obj: Mapping[str, Any], key: str, default: str) -> int:
    ms = parse_duration_ms(obj.get(key, default))
    if ms is None or ms <= 0:
        raise ConfigError(f"migrations.{key}", f"'{obj.get(key)}' is not a duration like 500ms, 30s, 5min or 1h")
    if ms > MAX_TIMEOUT_MS:
        raise ConfigError(f"migrations.{key}", f"'{obj.get(key)}' is longer than PostgreSQL allows (at most 596h)")
    return ms


def parse_migrations(obj: Mapping[str, Any] | None, sql_dir: Path = SQL_DIR) -> MigrationSettings:
    obj = obj or {}
    refuse_unknown(obj, "migrations", {"lockTimeout", "statementTimeout", "lockRetries", "lockWait", "protected", "baseline",
                                       "lint", "allowedDrift", "rollBackFrom"})
    retries = obj.get("lockRetries", 10)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
        raise ConfigError("migrations.lockRetries", f"'{retries}' is not a whole number from 0 to 100")
    baseline = obj.get("baseline", "apply")
    if baseline not in ("apply", "adopt"):
        raise ConfigError("migrations.baseline", f"'{baseline}' must be 'apply' (run 0000 on a new database) or 'adopt' (record it on a live one)")
    lint = obj.get("lint", "warn")
    if lint not in ("warn", "block"):
        raise ConfigError("migrations.lint", f"'{lint}' must be 'warn' or 'block'")
    protected = obj.get("protected", False)
    if not isinstance(protected, bool):
        raise ConfigError("migrations.protected", f"'{protected}' must be true or false")
    return MigrationSettings(
        sql_dir=sql_dir,
        lock_timeout_ms=_duration(obj, "lockTimeout", "500ms"),
        statement_timeout_ms=_duration(obj, "statementTimeout", "30min"),
        lock_retries=retries,
        lock_wait_ms=_duration(obj, "lockWait", "2min"),
        protected=protected,
        adopt_baseline=baseline == "adopt",
        lint=lint,
        allowed_drift=_allowed_drift(obj.get("allowedDrift", [])),
        roll_back_from=_batch_name(obj.get("rollBackFrom")),
    )


def _batch_name(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not BATCH_NAME.match(value):
        raise ConfigError("migrations.rollBackFrom", f"'{value}' is not a batch name like 0001_add_memory_entities")
    return value


def _allowed_drift(value: Any) -> frozenset[str]:
    if not isinstance(value, list):
        raise ConfigError("migrations.allowedDrift", f"'{value}' must be a list like [\"index Lead.lead_by_hand_idx\"]")
    try:
        return parse_allowed(value)
    except ValueError as err:
        raise ConfigError("migrations.allowedDrift", str(err)) from None


def configured_keys() -> set[str]:
    """The keys of this project's namespace that the stack config sets."""
    config = pulumi.runtime.config.CONFIG.get()
    prefix = f"{PROJECT}:"
    return {k[len(prefix):] for k in config if k.startswith(prefix)}


def load_settings() -> StackSettings:
    unknown = sorted(configured_keys() - KNOWN_KEYS)
    if unknown:
        raise ConfigError(unknown[0], f"is not a known setting (known: {', '.join(sorted(KNOWN_KEYS))})")
    config = pulumi.Config(PROJECT)
    secrets = secret_reader(config)
    return StackSettings(
        stack=pulumi.get_stack(),
        database=parse_database(config.get_object("database"), secrets("password")),
        migrations=parse_migrations(config.get_object("migrations")),
        access=parse_access(config.get_object("roles"), secrets),
        backfill=parse_backfill(config.get_object("backfill")),
        gates=parse_gates(config.get_object("gates")),
    )


def secret_reader(config: pulumi.Config) -> PasswordFor:
    """A password getter over the stack's secrets: 'appPassword' reads a key, 'memberPasswords.kim' one entry of
    the object memberPasswords. A value stored in plaintext is refused; a missing one is None."""

    def read(key: str) -> str | None:
        top, _, entry = key.partition(".")
        value = config.get_object(top) if entry else config.get(top)
        if value is not None and not pulumi.runtime.config.is_config_secret(config.full_key(top)):
            how = f"--path 'junkquote-db:{key}'" if entry else f"junkquote-db:{key}"
            raise ConfigError(top, f"must be a secret; run `pulumi config set --secret {how} <password>` "
                                    "(and remove the plaintext value)")
        if entry:
            value = value.get(entry) if isinstance(value, Mapping) else None
        return None if value in (None, "") else str(value)

    return read
