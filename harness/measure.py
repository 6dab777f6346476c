"""Measurements, each defined once (harness.measures, the README's metric table) and used for every method.

- trainable_params / trainable_frac: parameters with requires_grad after the method is
  applied, over the base model's parameters counted before it is applied (4-bit packed
  weights counted by their logical size).  Every measure's definition: harness.measures.
- peak_memory_mb: CUDA max_memory_allocated over training (reset before), or on CPU the
  peak resident set size of the worker process over training (Linux VmHWM, reset
  before through /proc/self/clear_refs; psutil sampling where that is unavailable).
- forgetting: causal LM, mean token cross-entropy on the probe texts after training minus
  before; encoder, the accuracy a frozen-feature linear probe reaches on another built-in
  task (harness.probe.task_probe) with the base's features minus with the tuned model's.
  The base's reading is taken once per worker, model and probe (`once_per_worker`).
- representation_drift (encoders): 1 - debiased linear CKA between the base's and the
  tuned model's mean-pooled hidden states on the probe texts.
- adapter_bytes: the bytes one must store per task (see each method's `stored_bytes`).
- flops_per_token / mfu: training FLOPs per token counted over one real training step of
  the adapted model (torch's FlopCounterMode, see `flops_per_token`), and
  tokens_per_s x flops_per_token over the device's dense bf16 peak (GPU only).
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from harness.train import autocast


def _logical_numel(p: torch.Tensor) -> int:
    """Elements of a parameter; a bitsandbytes 4-bit weight by its unpacked shape."""
    quant_state = getattr(p, "quant_state", None)
    if quant_state is not None and getattr(quant_state, "shape", None) is not None:
        return int(torch.Size(quant_state.shape).numel())
    return p.numel()


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total), counting bitsandbytes 4-bit weights by their unpacked size."""
    trainable = total = 0
    for p in model.parameters():
        n = _logical_numel(p)
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def _bnb_matmul_flops(a_shape, *args, out_shape=None, **kwargs) -> int:
    """bitsandbytes' quantized matmuls (A (..., k) times a (n, k) weight -> (..., n)): 2 k n per row of A."""
    out = out_shape[0] if isinstance(out_shape, (tuple, list)) and out_shape and not isinstance(out_shape[0], int) else out_shape
    return 2 * math.prod(a_shape) * int(out[-1])


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out, query, key, value)


def flop_formulas() -> dict:
    """Formulas for the matmul-like kernels torch's FlopCounterMode has none for: PyTorch's CPU
    flash attention (forward and backward, counted as torch counts its GPU kernels) and
    bitsandbytes' int8 / 4-bit matmuls (where bitsandbytes is loaded)."""
    import sys

    aten = torch.ops.aten
    formulas = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
                aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops}
    if "bitsandbytes" in sys.modules:
        ops = torch.ops.bitsandbytes
        for name in ("gemm_4bit", "gemv_4bit", "int8_linear_matmul", "int8_scaled_mm", "int8_mixed_scaled_mm"):
            if hasattr(ops, name):
                formulas[getattr(ops, name)] = _bnb_matmul_flops
    return formulas


def flop_counter():
    """torch.utils.flop_counter.FlopCounterMode with `flop_formulas` added, printing nothing."""
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False, custom_mapping=flop_formulas())


def representative_batch(examples: list[dict], batch_size: int, pad_id: int, seq_len: int | None = None) -> dict:
    """`batch_size` rows (fewer when there are fewer examples, as the training's batches) of
    exactly `seq_len` tokens (default: the examples' mean length, rounded), with no padding:
    the examples' own tokens (and labels) repeated or cut to that length."""
    from harness.data import collate

    if not examples:
        raise ValueError("no examples to build a batch from")
    if seq_len is None:
        seq_len = max(1, round(sum(len(e["input_ids"]) for e in examples) / len(examples)))

    def fit(values: list) -> list:
        return (values * math.ceil(seq_len / len(values)))[:seq_len]

    rows = []
    for e in examples[:min(batch_size, len(examples))]:
        row = {"input_ids": fit(list(e["input_ids"]))}
        if "label" in e:
            row["label"] = e["label"]
        elif "labels" in e:
            row["labels"] = fit(list(e["labels"]))
        rows.append(row)
    batch = collate(rows, pad_id)
    del batch["attention_mask"]  # no padding: the training drops the all-ones mask too (harness.train.micro_batches)
    return batch


