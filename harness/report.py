"""The report: MLflow runs -> the comparison tables a user reads and cites.

`write_report` writes two files into `results/<suite>/`:

- `leaderboard.md`: per task, one row per method x rank x quant, best test score
  first (in bold).  Every number is the mean over the configuration's finished seeds;
  `n` says how many there were and `± sd` how much they disagreed.  In a column
  header, ↑ means higher is better and ↓ lower is better.  Under each table, "Not
  comparable" lists what has no row or is missing seeds: configurations a method
  cannot do (n/a, with the reason), failed, diverged or killed runs (with their
  error) and cells not run yet.  A "Provenance" footer says which suite version,
  commit, package versions and devices produced the numbers.
- `runs.csv`: one row per cell (task x method x rank x quant x seed) in grid order,
  with the run chosen for it, its status, error and every measurement, plus `trials`
  (how many of the cell's trials finished), the chosen run's `search_values` and its
  `oom_retries`.

With a hyperparameter search (`search.trials` > 1 or a non-empty search space) each
cell has several trial runs.  The leaderboard then says so under each task heading
and adds two columns: `trials` (finished / budget, summed over the row's seeds) and
`best hyperparameters` (the chosen trials' sampled values).  With the objectives
`score` and `peak_memory` each task also gets a "Pareto front" table: every finished
trial that no other finished trial of the task beats on both validation score and
peak memory.

Which run stands for a cell: among its FINISHED runs, the one with the best
`val_score` (in the direction of the task's metric; a missing score counts as worst),
ties going to the most recent; the test score shown is that run's, so the test split
never picks the winner.  If none finished, its most recent run of any status (so a
failure shows with its error); else "not run".  A run whose `outcome` tag is
`diverged` has status DIVERGED and never counts as finished.  Cells a method cannot
do have status "not applicable" (the leaderboard says n/a) and their reason as the
error.

This module never imports mlflow: `harness.track.load_runs` hands it a DataFrame.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from harness.grid import Cell
from harness.suite import Suite

METRIC_COLUMNS: tuple[str, ...] = ("trainable_params", "trainable_frac", "peak_memory_mb", "tokens_per_s", "train_time_s",
                                   "val_score", "test_score", "forgetting", "adapter_bytes")
RUN_COLUMNS: tuple[str, ...] = ("cell_id", "task", "method", "rank", "quant", "seed", "status", "error", "run_id",
                                *METRIC_COLUMNS, "memory_kind", "device", "trials", "search_values", "oom_retries")

UP, DOWN, DASH = "↑", "↓", "–"
MEMORY_KINDS = {
    "cuda_allocated": "GPU memory held by tensors (torch.cuda.max_memory_allocated) during training; "
                      "the reserved peak is in MLflow as peak_reserved_mb",
    "cpu_rss": "peak resident memory of the worker process during training (includes Python and the libraries)",
}
FIRST_VERSIONS = ("torch", "transformers", "peft", "bitsandbytes")  # listed first in the provenance footer
ERROR_CHARS = 200
TEXT_COLUMNS = ("method", "quant", "best hyperparameters", "hyperparameters")  # left-aligned in tables
# Statuses of cells without a run.  Not "n/a": pandas.read_csv reads "n/a" as a missing value.
STATUS_NA = "not applicable"
STATUS_NOT_RUN = "not run"
STATUS_DIVERGED = "DIVERGED"  # a run whose `outcome` tag is "diverged" (the loss became nan or inf)


# --------------------------------------------------------------------------- choosing runs


def _text(value: Any) -> str | None:
    """A tag value as a string, None when missing (NaN, None or empty)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _prepare(runs: pd.DataFrame | None) -> pd.DataFrame:
    """The runs that belong to a cell, with helper columns: `_status` (DIVERGED for a run whose
    `outcome` tag says so, else MLflow's status), `_finished`, `_started` and `_val`."""
    if runs is None or runs.empty or "cell_id" not in runs.columns:
        return pd.DataFrame(columns=["cell_id", "_status", "_finished", "_started", "_val"])
    df = runs[runs["cell_id"].notna()].reset_index(drop=True)
    df["cell_id"] = df["cell_id"].map(str)
    status = df["status"].map(lambda s: _text(s) or "UNKNOWN") if "status" in df.columns else "UNKNOWN"
    outcome = df["outcome"].map(lambda s: (_text(s) or "").lower()) if "outcome" in df.columns else ""
    df["_status"] = status
    if "outcome" in df.columns:
        df.loc[outcome == "diverged", "_status"] = STATUS_DIVERGED
    df["_finished"] = df["_status"] == "FINISHED"
    started = df["start_time"] if "start_time" in df.columns else pd.Series(math.nan, index=df.index)
    df["_started"] = pd.to_numeric(started, errors="coerce").fillna(-math.inf)
    val = df["val_score"] if "val_score" in df.columns else pd.Series(math.nan, index=df.index)
    df["_val"] = pd.to_numeric(val, errors="coerce")
    return df


