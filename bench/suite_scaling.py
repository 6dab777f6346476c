"""The quickstart's wall time on this machine, and how a suite's cost grows with its cells.

Suites generated from suites/quickstart.yaml with 1, 2, 3 and 6 cells (one seed, subsets
of its grid: 1 = LoRA r4, 2 = + LoRA r16, 3 = + full fine-tuning, 4 = + LoRA r1,
5 = + LoRA r8 int8, 6 = + LoRA r8 NF4 = the whole grid at seed 0; `full nf4` is n/a and
is no trial), then the real suites/quickstart.yaml (6 configurations x 3 seeds = 18
trials).  `python -m harness validate` checks that each expands to the cells expected.
Each runs as the real `python -m harness run` command (one worker) in a fresh temporary
directory: its own MLflow SQLite store, Optuna journal and token cache.

    python bench/suite_scaling.py [--cells 1,2,3,6] [--quickstart/--no-quickstart] [--quick]

A least-squares line wall = a + b x trials over the rows gives the fixed cost of a
command (a) and the cost of a trial (b); each row shows measured / fitted.  The runs must
exit 0 and complete each cell exactly once, else the benchmark stops.  The table is
printed and written to results/bench/suite-scaling.md (--out).
"""
from __future__ import annotations

import argparse
import copy
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scheduling import ROOT  # noqa: E402
from trial_cost import (PHASES, QUICKSTART, Command, bench_env, load_average, machine_line, run_harness,  # noqa: E402
                        validate_count, write_out)

# Cells added one at a time, in this order: (method, rank, quants).  A group counts as one cell
# however many quants it lists: `full` keeps the quickstart's [none, nf4], and nf4 is n/a for it.
ORDER = [("lora", 4, ("none",)), ("lora", 16, ("none",)), ("full", None, ("none", "nf4")), ("lora", 1, ("none",)),
         ("lora", 8, ("int8",)), ("lora", 8, ("nf4",))]
TINY = {"tiny": {"architecture": "bert", "hidden_size": 32, "layers": 2, "heads": 2}}


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def subset_grid(grid: list[dict], n: int) -> list[dict]:
    """The quickstart's grid entries (their settings and training overrides kept) cut to the first n of ORDER."""
    chosen = {(m, r, q) for m, r, quants in ORDER[:n] for q in quants}
    out = []
    for entry in grid:
        ranks, quants = _as_list(entry.get("rank")), _as_list(entry.get("quant", "none"))
        keep_r = [r for r in ranks if any((entry["method"], r, q) in chosen for q in quants)]
        keep_q = [q for q in quants if any((entry["method"], r, q) in chosen for r in ranks)]
        if keep_r and keep_q:
            e = copy.deepcopy(entry)
            if "rank" in e:
                e["rank"] = keep_r
            if "quant" in e:
                e["quant"] = keep_q
            out.append(e)
    return out


def make_suite(n: int | None, quick: bool) -> dict:
    """n cells at seed 0 (None: the whole quickstart, every seed); --quick: a tiny random BERT, 5 steps, little data."""
    suite = yaml.safe_load(QUICKSTART.read_text())
    if n is not None:
        suite["name"] = f"bench-scaling-{n}"
        suite["grid"] = subset_grid(suite["grid"], n)
        suite["training"]["seeds"] = [0]
    if quick:
        suite["name"] = f"bench-scaling-{n or 'quickstart'}-quick"
        suite["model"] = copy.deepcopy(TINY)
        suite["training"] |= {"steps": 5, "warmup_steps": 1, "max_length": 32, "eval_batch_size": 32}
        for task in suite["tasks"]:
            task["data"] |= {"n_train": 64, "n_validation": 16, "n_test": 16}
        suite["probe"] = {**suite.get("probe", {}), "n_texts": 8, "max_length": 32}
    return suite


@dataclass
class Row:
    name: str
    cells: int  # runnable cells (configurations x seeds)
    cmd: Command

    @property
    def trials(self) -> int:
        return len(self.cmd.trials)

    @property
    def wall_s(self) -> float:
        return self.cmd.wall_s

    @property
    def outside_s(self) -> float:
        """Wall minus the trials' spans: start-up, gaps between trials, report."""
        return self.cmd.wall_s - self.cmd.spans_s


