"""BPSN vs SpikingJelly / snnTorch neurons over sequence lengths T: time and peak memory.

Same flags as ``bpsn-ext bench bpsn`` (see ``bpsn_ext/bench/bpsn.py``), e.g.::

    python benchmarks/bpsn.py                      # T 128 512 2048 8192 (a few minutes on CPU)
    python benchmarks/bpsn.py --quick --no-json    # T 128 512, 2 repeats
    python benchmarks/bpsn.py --T 512 2048 --neurons bpsn sj_lif --repeats 20
"""

from __future__ import annotations

import argparse

from bpsn_ext.bench.bpsn import add_arguments, run_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    run_from_args(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
