"""The report: hand-made MLflow-like runs in, the markdown and CSV a user reads out.

Assertions are on what a reader sees: the row order, the numbers and `n`, the bold
best, the arrows, the reasons under each table and the per-run CSV.
"""
from __future__ import annotations

import dataclasses
import re

import pandas as pd
import pytest

from harness.grid import Cell
from harness.report import METRIC_COLUMNS, build_leaderboard, select_runs, write_report
from harness.suite import SearchParam, SearchSpec, parse_suite

T0 = 1_780_000_000_000  # ms since epoch
ACC = {"accuracy": True, "exact_match": True}


def make_suite(tasks=(("sent", "accuracy"),), seeds=(0, 1)):
    return parse_suite({
        "schema_version": 1, "name": "rep-test", "description": "Report test suite.",
        "model": {"tiny": {"architecture": "bert"}}, "task_type": "seq_cls",
        "tasks": [{"name": n, "data": {"synthetic": "sentiment"}, "metric": m} for n, m in tasks],
        "grid": [{"method": "lora", "rank": [4]}], "training": {"seeds": list(seeds)},
    }, "suite.yaml")


def cell(suite, method, rank, quant="none", seed=0, task="sent", na=None, **training):
    c = Cell(suite=suite.name, task=task, method=method, rank=rank, quant=quant, seed=seed, settings=None,
             training=dataclasses.replace(suite.training, seeds=(seed,), **training), na_reason=na)
    return dataclasses.replace(c, space=suite.search.space, trials=suite.search.trials)


SPACE = (SearchParam("lr", low=1e-5, high=1e-2, log=True), SearchParam("settings.alpha", choices=(8, 16, 32)))


def search_suite(trials=3, seeds=(0, 1), objectives=("score",)):
    """A suite whose cells get `trials` trials each, searching lr and the method's alpha."""
    return dataclasses.replace(make_suite(seeds=seeds),
                               search=SearchSpec(trials=trials, objectives=objectives, space=SPACE))


def trial(c: Cell, run_id: str, k: int, t: int = 0, status: str = "FINISHED", lr=1.2e-3, alpha=16, **values):
    """One trial run of a search: a run with the search tags."""
    outcome = {"FINISHED": "complete", "FAILED": "failed", "KILLED": "killed"}.get(status, "lost")
    return run(c, run_id, t=t, status=status, trial=str(k), slot=f"{c.id}/{k}", outcome=outcome,
               search_values=f'{{"lr": {lr}, "settings.alpha": {alpha}}}') | values


def run(c: Cell, run_id: str, t: int = 0, status: str = "FINISHED", **values):
    row = {"run_id": run_id, "status": status, "start_time": T0 + t * 1000, "cell_id": c.id,
           "task": c.task, "method": c.method, "rank": "-" if c.rank is None else str(c.rank), "quant": c.quant,
           "seed": str(c.seed), "metric": "accuracy", "memory_kind": "cpu_rss", "device": "cpu (2 cores)",
           "git_commit": "abc1234", "version.torch": "2.13.0", "version.transformers": "5.23.0",
           "version.peft": "0.21.0", "version.bitsandbytes": "0.50.0", "suite_fingerprint": "fp", "model": "tiny"}
    if status == "FINISHED":
        row |= {"trainable_params": 1000.0, "trainable_frac": 0.01, "peak_memory_mb": 512.4, "tokens_per_s": 3000.4,
                "train_time_s": 10.0, "val_score": 0.5, "test_score": 0.5, "forgetting": 0.1, "adapter_bytes": 20_000.0}
    return row | values


def tables(markdown: str) -> list[list[list[str]]]:
    """Every markdown table in order, as rows of cells (header first, the --- line dropped)."""
    out, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            if not set(line) <= set("|-: "):
                current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            out.append(current)
            current = []
    return out


def table_rows(markdown: str, header: str = "test ") -> list[list[str]]:
    """The first table with a column starting with `header`: by default a task's quality table."""
    return next(t for t in tables(markdown) if any(h.startswith(header) for h in t[0]))


