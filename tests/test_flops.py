"""flops_per_token (harness/measure.py) is what a training step computes.

Every registered method on both tiny models: the reported figure against torch's own
FlopCounterMode over one step of the real training loop (`harness.train.train`), with
attention forced onto PyTorch's math kernel so that plain FlopCounterMode sees its
matmuls (the reported figure counts the CPU flash kernel through `measure.flop_formulas`).
Then the cases the issue named, counted by hand: full fine-tuning, head_only (no
backward through the body), piggyback (its masked weights cost 6 per weight, not 10),
prompt tuning (the virtual positions), VeRA (its shared matrices' products).
"""
from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from harness import measure
from harness.suite import Training
from harness.train import micro_batches, train
from methods import all_methods, get_method
from tests import tiny
from tests.conformance_specs import SPECS

CASES = [(name, t) for name, m in sorted(all_methods().items()) if name in SPECS for t in sorted(m.task_types)]
BATCH = 4
D, F, L = tiny.HIDDEN, tiny.INTERMEDIATE, tiny.LAYERS


def _build(name: str, task_type: str, quant: str = "none", **settings):
    spec = SPECS[name]
    return tiny.build(task_type, name, quant=quant, rank=spec.rank, settings={**spec.settings, **settings})


def _reported(model, tok, task_type: str) -> float:
    return measure.flops_per_token(model, tiny.examples(tok, task_type), BATCH, tok.pad_token_id, tiny.CPU)


def _torch_count_of_one_training_step(model, tok, task_type: str, on_step=None) -> float:
    """torch's FlopCounterMode, nothing added, over one step of harness.train.train, per real token of its batch."""
    examples = tiny.examples(tok, task_type)
    _, tokens = next(micro_batches(examples, BATCH, 0, tok.pad_token_id))  # the step's batch (same seed)
    cfg = Training(steps=1, batch_size=BATCH, lr=1e-3, warmup_steps=0, log_every=1)
    counter = FlopCounterMode(display=False)
    with sdpa_kernel([SDPBackend.MATH]), counter:
        train(model, examples, cfg, seed=0, pad_id=tok.pad_token_id, device=tiny.CPU, on_step=on_step)
    return counter.get_total_flops() / tokens


@pytest.mark.parametrize("name,task_type", CASES)
def test_reported_flops_agree_with_torch_over_one_training_step(name, task_type):
    model, tok, _, _ = _build(name, task_type)
    reported = _reported(model, tok, task_type)
    counted = _torch_count_of_one_training_step(model, tok, task_type, get_method(name).on_step)
    assert counted > 0
    # the math kernel's backward does 4 attention matmuls where torch counts the flash kernel's 5 (it recomputes the scores)
    assert reported == pytest.approx(counted, rel=0.10), (reported, counted)


def _linear_weights_llama(model) -> tuple[int, int]:
    """(weights of the blocks' linears, of the lm_head) of the tiny Llama."""
    vocab = model.config.vocab_size
    return L * (4 * D * D + 3 * D * F), D * vocab


def _seq_len(tok, task_type: str) -> int:
    lengths = {len(e["input_ids"]) for e in tiny.examples(tok, task_type)}
    assert len(lengths) == 1  # the tiny examples have one length: no rounding in these counts
    return lengths.pop()


def test_full_fine_tuning_is_6_per_weight_plus_attention():
    model, tok, _, _ = _build("full", "causal_lm")
    blocks, head = _linear_weights_llama(model)
    t = _seq_len(tok, "causal_lm")
    # attention per layer and token: scores and weighted sum 4 T d forward, 10 T d backward (torch's flash count)
    assert _reported(model, tok, "causal_lm") == 6 * (blocks + head) + 14 * L * D * t


def test_head_only_runs_no_backward_through_the_body():
    model, tok, _, _ = _build("head_only", "seq_cls")
    t = _seq_len(tok, "seq_cls")
    body = L * (4 * D * D + 2 * D * F)  # q k v o, up, down (biases are additions, not counted)
    labels = len(tiny.LABELS)
    # per sequence: pooler forward + weight gradient (its input is frozen), classifier forward + both gradients
    head = 4 * D * D + 6 * D * labels
    assert _reported(model, tok, "seq_cls") == pytest.approx(2 * body + 4 * L * D * t + head / t, rel=1e-12)


