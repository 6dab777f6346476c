"""Running cells: `run_cell` takes one cell from start to end; `run_cells` runs a list of
them, each in a fresh worker process.

A fresh process per cell keeps one cell's memory, threads and failures away from the
next and makes the CPU peak-RSS measurement per cell.  Workers fork from a forkserver
that has already imported torch and transformers, so a cell does not pay the imports.
If a worker dies (killed, out of memory), the parent ends its MLflow run as FAILED so
no run is left RUNNING.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from harness import track
from harness.grid import Cell
from harness.suite import Suite

PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "datasets", "mlflow", "optuna", "pandas")


def provenance() -> dict[str, str]:
    """Package versions and the harness's git commit, as MLflow tags."""
    tags = {}
    for pkg in PACKAGES:
        try:
            tags[f"version.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            tags[f"version.{pkg}"] = "not installed"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    tags["git_commit"] = commit or "unknown"
    return tags


def pick_device():
    import torch

    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda:{device.index} {torch.cuda.get_device_name(device)}"
    return f"cpu ({os.cpu_count()} cores)"


def _log(msg: str) -> None:
    print(msg, flush=True)


def run_cell(suite: Suite, cell: Cell, inv: track.Invocation, run_id: str) -> bool:
    """Train, evaluate and measure one cell, logging into its child run; True if it finished.

    Any exception fails this cell only: the run ends FAILED with the reason as its
    `error` tag, and the caller goes on with the next cell.
    """
    uri = inv.tracking_uri
    try:
        metrics, tags = _train_and_measure(suite, cell, uri, run_id)
        track.log_metrics(uri, run_id, metrics)
        track.log_tags(uri, run_id, tags)
        track.end_run(uri, run_id, "FINISHED")
        return True
    except Exception as exc:  # noqa: BLE001 - the reason goes to the user through the report
        reason = f"{type(exc).__name__}: {exc}"
        _log(f"    FAILED {cell.label}: {reason}")
        track.log_text(uri, run_id, traceback.format_exc(), "traceback.txt")
        track.end_run(uri, run_id, "FAILED", error=reason)
        return False


def _train_and_measure(suite: Suite, cell: Cell, uri: str, run_id: str) -> tuple[dict, dict]:
    from harness import data as data_mod
    from harness import measure, models, probe
    from harness.train import evaluate, seed_everything, train
    from methods import ApplyContext, get_method

    method = get_method(cell.method)
    task = next(t for t in suite.tasks if t.name == cell.task)
    cfg = cell.training
    device = pick_device()
    seed_everything(cell.seed)

    task_data = data_mod.load_task(task, suite.task_type)
    location = models.locate(suite.model, suite.file)
    tokenizer = models.load_tokenizer(location)
    encode = lambda rows: data_mod.encode(rows, tokenizer, suite.task_type, cfg.max_length, task_data.label_names)  # noqa: E731
    train_ex, val_ex, test_ex = encode(task_data.train), encode(task_data.validation), encode(task_data.test)
    texts, probe_fp = probe.probe_texts(suite.probe)
    probe_batches = [data_mod.collate(probe_rows(tokenizer, texts[i:i + 16], suite.probe.max_length), tokenizer.pad_token_id)
                     for i in range(0, len(texts), 16)]

    model = models.load_model(location, suite.task_type, cell.quant, task_data.label_names, device)
    model.config.pad_token_id = tokenizer.pad_token_id
    before = measure.probe_signal(model, probe_batches, suite.task_type, device)  # the base, before any method

    ctx = ApplyContext(task_type=suite.task_type, model_type=model.config.model_type, quant=cell.quant,
                       head_names=models.head_names(model, suite.task_type), total_steps=cfg.steps)
    model = method.apply(model, cell.settings, ctx)
    trainable, total = measure.count_params(model)
    _log(f"    {trainable:,} of {total:,} parameters trainable ({100 * trainable / total:.3f}%)")

    def progress(step: int, loss: float) -> None:
        _log(f"    step {step}/{cfg.steps} loss {loss:.4f}")
        track.log_metrics(uri, run_id, {"train_loss": loss}, step=step)

    with measure.PeakMemory(device) as mem:
        stats = train(model, train_ex, cfg, cell.seed, tokenizer.pad_token_id, device, on_step=method.on_step, progress=progress)
    val_score = evaluate(model, val_ex, suite.task_type, task.metric, task_data.label_names, tokenizer, cfg, device)
    test_score = evaluate(model, test_ex, suite.task_type, task.metric, task_data.label_names, tokenizer, cfg, device)
    after = measure.probe_signal(model, probe_batches, suite.task_type, device)

    with tempfile.TemporaryDirectory() as tmp:
        if method.save is not None:
            method.save(model, tmp)
            track.log_artifacts(uri, run_id, tmp, "adapter")
        adapter_bytes = method.stored_bytes(model) if method.stored_bytes else measure.directory_bytes(tmp)

    metrics = {
        "trainable_params": trainable, "trainable_frac": trainable / total,
        "peak_memory_mb": mem.peak_mb, "tokens_per_s": stats.tokens_per_s, "train_time_s": stats.train_time_s,
        "val_score": val_score, "test_score": test_score,
        "forgetting": measure.forgetting(before, after, suite.task_type), "adapter_bytes": adapter_bytes,
    }
    if device.type == "cuda":
        metrics["peak_reserved_mb"] = mem.peak_reserved_mb
    tags = {"memory_kind": mem.kind, "device": device_name(device), "metric": task.metric,
            "data_fingerprint": task_data.fingerprint, "probe_fingerprint": probe_fp}
    _log(f"    done: val {task.metric} {val_score:.4f}, test {test_score:.4f}, {stats.tokens_per_s:.0f} tokens/s, "
         f"peak {mem.peak_mb:.0f} MB ({mem.kind})")
    return metrics, tags


def probe_rows(tokenizer, texts, max_length: int) -> list[dict]:
    return [{"input_ids": tokenizer(t, truncation=True, max_length=max_length)["input_ids"]} for t in texts]


# --------------------------------------------------------------------------- orchestration


def _worker(suite: Suite, cell: Cell, inv: track.Invocation, run_id: str) -> None:
    ok = run_cell(suite, cell, inv, run_id)
    sys.stdout.flush()
    os._exit(0 if ok else 1)


_CONTEXT = None


def _context():
    """A forkserver that has imported the heavy libraries once; spawn where fork is unavailable."""
    global _CONTEXT
    if _CONTEXT is None:
        if "forkserver" in mp.get_all_start_methods():
            _CONTEXT = mp.get_context("forkserver")
            _CONTEXT.set_forkserver_preload(["torch", "transformers", "peft", "harness.runner", "harness.train", "harness.data"])
        else:
            _CONTEXT = mp.get_context("spawn")
    return _CONTEXT


@dataclass
class CellOutcome:
    cell: Cell
    run_id: str
    ok: bool
    seconds: float


def run_cells(suite: Suite, cells: list[Cell], inv: track.Invocation, in_process: bool = False) -> list[CellOutcome]:
    """Run the runnable cells one after another, each in a fresh process (or here, if asked)."""
    runnable = [c for c in cells if c.runnable]
    outcomes = []
    prov, resolved = provenance(), suite.resolved_json()
    for i, cell in enumerate(runnable, 1):
        _log(f"[{i}/{len(runnable)}] {cell.label}")
        run_id = track.create_child(inv, cell.label, cell.params(),
                                    {"cell_id": cell.id, "suite_fingerprint": suite.fingerprint(),
                                     "model": suite.model.describe(), **prov})
        track.log_text(inv.tracking_uri, run_id, resolved, "suite.resolved.json")
        t0 = time.perf_counter()
        try:
            ok = run_cell(suite, cell, inv, run_id) if in_process else _run_in_worker(suite, cell, inv, run_id)
        except KeyboardInterrupt:  # never leave a run RUNNING
            track.end_run(inv.tracking_uri, run_id, "KILLED", error="interrupted by the user")
            raise
        outcomes.append(CellOutcome(cell, run_id, ok, time.perf_counter() - t0))
    return outcomes


def _run_in_worker(suite: Suite, cell: Cell, inv: track.Invocation, run_id: str) -> bool:
    proc = _context().Process(target=_worker, args=(suite, cell, inv, run_id), name=f"cell-{cell.id}")
    proc.start()
    try:
        proc.join()
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join()
    if track.run_status(inv.tracking_uri, run_id) == "RUNNING":  # died before it could say so
        reason = f"worker process died (exit code {proc.exitcode}); out of memory or killed?"
        track.end_run(inv.tracking_uri, run_id, "FAILED", error=reason)
        _log(f"    FAILED {cell.label}: {reason}")
    return proc.exitcode == 0