def _choose(group: pd.DataFrame, higher: bool) -> dict:
    """The run that stands for one cell: best val_score among FINISHED (ties: latest), else latest of any."""
    val = group["_val"] if higher else -group["_val"]
    key = group.assign(_key=val.where(group["_finished"]).fillna(-math.inf))
    key = key.sort_values(["_finished", "_key", "_started"], ascending=False, kind="stable")
    return key.iloc[0].to_dict()


def _finished_trials(group: pd.DataFrame) -> int:
    """How many of a cell's trials finished: distinct `slot` tags of its FINISHED runs (a slot run
    twice counts once), each run counting alone where it has no slot."""
    done = group[group["_finished"]]
    slots = done["slot"].map(_text) if "slot" in done.columns else pd.Series(None, index=done.index, dtype=object)
    return len({slot or f"run:{k}" for k, slot in enumerate(slots)})


def _higher_by_task(suite: Suite, metric_higher_is_better: Mapping[str, bool]) -> dict[str, bool]:
    """task name -> whether a higher score is better (unknown metrics: higher)."""
    return {t.name: bool(metric_higher_is_better.get(t.metric, True)) for t in suite.tasks}


def _int_or_na(value: Any) -> Any:
    x = _number(value)
    return pd.NA if math.isnan(x) or math.isinf(x) else int(round(x))


def select_runs(cells: list[Cell], runs: pd.DataFrame, higher_by_task: Mapping[str, bool] | None = None) -> pd.DataFrame:
    """One row per cell, in grid order, with the run chosen for it (this is runs.csv).

    `higher_by_task` says per task name whether a higher val_score is better (default: higher).
    """
    higher_by_task = higher_by_task or {}
    groups = {cid: g for cid, g in _prepare(runs).groupby("cell_id", sort=False)}
    rows = []
    for cell in cells:
        row: dict[str, Any] = {"cell_id": cell.id, "task": cell.task, "method": cell.method, "rank": cell.rank,
                               "quant": cell.quant, "seed": cell.seed}
        group = groups.get(cell.id) if cell.runnable else None
        run = _choose(group, higher_by_task.get(cell.task, True)) if group is not None else None
        if not cell.runnable:
            row |= {"status": STATUS_NA, "error": cell.na_reason, "run_id": None}
        elif run is None:
            row |= {"status": STATUS_NOT_RUN, "error": None, "run_id": None}
        else:
            status = run["_status"]
            row |= {"status": status, "error": None if status == "FINISHED" else _text(run.get("error")),
                    "run_id": _text(run.get("run_id"))}
        run = run or {}
        row |= {m: _number(run.get(m)) for m in METRIC_COLUMNS}
        row |= {"memory_kind": _text(run.get("memory_kind")), "device": _text(run.get("device")),
                "trials": _finished_trials(group) if group is not None else 0,
                "search_values": _text(run.get("search_values")), "oom_retries": _int_or_na(run.get("oom_retries"))}
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    out["rank"] = pd.array([r["rank"] for r in rows], dtype="Int64")  # 4, not 4.0, in the CSV
    out["seed"] = pd.array([r["seed"] for r in rows], dtype="Int64")
    out["trials"] = pd.array([r["trials"] for r in rows], dtype="Int64")
    out["oom_retries"] = pd.array([r["oom_retries"] for r in rows], dtype="Int64")
    for m in METRIC_COLUMNS:
        out[m] = out[m].astype(float)
    return out


