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
int ``channel_dim`` overrides the rule; ``swap_neurons`` sets it from the layer that feeds the
neuron (``channel_dim_of_layer``).
"""

from __future__ import annotations

from torch import nn

__all__ = ["resolve_channel_dim", "channel_dim_of_layer", "check_channel_dim_arg"]

# layers whose output keeps the input's layout: look further back for the channel axis
_PASS_THROUGH = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.ReLU,
    nn.GELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.ZeroPad2d,
    nn.ConstantPad2d,
)
_CHANNELS_FIRST = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
)
_CHANNELS_LAST = (nn.Linear, nn.LayerNorm, nn.Embedding, nn.Bilinear)


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
                f"swap_neurons infers it from the layer that feeds the neuron"
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


def channel_dim_of_layer(layers: list[nn.Module]) -> int | None:
    """Channel axis of the output of the last layer in ``layers`` that has one, walking back
    over layout-preserving layers (pooling, dropout, activations): 2 after convolutions and
    batch/instance/group norms (``[T, N, C, *]``), -1 after ``Linear``/``LayerNorm``
    (features last); None when unknown."""
    for layer in reversed(layers):
        if isinstance(layer, _CHANNELS_FIRST):
            return 2
        if isinstance(layer, _CHANNELS_LAST):
            return -1
        if isinstance(layer, nn.Sequential):  # e.g. SeqToANNContainer(conv, bn)
            return channel_dim_of_layer(list(layer.children()))
        if not isinstance(layer, _PASS_THROUGH):
            return None
    return None
