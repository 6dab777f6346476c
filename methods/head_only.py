"""Head only (linear probe): the frozen base's features, only the new task head trains.

The baseline under every PEFT method: how much does adapting the body add over a probe?
It needs a new head, so it is for sequence classification only; a causal LM has no new
head (its lm_head is pretrained, part of the base).  Written here because it is three
lines, no library needed.  Over an int8/NF4 base it still trains: the head is never quantized.
"""
from __future__ import annotations

from dataclasses import dataclass

from methods import ApplyContext, _adapters, freeze_all_but_heads, register


@dataclass(frozen=True)
class HeadOnlySettings:
    pass


def apply(model, settings: HeadOnlySettings, ctx: ApplyContext):
    if not ctx.head_names:
        raise ValueError(f"head_only needs a new task head, and a {ctx.task_type} {ctx.model_type} model has none "
                         "(use task_type seq_cls)")
    freeze_all_but_heads(model, ctx)
    return model


def load(base, directory: str, settings: HeadOnlySettings, ctx: ApplyContext):
    return _adapters.load_trainable(apply(base, settings, ctx), directory)


register("head_only", HeadOnlySettings, apply, lr_range=(), paper="baseline (linear probe: task head only)",
         task_types={"seq_cls"}, quants={"none", "int8", "nf4"}, save=_adapters.save_trainable, load=load)
