"""The measurement table (harness.measures) and the definitions that are the same for every method.

- the README's metric table is the module's, row for row (name, unit, direction, when
  logged, definition), and everything that names a measure takes it from the module;
- trainable_frac divides by the base model's count before the method is applied;
- adapter_bytes is the tensors a task stores at their stored dtype, without metadata
  files, for every registered method on both tiny models;
- train_state_mb is parameters as stored + gradients + the optimizer's state, exactly.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from harness import compare, measure, measures, report, track
from harness.measure import count_params
from methods import all_methods, get_method
from tests import tiny
from tests.conformance_specs import SPECS

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the table and its readers


def test_the_readme_metric_table_is_the_module():
    rows = measures.parse_readme_table((ROOT / "README.md").read_text(encoding="utf-8"))
    readme = [(r["name"], r["unit"], r["better"], r["logged"], r["definition"]) for r in rows]
    module = [(m.name, m.unit, m.better, m.logged, m.definition) for m in measures.MEASURES]
    assert [r[0] for r in readme] == [m[0] for m in module], (
        "the README's metric table lists other metrics than harness/measures.py: paste `python -m harness.measures`")
    for got, want in zip(readme, module):
        assert got == want, f"README row for `{want[0]}` differs from harness/measures.py (paste `python -m harness.measures`)"


def test_every_reader_takes_its_names_from_the_table():
    names = set(measures.NAMES)
    assert len(names) == len(measures.MEASURES)
    assert tuple(report.METRIC_COLUMNS) == measures.NAMES  # runs.csv: every measure
    assert set(track.METRIC_NAMES) == {m.name for m in measures.MEASURES if not m.gpu_only and not m.only}
    assert {"train_state_mb", "trainable_frac", "adapter_bytes"} <= set(track.METRIC_NAMES)
    assert not {"mfu", "latency_merged_ms", "representation_drift"} & set(track.METRIC_NAMES)
    for column in (*measures.QUALITY_COLUMNS, *measures.INFERENCE_COLUMNS):
        assert column == measures.MEMORY or measures.BY_NAME[column].header, column
    assert {k.measure for k in measures.MEMORY_KINDS.values()} == {"peak_memory_mb", "train_state_mb"}
    with pytest.raises(ValueError, match="not defined in harness.measures: peak_mem"):
        measures.check_logged({"val_score": 1.0, "peak_mem": 2.0})


def test_headers_formats_and_directions_agree():
    for m in measures.MEASURES:
        assert m.higher in (True, False, None)
        if m.header:
            assert m.fmt in measures.FORMATS and m.fmt in report._FORMATS, m.name
            assert not (measures.UP in m.header and m.higher is not True), m.name
            assert not (measures.DOWN in m.header and m.higher is not False), m.name
    assert set(report._FORMATS) == set(measures.FORMATS)
    assert report._header("test_score", "accuracy", True) == "test accuracy ↑"
    assert report._header("trainable_frac") == "trainable % ↓"
    assert report._format("adapter_bytes", 1_234_567.0) == "1.23" and report._format("trainable_frac", 0.5) == "50.0"


def test_compare_reads_its_directions_from_the_table(tmp_path):
    import pandas as pd

    cols = ["task", "config", "method", "rank", "quant", "seed", "status", "test_score", "train_state_mb",
            "latency_base_ms", "tokens_per_s"]
    ref = pd.DataFrame([["t", "lora r4", "lora", 4, "none", 0, "FINISHED", 0.9, 100.0, 10.0, 50.0]], columns=cols)
    new = ref.assign(train_state_mb=90.0, latency_base_ms=8.0, tokens_per_s=40.0)
    ref.to_csv(tmp_path / "ref.csv", index=False)
    new.to_csv(tmp_path / "new.csv", index=False)
    result = compare.compare_runs(tmp_path / "new.csv", tmp_path / "ref.csv", compare.parse_tolerance("5%"),
                                  ("train_state_mb", "latency_base_ms", "tokens_per_s"))
    # less memory: better; a faster base: no direction (not the method's doing), a change beyond 5%; fewer tokens/s: worse
    assert result.regressions == ["t lora r4: latency_base_ms 10 -> 8 (-20.0%), changed by more than 5%",
                                  "t lora r4: tokens_per_s 50 -> 40 (-20.0%), worse by more than 5%"]
    with pytest.raises(ValueError, match="unknown metric peak_mem; known: val_score"):
        compare.compare_runs(tmp_path / "new.csv", tmp_path / "ref.csv", compare.parse_tolerance("5%"), ("peak_mem",))


# --------------------------------------------------------------------------- trainable_frac


@pytest.mark.parametrize("name", ["piggyback", "spottune"])
def test_trainable_frac_divides_by_the_base_before_the_method(name):
    """Piggyback's scores and SpotTune's block copies are as large as what they adapt: over the
    count after the method (base + copies) they would read ~30% where they train ~half the base."""
    base, _ = tiny.base_model("seq_cls")
    base_count = measure.base_param_count(base)
    d = tiny.Dims("seq_cls")
    assert base_count == d.total(base)  # fp32: the logical count is every element
    method = get_method(name)
    model = method.apply(base, method.make_settings(None, {}), tiny.context(base, "seq_cls"))
    trainable, after = count_params(model)
    assert trainable == SPECS[name].trainable(d, None)
    assert after > base_count  # the method added as many parameters as it trains
    frac = trainable / base_count  # what the runner logs
    assert frac == pytest.approx(SPECS[name].trainable(d, None) / d.total(tiny.base_model("seq_cls")[0]))
    assert frac > trainable / after


@pytest.mark.parametrize("name", ["piggyback", "spottune"])
def test_a_real_trial_logs_the_fraction_of_the_base_the_stored_bytes_and_the_train_state(name, tmp_path, monkeypatch):
    """The runner's own numbers (`_train_and_measure` on a tiny BERT, MLflow stubbed out)."""
    import yaml

    from harness import models, runner
    from harness.grid import expand_grid
    from harness.suite import load_suite
    from tests.conftest import TINY_SUITE

    for stub in ("log_metrics", "log_tags", "log_text", "log_artifacts"):
        monkeypatch.setattr(track, stub, lambda *a, **k: None)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(TINY_SUITE | {"grid": [{"method": name}], "probe": {
        "n_texts": 8, "max_length": 32, "task_train": 32, "task_test": 32}}))
    suite = load_suite(path)
    (cell,) = expand_grid(suite)
    metrics, tags = runner._train_and_measure(suite, cell, "unused", "unused")

    # the same base and method, built here: the counts the runner's numbers must come from
    base = models.load_model(models.locate(suite.model, suite.file), "seq_cls", "none", ("negative", "positive"), tiny.CPU)
    base_count = measure.base_param_count(base)
    head = sum(p.numel() for m in (base.classifier, base.bert.pooler) for p in m.parameters())
    method = get_method(name)
    model = method.apply(base, method.make_settings(None, {}), tiny.context(base, "seq_cls"))
    trainable, after = count_params(model)
    assert metrics["trainable_params"] == trainable
    assert metrics["trainable_frac"] == trainable / base_count and trainable / base_count > trainable / after
    if name == "piggyback":
        assert metrics["adapter_bytes"] == math.ceil((trainable - head) / 8) + 4 * head
    else:
        assert metrics["adapter_bytes"] == 4 * trainable
    tensors = sum(1 for p in model.parameters() if p.requires_grad)
    assert metrics["train_state_mb"] == (4 * after + 4 * trainable + 8 * trainable + 4 * tensors) / 2**20
    assert tags["memory_kind"] == "train_state"


