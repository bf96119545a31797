"""SpikingJelly 2.0's operation counters see BPSN the same way on every path, and agree with
our own energy report on a shared network (Linear -> BPSNNode -> Linear)."""

import pytest
import torch
from torch import nn

sj = pytest.importorskip("spikingjelly.activation_based")
op_counter = pytest.importorskip("spikingjelly.activation_based.op_counter")
if not hasattr(op_counter, "DispatchCounterMode"):
    pytest.skip("SpikingJelly 2.0's dispatch op counter", allow_module_level=True)

from spikingjelly.activation_based.op_counter import (  # noqa: E402
    ACCounter,
    DispatchCounterMode,
    NeuronStateCounter,
    SynOpCounter,
)

from bpsn_ext.energy import estimate  # noqa: E402
from bpsn_ext.energy.sj_op_counts import OP_COUNTS, sj_counter_rules  # noqa: E402
from bpsn_ext.kernels import cpu_native  # noqa: E402
from bpsn_ext.spikingjelly import BPSNNode  # noqa: E402

T, B, C = 8, 4, 32
NATIVE = cpu_native.available()
METHODS = ["chunked", "fft", "matmul", "loop"] + (["native"] if NATIVE else [])


def network(method, **options):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(16, C), BPSNNode(C, step_mode="m", method=method, **options), nn.Linear(C, 10)
    )


def sj_counts(net, x, mask=None):
    counters = [
        SynOpCounter(extra_rules=sj_counter_rules("synop")),
        ACCounter(extra_rules=sj_counter_rules("ac")),
        NeuronStateCounter(),
    ]
    with DispatchCounterMode(counters):
        net[2](net[1](net[0](x), mask))
    return tuple(c.get_total() for c in counters)


@pytest.mark.parametrize("options", [{}, {"runaway": "soft_reset"}, {"fusion": "gate"}])
def test_every_path_gives_the_same_counts(options):
    x = torch.rand(T, B, 16) * 2
    lengths = torch.tensor([T, 5, 3, T])
    counts = {}
    for method in METHODS:
        if method == "native" and options:
            continue  # the native kernel covers split + refractory only
        counts[method] = (
            sj_counts(network(method, **options), x),
            sj_counts(network(method, **options), x, lengths),
        )
    assert len(set(counts.values())) == 1, counts


def test_counts_agree_with_our_energy_report():
    x = torch.rand(T, B, 16) * 2
    net = network("chunked")
    synops, ac, _ = sj_counts(net, x)
    report = estimate(net, x, eval_mode=False)
    rows = {row.name: row for row in report.layers}
    assert synops == rows["2"].ac > 0  # spike-driven accumulates of the second Linear
    assert ac - synops == rows["1"].add == 3 * T * B * C  # branch, compare, refractory


def test_the_table_is_keyed_by_operator_name():
    assert "bpsn_ext::bpsn_neuron" in OP_COUNTS and "bpsn_ext::bpsn_cpu_forward" in OP_COUNTS
    with pytest.raises(ValueError, match="kind must be one of"):
        sj_counter_rules("flops")