def table(markdown: str, header: str = "test ") -> list[dict[str, str]]:
    rows = table_rows(markdown, header)
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def score_col(row: dict) -> str:
    return next(k for k in row if k.startswith("test "))


@pytest.fixture
def suite():
    return make_suite()


@pytest.fixture
def three_configs(suite):
    """full (mean 0.75), lora r4 (mean 0.90), lora r8 (0.80 on one seed, the other failed)."""
    full = [cell(suite, "full", None, seed=s) for s in (0, 1)]
    r4 = [cell(suite, "lora", 4, seed=s) for s in (0, 1)]
    r8 = [cell(suite, "lora", 8, seed=s) for s in (0, 1)]
    cells = full + r4 + r8
    runs = pd.DataFrame([
        run(full[0], "f0", test_score=0.70, val_score=0.71), run(full[1], "f1", test_score=0.80, val_score=0.79),
        run(r4[0], "a0", test_score=0.88, trainable_params=2000.0), run(r4[1], "a1", test_score=0.92, trainable_params=2000.0),
        run(r8[0], "b0", test_score=0.80),
        run(r8[1], "b1", status="FAILED", error="RuntimeError: CUDA out of memory\n  Traceback line"),
    ])
    return cells, runs


def test_rows_best_first_with_seed_mean_n_and_bold(suite, three_configs):
    cells, runs = three_configs
    rows = table(build_leaderboard(suite, cells, runs, ACC))
    col = score_col(rows[0])
    assert [(r["method"], r["rank"], r["quant"]) for r in rows] == [("lora", "4", "none"), ("lora", "8", "none"),
                                                                    ("full", "-", "none")]
    # full (0.70, 0.80) cannot be told from lora r4 (0.88, 0.92) with two seeds each: bold too
    assert [r[col] for r in rows] == ["**0.900**", "0.800", "**0.750**"]
    assert [r["vs best"] for r in rows][:2] == ["best", "–"]  # one seed: not testable
    assert rows[2]["vs best"].startswith("≈ (p=")
    assert [r["n"] for r in rows] == ["2", "1", "2"]  # the failed seed of r8 is not averaged in
    assert rows[2]["val accuracy"] == "0.750"
    assert rows[1]["± 95% CI"] == "–"
    assert rows[0]["trainable params"] == "2,000"


def test_interval_and_significance_match_scipy(suite):
    from scipy import stats as sps

    best_scores, close_scores, far_scores = (0.90, 0.91, 0.92), (0.89, 0.905, 0.915), (0.70, 0.71, 0.72)
    cells, rows = [], []
    for name, rank, scores in (("lora", 4, best_scores), ("lora", 8, close_scores), ("lora", 16, far_scores)):
        for seed, score in enumerate(scores):
            c = cell(suite, name, rank, seed=seed)
            cells.append(c)
            rows.append(run(c, f"{rank}-{seed}", test_score=score))
    board = build_leaderboard(make_suite(seeds=(0, 1, 2)), cells, pd.DataFrame(rows), ACC)
    by_rank = {r["rank"]: r for r in table(board)}
    low, high = sps.t.interval(0.95, 2, loc=sum(best_scores) / 3, scale=sps.sem(best_scores))
    assert by_rank["4"]["± 95% CI"] == f"{(high - low) / 2:.3f}"
    p_close = sps.ttest_ind(best_scores, close_scores, equal_var=False).pvalue
    p_far = sps.ttest_ind(best_scores, far_scores, equal_var=False).pvalue
    assert p_close >= 0.05 > p_far
    assert by_rank["8"]["vs best"] == f"≈ (p={p_close:.2g})" and by_rank["8"]["test accuracy ↑"].startswith("**")
    assert by_rank["16"]["vs best"].startswith("worse (p=") and not by_rank["16"]["test accuracy ↑"].startswith("**")
    assert "Welch's two-sided t-test" in board and "95% Student-t interval" in board


