"""BatchNorm with statistics over the global batch under DistributedDataParallel.

Under ``torchrun`` every rank sees only its shard of the global batch, so a plain BatchNorm
normalises each shard with its own mean and variance: the model then differs from one process
trained on the whole batch.  ``convert_batch_norms`` swaps every BatchNorm of a model for
``GlobalBatchNorm``, which sums the per-channel count, sum and squared deviations over the
ranks (two differentiable all-reduces, so gradients also flow across ranks) and normalises with
the global statistics; its running statistics are those of the global batch as well.  Unlike
``torch.nn.SyncBatchNorm`` it runs on CPU (gloo) as well as CUDA (nccl).  Outside training mode
or without a process group of more than one rank it is an ordinary BatchNorm.

Example:
    >>> model = convert_batch_norms(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)))
    >>> type(model[1]).__name__
    'GlobalBatchNorm'
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["GlobalBatchNorm", "convert_batch_norms"]


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks; the gradient of every rank's copy is the sum of the gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad.contiguous())


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm over ``[N, C, *]`` whose training statistics span all DDP ranks.

    Args: as ``nn.BatchNorm1d``.  Shape: ``[N, C]`` or ``[N, C, *]`` in and out.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected input [N, C, *], got shape {list(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or _world() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        count = x.new_tensor([x.numel() // max(x.shape[1], 1)])
        total = _AllReduceSum.apply(torch.cat([x.sum(dims), count]))
        n = total[-1]
        if int(n) < 2:
            raise ValueError(
                f"BatchNorm needs more than one value per channel over all ranks, got {int(n)}"
            )
        mean = total[:-1] / n
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = x - mean.reshape(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
        if self.track_running_stats:
            self._update_running(mean.detach(), var.detach() * (n / (n - 1)))
        out = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked += 1
        if self.momentum is None:  # cumulative moving average
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), factor)


def _convert(bn: _BatchNorm) -> GlobalBatchNorm:
    new = GlobalBatchNorm(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    if bn.affine:
        new.weight, new.bias = bn.weight, bn.bias  # the same Parameters (optimizer, DDP)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        setattr(new, name, getattr(bn, name))
    new.train(bn.training)
    return new


def convert_batch_norms(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm (1d/2d/3d, not already global) inside ``model`` by a
    ``GlobalBatchNorm`` sharing its parameters and buffers; returns ``model`` (or the
    replacement when ``model`` itself is a BatchNorm).  State-dict keys are unchanged."""
    if isinstance(model, _BatchNorm) and not isinstance(model, (GlobalBatchNorm, nn.SyncBatchNorm)):
        return _convert(model)
    for name, child in model.named_children():
        new = convert_batch_norms(child)
        if new is not child:
            setattr(model, name, new)
    return model
