"""SNN-BERT: individual coding (BPSN) vs repeat coding (LIF, T=4): step time, memory, energy.

Same flags as ``bpsn_ext.bench.snn_bert.add_arguments`` (or ``bpsn-ext bench snn-bert``)::

    python benchmarks/snn_bert.py --threads 1              # 4 layers, width 256, L=128, batch 16
    python benchmarks/snn_bert.py --quick --no-json        # a smoke test
"""

from __future__ import annotations

import argparse

from bpsn_ext.bench.snn_bert import add_arguments, run_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    run_from_args(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
