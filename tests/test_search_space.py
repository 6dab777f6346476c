"""Search spaces and plugins: what `search:` and `plugins:` turn into.

The parsed SearchSpec, the space and trials each cell carries (suite space merged with
its entry's, method settings resolved against the method), `Cell.with_values` for one
trial, `Cell.slots`, cell ids that do not move for suites without a search, and methods
registered by a plugin file next to the suite.  Bad search and plugin keys are in
test_suite_validation.py with the other bad suites.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml

import methods
from harness.cli import main
from harness.errors import SuiteError
from harness.grid import expand_grid
from harness.plugins import load_plugins, module_name
from harness.suite import SearchParam, SearchSpec, Training, load_suite
from tests.committed import committed

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = committed()  # results/<name> -> the suite file it was made from

SPACE = {"lr": {"low": 1e-5, "high": 1e-2, "log": True}, "warmup_steps": {"low": 0, "high": 20}}


@pytest.fixture
def cells_of(write_suite):
    """cells_of(**top_level_changes) -> expand_grid of the tiny suite with those changes."""
    return lambda **changes: expand_grid(load_suite(write_suite(**changes)))


@pytest.fixture
def registry_restored():
    """Methods a test's plugin registers are gone afterwards (other tests compare the registry to its specs)."""
    before = set(methods.all_methods())
    yield
    for name in set(methods._REGISTRY) - before:
        del methods._REGISTRY[name]


def by_name(cell) -> dict[str, SearchParam]:
    return {p.name: p for p in cell.space}


# --------------------------------------------------------------------------- parsing


def test_no_search_means_one_trial_and_no_space(write_suite):
    suite = load_suite(write_suite())
    assert (suite.search, suite.plugins) == (SearchSpec(), ())
    assert all(e.search == () for e in suite.grid)
    assert all((c.space, c.trials, c.slots()) == ((), 1, [f"{c.id}/0"]) for c in expand_grid(suite))


def test_search_block_parsed(write_suite):
    suite = load_suite(write_suite(search={"trials": 8, "objective": ["score", "peak_memory"], "sampler": "random",
                                           "space": {"weight_decay": {"choices": [0, 0.01]}, **SPACE}}))
    assert suite.search == SearchSpec(trials=8, objectives=("score", "peak_memory"), sampler="random", space=(
        SearchParam("lr", low=1e-5, high=1e-2, log=True),
        SearchParam("warmup_steps", low=0, high=20, integer=True),
        SearchParam("weight_decay", choices=(0.0, 0.01)),  # sorted by name; a float field's choices are floats
    ))
    assert isinstance(suite.search.space[0].low, float) and isinstance(suite.search.space[1].low, int)


def test_search_defaults(write_suite):
    assert load_suite(write_suite(search={"trials": 3})).search == SearchSpec(trials=3)
    assert load_suite(write_suite(search={"objective": "score"})).search.objectives == ("score",)
    assert load_suite(write_suite(search={"space": {"lr": {"low": "1e-5", "high": "1e-3"}}})).search.space == \
        (SearchParam("lr", low=1e-5, high=1e-3),)  # YAML reads 1e-5 without a dot as a string


def test_entry_search_is_sorted_by_name(write_suite, base_suite):
    base_suite["grid"][1]["search"] = {"settings.dropout": {"choices": [0.0, 0.1]}, "lr": {"low": 1e-4, "high": 1e-3},
                                       "batch_size": {"choices": [8, 16]}}
    entry = load_suite(write_suite(base_suite)).grid[1]
    assert [p.name for p in entry.search] == ["batch_size", "lr", "settings.dropout"]


# --------------------------------------------------------------------------- cells


def test_every_cell_gets_the_suite_space_and_trials(cells_of):
    cells = cells_of(search={"trials": 4, "space": SPACE})
    assert len(cells) == 3
    for c in cells:
        assert c.trials == 4
        assert [p.name for p in c.space] == ["lr", "warmup_steps"]
        assert by_name(c)["warmup_steps"].integer and not by_name(c)["lr"].integer
        assert c.slots() == [f"{c.id}/{k}" for k in range(4)]


