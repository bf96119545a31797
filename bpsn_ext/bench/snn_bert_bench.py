"""``bpsn-ext bench snn-bert``: individual coding (BPSN) vs repeat coding (LIF, T=4) vs the
ANN twin (``coding="ann"``: the same network with ReLU instead of neurons).

The three models share one configuration (default 4 layers, width 256, 4 heads, FFN 1024,
L = 128, batch 16) and the same Linear / LayerNorm / embedding weights; they differ only in the
coding and the neuron.  Measured, per model:

* training step time: forward + cross-entropy + backward + AdamW step on random tokens (all
  samples of full length L), the two models timed in rotation
  (`bpsn_ext.bench.measure.time_fns`);
* peak memory of one training step (`bpsn_ext.bench.measure.peak_memory_bytes`; on CPU
  the profiler's allocation events);
* energy of one forward pass from `bpsn_ext.energy.estimate` (synaptic MAC/AC energy,
  the papers' E_SNN, and the total with neuron/norm elementwise ops), with the freshly
  initialised weights (firing rates of a trained model differ).

``--from RUN_DIR`` (repeatable, one ``train glue`` run per coding) measures trained models
instead: the sizes are the runs', a coding without a run gets the first run's weights
(`bpsn_ext.bench.snn_bert_trained`), and with ``--data`` (the runs' GLUE tree) the energy is
counted on the first ``batch`` samples of their evaluation split, in eval mode, so the energy
ratios printed are those of the trained models on real text.

Ratios are repeat / individual; the paper reports 3.5x (training speed), 3.8x (training memory)
and 6.46x (energy) (Su et al., Neural Networks 2024); ``ann_energy`` is the ANN twin's measured
synaptic energy over each spiking model's (the paper: up to 22.5x for individual coding).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import torch

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
    torch_threads,
)
from bpsn_ext.bench.snn_bert_trained import text_batches, trained_models
from bpsn_ext.models.snn_bert_coding import CODINGS
from bpsn_ext.util.arguments import check_int
from bpsn_ext.util.cli_args import positive_int

__all__ = ["run", "add_arguments", "run_from_args", "format_report", "DEFAULT_JSON", "PAPER"]

DEFAULT_JSON = DefaultJson(os.path.join("benchmarks", "results", "snn_bert.json"))
PAPER = {"time": 3.5, "memory": 3.8, "energy": 6.46, "ann_energy": 22.5}
QUICK = {
    "layers": 1,
    "width": 32,
    "heads": 2,
    "ffn_width": 64,
    "length": 16,
    "batch": 4,
    "repeats": 1,
    "warmup": 1,
    "vocab_size": 100,
}


def _models(cfg: dict, device: torch.device):
    from bpsn_ext.models import SNNBert, SNNBertConfig

    base = SNNBertConfig(
        vocab_size=cfg["vocab_size"],
        num_labels=2,
        layers=cfg["layers"],
        width=cfg["width"],
        heads=cfg["heads"],
        ffn_width=cfg["ffn_width"],
        max_length=cfg["length"],
        T=cfg["T"],
        attention=cfg["attention"],
        dropout=0.0,
    )
    torch.manual_seed(cfg["seed"])
    ind = SNNBert(base, coding="individual").to(device)
    out = {"individual": ind}
    for coding in CODINGS[1:]:
        other = SNNBert(base, coding=coding).to(device)
        shared = {k: v for k, v in ind.state_dict().items() if k in other.state_dict()}
        other.load_state_dict(shared, strict=False)  # same synapses; only the neurons differ
        out[coding] = other
    return out


def _text_energy(model, ids, kwargs: dict, dev: torch.device) -> dict:
    return _energy(model, ids.to(dev), {k: v.to(dev) for k, v in kwargs.items()})


def _train_step(model, ids, labels) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(ids), labels)
        loss.backward()
        opt.step()

    return step


def _energy(model, ids, kwargs: dict | None = None) -> dict:
    was = model.training
    model.eval()
    with torch.no_grad():
        per = model.coding.estimate(model, ids, kwargs).per_sample()
    model.train(was)
    return {
        k: per[k]
        for k in (
            "mac",
            "ac",
            "mul",
            "add",
            "nonlin",
            "synaptic_energy_pJ",
            "energy_pJ",
            "ann_energy_pJ",
            "ratio",
            "mean_output_rate",
            "effective_ac_rate",
        )
    }


def run(
    layers: int = 4,
    width: int = 256,
    heads: int = 4,
    ffn_width: int = 1024,
    length: int = 128,
    batch: int = 16,
    T: int = 4,
    vocab_size: int = 8000,
    attention: str = "softmax",
    repeats: int = 5,
    warmup: int = 1,
    device: str = "cpu",
    threads: int | None = None,
    seed: int = 0,
    memory: bool = True,
    quick: bool = False,
    json_path: str | os.PathLike | None = DEFAULT_JSON,
    verbose: bool = True,
    from_runs: list[str] | None = None,
    data: str | None = None,
) -> dict:
    """Measure both codings; print a table, write JSON (``json_path=None``: no file).

    ``from_runs``: ``train glue`` run folders (one per coding) whose trained models are
    measured, their sizes replacing ``layers`` ... ``vocab_size`` and ``attention``;
    ``data``: their GLUE tree, for the energy batch (else random tokens).

    Returns ``{"benchmark", "config", "environment", "results", "ratios", "paper", "notes"}``:
    ``results[coding]`` holds the step-time statistics (ms), ``peak_memory_bytes`` and
    ``energy`` (per-sample counts and pJ); ``ratios`` = repeat / individual for ``time``,
    ``memory``, ``energy_synaptic`` and ``energy_total``.
    """
    sizes = dict(layers=layers, width=width, heads=heads, ffn_width=ffn_width, length=length)
    sizes.update(batch=batch, T=T, vocab_size=vocab_size)
    loop = {"repeats": repeats, "warmup": warmup}
    trained = _trained(from_runs, data, device)
    if trained is not None:
        sizes.update(_run_sizes(trained[2]["config"]))
        attention = trained[2]["config"]["attention"]
    if quick:  # QUICK replaces the sizes (not a run's) and the timing loop, not T
        if trained is None:
            sizes.update({k: v for k, v in QUICK.items() if k in sizes})
        loop.update({k: v for k, v in QUICK.items() if k in loop})
    check_positive_ints([*sizes.items(), ("repeats", loop["repeats"])])
    check_int("threads", threads, none_ok=True)
    dev = torch.device(device)
    config = {**sizes, "attention": attention, **loop, "device": str(dev), "seed": seed}
    config.update(_run_notes(quick, threads, trained, data, batch))
    with torch_threads(threads):
        report = _measure(config, dev, memory, trained, data)
    return publish_report(report, json_path, verbose, format_report)


def _run_notes(quick: bool, threads, trained, data, batch: int) -> dict:
    """The config entries that say how the benchmark ran."""
    return {
        "quick": quick,
        "threads": threads or torch.get_num_threads(),
        "step": "forward + cross-entropy + backward + AdamW step, full-length samples",
        "from_runs": None if trained is None else trained[2]["runs"],
        "energy_input": "random tokens" if data is None else f"{data} ({batch} samples)",
    }


def _trained(from_runs, data, device):
    """`trained_models` of the ``--from`` runs, or None without them."""
    if from_runs:
        return trained_models(list(from_runs), device)
    if data is not None:
        raise ValueError("--data gives the energy batch of --from runs; pass --from RUN_DIR")
    return None


def _run_sizes(cfg: dict) -> dict:
    """The benchmark sizes of a run's `SNNBertConfig` dict."""
    names = ("layers", "width", "heads", "ffn_width", "T", "vocab_size")
    return {**{n: cfg[n] for n in names}, "length": cfg["max_length"]}


