"""Collect ``train glue`` runs into SNN-BERT's trade-off table: one row per group of seeds.

Each ``--group LABEL=RUN[,RUN...]`` names the run folders of one model (one per seed).  A row
holds the final dev accuracy of each run, their mean and sample standard deviation, and the
means of the firing rate, the synaptic and total energy per sample (each run's ``energy.json``
summary in ``metrics.json``) and the training wall time per optimiser step (the whole run,
evaluation included, over its steps).  Prints a Markdown table and writes JSON::

    python benchmarks/snn_bert_tradeoff.py --root runs \\
        --group "repeat (LIF, T = 4)=rep_s0,rep_s1,rep_s2" \\
        --group "individual, --rate-reg 2=rs2_s0,rs2_s1,rs2_s2" --json tradeoff.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

from bpsn_ext.util.files import write_json_atomic


def _load(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path!r} not found: {what}") from None


def read_run(folder: str, energy_json: str | None = None) -> dict:
    """The final accuracy, energy summary, steps and wall time of one run folder; the energy
    from ``folder/energy_json`` (an `evaluate glue --energy --json` file) where given."""
    m = _load(os.path.join(folder, "metrics.json"), "not a finished `train glue` run")
    e = m.get("energy") or {}
    if energy_json:
        path = os.path.join(folder, energy_json)
        e = _load(path, "write it with `bpsn-ext evaluate glue --energy --json`").get("energy")
        if not e:
            raise ValueError(f"{path!r} has no energy report (evaluate glue without --energy?)")
    return {
        "run": os.path.basename(os.path.normpath(folder)),
        "accuracy": 100.0 * m["history"][-1]["eval_accuracy"],
        "rate": e.get("mean_output_rate"),
        "synaptic_uJ": e.get("synaptic_energy_pJ_per_sample", 0.0) / 1e6,
        "total_uJ": e.get("energy_pJ_per_sample", 0.0) / 1e6,
        "ms_per_step": 1e3 * m["wall_time_s"] / m["steps"],
    }


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def summarise(label: str, runs: list[dict]) -> dict:
    """One table row from the runs of one group."""
    acc = [r["accuracy"] for r in runs]
    return {
        "label": label,
        "runs": [r["run"] for r in runs],
        "accuracy": acc,
        "mean": statistics.fmean(acc),
        "std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
        **{k: _mean([r[k] for r in runs]) for k in ("rate", "synaptic_uJ", "total_uJ")},
        "ms_per_step": _mean([r["ms_per_step"] for r in runs]),
    }


def table(rows: list[dict]) -> str:
    """The Markdown table of `summarise` rows."""
    head = (
        "| model | dev acc % per seed | mean ± std | firing rate | synaptic energy / sample "
        "| total energy / sample | train ms / step |\n|---|---|--:|--:|--:|--:|--:|"
    )
    lines = [head]
    for r in rows:
        rate = "—" if r["rate"] is None else f"{r['rate']:.3f}"
        lines.append(
            f"| {r['label']} | {' / '.join(f'{a:.1f}' for a in r['accuracy'])} | "
            f"**{r['mean']:.1f} ± {r['std']:.1f}** | {rate} | {r['synaptic_uJ']:.3g} uJ | "
            f"{r['total_uJ']:.3g} uJ | {r['ms_per_step']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=".", help="folder the run names are relative to (.)")
    p.add_argument("--group", action="append", required=True, metavar="LABEL=RUN,RUN")
    p.add_argument(
        "--energy-json",
        metavar="NAME",
        help="read each run's energy from RUN/NAME (`evaluate glue --energy --energy-samples N "
        "--json RUN/NAME`) instead of the 8-sample report in its metrics.json",
    )
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = p.parse_args(argv)
    if args.json and os.path.exists(args.json) and not args.overwrite:
        p.error(f"--json {args.json!r} exists; pass --overwrite to replace it")
    rows = []
    for spec in args.group:
        label, sep, names = spec.rpartition("=")
        if not sep or not label or not names:
            p.error(f"--group takes LABEL=RUN[,RUN...], got {spec!r}")
        runs = [
            read_run(os.path.join(args.root, n), args.energy_json) for n in names.split(",") if n
        ]
        rows.append(summarise(label, runs))
    print(table(rows))
    if args.json:
        command = " ".join(["python benchmarks/snn_bert_tradeoff.py", *(argv or sys.argv[1:])])
        write_json_atomic(args.json, {"command": command, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
