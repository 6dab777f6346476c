"""measure.once_per_worker: what a worker measures once and reuses across its trials, and why the
keys the runner gives it may leave the seed (and the learning rate) out."""
from __future__ import annotations

import pytest

from harness import measure, models, probe
from harness.data import collate
from harness.suite import ProbeSpec
from tests import tiny


@pytest.fixture(autouse=True)
def _empty_cache(monkeypatch):
    monkeypatch.setattr(measure, "_WORKER_CACHE", {})


def test_computes_once_per_key_and_keeps_the_newest():
    calls = []

    def compute(value):
        return lambda: calls.append(value) or value

    assert measure.once_per_worker(("a", 1), compute("first")) == "first"
    assert measure.once_per_worker(("a", 1), compute("second")) == "first"  # not computed again
    assert measure.once_per_worker(("a", 2), compute("other")) == "other"
    assert calls == ["first", "other"]
    for i in range(measure.WORKER_CACHE_KEPT):
        measure.once_per_worker(("fill", i), compute(i))
    assert len(measure._WORKER_CACHE) == measure.WORKER_CACHE_KEPT and ("a", 1) not in measure._WORKER_CACHE
    assert measure.once_per_worker(("a", 1), compute("again")) == "again"  # the oldest was dropped


@pytest.mark.parametrize("task_type", ["seq_cls", "causal_lm"])
def test_the_base_reading_does_not_depend_on_the_seed(task_type):
    """The seeded part of a base is its new head, and the probe reads no head of its own."""
    readings = []
    for seed in (0, 1):
        base, tok = tiny.base_model(task_type)
        models.init_head(base, seed)
        rows = [{"input_ids": tok(t)["input_ids"]} for t in ("a probe text", "another text to read", "x", "one more")]
        batches = [collate(rows, tok.pad_token_id)]
        task = probe.task_probe(ProbeSpec(task_train=16, task_test=16), (), tok) if task_type == "seq_cls" else None
        readings.append(measure.read_probe(base, batches, task_type, tiny.CPU, task=task))
    first, second = readings
    if task_type == "seq_cls":
        assert first.task_accuracy == second.task_accuracy and (first.features == second.features).all()
    else:
        assert first.loss == second.loss


def test_the_flop_count_does_not_depend_on_the_seed():
    counts = []
    for seed in (0, 1):
        model, tok, _, _ = tiny.build("seq_cls", "lora", rank=4)
        models.init_head(model, seed)
        counts.append(measure.flops_per_token(model, tiny.examples(tok, "seq_cls"), 4, tok.pad_token_id, tiny.CPU))
    assert counts[0] == counts[1]
