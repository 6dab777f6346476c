"""The report: runs -> the comparison tables a user reads and cites.

`write_report` writes into `results/<suite>/`:

- `runs.csv`: EVERY trial run of the suite's cells (every search trial, every seed),
  in grid order and by start time within a cell, plus one row for each cell that has
  no run (n/a, not run).  Each row carries its cell (`cell_id`, task, method, rank,
  quant, seed), its `config` label (the leaderboard row, the same on every task),
  `chosen` (True for the run that stands for its cell, see below, and for a cell's
  placeholder row: the chosen rows are one per cell, or per cell and resolved precision,
  see below), status, error, every measurement (`harness.measures`, which also gives the
  leaderboard's headers, number formats and arrows, and the memory column's measure per
  `memory_kind`), the run's `lr` / `head_lr`, search and provenance tags, its per-example
  test outcomes (`test_outcomes`) and `trials` (how many of the cell's trials
  finished).  Everything the leaderboard shows comes from these columns, so
  `report_from_csv` (`harness report SUITE --from-csv runs.csv`) rebuilds the same
  leaderboard byte for byte without MLflow.  `harness.compare` checks one runs.csv
  against another.
- `leaderboard.md`: an overall table (each configuration's tier per task and their
  mean), then per task: a quality and training-cost table, an inference-cost table
  (same rows), the task's plots, and "Not comparable": configurations a method cannot
  do (n/a, with the reason), failed, diverged or killed runs (with their error) and
  cells not run yet.  A "Provenance" footer names the suite version, model / data /
  probe fingerprints, commit, package versions, devices and the dates of the runs
  shown; nothing in the file depends on when or where the report was made.
- `plots/<task>-pareto.png` and `plots/<task>-rank.png` (`harness.plots`), embedded.

Per task (see `_analyse`): the best row is the one with the best mean VALIDATION
score among the rows whose seeds all finished (the test split never picks it); every
other row gets `stats.compare_with_best` against it (paired bootstrap over seeds and,
where the runs logged them, test examples; Holm over the k - 1 comparisons; verdict
worse / ≈ within the margin / inconclusive / better), and `stats.tiers` groups the
rows.  Rows sort by tier, then by mean validation score; rows with a failed, diverged
or missing seed come after every row with all seeds.  The row's own interval is
`stats.bootstrap_interval` of its mean.  The bootstrap's seed and size are fixed, so
a report is a deterministic function of (suite, runs.csv, margin).

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

A row is one configuration at one resolved precision: a run's `precision` tag says what
`training.precision` became on its device (`auto`: bf16 on a GPU that has it, fp32
elsewhere), and runs of one cell that resolved differently each get their chosen run and
their row (labelled `precision=auto→bf16`, ...), so a CPU fp32 result and a GPU bf16 result
are never averaged together nor picked between; see `_resolve_precision`.  Cell ids do not
change: the grid does not know the device.  Where a task's runs logged train inputs
repeated in validation or test (`data.dup_train_validation`, `data.dup_train_test`), a
"Data overlap" line under its table names the counts.

This module never imports mlflow: `harness.track.load_runs` hands it a DataFrame.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from harness import measures, stats
from harness.grid import Cell
from harness.measures import MEMORY_KINDS
from harness.suite import Suite

METRIC_COLUMNS: tuple[str, ...] = measures.NAMES  # every measure, in the table's order
# validation / test rows whose input is also a train input (harness.data.overlap), as each run logged them
DUPLICATES = ("data.dup_train_validation", "data.dup_train_test")
# tags and params of a run, kept as the text MLflow holds
TAG_COLUMNS = ("outcome", "slot", "search_from", "search_values", "lr", "head_lr", "memory_kind", "device", "merge",
               "model", "model_fingerprint", "data_fingerprint", "probe_fingerprint", "suite_fingerprint", "git_commit",
               "precision", "data_source")
INT_COLUMNS = ("rank", "seed", "start_time", "trials", "oom_retries")
OUTCOMES_COLUMN = "test_outcomes"  # harness.metrics.pack_outcomes of the test split's per-example 0/1; last (long)
RUN_COLUMNS: tuple[str, ...] = (
    "cell_id", "task", "method", "rank", "quant", "seed", "status", "error", "run_id", "config", "chosen",
    "start_time", "trials", "oom_retries", *METRIC_COLUMNS, *TAG_COLUMNS)  # then version.*, then test_outcomes

UP, DOWN, DASH, MINUS = measures.UP, measures.DOWN, "–", "−"
ALPHA, LEVEL = 0.05, 0.95  # the verdicts' test level (Holm-corrected) and the intervals' coverage
N_BOOT, RNG_SEED = 2000, 0  # bootstrap resamples and seed: fixed, so a report is deterministic
DEFAULT_MARGIN = 0.01  # `≈` needs the difference's 90% interval inside ±margin (score units: 0.01 = 1 point)
BEST = "best (by val)"
PLOT_TITLES = {"pareto": "score vs peak memory, trainable parameters and tokens/s, Pareto front marked",
               "rank": "score vs rank per method"}
MEMORY_COLUMN = "_memory_mb"  # each run's memory column: the measure its memory_kind names (harness.measures)
FIRST_VERSIONS = ("torch", "transformers", "peft", "bitsandbytes")  # listed first in the provenance footer
ERROR_CHARS = 200
STALE_LISTED = 10  # rows of unknown cells named in a stale leaderboard's warning
TEXT_COLUMNS = ("method", "quant", "best hyperparameters", "hyperparameters")  # left-aligned in tables
# Statuses of cells without a run.  Not "n/a": pandas.read_csv reads "n/a" as a missing value.
STATUS_NA = "not applicable"
STATUS_NOT_RUN = "not run"
STATUS_DIVERGED = "DIVERGED"  # a run whose `outcome` tag is "diverged" (the loss became nan or inf)


# --------------------------------------------------------------------------- choosing runs


def _text(value: Any) -> str | None:
    """A tag value as a string, None when missing (NaN, NA, None or empty)."""
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):  # a list or an array: not missing
        pass
    text = str(value).strip()
    return text or None


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _prepare(runs: pd.DataFrame | None) -> pd.DataFrame:
    """The runs that belong to a cell, with helper columns: `_status` (DIVERGED for a run whose
    `outcome` tag says so, else MLflow's status), `_finished`, `_started`, `_val` and `_precision`.

    Rows of a runs.csv that stand for a cell without a run (n/a, not run) are no runs and are dropped."""
    if runs is None or runs.empty or "cell_id" not in runs.columns:
        return pd.DataFrame(columns=["cell_id", "run_id", "_status", "_finished", "_started", "_val", "_precision"])
    df = runs[runs["cell_id"].map(_text).notna()].reset_index(drop=True)
    df["cell_id"] = df["cell_id"].map(_text)
    status = df["status"].map(lambda s: _text(s) or "UNKNOWN") if "status" in df.columns else "UNKNOWN"
    df["_status"] = status
    if "outcome" in df.columns:
        df.loc[df["outcome"].map(lambda s: (_text(s) or "").lower()) == "diverged", "_status"] = STATUS_DIVERGED
    df = df[~df["_status"].isin([STATUS_NA, STATUS_NOT_RUN])].reset_index(drop=True)
    df["_finished"] = df["_status"] == "FINISHED"
    started = df["start_time"] if "start_time" in df.columns else pd.Series(math.nan, index=df.index)
    df["_started"] = pd.to_numeric(started, errors="coerce").astype("float64").fillna(-math.inf)
    val = df["val_score"] if "val_score" in df.columns else pd.Series(math.nan, index=df.index)
    df["_val"] = pd.to_numeric(val, errors="coerce").astype("float64")
    # the precision the run resolved to on its device; "" where it was not recorded (older runs.csv files)
    df["_precision"] = df["precision"].map(lambda p: _text(p) or "") if "precision" in df.columns else ""
    return df


def _choose(group: pd.DataFrame, higher: bool) -> Any:
    """The index of the run that stands for one cell: best val_score among FINISHED (ties: latest), else latest of any."""
    val = group["_val"] if higher else -group["_val"]
    key = group.assign(_key=val.where(group["_finished"]).fillna(-math.inf))
    key = key.sort_values(["_finished", "_key", "_started"], ascending=False, kind="stable")
    return key.index[0]


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


def _version_columns(columns: Iterable[str]) -> list[str]:
    """The runs' `version.<package>` columns: torch, transformers, peft, bitsandbytes first, then by name."""
    packages = sorted({c[len("version."):] for c in columns if str(c).startswith("version.")},
                      key=lambda p: (p not in FIRST_VERSIONS, FIRST_VERSIONS.index(p) if p in FIRST_VERSIONS else 0, p))
    return [f"version.{p}" for p in packages]


def runs_table(cells: list[Cell], runs: pd.DataFrame | None,
               higher_by_task: Mapping[str, bool] | None = None) -> pd.DataFrame:
    """runs.csv: every run of the cells (grid order, then start time), one placeholder row per cell
    without a run, and `chosen` marking the run that stands for its cell (see the module docstring).

    A cell whose runs resolved to different precisions (`precision` tag: fp32 on a CPU, bf16 on a
    GPU) has one chosen run per precision, and each goes to its own leaderboard row
    (`_resolve_precision`): results of different numerics are never pooled or picked between.

    `higher_by_task` says per task name whether a higher val_score is better (default: higher).
    Runs of cells not in `cells` are left out.  The table is its own input: `runs_table(cells, t)`
    of a table `t` it made gives `t` again.
    """
    higher_by_task = higher_by_task or {}
    prepared = _prepare(runs)
    groups = {cid: g for cid, g in prepared.groupby("cell_id", sort=False)}
    parts: list[tuple[int, Cell, str | None, pd.DataFrame | None]] = []  # (index in cells, cell, precision, its runs)
    for i, cell in enumerate(cells):
        group = groups.get(cell.id) if cell.runnable else None
        if group is None or group.empty:
            parts.append((i, cell, None, None))
            continue
        parts += [(i, cell, p or None, group[group["_precision"] == p]) for p in sorted(set(group["_precision"]))]
    row_cells = _resolve_precision([(c, p) for _, c, p, _ in parts])
    label_of = {id(c): config.label for config in _configs(row_cells) for c in config.cells}
    by_index: dict[int, list] = {}  # index in cells -> its (row cell, runs) pairs, one per resolved precision
    for (i, _, _, sub), row_cell in zip(parts, row_cells):
        by_index.setdefault(i, []).append((row_cell, sub))
    versions = _version_columns(prepared.columns)
    rows: list[dict[str, Any]] = []
    for i, cell in enumerate(cells):
        mine = by_index[i]
        base = {"cell_id": cell.id, "task": cell.task, "method": cell.method, "rank": cell.rank, "quant": cell.quant,
                "seed": cell.seed}
        if mine[0][1] is None:
            status = STATUS_NOT_RUN if cell.runnable else STATUS_NA
            rows.append(base | {"config": label_of[id(mine[0][0])], "status": status, "error": cell.na_reason,
                                "chosen": True, "trials": 0})
            continue
        chosen, about = set(), {}  # the chosen runs; run index -> (config label, finished trials of its precision)
        for row_cell, sub in mine:
            chosen.add(_choose(sub, higher_by_task.get(cell.task, True)))
            about |= {index: (label_of[id(row_cell)], _finished_trials(sub)) for index in sub.index}
        group = groups[cell.id]
        order = group.assign(_id=group["run_id"].map(lambda r: _text(r) or "") if "run_id" in group.columns else "")
        for index, run in order.sort_values(["_started", "_id"], kind="stable").iterrows():
            status = run["_status"]
            label, trials = about[index]
            row = base | {"config": label, "status": status,
                          "error": None if status == "FINISHED" else _text(run.get("error")),
                          "run_id": _text(run.get("run_id")), "chosen": index in chosen,
                          "start_time": _int_or_na(run.get("start_time")), "trials": trials,
                          "oom_retries": _int_or_na(run.get("oom_retries"))}
            row |= {m: _number(run.get(m)) for m in METRIC_COLUMNS}
            row |= {t: _text(run.get(t)) for t in (*TAG_COLUMNS, *versions, OUTCOMES_COLUMN)}
            rows.append(row)
    out = pd.DataFrame(rows, columns=[*RUN_COLUMNS, *versions, OUTCOMES_COLUMN])
    for column in INT_COLUMNS:  # 4, not 4.0, in the CSV
        out[column] = pd.array([_int_or_na(v) if v is not None else pd.NA for v in out[column]], dtype="Int64")
    for m in METRIC_COLUMNS:
        out[m] = out[m].astype(float)
    for t in ("error", "run_id", *TAG_COLUMNS, *versions, OUTCOMES_COLUMN):
        out[t] = out[t].astype(object)
    out["chosen"] = out["chosen"].astype(bool)
    return out


def select_runs(cells: list[Cell], runs: pd.DataFrame | None,
                higher_by_task: Mapping[str, bool] | None = None) -> pd.DataFrame:
    """One row per cell (and resolved precision), in grid order: the runs.csv rows with `chosen`
    (the run standing for each cell)."""
    table = runs_table(cells, runs, higher_by_task)
    return table[table["chosen"]].reset_index(drop=True)


def to_csv_text(table: pd.DataFrame) -> str:
    """runs.csv's text: floats written so that they read back exactly."""
    return table.to_csv(index=False, lineterminator="\n")


def read_runs_csv(source: str | Path | io.StringIO) -> pd.DataFrame:
    """A runs.csv as the report reads it: text columns stay text (a commit `20712e2` is no number),
    only an empty field is missing, and the number columns are numbers."""
    df = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""])
    for column in df.columns:
        if column in METRIC_COLUMNS:
            df[column] = pd.to_numeric(df[column], errors="coerce").astype("float64")
        elif column in INT_COLUMNS:
            df[column] = pd.array([_int_or_na(v) for v in df[column]], dtype="Int64")
        elif column == "chosen":
            df[column] = df[column].map(lambda v: (_text(v) or "true").lower() in ("true", "1"))
    return df


