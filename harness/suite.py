"""Suite files: YAML in, frozen typed objects out.

A suite declares one model, a task type, tasks with their data and metric, a grid of
method x rank x quant entries, training settings and the forgetting probe.  Unknown
keys are errors (a misspelt key must never fall back silently to a default), and
every error names the file, the field path, what was expected and what was found.

Two optional top-level keys extend a suite:

    search:                    # a hyperparameter search per cell, the same budget for every method
      trials: 8                # trials per cell (default 1: each cell runs once, as written)
      objective: score         # or [score, peak_memory]: a score/memory Pareto front
      sampler: tpe             # tpe | random
      protocol: per_seed       # or first_seed: the first seed searches, the others rerun its choice
      space:                   # the default space of every grid entry: training fields only;
                               # without one, each method searches its own lr range (registry)
        lr: {low: 1.0e-5, high: 1.0e-2, log: true}
        warmup_steps: {low: 0, high: 20}
    plugins: [my_method.py]    # .py files (relative to the suite file) that register extra methods

A grid entry may have its own `search:` (name -> spec, no `trials`), merged over
`search.space`; it may also search the method's settings as `settings.<field>`
(`settings.dropout: {choices: [0.0, 0.1]}`).  A spec is a range `{low, high, log}` or
`{choices: [...]}`.  Searchable training fields are `SEARCHABLE_TRAINING`; `steps` is
the budget and `seeds` are the repetitions, so neither is searchable.

Checks that need the method registry or the data files live in `grid.py` and
`data.py` (settings names in a search space are checked in `grid.py`, which knows the
method); `validate_suite` runs them all before anything is trained or logged.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from harness.errors import SuiteError, did_you_mean

SCHEMA_VERSION = 1
TASK_TYPES = ("seq_cls", "causal_lm")
QUANTS = ("none", "int8", "nf4")
TOP_LEVEL_KEYS = ("schema_version", "name", "description", "model", "task_type", "tasks", "grid", "training", "probe",
                  "search", "plugins")
SEARCHABLE_TRAINING = ("lr", "head_lr", "warmup_steps", "weight_decay", "max_grad_norm", "batch_size", "grad_accum")
OBJECTIVES = (("score",), ("score", "peak_memory"))
SAMPLERS = ("tpe", "random")
PROTOCOLS = ("per_seed", "first_seed")
BATCHINGS = ("bucket", "random")
PRECISIONS = ("auto", "bf16", "fp32")
OVERLAP_ACTIONS = ("warn", "error")  # data.on_overlap
_TRAINING_CHOICES = {"batching": BATCHINGS, "precision": PRECISIONS}


@dataclass(frozen=True)
class ModelSpec:
    """Where the base model comes from: exactly one of hub / path / package / tiny."""

    hub: str | None = None  # Hugging Face hub id, e.g. "HuggingFaceTB/SmolLM2-135M-Instruct"
    path: str | None = None  # local directory (HF format) or a .gguf file; absolute after loading
    package: str | None = None  # installed Python package that ships the weights
    subdir: str | None = None  # folder inside `package` that holds the weights
    gguf_file: str | None = None  # GGUF file name inside the hub repo / directory / package
    revision: str | None = None
    tiny: tuple[tuple[str, Any], ...] | None = None  # random-init config (tests): architecture, sizes

    @property
    def kind(self) -> str:
        return next(k for k in ("hub", "path", "package", "tiny") if getattr(self, k) is not None)

    def describe(self) -> str:
        if self.tiny is not None:
            return "tiny:" + ",".join(f"{k}={v}" for k, v in self.tiny)
        base = getattr(self, self.kind)
        return f"{base}/{self.gguf_file}" if self.gguf_file else str(base)


@dataclass(frozen=True)
class DataSpec:
    """A task's data: a built-in synthetic generator, local files, or a hub dataset."""

    source: str  # "synthetic" | "files" | "hub"
    generator: str | None = None  # synthetic: generator name
    n_train: int = 1000
    n_validation: int = 200
    n_test: int = 200
    seed: int = 0
    files: tuple[tuple[str, str], ...] = ()  # files: (split, absolute path)
    hub: str | None = None  # hub: dataset id
    config: str | None = None
    revision: str | None = None
    splits: tuple[tuple[str, str], ...] = ()  # hub: (our split, hub split expression)
    columns: tuple[tuple[str, str], ...] = ()  # (role, column): text/label or prompt/answer
    # what to do when a validation or test input is also a train input (harness.data.overlap):
    # warn (run, log the counts, flag the task in the report) | error (refuse the suite)
    on_overlap: str = "warn"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    data: DataSpec
    metric: str

    def identity(self) -> dict[str, Any]:
        """The task as it enters the suite fingerprint and cell ids: `data.on_overlap` left out.

        It decides whether a run may start, not what a run computes, so switching it
        keeps the suite's study and its recorded results.
        """
        out = dataclasses.asdict(self)
        del out["data"]["on_overlap"]
        return out


