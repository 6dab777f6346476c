"""LoHa — Hyeon-Woo et al. 2022, "FedPara: Low-Rank Hadamard Product for Communication-Efficient
Federated Learning" (arXiv:2108.06098); as a PEFT method in LyCORIS (Yeh et al. 2024, arXiv:2309.14859).

What it trains: an update that is the Hadamard (elementwise) product of two rank-r
products, ΔW = (B1·A1) ⊙ (B2·A2) scaled by alpha/r, beside each frozen target linear: four
factors, 2r·(d_in + d_out) parameters per target, reaching rank up to r² for the price of
two rank-r LoRAs.  One factor starts at zero, so the model starts equal to the base.
Through peft's LoHaConfig.

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
class LohaSettings:
    rank: int = 8
    alpha: float = 8.0  # peft's default: scale alpha/r = 1
    targets: tuple[str, ...] | None = None  # None: the architecture's attention q/v projections

    def __post_init__(self):
        _peft.check_low_rank("loha", self.rank, self.alpha)


def apply(model, settings: LohaSettings, ctx: ApplyContext):
    from peft import LoHaConfig

    return _peft.adapt(model, ctx, LoHaConfig, r=settings.rank, alpha=settings.alpha,
                       target_modules=_peft.targets(model, ctx, settings.targets))


register("loha", LohaSettings, apply, lr_range=(1e-4, 3e-2), paper="Hyeon-Woo et al. 2022, arXiv:2108.06098",
         ranked=True, rank_meaning="rank r of each of the two Hadamard factors", quants={"none", "int8"},
         mergeable=True, merge=_peft.merge, **_peft.SAVE_LOAD)