def flops_per_token(model: torch.nn.Module, examples: list[dict], batch_size: int, pad_id: int,
                    device: torch.device, precision: str = "fp32", seq_len: int | None = None) -> float:
    """Training FLOPs per token, counted over one real training step of `model` (forward + backward).

    One micro-batch of the training's size (`representative_batch`: rows of the training
    examples' mean length, no padding) goes through `harness.train.accumulate`, the
    training's own forward and backward, under torch's FlopCounterMode (`flop_counter`),
    and the count is divided by the batch's tokens.  So the figure is what the adapted
    model computes, method by method, rather than a formula per method: a frozen layer
    costs its forward (2 FLOPs per weight and token) plus the gradient of its input only
    where something before it trains (head_only runs no backward through the body at all);
    piggyback's masked weights cost a full layer's 6, not a frozen weight's 4 plus 6 for
    the scores; VeRA's products with its shared random matrices, DoRA's weight norm (per
    micro-batch, so spread over its tokens) and LoHa / LoKr's weight rebuilt every forward
    and applied as a full-size product count; prompt
    tuning's virtual positions go through every layer and count, per real token; attention
    counts its full T x T scores (as torch counts its kernels; a causal kernel skips about
    half).  What counts: matmuls, attention and convolutions (torch's registry, with
    PyTorch's CPU flash attention and bitsandbytes' quantized matmuls added); elementwise
    work (norms, activations, the optimizer) does not, as in the usual 6N.  Padding is not
    counted: it is work a batching scheme wastes, not work of the method (tokens_per_s
    counts real tokens too, so mfu shows the waste).  The step runs in training mode
    under the trial's precision with the random state forked and restored, and leaves
    the gradients as they were; the runner takes it before training, so gradient
    checkpointing's recomputation is not counted (mfu is model-FLOPs utilisation).
    The count costs one or two training steps' time (the counter's per-operation hook).
    """
    from harness.train import accumulate

    batch = representative_batch(examples, batch_size, pad_id, seq_len)
    tokens = batch["input_ids"].numel()
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad for p in params]
    was_training = model.training
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model.train()
        for p in params:  # a backward accumulates into existing gradients: start from none
            p.grad = None
        try:
            with flop_counter() as counter:
                accumulate(model, [batch], device, precision)
        finally:
            for p, g in zip(params, grads):
                p.grad = g
            model.train(was_training)
    return counter.get_total_flops() / tokens


# dense bf16 tensor-core peaks (FLOP/s), from the vendors' data sheets; matched on torch's device name
PEAK_BF16_FLOPS = (("H200", 989e12), ("H100 NVL", 835e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("GH200", 989e12),
                   ("B200", 2250e12), ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12), ("A10", 125e12),
                   ("RTX 4090", 165e12))


def peak_flops(device_name: str) -> float:
    """The device's dense bf16 peak FLOP/s; $HARNESS_PEAK_TFLOPS overrides; nan when unknown (and on CPU)."""
    import os

    if os.environ.get("HARNESS_PEAK_TFLOPS"):
        return float(os.environ["HARNESS_PEAK_TFLOPS"]) * 1e12
    if device_name.startswith("cpu"):
        return float("nan")
    return next((peak for name, peak in PEAK_BF16_FLOPS if name in device_name), float("nan"))


def mfu(tokens_per_s: float, flops_token: float, peak: float) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s over the device's peak."""
    return tokens_per_s * flops_token / peak if peak > 0 else float("nan")


def _bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def base_param_count(model: torch.nn.Module) -> int:
    """All parameters of a model, counted like `count_params` (4-bit weights unpacked): taken on
    the base before a method is applied, it is trainable_frac's denominator."""
    return count_params(model)[1]


