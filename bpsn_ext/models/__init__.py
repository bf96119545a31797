"""Example models built from bpsn_ext layers."""

from bpsn_ext.models.lra import LAYERS, LRAClassifier

__all__ = ["LRAClassifier", "LAYERS"]
