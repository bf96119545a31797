"""Tests of bpsn_ext.train: learning, exact kill-and-resume, atomic checkpoints, gloo DDP."""

from __future__ import annotations

import gc
import os
import socket

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import TensorDataset

from bpsn_ext.train import (
    CHECKPOINT_NAME,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    atomic_save,
    load_checkpoint,
)
from bpsn_ext.train import checkpoint as ckpt_mod


def make_data(n: int = 96, seed: int = 0) -> TensorDataset:
    w = torch.randn(8, 3, generator=torch.Generator().manual_seed(1234))  # the same task
    x = torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))
    y = (x @ w).argmax(dim=1)
    return TensorDataset(x, y)


def make_model(seed: int = 0, dropout: float = 0.0, batch_norm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    # no bias before a BatchNorm: its gradient is rounding noise, which Adam would amplify
    first = nn.Linear(8, 16, bias=not batch_norm)
    norm = nn.BatchNorm1d(16) if batch_norm else nn.Identity()
    return nn.Sequential(first, norm, nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 3))


def loss_fn(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def metrics_fn(model, batch):
    x, y = batch
    logits = model(x)
    return {
        "loss": nn.functional.cross_entropy(logits, y).item(),
        "acc": (logits.argmax(1) == y).float().mean().item(),
    }


def make_trainer(tmp_path=None, *, model=None, callbacks=(), n_train=96, **overrides) -> Trainer:
    cfg = dict(
        epochs=2,
        batch_size=16,
        lr=0.05,
        seed=3,
        progress=False,
        checkpoint_dir=None if tmp_path is None else str(tmp_path),
        checkpoint_every=2,
    )
    cfg.update(overrides)
    return Trainer(
        model if model is not None else make_model(),
        make_data(n_train),
        make_data(32, seed=1),
        loss_fn,
        metrics_fn,
        TrainConfig(**cfg),
        callbacks=callbacks,
    )


def test_training_reduces_loss(tmp_path):
    calls = []
    trainer = make_trainer(tmp_path, epochs=3)
    before = trainer.evaluate(make_data())["loss"]
    trainer.reset_fn = calls.append
    final = trainer.fit()
    assert len(calls) == 3 * 6 + 3 * 2  # train batches + eval batches (32 / 16) per epoch
    after = trainer.evaluate(make_data())["loss"]
    assert after < 0.7 * before
    assert final["epoch"] == 3 and final["step"] == 3 * 6
    assert final["train_loss"] < trainer.state.history[0]["train_loss"]
    assert "eval_acc" in final
    metrics = __import__("json").loads((tmp_path / "metrics.json").read_text())
    assert metrics["final"] == final and len(metrics["history"]) == 3


class Killed(RuntimeError):
    pass


def kill_after(k: int):
    def callback(trainer):
        if trainer.state.global_step == k:
            raise Killed(f"killed at step {k}")

    return callback


@pytest.mark.parametrize("scheduler", ["constant", "cosine"])
def test_kill_and_resume_is_exact(tmp_path, scheduler):
    energy = {"energy_fn": lambda m: {"synops": torch.tensor(12.0), "params": 3}}
    common = dict(scheduler=scheduler, warmup_steps=2, grad_clip=1.0, weight_decay=0.01)
    # Dropout makes the result depend on the restored torch RNG state as well.
    ref = make_trainer(tmp_path / "ref", model=make_model(dropout=0.2), **common)
    ref.energy_fn = energy["energy_fn"]
    ref_final = ref.fit()

    # 6 batches per epoch; checkpoints every 2 steps: killed at global step 9 (epoch 1, batch 3),
    # the last checkpoint is at step 8, so resuming redoes step 9 from the saved state.
    run = make_trainer(
        tmp_path / "run", model=make_model(dropout=0.2), callbacks=[kill_after(9)], **common
    )
    with pytest.raises(Killed):
        run.fit()
    saved = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (1, 2, 8)

    # A fresh process: new model object with other initial weights, then resume.
    resumed = make_trainer(tmp_path / "run", model=make_model(seed=99, dropout=0.2), **common)
    resumed.energy_fn = energy["energy_fn"]
    final = resumed.fit(resume=True)

    # Same batches, same RNG, same float operations in the same order: bitwise equal.
    for a, b in zip(ref.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert final == ref_final
    assert resumed.state.history == ref.state.history
    assert final["energy"] == {"synops": 12.0, "params": 3}


def test_checkpoint_is_atomic(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, epochs=1)
    trainer.fit()
    path = tmp_path / CHECKPOINT_NAME
    good = load_checkpoint(path)
    assert good["epoch"] == 1

    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        real_save({"partial": torch.zeros(1000)}, f)  # some bytes reach the temp file ...
        raise OSError("disk full")  # ... then the process "dies"

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint()
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"x": 1}, tmp_path / "other.pt")
    monkeypatch.undo()

    again = load_checkpoint(path)
    assert again["global_step"] == good["global_step"]
    for k, v in good["model"].items():
        assert torch.equal(v, again["model"][k])
    # no temp files; the checkpoint before last.pt is kept as a spare
    assert sorted(os.listdir(tmp_path)) == [CHECKPOINT_NAME, "metrics.json", "previous.pt"]


