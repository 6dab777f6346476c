"""The forgetting probes: general text, and a built-in task, that the task never shows the model.

Fine-tuning for one task can erode what the base model could already do.  The probes
measure that: the same fixed inputs are fed to the model before fine-tuning (the base,
or the adapter disabled) and after, and `measure.read_probe` reads both.

- The probe texts (`probe_texts`): the built-in general-knowledge prose shipped with the
  harness, the non-empty lines of local text files, or a column of a Hugging Face
  dataset; the first `n_texts`, in order, so every method is probed on the same texts.
  A causal LM's forgetting is its cross-entropy change on them; an encoder's
  representation_drift compares its pooled hidden states on them (debiased linear CKA).
- The probe task (`task_probe`, encoders): a built-in synthetic classification task other
  than the suite's (`probe.task`; automatically `topic` when a task of the suite is a
  synthetic sentiment task, `sentiment` or `twist`, else `sentiment`), `task_train` examples to fit a linear probe on
  the frozen pooled features and `task_test` to score it.  An encoder's forgetting is the
  probe's accuracy with the base's features minus with the tuned model's.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from harness.errors import SuiteError, did_you_mean
from harness.suite import DataSpec, ProbeSpec, TaskSpec

if TYPE_CHECKING:
    import torch

BUILTIN = {"general": "probe_general.txt"}  # name -> file in harness/assets


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _builtin_texts(name: str) -> list[str]:
    return _lines(resources.files("harness").joinpath("assets", BUILTIN[name]).read_text(encoding="utf-8"))


def _source(spec: ProbeSpec) -> str:
    # the suite parser allows one source; a ProbeSpec built in code keeps builtin's default
    return "files" if spec.files else "hub" if spec.hub else "builtin"


def check_probe(spec: ProbeSpec, suite_file: str) -> None:
    """The probe's texts exist and are enough for n_texts (the hub cannot be checked offline)."""
    source = _source(spec)
    if source == "builtin":
        if spec.builtin not in BUILTIN:
            raise SuiteError(suite_file, "probe.builtin", "one of the built-in probes (" + ", ".join(BUILTIN) + ")",
                             spec.builtin if spec.builtin is not None else "<empty>", did_you_mean(spec.builtin, BUILTIN))
        available, field = len(_builtin_texts(spec.builtin)), "probe.builtin"
    elif source == "files":
        available = 0
        for i, file in enumerate(spec.files):
            field = f"probe.files[{i}]" if len(spec.files) > 1 else "probe.files"
            if not Path(file).is_file():
                raise SuiteError(suite_file, field, "an existing text file", file, "paths are relative to the suite file")
            available += len(_lines(Path(file).read_text(encoding="utf-8")))
        field = "probe.files"
    else:
        return
    if available < spec.n_texts:
        raise SuiteError(suite_file, "probe.n_texts", f"at most {available} (the non-empty lines of {field})", spec.n_texts,
                         "lower n_texts or add texts")


def _hub_texts(spec: ProbeSpec) -> list[str]:
    import datasets

    ds = datasets.load_dataset(spec.hub, spec.config, split=spec.split)
    if spec.column not in ds.column_names:
        raise ValueError(f"probe dataset {spec.hub!r} [{spec.split}] has no column {spec.column!r}; "
                         f"columns: {', '.join(ds.column_names)}")
    texts: list[str] = []
    for value in ds[spec.column]:  # stop early: a probe needs tens of texts, not the whole split
        if isinstance(value, str) and value.strip():
            texts.append(value.strip())
            if len(texts) == spec.n_texts:
                break
    return texts


def probe_texts(spec: ProbeSpec) -> tuple[tuple[str, ...], str]:
    """(the first n_texts probe texts, sha256[:16] fingerprint of them)."""
    source = _source(spec)
    if source == "builtin":
        if spec.builtin not in BUILTIN:
            raise ValueError(f"unknown built-in probe {spec.builtin!r}; known: {', '.join(BUILTIN)}")
        texts = _builtin_texts(spec.builtin)
    elif source == "files":
        texts = [t for f in spec.files for t in _lines(Path(f).read_text(encoding="utf-8"))]
    else:
        texts = _hub_texts(spec)
    if len(texts) < spec.n_texts:
        raise ValueError(f"the probe has {len(texts)} non-empty texts but n_texts is {spec.n_texts}")
    chosen = tuple(texts[: spec.n_texts])
    digest = hashlib.sha256(json.dumps(chosen, ensure_ascii=False).encode()).hexdigest()[:16]
    return chosen, digest


# --------------------------------------------------------------------------- the probe task (encoders)

SENTIMENT_LIKE = ("sentiment", "twist")  # built-in tasks labelled negative/positive: probed on topic instead
TASK_SEED = 7  # the synthetic probe task's data seed: not the suites' usual 0, so its rows are not a suite task's


def probe_task_name(spec: ProbeSpec, tasks: Sequence[TaskSpec]) -> str:
    """`probe.task`, or automatically: `topic` when a task of the suite is a synthetic sentiment
    task (`sentiment`, `twist`), else `sentiment`."""
    if spec.task is not None:
        return spec.task
    if any(t.data.source == "synthetic" and t.data.generator in SENTIMENT_LIKE for t in tasks):
        return "topic"
    return "sentiment"


@dataclass(frozen=True)
class TaskProbe:
    """The probe task's examples, tokenized and batched; labels index `label_names`."""

    name: str
    label_names: tuple[str, ...]
    train_batches: tuple[dict, ...]
    train_labels: torch.Tensor
    test_batches: tuple[dict, ...]
    test_labels: torch.Tensor
    fingerprint: str  # of the rows (harness.data.fingerprint_rows)


def task_probe(spec: ProbeSpec, tasks: Sequence[TaskSpec], tokenizer, max_length: int | None = None,
               batch_size: int = 16) -> TaskProbe:
    """The probe task's train and test texts (the generator's `task_train` + `task_test` rows), batched.

    Texts are truncated to `max_length` (default `probe.max_length`) and batched
    `batch_size` at a time, like the probe texts, but shortest first (a stable sort by
    token count, labels alongside): batches of similar lengths waste little on padding.
    """
    import torch

    from harness import data

    name = probe_task_name(spec, tasks)
    rows = data.load_task(TaskSpec(name=f"probe-{name}", metric="accuracy",
                                   data=DataSpec(source="synthetic", generator=name, n_train=spec.task_train,
                                                 n_validation=1, n_test=spec.task_test, seed=TASK_SEED)), "seq_cls")
    length = max_length or spec.max_length
    index = {label: i for i, label in enumerate(rows.label_names)}

    def batches(split: tuple[dict, ...]) -> tuple[tuple[dict, ...], torch.Tensor]:
        ids = [tokenizer(r["text"], truncation=True, max_length=length)["input_ids"] for r in split]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        rows_ = [{"input_ids": ids[i]} for i in order]
        return (tuple(data.collate(rows_[i:i + batch_size], tokenizer.pad_token_id) for i in range(0, len(rows_), batch_size)),
                torch.tensor([index[split[i]["label"]] for i in order]))

    (train_batches, train_labels), (test_batches, test_labels) = batches(rows.train), batches(rows.test)
    return TaskProbe(name=name, label_names=rows.label_names, train_batches=train_batches, train_labels=train_labels,
                     test_batches=test_batches, test_labels=test_labels, fingerprint=rows.fingerprint)
