"""GPU training throughput of LoRA, QLoRA (NF4), DoRA and full fine-tuning, through the harness.

For each size (Llama-shaped, random init, bf16, seeded) the model is saved once to a
temporary directory; each method then loads it through the harness
(`harness.models.load_model`, so QLoRA gets the harness's bitsandbytes NF4 config),
is applied through the method registry (LoRA and DoRA on every linear projection of
the blocks, rank 16), has its trained parameters upcast to fp32 (`upcast_trainable`)
and trains with the harness's own loop (`harness.train.train`) on random tokens, every
example exactly `--seq-len` tokens (labels = inputs, no padding).  Per method:

  tokens/s   `TrainStats.tokens_per_s` (the harness leaves the first 2 steps out);
  memory     `harness.measure.PeakMemory` over the training: CUDA max allocated and
             max reserved (weights, optimizer state and activations);
  MFU        tokens/s x `measure.flops_per_token` / the device's dense bf16 peak
             (`measure.peak_flops`), and the achieved TFLOP/s;
  step split a separate short pass of the same step (data, forward, backward,
             optimizer), timed with CUDA events, as shares of the step time.

    python bench/gpu.py [--sizes 0.5b,1b] [--seq-len 2048] [--steps 20] [--methods lora,qlora,dora,full]
                        [--batch-size B] [--gradient-checkpointing] [--compile] [--out results/bench/gpu.md]
    python bench/gpu.py --tiny      # a ~1M-parameter Llama, 64 tokens, 3 steps: the smoke test (CPU or GPU)

Targets stated in the table: LoRA >= 40% MFU on an H100; QLoRA >= 0.8x LoRA's tokens/s
(same size).  Out of memory in a row halves its batch and tries again, down to 1, then
prints OOM; the other rows still run.  Exit 0 when every row ran (OOM included), 1 when
a row failed otherwise, 2 without a GPU (and without --tiny) or on a bad option.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import math
import shlex
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VOCAB = 32000
# Llama-shaped sizes (untied input and output embeddings, SwiGLU MLP, RoPE, RMSNorm)
SIZES = {
    "0.5b": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16,
                 intermediate_size=4096, vocab_size=VOCAB),
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=8192, vocab_size=VOCAB),  # Llama-3.2-1B's blocks, Llama-2's vocabulary
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=512, vocab_size=2048),
}
TINY_SEQ, TINY_STEPS, TINY_BATCH = 64, 3, 4

# method name in this benchmark -> (registry method, quantization of the frozen base)
METHODS = {"lora": ("lora", "none"), "qlora": ("lora", "nf4"), "dora": ("dora", "none"), "full": ("full", "none")}
RANK = 16
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Tokens per micro-batch by default (batch = this // seq_len): 8 x 2048.  Activations saved for the
# backward, measured on CPU with saved_tensors_hooks under bf16 autocast, are about 0.12 MB per token and
# block at hidden 2048 for LoRA (0.17 QLoRA, 0.19 DoRA), plus ~0.5 MB per token around the loss (fp32
# logits over 32000 words); so the 1B model at 16384 tokens peaks near 45 GB (LoRA) to ~60 GB (DoRA, and
# full fine-tuning with its fp32 weights, gradients and AdamW state): every method fits 80 GB at the same
# batch, so the rows compare the same work.  An OOM halves the batch anyway.
TOKENS_PER_BATCH = 16384

TARGET_MFU = 0.40  # LoRA, on an H100
TARGET_QLORA = 0.8  # QLoRA tokens/s over LoRA's, same size
PACKAGES = ("torch", "transformers", "peft", "bitsandbytes")
PHASES = ("data", "forward", "backward", "optimizer")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Row:
    size: str
    method: str
    batch: int
    seq_len: int
    status: str = "ok"  # ok | OOM | FAILED
    note: str = ""
    trainable: int = 0
    total: int = 0
    tokens_per_s: float = math.nan
    peak_mb: float = math.nan
    peak_reserved_mb: float = math.nan
    flops_per_token: float = math.nan
    mfu: float = math.nan
    final_loss: float = math.nan
    phases_ms: dict[str, float] = field(default_factory=dict)  # mean per step of the profiled pass

    @property
    def tflops(self) -> float:
        return self.tokens_per_s * self.flops_per_token / 1e12

    @property
    def step_ms(self) -> float:
        """Mean step time of the harness's timed steps."""
        return self.batch * self.seq_len / self.tokens_per_s * 1e3


