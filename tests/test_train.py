"""The training path's speed features keep the training what it was: batches, optimizer,
precision, gradient checkpointing, torch.compile.  Speed itself is measured in bench/."""
from __future__ import annotations

import dataclasses
import itertools
import random
import types

import pytest
import torch

from harness import models
from harness.suite import Training
from harness.train import (batch_order, enable_gradient_checkpointing, make_optimizer, micro_batches, predict,
                           resolve_precision, train)
from methods import get_method
from tests import tiny

_RNG = random.Random(7)
LENGTHS = [_RNG.randint(5, 60) for _ in range(203)]


def epochs(batching: str, seed: int = 0, batch_size: int = 8, lengths=LENGTHS, n: int = 2) -> list[list[list[int]]]:
    per_epoch = len(lengths) // batch_size
    stream = batch_order(lengths, batch_size, seed, batching)
    return [list(itertools.islice(stream, per_epoch)) for _ in range(n)]


def padded(batches: list[list[int]], lengths=LENGTHS) -> int:
    """Tokens a right-padded batch pays for beyond its real ones."""
    return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)


@pytest.mark.parametrize("batching", ["bucket", "random"])
def test_every_epoch_uses_each_example_at_most_once_in_full_batches(batching):
    for epoch in epochs(batching):
        flat = [i for b in epoch for i in b]
        assert all(len(b) == 8 for b in epoch)
        assert len(flat) == len(set(flat)) == 203 // 8 * 8  # a remainder of 3 is dropped


@pytest.mark.parametrize("batching", ["bucket", "random"])
def test_the_drop_remainder_and_the_order_change_every_epoch_and_follow_the_seed(batching):
    first, second = epochs(batching)
    assert first != second
    dropped = [set(range(203)) - {i for b in e for i in b} for e in (first, second)]
    assert dropped[0] != dropped[1]
    assert epochs(batching, seed=0) == [first, second]
    assert epochs(batching, seed=1) != [first, second]


def test_bucketing_removes_most_padding_and_still_mixes_examples():
    bucket, rand = epochs("bucket")[0], epochs("random")[0]
    assert padded(bucket) < 0.2 * padded(rand), (padded(bucket), padded(rand))
    # batches are not a fixed partition: examples meet different neighbours in the next epoch
    first, second = ({frozenset(b) for b in e} for e in epochs("bucket"))
    assert len(first & second) < len(first) // 2
    # and the order of lengths is shuffled, not short-to-long
    widths = [max(LENGTHS[i] for i in b) for b in bucket]
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)


def test_fewer_examples_than_a_batch_make_one_batch_and_bad_input_is_refused():
    assert next(batch_order([3, 4, 5], 8, 0, "bucket")) == sorted(next(batch_order([3, 4, 5], 8, 0, "random")))
    assert sorted(next(batch_order([3, 4, 5], 8, 0, "bucket"))) == [0, 1, 2]
    with pytest.raises(ValueError, match="no training examples"):
        next(batch_order([], 8, 0, "bucket"))
    with pytest.raises(ValueError, match="unknown batching 'sorted'"):
        next(batch_order([3], 8, 0, "sorted"))


def test_micro_batches_are_the_collated_batch_order():
    _, tok = tiny.base_model("causal_lm")
    examples = tiny.examples(tok, "causal_lm", n=12)
    lengths = [len(e["input_ids"]) for e in examples]
    order = batch_order(lengths, 4, 3, "bucket")
    seen_unpadded = seen_padded = False
    for batch, tokens in itertools.islice(micro_batches(examples, 4, 3, tok.pad_token_id, "bucket"), 12):
        indices = next(order)
        width = max(lengths[i] for i in indices)
        assert batch["input_ids"].shape == (4, width) and tokens == sum(lengths[i] for i in indices)
        if "attention_mask" in batch:
            assert batch["attention_mask"].sum(1).tolist() == [lengths[i] for i in indices] and tokens < 4 * width
            seen_padded = True
        else:  # no padding: no mask, so SDPA may take its mask-free path
            assert tokens == 4 * width
            seen_unpadded = True
    assert seen_padded and seen_unpadded


def test_adamw_is_fused_on_cpu():
    params = [torch.nn.Parameter(torch.randn(3, 3))]
    assert make_optimizer(params, Training()).defaults["fused"] is True


def test_precision_auto_is_fp32_on_cpu_and_unknown_is_refused():
    assert resolve_precision("auto", tiny.CPU) == "fp32"
    assert resolve_precision("bf16", tiny.CPU) == "bf16"
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", tiny.CPU)


