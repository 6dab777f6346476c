"""Prompt tuning — Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt
Tuning" (arXiv:2104.08691).

What it trains: n virtual-token embeddings ("soft prompt", n x hidden parameters)
prepended to every input's embeddings; the whole model stays frozen, so the method
changes only what the model reads, and a task is stored as n vectors.  Random
initialisation (the paper's baseline; its sampled-vocabulary init is an option in peft).
The outputs differ from the base from the start (the prompt is read), and there is no
weight to merge into.  For seq_cls the new classifier trains too.  Through peft's
PromptTuningConfig; peft prepends the prompt in `forward` and in `generate`, and pads the
attention mask and labels over it.  The base is only read, so int8 and NF4 bases train.
"""
from __future__ import annotations

from dataclasses import dataclass

from methods import ApplyContext, _peft, register


@dataclass(frozen=True)
class PromptTuningSettings:
    rank: int = 20  # virtual tokens; the paper finds little gain beyond about 20

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"prompt_tuning needs rank (virtual tokens) >= 1; got {self.rank}")


def apply(model, settings: PromptTuningSettings, ctx: ApplyContext):
    from peft import PromptTuningConfig, PromptTuningInit

    return _peft.adapt(model, ctx, PromptTuningConfig, num_virtual_tokens=settings.rank,
                       prompt_tuning_init=PromptTuningInit.RANDOM)


register("prompt_tuning", PromptTuningSettings, apply, lr_range=(1e-3, 3e-1), paper="Lester et al. 2021, arXiv:2104.08691",
         ranked=True, rank_meaning="number of virtual tokens", quants={"none", "int8", "nf4"}, **_peft.SAVE_LOAD)