def test_one_seed_gives_plain_numbers_and_says_so():
    suite = make_suite(seeds=(0,))
    a, b = cell(suite, "lora", 4), cell(suite, "lora", 8)
    board = build_leaderboard(suite, [a, b], pd.DataFrame([run(a, "a", test_score=0.9), run(b, "b", test_score=0.8)]), ACC)
    header = table_rows(board)[0]
    assert "± 95% CI" not in header and "vs best" not in header
    assert "One seed per row: plain numbers, without an interval or a significance test" in board


def test_overall_table_is_the_mean_rank_over_tasks():
    suite = make_suite(tasks=(("sent", "accuracy"), ("topic", "accuracy")), seeds=(0,))
    cells, rows = [], []
    scores = {("sent", 4): 0.9, ("sent", 8): 0.8, ("sent", 16): 0.8, ("topic", 4): 0.5, ("topic", 8): 0.7}
    for (task, rank), score in scores.items():
        c = cell(suite, "lora", rank, task=task)
        cells.append(c)
        rows.append(run(c, f"{task}{rank}", test_score=score))
    cells.append(cell(suite, "lora", 16, task="topic"))  # not run on topic
    overall = table(build_leaderboard(suite, cells, pd.DataFrame(rows), ACC), header="mean rank")
    assert [(r["rank"], r["mean rank ↓"], r["tasks"], r["sent (rank)"], r["topic (rank)"]) for r in overall] == [
        ("4", "1.50", "2/2", "1.0", "2.0"), ("8", "1.75", "2/2", "2.5", "1.0"), ("16", "2.50", "1/2", "2.5", "–")]


def test_headers_carry_units_and_arrows(suite, three_configs):
    cells, runs = three_configs
    header = table_rows(build_leaderboard(suite, cells, runs, ACC))[0]
    for name in ("method", "rank", "quant", "test accuracy ↑", "val accuracy", "forgetting ↓", "trainable % ↓",
                 "trainable params", "tokens/s ↑", "train time (s)", "adapter size (MB) ↓", "n"):
        assert name in header
    assert any(h.startswith("peak memory (MB) ↓") for h in header)


def test_lower_is_better_flips_order_arrow_and_bold(suite, three_configs):
    cells, runs = three_configs
    board = build_leaderboard(suite, cells, runs, {"accuracy": False})
    rows = table(board)
    assert "test accuracy ↓" in rows[0]
    assert [(r["method"], r["rank"]) for r in rows] == [("full", "-"), ("lora", "8"), ("lora", "4")]
    assert rows[0]["test accuracy ↓"] == "**0.750**" and rows[0]["vs best"] == "best"


def test_unknown_metric_direction_is_said(suite, three_configs):
    cells, runs = three_configs
    board = build_leaderboard(suite, cells, runs, {})
    assert "direction of `accuracy` is unknown" in board
    assert table(board)[0]["method"] == "lora"


def test_not_comparable_lists_na_failed_and_not_run(suite, three_configs):
    cells, runs = three_configs
    na = [cell(suite, "full", None, "nf4", seed=s, na="full does not support quant nf4") for s in (0, 1)]
    never = [cell(suite, "lora", 16, seed=s) for s in (0, 1)]
    long = "ValueError: " + "x" * 500 + "\nsecond line"
    broken = [cell(suite, "lora", 4, "int8", seed=s) for s in (0, 1)]
    runs = pd.concat([runs, pd.DataFrame([run(broken[0], "k0", status="FAILED", error=long),
                                          run(broken[1], "k1", status="KILLED")])])
    board = build_leaderboard(suite, cells + na + never + broken, runs, ACC)
    notes = board.split("**Not comparable**")[1].split("## Provenance")[0]
    assert "`full`, quant nf4: n/a — full does not support quant nf4" in notes
    assert notes.count("full does not support quant nf4") == 1  # one line per config, not per seed
    assert "`lora` rank 8, quant none: failed (seed 1) — RuntimeError: CUDA out of memory" in notes
    assert "Traceback line" not in notes  # first line only
    assert "`lora` rank 16, quant none: not run (seeds 0, 1) — run `python -m harness run" in notes
    failed_line = next(ln for ln in notes.splitlines() if "int8: failed" in ln)
    assert "ValueError: xxx" in failed_line and len(failed_line) < 300 and "second line" not in failed_line
    assert "int8: killed (seed 1) — no reason recorded" in notes
    # configs with no finished seed have no row
    assert {(r["method"], r["rank"], r["quant"]) for r in table(board)} == {("lora", "4", "none"), ("lora", "8", "none"),
                                                                          ("full", "-", "none")}


