"""The cost benchmarks (bench/trial_cost.py, bench/suite_scaling.py) run end to end with
--quick: exit 0, the table printed and written to --out, every expected row, and numbers
that add up (the parts of a command sum to its wall time, the phases of a trial to at
most its span, the fit goes through the rows).  No timing is asserted: on a shared
machine the times are whatever they are.  The renderers and the suites are also checked
without running anything (fast)."""
from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import suite_scaling  # noqa: E402
import trial_cost  # noqa: E402


def _run(script: str, tmp_path: Path, *args: str) -> str:
    out = tmp_path / "sub" / f"{script}.md"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / f"{script}.py"), "--quick", *args, "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert text in proc.stdout  # the same text printed and written
    return text


def _table(text: str, first_header: str) -> tuple[list[str], dict[str, list[str]]]:
    """The markdown table whose first column header is `first_header`: (headers, {first cell: cells})."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    headers = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(headers), line
        rows[cells[0]] = cells
    return headers, rows


def _num(cell: str) -> float | None:
    return float(cell) if cell else None


# --------------------------------------------------------------------------- trial_cost.py

COST_ROWS = {  # label prefix -> per
    "interpreter start": "command", "worker start-up": "command", "**trial span**": "trial",
    "- model + data load": "trial", "- training": "trial", "- of which per step": "trial", "- of which fixed": "trial",
    "- evaluation": "trial", "- measurements": "trial", "- MLflow/Optuna bookkeeping": "trial",
    "- claim -> MLflow run created": "trial", "- in the run, outside the phases": "trial",
    "- MLflow run ended -> told Optuna": "trial", "report writing after the last trial": "command",
    "**wall**": "command", "CPU used by the command's processes": "command",
    "CPU used by other processes meanwhile": "command", "training throughput (tokens/s)": "trial",
}


def _check_cost_table(text: str, steps: tuple[int, int], seeds: int) -> None:
    headers, rows = _table(text, "part")
    cols = headers[2:-1]
    assert len(cols) == 2 * seeds
    by_prefix = {}
    for prefix, per in COST_ROWS.items():
        [label] = [k for k in rows if k.startswith(prefix)]
        assert rows[label][1] == per, rows[label]
        by_prefix[prefix] = [_num(c) for c in rows[label][2:-1]]
    if seeds > 1:
        [label] = [k for k in rows if k.startswith("between trials")]
        by_prefix["between"] = [_num(c) for c in rows[label][2:-1]]
    v = by_prefix
    phases = ("- model + data load", "- training", "- evaluation", "- measurements")
    for j in range(len(cols)):
        span = v["**trial span**"][j]
        assert span > 0 and all(v[p][j] >= 0 for p in phases)
        assert sum(v[p][j] for p in phases) <= span + 0.03  # the phases fit in the trial (up to rounding)
        assert math.isclose(sum(v[p][j] for p in phases) + v["- MLflow/Optuna bookkeeping"][j], span, abs_tol=0.04)
        parts = ("- claim -> MLflow run created", "- in the run, outside the phases", "- MLflow run ended -> told Optuna")
        assert math.isclose(sum(v[p][j] for p in parts), v["- MLflow/Optuna bookkeeping"][j], abs_tol=0.03)
        assert math.isclose(v["- of which per step"][j] + v["- of which fixed"][j], v["- training"][j], abs_tol=0.02)
        assert v["training throughput (tokens/s)"][j] > 0
    for c in range(2):  # per command: set-up + worker start-up + trials + gaps + report = wall
        first = c * seeds
        trials = sum(v["**trial span**"][first:first + seeds])
        gaps = sum(v["between"][first + 1:first + seeds]) if seeds > 1 else 0.0
        command = [v[p][first] for p in ("interpreter start", "worker start-up", "report writing after the last trial")]
        assert all(x >= 0 for x in command) and all(v["**wall**"][first + k] is None for k in range(1, seeds))
        assert v["CPU used by the command's processes"][first] > 0 <= v["CPU used by other processes meanwhile"][first]
        assert math.isclose(sum(command) + trials + gaps, v["**wall**"][first], abs_tol=0.02 * (4 + 2 * seeds))
    m = re.search(r"\*\*A trial costs (-?[\d.]+) s fixed \+ (-?[\d.]+) s per step on this machine: with 100 steps "
                  r"the fixed part is (-?\d+)%\*\*", text)
    assert m, text
    assert f"at {steps[0]} and {steps[1]} steps" in text
    for command in ("python -c pass", 'python -c "import harness.cli"', "python -m harness --help"):
        assert re.search(rf"`{re.escape(command)}` \d+\.\d\d", text), command
    assert "Every run exited 0 and completed each cell exactly once" in text and "commit " in text


@pytest.mark.slow
def test_trial_cost_quick(tmp_path):
    text = _run("trial_cost", tmp_path)
    assert text.startswith("# The cost of one trial")
    assert "`python bench/trial_cost.py --quick --steps 2,6 --seeds 1`" in text
    _check_cost_table(text, (2, 6), seeds=1)


def _trial(t0: float, load: float, train: float, evaluate: float, measure: float) -> trial_cost.Trial:
    metrics = {"load_time_s": load, "train_time_s": train, "eval_time_s": evaluate, "measure_time_s": measure,
               "tokens_per_s": 1000.0}
    span = load + train + evaluate + measure + 0.5
    return trial_cost.Trial("slot", t0, t0 + span, t0 + 0.1, t0 + span - 0.05, metrics)


def test_trial_cost_render_two_seeds():
    """The table for two trials per command adds up too (the default run, not run in the tests)."""
    cmds = []
    for k, steps in enumerate((10, 60)):
        t0 = 1000.0 * k
        first = _trial(t0 + 10, 1.0, 0.2 * steps + 1, 2.0, 6.0)
        later = _trial(first.end + 0.3, 0.1, 0.2 * steps, 2.0, 5.5)
        cmds.append(trial_cost.Command(f"{steps} steps", [], Path("."), t0, later.end + 4 - t0, t0 + 6, 1,
                                       [first, later], own_cpu_s=50.0, other_cpu_s=1.0))
    f = trial_cost.fit(cmds, [10, 60], 100)
    assert math.isclose(f.per_step_s, 0.2) and f.fixed_s > 0
    text = trial_cost.render(cmds, [10, 60], f, {"python -c pass": 0.03, 'python -c "import harness.cli"': 0.1,
                                                 "python -m harness --help": 0.1}, "cmd", "Machine: commit x", 2)
    _check_cost_table(text, (10, 60), seeds=2)
    assert "The first trial of a worker took +" in text and "noise" not in text


# --------------------------------------------------------------------------- suite_scaling.py


def _check_scaling_table(text: str, expected: dict[str, int]) -> None:
    headers, rows = _table(text, "suite")
    assert set(rows) == set(expected)
    h = {name: i for i, name in enumerate(headers)}
    m = re.search(r"\*\*wall = (-?[\d.]+) s \+ (-?[\d.]+) s x trials\*\*", text)
    assert m, text
    a, b = float(m.group(1)), float(m.group(2))
    for name, trials in expected.items():
        r = rows[name]
        num = lambda col: float(r[h[col]])  # noqa: E731
        assert int(r[h["cells"]]) == int(r[h["trials"]]) == trials
        wall, spans = num("wall (s)"), num("trial spans (s)")
        assert 0 < spans < wall
        assert math.isclose(num("s per trial"), wall / trials, abs_tol=0.06)
        assert math.isclose(num("mean trial span (s)"), spans / trials, abs_tol=0.06)
        assert math.isclose(num("outside trials (s)"), wall - spans, abs_tol=0.11)
        assert math.isclose(num("fitted a + b x trials (s)"), a + b * trials, abs_tol=0.06 + 0.05 * trials)
        assert math.isclose(num("measured / fitted"), wall / num("fitted a + b x trials (s)"), abs_tol=0.011)
    assert "Every run exited 0 and completed each cell exactly once" in text and "commit " in text


@pytest.mark.slow
def test_suite_scaling_quick(tmp_path):
    text = _run("suite_scaling", tmp_path)
    assert text.startswith("# Suite cost against its number of cells")
    assert "`python bench/suite_scaling.py --quick --cells 1,3 --no-quickstart`" in text
    _check_scaling_table(text, {"1 cell": 1, "3 cells": 3})
    headers, rows = _table(text, "configuration")
    assert {k: int(r[1]) for k, r in rows.items()} == {"sentiment/lora r4": 2, "sentiment/lora r16": 1, "sentiment/full": 1}
    for r in rows.values():
        mean, lo, hi, *parts = (float(c) for c in r[2:])
        assert 0 < lo <= mean <= hi and all(p >= 0 for p in parts) and sum(parts) <= mean + 0.3, r


def test_suite_scaling_grids(tmp_path):
    """Each generated suite expands to the cells it names (in process: the script asks `harness validate`)."""
    from harness.cli import validate_suite

    expected = {1: {("lora", 4, "none")}, 2: {("lora", 4, "none"), ("lora", 16, "none")},
                3: {("lora", 4, "none"), ("lora", 16, "none"), ("full", None, "none")},
                6: {("lora", 4, "none"), ("lora", 16, "none"), ("full", None, "none"), ("lora", 1, "none"),
                    ("lora", 8, "int8"), ("lora", 8, "nf4")}}
    for quick in (False, True):
        for n, configs in expected.items():
            path = tmp_path / f"suite-{n}-{quick}.yaml"
            path.write_text(yaml.safe_dump(suite_scaling.make_suite(n, quick), sort_keys=False))
            _, cells = validate_suite(str(path))
            runnable = {(c.method, c.rank, c.quant) for c in cells if c.runnable}
            assert runnable == configs and {c.seed for c in cells} == {0}, (n, quick)
            assert [(c.method, c.quant) for c in cells if not c.runnable] == ([("full", "nf4")] if n >= 3 else [])


def test_least_squares():
    a, b = suite_scaling.least_squares([1, 2, 3, 6, 18], [30 + 25 * x for x in (1, 2, 3, 6, 18)])
    assert math.isclose(a, 30) and math.isclose(b, 25)
