"""`bpsn-ext demo`: the package's three ideas side by side on scikit-learn's 8x8 digits.

Each experiment of `bpsn_ext.apps.demo_tasks` trains its networks the same way (Adam,
cross-entropy, same seed and batch order) and reports test accuracy, training time, the peak
memory of one training step and the energy per test sample (45 nm fp32 model, against the ANN
of the same layers).  The report goes to ``OUT/summary.json`` and a figure to
``OUT/summary.png``; ``OUT`` is a new folder (``bpsn-demo``, else ``bpsn-demo-2``, ...).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bpsn_ext.apps import demo_tasks as tasks
from bpsn_ext.bench.measure import peak_memory_bytes
from bpsn_ext.util.cli_args import positive_int, seed_int
from bpsn_ext.util.tables import format_bytes, format_table

__all__ = ["DEMO_HELP", "PARTS", "add_demo_arguments", "demo_report", "run_demo"]

DEMO_HELP = (
    "single-step, BPSN and spiking-SSM networks against their baselines on the 8x8 digits "
    "(about a minute)"
)
PARTS = ("single_step", "bpsn", "ssm")
TITLES = {
    "single_step": "1. single-step (S3NN) neurons: one pass instead of T steps (64 inputs)",
    "bpsn": "2. BPSN, individual coding: 8 rows = 8 tokens, read at the first token ([CLS])",
    "ssm": "3. spiking SSMs: sequential digits, one pixel a step (L = 64)",
}
EPOCHS = {"single_step": 20, "bpsn": 30, "ssm": 20}
OURS = ("s3nn", "bpsn_first", "binary_s4d", "gsu")  # the rest are baselines
LR = {"single_step": 3e-3, "bpsn": 3e-3, "ssm": 1e-2}
VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "single_step": lambda x: x,  # [N, 64]
    "bpsn": lambda x: x.view(-1, 8, 8).transpose(0, 1).contiguous(),  # [8, N, 8]
    "ssm": lambda x: x.t().unsqueeze(-1).contiguous(),  # [64, N, 1]
}


def _train(
    model: nn.Module,
    reset,
    x: torch.Tensor,
    y: torch.Tensor,
    view,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    label: str,
    progress: bool,
):
    """Train in place; ``(seconds, one_more_step)``."""
    from tqdm.auto import tqdm

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)

    def step(idx: torch.Tensor) -> float:
        if reset is not None:
            reset(model)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(view(x[idx])), y[idx])
        loss.backward()
        opt.step()
        return loss.item()

    model.train()
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc=label, disable=not progress, leave=False)
    for _ in bar:
        losses = [step(idx) for idx in torch.randperm(len(x), generator=order).split(batch_size)]
        bar.set_postfix(loss=f"{sum(losses) / len(losses):.3f}")
    return time.perf_counter() - start, lambda: step(torch.arange(min(batch_size, len(x))))


def _evaluate(
    model: nn.Module, reset, x: torch.Tensor, y: torch.Tensor, part: str, steps: int
) -> tuple[float, dict]:
    """``(test accuracy, energy per sample)``."""
    from bpsn_ext.energy import demo_energy, estimate

    model.eval()
    with torch.no_grad():
        if reset is not None:
            reset(model)
        accuracy = (model(VIEWS[part](x)).argmax(-1) == y).float().mean().item()
        if part == "single_step":  # the model repeats the image itself: `steps` passes
            energy = dict(demo_energy(model, x, T=steps))
        else:
            energy = estimate(model, VIEWS[part](x), coding="individual").per_sample()
    model.train()
    keys = ("energy_pJ", "ann_energy_pJ", "ratio", "mean_output_rate")
    return accuracy, {k: energy.get(k) for k in keys}


def _models(part: str, neurons: tasks.Neurons, hidden: int, T: int) -> dict:
    if part == "single_step":
        return tasks.single_step_models(neurons, hidden, T)
    if part == "bpsn":
        return tasks.bpsn_models(neurons, hidden // 2)
    return tasks.ssm_models(hidden // 4, 16)


def _run_part(
    part: str,
    data,
    neurons: tasks.Neurons,
    *,
    epochs: int,
    hidden: int,
    T: int,
    batch_size: int,
    seed: int,
    progress: bool,
) -> dict:
    x_train, y_train, x_test, y_test = data
    reset = None if part == "ssm" else neurons.reset
    rows = {}
    for key, (label, steps, build) in _models(part, neurons, hidden, T).items():
        torch.manual_seed(seed)
        model = build()
        seconds, one_step = _train(
            model,
            reset,
            x_train,
            y_train,
            VIEWS[part],
            epochs=epochs,
            lr=LR[part],
            batch_size=batch_size,
            seed=seed,
            label=label,
            progress=progress,
        )
        accuracy, energy = _evaluate(model, reset, x_test, y_test, part, steps)
        rows[key] = {
            "label": label,
            "ours": key in OURS,
            "steps": steps,
            "test_accuracy": accuracy,
            "train_time_s": seconds,
            "peak_memory_bytes": peak_memory_bytes(one_step),
            "parameters": sum(p.numel() for p in model.parameters()),
            "energy": energy,
        }
    return {"title": TITLES[part], "epochs": epochs, "lr": LR[part], "rows": rows}


def demo_report(
    epochs: int | None = None,
    seed: int = 0,
    hidden: int = 128,
    T: int = 4,
    batch_size: int = 64,
    framework: str = "auto",
    parts=PARTS,
    out: str | None = "bpsn-demo",
    progress: bool = True,
    verbose: bool = True,
) -> dict:
    """Run the experiments ``parts``; print, save (``out``, None: nothing written) and return
    ``{"config": {...}, "parts": {part: {"title", "epochs", "lr", "rows": {key: row}}}}``;
    a row has ``label``, ``steps``, ``test_accuracy`` (0..1), ``train_time_s``,
    ``peak_memory_bytes``, ``parameters`` and ``energy`` (per test sample: ``energy_pJ``,
    ``ann_energy_pJ``, ``ratio`` ANN/SNN, ``mean_output_rate``).  ``epochs`` None: each
    part's default (`EPOCHS`)."""
    from bpsn_ext.data import load_digits

    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"parts must come from {PARTS}, got {unknown}")
    logging.getLogger("torch._library.triton").setLevel(logging.ERROR)  # SpikingJelly's import
    neurons = tasks.neurons_for(framework)
    data = load_digits(seed=seed)
    start = time.perf_counter()
    report = {"config": _config(neurons.framework, seed, hidden, T, batch_size, data), "parts": {}}
    for part in parts:
        report["parts"][part] = _run_part(
            part,
            data,
            neurons,
            epochs=epochs or EPOCHS[part],
            hidden=hidden,
            T=T,
            batch_size=batch_size,
            seed=seed,
            progress=progress,
        )
        if verbose:
            print(format_part(report["parts"][part]) + "\n", flush=True)
    report["config"]["total_time_s"] = time.perf_counter() - start
    if out is not None:
        _save(report, out, verbose)
    return report


