"""What the harness measures: one table of every measured column, and the only place it is written.

Each `Measure` is one MLflow metric of a trial's run and one runs.csv column: its name,
unit, better direction (higher, lower, or none), the leaderboard header and number
format where the leaderboard shows it, a one-line definition, and whether only a GPU
run (or only some runs) log it.  The runner (`harness.runner`) logs only names from
here, tracking (`harness.track.METRIC_NAMES`), the report's runs.csv columns, headers
and formats (`harness.report`), `report --compare`'s directions (`harness.compare`) and
`python -m harness methods` read it, and the README's metric table is this table
(`python -m harness.measures` prints it; tests/test_measures.py fails when they differ).
The functions that take the measurements are in `harness.measure`.
"""
from __future__ import annotations

from dataclasses import dataclass

UP, DOWN = "↑", "↓"

# how the leaderboard writes a number (see harness.report._format)
FORMATS = {
    "fixed3": "3 decimals",
    "fixed2": "2 decimals",
    "sig3": "3 significant digits",
    "sig4": "4 significant digits",
    "int": "rounded, with thousands separators",
    "percent3": "x 100, 3 significant digits",
    "megabytes3": "/ 10^6, 3 significant digits",
}


@dataclass(frozen=True)
class Measure:
    name: str  # MLflow metric name and runs.csv column
    unit: str
    higher: bool | None  # True: higher is better, False: lower is better, None: no better direction
    definition: str  # one line: the README's
    header: str = ""  # leaderboard column header ("" = not a leaderboard column); an arrow in it follows `higher`
    fmt: str = ""  # a key of FORMATS, for leaderboard columns
    gpu_only: bool = False  # logged only by runs on a GPU
    only: str = ""  # another condition under which a run logs it ("" = every finished run logs it)

    @property
    def better(self) -> str:
        """The direction in words, as the README's table writes it."""
        return {True: f"higher {UP}", False: f"lower {DOWN}", None: "none"}[self.higher]

    @property
    def logged(self) -> str:
        """When a finished run logs it, in words."""
        return "; ".join(w for w in ("GPU only" if self.gpu_only else "", self.only) if w) or "every run"


LATENCY_EXAMPLES = 4  # examples per timed pass (the first of the test split), read by harness.inference
LATENCY_ROUNDS = 6  # alternating rounds of base and adapted passes (>= 5; even, so each goes first as often)
_LATENCY = (f"one forward pass at batch size 1 over the first {LATENCY_EXAMPLES} test examples (prompt + answer for "
            f"causal LM). After training, in the same process, a fresh copy of the base (with its head) and the "
            f"trained model are timed alternately: one untimed pass each, then {LATENCY_ROUNDS} rounds of one pass "
            f"each, each model first in every other round; the median of its passes")
_INTERVAL = (f"order-statistic interval of the median round ratio (with {LATENCY_ROUNDS} rounds: the smallest and "
             f"largest ratio, {100 * (1 - 2 * 0.5 ** LATENCY_ROUNDS):.1f}% coverage)")

