"""Choose BPSN's defaults by a small experiment: runaway rule x fusion x kernel.

Two small CPU tasks, both with variable-length (padded + masked) sequences; the padding is
filled with uniform noise, which a working mask hides:

* ``digits``: scikit-learn's 8x8 digits read as T = 8 tokens (rows) of 8 pixels; each sample
  keeps only its first L ~ U{6..8} rows (the rest is padding);
* ``cue``: T = 32, length L ~ U{20..32}; Gaussian noise (std 0.2) on 4 channels (marker, cue,
  noise, noise), one cue token at a random position c and 1-2 distractor markers more than
  W + 1 = 4 steps away from it.  Label (4 classes) = 2 * [a marker in c-3..c-1] + [a marker in
  c+1..c+3]: it needs the past *and* the future of the cue.  ``--drive X`` adds a per-sample
  DC offset U(0, X) to every channel (off by default).

Model: Linear(in, D) -> LayerNorm -> BPSN -> Linear(D', D) -> LayerNorm -> BPSN -> masked
mean over valid steps -> Linear(D', classes), D' = 2D for ``fusion="concat"``, D = 64.  Adam
(lr 1e-2), cross-entropy, batch 64, 15 epochs; seed s fixes the data, lengths, weights and
batch order (so configurations with the same seed are paired).

Reported per configuration (mean +- std over seeds): test accuracy, mean firing rate of the
two BPSN layers on the test set (valid steps only), the longest run of consecutive spikes of
any neuron on the test set, the firing rate of a fresh neuron and of the trained first layer
under a constant input of 2.0 for 64 steps (and its longest spike run), training time per
epoch (median over epochs and seeds).

Configurations are named ``KERNEL-FUSION-RUNAWAY[-hWIDTH]`` with RUNAWAY one of ``none``,
``ref1``, ``ref2`` (refractory, r = 1 or 2) and ``soft`` (soft_reset); ``-h32`` sets D = 32
(``concat`` at half width has as many output channels as the others)::

    python benchmarks/bpsn_defaults.py                        # the default set (~9 min)
    python benchmarks/bpsn_defaults.py --epochs 2 --seeds 0 --tasks digits \\
        --configs leak-gate-ref1 leak-gate-none               # a quick look
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from bpsn_ext import BPSN
from bpsn_ext.util.files import write_json_atomic
from bpsn_ext.util.tables import format_table

RUNAWAY_CODES = {
    "none": ("none", 1),
    "ref1": ("refractory", 1),
    "ref2": ("refractory", 2),
    "soft": ("soft_reset", 1),
}
KERNELS = ("leak", "window")
FUSIONS = ("gate", "avg", "sum", "concat", "split")

# The anti-runaway rule with the gate fusion; the fusion with refractory r = 1 (concat also
# at half width, so that its output has as many channels as the others); the rule again with
# half-width concat; the window kernel.
DEFAULT_CONFIGS = (
    "leak-gate-none",
    "leak-gate-ref1",
    "leak-gate-ref2",
    "leak-gate-soft",
    "leak-avg-ref1",
    "leak-sum-ref1",
    "leak-concat-ref1",
    "leak-concat-ref1-h32",
    "leak-concat-none-h32",
    "leak-concat-ref2-h32",
    "leak-concat-soft-h32",
    "window-gate-ref1",
    "window-concat-ref1-h32",
)
TASKS = ("digits", "cue")
DRIVE = 2.0  # the constant supra-threshold input of the drive test
DRIVE_T = 64
DEFAULT_JSON = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "results", "bpsn_defaults.json"
)


def parse_config(code: str) -> tuple[dict, int | None]:
    """``"leak-gate-ref1"`` -> (BPSN keyword arguments, hidden width or None for --hidden);
    an optional fourth part ``hNN`` sets the width, e.g. ``leak-concat-ref1-h32``."""
    parts = code.split("-")
    hidden = None
    if len(parts) == 4 and parts[3][:1] == "h" and parts[3][1:].isdigit():
        hidden = int(parts[3][1:])
        parts = parts[:3]
    if (
        len(parts) != 3
        or parts[0] not in KERNELS
        or parts[1] not in FUSIONS
        or (parts[2] not in RUNAWAY_CODES)
        or hidden == 0
    ):
        raise argparse.ArgumentTypeError(
            f"config must be KERNEL-FUSION-RUNAWAY[-hWIDTH] with KERNEL in {KERNELS}, FUSION "
            f"in {FUSIONS}, RUNAWAY in {tuple(RUNAWAY_CODES)}; got {code!r}"
        )
    kernel, fusion, rule = parts
    runaway, r = RUNAWAY_CODES[rule]
    if runaway == "soft_reset" and kernel != "leak":
        raise argparse.ArgumentTypeError(f"{code}: soft_reset needs the leak kernel")
    cfg = {"kernel": kernel, "fusion": fusion, "runaway": runaway, "refractory_steps": r}
    return cfg, hidden


# ---- data ------------------------------------------------------------------------------------
class Split:
    """Time-first inputs ``x [T, N, F]``, bool mask ``[T, N]`` and labels ``[N]``."""

    def __init__(self, x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.mask, self.y = x, mask, y

    def __len__(self) -> int:
        return self.y.shape[0]

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.x[:, idx], self.mask[:, idx], self.y[idx]


def _lengths_mask(n: int, T: int, low: int, gen: torch.Generator) -> torch.Tensor:
    lengths = torch.randint(low, T + 1, (n,), generator=gen)
    return torch.arange(T)[:, None] < lengths[None, :]


def make_digits(seed: int, tokens: int = 8, min_len: int = 6) -> tuple[Split, Split, int, int]:
    """Digits as ``tokens`` steps of ``64 / tokens`` pixels, truncated to random lengths."""
    from bpsn_ext.data import load_digits

    data = load_digits(seed=seed)
    gen = torch.Generator().manual_seed(10_000 + seed)

    def split(x: torch.Tensor, y: torch.Tensor) -> Split:
        n = x.shape[0]
        seq = x.reshape(n, tokens, -1).transpose(0, 1).contiguous()  # [T, N, F]
        mask = _lengths_mask(n, tokens, min_len, gen)
        junk = torch.rand(seq.shape, generator=gen)
        return Split(torch.where(mask[..., None], seq, junk), mask, y)

    train = split(data.x_train, data.y_train)
    test = split(data.x_test, data.y_test)
    return train, test, train.x.shape[-1], 10


def make_cue(
    seed: int,
    n_train: int = 2048,
    n_test: int = 1024,
    T: int = 32,
    min_len: int = 20,
    window: int = 3,
    drive: float = 0.0,
    noise: float = 0.2,
    distractors: tuple[int, int] = (1, 2),
) -> tuple[Split, Split, int, int]:
    """The cue task of the module docstring; channels: marker, cue, noise, noise."""
    gen = torch.Generator().manual_seed(20_000 + seed)

    def split(n: int) -> Split:
        mask = _lengths_mask(n, T, min_len, gen)
        lengths = mask.sum(0)
        x = noise * torch.randn(T, n, 4, generator=gen)
        x = x + drive * torch.rand(1, n, 1, generator=gen)  # per-sample DC offset
        y = torch.randint(0, 4, (n,), generator=gen)
        u = torch.rand(n, 8, generator=gen)  # uniform draws for positions
        for i in range(n):
            L = int(lengths[i])
            c = window + 1 + int(u[i, 0] * (L - 2 * window - 2))  # c-W-1 >= 0, c+W+1 < L
            x[c, i, 1] += 1.0
            if y[i] >= 2:  # a marker before the cue, within W steps
                x[c - 1 - int(u[i, 1] * window), i, 0] += 1.0
            if y[i] % 2:  # a marker after the cue
                x[c + 1 + int(u[i, 2] * window), i, 0] += 1.0
            far = [t for t in range(L) if abs(t - c) > window + 1]
            lo, hi = distractors
            for k in range(lo + int(u[i, 3] * (hi - lo + 1))):  # lo..hi distractor markers
                x[far[int(u[i, 4 + k] * len(far))], i, 0] += 1.0
        junk = torch.rand(x.shape, generator=gen) * 2.0
        return Split(torch.where(mask[..., None], x, junk), mask, y)

    return split(n_train), split(n_test), 4, 4


def make_task(name: str, seed: int, drive: float):
    return make_digits(seed) if name == "digits" else make_cue(seed, drive=drive)


# ---- model and metrics -------------------------------------------------------------------
class Net(nn.Module):
    def __init__(self, in_features: int, hidden: int, classes: int, cfg: dict) -> None:
        super().__init__()
        width = 2 * hidden if cfg["fusion"] == "concat" else hidden
        self.fc1 = nn.Sequential(nn.Linear(in_features, hidden), nn.LayerNorm(hidden))
        self.sn1 = BPSN(hidden, **cfg)
        self.fc2 = nn.Sequential(nn.Linear(width, hidden), nn.LayerNorm(hidden))
        self.sn2 = BPSN(hidden, **cfg)
        self.readout = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        s1 = self.sn1(self.fc1(x), mask)
        s2 = self.sn2(self.fc2(s1), mask)
        m = mask[..., None].to(s2.dtype)
        pooled = (s2 * m).sum(0) / m.sum(0).clamp_min(1.0)
        return self.readout(pooled), (s1, s2)


def longest_run(spikes: torch.Tensor) -> int:
    """Longest run of consecutive spikes along time (dim 0) of any neuron."""
    s = spikes > 0
    T = s.shape[0]
    idx = torch.arange(T).reshape(T, *([1] * (s.dim() - 1))).expand_as(s)
    last_silent = torch.cummax(torch.where(s, torch.full_like(idx, -1), idx), dim=0).values
    return int((idx - last_silent).max()) if T else 0


def masked_rate(spikes: torch.Tensor, mask: torch.Tensor) -> float:
    m = mask[..., None].to(spikes.dtype)
    return float((spikes * m).sum() / (m.sum() * spikes.shape[-1]))


def drive_test(neuron: nn.Module, channels: int) -> tuple[float, int]:
    """Firing rate and longest spike run under input ``DRIVE`` at every one of 64 steps."""
    with torch.no_grad():
        s = neuron(torch.full((DRIVE_T, 1, channels), DRIVE))
    return float(s.mean()), longest_run(s)


def run_one(task: str, code: str, seed: int, args, data) -> dict:
    cfg, hidden = parse_config(code)
    hidden = hidden or args.hidden
    train, test, in_features, classes = data
    torch.manual_seed(seed)
    model = Net(in_features, hidden, classes, cfg)
    fresh_c = 2 if cfg["fusion"] == "split" else 1  # split needs a forward and a backward half
    fresh_rate, fresh_run = drive_test(BPSN(fresh_c, **cfg), fresh_c)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    order = torch.Generator().manual_seed(seed)
    epoch_s, losses = [], []
    from tqdm.auto import tqdm

    bar = tqdm(
        range(args.epochs),
        desc=f"{task} {code} s{seed}",
        leave=False,
        disable=not args.progress,
        file=sys.stderr,
    )
    model.train()
    for _ in bar:
        start = time.perf_counter()
        total, count = 0.0, 0
        for idx in torch.randperm(len(train), generator=order).split(args.batch):
            x, mask, y = train.batch(idx)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x, mask)[0], y)
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        epoch_s.append(time.perf_counter() - start)
        losses.append(total / count)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    with torch.no_grad():
        logits, (s1, s2) = model(test.x, test.mask)
    trained_rate, trained_run = drive_test(model.sn1, hidden)
    return {
        "task": task,
        "config": code,
        "seed": seed,
        "test_accuracy": float((logits.argmax(-1) == test.y).float().mean()),
        "final_train_loss": losses[-1],
        "firing_rate": 0.5 * (masked_rate(s1, test.mask) + masked_rate(s2, test.mask)),
        "firing_rate_layers": [masked_rate(s1, test.mask), masked_rate(s2, test.mask)],
        "longest_run_test": max(longest_run(s1), longest_run(s2)),
        "drive_rate_fresh": fresh_rate,
        "drive_longest_run_fresh": fresh_run,
        "drive_rate_trained": trained_rate,
        "drive_longest_run_trained": trained_run,
        "epoch_time_s": statistics.fmean(epoch_s),
        "epoch_times_s": epoch_s,
        "hidden": hidden,
        "parameters": sum(p.numel() for p in model.parameters()),
        "learned": {
            "v_threshold_mean": float(model.sn1.v_threshold.detach().mean()),
            "gate_mean": float(model.sn1.gate.detach().mean()) if cfg["fusion"] == "gate" else None,
        },
    }


# ---- summary ---------------------------------------------------------------------------
def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(runs: list[dict], tasks, configs) -> list[dict]:
    rows = []
    for task in tasks:
        for code in configs:
            group = [r for r in runs if r["task"] == task and r["config"] == code]
            if not group:
                continue
            acc_m, acc_s = _mean_std([r["test_accuracy"] for r in group])
            rows.append(
                {
                    "task": task,
                    "config": code,
                    "seeds": len(group),
                    "acc_mean": acc_m,
                    "acc_std": acc_s,
                    "firing_rate": statistics.fmean(r["firing_rate"] for r in group),
                    "longest_run_test": max(r["longest_run_test"] for r in group),
                    "drive_rate_fresh": statistics.fmean(r["drive_rate_fresh"] for r in group),
                    "drive_rate_trained": statistics.fmean(r["drive_rate_trained"] for r in group),
                    "drive_longest_run_trained": max(r["drive_longest_run_trained"] for r in group),
                    # the median over all epochs of all seeds damps other jobs on a shared machine
                    "epoch_time_s": statistics.median(t for r in group for t in r["epoch_times_s"]),
                }
            )
    return rows


def table(rows: list[dict]) -> str:
    headers = [
        "task",
        "config",
        "acc % (mean +- std)",
        "rate",
        "run",
        "drive fresh",
        "drive trained",
        "drive run",
        "s/epoch",
    ]
    cells = [
        [
            r["task"],
            r["config"],
            f"{100 * r['acc_mean']:.1f} +- {100 * r['acc_std']:.1f}",
            round(r["firing_rate"], 3),
            r["longest_run_test"],
            round(r["drive_rate_fresh"], 3),
            round(r["drive_rate_trained"], 3),
            r["drive_longest_run_trained"],
            round(r["epoch_time_s"], 3),
        ]
        for r in rows
    ]
    return format_table(headers, cells)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=list(DEFAULT_CONFIGS),
        metavar="KERNEL-FUSION-RUNAWAY[-hWIDTH]",
        help="configurations (default: %(default)s)",
    )
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs per run (default: 15 for both tasks)"
    )
    parser.add_argument("--hidden", type=int, default=64, help="BPSN channels D (64)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument(
        "--drive",
        type=float,
        default=0.0,
        help="cue task: add a per-sample DC offset U(0, drive) to every "
        "channel (0: off; 2.0 left every configuration at chance in a pilot)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    parser.add_argument("--json", dest="json_path", default=DEFAULT_JSON)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


EPOCHS = {"digits": 15, "cue": 15}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for code in args.configs:  # fail before any training
        try:
            parse_config(code)
        except argparse.ArgumentTypeError as err:
            parser.error(str(err))
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be >= 1")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    epochs = {t: args.epochs if args.epochs is not None else EPOCHS[t] for t in args.tasks}
    runs = _run_all(args, epochs)
    rows = summarize(runs, args.tasks, args.configs)
    total = time.perf_counter() - start
    print()
    print(table(rows))
    print(f"\ntotal {total:.0f} s")
    report = {
        "command": " ".join(
            ["python benchmarks/bpsn_defaults.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "settings": _settings(args, epochs),
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "total_time_s": total,
        "summary": rows,
        "runs": runs,
    }
    if args.json_path:
        write_json_atomic(args.json_path, report)
        print(f"wrote {args.json_path}")
    return 0 if all(math.isfinite(r["final_train_loss"]) for r in runs) else 1


def _run_all(args: argparse.Namespace, epochs: dict[str, int]) -> list[dict]:
    """Every (task, seed, config) run, printed as it ends; ``args.epochs`` is set per task."""
    runs: list[dict] = []
    for task in args.tasks:
        args.epochs = epochs[task]
        for seed in args.seeds:
            data = make_task(task, seed, args.drive)
            for code in args.configs:
                r = run_one(task, code, seed, args, data)
                r["epochs"] = args.epochs
                runs.append(r)
                print(
                    f"{task:6s} {code:18s} seed {seed}: acc {100 * r['test_accuracy']:5.1f}%  "
                    f"rate {r['firing_rate']:.3f}  {r['epoch_time_s']:.2f} s/epoch",
                    flush=True,
                )
    return runs


def _settings(args: argparse.Namespace, epochs: dict[str, int]) -> dict:
    """The report's ``settings``: what was run, with which training settings."""
    return {
        "configs": args.configs,
        "tasks": args.tasks,
        "seeds": args.seeds,
        "epochs": epochs,
        "hidden": args.hidden,
        "batch": args.batch,
        "lr": args.lr,
        "drive": args.drive,
        "threads": args.threads,
        "drive_test": {"input": DRIVE, "T": DRIVE_T},
    }


if __name__ == "__main__":
    raise SystemExit(main())
