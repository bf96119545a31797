"""Counters for the state-space layers of `bpsn_ext.layers`: the recurrent form.

The layers call these from their ``energy_ops`` methods.  What is counted is the cost of the
recurrent (inference) form on the real steps (``mask`` True), whatever form ran: the Vandermonde
kernel, the FFT convolution and the parallel scan are training/GPU artefacts and are not
counted.  Per real token, with H channels (``d_model``):

* `S4D` (P = ``d_state / 2`` complex modes per channel), per channel:
  ``A_bar x`` 4P MAC (complex x complex), ``B_bar u`` 2P (complex x real u), readout
  ``2 Re(C x) = Re(2C) Re(x) - Im(2C) Im(x)`` 2P MAC (the factor 2 folded into C), ``D u`` 1:
  ``8P + 1 = 4 d_state + 1`` MAC.  Bidirectional: a second recurrence with its own C
  (``16P + 1``).  ``B_bar u`` and ``D u`` are spike-driven projections: AC (nonzero inputs x
  2P, resp. x 1) when ``u`` is a spike/ternary tensor; the state update always costs MAC.
* `SpikingS5` (P = ``d_state`` complex states, MIMO): ``A_bar x`` 4P
  MAC, ``B_bar u`` (B_bar P x H complex) 2PH, readout ``2 Re(C x)`` (C H x P) 2PH MAC, ``D u``
  H; ``B_bar u`` and ``D u`` are AC for spike input.  Readout: 1 compare (add) per channel for
  spikes, 1 nonlin for GELU, nothing for ``"none"``.
* `BinaryS4D` (exclusive: covers its children): its S4D; 1 compare per
  channel (Heaviside) or 1 GELU; the mixing ``nn.Linear`` (H -> 2H, or H) by the built-in
  Linear counter on the real steps (AC on spikes, MAC after GELU; bias 1 add per output); GLU
  ``a * sigmoid(b)``: H sigmoid (nonlin) + H mul; residual H add; the norm by its built-in
  counter (LayerNorm: 3 mul + 4 add per element and 1 rsqrt per token).
* `GSU` (exclusive): its S4D; the `GSUMixer`
  ops below with the GELU; residual; norm.
* `GSUMixer` (exclusive): ``Tern(W) y`` = ``(1 - z_W) H^2`` AC (real y;
  z_W the fraction of zero ternary weights; ``Tern(W)`` is precomputed at inference, free);
  ``W' Tern(y)`` = ``nnz(Tern(y)) x H`` AC (= R_t H^2, R_t the nonzero fraction of Tern(y));
  ``Tern(y)`` itself: 2 compares (adds) per element, plus ``max|y|`` and ``delta`` per
  threshold group (``group - 1`` adds + 1 mul; a group is a token for ``act_delta="token"``,
  all real tokens for ``"tensor"``); biases 2H add; product ``n * m`` H mul; GELU H nonlin.
  Learnable ``Tern`` scales fold into ``W'`` and ``b2``: free.  ``ternary=False``: both routes
  ``H^2`` MAC.

Children are read with `last_call` (what the block's S4D, spike
function, linear and ``Tern(y)`` actually received and returned in this call) and counted on
the real steps with `count_call` (so a registered counter for the child
still applies).  A block driven through ``step_with_state``/``forward_with_state`` (SpikingJelly
``'s'`` mode, ``carry_state=True``) does not call its S4D as a module: the S4D is then counted
from the block's input.
"""

from __future__ import annotations

import torch

from bpsn_ext.core.diagonal_ssm import check_step_mask
from bpsn_ext.core.masks import as_mask
from bpsn_ext.core.ternary import ternarize, ternary_delta
from bpsn_ext.energy.counter_registry import register_builtin_layer
from bpsn_ext.energy.estimate import count_call, last_call
from bpsn_ext.energy.ops import Ops, synaptic

__all__ = ["s4d", "s4d_ops", "spiking_s5", "binary_s4d", "gsu", "gsu_mixer", "mixer_ops"]

_MASK_NAMES = ("mask", "mask_t", "valid")


def _mask_arg(inputs, kwargs):
    if len(inputs) > 1:
        return inputs[1]
    for name in _MASK_NAMES:
        if (kwargs or {}).get(name) is not None:
            return kwargs[name]
    return None


