"""The method registry: one file per PEFT method, each registering itself here.

A method is a settings dataclass plus `apply(model, settings, ctx) -> model`, and what it
declares about itself (rank, task types, quantizations, merge, per-step hooks).  This
package knows nothing about suites, MLflow or Optuna; the training loop only talks to
`Method` objects, never to method names.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from harness.errors import did_you_mean


class SettingsError(ValueError):
    """A method setting from a suite is unknown or has the wrong type or value."""

    def __init__(self, key: str | None, message: str):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class ApplyContext:
    """What a method may need to know about the model it adapts."""

    task_type: str  # "seq_cls" | "causal_lm"
    model_type: str  # config.model_type, e.g. "bert", "llama"
    quant: str  # "none" | "int8" | "nf4"
    head_names: tuple[str, ...] = ()  # task-head modules that must train (classifier, ...)
    total_steps: int = 0  # optimizer steps the training will take (schedules such as AdaLoRA's)


@dataclass(frozen=True)
class Method:
    name: str
    settings_cls: type
    apply: Callable[[Any, Any, ApplyContext], Any]
    paper: str = ""
    ranked: bool = False
    rank_meaning: str = ""
    task_types: frozenset[str] = frozenset({"seq_cls", "causal_lm"})
    quants: frozenset[str] = frozenset({"none"})
    mergeable: bool = False
    # stored_bytes(model) -> bytes of the tensors one task must store (harness.measures: adapter_bytes);
    # None = the tensors of the *.safetensors files `save` writes, at their stored dtype (no metadata files)
    stored_bytes: Callable[[Any], int] | None = None
    # save(model, directory) -> None; None = nothing worth saving as an artifact (e.g. full FT)
    save: Callable[[Any, str], None] | None = None
    # load(base_model, directory, settings, ctx) -> adapted model, the inverse of save
    load: Callable[[Any, str, Any, "ApplyContext"], Any] | None = None
    # read_state(adapted_model, directory) -> what save wrote, as state-dict entries of the model;
    # only for methods that save a packed form (None: the saved safetensors files as they are)
    read_state: Callable[[Any, str], dict] | None = None
    # merge(model) -> a plain model computing the same function (only where mergeable)
    merge: Callable[[Any], Any] | None = None
    # on_step(model, step) after each optimizer step, for methods with a schedule of their own
    on_step: Callable[[Any, int], None] | None = None
    # (low, high): the learning-rate range a search explores for this method when the suite's
    # search names no `lr` (log-uniform); () = nothing trains at `lr` (head_only: only the head,
    # at head_lr); None = not declared (a plugin's), then a search must name `lr` itself
    lr_range: tuple[float, float] | tuple[()] | None = None
    # groups(settings) -> {module name: learning rate}: parameters a method adds that are not its
    # adaptation (SpotTune's routing policy) train in their own optimizer group at that rate
    groups: Callable[[Any], dict[str, float]] | None = None

    def make_settings(self, rank: int | None, overrides: Mapping[str, Any]):
        """Settings object from a grid cell; raises ValueError with a user-facing reason."""
        fields = {f.name for f in dataclasses.fields(self.settings_cls)}
        for key in overrides:
            if key not in fields or key == "rank":
                hint = did_you_mean(key, fields - {"rank"})
                raise SettingsError(key, f"unknown setting {key!r} for method {self.name!r}; known: "
                                 f"{', '.join(sorted(fields - {'rank'})) or 'none'}" + (f" ({hint})" if hint else ""))
        hints = typing.get_type_hints(self.settings_cls)
        for key, value in overrides.items():
            if not _fits(value, hints[key]):
                raise SettingsError(key, f"setting {key!r} of method {self.name!r} must be {_type_name(hints[key])}, not {value!r}")
        values = dict(overrides)
        if self.ranked and rank is not None:
            values["rank"] = rank
        try:
            settings = self.settings_cls(**values)
        except ValueError as exc:  # a settings class's own range checks (__post_init__)
            raise SettingsError(getattr(exc, "key", None), str(exc)) from None
        for f in dataclasses.fields(settings):  # tuples in dataclasses stay hashable
            if isinstance(getattr(settings, f.name), list):
                object.__setattr__(settings, f.name, tuple(getattr(settings, f.name)))
        return settings

    def na_reason(self, task_type: str, quant: str) -> str | None:
        """Why this method cannot run a cell, or None when it can."""
        if task_type not in self.task_types:
            return f"{self.name} does not support task type {task_type}"
        if quant not in self.quants:
            return f"{self.name} does not support quant {quant} (supports: {', '.join(sorted(self.quants))})"
        return None


def _fits(value: Any, hint: Any) -> bool:
    """Does a YAML value fit a settings field's type (int, float, str, bool, tuple[...], X | None)?"""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is tuple:
        item = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(_fits(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is Any:
        return True
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def freeze_all_but_heads(model, ctx: ApplyContext) -> None:
    """For methods of our own: freeze the base, keep the new task head (ctx.head_names) trainable."""
    for p in model.parameters():
        p.requires_grad_(False)
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in ctx.head_names:
            for p in module.parameters():
                p.requires_grad_(True)


_REGISTRY: dict[str, Method] = {}


def register(name: str, settings_cls: type, apply: Callable, **declared) -> Method:
    if name in _REGISTRY:
        raise ValueError(f"method {name!r} is registered twice")
    for key in ("task_types", "quants"):
        if key in declared:
            declared[key] = frozenset(declared[key])
    method = Method(name=name, settings_cls=settings_cls, apply=apply, **declared)
    if method.mergeable != (method.merge is not None):
        raise ValueError(f"method {name!r}: mergeable methods need a merge function, and only they")
    if (method.save is None) != (method.load is None):
        raise ValueError(f"method {name!r}: save and load come together")
    if method.lr_range is not None and method.lr_range != () and not (
            len(method.lr_range) == 2 and 0 < method.lr_range[0] < method.lr_range[1]):
        raise ValueError(f"method {name!r}: lr_range must be (low, high) with 0 < low < high, or ()")
    if method.ranked and "rank" not in {f.name for f in dataclasses.fields(settings_cls)}:
        raise ValueError(f"ranked method {name!r} needs a `rank` field in {settings_cls.__name__}")
    _REGISTRY[name] = method
    return method


_loaded = False


def all_methods() -> dict[str, Method]:
    """Every registered method, importing each module of this package once."""
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True
    return dict(_REGISTRY)


def get_method(name: str) -> Method:
    methods = all_methods()
    if name not in methods:
        hint = did_you_mean(name, methods)
        raise KeyError(f"unknown method {name!r}" + (f"; {hint}" if hint else "") + f" (known: {', '.join(sorted(methods))})")
    return methods[name]