@dataclass(frozen=True)
class Training:
    """Training settings shared by every cell; grid entries may override any but seeds."""

    steps: int = 100
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-4  # the method's own parameters (its adaptation)
    head_lr: float = 2e-3  # the task head (classifier / score and the pooler it reads), the same for every method
    warmup_steps: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 64
    eval_batch_size: int = 64
    max_new_tokens: int = 16  # causal LM: generation budget when scoring
    log_every: int = 10  # read the loss back from the device every N steps
    batching: str = "random"  # random | bucket: batches of similar length (little padding; see harness.train)
    precision: str = "auto"  # auto: bf16 on a GPU that has it, else fp32 | bf16 | fp32
    compile: bool = False  # torch.compile the model for training
    gradient_checkpointing: bool = False  # recompute activations in the backward: less memory, ~30% more compute
    seeds: tuple[int, ...] = (0,)

    def identity(self) -> dict[str, Any]:
        """The fields as they enter cell ids and the suite fingerprint.

        Fields added after results were first recorded are left out at their defaults,
        so recorded results keep matching their cells and suites.  They change speed,
        memory or the order batches come in, not what a cell is.
        """
        defaults = Training()
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in LATER_TRAINING_FIELDS or v != getattr(defaults, k)}


# head_lr (added with the one head recipe) is not among them on purpose: it changes what every
# seq_cls cell learns, so results recorded before it must not match a cell again
LATER_TRAINING_FIELDS = ("batching", "precision", "compile", "gradient_checkpointing")


@dataclass(frozen=True)
class SearchParam:
    """One searched hyperparameter: a training field (`lr`) or a method setting (`settings.alpha`).

    Either a range (`low`..`high`, log-uniform when `log`; `integer` is set by grid
    expansion from the field's type) or a list of `choices`.
    """

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class SearchSpec:
    """`search:` - the same trial budget for every cell, the objective(s) and the default space."""

    trials: int = 1  # trials per cell, equal for every method (a fair budget)
    objectives: tuple[str, ...] = ("score",)  # or ("score", "peak_memory"): Pareto mode
    sampler: str = "tpe"  # tpe | random
    space: tuple[SearchParam, ...] = ()
    # per_seed: every seed searches with the full budget; first_seed: the first seed searches,
    # the other seeds rerun its chosen values once each (cheaper; the interval then leaves out search noise)
    protocol: str = "per_seed"


@dataclass(frozen=True)
class GridEntry:
    """One `grid:` entry; list-valued rank/quant expand as a cross product."""

    method: str
    ranks: tuple[int | None, ...] = (None,)
    quants: tuple[str, ...] = ("none",)
    settings: tuple[tuple[str, Any], ...] = ()  # method settings overrides
    training: tuple[tuple[str, Any], ...] = ()  # training overrides (lr, steps, ...)
    search: tuple[SearchParam, ...] = ()  # this entry's space, over the suite's `search.space`
    where: str = ""  # field path of this entry, for error messages


@dataclass(frozen=True)
class ProbeSpec:
    """The forgetting probes (harness.probe): general texts and, for encoders, a built-in task.

    The texts (the built-in corpus, local files or a hub dataset; `n_texts` of them) give
    a causal LM's forgetting and an encoder's representation_drift.  An encoder's
    forgetting is a linear probe on a built-in synthetic task: `task` (None: automatic,
    see harness.probe.probe_task_name), fitted on `task_train` examples, scored on
    `task_test`.  Every text is truncated to `max_length` tokens.
    """

    builtin: str | None = "general"
    files: tuple[str, ...] = ()
    hub: str | None = None
    config: str | None = None
    split: str = "train"
    column: str = "text"
    n_texts: int = 64
    max_length: int = 64
    task: str | None = None  # a built-in seq_cls generator (sentiment, topic); None: automatic
    task_train: int = 256
    task_test: int = 256


