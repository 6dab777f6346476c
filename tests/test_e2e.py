"""End to end: a tiny suite through the CLI into a temporary MLflow store, then `report`.

Assertions are on what a user sees: the exit code, the leaderboard's rows and numbers,
the per-run CSV, and the MLflow runs (one FINISHED child per cell, every metric).
"""
from __future__ import annotations

import re

import pandas as pd
import pytest
import yaml

from harness.cli import main
from harness.track import METRIC_NAMES

pytestmark = pytest.mark.slow

SUITE = {
    "schema_version": 1,
    "name": "tiny-e2e",
    "description": "tiny random BERT on synthetic sentiment",
    "model": {"tiny": {"architecture": "bert", "hidden_size": 32, "layers": 2, "heads": 2}},
    "task_type": "seq_cls",
    "tasks": [{"name": "sent", "data": {"synthetic": "sentiment", "n_train": 64, "n_validation": 16, "n_test": 24}}],
    "grid": [
        {"method": "full", "quant": ["none", "nf4"], "training": {"lr": 1e-3}},
        {"method": "lora", "rank": [2, 4]},
        {"method": "lora", "rank": 2, "quant": "int8"},
        {"method": "lora", "rank": 4, "settings": {"targets": ["no_such_layer"]}, "quant": "nf4"},
    ],
    "training": {"steps": 4, "batch_size": 8, "lr": 1e-2, "warmup_steps": 1, "max_length": 32, "seeds": [0, 1], "log_every": 2},
    "probe": {"builtin": "general", "n_texts": 8, "max_length": 32},
}


def _table_rows(markdown: str, header: str = "test ") -> list[list[str]]:
    """The first markdown table with a column starting with `header` (default: the task's quality table)."""
    from tests.test_report import table_rows

    return table_rows(markdown, header)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    suite = tmp / "tiny.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    uri = f"sqlite:///{tmp}/mlflow.db"
    code = main(["run", str(suite), "--tracking-uri", uri, "--results", str(tmp / "results")])
    return tmp, suite, uri, code


def test_run_exit_code_reports_the_failed_cell(finished_run):
    *_, code = finished_run
    assert code == 1  # one cell was built to fail; the others still ran


