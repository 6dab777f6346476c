"""Grid expansion: which cells a suite names, their ids, their parameters."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.cli import main
from harness.grid import expand_grid
from harness.suite import Training, load_suite

ROOT = Path(__file__).resolve().parents[1]
SUITES = sorted((ROOT / "suites").glob("*.y*ml")) + sorted((ROOT / "offline").glob("*.y*ml"))  # offline/: shared data


@pytest.fixture
def cells_of(write_suite):
    """cells_of(**top_level_changes) -> expand_grid of the tiny suite with those changes."""
    return lambda **changes: expand_grid(load_suite(write_suite(**changes)))


def keys(cells):
    return [(c.task, c.method, c.rank, c.quant, c.seed) for c in cells]


def test_tiny_suite_cells(cells_of):
    cells = cells_of()
    assert keys(cells) == [("sent", "full", None, "none", 0), ("sent", "lora", 2, "none", 0), ("sent", "lora", 4, "none", 0)]
    assert all(c.runnable and c.na_reason is None for c in cells)
    assert [c.label for c in cells] == ["sent/full seed0", "sent/lora r2 seed0", "sent/lora r4 seed0"]


def test_rankless_method_one_cell_per_quant_and_seed(cells_of):
    cells = cells_of(grid=[{"method": "full", "quant": ["none", "nf4"]}], training={"seeds": [0, 1]})
    assert keys(cells) == [("sent", "full", None, "none", 0), ("sent", "full", None, "none", 1),
                           ("sent", "full", None, "nf4", 0), ("sent", "full", None, "nf4", 1)]
    assert len({c.id for c in cells}) == 4


def test_ranked_method_one_cell_per_rank(cells_of):
    cells = cells_of(grid=[{"method": "lora", "rank": [1, 4, 16]}])
    assert [c.rank for c in cells] == [1, 4, 16]
    assert [c.settings.rank for c in cells] == [1, 4, 16]


def test_rank_and_quant_lists_cross(cells_of):
    cells = cells_of(grid=[{"method": "lora", "rank": [2, 4], "quant": ["none", "int8", "nf4"]}])
    assert sorted((c.rank, c.quant) for c in cells) == [(r, q) for r in (2, 4) for q in ("int8", "nf4", "none")]
    assert all(c.runnable for c in cells)


def test_seeds_multiply(cells_of):
    cells = cells_of(training={"seeds": [3, 1, 2]})
    assert len(cells) == 9
    assert sorted(c.seed for c in cells if c.method == "full") == [1, 2, 3]
    assert all(c.training.seeds == (c.seed,) for c in cells)  # each cell trains one seed


def test_two_tasks_double(cells_of):
    tasks = [{"name": "sent", "data": {"synthetic": "sentiment"}}, {"name": "top", "data": {"synthetic": "topic"}}]
    cells = cells_of(tasks=tasks)
    assert len(cells) == 6
    assert sorted(c.task for c in cells) == ["sent"] * 3 + ["top"] * 3
    assert len({c.id for c in cells}) == 6


def test_full_nf4_is_na_not_error(cells_of):
    (cell,) = [c for c in cells_of(grid=[{"method": "full", "quant": ["none", "nf4"]}]) if c.quant == "nf4"]
    assert not cell.runnable
    assert cell.na_reason == "full does not support quant nf4 (supports: none)"


def test_rank_omitted_uses_default_rank(cells_of):
    (cell,) = cells_of(grid=[{"method": "lora"}])
    assert (cell.rank, cell.settings.rank) == (8, 8)
    assert cell.params()["rank"] == 8


def test_duplicate_entries_run_each_cell_once(cells_of):
    cells = cells_of(grid=[{"method": "lora", "rank": 4}, {"method": "lora", "rank": [2, 4]},
                           {"method": "lora"}, {"method": "lora", "rank": 8}, {"method": "full"}, {"method": "full"}])
    assert keys(cells) == [("sent", "lora", 4, "none", 0), ("sent", "lora", 2, "none", 0),
                           ("sent", "lora", 8, "none", 0), ("sent", "full", None, "none", 0)]


def test_entries_differing_in_training_are_distinct_cells(cells_of):
    cells = cells_of(grid=[{"method": "full"}, {"method": "full", "training": {"lr": 1e-5}}])
    assert [c.training.lr for c in cells] == [Training().lr, 1e-5]
    assert cells[0].id != cells[1].id


def test_cell_ids_stable_and_sensitive(write_suite, base_suite):
    first = [c.id for c in expand_grid(load_suite(write_suite(base_suite)))]
    again = [c.id for c in expand_grid(load_suite(write_suite(base_suite)))]
    assert first == again
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in first)
    assert len(set(first)) == len(first)
    base_suite["training"]["lr"] = 3e-4
    changed = [c.id for c in expand_grid(load_suite(write_suite(base_suite)))]
    assert not set(changed) & set(first)


@pytest.mark.parametrize("path,value", [
    (("model", "tiny", "hidden_size"), 64),
    (("tasks", 0, "data", "n_train"), 128),
    (("tasks", 0, "metric"), "macro_f1"),
    (("task_type",), None),  # handled below: a causal suite needs a causal task
])
def test_cell_ids_change_with_model_data_metric_and_probe(write_suite, base_suite, path, value):
    """A report must never show a result computed on another model or other data as current."""
    first = {c.label: c.id for c in expand_grid(load_suite(write_suite(base_suite)))}
    if path == ("task_type",):
        base_suite["probe"] = {"builtin": "general", "n_texts": 8}
    else:
        node = base_suite
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    changed = {c.label: c.id for c in expand_grid(load_suite(write_suite(base_suite)))}
    assert changed.keys() == first.keys()
    assert all(changed[k] != first[k] for k in first)


def test_cell_ids_do_not_depend_on_the_file_location(write_suite):
    a = [c.id for c in expand_grid(load_suite(write_suite(filename="a.yaml")))]
    b = [c.id for c in expand_grid(load_suite(write_suite(filename="b.yaml")))]
    assert a == b


def test_params(cells_of):
    full, lora2, _ = cells_of(training={"steps": 4, "lr": 2e-3, "seeds": [7]})
    p = full.params()
    assert {k: p[k] for k in ("method", "rank", "quant", "task", "seed", "lr", "steps")} == \
        {"method": "full", "rank": "-", "quant": "none", "task": "sent", "seed": 7, "lr": 2e-3, "steps": 4}
    assert "seeds" not in p
    assert not any(k.startswith("method.") for k in p)  # full has no settings
    q = lora2.params()
    assert (q["method"], q["rank"], q["lr"]) == ("lora", 2, 2e-3)
    assert (q["method.rank"], q["method.alpha"], q["method.dropout"], q["method.targets"]) == (2, 16.0, 0.0, None)


def test_entry_training_override_stays_in_its_entry(cells_of):
    cells = cells_of(grid=[{"method": "full", "training": {"lr": 5e-5, "steps": 2}}, {"method": "lora", "rank": [2, 4]}],
                     training={"steps": 4, "lr": 1e-3})
    assert [(c.method, c.training.lr, c.training.steps) for c in cells] == \
        [("full", 5e-5, 2), ("lora", 1e-3, 4), ("lora", 1e-3, 4)]
    assert [c.params()["lr"] for c in cells] == [5e-5, 1e-3, 1e-3]


def test_entry_settings_reach_the_method(cells_of):
    cells = cells_of(grid=[{"method": "lora", "rank": 4, "settings": {"alpha": 32, "targets": ["query", "value"]}},
                           {"method": "lora", "rank": 2}])
    assert (cells[0].settings.alpha, cells[0].settings.targets, cells[0].settings.rank) == (32, ("query", "value"), 4)
    assert cells[1].settings.alpha == 16.0  # the default, not the other entry's
    assert cells[0].params()["method.alpha"] == 32


def test_fingerprint(write_suite, base_suite):
    fp = load_suite(write_suite(base_suite)).fingerprint()
    assert re.fullmatch(r"[0-9a-f]{12}", fp)
    assert load_suite(write_suite(base_suite, filename="copy.yaml")).fingerprint() == fp  # same content, other file
    base_suite["training"]["steps"] = 5
    assert load_suite(write_suite(base_suite)).fingerprint() != fp


def test_on_overlap_is_not_part_of_a_cell_or_of_the_suite(write_suite, base_suite):
    """`data.on_overlap` decides whether a run may start, not what it computes: ids and fingerprint stay."""
    plain = load_suite(write_suite(base_suite))
    base_suite["tasks"][0]["data"]["on_overlap"] = "error"
    strict = load_suite(write_suite(base_suite))
    assert strict.tasks[0].data.on_overlap == "error"
    assert strict.fingerprint() == plain.fingerprint()
    assert [c.id for c in expand_grid(strict)] == [c.id for c in expand_grid(plain)]


def test_resolved_precision_is_not_part_of_the_cell_id(cells_of):
    """The grid does not know the device; the report tells runs of different resolved precisions apart
    (tests/test_report.py), while the schedule and the runs' cell_id tag keep naming the grid's cell."""
    import dataclasses

    cell = cells_of()[0]
    assert cell.precision is None
    assert dataclasses.replace(cell, precision="bf16").id == cell.id


@pytest.mark.parametrize("suite_file", SUITES or [pytest.param(None, marks=pytest.mark.skip(reason="no suites/*.yaml yet"))],
                         ids=[p.name for p in SUITES] or ["none"])
def test_shipped_suite_validates_and_expands(suite_file, capsys):
    code = main(["validate", str(suite_file)])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    cells = expand_grid(load_suite(suite_file))
    m = re.search(r"^(\d+) cells: (\d+) to run, (\d+) n/a; (\d+) trials$", out, re.M)
    assert m, out
    assert int(m[1]) == len(cells)
    assert int(m[2]) == len([c for c in cells if c.runnable]) > 0
    assert int(m[3]) == len([c for c in cells if not c.runnable])
    assert int(m[4]) == sum(c.trials for c in cells if c.runnable)
