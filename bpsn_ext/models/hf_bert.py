"""Optional links to Hugging Face BERT checkpoints on local disk (never downloads).

* `load_bert_weights` copies the matching weights of a local BERT checkpoint directory
  (``save_pretrained`` output: ``model.safetensors`` or ``pytorch_model.bin``) into an
  `SNNBert`.
* `load_teacher` loads a local fine-tuned ``BertForSequenceClassification`` (or any
  ``AutoModelForSequenceClassification``) with ``local_files_only=True``.
* `distillation_loss` mixes the task loss with a logit-distillation term.

Which of these SNN-BERT used is unknown (a reconstruction, see ``docs/snn_bert.md``): all are
optional.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "load_bert_weights",
    "load_teacher",
    "distillation_loss",
    "teacher_logits",
    "bert_state_dict",
    "import_transformers",
]


@contextlib.contextmanager
def import_transformers():
    """``with import_transformers() as transformers:``: the ``transformers`` module, with
    ``torchvision`` and ``torchaudio`` hidden while inside (unless already imported).

    transformers imports them when they are installed, and a build made for another torch
    (SpikingJelly pulls torchvision in) fails at import.  BERT needs neither, and bpsn_ext
    never imports them.  Call the transformers functions you need inside the block."""
    hidden = [m for m in ("torchvision", "torchaudio") if m not in sys.modules]
    for m in hidden:
        sys.modules[m] = None  # `import m` raises ImportError; find_spec(m) is None
    try:
        try:
            import transformers
        except ImportError as exc:  # pragma: no cover
            raise ImportError("HF BERT links need the 'transformers' package") from exc
        if hidden:  # availability answers cached before we hid the modules
            utils = getattr(getattr(transformers, "utils", None), "import_utils", None)
            for name in ("is_torchvision_available", "is_torchaudio_available"):
                clear = getattr(getattr(utils, name, None), "cache_clear", None)
                if clear is not None:
                    clear()
        yield transformers
    finally:
        for m in hidden:
            if m in sys.modules and sys.modules[m] is None:
                del sys.modules[m]


_MAP = [
    (r"embeddings\.word_embeddings\.weight", "embeddings.tokens.weight"),
    (r"embeddings\.position_embeddings\.weight", "embeddings.positions.weight"),
    (r"embeddings\.token_type_embeddings\.weight", "embeddings.segments.weight"),
    (r"embeddings\.LayerNorm\.(weight|bias)", "embeddings.norm.{0}"),
    (r"encoder\.layer\.(\d+)\.attention\.self\.query\.(weight|bias)", "blocks.{0}.attn.q.{1}"),
    (r"encoder\.layer\.(\d+)\.attention\.self\.key\.(weight|bias)", "blocks.{0}.attn.k.{1}"),
    (r"encoder\.layer\.(\d+)\.attention\.self\.value\.(weight|bias)", "blocks.{0}.attn.v.{1}"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", "blocks.{0}.attn.proj.{1}"),
    (
        r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(weight|bias)",
        "blocks.{0}.attn.proj_norm.{1}",
    ),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", "blocks.{0}.fc1.{1}"),
    (r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", "blocks.{0}.fc2.{1}"),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(weight|bias)", "blocks.{0}.fc2_norm.{1}"),
    (r"classifier\.(weight|bias)", "classifier.{0}"),
]


def bert_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a local checkpoint directory (or a single weights file)."""
    path = os.fspath(path)
    files = (
        [path]
        if os.path.isfile(path)
        else [os.path.join(path, n) for n in ("model.safetensors", "pytorch_model.bin")]
    )
    for f in files:
        if not os.path.isfile(f):
            continue
        if f.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(f)
        return torch.load(f, map_location="cpu", weights_only=True)
    raise FileNotFoundError(
        f"no BERT weights at {os.path.abspath(path)!r}: expected a directory written by "
        "save_pretrained (model.safetensors or pytorch_model.bin) or one of these files"
    )


