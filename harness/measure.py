"""Measurements, each defined once (design.md, "Measurements") and used for every method.

- trainable_params / trainable_frac: parameters with requires_grad after the method is
  applied, over all parameters (4-bit packed weights counted by their logical size).
- peak_memory_mb: CUDA max_memory_allocated over training (reset before), or on CPU the
  peak resident set size of the worker process over training (Linux VmHWM, reset
  before through /proc/self/clear_refs; psutil sampling where that is unavailable).
- forgetting: causal LM, mean token cross-entropy on the probe after training minus
  before; encoder, 1 - linear CKA between base and tuned hidden states on the probe.
- adapter_bytes: the bytes one must store per task (see each method's `stored_bytes`).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import torch

from harness.train import autocast


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total), counting bitsandbytes 4-bit weights by their unpacked size."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        quant_state = getattr(p, "quant_state", None)
        if quant_state is not None and getattr(quant_state, "shape", None) is not None:
            n = int(torch.Size(quant_state.shape).numel())
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def directory_bytes(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


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
    """Linear CKA (Kornblith et al. 2019, arXiv:1905.00414) between two (n, d) representations."""
    x = x.double() - x.double().mean(0, keepdim=True)
    y = y.double() - y.double().mean(0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norm = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norm) if norm > 0 else float("nan")


@torch.no_grad()
def probe_signal(model, batches: list[dict], task_type: str, device: torch.device) -> torch.Tensor:
    """What forgetting compares: per-token cross-entropies (causal LM) or mean-pooled last hidden states (encoder).

    Causal LM returns a 0-d tensor, the mean token cross-entropy over every probe token
    (logits shifted by one); encoders return the (n_texts, hidden) matrix.
    """
    model.eval()
    losses, tokens, pooled = 0.0, 0, []
    for batch in batches:
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        with autocast(device):
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


def forgetting(before: torch.Tensor, after: torch.Tensor, task_type: str) -> float:
    if task_type == "causal_lm":
        return float(after - before)
    return 1.0 - linear_cka(before, after)
