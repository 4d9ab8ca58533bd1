"""The straightforward DM loop that `dcapps bench` times the engine against.

It does what the DM paper's public code does each iteration: build a fresh network, then for every
class forward its whole real batch and its synthetic images on their own, with the class's Siamese
augmentation, in fp32 and channels-first, then one backward and one SGD step for all synthetic
images. It consumes the same random draws as `engine.Engine`, so both compute the same set (a test
checks it to float tolerance); only the speed differs. `ReferenceDM` is the same loop as a
method (not registered: for benchmarks that compare accuracy after a number of iterations).
"""
from __future__ import annotations

import torch

from .data import ImageData
from .engine import DMLoop
from .formation import decode
from .methods.dm import DM


class ReferenceLoop(DMLoop):
    """The reference loop for the settings of `dm` (real or noise init, with or without DSA)."""

    def __init__(self, dm: DM, data: ImageData, device: torch.device):
        super().__init__(dm, data, device)
        self.syn = self.initial_images().flatten(0, 1).clone().requires_grad_(True)
        self.opt = torch.optim.SGD([self.syn], lr=dm.lr_img, momentum=dm.momentum)

    def step(self) -> None:
        dm, g, ipc = self.dm, self.g, self.dm.ipc
        net = dm.network(self.data, self.device, g).requires_grad_(False).train()
        positions = self.draw_positions()
        op, u = self.draw_augmentation()
        loss = torch.zeros((), device=self.device)
        for j, idx in enumerate(self.class_idx):
            real = self.augment(self.real(idx[positions[j].to(idx.device)]), j, op, u)
            syn = self.augment(decode(self.syn[j * ipc:(j + 1) * ipc], dm.factor), j, op, u)
            e_real = net.embed(real).detach()
            loss = loss + ((e_real.mean(0) - net.embed(syn).mean(0)) ** 2).sum()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def images(self) -> torch.Tensor:
        return self.syn.detach()


class ReferenceDM(DM):
    """DM computed by the reference loop (fp32, channels-first whatever the speed flags say)."""

    def _run(self, data, device, checkpoint=None):
        loop = ReferenceLoop(self, data, device)
        for _ in range(self.iterations):
            loop.step()
        labels = torch.tensor(loop.labels, device=device).repeat_interleave(self.ipc)
        return loop.images(), labels, {"loop": "reference"}
