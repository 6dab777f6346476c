"""Forgetting probes: the texts (built-in corpus, local files, a local 'hub' dataset), the
probe task encoders' forgetting is measured on, and suite checks of both."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import harness
from harness.errors import SuiteError
from harness.probe import TASK_SEED, check_probe, probe_task_name, probe_texts, task_probe
from harness.suite import DataSpec, ProbeSpec, TaskSpec

SUITE = "/home/me/suites/study.yaml"
ASSET = Path(harness.__file__).parent / "assets" / "probe_general.txt"


def test_builtin_general_is_the_first_non_empty_lines_of_the_asset():
    lines = [line.strip() for line in ASSET.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts, fp = probe_texts(ProbeSpec(builtin="general", n_texts=10))
    assert texts == tuple(lines[:10])
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert probe_texts(ProbeSpec(builtin="general", n_texts=10)) == (texts, fp)  # deterministic
    assert probe_texts(ProbeSpec(builtin="general", n_texts=11))[1] != fp


def test_builtin_corpus_is_varied_prose():
    texts, _ = probe_texts(ProbeSpec(builtin="general", n_texts=100))
    assert len(set(texts)) == len(texts)  # no repeated line
    assert all(t[0].isupper() and t.endswith(".") and len(t.split()) >= 8 for t in texts)
    assert len({w.lower() for t in texts for w in t.split()}) > 800  # many topics, not one template


def test_check_probe_unknown_builtin_suggests_the_closest():
    with pytest.raises(SuiteError) as err:
        check_probe(ProbeSpec(builtin="generl"), SUITE)
    msg = str(err.value)
    assert SUITE in msg and "probe.builtin" in msg and "'generl'" in msg and "did you mean 'general'" in msg
    with pytest.raises(ValueError, match="unknown built-in probe 'generl'"):
        probe_texts(ProbeSpec(builtin="generl"))


def test_check_probe_asks_for_no_more_texts_than_exist(tmp_path):
    check_probe(ProbeSpec(builtin="general", n_texts=120), SUITE)
    with pytest.raises(SuiteError) as err:
        check_probe(ProbeSpec(builtin="general", n_texts=5000), SUITE)
    assert "probe.n_texts" in str(err.value) and "5000" in str(err.value)
    with pytest.raises(ValueError, match="n_texts is 5000"):
        probe_texts(ProbeSpec(builtin="general", n_texts=5000))


def test_files_give_non_empty_lines_in_order(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("first line\n\n   \nsecond line\n")
    b.write_text("  third line  \nfourth line\n")
    spec = ProbeSpec(builtin=None, files=(str(a), str(b)), n_texts=3)
    check_probe(spec, SUITE)
    texts, fp = probe_texts(spec)
    assert texts == ("first line", "second line", "third line")
    assert fp != probe_texts(ProbeSpec(builtin="general", n_texts=3))[1]
    with pytest.raises(SuiteError, match="probe.n_texts"):
        check_probe(ProbeSpec(builtin=None, files=(str(a), str(b)), n_texts=5), SUITE)


def test_check_probe_missing_file(tmp_path):
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(SuiteError) as err:
        check_probe(ProbeSpec(builtin=None, files=(missing,)), SUITE)
    msg = str(err.value)
    assert SUITE in msg and "probe.files" in msg and missing in msg


def test_hub_probe_from_a_local_dataset_directory(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    folder = tmp_path / "wiki"
    folder.mkdir()
    rows = [{"body": f"Line number {i}.", "id": i} for i in range(6)]
    rows.insert(1, {"body": "   ", "id": -1})  # blank texts are skipped
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = ProbeSpec(builtin=None, hub=str(folder), split="train", column="body", n_texts=3)
    check_probe(spec, SUITE)  # nothing to check offline
    assert probe_texts(spec)[0] == ("Line number 0.", "Line number 1.", "Line number 2.")
    with pytest.raises(ValueError, match="no column 'text'.*body, id"):
        probe_texts(ProbeSpec(builtin=None, hub=str(folder), split="train", n_texts=3))


# --------------------------------------------------------------------------- the probe task (encoders' forgetting)


def _task(name: str, **data) -> TaskSpec:
    return TaskSpec(name, DataSpec(**data), "accuracy")


def test_the_probe_task_is_never_the_synthetic_sentiment_it_would_measure_against():
    sentiment = _task("s", source="synthetic", generator="sentiment")
    topic = _task("t", source="synthetic", generator="topic")
    ag_news = _task("news", source="hub", hub="ag_news")
    assert probe_task_name(ProbeSpec(), [sentiment]) == "topic"
    assert probe_task_name(ProbeSpec(), [ag_news, sentiment]) == "topic"
    assert probe_task_name(ProbeSpec(), [topic]) == "sentiment"
    assert probe_task_name(ProbeSpec(), [_task("tw", source="synthetic", generator="twist")]) == "topic"  # sentiment too
    assert probe_task_name(ProbeSpec(), [ag_news]) == "sentiment"  # a real topic dataset gets sentiment
    assert probe_task_name(ProbeSpec(task="topic"), [topic]) == "topic"  # named: as named


def test_task_probe_batches_the_generators_rows_with_their_labels():
    from harness import data, models
    from tests.tiny import TINY

    tok = models.load_tokenizer(models.locate(TINY["seq_cls"]))
    spec = ProbeSpec(task="topic", task_train=40, task_test=20, max_length=12)
    tp = task_probe(spec, [], tok)
    assert tp.name == "topic" and tp.label_names == tuple(sorted(data.TOPICS))
    assert [len(b["input_ids"]) for b in tp.train_batches] == [16, 16, 8] and len(tp.test_batches) == 2
    assert max(b["input_ids"].shape[1] for b in tp.train_batches + tp.test_batches) <= 12
    assert tp.train_labels.shape == (40,) and tp.test_labels.shape == (20,)
    rows = data.load_task(_task("x", source="synthetic", generator="topic", n_train=40, n_validation=1, n_test=20,
                                seed=TASK_SEED), "seq_cls")
    # shortest first (stable), each text with its own label
    ids = [tok(r["text"], truncation=True, max_length=12)["input_ids"] for r in rows.train]
    order = sorted(range(40), key=lambda i: len(ids[i]))
    assert [tp.label_names[i] for i in tp.train_labels] == [rows.train[i]["label"] for i in order]
    got = [row[mask.bool()].tolist() for b in tp.train_batches for row, mask in zip(b["input_ids"], b["attention_mask"])]
    assert got == [ids[i] for i in order]
    again = task_probe(spec, [], tok)
    assert again.fingerprint == tp.fingerprint and torch.equal(again.test_labels, tp.test_labels)  # deterministic
    assert task_probe(ProbeSpec(task="topic", task_train=40, task_test=21), [], tok).fingerprint != tp.fingerprint


@pytest.mark.parametrize("probe,field,found", [
    ({"task": "topc"}, "probe.task", "did you mean 'topic'"),
    ({"task": "addition"}, "probe.task", "expected one of sentiment, topic"),
    ({"task": ["topic"]}, "probe.task", "expected one of sentiment, topic"),
    ({"task_train": 8}, "probe.task_train", "expected an integer >= 16, found 8"),
    ({"task_test": 0}, "probe.task_test", "expected an integer >= 16, found 0"),
    ({"task_test": "many"}, "probe.task_test", "expected an integer, found 'many'"),
    ({"taks": "topic"}, "probe.taks", "did you mean 'task'"),
])
def test_suite_rejects_a_bad_probe_task(write_suite, probe, field, found):
    from harness.suite import load_suite

    with pytest.raises(SuiteError) as err:
        load_suite(write_suite(probe=probe))
    assert f"{field}: expected" in str(err.value) and found in str(err.value)


def test_suite_probe_task_fields_and_their_defaults(write_suite):
    from harness.suite import load_suite

    assert load_suite(write_suite()).probe == ProbeSpec()
    spec = load_suite(write_suite(probe={"task": "sentiment", "task_train": 64, "task_test": 32})).probe
    assert (spec.task, spec.task_train, spec.task_test) == ("sentiment", 64, 32)
    assert load_suite(write_suite(probe={"task": None})).probe.task is None  # empty: automatic