@dataclass(frozen=True)
class Suite:
    name: str
    file: str  # the suite file, absolute
    model: ModelSpec
    task_type: str
    tasks: tuple[TaskSpec, ...]
    grid: tuple[GridEntry, ...]
    training: Training
    probe: ProbeSpec
    description: str = ""
    schema_version: int = SCHEMA_VERSION
    search: SearchSpec = SearchSpec()
    plugins: tuple[str, ...] = ()  # absolute paths of .py files that register extra methods

    @property
    def base(self) -> Path:
        """The suite file's folder: relative paths in the suite are relative to it."""
        return Path(self.file).absolute().parent

    def fingerprint(self) -> str:
        """Content hash (paths relative to the suite file are already resolved)."""
        data = portable(dataclasses.asdict(self), self.base) | {
            "file": None, "training": self.training.identity(),
            "tasks": portable([t.identity() for t in self.tasks], self.base)}
        # search and plugins enter the hash only when used, so suites without them keep their fingerprint
        if self.search == SearchSpec():
            del data["search"]
        if not self.plugins:
            del data["plugins"]
        for entry in data["grid"]:
            if not entry["search"]:
                del entry["search"]
        payload = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def resolved_json(self) -> str:
        """The suite after defaults and path resolution, as logged with every run."""
        return json.dumps(self.to_dict(), indent=2, default=str)


# --------------------------------------------------------------------------- parsing


class _Reader:
    """Walks one mapping of the YAML, remembering the field path for error messages."""

    def __init__(self, file: str, data: Any, where: str):
        self.file, self.where = file, where
        if not isinstance(data, Mapping):
            self.fail("", "a mapping", _kind(data))
        self.data = dict(data)
        self.used: set[str] = set()

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, expected: str, found: object, hint: str | None = None):
        raise SuiteError(self.file, self.path(key) if key else (self.where or "<top level>"), expected, found, hint)

    def get(self, key: str, kind, default=..., *, positive=False, choices=None):
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                self.fail(key, _a(kind), "<missing>", "this field is required")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        if kind is float and isinstance(value, str):  # YAML reads "5e-5" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            self.fail(key, _a(kind), value)
        if positive and value <= 0:
            self.fail(key, "a positive number", value)
        if choices is not None and value not in choices:
            self.fail(key, "one of " + ", ".join(map(str, choices)), value, did_you_mean(value, choices))
        return value

    def sub(self, key: str, default=...) -> "_Reader | None":
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                self.fail(key, "a mapping", "<missing>", "this field is required")
            return default
        return _Reader(self.file, self.data[key], self.path(key))

    def finish(self, allowed: tuple[str, ...] | None = None) -> None:
        allowed = tuple(allowed) if allowed is not None else tuple(self.used)
        for key in self.data:
            if key not in allowed:
                hint = did_you_mean(key, allowed)
                if key == "seeds" and "seeds" not in allowed:
                    hint = "seeds are set once, in the suite-wide `training:`"
                self.fail(str(key), "one of the known keys (" + ", ".join(allowed) + ")", f"<unknown key {key!r}>", hint)


def _kind(value: Any) -> str:
    return f"<{type(value).__name__}: {value!r}>" if value is not None else "<empty>"


def _kind_name(kind) -> str:
    if isinstance(kind, tuple):
        return " or ".join(_kind_name(k) for k in kind)
    return {int: "integer", float: "number", str: "string", bool: "boolean", list: "list", dict: "mapping"}.get(kind, kind.__name__)


def _a(kind) -> str:
    name = _kind_name(kind)
    return ("an " if name[0] in "aeiou" else "a ") + name


def _one_or_list(r: _Reader, key: str, kind, default):
    """A scalar or a list of scalars -> tuple."""
    r.used.add(key)
    if key not in r.data:
        return default
    raw = r.data[key]
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        r.fail(key, f"{_a(kind)} or a non-empty list of them", raw)
    for i, item in enumerate(items):
        if not isinstance(item, kind) or isinstance(item, bool):
            r.fail(f"{key}[{i}]" if isinstance(raw, list) else key, _a(kind), item)
    return tuple(items)


