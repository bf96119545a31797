"""``bpsn_ext.optim.ssm_param_groups`` and the snnTorch ``reset`` of SSM layer state."""

import pytest
import torch
from torch import nn

from bpsn_ext.layers import GSU, S4D, BinaryS4D, SpikingS5
from bpsn_ext.optim import ssm_param_groups, ssm_parameters


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(3, 8), BinaryS4D(8, 8), GSU(8, 8), SpikingS5(8, 4), nn.Linear(8, 2)
    )


def test_groups_split_ssm_parameters_with_small_lr_and_no_decay():
    model = _model()
    groups = ssm_param_groups(model, lr=0.01, weight_decay=0.05)
    assert len(groups) == 2
    base, ssm = groups
    assert base["lr"] == 0.01 and base["weight_decay"] == 0.05
    assert ssm["lr"] == 0.001 and ssm["weight_decay"] == 0.0
    expected = {
        id(p) for m in (model[1].ssm, model[2].ssm) for p in (m.log_dt, m.log_A_real, m.A_imag)
    } | {id(p) for p in (model[3].log_dt, model[3].log_A_real, model[3].A_imag, model[3].B)}
    assert {id(p) for p in ssm["params"]} == expected
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each exactly once
    assert id(model[1].ssm.C) not in expected and id(model[3].C) not in expected
    # the ssm lr never exceeds the base lr
    assert ssm_param_groups(model, lr=0.0005, weight_decay=0.0)[1]["lr"] == 0.0005
    assert ssm_param_groups(model, lr=0.01, weight_decay=0.0, ssm_lr=0.002)[1]["lr"] == 0.002


def test_groups_drive_adamw():
    model = S4D(4, 8)
    opt = torch.optim.AdamW(ssm_param_groups(model, lr=0.1, weight_decay=0.5))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    (model(torch.randn(10, 2, 4)) ** 2).mean().backward()
    opt.step()
    step = {n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters()}
    # Adam's first step moves each entry by about lr: 0.001 for SSM parameters, 0.1 otherwise
    assert step["log_dt"] <= 0.0011 and step["A_imag"] <= 0.0011
    assert step["D"] > 0.05


def test_frozen_and_s4_style_parameters():
    model = nn.Sequential(S4D(4, 8), nn.Linear(4, 4))
    model[0].A_imag.requires_grad_(False)
    model[1].bias._optim = {"lr": 0.001, "weight_decay": 0.0}  # state-spaces/s4 convention
    ssm = ssm_param_groups(model, 0.01, 0.01)[1]["params"]
    ids = {id(p) for p in ssm}
    assert id(model[0].A_imag) not in ids and id(model[1].bias) in ids
    assert len(ssm_parameters(nn.Linear(2, 2))) == 0
    only_linear = ssm_param_groups(nn.Linear(2, 2), 0.01, 0.01)
    assert len(only_linear) == 1 and only_linear[0]["weight_decay"] == 0.01


def test_argument_errors():
    with pytest.raises(TypeError, match="lr must be a Python float"):
        ssm_param_groups(S4D(2, 2), 1, 0.0)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        ssm_param_groups(S4D(2, 2), 0.01, -0.1)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        ssm_param_groups([], 0.01, 0.0)


def test_snntorch_reset_clears_ssm_layer_state():
    snn = pytest.importorskip("snntorch")
    from bpsn_ext.snntorch import reset

    torch.manual_seed(0)
    leaky = snn.Leaky(beta=0.9, init_hidden=True)
    net = nn.Sequential(nn.Sequential(S4D(4, 8)), BinaryS4D(4, 8), leaky)
    x = torch.randn(6, 2, 4)
    y0 = [net[1].step(net[0][0].step(x[t])) for t in range(6)]
    leaky(y0[-1])
    assert net[0][0].ssm_state is not None and net[1].ssm_state is not None
    assert leaky.mem.abs().sum() > 0
    assert reset(net) is net
    assert net[0][0].ssm_state is None and net[1].ssm_state is None
    assert torch.count_nonzero(leaky.mem) == 0
    y1 = [net[1].step(net[0][0].step(x[t])) for t in range(6)]
    assert all(torch.equal(a, b) for a, b in zip(y0, y1))
