"""Pieces shared by the methods written in this project (head_only, bitfit, adapters, piggyback, spottune).

- `Bottleneck`: the adapter module of Houlsby et al. 2019 (arXiv:1902.00751): x + up(act(down(x))),
  up-projection zero-initialised so an adapted model starts equal to its base;
- `ADAPTER_SITES`: where Houlsby's adapters go in each architecture's blocks (attention / FFN output
  projections), and where `targets` puts them; Pfeiffer's own site is in adapter_pfeiffer.py;
- `transformer_blocks`: the list of blocks, found without a per-architecture table;
- `save_trainable` / `load_trainable`: what a method must store per task is exactly what it trained.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from methods import ApplyContext, freeze_all_but_heads

# output projections of the attention and FFN sublayers, as paths inside one block
ADAPTER_SITES: dict[str, dict[str, str]] = {
    **{t: {"attention": "attention.output.dense", "ffn": "output.dense"}
       for t in ("bert", "roberta", "xlm-roberta", "electra", "camembert")},
    "distilbert": {"attention": "attention.out_lin", "ffn": "ffn.lin2"},
    "gpt2": {"attention": "attn.c_proj", "ffn": "mlp.c_proj"},
    **{t: {"attention": "self_attn.o_proj", "ffn": "mlp.down_proj"}
       for t in ("llama", "mistral", "qwen2", "qwen3", "gemma", "phi3")},
}

# Houlsby et al. train the layer norms too (on BERT); on decoders that is our choice, off by default
ENCODER_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "electra", "camembert", "distilbert", "albert",
                           "deberta", "deberta-v2", "mpnet"})

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}

SAVED_FILE = "trained.safetensors"


@dataclass(frozen=True)
class BottleneckSettings:
    rank: int = 64  # bottleneck width (Houlsby et al. tried 8-256)
    activation: str = "gelu"
    train_layer_norms: bool | None = None  # None: True on encoders (the paper, on BERT), False on decoders
    targets: tuple[str, ...] | None = None  # module paths inside a block, e.g. "output.dense"; None: ADAPTER_SITES

    def __post_init__(self):
        if self.rank < 1 or self.activation not in ACTIVATIONS:
            raise ValueError(f"adapters need rank >= 1 and activation in {sorted(ACTIVATIONS)}; "
                             f"got rank={self.rank}, activation={self.activation!r}")


class Bottleneck(nn.Module):
    """x + up(act(down(x))); starts as the identity (up = 0), down near zero as in the paper."""

    def __init__(self, dim: int, width: int, activation: str):
        super().__init__()
        self.down, self.act, self.up = nn.Linear(dim, width), ACTIVATIONS[activation](), nn.Linear(width, dim)
        nn.init.trunc_normal_(self.down.weight, std=1e-2, a=-2e-2, b=2e-2)
        for t in (self.down.bias, self.up.weight, self.up.bias):
            nn.init.zeros_(t)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """up(act(down(x))) without the residual, in x's dtype; zero at initialisation."""
        # adapters stay fp32 whatever the base computes in (bf16 autocast, 4-bit layers)
        return self.up(self.act(self.down(x.to(self.down.weight.dtype)))).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.delta(x)


class WithAdapter(nn.Module):
    """A frozen sublayer followed by its adapter: the adapter sees the sublayer output before the residual add."""

    def __init__(self, base: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.base, self.adapter = base, adapter

    def forward(self, *args, **kwargs):
        return self.adapter(self.base(*args, **kwargs))


def transformer_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(name, blocks): the ModuleList holding one entry per hidden layer (bert.encoder.layer, model.layers, ...)."""
    n = model.config.get_text_config().num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return name, module
    raise ValueError(f"found no list of {n} transformer blocks in {type(model).__name__}")


def out_features(module: nn.Module) -> int:
    size = getattr(module, "out_features", None) or getattr(module, "nf", None)  # nn.Linear / bnb / GPT-2 Conv1D
    if size is None:
        raise ValueError(f"cannot put an adapter after {type(module).__name__}: not a linear layer")
    return int(size)


def add_bottlenecks(model, settings: BottleneckSettings, ctx: ApplyContext, sites: tuple[str, ...], layer_norms: bool):
    """Freeze the base, put a Bottleneck after each target of every block; optionally train the blocks' norms."""
    if settings.targets:
        paths = tuple(settings.targets)
    elif ctx.model_type in ADAPTER_SITES:
        paths = tuple(ADAPTER_SITES[ctx.model_type][s] for s in sites)
    else:
        raise ValueError(f"no default adapter places for model type {ctx.model_type!r}; set `settings: {{targets: "
                         f"[...]}}` to module paths inside a block (known types: {', '.join(sorted(ADAPTER_SITES))})")
    freeze_all_but_heads(model, ctx)
    _, blocks = transformer_blocks(model)
    for block in blocks:
        for path in paths:
            parent_path, _, leaf = path.rpartition(".")
            try:
                parent, target = block.get_submodule(parent_path), block.get_submodule(path)
            except AttributeError:
                names = [n for n, m in block.named_modules() if n and not list(m.children())]
                raise ValueError(f"adapter target {path!r} is not in a {type(block).__name__} "
                                 f"(its leaf modules: {', '.join(names)})") from None
            device = next(target.parameters()).device
            setattr(parent, leaf, WithAdapter(target, Bottleneck(out_features(target), settings.rank,
                                                                 settings.activation).to(device)))
        if layer_norms:
            train_norms(block)
    return model


def train_norms(block: nn.Module) -> None:
    """Make every normalisation layer of a block trainable (LayerNorm, RMSNorm, ...)."""
    for module in block.modules():
        if "norm" in type(module).__name__.lower():
            module.requires_grad_(True)


def save_trainable(model: nn.Module, directory: str) -> None:
    """Everything the method trained (its parameters and the task head), and nothing else."""
    from safetensors.torch import save_file

    state = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
    save_file(state, str(Path(directory) / SAVED_FILE))


def load_trainable(model: nn.Module, directory: str) -> nn.Module:
    """The inverse of save_trainable on a freshly adapted base; refuses a file that does not fit."""
    from safetensors.torch import load_file

    state = load_file(str(Path(directory) / SAVED_FILE))
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(state) != expected:
        raise ValueError(f"{directory}/{SAVED_FILE} does not fit this model: missing {sorted(expected - set(state))[:3]}, "
                         f"unexpected {sorted(set(state) - expected)[:3]} (same method settings and base model?)")
    model.load_state_dict(state, strict=False)
    return model