def stale_lines(cells: list[Cell], runs: pd.DataFrame) -> list[str]:
    """Why a runs.csv no longer matches the suite's cells (empty when it does): rows of cells the suite
    does not have (listed), and cells with no row at all."""
    if "cell_id" not in runs.columns:
        return ["runs.csv has no `cell_id` column: it was not written by `harness report`"]
    ids = {c.id for c in cells}
    cell_ids = runs["cell_id"].map(_text)
    unknown = runs[cell_ids.notna() & ~cell_ids.isin(ids)]
    lines = []
    if len(unknown):
        lines.append(f"{len(unknown)} row(s) of runs.csv belong to no cell of the suite (the suite changed since "
                     f"those runs, or the file is another suite's):")
        for _, row in unknown.head(STALE_LISTED).iterrows():
            what = " ".join(v for v in (_text(row.get("task")), _text(row.get("config")) or _text(row.get("method"))) if v)
            seed = _text(row.get("seed"))
            lines.append(f"  - cell `{_text(row['cell_id'])}`" + (f" ({what}" + (f", seed {seed}" if seed else "") + ")"
                                                                   if what else "")
                         + f", status {_text(row.get('status')) or 'unknown'}")
        if len(unknown) > STALE_LISTED:
            lines.append(f"  - and {len(unknown) - STALE_LISTED} more")
    present = set(cell_ids.dropna())
    missing = [c for c in cells if c.id not in present]
    if missing:
        names = ", ".join(c.label for c in missing[:STALE_LISTED]) + (", ..." if len(missing) > STALE_LISTED else "")
        lines.append(f"{len(missing)} cell(s) of the suite have no row in runs.csv: {names}")
    return lines


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


