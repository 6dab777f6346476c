"""Shared glue for methods that the peft library implements: wrap, save, load, merge.

Every peft method is `get_peft_model(model, <its config>)`; what differs is only the
config, so the method files stay a settings class and a config builder.
"""
from __future__ import annotations

from methods import ApplyContext

PEFT_TASK_TYPES = {"seq_cls": "SEQ_CLS", "causal_lm": "CAUSAL_LM"}


def wrap(model, config, ctx: ApplyContext):
    """get_peft_model, the same way over a quantized base as over a plain one.

    peft's `prepare_model_for_kbit_training` is not called: all it would add here is a
    cast of every non-quantized weight (embeddings, norms, head) to fp32, which in bf16
    makes the whole residual stream fp32 (measured on CPU: ~40% more saved activations
    per layer) while LoRA over the plain bf16 base stays bf16, so QLoRA would be compared
    on a heavier footing.  The norms compute in fp32 inside either way (RMSNorm upcasts,
    LayerNorm runs in fp32 under autocast), and get_peft_model freezes the base itself.
    """
    from peft import get_peft_model

    return get_peft_model(model, config)


def adapt(model, ctx: ApplyContext, config_cls, **fields):
    """get_peft_model with `config_cls(**fields)` for the task type, the task head trainable."""
    config = config_cls(**fields, task_type=PEFT_TASK_TYPES[ctx.task_type],
                        modules_to_save=head_modules(model, ctx.head_names) or None)
    return wrap(model, config, ctx)


def head_modules(model, head_names: tuple[str, ...]) -> list[str]:
    """The head as peft's modules_to_save: each named module that holds weights itself
    (`classifier`), else its children that do (`pooler.dense` for BERT's pooler).

    peft 0.21's merge_and_unload for IA3, LoHa, LoKr and VeRA copies `.weight` from each
    wrapped module, so a wrapped container (BertPooler) fails there; its Linear does not.
    """
    out: list[str] = []
    for name, module in model.named_modules():
        last = name.rsplit(".", 1)[-1]
        if last not in head_names:
            continue
        if any(True for _ in module.parameters(recurse=False)):
            out.append(last)
        else:
            out += [f"{last}.{child}" for child, sub in module.named_children()
                    if any(True for _ in sub.parameters(recurse=False))]
    return sorted(set(out))


def targets(model, ctx: ApplyContext, override: tuple[str, ...] | None) -> list[str]:
    """The suite's `targets` setting (`all_linear`: every linear of the blocks), else the architecture's
    attention q/v projections."""
    from methods._targets import resolve_targets

    return list(resolve_targets(model, ctx.model_type, override))


def check_low_rank(name: str, rank: int, alpha: float, dropout: float = 0.0) -> None:
    """Range checks shared by the low-rank settings classes (raised at suite validation)."""
    if rank < 1 or alpha <= 0 or not 0 <= dropout < 1:
        raise ValueError(f"{name} needs rank >= 1, alpha > 0 and 0 <= dropout < 1; got rank={rank}, "
                         f"alpha={alpha}, dropout={dropout}")


def save(model, directory: str) -> None:
    model.save_pretrained(directory)


def load(base, directory: str, settings, ctx: ApplyContext):
    from peft import PeftModel

    return PeftModel.from_pretrained(base, directory)


def merge(model):
    return model.merge_and_unload()


# keyword arguments for `register` shared by every peft method
SAVE_LOAD = dict(save=save, load=load)
