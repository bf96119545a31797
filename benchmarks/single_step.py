"""Training-step time and memory: single-step S3NN MLP vs T=4 LIF MLPs.

Same flags as ``bpsn-ext bench single-step``, e.g.::

    python benchmarks/single_step.py --width 1024 --depth 3 --batch 256 --repeats 10
"""

from __future__ import annotations

import argparse

from bpsn_ext.cli import add_single_step_arguments, run_single_step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_single_step_arguments(parser)
    run_single_step(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
