"""Run one benchmark from a checkout: `python benchmarks/run.py NAME [flags]`.

The benchmarks themselves live in the package (`bpsn_ext/bench/`, one module per benchmark,
so that an installed wheel has them too); this script is `bpsn-ext bench NAME [flags]` under
another name. NAME is one of `bpsn`, `single-step`, `ssm`, `snn-bert`; each prints a table
and writes a JSON report (see `--help` of each), e.g.:

    python benchmarks/run.py bpsn --quick --no-json
    python benchmarks/run.py ssm --threads 1 --seq-max-len 4096
    python benchmarks/run.py single-step --help

`benchmarks/bpsn_defaults.py` is the one experiment kept here (it trains models to choose
BPSN's defaults); `benchmarks/RESULTS.md` and `benchmarks/results/` hold measured numbers.
"""

from __future__ import annotations

import sys

from bpsn_ext.cli import main


def run(argv: list[str] | None = None) -> int:
    """`bpsn-ext bench` with `argv` (default: this script's arguments)."""
    return main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(run())
