"""Command line: `python -m harness run|validate|report|methods`.

Exit codes: 0 all good; 1 some cells failed (the rest ran and are reported);
2 the suite is invalid (nothing was trained and nothing was written to MLflow).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from harness.errors import SuiteError
from harness.grid import Cell, expand_grid
from harness.suite import Suite, load_suite


def validate_suite(path: str) -> tuple[Suite, list[Cell]]:
    """Every check that needs no model weights: structure, grid, data files and columns, probe, model location."""
    from harness import data, probe
    from harness.models import locate

    suite = load_suite(path)
    cells = expand_grid(suite)
    for i, task in enumerate(suite.tasks):
        data.check_task(task, suite.task_type, suite.file, f"tasks[{i}]")
    probe.check_probe(suite.probe, suite.file)
    if suite.model.tiny is None:
        locate(suite.model, suite.file)
    return suite, cells


def _grid_table(cells: list[Cell]) -> str:
    rows = [("#", "task", "method", "rank", "quant", "seed", "status")]
    for i, c in enumerate(cells, 1):
        rows.append((str(i), c.task, c.method, "-" if c.rank is None else str(c.rank), c.quant, str(c.seed),
                     "run" if c.runnable else f"n/a: {c.na_reason}"))
    widths = [max(len(r[k]) for r in rows) for k in range(6)]
    lines = ["  " + "  ".join(v.rjust(w) if k in (0, 3, 5) else v.ljust(w) for k, (v, w) in enumerate(zip(r, widths))) + "  " + r[6]
             for r in rows]
    lines.insert(1, "  " + "-" * (len(lines[0]) - 2))
    n = sum(c.runnable for c in cells)
    lines.append(f"{len(cells)} cells: {n} to run, {len(cells) - n} n/a")
    return "\n".join(lines)


def cmd_validate(args) -> int:
    suite, cells = validate_suite(args.suite)
    print(f"{suite.file}: valid (schema_version {suite.schema_version}, fingerprint {suite.fingerprint()})")
    print(f"model: {suite.model.describe()}  task type: {suite.task_type}")
    print(_grid_table(cells))
    return 0


def _results_dir(args, suite: Suite) -> Path:
    return Path(args.results) / suite.name


def _write_report(suite: Suite, cells: list[Cell], uri: str, out_dir: Path) -> Path:
    from harness import track
    from harness.metrics import METRICS
    from harness.report import write_report

    runs = track.load_runs(uri, suite.name)
    return write_report(suite, cells, runs, out_dir, {k: m.higher_is_better for k, m in METRICS.items()})


def cmd_run(args) -> int:
    from harness import track
    from harness.runner import provenance, run_cells

    suite, cells = validate_suite(args.suite)  # everything is checked before MLflow is touched
    uri = track.resolve_tracking_uri(args.tracking_uri)
    n = sum(c.runnable for c in cells)
    print(f"suite {suite.name}: {len(cells)} cells, {n} to run; tracking at {uri}", flush=True)
    inv = track.start_invocation(uri, suite.name, {"suite_fingerprint": suite.fingerprint(), "suite_file": suite.file,
                                                   "model": suite.model.describe(), **provenance()},
                                 {"suite.yaml": Path(suite.file).read_text(), "suite.resolved.json": suite.resolved_json()})
    t0 = time.perf_counter()
    status = "KILLED"
    try:
        outcomes = run_cells(suite, cells, inv, in_process=args.in_process)
        status = "FINISHED" if all(o.ok for o in outcomes) else "FAILED"
    finally:  # whatever happened, the report shows what was recorded and the parent run is closed
        out_dir = _results_dir(args, suite)
        board = _write_report(suite, cells, uri, out_dir)
        wall = time.perf_counter() - t0
        track.finish_invocation(inv, status, {"wall_time_s": wall},
                                {"report": str(board), "report/data": str(out_dir / "runs.csv")})
    print()
    print(board.read_text())
    failed = sum(not o.ok for o in outcomes)
    print(f"{len(outcomes)} cells in {wall:.0f} s ({failed} failed). Leaderboard: {board}; per-run table: {out_dir / 'runs.csv'}")
    print(f"Inspect runs: mlflow ui --backend-store-uri {uri}")
    return 0 if status == "FINISHED" else 1


def cmd_report(args) -> int:
    from harness import track

    suite, cells = validate_suite(args.suite)
    uri = track.resolve_tracking_uri(args.tracking_uri)
    board = _write_report(suite, cells, uri, _results_dir(args, suite))
    print(board.read_text())
    print(f"written: {board}")
    return 0


def cmd_methods(args) -> int:
    from methods import all_methods

    rows = [("name", "paper", "rank means", "task types", "quant", "mergeable")]
    for m in sorted(all_methods().values(), key=lambda m: m.name):
        rows.append((m.name, m.paper, m.rank_meaning or "-", ", ".join(sorted(m.task_types)),
                     ", ".join(sorted(m.quants)), "yes" if m.mergeable else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness", description="Benchmark PEFT methods on your model, data and hardware.")
    sub = p.add_subparsers(dest="command", required=True)
    tracking = dict(default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    r = sub.add_parser("run", help="run every cell of a suite, log to MLflow, write the leaderboard")
    r.add_argument("suite")
    r.add_argument("--tracking-uri", **tracking)
    r.add_argument("--results", default="results", help="directory for results/<suite>/ (default: results)")
    r.add_argument("--in-process", action="store_true", help="run cells in this process (debugging) instead of fresh workers")
    r.set_defaults(fn=cmd_run)
    v = sub.add_parser("validate", help="check a suite and print its expanded grid; runs nothing")
    v.add_argument("suite")
    v.set_defaults(fn=cmd_validate)
    rep = sub.add_parser("report", help="rebuild results/<suite>/ from MLflow")
    rep.add_argument("suite")
    rep.add_argument("--tracking-uri", **tracking)
    rep.add_argument("--results", default="results")
    rep.set_defaults(fn=cmd_report)
    m = sub.add_parser("methods", help="list registered methods and what each supports")
    m.set_defaults(fn=cmd_methods)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except SuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
