"""The report: hand-made MLflow-like runs in, the markdown and CSV a user reads out.

Assertions are on what a reader sees: the row order (best by validation, then tiers),
the numbers, `seeds ok`, the verdicts against the best row as printed, the arrows,
the reasons under each table and the per-run CSV.  Where a number comes from the
bootstrap it is checked against an independent expectation (the normal approximation
of a binomial difference), not against the code that computed it.
"""
from __future__ import annotations

import dataclasses
import math
import re

import pandas as pd
import pytest

from harness import runner
from harness.grid import Cell
from harness.metrics import pack_outcomes
from harness.report import (METRIC_COLUMNS, build_leaderboard, read_runs_csv, report_from_csv, runs_table,
                            select_runs, write_report)
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


N = 400  # test examples of the runs that log per-example outcomes


def graded(correct, n: int = N) -> dict:
    """test_score and test_outcomes of a run that got exactly the examples in `correct` right."""
    right = set(correct)
    return {"test_score": len(right) / n, "test_outcomes": pack_outcomes([i in right for i in range(n)])}


def points(text: str) -> list[float]:
    """The numbers of a `vs best` cell: 'worse −10.0 [−12.9, −7.1]' -> [-10.0, -12.9, -7.1]."""
    return [float(x) for x in re.findall(r"[-+]?\d+\.\d", text.replace("−", "-"))]


@pytest.fixture
def three_configs(suite):
    """full (val 0.75, test 0.75), lora r4 (val 0.5, test 0.90), lora r8 (test 0.80 on one seed, the other failed)."""
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


def test_the_best_row_is_the_best_by_validation_not_by_test():
    """B has the better test score, A the better validation score: A is the best row, and B is shown
    better than it on test rather than promoted (the test split never picks)."""
    suite = make_suite(seeds=(0, 1, 2))
    a = [cell(suite, "lora", 4, seed=s) for s in (0, 1, 2)]
    b = [cell(suite, "lora", 8, seed=s) for s in (0, 1, 2)]
    runs = pd.DataFrame([run(c, f"a{c.seed}", val_score=0.90, **graded(range(320))) for c in a]
                        + [run(c, f"b{c.seed}", val_score=0.80, **graded(range(340))) for c in b])
    rows = table(build_leaderboard(suite, a + b, runs, ACC))
    assert [(r["rank"], r["test accuracy ↑"], r["val accuracy"], r["vs best"].split(" [")[0]) for r in rows] == [
        ("4", "0.800", "0.900", "best (by val)"), ("8", "0.850", "0.800", "better +5.0")]
    assert "**" not in build_leaderboard(suite, a + b, runs, ACC)  # nothing is bold any more


@pytest.fixture
def verdict_rows():
    """Four rows, 3 seeds each, scored on the same 400 test examples (every seed alike, so only the test
    split is noise).  lora r8 has the best validation score; r4 gets 40 fewer examples right (a subset of
    r8's), r2 exactly r8's, r1 misses 12 of r8's and gets 8 others: 1 point lower, on 20 disagreements."""
    suite = make_suite(seeds=(0, 1, 2))
    right = {8: range(320), 4: range(280), 2: range(320), 1: set(range(12, 320)) | set(range(320, 328))}
    val = {8: 0.90, 4: 0.85, 2: 0.80, 1: 0.75}
    cells, rows = [], []
    for rank in (1, 2, 4, 8):
        for seed in (0, 1, 2):
            c = cell(suite, "lora", rank, seed=seed)
            cells.append(c)
            rows.append(run(c, f"r{rank}s{seed}", val_score=val[rank], **graded(right[rank])))
    return suite, cells, pd.DataFrame(rows)


