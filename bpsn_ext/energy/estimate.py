"""``estimate(model, *inputs, ...)``: run the model once with hooks and count its operations.

Forward pre/post hooks on every submodule keep a stack of the modules being executed.  When a
module returns, its counter (see `bpsn_ext.energy.counter_registry`) turns the call's inputs and
output into `Ops`; a `MatmulCapture`
function mode attributes matrix products made outside counted modules to the innermost
module.  Nothing is changed in the model: hooks are removed, train/eval flags restored, and
stateful neurons reset before and after the run (``reset="auto"``).
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from bpsn_ext.core.coding import CODINGS, Coding, get_coding
from bpsn_ext.energy.costs import EnergyModel, resolve_energy_model
from bpsn_ext.energy.counter_registry import Counter, as_ops_list, find_counter
from bpsn_ext.energy.detect import KINDS, classify, override_kind
from bpsn_ext.energy.matmul import MatmulCapture, matmul_ops, operands
from bpsn_ext.energy.ops import COUNT_FIELDS, Ops
from bpsn_ext.energy.report import EnergyReport, LayerStats
from bpsn_ext.energy.torch_layers import STATELESS
from bpsn_ext.util.arguments import check_int

__all__ = ["estimate", "last_call", "count_call", "CODINGS", "STEP_MODES"]

STEP_MODES = (None, "s", "m")
ROOT = "<model>"
_SAMPLE_ROWS = 64
_RUN: contextvars.ContextVar[_Recorder | None] = contextvars.ContextVar(
    "bpsn_energy_run", default=None
)


def _first_tensor(args, kwargs=None) -> torch.Tensor | None:
    for a in list(args) + list((kwargs or {}).values()):
        if isinstance(a, torch.Tensor):
            return a
        if isinstance(a, (tuple, list)):
            found = _first_tensor(a)
            if found is not None:
                return found
    return None


def _merge_kind(old: str | None, new: str | None) -> str | None:
    if old is None:
        return new
    return old if new is None or new == old else "mixed"


class _Recorder:
    """The hooks' shared state: module stack, per-layer statistics, raster rows."""

    def __init__(
        self,
        model: nn.Module,
        options: dict,
        kind_for: Callable[[str], str | None],
        raster_neurons: int,
    ) -> None:
        self.names = {m: (name or ROOT) for name, m in model.named_modules()}
        self.counters = {m: find_counter(m) for m in self.names}
        self.options = options
        self.kind_for = kind_for
        self.raster_neurons = raster_neurons
        self.stack: list[tuple[nn.Module, object]] = []
        self.stats: dict[tuple[str, str], LayerStats] = {}
        self.rows: dict[str, dict] = {}  # raster data per layer
        self.captured_in: set[nn.Module] = set()
        self.bare: dict[nn.Module, None] = {}  # uncounted leaves called outside counted ones
        self.last_input: dict[nn.Module, torch.Tensor] = {}  # for encode_once
        self.calls: dict[nn.Module, tuple] = {}  # latest (args, kwargs, output): last_call
        self.busy = False

    # -- helpers --------------------------------------------------------------------------
    def _layer(self, module: nn.Module, source: str) -> LayerStats:
        key = (self.names[module], source)
        if key not in self.stats:
            self.stats[key] = LayerStats(self.names[module], type(module).__name__, source)
        return self.stats[key]

    def _note_input(self, st: LayerStats, x: torch.Tensor | None, forced: str | None) -> None:
        if x is None:
            return
        kind = forced or classify(x)
        st.input_kind = _merge_kind(st.input_kind, kind)
        if kind != "real":
            st.input_nonzero += float(torch.count_nonzero(x.detach()))
            st.input_numel += x.numel()

    def _note_output(self, module: nn.Module, st: LayerStats, out) -> None:
        if isinstance(out, (tuple, list)):
            out = _first_tensor(out)
        if not isinstance(out, torch.Tensor) or out.numel() == 0 or out.is_complex():
            return
        if classify(out) == "real":
            return
        out = out.detach()
        st.output_nonzero += float(torch.count_nonzero(out))
        st.output_numel += out.numel()
        self._note_raster(module, st, out)

    def _note_raster(self, module: nn.Module, st: LayerStats, out: torch.Tensor) -> None:
        n = self.raster_neurons
        rec = self.rows.setdefault(st.name, {"time": [], "step": [], "batch": None})
        time_major = getattr(module, "step_mode", None) == "m" or getattr(
            module, "consumes_whole_sequence", False
        )
        scale = out.abs().max()
        unit = (out / scale if scale > 0 else out).float()
        if time_major and out.dim() >= 2:
            rec["time"].append(unit[:, 0].reshape(out.shape[0], -1)[:, :n].cpu())
        elif out.dim() >= 1:
            rec["step"].append(unit[0].reshape(-1)[:n].cpu())
            if rec["batch"] is None and out.dim() >= 2:
                rows = min(out.shape[0], _SAMPLE_ROWS)
                rec["batch"] = unit[:rows].reshape(rows, -1)[:, :n].cpu()

    def finish_rasters(self) -> None:
        for st in self.stats.values():
            rec = self.rows.get(st.name)
            if rec is None or st.source != "module":
                continue
            per_call = "time step (one call each)"
            if rec["time"]:
                st.raster, st.raster_axis = torch.cat(rec["time"]).numpy(), "time step"
            elif len(rec["step"]) > 1:
                st.raster, st.raster_axis = torch.stack(rec["step"]).numpy(), per_call
            elif rec["batch"] is not None:
                st.raster, st.raster_axis = rec["batch"].numpy(), "sample"
            elif rec["step"]:
                st.raster, st.raster_axis = rec["step"][0][None].numpy(), per_call

    # -- hooks ----------------------------------------------------------------------------
    def pre(self, module, args, kwargs):
        counter = self.counters.get(module)
        if (
            counter is None
            and next(module.children(), None) is None
            and not any(isinstance(c, Counter) for _, c in self.stack)
        ):
            self.bare.setdefault(module, None)  # a leaf that nothing counts (so far)
        self.stack.append((module, counter))

    def post(self, module, args, kwargs, output):
        if not self.stack or self.stack[-1][0] is not module:
            raise RuntimeError(
                f"module call order is inconsistent at {self.names.get(module)!r}; "
                "was a hook of the energy estimator removed during the run?"
            )
        _, counter = self.stack.pop()
        self.calls[module] = (args, kwargs, output)
        try:
            self._count(module, counter, args, kwargs, output)
        finally:  # the parent's counter has run by now: its children's calls are done with
            for child in module.children():
                self.calls.pop(child, None)

    def _count(self, module, counter, args, kwargs, output) -> None:
        name = self.names[module]
        if not isinstance(counter, Counter):
            return
        if any(
            isinstance(c, Counter) and (c.exclusive or counter.standalone_only)
            for _, c in self.stack
        ):
            return  # an exclusive ancestor counts this subtree (or any, for a spike function)
        forced = self.kind_for(name)
        where = f"layer {name!r} ({type(module).__name__})"
        self.busy = True
        try:
            with override_kind(forced), torch.no_grad():
                result = counter.fn(module, args, kwargs, output, self.options)
            ops = as_ops_list(result)
            if self.options.get("encode_once") and counter.fn in STATELESS:
                ops = self._encode_once(module, _first_tensor(args, kwargs), ops)
            st = self._layer(module, "module")
            st.calls += 1
            for op in ops:
                st.add_ops(op)
            self._note_input(st, _first_tensor(args, kwargs), forced)
            self._note_output(module, st, output)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"energy counter of {where} failed: {exc}") from exc
        finally:
            self.busy = False

    def _encode_once(self, module, x, ops: list[Ops]) -> list[Ops]:
        """Repeat coding: a stateless layer whose real input is the same at every step is
        computed once (its ops are divided by T, or a repeated call costs nothing)."""
        T = self.options["T"]
        if x is None or T < 2 or classify(x) != "real":
            return ops
        prev = self.last_input.get(module)
        self.last_input[module] = x
        if prev is not None and (
            prev is x
            or (
                prev.data_ptr() == x.data_ptr()
                and prev.shape == x.shape
                and prev.stride() == x.stride()
                and prev._version == x._version
            )
        ):
            factor, label = 0.0, "same input as the previous step: result reused"
        elif x.dim() >= 2 and x.shape[0] == T and torch.equal(x, x[:1].expand_as(x)):
            factor, label = 1.0 / T, "input identical at every step: computed once"
        else:
            return ops
        # the ANN baseline (dense ops / passes) is unchanged: an ANN computes the layer once
        return [
            Ops(
                **{f: getattr(o, f) * factor for f in COUNT_FIELDS}, dense=o.dense_macs, label=label
            )
            for o in ops
        ]

    def on_matmul(self, fn_name, func, args, kwargs, out) -> None:
        if self.busy or not self.stack:
            return
        if any(isinstance(c, Counter) for _, c in self.stack):
            return  # inside a counted module: its counter owns this product
        module = self.stack[-1][0]
        forced = self.kind_for(self.names[module])
        self.busy = True
        try:
            with override_kind(forced), torch.no_grad():
                ops = matmul_ops(func, args, kwargs, out)
                st = self._layer(module, fn_name)
                st.calls += 1
                for op in ops:
                    st.add_ops(op)
                a, b = operands(func, args, kwargs)
                sparse = (
                    a if (forced or classify(a)) != "real" else (b if classify(b) != "real" else a)
                )
                self._note_input(st, sparse, forced if sparse is a else None)
            self.captured_in.add(module)
        finally:
            self.busy = False

    def count_call(self, module: nn.Module, args, kwargs, output) -> list[Ops] | None:
        counter = self.counters.get(module) or find_counter(module)
        if counter is None:
            return None
        with override_kind(self.kind_for(self.names.get(module, ""))):
            return as_ops_list(
                counter.fn(module, tuple(args), dict(kwargs or {}), output, self.options)
            )

    def uncounted(self) -> list[str]:
        """Leaf modules called outside counted modules that no counter or capture covered."""
        return [
            f"{self.names[m]} ({type(m).__name__})" for m in self.bare if m not in self.captured_in
        ]


