"""The training tables of docs/results.md are their metrics JSON.

Each row of the sequential Fashion-MNIST 4 x 64, sequential digits, short ListOps and
Pathfinder tables names a run whose `train lra --metrics-json` file is committed in
`benchmarks/results/lra/`. The row's parameters, validation and test accuracy, firing rate,
energy, operation counts (and wall time) are recomputed from that file at the digits the table
writes, halves rounded up, so a rerun that replaces a JSON, or a hand-edited cell, fails here.
The epoch tables (ListOps and Pathfinder at LRA length) are their run's history, and the
kernels-alone table of benchmarks/RESULTS.md is its two `bench bpsn` JSON files."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LRA = REPO / "benchmarks" / "results" / "lra"
PAGE = REPO / "docs" / "results.md"
FMNIST_4X64 = "## Sequential Fashion-MNIST at 4 x 64, trained to a 6-epoch schedule"

# first cell of a row -> the stem of its metrics JSON (fashion_mnist_4x64_<stem>.json)
FMNIST_4X64_RUNS = {
    "Binary S4D": "binary_s4d",
    "S4D (reference)": "s4d",
    "GSU": "gsu",
    "GSU, `--gsu-grad-mode surrogate`": "gsu_surrogate",
    "spiking S5": "s5",
    "spiking S5, GLU block (`--s5-output glu --d-state 32`)": "s5_glu",
    "spiking S5, GLU block, `d_state` 64 (`--s5-output glu`)": "s5_glu64",
    "spiking S5, GLU block, `d_state` 128 (`--d-state 128`)": "s5_glu128",
    "spiking S5, GLU block, `d_state` 128, second seed (`--seed 1`)": "s5_glu128_seed1",
}


def table_rows(
    heading: str, index: int = 0, page: Path = PAGE, keys: int = 1
) -> dict[str, list[str]]:
    """The body rows of table `index` (0: the first) of the section under `heading` of `page`,
    by their first `keys` cells (joined with " | "): the other cells, stripped."""
    lines = page.read_text(encoding="utf-8").splitlines()
    name = page.relative_to(REPO)
    assert heading in lines, f"{name}: no heading {heading!r} (renamed? update this test)"
    tables: list[dict[str, list[str]]] = [{}]
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith(("## ", "### ")):
            break
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            tables[-1][" | ".join(cells[:keys])] = cells[keys:]
        elif tables[-1]:
            tables.append({})
    rows = tables[index]
    header, separator, *body = rows
    return {label: rows[label] for label in body}


def run_json(stem: str, folder: Path = LRA) -> dict:
    """The committed JSON `<folder>/<stem>.json` (default: the training runs' folder)."""
    return json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))


def rounded(value: float | Decimal, digits: int) -> str:
    """`value` at `digits` decimals, halves up (0.9135 is 91.4 %, not the float's 91.3)."""
    exact = value if isinstance(value, Decimal) else Decimal(repr(value))
    return str(exact.quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP))


def percent(accuracy: float, digits: int) -> str:
    return rounded(100 * Decimal(repr(accuracy)), digits)


def expected_cells(stem: str) -> list[str]:
    """The row's cells after the first, written from the run's metrics JSON."""
    run = run_json(f"fashion_mnist_4x64_{stem}")
    vals = " / ".join(percent(h["eval_accuracy"], 1) for h in run["history"])
    early = []
    for epoch in (3, 4):
        copy = f"fashion_mnist_4x64_{stem}_epoch{epoch}"
        found = (LRA / f"{copy}.json").exists()
        early.append(percent(run_json(copy)["accuracy"], 1) if found else "–")
    tests = " / ".join([*early, f"**{percent(run['test']['accuracy'], 2)}**"])
    energy = run["energy"]
    spiking = run["layer"] != "s4d"
    rate = rounded(energy["mean_firing_rate"], 3) if spiking else "–"
    ops = f"{rounded(energy['mac'] / 1e6, 1)}M MAC"
    if energy["ac"]:
        ops += f" + {rounded(energy['ac'] / 1e6, 1)}M AC"
    uj = f"{rounded(energy['energy_pJ'] / 1e6, 0)} uJ"
    return [f"{run['parameters']:,}", vals, tests, rate, uj, ops]