def test_base_count_of_a_4bit_base_is_its_logical_size():
    plain, _ = tiny.base_model("seq_cls")
    nf4, _ = tiny.base_model("seq_cls", "nf4")
    assert measure.base_param_count(nf4) == measure.base_param_count(plain)


# --------------------------------------------------------------------------- adapter_bytes

CASES = [(name, t) for name, m in sorted(all_methods().items()) if name in SPECS for t in sorted(m.task_types)]
SHARED = ("vera_A", "vera_B")  # VeRA's projections: in its file, common to every task and seeded


def _stored_tensors_formula(method, model, directory: Path) -> int:
    """Bytes of the tensors one task keeps: read back from what the method saved (numel x element size
    of each tensor; piggyback's masks are a packed uint8 tensor, ceil(n/8) bytes), without VeRA's shared
    projections; full fine-tuning saves nothing: every distinct tensor of the model."""
    from safetensors.torch import load_file

    if method.save is None:
        unique = {t.data_ptr(): t for t in model.state_dict().values()}
        return sum(t.numel() * t.element_size() for t in unique.values())
    total = 0
    for path in directory.rglob("*.safetensors"):
        for key, t in load_file(str(path)).items():
            if not key.rsplit(".", 1)[-1] in SHARED:
                total += t.numel() * t.element_size()
    return total


