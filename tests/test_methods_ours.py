"""The methods written in this project, checked against their papers' definitions on tiny models."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from methods import _adapters, get_method
from methods.piggyback import MaskedLinear
from methods.spottune import FROZEN, TUNED, RoutedBlock
from tests import tiny


def _perturb(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)


# ---------------------------------------------------------------- adapters (Houlsby et al. 2019)

def test_bottleneck_is_the_identity_at_init_and_a_residual_bottleneck_after():
    adapter, x = _adapters.Bottleneck(8, 3, "gelu"), torch.randn(2, 5, 8)
    assert torch.equal(adapter(x), x)
    _perturb(adapter)
    expected = x + adapter.up(F.gelu(adapter.down(x)))
    assert torch.allclose(adapter(x), expected) and not torch.allclose(adapter(x), x)


@pytest.mark.parametrize("task_type,paths", [
    ("seq_cls", {"attention.output.dense", "output.dense"}),
    ("causal_lm", {"self_attn.o_proj", "mlp.down_proj"}),
])
def test_houlsby_adapters_sit_after_the_output_projections(task_type, paths):
    model, *_ = tiny.build(task_type, "adapter_houlsby", rank=4)
    _, blocks = _adapters.transformer_blocks(model)
    for block in blocks:
        assert {n for n, m in block.named_modules() if isinstance(m, _adapters.WithAdapter)} == paths
        site = block.get_submodule(sorted(paths)[0])
        _perturb(site.adapter)
        x = torch.randn(2, 3, site.base.in_features)
        y = site.base(x)
        assert torch.allclose(site(x), y + site.adapter.up(site.adapter.act(site.adapter.down(y))))


def test_houlsby_layer_norms_follow_the_setting():
    def norms_trainable(task_type, settings):
        model, *_ = tiny.build(task_type, "adapter_houlsby", rank=2, settings=settings)
        _, blocks = _adapters.transformer_blocks(model)
        return {p.requires_grad for b in blocks for m in b.modules() if "Norm" in type(m).__name__ for p in m.parameters()}

    assert norms_trainable("seq_cls", {}) == {True}  # the paper's default on an encoder
    assert norms_trainable("seq_cls", {"train_layer_norms": False}) == {False}
    assert norms_trainable("causal_lm", {}) == {False}
    assert norms_trainable("causal_lm", {"train_layer_norms": True}) == {True}


# ---------------------------------------------------------------- Pfeiffer adapters (Pfeiffer et al. 2021)

def _recorder(seen: dict, key, what: str = "out"):
    """A forward hook appending a module's first input ("in") or its output ("out") to seen[key]."""
    def hook(module, args, output):
        seen[key].append((args[0] if what == "in" else output).detach().clone())
    return hook


def test_pfeiffer_adapter_sits_after_the_ffn_add_and_norm_on_bert():
    """BERT's FFN output is LN(h + a) (h = dropout(dense(x)), a = the attention output, the residual).
    The paper's adapter reads z = LN(h + a); its residual is h, taken before the norm; the same
    LayerNorm then receives adapter output + a: y = LN(h + f(z) + a)."""
    model, tok, *_ = tiny.build("seq_cls", "adapter_pfeiffer", rank=4)
    _, blocks = _adapters.transformer_blocks(model)
    seen, handles = {}, []
    for i, block in enumerate(blocks):
        # one adapter per block, at the FFN output norm; no Houlsby-style wrapped projection
        assert [n for n, m in block.named_modules() if isinstance(m, _adapters.Bottleneck)] == ["output.LayerNorm.adapter"]
        assert not any(isinstance(m, _adapters.WithAdapter) for m in block.modules())
        site = block.output.LayerNorm
        _perturb(site.adapter, seed=i)
        for key, module, what in (("h", block.output.dropout, "out"), ("norm_in", site.norm, "in"),
                                  ("norm_out", site.norm, "out"), ("adapter_in", site.adapter.down, "in"),
                                  ("f", site.adapter.up, "out"), ("y", block.output, "out")):
            seen[(i, key)] = []
            handles.append(module.register_forward_hook(_recorder(seen, (i, key), what)))
        seen[(i, "a")] = []
        handles.append(block.output.register_forward_hook(
            lambda m, args, out, key=(i, "a"): seen[key].append(args[1].detach().clone())))
    tiny.outputs(model, tiny.probe_ids(tok))
    for handle in handles:
        handle.remove()
    for i in range(len(blocks)):
        (h,), (a,), (y,), (z_in,), (f,) = (seen[(i, k)] for k in ("h", "a", "y", "adapter_in", "f"))
        first_in, second_in = seen[(i, "norm_in")]  # the block's own LayerNorm runs twice
        first_out, second_out = seen[(i, "norm_out")]
        assert torch.allclose(first_in, h + a)  # first the base's Add & Norm of the FFN
        assert torch.equal(z_in, first_out)  # the adapter reads its output
        assert f.abs().sum() > 0
        assert torch.allclose(second_in, (h + f) + a, atol=1e-6)  # adapter output (residual h) + the block residual
        assert torch.equal(second_out, y)  # and that norm is the block's output