def test_piggyback_costs_a_full_layer_per_masked_weight_not_ten():
    model, tok, _, _ = _build("piggyback", "causal_lm")
    blocks, head = _linear_weights_llama(model)
    t = _seq_len(tok, "causal_lm")
    first_qkv = 3 * D * D  # the first layer's q, k, v read the frozen embedding: no gradient for their input
    expected = 6 * blocks - 2 * first_qkv + 4 * head + 14 * L * D * t  # the frozen lm_head: forward + input gradient
    assert _reported(model, tok, "causal_lm") == expected
    assert expected < 0.8 * (4 * (blocks + head) + 6 * blocks)  # what the 4 N_frozen + 6 N_trainable formula charged


def test_prompt_tuning_counts_its_virtual_positions():
    model, tok, _, _ = _build("prompt_tuning", "causal_lm")
    blocks, head = _linear_weights_llama(model)
    t = _seq_len(tok, "causal_lm")
    v = model.peft_config["default"].num_virtual_tokens
    p = t + v  # positions per sequence; the prompt trains, so every frozen layer also computes its input's gradient
    expected = (4 * (blocks + head) * p + 14 * L * D * p * p) / t
    assert _reported(model, tok, "causal_lm") == pytest.approx(expected, rel=1e-12)


def test_vera_counts_its_shared_matrices_products():
    """VeRA computes LoRA's products with the shared A and B but not their weight gradients."""
    rank = 8
    lora, tok, _, _ = tiny.build("causal_lm", "lora", rank=rank)
    vera, *_ = tiny.build("causal_lm", "vera", rank=rank)
    targets = 2 * L  # q and v of each layer, hidden -> hidden
    difference = _reported(lora, tok, "causal_lm") - _reported(vera, tok, "causal_lm")
    assert difference == pytest.approx(targets * 2 * rank * (D + D), rel=1e-12)
    base, _ = tiny.base_model("causal_lm")
    for p in base.parameters():
        p.requires_grad_(False)
    base.lm_head.weight.requires_grad_(True)  # something to train, at the very end: the body runs forward only
    assert _reported(vera, tok, "causal_lm") > _reported(base, tok, "causal_lm") + targets * 2 * 2 * rank * (D + D)


def test_a_4bit_base_is_counted_like_a_plain_one():
    """bitsandbytes' 4-bit matmul is not in torch's registry: measure.flop_formulas adds it."""
    pytest.importorskip("bitsandbytes")
    plain, tok, _, _ = _build("lora", "causal_lm")
    nf4, *_ = _build("lora", "causal_lm", quant="nf4")
    assert _reported(nf4, tok, "causal_lm") == pytest.approx(_reported(plain, tok, "causal_lm"), rel=1e-9)


def test_the_bitsandbytes_formula_on_fixed_shapes():
    assert measure._bnb_matmul_flops((4, 7, 32), (64, 32), out_shape=(4, 7, 64)) == 2 * 4 * 7 * 32 * 64
    assert measure._bnb_matmul_flops((5, 32), (64, 32), out_shape=((5, 64), None)) == 2 * 5 * 32 * 64  # (out, outliers)


def test_counting_leaves_the_model_and_the_random_state_as_they_were():
    model, tok, _, _ = _build("lora", "seq_cls", dropout=0.1)
    model.eval()
    trainable = [p for p in model.parameters() if p.requires_grad]
    trainable[0].grad = torch.ones_like(trainable[0])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(3)
    expected_draw = torch.rand(3)
    torch.manual_seed(3)
    _reported(model, tok, "seq_cls")
    assert torch.equal(torch.rand(3), expected_draw)  # dropout's random numbers came from a forked state
    assert not model.training
    assert torch.equal(trainable[0].grad, torch.ones_like(trainable[0])) and all(p.grad is None for p in trainable[1:])
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_the_representative_batch_has_the_mean_length_and_no_padding():
    rows = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4, 5, 6, 7, 8, 9, 10], "labels": [-100] * 7}]
    batch = measure.representative_batch(rows, batch_size=8, pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 1, 2], [4, 5, 6, 7, 8]] and "attention_mask" not in batch
    assert batch["labels"].tolist() == [[-100, 2, 3, -100, 2], [-100] * 5]
    one = measure.representative_batch([{"input_ids": [1, 2], "label": 1}] * 9, batch_size=4, pad_id=0, seq_len=3)
    assert one["input_ids"].shape == (4, 3) and one["labels"].tolist() == [1] * 4
