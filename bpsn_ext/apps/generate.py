"""``bpsn-ext generate listops|pathfinder`` (stub: filled in by issue 7)."""

from __future__ import annotations

import argparse

GENERATE_HELP = {
    "listops": "write ListOps train/val/test TSV files (lra_release layout)",
    "pathfinder": "write Pathfinder images and metadata (lra_release layout)",
}


def add_generate_arguments(parser: argparse.ArgumentParser, which: str) -> None:
    """Flags of ``generate listops`` / ``generate pathfinder``."""


def run_generate(args: argparse.Namespace) -> int:
    raise NotImplementedError(f"generate {args.task_kind} is not implemented yet")
