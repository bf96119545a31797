"""``BinaryS4D``: S4D whose pointwise nonlinearity is a Heaviside spike (Stan & Rhodes 2024).

Per block (the state-spaces/s4 S4D block with the GELU swapped for a spike)::

    y = S4D(u)                        real-valued SSM, state never reset
    s = Theta(y - v_threshold)        threshold 0; surrogate gradient, ATan(alpha=2) default
    z = GLU(W s + b)                  Linear(H, 2H), o = a * sigmoid(b)  (feature mixing)

inside the residual block of `bpsn_ext.layers._block` (dropout after ``s`` and after the
mixing, residual, post-norm LayerNorm by default).  ``activation="gelu"`` replaces the spike by
GELU and gives back the plain S4D block, with the same parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from bpsn_ext.core.channel_major import is_channel_major, sequence_glu, sequence_linear
from bpsn_ext.layers._block import SSMBlock, foldable, time_constant_scale
from bpsn_ext.layers._common import check_choice
from bpsn_ext.surrogate import ATan, resolve
from bpsn_ext.util.arguments import check_float

__all__ = ["BinaryS4D", "ACTIVATIONS"]

ACTIVATIONS = ("spike", "gelu")


class BinaryS4D(SSMBlock):
    """Binary S4D block ``[T, N, H]`` -> ``[T, N, H]``.

    Args:
        d_model: channels H.
        d_state: S4D state size N (even), default 64.
        activation: ``"spike"`` (Heaviside with a surrogate gradient) or ``"gelu"`` (the plain
            S4D block).
        surrogate: for ``"spike"``: a name, bpsn_ext / SpikingJelly surrogate object or snnTorch
            ``spike_grad``; default ``ATan(alpha=2)``, firing at ``y >= v_threshold``.
        v_threshold: spike threshold (Python float), default 0.0.
        glu: GLU feature mixing (Linear H -> 2H, ``a * sigmoid(b)``); ``False``: Linear H -> H.
        dropout: dropout after the nonlinearity and after the feature mixing (default 0.0).
        tied_dropout: drop whole channels for the whole sequence (default, as s4's
            ``DropoutNd``/``Dropout1d``) or single elements (``False``).
        norm: ``"layer"`` (default), ``"batch"`` or ``"none"``.
        prenorm: normalise the block input (``True``) or the block output (``False``, default).
        residual: add the block input to the output (default ``True``).
        dt_min, dt_max, bidirectional, bidirectional_convention: passed to
            `S4D`.

    `forward_with_activation` also returns the spikes ``[T, N, H]`` (firing rates).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        activation: str = "spike",
        surrogate: Callable | str | None = None,
        v_threshold: float = 0.0,
        glu: bool = True,
        dropout: float = 0.0,
        tied_dropout: bool = True,
        norm: str = "layer",
        prenorm: bool = False,
        residual: bool = True,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        bidirectional: bool = False,
        bidirectional_convention: str = "lag0",
    ) -> None:
        super().__init__(
            d_model,
            d_state,
            dt_min=dt_min,
            dt_max=dt_max,
            bidirectional=bidirectional,
            bidirectional_convention=bidirectional_convention,
            dropout=dropout,
            tied_dropout=tied_dropout,
            norm=norm,
            prenorm=prenorm,
            residual=residual,
        )
        self.activation_kind = check_choice("activation", activation, ACTIVATIONS)
        self.v_threshold = check_float("v_threshold", v_threshold)
        if not isinstance(glu, bool):
            raise TypeError(f"glu must be bool, got {type(glu).__name__}")
        self.glu = glu
        if activation == "spike":
            self.activation = resolve(surrogate, default=ATan, fire_ge=True)
        else:
            if surrogate is not None:
                raise ValueError("surrogate only applies to activation='spike'")
            self.activation = nn.GELU()
        self.output_linear = nn.Linear(d_model, 2 * d_model if glu else d_model)

    def _activate(self, y: torch.Tensor) -> torch.Tensor:
        if self.activation_kind != "spike":
            return self.activation(y)
        if not self.fused:
            return self.activation(y - self.v_threshold)
        u = y - self.v_threshold if self.v_threshold else y
        spike = getattr(self.activation, "spike", None)  # bpsn_ext surrogates: fused grad
        return spike(u, fused=True) if spike else self.activation(u)

    def _mix_residual(self, y, x, valid):
        """Fused (channel-major, GLU, residual, dropouts constant over time): both dropout
        masks fold into per-sample weights ``W diag(k1)`` and rows ``k2`` of the GLU's first
        half, and the residual joins the GLU's pass: ``x + (k2 a) sigmoid(b)``."""
        fold = self.fused and self.glu and self.residual and is_channel_major(y)
        if not (fold and is_channel_major(x) and foldable(self.inner_dropout, self.dropout)):
            return super()._mix_residual(y, x, valid)
        act = self._activate(y)
        k1 = time_constant_scale(self.inner_dropout, y)  # [N, H] or None, in the order of
        k2 = time_constant_scale(self.dropout, y)  # the unfused path's random draws
        W, b = self.output_linear.weight, self.output_linear.bias
        if k1 is not None:
            W = W * k1[:, None, :]  # [N, 2H, H]
        if k2 is not None:
            rows = torch.cat([k2, torch.ones_like(k2)], dim=1)  # [N, 2H]: scales a only
            W, b = W * rows[:, :, None], b * rows
        return sequence_glu(sequence_linear(act, W, b), x), act

    def _mix(self, y, valid):
        act = self._activate(y)
        lin = self.output_linear
        h = self.inner_dropout(act)
        z = sequence_linear(h, lin.weight, lin.bias) if self.fused else lin(h)
        return (sequence_glu(z, fused=self.fused) if self.glu else z), act

    def extra_repr(self) -> str:
        return (
            f"activation={self.activation_kind!r}, v_threshold={self.v_threshold}, "
            f"glu={self.glu}, " + super().extra_repr()
        )
