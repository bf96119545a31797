"""The SNN-BERT flags shared by ``train glue`` and ``pretrain`` (architecture, tokenizer,
optimiser) and the configs they make: `model_config` (an `SNNBertConfig`), `train_config`
(a `TrainConfig`) and `make_tokenizer`.

Example::

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    config = model_config(parser.parse_args(["--coding", "repeat"]), vocab_size=100, num_labels=2)
"""

from __future__ import annotations

import argparse

from bpsn_ext.util.cli_args import positive_int, seed_int

RUN_PATHS = ("data", "vocab", "init_from", "teacher", "text")  # run settings that name files

# the integer-valued neuron options; every other number is a hyper-parameter, passed as a float
_INT_OPTIONS = frozenset({"channels", "window", "refractory_steps", "channel_dim"})


# options whose values are names, kept as given (runaway=none is the string "none")
_NAME_OPTIONS = frozenset({"kernel", "fusion", "runaway", "method", "reset", "surrogate"})


def neuron_option(text: str) -> tuple[str, object]:
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


def bpsn_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of a BPSN option, typed by `bpsn_ext.BPSNOptions.parse` (``surrogate``:
    a surrogate name such as ``atan:1``, kept as given)."""
    from bpsn_ext.core.bpsn_options import BPSNOptions

    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if key == "surrogate":
        return key, raw
    try:
        return BPSNOptions.parse(key, raw)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


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
        type=bpsn_option,
        default=[],
        metavar="K=V",
        help="a BPSN argument, over SNN-BERT's default runaway=none; repeat the "
        "flag for several (--bpsn-option fusion=gate --bpsn-option "
        "runaway=refractory)",
    )
    g.add_argument(
        "--lif-option",
        action="append",
        type=neuron_option,
        default=[],
        metavar="K=V",
        help="MultiStepLIF argument for --coding repeat (tau, v_threshold, reset)",
    )


PRETRAIN_RATE_REG = 1.0
"""``pretrain``'s default ``--rate-reg`` under ``--coding individual`` (0 under the others)."""


def add_rate_arguments(g, pretraining: bool = False) -> None:
    """``--rate-reg WEIGHT``, ``--rate-target RATE``, ``--rate-weighting``: the firing-rate
    regulariser of the BPSN outputs (`bpsn_ext.models.spike_rate_loss`; individual coding only).
    ``pretraining``: ``--rate-reg`` defaults to `PRETRAIN_RATE_REG` under individual coding
    (see `resolve_rate_reg`), else to 0."""
    default = "1 under --coding individual, else 0" if pretraining else "0: off"
    g.add_argument(
        "--rate-reg",
        type=float,
        default=None if pretraining else 0.0,
        metavar="WEIGHT",
        help="add WEIGHT * mean over BPSNs of max(0, firing rate - target) to the training "
        f"loss (0: off; default {default})",
    )
    g.add_argument(
        "--rate-target",
        type=float,
        default=0.0,
        metavar="RATE",
        help="firing rate under which --rate-reg leaves a BPSN alone (0.0)",
    )
    g.add_argument(
        "--rate-weighting",
        choices=("neuron", "synapse"),
        default="synapse",
        help="--rate-reg's mean over BPSNs: each alike, or weighted by the synapses its "
        "spikes drive (synapse)",
    )


def resolve_rate_reg(args: argparse.Namespace) -> bool:
    """Fill in ``pretrain``'s default ``--rate-reg`` (None): `PRETRAIN_RATE_REG` under
    ``--coding individual``, 0 under the codings without BPSN neurons.  True when the default
    turned the regulariser on."""
    if args.rate_reg is not None:
        return False
    args.rate_reg = PRETRAIN_RATE_REG if args.coding == "individual" else 0.0
    return args.rate_reg > 0


def rate_reg(args: argparse.Namespace):
    """The `RateReg` of ``--rate-reg`` (``pretrain`` resolves its default first,
    `resolve_rate_reg`), ``--rate-target`` and ``--rate-weighting``; an active one is refused
    unless ``--coding individual`` (the only coding with BPSN neurons)."""
    from bpsn_ext.models.spike_rate_loss import RateReg

    rate = RateReg(float(args.rate_reg), float(args.rate_target), args.rate_weighting)
    if rate.active and args.coding != "individual":
        raise ValueError(
            f"--rate-reg regularises BPSN neurons, which --coding {args.coding} has none "
            "of (use --coding individual, or --rate-reg 0)"
        )
    return rate


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


def model_config(args: argparse.Namespace, vocab_size: int, num_labels: int):
    """The ``SNNBertConfig`` of the model flags."""
    from bpsn_ext.core.bpsn_options import BPSNOptions
    from bpsn_ext.models import SNNBertConfig
    from bpsn_ext.models.snn_bert import BPSN_DEFAULTS

    bpsn_options = {**BPSN_DEFAULTS, **dict(args.bpsn_option)}
    # the one options record checks the values (and their combination) before any work
    BPSNOptions(**{k: v for k, v in bpsn_options.items() if k != "surrogate"})
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
        bpsn_options=bpsn_options,
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


def train_config(args: argparse.Namespace, n_train: int):
    """The `TrainConfig` of the flags of `add_optim_arguments` (and ``--out``, ``--device``,
    ``--no-progress``) for ``n_train`` training samples (warm-up: a fraction of all steps);
    shared with ``pretrain``."""
    from bpsn_ext.optim import neuron_param_groups
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
        param_groups=neuron_param_groups(float(args.neuron_lr_mult)),
        scheduler=args.scheduler,
        warmup_steps=int(args.warmup_ratio * steps),
        progress=not args.no_progress,
        collective_timeout_s=float(args.collective_timeout),
    )
