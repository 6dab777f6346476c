"""LoKr — Yeh et al. 2024, "Navigating Text-To-Image Customization: From LyCORIS Fine-Tuning to
Model Evaluation" (LyCORIS, arXiv:2309.14859).

What it trains: a Kronecker-product update ΔW = W1 ⊗ W2 (scaled by alpha/r) beside each
frozen target linear.  d_out = a·b and d_in = c·d are each split into two factors near
their square root (32 = 4·8); W1 (a x c) is a small full matrix and W2 (b x d) is a rank-r
product when r < max(b, d)/2, else full.  Per target: a·c + (r·(b + d) or b·d).  W1 starts
at zero, so the model starts equal to the base.  Through peft's LoKrConfig.

Quantized bases: peft has no bitsandbytes layer for the LyCORIS methods, but bitsandbytes'
Linear8bitLt is an nn.Linear and the update is applied as an extra x·ΔWᵀ beside it, so
int8 trains (merging into the int8 weights does not: peft adds a float delta to int8).
NF4 is left out: the delta is reshaped to the base weight's shape, which for packed 4-bit
weights is (d_out·d_in/2, 1), and the forward fails.
"""
from __future__ import annotations

from dataclasses import dataclass

from methods import ApplyContext, _peft, register


@dataclass(frozen=True)
class LokrSettings:
    rank: int = 8
    alpha: float = 8.0  # peft's default: scale alpha/r = 1
    targets: tuple[str, ...] | None = None  # None: the architecture's attention q/v projections

    def __post_init__(self):
        _peft.check_low_rank("lokr", self.rank, self.alpha)


def apply(model, settings: LokrSettings, ctx: ApplyContext):
    from peft import LoKrConfig

    return _peft.adapt(model, ctx, LoKrConfig, r=settings.rank, alpha=settings.alpha,
                       target_modules=_peft.targets(model, ctx, settings.targets))


register("lokr", LokrSettings, apply, lr_range=(1e-4, 3e-2), paper="Yeh et al. 2024, arXiv:2309.14859",
         ranked=True, rank_meaning="rank r of the second Kronecker factor",
         quants={"none", "int8"}, mergeable=True, merge=_peft.merge, **_peft.SAVE_LOAD)