def _resolve_path(base: Path, value: str) -> str:
    """Absolute, without following symbolic links: `portable` can then give it back relative
    to the suite file, the same wherever the checkout (and the data beside it) lives."""
    p = Path(value).expanduser()
    return os.path.normpath(p if p.is_absolute() else base.absolute() / p)


def portable(data: Any, base: Path) -> Any:
    """`dataclasses.asdict` output with the file paths the suite named (data files, a model
    path, probe files, plugins) relative to the suite file's folder: what enters the suite
    fingerprint and cell ids, so recorded results keep matching when the repository (with
    the data at the same place beside it) is checked out somewhere else."""
    def rel(path: Any) -> Any:
        return os.path.relpath(path, base) if isinstance(path, str) and os.path.isabs(path) else path

    if isinstance(data, dict):
        out = dict(data)
        if "files" in out and isinstance(out["files"], (list, tuple)):  # DataSpec: (split, path); ProbeSpec: paths
            out["files"] = [(f[0], rel(f[1])) if isinstance(f, (list, tuple)) else rel(f) for f in out["files"]]
        if isinstance(out.get("path"), str):
            out["path"] = rel(out["path"])
        if isinstance(out.get("plugins"), (list, tuple)):
            out["plugins"] = [rel(p) for p in out["plugins"]]
        return {k: portable(v, base) for k, v in out.items()}
    if isinstance(data, (list, tuple)) and any(isinstance(v, dict) for v in data):  # tasks, grid entries
        return [portable(v, base) for v in data]
    return data


def _parse_model(r: _Reader, base: Path) -> ModelSpec:
    r.finish(("hub", "path", "package", "subdir", "gguf_file", "revision", "tiny"))
    keys = ("hub", "path", "package", "tiny")
    given = [k for k in keys if k in r.data]
    if len(given) != 1:
        r.fail("", "exactly one of " + ", ".join(keys), f"<{', '.join(given) or 'none of them'}>",
               "e.g. `model: {hub: HuggingFaceTB/SmolLM2-135M-Instruct}` or `model: {path: ./my-model}`")
    tiny = None
    if "tiny" in r.data:
        t = r.sub("tiny")
        arch = t.get("architecture", str, choices=("bert", "llama"))
        sizes = {k: t.get(k, int, d, positive=True) for k, d in
                 (("hidden_size", 32), ("layers", 2), ("heads", 2), ("intermediate_size", 64))}
        t.finish()
        tiny = (("architecture", arch),) + tuple(sizes.items())
    path = r.get("path", str, None)
    spec = ModelSpec(
        hub=r.get("hub", str, None),
        path=_resolve_path(base, path) if path else None,
        package=r.get("package", str, None),
        subdir=r.get("subdir", str, None),
        gguf_file=r.get("gguf_file", str, None),
        revision=r.get("revision", str, None),
        tiny=tiny,
    )
    r.finish()
    if spec.path and not Path(spec.path).exists():
        r.fail("path", "an existing model directory or .gguf file", path, f"resolved to {spec.path}")
    return spec


_ROLES = {"seq_cls": ("text", "label"), "causal_lm": ("prompt", "answer")}


def _parse_data(r: _Reader, base: Path, task_type: str) -> DataSpec:
    r.finish(("synthetic", "n_train", "n_validation", "n_test", "seed", "files", "hub", "config", "revision", "splits", "columns",
              "on_overlap"))
    sources = [k for k in ("synthetic", "files", "hub") if k in r.data]
    if len(sources) != 1:
        r.fail("", "exactly one of synthetic, files, hub", f"<{', '.join(sources) or 'none of them'}>")
    source = sources[0]
    kw: dict[str, Any] = {"source": source}
    if source == "synthetic":
        kw["generator"] = r.get("synthetic", str)
        for k in ("n_train", "n_validation", "n_test"):
            kw[k] = r.get(k, int, DataSpec.__dataclass_fields__[k].default, positive=True)
        kw["seed"] = r.get("seed", int, 0)
    elif source == "files":
        f = r.sub("files")
        for split in ("train", "validation", "test"):
            f.get(split, str)
        f.finish(("train", "validation", "test"))
        kw["files"] = tuple((s, _resolve_path(base, f.data[s])) for s in ("train", "validation", "test"))
    else:
        kw["hub"] = r.get("hub", str)
        kw["config"] = r.get("config", str, None)
        kw["revision"] = r.get("revision", str, None)
        s = r.sub("splits")
        for split in ("train", "validation", "test"):
            s.get(split, str)
        s.finish(("train", "validation", "test"))
        kw["splits"] = tuple((k, s.data[k]) for k in ("train", "validation", "test"))
    roles = _ROLES[task_type]
    c = r.sub("columns", None)
    if c is not None:
        cols = tuple((role, c.get(role, str, role)) for role in roles)
        c.finish(roles)
    else:
        cols = tuple((role, role) for role in roles)
    kw["columns"] = cols
    kw["on_overlap"] = r.get("on_overlap", str, "warn", choices=OVERLAP_ACTIONS)
    r.finish()
    return DataSpec(**kw)


