"""The flags of ``train lra`` / ``evaluate lra`` that choose the data and the model; their
values become an `bpsn_ext.train.lra_run.LRARunConfig`.

A flag not given is left out of the namespace (``argparse.SUPPRESS``), so the task preset (or,
for ``evaluate``, the stored run) decides.
"""

from __future__ import annotations

import argparse

from bpsn_ext.data.lra_release import TASKS
from bpsn_ext.layers.gsu import GRAD_MODES as GSU_GRAD_MODES
from bpsn_ext.util.cli_args import positive_int, seed_int


def add_data_arguments(parser: argparse.ArgumentParser, required_task: bool) -> None:
    """The data flags of ``train lra`` and ``evaluate lra`` (not given: not in the namespace,
    so the preset or the stored run decides)."""
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


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model flags of ``train lra`` (defaults: the task preset)."""
    from bpsn_ext.models.lra_classifier import LAYERS, PAPER_PRESETS

    S = argparse.SUPPRESS
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
    m.add_argument(
        "--s5-output",
        choices=("glu", "linear", "none"),
        default=S,
        help="s5: the feature mixing of the spikes, glu (default: Linear H -> 2H, a * "
        "sigmoid(b)), linear (H -> H) or none (the spikes go to the residual sum)",
    )
    m.add_argument(
        "--gsu-grad-mode",
        choices=GSU_GRAD_MODES,
        default=S,
        help="gsu: how gradients pass the two ternarisations, default (STE on the weights), "
        "nsa_shared, surrogate (ATan at both thresholds, learnable scales) or prf_surrogate "
        "(the PRF code's GSU); see docs/ssm.md",
    )


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The training, run-folder and reporting flags of ``train lra``."""
    S = argparse.SUPPRESS
    t = parser.add_argument_group("training (defaults: the task preset)")
    t.add_argument("--epochs", type=positive_int, default=S, help="passes over the training set")
    t.add_argument("--batch-size", type=positive_int, default=S, help="global batch")
    t.add_argument("--lr", type=float, default=S, help="peak learning rate (AdamW)")
    t.add_argument(
        "--ssm-lr",
        type=float,
        default=0.001,
        help="learning rate of the SSM parameters (min with --lr; wd 0) (0.001)",
    )
    t.add_argument(
        "--weight-decay", type=float, default=S, help="AdamW weight decay (SSM parameters: 0)"
    )
    t.add_argument(
        "--scheduler",
        choices=("cosine", "constant"),
        default="cosine",
        help="learning-rate schedule after the warm-up (cosine)",
    )
    t.add_argument(
        "--warmup-steps", type=int, default=0, help="linear learning-rate warm-up steps (0)"
    )
    t.add_argument(
        "--grad-clip", type=float, default=None, help="clip the gradient norm to this (none)"
    )
    t.add_argument("--seed", type=seed_int, default=0, help="weights, batch order, generated data")
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
    t.add_argument(
        "--collective-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="under torchrun: how long a rank waits for the others before the run stops (600)",
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