_FORMATS = {"fixed3": lambda x: _fixed(x, 3), "fixed2": lambda x: _fixed(x, 2), "sig3": lambda x: _sig(x, 3),
            "sig4": lambda x: _sig(x, 4), "int": lambda x: _integer(x), "percent3": lambda x: _sig(100 * x, 3),
            "megabytes3": lambda x: _sig(x / 1e6, 3)}  # the keys of harness.measures.FORMATS


def _format(name: str, x: float) -> str:
    """A measure's number as the leaderboard writes it (its `fmt` in harness.measures)."""
    return _FORMATS[measures.BY_NAME[name].fmt](x)


def _header(name: str, metric: str = "", better: bool = True) -> str:
    """A measure's leaderboard header; the scores' name the task metric and its direction."""
    return measures.BY_NAME[name].header.format(metric=metric, arrow=_arrow(better))


def _points(x: float) -> str:
    """A score difference in points (0.01 = 1 point), signed, with a real minus: −4.1, +0.6, 0.0."""
    if _missing(x):
        return DASH
    text = f"{100 * x:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text.replace("-", MINUS)


# --------------------------------------------------------------------------- configurations


@dataclasses.dataclass
class _Config:
    """One leaderboard row: the cells of one task x method x rank x quant (x settings variant)."""

    key: tuple
    label_extra: str  # "(lr=0.001)" when two grid entries share method x rank x quant
    cells: list[Cell]
    rows: pd.DataFrame  # the chosen runs.csv rows of these cells, one per seed
    _means: dict = dataclasses.field(default_factory=dict, repr=False)

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
    def task(self) -> str:
        return self.cells[0].task

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

    @functools.cached_property
    def finished(self) -> pd.DataFrame:
        return self.rows[self.rows["status"] == "FINISHED"]

    @functools.cached_property
    def ok(self) -> pd.DataFrame:
        """The seeds that count: finished, with a test score."""
        finished = self.finished
        return finished[finished["test_score"].notna()]

    @property
    def complete(self) -> bool:
        """Every seed finished with a test score (none failed, diverged, was killed or is missing)."""
        return len(self.ok) == len(self.rows)

    def seeds_ok(self) -> str:
        return f"{len(self.ok)}/{len(self.rows)}"

    def scores(self) -> list[float]:
        """The finished seeds' test scores (one per seed: with a search, each seed's best trial)."""
        return [float(x) for x in self.ok["test_score"]]

    def sample(self) -> stats.Sample:
        """Seed -> test score (nan for a seed that did not finish) and, when every finished seed logged
        them, seed -> its per-example test outcomes."""
        from harness.metrics import unpack_outcomes

        scores = {int(r["seed"]): float(r["test_score"]) if r["status"] == "FINISHED" else math.nan
                  for _, r in self.rows.iterrows()}
        ok = self.ok
        texts = [_text(v) for v in ok[OUTCOMES_COLUMN]] if OUTCOMES_COLUMN in ok.columns else []
        if not texts or any(t is None for t in texts):
            return stats.Sample(scores=scores)
        return stats.Sample(scores=scores, outcomes={int(s): unpack_outcomes(t) for s, t in zip(ok["seed"], texts)})

    def mean(self, column: str) -> float:
        if column not in self._means:
            values = self.finished[column].dropna()
            self._means[column] = float(values.mean()) if len(values) else math.nan
        return self._means[column]


def _variant(cell: Cell) -> tuple:
    """Everything that decides a cell's result except its seed: what the grid says, and the precision
    its runs resolved to on their device (`Cell.precision`, set by `_resolve_precision`)."""
    return cell.config_key + (repr(cell.settings), repr(dataclasses.replace(cell.training, seeds=())), cell.precision)


def _resolve_precision(pairs: list[tuple[Cell, str | None]]) -> list[Cell]:
    """Each (cell, the precision one of its chosen runs resolved to, None if unknown) as the cell of
    its leaderboard row: a row is one configuration at one resolved precision.

    Where a configuration's runs all resolved to one precision (the usual case: one kind of
    device), every cell of it takes that precision, those without one too (not run yet, n/a,
    a runs.csv from before the column), and the row is what it always was.  Where they resolved
    to several (some seeds on a CPU at fp32, others on a GPU at bf16), each precision is a row
    of its own, labelled with it (`_difference`), and the cells without one a further row.
    """
    known: dict[tuple, set] = {}
    for cell, precision in pairs:
        if precision is not None:
            known.setdefault(_variant(cell), set()).add(precision)
    out = []
    for cell, precision in pairs:
        seen = known.get(_variant(cell), set())
        out.append(dataclasses.replace(cell, precision=precision if len(seen) > 1 else next(iter(seen), None)))
    return out


def _configs(cells: list[Cell], selected: pd.DataFrame | None = None) -> list[_Config]:
    """Cells grouped into leaderboard rows, in grid order; `selected`: the chosen rows, one per cell in grid order."""
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
        rows = selected.iloc[idx] if selected is not None else pd.DataFrame()
        configs.append(_Config(variant, extra, [cells[i] for i in idx], rows))
    return configs