def last_call(module: nn.Module) -> tuple[tuple, dict, object] | None:
    """``(args, kwargs, output)`` of the latest ``module(...)`` call in the run being counted.

    For a counter that needs what a child module received or returned (an exclusive SSM
    block reads its S4D's output).  A module's record is dropped when its parent returns, so
    it is available to the parent's counter; None outside `estimate` or if ``module``
    was not called (a method called directly, e.g. ``layer.step(x)``, is not a call).
    """
    rec = _RUN.get()
    return None if rec is None else rec.calls.get(module)


def count_call(module: nn.Module, args, output=None, kwargs=None) -> list[Ops] | None:
    """The ops that ``module``'s counter (registered, protocol or built in) gives for a call
    with ``args`` / ``kwargs`` returning ``output``; None if ``module`` has no counter.

    For an exclusive counter that delegates parts of its subtree, e.g. restricted to the real
    (unpadded) steps.  Inside `estimate` the run's options and the ``input_kind`` forced
    for ``module`` apply.
    """
    rec = _RUN.get()
    if rec is not None:
        return rec.count_call(module, args, kwargs, output)
    counter = find_counter(module)
    if counter is None:
        return None
    options = {"conv_ac": "rate", "encode_once": False, "T": 1}
    return as_ops_list(counter.fn(module, tuple(args), dict(kwargs or {}), output, options))