def llama_config(size: str, seq_len: int):
    from transformers import LlamaConfig

    return LlamaConfig(**SIZES[size], max_position_embeddings=max(4096, seq_len), tie_word_embeddings=False,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2)


def save_base(size: str, seq_len: int, precision: str, directory: str) -> int:
    """Random-init weights (seed 0) saved as a Hugging Face directory; returns the parameter count."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_config(llama_config(size, seq_len), dtype=dtype)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(directory)
    del model
    gc.collect()
    return n


def random_examples(n: int, seq_len: int, vocab: int, seed: int = 0) -> list[dict]:
    """Causal-LM examples as harness.data encodes them, every one exactly seq_len tokens: no padding."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(3, vocab, (n, seq_len), generator=g).tolist()  # 0-2: pad/bos/eos
    return [{"input_ids": r, "labels": r} for r in rows]


class StepClock:
    """Marks on the device's timeline: CUDA events on a GPU (no sync until read), perf_counter on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def intervals_ms(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in zip(self.marks, self.marks[1:])]
        return [(b - a) * 1e3 for a, b in zip(self.marks, self.marks[1:])]


def profile_steps(model, examples: list[dict], cfg, device: torch.device, steps: int) -> dict[str, float]:
    """The harness's training step, split into data (host batch + copy), forward (with the loss), backward
    and optimizer (clipping, AdamW, zero_grad): mean ms per step over `steps` steps after one warm-up.

    Its own AdamW (the harness's optimizer is gone with `train`), same settings and fused kernel.
    On a GPU the marks are CUDA events, so a phase includes the device's idle time waiting for the host.
    """
    from harness.train import autocast, make_optimizer, micro_batches, resolve_precision

    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg)
    forward = torch.compile(model) if cfg.compile else model  # the compiled code is cached from the training
    batches = micro_batches(examples, cfg.batch_size, 1, 0, cfg.batching, pin=device.type == "cuda")
    precision = resolve_precision(cfg.precision, device)
    clocks: list[StepClock] = []  # read after the loop: no sync between steps, the host runs ahead as in `train`
    model.train()
    for step in range(1 + steps):
        clock = StepClock(device)
        clock.mark()
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches)[0].items()}
        clock.mark()
        with autocast(device, precision):
            loss = forward(**batch).loss
        clock.mark()
        loss.backward()
        clock.mark()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        clock.mark()
        if step:  # the first step allocates AdamW's state
            clocks.append(clock)
    totals = dict.fromkeys(PHASES, 0.0)
    for clock in clocks:
        for name, ms in zip(PHASES, clock.intervals_ms()):
            totals[name] += ms
    del opt, loss, batch
    return {name: ms / steps for name, ms in totals.items()}


def run_row(size: str, name: str, directory: str, seq_len: int, batch: int, args, device: torch.device,
            precision: str, dev_name: str) -> Row:
    """One method on one size, through the harness; raises on any failure (OOM included)."""
    from harness import measure
    from harness.models import Location, load_model, upcast_trainable
    from harness.suite import Training
    from harness.train import seed_everything, train
    from methods import ApplyContext, get_method

    method_name, quant = METHODS[name]
    # as a harness trial does: deterministic kernels on CPU only (--deterministic asks for them on GPU too)
    seed_everything(0, deterministic=args.deterministic or device.type != "cuda")
    model = load_model(Location(directory), "causal_lm", quant, (), device, precision)
    method = get_method(method_name)
    settings = method.make_settings(RANK, {"targets": list(ALL_LINEAR)} if method.ranked else {})
    model = method.apply(model, settings, ApplyContext("causal_lm", model.config.model_type, quant, (), args.steps))
    upcast_trainable(model)
    trainable, total = measure.count_params(model)
    cfg = Training(steps=args.steps, batch_size=batch, lr=1e-4, warmup_steps=0, max_length=seq_len,
                   log_every=min(10, args.steps), precision=precision, compile=args.compile,
                   gradient_checkpointing=args.gradient_checkpointing)
    examples = random_examples(4 * batch, seq_len, SIZES[size]["vocab_size"])
    log(f"[{size} {name}] {trainable:,} of {total:,} parameters trainable; batch {batch} x {seq_len}, {args.steps} steps")
    with measure.PeakMemory(device) as mem:
        stats = train(model, examples, cfg, 0, 0, device, on_step=method.on_step)
    flops = measure.flops_per_token(model, examples, batch, 0, device, precision, seq_len=seq_len)
    row = Row(size, name, batch, seq_len, trainable=trainable, total=total, tokens_per_s=stats.tokens_per_s,
              peak_mb=mem.peak_mb, peak_reserved_mb=mem.peak_reserved_mb, flops_per_token=flops,
              mfu=measure.mfu(stats.tokens_per_s, flops, measure.peak_flops(dev_name)), final_loss=stats.final_loss)
    if args.profile_steps > 0:
        gc.collect()
        row.phases_ms = profile_steps(model, examples, cfg, device, args.profile_steps)
    log(f"[{size} {name}] {row.tokens_per_s:,.0f} tokens/s, peak {row.peak_mb:,.0f} MB, "
        f"{row.tflops:.3g} TFLOP/s, MFU {_pct(row.mfu)}, loss {row.final_loss:.3f}")
    return row


def free_memory(device: torch.device, compiled: bool) -> None:
    if compiled:
        import torch._dynamo

        torch._dynamo.reset()  # the last model's compiled graphs (and its place in the recompile limit)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_method(size: str, name: str, directory: str, seq_len: int, args, device, precision, dev_name) -> Row:
    """run_row, halving the batch on out-of-memory down to 1; OOM / FAILED rows instead of raising."""
    from harness.runner import is_out_of_memory

    batch = args.batch_size or max(1, TOKENS_PER_BATCH // seq_len)
    tried: list[int] = []
    while True:
        failure = None
        try:
            row = run_row(size, name, directory, seq_len, batch, args, device, precision, dev_name)
        except Exception as exc:  # noqa: BLE001 - one row's failure is that row's result
            failure = ("OOM", None) if is_out_of_memory(exc) else ("FAILED", f"{type(exc).__name__}: {exc}")
            if failure[0] == "FAILED":
                log(traceback.format_exc())
            del exc  # the traceback holds the model's tensors
        free_memory(device, args.compile)
        if failure is None:
            if tried:
                row.note = f"OOM at batch {', '.join(map(str, tried))}"
            return row
        kind, reason = failure
        if kind == "FAILED":
            log(f"[{size} {name}] FAILED: {reason}")
            return Row(size, name, batch, seq_len, status="FAILED", note=reason.splitlines()[0][:200])
        tried.append(batch)
        log(f"[{size} {name}] out of memory at batch {batch}")
        if batch == 1:
            return Row(size, name, batch, seq_len, status="OOM", note=f"OOM at batch {', '.join(map(str, tried))}")
        batch //= 2


def gemm_tflops(device: torch.device, n: int = 8192, reps: int = 20) -> float:
    """What one large dense bf16 matmul reaches on this device: the practical ceiling for MFU."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(device)
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    torch.cuda.synchronize(device)
    seconds = start.elapsed_time(end) / 1e3 / reps
    del a, b
    torch.cuda.empty_cache()
    return 2 * n**3 / seconds / 1e12


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1%}"


