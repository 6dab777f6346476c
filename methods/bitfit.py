"""BitFit — Ben Zaken, Ravfogel & Goldberg 2022, "BitFit: Simple Parameter-efficient Fine-tuning
for Transformer-based Masked Language-models" (arXiv:2106.10199).

Trains every bias term of the model (attention, FFN, LayerNorm, pooler) and the new task
head; all weights stay frozen.  Ours because peft has no BitFit (it is a freezing rule,
not a module).  The paper's setting is BERT-style encoders on classification: Llama-family
decoders have no biases at all, so apply refuses them, and the causal-LM task type (whose
tiny and common models are such decoders) is not declared.  Over int8/NF4 the biases of
bitsandbytes layers stay full precision and train.
"""
from __future__ import annotations

from dataclasses import dataclass

from methods import ApplyContext, _adapters, freeze_all_but_heads, register


@dataclass(frozen=True)
class BitFitSettings:
    pass


def _is_bias(name: str) -> bool:
    return name.rsplit(".", 1)[-1] == "bias"


def apply(model, settings: BitFitSettings, ctx: ApplyContext):
    freeze_all_but_heads(model, ctx)
    head = {n for n, p in model.named_parameters() if p.requires_grad}
    biases = [p for n, p in model.named_parameters() if _is_bias(n) and n not in head]
    if not biases:
        raise ValueError(f"bitfit trains bias terms, and this {ctx.model_type} model has none outside its task head "
                         "(Llama-family models have no biases): choose another method")
    for p in biases:
        p.requires_grad_(True)
    return model


def load(base, directory: str, settings: BitFitSettings, ctx: ApplyContext):
    return _adapters.load_trainable(apply(base, settings, ctx), directory)


register("bitfit", BitFitSettings, apply, lr_range=(1e-4, 3e-2), paper="Ben Zaken et al. 2022, arXiv:2106.10199",
         task_types={"seq_cls"}, quants={"none", "int8", "nf4"}, save=_adapters.save_trainable, load=load)
