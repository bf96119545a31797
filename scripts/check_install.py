"""What `scripts/check_install.sh` asserts inside the freshly installed venv.

python scripts/check_install.py TORCH_VERSION_BEFORE sj2|sj014
"""

from __future__ import annotations

import importlib.metadata as md
import sys


def main(before: str, generation: str) -> None:
    import torch

    assert torch.__version__ == before, f"torch {before} was replaced by {torch.__version__}"
    nvidia = sorted(
        d.metadata["Name"]
        for d in md.distributions()
        if d.metadata["Name"].lower().startswith("nvidia")
    )
    assert not nvidia, f"the install pulled CUDA packages: {nvidia}"
    want = {"sj2": ("2.0.0", "1.0.0"), "sj014": ("0.0.0.0.14", "0.9.4")}[generation]
    got = (md.version("spikingjelly"), md.version("snntorch"))
    assert got == want, f"{generation}: expected spikingjelly/snntorch {want}, got {got}"

    import bpsn_ext
    from bpsn_ext.kernels import cpu_native

    assert cpu_native.available(), f"native kernel: {cpu_native.unavailable_reason()}"
    torch.manual_seed(0)
    x = torch.randn(32, 3, 6) + 0.5
    native = bpsn_ext.BPSN(channels=6, method="native")
    reference = bpsn_ext.BPSN(channels=6, method="loop")
    reference.load_state_dict(native.state_dict())
    assert torch.equal(native(x), reference(x)) and native(x).sum() > 0

    from spikingjelly.activation_based import functional, layer, neuron

    from bpsn_ext.spikingjelly import BPSNNode, swap_neurons

    net = torch.nn.Sequential(layer.Linear(6, 6), neuron.LIFNode(), layer.Linear(6, 2))
    functional.set_step_mode(net, "m")
    swap_neurons(net, {neuron.LIFNode: BPSNNode})
    assert isinstance(net[1], BPSNNode) and net(x).shape == (32, 3, 2)

    import snntorch as snn

    from bpsn_ext.snntorch import BPSNLeaky
    from bpsn_ext.snntorch import swap_neurons as snn_swap

    net = torch.nn.Sequential(torch.nn.Linear(6, 6), snn.Leaky(beta=0.9, init_hidden=True))
    snn_swap(net, {snn.Leaky: BPSNLeaky}, allow_sequence_neurons=True)  # net sees [T, B, 6]
    assert isinstance(net[1], BPSNLeaky) and net(x).shape == (32, 3, 6)
    zoo = _zoo_network()
    print(
        f"[check_install] {generation}: {zoo}",
        flush=True,
    )
    print(
        f"[check_install] {generation}: torch {torch.__version__} kept; spikingjelly "
        f"{got[0]}, snntorch {got[1]}; bpsn_ext {bpsn_ext.__version__}, native kernel, both "
        "adapters: ok",
        flush=True,
    )


def _zoo_network() -> str:
    """Import torchvision and run a SpikingJelly model-zoo ResNet with BPSN; say what happened.

    PyPI's torchvision is built for PyPI's torch and does not import beside a CPU build of
    torch: that is reported, not failed (only the zoo needs torchvision; the README's
    "torchvision on CPU" gives the matched pair)."""
    import torch

    try:
        import torchvision
    except Exception as exc:  # RuntimeError "operator torchvision::nms does not exist", ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (
            f"torchvision does NOT import beside torch {torch.__version__} ({reason}); "
            "SpikingJelly's model zoo is unavailable here: install torch and torchvision as a "
            "matched pair from one index (README, 'torchvision on CPU')"
        )
    from spikingjelly.activation_based import functional, neuron
    from spikingjelly.activation_based.model import spiking_resnet

    from bpsn_ext.spikingjelly import BPSNNode, swap_neurons

    net = spiking_resnet.spiking_resnet18(spiking_neuron=neuron.LIFNode, num_classes=10)
    functional.set_step_mode(net, "m")
    swap_neurons(net, {neuron.LIFNode: BPSNNode})
    out = net(torch.rand(2, 1, 3, 32, 32))
    assert out.shape == (2, 1, 10), out.shape
    return f"torchvision {torchvision.__version__} imports; zoo spiking_resnet18 with BPSN: ok"


if __name__ == "__main__":
    main(*sys.argv[1:])
