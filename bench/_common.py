"""Shared pieces of the training benchmarks (bench/loop.py, bench/trainer.py).

- `load_quickstart`: the quickstart suite's model (all-MiniLM-L6-v2 with a sequence-
  classification head) and its synthetic sentiment training split, located, loaded and
  tokenized through the harness's own functions (`harness.models.locate` /
  `load_tokenizer` / `load_model`, `harness.data.load_task` / `encode`);
- `harness_lora` (the registry's LoRA, as a trial applies it) and `hand_lora` (the same
  adapter written directly with peft, as a user would), from the same seed;
- `Meter`: the one timing code put around every side of a comparison.  A forward pre-hook
  on the trained model records each forward's attention mask (no device sync), so the
  tokens processed are counted from what really went through the model, whoever built
  the batches (a forward without a mask is a batch without padding: every position counts);
  tokens/s = non-padding tokens of the timed forwards / wall time;
- `interleave`: runs the sides A B C, C B A, A B C ... R times, so drift on a noisy
  machine falls on every side alike;
- `OtherLoad`: how much CPU other processes took meanwhile (per run on stderr, for the
  whole benchmark in the footer): on a shared machine the numbers are not worth much;
- `provenance` and `md_table` for the markdown output.
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUICKSTART = ROOT / "suites" / "quickstart.yaml"
# the configuration every side trains: the quickstart's LoRA and training settings (rank 8 is LoRA's default)
RANK, ALPHA, LR, WARMUP, LOG_EVERY, MAX_LENGTH, SEED = 8, 16.0, 3e-3, 10, 10, 48, 0


def log(msg: str) -> None:
    """Progress goes to stderr: stdout carries only the table."""
    print(msg, file=sys.stderr, flush=True)


# --- the model and the data --------------------------------------------------------------

@dataclass
class Quickstart:
    model_name: str
    location: object  # harness.models.Location
    tokenizer: object
    label_names: tuple[str, ...]
    train: list[dict]  # harness.data.encode rows: input_ids, label, n_tokens
    pad_id: int
    device: object  # torch.device
    base: object  # the loaded base model; every run trains a deep copy of it
    max_length: int


def load_quickstart(max_length: int, seed: int = 0) -> Quickstart:
    """The quickstart suite's model and training split, through the harness's own loaders.

    Seeds like a harness trial (`seed_everything`, deterministic kernels off on a GPU): a
    global setting, so the same for every side of a comparison."""
    from harness import data, models
    from harness.runner import pick_device
    from harness.suite import load_suite
    from harness.train import seed_everything

    suite = load_suite(QUICKSTART)
    task = suite.tasks[0]
    location = models.locate(suite.model, suite.file)
    tokenizer = models.load_tokenizer(location)
    task_data = data.load_task(task, suite.task_type)
    train = data.encode(task_data.train, tokenizer, suite.task_type, max_length, task_data.label_names)
    device = pick_device()
    seed_everything(seed, deterministic=device.type != "cuda")  # also the new classification head's initialisation
    base = models.load_model(location, suite.task_type, "none", task_data.label_names, device, "fp32")
    base.config.pad_token_id = tokenizer.pad_token_id
    name = suite.model.package or suite.model.hub or suite.model.path or "tiny"
    return Quickstart(model_name=name, location=location,
                      tokenizer=tokenizer, label_names=task_data.label_names, train=train,
                      pad_id=tokenizer.pad_token_id, device=device, base=base, max_length=max_length)


def fresh_base(q: Quickstart):
    """An untouched copy of the loaded base model (same weights and head for every run)."""
    return copy.deepcopy(q.base)


def harness_lora(model, rank: int, alpha: float, seed: int, total_steps: int):
    """LoRA through the method registry, exactly as `harness.runner` applies a cell's method."""
    import torch

    from harness import models
    from methods import ApplyContext, get_method

    method = get_method("lora")
    settings = method.make_settings(rank, {"alpha": alpha})
    ctx = ApplyContext(task_type="seq_cls", model_type=model.config.model_type, quant="none",
                       head_names=models.head_names(model, "seq_cls"), total_steps=total_steps)
    torch.manual_seed(seed)
    model = method.apply(model, settings, ctx)
    models.upcast_trainable(model)
    return model, method