def valid_mask(x: torch.Tensor, mask) -> torch.Tensor | None:
    """Bool mask over ``x.shape[:-1]`` (True = real step), or None (every step is real).

    ``x`` is ``[T, N, H]`` (mask: bool ``[T, N]`` or lengths ``[N]``) or one step ``[N, H]``
    (mask: bool ``[N]``); a bool mask of shape ``x.shape[:-1]`` is taken as it is.
    """
    if mask is None:
        return None
    if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and (mask.shape == x.shape[:-1]):
        return mask
    if x.dim() == 3:
        return as_mask(mask, x.shape[0], x.shape[1], x.device)
    return check_step_mask(mask, x.shape[0], x.device)


def rows(t: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """The real steps of ``t`` ``[..., H]`` as ``[M, H]``."""
    return t.reshape(-1, t.shape[-1]) if valid is None else t[valid]


def _out(output):
    return output[0] if isinstance(output, (tuple, list)) else output


# -- S4D ---------------------------------------------------------------------------------
def s4d_ops(m, u: torch.Tensor) -> list[Ops]:
    """Recurrent-form ops of S4D ``m`` on the inputs ``u`` ``[M, H]`` of its real steps."""
    P = m.d_state // 2
    dirs = 2 if m.bidirectional else 1
    M = u.shape[0]
    return [
        Ops(
            mac=M * m.d_model * dirs * 6 * P,
            label=f"S4D state A_bar x + readout 2Re(Cx): {dirs * 6 * P} MAC/channel",
        ),
        synaptic(u, u.numel() * dirs * 2 * P, label="S4D B_bar u"),
        synaptic(u, u.numel(), label="S4D D u"),
    ]


def s4d(m, inputs, output, kwargs=None) -> list[Ops]:
    x = inputs[0]
    return s4d_ops(m, rows(x, valid_mask(x, _mask_arg(inputs, kwargs))))


# -- SpikingS5 ---------------------------------------------------------------------------
def _activation_ops(act, x_rows: torch.Tensor, out_rows: torch.Tensor, spike: bool) -> list:
    ops = count_call(act, (x_rows,), out_rows)
    if ops is None:  # no counter: a spike function that the estimator does not know
        return [Ops(add=x_rows.numel(), dense=0, label="spike: compare")] if spike else []
    return ops


def spiking_s5(m, inputs, output, kwargs=None) -> list[Ops]:
    x = inputs[0]
    valid = valid_mask(x, _mask_arg(inputs, kwargs))
    u = rows(x, valid)
    M, P, H = u.shape[0], m.d_state, m.d_model
    k = 2 if getattr(m, "bidirectional", False) else 1  # a backward scan: states + readout again
    ops = [
        Ops(
            mac=M * k * (4 * P + 2 * P * H),
            label=f"S5 state A_bar x (4P) + readout 2Re(Cx) (2PH), x{k} directions: "
            f"{k * (4 * P + 2 * P * H)} MAC",
        ),
        synaptic(u, u.numel() * 2 * P, label="S5 B_bar u"),
        synaptic(u, u.numel(), label="S5 D u"),
    ]
    return ops + _activation_ops(
        m.activation, u, rows(_out(output), valid), m.activation_kind == "spike"
    )


# -- blocks ------------------------------------------------------------------------------
def _block(m, inputs, output, kwargs, mix) -> list[Ops]:
    x = inputs[0]
    valid = valid_mask(x, _mask_arg(inputs, kwargs))
    x_rows = rows(x, valid)
    ops: list[Ops] = []
    if m.norm.kind != "none":
        ops += count_call(m.norm.norm, (x_rows,), x_rows) or []
    call = last_call(m.ssm)
    if call is not None:
        args, kw, out = call
        ops += count_call(m.ssm, args, out, kw) or []
    else:  # recurrent / stateful path: the S4D ran as methods of the block
        h = x_rows
        norm_call = last_call(m.norm)
        if m.prenorm and norm_call is not None:
            h = rows(norm_call[2], valid)
        ops += s4d_ops(m.ssm, h)
    ops += mix(m, valid, x_rows.shape[0])
    if m.residual:
        ops.append(Ops(add=x_rows.numel(), dense=0, label="residual"))
    return ops


def _need(module, what: str):
    call = last_call(module)
    if call is None:
        raise RuntimeError(
            f"{what} was not called as a module in this call; the SSM blocks are counted "
            "inside bpsn_ext.energy.estimate only"
        )
    return call


def _binary_s4d_mix(m, valid, M: int) -> list[Ops]:
    a_args, _, a_out = _need(m.activation, "the activation")
    ops = _activation_ops(
        m.activation, rows(a_args[0], valid), rows(a_out, valid), m.activation_kind == "spike"
    )
    l_args, _, l_out = _need(m.output_linear, "output_linear")
    ops += count_call(m.output_linear, (rows(l_args[0], valid),), rows(l_out, valid)) or []
    if m.glu:
        n = M * m.d_model
        ops.append(Ops(mul=n, nonlin=n, dense=0, label="GLU sigmoid + product"))
    return ops


def binary_s4d(m, inputs, output, kwargs=None) -> list[Ops]:
    return _block(m, inputs, output, kwargs, _binary_s4d_mix)


def mixer_ops(mixer, y: torch.Tensor, ty: torch.Tensor | None, gelu: bool) -> list[Ops]:
    """Ops of `GSUMixer` ``mixer`` on the real tokens ``y`` ``[M, H]`` (``ty``: their
    ``Tern(y)``, recomputed when None)."""
    M, H = y.shape
    n, dense = M * H, M * H * H
    W1 = mixer.weight1.detach()
    W2 = W1 if mixer.shared else mixer.weight2.detach()
    if mixer.ternary:
        tern_w = ternarize(W1, ternary_delta(W1, mixer.tern_weight.factor))
        if ty is None:
            dim = -1 if mixer.act_delta == "token" else None
            ty = ternarize(y, ternary_delta(y.detach(), mixer.tern_act.factor, dim))
        groups = M if mixer.act_delta == "token" else min(M, 1)
        ops = [
            synaptic(y, dense, weight=tern_w, label="Tern(W) y"),
            synaptic(ty, dense, weight=W2, label="W' Tern(y)"),
            Ops(
                add=2 * n + max(n - groups, 0),
                mul=groups,
                dense=0,
                label="Tern(y): 2 compares/element, max|y| and delta per group",
            ),
        ]
    else:
        ops = [
            synaptic(y, dense, weight=W1, label="W y"),
            synaptic(y, dense, weight=W2, label="W' y"),
        ]
    ops += [
        Ops(add=2 * n, dense=0, label="route biases"),
        Ops(mul=n, dense=0, label="product n * m"),
    ]
    if gelu:
        ops.append(Ops(nonlin=n, dense=0, label="GELU"))
    return ops


def _gsu_mix(m, valid, M: int) -> list[Ops]:
    mixer = m.mixer
    if mixer.ternary:
        (y, *_), _, ty = _need(mixer.tern_act, "mixer.tern_act")
        return mixer_ops(mixer, rows(y, valid), rows(ty, valid), gelu=mixer.gelu)
    y = _need(m.inner_dropout, "inner_dropout")[2]
    return mixer_ops(mixer, rows(y, valid), None, gelu=mixer.gelu)


def gsu(m, inputs, output, kwargs=None) -> list[Ops]:
    return _block(m, inputs, output, kwargs, _gsu_mix)


def gsu_mixer(m, inputs, output, kwargs=None) -> list[Ops]:
    y = inputs[0]
    valid = valid_mask(y, _mask_arg(inputs, kwargs))
    ty = None
    call = last_call(m.tern_act) if m.ternary else None
    if call is not None:
        ty = rows(call[2], valid)
    return mixer_ops(m, rows(y, valid), ty, gelu=m.gelu)


def _register_layers() -> None:
    """Count this package's SSM layers (and subclasses without their own ``energy_ops``):

    * `S4D`: recurrent-form cost on the real steps, ``8P + 1`` MAC per token and channel
      (P = d_state/2 modes; ``16P + 1`` bidirectional); ``B_bar u`` and ``D u`` are AC on
      spike input;
    * `SpikingS5` (exclusive: its readout too): ``4P + 4PH + H`` MAC per token + the readout;
    * `BinaryS4D` (exclusive): S4D + compare (or GELU) + mixing linear + GLU + residual + norm;
    * `GSUMixer` (exclusive): ``Tern(W) y`` (1 - z_W) H^2 AC + ``W' Tern(y)`` R_t H^2 AC +
      Tern(y) compares + biases + product + GELU, per real token;
    * `GSU` (exclusive): S4D + the mixer's ops + residual + norm, on the real steps.
    """
    from bpsn_ext.layers import GSU, S4D, BinaryS4D, SpikingS5
    from bpsn_ext.layers.gsu import GSUMixer

    for cls, fn, exclusive in (
        (S4D, s4d, False),
        (SpikingS5, spiking_s5, True),
        (BinaryS4D, binary_s4d, True),
        (GSUMixer, gsu_mixer, True),
        (GSU, gsu, True),
    ):
        register_builtin_layer(cls, fn, exclusive=exclusive)


_register_layers()