def test_latest_finished_run_wins_over_older_and_over_later_failure(suite):
    a, b, c = (cell(suite, "lora", 4, seed=s) for s in (0, 1, 2))
    runs = pd.DataFrame([
        run(a, "old", t=1, test_score=0.1), run(a, "new", t=2, test_score=0.9),
        run(a, "later-fail", t=3, status="FAILED", error="boom"),
        run(b, "fail-1", t=1, status="FAILED", error="first failure"),
        run(b, "fail-2", t=5, status="FAILED", error="second failure"),
        run(c, "still", t=9, status="RUNNING"),
    ]).sample(frac=1, random_state=3)  # MLflow's order must not matter
    chosen = select_runs([a, b, c], runs)
    assert list(chosen["run_id"]) == ["new", "fail-2", "still"]
    assert list(chosen["status"]) == ["FINISHED", "FAILED", "RUNNING"]
    assert chosen["test_score"].iloc[0] == 0.9 and pd.isna(chosen["error"].iloc[0])
    assert chosen["error"].iloc[1] == "second failure"
    board = build_leaderboard(make_suite(seeds=(0, 1, 2)), [a, b, c], runs, ACC)
    assert table(board)[0]["test accuracy ↑"] == "**0.900**" and table(board)[0]["n"] == "1"
    assert "failed (seed 1) — second failure" in board and "first failure" not in board
    assert "running (seed 2)" in board


def test_runs_csv_one_row_per_cell_in_grid_order(tmp_path, suite, three_configs):
    cells, runs = three_configs
    na = cell(suite, "full", None, "nf4", na="full does not support quant nf4")
    never = cell(suite, "lora", 16)
    cells = [cells[0], na, *cells[1:], never]
    runs = pd.concat([runs, pd.DataFrame([{"run_id": "stranger", "status": "FINISHED", "cell_id": "not-in-grid"}])])
    board = write_report(suite, cells, runs, tmp_path / "out" / "rep-test", ACC)
    assert board == tmp_path / "out" / "rep-test" / "leaderboard.md" and board.read_text().startswith("# rep-test leaderboard")
    csv = pd.read_csv(board.parent / "runs.csv")
    assert list(csv["cell_id"]) == [c.id for c in cells]
    assert list(csv.columns[:9]) == ["cell_id", "task", "method", "rank", "quant", "seed", "status", "error", "run_id"]
    assert set(METRIC_COLUMNS) | {"memory_kind", "device"} <= set(csv.columns)
    assert list(csv["status"]) == ["FINISHED", "not applicable", "FINISHED", "FINISHED", "FINISHED", "FINISHED", "FAILED", "not run"]
    assert list(csv["run_id"].fillna("")) == ["f0", "", "f1", "a0", "a1", "b0", "b1", ""]
    assert csv.loc[1, "error"] == "full does not support quant nf4"
    assert csv.loc[6, "error"].startswith("RuntimeError: CUDA out of memory")
    assert pd.isna(csv.loc[0, "rank"]) and csv.loc[3, "rank"] == 4 and list(csv["seed"][:3]) == [0, 0, 1]
    assert csv.loc[3, "test_score"] == pytest.approx(0.88) and csv.loc[3, "memory_kind"] == "cpu_rss"
    assert "stranger" not in set(csv["run_id"].dropna())