def _auto_reset(model: nn.Module) -> None:
    """Reset SpikingJelly memory modules and snnTorch hidden states inside ``model``."""
    sj_base = sys.modules.get("spikingjelly.activation_based.base")
    if sj_base is not None and any(isinstance(m, sj_base.MemoryModule) for m in model.modules()):
        from spikingjelly.activation_based import functional

        functional.reset_net(model)
    snn = sys.modules.get("snntorch")
    if snn is not None and any(
        isinstance(m, snn.SpikingNeuron) and getattr(m, "init_hidden", False)
        for m in model.modules()
    ):
        from bpsn_ext.snntorch import reset

        reset(model)


def _check(model, inputs, T, coding: Coding, step_mode, input_kind, conv_ac, raster_neurons):
    if not isinstance(model, nn.Module):
        raise TypeError(f"estimate needs an nn.Module, got {type(model).__name__}")
    if not inputs:
        raise ValueError(
            "estimate(model, *inputs) needs at least one input to run the model with, e.g. "
            "estimate(model, x) for a batch x"
        )
    if step_mode not in STEP_MODES:
        raise ValueError(f"step_mode must be one of {STEP_MODES}, got {step_mode!r}")
    check_int("T", T, none_ok=True)
    if conv_ac not in ("rate", "exact"):
        raise ValueError(f"conv_ac must be 'rate' or 'exact', got {conv_ac!r}")
    check_int("raster_neurons", raster_neurons)
    kinds = input_kind.values() if isinstance(input_kind, Mapping) else [input_kind]
    for k in kinds:
        if k is not None and k not in KINDS:
            raise ValueError(f"input_kind must be one of {KINDS} (or a dict of them), got {k!r}")
    x0 = _first_tensor(inputs)
    needs_tensor = coding.steps_from_data or step_mode == "m"
    if needs_tensor and (x0 is None or x0.dim() < 1):
        raise ValueError(
            f"coding={coding.name!r}, step_mode={step_mode!r} needs a tensor input with a leading "
            "time (individual coding) or batch dimension"
        )