def test_entry_space_merges_over_the_suite_space(cells_of, base_suite):
    grid = base_suite["grid"]
    grid[1]["search"] = {"lr": {"choices": [1e-3, 3e-3]}, "settings.alpha": {"low": 8, "high": 64, "log": True}}
    full, lora2, lora4 = cells_of(grid=grid, search={"space": SPACE})
    assert by_name(full) == {"lr": SearchParam("lr", low=1e-5, high=1e-2, log=True),
                             "warmup_steps": SearchParam("warmup_steps", low=0, high=20, integer=True)}
    assert [p.name for p in lora2.space] == ["lr", "settings.alpha", "warmup_steps"]
    assert by_name(lora2)["lr"] == SearchParam("lr", choices=(1e-3, 3e-3))  # the entry's replaces the suite's
    assert by_name(lora2)["settings.alpha"] == SearchParam("settings.alpha", low=8.0, high=64.0, log=True)  # float setting
    assert lora4.space == lora2.space


def test_int_settings_are_integer_params(cells_of):
    (cell,) = cells_of(grid=[{"method": "prefix_tuning", "search": {"settings.projection": {"low": 0, "high": 64}}}])
    assert by_name(cell)["settings.projection"] == SearchParam("settings.projection", low=0, high=64, integer=True)
    (cell,) = cells_of(grid=[{"method": "adalora", "rank": 4, "search": {"settings.init_rank": {"low": 4, "high": 12}}}])
    assert by_name(cell)["settings.init_rank"].integer  # `int | None = None`: an int by its type


def test_search_only_in_an_entry(cells_of):
    full, lora2, lora4 = cells_of(grid=[{"method": "full"},
                                        {"method": "lora", "rank": [2, 4], "search": {"settings.dropout": {"choices": [0.0, 0.1]}}}])
    assert full.space == () and full.trials == 1
    assert lora2.space == lora4.space == (SearchParam("settings.dropout", choices=(0.0, 0.1)),)


# --------------------------------------------------------------------------- ids


LATER_TRAINING_FIELDS = ("batching", "precision", "compile", "gradient_checkpointing")


