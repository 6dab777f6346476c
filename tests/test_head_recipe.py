"""One head recipe: every method trains the same task head the same way.

The head (the new classifier and the pooler it reads) trains under every seq_cls method
in its own optimizer group at `training.head_lr`; what a method adds besides its
adaptation (SpotTune's routing policy) has a declared group of its own; everything else
trains at `training.lr`.  The new head starts from the same weights for a seed whatever
the method or the quantization.
"""
from __future__ import annotations

import pytest
import torch

from harness import models
from harness.suite import Training
from harness.train import param_groups, train
from methods import all_methods
from tests import tiny

SEQ_CLS = sorted(name for name, m in all_methods().items() if "seq_cls" in m.task_types)
CFG = Training(lr=1e-3, head_lr=7e-3)


def _head_numel(d: tiny.Dims) -> int:
    """classifier (hidden x labels + bias) and BERT's pooler (hidden x hidden + bias)."""
    return d.hidden * d.labels + d.labels + d.hidden * d.hidden + d.hidden


@pytest.mark.parametrize("name", SEQ_CLS)
def test_head_group_holds_exactly_the_head_at_head_lr(name):
    method = all_methods()[name]
    model, _tok, settings, ctx = tiny.build("seq_cls", name)
    assert set(ctx.head_names) == {"classifier", "pooler"}
    groups = {g.name: g for g in param_groups(model, CFG, ctx.head_names,
                                               method.groups(settings) if method.groups else None)}
    head = groups["head"]
    assert head.lr == CFG.head_lr
    assert sum(p.numel() for p in head.params) == _head_numel(tiny.Dims("seq_cls"))
    # which tensors: those of the classifier and pooler modules, wherever the method's wrapper put them
    head_ids = {id(p) for p in head.params}
    for pname, p in model.named_parameters():
        in_head = bool({"classifier", "pooler"} & set(pname.split(".")))
        if p.requires_grad:
            assert (id(p) in head_ids) == in_head, pname
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(len(g.params) for g in groups.values()) == len(trainable)
    if "method" in groups:
        assert groups["method"].lr == CFG.lr
    else:
        assert name == "head_only"  # the only method whose adaptation is the head itself
    declared = method.groups(settings) if method.groups else {}
    for group_name, lr in declared.items():
        assert groups[group_name].lr == lr and groups[group_name].params


def test_spottune_policy_trains_in_its_own_group():
    method = all_methods()["spottune"]
    model, _tok, settings, ctx = tiny.build("seq_cls", "spottune", settings={"policy_lr": 0.05})
    groups = {g.name: g for g in param_groups(model, CFG, ctx.head_names, method.groups(settings))}
    d = tiny.Dims("seq_cls")
    policy = groups["spottune_policy"]
    assert policy.lr == 0.05
    assert sum(p.numel() for p in policy.params) == d.hidden * 2 * d.layers + 2 * d.layers


def test_lrs_reach_the_parameters_they_name():
    """head_lr 0: the head stays, the adaptation moves; lr 0: only the head moves."""
    for lr, head_lr, head_moves, body_moves in ((1e-2, 0.0, False, True), (0.0, 1e-2, True, False)):
        model, tok, _settings, ctx = tiny.build("seq_cls", "lora", rank=2)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        cfg = Training(steps=3, batch_size=4, lr=lr, head_lr=head_lr, warmup_steps=0, log_every=1)
        train(model, tiny.examples(tok, "seq_cls"), cfg, seed=0, pad_id=tok.pad_token_id, device=tiny.CPU,
              groups=param_groups(model, cfg, ctx.head_names))
        moved = {n for n, p in model.named_parameters() if n in before and not torch.equal(p, before[n])}
        head = {n for n in moved if {"classifier", "pooler"} & set(n.split("."))}
        assert bool(head) == head_moves, moved
        assert bool(moved - head) == body_moves, moved


def test_head_init_depends_on_the_seed_only():
    def classifier(global_seed: int, seed: int, quant: str = "none") -> torch.Tensor:
        torch.manual_seed(global_seed)  # whatever else consumed random numbers before
        model, _ = tiny.base_model("seq_cls", quant)
        torch.manual_seed(global_seed + 1)
        assert models.init_head(model, seed) == 2  # weight and bias
        return model.classifier.weight.detach().clone()

    a = classifier(0, seed=3)
    assert torch.equal(a, classifier(123, seed=3))
    assert torch.equal(a, classifier(5, seed=3, quant="nf4"))  # the head is never quantized
    assert not torch.equal(a, classifier(0, seed=4))
    assert abs(float(a.std()) - 0.02) < 0.01  # transformers' initializer_range