def test_verdicts_as_a_reader_sees_them(verdict_rows):
    suite, cells, runs = verdict_rows
    board = build_leaderboard(suite, cells, runs, ACC)
    by_rank = {r["rank"]: r for r in table(board)}
    assert by_rank["8"]["vs best"] == "best (by val)"
    worse, same, unsure = by_rank["4"]["vs best"], by_rank["2"]["vs best"], by_rank["1"]["vs best"]
    assert same == "≈ 0.0 [0.0, 0.0]"  # identical answers: no difference at all
    assert re.fullmatch(r"worse −10\.0 \[−\d+\.\d, −\d+\.\d\]", worse), worse
    assert re.fullmatch(r"inconclusive −1\.0 \[−\d\.\d, \+\d\.\d\]", unsure), unsure
    # the intervals agree with the normal approximation of a paired difference of proportions:
    # sd = sqrt((d/n - diff^2) / n) with d disagreements; 95% = diff ± 1.96 sd
    for text, diff, disagree in ((worse, -0.10, 40), (unsure, -0.01, 20)):
        sd = math.sqrt((disagree / N - diff**2) / N)
        _, low, high = points(text)
        assert low == pytest.approx(100 * (diff - 1.96 * sd), abs=0.5) and high == pytest.approx(100 * (diff + 1.96 * sd), abs=0.5)
    assert by_rank["4"]["seeds ok"] == "3/3" and by_rank["4"]["test accuracy ↑"] == "0.700"
    assert "Holm-corrected over the 3 comparisons with the best row" in board
    assert "within ±1 point (the margin, `--margin 0.01`)" in board
    assert "draws seeds and test examples" in board


def test_rows_sort_by_tier_then_validation(verdict_rows):
    """r4 has a better validation score than r2 and r1 but is shown worse than the best: tier 2, after them."""
    suite, cells, runs = verdict_rows
    rows = table(build_leaderboard(suite, cells, runs, ACC))
    assert [(r["rank"], r["tier"]) for r in rows] == [("8", "1"), ("2", "1"), ("1", "1"), ("4", "2")]


def test_the_margin_decides_what_counts_as_the_same(verdict_rows):
    """A row 0.5 points below the best on 2 of 400 examples: its 90% interval reaches past −1 point
    (inconclusive at the default margin) but lies within ±3 points."""
    suite, cells, runs = verdict_rows
    runs = runs.copy()
    for seed in (0, 1, 2):
        i = runs.index[runs["run_id"] == f"r1s{seed}"][0]
        for k, v in graded(range(2, 320)).items():
            runs.loc[i, k] = v
    default = {r["rank"]: r["vs best"] for r in table(build_leaderboard(suite, cells, runs, ACC))}
    wide_board = build_leaderboard(suite, cells, runs, ACC, margin=0.03)
    wide = {r["rank"]: r["vs best"] for r in table(wide_board)}
    assert default["1"].startswith("inconclusive −0.5 [") and wide["1"].startswith("≈ −0.5 [")
    assert "within ±3 points (the margin, `--margin 0.03`)" in wide_board
    assert wide["4"].startswith("worse −10.0")  # a real difference stays one


def test_a_row_with_a_diverged_seed_sorts_last_and_says_2_of_3():
    suite = make_suite(seeds=(0, 1, 2))
    steady = [cell(suite, "lora", 4, seed=s) for s in (0, 1, 2)]
    shaky = [cell(suite, "lora", 16, seed=s) for s in (0, 1, 2)]
    plain = [cell(suite, "full", None, seed=s) for s in (0, 1, 2)]
    runs = pd.DataFrame(
        [run(c, f"s{c.seed}", val_score=0.80, **graded(range(320))) for c in steady]
        + [run(c, f"p{c.seed}", val_score=0.70, **graded(range(318))) for c in plain]
        + [run(c, f"k{c.seed}", val_score=0.99, **graded(range(390))) for c in shaky[:2]]  # the best val and test...
        + [run(shaky[2], "k2", outcome="diverged", val_score=math.nan, test_score=math.nan,
               error="loss became nan at step 40")])  # ...on the two seeds that survived
    board = build_leaderboard(suite, steady + shaky + plain, runs, ACC)
    rows = table(board)
    assert [(r["method"], r["rank"], r["seeds ok"]) for r in rows] == [("lora", "4", "3/3"), ("full", "-", "3/3"),
                                                                       ("lora", "16", "2/3")]
    assert rows[0]["vs best"] == "best (by val)"  # not the shaky row, whose mean covers 2 seeds
    assert rows[2]["test accuracy ↑"] == "0.975" and rows[2]["vs best"].startswith("better +17.5")
    assert "come after every row with all its seeds" in board
    assert "- `lora` rank 16, quant none: diverged (seed 2) — loss became nan at step 40" in board
    overall = {r["rank"]: r["sent (tier)"] for r in table(board, header="mean tier")}
    assert overall == {"4": "1", "-": "1", "16": "1 (2/3)"}


