"""Command line: `python -m harness run|worker|validate|report|methods`.

Exit codes: 0 all good; 1 some trials failed (the rest ran and are reported; run the
same command again to retry them), or `report --compare` found a regression; 2 the
suite or a command-line option is invalid (nothing was trained and nothing was
written to MLflow).
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
    by_id = {c.id: c for c in cells}
    rows = [("#", "task", "method", "rank", "quant", "seed", "trials", "status")]
    for i, c in enumerate(cells, 1):
        trials = f"1 (rerun of seed {by_id[c.search_from].seed}'s choice)" if c.search_from else str(c.trials)
        rows.append((str(i), c.task, c.method, "-" if c.rank is None else str(c.rank), c.quant, str(c.seed), trials,
                     "run" if c.runnable else f"n/a: {c.na_reason}"))
    widths = [max(len(r[k]) for r in rows) for k in range(7)]
    lines = ["  " + "  ".join(v.rjust(w) if k in (0, 3, 5) else v.ljust(w) for k, (v, w) in enumerate(zip(r, widths))) + "  " + r[7]
             for r in rows]
    lines.insert(1, "  " + "-" * (len(lines[0]) - 2))
    n = sum(c.runnable for c in cells)
    trials = sum(c.trials for c in cells if c.runnable)
    lines.append(f"{len(cells)} cells: {n} to run, {len(cells) - n} n/a; {trials} trials")
    return "\n".join(lines)


def cmd_validate(args) -> int:
    suite, cells = validate_suite(args.suite)
    print(f"{suite.file}: valid (schema_version {suite.schema_version}, fingerprint {suite.fingerprint()})")
    print(f"model: {suite.model.describe()}  task type: {suite.task_type}")
    print(_grid_table(cells))
    return 0


def _results_dir(args, suite: Suite) -> Path:
    return Path(args.results) / suite.name


def _write_report(suite: Suite, cells: list[Cell], uri: str, out_dir: Path, margin: float | None = None) -> Path:
    from harness import track
    from harness.report import DEFAULT_MARGIN, write_report

    runs = track.load_runs(uri, suite.name)
    return write_report(suite, cells, runs, out_dir, _metric_directions(), DEFAULT_MARGIN if margin is None else margin)


def _metric_directions() -> dict[str, bool]:
    from harness.metrics import METRICS

    return {k: m.higher_is_better for k, m in METRICS.items()}


def _logs_dir(storage_url: str, study: str) -> Path:
    from harness.schedule import is_rdb

    base = Path.cwd() if is_rdb(storage_url) else Path(storage_url).resolve().parent
    return base / "harness-logs" / study


def cmd_run(args) -> int:
    return _schedule(args, final=True)


def cmd_worker(args) -> int:
    return _schedule(args, final=False)


def _schedule(args, final: bool) -> int:
    """`run` and `worker`: join (or create) the suite's study and work on it with local workers.

    `run` also closes the study's MLflow parent run and writes the report at the end;
    `worker` (more machines on a shared storage) only works.
    """
    from harness import schedule, track
    from harness.runner import execute_trial, provenance

    suite, cells = validate_suite(args.suite)  # everything is checked before MLflow is touched
    uri = track.resolve_tracking_uri(args.tracking_uri)
    storage = schedule.resolve_storage(args.storage, uri)
    plans = schedule.plan_workers(args.devices, args.per_device, args.workers)
    n_cells = sum(c.runnable for c in cells)
    n_trials = sum(c.trials for c in cells if c.runnable)
    where = "this process" if args.in_process else ", ".join(p.name for p in plans)
    print(f"suite {suite.name}: {len(cells)} cells, {n_cells} to run, {n_trials} trials; workers: {where}", flush=True)
    print(f"tracking at {uri}; study {schedule.study_name(suite)} in {storage}", flush=True)
    if not args.in_process:
        schedule.warm_up(plans)
    study, inv, notes = schedule.prepare(
        suite, cells, storage, uri,
        {"suite_fingerprint": suite.fingerprint(), "suite_file": suite.file, "model": suite.model.describe(), **provenance()},
        {"suite.yaml": Path(suite.file).read_text(), "suite.resolved.json": suite.resolved_json()})
    for note in notes:
        print(f"  {note}", flush=True)
    logs = _logs_dir(storage, study.study_name)
    t0 = time.perf_counter()
    status, prog = "KILLED", None
    procs: dict = {}
    try:
        if args.in_process:
            schedule.work(suite, cells, storage, uri, "main", execute_trial)
        else:
            print(f"worker logs: {logs}/", flush=True)

            def start(name: str):
                plan = next(p for p in plans if p.name == name)
                return schedule.start_worker(suite.file, storage, uri, plan, str(logs / f"{plan.name}.log"))

            procs = {p.name: start(p.name) for p in plans}
            schedule.live(study, cells, procs, start, uri, storage)
        prog = schedule.progress(study, cells)
        if prog.left and not args.in_process:
            print(f"{prog.left} trial(s) were not run: the workers stopped (see their logs in {logs}/); "
                  "run the same command again to go on", flush=True)
        status = "FINISHED" if prog.failed == 0 and prog.left == 0 and prog.running == 0 else "FAILED"
    except KeyboardInterrupt:
        print("\ninterrupted: stopping workers; their trials end KILLED and run again next time", flush=True)
        _stop_workers(procs)
        with schedule.storage_lock(storage):
            schedule.recover(study, uri)
        raise
    finally:
        if final:  # whatever happened, the report shows what was recorded and the parent run is closed
            out_dir = _results_dir(args, suite)
            board = _write_report(suite, cells, uri, out_dir)
            track.log_report(uri, inv.parent_run_id, out_dir)
            track.finish_invocation(inv, status, {"wall_time_s": time.perf_counter() - t0})
        elif prog is not None:  # a worker reopened the parent run; the queue is empty, so close it again
            track.finish_invocation(inv, status, {})
    wall = time.perf_counter() - t0
    if final:
        print()
        print(board.read_text())
    print(f"{prog.line(len(plans))} -- {wall:.0f} s")
    if final:
        print(f"Leaderboard: {board}; per-run table: {out_dir / 'runs.csv'}")
        print(f"Inspect runs: mlflow ui --backend-store-uri {uri}")
    return 0 if status == "FINISHED" else 1


def _stop_workers(procs: dict, grace_s: float = 30.0) -> None:
    """Ctrl-C reached the workers too (same process group); give them time to close their runs."""
    deadline = time.monotonic() + grace_s
    for p in procs.values():
        p.join(max(0.1, deadline - time.monotonic()))
        if p.is_alive():
            p.terminate()
            p.join(5)


def cmd_report(args) -> int:
    """Rebuild results/<suite>/ (or --out) from MLflow, or with --from-csv from a runs.csv alone."""
    import math

    from harness import compare

    if args.from_csv:  # no MLflow, no model or data: the suite's cells are all a rebuild needs
        suite = load_suite(args.suite)
        cells = expand_grid(suite)
        if not Path(args.from_csv).is_file():
            raise SuiteError(args.from_csv, "--from-csv", "a runs.csv written by `harness report`", args.from_csv,
                             "pass the path of a committed results/<suite>/runs.csv")
    else:
        suite, cells = validate_suite(args.suite)
    if not (math.isfinite(args.margin) and args.margin >= 0):
        raise SuiteError("<command line>", "--margin", "a score difference >= 0 (0.01 = 1 point)", args.margin,
                         "rows count as equivalent to the best when the difference's 90% interval lies within ±margin")
    tolerance = None
    if args.compare:
        if not Path(args.compare).is_file():
            raise SuiteError(args.compare, "--compare", "a runs.csv written by `harness report`", args.compare,
                             "pass the path of a committed results/<suite>/runs.csv")
        try:
            tolerance = compare.parse_tolerance(args.tolerance)
        except ValueError as exc:
            raise SuiteError("<command line>", "--tolerance", "a percentage (5%) or an absolute number (0.02)",
                             args.tolerance, str(exc)) from None
        try:
            compare.check_metrics(_metric_names(args.metrics))
        except ValueError as exc:
            raise SuiteError("<command line>", "--metrics", "comma-separated metric names (python -m harness methods "
                             "lists them)", args.metrics, str(exc)) from None
    out_dir = Path(args.out) if args.out else _results_dir(args, suite)
    if args.from_csv:
        from harness.report import report_from_csv

        try:
            board, stale = report_from_csv(suite, cells, Path(args.from_csv), out_dir, _metric_directions(), args.margin)
        except ValueError as exc:
            raise SuiteError(args.from_csv, "--from-csv", "a runs.csv written by `harness report`", args.from_csv,
                             str(exc)) from None
        new_csv = Path(args.from_csv)
    else:
        from harness import track

        uri = track.resolve_tracking_uri(args.tracking_uri)
        board, stale = _write_report(suite, cells, uri, out_dir, args.margin), []
        parent = track.latest_parent(uri, suite.name)
        if parent:
            track.log_report(uri, parent, out_dir)
        new_csv = out_dir / "runs.csv"
    print(board.read_text())
    print(f"written: {board}")
    if stale:
        print(f"warning: {args.from_csv} does not match {args.suite}; the leaderboard says it is stale:", file=sys.stderr)
        for line in stale:
            print(f"  {line}", file=sys.stderr)
    if tolerance is None:
        return 0
    from harness.report import higher_by_task

    higher = higher_by_task(suite, _metric_directions())
    metrics = _metric_names(args.metrics)
    result = compare.compare_runs(new_csv, Path(args.compare), tolerance, metrics, higher)
    print(f"\ncompared with {args.compare} (tolerance {tolerance}, metrics: {', '.join(metrics)}):")
    for line in result.lines:
        print(f"  {line}")
    for line in result.regressions:
        print(f"  REGRESSION {line}")
    if result.regressions:
        print(f"{len(result.regressions)} regression(s) against {args.compare}", file=sys.stderr)
        return 1
    print("no regression")
    return 0


def _metric_names(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


def cmd_methods(args) -> int:
    from harness.measures import MEASURES
    from methods import all_methods

    rows = [("name", "paper", "rank means", "task types", "quant", "mergeable", "lr searched")]
    for m in sorted(all_methods().values(), key=lambda m: m.name):
        rows.append((m.name, m.paper, m.rank_meaning or "-", ", ".join(sorted(m.task_types)),
                     ", ".join(sorted(m.quants)), "yes" if m.mergeable else "no", _lr_range_text(m.lr_range)))
    _print_table(rows)
    print("\nmeasured for every method, defined the same way for each (harness/measures.py, the README's metric "
          "table):\n")
    _print_table([("metric", "unit", "better", "logged", "definition")]
                 + [(m.name, m.unit, m.better, m.logged, m.definition) for m in MEASURES])
    return 0


def _lr_range_text(lr_range) -> str:
    """How `harness methods` shows a method's search range for `lr`."""
    if lr_range is None:
        return "not declared (name lr in search)"
    if not lr_range:
        return "- (only the head trains, at head_lr)"
    return f"{lr_range[0]:g} .. {lr_range[1]:g} (log)"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness", description="Benchmark PEFT methods on your model, data and hardware.")
    sub = p.add_subparsers(dest="command", required=True)
    tracking = dict(default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    r = sub.add_parser("run", help="run every cell of a suite (resuming its study), log to MLflow, write the leaderboard")
    w = sub.add_parser("worker", help="join a suite's study from another machine (shared --storage and --tracking-uri)")
    for cmd in (r, w):
        cmd.add_argument("suite")
        cmd.add_argument("--tracking-uri", **tracking)
        cmd.add_argument("--storage", default=None,
                         help="Optuna storage: a journal file (default: optuna.journal next to the MLflow store) "
                              "or postgresql://user@host/db for many machines")
        cmd.add_argument("--devices", default=None, help="GPU indices to use, e.g. 0,2 (default: every GPU found)")
        cmd.add_argument("--per-device", type=_positive, default=1, help="workers per GPU, for small trials (default 1)")
        cmd.add_argument("--workers", type=_positive, default=None, help="CPU workers when there is no GPU (default 1)")
        cmd.add_argument("--in-process", action="store_true", help="run trials in this process (debugging), no workers")
    r.add_argument("--results", default="results", help="directory for results/<suite>/ (default: results)")
    r.set_defaults(fn=cmd_run)
    w.set_defaults(fn=cmd_worker)
    v = sub.add_parser("validate", help="check a suite and print its expanded grid; runs nothing")
    v.add_argument("suite")
    v.set_defaults(fn=cmd_validate)
    rep = sub.add_parser("report", help="rebuild results/<suite>/ from MLflow, or from a runs.csv (--from-csv)")
    rep.add_argument("suite")
    rep.add_argument("--tracking-uri", **tracking)
    rep.add_argument("--results", default="results", help="write into RESULTS/<suite>/ (default: results)")
    rep.add_argument("--out", default=None, metavar="DIR", help="write into DIR instead of RESULTS/<suite>/")
    rep.add_argument("--from-csv", default=None, metavar="RUNS.csv",
                     help="rebuild leaderboard.md and plots from this runs.csv alone (no MLflow); the same runs.csv "
                          "and options give the same leaderboard, byte for byte")
    rep.add_argument("--margin", type=float, default=0.01,
                     help="a row is `≈` the best when its difference's 90%% interval lies within ±MARGIN "
                          "(score units; default 0.01 = 1 point)")
    rep.add_argument("--compare", default=None, metavar="REF.csv",
                     help="a reference runs.csv: exit 1 naming every configuration that got worse")
    rep.add_argument("--tolerance", default="5%", help="how much worse counts as noise: 5%% (relative, default) or 0.02")
    rep.add_argument("--metrics", default="test_score",
                     help="comma-separated metrics to compare, each in its better direction (default test_score; e.g. "
                          "test_score,peak_memory_mb; `methods` lists them)")
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
