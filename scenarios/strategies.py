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

from dataclasses import asdict
from functools import partial
from typing import Callable

import torch

# strategy -> the (kind, name) of the registered method that builds its memory; the YAML's
# `methods.<name>` sections are these names
STRATEGY_METHODS = {"herding": ("select", "herding"), "dmreplay": ("condense", "dm"),
                    "lcmatreplay": ("condense", "lcmat"), "idmreplay": ("condense", "idm"),
                    "m3dreplay": ("condense", "m3d")}


def memory_size(memory, num_classes: int) -> int:
    """The images the memory holds in all: `ipc` for every class, or `mem_size`."""
    return memory.ipc * num_classes if memory.ipc is not None else memory.mem_size


def class_balanced_buffer(memory, num_classes: int):
    """Random storage, balanced over classes: `ipc` per class, or `mem_size` shared adaptively."""
    from avalanche.training.storage_policy import ClassBalancedBuffer

    if memory.ipc is not None:
        return ClassBalancedBuffer(memory_size(memory, num_classes), adaptive_size=False,
                                   total_num_classes=num_classes)
    return ClassBalancedBuffer(memory.mem_size, adaptive_size=True)


def build_strategy(name: str, model: torch.nn.Module, train, memory, method_settings: dict, num_classes: int,
                   seed: int, evaluator, device: torch.device):
    """The Avalanche strategy `name` for one unit: `model` trained with `train` (`CLTrainSettings`),
    the memory given by `memory` (`MemorySettings`), built by the strategy's method with
    `method_settings` (if it has one), and `seed`."""
    from torch.nn import CrossEntropyLoss

    on_memory_only = name == "gdumb" or (name in STRATEGY_METHODS and memory.replay_mode == "gdumb")
    epochs = train.memory_epochs if on_memory_only and train.memory_epochs is not None else train.epochs
    common = dict(model=model, optimizer=train.optimizer(model.parameters()), criterion=CrossEntropyLoss(),
                  train_mb_size=train.batch_size, train_epochs=epochs, eval_mb_size=512,
                  device=device, evaluator=evaluator, eval_every=-1)
    return BUILDERS[name](common, memory, num_classes, seed, method_settings)


def _naive(common, memory, num_classes, seed, method_settings):
    from avalanche.training.supervised import Naive

    return Naive(**common)


def _joint(common, memory, num_classes, seed, method_settings):
    from avalanche.training.supervised import JointTraining

    return JointTraining(**common)


def _replay(common, memory, num_classes, seed, method_settings):
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.supervised import Naive

    storage = class_balanced_buffer(memory, num_classes)
    return Naive(**common, plugins=[ReplayPlugin(storage.max_size, storage_policy=storage)])


class Embedding(torch.nn.Module):
    """The embedding half of a dcapps network (`net.embed`), as iCaRL's feature extractor."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embed(x)


def _icarl(common, memory, num_classes, seed, method_settings):
    """iCaRL with `ipc` images of every class seen (or `mem_size` shared by them)."""
    from avalanche.training.supervised import ICaRL

    net = common.pop("model")
    common.pop("criterion")  # iCaRL trains with its own distillation loss
    per_class = memory.ipc is not None
    return ICaRL(**common, feature_extractor=Embedding(net), classifier=net.classifier,
                 memory_size=memory.ipc if per_class else memory.mem_size, buffer_transform=None,
                 fixed_memory=not per_class)


def _der(common, memory, num_classes, seed, method_settings):
    """DER with a class-balanced memory of `ipc` x classes (or `mem_size`) images and their logits."""
    from avalanche.training.supervised import DER

    return DER(**common, mem_size=memory_size(memory, num_classes))


def _gdumb(common, memory, num_classes, seed, method_settings):
    from avalanche.training.supervised import GDumb

    storage = class_balanced_buffer(memory, num_classes)
    strategy = GDumb(**common, mem_size=storage.max_size)
    plugin = next(p for p in strategy.plugins if hasattr(p, "storage_policy"))
    plugin.storage_policy = storage  # same per-class memory as the other strategies
    return strategy


def _memory_plugin(common, memory, num_classes, seed, method_settings, strategy: str):
    """Naive + ReducedSetReplayPlugin with the strategy's method (herding: a selector)."""
    from avalanche.training.supervised import Naive

    from dcapps.replay import ReducedSetReplayPlugin

    kind, method = STRATEGY_METHODS[strategy]
    plugin = ReducedSetReplayPlugin(**asdict(memory), method=method, kind=kind, method_settings=method_settings,
                                    seed=seed)
    return Naive(**common, plugins=[plugin])


def _dmreplay(common, memory, num_classes, seed, method_settings, strategy: str):
    """DMReplay: a memory condensed per experience, replayed as mix or GDumb-style."""
    from dcapps.replay import DMReplay

    return DMReplay(**common, **asdict(memory), method=STRATEGY_METHODS[strategy][1], method_settings=method_settings,
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
