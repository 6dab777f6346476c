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
    """A full fine-tune must store the whole model per task: every tensor of its state dict
    once (a weight tied to another, such as an LM head tied to the embeddings, is stored once)."""
    seen, total = set(), 0
    for t in model.state_dict().values():
        key = (t.data_ptr(), t.numel() * t.element_size())
        if key not in seen:
            seen.add(key)
            total += key[1]
    return total


register("full", FullSettings, apply, lr_range=(1e-5, 3e-4), paper="baseline (all parameters trained)",
         quants={"none"}, mergeable=False, stored_bytes=stored_bytes)
