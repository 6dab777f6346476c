"""Running one trial: `execute_trial` opens its MLflow child run, `run_trial` trains,
evaluates and measures the cell into it and ends it.

Trials run inside a worker process (see `harness.schedule`), one after another; the
worker is the isolation boundary (one per device).  Peak memory is reset per trial.
"""
from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import tempfile
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from harness import measures, track
from harness.grid import Cell
from harness.suite import Suite, Training

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


@dataclass
class TrialOutcome:
    outcome: str  # complete | diverged | failed
    values: list[float] | None = None  # objective_values: [val_score] or [val_score, memory]
    reason: str | None = None


OOM_FLOOR = 1  # smallest micro-batch an out-of-memory retry goes down to


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower() and "cuda" in str(exc).lower()


def smaller_micro_batch(cfg: Training) -> Training | None:
    """Half the micro-batch, twice the accumulation: the same effective batch; None at the floor."""
    if cfg.batch_size <= OOM_FLOOR:
        return None
    if cfg.batch_size % 2:  # odd: only micro-batch 1 keeps the effective batch exact
        return dataclasses.replace(cfg, batch_size=1, grad_accum=cfg.grad_accum * cfg.batch_size)
    return dataclasses.replace(cfg, batch_size=cfg.batch_size // 2, grad_accum=cfg.grad_accum * 2)


def execute_trial(suite: Suite, cell: Cell, values: dict[str, Any], tags: dict[str, str], inv: track.Invocation,
                  on_run_created: Callable[[str], None]) -> TrialOutcome:
    """One trial of a cell: its searched values applied, its own MLflow child run, start to end."""
    trial_cell = cell.with_values(values) if values else cell
    run_id = track.create_child(inv, cell.label, trial_cell.params(),
                                {"cell_id": cell.id, "suite_fingerprint": suite.fingerprint(),
                                 "model": suite.model.describe(), **provenance(), **tags})
    on_run_created(run_id)
    track.log_text(inv.tracking_uri, run_id, suite.resolved_json(), "suite.resolved.json")
    return run_trial(suite, trial_cell, inv.tracking_uri, run_id)


def objective_values(metrics: dict, tags: dict, with_memory: bool) -> list[float]:
    """What the search optimises for a finished run: [val_score], and with the `peak_memory` objective the
    leaderboard's memory column for the run's memory_kind (the device peak on a GPU, train_state_mb on CPU)."""
    memory = [metrics.get(measures.memory_measure(tags.get("memory_kind")), math.nan)] if with_memory else []
    return [metrics["val_score"], *memory]


def run_trial(suite: Suite, cell: Cell, uri: str, run_id: str) -> TrialOutcome:
    """Train, evaluate and measure one cell into its run, which this ends.

    CUDA out of memory: retried with the micro-batch halved and accumulation doubled
    (same effective batch) down to OOM_FLOOR, recorded as `oom_retries`/`micro_batch`.
    A NaN or infinite loss ends the trial as diverged.  Any other exception fails this
    trial only, with the reason as its `error` tag.  Ctrl-C ends the run KILLED.
    """
    from harness.train import DivergedError

    cfg, retries = cell.training, 0

    def close(outcome: str, status: str, error: str | None = None, tags: dict | None = None) -> None:
        track.log_tags(uri, run_id, (tags or {}) | {"outcome": outcome, "oom_retries": retries, "micro_batch": cfg.batch_size})
        track.end_run(uri, run_id, status, error=error)

    try:
        while True:
            try:
                metrics, tags = _train_and_measure(suite, dataclasses.replace(cell, training=cfg), uri, run_id)
                break
            except Exception as exc:  # noqa: BLE001 - the reason goes to the user through the report
                smaller = smaller_micro_batch(cfg) if is_out_of_memory(exc) else None
                if smaller is None:
                    raise
                _log(f"    out of memory at micro-batch {cfg.batch_size}: retrying with {smaller.batch_size} "
                     f"x {smaller.grad_accum} accumulation")
            retries, cfg = retries + 1, smaller
            _free_accelerator_memory()
    except KeyboardInterrupt:
        track.end_run(uri, run_id, "KILLED", error="interrupted by the user")
        raise
    except DivergedError as exc:
        reason = str(exc)
        _log(f"    DIVERGED {cell.label}: {reason}")
        close("diverged", "FAILED", reason)
        return TrialOutcome("diverged", reason=reason)
    except Exception as exc:  # noqa: BLE001
        reason = f"{type(exc).__name__}: {exc}"
        _log(f"    FAILED {cell.label}: {reason}")
        track.log_text(uri, run_id, traceback.format_exc(), "traceback.txt")
        close("failed", "FAILED", reason)
        return TrialOutcome("failed", reason=reason)
    track.log_metrics(uri, run_id, metrics)
    close("complete", "FINISHED", tags=tags)
    return TrialOutcome("complete", values=objective_values(metrics, tags, "peak_memory" in suite.search.objectives))


def _free_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _train_and_measure(suite: Suite, cell: Cell, uri: str, run_id: str) -> tuple[dict, dict]:
    import time

    from harness import data as data_mod
    from harness import inference, measure, models, probe
    from harness.metrics import outcomes, pack_outcomes, score
    from harness.train import param_groups, predict, resolve_precision, seed_everything, train
    from methods import ApplyContext, get_method

    clock = time.perf_counter()
    method = get_method(cell.method)
    task = next(t for t in suite.tasks if t.name == cell.task)
    cfg = cell.training
    device = pick_device()
    precision = resolve_precision(cfg.precision, device)
    # now, not with the results: a failed run still says what it resolved to (the report keeps runs of
    # different resolved precisions in different rows)
    track.log_tags(uri, run_id, {"precision": precision, "device": device_name(device)})
    seed_everything(cell.seed, deterministic=device.type != "cuda")

    task_data = data_mod.load_task(task, suite.task_type)
    # train/validation and train/test duplicates (harness.data.overlap), for every run: the report flags the task
    track.log_metrics(uri, run_id, measures.check_logged({f"data.dup_{k}": v for k, v in task_data.overlap.items()}))
    if task_data.source:
        track.log_tags(uri, run_id, {"data_source": task_data.source})
    if any(task_data.overlap.values()):
        _log(f"    warning: task {task.name!r}: {data_mod.overlap_text(task_data.overlap)}; "
             "set its data.on_overlap: error to refuse such data")
    location = models.locate(suite.model, suite.file)
    tokenizer = models.load_tokenizer(location)
    model_fp = models.fingerprint(location)  # after the download: a hub model's commit, not "@main"

    def encode(split: str) -> list[dict]:
        return data_mod.encode_cached(getattr(task_data, split), tokenizer, suite.task_type, cfg.max_length,
                                      task_data.label_names, data_fingerprint=task_data.fingerprint,
                                      tokenizer_fingerprint=model_fp, split=split)

    train_ex, val_ex, test_ex = encode("train"), encode("validation"), encode("test")
    texts, probe_fp = probe.probe_texts(suite.probe)
    probe_batches = [data_mod.collate(probe_rows(tokenizer, texts[i:i + 16], suite.probe.max_length), tokenizer.pad_token_id)
                     for i in range(0, len(texts), 16)]
    # encoders' forgetting: a linear probe on another built-in task, on frozen features
    task_probe = probe.task_probe(suite.probe, suite.tasks, tokenizer) if suite.task_type == "seq_cls" else None

    def load_base():
        base = models.load_model(location, suite.task_type, cell.quant, task_data.label_names, device, precision)
        base.config.pad_token_id = tokenizer.pad_token_id
        models.init_head(base, cell.seed)  # the same head per seed under every method and quantization
        return base

    model = load_base()
    pad = tokenizer.pad_token_id
    load_time = time.perf_counter() - clock
    # the base, before any method: forgetting's "before" (the same reading for every trial of this
    # worker on this model, quantization and probe: measured once, see measure.once_per_worker)
    clock = time.perf_counter()
    base_params = measure.base_param_count(model)  # trainable_frac's denominator: the base, before the method
    same = (model_fp, cell.quant, precision, str(device), suite.task_type)
    before = measure.once_per_worker(
        ("base probe", *same, probe_fp, repr(suite.probe), task_probe.fingerprint if task_probe is not None else None),
        lambda: measure.read_probe(model, probe_batches, suite.task_type, device, precision, task=task_probe))

    ctx = ApplyContext(task_type=suite.task_type, model_type=model.config.model_type, quant=cell.quant,
                       head_names=models.head_names(model, suite.task_type), total_steps=cfg.steps)
    model = method.apply(model, cell.settings, ctx)
    models.upcast_trainable(model)
    groups = param_groups(model, cfg, ctx.head_names, method.groups(cell.settings) if method.groups else None)
    _log("    optimizer groups: " + ", ".join(f"{g.name} {sum(p.numel() for p in g.params):,} at lr {g.lr:g}"
                                            for g in groups))
    trainable, total = measure.count_params(model)
    _log(f"    {trainable:,} parameters trainable, {100 * trainable / base_params:.3f}% of the base's {base_params:,}"
         f" ({total:,} with the method's)")
    flops = measure.once_per_worker(  # one training step, counted (the same for every seed and lr of a configuration)
        ("flops", *same, cell.method, repr(cell.settings), task_data.label_names, task_data.fingerprint, cfg.max_length,
         cfg.batch_size), lambda: measure.flops_per_token(model, train_ex, cfg.batch_size, pad, device, precision))
    measure_time = time.perf_counter() - clock

    def progress(step: int, loss: float) -> None:
        _log(f"    step {step}/{cfg.steps} loss {loss:.4f}")
        track.log_metrics(uri, run_id, {"train_loss": loss}, step=step)

    with measure.PeakMemory(device) as mem:
        stats = train(model, train_ex, cfg, cell.seed, pad, device, on_step=method.on_step, progress=progress,
                      groups=groups)
    clock = time.perf_counter()
    with measure.PeakMemory(device) as eval_mem:
        val_preds, val_refs = predict(model, val_ex, suite.task_type, task_data.label_names, tokenizer, cfg, device)
        test_preds, test_refs = predict(model, test_ex, suite.task_type, task_data.label_names, tokenizer, cfg, device)
        val_score, test_score = score(task.metric, val_preds, val_refs), score(task.metric, test_preds, test_refs)
        after = measure.read_probe(model, probe_batches, suite.task_type, device, precision, task=task_probe)
    eval_time = time.perf_counter() - clock
    clock = time.perf_counter()

    tags: dict[str, str] = {}
    correct = outcomes(task.metric, test_preds, test_refs)
    if correct is not None:  # per-example correctness: the report resamples test examples with it
        tags["test_outcomes"] = pack_outcomes(correct)
        track.log_text(uri, run_id, tags["test_outcomes"] + "\n", "test_outcomes.txt")
    with tempfile.TemporaryDirectory() as tmp:
        if method.save is not None:
            method.save(model, tmp)
            track.log_artifacts(uri, run_id, tmp, "adapter")
        try:
            adapter_bytes = measure.adapter_bytes(method, model, tmp if method.save is not None else None)
        except ValueError as exc:  # a plugin whose saved form we cannot size: n/a, not a failed trial
            adapter_bytes, tags["adapter_bytes_error"] = math.nan, str(exc)[:500]
        try:
            swap = inference.swap_times(method, model, tmp if method.save is not None else None, device)
            swap_metrics = {k: v for k, v in (("adapter_load_ms", swap.load_ms), ("adapter_switch_ms", swap.switch_ms))
                            if not math.isnan(v)}  # n/a (two tasks do not fit on the device): the tag says why
            tags["adapter_switch"] = swap.how
        except Exception as exc:  # noqa: BLE001 - a cost we could not measure is n/a, not a failed trial
            swap_metrics = {}
            tags["adapter_switch_error"] = f"{type(exc).__name__}: {exc}"[:500]
    # the latency baseline: a fresh copy of the base, timed alternately with the trained model (after the
    # swap, which may hold a second task's weights on the device)
    base = load_base()
    latency = inference.compare_latency(base, model, test_ex, device, precision=precision)
    merged, merge_reason = inference.try_merge(method, model)  # last: merging may change the model in place
    latency_merged = inference.compare_latency(base, merged, test_ex, device, precision=precision) if merged is not None else None
    del base
    if merge_reason:
        tags["merge"] = merge_reason
    if task_probe is not None:
        tags["probe_task_fingerprint"] = f"{task_probe.name}:{task_probe.fingerprint}"
    measure_time += time.perf_counter() - clock

    metrics = {
        "trainable_params": trainable, "trainable_frac": trainable / base_params,
        "peak_memory_mb": mem.peak_mb, "eval_peak_memory_mb": eval_mem.peak_mb,
        "train_state_mb": stats.train_state_bytes / 2**20,
        "tokens_per_s": stats.tokens_per_s, "train_time_s": stats.train_time_s, "flops_per_token": flops,
        "val_score": val_score, "test_score": test_score,
        "forgetting": measure.forgetting(before, after), "adapter_bytes": adapter_bytes,
        "latency_base_ms": latency.base_ms, "latency_ms": latency.adapted_ms, "latency_overhead": latency.ratio,
        "latency_overhead_low": latency.low, "latency_overhead_high": latency.high,
        "load_time_s": load_time, "eval_time_s": eval_time, "measure_time_s": measure_time,
        **swap_metrics,
    }
    if task_probe is not None:
        metrics["representation_drift"] = measure.representation_drift(before, after)
    if latency_merged is not None:
        metrics |= {"latency_merged_ms": latency_merged.adapted_ms, "latency_overhead_merged": latency_merged.ratio,
                    "latency_overhead_merged_low": latency_merged.low, "latency_overhead_merged_high": latency_merged.high}
    name = device_name(device)
    if device.type == "cuda":
        peak = measure.peak_flops(name)
        metrics |= {"peak_reserved_mb": mem.peak_reserved_mb, "eval_peak_reserved_mb": eval_mem.peak_reserved_mb}
        if not math.isnan(peak):  # a device whose peak we know
            metrics["mfu"] = measure.mfu(stats.tokens_per_s, flops, peak)
    measures.check_logged(metrics)
    tags |= {"memory_kind": measures.memory_kind(device.type), "device": name, "metric": task.metric,
             "model_fingerprint": model_fp,
             "data_fingerprint": task_data.fingerprint, "probe_fingerprint": probe_fp, "precision": precision,
             "attention": str(getattr(model.config, "_attn_implementation", "unknown"))}
    _log(f"    done: val {task.metric} {val_score:.4f}, test {test_score:.4f}, {stats.tokens_per_s:.0f} tokens/s, "
         f"peak {mem.peak_mb:.0f} MB ({mem.kind}), train state {metrics['train_state_mb']:.1f} MB, "
         f"latency x{metrics['latency_overhead']:.2f}")
    return metrics, tags


def probe_rows(tokenizer, texts, max_length: int) -> list[dict]:
    return [{"input_ids": tokenizer(t, truncation=True, max_length=max_length)["input_ids"]} for t in texts]
