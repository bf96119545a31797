"""Which dimension of a ``[T, N, *]`` neuron input holds the channels.

Per-channel parameters and BPSN's ``fusion="split"`` (half of the channels look back in time,
half look ahead) need the channel axis.  The rule, for ``channel_dim=None`` ("auto"):

| input | layout | channel axis |
|---|---|---|
| `[T, N]` | one value per sample | none (a scalar per neuron layer) |
| `[T, N, C]` | features | 2 |
| `[T, N, C, H, W]`, `[T, N, C, D, H, W]` | convolutional (PyTorch's `BatchNorm` rule) | 2 |
| `[T, N, A, B]` | `[T, N, C, L]` (Conv1d) or `[T, N, L, D]` (tokens)? | ambiguous: an error |

Every other dimension (samples, spatial positions, tokens) is treated alike.  An explicit
int ``channel_dim`` overrides the rule.  ``swap_neurons`` sets it from the data flow on the
swapped model's first forward (`bpsn_ext.layout_probe`): the operations that create a channel
axis are `PRODUCERS`, and `follow_layout` says where an operation moves it.
"""

from __future__ import annotations

import math

import torch

__all__ = ["resolve_channel_dim", "check_channel_dim_arg", "PRODUCERS", "follow_layout"]


def _last(out: torch.Tensor) -> int:
    return out.dim() - 1


def _conv(spatial: int):
    return lambda out: out.dim() - spatial - 1  # [N, C, *spatial] or unbatched [C, *spatial]


# operations that create a channel axis -> that axis in their output (features last, or
# channels first as PyTorch's convolutions and norms take them)
PRODUCERS = {
    "linear": _last,
    "bilinear": _last,
    "embedding": _last,
    "layer_norm": _last,
    **{f"conv{k}d": _conv(k) for k in (1, 2, 3)},
    **{f"conv_transpose{k}d": _conv(k) for k in (1, 2, 3)},
    "batch_norm": lambda out: 1,
    "group_norm": lambda out: 1,
    "instance_norm": lambda out: 1,
}
# operations whose output has the input's axes in the input's order (elementwise maths,
# copies, dtype changes, dropout, pooling): the channel axis keeps its index and size
_KEEPING = frozenset(
    "contiguous clone detach to float double half bfloat16 type_as abs neg exp log sqrt "
    "relu relu_ gelu silu sigmoid tanh leaky_relu hardtanh elu softplus clamp clamp_ "
    "add add_ sub sub_ mul mul_ div div_ pow where masked_fill masked_fill_ dropout dropout_ "
    "__add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ __mul__ __rmul__ __imul__ "
    "__truediv__ __rtruediv__ __itruediv__ __neg__ __pow__ "
    "max_pool1d max_pool2d max_pool3d max_pool1d_with_indices max_pool2d_with_indices "
    "max_pool3d_with_indices avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d "
    "adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d "
    "adaptive_max_pool3d".split()
)
_RESHAPES = frozenset("reshape view flatten unflatten view_as reshape_as squeeze unsqueeze".split())
_SWAPS = frozenset("transpose transpose_ swapaxes swapdims".split())
_REDUCTIONS = frozenset("mean sum amax amin".split())


def _reduced(args, kwargs, rank: int, dim: int, out_rank: int) -> int | None:
    """Where axis `dim` lands after a reduction over other axes (None: it was reduced)."""
    over = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if over is None:
        return None  # a reduction over everything
    over = {d % rank for d in ((over,) if isinstance(over, int) else over)}
    if dim in over:
        return None
    return dim if out_rank == rank else dim - sum(d < dim for d in over)


def _reshaped(shape_in, dim: int, shape_out) -> int | None:
    """Where axis `dim` of `shape_in` lands after a reshape to `shape_out`, if it stays whole:
    the output axis of the same size with as many elements before it."""
    before = math.prod(shape_in[:dim])
    for d, size in enumerate(shape_out):
        if size == shape_in[dim] and math.prod(shape_out[:d]) == before:
            return d
    return None


def _dims_arg(args, kwargs, key: str):
    """The dims of permute/transpose-like calls, given as varargs, a tuple or a keyword."""
    rest = args[1:]
    if key in kwargs:
        return kwargs[key]
    if len(rest) == 1 and isinstance(rest[0], (tuple, list)):
        return tuple(rest[0])
    return tuple(rest)


def follow_layout(name: str, args, kwargs, src, dim: int, out) -> int | None:
    """The channel axis of `out`, the result of the operation `name` on `src` (whose channel
    axis is `dim`), or None where the operation loses or may move it."""
    rank, size = src.dim(), src.shape[dim]
    if name in _KEEPING:
        same = out.dim() == rank and out.shape[dim] == size
        return (
            dim
            if same and (name.startswith(("max_", "avg_", "adaptive_")) or out.shape == src.shape)
            else None
        )
    if name in _REDUCTIONS:
        return _reduced(args, kwargs, rank, dim, out.dim())
    if name in _RESHAPES:
        return _reshaped(tuple(src.shape), dim, tuple(out.shape))
    if name in _SWAPS:
        a, b = (d % rank for d in _dims_arg(args, kwargs, "dim0")[:2])
        return b if dim == a else a if dim == b else dim
    if name == "t" and rank == 2:
        return 1 - dim
    if name == "permute":
        order = [d % rank for d in _dims_arg(args, kwargs, "dims")]
        return order.index(dim)
    if name in ("movedim", "moveaxis"):
        order = list(range(rank))
        source, dest = args[1], args[2]
        if isinstance(source, int):
            order.remove(source % rank)
            order.insert(dest % rank, source % rank)
            return order.index(dim)
    return None


def check_channel_dim_arg(channel_dim: object) -> int | None:
    """``channel_dim`` must be None (auto) or an int."""
    if channel_dim is not None and (
        isinstance(channel_dim, bool) or not isinstance(channel_dim, int)
    ):
        raise TypeError(f"channel_dim must be an int or None (auto), got {channel_dim!r}")
    return channel_dim


def resolve_channel_dim(
    shape: tuple[int, ...], channel_dim: int | None, *, owner: str = "BPSN"
) -> int | None:
    """The non-negative channel dimension of an input of ``shape`` ``[T, N, *]``, or None.

    Args:
        shape: the input's shape, time first.
        channel_dim: an explicit dimension (negative counts from the end) or None for the
            auto rule of this module's docstring.
        owner: the module named in error messages.

    Raises ValueError when ``channel_dim`` is outside the input's rank or points at T or N,
    and, under auto, for rank-4 inputs (``[T, N, C, L]`` and ``[T, N, L, D]`` look alike).
    """
    rank = len(shape)
    if channel_dim is None:
        if rank == 4:
            raise ValueError(
                f"{owner} cannot tell which dimension of the [T, N, A, B] input of shape "
                f"{list(shape)} holds the channels: pass channel_dim=2 for a [T, N, C, L] "
                f"(Conv1d) layout or channel_dim=-1 for a [T, N, L, D] (token) layout. "
                f"swap_neurons finds it from the data flow on the first forward"
            )
        return 2 if rank >= 3 else None
    if not -rank <= channel_dim < rank:
        raise ValueError(
            f"{owner}: channel_dim={channel_dim} is outside the rank-{rank} input of shape "
            f"{list(shape)} (valid: 2 .. {rank - 1}, or -{rank - 2} .. -1)"
        )
    dim = channel_dim % rank
    if dim < 2:
        raise ValueError(
            f"{owner}: channel_dim={channel_dim} points at T or N of the [T, N, *] input of "
            f"shape {list(shape)}; it must name a feature dimension (2 or later)"
        )
    return dim
