"""Bad suites are refused before anything runs, with a message a user can act on.

Every bad suite goes through the CLI (`python -m harness validate`): exit code 2, and
stderr names the suite file, the field path inside it, the value found and, where one
can be guessed, a did-you-mean hint.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.cli import main
from tests.conftest import DROP

CSV_OK = "text,label\nsuch a good film,pos\nawful,neg\n"
CSV_SENTENCE = "sentence,label\nsuch a good film,pos\nawful,neg\n"
FILES_OK = {"train.csv": CSV_OK, "validation.csv": CSV_OK, "test.csv": CSV_OK}
FILES_DATA = {"files": {"train": "train.csv", "validation": "validation.csv", "test": "test.csv"}}


@dataclass
class Bad:
    """A bad suite: dotted-path changes to the tiny suite (or raw YAML text), files to write beside it,
    the field path the error must name and the texts it must contain (tmp paths shown as <TMP>)."""

    id: str
    changes: dict | str
    field: str
    expect: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)


def _apply(data: dict, changes: dict) -> dict:
    """{"training.steps": 5, "grid.1.rank": DROP} -> edited copy; list items by index."""
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        elif value is DROP:
            del node[last]
        else:
            node[last] = value
    return data


BAD = [
    # --- file and top level
    Bad("yaml-syntax", "schema_version: 1\nname: tiny\ntraining:\n  steps: 4\n    lr: 0.1\n",
        "line 5, column 7", ("expected valid YAML", "mapping values are not allowed here")),
    Bad("top-level-list", "- schema_version: 1\n- name: tiny\n",
        "<top level>", ("expected a mapping", "<list: [{'schema_version': 1}, {'name': 'tiny'}]>")),
    Bad("empty-file", "", "<top level>", ("expected a mapping", "found <empty>")),
    Bad("missing-schema-version", {"schema_version": DROP},
        "schema_version", ("found <missing>", "this field is required")),
    Bad("wrong-schema-version", {"schema_version": 2},
        "schema_version", ("expected 1, found 2", "this harness reads schema_version 1")),
    Bad("misspelt-top-level-key", {"training": DROP, "trainng": {"steps": 4}},
        "trainng", ("unknown key 'trainng'", "did you mean 'training'?")),
    Bad("bad-suite-name", {"name": "my suite!"}, "name", ("found 'my suite!'", "results/<name>/")),
    # --- training
    Bad("misspelt-training-key", {"training.steps": DROP, "training.stpes": 4},
        "training.stpes", ("unknown key 'stpes'", "did you mean 'steps'?")),
    Bad("steps-wrong-type", {"training.steps": "ten"}, "training.steps", ("expected an integer", "found 'ten'")),
    Bad("batch-size-zero", {"training.batch_size": 0}, "training.batch_size", ("expected a positive number, found 0",)),
    Bad("lr-negative", {"training.lr": -1}, "training.lr", ("expected a positive number, found -1.0",)),
    Bad("warmup-negative", {"training.warmup_steps": -2}, "training.warmup_steps", ("expected a number >= 0, found -2",)),
    Bad("duplicate-seeds", {"training.seeds": [0, 1, 0]}, "training.seeds", ("expected distinct seeds, found [0, 1, 0]",)),
    Bad("batching-unknown", {"training.batching": "sorted"}, "training.batching",
        ("expected one of bucket, random", "found 'sorted'")),
    Bad("precision-misspelt", {"training.precision": "bf61"}, "training.precision",
        ("expected one of auto, bf16, fp32", "did you mean 'bf16'?")),
    Bad("compile-not-bool", {"training.compile": "yes"}, "training.compile", ("expected a bool", "found 'yes'")),
    Bad("grid-checkpointing-not-bool", {"grid.1.training": {"gradient_checkpointing": 1}},
        "grid[1].training.gradient_checkpointing", ("expected a bool", "found 1")),
    # --- grid
    Bad("empty-grid", {"grid": []}, "grid", ("expected a non-empty list of entries", "found []")),
    Bad("unknown-method", {"grid.1.method": "lorra"},
        "grid[1].method", ("found 'lorra'", "did you mean 'lora'?", "one of ", "full", "lora")),
    Bad("rank-on-full", {"grid.0.rank": 4},
        "grid[0].rank", ("method 'full' has none", "found [4]", "remove `rank` from this entry")),
    Bad("rank-zero", {"grid.1.rank": [0, 4]}, "grid[1].rank[0]", ("expected a positive integer, found 0",)),
    Bad("quant-fp8", {"grid.1.quant": "fp8"}, "grid[1].quant", ("expected one of none, int8, nf4", "found 'fp8'")),
    Bad("quant-nf8", {"grid.1.quant": ["none", "nf8"]}, "grid[1].quant[1]", ("found 'nf8'", "did you mean 'nf4'?")),
    Bad("unknown-method-setting", {"grid.1.settings": {"alpah": 8}},
        "grid[1].settings.alpah", ("unknown setting 'alpah' for method 'lora'", "did you mean 'alpha'?")),
    Bad("method-setting-wrong-type", {"grid.1.settings": {"alpha": "big"}},
        "grid[1].settings.alpha", ("found 'big'", "setting 'alpha' of method 'lora' must be float")),
    Bad("method-setting-out-of-range", {"grid.1.settings": {"dropout": 5}},
        "grid[1].settings", ("0 <= dropout < 1", "dropout=5")),
    Bad("misspelt-required-key", {"model": DROP, "modle": {"tiny": {"architecture": "bert"}}},
        "modle", ("unknown key 'modle'", "did you mean 'model'?")),
    Bad("misspelt-grid-key", {"grid.1.rnak": 4}, "grid[1].rnak", ("unknown key 'rnak'", "did you mean 'rank'?")),
    Bad("grid-entry-seeds", {"grid.1.training": {"seeds": [1]}},
        "grid[1].training.seeds", ("unknown key 'seeds'", "seeds are set once, in the suite-wide `training:`")),
    # --- model
    Bad("model-two-sources", {"model.hub": "prajjwal1/bert-tiny"},
        "model", ("exactly one of hub, path, package, tiny", "found <hub, tiny>")),
    Bad("model-no-source", {"model": {"revision": "main"}},
        "model", ("exactly one of hub, path, package, tiny", "found <none of them>")),
    Bad("model-path-missing", {"model": {"path": "./no-such-model"}},
        "model.path", ("found './no-such-model'", "resolved to <TMP>/no-such-model")),
    Bad("model-package-missing", {"model": {"package": "no_such_weights_pkg"}},
        "model.package", ("found 'no_such_weights_pkg'", "pip install no-such-weights-pkg")),
    Bad("tiny-architecture", {"model.tiny.architecture": "bart"},
        "model.tiny.architecture", ("found 'bart'", "did you mean 'bert'?")),
    # --- tasks
    Bad("unknown-task-type", {"task_type": "seq_class"},
        "task_type", ("expected one of seq_cls, causal_lm", "found 'seq_class'", "did you mean 'seq_cls'?")),
    Bad("empty-tasks", {"tasks": []}, "tasks", ("expected a non-empty list of tasks, found []",)),
    Bad("duplicate-task-names", {"tasks": [{"name": "sent", "data": {"synthetic": "sentiment"}},
                                           {"name": "sent", "data": {"synthetic": "topic"}}]},
        "tasks[1].name", ("expected a task name used once, found 'sent'",)),
    Bad("n-train-zero", {"tasks.0.data.n_train": 0}, "tasks[0].data.n_train", ("expected a positive number, found 0",)),
    Bad("unknown-generator", {"tasks.0.data.synthetic": "sentimnet"},
        "tasks[0].data.synthetic", ("found 'sentimnet'", "did you mean 'sentiment'?")),
    Bad("generator-wrong-task-type", {"tasks.0.data.synthetic": "addition"},
        "tasks[0].data.synthetic", ("found 'addition'", "sentiment", "topic")),
    Bad("data-file-missing", {"tasks.0.data": FILES_DATA},
        "tasks[0].data.files.train", ("<TMP>/train.csv",),
        files={"validation.csv": CSV_OK, "test.csv": CSV_OK}),
    Bad("data-column-missing", {"tasks.0.data": FILES_DATA},
        "tasks[0].data", ("text", "sentence", "label"),
        files={"train.csv": CSV_SENTENCE, "validation.csv": CSV_SENTENCE, "test.csv": CSV_SENTENCE}),
    Bad("data-file-extension", {"tasks.0.data": {"files": {"train": "train.txt", "validation": "validation.csv",
                                                           "test": "test.csv"}}},
        "tasks[0].data.files.train", ("train.txt", "jsonl", "parquet"),
        files={"train.txt": CSV_OK, "validation.csv": CSV_OK, "test.csv": CSV_OK}),
    Bad("unknown-column-role", {"tasks.0.data": {**FILES_DATA, "columns": {"txt": "sentence"}}},
        "tasks[0].data.columns.txt", ("unknown key 'txt'", "did you mean 'text'?"), files=FILES_OK),
    Bad("on-overlap-unknown", {"tasks.0.data.on_overlap": "fail"},
        "tasks[0].data.on_overlap", ("expected one of warn, error", "found 'fail'")),
    Bad("data-overlap-refused", {"tasks.0.data": {**FILES_DATA, "on_overlap": "error"}},
        "tasks[0].data.on_overlap", ("found <1 in test; e.g. 'Such a GOOD film'>", "set on_overlap: warn"),
        files={"train.csv": CSV_OK, "validation.csv": "text,label\nfine,pos\nawful?,neg\n",
               "test.csv": "text,label\n  Such a GOOD   film ,neg\nbad,neg\n"}),
    Bad("unknown-metric", {"tasks.0.metric": "acuracy"},
        "tasks[0].metric", ("found 'acuracy'", "did you mean 'accuracy'?")),
    Bad("metric-wrong-task-type", {"tasks.0.metric": "exact_match"},
        "tasks[0].metric", ("found 'exact_match'", "accuracy")),
    # --- probe
    Bad("probe-file-missing", {"probe": {"files": "no-such-probe.txt"}},
        "probe.files", ("found 'no-such-probe.txt'", "resolved to <TMP>/no-such-probe.txt")),
    Bad("probe-unknown-builtin", {"probe": {"builtin": "generel"}},
        "probe.builtin", ("found 'generel'", "did you mean 'general'?")),
    Bad("probe-two-sources", {"probe": {"builtin": "general", "hub": "wikitext"}},
        "probe", ("at most one of builtin, files, hub", "found <builtin, hub>")),
    # --- search: the top level
    Bad("search-misspelt-key", {"search": {"trails": 8}}, "search.trails", ("unknown key 'trails'", "did you mean 'trials'?")),
    Bad("search-trials-zero", {"search": {"trials": 0}},
        "search.trials", ("expected an integer >= 1, found 0", "e.g. `trials: 8`")),
    Bad("search-trials-not-int", {"search": {"trials": "many"}}, "search.trials", ("found 'many'", "e.g. `trials: 8`")),
    Bad("search-objective-unknown", {"search": {"objective": "accuracy"}},
        "search.objective", ("expected score or [score, peak_memory], found 'accuracy'", "`objective: [score, peak_memory]`")),
    Bad("search-objective-memory-alone", {"search": {"objective": ["peak_memory"]}},
        "search.objective", ("found ['peak_memory']", "`objective: score`, or `objective: [score, peak_memory]`")),
    Bad("search-sampler-unknown", {"search": {"sampler": "tpr"}},
        "search.sampler", ("expected one of tpe, random, found 'tpr'", "did you mean 'tpe'?")),
    # --- search: a parameter's spec
    Bad("param-misspelt-key", {"search": {"space": {"lr": {"low": 1e-5, "hihg": 1e-2}}}},
        "search.space.lr.hihg", ("unknown key 'hihg'", "did you mean 'high'?")),
    Bad("param-missing-high", {"search": {"space": {"lr": {"low": 1e-5}}}},
        "search.space.lr.high", ("expected a number, found <missing>", "a range needs both low and high")),
    Bad("param-low-not-below-high", {"search": {"space": {"lr": {"low": 1e-2, "high": 1e-3}}}},
        "search.space.lr.low", ("expected a number below high (0.001), found 0.01", "make low < high")),
    Bad("param-log-from-zero", {"search": {"space": {"weight_decay": {"low": 0, "high": 0.1, "log": True}}}},
        "search.space.weight_decay.low", ("expected a positive number (log: true", "found 0", "drop `log: true`")),
    Bad("param-log-not-bool", {"search": {"space": {"lr": {"low": 1e-5, "high": 1e-2, "log": "yes please"}}}},
        "search.space.lr.log", ("expected a boolean, found 'yes please'", "`log: true` samples log-uniformly")),
    Bad("param-choices-and-range", {"search": {"space": {"lr": {"choices": [1e-3, 1e-4], "low": 1e-5}}}},
        "search.space.lr", ("either choices or a range", "found <choices and low>", "drop low/high/log")),
    Bad("param-empty-choices", {"search": {"space": {"lr": {"choices": []}}}},
        "search.space.lr.choices", ("expected a non-empty list of values, found []", "e.g. `choices: [0.0, 0.1]`")),
    Bad("param-bound-not-a-number", {"search": {"space": {"lr": {"low": "tiny", "high": 1e-2}}}},
        "search.space.lr.low", ("expected a number, found 'tiny'", "{low: 1.0e-5, high: 1.0e-2, log: true}")),
    Bad("param-not-a-mapping", {"search": {"space": {"lr": 1e-3}}},
        "search.space.lr", ("found 0.001", "set it outside `search:`", "{choices: [0.0, 0.1]}")),
    Bad("param-int-field-float-bound", {"search": {"space": {"batch_size": {"low": 4, "high": 16.5}}}},
        "search.space.batch_size.high", ("expected an integer, found 16.5", "batch_size is a whole number")),
    Bad("param-lr-choice-negative", {"search": {"space": {"lr": {"choices": [1e-3, -1]}}}},
        "search.space.lr.choices[1]", ("expected a positive number, found -1", "lr must be above 0")),
    # --- search: which names a space may hold
    Bad("space-steps", {"search": {"space": {"steps": {"low": 10, "high": 100}}}},
        "search.space.steps", ("found 'steps'", "steps is the budget and must be equal for every method")),
    Bad("space-seeds", {"search": {"space": {"seeds": {"choices": [0, 1]}}}},
        "search.space.seeds", ("found 'seeds'", "set them with training.seeds")),
    Bad("space-misspelt-name", {"search": {"space": {"warmpu_steps": {"low": 0, "high": 20}}}},
        "search.space.warmpu_steps", ("found 'warmpu_steps'", "did you mean 'warmup_steps'?", "lr, warmup_steps")),
    Bad("space-unsearchable-training-field", {"search": {"space": {"max_length": {"low": 16, "high": 64}}}},
        "search.space.max_length", ("found 'max_length'", "max_length is not searchable: set it in `training:`")),
    Bad("space-settings-at-top-level", {"search": {"space": {"settings.dropout": {"choices": [0.0, 0.1]}}}},
        "search.space.settings.dropout", ("found 'settings.dropout'", "put method settings in the grid entry's `search:`")),
    # --- search: a grid entry's space
    Bad("entry-search-trials", {"grid.1.search": {"trials": 4}},
        "grid[1].search.trials", ("set search.trials at the top level: every method gets the same budget",)),
    Bad("entry-search-unknown-setting", {"grid.1.search": {"settings.alpah": {"low": 8, "high": 32}}},
        "grid[1].search.settings.alpah",
        ("found 'settings.alpah'", "did you mean 'settings.alpha'?", "method 'lora' has settings alpha, dropout, targets")),
    Bad("entry-search-setting-of-settingless-method", {"grid.0.search": {"settings.alpha": {"low": 8, "high": 32}}},
        "grid[0].search.settings.alpha", ("found 'settings.alpha'", "method 'full' has no settings to search")),
    Bad("entry-search-rank", {"grid.1.search": {"settings.rank": {"choices": [2, 4]}}},
        "grid[1].search.settings.rank", ("found 'settings.rank'", "rank is a grid axis")),
    Bad("entry-search-int-setting-float-bound", {"grid.1": {"method": "prefix_tuning", "search": {
        "settings.projection": {"low": 0, "high": 8.5}}}},
        "grid[1].search.settings.projection.high", ("expected an integer, found 8.5", "'projection' of method 'prefix_tuning'")),
    Bad("entry-search-setting-out-of-range", {"grid.1.search": {"settings.dropout": {"low": 0.0, "high": 1.0}}},
        "grid[1].search.settings.dropout.high", ("found 1.0", "0 <= dropout < 1")),
    Bad("entry-search-setting-wrong-type", {"grid.1.search": {"settings.alpha": {"choices": [8, "big"]}}},
        "grid[1].search.settings.alpha.choices[1]", ("found 'big'", "setting 'alpha' of method 'lora' must be float")),
    # --- plugins
    Bad("plugin-missing", {"plugins": ["no_such_plugin.py"]},
        "plugins[0]", ("expected an existing .py file", "found 'no_such_plugin.py'", "resolved to <TMP>/no_such_plugin.py")),
    Bad("plugin-not-python", {"plugins": "notes.txt"},
        "plugins[0]", ("expected an existing .py file", "found 'notes.txt'", "resolved to <TMP>/notes.txt"),
        files={"notes.txt": "not a plugin\n"}),
    Bad("plugin-raises", {"plugins": "broken.py"},
        "plugins[0]", ("expected a plugin that imports", "found <RuntimeError: no GPU here>", "fix the plugin <TMP>/broken.py"),
        files={"broken.py": "raise RuntimeError('no GPU here')\n"}),
    Bad("plugin-syntax-error", {"plugins": ["broken_syntax.py"]},
        "plugins[0]", ("found <SyntaxError: ", "broken_syntax.py, line 1", "fix the plugin"),
        files={"broken_syntax.py": "def register(:\n"}),
    Bad("plugin-reuses-builtin-name", {"plugins": ["lora_again.py"]},
        "plugins[0]", ("found <ValueError: method 'lora' is registered twice>", "fix the plugin <TMP>/lora_again.py"),
        files={"lora_again.py": "from methods import get_method, register\n"
                                "lora = get_method('lora')\n"
                                "register('lora', lora.settings_cls, lora.apply)\n"}),
]


def _validate(capsys, path: Path) -> tuple[int, str, str]:
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("bad", BAD, ids=[b.id for b in BAD])
def test_bad_suite_is_refused_with_a_precise_message(bad: Bad, base_suite, write_suite, tmp_path, capsys):
    for name, text in bad.files.items():
        (tmp_path / name).write_text(text)
    data = bad.changes if isinstance(bad.changes, str) else _apply(base_suite, bad.changes)
    path = write_suite(data)

    code, out, err = _validate(capsys, path)

    assert code == 2, f"exit code {code}; stderr: {err!r}"
    assert out == ""  # nothing printed as if the suite were fine
    assert err.startswith(f"error: {path}: {bad.field}"), err
    assert err.count("\n") == 1, err  # one line, no traceback
    shown = err.replace(str(path), "<SUITE>").replace(str(tmp_path.resolve()), "<TMP>").replace(str(tmp_path), "<TMP>")
    for text in bad.expect:
        assert text in shown, f"{text!r} not in {shown!r}"


def test_enough_distinct_bad_suites():
    assert len({b.id for b in BAD}) == len(BAD) >= 25


def test_missing_suite_file(tmp_path, capsys):
    path = tmp_path / "nope.yaml"
    code, out, err = _validate(capsys, path)
    assert code == 2
    assert err == f"error: {path}: <file>: expected an existing suite file, found <missing> (check the path)\n"


def test_run_with_misspelt_key_touches_nothing(write_suite, base_suite, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `results/` and a default mlflow.db would land here
    base_suite["training"]["stpes"] = base_suite["training"].pop("steps")
    path = write_suite(base_suite)
    db = tmp_path / "m.db"

    code = main(["run", str(path), "--tracking-uri", f"sqlite:///{db}", "--results", str(tmp_path / "results")])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {path}: training.stpes: ") and "did you mean 'steps'?" in err, err
    assert not db.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suite.yaml"]  # no store, no artifacts, no results


def test_valid_suite_prints_its_grid(write_suite, capsys):
    path = write_suite()
    code, out, err = _validate(capsys, path)
    assert (code, err) == (0, "")
    assert f"{path.resolve()}: valid (schema_version 1, fingerprint " in out
    assert "model: tiny:architecture=bert," in out and "task type: seq_cls" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+\d+\s", line)]
    # columns: #, task, method, rank, quant, seed, trials, status
    assert rows == [["1", "sent", "full", "-", "none", "0", "1", "run"],
                    ["2", "sent", "lora", "2", "none", "0", "1", "run"],
                    ["3", "sent", "lora", "4", "none", "0", "1", "run"]]
    assert out.rstrip().endswith("3 cells: 3 to run, 0 n/a; 3 trials")


def test_na_cell_is_listed_not_refused(write_suite, capsys):
    path = write_suite(grid=[{"method": "full", "quant": ["none", "nf4"]}], training={"steps": 4, "seeds": [0, 1]})
    code, out, err = _validate(capsys, path)
    assert (code, err) == (0, "")
    assert out.count("n/a: full does not support quant nf4 (supports: none)") == 2
    assert out.rstrip().endswith("4 cells: 2 to run, 2 n/a; 2 trials")


def test_renamed_columns_validate(write_suite, base_suite, tmp_path, capsys):
    for split in ("train", "validation", "test"):
        (tmp_path / f"{split}.csv").write_text(CSV_SENTENCE)
    base_suite["tasks"][0]["data"] = {**FILES_DATA, "columns": {"text": "sentence"}}
    code, out, err = _validate(capsys, write_suite(base_suite))
    assert (code, err) == (0, "")
    assert out.rstrip().endswith("3 cells: 3 to run, 0 n/a; 3 trials")