# --------------------------------------------------------------------------- number formatting


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _sig(x: float, digits: int) -> str:
    """`digits` significant digits without exponents for everyday magnitudes: 0.0123, 12.3, 1,234."""
    if _missing(x):
        return DASH
    if x == 0:
        return "0"
    decimals = digits - 1 - math.floor(math.log10(abs(x)))
    x = round(x, decimals)  # 9.996 -> 10.0: recount the magnitude after rounding
    if x == 0:
        return "0"
    decimals = digits - 1 - math.floor(math.log10(abs(x)))
    if decimals <= 0:
        return f"{round(x):,}"
    if decimals > 8:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{decimals}f}"


def _fixed(x: float, decimals: int) -> str:
    return DASH if _missing(x) else f"{x:.{decimals}f}"


def _integer(x: float) -> str:
    return DASH if _missing(x) else f"{round(x):,}"


# --------------------------------------------------------------------------- configurations


@dataclasses.dataclass
class _Config:
    """One leaderboard row: the cells of one task x method x rank x quant (x settings variant)."""

    key: tuple
    label_extra: str  # "(lr=0.001)" when two grid entries share method x rank x quant
    cells: list[Cell]
    rows: pd.DataFrame  # select_runs rows of these cells

    @property
    def method(self) -> str:
        return self.cells[0].method + (f" {self.label_extra}" if self.label_extra else "")

    @property
    def rank(self) -> str:
        return "-" if self.cells[0].rank is None else str(self.cells[0].rank)

    @property
    def quant(self) -> str:
        return self.cells[0].quant

    @property
    def name(self) -> str:
        rank = f" rank {self.rank}" if self.cells[0].rank is not None else ""
        return f"`{self.method}`{rank}, quant {self.quant}"

    @property
    def finished(self) -> pd.DataFrame:
        return self.rows[self.rows["status"] == "FINISHED"]

    def mean(self, column: str) -> float:
        values = self.finished[column].dropna()
        return float(values.mean()) if len(values) else math.nan

    def sd(self, column: str) -> float:
        values = self.finished[column].dropna()
        return float(values.std(ddof=1)) if len(values) > 1 else math.nan


def _variant(cell: Cell) -> tuple:
    """Everything that decides a cell's result except its seed."""
    return cell.config_key + (repr(cell.settings), repr(dataclasses.replace(cell.training, seeds=())))


def _configs(cells: list[Cell], selected: pd.DataFrame) -> list[_Config]:
    """Cells grouped into leaderboard rows, in grid order."""
    groups: dict[tuple, list[int]] = {}
    for i, cell in enumerate(cells):
        groups.setdefault(_variant(cell), []).append(i)
    by_key: dict[tuple, list[tuple]] = {}
    for variant in groups:
        by_key.setdefault(variant[:4], []).append(variant)
    configs = []
    for variant, idx in groups.items():
        siblings = by_key[variant[:4]]
        extra = _difference(cells[idx[0]], [cells[groups[s][0]] for s in siblings]) if len(siblings) > 1 else ""
        configs.append(_Config(variant, extra, [cells[i] for i in idx], selected.iloc[idx]))
    return configs


def _difference(cell: Cell, siblings: list[Cell]) -> str:
    """'(lr=0.001)': the settings in which this cell differs from others with the same method x rank x quant."""
    mine = {k: v for k, v in cell.params().items() if k != "seed"}
    differ = [k for k in mine if any(str(s.params().get(k)) != str(mine[k]) for s in siblings)]
    return "(" + ", ".join(f"{k}={mine[k]}" for k in differ) + ")" if differ else ""


# --------------------------------------------------------------------------- markdown