def _parse_training(r: _Reader, defaults: Training, allow_seeds: bool) -> dict[str, Any]:
    """Returns only the fields given (so grid overrides stay sparse)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(Training):
        if f.name == "seeds":
            continue
        if f.name in r.data:
            default = getattr(defaults, f.name)
            if isinstance(default, (bool, str)):
                out[f.name] = r.get(f.name, type(default), choices=_TRAINING_CHOICES.get(f.name))
                continue
            kind = float if isinstance(default, float) else int
            nonneg = f.name in ("warmup_steps", "weight_decay")
            value = r.get(f.name, kind, positive=not nonneg)
            if nonneg and value < 0:
                r.fail(f.name, "a number >= 0", value)
            out[f.name] = value
    if allow_seeds and "seeds" in r.data:
        seeds = _one_or_list(r, "seeds", int, None)
        if len(set(seeds)) != len(seeds):
            r.fail("seeds", "distinct seeds", list(seeds))
        out["seeds"] = seeds
    keys = tuple(f.name for f in dataclasses.fields(Training) if allow_seeds or f.name != "seeds")
    r.finish(keys)
    return out


_RANGE_EXAMPLE = "e.g. `{low: 1.0e-5, high: 1.0e-2, log: true}`, or `{choices: [0.0, 0.1]}` for a list of values"
_NOT_SEARCHED = {
    "steps": "steps is the budget and must be equal for every method: set it in `training:`",
    "seeds": "seeds are repetitions, not a hyperparameter: set them with training.seeds",
    "settings.rank": "rank is a grid axis: list the ranks in the entry's `rank:`",
}
_ENTRY_SEARCH_KEYS = {
    "trials": "set search.trials at the top level: every method gets the same budget",
    "objective": "set search.objective at the top level: every cell is ranked the same way",
    "sampler": "set search.sampler at the top level",
    "space": "an entry's `search:` maps names to specs directly, e.g. `search: {lr: {low: 1.0e-5, high: 1.0e-2}}`",
}


def _number(r: _Reader, key: str):
    """A range bound: int or float as written (YAML reads "1e-5" as a string)."""
    value = r.data[key]
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        r.fail(key, "a number", value, "bounds are numbers, " + _RANGE_EXAMPLE)
    return value


def _parse_param(file: str, name: str, raw: Any, where: str) -> SearchParam:
    """One `name: spec` of a space, structure only (types against the target are checked by the caller)."""
    if not isinstance(raw, Mapping):
        raise SuiteError(file, where, "a range `{low: .., high: ..}` or `{choices: [..]}`",
                         raw if raw is not None else "<empty>",
                         f"to fix {name} at one value, set it outside `search:`; to search it, " + _RANGE_EXAMPLE)
    r = _Reader(file, raw, where)
    r.finish(("low", "high", "log", "choices"))
    if "choices" in r.data:
        both = [k for k in ("low", "high", "log") if k in r.data]
        if both:
            r.fail("", "either choices or a range (low, high, log), not both", f"<choices and {', '.join(both)}>",
                   "drop low/high/log to pick from the list, or drop choices to sample the range")
        choices = r.data["choices"]
        if not isinstance(choices, list) or not choices:
            r.fail("choices", "a non-empty list of values", choices if choices is not None else "<empty>",
                   "e.g. `choices: [0.0, 0.1]`")
        for i, c in enumerate(choices):
            if c is not None and not isinstance(c, (int, float, str, bool)):
                r.fail(f"choices[{i}]", "a single value (number, string, boolean or null)", _kind(c),
                       "each choice is one value; lists and mappings cannot be searched")
        return SearchParam(name=name, choices=tuple(choices))
    for key in ("low", "high"):
        if key not in r.data:
            r.fail(key, "a number", "<missing>", "a range needs both low and high, " + _RANGE_EXAMPLE)
    low, high = _number(r, "low"), _number(r, "high")
    log = r.data.get("log", False)
    if not isinstance(log, bool):
        r.fail("log", "a boolean", log, "`log: true` samples log-uniformly, `log: false` (the default) uniformly")
    if low >= high:
        r.fail("low", f"a number below high ({high})", low,
               "make low < high; to fix one value set it outside `search:`, or use `choices: [x]`")
    if log and low <= 0:
        r.fail("low", "a positive number (log: true samples log-uniformly)", low, "use a low above 0, or drop `log: true`")
    return SearchParam(name=name, low=low, high=high, log=log)


def _check_training_param(file: str, p: SearchParam, where: str) -> SearchParam:
    """A searched training field: its values have the field's type and limits; `integer` is set from the type."""
    integer = isinstance(getattr(Training(), p.name), int)
    nonneg = p.name in ("warmup_steps", "weight_decay")
    values = [("low", p.low), ("high", p.high)] if p.choices is None else [(f"choices[{i}]", c) for i, c in enumerate(p.choices)]
    for key, v in values:
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        if integer and (not number or not isinstance(v, int)):
            raise SuiteError(file, f"{where}.{key}", "an integer", v, f"{p.name} is a whole number, e.g. {getattr(Training(), p.name)}")
        if not number:
            raise SuiteError(file, f"{where}.{key}", "a number", v, f"{p.name} is a number, e.g. {getattr(Training(), p.name)}")
        if nonneg and v < 0:
            raise SuiteError(file, f"{where}.{key}", "a number >= 0", v, f"{p.name} cannot be negative")
        if not nonneg and v <= 0:
            raise SuiteError(file, f"{where}.{key}", "a positive number", v, f"{p.name} must be above 0")
    conv = int if integer else float
    if p.choices is not None:
        return dataclasses.replace(p, integer=integer, choices=tuple(conv(c) for c in p.choices))
    return dataclasses.replace(p, integer=integer, low=conv(p.low), high=conv(p.high))


