"""The harness's training against transformers' `Trainer` with peft, on the same work.

Both sides train the quickstart's model (all-MiniLM-L6-v2 with a sequence-classification
head, loaded once through `harness.models.load_model`; every run trains a fresh deep copy)
with LoRA r=8, alpha=16 on the attention query/value projections plus the new head, on
the quickstart's synthetic sentiment training split tokenized by `harness.data.encode`
(max_length 48).  The harness side applies LoRA through the method registry
(`methods.get_method("lora")`) and calls `harness.train.train` with its defaults
(random batches, fused AdamW); the Trainer side builds the adapter with
`peft.get_peft_model(LoraConfig(...))`, as a user would, and calls `Trainer.train()` on
the same tokenized examples with `DataCollatorWithPadding`.  The script checks that both
train the same tensors (same count, same names).  Same configuration on both sides:
S steps x batch B, AdamW (the Trainer's default optimizer is fused AdamW too) lr 3e-3,
weight decay 0, linear warm-up over 10 steps then linear decay (the Trainer's warm-up
starts at lr 0, the harness's at lr/10: one step apart), gradient clipping 1.0, fp32, the
loss logged every 10 steps, no evaluation, no checkpoints (`save_strategy="no"`),
`report_to=[]`, no data-loader workers, `use_cpu=True` without a GPU, and tqdm off (its
log printer removed too: the table owns stdout).

    python bench/trainer.py [--steps S] [--batch-size B] [--repeats R] [--quick] [--out PATH]

Sides (each run once per repeat, interleaved A B C D, D C B A, ...):
  harness                  harness.train.train, defaults (batching="random");
  Trainer                  Trainer, defaults (random sampler);
  harness bucket           harness.train.train with batching="bucket" (opt-in);
  Trainer group_by_length  Trainer with train_sampling_strategy="group_by_length" (the
                           transformers 5 name of the former `group_by_length=True`).
Timing, the same code around every side (bench/_common.py `Meter`): the whole
`harness.train.train(...)` call against the whole `trainer.train()` call, each with its
own optimizer, scheduler and data set-up, every step included (a device sync before and
after); model loading, adapter set-up and the `Trainer(...)` constructor are outside.  A
forward pre-hook on the trained model records each forward's attention mask, so
tokens/s = non-padding tokens of every forward / wall time, whoever built the batches.
One short untimed run of every side warms the process up first.

Reported: the median tokens/s of each side over R repeats, its padding fraction and
final loss (the mean of the last 10 steps: the last logged loss on both sides); per
comparison, the median and the min/max of the per-repeat ratios.  Target: harness /
Trainer defaults >= 1.0.  The table is printed and written to results/bench/trainer.md
(--out; '' writes nothing).  A missed target is a FAIL in the table, not an error: the
exit status is non-zero only when something broke.
"""
from __future__ import annotations

import gc
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402
from _common import ALPHA, LOG_EVERY, LR, RANK, SEED, WARMUP  # noqa: E402

TARGET = 1.0


