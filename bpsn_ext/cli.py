"""Command line: ``bpsn-ext demo`` and ``bpsn-ext bench single-step`` (or ``python -m bpsn_ext``).

Heavy modules (SpikingJelly, snnTorch, scikit-learn) are imported only by the handlers.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["main", "build_parser", "add_single_step_arguments", "run_single_step"]

BENCHMARKS = ("single-step",)


def _int_at_least(low: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text}")
        return value

    parse.__name__ = "int"  # argparse names the type in its 'invalid int value' message
    return parse


_positive_int = _int_at_least(1)


def add_single_step_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the single-step benchmark (unset flags keep ``run``'s defaults)."""
    S = argparse.SUPPRESS
    parser.add_argument("--width", type=_positive_int, default=S, help="hidden width (1024)")
    parser.add_argument("--depth", type=_positive_int, default=S, help="hidden layers (3)")
    parser.add_argument("--batch", type=_positive_int, default=S, help="batch size (256)")
    parser.add_argument("--T", type=_positive_int, default=S, help="steps of the LIF nets (4)")
    parser.add_argument("--repeats", type=_positive_int, default=S, help="timed steps (10)")
    parser.add_argument("--warmup", type=_int_at_least(0), default=S, help="untimed steps (2)")
    parser.add_argument("--device", default=S, help="torch device, e.g. cpu or cuda (cpu)")
    parser.add_argument("--seed", type=int, default=S, help="data and weight seed (0)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument(
        "--json", dest="json_path", default=S,
        help="result file (benchmarks/results/single_step.json)",
    )
    out.add_argument("--no-json", dest="json_path", action="store_const", const=None,
                     help="do not write a result file")


def run_single_step(args: argparse.Namespace) -> dict:
    """Run the single-step benchmark with the flags in ``args``."""
    from bpsn_ext.bench.single_step import run

    names = ("width", "depth", "batch", "T", "repeats", "warmup", "device", "seed", "json_path")
    return run(**{n: getattr(args, n) for n in names if hasattr(args, n)})


def _demo(args: argparse.Namespace) -> int:
    from bpsn_ext.apps.demo import run_demo

    run_demo(epochs=args.epochs, seed=args.seed, hidden=args.hidden, device=args.device)
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.benchmark == "single-step":
        run_single_step(args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bpsn-ext", description="Single-step and parallel spiking neurons: demo, benchmarks."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,bench}")

    demo = sub.add_parser("demo", help="train S3NN vs a T=4 LIF network on the 8x8 digits")
    demo.add_argument("--epochs", type=_positive_int, default=20, help="training epochs (20)")
    demo.add_argument("--seed", type=int, default=0, help="split, weight and order seed (0)")
    demo.add_argument("--hidden", type=_positive_int, default=128, help="hidden width (128)")
    demo.add_argument("--device", default="cpu", help="torch device (cpu)")
    demo.set_defaults(handler=_demo)

    bench = sub.add_parser("bench", help="run a benchmark")
    bench.add_argument("benchmark", choices=BENCHMARKS, help="which benchmark")
    add_single_step_arguments(bench)
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return the exit code."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
