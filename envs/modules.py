"""The one resolver for user-named code: `import_modules` entries and "module:attr" factories, from installed packages or the current directory."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any


def _is_missing(err: ModuleNotFoundError, name: str) -> bool:
    """True when `err` says `name` itself (or a parent package of it) is missing, not something it imports."""
    missing = err.name or ""
    return bool(missing) and (name == missing or name.startswith(missing + "."))


def _import_if_present(name: str, what: str) -> Any:
    """The module, or None when `name` itself is not found; a module that `name` imports being missing is an error."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if _is_missing(err, name):
            return None
        raise ModuleNotFoundError(f"{what}: importing {name!r} failed: {err} (a module that {name!r} imports is not "
                                  "installed)", name=err.name) from err


def import_user_module(name: str, what: str = "import_modules", noun: str = "") -> Any:
    """Import `name` as Python would from the current directory: installed packages first, then the working directory.

    `python scripts/collect.py` puts scripts/ on sys.path, not the directory the user runs from, so a `my_policy.py`
    beside them would not import. The working directory is appended (not prepended) so it never shadows an installed
    package. A module that cannot be found raises ModuleNotFoundError naming `what` asked for it and where it looked.
    """
    if not isinstance(name, str) or not name.strip() or any(not part.isidentifier() for part in name.split(".")):
        raise ValueError(f"{what}: {name!r} is not a Python module name (expected e.g. 'gym_pusht' or 'my_pkg.envs')")
    module = _import_if_present(name, what)
    if module is not None:
        return module
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        # Only for this import: a process that changes directory must not collect stale entries on sys.path.
        # (Modules the user's module imports while loading see it too; its package's submodules need no sys.path.)
        sys.path.append(cwd)
        importlib.invalidate_caches()
        try:
            module = _import_if_present(name, what)
        finally:
            sys.path.remove(cwd)
        if module is not None:
            return module
    searched = [p or "." for p in sys.path if p != cwd]
    raise ModuleNotFoundError(
        f"{what}: cannot import {noun}{name!r}: it is neither in the current directory ({cwd}) nor installed; "
        f"install it (pip install ...) or run from the directory that holds it; searched {cwd} and sys.path="
        f"{searched}", name=name)


def import_object(path: str, what: str = "policy_factory") -> Any:
    """'pkg.module:attr' (or 'pkg.module.attr') -> the object, importing the module through `import_user_module`."""
    if not isinstance(path, str):
        raise ValueError(f"{what}: expected 'module:attribute', got {path!r}")
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{what}: expected 'module:attribute' or 'module.attribute', got {path!r}")
    module = import_user_module(module_name, what, noun="module ")
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"{what}: module {module_name!r} ({getattr(module, '__file__', '?')}) has no "
                                 f"attribute {attr!r} (from {path!r})") from None
    return obj
