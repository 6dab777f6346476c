"""Which layers an adapter targets, per architecture, so suites need not name them.

peft has its own tables, but they are keyed by method and miss some model types; the
small tables here serve every method of ours and are easy to extend.  A suite can always
override them with a method's `targets` setting.

A target is a module-name suffix of whole dotted components, as in peft (`value` matches
`bert.encoder.layer.0.attention.self.value`), where a component `N` stands for a block
index.  `N` is needed where a plain suffix is ambiguous: BERT's FFN output projection is
`encoder.layer.0.output.dense`, but `output.dense` also ends the attention output
`encoder.layer.0.attention.output.dense`; `N.output.dense` matches only the former.
The target `all_linear` stands for every linear layer inside the transformer blocks
(attention and FFN projections; not the embeddings, the task head or an LM head).
Targets are resolved to full module names, so peft sees exactly the layers meant.
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

# attention key/value projections: what (IA)^3 rescales (Liu et al. 2022)
ATTENTION_KV: dict[str, tuple[str, ...]] = {
    "bert": ("key", "value"),
    "roberta": ("key", "value"),
    "distilbert": ("k_lin", "v_lin"),
    "gpt2": ("c_attn",),  # fused q/k/v: scales queries too
    "llama": ("k_proj", "v_proj"),
    "mistral": ("k_proj", "v_proj"),
    "qwen2": ("k_proj", "v_proj"),
    "qwen3": ("k_proj", "v_proj"),
    "gemma": ("k_proj", "v_proj"),
    "phi3": ("qkv_proj",),
}

# the FFN's second (output) projection, whose input is the FFN's activation: (IA)^3's l_ff
# rescales that activation, i.e. this layer's input
FFN_OUT: dict[str, tuple[str, ...]] = {
    "bert": ("N.output.dense",),
    "roberta": ("N.output.dense",),
    "distilbert": ("lin2",),
    "gpt2": ("mlp.c_proj",),
    "llama": ("down_proj",),
    "mistral": ("down_proj",),
    "qwen2": ("down_proj",),
    "qwen3": ("down_proj",),
    "gemma": ("down_proj",),
    "phi3": ("down_proj",),
}


# a `targets` entry naming every linear layer of the transformer blocks, attention and FFN
# (AdaLoRA's setting in its paper: W_q, W_k, W_v, W_o, W_f1, W_f2)
ALL_LINEAR = "all_linear"


def _is_linear(module: torch.nn.Module) -> bool:
    # bitsandbytes' Linear8bitLt/Linear4bit and GPT-2's Conv1D are linears too
    return isinstance(module, torch.nn.Linear) or "Linear" in type(module).__name__ or type(module).__name__ == "Conv1D"


def _matches(name: str, target: str) -> bool:
    parts, want = name.split("."), target.split(".")
    if len(want) > len(parts):
        return False
    return all(w == p or (w == "N" and p.isdigit()) for w, p in zip(want, parts[-len(want):]))


def find_modules(model: torch.nn.Module, targets: tuple[str, ...], kind: str = "target") -> tuple[str, ...]:
    """Full names of the linear layers matching `targets`; ValueError naming a target that matches none."""
    linears = [name for name, m in model.named_modules() if name and _is_linear(m)]
    chosen: set[str] = set()
    for t in targets:
        hits = _block_linears(model, linears) if t == ALL_LINEAR else {n for n in linears if _matches(n, t)}
        if not hits:
            short = sorted({n.rsplit(".", 1)[-1] for n in linears})
            raise ValueError(f"{kind} module {t!r} not found in the model (linear layers: {', '.join(short)}; "
                             f"a target is a name suffix such as 'value' or 'N.output.dense', N = block index, "
                             f"or {ALL_LINEAR!r} for every linear layer of the blocks)")
        chosen |= hits
    return tuple(n for n in linears if n in chosen)


def _block_linears(model: torch.nn.Module, linears: list[str]) -> set[str]:
    """The linear layers inside the transformer blocks (what `all_linear` stands for)."""
    from methods._adapters import transformer_blocks

    prefix = transformer_blocks(model)[0] + "."
    return {n for n in linears if n.startswith(prefix)}


def resolve_targets(model: torch.nn.Module, model_type: str, override: tuple[str, ...] | None = None,
                    table: dict[str, tuple[str, ...]] = ATTENTION_QV, kind: str = "target") -> tuple[str, ...]:
    """Full names of the layers to adapt: `override` if given, else the architecture's entry in `table`."""
    targets = tuple(override) if override else table.get(model_type)
    if targets is None:
        linears = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n and _is_linear(m)})
        raise ValueError(f"no default {kind} modules for model type {model_type!r}; set `settings: {{targets: [...]}}` "
                         f"in the grid entry (linear layers in this model: {', '.join(linears)})")
    return find_modules(model, targets, kind)
