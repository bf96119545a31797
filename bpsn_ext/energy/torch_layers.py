"""Counters for plain PyTorch layers: linear, convolutions, norms, activations, pooling.

Each counter is ``fn(module, args, kwargs, output, options) -> Ops | list[Ops]`` with the
call's positional ``args`` and keyword ``kwargs``; shapes may carry any leading dimensions
(SpikingJelly's multi-step ``[T, N, ...]`` wrappers count every step).

Conventions (per call):

* Linear: ``dense = x.numel() * out_features`` MACs (every row of x times the weight), MAC or
  AC by the input kind (also AC when the *weight* is binary/ternary); bias: one add per output.
* Convolution: ``dense = out.numel() * in_channels / groups * prod(kernel)``; transposed
  convolution: ``x.numel() * out_channels / groups * prod(kernel)``.  Spike input:
  ``AC = rate * dense`` (``options.conv_ac == "rate"``, the papers' convention) or the exact
  number of accumulates of nonzero inputs, border effects included (``"exact"``, what
  SpikingJelly's op_counter counts).  Bias: one add per output.
* BatchNorm in eval mode (folded into a scale and a shift): 1 mul + 1 add per element.
  In training mode, and LayerNorm / GroupNorm / InstanceNorm (statistics computed at
  inference): 3 mul + 4 add per element (2 mul + 3 add without affine) and one rsqrt
  (nonlin) per normalised group.  RMSNorm: 3 mul + 1 add per element, one rsqrt per group.
* Activations: one nonlin per output element; Softmax: + 1 add + 1 mul per element; GLU:
  one sigmoid and one mul per output element.
* Pooling: max: ``k - 1`` compares (adds) per output; average: ``k - 1`` adds + 1 mul.
* ``nn.MultiheadAttention`` (covers its projections): q/k/v and output projections as
  synaptic ops by their inputs' kinds, ``q k^T`` and ``a v`` as ``N L S E`` MACs each, softmax
  as above on the ``N heads L S`` scores, biases one add per output.
* Dropout, Identity, Flatten, Unflatten, Embedding: no ops.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bpsn_ext.energy.detect import kind_of
from bpsn_ext.energy.ops import Ops, synaptic

__all__ = ["TORCH_COUNTERS", "STATELESS", "EXCLUSIVE_TORCH"]


def _first(args, kwargs, name: str = "input"):
    if args:
        return args[0]
    if kwargs:
        for key in (name, "input", "x", "input_"):
            if key in kwargs:
                return kwargs[key]
        return next(iter(kwargs.values()))
    return None


def _out(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def linear(m: nn.Linear, args, kwargs, output, options) -> list[Ops]:
    x = _first(args, kwargs)
    ops = [synaptic(x, x.numel() * m.out_features, weight=m.weight, label="weights")]
    if m.bias is not None:
        ops.append(Ops(add=_out(output).numel(), dense=0, label="bias"))
    return ops


def _exact_conv_ac(m: nn.modules.conv._ConvNd, x: torch.Tensor) -> float:
    """Accumulates actually done for the nonzero entries of x (borders and strides exact)."""
    nd = len(m.kernel_size)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    nz = (x.detach() != 0).to(torch.float64).reshape(-1, *x.shape[-(nd + 1) :])
    padding = m.padding
    if m.padding_mode != "zeros":
        nz = F.pad(nz, m._reversed_padding_repeated_twice, mode=m.padding_mode)
        padding = 0
    g = m.groups
    ones = torch.ones(g, m.in_channels // g, *m.kernel_size, dtype=torch.float64, device=x.device)
    counts = conv(nz, ones, None, m.stride, padding, m.dilation, g)  # nonzeros per field
    return float(counts.sum()) * (m.out_channels // g)


def conv(m: nn.modules.conv._ConvNd, args, kwargs, output, options) -> list[Ops]:
    x, out = _first(args, kwargs), _out(output)
    k = math.prod(m.kernel_size)
    if m.transposed:
        dense = x.numel() * (m.out_channels // m.groups) * k
    else:
        dense = out.numel() * (m.in_channels // m.groups) * k
    rec = synaptic(x, dense, weight=m.weight, label="weights")
    if rec.ac and options.get("conv_ac") == "exact" and not m.transposed and kind_of(x) != "real":
        rec = Ops(ac=_exact_conv_ac(m, x), dense=dense, label="weights (exact)")
    ops = [rec]
    if m.bias is not None:
        ops.append(Ops(add=out.numel(), dense=0, label="bias"))
    return ops


def batch_norm(m: nn.modules.batchnorm._BatchNorm, args, kwargs, output, options) -> Ops:
    x = _first(args, kwargs)
    n = x.numel()
    if m.training or not m.track_running_stats:  # batch statistics
        groups = x.shape[1] if x.dim() > 1 else x.shape[0]
        return _norm_stats(n, groups, m.affine, "batch statistics")
    return Ops(mul=n, add=n, dense=0, label="scale+shift (folded)")


def _norm_stats(n: int, groups: int, affine: bool, label: str) -> Ops:
    mul, add = (3, 4) if affine else (2, 3)
    return Ops(mul=mul * n, add=add * n, nonlin=groups, dense=0, label=label)


def layer_norm(m: nn.LayerNorm, args, kwargs, output, options) -> Ops:
    x = _first(args, kwargs)
    per_group = math.prod(m.normalized_shape)
    return _norm_stats(x.numel(), x.numel() // per_group, m.elementwise_affine, "layer norm")


def group_norm(m: nn.GroupNorm, args, kwargs, output, options) -> Ops:
    x = _first(args, kwargs)
    batch = x.shape[0] if x.dim() > 1 else 1
    return _norm_stats(x.numel(), batch * m.num_groups, m.affine, "group norm")


def instance_norm(m: nn.modules.instancenorm._InstanceNorm, args, kwargs, output, options) -> Ops:
    x = _first(args, kwargs)
    spatial = math.prod(x.shape[2:]) if x.dim() > 2 else 1
    return _norm_stats(x.numel(), x.numel() // max(spatial, 1), m.affine, "instance norm")


def rms_norm(m, args, kwargs, output, options) -> Ops:
    x = _first(args, kwargs)
    per_group = math.prod(m.normalized_shape)
    return Ops(
        mul=3 * x.numel(), add=x.numel(), nonlin=x.numel() // per_group, dense=0, label="rms norm"
    )


def activation(m, args, kwargs, output, options) -> Ops:
    return Ops(nonlin=_out(output).numel(), dense=0, label=type(m).__name__)


def softmax(m, args, kwargs, output, options) -> Ops:
    n = _out(output).numel()
    return Ops(nonlin=n, add=n, mul=n, dense=0, label="exp, sum, normalise")


def glu(m, args, kwargs, output, options) -> Ops:
    n = _out(output).numel()
    return Ops(nonlin=n, mul=n, dense=0, label="sigmoid gate")


def _window(m) -> int:
    k = m.kernel_size
    return math.prod(k) if isinstance(k, (tuple, list)) else int(k) ** _pool_dims(m)


def _pool_dims(m) -> int:
    name = type(m).__name__
    return 3 if "3d" in name else 2 if "2d" in name else 1


def max_pool(m, args, kwargs, output, options) -> Ops:
    return Ops(add=_out(output).numel() * (_window(m) - 1), dense=0, label="compares")


def avg_pool(m, args, kwargs, output, options) -> Ops:
    n = _out(output).numel()
    return Ops(add=n * (_window(m) - 1), mul=n, dense=0, label="sum, scale")


def adaptive_max_pool(m, args, kwargs, output, options) -> Ops:
    x, out = _first(args, kwargs), _out(output)
    return Ops(add=max(x.numel() - out.numel(), 0), dense=0, label="compares")


def adaptive_avg_pool(m, args, kwargs, output, options) -> Ops:
    x, out = _first(args, kwargs), _out(output)
    return Ops(add=max(x.numel() - out.numel(), 0), mul=out.numel(), dense=0, label="sum, scale")


def multihead_attention(m: nn.MultiheadAttention, args, kwargs, output, options) -> list[Ops]:
    def arg(i, name):
        return args[i] if len(args) > i else kwargs.get(name)

    q, k, v = arg(0, "query"), arg(1, "key"), arg(2, "value")
    E = m.embed_dim
    seq_dim = 1 if (m.batch_first and q.dim() == 3) else 0
    L, S = q.shape[seq_dim], k.shape[seq_dim]
    n = q.numel() // (L * E)  # batch
    tq, tk = q.numel() // E, k.numel() // m.kdim
    ops = [
        synaptic(q, tq * E * E, label="q projection"),
        synaptic(k, tk * m.kdim * E, label="k projection"),
        synaptic(v, tk * m.vdim * E, label="v projection"),
        Ops(mac=2 * n * L * S * E, label="q k^T and a v"),
        Ops(
            nonlin=n * m.num_heads * L * S,
            add=n * m.num_heads * L * S,
            mul=n * m.num_heads * L * S,
            dense=0,
            label="softmax",
        ),
        Ops(mac=tq * E * E, label="output projection"),
    ]
    biases = (m.in_proj_bias is not None) * (tq + 2 * tk) * E + (
        m.out_proj.bias is not None
    ) * tq * E
    if biases:
        ops.append(Ops(add=biases, dense=0, label="biases"))
    return ops


def no_ops(m, args, kwargs, output, options) -> Ops:
    return Ops(dense=0, label="no arithmetic")


_ACTIVATIONS = tuple(
    getattr(nn, name)
    for name in (
        "ReLU",
        "ReLU6",
        "LeakyReLU",
        "PReLU",
        "RReLU",
        "ELU",
        "SELU",
        "CELU",
        "GELU",
        "SiLU",
        "Mish",
        "Sigmoid",
        "Tanh",
        "Softplus",
        "Softsign",
        "Hardtanh",
        "Hardswish",
        "Hardsigmoid",
        "Tanhshrink",
        "Hardshrink",
        "Softshrink",
        "LogSigmoid",
        "Threshold",
    )
    if hasattr(nn, name)
)

_NO_OPS = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Embedding,
)

# (class or tuple of classes, counter), most specific first
TORCH_COUNTERS: list[tuple[type | tuple[type, ...], object]] = [
    (nn.MultiheadAttention, multihead_attention),
    (nn.Linear, linear),
    (nn.modules.conv._ConvNd, conv),
    (nn.modules.batchnorm._BatchNorm, batch_norm),
    (nn.LayerNorm, layer_norm),
    (nn.GroupNorm, group_norm),
    (nn.modules.instancenorm._InstanceNorm, instance_norm),
    (_ACTIVATIONS, activation),
    ((nn.Softmax, nn.LogSoftmax, nn.Softmin), softmax),
    (nn.GLU, glu),
    ((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d), max_pool),
    ((nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d), avg_pool),
    ((nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d), adaptive_max_pool),
    ((nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d), adaptive_avg_pool),
    (_NO_OPS, no_ops),
]
if hasattr(nn, "RMSNorm"):
    TORCH_COUNTERS.insert(5, (nn.RMSNorm, rms_norm))

# counters of layers without state: their output depends on the current input only
STATELESS = frozenset(
    {
        linear,
        conv,
        batch_norm,
        layer_norm,
        group_norm,
        instance_norm,
        rms_norm,
        activation,
        softmax,
        glu,
        max_pool,
        avg_pool,
        adaptive_max_pool,
        adaptive_avg_pool,
    }
)

# counters that cover their module's children too (MultiheadAttention uses out_proj directly)
EXCLUSIVE_TORCH = frozenset({multihead_attention})
