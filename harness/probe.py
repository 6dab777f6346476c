"""The forgetting probe: general text the task never shows the model.

Fine-tuning for one task can erode what the base model could already do.  The probe
measures that: the same fixed texts are fed to the model before fine-tuning (the base,
or the adapter disabled) and after, and `measure.forgetting` compares the two (a causal
LM's cross-entropy on the texts; an encoder's hidden states by linear CKA).  Here we
only decide which texts: the built-in general-knowledge prose shipped with the harness,
the non-empty lines of local text files, or a column of a Hugging Face dataset.  The
first `n_texts` are taken, in order, so every method is probed on the same texts.
"""
from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from harness.errors import SuiteError, did_you_mean
from harness.suite import ProbeSpec

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
