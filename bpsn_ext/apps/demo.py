"""Digits demo: a single-step S3NN MLP against a T-step SpikingJelly LIF MLP.

Both networks are ``64 -> hidden -> hidden -> 10`` and are trained the same way (Adam,
cross-entropy, same seed and batch order) on scikit-learn's 8x8 digits:

* ``s3nn``: Linear -> ``SingleStepNode`` (S2NN surrogate) twice, real-valued readout logits;
* ``sj_lif``: the same layers with ``neuron.LIFNode(tau=2.0, step_mode='m')`` over T steps
  of the repeated (direct-coded) input, logits averaged over T.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bpsn_ext.bench.measure import format_bytes, format_table, peak_memory_bytes

__all__ = ["run_demo"]

NUM_CLASSES = 10


def _accuracy(model: nn.Module, reset: Callable | None, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        if reset is not None:
            reset(model)
        pred = model(x).argmax(-1)
    model.train()
    return (pred == y).float().mean().item()


def _train(
    model: nn.Module,
    reset: Callable | None,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    label: str,
    progress: bool,
) -> tuple[float, Callable[[], None]]:
    """Train in place; return the wall time (s) and a closure doing one more training step."""
    from tqdm.auto import tqdm

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)

    def step(xb: torch.Tensor, yb: torch.Tensor) -> float:
        if reset is not None:
            reset(model)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss.item()

    model.train()
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc=label, disable=not progress, leave=False)
    for _ in bar:
        perm = torch.randperm(len(x), generator=order).to(x.device)
        losses = [step(x[idx], y[idx]) for idx in perm.split(batch_size)]
        bar.set_postfix(loss=f"{sum(losses) / len(losses):.3f}")
    seconds = time.perf_counter() - start
    return seconds, lambda: step(x[:batch_size], y[:batch_size])


def run_demo(
    epochs: int = 20,
    seed: int = 0,
    hidden: int = 128,
    device: str = "cpu",
    T: int = 4,
    lr: float = 3e-3,
    batch_size: int = 64,
    progress: bool = True,
    verbose: bool = True,
) -> dict:
    """Train both networks on the digits; print and return accuracy, time and memory.

    Returns ``{"config": {...}, "results": {"s3nn": r, "sj_lif": r}}`` where ``r`` has
    ``test_accuracy`` (0..1), ``train_time_s`` (all epochs), ``peak_memory_bytes`` (one
    training step of ``batch_size`` samples, see ``bench.measure.peak_memory_bytes``),
    ``T``, ``parameters`` and ``energy`` (per test sample, from
    :func:`bpsn_ext.energy.demo_energy`; its ``.report`` holds the per-layer table).
    """
    from spikingjelly.activation_based import functional

    from bpsn_ext.bench.single_step import build_s3nn, build_sj_lif
    from bpsn_ext.data import load_digits
    from bpsn_ext.energy import demo_energy

    dev = torch.device(device)
    data = load_digits(seed=seed)
    x_train, y_train, x_test, y_test = (t.to(dev) for t in data)
    in_features = x_train.shape[1]
    dims = (in_features, hidden, 2, NUM_CLASSES)
    networks = {
        "s3nn": ("S3NN SingleStepNode", 1, lambda: build_s3nn(*dims), None),
        "sj_lif": ("SpikingJelly LIFNode", T, lambda: build_sj_lif(*dims, T), functional.reset_net),
    }
    results: dict[str, dict] = {}
    for key, (label, steps, build, reset) in networks.items():
        torch.manual_seed(seed)
        model = build().to(dev)
        seconds, one_step = _train(
            model, reset, x_train, y_train, epochs=epochs, batch_size=batch_size, lr=lr,
            seed=seed, label=label, progress=progress,
        )
        results[key] = {
            "label": label,
            "T": steps,
            "test_accuracy": _accuracy(model, reset, x_test, y_test),
            "train_time_s": seconds,
            # measured after evaluation: this extra step does not change the accuracy above
            "peak_memory_bytes": peak_memory_bytes(one_step, device=dev),
            "parameters": sum(p.numel() for p in model.parameters()),
            "energy": demo_energy(model, x_test, T=steps),
        }
    report = {
        "config": {
            "epochs": epochs, "seed": seed, "hidden": hidden, "device": str(dev), "T": T,
            "lr": lr, "batch_size": batch_size, "optimizer": "Adam",
            "train_size": len(x_train), "test_size": len(x_test),
        },
        "results": results,
    }
    if verbose:
        print(_format(report))
    return report


def _format(report: dict) -> str:
    cfg = report["config"]
    headers = ["network", "T", "test acc %", "train time s", "peak mem/step"]
    rows = [
        [r["label"], r["T"], 100.0 * r["test_accuracy"], r["train_time_s"],
         format_bytes(r["peak_memory_bytes"])]
        for r in report["results"].values()
    ]
    title = (
        f"digits 8x8 ({cfg['train_size']} train / {cfg['test_size']} test), MLP 64-"
        f"{cfg['hidden']}-{cfg['hidden']}-10, {cfg['epochs']} epochs, Adam lr {cfg['lr']}, "
        f"batch {cfg['batch_size']}, seed {cfg['seed']}, device {cfg['device']}"
    )
    lines = [title, format_table(headers, rows)]
    for r in report["results"].values():
        if r["energy"] is not None:
            lines.append("")
            lines.append(f"{r['label']}: energy {r['energy']}")
            table = getattr(r["energy"], "report", None)
            if table is not None:  # per-layer ops, firing rates and energy (all test samples)
                lines.append(str(table))
    return "\n".join(lines)
