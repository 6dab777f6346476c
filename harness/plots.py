"""The PNG plots embedded in the leaderboard: score against cost, and score against rank.

For each task `write_task_plots` draws

- `<task>-pareto.png`: the test score of every configuration against three costs side
  by side (training memory: the leaderboard's memory column, the device peak on a GPU and
  the exact training state on CPU; trainable parameters; training throughput), with the
  Pareto front of each panel marked: the configurations nothing else beats on both
  that cost and the score.
- `<task>-rank.png`: score against adapter rank, one line per method and quantization,
  to show where more rank stops paying.  Written only when some configuration has a
  rank; configurations without one (e.g. full fine-tuning) are drawn as dashed
  horizontal reference lines so that the curves can be read against them.

Plots are drawn with matplotlib's object-oriented API on an Agg canvas: no pyplot, so
no display is ever touched, no global backend is switched in the host process and no
figure is left registered anywhere once the function returns.  matplotlib is imported
inside the functions that draw, so importing this module is cheap.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.figure import Figure
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox

# tab10, fixed here so that a method's colour does not depend on matplotlib's rcParams.
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
            "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
# Line style and marker per quantization in the rank plot (colour is the method's).
_QUANT_STYLE = {"none": ("-", "o"), "int8": ("--", "s"), "nf4": (":", "^")}
_OTHER_QUANT_STYLE = ("-.", "D")

_FONTS = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8,
          "ytick.labelsize": 8, "legend.fontsize": 8, "figure.titlesize": 11}
_LABEL_SIZE = 7  # points next to each marker
_DPI = 110
_MARKER = 36  # scatter area (pt^2) of an ordinary point
_FRONT_MARKER = 90  # ... and of a point on the Pareto front
_DODGE = 0.07  # octaves between points of different lines at one rank (rank plot)


@dataclass(frozen=True)
class PlotPoint:
    """One leaderboard row as the plots need it (means over seeds)."""

    label: str  # e.g. "lora r4 nf4": printed next to the point
    method: str  # e.g. "lora": picks the colour
    rank: int | None
    quant: str  # "none" | "int8" | "nf4" ...
    score: float  # mean test score
    score_err: float  # interval half-width (nan: no error bar)
    memory_mb: float  # the leaderboard's memory column: device peak on a GPU, train_state_mb on CPU (harness.measures)
    trainable_params: float
    tokens_per_s: float
    score_low: float = math.nan  # an asymmetric interval (e.g. the bootstrap's): used instead of score_err when set
    score_high: float = math.nan

    def error(self) -> tuple[float, float] | None:
        """(below, above) the score for the error bar, or None when there is no interval."""
        if _finite(self.score_low) and _finite(self.score_high):
            return max(0.0, self.score - self.score_low), max(0.0, self.score_high - self.score)
        if _finite(self.score_err):
            return self.score_err, self.score_err
        return None


def pareto_front(xs: Sequence[float], ys: Sequence[float], x_lower_is_better: bool,
                 y_higher_is_better: bool) -> list[int]:
    """Indices of the points no other point dominates, sorted by x ascending.

    A point dominates another when it is at least as good on both coordinates and
    strictly better on one.  Points with a nan coordinate are never on the front and
    never dominate (we do not know where they are).  Identical points do not dominate
    each other, so both are on the front if either is.
    """
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length: {len(xs)} != {len(ys)}")
    # Flip signs so that "better" is "smaller" on both axes.
    sx = 1.0 if x_lower_is_better else -1.0
    sy = -1.0 if y_higher_is_better else 1.0
    known = [i for i in range(len(xs)) if not (math.isnan(xs[i]) or math.isnan(ys[i]))]
    cost = {i: (sx * xs[i], sy * ys[i]) for i in known}

    def dominates(j: int, i: int) -> bool:
        (xj, yj), (xi, yi) = cost[j], cost[i]
        return xj <= xi and yj <= yi and (xj < xi or yj < yi)

    front = [i for i in known if not any(dominates(j, i) for j in known if j != i)]
    return sorted(front, key=lambda i: (xs[i], i))


def safe_name(task: str) -> str:
    """The task name as a file name: characters other than [A-Za-z0-9_.-] become "_"."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", task)


