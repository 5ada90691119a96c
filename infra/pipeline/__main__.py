"""`python -m infra.pipeline up|down|rehearse (--pr N | --stack NAME) [--base STACK] [--restore-from STACK]
[--data schema|full]`: the ephemeral stack of a pull request, and the rollback rehearsal on it. Errors are one
line on standard error (exit 1); nothing prints a password."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

from ..migrations.dump import DATA_MODES
from ..migrations.errors import MigrationError
from .ephemeral import Request, down, up
from .errors import PipelineError
from .naming import stack_for
from .rehearsal import rehearse
from .workspace import PROJECT_DIR, Workspace

COMMANDS = {"up": up, "down": down, "rehearse": rehearse}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.pipeline", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--pr", help="the pull request's number: the stack is pr-<number>")
    parser.add_argument("--stack", help="the ephemeral stack's name, instead of --pr")
    parser.add_argument("--base", default="staging", help="the stack whose settings and server it uses (staging)")
    parser.add_argument("--restore-from", help="restore a pg_dump of this stack's database first (e.g. prod)")
    parser.add_argument("--data", choices=DATA_MODES, default="schema", help="what the dump holds (schema)")
    parser.add_argument("--project-dir", type=Path, default=Path.cwd() if (Path.cwd() / "Pulumi.yaml").exists() else PROJECT_DIR)
    args = parser.parse_args(argv)
    ws = Workspace(args.project_dir, out=lambda line: print(line.rstrip("\n"), flush=True))
    try:
        request = Request(stack_for(args.pr, args.stack), base=args.base, restore_from=args.restore_from, data=args.data)
        COMMANDS[args.command](ws, request)
    except (PipelineError, MigrationError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    except psycopg.Error as err:  # a query of the pipeline itself (the engine converts its own)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        print(f"error: {args.command} of {args.pr or args.stack} stopped on a database error: {first}; run it again, "
              "every step checks what exists first", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