def test_no_runs_at_all(tmp_path, suite):
    cells = [cell(suite, "lora", 4, seed=s) for s in (0, 1)]
    board = write_report(suite, cells, pd.DataFrame(), tmp_path, ACC).read_text()
    assert tables(board) == [] and "![" not in board
    assert "No finished runs for this task yet" in board and "not run (seeds 0, 1)" in board
    assert list(pd.read_csv(tmp_path / "runs.csv")["status"]) == ["not run", "not run"]


def test_header_and_provenance_footer(suite, three_configs):
    cells, runs = three_configs
    runs = runs.copy()
    runs.loc[runs["run_id"] == "a1", ["git_commit", "device"]] = ["def5678", "cuda:0 NVIDIA H100"]
    board = build_leaderboard(suite, cells, runs, ACC)
    head, footer = board.split("## sent (accuracy)")[0], board.split("## Provenance")[1]
    assert head.startswith("# rep-test leaderboard\n") and "Report test suite." in head
    assert suite.model.describe() in head and "runs.csv" in head and "↑" in head and "`n`" in head
    assert "`abc1234`, `def5678`" in footer  # several commits: all listed
    assert "`cpu (2 cores)`, `cuda:0 NVIDIA H100`" in footer
    assert "torch 2.13.0; transformers 5.23.0; peft 0.21.0; bitsandbytes 0.50.0" in footer
    assert f"now has `{suite.fingerprint()}`" in footer  # the runs' fingerprint "fp" differs from the file's
    assert re.search(r"report generated: \d{4}-\d\d-\d\d \d\d:\d\d UTC", footer)


def test_number_formats_and_memory_footnote(suite):
    c = cell(suite, "lora", 4)
    runs = pd.DataFrame([run(c, "x", test_score=0.87654, forgetting=0.000123456, trainable_frac=0.000456789,
                             trainable_params=1234567.0, peak_memory_mb=1234.56, tokens_per_s=2999.6,
                             adapter_bytes=1_234_567.0, train_time_s=12.345)])
    board = build_leaderboard(make_suite(seeds=(0,)), [c], runs, ACC)
    row = table(board)[0]
    assert row["test accuracy ↑"] == "**0.877**"
    assert row["forgetting ↓"] == "0.0001235"
    assert row["trainable % ↓"] == "0.0457"
    assert row["trainable params"] == "1,234,567"
    assert row["peak memory (MB) ↓ †"] == "1,235"
    assert row["tokens/s ↑"] == "3,000"
    assert row["adapter size (MB) ↓"] == "1.23"
    assert row["train time (s)"] == "12.3"
    assert "† peak memory is `cpu_rss`" in board


def test_mixed_memory_kinds_are_flagged(suite):
    a, b = cell(suite, "lora", 4), cell(suite, "full", None)
    runs = pd.DataFrame([run(a, "a"), run(b, "b", memory_kind="cuda_allocated", device="cuda:0 NVIDIA H100")])
    board = build_leaderboard(make_suite(seeds=(0,)), [a, b], runs, ACC)
    memory = {r["method"]: r["peak memory (MB) ↓ †"] for r in table(board)}
    assert memory == {"lora": "512 (cpu_rss)", "full": "512 (cuda_allocated)"}
    assert "measured in different ways" in board


def test_one_section_per_task_with_its_own_metric(tmp_path):
    suite = make_suite(tasks=(("sent", "accuracy"), ("copy", "exact_match")), seeds=(0,))
    a, b = cell(suite, "lora", 4, task="sent"), cell(suite, "lora", 4, task="copy")
    runs = pd.DataFrame([run(a, "a", test_score=0.6), run(b, "b", test_score=0.3)])
    board = build_leaderboard(suite, [a, b], runs, {"accuracy": True, "exact_match": False})
    sent, copy = board.split("## sent (accuracy)")[1].split("## copy (exact_match)")
    assert table(sent)[0]["test accuracy ↑"] == "**0.600**"
    assert table(copy.split("## Provenance")[0])[0]["test exact_match ↓"] == "**0.300**"