def hand_lora_config(rank: int, alpha: float):
    """What a user writes for the same adapter: BERT's query/value projections, the task head
    (the new classifier and the pooler it reads, as the harness trains it) trained."""
    from peft import LoraConfig

    return LoraConfig(task_type="SEQ_CLS", r=rank, lora_alpha=alpha, lora_dropout=0.0,
                      target_modules=["query", "value"], modules_to_save=["classifier", "pooler.dense"])


def hand_lora(model, rank: int, alpha: float, seed: int):
    """peft.get_peft_model with `hand_lora_config`, from the same seed as `harness_lora`."""
    import torch
    from peft import get_peft_model

    torch.manual_seed(seed)
    return get_peft_model(model, hand_lora_config(rank, alpha))


def prepare(steps: int) -> tuple[Quickstart, int, bool]:
    """Load the quickstart; check that the harness's and the hand-written adapter train the
    same tensors.  Returns (quickstart, trainable parameters, identical initial values)."""
    log("loading the quickstart model and data ...")
    q = load_quickstart(MAX_LENGTH, SEED)
    ours, _ = harness_lora(fresh_base(q), RANK, ALPHA, SEED, steps)
    trainable, same_init = check_same_adapter(ours, hand_lora(fresh_base(q), RANK, ALPHA, SEED))
    log(f"{trainable:,} trainable parameters on both sides (the same tensors); initial values identical: {same_init}")
    return q, trainable, same_init


def training_config(steps: int, batch_size: int, batching: str):
    """The harness's `Training` for one run; fp32 on every device, the same as the other side."""
    from harness.suite import Training

    return Training(steps=steps, batch_size=batch_size, lr=LR, warmup_steps=WARMUP, weight_decay=0.0, max_grad_norm=1.0,
                    max_length=MAX_LENGTH, log_every=min(LOG_EVERY, steps), batching=batching, precision="fp32",
                    seeds=(SEED,))


def harness_run(q: Quickstart, steps: int, batch_size: int, batching: str, skip: int = 0) -> "Run":
    """One timed `harness.train.train` call on a fresh copy of the model with the registry's LoRA."""
    import gc

    import torch

    from harness.train import train

    model, method = harness_lora(fresh_base(q), RANK, ALPHA, SEED, steps)
    gc.collect()
    torch.manual_seed(SEED)  # dropout masks: the same on every side
    with Meter(model, q.device, skip=skip) as m:
        stats = train(model, q.train, training_config(steps, batch_size, batching), SEED, q.pad_id, q.device,
                      on_step=method.on_step)
    run = m.result(stats.final_loss)
    run.own_tokens_per_s = stats.tokens_per_s  # the harness's own measurement, for comparison
    return run


def trainable_state(model) -> dict:
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def check_same_adapter(a, b) -> tuple[int, bool]:
    """Both models train the same parameters (AssertionError if not); returns the trainable
    count and whether their initial values are identical too."""
    import torch

    sa, sb = trainable_state(a), trainable_state(b)
    na, nb = sum(p.numel() for p in sa.values()), sum(p.numel() for p in sb.values())
    assert na == nb, f"trainable parameters differ: {na:,} (harness) vs {nb:,} (hand-written)"
    assert sorted(sa) == sorted(sb), f"trainable tensors differ: {sorted(set(sa) ^ set(sb))}"
    return na, all(torch.equal(sa[k], sb[k]) for k in sa)


# --- timing ------------------------------------------------------------------------------

