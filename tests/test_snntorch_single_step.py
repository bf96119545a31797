"""``bpsn_ext.snntorch.SingleStepLeaky``: the S3NN single-step neuron as an ``snn.Leaky``.

Reference: a freshly constructed ``snn.Leaky`` with the S2NN ``spike_grad`` called once (one step
from a zero membrane), and the S3NN definition ``mem = x``, ``spk = Theta(x - threshold)`` with
snnTorch's ``>`` tie rule (snnTorch 1.0.0's ``Leaky``; Suetake et al. 2023).
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")

import snntorch.functional as SF  # noqa: E402
import snntorch.utils as snn_utils  # noqa: E402
from snntorch import spikegen  # noqa: E402

from bpsn_ext.snntorch import SingleStepLeaky  # noqa: E402
from bpsn_ext.surrogate import S2NN  # noqa: E402

B, C = 5, 6
RESETS = ("subtract", "zero", "none")


@pytest.fixture(autouse=True)
def _restore_instances():
    """snnTorch keeps every neuron in a global list that ``utils.reset`` walks; keep it clean."""
    saved = list(snn.SpikingNeuron.instances)
    yield
    snn.SpikingNeuron.instances[:] = saved


def _fresh_leaky(**kwargs) -> snn.Leaky:
    """The reference: a new ``snn.Leaky`` with the S2NN surrogate and snnTorch's ``>`` tie rule."""
    kwargs.setdefault("beta", 0.9)
    kwargs.setdefault("spike_grad", S2NN(fire_ge=False))
    return snn.Leaky(**kwargs)


def _input(seed: int = 0, shape=(B, C), dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * 1.5 + 0.5).to(dtype)


def _s2nn_grad(x: torch.Tensor, alpha: float = 4.0, beta: float = 1.0) -> torch.Tensor:
    """g'(x) = alpha sig(alpha x)(1 - sig(alpha x)) for x < 0, beta / (x + 1) for x >= 0."""
    out = torch.empty_like(x)
    for i, v in enumerate(x.flatten().tolist()):
        if v < 0:
            s = 1.0 / (1.0 + math.exp(-alpha * v))
            out.view(-1)[i] = alpha * s * (1.0 - s)
        else:
            out.view(-1)[i] = beta / (v + 1.0)
    return out


def _spk_mem(out):
    assert isinstance(out, tuple) and len(out) == 2
    return out


# --------------------------------------------------------------------------------------------
# Equivalence with a fresh snn.Leaky called once
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reset_mechanism", RESETS)
@pytest.mark.parametrize("reset_delay", [True, False])
@pytest.mark.parametrize("graded", [1.0, 2.5])
@pytest.mark.parametrize("per_channel", [False, True])
def test_equals_fresh_leaky_called_once(reset_mechanism, reset_delay, graded, per_channel):
    if per_channel:
        threshold = torch.linspace(0.3, 1.8, C)
    else:
        threshold = 0.8
    kwargs = dict(
        beta=0.7,
        threshold=threshold,
        reset_mechanism=reset_mechanism,
        reset_delay=reset_delay,
        graded_spikes_factor=graded,
        learn_threshold=per_channel,
        learn_graded_spikes_factor=per_channel,
    )
    ref = _fresh_leaky(**kwargs)
    new = SingleStepLeaky(**kwargs)

    x = _input(1)
    xr = x.clone().requires_grad_()
    xn = x.clone().requires_grad_()
    spk_r, mem_r = _spk_mem(ref(xr))
    spk_n, mem_n = _spk_mem(new(xn))

    assert 0 < (spk_n != 0).sum() < spk_n.numel(), "test input must both fire and not fire"
    assert torch.equal(spk_n, spk_r)
    torch.testing.assert_close(mem_n, mem_r, rtol=2e-5, atol=4e-6)

    g = torch.Generator().manual_seed(7)
    w_spk, w_mem = torch.randn(B, C, generator=g), torch.randn(B, C, generator=g)
    params_r = [xr] + ([ref.threshold, ref.graded_spikes_factor] if per_channel else [])
    params_n = [xn] + ([new.threshold, new.graded_spikes_factor] if per_channel else [])
    grads_r = torch.autograd.grad((spk_r * w_spk).sum() + (mem_r * w_mem).sum(), params_r)
    grads_n = torch.autograd.grad((spk_n * w_spk).sum() + (mem_n * w_mem).sum(), params_n)
    for gn, gr in zip(grads_n, grads_r):
        torch.testing.assert_close(gn, gr, rtol=2e-5, atol=4e-6)
    assert grads_n[0].abs().sum() > 0


