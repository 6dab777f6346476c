"""Scheduling with Optuna: the only module that imports optuna.

One study per suite, named from the suite's name and content (`study_name`), so the
same command run again continues the same study.  Every cell gets `search.trials`
slots ("<cell id>/<k>"), the same number for every method; each slot is enqueued as
one Optuna trial that carries its slot in a user attribute (not GridSampler, which
hands out duplicate points to parallel workers).  The sampler chooses only the
searched values, under parameter names private to the cell ("lr@<cell id>"), and
TPE sees only that cell's own finished trials (`cell_values`: a study shared by
every cell would let other cells' trials end TPE's random start-up and decide which
of this cell's trials count as good), so one method's learning rates never steer
another's.  The objective is the validation score (and peak memory, in Pareto
mode).

Workers claim WAITING trials atomically (the storage moves WAITING -> RUNNING for
exactly one of them), run them in-process, and tell the result:

    COMPLETE  finished; values = [val_score] or [val_score, memory] (runner.objective_values)
    PRUNED    the loss diverged (a result, not retried)
    FAIL      an exception (outcome "failed"), a lost worker (outcome "lost") or
              Ctrl-C (outcome "killed"); the next `run` or `worker` retries it

Dead workers: each running trial holds a lease (user attributes: host, pid and
start time of the worker process, and an expiry renewed every HEARTBEAT_S seconds).
On PostgreSQL (RDBStorage) Optuna's own heartbeat is recorded too and
`fail_stale_trials` fails what it missed.  A trial is stale when its worker's
process is gone (same host) or its lease expired (any host).  Recovery looks at the
trial's MLflow run: FINISHED -> the trial is completed from the run's metrics (so a
worker killed between logging and telling loses nothing); otherwise the run ends
FAILED, the trial FAIL ("lost"), and its slot is enqueued again (at most
MAX_LOST_RETRIES times per invocation).  Every change of that kind (stale
recovery, enqueueing) happens under one lock per storage - a file lock next to the
journal, a PostgreSQL advisory lock - so two workers never enqueue the same slot.
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.trial import TrialState

from harness import track
from harness.errors import SuiteError
from harness.grid import Cell
from harness.runner import TrialOutcome, objective_values
from harness.suite import Suite

optuna.logging.set_verbosity(optuna.logging.WARNING)

HEARTBEAT_S = 10  # lease renewal and RDB heartbeat interval
LEASE_S = 60  # a lease not renewed for this long is stale (another host's worker died)
POLL_S = 1.0  # idle workers and the live view look at the study this often
MAX_LOST_RETRIES = 2  # a slot whose worker died is tried again at most this often per invocation

SLOT, CELL, OUTCOME, REASON, RUN_ID, WORKER, LEASE = ("harness.slot", "harness.cell_id", "harness.outcome", "harness.reason",
                                                      "harness.run_id", "harness.worker", "harness.lease_expires")
PARENT = "harness.mlflow_parent_run_id"
HOST = socket.gethostname()


def study_name(suite: Suite) -> str:
    return f"{suite.name}-{suite.fingerprint()}"


# --------------------------------------------------------------------------- storages


def resolve_storage(cli_value: str | None, tracking_uri: str) -> str:
    """--storage, else an Optuna journal file next to the MLflow store.

    A URL with a database scheme (postgresql://, mysql://) means RDBStorage; anything
    else is a journal file path.  SQLite is refused: it is not safe for parallel workers.
    """
    if cli_value:
        if cli_value.startswith("sqlite:"):
            raise SuiteError("--storage", "--storage", "a journal file path or postgresql://...", cli_value,
                             "SQLite is not safe for parallel workers; leave --storage out for a local journal file")
        return cli_value
    if tracking_uri.startswith("sqlite:///"):
        return str(Path(tracking_uri[len("sqlite:///"):]).resolve().parent / "optuna.journal")
    return str(Path.cwd() / "optuna.journal")


def is_rdb(storage_url: str) -> bool:
    return "://" in storage_url


def _storage(storage_url: str):
    if is_rdb(storage_url):
        with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna 5; we rely on it knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(storage_url, heartbeat_interval=HEARTBEAT_S, grace_period=LEASE_S,
                                              engine_kwargs={"pool_pre_ping": True})
    from optuna.storages.journal import JournalFileBackend

    Path(storage_url).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(storage_url))


@contextlib.contextmanager
def storage_lock(storage_url: str) -> Iterator[None]:
    """Serialises recovery and enqueueing across processes and machines sharing a storage."""
    if is_rdb(storage_url):
        import sqlalchemy

        if not storage_url.startswith(("postgresql", "postgres")):
            yield  # other databases: no advisory lock; start the first worker alone, then the rest
            return
        key = int.from_bytes(hashlib.sha256(b"peft-harness").digest()[:7], "big")
        engine = sqlalchemy.create_engine(storage_url, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        engine.dispose()
        return
    with open(f"{storage_url}.harness-lock", "a") as fh:  # not ".lock": the journal backend uses that name
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def directions(suite: Suite) -> list[str]:
    """Validation score up; peak memory down in Pareto mode.  Every metric we have is higher-is-better."""
    from harness.metrics import METRICS

    metric_dirs = {METRICS[t.metric].higher_is_better for t in suite.tasks}
    score = "maximize" if metric_dirs == {True} else "minimize"
    return [score] + (["minimize"] if "peak_memory" in suite.search.objectives else [])


def open_study(suite: Suite, storage_url: str) -> optuna.Study:
    return optuna.create_study(study_name=study_name(suite), storage=_storage(storage_url),
                               directions=directions(suite), load_if_exists=True)


def _sampler(suite: Suite, slot: str):
    """Seeded by the slot: trial k of a cell draws the same start-up values on any worker."""
    seed = int.from_bytes(hashlib.sha256(slot.encode()).digest()[:4], "big")
    if suite.search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, suite.search.trials // 2)))


def cell_values(study: optuna.Study, suite: Suite, cell: Cell, slot: str) -> dict[str, Any]:
    """The searched values for one trial of `cell`, drawn from the cell's own history alone.

    Optuna's TPE reads the whole study: it leaves its random start-up once the study
    (any cell) has n_startup_trials finished trials, and ranks trials as good or bad
    among all of them.  In the one study a suite shares, a cell's first trials would
    then come from TPE's empty-history model, which piles them at the ends of the range
    (measured: a third of first draws within 5% of an end, against a tenth uniformly),
    and other methods' scores would decide which of its trials TPE follows.  So the
    sampler runs on an in-memory study holding only this cell's finished trials; the
    values it draws are then recorded on the real trial under the cell's names.
    """
    own = _cell_trials(study, cell, (TrialState.COMPLETE, TrialState.PRUNED))
    scratch = optuna.create_study(directions=study.directions, sampler=_sampler(suite, slot))
    for t in own:
        scratch.add_trial(optuna.trial.create_trial(state=t.state, params=t.params, distributions=t.distributions,
                                                    values=t.values if t.state == TrialState.COMPLETE else None))
    values = sample(scratch.ask(), cell)
    return {f"{name}@{cell.id}": v for name, v in values.items()}


# --------------------------------------------------------------------------- leases


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _worker_identity(name: str) -> dict[str, Any]:
    return {"host": HOST, "pid": os.getpid(), "pid_started": _process_start(os.getpid()), "name": name}


def stale_reason(trial: optuna.trial.FrozenTrial, now: float) -> str | None:
    """Why a RUNNING trial's worker is gone, or None while it looks alive."""
    who = trial.user_attrs.get(WORKER)
    if who is None:  # claimed, then died before it could say who it is
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        return "worker lost before it started the trial" if now - started > LEASE_S else None
    if who["host"] == HOST:
        started = _process_start(who["pid"])
        if started is None or (who.get("pid_started") and abs(started - who["pid_started"]) > 1):
            return f"worker {who['name']} (pid {who['pid']} on {who['host']}) died"
    expires = trial.user_attrs.get(LEASE, 0)
    if now > expires:
        return f"worker {who['name']} (pid {who['pid']} on {who['host']}) stopped renewing its lease"
    return None


class Lease:
    """Renews the running trial's lease (and the RDB heartbeat) from a daemon thread."""

    def __init__(self, study: optuna.Study):
        self.study, self.trial_id = study, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="harness-lease")
        self._thread.start()

    def hold(self, trial_id: int | None) -> None:
        self.trial_id = trial_id
        if trial_id is not None:
            self._renew(trial_id)

    def _renew(self, trial_id: int) -> None:
        storage = self.study._storage
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_trial_user_attr(trial_id, LEASE, time.time() + LEASE_S)
            if hasattr(storage, "record_heartbeat"):
                storage.record_heartbeat(trial_id)

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            trial_id = self.trial_id
            if trial_id is not None:
                with contextlib.suppress(Exception):  # a missed renewal is retried; expiry is 6 renewals away
                    self._renew(trial_id)

    def close(self) -> None:
        self._stop.set()