def test_grid_entries_sharing_method_rank_quant_stay_apart(suite):
    slow = [cell(suite, "lora", 4, seed=s) for s in (0, 1)]
    fast = [cell(suite, "lora", 4, seed=s, lr=1e-2) for s in (0, 1)]
    runs = pd.DataFrame([run(slow[0], "s0", test_score=0.6), run(slow[1], "s1", test_score=0.6),
                         run(fast[0], "f0", test_score=0.9), run(fast[1], "f1", test_score=0.9)])
    rows = table(build_leaderboard(suite, slow + fast, runs, ACC))
    assert [(r["method"], r["test accuracy ↑"], r["n"]) for r in rows] == [
        ("lora (lr=0.01)", "**0.900**", "2"), ("lora (lr=0.0001)", "0.600", "2")]


# --------------------------------------------------------------------------- search: several trials per cell


def test_best_validation_score_beats_a_later_run_with_a_worse_one(suite):
    a = cell(suite, "lora", 4)
    runs = pd.DataFrame([run(a, "good-val", t=1, val_score=0.90, test_score=0.60),
                         run(a, "later-worse-val", t=2, val_score=0.70, test_score=0.95),
                         run(a, "latest-failed", t=3, status="FAILED", error="boom")])
    one = make_suite(seeds=(0,))
    assert list(select_runs([a], runs)["run_id"]) == ["good-val"]
    assert table(build_leaderboard(one, [a], runs, ACC))[0]["test accuracy ↑"] == "**0.600**"  # never picked by test
    # a metric where lower is better: the lower validation score wins
    assert table(build_leaderboard(one, [a], runs, {"accuracy": False}))[0]["test accuracy ↓"] == "**0.950**"


def test_equal_validation_scores_go_to_the_latest_run(suite):
    a = cell(suite, "lora", 4)
    runs = pd.DataFrame([run(a, "first", t=1, val_score=0.8, test_score=0.1),
                         run(a, "last", t=3, val_score=0.8, test_score=0.3),
                         run(a, "middle", t=2, val_score=0.8, test_score=0.2)])
    assert list(select_runs([a], runs)["run_id"]) == ["last"]
    assert table(build_leaderboard(make_suite(seeds=(0,)), [a], runs, ACC))[0]["test accuracy ↑"] == "**0.300**"


@pytest.fixture
def searched():
    """3 trials per cell.  lora r4: both seeds' best trials chose lr=1.2e-3, alpha=16; one trial of seed 1
    failed (5/6 finished).  lora r8: all 6 finished; the seeds' best trials chose different lr."""
    suite = search_suite(trials=3)
    r4 = [cell(suite, "lora", 4, seed=s) for s in (0, 1)]
    r8 = [cell(suite, "lora", 8, seed=s) for s in (0, 1)]
    runs = pd.DataFrame([
        trial(r4[0], "a00", 0, t=1, val_score=0.70, lr=3e-4, alpha=8),
        trial(r4[0], "a01", 1, t=2, val_score=0.90, test_score=0.88),
        trial(r4[0], "a02", 2, t=3, val_score=0.80, lr=5e-3, alpha=32),
        trial(r4[1], "a10", 0, t=4, val_score=0.85, test_score=0.92),
        trial(r4[1], "a11", 1, t=5, val_score=0.60, lr=1e-5),
        trial(r4[1], "a12", 2, t=6, status="FAILED", error="RuntimeError: boom"),
        trial(r8[0], "b00", 0, t=7, val_score=0.75, test_score=0.70, lr=1.2e-3, alpha=16),
        trial(r8[0], "b01", 1, t=8, val_score=0.50),
        trial(r8[0], "b02", 2, t=9, val_score=0.40),
        trial(r8[1], "b10", 0, t=10, val_score=0.75, test_score=0.80, lr=3e-4, alpha=16),
        trial(r8[1], "b11", 1, t=11, val_score=0.55),
        trial(r8[1], "b12", 2, t=12, val_score=0.45),
    ])
    return suite, r4 + r8, runs