def _quant_tensors(p: torch.Tensor) -> list[torch.Tensor]:
    """The quantization constants bitsandbytes keeps beside a packed weight: a 4-bit weight's
    QuantState (absmax, code table, nested absmax and code), an 8-bit weight's row scales (SCB)."""
    out: list[torch.Tensor] = []
    state = getattr(p, "quant_state", None)
    while state is not None:  # the tensors it holds (QuantState.as_dict would copy some: their addresses repeat)
        out += [v for v in vars(state).values() if torch.is_tensor(v)]
        state = getattr(state, "state2", None)
    scb = getattr(p, "SCB", None)
    if torch.is_tensor(scb):
        out.append(scb)
    return out


def parameter_bytes(model: torch.nn.Module) -> int:
    """Every parameter as stored: its elements at its dtype (a 4-bit weight packed two per byte, an
    8-bit one a byte each) plus its quantization constants; a tensor shared by several modules once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for p in model.parameters():
        for t in (p, *_quant_tensors(p)):
            key = (t.data_ptr(), _bytes(t))
            if key in seen or not t.numel():
                continue
            seen.add(key)
            total += _bytes(t)
    return total


def gradient_bytes(model: torch.nn.Module) -> int:
    """One gradient per trainable parameter, at the parameter's dtype (what backward allocates)."""
    return sum(_bytes(p) for p in model.parameters() if p.requires_grad)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """The tensors an optimizer holds in its state (AdamW: exp_avg, exp_avg_sq and step per parameter)."""
    return sum(_bytes(v) for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v))


def train_state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """train_state_mb's bytes: parameters as stored + a gradient per trainable parameter + the optimizer's
    state as it holds it (taken after training, when every state tensor exists)."""
    return parameter_bytes(model) + gradient_bytes(model) + optimizer_state_bytes(optimizer)


def safetensors_bytes(directory: str | Path) -> int:
    """Bytes of the tensors in every *.safetensors file under `directory`, read from their headers
    (elements x dtype size); the files' own headers and any other file (configs, READMEs) do not count."""
    import json
    import struct

    total = 0
    for path in sorted(Path(directory).rglob("*.safetensors")):
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        total += sum(end - start for key, entry in header.items() if key != "__metadata__"
                     for start, end in [entry["data_offsets"]])
    return total


def adapter_bytes(method, model: torch.nn.Module, directory: str | Path | None) -> int:
    """adapter_bytes: what one task must store.  The method's own `stored_bytes` where it declares it
    (piggyback's 1-bit masks, VeRA without its shared projections, full fine-tuning's whole model); else
    the tensors of what its `save` wrote to `directory` (safetensors), at their stored dtype; a method
    that saves nothing stores its trainable parameters."""
    if method.stored_bytes is not None:
        return int(method.stored_bytes(model))
    if method.save is not None and directory is not None:
        found = any(Path(directory).rglob("*.safetensors"))
        if not found:
            raise ValueError(f"method {method.name!r} saved no *.safetensors file: declare stored_bytes in its "
                             "registration to say what one task stores")
        return safetensors_bytes(directory)
    return sum(_bytes(p) for p in model.parameters() if p.requires_grad)


def _release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so RSS starts from what is live."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Context manager: peak memory in MB over the block, and which kind it is."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "cuda_allocated" if device.type == "cuda" else "cpu_rss"
        self.peak_mb = float("nan")
        self.peak_reserved_mb = float("nan")
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()
        self._sampled = 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        _release_freed_memory()  # a worker runs trials one after another: earlier trials' garbage is not this one's
        if not _reset_hwm():
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.peak_reserved_mb = torch.cuda.max_memory_reserved(self.device) / 2**20
        elif self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            self.peak_mb = self._sampled / 2**20
        else:
            self.peak_mb = _read_hwm_kb() / 1024
        return False

    def _sample(self):
        import psutil

        proc = psutil.Process()
        while not self._stop.is_set():
            self._sampled = max(self._sampled, proc.memory_info().rss)
            time.sleep(0.02)


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS counter for this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _read_hwm_kb() > 0
    except OSError:
        return False


