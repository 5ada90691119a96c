"""The schema-object provider's diff: what `up` updates, and what `refresh` reports as drift. No database."""

from __future__ import annotations

from typing import Any

from infra.providers.schema_object import SchemaChecksProvider, SchemaObjectProvider

LEAD = {"columns": [{"name": "id", "type": "text", "nullable": False, "default": None}],
        "indexes": {}, "constraints": {"Lead_pkey": "PRIMARY KEY (id)"}}
INPUTS: dict[str, Any] = {"kind": "table", "name": "Lead", "batches": ["0000_baseline"], "allowedDrift": [],
                          "target": "h:5432/db", "connection": {"host": "h"}, "expected": LEAD}


def test_a_state_that_matches_what_the_batches_built_has_no_diff() -> None:
    assert not SchemaObjectProvider().diff("table:Lead", {**INPUTS, **LEAD}, INPUTS).changes


def test_a_live_column_the_batches_did_not_build_is_a_diff() -> None:
    live = {**LEAD, "columns": [*LEAD["columns"], {"name": "notes", "type": "text", "nullable": True, "default": None}]}

    assert SchemaObjectProvider().diff("table:Lead", {**INPUTS, **live}, INPUTS).changes


def test_a_batch_that_alters_the_table_updates_it_and_a_pending_one_shows_as_an_update_in_a_preview() -> None:
    altered = {**INPUTS, "batches": ["0000_baseline", "0002_notes"], "expected": object()}  # unknown until applied

    assert SchemaObjectProvider().diff("table:Lead", {**INPUTS, **LEAD}, altered).changes


def test_checks_that_already_failed_at_up_are_accepted_and_new_failures_are_drift() -> None:
    inputs = {"validationSql": {"0000_baseline": ["SELECT 1"]}, "allowedDrift": [], "target": "t", "connection": {}}
    accepted = {**inputs, "unexpectedObjects": [], "failedChecks": ["0000_baseline/x"], "acceptedFailures": ["0000_baseline/x"]}
    worse = {**accepted, "failedChecks": ["0000_baseline/x", "0000_baseline/y"]}
    extra = {**accepted, "unexpectedObjects": ['table "Scratch": extra (no batch built it)']}

    assert not SchemaChecksProvider().diff("checks", accepted, inputs).changes
    assert SchemaChecksProvider().diff("checks", worse, inputs).changes
    assert SchemaChecksProvider().diff("checks", extra, inputs).changes