def test_mlflow_has_one_finished_child_per_cell_with_every_metric(finished_run):
    from mlflow.tracking import MlflowClient

    tmp, _, uri, _ = finished_run
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny-e2e")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "invocation"]
    children = [r for r in runs if r.data.tags.get("kind") == "cell"]
    assert len(parents) == 1 and parents[0].info.status == "FAILED"  # a cell failed, so the invocation did
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    finished = [c for c in children if c.info.status == "FINISHED"]
    failed = [c for c in children if c.info.status == "FAILED"]
    assert len(finished) == 8  # (full + lora r2 + lora r4 + lora r2 int8) x 2 seeds
    assert len(failed) == 2 and all("no_such_layer" in c.data.tags["error"] for c in failed)
    for c in finished:
        assert set(METRIC_NAMES) <= set(c.data.metrics), c.data.tags["mlflow.runName"]
        assert c.data.tags["memory_kind"] == "train_state" and c.data.tags["metric"] == "accuracy"
        assert {"method", "rank", "quant", "task", "seed", "lr", "steps"} <= set(c.data.params)
        assert c.data.metrics["peak_memory_mb"] > 10 and c.data.metrics["tokens_per_s"] > 0
        assert 0 < c.data.metrics["train_state_mb"] < 1  # a model of ~43k parameters, exactly counted
    lora = [c for c in finished if c.data.params["method"] == "lora"]
    assert all(client.list_artifacts(c.info.run_id, "adapter") for c in lora)
    for c in children:
        assert "suite.resolved.json" in {a.path for a in client.list_artifacts(c.info.run_id)}
    parent_files = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"suite.yaml", "suite.resolved.json", "report"} <= parent_files
    report_files = {a.path for a in client.list_artifacts(parents[0].info.run_id, "report")}
    assert {"report/leaderboard.md", "report/runs.csv", "report/plots"} <= report_files
    plots = {a.path for a in client.list_artifacts(parents[0].info.run_id, "report/plots")}
    assert plots == {"report/plots/sent-pareto.png", "report/plots/sent-rank.png"}
    for c in finished:
        m = c.data.metrics
        assert m["latency_ms"] > 0 and m["latency_overhead_low"] <= m["latency_overhead"] <= m["latency_overhead_high"]
        assert m["adapter_load_ms"] > 0 and m["adapter_switch_ms"] > 0 and m["eval_peak_memory_mb"] > 10
        assert re.fullmatch(r"[0-9a-f]{16}", c.data.tags["model_fingerprint"])
        assert c.data.tags["precision"] == "fp32" and c.data.tags["attention"] == "sdpa"
        assert c.data.params["batching"] == "random" and c.data.params["compile"] == "False"
        phases = m["load_time_s"] + m["train_time_s"] + m["eval_time_s"] + m["measure_time_s"]
        assert min(m["load_time_s"], m["eval_time_s"], m["measure_time_s"]) > 0
        assert phases < (c.info.end_time - c.info.start_time) / 1000  # the phases lie inside the run
        if c.data.params["method"] == "lora":
            assert m["latency_overhead_merged"] > 0  # lora merges; full fine-tuning has nothing to merge
        else:
            assert "latency_merged_ms" not in m and c.data.tags["merge"] == "full cannot merge"
    by_rank = {c.data.params["rank"]: c.data.metrics["trainable_params"] for c in lora if c.data.params["quant"] == "none"}
    # 2 layers x (query, value) x r x (32 + 32), plus the head: the 32x2+2 classifier and the 32x32+32 pooler
    assert by_rank == {"2": 2 * 2 * 2 * 64 + 66 + 1056, "4": 2 * 2 * 4 * 64 + 66 + 1056}
    # trainable_frac: over the base before the method, which full fine-tuning trains whole
    (base,) = {c.data.metrics["trainable_params"] for c in finished if c.data.params["method"] == "full"}
    for c in finished:
        assert c.data.metrics["trainable_frac"] == pytest.approx(c.data.metrics["trainable_params"] / base)