def _difference(cell: Cell, siblings: list[Cell]) -> str:
    """'(lr=0.001)': the settings in which this cell differs from others with the same method x rank x quant.

    Where the siblings' runs resolved to different precisions, `precision` is shown as resolved:
    `precision=auto→bf16` (asked auto, ran bf16); a cell not run yet keeps `precision=auto`."""
    several = len({s.precision for s in siblings} - {None}) > 1

    def described(c: Cell) -> dict[str, Any]:
        out = {k: v for k, v in c.params().items() if k != "seed"}
        if several and c.precision not in (None, c.training.precision):
            out["precision"] = f"{c.training.precision}→{c.precision}"
        return out

    mine = described(cell)
    differ = [k for k in mine if any(str(described(s).get(k)) != str(mine[k]) for s in siblings)]
    return "(" + ", ".join(f"{k}={mine[k]}" for k in differ) + ")" if differ else ""


# --------------------------------------------------------------------------- comparing rows within a task


@dataclasses.dataclass
class _Analysis:
    """One task's rows compared with its best row (see `_analyse`)."""

    rows: list[_Config]  # display order: complete rows by (tier, validation), then the others likewise
    best: _Config
    verdicts: dict[int, stats.Verdict]  # id(config) -> its verdict against the best; the best has none
    tiers: dict[int, int]
    intervals: dict[int, tuple[float, float]]  # the row's own interval of its mean test score
    examples: int  # rows whose sample carries per-example outcomes
    outcome_problem: str | None  # why outcomes were set aside, if they were

    @property
    def testable(self) -> bool:
        """Whether anything could be resampled: some interval or verdict rests on data."""
        return any(not math.isnan(v.difference.p) for v in self.verdicts.values()) or any(
            not math.isnan(low) for low, _ in self.intervals.values())


def _val_key(config: _Config, better: bool) -> tuple:
    """Best mean validation score first; rows without one last."""
    val = config.mean("val_score")
    return (1, 0.0) if math.isnan(val) else (0, -val if better else val)


def _analyse(configs: list[_Config], better: bool, margin: float) -> _Analysis | None:
    """Best row by mean validation score among the rows with every seed (the test split never picks it);
    `stats.compare_with_best` for the others, `stats.tiers`, `stats.bootstrap_interval` per row.

    Rows with a failed, diverged or missing seed come after the complete rows, in the order given
    to `stats.tiers` too, so a tier's reference is always a complete row when there is one.  Where
    per-example outcomes cannot be paired (splits of different lengths, a score that is not the mean
    of its outcomes), every row of the task falls back to seeds only, and the note says why."""
    scored = [c for c in configs if len(c.ok)]
    if not scored:
        return None
    order = sorted(scored, key=lambda c: (not c.complete, _val_key(c, better)))  # stable: grid order on ties
    keys = [id(c) for c in order]
    samples = {id(c): c.sample() for c in order}
    problem = None
    lengths = {len(o) for s in samples.values() if s.outcomes for o in s.outcomes.values()}
    if len(lengths) > 1:
        problem = f"the runs' test outcomes differ in length ({', '.join(str(n) for n in sorted(lengths))} examples)"
    for attempt in range(2):
        if problem:
            samples = {k: stats.Sample(scores=s.scores) for k, s in samples.items()}
        try:
            options = dict(higher_is_better=better, margin=margin, alpha=ALPHA, n_boot=N_BOOT, rng_seed=RNG_SEED)
            tiers = stats.tiers(keys, samples, **options)
            verdicts = stats.compare_with_best(keys[0], samples, **options)
            intervals = {k: stats.bootstrap_interval(samples[k], level=LEVEL, n_boot=N_BOOT, rng_seed=RNG_SEED)
                         for k in keys}
            break
        except ValueError as exc:  # outcomes that do not fit their scores
            if attempt or problem:
                raise
            problem = str(exc)
    position = {k: i for i, k in enumerate(keys)}
    rows = sorted(order, key=lambda c: (not c.complete, tiers[id(c)], position[id(c)]))
    return _Analysis(rows=rows, best=order[0], verdicts=verdicts, tiers=tiers, intervals=intervals,
                     examples=sum(s.outcomes is not None for s in samples.values()), outcome_problem=problem)


def _verdict_cell(analysis: _Analysis, config: _Config) -> str:
    """`best (by val)`, or the verdict with the difference from the best and its 95% interval, in points."""
    if config is analysis.best:
        return BEST
    v = analysis.verdicts[id(config)]
    d = v.difference
    if math.isnan(d.diff):
        return DASH
    text = f"{v.verdict} {_points(d.diff)}"
    if not (math.isnan(d.low) or math.isnan(d.high)):
        text += f" [{_points(d.low)}, {_points(d.high)}]"
    return text


def _interval_cell(analysis: _Analysis, config: _Config) -> str:
    low, high = analysis.intervals[id(config)]
    return DASH if math.isnan(low) or math.isnan(high) else f"[{low:.3f}, {high:.3f}]"


# --------------------------------------------------------------------------- markdown


def _arrow(higher_is_better: bool) -> str:
    return UP if higher_is_better else DOWN


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---" if h in TEXT_COLUMNS else "---:" for h in headers]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _with_memory(table: pd.DataFrame) -> pd.DataFrame:
    """The table with MEMORY_COLUMN: each run's memory column, the measure its `memory_kind` names
    (the device peak on a GPU, train_state_mb on CPU, the peak RSS for CPU runs older than train_state_mb)."""
    kinds = table["memory_kind"] if "memory_kind" in table.columns else pd.Series(None, index=table.index, dtype=object)
    values = [_number(table.at[i, m]) if m in table.columns else math.nan
              for i, m in zip(table.index, (measures.memory_measure(_text(k)) for k in kinds))]
    return table.assign(**{MEMORY_COLUMN: pd.Series(values, index=table.index, dtype="float64")})


def _kinds(configs: list[_Config]) -> list[str]:
    return sorted({k for c in configs for k in c.finished["memory_kind"].dropna()})


def _subject(kind: str) -> str:
    return MEMORY_KINDS[kind].subject if kind in MEMORY_KINDS else "peak memory"


def _memory_note(configs: list[_Config]) -> tuple[str, bool]:
    """The footnote for the memory column, and whether kinds are mixed (then each cell says its kind)."""
    kinds = _kinds(configs)
    if not kinds:
        return "", False

    def describe(kind: str) -> str:
        return MEMORY_KINDS[kind].description if kind in MEMORY_KINDS else "as logged by the run"

    if len(kinds) == 1:
        return f"† {_subject(kinds[0])} is `{kinds[0]}`: {describe(kinds[0])}.", False
    subjects = {_subject(k) for k in kinds}
    subject = subjects.pop() if len(subjects) == 1 else "memory"
    described = "; ".join(f"`{k}`: {describe(k)}" for k in kinds)
    return f"† {subject} was measured in different ways (compare only rows of the same kind): {described}.", True


