"""register() and import hygiene: plain import does nothing; register is explicit, idempotent."""

import json
import subprocess
import sys

import pytest

import bpsn_ext


def run_py(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_plain_import_touches_no_framework_and_no_gpu_stack():
    seen = run_py(
        "import sys, json, bpsn_ext, bpsn_ext.surrogate\n"
        "mods = [m for m in sys.modules if m.split('.')[0] in "
        "('spikingjelly', 'snntorch', 'cupy', 'triton', 'torchvision', 'torchaudio')]\n"
        "import spikingjelly.activation_based.neuron as n\n"
        "print(json.dumps({'mods': mods, 'has': hasattr(n, 'SingleStepNode')}))"
    )
    assert seen == {"mods": [], "has": False}


def test_adapters_import_no_gpu_stack():
    # torch itself imports Triton, where installed, once a custom operator runs (its
    # torch._dynamo import); what is checked is that bpsn_ext imports no GPU kernel module
    seen = run_py(
        "import sys, json, torch, bpsn_ext.spikingjelly, bpsn_ext.snntorch\n"
        "before = 'triton' in sys.modules\n"
        "node = bpsn_ext.spikingjelly.BPSNNode(3, backend='auto', step_mode='m')\n"
        "node(torch.randn(5, 2, 3))\n"
        "mods = [m for m in sys.modules if m.split('.')[0] == 'cupy'"
        " or (m.split('.')[0] == 'triton' and 'torch._dynamo' not in sys.modules)"
        " or (m.startswith('bpsn_ext.kernels.') and m not in"
        " ('bpsn_ext.kernels.dispatch', 'bpsn_ext.kernels.cpu_native',"
        " 'bpsn_ext.kernels.cpu_openmp', 'bpsn_ext.kernels.bpsn_cpu_ops',"
        " 'bpsn_ext.kernels.launch_args'))]\n"
        "print(json.dumps({'mods': mods, 'triton_at_import': before,"
        " 'cuda_init': torch.cuda.is_initialized()}))"
    )
    assert seen == {"mods": [], "triton_at_import": False, "cuda_init": False}


def test_register_is_idempotent_and_resolves_names():
    pytest.importorskip("spikingjelly")
    pytest.importorskip("snntorch")
    first = bpsn_ext.register()
    second = bpsn_ext.register()
    assert first == second
    import snntorch
    from spikingjelly.activation_based import neuron

    from bpsn_ext.snntorch import SingleStepLeaky
    from bpsn_ext.spikingjelly import SingleStepNode

    assert neuron.SingleStepNode is SingleStepNode
    from spikingjelly.activation_based import layer

    from bpsn_ext.spikingjelly import GSULayer, S4DLayer

    assert layer.S4DLayer is S4DLayer and layer.GSULayer is GSULayer
    assert snntorch.SingleStepLeaky is SingleStepLeaky
    from bpsn_ext.snntorch import BinaryS4DLeaky, GSULeaky, S4DLeaky, SpikingS5Leaky

    assert (
        snntorch.S4DLeaky,
        snntorch.BinaryS4DLeaky,
        snntorch.GSULeaky,
        snntorch.SpikingS5Leaky,
    ) == (S4DLeaky, BinaryS4DLeaky, GSULeaky, SpikingS5Leaky)
    assert first["snntorch.GSULeaky"] == "bpsn_ext.snntorch.GSULeaky"
    assert first["spikingjelly.activation_based.neuron.SingleStepNode"] == (
        "bpsn_ext.spikingjelly.SingleStepNode"
    )
    # code that builds neurons from a config by name now finds ours
    cfg = {"neuron": "SingleStepNode", "v_threshold": 0.5}
    node = getattr(neuron, cfg.pop("neuron"))(**cfg)
    assert isinstance(node, SingleStepNode) and node.v_threshold == 0.5


def test_register_refuses_to_overwrite_a_foreign_name():
    pytest.importorskip("snntorch")
    result = run_py(
        "import json, snntorch, bpsn_ext\n"
        "snntorch.SingleStepLeaky = object()\n"
        "try:\n"
        "    bpsn_ext.register(); msg = ''\n"
        "except RuntimeError as e:\n"
        "    msg = str(e)\n"
        "print(json.dumps({'msg': msg}))"
    )
    assert "snntorch.SingleStepLeaky already exists" in result["msg"]


def test_register_feeds_spikingjelly2_config_registry():
    pytest.importorskip("spikingjelly")
    try:
        from spikingjelly.activation_based.distributed.vision import config
    except ImportError:
        pytest.skip("SpikingJelly 0.0.0.0.14 has no distributed-vision config registry")
    from bpsn_ext.spikingjelly import SingleStepNode

    bpsn_ext.register()
    path = f"{SingleStepNode.__module__}.{SingleStepNode.__qualname__}"
    registry = [v for v in vars(config).values() if isinstance(v, dict) and path in v]
    assert registry and registry[0][path] is SingleStepNode
