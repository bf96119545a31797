"""Command line (`bpsn-ext` or `python -m bpsn_ext`): `demo`, `bench {single-step,bpsn,ssm,
snn-bert}`, `train {lra,glue}`, `evaluate {lra,glue}`, `pretrain` (masked LM) and
`generate {listops,pathfinder,wordnet-glosses}`, and `plot` (figures from result JSON).
Each subcommand has its own flags, given after its name.

Every subcommand is registered one way: a module offers `add_<verb>_arguments(parser)` (the
benchmarks in `bpsn_ext.bench`: `add_arguments`) and `run_<verb>(args)` (`run_from_args`),
and this file only wires the names (`COMMANDS`, `APPS`, `BENCHMARKS`, `PLOTS`). The argument
types the commands share live in `bpsn_ext.util.cli_args`.

Heavy modules (SpikingJelly, snnTorch, scikit-learn) are imported only by the handlers.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

__all__ = ["build_parser", "main", "console_main"]

# benchmark -> (module of bpsn_ext.bench, help)
BENCHMARKS = {
    "single-step": ("single_step_bench", "training step: single-step S3NN MLP vs T=4 LIF MLPs"),
    "bpsn": ("bpsn_bench", "BPSN vs SpikingJelly/snnTorch neurons over sequence lengths T"),
    "ssm": ("ssm_bench", "S4D / Binary S4D / GSU / spiking S5: parallel vs sequential over L"),
    "gpu": ("gpu_bench", "GPU: BPSN Triton/CuPy/torch vs SpikingJelly LIFNode, SSM scan vs FFT"),
    "snn-bert": (
        "snn_bert_bench",
        "SNN-BERT: individual coding vs repeat coding (time, memory, energy)",
    ),
}
# what `--plot PATH` of a benchmark and `plot KIND SOURCE` draw (`bpsn_ext.plots`)
PLOTS = {
    "bpsn": "plot_bpsn_bench",
    "ssm": "plot_ssm_bench",
    "energy": "plot_energy_bars",
}
# command -> module of bpsn_ext.apps with `<COMMAND>_HELP`, `add_<command>_arguments(parser)`
# and `run_<command>(args)`
COMMANDS = {"demo": "demo", "pretrain": "pretrain"}
# (subcommand, choice) -> module of bpsn_ext.apps that implements it
APPS = {
    "train": {"lra": "lra_commands", "glue": "glue_commands"},
    "evaluate": {"lra": "lra_commands", "glue": "glue_commands"},
    "generate": {"listops": "generate", "pathfinder": "generate", "wordnet-glosses": "generate"},
}


def _returns_zero(run, plot: str | None = None):
    def handler(args: argparse.Namespace) -> int:
        path = getattr(args, "plot", None)
        # the figure and a result file the user named are kept unless --overwrite
        _refuse_existing(f"bench {args.benchmark}", args, path, getattr(args, "json_path", None))
        report = run(args)
        if path:
            print(f"figure: {_draw(plot, report, path)}")
        return 0

    return handler


def _refuse_existing(command: str, args: argparse.Namespace, *paths: str | None) -> None:
    """Refuse (naming ``--overwrite``) any of ``paths`` that exists, unless ``--overwrite``."""
    from bpsn_ext.util.cli_args import flag_errors
    from bpsn_ext.util.files import refuse_existing

    with flag_errors(command):
        for path in paths:
            refuse_existing(path, overwrite=getattr(args, "overwrite", False))


def _draw(kind: str, source, path: str) -> str:
    """Draw figure ``kind`` of `PLOTS` from ``source`` (a dict or a JSON path) into ``path``
    (written atomically by `bpsn_ext.plots`)."""
    from bpsn_ext import plots

    return getattr(plots, PLOTS[kind])(source, path)


def _plot(args: argparse.Namespace) -> int:
    _refuse_existing("plot", args, args.out)
    print(f"figure: {_draw(args.kind, args.source, args.out)}")
    return 0


def _add_plot(sub) -> None:
    """`plot KIND SOURCE --out PATH`: a figure from a benchmark or energy-report JSON."""
    parser = sub.add_parser(
        "plot",
        help="draw a figure from a benchmark JSON (bench bpsn / "
        "bench ssm) or an energy report JSON (EnergyReport.to_json)",
    )
    parser.add_argument("kind", choices=sorted(PLOTS), help="which figure")
    parser.add_argument("source", help="the JSON file")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(handler=_plot)


def _add_benchmarks(sub) -> None:
    """`bench <name>` with one sub-parser per benchmark (see `BENCHMARKS`)."""
    bench = sub.add_parser("bench", help="run a benchmark")
    which = bench.add_subparsers(
        dest="benchmark",
        required=True,
        metavar="{" + ",".join(BENCHMARKS) + "}",
        help="which benchmark",
    )
    for name, (module_name, help_text) in BENCHMARKS.items():
        module = importlib.import_module(f"bpsn_ext.bench.{module_name}")
        child = which.add_parser(name, help=help_text)
        module.add_arguments(child)
        if name in PLOTS:
            child.add_argument(
                "--plot",
                metavar="PATH",
                help="also draw time and memory against length into this PNG (needs matplotlib)",
            )
        child.set_defaults(handler=_returns_zero(module.run_from_args, name))


def _app_module(name: str):
    return importlib.import_module(f"bpsn_ext.apps.{name}")


def _add_commands(sub, *names: str) -> None:
    """The one-level commands ``names`` of `COMMANDS` (`demo`, `pretrain`)."""
    for name in names:
        module = _app_module(COMMANDS[name])
        child = sub.add_parser(name, help=getattr(module, f"{name.upper()}_HELP"))
        getattr(module, f"add_{name}_arguments")(child)
        child.set_defaults(handler=getattr(module, f"run_{name}"))


def _add_apps(sub) -> None:
    """`train`/`evaluate`/`generate` with one sub-parser per task (see `APPS`)."""
    helps = {
        "train": "train an example model (LRA / sequential images, or SNN-BERT on GLUE)",
        "evaluate": "evaluate a checkpoint written by `train`",
        "generate": "write a generated data set (ListOps TSV, Pathfinder images, WordNet glosses)",
    }
    for verb, choices in APPS.items():
        parser = sub.add_parser(verb, help=helps[verb])
        which = parser.add_subparsers(
            dest="task_kind", required=True, metavar="{" + ",".join(choices) + "}"
        )
        for choice, module_name in choices.items():
            module = _app_module(module_name)
            child = which.add_parser(
                choice,
                help=getattr(module, f"{verb.upper()}_HELP", None)
                if verb != "generate"
                else module.GENERATE_HELP[choice],
            )
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
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, print the traceback too (accepted anywhere on the line)",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{demo,bench,train,evaluate,pretrain,generate,plot}"
    )

    _add_commands(sub, "demo")
    _add_benchmarks(sub)
    _add_apps(sub)
    _add_commands(sub, "pretrain")
    _add_plot(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default `sys.argv[1:]`), run the subcommand, return the exit code.
    Errors propagate (from Python); `console_main` is the command line's entry point."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


def console_main(argv: Sequence[str] | None = None) -> int:
    """The ``bpsn-ext`` program: `main`, with errors printed as one message (exit code 1) and
    no traceback unless ``--debug`` is given (anywhere on the line); a closed standard output
    (``bpsn-ext train ... | head -1``) does not stop the run."""
    import sys

    from bpsn_ext.util.console import keep_running_without_stdout, report_errors

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    keep_running_without_stdout()
    with report_errors("bpsn-ext", debug=debug) as outcome:
        outcome.code = main(argv)
    return outcome.code


if __name__ == "__main__":
    raise SystemExit(console_main())