def _parse_space(r: _Reader, entry: bool) -> tuple[SearchParam, ...]:
    """A search space (`search.space` or a grid entry's `search`), sorted by name.

    Training fields are checked here; `settings.<field>` names (entries only) are
    checked against the method in `grid.expand_grid`.
    """
    params = []
    allowed = SEARCHABLE_TRAINING + (("settings.<field>",) if entry else ())
    for raw_name, spec in r.data.items():
        name = str(raw_name)
        where = r.path(name)
        if entry and name in _ENTRY_SEARCH_KEYS:
            r.fail(name, "a searchable name (" + ", ".join(allowed) + ")", name, _ENTRY_SEARCH_KEYS[name])
        if name in _NOT_SEARCHED:
            r.fail(name, "a searchable name (" + ", ".join(allowed) + ")", name, _NOT_SEARCHED[name])
        if name.startswith("settings."):
            if not entry:
                r.fail(name, "a training field (" + ", ".join(SEARCHABLE_TRAINING) + ")", name,
                       "put method settings in the grid entry's `search:`, e.g. grid: [{method: lora, search: {" + name + ": ...}}]")
            params.append(_parse_param(r.file, name, spec, where))
            continue
        if name not in SEARCHABLE_TRAINING:
            if name in Training.__dataclass_fields__:
                hint = f"{name} is not searchable: set it in `training:`"
            else:
                hint = did_you_mean(name, SEARCHABLE_TRAINING) or (
                    f"a method setting is searched as `settings.{name}`" if entry
                    else "method settings are searched in a grid entry's `search:`, as `settings.<field>`")
            r.fail(name, "a searchable name (" + ", ".join(allowed) + ")", name, hint)
        params.append(_check_training_param(r.file, _parse_param(r.file, name, spec, where), where))
    return tuple(sorted(params, key=lambda p: p.name))


