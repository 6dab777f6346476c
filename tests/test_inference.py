"""Inference cost (harness/inference.py) for every registered method on the tiny models.

Each method x task type of the conformance suite: latency is measurable on the base, the
trained and the merged model; swapping in a second task's weights and back leaves the
model computing what it computed before, and switches between two resident sets without
copying; merged equals unmerged where the method merges.  Then the alternating latency
comparison: identical compute reads as a ratio near 1 whose interval holds 1, and the
order-statistic interval on fixed data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from harness import inference
from harness.inference import SwapTimes, latency_ms, swap_times, try_merge
from methods import Method, all_methods, get_method
from tests import tiny
from tests.conformance_specs import SPECS

CASES = [(name, t) for name, m in sorted(all_methods().items()) if name in SPECS for t in sorted(m.task_types)]
OWN_SAVED = [(name, t) for name, t in CASES
             if all_methods()[name].save is not None and all_methods()[name].save.__module__ != "methods._peft"]


def _positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


def _build(name, task_type):
    spec = SPECS[name]
    return tiny.build(task_type, name, rank=spec.rank, settings=spec.settings)


def _batch(tok):
    """Two probe rows of different lengths (right-padded), so padding is exercised too."""
    from harness.data import collate

    rows = [{"input_ids": tok("a probe sentence for outputs")["input_ids"]}, {"input_ids": tok("short one")["input_ids"]}]
    return collate(rows, tok.pad_token_id)


@torch.no_grad()
def _outputs(model, batch) -> torch.Tensor:
    model.eval()
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()


@pytest.mark.parametrize("name,task_type", CASES)
def test_latency_swap_and_merge(name, task_type, tmp_path, monkeypatch):
    method = get_method(name)
    base, tok = tiny.base_model(task_type)
    examples = tiny.examples(tok, task_type, n=4)
    assert _positive(latency_ms(base, examples, tiny.CPU, n=4, repeats=1))

    model, tok, _, _ = _build(name, task_type)
    # the second task on disk is the untrained adapter; the model then trains away from it
    batch = _batch(tok)
    initial = _outputs(model, batch)
    saved = None
    if method.save is not None:
        method.save(model, str(tmp_path))
        saved = str(tmp_path)
    tiny.run_steps(model, tok, task_type, lr=5e-2, on_step=method.on_step)
    assert _positive(latency_ms(model, examples, tiny.CPU, n=4, repeats=1))
    timed = inference.compare_latency(base, model, examples, tiny.CPU, rounds=2, n=2)
    assert all(map(_positive, (timed.ratio, timed.low, timed.high, timed.base_ms, timed.adapted_ms)))

    before = _outputs(model, batch)
    assert not torch.allclose(before, initial, atol=1e-4), "training did not move the outputs"
    keys = set(model.state_dict())
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    configs = set(getattr(model, "peft_config", {}))
    seen, where = [], []  # after each timed step: the outputs (the second task must really be served in between)
    timed = inference._timed  # and where the trained tensors live (switching must not copy them)
    trained = [p for p in model.parameters() if p.requires_grad]

    def spy(fn, device):
        ms = timed(fn, device)
        seen.append(_outputs(model, batch))
        where.append(tuple(p.data_ptr() for p in trained))
        return ms

    monkeypatch.setattr(inference, "_timed", spy)
    own = tuple(p.data_ptr() for p in trained)
    times = swap_times(method, model, saved, tiny.CPU, repeats=3)
    assert len(seen) == 1 + 3
    if not hasattr(model, "peft_config"):  # ours and full: switching points the model at two resident sets in turn
        assert where[1] == where[3] == own and where[0] == where[2] != own, "a switch copied tensors"
    if saved is not None:
        assert any(torch.allclose(s, initial, atol=1e-5) for s in seen), "the second task was never served"
    assert any(torch.allclose(s, before, atol=1e-5) for s in seen[1:]), "switching never served the task again"
    assert isinstance(times, SwapTimes)
    assert _positive(times.load_ms) and _positive(times.switch_ms), times
    expected_how = (inference.HOW_PEFT if hasattr(model, "peft_config") else
                    inference.HOW_TRAINED if method.save is not None else inference.HOW_FULL)
    assert times.how == expected_how
    assert torch.allclose(_outputs(model, batch), before, atol=1e-5), "swap_times changed the model's outputs"
    assert set(model.state_dict()) == keys
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    assert set(getattr(model, "peft_config", {})) == configs

    merged, reason = try_merge(method, model)
    if method.mergeable:
        assert reason is None and merged is not None, reason
        assert torch.allclose(_outputs(merged, batch), before, atol=1e-4)
        assert _positive(latency_ms(merged, examples, tiny.CPU, n=4, repeats=1))
        assert _positive(inference.compare_latency(base, merged, examples, tiny.CPU, rounds=2, n=2).ratio)
    else:
        assert merged is None and reason == f"{name} cannot merge"


@pytest.mark.parametrize("name,task_type", OWN_SAVED)
def test_copying_the_saved_tensors_in_gives_the_trained_model(name, task_type, tmp_path):
    """What swap_times times for our own methods really serves the saved task (piggyback: unpacked masks)."""
    method = get_method(name)
    model, tok, _, _ = _build(name, task_type)
    tiny.run_steps(model, tok, task_type, lr=5e-2, on_step=method.on_step)
    batch = _batch(tok)
    trained = _outputs(model, batch)
    method.save(model, str(tmp_path))
    fresh, *_ = _build(name, task_type)
    assert not torch.allclose(_outputs(fresh, batch), trained, atol=1e-4), "training did not move the outputs"
    fresh.load_state_dict(inference._read(method, fresh, str(tmp_path), set(fresh.state_dict())), strict=False)
    assert torch.allclose(_outputs(fresh, batch), trained, atol=1e-5)


def test_latency_uses_at_most_n_examples():
    model, tok = tiny.base_model("seq_cls")
    good = tiny.examples(tok, "seq_cls", n=3)
    # an id far outside the vocabulary: any forward over it fails
    poison = [{"input_ids": [10 ** 7], "label": 0}] * 5
    calls = []
    model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs["input_ids"].shape), with_kwargs=True)
    assert _positive(latency_ms(model, good + poison, tiny.CPU, n=3, warmup=2, repeats=1))
    assert len(calls) == (2 + 1) * 3 and all(shape[0] == 1 for shape in calls)  # warm-up passes, then the timed one
    calls.clear()
    assert _positive(latency_ms(model, good, tiny.CPU, n=100))
    assert len(calls) == (1 + 3) * 3
    with pytest.raises(ValueError):
        latency_ms(model, [], tiny.CPU)


def test_latency_restores_the_training_mode():
    model, tok = tiny.base_model("causal_lm")
    model.train()
    latency_ms(model, tiny.examples(tok, "causal_lm", n=2), tiny.CPU, n=2, warmup=0, repeats=1)
    assert model.training


@dataclass(frozen=True)
class _NoSettings:
    pass


def _boom(model):
    raise RuntimeError("cannot fold this")


def test_a_merge_failure_is_a_reason_not_an_exception():
    fake = Method(name="fake", settings_cls=_NoSettings, apply=lambda m, s, c: m, mergeable=True, merge=_boom)
    assert try_merge(fake, object()) == (None, "merge failed: RuntimeError: cannot fold this")
    plain = Method(name="plain", settings_cls=_NoSettings, apply=lambda m, s, c: m)
    assert try_merge(plain, object()) == (None, "plain cannot merge")


# --------------------------------------------------------------------------- alternating latency


def test_median_interval_on_fixed_data():
    low, high, cover = inference.median_interval([1.3, 0.9, 1.1, 1.0, 1.2])  # 5 values: [min, max], 1 - 2/32
    assert (low, high) == (0.9, 1.3) and cover == pytest.approx(0.9375)
    low, high, cover = inference.median_interval([float(x) for x in range(1, 7)])
    assert (low, high) == (1.0, 6.0) and cover == pytest.approx(1 - 2 / 64)
    # 9 values: [x_(2), x_(8)], coverage 1 - 2 (1 + 9) / 512 = 0.961; [x_(3), x_(7)] would hold only 0.820
    low, high, cover = inference.median_interval([9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0])
    assert (low, high) == (2.0, 8.0) and cover == pytest.approx(1 - 2 * 10 / 512)
    # 20 values: k = 6 (P(B <= 5) = 0.0207), [x_(6), x_(15)], coverage 0.9586
    values = [float(x) for x in range(20)]
    low, high, cover = inference.median_interval(values)
    assert (low, high) == (5.0, 14.0) and cover == pytest.approx(1 - 2 * sum(math.comb(20, i) for i in range(6)) / 2 ** 20)
    assert inference.median_interval([4.2]) == (4.2, 4.2, 0.0)
    # at 0.5: k = 8 (coverage 1 - 2 P(B <= 7) = 0.737; k = 9 would hold 0.497), [x_(8), x_(13)]
    assert inference.median_interval(values, confidence=0.5)[:2] == (7.0, 12.0)
    with pytest.raises(ValueError):
        inference.median_interval([])


def test_compare_latency_alternates_the_models_and_reports_the_median_ratio(monkeypatch):
    base, tok = tiny.base_model("seq_cls")
    other, _ = tiny.base_model("seq_cls")
    order = []
    fake = {id(base): [0.010, 0.012, 0.011, 0.010, 0.013, 0.010, 0.012], id(other): [0.020, 0.022, 0.025, 0.021,
                                                                                       0.019, 0.030, 0.022]}

    def timed_pass(model, inputs, device):
        order.append("base" if model is base else "other")
        return fake[id(model)].pop(0)

    monkeypatch.setattr(inference, "_timed_pass", timed_pass)
    base.train()
    result = inference.compare_latency(base, other, tiny.examples(tok, "seq_cls", n=4), tiny.CPU, rounds=6, n=4)
    assert order == ["base", "other"] + ["base", "other", "other", "base"] * 3  # warm-up, then each first in turn
    ratios = (0.022 / 0.012, 0.025 / 0.011, 0.021 / 0.010, 0.019 / 0.013, 0.030 / 0.010, 0.022 / 0.012)
    assert result.ratios == pytest.approx(ratios)
    assert result.ratio == pytest.approx(sorted(ratios)[2] / 2 + sorted(ratios)[3] / 2)
    assert (result.low, result.high) == pytest.approx((min(ratios), max(ratios)))
    assert result.base_ms == pytest.approx(1000 * 0.0115 / 4) and result.adapted_ms == pytest.approx(1000 * 0.022 / 4)
    assert base.training and not other.training  # modes restored


def test_identical_compute_reads_as_no_overhead():
    """Full fine-tuning against a copy of its base: the same computation, so the median ratio is near 1
    and its interval holds 1.  An exact 95% interval misses the truth in 1 run of 20 by construction,
    and this machine may be busy: one retry keeps the test honest (both missing: 1 in 400)."""
    model, tok, _, _ = _build("full", "seq_cls")
    tiny.run_steps(model, tok, "seq_cls", lr=5e-2)
    base, _ = tiny.base_model("seq_cls")
    examples = tiny.examples(tok, "seq_cls", n=8)
    for attempt in range(2):
        result = inference.compare_latency(base, model, examples, tiny.CPU, rounds=12, n=8)
        if result.low <= 1.0 <= result.high and 0.75 < result.ratio < 1.33:
            break
    assert result.low <= 1.0 <= result.high and 0.75 < result.ratio < 1.33, result
    assert result.coverage >= 0.95 and len(result.ratios) == 12


def test_swapping_is_na_when_a_second_task_does_not_fit(monkeypatch):
    model, tok, _, _ = _build("full", "seq_cls")
    batch = _batch(tok)
    before = _outputs(model, batch)
    monkeypatch.setattr(inference, "_device_free_bytes", lambda device: 1024)
    times = swap_times(get_method("full"), model, None, tiny.CPU, repeats=2)
    assert math.isnan(times.load_ms) and math.isnan(times.switch_ms)
    assert times.how.startswith("n/a: a second task's") and "do not fit" in times.how
    assert torch.equal(_outputs(model, batch), before)