def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Run:
    """One timed training call."""

    tokens: int  # non-padding tokens of the timed forwards
    positions: int  # all positions of the timed forwards (padding included)
    seconds: float
    forwards: int  # every forward of the call, timed or not
    final_loss: float
    own_tokens_per_s: float | None = None  # the harness's own TrainStats.tokens_per_s, on harness sides
    other_cores: float = float("nan")  # CPU other processes used meanwhile (OtherLoad), in cores

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def padding(self) -> float:
        return 1 - self.tokens / self.positions


class Meter:
    """Times one training call; the same code for every side of a comparison.

    with Meter(model, device, skip=k) as m:  train(...)
    The clock starts just before the with-block when skip=0 (the whole call: optimizer
    set-up, data loader, every step), else at the start of the (k+1)-th forward, after a
    device sync: the first k steps, which pay for allocation and kernel selection, are
    left out, on every side the same way.  It stops after the block, after a device
    sync.  Tokens: attention_mask.sum() over the timed forwards, read after the clock stops
    (input_ids.numel() for a forward without a mask: a batch without padding).
    """

    def __init__(self, model, device, skip: int = 0):
        self.model, self.device, self.skip = model, device, skip
        self.masks: list = []
        self.t_start = self.t_end = None

    def _hook(self, module, args, kwargs):
        if len(self.masks) == self.skip and self.skip > 0:
            sync(self.device)
            self.t_start = time.perf_counter()
        mask, ids = kwargs.get("attention_mask"), kwargs.get("input_ids", args[0] if args else None)
        if mask is None and ids is None:
            raise RuntimeError("the trained model was called without input_ids or attention_mask: cannot count tokens")
        # no mask: a batch without padding (the harness drops an all-ones mask), every position is a token
        self.masks.append(mask if mask is not None else ids.numel())

    def __enter__(self):
        self.handle = self.model.register_forward_pre_hook(self._hook, with_kwargs=True)
        self.other = OtherLoad()
        sync(self.device)
        if self.skip == 0:
            self.t_start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        sync(self.device)
        self.t_end = time.perf_counter()
        self.other_cores = self.other.cores()
        self.handle.remove()
        return False

    def result(self, final_loss: float) -> Run:
        if self.t_start is None:
            raise RuntimeError(f"only {len(self.masks)} forwards ran: nothing left to time after skipping {self.skip}")
        timed = self.masks[self.skip:]
        return Run(tokens=sum(m if isinstance(m, int) else int(m.sum()) for m in timed),
                   positions=sum(m if isinstance(m, int) else m.numel() for m in timed),
                   seconds=self.t_end - self.t_start, forwards=len(self.masks), final_loss=final_loss,
                   other_cores=self.other_cores)


def warm_up(sides: dict[str, Callable[[], Run]]) -> None:
    """One short untimed run of every side: the process's first allocations and kernel choices."""
    log("warm-up: one short untimed run of every side")
    for run in sides.values():
        run()


def interleave(sides: dict[str, Callable[[], Run]], repeats: int) -> dict[str, list[Run]]:
    """Each side once per repeat, the order reversed every other repeat (A B C, C B A, ...)."""
    runs: dict[str, list[Run]] = {name: [] for name in sides}
    names = list(sides)
    for rep in range(repeats):
        for name in (names if rep % 2 == 0 else names[::-1]):
            run = sides[name]()
            runs[name].append(run)
            log(f"  [{rep + 1}/{repeats}] {name}: {run.tokens_per_s:,.0f} tokens/s ({run.tokens:,} tokens in "
                f"{run.seconds:.2f} s, padding {run.padding:.1%}), final loss {run.final_loss:.4f}; other processes "
                f"used {run.other_cores:.2f} cores meanwhile")
    return runs


@dataclass
class Ratio:
    """numerator / denominator tokens/s, pair by pair (the same repeat)."""

    values: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, num: list[Run], den: list[Run]) -> "Ratio":
        return cls([a.tokens_per_s / b.tokens_per_s for a, b in zip(num, den)])

    @property
    def median(self) -> float:
        return statistics.median(self.values)


