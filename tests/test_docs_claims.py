"""Speed ratios quoted in prose are the ones the committed benchmark JSON holds.

README.md and the docs quote ratios outside the benchmark tables ("29.7x faster", "about 30x",
"1.2–1.9x"). Each quote is found by its sentence, and its numbers are recomputed from the file
in `benchmarks/results/` that the benchmark named beside it writes, so a rerun benchmark or an
edited sentence that no longer agree fail here. A number is compared at the digits it is
written with; a range states the smallest and the largest value. (The agreement bounds of
docs/ssm.md are checked by running the layers, in `tests/test_ssm_agreement.py`.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def page_text(name: str) -> str:
    """The page with its line breaks folded into spaces, so a sentence matches across lines."""
    return " ".join((REPO / name).read_text(encoding="utf-8").split())


def quoted(name: str, pattern: str) -> list[str]:
    """The groups of `pattern` in page `name`; fails naming the page if the sentence is gone."""
    found = re.search(pattern, page_text(name))
    assert found, f"{name}: no sentence matches {pattern!r} (reworded? update this test)"
    return list(found.groups())


def bench(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def bpsn_row(report: dict, neuron: str, T: int) -> dict:
    (row,) = [r for r in report["results"] if r["neuron"] == neuron and r["T"] == T]
    return row


def about(value: float, stated: float, spread: float = 0.15) -> bool:
    """ "about N": within 15 % of N."""
    return abs(value - stated) <= spread * stated


def test_readme_bpsn_speed_and_memory_ratios_are_bench_bpsn():
    report = bench("bpsn.json")
    fast512, fast2048, memory = quoted(
        "README.md",
        r"`bpsn-ext bench bpsn`: BPSN forward\+backward is ([\d.]+)x \(T = 512\) and ([\d.]+)x "
        r"\(T = 2048\) faster than SpikingJelly's `LIFNode`, and its memory grows linearly "
        r"\(([\d.]+)x from T = 2048 to 8192\)",
    )
    for stated, T in ((fast512, 512), (fast2048, 2048)):
        assert f"{bpsn_row(report, 'sj_lif', T)['speedup_fwd_bwd']:.1f}" == stated, T
    peak = {T: bpsn_row(report, "bpsn", T)["peak_memory_bytes"] for T in (2048, 8192)}
    assert f"{peak[8192] / peak[2048]:.2f}" == memory


def test_about_30x_and_2x_are_bench_bpsn():
    report = bench("bpsn.json")
    (readme,) = quoted("README.md", r"cached; (\d+)x faster than SpikingJelly's `LIFNode`")
    native, torch_path = quoted(
        "docs/concepts.md",
        r"The native kernel is about (\d+)x faster than SpikingJelly's `LIFNode` "
        r"forward\+backward at T = 512 and 2048, the torch block scan about (\d+)x "
        r"\(`bpsn-ext bench bpsn`",
    )
    for T in (512, 2048):
        lif_ms = bpsn_row(report, "sj_lif", T)["fwd_bwd"]["median_ms"]
        torch_ms = bpsn_row(report, "bpsn_torch", T)["fwd_bwd"]["median_ms"]
        native_ratio = bpsn_row(report, "sj_lif", T)["speedup_fwd_bwd"]
        assert about(native_ratio, float(readme)) and about(native_ratio, float(native)), T
        assert about(lif_ms / torch_ms, float(torch_path)), (T, lif_ms / torch_ms)


def test_readme_snn_bert_ratios_are_bench_snn_bert():
    report = bench("snn_bert.json")
    stated = quoted(
        "README.md",
        r"individual coding trains ([\d.]+)x faster than repeat coding \(T = 4\), with "
        r"([\d.]+)x less memory and ([\d.]+)x less synaptic energy \(the paper reports "
        r"([\d.]+)x, ([\d.]+)x and ([\d.]+)x\)",
    )
    ratios, paper = report["ratios"], report["paper"]
    measured = [ratios["time"], ratios["memory"], ratios["energy_synaptic"]]
    assert [f"{v:.2f}" for v in measured] == stated[:3]
    assert [paper[k] for k in ("time", "memory", "energy")] == [float(s) for s in stated[3:]]


@pytest.mark.parametrize(
    "layer,reference,stated_group", [("s4d", "s4d", 0), ("s5", "spiking_s5", 1)]
)
def test_ssm_page_recurrence_ratios_are_bench_ssm(layer, reference, stated_group):
    at_4096 = bench("ssm.json")["results"]["4096"]
    stated = quoted(
        "docs/ssm.md",
        r"At L = 4096 the S4D recurrence is ([\d.]+)× slower than its FFT form, and the S5 "
        r"recurrence ([\d.]+)× slower than the scan",
    )[stated_group]
    ratio = at_4096[f"{layer}_sequential"]["median_ms"] / at_4096[reference]["median_ms"]
    assert f"{ratio:.{len(stated.partition('.')[2])}f}" == stated, ratio


def test_ssm_page_train_step_two_thread_ratio_is_its_json():
    step = bench("ssm_train_step_2threads.json")["train_step"]
    fused, unfused, floor, ratio = quoted(
        "docs/ssm.md",
        r"the medians were (\d+) ms \(fused\), (\d+) ms \(unfused\) and (\d+) ms \(floor\): "
        r"([\d.]+)x the floor",
    )
    medians = [round(step[k]["median_ms"]) for k in ("fused", "unfused", "floor")]
    assert medians == [int(fused), int(unfused), int(floor)]
    assert f"{step['fused_over_floor']:.{len(ratio.partition('.')[2])}f}" == ratio


def stated_range(lo: str, hi: str, values: list[float]) -> bool:
    """ "lo–hi" states the smallest and largest value, each to the digits written."""
    digits = [len(s.partition(".")[2]) for s in (lo, hi)]
    return [f"{min(values):.{digits[0]}f}", f"{max(values):.{digits[1]}f}"] == [lo, hi]


def test_bpsn_defaults_speed_ranges_are_its_epoch_times():
    summary = bench("bpsn_defaults.json")["summary"]
    epoch = {(s["task"], s["config"]): s["epoch_time_s"] for s in summary}

    def ratios(*pairs: tuple[str, str]) -> list[float]:
        return [epoch[t, a] / epoch[t, b] for t in ("digits", "cue") for a, b in pairs]

    page, span = "docs/bpsn_defaults.md", r"([\d.]+)–([\d.]+)x"
    gate, concat = (
        ("leak-gate-ref1", "leak-gate-none"),
        ("leak-concat-ref1-h32", "leak-concat-none-h32"),
    )
    soft_gate, soft_concat = ("leak-gate-soft", gate[1]), ("leak-concat-soft-h32", concat[1])
    checks = [
        (rf"`refractory` costs {span} the epoch time of", ratios(gate, concat)),
        (rf"`soft_reset` costs {span}, and it grows with T", ratios(soft_gate, soft_concat)),
        (rf"`concat` at full width costs {span} `gate`", ratios(("leak-concat-ref1", gate[0]))),
    ]
    for sentence, measured in checks:
        assert stated_range(*quoted(page, sentence), measured), (sentence, measured)
    # "At half width it costs the same as `gate` or less"
    assert max(ratios(("leak-concat-ref1-h32", gate[0]))) <= 1.05


def test_ssm_page_spiking_cost_and_streaming_ranges_are_their_json():
    report = bench("ssm_spiking_cost.json")
    cost = [r for per_length in report["spiking_cost"].values() for r in per_length.values()]
    stream = report["streaming"].values()
    page, span = "docs/ssm.md", r"([\d.]+)-([\d.]+)"
    (lo, hi) = quoted(page, rf"so the spiking blocks ran at {span}x the reference's time")
    assert stated_range(lo, hi, cost), cost
    ms_lo, ms_hi, x_lo, x_hi = quoted(
        page, rf"Streaming costs {span} ms per token at batch 8, {span}x the parallel form's"
    )
    assert stated_range(ms_lo, ms_hi, [r["step_us_per_token"] / 1000 for r in stream])
    assert stated_range(x_lo, x_hi, [r["step_over_parallel"] for r in stream])


def test_ssm_page_scaling_and_s5_memory_are_bench_ssm():
    report = bench("ssm.json")
    lo, hi = quoted("docs/ssm.md", r"Growth is close to linear \((\d+)-(\d+)× for 16× L\)")
    assert stated_range(lo, hi, list(report["scaling"].values())), report["scaling"]
    stated = quoted("docs/ssm.md", r"S5 scan's peak memory is (\d+), (\d+) and (\d+) MiB")
    peaks = [report["results"][L]["spiking_s5"]["peak_memory_bytes"] for L in report["results"]]
    assert [f"{p / 2**20:.0f}" for p in peaks] == stated
