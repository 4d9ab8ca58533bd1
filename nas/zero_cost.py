"""Zero-cost proxies: score an untrained network from one batch, with no training at all.

The cheapest alternatives to training candidates on a proxy set, as defined by
Mellor et al. 2021 ("Neural Architecture Search without Training", NASWOT) and by Abdelfattah et
al. 2021 ("Zero-Cost Proxies for Lightweight NAS", synflow, grad_norm, snip), following those
papers' code:

- `naswot`: log-determinant of the kernel K_H = N_A - Hamming distance between the binary
  activation codes of the batch's images, the codes taken at every activation of the network.
- `synflow`: batch norm bypassed, every weight and buffer replaced by its absolute value, one
  all-ones image in float64; R = sum of the output; score = sum of |theta * dR/dtheta|.
- `grad_norm`: sum over layers of the L2 norm of the cross-entropy gradient of the layer's weight.
- `snip`: sum of |theta * dL/dtheta| for the cross-entropy L on the batch.

As in the papers' code, "parameters" and "layers" for synflow, grad_norm and snip are the
weights of the convolutions and linear layers (no biases, no normalisation weights). Every proxy
works on a copy of the network in training mode (batch norm uses the batch's statistics, as a
freshly built network would), so the network given, its buffers and its gradients are left as
they were. Higher is better for all four.
"""
from __future__ import annotations

import copy
import time
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from condense_core import InputError

WEIGHTED = (nn.Conv2d, nn.Linear)
# NASWOT's codes: every elementwise activation of the network, 1 where its input is > 0.
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus)


class ProxyScore(NamedTuple):
    score: float
    seconds: float


def _copy(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy of `net` in training mode with no gradients, on the batch's device."""
    twin = copy.deepcopy(net).to(x.device).train()
    twin.zero_grad(set_to_none=True)
    return twin


def _weights(net: nn.Module) -> list[torch.Tensor]:
    """The weights every gradient proxy is summed over: those of convolutions and linear layers."""
    return [m.weight for m in net.modules() if isinstance(m, WEIGHTED)]


def naswot(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """log |K_H| over the batch `x` (Mellor et al. 2021); `y` is not used.

    Each image's code has one bit per unit of every activation module: 1 where the activation's
    input (the pre-activation) is > 0. For ReLU and LeakyReLU this is NASWOT's "the unit is
    active" (the paper's code hooks both, as both names contain ReLU); for sigmoid (and any other
    activation in `ACTIVATIONS`) it is the same threshold, which the papers do not define: the
    pre-activation's sign is where a sigmoid crosses 0.5. K_H[i, j] is the number of bits where
    images i and j agree (= N_A - their Hamming distance). A singular K_H (e.g. two identical
    images in the batch, or a batch larger than the number of distinct codes) gives -inf.
    """
    twin = _copy(net, x)
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64, device=x.device)

    def count(module, inputs):
        codes = (inputs[0].detach().reshape(n, -1) > 0).to(torch.float64)
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    # A pre-hook sees the input before an in-place activation overwrites it.
    hooks = [m.register_forward_pre_hook(count) for m in twin.modules() if isinstance(m, ACTIVATIONS)]
    if not hooks:
        raise InputError("NASWOT needs a network with at least one activation module")
    with torch.no_grad():
        twin(x)
    for h in hooks:
        h.remove()
    return float(torch.linalg.slogdet(kernel)[1])


def synflow(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """Synaptic flow (Tanaka et al. 2020) as Abdelfattah et al. 2021 compute it; `y` is not used.

    On a copy: batch norm layers pass their input through unchanged, every parameter and buffer
    is replaced by its absolute value, and one all-ones image shaped like `x`'s images goes
    through the network in float64 (their code's `[1] + input_dim`; more identical images would
    only multiply the score by their number). R = sum of the output; score = sum over the
    conv/linear weights of |theta * dR/dtheta|.
    """
    twin = _copy(net, x)
    for name, module in list(twin.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, child_name, nn.Identity())
    twin.double()
    with torch.no_grad():
        for value in twin.state_dict().values():
            if value.is_floating_point():
                value.abs_()
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    twin(ones).sum().backward()
    return _sum(abs(w * w.grad) for w in _weights(twin) if w.grad is not None)


def grad_norm(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over conv/linear layers of ||dL/dW||_2 for the mean cross-entropy L on (x, y)."""
    twin = _copy(net, x)
    F.cross_entropy(twin(x), y.to(x.device)).backward()
    return _sum(w.grad.norm() for w in _weights(twin) if w.grad is not None)


def snip(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """SNIP's connection sensitivity (Lee et al. 2019) summed: sum of |W * dL/dW| over conv/linear
    weights, L the mean cross-entropy on (x, y) (equal to the papers' gradient of a unit mask)."""
    twin = _copy(net, x)
    F.cross_entropy(twin(x), y.to(x.device)).backward()
    return _sum(abs(w * w.grad) for w in _weights(twin) if w.grad is not None)


def _sum(parts) -> float:
    return float(sum(float(p.detach().sum()) for p in parts))


PROXIES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "naswot": naswot, "synflow": synflow, "grad_norm": grad_norm, "snip": snip}


def score_all(net: nn.Module, x: torch.Tensor, y: torch.Tensor,
              names: list[str] | None = None) -> dict[str, ProxyScore]:
    """Every proxy (or those named) of `net` on the batch (x, y), each with its seconds."""
    names = list(PROXIES) if names is None else names
    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise InputError(f"unknown zero-cost proxies {unknown} (choose from {', '.join(PROXIES)})")
    out = {}
    for name in names:
        t0 = time.perf_counter()
        score = PROXIES[name](net, x, y)
        out[name] = ProxyScore(score, time.perf_counter() - t0)
    return out