@pytest.mark.parametrize("reset_mechanism", RESETS)
@pytest.mark.parametrize("reset_delay", [True, False])
def test_matches_s3nn_definition(reset_mechanism, reset_delay):
    """Independent reference: mem = x, spk = (x > thr) * factor, reset applied iff no delay."""
    thr, factor = 0.6, 1.5
    n = SingleStepLeaky(
        threshold=thr,
        reset_mechanism=reset_mechanism,
        reset_delay=reset_delay,
        graded_spikes_factor=factor,
    )
    x = _input(2)
    spk, mem = n(x)
    fired = (x > thr).float()
    assert torch.equal(spk, fired * factor)
    expected = x.clone()
    if not reset_delay and reset_mechanism == "subtract":
        expected = x - fired * thr
    elif not reset_delay and reset_mechanism == "zero":
        expected = x * (1 - fired)
    torch.testing.assert_close(mem, expected, rtol=2e-5, atol=4e-6)


def test_default_spike_grad_is_s2nn_with_snntorch_tie_rule():
    n = SingleStepLeaky()
    assert isinstance(n.spike_grad, S2NN)
    assert n.spike_grad.fire_ge is False
    assert (n.spike_grad.alpha, n.spike_grad.beta) == (4.0, 1.0)


def test_s2nn_gradient_equals_formula_at_input_minus_threshold():
    thr = 0.7
    n = SingleStepLeaky(threshold=thr)
    offsets = torch.tensor([-3.0, -1.0, -0.5, -0.1, -1e-3, 0.0, 1e-3, 0.1, 0.5, 1.0, 3.0])
    x = (torch.full_like(offsets, thr) + offsets).requires_grad_()
    spk, _ = n(x)
    (grad,) = torch.autograd.grad(spk.sum(), x)
    shift = (x.detach() - torch.tensor(thr)).double()  # x - threshold, as the neuron computes it
    torch.testing.assert_close(grad, _s2nn_grad(shift).float(), rtol=1e-5, atol=1e-7)


def test_s2nn_gradient_sample_values_and_continuity():
    """S2NN (Suetake et al. 2023) sample values of g' at -1, -0.5, 0, 0.5, 1, 3; g'(0) = 1
    (continuous)."""
    n = SingleStepLeaky(threshold=1.0)
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 4.0], requires_grad=True)
    spk, _ = n(x)
    (grad,) = torch.autograd.grad(spk.sum(), x)
    expected = torch.tensor([0.0707, 0.4200, 1.0, 2 / 3, 0.5, 0.25])
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-4)
    assert torch.equal(spk, torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))


def test_custom_s2nn_parameters_are_used():
    n = SingleStepLeaky(threshold=0.0, spike_grad=S2NN(alpha=2.0, beta=0.5, fire_ge=False))
    x = torch.tensor([-2.0, -0.3, 0.0, 0.4, 2.0], requires_grad=True)
    spk, _ = n(x)
    (grad,) = torch.autograd.grad(spk.sum(), x)
    expected = _s2nn_grad(x.detach().double(), alpha=2.0, beta=0.5).float()
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)


def test_snntorch_surrogate_callable_is_used_as_given():
    from snntorch import surrogate

    ref = snn.Leaky(beta=0.5, threshold=0.5, spike_grad=surrogate.fast_sigmoid(slope=10))
    new = SingleStepLeaky(threshold=0.5, spike_grad=surrogate.fast_sigmoid(slope=10))
    xr = _input(3).requires_grad_()
    xn = xr.detach().clone().requires_grad_()
    spk_r, _ = ref(xr)
    spk_n, _ = new(xn)
    assert torch.equal(spk_n, spk_r)
    (gr,) = torch.autograd.grad(spk_r.sum(), xr)
    (gn,) = torch.autograd.grad(spk_n.sum(), xn)
    torch.testing.assert_close(gn, gr)
    # and it is not the S2NN gradient
    assert not torch.allclose(gn, _s2nn_grad((xn.detach() - 0.5).double()).float())


