"""The conformance suite every registered method must pass, on tiny models of both task types.

- base weights stay frozen: after a few optimizer steps only the method's parameters
  (names matching its `changes` pattern) changed;
- the trainable count equals the method's formula, and grows with the rank where ranked;
- the output at initialisation equals the base where the method promises it;
- save then load reproduces the outputs; merged equals unmerged where mergeable;
- every declared quantization trains.

Each method's expectations live in `tests/conformance_specs.py`; registering a method
without them fails `test_every_method_has_conformance_settings`.
"""
from __future__ import annotations

import re

import pytest
import torch

from harness.measure import count_params
from methods import all_methods, get_method
from tests import tiny
from tests.conformance_specs import SPECS

# methods without a spec fail test_every_method_has_conformance_settings (not the collection)
CASES = [(name, t) for name, m in sorted(all_methods().items()) if name in SPECS for t in sorted(m.task_types)]
HEAD = re.compile(r"(^|\.)(classifier|score|pooler)(\.|$)")  # the task head: trains under every method
QUANT_CASES = [(name, t, q) for name, t in CASES for q in sorted(all_methods()[name].quants - {"none"})]


def test_every_method_has_conformance_settings():
    assert set(all_methods()) == set(SPECS), "methods without conformance settings: " \
        f"{sorted(set(all_methods()) - set(SPECS))}; specs without a method: {sorted(set(SPECS) - set(all_methods()))}"


def _build(name, task_type, quant="none", rank=None):
    spec = SPECS[name]
    return tiny.build(task_type, name, quant, rank if rank is not None else spec.rank, spec.settings)


def _assert_only_method_parameters_change(name, model, before):
    spec = SPECS[name]
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed, f"{name}: training changed no parameter"
    assert changed <= trainable, f"{name}: frozen parameters changed: {sorted(changed - trainable)[:5]}"
    stray = sorted(n for n in changed if not re.search(spec.changes, n) and not HEAD.search(n))
    assert not stray, f"{name}: parameters outside the method changed: {stray[:5]}"
    if any(not HEAD.search(n) for n in trainable):  # the task head always moves: the method's own must too
        assert any(not HEAD.search(n) for n in changed), f"{name}: only the task head changed"


@pytest.mark.parametrize("name,task_type", CASES)
def test_only_the_method_parameters_change(name, task_type):
    model, tok, _, _ = _build(name, task_type)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stats = tiny.run_steps(model, tok, task_type, on_step=get_method(name).on_step)
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in stats.losses)
    _assert_only_method_parameters_change(name, model, before)


@pytest.mark.parametrize("name,task_type", CASES)
def test_trainable_count_matches_the_formula(name, task_type):
    spec, method = SPECS[name], get_method(name)
    ranks = spec.ranks if method.ranked else (None,)
    counts = []
    for rank in ranks:
        model, *_ = _build(name, task_type, rank=rank)
        trainable, total = count_params(model)
        expected = spec.trainable(tiny.Dims(task_type), rank)
        assert trainable == expected, f"{name} rank {rank} ({task_type}): {trainable} trainable, formula says {expected}"
        counts.append(trainable)
    if method.ranked:
        assert counts == sorted(counts) and len(set(counts)) == len(counts), f"{name}: count does not grow with rank"


@pytest.mark.parametrize("name,task_type", [c for c in CASES if SPECS[c[0]].starts_at_base])
def test_output_at_initialisation_equals_the_base(name, task_type):
    base, tok = tiny.base_model(task_type)
    ids = tiny.probe_ids(tok)
    expected = tiny.outputs(base, ids)
    model, *_ = _build(name, task_type)
    assert torch.allclose(tiny.outputs(model, ids), expected, atol=1e-5)


@pytest.mark.parametrize("name,task_type", [c for c in CASES if all_methods()[c[0]].save is not None])
def test_save_then_load_reproduces_outputs(name, task_type, tmp_path):
    method = get_method(name)
    model, tok, settings, ctx = _build(name, task_type)
    tiny.run_steps(model, tok, task_type, lr=5e-2, on_step=method.on_step)
    ids = tiny.probe_ids(tok)
    expected = tiny.outputs(model, ids)
    method.save(model, str(tmp_path))
    base, _ = tiny.base_model(task_type)
    loaded = method.load(base, str(tmp_path), settings, ctx)
    assert torch.allclose(tiny.outputs(loaded, ids), expected, atol=1e-5)


@pytest.mark.parametrize("name,task_type", [c for c in CASES if all_methods()[c[0]].mergeable])
def test_merged_equals_unmerged(name, task_type):
    method = get_method(name)
    model, tok, _, _ = _build(name, task_type)
    tiny.run_steps(model, tok, task_type, lr=5e-2, on_step=method.on_step)
    ids = tiny.probe_ids(tok)
    unmerged = tiny.outputs(model, ids)
    base, _ = tiny.base_model(task_type)
    assert not torch.allclose(unmerged, tiny.outputs(base, ids), atol=1e-4), "training did not move the outputs"
    merged = method.merge(model)
    assert not any(re.search(SPECS[name].changes, n) and "modules_to_save" not in n and not HEAD.search(n)
                   for n, _ in merged.named_parameters()), "merge left method parameters behind"
    assert torch.allclose(tiny.outputs(merged, ids), unmerged, atol=1e-4)


@pytest.mark.parametrize("name,task_type,quant", QUANT_CASES)
def test_every_declared_quantization_trains(name, task_type, quant):
    model, tok, _, _ = _build(name, task_type, quant)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stats = tiny.run_steps(model, tok, task_type, on_step=get_method(name).on_step)
    assert stats.steps == 3 and all(torch.isfinite(torch.tensor(loss)) for _, loss in stats.losses)
    _assert_only_method_parameters_change(name, model, before)
