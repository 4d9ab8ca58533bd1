"""Where a method registers itself by kind and name (`@register("condense", "dm")`), at its
definition. Lookups go through `registry`, which finds the methods; this module only holds
the table, so a method module imports it without importing the registry's discovery."""
from __future__ import annotations

KINDS = ("condense", "select")
TABLE: dict[tuple[str, str], type] = {}


def register(kind: str, name: str):
    """Class decorator: make the method available as `kind` `name` (and set `cls.kind`/`cls.name`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def add(cls: type) -> type:
        if TABLE.get((kind, name), cls) is not cls:
            raise ValueError(f"{kind} method {name!r} is registered twice")
        cls.kind, cls.name = kind, name
        TABLE[(kind, name)] = cls
        return cls
    return add
