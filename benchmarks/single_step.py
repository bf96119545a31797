"""Training-step time and memory: single-step S3NN MLP vs T=4 LIF MLPs.

Same flags as ``bpsn-ext bench single-step``, e.g.::

    python benchmarks/single_step.py --width 1024 --depth 3 --batch 256 --repeats 10
"""

from __future__ import annotations

import argparse

from bpsn_ext.bench.single_step import add_arguments, run_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    run_from_args(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
