"""`python -m infra.pr_report STACK...`: the Markdown review of what each stack will do with the checked-out
batches, for a pull-request comment. Reads each stack's config through the Pulumi CLI and its ledger
(read-only); never prints a password."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .migrations.errors import MigrationError
from .migrations.plan import load_batches
from .review.collect import review_stack
from .review.markdown import render
from .review.model import StackReview
from .review.stack_config import StackConfigUnreadable, read_stack_config, settings_from_config
from .settings import SQL_DIR, ConfigError

PROJECT_DIR = Path(__file__).resolve().parent.parent


def review(stack: str, project_dir: Path = PROJECT_DIR, sql_dir: Path = SQL_DIR) -> StackReview:
    """One stack's review; a config or checkout problem becomes its blocker (the target stays unknown)."""
    try:
        settings = settings_from_config(stack, read_stack_config(stack, project_dir), sql_dir)
        batches = load_batches(sql_dir, before=settings.migrations.roll_back_from)
    except (StackConfigUnreadable, ConfigError, MigrationError) as err:
        return StackReview(stack, "unknown", "unknown", blockers=(str(err),))
    return review_stack(settings, batches)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.pr_report", description=__doc__)
    parser.add_argument("stacks", nargs="+", help="the stacks to review, e.g. staging prod")
    parser.add_argument("--out", type=Path, help="write the Markdown here instead of standard output")
    parser.add_argument("--fail-on-blocker", action="store_true", help="exit 1 when any stack has a blocker")
    args = parser.parse_args(argv)
    reviews = [review(stack) for stack in args.stacks]
    text = render(reviews)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 1 if args.fail_on_blocker and any(r.blockers for r in reviews) else 0


if __name__ == "__main__":
    sys.exit(main())
