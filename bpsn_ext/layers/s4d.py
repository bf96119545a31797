"""``S4D``: the diagonal structured state-space layer (Gu et al. 2022), time-first.

Per channel ``h = 1..H`` an independent single-input single-output system with ``P = N/2``
complex modes (their conjugates are implied, hence the factor 2 in the output)::

    x'(t) = A x(t) + B u(t),  y = 2 Re(C x) + D u,   A = diag(-exp(log_A_real) + i A_imag), B = 1

discretised by zero-order hold (``A_bar = exp(dt A)``, ``B_bar = (exp(dt A) - 1) / A``).

* parallel form (`S4D.forward`): the kernel
  ``K[h, l] = 2 Re sum_p C[h,p] B_bar[h,p] A_bar[h,p]^l`` (Vandermonde) and an FFT convolution
  zero-padded to ``2T``, plus ``D u``;
* recurrent form (`S4D.step`): ``x_t = A_bar x_{t-1} + B_bar u_t``,
  ``y_t = 2 Re(C x_t) + D u_t``; the same numbers as the parallel form.

S4D-Lin initialisation: ``log_A_real = log 0.5``, ``A_imag[p] = pi p``,
``log_dt ~ U[log dt_min, log dt_max]`` per channel, ``C`` complex standard normal, ``D ~ N(0, 1)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bpsn_ext.core.diagonal_ssm import (
    bidirectional_conv,
    causal_conv,
    check_d_state,
    check_dt_range,
    check_sequence,
    check_state,
    check_step_input,
    check_step_mask,
    complex_dtype,
    log_dt_init,
    vandermonde,
    vandermonde_transpose,
    zoh,
)
from bpsn_ext.core.masks import as_mask, broadcast_mask, zero_padded
from bpsn_ext.layers._common import Streaming, check_choice, check_d_model
from bpsn_ext.optim import OptimHints

__all__ = ["S4D", "BIDIRECTIONAL_CONVENTIONS"]

BIDIRECTIONAL_CONVENTIONS = ("lag0", "s4")

State = torch.Tensor | None


class S4D(OptimHints, Streaming, nn.Module):
    """Diagonal SSM token mixer: ``[T, N, H]`` -> ``[T, N, H]`` (linear, real-valued).

    Args:
        d_model: channels H.
        d_state: state size N per channel (even: N/2 complex modes); default 64.
        dt_min / dt_max: range of the initial step size (Python floats, ``dt_min <= dt_max``).
        bidirectional: add an anti-causal kernel with its own ``C``:
            ``y = K_f * u + flip(K_b * flip(u)) + D u``.  No streaming form then.
        bidirectional_convention: ``"lag0"`` (default: both kernels include lag 0, so the
            backward half is exactly an S4D run on the reversed sequence) or ``"s4"``
            (state-spaces/s4's ``FFTConv``: the backward kernel is shifted by one step and
            covers only later steps, so s4's bidirectional weights and results carry over).

    Parameters: ``log_dt`` [H], ``log_A_real`` [H, P], ``A_imag`` [H, P], ``C`` [H, P, 2]
    (real view of a complex tensor; also ``C_backward`` when bidirectional), ``D`` [H].
    ``ssm_parameter_names`` lists those that `bpsn_ext.optim.ssm_param_groups` trains
    with the small SSM learning rate and no weight decay; they also carry state-spaces'
    ``_optim`` hint ``{"lr": 0.001, "weight_decay": 0.0}`` for its ``setup_optimizer``.

    ``fused`` (attribute, default ``True``) adds ``D u`` inside the FFT convolution's last
    pass; ``False`` runs the op-by-op reference.  The output ``[T, N, H]`` is stored
    channel-major (``[N, H, T]`` in memory, `bpsn_ext.core.channel_major`).

    Streaming: `step` consumes one step ``[N, H]`` and keeps the state ``x`` (complex
    ``[N, H, P]``) in the attribute ``ssm_state`` (``None`` until the first step, never in
    ``state_dict``); `reset_state` clears it.

    Kernel: on a whole sequence a causal layer may run the recurrent form as a fused scan
    (Triton or CuPy) instead of the FFT form; `bpsn_ext.kernels.dispatch.choose_scan` decides,
    from the device, the dtype, what is installed, ``BPSN_EXT_SSM_IMPLEMENTATION`` and the
    attribute ``scan_backend``: None (no request), ``'triton'`` or ``'cupy'`` (explicit: raise
    where they cannot run), ``'torch'`` (the FFT form) or ``'auto'`` (SpikingJelly's names).
    """

    ssm_parameter_names: tuple[str, ...] = ("log_dt", "log_A_real", "A_imag")
    scan_backend: str | None = None
    #: fused element-wise work (``D u`` inside the convolution); ``False``: the op-by-op
    #: reference (same numbers up to rounding).  `bpsn_ext.layers.set_fused` sets it.
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
    ) -> None:
        super().__init__()
        check_d_model(d_model)
        check_d_state(d_state, even=True)
        check_dt_range(dt_min, dt_max)
        if not isinstance(bidirectional, bool):
            raise TypeError(f"bidirectional must be bool, got {type(bidirectional).__name__}")
        check_choice(
            "bidirectional_convention", bidirectional_convention, BIDIRECTIONAL_CONVENTIONS
        )
        H, P = d_model, d_state // 2
        self.d_model, self.d_state, self.bidirectional = d_model, d_state, bidirectional
        self.bidirectional_convention = bidirectional_convention
        self.dt_min, self.dt_max = dt_min, dt_max
        self.log_dt = nn.Parameter(log_dt_init(H, dt_min, dt_max))
        self.log_A_real = nn.Parameter(torch.full((H, P), math.log(0.5)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(P, dtype=torch.float32).repeat(H, 1))
        self.C = nn.Parameter(torch.view_as_real(torch.randn(H, P, dtype=torch.cfloat)))
        if bidirectional:
            self.C_backward = nn.Parameter(
                torch.view_as_real(torch.randn(H, P, dtype=torch.cfloat))
            )
        self.D = nn.Parameter(torch.randn(H))
        self.ssm_state: State = None
        self._tag_optim()

    # -- derived quantities ----------------------------------------------------------------
    @property
    def A(self) -> torch.Tensor:
        """Continuous-time eigenvalues, complex ``[H, P]`` (real part < 0)."""
        return torch.complex(-torch.exp(self.log_A_real), self.A_imag)

    def _C(self, backward: bool = False) -> torch.Tensor:
        return torch.view_as_complex(self.C_backward if backward else self.C)

    def _discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(dtA, A_bar, B_bar)``, each complex ``[H, P]``."""
        return zoh(self.A, torch.exp(self.log_dt)[:, None])

    def kernel(self, L: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The convolution kernel ``K`` ``[H, L]`` (``(K_f, K_b)`` when bidirectional)."""
        dtA, _, B_bar = self._discrete()
        K = 2.0 * vandermonde(self._C() * B_bar, dtA, L).real
        if not self.bidirectional:
            return K
        return K, 2.0 * vandermonde(self._C(True) * B_bar, dtA, L).real

    # -- parallel form ---------------------------------------------------------------------
    def _fused_scan(
        self, x: torch.Tensor, state: State, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(y, new_state)`` from the fused scan the dispatch chooses, or None (FFT form)."""
        from bpsn_ext.kernels import dispatch

        what = type(self).__name__
        impl = dispatch.choose_scan(
            x,
            bidirectional=self.bidirectional,
            dtype=self.D.dtype,
            backend=self.scan_backend,
            what=what,
        )
        if impl == "torch":
            return None
        _, A_bar, B_bar = self._discrete()
        y, new_state = dispatch.s4d_scan(impl, x, state, mask, (A_bar, B_bar, self.C, self.D), what)
        if not self.bidirectional:
            return y, new_state
        back = (A_bar, B_bar, self.C_backward, torch.zeros_like(self.D))
        y_b, _ = dispatch.s4d_scan(impl, x, None, mask, back, what, reverse=True)
        if self.bidirectional_convention == "s4":  # the backward kernel covers later steps only
            y_b = torch.cat([y_b[1:], torch.zeros_like(y_b[:1])])
        return y + y_b, None

    def _masked_input(
        self, x: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_sequence(type(self).__name__, x, self.d_model, self.D.dtype)
        m = as_mask(mask, x.shape[0], x.shape[1], x.device)
        if m is not None:
            m = broadcast_mask(m, 3)
            x = zero_padded(x, m)
        return x, m

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``y`` ``[T, N, H]`` for ``x`` ``[T, N, H]``; starts from a zero state, keeps none.

        ``mask``: bool ``[T, N]`` (True = real step) or integer lengths ``[N]``.  Padded steps
        enter as zeros and output zeros, so real steps never see the padding's content.
        """
        fused = self._fused_scan(x, None, mask)
        if fused is not None:
            return fused[0]
        u, m = self._masked_input(x, mask)
        D = self.D if self.fused else None  # fused: D u is added in the convolution's last pass
        if self.bidirectional:
            K_f, K_b = self.kernel(u.shape[0])
            shift = 1 if self.bidirectional_convention == "s4" else 0
            y = bidirectional_conv(u, K_f, K_b, shift, D)
        else:
            y = causal_conv(u, self.kernel(u.shape[0]), D)
        if D is None:
            y = y + u * self.D
        return y if m is None else zero_padded(y, m)

    def forward_with_state(
        self, x: torch.Tensor, state: State = None, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Parallel form that continues from ``state`` and returns the state after the last
        step: ``(y [T, N, H], x_T [N, H, P])``.  Running chunks one after another with it
        equals one call on the whole sequence.  Causal layers only.
        """
        self._refuse_bidirectional("forward_with_state")
        fused = self._fused_scan(x, state, mask)
        if fused is not None:
            return fused
        u, m = self._masked_input(x, mask)
        T, N, H = u.shape
        dtA, A_bar, B_bar = self._discrete()
        C = self._C()
        y = causal_conv(u, 2.0 * vandermonde(C * B_bar, dtA, T).real) + u * self.D
        u_nht = u.permute(1, 2, 0)  # [N, H, T]
        new_state = B_bar * vandermonde_transpose(u_nht, dtA)  # [N, H, P]
        if state is not None:
            check_state(
                type(self).__name__, state, (N, H, self.d_state // 2), complex_dtype(u.dtype)
            )
            # free response of the carried state: 2 Re sum_p C A_bar^(t+1) x0
            y = y + 2.0 * vandermonde(C * state, dtA, T, offset=1).real.permute(2, 0, 1)
            new_state = new_state + torch.exp(dtA * T) * state
        return (y if m is None else zero_padded(y, m)), new_state

    # -- recurrent (streaming) form --------------------------------------------------------
    def _refuse_bidirectional(self, what: str) -> None:
        if self.bidirectional:
            raise RuntimeError(
                f"S4D(bidirectional=True) has no {what}: its anti-causal kernel needs the whole "
                "sequence; use forward() on complete sequences"
            )

    def step_with_state(
        self, x_t: torch.Tensor, state: State = None, mask_t: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step, pure: ``(y_t [N, H], new_state [N, H, P])``.

        ``state`` None means zero.  ``mask_t`` bool ``[N]``: where False the input counts as
        zero and the output is zero (the state still decays, exactly as in `forward`).
        """
        self._refuse_bidirectional("streaming form")
        u = check_step_input(type(self).__name__, x_t, self.d_model, self.D.dtype)
        m = check_step_mask(mask_t, u.shape[0], u.device)
        if m is not None:
            u = zero_padded(u, m[:, None])
        _, A_bar, B_bar = self._discrete()
        if state is None:
            state = torch.zeros(
                *u.shape, A_bar.shape[-1], dtype=complex_dtype(u.dtype), device=u.device
            )
        else:
            check_state(
                type(self).__name__, state, (*u.shape, A_bar.shape[-1]), complex_dtype(u.dtype)
            )
        new_state = A_bar * state + B_bar * u[..., None]
        y = 2.0 * (self._C() * new_state).sum(-1).real + self.D * u
        return (y if m is None else zero_padded(y, m[:, None])), new_state

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_state={self.d_state}, dt_min={self.dt_min}, "
            f"dt_max={self.dt_max}, bidirectional={self.bidirectional}"
            + (
                f", bidirectional_convention={self.bidirectional_convention!r}"
                if self.bidirectional
                else ""
            )
        )
