"""``SpikingS5``: a MIMO complex-diagonal SSM (S5-style, Smith et al. 2023) with a spike readout.

One system shared by all channels: ``P = d_state`` complex states, ``u_t`` ``[H]`` in,
``y_t`` ``[H]`` out::

    x_t = A_bar x_{t-1} + B_bar u_t            A_bar = exp(dt A), B_bar = (A_bar - 1) / A * B
    y_t = 2 Re(C x_t) + D u_t                   (conjugate states implied: a real system of 2P)
    s_t = Theta(y_t - v_threshold)              surrogate gradient, ATan(alpha=2) by default

``A = diag(-exp(log_A_real) + i A_imag)`` ``[P]``, one step size per state
(``log_dt`` ``[P]``), ``B`` ``[P, H]`` and ``C`` ``[H, P]`` complex, ``D`` ``[H]``.

Options that follow S5 itself:

* ``real_part="free"``: ``Re A`` is a free parameter ``A_real`` (init -0.5), as in S5, clipped
  from above by ``clip_real`` when given (S5's ``clip_eigs`` uses -1e-4; the clip passes no
  gradient where it is active).  The default ``"exp"`` keeps ``Re A = -exp(log_A_real) < 0``.
* ``discretization="bilinear"``: ``A_bar = (1 + dt A / 2) / (1 - dt A / 2)``,
  ``B_bar = dt / (1 - dt A / 2) * B`` (S5's other choice; ``"zoh"`` is the default).
* ``bidirectional=True``: a second scan runs backwards over time with the same ``A_bar``,
  ``B_bar`` and its own ``C_backward``; ``y_t = 2 Re(C x_t + C_b x'_t) + D u_t`` where both
  ``x_t`` and ``x'_t`` include step ``t`` (S5's convention).  No streaming form then.

The parallel form computes all states with `bpsn_ext.core.diagonal_ssm.diagonal_scan` (a
log-depth associative scan: no Python loop over T, memory linear in T) or, where
`bpsn_ext.kernels.dispatch.choose_diagonal_scan` picks it (CUDA tensors with Triton installed,
``BPSN_EXT_SSM_IMPLEMENTATION=triton`` or the attribute ``scan_backend='triton'``), the fused
Triton scan; `step` is the recurrence itself.

Initialisation, by default as S5's reference code does it (`s5_init`): the eigenvalues of the
normal part of HiPPO-LegS (HiPPO-N, of size ``2P / init_blocks``, one of each conjugate pair
kept, repeated over ``init_blocks`` blocks) with eigenvectors V; ``B = V^-1 B0`` with ``B0``
LeCun-normal (truncated normal, variance ``1 / (2P / init_blocks)`` per block), so
``E|B|^2 = 1/(2P)``; ``C = C0 V`` with S5's ``C_init`` (``"trunc_standard_normal"``, default,
``E|C|^2 = 1/P``; ``"lecun_normal"``; ``"complex_normal"``, ``CN(0, 1)`` without V);
``log_dt ~ U[log dt_min, log dt_max]``, ``D ~ N(0, 1)``.  The earlier draws stay as options:
``A_init="s4d_lin"`` (``Re A = -1/2``, ``A_imag[p] = pi p``), ``B_init="complex_normal"``
(``CN(0, 1/H)``), ``C_init="complex_normal"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from bpsn_ext.core.diagonal_ssm import (
    check_d_state,
    check_dt_range,
    check_sequence,
    check_state,
    check_step_input,
    check_step_mask,
    complex_dtype,
    log_dt_init,
    zoh,
)
from bpsn_ext.core.masks import as_mask, broadcast_mask, zero_padded
from bpsn_ext.layers._common import Streaming, check_choice, check_d_model
from bpsn_ext.optim import OptimHints
from bpsn_ext.surrogate import ATan, resolve
from bpsn_ext.util.arguments import check_float

__all__ = [
    "SpikingS5",
    "S5_ACTIVATIONS",
    "S5_REAL_PARTS",
    "S5_DISCRETIZATIONS",
    "S5_A_INITS",
    "S5_B_INITS",
    "S5_C_INITS",
]

S5_ACTIVATIONS = ("spike", "gelu", "none")
S5_REAL_PARTS = ("exp", "free")
S5_DISCRETIZATIONS = ("zoh", "bilinear")
S5_A_INITS = ("hippo_n", "s4d_lin")
S5_B_INITS = ("s5", "complex_normal")
S5_C_INITS = ("trunc_standard_normal", "lecun_normal", "complex_normal")


def _hippo_n(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues ``[N]`` and eigenvectors ``[N, N]`` (complex128) of the normal part of
    HiPPO-LegS, ``S = A + p p^T`` with ``p_n = sqrt(n + 1/2)``: ``S = -I/2 + skew``; sorted by
    imaginary part (ascending), as ``eigh`` of ``-i S`` gives them."""
    n = torch.arange(N, dtype=torch.float64)
    root = torch.sqrt(2 * n + 1)
    skew = 0.5 * torch.outer(root, root)
    skew = torch.triu(skew, 1) - torch.tril(skew, -1)  # S - diag(S)
    imag, V = torch.linalg.eigh(-1j * skew.to(torch.complex128))
    return torch.complex(torch.full_like(imag, -0.5), imag), V


