"""The inference cost of a method: forward latency, merging, and swapping tasks on one base.

Measurements (all wall time, `time.perf_counter`, on the run's device):

- **latency** (`compare_latency`): milliseconds of one forward pass per sample at batch
  size 1 (the online-serving case), over the first LATENCY_EXAMPLES examples of the test split; the
  model in eval mode, under `torch.no_grad()` and the training's autocast, with
  `torch.cuda.synchronize()` around each timed pass on CUDA.  The forward is over the
  sample's `input_ids` with an all-ones attention mask; for a causal LM that is prompt +
  answer in one pass (a prefill).  Generation repeats the same per-token work of the
  adapted layers at every step, so the overhead ratios carry over to decoding.  Soft
  prompts (prompt/prefix tuning) are part of the forward, so their extra positions count.
  After training, in the same process, the base model (a fresh copy of what the trial
  loaded, with its head) and the trained model are timed ALTERNATELY: after one untimed
  pass each, 6 rounds of one pass each, each model first in every other round.  Each
  round gives a ratio adapted / base; `latency_overhead` is the median ratio and
  `latency_overhead_low` / `_high` its order-statistic interval (`median_interval`: with 6
  rounds, the smallest and largest ratio, 96.9% coverage).  Then the same against the
  merged model where the method can merge: `latency_overhead_merged` (and its interval).
  `latency_base_ms`, `latency_ms`, `latency_merged_ms`: the median passes.  The base is a
  separate copy for every method rather than the adapter switched off: full fine-tuning,
  bitfit and piggyback change or wrap weights in place, and peft's disabled adapter still
  runs through its wrapper layers.
- **merge** (`try_merge`): the method's own merge where it declares one; a merge that
  raises, or a method that cannot merge, gives a reason instead of a model.
- **swap_times**: the cost of serving several tasks on one base model, the same operation
  for every method.  `load_ms` takes one task's stored weights from disk onto the base
  already resident on the device, ready to serve; `switch_ms` is the median time to change
  the task served when both tasks' weights are already resident on the device.  How (`how`):
  - peft methods: `load_ms` = `PeftModel.load_adapter` of the saved adapter under a second
    name (read from disk, onto the device); `switch_ms` = `set_adapter` alternating
    between the two resident adapters.  The second adapter is deleted afterwards and the
    original one is active again.
  - methods of our own that save what they trained (bitfit, head_only, bottleneck
    adapters, piggyback, spottune): `load_ms` = reading every `*.safetensors` the method
    saved (or the method's `read_state`, which unpacks piggyback's 1-bit masks into
    scores), putting the tensors on the device in the model's dtypes, and pointing the
    model's parameters at them; `switch_ms` = pointing the parameters at the other task's
    resident tensors (`parameter.data = tensor`: no copy).
  - full fine-tuning, which stores the whole model per task: as above with every parameter
    (written to a temporary safetensors file first, untimed): two full sets of weights on
    the device, the parameters pointed at one or the other.
  A switch points the model at resident tensors rather than copying them into its
  parameters because that is what serving two resident tasks takes, and what peft's
  `set_adapter` does (it changes which resident adapter the layers read); a copy would
  charge a memory-bandwidth cost that no server with both tasks resident pays.  Where the
  second task's tensors do not fit in the device's free memory (a large model under full
  fine-tuning), load and switch are n/a and `how` says why.  The model computes the same
  function after `swap_times` as before it.  The saved files were usually just written, so
  they are read from the OS page cache: `load_ms` is deserialisation and copying, not
  cold-disk bandwidth.
"""
from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from harness.measures import LATENCY_EXAMPLES, LATENCY_ROUNDS  # defined with the measures
from harness.train import autocast

HOW_PEFT = "peft load_adapter / set_adapter (both adapters on the device)"
HOW_TRAINED = "both tasks' trained tensors on the device, parameters pointed at one set"
HOW_FULL = "both tasks' full weights on the device, parameters pointed at one set"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- latency

LATENCY_CONFIDENCE = 0.95  # the order-statistic interval's target coverage


