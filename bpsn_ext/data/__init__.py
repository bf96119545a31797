"""Data for the examples, read from local files or generated (no downloads).

* bundled: `load_digits` (scikit-learn's 8x8 digits), `sequential_digits`;
* generated: `listops`, `pathfinder` (LRA procedures);
* readers: the ``lra_release`` layout (`read_listops_dir`, `read_pathfinder`,
  `read_aan_tsv`), IMDB (`read_imdb`), IDX / MNIST-format (`read_idx`,
  `load_idx_dataset`), CIFAR-10 python batches (`load_cifar10`);
* `load_task`: train / val / test datasets of an LRA or sequential-image task;
* GLUE: `read_glue_tsv` / `load_glue` (the GLUE TSV layout), `load_glue_hf`
  (a HF datasets name or ``save_to_disk`` folder you already have), `WordPieceTokenizer`,
  `glue_metrics`, and `write_glue_fixture` (small made-up files in the GLUE layout).

Importing this package needs only torch; scikit-learn, tokenizers and datasets are imported when
used.
"""

from bpsn_ext.data.digits import DigitsSplit, load_digits
from bpsn_ext.data.glue import TASKS as GLUE_TASKS
from bpsn_ext.data.glue import (
    GlueCollator,
    GlueDataset,
    GlueExample,
    GlueFormatError,
    GlueTask,
    load_glue,
    load_glue_hf,
    read_glue_tsv,
    write_glue_fixture,
)
from bpsn_ext.data.glue_metrics import glue_metrics
from bpsn_ext.data.images import load_cifar10, load_idx_dataset, read_idx
from bpsn_ext.data.lra_release import TASKS, TaskData, load_task, read_listops_dir
from bpsn_ext.data.pathfinder import read_pathfinder, write_pathfinder
from bpsn_ext.data.sequential import bitreversal_permutation, permutation, sequential_digits
from bpsn_ext.data.text import read_aan_tsv, read_imdb
from bpsn_ext.data.tokenizer import WordPieceTokenizer

__all__ = [
    "DigitsSplit",
    "load_digits",
    "sequential_digits",
    "bitreversal_permutation",
    "permutation",
    "read_idx",
    "load_idx_dataset",
    "load_cifar10",
    "read_imdb",
    "read_aan_tsv",
    "read_listops_dir",
    "read_pathfinder",
    "write_pathfinder",
    "load_task",
    "TaskData",
    "TASKS",
    "GLUE_TASKS",
    "GlueCollator",
    "GlueDataset",
    "GlueExample",
    "GlueFormatError",
    "GlueTask",
    "load_glue",
    "load_glue_hf",
    "read_glue_tsv",
    "write_glue_fixture",
    "glue_metrics",
    "WordPieceTokenizer",
]
