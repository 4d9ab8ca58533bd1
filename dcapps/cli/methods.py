"""`dcapps methods`: every registered method with its settings and defaults, from the registry
and the settings' own declarations (the same that make the flags and the YAML keys)."""
from __future__ import annotations

import argparse

from .common import emit_json

HELP = {"methods": "list the condensation and selection methods with their settings and defaults"}


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def run(args: argparse.Namespace) -> int:
    from condense_core.registration import KINDS
    from condense_core.registry import methods
    from condense_core.settings import flag_name, settings_of

    listing = {}
    for kind in KINDS:
        for name, cls in methods(kind).items():
            doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
            settings = settings_of(cls)
            print(f"{kind} {name}: {doc}")
            for s in settings.values():
                print(f"  {flag_name(s.name):<20} {str(s.default):<10} {s.describe()}; {s.rule.help}")
            for preset in sorted(cls.presets):
                print(f"  preset {preset!r}: {cls.presets[preset]}")
            listing[f"{kind} {name}"] = {"settings": {s.name: s.default for s in settings.values()},
                                         "presets": cls.presets}
    if args.json:
        emit_json(listing)
    return 0