# --------------------------------------------------------------------------- slots and recovery


def _by_slot(study: optuna.Study, trials: list | None = None) -> dict[str, list[optuna.trial.FrozenTrial]]:
    out: dict[str, list] = defaultdict(list)
    for t in study.get_trials(deepcopy=False) if trials is None else trials:
        slot = t.user_attrs.get(SLOT)
        if slot:
            out[slot].append(t)
    return out


def _lost(t: optuna.trial.FrozenTrial) -> bool:
    """FAIL without our outcome: Optuna's heartbeat check failed it; or recovery marked it lost."""
    return t.state == TrialState.FAIL and t.user_attrs.get(OUTCOME, "lost") == "lost"


def recover(study: optuna.Study, tracking_uri: str) -> list[str]:
    """Settle RUNNING trials whose worker is gone; returns what was done, one line each."""
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # RDB heartbeat; a no-op on the journal
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if SLOT not in t.user_attrs:
            continue
        reason = stale_reason(t, now)
        if reason is not None:
            notes.append(_settle(study, t, tracking_uri, reason))
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        # failed by Optuna's heartbeat check: its MLflow run may still say RUNNING
        if SLOT in t.user_attrs and OUTCOME not in t.user_attrs and t._trial_id not in _CLOSED:
            _CLOSED.add(t._trial_id)  # a finished trial cannot be marked, so remember it here
            run_id = _trial_run(study, t, tracking_uri)
            if run_id and track.run_status(tracking_uri, run_id) == "RUNNING":
                track.end_run(tracking_uri, run_id, "FAILED", error="worker lost: no heartbeat")
                track.log_tags(tracking_uri, run_id, {"outcome": "lost"})
                notes.append(f"trial {t.number}: worker lost (no heartbeat); its run ended FAILED")
    return notes


