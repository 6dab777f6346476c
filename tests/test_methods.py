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


# ---------------------------------------------------------------- defaults that follow the papers

def test_prefix_tuning_trains_through_the_reparametrisation_mlp_by_default():
    """Li & Liang train the prefix through an MLP; `projection: 0` is the directly trained table."""
    kv = tiny.LAYERS * 2 * tiny.HIDDEN  # a key and a value vector per layer (d_kv = hidden on the tiny models)
    for task_type in ("seq_cls", "causal_lm"):
        model, _, settings, _ = tiny.build(task_type, "prefix_tuning", rank=4)
        encoder = model.prompt_encoder["default"]
        assert settings.projection == 512 and encoder.prefix_projection
        first, act, last = encoder.transform
        assert (first.in_features, first.out_features, last.in_features, last.out_features) == (tiny.HIDDEN, 512, 512, kv)
        assert isinstance(act, torch.nn.Tanh) and encoder.embedding.weight.shape == (4, tiny.HIDDEN)
        assert all(p.requires_grad for p in encoder.parameters())
    direct, *_ = tiny.build("seq_cls", "prefix_tuning", rank=4, settings={"projection": 0})
    encoder = direct.prompt_encoder["default"]
    assert not encoder.prefix_projection and not hasattr(encoder, "transform")
    assert encoder.embedding.weight.shape == (4, kv)


@pytest.mark.parametrize("task_type,blocks", [("seq_cls", "bert.encoder.layer."), ("causal_lm", "model.layers.")])
@pytest.mark.parametrize("method", ["adalora", "lora"])
def test_all_linear_targets_every_linear_of_the_blocks_and_the_default_only_q_v(method, task_type, blocks):
    base, _ = tiny.base_model(task_type)
    linears = {n for n, m in base.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith(blocks)}
    # attention q, k, v, o and the FFN: BERT's intermediate/output dense, Llama's gate/up/down
    assert len(linears) == tiny.LAYERS * (6 if task_type == "seq_cls" else 7)
    prefix = "base_model.model."

    def adapted(settings):
        model, *_ = tiny.build(task_type, method, rank=2, settings=settings)
        return model, {n[len(prefix):]: m for n, m in model.named_modules() if hasattr(m, "lora_A")}

    _, default = adapted({})
    qv = {"query", "value"} if task_type == "seq_cls" else {"q_proj", "v_proj"}
    assert {n.rsplit(".", 1)[-1] for n in default} == qv and len(default) == tiny.LAYERS * 2
    model, every = adapted({"targets": ["all_linear"]})
    assert set(every) == linears  # every linear weight of the blocks; not the pooler, classifier or LM head
    if method == "adalora":  # r0 = ceil(1.5 r) = 3: P (d_out x r0), Q (r0 x d_in), Λ (r0) per target
        head = tiny.Dims(task_type).head
        expected = sum(3 * (m.in_features + m.out_features + 1) for m in every.values()) + head
        assert count_params(model)[0] == expected
