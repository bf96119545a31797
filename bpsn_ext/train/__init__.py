"""The trainer shared by the GLUE (SNN-BERT) and LRA examples: see `trainer`."""

from bpsn_ext.train.checkpoint import (
    PREVIOUS_CHECKPOINT_NAME,
    atomic_save,
    claim_run_folder,
    load_checkpoint,
)
from bpsn_ext.train.trainer import (
    CHECKPOINT_NAME,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    TrainState,
)

__all__ = [
    "CHECKPOINT_NAME",
    "NonFiniteLossError",
    "PREVIOUS_CHECKPOINT_NAME",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "atomic_save",
    "claim_run_folder",
    "load_checkpoint",
]