def _read_hwm_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019, arXiv:1905.00414) between two (n, d) representations.

    The plain estimator, biased upwards when the dimension is not much smaller than the
    number of examples (unrelated representations read well above 0);
    `debiased_linear_cka` is what the harness reports.
    """
    x = x.double() - x.double().mean(0, keepdim=True)
    y = y.double() - y.double().mean(0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norm = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norm) if norm > 0 else float("nan")


def unbiased_hsic(k: torch.Tensor, lmat: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC estimator of two (n, n) Gram matrices, n >= 4 (Song et al. 2012, JMLR 13).

    HSIC_1 = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)), with K~, L~
    the Gram matrices with their diagonals set to 0.
    """
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs at least 4 examples, got {n}")
    k = k - torch.diag(torch.diagonal(k))
    lmat = lmat - torch.diag(torch.diagonal(lmat))
    ones_k, ones_l = k.sum(0), lmat.sum(0)  # 1'K~ and 1'L~ (symmetric)
    trace = (k * lmat).sum()
    return (trace + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (ones_k @ ones_l)) / (n * (n - 3))


def debiased_linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA with the unbiased HSIC estimator (Nguyen et al. 2021, arXiv:2010.15327).

    The plain estimator is biased upwards for n examples of d dimensions when d is not
    much smaller than n (64 probe texts of 384-dimensional features): two unrelated random
    representations score well above 0.  The unbiased HSIC removes that; the result is 1 for
    representations equal up to rotation and isotropic scale, about 0 for unrelated ones,
    and may stray slightly outside [0, 1] by chance.  nan when either representation is
    constant, or for fewer than 4 examples (the estimator needs 4).
    """
    if x.shape[0] < 4:
        return float("nan")
    x = x.double() - x.double().mean(0, keepdim=True)  # the estimator is shift-invariant; centring keeps it well conditioned
    y = y.double() - y.double().mean(0, keepdim=True)
    k, lmat = x @ x.T, y @ y.T
    xy, xx, yy = unbiased_hsic(k, lmat), unbiased_hsic(k, k), unbiased_hsic(lmat, lmat)
    return float(xy / torch.sqrt(xx * yy)) if xx > 0 and yy > 0 else float("nan")


# --------------------------------------------------------------------------- the linear probe

PROBE_L2 = 1e-3  # the L2 penalty on the weights, per example (the loss is a mean)
PROBE_ITERATIONS = 100  # LBFGS iterations (at most: it stops earlier once converged)


def fit_linear_probe(x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float = PROBE_L2,
                     iterations: int = PROBE_ITERATIONS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on (n, d) features: (mean, std, weight (d, k), bias (k)).

    The features are standardised with the training mean and standard deviation (a
    constant feature gets std 1), then the mean cross-entropy plus `l2`/2 |W|^2 is
    minimised by full-batch LBFGS (strong-Wolfe line search) from zero, in float64 on the
    CPU: the objective is strictly convex, so the fit is deterministic and does not depend
    on a seed.  Our own ~25 lines rather than scikit-learn's LogisticRegression: it is not
    a dependency of the harness, and this keeps the solver, its iterations and its
    precision fixed and visible.
    """
    x = x.detach().double().cpu()
    y = y.detach().long().cpu()
    mean, std = x.mean(0), x.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    z = (x - mean) / std
    weight = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=iterations, history_size=20,
                            tolerance_grad=1e-10, tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ weight + bias, y) + 0.5 * l2 * (weight * weight).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return mean, std, weight.detach(), bias.detach()


def linear_probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                          n_classes: int) -> float:
    """Test accuracy of `fit_linear_probe` fitted on the training features."""
    mean, std, weight, bias = fit_linear_probe(train_x, train_y, n_classes)
    pred = (((test_x.detach().double().cpu() - mean) / std) @ weight + bias).argmax(1)
    return float((pred == test_y.cpu()).double().mean())


# --------------------------------------------------------------------------- forgetting


