"""Strategy name -> an Avalanche strategy, all built from one shared configuration.

Every strategy gets the same model (freshly initialised from the seed), the same SGD settings,
epochs and mini-batch size, and the same memory: `memory.ipc` images per class (a fixed share
for every class, as DMReplay stores) or a total of `memory.mem_size` images (shared among the
classes seen so far). `naive` and `joint` keep no memory; `joint` is the upper bound that sees
all experiences at once.
"""
from __future__ import annotations

from typing import Callable

import torch

from condense_core.errors import InputError

CONDENSED = {"herding": "herding", "dmreplay": "dm", "lcmatreplay": "lcmat"}  # strategy -> memory method


def memory_arguments(memory: dict, num_classes: int) -> dict:
    """DMReplay/CondensedReplayPlugin memory settings: `ipc` or `mem_size`."""
    if memory["ipc"] is not None:
        return {"ipc": memory["ipc"], "mem_size": None}
    return {"ipc": max(1, memory["mem_size"] // num_classes), "mem_size": memory["mem_size"]}


def class_balanced_buffer(memory: dict, num_classes: int):
    """Random storage, balanced over classes: `ipc` per class, or `mem_size` shared adaptively."""
    from avalanche.training.storage_policy import ClassBalancedBuffer

    if memory["ipc"] is not None:
        return ClassBalancedBuffer(memory["ipc"] * num_classes, adaptive_size=False,
                                   total_num_classes=num_classes)
    return ClassBalancedBuffer(memory["mem_size"], adaptive_size=True)


def condenser_options(cfg: dict, condenser: str) -> dict:
    """The memory method's settings: the shared model, the shared condense.* settings for a
    condenser, then the method's own (`condense.<method>`)."""
    from condense_core import CONDENSERS

    from .config import method_fields

    opts = {"model": cfg["model"]["name"],
            "model_options": {k: v for k, v in cfg["model"].items() if k != "name"}}
    if condenser in CONDENSERS:
        opts.update({k: v for k, v in cfg["condense"].items() if k != "iterations" and k not in method_fields()})
    return {**opts, **cfg["condense"].get(condenser, {})}


def _replay_module():
    try:
        from dcapps import replay
    except ImportError as e:
        raise InputError(f"this strategy needs dcapps.replay (DMReplay), which failed to import: {e}") from None
    return replay


def _check_condenser(name: str) -> None:
    from condense_core import CONDENSERS, SELECTORS

    if name not in CONDENSERS and name not in SELECTORS:
        raise InputError(f"strategy needs the condensation method {name!r}, which is not registered "
                         "in condense_core/registry.py")


def check_available(strategies: list[str]) -> None:
    """Fail before any training if a strategy's replay module or memory method is missing."""
    for name in strategies:
        if name in CONDENSED:
            _replay_module()
            _check_condenser(CONDENSED[name])


def build_strategy(name: str, cfg: dict, model: torch.nn.Module, num_classes: int, seed: int,
                   evaluator, device: torch.device):
    """The Avalanche strategy `name` for one run of `cfg` with `seed`."""
    from torch.nn import CrossEntropyLoss

    t = cfg["train"]
    optimizer = torch.optim.SGD(model.parameters(), lr=t["lr"], momentum=t["momentum"],
                                weight_decay=t["weight_decay"])
    common = dict(model=model, optimizer=optimizer, criterion=CrossEntropyLoss(),
                  train_mb_size=t["batch_size"], train_epochs=t["epochs"], eval_mb_size=512,
                  device=device, evaluator=evaluator, eval_every=-1)
    return BUILDERS[name](cfg, common, num_classes, seed)


def _naive(cfg, common, num_classes, seed):
    from avalanche.training.supervised import Naive

    return Naive(**common)


def _joint(cfg, common, num_classes, seed):
    from avalanche.training.supervised import JointTraining

    return JointTraining(**common)


def _replay(cfg, common, num_classes, seed):
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.supervised import Naive

    storage = class_balanced_buffer(cfg["memory"], num_classes)
    return Naive(**common, plugins=[ReplayPlugin(storage.max_size, storage_policy=storage)])


def _gdumb(cfg, common, num_classes, seed):
    from avalanche.training.supervised import GDumb

    storage = class_balanced_buffer(cfg["memory"], num_classes)
    strategy = GDumb(**common, mem_size=storage.max_size)
    plugin = next(p for p in strategy.plugins if hasattr(p, "storage_policy"))
    plugin.storage_policy = storage  # same per-class memory as the other strategies
    return strategy


def _condensed_plugin(condenser: str) -> Callable:
    """Naive + CondensedReplayPlugin with a condenser or selector (herding, lcmat)."""
    def build(cfg, common, num_classes, seed):
        from avalanche.training.supervised import Naive

        _check_condenser(condenser)
        plugin = _replay_module().CondensedReplayPlugin(
            **memory_arguments(cfg["memory"], num_classes), condenser=condenser,
            condenser_options=condenser_options(cfg, condenser),
            iterations=cfg["condense"]["iterations"], replay_mode=cfg["memory"]["replay_mode"], seed=seed)
        return Naive(**common, plugins=[plugin])
    return build


def _dmreplay(condenser: str) -> Callable:
    """DMReplay: a memory condensed per experience, replayed as mix or GDumb-style."""
    def build(cfg, common, num_classes, seed):
        _check_condenser(condenser)
        return _replay_module().DMReplay(
            **common, **memory_arguments(cfg["memory"], num_classes), condenser=condenser,
            condenser_options=condenser_options(cfg, condenser), iterations=cfg["condense"]["iterations"],
            replay_mode=cfg["memory"]["replay_mode"], seed=seed)
    return build


BUILDERS: dict[str, Callable] = {
    "naive": _naive,
    "replay": _replay,
    "herding": _condensed_plugin(CONDENSED["herding"]),
    "gdumb": _gdumb,
    "dmreplay": _dmreplay(CONDENSED["dmreplay"]),
    "lcmatreplay": _dmreplay(CONDENSED["lcmatreplay"]),
    "joint": _joint,
}
