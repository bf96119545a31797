"""The native BPSN CPU kernel as ``torch.library`` operators.

``bpsn_ext::bpsn_cpu_forward`` and ``bpsn_ext::bpsn_cpu_backward`` wrap the ctypes calls of
`bpsn_ext.kernels.cpu_native` with fake-tensor (meta) and autograd registrations, so that
eager mode, ``torch.compile`` (``fullgraph=True`` included) and ``torch.export`` all run the
same compiled kernel: the compiler sees one opaque operator instead of breaking the graph.

Shapes: ``x`` ``[T, N, *]`` contiguous, with the channels at some dimension: ``channels`` C
and ``inner`` (the product of the dimensions after the channel one) locate them; ``mask``
``[T, N]`` uint8 (1 = real step) or None; ``decay_f``, ``decay_b``, ``thr`` ``[C]``.

Saved for the backward pass: ``x`` itself (a reference) and the checkpoints the forward
operator returns (``[ceil(T / CHECKPOINT_STEPS), M]``, M = ``x[0].numel()``), not the
membrane: the kernel recomputes it block by block, bitwise as in the forward pass.  The
membrane ``[T, N, *]`` is an output only where ``membrane=True`` asks for it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bpsn_ext.core.bpsn_options import BPSNOptions, BPSNParams, SurrogateArgs
from bpsn_ext.core.masks import as_mask
from bpsn_ext.kernels import cpu_native
from bpsn_ext.kernels.launch_args import channel_layout, per_channel

__all__ = [
    "bpsn_cpu_forward",
    "bpsn_cpu_backward",
    "bpsn_native",
    "native_kernels_into",
    "checkpoint_rows",
]


def checkpoint_rows(T: int) -> int:
    """Rows of the checkpoint arrays for T steps: one per block of
    `cpu_native.CHECKPOINT_STEPS` steps."""
    return -(-T // cpu_native.CHECKPOINT_STEPS)


def _checkpoints(x: Tensor, refractory: int) -> tuple[Tensor, Tensor]:
    """The arrays the forward pass keeps for the backward one: the membrane entering every
    block of steps ``[rows, M]`` and, under the refractory rule, the rule's counter there
    (int32 ``[rows, M]``; else empty)."""
    T = x.shape[0]
    rows, M = checkpoint_rows(T), x.numel() // max(T, 1)
    since = x.new_empty((rows, M) if refractory > 0 else (0,), dtype=torch.int32)
    return x.new_empty(rows, M), since


def _ptr_or_none(t: Tensor) -> int | None:
    return t.data_ptr() if t.numel() else None


def _run_forward(
    x: Tensor,
    decay_f: Tensor,
    decay_b: Tensor,
    thr: Tensor,
    mask: Tensor | None,
    ints: tuple[int, int, int, int],
    membrane: bool,
    out: tuple[Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The forward kernel call (``ints``: channels, inner, fire_ge, refractory); returns
    what `bpsn_cpu_forward` returns.  ``out``: the spikes, checkpoint and counter arrays to
    write into (see `native_kernels_into`), else new ones."""
    channels, inner, fire_ge, refractory = ints
    x = x.contiguous()
    T, N = x.shape[:2]
    M = x.numel() // T
    spikes, ckpt, since = out or (torch.empty_like(x), *_checkpoints(x, refractory))
    mem = torch.empty_like(x) if membrane else x.new_empty(0)
    lib = cpu_native._load_default()
    status = getattr(lib, f"bpsn_cpu_forward_{cpu_native._DTYPES[x.dtype]}")(
        x.data_ptr(),
        cpu_native._ptr(mask),
        decay_f.data_ptr(),
        decay_b.data_ptr(),
        thr.data_ptr(),
        spikes.data_ptr(),
        ckpt.data_ptr(),
        _ptr_or_none(since),
        _ptr_or_none(mem),
        T,
        M,
        N,
        channels,
        inner,
        fire_ge,
        refractory,
        cpu_native._threads(),
    )
    cpu_native._check(status, "forward")
    return spikes, mem, ckpt, since