def test_the_row_interval_is_the_bootstrap_of_its_mean():
    suite = make_suite(seeds=(0, 1, 2))
    one = cell(suite, "lora", 4)
    three = [cell(suite, "lora", 8, seed=s) for s in (0, 1, 2)]
    runs = pd.DataFrame([run(one, "one", val_score=0.9, **graded(range(352)))]
                        + [run(c, f"t{c.seed}", val_score=0.5, test_score=0.90 + c.seed / 100) for c in three])
    by_rank = {r["rank"]: r for r in table(build_leaderboard(suite, [one, *three], runs, ACC))}
    # one seed, 400 examples at 0.88: the binomial 95% interval 0.88 ± 1.96 sqrt(0.88 0.12 / 400) = ±0.032
    low, high = (float(x) for x in by_rank["4"]["95% interval"].strip("[]").split(", "))
    assert low == pytest.approx(0.848, abs=0.006) and high == pytest.approx(0.912, abs=0.006)
    # three seeds, no outcomes: the mean of 3 draws is the lowest (all draws 0.90) with probability 1/27 > 2.5%
    assert by_rank["8"]["95% interval"] == "[0.900, 0.920]"
    assert by_rank["4"]["seeds ok"] == "1/1" and by_rank["8"]["seeds ok"] == "3/3"


def test_one_seed_without_outcomes_gives_plain_numbers_and_says_so():
    suite = make_suite(seeds=(0,))
    a, b = cell(suite, "lora", 4), cell(suite, "lora", 8)
    runs = pd.DataFrame([run(a, "a", test_score=0.9, val_score=0.6), run(b, "b", test_score=0.8, val_score=0.7)])
    board = build_leaderboard(suite, [a, b], runs, ACC)
    header = table_rows(board)[0]
    assert "95% interval" not in header and "vs best" not in header and "tier" not in header
    assert "One seed per row and no per-example test outcomes: plain numbers" in board
    assert [r["rank"] for r in table(board)] == ["8", "4"]  # by validation score


def test_overall_table_is_the_mean_tier_over_tasks():
    suite = make_suite(tasks=(("sent", "accuracy"), ("topic", "accuracy")), seeds=(0,))
    plan = {  # (task, rank): (val, examples right of 400)
        ("sent", 4): (0.9, range(360)), ("sent", 8): (0.8, range(300)), ("sent", 16): (0.7, range(360)),
        ("topic", 4): (0.5, range(200)), ("topic", 8): (0.7, range(280))}
    cells, rows = [], []
    for (task, rank), (val, right) in plan.items():
        c = cell(suite, "lora", rank, task=task)
        cells.append(c)
        rows.append(run(c, f"{task}{rank}", val_score=val, **graded(right)))
    cells.append(cell(suite, "lora", 16, task="topic"))  # not run on topic
    board = build_leaderboard(suite, cells, pd.DataFrame(rows), ACC)
    overall = table(board, header="mean tier")
    assert [(r["rank"], r["mean tier ↓"], r["tasks"], r["sent (tier)"], r["topic (tier)"]) for r in overall] == [
        ("4", "1.50", "2/2", "1", "2"), ("8", "1.50", "2/2", "2", "1"), ("16", "1.00", "1/2", "1", "–")]
    assert "## Overall: tiers over tasks" in board and "a tier is not a rank" in board


def test_headers_carry_units_and_arrows(suite, three_configs):
    cells, runs = three_configs
    header = table_rows(build_leaderboard(suite, cells, runs, ACC))[0]
    for name in ("method", "rank", "quant", "tier", "test accuracy ↑", "95% interval", "vs best", "seeds ok",
                 "val accuracy", "forgetting ↓", "trainable % ↓", "trainable params", "tokens/s ↑", "train time (s)",
                 "adapter size (MB) ↓"):
        assert name in header
    assert any(h.startswith("peak memory (MB) ↓") for h in header) and "n" not in header


def test_lower_is_better_flips_order_and_arrow(suite, three_configs):
    cells, runs = three_configs
    board = build_leaderboard(suite, cells, runs, {"accuracy": False})
    rows = table(board)
    assert "test accuracy ↓" in rows[0]
    # lowest validation score among the rows with both seeds: lora r4 (0.5); lora r8 lost a seed: last
    assert [(r["method"], r["rank"], r["vs best"].split(" ")[0]) for r in rows][0] == ("lora", "4", "best")
    assert [r["rank"] for r in rows] == ["4", "-", "8"]
    assert "the lowest mean validation accuracy" in board


