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


def test_the_s5_block_mixes_its_spikes_and_its_products_become_accumulates():
    from bpsn_ext.energy import estimate

    torch.manual_seed(0)
    x, lengths = torch.randn(10, 3, 1), torch.tensor([10, 7, 4])
    kw = dict(layer="s5", d_model=8, n_layers=1, d_state=4)
    glu, linear, none = (
        LRAClassifier(1, 3, layer_options={"output": o}, **kw) for o in ("glu", "linear", "none")
    )
    block = glu.blocks[0].inner
    assert block.output_linear.out_features == 16 and linear.blocks[0].inner.output_linear
    assert type(none.blocks[0].inner).__name__ == "SpikingS5"  # the block before the option
    # the GLU block is a * sigmoid(b) of the Linear of the block's spikes
    h = torch.randn(10, 3, 8)
    s = block.s5(h, lengths)
    a, b = block.output_linear(s).chunk(2, dim=-1)
    torch.testing.assert_close(block(h, lengths), a * torch.sigmoid(b))
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    # the spikes drive the Linear: accumulates, not multiply-accumulates
    glu.eval()
    none.eval()
    with torch.no_grad():
        mixed, plain = (estimate(m, x, lengths, coding="individual") for m in (glu, none))
    assert mixed.per_sample()["ac"] > 0 and plain.per_sample()["ac"] == 0
    with pytest.raises(ValueError, match=r"s5 block's output must be one of \('glu'"):
        LRAClassifier(1, 3, layer_options={"output": "gelu"}, **kw)


@pytest.mark.parametrize("layer", ["binary_s4d", "gsu", "s4d"])
def test_a_batch_without_padding_takes_the_unmasked_path(layer):
    # the loaders give lengths for every batch; when none is short, the forward and the
    # gradients are those of no mask at all (the channel-major path of the FFT blocks)
    torch.manual_seed(0)
    model = LRAClassifier(1, 4, layer=layer, d_model=16, n_layers=2, d_state=8, norm="batch")
    x = torch.randn(20, 6, 1)
    grads = []
    for mask in (None, torch.full((6,), 20), torch.ones(20, 6, dtype=torch.bool)):
        model.zero_grad()
        out = model(x, mask)
        out.square().sum().backward()
        grads.append((out.detach(), model.encoder.weight.grad.clone()))
    for out, grad in grads[1:]:
        assert torch.equal(out, grads[0][0]) and torch.equal(grad, grads[0][1])