def _measure(config: dict, dev: torch.device, memory: bool, trained=None, data=None) -> dict:
    models = _models(config, dev) if trained is None else trained[0]
    gen = torch.Generator().manual_seed(config["seed"] + 1)
    ids = torch.randint(
        0, config["vocab_size"], (config["length"], config["batch"]), generator=gen
    ).to(dev)
    labels = torch.randint(0, 2, (config["batch"],), generator=gen).to(dev)
    if data is not None:
        texts = text_batches(trained[1], trained[2], data, config["batch"])
        energy = {c: _text_energy(m, *texts[c], dev) for c, m in models.items()}
    else:
        energy = {c: _energy(m, ids) for c, m in models.items()}
    steps = {c: _train_step(m, ids, labels) for c, m in models.items()}
    timings = time_fns(steps, repeats=config["repeats"], warmup=config["warmup"], device=dev)
    results = {}
    for c in CODINGS:
        results[c] = {
            **timings[c],
            "peak_memory_bytes": peak_memory_bytes(steps[c], device=dev) if memory else None,
            "parameters": sum(p.numel() for p in models[c].parameters()),
            "energy": energy[c],
        }
    ind, rep, ann = results["individual"], results["repeat"], results["ann"]
    ratios = {
        "time": rep["median_ms"] / ind["median_ms"],
        "memory": (
            rep["peak_memory_bytes"] / ind["peak_memory_bytes"]
            if memory and ind["peak_memory_bytes"]
            else None
        ),
        "energy_synaptic": (
            rep["energy"]["synaptic_energy_pJ"] / ind["energy"]["synaptic_energy_pJ"]
        ),
        "energy_total": rep["energy"]["energy_pJ"] / ind["energy"]["energy_pJ"],
        "ann_energy_vs_individual": (
            ann["energy"]["synaptic_energy_pJ"] / ind["energy"]["synaptic_energy_pJ"]
        ),
        "ann_energy_vs_repeat": (
            ann["energy"]["synaptic_energy_pJ"] / rep["energy"]["synaptic_energy_pJ"]
        ),
    }
    return {
        "benchmark": "snn_bert",
        "config": config,
        "environment": environment(dev),
        "results": results,
        "ratios": ratios,
        "paper": PAPER,
        "notes": [
            "ratios are repeat coding / individual coding on the same configuration and weights",
            "ann_energy_vs_*: the ANN twin's (coding='ann', ReLU, every synaptic op a MAC) "
            "synaptic energy over the spiking model's",
            "energy: one forward pass (eval mode) of the freshly initialised models, or of the "
            "trained --from runs; synaptic = E_MAC*MAC + E_AC*AC (the papers' E_SNN), "
            "total adds neuron, norm and softmax elementwise ops",
            "CPU timings on a shared machine are noisy; compare ratios, not absolute times",
        ],
    }


