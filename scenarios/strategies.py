"""Strategy name -> an Avalanche strategy, all built from one shared configuration.

Every strategy gets the same model (freshly initialised from the seed), the same SGD settings,
epochs and mini-batch size (`train.memory_epochs`, where given, for a model trained on the memory
only: gdumb, and the memory strategies under `memory.replay_mode: gdumb`, so that one table can
hold them beside strategies that train on the stream), and the same memory: `memory.ipc` images per
class (a fixed share for every class, as DMReplay stores) or a total of `memory.mem_size` images
(shared among the classes seen so far). `naive` and `joint` keep no memory; `joint` is the upper
bound that sees all experiences at once. `icarl` and `der` are Avalanche's own `ICaRL` (herding
memory and a nearest-mean-of-exemplars classifier on the model's embedding) and `DER` (dark
experience replay: a memory of images with the logits they had), at the same number of stored
images.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch

# strategy -> the (kind, name) of the registered method that builds its memory; the YAML's
# `condense.<name>` sections are these names
MEMORY_METHODS = {"herding": ("select", "herding"), "dmreplay": ("condense", "dm"),
                  "lcmatreplay": ("condense", "lcmat"), "idmreplay": ("condense", "idm"),
                  "m3dreplay": ("condense", "m3d")}


def memory_arguments(memory, num_classes: int) -> dict:
    """The memory budget of a condensed memory: `ipc`, or `mem_size` shared by the classes seen."""
    if memory.ipc is not None:
        return {"ipc": memory.ipc, "mem_size": None}
    return {"ipc": max(1, memory.mem_size // num_classes), "mem_size": memory.mem_size}


def class_balanced_buffer(memory, num_classes: int):
    """Random storage, balanced over classes: `ipc` per class, or `mem_size` shared adaptively."""
    from avalanche.training.storage_policy import ClassBalancedBuffer

    if memory.ipc is not None:
        return ClassBalancedBuffer(memory.ipc * num_classes, adaptive_size=False,
                                   total_num_classes=num_classes)
    return ClassBalancedBuffer(memory.mem_size, adaptive_size=True)


def method_settings(cfg, strategy: str) -> dict:
    """The settings of `strategy`'s memory method: the shared model, then what `condense:` gives
    (no progress of its own: a run shows its units, `dcapps cl run`)."""
    kind, name = MEMORY_METHODS[strategy]
    return {"model": cfg.model["name"], "model_options": {k: v for k, v in cfg.model.items() if k != "name"},
            "progress": "off", **cfg.condense.options(kind, name)}


def check_memory_methods(cfg, data) -> None:
    """Fail before any training if a strategy's memory method is not registered, or does not take
    the settings the config gives it, or cannot run on `data` (e.g. images too small for its
    network): the error names the config's `condense.<method>` section."""
    from condense_core import InputError, make_method

    from dcapps.replay import PRESET

    for name in cfg.strategies:
        if name not in MEMORY_METHODS:
            continue
        kind, method = MEMORY_METHODS[name]
        try:
            make_method(kind, method, PRESET, **method_settings(cfg, name), ipc=1, device="cpu").validate(data)
        except InputError as e:
            raise InputError(f"condense.{method} (strategy {name}): {e}") from None


def build_strategy(name: str, cfg, model: torch.nn.Module, num_classes: int, seed: int,
                   evaluator, device: torch.device):
    """The Avalanche strategy `name` for one run of `cfg` with `seed`."""
    from torch.nn import CrossEntropyLoss

    t = cfg.train
    on_memory_only = name == "gdumb" or (name in MEMORY_METHODS and cfg.memory.replay_mode == "gdumb")
    epochs = t.memory_epochs if on_memory_only and t.memory_epochs is not None else t.epochs
    optimizer = t.optimizer(model.parameters())
    common = dict(model=model, optimizer=optimizer, criterion=CrossEntropyLoss(),
                  train_mb_size=t.batch_size, train_epochs=epochs, eval_mb_size=512,
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

    storage = class_balanced_buffer(cfg.memory, num_classes)
    return Naive(**common, plugins=[ReplayPlugin(storage.max_size, storage_policy=storage)])


class Embedding(torch.nn.Module):
    """The embedding half of a dcapps network (`net.embed`), as iCaRL's feature extractor."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embed(x)


def _icarl(cfg, common, num_classes, seed):
    """iCaRL with `ipc` images of every class seen (or `mem_size` shared by them)."""
    from avalanche.training.supervised import ICaRL

    net = common.pop("model")
    common.pop("criterion")  # iCaRL trains with its own distillation loss
    per_class = cfg.memory.ipc is not None
    return ICaRL(**common, feature_extractor=Embedding(net), classifier=net.classifier,
                 memory_size=cfg.memory.ipc if per_class else cfg.memory.mem_size, buffer_transform=None,
                 fixed_memory=not per_class)


def _der(cfg, common, num_classes, seed):
    """DER with a class-balanced memory of `ipc` x classes (or `mem_size`) images and their logits."""
    from avalanche.training.supervised import DER

    size = cfg.memory.ipc * num_classes if cfg.memory.ipc is not None else cfg.memory.mem_size
    return DER(**common, mem_size=size)


def _gdumb(cfg, common, num_classes, seed):
    from avalanche.training.supervised import GDumb

    storage = class_balanced_buffer(cfg.memory, num_classes)
    strategy = GDumb(**common, mem_size=storage.max_size)
    plugin = next(p for p in strategy.plugins if hasattr(p, "storage_policy"))
    plugin.storage_policy = storage  # same per-class memory as the other strategies
    return strategy


def _memory_plugin(cfg, common, num_classes, seed, strategy: str):
    """Naive + ReducedSetReplayPlugin with the strategy's memory method (herding: a selector)."""
    from avalanche.training.supervised import Naive

    from dcapps.replay import ReducedSetReplayPlugin

    kind, name = MEMORY_METHODS[strategy]
    plugin = ReducedSetReplayPlugin(**memory_arguments(cfg.memory, num_classes), method=name, kind=kind,
                                   method_settings=method_settings(cfg, strategy), seed=seed,
                                   replay_mode=cfg.memory.replay_mode)
    return Naive(**common, plugins=[plugin])


def _dmreplay(cfg, common, num_classes, seed, strategy: str):
    """DMReplay: a memory condensed per experience, replayed as mix or GDumb-style."""
    from dcapps.replay import DMReplay

    return DMReplay(**common, **memory_arguments(cfg.memory, num_classes), method=MEMORY_METHODS[strategy][1],
                    method_settings=method_settings(cfg, strategy), replay_mode=cfg.memory.replay_mode,
                    seed=seed)


BUILDERS: dict[str, Callable] = {
    "naive": _naive,
    "replay": _replay,
    "herding": partial(_memory_plugin, strategy="herding"),
    "gdumb": _gdumb,
    "icarl": _icarl,
    "der": _der,
    "dmreplay": partial(_dmreplay, strategy="dmreplay"),
    "lcmatreplay": partial(_dmreplay, strategy="lcmatreplay"),
    "idmreplay": partial(_dmreplay, strategy="idmreplay"),
    "m3dreplay": partial(_dmreplay, strategy="m3dreplay"),
    "joint": _joint,
}
STRATEGIES = tuple(BUILDERS)
