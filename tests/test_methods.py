"""The method layer beyond conformance: the registry's checks, 4-bit parameter counting,
NF4 training after an eval-mode pass, and determinism on CPU."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from harness.data import collate
from harness.measure import count_params, probe_signal
from methods import all_methods, get_method, register
from tests import tiny


def test_registry_declarations():
    methods = all_methods()
    assert {"full", "lora"} <= set(methods)
    assert methods["full"].na_reason("seq_cls", "nf4") == "full does not support quant nf4 (supports: none)"
    assert methods["lora"].na_reason("causal_lm", "nf4") is None
    with pytest.raises(KeyError, match="did you mean 'lora'"):
        get_method("lorra")
    with pytest.raises(ValueError, match="unknown setting 'alpah'.*did you mean 'alpha'"):
        methods["lora"].make_settings(4, {"alpah": 1})
    with pytest.raises(ValueError, match="must be float, not 'big'"):
        methods["lora"].make_settings(4, {"alpha": "big"})
    assert methods["lora"].make_settings(4, {"alpha": 32}).alpha == 32
    assert dataclasses.asdict(methods["lora"].make_settings(None, {}))["rank"] == 8


def test_registry_refuses_duplicates_and_inconsistent_declarations():
    lora = get_method("lora")
    with pytest.raises(ValueError, match="registered twice"):
        register("lora", lora.settings_cls, lora.apply)
    with pytest.raises(ValueError, match="mergeable methods need a merge function"):
        register("lora_without_merge", lora.settings_cls, lora.apply, mergeable=True)
    assert "lora_without_merge" not in all_methods()


def test_nf4_counts_logical_parameters():
    """4-bit weights are packed two per byte; the parameter count must not halve."""
    plain, *_ = tiny.build("causal_lm", "lora", "none", rank=4)
    quant, *_ = tiny.build("causal_lm", "lora", "nf4", rank=4)
    assert count_params(quant) == count_params(plain)


def test_nf4_trains_after_the_base_was_evaluated():
    """The forgetting probe runs the base in eval mode before training; on CPU that must not
    switch bitsandbytes' 4-bit layers to their inference-only layout."""
    model, tok = tiny.base_model("seq_cls", "nf4")
    probe_signal(model, [collate(tiny.examples(tok, "seq_cls")[:4], tok.pad_token_id)], "seq_cls", tiny.CPU)
    lora = get_method("lora")
    model = lora.apply(model, lora.make_settings(4, {}), tiny.context(model, "seq_cls", "nf4"))
    assert tiny.run_steps(model, tok, "seq_cls").steps == 3


@pytest.mark.parametrize("method", ["full", "lora"])
def test_training_is_deterministic_on_cpu(method):
    from harness.train import seed_everything

    results = []
    for _ in range(2):
        seed_everything(7)
        model, tok, _, _ = tiny.build("causal_lm", method, rank=4 if method == "lora" else None)
        stats = tiny.run_steps(model, tok, "causal_lm", steps=4)
        results.append((stats.losses, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}))
    (losses_a, params_a), (losses_b, params_b) = results
    assert losses_a == losses_b
    assert params_a.keys() == params_b.keys() and all(torch.equal(params_a[k], params_b[k]) for k in params_a)