def test_the_4x64_table_names_every_committed_run_once():
    rows = table_rows(FMNIST_4X64)
    assert sorted(rows) == sorted(FMNIST_4X64_RUNS)
    stems = {p.stem.removeprefix("fashion_mnist_4x64_") for p in LRA.glob("fashion_mnist_4x64_*")}
    whole_runs = {s for s in stems if not s.rsplit("_", 1)[-1].startswith("epoch")}
    assert whole_runs == set(FMNIST_4X64_RUNS.values())


@pytest.mark.parametrize("label", sorted(FMNIST_4X64_RUNS))
def test_a_4x64_row_is_its_metrics_json(label):
    assert table_rows(FMNIST_4X64)[label] == expected_cells(FMNIST_4X64_RUNS[label])


DIGITS = "## Sequential digits (64 steps of one pixel)"
LISTOPS_SHORT = "## ListOps, generated at short lengths"

# first cell of a row -> the stem of its metrics JSON, per table; the S4D row's energy is the
# table's reference, which the permuted run is not compared with
SMALL_TABLES = {
    DIGITS: {
        "Binary S4D (`binary_s4d`)": "digits_binary_s4d",
        "GSU (`gsu`)": "digits_gsu",
        "spiking S5 (`s5`)": "digits_s5",
        "S4D (`s4d`, reference)": "digits_s4d",
        "BPSN (`bpsn`: Linear + BPSN, no SSM)": "digits_bpsn",
        "Binary S4D, bit-reversal permuted": "digits_bitreversal_binary_s4d",
    },
    LISTOPS_SHORT: {
        "Binary S4D": "listops_short_binary_s4d",
        "GSU": "listops_short_gsu",
        "spiking S5": "listops_short_s5",
        "S4D (reference)": "listops_short_s4d",
    },
}


def small_table_cells(stem: str, reference_pj: float | None) -> list[str]:
    """A row of the digits or short-ListOps table from its metrics JSON (bold dropped);
    `reference_pj`: S4D's energy per sample, None where the row has no ratio."""
    run = run_json(stem)
    energy = run["energy"]
    spiking = run["layer"] != "s4d"
    ops = f"{rounded(energy['mac'] / 1e6, 2)}M MAC"
    if energy["ac"]:
        ops += f" + {rounded(energy['ac'] / 1e3, 0)}k AC"
    ratio = f"{rounded(reference_pj / energy['energy_pJ'], 2)}x" if reference_pj else "–"
    return [
        f"{run['parameters']:,}",
        percent(run["test"]["accuracy"], 1),
        percent(run["history"][-1]["eval_accuracy"], 1),
        rounded(energy["mean_firing_rate"], 3) if spiking else "–",
        f"{rounded(energy['energy_pJ'] / 1e6, 2)} uJ",
        ops,
        ratio,
        f"{rounded(run['wall_time_s'], 0)} s",
    ]


@pytest.mark.parametrize("heading", sorted(SMALL_TABLES))
def test_a_small_table_is_its_metrics_json(heading):
    runs = SMALL_TABLES[heading]
    rows = table_rows(heading)
    assert sorted(rows) == sorted(runs)
    (reference,) = [stem for stem in runs.values() if run_json(stem)["layer"] == "s4d"]
    reference_pj = run_json(reference)["energy"]["energy_pJ"]
    for label, stem in runs.items():
        cells = [c.replace("**", "") for c in rows[label]]
        if heading == DIGITS:  # its second column says how the layer spikes
            cells = cells[1:]
        permuted = stem == "digits_bitreversal_binary_s4d"
        assert cells == small_table_cells(stem, None if permuted else reference_pj), label


LISTOPS_20K = "### ListOps at LRA length, 20,000 training sequences"
SUBSETS = "## LRA lengths on CPU-sized subsets (Binary S4D)"
PATHFINDER = "### Pathfinder-32 with 20,000 and 10,000 generated images"