# --------------------------------------------------------------------------------------------
# No state between calls
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init_hidden", [False, True])
def test_calling_twice_gives_identical_output(init_hidden):
    n = SingleStepLeaky(beta=0.9, threshold=0.5, init_hidden=init_hidden, output=init_hidden)
    x = _input(4).abs()  # positive: a stateful Leaky would accumulate
    spk1, mem1 = n(x)
    spk2, mem2 = n(x)
    assert torch.equal(spk1, spk2)
    assert torch.equal(mem1, mem2)
    # a real Leaky configured the same way does change on the second call (the test can fail)
    ref = _fresh_leaky(beta=0.9, threshold=0.5, init_hidden=init_hidden, output=init_hidden)
    r1, rm1 = ref(x)
    r2, rm2 = ref(x)
    assert not torch.equal(rm1, rm2)


def test_explicit_mem_loop_gives_independent_steps():
    T = 4
    x = torch.stack([_input(10 + t).abs() for t in range(T)])  # [T, B, C]
    n = SingleStepLeaky(beta=0.9, threshold=0.8)
    mem = n.init_leaky()
    looped_spk, looped_mem = [], []
    for t in range(T):
        spk, mem = n(x[t], mem)
        looped_spk.append(spk)
        looped_mem.append(mem)
    for t in range(T):
        alone_spk, alone_mem = SingleStepLeaky(beta=0.9, threshold=0.8)(x[t])
        assert torch.equal(looped_spk[t], alone_spk)
        assert torch.equal(looped_mem[t], alone_mem)

    # the same loop with a Leaky carries state: step 1 differs from step 1 alone
    ref = _fresh_leaky(beta=0.9, threshold=0.8)
    mem = ref.init_leaky()
    _, mem = ref(x[0], mem)
    _, mem = ref(x[1], mem)
    assert not torch.allclose(mem, looped_mem[1])


def test_given_mem_is_ignored():
    n = SingleStepLeaky(beta=0.9, threshold=1.0)
    x = _input(5)
    spk0, mem0 = n(x)
    spk1, mem1 = n(x, torch.full_like(x, 100.0))
    assert torch.equal(spk0, spk1)
    assert torch.equal(mem0, mem1)


# --------------------------------------------------------------------------------------------
# Tie rule and dtype
# --------------------------------------------------------------------------------------------


def test_input_equal_to_threshold_does_not_spike():
    thr = torch.tensor([0.25, 0.5, 1.0, 2.0])
    n = SingleStepLeaky(threshold=thr)
    spk, _ = n(thr.clone().unsqueeze(0))
    assert torch.equal(spk, torch.zeros(1, 4))
    above = torch.nextafter(thr, torch.full_like(thr, math.inf))
    spk, _ = n(above.unsqueeze(0))
    assert torch.equal(spk, torch.ones(1, 4))


def test_float64_input_gives_float64_spikes_and_mem():
    n = SingleStepLeaky(threshold=0.5, graded_spikes_factor=2.0)
    x = _input(6, dtype=torch.float64)
    spk, mem = n(x)
    assert spk.dtype == torch.float64
    assert mem.dtype == torch.float64
    assert torch.equal(spk, (x > 0.5).double() * 2.0)


# --------------------------------------------------------------------------------------------
# Call conventions
# --------------------------------------------------------------------------------------------


def test_init_hidden_returns_spikes_only():
    n = SingleStepLeaky(threshold=0.5, init_hidden=True)
    x = _input(7)
    out = n(x)
    assert isinstance(out, torch.Tensor)
    assert torch.equal(out, (x > 0.5).float())
    torch.testing.assert_close(n.mem, x)


@pytest.mark.parametrize("init_hidden", [False, True])
def test_output_true_returns_spk_and_mem(init_hidden):
    n = SingleStepLeaky(threshold=0.5, init_hidden=init_hidden, output=True)
    x = _input(8)
    spk, mem = _spk_mem(n(x))
    assert torch.equal(spk, (x > 0.5).float())
    torch.testing.assert_close(mem, x)


def test_mem_with_init_hidden_raises_type_error():
    n = SingleStepLeaky(init_hidden=True)
    x = _input(9)
    with pytest.raises(TypeError, match="init_hidden"):
        n(x, torch.zeros_like(x))


