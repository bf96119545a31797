"""``bpsn-ext bench snn-bert`` (stub: filled in by issue 6)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the SNN-BERT benchmark."""


def run_from_args(args: argparse.Namespace) -> dict:
    raise NotImplementedError("bench snn-bert is not implemented yet")
