"""The harness's training loop against a minimal hand-written torch + peft loop.

Both sides train the quickstart's model (all-MiniLM-L6-v2 with a sequence-classification
head, loaded once through `harness.models.load_model`; every run trains a fresh deep copy)
with LoRA r=8, alpha=16 on the attention query/value projections plus the new head, on
the quickstart's synthetic sentiment training split tokenized by `harness.data.encode`
(max_length 48).  The harness side applies LoRA through the method registry
(`methods.get_method("lora")`, as a trial does) and trains with `harness.train.train`;
the hand-written side builds the adapter with `peft.get_peft_model(LoraConfig(...))`
directly and trains with the obvious loop (pad a batch, forward, backward, clip, step,
schedule, zero_grad; the loss read back only every `log_every` steps, like the harness).
The script checks that both train the same tensors (same count, same names) and says
whether their initial values are identical (same seed before applying the adapter).
Same hyperparameters on both sides: S steps x batch B, AdamW lr 3e-3, weight decay 0,
linear warm-up over 10 steps then linear decay, gradient clipping 1.0, fp32, dropout as
the model has it, the same torch seed before each run.

    python bench/loop.py [--steps S] [--batch-size B] [--repeats R] [--quick] [--out PATH]

Sides (each run once per repeat, interleaved A B C D, D C B A, ...):
  harness random   harness.train.train with batching="random";
  hand AdamW       the hand loop on exactly the batches the harness's random batching
                   takes (harness.train.batch_order(lengths, B, seed, "random")), with
                   plain torch.optim.AdamW, as a user writes it (a per-parameter loop on CPU);
  hand fused       the same with torch.optim.AdamW(fused=True), what the harness uses;
  harness bucket   the harness with batching="bucket" (opt-in): length-bucketed batches.
Timing, the same code around every side (bench/_common.py `Meter`): a forward pre-hook
on the trained model records each forward's attention mask; the clock starts at the third
forward (after a device sync: the first 2 steps pay for allocation and kernel selection)
and stops when the training call returns (after a device sync); model loading and adapter
set-up are outside.  tokens/s = non-padding tokens of the timed forwards / that time.
One short untimed run of every side warms the process up first.

Reported: the median tokens/s of each side over R repeats, its padding fraction and
final loss (the mean of the last `log_every` steps); per comparison, the median and the
min/max of the per-repeat ratios.  Targets: harness / hand loop on the same batches
>= 0.98 (the harness's overhead), checked against the plain and the fused optimizer;
bucket / random shows what length bucketing saves.  The table is printed and written to
results/bench/loop.md (--out; '' writes nothing).  A missed target is a FAIL in the
table, not an error: the exit status is non-zero only when something broke.
"""
from __future__ import annotations

import gc
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402
from _common import ALPHA, LOG_EVERY, LR, RANK, SEED, WARMUP  # noqa: E402

SKIP = 2  # untimed first steps of every run
TARGET = 0.98