def test_unknown_metric_direction_is_said(suite, three_configs):
    cells, runs = three_configs
    board = build_leaderboard(suite, cells, runs, {})
    assert "direction of `accuracy` is unknown" in board
    assert table(board)[0]["method"] == "full"  # the best validation score as if higher were better


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
    assert table(board)[0]["test accuracy ↑"] == "0.900" and table(board)[0]["seeds ok"] == "1/3"
    assert "failed (seed 1) — second failure" in board and "first failure" not in board
    assert "running (seed 2)" in board


def test_runs_csv_holds_every_run_in_grid_order_and_marks_the_chosen(tmp_path, suite, three_configs):
    cells, runs = three_configs
    na = cell(suite, "full", None, "nf4", na="full does not support quant nf4")
    never = cell(suite, "lora", 16)
    cells = [cells[0], na, *cells[1:], never]
    runs = pd.concat([runs, pd.DataFrame([{"run_id": "stranger", "status": "FINISHED", "cell_id": "not-in-grid"},
                                          run(cells[0], "f0-older", t=-5, test_score=0.1, val_score=0.1)])])
    board = write_report(suite, cells, runs, tmp_path / "out" / "rep-test", ACC)
    assert board == tmp_path / "out" / "rep-test" / "leaderboard.md" and board.read_text().startswith("# rep-test leaderboard")
    csv = pd.read_csv(board.parent / "runs.csv")
    assert list(csv.columns[:11]) == ["cell_id", "task", "method", "rank", "quant", "seed", "status", "error", "run_id",
                                      "config", "chosen"]
    assert set(METRIC_COLUMNS) | {"memory_kind", "device", "lr", "head_lr", "representation_drift", "slot",
                                  "search_from", "test_outcomes", "start_time", "version.torch"} <= set(csv.columns)
    assert list(csv["run_id"].fillna("")) == ["f0-older", "f0", "", "f1", "a0", "a1", "b0", "b1", ""]
    assert list(csv["chosen"]) == [False, True, True, True, True, True, True, True, True]
    assert list(csv["status"]) == ["FINISHED", "FINISHED", "not applicable", "FINISHED", "FINISHED", "FINISHED",
                                   "FINISHED", "FAILED", "not run"]
    assert list(csv["cell_id"].drop_duplicates()) == [c.id for c in cells]
    assert csv.loc[2, "error"] == "full does not support quant nf4"
    assert csv.loc[7, "error"].startswith("RuntimeError: CUDA out of memory")
    assert pd.isna(csv.loc[0, "rank"]) and csv.loc[4, "rank"] == 4 and list(csv["seed"][:4]) == [0, 0, 0, 1]
    assert csv.loc[4, "test_score"] == pytest.approx(0.88) and csv.loc[4, "memory_kind"] == "cpu_rss"
    assert "stranger" not in set(csv["run_id"].dropna())
    assert table(board.read_text())[0]["test accuracy ↑"] == "0.750"  # the older run of f0's cell is not in the mean


def test_the_leaderboard_is_rebuilt_byte_for_byte_from_runs_csv(tmp_path, searched):
    """What the report shows is all in runs.csv, and reads back the same: a commit that looks like a number,
    floats that need 17 digits, an error over two lines, hyperparameters as JSON."""
    suite, cells, runs = searched
    runs = runs.copy()
    runs["git_commit"] = "20712e2"
    runs["data_fingerprint"] = "0123456789012345"
    runs.loc[runs["run_id"] == "a01", "test_score"] = 1 / 3
    runs.loc[runs["run_id"] == "a12", "error"] = "ValueError: bad\nsecond line, with a comma"
    board = write_report(suite, cells, runs, tmp_path / "first", ACC)
    again, stale = report_from_csv(suite, cells, board.parent / "runs.csv", tmp_path / "second", ACC)
    assert stale == []
    assert again.read_text() == board.read_text()
    text = board.read_text()
    assert "git commit: `20712e2`" in text and "sent `0123456789012345`" in text and "report generated" not in text
    assert build_leaderboard(suite, cells, runs, ACC) == build_leaderboard(suite, cells, runs, ACC)  # no clock, no chance
    table_ = read_runs_csv(board.parent / "runs.csv")
    assert (runs_table(cells, table_).to_csv(index=False, lineterminator="\n")
            == (board.parent / "runs.csv").read_text())  # runs.csv is its own input


