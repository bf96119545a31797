"""The residual block shared by ``BinaryS4D`` and ``GSU`` (state-spaces/s4 ``example.py`` layout).

``[T, N, H]`` -> ``[T, N, H]``::

    h = norm(x) if prenorm else x
    y = S4D(h)                       token mixing (linear SSM, parallel or recurrent)
    z = dropout(mix(y))              per-token nonlinearity + feature mixing (subclass)
    out = z + x if residual else z
    out = norm(out) if not prenorm else out

``norm`` is ``"layer"`` (LayerNorm), ``"batch"`` (BatchNorm over the real tokens only) or
``"none"``.  Padded steps enter the SSM as zeros and output zeros.  Dropout is tied over time
by default (whole channels for the whole sequence, like state-spaces/s4's ``DropoutNd`` and
``example.py``'s ``Dropout1d``); ``tied_dropout=False`` gives element-wise ``nn.Dropout``.
"""

from __future__ import annotations

import torch
from torch import nn

from bpsn_ext.core.channel_major import (
    is_channel_major,
    sequence_layer_norm,
    to_channel_major,
    to_time_major,
)
from bpsn_ext.core.diagonal_ssm import check_sequence, check_step_input, check_step_mask
from bpsn_ext.core.masks import as_mask, zero_padded
from bpsn_ext.layers._common import Streaming, check_choice, check_d_model, check_dropout
from bpsn_ext.layers.dropout import TiedDropout, make_dropout
from bpsn_ext.layers.s4d import S4D

__all__ = ["NORMS", "SequenceNorm", "SSMBlock", "time_constant_scale", "foldable"]

NORMS = ("layer", "batch", "none")


class SequenceNorm(nn.Module):
    """LayerNorm, BatchNorm or identity over the last dim of ``[..., D]``.

    BatchNorm statistics are taken over real positions only (``valid`` bool ``[...]``), so the
    padding's content cannot change them.  In training mode BatchNorm normalises with the
    statistics of what it is given, so a step-by-step run (one step per call) differs from the
    parallel run; in eval mode (running statistics) they agree.
    """

    fused: bool = True  # channel-major inputs without copies; False: the plain modules

    def __init__(self, kind: str, d_model: int) -> None:
        super().__init__()
        self.kind = check_choice("norm", kind, NORMS)
        if kind == "layer":
            self.norm = nn.LayerNorm(d_model)
        elif kind == "batch":
            self.norm = nn.BatchNorm1d(d_model)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``[..., D]`` in the layout of ``x`` (a channel-major ``[T, N, D]`` stays so)."""
        if self.kind == "none":
            return x
        if self.kind == "layer":
            if x.dim() == 3 and self.fused:
                n = self.norm
                return sequence_layer_norm(x, n.weight, n.bias, n.eps)
            return self.norm(x)
        if valid is None and self.fused and x.dim() == 3 and is_channel_major(x):  # [N, D, T]
            return self.norm(x.permute(1, 2, 0)).permute(2, 0, 1)
        if valid is None:
            return self.norm(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        out = torch.zeros_like(x)
        out[valid] = self.norm(x[valid])
        return out

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


def _is_identity(drop: nn.Module) -> bool:
    return not drop.training or drop.p == 0.0


def time_constant_scale(drop: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The factor ``[N, H]`` by which ``drop`` scales ``x`` ``[T, N, H]`` at every step:
    ``None`` for an identity (eval mode, ``p = 0``), a fresh `TiedDropout` mask (drawn exactly
    as ``drop(x)`` would draw it) otherwise.  An element-wise dropout has no such factor:
    `ValueError`.  Lets a block fold the dropout into the next matmul's weights."""
    if _is_identity(drop):
        return None
    if type(drop) is not TiedDropout:
        raise ValueError(f"{type(drop).__name__} is not constant over time")
    return drop(x.new_ones(1, *x.shape[1:]))[0]


def foldable(*drops: nn.Module) -> bool:
    """Whether `time_constant_scale` has an answer for every dropout in ``drops``."""
    return all(_is_identity(d) or type(d) is TiedDropout for d in drops)