def test_search_adds_the_trial_sentence_and_columns(searched):
    suite, cells, runs = searched
    board = build_leaderboard(suite, cells, runs, ACC)
    section = board.split("## sent (accuracy)")[1]
    assert ("Each row is the best of 3 trials per cell by validation score (searched: lr, settings.alpha); "
            "the test score is that trial's.") in section.split("|")[0]  # under the heading, above the table
    rows = table(board)
    assert [(r["method"], r["rank"], r["test accuracy ↑"].strip("*"), r["n"]) for r in rows] == [
        ("lora", "4", "0.900", "2"), ("lora", "8", "0.750", "2")]  # the best-val trial's test scores, averaged
    assert [r["trials"] for r in rows] == ["5/6", "6/6"]
    assert rows[0]["best hyperparameters"] == "lr=1.2e-03, alpha=16"
    assert rows[1]["best hyperparameters"] == "lr=1.2e-03 / 3.0e-04, alpha=16"  # seeds chose different lr


def test_trials_and_search_values_reach_runs_csv(tmp_path, searched):
    suite, cells, runs = searched
    write_report(suite, cells, runs, tmp_path, ACC)
    csv = pd.read_csv(tmp_path / "runs.csv")
    assert list(csv["run_id"]) == ["a01", "a10", "b00", "b10"]
    assert list(csv["trials"]) == [3, 2, 3, 3]
    assert csv.loc[0, "search_values"] == '{"lr": 0.0012, "settings.alpha": 16}'
    assert csv.loc[3, "search_values"] == '{"lr": 0.0003, "settings.alpha": 16}'


def test_a_rerun_slot_counts_once():
    suite = search_suite(trials=2, seeds=(0,))
    a = cell(suite, "lora", 4)
    runs = pd.DataFrame([trial(a, "x", 0, t=1), trial(a, "x-again", 0, t=2), trial(a, "y", 1, t=3)])
    assert list(select_runs([a], runs)["trials"]) == [2]
    assert table(build_leaderboard(suite, [a], runs, ACC))[0]["trials"] == "2/2"


def test_no_search_keeps_the_table_as_it_was(suite, three_configs):
    cells, runs = three_configs
    board = build_leaderboard(suite, cells, runs, ACC)
    header = table_rows(board)[0]
    assert "trials" not in header and "best hyperparameters" not in header and header[-1] == "adapter size (MB) ↓"
    assert "best of" not in board and "Pareto" not in board


def test_space_alone_counts_as_a_search():
    suite = dataclasses.replace(make_suite(seeds=(0,)), search=SearchSpec(trials=1, space=SPACE[:1]))
    a = cell(suite, "lora", 4)
    board = build_leaderboard(suite, [a], pd.DataFrame([trial(a, "x", 0, lr=0.05)]), ACC)
    assert "best of 1 trials per cell by validation score (searched: lr)" in board
    assert table(board)[0]["trials"] == "1/1" and table(board)[0]["best hyperparameters"] == "lr=0.05, alpha=16"


