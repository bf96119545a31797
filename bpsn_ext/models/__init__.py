"""Example models built from bpsn_ext layers: LRA / sequential-image classifiers, SNN-BERT."""

from bpsn_ext.models.lra_classifier import (
    LAYERS,
    LRA_PRESETS,
    LRAClassifier,
    LRADualClassifier,
    LRAPreset,
    build_lra_model,
)
from bpsn_ext.models.snn_bert import SNNBert, SNNBertConfig
from bpsn_ext.models.snn_bert_coding import MultiStepLIF

__all__ = [
    "LRAClassifier",
    "LRADualClassifier",
    "LAYERS",
    "LRA_PRESETS",
    "LRAPreset",
    "build_lra_model",
    "SNNBert",
    "SNNBertConfig",
    "MultiStepLIF",
]
