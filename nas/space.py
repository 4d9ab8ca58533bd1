"""Search spaces over the DM paper's ConvNet family, in NNI's JSON format.

`full` is the paper's 720 ConvNets (depth x width x activation x normalisation x pooling);
`small` is a 72-architecture corner of it for quick runs. A user's own JSON file may narrow
either: `{"depth": [1, 2], "norm": ["batchnorm"]}` or NNI's `{"depth": {"_type": "choice",
"_value": [1, 2]}}`; options it leaves out are fixed to the ConvNet defaults.
"""
from __future__ import annotations

import itertools
import json
import os

from condense_core.errors import InputError
from condense_core.networks import ConvNetOptions
from condense_core.settings import settings_of

DECLARED = settings_of(ConvNetOptions)  # the ConvNet's options: names, defaults and choices
OPTIONS = tuple(DECLARED)
FULL = {"depth": [1, 2, 3, 4], "width": [32, 64, 128, 256],
        **{name: list(s.rule.choices) for name, s in DECLARED.items() if s.rule.choices}}
SMALL = {"depth": [1, 2, 3], "width": [32, 64], "act": ["sigmoid", "relu"],
         "norm": ["none", "batchnorm", "instancenorm"], "pool": ["max", "avg"]}
DEFAULT = {name: s.default for name, s in DECLARED.items()}
SPACES = {"full": FULL, "small": SMALL}


def load_space(name: str) -> dict[str, list]:
    """`full`, `small` or a JSON file -> {option: [values]}; bad or empty spaces are input errors."""
    if name in SPACES:
        return {k: list(v) for k, v in SPACES[name].items()}
    if not os.path.isfile(name):
        raise InputError(f"unknown search space {name!r}: use full, small or a JSON file")
    try:
        with open(name) as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{name}: not a readable JSON search space ({type(e).__name__})") from None
    return check_space(raw, name)


def check_space(raw, source: str = "search space") -> dict[str, list]:
    """Validate {option: [values] or {"_type": "choice", "_value": [...]}} against the full space."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: a search space must be a JSON object of options, got {type(raw).__name__}")
    if not raw:
        raise InputError(f"{source}: the search space is empty (give at least one of {', '.join(OPTIONS)})")
    space = dict((k, [v]) for k, v in DEFAULT.items())
    for key, spec in raw.items():
        if key not in FULL:
            raise InputError(f"{source}: unknown option {key!r} (choose from {', '.join(OPTIONS)})")
        values = spec.get("_value") if isinstance(spec, dict) else spec
        if isinstance(spec, dict) and spec.get("_type", "choice") != "choice":
            raise InputError(f"{source}: option {key!r} must be a choice")
        if not isinstance(values, list) or not values:
            raise InputError(f"{source}: the search space is empty (option {key!r} has no values)")
        bad = [v for v in values if not _known(key, v)]
        if bad:
            raise InputError(f"{source}: option {key!r} has unknown values {bad} "
                             f"(choose from {FULL[key]})")
        space[key] = list(dict.fromkeys(values))
    return space


def _known(key: str, value) -> bool:
    """`value` is one of option `key`'s values, of the same type (`2.0` and `True` equal 2 and 1
    in Python, but a ConvNet cannot be 2.0 layers deep: a trial would refuse them)."""
    return any(type(value) is type(v) and value == v for v in FULL[key])


def to_nni(space: dict[str, list]) -> dict:
    """NNI's search_space.json form: every option a `choice`."""
    return {k: {"_type": "choice", "_value": list(v)} for k, v in space.items()}


def architectures(space: dict[str, list]) -> list[dict]:
    """Every architecture of the space, in a fixed order."""
    keys = list(space)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(space[k] for k in keys))]


def arch_name(arch: dict) -> str:
    """A short stable name, e.g. `d3-w128-relu-instancenorm-avg`."""
    a = {**DEFAULT, **arch}
    return f"d{a['depth']}-w{a['width']}-{a['act']}-{a['norm']}-{a['pool']}"


def check_arch(params: dict) -> dict:
    """The trial's parameters as ConvNet options (defaults filled in, values checked)."""
    if not isinstance(params, dict):
        raise InputError("architecture parameters must be a JSON object")
    unknown = [k for k in params if k not in FULL]
    if unknown:
        raise InputError(f"unknown architecture options {unknown} (choose from {', '.join(OPTIONS)})")
    arch = {**DEFAULT, **params}
    bad = {k: v for k, v in arch.items() if not _known(k, v)}
    if bad:
        raise InputError(f"architecture values outside the search space: {bad}")
    return arch