def _memory_measures(configs: list[_Config]) -> set[str]:
    return {measures.memory_measure(k) for k in _kinds(configs)}


def _memory_header(configs: list[_Config]) -> str:
    shown = _memory_measures(configs) or {"peak_memory_mb"}
    return (_header(shown.pop()) if len(shown) == 1 else f"memory (MB) {DOWN}") + " †"


def _memory_cell(config: _Config, mixed: bool) -> str:
    shown = _memory_measures([config])
    value = config.mean(MEMORY_COLUMN)
    text = _format(shown.pop(), value) if len(shown) == 1 else _integer(value)
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
    runnable = [c for c in cells if c.runnable]
    searching = [c for c in runnable if not c.search_from and c.space] or [c for c in runnable if not c.search_from]
    budgets = sorted({c.trials for c in searching}) or [1]
    n = str(budgets[0]) if len(budgets) == 1 else f"{budgets[0]}–{budgets[-1]}"
    names = _space_names(cells)
    reruns = [c for c in runnable if c.search_from]
    if reruns:
        by_id = {c.id: c for c in cells}
        first = sorted({by_id[c.search_from].seed for c in reruns})
        protocol = (f"Protocol first_seed: seed {', '.join(map(str, first))} searches, {n} trials per cell, and the trial "
                    f"with the best validation score stands for it; every other seed runs once with that trial's values "
                    f"(its interval therefore leaves out the search's own noise).")
    else:
        protocol = (f"Each row is the best of {n} trials per cell by validation score (every seed searches); the test "
                    f"score is that trial's.")
    space = (f"  Searched: {', '.join(names)} (an `lr` the suite does not name is searched in each method's own "
             f"registry range, `python -m harness methods`).") if names else ""
    return (f"_{protocol}{space}  `trials` is finished trials / budget summed over the row's seeds; `best "
            f"hyperparameters` are the chosen trials' values (where seeds chose differently, all are listed; per seed "
            f"in `runs.csv`)._")


def _pareto_section(configs: list[_Config], prepared: pd.DataFrame, metric: str, better: bool) -> tuple[list[str], set]:
    """Every FINISHED trial of the task's cells that no other one beats on both validation score and
    memory (each run's memory column, as the search's objective: runner.objective_values); returns the
    lines and the run ids shown."""
    lines = ["### Pareto front: validation score vs peak memory", "",
             f"_Every finished trial of this task that no other finished trial beats on both counts (a val "
             f"{metric} at least as good with no more peak memory, and better in one): along the front, more "
             f"validation score costs more memory.  Lowest memory first; the test score is shown, not used._", ""]
    # a run's row: its cell at the precision it resolved to, else (one precision for the row) its cell's only row
    exact = {(c.id, c.precision or ""): config for config in configs for c in config.cells if c.runnable}
    by_cell: dict[str, _Config] = {}
    for config in configs:
        for c in config.cells:
            if c.runnable:
                by_cell.setdefault(c.id, config)
    cells = {c.id: c for config in configs for c in config.cells}
    trials = prepared[prepared["_finished"] & prepared["cell_id"].isin(by_cell)] if len(prepared) else prepared
    kind_of = (lambda run: _text(run.get("memory_kind"))) if "memory_kind" in trials.columns else (lambda run: None)
    if len(trials):
        shown_by = [(measures.memory_measure(kind_of(run)), run) for _, run in trials.iterrows()]
        trials = trials.assign(_measure=[m for m, _ in shown_by], _mem=[_number(run.get(m)) for m, run in shown_by])
        trials = trials[trials["_val"].notna() & trials["_mem"].notna()]
    if not len(trials):
        return lines + ["_No finished trials with both a validation score and a peak memory yet._"], set()
    score = (trials["_val"] if better else -trials["_val"]).tolist()
    memory = trials["_mem"].tolist()
    front = [i for i in range(len(trials)) if not any(
        score[j] >= score[i] and memory[j] <= memory[i] and (score[j] > score[i] or memory[j] < memory[i])
        for j in range(len(trials)))]
    front.sort(key=lambda i: (memory[i], -score[i], -trials["_started"].iloc[i]))
    space = _space_names(cells.values())
    shown = _distinct(trials["_measure"].iloc[front])
    kinds = _distinct(kind_of(trials.iloc[i]) for i in front)
    headers = ["method", "rank", "quant", "seed", "hyperparameters", f"val {metric} {_arrow(better)}", f"test {metric}",
               _header(shown[0]) if len(shown) == 1 else f"memory (MB) {DOWN}"]
    body = []
    for i in front:
        run = trials.iloc[i]
        config = exact.get((run["cell_id"], run["_precision"])) or by_cell[run["cell_id"]]
        c = cells[run["cell_id"]]
        memory_text = _format(run["_measure"], memory[i]) + (f" ({kind_of(run)})" if len(shown) > 1 else "")
        body.append([config.method, config.rank, config.quant, str(c.seed), _hyperparameters([run.get("search_values")], space),
                     _fixed(run["_val"], 3), _fixed(_number(run.get("test_score")), 3), memory_text])
    lines += _table(headers, body)
    if len(shown) > 1:
        lines += ["", f"_Memory was measured in different ways ({', '.join(map(str, kinds))}): compare with care._"]
    return lines, {_text(trials["run_id"].iloc[i]) for i in front if "run_id" in trials.columns}




def _outcomes_note(analysis: _Analysis, metric: str) -> str:
    """How the bootstrap resamples this task, in words."""
    n = len(analysis.rows)
    seeds = max(len(c.rows) for c in analysis.rows)
    rough = f"; with {seeds} seeds, a seeds-only bootstrap is optimistic, so read its verdicts as rough" if seeds < 5 else ""
    if analysis.outcome_problem:
        return f"seeds only, as the per-example test outcomes were set aside ({analysis.outcome_problem}){rough}"
    if analysis.examples == n:
        return "seeds and test examples (one draw of the test split per resample, shared by the rows compared)"
    if _per_example(metric) is False:
        return f"seeds only, as {metric} is not a mean of per-example outcomes{rough}"
    if analysis.examples == 0:
        return f"seeds only, as these runs logged no per-example test outcomes (`test_outcomes`){rough}"
    return ("seeds and test examples where both rows logged per-example test outcomes (`test_outcomes`), "
            f"seeds only where one did not{rough}")


def _per_example(metric: str) -> bool | None:
    """Whether the metric is a mean of per-example 0/1 outcomes; None for a metric the harness does not know."""
    from harness.metrics import METRICS, outcomes

    if metric not in METRICS:
        return None
    return outcomes(metric, [0], [0]) is not None


