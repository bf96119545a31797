"""State-spaces' ``_optim`` convention: optimiser hints stored on the parameters themselves.

state-spaces/s4 marks a parameter with ``p._optim = {"lr": ..., "weight_decay": ...}`` and its
``setup_optimizer`` puts every distinct hint in its own parameter group.  A module using
`OptimHints` lists its hinted parameters in ``ssm_parameter_names`` and calls
``self._tag_optim()`` at the end of ``__init__``; the hints survive ``copy.deepcopy`` and
pickling (``deepcopy`` of a parameter drops its attributes, so ``__setstate__`` re-applies
them).  `bpsn_ext.optim.ssm_param_groups` reads the same hints.
"""

from __future__ import annotations

__all__ = ["SSM_OPTIM", "OptimHints"]

SSM_OPTIM = {"lr": 0.001, "weight_decay": 0.0}  # s4 example.py: lr min(0.001, base), no decay


class OptimHints:
    """Mixin for an ``nn.Module``: tag ``ssm_parameter_names`` with ``optim_hint``.

    Example::

        layer = S4D(64)
        layer.log_dt._optim        # {'lr': 0.001, 'weight_decay': 0.0}
    """

    ssm_parameter_names: tuple[str, ...] = ()
    optim_hint: dict = SSM_OPTIM

    def _tag_optim(self) -> None:
        for name in self.ssm_parameter_names:
            p = self._parameters.get(name)
            if p is not None:
                p._optim = dict(self.optim_hint)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._tag_optim()