def _parse_search(r: _Reader | None) -> SearchSpec:
    if r is None:
        return SearchSpec()
    r.finish(("trials", "objective", "sampler", "space", "protocol"))
    r.used.add("trials")
    trials = r.data.get("trials", 1)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        r.fail("trials", "an integer >= 1", trials if trials is not None else "<empty>",
               "trials per cell, e.g. `trials: 8`; 1 runs each cell once, as written")
    r.used.add("objective")
    raw = r.data.get("objective", "score")
    objectives = (raw,) if isinstance(raw, str) else tuple(raw) if isinstance(raw, list) else None
    if objectives not in OBJECTIVES:
        hint = "use `objective: score`, or `objective: [score, peak_memory]` for a score/memory Pareto front"
        if isinstance(raw, str) and (close := did_you_mean(raw, ("score", "peak_memory"))) and raw != "peak_memory":
            hint = f"{close} {hint}"
        r.fail("objective", "score or [score, peak_memory]", raw, hint)
    r.used.add("sampler")
    sampler = r.data.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        hint = did_you_mean(str(sampler), SAMPLERS) or "tpe (Bayesian, the default) or random"
        r.fail("sampler", "one of " + ", ".join(SAMPLERS), sampler, hint)
    r.used.add("protocol")
    protocol = r.data.get("protocol", "per_seed")
    if protocol not in PROTOCOLS:
        hint = did_you_mean(str(protocol), PROTOCOLS) or ("per_seed (every seed searches) or first_seed (the first "
                                                          "seed searches, the others rerun its choice)")
        r.fail("protocol", "one of " + ", ".join(PROTOCOLS), protocol, hint)
    s = r.sub("space", None)
    space = _parse_space(s, entry=False) if s is not None else ()
    return SearchSpec(trials=trials, objectives=objectives, sampler=sampler, space=space, protocol=protocol)


def _parse_plugins(r: _Reader, base: Path) -> tuple[str, ...]:
    r.used.add("plugins")
    if "plugins" not in r.data:
        return ()
    raw = r.data["plugins"]
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            r.fail(f"plugins[{i}]", "a path to a .py file", item if item is not None else "<empty>",
                   "plugins: a .py file path relative to the suite file, or a list of them")
        path = _resolve_path(base, item)
        if not path.endswith(".py") or not Path(path).is_file():
            r.fail(f"plugins[{i}]", "an existing .py file", item, f"resolved to {path}")
        out.append(path)
    return tuple(out)


def _parse_grid_entry(r: _Reader) -> GridEntry:
    r.finish(("method", "rank", "quant", "settings", "training", "search"))
    method = r.get("method", str)
    ranks = _one_or_list(r, "rank", int, (None,))
    for i, rank in enumerate(ranks):
        if rank is not None and rank <= 0:
            r.fail(f"rank[{i}]" if isinstance(r.data.get("rank"), list) else "rank", "a positive integer", rank)
    quants = _one_or_list(r, "quant", str, ("none",))
    for i, q in enumerate(quants):
        if q not in QUANTS:
            r.fail(f"quant[{i}]" if isinstance(r.data.get("quant"), list) else "quant", "one of " + ", ".join(QUANTS), q, did_you_mean(q, QUANTS))
    s = r.sub("settings", None)
    settings = tuple(sorted(s.data.items())) if s else ()
    t = r.sub("training", None)
    training = tuple(sorted(_parse_training(t, Training(), allow_seeds=False).items())) if t else ()
    sr = r.sub("search", None)
    search = _parse_space(sr, entry=True) if sr is not None else ()
    return GridEntry(method=method, ranks=ranks, quants=quants, settings=settings, training=training, search=search,
                     where=r.where)


