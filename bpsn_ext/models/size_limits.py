"""Size checks of stored model and run settings, before anything is allocated.

A ``model.json`` or ``run_config.json`` is read back to rebuild a model; a damaged or hostile
one (width 2^22, 10^7 layers) would allocate until the process is killed.  These functions
estimate the parameter count from the settings alone (Python integers, no overflow) and
refuse more than `MAX_PARAMETERS`, naming the file and the settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_PARAMETERS",
    "MAX_GENERATED_SAMPLES",
    "snn_bert_parameters",
    "lra_parameters",
    "check_snn_bert_size",
    "check_lra_size",
    "read_model_file",
]

MAX_PARAMETERS = 2**31
"""The most parameters a model rebuilt from settings may have (8 GiB in float32)."""
MAX_GENERATED_SAMPLES = 10**7
"""The most samples a stored run may ask a generator for."""


def _int(cfg: Mapping[str, Any], key: str, default: int = 0) -> int:
    """``cfg[key]`` when it is an int (else ``default``: the model's own checks refuse it)."""
    value = cfg.get(key, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def snn_bert_parameters(cfg: Mapping[str, Any]) -> int:
    """About the parameter count of `bpsn_ext.models.SNNBert` with the settings ``cfg``
    (embeddings, attention, FFN and classifier weights)."""
    width, ffn = _int(cfg, "width"), _int(cfg, "ffn_width")
    embed = _int(cfg, "vocab_size") + _int(cfg, "max_length") + _int(cfg, "type_vocab_size", 2)
    per_layer = 4 * width * width + 2 * width * ffn + 8 * width + ffn
    return embed * width + _int(cfg, "layers") * per_layer + width * (_int(cfg, "num_labels") + 1)


def lra_parameters(cfg: Mapping[str, Any]) -> int:
    """About the parameter count of an `LRAClassifier` with the settings ``cfg`` (a vocabulary
    of at most 2^16 tokens; per block an SSM of ``d_state`` and the output projections)."""
    d, n = _int(cfg, "d_model"), _int(cfg, "d_state")
    per_layer = 4 * d * d + 4 * d * n + 8 * d
    return 2**16 * d + _int(cfg, "n_layers") * per_layer


def _refuse(source: str, n: int, settings: str) -> None:
    if n > MAX_PARAMETERS:
        raise ValueError(
            f"{source}: {settings} makes a model of about {n:.3g} parameters, more than the "
            f"{MAX_PARAMETERS} this program builds; the settings are damaged or not from it"
        )


def check_snn_bert_size(cfg: Mapping[str, Any], source: str) -> None:
    """Refuse SNN-BERT settings (``model.json``'s ``config``) of more than `MAX_PARAMETERS`."""
    keys = ("vocab_size", "width", "layers", "ffn_width", "max_length")
    _refuse(source, snn_bert_parameters(cfg), ", ".join(f"{k} {cfg.get(k)}" for k in keys))


def check_lra_size(cfg: Mapping[str, Any], source: str) -> None:
    """Refuse LRA run settings whose model has more than `MAX_PARAMETERS`, or that ask a
    generator for more than `MAX_GENERATED_SAMPLES` samples."""
    keys = ("d_model", "n_layers", "d_state")
    _refuse(source, lra_parameters(cfg), ", ".join(f"{k} {cfg.get(k)}" for k in keys))
    if cfg.get("generate"):
        total = sum(_int(cfg, k) for k in ("n_train", "n_val", "n_test"))
        if total > MAX_GENERATED_SAMPLES:
            raise ValueError(
                f"{source}: n_train + n_val + n_test = {total} generated samples, more than "
                f"{MAX_GENERATED_SAMPLES}; the settings are damaged or not from this program"
            )


def read_model_file(path: str | os.PathLike) -> dict:
    """A run's ``model.json`` (``{"config": {...}, ...}``), read with
    `bpsn_ext.util.files.read_json` and size-checked (`check_snn_bert_size`); a file of
    another shape raises ValueError naming it."""
    from bpsn_ext.util.files import read_json

    path = os.fspath(path)
    saved = read_json(path)
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise ValueError(f"{path}: expected a JSON object with a 'config' object (a model.json)")
    check_snn_bert_size(saved["config"], path)
    return saved
