"""``bpsn-ext train glue`` / ``bpsn-ext evaluate glue``: SNN-BERT on a GLUE task.

Training runs on the shared `bpsn_ext.train.Trainer` (tqdm, atomic checkpoints,
``--resume`` mid-epoch, ``metrics.json``, DDP under ``torchrun``).  The output folder holds
``last.pt`` (trainer checkpoint), ``metrics.json``, ``model.json`` (task + model config),
``tokenizer.json`` and ``energy.json`` (the energy report of one dev batch, at the end).
``evaluate glue --checkpoint DIR`` rebuilds the model from these files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from bpsn_ext.models.size_limits import read_model_file
from bpsn_ext.util.cli_args import flag_errors, positive_int, seed_int

TRAIN_HELP = "train SNN-BERT on a GLUE task"
EVALUATE_HELP = "evaluate an SNN-BERT checkpoint on a GLUE task"
TASK_NAMES = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")
MODEL_FILE, TOKENIZER_FILE, ENERGY_FILE = "model.json", "tokenizer.json", "energy.json"
RUN_PATHS = ("data", "vocab", "init_from", "teacher", "text")  # settings that name files


# the integer-valued neuron options; every other number is a hyper-parameter, passed as a float
_INT_OPTIONS = frozenset({"channels", "window", "refractory_steps", "channel_dim"})
# options whose values are names, kept as given (runaway=none is the string "none")
_NAME_OPTIONS = frozenset({"kernel", "fusion", "runaway", "method", "reset", "surrogate"})


def _option(text: str) -> tuple[str, object]:
    """``KEY=VALUE``: true/false/none, a number (an int for the integer options such as
    ``refractory_steps``, else a float, so ``tau=3`` gives 3.0), or a string; the named
    options (``runaway``, ``fusion``, ``kernel``, ``method``, ``reset``, ``surrogate``) keep
    their value as given, so ``runaway=none`` is the rule ``"none"``."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if key in _NAME_OPTIONS:
        return key, raw
    low = raw.lower()
    if low in ("true", "false"):
        return key, low == "true"
    if low == "none":
        return key, None
    if key in _INT_OPTIONS:
        try:
            return key, int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{key} takes an integer, got {raw!r}") from None
    try:
        return key, float(raw)
    except ValueError:
        return key, raw


