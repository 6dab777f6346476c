"""Measurements checked against independent computations: linear CKA on known matrices and
its debiased form against the U-statistic written out, MFU arithmetic (the FLOP count
itself: tests/test_flops.py), forgetting of an untrained adapter, and the model fingerprint.
(The linear probe and forgetting of trained models: tests/test_forgetting.py.)"""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from harness import data, measure, models, probe
from harness.suite import ProbeSpec
from methods import all_methods
from tests import tiny
from tests.conformance_specs import SPECS

# --------------------------------------------------------------------------- linear CKA


def _cka_by_kernels(x: np.ndarray, y: np.ndarray) -> float:
    """CKA the long way (Kornblith et al. eq. 1-2): HSIC of the centred Gram matrices."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, lmat = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return float(np.sum(k * lmat) / np.sqrt(np.sum(k * k) * np.sum(lmat * lmat)))


def test_cka_of_one_dimensional_features_is_the_squared_correlation():
    x = torch.tensor([[1.0], [2.0], [3.0]])
    assert measure.linear_cka(x, torch.tensor([[3.0], [2.0], [1.0]])) == pytest.approx(1.0)  # corr -1
    assert measure.linear_cka(x, torch.tensor([[1.0], [3.0], [2.0]])) == pytest.approx(0.25)  # corr 0.5 by hand


def test_cka_is_invariant_to_rotation_and_scale_and_matches_the_kernel_form():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 6, generator=g)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    assert measure.linear_cka(x, 3.0 * x @ q) == pytest.approx(1.0, abs=1e-12)
    y = torch.randn(20, 4, generator=g)
    assert measure.linear_cka(x, y) == pytest.approx(_cka_by_kernels(x.numpy().astype(float), y.numpy().astype(float)),
                                                     rel=1e-9)
    assert 0 < measure.linear_cka(x, y) < 1


def _hsic_u_statistic(k: np.ndarray, lmat: np.ndarray) -> float:
    """HSIC's unbiased estimator the long way: each of its three expectations as a mean over
    distinct index tuples, E[k_ij l_ij] + E[k_ij] E[l_qr] - 2 E[k_ij l_iq] (Song et al. 2012)."""
    n = k.shape[0]
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    triples = [(i, j, q) for i, j in pairs for q in range(n) if q not in (i, j)]
    quads = [(i, j, q, r) for i, j, q in triples for r in range(n) if r not in (i, j, q)]
    first = np.mean([k[i, j] * lmat[i, j] for i, j in pairs])
    second = np.mean([k[i, j] * lmat[q, r] for i, j, q, r in quads])
    third = np.mean([k[i, j] * lmat[i, q] for i, j, q in triples])
    return float(first + second - 2 * third)


def test_unbiased_hsic_matches_the_u_statistic_written_out():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 5))
    y[:, 0] += 2 * x[:, 0]  # some shared signal
    k, lmat = x @ x.T, y @ y.T
    assert float(measure.unbiased_hsic(torch.tensor(k), torch.tensor(lmat))) == pytest.approx(_hsic_u_statistic(k, lmat),
                                                                                             rel=1e-10)
    by_hand = _hsic_u_statistic(k, lmat) / math.sqrt(_hsic_u_statistic(k, k) * _hsic_u_statistic(lmat, lmat))
    assert measure.debiased_linear_cka(torch.tensor(x), torch.tensor(y)) == pytest.approx(by_hand, rel=1e-9)
    with pytest.raises(ValueError, match="at least 4"):
        measure.unbiased_hsic(torch.eye(3), torch.eye(3))


def test_debiased_cka_is_one_for_the_same_representation_and_removes_the_bias_of_few_examples():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 384, generator=g)
    q, _ = torch.linalg.qr(torch.randn(384, 384, generator=g, dtype=torch.float64))
    assert measure.debiased_linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert measure.debiased_linear_cka(x, 0.1 * x.double() @ q + 5.0) == pytest.approx(1.0, abs=1e-9)
    before = measure.ProbeReading(features=x)
    assert measure.representation_drift(before, measure.ProbeReading(features=x.clone())) == pytest.approx(0.0, abs=1e-6)
    # unrelated: 64 examples of 384 dimensions fool the plain estimator (about 0.86), not the debiased one
    pairs = [(torch.randn(64, 384, generator=g), torch.randn(64, 384, generator=g)) for _ in range(10)]
    assert min(measure.linear_cka(a, b) for a, b in pairs) > 0.8
    debiased = [measure.debiased_linear_cka(a, b) for a, b in pairs]
    assert abs(np.mean(debiased)) < 0.03 and max(map(abs, debiased)) < 0.15
    assert math.isnan(measure.debiased_linear_cka(x, torch.ones(64, 3)))
    assert math.isnan(measure.debiased_linear_cka(x[:3], x[:3]))  # a 3-text probe: no estimate, not a failed trial


# --------------------------------------------------------------------------- MFU


def test_mfu_is_achieved_over_peak_and_the_peak_table_matches_device_names(monkeypatch):
    monkeypatch.delenv("HARNESS_PEAK_TFLOPS", raising=False)
    assert measure.peak_flops("cuda:0 NVIDIA H100 80GB HBM3") == 989e12
    assert measure.peak_flops("cuda:0 NVIDIA H100 PCIe") == 756e12
    assert measure.peak_flops("cuda:0 NVIDIA H200") == 989e12
    assert measure.peak_flops("cuda:0 NVIDIA L40S") == 362e12 and measure.peak_flops("cuda:0 NVIDIA L4") == 121e12
    assert measure.peak_flops("cuda:0 NVIDIA A100-SXM4-80GB") == 312e12
    assert math.isnan(measure.peak_flops("cpu (2 cores)")) and math.isnan(measure.peak_flops("cuda:0 Mystery GPU"))
    monkeypatch.setenv("HARNESS_PEAK_TFLOPS", "100")
    assert measure.peak_flops("cuda:0 Mystery GPU") == 100e12
    # 10,000 tokens/s x 6e9 FLOPs/token = 6e13 FLOP/s of a 1e14 peak
    assert measure.mfu(10_000, 6e9, 1e14) == pytest.approx(0.6)
    assert math.isnan(measure.mfu(10_000, 6e9, math.nan))


# --------------------------------------------------------------------------- forgetting


def _probe_batches(tok) -> list[dict]:
    texts = ["The river flows to the sea.", "Bread is baked in an oven at home.", "Stars shine at night.",
             "A library lends books to readers.", "Mountains are cold at the top."]
    rows = [{"input_ids": tok(t)["input_ids"]} for t in texts]
    return [data.collate(rows[:3], tok.pad_token_id), data.collate(rows[3:], tok.pad_token_id)]


STARTS_AT_BASE = [(n, t) for n, m in sorted(all_methods().items()) for t in sorted(m.task_types) if SPECS[n].starts_at_base]


@pytest.mark.parametrize("name,task_type", STARTS_AT_BASE)
def test_forgetting_of_an_untrained_adapter_is_zero(name, task_type):
    base, tok = tiny.base_model(task_type)
    batches = _probe_batches(tok)
    task = probe.task_probe(ProbeSpec(task_train=32, task_test=32), (), tok) if task_type == "seq_cls" else None
    before = measure.read_probe(base, batches, task_type, tiny.CPU, task=task)
    model, *_ = tiny.build(task_type, name, rank=SPECS[name].rank, settings=SPECS[name].settings)
    after = measure.read_probe(model, batches, task_type, tiny.CPU, task=task)
    assert measure.forgetting(before, after) == pytest.approx(0.0, abs=1e-6)
    if task_type == "seq_cls":
        assert measure.representation_drift(before, after) == pytest.approx(0.0, abs=1e-6)


def test_the_before_taken_on_the_base_equals_the_trained_model_with_its_adapter_disabled():
    """Forgetting's "before" is measured on the base before the method is applied: for an
    adapter that is exactly the trained model with the adapter disabled, logits shifted, same tokens."""
    base, tok = tiny.base_model("causal_lm")
    batches = _probe_batches(tok)
    before = measure.read_probe(base, batches, "causal_lm", tiny.CPU)
    model, tok, *_ = tiny.build("causal_lm", "lora", rank=4)
    tiny.run_steps(model, tok, "causal_lm", steps=5, lr=5e-2)
    after = measure.read_probe(model, batches, "causal_lm", tiny.CPU)
    with model.disable_adapter():
        disabled = measure.read_probe(model, batches, "causal_lm", tiny.CPU)
    assert disabled.loss == pytest.approx(before.loss, abs=1e-6)
    assert abs(measure.forgetting(before, after)) > 1e-4  # training moved it
    assert measure.forgetting(before, after) == after.loss - before.loss  # causal LM: the cross-entropy change


def test_causal_forgetting_is_the_shifted_token_cross_entropy():
    base, tok = tiny.base_model("causal_lm")
    batches = _probe_batches(tok)
    total, count = 0.0, 0
    with torch.no_grad():
        for b in batches:
            logits = base(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            for row in range(len(b["input_ids"])):
                n = int(b["attention_mask"][row].sum())
                logp = torch.log_softmax(logits[row, : n - 1].double(), -1)
                total -= float(logp.gather(1, b["input_ids"][row, 1:n, None]).sum())
                count += n - 1
    assert float(measure.probe_signal(base, batches, "causal_lm", tiny.CPU)) == pytest.approx(total / count, rel=1e-5)


# --------------------------------------------------------------------------- model fingerprint


def test_model_fingerprint_follows_the_files(tmp_path):
    src = models.locate(tiny.TINY["seq_cls"]).source
    copy = tmp_path / "model"
    shutil.copytree(src, copy)
    fp = models.fingerprint(models.Location(str(copy)))
    assert fp == models.fingerprint(models.Location(src)) and len(fp) == 16  # content, not the path
    weights = copy / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))
    assert models.fingerprint(models.Location(str(copy))) != fp
    (copy / "one.gguf").write_bytes(b"GGUF one")
    (copy / "two.gguf").write_bytes(b"GGUF two")
    one = models.fingerprint(models.Location(str(copy), gguf_file="one.gguf"))
    assert one != models.fingerprint(models.Location(str(copy), gguf_file="two.gguf"))
    (copy / "config.json").write_text("{}")
    assert models.fingerprint(models.Location(str(copy), gguf_file="one.gguf")) == one  # only the GGUF file counts
    assert models.fingerprint(models.Location("some-org/not-cached")).startswith("hub:some-org/not-cached@")
