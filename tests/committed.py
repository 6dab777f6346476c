"""The committed results/<name>/ folders and the suite file each was made from.

A leaderboard names its suite in its provenance footer ("- suite file: `...`", relative
to the repository): results/agnews/ comes from offline/agnews.yaml (the shared AG News
sample), not from suites/agnews.yaml (the same protocol on the hub dataset).
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def suite_file(board: Path) -> str:
    """The suite file a leaderboard names, else suites/<name>.yaml."""
    for line in board.read_text(encoding="utf-8").splitlines():
        if line.startswith("- suite file: `"):
            return line.split("`")[1]
    return f"suites/{board.parent.name}.yaml"


def committed() -> dict[str, str]:
    """results/<name> -> its suite file, for every folder with a leaderboard, a runs.csv and that suite."""
    out = {}
    for board in sorted((ROOT / "results").glob("*/leaderboard.md")):
        suite = suite_file(board)
        if (board.parent / "runs.csv").is_file() and (ROOT / suite).is_file():
            out[board.parent.name] = suite
    return out
