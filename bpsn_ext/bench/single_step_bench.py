"""Training-step cost of a single-step (S3NN) MLP against T-step LIF MLPs.

Three MLPs with the same layers (``in -> width`` x ``depth`` hidden layers ``-> out``):

* ``s3nn``: Linear -> ``bpsn_ext`` ``SingleStepNode`` (SpikingJelly, step mode 's'), one pass;
* ``sj_lif``: SpikingJelly ``layer.Linear(step_mode='m')`` -> ``neuron.LIFNode(tau=2.0,
  step_mode='m')`` on the input repeated T times (``[T, N, D]``), logits averaged over T,
  ``functional.reset_net`` before each step;
* ``snntorch_leaky``: ``nn.Linear`` -> ``snn.Leaky(beta=0.5)`` in the snnTorch tutorial
  loop over T (explicit ``mem`` from ``init_leaky()``), logits averaged over T.

Each is timed on one training step (forward, cross-entropy, backward, Adam step) on
synthetic data with a fixed seed; the peak memory of one step is measured as well.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bpsn_ext.bench.measure import (
    DefaultJson,
    add_json_arguments,
    check_positive_ints,
    environment,
    format_bytes,
    format_table,
    peak_memory_bytes,
    publish_report,
    time_fns,
)
from bpsn_ext.util.cli_args import int_at_least, positive_int

__all__ = [
    "run",
    "add_arguments",
    "run_from_args",
    "build_s3nn",
    "build_sj_lif",
    "SnnTorchLeakyMLP",
    "DEFAULT_JSON",
]

DEFAULT_JSON = DefaultJson(os.path.join("benchmarks", "results", "single_step.json"))
IN_FEATURES = 784
NUM_CLASSES = 10


def _hidden_sizes(in_features: int, width: int, depth: int) -> list[tuple[int, int]]:
    return [(in_features if i == 0 else width, width) for i in range(depth)]


def build_s3nn(in_features: int, width: int, depth: int, out_features: int) -> nn.Module:
    """``[N, in] -> [N, out]`` logits: (Linear -> SingleStepNode) x depth -> Linear."""
    from bpsn_ext.spikingjelly import SingleStepNode

    layers: list[nn.Module] = []
    for n_in, n_out in _hidden_sizes(in_features, width, depth):
        layers += [nn.Linear(n_in, n_out), SingleStepNode(step_mode="s")]
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class RepeatOverTime(nn.Module):
    """Direct input coding: ``x [N, *] -> net(x repeated [T, N, *]) -> mean over T``."""

    def __init__(self, net: nn.Module, T: int) -> None:
        super().__init__()
        self.net = net
        self.T = T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_seq = x.unsqueeze(0).expand(self.T, *x.shape)  # [T, N, *]
        return self.net(x_seq).mean(0)


def build_sj_lif(in_features: int, width: int, depth: int, out_features: int, T: int) -> nn.Module:
    """``[N, in] -> [N, out]``: multi-step SpikingJelly LIF MLP over T repeated steps.

    Call ``functional.reset_net`` on it before every sample batch.
    """
    from spikingjelly.activation_based import layer, neuron

    layers: list[nn.Module] = []
    for n_in, n_out in _hidden_sizes(in_features, width, depth):
        layers += [layer.Linear(n_in, n_out, step_mode="m"), neuron.LIFNode(tau=2.0, step_mode="m")]
    layers.append(layer.Linear(width, out_features, step_mode="m"))
    return RepeatOverTime(nn.Sequential(*layers), T)


class SnnTorchLeakyMLP(nn.Module):
    """``[N, in] -> [N, out]``: snnTorch ``Leaky`` MLP unrolled over T steps, tutorial style."""

    def __init__(
        self,
        in_features: int,
        width: int,
        depth: int,
        out_features: int,
        T: int,
        beta: float = 0.5,
    ) -> None:
        import snntorch as snn

        super().__init__()
        sizes = _hidden_sizes(in_features, width, depth)
        self.fcs = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in sizes)
        self.lifs = nn.ModuleList(snn.Leaky(beta=beta) for _ in sizes)
        self.readout = nn.Linear(width, out_features)
        self.T = T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mems = [lif.init_leaky() for lif in self.lifs]
        logits = []
        for _ in range(self.T):
            h = x
            for i, (fc, lif) in enumerate(zip(self.fcs, self.lifs)):
                h, mems[i] = lif(fc(h), mems[i])
            logits.append(self.readout(h))
        return torch.stack(logits).mean(0)  # [T, N, out] -> [N, out]


@dataclass
class _Variant:
    key: str
    label: str
    T: int
    model: nn.Module
    reset: Callable[[nn.Module], None] | None = None


def _variants(width: int, depth: int, T: int) -> list[_Variant]:
    from spikingjelly.activation_based import functional

    dims = (IN_FEATURES, width, depth, NUM_CLASSES)
    return [
        _Variant("s3nn", "S3NN SingleStepNode (SJ)", 1, build_s3nn(*dims)),
        _Variant("sj_lif", "SpikingJelly LIFNode", T, build_sj_lif(*dims, T), functional.reset_net),
        _Variant("snntorch_leaky", "snnTorch Leaky", T, SnnTorchLeakyMLP(*dims, T)),
    ]


def _train_step(v: _Variant, x: torch.Tensor, y: torch.Tensor, lr: float) -> Callable[[], None]:
    opt = torch.optim.Adam(v.model.parameters(), lr=lr)

    def step() -> None:
        if v.reset is not None:
            v.reset(v.model)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(v.model(x), y).backward()
        opt.step()

    return step


def run(
    width: int = 1024,
    depth: int = 3,
    batch: int = 256,
    T: int = 4,
    repeats: int = 10,
    warmup: int = 2,
    device: str = "cpu",
    json_path: str | os.PathLike | None = DEFAULT_JSON,
    seed: int = 0,
    lr: float = 1e-3,
    verbose: bool = True,
) -> dict:
    """Benchmark one training step of the three MLPs; print a table, write JSON.

    Input is synthetic ``x [batch, 784]`` in [0, 1) with random labels (fixed ``seed``).
    Returns the JSON-able dict ``{"benchmark", "config", "environment", "results", "speedup",
    "speedup_min", "memory_ratio"}``; ``results[key]`` has the timing statistics (ms),
    ``peak_memory_bytes`` and ``parameters``; ``speedup[key]`` is ``median_ms(key) /
    median_ms(s3nn)`` (``speedup_min`` the same with ``min_ms``).
    ``json_path=None`` skips the file.
    """
    check_positive_ints([("width", width), ("depth", depth), ("batch", batch), ("T", T)])
    dev = torch.device(device)
    config = {
        "width": width,
        "depth": depth,
        "batch": batch,
        "T": T,
        "in_features": IN_FEATURES,
        "out_features": NUM_CLASSES,
        "repeats": repeats,
        "warmup": warmup,
        "device": str(dev),
        "seed": seed,
        "lr": lr,
        "optimizer": "Adam",
    }
    results = _measure(config, dev)
    report = {
        "benchmark": "single_step",
        "config": config,
        "environment": environment(dev),
        "results": results,
        **_ratios_to_s3nn(results),
    }
    return publish_report(report, json_path, verbose, format_report)


def _measure(config: dict, dev: torch.device) -> dict:
    """``results[key]`` of `run`: the step timings, peak memory and parameter count of each
    MLP, timed in interleaved rounds (a busy spell of a shared machine slows them alike)."""
    x, y = _data(config["batch"], config["seed"], dev)
    torch.manual_seed(config["seed"])
    variants = _variants(config["width"], config["depth"], config["T"])
    steps = {}
    for v in variants:
        v.model.to(dev)
        steps[v.key] = _train_step(v, x, y, config["lr"])
    repeats, warmup = config["repeats"], max(config["warmup"], 1)
    timings = time_fns(steps, repeats=repeats, warmup=warmup, device=dev)
    return {
        v.key: {
            "label": v.label,
            "T": v.T,
            **timings[v.key],
            "peak_memory_bytes": peak_memory_bytes(steps[v.key], device=dev),
            "parameters": sum(p.numel() for p in v.model.parameters()),
        }
        for v in variants
    }


def _data(batch: int, seed: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic ``x [batch, 784]`` in [0, 1) and random labels ``y [batch]`` (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, IN_FEATURES, generator=gen).to(dev)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=gen).to(dev)
    return x, y


def _ratios_to_s3nn(results: dict[str, dict]) -> dict[str, dict[str, float]]:
    """``speedup`` (median times), ``speedup_min`` and ``memory_ratio`` of the T-step nets
    over S3NN (> 1: S3NN is faster / smaller)."""
    base = results["s3nn"]
    others = [k for k in results if k != "s3nn"]
    return {
        "speedup": {k: results[k]["median_ms"] / base["median_ms"] for k in others},
        "speedup_min": {k: results[k]["min_ms"] / base["min_ms"] for k in others},
        "memory_ratio": {
            k: results[k]["peak_memory_bytes"] / max(base["peak_memory_bytes"], 1) for k in others
        },
    }


def format_report(report: dict) -> str:
    """The benchmark table and the S3NN speedups as plain text."""
    cfg, results = report["config"], report["results"]
    rows = []
    for key, r in results.items():
        rows.append(
            [
                r["label"],
                r["T"],
                r["median_ms"],
                r["min_ms"],
                format_bytes(r["peak_memory_bytes"]),
                report["speedup"].get(key, 1.0),
                report["memory_ratio"].get(key, 1.0),
            ]
        )
    headers = ["network", "T", "median ms", "min ms", "peak mem", "time / S3NN", "mem / S3NN"]
    title = (
        f"training step (fwd+bwd+Adam), MLP {cfg['in_features']}-{cfg['width']}x{cfg['depth']}"
        f"-{cfg['out_features']}, batch {cfg['batch']}, device {cfg['device']}, "
        f"{cfg['repeats']} repeats"
    )
    lines = [title, format_table(headers, rows)]
    for key, s in report["speedup"].items():
        lines.append(
            f"S3NN speedup vs {results[key]['label']} (T={results[key]['T']}): {s:.2f}x "
            f"(median), {report['speedup_min'][key]:.2f}x (min)"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the single-step benchmark (unset flags keep `run`'s defaults)."""
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


def run_from_args(args: argparse.Namespace) -> dict:
    """`run` with the flags that `add_arguments` parsed into `args`."""
    names = ("width", "depth", "batch", "T", "repeats", "warmup", "device", "seed", "json_path")
    return run(**{n: getattr(args, n) for n in names if hasattr(args, n)})
