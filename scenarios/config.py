"""The scripted benchmark's YAML file, read into one typed `CLConfig`.

A config names a data spec, how it is split into class-incremental experiences, the seeds, the
one model/optimiser/epochs/memory every strategy shares, and the strategies to compare. Every
key is declared once, as a setting of the dataclass that holds it (`train:` is `CLTrainSettings`,
`memory:` is `dcapps.replay.MemorySettings`, `methods.<method>:` is that method's own class,
`model:` the network's options class in `condense_core.networks`), and checked at load, before
anything runs: an unknown key or a bad value is an `InputError` that names the key
(`train.epochs must be an integer >= 1, got 0`); a renamed key is refused with its new name.
"""
from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

from condense_core.errors import InputError, shown
from condense_core.settings import DEVICE, SEED_MAX, applicable, check, setting, settings_of
from condense_core.training import SGDSettings
from dcapps.glossary import RENAMED_KEYS

from .strategies import STRATEGIES, STRATEGY_METHODS

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
NAME_LONGEST = 100  # a title that fits a plot's line and a folder name that leaves room under NAME_MAX


@dataclass
class CLTrainSettings(SGDSettings):
    """How every strategy trains its model on an experience (`train:`)."""

    epochs: int = setting(10, "epochs per experience", low=1)
    memory_epochs: Optional[int] = setting(None, "epochs of a model trained on the memory only (gdumb, and "
                                                 "memory.replay_mode gdumb); default: epochs", low=1)
    batch_size: int = setting(64, "mini-batch size", low=1)


@dataclass
class MethodsSettings:
    """The settings of the methods that build the memories (`methods:`): `methods.<key>` applies
    to every condenser that has that setting, `methods.<method>.<key>` to that method only (the
    later wins). Anything not given comes from the method's memory preset, then its defaults."""

    shared: dict = field(default_factory=dict)
    each: dict = field(default_factory=dict)  # method name -> its own settings

    def of(self, kind: str, name: str) -> dict:
        """The settings given for method `kind` `name` (its `method_settings`)."""
        from condense_core.registry import method_class

        shared = applicable(method_class(kind, name), self.shared) if kind == "condense" else {}
        return {**shared, **self.each.get(name, {})}


@dataclass
class CLConfig:
    """One scripted class-incremental benchmark (the YAML file, checked and with defaults)."""

    data: str = setting("", "data spec: digits, mnist, cifar10, ..., PATH.npz or DIR/")
    name: Optional[str] = setting(None, "report title and output folder runs/cl/<name> (default: the "
                                        "file's name)", longest=NAME_LONGEST)
    root: Optional[str] = setting(None, "folder of torchvision data sets")
    download: bool = setting(False, "allow downloading a torchvision set")
    experiences: int = setting(5, "class-incremental experiences", low=1)
    first_experience_classes: Optional[int] = setting(None, "classes of the first experience (e.g. half)",
                                                      low=1)
    device: str = setting("auto", "auto, cpu, cuda or cuda:N", pattern=DEVICE)
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    model: dict = field(default_factory=lambda: {"name": "ConvNet", "width": 64, "depth": 3})
    train: CLTrainSettings = field(default_factory=CLTrainSettings)
    memory: Any = None  # dcapps.replay.MemorySettings (imported with Avalanche, so filled at load)
    methods: MethodsSettings = field(default_factory=MethodsSettings)
    strategies: list = field(default_factory=lambda: ["naive", "replay", "herding", "gdumb", "dmreplay",
                                                      "lcmatreplay", "joint"])

    def as_dict(self) -> dict:
        """Plain data (for `config.json` and `results.json`)."""
        out = asdict(self)
        out["methods"] = {**self.methods.shared, **self.methods.each}
        return out

    def settings(self) -> dict:
        """What determines a unit's result: everything but the name, the seeds, the strategies
        and the device."""
        return {key: value for key, value in self.as_dict().items()
                if key not in ("name", "seeds", "strategies", "device")}

    def method_settings(self, strategy: str) -> dict:
        """The settings of the method that builds `strategy`'s memory (none without one): the
        shared model, no progress of its own (a run shows its units), then what `methods:` gives it."""
        if strategy not in STRATEGY_METHODS:
            return {}
        kind, name = STRATEGY_METHODS[strategy]
        return {"model": self.model["name"], "model_options": model_options(self.model), "progress": "off",
                **self.methods.of(kind, name)}


