"""Houlsby adapters — Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP" (arXiv:1902.00751).

A bottleneck (down-projection, nonlinearity, up-projection, residual) after the attention
output projection and after the FFN output projection of every block, before the residual
add; layer norms train too (the paper's setting on BERT; a setting, off on decoders).
Ours because peft has no bottleneck adapters and the `adapters` package does not follow
transformers 5.  Rank = bottleneck width.  The adapters sit beside frozen int8/NF4 layers
in full precision, so quantized bases train.
"""
from __future__ import annotations

from dataclasses import dataclass

from methods import ApplyContext, _adapters, register


@dataclass(frozen=True)
class HoulsbySettings(_adapters.BottleneckSettings):
    pass


def apply(model, settings: HoulsbySettings, ctx: ApplyContext):
    norms = settings.train_layer_norms
    if norms is None:
        norms = ctx.model_type in _adapters.ENCODER_TYPES
    return _adapters.add_bottlenecks(model, settings, ctx, sites=("attention", "ffn"), layer_norms=norms)


def load(base, directory: str, settings: HoulsbySettings, ctx: ApplyContext):
    return _adapters.load_trainable(apply(base, settings, ctx), directory)


register("adapter_houlsby", HoulsbySettings, apply, lr_range=(1e-4, 1e-2), paper="Houlsby et al. 2019, arXiv:1902.00751",
         ranked=True, rank_meaning="bottleneck width", quants={"none", "int8", "nf4"},
         save=_adapters.save_trainable, load=load)
