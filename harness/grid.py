"""Grid expansion: suite -> one Cell per task x grid entry x rank x quant x seed.

A cell's id is a hash of everything that determines its result, so the same cell in a
later invocation (or on another machine) has the same id.  Cells a method cannot do
(nf4 for full fine-tuning, say) stay in the list with `na_reason` set: the report
shows them as n/a instead of the run crashing on them.

With a `search:` in the suite, each cell also carries its search space (the suite's
`search.space` merged with its entry's `search:`, method settings checked against the
method here; where neither names `lr` nor the entry fixes it, the method's own declared
`lr_range`, so `search: {trials: K}` alone is an equal-budget search of every method)
and its number of trials (1 when there is nothing to search).  With `protocol:
first_seed` only the first seed's cell searches; each other seed's cell has no space, one
trial, and `search_from` naming the first seed's cell, whose chosen values it reruns; `Cell.with_values` gives the cell one trial
trains, `Cell.slots` names its trials.  The suite's plugins are imported first, so
methods they register can be named in the grid.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from harness.errors import SuiteError, did_you_mean
from harness.suite import SearchParam, Suite, Training, portable


@dataclass(frozen=True)
class Cell:
    suite: str
    task: str
    method: str
    rank: int | None
    quant: str
    seed: int
    settings: Any  # the method's frozen settings dataclass (None when n/a before settings)
    training: Training  # resolved: suite defaults + entry overrides, seeds=(seed,)
    na_reason: str | None = None
    context: str = ""  # hash of what else decides the result: model, task type, task data + metric, probe
    space: tuple = ()  # SearchParams searched for this cell (suite space merged with the entry's)
    trials: int = 1  # trials this cell gets (the suite's `search.trials`)
    # protocol first_seed: the id of the first seed's cell, whose best trial's values this cell reruns once
    search_from: str | None = None
    # The precision its runs resolved to on their device (fp32, bf16): None here, where the device is not
    # known yet (`training.precision: auto` is bf16 on a GPU that has it, fp32 elsewhere).  Only the report
    # sets it, from the runs' `precision` tag, so that a CPU fp32 run and a GPU bf16 run of one cell make
    # two leaderboard rows (harness.report._resolve_precision).  Not part of `id`: the schedule and the
    # runs' `cell_id` tag name the cell the grid made, whatever device runs it.
    precision: str | None = None

    @property
    def runnable(self) -> bool:
        return self.na_reason is None

    @property
    def config_key(self) -> tuple:
        """The leaderboard row this cell belongs to (seeds are aggregated), before settings, training
        and resolved precision tell grid entries and devices apart (harness.report._variant)."""
        return (self.task, self.method, self.rank, self.quant)

    @property
    def label(self) -> str:
        rank = f" r{self.rank}" if self.rank is not None else ""
        quant = f" {self.quant}" if self.quant != "none" else ""
        return f"{self.task}/{self.method}{rank}{quant} seed{self.seed}"

    @property
    def id(self) -> str:
        payload = {
            "suite": self.suite, "task": self.task, "method": self.method, "rank": self.rank,
            "quant": self.quant, "seed": self.seed,
            "settings": dataclasses.asdict(self.settings) if dataclasses.is_dataclass(self.settings) else None,
            "training": self.training.identity(), "context": self.context,
        }
        if self.space or self.trials != 1:  # only then: cells without a search keep the ids of recorded results
            payload |= {"space": [dataclasses.asdict(p) for p in self.space], "trials": self.trials}
        if self.search_from:
            payload["search_from"] = self.search_from
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def slots(self) -> list[str]:
        """One name per trial of this cell: `<id>/<k>` for k in range(trials)."""
        return [f"{self.id}/{k}" for k in range(self.trials)]

    def with_values(self, values: dict[str, Any]) -> "Cell":
        """This cell with one trial's values: `lr` etc. replace training fields (int fields coerced
        to int), `settings.x` rebuild the method settings over the current ones.

        Whether the values lie inside the space is not checked here; an unknown name is a KeyError,
        a value the method refuses is its SettingsError.
        """
        training: dict[str, Any] = {}
        settings: dict[str, Any] = {}
        for name, value in values.items():
            if name.startswith("settings."):
                settings[name[len("settings."):]] = value
            elif name in Training.__dataclass_fields__ and name != "seeds":
                training[name] = _coerce(value, int if _int_default(getattr(self.training, name)) else float)
            else:
                raise KeyError(f"{name!r} is neither a training field nor settings.<field>")
        out = dataclasses.replace(self, training=dataclasses.replace(self.training, **training))
        if settings:
            from methods import get_method

            method = get_method(self.method)
            kinds = _numeric_settings(method.settings_cls)
            settings = {k: _coerce(v, kinds.get(k)) for k, v in settings.items()}
            current = dataclasses.asdict(self.settings) if dataclasses.is_dataclass(self.settings) else {}
            current.pop("rank", None)
            out = dataclasses.replace(out, settings=method.make_settings(self.rank, {**current, **settings}))
        return out

    def params(self) -> dict[str, Any]:
        """Every setting of this cell, flat, as logged to MLflow."""
        out: dict[str, Any] = {"method": self.method, "rank": self.rank if self.rank is not None else "-",
                               "quant": self.quant, "task": self.task, "seed": self.seed}
        out |= {k: v for k, v in dataclasses.asdict(self.training).items() if k != "seeds"}
        if dataclasses.is_dataclass(self.settings):
            out |= {f"method.{k}": v for k, v in dataclasses.asdict(self.settings).items()}
        return out


def expand_grid(suite: Suite) -> list[Cell]:
    """Every cell of the suite, runnable or n/a; raises SuiteError on a bad grid entry."""
    from harness.plugins import load_plugins
    from methods import SettingsError, all_methods

    load_plugins(suite)
    registry = all_methods()
    cells: list[Cell] = []
    seen: set[str] = set()
    for entry in suite.grid:
        method = registry.get(entry.method)
        if method is None:
            raise SuiteError(suite.file, f"{entry.where}.method", "a registered method (one of " + ", ".join(sorted(registry)) + ")",
                             entry.method, did_you_mean(entry.method, registry))
        if not method.ranked and entry.ranks != (None,):
            raise SuiteError(suite.file, f"{entry.where}.rank", f"no rank: method {method.name!r} has none",
                             list(entry.ranks), "remove `rank` from this entry")
        ranks = entry.ranks
        if method.ranked and ranks == (None,):
            ranks = (getattr(method.settings_cls(), "rank"),)
        training = dataclasses.replace(suite.training, **dict(entry.training))
        space = None
        for task in suite.tasks:
            context = _context_hash(suite, task)
            for rank in ranks:
                try:
                    settings = method.make_settings(rank, dict(entry.settings))
                except SettingsError as exc:
                    field = f"{entry.where}.settings" + (f".{exc.key}" if exc.key else "")
                    found = dict(entry.settings).get(exc.key, dict(entry.settings)) if exc.key else dict(entry.settings)
                    raise SuiteError(suite.file, field, f"valid settings of method {method.name!r}", found, str(exc)) from None
                if space is None:  # after the entry's own settings passed: searched values are tried with them
                    space = _entry_space(suite, entry, method, ranks)
                trials = suite.search.trials if space else 1  # nothing to search: run once
                for quant in entry.quants:
                    first = None
                    for seed in training.seeds:
                        cell = Cell(suite=suite.name, task=task.name, method=method.name, rank=rank, quant=quant,
                                    seed=seed, settings=settings,
                                    training=dataclasses.replace(training, seeds=(seed,)),
                                    na_reason=method.na_reason(suite.task_type, quant), context=context,
                                    space=space, trials=trials)
                        if first is not None:  # first_seed protocol: rerun the first seed's choice once
                            cell = dataclasses.replace(cell, space=(), trials=1, search_from=first.id)
                        elif suite.search.protocol == "first_seed" and space and trials > 1:
                            first = cell
                        if cell.id in seen:  # two entries naming the same cell run it once
                            continue
                        seen.add(cell.id)
                        cells.append(cell)
    return cells


def _int_default(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numeric_settings(settings_cls: type) -> dict[str, type]:
    """Settings fields that hold numbers -> int or float: from the type (`int`, `float | None`) or an int default."""
    import types
    import typing

    hints = typing.get_type_hints(settings_cls)
    out: dict[str, type] = {}
    for f in dataclasses.fields(settings_cls):
        hint = hints.get(f.name)
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        args = set(typing.get_args(hint)) - {type(None)} if union else {hint}
        if args == {int} or _int_default(f.default):
            out[f.name] = int
        elif args == {float}:
            out[f.name] = float
    return out


def _coerce(value: Any, kind: type | None) -> Any:
    if kind is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return value
    return int(round(value)) if kind is int else float(value)


def _entry_space(suite: Suite, entry, method, ranks) -> tuple[SearchParam, ...]:
    """The entry's `search:` over the suite's `search.space`, sorted by name, method settings checked.

    Call it once the entry's own settings are known to be valid: each searched value is
    tried with them.
    """
    from methods import SettingsError

    merged = {p.name: p for p in suite.search.space} | {p.name: p for p in entry.search}
    if suite.search.trials > 1 and "lr" not in merged and "lr" not in dict(entry.training):
        # equal-budget search: each method explores its own declared learning-rate range
        if method.lr_range is None:
            raise SuiteError(suite.file, f"{entry.where}.search.lr", "a learning-rate range to search", "none",
                             f"method {method.name!r} declares no lr_range: add `search: {{lr: {{low: ..., high: ..., "
                             f"log: true}}}}` to this entry, or fix `training: {{lr: ...}}`")
        if method.lr_range:
            low, high = method.lr_range
            merged["lr"] = SearchParam(name="lr", low=float(low), high=float(high), log=True)
    fields = sorted(f.name for f in dataclasses.fields(method.settings_cls) if f.name != "rank")
    kinds = _numeric_settings(method.settings_cls)
    out = []
    for name, p in sorted(merged.items()):
        if not name.startswith("settings."):
            out.append(p)  # a training field, checked when parsed
            continue
        key, where = name[len("settings."):], f"{entry.where}.search.{name}"
        if key not in fields:
            close = did_you_mean(name, [f"settings.{f}" for f in fields])
            known = (f"method {method.name!r} has settings " + ", ".join(fields)) if fields else \
                f"method {method.name!r} has no settings to search"
            raise SuiteError(suite.file, where, f"a setting of method {method.name!r}", name,
                             f"{close} {known}" if close else known)
        kind = kinds.get(key)
        values = [("low", p.low), ("high", p.high)] if p.choices is None else [(f"choices[{i}]", c) for i, c in enumerate(p.choices)]
        for vkey, v in values:
            if kind is int and p.choices is None and (not isinstance(v, int) or isinstance(v, bool)):
                raise SuiteError(suite.file, f"{where}.{vkey}", "an integer", v,
                                 f"setting {key!r} of method {method.name!r} is a whole number")
            for rank in ranks:
                try:
                    method.make_settings(rank, {**dict(entry.settings), key: v})
                except SettingsError as exc:
                    raise SuiteError(suite.file, f"{where}.{vkey}", f"a valid {key!r} of method {method.name!r}", v,
                                     str(exc)) from None
        if p.choices is None:
            p = dataclasses.replace(p, low=_coerce(p.low, kind or float), high=_coerce(p.high, kind or float))
        else:
            p = dataclasses.replace(p, choices=tuple(_coerce(c, kind) for c in p.choices))
        out.append(dataclasses.replace(p, integer=kind is int))
    return tuple(out)


def _context_hash(suite: Suite, task) -> str:
    """Everything outside the grid entry that changes a cell's result."""
    payload = json.dumps(portable({"model": dataclasses.asdict(suite.model), "task_type": suite.task_type,
                                   "task": task.identity(), "probe": dataclasses.asdict(suite.probe)},
                                  suite.base), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