def model_options(model: dict) -> dict:
    """The options of the network a `model:` section names (everything but its `name`)."""
    return {key: value for key, value in model.items() if key != "name"}


def config_path(name_or_path: str) -> str:
    """A YAML path as given, or the built-in config of that name (`digits` -> configs/digits.yaml)."""
    if os.path.isfile(name_or_path):
        return name_or_path
    builtin = os.path.join(CONFIG_DIR, os.path.basename(name_or_path).removesuffix(".yaml") + ".yaml")
    if os.sep not in name_or_path and os.path.isfile(builtin):
        return builtin
    names = ", ".join(sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml")))
    raise InputError(f"config not found: {name_or_path} (built-in configs: {names})")


def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> CLConfig:
    """Read and check a config file (or built-in name), with `overrides` (`--set KEY=VALUE`) applied."""
    from .strict_yaml import load_yaml

    path = config_path(name_or_path)
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise InputError(f"{path}: the config must be a mapping of keys to values")
    cfg = validate(overridden(raw, overrides))
    if cfg.name is None:
        cfg.name = os.path.basename(path).removesuffix(".yaml")
    return cfg


def overridden(raw: dict, overrides: Sequence[str]) -> dict:
    """`raw` with each `KEY=VALUE` of `overrides` set: a dotted key reaches into the sections
    (`train.lr=0.01`, `methods.dm.iterations=50`, `memory={ipc: 5}`), VALUE is read as YAML (by
    the config file's own strict loader), and the result is checked as if the file had said it."""
    import yaml

    from .strict_yaml import StrictLoader

    raw = copy.deepcopy(raw)
    for text in overrides:
        key, sep, value = text.partition("=")
        path = key.strip().split(".")
        if not sep or not all(path):
            raise InputError(f"--set must be KEY=VALUE (e.g. train.lr=0.01), got {text!r}")
        section = raw
        for i, part in enumerate(path[:-1]):
            section = section.setdefault(part, {})
            if not isinstance(section, dict):
                raise InputError(f"--set {key}: {'.'.join(path[:i + 1])} is not a mapping of keys")
        try:
            section[path[-1]] = yaml.load(value, Loader=StrictLoader)
        except yaml.YAMLError:
            raise InputError(f"--set {key}: {value!r} is not a YAML value") from None
    return raw


def _key(prefix: str):
    return lambda name: prefix + name


def _mapping(raw: dict, key: str) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise InputError(f"{key} must be a mapping, got {value!r}")
    return value


def validate(raw: dict) -> CLConfig:
    """`raw` (the YAML's mapping) checked key by key into a `CLConfig` (InputError names the key)."""
    from dcapps.replay import MemorySettings

    nested = ("seeds", "model", "train", "memory", "methods", "strategies")
    allowed = [*settings_of(CLConfig), *nested]
    for key in raw:
        if key in RENAMED_KEYS:
            raise InputError(f"config key {key} is renamed {RENAMED_KEYS[key]}")
        if key not in allowed:
            raise InputError(f"unknown config key {key!s} (allowed: {', '.join(allowed)})")
    top = check(CLConfig, {key: value for key, value in raw.items() if key not in nested})
    if not top.get("data"):
        raise InputError("data must be a data spec (digits, cifar10, PATH.npz, DIR/), "
                         f"got {raw.get('data')!r}")
    name = top.get("name")
    if name is not None and (not name.strip() or "/" in name or name in (".", "..")):
        raise InputError(f"name must be a plain word (used as a folder name), got {name!r}")
    cfg = CLConfig(**top)
    cfg.seeds = parse_seeds(raw.get("seeds", cfg.seeds), "seeds")
    cfg.model = _check_model(raw.get("model", cfg.model))
    cfg.train = CLTrainSettings(**check(CLTrainSettings, _mapping(raw, "train"), _key("train.")))
    memory = check(MemorySettings, _mapping(raw, "memory"), _key("memory."))
    if "mem_size" in memory and "ipc" not in memory:
        memory["ipc"] = None  # a total size replaces the default images per class
    cfg.memory = MemorySettings(**memory)
    if (cfg.memory.ipc is None) == (cfg.memory.mem_size is None):
        raise InputError("memory needs exactly one of memory.ipc (images per class) "
                         "and memory.mem_size (images in all)")
    cfg.methods = _check_methods(_mapping(raw, "methods"))
    cfg.strategies = _check_strategies(raw.get("strategies", cfg.strategies))
    return cfg


def parse_seeds(value, name: str = "--seeds") -> list[int]:
    """A list of distinct integer seeds from a YAML list or a `0,1,2` string."""
    if isinstance(value, str):
        try:
            value = [int(s) for s in value.split(",") if s.strip()]
        except ValueError:
            raise InputError(f"{name} must be integers separated by commas, got {shown(value)}") from None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (not isinstance(value, list) or not value
            or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= SEED_MAX for s in value)):
        raise InputError(f"{name} must be a non-empty list of integers from 0 to {SEED_MAX}, got {shown(value)}")
    if len(set(value)) != len(value):
        raise InputError(f"{name} lists a seed twice: {value}")
    return list(value)


