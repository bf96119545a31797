"""``bpsn-ext train lra`` / ``bpsn-ext evaluate lra``: LRA tasks and sequential images.

Training runs on `bpsn_ext.train.Trainer` (tqdm progress, atomic checkpoints in
``--checkpoint-dir``, exact ``--resume``, ``metrics.json``, DDP under ``torchrun``).  The run's
settings go to ``<checkpoint-dir>/run_config.json`` so that ``evaluate lra --checkpoint-dir``
rebuilds the same model and data.  At the end the test split is evaluated and an energy report
(`bpsn_ext.energy.estimate`, per test sample, with per-layer firing rates) is printed
and stored in ``metrics.json`` (``"test"``, ``"energy"``).

Model and optimiser defaults come from `bpsn_ext.models.lra_classifier.LRA_PRESETS` (S4D LRA
settings; ``digits`` a small CPU preset, ``mnist``/``fashion-mnist`` the s4 ``example.py``
settings); every value is a flag.
"""

from __future__ import annotations

import argparse
import json
import os

from bpsn_ext.data.lra_release import TASKS, check_sources
from bpsn_ext.util.cli_args import flag_errors, positive_int

TRAIN_HELP = "train an LRAClassifier on an LRA task or sequential images"
EVALUATE_HELP = "evaluate an LRA checkpoint"