_LIB = torch.library.Library("bpsn_ext", "FRAGMENT")
_LIB.define(
    "bpsn_cpu_forward(Tensor x, Tensor decay_f, Tensor decay_b, Tensor thr, Tensor? mask, "
    "int channels, int inner, int fire_ge, int refractory, int sg_kind, float sg_a, "
    "float sg_b, bool membrane) -> (Tensor, Tensor, Tensor, Tensor)"
)
_LIB.define(
    "bpsn_cpu_backward(Tensor? grad_spikes, Tensor? grad_mem, Tensor? mask, Tensor decay_f, "
    "Tensor decay_b, Tensor thr, Tensor x, Tensor ckpt, Tensor since, int channels, int inner, "
    "int fire_ge, int refractory, int sg_kind, float sg_a, float sg_b) "
    "-> (Tensor, Tensor, Tensor, Tensor)"
)
bpsn_cpu_forward = torch.ops.bpsn_ext.bpsn_cpu_forward.default
"""``(spikes, membrane, checkpoints, since)``: spikes ``[T, N, *]``; the fused membrane
``[T, N, *]`` (0 at padded steps) when ``membrane``, else an empty tensor; the checkpoints the
backward pass recomputes the membrane from (see `_checkpoints`).  The surrogate (``sg_*``) is
used by the backward pass only."""
bpsn_cpu_backward = torch.ops.bpsn_ext.bpsn_cpu_backward.default
"""Gradients of ``x`` ``[T, N, *]`` and of ``decay_f``, ``decay_b``, ``thr`` ``[C]``, from
the forward pass's input and checkpoints (``ckpt``, ``since``)."""


def _forward_cpu(x, decay_f, decay_b, thr, mask, channels, inner, fire_ge, refractory, *rest):
    """The CPU kernel of `bpsn_cpu_forward` (``rest``: sg_kind, sg_a, sg_b, membrane)."""
    ints = (channels, inner, fire_ge, refractory)
    return _run_forward(x, decay_f, decay_b, thr, mask, ints, membrane=rest[3])


@torch.library.register_fake("bpsn_ext::bpsn_cpu_forward")
def _(x, decay_f, decay_b, thr, mask, channels, inner, fire_ge, refractory, *rest):
    mem = torch.empty_like(x) if rest[3] else x.new_empty(0)
    return (torch.empty_like(x), mem, *_checkpoints(x, refractory))


def _spike_grad(g: Tensor | None, dtype: torch.dtype) -> tuple[Tensor | None, int]:
    """``(dL/dspikes, 1 if it is one value broadcast over [T, N, *] else 0)``: the value of
    ``y.sum().backward()`` is passed as one number, any other gradient contiguous."""
    if g is None:
        return None, 0
    g = g.to(dtype)
    if all(s == 0 for s in g.stride()):
        return g, 1
    return g.contiguous(), 0


def _run_backward(
    grad_spikes: Tensor | None,
    grad_mem: Tensor | None,
    mask: Tensor | None,
    params: tuple[Tensor, Tensor, Tensor],
    saved: tuple[Tensor, Tensor, Tensor],
    ints: tuple[int, int, int, int],
    surrogate: tuple[int, float, float],
    out: tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The backward kernel call (``params``: decay_f, decay_b, thr; ``saved``: x, ckpt,
    since; ``ints`` as in `_run_forward`; ``surrogate``: kind, a, b); returns what
    `bpsn_cpu_backward` returns, written into ``out`` where given."""
    (decay_f, decay_b, thr), (x, ckpt, since) = params, saved
    channels, inner, fire_ge, refractory = ints
    x = x.contiguous()
    T, N = x.shape[:2]
    M = x.numel() // T
    g, g_const = _spike_grad(grad_spikes, x.dtype)
    no_mem = grad_mem is None or grad_mem.numel() == 0  # empty: no membrane was asked for
    gm = None if no_mem else grad_mem.to(x.dtype).contiguous()
    grads = out or (torch.empty_like(x), *(x.new_empty(channels) for _ in range(3)))
    grad_x, g_lf, g_lb, g_th = grads
    lib = cpu_native._load_default()
    status = getattr(lib, f"bpsn_cpu_backward_{cpu_native._DTYPES[x.dtype]}")(
        cpu_native._ptr(g),
        g_const,
        cpu_native._ptr(gm),
        cpu_native._ptr(mask),
        decay_f.data_ptr(),
        decay_b.data_ptr(),
        thr.data_ptr(),
        x.data_ptr(),
        ckpt.data_ptr(),
        _ptr_or_none(since),
        grad_x.data_ptr(),
        g_lf.data_ptr(),
        g_lb.data_ptr(),
        g_th.data_ptr(),
        T,
        M,
        N,
        channels,
        inner,
        fire_ge,
        refractory,
        *surrogate,
        cpu_native._threads(),
    )
    cpu_native._check(status, "backward")
    return grad_x, g_lf, g_lb, g_th


def _backward_cpu(grad_spikes, grad_mem, mask, decay_f, decay_b, thr, x, ckpt, since, *rest):
    """The CPU kernel of `bpsn_cpu_backward` (``rest``: the four ints, then the surrogate)."""
    params, saved = (decay_f, decay_b, thr), (x, ckpt, since)
    return _run_backward(grad_spikes, grad_mem, mask, params, saved, rest[:4], rest[4:])


@torch.library.register_fake("bpsn_ext::bpsn_cpu_backward")
def _(grad_spikes, grad_mem, mask, decay_f, decay_b, thr, x, ckpt, since, channels, *rest):
    grads = (x.new_empty(channels) for _ in range(3))
    return (torch.empty_like(x), *grads)


def _below_autograd(op, keyset, args: tuple):
    """``op(*args)`` dispatched past the Autograd key (``keyset``: what the dispatcher gave
    the Autograd kernel), as torch's own custom operators do."""
    with torch._C._AutoDispatchBelowAutograd():
        return op.redispatch(keyset & torch._C._after_autograd_keyset, *args)


class _OperatorAutograd(torch.autograd.Function):
    """The forward operator's autograd: the forward kernel below autograd (``keyset`` as the
    dispatcher passed it), and the backward operator.  Registered with the dispatcher
    directly (not through ``torch.library.custom_op``), which leaves fewer Python layers
    around every call of a compiled graph."""

    @staticmethod
    def forward(keyset, *args):
        return _below_autograd(bpsn_cpu_forward, keyset, args)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, x, decay_f, decay_b, thr, mask, channels, inner, fire_ge, refractory, *sg = inputs
        ctx.save_for_backward(x, decay_f, decay_b, thr, mask, output[2], output[3])
        ctx.ints = (channels, inner, fire_ge, refractory)
        ctx.surrogate = tuple(sg[:3])
        ctx.mark_non_differentiable(output[2], output[3])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_spikes, grad_mem, _grad_ckpt, _grad_since):
        x, decay_f, decay_b, thr, mask, ckpt, since = ctx.saved_tensors
        params = (decay_f, decay_b, thr, x, ckpt, since)
        grads = bpsn_cpu_backward(grad_spikes, grad_mem, mask, *params, *ctx.ints, *ctx.surrogate)
        return (None, *grads, *(None,) * 9)