def _id_without_search(cell) -> str:
    """The cell id as computed before search and the performance settings existed (committed results are keyed by it)."""
    training = {k: v for k, v in dataclasses.asdict(cell.training).items() if k not in LATER_TRAINING_FIELDS}
    payload = json.dumps({
        "suite": cell.suite, "task": cell.task, "method": cell.method, "rank": cell.rank, "quant": cell.quant,
        "seed": cell.seed, "settings": dataclasses.asdict(cell.settings), "training": training,
        "context": cell.context}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def test_ids_without_search_do_not_move(cells_of):
    plain = cells_of()
    assert [c.id for c in plain] == [_id_without_search(c) for c in plain]
    assert [c.id for c in cells_of(search={"trials": 1, "sampler": "random"})] == [c.id for c in plain]


@pytest.mark.parametrize("suite_name", list(SHIPPED) or [pytest.param(None, marks=pytest.mark.skip(reason="no committed results"))])
def test_committed_results_keep_their_cell_ids(suite_name):
    with open(ROOT / "results" / suite_name / "runs.csv", newline="") as f:
        recorded = {row["cell_id"] for row in csv.DictReader(f)}
    assert recorded <= {c.id for c in expand_grid(load_suite(ROOT / SHIPPED[suite_name]))}


@pytest.mark.parametrize("suite_name", list(SHIPPED) or [pytest.param(None, marks=pytest.mark.skip(reason="no committed results"))])
def test_committed_results_keep_their_suite_fingerprint(suite_name):
    """New training fields at their defaults leave a suite's fingerprint (the leaderboard's provenance) alone."""
    text = (ROOT / "results" / suite_name / "leaderboard.md").read_text()
    recorded = re.search(r"^- suite fingerprint: `([0-9a-f]+)`$", text, re.M).group(1)
    assert load_suite(ROOT / SHIPPED[suite_name]).fingerprint() == recorded


@pytest.mark.parametrize("change", [{"batching": "bucket"}, {"precision": "bf16"}, {"compile": True},
                                    {"gradient_checkpointing": True}])
def test_performance_settings_change_the_id_only_away_from_their_default(cells_of, base_suite, change):
    plain = [c.id for c in cells_of()]
    changed = [c.id for c in cells_of(training=base_suite["training"] | change)]
    assert not set(plain) & set(changed)


def test_space_and_trials_change_the_id(cells_of, base_suite):
    plain = [c.id for c in cells_of()]
    more_trials = [c.id for c in cells_of(search={"trials": 2})]
    spaced = [c.id for c in cells_of(search={"space": SPACE})]
    other_space = [c.id for c in cells_of(search={"space": {"lr": {"low": 1e-4, "high": 1e-2}}})]
    assert len(set(plain + more_trials + spaced + other_space)) == 12


def test_entries_differing_only_in_space_are_distinct_cells(cells_of):
    cells = cells_of(grid=[{"method": "lora", "rank": 2}, {"method": "lora", "rank": 2, "search": {"lr": {"low": 1e-4, "high": 1e-3}}}])
    assert [len(c.space) for c in cells] == [0, 1]
    assert cells[0].id != cells[1].id


def test_fingerprint_ignores_an_unused_search_and_default_performance_settings(write_suite):
    """Reports compare the fingerprint recorded with each run to the suite's: it must not move for old suites."""
    suite = load_suite(write_suite())
    before_search = dataclasses.asdict(suite) | {"file": None}
    del before_search["search"], before_search["plugins"]
    for field in LATER_TRAINING_FIELDS:
        del before_search["training"][field]
    for entry in before_search["grid"]:
        del entry["search"]
    for task in before_search["tasks"]:
        del task["data"]["on_overlap"]  # never in it: it decides whether a run starts, not what it computes
    plain = suite.fingerprint()
    assert plain == hashlib.sha256(json.dumps(before_search, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert load_suite(write_suite(search={"trials": 1})).fingerprint() == plain
    assert load_suite(write_suite(search={"trials": 2})).fingerprint() != plain
    training = yaml.safe_load(write_suite().read_text())["training"]
    assert load_suite(write_suite(training=training | {"batching": "random", "precision": "auto"})).fingerprint() == plain
    assert load_suite(write_suite(training=training | {"precision": "bf16"})).fingerprint() != plain


# --------------------------------------------------------------------------- with_values


def test_with_values_replaces_training_fields(cells_of):
    cell = cells_of(search={"trials": 4, "space": SPACE})[0]
    trial = cell.with_values({"lr": 3e-3, "warmup_steps": 5.0, "batch_size": 4, "weight_decay": 0})
    assert (trial.training.lr, trial.training.warmup_steps, trial.training.batch_size, trial.training.weight_decay) == \
        (3e-3, 5, 4, 0.0)
    assert isinstance(trial.training.warmup_steps, int) and isinstance(trial.training.weight_decay, float)
    assert trial.training.steps == cell.training.steps and trial.training.seeds == cell.training.seeds
    assert (trial.space, trial.trials, trial.settings) == (cell.space, cell.trials, cell.settings)
    assert cell.training.lr == Training().lr  # the cell itself is untouched
    assert trial.id != cell.id
    assert trial.params()["lr"] == 3e-3 and trial.params()["warmup_steps"] == 5


def test_with_values_rebuilds_settings_over_the_current_ones(cells_of):
    (cell,) = cells_of(grid=[{"method": "lora", "rank": 4, "settings": {"targets": ["query"], "alpha": 32},
                              "search": {"settings.dropout": {"choices": [0.0, 0.1]}, "settings.alpha": {"low": 8, "high": 64}}}])
    trial = cell.with_values({"settings.dropout": 0.1, "settings.alpha": 20, "lr": 1e-3})
    assert trial.settings == type(cell.settings)(rank=4, alpha=20.0, dropout=0.1, targets=("query",))
    assert isinstance(trial.settings.alpha, float)
    assert trial.training.lr == 1e-3
    assert (trial.params()["method.dropout"], trial.params()["method.rank"]) == (0.1, 4)


def test_with_values_coerces_int_settings(cells_of):
    (cell,) = cells_of(grid=[{"method": "prefix_tuning", "search": {"settings.projection": {"low": 0, "high": 64}}}])
    trial = cell.with_values({"settings.projection": 16.0})
    assert trial.settings.projection == 16 and isinstance(trial.settings.projection, int)
    assert trial.settings.rank == cell.settings.rank == 10


def test_with_no_values_is_the_same_cell(cells_of):
    cell = cells_of(search={"space": SPACE})[1]
    assert cell.with_values({}) == cell and cell.with_values({}).id == cell.id


def test_with_values_refuses_unknown_names(cells_of):
    cell = cells_of()[0]
    with pytest.raises(KeyError, match="'learning_rate' is neither a training field nor settings"):
        cell.with_values({"learning_rate": 1e-3})
    with pytest.raises(KeyError, match="'seeds'"):
        cell.with_values({"seeds": 3})


# --------------------------------------------------------------------------- plugins

PLUGIN = '''
"""A method from outside the package: a linear probe with a width setting."""
from dataclasses import dataclass

from methods import freeze_all_but_heads, register


@dataclass(frozen=True)
class {cls}:
    width: int = 4
    scale: float = 1.0


def apply(model, settings, ctx):
    freeze_all_but_heads(model, ctx)
    return model


register("{name}", {cls}, apply, paper="a test plugin", task_types={{"seq_cls"}})
'''


def write_plugin(path: Path, name: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PLUGIN.format(name=name, cls="".join(w.title() for w in name.split("_")) + "Settings"))
    return path


def test_plugin_method_expands_into_cells(write_suite, tmp_path, registry_restored):
    write_plugin(tmp_path / "plugins" / "probe_plugin.py", "probe_from_plugin")
    suite = load_suite(write_suite(plugins="plugins/probe_plugin.py", search={"trials": 2},
                                   grid=[{"method": "probe_from_plugin", "settings": {"scale": 2.0},
                                          "training": {"lr": 1e-3},  # the plugin declares no lr_range
                                          "search": {"settings.width": {"low": 2, "high": 16, "log": True}}},
                                         {"method": "full"}]))
    assert suite.plugins == (str((tmp_path / "plugins" / "probe_plugin.py").resolve()),)

    plugin_cell, full = expand_grid(suite)

    assert (plugin_cell.method, plugin_cell.label, plugin_cell.runnable) == ("probe_from_plugin", "sent/probe_from_plugin seed0", True)
    assert (plugin_cell.settings.width, plugin_cell.settings.scale) == (4, 2.0)
    assert plugin_cell.space == (SearchParam("settings.width", low=2, high=16, log=True, integer=True),)
    assert len(plugin_cell.slots()) == 2
    trial = plugin_cell.with_values({"settings.width": 8.0})
    assert (trial.settings.width, trial.settings.scale) == (8, 2.0)
    assert full.method == "full"


def test_validate_lists_plugin_cells(write_suite, tmp_path, capsys, registry_restored):
    write_plugin(tmp_path / "my_method.py", "cli_plugin_method")
    path = write_suite(plugins=["my_method.py"], grid=[{"method": "cli_plugin_method"}])
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+\d+\s", line)]
    assert rows == [["1", "sent", "cli_plugin_method", "-", "none", "0", "1", "run"]]


def test_plugins_import_once_per_process(tmp_path, registry_restored):
    plugin = write_plugin(tmp_path / "once.py", "once_plugin_method")
    suite_file = str(tmp_path / "suite.yaml")
    (first,) = load_plugins(["once.py"], suite_file)
    (again,) = load_plugins([str(plugin)], suite_file)  # a second import would register the method twice
    assert first is again
    assert first.__name__ == module_name(str(plugin.resolve()))
    assert methods.get_method("once_plugin_method").settings_cls.__module__ == first.__name__


def test_plugins_with_the_same_file_name_do_not_collide(tmp_path, registry_restored):
    a = write_plugin(tmp_path / "a" / "plugin.py", "plugin_method_a")
    b = write_plugin(tmp_path / "b" / "plugin.py", "plugin_method_b")
    mod_a, mod_b = load_plugins([str(a), str(b)], str(tmp_path / "suite.yaml"))
    assert mod_a is not mod_b
    assert {"plugin_method_a", "plugin_method_b"} <= set(methods.all_methods())


def test_a_failed_plugin_fails_the_same_way_again(tmp_path, registry_restored):
    """A plugin that registered a method and then raised must not turn into 'registered twice' on a retry."""
    broken = tmp_path / "half.py"
    broken.write_text(PLUGIN.format(name="half_plugin_method", cls="HalfSettings") + "raise ImportError('needs a GPU')\n")
    for _ in range(2):
        with pytest.raises(SuiteError) as info:
            load_plugins(["half.py"], str(tmp_path / "suite.yaml"))
        assert (info.value.field, info.value.found, info.value.hint) == \
            ("plugins[0]", "<ImportError: needs a GPU>", f"fix the plugin {broken.resolve()}")


# --------------------------------------------------------------------------- equal-budget search, first-seed protocol


def test_a_search_without_space_searches_each_methods_own_lr_range(cells_of, base_suite):
    from methods import get_method

    grid = base_suite["grid"] + [{"method": "head_only"}, {"method": "ia3", "training": {"lr": 0.01}}]
    cells = cells_of(search={"trials": 4}, grid=grid)
    for c in cells:
        if c.method in ("full", "lora"):
            low, high = get_method(c.method).lr_range
            assert by_name(c) == {"lr": SearchParam("lr", low, high, log=True)} and c.trials == 4
        else:  # head_only: only the head trains (at head_lr); ia3: the entry fixed its lr
            assert (c.space, c.trials) == ((), 1), c.method


def test_a_space_naming_lr_replaces_the_method_ranges(cells_of):
    cells = cells_of(search={"trials": 2, "space": SPACE})
    assert all(by_name(c)["lr"] == SearchParam("lr", 1e-5, 1e-2, log=True) for c in cells)


def test_first_seed_protocol_gives_the_other_seeds_one_rerun_of_the_first(cells_of, base_suite):
    training = dict(base_suite["training"], seeds=[3, 1, 2])
    cells = cells_of(search={"trials": 3, "protocol": "first_seed"}, training=training,
                     grid=[{"method": "lora", "rank": 2}, {"method": "head_only"}])
    lora = [c for c in cells if c.method == "lora"]
    assert [(c.seed, c.trials, bool(c.space), c.search_from) for c in lora] == [
        (3, 3, True, None), (1, 1, False, lora[0].id), (2, 1, False, lora[0].id)]
    assert all(c.search_from is None and c.trials == 1 for c in cells if c.method == "head_only")
    per_seed = cells_of(search={"trials": 3}, training=training, grid=[{"method": "lora", "rank": 2}])
    assert [c.trials for c in per_seed] == [3, 3, 3] and lora[1].id != per_seed[1].id


def test_a_bad_protocol_is_a_suite_error(write_suite):
    with pytest.raises(SuiteError, match="search.protocol"):
        load_suite(write_suite(search={"trials": 2, "protocol": "first"}))


def test_a_plugin_method_without_lr_range_needs_a_searched_lr(tmp_path, write_suite, base_suite, registry_restored):
    plugin = tmp_path / "norange.py"
    plugin.write_text(
        "from dataclasses import dataclass\n"
        "from methods import freeze_all_but_heads, register\n"
        "@dataclass(frozen=True)\nclass S:\n    pass\n"
        "def apply(model, settings, ctx):\n    freeze_all_but_heads(model, ctx)\n    return model\n"
        "register('norange', S, apply)\n")
    path = write_suite(grid=[{"method": "norange"}], search={"trials": 2}, plugins=[str(plugin)])
    with pytest.raises(SuiteError, match=r"grid\[0\].search.lr.*declares no lr_range"):
        expand_grid(load_suite(path))


def test_ids_of_a_files_suite_do_not_depend_on_where_the_checkout_lives(tmp_path, base_suite):
    """Data paths enter fingerprints and cell ids relative to the suite file (a symlinked data
    folder is not resolved), so results recorded in one checkout match the same suite in another."""
    rows = "text,label\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(8))
    ids = []
    for where in ("one", "two/deeper"):
        repo = tmp_path / where / "repo"
        (repo / "offline").mkdir(parents=True)
        (tmp_path / where / "shared").mkdir()
        (tmp_path / where / "shared" / "d.csv").write_text(rows)
        suite = dict(base_suite, tasks=[{"name": "t", "data": {"files": {s: "../../shared/d.csv" for s in
                                                                          ("train", "validation", "test")}}}])
        path = repo / "offline" / "s.yaml"
        path.write_text(yaml.safe_dump(suite))
        loaded = load_suite(path)
        ids.append((loaded.fingerprint(), [c.id for c in expand_grid(loaded)]))
    assert ids[0] == ids[1]
    moved = tmp_path / "one" / "repo" / "offline" / "other.yaml"  # another relative place: another suite
    moved.write_text(yaml.safe_dump(dict(base_suite, tasks=[{"name": "t", "data": {"files": {
        s: str(tmp_path / "two" / "deeper" / "shared" / "d.csv") for s in ("train", "validation", "test")}}}])))
    assert load_suite(moved).fingerprint() != ids[0][0]
