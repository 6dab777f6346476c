"""Full fine-tuning: every parameter trains. The baseline every PEFT method is compared to."""
from __future__ import annotations

from dataclasses import dataclass

from methods import ApplyContext, register


@dataclass(frozen=True)
class FullSettings:
    pass


def apply(model, settings: FullSettings, ctx: ApplyContext):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def stored_bytes(model) -> int:
    """A full fine-tune must store the whole model per task."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


register("full", FullSettings, apply, lr_range=(1e-5, 3e-4), paper="baseline (all parameters trained)",
         quants={"none"}, mergeable=False, stored_bytes=stored_bytes)