def _forward_autograd(keyset, *args):
    if torch.is_grad_enabled() and any(t.requires_grad for t in args[:4]):
        return _OperatorAutograd.apply(keyset, *args)
    return _below_autograd(bpsn_cpu_forward, keyset, args)


def _backward_autograd(keyset, *args):
    """The backward operator has no derivative of its own (no double backward)."""
    return _below_autograd(bpsn_cpu_backward, keyset, args)


_LIB.impl("bpsn_cpu_forward", _forward_cpu, "CPU")
_LIB.impl("bpsn_cpu_backward", _backward_cpu, "CPU")
_LIB.impl("bpsn_cpu_forward", _forward_autograd, "Autograd", with_keyset=True)
_LIB.impl("bpsn_cpu_backward", _backward_autograd, "Autograd", with_keyset=True)


class _EagerNative(torch.autograd.Function):
    """The same kernels as the two operators, called straight from an autograd Function:
    eager mode skips the dispatcher's round trips through the operators' Python (about 0.1
    ms per forward+backward, most of a small call).  Used only where `_plain_eager` holds."""

    @staticmethod
    def forward(ctx, x, decay_f, decay_b, thr, mask, ints, surrogate, membrane):
        spikes, mem, ckpt, since = _run_forward(x, decay_f, decay_b, thr, mask, ints, membrane)
        ctx.save_for_backward(x, decay_f, decay_b, thr, mask, ckpt, since)
        ctx.ints, ctx.surrogate = ints, surrogate
        ctx.set_materialize_grads(False)
        return spikes, mem

    @staticmethod
    def backward(ctx, grad_spikes, grad_mem):
        x, decay_f, decay_b, thr, mask, ckpt, since = ctx.saved_tensors
        params, saved = (decay_f, decay_b, thr), (x, ckpt, since)
        grads = _run_backward(grad_spikes, grad_mem, mask, params, saved, ctx.ints, ctx.surrogate)
        return (*grads, None, None, None, None)


_PLAIN = (Tensor, torch.nn.Parameter)


