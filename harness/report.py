"""The report: MLflow runs -> the comparison tables a user reads and cites.

`write_report` writes into `results/<suite>/`:

- `leaderboard.md`: an overall table (each configuration's mean rank over the tasks,
  `harness.stats.mean_ranks`), then per task: a quality and training-cost table (one
  row per method x rank x quant, best mean test score first), an inference-cost table
  (latency, overhead, adapter load/switch; same rows), the task's plots, and "Not
  comparable": configurations a method cannot do (n/a, with the reason), failed,
  diverged or killed runs (with their error) and cells not run yet.  Every number is
  the mean over the configuration's finished seeds (`n`); with two or more seeds the
  test score carries the half-width of its 95% Student-t interval and `vs best`
  marks (Welch's t-test, α = 0.05) the rows that cannot be told from the best one;
  those are bold with it.  ↑ means higher is better, ↓ lower.  A "Provenance"
  footer names the suite version, model / data / probe fingerprints, commit, package
  versions, devices and dates of the runs shown.
- `plots/<task>-pareto.png` and `plots/<task>-rank.png` (`harness.plots`), embedded.
- `runs.csv`: one row per cell (task x method x rank x quant x seed) in grid order,
  with the run chosen for it, its `config` label (the leaderboard row, the same on
  every task), status, error, every measurement and provenance tag, plus `trials`
  (how many of the cell's trials finished), the chosen run's `search_values` and its
  `oom_retries`.  `harness.compare` checks one runs.csv against another.

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

from harness import stats
from harness.grid import Cell
from harness.suite import Suite

METRIC_COLUMNS: tuple[str, ...] = (
    "val_score", "test_score", "forgetting", "trainable_params", "trainable_frac", "adapter_bytes",
    "peak_memory_mb", "peak_reserved_mb", "eval_peak_memory_mb", "eval_peak_reserved_mb",
    "tokens_per_s", "train_time_s", "flops_per_token", "mfu",
    "latency_base_ms", "latency_ms", "latency_overhead", "latency_merged_ms", "latency_overhead_merged",
    "adapter_load_ms", "adapter_switch_ms")
RUN_COLUMNS: tuple[str, ...] = ("cell_id", "task", "method", "rank", "quant", "seed", "status", "error", "run_id", "config",
                                *METRIC_COLUMNS, "memory_kind", "device", "trials", "search_values", "oom_retries",
                                "merge", "model_fingerprint", "data_fingerprint", "git_commit")
TAG_COLUMNS = ("memory_kind", "device", "search_values", "merge", "model_fingerprint", "data_fingerprint", "git_commit")

UP, DOWN, DASH = "↑", "↓", "–"
SAME, ALPHA = "≈", 0.05  # the significance mark and Welch's test level
PLOT_TITLES = {"pareto": "score vs peak memory, trainable parameters and tokens/s, Pareto front marked",
               "rank": "score vs rank per method"}
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


def higher_by_task(suite: Suite, metric_higher_is_better: Mapping[str, bool]) -> dict[str, bool]:
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
        row |= {t: _text(run.get(t)) for t in TAG_COLUMNS}
        row |= {"trials": _finished_trials(group) if group is not None else 0, "oom_retries": _int_or_na(run.get("oom_retries"))}
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    out["config"] = out["config"].astype(object)
    for config in _configs(cells, out):
        out.loc[config.rows.index, "config"] = config.label
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
    def label(self) -> str:
        """Short and the same on every task: `lora r8 nf4`, `full`, `lora r4 (lr=0.001)`."""
        c = self.cells[0]
        rank = f" r{c.rank}" if c.rank is not None else ""
        quant = f" {c.quant}" if c.quant != "none" else ""
        return f"{c.method}{rank}{quant}" + (f" {self.label_extra}" if self.label_extra else "")

    def scores(self) -> list[float]:
        """The finished seeds' test scores (one per seed: with a search, each seed's best trial)."""
        return [float(x) for x in self.finished["test_score"].dropna()]

    def summary(self) -> stats.Summary:
        return stats.summarize(self.scores())

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


def _ranked(configs: list[_Config], better: bool) -> list[_Config]:
    """Configurations with a finished seed, best mean test score first; no score last; ties in grid order."""
    scored = [c for c in configs if len(c.finished)]
    return sorted(scored, key=lambda c: (math.isnan(c.mean("test_score")),
                                         -c.mean("test_score") if better else c.mean("test_score")))


def _versus_best(config: _Config, best: _Config) -> str:
    """The significance mark: `best`, `≈` (Welch cannot tell it from the best) or `worse`, with p."""
    if config is best:
        return "best"
    same = stats.same_as_best(best.scores(), config.scores(), ALPHA)
    if same is None:
        return DASH
    return f"{SAME if same else 'worse'} (p={_sig(stats.welch(best.scores(), config.scores()).p, 2)})"


def _seeds_note(configs: list[_Config], metric: str) -> str:
    ns = sorted({len(c.scores()) for c in configs})
    if ns and ns[-1] >= 2:
        return (f"_Test {metric} is the mean over the row's `n` finished seeds ± the half-width of its 95% Student-t "
                f"interval.  `vs best`: Welch's two-sided t-test of the row's seed scores against the best row's; "
                f"`{SAME}` means not significantly different from the best at α = {ALPHA} (bold), `worse` means "
                f"significantly worse; rows with one seed cannot be tested (–)._")
    return (f"_One seed per row: plain numbers, without an interval or a significance test (list more "
            f"`training.seeds` in the suite for both)._")


def _quality_table(configs: list[_Config], metric: str, better: bool, searched: bool, cells_space: list[str]) -> list[str]:
    best = configs[0]
    tested = any(len(c.scores()) >= 2 for c in configs)
    note, mixed = _memory_note(configs)
    gpu = any(c.finished["mfu"].notna().any() for c in configs)
    headers = ["method", "rank", "quant", f"test {metric} {_arrow(better)}", "± 95% CI", "vs best", "n", f"val {metric}",
               f"forgetting {DOWN}", f"trainable % {DOWN}", "trainable params", f"peak memory (MB) {DOWN} †",
               f"eval peak memory (MB) {DOWN}", f"tokens/s {UP}"] + ([f"MFU (%) {UP}"] if gpu else []) + [
               "train time (s)", f"adapter size (MB) {DOWN}"]
    if not tested:
        headers.remove("± 95% CI")
        headers.remove("vs best")
    if searched:
        headers += ["trials", "best hyperparameters"]
    body = []
    for c in configs:
        summary, mark = c.summary(), _versus_best(c, best)
        score = _fixed(summary.mean, 3)
        bold = score != DASH and (c is best or mark.startswith(SAME))
        row = [c.method, c.rank, c.quant, f"**{score}**" if bold else score]
        if tested:
            row += [_fixed(summary.half_width, 3), mark]
        row += [str(len(c.finished)), _fixed(c.mean("val_score"), 3), _sig(c.mean("forgetting"), 4),
                _sig(100 * c.mean("trainable_frac"), 3), _integer(c.mean("trainable_params")), _memory_cell(c, mixed),
                _integer(c.mean("eval_peak_memory_mb")), _integer(c.mean("tokens_per_s"))]
        if gpu:
            row.append(_sig(100 * c.mean("mfu"), 3))
        row += [_sig(c.mean("train_time_s"), 3), _sig(c.mean("adapter_bytes") / 1e6, 3)]
        if searched:
            row += [_trials_cell(c), _hyperparameters(c.finished["search_values"], cells_space)]
        body.append(row)
    return _table(headers, body) + (["", note] if note else [])


def _inference_table(configs: list[_Config]) -> list[str]:
    """Latency and adapter load/switch, same row order as the quality table."""
    headers = ["method", "rank", "quant", f"latency (ms/sample) {DOWN}", f"overhead (×) {DOWN}",
               f"merged latency (ms/sample) {DOWN}", f"merged overhead (×) {DOWN}", f"adapter load (ms) {DOWN}",
               f"adapter switch (ms) {DOWN}"]
    body = []
    for c in configs:
        merged = _sig(c.mean("latency_merged_ms"), 3)
        if merged == DASH:
            reasons = _distinct(c.finished["merge"]) if "merge" in c.finished.columns else []
            merged = f"n/a: {reasons[0]}" if reasons else DASH
        body.append([c.method, c.rank, c.quant, _sig(c.mean("latency_ms"), 3), _fixed(c.mean("latency_overhead"), 2),
                     merged, _fixed(c.mean("latency_overhead_merged"), 2), _sig(c.mean("adapter_load_ms"), 3),
                     _sig(c.mean("adapter_switch_ms"), 3)])
    quants = list(dict.fromkeys(c.quant for c in configs))
    base = {q: stats.summarize(x for c in configs if c.quant == q for x in c.finished["latency_base_ms"].dropna()).mean
            for q in quants}
    base_text = ", ".join(f"{_sig(ms, 3)} ms/sample" + (f" ({q})" if len(quants) > 1 else "") for q, ms in base.items())
    note = (f"_Latency: one forward pass per sample at batch size 1 over the first 32 test examples (the fastest of "
            f"3 timed passes), mean of the row's seeds; the base model, before the method, takes {base_text} on the "
            f"same workers.  Overhead = adapted "
            f"(or merged) latency / the base model's latency measured in the same trial.  Adapter load: read one "
            f"task's stored weights from disk onto the base already in memory; switch: make another task's weights "
            f"active (see the README's definitions)._")
    return _table(headers, body) + ["", note]


def _task_section(suite: Suite, task, configs: list[_Config], higher: bool | None, searched: bool = False,
                  pareto: pd.DataFrame | None = None, plots: Mapping[str, str] | None = None) -> tuple[list[str], set]:
    """The task's lines, and the run ids of the Pareto front's trials (when `pareto` holds the runs).

    `plots`: kind -> path relative to the leaderboard, embedded under the tables."""
    metric = task.metric
    better = True if higher is None else higher
    lines = [f"## {task.name} ({metric})", ""]
    if higher is None:
        lines += [f"_The direction of `{metric}` is unknown to the harness: sorted as if higher is better._", ""]
    if searched:
        lines += [_search_note([c for config in configs for c in config.cells]), ""]
    scored = _ranked(configs, better)
    if scored:
        space = _space_names(c for config in configs for c in config.cells)
        lines += [_seeds_note(scored, metric), ""]
        lines += _quality_table(scored, metric, better, searched, space)
        lines += ["", f"### Inference cost ({task.name})", "", *_inference_table(scored)]
    else:
        lines.append("_No finished runs for this task yet._")
    for kind, path in (plots or {}).items():
        lines += ["", f"![{task.name}: {PLOT_TITLES[kind]}]({path})"]
    shown: set = set()
    if pareto is not None:
        front, shown = _pareto_section(configs, pareto, metric, better)
        lines += ["", *front]
    issues = _not_comparable(suite, configs)
    if issues:
        lines += ["", "**Not comparable** (no row, or fewer seeds in `n`):", "", *issues]
    return lines + [""], shown


def _overall_section(suite: Suite, configs: list[_Config], higher_by_task: Mapping[str, bool]) -> list[str]:
    """One row per configuration across tasks: its mean rank (1 = best test score on a task)."""
    per_task: dict[str, dict[str, float]] = {}
    rows: dict[str, _Config] = {}
    for c in configs:
        rows.setdefault(c.label, c)
        if len(c.finished):
            per_task.setdefault(c.cells[0].task, {})[c.label] = c.mean("test_score")
    ranks = {task: stats.average_ranks(scores, higher_by_task.get(task, True)) for task, scores in per_task.items()}
    means = stats.mean_ranks(per_task, higher_by_task)
    if not means:
        return []
    tasks = [t.name for t in suite.tasks]
    order = sorted(means, key=lambda label: (-means[label][1], means[label][0]))
    headers = ["method", "rank", "quant", f"mean rank {DOWN}", "tasks"] + [f"{t} (rank)" for t in tasks]
    body = []
    for label in order:
        c = rows[label]
        mean, n = means[label]
        body.append([c.method, c.rank, c.quant, _fixed(mean, 2), f"{n}/{len(tasks)}"]
                    + [_fixed(ranks.get(t, {}).get(label, math.nan), 1) for t in tasks])
    return ["## Overall: mean rank over tasks", "",
            "_Per task, configurations are ranked by mean test score (1 = best; ties share the average rank); this "
            "table averages each configuration's ranks over the tasks it finished.  Rows that finished fewer tasks "
            "come last.  Significance is per task, in the tables below._", "", *_table(headers, body), ""]


def _plot_points(configs: list[_Config]) -> list:
    from harness.plots import PlotPoint

    points = []
    for c in configs:
        summary = c.summary()
        points.append(PlotPoint(label=c.label, method=c.cells[0].method, rank=c.cells[0].rank, quant=c.quant,
                                score=summary.mean, score_err=summary.half_width, peak_memory_mb=c.mean("peak_memory_mb"),
                                trainable_params=c.mean("trainable_params"), tokens_per_s=c.mean("tokens_per_s")))
    return points


def write_plots(suite: Suite, configs: list[_Config], higher_by_task: Mapping[str, bool],
                out_dir: Path) -> dict[str, dict[str, str]]:
    """Each task's PNG plots under out_dir/plots; task -> kind -> path relative to out_dir."""
    from harness.plots import write_task_plots

    written: dict[str, dict[str, str]] = {}
    for task in suite.tasks:
        mine = _ranked([c for c in configs if c.cells[0].task == task.name], higher_by_task.get(task.name, True))
        if not mine:
            continue
        kinds = sorted({k for c in mine for k in c.finished["memory_kind"].dropna()})
        memory = f"peak training memory (MB{', ' + kinds[0] if len(kinds) == 1 else ''})"
        paths = write_task_plots(task.name, f"test {task.metric}", higher_by_task.get(task.name, True),
                                 _plot_points(mine), out_dir / "plots", memory_label=memory)
        written[task.name] = {kind: path.relative_to(out_dir).as_posix() for kind, path in paths.items()}
    return written


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
    lines.append(f"- model: {show(models or [suite.model.describe()])}, fingerprint {show(values('model_fingerprint'))}")
    if "data_fingerprint" in used.columns and "task" in used.columns:
        per_task = [f"{t} {show(_distinct(used.loc[used['task'] == t, 'data_fingerprint']))}" for t in _distinct(used["task"])]
        lines.append("- data fingerprints: " + "; ".join(per_task))
    else:
        lines.append("- data fingerprints: unknown")
    lines.append(f"- forgetting probe fingerprint: {show(values('probe_fingerprint'))}")
    started = pd.to_numeric(used["start_time"], errors="coerce").dropna() if "start_time" in used.columns else pd.Series()
    if len(started):
        first, last = (datetime.fromtimestamp(t / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M") for t in
                       (started.min(), started.max()))
        lines.append(f"- runs started: {first} to {last} UTC" if first != last else f"- runs started: {first} UTC")
    lines.append(f"- report generated: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC")
    return lines


def build_leaderboard(suite: Suite, cells: list[Cell], runs: pd.DataFrame, metric_higher_is_better: dict[str, bool],
                      out_dir: Path | None = None) -> str:
    """The leaderboard as markdown: header, overall ranks, one section per task, provenance footer.

    With `out_dir`, each task's plots are written under out_dir/plots and embedded."""
    by_task = higher_by_task(suite, metric_higher_is_better)
    selected = select_runs(cells, runs, by_task)
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
        f"How to read: per task, one row per method × rank × quant, best mean test score first; {UP} higher is "
        f"better, {DOWN} lower is better; bold marks the best row and those not significantly different from it; "
        f"costs are means over the `n` finished seeds; failed and n/a configurations are listed under each task "
        f"with the reason; every run is in `runs.csv` next to this file, and every definition is in the README.",
        "",
    ]
    configs = _configs(cells, selected)
    plots = write_plots(suite, configs, by_task, Path(out_dir)) if out_dir is not None else {}
    lines += _overall_section(suite, configs, by_task)
    front_ids: set = set()
    for task in suite.tasks:
        mine = [c for c in configs if c.cells[0].task == task.name]
        section, shown = _task_section(suite, task, mine, metric_higher_is_better.get(task.metric), searched, pareto,
                                       plots.get(task.name))
        lines += section
        front_ids |= shown
    used_ids = set(selected["run_id"].dropna()) | front_ids
    used = runs[runs["run_id"].isin(used_ids)] if runs is not None and "run_id" in runs.columns else pd.DataFrame()
    lines += _provenance(suite, used)
    return "\n".join(lines) + "\n"


def write_report(suite: Suite, cells: list[Cell], runs: pd.DataFrame, out_dir: Path,
                 metric_higher_is_better: dict[str, bool]) -> Path:
    """Write out_dir/runs.csv, out_dir/leaderboard.md and out_dir/plots/*.png; returns the leaderboard's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = runs if runs is not None else pd.DataFrame()
    select_runs(cells, runs, higher_by_task(suite, metric_higher_is_better)).to_csv(out_dir / "runs.csv", index=False)
    plots = out_dir / "plots"
    for old in plots.glob("*.png"):  # plots of tasks or kinds no longer in the suite must not linger
        old.unlink()
    board = out_dir / "leaderboard.md"
    board.write_text(build_leaderboard(suite, cells, runs, metric_higher_is_better, out_dir), encoding="utf-8")
    return board