def test_pfeiffer_adapter_sits_on_the_llama_block_output_after_the_ffn_residual_add():
    """Pre-norm Llama: the block ends in s = r + MLP(norm(r)); the adapter reads s and adds to it: s + f(s)."""
    model, tok, *_ = tiny.build("causal_lm", "adapter_pfeiffer", rank=4)
    _, blocks = _adapters.transformer_blocks(model)
    seen, handles = {}, []
    for i, block in enumerate(blocks):
        assert [n for n, m in block.named_modules() if isinstance(m, _adapters.Bottleneck)] == ["adapter"]
        assert not any(isinstance(m, _adapters.WithAdapter) for m in block.modules())
        _perturb(block.adapter, seed=i)
        for key, module, what in (("r", block.post_attention_layernorm, "in"), ("h", block.mlp, "out"),
                                  ("adapter_in", block.adapter.down, "in"), ("f", block.adapter.up, "out"),
                                  ("y", block, "out")):  # a hook added later sees what the block returns
            seen[(i, key)] = []
            handles.append(module.register_forward_hook(_recorder(seen, (i, key), what)))
    ids = tiny.probe_ids(tok)
    model.eval()
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    for handle in handles:
        handle.remove()
    for i in range(len(blocks)):
        (r,), (h,), (s_in,), (f,), (y,) = (seen[(i, k)] for k in ("r", "h", "adapter_in", "f", "y"))
        assert torch.allclose(s_in, r + h)  # after the FFN's residual add
        assert f.abs().sum() > 0 and torch.allclose(y, r + h + f, atol=1e-6)
    assert torch.allclose(hidden[1], seen[(0, "y")][0])  # transformers' own hidden states include the adapter


def test_adapter_targets_override_and_refuse_unknown_paths():
    model, *_ = tiny.build("seq_cls", "adapter_pfeiffer", rank=2, settings={"targets": ["intermediate.dense"]})
    assert isinstance(model.bert.encoder.layer[0].intermediate.dense, _adapters.WithAdapter)
    with pytest.raises(ValueError, match="'nope' is not in a BertLayer"):
        tiny.build("seq_cls", "adapter_pfeiffer", rank=2, settings={"targets": ["nope"]})


# ---------------------------------------------------------------- BitFit (Ben Zaken et al. 2022)

def test_bitfit_trains_exactly_the_biases_and_the_head():
    model, *_ = tiny.build("seq_cls", "bitfit")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    biases = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    # the task head every method trains: the classifier and the pooler it reads
    assert trainable == biases | {"classifier.weight", "bert.pooler.dense.weight"}


