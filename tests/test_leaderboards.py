"""Every committed leaderboard is rebuilt from its runs.csv alone, byte for byte.

`python -m harness report SUITE --from-csv runs.csv` must give exactly the committed
`results/<name>/leaderboard.md`: the numbers a reader cites are then a function of the
committed per-run table, and a leaderboard left behind by a change to the report (or
to the suite) fails here instead of going stale unnoticed.  The same round trip is
checked on a tiny suite run here, so the check itself is known to work.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.cli import main
from tests.committed import committed as committed_results

ROOT = Path(__file__).resolve().parents[1]


COMMITTED = committed_results()


def _diff(expected: str, got: str, name: str) -> str:
    lines = difflib.unified_diff(expected.splitlines(keepends=True), got.splitlines(keepends=True),
                                 fromfile=f"{name} (committed)", tofile=f"{name} (rebuilt from runs.csv)", n=1)
    text = "".join(lines)
    return text if len(text) < 12_000 else text[:12_000] + "\n... (diff cut)\n"


@pytest.mark.parametrize("name", list(COMMITTED) or [pytest.param(None, marks=pytest.mark.skip(reason="no committed results"))])
def test_committed_leaderboard_is_rebuilt_from_its_runs_csv(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # the leaderboard names its suite file relative to the repository
    suite, csv = COMMITTED[name], f"results/{name}/runs.csv"
    assert main(["report", suite, "--from-csv", csv, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    committed = (ROOT / "results" / name / "leaderboard.md").read_text(encoding="utf-8")
    rebuilt = (tmp_path / "leaderboard.md").read_text(encoding="utf-8")
    assert rebuilt == committed, (
        f"results/{name}/leaderboard.md is stale: regenerate with "
        f"`python -m harness report {suite} --from-csv {csv}` "
        f"(or rerun the suite: `python -m harness run {suite}`)\n" + _diff(committed, rebuilt, name))


# --------------------------------------------------------------------------- the round trip on a run made here

TINY = {
    "schema_version": 1,
    "name": "tiny-rebuild",
    "model": {"tiny": {"architecture": "bert", "hidden_size": 32, "layers": 2, "heads": 2}},
    "task_type": "seq_cls",
    "tasks": [{"name": "sent", "data": {"synthetic": "sentiment", "n_train": 64, "n_validation": 16, "n_test": 24}}],
    "grid": [
        {"method": "full", "quant": ["none", "nf4"], "training": {"lr": 1e-3}},  # nf4: n/a for full
        {"method": "lora", "rank": [2, 4]},
        {"method": "lora", "rank": 4, "settings": {"targets": ["no_such_layer"]}},  # fails on every seed
    ],
    "training": {"steps": 3, "batch_size": 8, "lr": 1e-2, "warmup_steps": 1, "max_length": 32, "seeds": [0, 1],
                 "log_every": 3},
    "probe": {"builtin": "general", "n_texts": 4, "max_length": 32},
}


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    """A real run of a tiny suite (in-process) into a temporary MLflow store: (folder, suite path, results dir)."""
    tmp = tmp_path_factory.mktemp("rebuild")
    suite = tmp / "tiny-rebuild.yaml"
    suite.write_text(yaml.safe_dump(TINY))
    here = os.getcwd()
    os.chdir(tmp)  # as the rebuilds below: the leaderboard names its suite file relative to the working directory
    try:
        code = main(["run", str(suite), "--tracking-uri", f"sqlite:///{tmp}/mlflow.db", "--results", str(tmp / "results"),
                     "--in-process"])
    finally:
        os.chdir(here)
    assert code == 1  # the no_such_layer cells fail; the others ran
    return tmp, suite, tmp / "results" / "tiny-rebuild"


@pytest.mark.slow
def test_a_report_from_mlflow_is_the_same_leaderboard(tiny_results, tmp_path, monkeypatch, capsys):
    tmp, suite, results = tiny_results
    monkeypatch.chdir(tmp)
    assert main(["report", str(suite), "--tracking-uri", f"sqlite:///{tmp}/mlflow.db", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert (tmp_path / "runs.csv").read_bytes() == (results / "runs.csv").read_bytes()
    assert (tmp_path / "leaderboard.md").read_text() == (results / "leaderboard.md").read_text()



@pytest.mark.slow
def test_a_fresh_leaderboard_is_rebuilt_byte_for_byte_from_its_runs_csv(tiny_results, tmp_path, monkeypatch, capsys):
    tmp, suite, results = tiny_results
    monkeypatch.chdir(tmp)
    assert main(["report", str(suite), "--from-csv", str(results / "runs.csv"), "--out", str(tmp_path)]) == 0
    assert "stale" not in capsys.readouterr().err
    original = (results / "leaderboard.md").read_text(encoding="utf-8")
    rebuilt = (tmp_path / "leaderboard.md").read_text(encoding="utf-8")
    assert rebuilt == original, _diff(original, rebuilt, "tiny-rebuild")
    assert (tmp_path / "runs.csv").read_bytes() == (results / "runs.csv").read_bytes()  # the folder is whole
    assert {p.name for p in (tmp_path / "plots").glob("*.png")} == {"sent-pareto.png", "sent-rank.png"}
    # what the leaderboard is made of really is in runs.csv: every run, its outcomes, `chosen`
    runs = pd.read_csv(results / "runs.csv")
    assert len(runs) == 10 and runs["chosen"].all()  # 3 configurations run x 2 seeds, 2 n/a, 2 failed; 1 trial each
    finished = runs[runs["status"] == "FINISHED"]
    assert len(finished) == 6 and finished["test_outcomes"].str.fullmatch(r"24:[0-9a-f]{6}").all()
    assert {"lr", "head_lr", "representation_drift", "slot", "search_from", "start_time"} <= set(runs.columns)
    # every run, the failed ones too, says what its precision resolved to; every run logged its data's overlap
    ran = runs[runs["status"].isin(["FINISHED", "FAILED"])]
    assert len(ran) == 8 and ran["precision"].nunique() == 1 and ran["precision"].iloc[0] in ("fp32", "bf16")
    assert (ran["data.dup_train_validation"] == 0).all() and (ran["data.dup_train_test"] == 0).all()
    board = original
    assert "best (by val)" in board and "| seeds ok |" in board and "report generated" not in board
    assert "seeds and test examples" in board


@pytest.mark.slow
def test_a_rebuild_from_another_suite_says_the_leaderboard_is_stale(tiny_results, tmp_path, monkeypatch, capsys):
    tmp, _, results = tiny_results
    monkeypatch.chdir(tmp)
    changed = tmp_path / "tiny-rebuild.yaml"
    changed.write_text(yaml.safe_dump(dict(TINY, training=dict(TINY["training"], steps=4))))  # every cell id changes
    assert main(["report", str(changed), "--from-csv", str(results / "runs.csv"), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "does not match" in err and "belong to no cell of the suite" in err
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "**Stale: runs.csv does not match the suite.**" in board
    assert "10 row(s) of runs.csv belong to no cell of the suite" in board
    assert "_No finished runs for this task yet._" in board  # nothing of the old runs is passed off as the new suite's


def test_a_missing_csv_is_a_usage_error(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(TINY))
    assert main(["report", str(suite), "--from-csv", str(tmp_path / "nope.csv"), "--out", str(tmp_path)]) == 2
    assert "--from-csv" in capsys.readouterr().err
    assert main(["report", str(suite), "--from-csv", str(suite), "--margin", "-1", "--out", str(tmp_path)]) == 2
    assert "--margin" in capsys.readouterr().err
