"""Methods by kind and name: `condense` (learn images) and `select` (pick real ones).

A method registers itself where it is defined (`registration.register("condense", "dm")`), in a
module of `condense_core.methods`; those modules are imported the first time the registry is
asked, so a new method is one new file there and nothing else changes. A (kind, name) pair
names exactly one class: `select lcmat` and `condense lcmat` are two entries, never a merge of
two tables.
"""
from __future__ import annotations

import importlib
import pkgutil

from .errors import InputError
from .registration import KINDS, TABLE
from .settings import check

_loaded = False


def _load() -> None:
    """Import every module of `condense_core.methods` (each registers its methods)."""
    global _loaded
    if not _loaded:
        package = importlib.import_module("condense_core.methods")
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")
        _loaded = True


def methods(kind: str) -> dict[str, type]:
    """Name -> class of every method of `kind`, sorted by name."""
    _load()
    return {name: cls for (k, name), cls in sorted(TABLE.items()) if k == kind}


def method_class(kind: str, name: str) -> type:
    """The class registered as `kind` `name`; an unknown one is an input error."""
    if kind not in KINDS:
        raise InputError(f"unknown kind of method {kind!r}: choose from {', '.join(KINDS)}")
    table = methods(kind)
    if name not in table:
        other = [k for k in KINDS if k != kind and name in methods(k)]
        hint = f" ({name} is a {other[0]} method)" if other else ""
        raise InputError(f"unknown {kind} method {name!r}{hint}: choose from {', '.join(table)}")
    return table[name]


def make_method(kind: str, name: str, preset: str | None = None, **settings):
    """A configured method: the class's defaults, then its `preset` (e.g. `"memory"`, the settings
    for short condensations such as replay memories), then `settings`; every value is checked."""
    cls = method_class(kind, name)
    return cls(**check(cls, {**cls.preset(preset), **settings}, what=f"{kind} method {name!r}"))
