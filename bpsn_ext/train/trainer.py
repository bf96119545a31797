"""One small trainer for the GLUE (SNN-BERT) and LRA examples.

tqdm progress, atomic checkpoints, exact mid-epoch resume, metrics JSON, an energy-report hook,
and DistributedDataParallel under ``torchrun`` (gloo on CPU, nccl on GPU), where every BatchNorm
becomes a ``GlobalBatchNorm`` (``bpsn_ext.train.sync_norm``) (statistics of the global batch).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, default_collate
from tqdm.auto import tqdm

from bpsn_ext.train.checkpoint import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    PREVIOUS_CHECKPOINT_NAME,
    atomic_save,
    get_rng_state,
    load_checkpoint,
    set_rng_state,
)
from bpsn_ext.train.collectives import collective_errors, timeout_of
from bpsn_ext.train.devices import check_device
from bpsn_ext.train.run_folder import check_counters
from bpsn_ext.train.sync_norm import convert_batch_norms
from bpsn_ext.util.arguments import check_int
from bpsn_ext.util.files import write_json_atomic

__all__ = ["TrainConfig", "Trainer", "TrainState", "NonFiniteLossError", "CHECKPOINT_NAME"]

log = logging.getLogger(__name__)
MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's seeds are 32-bit


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclasses.dataclass
class TrainConfig:
    """Settings of `Trainer`.

    ``batch_size`` is the *global* batch: under ``torchrun`` each of the ``world_size`` ranks
    takes ``batch_size // world_size`` samples of it.  ``checkpoint_every`` counts optimizer
    steps (0: only at the end of each epoch); without ``checkpoint_dir`` nothing is written.
    ``param_groups(model, lr=..., weight_decay=...)`` builds the optimizer's groups, e.g.
    `bpsn_ext.ssm_param_groups`.  ``scheduler``: ``"constant"`` or ``"cosine"`` (to
    ``min_lr_ratio * lr``), both after ``warmup_steps`` of linear warm-up.
    ``collective_timeout_s``: under ``torchrun``, how long a rank waits for the others in a
    collective operation before the run stops with `CollectiveTimeoutError` (10 minutes).
    """

    epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    grad_clip: float | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    log_every: int = 10
    device: str | None = None
    optimizer: str = "adamw"
    momentum: float = 0.9
    param_groups: Callable[..., Any] | None = None
    scheduler: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    eval_batch_size: int | None = None
    num_workers: int = 0
    progress: bool = True
    check_finite: bool = True
    collective_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("checkpoint_every", "log_every", "warmup_steps", "num_workers"):
            check_int(name, getattr(self, name), minimum=0)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite float > 0, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")
        timeout_of(self.collective_timeout_s)  # > 0
        check_device(self.device)
        check_int("seed", self.seed, minimum=0)
        if self.seed > MAX_SEED:
            raise ValueError(f"seed must be at most {MAX_SEED} (2^32 - 1), got {self.seed}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.scheduler not in ("constant", "cosine"):
            raise ValueError(f"scheduler must be 'constant' or 'cosine', got {self.scheduler!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1 or None, got {self.eval_batch_size}")

    def to_dict(self) -> dict:
        """JSON-friendly copy (callables become their qualified names)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if callable(value):
                value = getattr(value, "__qualname__", repr(value))
            out[f.name] = value
        return out


@dataclasses.dataclass
class TrainState:
    """Where training stands; ``step_in_epoch`` batches of ``epoch`` (0-based) are done."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    loss: float = float("nan")
    loss_sum: float = 0.0
    loss_count: int = 0
    history: list = dataclasses.field(default_factory=list)


def _dist_world() -> tuple[int, int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0))
    return 1, 0, 0


def _check_arguments(model: Any, train_dataset: Any, eval_dataset: Any, config: Any) -> None:
    """The `Trainer`'s argument checks: a module, a `TrainConfig`, no empty dataset."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if len(train_dataset) == 0:
        raise ValueError("train_dataset is empty: nothing to train on")
    if eval_dataset is not None and len(eval_dataset) == 0:
        raise ValueError("eval_dataset is empty: pass None to skip evaluation")


