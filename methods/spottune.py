"""SpotTune — Guo et al. 2019, "SpotTune: Transfer Learning through Adaptive Fine-tuning" (arXiv:1811.08737).

Every transformer block gets a trainable copy (initialised from the frozen block, so the
model starts equal to its base).  A small policy — the masked mean of the input's token
embeddings, then one linear layer to 2 logits per block — decides per input and per
block whether the frozen block or its copy computes: a hard Gumbel-softmax sample with a
straight-through gradient in training, the argmax at evaluation.  Trainable: all block
copies (at the method's lr), the policy (its own optimizer group at `policy_lr`) and the head (nearly full fine-tuning's count, with two of every block
in memory); the copies are real tensors, so measured count and memory are the true ones.
Ours because no library implements it for transformers.

Causal LMs: in training the policy sees only the prompt (positions whose label is -100),
as it will at generation.  With a KV cache the decisions of the first forward are kept
for the whole generation, and where a batch mixes both paths in a block the copy caches
its keys/values apart from its frozen twin, so cached decoding stays exact.  Without a
cache each forward decides anew on the text so far.  Where a batch mixes both paths in a
block (always, in training), `output_hidden_states` holds both paths' outputs for it; the
last entry is the routed one.  Unquantized bases only: the copies train in full precision.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from methods import ApplyContext, _adapters, freeze_all_but_heads, register

FROZEN, TUNED = 0, 1  # index of each path in a decision


@dataclass(frozen=True)
class SpotTuneSettings:
    temperature: float = 1.0  # Gumbel-softmax temperature
    # the routing policy is new and zero-initialised: at the blocks' fine-tuning rate (1e-5..1e-4) it would
    # hardly move from a coin flip in a short run, so it trains in its own optimizer group at this rate
    policy_lr: float = 1e-2

    def __post_init__(self):
        if self.temperature <= 0 or self.policy_lr <= 0:
            raise ValueError(f"spottune needs temperature > 0 and policy_lr > 0; got {self.temperature}, {self.policy_lr}")


class _Routes:
    """Decisions shared by the policy and the blocks (a plain object: no parameters of its own)."""

    def __init__(self, config):
        self.config, self.current = config, None

    def for_forward(self, cache):
        """(decisions, cache for the copies): kept on the KV cache from its first forward, so decoding keeps them."""
        if self.current is None:
            raise RuntimeError("spottune decides its routes in the forward of the model it was applied to: call that "
                               "model, not one of its submodules")
        if cache is None:
            return self.current, None
        from transformers import DynamicCache

        if not isinstance(cache, DynamicCache):
            raise NotImplementedError(f"spottune supports a DynamicCache only, not {type(cache).__name__}")
        if not hasattr(cache, "_spottune"):
            cache._spottune = (self.current, DynamicCache(config=self.config))
        return cache._spottune


class Policy(nn.Module):
    """Mean token embedding -> 2 logits per block; runs as a forward pre-hook of the whole model."""

    def __init__(self, hidden: int, n_blocks: int, temperature: float, routes: _Routes, embed: nn.Module):
        super().__init__()
        self.linear = nn.Linear(hidden, 2 * n_blocks)
        nn.init.zeros_(self.linear.weight)  # no preference at the start: Gumbel noise explores both paths evenly
        nn.init.zeros_(self.linear.bias)
        self.n_blocks, self.temperature, self.routes = n_blocks, temperature, routes
        self._embed = [embed]  # the model's own (frozen) embedding table, not a submodule of the policy

    def decide(self, model, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            embeds = self._embed[0](kwargs["input_ids"] if "input_ids" in kwargs else args[0])
        mask = kwargs.get("attention_mask")
        mask = torch.ones(embeds.shape[:2], device=embeds.device) if mask is None or mask.dim() != 2 else mask
        mask, labels = mask.bool(), kwargs.get("labels")
        if labels is not None and labels.shape == mask.shape:  # causal LM: route on the prompt, as at generation
            prompt = mask & (labels == -100)
            mask = torch.where(prompt.any(1, keepdim=True), prompt, mask)
        m = mask.unsqueeze(-1).to(self.linear.weight.dtype)
        pooled = (embeds.detach().to(m.dtype) * m).sum(1) / m.sum(1).clamp(min=1)
        self.routes.current = self(pooled)

    def forget(self, model, args, output):
        self.routes.current = None  # a stale batch's routes must never serve another call

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(batch, n_blocks, 2) one-hot decisions."""
        logits = self.linear(pooled).view(-1, self.n_blocks, 2)
        if self.training:
            return F.gumbel_softmax(logits, tau=self.temperature, hard=True)
        return F.one_hot(logits.argmax(-1), 2).to(logits.dtype)


class RoutedBlock(nn.Module):
    """out = d_frozen * frozen(x) + d_tuned * tuned(x), per input (Guo et al., eq. 2)."""

    def __init__(self, frozen: nn.Module, index: int, routes: _Routes):
        super().__init__()
        self.frozen, self.tuned = frozen, copy.deepcopy(frozen).requires_grad_(True)
        self.index, self.routes = index, routes

    def forward(self, *args, **kwargs):
        decisions, tuned_cache = self.routes.for_forward(kwargs.get("past_key_values"))
        d = decisions[:, self.index]  # (batch, 2)
        if not self.training:
            # a whole batch on one path runs only that path, on the model's own cache: decisions are fixed for the
            # cache's lifetime, so the other path is never needed and the model's cache always has this layer
            if bool((d[:, FROZEN] == 1).all()):
                return self.frozen(*args, **kwargs)
            if bool((d[:, TUNED] == 1).all()):
                return self.tuned(*args, **kwargs)
        tuned_kwargs = kwargs if tuned_cache is None else {**kwargs, "past_key_values": tuned_cache}
        return _mix(self.frozen(*args, **kwargs), self.tuned(*args, **tuned_kwargs), d)


def _mix(frozen, tuned, d):
    first_f, first_t = (frozen[0], tuned[0]) if isinstance(frozen, tuple) else (frozen, tuned)
    shape = (-1,) + (1,) * (first_f.dim() - 1)
    mixed = d[:, FROZEN].view(shape).to(first_f.dtype) * first_f + d[:, TUNED].view(shape).to(first_t.dtype) * first_t
    return (mixed, *frozen[1:]) if isinstance(frozen, tuple) else mixed


def apply(model, settings: SpotTuneSettings, ctx: ApplyContext):
    if ctx.quant != "none":
        raise ValueError("spottune trains full-precision copies of the blocks: use quant none")
    freeze_all_but_heads(model, ctx)
    _, blocks = _adapters.transformer_blocks(model)
    config = model.config.get_text_config()
    routes = _Routes(model.config)
    policy = Policy(config.hidden_size, len(blocks), settings.temperature, routes, model.get_input_embeddings())
    model.spottune_policy = policy.to(next(model.parameters()).device)
    for i in range(len(blocks)):
        blocks[i] = RoutedBlock(blocks[i], i, routes)
    model.register_forward_pre_hook(policy.decide, with_kwargs=True)
    model.register_forward_hook(policy.forget)
    return model


def load(base, directory: str, settings: SpotTuneSettings, ctx: ApplyContext):
    return _adapters.load_trainable(apply(base, settings, ctx), directory)


register("spottune", SpotTuneSettings, apply, lr_range=(1e-5, 3e-4),
         groups=lambda settings: {"spottune_policy": settings.policy_lr}, paper="Guo et al. 2019, arXiv:1811.08737",
         quants={"none"}, save=_adapters.save_trainable, load=load)
