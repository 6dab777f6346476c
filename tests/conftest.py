"""Shared fixtures.

`base_suite` is a fresh copy of a valid tiny suite (random-init BERT, synthetic sentiment,
full + LoRA r2/r4, 4 steps): edit it in a test, then write it with `write_suite`.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

TINY_SUITE = {
    "schema_version": 1,
    "name": "tiny",
    "model": {"tiny": {"architecture": "bert"}},
    "task_type": "seq_cls",
    "tasks": [{"name": "sent", "data": {"synthetic": "sentiment", "n_train": 64, "n_validation": 16, "n_test": 16}}],
    "grid": [{"method": "full"}, {"method": "lora", "rank": [2, 4]}],
    "training": {"steps": 4, "batch_size": 8, "max_length": 32, "seeds": [0]},
}

@pytest.fixture(autouse=True, scope="session")
def _token_cache(tmp_path_factory):
    """Tokenized splits go to a per-session folder (CLI subprocesses inherit it), not ~/.cache."""
    import os

    os.environ["HARNESS_CACHE"] = str(tmp_path_factory.mktemp("harness-cache"))
    yield


DROP = object()  # `write_suite(probe=DROP)` removes a top-level key


@pytest.fixture
def base_suite() -> dict:
    """A fresh, editable copy of TINY_SUITE."""
    return copy.deepcopy(TINY_SUITE)


@pytest.fixture
def write_suite(tmp_path):
    """write_suite(data=None, *, filename="suite.yaml", **changes) -> Path of the written file.

    `data` is a suite dict (default: a copy of TINY_SUITE) or raw YAML text; keyword
    arguments replace top-level keys of the dict (DROP removes one).
    """

    def write(data: dict | str | None = None, *, filename: str = "suite.yaml", **changes) -> Path:
        if data is None:
            data = copy.deepcopy(TINY_SUITE)
        if changes:
            assert isinstance(data, dict), "top-level changes need a dict"
            data = {**data, **changes}
            data = {k: v for k, v in data.items() if v is not DROP}
        path = tmp_path / filename
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    return write


# a real PostgreSQL server for the tests that need one (tests/postgres.py)
from tests.postgres import postgres_server, postgres_url, postgres_url_2  # noqa: E402, F401
