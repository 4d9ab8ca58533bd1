"""The scripted benchmark's YAML file: its schema, defaults and validation.

A config names a data spec, how it is split into class-incremental experiences, the seeds, the
one model/optimiser/epochs/memory every strategy shares, and the strategies to compare. Every
key is checked before anything runs: an unknown key or a bad value is an `InputError` that
names the key (`train.epochs must be an integer >= 1, got 0`).
"""
from __future__ import annotations

import copy
import os
from typing import Any

from condense_core.dm import INITS, SHORT_RUN
from condense_core.errors import InputError

STRATEGIES = ("naive", "replay", "herding", "gdumb", "dmreplay", "lcmatreplay", "joint")
CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")

DEFAULTS: dict[str, Any] = {
    "name": None,
    "data": None,
    "root": None,
    "download": False,
    "experiences": 5,
    "first_experience_classes": None,
    "seeds": [0, 1, 2],
    "device": "auto",
    "model": {"name": "ConvNet", "width": 64, "depth": 3},
    "train": {"epochs": 10, "batch_size": 64, "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0005},
    "memory": {"ipc": 10, "mem_size": None, "replay_mode": "mix"},
    "condense": {"iterations": 300, "batch_real": 128, **SHORT_RUN, "dsa": True},
    "strategies": list(STRATEGIES),
}
MODEL_OPTIONS = ("name", "width", "depth", "act", "norm", "pool")
REPLAY_MODES = ("mix", "gdumb")


def config_path(name_or_path: str) -> str:
    """A YAML path as given, or the built-in config of that name (`digits` -> configs/digits.yaml)."""
    if os.path.isfile(name_or_path):
        return name_or_path
    builtin = os.path.join(CONFIG_DIR, os.path.basename(name_or_path).removesuffix(".yaml") + ".yaml")
    if os.sep not in name_or_path and os.path.isfile(builtin):
        return builtin
    names = ", ".join(sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml")))
    raise InputError(f"config not found: {name_or_path} (built-in configs: {names})")


def load_config(name_or_path: str) -> dict:
    """Read and validate a config file (or built-in name); returns the full config with defaults."""
    import yaml

    path = config_path(name_or_path)
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise InputError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: the config must be a mapping of keys to values")
    cfg = validate(raw)
    if cfg["name"] is None:
        cfg["name"] = os.path.basename(path).removesuffix(".yaml")
    return cfg


def validate(raw: dict) -> dict:
    """Merge `raw` over the defaults and check every key and value (InputError names the key)."""
    _no_unknown(raw, DEFAULTS, "")
    cfg = copy.deepcopy(DEFAULTS)
    for key, value in raw.items():
        if isinstance(DEFAULTS[key], dict) and key != "model":
            if not isinstance(value, dict):
                raise InputError(f"{key} must be a mapping, got {value!r}")
            _no_unknown(value, {**DEFAULTS[key], **(method_fields() if key == "condense" else {})}, key + ".")
            if key == "memory" and "mem_size" in value and "ipc" not in value:
                cfg[key]["ipc"] = None  # a total size replaces the default images per class
            cfg[key].update(value)
        else:
            cfg[key] = value
    _check_top(cfg)
    _check_model(cfg["model"])
    _check_train(cfg["train"])
    _check_memory(cfg["memory"])
    _check_condense(cfg["condense"])
    return cfg


def _no_unknown(given: dict, allowed: dict, prefix: str) -> None:
    for key in given:
        if key not in allowed:
            raise InputError(f"unknown config key {prefix}{key!s} (allowed: {', '.join(allowed)})")


def _int(cfg: dict, key: str, name: str, low: int = 1, none_ok: bool = False) -> None:
    v = cfg[key]
    if v is None and none_ok:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise InputError(f"{name} must be an integer >= {low}, got {v!r}")


def _float(cfg: dict, key: str, name: str, positive: bool = False) -> None:
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (positive and v == 0):
        raise InputError(f"{name} must be a number {'> 0' if positive else '>= 0'}, got {v!r}")
    cfg[key] = float(v)


def _check_top(cfg: dict) -> None:
    if not isinstance(cfg["data"], str) or not cfg["data"]:
        raise InputError("data must be a data spec (digits, cifar10, PATH.npz, DIR/), "
                         f"got {cfg['data']!r}")
    if cfg["name"] is not None and (not isinstance(cfg["name"], str) or not cfg["name"].strip()
                                    or "/" in cfg["name"]):
        raise InputError(f"name must be a plain word (used as a folder name), got {cfg['name']!r}")
    if cfg["root"] is not None and not isinstance(cfg["root"], str):
        raise InputError(f"root must be a folder path, got {cfg['root']!r}")
    if not isinstance(cfg["download"], bool):
        raise InputError(f"download must be true or false, got {cfg['download']!r}")
    if not isinstance(cfg["device"], str):
        raise InputError(f"device must be auto, cpu or cuda, got {cfg['device']!r}")
    _int(cfg, "experiences", "experiences")
    _int(cfg, "first_experience_classes", "first_experience_classes", none_ok=True)
    cfg["seeds"] = parse_seeds(cfg["seeds"], "seeds")
    strategies = cfg["strategies"]
    if not isinstance(strategies, list) or not strategies:
        raise InputError(f"strategies must be a non-empty list, got {strategies!r}")
    for s in strategies:
        if s not in STRATEGIES:
            raise InputError(f"unknown strategy {s!r} in strategies: choose from {', '.join(STRATEGIES)}")
    if len(set(strategies)) != len(strategies):
        raise InputError("strategies lists a strategy twice")


def parse_seeds(value, name: str = "--seeds") -> list[int]:
    """A list of distinct integer seeds from a YAML list or a `0,1,2` string."""
    if isinstance(value, str):
        try:
            value = [int(s) for s in value.split(",") if s.strip()]
        except ValueError:
            raise InputError(f"{name} must be integers separated by commas, got {value!r}") from None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (not isinstance(value, list) or not value
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in value)):
        raise InputError(f"{name} must be a non-empty list of integers >= 0, got {value!r}")
    if len(set(value)) != len(value):
        raise InputError(f"{name} lists a seed twice: {value}")
    return list(value)


def _check_model(model) -> None:
    if not isinstance(model, dict):
        raise InputError(f"model must be a mapping such as {{name: ConvNet, width: 64}}, got {model!r}")
    for key in model:
        if key not in MODEL_OPTIONS:
            raise InputError(f"unknown config key model.{key} (allowed: {', '.join(MODEL_OPTIONS)})")
    model.setdefault("name", "ConvNet")
    if not isinstance(model["name"], str):
        raise InputError(f"model.name must be ConvNet, MLP or ResNet, got {model['name']!r}")
    for key in ("width", "depth"):
        if key in model:
            _int(model, key, f"model.{key}")


def _check_train(train: dict) -> None:
    _int(train, "epochs", "train.epochs")
    _int(train, "batch_size", "train.batch_size")
    _float(train, "lr", "train.lr", positive=True)
    _float(train, "momentum", "train.momentum")
    _float(train, "weight_decay", "train.weight_decay")


def _check_memory(memory: dict) -> None:
    if (memory["ipc"] is None) == (memory["mem_size"] is None):
        raise InputError("memory needs exactly one of memory.ipc (images per class) "
                         "and memory.mem_size (images in all)")
    _int(memory, "ipc", "memory.ipc", none_ok=True)
    _int(memory, "mem_size", "memory.mem_size", none_ok=True)
    if memory["replay_mode"] not in REPLAY_MODES:
        raise InputError(f"memory.replay_mode must be mix or gdumb, got {memory['replay_mode']!r}")


def method_fields() -> dict[str, set]:
    """Each memory method's own settings (beyond those the config sets for all): `condense.lcmat:
    {pool_size: 2}` passes `pool_size` to LCMat only."""
    from dataclasses import fields

    from condense_core import CONDENSERS, SELECTORS

    shared = {"ipc", "seed", "model", "model_options", "device", "progress", "iterations"}
    return {name: {f.name for f in fields(cls)} - shared for name, cls in {**SELECTORS, **CONDENSERS}.items()}


def _check_condense(condense: dict) -> None:
    for name, allowed in method_fields().items():
        options = condense.setdefault(name, {})
        if not isinstance(options, dict):
            raise InputError(f"condense.{name} must be a mapping of {name}'s settings, got {options!r}")
        for key in options:
            if key not in allowed:
                raise InputError(f"unknown config key condense.{name}.{key} "
                                 f"(allowed: {', '.join(sorted(allowed))})")
    _int(condense, "iterations", "condense.iterations")
    _int(condense, "batch_real", "condense.batch_real")
    _float(condense, "lr_img", "condense.lr_img", positive=True)
    if condense["init"] not in INITS:
        raise InputError(f"condense.init must be one of {', '.join(INITS)}, got {condense['init']!r}")
    if not isinstance(condense["dsa"], bool):
        raise InputError(f"condense.dsa must be true or false, got {condense['dsa']!r}")


def check_split(cfg: dict, num_classes: int) -> None:
    """Check experiences/first_experience_classes and memory.mem_size against the data's number
    of classes (before any training, so a run never stops half-way on them)."""
    mem_size = cfg["memory"].get("mem_size")
    if mem_size is not None and mem_size < num_classes:
        raise InputError(f"memory.mem_size {mem_size} is smaller than the data's {num_classes} classes: "
                         "each class needs at least one image")
    first, n = cfg["first_experience_classes"], cfg["experiences"]
    if first is None:
        if n > num_classes:
            raise InputError(f"experiences is {n} but the data has only {num_classes} classes")
        return
    if n < 2:
        raise InputError("first_experience_classes needs experiences >= 2")
    if first >= num_classes or num_classes - first < n - 1:
        raise InputError(f"first_experience_classes {first} leaves {num_classes - first} classes "
                         f"for the other {n - 1} experiences")
