"""``bpsn-ext train glue`` / ``bpsn-ext evaluate glue`` (stub: filled in by issue 6)."""

from __future__ import annotations

import argparse

TRAIN_HELP = "train SNN-BERT on a GLUE task"
EVALUATE_HELP = "evaluate an SNN-BERT checkpoint on a GLUE task"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``train glue``."""


def run_train(args: argparse.Namespace) -> int:
    raise NotImplementedError("train glue is not implemented yet")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``evaluate glue``."""


def run_evaluate(args: argparse.Namespace) -> int:
    raise NotImplementedError("evaluate glue is not implemented yet")