class SSMBlock(Streaming, nn.Module):
    """Base class: S4D token mixing, a per-token ``_mix`` (subclass), dropout, residual, norm.

    ``fused`` (attribute, default ``True``): the parallel form runs channel-major
    (`bpsn_ext.core.channel_major`: the sequence stored as ``[N, H, T]``, so the FFT
    convolution, the feature mixing and the norm need no transposes) with the fused S4D
    convolution; a time-major input is converted on entry and the output converted back, a
    channel-major input (a stack of blocks, `bpsn_ext.models.LRAClassifier`) stays so.
    ``False`` runs the op-by-op reference (time-major).  Element-wise dropout
    (``tied_dropout=False``) draws its mask in memory order, so in training the two paths
    draw different masks (of the same distribution); tied dropout draws the same.

    Streaming: `step` keeps the S4D state in ``ssm_state`` (a plain attribute, ``None``
    until the first step); `reset_state` clears it.  Step-by-step output equals
    `forward` (in eval mode, or with ``dropout=0`` and a norm other than training-mode
    BatchNorm).
    """

    fused: bool = True

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        bidirectional: bool = False,
        bidirectional_convention: str = "lag0",
        dropout: float = 0.0,
        tied_dropout: bool = True,
        norm: str = "layer",
        prenorm: bool = False,
        residual: bool = True,
    ) -> None:
        super().__init__()
        check_d_model(d_model)
        check_dropout(dropout)
        for name, flag in (("prenorm", prenorm), ("residual", residual)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be bool, got {type(flag).__name__}")
        self.d_model, self.prenorm, self.residual = d_model, prenorm, residual
        self.ssm = S4D(
            d_model,
            d_state,
            dt_min=dt_min,
            dt_max=dt_max,
            bidirectional=bidirectional,
            bidirectional_convention=bidirectional_convention,
        )
        self.norm = SequenceNorm(norm, d_model)
        self.tied_dropout = tied_dropout
        self.dropout = make_dropout(dropout, tied_dropout)
        self.inner_dropout = make_dropout(dropout, tied_dropout)
        self.ssm_state: torch.Tensor | None = None

    @property
    def bidirectional(self) -> bool:
        """Whether the S4D also looks ahead (then there is no streaming form)."""
        return self.ssm.bidirectional

    # -- subclass hook ---------------------------------------------------------------------
    def _mix(
        self, y: torch.Tensor, valid: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token map of the SSM output ``y`` ``[..., H]``: ``(z [..., H], activation)``."""
        raise NotImplementedError

    def _mix_residual(
        self, y: torch.Tensor, x: torch.Tensor, valid: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(dropout(mix(y)) (+ x), activation)``; subclasses may fuse it (same numbers)."""
        z, act = self._mix(y, valid)
        out = self.dropout(z)
        return (out + x if self.residual else out), act

    # -- the block -------------------------------------------------------------------------
    def _run(self, x, valid, ssm_call):
        h = self.norm(x, valid) if self.prenorm else x
        y, state = ssm_call(h)
        out, act = self._mix_residual(y, x, valid)
        if not self.prenorm:
            out = self.norm(out, valid)
        if valid is not None:
            out = zero_padded(out, valid[..., None])
            act = zero_padded(act, valid[..., None])
        return out, state, act

    def _prepare(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
        check_sequence(type(self).__name__, x, self.d_model, self.ssm.D.dtype)
        return as_mask(mask, x.shape[0], x.shape[1], x.device)

    def forward_with_activation(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(out, activation)``, both ``[T, N, H]``: the block output and the output of the
        nonlinearity that follows the SSM (the spikes of a Binary S4D, ``Tern(y)`` of a GSU)."""
        return self._parallel(x, mask, with_activation=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Parallel form ``[T, N, H]`` -> ``[T, N, H]`` from a zero state; ``mask`` is a bool
        ``[T, N]`` (True = real step) or integer lengths ``[N]``.  The output has the input's
        layout (time-major or channel-major, see ``fused``)."""
        return self._parallel(x, mask, with_activation=False)[0]

    def _parallel(self, x, mask, with_activation: bool):
        valid = self._prepare(x, mask)
        cm_in, cm = is_channel_major(x), self.fused
        h = to_channel_major(x) if cm else to_time_major(x) if cm_in else x
        out, _, act = self._run(h, valid, lambda u: (self.ssm(u, valid), None))
        if cm != cm_in:  # back to the input's layout
            convert = to_channel_major if cm_in else to_time_major
            out = convert(out)
            act = convert(act) if with_activation else act
        return out, act

    def forward_with_state(
        self, x: torch.Tensor, state: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Parallel form continuing from the S4D ``state``; returns ``(out, new_state)``."""
        valid = self._prepare(x, mask)
        out, new_state, _ = self._run(
            x, valid, lambda h: self.ssm.forward_with_state(h, state, valid)
        )
        return out, new_state

    def step_with_state(
        self,
        x_t: torch.Tensor,
        state: torch.Tensor | None = None,
        mask_t: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step, pure: ``(out_t [N, H], new_state)``."""
        check_step_input(type(self).__name__, x_t, self.d_model, self.ssm.D.dtype)
        valid = check_step_mask(mask_t, x_t.shape[0], x_t.device)
        out, new_state, _ = self._run(
            x_t, valid, lambda h: self.ssm.step_with_state(h, state, valid)
        )
        return out, new_state

    def extra_repr(self) -> str:
        return f"prenorm={self.prenorm}, residual={self.residual}"