def test_an_older_runs_csv_without_chosen_still_rebuilds(tmp_path, suite, three_configs):
    cells, runs = three_configs
    chosen = select_runs(cells, runs)
    old = chosen[["cell_id", "task", "method", "rank", "quant", "seed", "status", "error", "run_id", "config",
                  "val_score", "test_score", "memory_kind", "device", "trials", "git_commit"]]
    old.to_csv(tmp_path / "old.csv", index=False)
    board, stale = report_from_csv(suite, cells, tmp_path / "old.csv", tmp_path / "out", ACC)
    assert stale == []
    rows = table(board.read_text())
    assert [(r["method"], r["rank"], r["seeds ok"]) for r in rows] == [("full", "-", "2/2"), ("lora", "4", "2/2"),
                                                                       ("lora", "8", "1/2")]


def test_a_runs_csv_of_other_cells_is_called_stale(tmp_path, suite, three_configs):
    cells, runs = three_configs
    write_report(suite, cells, runs, tmp_path, ACC)
    board, stale = report_from_csv(suite, cells[:4], tmp_path / "runs.csv", tmp_path / "again", ACC)
    assert stale[0].startswith("2 row(s) of runs.csv belong to no cell of the suite")
    assert any(f"cell `{cells[4].id}` (sent lora r8, seed 0), status FINISHED" in s for s in stale)
    text = board.read_text()
    assert "**Stale: runs.csv does not match the suite.**" in text and cells[5].id in text
    board, stale = report_from_csv(suite, cells + [cell(suite, "lora", 16)], tmp_path / "runs.csv", tmp_path / "more", ACC)
    assert stale == ["1 cell(s) of the suite have no row in runs.csv: sent/lora r16 seed0"]


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
    assert suite.model.describe() in head and "runs.csv" in head and "↑" in head and "`seeds ok`" in head
    assert "best mean validation score" in head and "--from-csv <that runs.csv>` rebuilds this file" in head
    assert "`abc1234`, `def5678`" in footer  # several commits: all listed
    assert "`cpu (2 cores)`, `cuda:0 NVIDIA H100`" in footer
    assert "torch 2.13.0; transformers 5.23.0; peft 0.21.0; bitsandbytes 0.50.0" in footer
    assert f"now has `{suite.fingerprint()}`" in footer  # the runs' fingerprint "fp" differs from the file's
    assert "- runs started: 2026-05-28 20:26 UTC" in footer and "report generated" not in footer


def test_number_formats_and_memory_footnote(suite):
    c = cell(suite, "lora", 4)
    runs = pd.DataFrame([run(c, "x", test_score=0.87654, forgetting=0.000123456, trainable_frac=0.000456789,
                             trainable_params=1234567.0, peak_memory_mb=1234.56, tokens_per_s=2999.6,
                             adapter_bytes=1_234_567.0, train_time_s=12.345)])
    board = build_leaderboard(make_suite(seeds=(0,)), [c], runs, ACC)
    row = table(board)[0]
    assert row["test accuracy ↑"] == "0.877"
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


def test_the_memory_column_shows_train_state_on_cpu_and_the_device_peak_on_a_gpu(suite):
    """memory_kind names the measure of the memory column: train_state_mb for a CPU run (exact), the
    device peak for a GPU run; a CPU run logged before train_state_mb (cpu_rss) keeps its peak RSS."""
    a, b = cell(suite, "lora", 4), cell(suite, "full", None)
    cpu = dict(memory_kind="train_state", train_state_mb=87.4321, peak_memory_mb=611.0)
    board = build_leaderboard(make_suite(seeds=(0,)), [a, b], pd.DataFrame([run(a, "a", **cpu), run(b, "b", **cpu)]), ACC)
    assert [r["train state (MB) ↓ †"] for r in table(board)] == ["87.4", "87.4"]
    assert "† memory is `train_state`: the training state counted exactly (train_state_mb)" in board
    assert "peak memory (MB)" not in table_rows(board)[0]
    gpu = dict(memory_kind="cuda_allocated", train_state_mb=87.4, peak_memory_mb=1234.56)
    board = build_leaderboard(make_suite(seeds=(0,)), [a], pd.DataFrame([run(a, "a", **gpu)]), ACC)
    assert table(board)[0]["peak memory (MB) ↓ †"] == "1,235" and "† peak memory is `cuda_allocated`" in board
    old = build_leaderboard(make_suite(seeds=(0,)), [a, b], pd.DataFrame([run(a, "a", **cpu), run(b, "b")]), ACC)
    memory = {r["method"]: r["memory (MB) ↓ †"] for r in table(old)}
    assert memory == {"lora": "87.4 (train_state)", "full": "512 (cpu_rss)"}
    assert "† memory was measured in different ways" in old