def hand_loop(model, examples, order, steps, lr, warmup, weight_decay, max_grad_norm, log_every, pad_id, device,
              fused=False) -> float:
    """The minimal loop a user writes; returns the mean loss of the last `log_every` steps."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True if fused else None)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
    model.train()
    running, last = torch.zeros((), device=device), float("nan")
    for step in range(steps):
        rows = [examples[i] for i in next(order)]
        width = max(len(r["input_ids"]) for r in rows)
        batch = {
            "input_ids": torch.tensor([r["input_ids"] + [pad_id] * (width - len(r["input_ids"])) for r in rows]),
            "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"]))
                                            for r in rows]),
            "labels": torch.tensor([r["label"] for r in rows]),
        }
        loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad()
        running += loss.detach()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            last = running.item() / (step % log_every + 1)
            running.zero_()
    return last


def make_sides(q, steps: int, batch_size: int) -> dict:
    """name -> callable running one timed training of that side (a fresh model each time)."""
    import torch

    from harness.train import batch_order

    lengths = [len(e["input_ids"]) for e in q.train]

    def hand(fused: bool):
        def run() -> common.Run:
            model = common.hand_lora(common.fresh_base(q), RANK, ALPHA, SEED)
            order = batch_order(lengths, batch_size, SEED, "random")  # exactly the harness's random batches
            gc.collect()
            torch.manual_seed(SEED)  # dropout masks: the same on every side
            with common.Meter(model, q.device, skip=SKIP) as m:
                loss = hand_loop(model, q.train, order, steps, LR, WARMUP, 0.0, 1.0, min(LOG_EVERY, steps), q.pad_id,
                                 q.device, fused=fused)
            return m.result(loss)
        return run

    return {
        "harness random": lambda: common.harness_run(q, steps, batch_size, "random", skip=SKIP),
        "hand AdamW": hand(fused=False),
        "hand fused": hand(fused=True),
        "harness bucket": lambda: common.harness_run(q, steps, batch_size, "bucket", skip=SKIP),
    }


SIDES = {  # name: (what, batches, optimizer)
    "harness random": ("`harness.train.train`, batching=random", "random", "fused AdamW (`make_optimizer`)"),
    "hand AdamW": ("hand-written loop", "the same as harness random", "`torch.optim.AdamW`"),
    "hand fused": ("hand-written loop", "the same as harness random", "`torch.optim.AdamW(fused=True)`"),
    "harness bucket": ("`harness.train.train`, batching=bucket", "length-bucketed (opt-in)", "fused AdamW (`make_optimizer`)"),
}

COMPARISONS = [  # label, numerator, denominator, target
    ("same batches: harness random / hand loop, plain AdamW", "harness random", "hand AdamW", TARGET),
    ("same batches: harness random / hand loop, fused AdamW", "harness random", "hand fused", TARGET),
    ("what fusing buys the hand loop: hand fused / hand AdamW", "hand fused", "hand AdamW", None),
    ("what bucketing buys: harness bucket / hand loop, random batches, plain AdamW", "harness bucket",
     "hand AdamW", None),
]


def render(q, runs: dict, args, trainable: int, same_init: bool, command: str, other, elapsed: float) -> str:
    rows = []
    for name, rs in runs.items():
        tps = [r.tokens_per_s for r in rs]
        own = [r.own_tokens_per_s for r in rs if r.own_tokens_per_s is not None]
        rows.append([name, *SIDES[name], f"{common.median(tps):,.0f}", f"{min(tps):,.0f}", f"{max(tps):,.0f}",
                     f"{common.median(r.padding for r in rs):.1%}", f"{common.median(r.final_loss for r in rs):.4f}",
                     f"{common.median(own):,.0f}" if own else "-"])
    losses = {n: common.median(r.final_loss for r in runs[n]) for n in ("harness random", "hand AdamW", "hand fused")}
    lines = [
        "# Training loop: the harness against a hand-written loop",
        "",
        f"`{command}`",
        "",
        *common.md_table(common.COMPARISON_HEADERS, common.comparison_rows(runs, COMPARISONS), "lrrrll"),
        "",
        *common.md_table(["side", "what", "batches", "optimizer", "tokens/s (median)", "min", "max", "padding",
                          "final loss", "harness's own tokens/s"], rows, "llllrrrrrr"),
        "",
        f"Model: the quickstart's `{q.model_name}` (all-MiniLM-L6-v2) with a sequence-classification head; LoRA "
        f"r={RANK}, alpha={ALPHA:g}, dropout 0 on the attention query/value projections plus the new head: "
        f"{trainable:,} trainable parameters on both sides (the same tensors; initial values "
        f"{'identical' if same_init else 'NOT identical'}), the harness's from the method registry, the hand loop's "
        f"from `peft.get_peft_model(LoraConfig(...))`. Data: the quickstart's synthetic sentiment training split "
        f"({len(q.train):,} examples, `harness.data.encode`, max_length {q.max_length}). Every run: {args.steps} "
        f"steps x batch {args.batch_size}, lr {LR:g}, linear warm-up {WARMUP} steps then linear decay, weight decay "
        f"0, clipping 1.0, fp32, loss read back every {min(LOG_EVERY, args.steps)} steps, torch seed {SEED} before "
        f"the adapter and before training. {args.repeats} repeats, the sides interleaved (order reversed every "
        "other repeat).",
        "",
        f"tokens/s = non-padding tokens / wall time, from the start of the third forward (the first {SKIP} steps "
        "are not timed) to the return of the training call, measured by the same forward hook on every side; model "
        "loading and adapter set-up are not timed. ratio = numerator / denominator tokens/s within one repeat; "
        "median, min and max over the repeats. A target is met (PASS) when the median ratio reaches it. padding = "
        "padded positions / all positions; final loss = mean training loss of the last steps (median over repeats). "
        f"Same batches, same work: final loss {losses['harness random']:.4f} (harness random), "
        f"{losses['hand AdamW']:.4f} (hand AdamW), {losses['hand fused']:.4f} (hand fused). The harness's own "
        "tokens/s (`TrainStats.tokens_per_s`) starts its clock a little earlier, before the third batch is collated.",
        "",
        *common.provenance(q.device, other, elapsed),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = common.arguments(__doc__, "loop", argv, default=dict(steps=50, batch_size=16, repeats=5),
                            quick=dict(steps=10, batch_size=8, repeats=2), min_steps=SKIP + 1)
    command = common.command_line("loop.py", args)
    other = common.OtherLoad()
    t0 = time.perf_counter()
    warnings.filterwarnings("ignore", category=FutureWarning)  # peft/transformers deprecation notes, not news here

    q, trainable, same_init = common.prepare(args.steps)
    common.warm_up(make_sides(q, SKIP + 1, args.batch_size))
    common.log(f"{args.repeats} repeats of every side, {args.steps} steps x batch {args.batch_size} each")
    runs = common.interleave(make_sides(q, args.steps, args.batch_size), args.repeats)
    text = render(q, runs, args, trainable, same_init, command, other, time.perf_counter() - t0)
    print(file=sys.stderr)
    common.write_out(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
