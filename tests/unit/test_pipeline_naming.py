"""What makes a stack ephemeral, and the config an ephemeral stack gets from its base stack."""

from __future__ import annotations

from typing import Any

import pytest

from infra.pipeline.errors import BaseStackUnusable, NotEphemeral
from infra.pipeline.naming import Server, ephemeral_values, refuse_unless_ephemeral, secret_keys, stack_for
from infra.settings import parse_migrations

STAGING: dict[str, Any] = {
    "database": {"host": "db.staging.internal", "port": 5432, "name": "junkquote", "user": "junkquote_admin", "sslmode": "require"},
    "migrations": {"lint": "block", "protected": False, "backupBeforeApply": "/backups"},
    "roles": {"schema": "public", "migrator": {"name": "jq_migrator", "login": False}, "app": {"name": "jq_app"},
              "readonly": {"name": "jq_readonly"}, "members": [{"name": "kim", "memberOf": "readonly"}]},
}
SERVER = Server("db.staging.internal", 5432, "junkquote_admin", "require")


@pytest.mark.parametrize(("stack", "values", "reason"), [
    ("prod", {"ephemeral": True}, "a shared stack"),
    ("staging", {"ephemeral": "true"}, "a shared stack"),
    ("pr-1", {"ephemeral": True, "migrations": {"protected": True}}, "migrations.protected: true"),
    ("pr-1", {}, "does not mark it ephemeral"),
    ("pr-1", {"ephemeral": False}, "does not mark it ephemeral"),
    ("pr-1", None, "no stack config here"),
])
def test_a_stack_is_ephemeral_only_when_its_own_config_says_so_and_nothing_else_forbids_it(
        stack: str, values: dict[str, Any] | None, reason: str) -> None:
    with pytest.raises(NotEphemeral, match=reason):
        refuse_unless_ephemeral(stack, values)


def test_the_base_and_restore_source_are_never_ephemeral() -> None:
    with pytest.raises(NotEphemeral, match="shared stack"):
        refuse_unless_ephemeral("qa", {"ephemeral": True}, shared={"qa"})
    refuse_unless_ephemeral("pr-12", {"ephemeral": "true"}, shared={"qa"})


def test_only_a_pr_number_or_a_plain_stack_name_names_an_ephemeral_stack() -> None:
    assert stack_for("123", None) == "pr-123"
    assert stack_for(None, "review-app") == "review-app"
    for pr, stack in (("12; rm", None), (None, "Prod/x"), ("1", "pr-1"), (None, None)):
        with pytest.raises(NotEphemeral):
            stack_for(pr, stack)


def test_an_ephemeral_stack_gets_its_own_database_and_roles_unprotected_and_marked() -> None:
    values = ephemeral_values("staging", STAGING, "pr-123", SERVER)
    assert values["database"] == {**STAGING["database"], "name": "junkquote_pr_123"}
    assert values["migrations"] == {"lint": "block", "protected": False}  # no pre-apply backup of a throwaway copy
    roles = values["roles"]
    assert [roles[k]["name"] for k in ("migrator", "app", "readonly")] == ["jq_migrator_pr_123", "jq_app_pr_123", "jq_readonly_pr_123"]
    assert roles["members"] == [{"name": "kim_pr_123", "memberOf": "readonly"}]
    assert values["ephemeral"] is True
    assert STAGING["roles"]["app"]["name"] == "jq_app"  # the base's config is not changed


def test_the_base_stacks_secrets_are_never_copied_into_the_plain_config() -> None:
    values = ephemeral_values("staging", {**STAGING, "password": "pw", "appPassword": "x", "memberPasswords": {"kim": "y"}},
                              "pr-1", SERVER)
    assert not {"password", "appPassword", "memberPasswords"} & set(values)


def test_the_login_roles_of_an_ephemeral_stack_each_need_a_password() -> None:
    values = ephemeral_values("staging", STAGING, "pr-1", SERVER)
    assert secret_keys(values) == ["appPassword", "readonlyPassword", "memberPasswords.kim_pr_1"]
    assert secret_keys({"database": {}}) == []


def test_a_derived_name_longer_than_postgresql_allows_is_refused() -> None:
    long_name = {**STAGING, "database": {**STAGING["database"], "name": "j" * 60}}
    with pytest.raises(BaseStackUnusable, match="at most 63 characters"):
        ephemeral_values("staging", long_name, "pr-123", SERVER)


def test_the_pre_apply_backup_setting_takes_a_directory_or_a_file_url() -> None:
    assert str(parse_migrations({"backupBeforeApply": "/var/backups"}).backup_before_apply) == "/var/backups"
    assert str(parse_migrations({"backupBeforeApply": "file:///mnt/b"}).backup_before_apply) == "/mnt/b"
    assert parse_migrations({}).backup_before_apply is None
    with pytest.raises(Exception, match="backupBeforeApply 's3://b' is not a directory"):
        parse_migrations({"backupBeforeApply": "s3://b"})
