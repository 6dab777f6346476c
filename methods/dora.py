"""DoRA — Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation" (arXiv:2402.09353).

What it trains: each target weight is split into a magnitude (one scale per output
feature, initialised to the column norms of W) and a direction; the direction is updated
by a LoRA product B·A (rank r, scaled by alpha/r) and renormalised, the magnitude is
trained directly.  So per target linear: r·(d_in + d_out) for B·A plus d_out magnitudes.
B starts at zero, so the adapted model starts equal to the base.  Through peft's
`LoraConfig(use_dora=True)`.

Over an NF4 base this is QDoRA (peft dequantizes the 4-bit weight for the norm).  int8 is
left out: on CPU, peft 0.21's DoRA re-creates the Int8Params after dequantizing it for the
norm (`module.weight = module.weight.to(device)` in `dequantize_module_weight`), the new
parameter has no scales (SCB), and the second forward fails in bitsandbytes
("'NoneType' object has no attribute 'unsqueeze'").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from methods import ApplyContext, _peft, lora, register


@dataclass(frozen=True)
class DoraSettings(lora.LoraSettings):
    """LoRA's settings: DoRA only adds the magnitude vector, which has none of its own."""

    name: ClassVar[str] = "dora"


def apply(model, settings: DoraSettings, ctx: ApplyContext):
    return lora.apply(model, settings, ctx, use_dora=True)


register("dora", DoraSettings, apply, lr_range=(1e-4, 1e-2), paper="Liu et al. 2024, arXiv:2402.09353",
         ranked=True, rank_meaning="rank r of the direction update B·A", quants={"none", "nf4"},
         mergeable=True, merge=_peft.merge, **_peft.SAVE_LOAD)