def test_diverged_run_shows_as_diverged_with_its_error(tmp_path):
    suite = search_suite(trials=2, seeds=(0, 1))
    a, b = cell(suite, "lora", 4, seed=0), cell(suite, "lora", 4, seed=1)
    runs = pd.DataFrame([
        # MLflow may call a diverged run FINISHED: the outcome tag decides
        trial(a, "nan-run", 0, t=1, outcome="diverged", val_score=float("nan"), error="loss became nan at step 12"),
        trial(b, "fine", 0, t=2, val_score=0.5, test_score=0.7),
        trial(b, "blew-up", 1, t=3, outcome="diverged", val_score=0.99, test_score=0.99, error="loss became inf at step 3"),
    ])
    write_report(suite, [a, b], runs, tmp_path, ACC)
    csv = pd.read_csv(tmp_path / "runs.csv")
    assert list(csv["status"]) == ["DIVERGED", "FINISHED"]
    assert csv.loc[0, "error"] == "loss became nan at step 12" and list(csv["run_id"]) == ["nan-run", "fine"]
    assert list(csv["trials"]) == [0, 1]  # a diverged trial is not a finished one
    board = (tmp_path / "leaderboard.md").read_text()
    notes = board.split("**Not comparable**")[1]
    assert "- `lora` rank 4, quant none: diverged (seed 0) — loss became nan at step 12" in notes
    row = table(board)[0]
    assert row["test accuracy ↑"] == "**0.700**" and row["n"] == "1" and row["trials"] == "1/4"


def test_oom_retries_reach_runs_csv(tmp_path, suite):
    a, b = cell(suite, "lora", 4, seed=0), cell(suite, "lora", 4, seed=1)
    runs = pd.DataFrame([run(a, "squeezed", oom_retries="2", micro_batch="4"), run(b, "plain")])
    write_report(suite, [a, b], runs, tmp_path, ACC)
    csv = pd.read_csv(tmp_path / "runs.csv")
    assert {"trials", "search_values", "oom_retries"} <= set(csv.columns)
    assert csv.loc[0, "oom_retries"] == 2 and pd.isna(csv.loc[1, "oom_retries"])
    assert pd.isna(csv.loc[1, "search_values"])


# --------------------------------------------------------------------------- Pareto mode


def test_pareto_front_lists_exactly_the_non_dominated_trials_by_memory():
    suite = search_suite(trials=3, seeds=(0,), objectives=("score", "peak_memory"))
    r4, r8, full = cell(suite, "lora", 4), cell(suite, "lora", 8), cell(suite, "full", None)
    runs = pd.DataFrame([
        trial(r4, "A", 0, t=1, val_score=0.60, test_score=0.61, peak_memory_mb=100.0, lr=1e-3, alpha=8),
        trial(r4, "B", 1, t=2, val_score=0.70, test_score=0.72, peak_memory_mb=200.0, lr=2e-3, alpha=16),
        trial(r8, "C", 0, t=3, val_score=0.65, test_score=0.90, peak_memory_mb=300.0),  # B beats it on both
        trial(full, "D", 0, t=4, val_score=0.80, test_score=0.79, peak_memory_mb=400.0, lr=5e-5, alpha=32),
        trial(r8, "E", 1, t=5, val_score=0.55, test_score=0.50, peak_memory_mb=150.0),  # A beats it on both
        # not finished: would beat everything, but is not a result
        trial(r8, "X", 2, t=6, outcome="diverged", val_score=0.99, peak_memory_mb=10.0, error="loss became nan"),
    ])
    board = build_leaderboard(suite, [r4, r8, full], runs, ACC)
    section = board.split("### Pareto front: validation score vs peak memory")[1].split("**Not comparable**")[0]
    assert "no other finished trial beats on both counts" in section
    front = table(section)
    assert [list(r.values()) for r in front] == [
        ["lora", "4", "none", "0", "lr=1.0e-03, alpha=8", "0.600", "0.610", "100"],
        ["lora", "4", "none", "0", "lr=2.0e-03, alpha=16", "0.700", "0.720", "200"],
        ["full", "-", "none", "0", "lr=5.0e-05, alpha=32", "0.800", "0.790", "400"],
    ]
    assert list(front[0]) == ["method", "rank", "quant", "seed", "hyperparameters", "val accuracy ↑", "test accuracy",
                              "peak memory (MB) ↓"]
    # the front comes after the task's main table
    assert board.index("| method | rank | quant | test accuracy") < board.index("### Pareto front")


def test_no_pareto_front_with_a_single_objective(searched):
    suite, cells, runs = searched
    assert "Pareto front" not in build_leaderboard(suite, cells, runs, ACC)
