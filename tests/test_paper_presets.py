"""``train lra --preset paper-*``: the paper-size configurations build the model they describe
(widths, depth, parameter count) without training, and refuse a task they are not for."""

from types import SimpleNamespace

import pytest

from bpsn_ext.apps import lra_commands as lra_app
from bpsn_ext.cli import build_parser
from bpsn_ext.models.lra_classifier import LRA_PRESETS, PAPER_PRESETS, preset_values


def _cfg(task, preset, *flags):
    argv = ["train", "lra", "--task", task, "--preset", preset, *flags]
    return lra_app._resolve(build_parser().parse_args(argv))


def _block_params(H, N, glu=True):
    """S4D (log_dt, D: H; log_A_real, A_imag: H N/2; C: H N/2 complex) + GLU Linear + norm."""
    s4d = H * (2 + 4 * (N // 2))
    linear = (2 * H if glu else H) * (H + 1)
    return s4d + linear + 2 * H


# task, preset, flags, (d_input, n_classes, vocab), (depth, width, norm, prenorm, dropout)
CASES = [
    ("listops", "paper-listops", ["--generate"], (1, 10, 18), (8, 128, "batch", False, 0.0)),
    ("pathfinder", "paper-pathfinder", ["--generate"], (1, 2, None), (6, 256, "batch", True, 0.0)),
    ("fashion-mnist", "paper-sfmnist", [], (1, 10, None), (4, 128, "layer", False, 0.1)),
]


@pytest.mark.parametrize("task, preset, flags, io, shape", CASES, ids=[c[1] for c in CASES])
def test_paper_preset_builds_the_model_it_describes(task, preset, flags, io, shape):
    cfg = _cfg(task, preset, *flags)
    depth, width, norm, prenorm, dropout = shape
    assert (cfg.n_layers, cfg.d_model, cfg.norm, cfg.prenorm) == shape[:4]
    assert cfg.dropout == dropout and cfg.d_state == 64 and cfg.surrogate == "atan"
    assert cfg.preset == preset and cfg.layer == "binary_s4d"
    d_input, n_classes, vocab = io
    td = SimpleNamespace(d_input=d_input, n_classes=n_classes, vocab_size=vocab, dual=False)
    model = cfg.build_model(td)
    assert len(model.blocks) == depth
    block = model.blocks[0]
    assert (block.d_model, block.ssm.d_state, block.norm.kind, block.prenorm) == (
        width,
        64,
        norm,
        prenorm,
    )
    assert type(block.activation).__name__ == "ATan"
    encoder = vocab * width if vocab else (d_input + 1) * width
    expected = encoder + depth * _block_params(width, 64) + (width + 1) * n_classes
    assert sum(p.numel() for p in model.parameters()) == expected


def test_paper_presets_carry_the_table_and_their_data_sizes():
    listops = preset_values("paper-listops", "listops")
    table = LRA_PRESETS["listops"]
    assert (listops["lr"], listops["batch_size"], listops["epochs"]) == (0.01, 50, 40)
    assert listops["weight_decay"] == table.weight_decay == 0.05
    assert (listops["n_train"], listops["min_length"], listops["max_length"]) == (96000, 500, 2000)
    path = preset_values("paper-pathfinder", "pathfinder")
    assert (path["lr"], path["epochs"], path["n_train"], path["resolution"]) == (
        0.004,
        200,
        160000,
        32,
    )
    small = preset_values("paper-sfmnist", "fashion-mnist")
    assert (small["n_layers"], small["d_model"], small["epochs"], small["lr"]) == (
        4,
        128,
        100,
        0.01,
    )
    assert all(p.reconstructed and p.note for p in PAPER_PRESETS.values())
    assert "lr" in PAPER_PRESETS["paper-listops"].reconstructed


def test_paper_preset_refuses_another_task_and_flags_still_override():
    with pytest.raises(ValueError, match="preset 'paper-listops' is for task 'listops', not"):
        _cfg("pathfinder", "paper-listops", "--generate")
    cfg = _cfg("listops", "paper-listops", "--generate", "--n-train", "100", "--epochs", "2")
    assert cfg.n_train == 100 and cfg.epochs == 2 and cfg.n_layers == 8
    with pytest.raises(ValueError, match="preset must be one of"):
        preset_values("paper-text", "text")
