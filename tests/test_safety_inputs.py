"""Bad inputs to the models, layers and image readers give errors that name the sample or file
and say what was expected (or, for an empty batch, an empty result)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bpsn_ext.data import pathfinder as pf
from bpsn_ext.layers import GSU, S4D, BinaryS4D, SpikingS5
from bpsn_ext.models import SNNBert, SNNBertConfig
from bpsn_ext.models.lra_classifier import LRAClassifier


def test_lra_classifier_names_a_token_outside_the_vocabulary():
    model = LRAClassifier(1, 3, layer="s4d", d_model=8, n_layers=1, d_state=4, vocab_size=10)
    x = torch.randint(0, 10, (6, 4))
    x[2, 3] = 179
    with pytest.raises(
        ValueError,
        match=r"x\[2, 3\] = 179 \(sample 3, position 2\) is outside "
        r"the vocabulary 0..9",
    ):
        model(x)
    x[2, 3] = -1
    with pytest.raises(ValueError, match="= -1 .*outside the vocabulary"):
        model(x)


def test_lra_classifier_names_a_wrong_d_input():
    model = LRAClassifier(3, 2, layer="s4d", d_model=8, n_layers=1, d_state=4)
    with pytest.raises(
        ValueError,
        match=r"features \[T, N, d_input\] with d_input = 3, got "
        r"\[5, 2, 4\]",
    ):
        model(torch.randn(5, 2, 4))


def test_snn_bert_names_a_token_outside_the_vocabulary():
    model = SNNBert(
        SNNBertConfig(
            vocab_size=50,
            num_labels=2,
            layers=1,
            width=16,
            heads=2,
            ffn_width=16,
            max_length=8,
            T=2,
        )
    )
    ids = torch.ones(4, 2, dtype=torch.long)
    ids[1, 0] = 60
    with pytest.raises(
        ValueError,
        match=r"input_ids\[1, 0\] = 60 .*outside the vocabulary "
        r"0..49",
    ):
        model(ids)
    with pytest.raises(ValueError, match=r"segment_ids\[0, 0\] = 2 .*0..1"):
        model(torch.ones(4, 2, dtype=torch.long), segment_ids=torch.full((4, 2), 2))


@pytest.mark.parametrize(
    "make",
    [
        lambda: S4D(4),
        lambda: S4D(4, bidirectional=True),
        lambda: BinaryS4D(4),
        lambda: GSU(4),
        lambda: SpikingS5(4),
    ],
)
def test_an_empty_batch_gives_an_empty_output(make):
    layer = make()
    x = torch.zeros(10, 0, 4, requires_grad=True)
    y = layer(x)
    assert y.shape == (10, 0, 4)
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_s4d_forward_with_state_takes_an_empty_batch():
    y, state = S4D(4).forward_with_state(torch.zeros(7, 0, 4))
    assert y.shape == (7, 0, 4) and state.shape[:2] == (0, 4)


@pytest.mark.parametrize("keep", [0, 20, 45, 0.5])
def test_a_truncated_pathfinder_png_names_the_file(tmp_path, keep):
    path = tmp_path / "sample_0.png"
    pf.write_png(path, np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep])
    with pytest.raises(
        ValueError,
        match=f"{path}: truncated or corrupt PNG .*expected a complete 8-bit greyscale PNG",
    ):
        pf.read_png(path)


def test_integer_arguments_refuse_bools_and_name_the_argument():
    from bpsn_ext.util.arguments import check_int

    assert check_int("batch", 3) == 3 and check_int("T", None, none_ok=True) is None
    with pytest.raises(ValueError, match=r"^batch must be a positive int, got True$"):
        check_int("batch", True)
    with pytest.raises(ValueError, match=r"^warmup must be an int >= 0, got -1$"):
        check_int("warmup", -1, minimum=0)
    with pytest.raises(ValueError, match=r"^T must be a positive int or None, got 2.0$"):
        check_int("T", 2.0, none_ok=True)
    # a bool is not a layer count (LRAClassifier used to take True for 1)
    with pytest.raises(ValueError, match="n_layers must be a positive int, got True"):
        LRAClassifier(4, 2, n_layers=True)
