"""Pfeiffer adapters — Pfeiffer et al. 2021, "AdapterFusion: Non-Destructive Task Composition for
Transfer Learning" (arXiv:2005.00247), the single-task adapter architecture used there.

What it trains: ONE bottleneck adapter per block (Houlsby's module: down-projection, ReLU,
up-projection, up zero-initialised so the model starts equal to its base), at the output of
the FFN sub-layer, and no layer norms (a setting).  Rank = bottleneck width.  Ours for the
same reason as adapter_houlsby (no maintained adapter library on transformers 5).

The site, and why.  The paper's adapter (its Fig. 2 and the architecture search in its
appendix; the "pfeiffer"/SeqBn configuration of the authors' adapter-transformers library)
sits after the FFN's Add & Norm, not inside the sub-layer as Houlsby's does.  In a
post-norm encoder block (BERT: h = dropout(dense(x)), a = the attention sub-layer's output,
output = LN(h + a)):

    z = LN(h + a)        the FFN's Add & Norm, as in the base block
    o = h + f(z)         the adapter reads z; its residual is h, taken before the norm
    y = LN(o + a)        the block's own LayerNorm again, after the adapter

i.e. y = LN(x + f(LN(x))) with x = h + a, the LayerNorm's own input.  So the output
LayerNorm is replaced by `OutputAdapter(norm, adapter)` computing exactly that; the
block's forward stays the transformers code, and any post-norm block whose FFN ends in
norm(FFN output + residual) fits (BERT-likes' `output.LayerNorm`, DistilBERT's
`output_layer_norm`).  The norm is the same module both times (frozen by default).

Pre-norm decoders (Llama and the like, GPT-2): the block ends in s = r + MLP(norm(r)),
with no norm after the FFN.  We put the adapter on s, after the residual add: y = s + f(s)
(the formula above with the norm taken as the identity), by a forward hook on the block
(prepended, so transformers' own output hooks see the adapted output).  This keeps what
distinguishes the paper's site - the adapter reads the sub-layer's output after its
residual add (and norm where there is one) - and is what adapter-transformers computes for
this configuration on Llama (no norm: adapter input h + r, adapter residual h, then + r).
The alternative, the MLP output before the residual add (r + h + f(h)), is exactly
Houlsby's FFN adapter: Pfeiffer would then be Houlsby without the attention adapter.  The
caveat: s is not normalised, so the adapter sees the residual stream at its raw scale.

`targets` (module paths inside a block) overrides the site: then a bottleneck follows each
named module, Houlsby-style (`WithAdapter`).  Adapters sit beside frozen int8/NF4 layers in
full precision, so quantized bases train.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from methods import ApplyContext, _adapters, freeze_all_but_heads, register

# the norm applied to (FFN output + residual), as a path inside one block; None: a pre-norm
# block, whose output is that sum with no norm after it
FFN_OUTPUT_NORM: dict[str, str | None] = {
    **{t: "output.LayerNorm" for t in ("bert", "roberta", "xlm-roberta", "electra", "camembert")},
    "distilbert": "output_layer_norm",
    **{t: None for t in ("gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma", "phi3")},
}


@dataclass(frozen=True)
class PfeifferSettings(_adapters.BottleneckSettings):
    activation: str = "relu"
    train_layer_norms: bool | None = False  # the paper trains the adapters only
    # targets: None = the paper's site above; module paths inside a block = a bottleneck after each


class OutputAdapter(nn.Module):
    """A post-norm block's FFN output norm with the adapter at the paper's site: norm(x + f(norm(x)))."""

    def __init__(self, norm: nn.Module, adapter: _adapters.Bottleneck):
        super().__init__()
        self.norm, self.adapter = norm, adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x = FFN output h + residual a; norm(x) is the base block's output, which the adapter reads;
        # its output joins the residual h before the norm: norm((h + f(norm(x))) + a)
        return self.norm(x + self.adapter.delta(self.norm(x)))


def _adapt_block_output(block: nn.Module, args, output):
    """Forward hook of a pre-norm block: its output s (after the FFN residual add) becomes s + f(s)."""
    if isinstance(output, tuple):
        return (block.adapter(output[0]),) + tuple(output[1:])
    return block.adapter(output)


def apply(model, settings: PfeifferSettings, ctx: ApplyContext):
    norms = bool(settings.train_layer_norms)
    if settings.targets:
        return _adapters.add_bottlenecks(model, settings, ctx, sites=(), layer_norms=norms)
    if ctx.model_type not in FFN_OUTPUT_NORM:
        raise ValueError(f"no Pfeiffer adapter site for model type {ctx.model_type!r} (known: "
                         f"{', '.join(sorted(FFN_OUTPUT_NORM))}); set `settings: {{targets: [...]}}` to module paths "
                         f"inside a block to put a bottleneck after each")
    norm_path = FFN_OUTPUT_NORM[ctx.model_type]
    width = model.config.get_text_config().hidden_size
    freeze_all_but_heads(model, ctx)
    _, blocks = _adapters.transformer_blocks(model)
    for block in blocks:
        device = next(block.parameters()).device
        adapter = _adapters.Bottleneck(width, settings.rank, settings.activation).to(device)
        if norm_path is None:
            block.adapter = adapter
            block.register_forward_hook(_adapt_block_output, prepend=True)
        else:
            parent_path, _, leaf = norm_path.rpartition(".")
            parent = block.get_submodule(parent_path) if parent_path else block
            setattr(parent, leaf, OutputAdapter(getattr(parent, leaf), adapter))
        if norms:
            _adapters.train_norms(block)
    return model


def load(base, directory: str, settings: PfeifferSettings, ctx: ApplyContext):
    return _adapters.load_trainable(apply(base, settings, ctx), directory)


register("adapter_pfeiffer", PfeifferSettings, apply, lr_range=(1e-4, 1e-2), paper="Pfeiffer et al. 2021, arXiv:2005.00247",
         ranked=True, rank_meaning="bottleneck width", quants={"none", "int8", "nf4"},
         save=_adapters.save_trainable, load=load)
