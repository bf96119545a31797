"""The typed settings of an LRA run (``train lra``): `LRARunConfig`, from a task preset
completed by explicit values, written to and read back from ``run_config.json``.

Model and optimiser defaults come from `bpsn_ext.models.lra_classifier.LRA_PRESETS` (S4D LRA
settings; ``digits`` a small CPU preset, ``mnist``/``fashion-mnist`` the s4 ``example.py``
settings).  Settings that do not go together raise `ConflictingArgumentsError` (a
``ValueError``) naming the fields, which a command spells as its flags.

Example::

    cfg = LRARunConfig.from_preset("digits", layer="gsu", epochs=2)
    td = load_task(cfg.task, **cfg.data_kwargs())
    model = cfg.build_model(td)
    trainer = Trainer(model, td.train, td.val, loss_fn, metrics_fn, cfg.train_config())
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F

from bpsn_ext.data.lra_release import TaskData, check_sources
from bpsn_ext.models.lra_classifier import (
    LRAClassifier,
    LRADualClassifier,
    preset_values,
)
from bpsn_ext.optim import ssm_param_groups
from bpsn_ext.train.trainer import TrainConfig
from bpsn_ext.util.errors import ConflictingArgumentsError

__all__ = ["DATA_FIELDS", "DIGITS_PRESET", "TASK_PRESET", "LRARunConfig", "task_fns"]

#: The preset of each task (``pathfinder`` at resolution 128 takes ``pathx``).
TASK_PRESET = {
    "digits": "digits",
    "mnist": "sequential",
    "fashion-mnist": "sequential",
    "listops": "listops",
    "pathfinder": "pathfinder",
    "text": "text",
    "retrieval": "retrieval",
    "image": "image",
}
#: A small CPU preset for the 8x8 digits.
DIGITS_PRESET = dict(
    n_layers=2,
    d_model=64,
    norm="batch",
    prenorm=False,
    dropout=0.0,
    lr=0.01,
    batch_size=64,
    epochs=20,
    weight_decay=0.01,
)
#: The fields that choose the data (`bpsn_ext.data.lra_release.load_task`'s arguments).
DATA_FIELDS = (
    "task",
    "data",
    "hf",
    "generate",
    "seed",
    "n_train",
    "n_val",
    "n_test",
    "min_length",
    "max_length",
    "max_depth",
    "max_args",
    "contour_length",
    "resolution",
    "permute",
    "permutation_seed",
    "truncate",
    "limit_train",
    "limit_eval",
)
_SSM_LAYERS = ("binary_s4d", "s4d", "gsu", "s5")


@dataclass(frozen=True)
class LRARunConfig:
    """Data, model and training settings of one LRA run; `to_dict` is ``run_config.json``.

    Data fields (`DATA_FIELDS`; ``None``: `load_task`'s default) choose and cut the data;
    model fields go to `LRAClassifier` (``dt_min``/``dt_max``, ``bidirectional``,
    ``bidirectional_convention`` and ``surrogate`` to its sequence layers); training fields
    make the `TrainConfig` (the SSM parameters train at ``min(ssm_lr, lr)``, no decay).
    """

    task: str
    preset: str
    # model
    layer: str = "binary_s4d"
    n_layers: int = 4
    d_model: int = 128
    norm: str = "layer"
    prenorm: bool = False
    dropout: float = 0.0
    d_state: int = 64
    dt_min: float = 0.001
    dt_max: float = 0.1
    bidirectional: bool = False
    bidirectional_convention: str = "lag0"
    surrogate: str | None = None
    s5_output: str = "glu"
    gsu_grad_mode: str = "default"
    # data
    data: str | None = None
    hf: str | None = None
    generate: bool = False
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    max_depth: int | None = None
    max_args: int | None = None
    contour_length: int | None = None
    resolution: int | None = None
    permute: str | None = None
    permutation_seed: int | None = None
    truncate: int | None = None
    limit_train: int | None = None
    limit_eval: int | None = None
    # training
    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 0.0
    ssm_lr: float = 0.001
    scheduler: str = "cosine"
    warmup_steps: int = 0
    grad_clip: float | None = None
    seed: int = 0
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    resume: bool = False
    overwrite: bool = False
    metrics_json: str | None = None
    energy_samples: int = 64
    threads: int | None = None
    device: str | None = None
    collective_timeout: float = 600.0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.resume and not self.checkpoint_dir:
            raise ConflictingArgumentsError("{resume:True} needs {checkpoint_dir:DIR}")
        self.layer_options()  # refuses layer settings that do not fit the layer

    @classmethod
    def from_preset(cls, task: str, **values) -> LRARunConfig:
        """The preset of ``task`` (`TASK_PRESET`, or ``values["preset"]``: an `LRA_PRESETS` or
        `PAPER_PRESETS` name) completed by ``values`` (any field);
        ``data`` is made absolute (a stored run may be evaluated from another folder)."""
        if task not in TASK_PRESET:
            raise ValueError(f"task must be one of {tuple(TASK_PRESET)}, got {task!r}")
        name = values.pop("preset", None)
        if name is None:
            name = TASK_PRESET[task]
            if task == "pathfinder" and values.get("resolution") == 128:
                name = "pathx"
        # a paper preset of another task is refused; `preset_values` drops the model's
        # max_length (not ListOps' max_length)
        preset = dict(DIGITS_PRESET) if name == "digits" else preset_values(name, task)
        if values.get("data"):
            values["data"] = os.path.abspath(values["data"])
        return cls(task=task, preset=name, **{**preset, **values})

    @classmethod
    def from_dict(cls, values: dict) -> LRARunConfig:
        """Read back `to_dict` (``run_config.json``); an unknown key raises ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown LRA run settings {unknown}")
        if values.get("layer") == "s5" and "s5_output" not in values:
            values = {**values, "s5_output": "none"}  # a run from before the option existed
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **values) -> LRARunConfig:
        return dataclasses.replace(self, **values)

    def check_sources(self) -> None:
        """Refuse data sources the task does not read (`check_sources`), before any work."""
        check_sources(
            self.task,
            data=self.data,
            hf=self.hf,
            generate=self.generate,
            permute=self.permute,
        )

    def data_kwargs(self) -> dict:
        """`load_task`'s keyword arguments (the data fields that are set)."""
        fields = (k for k in DATA_FIELDS if k != "task")
        return {k: getattr(self, k) for k in fields if getattr(self, k) is not None}

    def layer_options(self) -> dict:
        """The sequence layer's options (``layer_options`` of `LRAClassifier`)."""
        opts: dict = {}
        if self.layer in _SSM_LAYERS:
            opts.update(dt_min=float(self.dt_min), dt_max=float(self.dt_max))
        if self.bidirectional:
            if self.layer not in _SSM_LAYERS:
                raise ConflictingArgumentsError(
                    "{bidirectional:True} applies to binary_s4d, s4d, gsu and s5, not "
                    f"{{layer:{self.layer}}}"
                )
            opts["bidirectional"] = True
            if self.layer != "s5":
                opts["bidirectional_convention"] = self.bidirectional_convention
        if self.bidirectional_convention != "lag0" and (
            not self.bidirectional or self.layer == "s5"
        ):
            raise ConflictingArgumentsError(
                "{bidirectional_convention:s4} applies to {bidirectional:True} with binary_s4d, "
                "s4d or gsu"
            )
        if self.surrogate:
            if self.layer == "s4d":
                raise ConflictingArgumentsError(
                    "{surrogate:NAME} applies to the spiking layers, not {layer:s4d}"
                )
            opts["surrogate"] = self.surrogate
        if self.layer == "s5":
            opts["output"] = self.s5_output
        elif self.s5_output != "glu":
            raise ConflictingArgumentsError(
                f"{{s5_output:{self.s5_output}}} applies to {{layer:s5}}, "
                f"not {{layer:{self.layer}}}"
            )
        if self.layer == "gsu":
            opts["grad_mode"] = self.gsu_grad_mode
        elif self.gsu_grad_mode != "default":
            raise ConflictingArgumentsError(
                f"{{gsu_grad_mode:{self.gsu_grad_mode}}} applies to {{layer:gsu}}, "
                f"not {{layer:{self.layer}}}"
            )
        return opts

    def build_model(self, td: TaskData) -> LRAClassifier:
        """The classifier for the task data ``td`` (`LRADualClassifier` for a two-input task)."""
        cls = LRADualClassifier if td.dual else LRAClassifier
        return cls(
            td.d_input,
            td.n_classes,
            layer=self.layer,
            d_model=int(self.d_model),
            n_layers=int(self.n_layers),
            d_state=int(self.d_state),
            dropout=float(self.dropout),
            prenorm=bool(self.prenorm),
            norm=self.norm,
            vocab_size=td.vocab_size,
            layer_options=self.layer_options(),
        )

    def train_config(self) -> TrainConfig:
        """The `TrainConfig`; the SSM parameters train at ``min(ssm_lr, lr)`` without decay."""
        ssm_lr = float(self.ssm_lr)

        def groups(m, lr, weight_decay):
            return ssm_param_groups(m, lr=lr, weight_decay=weight_decay, ssm_lr=ssm_lr)

        return TrainConfig(
            epochs=int(self.epochs),
            batch_size=int(self.batch_size),
            lr=float(self.lr),
            weight_decay=float(self.weight_decay),
            seed=int(self.seed),
            grad_clip=self.grad_clip,
            checkpoint_dir=self.checkpoint_dir,
            checkpoint_every=int(self.checkpoint_every),
            device=self.device,
            param_groups=groups,
            scheduler=self.scheduler,
            warmup_steps=int(self.warmup_steps),
            progress=bool(self.progress),
            collective_timeout_s=float(self.collective_timeout),
        )


def _forward(model, batch, dual: bool):
    if dual:
        x1, l1, x2, l2, y = batch
        return model(x1, l1, x2, l2), y
    x, lengths, y = batch
    return model(x, lengths), y


def task_fns(dual: bool) -> tuple[Callable, Callable]:
    """``(loss_fn, metrics_fn)`` for `Trainer`: cross-entropy, and loss and accuracy.

    Batches are ``(x, lengths, y)``, or ``(x1, l1, x2, l2, y)`` for a ``dual`` task.
    """

    def loss_fn(model, batch):
        logits, y = _forward(model, batch, dual)
        return F.cross_entropy(logits, y)

    def metrics_fn(model, batch):
        logits, y = _forward(model, batch, dual)
        return {
            "loss": F.cross_entropy(logits, y).item(),
            "accuracy": (logits.argmax(-1) == y).float().mean().item(),
        }

    return loss_fn, metrics_fn
