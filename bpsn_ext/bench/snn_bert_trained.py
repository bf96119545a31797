"""Trained models for ``bench snn-bert --from RUN_DIR``: the codings' models from run folders
of ``train glue``, and a batch of real text to count their energy on.

Each ``--from`` run gives the trained model of its own coding (individual, repeat or the ANN
twin); a coding without a run is built on the first run's configuration and gets its Linear,
LayerNorm and embedding weights (as in the untrained benchmark).  ``--data`` (the GLUE tree
the runs were trained on) gives the energy batch: the first samples of the runs' evaluation
split, each model reading them through its own run's tokenizer.

Example::

    models, tokenizers, info = trained_models(["runs/snn", "runs/rep", "runs/ann"])
    batches = text_batches(tokenizers, info, "runs/wordnet", batch=8)
"""

from __future__ import annotations

import torch

from bpsn_ext.models.snn_bert_coding import CODINGS

__all__ = ["SIZE_FIELDS", "text_batches", "trained_models"]

# the SNNBertConfig fields that make two runs comparable (the benchmark's sizes)
SIZE_FIELDS = ("layers", "width", "heads", "ffn_width", "max_length", "vocab_size", "attention")


def trained_models(run_dirs: list[str], device: torch.device | str = "cpu"):
    """``(models, tokenizers, info)`` by coding: the runs' trained models (train mode, dropout
    kept), the other codings built on the first run's configuration and weights; ``info``
    holds ``task``, ``eval_split``, ``config`` (the first run's) and ``runs`` (coding ->
    folder).

    Raises:
        ValueError: no run, two runs of one coding, runs of other sizes or tasks, or a
            ``pretrain`` run.
    """
    import dataclasses

    from bpsn_ext.models import SNNBert, SNNBertConfig
    from bpsn_ext.train.snn_bert_runs import read_run

    if not run_dirs:
        raise ValueError("--from needs at least one `train glue` run folder")
    models, tokenizers, runs, first = {}, {}, {}, None
    for folder in run_dirs:
        saved, tokenizer, state = read_run(folder)
        if "task" not in saved:
            raise ValueError(f"--from {folder!r}: a `pretrain` run; give a `train glue` run")
        cfg = SNNBertConfig.from_dict(saved["config"])
        if cfg.coding in runs:
            raise ValueError(
                f"--from: two runs of coding {cfg.coding!r} ({runs[cfg.coding]!r}, {folder!r})"
            )
        if first is None:
            first = (saved, cfg)
        _check_same(first, saved, cfg, folder)
        model = SNNBert(cfg)
        model.load_state_dict(state)
        models[cfg.coding], tokenizers[cfg.coding], runs[cfg.coding] = model, tokenizer, folder
    saved0, cfg0 = first
    donor = models[cfg0.coding].state_dict()
    for coding in CODINGS:
        if coding not in models:
            other = SNNBert(dataclasses.replace(cfg0, coding=coding))
            shared = {k: v for k, v in donor.items() if k in other.state_dict()}
            other.load_state_dict(shared, strict=False)
            models[coding], tokenizers[coding] = other, tokenizers[cfg0.coding]
    info = {
        "task": saved0["task"],
        "eval_split": saved0.get("eval_split", "dev"),
        "config": cfg0.to_dict(),
        "runs": runs,
    }
    return {c: m.to(device) for c, m in models.items()}, tokenizers, info


def _check_same(first, saved: dict, cfg, folder: str) -> None:
    saved0, cfg0 = first
    if saved["task"] != saved0["task"]:
        raise ValueError(
            f"--from {folder!r} was trained on {saved['task']}, the first run on {saved0['task']}"
        )
    for name in SIZE_FIELDS:
        if getattr(cfg, name) != getattr(cfg0, name):
            raise ValueError(
                f"--from {folder!r} has {name}={getattr(cfg, name)!r}, the first run "
                f"{getattr(cfg0, name)!r}: the runs must share the model size"
            )


def text_batches(tokenizers: dict, info: dict, data: str, batch: int) -> dict:
    """``{coding: (input_ids [L, B], forward kwargs)}``: the first ``batch`` samples of the
    runs' evaluation split under ``data`` (a GLUE TSV tree), through each coding's tokenizer.

    Raises:
        ValueError: the split holds no sample.
    """
    from bpsn_ext.data.glue import GlueCollator, GlueDataset, load_glue

    examples = load_glue(data, info["task"], info["eval_split"])[:batch]
    if not examples:
        raise ValueError(f"--data {data!r}: no {info['eval_split']} sample of {info['task']}")
    out = {}
    for coding, tok in tokenizers.items():
        ds = GlueDataset(examples, tok, info["config"]["max_length"])
        b = GlueCollator(tok.pad_id)([ds[i] for i in range(len(ds))])
        out[coding] = (b["input_ids"], {"mask": b["lengths"], "segment_ids": b["segment_ids"]})
    return out
