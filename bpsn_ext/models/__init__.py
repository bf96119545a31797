"""Example models built from bpsn_ext layers."""

from bpsn_ext.models.lra import LAYERS, LRAClassifier
from bpsn_ext.models.snn_bert import SNNBert, SNNBertConfig
from bpsn_ext.models.spiking_attention import MultiStepLIF

__all__ = ["LRAClassifier", "LAYERS", "SNNBert", "SNNBertConfig", "MultiStepLIF"]
