"""Improved distribution matching (Zhao et al., CVPR 2023): `condense --method idm`.

DM with the paper's three changes, each a setting here (the ablation in docs/beyond-dm.md switches
them off one at a time):
- partition and expansion: multi-formation, `factor` 2 by default (`formation`);
- enriched model sampling: a queue of networks (`queue_size`), a fresh one joining every
  `refresh_every` iterations (the oldest leaving), `train_nets` of them trained `train_steps`
  SGD steps on real batches after every iteration; each iteration embeds with one queue
  network drawn at random instead of a freshly drawn one (`queue_size` 0: DM's random networks);
- class-aware regularisation: the cross-entropy of the synthetic images under the sampled
  network, weighted by `ce_weight` times that network's accuracy on its last training batch (so
  an untrained network does not pull the images around).
As in the paper's code, the image learning rate is 0.2 and images start from real ones. Every
draw (queue picks, fresh networks, training batches) comes from the run's seeded generator, and
the queue is saved in checkpoints, so a resumed run ends with the uninterrupted result.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..data import ImageData
from ..errors import InputError
from ..registration import register
from ..settings import setting
from .dm import DM


class NetworkQueue:
    """IDM's run state: the run's networks (each with its SGD state and last training accuracy),
    and which one the current iteration uses."""

    def __init__(self, method: "IDM", data: ImageData, device: torch.device):
        self.method, self.data, self.device = method, data, device
        self.nets: list[torch.nn.Module] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self.accuracy: list[torch.Tensor] = []
        self.iteration = 0
        self.current = 0

    def push(self, generator: torch.Generator) -> None:
        """A freshly drawn network joins; the oldest leaves when the queue is full."""
        net = self.method.network(self.data, self.device, generator).train()
        self.nets.append(net)
        self.optimizers.append(torch.optim.SGD(net.parameters(), lr=self.method.net_lr, momentum=0.9,
                                               weight_decay=5e-4))
        self.accuracy.append(torch.zeros((), device=self.device))
        if len(self.nets) > self.method.queue_size:
            for items in (self.nets, self.optimizers, self.accuracy):
                items.pop(0)

    def train(self, generator: torch.Generator) -> None:
        """`train_nets` distinct networks, `train_steps` SGD steps each on random real batches."""
        m, n = self.method, len(self.data.y_train)
        for i in torch.randperm(len(self.nets), generator=generator, device=generator.device)[:m.train_nets].tolist():
            net, opt = self.nets[i], self.optimizers[i]
            for _ in range(m.train_steps):
                idx = torch.randint(n, (min(m.train_batch, n),), generator=generator, device=generator.device).cpu()
                x = torch.as_tensor(self.data.x_train[idx]).to(self.device)
                y = self.data.y_train[idx].to(self.device)
                logits = net(x)
                loss = F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self.accuracy[i] = (logits.detach().argmax(1) == y).float().mean()

    def state_dict(self) -> dict:
        return {"nets": [net.state_dict() for net in self.nets],
                "optimizers": [opt.state_dict() for opt in self.optimizers],
                "accuracy": torch.stack(self.accuracy).cpu() if self.accuracy else torch.zeros(0),
                "iteration": self.iteration, "current": self.current}

    def load_state_dict(self, saved: dict) -> None:
        generator = self.method.generator(self.device, "queue")  # draws the structure; the weights come next
        while len(self.nets) < len(saved["nets"]):
            self.push(generator)
        del self.nets[len(saved["nets"]):], self.optimizers[len(saved["nets"]):]
        for net, opt, net_state, opt_state in zip(self.nets, self.optimizers, saved["nets"], saved["optimizers"]):
            net.load_state_dict(net_state)
            opt.load_state_dict(opt_state)
        self.accuracy = [a.to(self.device) for a in saved["accuracy"]]
        self.iteration, self.current = int(saved["iteration"]), int(saved["current"])


@register("condense", "idm")
@dataclass
class IDM(DM):
    """Improved distribution matching: multi-formation, a queue of trained networks, and a
    class-aware cross-entropy regulariser."""

    lr_img: float = setting(0.2, "learning rate of the images", above=0)
    factor: int = setting(2, "multi-formation: each stored image holds factor x factor sub-images, "
                             "trained on as factor^2 full-size images (same memory)", low=1)
    queue_size: int = setting(100, "networks in the queue (0: a fresh random network every iteration, "
                                   "as DM)", low=0)
    refresh_every: int = setting(30, "iterations between two fresh networks joining the queue", low=1)
    train_nets: int = setting(2, "queue networks trained after each iteration", low=0)
    train_steps: int = setting(10, "SGD steps each of them takes", low=0)
    train_batch: int = setting(256, "real images (all classes) per such step", low=1)
    net_lr: float = setting(0.01, "learning rate of the queue networks", above=0)
    ce_weight: float = setting(0.5, "weight of the class-aware cross-entropy (times the sampled "
                                    "network's training accuracy)", low=0)

    graph_safe: ClassVar[bool] = False  # the queue is picked and trained from the host
    presets: ClassVar[dict[str, dict]] = {"memory": {"iterations": 300, "batch_real": 128, "init": "herding"}}

    def __post_init__(self):
        """The settings that bound one another: the networks trained after each iteration are
        distinct networks of the queue, so a `train_nets` above `queue_size` would train fewer
        than asked, silently; it is refused."""
        super().__post_init__()
        if self.queue_size and self.train_nets > self.queue_size:
            raise InputError(f"train_nets {self.train_nets} is more than queue_size {self.queue_size}: queue_size "
                             "bounds train_nets (the networks trained are distinct networks of the queue)")

    def settings(self) -> dict:
        """Every setting as the run uses it: without a queue (`queue_size` 0) no network is
        trained and the class-aware term, weighted by a queue network's accuracy, is off, so the
        metadata records `train_nets` and `ce_weight` as 0 (the run is DM's with these settings)."""
        out = super().settings()
        if self.queue_size == 0:
            out.update(train_nets=0, ce_weight=0.0)
        return out

    def start(self, data: ImageData, device: torch.device) -> NetworkQueue | None:
        """The queue, seeded with three fresh networks as in the paper's code (none without one)."""
        if self.queue_size == 0:
            return None
        queue = NetworkQueue(self, data, device)
        g = self.generator(device, "queue")
        for _ in range(min(3, self.queue_size)):
            queue.push(g)
        return queue

    def sample_network(self, net, queue: NetworkQueue | None, generator):
        """A queue network's weights, drawn at random (DM's fresh random weights without a queue)."""
        if queue is None:
            return super().sample_network(net, queue, generator)
        if queue.iteration % self.refresh_every == 0:
            queue.push(generator)
        queue.current = int(torch.randint(len(queue.nets), (1,), generator=generator, device=generator.device))
        net.load_state_dict(queue.nets[queue.current].state_dict())

    def moments(self, net, emb, label):
        """DM's embedding sum, and the summed cross-entropy of the batch under the network."""
        logits = net.classifier(emb)
        ce = F.cross_entropy(logits, torch.full((len(emb),), label, device=emb.device), reduction="sum")
        return [emb.sum(0), ce]

    def match_loss(self, real, syn, queue: NetworkQueue | None):
        """DM's gap plus `ce_weight` x accuracy x the synthetic images' mean cross-entropy."""
        gap = ((real[0] - syn[0]) ** 2).sum()
        if queue is None or self.ce_weight == 0:
            return gap
        return gap + self.ce_weight * queue.accuracy[queue.current] * syn[1]

    def end_iteration(self, queue: NetworkQueue | None, generator):
        """The queue's training after the image update."""
        if queue is not None:
            queue.train(generator)
            queue.iteration += 1
