"""Forward+backward time of the SSM layers (S4D, BinaryS4D, GSU, SpikingS5) over L.

Same flags as ``bpsn_ext.bench.ssm.add_arguments``, e.g.::

    python benchmarks/ssm.py                                  # L = 1024 4096 16384, batch 8
    python benchmarks/ssm.py --lengths 1024 4096 --repeats 3
    python benchmarks/ssm.py --quick --no-json                # a smoke test
"""

from __future__ import annotations

import argparse

from bpsn_ext.bench.ssm import add_arguments, run_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    run_from_args(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