def trainer_args(output_dir: str, steps: int, batch_size: int, device, sampling: str):
    """The Trainer's settings for the same configuration; everything else its default."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=LR,
        lr_scheduler_type="linear", warmup_steps=WARMUP, weight_decay=0.0, max_grad_norm=1.0,
        logging_strategy="steps", logging_steps=min(LOG_EVERY, steps), eval_strategy="no", save_strategy="no",
        report_to=[], disable_tqdm=True, use_cpu=device.type != "cuda", dataloader_num_workers=0, seed=SEED,
        train_sampling_strategy=sampling)


def make_sides(q, steps: int, batch_size: int) -> dict:
    """name -> callable running one timed training of that side (a fresh model each time)."""
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer

    def trainer(sampling: str):
        def run() -> common.Run:
            model = common.hand_lora(common.fresh_base(q), RANK, ALPHA, SEED)
            with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
                tr = Trainer(model=model, args=trainer_args(tmp, steps, batch_size, q.device, sampling),
                             train_dataset=q.train, data_collator=DataCollatorWithPadding(q.tokenizer))
                tr.remove_callback(PrinterCallback)  # with tqdm off it prints every log to stdout
                gc.collect()
                with common.Meter(model, q.device) as m:
                    tr.train()
            logged = [e["loss"] for e in tr.state.log_history if "loss" in e]
            return m.result(logged[-1] if logged else float("nan"))
        return run

    return {
        "harness": lambda: common.harness_run(q, steps, batch_size, "random"),
        "Trainer": trainer("random"),
        "harness bucket": lambda: common.harness_run(q, steps, batch_size, "bucket"),
        "Trainer group_by_length": trainer("group_by_length"),
    }


SIDES = {  # name: (what, batches)
    "harness": ("`harness.train.train`, defaults", "random (default)"),
    "Trainer": ("`Trainer.train()`, defaults", "random sampler (default)"),
    "harness bucket": ("`harness.train.train`", "`batching=\"bucket\"` (opt-in)"),
    "Trainer group_by_length": ("`Trainer.train()`", "`train_sampling_strategy=\"group_by_length\"`"),
}

COMPARISONS = [  # label, numerator, denominator, target
    ("harness defaults / Trainer defaults (both random batches)", "harness", "Trainer", TARGET),
    ("harness bucket / Trainer group_by_length (both length-grouped)", "harness bucket", "Trainer group_by_length", None),
    ("harness bucket / Trainer defaults (what grouping by length buys)", "harness bucket", "Trainer", None),
]


def render(q, runs: dict, args, trainable: int, command: str, other, elapsed: float) -> str:
    rows = []
    for name, rs in runs.items():
        tps = [r.tokens_per_s for r in rs]
        own = [r.own_tokens_per_s for r in rs if r.own_tokens_per_s is not None]
        rows.append([name, *SIDES[name], f"{common.median(tps):,.0f}", f"{min(tps):,.0f}", f"{max(tps):,.0f}",
                     f"{common.median(r.seconds for r in rs):.2f}", f"{common.median(r.padding for r in rs):.1%}",
                     f"{common.median(r.final_loss for r in rs):.4f}", f"{common.median(own):,.0f}" if own else "-"])
    lines = [
        "# Training: the harness against transformers' Trainer",
        "",
        f"`{command}`",
        "",
        *common.md_table(common.COMPARISON_HEADERS, common.comparison_rows(runs, COMPARISONS), "lrrrll"),
        "",
        *common.md_table(["side", "what", "batches", "tokens/s (median)", "min", "max", "call time (s)", "padding",
                          "final loss", "harness's own tokens/s"], rows, "lllrrrrrrr"),
        "",
        f"Model: the quickstart's `{q.model_name}` (all-MiniLM-L6-v2) with a sequence-classification head; LoRA "
        f"r={RANK}, alpha={ALPHA:g}, dropout 0 on the attention query/value projections plus the new head: "
        f"{trainable:,} trainable parameters on both sides (the same tensors), the harness's from the method "
        f"registry, the Trainer's from `peft.get_peft_model(LoraConfig(...))`. Data: the quickstart's synthetic "
        f"sentiment training split ({len(q.train):,} examples, `harness.data.encode`, max_length {q.max_length}; "
        f"the Trainer pads with `DataCollatorWithPadding`). Every run: {args.steps} steps x batch {args.batch_size}, "
        f"lr {LR:g}, linear warm-up {WARMUP} steps then linear decay, weight decay 0, clipping 1.0, fused AdamW on "
        f"both sides (the Trainer's default `adamw_torch_fused`), fp32, loss logged every "
        f"{min(LOG_EVERY, args.steps)} steps, no evaluation, no checkpoints, no data-loader workers. "
        f"{args.repeats} repeats, the sides interleaved (order reversed every other repeat).",
        "",
        "tokens/s = non-padding tokens of every forward / wall time of the whole training call (`harness.train.train` "
        "or `trainer.train()`, each with its optimizer, scheduler and data set-up), measured by the same forward hook "
        "on every side; model loading, adapter set-up and the `Trainer(...)` constructor are not timed. call time = "
        "that wall time. ratio = numerator / denominator tokens/s within one repeat; median, min and max over the "
        "repeats. A target is met (PASS) when the median ratio reaches it. padding = padded positions / all "
        "positions; final loss = the last logged training loss (mean of the last steps; median over repeats): the "
        "sides see different batches (and the Trainer's warm-up starts one step lower), so the losses are close, "
        "not equal. The harness's own tokens/s (`TrainStats.tokens_per_s`) leaves out its first 2 steps.",
        "",
        *common.provenance(q.device, other, elapsed),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = common.arguments(__doc__, "trainer", argv, default=dict(steps=50, batch_size=16, repeats=5),
                            quick=dict(steps=10, batch_size=8, repeats=2))
    command = common.command_line("trainer.py", args)
    other = common.OtherLoad()
    t0 = time.perf_counter()
    warnings.filterwarnings("ignore", category=FutureWarning)  # peft/transformers deprecation notes, not news here

    q, trainable, _ = common.prepare(args.steps)
    common.warm_up(make_sides(q, min(args.steps, 3), args.batch_size))
    common.log(f"{args.repeats} repeats of every side, {args.steps} steps x batch {args.batch_size} each")
    runs = common.interleave(make_sides(q, args.steps, args.batch_size), args.repeats)
    text = render(q, runs, args, trainable, command, other, time.perf_counter() - t0)
    print(file=sys.stderr)
    common.write_out(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
