"""The standard GLUE metric of each task (plain numpy; checked against sklearn / scipy in tests).

| task | metrics (the first is the headline) |
|---|---|
| CoLA | Matthews correlation |
| SST-2, MNLI, QNLI, RTE | accuracy |
| MRPC, QQP | F1 (positive class 1) and accuracy |
| STS-B | Pearson and Spearman correlation (and their mean) |
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "accuracy",
    "f1_binary",
    "matthews",
    "pearson",
    "spearman",
    "glue_metrics",
    "TASK_METRICS",
]

TASK_METRICS = {
    "cola": ("matthews",),
    "sst2": ("accuracy",),
    "mrpc": ("f1", "accuracy"),
    "qqp": ("f1", "accuracy"),
    "stsb": ("pearson", "spearman"),
    "mnli": ("accuracy",),
    "mnli_mismatched": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
}


def _pair(pred, label) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(pred).reshape(-1), np.asarray(label).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"predictions ({p.size}) and labels ({y.size}) differ in number")
    if p.size == 0:
        raise ValueError("no predictions to score")
    return p, y


def accuracy(pred, label) -> float:
    p, y = _pair(pred, label)
    return float(np.mean(p == y))


def f1_binary(pred, label) -> float:
    """F1 of the positive class 1 (0 when there is no true or predicted positive)."""
    p, y = _pair(pred, label)
    tp = float(np.sum((p == 1) & (y == 1)))
    fp = float(np.sum((p == 1) & (y != 1)))
    fn = float(np.sum((p != 1) & (y == 1)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews(pred, label) -> float:
    """Matthews correlation coefficient (binary or multi-class; 0 when undefined)."""
    p, y = _pair(pred, label)
    classes = np.union1d(p, y)
    c = np.array([[np.sum((y == a) & (p == b)) for b in classes] for a in classes], float)
    t, q, n = c.sum(1), c.sum(0), c.sum()
    cov = np.trace(c) * n - t @ q
    den = np.sqrt((n * n - q @ q) * (n * n - t @ t))
    return 0.0 if den == 0 else float(cov / den)


def pearson(pred, label) -> float:
    p, y = _pair(pred, label)
    p, y = p.astype(float) - p.mean(), y.astype(float) - y.mean()
    den = np.sqrt((p * p).sum() * (y * y).sum())
    return 0.0 if den == 0 else float((p * y).sum() / den)


def _rank(x: np.ndarray) -> np.ndarray:
    """Ranks with ties given their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), float)
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(pred, label) -> float:
    p, y = _pair(pred, label)
    return pearson(_rank(p.astype(float)), _rank(y.astype(float)))


def glue_metrics(task: str, pred, label) -> dict[str, float]:
    """The task's metrics; for STS-B also ``pearson_spearman`` (their mean, GLUE's score)."""
    if task not in TASK_METRICS:
        raise ValueError(f"unknown GLUE task {task!r}; expected one of {sorted(TASK_METRICS)}")
    fns = {
        "accuracy": accuracy,
        "f1": f1_binary,
        "matthews": matthews,
        "pearson": pearson,
        "spearman": spearman,
    }
    out = {name: fns[name](pred, label) for name in TASK_METRICS[task]}
    if task == "stsb":
        out["pearson_spearman"] = (out["pearson"] + out["spearman"]) / 2
    return out
