"""Loss-curvature matching (Shin et al., AISTATS 2023): LCMat-S selection and LCMat-C condensation.

LCMat makes the reduced set's loss match the full set's loss not only at the current parameters
but over a neighbourhood of radius rho around them; the worst-case gap is bounded by a gradient
gap plus a curvature (Hessian) gap. Both halves work on the last linear layer (the classifier)
of a network, where cross-entropy has closed forms: for features f, probabilities p and one-hot
label y, the per-sample gradient is (p - y) x [f, 1] and the Hessian diagonal p(1 - p) x [f^2, 1]
(outer products). Keeping them as the two factors of the outer product lets selection work from
the factors (inner products with a mean gap; pairwise distances from two small Gram matrices),
never from per-sample gradients.

- `LCMatS` (`select --method lcmat`): per class, in a briefly trained network, the `ipc` samples
  picked greedily to minimise ||mean_T g - mean_S g||_2 + eps * ||mean_T h - mean_S h||_1 (the
  gradient and curvature terms of LCMat's bound, with S's loss its plain mean: a selected set is
  trained on unweighted), h restricted to the `k` Hessian-diagonal coordinates of highest variance
  within the class (`objective` "mean", the default). `objective` "facility" is the paper's
  greedy facility location with similarity max - ||g_i - g_j||_2 - eps * ||h_i - h_j||_1; it
  bounds the gap only when each pick is weighted by the samples it covers (as in CRAIG), and
  unweighted, in a network that already fits most of the class (small gradients), it spends most
  picks on the few high-loss samples far from the rest (the README's LCMat section measures it).
- `LCMatC` (`condense --method lcmat`): DM plus, per class, rho times the squared gap of the
  mean last-layer gradient and rho^2/2 times the squared gap of the mean Hessian diagonal between
  the real batch and the synthetic images (rho = 0 is DM); the network of each iteration is drawn
  from a pool of briefly trained networks (`pool_size`; 0 draws a random one each iteration, as
  DM does).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..data import ImageData
from ..distributed import Ranks
from ..evaluate import TrainSettings, train_model
from ..registration import register
from ..settings import setting
from .dm import DM
from .selectors import TrainedSelector

CHUNK_ELEMENTS = 1 << 22  # rows x n entries handled at once: bounds the temporaries of a class


def head_factors(classifier: torch.nn.Linear, f: torch.Tensor, y: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Factors (a, u, q, v) of the cross-entropy's per-sample gradient a_i x u_i and Hessian
    diagonal q_i x v_i with respect to the classifier's weight and bias (flattened row by row,
    the bias as the last column): a = p - onehot(y), u = [f, 1], q = p(1 - p), v = [f^2, 1]."""
    p = F.softmax(classifier(f), dim=1)
    a = p - F.one_hot(y, p.shape[1]).to(p.dtype)
    u = f if classifier.bias is None else torch.cat([f, torch.ones_like(f[:, :1])], dim=1)
    v = f ** 2 if classifier.bias is None else torch.cat([f ** 2, torch.ones_like(f[:, :1])], dim=1)
    return a, u, p * (1 - p), v