_CLOSED: set[int] = set()  # heartbeat-failed trials whose MLflow run this process has already looked at


def _trial_run(study: optuna.Study, t: optuna.trial.FrozenTrial, uri: str) -> str | None:
    """The trial's MLflow run id: recorded by its worker, else found by tags (killed between creating and recording it)."""
    if RUN_ID in t.user_attrs:
        return t.user_attrs[RUN_ID]
    parent = study.user_attrs.get(PARENT)
    return track.find_trial_run(uri, parent, t.number) if parent else None


def _settle(study: optuna.Study, t: optuna.trial.FrozenTrial, uri: str, reason: str) -> str:
    storage, run_id = study._storage, _trial_run(study, t, uri)
    status = track.run_status(uri, run_id) if run_id else None
    try:
        if status == "FINISHED":  # the worker logged everything, then died before telling Optuna
            values = objective_values(track.run_metrics(uri, run_id), track.run_tags(uri, run_id), len(study.directions) > 1)
            storage.set_trial_user_attr(t._trial_id, OUTCOME, "complete")
            storage.set_trial_state_values(t._trial_id, TrialState.COMPLETE, values)
            return f"trial {t.number}: {reason}; its run had finished, so the trial is complete"
        storage.set_trial_user_attr(t._trial_id, OUTCOME, "lost")
        storage.set_trial_user_attr(t._trial_id, REASON, reason)
        if status == "RUNNING":
            track.log_tags(uri, run_id, {"outcome": "lost"})
            track.end_run(uri, run_id, "FAILED", error=reason)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return f"trial {t.number}: settled by another process"
    return f"trial {t.number}: {reason}; its run ended FAILED and the slot goes back in the queue"


