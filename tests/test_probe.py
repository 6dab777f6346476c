"""Forgetting-probe texts: the built-in corpus, local files, a local 'hub' dataset, and suite checks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import harness
from harness.errors import SuiteError
from harness.probe import check_probe, probe_texts
from harness.suite import ProbeSpec

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
