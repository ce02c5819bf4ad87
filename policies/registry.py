"""Policy families register themselves by decorator: a package with config.py, model.py and export.py, no table."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
import re
from pathlib import Path
from typing import Any, Callable

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Installed packages announce their families here (pyproject: [project.entry-points."cerebellum.policies"]
# my_family = "my_package.my_family.config"), so the command-line apps know them without an import of their own.
ENTRY_POINT_GROUP = "cerebellum.policies"

_configs: dict[str, type] = {}
_policies: dict[str, type] = {}
_exports: dict[str, Callable[..., Any]] = {}
_packages: dict[str, str] = {}  # family -> the package its model and export modules live in
_discovered = False


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"a policy family name must be a plain identifier (letters, digits, _), got {name!r}")


def _add(table: dict[str, Any], name: str, value: Any, what: str) -> None:
    old = table.get(name)
    # The same class defined again (a module re-imported, e.g. by importlib.reload) replaces the old one.
    if old is not None and (old.__module__, old.__qualname__) != (value.__module__, value.__qualname__):
        raise ValueError(f"policy family {name!r} already has a {what} ({old.__module__}.{old.__qualname__}); "
                         f"{value.__module__}.{value.__qualname__} cannot register under the same name")
    table[name] = value


def register_config(name: str) -> Callable[[type], type]:
    """Class decorator for a family's config dataclass (a policies.config.PolicyConfig); its package becomes the
    family's package."""
    _check_name(name)

    def decorate(cls: type) -> type:
        _add(_configs, name, cls, "config class")
        _packages[name] = cls.__module__.rpartition(".")[0] or cls.__module__
        cls.family = name
        return cls

    return decorate


def register_policy(name: str) -> Callable[[type], type]:
    """Class decorator for a family's policy (a policies.interface.Policy subclass); sets its `name`."""
    _check_name(name)

    def decorate(cls: type) -> type:
        _add(_policies, name, cls, "policy class")
        cls.name = name
        return cls

    return decorate


def register_export(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for a family's export description: fn(policy, options) -> policies.export.ExportDescription."""
    _check_name(name)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        _add(_exports, name, fn, "export description")
        _packages.setdefault(name, fn.__module__.rpartition(".")[0] or fn.__module__)
        return fn

    return decorate


def discover() -> None:
    """Import the config module of every built-in family (each subpackage of `policies` that has one) and of every
    family an installed package announces under the `cerebellum.policies` entry point. Config modules stay light (no
    diffusers), so Hydra can register the schemas without loading the models; any other family registers when its
    config module is imported, and save_policy records that module for a fresh process."""
    global _discovered
    if _discovered:
        return
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.ispkg:
            continue
        package = f"policies.{info.name}"
        _packages.setdefault(info.name, package)
        if importlib.util.find_spec(f"{package}.config") is not None:
            importlib.import_module(f"{package}.config")
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            importlib.import_module(entry.module)
        except ImportError as err:
            raise ValueError(f"policy family {entry.name!r} (entry point {ENTRY_POINT_GROUP} of package "
                             f"{entry.dist.name if entry.dist else '?'}) names module {entry.module!r}, which cannot "
                             f"be imported: {err}") from err
    _discovered = True


def import_family(module: str) -> None:
    """Import the module a saved policy recorded as its family's config module (a user's family registers then)."""
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ValueError(f"policy family module {module!r} cannot be imported ({err}); install the package that "
                         "defines this policy family or put it on PYTHONPATH") from err


def config_classes() -> dict[str, type]:
    discover()
    return dict(_configs)


def config_class(name: str) -> type:
    classes = config_classes()
    if name not in classes:
        raise ValueError(f"unknown policy type {name!r}; available: {sorted(classes)} (a family from another "
                         "package registers when its config module is imported)")
    return classes[name]


def _family_module(name: str, module: str, table: dict[str, Any], what: str) -> Any:
    if name not in table:
        discover()
        package = _packages.get(name)
        if package is None:
            raise ValueError(f"unknown policy family {name!r}; known: {sorted(_packages)}")
        path = f"{package}.{module}"
        if importlib.util.find_spec(path) is None:
            raise ValueError(f"policy family {name!r} has no {what}: no module {path}")
        importlib.import_module(path)
        if name not in table:
            raise ValueError(f"{path} did not register a {what} for policy family {name!r} (its decorator names "
                             "another family, or is missing)")
    return table[name]


def policy_class(name: str) -> type:
    config_class(name)
    return _family_module(name, "model", _policies, "policy class")


def export_description(name: str) -> Callable[..., Any]:
    """The family's export function (imports <family package>.export on first use)."""
    return _family_module(name, "export", _exports, "export description")
