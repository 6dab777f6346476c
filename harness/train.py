"""One lean training loop and evaluation for every method.

The loop never looks at which method it trains: a method that needs a per-step call
declares `on_step` in the registry.  AdamW on the trainable parameters, linear warm-up
then linear decay, gradient accumulation (token-weighted for causal LM, see `accumulate`:
a step's loss does not depend on its micro-batch), clipping; on CPU it is seeded and
deterministic.  The logged train loss is the mean of the steps' losses since the last
log: a step's loss is the mean over its batch's supervised tokens (causal LM) or
examples (sequence classification).

What keeps it fast (bench/ measures it against a hand-written loop and against
transformers' Trainer):

- the loss is read back from the device only every `log_every` steps, so the host
  never waits on the device in between (tokens are counted on the host);
- on request (`batching: bucket`), batches of similar length, so padding is not paid for
  (26% of the quickstart's positions): 1.2-1.3x the tokens/s, but it is not the default
  because it changes what is learned: on the quickstart, LoRA r4 seed 1 reached 0.735 test
  accuracy with it against 0.958 with random batches (seeds 0 and 2 within 0.005), and
  three of six configurations lost 0.1-0.34 on that seed.  Batches of one length hold
  sentences of one shape; a short run at a high learning rate feels that.
- fused AdamW (one kernel for every parameter, on CPU as on GPU);
- bf16 autocast where the precision is bf16 (the default on a GPU that has it), with
  PyTorch's SDPA attention (transformers' default for the architectures that have it);
- optional `torch.compile` and gradient checkpointing (suite settings).

Packing several causal-LM examples into one row is not done: transformers 5's SDPA path
does not keep packed examples apart by their position ids (checked: tokens attend across
the boundary), so it would need a block-diagonal mask per row, which SDPA runs on its
slower masked kernel.
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
    train_state_bytes: int = 0  # parameters, gradients and optimizer state at the end (harness.measures: train_state_mb)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python and torch; `deterministic` also asks torch for deterministic kernels.

    The harness asks for them on CPU only, where they cost nothing measurable.  On a GPU
    they replace fast atomics (embedding and scatter backward) with slower sorted versions
    and need a fixed cuBLAS workspace, so GPU runs are seeded but not bit-reproducible.
    """
    random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> bf16 on a GPU that supports it, fp32 elsewhere; bf16/fp32 as asked."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"unknown precision {precision!r}: use auto, bf16 or fp32")
    return precision