MEASURES: tuple[Measure, ...] = (
    Measure("val_score", "task metric", True,
            "the task metric (tag `metric`: accuracy, macro_f1 or exact_match, higher is better for each) on the "
            "validation split; it picks the trials and the best row",
            header="val {metric}", fmt="fixed3"),
    Measure("test_score", "task metric", True,
            "the task metric on the test split; only reported, it never picks anything",
            header="test {metric} {arrow}", fmt="fixed3"),
    Measure("forgetting", "nats (causal LM), accuracy (encoders)", False,
            "what the tuned model lost that the base had (see Forgetting above): causal LM, the mean token "
            "cross-entropy on the probe texts after − before; encoders, the probe task's linear-probe accuracy "
            "before − after",
            header=f"forgetting {DOWN}", fmt="sig4"),
    Measure("representation_drift", "1 − CKA", None,
            "1 − debiased linear CKA of the base's and the tuned model's pooled last hidden states on the probe "
            "texts (see above): how far the representation moved, not what was lost",
            only="encoders"),
    Measure("trainable_params", "parameters", False,
            "parameters with `requires_grad` after the method is applied (4-bit weights counted unpacked, a "
            "parameter shared by several modules once)",
            header="trainable params", fmt="int"),
    Measure("trainable_frac", "fraction", False,
            "trainable_params / the parameter count of the base model (with its task head) before the method is "
            "applied, counted the same way: one denominator per model, whatever the method adds",
            header=f"trainable % {DOWN}", fmt="percent3"),
    Measure("adapter_bytes", "bytes", False,
            "what one task must store: the tensors the method saves per task at their stored dtype, no metadata "
            "files (piggyback's masks at 1 bit per weight; VeRA's vectors without the projections shared by every "
            "task; prefix tuning's prefix table, not the MLP that trained it; full fine-tuning, every tensor of the "
            "model once)",
            header=f"adapter size (MB) {DOWN}", fmt="megabytes3"),
    Measure("peak_memory_mb", "MB (2^20 B)", False,
            "peak over training, reset before: `torch.cuda.max_memory_allocated` on GPU, the worker process's peak "
            "resident set size on CPU (includes Python and the libraries)",
            header=f"peak memory (MB) {DOWN}", fmt="int"),
    Measure("peak_reserved_mb", "MB (2^20 B)", False,
            "peak over training of the memory the CUDA allocator reserved (`torch.cuda.max_memory_reserved`)",
            gpu_only=True),
    Measure("eval_peak_memory_mb", "MB (2^20 B)", False,
            "peak_memory_mb's measure over evaluation (validation, test and the forgetting probe), reset before",
            header=f"eval peak memory (MB) {DOWN}", fmt="int"),
    Measure("eval_peak_reserved_mb", "MB (2^20 B)", False,
            "peak_reserved_mb's measure over evaluation",
            gpu_only=True),
    Measure("train_state_mb", "MB (2^20 B)", False,
            "the training state as stored, counted exactly: every parameter at its dtype (4-bit and 8-bit weights "
            "packed, with their quantization constants), a gradient per trainable parameter and the optimizer's "
            "state as it holds it after training (AdamW: two tensors per trainable parameter and a step count); "
            "activations are not in it",
            header=f"train state (MB) {DOWN}", fmt="sig3"),
    Measure("tokens_per_s", "tokens/s", True,
            "non-padding tokens trained per second, after the first two (warm-up) steps",
            header=f"tokens/s {UP}", fmt="int"),
    Measure("train_time_s", "s", False,
            "wall time of the training steps",
            header="train time (s)", fmt="sig3"),
    Measure("flops_per_token", "FLOPs/token", False,
            "training FLOPs per token, counted: one training step (forward + backward through the harness's loop) "
            "of the adapted model on one micro-batch of the training's size whose rows have the training examples' "
            "mean length and no padding, under torch's `FlopCounterMode` (matmuls, attention with its full T×T "
            "scores; PyTorch's CPU attention and bitsandbytes' int8/4-bit matmuls added), divided by the batch's "
            "tokens. A frozen layer costs its forward plus its input's gradient only where something before it "
            "trains (head_only: no backward through the body); piggyback's masked weights, VeRA's shared matrices, "
            "DoRA's weight norm and prompt tuning's virtual positions count; elementwise work and padding do not. "
            "Counted before training, once per worker and configuration"),
    Measure("mfu", "fraction", True,
            "tokens_per_s × flops_per_token / the GPU's dense bf16 peak (H100/H200 989 TFLOP/s, A100 312, ...; "
            "`HARNESS_PEAK_TFLOPS` sets another; not logged where the peak is unknown)",
            header=f"MFU (%) {UP}", fmt="percent3", gpu_only=True),
    Measure("latency_base_ms", "ms/sample", None,
            f"inference time per sample of the base model: {_LATENCY}"),
    Measure("latency_ms", "ms/sample", False,
            "latency_base_ms's measure on the adapted model, unmerged",
            header=f"latency (ms/sample) {DOWN}", fmt="sig3"),
    Measure("latency_overhead", "×", False,
            "the median over the alternating rounds of (adapted pass / base pass); `tests/test_inference.py` checks "
            "that identical compute reads about 1 with 1 inside the interval",
            header=f"overhead (×) {DOWN}", fmt="fixed2"),
    Measure("latency_overhead_low", "×", None,
            f"the lower end of latency_overhead's {_INTERVAL}"),
    Measure("latency_overhead_high", "×", None,
            "the upper end of latency_overhead's interval"),
    Measure("latency_merged_ms", "ms/sample", False,
            "latency_base_ms's measure on the adapted model merged into the base (tag `merge` says why a method "
            "cannot)",
            header=f"merged latency (ms/sample) {DOWN}", fmt="sig3", only="methods that merge"),
    Measure("latency_overhead_merged", "×", False,
            "latency_overhead's measure for the merged model against the same base copy",
            header=f"merged overhead (×) {DOWN}", fmt="fixed2", only="methods that merge"),
    Measure("latency_overhead_merged_low", "×", None,
            "the lower end of latency_overhead_merged's interval", only="methods that merge"),
    Measure("latency_overhead_merged_high", "×", None,
            "the upper end of latency_overhead_merged's interval", only="methods that merge"),
    Measure("adapter_load_ms", "ms", False,
            "serving several tasks on one base, the same operation for every method: one task's stored weights "
            "from disk onto the base already resident on the device, ready to serve (PEFT: `load_adapter`; ours: "
            "read the saved tensors, put them on the device, point the model's parameters at them; full "
            "fine-tuning: the same with every weight)",
            header=f"adapter load (ms) {DOWN}", fmt="sig3", only="where two tasks' weights fit on the device"),
    Measure("adapter_switch_ms", "ms", False,
            "serve the other task when both tasks' weights are resident on the device (PEFT: `set_adapter`; ours "
            "and full fine-tuning: point the parameters at the other resident set, `parameter.data = tensor`, no "
            "copy), median of 10 (tag `adapter_switch` says how); not logged where a second task's weights do not "
            "fit in the device's free memory (the tag says so)",
            header=f"adapter switch (ms) {DOWN}", fmt="sig3", only="where two tasks' weights fit on the device"),
    Measure("load_time_s", "s", None,
            "the trial's data, tokenizer and model loading (tokenized splits are cached)"),
    Measure("eval_time_s", "s", None,
            "the trial's scoring of validation and test and the forgetting probe"),
    Measure("measure_time_s", "s", None,
            "the trial's measurements: the base's probe reading (once per worker, model, quantization and probe), "
            "the FLOP count (once per worker and configuration), adapter save and swap, reloading the base, "
            "latency, merge"),
    Measure("data.dup_train_validation", "count", None,
            "validation rows whose input, whitespace collapsed and case ignored, is also a train input "
            "(`harness.data.overlap`; the built-in generators make none): a property of the data, not of the "
            "method, logged once the data is loaded (failed runs too); the report's Data overlap line names it"),
    Measure("data.dup_train_test", "count", None,
            "data.dup_train_validation's count for the test split"),
)

