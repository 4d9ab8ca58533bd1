"""The scripted benchmark's YAML file, read into one typed `CLConfig`.

A config names a data spec, how it is split into class-incremental experiences, the seeds, the
one model/optimiser/epochs/memory every strategy shares, and the strategies to compare. Every
key is declared once, as a setting of the dataclass that holds it (`train:` is `CLTrainSettings`,
`memory:` is `dcapps.replay.MemorySettings`, `condense.<method>:` is that memory method's own
class), and checked at load, before anything runs: an unknown key or a bad value is an
`InputError` that names the key (`train.epochs must be an integer >= 1, got 0`).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from condense_core.errors import InputError, shown
from condense_core.settings import DEVICE, SEED_MAX, applicable, check, setting, settings_of
from condense_core.training import SGDSettings

from .strategies import MEMORY_METHODS, STRATEGIES

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
MODEL_OPTIONS = ("name", "width", "depth", "act", "norm", "pool")
NAME_LONGEST = 100  # a title that fits a plot's line and a folder name that leaves room under NAME_MAX


@dataclass
class CLTrainSettings(SGDSettings):
    """How every strategy trains its model on an experience (`train:`)."""

    epochs: int = setting(10, "epochs per experience", low=1)
    memory_epochs: Optional[int] = setting(None, "epochs of a model trained on the memory only (gdumb, and "
                                                 "memory.replay_mode gdumb); default: epochs", low=1)
    batch_size: int = setting(64, "mini-batch size", low=1)


@dataclass
class CondenseSettings:
    """The memory methods' settings (`condense:`): `condense.<key>` applies to every memory
    condenser that has that setting, `condense.<method>.<key>` to that method only (the later
    wins). Anything not given comes from the method's memory preset, then its defaults."""

    shared: dict = field(default_factory=dict)
    methods: dict = field(default_factory=dict)

    def options(self, kind: str, name: str) -> dict:
        """The settings given for memory method `kind` `name`."""
        from condense_core.registry import method_class

        shared = applicable(method_class(kind, name), self.shared) if kind == "condense" else {}
        return {**shared, **self.methods.get(name, {})}


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
    condense: CondenseSettings = field(default_factory=CondenseSettings)
    strategies: list = field(default_factory=lambda: ["naive", "replay", "herding", "gdumb", "dmreplay",
                                                      "lcmatreplay", "joint"])

    def as_dict(self) -> dict:
        """Plain data (for `config.json` and `results.json`)."""
        out = asdict(self)
        out["condense"] = {**self.condense.shared, **self.condense.methods}
        return out

    def settings(self) -> dict:
        """What determines a unit's result: everything but the name, the seeds, the strategies
        and the device."""
        return {k: v for k, v in self.as_dict().items() if k not in ("name", "seeds", "strategies", "device")}


def config_path(name_or_path: str) -> str:
    """A YAML path as given, or the built-in config of that name (`digits` -> configs/digits.yaml)."""
    if os.path.isfile(name_or_path):
        return name_or_path
    builtin = os.path.join(CONFIG_DIR, os.path.basename(name_or_path).removesuffix(".yaml") + ".yaml")
    if os.sep not in name_or_path and os.path.isfile(builtin):
        return builtin
    names = ", ".join(sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml")))
    raise InputError(f"config not found: {name_or_path} (built-in configs: {names})")


def load_config(name_or_path: str) -> CLConfig:
    """Read and check a config file (or built-in name)."""
    from .strict_yaml import load_yaml

    path = config_path(name_or_path)
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise InputError(f"{path}: the config must be a mapping of keys to values")
    cfg = validate(raw)
    if cfg.name is None:
        cfg.name = os.path.basename(path).removesuffix(".yaml")
    return cfg


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

    nested = ("seeds", "model", "train", "memory", "condense", "strategies")
    allowed = [*settings_of(CLConfig), *nested]
    for key in raw:
        if key not in allowed:
            raise InputError(f"unknown config key {key!s} (allowed: {', '.join(allowed)})")
    top = check(CLConfig, {k: v for k, v in raw.items() if k not in nested})
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
    cfg.condense = _check_condense(_mapping(raw, "condense"))
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
    if not isinstance(model, dict):
        raise InputError(f"model must be a mapping such as {{name: ConvNet, width: 64}}, got {model!r}")
    for key in model:
        if key not in MODEL_OPTIONS:
            raise InputError(f"unknown config key model.{key} (allowed: {', '.join(MODEL_OPTIONS)})")
    model = {"name": "ConvNet", **model}
    if not isinstance(model["name"], str):
        raise InputError(f"model.name must be ConvNet, MLP or ResNet, got {model['name']!r}")
    for key in ("width", "depth"):
        v = model.get(key)
        if key in model and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise InputError(f"model.{key} must be an integer >= 1, got {v!r}")
    return model


def _own_settings(kind: str, name: str) -> dict:
    """The settings of a memory method that a config may give (not those it sets for all:
    images per class, seed, model, device)."""
    from condense_core.registry import method_class

    return {k: s for k, s in settings_of(method_class(kind, name)).items() if not s.rule.common}


def _check_condense(condense: dict) -> CondenseSettings:
    """`condense.<key>` (a setting of some memory condenser) and `condense.<method>.<key>`."""
    shared_allowed: dict = {}
    for kind, name in MEMORY_METHODS.values():
        if kind == "condense":
            shared_allowed.update(_own_settings(kind, name))
    methods = {name: kind for kind, name in MEMORY_METHODS.values()}
    out = CondenseSettings()
    for key, value in condense.items():
        if key in methods:
            if not isinstance(value, dict):
                raise InputError(f"condense.{key} must be a mapping of {key}'s settings, got {value!r}")
            own = _own_settings(methods[key], key)
            for k, v in value.items():
                if k not in own:
                    raise InputError(f"unknown config key condense.{key}.{k} (allowed: {', '.join(own)})")
                out.methods.setdefault(key, {})[k] = own[k].check(v, f"condense.{key}.{k}")
        elif key in shared_allowed:
            out.shared[key] = shared_allowed[key].check(value, f"condense.{key}")
        else:
            raise InputError(f"unknown config key condense.{key} (allowed: "
                             f"{', '.join([*shared_allowed, *methods])})")
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


def check_split(cfg: CLConfig, num_classes: int) -> None:
    """Check experiences/first_experience_classes and memory.mem_size against the data's number
    of classes (before any training, so a run never stops half-way on them)."""
    mem_size = cfg.memory.mem_size
    if mem_size is not None and mem_size < num_classes:
        raise InputError(f"memory.mem_size {mem_size} is smaller than the data's {num_classes} classes: "
                         "each class needs at least one image")
    first, n = cfg.first_experience_classes, cfg.experiences
    if first is None:
        if n > num_classes:
            raise InputError(f"experiences is {n} but the data has only {num_classes} classes")
        return
    if n < 2:
        raise InputError("first_experience_classes needs experiences >= 2")
    if first >= num_classes or num_classes - first < n - 1:
        raise InputError(f"first_experience_classes {first} leaves {num_classes - first} classes "
                         f"for the other {n - 1} experiences")