def _stats_note(analysis: _Analysis, metric: str, better: bool, margin: float) -> str:
    if not analysis.testable:
        return (f"_One seed per row and no per-example test outcomes: plain numbers, with no interval, no verdict "
                f"and no tiers (list more `training.seeds` in the suite for them).  Rows are sorted by mean "
                f"validation {metric}; the test split never picks the order._")
    others = len(analysis.rows) - 1
    incomplete = [c for c in analysis.rows if not c.complete]
    seeds = max(len(c.rows) for c in analysis.rows)
    points = f"{100 * margin:g}"
    margin_text = f"±{points} point{'' if points == '1' else 's'}"
    note = (f"_`{BEST}`: the row with the {'highest' if better else 'lowest'} mean validation {metric} among the rows "
            f"whose seeds all finished; its test score is reported, and the test split never picks it.  "
            f"`test {metric}`: mean over the row's finished seeds (`seeds ok`); `95% interval`: percentile bootstrap "
            f"interval of that mean.  `vs best`: the row's test {metric} minus the best row's, in points "
            f"(0.01 = 1 point), over the seeds both finished, with its 95% paired-bootstrap interval: the same seeds "
            f"and test examples are drawn for both rows.  Verdicts: `worse` (or `better`) when the difference's "
            f"p-value, Holm-corrected over the {others} comparison{'s' if others != 1 else ''} with the best row, is "
            f"below {ALPHA}; `≈` when its 90% interval lies within {margin_text} (the margin, `--margin {margin:g}`); "
            f"`inconclusive` otherwise: these data cannot tell.  The bootstrap ({N_BOOT:,} resamples) draws "
            f"{_outcomes_note(analysis, metric)}.  `tier` 1: the best row and every row not shown worse than it; "
            f"tier 2: the same among the rest, from the best remaining row by validation; and so on.  Rows sort by "
            f"tier, then by mean validation {metric}.")
    if incomplete:
        note += (f"  Rows with a failed, diverged or missing seed (`seeds ok` below {seeds}) come after every row with "
                 f"all its seeds, whatever their tier: their mean covers only the seeds that survived.")
    return note + "_"


def _quality_table(analysis: _Analysis, metric: str, better: bool, searched: bool, cells_space: list[str]) -> list[str]:
    configs = analysis.rows
    tested = analysis.testable
    note, mixed = _memory_note(configs)
    # harness.measures.QUALITY_COLUMNS; a GPU-only measure where some row has it
    columns = [n for n in measures.QUALITY_COLUMNS if n == measures.MEMORY or not measures.BY_NAME[n].gpu_only
               or any(c.finished[n].notna().any() for c in configs)]
    headers = ["method", "rank", "quant", "tier", _header("test_score", metric, better), "95% interval", "vs best",
               "seeds ok"] + [_memory_header(configs) if n == measures.MEMORY else _header(n, metric, better)
                              for n in columns]
    if not tested:
        for h in ("tier", "95% interval", "vs best"):
            headers.remove(h)
    if searched:
        headers += ["trials", "best hyperparameters"]
    body = []
    for c in configs:
        row = [c.method, c.rank, c.quant]
        if tested:
            row += [str(analysis.tiers[id(c)]), _format("test_score", c.mean("test_score")), _interval_cell(analysis, c),
                    _verdict_cell(analysis, c)]
        else:
            row += [_format("test_score", c.mean("test_score"))]
        row += [c.seeds_ok()] + [_memory_cell(c, mixed) if n == measures.MEMORY else _format(n, c.mean(n))
                                 for n in columns]
        if searched:
            row += [_trials_cell(c), _hyperparameters(c.finished["search_values"], cells_space)]
        body.append(row)
    return _table(headers, body) + (["", note] if note else [])


def _envelope(c: _Config, name: str) -> str:
    """" [low, high]": the widest of the row's seeds' intervals of `name`; "" for runs logged without them."""
    low, high = (c.finished[f"{name}_{end}"].dropna() if f"{name}_{end}" in c.finished.columns else pd.Series(dtype=float)
                 for end in ("low", "high"))
    if low.empty or high.empty:
        return ""
    return f" [{_format(name, low.min())}, {_format(name, high.max())}]"


def _inference_table(configs: list[_Config]) -> list[str]:
    """Latency and adapter load/switch, same row order as the quality table."""
    columns = measures.INFERENCE_COLUMNS
    headers = ["method", "rank", "quant"] + [_header(n) for n in columns]
    body = []
    for c in configs:
        cells = {n: _format(n, c.mean(n)) for n in columns}
        for n in ("latency_overhead", "latency_overhead_merged"):
            cells[n] += _envelope(c, n)
        if cells.get("latency_merged_ms") == DASH:
            reasons = _distinct(c.finished["merge"]) if "merge" in c.finished.columns else []
            cells["latency_merged_ms"] = f"n/a: {reasons[0]}" if reasons else DASH
        body.append([c.method, c.rank, c.quant] + [cells[n] for n in columns])
    quants = list(dict.fromkeys(c.quant for c in configs))
    base = {q: stats.summarize(x for c in configs if c.quant == q for x in c.finished["latency_base_ms"].dropna()).mean
            for q in quants}
    base_text = ", ".join(f"{_sig(ms, 3)} ms/sample" + (f" ({q})" if len(quants) > 1 else "") for q, ms in base.items())
    note = (f"_Latency: one forward pass per sample at batch size 1 over the first {measures.LATENCY_EXAMPLES} test "
            f"examples, the trained model and a fresh copy of the base timed alternately after training "
            f"({measures.LATENCY_ROUNDS} rounds), mean of the row's "
            f"seeds; the base takes {base_text} on the same workers.  Overhead = the median over the rounds of "
            f"adapted (or merged) pass / base pass, mean of the seeds; in brackets the lowest and highest end of the "
            f"seeds' order-statistic intervals (96.9% each), so a bracket holding 1.00 shows no measurable overhead.  "
            f"Adapter load: one task's stored weights from disk onto the base resident on the device; switch: serve "
            f"the other task with both tasks' weights resident (see the README's definitions)._")
    return _table(headers, body) + ["", note]


def _task_section(suite: Suite, task, configs: list[_Config], analysis: _Analysis | None, higher: bool | None,
                  margin: float, searched: bool = False, pareto: pd.DataFrame | None = None,
                  plots: Mapping[str, str] | None = None) -> tuple[list[str], set]:
    """The task's lines, and the run ids of the Pareto front's trials (when `pareto` holds the runs).

    `plots`: kind -> path relative to the leaderboard, embedded under the tables."""
    metric = task.metric
    better = True if higher is None else higher
    lines = [f"## {task.name} ({metric})", ""]
    if higher is None:
        lines += [f"_The direction of `{metric}` is unknown to the harness: sorted as if higher is better._", ""]
    if searched:
        lines += [_search_note([c for config in configs for c in config.cells]), ""]
    if analysis is not None:
        space = _space_names(c for config in configs for c in config.cells)
        lines += [_stats_note(analysis, metric, better, margin), ""]
        lines += _quality_table(analysis, metric, better, searched, space)
        lines += _overlap_lines(configs)
        lines += ["", f"### Inference cost ({task.name})", "", *_inference_table(analysis.rows)]
    else:
        lines += ["_No finished runs for this task yet._", *_overlap_lines(configs)]
    for kind, path in (plots or {}).items():
        lines += ["", f"![{task.name}: {PLOT_TITLES[kind]}]({path})"]
    shown: set = set()
    if pareto is not None:
        front, shown = _pareto_section(configs, pareto, metric, better)
        lines += ["", *front]
    issues = _not_comparable(suite, configs)
    if issues:
        lines += ["", "**Not comparable** (no row, or fewer seeds in `seeds ok`):", "", *issues]
    return lines + [""], shown


