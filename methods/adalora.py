"""AdaLoRA — Zhang et al. 2023, "Adaptive Budget Allocation for Parameter-Efficient
Fine-Tuning" (arXiv:2303.10512).

What it trains: an SVD-shaped update P·Λ·Q beside each target linear (P: d_out x r0,
Λ: r0 singular values, Q: r0 x d_in, with r0 the initial rank), plus a penalty keeping P
and Q orthogonal.  During training a budget schedule prunes the least important singular
values (importance = smoothed |weight x gradient|) until the layers' ranks average the
target rank `rank`; then the pattern is frozen for a final phase.  Pruning zeroes
entries of Λ but keeps the tensors, so the trainable count is the one at initialisation:
r0·(d_in + d_out + 1) per target.  Λ starts at zero, so the model starts equal to the base.

Targets: by default the attention q/v projections, LoRA's default here, so that `adalora`
and `lora` rows of a leaderboard at the same rank differ by the method, not by where it is
applied.  The paper applies AdaLoRA to every weight matrix
of attention and FFN (W_q, W_k, W_v, W_o, W_f1, W_f2), where its budget allocation has
layers of different kinds to choose between: `settings: {targets: [all_linear]}`
(6 targets per block on BERT, 7 on Llama, instead of 2; the FFN's are the widest, so the
trainable count grows by more than that ratio).

The schedule needs the run's length: `tinit` (warm-up without pruning) is `warmup_frac` of
the steps, `tfinal` (fixed pattern) `final_frac` (at least one step, the one that fixes the
final pattern), and the budget is reallocated every `deltaT` = 1% of the steps (at least
every step); a 3-step run is tinit 0, tfinal 1, deltaT 1.  The harness calls
`update_and_allocate` after every optimizer step (`on_step`, gradients still present).
The loss peft returns, and so the logged training loss, includes the orthogonality
penalty: it is not comparable with other methods' training losses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from methods import ApplyContext, _peft, register


@dataclass(frozen=True)
class AdaloraSettings:
    rank: int = 8  # the target average rank after pruning
    init_rank: int | None = None  # r0; None: 1.5 x rank, the paper's initial budget
    alpha: float = 16.0
    dropout: float = 0.0
    warmup_frac: float = 0.1
    final_frac: float = 0.2
    orth_reg_weight: float = 0.5
    # None: attention q/v, as for LoRA, so the two compare at the same targets and rank;
    # [all_linear]: every linear weight of attention and FFN, the paper's setting
    targets: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.rank < 1 or (self.init_rank is not None and self.init_rank < self.rank):
            raise ValueError(f"adalora needs rank >= 1 and init_rank >= rank; got rank={self.rank}, init_rank={self.init_rank}")
        if not (0 <= self.warmup_frac and 0 <= self.final_frac and self.warmup_frac + self.final_frac < 1):
            raise ValueError(f"adalora needs warmup_frac, final_frac >= 0 summing to less than 1 (a pruning phase); "
                             f"got {self.warmup_frac} and {self.final_frac}")

    @property
    def initial_rank(self) -> int:
        return self.init_rank or math.ceil(1.5 * self.rank)


def schedule(total: int, settings: AdaloraSettings) -> tuple[int, int, int]:
    """(tinit, tfinal, deltaT) for `total` steps; peft requires tinit < total - tfinal."""
    tinit = int(settings.warmup_frac * total)
    # at least one final step when there is room: the step that fixes the last pattern
    tfinal = max(int(settings.final_frac * total), 1 if settings.final_frac > 0 else 0)
    tfinal = min(tfinal, total - tinit - 1)
    return tinit, tfinal, max(1, total // 100)


def apply(model, settings: AdaloraSettings, ctx: ApplyContext):
    from peft import AdaLoraConfig

    if ctx.total_steps < 1:
        raise ValueError("adalora needs the number of training steps (ApplyContext.total_steps) for its schedule")
    tinit, tfinal, delta = schedule(ctx.total_steps, settings)
    return _peft.adapt(
        model, ctx, AdaLoraConfig,
        target_r=settings.rank, init_r=settings.initial_rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        tinit=tinit, tfinal=tfinal, deltaT=delta, total_step=ctx.total_steps, orth_reg_weight=settings.orth_reg_weight,
        target_modules=_peft.targets(model, ctx, settings.targets),
    )


def on_step(model, step: int) -> None:
    """Score importance from this step's gradients and prune to the scheduled budget."""
    model.base_model.update_and_allocate(step)


register("adalora", AdaloraSettings, apply, lr_range=(1e-4, 3e-2), paper="Zhang et al. 2023, arXiv:2303.10512",
         ranked=True, rank_meaning="target average rank (pruned from 1.5x)",
         quants={"none", "int8", "nf4"}, mergeable=True, merge=_peft.merge, on_step=on_step, **_peft.SAVE_LOAD)