def test_one_section_per_task_with_its_own_metric(tmp_path):
    suite = make_suite(tasks=(("sent", "accuracy"), ("copy", "exact_match")), seeds=(0,))
    a, b = cell(suite, "lora", 4, task="sent"), cell(suite, "lora", 4, task="copy")
    runs = pd.DataFrame([run(a, "a", test_score=0.6), run(b, "b", test_score=0.3)])
    board = build_leaderboard(suite, [a, b], runs, {"accuracy": True, "exact_match": False})
    sent, copy = board.split("## sent (accuracy)")[1].split("## copy (exact_match)")
    assert table(sent)[0]["test accuracy ↑"] == "0.600"
    assert table(copy.split("## Provenance")[0])[0]["test exact_match ↓"] == "0.300"


def test_grid_entries_sharing_method_rank_quant_stay_apart(suite):
    slow = [cell(suite, "lora", 4, seed=s) for s in (0, 1)]
    fast = [cell(suite, "lora", 4, seed=s, lr=1e-2) for s in (0, 1)]
    runs = pd.DataFrame([run(slow[0], "s0", test_score=0.6, val_score=0.6), run(slow[1], "s1", test_score=0.6, val_score=0.6),
                         run(fast[0], "f0", test_score=0.9, val_score=0.9), run(fast[1], "f1", test_score=0.9, val_score=0.9)])
    rows = table(build_leaderboard(suite, slow + fast, runs, ACC))
    assert [(r["method"], r["test accuracy ↑"], r["seeds ok"]) for r in rows] == [
        ("lora (lr=0.01)", "0.900", "2/2"), ("lora (lr=0.0001)", "0.600", "2/2")]


# --------------------------------------------------------------------------- search: several trials per cell


def test_best_validation_score_beats_a_later_run_with_a_worse_one(suite):
    a = cell(suite, "lora", 4)
    runs = pd.DataFrame([run(a, "good-val", t=1, val_score=0.90, test_score=0.60),
                         run(a, "later-worse-val", t=2, val_score=0.70, test_score=0.95),
                         run(a, "latest-failed", t=3, status="FAILED", error="boom")])
    one = make_suite(seeds=(0,))
    assert list(select_runs([a], runs)["run_id"]) == ["good-val"]
    assert table(build_leaderboard(one, [a], runs, ACC))[0]["test accuracy ↑"] == "0.600"  # never picked by test
    # a metric where lower is better: the lower validation score wins
    assert table(build_leaderboard(one, [a], runs, {"accuracy": False}))[0]["test accuracy ↓"] == "0.950"


def test_equal_validation_scores_go_to_the_latest_run(suite):
    a = cell(suite, "lora", 4)
    runs = pd.DataFrame([run(a, "first", t=1, val_score=0.8, test_score=0.1),
                         run(a, "last", t=3, val_score=0.8, test_score=0.3),
                         run(a, "middle", t=2, val_score=0.8, test_score=0.2)])
    assert list(select_runs([a], runs)["run_id"]) == ["last"]
    assert table(build_leaderboard(make_suite(seeds=(0,)), [a], runs, ACC))[0]["test accuracy ↑"] == "0.300"


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
    note = section.split("|")[0]  # under the heading, above the table
    assert ("Each row is the best of 3 trials per cell by validation score (every seed searches); the test score "
            "is that trial's.  Searched: lr, settings.alpha") in note
    rows = table(board)
    assert [(r["method"], r["rank"], r["test accuracy ↑"], r["seeds ok"]) for r in rows] == [
        ("lora", "4", "0.900", "2/2"), ("lora", "8", "0.750", "2/2")]  # the best-val trial's test scores, averaged
    assert [r["trials"] for r in rows] == ["5/6", "6/6"]
    assert rows[0]["best hyperparameters"] == "lr=1.2e-03, alpha=16"
    assert rows[1]["best hyperparameters"] == "lr=1.2e-03 / 3.0e-04, alpha=16"  # seeds chose different lr


