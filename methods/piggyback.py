"""Piggyback — Mallya, Davis & Lazebnik 2018, "Piggyback: Adapting a Single Network to Multiple
Tasks by Learning to Mask Weights" (arXiv:1801.06519).

Each target linear keeps its frozen weight W and learns real-valued scores s of the same
shape; the forward uses W ⊙ (s > threshold), and the backward passes the gradient of the
binary mask straight through to s.  Scores start at 1e-2 above a 5e-3 threshold, so the
mask starts all-ones and the model equals its base.  Per task one stores 1 bit per masked
weight (plus the head); W ⊙ mask is a plain weight, so it merges.  Ours because no
maintained library implements it.  Unquantized bases only: an int8/NF4 weight is not
the real-valued W the mask selects from (masking it would need a dequantized copy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from methods import ApplyContext, _adapters, freeze_all_but_heads, register

BITS_KEY = "piggyback.mask_bits"


@dataclass(frozen=True)
class PiggybackSettings:
    threshold: float = 5e-3
    score_init: float = 1e-2  # above threshold: the mask starts all-ones
    targets: tuple[str, ...] | None = None  # linear-module names inside the blocks, as in LoRA; None: every linear

    def __post_init__(self):
        if self.score_init <= self.threshold:
            raise ValueError(f"piggyback needs score_init > threshold so it starts equal to the base; "
                             f"got score_init={self.score_init}, threshold={self.threshold}")


class _Binarize(torch.autograd.Function):
    """(scores > threshold) forward; identity backward (the paper's straight-through estimator)."""

    @staticmethod
    def forward(ctx, scores, threshold):
        return (scores > threshold).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class MaskedLinear(nn.Module):
    def __init__(self, base: nn.Linear, threshold: float, score_init: float):
        super().__init__()
        self.base, self.threshold, self.score_init = base, threshold, score_init
        self.scores = nn.Parameter(torch.full_like(base.weight, score_init, dtype=torch.float32))

    def mask(self) -> torch.Tensor:
        return _Binarize.apply(self.scores, self.threshold)

    def forward(self, x):
        return F.linear(x, self.base.weight * self.mask().to(self.base.weight.dtype), self.base.bias)


def _targets(model, settings: PiggybackSettings) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, attribute, linear) for every target linear inside the transformer blocks."""
    _, blocks = _adapters.transformer_blocks(model)
    found = []
    for block in blocks:
        for name, module in block.named_modules():
            leaf = name.rsplit(".", 1)[-1]
            if type(module) is nn.Linear and (settings.targets is None or leaf in settings.targets):
                parent = block.get_submodule(name.rpartition(".")[0])
                found.append((parent, leaf, module))
    if not found:
        linears = sorted({n.rsplit(".", 1)[-1] for n, m in blocks[0].named_modules() if type(m) is nn.Linear})
        raise ValueError(f"piggyback found no nn.Linear named {list(settings.targets or [])} in the transformer blocks "
                         f"(plain linears there: {', '.join(linears) or 'none'}; quantized and Conv1D layers cannot be masked)")
    return found


def apply(model, settings: PiggybackSettings, ctx: ApplyContext):
    freeze_all_but_heads(model, ctx)
    for parent, leaf, linear in _targets(model, settings):
        setattr(parent, leaf, MaskedLinear(linear, settings.threshold, settings.score_init))
    return model


def _masked(model) -> list[MaskedLinear]:
    return [m for m in model.modules() if isinstance(m, MaskedLinear)]


def _head(model) -> dict[str, torch.Tensor]:
    """The trained parameters other than scores: the task head."""
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters()
            if p.requires_grad and not n.endswith(".scores")}


def stored_bytes(model) -> int:
    n = sum(m.scores.numel() for m in _masked(model))
    return math.ceil(n / 8) + sum(t.numel() * t.element_size() for t in _head(model).values())


@torch.no_grad()
def save(model, directory: str) -> None:
    from safetensors.torch import save_file

    bits = np.packbits(torch.cat([m.mask().flatten() for m in _masked(model)]).bool().cpu().numpy())
    save_file({BITS_KEY: torch.from_numpy(bits), **_head(model)}, str(Path(directory) / "piggyback.safetensors"))


@torch.no_grad()
def read_state(model, directory: str) -> dict[str, torch.Tensor]:
    """The saved task as state-dict entries of an adapted model: the head, and scores that
    threshold to the saved masks (score_init where kept, mirrored below the threshold where not)."""
    from safetensors.torch import load_file

    state = load_file(str(Path(directory) / "piggyback.safetensors"))
    masked = [(name, m) for name, m in model.named_modules() if isinstance(m, MaskedLinear)]
    sizes = [m.scores.numel() for _, m in masked]
    bits = torch.from_numpy(np.unpackbits(state.pop(BITS_KEY).numpy(), count=sum(sizes)).astype(bool))
    for (name, m), keep in zip(masked, bits.split(sizes)):
        kept, dropped = m.score_init, 2 * m.threshold - m.score_init
        state[f"{name}.scores"] = torch.where(keep.view(m.scores.shape), kept, dropped).to(m.scores.dtype)
    return state


@torch.no_grad()
def load(base, directory: str, settings: PiggybackSettings, ctx: ApplyContext):
    model = apply(base, settings, ctx)
    model.load_state_dict(read_state(model, directory), strict=False)
    return model


@torch.no_grad()
def merge(model):
    """Replace each MaskedLinear by a plain nn.Linear holding W ⊙ mask."""
    for name, m in list(model.named_modules()):
        if isinstance(m, MaskedLinear):
            plain = nn.Linear(m.base.in_features, m.base.out_features, bias=m.base.bias is not None,
                              device=m.base.weight.device, dtype=m.base.weight.dtype)
            plain.weight.copy_(m.base.weight * m.mask())
            if m.base.bias is not None:
                plain.bias.copy_(m.base.bias)
            plain.requires_grad_(False)
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent), leaf, plain)
    return model


register("piggyback", PiggybackSettings, apply, lr_range=(3e-5, 3e-3), paper="Mallya et al. 2018, arXiv:1801.06519",
         quants={"none"}, mergeable=True, merge=merge, save=save, load=load, read_state=read_state,
         stored_bytes=stored_bytes)