def _check_model(model) -> dict:
    """`model:`: a network's `name` and its options (`condense_core.networks`' options classes)."""
    from condense_core.networks import check_options, model_name

    if not isinstance(model, dict):
        raise InputError(f"model must be a mapping such as {{name: ConvNet, width: 64}}, got {model!r}")
    model = {"name": "ConvNet", **model}
    try:
        model_name(model["name"])
    except InputError as e:
        raise InputError(f"model.name: {e}") from None
    return {"name": model["name"], **check_options(model["name"], model_options(model), _key("model."))}


def _own_settings(kind: str, name: str) -> dict:
    """The settings of a method that builds a memory that a config may give (not those it sets for all:
    images per class, seed, model, device)."""
    from condense_core.registry import method_class

    return {k: s for k, s in settings_of(method_class(kind, name)).items() if not s.rule.common}


def _check_methods(methods: dict) -> MethodsSettings:
    """`methods.<key>` (a setting of some condenser that builds a memory) and
    `methods.<method>.<key>`."""
    shared_allowed: dict = {}
    for kind, name in STRATEGY_METHODS.values():
        if kind == "condense":
            shared_allowed.update(_own_settings(kind, name))
    kinds = {name: kind for kind, name in STRATEGY_METHODS.values()}
    out = MethodsSettings()
    for key, value in methods.items():
        if key in kinds:
            if not isinstance(value, dict):
                raise InputError(f"methods.{key} must be a mapping of {key}'s settings, got {value!r}")
            own = _own_settings(kinds[key], key)
            for setting, given in value.items():
                if setting not in own:
                    raise InputError(f"unknown config key methods.{key}.{setting} (allowed: {', '.join(own)})")
                out.each.setdefault(key, {})[setting] = own[setting].check(given, f"methods.{key}.{setting}")
        elif key in shared_allowed:
            out.shared[key] = shared_allowed[key].check(value, f"methods.{key}")
        else:
            raise InputError(f"unknown config key methods.{key} (allowed: "
                             f"{', '.join([*shared_allowed, *kinds])})")
    return out


def _check_strategies(strategies) -> list[str]:
    if not isinstance(strategies, list) or not strategies:
        raise InputError(f"strategies must be a non-empty list, got {strategies!r}")
    for s in strategies:
        if s not in STRATEGIES:
            raise InputError(f"unknown strategy {s!r} in strategies: choose from {', '.join(STRATEGIES)}")
    if len(set(strategies)) != len(strategies):
        raise InputError("strategies lists a strategy twice")
    return list(strategies)