def test_every_trial_and_its_search_values_reach_runs_csv(tmp_path, searched):
    suite, cells, runs = searched
    write_report(suite, cells, runs, tmp_path, ACC)
    csv = pd.read_csv(tmp_path / "runs.csv")
    assert list(csv["run_id"]) == [f"{x}{s}{k}" for x in "ab" for s in "01" for k in "012"]  # by start time per cell
    assert list(csv.loc[csv["chosen"], "run_id"]) == ["a01", "a10", "b00", "b10"]
    assert list(csv.loc[csv["chosen"], "trials"]) == [3, 2, 3, 3]
    assert list(csv["slot"][:3]) == [f"{cells[0].id}/{k}" for k in range(3)]
    assert csv.loc[1, "search_values"] == '{"lr": 0.0012, "settings.alpha": 16}'
    assert csv.loc[9, "search_values"] == '{"lr": 0.0003, "settings.alpha": 16}'
    assert csv.loc[5, "status"] == "FAILED" and csv.loc[5, "error"] == "RuntimeError: boom"


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
    assert "best of 1 trials per cell by validation score (every seed searches); the test score is that trial's.  Searched: lr" in board
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
    chosen = csv[csv["chosen"]].reset_index(drop=True)
    assert list(chosen["status"]) == ["DIVERGED", "FINISHED"]
    assert chosen.loc[0, "error"] == "loss became nan at step 12" and list(chosen["run_id"]) == ["nan-run", "fine"]
    assert list(chosen["trials"]) == [0, 1]  # a diverged trial is not a finished one
    assert list(csv["status"]) == ["DIVERGED", "FINISHED", "DIVERGED"]  # the diverged trial of seed 1 is kept too
    board = (tmp_path / "leaderboard.md").read_text()
    notes = board.split("**Not comparable**")[1]
    assert "- `lora` rank 4, quant none: diverged (seed 0) — loss became nan at step 12" in notes
    row = table(board)[0]
    assert row["test accuracy ↑"] == "0.700" and row["seeds ok"] == "1/2" and row["trials"] == "1/4"


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


def test_pareto_front_on_cpu_runs_reads_their_memory_column_train_state_mb():
    """CPU runs (memory_kind train_state): the front is over train_state_mb, as the search's objective
    (runner.objective_values) and the leaderboard's memory column; their peak RSS does not decide it."""
    suite = search_suite(trials=3, seeds=(0,), objectives=("score", "peak_memory"))
    r4, full = cell(suite, "lora", 4), cell(suite, "full", None)
    runs = pd.DataFrame([
        trial(r4, "A", 0, t=1, val_score=0.70, test_score=0.7, peak_memory_mb=900.0, train_state_mb=90.0,
              memory_kind="train_state"),
        trial(full, "D", 0, t=2, val_score=0.80, test_score=0.8, peak_memory_mb=800.0, train_state_mb=350.0,
              memory_kind="train_state"),
    ])
    board = build_leaderboard(suite, [r4, full], runs, ACC)
    front = table(board.split("### Pareto front")[1].split("**Not comparable**")[0])
    assert [(r["method"], r["train state (MB) ↓"]) for r in front] == [("lora", "90.0"), ("full", "350")]
    assert runner.objective_values({"val_score": 0.7, "peak_memory_mb": 900.0, "train_state_mb": 90.0},
                                   {"memory_kind": "train_state"}, True) == [0.7, 90.0]
    assert runner.objective_values({"val_score": 0.7, "peak_memory_mb": 900.0},
                                   {"memory_kind": "cuda_allocated"}, True) == [0.7, 900.0]
    assert runner.objective_values({"val_score": 0.7}, {}, False) == [0.7]


def test_no_pareto_front_with_a_single_objective(searched):
    suite, cells, runs = searched
    assert "Pareto front" not in build_leaderboard(suite, cells, runs, ACC)


# --------------------------------------------------------------------------- resolved precision and data overlap


