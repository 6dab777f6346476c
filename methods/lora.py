"""LoRA — Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models" (arXiv:2106.09685).

Trains a low-rank update B·A (rank r, scaled by alpha/r) beside frozen target linears,
through the peft library.  Over an int8 or NF4-quantized frozen base this is QLoRA
(Dettmers et al. 2023, arXiv:2305.14314): `quant: nf4` in the grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from methods import ApplyContext, _peft, register


@dataclass(frozen=True)
class LoraSettings:
    name: ClassVar[str] = "lora"  # for messages; DoRA reuses these settings
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] | None = None  # None: the architecture's attention q/v projections

    def __post_init__(self):
        _peft.check_low_rank(self.name, self.rank, self.alpha, self.dropout)


def apply(model, settings: LoraSettings, ctx: ApplyContext, use_dora: bool = False):
    from peft import LoraConfig

    return _peft.adapt(model, ctx, LoraConfig, r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                       use_dora=use_dora, target_modules=_peft.targets(model, ctx, settings.targets))


register("lora", LoraSettings, apply, lr_range=(1e-4, 1e-2), paper="Hu et al. 2021, arXiv:2106.09685",
         ranked=True, rank_meaning="rank r of B·A", quants={"none", "int8", "nf4"},
         mergeable=True, merge=_peft.merge, **_peft.SAVE_LOAD)
