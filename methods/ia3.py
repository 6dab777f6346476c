"""(IA)^3 — Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper
than In-Context Learning" (arXiv:2205.05638).

What it trains: three learned vectors per block that rescale activations elementwise —
the attention keys and values (l_k, l_v: the output of the key/value projections) and
the FFN's inner activation (l_ff: the input of the FFN's output projection).  So per
block d_k + d_v + d_ff parameters, initialised to ones: the model starts equal to the
base, and a merge just multiplies the vectors into the weights.  Through peft's IA3Config
(`feedforward_modules` are the layers whose input, not output, is scaled).
"""
from __future__ import annotations

from dataclasses import dataclass

from methods import ApplyContext, _peft, register
from methods._targets import ATTENTION_KV, FFN_OUT, resolve_targets


@dataclass(frozen=True)
class Ia3Settings:
    targets: tuple[str, ...] | None = None  # output-scaled layers; None: attention key/value projections
    feedforward: tuple[str, ...] | None = None  # input-scaled layers; None: the FFN output projection


def apply(model, settings: Ia3Settings, ctx: ApplyContext):
    from peft import IA3Config

    scaled = resolve_targets(model, ctx.model_type, settings.targets, ATTENTION_KV)
    # an explicit empty list means no input scaling (None means the default FFN layer)
    ffn = () if settings.feedforward == () else resolve_targets(model, ctx.model_type, settings.feedforward, FFN_OUT,
                                                                 kind="feedforward")
    return _peft.adapt(model, ctx, IA3Config, target_modules=list(dict.fromkeys(scaled + ffn)),
                       feedforward_modules=list(ffn))


register("ia3", Ia3Settings, apply, lr_range=(1e-3, 1e-1), paper="Liu et al. 2022, arXiv:2205.05638",
         quants={"none", "int8", "nf4"}, mergeable=True, merge=_peft.merge, **_peft.SAVE_LOAD)
