"""The training benchmarks (bench/loop.py, bench/trainer.py) run end to end on the
quickstart model with a handful of steps: exit 0, the table printed and written to --out,
every expected row with numeric ratios.  No timing is asserted: on a shared machine the
ratios are whatever they are, and the table itself says PASS or FAIL."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--quick", "--steps", "4", "--batch-size", "4", "--repeats", "1"]  # 2 timed steps after 2 untimed ones


def _run(script: str, tmp_path: Path) -> str:
    out = tmp_path / "sub" / f"{script}.md"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / f"{script}.py"), *TINY, "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert text in proc.stdout  # the same text printed and written
    assert "tokens/s" in proc.stderr  # progress went to stderr
    return text


def _table(text: str, first_header: str) -> dict[str, dict[str, str]]:
    """The markdown table whose first column header is `first_header`: {first cell: {header: cell}}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    headers = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(headers), line
        rows[cells[0]] = dict(zip(headers, cells))
    return rows


def _number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("%"))


def _check_comparisons(rows: dict, targets: dict[str, str]) -> None:
    assert set(rows) == set(targets)
    for label, row in rows.items():
        med, lo, hi = (_number(row[k]) for k in ("median", "min", "max"))
        assert 0 < lo <= med <= hi and math.isfinite(hi), row
        assert row["target"] == targets[label], row
        assert row["result"] in (("**PASS**", "**FAIL**") if targets[label] != "-" else ("-",)), row


def _check_sides(rows: dict, names: set[str]) -> None:
    assert set(rows) == names
    for row in rows.values():
        assert _number(row["tokens/s (median)"]) > 0 and 0 < _number(row["min"]) <= _number(row["max"]), row
        assert 0 <= _number(row["padding"]) < 100 and math.isfinite(_number(row["final loss"])), row


def test_loop_benchmark(tmp_path):
    text = _run("loop", tmp_path)
    assert text.startswith("# Training loop: the harness against a hand-written loop")
    assert "`python bench/loop.py --steps 4 --batch-size 4 --repeats 1`" in text
    _check_comparisons(_table(text, "comparison (tokens/s ratio)"), {
        "same batches: harness random / hand loop, plain AdamW": ">= 0.98",
        "same batches: harness random / hand loop, fused AdamW": ">= 0.98",
        "what fusing buys the hand loop: hand fused / hand AdamW": "-",
        "what bucketing buys: harness bucket / hand loop, random batches, plain AdamW": "-",
    })
    sides = _table(text, "side")
    _check_sides(sides, {"harness random", "hand AdamW", "hand fused", "harness bucket"})
    # the same batches: the same padding and (up to the optimizer's arithmetic) the same loss
    assert sides["harness random"]["padding"] == sides["hand AdamW"]["padding"] == sides["hand fused"]["padding"]
    assert abs(_number(sides["harness random"]["final loss"]) - _number(sides["hand AdamW"]["final loss"])) < 1e-3
    assert _number(sides["harness bucket"]["padding"]) < _number(sides["harness random"]["padding"])
    assert "initial values identical" in text and "torch 2" in text and "commit " in text


def test_trainer_benchmark(tmp_path):
    text = _run("trainer", tmp_path)
    assert text.startswith("# Training: the harness against transformers' Trainer")
    assert "`python bench/trainer.py --steps 4 --batch-size 4 --repeats 1`" in text
    _check_comparisons(_table(text, "comparison (tokens/s ratio)"), {
        "harness defaults / Trainer defaults (both random batches)": ">= 1",
        "harness bucket / Trainer group_by_length (both length-grouped)": "-",
        "harness bucket / Trainer defaults (what grouping by length buys)": "-",
    })
    sides = _table(text, "side")
    _check_sides(sides, {"harness", "Trainer", "harness bucket", "Trainer group_by_length"})
    assert "transformers 5" in text and "commit " in text
