"""`dcapps methods`: every registered method with its settings and defaults, from the registry
and the settings' own declarations (the same that make the flags and the YAML keys). A setting
that `condense`/`select` require (`--ipc`) is shown as required, as those commands say; its
default (`settings` in `--json`) is the Python API's."""
from __future__ import annotations

import argparse

from .common import add_output_arguments, emit_json

HELP = {"methods": "list the condensation and selection methods with their settings and defaults"}


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    add_output_arguments(p)


def run(args: argparse.Namespace) -> int:
    from condense_core.registration import KINDS
    from condense_core.registry import methods
    from condense_core.settings import flag_name, settings_of

    from .sets import REQUIRED

    listing = {}
    for kind in KINDS:
        for name, cls in methods(kind).items():
            doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
            settings = settings_of(cls)
            print(f"{kind} {name}: {doc}")
            for s in settings.values():  # a flag condense/select require has no default there
                default = "required" if s.name in REQUIRED else str(s.default)
                print(f"  {flag_name(s.name):<20} {default:<10} {s.describe()}; {s.rule.help}")
            for preset in sorted(cls.presets):
                print(f"  preset {preset!r}: {cls.presets[preset]}")
            listing[f"{kind} {name}"] = {"settings": {s.name: s.default for s in settings.values()},
                                         "required": list(REQUIRED), "presets": cls.presets}
    if args.json:
        emit_json(listing)
    return 0
