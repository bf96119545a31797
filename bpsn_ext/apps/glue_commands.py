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

from bpsn_ext.apps.snn_bert_flags import (
    RUN_PATHS,
    add_model_arguments,
    add_optim_arguments,
    add_rate_arguments,
    add_vocab_arguments,
    make_tokenizer,
    model_config,
    rate_reg,
    train_config,
)
from bpsn_ext.models.size_limits import read_model_file
from bpsn_ext.util.cli_args import flag_errors, positive_int

TRAIN_HELP = "train SNN-BERT on a GLUE task"
EVALUATE_HELP = "evaluate an SNN-BERT checkpoint on a GLUE task"
TASK_NAMES = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")


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
    add_rate_arguments(g)
    g.add_argument("--eval-split", default="dev", help="dev (MNLI: dev_matched/dev_mismatched)")
    g.add_argument("--max-train-samples", type=positive_int, help="use the first N training rows")
    g.add_argument("--max-eval-samples", type=positive_int, help="use the first N eval rows")
    g.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    g.add_argument("--threads", type=positive_int, help="torch.set_num_threads")
    g.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    g.add_argument("--no-energy", action="store_true", help="skip the final energy report")


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
    parser.add_argument("--batch-size", type=positive_int, default=64, help="batch (64)")
    parser.add_argument("--max-samples", type=positive_int, help="use the first N rows")
    parser.add_argument("--json", dest="json_path", help="write the metrics here as JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    parser.add_argument("--energy", action="store_true", help="print the energy report too")
    parser.add_argument(
        "--energy-samples",
        type=positive_int,
        default=8,
        help="the energy report counts the first N samples of the split (8, as in train glue)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (cpu)")
    parser.add_argument("--threads", type=positive_int, help="torch.set_num_threads")


# ---------------------------------------------------------------------------- pieces
def load_examples(args: argparse.Namespace, task: str, split: str) -> list:
    """The examples of ``split`` from ``--data`` (TSV) or ``--hf``."""
    from bpsn_ext.data.glue import load_glue, load_glue_hf

    if getattr(args, "hf", None):
        try:
            return load_glue_hf(args.hf, task, split)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{err}; or pass a GLUE TSV tree with --data") from err
    return load_glue(args.data, task, split, skip_bad_rows=args.skip_bad_rows)


def _new_model_setup(args: argparse.Namespace, task, train_ex):
    """``(config, tokenizer, encoder state or None)`` of a new run: from ``--init-from RUN``
    (its architecture, tokenizer and weights), the teacher run's tokenizer, or the flags."""
    import dataclasses

    from bpsn_ext.models import SNNBertConfig
    from bpsn_ext.train.snn_bert_runs import is_run_dir, read_run

    if is_run_dir(args.init_from):
        if args.vocab:
            raise ValueError(
                "--vocab and --init-from RUN_DIR both give the tokenizer; the run's "
                "is used, drop --vocab"
            )
        saved, tokenizer, state = read_run(args.init_from)
        config = dataclasses.replace(
            SNNBertConfig.from_dict(saved["config"]),
            num_labels=task.num_labels,
            pooling=args.pooling,
            dropout=float(args.dropout),
        )
        return config, tokenizer, state
    if is_run_dir(args.teacher) and not args.vocab:
        tokenizer = read_run(args.teacher)[1]
    else:
        tokenizer = make_tokenizer(
            args, lambda: [x for e in train_ex for x in (e.text_a, e.text_b) if x]
        )
    return model_config(args, tokenizer.vocab_size, task.num_labels), tokenizer, None


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
        rate_reg(args)
        with open_run_folder(args.out, settings, resume=args.resume, overwrite=args.overwrite):
            return _run_train(args, task, callbacks)


def _run_train(args: argparse.Namespace, task, callbacks: Sequence) -> int:
    import torch

    from bpsn_ext.data.glue import GlueCollator, GlueDataset
    from bpsn_ext.models.snn_bert_glue import make_task_fns
    from bpsn_ext.train import Trainer
    from bpsn_ext.train.snn_bert_runs import energy_hook, load_teacher

    train_ex, eval_ex = _train_eval_examples(args, task.name)
    model, tokenizer = _student(args, task, train_ex)
    teacher = load_teacher(args.teacher, task.name, tokenizer) if args.teacher else None

    train_ds = GlueDataset(train_ex, tokenizer, model.config.max_length)
    eval_ds = GlueDataset(eval_ex, tokenizer, model.config.max_length)
    collate = GlueCollator(tokenizer.pad_id)
    loss_fn, metrics_fn, reduce_fn = make_task_fns(
        task.name,
        teacher,
        args.distill_alpha,
        args.distill_temperature,
        rate_reg(args),
    )
    tc = train_config(args, len(train_ds))
    energy_fn = None if args.no_energy else energy_hook(eval_ds, collate, args.out)
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
    from bpsn_ext.train.snn_bert_runs import MODEL_FILE, TOKENIZER_FILE, process_rank
    from bpsn_ext.util.files import write_json_atomic

    config, tokenizer, init_state = _resumed_or_new_setup(args, task, train_ex)
    torch.manual_seed(args.seed)
    model = SNNBert(config)
    _init_weights(args, model, init_state)
    if process_rank() == 0 and not args.resume:
        tokenizer.save(os.path.join(args.out, TOKENIZER_FILE))
        write_json_atomic(
            os.path.join(args.out, MODEL_FILE),
            {"task": task.name, "config": config.to_dict(), "eval_split": args.eval_split},
        )
    return model, tokenizer


def _resumed_or_new_setup(args: argparse.Namespace, task, train_ex):
    """``(config, tokenizer, encoder state or None)``: under ``--resume`` the run's own
    ``model.json`` and tokenizer, else those of `_new_model_setup`."""
    from bpsn_ext.data.tokenizer import WordPieceTokenizer
    from bpsn_ext.models import SNNBertConfig
    from bpsn_ext.train.snn_bert_runs import MODEL_FILE, TOKENIZER_FILE

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
    from bpsn_ext.train.snn_bert_runs import process_rank

    rank0 = process_rank() == 0
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


def _print_final(final: dict, out: str) -> None:
    """The final metrics as one JSON line, then the energy per sample (if measured)."""
    from bpsn_ext.train.snn_bert_runs import ENERGY_FILE

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
def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a ``train glue`` run on a split (and print its energy report with
    ``--energy``); ``--json`` also writes the result."""
    import torch

    from bpsn_ext.data.glue import GlueCollator, GlueDataset
    from bpsn_ext.models.snn_bert_glue import energy_report, energy_summary, evaluate_model
    from bpsn_ext.train.devices import check_device
    from bpsn_ext.train.snn_bert_runs import load_trained
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
        result["energy_samples"] = min(args.energy_samples, len(examples))
        report = energy_report(
            model,
            GlueDataset(examples, tokenizer, model.config.max_length),
            GlueCollator(tokenizer.pad_id),
            batch_size=args.energy_samples,
        )
        print(report)
        result["energy"] = energy_summary(report)
    print(json.dumps(result))
    if args.json_path:
        with flag_errors("evaluate glue"):
            write_json_atomic(args.json_path, result, replace=args.overwrite)
        print(f"metrics: {args.json_path}")
    else:
        print("metrics printed only (--json PATH writes them)")
    return 0
