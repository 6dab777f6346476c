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
    assert rows == [["1", "sent", "full", "-", "none", "0", "run"],
                    ["2", "sent", "lora", "2", "none", "0", "run"],
                    ["3", "sent", "lora", "4", "none", "0", "run"]]
    assert out.rstrip().endswith("3 cells: 3 to run, 0 n/a")


def test_na_cell_is_listed_not_refused(write_suite, capsys):
    path = write_suite(grid=[{"method": "full", "quant": ["none", "nf4"]}], training={"steps": 4, "seeds": [0, 1]})
    code, out, err = _validate(capsys, path)
    assert (code, err) == (0, "")
    assert out.count("n/a: full does not support quant nf4 (supports: none)") == 2
    assert out.rstrip().endswith("4 cells: 2 to run, 2 n/a")


def test_renamed_columns_validate(write_suite, base_suite, tmp_path, capsys):
    for split in ("train", "validation", "test"):
        (tmp_path / f"{split}.csv").write_text(CSV_SENTENCE)
    base_suite["tasks"][0]["data"] = {**FILES_DATA, "columns": {"text": "sentence"}}
    code, out, err = _validate(capsys, write_suite(base_suite))
    assert (code, err) == (0, "")
    assert out.rstrip().endswith("3 cells: 3 to run, 0 n/a")