def _target(name: str) -> str | None:
    name = name[5:] if name.startswith("bert.") else name
    # older checkpoints (e.g. the original bert-base-uncased weights) name LayerNorm
    # parameters gamma/beta; transformers renames them to weight/bias on load
    name = re.sub(r"(LayerNorm)\.gamma$", r"\1.weight", name)
    name = re.sub(r"(LayerNorm)\.beta$", r"\1.bias", name)
    for pattern, target in _MAP:
        match = re.fullmatch(pattern, name)
        if match:
            return target.format(*match.groups())
    return None


def load_bert_weights(
    model: nn.Module, path: str | os.PathLike, *, strict_shapes: bool = False
) -> dict[str, list]:
    """Copy the weights of a local HF BERT checkpoint into ``model`` (an ``SNNBert``).

    Embeddings (the position table is cut to ``max_length``; the token table needs the same
    vocabulary), Q/K/V/output projections, FFN linears and LayerNorms (BERT's post-residual
    LayerNorms go to the LayerNorm after the matching projection) and, for a sequence
    classification checkpoint with the same number of labels, the classifier.  Returns
    ``{"copied": [names], "skipped": [(hf_name, reason)]}``; ``strict_shapes=True`` raises on
    a shape mismatch instead of skipping.  Raises if nothing could be copied.
    """
    source = bert_state_dict(path)
    own = model.state_dict()
    copied, skipped = [], []
    with torch.no_grad():
        for name, tensor in source.items():
            target = _target(name)
            if target is None or target not in own:
                skipped.append((name, "no counterpart in SNNBert"))
                continue
            dest = own[target]
            if target == "embeddings.positions.weight" and tensor.shape[0] >= dest.shape[0]:
                tensor = tensor[: dest.shape[0]]
            if tensor.shape != dest.shape:
                reason = f"shape {list(tensor.shape)} != {list(dest.shape)} ({target})"
                if strict_shapes:
                    raise ValueError(f"{name}: {reason}")
                skipped.append((name, reason))
                continue
            dest.copy_(tensor.to(dest.dtype))
            copied.append(target)
    if not copied:
        raise ValueError(
            f"no weight of {os.fspath(path)!r} matches the model (skipped: "
            f"{[s[0] for s in skipped[:5]]}...); is it a BERT checkpoint?"
        )
    return {"copied": copied, "skipped": skipped}


def load_teacher(path: str | os.PathLike) -> nn.Module:
    """A local fine-tuned sequence-classification model (``local_files_only=True``), in eval
    mode with gradients off.  Needs the ``transformers`` package."""
    path = os.fspath(path)
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(
            f"no teacher at {os.path.abspath(path)!r}: expected a "
            "save_pretrained directory with config.json (never downloaded)"
        )
    with import_transformers() as transformers:
        teacher = transformers.AutoModelForSequenceClassification.from_pretrained(
            path, local_files_only=True
        )
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def teacher_logits(
    teacher: nn.Module,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    segment_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The teacher's logits for time-first ``[L, B]`` inputs (HF models are batch-first)."""
    with torch.no_grad():
        out = teacher(
            input_ids=input_ids.t(),
            attention_mask=mask.t().long(),
            token_type_ids=None if segment_ids is None else segment_ids.t(),
        )
    return out.logits if hasattr(out, "logits") else out[0]


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    task_loss: torch.Tensor,
    *,
    alpha: float = 0.5,
    temperature: float = 2.0,
) -> torch.Tensor:
    """``(1 - alpha) * task_loss + alpha * KD``; KD is ``T^2 KL(softmax(t/T) || softmax(s/T))``
    for classification and the MSE between the outputs for regression (one output)."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"student logits {list(student.shape)} and teacher logits "
            f"{list(teacher.shape)} differ: same task and number of labels?"
        )
    if not 0.0 <= alpha <= 1.0 or not temperature > 0:
        raise ValueError(f"need 0 <= alpha <= 1 and temperature > 0, got {alpha}, {temperature}")
    if student.shape[-1] == 1:
        kd = F.mse_loss(student, teacher)
    else:
        kd = (
            F.kl_div(
                F.log_softmax(student / temperature, -1),
                F.log_softmax(teacher / temperature, -1),
                log_target=True,
                reduction="batchmean",
            )
            * temperature**2
        )
    return (1 - alpha) * task_loss + alpha * kd