def _latency_inputs(examples: list[dict], device: torch.device, n: int) -> list[dict]:
    chosen = list(examples[:n])
    if not chosen:
        raise ValueError("latency needs at least one example (and n >= 1)")
    inputs = []
    for e in chosen:
        ids = torch.tensor([e["input_ids"]], dtype=torch.long, device=device)
        inputs.append({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    return inputs


def _timed_pass(model, inputs: list[dict], device: torch.device) -> float:
    """Seconds of one batch-size-1 forward per input, in order (the caller holds no_grad and autocast)."""
    _sync(device)
    start = time.perf_counter()
    for batch in inputs:
        model(**batch)
    _sync(device)
    return time.perf_counter() - start


def latency_ms(model, examples: list[dict], device: torch.device, n: int = 32, warmup: int = 1, repeats: int = 3,
               precision: str = "fp32") -> float:
    """Ms per sample of batch-size-1 forwards over the first `n` examples: the best of `repeats`
    timed passes, after `warmup` untimed passes over the same examples.

    One model on its own; a trial compares the base and the adapted model with
    `compare_latency`, which alternates them.  The warm-up pass covers every example because
    the CPU kernels (oneDNN) and the CUDA allocator prepare per input shape: a pass over new
    lengths is slower.  The best pass is the least disturbed by the rest of the machine.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    inputs = _latency_inputs(examples, device, n)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast(device, precision):
            for _ in range(warmup):
                _timed_pass(model, inputs, device)
            passes = [_timed_pass(model, inputs, device) for _ in range(repeats)]
    finally:
        model.train(was_training)
    return 1000 * min(passes) / len(inputs)


def median_interval(values: list[float], confidence: float = LATENCY_CONFIDENCE) -> tuple[float, float, float]:
    """(low, high, coverage): the distribution-free interval of the median from order statistics.

    For n values sorted x_(1) <= ... <= x_(n), [x_(k), x_(n+1-k)] holds the true median with
    probability 1 - 2 P(Binomial(n, 1/2) <= k - 1), whatever the distribution (continuous,
    the values independent).  k is the largest with that coverage >= `confidence`; where even
    [min, max] falls short (n < 6 at 0.95: 5 values give 93.75%), it is [min, max] and the
    coverage says how much it holds.
    """
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("no values")

    def coverage(k: int) -> float:
        return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(k)) / 2.0 ** n

    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(k + 1) >= confidence:
        k += 1
    return xs[k - 1], xs[n - k], coverage(k)


@dataclass(frozen=True)
class LatencyComparison:
    """Base and adapted latency timed alternately in one process (`compare_latency`)."""

    base_ms: float  # ms per sample, median over the rounds' base passes
    adapted_ms: float  # the same for the adapted (or merged) model
    ratio: float  # median over the rounds of adapted pass / base pass: latency_overhead
    low: float  # median_interval of that ratio
    high: float
    coverage: float  # the interval's exact coverage
    ratios: tuple[float, ...]


def compare_latency(base, adapted, examples: list[dict], device: torch.device, rounds: int = LATENCY_ROUNDS,
                    n: int = LATENCY_EXAMPLES, warmup: int = 1, precision: str = "fp32",
                    confidence: float = LATENCY_CONFIDENCE) -> LatencyComparison:
    """Time `base` and `adapted` alternately: `rounds` rounds of one pass each over the first
    `n` examples (batch size 1), each model first in every other round; the ratio of a
    round is adapted / base, and the reported overhead is the median of the rounds' ratios
    with its order-statistic interval (`median_interval`).

    Alternating within one process puts both models under the same machine load, caches and
    clock: what drifts over the measurement (other processes, frequency, memory) falls on
    both passes of a round and cancels in its ratio, where timing the base once before
    training and the adapted model once after read a noise of 10-15% as overhead.  Each model
    first gets `warmup` untimed passes over the same examples (kernels and allocators
    prepare per input shape).  Both run in eval mode under `torch.no_grad()` and the
    training's autocast; their modes are restored afterwards.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    inputs = _latency_inputs(examples, device, n)
    models = (base, adapted)
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    times: dict[int, list[float]] = {0: [], 1: []}
    try:
        with torch.no_grad(), autocast(device, precision):
            for _ in range(warmup):
                for m in models:
                    _timed_pass(m, inputs, device)
            for r in range(rounds):
                for which in ((0, 1) if r % 2 == 0 else (1, 0)):
                    times[which].append(_timed_pass(models[which], inputs, device))
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)
    ratios = tuple(a / b for a, b in zip(times[1], times[0]))
    low, high, cover = median_interval(list(ratios), confidence)
    return LatencyComparison(base_ms=1000 * statistics.median(times[0]) / len(inputs),
                             adapted_ms=1000 * statistics.median(times[1]) / len(inputs),
                             ratio=statistics.median(ratios), low=low, high=high, coverage=cover, ratios=ratios)


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
    load_ms: float  # one task's stored weights: disk -> the device, served by the model already there (nan: n/a)
    switch_ms: float  # median change of the served task, both tasks' weights resident on the device (nan: n/a)
    how: str  # what was timed (HOW_PEFT / HOW_TRAINED / HOW_FULL), or "n/a: why"


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return 1000 * (time.perf_counter() - start)


def _device_free_bytes(device: torch.device) -> int | None:
    """Free memory on a CUDA device; None elsewhere (host memory: not checked)."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.mem_get_info(device)[0])


def swap_times(method, model, saved_dir: str | None, device: torch.device, repeats: int = 10) -> SwapTimes:
    """Load and switch times of a second task's weights on this model; the model is left as it was.

    `saved_dir` holds what `method.save` wrote; None saves it to a temporary folder first.
    Every method holds both tasks' weights on the device while switching; one whose second
    set does not fit in the device's free memory gives n/a (`how` says why).  Raises when
    the model cannot swap (the caller records the reason).
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
        return _swap_tensors(None, model, tmp, device, repeats, HOW_FULL)


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


def _saved_keys(method, model, directory: str, names: set[str]) -> list[str]:
    """The state-dict names a saved task holds, without reading its tensors where the files say
    (safetensors headers); a method's own `read_state` (a packed form) is read."""
    from safetensors import safe_open

    if method is not None and method.read_state is not None:
        return sorted(_read(method, model, directory, names))
    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {directory}")
    keys = set()
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            keys.update(handle.keys())
    unknown = sorted(keys - names)
    if unknown:
        raise ValueError(f"{directory} holds tensors this model does not have: {unknown[:3]}")
    return sorted(keys)


def _slots(model, names) -> dict[str, tuple[torch.nn.Module, str, bool]]:
    """Where each state-dict entry lives: (module, attribute, is a parameter); one entry per tensor (tied names once)."""
    slots, seen = {}, set()
    for name in names:
        prefix, _, leaf = name.rpartition(".")
        module = model.get_submodule(prefix)
        if leaf in module._parameters:
            tensor, is_param = module._parameters[leaf], True
        elif leaf in module._buffers:
            tensor, is_param = module._buffers[leaf], False
        else:
            raise ValueError(f"{name} is neither a parameter nor a buffer of the model")
        if id(tensor) not in seen:
            seen.add(id(tensor))
            slots[name] = (module, leaf, is_param)
    return slots


def _current(slots) -> dict[str, torch.Tensor]:
    return {name: (module._parameters[leaf].data if is_param else module._buffers[leaf])
            for name, (module, leaf, is_param) in slots.items()}


def _serve(slots, tensors: dict[str, torch.Tensor]) -> None:
    """Point the model at one task's resident tensors: a parameter's `.data`, a buffer's slot; nothing is copied."""
    for name, (module, leaf, is_param) in slots.items():
        if is_param:
            module._parameters[leaf].data = tensors[name]
        else:
            module._buffers[leaf] = tensors[name]


def _swap_tensors(method, model, directory: str, device: torch.device, repeats: int, how: str) -> SwapTimes:
    """Our methods and full fine-tuning: both tasks' tensors resident on the device, the model
    pointed at one set or the other.

    load: read the task's file(s) from disk, put its tensors on the device in the model's
    dtypes, and point the model at them.  switch: point the model at the other resident set.
    The model's own tensors are never copied (they are the first task's set), and it is
    pointed back at them at the end.
    """
    names = set(model.state_dict())
    slots = _slots(model, _saved_keys(method, model, directory, names))  # which tensors a task replaces
    own = _current(slots)
    need = sum(t.numel() * t.element_size() for t in own.values())
    free = _device_free_bytes(device)
    if free is not None and need > free:
        return SwapTimes(math.nan, math.nan, f"n/a: a second task's {need / 2**20:.0f} MB do not fit in the device's "
                                             f"free {free / 2**20:.0f} MB")
    other: dict[str, torch.Tensor] = {}

    def load() -> None:
        state = _read(method, model, directory, names)
        other.update({k: state[k].to(device=own[k].device, dtype=own[k].dtype) for k in slots})
        _serve(slots, other)

    try:
        load_ms = _timed(load, device)
        tasks = [own, other]
        switches = [_timed(lambda s=tasks[i % 2]: _serve(slots, s), device) for i in range(repeats)]
    except torch.OutOfMemoryError:
        return SwapTimes(math.nan, math.nan, f"n/a: a second task's {need / 2**20:.0f} MB did not fit on the device")
    finally:
        _serve(slots, own)
    return SwapTimes(load_ms=load_ms, switch_ms=statistics.median(switches), how=how)
