"""Settings declared once, on the dataclass field that holds them.

`setting(default, help, low=..., above=..., choices=...)` makes a dataclass field whose metadata
carries its bounds, choices and one help line; its type is the field's annotation. Everything a
user can set is derived from that one declaration: the command-line flags (`dcapps condense`),
the YAML keys of a scripted benchmark, the `method_settings` of `DMReplay`, and their checks,
which are made by `check` before any work and name the setting in the caller's own words
(`--lr-img`, `methods.dm.lr_img`, `lr_img`: its `spell`). No list of setting names is kept anywhere else. Unless a setting
declares its own bound, an integer is at most `INT_MAX` and a text at most `TEXT_LONGEST`
characters: no value a check passes makes a library underneath overflow or a message flood.
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Any, Callable, NamedTuple

from .errors import InputError, shown

KEY = "dcapps.setting"


class Pattern(NamedTuple):
    """The form a text setting must have: a regular expression matched in full, and its words."""

    regex: str
    words: str


# Where a run computes: `auto`, `cpu`, `cuda` or `cuda:N` (a device name is checked by this one
# definition wherever it is typed: a flag, a YAML key, a method's or a function's argument).
DEVICE = Pattern(r"auto|cpu|cuda(:[0-9]+)?", "auto, cpu, cuda or cuda:N")
# The largest seed: what numpy's seeding takes (Avalanche and NNI's tuners seed numpy with it).
SEED_MAX = 2 ** 32 - 1
# The longest text setting unless it declares its own `longest`: Linux's PATH_MAX, the longest
# path a data spec or folder can be (a text that size is a mistake, and would flood messages).
TEXT_LONGEST = 4096
# The largest integer setting unless it declares its own `high`: what a tensor's size or an index
# holds (int64); past it PyTorch fails with an overflow deep inside a run.
INT_MAX = 2 ** 63 - 1


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a setting accepts beyond its type, and what it is for."""

    help: str
    low: float | None = None  # value >= low
    above: float | None = None  # value > above
    high: float | None = None  # value <= high
    choices: tuple | None = None
    pattern: Pattern | None = None  # a text setting's form
    longest: int | None = None  # a text setting's most characters (None: TEXT_LONGEST)
    speed_only: bool = False  # changes how fast a result comes, never the result
    common: bool = False  # every method has it (the CLI and the YAML give it a place of its own)
    display_only: bool = False  # how a run is shown (progress): never in metadata, checkpoints or sweeps


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable | None = None,
            low: float | None = None, above: float | None = None, high: float | None = None,
            choices: tuple | None = None, pattern: Pattern | None = None, longest: int | None = None,
            speed_only: bool = False, common: bool = False, display_only: bool = False) -> Any:
    """A dataclass field declared as a user-facing setting (see the module docstring)."""
    rule = Rule(help, low, above, high, tuple(choices) if choices else None, pattern, longest, speed_only, common,
                display_only)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={KEY: rule})
    return dataclasses.field(default=default, metadata={KEY: rule})


class Setting(NamedTuple):
    """One declared setting of a class: name, Python type, default, optional (None allowed), rule."""

    name: str
    type: type
    default: Any
    optional: bool
    rule: Rule

    def describe(self) -> str:
        """What a valid value is, in words: `a number > 0`, `one of real, herding, noise`."""
        r = self.rule
        if r.choices:
            text = "one of " + ", ".join(map(str, r.choices))
        elif r.pattern:
            text = r.pattern.words
        else:
            text = {bool: "true or false", int: "an integer", float: "a finite number",
                    str: f"a text of at most {self.longest} characters", dict: "a mapping"}[self.type]
            if r.low is not None:
                text += f" >= {_num(r.low)}"
            if r.above is not None:
                text += f" > {_num(r.above)}"
            if r.high is not None:
                text += f", at most {_num(r.high)}"
        return text + (" (or none)" if self.optional else "")

    @property
    def longest(self) -> int:
        """The most characters of a text setting."""
        return self.rule.longest or TEXT_LONGEST

    def check(self, value: Any, where: str) -> Any:
        """`value` if it is valid for this setting (ints widened to float for a float setting);
        otherwise an `InputError` naming the setting as `where`."""
        if value is None and self.optional:
            return None
        bad = InputError(f"{where} must be {self.describe()}, got {shown(value)}")
        if self.type is bool:
            if not isinstance(value, bool):
                raise bad
            return value
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float) if self.type is float else int):
                raise bad
            if self.type is float:
                value = float(value)
                if not math.isfinite(value):
                    raise bad
            elif self.rule.high is None and value > INT_MAX:
                raise InputError(f"{where} must be at most {INT_MAX} (a 64-bit integer), got {shown(value)}")
            if (self.rule.low is not None and value < self.rule.low) or (
                    self.rule.above is not None and value <= self.rule.above) or (
                    self.rule.high is not None and value > self.rule.high):
                raise bad
            return value
        if not isinstance(value, self.type) or (self.rule.choices and value not in self.rule.choices):
            raise bad
        if isinstance(value, str) and len(value) > self.longest:
            raise InputError(f"{where} must be at most {self.longest} characters, got {len(value)} "
                             f"({shown(value)})")
        if self.rule.pattern:
            check_form(value, self.rule.pattern, where)
        return value


def check_form(value: Any, pattern: Pattern, where: str) -> str:
    """`value` if it is a text of `pattern`'s form; otherwise an `InputError` naming it `where`."""
    if not isinstance(value, str) or not re.fullmatch(pattern.regex, value):
        raise InputError(f"{where} must be {pattern.words}, got {shown(value)}")
    return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def settings_of(cls: type) -> dict[str, Setting]:
    """Every setting declared on dataclass `cls` (own and inherited), in field order."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        rule = f.metadata.get(KEY)
        if rule is None:
            continue
        kind, optional = hints[f.name], False
        args = typing.get_args(kind)
        if type(None) in args:
            optional = True
            kind = next(a for a in args if a is not type(None))
        kind = typing.get_origin(kind) or kind
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        out[f.name] = Setting(f.name, kind, default, optional, rule)
    return out


def applicable(cls: type, values: dict) -> dict:
    """The entries of `values` that are settings of `cls` (settings given for several methods at
    once, e.g. a YAML's shared `methods.<key>`, each method taking those it has)."""
    known = settings_of(cls)
    return {name: value for name, value in values.items() if name in known}


def python_name(name: str) -> str:
    """How a Python caller names a setting: as it is."""
    return name


def flag_name(name: str) -> str:
    """How the command line names a setting: `lr_img` -> `--lr-img`."""
    return "--" + name.replace("_", "-")


def check(cls: type, values: dict, spell: Callable[[str], str] = python_name, what: str = "") -> dict:
    """`values` checked against the settings of `cls` (unknown names refused); errors name each
    setting as `spell(name)`, e.g. `flag_name` on the command line."""
    known = settings_of(cls)
    out = {}
    for name, value in values.items():
        if name not in known:
            allowed = ", ".join(map(spell, known))
            raise InputError(f"unknown setting {spell(name)}{' of ' + what if what else ''} (allowed: {allowed})")
        out[name] = known[name].check(value, spell(name))
    return out


def check_object(obj: Any, spell: Callable[[str], str] = python_name) -> None:
    """Check every declared setting of a dataclass instance (e.g. in `__post_init__`)."""
    for name, s in settings_of(type(obj)).items():
        setattr(obj, name, s.check(getattr(obj, name), spell(name)))


class Checked:
    """Base of a dataclass of settings whose values are checked when it is made: a bad one is an
    input error there, before any data is touched or any file written."""

    def __post_init__(self):
        check_object(self)
