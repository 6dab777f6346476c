"""Task metrics, defined once and computed offline.

Every metric takes (predictions, references) and returns a float; it declares whether
higher is better (the report sorts by it) and which task types it fits (the suite check
rejects, say, exact_match on a classification task).  Pure Python on purpose:
the `evaluate` library's `load` fetches metric code from the Hugging Face Hub and fails offline.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from harness.errors import did_you_mean


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[Sequence, Sequence], float]  # (predictions, references) -> float
    higher_is_better: bool
    description: str
    task_types: tuple[str, ...] = ("seq_cls", "causal_lm")  # task types the metric is meaningful for


def _pairs(predictions: Sequence, references: Sequence) -> tuple[list, list]:
    preds, refs = list(predictions), list(references)
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references: they must pair up one to one")
    if not preds:
        raise ValueError("no predictions to score: the split is empty")
    return preds, refs


def accuracy(predictions: Sequence, references: Sequence) -> float:
    preds, refs = _pairs(predictions, references)
    return sum(p == r for p, r in zip(preds, refs)) / len(refs)


def macro_f1(predictions: Sequence, references: Sequence) -> float:
    """Unweighted mean of per-class F1 over every class seen in references or predictions.

    A class only ever predicted (never true) counts with F1 = 0, so spraying a bogus
    label is penalised rather than ignored.
    """
    preds, refs = _pairs(predictions, references)
    tp = Counter(r for p, r in zip(preds, refs) if p == r)
    n_pred, n_true = Counter(preds), Counter(refs)
    classes = set(n_pred) | set(n_true)
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (n_pred + n_true); 0 when precision + recall = 0
    return sum(2 * tp[c] / (n_pred[c] + n_true[c]) for c in classes) / len(classes)


_SPACES = re.compile(r"\s+")


def normalize_answer(text: str) -> str:
    """The comparable core of a generated answer.

    Generation runs on past the answer (a newline and the next question is typical), so
    only the first line counts; case, spacing and a closing full stop do not.
    """
    first_line = str(text).split("\n", 1)[0]
    return _SPACES.sub(" ", first_line.strip()).casefold().rstrip(".").rstrip()


def exact_match(predictions: Sequence, references: Sequence) -> float:
    preds, refs = _pairs(predictions, references)
    return sum(normalize_answer(p) == normalize_answer(r) for p, r in zip(preds, refs)) / len(refs)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", accuracy, True, "fraction of examples whose predicted label equals the true label", ("seq_cls",)),
        Metric("macro_f1", macro_f1, True, "mean per-class F1 over the classes in references and predictions", ("seq_cls",)),
        Metric("exact_match", exact_match, True,
               "fraction of generated answers equal to the reference after normalize_answer (first line, "
               "whitespace collapsed, case-folded, trailing '.' dropped)", ("causal_lm",)),
    )
}


def get_metric(name: str) -> Metric:
    """The metric called `name`; a ValueError with the closest known name otherwise."""
    if name not in METRICS:
        hint = did_you_mean(name, METRICS)
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}" + (f" ({hint})" if hint else ""))
    return METRICS[name]


def score(name: str, predictions: Sequence, references: Sequence) -> float:
    return float(get_metric(name).fn(predictions, references))


# Metrics that are the mean of a per-example 0/1 outcome, so a report can resample examples.
PER_EXAMPLE: dict[str, Callable[[object, object], bool]] = {
    "accuracy": lambda p, r: p == r,
    "exact_match": lambda p, r: normalize_answer(p) == normalize_answer(r),
}


def outcomes(name: str, predictions: Sequence, references: Sequence) -> list[bool] | None:
    """Per-example correctness whose mean is the metric; None for a metric that is not such a mean (macro_f1)."""
    if name not in PER_EXAMPLE:
        return None
    preds, refs = _pairs(predictions, references)
    return [bool(PER_EXAMPLE[name](p, r)) for p, r in zip(preds, refs)]


def pack_outcomes(correct: Sequence[bool]) -> str:
    """`"<n>:<hex>"`: n outcomes packed 8 to a byte, first example in the highest bit.

    1,000 test examples take 254 characters: small enough for an MLflow tag and a
    runs.csv column, so a committed runs.csv alone lets the report resample examples.
    """
    bits = bytearray((len(correct) + 7) // 8)
    for i, c in enumerate(correct):
        if c:
            bits[i // 8] |= 0x80 >> (i % 8)
    return f"{len(correct)}:{bits.hex()}"


def unpack_outcomes(text: str) -> list[int]:
    """The inverse of pack_outcomes: a list of 0/1, one per example."""
    n_text, _, hexed = str(text).partition(":")
    n, bits = int(n_text), bytes.fromhex(hexed)
    if len(bits) != (n + 7) // 8:
        raise ValueError(f"packed outcomes {str(text)[:40]!r}...: {len(bits)} bytes cannot hold {n} outcomes")
    return [(bits[i // 8] >> (7 - i % 8)) & 1 for i in range(n)]
