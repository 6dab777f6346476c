"""Methods on tiny random-init models: frozen base, only the method's parameters change,
trainable counts by formula, quantized bases train, save/load and merge keep outputs."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from harness import models
from harness.suite import ModelSpec, Training
from harness.train import train
from methods import ApplyContext, all_methods, get_method

HIDDEN, LAYERS = 32, 2
TINY = {
    "seq_cls": ModelSpec(tiny=(("architecture", "bert"), ("hidden_size", HIDDEN), ("layers", LAYERS), ("heads", 2), ("intermediate_size", 64))),
    "causal_lm": ModelSpec(tiny=(("architecture", "llama"), ("hidden_size", HIDDEN), ("layers", LAYERS), ("heads", 2), ("intermediate_size", 64))),
}
LABELS = ("neg", "pos")
CPU = torch.device("cpu")


def build(task_type: str, method: str, quant: str = "none", rank: int | None = None):
    loc = models.locate(TINY[task_type])
    tok = models.load_tokenizer(loc)
    torch.manual_seed(0)
    model = models.load_model(loc, task_type, quant, LABELS, CPU)
    model.config.pad_token_id = tok.pad_token_id
    m = get_method(method)
    ctx = ApplyContext(task_type, model.config.model_type, quant, models.head_names(model, task_type))
    settings = m.make_settings(rank, {})
    return m.apply(model, settings, ctx), tok


def examples(tok, task_type: str, n: int = 8) -> list[dict]:
    out = []
    for i in range(n):
        ids = tok(f"sample text number {i}")["input_ids"]
        if task_type == "seq_cls":
            out.append({"input_ids": ids, "label": i % 2})
        else:
            answer = tok(f" answer {i}", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            out.append({"input_ids": ids + answer, "labels": [-100] * len(ids) + answer})
    return out


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def run_steps(model, tok, task_type, steps=3, lr=1e-2):
    cfg = Training(steps=steps, batch_size=4, lr=lr, warmup_steps=0, log_every=1)
    return train(model, examples(tok, task_type), cfg, seed=0, pad_id=tok.pad_token_id, device=CPU)


CASES = [(t, m, q) for t in ("seq_cls", "causal_lm") for m, q in
         (("full", "none"), ("lora", "none"), ("lora", "int8"), ("lora", "nf4"))]


@pytest.mark.parametrize("task_type,method,quant", CASES)
def test_only_method_parameters_change(task_type, method, quant):
    model, tok = build(task_type, method, quant, rank=4 if method == "lora" else None)
    before = snapshot(model)
    stats = run_steps(model, tok, task_type)
    assert stats.steps == 3 and all(torch.isfinite(torch.tensor(l)) for _, l in stats.losses)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed, "training changed nothing"
    assert changed <= trainable, f"frozen parameters changed: {sorted(changed - trainable)[:5]}"
    if method == "lora":
        for name in changed:
            assert "lora_" in name or "modules_to_save" in name, f"non-LoRA parameter trained: {name}"


@pytest.mark.parametrize("task_type", ["seq_cls", "causal_lm"])
@pytest.mark.parametrize("rank", [1, 4, 8])
def test_lora_trainable_count_formula(task_type, rank):
    from harness.measure import count_params

    model, _ = build(task_type, "lora", rank=rank)
    trainable, total = count_params(model)
    targets = 2  # query/value (bert) or q_proj/v_proj (llama): HIDDEN -> HIDDEN each
    lora = LAYERS * targets * rank * (HIDDEN + HIDDEN)
    head = HIDDEN * len(LABELS) + len(LABELS) if task_type == "seq_cls" else 0  # bert classifier has a bias
    assert trainable == lora + head


def test_full_trains_everything_and_counts_total():
    from harness.measure import count_params

    model, _ = build("seq_cls", "full")
    trainable, total = count_params(model)
    assert trainable == total == sum(p.numel() for p in model.parameters())


def test_nf4_counts_logical_parameters():
    """4-bit weights are packed two per byte; the parameter count must not halve."""
    from harness.measure import count_params

    plain, _ = build("causal_lm", "lora", "none", rank=4)
    quant, _ = build("causal_lm", "lora", "nf4", rank=4)
    assert count_params(quant) == count_params(plain)


@pytest.mark.parametrize("task_type", ["seq_cls", "causal_lm"])
def test_lora_starts_at_the_base_and_merges_exactly(task_type):
    loc = models.locate(TINY[task_type])
    tok = models.load_tokenizer(loc)
    torch.manual_seed(0)
    base = models.load_model(loc, task_type, "none", LABELS, CPU).eval()
    ids = torch.tensor([tok("a probe sentence")["input_ids"]])
    base_logits = base(input_ids=ids).logits
    model, _ = build(task_type, "lora", rank=4)
    model.eval()
    if task_type == "causal_lm":  # the classifier head is re-initialised per model, so compare LMs only
        assert torch.allclose(model(input_ids=ids).logits, base_logits, atol=1e-6)
    run_steps(model, tok, task_type, lr=5e-2)
    model.eval()
    tuned = model(input_ids=ids).logits
    assert not torch.allclose(tuned, base_logits, atol=1e-4)
    merged = model.merge_and_unload().eval()
    assert torch.allclose(merged(input_ids=ids).logits, tuned, atol=1e-5)


def test_lora_save_load_reproduces_outputs(tmp_path):
    from peft import PeftModel

    model, tok = build("causal_lm", "lora", rank=4)
    run_steps(model, tok, "causal_lm", lr=5e-2)
    model.eval()
    ids = torch.tensor([tok("a probe sentence")["input_ids"]])
    expected = model(input_ids=ids).logits
    get_method("lora").save(model, str(tmp_path))
    loc = models.locate(TINY["causal_lm"])
    base = models.load_model(loc, "causal_lm", "none", LABELS, CPU)
    loaded = PeftModel.from_pretrained(base, str(tmp_path)).eval()
    assert torch.allclose(loaded(input_ids=ids).logits, expected, atol=1e-6)


def test_registry_declarations():
    methods = all_methods()
    assert {"full", "lora"} <= set(methods)
    assert methods["full"].na_reason("seq_cls", "nf4") is not None
    assert methods["lora"].na_reason("causal_lm", "nf4") is None
    with pytest.raises(KeyError, match="did you mean 'lora'"):
        get_method("lorra")
    with pytest.raises(ValueError, match="unknown setting 'alpah'.*did you mean 'alpha'"):
        methods["lora"].make_settings(4, {"alpah": 1})
    assert methods["lora"].make_settings(4, {"alpha": 32}).alpha == 32
    assert dataclasses.asdict(methods["lora"].make_settings(None, {}))["rank"] == 8


def test_nf4_trains_after_the_base_was_evaluated():
    """The forgetting probe runs the base in eval mode before training; on CPU that must not
    switch bitsandbytes' 4-bit layers to their inference-only layout."""
    from harness.measure import probe_signal
    from harness.data import collate

    loc = models.locate(TINY["seq_cls"])
    tok = models.load_tokenizer(loc)
    model = models.load_model(loc, "seq_cls", "nf4", LABELS, CPU)
    model.config.pad_token_id = tok.pad_token_id
    probe_signal(model, [collate(examples(tok, "seq_cls")[:4], tok.pad_token_id)], "seq_cls", CPU)
    lora = get_method("lora")
    ctx = ApplyContext("seq_cls", "bert", "nf4", models.head_names(model, "seq_cls"))
    model = lora.apply(model, lora.make_settings(4, {}), ctx)
    assert run_steps(model, tok, "seq_cls").steps == 3


@pytest.mark.parametrize("method", ["full", "lora"])
def test_training_is_deterministic_on_cpu(method):
    from harness.train import seed_everything

    results = []
    for _ in range(2):
        seed_everything(7)
        model, tok = build("causal_lm", method, rank=4 if method == "lora" else None)
        stats = run_steps(model, tok, "causal_lm", steps=4)
        results.append((stats.losses, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}))
    (losses_a, params_a), (losses_b, params_b) = results
    assert losses_a == losses_b
    assert params_a.keys() == params_b.keys() and all(torch.equal(params_a[k], params_b[k]) for k in params_a)