def _weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("task_type", ["seq_cls", "causal_lm"])
def test_bf16_precision_stores_frozen_weights_in_bf16_and_trains_fp32_lora(task_type):
    loc = models.locate(tiny.TINY[task_type])
    tok = models.load_tokenizer(loc)
    model = models.load_model(loc, task_type, "none", tiny.LABELS, tiny.CPU, precision="bf16")
    model.config.pad_token_id = tok.pad_token_id
    model = get_method("lora").apply(model, get_method("lora").make_settings(4, {}), tiny.context(model, task_type))
    cast = models.upcast_trainable(model)
    assert cast == (4 if task_type == "seq_cls" else 0)  # the head (classifier, pooler: weight, bias); peft makes LoRA fp32 itself
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {p.dtype for n, p in model.named_parameters() if n in trained} == {torch.float32}
    assert {p.dtype for n, p in model.named_parameters() if n not in trained} == {torch.bfloat16}
    before = _weights(model)
    cfg = Training(steps=3, batch_size=4, lr=1e-2, warmup_steps=0, log_every=1, precision="bf16")
    stats = train(model, tiny.examples(tok, task_type), cfg, seed=0, pad_id=tok.pad_token_id, device=tiny.CPU)
    after = _weights(model)
    assert all(torch.isfinite(torch.tensor(v)) for _, v in stats.losses)
    assert all(torch.equal(before[n], after[n]) for n in before if n not in trained)
    assert any(not torch.equal(before[n], after[n]) for n in trained)


def _loss_and_grads(model, batch) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("task_type", ["seq_cls", "causal_lm"])
def test_gradient_checkpointing_gives_the_same_gradients(task_type):
    model, tok, _, _ = tiny.build(task_type, "lora", rank=4)
    from harness.data import collate

    batch = collate(tiny.examples(tok, task_type, n=4), tok.pad_token_id)
    model.train()
    torch.manual_seed(5)
    plain_loss, plain = _loss_and_grads(model, batch)
    enable_gradient_checkpointing(model)
    assert model.base_model.model.is_activation_checkpointing
    torch.manual_seed(5)  # the same dropout masks: checkpointing replays the RNG state
    loss, grads = _loss_and_grads(model, batch)
    assert loss == pytest.approx(plain_loss, rel=1e-6)
    assert plain.keys() == grads.keys()
    for name in plain:
        torch.testing.assert_close(grads[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)


def test_gradient_checkpointing_through_train_and_a_model_without_it_is_refused():
    cfg = Training(steps=3, batch_size=4, lr=1e-2, warmup_steps=0, log_every=1)
    runs = []
    for checkpointing in (False, True):
        model, tok, _, _ = tiny.build("causal_lm", "lora", rank=4)
        stats = train(model, tiny.examples(tok, "causal_lm"), dataclasses.replace(cfg, gradient_checkpointing=checkpointing),
                      seed=0, pad_id=tok.pad_token_id, device=tiny.CPU)
        runs.append([loss for _, loss in stats.losses])
    assert runs[1] == pytest.approx(runs[0], rel=1e-5)
    with pytest.raises(ValueError, match="does not support gradient checkpointing: set training.gradient_checkpointing: false"):
        enable_gradient_checkpointing(torch.nn.Linear(2, 2))


@pytest.mark.slow
def test_compiled_training_follows_the_eager_losses_and_leaves_evaluation_eager():
    cfg = Training(steps=4, batch_size=4, lr=1e-2, warmup_steps=0, log_every=1)
    runs = []
    for compiled in (False, True):
        model, tok, _, _ = tiny.build("causal_lm", "lora", rank=4)
        stats = train(model, tiny.examples(tok, "causal_lm"), dataclasses.replace(cfg, compile=compiled),
                      seed=0, pad_id=tok.pad_token_id, device=tiny.CPU)
        runs.append([loss for _, loss in stats.losses])
        assert not isinstance(model, torch._dynamo.eval_frame.OptimizedModule)  # the caller's model is untouched
    assert runs[1] == pytest.approx(runs[0], rel=1e-4)


class _ParityModel(torch.nn.Module):
    """Label 1 for an odd number of real tokens, else 0: predictions that tell examples apart by length."""

    def forward(self, input_ids, attention_mask):
        odd = (attention_mask.sum(1) % 2).float()
        return types.SimpleNamespace(logits=torch.stack([1 - odd, odd], 1))


def test_predict_batches_shortest_first_and_returns_the_splits_order():
    """Each prediction is its own example's, in the split's order, whatever the batching (shortest first)."""
    tok = models.load_tokenizer(models.locate(tiny.TINY["seq_cls"]))
    words = "the cat sat on a mat while it rained over green hills".split()
    rows = [{"input_ids": tok(" ".join(words[:n]))["input_ids"], "label": 0} for n in (9, 1, 5, 12, 3, 7, 2, 10, 4)]
    want = [tiny.LABELS[len(r["input_ids"]) % 2] for r in rows]
    assert len(set(want)) == 2  # both labels occur: a wrong order would show
    preds, refs = predict(_ParityModel(), rows, "seq_cls", tiny.LABELS, tok, Training(eval_batch_size=4), tiny.CPU)
    assert preds == want
    assert refs == [tiny.LABELS[0]] * len(rows)
