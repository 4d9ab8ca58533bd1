"""Name -> method class. A new method is one new file and one line here."""
from __future__ import annotations

from .dm import DM
from .errors import InputError
from .lcmat import LCMatC, LCMatS
from .method import Method
from .selectors import Herding, KCenter, RandomSelector

CONDENSERS: dict[str, type[Method]] = {"dm": DM, "lcmat": LCMatC}
SELECTORS: dict[str, type[Method]] = {"random": RandomSelector, "herding": Herding, "kcenter": KCenter,
                                      "lcmat": LCMatS}


def make_method(name: str, kind: str = "any", **config) -> Method:
    """Build a condenser (`kind="condense"`), a selector (`"select"`) or either (`"any"`,
    condensers first) from its name and settings; unknown names and settings are input errors."""
    table = {"condense": CONDENSERS, "select": SELECTORS, "any": {**SELECTORS, **CONDENSERS}}[kind]
    if name not in table:
        raise InputError(f"unknown method {name!r}: choose from {', '.join(sorted(table))}")
    try:
        return table[name](**config)
    except TypeError as e:
        raise InputError(f"bad setting for method {name!r}: {e}") from None