def _arrow(higher_is_better: bool) -> str:
    return UP if higher_is_better else DOWN


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---" if h in TEXT_COLUMNS else "---:" for h in headers]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _memory_note(configs: list[_Config]) -> tuple[str, bool]:
    """The footnote for the memory column, and whether kinds are mixed (then each cell says its kind)."""
    kinds = sorted({k for c in configs for k in c.finished["memory_kind"].dropna()})
    if not kinds:
        return "", False
    if len(kinds) == 1:
        return f"† peak memory is `{kinds[0]}`: {MEMORY_KINDS.get(kinds[0], 'as logged by the run')}.", False
    described = "; ".join(f"`{k}`: {MEMORY_KINDS.get(k, 'as logged by the run')}" for k in kinds)
    return f"† peak memory was measured in different ways (compare only rows of the same kind): {described}.", True


def _memory_cell(config: _Config, mixed: bool) -> str:
    text = _integer(config.mean("peak_memory_mb"))
    if mixed and text != DASH:
        kinds = sorted(set(config.finished["memory_kind"].dropna()))
        text += f" ({', '.join(kinds)})"
    return text


def _seeds(rows: pd.DataFrame) -> str:
    seeds = [str(s) for s in rows["seed"]]
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(seeds)


def _first_line(text: Any) -> str:
    line = next((ln.strip() for ln in (_text(text) or "").splitlines() if ln.strip()), "")
    if not line:
        return "no reason recorded (see the run in MLflow)"
    return line if len(line) <= ERROR_CHARS else line[:ERROR_CHARS - 1].rstrip() + "…"


def _suite_path(suite: Suite) -> str:
    path = Path(suite.file)
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except ValueError:  # another drive
        return str(path)


def _not_comparable(suite: Suite, configs: list[_Config]) -> list[str]:
    """One line per configuration (and distinct reason) that has no row or is missing seeds."""
    lines = []
    run_hint = f"run `python -m harness run {_suite_path(suite)}`"
    for config in configs:
        rows = config.rows
        na = rows[rows["status"] == STATUS_NA]
        if len(na):
            lines.append(f"- {config.name}: n/a — {_first_line(na['error'].iloc[0])}")
        bad = rows[~rows["status"].isin(["FINISHED", STATUS_NA, STATUS_NOT_RUN])]
        for (status, reason), group in bad.groupby(
                [bad["status"], bad["error"].map(_first_line)], sort=False):
            what = {"FAILED": "failed", "KILLED": "killed", STATUS_DIVERGED: "diverged"}.get(status, status.lower())
            if status == "RUNNING":
                reason = "still running, or its worker died without saying so; run the suite again to redo it"
            lines.append(f"- {config.name}: {what} ({_seeds(group)}) — {reason}")
        missing = rows[rows["status"] == STATUS_NOT_RUN]
        if len(missing):
            lines.append(f"- {config.name}: not run ({_seeds(missing)}) — {run_hint}")
    return lines


def _searched(suite: Suite, cells: list[Cell]) -> bool:
    """Whether a hyperparameter search ran (or is set up): several trials per cell or something searched."""
    return suite.search.trials > 1 or any(c.trials > 1 or c.space for c in cells)


def _space_names(cells: Iterable[Cell]) -> list[str]:
    """The searched hyperparameters of these cells, in the order of their search spaces."""
    names: list[str] = []
    for c in cells:
        for param in c.space:
            if param.name not in names:
                names.append(param.name)
    return names


def _search_values(text: Any) -> dict[str, Any] | str | None:
    """A run's `search_values` tag: the sampled values as a dict; the raw text if it is not a JSON object."""
    text = _text(text)
    if text is None:
        return None
    try:
        values = json.loads(text)
    except ValueError:
        return text
    if isinstance(values, dict):
        return values or None
    return text


def _value(v: Any) -> str:
    """One sampled value, compactly: 16, 0.05, 1.2e-03."""
    if isinstance(v, bool) or v is None:
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v.is_integer() and abs(v) < 1e6:
            return str(int(v))
        return f"{v:.3g}" if 1e-2 <= abs(v) < 1e3 else f"{v:.1e}"
    return v if isinstance(v, str) else json.dumps(v)