@torch.no_grad()
def probe_signal(model, batches: list[dict], task_type: str, device: torch.device, precision: str = "fp32") -> torch.Tensor:
    """Mean token cross-entropy (causal LM) or mean-pooled last hidden states (encoder) on probe batches.

    Causal LM returns a 0-d tensor, the mean token cross-entropy over every probe token
    (logits shifted by one); encoders return the (n_texts, hidden) matrix, each row the
    last hidden state averaged over the text's real tokens.
    """
    model.eval()
    losses, tokens, pooled = 0.0, 0, []
    for batch in batches:
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        with autocast(device, precision):
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=task_type != "causal_lm")
        # soft-prompt methods prepend virtual tokens: measure on the real tokens only
        width = ids.shape[1]
        if task_type == "causal_lm":
            logits = out.logits[:, -width:][:, :-1].float()
            target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            losses += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                                                              ignore_index=-100, reduction="sum"))
            tokens += int((target != -100).sum())
        else:
            hidden = out.hidden_states[-1][:, -width:].float()
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled.append(((hidden * m).sum(1) / m.sum(1)).cpu())
    if task_type == "causal_lm":
        return torch.tensor(losses / max(tokens, 1))
    return torch.cat(pooled)


@dataclass(frozen=True)
class ProbeReading:
    """One reading of the probes, taken on the base before the method and on the tuned model after.

    causal LM: `loss`, the mean token cross-entropy on the probe texts.  Encoders:
    `features`, the pooled hidden states of the probe texts (for representation_drift),
    and `task_accuracy`, the linear probe's test accuracy on the probe task (forgetting).
    """

    loss: float | None = None
    features: torch.Tensor | None = None
    task_accuracy: float | None = None


def read_probe(model, batches: list[dict], task_type: str, device: torch.device, precision: str = "fp32",
               task=None) -> ProbeReading:
    """The probe reading of `model`; `task` (encoders) is a harness.probe.TaskProbe."""
    if task_type == "causal_lm":
        return ProbeReading(loss=float(probe_signal(model, batches, task_type, device, precision)))
    if task is None:
        raise ValueError("an encoder's forgetting needs the probe task (harness.probe.task_probe)")
    train_x = probe_signal(model, task.train_batches, task_type, device, precision)
    test_x = probe_signal(model, task.test_batches, task_type, device, precision)
    return ProbeReading(features=probe_signal(model, batches, task_type, device, precision),
                        task_accuracy=linear_probe_accuracy(train_x, task.train_labels, test_x, task.test_labels,
                                                            len(task.label_names)))


_WORKER_CACHE: dict[tuple, Any] = {}
WORKER_CACHE_KEPT = 32  # entries a worker keeps, oldest dropped first (probe readings and FLOP counts: small)


def once_per_worker(key: tuple, compute: Callable[[], Any]) -> Any:
    """`compute()` the first time this worker process meets `key`, the same result after that.

    For measurements that are the same for every trial of a worker with the same key; the
    key is the caller's and must hold everything the measurement depends on.  The runner
    keeps two kinds, and saves their cost on every later trial with the same key:

    - forgetting's "before", the base model's probe reading, keyed by the model
      (fingerprint), quantization, precision, device, task type and probe (texts, their
      settings, the probe task).  The seed does not enter: the new task head, the one
      seeded part of the base, is not read (encoders: hidden states; causal LMs: the
      pretrained lm_head).  On an encoder it is a forward over every probe text and a
      linear-probe fit, as long as the "after" reading of every trial.
    - `flops_per_token`, keyed by the model, quantization, precision, device, task type,
      method and its settings, the labels, the data and the micro-batch and length: a
      trial's seed and learning rate change no shape, so they do not change the count.
    """
    if key not in _WORKER_CACHE:
        _WORKER_CACHE[key] = compute()
        while len(_WORKER_CACHE) > WORKER_CACHE_KEPT:
            del _WORKER_CACHE[next(iter(_WORKER_CACHE))]
    return _WORKER_CACHE[key]


def forgetting(before: ProbeReading, after: ProbeReading) -> float:
    """Causal LM: probe cross-entropy after minus before.  Encoders: probe-task accuracy before minus after.

    Either way positive means the tuned model lost something the base had.
    """
    if before.loss is not None:
        return after.loss - before.loss
    return before.task_accuracy - after.task_accuracy


def representation_drift(before: ProbeReading, after: ProbeReading) -> float:
    """Encoders: 1 - debiased linear CKA between the base's and the tuned model's probe features."""
    return 1.0 - debiased_linear_cka(before.features, after.features)