# (heading, table index) -> the run whose history the epoch table shows
EPOCH_TABLES = {
    (LISTOPS_20K, 0): "listops20k_binary_s4d",
    (SUBSETS, 0): "listops_long_binary_s4d",
    (SUBSETS, 1): "pf32_binary_s4d",
}
# first cell of an epoch table's row -> its cell for one epoch of the history
EPOCH_ROWS = {
    "train loss": lambda h: rounded(h["train_loss"], 3),
    "val loss": lambda h: rounded(h["eval_loss"], 3),
    "val acc %": lambda h: percent(h["eval_accuracy"], 1),
}


@pytest.mark.parametrize("where", sorted(EPOCH_TABLES))
def test_an_epoch_table_is_its_runs_history(where):
    history = run_json(EPOCH_TABLES[where])["history"]
    rows = table_rows(*where)
    assert rows, where
    for label, cells in rows.items():
        assert cells == [EPOCH_ROWS[label](h) for h in history], (where, label)


# first cell -> (the run's JSON stem, what its test cell adds after the number)
PATHFINDER_RUNS = {
    "contour length 14 (LRA's), 20,000 images": ("pf32_25k_binary_s4d", " (chance 50)"),
    "contour length 6, 10,000 images": ("pf32_6_binary_s4d", ""),
}


@pytest.mark.parametrize("label", sorted(PATHFINDER_RUNS))
def test_a_pathfinder_row_is_its_metrics_json(label):
    stem, note = PATHFINDER_RUNS[label]
    run = run_json(stem)
    history, energy = run["history"], run["energy"]
    losses = " / ".join(rounded(history[e - 1]["train_loss"], 3) for e in (1, 9, 18))
    test = f"**{percent(run['test']['accuracy'], 1)}**{note}"
    expected = [
        " / ".join(percent(h["eval_accuracy"], 1) for h in history),
        losses,
        test,
        rounded(energy["mean_firing_rate"], 3),
        f"{rounded(energy['energy_pJ'] / 1e6, 0)} uJ",
    ]
    assert table_rows(PATHFINDER)[label] == expected


KERNELS_ALONE = "### The kernels alone"
KERNEL_RUNS = {
    "`[T, 8, 256]`": "bpsn_floor_kernels",
    "`[T, 8, 16, 4, 4]`": "bpsn_floor_kernels_conv",
}
KERNEL_ROWS = ("bpsn", "bpsn_compiled", "bpsn_kernels", "floor", "floor_fresh")


def bench_cells(stem: str, T: int) -> list[str]:
    """A kernels-alone row's cells after input and T, from `benchmarks/results/<stem>.json`:
    median / min ms of every row (3 significant digits below 10 ms, else one decimal), then
    eager / floor, kernels alone / floor and compiled / eager on both statistics."""
    report = run_json(stem, REPO / "benchmarks" / "results")
    found = {(r["neuron"], r["T"]): r["fwd_bwd"] for r in report["results"]}
    times = {k: (found[k, T]["median_ms"], found[k, T]["min_ms"]) for k in KERNEL_ROWS}

    def ms(v: float) -> str:
        return f"{v:.3g}" if v < 10 else f"{v:.1f}"

    def ratio(top: str, bottom: str) -> str:
        (a, b), (c, d) = times[top], times[bottom]
        return f"{a / c:.2f}x / {b / d:.2f}x"

    ratios = [("bpsn", "floor"), ("bpsn_kernels", "floor"), ("bpsn_compiled", "bpsn")]
    return [f"{ms(med)} / {ms(low)}" for med, low in times.values()] + [
        ratio(*pair) for pair in ratios
    ]


def test_the_kernels_alone_table_is_its_bench_json():
    rows = table_rows(KERNELS_ALONE, page=REPO / "benchmarks" / "RESULTS.md", keys=2)
    expected = {
        f"{shape} | {T}": bench_cells(stem, T)
        for shape, stem in KERNEL_RUNS.items()
        for T in (512, 2048, 8192)
    }
    assert rows == expected
