"""Scheduling against real storages: an Optuna journal file and a real PostgreSQL server.

Every test drives the real command (`python -m harness run ...` in a subprocess, or
`main([...])` in process) and then reads what a user would read: the exit code, the
Optuna study, the MLflow runs and the leaderboard.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from harness.cli import main, validate_suite
from harness.errors import SuiteError
from harness.runner import smaller_micro_batch
from harness.schedule import SLOT, WORKER, plan_workers, resolve_storage, study_name
from harness.suite import Training, load_suite

ROOT = Path(__file__).resolve().parent.parent
FAULTS = str(ROOT / "tests" / "plugins" / "faults.py")

TINY = {
    "schema_version": 1,
    "name": "sched",
    "model": {"tiny": {"architecture": "bert", "hidden_size": 32, "layers": 2, "heads": 2}},
    "task_type": "seq_cls",
    "tasks": [{"name": "sent", "data": {"synthetic": "sentiment", "n_train": 32, "n_validation": 8, "n_test": 8}}],
    "grid": [{"method": "full"}, {"method": "lora", "rank": [2, 4, 8]}, {"method": "bitfit"}, {"method": "head_only"}],
    "training": {"steps": 3, "batch_size": 8, "lr": 1e-3, "warmup_steps": 0, "max_length": 24, "seeds": [0, 1],
                 "log_every": 1},
    "probe": {"builtin": "general", "n_texts": 4, "max_length": 24},
}  # 6 configurations x 2 seeds = 12 cells


def _write(tmp_path: Path, suite: dict, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env,
                          timeout=kw.pop("timeout", 600), cwd=kw.pop("cwd", None))


def _children(uri: str, name: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("kind") == "cell"], [r for r in runs if r.data.tags.get("kind") == "invocation"]


def _study(suite_path: Path, storage: str) -> optuna.Study:
    suite = load_suite(suite_path)
    from harness.schedule import open_study

    return open_study(suite, storage)


def assert_each_cell_once(suite_path: Path, storage: str, uri: str) -> list:
    """Every runnable cell: exactly one COMPLETE trial and exactly one FINISHED MLflow child; nothing left RUNNING."""
    suite, cells = validate_suite(str(suite_path))
    runnable = {c.id for c in cells if c.runnable}
    study = _study(suite_path, storage)
    complete = Counter(t.user_attrs[SLOT] for t in study.get_trials(states=(TrialState.COMPLETE,)))
    assert set(complete) == {s for c in cells if c.runnable for s in c.slots()}
    assert set(complete.values()) == {1}, complete
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    children, parents = _children(uri, suite.name)
    finished = Counter(r.data.tags["cell_id"] for r in children if r.info.status == "FINISHED")
    assert set(finished) == runnable and set(finished.values()) == {1}, finished
    assert not [r for r in children if r.info.status == "RUNNING"]
    assert len(parents) == 1
    return children


# --------------------------------------------------------------------------- planning and small rules


def test_workers_are_planned_per_gpu_and_restricted_by_devices():
    plans = plan_workers(None, 1, None, gpus=["0", "1", "2"])
    assert [(p.name, p.cuda_visible) for p in plans] == [("gpu0", "0"), ("gpu1", "1"), ("gpu2", "2")]
    plans = plan_workers("0,2", 2, None, gpus=["0", "1", "2"])
    assert [(p.name, p.cuda_visible) for p in plans] == [("gpu0.0", "0"), ("gpu0.1", "0"), ("gpu2.0", "2"), ("gpu2.1", "2")]
    with pytest.raises(SuiteError) as err:
        plan_workers("0,5", 1, None, gpus=["0", "1"])
    assert err.value.field == "--devices" and "5" in str(err.value) and "nvidia-smi" in str(err.value)
    with pytest.raises(SuiteError) as err:
        plan_workers(None, 1, 4, gpus=["0", "1"])
    assert err.value.field == "--workers" and "--per-device" in str(err.value) and "CUDA_VISIBLE_DEVICES" in str(err.value)


def test_without_gpus_cpu_workers_share_the_cores():
    plans = plan_workers(None, 1, 3, gpus=[])
    assert [p.name for p in plans] == ["cpu0", "cpu1", "cpu2"] and all(p.cuda_visible is None for p in plans)
    cores = len(os.sched_getaffinity(0))
    assert all(p.threads == max(1, cores // 3) for p in plans)
    assert [p.name for p in plan_workers(None, 1, None, gpus=[])] == ["cpu0"]


def test_out_of_memory_halves_the_micro_batch_and_keeps_the_effective_batch():
    cfg, seen = Training(batch_size=16, grad_accum=1), []
    while cfg is not None:
        seen.append((cfg.batch_size, cfg.grad_accum))
        cfg = smaller_micro_batch(cfg)
    assert seen == [(16, 1), (8, 2), (4, 4), (2, 8), (1, 16)]
    assert smaller_micro_batch(Training(batch_size=6, grad_accum=2)) == Training(batch_size=3, grad_accum=4)
    assert smaller_micro_batch(Training(batch_size=3, grad_accum=4)) == Training(batch_size=1, grad_accum=12)


def test_study_name_is_stable_and_follows_the_content(tmp_path):
    a = load_suite(_write(tmp_path, TINY, "a.yaml"))
    b = load_suite(_write(tmp_path, TINY, "b.yaml"))
    c = load_suite(_write(tmp_path, {**TINY, "training": {**TINY["training"], "steps": 4}}, "c.yaml"))
    assert study_name(a) == study_name(b) != study_name(c)
    assert study_name(a).startswith("sched-")


def test_storage_defaults_to_a_journal_next_to_the_mlflow_store_and_refuses_sqlite(tmp_path):
    assert resolve_storage(None, f"sqlite:///{tmp_path}/mlflow.db") == str(tmp_path / "optuna.journal")
    assert resolve_storage("postgresql://u@h/db", "http://x:5000") == "postgresql://u@h/db"
    with pytest.raises(SuiteError) as err:
        resolve_storage("sqlite:///o.db", "sqlite:///m.db")
    assert "not safe for parallel workers" in str(err.value)


def test_a_bad_devices_option_exits_2_before_anything_is_recorded(tmp_path, capsys):
    suite = _write(tmp_path, TINY)
    assert main(["run", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--devices", "7"]) == 2
    assert "--devices" in capsys.readouterr().err
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "optuna.journal").exists()


# --------------------------------------------------------------------------- three workers, two storages


@pytest.mark.slow
def test_three_workers_on_the_journal_run_every_cell_exactly_once(tmp_path):
    suite = _write(tmp_path, TINY)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    done = _cli("run", str(suite), "--tracking-uri", uri, "--results", str(tmp_path / "results"), "--workers", "3")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "trials: 12 done, 0 running, 0 failed, 0 left of 12" in done.stdout
    journal = str(tmp_path / "optuna.journal")
    children = assert_each_cell_once(suite, journal, uri)
    workers = {r.data.tags["worker"] for r in children}
    assert len(workers) >= 2, workers  # the work was shared
    assert (tmp_path / "results" / "sched" / "leaderboard.md").is_file()

    again = _cli("run", str(suite), "--tracking-uri", uri, "--results", str(tmp_path / "results"), "--workers", "3")
    assert again.returncode == 0 and "trials: 12 done" in again.stdout
    assert_each_cell_once(suite, journal, uri)  # completed cells are never re-run


@pytest.mark.slow
def test_three_workers_on_postgresql_run_every_cell_exactly_once(tmp_path, postgres_url, postgres_url_2):
    suite = _write(tmp_path, TINY)
    uri = postgres_url_2  # MLflow's store in its own database, as an `mlflow server` would use
    done = _cli("run", str(suite), "--tracking-uri", uri, "--storage", postgres_url, "--results", str(tmp_path / "r"),
                "--workers", "3", cwd=str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "trials: 12 done, 0 running, 0 failed, 0 left of 12" in done.stdout
    assert_each_cell_once(suite, postgres_url, uri)


# --------------------------------------------------------------------------- dead workers and resume


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _sleepy_suite(tmp_path: Path, seconds: float, n_cells: int = 6) -> Path:
    suite = dict(TINY, name="sleepy", plugins=[FAULTS],
                 grid=[{"method": "sleepy", "settings": {"seconds": seconds}}],
                 training=dict(TINY["training"], seeds=list(range(n_cells))))
    return _write(tmp_path, suite)


def _running(study_path: Path, journal: str):
    study = _study(study_path, journal)
    return [t for t in study.get_trials(states=(TrialState.RUNNING,)) if WORKER in t.user_attrs]


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_replaced_and_nothing_is_lost_or_doubled(tmp_path):
    suite = _sleepy_suite(tmp_path, seconds=4)
    uri, journal = f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path / "optuna.journal")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(suite), "--tracking-uri", uri,
                             "--results", str(tmp_path / "r"), "--workers", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    from harness.schedule import RUN_ID

    mid_trial = lambda: [t for t in _running(suite, journal) if RUN_ID in t.user_attrs]  # noqa: E731 - its run exists
    victim = _wait_for(mid_trial, 180, "a trial in the middle of its run")[0]
    os.kill(victim.user_attrs[WORKER]["pid"], signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    assert "died" in out
    children = assert_each_cell_once(suite, journal, uri)
    lost = [r for r in children if r.info.status == "FAILED"]
    assert len(lost) == 1 and "died" in lost[0].data.tags["error"] and lost[0].data.tags["outcome"] == "lost"


@pytest.mark.slow
def test_killing_everything_then_running_again_completes_the_grid(tmp_path):
    from harness.schedule import RUN_ID

    suite = _sleepy_suite(tmp_path, seconds=3)
    uri, journal = f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path / "optuna.journal")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-m", "harness", "run", str(suite), "--tracking-uri", uri, "--results", str(tmp_path / "r"),
            "--workers", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)

    def some_done_and_some_running():
        study = _study(suite, journal)
        done = study.get_trials(states=(TrialState.COMPLETE,))
        mid_trial = [t for t in _running(suite, journal) if RUN_ID in t.user_attrs]
        return done if done and mid_trial else None

    done_before = _wait_for(some_done_and_some_running, 240, "a finished and a running trial")
    os.killpg(proc.pid, signal.SIGKILL)  # a power cut: coordinator, forkserver and workers at once
    proc.wait(30)
    time.sleep(1)
    children, _ = _children(uri, "sleepy")
    assert any(r.info.status == "RUNNING" for r in children)  # what the crash left behind

    again = _cli("run", str(suite), "--tracking-uri", uri, "--results", str(tmp_path / "r"), "--workers", "2")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "died" in again.stdout  # the stale trials were found and settled
    children = assert_each_cell_once(suite, journal, uri)
    study = _study(suite, journal)
    for t in done_before:  # finished before the crash: kept, not run again
        assert study.trials[t.number].state == TrialState.COMPLETE
    assert all(r.info.status in ("FINISHED", "FAILED") for r in children)


# --------------------------------------------------------------------------- failures, out of memory, divergence


@pytest.mark.slow
def test_out_of_memory_retries_with_a_smaller_micro_batch(tmp_path):
    suite = dict(TINY, name="oom", plugins=[FAULTS], training=dict(TINY["training"], seeds=[0], batch_size=8),
                 grid=[{"method": "oom_above", "settings": {"max_micro_batch": 2}},
                       {"method": "oom_above", "settings": {"max_micro_batch": 0}}])
    path = _write(tmp_path, suite)
    uri = f"sqlite:///{tmp_path}/m.db"
    code = main(["run", str(path), "--tracking-uri", uri, "--results", str(tmp_path / "r"), "--in-process"])
    assert code == 1  # the second cannot fit even one row
    children, _ = _children(uri, "oom")
    by_limit = {r.data.params["method.max_micro_batch"]: r for r in children}
    fits = by_limit["2"]
    assert fits.info.status == "FINISHED"
    assert fits.data.tags["oom_retries"] == "2" and fits.data.tags["micro_batch"] == "2"
    assert fits.data.params["batch_size"] == "8"  # the cell's configuration is unchanged; the tags say what ran
    never = by_limit["0"]
    assert never.info.status == "FAILED" and "out of memory" in never.data.tags["error"]
    assert never.data.tags["oom_retries"] == "3" and never.data.tags["micro_batch"] == "1"


@pytest.mark.slow
def test_a_nan_loss_stops_the_trial_as_diverged_and_a_failure_does_not_stop_the_rest(tmp_path):
    suite = dict(TINY, name="faulty", plugins=[FAULTS], training=dict(TINY["training"], seeds=[0]),
                 grid=[{"method": "nan_loss"}, {"method": "lora", "rank": 2, "settings": {"targets": ["nowhere"]}},
                       {"method": "lora", "rank": 2}])
    path = _write(tmp_path, suite)
    uri, journal = f"sqlite:///{tmp_path}/m.db", str(tmp_path / "optuna.journal")
    code = main(["run", str(path), "--tracking-uri", uri, "--results", str(tmp_path / "r"), "--in-process"])
    assert code == 1
    children, _ = _children(uri, "faulty")
    by_method = {(r.data.params["method"], r.data.params.get("method.targets")): r for r in children}
    diverged = next(r for r in children if r.data.params["method"] == "nan_loss")
    assert diverged.data.tags["outcome"] == "diverged" and "nan" in diverged.data.tags["error"].lower()
    failed = next(r for r in children if r.data.tags["outcome"] == "failed")
    assert "nowhere" in failed.data.tags["error"]
    assert sum(r.info.status == "FINISHED" for r in children) == 1 and len(by_method) == 3
    board = (tmp_path / "r" / "faulty" / "leaderboard.md").read_text()
    assert "diverged" in board and "nowhere" in board

    study = _study(path, journal)
    states = Counter(t.state for t in study.trials)
    assert states == {TrialState.COMPLETE: 1, TrialState.PRUNED: 1, TrialState.FAIL: 1}
    # running again retries the failure only: the divergence is a result, the finished cell is done
    main(["run", str(path), "--tracking-uri", uri, "--results", str(tmp_path / "r"), "--in-process"])
    states = Counter(t.state for t in _study(path, journal).trials)
    assert states == {TrialState.COMPLETE: 1, TrialState.PRUNED: 1, TrialState.FAIL: 2}


# --------------------------------------------------------------------------- search


@pytest.mark.slow
def test_search_gives_every_cell_the_same_budget_and_reports_the_best_trial(tmp_path):
    suite = dict(TINY, name="searched", training=dict(TINY["training"], seeds=[0]),
                 grid=[{"method": "full"}, {"method": "lora", "rank": 2, "search": {"settings.alpha": {"choices": [4, 16]}}}],
                 search={"trials": 3, "sampler": "random", "space": {"lr": {"low": 1e-4, "high": 1e-1, "log": True}}})
    path = _write(tmp_path, suite)
    uri, journal = f"sqlite:///{tmp_path}/m.db", str(tmp_path / "optuna.journal")
    assert main(["run", str(path), "--tracking-uri", uri, "--results", str(tmp_path / "r"), "--workers", "2"]) == 0
    children, _ = _children(uri, "searched")
    per_cell = Counter(r.data.tags["cell_id"] for r in children if r.info.status == "FINISHED")
    assert sorted(per_cell.values()) == [3, 3]
    lrs = [float(r.data.params["lr"]) for r in children]
    assert len(set(lrs)) == 6 and all(1e-4 <= lr <= 1e-1 for lr in lrs)
    lora = [r for r in children if r.data.params["method"] == "lora"]
    assert {float(r.data.params["method.alpha"]) for r in lora} <= {4.0, 16.0}
    study = _study(path, journal)
    params = {k.split("@")[0] for t in study.trials for k in t.params}
    assert params == {"lr", "settings.alpha"}
    runs_csv = (tmp_path / "r" / "searched" / "runs.csv").read_text()
    best = max((r for r in children if r.data.params["method"] == "full"), key=lambda r: r.data.metrics["val_score"])
    assert best.info.run_id in runs_csv


# --------------------------------------------------------------------------- leases and settling, unit by unit


def _frozen_running(user_attrs: dict, started_ago: float = 0.0) -> optuna.trial.FrozenTrial:
    import datetime

    return optuna.trial.FrozenTrial(
        number=0, state=TrialState.RUNNING, value=None, values=None,
        datetime_start=datetime.datetime.now() - datetime.timedelta(seconds=started_ago), datetime_complete=None,
        params={}, distributions={}, user_attrs=user_attrs, system_attrs={}, intermediate_values={}, trial_id=0)


def test_a_lease_is_stale_when_its_process_is_gone_or_it_expired():
    from harness.schedule import HOST, LEASE, LEASE_S, stale_reason

    now = time.time()
    me = {"host": HOST, "pid": os.getpid(), "pid_started": None, "name": "cpu0"}
    assert stale_reason(_frozen_running({WORKER: me, LEASE: now + 30}), now) is None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = stale_reason(_frozen_running({WORKER: dict(me, pid=dead.pid), LEASE: now + 30}), now)
    assert gone is not None and "died" in gone and str(dead.pid) in gone
    far = {"host": "another-machine", "pid": 1, "pid_started": None, "name": "gpu3"}
    assert stale_reason(_frozen_running({WORKER: far, LEASE: now + 30}), now) is None  # cannot see its pid: trust the lease
    expired = stale_reason(_frozen_running({WORKER: far, LEASE: now - 1}), now)
    assert expired is not None and "another-machine" in expired and "lease" in expired
    assert stale_reason(_frozen_running({}, started_ago=LEASE_S + 5), now) is not None  # claimed, never said who
    assert stale_reason(_frozen_running({}, started_ago=1), now) is None


def test_a_trial_whose_run_finished_before_its_worker_died_is_completed_not_rerun(tmp_path):
    """The worker logged everything to MLflow, then died before telling Optuna: nothing is lost or run twice."""
    from harness import schedule, track

    path = _write(tmp_path, dict(TINY, training=dict(TINY["training"], seeds=[0]), grid=[{"method": "full"}]))
    suite, cells = validate_suite(str(path))
    uri, journal = f"sqlite:///{tmp_path}/m.db", str(tmp_path / "optuna.journal")
    study, inv, notes = schedule.prepare(suite, cells, journal, uri, {}, {})
    assert notes == ["1 trial(s) enqueued"]
    trial = schedule._claim(study)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study._storage.set_trial_user_attr(trial._trial_id, WORKER, {"host": schedule.HOST, "pid": dead.pid,
                                                                 "pid_started": None, "name": "cpu0"})
    run_id = track.create_child(inv, cells[0].label, {}, {"cell_id": cells[0].id})
    study._storage.set_trial_user_attr(trial._trial_id, schedule.RUN_ID, run_id)
    track.log_metrics(uri, run_id, {"val_score": 0.75, "test_score": 0.7})
    track.end_run(uri, run_id, "FINISHED")

    with schedule.storage_lock(journal):
        notes = schedule.recover(study, uri)
        assert schedule.enqueue(study, cells, fresh=False) == 0
    assert len(notes) == 1 and "complete" in notes[0]
    [t] = study.get_trials()
    assert t.state == TrialState.COMPLETE and t.values == [0.75]
    assert schedule.progress(study, cells).line(1).startswith("trials: 1 done, 0 running, 0 failed, 0 left of 1")


def test_a_run_created_just_before_its_worker_died_is_found_and_ended(tmp_path):
    """Killed between creating its MLflow run and recording the run's id in the trial: the run still ends FAILED."""
    from harness import schedule, track

    path = _write(tmp_path, dict(TINY, training=dict(TINY["training"], seeds=[0]), grid=[{"method": "full"}]))
    suite, cells = validate_suite(str(path))
    uri, journal = f"sqlite:///{tmp_path}/m.db", str(tmp_path / "optuna.journal")
    study, inv, _ = schedule.prepare(suite, cells, journal, uri, {}, {})
    trial = schedule._claim(study)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study._storage.set_trial_user_attr(trial._trial_id, WORKER, {"host": schedule.HOST, "pid": dead.pid,
                                                                 "pid_started": None, "name": "cpu0"})
    other = track.create_child(inv, "another trial", {}, {"cell_id": "x", "trial": str(trial.number + 1)})
    run_id = track.create_child(inv, cells[0].label, {}, {"cell_id": cells[0].id, "trial": str(trial.number)})

    with schedule.storage_lock(journal):
        notes = schedule.recover(study, uri)
        assert schedule.enqueue(study, cells, fresh=False) == 1  # the slot goes back in the queue
    assert len(notes) == 1 and "ended FAILED" in notes[0]
    assert track.run_status(uri, run_id) == "FAILED"
    assert track.run_status(uri, other) == "RUNNING"  # another trial's run is left alone