def _config(framework: str, seed: int, hidden: int, T: int, batch_size: int, data) -> dict:
    """The report's ``config``: the settings and the sizes of the digits split."""
    return {
        "framework": framework,
        "seed": seed,
        "hidden": hidden,
        "T": T,
        "batch_size": batch_size,
        "optimizer": "Adam",
        "train_size": len(data[0]),
        "test_size": len(data[2]),
    }


def _save(report: dict, out: str, verbose: bool) -> None:
    """`save_report` into a new folder next to ``out``, noted in the report's config."""
    folder = save_report(report, out)
    report["config"]["out"] = folder
    if verbose:
        print(
            f"report and figure: {folder}/summary.json, {folder}/summary.png "
            f"({report['config']['total_time_s']:.0f} s in all)"
        )


def format_part(part: dict) -> str:
    """One experiment as a title line and a table."""
    headers = [
        "network",
        "steps",
        "test acc %",
        "train s",
        "peak mem/step",
        "energy/sample",
        "ANN/SNN",
    ]
    rows = [
        [
            r["label"],
            r["steps"],
            100.0 * r["test_accuracy"],
            r["train_time_s"],
            format_bytes(r["peak_memory_bytes"]),
            _nj(r["energy"]["energy_pJ"]),
            "n/a" if r["energy"]["ratio"] is None else f"{r['energy']['ratio']:.2f}x",
        ]
        for r in part["rows"].values()
    ]
    return f"{part['title']}; {part['epochs']} epochs\n{format_table(headers, rows)}"


def _nj(pj: float | None) -> str:
    return "n/a" if pj is None else f"{pj / 1000:.1f} nJ"


def _free_folder(base: str) -> str:
    """``base`` if absent or empty, else the first ``base-2``, ``base-3``, ... that is."""
    k, folder = 1, base
    while os.path.exists(folder) and (not os.path.isdir(folder) or os.listdir(folder)):
        k += 1
        folder = f"{base}-{k}"
    return folder


def save_report(report: dict, base: str) -> str:
    """Write ``summary.json`` and ``summary.png`` (when matplotlib is installed) into a new
    folder next to ``base`` (never over an earlier run); returns the folder."""
    from bpsn_ext.util.files import atomic_open

    folder = _free_folder(base)
    os.makedirs(folder, exist_ok=True)
    with atomic_open(os.path.join(folder, "summary.json")) as f:
        json.dump(report, f, indent=2)
    from bpsn_ext.plots import plot_demo_summary

    try:
        plot_demo_summary(report, os.path.join(folder, "summary.png"))
    except ImportError as exc:  # matplotlib missing
        print(f"no figure ({exc})")
    return folder


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``demo``."""
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="training epochs of every part (default: 20, 30 and 20)",
    )
    parser.add_argument("--seed", type=seed_int, default=0, help="split, weight and order seed (0)")
    parser.add_argument(
        "--hidden",
        type=positive_int,
        default=128,
        help="hidden width (128; BPSN part /2, SSM part /4)",
    )
    parser.add_argument(
        "--framework",
        choices=("auto", "spikingjelly", "snntorch"),
        default="auto",
        help="whose neurons (auto: SpikingJelly, else snnTorch)",
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="which experiments (all)",
    )
    parser.add_argument(
        "--out", default="bpsn-demo", help="report folder (bpsn-demo; taken: bpsn-demo-2, ...)"
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars"
    )


def run_demo(args: argparse.Namespace) -> int:
    """``demo``: `demo_report` with the flags; a missing optional package is one line."""
    try:
        demo_report(
            epochs=args.epochs,
            seed=args.seed,
            hidden=args.hidden,
            framework=args.framework,
            parts=args.parts,
            out=args.out,
            progress=args.progress,
        )
    except ImportError as exc:  # a missing optional package: its one line, no traceback
        raise SystemExit(f"bpsn-ext demo: {exc}") from None
    return 0
