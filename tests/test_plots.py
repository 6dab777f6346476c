"""Checks harness.plots: the Pareto front on hand-made points, and that the leaderboard's
PNG files are written, readable, named safely and leave no figure open."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.plots import PlotPoint, pareto_front, safe_name, write_task_plots

NAN = float("nan")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_pareto_front_lower_x_higher_y() -> None:
    # (memory, accuracy): lower memory and higher accuracy are better.
    xs = [100, 200, 300, 150, 250, 400]
    ys = [0.5, 0.8, 0.9, 0.4, 0.8, 0.85]
    # 150/0.4 is beaten by 100/0.5; 250/0.8 by 200/0.8 (same score, less memory);
    # 400/0.85 by 300/0.9.
    assert pareto_front(xs, ys, x_lower_is_better=True, y_higher_is_better=True) == [0, 1, 2]


def test_pareto_front_other_directions() -> None:
    xs = [1.0, 2.0, 3.0, 4.0]
    ys = [4.0, 3.0, 1.0, 2.0]
    # Both lower-is-better: 4/2 is beaten by 3/1; the rest trade off.
    assert pareto_front(xs, ys, True, False) == [0, 1, 2]
    # Both higher-is-better: 4/2 beats 3/1; 1/4, 2/3 and 4/2 trade off.
    assert pareto_front(xs, ys, False, True) == [0, 1, 3]
    # Higher x, lower y: only 3/1 (beats 1/4, 2/3) and 4/2 (highest x) survive.
    assert pareto_front(xs, ys, False, False) == [2, 3]
    # Lower x, higher y: 1/4 beats everything.
    assert pareto_front(xs, ys, True, True) == [0]


def test_pareto_front_ties_and_order() -> None:
    # Identical points do not dominate each other: both stay.  Same x with a worse y
    # is dominated.  Result is sorted by x whatever the input order.
    xs = [5.0, 1.0, 1.0, 3.0, 1.0]
    ys = [0.9, 0.5, 0.5, 0.7, 0.4]
    assert pareto_front(xs, ys, True, True) == [1, 2, 3, 0]


def test_pareto_front_nan_never_on_and_never_dominates() -> None:
    xs = [1.0, NAN, 2.0, 3.0]
    ys = [0.5, 0.99, NAN, 0.6]
    # The nan points would beat the others if they counted.
    assert pareto_front(xs, ys, True, True) == [0, 3]
    assert pareto_front([NAN], [1.0], True, True) == []
    assert pareto_front([], [], True, True) == []
    with pytest.raises(ValueError):
        pareto_front([1.0], [1.0, 2.0], True, True)


def test_pareto_front_known_set() -> None:
    # The realistic example: (peak MB, accuracy).
    mem = [1066, 748, 751, 758, 830, 779]
    acc = [0.970, 0.920, 0.963, 0.973, 0.973, 0.980]
    # full (1066) is beaten by r8 nf4 (779, 0.98); r8 int8 (830, 0.973) by r16 (758, 0.973).
    assert pareto_front(mem, acc, True, True) == [1, 2, 3, 5]


def _points() -> list[PlotPoint]:
    return [
        PlotPoint("full", "full", None, "none", 0.970, 0.010, 1066, 22.7e6, 990),
        PlotPoint("lora r1", "lora", 1, "none", 0.920, 0.020, 748, 10e3, 2010),
        PlotPoint("lora r4", "lora", 4, "none", 0.963, 0.008, 751, 37e3, 1995),
        PlotPoint("lora r16", "lora", 16, "none", 0.973, NAN, 758, 148e3, 1960),
        PlotPoint("lora r8 int8", "lora", 8, "int8", 0.973, 0.007, 830, 74e3, NAN),
        PlotPoint("lora r8 nf4", "lora", 8, "nf4", 0.980, 0.005, 779, 74e3, 1788),
    ]


def _check_png(path: Path, min_width: int, min_height: int) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert min_width <= width <= 3000 and min_height <= height <= 2000
    # Something was drawn: not a single flat colour.
    assert image.std() > 0.01


def test_write_task_plots_writes_both_pngs(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    out = tmp_path / "plots" / "nested"  # created on demand
    paths = write_task_plots("sentiment", "accuracy", True, _points(), out)
    assert set(paths) == {"pareto", "rank"}
    assert paths["pareto"] == out / "sentiment-pareto.png"
    assert paths["rank"] == out / "sentiment-rank.png"
    _check_png(paths["pareto"], min_width=1000, min_height=350)  # 13 x 4.2 in at 110 dpi
    _check_png(paths["rank"], min_width=500, min_height=350)
    assert plt.get_fignums() == []


def test_write_task_plots_is_deterministic(tmp_path: Path) -> None:
    a = write_task_plots("t", "loss", False, _points(), tmp_path / "a")
    b = write_task_plots("t", "loss", False, _points(), tmp_path / "b")
    for kind in a:
        assert a[kind].read_bytes() == b[kind].read_bytes()


def test_write_task_plots_without_ranks(tmp_path: Path) -> None:
    points = [p for p in _points() if p.rank is None]
    points.append(PlotPoint("ia3", "ia3", None, "none", 0.95, NAN, 700, 5e3, 2100))
    paths = write_task_plots("topic", "accuracy", True, points, tmp_path)
    assert set(paths) == {"pareto"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["topic-pareto.png"]
    _check_png(paths["pareto"], min_width=1000, min_height=350)


def test_write_task_plots_sanitises_task_name(tmp_path: Path) -> None:
    assert safe_name("wiki text/lm #2:v1.0") == "wiki_text_lm__2_v1.0"
    paths = write_task_plots("../wiki text/lm #2", "perplexity", False, _points(), tmp_path)
    assert paths["pareto"] == tmp_path / ".._wiki_text_lm__2-pareto.png"
    assert paths["rank"] == tmp_path / ".._wiki_text_lm__2-rank.png"
    assert all(p.parent == tmp_path and p.exists() for p in paths.values())


def test_write_task_plots_odd_inputs(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    # A nan score, a panel with no usable x at all, a single point, no error bars.
    points = [
        PlotPoint("a", "lora", 4, "none", 0.9, NAN, 700, 1e4, NAN),
        PlotPoint("b", "lora", 8, "none", NAN, 0.01, 710, 2e4, NAN),
    ]
    paths = write_task_plots("odd", "f1", True, points, tmp_path)
    assert set(paths) == {"pareto", "rank"}
    for path in paths.values():
        _check_png(path, min_width=500, min_height=350)
    # Many calls, many points: nothing left open.
    many = [PlotPoint(f"m r{r}", f"m{r % 3}", r, q, 0.5 + r / 100, 0.01, 500 + r, 1e3 * r, 1000 - r)
            for r in (1, 2, 4, 8, 16, 32) for q in ("none", "nf4")]
    for k in range(3):
        write_task_plots(f"many{k}", "accuracy", True, many, tmp_path)
    assert plt.get_fignums() == []
