"""``register()``: make bpsn_ext classes reachable from the host frameworks' own namespaces.

Explicit and idempotent; importing ``bpsn_ext`` registers nothing.  Afterwards code that looks
neurons up by name (``getattr(neuron, cfg["neuron"])``) finds ours:

* ``spikingjelly.activation_based.neuron.<Name>`` for our SpikingJelly neurons (and, on
  SpikingJelly 2.0, ``distributed.vision.config.register_neuron_class`` for serialised configs);
* ``spikingjelly.activation_based.layer.<Name>`` for our SpikingJelly layers;
* ``snntorch.<Name>`` for our snnTorch neurons and SSM layers.
"""

from __future__ import annotations

import importlib
import importlib.util

__all__ = ["register", "REGISTRY"]

# (host module, attribute name, bpsn_ext module, class name)
REGISTRY: list[tuple[str, str, str, str]] = [
    (
        "spikingjelly.activation_based.neuron",
        "SingleStepNode",
        "bpsn_ext.spikingjelly",
        "SingleStepNode",
    ),
    ("spikingjelly.activation_based.neuron", "BPSNNode", "bpsn_ext.spikingjelly", "BPSNNode"),
    *(
        ("spikingjelly.activation_based.layer", name, "bpsn_ext.spikingjelly", name)
        for name in ("S4DLayer", "BinaryS4DLayer", "GSULayer", "SpikingS5Layer")
    ),
    ("snntorch", "SingleStepLeaky", "bpsn_ext.snntorch", "SingleStepLeaky"),
    ("snntorch", "BPSNLeaky", "bpsn_ext.snntorch", "BPSNLeaky"),
    *(
        ("snntorch", name, "bpsn_ext.snntorch", name)
        for name in ("S4DLeaky", "BinaryS4DLeaky", "GSULeaky", "SpikingS5Leaky")
    ),
]


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module.split(".")[0]) is not None


def register() -> dict[str, str]:
    """Attach our classes to the installed frameworks; returns ``{host_path: our_path}``.

    Frameworks that are not installed are skipped.  Calling it again changes nothing.  A host
    name that already exists and is not ours raises ``RuntimeError`` (nothing is overwritten).
    """
    done: dict[str, str] = {}
    for host, attr, ours, cls_name in REGISTRY:
        if not _installed(host):
            continue
        host_mod = importlib.import_module(host)
        cls = getattr(importlib.import_module(ours), cls_name)
        existing = getattr(host_mod, attr, None)
        if existing is not None and existing is not cls:
            raise RuntimeError(
                f"{host}.{attr} already exists ({existing!r}) and is not bpsn_ext's {cls_name}; "
                f"refusing to overwrite it"
            )
        setattr(host_mod, attr, cls)
        done[f"{host}.{attr}"] = f"{ours}.{cls_name}"
        if host == "spikingjelly.activation_based.neuron" and _is_base_node(cls):
            _register_sj_config(cls)
    return done


def _is_base_node(cls: type) -> bool:
    from spikingjelly.activation_based import neuron

    return issubclass(cls, neuron.BaseNode)


def _register_sj_config(cls: type) -> None:
    """SpikingJelly 2.0 distributed-vision configs resolve neurons through their own registry."""
    try:
        config = importlib.import_module("spikingjelly.activation_based.distributed.vision.config")
    except ImportError:  # SpikingJelly 0.0.0.0.14 has no such registry
        return
    register_neuron_class = getattr(config, "register_neuron_class", None)
    if register_neuron_class is not None:
        register_neuron_class(cls)
