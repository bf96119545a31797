"""What an LRA classifier's spiking layers do on real data: `firing_rates` per block and the
`energy_summary` (an `EnergyReport` on test samples, per sample, with the firing rates).

Example::

    rates = firing_rates(model, x, lengths)  # {"blocks.0": 0.12, ...}
    summary = energy_summary(model, td, n_samples=64)
"""

from __future__ import annotations

import torch

from bpsn_ext.bpsn_module import BPSN
from bpsn_ext.core.masks import as_mask
from bpsn_ext.data.lra_release import TaskData
from bpsn_ext.energy import estimate
from bpsn_ext.layers import SpikingS5

__all__ = ["energy_summary", "firing_rates"]

_SUMMARY_KEYS = (
    "energy_pJ",
    "synaptic_energy_pJ",
    "ann_energy_pJ",
    "mac",
    "ac",
    "ratio",
    "ratio_total",
    "effective_ac_rate",
    "mean_output_rate",
)


def firing_rates(model: torch.nn.Module, *inputs: torch.Tensor | None) -> dict[str, float]:
    """Per block: the fraction of nonzero outputs of the spiking (or ternary) nonlinearity over
    the real (unpadded) steps (Binary S4D spikes, GSU ``Tern(y)``, spiking S5 / BPSN spikes).

    Args:
        model: an `LRAClassifier` or `LRADualClassifier` (or its ``backbone``).
        inputs: ``(x, mask)`` or, for a dual model, ``(x1, mask1, x2, mask2)``; ``x``
            ``[T, N, *]``, ``mask`` lengths ``[N]`` or bool ``[T, N]`` or ``None``.

    Returns:
        ``{"blocks.<i>": rate}``; a non-spiking model (``s4d``) gives an empty dict.
    """
    backbone = getattr(model, "backbone", model)
    if getattr(backbone, "layer", None) == "s4d":
        return {}
    pairs = [(inputs[0], inputs[1] if len(inputs) > 1 else None)]
    if len(inputs) == 4:
        pairs.append((inputs[2], inputs[3]))
    counts: dict[str, list[float]] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, mask in pairs:
                m = as_mask(mask, x.shape[0], x.shape[1], x.device)
                h = backbone.encoder(x)
                for i, block in enumerate(backbone.blocks):
                    h, acts = _block_activations(block, h, m)
                    for act in acts:
                        valid = act if m is None else act[m]
                        c = counts.setdefault(f"blocks.{i}", [0.0, 0.0])
                        c[0] += float((valid != 0).sum())
                        c[1] += float(valid.numel())
    finally:
        model.train(was_training)
    return {k: nz / n for k, (nz, n) in counts.items() if n}


def _block_activations(
    block: torch.nn.Module, h: torch.Tensor, m: torch.Tensor | None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(block output, its spiking activations)``: from ``forward_with_activation`` where the
    block has it, else the outputs of its `SpikingS5` / `BPSN` modules (forward hooks)."""
    if hasattr(block, "forward_with_activation"):
        h, act = block.forward_with_activation(h, m)
        return h, [act]
    acts: list[torch.Tensor] = []
    record = acts.append
    hooks = [
        mod.register_forward_hook(lambda _m, _i, o, record=record: record(o))
        for mod in block.modules()
        if isinstance(mod, (SpikingS5, BPSN))
    ]
    try:
        h = block(h, m)
    finally:
        for hook in hooks:
            hook.remove()
    return h, acts


def energy_summary(
    model: torch.nn.Module,
    td: TaskData,
    n_samples: int,
    device: torch.device | str | None = None,
) -> dict:
    """Energy report of ``model`` on the first ``n_samples`` test samples of ``td``: per-sample
    totals (individual coding: one step per token), the firing rate of every spiking block
    (`firing_rates`) and, under ``"_report"``, the `EnergyReport` itself."""
    n = min(n_samples, len(td.test))
    batch = td.collate([td.test[i] for i in range(n)])
    if device is not None:
        batch = tuple(b.to(device) for b in batch)
    inputs = batch[:-1]
    with torch.no_grad():
        report = estimate(
            model,
            *inputs,
            coding="individual",
            title=f"energy: {type(model).__name__}, {n} test samples",
        )
    s = report.per_sample()
    rates = firing_rates(model, *inputs)
    out = {k: s[k] for k in _SUMMARY_KEYS}
    out.update(
        samples=n,
        T=report.T,
        energy_model=report.energy_model.name,
        firing_rates=rates,
        mean_firing_rate=sum(rates.values()) / len(rates) if rates else None,
    )
    out["_report"] = report
    return out
