"""``bpsn-ext train lra`` / ``bpsn-ext evaluate lra`` (stub: filled in by issue 7)."""

from __future__ import annotations

import argparse

TRAIN_HELP = "train an LRAClassifier on an LRA task or sequential images"
EVALUATE_HELP = "evaluate an LRA checkpoint"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``train lra``."""


def run_train(args: argparse.Namespace) -> int:
    raise NotImplementedError("train lra is not implemented yet")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``evaluate lra``."""


def run_evaluate(args: argparse.Namespace) -> int:
    raise NotImplementedError("evaluate lra is not implemented yet")
