"""Schema objects from the parsed batches, and drift between two shapes. No database."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.migrations.catalog import Column, Constraint, EnumType, Index, Shape, Table
from infra.migrations.drift import compare, parse_allowed, without_allowed
from infra.migrations.errors import SchemaDrift
from infra.providers.reporting import pulumi_message
from infra.migrations.objects import schema_objects, touched_by
from infra.migrations.plan import Batch, load_batches
from infra.schema_objects import declared_objects

ROOT = Path(__file__).resolve().parents[2]


def batch(name: str, migration: str) -> Batch:
    return Batch(name, migration, "SELECT 1;", "SELECT 1;")


def objects(*batches: Batch, indexes: dict[str, str] | None = None) -> dict[str, tuple[str, ...]]:
    return {f"{o.kind} {o.name}": o.batches for o in schema_objects(batches, indexes)}


# -- objects of the parsed batches ----------------------------------------------------------------------
def test_the_project_batches_build_the_baseline_tables_the_new_tables_and_the_enum() -> None:
    built = objects(*load_batches(ROOT / "sql")[:2])  # the baseline and batch 1

    assert set(built) == {"table Lead", "table Job", "table Audit", "table Customer", "table CustomerAddress",
                          "table Conversation", "table Message", "table MemoryNote", "table JobItem", "table JobEvent",
                          "enum MessageRole"}
    assert built["table Lead"] == ("0000_baseline", "0001_add_memory_entities"), "batch 1 adds customer_id to Lead"
    assert built["table Customer"] == ("0001_add_memory_entities",)


def test_a_later_batch_that_alters_renames_or_drops_an_object_is_followed() -> None:
    first = batch("0001_a", 'CREATE TABLE "A" (id int); CREATE TABLE b (id int); CREATE TYPE "Mood" AS ENUM (\'x\');'
                            'CREATE INDEX a_idx ON "A" (id);')
    second = batch("0002_b", "ALTER TYPE \"Mood\" ADD VALUE 'y'; ALTER TABLE b RENAME TO c; DROP INDEX a_idx;")
    third = batch("0003_c", 'DROP TABLE IF EXISTS "A"; ALTER TYPE "Mood" RENAME TO "Feeling";')

    assert objects(first, second) == {"table A": ("0001_a", "0002_b"), "table c": ("0001_a", "0002_b"),
                                      "enum Mood": ("0001_a", "0002_b")}
    assert objects(first, second, third) == {"table c": ("0001_a", "0002_b"), "enum Feeling": ("0001_a", "0002_b", "0003_c")}


def test_an_index_dropped_by_name_is_traced_to_its_table_through_the_recorded_shape() -> None:
    drop = batch("0002_drop", 'DROP INDEX CONCURRENTLY IF EXISTS "Lead_phone_idx";')

    assert touched_by([drop], {"Lead_phone_idx": "Lead"}) == {("table", "Lead")}
    assert touched_by([drop]) == set()


def test_temporary_tables_are_not_schema_objects() -> None:
    assert objects(batch("0001_tmp", "CREATE TEMP TABLE scratch (id int); DROP TABLE scratch;")) == {}


# -- comparing shapes ----------------------------------------------------------------------------------
LEAD = Table("Lead", (Column("id", "text", False, None), Column("zip", "text", True, None)),
             (Index("Lead_pkey", 'CREATE UNIQUE INDEX "Lead_pkey" ON "Lead" USING btree (id)'),),
             (Constraint("Lead_pkey", "PRIMARY KEY (id)"),))
SHAPE = Shape("public", (LEAD,), (EnumType("Mood", ("calm", "busy")),))


def test_equal_shapes_have_no_differences() -> None:
    assert compare(SHAPE, Shape.from_json(SHAPE.to_json())) == ()


def test_column_order_is_not_drift_but_label_order_is() -> None:
    reordered = Table("Lead", tuple(reversed(LEAD.columns)), LEAD.indexes, LEAD.constraints)
    assert compare(SHAPE, Shape("public", (reordered,), SHAPE.enums)) == ()

    relabelled = Shape("public", SHAPE.tables, (EnumType("Mood", ("busy", "calm")),))
    assert [str(d) for d in compare(SHAPE, relabelled)] == ['enum "Mood": labels (calm, busy) → (busy, calm)']


def test_one_column_change_can_be_several_differences_each_named() -> None:
    changed = Table("Lead", (LEAD.columns[0], Column("zip", "varchar(5)", False, "'00000'")), LEAD.indexes, LEAD.constraints)

    assert [str(d) for d in compare(SHAPE, Shape("public", (changed,), SHAPE.enums))] == [
        'column "Lead".zip: type text → varchar(5)',
        'column "Lead".zip: nullable → NOT NULL',
        "column \"Lead\".zip: default none → '00000'",
    ]


def test_an_allowed_object_is_left_out_on_both_sides() -> None:
    extra = Table("Lead", LEAD.columns, (*LEAD.indexes, Index("by_hand", "CREATE INDEX by_hand ...")), LEAD.constraints)
    live = Shape("public", (extra, Table("Tmp")), ())

    found = compare(SHAPE, live, parse_allowed(["index Lead.by_hand", "table Tmp", "enum Mood"]))

    assert found == ()
    assert without_allowed(live, {"table Tmp"}).table("Tmp") is None


@pytest.mark.parametrize("entry", ["Lead.by_hand", "index by_hand", "view v", "table", "column Lead", 7])
def test_a_malformed_allow_list_entry_is_refused_naming_the_format(entry: object) -> None:
    with pytest.raises(ValueError, match="is not one of 'table T', 'enum E', 'column T.c'"):
        parse_allowed([entry])  # type: ignore[list-item]


def test_the_drift_error_is_one_line_that_says_what_to_do() -> None:
    message = pulumi_message(SchemaDrift("db:5432/app", "0001_x", [f"column \"Lead\".c{i}: extra" for i in range(7)]))

    assert "\n" not in message
    assert "(7 differences: " in message and "; and 2 more" in message
    assert message.endswith("restore the objects by hand, or write a batch that makes the change deliberately "
                            "(`pulumi refresh` shows each difference)")


# -- which resources the program declares ---------------------------------------------------------------
def test_resources_are_the_objects_the_batches_build_plus_the_recorded_shapes_less_allowed_wholes() -> None:
    batches = [batch("0000_base", 'CREATE TABLE "Lead" (id int);')]
    recorded = Shape("public", (Table("Lead"), Table("_prisma_migrations"), Table("Tmp")), ())

    declared = declared_objects(batches, recorded, frozenset({"table Tmp"}))

    assert [(o.kind, o.name, o.batches) for o in declared] == [("table", "Lead", ("0000_base",)),
                                                              ("table", "_prisma_migrations", ())]


def test_an_object_a_pending_batch_drops_is_not_declared_even_though_the_recorded_shape_still_has_it() -> None:
    batches = [batch("0000_base", 'CREATE TABLE "Lead" (id int); CREATE TABLE "Note" (id int);'),
               batch("0001_drop", 'DROP TABLE IF EXISTS "Note";')]
    recorded = Shape("public", (Table("Lead"), Table("Note")), ())

    assert [o.name for o in declared_objects(batches, recorded, frozenset())] == ["Lead"]