BY_NAME: dict[str, Measure] = {m.name: m for m in MEASURES}
NAMES: tuple[str, ...] = tuple(m.name for m in MEASURES)
# what every finished run logs, wherever it ran
ALWAYS: tuple[str, ...] = tuple(m.name for m in MEASURES if not m.gpu_only and not m.only)

# The leaderboard's columns after `seeds ok` (quality table) and in the inference table.  MEMORY is the
# memory column: each run's memory_kind tag names the measure it shows (MEMORY_KINDS).
MEMORY = "memory"
QUALITY_COLUMNS = ("val_score", "forgetting", "trainable_frac", "trainable_params", MEMORY, "eval_peak_memory_mb",
                   "tokens_per_s", "mfu", "train_time_s", "adapter_bytes")
INFERENCE_COLUMNS = ("latency_ms", "latency_overhead", "latency_merged_ms", "latency_overhead_merged",
                     "adapter_load_ms", "adapter_switch_ms")


@dataclass(frozen=True)
class MemoryKind:
    measure: str  # the measure the memory column shows for a run of this kind
    subject: str  # how the leaderboard's footnote names it
    description: str
    plot_label: str  # the Pareto plot's axis


# A run's `memory_kind` tag: which measure is its memory column (the leaderboard's and the Pareto plot's).
MEMORY_KINDS: dict[str, MemoryKind] = {
    "cuda_allocated": MemoryKind("peak_memory_mb", "peak memory",
                                 "GPU memory held by tensors (torch.cuda.max_memory_allocated) during training; "
                                 "the reserved peak is in MLflow as peak_reserved_mb", "peak training memory"),
    "train_state": MemoryKind("train_state_mb", "memory",
                              "the training state counted exactly (train_state_mb): parameters as stored, "
                              "gradients and optimizer state, no activations; the worker's peak resident memory is "
                              "in runs.csv as peak_memory_mb", "training state"),
    # runs on CPU before train_state_mb existed
    "cpu_rss": MemoryKind("peak_memory_mb", "peak memory",
                          "peak resident memory of the worker process during training (includes Python and the "
                          "libraries)", "peak training memory"),
}