@pytest.mark.parametrize("name,task_type", CASES)
def test_adapter_bytes_are_the_stored_tensors_without_metadata(name, task_type, tmp_path):
    method, spec = get_method(name), SPECS[name]
    model, *_ = tiny.build(task_type, name, "none", spec.rank, spec.settings)
    if method.save is not None:
        method.save(model, str(tmp_path))
    got = measure.adapter_bytes(method, model, tmp_path if method.save is not None else None)
    assert got == _stored_tensors_formula(method, model, tmp_path)
    trainable, total = count_params(model)
    if name == "piggyback":  # a bit per masked weight, the head at fp32
        masks = trainable - tiny.Dims(task_type).head
        assert got == math.ceil(masks / 8) + 4 * tiny.Dims(task_type).head
    elif name == "full":
        assert got == 4 * total
    elif name == "prefix_tuning":  # trained through its MLP (the default projection), stored as the MLP's output table
        d = tiny.Dims(task_type)
        assert got == 4 * (spec.rank * d.layers * 2 * d.hidden + d.head) < 4 * trainable
    else:  # every other method stores exactly what it trained, at fp32: the same count, the same bytes
        assert got == 4 * trainable
    files = {p.name for p in tmp_path.iterdir()}
    if {"README.md", "adapter_config.json"} <= files:  # peft's metadata is on disk, and not counted
        assert got < measure.safetensors_bytes(tmp_path) + sum(
            (tmp_path / f).stat().st_size for f in ("README.md", "adapter_config.json"))


def test_a_saved_form_without_safetensors_is_refused(tmp_path):
    import dataclasses

    lora = get_method("lora")
    pickled = dataclasses.replace(lora, name="pickled", save=lambda model, d: torch.save({}, Path(d) / "a.pt"))
    model, *_ = tiny.build("seq_cls", "lora", rank=2)
    pickled.save(model, str(tmp_path))
    with pytest.raises(ValueError, match="saved no \\*.safetensors file: declare stored_bytes"):
        measure.adapter_bytes(pickled, model, tmp_path)


# --------------------------------------------------------------------------- train_state_mb


def _lora_train_state(quant: str) -> tuple[int, torch.nn.Module]:
    model, tok, _, _ = tiny.build("seq_cls", "lora", quant, rank=4)
    from harness.models import upcast_trainable

    upcast_trainable(model)
    stats = tiny.run_steps(model, tok, "seq_cls", steps=2)
    return stats.train_state_bytes, model


def test_train_state_of_lora_is_parameters_gradients_and_adamw_state():
    got, model = _lora_train_state("none")
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    assert all(p.dtype == torch.float32 for p in params)
    # every parameter at 4 bytes; a 4-byte gradient and AdamW's exp_avg and exp_avg_sq per trainable
    # element; AdamW's step count, one float32 per trainable tensor
    n_all, n_trained = sum(p.numel() for p in params), sum(p.numel() for p in trainable)
    assert got == 4 * n_all + 4 * n_trained + 2 * 4 * n_trained + 4 * len(trainable)


def test_train_state_of_nf4_lora_is_smaller_and_counts_the_packed_weights():
    fp32, plain = _lora_train_state("none")
    nf4, quant = _lora_train_state("nf4")
    assert nf4 < fp32
    packed = [p for p in quant.parameters() if getattr(p, "quant_state", None) is not None]
    assert packed and all(p.dtype == torch.uint8 for p in packed)
    logical = sum(measure._logical_numel(p) for p in packed)
    constants = sum(t.numel() * t.element_size() for p in packed for t in measure._quant_tensors(p))
    # the 4-bit weights: half a byte each, plus absmax and code tables, instead of 4 bytes each
    assert fp32 - nf4 == 4 * logical - (logical // 2 + constants)


def test_harness_methods_lists_the_measures(capsys):
    from harness.cli import main

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    methods_part, measures_part = out.split("measured for every method")
    assert all(name in methods_part for name in all_methods())
    lines = {line.split()[0]: line for line in measures_part.splitlines()[4:] if line.strip()}
    assert list(lines) == list(measures.NAMES)
    assert all(m.definition in lines[m.name] and m.better in lines[m.name] for m in measures.MEASURES)