def _overlap_lines(configs: list[_Config]) -> list[str]:
    """Under a task's table, where its runs logged train inputs repeated in validation or test
    (`data.dup_train_*`, harness.data.overlap): the counts, and what they mean for the scores."""
    rows = [c.rows for c in configs if len(c.rows)]
    table = pd.concat(rows) if rows else pd.DataFrame()
    found = []
    for column in DUPLICATES:
        counts = sorted({int(v) for v in table[column].dropna()}) if column in table.columns else []
        if any(counts):
            found.append(f"{' / '.join(map(str, counts))} {column.removeprefix('data.dup_train_')}")
    if not found:
        return []
    return ["", f"**Data overlap:** {' and '.join(found)} row(s) repeat a train input (matched after collapsing "
                f"whitespace and ignoring case), so on them a score can be recall rather than generalisation; "
                f"`data.on_overlap: error` in the suite refuses such data."]


def _overall_section(suite: Suite, configs: list[_Config], analyses: Mapping[str, _Analysis | None]) -> list[str]:
    """One row per configuration across tasks: its tier on each task and their mean."""
    tasks = [t.name for t in suite.tasks]
    rows: dict[str, _Config] = {}
    tier_of: dict[str, dict[str, _Config]] = {}
    for c in configs:
        rows.setdefault(c.label, c)
    for task in tasks:
        analysis = analyses.get(task)
        for c in analysis.rows if analysis is not None else []:
            tier_of.setdefault(c.label, {})[task] = c
    if not tier_of:
        return []
    tested = any(a is not None and a.testable for a in analyses.values())
    labels = [label for label in rows if label in tier_of]
    means = {label: math.fsum(analyses[t].tiers[id(c)] for t, c in tier_of[label].items()) / len(tier_of[label])
             for label in labels}
    first = {label: i for i, label in enumerate(labels)}
    position = {id(c): i for a in analyses.values() if a is not None for i, c in enumerate(a.rows)}
    place = {label: math.fsum(position[id(c)] for c in tier_of[label].values()) / len(tier_of[label]) for label in labels}  # mean position in the task tables: breaks ties as those tables do
    order = sorted(labels, key=lambda label: (-len(tier_of[label]), means[label], place[label], first[label]))

    def tier_cell(task: str, label: str) -> str:
        c = tier_of[label].get(task)
        if c is None:
            return DASH
        return str(analyses[task].tiers[id(c)]) + ("" if c.complete else f" ({c.seeds_ok()})")

    headers = ["method", "rank", "quant", f"mean tier {DOWN}", "tasks"] + [f"{t} (tier)" for t in tasks]
    body = []
    for label in order:
        c = rows[label]
        body.append([c.method, c.rank, c.quant, _fixed(means[label], 2), f"{len(tier_of[label])}/{len(tasks)}"]
                    + [tier_cell(t, label) for t in tasks])
    note = ("_Per task, rows fall into tiers (see each task's note): tier 1 is the task's best row by validation "
            "score and every row the paired bootstrap could not show worse than it; tier 2 the same among the rest; "
            "and so on.  This table averages each configuration's tier over the tasks where it has a row (lower is "
            "better); rows on fewer tasks come last; equal means go by the rows' mean position in the task tables.  Rows in one tier could not be told "
            "apart on that task: a tier is not a rank, and a noisy row can sit in tier 1 because nothing showed it "
            "worse.  A tier marked like (2/3) rests on the seeds that finished there._")
    if not tested:
        note = ("_One seed per row and no per-example test outcomes on any task: nothing could be told apart, so "
                "every row is in tier 1 (list more `training.seeds` in the suite to compare rows)._")
    return ["## Overall: tiers over tasks", "", note, "", *_table(headers, body), ""]


def _plot_points(analysis: _Analysis) -> list:
    from harness.plots import PlotPoint

    points = []
    for c in analysis.rows:
        low, high = analysis.intervals[id(c)]
        points.append(PlotPoint(label=c.label, method=c.cells[0].method, rank=c.cells[0].rank, quant=c.quant,
                                score=c.mean("test_score"), score_err=math.nan, memory_mb=c.mean(MEMORY_COLUMN),
                                trainable_params=c.mean("trainable_params"), tokens_per_s=c.mean("tokens_per_s"),
                                score_low=low, score_high=high))
    return points


