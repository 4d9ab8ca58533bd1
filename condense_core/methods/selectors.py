"""Coreset selection baselines: random, herding and k-center greedy.

Herding and k-center work in the embedding of a network trained briefly on the data
(`selection_epochs`), as in iCaRL and the coreset literature; they pick `ipc` distinct real
images per class and return them as a `ReducedSet` like any condenser.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..data import ImageData
from ..evaluate import TrainSettings, train_model
from ..method import Method, pick_per_class
from ..registration import register
from ..settings import setting


@dataclass
class Selector(Method):
    """Base of the selectors: `select` picks the training indices of the whole set."""

    def _run(self, data, device, checkpoint=None, embedding=None):
        chosen = self.select(data, device, embedding)
        return data.x_train[chosen], data.y_train[chosen], {"indices": chosen.tolist()}

    def select(self, data: ImageData, device: torch.device, embedding=None) -> torch.Tensor:
        """Training-set indices of the picks, classes in label order (`embedding`: see
        `Method.condense`)."""
        raise NotImplementedError


@register("select", "random")
@dataclass
class RandomSelector(Selector):
    """`ipc` real images per class drawn at random (the baseline every reduced set must beat)."""

    uses_network: ClassVar[bool] = False

    def select(self, data, device, embedding=None):
        return pick_per_class(data, self.ipc, self.generator(torch.device("cpu")))


@dataclass
class TrainedSelector(Selector):
    """A selector that looks at the data through a briefly trained network."""

    selection_epochs: int = setting(10, "epochs of the network the selector looks through", low=1)

    takes_embedding: ClassVar[bool] = True  # a given embedding replaces its trained network

    def trained_network(self, data: ImageData, device: torch.device) -> torch.nn.Module:
        g = self.generator(device, "train")
        net = self.network(data, device, g)
        cfg = TrainSettings(epochs=self.selection_epochs, batch_size=128)
        return train_model(net, data.x_train, data.y_train, cfg, g, self.progress, desc="selection net").eval()

    @torch.no_grad()
    def features(self, embed, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        return torch.cat([embed(x[i:i + 512].to(device)) for i in range(0, len(x), 512)])

    def select(self, data, device, embedding=None):
        """Per class, `select_class` on the features of its images: in a network trained on the
        data, or through a given `embedding` where the selector takes one (then `net` is None)."""
        given = embedding is not None and self.takes_embedding
        net = None if given else self.trained_network(data, device)
        embed = embedding if given else net.embed
        out = []
        for c, idx in sorted(data.class_indices().items()):
            out.append(idx[self.select_class(self.features(embed, data.x_train[idx], device), net, c).cpu()])
        return torch.cat(out)

    def select_class(self, f: torch.Tensor, net: torch.nn.Module, label: int) -> torch.Tensor:
        """Positions, within class `label`, of its `ipc` picks, from the class's features `f` in
        the trained network `net` (LCMat-S reads its classifier too)."""
        raise NotImplementedError


@register("select", "herding")
@dataclass
class Herding(TrainedSelector):
    """Greedy mean matching: each pick makes the selected mean closest to the class mean."""

    def select_class(self, f, net, label):
        mu = f.mean(0)
        chosen, total = [], torch.zeros_like(mu)
        available = torch.ones(len(f), dtype=torch.bool, device=f.device)
        for k in range(1, self.ipc + 1):
            dist = ((mu[None] - (total[None] + f) / k) ** 2).sum(1)
            dist[~available] = float("inf")
            i = int(dist.argmin())
            chosen.append(i)
            available[i] = False
            total = total + f[i]
        return torch.tensor(chosen)


@register("select", "kcenter")
@dataclass
class KCenter(TrainedSelector):
    """k-center greedy: start at the sample nearest the class mean, then add the farthest one."""

    def select_class(self, f, net, label):
        first = int(((f - f.mean(0)) ** 2).sum(1).argmin())
        chosen = [first]
        nearest = ((f - f[first]) ** 2).sum(1)
        for _ in range(self.ipc - 1):
            i = int(nearest.argmax())
            chosen.append(i)
            nearest = torch.minimum(nearest, ((f - f[i]) ** 2).sum(1))
        return torch.tensor(chosen)