def _check_batch_split(batch_size: int, world_size: int) -> None:
    """The global batch must split evenly over the ranks."""
    if batch_size % world_size:
        raise ValueError(
            f"batch_size={batch_size} (global) is not divisible by the world size "
            f"{world_size}; use a multiple of {world_size}"
        )


def _to_float(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value


class Trainer:
    """Train ``model`` on a map-style ``train_dataset`` (``len`` and ``__getitem__``).

    - ``loss_fn(model, batch) -> Tensor``: the *mean* loss of the (local) batch; ``model`` is
      the DDP wrapper under ``torchrun``, so call it rather than its ``.module``.
    - ``metrics_fn(model, batch) -> dict``: per-batch metrics (means) on ``eval_dataset``;
      `evaluate` averages them weighted by batch size, or hands the list of per-batch
      dicts and sizes to ``eval_reduce_fn(outputs, sizes) -> dict`` when given (for metrics that
      do not decompose, such as Matthews correlation: return predictions from ``metrics_fn``).
    - ``reset_fn(model)``: called after every batch (e.g. SpikingJelly ``functional.reset_net``).
    - ``energy_fn(model) -> dict``: called once at the end (rank 0); stored under ``"energy"``.
    - ``callbacks``: ``fn(trainer)`` after every optimizer step; ``trainer.state`` says where.
    """

    def __init__(
        self,
        model: nn.Module,
        train_dataset: Any,
        eval_dataset: Any,
        loss_fn: Callable[[nn.Module, Any], torch.Tensor],
        metrics_fn: Callable[[nn.Module, Any], Mapping[str, Any]] | None,
        config: TrainConfig,
        *,
        reset_fn: Callable[[nn.Module], Any] | None = None,
        collate_fn: Callable[[list], Any] | None = None,
        energy_fn: Callable[[nn.Module], Mapping[str, Any]] | None = None,
        eval_reduce_fn: Callable[[list, list], Mapping[str, Any]] | None = None,
        callbacks: Sequence[Callable[[Trainer], Any]] = (),
    ) -> None:
        _check_arguments(model, train_dataset, eval_dataset, config)
        self.config = config
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.loss_fn = loss_fn
        self.metrics_fn = metrics_fn
        self.reset_fn = reset_fn
        self.collate_fn = collate_fn or default_collate
        self.energy_fn = energy_fn
        self.eval_reduce_fn = eval_reduce_fn
        self.callbacks = list(callbacks)
        self._own_process_group = self._maybe_init_distributed()
        self.world_size, self.rank, local_rank = _dist_world()
        _check_batch_split(config.batch_size, self.world_size)
        self.device = self._pick_device(local_rank)
        self.model, self.ddp_model = self._place_model(model)
        self.batches_per_epoch = len(self._global_batches(0))
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"train_dataset has {len(train_dataset)} samples: too few for a world size of "
                f"{self.world_size}"
            )
        self.total_steps = self.batches_per_epoch * config.epochs
        self.optimizer = self._build_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.state = TrainState()

    # ----------------------------------------------------------------- setup
    def _maybe_init_distributed(self) -> bool:
        if not dist.is_available() or dist.is_initialized():
            return False
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
            return False
        cuda = torch.cuda.is_available() and (self.config.device or "cuda").startswith("cuda")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(
            backend="nccl" if cuda else "gloo",
            timeout=timeout_of(self.config.collective_timeout_s),
        )
        return True

    def _pick_device(self, local_rank: int) -> torch.device:
        """``config.device``, else this rank's GPU when there is one, else the CPU."""
        if self.config.device is not None:
            return torch.device(self.config.device)
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank if self.world_size > 1 else 0)
        return torch.device("cpu")

    def _place_model(self, model: nn.Module) -> tuple[nn.Module, nn.Module]:
        """``(model, ddp_model)``: the model on `device`; on several ranks with global
        BatchNorms and wrapped in DDP (else ``ddp_model`` is the model itself)."""
        model = model.to(self.device)
        if self.world_size == 1:
            return model, model
        # each rank holds a shard of the global batch: BatchNorm must see all of it
        model = convert_batch_norms(model)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return model, nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        if cfg.param_groups is not None:
            params = cfg.param_groups(self.model, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _lr_factor(self, step: int) -> float:
        cfg = self.config
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.scheduler == "constant":
            return 1.0
        span = max(1, self.total_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    # ----------------------------------------------------------------- data
    def _global_batches(self, epoch: int) -> list[list[int]]:
        """The epoch's global batches: a permutation seeded from (seed, epoch), so a resumed
        run visits the same batches.  Under DDP a final batch smaller than the world size is
        dropped (every rank needs a sample); single-process runs keep it."""
        g = torch.Generator()
        g.manual_seed(self.config.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.train_dataset), generator=g).tolist()
        bs = self.config.batch_size
        batches = [perm[i : i + bs] for i in range(0, len(perm), bs)]
        if batches and len(batches[-1]) < self.world_size:
            batches.pop()
        return batches

    def _loader(self, batches: list[list[int]], dataset: Any, epoch: int = 0) -> DataLoader:
        # A private generator: creating a DataLoader iterator draws a worker base seed from
        # ``generator``, and drawing it from the global RNG would make a resumed run diverge.
        g = torch.Generator()
        g.manual_seed(self.config.seed * 1_000_003 + epoch + 7_919 * self.rank)
        return DataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=self.collate_fn,
            num_workers=self.config.num_workers,
            generator=g,
        )

    def _to_device(self, batch: Any) -> Any:
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, Mapping):
            return type(batch)({k: self._to_device(v) for k, v in batch.items()})
        if isinstance(batch, tuple) and hasattr(batch, "_fields"):
            return type(batch)(*(self._to_device(v) for v in batch))
        if isinstance(batch, (list, tuple)):
            return type(batch)(self._to_device(v) for v in batch)
        return batch

    # ----------------------------------------------------------------- checkpoints
    @property
    def checkpoint_path(self) -> str | None:
        d = self.config.checkpoint_dir
        return None if d is None else os.path.join(d, CHECKPOINT_NAME)

    def _reduce_loss_sums(self) -> tuple[float, int]:
        """Under DDP: move the epoch's running loss sums to rank 0 (others keep 0).  Returns
        the global sums on every rank."""
        if self.world_size == 1:
            return self.state.loss_sum, self.state.loss_count
        t = torch.tensor([self.state.loss_sum, float(self.state.loss_count)], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.to(self.device)
        dist.all_reduce(t)
        total, count = t[0].item(), int(t[1].item())
        if self.rank == 0:
            self.state.loss_sum, self.state.loss_count = total, count
        else:
            self.state.loss_sum, self.state.loss_count = 0.0, 0
        return total, count

    def save_checkpoint(self) -> None:
        """Write ``checkpoint_dir/last.pt`` atomically (rank 0; a collective under DDP); the
        one before it is kept as ``previous.pt``."""
        if self.checkpoint_path is None:
            return
        self._reduce_loss_sums()
        rng = get_rng_state()
        if self.world_size > 1:
            rngs: list = [None] * self.world_size
            dist.all_gather_object(rngs, rng)
        else:
            rngs = [rng]
        if self.rank != 0:
            return
        s = self.state
        atomic_save(
            {
                "format": 1,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "epoch": s.epoch,
                "step_in_epoch": s.step_in_epoch,
                "global_step": s.global_step,
                "loss_sum": s.loss_sum,
                "loss_count": s.loss_count,
                "history": s.history,
                "rng": rngs,
                "world_size": self.world_size,
                "batches_per_epoch": self.batches_per_epoch,
            },
            self.checkpoint_path,
            keep_previous=PREVIOUS_CHECKPOINT_NAME,
        )

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> None:
        """Restore everything `save_checkpoint` wrote (default: the latest one)."""
        if path is None:
            if self.checkpoint_path is None:
                raise ValueError("resume=True needs config.checkpoint_dir (it is None)")
            path = self.checkpoint_path
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"resume=True but there is no checkpoint at {os.path.abspath(path)!r}; "
                "run without resume first, or point checkpoint_dir at the earlier run"
            )
        ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt.get("batches_per_epoch") != self.batches_per_epoch:
            raise ValueError(
                f"checkpoint {path!r} was written with {ckpt.get('batches_per_epoch')} batches "
                f"per epoch, this run has {self.batches_per_epoch}: dataset or batch size changed"
            )
        check_counters(
            ckpt,
            os.path.abspath(path),
            epochs=self.config.epochs,
            batches_per_epoch=self.batches_per_epoch,
            batch_size=self.config.batch_size,
        )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        rank0 = self.rank == 0
        self.state = TrainState(
            epoch=ckpt["epoch"],
            step_in_epoch=ckpt["step_in_epoch"],
            global_step=ckpt["global_step"],
            loss_sum=ckpt["loss_sum"] if rank0 else 0.0,
            loss_count=ckpt["loss_count"] if rank0 else 0,
            history=list(ckpt["history"]),
        )
        rngs = ckpt["rng"]
        set_rng_state(rngs[min(self.rank, len(rngs) - 1)])

    # ----------------------------------------------------------------- training
    def _seed_everything(self) -> None:
        seed = self.config.seed + self.rank
        torch.manual_seed(seed)
        random.seed(seed)
        try:
            import numpy as np

            np.random.seed(seed % 2**32)
        except ImportError:  # pragma: no cover
            pass

    def _train_step(self, batch: Any, n_local: int, n_global: int) -> float:
        model, cfg = self.ddp_model, self.config
        model.train()
        batch = self._to_device(batch)
        loss = self.loss_fn(model, batch)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise TypeError("loss_fn must return a scalar tensor (the mean loss of the batch)")
        if cfg.check_finite:
            ok = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
            if self.world_size > 1:
                dist.all_reduce(ok, op=dist.ReduceOp.MIN)
            if not ok.item():
                raise NonFiniteLossError(
                    f"non-finite loss ({loss.item()}) at epoch {self.state.epoch}, batch "
                    f"{self.state.step_in_epoch} (global step {self.state.global_step}); "
                    "lower lr, set grad_clip or check the inputs"
                )
        # DDP averages gradients over ranks; weighting by the shard's share of the global batch
        # makes that average the global-batch mean even when the last batch splits unevenly.
        scale = n_local * self.world_size / n_global
        self.optimizer.zero_grad(set_to_none=True)
        (loss * scale if scale != 1 else loss).backward()
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.reset_fn is not None:
            self.reset_fn(self.model)
        return loss.item()

    def fit(self, resume: bool = False) -> dict:
        """Train for ``config.epochs`` epochs and return the final metrics (the last epoch's
        history entry, plus ``"energy"`` when ``energy_fn`` is given).  ``resume=True``
        continues from ``checkpoint_dir/last.pt``, mid-epoch included."""
        cfg = self.config
        start = time.perf_counter()
        try:
            if resume:
                self.load_checkpoint()
            else:
                self._seed_everything()
                self.state = TrainState()
            with collective_errors(self.rank, self.world_size, cfg.collective_timeout_s):
                while self.state.epoch < cfg.epochs:
                    self._run_epoch()
            final = dict(self.state.history[-1]) if self.state.history else {}
            if self.energy_fn is not None and self.rank == 0:
                self.model.eval()
                final["energy"] = {k: _to_float(v) for k, v in self.energy_fn(self.model).items()}
            if self.rank == 0 and cfg.checkpoint_dir is not None:
                write_json_atomic(
                    os.path.join(cfg.checkpoint_dir, METRICS_NAME),
                    {
                        "config": cfg.to_dict(),
                        "world_size": self.world_size,
                        "steps": self.state.global_step,
                        "history": self.state.history,
                        "final": final,
                        "energy": final.get("energy"),
                        "wall_time_s": time.perf_counter() - start,
                    },
                )
            if self.world_size > 1:
                dist.barrier()  # every rank returns after rank 0 has written its files
            return final
        finally:
            if self._own_process_group:
                self.release()

    def release(self) -> None:
        """Drop the DDP wrapper (its reducer holds gloo/nccl work objects) and, if this trainer
        created the process group (``torchrun`` env vars), destroy it.  Called by `fit`
        when it owns the group; call it yourself before ``destroy_process_group`` otherwise.
        Left to interpreter shutdown, gloo's threads can abort the process (SIGABRT)."""
        self.ddp_model = self.model
        gc.collect()
        if self._own_process_group and dist.is_initialized():
            dist.destroy_process_group()
        self._own_process_group = False

    def _run_epoch(self) -> None:
        cfg, s = self.config, self.state
        batches = self._global_batches(s.epoch)
        todo = batches[s.step_in_epoch :]
        local = [b[self.rank :: self.world_size] for b in todo]
        bar = tqdm(
            total=len(batches),
            initial=s.step_in_epoch,
            desc=f"epoch {s.epoch + 1}/{cfg.epochs}",
            disable=not cfg.progress or self.rank != 0,
            leave=False,
            dynamic_ncols=True,
        )
        try:
            for global_idx, batch in zip(todo, self._loader(local, self.train_dataset, s.epoch)):
                n_local = len(global_idx[self.rank :: self.world_size])
                loss = self._train_step(batch, n_local, len(global_idx))
                s.loss = loss
                s.loss_sum += loss * n_local
                s.loss_count += n_local
                s.step_in_epoch += 1
                s.global_step += 1
                bar.update(1)
                if cfg.log_every and s.global_step % cfg.log_every == 0:
                    bar.set_postfix(loss=f"{loss:.4g}", lr=f"{self._lr():.3g}")
                if cfg.checkpoint_every and s.global_step % cfg.checkpoint_every == 0:
                    if s.step_in_epoch < len(batches):  # the epoch end saves below
                        self.save_checkpoint()
                for callback in self.callbacks:
                    callback(self)
        finally:
            bar.close()
        loss_sum, loss_count = self._reduce_loss_sums()
        entry: dict[str, Any] = {
            "epoch": s.epoch + 1,
            "step": s.global_step,
            "lr": self._lr(),
            "train_loss": loss_sum / max(1, loss_count),
        }
        if self.eval_dataset is not None and self.metrics_fn is not None:
            entry.update({f"eval_{k}": v for k, v in self.evaluate(self.eval_dataset).items()})
        s.history.append(entry)
        s.epoch += 1
        s.step_in_epoch = 0
        s.loss_sum, s.loss_count = 0.0, 0
        log.info("epoch %d: %s", s.epoch, entry)
        self.save_checkpoint()

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ----------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, dataset: Any) -> dict:
        """Metrics of ``metrics_fn`` on ``dataset`` in order (each rank evaluates all of it)."""
        if self.metrics_fn is None:
            raise ValueError("evaluate needs a metrics_fn")
        if len(dataset) == 0:
            raise ValueError("evaluate: the dataset is empty")
        bs = self.config.eval_batch_size or self.config.batch_size
        idx = list(range(len(dataset)))
        batches = [idx[i : i + bs] for i in range(0, len(idx), bs)]
        was_training = self.model.training
        self.model.eval()
        outputs, sizes = [], []
        try:
            for ids, batch in zip(batches, self._loader(batches, dataset)):
                outputs.append(dict(self.metrics_fn(self.model, self._to_device(batch))))
                sizes.append(len(ids))
                if self.reset_fn is not None:
                    self.reset_fn(self.model)
        finally:
            self.model.train(was_training)
        if self.eval_reduce_fn is not None:
            return {k: _to_float(v) for k, v in self.eval_reduce_fn(outputs, sizes).items()}
        total = sum(sizes)
        return {
            k: sum(_to_float(o[k]) * n for o, n in zip(outputs, sizes)) / total for k in outputs[0]
        }
