"""The fixed cost of one trial of the quickstart's model, so a suite's steps can be sized.

One cell (LoRA r8 on the quickstart's model, task and training settings) runs as the
real `python -m harness run` command at two step counts, each in a fresh temporary
directory (its own MLflow SQLite store, Optuna journal and token cache).  Each command
runs the cell on `--seeds` seeds (default 3, one after another on one worker): the
first trial of a worker also pays the worker's lazy imports and tokenizes the splits,
the later ones are what every further trial of a suite costs.

    python bench/trial_cost.py [--steps 10,60] [--seeds 3] [--quick]

A command's time is split with timestamps from four sources:
  the command       its start and exit (wall), and when it prints "worker logs:" (just
                    before it starts its workers: the end of its own set-up);
  Optuna            each trial's datetime_start (claimed) and datetime_complete (told);
  MLflow            each trial's child run start_time and end_time;
  phase metrics     load_time_s, train_time_s, eval_time_s, measure_time_s of the run.
Bookkeeping = trial span - the four phases (MLflow and Optuna calls, provenance, the
adapter's artifact upload is in measure).  Per step = the difference of train_time_s
between the two step counts / the difference of steps; a trial's fixed part = its span
minus steps x per step; both from the medians over the later trials (all but a worker's
first), so that one trial slowed by other work does not set the line.  The runs must exit
0 and complete each cell exactly once, else the benchmark stops.  The tables are printed
and written to results/bench/trial-cost.md.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scheduling import ROOT, _wait_for_group  # noqa: E402  (scheduling puts ROOT on sys.path)

QUICKSTART = ROOT / "bench" / "quickstart-v1.yaml"  # the grid these benchmarks time (see that file)
PHASES = ("load_time_s", "train_time_s", "eval_time_s", "measure_time_s")
WORKERS_LINE = "worker logs:"  # the coordinator prints it right before it starts its workers
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# --------------------------------------------------------------------------- the real command (suite_scaling.py too)


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat; NaN elsewhere)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Watch(threading.Thread):
    """While the command runs: timestamps every line it writes to its log file when the line appears (polled every
    20 ms), and the CPU time of its process tree, the forkserver and the workers too (every 0.2 s); with /proc/stat,
    what the rest of the machine used meanwhile."""

    def __init__(self, path: Path, pid: int):
        super().__init__(daemon=True, name="bench-watch")
        self.path, self.pid, self.lines = path, pid, []  # [(epoch s, line)]
        self.cpu: dict[tuple[int, float], float] = {}  # (pid, create time) -> its last CPU seconds seen
        self._stop_event = threading.Event()
        self.busy_start = busy_cpu_s()
        self.busy_end = math.nan

    def _sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                self.cpu[(p.pid, p.create_time())] = t.user + t.system

    def run(self) -> None:
        buf, tick = "", 0
        with open(self.path, errors="replace") as fh:
            while True:
                stopping = self._stop_event.is_set()
                chunk = fh.read()
                if chunk:
                    now = time.time()
                    *complete, buf = (buf + chunk).split("\n")
                    self.lines += [(now, line) for line in complete]
                if stopping:
                    if buf:
                        self.lines.append((time.time(), buf))
                    return
                if tick % 10 == 0:
                    self._sample()
                tick += 1
                self._stop_event.wait(0.02)

    def stop(self) -> None:
        self.busy_end = busy_cpu_s()
        self._stop_event.set()
        self.join()

    @property
    def own_cpu_s(self) -> float:
        return sum(self.cpu.values())

    @property
    def other_cpu_s(self) -> float:
        """CPU seconds the rest of the machine used while the command ran (at least 0; the last 0.2 s of each of
        the command's processes are not seen, so this errs high by a little)."""
        return max(0.0, self.busy_end - self.busy_start - self.own_cpu_s)

    def first(self, prefix: str) -> float | None:
        return next((t for t, line in self.lines if line.startswith(prefix)), None)


@dataclass
class Trial:
    slot: str
    start: float  # Optuna datetime_start (epoch s): the worker claimed it
    end: float  # Optuna datetime_complete: the worker told the result
    run_start: float  # MLflow child run start_time
    run_end: float  # MLflow child run end_time
    metrics: dict[str, float]
    config: str = ""  # the cell's configuration, e.g. "sentiment/lora r4 int8" (its label without the seed)

    @property
    def span_s(self) -> float:
        return self.end - self.start

    @property
    def phases_s(self) -> float:
        return sum(self.metrics[p] for p in PHASES)


@dataclass
class Command:
    label: str
    argv: list[str]
    tmp: Path
    t_start: float  # epoch s, just before the process started
    wall_s: float  # until the process exited
    workers_at: float | None  # when the coordinator printed "worker logs:"
    runnable_cells: int
    trials: list[Trial] = field(default_factory=list)  # by start time
    own_cpu_s: float = math.nan  # CPU seconds of the command's processes
    other_cpu_s: float = math.nan  # CPU seconds the rest of the machine used meanwhile

    @property
    def other_share(self) -> float:
        """What the rest of the machine used while the command ran, as a share of all its cores."""
        return self.other_cpu_s / (self.wall_s * CORES)

    @property
    def t_end(self) -> float:
        return self.t_start + self.wall_s

    @property
    def startup_s(self) -> float:
        """Command start -> first trial claimed."""
        return self.trials[0].start - self.t_start

    @property
    def setup_s(self) -> float:
        """Command start -> the coordinator starts its workers (interpreter, imports, validation, study, MLflow)."""
        return (self.workers_at or self.trials[0].start) - self.t_start

    @property
    def worker_startup_s(self) -> float:
        """Workers started -> first trial claimed (fork, the worker's own validation and study, the claim)."""
        return self.trials[0].start - (self.workers_at or self.trials[0].start)

    @property
    def tail_s(self) -> float:
        """Last trial told -> command exit: the workers exit, the report, plots and MLflow artifacts are written."""
        return self.t_end - max(t.end for t in self.trials)

    @property
    def spans_s(self) -> float:
        return sum(t.span_s for t in self.trials)


def wait_for_group(pgid: int, timeout_s: float = 60.0) -> None:
    """Until no process of the group is left but zombies (the forkserver tears down its torch imports for a
    couple of seconds after the command exits: not while the next command runs).  Where /proc cannot tell, as
    `scheduling._wait_for_group` (zombies included: they wait for init to reap them)."""
    if not Path("/proc/self/stat").exists():
        return _wait_for_group(pgid, timeout_s)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive = True
                break
        if not alive:
            return
        time.sleep(0.1)


def bench_env(cache: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    if cache is not None:
        env["HARNESS_CACHE"] = str(cache)
    return env


def validate_count(suite_path: Path, env: dict[str, str]) -> tuple[int, int]:
    """`python -m harness validate SUITE`: (cells, runnable cells) from its last line, "N cells: R to run, M n/a"."""
    out = subprocess.run([sys.executable, "-m", "harness", "validate", str(suite_path)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, f"validate {suite_path}: exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    m = re.search(r"^(\d+) cells: (\d+) to run, (\d+) n/a(?:; \d+ trials)?$", out.stdout, re.M)
    assert m, f"validate {suite_path}: no summary line in\n{out.stdout}"
    return int(m.group(1)), int(m.group(2))


def run_harness(label: str, suite_path: Path, tmp: Path, env: dict[str, str], extra: list[str] = (),
                timeout_s: float = 3 * 3600) -> Command:
    """Run `python -m harness run SUITE` in `tmp` (its own MLflow store, journal, results); check that it exited 0
    and completed every runnable cell's trials exactly once (Optuna and MLflow); return its timings."""
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    from harness.cli import validate_suite
    from harness.schedule import CELL, RUN_ID, SLOT, open_study, resolve_storage

    uri = f"sqlite:///{tmp}/mlflow.db"
    argv = [sys.executable, "-m", "harness", "run", str(suite_path), "--tracking-uri", uri,
            "--results", str(tmp / "results"), *extra]
    log_path = tmp / "run.log"
    # to a file, not a pipe: the forkserver inherits stdout and outlives the command a moment (see scheduling.py)
    with open(log_path, "w") as log:
        t_start = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        clock = Watch(log_path, proc.pid)
        clock.start()
        try:
            rc = proc.wait(timeout=timeout_s)
        except BaseException:  # Ctrl-C or the timeout: stop the harness the way a user would
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            wait_for_group(proc.pid)
            clock.stop()
            raise
        wall = time.perf_counter() - t0
        clock.stop()
    wait_for_group(proc.pid)  # the forkserver and resource tracker: gone before anything else is measured
    assert rc == 0, f"{label}: exit code {rc}; see {log_path}\n{log_path.read_text()[-3000:]}"

    suite, cells = validate_suite(str(suite_path))
    expected = {s for c in cells if c.runnable for s in c.slots()}
    study = open_study(suite, resolve_storage(None, uri))
    trials = study.get_trials(deepcopy=False)
    assert all(t.state == TrialState.COMPLETE for t in trials), Counter(t.state.name for t in trials)
    done = Counter(t.user_attrs[SLOT] for t in trials)
    assert set(done) == expected and set(done.values()) == {1}, f"{label}: {done} != {sorted(expected)}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(suite.name)
    runs = client.search_runs([exp.experiment_id], filter_string="tags.kind = 'cell'", max_results=10_000)
    assert all(r.info.status == "FINISHED" for r in runs), Counter(r.info.status for r in runs)
    finished = Counter(r.data.tags["cell_id"] for r in runs)
    assert set(finished) == {c.id for c in cells if c.runnable} and set(finished.values()) == {1}, finished
    by_id = {r.info.run_id: r for r in runs}
    configs = {c.id: re.sub(r" seed\d+$", "", c.label) for c in cells}
    out = []
    for t in sorted(trials, key=lambda t: t.datetime_start):
        run = by_id[t.user_attrs[RUN_ID]]
        missing = [p for p in PHASES if p not in run.data.metrics]
        assert not missing, f"{label}: run {run.info.run_id} logged no {missing}"
        out.append(Trial(t.user_attrs[SLOT], t.datetime_start.timestamp(), t.datetime_complete.timestamp(),
                         run.info.start_time / 1000, run.info.end_time / 1000, dict(run.data.metrics),
                         configs[t.user_attrs[CELL]]))
    workers_at = next((t for t, line in clock.lines if line.startswith(WORKERS_LINE)), None)
    return Command(label, argv, tmp, t_start, wall, workers_at, len(expected), out, clock.own_cpu_s, clock.other_cpu_s)


def best_of(argv: list[str], repeats: int, env: dict[str, str]) -> float:
    """The fastest of `repeats` runs of a short command (s): the least disturbed by the rest of the machine."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, timeout=300)
        times.append(time.perf_counter() - t0)
        assert out.returncode == 0, f"{shlex.join(argv)}: exit {out.returncode}\n{out.stderr.decode()[-2000:]}"
    return min(times)


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def machine_line(load: float, elapsed_s: float, cmds: list[Command]) -> str:
    """The machine, the date, and what other work on the machine took while the commands ran."""
    from importlib import metadata

    cores = CORES
    other = sum(c.other_cpu_s for c in cmds) / (cores * sum(c.wall_s for c in cmds))

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return (f"Machine: {cores} CPU cores available (os.sched_getaffinity), {platform.machine()}, "
            f"Python {platform.python_version()}, torch {metadata.version('torch')}; harness commit {commit}; "
            f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}; 1-minute load average before the benchmark {load:.2f}; "
            f"other processes used {other:.0%} of the cores while the commands ran (/proc/stat minus the commands' "
            f"own processes: above a few % the times are inflated; run on an idle machine); "
            f"whole benchmark {elapsed_s / 60:.1f} min.")


def write_out(text: str, out: str) -> None:
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    print()
    print(text, end="")


# --------------------------------------------------------------------------- this benchmark


def make_suite(steps: int, seeds: int, quick: bool) -> dict:
    """The quickstart's model, task, training and probe; one cell: LoRA r8 (no quantization)."""
    q = yaml.safe_load(QUICKSTART.read_text())
    suite = {k: q[k] for k in ("schema_version", "model", "task_type", "tasks", "training", "probe")}
    suite["name"] = "bench-trial-cost"
    suite["grid"] = [{"method": "lora", "rank": 8}]
    suite["training"] = {**q["training"], "steps": steps, "seeds": list(range(seeds))}
    if quick:  # the same model, less data to score and probe
        for task in suite["tasks"]:
            task["data"] |= {"n_train": 200, "n_validation": 50, "n_test": 50}
        suite["probe"] = {**suite.get("probe", {}), "n_texts": 16}
    return suite


def run_steps(steps: int, seeds: int, quick: bool, keep: bool) -> Command:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-cost-{steps}-"))
    suite_path = tmp / "suite.yaml"
    suite_path.write_text(yaml.safe_dump(make_suite(steps, seeds, quick), sort_keys=False))
    print(f"[{steps} steps] {seeds} trial(s) of LoRA r8 in {tmp}", flush=True)
    try:
        return run_harness(f"{steps} steps", suite_path, tmp, bench_env(tmp / "token-cache"))
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Fit:
    per_step_s: float  # S: training time per step, from the steady-state trials (medians)
    fixed_s: float  # F: a steady-state trial's span (median) minus steps x S (mean over the step counts)
    at_steps: int  # N for the conclusion


def steady(c: Command) -> list:
    """A command's steady-state trials: all but the first (which pays the worker's first-call costs)."""
    return c.trials[1:] or c.trials


def fit(cmds: list[Command], steps: list[int], at_steps: int) -> Fit:
    """Medians over the steady-state trials, so that one trial slowed by other work does not set the line."""
    def med(c: Command, fn) -> float:
        return statistics.median(fn(t) for t in steady(c))

    (n1, c1), (n2, c2) = (steps[0], cmds[0]), (steps[-1], cmds[-1])
    train = lambda t: t.metrics["train_time_s"]  # noqa: E731
    per_step = (med(c2, train) - med(c1, train)) / (n2 - n1)
    fixed = statistics.fmean(med(c, lambda t: t.span_s) - n * per_step for n, c in zip(steps, cmds))
    return Fit(per_step, fixed, at_steps)


def render(cmds: list[Command], steps: list[int], f: Fit, imports: dict[str, float], command: str, machine: str,
           seeds: int) -> str:
    cols = [(n, c, i) for n, c in zip(steps, cmds) for i in range(len(c.trials))]
    several = len(cmds[0].trials) > 1
    trial_name = {0: "first trial", len(cmds[0].trials) - 1: "later trial"}

    def head(n: int, i: int) -> str:
        return f"{n} steps, {trial_name.get(i, f'trial {i + 1}')}" if several else f"{n} steps"

    def row(part: str, unit: str, values: list[float | None], how: str) -> str:
        cells = " | ".join("" if v is None else f"{v:.2f}" for v in values)
        return f"| {part} | {unit} | {cells} | {how} |"

    def per_cmd(fn) -> list[float | None]:  # a command's number in its first trial's column only
        return [fn(c) if i == 0 else None for _, c, i in cols]

    def per_trial(fn) -> list[float]:
        return [fn(c.trials[i], n) for n, c, i in cols]

    train_fixed = lambda t, n: t.metrics["train_time_s"] - n * f.per_step_s  # noqa: E731
    lines = [
        "# The cost of one trial",
        "",
        f"`{command}`",
        "",
        f"One cell of the quickstart's model and settings (LoRA r8, no quantization) as the real "
        f"`python -m harness run` command (one worker) at {' and '.join(map(str, steps))} steps, {seeds} seed(s) "
        "each, one trial after another. Seconds.",
        "",
        "| part | per | " + " | ".join(head(n, i) for n, _, i in cols) + " | measured as |",
        "|---|---|" + "---:|" * len(cols) + "---|",
        row("interpreter start, imports, suite validation, study + MLflow setup", "command",
            per_cmd(lambda c: c.setup_s), "command start -> it prints `worker logs:`"),
        row("worker start-up (the rest of the forkserver's torch/transformers/peft imports, fork, the worker's suite and study)", "command",
            per_cmd(lambda c: c.worker_startup_s), "`worker logs:` -> first trial's Optuna datetime_start"),
        row("**trial span**", "trial", per_trial(lambda t, n: t.span_s), "Optuna datetime_start -> datetime_complete"),
        row("- model + data load (data, tokenization or its cache, tokenizer, model)", "trial",
            per_trial(lambda t, n: t.metrics["load_time_s"]), "`load_time_s`"),
        row("- training", "trial", per_trial(lambda t, n: t.metrics["train_time_s"]), "`train_time_s`"),
        row(f"  - of which per step ({f.per_step_s:.3f} s x steps)", "trial", per_trial(lambda t, n: n * f.per_step_s),
            ("later trials' median " if several else "") + "`train_time_s` difference / steps difference"),
        row("  - of which fixed", "trial", per_trial(train_fixed), "`train_time_s` - steps x per step"),
        row("- evaluation (validation, test, forgetting probe)", "trial",
            per_trial(lambda t, n: t.metrics["eval_time_s"]), "`eval_time_s`"),
        row("- measurements (base probe and FLOP count once per worker, adapter save/swap, alternating latency, merge)", "trial",
            per_trial(lambda t, n: t.metrics["measure_time_s"]), "`measure_time_s`"),
        row("- MLflow/Optuna bookkeeping, untimed gaps between the phases", "trial",
            per_trial(lambda t, n: t.span_s - t.phases_s), "trial span - the four phases"),
        row("  - claim -> MLflow run created (provenance, run, params)", "trial",
            per_trial(lambda t, n: t.run_start - t.start), "MLflow start_time - Optuna datetime_start"),
        row("  - in the run, outside the phases (suite JSON, metrics, tags, the trial's imports)", "trial",
            per_trial(lambda t, n: (t.run_end - t.run_start) - t.phases_s), "MLflow end - start - phases"),
        row("  - MLflow run ended -> told Optuna", "trial", per_trial(lambda t, n: t.end - t.run_end),
            "Optuna datetime_complete - MLflow end_time"),
    ]
    if several:
        lines.append(row("between trials (the worker claims the next)", "trial",
                         [c.trials[i].start - c.trials[i - 1].end if i else None for _, c, i in cols],
                         "previous datetime_complete -> datetime_start"))
    lines += [
        row("report writing after the last trial (workers exit, leaderboard, plots, MLflow artifacts)", "command",
            per_cmd(lambda c: c.tail_s), "last datetime_complete -> command exit"),
        row("**wall**", "command", per_cmd(lambda c: c.wall_s), "the whole command"),
        row("CPU used by the command's processes (CPU-s)", "command", per_cmd(lambda c: c.own_cpu_s),
            "psutil over its process tree"),
        row("CPU used by other processes meanwhile (CPU-s)", "command", per_cmd(lambda c: c.other_cpu_s),
            "/proc/stat busy - the command's; should be near 0"),
        row("training throughput (tokens/s)", "trial", per_trial(lambda t, n: t.metrics["tokens_per_s"]),
            "`tokens_per_s` (from step 3 on)"),
        "",
        "Per trial: paid by every trial (a suite pays it trials times); per command: once per `python -m harness run` "
        "(per worker for the worker start-up). The command rows, the trial spans and the gaps between trials add up to "
        "the wall time; the phases are each trial's own metrics (MLflow child run). "
        "Every run exited 0 and completed each cell exactly once (Optuna and MLflow).",
    ]
    if several:
        extra = statistics.fmean(c.trials[0].span_s - c.trials[-1].span_s for c in cmds)
        lines += ["", f"The first trial of a worker took {extra:+.1f} s against a later one (mean over the step "
                      "counts): it pays the worker's lazy imports (harness.data, methods, ...), tokenizes the splits "
                      "(each command has a fresh token cache; later trials reuse them from memory) and torch's "
                      "first-call set-up."]
    per_command = statistics.fmean(c.setup_s + c.worker_startup_s + c.tail_s for c in cmds)
    n = f.at_steps
    total = f.fixed_s + f.per_step_s * n
    whose = "the later trials' median" if several else "the trial's"
    lines += [
        "",
        "Start-up of a process, best of the runs (s): " + "; ".join(f"`{k}` {v:.2f}" for k, v in imports.items()) + ".",
        "",
        f"Per command: {per_command:.1f} s (set-up + worker start-up + report, mean over the commands).",
        "",
        f"**A trial costs {f.fixed_s:.1f} s fixed + {f.per_step_s:.3f} s per step on this machine: with {n} steps "
        f"the fixed part is {f.fixed_s / total:.0%}** ({whose} span minus steps "
        f"x per step, mean over the step counts; {n} = the quickstart's steps).",
    ]
    if not (f.per_step_s > 0 and f.fixed_s > 0):
        lines += ["", "**These numbers are noise**: the longer run did not take longer per step, or the fixed part "
                      "came out negative. Other work on the machine (see below) or too few steps; run again on an idle "
                      "machine, with more steps apart (--steps)."]
    lines += ["", machine]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default=None, help="two step counts, comma-separated (default 10,60; --quick 2,6)")
    ap.add_argument("--seeds", type=int, default=None, help="trials per command, one per seed (default 3; --quick 1)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 2 and 6 steps, one seed, 200/50/50 examples, 16 probe texts; "
                         "start-up commands timed once, the forkserver's imports not")
    ap.add_argument("--repeats", type=int, default=None, help="runs of each start-up command, best kept (default 3)")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "trial-cost.md"),
                    help="markdown file for the table (default results/bench/trial-cost.md); '' for none")
    ap.add_argument("--keep", action="store_true", help="keep each run's temporary directory (logs, journal, MLflow)")
    args = ap.parse_args(argv)
    steps = [int(s) for s in (args.steps or ("2,6" if args.quick else "10,60")).split(",") if s.strip()]
    seeds = args.seeds or (1 if args.quick else 3)
    repeats = args.repeats or (1 if args.quick else 3)
    if len(steps) != 2 or steps[0] < 1 or steps[1] <= steps[0] or seeds < 1 or repeats < 1:
        ap.error("--steps takes two increasing positive step counts; --seeds and --repeats >= 1")
    load = load_average()
    command = "python bench/trial_cost.py " + shlex.join(
        (["--quick"] if args.quick else []) + ["--steps", ",".join(map(str, steps)), "--seeds", str(seeds)])
    q = yaml.safe_load(QUICKSTART.read_text())
    t0 = time.perf_counter()
    env = bench_env()
    py = sys.executable
    imports = {
        "python -c pass": best_of([py, "-c", "pass"], repeats, env),
        'python -c "import harness.cli"': best_of([py, "-c", "import harness.cli"], repeats, env),
        "python -m harness --help": best_of([py, "-m", "harness", "--help"], repeats, env),
        'python -c "import harness.schedule, harness.runner"': best_of([py, "-c", "import harness.schedule, harness.runner"],
                                                                       repeats, env),
    }
    if not args.quick:  # what the CPU workers' forkserver preloads
        imports['python -c "import torch, transformers, peft"'] = best_of([py, "-c", "import torch, transformers, peft"],
                                                                         repeats, env)
    cmds = [run_steps(n, seeds, args.quick, args.keep) for n in steps]
    f = fit(cmds, steps, int(q["training"]["steps"]))
    text = render(cmds, steps, f, imports, command, machine_line(load, time.perf_counter() - t0, cmds), seeds)
    write_out(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