def _method_colours(points: Sequence[PlotPoint]) -> dict[str, str]:
    # Sorted, so a method gets the same colour in both figures and in every task that
    # has the same methods.
    methods = sorted({p.method for p in points})
    return {m: _PALETTE[i % len(_PALETTE)] for i, m in enumerate(methods)}


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _human(v: float, _pos: object = None) -> str:
    """10000 -> "10k", 2.5e6 -> "2.5M": tick labels for parameter counts."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:g}{suffix}"
    return f"{v:g}"


def _direction(higher_is_better: bool) -> str:
    return "higher is better" if higher_is_better else "lower is better"


def _new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas, outside pyplot (so nothing to close or leak)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    # No "Software" entry (it names the matplotlib version): same inputs, same bytes.
    fig.savefig(path, dpi=_DPI, metadata={"Software": None})
    return path


# Where a point's label may go, in order of preference: offsets in points from the
# point and the text alignment that keeps the text on that side of it.
_NEAR = [(7, 0, "left", "center"), (-7, 0, "right", "center"), (0, 7, "center", "bottom"),
         (0, -7, "center", "top"), (6, 5, "left", "bottom"), (6, -5, "left", "top"),
         (-6, 5, "right", "bottom"), (-6, -5, "right", "top")]
# Then the same directions farther out, drawn with a thin leader line back to the point.
# Each step out costs about as much as a label crossing a line (in pixels^2 of overlap),
# so a near spot with a small overlap still wins over a far one.
_CANDIDATES = [(dx * k, dy * k, ha, va, penalty)
               for k, penalty in ((1.0, 0.0), (2.2, 40.0), (3.4, 80.0)) for dx, dy, ha, va in _NEAR]

Segment = tuple[tuple[float, float], tuple[float, float]]


def _overlap(a: Bbox, b: Bbox) -> float:
    """Area in pixels^2 shared by two matplotlib Bboxes."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _text_box(ann: Annotation, renderer: RendererBase) -> Bbox:
    # The text alone: an Annotation's own extent also covers its leader line.  Its text
    # position is only worked out on update_positions (normally at draw time).
    from matplotlib.text import Text

    ann.update_positions(renderer)
    return Text.get_window_extent(ann, renderer)


