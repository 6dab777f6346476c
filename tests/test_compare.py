"""`report --compare`: the regression check between two runs.csv files."""
from __future__ import annotations

import pandas as pd
import pytest

from harness.compare import Tolerance, compare_runs, parse_tolerance


def _csv(path, rows):
    cols = ["task", "config", "method", "rank", "quant", "seed", "status", "test_score", "peak_memory_mb"]
    pd.DataFrame(rows, columns=cols).to_csv(path, index=False)
    return path


def test_parse_tolerance():
    assert parse_tolerance("5%") == Tolerance(0.05, True) and str(parse_tolerance("5%")) == "5%"
    assert parse_tolerance(" 0.02 ") == Tolerance(0.02, False)
    for bad in ("five", "-1%", "nan", ""):
        with pytest.raises(ValueError, match="--tolerance"):
            parse_tolerance(bad)


def test_worse_beyond_tolerance_missing_and_direction(tmp_path):
    ref = _csv(tmp_path / "ref.csv", [
        ("sent", "lora r4", "lora", 4, "none", 0, "FINISHED", 0.90, 700), ("sent", "lora r4", "lora", 4, "none", 1, "FINISHED", 0.92, 700),
        ("sent", "full", "full", None, "none", 0, "FINISHED", 0.80, 1000),
        ("sent", "lora r8", "lora", 8, "none", 0, "FINISHED", 0.85, 720),
        ("topic", "lora r4", "lora", 4, "none", 0, "FINISHED", 0.50, 700),
    ])
    new = _csv(tmp_path / "new.csv", [
        ("sent", "lora r4", "lora", 4, "none", 0, "FINISHED", 0.88, 700), ("sent", "lora r4", "lora", 4, "none", 1, "FAILED", None, None),
        ("sent", "full", "full", None, "none", 0, "FINISHED", 0.70, 1200),  # -12.5%: a regression
        ("sent", "lora r8", "lora", 8, "none", 0, "FAILED", None, None),  # finished before, not now
        ("topic", "lora r4", "lora", 4, "none", 0, "FINISHED", 0.49, 690),  # lower is better on topic: an improvement
        ("sent", "lora r16", "lora", 16, "none", 0, "FINISHED", 0.95, 800),  # new
    ])
    result = compare_runs(new, ref, parse_tolerance("5%"), ("test_score", "peak_memory_mb"), {"sent": True, "topic": False})
    assert sorted(result.regressions) == [
        "sent full: peak_memory_mb 1000 -> 1200 (+20.0%), worse by more than 5%",
        "sent full: test_score 0.8 -> 0.7 (-12.5%), worse by more than 5%",
        "sent lora r8: finished in the reference, no finished seed now",
    ]
    # lora r4: mean 0.91 -> 0.88 (-3.3%) is within 5%; the failed seed is not averaged in
    assert any(line.startswith("ok  sent lora r4: test_score 0.91 -> 0.88") for line in result.lines)
    assert "new sent lora r16: not in the reference" in result.lines
    lenient = compare_runs(new, ref, Tolerance(0.5, False), ("test_score",), {"sent": True, "topic": False})
    assert lenient.regressions == ["sent lora r8: finished in the reference, no finished seed now"]  # never forgiven


def test_a_reference_without_the_config_column_is_matched_by_method_rank_quant(tmp_path):
    ref = tmp_path / "old.csv"
    pd.DataFrame([{"task": "sent", "method": "lora", "rank": 4.0, "quant": "none", "status": "FINISHED", "test_score": 0.9}]
                 ).to_csv(ref, index=False)
    new = _csv(tmp_path / "new.csv", [("sent", "lora r4", "lora", 4, "none", 0, "FINISHED", 0.5, 700)])
    result = compare_runs(new, ref, parse_tolerance("5%"))
    assert result.regressions == ["sent lora 4: test_score 0.9 -> 0.5 (-44.4%), worse by more than 5%"]
    with pytest.raises(ValueError, match="not a runs.csv"):
        compare_runs(new, _csv_bad(tmp_path), parse_tolerance("5%"))


def _csv_bad(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame([{"x": 1}]).to_csv(path, index=False)
    return path


def test_only_the_chosen_run_of_each_cell_is_compared(tmp_path):
    """A runs.csv holds every trial; the trials that did not stand for their cell must not move the mean."""
    ref = _csv(tmp_path / "ref.csv", [("sent", "lora r4", "lora", 4, "none", 0, "FINISHED", 0.90, 700)])
    cols = ["task", "config", "method", "rank", "quant", "seed", "status", "chosen", "test_score", "peak_memory_mb"]
    new = tmp_path / "new.csv"
    pd.DataFrame([("sent", "lora r4", "lora", 4, "none", 0, "FINISHED", False, 0.10, 700),  # a worse search trial
                  ("sent", "lora r4", "lora", 4, "none", 0, "FINISHED", True, 0.89, 700),
                  ("sent", "lora r8", "lora", 8, "none", 0, "FINISHED", False, 0.95, 700)],  # no chosen run: not finished
                 columns=cols).to_csv(new, index=False)
    result = compare_runs(new, ref, parse_tolerance("5%"))
    assert result.regressions == []
    assert [line for line in result.lines if "lora r4" in line] == ["ok  sent lora r4: test_score 0.9 -> 0.89 (-1.1%)"]
    assert not any("lora r8" in line for line in result.lines)
