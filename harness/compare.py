"""`report --compare REF.csv --tolerance 5%`: check a new report against a reference.

Both files are `runs.csv` tables written by the report: every trial run, with `chosen`
marking the one run that stands for each cell (an older runs.csv without that column
has one row per cell, and every row counts).  Only chosen rows are compared: for each
task x configuration the mean over FINISHED seeds is compared, metric by metric, in the
metric's better direction (harness.measures): a regression is a value worse than the
reference's by more than the tolerance (relative, "5%", or absolute, "0.02"), for a
metric without a better direction (trainable_params, ...) a change either way by more
than it, or a configuration that
finished in the reference and has no finished seed now.  Configurations new in this
report, and improvements, are listed but never fail the check.  Ours because this is
a few lines of pandas over our own CSV format; no library does exactly this.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness import measures

DEFAULT_METRICS = ("test_score",)


@dataclass(frozen=True)
class Tolerance:
    value: float
    relative: bool

    def allows(self, new: float, ref: float, higher: bool | None) -> bool:
        """Whether `new` is no worse than `ref` by more than this (None: no direction, a change either way)."""
        worse_by = abs(new - ref) if higher is None else (ref - new) if higher else (new - ref)
        limit = self.value * abs(ref) if self.relative else self.value
        return worse_by <= limit + 1e-12

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"


def parse_tolerance(text: str) -> Tolerance:
    """'5%' -> relative 0.05; '0.02' -> absolute 0.02; ValueError with the accepted forms otherwise."""
    raw = text.strip()
    try:
        if raw.endswith("%"):
            value, relative = float(raw[:-1]) / 100, True
        else:
            value, relative = float(raw), False
    except ValueError:
        raise ValueError(f"--tolerance {text!r}: expected a percentage such as 5% or an absolute number such as 0.02") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"--tolerance {text!r}: must be a finite number >= 0")
    return Tolerance(value, relative)


def _key_columns(df: pd.DataFrame) -> list[str]:
    # `config` names a row on every task (method, rank, quant and differing settings); older files lack it
    return ["task", "config"] if "config" in df.columns else ["task", "method", "rank", "quant"]


def chosen_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that stand for their cells: `chosen` True; every row of an older runs.csv without the column."""
    if "chosen" not in df.columns:
        return df
    return df[df["chosen"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))]


def _means(df: pd.DataFrame, keys: list[str], metrics: tuple[str, ...]) -> pd.DataFrame:
    df = chosen_rows(df)
    finished = df[df["status"] == "FINISHED"]
    cols = [m for m in metrics if m in df.columns]
    numeric = finished[keys].astype(str).replace(r"\.0$", "", regex=True).assign(**{m: pd.to_numeric(finished[m], errors="coerce") for m in cols})
    return numeric.groupby(keys, sort=False)[cols].mean()


def _label(key: tuple) -> str:
    return " ".join(str(k) for k in key if str(k) not in ("", "nan", "<NA>", "-", "none"))


@dataclass(frozen=True)
class Comparison:
    lines: list[str]
    regressions: list[str]


def check_metrics(metrics: tuple[str, ...]) -> None:
    """ValueError naming the metrics that are no measure of harness.measures."""
    stray = measures.unknown(metrics)
    if stray:
        raise ValueError(f"unknown metric{'s' if len(stray) > 1 else ''} {', '.join(stray)}; known: "
                         f"{', '.join(measures.NAMES)}")


def compare_runs(new_csv: Path, ref_csv: Path, tolerance: Tolerance, metrics: tuple[str, ...] = DEFAULT_METRICS,
                 higher_by_task: dict[str, bool] | None = None) -> Comparison:
    check_metrics(metrics)
    new, ref = pd.read_csv(new_csv), pd.read_csv(ref_csv)
    for name, df in (("the new report", new), (str(ref_csv), ref)):
        missing = {"task", "status", "method"} - set(df.columns)
        if missing:
            raise ValueError(f"{name} is not a runs.csv written by `harness report`: no column {', '.join(sorted(missing))}")
    keys = _key_columns(new) if set(_key_columns(new)) <= set(ref.columns) else ["task", "method", "rank", "quant"]
    new_means, ref_means = _means(new, keys, metrics), _means(ref, keys, metrics)
    lines, regressions = [], []
    for key, ref_row in ref_means.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        label = _label(key)
        if key not in new_means.index:
            regressions.append(f"{label}: finished in the reference, no finished seed now")
            continue
        for metric in metrics:
            if metric not in ref_row or metric not in new_means.columns or pd.isna(ref_row[metric]):
                continue
            now, was = new_means.loc[key, metric], ref_row[metric]
            higher = ((higher_by_task or {}).get(key[0], True) if metric in ("test_score", "val_score")
                      else measures.direction(metric))
            change = f"{metric} {was:.4g} -> {now:.4g}" + (f" ({(now - was) / abs(was) * 100:+.1f}%)" if was else "")
            if pd.isna(now) or not tolerance.allows(now, was, higher):
                how = "changed" if higher is None else "worse"
                regressions.append(f"{label}: {change}, {how} by more than {tolerance}")
            else:
                lines.append(f"ok  {label}: {change}")
    for key in new_means.index:
        if key not in ref_means.index:
            lines.append(f"new {_label(key if isinstance(key, tuple) else (key,))}: not in the reference")
    return Comparison(lines, regressions)
