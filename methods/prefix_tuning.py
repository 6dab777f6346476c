"""Prefix tuning — Li & Liang 2021, "Prefix-Tuning: Optimizing Continuous Prompts for
Generation" (arXiv:2101.00190).

What it trains: a prefix of n virtual positions in every attention layer — a key and a
value vector per layer and position (n x layers x 2 x d_kv values) that each real token
can attend to, passed to the frozen model as its past key/value cache.  By default, as the
paper trains (its sec. 4.3, for stability), the prefix is reparametrised: an n x d_kv
table goes through an MLP (Linear d_kv -> P, tanh, Linear P -> layers x 2 x d_kv; peft's
`prefix_projection`), so the trainable parameters are n·d_kv + d_kv·P + P + P·(layers·2·d_kv)
+ layers·2·d_kv with P = `projection` = 512 (the hidden size in the authors' code).  After
training only the MLP's output table is needed: the saved adapter holds that table (n x
layers x 2 x d_kv), not the MLP.  `projection: 0` trains the prefix table directly (fewer
trainable parameters; the paper found that less stable and slightly worse).  Outputs
differ from the base from the start; nothing to merge.  For seq_cls the new classifier
trains too.

Through peft's PrefixTuningConfig.  Both task types work with peft 0.21 and
transformers 5 on our tiny models: Llama reads the prefix as a DynamicCache (training,
batched left-padded `generate` equal to unbatched and to step-by-step greedy decoding),
and BERT's self-attention still takes `past_key_values`, so the prefix receives gradients
in sequence classification.  The base is only read, so int8 and NF4 bases train.
"""
from __future__ import annotations

from dataclasses import dataclass

from methods import ApplyContext, _peft, register


@dataclass(frozen=True)
class PrefixTuningSettings:
    rank: int = 10  # prefix length; the paper's setting for table-to-text
    projection: int = 512  # hidden size of the reparametrisation MLP (the paper's); 0 trains the prefix directly

    def __post_init__(self):
        if self.rank < 1 or self.projection < 0:
            raise ValueError(f"prefix_tuning needs rank (prefix length) >= 1 and projection >= 0; "
                             f"got rank={self.rank}, projection={self.projection}")


def apply(model, settings: PrefixTuningSettings, ctx: ApplyContext):
    from peft import PrefixTuningConfig

    return _peft.adapt(model, ctx, PrefixTuningConfig, num_virtual_tokens=settings.rank,
                       prefix_projection=settings.projection > 0, encoder_hidden_size=settings.projection or None)


# lr range: with the reparametrisation MLP on by default, a step moves the prefix through two trained layers;
# the paper's default for that form is 5e-5 over 10 epochs, and a direct table (projection: 0) takes rates
# near 1e-2 (P-tuning v2's classification runs).  The range spans both, for budgets of a few hundred steps.
register("prefix_tuning", PrefixTuningSettings, apply, lr_range=(1e-4, 3e-2), paper="Li & Liang 2021, arXiv:2101.00190",
         ranked=True, rank_meaning="prefix length (virtual positions per layer)", quants={"none", "int8", "nf4"},
         **_peft.SAVE_LOAD)