def format_report(report: dict) -> str:
    cfg, res, r = report["config"], report["results"], report["ratios"]
    rows = []
    for c in CODINGS:
        x = res[c]
        mem = x["peak_memory_bytes"]
        e = x["energy"]
        rows.append(
            [
                c,
                x["median_ms"],
                format_bytes(mem) if mem is not None else None,
                e["synaptic_energy_pJ"] / 1e6,
                e["energy_pJ"] / 1e6,
                e["mean_output_rate"],
            ]
        )
    rows.append(
        [
            "repeat / individual",
            r["time"],
            None if r["memory"] is None else f"{r['memory']:.2f}x",
            r["energy_synaptic"],
            r["energy_total"],
            None,
        ]
    )
    rows.append(
        [
            "paper (repeat / individual)",
            PAPER["time"],
            f"{PAPER['memory']}x",
            PAPER["energy"],
            None,
            None,
        ]
    )
    rows.append(["ANN twin / individual", None, None, r["ann_energy_vs_individual"], None, None])
    rows.append(["ANN twin / repeat", None, None, r["ann_energy_vs_repeat"], None, None])
    rows.append(["paper (ANN / individual, up to)", None, None, PAPER["ann_energy"], None, None])
    title = (
        ("trained (--from) " if cfg.get("from_runs") else "")
        + f"SNN-BERT training step, {cfg['layers']} layers, width {cfg['width']}, "
        f"{cfg['heads']} heads, FFN {cfg['ffn_width']}, L={cfg['length']}, batch "
        f"{cfg['batch']}, repeat T={cfg['T']}, {cfg['attention']} attention, device "
        f"{cfg['device']}, {cfg['threads']} thread(s), median of {cfg['repeats']}"
    )
    headers = [
        "coding",
        "step ms",
        "peak mem",
        "synaptic uJ/sample",
        "total uJ/sample",
        "firing rate",
    ]
    return "\n".join([title, format_table(headers, rows)])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the SNN-BERT benchmark (unset flags keep `run`'s defaults)."""
    S = argparse.SUPPRESS
    parser.add_argument("--layers", type=positive_int, default=S, help="encoder blocks (4)")
    parser.add_argument("--width", type=positive_int, default=S, help="model width D (256)")
    parser.add_argument("--heads", type=positive_int, default=S, help="attention heads (4)")
    parser.add_argument(
        "--ffn-width", dest="ffn_width", type=positive_int, default=S, help="FFN (1024)"
    )
    parser.add_argument("--length", type=positive_int, default=S, help="tokens per sample L (128)")
    parser.add_argument("--batch", type=positive_int, default=S, help="batch size (16)")
    parser.add_argument("--T", type=positive_int, default=S, help="repeat-coding steps (4)")
    parser.add_argument(
        "--vocab-size", dest="vocab_size", type=positive_int, default=S, help="(8000)"
    )
    parser.add_argument(
        "--attention",
        choices=("softmax", "spike_driven"),
        default=S,
        help="attention variant (softmax)",
    )
    parser.add_argument("--repeats", type=positive_int, default=S, help="timed steps per model (5)")
    parser.add_argument("--warmup", type=int, default=S, help="untimed steps per model (1)")
    parser.add_argument("--device", default=S, help="torch device (cpu)")
    parser.add_argument("--threads", type=positive_int, default=S, help="torch threads (unchanged)")
    parser.add_argument("--seed", type=int, default=S, help="weights and tokens seed (0)")
    parser.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        default=S,
        help="skip the peak-memory measurement",
    )
    parser.add_argument(
        "--quick", action="store_true", default=S, help="tiny sizes, one repeat (a smoke test)"
    )
    parser.add_argument(
        "--from",
        dest="from_runs",
        action="append",
        metavar="RUN_DIR",
        default=S,
        help="measure the trained model of a `train glue` run (repeat the flag, one run per "
        "coding; sizes from the runs)",
    )
    parser.add_argument(
        "--data",
        default=S,
        help="the --from runs' GLUE tree: count the energy on their evaluation split",
    )
    add_json_arguments(parser, "benchmarks/results/snn_bert.json")


def run_from_args(args: argparse.Namespace) -> dict:
    """`run` with the flags that `add_arguments` parsed into ``args``."""
    names = (
        "layers",
        "width",
        "heads",
        "ffn_width",
        "length",
        "batch",
        "T",
        "vocab_size",
        "attention",
        "repeats",
        "warmup",
        "device",
        "threads",
        "seed",
        "memory",
        "quick",
        "json_path",
        "from_runs",
        "data",
    )
    return run(**{n: getattr(args, n) for n in names if hasattr(args, n)})
