"""One lean training loop and evaluation for every method.

The loop never looks at which method it trains: a method that needs a per-step call
declares `on_step` in the registry.  AdamW on the trainable parameters, linear warm-up
then linear decay, gradient accumulation, clipping, bf16 autocast on GPU; on CPU it is
seeded and deterministic.  The loss is read back from the device only every
`log_every` steps, so the host does not wait on the device each step.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from harness.data import collate
from harness.metrics import score
from harness.suite import Training


class DivergedError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainStats:
    steps: int = 0
    train_time_s: float = 0.0
    tokens_per_s: float = float("nan")
    final_loss: float = float("nan")
    losses: list[tuple[int, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def micro_batches(examples: list[dict], batch_size: int, seed: int, pad_id: int):
    """Endless shuffled micro-batches; each epoch reshuffles with a seeded generator."""
    rng = random.Random(seed)
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        for start in range(0, len(order) - batch_size + 1 if len(order) >= batch_size else 1, batch_size):
            yield collate([examples[i] for i in order[start:start + batch_size]], pad_id)


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


def train(model, examples: list[dict], cfg: Training, seed: int, pad_id: int, device: torch.device,
          on_step: Callable | None = None, progress: Callable[[int, float], None] | None = None) -> TrainStats:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the method left no trainable parameters")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup_steps, cfg.steps))
    batches = micro_batches(examples, cfg.batch_size, seed, pad_id)
    timed_from = min(2, cfg.steps - 1)  # the first steps pay for allocation and kernel selection
    stats, tokens, t0 = TrainStats(), 0, time.perf_counter()
    running = torch.zeros((), device=device)
    model.train()
    for step in range(cfg.steps):
        if step == timed_from:
            _sync(device)
            t_timed, tokens = time.perf_counter(), 0
        for _ in range(cfg.grad_accum):
            batch = next(batches)
            tokens += int(batch["attention_mask"].sum())  # counted on the host: no device sync
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with autocast(device):
                loss = model(**batch).loss / cfg.grad_accum
            loss.backward()
            running += loss.detach()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        if on_step is not None:  # after the update, gradients still there (AdaLoRA scores them)
            on_step(model, step)
        sched.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            n = (step % cfg.log_every) + 1
            value = float(running) / n  # the one host sync every log_every steps
            running.zero_()
            if not math.isfinite(value):
                raise DivergedError(f"loss became {value} at step {step + 1}")
            stats.losses.append((step + 1, value))
            stats.final_loss = value
            if progress is not None:
                progress(step + 1, value)
    _sync(device)
    end = time.perf_counter()
    stats.steps = cfg.steps
    stats.train_time_s = end - t0
    stats.tokens_per_s = tokens / (end - t_timed) if end > t_timed else float("nan")
    return stats


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate(model, examples: list[dict], task_type: str, metric: str, label_names: tuple[str, ...],
             tokenizer, cfg: Training, device: torch.device) -> float:
    """The task metric on one split: argmax label (classification) or greedy answer (causal LM)."""
    model.eval()
    if task_type == "seq_cls":
        preds, refs = [], []
        for i in range(0, len(examples), cfg.eval_batch_size):
            chunk = examples[i:i + cfg.eval_batch_size]
            batch = collate(chunk, tokenizer.pad_token_id)
            with autocast(device):
                logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
            preds += [label_names[j] for j in logits.argmax(-1).tolist()]
            refs += [label_names[e["label"]] for e in chunk]
        return score(metric, preds, refs)
    preds = generate_answers(model, [e["prompt_ids"] for e in examples], tokenizer, cfg, device)
    return score(metric, preds, [e["answer"] for e in examples])


def generate_answers(model, prompts: list[list[int]], tokenizer, cfg: Training, device: torch.device) -> list[str]:
    """Greedy decoding of each prompt, batched with left padding."""
    out: list[str] = []
    pad = tokenizer.pad_token_id
    for i in range(0, len(prompts), cfg.eval_batch_size):
        chunk = prompts[i:i + cfg.eval_batch_size]
        width = max(map(len, chunk))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
        with autocast(device):
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=cfg.max_new_tokens, do_sample=False,
                                 pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        out += tokenizer.batch_decode(gen[:, width:], skip_special_tokens=True)
    return out
