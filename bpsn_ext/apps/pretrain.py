"""``bpsn-ext pretrain``: masked-language-model pretraining of SNN-BERT (or its ANN twin).

Reads local plain-text files (one text a line; blank lines skipped) or a HF dataset the user
already has (a ``load_from_disk`` folder or a cached name, loaded offline), holds out
``--eval-samples`` lines (seeded), trains a WordPiece vocabulary on the rest (or takes
``--vocab``), and trains ``bpsn_ext.models.snn_bert_mlm.SNNBertForMaskedLM`` on the shared
``bpsn_ext.train.Trainer`` (progress, atomic checkpoints, exact ``--resume``, DDP under
``torchrun``).  The output folder holds ``last.pt``, ``metrics.json`` (eval MLM loss and
masked-token accuracy per epoch), ``model.json`` and ``tokenizer.json``; ``train glue
--init-from OUT`` fine-tunes its encoder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

from bpsn_ext.apps.snn_bert_flags import (
    RUN_PATHS,
    add_model_arguments,
    add_optim_arguments,
    add_rate_arguments,
    add_vocab_arguments,
    make_tokenizer,
    model_config,
    rate_reg,
    resolve_rate_reg,
    train_config,
)
from bpsn_ext.models.size_limits import read_model_file
from bpsn_ext.util.cli_args import flag_errors, positive_int

PRETRAIN_HELP = "masked-LM pretraining of SNN-BERT (or its ANN twin) on local text"


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``pretrain``."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--text",
        nargs="+",
        metavar="FILE",
        help="plain-text files, one text a line (e.g. generate wordnet-glosses' corpus.txt)",
    )
    src.add_argument(
        "--hf",
        help="HF datasets: a load_from_disk folder or a cached name "
        "(name or name:config; loaded offline, never downloaded)",
    )
    parser.add_argument("--hf-split", default="train", help="split of --hf (train)")
    parser.add_argument("--hf-column", default="text", help="text column of --hf (text)")
    parser.add_argument("--out", required=True, help="output folder (checkpoints, metrics)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run in OUT (otherwise refused)"
    )
    add_model_arguments(parser.add_argument_group("model"))
    add_vocab_arguments(parser.add_argument_group("tokenizer (local, never downloaded)"))
    g = parser.add_argument_group("masked LM")
    g.add_argument(
        "--mask-prob",
        type=float,
        default=0.15,
        help="share of the tokens chosen (80%% [MASK], 10%% random, 10%% kept) (0.15)",
    )
    g.add_argument(
        "--eval-samples",
        type=positive_int,
        default=500,
        help="lines held out for the eval loss (500)",
    )
    g.add_argument("--max-train-samples", type=positive_int, help="use N training lines")
    g = parser.add_argument_group("training")
    add_optim_arguments(g, epochs=1)
    add_rate_arguments(g, pretraining=True)
    g.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    g.add_argument("--threads", type=positive_int, help="torch.set_num_threads")
    g.add_argument("--no-progress", action="store_true", help="no tqdm bars")


def read_lines(paths) -> list[str]:
    """The non-blank lines of the text files, stripped."""
    out = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--text: no file at {os.path.abspath(path)!r}")
        with open(path, encoding="utf-8", errors="replace") as f:
            out += [line.strip() for line in f if line.strip()]
    if not out:
        raise ValueError(f"--text {' '.join(paths)}: no non-blank line to train on")
    return out


def read_hf_lines(source: str, split: str, column: str) -> list[str]:
    """The ``column`` texts of a local HF dataset (offline)."""
    from bpsn_ext.data.glue import load_hf_split

    ds = load_hf_split(source, split)
    if column not in ds.column_names:
        raise ValueError(f"--hf-column {column!r} is not a column of {source!r}: {ds.column_names}")
    return [t.strip() for t in ds[column] if isinstance(t, str) and t.strip()]


def split_lines(lines: list[str], n_eval: int, seed: int) -> tuple[list[str], list[str]]:
    """``(train, eval)``: a seeded choice of ``n_eval`` held-out lines (order kept)."""
    if n_eval >= len(lines):
        raise ValueError(f"--eval-samples {n_eval} leaves nothing to train on ({len(lines)} lines)")
    held = set(random.Random(seed).sample(range(len(lines)), n_eval))
    train = [x for i, x in enumerate(lines) if i not in held]
    return train, [x for i, x in enumerate(lines) if i in held]


def make_mlm_fns(tokenizer, mask_prob: float, rate=None):
    """``(loss_fn, metrics_fn)`` for the Trainer.  Training masks with the global RNG (saved
    and restored by the checkpoints, so resuming is exact); evaluation with a generator
    seeded from the batch, so every evaluation masks the same tokens.  ``rate`` (a
    `bpsn_ext.models.spike_rate_loss.RateReg`, ``--rate-reg``) adds the firing-rate
    regulariser to the training loss; the evaluation loss stays the MLM loss."""
    from contextlib import nullcontext

    import torch
    import torch.nn.functional as F

    from bpsn_ext.core.masks import as_mask
    from bpsn_ext.models.snn_bert_mlm import mask_tokens
    from bpsn_ext.models.spike_rate_loss import RateReg, SpikeRates

    rate = RateReg() if rate is None else rate

    mask_id = tokenizer.tokenizer.token_to_id("[MASK]")
    if mask_id is None:
        raise ValueError("the vocabulary lacks [MASK], which masked-LM pretraining needs")
    special = (tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id)

    def run(model, batch, generator):
        ids = batch["input_ids"]
        real = as_mask(batch["lengths"], ids.shape[0], ids.shape[1], ids.device)
        corrupted, pos = mask_tokens(
            ids,
            real,
            mask_id=mask_id,
            vocab_size=tokenizer.vocab_size,
            special_ids=special,
            mask_prob=mask_prob,
            generator=generator,
        )
        logits = model(corrupted, batch["lengths"], batch["segment_ids"], positions=pos)
        return logits, ids[pos]

    def loss_fn(model, batch):
        rates = SpikeRates(model, rate.weighting) if rate.active else nullcontext()
        with rates:
            logits, target = run(model, batch, None)
        loss = F.cross_entropy(logits, target)
        return loss + rates.penalty(rate.weight, rate.target) if rate.active else loss

    def metrics_fn(model, batch):
        g = torch.Generator().manual_seed(int(batch["input_ids"].sum()) % 2**31)
        logits, target = run(model, batch, g)
        return {
            "mlm_loss": F.cross_entropy(logits, target).item(),
            "masked_accuracy": (logits.argmax(-1) == target).float().mean().item(),
        }

    return loss_fn, metrics_fn


def _setup(args: argparse.Namespace, out: str, train_lines: list[str]):
    """``(config, tokenizer)``: from ``OUT`` under ``--resume``, else from the flags (and
    written there)."""
    from bpsn_ext.data.tokenizer import WordPieceTokenizer
    from bpsn_ext.models import SNNBertConfig
    from bpsn_ext.train.snn_bert_runs import MODEL_FILE, TOKENIZER_FILE, process_rank
    from bpsn_ext.util.files import write_json_atomic

    model_path, tok_path = os.path.join(out, MODEL_FILE), os.path.join(out, TOKENIZER_FILE)
    if args.resume:
        if not (os.path.isfile(model_path) and os.path.isfile(tok_path)):
            raise FileNotFoundError(
                f"--resume: no {MODEL_FILE}/{TOKENIZER_FILE} in "
                f"{os.path.abspath(out)!r}; run without --resume first"
            )
        saved = read_model_file(model_path)
        return SNNBertConfig.from_dict(saved["config"]), WordPieceTokenizer.load(tok_path)
    tokenizer = make_tokenizer(args, lambda: train_lines)
    config = model_config(args, tokenizer.vocab_size, num_labels=1)
    if process_rank() == 0:
        tokenizer.save(tok_path)
        write_json_atomic(
            model_path, {"kind": "mlm", "config": config.to_dict(), "mask_prob": args.mask_prob}
        )
    return config, tokenizer


def run_pretrain(args: argparse.Namespace, callbacks=()) -> int:
    """Pretrain (or ``--resume``); ``callbacks`` go to the Trainer (tests)."""
    import torch

    from bpsn_ext.train.run_folder import open_run_folder, run_settings

    if args.threads:
        torch.set_num_threads(args.threads)
    if not 0.0 < args.mask_prob < 1.0:
        raise ValueError(f"--mask-prob must be in (0, 1), got {args.mask_prob}")
    if resolve_rate_reg(args):  # the run's settings record the weight it trains with
        print(
            f"pretrain: the masked-LM loss adds the firing-rate regulariser, weight "
            f"{args.rate_reg:g} ({args.rate_weighting}-weighted; the default under individual "
            "coding, --rate-reg 0 turns it off)",
            file=sys.stderr,
        )
    settings = run_settings(vars(args), RUN_PATHS)
    with flag_errors("pretrain"):
        train_config(args, 1)  # its checks (--lr nan, ...) before anything is written
        rate_reg(args)
        with open_run_folder(args.out, settings, resume=args.resume, overwrite=args.overwrite):
            return _run_pretrain(args, callbacks)


def _run_pretrain(args: argparse.Namespace, callbacks) -> int:
    import torch

    from bpsn_ext.data.glue import GlueCollator, GlueDataset, GlueExample
    from bpsn_ext.models.snn_bert_mlm import SNNBertForMaskedLM
    from bpsn_ext.train import Trainer

    lines = (
        read_lines(args.text)
        if args.text
        else read_hf_lines(args.hf, args.hf_split, args.hf_column)
    )
    train_lines, eval_lines = split_lines(lines, args.eval_samples, args.seed)
    if args.max_train_samples:
        train_lines = train_lines[: args.max_train_samples]
    os.makedirs(args.out, exist_ok=True)
    config, tokenizer = _setup(args, args.out, train_lines)
    torch.manual_seed(args.seed)
    model = SNNBertForMaskedLM(config)

    def dataset(texts):
        return GlueDataset([GlueExample(t, None, 0) for t in texts], tokenizer, config.max_length)

    train_ds, eval_ds = dataset(train_lines), dataset(eval_lines)
    loss_fn, metrics_fn = make_mlm_fns(tokenizer, float(args.mask_prob), rate_reg(args))
    tc = train_config(args, len(train_ds))
    trainer = Trainer(
        model,
        train_ds,
        eval_ds,
        loss_fn,
        metrics_fn,
        tc,
        collate_fn=GlueCollator(tokenizer.pad_id),
        callbacks=callbacks,
    )
    try:
        final = trainer.fit(resume=args.resume)
    finally:
        trainer.release()
    if trainer.rank == 0:
        print(json.dumps(final))
    return 0