def test_two_runs_differing_only_in_resolved_precision_form_two_rows(tmp_path):
    """One cell, run on a CPU (precision auto -> fp32) and on a GPU (auto -> bf16): two rows, each with its
    own chosen run, never one row picking the better validation score across both."""
    suite = make_suite(seeds=(0,))
    c = cell(suite, "lora", 4)
    runs = pd.DataFrame([run(c, "cpu", t=1, precision="fp32", val_score=0.9, test_score=0.6),
                         run(c, "gpu", t=2, precision="bf16", val_score=0.8, test_score=0.8, device="cuda:0 NVIDIA H200")])
    chosen = select_runs([c], runs)
    assert list(chosen["run_id"]) == ["cpu", "gpu"] and list(chosen["cell_id"]) == [c.id, c.id]
    assert list(chosen["config"]) == ["lora r4 (precision=auto→fp32)", "lora r4 (precision=auto→bf16)"]
    board = write_report(suite, [c], runs, tmp_path, ACC)
    rows = table(board.read_text())
    assert sorted((r["method"], r["test accuracy ↑"]) for r in rows) == [
        ("lora (precision=auto→bf16)", "0.800"), ("lora (precision=auto→fp32)", "0.600")]
    assert "- precision (as resolved on the device): `fp32`, `bf16`" in board.read_text()
    again, stale = report_from_csv(suite, [c], tmp_path / "runs.csv", tmp_path / "again", ACC)
    assert stale == [] and again.read_text() == board.read_text()  # runs.csv carries the precision


def test_seeds_that_resolved_differently_are_not_averaged_and_one_precision_changes_nothing(suite, three_configs):
    cells, runs = three_configs
    plain = build_leaderboard(suite, cells, runs, ACC)
    fp32 = build_leaderboard(suite, cells, runs.assign(precision="fp32"), ACC)
    assert fp32.replace("- precision (as resolved on the device): `fp32`\n", "") == plain  # one precision: the same rows
    mixed = runs.assign(precision=["fp32", "bf16", "fp32", "fp32", "fp32", "fp32"])  # full's seed 1 ran at bf16
    rows = {r["method"]: r for r in table(build_leaderboard(suite, cells, mixed, ACC))}
    assert rows["full (precision=auto→fp32)"]["seeds ok"] == rows["full (precision=auto→bf16)"]["seeds ok"] == "1/1"
    assert rows["full (precision=auto→fp32)"]["test accuracy ↑"] == "0.700"
    assert rows["full (precision=auto→bf16)"]["test accuracy ↑"] == "0.800"
    assert {"lora"} <= set(rows)  # lora's rows ran at one precision: unlabelled, as before


def test_a_seed_not_run_yet_stays_with_its_configuration_unless_precisions_differ():
    suite = make_suite(seeds=(0, 1, 2))
    c = [cell(suite, "lora", 4, seed=s) for s in (0, 1, 2)]
    one = pd.DataFrame([run(c[0], "a", precision="fp32"), run(c[1], "b", precision="fp32")])
    assert [(r["method"], r["seeds ok"]) for r in table(build_leaderboard(suite, c, one, ACC))] == [("lora", "2/3")]
    two = pd.DataFrame([run(c[0], "a", precision="fp32"), run(c[1], "b", precision="bf16")])
    board = build_leaderboard(suite, c, two, ACC)
    assert sorted(r["method"] for r in table(board)) == ["lora (precision=auto→bf16)", "lora (precision=auto→fp32)"]
    assert "`lora (precision=auto)` rank 4, quant none: not run (seed 2)" in board


def test_data_overlap_is_flagged_under_the_task_table(tmp_path):
    suite = make_suite(seeds=(0,))
    a, b = cell(suite, "lora", 4), cell(suite, "full", None)
    clean = pd.DataFrame([run(x, x.method, **{"data.dup_train_validation": 0.0, "data.dup_train_test": 0.0})
                          for x in (a, b)])
    assert "Data overlap" not in build_leaderboard(suite, [a, b], clean, ACC)
    leaky = clean.assign(**{"data.dup_train_test": 1.0})
    board = write_report(suite, [a, b], leaky, tmp_path, ACC).read_text()
    line = ("**Data overlap:** 1 test row(s) repeat a train input (matched after collapsing whitespace and ignoring "
            "case)")
    assert line in board
    assert board.index("| method | rank | quant | test accuracy") < board.index(line) < board.index("### Inference cost")
    again, _ = report_from_csv(suite, [a, b], tmp_path / "runs.csv", tmp_path / "again", ACC)
    assert again.read_text() == board


def test_a_hub_dataset_commit_is_named_in_the_footer(suite, three_configs):
    cells, runs = three_configs
    runs = runs.assign(data_fingerprint="0123456789012345", data_source="hub:org/ds@" + "a" * 40)
    footer = build_leaderboard(suite, cells, runs, ACC).split("## Provenance")[1]
    assert f"- data fingerprints: sent `0123456789012345` from `hub:org/ds@{'a' * 40}`" in footer