def _short(name: str, names: Iterable[str]) -> str:
    """`settings.alpha` -> `alpha` unless that would clash with another name."""
    if name.startswith("settings."):
        bare = name[len("settings."):]
        if bare not in names:
            return bare
    return name


def _hyperparameters(tags: Iterable[Any], order: list[str]) -> str:
    """The sampled values of one or more runs: `lr=1.2e-03, alpha=16`; where the runs (seeds) chose
    differently, each name lists its distinct values: `lr=1.2e-03 / 3.0e-04`."""
    parsed = [_search_values(t) for t in tags]
    dicts = [p for p in parsed if isinstance(p, dict)]
    raw = _distinct(p for p in parsed if isinstance(p, str))
    names = [n for n in order if any(n in d for d in dicts)]
    names += [n for d in dicts for n in d if n not in names]
    names = list(dict.fromkeys(names))
    parts = []
    for name in names:
        values = list(dict.fromkeys(_value(d[name]) for d in dicts if name in d))
        parts.append(f"{_short(name, names)}={' / '.join(values)}")
    text = ", ".join(parts + raw)
    return text.replace("|", "/") if text else DASH


def _trials_cell(config: _Config) -> str:
    done = int(config.rows["trials"].fillna(0).sum())
    return f"{done}/{sum(c.trials for c in config.cells)}"


def _search_note(cells: list[Cell]) -> str:
    budgets = sorted({c.trials for c in cells if c.runnable}) or [1]
    n = str(budgets[0]) if len(budgets) == 1 else f"{budgets[0]}–{budgets[-1]}"
    names = _space_names(cells)
    searched = f" (searched: {', '.join(names)})" if names else ""
    return (f"_Each row is the best of {n} trials per cell by validation score{searched}; the test score is that "
            f"trial's.  `trials` is finished trials / budget summed over the row's seeds; `best hyperparameters` "
            f"are the chosen trials' values (where seeds chose differently, all are listed; per seed in "
            f"`runs.csv`)._")


def _pareto_section(configs: list[_Config], prepared: pd.DataFrame, metric: str, better: bool) -> tuple[list[str], set]:
    """Every FINISHED trial of the task's cells that no other one beats on both validation score and
    peak memory; returns the lines and the run ids shown."""
    lines = ["### Pareto front: validation score vs peak memory", "",
             f"_Every finished trial of this task that no other finished trial beats on both counts (a val "
             f"{metric} at least as good with no more peak memory, and better in one): along the front, more "
             f"validation score costs more memory.  Lowest memory first; the test score is shown, not used._", ""]
    by_cell = {c.id: config for config in configs for c in config.cells if c.runnable}
    cells = {c.id: c for config in configs for c in config.cells}
    mem = "peak_memory_mb"
    trials = prepared[prepared["_finished"] & prepared["cell_id"].isin(by_cell)] if len(prepared) else prepared
    if len(trials) and mem in trials.columns:
        trials = trials.assign(_mem=pd.to_numeric(trials[mem], errors="coerce"))
        trials = trials[trials["_val"].notna() & trials["_mem"].notna()]
    else:
        trials = trials.iloc[0:0]
    if not len(trials):
        return lines + ["_No finished trials with both a validation score and a peak memory yet._"], set()
    score = (trials["_val"] if better else -trials["_val"]).tolist()
    memory = trials["_mem"].tolist()
    front = [i for i in range(len(trials)) if not any(
        score[j] >= score[i] and memory[j] <= memory[i] and (score[j] > score[i] or memory[j] < memory[i])
        for j in range(len(trials)))]
    front.sort(key=lambda i: (memory[i], -score[i], -trials["_started"].iloc[i]))
    space = _space_names(cells.values())
    kinds = _distinct(trials["memory_kind"].iloc[front]) if "memory_kind" in trials.columns else []
    headers = ["method", "rank", "quant", "seed", "hyperparameters", f"val {metric} {_arrow(better)}", f"test {metric}",
               f"peak memory (MB) {DOWN}"]
    body = []
    for i in front:
        run = trials.iloc[i]
        config, c = by_cell[run["cell_id"]], cells[run["cell_id"]]
        memory_text = _integer(memory[i]) + (f" ({_text(run.get('memory_kind'))})" if len(kinds) > 1 else "")
        body.append([config.method, config.rank, config.quant, str(c.seed), _hyperparameters([run.get("search_values")], space),
                     _fixed(run["_val"], 3), _fixed(_number(run.get("test_score")), 3), memory_text])
    lines += _table(headers, body)
    if len(kinds) > 1:
        lines += ["", f"_Peak memory was measured in different ways ({', '.join(kinds)}): compare with care._"]
    return lines, {_text(trials["run_id"].iloc[i]) for i in front if "run_id" in trials.columns}


