"""The public API follows the glossary (`dcapps/glossary.py`, documented in docs/glossary.md).

The walk covers the constructors of `DMReplay`, `ReducedSetReplayPlugin` and `ReducedSetBuffer`
(and a buffer's attributes), the names the packages export, every flag of every command (built
from the parser) and every key of a CL config (derived from the config's dataclasses). A name an
entry replaced may not stand beside the word that replaced it; a replaced Python name that still
works must warn, naming the new one; a replaced flag or key must be refused, naming the new one.
"""
import dataclasses
import importlib
import inspect
import re
import warnings
from pathlib import Path

import pytest
import torch

from dcapps.glossary import RENAMED_FLAGS, RENAMED_KEYS, TERMS, markdown

ROOT = Path(__file__).resolve().parent.parent
REPLACED_ARGUMENT_VALUES = {"condenser": "dm", "condenser_options": {}, "options": {}}


def constructors() -> dict:
    """Class name -> a function making one with extra keyword arguments (cheap: nothing runs)."""
    from dcapps.replay import DMReplay, ReducedSetBuffer, ReducedSetReplayPlugin

    def dmreplay(**kw):
        model = torch.nn.Linear(64, 10)
        return DMReplay(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), **kw)

    return {"DMReplay": dmreplay, "ReducedSetReplayPlugin": ReducedSetReplayPlugin,
            "ReducedSetBuffer": ReducedSetBuffer}