def estimate(
    model: nn.Module,
    *inputs,
    T: int | None = None,
    coding: str | Coding = "repeat",
    step_mode: str | None = None,
    energy: str | EnergyModel | Mapping = "fp32",
    input_kind: str | Mapping[str, str] | None = None,
    conv_ac: str = "rate",
    encode_once: bool = False,
    reset: str | Callable | None = "auto",
    batch_size: int | None = None,
    eval_mode: bool = True,
    raster_neurons: int = 256,
    forward_kwargs: Mapping | None = None,
    title: str = "",
) -> EnergyReport:
    """Count the operations of one forward run of ``model(*inputs)`` and estimate its energy.

    How the model is driven (``T`` time steps):

    * ``step_mode=None`` (default): ``model(*inputs)`` once.  The model handles time itself
      (a multi-step network on ``[T, N, ...]``, a wrapper repeating the input, a single-step
      network with ``T=1``); ``T`` only labels the report and sets the ANN baseline.
    * ``step_mode="s"``: a single-step (stateful) network.  Repeat coding calls
      ``model(*inputs)`` ``T`` times; individual coding calls ``model(x[t])`` for every
      ``t`` of the inputs' leading (token) dimension.
    * ``step_mode="m"``: a multi-step network.  Repeat coding feeds the inputs repeated to
      ``[T, *x.shape]``; individual coding feeds them as they are (``[T, N, ...]``).

    ``coding="repeat"`` (each step sees the whole input; ``T`` passes, default ``T=1``) or
    ``"individual"`` (one token per step, ``T = x.shape[0]``; one pass), or a
    `bpsn_ext.core.coding.Coding`.  The ANN baseline
    processes the input once: its MACs are the dense ops divided by the number of passes.

    Options: ``energy`` a preset (``"fp32"``/``"45nm"``, ``"fp16"``, ``"int8"``), an
    `EnergyModel` or a dict of its fields; ``input_kind`` forces the input kind
    (``"real"``, ``"spike"``, ``"ternary"``) of every layer, or of the layers named in a dict
    (names as in ``model.named_modules()``; ``"<model>"`` is the model itself);
    ``conv_ac="exact"`` counts the accumulates of spike-input convolutions exactly (borders
    included) instead of ``rate x dense``; ``encode_once=True`` (repeat coding) counts a
    stateless layer whose real-valued input is the same at every step (the encoding layer)
    once, as the papers' ``E_MAC x FLOPs(first layer)`` does, instead of T times; ``reset``
    (``"auto"``, a callable, or None) resets stateful neurons before and after;
    ``batch_size`` (default: the inputs' batch dimension) divides the per-sample numbers;
    ``eval_mode`` runs in eval mode (restored afterwards); ``raster_neurons`` caps the neurons
    kept per raster; ``forward_kwargs`` are passed to every model call; ``title`` heads the
    printed report.  Runs under ``torch.no_grad()``.
    """
    coding = get_coding(coding)
    _check(model, inputs, T, coding, step_mode, input_kind, conv_ac, raster_neurons)
    em = resolve_energy_model(energy)
    plan = _Plan.of(inputs, T, coding, step_mode, batch_size, forward_kwargs)
    kind_for = _kind_lookup(model, input_kind)
    options = {"conv_ac": conv_ac, "encode_once": bool(encode_once), "T": plan.T}
    rec = _Recorder(model, options, kind_for, raster_neurons)
    do_reset = _resetter(reset)
    _run_hooked(model, inputs, plan, rec, eval_mode, do_reset)
    return _report(rec, em, plan, title)


