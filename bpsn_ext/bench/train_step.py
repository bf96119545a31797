"""One training step of the sequential-image classifier against its own FFT and matmul work.

The step: `bpsn_ext.models.build_lra_model` with the ``"sequential"`` preset (s4
``example.py``: LayerNorm post-norm, tied dropout 0.1, GLU) at the given size, input
``[L, batch, 1]`` with its lengths (as `train lra` gives every batch), cross-entropy, backward,
AdamW step.  ``fused`` is the default model; ``unfused`` the same weights with
`bpsn_ext.layers.set_fused` ``False`` (the op-by-op reference).

The floor runs only the FFTs and matmuls of that step, on tensors allocated beforehand, each
in its most favourable layout, per block:

* forward: ``rfft(u, n=2L)`` of ``[batch, H, L]`` and of the kernel ``[H, 2L]``,
  ``irfft(., n=2L)``; the output projection ``[batch L, H] @ [H, 2H]`` (GLU) or ``[H, H]``;
  the Vandermonde kernel's batched matmul;
* backward: ``rfft(grad, n=2L)``, ``irfft`` for the input and for the kernel gradient; the
  two matmuls of the projection's backward; the Vandermonde matmul's two.

Everything else in the step (norms, spikes, GLU, dropout, residuals, layout changes, the
optimiser) is what the ratio ``step / floor`` measures.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["train_step_fns", "floor_fn"]


def _model(layer: str, d_model: int, n_layers: int, d_state: int, fused: bool, seed: int):
    from bpsn_ext.layers import set_fused
    from bpsn_ext.models import build_lra_model

    torch.manual_seed(seed)
    model = build_lra_model(
        "sequential",
        layer,
        d_input=1,
        n_classes=10,
        d_model=d_model,
        n_layers=n_layers,
        d_state=d_state,
    )
    return set_fused(model, fused).train()


def train_step_fns(
    layer: str, L: int, batch: int, d_model: int, n_layers: int, d_state: int, seed: int = 0
) -> dict[str, Callable[[], None]]:
    """``{"fused": step, "unfused": step}``: one optimiser step each on the same batch."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(L, batch, 1, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    lengths = torch.full((batch,), L)  # as `train lra` batches come: lengths, none short
    fns = {}
    for name, fused in (("fused", True), ("unfused", False)):
        model = _model(layer, d_model, n_layers, d_state, fused, seed)
        opt = torch.optim.AdamW(model.parameters(), lr=0.001, weight_decay=0.01)

        def step(model=model, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x, lengths), y).backward()
            opt.step()

        fns[name] = step
    return fns


def floor_fn(
    L: int, batch: int, d_model: int, n_layers: int, d_state: int, glu: bool = True
) -> Callable[[], None]:
    """The FFTs and matmuls of one training step (see the module docstring), nothing else."""
    gen = torch.Generator().manual_seed(0)
    H, n, N = d_model, 2 * L, batch
    out = 2 * H if glu else H
    u = torch.randn(N, H, L, generator=gen)
    k = torch.randn(H, n, generator=gen)
    spec = torch.randn(N, H, L + 1, dtype=torch.complex64, generator=gen)
    kspec = torch.randn(H, L + 1, dtype=torch.complex64, generator=gen)
    s = torch.randn(N * L, H, generator=gen)
    dz = torch.randn(N * L, out, generator=gen)
    W = torch.randn(out, H, generator=gen)
    c = max(1, math.isqrt(max(L - 1, 0)) + 1)
    P = d_state // 2
    zc = torch.randn(H, -(-L // c), P, dtype=torch.complex64, generator=gen)
    zl = torch.randn(H, P, c, dtype=torch.complex64, generator=gen)
    gv = torch.randn(H, -(-L // c), c, dtype=torch.complex64, generator=gen)

    def floor() -> None:
        for _ in range(n_layers):
            torch.fft.rfft(u, n=n), torch.fft.rfft(k), torch.fft.irfft(spec, n=n)  # forward
            s @ W.t(), torch.bmm(zc, zl)
            torch.fft.rfft(u, n=n), torch.fft.irfft(spec, n=n), torch.fft.irfft(kspec, n=n)
            dz.t() @ s, dz @ W, torch.bmm(gv, zl.transpose(1, 2)), torch.bmm(zc.transpose(1, 2), gv)

    return floor