def _lecun_normal(*shape: int, fan_in: int) -> torch.Tensor:
    """JAX's ``lecun_normal``: a normal truncated at 2 standard deviations, variance
    ``1 / fan_in`` (float64)."""
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978  # the truncation's variance factor
    return nn.init.trunc_normal_(
        torch.empty(shape, dtype=torch.float64), 0.0, std, -2 * std, 2 * std
    )


def _hippo_blocks(P: int, blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """S5's block initialisation: eigenvalues ``[P]`` (one of each conjugate pair) and the
    block-diagonal eigenvector matrix ``V`` ``[2P, P]`` of ``blocks`` HiPPO-N copies."""
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1 or P % blocks:
        raise ValueError(f"init_blocks must be an int >= 1 dividing d_state={P}, got {blocks!r}")
    half = P // blocks
    Lambda, V = _hippo_n(2 * half)
    Lambda, V = Lambda[:half], V[:, :half]
    return Lambda.repeat(blocks), torch.block_diag(*[V] * blocks)


def _draw_C(H: int, P: int, how: str, V: torch.Tensor | None) -> torch.Tensor:
    """``C`` ``[H, P]`` complex128 by S5's ``C_init`` (``C0 V``, or CN(0, 1) directly)."""
    if how == "complex_normal":
        return torch.randn(H, P, dtype=torch.complex128)  # E|C|^2 = 1, as S5's option
    full = V.shape[0]
    if how == "trunc_standard_normal":  # LeCun normal per row: fan-in 2P
        C0 = _lecun_normal(H, full, 2, fan_in=full)
    else:  # "lecun_normal" over the whole [H, 2P, 2] array: fan-in 2P x H
        C0 = _lecun_normal(H, full, 2, fan_in=full * H)
    return torch.complex(C0[..., 0], C0[..., 1]) @ V


def s5_init(
    H: int, P: int, A_init: str, B_init: str, C_init: str, blocks: int, bidirectional: bool
) -> dict[str, torch.Tensor]:
    """The initial ``A_real``, ``A_imag`` ``[P]``, ``B`` ``[P, H]``, ``C`` (and ``C_backward``)
    ``[H, P]`` of `SpikingS5` (float32 / complex64); see the module docstring."""
    check_choice("A_init", A_init, S5_A_INITS)
    check_choice("B_init", B_init, S5_B_INITS)
    check_choice("C_init", C_init, S5_C_INITS)
    V = None
    if A_init == "hippo_n":
        Lambda, V = _hippo_blocks(P, blocks)
    else:
        Lambda = torch.complex(
            torch.full((P,), -0.5), math.pi * torch.arange(P, dtype=torch.float32)
        )
    if V is None and (B_init == "s5" or C_init != "complex_normal"):
        raise ValueError(
            f"B_init={B_init!r} / C_init={C_init!r} multiply by HiPPO-N's eigenvectors V: use "
            f"A_init='hippo_n', or B_init='complex_normal' and C_init='complex_normal'"
        )
    if B_init == "s5":
        B = V.conj().T @ _lecun_normal(V.shape[0], H, fan_in=V.shape[0]).to(V.dtype)
    else:
        B = torch.randn(P, H, dtype=torch.complex128) / math.sqrt(H)
    out = {"A_real": Lambda.real, "A_imag": Lambda.imag, "B": B, "C": _draw_C(H, P, C_init, V)}
    if bidirectional:
        out["C_backward"] = _draw_C(H, P, C_init, V)
    return {k: v.to(torch.complex64 if v.is_complex() else torch.float32) for k, v in out.items()}


def _bilinear(A: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``A_bar = (1 + dt A/2) / (1 - dt A/2)`` and the factor ``dt / (1 - dt A/2)`` of B."""
    inv = 1.0 / (1.0 - 0.5 * dt * A)
    return (1.0 + 0.5 * dt * A) * inv, dt * inv


class SpikingS5(OptimHints, Streaming, nn.Module):
    """Spiking S5 layer ``[T, N, H]`` -> spikes ``[T, N, H]``.

    Args:
        d_model: channels H (input and output).
        d_state: complex states P (default 64).
        dt_min / dt_max: range of the initial step sizes (Python floats).
        activation: ``"spike"`` (default), ``"gelu"`` or ``"none"`` (the linear S5 output y).
        surrogate: for ``"spike"``: name, surrogate object or snnTorch ``spike_grad``; default
            ``ATan(alpha=2)`` firing at ``y >= v_threshold``.
        v_threshold: spike threshold (Python float), default 0.0.
        real_part: ``"exp"`` (default, ``Re A = -exp(log_A_real)``) or ``"free"`` (parameter
            ``A_real``, S5's choice).
        clip_real: with ``real_part="free"``: clip ``Re A`` to at most this value (S5 uses
            -1e-4); ``None`` (default) leaves it free.
        discretization: ``"zoh"`` (default) or ``"bilinear"``.
        bidirectional: add a backward-in-time scan with its own ``C_backward`` (default off).
        A_init: ``"hippo_n"`` (default, S5's) or ``"s4d_lin"`` eigenvalues.
        B_init: ``"s5"`` (default: ``V^-1`` times LeCun normal; needs ``A_init="hippo_n"``) or
            ``"complex_normal"`` (``CN(0, 1/H)``).
        C_init: S5's ``"trunc_standard_normal"`` (default), ``"lecun_normal"`` (both times V;
            need ``A_init="hippo_n"``) or ``"complex_normal"`` (``CN(0, 1)``).
        init_blocks: S5's block initialisation J: ``J`` copies of HiPPO-N of size ``2P / J``
            (``d_state`` must be a multiple of J).

    Example::

        s5 = SpikingS5(64, 32, real_part="free", clip_real=-1e-4, discretization="bilinear")
        spikes = s5(torch.randn(784, 8, 64))

    Streaming: `step` keeps the complex state ``[N, P]`` in ``ssm_state`` (``None`` until
    the first step, never in ``state_dict``); `reset_state` clears it.
    """

    ssm_parameter_names: tuple[str, ...] = ("log_dt", "log_A_real", "A_real", "A_imag", "B")
    scan_backend: str | None = None  # None / "auto", "torch" or "triton" (see the module doc)

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        activation: str = "spike",
        surrogate: Callable | str | None = None,
        v_threshold: float = 0.0,
        real_part: str = "exp",
        clip_real: float | None = None,
        discretization: str = "zoh",
        bidirectional: bool = False,
        A_init: str = "hippo_n",
        B_init: str = "s5",
        C_init: str = "trunc_standard_normal",
        init_blocks: int = 1,
    ) -> None:
        super().__init__()
        check_d_model(d_model)
        check_d_state(d_state, even=False)
        check_dt_range(dt_min, dt_max)
        self.activation_kind = check_choice("activation", activation, S5_ACTIVATIONS)
        self.v_threshold = check_float("v_threshold", v_threshold)
        self.real_part = check_choice("real_part", real_part, S5_REAL_PARTS)
        self.discretization = check_choice("discretization", discretization, S5_DISCRETIZATIONS)
        if clip_real is not None:
            check_float("clip_real", clip_real)
            if real_part != "free":
                raise ValueError("clip_real applies to real_part='free' only")
        if not isinstance(bidirectional, bool):
            raise TypeError(f"bidirectional must be bool, got {type(bidirectional).__name__}")
        self.clip_real, self.bidirectional = clip_real, bidirectional
        H, P = d_model, d_state
        self.d_model, self.d_state, self.dt_min, self.dt_max = d_model, d_state, dt_min, dt_max
        self.log_dt = nn.Parameter(log_dt_init(P, dt_min, dt_max))
        init = s5_init(H, P, A_init, B_init, C_init, init_blocks, bidirectional)
        if real_part == "exp":
            self.log_A_real = nn.Parameter(torch.log(-init["A_real"]))
        else:
            self.A_real = nn.Parameter(init["A_real"])
        self.A_imag = nn.Parameter(init["A_imag"])
        self.B = nn.Parameter(torch.view_as_real(init["B"]))
        self.C = nn.Parameter(torch.view_as_real(init["C"]))
        if bidirectional:
            self.C_backward = nn.Parameter(torch.view_as_real(init["C_backward"]))
        self.D = nn.Parameter(torch.randn(H))
        if activation == "spike":
            self.activation = resolve(surrogate, default=ATan, fire_ge=True)
        else:
            if surrogate is not None:
                raise ValueError("surrogate only applies to activation='spike'")
            self.activation = nn.GELU() if activation == "gelu" else nn.Identity()
        self.ssm_state: torch.Tensor | None = None
        self._tag_optim()

    # -- pieces ----------------------------------------------------------------------------
    @property
    def A(self) -> torch.Tensor:
        """Continuous-time eigenvalues, complex ``[P]``."""
        if self.real_part == "exp":
            return torch.complex(-torch.exp(self.log_A_real), self.A_imag)
        re = self.A_real if self.clip_real is None else self.A_real.clamp(max=self.clip_real)
        return torch.complex(re, self.A_imag)

    def _discrete(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``A_bar`` ``[P]`` and ``B_bar`` ``[P, H]`` (complex)."""
        if self.discretization == "zoh":
            _, A_bar, factor = zoh(self.A, torch.exp(self.log_dt))
        else:
            A_bar, factor = _bilinear(self.A, torch.exp(self.log_dt))
        return A_bar, factor[:, None] * torch.view_as_complex(self.B)

    def _input(self, u: torch.Tensor, B_bar: torch.Tensor) -> torch.Tensor:
        """``B_bar u`` ``[..., P]`` complex from real ``u`` ``[..., H]``: one real matmul whose
        output columns interleave real and imaginary parts (a free complex view)."""
        W = torch.view_as_real(B_bar).permute(1, 0, 2).reshape(self.d_model, 2 * self.d_state)
        return torch.view_as_complex((u @ W).unflatten(-1, (self.d_state, 2)))

    def _readout_matrix(self, C_real: torch.Tensor) -> torch.Tensor:
        C = torch.view_as_complex(C_real)
        return torch.stack([C.real, -C.imag], dim=-1).reshape(self.d_model, 2 * self.d_state)

    def _output(
        self, x: torch.Tensor, u: torch.Tensor, x_back: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``y = 2 Re(C x) + D u`` ``[..., H]``: ``Re(C x) = [Re x, Im x] @ [Re C, -Im C]``
        (plus ``2 Re(C_b x_back)`` for the backward states)."""
        y = 2.0 * (torch.view_as_real(x).flatten(-2) @ self._readout_matrix(self.C).T)
        if x_back is not None:
            W_b = self._readout_matrix(self.C_backward)
            y = y + 2.0 * (torch.view_as_real(x_back).flatten(-2) @ W_b.T)
        return y + self.D * u

    def _readout(self, y: torch.Tensor) -> torch.Tensor:
        if self.activation_kind == "spike":
            return self.activation(y - self.v_threshold)
        return self.activation(y)

    # -- parallel form ---------------------------------------------------------------------
    def _parallel(
        self, x: torch.Tensor, mask: torch.Tensor | None, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(y [T, N, H], x_T [N, P], mask [T, N, 1] or None)``."""
        check_sequence(type(self).__name__, x, self.d_model, self.D.dtype)
        m = as_mask(mask, x.shape[0], x.shape[1], x.device)
        m = None if m is None else broadcast_mask(m, 3)
        u = x if m is None else zero_padded(x, m)
        A_bar, B_bar = self._discrete()
        b = self._input(u, B_bar)  # [T, N, P]
        if state is not None:
            self._refuse_bidirectional("a carried state")
            check_state(
                type(self).__name__, state, (x.shape[1], self.d_state), complex_dtype(x.dtype)
            )
            b = torch.cat([(b[0] + A_bar * state)[None], b[1:]])
        from bpsn_ext.kernels import dispatch

        impl = dispatch.choose_diagonal_scan(
            x, dtype=self.D.dtype, backend=self.scan_backend, what=type(self).__name__
        )
        xs = dispatch.diagonal_states(impl, A_bar, b)
        back = (
            dispatch.diagonal_states(impl, A_bar, b, reverse=True) if self.bidirectional else None
        )
        y = self._output(xs, u, back)
        return (y if m is None else zero_padded(y, m)), xs[-1], m

    def _refuse_bidirectional(self, what: str) -> None:
        if self.bidirectional:
            raise RuntimeError(
                f"SpikingS5(bidirectional=True) has no {what}: its backward scan needs the "
                "whole sequence; use forward() on complete sequences"
            )

    def ssm_forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The linear SSM in parallel: ``(y [T, N, H], x_T [N, P])`` from ``state`` (None: 0).

        Padded steps (``mask`` False) enter as zeros and output zeros.
        """
        y, new_state, _ = self._parallel(x, mask, state)
        return y, new_state

    def forward_with_membrane(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(out, y)``: the readout (spikes) and the pre-spike SSM output, both ``[T, N, H]``."""
        y, _, m = self._parallel(x, mask, None)
        out = self._readout(y)
        return (out if m is None else zero_padded(out, m)), y

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Spikes ``[T, N, H]`` for ``x`` ``[T, N, H]`` from a zero state; ``mask`` is a bool
        ``[T, N]`` (True = real step) or integer lengths ``[N]``; padded steps output 0."""
        return self.forward_with_membrane(x, mask)[0]

    def forward_with_state(
        self, x: torch.Tensor, state: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Parallel form continuing from ``state``: ``(out [T, N, H], new_state [N, P])``."""
        y, new_state, m = self._parallel(x, mask, state)
        out = self._readout(y)
        return (out if m is None else out * m), new_state

    # -- recurrent (streaming) form --------------------------------------------------------
    def step_with_state(
        self,
        x_t: torch.Tensor,
        state: torch.Tensor | None = None,
        mask_t: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step, pure: ``(out_t [N, H], new_state [N, P])``."""
        self._refuse_bidirectional("streaming form")
        u = check_step_input(type(self).__name__, x_t, self.d_model, self.D.dtype)
        m = check_step_mask(mask_t, u.shape[0], u.device)
        if m is not None:
            u = u * m[:, None]
        A_bar, B_bar = self._discrete()
        shape = (u.shape[0], self.d_state)
        if state is None:
            state = torch.zeros(shape, dtype=complex_dtype(u.dtype), device=u.device)
        else:
            check_state(type(self).__name__, state, shape, complex_dtype(u.dtype))
        new_state = A_bar * state + self._input(u, B_bar)
        out = self._readout(self._output(new_state, u))
        return (out if m is None else out * m[:, None]), new_state

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_state={self.d_state}, dt_min={self.dt_min}, "
            f"dt_max={self.dt_max}, activation={self.activation_kind!r}, "
            f"v_threshold={self.v_threshold}, real_part={self.real_part!r}, "
            f"clip_real={self.clip_real}, discretization={self.discretization!r}, "
            f"bidirectional={self.bidirectional}"
        )
