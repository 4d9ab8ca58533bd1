"""YAML as a person means it: the loader of the scripted benchmarks' config files.

PyYAML's safe loader accepts things a person rarely means and never sees: a key given twice
(`train: {epochs: 1, epochs: 5}`, a second `data:`), where the last one wins silently; anchors
and aliases (`&a`, `*a`, merge keys `<<`), whose expansion can grow a few lines into gigabytes
(the "billion laughs") before any check can look at the value. `load_yaml` refuses both, naming
the file and the line, before anything is built from them. It also reads numbers as YAML 1.2 does:
`1e-2` and `5e-4` (how learning rates are written) are floats, where PyYAML's YAML 1.1 rules
leave them as text that every check would then refuse.
"""
from __future__ import annotations

import re

import yaml

from condense_core.errors import InputError, shown

# YAML 1.2 floats that YAML 1.1 reads as text: an exponent without a dot or without a sign
# (`1e-2`, `5E4`), or a signed fraction without an integer part (`-.5`)
_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?$"
                       r"|^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$")


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors, aliases, merge keys or repeated keys."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            what = "an alias" if isinstance(event, yaml.AliasEvent) else "an anchor"
            raise yaml.MarkedYAMLError(problem=f"{what} ({shown(anchor)}): anchors and aliases are not "
                                               "accepted, write the value out", problem_mark=event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise yaml.MarkedYAMLError(problem="a merge key (<<) is not accepted, write the keys out",
                                           problem_mark=key_node.start_mark)
            key = self.construct_object(key_node, deep=True)
            try:
                again = key in seen
            except TypeError:
                continue  # an unhashable key: the safe loader's own error follows
            if again:
                raise yaml.MarkedYAMLError(problem=f"the key {shown(key)} is given twice (one would "
                                                   "silently replace the other)", problem_mark=key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


for _first in "-+.0123456789":
    StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list(_first))


def load_yaml(path: str) -> object:
    """The YAML document in the file `path`, loaded by `StrictLoader`; anything else (not UTF-8,
    not YAML, a repeated key, an anchor or alias) is an `InputError` naming the file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=StrictLoader)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
    except yaml.YAMLError as e:
        mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InputError(f"{path}: not valid YAML{where}" + (f": {problem}" if problem else "")) from None
