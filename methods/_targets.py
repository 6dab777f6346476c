"""Which linear layers an adapter targets, per architecture, so suites need not name them.

peft has its own table for LoRA, but it is keyed by method and misses some model types;
one small table here serves every method of ours and is easy to extend.  A suite can
always override it with a method's `targets` setting.
"""
from __future__ import annotations

import torch

# attention query/value projections: the LoRA paper's default choice (Hu et al. 2021, sec. 7.1)
ATTENTION_QV: dict[str, tuple[str, ...]] = {
    "bert": ("query", "value"),
    "roberta": ("query", "value"),
    "distilbert": ("q_lin", "v_lin"),
    "gpt2": ("c_attn",),
    "llama": ("q_proj", "v_proj"),
    "mistral": ("q_proj", "v_proj"),
    "qwen2": ("q_proj", "v_proj"),
    "qwen3": ("q_proj", "v_proj"),
    "gemma": ("q_proj", "v_proj"),
    "phi3": ("qkv_proj",),
}


def resolve_targets(model: torch.nn.Module, model_type: str, override: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Module-name suffixes to adapt; raises ValueError naming what the model has."""
    targets = tuple(override) if override else ATTENTION_QV.get(model_type)
    linear_names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) or "Linear" in type(m).__name__}
    if targets is None:
        raise ValueError(f"no default target modules for model type {model_type!r}; set `settings: {{targets: [...]}}` "
                         f"in the grid entry (linear layers in this model: {', '.join(sorted(linear_names))})")
    missing = [t for t in targets if t not in linear_names]
    if missing:
        raise ValueError(f"target modules {missing} not found in the model (linear layers: {', '.join(sorted(linear_names))})")
    return targets
