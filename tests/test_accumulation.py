"""Gradient accumulation does not change the objective: one optimizer step's loss and
gradients are the same however its batch is cut into micro-batches (an out-of-memory
retry halves the micro-batch).  Causal LM: the mean over the batch's supervised tokens;
sequence classification: the mean over its examples."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from harness.data import collate
from harness.suite import Training
from harness.train import accumulate, supervised_targets, train
from methods import all_methods, get_method
from tests import tiny

SPLITS = ((8, 1), (4, 2), (2, 4))  # micro-batch size x micro-batches: one batch of 8 examples


def varied_examples(tok, task_type: str) -> list[dict]:
    """8 examples of different lengths; causal LM: answers of 2 to 16 tokens (with eos)."""
    out = []
    for i in range(8):
        ids = tok("prompt " + "p" * (7 - i) + f" {i}")["input_ids"]
        if task_type == "seq_cls":
            out.append({"input_ids": ids, "label": i % 2})
        else:
            answer = tok(" " + "a" * (2 * i), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            out.append({"input_ids": ids + answer, "labels": [-100] * len(ids) + answer})
    return out


def split(examples: list[dict], size: int, pad_id: int) -> list[dict]:
    return [collate(examples[i:i + size], pad_id) for i in range(0, len(examples), size)]


def step(model, examples: list[dict], size: int, pad_id: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss, gradients) of one accumulated step with micro-batches of `size`."""
    model.zero_grad(set_to_none=True)
    loss = accumulate(model, split(examples, size, pad_id), tiny.CPU)
    return loss, grads(model)


def grads(model) -> dict[str, torch.Tensor]:
    """The gradients the trainable parameters hold (none: a parameter the loss did not reach)."""
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def direct(model, examples: list[dict], pad_id: int, task_type: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss, gradients) of the intended objective, from one forward of the whole batch's logits."""
    model.zero_grad(set_to_none=True)
    batch = collate(examples, pad_id)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    if task_type == "seq_cls":
        loss = F.cross_entropy(logits, batch["labels"])  # every example weighs the same
    else:  # every supervised token weighs the same: token t is predicted at position t - 1
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100)
    loss.backward()
    return loss.detach(), grads(model)


def assert_same(got, want, label: str, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    (loss, grads), (want_loss, want_grads) = got, want
    torch.testing.assert_close(loss, want_loss, rtol=rtol, atol=atol, msg=f"{label}: loss")
    assert grads.keys() == want_grads.keys()
    for name in want_grads:
        torch.testing.assert_close(grads[name], want_grads[name], rtol=rtol, atol=atol, msg=f"{label}: {name}")


def example_mean_of_token_means(model, examples: list[dict], pad_id: int) -> float:
    """The old accumulation's objective at micro-batch 1: every example weighs the same."""
    with torch.no_grad():
        return sum(float(model(**collate([e], pad_id)).loss) for e in examples) / len(examples)


def test_causal_lm_step_is_the_token_weighted_mean_however_the_batch_is_split():
    model, tok = tiny.base_model("causal_lm")  # every parameter trains: every gradient is compared
    model.eval()  # no dropout, so the splits see the same function (gradients flow in eval mode too)
    examples = varied_examples(tok, "causal_lm")
    counts = [sum(1 for t in e["labels"][1:] if t != -100) for e in examples]
    assert len(set(counts)) == 8 and supervised_targets(split(examples, 2, tok.pad_token_id)) == sum(counts)
    want = direct(model, examples, tok.pad_token_id, "causal_lm")
    # the data tells the objectives apart: averaging micro-batch means (the old accumulation) is another loss
    assert abs(example_mean_of_token_means(model, examples, tok.pad_token_id) - float(want[0])) > 1e-2
    for size, n in SPLITS:
        assert_same(step(model, examples, size, tok.pad_token_id), want, f"{size}x{n}")


def test_sequence_classification_step_keeps_the_mean_over_examples():
    model, tok = tiny.base_model("seq_cls")
    model.eval()
    examples = varied_examples(tok, "seq_cls")
    assert supervised_targets(split(examples, 4, tok.pad_token_id)) is None  # per-example labels: no token count
    want = direct(model, examples, tok.pad_token_id, "seq_cls")
    for size, n in SPLITS:
        got = step(model, examples, size, tok.pad_token_id)
        assert_same(got, want, f"{size}x{n}")
        # as before token weighting: each micro-batch's mean loss over the number of micro-batches
        with torch.no_grad():
            old = sum(float(model(**b).loss) / n for b in split(examples, size, tok.pad_token_id))
        assert float(got[0]) == pytest.approx(old, rel=1e-6)


CAUSAL_METHODS = sorted(name for name, m in all_methods().items() if "causal_lm" in m.task_types)


@pytest.mark.parametrize("method", CAUSAL_METHODS)
def test_every_causal_method_passes_the_token_count_to_the_loss(method):
    """Each method's wrapper hands `num_items_in_batch` on to the model's loss: micro-batches of
    one give the whole batch's token mean (the model's own loss on the whole batch, which for
    prompt tuning includes its virtual tokens' -100 labels), and what a method adds to the
    loss on every forward (AdaLoRA's orthogonality penalty) still counts once per step."""
    model, tok, _, _ = tiny.build("causal_lm", method, rank=4 if get_method(method).ranked else None)
    model.eval()  # no dropout; SpotTune routes by argmax, not Gumbel samples
    if method == "spottune":  # every block on its tuned copy, so the loss reaches trained parameters
        from methods.spottune import TUNED

        with torch.no_grad():
            model.spottune_policy.linear.bias.view(-1, 2)[:, TUNED] = 1.0
    examples = varied_examples(tok, "causal_lm")
    model.zero_grad(set_to_none=True)
    whole = model(**collate(examples, tok.pad_token_id)).loss
    whole.backward()
    want = (whole.detach(), grads(model))
    assert want[1]
    assert_same(step(model, examples, 1, tok.pad_token_id), want, method)


def test_train_logs_the_same_losses_for_any_split_of_the_batch():
    """Through `train`: 8 examples, a batch of 8 cut 8x1, 4x2 or 2x4 (`batch_order` deals the
    same examples to each step), so the logged per-step losses are the same."""
    cfg = Training(steps=3, batch_size=8, grad_accum=1, lr=1e-3, warmup_steps=0, log_every=1, max_grad_norm=0.0)
    runs = {}
    for size, n in SPLITS:
        model, tok, _, _ = tiny.build("causal_lm", "lora", rank=4)  # no dropout: the tiny Llama's and LoRA's are 0
        stats = train(model, varied_examples(tok, "causal_lm"), dataclasses.replace(cfg, batch_size=size, grad_accum=n),
                      seed=0, pad_id=tok.pad_token_id, device=tiny.CPU)
        runs[size] = [loss for _, loss in stats.losses]
    assert runs[4] == pytest.approx(runs[8], rel=1e-5)
    assert runs[2] == pytest.approx(runs[8], rel=1e-5)
