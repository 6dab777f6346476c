"""Shared glue for methods that the peft library implements: wrap, save, load, merge.

Every peft method is `get_peft_model(model, <its config>)`; what differs is only the
config, so the method files stay a settings class and a config builder.
"""
from __future__ import annotations

from methods import ApplyContext

PEFT_TASK_TYPES = {"seq_cls": "SEQ_CLS", "causal_lm": "CAUSAL_LM"}


def wrap(model, config, ctx: ApplyContext):
    """get_peft_model, after the QLoRA preparation when the base is quantized."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if ctx.quant != "none":
        # casts norms/heads to fp32 and freezes the quantized base (QLoRA recipe)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return get_peft_model(model, config)


def task_type(ctx: ApplyContext) -> str:
    return PEFT_TASK_TYPES[ctx.task_type]


def modules_to_save(ctx: ApplyContext) -> list[str] | None:
    return list(ctx.head_names) or None


def save(model, directory: str) -> None:
    model.save_pretrained(directory)


def load(base, directory: str, settings, ctx: ApplyContext):
    from peft import PeftModel

    return PeftModel.from_pretrained(base, directory)


def merge(model):
    return model.merge_and_unload()


# keyword arguments for `register` shared by every peft method
SAVE_LOAD = dict(save=save, load=load)
