"""Plugins: .py files named by a suite's `plugins:` that register extra methods.

A plugin is an ordinary Python file that calls `methods.register(...)` when imported,
exactly as the files of the `methods` package do.  `load_plugins` imports each file
once per process (a second call is a no-op; a failed import fails the same way again)
under a module name derived from a hash of its absolute path, so two plugins with the
same file name do not collide.  The built-in methods are registered first, so a plugin
that reuses a built-in name fails as its import error.  `grid.expand_grid` calls
`load_plugins(suite)` before it looks methods up.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterable

from harness.errors import SuiteError
from harness.suite import Suite

# absolute path -> the imported module, or the exception its import raised
_LOADED: dict[str, ModuleType | BaseException] = {}


def module_name(path: str) -> str:
    """The name a plugin file is imported under (in sys.modules)."""
    return "harness_plugin_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]


def load_plugins(suite_or_paths: Suite | Iterable[str], suite_file: str | None = None) -> list[ModuleType]:
    """Import the plugins of a suite (or these paths, relative to `suite_file`'s folder); returns their modules.

    Raises SuiteError at `plugins[i]` for a file that is missing or whose import raises.
    """
    from methods import all_methods

    if isinstance(suite_or_paths, Suite):
        paths, file = list(suite_or_paths.plugins), suite_file or suite_or_paths.file
    else:
        paths, file = [suite_or_paths] if isinstance(suite_or_paths, str) else list(suite_or_paths), suite_file or "<plugins>"
    base = Path(suite_file).resolve().parent if suite_file else Path.cwd()
    if paths:
        all_methods()  # built-ins first: a plugin may not take their names
    modules = []
    for i, raw in enumerate(paths):
        path = Path(raw).expanduser()
        path = str(path if path.is_absolute() else (base / path).resolve())
        if path not in _LOADED:
            if not path.endswith(".py") or not Path(path).is_file():
                raise SuiteError(file, f"plugins[{i}]", "an existing .py file", raw, f"resolved to {path}")
            _LOADED[path] = _import(path)
        loaded = _LOADED[path]
        if isinstance(loaded, BaseException):
            message = " ".join(str(loaded).split())  # one line, as every suite error
            raise SuiteError(file, f"plugins[{i}]", "a plugin that imports", f"<{type(loaded).__name__}: {message}>",
                             f"fix the plugin {path}")
        modules.append(loaded)
    return modules


def _import(path: str) -> ModuleType | Exception:
    name = module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        return ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing look the module up while it runs
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any error in a user's plugin is reported as a suite error
        del sys.modules[name]
        return exc
    return module