@dataclass
class _Plan:
    """How one `estimate` run drives the model: ``T`` steps in ``passes`` passes over the
    input, ``batch_size`` samples (the per-sample divisor)."""

    T: int
    batch_size: int
    coding: Coding
    step_mode: str | None
    forward_kwargs: dict

    @property
    def passes(self) -> int:
        """One pass under individual coding (the steps are the data's), else one per step."""
        return self.coding.passes(self.T)

    @classmethod
    def of(
        cls,
        inputs: tuple,
        T: int | None,
        coding: Coding,
        step_mode: str | None,
        batch_size: int | None,
        forward_kwargs: Mapping | None,
    ) -> _Plan:
        """The plan of `estimate`'s arguments (checked by `_check` already)."""
        fkw = dict(forward_kwargs or {})
        x0 = _first_tensor(inputs)
        if coding.steps_from_data:
            T_data = x0.shape[0]
            if T is not None and T != T_data:
                raise ValueError(
                    f"individual coding takes T from the inputs' leading dimension ({T_data}), "
                    f"got T={T}"
                )
            T = T_data
        else:
            T = 1 if T is None else T
        if batch_size is None:
            batch_size = coding.batch_size_of(x0)
        check_int("batch_size", batch_size)
        return cls(T, batch_size, coding, step_mode, fkw)

    def drive(self, model: nn.Module, inputs: tuple) -> None:
        """Call ``model`` as the step mode and coding say (see `estimate`)."""
        T, coding, step_mode, fkw = self.T, self.coding, self.step_mode, self.forward_kwargs
        if step_mode is None or (step_mode == "m" and coding.steps_from_data):
            model(*inputs, **fkw)
        elif step_mode == "m":
            expanded = [
                x.unsqueeze(0).repeat(T, *([1] * x.dim())) if isinstance(x, torch.Tensor) else x
                for x in inputs
            ]
            model(*expanded, **fkw)
        elif not coding.steps_from_data:
            for _ in range(T):
                model(*inputs, **fkw)
        else:
            for t in range(T):
                step = [
                    x[t] if isinstance(x, torch.Tensor) and x.dim() and x.shape[0] == T else x
                    for x in inputs
                ]
                model(*step, **fkw)


def _kind_lookup(
    model: nn.Module, input_kind: str | Mapping[str, str] | None
) -> Callable[[str], str | None]:
    """``input_kind`` as a function of a layer's name; a dict must name layers of ``model``."""
    if not isinstance(input_kind, Mapping):
        return lambda name: input_kind
    names = {name or ROOT for name, _ in model.named_modules()}
    unknown = sorted(set(input_kind) - names)
    if unknown:
        raise ValueError(f"input_kind names unknown layers {unknown}; layers: {sorted(names)}")
    return dict(input_kind).get


def _resetter(reset: str | Callable | None) -> Callable | None:
    """The reset to call before and after the run: `_auto_reset` for ``"auto"``."""
    do_reset = _auto_reset if reset == "auto" else reset
    if do_reset is not None and not callable(do_reset):
        raise ValueError(f"reset must be 'auto', a callable or None, got {reset!r}")
    return do_reset


@contextlib.contextmanager
def _hooks(model: nn.Module, rec: _Recorder) -> Iterator[None]:
    """The recorder's hooks on every module; on exit they are removed and the modules'
    train/eval flags restored.  Layers with a fused path (``fused``, `bpsn_ext.layers`) run
    their op-by-op path meanwhile: it calls each submodule as a module, which the counters
    see (the numbers are the same)."""
    modes = {m: m.training for m in model.modules()}
    fused = {m: m.fused for m in model.modules() if isinstance(getattr(m, "fused", None), bool)}
    handles = []
    try:
        for m in fused:
            m.fused = False
        for m in rec.names:
            handles.append(m.register_forward_pre_hook(rec.pre, with_kwargs=True))
            handles.append(m.register_forward_hook(rec.post, with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
        for m, flag in fused.items():
            m.fused = flag
        rec.stack.clear()
        rec.calls.clear()


def _run_hooked(
    model: nn.Module,
    inputs: tuple,
    plan: _Plan,
    rec: _Recorder,
    eval_mode: bool,
    do_reset: Callable | None,
) -> None:
    """Drive ``model`` once under the hooks, without gradients, with matrix products
    captured; reset before and after."""
    with _hooks(model, rec):
        if eval_mode:
            model.eval()
        if do_reset is not None:
            do_reset(model)
        token = _RUN.set(rec)
        try:
            with torch.no_grad(), MatmulCapture(rec.on_matmul):
                plan.drive(model, inputs)
        finally:
            _RUN.reset(token)
    if do_reset is not None:
        do_reset(model)


def _report(rec: _Recorder, em: EnergyModel, plan: _Plan, title: str) -> EnergyReport:
    """The per-layer rows (with their rasters) and a note naming what was not counted."""
    rec.finish_rasters()
    layers = list(rec.stats.values())
    for st in layers:
        st.passes = plan.passes
    notes = []
    missing = rec.uncounted()
    if missing:
        notes.append(
            "not counted (no counter; register one with register_counter): " + ", ".join(missing)
        )
    return EnergyReport(
        layers,
        em,
        T=plan.T,
        coding=plan.coding.name,
        passes=plan.passes,
        batch_size=plan.batch_size,
        notes=notes,
        title=title,
    )