def _task_section(suite: Suite, task, configs: list[_Config], higher: bool | None, searched: bool = False,
                  pareto: pd.DataFrame | None = None) -> tuple[list[str], set]:
    """The task's lines, and the run ids of the Pareto front's trials (when `pareto` holds the runs)."""
    metric = task.metric
    better = True if higher is None else higher
    lines = [f"## {task.name} ({metric})", ""]
    if higher is None:
        lines += [f"_The direction of `{metric}` is unknown to the harness: sorted as if higher is better._", ""]
    if searched:
        lines += [_search_note([c for config in configs for c in config.cells]), ""]
    scored = [c for c in configs if len(c.finished)]
    # Best first; configurations without a test score last; ties keep grid order (sorted is stable).
    scored.sort(key=lambda c: (math.isnan(c.mean("test_score")), -c.mean("test_score") if better else c.mean("test_score")))
    if scored:
        best = _fixed(scored[0].mean("test_score"), 3)
        note, mixed = _memory_note(scored)
        headers = ["method", "rank", "quant", f"test {metric} {_arrow(better)}", "± sd", f"val {metric}",
                   f"forgetting {DOWN}", f"trainable % {DOWN}", "trainable params", f"peak memory (MB) {DOWN} †",
                   f"tokens/s {UP}", "train time (s)", f"adapter size (MB) {DOWN}", "n"]
        if searched:
            headers += ["trials", "best hyperparameters"]
        space = _space_names(c for config in configs for c in config.cells)
        body = []
        for c in scored:
            score = _fixed(c.mean("test_score"), 3)
            body.append([
                c.method, c.rank, c.quant, f"**{score}**" if score == best and score != DASH else score,
                _fixed(c.sd("test_score"), 3), _fixed(c.mean("val_score"), 3), _sig(c.mean("forgetting"), 4),
                _sig(100 * c.mean("trainable_frac"), 3), _integer(c.mean("trainable_params")), _memory_cell(c, mixed),
                _integer(c.mean("tokens_per_s")), _sig(c.mean("train_time_s"), 3), _sig(c.mean("adapter_bytes") / 1e6, 3),
                str(len(c.finished)),
            ])
            if searched:
                body[-1] += [_trials_cell(c), _hyperparameters(c.finished["search_values"], space)]
        lines += _table(headers, body)
        if note:
            lines += ["", note]
    else:
        lines.append("_No finished runs for this task yet._")
    shown: set = set()
    if pareto is not None:
        front, shown = _pareto_section(configs, pareto, metric, better)
        lines += ["", *front]
    issues = _not_comparable(suite, configs)
    if issues:
        lines += ["", "**Not comparable** (no row, or fewer seeds in `n`):", "", *issues]
    return lines + [""], shown


def _distinct(values: Iterable[Any]) -> list[str]:
    out: list[str] = []
    for v in values:
        text = _text(v)
        if text and text not in out:
            out.append(text)
    return out


