"""Conformance settings of the methods written in this project (see tests/conformance_specs.py)."""
from __future__ import annotations

SPECS: dict = {}
