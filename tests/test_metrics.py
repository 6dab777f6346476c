"""Metrics against numbers worked out by hand, and their errors."""
from __future__ import annotations

import pytest

from harness.metrics import METRICS, Metric, normalize_answer, score

REFS = ["a", "a", "b", "b", "c"]
PREDS = ["a", "b", "b", "b", "a"]


def test_accuracy_by_hand():
    assert score("accuracy", PREDS, REFS) == pytest.approx(3 / 5)
    assert score("accuracy", ["x"], ["x"]) == 1.0
    assert score("accuracy", ["x", "y"], ["y", "x"]) == 0.0


def test_macro_f1_by_hand():
    # a: tp 1, predicted 2, true 2 -> P 1/2 R 1/2 F1 1/2
    # b: tp 2, predicted 3, true 2 -> P 2/3 R 1   F1 4/5
    # c: tp 0                       -> F1 0
    assert score("macro_f1", PREDS, REFS) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_macro_f1_counts_classes_only_predicted():
    # x: tp 1, predicted 1, true 2 -> F1 2/3; y: never true, predicted once -> F1 0
    assert score("macro_f1", ["x", "y"], ["x", "x"]) == pytest.approx((2 / 3 + 0) / 2)


def test_macro_f1_differs_from_accuracy_on_imbalance():
    refs = ["maj"] * 9 + ["min"]
    preds = ["maj"] * 10  # always the majority class
    assert score("accuracy", preds, refs) == pytest.approx(0.9)
    # maj: tp 9, predicted 10, true 9 -> 18/19; min: 0
    assert score("macro_f1", preds, refs) == pytest.approx((18 / 19) / 2)


@pytest.mark.parametrize("raw, expected", [
    (" 68\nQuestion: What is 1 + 2?", "68"),
    ("Paris.", "paris"),
    ("  New   York\tCity  ", "new york city"),
    ("The Answer. ", "the answer"),
    ("Straße", "strasse"),  # casefold, not lower
    ("", ""),
])
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_exact_match_by_hand():
    preds = [" 68\nQuestion: What is 2 + 2?", "69", "The  Answer."]
    refs = ["68", "68", "the answer"]
    assert score("exact_match", preds, refs) == pytest.approx(2 / 3)


def test_unknown_metric_suggests_the_closest():
    with pytest.raises(ValueError, match="did you mean 'accuracy'"):
        score("acuracy", ["a"], ["a"])


@pytest.mark.parametrize("name", sorted(METRICS))
def test_length_mismatch_and_empty_input_are_errors(name):
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        score(name, ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty"):
        score(name, [], [])


def test_registry_declares_direction_and_task_types():
    assert {"accuracy", "macro_f1", "exact_match"} <= set(METRICS)
    assert all(isinstance(m, Metric) and m.higher_is_better and m.description for m in METRICS.values())
    assert METRICS["exact_match"].task_types == ("causal_lm",)
    assert "causal_lm" not in METRICS["accuracy"].task_types