@pytest.mark.parametrize(
    "bad", [torch.ones(2, 3, dtype=torch.int64), torch.ones(2, 3, dtype=torch.bool), [1.0, 2.0]]
)
def test_non_float_input_raises_type_error(bad):
    with pytest.raises(TypeError, match="input_"):
        SingleStepLeaky()(bad)


@pytest.mark.parametrize("name", ["threshold", "graded_spikes_factor"])
@pytest.mark.parametrize("bad", ["1.0", True, None])
def test_non_numeric_threshold_raises_type_error(name, bad):
    with pytest.raises(TypeError, match=name):
        SingleStepLeaky(**{name: bad})


# --------------------------------------------------------------------------------------------
# Constructor parity with snn.Leaky
# --------------------------------------------------------------------------------------------


def test_invalid_reset_mechanism_raises_value_error():
    with pytest.raises(ValueError, match="reset_mechanism"):
        SingleStepLeaky(reset_mechanism="soft")


def test_failed_construction_does_not_break_snntorch_utils_reset():
    with pytest.raises(ValueError):
        SingleStepLeaky(reset_mechanism="soft")
    net = nn.Sequential(nn.Linear(2, 3), SingleStepLeaky(init_hidden=True))
    net(torch.randn(1, 2))
    snn_utils.reset(net)
    assert torch.count_nonzero(net[1].mem) == 0


@pytest.mark.parametrize(
    "flag, attr",
    [
        ("learn_beta", "beta"),
        ("learn_threshold", "threshold"),
        ("learn_graded_spikes_factor", "graded_spikes_factor"),
    ],
)
def test_learn_flags_give_parameters(flag, attr):
    n = SingleStepLeaky(beta=0.5, **{flag: True})
    value = getattr(n, attr)
    assert isinstance(value, nn.Parameter) and value.requires_grad
    assert any(p is value for p in n.parameters())
    fixed = SingleStepLeaky(beta=0.5)
    assert not isinstance(getattr(fixed, attr), nn.Parameter)
    assert attr in dict(fixed.named_buffers())


@pytest.mark.parametrize("mechanism, val", [("subtract", 0), ("zero", 1), ("none", 2)])
def test_reset_mechanism_val_and_state_dict_round_trip(mechanism, val):
    n = SingleStepLeaky(reset_mechanism=mechanism, threshold=0.4)
    assert n.reset_mechanism == mechanism
    assert n.reset_mechanism_val.item() == val
    sd = n.state_dict()
    assert sd["reset_mechanism_val"].item() == val

    same = SingleStepLeaky(reset_mechanism=mechanism)
    same.load_state_dict(sd, strict=True)
    assert same.reset_mechanism_val.item() == val
    assert torch.equal(same.threshold, torch.tensor(0.4))

    # loading into a differently configured neuron behaves exactly like Leaky under the same load
    other = "none" if mechanism != "none" else "subtract"
    mine = SingleStepLeaky(reset_mechanism=other, reset_delay=False)
    ref = _fresh_leaky(reset_mechanism=other, reset_delay=False)
    mine.load_state_dict(sd, strict=False)
    ref.load_state_dict(sd, strict=False)
    assert mine.reset_mechanism_val.item() == val
    x = _input(11)
    spk_m, mem_m = mine(x)
    spk_r, mem_r = ref(x)
    assert torch.equal(spk_m, spk_r)
    torch.testing.assert_close(mem_m, mem_r)


def test_state_dict_keys_superset_of_leaky_and_no_mem():
    n = SingleStepLeaky(beta=0.5)
    n(_input(12))
    keys = set(n.state_dict())
    leaky_keys = set(snn.Leaky(beta=0.5).state_dict())
    assert {"threshold", "graded_spikes_factor", "reset_mechanism_val", "beta"} <= leaky_keys
    assert keys >= leaky_keys
    assert "mem" not in keys
    assert "mem" in dict(n.named_buffers())


def test_to_float64_moves_mem():
    n = SingleStepLeaky(beta=0.5)
    n.to(torch.float64)
    assert n.mem.dtype == torch.float64
    assert n.threshold.dtype == torch.float64
    n.to(torch.float32)
    n(_input(13))
    assert n.mem.dtype == torch.float32
    n.to(torch.float64)
    assert n.mem.dtype == torch.float64 and n.mem.shape == (B, C)