RUN_CONFIG = "run_config.json"
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
_DATA_KEYS = (
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
_MODEL_KEYS = (
    "layer",
    "d_model",
    "n_layers",
    "d_state",
    "dropout",
    "norm",
    "prenorm",
    "dt_min",
    "dt_max",
    "bidirectional",
    "bidirectional_convention",
    "surrogate",
)


def _data_arguments(parser: argparse.ArgumentParser, required_task: bool) -> None:
    S = argparse.SUPPRESS
    g = parser.add_argument_group("data")
    g.add_argument(
        "--task",
        choices=TASKS,
        required=required_task,
        default=S if not required_task else None,
        help="which task",
    )
    g.add_argument(
        "--data",
        default=S,
        metavar="PATH",
        help="local data: lra_release folder (listops, pathfinder, retrieval), "
        "aclImdb/CSV (text), CIFAR-10 python batches (image), IDX folder "
        "(mnist, fashion-mnist; default /usr/share/datasets/fashion-mnist)",
    )
    g.add_argument(
        "--hf",
        default=S,
        metavar="NAME[:CONFIG]",
        help="a Hugging Face datasets name (text, image, mnist); honours "
        "HF_DATASETS_OFFLINE and the local cache",
    )
    g.add_argument(
        "--generate",
        action="store_true",
        default=S,
        help="generate the data (listops, pathfinder) instead of reading it",
    )
    g.add_argument("--n-train", type=positive_int, default=S, help="generated train samples (2000)")
    g.add_argument("--n-val", type=positive_int, default=S, help="generated val samples (200)")
    g.add_argument("--n-test", type=positive_int, default=S, help="generated test samples (200)")
    g.add_argument(
        "--min-length", type=int, default=S, help="ListOps: tokens > min-length (LRA 500)"
    )
    g.add_argument(
        "--max-length", type=int, default=S, help="ListOps: tokens < max-length (LRA 2000)"
    )
    g.add_argument("--max-depth", type=positive_int, default=S, help="ListOps tree depth (10)")
    g.add_argument("--max-args", type=int, default=S, help="ListOps operator arity (10)")
    g.add_argument(
        "--contour-length",
        type=positive_int,
        default=S,
        help="Pathfinder difficulty: 6, 9 or 14 (hard, default)",
    )
    g.add_argument(
        "--resolution",
        type=int,
        choices=(32, 128),
        default=S,
        help="Pathfinder image size (32; 128 = Path-X)",
    )
    g.add_argument(
        "--permute",
        choices=("none", "bitreversal", "random"),
        default=S,
        help="image tasks: step order (none)",
    )
    g.add_argument("--permutation-seed", type=int, default=S, help="seed of --permute random (0)")
    g.add_argument(
        "--truncate",
        type=positive_int,
        default=S,
        help="cap token sequences (LRA: listops 2048, text 4096, retrieval 4000)",
    )
    g.add_argument(
        "--limit-train", type=positive_int, default=S, help="use only the first N training samples"
    )
    g.add_argument(
        "--limit-eval",
        type=positive_int,
        default=S,
        help="use only the first N val and test samples",
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``train lra``."""
    from bpsn_ext.models.lra_classifier import LAYERS, PAPER_PRESETS

    S = argparse.SUPPRESS
    _data_arguments(parser, required_task=True)
    m = parser.add_argument_group("model (defaults: the task preset)")
    m.add_argument(
        "--preset",
        choices=tuple(PAPER_PRESETS),
        default=S,
        help="a paper-size configuration of --task (model, training and data defaults)",
    )
    m.add_argument(
        "--layer",
        choices=LAYERS,
        default="binary_s4d",
        help="sequence layer (binary_s4d); s4d is the non-spiking reference",
    )
    m.add_argument("--d-model", type=positive_int, default=S, help="width")
    m.add_argument("--n-layers", type=positive_int, default=S, help="residual blocks")
    m.add_argument("--d-state", type=positive_int, default=S, help="SSM state size (64)")
    m.add_argument("--dropout", type=float, default=S, help="dropout")
    m.add_argument("--norm", choices=("layer", "batch", "none"), default=S, help="norm")
    m.add_argument(
        "--prenorm",
        action=argparse.BooleanOptionalAction,
        default=S,
        help="pre-norm (--no-prenorm: post-norm)",
    )
    m.add_argument("--dt-min", type=float, default=S, help="SSM step size range, lower")
    m.add_argument("--dt-max", type=float, default=S, help="SSM step size range, upper")
    m.add_argument(
        "--bidirectional",
        action="store_true",
        default=S,
        help="bidirectional SSM (binary_s4d, s4d, gsu: two kernels; s5: a backward scan)",
    )
    m.add_argument(
        "--bidirectional-convention",
        choices=("lag0", "s4"),
        default=S,
        help="S4D backward kernel: lag0 (default, includes the current step) or s4 "
        "(state-spaces/s4's FFTConv, shifted by one step)",
    )
    m.add_argument(
        "--surrogate",
        default=S,
        help="surrogate of the spiking layers, e.g. atan (default) or fast_sigmoid",
    )
    t = parser.add_argument_group("training (defaults: the task preset)")
    t.add_argument("--epochs", type=positive_int, default=S)
    t.add_argument("--batch-size", type=positive_int, default=S, help="global batch")
    t.add_argument("--lr", type=float, default=S)
    t.add_argument(
        "--ssm-lr",
        type=float,
        default=0.001,
        help="learning rate of the SSM parameters (min with --lr; wd 0) (0.001)",
    )
    t.add_argument("--weight-decay", type=float, default=S)
    t.add_argument("--scheduler", choices=("cosine", "constant"), default="cosine")
    t.add_argument("--warmup-steps", type=int, default=0)
    t.add_argument("--grad-clip", type=float, default=None)
    t.add_argument("--seed", type=int, default=0, help="weights, batch order, generated data")
    t.add_argument(
        "--checkpoint-dir",
        "--out",
        dest="checkpoint_dir",
        default=None,
        help="folder for last.pt, metrics.json, run_config.json",
    )
    t.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="also checkpoint every N steps (0: at epoch ends)",
    )
    t.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in --checkpoint-dir (otherwise refused)",
    )
    t.add_argument("--metrics-json", default=None, help="also copy metrics.json here")
    t.add_argument(
        "--energy-samples",
        type=int,
        default=64,
        help="test samples of the energy report (0: no report) (64)",
    )
    t.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads")
    t.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    t.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


# ----------------------------------------------------------------------------- helpers
def _data_kwargs(cfg: dict) -> dict:
    keys = [k for k in _DATA_KEYS if k != "task" and cfg.get(k) is not None]
    return {k: cfg[k] for k in keys}


def _resolve(args: argparse.Namespace) -> dict:
    """Preset values completed by the flags given."""
    from bpsn_ext.models.lra_classifier import preset_values

    preset_name = getattr(args, "preset", None) or TASK_PRESET[args.task]
    if preset_name == "pathfinder" and getattr(args, "resolution", 32) == 128:
        preset_name = "pathx"
    try:
        preset = (
            dict(DIGITS_PRESET)
            if preset_name == "digits"
            else preset_values(preset_name, args.task)
        )
    except ValueError as err:  # a paper preset of another task
        raise SystemExit(f"train lra: --preset {preset_name}: {err}") from err
    preset.setdefault("d_state", 64)
    preset.setdefault("dt_min", 0.001)
    preset.setdefault("dt_max", 0.1)
    cfg = {"preset": preset_name, **preset}
    for key, value in vars(args).items():
        if key in ("handler", "command", "task_kind"):
            continue
        cfg[key] = value
    cfg.setdefault("bidirectional", False)
    cfg.setdefault("bidirectional_convention", "lag0")  # run configs of earlier versions
    cfg.setdefault("surrogate", None)
    cfg.setdefault("generate", False)
    if cfg.get("data"):  # stored in run_config.json: `evaluate` may run from another folder
        cfg["data"] = os.path.abspath(cfg["data"])
    with flag_errors("train lra"):  # before anything is written
        check_sources(
            cfg["task"],
            data=cfg.get("data"),
            hf=cfg.get("hf"),
            generate=bool(cfg["generate"]),
            permute=cfg.get("permute"),
        )
    return cfg


def _build_model(cfg: dict, td):
    from bpsn_ext.models.lra_classifier import LRAClassifier, LRADualClassifier

    opts: dict = {}
    if cfg["layer"] in ("binary_s4d", "s4d", "gsu", "s5"):
        opts.update(dt_min=float(cfg["dt_min"]), dt_max=float(cfg["dt_max"]))
    convention = cfg.get("bidirectional_convention") or "lag0"
    if cfg.get("bidirectional"):
        if cfg["layer"] not in ("binary_s4d", "s4d", "gsu", "s5"):
            raise SystemExit(
                f"--bidirectional applies to binary_s4d, s4d, gsu and s5, not "
                f"--layer {cfg['layer']}"
            )
        opts["bidirectional"] = True
        if cfg["layer"] != "s5":
            opts["bidirectional_convention"] = convention
    if convention != "lag0" and (not cfg.get("bidirectional") or cfg["layer"] == "s5"):
        raise SystemExit(
            "--bidirectional-convention s4 applies to --bidirectional with binary_s4d, s4d or gsu"
        )
    if cfg.get("surrogate"):
        if cfg["layer"] == "s4d":
            raise SystemExit("--surrogate applies to the spiking layers, not --layer s4d")
        opts["surrogate"] = cfg["surrogate"]
    cls = LRADualClassifier if td.dual else LRAClassifier
    return cls(
        td.d_input,
        td.n_classes,
        layer=cfg["layer"],
        d_model=int(cfg["d_model"]),
        n_layers=int(cfg["n_layers"]),
        d_state=int(cfg["d_state"]),
        dropout=float(cfg["dropout"]),
        prenorm=bool(cfg["prenorm"]),
        norm=cfg["norm"],
        vocab_size=td.vocab_size,
        layer_options=opts,
    )


def _forward(model, batch, dual: bool):
    if dual:
        x1, l1, x2, l2, y = batch
        return model(x1, l1, x2, l2), y
    x, lengths, y = batch
    return model(x, lengths), y


def _fns(dual: bool):
    import torch.nn.functional as F

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


def firing_rates(model, *inputs) -> dict[str, float]:
    """Per block: the fraction of nonzero outputs of the spiking (or ternary) nonlinearity over
    the real (unpadded) steps (Binary S4D spikes, GSU ``Tern(y)``, spiking S5 / BPSN spikes).
    A non-spiking model (``s4d``) gives an empty dict."""
    import torch

    from bpsn_ext.bpsn_module import BPSN
    from bpsn_ext.core.masks import as_mask
    from bpsn_ext.layers import SpikingS5

    backbone = getattr(model, "backbone", model)
    if getattr(backbone, "layer", None) == "s4d":
        return {}
    pairs = [(inputs[0], inputs[1] if len(inputs) > 1 else None)]
    if len(inputs) == 4:
        pairs.append((inputs[2], inputs[3]))
    counts: dict[str, list[float]] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, mask in pairs:
                T, N = x.shape[:2]
                m = as_mask(mask, T, N, x.device)
                h = backbone.encoder(x)
                for i, block in enumerate(backbone.blocks):
                    acts: list[torch.Tensor] = []
                    if hasattr(block, "forward_with_activation"):
                        h, act = block.forward_with_activation(h, m)
                        acts.append(act)
                    else:
                        record = acts.append
                        hooks = [
                            mod.register_forward_hook(lambda _m, _i, o, record=record: record(o))
                            for mod in block.modules()
                            if isinstance(mod, (SpikingS5, BPSN))
                        ]
                        try:
                            h = block(h, m)
                        finally:
                            for hook in hooks:
                                hook.remove()
                    for act in acts:
                        valid = act if m is None else act[m]
                        c = counts.setdefault(f"blocks.{i}", [0.0, 0.0])
                        c[0] += float((valid != 0).sum())
                        c[1] += float(valid.numel())
    finally:
        model.train(was_training)
    return {k: nz / n for k, (nz, n) in counts.items() if n}


def energy_summary(model, td, n_samples: int, device=None) -> dict:
    """Energy report of ``model`` on the first ``n_samples`` test samples: per-sample totals
    (individual coding: one step per token) and the firing rate of every spiking layer."""
    import torch

    from bpsn_ext.energy import estimate

    n = min(n_samples, len(td.test))
    batch = td.collate([td.test[i] for i in range(n)])
    if device is not None:
        batch = tuple(b.to(device) for b in batch)
    inputs = batch[:-1]
    with torch.no_grad():
        report = estimate(
            model,
            *inputs,
            coding="individual",
            title=f"energy: {type(model).__name__}, {n} test samples",
        )
    s = report.per_sample()
    rates = firing_rates(model, *inputs)
    out = {
        k: s[k]
        for k in (
            "energy_pJ",
            "synaptic_energy_pJ",
            "ann_energy_pJ",
            "mac",
            "ac",
            "ratio",
            "ratio_total",
            "effective_ac_rate",
            "mean_output_rate",
        )
    }
    out.update(
        samples=n,
        T=report.T,
        energy_model=report.energy_model.name,
        firing_rates=rates,
        mean_firing_rate=sum(rates.values()) / len(rates) if rates else None,
    )
    out["_report"] = report
    return out


def _load_data(cfg: dict, command: str):
    """`load_task` with the data settings of ``cfg``; its errors name the flags."""
    from bpsn_ext.data.lra_release import load_task

    with flag_errors(command):
        try:
            return load_task(cfg["task"], **_data_kwargs(cfg))
        except FileNotFoundError as err:
            if cfg.get("hf"):
                raise
            raise FileNotFoundError(f"{err}; choose the folder with --data") from err


def _prepare(cfg: dict, command: str):
    import torch

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    td = _load_data(cfg, command)
    torch.manual_seed(int(cfg.get("seed", 0)))
    return td, _build_model(cfg, td)


def _print(*parts) -> None:
    print(*parts, flush=True)


def _format_epoch(entry: dict) -> str:
    return (
        f"epoch {entry['epoch']}: train loss {entry['train_loss']:.4f}, val loss "
        f"{entry.get('eval_loss', float('nan')):.4f}, val acc "
        f"{entry.get('eval_accuracy', float('nan')):.4f}"
    )


class _EpochPrinter:
    """Prints the trainer's end-of-epoch log records (``epoch %d: %s``) as they happen."""

    def __enter__(self):
        import logging

        class Handler(logging.Handler):
            def emit(self, record):
                if (
                    isinstance(record.args, tuple)
                    and len(record.args) == 2
                    and isinstance(record.args[1], dict)
                    and "train_loss" in record.args[1]
                ):
                    _print(_format_epoch(record.args[1]))

        self.logger = logging.getLogger("bpsn_ext.train.trainer")
        self.handler, self.level = Handler(), self.logger.level
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)


# ----------------------------------------------------------------------------- train
def _claim(cfg: dict) -> None:
    """Refuse ``--resume`` without a folder, and a folder that holds an earlier run."""
    from bpsn_ext.train import claim_run_folder

    if cfg["resume"] and not cfg.get("checkpoint_dir"):
        raise SystemExit("train lra --resume needs --checkpoint-dir")
    if cfg.get("checkpoint_dir"):
        with flag_errors("train lra"):
            claim_run_folder(
                cfg["checkpoint_dir"],
                resume=bool(cfg["resume"]),
                overwrite=bool(cfg.get("overwrite")),
                extra=(RUN_CONFIG,),
            )


def _train_config(cfg: dict):
    """The `TrainConfig` of ``cfg``; the SSM parameters train at ``ssm_lr`` (no decay)."""
    from bpsn_ext.optim import ssm_param_groups
    from bpsn_ext.train import TrainConfig

    ssm_lr = float(cfg["ssm_lr"])

    def groups(m, lr, weight_decay):
        return ssm_param_groups(m, lr=lr, weight_decay=weight_decay, ssm_lr=ssm_lr)

    return TrainConfig(
        epochs=int(cfg["epochs"]),
        batch_size=int(cfg["batch_size"]),
        lr=float(cfg["lr"]),
        weight_decay=float(cfg["weight_decay"]),
        seed=int(cfg["seed"]),
        grad_clip=cfg["grad_clip"],
        checkpoint_dir=cfg["checkpoint_dir"],
        checkpoint_every=int(cfg["checkpoint_every"]),
        device=cfg["device"],
        param_groups=groups,
        scheduler=cfg["scheduler"],
        warmup_steps=int(cfg["warmup_steps"]),
        progress=bool(cfg["progress"]),
    )


def _make_trainer(cfg: dict, td, model):
    """``(trainer, energy)``: ``energy`` fills with `energy_summary` when the trainer reports."""
    from bpsn_ext.train import Trainer

    loss_fn, metrics_fn = _fns(td.dual)
    energy: dict = {}

    def energy_fn(m):
        if int(cfg["energy_samples"]) <= 0:
            return {}
        energy.update(energy_summary(m, td, int(cfg["energy_samples"]), trainer.device))
        return {k: v for k, v in energy.items() if k != "_report"}

    trainer = Trainer(
        model,
        td.train,
        td.val,
        loss_fn,
        metrics_fn,
        _train_config(cfg),
        collate_fn=td.collate,
        energy_fn=energy_fn,
    )
    return trainer, energy


def _print_test(test: dict, energy: dict) -> None:
    _print(f"test: loss {test['loss']:.4f}, accuracy {test['accuracy']:.4f}")
    if "_report" in energy:
        _print(energy["_report"])
        rates = ", ".join(f"{k} {v:.3f}" for k, v in energy["firing_rates"].items())
        _print(f"firing rates: {rates or 'none (non-spiking model)'}")


def _write_metrics(cfg: dict, metrics: dict) -> None:
    """``metrics.json`` of the run folder (keeping the trainer's wall time) and
    ``--metrics-json``."""
    from bpsn_ext.util.files import write_json_atomic

    if cfg["checkpoint_dir"]:
        path = os.path.join(cfg["checkpoint_dir"], "metrics.json")
        with open(path, encoding="utf-8") as f:
            metrics["wall_time_s"] = json.load(f).get("wall_time_s")
        write_json_atomic(path, metrics)
    if cfg["metrics_json"]:
        write_json_atomic(cfg["metrics_json"], metrics)


def run_train(args: argparse.Namespace) -> int:
    from bpsn_ext.util.files import write_json_atomic

    cfg = _resolve(args)
    _claim(cfg)
    td, model = _prepare(cfg, "train lra")
    rank0 = int(os.environ.get("RANK", "0")) == 0
    n_params = sum(p.numel() for p in model.parameters())
    if rank0:
        _print(
            f"task {cfg['task']} ({td.info.get('source', '')}): train {len(td.train)}, val "
            f"{len(td.val)}, test {len(td.test)}; layer {cfg['layer']}, "
            f"{cfg['n_layers']} x {cfg['d_model']}, {n_params} parameters"
        )
    if cfg["checkpoint_dir"] and rank0 and not cfg["resume"]:
        write_json_atomic(os.path.join(cfg["checkpoint_dir"], RUN_CONFIG), cfg)
    trainer, energy = _make_trainer(cfg, td, model)
    if not rank0:
        trainer.fit(resume=bool(cfg["resume"]))
        return 0
    with _EpochPrinter():
        final = trainer.fit(resume=bool(cfg["resume"]))
    test = trainer.evaluate(td.test)
    _print_test(test, energy)
    _write_metrics(
        cfg,
        {
            "task": cfg["task"],
            "layer": cfg["layer"],
            "parameters": n_params,
            "data": td.info,
            "run_config": dict(cfg),
            "final": final,
            "test": test,
            "energy": final.get("energy"),
            "history": trainer.state.history,
            "steps": trainer.state.global_step,
            "world_size": trainer.world_size,
        },
    )
    return 0


# ----------------------------------------------------------------------------- evaluate
def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``evaluate lra``."""
    parser.add_argument(
        "--checkpoint-dir",
        required=True,
        help="folder of a `train lra` run (run_config.json and last.pt)",
    )
    parser.add_argument(
        "--checkpoint", default=None, help="checkpoint file (default: <checkpoint-dir>/last.pt)"
    )
    parser.add_argument("--split", choices=("test", "val", "train"), default="test")
    parser.add_argument(
        "--out", default=None, help="metrics JSON (default: <checkpoint-dir>/eval_<split>.json)"
    )
    parser.add_argument(
        "--energy-samples",
        type=int,
        default=64,
        help="test samples of the energy report (0: none) (64)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=None)
    parser.add_argument("--threads", type=positive_int, default=None)
    parser.add_argument("--device", default="cpu")
    _data_arguments(parser, required_task=False)


def run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from bpsn_ext.train import TrainConfig, Trainer, load_checkpoint
    from bpsn_ext.util.files import write_json_atomic

    folder = args.checkpoint_dir
    path = os.path.join(folder, RUN_CONFIG)
    if not os.path.isfile(path):
        raise SystemExit(f"evaluate lra: {path!r} is missing (not a `train lra` checkpoint folder)")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    for key in _DATA_KEYS:  # data flags given here override the stored ones
        if hasattr(args, key):
            cfg[key] = getattr(args, key)
    # a data source given here replaces the stored one (not only the same kind of source)
    if hasattr(args, "generate"):
        cfg["data"] = cfg["hf"] = None
    elif hasattr(args, "data") or hasattr(args, "hf"):
        cfg["generate"] = False
        if not hasattr(args, "hf"):
            cfg["hf"] = None
    cfg["threads"] = args.threads
    ckpt_path = args.checkpoint or os.path.join(folder, "last.pt")
    if not os.path.isfile(ckpt_path):
        raise SystemExit(f"evaluate lra: no checkpoint at {ckpt_path!r}")
    td, model = _prepare(cfg, "evaluate lra")
    model.load_state_dict(load_checkpoint(ckpt_path)["model"])
    loss_fn, metrics_fn = _fns(td.dual)
    dataset = {"test": td.test, "val": td.val, "train": td.train}[args.split]
    config = TrainConfig(
        batch_size=args.batch_size or int(cfg["batch_size"]), device=args.device, progress=False
    )
    trainer = Trainer(model, dataset, None, loss_fn, metrics_fn, config, collate_fn=td.collate)
    metrics = trainer.evaluate(dataset)
    out = {
        "task": cfg["task"],
        "layer": cfg["layer"],
        "split": args.split,
        "checkpoint": os.path.abspath(ckpt_path),
        "samples": len(dataset),
        **metrics,
    }
    print(
        f"{cfg['task']} / {cfg['layer']} / {args.split} ({len(dataset)} samples): "
        f"loss {metrics['loss']:.4f}, accuracy {metrics['accuracy']:.4f}",
        flush=True,
    )
    if args.energy_samples > 0:
        e = energy_summary(trainer.model, td, args.energy_samples, torch.device(args.device))
        print(e.pop("_report"), flush=True)
        out["energy"] = e
    write_json_atomic(args.out or os.path.join(folder, f"eval_{args.split}.json"), out)
    return 0
