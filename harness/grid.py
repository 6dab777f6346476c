"""Grid expansion: suite -> one Cell per task x grid entry x rank x quant x seed.

A cell's id is a hash of everything that determines its result, so the same cell in a
later invocation (or on another machine) has the same id.  Cells a method cannot do
(nf4 for full fine-tuning, say) stay in the list with `na_reason` set: the report
shows them as n/a instead of the run crashing on them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from harness.errors import SuiteError, did_you_mean
from harness.suite import Suite, Training


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

    @property
    def runnable(self) -> bool:
        return self.na_reason is None

    @property
    def config_key(self) -> tuple:
        """The leaderboard row this cell belongs to (seeds are aggregated)."""
        return (self.task, self.method, self.rank, self.quant)

    @property
    def label(self) -> str:
        rank = f" r{self.rank}" if self.rank is not None else ""
        quant = f" {self.quant}" if self.quant != "none" else ""
        return f"{self.task}/{self.method}{rank}{quant} seed{self.seed}"

    @property
    def id(self) -> str:
        payload = json.dumps({
            "suite": self.suite, "task": self.task, "method": self.method, "rank": self.rank,
            "quant": self.quant, "seed": self.seed,
            "settings": dataclasses.asdict(self.settings) if dataclasses.is_dataclass(self.settings) else None,
            "training": dataclasses.asdict(self.training), "context": self.context,
        }, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

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
    from methods import SettingsError, all_methods

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
        for task in suite.tasks:
            context = _context_hash(suite, task)
            for rank in ranks:
                try:
                    settings = method.make_settings(rank, dict(entry.settings))
                except SettingsError as exc:
                    field = f"{entry.where}.settings" + (f".{exc.key}" if exc.key else "")
                    found = dict(entry.settings).get(exc.key, dict(entry.settings)) if exc.key else dict(entry.settings)
                    raise SuiteError(suite.file, field, f"valid settings of method {method.name!r}", found, str(exc)) from None
                for quant in entry.quants:
                    for seed in training.seeds:
                        cell = Cell(suite=suite.name, task=task.name, method=method.name, rank=rank, quant=quant,
                                    seed=seed, settings=settings,
                                    training=dataclasses.replace(training, seeds=(seed,)),
                                    na_reason=method.na_reason(suite.task_type, quant), context=context)
                        if cell.id in seen:  # two entries naming the same cell run it once
                            continue
                        seen.add(cell.id)
                        cells.append(cell)
    return cells


def _context_hash(suite: Suite, task) -> str:
    """Everything outside the grid entry that changes a cell's result."""
    payload = json.dumps({"model": dataclasses.asdict(suite.model), "task_type": suite.task_type,
                          "task": dataclasses.asdict(task), "probe": dataclasses.asdict(suite.probe)},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
