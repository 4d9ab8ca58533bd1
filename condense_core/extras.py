"""The optional parts of dcapps and what each needs installed (`pip install 'dcapps[EXTRA]'`).

The core (`condense_core`; `dcapps condense`, `select`, `evaluate`) needs only torch, torchvision
and the scientific stack. Continual learning needs Avalanche (the `cl` extra), proxy architecture
search needs NNI (the `nas` extra, with the pins NNI 3.0 forces, which stay out of the core).
A part whose extra is missing stops with one line that names it: `MissingExtra` is an
`InputError` (the command line exits 2) and an `ImportError` (what a library user expects).
Torch-free, so the command line can check before importing anything heavy.
"""
from __future__ import annotations

import importlib

from .errors import InputError

EXTRAS = {"cl": ("avalanche", "Avalanche"), "nas": ("nni", "NNI")}  # extra -> (module it brings, its name)


class MissingExtra(InputError, ImportError):
    """A part of dcapps was used without the optional dependency it needs."""


def require(extra: str, what: str) -> None:
    """Import the module of `extra`, or raise `MissingExtra` naming `what` needs it and how to
    install it: `dcapps cl run needs Avalanche: pip install 'dcapps[cl]'`."""
    module, name = EXTRAS[extra]
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra(f"{what} needs {name} ({e}): pip install 'dcapps[{extra}]'") from None


def installed_version() -> str:
    """The installed dcapps version (`unknown` when run from a source tree that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dcapps")
    except PackageNotFoundError:
        return "unknown"