def test_rng_state_round_trip():
    import random

    state = ckpt_mod.get_rng_state()
    a = (torch.rand(3), random.random())
    ckpt_mod.set_rng_state(state)
    b = (torch.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and a[1] == b[1]


def test_uneven_last_batch_and_sgd(tmp_path):
    # 96 samples in batches of 20: the last has 16; SGD + param_groups hook.
    groups = []

    def param_groups(model, lr, weight_decay):
        groups.append((lr, weight_decay))
        return [{"params": list(model.parameters()), "lr": lr, "weight_decay": weight_decay}]

    trainer = make_trainer(
        None, batch_size=20, optimizer="sgd", param_groups=param_groups, epochs=1
    )
    final = trainer.fit()
    assert final["step"] == 5 and groups == [(0.05, 0.0)]


# ---------------------------------------------------------------------------- errors
def test_error_batch_size_not_divisible(monkeypatch):
    monkeypatch.setattr("bpsn_ext.train.trainer._dist_world", lambda: (3, 0, 0))
    with pytest.raises(ValueError, match="not divisible by the world size 3"):
        make_trainer(None, batch_size=16)


def test_error_empty_dataset():
    empty = TensorDataset(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="train_dataset is empty"):
        Trainer(make_model(), empty, None, loss_fn, metrics_fn, TrainConfig(progress=False))
    with pytest.raises(ValueError, match="eval_dataset is empty"):
        Trainer(make_model(), make_data(), empty, loss_fn, metrics_fn, TrainConfig())


def test_error_missing_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path / "nowhere")
    where = str(tmp_path / "nowhere" / CHECKPOINT_NAME)
    with pytest.raises(FileNotFoundError, match="no checkpoint at") as info:
        trainer.fit(resume=True)
    assert where in str(info.value)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        make_trainer(None).fit(resume=True)


def test_error_nan_loss():
    def nan_loss(model, batch):
        return loss_fn(model, batch) * float("nan")

    trainer = make_trainer(None)
    trainer.loss_fn = nan_loss
    with pytest.raises(NonFiniteLossError, match="non-finite loss .* epoch 0, batch 0"):
        trainer.fit()


@pytest.mark.parametrize(
    "bad", [dict(epochs=0), dict(batch_size=-1), dict(lr=0.0), dict(scheduler="linear")]
)
def test_error_bad_config(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


# ---------------------------------------------------------------------------- DDP (gloo)
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(
    rank: int, world: int, port: int, out: str, batch_size: int, n: int, batch_norm: bool = False
) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        trainer = make_trainer(
            out,
            epochs=1,
            batch_size=batch_size,
            n_train=n,
            device="cpu",
            model=make_model(batch_norm=batch_norm),
        )
        assert trainer.world_size == world
        final = trainer.fit()
        if rank == 0:
            torch.save({"model": trainer.model.state_dict(), "final": final}, out + "/ddp.pt")
        trainer.release()
    finally:
        # Free the DDP reducer (it holds gloo work objects) while the interpreter is fully
        # alive: left to finalization, gloo's threads can abort the process (SIGABRT).
        trainer = None
        gc.collect()
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
# (20, 95): the last global batch has 15 samples, split 8 + 7 between the ranks.
# batch_norm: BatchNorm statistics span both ranks' shards (GlobalBatchNorm), as in one process.
@pytest.mark.parametrize(
    "batch_size, n, batch_norm", [(16, 96, False), (20, 95, False), (20, 95, True)]
)
def test_ddp_gloo_matches_single_process(tmp_path, batch_size, n, batch_norm):
    import torch.multiprocessing as mp

    out = str(tmp_path / "ddp")
    os.makedirs(out)
    for attempt in range(3):
        try:
            mp.spawn(_ddp_worker, args=(2, _free_port(), out, batch_size, n, batch_norm), nprocs=2)
            break
        except mp.ProcessRaisedException as e:
            # The free port can be taken by someone else between _free_port and the bind.
            network = ("DistNetworkError", "address already in use", "EADDRINUSE", "onnect")
            if attempt == 2 or not any(word in str(e) for word in network):
                raise
    ddp = torch.load(out + "/ddp.pt", weights_only=False)

    single = make_trainer(
        tmp_path / "single",
        epochs=1,
        batch_size=batch_size,
        n_train=n,
        device="cpu",
        model=make_model(batch_norm=batch_norm),
    )
    final = single.fit()
    # Gradients are averaged over two half-batch means instead of one full-batch mean: the
    # float reductions run in another order, so equal up to rounding, not bitwise.
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=1e-5, atol=1e-5)
    assert ddp["final"].keys() == final.keys()
    for k in final:
        assert ddp["final"][k] == pytest.approx(final[k], rel=1e-5, abs=1e-6)
    assert os.path.exists(os.path.join(out, CHECKPOINT_NAME))


def test_global_batch_norm_is_batch_norm_in_one_process():
    from bpsn_ext.train.sync_norm import GlobalBatchNorm, convert_batch_norms

    ref = make_model(batch_norm=True)
    model = convert_batch_norms(make_model(batch_norm=True))
    assert isinstance(model[1], GlobalBatchNorm)
    assert model.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(12, 8)
    torch.testing.assert_close(model(x), ref(x))
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)
    with pytest.raises(ValueError, match="expected input \\[N, C, \\*\\]"):
        GlobalBatchNorm(3)(torch.randn(3))