def test_state_dict_load_into_new_instance_gives_identical_outputs():
    thr = torch.rand(C, generator=torch.Generator().manual_seed(3)) + 0.2
    a = SingleStepLeaky(threshold=thr, graded_spikes_factor=1.7, learn_threshold=True)
    b = SingleStepLeaky(threshold=torch.zeros(C), learn_threshold=True)
    b.load_state_dict(a.state_dict(), strict=True)
    x = _input(14)
    for ya, yb in zip(a(x), b(x)):
        assert torch.equal(ya, yb)


# --------------------------------------------------------------------------------------------
# snntorch.utils: reset and _final_layer_check
# --------------------------------------------------------------------------------------------


def _sequential_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16),
        SingleStepLeaky(threshold=0.5, init_hidden=True),
        nn.Linear(16, 4),
        SingleStepLeaky(threshold=0.5, init_hidden=True, output=True),
    )


def test_snntorch_utils_reset_zeroes_mem():
    net = _sequential_net()
    out = net(torch.randn(3, 8))
    assert isinstance(out, tuple) and len(out) == 2
    assert net[1].mem.abs().sum() > 0 and net[3].mem.abs().sum() > 0
    snn_utils.reset(net)
    for i, width in ((1, 16), (3, 4)):
        assert net[i].mem.shape == (3, width)
        assert torch.count_nonzero(net[i].mem) == 0
        assert not net[i].mem.requires_grad


def test_final_layer_check_returns_two():
    if not hasattr(snn_utils, "_final_layer_check"):
        pytest.skip("snntorch.utils._final_layer_check does not exist in this snnTorch version")
    net = _sequential_net()
    assert snn_utils._final_layer_check(net) == 2
    assert len(net(torch.randn(2, 8))) == 2


# --------------------------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------------------------


def test_torch_save_whole_module_and_load_identical_outputs():
    net = _sequential_net()
    x = torch.randn(3, 8)
    spk, mem = net(x)
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert isinstance(loaded[1], SingleStepLeaky) and isinstance(loaded[3].spike_grad, S2NN)
    spk2, mem2 = loaded(x)
    assert torch.equal(spk, spk2)
    assert torch.equal(mem, mem2)


def test_deepcopy_identical_outputs_and_independent():
    net = _sequential_net()
    clone = copy.deepcopy(net)
    assert clone[1] is not net[1] and clone[1].spike_grad is not net[1].spike_grad
    x = torch.randn(3, 8)
    for a, b in zip(net(x), clone(x)):
        assert torch.equal(a, b)
    with torch.no_grad():
        clone[3].threshold.fill_(-100.0)
    assert not torch.equal(net(x)[0], clone(x)[0])


# --------------------------------------------------------------------------------------------
# snntorch.functional losses and spikegen inputs
# --------------------------------------------------------------------------------------------


def test_losses_on_stacked_outputs_reach_weights():
    T = 5
    net = _sequential_net()
    torch.manual_seed(1)
    data = torch.rand(3, 8)
    targets = torch.tensor([0, 2, 3])
    x = spikegen.rate(data, num_steps=T)
    assert x.shape == (T, 3, 8)

    snn_utils.reset(net)
    spk_rec, mem_rec = [], []
    for t in range(T):
        spk, mem = net(x[t])
        spk_rec.append(spk)
        mem_rec.append(mem)
    spk_rec, mem_rec = torch.stack(spk_rec), torch.stack(mem_rec)
    assert spk_rec.shape == mem_rec.shape == (T, 3, 4)

    ce = SF.ce_rate_loss()(spk_rec, targets)
    manual = sum(nn.functional.cross_entropy(spk_rec[t], targets) for t in range(T)) / T
    torch.testing.assert_close(ce.reshape(()), manual.reshape(()))
    mse = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)(spk_rec, targets)
    memloss = SF.mse_membrane_loss()(mem_rec, targets)
    for loss in (ce, mse, memloss):
        net.zero_grad()
        loss.sum().backward(retain_graph=True)
        for layer in (net[0], net[2]):
            assert layer.weight.grad is not None
            assert torch.isfinite(layer.weight.grad).all()
            assert layer.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------
# torch.compile friendliness
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init_hidden", [False, True])
def test_dynamo_explain_no_graph_breaks(init_hidden):
    torch._dynamo.reset()
    n = SingleStepLeaky(beta=0.5, init_hidden=init_hidden)
    explanation = torch._dynamo.explain(n)(torch.randn(4, 8))
    assert explanation.graph_break_count == 0