def _add_data_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    src = parser.add_mutually_exclusive_group(required=required)
    src.add_argument(
        "--data", help="GLUE TSV root (<root>/<TASK>/train.tsv, dev.tsv) or a task folder"
    )
    src.add_argument(
        "--hf",
        help="HF datasets: a load_from_disk folder, or a cached name such "
        "as glue:sst2 (loaded offline)",
    )
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="skip malformed TSV rows instead of stopping at the first",
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``train glue``."""
    parser.add_argument("--task", required=True, choices=TASK_NAMES, help="GLUE task")
    _add_data_arguments(parser, required=True)
    parser.add_argument(
        "--out",
        "--checkpoint-dir",
        dest="out",
        required=True,
        help="output folder (checkpoints, metrics)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run in OUT (otherwise refused)"
    )
    add_model_arguments(parser.add_argument_group("model"))
    g = parser.add_argument_group("tokenizer and initialisation (all local, never downloaded)")
    add_vocab_arguments(g)
    g.add_argument(
        "--init-from",
        metavar="DIR",
        help="a `bpsn-ext pretrain` (or `train glue`) run folder: its encoder "
        "weights, tokenizer and architecture (the model flags are ignored); or a "
        "local HF BERT folder: copy the matching weights",
    )
    g.add_argument(
        "--teacher",
        metavar="DIR",
        help="logit distillation from a `train glue` run folder of the same task "
        "(e.g. the ANN twin; its tokenizer is used unless --vocab/--init-from give "
        "one, which must then be the same), or a local fine-tuned HF model folder "
        "(needs the same vocabulary: use its vocab.txt with --vocab)",
    )
    g.add_argument(
        "--distill-alpha", type=float, default=0.5, help="weight of the distillation term (0.5)"
    )
    g.add_argument(
        "--distill-temperature",
        type=float,
        default=2.0,
        help="softmax temperature of the distillation (2.0)",
    )
    g = parser.add_argument_group("training")
    add_optim_arguments(g, epochs=3)
    g.add_argument("--eval-split", default="dev", help="dev (MNLI: dev_matched/dev_mismatched)")
    g.add_argument("--max-train-samples", type=positive_int, help="use the first N training rows")
    g.add_argument("--max-eval-samples", type=positive_int, help="use the first N eval rows")
    g.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    g.add_argument("--threads", type=positive_int, help="torch.set_num_threads")
    g.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    g.add_argument("--no-energy", action="store_true", help="skip the final energy report")


def add_model_arguments(g) -> None:
    """The SNN-BERT architecture flags (shared with ``pretrain``)."""
    g.add_argument("--layers", type=positive_int, default=4, help="encoder blocks (4)")
    g.add_argument("--width", type=positive_int, default=256, help="model width D (256)")
    g.add_argument("--heads", type=positive_int, default=4, help="attention heads (4)")
    g.add_argument("--ffn-width", type=positive_int, default=1024, help="FFN width (1024)")
    g.add_argument("--max-length", type=positive_int, default=128, help="tokens per sample (128)")
    g.add_argument(
        "--coding",
        choices=("individual", "repeat", "ann"),
        default="individual",
        help="individual: BPSN over tokens; repeat: LIF over T repeats; ann: the ANN "
        "twin, real-valued activations instead of neurons (individual)",
    )
    g.add_argument(
        "--ann-activation",
        choices=("relu", "gelu", "identity"),
        default="relu",
        help="the ANN twin's activation under --coding ann (relu)",
    )
    g.add_argument("--T", type=positive_int, default=4, help="repeats under --coding repeat (4)")
    g.add_argument(
        "--attention",
        choices=("softmax", "spike_driven"),
        default="softmax",
        help="attention variant (softmax)",
    )
    g.add_argument(
        "--pooling",
        choices=("mean", "cls"),
        default="mean",
        help="mean over real tokens, or the first token (mean)",
    )
    g.add_argument("--dropout", type=float, default=0.1, help="dropout (0.1)")
    g.add_argument(
        "--attn-out-norm",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="a LayerNorm before the attention-output neuron (off)",
    )
    g.add_argument(
        "--input-norm",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="a LayerNorm before each block's input neurons, pre-norm (off)",
    )
    g.add_argument(
        "--bpsn-option",
        action="append",
        type=_option,
        default=[],
        metavar="K=V",
        help="a BPSN argument, over SNN-BERT's default runaway=none; repeat the "
        "flag for several (--bpsn-option fusion=gate --bpsn-option "
        "runaway=refractory)",
    )
    g.add_argument(
        "--lif-option",
        action="append",
        type=_option,
        default=[],
        metavar="K=V",
        help="MultiStepLIF argument for --coding repeat (tau, v_threshold, reset)",
    )


def add_vocab_arguments(g) -> None:
    """``--vocab``, ``--vocab-size``, ``--cased`` (shared with ``pretrain``)."""
    g.add_argument(
        "--vocab",
        help="WordPiece vocab.txt (or a BERT folder holding one); "
        "default: train one on the training split",
    )
    g.add_argument(
        "--vocab-size",
        type=positive_int,
        default=8000,
        help="size of the trained vocabulary (8000)",
    )
    g.add_argument("--cased", action="store_true", help="keep case (default: lowercase)")


def add_optim_arguments(g, epochs: int) -> None:
    """Optimiser, schedule and checkpoint flags (shared with ``pretrain``)."""
    g.add_argument("--epochs", type=positive_int, default=epochs, help=f"({epochs})")
    g.add_argument("--batch-size", type=positive_int, default=32, help="global batch (32)")
    g.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (1e-4)")
    g.add_argument(
        "--neuron-lr-mult",
        type=float,
        default=10.0,
        help="lr factor for the neurons' decays, gates and thresholds (10)",
    )
    g.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (0.01)")
    g.add_argument(
        "--warmup-ratio",
        type=float,
        default=0.1,
        help="linear warm-up, fraction of all steps (0.1)",
    )
    g.add_argument(
        "--scheduler",
        choices=("cosine", "constant"),
        default="cosine",
        help="after the warm-up (cosine)",
    )
    g.add_argument("--grad-clip", type=float, default=1.0, help="gradient norm clip (1.0)")
    g.add_argument("--seed", type=seed_int, default=0, help="weights, batches, dropout (0)")
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="optimizer steps between checkpoints (0: each epoch end)",
    )
    g.add_argument(
        "--collective-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="under torchrun: how long a rank waits for the others before the run stops (600)",
    )


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``evaluate glue``."""
    parser.add_argument(
        "--checkpoint",
        "--checkpoint-dir",
        dest="checkpoint",
        required=True,
        help="a train glue output folder, or its last.pt",
    )
    _add_data_arguments(parser, required=True)
    parser.add_argument("--split", default="dev", help="dev (MNLI: dev_matched/dev_mismatched)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--max-samples", type=positive_int, help="use the first N rows")
    parser.add_argument("--json", dest="json_path", help="write the metrics here as JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    parser.add_argument("--energy", action="store_true", help="print the energy report too")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=positive_int)


# ---------------------------------------------------------------------------- pieces
def load_examples(args: argparse.Namespace, task: str, split: str) -> list:
    from bpsn_ext.data.glue import load_glue, load_glue_hf

    if getattr(args, "hf", None):
        try:
            return load_glue_hf(args.hf, task, split)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{err}; or pass a GLUE TSV tree with --data") from err
    return load_glue(args.data, task, split, skip_bad_rows=args.skip_bad_rows)


def _loss(model, batch, regression: bool, teacher=None, alpha=0.5, temperature=2.0):
    import torch.nn.functional as F

    logits = model(batch["input_ids"], batch["lengths"], batch["segment_ids"])
    if regression:
        loss = F.mse_loss(logits.squeeze(-1), batch["labels"])
    else:
        loss = F.cross_entropy(logits, batch["labels"])
    if teacher is not None:
        import torch

        from bpsn_ext.core.masks import as_mask
        from bpsn_ext.models import SNNBert
        from bpsn_ext.models.hf_bert import distillation_loss, teacher_logits

        ids = batch["input_ids"]
        if isinstance(teacher, SNNBert):  # a run of this project
            with torch.no_grad():
                t = teacher(ids, batch["lengths"], batch["segment_ids"])
        else:
            mask = as_mask(batch["lengths"], ids.shape[0], ids.shape[1], ids.device)
            t = teacher_logits(teacher, ids, mask, batch["segment_ids"])
        loss = distillation_loss(logits, t, loss, alpha=alpha, temperature=temperature)
    return logits, loss


def make_task_fns(task: str, teacher=None, alpha: float = 0.5, temperature: float = 2.0):
    """``(loss_fn, metrics_fn, eval_reduce_fn)`` for the Trainer."""
    import torch

    from bpsn_ext.data.glue import get_task
    from bpsn_ext.data.glue_metrics import glue_metrics

    t = get_task(task)
    regression = t.is_regression

    def loss_fn(model, batch):
        return _loss(model, batch, regression, teacher, alpha, temperature)[1]

    def metrics_fn(model, batch):
        logits, loss = _loss(model, batch, regression)
        pred = logits.squeeze(-1) if regression else logits.argmax(-1)
        return {"pred": pred.cpu(), "label": batch["labels"].cpu(), "loss": loss.item()}

    def eval_reduce_fn(outputs, sizes):
        pred = torch.cat([o["pred"] for o in outputs]).numpy()
        label = torch.cat([o["label"] for o in outputs]).numpy()
        out = glue_metrics(t.name, pred, label)
        out["loss"] = sum(o["loss"] * n for o, n in zip(outputs, sizes)) / sum(sizes)
        return out

    return loss_fn, metrics_fn, eval_reduce_fn


def param_groups_for(neuron_lr_mult: float):
    """AdamW groups: weights with decay; biases, norms, embeddings' norms without; neuron
    parameters (decays, gates, thresholds) without decay at ``lr * neuron_lr_mult``."""

    def groups(model, lr, weight_decay):
        neuron = {id(p) for p in model.neuron_parameters()}
        decay, no_decay, neurons = [], [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if id(p) in neuron:
                neurons.append(p)
            elif p.dim() < 2 or "norm" in name:
                no_decay.append(p)
            else:
                decay.append(p)
        out = [
            {"params": decay, "lr": lr, "weight_decay": weight_decay},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0},
        ]
        if neurons:
            out.append({"params": neurons, "lr": lr * neuron_lr_mult, "weight_decay": 0.0})
        return out

    groups.__qualname__ = f"param_groups_for(neuron_lr_mult={neuron_lr_mult})"
    return groups


def energy_report(model, dataset, collate, batch_size: int = 8):
    """The energy report of one batch (the first ``batch_size`` samples of ``dataset``)."""
    import torch

    from bpsn_ext.energy import estimate

    batch = collate([dataset[i] for i in range(min(batch_size, len(dataset)))])
    device = next(model.parameters()).device
    ids = batch["input_ids"].to(device)
    kwargs = {"mask": batch["lengths"].to(device), "segment_ids": batch["segment_ids"].to(device)}
    cfg = model.config
    with torch.no_grad():
        if cfg.coding != "repeat":
            name = "ANN twin" if cfg.coding == "ann" else "SNN-BERT individual coding"
            return estimate(
                model,
                ids,
                coding="individual",
                forward_kwargs=kwargs,
                title=f"{name}, L={ids.shape[0]}",
            )
        return estimate(
            model,
            ids,
            T=cfg.T,
            coding="repeat",
            batch_size=ids.shape[1],
            forward_kwargs=kwargs,
            title=f"SNN-BERT repeat coding T={cfg.T}, L={ids.shape[0]}",
        )


def _energy_summary(report) -> dict:
    per = report.per_sample()
    keep = (
        "mac",
        "ac",
        "synaptic_energy_pJ",
        "energy_pJ",
        "ann_energy_pJ",
        "ratio",
        "ratio_total",
        "mean_output_rate",
    )
    return {f"{k}_per_sample" if k.endswith(("pJ", "mac", "ac")) else k: per[k] for k in keep}


def _rank() -> int:
    """This process's rank: from an initialised process group, else torchrun's ``RANK``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def _write_json(path: str, data) -> None:
    from bpsn_ext.util.files import write_json_atomic

    write_json_atomic(path, data)


def is_run_dir(path: str | None) -> bool:
    """Whether ``path`` is a run folder of this project (``model.json`` + ``tokenizer.json``
    + ``last.pt``), as opposed to an HF checkpoint folder."""
    from bpsn_ext.train import CHECKPOINT_NAME

    return bool(path) and all(
        os.path.isfile(os.path.join(path, f)) for f in (MODEL_FILE, TOKENIZER_FILE, CHECKPOINT_NAME)
    )


def model_config(args: argparse.Namespace, vocab_size: int, num_labels: int):
    """The ``SNNBertConfig`` of the model flags."""
    from bpsn_ext.models import SNNBertConfig
    from bpsn_ext.models.snn_bert import BPSN_DEFAULTS

    return SNNBertConfig(
        vocab_size=vocab_size,
        num_labels=num_labels,
        layers=args.layers,
        width=args.width,
        heads=args.heads,
        ffn_width=args.ffn_width,
        max_length=args.max_length,
        coding=args.coding,
        T=args.T,
        attention=args.attention,
        pooling=args.pooling,
        dropout=float(args.dropout),
        bpsn_options={**BPSN_DEFAULTS, **dict(args.bpsn_option)},
        lif_options=dict(args.lif_option),
        ann_activation=args.ann_activation,
        attn_out_norm=args.attn_out_norm,
        input_norm=args.input_norm,
    )


def make_tokenizer(args: argparse.Namespace, texts):
    """``--vocab`` (a local vocab.txt), or a vocabulary trained on ``texts`` (a callable
    returning them, called only then)."""
    from bpsn_ext.data.tokenizer import MAX_CHARS_PER_TOKEN, WordPieceTokenizer

    if args.vocab:
        return WordPieceTokenizer.from_vocab(args.vocab, lowercase=not args.cased)
    return WordPieceTokenizer.train(  # memory bounded by max_length, not by a line's length
        texts(),
        args.vocab_size,
        lowercase=not args.cased,
        max_chars=MAX_CHARS_PER_TOKEN * args.max_length,
    )


def _run_files(folder: str):
    """``(saved model.json, tokenizer, model state dict)`` of a run folder."""
    from bpsn_ext.data.tokenizer import WordPieceTokenizer
    from bpsn_ext.train import CHECKPOINT_NAME, load_checkpoint

    saved = read_model_file(os.path.join(folder, MODEL_FILE))
    tokenizer = WordPieceTokenizer.load(os.path.join(folder, TOKENIZER_FILE))
    state = load_checkpoint(os.path.join(folder, CHECKPOINT_NAME), map_location="cpu")["model"]
    return saved, tokenizer, state


def _new_model_setup(args: argparse.Namespace, task, train_ex):
    """``(config, tokenizer, encoder state or None)`` of a new run: from ``--init-from RUN``
    (its architecture, tokenizer and weights), the teacher run's tokenizer, or the flags."""
    import dataclasses

    from bpsn_ext.models import SNNBertConfig

    if is_run_dir(args.init_from):
        if args.vocab:
            raise ValueError(
                "--vocab and --init-from RUN_DIR both give the tokenizer; the run's "
                "is used, drop --vocab"
            )
        saved, tokenizer, state = _run_files(args.init_from)
        config = dataclasses.replace(
            SNNBertConfig.from_dict(saved["config"]),
            num_labels=task.num_labels,
            pooling=args.pooling,
            dropout=float(args.dropout),
        )
        return config, tokenizer, state
    if is_run_dir(args.teacher) and not args.vocab:
        tokenizer = _run_files(args.teacher)[1]
    else:
        tokenizer = make_tokenizer(
            args, lambda: [x for e in train_ex for x in (e.text_a, e.text_b) if x]
        )
    return model_config(args, tokenizer.vocab_size, task.num_labels), tokenizer, None


def _load_teacher(path: str, task: str, tokenizer):
    """A ``train glue`` run of ``task`` (same vocabulary as ``tokenizer``) or an HF model."""
    if not is_run_dir(path):
        from bpsn_ext.models.hf_bert import load_teacher

        return load_teacher(path)
    teacher, teacher_tok, teacher_task = load_trained(path)
    if teacher_task != task:
        raise ValueError(f"--teacher {path!r} was trained on {teacher_task}, not {task}")
    if teacher_tok.tokenizer.get_vocab() != tokenizer.tokenizer.get_vocab():
        raise ValueError(
            f"--teacher {path!r} has another vocabulary than the student: drop "
            "--vocab (the teacher's tokenizer is then used) or pass the same one"
        )
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


# ---------------------------------------------------------------------------- train
def run_train(args: argparse.Namespace, callbacks: Sequence = ()) -> int:
    """Train (or ``--resume``) SNN-BERT; ``callbacks`` go to the Trainer (tests).

    Claims the output folder, reads the examples, builds (or reloads) the tokenizer and the
    model, trains on the shared `Trainer` and prints the final metrics (and energy).
    """
    import torch

    from bpsn_ext.data.glue import get_task
    from bpsn_ext.train.run_folder import open_run_folder, run_settings

    if args.threads:
        torch.set_num_threads(args.threads)
    task = get_task(args.task)
    settings = run_settings(vars(args), RUN_PATHS)
    with flag_errors("train glue"):
        train_config(args, 1)  # its checks (--lr nan, ...) before anything is written
        with open_run_folder(args.out, settings, resume=args.resume, overwrite=args.overwrite):
            return _run_train(args, task, callbacks)


def _run_train(args: argparse.Namespace, task, callbacks: Sequence) -> int:
    import torch

    from bpsn_ext.data.glue import GlueCollator, GlueDataset
    from bpsn_ext.train import Trainer

    train_ex, eval_ex = _train_eval_examples(args, task.name)
    model, tokenizer = _student(args, task, train_ex)
    teacher = _load_teacher(args.teacher, task.name, tokenizer) if args.teacher else None

    train_ds = GlueDataset(train_ex, tokenizer, model.config.max_length)
    eval_ds = GlueDataset(eval_ex, tokenizer, model.config.max_length)
    collate = GlueCollator(tokenizer.pad_id)
    loss_fn, metrics_fn, reduce_fn = make_task_fns(
        task.name, teacher, args.distill_alpha, args.distill_temperature
    )
    tc = train_config(args, len(train_ds))
    energy_fn = None if args.no_energy else _energy_fn(eval_ds, collate, args.out)
    if teacher is not None:
        teacher.to(tc.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    trainer = Trainer(
        model,
        train_ds,
        eval_ds,
        loss_fn,
        metrics_fn,
        tc,
        collate_fn=collate,
        energy_fn=energy_fn,
        eval_reduce_fn=reduce_fn,
        callbacks=callbacks,
    )
    try:
        final = trainer.fit(resume=args.resume)
    finally:
        trainer.release()  # drops the DDP wrapper (and the process group if it made it)
    if trainer.rank == 0:
        _print_final(final, args.out)
    return 0


def _train_eval_examples(args: argparse.Namespace, task: str) -> tuple[list, list]:
    """The training and evaluation examples, cut to ``--max-train/eval-samples``."""
    train_ex = load_examples(args, task, "train")
    eval_ex = load_examples(args, task, args.eval_split)
    if args.max_train_samples:
        train_ex = train_ex[: args.max_train_samples]
    if args.max_eval_samples:
        eval_ex = eval_ex[: args.max_eval_samples]
    return train_ex, eval_ex


def _student(args: argparse.Namespace, task, train_ex):
    """``(model, tokenizer)`` of the run, initialised as the flags say; a new run also writes
    its tokenizer and ``model.json`` (rank 0)."""
    import torch

    from bpsn_ext.models import SNNBert

    config, tokenizer, init_state = _resumed_or_new_setup(args, task, train_ex)
    torch.manual_seed(args.seed)
    model = SNNBert(config)
    _init_weights(args, model, init_state)
    if _rank() == 0 and not args.resume:
        tokenizer.save(os.path.join(args.out, TOKENIZER_FILE))
        _write_json(
            os.path.join(args.out, MODEL_FILE),
            {"task": task.name, "config": config.to_dict(), "eval_split": args.eval_split},
        )
    return model, tokenizer


def _resumed_or_new_setup(args: argparse.Namespace, task, train_ex):
    """``(config, tokenizer, encoder state or None)``: under ``--resume`` the run's own
    ``model.json`` and tokenizer, else those of `_new_model_setup`."""
    from bpsn_ext.data.tokenizer import WordPieceTokenizer
    from bpsn_ext.models import SNNBertConfig

    out = args.out
    model_path, tok_path = os.path.join(out, MODEL_FILE), os.path.join(out, TOKENIZER_FILE)
    if args.resume and os.path.isfile(model_path) and os.path.isfile(tok_path):
        tokenizer = WordPieceTokenizer.load(tok_path)
        saved = read_model_file(model_path)
        if saved["task"] != task.name:
            raise ValueError(f"--resume: {out!r} holds a {saved['task']} run, not {task.name}")
        return SNNBertConfig.from_dict(saved["config"]), tokenizer, None
    if args.resume:
        raise FileNotFoundError(
            f"--resume: no {MODEL_FILE}/{TOKENIZER_FILE} in "
            f"{os.path.abspath(out)!r}; run without --resume first"
        )
    return _new_model_setup(args, task, train_ex)


def _init_weights(args: argparse.Namespace, model, init_state) -> None:
    """Load the encoder of an ``--init-from`` run, or copy the weights of an HF BERT folder."""
    rank0 = _rank() == 0
    if init_state is not None:
        from bpsn_ext.models.snn_bert_mlm import load_encoder

        names = load_encoder(model, init_state)
        if rank0:
            print(
                f"initialised the encoder ({len(names)} tensors) from the run {args.init_from}",
                file=sys.stderr,
            )
    elif args.init_from and not args.resume:
        from bpsn_ext.models.hf_bert import load_bert_weights

        info = load_bert_weights(model, args.init_from)
        if rank0:
            print(
                f"initialised {len(info['copied'])} tensors from {args.init_from} "
                f"({len(info['skipped'])} skipped)",
                file=sys.stderr,
            )


def train_config(args: argparse.Namespace, n_train: int):
    """The `TrainConfig` of the flags of `add_optim_arguments` (and ``--out``, ``--device``,
    ``--no-progress``) for ``n_train`` training samples (warm-up: a fraction of all steps);
    shared with ``pretrain``."""
    from bpsn_ext.train import TrainConfig

    steps = -(-n_train // args.batch_size) * args.epochs
    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=float(args.lr),
        weight_decay=float(args.weight_decay),
        seed=args.seed,
        grad_clip=float(args.grad_clip) if args.grad_clip else None,
        checkpoint_dir=args.out,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        param_groups=param_groups_for(float(args.neuron_lr_mult)),
        scheduler=args.scheduler,
        warmup_steps=int(args.warmup_ratio * steps),
        progress=not args.no_progress,
        collective_timeout_s=float(args.collective_timeout),
    )


def _energy_fn(eval_ds, collate, out: str):
    """The Trainer's final hook: the energy report of one dev batch, written to
    ``OUT/energy.json``; returns its per-sample summary."""

    def energy_fn(m):
        report = energy_report(m, eval_ds, collate)
        report.to_json(os.path.join(out, ENERGY_FILE))
        return _energy_summary(report)

    return energy_fn


def _print_final(final: dict, out: str) -> None:
    """The final metrics as one JSON line, then the energy per sample (if measured)."""
    shown = {k: v for k, v in final.items() if k != "energy"}
    print(json.dumps(shown, indent=None))
    if final.get("energy"):
        e = final["energy"]
        print(
            f"energy per sample: {e['synaptic_energy_pJ_per_sample'] / 1e6:.4g} uJ "
            f"synaptic (ANN {e['ann_energy_pJ_per_sample'] / 1e6:.4g} uJ, "
            f"{e['ratio']:.3g}x); report: {os.path.join(out, ENERGY_FILE)}"
        )


# ---------------------------------------------------------------------------- evaluate
def load_trained(checkpoint: str, device: str = "cpu"):
    """``(model, tokenizer, task_name)`` from a ``train glue`` folder or its ``last.pt``."""
    from bpsn_ext.data.tokenizer import WordPieceTokenizer
    from bpsn_ext.models import SNNBert, SNNBertConfig
    from bpsn_ext.train import CHECKPOINT_NAME, load_checkpoint

    folder = checkpoint if os.path.isdir(checkpoint) else os.path.dirname(checkpoint) or "."
    ckpt = os.path.join(checkpoint, CHECKPOINT_NAME) if os.path.isdir(checkpoint) else checkpoint
    for p in (ckpt, os.path.join(folder, MODEL_FILE), os.path.join(folder, TOKENIZER_FILE)):
        if not os.path.isfile(p):
            raise FileNotFoundError(
                f"{os.path.abspath(p)!r} not found: --checkpoint must be a "
                "`bpsn-ext train glue` output folder (or its last.pt)"
            )
    saved = read_model_file(os.path.join(folder, MODEL_FILE))
    if "task" not in saved:
        raise ValueError(
            f"{os.path.abspath(folder)!r} is not a `train glue` run (a `pretrain` "
            "run? fine-tune it with `train glue --init-from` first)"
        )
    model = SNNBert(SNNBertConfig.from_dict(saved["config"]))
    model.load_state_dict(load_checkpoint(ckpt, map_location=device)["model"])
    model.to(device).eval()
    return model, WordPieceTokenizer.load(os.path.join(folder, TOKENIZER_FILE)), saved["task"]


def evaluate_model(
    model, tokenizer, task: str, examples, batch_size: int = 64, device: str = "cpu"
) -> dict:
    """The task's metrics (and mean loss) of ``model`` on ``examples``."""
    import torch

    from bpsn_ext.data.glue import GlueCollator, GlueDataset

    ds = GlueDataset(examples, tokenizer, model.config.max_length)
    collate = GlueCollator(tokenizer.pad_id)
    _, metrics_fn, reduce_fn = make_task_fns(task)
    outputs, sizes = [], []
    was = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(ds), batch_size):
            batch = collate([ds[j] for j in range(i, min(i + batch_size, len(ds)))])
            batch = {k: v.to(device) for k, v in batch.items()}
            outputs.append(metrics_fn(model, batch))
            sizes.append(batch["labels"].shape[0])
    model.train(was)
    return reduce_fn(outputs, sizes)


def run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from bpsn_ext.data.glue import GlueCollator, GlueDataset
    from bpsn_ext.train.devices import check_device
    from bpsn_ext.util.files import refuse_existing, write_json_atomic

    if args.threads:
        torch.set_num_threads(args.threads)
    with flag_errors("evaluate glue"):
        refuse_existing(args.json_path, overwrite=args.overwrite)
    check_device(args.device)
    model, tokenizer, task = load_trained(args.checkpoint, args.device)
    examples = load_examples(args, task, args.split)
    if args.max_samples:
        examples = examples[: args.max_samples]
    metrics = evaluate_model(model, tokenizer, task, examples, args.batch_size, args.device)
    result = {"task": task, "split": args.split, "samples": len(examples), "metrics": metrics}
    if args.energy:
        report = energy_report(
            model,
            GlueDataset(examples, tokenizer, model.config.max_length),
            GlueCollator(tokenizer.pad_id),
        )
        print(report)
        result["energy"] = _energy_summary(report)
    print(json.dumps(result))
    if args.json_path:
        with flag_errors("evaluate glue"):
            write_json_atomic(args.json_path, result, replace=args.overwrite)
    return 0
