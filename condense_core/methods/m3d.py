"""M3D (Zhang et al., AAAI 2024): `condense --method m3d`, distribution matching by the maximum
mean discrepancy.

DM matches only the mean embedding of each class (a linear kernel); M3D matches the whole
distribution: the squared MMD between the real batch's and the synthetic images' embeddings
under a Gaussian kernel, summed over `kernel_num` bandwidths spaced by `kernel_mul` around the
mean squared distance of the batch (the usual multi-kernel choice, so no bandwidth needs tuning
per data set). Everything else is IDM's: multi-formation, the queue of trained networks and the
class-aware regulariser, with the same settings.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..registration import register
from ..settings import setting
from .idm import IDM, NetworkQueue

# The most kernels: the paper sums 5; 32 spans bandwidths 2^16 times the batch's scale either way
# (at kernel_mul 2), past any use, while each kernel holds a (batch x batch) matrix for the
# gradient, so 10^5 of them exhaust the memory.
KERNELS_MAX = 32


def gaussian_mmd(x: torch.Tensor, y: torch.Tensor, kernel_num: int = 5, kernel_mul: float = 2.0) -> torch.Tensor:
    """Squared MMD between samples `x` (n x d) and `y` (m x d) under the sum of Gaussian kernels
    exp(-|a - b|^2 / s_i), s_i = s * kernel_mul^(i - kernel_num // 2), s the mean squared distance
    between distinct points of both samples (taken as a constant, not differentiated)."""
    z = torch.cat([x, y])
    sq = (z * z).sum(1)
    d2 = (sq[:, None] + sq[None] - 2 * z @ z.T).clamp_min(0)
    n = len(z)
    base = d2.detach().sum() / max(n * n - n, 1)
    k = sum(torch.exp(-d2 / (base * kernel_mul ** (i - kernel_num // 2)).clamp_min(1e-12))
            for i in range(kernel_num))
    a = len(x)
    return k[:a, :a].mean() + k[a:, a:].mean() - 2 * k[:a, a:].mean()


@register("condense", "m3d")
@dataclass
class M3D(IDM):
    """Distribution matching by a Gaussian-kernel MMD between real and synthetic embeddings, with
    IDM's multi-formation, network queue and class-aware regulariser."""

    kernel_num: int = setting(5, "Gaussian kernels summed in the MMD", low=1, high=KERNELS_MAX)
    kernel_mul: float = setting(2.0, "ratio between consecutive kernel bandwidths", above=1)

    pooled: ClassVar[bool] = False  # the MMD needs every embedding, not their sum

    def __post_init__(self):
        """`kernel_mul` to the power `kernel_num // 2` (the widest bandwidth's factor) must be a
        float: past the largest one the MMD cannot be computed."""
        super().__post_init__()
        if (self.kernel_num // 2) * math.log(self.kernel_mul) >= math.log(sys.float_info.max):
            raise InputError(f"kernel_mul {self.kernel_mul} to the power {self.kernel_num // 2} (kernel_num // 2) is "
                             "past the largest float: kernel_num bounds kernel_mul, give smaller ones")

    def moments(self, net, emb, label):
        """Per sample: the embedding and the cross-entropy under the network."""
        logits = net.classifier(emb)
        return [emb, F.cross_entropy(logits, torch.full((len(emb),), label, device=emb.device), reduction="none")]

    def match_loss(self, real, syn, queue: NetworkQueue | None):
        """The MMD of the embeddings plus IDM's class-aware term."""
        loss = gaussian_mmd(real[0], syn[0], self.kernel_num, self.kernel_mul)
        if queue is None or self.ce_weight == 0:
            return loss
        return loss + self.ce_weight * queue.accuracy[queue.current] * syn[1].mean()