def python_names() -> set[str]:
    """Where each public Python name stands: `Class(argument=)` for the replay constructors'
    arguments, `Class.attribute` for a buffer's attributes, `package.Name` for the exports."""
    import condense_core
    import dcapps
    from dcapps.replay import DMReplay, ReducedSetBuffer, ReducedSetReplayPlugin

    names = set()
    for cls in (DMReplay, ReducedSetReplayPlugin, ReducedSetBuffer):
        names |= {f"{cls.__name__}({p.name}=)" for p in inspect.signature(cls.__init__).parameters.values()
                  if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
    names |= {f"ReducedSetBuffer.{a}" for a in vars(ReducedSetBuffer())}
    return names | {f"condense_core.{n}" for n in condense_core.__all__} | {f"dcapps.{n}" for n in dcapps.__all__}


def actions() -> list:
    """Every argparse action of every command and sub-command, from the parser itself."""
    import argparse

    from dcapps.cli import COMMANDS, build_parser

    found = []

    def walk(parser):
        for action in parser._actions:
            found.append(action)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    for command in COMMANDS:
        walk(build_parser([command]))
    return found


def flags() -> set[str]:
    """Every option string of every command and action."""
    return {s for action in actions() for s in action.option_strings if s.startswith("--")}


def help_texts() -> list[str]:
    """The help text of every flag and positional of every command."""
    return [action.help or "" for action in actions()]


def yaml_keys() -> set[str]:
    """Every key a CL config accepts, dotted (`train.epochs`), from the config's dataclasses."""
    from condense_core.networks import MODELS
    from condense_core.registry import method_class
    from condense_core.settings import settings_of
    from dcapps.replay import MemorySettings
    from scenarios.config import CLConfig, CLTrainSettings
    from scenarios.strategies import STRATEGY_METHODS

    keys = {f.name for f in dataclasses.fields(CLConfig)}
    keys |= {f"train.{k}" for k in settings_of(CLTrainSettings)} | {f"memory.{k}" for k in settings_of(MemorySettings)}
    keys |= {"model.name"} | {f"model.{k}" for _, options in MODELS.values() for k in settings_of(options)}
    for kind, name in STRATEGY_METHODS.values():
        own = [k for k, s in settings_of(method_class(kind, name)).items() if not s.rule.common]
        keys |= {f"methods.{name}"} | {f"methods.{name}.{k}" for k in own}
        keys |= {f"methods.{k}" for k in own} if kind == "condense" else set()
    return keys


def bare(name: str) -> str:
    """`DMReplay(condenser=)` -> `condenser`, `condense_core.SyntheticSet` -> `SyntheticSet`."""
    return name.split("(")[1].rstrip("=)") if "(" in name else name.rsplit(".", 1)[-1]


def test_the_glossary_page_shows_the_entries():
    assert markdown() in (ROOT / "docs" / "glossary.md").read_text(encoding="utf-8")


def replaced(python: set[str], cli: set[str], keys: set[str]) -> list[str]:
    """The names of `python` (where they stand, see `python_names`), `cli` and `keys` (dotted)
    that a glossary entry replaced, except its deprecated Python names where they still work."""
    top, key_words = {k for k in keys if "." not in k}, {k.rsplit(".", 1)[-1] for k in keys}
    found = []
    for t in TERMS:
        old = set(t.retired) | set(map(bare, t.deprecated))
        found += [f"{t.word}: {n}" for n in python if bare(n) in old and n not in t.deprecated]
        found += [f"{t.word}: {k}" for k in key_words if k in t.retired]
        found += [f"{t.word}: {f}" for f in t.renamed_flags if f in cli]
        found += [f"{t.word}: {k}" for k in t.renamed_keys if k in top]
    return sorted(set(found))


def test_no_replaced_name_stands_beside_its_word():
    cli, keys = flags(), yaml_keys()
    for t in TERMS:  # the glossary names what is there
        assert set(t.flags) <= cli and set(t.keys) <= keys, t.word
    found = replaced(python_names(), cli, keys)
    assert not found, "replaced names still in the public API:\n  " + "\n  ".join(found)


def test_no_help_text_shows_a_refused_flag_or_key():
    """An example in a help text (`--set methods.dm.iterations=50`) must be one the tool accepts."""
    texts = help_texts()
    found = [f for f in RENAMED_FLAGS if any(f in t for t in texts)]
    found += [f"{k}." for k in RENAMED_KEYS if any(re.search(rf"(?<![\w.-]){k}\.\w", t) for t in texts)]
    assert not found, found


def test_the_walk_finds_a_replaced_name_put_back(monkeypatch):
    import dcapps.replay as replay
    from dcapps.cli import sets

    init = replay.ReducedSetBuffer.__init__

    def with_old_names(self, ipc=10, mem_size=None, method="dm", kind="condense", method_settings=None, seed=0,
                       device=None, show_progress=False):
        init(self, ipc, mem_size, method, kind, method_settings, seed, device)
        self.options = self.method_settings

    monkeypatch.setattr(replay.ReducedSetBuffer, "__init__", with_old_names)
    add = sets.add_arguments
    monkeypatch.setattr(sets, "add_arguments", lambda kind, p: (add(kind, p), p.add_argument("--method-options")))
    assert replaced(python_names(), flags(), yaml_keys() | {"condense"}) == [
        "method settings: --method-options", "method settings: ReducedSetBuffer.options",
        "method settings: condense", "progress: ReducedSetBuffer(show_progress=)"]


def deprecated_use(name: str):
    """Use the deprecated Python name `name` (an argument, an attribute, a method) once."""
    if "(" in name:  # Class(argument=)
        cls, argument = name.split("(")[0], bare(name)
        return constructors()[cls](**{argument: REPLACED_ARGUMENT_VALUES[argument]})
    owner, attribute = name.rsplit(".", 1)
    if owner == "Method":  # a method's method
        from condense_core import make_method

        return getattr(make_method("select", "random", ipc=1), attribute)()
    module = importlib.import_module(owner)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = getattr(module, attribute)
    if caught:  # the attribute warns: warn again for the caller
        warnings.warn(caught[0].message, caught[0].category)
    else:  # the module itself is the deprecated name: importing it warns
        importlib.reload(module)
    return value


@pytest.mark.parametrize("name", [n for t in TERMS for n in t.deprecated])
def test_a_replaced_python_name_works_with_a_warning_naming_the_new_one(name):
    with pytest.warns(DeprecationWarning, match="is renamed"):
        assert deprecated_use(name) is not None


@pytest.mark.parametrize("old", sorted(RENAMED_FLAGS))
def test_a_replaced_flag_is_refused_naming_the_new_one(old, capsys):
    from dcapps.cli import main

    assert main(["condense", "--data", "digits", f"{old}={{}}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"dcapps: error: {old} is renamed {RENAMED_FLAGS[old]}"


@pytest.mark.parametrize("old", sorted(RENAMED_KEYS))
def test_a_replaced_yaml_key_is_refused_naming_the_new_one(old):
    from condense_core import InputError
    from scenarios.config import validate

    with pytest.raises(InputError, match=f"^config key {old} is renamed {RENAMED_KEYS[old]}$"):
        validate({"data": "digits", old: {}})