def top_variance_hessian(q: torch.Tensor, v: torch.Tensor, k: int) -> torch.Tensor:
    """The n x k Hessian-diagonal entries q_i[c] v_i[j] at the k coordinates (c, j) whose variance
    over the n samples is highest, computed from the factors (no n x C x D array)."""
    n = len(q)
    mean = q.T @ v / n
    var = (q ** 2).T @ (v ** 2) / n - mean ** 2
    top = var.flatten().topk(min(k, var.numel())).indices
    return q[:, top // v.shape[1]] * v[:, top % v.shape[1]]


def _row_chunks(n: int):
    step = max(1, CHUNK_ELEMENTS // max(n, 1))
    return (slice(i, min(i + step, n)) for i in range(0, n, step))


def curvature_distances(a: torch.Tensor, u: torch.Tensor, h: torch.Tensor, eps: float) -> torch.Tensor:
    """n x n matrix ||g_i - g_j||_2 + eps ||h_i - h_j||_1 with g_i = a_i x u_i.

    <g_i, g_j> = <a_i, a_j><u_i, u_j>, so the gradient distances come from two Gram matrices;
    rows are done in chunks, so the only quadratic array is the n x n result (float32)."""
    a, u, h = a.double(), u.double(), h.double()
    sq = (a ** 2).sum(1) * (u ** 2).sum(1)
    out = torch.empty(len(a), len(a), dtype=torch.float32, device=a.device)
    for r in _row_chunks(len(a)):
        gram = (a[r] @ a.T) * (u[r] @ u.T)
        dist = (sq[r, None] + sq[None] - 2 * gram).clamp_min(0).sqrt()
        if eps > 0:
            dist = dist + eps * torch.cdist(h[r], h, p=1)
        out[r] = dist.float()
    return out


def facility_location(sim: torch.Tensor, m: int) -> torch.Tensor:
    """Greedy maximisation of sum_i max_{j in S} sim[i, j] over sets S of m distinct columns."""
    n = len(sim)
    best = torch.zeros(n, dtype=sim.dtype, device=sim.device)
    taken = torch.zeros(n, dtype=torch.bool, device=sim.device)
    chosen = []
    for _ in range(m):
        gains = torch.zeros(n, dtype=torch.float64, device=sim.device)
        for r in _row_chunks(n):
            gains += (sim[r] - best[r, None]).clamp_min(0).sum(0, dtype=torch.float64)
        gains[taken] = -float("inf")
        j = int(gains.argmax())
        chosen.append(j)
        taken[j] = True
        best = torch.maximum(best, sim[:, j])
    return torch.tensor(chosen)


def mean_matching(a: torch.Tensor, u: torch.Tensor, h: torch.Tensor, eps: float, m: int) -> torch.Tensor:
    """Greedy minimisation of ||mean_T g - mean_S g||_2 + eps ||mean_T h - mean_S h||_1 over sets S
    of m distinct rows (g_i = a_i x u_i, the means plain, unweighted ones): each step adds the row
    that brings the subset's means closest to the whole set's.

    ||r - g_j / t||^2 = ||r||^2 - 2/t <r, a_j x u_j> + ||a_j||^2 ||u_j||^2 / t^2 with
    <r, a_j x u_j> = a_j . (r u_j), so no per-sample gradient is formed: O(n (C + D)) memory."""
    a, u, h = a.double(), u.double(), h.double()
    n = len(a)
    mean_g, mean_h = a.T @ u / n, h.mean(0)
    sum_g, sum_h = torch.zeros_like(mean_g), torch.zeros_like(mean_h)
    sq = (a ** 2).sum(1) * (u ** 2).sum(1)
    taken = torch.zeros(n, dtype=torch.bool, device=a.device)
    chosen = []
    for t in range(1, m + 1):
        r = mean_g - sum_g / t
        gap = ((r ** 2).sum() - 2 / t * (a * (u @ r.T)).sum(1) + sq / t ** 2).clamp_min(0).sqrt()
        if eps > 0:
            gap = gap + eps * (mean_h - (sum_h + h) / t).abs().sum(1)
        gap[taken] = float("inf")
        j = int(gap.argmin())
        chosen.append(j)
        taken[j] = True
        sum_g += torch.outer(a[j], u[j])
        sum_h += h[j]
    return torch.tensor(chosen)


OBJECTIVES = ("mean", "facility")


@register("select", "lcmat")
@dataclass
class LCMatS(TrainedSelector):
    """LCMat-S: per class, the `ipc` samples whose mean last-layer gradient and curvature match
    the class's (`objective` "mean"), or that cover the class's gradients and curvatures best
    (`objective` "facility", the paper's facility location), in a network trained for
    `selection_epochs`."""

    k: int = setting(100, "Hessian-diagonal coordinates compared (those of highest variance)", low=1)
    eps: float = setting(0.01, "weight of the curvature term", low=0)
    objective: str = setting("mean", "mean: greedy matching of the class's mean gradient and curvature "
                                     "by the subset's plain mean; facility: the paper's facility location",
                             choices=OBJECTIVES)

    takes_embedding: ClassVar[bool] = False  # it reads its own network's classifier too

    @torch.no_grad()
    def select_class(self, f, net, label):
        """Positions (within the class) of the `ipc` samples picked from features `f` and the
        classifier of `net`."""
        a, u, q, v = head_factors(net.classifier, f, torch.full((len(f),), label, device=f.device))
        h = top_variance_hessian(q, v, self.k)
        if self.objective == "mean":
            return mean_matching(a, u, h, self.eps, self.ipc)
        dist = curvature_distances(a, u, h, self.eps)
        return facility_location(dist.max() - dist, self.ipc)


class NetworkPool:
    """LCMat-C's run state: the briefly trained networks an iteration draws from. Nothing of it
    changes during a run, so a checkpoint keeps none of it: a resumed run trains it again, the same."""

    def __init__(self, networks: list[torch.nn.Module]):
        self.networks = networks

    def state_dict(self) -> None:
        return None

    def load_state_dict(self, saved: dict) -> None:
        """Never called: `state_dict` keeps nothing."""


@register("condense", "lcmat")
@dataclass
class LCMatC(DM):
    """LCMat-C: distribution matching plus last-layer gradient and curvature matching."""

    rho: float = setting(1.0, "neighbourhood radius (0 = DM's loss)", low=0)
    pool_size: int = setting(8, "briefly trained networks to draw from (0 = a random one each "
                                "iteration, as DM)", low=0)
    net_epochs: int = setting(5, "epochs each pool network is trained", low=1)

    graph_safe: ClassVar[bool] = False

    def start(self, data: ImageData, device: torch.device) -> NetworkPool:
        """The run's pool of trained networks (built once per run, never kept on the method)."""
        return NetworkPool(self.pool(data, device))

    def pool(self, data: ImageData, device: torch.device) -> list[torch.nn.Module]:
        """The `pool_size` trained networks; under torch.distributed rank r trains members
        r, r + world, ... and every rank receives all of them (the same as training them all)."""
        ranks = Ranks.current()
        mine = {i: self.pool_network(data, device, i) for i in range(self.pool_size) if ranks.owns(i)}
        placeholder = lambda i: self.network(data, device, self.generator(device, "pool", i))  # noqa: E731
        return [ranks.broadcast_module(mine[i] if i in mine else placeholder(i), i % ranks.world)
                for i in range(self.pool_size)]

    def pool_network(self, data: ImageData, device: torch.device, i: int) -> torch.nn.Module:
        """Pool member `i`: a fresh network trained `net_epochs` on the real data, then frozen."""
        g = self.generator(device, "pool", i)
        cfg = TrainSettings(epochs=self.net_epochs, batch_size=128)
        net = train_model(self.network(data, device, g), data.x_train, data.y_train, cfg, g,
                          self.progress, desc=f"pool net {i + 1}/{self.pool_size}")
        return net.requires_grad_(False)

    def sample_network(self, net, pool: NetworkPool, generator):
        """The weights of a pool network drawn at random each iteration, copied into `net`;
        random weights (DM) without a pool. (The draw is read on the host to pick the network,
        so LCMat-C's iterations are not captured as CUDA graphs.)"""
        if not pool.networks:
            return super().sample_network(net, pool, generator)
        i = int(torch.randint(len(pool.networks), (1,), generator=generator, device=generator.device))
        net.load_state_dict(pool.networks[i].state_dict())

    def moments(self, net, emb, label):
        """DM's embedding sum, plus the sums of the last-layer gradient and Hessian diagonal."""
        a, u, q, v = head_factors(net.classifier, emb, torch.full((len(emb),), label, device=emb.device))
        return [emb.sum(0), a.T @ u, q.T @ v]

    def match_loss(self, real, syn, pool: NetworkPool):
        """DM's gap plus rho ||mean gradient gap||^2 and rho^2/2 ||mean Hessian-diagonal gap||^2:
        the terms of LCMat's bound on the loss gap within radius rho (squared, like DM's)."""
        gaps = [((r - s) ** 2).sum() for r, s in zip(real, syn)]
        return gaps[0] + self.rho * gaps[1] + self.rho ** 2 / 2 * gaps[2]