def resettle(study: optuna.Study, cells: list[Cell], storage_url: str, tracking_uri: str, fresh: bool) -> list[str]:
    """Under the storage's lock: settle dead workers' trials, then enqueue what is missing (see `enqueue`)."""
    with storage_lock(storage_url):
        notes = recover(study, tracking_uri)
        n = enqueue(study, cells, fresh)
    return notes + ([f"{n} trial(s) enqueued"] if n else [])


def enqueue(study: optuna.Study, cells: list[Cell], fresh: bool) -> int:
    """Enqueue each slot that has no waiting, running or done trial; returns how many.

    fresh (a new invocation): every such slot, failed ones included.  Otherwise (a
    worker, mid-invocation): only slots whose trials were all lost, up to MAX_LOST_RETRIES,
    and the first reruns of a `first_seed` search.  A rerun cell (`search_from`) is
    enqueued only once its first seed's search has settled (`search_settled`), after the
    other slots, so a lost search slot re-enqueued in this same call keeps it waiting.
    """
    by_slot, n = _by_slot(study), 0
    by_id = {c.id: c for c in cells}
    for rerun in (False, True):
        if rerun:
            by_slot = _by_slot(study)  # what the first pass enqueued counts as unsettled
        for cell in cells:
            if not cell.runnable or bool(cell.search_from) != rerun:
                continue
            if rerun and not search_settled(by_slot, by_id[cell.search_from]):
                continue
            for slot in cell.slots():
                trials = by_slot.get(slot, [])
                if any(t.state not in (TrialState.FAIL,) for t in trials):
                    continue
                if not fresh and trials:
                    if not all(_lost(t) for t in trials) or sum(_lost(t) for t in trials) > MAX_LOST_RETRIES:
                        continue
                elif not fresh and not rerun:
                    continue
                study.enqueue_trial({}, user_attrs={SLOT: slot, CELL: cell.id})
                n += 1
    return n


def search_settled(by_slot: dict[str, list], source: Cell) -> bool:
    """Every slot of the searching cell has a trial and none is waiting or running."""
    for slot in source.slots():
        trials = by_slot.get(slot, [])
        if not trials or any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials):
            return False
    return True


def _cell_trials(study: optuna.Study, cell: Cell, states: tuple[TrialState, ...]) -> list[optuna.trial.FrozenTrial]:
    """The study's trials in `states` that belong to one of the cell's slots."""
    slots = set(cell.slots())
    return [t for t in study.get_trials(deepcopy=False, states=states) if t.user_attrs.get(SLOT) in slots]


def chosen_values(study: optuna.Study, source: Cell, maximize: bool = True) -> tuple[dict[str, Any], int] | None:
    """The searched values of the source cell's best COMPLETE trial by validation score (ties:
    the latest trial, as the report chooses), with that trial's number; None when none completed."""
    done = [t for t in _cell_trials(study, source, (TrialState.COMPLETE,)) if t.values]
    if not done:
        return None
    best = max(done, key=lambda t: ((1 if maximize else -1) * t.values[0], t.number))
    suffix = f"@{source.id}"
    return {k[:-len(suffix)]: v for k, v in best.params.items() if k.endswith(suffix)}, best.number


# --------------------------------------------------------------------------- progress