def memory_kind(device_type: str) -> str:
    """The memory_kind tag of a run on this device: the device peak on a GPU, the exact training state on CPU."""
    return "cuda_allocated" if device_type == "cuda" else "train_state"


def memory_measure(kind: str | None) -> str:
    """The measure the memory column shows for a run with this memory_kind (peak_memory_mb when unknown)."""
    return MEMORY_KINDS[kind].measure if kind in MEMORY_KINDS else "peak_memory_mb"


def direction(name: str) -> bool | None:
    """True when higher is better, False when lower is, None when neither; KeyError for an unknown name."""
    return BY_NAME[name].higher


def unknown(names) -> list[str]:
    """The names that are no measure, in order."""
    return [n for n in names if n not in BY_NAME]


def check_logged(metrics: dict) -> dict:
    """`metrics` unchanged; ValueError naming any key that is not in this table (it would log an undefined column)."""
    stray = unknown(metrics)
    if stray:
        raise ValueError(f"metrics not defined in harness.measures: {', '.join(stray)}")
    return metrics


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


README_HEADER = ("| metric (MLflow name) | unit | better | logged | definition |", "|---|---|---|---|---|")


def readme_table() -> str:
    """The README's metric table, one row per measure."""
    rows = [f"| `{m.name}` | {_cell(m.unit)} | {m.better} | {_cell(m.logged)} | {_cell(m.definition)} |"
            for m in MEASURES]
    return "\n".join([*README_HEADER, *rows]) + "\n"


def parse_readme_table(text: str) -> list[dict[str, str]]:
    """The rows of the metric table in a README's text: name, unit, better, logged, definition."""
    lines = text.splitlines()
    try:
        start = lines.index(README_HEADER[0])
    except ValueError:
        raise ValueError(f"no metric table (a line {README_HEADER[0]!r}) in the README") from None
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip().replace("\\|", "|") for c in line.strip().strip("|").split(" | ")]
        name, unit, better, logged, definition = (cells + [""] * 5)[:5]
        rows.append({"name": name.strip("`"), "unit": unit, "better": better, "logged": logged,
                     "definition": definition})
    return rows


if __name__ == "__main__":
    print(readme_table(), end="")