def _num(x: float, fmt: str = ",.0f") -> str:
    return "n/a" if math.isnan(x) else format(x, fmt)


def _params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K" if n >= 1e3 else str(n)


def verdict(row: Row, rows: list[Row], device: str) -> tuple[str, str]:
    """(target, PASS | FAIL | n/a) for the rows that have a target: LoRA's MFU, QLoRA's speed over LoRA's."""
    is_h100 = "H100" in device
    if row.method == "lora":
        target = f"MFU >= {TARGET_MFU:.0%} (H100)"
        if row.status != "ok" or math.isnan(row.mfu):
            return target, "n/a"
        result = "PASS" if row.mfu >= TARGET_MFU else "FAIL"
        return target, result if is_h100 else f"{result} (not an H100)"
    if row.method == "qlora":
        target = f"tokens/s >= {TARGET_QLORA:g}x LoRA"
        lora = next((r for r in rows if r.size == row.size and r.method == "lora" and r.status == "ok"), None)
        if row.status != "ok" or lora is None:
            return target, "n/a"
        ratio = row.tokens_per_s / lora.tokens_per_s
        result = "PASS" if ratio >= TARGET_QLORA else "FAIL"
        return f"{target} ({ratio:.2f}x)", result if not device.startswith("cpu") else f"{result} (CPU, not a GPU)"
    return "", ""