def _parse_probe(r: _Reader | None, base: Path) -> ProbeSpec:
    if r is None:
        return ProbeSpec()
    sources = [k for k in ("builtin", "files", "hub") if k in r.data]
    if len(sources) > 1:
        r.fail("", "at most one of builtin, files, hub", f"<{', '.join(sources)}>")
    files = _one_or_list(r, "files", str, ())
    r.used.add("task")
    spec = ProbeSpec(
        builtin=r.get("builtin", str, "general" if not sources else None),
        files=tuple(_resolve_path(base, f) for f in files),
        hub=r.get("hub", str, None),
        config=r.get("config", str, None),
        split=r.get("split", str, "train"),
        column=r.get("column", str, "text"),
        n_texts=r.get("n_texts", int, 64, positive=True),
        max_length=r.get("max_length", int, 64, positive=True),
        task=r.data.get("task"),
        task_train=r.get("task_train", int, ProbeSpec.task_train),
        task_test=r.get("task_test", int, ProbeSpec.task_test),
    )
    r.finish()
    from harness.data import SYNTHETIC  # here: harness.data imports this module

    tasks = sorted(name for name, g in SYNTHETIC.items() if g.task_type == "seq_cls")
    if spec.task is not None and spec.task not in tasks:
        hint = (did_you_mean(spec.task, tasks) if isinstance(spec.task, str) else None) or (
            "a built-in synthetic classification task; leave `task` out to pick one automatically "
            "(topic when a task of the suite is the synthetic sentiment, else sentiment)")
        r.fail("task", "one of " + ", ".join(tasks), spec.task, hint)
    for key in ("task_train", "task_test"):
        if getattr(spec, key) < 16:
            r.fail(key, "an integer >= 16", getattr(spec, key),
                   f"the linear probe needs examples of every class; the default is {getattr(ProbeSpec, key)}")
    for i, f in enumerate(spec.files):
        if not Path(f).is_file():
            r.fail(f"files[{i}]" if len(spec.files) > 1 else "files", "an existing text file", files[i], f"resolved to {f}")
    return spec


def parse_suite(data: Any, file: str) -> Suite:
    """Typed Suite from already-loaded YAML data; raises SuiteError."""
    base = Path(file).resolve().parent
    r = _Reader(file, data, "")
    r.finish(TOP_LEVEL_KEYS)  # unknown keys first: a misspelt required key gets its did-you-mean
    version = r.get("schema_version", int)
    if version != SCHEMA_VERSION:
        r.fail("schema_version", str(SCHEMA_VERSION), version, "this harness reads schema_version 1")
    name = r.get("name", str)
    if not name.replace("-", "").replace("_", "").isalnum():
        r.fail("name", "letters, digits, '-' and '_' (it names results/<name>/)", name)
    task_type = r.get("task_type", str, choices=TASK_TYPES)
    model = _parse_model(r.sub("model"), base)
    r.used.add("tasks")
    raw_tasks = r.data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        r.fail("tasks", "a non-empty list of tasks", raw_tasks if raw_tasks is not None else "<missing>")
    tasks = []
    for i, raw in enumerate(raw_tasks):
        t = _Reader(file, raw, f"tasks[{i}]")
        t.finish(("name", "data", "metric"))
        tname = t.get("name", str)
        default_metric = "accuracy" if task_type == "seq_cls" else "exact_match"
        data = _parse_data(t.sub("data"), base, task_type)
        metric = t.get("metric", str, default_metric)
        if any(x.name == tname for x in tasks):
            t.fail("name", "a task name used once", tname)
        tasks.append(TaskSpec(tname, data, metric))
    r.used.add("grid")
    raw_grid = r.data.get("grid")
    if not isinstance(raw_grid, list) or not raw_grid:
        r.fail("grid", "a non-empty list of entries such as `- {method: lora, rank: [4, 8]}`", raw_grid if raw_grid is not None else "<missing>")
    grid = tuple(_parse_grid_entry(_Reader(file, raw, f"grid[{i}]")) for i, raw in enumerate(raw_grid))
    t = r.sub("training", None)
    training = Training(**_parse_training(t, Training(), allow_seeds=True)) if t else Training()
    probe = _parse_probe(r.sub("probe", None), base)
    search = _parse_search(r.sub("search", None))
    plugins = _parse_plugins(r, base)
    description = r.get("description", str, "")
    return Suite(name=name, file=str(Path(file).resolve()), model=model, task_type=task_type, tasks=tuple(tasks),
                 grid=grid, training=training, probe=probe, description=description, schema_version=version,
                 search=search, plugins=plugins)


def load_suite(path: str | Path) -> Suite:
    """Read and parse a suite file (structure only; see `validate_suite` for the rest)."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(str(path), "<file>", "an existing suite file", "<missing>", "check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<yaml>"
        raise SuiteError(str(path), where, "valid YAML", getattr(exc, "problem", str(exc)) or str(exc)) from None
    return parse_suite(data, str(path))
