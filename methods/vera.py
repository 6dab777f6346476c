"""VeRA — Kopiczko et al. 2024, "VeRA: Vector-based Random Matrix Adaptation" (arXiv:2310.11454).

What it trains: one pair of frozen random matrices A (r x d_in) and B (d_out x r) is shared
by every target layer (regenerated from a seed); each layer trains only two scaling
vectors, d (r, initialised to `d_initial`) and b (d_out, initialised to zero), and adds
Λ_b·B·Λ_d·A·x.  So r + d_out parameters per target linear, and the model starts equal to
the base.  Through peft's VeraConfig.

The saved adapter also holds the shared projections (peft's `save_projection`, safer than
regenerating them on another torch version), but they are common to every task and
reproducible from the seed, so what a task must store is its vectors: `stored_bytes`.
"""
from __future__ import annotations

from dataclasses import dataclass

from methods import ApplyContext, _peft, register


@dataclass(frozen=True)
class VeraSettings:
    rank: int = 256  # the paper's r for instruction tuning (1024 on GLUE): the shared matrices are free
    d_initial: float = 0.1
    dropout: float = 0.0
    seed: int = 0  # projection_prng_key: the shared random matrices
    targets: tuple[str, ...] | None = None  # None: the architecture's attention q/v projections

    def __post_init__(self):
        if self.rank < 1 or not 0 <= self.dropout < 1:
            raise ValueError(f"vera needs rank >= 1 and 0 <= dropout < 1; got rank={self.rank}, dropout={self.dropout}")


def apply(model, settings: VeraSettings, ctx: ApplyContext):
    from peft import VeraConfig

    return _peft.adapt(model, ctx, VeraConfig, r=settings.rank, d_initial=settings.d_initial, vera_dropout=settings.dropout,
                       projection_prng_key=settings.seed, save_projection=True,
                       target_modules=_peft.targets(model, ctx, settings.targets))


def stored_bytes(model) -> int:
    """The trained vectors (and task head) only: the projections are shared and seeded."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


register("vera", VeraSettings, apply, lr_range=(1e-3, 1e-1), paper="Kopiczko et al. 2024, arXiv:2310.11454",
         ranked=True, rank_meaning="rank r of the shared frozen random matrices", quants={"none", "int8", "nf4"},
         mergeable=True, merge=_peft.merge, stored_bytes=stored_bytes, **_peft.SAVE_LOAD)
