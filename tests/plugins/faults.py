"""Test-only methods that misbehave on purpose, loaded through a suite's `plugins:` key.

- `sleepy`: trains only the head, after sleeping `seconds` (a trial of known length,
  long enough to be killed in the middle of).
- `oom_above`: the forward raises CUDA's out-of-memory error whenever a micro-batch has
  more than `max_micro_batch` rows - what a too-large batch does on a real GPU.
- `nan_loss`: the loss becomes NaN from the first step (a diverging trial).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from methods import ApplyContext, all_methods, freeze_all_but_heads, register


@dataclass(frozen=True)
class SleepySettings:
    seconds: float = 1.0


def _sleepy(model, settings: SleepySettings, ctx: ApplyContext):
    time.sleep(settings.seconds)
    freeze_all_but_heads(model, ctx)
    return model


@dataclass(frozen=True)
class OomSettings:
    max_micro_batch: int = 2


def _oom_above(model, settings: OomSettings, ctx: ApplyContext):
    freeze_all_but_heads(model, ctx)
    forward = model.forward

    def guarded(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if model.training and ids is not None and ids.shape[0] > settings.max_micro_batch:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (injected: micro-batch "
                                         f"{ids.shape[0]} > {settings.max_micro_batch})")
        return forward(*args, **kwargs)

    model.forward = guarded
    return model


@dataclass(frozen=True)
class NanSettings:
    pass


def _nan_loss(model, settings: NanSettings, ctx: ApplyContext):
    freeze_all_but_heads(model, ctx)
    forward = model.forward

    def poisoned(*args, **kwargs):
        out = forward(*args, **kwargs)
        if model.training and getattr(out, "loss", None) is not None:
            out.loss = out.loss * float("nan")
        return out

    model.forward = poisoned
    return model


if "sleepy" not in all_methods():  # a plugin may be loaded by several suites in one process
    register("sleepy", SleepySettings, _sleepy, paper="test: sleeps, then trains the head",
             task_types={"seq_cls"})
    register("oom_above", OomSettings, _oom_above, paper="test: out of memory above a micro-batch size",
             task_types={"seq_cls"})
    register("nan_loss", NanSettings, _nan_loss, paper="test: NaN loss", task_types={"seq_cls"})
