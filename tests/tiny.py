"""Tiny random-init models (2 layers, hidden 32) and data for method tests; no download."""
from __future__ import annotations

import torch

from harness import models
from harness.suite import ModelSpec, Training
from harness.train import train
from methods import ApplyContext, get_method

HIDDEN, LAYERS, INTERMEDIATE, HEADS = 32, 2, 64, 2
LABELS = ("neg", "pos")
CPU = torch.device("cpu")
TINY = {
    "seq_cls": ModelSpec(tiny=(("architecture", "bert"), ("hidden_size", HIDDEN), ("layers", LAYERS), ("heads", HEADS),
                               ("intermediate_size", INTERMEDIATE))),
    "causal_lm": ModelSpec(tiny=(("architecture", "llama"), ("hidden_size", HIDDEN), ("layers", LAYERS), ("heads", HEADS),
                                 ("intermediate_size", INTERMEDIATE))),
}


def base_model(task_type: str, quant: str = "none"):
    """The tiny base with its task head; seeded, so every call gives the same weights."""
    loc = models.locate(TINY[task_type])
    tok = models.load_tokenizer(loc)
    torch.manual_seed(0)
    model = models.load_model(loc, task_type, quant, LABELS, CPU)
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def context(model, task_type: str, quant: str = "none", steps: int = 3) -> ApplyContext:
    return ApplyContext(task_type, model.config.model_type, quant, models.head_names(model, task_type), total_steps=steps)


def build(task_type: str, method: str, quant: str = "none", rank: int | None = None, settings: dict | None = None,
          steps: int = 3):
    """(adapted model, tokenizer, settings, ctx) for one method on the tiny base."""
    model, tok = base_model(task_type, quant)
    m = get_method(method)
    ctx = context(model, task_type, quant, steps)
    s = m.make_settings(rank, settings or {})
    return m.apply(model, s, ctx), tok, s, ctx


def examples(tok, task_type: str, n: int = 8) -> list[dict]:
    out = []
    for i in range(n):
        ids = tok(f"sample text number {i}")["input_ids"]
        if task_type == "seq_cls":
            out.append({"input_ids": ids, "label": i % 2})
        else:
            answer = tok(f" answer {i}", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            out.append({"input_ids": ids + answer, "labels": [-100] * len(ids) + answer})
    return out


def run_steps(model, tok, task_type, steps=3, lr=1e-2, on_step=None):
    cfg = Training(steps=steps, batch_size=4, lr=lr, warmup_steps=0, log_every=1)
    return train(model, examples(tok, task_type), cfg, seed=0, pad_id=tok.pad_token_id, device=CPU, on_step=on_step)


def probe_ids(tok) -> torch.Tensor:
    return torch.tensor([tok("a probe sentence for outputs")["input_ids"]])


@torch.no_grad()
def outputs(model, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()


class Dims:
    """Sizes of the tiny models, for trainable-count formulas."""

    hidden, layers, intermediate, heads, labels = HIDDEN, LAYERS, INTERMEDIATE, HEADS, len(LABELS)

    def __init__(self, task_type: str):
        self.task_type = task_type
        self.encoder = task_type == "seq_cls"  # tiny BERT (linears with bias) vs tiny Llama (no bias)

    @property
    def head(self) -> int:
        """The task head every method trains: BERT's classifier (with bias) and the pooler it reads."""
        return self.hidden * self.labels + self.labels + self.hidden * self.hidden + self.hidden if self.encoder else 0

    def total(self, model) -> int:
        return sum(p.numel() for p in model.parameters())