def autocast(device: torch.device, precision: str = "fp32"):
    """bf16 autocast for the bf16 precision (frozen weights stored in bf16, trained ones in fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


BUCKET_SPAN = 50  # bucketing sorts windows of this many batches: little padding, batches still mixed


def batch_order(lengths: list[int], batch_size: int, seed: int, batching: str = "random"):
    """Endless lists of example indices, one per micro-batch; each epoch reshuffles (seeded).

    Every epoch uses each example at most once and drops a random remainder smaller than a
    batch.  `random`: consecutive slices of the shuffled order.  `bucket`: the shuffled
    order is cut into windows of BUCKET_SPAN batches, each window sorted by length and cut
    into batches, and the epoch's batches shuffled: a batch holds examples of nearly the
    same length (so little padding) while which examples meet still changes every epoch.
    """
    if batching not in ("bucket", "random"):
        raise ValueError(f"unknown batching {batching!r}: use bucket or random")
    if not lengths:
        raise ValueError("no training examples to batch")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    size = min(batch_size, len(order))  # fewer examples than a batch: one batch of all of them
    while True:
        rng.shuffle(order)
        used = order[:len(order) - len(order) % size]
        if batching == "random":
            yield from (used[i:i + size] for i in range(0, len(used), size))
            continue
        batches = []
        span = size * BUCKET_SPAN
        for w in range(0, len(used), span):
            window = sorted(used[w:w + span], key=lambda i: lengths[i])
            batches += [window[i:i + size] for i in range(0, len(window), size)]
        rng.shuffle(batches)
        yield from batches


def micro_batches(examples: list[dict], batch_size: int, seed: int, pad_id: int, batching: str = "random",
                  pin: bool = False):
    """Endless (collated micro-batch, real tokens in it) in `batch_order`; pinned host memory
    when copying to a GPU.

    A batch without padding goes without its all-ones attention mask: the same result, but
    transformers then lets SDPA take its mask-free (causal) path, flash attention on a GPU,
    instead of checking the mask on the device (a sync) or building a 4-D mask.
    """
    for indices in batch_order([len(e["input_ids"]) for e in examples], batch_size, seed, batching):
        batch = collate([examples[i] for i in indices], pad_id)
        tokens = int(batch["attention_mask"].sum())  # counted on the host: no device sync
        if tokens == batch["attention_mask"].numel():
            del batch["attention_mask"]
        yield ({k: v.pin_memory() for k, v in batch.items()} if pin else batch), tokens


@dataclass(frozen=True)
class ParamGroup:
    """One optimizer group: a name for logs and tests, its parameters and its learning rate."""

    name: str  # "head", a group a method declares (e.g. "spottune_policy"), or "method"
    params: list
    lr: float


def param_groups(model, cfg: Training, head_names: tuple[str, ...] = (),
                 declared: dict[str, float] | None = None) -> list[ParamGroup]:
    """The trainable parameters split by role, so every method trains its head the same way.

    - `head`: parameters under a module named in `head_names` (the new classifier and the
      pooler it reads), at `cfg.head_lr`: the one head recipe of every method;
    - a group per entry of `declared` (module name -> lr): what a method adds that is not
      its adaptation, e.g. SpotTune's routing policy;
    - `method`: every other trainable parameter (the method's adaptation), at `cfg.lr`.

    A parameter belongs to the first group whose module name is one of its dotted path's
    components (peft's `classifier.modules_to_save.default.weight` is a head parameter).
    Empty groups are left out.
    """
    declared = dict(declared or {})
    named: dict[str, list] = {"head": [], **{k: [] for k in declared}, "method": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        parts = set(name.split("."))
        group = "head" if parts & set(head_names) else next((k for k in declared if k in parts), "method")
        named[group].append(p)
    lrs = {"head": cfg.head_lr, **declared, "method": cfg.lr}
    return [ParamGroup(k, ps, lrs[k]) for k, ps in named.items() if ps]


def make_optimizer(groups: list[ParamGroup] | list[torch.nn.Parameter], cfg: Training) -> torch.optim.Optimizer:
    """AdamW over the groups (plain parameters: one group at cfg.lr), fused (one kernel for
    all parameters) where torch has it for these tensors.  Each torch param group keeps
    its `name`."""
    if groups and not isinstance(groups[0], ParamGroup):
        groups = [ParamGroup("method", list(groups), cfg.lr)]
    params = [p for g in groups for p in g.params]
    fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW([{"params": g.params, "lr": g.lr, "name": g.name} for g in groups], lr=cfg.lr,
                             weight_decay=cfg.weight_decay, fused=fusable or None)


def enable_gradient_checkpointing(model) -> None:
    """Turn on the transformers model's own (activation) checkpointing under any method's wrapper.

    Non-reentrant checkpointing, so frozen inputs (a frozen embedding under LoRA) need no
    `enable_input_require_grads` trick.
    """
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel) and module.supports_gradient_checkpointing:
            module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            return
    raise ValueError(f"{type(model).__name__} does not support gradient checkpointing: set training.gradient_checkpointing: false")


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


def supervised_targets(batches: list[dict]) -> int | None:
    """How many tokens the causal-LM loss scores over these (host) batches: labels other
    than -100 after the shift (a token's label is predicted at the position before it,
    so the first position's label is never a target); None for per-example labels
    (sequence classification)."""
    if "labels" not in batches[0] or batches[0]["labels"].dim() < 2:
        return None
    return sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)  # host tensors: no device sync


def accumulate(forward, batches: list[dict], device: torch.device, precision: str = "fp32") -> torch.Tensor:
    """Forward and backward over the micro-batches of one optimizer step; returns the step's
    loss (detached, on `device`), whose gradient is what the parameters now hold.

    The step's loss is the same however its batch is cut into micro-batches (the runner
    halves the micro-batch on out of memory), so a retry trains the same objective:

    - causal LM: the mean over every supervised token of the whole batch.  A model's own
      loss is the mean over its micro-batch's tokens, and averaging those means would
      weigh a token of a micro-batch with few answer tokens more than one of a
      micro-batch with many.  So the supervised tokens of all micro-batches are counted
      on the host first, and each micro-batch's token losses are summed and divided by
      the step's mean count per micro-batch (transformers' `num_items_in_batch` loss
      argument, which its Trainer passes under accumulation: every causal LM whose loss
      goes through `loss_function` honors it, and peft and the methods' wrappers pass it
      on), then by the number of micro-batches: sum / (total / k) / k = sum / total.
      Dividing by k as well, rather than passing the total, keeps what a method adds to
      the loss on every forward (AdaLoRA's orthogonality penalty) counted once per
      step, as before.  The count goes as a device tensor: no host-device copy, and
      torch.compile does not specialize on its value.
    - sequence classification: the mean over examples, every example weighing the same;
      the micro-batches of a step all hold the same number of examples, so the mean of
      their means is that mean.
    """
    targets, k = supervised_targets(batches), len(batches)
    # max: a batch without a supervised token adds no gradient instead of 0/0
    per_micro = None if targets is None else torch.full((), max(targets, 1) / k, device=device)
    step = torch.zeros((), device=device)
    for batch in batches:
        batch = {key: v.to(device, non_blocking=True) for key, v in batch.items()}
        with autocast(device, precision):
            out = forward(**batch) if per_micro is None else forward(**batch, num_items_in_batch=per_micro)
            loss = out.loss / k
        loss.backward()
        step += loss.detach()
    return step


def train(model, examples: list[dict], cfg: Training, seed: int, pad_id: int, device: torch.device,
          on_step: Callable | None = None, progress: Callable[[int, float], None] | None = None,
          groups: list[ParamGroup] | None = None) -> TrainStats:
    """Train `model` for cfg.steps optimizer steps; `groups` (from `param_groups`) gives each
    role its learning rate, else every trainable parameter trains at cfg.lr."""
    if groups is None:
        groups = param_groups(model, cfg)
    params = [p for g in groups for p in g.params]
    if not params:
        raise ValueError("the method left no trainable parameters")
    opt = make_optimizer(groups, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup_steps, cfg.steps))
    batches = micro_batches(examples, cfg.batch_size, seed, pad_id, cfg.batching, pin=device.type == "cuda")
    precision = resolve_precision(cfg.precision, device)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    forward = torch.compile(model) if cfg.compile else model  # shares the parameters; eval stays eager
    timed_from = min(2, cfg.steps - 1)  # the first steps pay for allocation and kernel selection
    stats, tokens, t0 = TrainStats(), 0, time.perf_counter()
    running = torch.zeros((), device=device)
    model.train()
    for step in range(cfg.steps):
        if step == timed_from:
            _sync(device)
            t_timed, tokens = time.perf_counter(), 0
        micro = [next(batches) for _ in range(cfg.grad_accum)]
        tokens += sum(n for _, n in micro)
        running += accumulate(forward, [batch for batch, _ in micro], device, precision)
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
    from harness.measure import train_state_bytes  # here: harness.measure imports this module

    stats.train_state_bytes = train_state_bytes(model, opt)
    stats.tokens_per_s = tokens / (end - t_timed) if end > t_timed else float("nan")
    return stats


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def predict(model, examples: list[dict], task_type: str, label_names: tuple[str, ...], tokenizer, cfg: Training,
            device: torch.device) -> tuple[list, list]:
    """(predictions, references) on one split, in the split's order: argmax label names (classification) or
    greedy answers (causal LM).

    The examples are batched shortest first (`eval_batch_size` at a time) and the results put back in
    order: a batch pads to its longest row, so batches of similar lengths compute little padding (a
    quarter less work on the quickstart's test split than batches in the split's order)."""
    model.eval()
    key = "input_ids" if task_type == "seq_cls" else "prompt_ids"
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][key]))
    ordered = [examples[i] for i in order]
    precision = resolve_precision(cfg.precision, device)
    if task_type == "seq_cls":
        out: list = []
        with torch.no_grad():
            for i in range(0, len(ordered), cfg.eval_batch_size):
                batch = collate(ordered[i:i + cfg.eval_batch_size], tokenizer.pad_token_id)
                with autocast(device, precision):
                    logits = model(input_ids=batch["input_ids"].to(device),
                                   attention_mask=batch["attention_mask"].to(device)).logits
                out += [label_names[j] for j in logits.argmax(-1).tolist()]
        refs = [label_names[e["label"]] for e in examples]
    else:
        out = generate_answers(model, [e["prompt_ids"] for e in ordered], tokenizer, cfg, device)
        refs = [e["answer"] for e in examples]
    preds: list = [None] * len(examples)
    for position, pred in zip(order, out):
        preds[position] = pred
    return preds, refs


def evaluate(model, examples: list[dict], task_type: str, metric: str, label_names: tuple[str, ...],
             tokenizer, cfg: Training, device: torch.device) -> float:
    """The task metric on one split (`predict`, then the metric)."""
    return score(metric, *predict(model, examples, task_type, label_names, tokenizer, cfg, device))


def generate_answers(model, prompts: list[list[int]], tokenizer, cfg: Training, device: torch.device) -> list[str]:
    """Greedy decoding of each prompt, batched with left padding."""
    out: list[str] = []
    pad = tokenizer.pad_token_id
    for i in range(0, len(prompts), cfg.eval_batch_size):
        chunk = prompts[i:i + cfg.eval_batch_size]
        width = max(map(len, chunk))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
        with autocast(device, resolve_precision(cfg.precision, device)):
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=cfg.max_new_tokens, do_sample=False,
                                 pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        out += tokenizer.batch_decode(gen[:, width:], skip_special_tokens=True)
    return out
