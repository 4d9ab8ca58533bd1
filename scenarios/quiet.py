"""Warnings other libraries print while a benchmark runs that say nothing about the user's run.

Avalanche 0.6 warns of its own deprecations on every experience (its `deprecated` decorator sets
the filter to "always" while it warns, so the usual `-W`/PYTHONWARNINGS filters do not hold it
back), and qpsolvers warns on import that it found no solver (Avalanche imports it for GEM,
which no strategy here uses). `other_libraries_quiet` hides those (every DeprecationWarning, and
qpsolvers' message) at the point where they are shown; every other warning, the run's own
included, is shown as usual. The command
line wraps its whole run in it, and each unit is wrapped again where it runs, so spawned worker
processes are quiet too.
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager

QUIET_MESSAGES = ("no QP solver found",)


def _quiet(category, message) -> bool:
    return issubclass(category, DeprecationWarning) or str(message).startswith(QUIET_MESSAGES)


@contextmanager
def other_libraries_quiet():
    """For the duration: deprecation warnings and `QUIET_MESSAGES` are not shown, in this process
    and, through PYTHONWARNINGS, at the start-up of the worker processes it spawns (qpsolvers
    warns while they import Avalanche, before their first unit)."""
    before = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join([*filter(None, [before]), "ignore::DeprecationWarning",
                                             *(f"ignore:{text}" for text in QUIET_MESSAGES)])
    with warnings.catch_warnings():
        show = warnings.showwarning

        def shown(message, category, *args, **kwargs):
            if _quiet(category, message):
                return None
            return show(message, category, *args, **kwargs)

        warnings.showwarning = shown
        for text in QUIET_MESSAGES:
            warnings.filterwarnings("ignore", message=text)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("PYTHONWARNINGS", None)
            else:
                os.environ["PYTHONWARNINGS"] = before
