"""Distribution matching (Zhao & Bilen, WACV 2023).

Each iteration draws a freshly initialised embedding network (frozen), a real batch per class and
one Siamese augmentation per class; the loss is the sum over classes of the squared distance
between the mean embeddings of the real and the synthetic images, minimised by SGD (momentum
0.5) on the synthetic images. All classes go through one forward (real, without gradient) and one
forward (synthetic) unless the network has batch statistics (batch norm), where each class is
forwarded on its own as in the paper.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .augment import DSA
from .data import ImageData
from .errors import InputError
from .method import Method, pick_per_class
from .networks import has_batch_stats, reinitialize
from .runtime import progress


def class_means(emb: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Mean embedding of each group (groups are 0..n_groups-1)."""
    sums = torch.zeros(n_groups, emb.shape[1], device=emb.device, dtype=emb.dtype).index_add(0, groups, emb)
    counts = torch.bincount(groups, minlength=n_groups).clamp_min(1).to(emb.dtype)
    return sums / counts[:, None]


@dataclass
class DM(Method):
    """Distribution matching; subclasses change `match_loss` (e.g. LCMat-C)."""

    iterations: int = 1000
    batch_real: int = 256
    lr_img: float = 1.0
    momentum: float = 0.5
    init: str = "real"
    dsa: bool = True

    name: ClassVar[str] = "dm"

    @property
    def needs_real_per_class(self) -> bool:  # noise init needs no real image per class
        return self.init == "real"

    def validate(self, data: ImageData) -> None:
        super().validate(data)
        if self.init not in ("real", "noise"):
            raise InputError(f"--init must be real or noise, got {self.init!r}")
        for key in ("iterations", "batch_real"):
            if getattr(self, key) < 1:
                raise InputError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(self, key)}")
        if self.lr_img <= 0:
            raise InputError(f"--lr-img must be > 0, got {self.lr_img}")

    def _run(self, data, device):
        g = self.generator(device)
        labels = data.present_labels()
        k = len(labels)
        x_real = data.x_train.to(device)
        class_idx = [data.class_indices()[c].to(device) for c in labels]
        if self.init == "real":
            syn = x_real[pick_per_class(data, self.ipc, g).to(device)].clone()
        else:
            syn = torch.randn((k * self.ipc, *x_real.shape[1:]), generator=g, device=device)
        syn.requires_grad_(True)
        syn_groups = torch.arange(k, device=device).repeat_interleave(self.ipc)
        label_of_group = torch.tensor(labels, device=device)
        opt = torch.optim.SGD([syn], lr=self.lr_img, momentum=self.momentum)
        net = self.network(data, device, g)
        net.requires_grad_(False)
        aug = DSA() if self.dsa else None
        losses = []
        for it in progress(range(self.iterations), desc=f"{self.name} ipc{self.ipc}", enabled=self.progress):
            net = self.sample_network(net, data, g, it)
            picks = [idx[torch.randperm(len(idx), generator=g, device=device)[:self.batch_real]]
                     for idx in class_idx]
            real_groups = torch.cat([torch.full((len(p),), j, device=device) for j, p in enumerate(picks)])
            real, s = x_real[torch.cat(picks)], syn
            if aug is not None:
                op, u = aug.draw(k, g)
                with torch.no_grad():
                    real = aug.apply(real, op[real_groups], u[real_groups])
                s = aug.apply(syn, op[syn_groups], u[syn_groups])
            loss = self.match_loss(net, real, real_groups, s, syn_groups, k, label_of_group)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return syn.detach(), label_of_group[syn_groups], {"loss_first": losses[0], "loss_last": losses[-1]}

    def sample_network(self, net: torch.nn.Module, data: ImageData, generator: torch.Generator,
                       iteration: int) -> torch.nn.Module:
        """The embedding network of one iteration: DM re-draws every weight at random."""
        reinitialize(net, generator)
        return net.train()

    def embeddings(self, net, real, real_groups, syn, syn_groups, k):
        """Embeddings of the real (no gradient) and synthetic batches, batched over classes."""
        if not has_batch_stats(net):
            with torch.no_grad():
                e_real = net.embed(real)
            return e_real, net.embed(syn)
        order_r = [torch.nonzero(real_groups == j).flatten() for j in range(k)]
        order_s = [torch.nonzero(syn_groups == j).flatten() for j in range(k)]
        with torch.no_grad():
            e_real = torch.cat([net.embed(real[o]) for o in order_r])[torch.argsort(torch.cat(order_r))]
        e_syn = torch.cat([net.embed(syn[o]) for o in order_s])[torch.argsort(torch.cat(order_s))]
        return e_real, e_syn

    def match_loss(self, net, real, real_groups, syn, syn_groups, k, label_of_group) -> torch.Tensor:
        """Sum over classes of ||mean embedding(real) - mean embedding(synthetic)||^2."""
        e_real, e_syn = self.embeddings(net, real, real_groups, syn, syn_groups, k)
        diff = class_means(e_real, real_groups, k) - class_means(e_syn, syn_groups, k)
        return (diff ** 2).sum()