# --------------------------------------------------------------------------- many machines: the README's recipe


@pytest.fixture
def mlflow_server(tmp_path, postgres_url_2):
    """A real `mlflow server` backed by PostgreSQL, as in the README's multi-machine recipe."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "mlflow-server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", postgres_url_2, "--artifacts-destination", str(tmp_path / "art"),
                             "--workers", "2"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return urllib.request.urlopen(f"{url}/health", timeout=2).status == 200
        except OSError:
            assert proc.poll() is None, (tmp_path / "mlflow-server.log").read_text()[-3000:]
            return False

    try:
        _wait_for(healthy, 120, "mlflow server")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()


@pytest.mark.slow
def test_a_second_machine_joins_with_worker_on_postgresql_and_an_mlflow_server(tmp_path, postgres_url, mlflow_server):
    suite = _sleepy_suite(tmp_path, seconds=2, n_cells=8)
    common = ["--storage", postgres_url, "--tracking-uri", mlflow_server, "--workers", "1"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first = subprocess.Popen([sys.executable, "-m", "harness", "run", str(suite), *common, "--results", str(tmp_path / "r")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(tmp_path))
    _wait_for(lambda: _running(suite, postgres_url), 180, "the first machine's first trial")
    second = _cli("worker", str(suite), *common, cwd=str(tmp_path))  # "another machine": its own process tree
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out[-3000:]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert_each_cell_once(suite, postgres_url, mlflow_server)
    study = _study(suite, postgres_url)
    pids = Counter(t.user_attrs[WORKER]["pid"] for t in study.get_trials(states=(TrialState.COMPLETE,)))
    assert len(pids) == 2 and min(pids.values()) >= 2, pids  # both machines took a share
    _, parents = _children(mlflow_server, "sleepy")
    assert parents[0].info.status == "FINISHED"
    assert (tmp_path / "r" / "sleepy" / "leaderboard.md").is_file()


def test_on_postgresql_a_silent_worker_on_another_host_is_found_by_optunas_heartbeat(tmp_path, postgres_url, monkeypatch):
    """No pid to look at on another machine: the RDB heartbeat expires, the trial fails, its run ends, the slot is re-queued."""
    from harness import schedule, track

    monkeypatch.setattr(schedule, "HEARTBEAT_S", 1)
    monkeypatch.setattr(schedule, "LEASE_S", 2)  # Optuna's grace period
    path = _write(tmp_path, dict(TINY, training=dict(TINY["training"], seeds=[0]), grid=[{"method": "full"}]))
    suite, cells = validate_suite(str(path))
    uri = f"sqlite:///{tmp_path}/m.db"
    study, inv, _ = schedule.prepare(suite, cells, postgres_url, uri, {}, {})
    trial = schedule._claim(study)
    far = {"host": "another-machine", "pid": 4242, "pid_started": None, "name": "gpu0"}
    study._storage.set_trial_user_attr(trial._trial_id, WORKER, far)
    study._storage.set_trial_user_attr(trial._trial_id, schedule.LEASE, time.time() + 3600)  # our lease alone would wait
    study._storage.record_heartbeat(trial._trial_id)
    run_id = track.create_child(inv, cells[0].label, {}, {"cell_id": cells[0].id})
    study._storage.set_trial_user_attr(trial._trial_id, schedule.RUN_ID, run_id)

    with schedule.storage_lock(postgres_url):
        assert schedule.recover(study, uri) == []  # heartbeat still fresh
    time.sleep(3.5)
    with schedule.storage_lock(postgres_url):
        notes = schedule.recover(study, uri)
        assert schedule.enqueue(study, cells, fresh=False) == 1
    assert any("no heartbeat" in n for n in notes)
    assert study.trials[0].state == TrialState.FAIL
    assert track.run_status(uri, run_id) == "FAILED"
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]


@pytest.mark.slow
def test_pareto_mode_optimises_score_and_memory_and_the_report_shows_the_front(tmp_path):
    suite = dict(TINY, name="pareto", training=dict(TINY["training"], seeds=[0]),
                 grid=[{"method": "lora", "rank": [2, 8]}],
                 search={"trials": 2, "objective": ["score", "peak_memory"], "space": {"lr": {"low": 1e-4, "high": 1e-2}}})
    path = _write(tmp_path, suite)
    uri, journal = f"sqlite:///{tmp_path}/m.db", str(tmp_path / "optuna.journal")
    assert main(["run", str(path), "--tracking-uri", uri, "--results", str(tmp_path / "r"), "--in-process"]) == 0
    study = _study(path, journal)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 4 and all(len(t.values) == 2 and t.values[1] > 0 for t in trials)
    # on a CPU the memory objective is the memory column, train_state_mb, not the worker's peak RSS
    children, _ = _children(uri, "pareto")
    assert sorted(t.values[1] for t in trials) == pytest.approx(
        sorted(r.data.metrics["train_state_mb"] for r in children if r.info.status == "FINISHED"))
    board = (tmp_path / "r" / "pareto" / "leaderboard.md").read_text()
    assert "Pareto front: validation score vs peak memory" in board


@pytest.mark.slow
def test_first_seed_protocol_searches_seed_0_and_reruns_its_choice_on_the_other_seeds(tmp_path):
    """search: {trials: 3, protocol: first_seed} with no space: each method searches its own
    registry lr range on seed 0; seeds 1 and 2 run once with seed 0's best trial's lr."""
    from methods import get_method

    suite = dict(TINY, name="firstseed", training=dict(TINY["training"], seeds=[0, 1, 2]),
                 grid=[{"method": "lora", "rank": 2}, {"method": "head_only"}],
                 search={"trials": 3, "sampler": "random", "protocol": "first_seed"})
    path = _write(tmp_path, suite)
    uri = f"sqlite:///{tmp_path}/m.db"
    assert main(["run", str(path), "--tracking-uri", uri, "--results", str(tmp_path / "r"), "--in-process"]) == 0
    children, _ = _children(uri, "firstseed")
    finished = [r for r in children if r.info.status == "FINISHED"]
    lora = [r for r in finished if r.data.params["method"] == "lora"]
    by_seed = {s: [r for r in lora if r.data.params["seed"] == s] for s in ("0", "1", "2")}
    assert [len(by_seed[s]) for s in ("0", "1", "2")] == [3, 1, 1]
    low, high = get_method("lora").lr_range
    searched = [float(r.data.params["lr"]) for r in by_seed["0"]]
    assert len(set(searched)) == 3 and all(low <= lr <= high for lr in searched)
    chosen = max(by_seed["0"], key=lambda r: (r.data.metrics["val_score"], int(r.data.tags["trial"])))  # ties: latest
    runs_csv = pd.read_csv(tmp_path / "r" / "firstseed" / "runs.csv")
    assert chosen.info.run_id in set(runs_csv.loc[runs_csv["chosen"], "run_id"])  # the report stands by the same trial
    board = (tmp_path / "r" / "firstseed" / "leaderboard.md").read_text()
    assert "Protocol first_seed: seed 0 searches, 3 trials per cell" in board
    for s in ("1", "2"):
        rerun = by_seed[s][0]
        assert float(rerun.data.params["lr"]) == float(chosen.data.params["lr"])
        assert rerun.data.tags["search_from"].endswith("lora r2 seed0")
        assert rerun.data.tags["search_from_trial"] == chosen.data.tags["trial"]
    head_only = [r for r in finished if r.data.params["method"] == "head_only"]
    assert sorted(r.data.params["seed"] for r in head_only) == ["0", "1", "2"]  # nothing to search: once per seed
    assert all("search_from" not in r.data.tags for r in head_only)


# --------------------------------------------------------------------------- sampling: each cell searches alone


def _searched_cells(tmp_path: Path, seeds: int, trials: int):
    from harness.grid import expand_grid

    suite = load_suite(_write(tmp_path, dict(
        TINY, name="draws", training=dict(TINY["training"], seeds=list(range(seeds))), grid=[{"method": "lora", "rank": 2}],
        search={"trials": trials, "protocol": "per_seed", "space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}})))
    return suite, [c for c in expand_grid(suite) if c.runnable]


def _told(study: optuna.Study, slot: str, params: dict, value: float) -> None:
    dists = {k: optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True) for k in params}
    study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, values=[value],
                                              user_attrs={SLOT: slot}))


def test_a_cells_draws_ignore_the_other_cells_in_the_shared_study(tmp_path):
    """Optuna's TPE reads the whole study; the harness must not let other cells end a cell's
    random start-up (first draws piled at the range's ends) or steer its later draws."""
    import math

    from harness.schedule import cell_values

    suite, cells = _searched_cells(tmp_path, seeds=40, trials=8)
    alone, shared = optuna.create_study(direction="maximize"), optuna.create_study(direction="maximize")
    for i, other in enumerate(cells[20:]):  # other cells' finished trials, only in `shared`
        _told(shared, other.slots()[0], {f"lr@{other.id}": 10 ** (-4 + 2 * (i % 7) / 6)}, value=i % 3 / 3)
    cell = cells[0]
    for k in range(4):  # the cell's own history, in both: past TPE's start-up of 4 trials
        lr = 10 ** (-4 + 2 * k / 3)
        for study in (alone, shared):
            _told(study, cell.slots()[k], {f"lr@{cell.id}": lr}, value=lr)
    for k in range(4, 8):
        assert cell_values(shared, suite, cell, cell.slots()[k]) == cell_values(alone, suite, cell, cell.slots()[k])

    # first draws of 20 fresh cells in a study full of finished trials: spread over the range
    qs = []
    for c in cells[:20]:
        for slot in c.slots()[:2]:
            (lr,) = cell_values(shared, suite, c, slot).values()
            qs.append((math.log10(lr) + 4) / 2)
    near_ends = sum(q < 0.05 or q > 0.95 for q in qs) / len(qs)
    assert near_ends <= 0.2, near_ends  # uniform: 0.1; TPE on the shared study's history: about a third
    assert all(0.0 <= q <= 1.0 for q in qs)
