"""Scheduling efficiency of `python -m harness run --workers N` on CPU workers.

Every trial runs the test method `sleepy` (tests/plugins/faults.py): it sleeps
`--seconds` S in apply, then trains only the head of a tiny random BERT for one
step.  For each worker count W the suite has K*W cells (K = `--per-worker`, one
cell per seed), so every worker count has the same ideal time K*S: the sleep alone,
perfectly spread over the workers.  Each worker count runs in a fresh temporary
directory (its own MLflow SQLite store and Optuna journal) as the real command in a
subprocess.

    python bench/scheduling.py [--seconds S] [--per-worker K] [--workers 1,2,4,8]

Efficiency = ideal / measured, ideal = n_trials * S / W:
  wall  the whole command, until its process exits: interpreter start, imports, study
        and MLflow setup, the forkserver and worker start-up, the trials, the report;
  span  first trial's start to last trial's completion, from the Optuna journal:
        scheduling only (claiming, per-trial work besides the sleep, idle workers).
The run must exit 0 and complete each cell exactly once (Optuna and MLflow), else the
benchmark stops: the timing of a broken run means nothing.  The table is printed and
written to results/bench/scheduling.md (--out).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
FAULTS = str(ROOT / "tests" / "plugins" / "faults.py")
sys.path.insert(0, str(ROOT))


def make_suite(seconds: float, n_cells: int) -> dict:
    """As small as a suite gets: everything but the sleep should cost next to nothing."""
    return {
        "schema_version": 1,
        "name": "bench-sched",
        "plugins": [FAULTS],
        "model": {"tiny": {"architecture": "bert", "hidden_size": 32, "layers": 2, "heads": 2}},
        "task_type": "seq_cls",
        "tasks": [{"name": "sent", "data": {"synthetic": "sentiment", "n_train": 16, "n_validation": 8, "n_test": 8}}],
        "grid": [{"method": "sleepy", "settings": {"seconds": seconds}}],
        "training": {"steps": 1, "batch_size": 8, "lr": 1e-3, "warmup_steps": 0, "max_length": 24,
                     "seeds": list(range(n_cells)), "log_every": 1},
        "probe": {"builtin": "general", "n_texts": 2, "max_length": 24},
    }


@dataclass
class Result:
    workers: int
    trials: int
    seconds: float
    wall_s: float
    span_s: float
    mean_trial_s: float
    startup_s: float  # command start -> first trial start
    first_starts_s: float  # first trial start -> the last worker's first trial start
    tail_s: float  # last trial complete -> command exit

    @property
    def ideal_s(self) -> float:
        return self.trials * self.seconds / self.workers


def _wait_for_group(pgid: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def run_one(workers: int, seconds: float, per_worker: int, keep: bool) -> Result:
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    from harness.cli import validate_suite
    from harness.schedule import SLOT, WORKER, open_study, resolve_storage

    tmp = Path(tempfile.mkdtemp(prefix=f"bench-sched-w{workers}-"))
    suite_path = tmp / "suite.yaml"
    suite_path.write_text(yaml.safe_dump(make_suite(seconds, per_worker * workers), sort_keys=False))
    uri = f"sqlite:///{tmp}/mlflow.db"
    cmd = [sys.executable, "-m", "harness", "run", str(suite_path), "--workers", str(workers),
           "--tracking-uri", uri, "--results", str(tmp / "results")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    print(f"[W={workers}] {per_worker * workers} trials of {seconds:g} s in {tmp}", flush=True)
    # Output to a file, not a pipe: the forkserver inherits stdout and lingers a moment after the command exits,
    # so reading a pipe to its end would time the forkserver's shutdown too, which no user waits for.
    with open(tmp / "run.log", "w") as log:
        t_start = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=3600)
        except BaseException:  # Ctrl-C or the timeout: stop the harness the way a user would
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            raise
        wall = time.perf_counter() - t0
    t_end = t_start + wall
    _wait_for_group(proc.pid)  # the forkserver and resource tracker: gone before anything else is measured
    assert rc == 0, f"W={workers}: exit code {rc}; see {tmp}/run.log\n{(tmp / 'run.log').read_text()[-2000:]}"

    # each cell completed exactly once, nothing failed, retried or left behind
    suite, cells = validate_suite(str(suite_path))
    expected = {s for c in cells if c.runnable for s in c.slots()}
    assert len(expected) == per_worker * workers, (len(expected), per_worker * workers)
    study = open_study(suite, resolve_storage(None, uri))
    trials = study.get_trials(deepcopy=False)
    assert all(t.state == TrialState.COMPLETE for t in trials), Counter(t.state.name for t in trials)
    done = Counter(t.user_attrs[SLOT] for t in trials)
    assert set(done) == expected and set(done.values()) == {1}, done
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(suite.name)
    runs = client.search_runs([exp.experiment_id], max_results=10_000)
    children = [r for r in runs if r.data.tags.get("kind") == "cell"]
    finished = Counter(r.data.tags["cell_id"] for r in children)
    assert all(r.info.status == "FINISHED" for r in children), Counter(r.info.status for r in children)
    assert set(finished) == {c.id for c in cells if c.runnable} and set(finished.values()) == {1}, finished

    starts = [t.datetime_start.timestamp() for t in trials]
    ends = [t.datetime_complete.timestamp() for t in trials]
    durations = [e - s for s, e in zip(starts, ends)]
    first_by_worker: dict[str, float] = {}
    for t, s in zip(trials, starts):
        name = t.user_attrs[WORKER]["name"]
        first_by_worker[name] = min(s, first_by_worker.get(name, s))
    assert len(first_by_worker) == workers, f"W={workers}: only {sorted(first_by_worker)} ran trials"
    if not keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return Result(workers=workers, trials=len(trials), seconds=seconds, wall_s=wall, span_s=max(ends) - min(starts),
                  mean_trial_s=sum(durations) / len(durations), startup_s=min(starts) - t_start,
                  first_starts_s=max(first_by_worker.values()) - min(starts), tail_s=t_end - max(ends))


def render(results: list[Result], command: str, elapsed_s: float, load: float) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        "# Scheduling efficiency",
        "",
        f"`{command}`",
        "",
        "| workers | trials | sleep per trial (s) | ideal (s) | wall (s) | efficiency (wall) | trial span (s) "
        "| efficiency (span) | mean trial duration (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.workers} | {r.trials} | {r.seconds:g} | {r.ideal_s:.1f} | {r.wall_s:.1f} | "
                     f"{r.ideal_s / r.wall_s:.1%} | {r.span_s:.1f} | {r.ideal_s / r.span_s:.1%} | {r.mean_trial_s:.2f} |")
    lines += [
        "",
        "ideal = trials x sleep / workers (the sleep alone, perfectly spread). "
        "efficiency = ideal / measured. "
        "**wall**: the whole `python -m harness run` command - interpreter start, imports, study and MLflow "
        "setup, forkserver and worker start-up, the trials, the report. "
        "**span**: first trial's start to last trial's completion in the Optuna journal - scheduling only "
        "(claiming, each trial's work besides the sleep, idle workers). "
        "Every run exited 0 and completed each cell exactly once (Optuna and MLflow).",
        "",
        "Where the rest of the wall time goes:",
        "",
        "| workers | start-up (s): command start -> first trial | last worker's first trial (s after the first) "
        "| tail (s): last trial -> exit | overhead per trial (s): mean duration - sleep |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.workers} | {r.startup_s:.1f} | {r.first_starts_s:.1f} | {r.tail_s:.1f} | "
                     f"{r.mean_trial_s - r.seconds:.2f} |")
    lines += [
        "",
        f"Machine: {cores} CPU cores available (os.sched_getaffinity), {platform.machine()}, "
        f"Python {platform.python_version()}; {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}; "
        f"1-minute load average before the benchmark {load:.2f}; whole benchmark {elapsed_s / 60:.1f} min.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="sleep per trial, S (default 20)")
    ap.add_argument("--per-worker", type=int, default=3, help="trials per worker, K (default 3)")
    ap.add_argument("--workers", default="1,2,4,8", help="worker counts, comma-separated (default 1,2,4,8)")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "scheduling.md"),
                    help="markdown file for the table (default results/bench/scheduling.md); '' for none")
    ap.add_argument("--keep", action="store_true", help="keep each run's temporary directory (logs, journal, MLflow)")
    args = ap.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    if args.seconds <= 0 or args.per_worker < 1 or not counts or min(counts) < 1:
        ap.error("--seconds must be > 0, --per-worker >= 1, --workers positive integers")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    command = "python bench/scheduling.py " + shlex.join(
        ["--seconds", f"{args.seconds:g}", "--per-worker", str(args.per_worker), "--workers", ",".join(map(str, counts))])
    t0 = time.perf_counter()
    results = [run_one(w, args.seconds, args.per_worker, args.keep) for w in counts]
    text = render(results, command, time.perf_counter() - t0, load)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print()
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