def comparison_rows(runs: dict[str, list[Run]], comparisons: list[tuple]) -> list[list[str]]:
    """Rows of the comparison table: (label, numerator side, denominator side, target or None) each."""
    rows = []
    for label, num, den, target in comparisons:
        ratio = Ratio.of(runs[num], runs[den])
        rows.append([label, f"{ratio.median:.3f}", f"{min(ratio.values):.3f}", f"{max(ratio.values):.3f}",
                     *verdict(ratio.median, target)])
    return rows


COMPARISON_HEADERS = ["comparison (tokens/s ratio)", "median", "min", "max", "target", "result"]


def median(values) -> float:
    return statistics.median(list(values))


def verdict(value: float, target: float | None) -> tuple[str, str]:
    """(target cell, result cell) for a ratio row; no target: an informative row."""
    if target is None:
        return "-", "-"
    return f">= {target:g}", "**PASS**" if value >= target else "**FAIL**"


# --- command line ------------------------------------------------------------------------

def arguments(doc: str, name: str, argv: list[str] | None, default: dict, quick: dict, min_steps: int = 1):
    """--steps --batch-size --repeats --quick --out, the same for every training benchmark."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--steps", type=int,
                    help=f"optimizer steps per run (default {default['steps']}; --quick {quick['steps']})")
    ap.add_argument("--batch-size", type=int,
                    help=f"examples per batch (default {default['batch_size']}; --quick {quick['batch_size']})")
    ap.add_argument("--repeats", type=int,
                    help=f"runs of every side, interleaved (default {default['repeats']}; --quick {quick['repeats']})")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run of about 20 s: the --quick defaults above (explicit options still win)")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / f"{name}.md"),
                    help=f"markdown file for the table (default results/bench/{name}.md); '' for none")
    args = ap.parse_args(argv)
    for key, value in (quick if args.quick else default).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.steps < min_steps or args.batch_size < 1 or args.repeats < 1:
        ap.error(f"--steps must be >= {min_steps}, --batch-size and --repeats >= 1")
    return args


def command_line(script: str, args) -> str:
    """The command that reproduces a table, with every setting spelled out."""
    return f"python bench/{script} --steps {args.steps} --batch-size {args.batch_size} --repeats {args.repeats}"


# --- output ------------------------------------------------------------------------------

def md_table(headers: list[str], rows: list[list], align: str | None = None) -> list[str]:
    """Markdown table lines; align: one of l/r per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(headers) + " |", "|" + "|".join(sep) + "|"] + \
           ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class OtherLoad:
    """How much CPU other processes used while the benchmark ran: /proc/stat's busy time of the
    whole machine minus this process's own CPU time, in cores on average (nan where there is
    no /proc/stat).  Near 0 on an idle machine; well above it, the numbers are contaminated."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
        return time.perf_counter(), busy, time.process_time()

    def cores(self) -> float:
        end = self._sample()
        if self.start is None or end is None or end[0] <= self.start[0]:
            return float("nan")
        (t0, busy0, own0), (t1, busy1, own1) = self.start, end
        return max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)


def provenance(device, other: OtherLoad, elapsed_s: float) -> list[str]:
    """Markdown lines: when, which code, which packages, which hardware, how busy the machine was."""
    from importlib import metadata

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("torch", "transformers", "peft"))
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    others = other.cores()
    busy = others > 0.25  # a quarter of a core: enough to stall torch's threads now and then
    return [
        f"Date {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}; commit {_git_commit()}; "
        f"Python {platform.python_version()}, {versions}.",
        f"Device {device.type}; CPU {_cpu_name()}, {cores} cores available, torch threads {torch.get_num_threads()} "
        f"(the same for every side); GPU {gpu}. Other processes used {others:.2f} cores on average during the "
        f"benchmark (/proc/stat busy time minus this process's)"
        + (" - **the machine was shared**: that slows every side and scatters the ratios" if busy else "")
        + f"; whole benchmark {elapsed_s / 60:.1f} min.",
    ]


def write_out(text: str, out: str) -> None:
    """Print the table; write the same text to `out` unless it is ''."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    print(text, end="")
