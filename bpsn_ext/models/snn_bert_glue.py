"""SNN-BERT on a GLUE task: the loss (with optional logit distillation), the Trainer's task
functions, evaluation over examples and the energy report of one batch.

Batches are those of `bpsn_ext.data.glue.GlueCollator`: ``input_ids`` ``[L, B]``,
``lengths`` ``[B]``, ``segment_ids`` ``[L, B]``, ``labels`` ``[B]``.

Example::

    loss_fn, metrics_fn, reduce_fn = make_task_fns("sst2")
    metrics = evaluate_model(model, tokenizer, "sst2", examples)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from bpsn_ext.core.masks import as_mask
from bpsn_ext.data.glue import GlueCollator, GlueDataset, get_task
from bpsn_ext.data.glue_metrics import glue_metrics
from bpsn_ext.models.snn_bert import SNNBert
from bpsn_ext.models.spike_rate_loss import RateReg, SpikeRates

NO_RATE_REG = RateReg()  # the regulariser off

__all__ = ["energy_report", "energy_summary", "evaluate_model", "glue_loss", "make_task_fns"]

_SUMMARY_KEYS = (
    "mac",
    "ac",
    "synaptic_energy_pJ",
    "energy_pJ",
    "ann_energy_pJ",
    "ratio",
    "ratio_total",
    "mean_output_rate",
)


def glue_loss(
    model: SNNBert,
    batch: dict,
    regression: bool,
    teacher=None,
    alpha: float = 0.5,
    temperature: float = 2.0,
    rate: RateReg = NO_RATE_REG,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, loss)`` of a batch: MSE (regression) or cross-entropy, mixed with the logit
    distillation of ``teacher`` (an `SNNBert` or a HF sequence classifier) when given, plus
    the firing-rate regulariser of the BPSN outputs when ``rate`` (a `RateReg`) is active
    (`bpsn_ext.models.spike_rate_loss`)."""
    from bpsn_ext.models.hf_bert import distillation_loss, teacher_logits

    rates = SpikeRates(model, rate.weighting) if rate.active else nullcontext()
    with rates:
        logits = model(batch["input_ids"], batch["lengths"], batch["segment_ids"])
    if regression:
        loss = F.mse_loss(logits.squeeze(-1), batch["labels"])
    else:
        loss = F.cross_entropy(logits, batch["labels"])
    if teacher is not None:
        ids = batch["input_ids"]
        if isinstance(teacher, SNNBert):  # a run of this project
            with torch.no_grad():
                t = teacher(ids, batch["lengths"], batch["segment_ids"])
        else:
            mask = as_mask(batch["lengths"], ids.shape[0], ids.shape[1], ids.device)
            t = teacher_logits(teacher, ids, mask, batch["segment_ids"])
        loss = distillation_loss(logits, t, loss, alpha=alpha, temperature=temperature)
    if rate.active:
        loss = loss + rates.penalty(rate.weight, rate.target)
    return logits, loss


def make_task_fns(
    task: str,
    teacher=None,
    alpha: float = 0.5,
    temperature: float = 2.0,
    rate: RateReg = NO_RATE_REG,
) -> tuple[Callable, Callable, Callable]:
    """``(loss_fn, metrics_fn, eval_reduce_fn)`` of ``task`` for `bpsn_ext.train.Trainer`;
    the training loss adds the firing-rate regulariser ``rate`` (a `RateReg`), the
    evaluation loss is the task's alone."""
    t = get_task(task)
    regression = t.is_regression

    def loss_fn(model, batch):
        return glue_loss(model, batch, regression, teacher, alpha, temperature, rate)[1]

    def metrics_fn(model, batch):
        logits, loss = glue_loss(model, batch, regression)
        pred = logits.squeeze(-1) if regression else logits.argmax(-1)
        return {"pred": pred.cpu(), "label": batch["labels"].cpu(), "loss": loss.item()}

    def eval_reduce_fn(outputs, sizes):
        pred = torch.cat([o["pred"] for o in outputs]).numpy()
        label = torch.cat([o["label"] for o in outputs]).numpy()
        out = glue_metrics(t.name, pred, label)
        out["loss"] = sum(o["loss"] * n for o, n in zip(outputs, sizes)) / sum(sizes)
        return out

    return loss_fn, metrics_fn, eval_reduce_fn


def evaluate_model(
    model: SNNBert,
    tokenizer,
    task: str,
    examples: Sequence,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict:
    """The task's metrics (and mean loss) of ``model`` on ``examples`` (`GlueExample`)."""
    ds = GlueDataset(examples, tokenizer, model.config.max_length)
    collate = GlueCollator(tokenizer.pad_id)
    _, metrics_fn, reduce_fn = make_task_fns(task)
    outputs, sizes = [], []
    was = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(ds), batch_size):
            batch = collate([ds[j] for j in range(i, min(i + batch_size, len(ds)))])
            batch = {k: v.to(device) for k, v in batch.items()}
            outputs.append(metrics_fn(model, batch))
            sizes.append(batch["labels"].shape[0])
    model.train(was)
    return reduce_fn(outputs, sizes)


def energy_report(model: SNNBert, dataset, collate, batch_size: int = 8):
    """The `EnergyReport` of one batch (the first ``batch_size`` samples of ``dataset``),
    counted under the model's coding."""
    batch = collate([dataset[i] for i in range(min(batch_size, len(dataset)))])
    device = next(model.parameters()).device
    ids = batch["input_ids"].to(device)
    kwargs = {"mask": batch["lengths"].to(device), "segment_ids": batch["segment_ids"].to(device)}
    with torch.no_grad():
        return model.coding.estimate(model, ids, kwargs)


def energy_summary(report) -> dict:
    """The per-sample totals of an `EnergyReport` (``*_per_sample`` for the counts and
    energies, the ratios and mean output rate as they are)."""
    per = report.per_sample()
    return {
        f"{k}_per_sample" if k.endswith(("pJ", "mac", "ac")) else k: per[k] for k in _SUMMARY_KEYS
    }