@dataclass
class Progress:
    done: int = 0
    diverged: int = 0
    running: int = 0
    failed: int = 0
    left: int = 0
    durations: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.done + self.diverged + self.running + self.failed + self.left

    def eta_s(self, workers: int) -> float | None:
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        return mean * (self.left + 0.5 * self.running) / max(1, workers)

    def line(self, workers: int) -> str:
        eta = self.eta_s(workers)
        eta_text = "finished" if not (self.left or self.running) else "ETA --" if eta is None else f"ETA {_duration(eta)}"
        div = f", {self.diverged} diverged" if self.diverged else ""
        return (f"trials: {self.done} done{div}, {self.running} running, {self.failed} failed, {self.left} left "
                f"of {self.total} | {eta_text}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress(study: optuna.Study, cells: list[Cell], trials: list | None = None) -> Progress:
    """Each slot counted once, by its most telling trial: done > running > waiting > failed."""
    by_slot, p = _by_slot(study, trials), Progress()
    for cell in cells:
        if not cell.runnable:
            continue
        for slot in cell.slots():
            states = {t.state for t in by_slot.get(slot, [])}
            if TrialState.COMPLETE in states:
                p.done += 1
            elif TrialState.PRUNED in states:
                p.diverged += 1
            elif TrialState.RUNNING in states:
                p.running += 1
            elif TrialState.WAITING in states:
                p.left += 1
            elif states:
                p.failed += 1
            else:
                p.left += 1
            for t in by_slot.get(slot, []):
                if t.state == TrialState.COMPLETE and t.datetime_start and t.datetime_complete:
                    p.durations.append((t.datetime_complete - t.datetime_start).total_seconds())
    return p


# --------------------------------------------------------------------------- the study's MLflow parent run


def prepare(suite: Suite, cells: list[Cell], storage_url: str, tracking_uri: str, parent_tags: dict[str, str],
            parent_files: dict[str, str]) -> tuple[optuna.Study, track.Invocation, list[str]]:
    """Open (or create) the study and its MLflow parent run, settle dead trials, enqueue what is missing."""
    study = open_study(suite, storage_url)
    with storage_lock(storage_url):
        parent = study.user_attrs.get(PARENT)
        if parent:
            inv = track.reopen_invocation(tracking_uri, parent)
        else:
            inv = track.start_invocation(tracking_uri, suite.name, parent_tags | {"study": study.study_name}, parent_files)
            study.set_user_attr(PARENT, inv.parent_run_id)
    return study, inv, resettle(study, cells, storage_url, tracking_uri, fresh=True)


def invocation_of(study: optuna.Study, suite: Suite, tracking_uri: str) -> track.Invocation:
    parent = study.user_attrs.get(PARENT)
    if not parent:
        raise RuntimeError(f"study {study.study_name} has no MLflow parent run: run `python -m harness run` or "
                           "`python -m harness worker` (which prepare it) first")
    return track.invocation_for(tracking_uri, parent)


# --------------------------------------------------------------------------- the worker loop


def _claim(study: optuna.Study) -> optuna.Trial | None:
    """Take one WAITING trial of ours; the storage lets exactly one process move it to RUNNING."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if SLOT not in t.user_attrs:
            continue
        try:
            if study._storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, t._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def sample(trial: optuna.Trial, cell: Cell) -> dict[str, Any]:
    """The cell's searched values for this trial, under names private to the cell."""
    values = {}
    for p in cell.space:
        name = f"{p.name}@{cell.id}"
        if p.choices is not None:
            values[p.name] = trial.suggest_categorical(name, list(p.choices))
        elif p.integer:
            values[p.name] = trial.suggest_int(name, int(p.low), int(p.high), log=p.log)
        else:
            values[p.name] = trial.suggest_float(name, float(p.low), float(p.high), log=p.log)
    return values


Execute = Callable[[Suite, Cell, dict[str, Any], dict[str, str], track.Invocation, Callable[[str], None]], TrialOutcome]
"""execute(suite, cell, searched values, extra MLflow tags, invocation, on_run_created) -> outcome
(`harness.runner.execute_trial`).

It creates its MLflow child run, hands the run id to on_run_created at once (so a
dead worker's run can be found and closed), and ends the run itself."""


def work(suite: Suite, cells: list[Cell], storage_url: str, tracking_uri: str, name: str,
         execute: Execute, log: Callable[[str], None] = print) -> int:
    """Claim and run trials until none is waiting or running; returns how many this worker ran."""
    study = open_study(suite, storage_url)
    inv = invocation_of(study, suite, tracking_uri)
    by_id = {c.id: c for c in cells}
    lease, ran = Lease(study), 0
    try:
        while True:
            trial = _claim(study)
            if trial is None:
                for note in resettle(study, cells, storage_url, tracking_uri, fresh=False):
                    log(f"[{name}] {note}")
                trial = _claim(study)
            if trial is None:
                if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
                    return ran
                time.sleep(POLL_S)  # others are running: stay to pick up what a dead worker leaves
                continue
            ran += 1
            _run_one(study, trial, by_id, inv, lease, name, execute, suite, log)
    finally:
        lease.close()


def _run_one(study, trial: optuna.Trial, by_id: dict[str, Cell], inv: track.Invocation, lease: Lease, name: str,
             execute, suite: Suite, log) -> None:
    storage, tid = study._storage, trial._trial_id
    slot = trial.user_attrs[SLOT]
    cell = by_id.get(trial.user_attrs[CELL])
    storage.set_trial_user_attr(tid, WORKER, _worker_identity(name))
    lease.hold(tid)
    try:
        if cell is None:  # enqueued by a different version of the suite: cannot be run from this one
            storage.set_trial_user_attr(tid, OUTCOME, "failed")
            storage.set_trial_user_attr(tid, REASON, "cell not in this suite")
            study.tell(trial, state=TrialState.FAIL)
            return
        extra: dict[str, str] = {}
        if cell.search_from:  # first_seed protocol: rerun the first seed's chosen values
            source = by_id[cell.search_from]
            chosen = chosen_values(study, source, directions(suite)[0] == "maximize")
            if chosen is None:
                reason = f"the search on {source.label} finished no trial, so there is nothing to rerun"
                log(f"[{name}] FAILED {cell.label}: {reason}")
                storage.set_trial_user_attr(tid, OUTCOME, "failed")
                storage.set_trial_user_attr(tid, REASON, reason)
                study.tell(trial, state=TrialState.FAIL)
                return
            values, source_trial = chosen
            extra = {"search_from": source.label, "search_from_trial": str(source_trial)}
        else:
            with warnings.catch_warnings():  # "PartialFixedSampler is experimental": stable since Optuna 2.4
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.sampler = optuna.samplers.PartialFixedSampler(cell_values(study, suite, cell, slot),
                                                                    optuna.samplers.RandomSampler())
            values = sample(trial, cell)
        k = int(slot.rsplit("/", 1)[1])
        log(f"[{name}] start {cell.label} trial {k + 1}/{cell.trials} (optuna #{trial.number})"
            + (f" {json.dumps(values)}" if values else "") + (f" (chosen on {extra['search_from']})" if extra else ""))
        tags = {"slot": slot, "trial": str(trial.number), "study": study.study_name, "worker": f"{HOST}/{name}",
                "search_values": json.dumps(values, sort_keys=True), **extra}
        try:
            result = execute(suite, cell, values, tags, inv, lambda run_id: storage.set_trial_user_attr(tid, RUN_ID, run_id))
        except KeyboardInterrupt:
            storage.set_trial_user_attr(tid, OUTCOME, "killed")
            storage.set_trial_user_attr(tid, REASON, "interrupted")
            study.tell(trial, state=TrialState.FAIL)
            raise
        storage.set_trial_user_attr(tid, OUTCOME, result.outcome)
        if result.reason:
            storage.set_trial_user_attr(tid, REASON, result.reason[:2000])
        if result.outcome == "complete":
            study.tell(trial, result.values)
        elif result.outcome == "diverged":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, state=TrialState.FAIL)
    finally:
        lease.hold(None)


