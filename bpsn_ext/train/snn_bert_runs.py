"""SNN-BERT run folders: what ``train glue`` and ``pretrain`` write, and reading them back.

A run folder holds ``last.pt`` (the trainer's checkpoint), ``model.json`` (the task or
``"kind": "mlm"``, and the `SNNBertConfig`), ``tokenizer.json`` and, after ``train glue``,
``energy.json``.  `load_trained` rebuilds a fine-tuned model from one.

Example::

    model, tokenizer, task = load_trained("runs/sst2")
"""

from __future__ import annotations

import os

import torch

from bpsn_ext.data.tokenizer import WordPieceTokenizer
from bpsn_ext.models import SNNBert, SNNBertConfig
from bpsn_ext.models.size_limits import read_model_file
from bpsn_ext.train.checkpoint import load_checkpoint
from bpsn_ext.train.trainer import CHECKPOINT_NAME

__all__ = [
    "ENERGY_FILE",
    "MODEL_FILE",
    "TOKENIZER_FILE",
    "energy_hook",
    "is_run_dir",
    "load_teacher",
    "load_trained",
    "process_rank",
    "read_run",
]

MODEL_FILE, TOKENIZER_FILE, ENERGY_FILE = "model.json", "tokenizer.json", "energy.json"


def energy_hook(eval_ds, collate, out: str):
    """The Trainer's final hook of ``train glue``: the energy report of one dev batch (8
    samples), written to ``OUT/energy.json``; returns its per-sample summary."""
    from bpsn_ext.models.snn_bert_glue import energy_report, energy_summary

    def energy_fn(model):
        report = energy_report(model, eval_ds, collate)
        report.to_json(os.path.join(out, ENERGY_FILE))
        return energy_summary(report)

    return energy_fn


def process_rank() -> int:
    """This process's rank: from an initialised process group, else torchrun's ``RANK``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_run_dir(path: str | None) -> bool:
    """Whether ``path`` is a run folder of this project (``model.json`` + ``tokenizer.json``
    + ``last.pt``), as opposed to an HF checkpoint folder."""
    return bool(path) and all(
        os.path.isfile(os.path.join(path, f)) for f in (MODEL_FILE, TOKENIZER_FILE, CHECKPOINT_NAME)
    )


def read_run(folder: str) -> tuple[dict, WordPieceTokenizer, dict]:
    """``(saved model.json, tokenizer, model state dict)`` of a run folder."""
    saved = read_model_file(os.path.join(folder, MODEL_FILE))
    tokenizer = WordPieceTokenizer.load(os.path.join(folder, TOKENIZER_FILE))
    state = load_checkpoint(os.path.join(folder, CHECKPOINT_NAME), map_location="cpu")["model"]
    return saved, tokenizer, state


def load_trained(
    checkpoint: str, device: str | torch.device = "cpu"
) -> tuple[SNNBert, WordPieceTokenizer, str]:
    """``(model, tokenizer, task_name)`` from a ``train glue`` run folder or its ``last.pt``;
    the model is in eval mode on ``device``.

    Raises:
        FileNotFoundError: a file of the run folder is missing.
        ValueError: the folder is a ``pretrain`` run (no task).
    """
    folder = checkpoint if os.path.isdir(checkpoint) else os.path.dirname(checkpoint) or "."
    ckpt = os.path.join(checkpoint, CHECKPOINT_NAME) if os.path.isdir(checkpoint) else checkpoint
    for p in (ckpt, os.path.join(folder, MODEL_FILE), os.path.join(folder, TOKENIZER_FILE)):
        if not os.path.isfile(p):
            raise FileNotFoundError(
                f"{os.path.abspath(p)!r} not found: the checkpoint must be a "
                "`bpsn-ext train glue` output folder (or its last.pt)"
            )
    saved = read_model_file(os.path.join(folder, MODEL_FILE))
    if "task" not in saved:
        raise ValueError(
            f"{os.path.abspath(folder)!r} is not a `train glue` run (a `pretrain` "
            "run? fine-tune it with `train glue --init-from` first)"
        )
    model = SNNBert(SNNBertConfig.from_dict(saved["config"]))
    model.load_state_dict(load_checkpoint(ckpt, map_location=device)["model"])
    model.to(device).eval()
    return model, WordPieceTokenizer.load(os.path.join(folder, TOKENIZER_FILE)), saved["task"]


def load_teacher(path: str, task: str, tokenizer: WordPieceTokenizer) -> torch.nn.Module:
    """A frozen distillation teacher: a ``train glue`` run of ``task`` whose vocabulary is
    that of ``tokenizer``, or a local HF sequence classifier folder.

    Raises:
        ValueError: the run was trained on another task, or has another vocabulary.
    """
    if not is_run_dir(path):
        from bpsn_ext.models.hf_bert import load_teacher as load_hf_teacher

        return load_hf_teacher(path)
    teacher, teacher_tok, teacher_task = load_trained(path)
    if teacher_task != task:
        raise ValueError(f"the teacher {path!r} was trained on {teacher_task}, not {task}")
    if teacher_tok.tokenizer.get_vocab() != tokenizer.tokenizer.get_vocab():
        raise ValueError(
            f"the teacher {path!r} has another vocabulary than the student: use the "
            "teacher's tokenizer or the same vocabulary"
        )
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