def _plain_eager(tensors: tuple[Tensor | None, ...]) -> bool:
    """True where nothing would see past a plain autograd Function: eager mode (no
    ``torch.compile``, export or jit tracing), no functorch transform, no torch-function or
    dispatch mode, and plain tensors and parameters only (no subclasses such as fake
    tensors).  Elsewhere the registered operators run, which those mechanisms understand."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    if torch._C._are_functorch_transforms_active():
        return False
    if torch._C._len_torch_dispatch_stack() or torch._C._len_torch_function_stack():
        return False
    return all(t is None or type(t) in _PLAIN for t in tensors)


def _kernel_args(
    x: Tensor,
    mask: Tensor | None,
    params: BPSNParams,
    options: BPSNOptions,
    sg: SurrogateArgs,
    channel_dim: int,
) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None], tuple, tuple]:
    """``((x, decay_f, decay_b, thr, mask_u8), ints, surrogate)``: what the two kernels take
    for one call of `bpsn_native`."""
    T, N = x.shape[:2]
    C, inner = channel_layout(x, channel_dim)
    m = as_mask(mask, T, N, x.device)
    mask_u8 = None if m is None else m.to(torch.uint8).contiguous()
    if N == 0 or x[0].numel() == 0:  # nothing to compute: the torch path handles empty batches
        raise ValueError("the native BPSN CPU kernel needs a non-empty batch")
    decay_f, decay_b, thr = (
        per_channel(p, C, x.dtype) for p in (params.decay_f, params.decay_b, params.v_threshold)
    )
    ints = (C, inner, int(sg.fire_ge), options.refractory)
    return (x.contiguous(), decay_f, decay_b, thr, mask_u8), ints, (sg.kind, sg.a, sg.b)


def bpsn_native(
    x: torch.Tensor,
    mask: torch.Tensor | None,
    params: BPSNParams,
    options: BPSNOptions,
    sg: SurrogateArgs,
    channel_dim: int,
    membrane: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(spikes, membrane)`` ``[T, N, *]`` of a BPSN with ``options`` (leak kernel, split
    fusion, refractory or no rule: `bpsn_ext.kernels.dispatch` checks) for a CPU ``x`` whose
    channels are at ``channel_dim``; the same values as the torch path, gradients flowing to
    ``x``, the decays and the threshold.  With ``membrane=False`` the membrane is not written
    (None is returned in its place).  ``NativeKernelUnavailable`` when it cannot be built.
    """
    tensors, ints, surrogate = _kernel_args(x, mask, params, options, sg, channel_dim)
    if _plain_eager(tensors):
        spikes, mem = _EagerNative.apply(*tensors, ints, surrogate, membrane)
    else:
        spikes, mem, _, _ = bpsn_cpu_forward(*tensors, *ints, *surrogate, membrane)
    return spikes, (mem if membrane else None)


def native_kernels_into(
    x: Tensor,
    params: BPSNParams,
    options: BPSNOptions,
    sg: SurrogateArgs,
    channel_dim: int,
    buffers: dict[str, Tensor],
    grad: Tensor | None = None,
) -> Tensor:
    """The forward kernel of `bpsn_native` (no mask), and with ``grad`` (dL/dspikes
    ``[T, N, *]``) then its backward kernel, called without autograd, every output written
    into ``buffers``: filled on the first call (``spikes``, ``ckpt``, ``since``, ``grad_x``,
    ``grad_decay_f``, ``grad_decay_b``, ``grad_thr``) and reused while ``x``'s shape, dtype and
    device hold.  The kernels' own time, without fresh outputs or autograd, for benchmarks.
    Returns the spikes ``[T, N, *]``.
    """
    (x, decay_f, decay_b, thr, _), ints, surrogate = _kernel_args(
        x, None, params, options, sg, channel_dim
    )
    spikes = buffers.get("spikes")
    if spikes is None or (spikes.shape, spikes.dtype, spikes.device) != (
        x.shape,
        x.dtype,
        x.device,
    ):
        buffers.clear()
        buffers["spikes"] = torch.empty_like(x)
        buffers["ckpt"], buffers["since"] = _checkpoints(x, ints[3])
        buffers["grad_x"] = torch.empty_like(x)
        for name in ("grad_decay_f", "grad_decay_b", "grad_thr"):
            buffers[name] = x.new_empty(ints[0])
    fwd_out = (buffers["spikes"], buffers["ckpt"], buffers["since"])
    _run_forward(x, decay_f, decay_b, thr, None, ints, False, fwd_out)
    if grad is not None:
        names = ("grad_x", "grad_decay_f", "grad_decay_b", "grad_thr")
        saved = (x, buffers["ckpt"], buffers["since"])
        bwd_out = tuple(buffers[n] for n in names)
        _run_backward(grad, None, None, (decay_f, decay_b, thr), saved, ints, surrogate, bwd_out)
    return buffers["spikes"]
