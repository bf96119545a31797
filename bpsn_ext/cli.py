"""Command line (``bpsn-ext`` or ``python -m bpsn_ext``): ``demo``, ``bench {single-step,bpsn,ssm,
snn-bert}``, ``train {lra,glue}``, ``evaluate {lra,glue}``, ``pretrain`` (masked LM) and
``generate {listops,pathfinder,wordnet-glosses}``.
Each subcommand has its own flags, given after its name.

The ``train``/``evaluate``/``generate`` subcommands live in :mod:`bpsn_ext.apps` (``lra``,
``glue``, ``generate``); each module offers ``add_<verb>_arguments(parser)`` and
``run_<verb>(args) -> int``.

Heavy modules (SpikingJelly, snnTorch, scikit-learn) are imported only by the handlers.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bpsn_ext.bench.bpsn import NEURON_KEYS as BPSN_NEURONS  # (re-exported for the flags)

__all__ = [
    "main",
    "int_at_least",
    "positive_int",
    "build_parser",
    "add_single_step_arguments",
    "run_single_step",
    "add_bpsn_arguments",
    "run_bpsn",
]

BENCHMARKS = ("single-step", "bpsn", "ssm", "snn-bert")
# (subcommand, choice) -> module of bpsn_ext.apps that implements it
APPS = {
    "train": {"lra": "lra", "glue": "glue"},
    "evaluate": {"lra": "lra", "glue": "glue"},
    "generate": {"listops": "generate", "pathfinder": "generate",
                 "wordnet-glosses": "generate"},
}


def int_at_least(low: int):
    """An argparse ``type``: an int >= ``low`` (shared by every subcommand's flags)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text}")
        return value

    parse.__name__ = "int"  # argparse names the type in its 'invalid int value' message
    return parse


positive_int = int_at_least(1)


def add_single_step_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the single-step benchmark (unset flags keep ``run``'s defaults)."""
    from bpsn_ext.bench.measure import add_json_arguments  # (imports torch)

    S = argparse.SUPPRESS
    parser.add_argument("--width", type=positive_int, default=S, help="hidden width (1024)")
    parser.add_argument("--depth", type=positive_int, default=S, help="hidden layers (3)")
    parser.add_argument("--batch", type=positive_int, default=S, help="batch size (256)")
    parser.add_argument("--T", type=positive_int, default=S, help="steps of the LIF nets (4)")
    parser.add_argument("--repeats", type=positive_int, default=S, help="timed steps (10)")
    parser.add_argument("--warmup", type=int_at_least(0), default=S, help="untimed steps (2)")
    parser.add_argument("--device", default=S, help="torch device, e.g. cpu or cuda (cpu)")
    parser.add_argument("--seed", type=int, default=S, help="data and weight seed (0)")
    add_json_arguments(parser, "benchmarks/results/single_step.json")


def run_single_step(args: argparse.Namespace) -> dict:
    """Run the single-step benchmark with the flags in ``args``."""
    from bpsn_ext.bench.single_step import run

    names = ("width", "depth", "batch", "T", "repeats", "warmup", "device", "seed", "json_path")
    return run(**{n: getattr(args, n) for n in names if hasattr(args, n)})


def add_bpsn_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the BPSN sequence-length benchmark (unset flags keep ``run``'s defaults)."""
    from bpsn_ext.bench.measure import add_json_arguments  # (imports torch)

    S = argparse.SUPPRESS
    parser.add_argument("--T", nargs="+", type=positive_int, default=S, metavar="T",
                        help="sequence lengths (128 512 2048 8192; --quick: 128 512)")
    parser.add_argument("--batch", type=positive_int, default=S, help="batch size (8)")
    parser.add_argument("--features", type=positive_int, default=S,
                        help="features = channels (256)")
    parser.add_argument("--spatial", type=int_at_least(0), default=S, metavar="S",
                        help="conv-shaped input [T, batch, features, S, S] (0: [T, batch, "
                             "features])")
    parser.add_argument("--repeats", type=positive_int, default=S,
                        help="timed rounds up to T=256, fewer for larger T (10; --quick: 2)")
    parser.add_argument("--warmup", type=int_at_least(0), default=S,
                        help="untimed rounds up to T=256 (1; --quick: 0)")
    parser.add_argument("--quick", action="store_true", default=S,
                        help="a quick run: T 128 512, 2 repeats, matmul row up to T=128 (tests)")
    parser.add_argument("--neurons", nargs="+", choices=BPSN_NEURONS, default=S,
                        metavar="NEURON", help=f"subset of {', '.join(BPSN_NEURONS)} (all)")
    parser.add_argument("--matmul-max-T", dest="matmul_max_T", type=positive_int, default=S,
                        help="largest T of the BPSN method=matmul row (512; --quick: 128)")
    parser.add_argument("--threads", type=positive_int, default=S,
                        help="torch.set_num_threads for the run (default: unchanged)")
    parser.add_argument("--device", default=S, help="torch device, e.g. cpu or cuda (cpu)")
    parser.add_argument("--seed", type=int, default=S, help="input and weight seed (0)")
    add_json_arguments(parser, "benchmarks/results/bpsn.json")


def run_bpsn(args: argparse.Namespace) -> dict:
    """Run the BPSN sequence-length benchmark with the flags in ``args``."""
    from bpsn_ext.bench.bpsn import run

    names = ("T", "batch", "features", "spatial", "repeats", "warmup", "quick", "neurons",
             "matmul_max_T", "threads", "device", "seed", "json_path")
    return run(**{n: getattr(args, n) for n in names if hasattr(args, n)})


def _demo(args: argparse.Namespace) -> int:
    from bpsn_ext.apps.demo import run_demo

    run_demo(epochs=args.epochs, seed=args.seed, hidden=args.hidden, framework=args.framework,
             parts=args.parts, out=args.out, progress=args.progress)
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.benchmark == "single-step":
        run_single_step(args)
    elif args.benchmark == "bpsn":
        run_bpsn(args)
    elif args.benchmark == "ssm":
        from bpsn_ext.bench.ssm import run_from_args

        run_from_args(args)
    elif args.benchmark == "snn-bert":
        from bpsn_ext.bench.snn_bert import run_from_args

        run_from_args(args)
    return 0


def _app_module(name: str):
    import importlib

    return importlib.import_module(f"bpsn_ext.apps.{name}")


def _add_apps(sub) -> None:
    """``train``/``evaluate``/``generate`` with one sub-parser per task (see ``APPS``)."""
    helps = {
        "train": "train an example model (LRA / sequential images, or SNN-BERT on GLUE)",
        "evaluate": "evaluate a checkpoint written by `train`",
        "generate": "write a generated data set (ListOps TSV, Pathfinder images, WordNet "
                    "glosses)",
    }
    for verb, choices in APPS.items():
        parser = sub.add_parser(verb, help=helps[verb])
        which = parser.add_subparsers(dest="task_kind", required=True,
                                      metavar="{" + ",".join(choices) + "}")
        for choice, module_name in choices.items():
            module = _app_module(module_name)
            child = which.add_parser(choice, help=getattr(module, f"{verb.upper()}_HELP", None)
                                     if verb != "generate" else module.GENERATE_HELP[choice])
            if verb == "generate":
                module.add_generate_arguments(child, choice)
            else:
                getattr(module, f"add_{verb}_arguments")(child)
            child.set_defaults(handler=getattr(module, f"run_{verb}"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bpsn-ext",
        description="Single-step, parallel and state-space spiking neurons: demo, benchmarks, "
        "training and evaluation of the example models, data generators.",
    )
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{demo,bench,train,evaluate,pretrain,generate}")

    demo = sub.add_parser("demo", help="single-step, BPSN and spiking-SSM networks against "
                          "their baselines on the 8x8 digits (about a minute)")
    demo.add_argument("--epochs", type=positive_int, default=None,
                      help="training epochs of every part (default: 20, 30 and 20)")
    demo.add_argument("--seed", type=int, default=0, help="split, weight and order seed (0)")
    demo.add_argument("--hidden", type=positive_int, default=128,
                      help="hidden width (128; BPSN part /2, SSM part /4)")
    demo.add_argument("--framework", choices=("auto", "spikingjelly", "snntorch"),
                      default="auto", help="whose neurons (auto: SpikingJelly, else snnTorch)")
    demo.add_argument("--parts", nargs="+", choices=("single_step", "bpsn", "ssm"),
                      default=["single_step", "bpsn", "ssm"], help="which experiments (all)")
    demo.add_argument("--out", default="bpsn-demo",
                      help="report folder (bpsn-demo; taken: bpsn-demo-2, ...)")
    demo.add_argument("--no-progress", dest="progress", action="store_false")
    demo.set_defaults(handler=_demo)

    bench = sub.add_parser("bench", help="run a benchmark")
    which = bench.add_subparsers(dest="benchmark", required=True,
                                 metavar="{" + ",".join(BENCHMARKS) + "}", help="which benchmark")
    add_single_step_arguments(which.add_parser(
        "single-step", help="training step: single-step S3NN MLP vs T=4 LIF MLPs"))
    add_bpsn_arguments(which.add_parser(
        "bpsn", help="BPSN vs SpikingJelly/snnTorch neurons over sequence lengths T"))
    from bpsn_ext.bench.ssm import add_arguments as add_ssm_arguments  # (imports torch)

    add_ssm_arguments(which.add_parser(
        "ssm", help="S4D / Binary S4D / GSU / spiking S5: parallel vs sequential over L"))
    from bpsn_ext.bench.snn_bert import add_arguments as add_snn_bert_arguments

    add_snn_bert_arguments(which.add_parser(
        "snn-bert", help="SNN-BERT: individual coding vs repeat coding (time, memory, energy)"))
    bench.set_defaults(handler=_bench)
    _add_apps(sub)
    pretrain = _app_module("pretrain")
    child = sub.add_parser("pretrain", help=pretrain.PRETRAIN_HELP)
    pretrain.add_pretrain_arguments(child)
    child.set_defaults(handler=pretrain.run_pretrain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return the exit code."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
