"""Pfeiffer adapters — Pfeiffer et al. 2021, "AdapterFusion: Non-Destructive Task Composition for
Transfer Learning" (arXiv:2005.00247), the single-task adapter architecture used there.

The same bottleneck as Houlsby's, but only after the FFN output projection of each block,
ReLU, and no layer norms trained: half the adapters of Houlsby's placement.  Ours for the same reason as adapter_houlsby (no maintained library on
transformers 5).  Rank = bottleneck width.
"""
from __future__ import annotations

from dataclasses import dataclass

from methods import ApplyContext, _adapters, register


@dataclass(frozen=True)
class PfeifferSettings(_adapters.BottleneckSettings):
    activation: str = "relu"
    train_layer_norms: bool | None = False


def apply(model, settings: PfeifferSettings, ctx: ApplyContext):
    return _adapters.add_bottlenecks(model, settings, ctx, sites=("ffn",), layer_norms=bool(settings.train_layer_norms))


def load(base, directory: str, settings: PfeifferSettings, ctx: ApplyContext):
    return _adapters.load_trainable(apply(base, settings, ctx), directory)


register("adapter_pfeiffer", PfeifferSettings, apply, lr_range=(1e-4, 1e-2), paper="Pfeiffer et al. 2021, arXiv:2005.00247",
         ranked=True, rank_meaning="bottleneck width", quants={"none", "int8", "nf4"},
         save=_adapters.save_trainable, load=load)
