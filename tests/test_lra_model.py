"""LRAClassifier on every sequence layer, and sequential digits."""

import pytest
import torch

from bpsn_ext.data.sequential import bitreversal_permutation, sequential_digits
from bpsn_ext.models import LAYERS, LRAClassifier


@pytest.mark.parametrize("layer", LAYERS)
def test_every_layer_trains_and_ignores_padding(layer):
    torch.manual_seed(0)
    model = LRAClassifier(1, 4, layer=layer, d_model=16, n_layers=2, d_state=8)
    x = torch.randn(12, 8, 1)
    y = torch.randint(0, 4, (8,))
    lengths = torch.tensor([12, 12, 9, 9, 7, 12, 5, 12])
    model.eval()
    with torch.no_grad():
        out = model(x, lengths)
        junk = x.clone()
        for n, length in enumerate(lengths):
            junk[length:, n] = 50.0
        assert torch.allclose(model(junk, lengths), out, atol=1e-5)  # padding never leaks
        # the padded sample equals the same sample given alone, unpadded
        assert torch.allclose(model(x[:9, 2:3]), out[2:3], atol=1e-5)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model(x, lengths), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_token_inputs_and_errors():
    model = LRAClassifier(0, 10, vocab_size=18, d_model=8, n_layers=1, d_state=4)
    assert model(torch.randint(0, 18, (20, 3)), torch.tensor([20, 5, 9])).shape == (3, 10)
    with pytest.raises(ValueError, match=r"integer tokens \[T, N\]"):
        model(torch.randn(20, 3))
    with pytest.raises(ValueError, match="layer must be one of"):
        LRAClassifier(1, 2, layer="transformer")
    with pytest.raises(ValueError, match=r"features \[T, N, d_input\]"):
        LRAClassifier(1, 2, d_model=8, n_layers=1, d_state=4)(torch.randn(5, 2))


def test_sequential_digits_and_permutations():
    x_train, y_train, x_test, _ = sequential_digits()
    assert x_train.shape == (64, 1437, 1) and x_test.shape == (64, 360, 1)
    assert len(y_train) == 1437
    perm_a, *_ = sequential_digits(permutation="random", permutation_seed=3)
    perm_b, *_ = sequential_digits(permutation="random", permutation_seed=3)
    assert torch.equal(perm_a, perm_b) and not torch.equal(perm_a, x_train)
    # a permutation only reorders the steps of every sample
    assert torch.equal(perm_a.sort(0).values, x_train.sort(0).values)
    assert bitreversal_permutation(8).tolist() == [0, 4, 2, 6, 1, 5, 3, 7]
    with pytest.raises(ValueError, match="power of two"):
        bitreversal_permutation(6)