def _provenance(suite: Suite, used: pd.DataFrame) -> list[str]:
    """Footer: what produced the numbers, from the runs shown (several values are all listed)."""
    def values(column: str) -> list[str]:
        return _distinct(used[column]) if column in used.columns else []

    def show(items: list[str]) -> str:
        return ", ".join(f"`{v}`" for v in items) if items else "unknown"

    lines = ["## Provenance", ""]
    fingerprints = values("suite_fingerprint")
    line = f"- suite fingerprint: {show(fingerprints)}"
    if fingerprints and fingerprints != [suite.fingerprint()]:
        line += (f" (the suite file now has `{suite.fingerprint()}`: runs with another fingerprint came from an"
                 f" earlier version of it; re-run to refresh them)")
    lines.append(line)
    lines.append(f"- suite file: `{_suite_path(suite)}`")
    lines.append(f"- git commit: {show(values('git_commit'))}")
    packages = sorted((c[len("version."):] for c in used.columns if c.startswith("version.")),
                      key=lambda p: (p not in FIRST_VERSIONS, FIRST_VERSIONS.index(p) if p in FIRST_VERSIONS else 0, p))
    if packages:
        lines.append("- packages: " + "; ".join(f"{p} {' / '.join(values('version.' + p)) or 'unknown'}" for p in packages))
    else:
        lines.append("- packages: unknown")
    lines.append(f"- device: {show(values('device'))}")
    models = values("model")
    if models and models != [suite.model.describe()]:
        lines.append(f"- model recorded by the runs: {show(models)}")
    started = pd.to_numeric(used["start_time"], errors="coerce").dropna() if "start_time" in used.columns else pd.Series()
    if len(started):
        first, last = (datetime.fromtimestamp(t / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M") for t in
                       (started.min(), started.max()))
        lines.append(f"- runs started: {first} to {last} UTC" if first != last else f"- runs started: {first} UTC")
    lines.append(f"- report generated: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC")
    return lines


def build_leaderboard(suite: Suite, cells: list[Cell], runs: pd.DataFrame,
                      metric_higher_is_better: dict[str, bool]) -> str:
    """The leaderboard as markdown: header, one section per task, provenance footer."""
    higher_by_task = _higher_by_task(suite, metric_higher_is_better)
    selected = select_runs(cells, runs, higher_by_task)
    searched = _searched(suite, cells)
    pareto = _prepare(runs) if "peak_memory" in suite.search.objectives else None
    n_seeds = len(suite.training.seeds)
    lines = [f"# {suite.name} leaderboard", ""]
    if suite.description:
        lines += [suite.description.strip(), ""]
    lines += [
        f"Model: `{suite.model.describe()}` · task type: {suite.task_type} · "
        f"{n_seeds} seed{'s' if n_seeds != 1 else ''} per configuration",
        "",
        f"How to read: one row per method × rank × quant, best test score first and in **bold**; {UP} higher is "
        f"better, {DOWN} lower is better; numbers are means over the `n` finished seeds (± sd across them); "
        f"every run is in `runs.csv` next to this file.",
        "",
    ]
    configs = _configs(cells, selected)
    front_ids: set = set()
    for task in suite.tasks:
        mine = [c for c in configs if c.cells[0].task == task.name]
        section, shown = _task_section(suite, task, mine, metric_higher_is_better.get(task.metric), searched, pareto)
        lines += section
        front_ids |= shown
    used_ids = set(selected["run_id"].dropna()) | front_ids
    used = runs[runs["run_id"].isin(used_ids)] if runs is not None and "run_id" in runs.columns else pd.DataFrame()
    lines += _provenance(suite, used)
    return "\n".join(lines) + "\n"


def write_report(suite: Suite, cells: list[Cell], runs: pd.DataFrame, out_dir: Path,
                 metric_higher_is_better: dict[str, bool]) -> Path:
    """Write out_dir/runs.csv and out_dir/leaderboard.md; returns the leaderboard's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = runs if runs is not None else pd.DataFrame()
    select_runs(cells, runs, _higher_by_task(suite, metric_higher_is_better)).to_csv(out_dir / "runs.csv", index=False)
    board = out_dir / "leaderboard.md"
    board.write_text(build_leaderboard(suite, cells, runs, metric_higher_is_better), encoding="utf-8")
    return board