def render(rows: list[Row], sizes: dict[str, int], command: str, header: dict, elapsed_s: float) -> str:
    lines = [
        "# GPU training throughput: LoRA, QLoRA, DoRA, full fine-tuning",
        "",
        f"`{command}`",
        "",
        f"Device: {header['device']}; data-sheet dense bf16 peak {header['peak']}; "
        f"one {header['gemm_n']}^3 bf16 matmul reaches {header['gemm']} here. "
        + ", ".join(f"{k} {v}" for k, v in header["versions"].items())
        + f"; commit {header['commit']}; {header['date']}; whole benchmark {elapsed_s / 60:.1f} min.",
        "",
        f"Settings: precision {header['precision']}"
        + (" (frozen weights stored in bf16, trained ones in fp32, bf16 autocast), "
           if header["precision"] == "bf16" else ", ")
        + f"gradient checkpointing {'on' if header['checkpointing'] else 'off'}, "
        f"torch.compile {'on' if header['compile'] else 'off'}, "
        f"deterministic algorithms {'on' if header['deterministic'] else 'off'} (harness runs: on CPU only); "
        f"{header['steps']} steps per row, the first 2 untimed; AdamW lr 1e-4 (fused), grad clipping 1.0; "
        f"LoRA/QLoRA/DoRA rank {RANK} on {', '.join(ALL_LINEAR)}; QLoRA = LoRA over the harness's NF4 base "
        f"(double quantization, {header['precision']} compute); random tokens, every example exactly the sequence "
        "length (no padding).",
        "",
        "| size | layers | hidden | heads (kv) | intermediate | vocab | parameters |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size, n in sizes.items():
        c = SIZES[size]
        lines.append(f"| {size} | {c['num_hidden_layers']} | {c['hidden_size']} | {c['num_attention_heads']} "
                     f"({c['num_key_value_heads']}) | {c['intermediate_size']} | {c['vocab_size']} | {n:,} ({_params(n)}) |")
    lines += [
        "",
        "| size | method | trainable | batch x seq | tokens/s | peak allocated (MB) | peak reserved (MB) "
        "| GFLOP/token | TFLOP/s | MFU | target | result | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        target, result = verdict(r, rows, header["device"])
        if r.status != "ok":
            lines.append(f"| {r.size} | {r.method} | | {r.batch} x {r.seq_len} | {r.status} | {r.status} | | | | | "
                         f"{target} | {result} | {r.note} |")
            continue
        lines.append(
            f"| {r.size} | {r.method} | {_params(r.trainable)} ({r.trainable / r.total:.2%}) | {r.batch} x {r.seq_len} "
            f"| {_num(r.tokens_per_s)} | {_num(r.peak_mb)} | {_num(r.peak_reserved_mb)} | {r.flops_per_token / 1e9:.3f} "
            f"| {_num(r.tflops, '.3g')} | {_pct(r.mfu)} | {target} | {result} | {r.note} |")
    profiled = [r for r in rows if r.status == "ok" and r.phases_ms]
    marks = ("CUDA events (the device timeline: a phase includes the device waiting for the host)" if header["cuda"]
             else "perf_counter")
    if profiled:
        lines += [
            "",
            f"Where the step time goes: a separate pass of {header['profile_steps']} steps after the timed run "
            f"(one more step first, for AdamW's state), the same step as the harness's, marked with "
            f"{marks}. "
            "data = batch from the host (collate, pinned copy); forward includes the loss; "
            "optimizer = gradient clipping + AdamW + zero_grad.",
            "",
            "| size | method | timed step (ms) | profiled step (ms) | " + " | ".join(PHASES) + " |",
            "|---|---|---:|---:|" + "---:|" * len(PHASES),
        ]
        for r in profiled:
            step = sum(r.phases_ms.values())
            lines.append(f"| {r.size} | {r.method} | {_num(r.step_ms, '.1f')} | {step:.1f} | "
                         + " | ".join(f"{r.phases_ms[p]:.1f} ({r.phases_ms[p] / step:.0%})" for p in PHASES) + " |")
    lines += [
        "",
        "FLOPs per token, `harness.measure.flops_per_token`: counted over one training step (forward + backward) "
        "of the adapted model under torch's FlopCounterMode (matmuls and attention, the full T x T scores as torch "
        "counts its kernels: a causal kernel does about half; bitsandbytes' 4-bit matmuls added), on one batch of "
        "the row's shape, per token; taken after the timed steps, so with --gradient-checkpointing the recomputed "
        "forward counts too. DoRA's weight norm of W + BA counts, and QLoRA's 4-bit matmuls count like plain ones. "
        "TFLOP/s = tokens/s x FLOPs per token; MFU = TFLOP/s / the data-sheet peak (`measure.peak_flops`).",
        "",
        f"Targets: LoRA >= {TARGET_MFU:.0%} MFU on an H100; QLoRA >= {TARGET_QLORA:g}x LoRA's tokens/s on the same "
        "size. tokens/s over the timed steps of `harness.train.train`; peak memory = CUDA max allocated / max "
        "reserved over the training (`harness.measure.PeakMemory`; on CPU the process's peak RSS, allocated "
        "only). An out-of-memory row is retried at half the batch (note), OOM only when batch 1 does not fit.",
    ]
    return "\n".join(lines) + "\n"


def header_info(device: torch.device, dev_name: str, precision: str, args) -> dict:
    from harness import measure
    from harness.runner import provenance

    tags = provenance()
    peak = measure.peak_flops(dev_name)
    info = {
        "device": dev_name, "cuda": device.type == "cuda", "precision": precision,
        "peak": "n/a" if math.isnan(peak) else f"{peak / 1e12:,.0f} TFLOP/s",
        "gemm": "n/a (CPU)", "gemm_n": 8192,
        "versions": {pkg: tags.get(f"version.{pkg}", "?") for pkg in PACKAGES},
        "commit": tags.get("git_commit", "unknown"), "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "checkpointing": args.gradient_checkpointing, "compile": args.compile, "steps": args.steps,
        "deterministic": args.deterministic or device.type != "cuda", "profile_steps": args.profile_steps,
    }
    if device.type == "cuda":
        n = 1024 if args.tiny else 8192
        info["gemm_n"], info["gemm"] = n, f"{gemm_tflops(device, n):,.0f} TFLOP/s"
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="0.5b,1b", help="model sizes, comma-separated: 0.5b, 1b (default both)")
    ap.add_argument("--seq-len", type=int, default=2048, help="tokens per example (default 2048)")
    ap.add_argument("--batch-size", type=int, default=0,
                    help=f"examples per step for every method (default {TOKENS_PER_BATCH} // seq-len: 8 at 2048)")
    ap.add_argument("--steps", type=int, default=20, help="training steps per row, the first 2 untimed (default 20)")
    ap.add_argument("--methods", default="lora,qlora,dora,full", help="comma-separated: " + ", ".join(METHODS))
    ap.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in the backward")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (the harness's compile setting)")
    ap.add_argument("--profile-steps", type=int, default=3,
                    help="steps of the separate pass that splits the step time (default 3; 0 skips it)")
    ap.add_argument("--deterministic", action="store_true",
                    help="torch's deterministic algorithms on the GPU too (harness trials use them on CPU only); "
                         "to measure what they cost")
    ap.add_argument("--tiny", action="store_true",
                    help=f"smoke test: a ~1M-parameter Llama, {TINY_SEQ} tokens, {TINY_STEPS} steps, batch {TINY_BATCH} "
                         "(fp32 on CPU; bf16 on a GPU when there is one)")
    ap.add_argument("--out", default=None,
                    help="markdown file for the table (default results/bench/gpu.md; with --tiny none); '' for none")
    args = ap.parse_args(argv)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if args.tiny:
        sizes = ["tiny"]
        args.seq_len, args.steps = TINY_SEQ, TINY_STEPS
        args.batch_size = args.batch_size or TINY_BATCH
        args.profile_steps = min(args.profile_steps, 2)
    else:
        sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    bad_sizes = [s for s in sizes if s not in SIZES or s == "tiny" and not args.tiny]
    if unknown or not methods:
        ap.error(f"--methods: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(METHODS)}")
    if bad_sizes or not sizes:
        ap.error(f"--sizes: unknown {', '.join(bad_sizes) or '(none given)'}; known: 0.5b, 1b (--tiny for the smoke test)")
    if args.seq_len < 8 or args.steps < 3 or args.batch_size < 0 or args.profile_steps < 0:
        ap.error("--seq-len must be >= 8, --steps >= 3 (the first 2 are not timed), --batch-size >= 1, "
                 "--profile-steps >= 0")
    if not args.tiny and not torch.cuda.is_available():
        print("no CUDA device: bench/gpu.py needs a GPU; use --tiny for a CPU smoke run", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else ("" if args.tiny else str(ROOT / "results" / "bench" / "gpu.md"))

    from harness.runner import device_name, pick_device
    from harness.train import resolve_precision

    import transformers

    transformers.logging.set_verbosity_error()
    device = pick_device()
    precision = resolve_precision("auto", device)  # bf16 on a GPU that has it, else fp32
    dev_name = device_name(device)
    parts = (["--tiny"] if args.tiny
             else ["--sizes", ",".join(sizes), "--seq-len", str(args.seq_len), "--steps", str(args.steps)])
    parts += ["--methods", ",".join(methods)]
    parts += ["--batch-size", str(args.batch_size)] if args.batch_size and not args.tiny else []
    parts += [f for f, on in (("--gradient-checkpointing", args.gradient_checkpointing), ("--compile", args.compile),
                              ("--deterministic", args.deterministic)) if on]
    command = "python bench/gpu.py " + shlex.join(parts)
    log(f"{command}\ndevice {dev_name}, precision {precision}")

    t0 = time.perf_counter()
    header = header_info(device, dev_name, precision, args)
    rows: list[Row] = []
    counts: dict[str, int] = {}
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix=f"bench-gpu-{size}-") as directory:
            clock = time.perf_counter()
            counts[size] = save_base(size, args.seq_len, precision, directory)
            log(f"[{size}] {counts[size]:,} parameters, random init saved in {time.perf_counter() - clock:.1f} s")
            for name in methods:
                rows.append(run_method(size, name, directory, args.seq_len, args, device, precision, dev_name))
    text = render(rows, counts, command, header, time.perf_counter() - t0)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    print(text, end="")
    return 1 if any(r.status == "FAILED" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