# --------------------------------------------------------------------------- worker processes


@dataclass(frozen=True)
class WorkerPlan:
    name: str
    cuda_visible: str | None  # CUDA_VISIBLE_DEVICES for this worker; None on CPU
    threads: int  # torch intra-op threads


def visible_gpus() -> list[str]:
    """GPU indices, without initialising CUDA in this process (workers must pick their own)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
        return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []
    except (OSError, subprocess.SubprocessError):
        return []


def plan_workers(devices: str | None, per_device: int, workers: int | None, gpus: list[str] | None = None) -> list[WorkerPlan]:
    """One worker per GPU (x per_device), pinned with CUDA_VISIBLE_DEVICES; else `workers` CPU workers sharing the cores."""
    gpus = visible_gpus() if gpus is None else gpus
    if devices:
        wanted = [d.strip() for d in devices.split(",") if d.strip()]
        unknown = [d for d in wanted if d not in gpus]
        if unknown:
            raise SuiteError("--devices", "--devices", "GPU indices from " + (", ".join(gpus) or "<none found>"),
                             devices, "run nvidia-smi to see the GPUs, or leave --devices out")
        gpus = wanted
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if gpus and workers:
        raise SuiteError("--workers", "--workers", "no --workers on a machine with GPUs (one worker per GPU)",
                         workers, f"GPUs found: {', '.join(gpus)}; use --per-device K to pack trials on each GPU, "
                                  "or set CUDA_VISIBLE_DEVICES= (empty) to run CPU workers instead")
    if gpus:
        n = len(gpus) * per_device
        threads = max(1, cores // n)
        return [WorkerPlan(f"gpu{g}" + (f".{k}" if per_device > 1 else ""), g, threads)
                for g in gpus for k in range(per_device)]
    n = workers or 1
    return [WorkerPlan(f"cpu{k}", None, max(1, cores // n)) for k in range(n)]


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the one that started it dies (no orphans training on)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def worker_main(suite_file: str, storage_url: str, tracking_uri: str, plan: WorkerPlan, log_file: str) -> None:
    """Entry point of a worker process: pin the device, then claim trials until the study is done."""
    _die_with_parent()
    if plan.cuda_visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = plan.cuda_visible
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    fh = open(log_file, "a", buffering=1)
    os.dup2(fh.fileno(), 1)
    os.dup2(fh.fileno(), 2)
    sys.stdout = sys.stderr = fh
    import torch

    torch.set_num_threads(plan.threads)
    if plan.cuda_visible is not None and torch.cuda.is_initialized():
        raise RuntimeError("CUDA was initialised before the worker pinned its device")
    from harness.cli import validate_suite
    from harness.runner import execute_trial

    suite, cells = validate_suite(suite_file)
    _freeze_imports()
    work(suite, cells, storage_url, tracking_uri, plan.name, execute_trial,
         log=lambda m: print(f"{time.strftime('%H:%M:%S')} {m}", flush=True))


def _freeze_imports() -> None:
    """Import what a trial imports, then move every object alive now into gc's permanent generation.

    A worker holds about 600k objects from the torch, transformers, peft and MLflow imports.
    Every full garbage collection walks them all (0.27 s on 2 cores): the two a trial makes
    before its peak-memory windows (`measure.PeakMemory`) and Python's own during training.
    They live as long as the worker, so frozen they are simply skipped; objects a trial
    creates are collected as before.  Speed only: no measured value changes.
    """
    import gc

    import harness.data  # noqa: F401 - imported here, not on the first trial, so that they are frozen too
    import harness.inference  # noqa: F401
    import harness.measure  # noqa: F401
    import harness.models  # noqa: F401
    import harness.probe  # noqa: F401
    import methods  # noqa: F401

    gc.collect()
    gc.freeze()


_CPU_CONTEXT = None


def _context(cuda: bool):
    """GPU workers start clean (spawn); CPU workers fork from a server that imported torch once."""
    global _CPU_CONTEXT
    if cuda or "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    if _CPU_CONTEXT is None:
        _CPU_CONTEXT = mp.get_context("forkserver")
        _CPU_CONTEXT.set_forkserver_preload(["torch", "transformers", "peft", "harness.runner", "harness.cli",
                                             "harness.schedule", "mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store"])
    return _CPU_CONTEXT


def warm_up(plans: list[WorkerPlan]) -> None:
    """Start the CPU workers' forkserver now, so its imports overlap the coordinator's MLflow/Optuna setup."""
    if any(p.cuda_visible is None for p in plans) and "forkserver" in mp.get_all_start_methods():
        _context(cuda=False)
        from multiprocessing import forkserver

        forkserver.ensure_running()


def start_worker(suite_file: str, storage_url: str, tracking_uri: str, plan: WorkerPlan, log_file: str):
    proc = _context(plan.cuda_visible is not None).Process(
        target=worker_main, args=(suite_file, storage_url, tracking_uri, plan, log_file), name=f"harness-{plan.name}")
    proc.start()
    proc.log_file = log_file  # for the coordinator's message if the worker dies
    return proc


def _log_tail(path: str | None, lines: int = 6) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines() if path else []
    except OSError:
        return ""
    return "\n".join("    | " + line[:200] for line in text[-lines:])


def live(study: optuna.Study, cells: list[Cell], procs: dict, restart: Callable[[str], Any], tracking_uri: str,
         storage_url: str, out=sys.stdout) -> Progress:
    """The coordinator's view until every worker has exited: a progress line, one line per finished
    trial, and recovery the moment a local worker dies (its trial goes back in the queue)."""
    labels = {slot: (c.label, k, c.trials) for c in cells for k, slot in enumerate(c.slots())}
    seen: set[int] = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    restarts: Counter = Counter()
    tty = out.isatty()
    erase = "\r\033[K" if tty else ""  # on a terminal the progress line is rewritten in place
    last_line, last_print = "", 0.0
    while True:
        alive = {n: p for n, p in procs.items() if p.is_alive()}
        for n, p in list(procs.items()):
            if not p.is_alive() and p.exitcode not in (0, None):
                log_file = getattr(p, "log_file", None)
                print(f"{erase}worker {n} died (exit code {p.exitcode}); its log: {log_file}", file=out, flush=True)
                tail = _log_tail(log_file)
                if tail:
                    print(tail, file=out, flush=True)
                for note in resettle(study, cells, storage_url, tracking_uri, fresh=False):
                    print(f"  {note}", file=out, flush=True)
                del procs[n]
                if restarts[n] < 3 and study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                    restarts[n] += 1
                    procs[n] = restart(n)
                    alive[n] = procs[n]
        trials = study.get_trials(deepcopy=False)  # one read per tick, for the events and the counts
        for t in trials:
            if t.state.is_finished() and t.number not in seen and SLOT in t.user_attrs:
                seen.add(t.number)
                label, k, n_trials = labels.get(t.user_attrs[SLOT], ("?", 0, 1))
                budget = f" trial {k + 1}/{n_trials}" if n_trials > 1 else ""
                secs = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_start and t.datetime_complete else 0
                outcome = t.user_attrs.get(OUTCOME, "lost" if t.state == TrialState.FAIL else t.state.name.lower())
                if t.state == TrialState.COMPLETE:
                    what = "done    " + f"val {t.values[0]:.4f}"
                else:
                    what = f"{outcome.upper():8}" + (t.user_attrs.get(REASON, "") or "")[:160]
                who = t.user_attrs.get(WORKER, {}).get("name", "?")
                text = f"  {what}  {label}{budget}  ({secs:.0f} s, {who})"
                print(erase + text, file=out, flush=True)
        p = progress(study, cells, trials)
        if not alive:
            print(erase, end="", file=out, flush=True)
            return p  # the caller prints the final count
        line, now = p.line(len(procs)), time.monotonic()
        if tty:
            print(erase + line, end="", file=out, flush=True)
        elif line != last_line and now - last_print >= 10:  # a log file gets a line at most every 10 s
            print(line, file=out, flush=True)
            last_line, last_print = line, now
        mp.connection.wait([p.sentinel for p in alive.values()], timeout=POLL_S)  # wakes when a worker exits