def test_bias_free_models_are_refused():
    base, _ = tiny.base_model("causal_lm")
    method = get_method("bitfit")
    with pytest.raises(ValueError, match="has none outside its task head"):
        method.apply(base, method.make_settings(None, {}), tiny.context(base, "causal_lm"))
    head_only = get_method("head_only")
    with pytest.raises(ValueError, match="needs a new task head"):
        head_only.apply(base, head_only.make_settings(None, {}), tiny.context(base, "causal_lm"))


# ---------------------------------------------------------------- Piggyback (Mallya et al. 2018)

def test_piggyback_mask_is_the_thresholded_scores_with_a_straight_through_gradient():
    layer = MaskedLinear(torch.nn.Linear(6, 4).requires_grad_(False), threshold=5e-3, score_init=1e-2)
    assert torch.equal(layer.mask(), torch.ones(4, 6))
    with torch.no_grad():
        layer.scores.copy_(torch.randn(4, 6) * 1e-2)
    assert torch.equal(layer.mask(), (layer.scores > 5e-3).float())
    x, g = torch.randn(3, 6), torch.randn(3, 4)
    (layer(x) * g).sum().backward()
    # d loss / d mask, for the mask used as a plain tensor: the straight-through gradient of the scores
    mask = layer.mask().detach().requires_grad_(True)
    (F.linear(x, layer.base.weight * mask, layer.base.bias) * g).sum().backward()
    assert torch.allclose(layer.scores.grad, mask.grad) and layer.scores.grad.abs().sum() > 0


def test_piggyback_stores_one_bit_per_masked_weight_plus_the_head(tmp_path):
    method = get_method("piggyback")
    model, tok, settings, ctx = tiny.build("seq_cls", "piggyback")
    masked = [m for m in model.modules() if isinstance(m, MaskedLinear)]
    n = sum(m.scores.numel() for m in masked)
    head = sum(p.numel() * 4 for m in (model.classifier, model.bert.pooler) for p in m.parameters())
    assert method.stored_bytes(model) == math.ceil(n / 8) + head
    with torch.no_grad():
        for m in masked:
            m.scores.normal_(0, 1e-2)
    method.save(model, str(tmp_path))
    from safetensors.torch import load_file

    assert load_file(str(tmp_path / "piggyback.safetensors"))["piggyback.mask_bits"].numel() == math.ceil(n / 8)
    loaded = method.load(tiny.base_model("seq_cls")[0], str(tmp_path), settings, ctx)
    again = [m for m in loaded.modules() if isinstance(m, MaskedLinear)]
    assert all(torch.equal(a.mask(), b.mask()) for a, b in zip(masked, again))


# ---------------------------------------------------------------- SpotTune (Guo et al. 2019)

def _spottune(task_type: str):
    model, tok, *_ = tiny.build(task_type, "spottune")
    _, blocks = _adapters.transformer_blocks(model)
    for i, block in enumerate(blocks):
        _perturb(block.tuned, seed=i)  # copies that differ from the frozen blocks, as after training
    return model, tok, blocks


def _route(model, n_blocks: int, choice: int, bias: float = 50.0) -> None:
    """Make the policy prefer one path for every input and block, through its own bias."""
    with torch.no_grad():
        model.spottune_policy.linear.bias.copy_(torch.tensor([bias if k == choice else 0.0 for k in (FROZEN, TUNED)] * n_blocks))


def test_spottune_policy_makes_hard_one_hot_decisions_with_a_gradient():
    model, tok, blocks = _spottune("seq_cls")
    policy = model.spottune_policy.train()
    d = policy(torch.randn(5, tiny.HIDDEN))
    assert d.shape == (5, len(blocks), 2) and set(d.unique().tolist()) <= {0.0, 1.0} and torch.equal(d.sum(-1), torch.ones(5, 2))
    (d[..., TUNED] * torch.randn(5, 2)).sum().backward()
    assert policy.linear.weight.grad is not None and policy.linear.weight.grad.abs().sum() > 0
    assert policy.eval()(torch.randn(5, tiny.HIDDEN)).sum(-1).eq(1).all()


