"""Inference cost (harness/inference.py) for every registered method on the tiny models.

Each method x task type of the conformance suite: latency is measurable on the base, the
trained and the merged model; swapping in a second task's weights and back leaves the
model computing what it computed before; merged equals unmerged where the method merges.
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

    before = _outputs(model, batch)
    assert not torch.allclose(before, initial, atol=1e-4), "training did not move the outputs"
    keys = set(model.state_dict())
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    configs = set(getattr(model, "peft_config", {}))
    seen = []  # the outputs after each timed step: the second task must really be served in between
    timed = inference._timed
    monkeypatch.setattr(inference, "_timed", lambda fn, device: (timed(fn, device), seen.append(_outputs(model, batch)))[0])
    times = swap_times(method, model, saved, tiny.CPU, repeats=3)
    assert len(seen) == 1 + 3
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
