"""Conformance settings of the methods that the peft library implements (see tests/conformance_specs.py)."""
from __future__ import annotations

SPECS: dict = {}