def test_spottune_routing_all_frozen_is_the_base_and_all_tuned_is_the_copies():
    model, tok, blocks = _spottune("seq_cls")
    ids = tiny.probe_ids(tok)
    base, _ = tiny.base_model("seq_cls")
    _route(model, len(blocks), FROZEN)
    assert torch.allclose(tiny.outputs(model, ids), tiny.outputs(base, ids), atol=1e-6)
    _route(model, len(blocks), TUNED)
    _, base_blocks = _adapters.transformer_blocks(base)
    for plain, routed in zip(base_blocks, blocks):
        plain.load_state_dict(routed.tuned.state_dict())
    assert torch.allclose(tiny.outputs(model, ids), tiny.outputs(base, ids), atol=1e-6)


def test_spottune_routes_each_input_of_a_batch_on_its_own():
    model, tok, blocks = _spottune("seq_cls")
    a, b = tok("first input")["input_ids"], tok("the second one")["input_ids"]
    single = {}
    for name, ids, choice in (("a", a, FROZEN), ("b", b, TUNED)):
        _route(model, len(blocks), choice)
        single[name] = tiny.outputs(model, torch.tensor([ids]))[0]
    decisions = torch.zeros(2, len(blocks), 2)
    decisions[0, :, FROZEN] = decisions[1, :, TUNED] = 1
    model.spottune_policy.forward = lambda pooled: decisions  # fixed per-input routes
    width = max(len(a), len(b))
    batch = torch.tensor([a + [tok.pad_token_id] * (width - len(a)), b + [tok.pad_token_id] * (width - len(b))])
    mask = (torch.arange(width) < torch.tensor([[len(a)], [len(b)]])).long()
    model.eval()
    with torch.no_grad():
        out = model(input_ids=batch, attention_mask=mask).logits
    assert torch.allclose(out[0], single["a"], atol=1e-5) and torch.allclose(out[1], single["b"], atol=1e-5)


def test_spottune_generation_with_the_kv_cache_is_exact():
    """Two inputs taking different paths run both paths in every block: each must keep its own keys/values."""
    model, tok, blocks = _spottune("causal_lm")
    decisions = torch.zeros(2, len(blocks), 2)
    decisions[0, :, FROZEN] = decisions[1, :, TUNED] = 1
    model.spottune_policy.forward = lambda pooled: decisions
    ids = tiny.probe_ids(tok).repeat(2, 1)
    model.eval()
    gen = [model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                          use_cache=use, pad_token_id=tok.pad_token_id) for use in (True, False)]
    assert torch.equal(gen[0], gen[1]) and not torch.equal(gen[0][0], gen[0][1])
    assert isinstance(blocks[0], RoutedBlock)


def test_spottune_keeps_the_first_forwards_decisions_while_decoding():
    model, tok, blocks = _spottune("causal_lm")
    ids = tiny.probe_ids(tok)
    full = torch.cat([ids, torch.tensor([[42]])], 1)
    model.eval()
    with torch.no_grad():
        _route(model, len(blocks), TUNED)
        expected = model(input_ids=full, use_cache=False).logits[:, -1]
        cache = model(input_ids=ids, use_cache=True).past_key_values
        _route(model, len(blocks), FROZEN)  # the policy would now say otherwise; the prompt's decisions hold
        step = model(input_ids=full[:, -1:], past_key_values=cache, use_cache=True).logits[:, -1]
    assert torch.allclose(step, expected, atol=1e-5)


def test_spottune_routes_a_causal_lm_on_the_prompt_only():
    model, tok, _ = _spottune("causal_lm")
    seen = []
    real = model.spottune_policy.forward
    model.spottune_policy.forward = lambda pooled: (seen.append(pooled), real(pooled))[1]
    prompt, answer = tok("a question")["input_ids"], tok(" an answer", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        model(input_ids=torch.tensor([prompt + answer]), labels=torch.tensor([[-100] * len(prompt) + answer]))
        model(input_ids=torch.tensor([prompt]))
    assert torch.allclose(seen[0], seen[1])
