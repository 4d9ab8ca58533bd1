"""How networks are trained: the settings of the optimiser and of the evaluation protocol.

Torch-free (torch is imported when an optimiser is made), so configs that embed these settings
(a scripted benchmark's `train:` section) are checked without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from .settings import Checked, setting


@dataclass
class SGDSettings(Checked):
    """The optimiser of every network the project trains (evaluation, selection networks, NAS
    candidates, continual learners): SGD with momentum and weight decay."""

    lr: float = setting(0.01, "SGD learning rate", above=0)
    momentum: float = setting(0.9, "SGD momentum", low=0)
    weight_decay: float = setting(5e-4, "SGD weight decay", low=0)

    def optimizer(self, parameters):
        """A `torch.optim.SGD` over `parameters` with these settings."""
        import torch

        return torch.optim.SGD(parameters, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)


@dataclass
class TrainSettings(SGDSettings):
    """How a network is trained in the evaluation protocol (and briefly, for selection)."""

    epochs: int = setting(300, "training epochs (the learning rate drops x0.1 at half)", low=1)
    batch_size: int = setting(256, "mini-batch size", low=1)
    dsa: bool = setting(True, "differentiable Siamese augmentation while training")