def test_leaderboard_rows_and_numbers(finished_run):
    tmp, _, _, _ = finished_run
    board = (tmp / "results" / "tiny-e2e" / "leaderboard.md").read_text()
    rows = _table_rows(board)
    header, body = rows[0], rows[1:]
    col = {name: i for i, name in enumerate(header)}
    labels = {(r[col["method"]], r[col["rank"]], r[col["quant"]]) for r in body}
    assert labels == {("full", "-", "none"), ("lora", "2", "none"), ("lora", "4", "none"), ("lora", "2", "int8")}
    assert all(r[col["seeds ok"]] == "2/2" for r in body)
    assert "train state (MB) ↓ †" in col and "† memory is `train_state`" in board  # CPU: the exact training state
    assert "n/a" in board and "full does not support quant nf4" in board
    assert "no_such_layer" in board  # the failed cell's reason
    assert "![sent: score vs peak memory" in board and "(plots/sent-pareto.png)" in board and "(plots/sent-rank.png)" in board
    assert (tmp / "results" / "tiny-e2e" / "plots" / "sent-pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    footer = board.split("## Provenance")[1]
    assert re.search(r"- model: `tiny[^`]*`, fingerprint `[0-9a-f]{16}`", footer)
    assert re.search(r"- data fingerprints: sent `[0-9a-f]{16}`", footer) and "git commit:" in footer
    inference = _table_rows(board, "latency")
    assert len(inference) == 5 and inference[0][3] == "latency (ms/sample) ↓"
    overall = _table_rows(board, "mean tier")
    assert len(overall) == 5 and all(r[4] == "1/1" and r[3] == f"{float(r[5]):.2f}" for r in overall[1:])  # one task

    runs = pd.read_csv(tmp / "results" / "tiny-e2e" / "runs.csv")
    assert len(runs) == 12 and (runs["status"] == "FINISHED").sum() == 8
    score_col = next(c for c in header if c.startswith("test"))
    for r in body:
        method, rank, quant = r[col["method"]], r[col["rank"]], r[col["quant"]]
        sel = runs[(runs.method == method) & (runs["quant"] == quant) & (runs.status == "FINISHED")]
        sel = sel[sel["rank"].isna()] if rank == "-" else sel[sel["rank"] == float(rank)]
        assert len(sel) == 2
        shown = float(re.sub(r"[*]", "", r[col[score_col]]))
        assert shown == pytest.approx(sel["test_score"].mean(), abs=1e-3)


def test_report_rebuilds_the_same_tables(finished_run, capsys):
    tmp, suite, uri, _ = finished_run
    path = tmp / "results" / "tiny-e2e" / "leaderboard.md"
    first = path.read_text()
    path.unlink()
    assert main(["report", str(suite), "--tracking-uri", uri, "--results", str(tmp / "results")]) == 0
    assert _table_rows(path.read_text()) == _table_rows(first)
    assert "tiny-e2e leaderboard" in capsys.readouterr().out


def test_report_compare_names_a_regression(finished_run, capsys, tmp_path):
    tmp, suite, uri, _ = finished_run
    current = pd.read_csv(tmp / "results" / "tiny-e2e" / "runs.csv")
    args = ["report", str(suite), "--tracking-uri", uri, "--results", str(tmp / "results")]
    same = tmp_path / "same.csv"
    current.to_csv(same, index=False)
    assert main(args + ["--compare", str(same), "--tolerance", "5%"]) == 0
    assert "no regression" in capsys.readouterr().out

    better = current.copy()  # a reference where lora r4 scored 0.2 higher: today's numbers are a regression
    r4 = (better["method"] == "lora") & (better["rank"] == 4) & (better["quant"] == "none")
    better.loc[r4, "test_score"] = better.loc[r4, "test_score"] + 0.2
    ref = tmp_path / "ref.csv"
    better.to_csv(ref, index=False)
    assert main(args + ["--compare", str(ref), "--tolerance", "5%"]) == 1
    out = capsys.readouterr()
    regressions = [ln for ln in out.out.splitlines() if "REGRESSION" in ln]
    assert len(regressions) == 1 and "sent lora r4: test_score" in regressions[0] and "worse by more than 5%" in regressions[0]
    assert "1 regression(s)" in out.err
    assert main(args + ["--compare", str(ref), "--tolerance", "0.5"]) == 0  # an absolute tolerance that forgives it
    assert main(args + ["--compare", str(ref), "--tolerance", "five"]) == 2
    assert "--tolerance" in capsys.readouterr().err
    assert main(args + ["--compare", str(tmp_path / "missing.csv")]) == 2


def test_causal_lm_suite_in_process(tmp_path):
    suite = dict(SUITE, name="tiny-causal", task_type="causal_lm",
                 model={"tiny": {"architecture": "llama", "hidden_size": 32, "layers": 2, "heads": 2}},
                 tasks=[{"name": "copy", "data": {"synthetic": "copy_word", "n_train": 32, "n_validation": 8, "n_test": 8}}],
                 grid=[{"method": "lora", "rank": 2, "quant": ["none", "nf4"]}],
                 training=dict(SUITE["training"], seeds=[0], max_new_tokens=4))
    path = tmp_path / "causal.yaml"
    path.write_text(yaml.safe_dump(suite))
    code = main(["run", str(path), "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--results", str(tmp_path / "r"), "--in-process"])
    assert code == 0
    runs = pd.read_csv(tmp_path / "r" / "tiny-causal" / "runs.csv")
    assert list(runs["status"]) == ["FINISHED", "FINISHED"]
    assert runs["forgetting"].notna().all() and (runs["test_score"].between(0, 1)).all()
