"""Renamed public names (docs/glossary.md): an old name keeps working for one release and warns.

Avalanche's convention: a `DeprecationWarning` that names the new spelling, raised where the
caller used the old one. Torch-free, so the command line and the settings can use it cheaply.
"""
from __future__ import annotations

import warnings


def renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that `old` is now called `new` (the old one goes in the next release)."""
    warnings.warn(f"{old} is renamed {new}; the old name will be removed in the next release",
                  DeprecationWarning, stacklevel=stacklevel)


def renamed_argument(kwargs: dict, old: str, new: str, value, where: str, default=None):
    """The value of argument `new`, taking it from the deprecated `old` in `kwargs` (with a
    warning) when given there; both given is an error naming them."""
    if old not in kwargs:
        return value
    renamed(f"{where}({old}=...)", f"{where}({new}=...)", stacklevel=4)
    if value != default:
        raise TypeError(f"{where}: give {new}, not both {new} and the deprecated {old}")
    return kwargs.pop(old)