def _label_points(ax: Axes, xs: list[float], ys: list[float], texts: list[str], lines: list[Segment],
                  always: set[int]) -> int:
    """Write each text next to its point where it covers no other label, marker or line.

    Greedy, in pixels (so only once the figure's layout is final): the points in
    `always` (the Pareto front, the ones a reader looks for) first, then the rest, each
    from the top of the panel down, take the first candidate position that stays inside
    the axes and overlaps no label already placed, no marker and none of `lines` (error
    bars and the front's step line: axis-aligned segments in data coordinates); else
    the least bad one.  Only points in `always` may have their label moved farther out
    with a leader line; another point whose least bad position would still cover a
    label or marker, or leave the axes, gets no label: in a crowded panel a legible
    subset beats a pile of overlapping text.  Returns how many were left out.
    """
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    centres = ax.transData.transform(list(zip(xs, ys)))
    r = 5 * fig.dpi / 72.0  # half-size of the box kept clear around every marker
    markers = [Bbox.from_extents(cx - r, cy - r, cx + r, cy + r) for cx, cy in centres]
    obstacles = []
    for a, b in lines:
        (x0, y0), (x1, y1) = ax.transData.transform([a, b])
        # Pad the (zero-width) segment to the width the line is drawn with.
        obstacles.append(Bbox.from_extents(min(x0, x1) - 1.5, min(y0, y1) - 1.5,
                                           max(x0, x1) + 1.5, max(y0, y1) + 1.5))
    placed: list[Bbox] = []
    style = dict(fontsize=_LABEL_SIZE, color="#222222", textcoords="offset points", zorder=6,
                 bbox=dict(boxstyle="square,pad=0.1", facecolor="white", edgecolor="none", alpha=0.75))
    left_out = 0
    for i in sorted(range(len(xs)), key=lambda k: (k not in always, -centres[k][1], centres[k][0])):
        best: tuple[float, float, tuple[float, float, str, str, float]] | None = None
        # Leader lines only for the front: on other points they mostly add clutter.
        for cand in _CANDIDATES if i in always else _CANDIDATES[:len(_NEAR)]:
            dx, dy, ha, va, penalty = cand
            ann = ax.annotate(texts[i], (xs[i], ys[i]), xytext=(dx, dy), ha=ha, va=va, **style)
            box = _text_box(ann, renderer)
            ann.remove()
            # Hiding text or a point is bad; crossing a thin line or going far is tolerable.
            hard = (10 * (box.width * box.height - _overlap(box, frame)) + sum(_overlap(box, o) for o in placed)
                    + sum(_overlap(box, m) for j, m in enumerate(markers) if j != i))
            cost = hard + sum(_overlap(box, o) for o in obstacles) + penalty
            if best is None or cost < best[0]:
                best = (cost, hard, cand)
            if cost == 0:
                break
        assert best is not None
        if best[1] > 0 and i not in always:
            left_out += 1
            continue
        dx, dy, ha, va, penalty = best[2]
        leader = dict(arrowstyle="-", color="#888888", lw=0.6, shrinkA=0, shrinkB=4)
        ann = ax.annotate(texts[i], (xs[i], ys[i]), xytext=(dx, dy), ha=ha, va=va, **style,
                          arrowprops=leader if penalty else None)
        placed.append(_text_box(ann, renderer))
    return left_out


