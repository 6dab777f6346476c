"""bench/gpu.py as a user runs it: the --tiny smoke run end to end (every method through the
harness, the table printed and written), and the refusal without a GPU.  No speed assertions."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(ROOT / "bench" / "gpu.py")
METHODS = ("lora", "qlora", "dora", "full")


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # one thread: the tiny model is all overhead, and two threads fight over two busy cores
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _table(text: str, first_header: str) -> list[dict[str, str]]:
    """The markdown table whose header row starts with `first_header`, as dicts keyed by column."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header))
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    header = cells(lines[start])
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, cells(line))))
    return rows


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_tiny_run_trains_every_method_and_writes_the_table(tmp_path):
    out = tmp_path / "gpu.md"
    proc = _run("--tiny", "--methods", ",".join(METHODS), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert proc.stdout == text  # progress goes to stderr, the table to both

    rows = _table(text, "| size | method | trainable")
    assert [r["method"] for r in rows] == list(METHODS)
    for r in rows:
        assert r["size"] == "tiny" and r["batch x seq"] == "4 x 64", r
        assert _number(r["tokens/s"]) > 0, r
        assert _number(r["peak allocated (MB)"]) > 0, r
        assert _number(r["GFLOP/token"]) > 0, r
    full, lora = rows[3], rows[0]
    assert full["trainable"].endswith("(100.00%)") and not lora["trainable"].endswith("(100.00%)")
    assert "MFU >= 40%" in lora["target"] and "0.8x LoRA" in rows[1]["target"]

    (model,) = _table(text, "| size | layers")
    assert 0.9e6 < _number(model["parameters"].split()[0]) < 1.2e6  # the ~1M-parameter smoke model

    split = _table(text, "| size | method | timed step")
    assert [r["method"] for r in split] == list(METHODS)
    for r in split:
        shares = [int(r[p].split("(")[1].rstrip("%)")) for p in ("data", "forward", "backward", "optimizer")]
        assert 97 <= sum(shares) <= 103, r  # rounded shares of one step
    for needed in ("torch ", "transformers ", "peft ", "bitsandbytes ", "commit ", "under torch's FlopCounterMode"):
        assert needed in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the script runs instead of refusing")
def test_without_a_gpu_it_refuses_unless_tiny():
    proc = _run(timeout=120)
    assert proc.returncode == 2
    assert "no CUDA device: bench/gpu.py needs a GPU; use --tiny for a CPU smoke run" in proc.stderr
    assert proc.stdout == ""
