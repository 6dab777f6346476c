"""The inference cost of a method: forward latency, merging, and swapping tasks on one base.

Measurements (all wall time, `time.perf_counter`, on the run's device):

- **latency_ms**: milliseconds of one forward pass per sample at batch size 1 (the
  online-serving case), over the first `n` examples of a split (all of them when there are
  fewer): one untimed pass over them, then the fastest of 3 timed passes; the model in eval mode,
  under `torch.no_grad()` and the training's autocast (bf16 where the precision is bf16), with
  `torch.cuda.synchronize()` before and after the timed region on CUDA.  The forward is
  over the sample's `input_ids` with an all-ones attention mask; for a causal LM that is
  prompt + answer in one pass (a prefill).  Generation repeats the same per-token work of
  the adapted layers at every step, so the overhead ratios carry over to decoding.  Soft
  prompts (prompt/prefix tuning) are part of the forward, so their extra positions count.
  It is measured three times: on the base model before the method is applied, on the
  trained model (unmerged), and on the merged model where the method can merge;
  `latency_overhead = unmerged / base`, `latency_overhead_merged = merged / base`.
- **merge** (`try_merge`): the method's own merge where it declares one; a merge that
  raises, or a method that cannot merge, gives a reason instead of a model.
- **swap_times**: the cost of serving several tasks on one base model in memory.
  `load_ms` reads one task's stored weights from disk and puts them into the model;
  `switch_ms` is the median time to change the task served when both tasks' weights are
  already in memory.  What that means differs by kind of method (`how`):
  - peft methods: `load_ms` = `PeftModel.load_adapter` of the saved adapter under a second
    name (read from disk, attached to the base already in memory); `switch_ms` =
    `set_adapter` alternating between the two adapters.  The second adapter is deleted
    afterwards and the original one is active again.
  - methods of our own that save what they trained (bitfit, head_only, bottleneck
    adapters, piggyback, spottune): `load_ms` = safetensors `load_file` of every
    `*.safetensors` the method saved (or the method's `read_state`, which unpacks
    piggyback's 1-bit masks into scores)
    plus `load_state_dict(strict=False)` into the model; `switch_ms` = the same
    `load_state_dict` from a copy of those tensors already in host memory (another task's
    weights held in RAM).  The model's own tensors are put back afterwards.
  - methods that store the whole model per task (full fine-tuning): as above with every
    parameter of the model written to a temporary safetensors file.
  The model computes the same function after `swap_times` as before it.  The saved files
  were usually just written, so they are read from the OS page cache: `load_ms` is
  deserialisation and copying, not cold-disk bandwidth.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from harness.train import autocast

HOW_PEFT = "peft load_adapter / set_adapter"
HOW_TRAINED = "copy the trained tensors in"
HOW_FULL = "copy every weight in (full model per task)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- latency

def latency_ms(model, examples: list[dict], device: torch.device, n: int = 32, warmup: int = 1, repeats: int = 3,
               precision: str = "fp32") -> float:
    """Ms per sample of batch-size-1 forwards over the first `n` examples: the best of `repeats`
    timed passes, after `warmup` untimed passes over the same examples.

    The warm-up pass covers every example because the CPU kernels (oneDNN) and the CUDA
    allocator prepare per input shape: a pass over new lengths is slower, and the base
    model, timed first in a trial, would otherwise pay for everyone.  The best pass is
    the least disturbed by the rest of the machine.
    """
    chosen = list(examples[:n])
    if not chosen:
        raise ValueError("latency_ms needs at least one example (and n >= 1)")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    inputs = []
    for e in chosen:
        ids = torch.tensor([e["input_ids"]], dtype=torch.long, device=device)
        inputs.append({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    was_training = model.training
    model.eval()
    passes = []
    try:
        with torch.no_grad(), autocast(device, precision):
            for _ in range(warmup):
                for batch in inputs:
                    model(**batch)
            for _ in range(repeats):
                _sync(device)
                start = time.perf_counter()
                for batch in inputs:
                    model(**batch)
                _sync(device)
                passes.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return 1000 * min(passes) / len(inputs)


# --------------------------------------------------------------------------- merge

def try_merge(method, model) -> tuple[Any | None, str | None]:
    """(merged model, None), or (None, why not). The merge may change `model` in place."""
    if not method.mergeable or method.merge is None:
        return None, f"{method.name} cannot merge"
    try:
        return method.merge(model), None
    except Exception as exc:  # noqa: BLE001 - the reason goes into the results
        return None, f"merge failed: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- swapping tasks

@dataclass(frozen=True)
class SwapTimes:
    load_ms: float  # one task's stored weights: disk -> model already in memory
    switch_ms: float  # median change of the served task, both tasks' weights in memory
    how: str  # what was timed (HOW_PEFT / HOW_TRAINED / HOW_FULL)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return 1000 * (time.perf_counter() - start)


def swap_times(method, model, saved_dir: str | None, device: torch.device, repeats: int = 10) -> SwapTimes:
    """Load and switch times of a second task's weights on this model; the model is left as it was.

    `saved_dir` holds what `method.save` wrote; None saves it to a temporary folder first.
    Raises when the model cannot swap (the caller records the reason).
    """
    from peft import PeftModel

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(model, PeftModel):
            return _swap_peft(model, _saved(method, model, saved_dir, tmp), device, repeats)
        if method.save is not None:
            return _swap_tensors(method, model, _saved(method, model, saved_dir, tmp), device, repeats, HOW_TRAINED)
        from safetensors.torch import save_file

        # full fine-tuning: every parameter is per-task (named_parameters skips tied duplicates)
        save_file({n: p.detach().contiguous().cpu() for n, p in model.named_parameters()}, str(Path(tmp) / "model.safetensors"))
        return _swap_tensors(None, model, tmp, device, repeats, HOW_FULL, restore=False)


def _saved(method, model, saved_dir: str | None, tmp: str) -> str:
    if saved_dir is not None:
        return saved_dir
    if method.save is None:
        raise ValueError(f"{method.name} saves nothing to load back")
    method.save(model, tmp)
    return tmp


def _swap_peft(model, saved_dir: str, device: torch.device, repeats: int) -> SwapTimes:
    original = model.active_adapter
    if not isinstance(original, str):
        raise ValueError(f"swap_times needs one active peft adapter, not {original!r}")
    configs_before = set(model.peft_config)
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    other = original + "_swap"
    while other in model.peft_config:
        other += "_"
    try:
        load_ms = _timed(lambda: model.load_adapter(saved_dir, adapter_name=other, torch_device=str(device)), device)
        switches = [_timed(lambda name=(other if i % 2 == 0 else original): model.set_adapter(name, inference_mode=True),
                           device) for i in range(repeats)]
    finally:
        model.set_adapter(original)
        if other in model.peft_config:
            model.delete_adapter(other)
        model.set_adapter(original)  # delete_adapter may pick another active adapter
        for n, p in model.named_parameters():
            if n in grads:
                p.requires_grad_(grads[n])
    if set(model.peft_config) != configs_before or model.active_adapter != original:
        raise RuntimeError(f"peft did not restore the model: adapters {sorted(model.peft_config)}, "
                           f"active {model.active_adapter!r} (before: {sorted(configs_before)}, {original!r})")
    return SwapTimes(load_ms=load_ms, switch_ms=statistics.median(switches), how=HOW_PEFT)


def _read(method, model, directory: str, names: set[str]) -> dict[str, torch.Tensor]:
    """What the method saved in `directory`, as state-dict entries of `model` (on the CPU):
    the method's own `read_state` where it saves a packed form, else every *.safetensors as it is."""
    from safetensors.torch import load_file

    if method is not None and method.read_state is not None:
        state = method.read_state(model, directory)
    else:
        files = sorted(Path(directory).glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors in {directory}")
        state = {key: tensor for f in files for key, tensor in load_file(str(f)).items()}
    unknown = sorted(set(state) - names)
    if unknown:
        raise ValueError(f"{directory} holds tensors this model does not have: {unknown[:3]}")
    return state


def _swap_tensors(method, model, directory: str, device: torch.device, repeats: int, how: str,
                  restore: bool = True) -> SwapTimes:
    names = set(model.state_dict())
    state: dict[str, torch.Tensor] = {}

    def load() -> None:
        state.update(_read(method, model, directory, names))
        model.load_state_dict(state, strict=False)

    # this task's own tensors, to serve it again (and to leave the model as it was)
    own = None
    if restore:
        current = model.state_dict()
        own = {k: current[k].detach().to("cpu", copy=True) for k in _read(method, model, directory, names)}
    load_ms = _timed(load, device)
    tasks = [state] if own is None else [own, state]
    switches = [_timed(lambda s=tasks[i % len(tasks)]: model.load_state_dict(s, strict=False), device) for i in range(repeats)]
    if own is not None:
        model.load_state_dict(own, strict=False)
    return SwapTimes(load_ms=load_ms, switch_ms=statistics.median(switches), how=how)
