"""Flags the glossary renamed (`dcapps.glossary.RENAMED_FLAGS`): refused with their new name.

argparse would say only "unrecognized arguments"; a user of the old spelling is told the new one.
"""
from __future__ import annotations


def renamed_flag(argv: list[str]) -> str | None:
    """The refusal (one line) of the first renamed flag in `argv` (`--old` or `--old=x`), or None."""
    from dcapps.glossary import RENAMED_FLAGS

    for arg in argv:
        old = arg.split("=", 1)[0]
        if old in RENAMED_FLAGS:
            return f"{old} is renamed {RENAMED_FLAGS[old]}"
    return None