def _cost_panel(ax: Axes, points: Sequence[PlotPoint], xs: list[float], x_lower_is_better: bool,
                higher_is_better: bool, colours: dict[str, str], xlabel: str,
                log_x: bool) -> tuple[list[int], list[int], list[Segment]]:
    """Draw one score-vs-cost panel.

    Returns the indices (into points) drawn in it, those on its Pareto front and the
    line segments drawn (error bars, front) for the labels to keep clear of.  Points
    whose x is nan (or not positive on a log axis) are left out of this panel.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    shown = [i for i, p in enumerate(points)
             if _finite(xs[i]) and _finite(p.score) and (xs[i] > 0 or not log_x)]
    ax.set_xlabel(xlabel)
    ax.grid(True, color="#e5e5e5", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    if log_x:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_human))
        span = max(xs[i] for i in shown) / min(xs[i] for i in shown) if shown else 1e9
        if span < 100:
            # Under two decades there are too few powers of ten to read values off.
            ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
            ax.xaxis.set_minor_formatter(FuncFormatter(_human))
        else:
            ax.xaxis.set_minor_formatter(NullFormatter())
    if not shown:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#888888")
        ax.set_xticks([])  # the default 0..1 ticks would read as measurements
        ax.xaxis.set_minor_locator(NullLocator())
        return shown, [], []
    lines: list[Segment] = []
    for i in shown:
        p = points[i]
        err = p.error()
        if err is not None:
            lines.append(((xs[i], p.score - err[0]), (xs[i], p.score + err[1])))
            ax.errorbar([xs[i]], [p.score], yerr=[[err[0]], [err[1]]], fmt="none", ecolor=colours[p.method],
                        elinewidth=1, capsize=2.5, alpha=0.7, zorder=2)
    ax.scatter([xs[i] for i in shown], [points[i].score for i in shown],
               c=[colours[points[i].method] for i in shown], s=_MARKER, zorder=3, linewidths=0)
    sub = pareto_front([xs[i] for i in shown], [points[i].score for i in shown],
                       x_lower_is_better, higher_is_better)
    front = [shown[k] for k in sub]
    fx, fy = [xs[i] for i in front], [points[i].score for i in front]
    for k in range(len(front) - 1):
        corner = (fx[k + 1], fy[k]) if x_lower_is_better else (fx[k], fy[k + 1])
        lines += [((fx[k], fy[k]), corner), (corner, (fx[k + 1], fy[k + 1]))]
    # The step line is the best score reachable at each cost: for "lower is better"
    # costs it holds a front point's score until the next (costlier) point, for
    # "higher is better" it holds the next point's score back to this one.
    ax.step(fx, fy, where="post" if x_lower_is_better else "pre", color="black", linewidth=1.3, zorder=4)
    ax.scatter(fx, fy, c=[colours[points[i].method] for i in front], s=_FRONT_MARKER, edgecolors="black",
               linewidths=1.5, zorder=5)
    # Room inside the frame for the labels of the outermost points.
    ax.margins(x=0.14, y=0.12)
    return shown, front, lines


def _with_missing(xlabel: str, points: Sequence[PlotPoint], xs: list[float], log_x: bool) -> str:
    """The x label, plus a line naming the points this panel cannot show (e.g. a
    configuration whose throughput was not measured), so that none vanishes silently."""
    missing = [p.label for p, x in zip(points, xs)
               if _finite(p.score) and not (_finite(x) and (x > 0 or not log_x))]
    if not missing:
        return xlabel
    named = ", ".join(missing) if len(missing) <= 3 else f"{len(missing)} configurations"
    return f"{xlabel}\n(not shown, no value: {named})"


def _pareto_figure(task: str, score_label: str, higher_is_better: bool, points: Sequence[PlotPoint],
                   colours: dict[str, str], memory_label: str, path: Path) -> Path:
    from matplotlib.lines import Line2D

    fig = _new_figure(13, 4.2)
    axes = fig.subplots(1, 3, sharey=True)
    panels = [
        ([p.memory_mb for p in points], True, f"{memory_label}, {_direction(False)}", False),
        ([p.trainable_params for p in points], True, f"trainable parameters (log scale), {_direction(False)}", True),
        ([p.tokens_per_s for p in points], False, f"training tokens/s, {_direction(True)}", False),
    ]
    drawn = [_cost_panel(ax, points, xs, lower, higher_is_better, colours,
                         _with_missing(xlabel, points, xs, log), log)
             for ax, (xs, lower, xlabel, log) in zip(axes, panels)]
    arrow = "\u2191" if higher_is_better else "\u2193"
    axes[0].set_ylabel(f"{score_label} {arrow} ({_direction(higher_is_better)})")
    fig.suptitle(f"{task}: score vs cost")
    handles = [Line2D([], [], linestyle="none", marker="o", markersize=6, color=colours[m], label=m)
               for m in colours]
    handles.append(Line2D([], [], color="black", linewidth=1.3, marker="o", markersize=8,
                          markerfacecolor="white", markeredgecolor="black", markeredgewidth=1.5,
                          label="Pareto front"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    # Leave the bottom strip to the legend; the layout is then fixed for labelling.
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    left_out = 0
    for ax, (xs, *_), (shown, front, lines) in zip(axes, panels, drawn):
        if shown:
            left_out += _label_points(ax, [xs[i] for i in shown], [points[i].score for i in shown],
                                      [points[i].label for i in shown], lines,
                                      always={k for k, i in enumerate(shown) if i in front})
    if left_out:
        fig.text(0.995, 0.012, "labels that would overlap are left out (front points are always labelled)",
                 ha="right", va="bottom", fontsize=_LABEL_SIZE, color="#666666")
    return _save(fig, path)


def _rank_figure(task: str, score_label: str, higher_is_better: bool, points: Sequence[PlotPoint],
                 colours: dict[str, str], path: Path) -> Path:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    fig = _new_figure(8, 4.2)
    ax = fig.subplots()
    ranked = [p for p in points if p.rank is not None and _finite(p.score)]
    groups: dict[tuple[str, str], list[PlotPoint]] = {}
    # "none" first within a method, so the unquantized line leads the legend.
    for p in sorted(ranked, key=lambda p: (p.method, p.quant != "none", p.quant, p.rank)):
        groups.setdefault((p.method, p.quant), []).append(p)
    # Where several lines have a point at the same rank, nudge those points apart by a
    # fraction of an octave so that their error bars do not sit on top of each other;
    # a point alone at its rank stays on the tick.
    at_rank: dict[int, list[tuple[str, str]]] = {}
    for key, ps in groups.items():
        for p in ps:
            if key not in at_rank.setdefault(p.rank, []):
                at_rank[p.rank].append(key)

    def nudged(p: PlotPoint) -> float:
        keys = at_rank[p.rank]
        return p.rank * 2.0 ** (_DODGE * (keys.index((p.method, p.quant)) - (len(keys) - 1) / 2))

    for (method, quant), ps in groups.items():
        linestyle, marker = _QUANT_STYLE.get(quant, _OTHER_QUANT_STYLE)
        errs = [p.error() or (0.0, 0.0) for p in ps]
        ax.errorbar([nudged(p) for p in ps], [p.score for p in ps], yerr=[[e[0] for e in errs], [e[1] for e in errs]],
                    color=colours[method],
                    linestyle=linestyle, marker=marker, markersize=6, linewidth=1.6, capsize=3,
                    elinewidth=1, label=method if quant == "none" else f"{method} ({quant})", zorder=3)
    # Configurations without a rank are references to read the curves against.
    for p in points:
        if p.rank is None and _finite(p.score):
            ax.axhline(p.score, color=colours[p.method], linestyle=(0, (5, 3)), linewidth=1.1,
                       label=f"{p.label} (no rank)", zorder=2)
            err = p.error()
            if err is not None:
                ax.axhspan(p.score - err[0], p.score + err[1], color=colours[p.method],
                           alpha=0.08, linewidth=0, zorder=1)
    ranks = sorted({p.rank for p in ranked})
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ranks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    # Room either side of the outer ranks (also gives a single rank a sensible axis).
    ax.set_xlim(ranks[0] / 2**0.6, ranks[-1] * 2**0.6)
    ax.margins(y=0.1)
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_xlabel("adapter rank (log2 scale)")
    arrow = "\u2191" if higher_is_better else "\u2193"
    ax.set_ylabel(f"{score_label} {arrow} ({_direction(higher_is_better)})")
    ax.set_title(f"{task}: score vs rank")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def write_task_plots(task: str, score_label: str, higher_is_better: bool, points: Sequence[PlotPoint],
                     out_dir: Path, memory_label: str = "peak training memory (MB)") -> dict[str, Path]:
    """Write `<task>-pareto.png` and (if any point has a rank) `<task>-rank.png` into out_dir.

    Returns {"pareto": path, "rank": path}, without "rank" when no point has one.  The
    task name is made file-safe with `safe_name`.  Points with a nan score appear in
    neither figure.
    """
    from matplotlib import rc_context

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = _method_colours(points)
    stem = safe_name(task)
    # rc_context: our font sizes without changing the host process's rcParams.
    with rc_context(_FONTS):
        paths = {"pareto": _pareto_figure(task, score_label, higher_is_better, points, colours, memory_label,
                                          out_dir / f"{stem}-pareto.png")}
        if any(p.rank is not None and _finite(p.score) for p in points):
            paths["rank"] = _rank_figure(task, score_label, higher_is_better, points, colours,
                                         out_dir / f"{stem}-rank.png")
    return paths