def run_row(n: int | None, quick: bool, keep: bool) -> Row:
    name = f"{n} cell{'s' if n != 1 else ''}" if n is not None else "quickstart"
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-scaling-{n or 'qs'}-"))
    env = bench_env(tmp / "token-cache")
    try:
        if n is None and not quick:
            suite_path = QUICKSTART  # the real file
        else:
            suite_path = tmp / "suite.yaml"
            suite_path.write_text(yaml.safe_dump(make_suite(n, quick), sort_keys=False))
        suite = yaml.safe_load(suite_path.read_text())
        total, runnable = validate_count(suite_path, env)
        want = n if n is not None else len(ORDER) * len(suite["training"]["seeds"])
        assert runnable == want, f"{name}: `harness validate` expands {suite_path} to {runnable} runnable cells, " \
                                 f"not {want}"
        print(f"[{name}] {runnable} trials ({total - runnable} n/a) in {tmp}", flush=True)
        t0 = time.perf_counter()
        cmd = run_harness(name, suite_path, tmp, env)
        print(f"[{name}] {time.perf_counter() - t0:.0f} s", flush=True)
        return Row(name, runnable, cmd)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def least_squares(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(a, b) of y = a + b x; needs two distinct x."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - b * mx, b


def render(rows: list[Row], command: str, machine: str, quick: bool) -> str:
    a, b = least_squares([r.trials for r in rows], [r.wall_s for r in rows])
    steps = yaml.safe_load(QUICKSTART.read_text())["training"]["steps"]
    model = "a tiny random BERT, 5 steps, 64 training examples (--quick)" if quick else \
        f"the quickstart's model, data and training: all-MiniLM-L6-v2, {steps} steps"
    lines = [
        "# Suite cost against its number of cells",
        "",
        f"`{command}`",
        "",
        f"Suites from `suites/quickstart.yaml` ({model}), each as the real `python -m harness run` command with one "
        "worker. n cells: the first n of LoRA r4, LoRA r16, full, LoRA r1, LoRA r8 int8, LoRA r8 NF4, seed 0 "
        "(`full nf4` is n/a: no trial); quickstart: all 6 x 3 seeds"
        + (" (with --quick's overrides)" if quick else " (the real file)") + ". Seconds.",
        "",
        "| suite | cells | trials | wall (s) | s per trial | trial spans (s) | mean trial span (s) "
        "| outside trials (s) | fitted a + b x trials (s) | measured / fitted | other processes' CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        fitted = a + b * r.trials
        lines.append(f"| {r.name} | {r.cells} | {r.trials} | {r.wall_s:.1f} | {r.wall_s / r.trials:.1f} | "
                     f"{r.cmd.spans_s:.1f} | {r.cmd.spans_s / r.trials:.1f} | {r.outside_s:.1f} | {fitted:.1f} | "
                     f"{r.wall_s / fitted:.2f} | {r.cmd.other_share:.0%} |")
    outside = statistics.fmean(r.outside_s for r in rows)
    lines += [
        "",
        f"Least squares over the {len(rows)} rows: **wall = {a:.1f} s + {b:.1f} s x trials** (a: fixed per command, "
        f"b: per trial). Directly measured, a command spends {outside:.1f} s outside its trials (mean over the rows: "
        "start-up before the first trial, the gaps between trials, the report after the last).",
        "",
        "wall: the whole command, start to exit. trial spans: the sum of each trial's Optuna datetime_start -> "
        "datetime_complete. outside trials = wall - trial spans. other processes' CPU: the share of the machine's cores that "
        "other processes used while the command ran (/proc/stat minus the command's own processes; near 0% on an idle "
        "machine, more inflates the times). A cell is one configuration x seed; without a "
        "search it is one trial. Trials differ by method (full fine-tuning and the quantized bases cost more per "
        "step than LoRA), so s per trial depends on the mix, and measured / fitted shows how far one line goes. "
        "Every run exited 0 and completed each cell exactly once (Optuna and MLflow).",
        "",
        "What one trial of each configuration took, over every row (Optuna span; the phases from its MLflow run):",
        "",
        "| configuration | trials | mean span (s) | min | max | load | training | evaluation | inference measurements "
        "| bookkeeping |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_config: dict[str, list] = {}
    for r in rows:
        for t in r.cmd.trials:
            by_config.setdefault(t.config, []).append(t)
    for config, trials in by_config.items():
        spans = [t.span_s for t in trials]
        mean = {p: statistics.fmean(t.metrics[p] for t in trials) for p in PHASES}
        lines.append(f"| {config} | {len(trials)} | {statistics.fmean(spans):.1f} | {min(spans):.1f} | {max(spans):.1f} | "
                     + " | ".join(f"{mean[p]:.1f}" for p in PHASES)
                     + f" | {statistics.fmean(t.span_s - t.phases_s for t in trials):.1f} |")
    lines += [
        "",
        machine,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default=None, help="cell counts, comma-separated, each 1-6 (default 1,2,3,6; --quick 1,3)")
    ap.add_argument("--quickstart", action=argparse.BooleanOptionalAction, default=None,
                    help="also run the real quickstart (18 trials, about 9 minutes on 2 cores; default yes, "
                         "--quick no)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: a tiny random BERT instead of all-MiniLM-L6-v2, 5 steps, 64 training examples")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "suite-scaling.md"),
                    help="markdown file for the table (default results/bench/suite-scaling.md); '' for none")
    ap.add_argument("--keep", action="store_true", help="keep each run's temporary directory (logs, journal, MLflow)")
    args = ap.parse_args(argv)
    try:
        counts = [int(c) for c in (args.cells or ("1,3" if args.quick else "1,2,3,6")).split(",") if c.strip()]
    except ValueError:
        ap.error(f"--cells takes comma-separated integers, got {args.cells!r}")
    quickstart = (not args.quick) if args.quickstart is None else args.quickstart
    if not counts or min(counts) < 1 or max(counts) > len(ORDER) or len(set(counts)) != len(counts):
        ap.error(f"--cells takes distinct counts from 1 to {len(ORDER)}")
    if len(set(counts) | ({18} if quickstart else set())) < 2:
        ap.error("the fit needs at least two different sizes: more --cells, or --quickstart")
    load = load_average()
    command = "python bench/suite_scaling.py " + shlex.join(
        (["--quick"] if args.quick else []) + ["--cells", ",".join(map(str, counts))]
        + ["--quickstart" if quickstart else "--no-quickstart"])
    t0 = time.perf_counter()
    rows = [run_row(n, args.quick, args.keep) for n in counts]
    if quickstart:
        rows.append(run_row(None, args.quick, args.keep))
    text = render(rows, command, machine_line(load, time.perf_counter() - t0, [r.cmd for r in rows]), args.quick)
    write_out(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