def write_plots(suite: Suite, analyses: Mapping[str, _Analysis | None], higher_by_task: Mapping[str, bool],
                out_dir: Path) -> dict[str, dict[str, str]]:
    """Each task's PNG plots under out_dir/plots; task -> kind -> path relative to out_dir."""
    from harness.plots import write_task_plots

    written: dict[str, dict[str, str]] = {}
    for task in suite.tasks:
        analysis = analyses.get(task.name)
        if analysis is None:
            continue
        kinds = _kinds(analysis.rows)
        labels = {MEMORY_KINDS[k].plot_label if k in MEMORY_KINDS else "peak training memory" for k in kinds}
        label = labels.pop() if len(labels) == 1 else "training memory" if labels else "peak training memory"
        memory = f"{label} (MB{', ' + kinds[0] if len(kinds) == 1 else ''})"
        paths = write_task_plots(task.name, f"test {task.metric}", higher_by_task.get(task.name, True),
                                 _plot_points(analysis), out_dir / "plots", memory_label=memory)
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
    """Footer: what produced the numbers, from the runs shown (several values are all listed).  Nothing
    here depends on when the report is made, so rebuilding it from runs.csv gives the same text."""
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
    packages = [c[len("version."):] for c in _version_columns(used.columns)]
    if packages:
        lines.append("- packages: " + "; ".join(f"{p} {' / '.join(values('version.' + p)) or 'unknown'}" for p in packages))
    else:
        lines.append("- packages: unknown")
    lines.append(f"- device: {show(values('device'))}")
    if values("precision"):  # runs.csv files from before the column have none
        lines.append(f"- precision (as resolved on the device): {show(values('precision'))}")
    models = values("model")
    lines.append(f"- model: {show(models or [suite.model.describe()])}, fingerprint {show(values('model_fingerprint'))}")
    if "data_fingerprint" in used.columns and "task" in used.columns:
        def sources(t: str) -> str:  # a hub dataset's resolved commit
            found = _distinct(used.loc[used["task"] == t, "data_source"]) if "data_source" in used.columns else []
            return f" from {show(found)}" if found else ""

        per_task = [f"{t} {show(_distinct(used.loc[used['task'] == t, 'data_fingerprint']))}{sources(t)}"
                    for t in _distinct(used["task"])]
        lines.append("- data fingerprints: " + "; ".join(per_task))
    else:
        lines.append("- data fingerprints: unknown")
    lines.append(f"- forgetting probe fingerprint: {show(values('probe_fingerprint'))}")
    started = pd.to_numeric(used["start_time"], errors="coerce").dropna() if "start_time" in used.columns else pd.Series()
    if len(started):
        first, last = (datetime.fromtimestamp(float(t) / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M") for t in
                       (started.min(), started.max()))
        lines.append(f"- runs started: {first} to {last} UTC" if first != last else f"- runs started: {first} UTC")
    return lines


def _leaderboard(suite: Suite, cells: list[Cell], table: pd.DataFrame, metric_higher_is_better: Mapping[str, bool],
                 out_dir: Path | None, margin: float, stale: list[str]) -> str:
    """The leaderboard of a runs.csv table as `read_runs_csv` reads it (the one code path of every report)."""
    by_task = higher_by_task(suite, metric_higher_is_better)
    table = _with_memory(table)
    selected = table[table["chosen"]].reset_index(drop=True)
    searched = _searched(suite, cells)
    pareto = _prepare(table) if "peak_memory" in suite.search.objectives else None
    n_seeds = len(suite.training.seeds)
    lines = [f"# {suite.name} leaderboard", ""]
    if suite.description:
        lines += [suite.description.strip(), ""]
    lines += [
        f"Model: `{suite.model.describe()}` · task type: {suite.task_type} · "
        f"{n_seeds} seed{'s' if n_seeds != 1 else ''} per configuration",
        "",
        f"How to read: per task, one row per method × rank × quant.  The best row is the one with the best mean "
        f"validation score (`{BEST}`); every other row shows its test-score difference from it with a 95% interval "
        f"and a verdict (`worse`, `≈` within the margin, or `inconclusive` when the data cannot tell), and rows are "
        f"grouped into tiers of rows not shown worse than the tier's first.  {UP} higher is better, {DOWN} lower is "
        f"better; costs are means over the finished seeds (`seeds ok`); failed and n/a configurations are listed "
        f"under each task with the reason; every run is in `runs.csv` next to this file, and `python -m harness report "
        f"{_suite_path(suite)} --from-csv <that runs.csv>` rebuilds this file from it alone; every definition is in "
        f"the README.",
        "",
    ]
    if stale:
        lines += ["**Stale: runs.csv does not match the suite.**  Rerun the suite (`python -m harness run "
                  f"{_suite_path(suite)}`) to bring the results up to date.", "", *[f"- {s}" if not s.startswith("  ")
                                                                                    else s for s in stale], ""]
    # runs_table made one chosen row per cell and resolved precision, in grid order
    by_id = {c.id: c for c in cells}
    row_cells = _resolve_precision([(by_id[cid], _text(p)) for cid, p in zip(selected["cell_id"], selected["precision"])])
    configs = _configs(row_cells, selected)
    analyses = {task.name: _analyse([c for c in configs if c.task == task.name], by_task.get(task.name, True), margin)
                for task in suite.tasks}
    plots = write_plots(suite, analyses, by_task, Path(out_dir)) if out_dir is not None else {}
    lines += _overall_section(suite, configs, analyses)
    front_ids: set = set()
    for task in suite.tasks:
        mine = [c for c in configs if c.task == task.name]
        section, shown = _task_section(suite, task, mine, analyses[task.name], metric_higher_is_better.get(task.metric),
                                       margin, searched, pareto, plots.get(task.name))
        lines += section
        front_ids |= shown
    used_ids = set(selected["run_id"].dropna()) | front_ids
    used = table[table["run_id"].isin(used_ids)]
    lines += _provenance(suite, used)
    return "\n".join(lines) + "\n"


def build_leaderboard(suite: Suite, cells: list[Cell], runs: pd.DataFrame | None,
                      metric_higher_is_better: Mapping[str, bool], out_dir: Path | None = None,
                      margin: float = DEFAULT_MARGIN, stale: list[str] | None = None) -> str:
    """The leaderboard as markdown: header, overall tiers, one section per task, provenance footer.

    `runs`: MLflow's runs (`harness.track.load_runs`) or a runs.csv read back (`read_runs_csv`).
    They pass through runs.csv's text first, so both give the same leaderboard.  With `out_dir`,
    each task's plots are written under out_dir/plots and embedded."""
    table = runs_table(cells, runs, higher_by_task(suite, metric_higher_is_better))
    table = read_runs_csv(io.StringIO(to_csv_text(table)))
    return _leaderboard(suite, cells, table, metric_higher_is_better, out_dir, margin, list(stale or []))


def _clear_plots(out_dir: Path) -> None:
    for old in (out_dir / "plots").glob("*.png"):  # plots of tasks or kinds no longer in the suite must not linger
        old.unlink()


def write_report(suite: Suite, cells: list[Cell], runs: pd.DataFrame | None, out_dir: Path,
                 metric_higher_is_better: Mapping[str, bool], margin: float = DEFAULT_MARGIN) -> Path:
    """Write out_dir/runs.csv, then out_dir/leaderboard.md and out_dir/plots/*.png from it (exactly as
    `report_from_csv` would); returns the leaderboard's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = runs_table(cells, runs, higher_by_task(suite, metric_higher_is_better))
    (out_dir / "runs.csv").write_bytes(to_csv_text(table).encode("utf-8"))
    board, _ = report_from_csv(suite, cells, out_dir / "runs.csv", out_dir, metric_higher_is_better, margin)
    return board


def report_from_csv(suite: Suite, cells: list[Cell], csv_path: Path, out_dir: Path,
                    metric_higher_is_better: Mapping[str, bool], margin: float = DEFAULT_MARGIN) -> tuple[Path, list[str]]:
    """Rebuild out_dir/leaderboard.md and its plots from a runs.csv alone (no MLflow); the CSV is copied
    there when out_dir is another folder.  Returns the leaderboard's path and why the CSV does not
    match the suite (empty when it does; the leaderboard then says it is stale).

    Rows are matched to the suite's cells by `cell_id`.  An older runs.csv (one row per cell, no
    `chosen`) works: each row is then its cell's only run."""
    csv_path, out_dir = Path(csv_path), Path(out_dir)
    runs = read_runs_csv(csv_path)
    if "cell_id" not in runs.columns or "status" not in runs.columns:
        raise ValueError(f"{csv_path} is not a runs.csv written by `harness report`: it has no cell_id and status columns")
    stale = stale_lines(cells, runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    if csv_path.resolve() != (out_dir / "runs.csv").resolve():
        shutil.copyfile(csv_path, out_dir / "runs.csv")
    _clear_plots(out_dir)
    board = out_dir / "leaderboard.md"
    text = build_leaderboard(suite, cells, runs, metric_higher_is_better, out_dir, margin, stale)
    board.write_bytes(text.encode("utf-8"))
    return board, stale
