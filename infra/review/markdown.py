"""Renders stack reviews as Markdown for a pull-request comment. A pure function of the data in model.py."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .model import BatchReview, Relation, StackReview, Table

MARKER = "<!-- junkquote-db review -->"  # lets a CI job find and update its own comment


def render(reviews: Sequence[StackReview]) -> str:
    """The whole comment: a summary table, every blocker, then one section per stack."""
    lines = [MARKER, "# Database review", "", "| stack | target | will do |", "| --- | --- | --- |"]
    lines += [f"| `{r.stack}` | `{r.target}` | {_cell(r.summary)} |" for r in reviews]
    blockers = [(r.stack, b) for r in reviews for b in r.blockers]
    if blockers:
        lines += ["", "## :no_entry: Blockers", ""]
        lines += [f"- **{stack}**: {_inline(text)}" for stack, text in blockers]
    for review in reviews:
        lines += ["", *_stack(review)]
    return "\n".join(lines) + "\n"


def _stack(r: StackReview) -> list[str]:
    lines = [f"## Stack `{r.stack}` → `{r.target}`", "", f"**Will do:** {r.summary} (lint policy: `{r.lint_policy}`)"]
    if r.waiting:
        lines += ["", f"**Waiting:** {_inline(r.waiting)}"]
    lines += [f"- {_inline(c)}" for c in r.corrections]
    if r.tables:
        lines += ["", "### Tables added or changed", "", *mermaid(r.tables, r.relations)]
    for batch in r.batches:
        lines += ["", *_batch(batch)]
    return lines


def _batch(b: BatchReview) -> list[str]:
    verb = "adopted (its checks run, none of its statements)" if b.action == "adopt" else "applied"
    lines = [f"### Batch `{b.name}`: {verb}", ""]
    if b.action == "apply":
        lines += ["**Steps**", "", "```text", *b.steps, "```", "", "**Locks on existing tables**", ""]
        lines += [f"- {_lock(line)}" for line in b.locks] or ["- none: live reads and writes never wait"]
        lines += ["", "**Lint (squawk)**", "", *_findings(b)]
    if b.backfill:
        lines += ["", "**Backfill**", ""]
        lines += [f"- :warning: {_inline(b.backfill_warning)}", ""] if b.backfill_warning else []
        lines += ["```text", *b.backfill, "```"]
    lines += ["", f"**Validation checks** ({len(b.checks)} statements of validation.sql, run in a transaction "
                  "that is rolled back)", ""]
    lines += [f"- {_inline(c)}" for c in b.checks]
    for file, text in b.sql.items():
        lines += ["", f"<details><summary>{file} ({text.count(chr(10)) + 1} lines)</summary>", "",
                  _fence(text, "sql"), "", "</details>"]
    return lines


def _lock(line: str) -> str:
    waits = "writes wait" if ("blocks writes" in line or "blocks reads and writes" in line) else "writes continue"
    icon = ":warning:" if waits == "writes wait" else ":white_check_mark:"
    return f"{icon} **{waits}**: {_inline(line)}"


def _findings(b: BatchReview) -> list[str]:
    if not b.findings:
        return ["- no findings"]
    out = []
    for f in b.findings:
        head = f"`{f.file}:{f.line}` `{f.rule}`: {_inline(f.message)}"
        out.append(f"- :white_check_mark: accepted, {head}; reason: {_inline(f.accepted_reason)}"
                   if f.accepted_reason is not None else f"- :x: {head}")
    return out


def mermaid(tables: Sequence[Table], relations: Sequence[Relation]) -> list[str]:
    """A Mermaid erDiagram: new tables with every column, changed ones with the columns added, and each
    foreign key as a many-to-one relation labelled with its columns."""
    lines = ["```mermaid", "erDiagram"]
    for t in tables:
        lines.append(f"    {_entity(t.name)} {{")
        lines += [f"        {_word(c.type)} {_word(c.name)}{' ' + c.key if c.key else ''}" for c in t.columns]
        lines.append("    }")
    for rel in relations:
        label = ", ".join(rel.columns)
        lines.append(f'    {_entity(rel.child)} }}o--|| {_entity(rel.parent)} : "{label}"')
    lines += ["```", "", "New: " + _names(t for t in tables if t.new) + ". Changed (columns added): "
              + _names(t for t in tables if not t.new) + "."]
    return lines


def _names(tables) -> str:
    names = [f"`{t.name}`" for t in tables]
    return ", ".join(names) or "none"


def _entity(name: str) -> str:
    return _word(name.replace(".", "__"))


def _word(text: str) -> str:
    """Mermaid's erDiagram names and types take letters, digits, _ and -; anything else becomes _."""
    return re.sub(r"[^A-Za-z0-9_\-\[\]]", "_", text) or "_"


def _fence(text: str, lang: str) -> str:
    """A code fence longer than any run of backticks in the text, so no SQL can close it early."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def _inline(text: str | None) -> str:
    """Text from files or errors, safe inside Markdown: no HTML, one line."""
    return (text or "").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def _cell(text: str) -> str:
    return _inline(text).replace("|", "\\|")
