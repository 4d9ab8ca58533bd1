"""Zero-cost proxies: hand-computed values on a tiny network, invariants on the search space's ConvNets."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from nas.zero_cost import PROXIES, ProxyScore, score_all

W1 = [[1.0, -1.0], [0.5, 2.0]]
B1 = [0.0, -1.0]
W2 = [[1.0, -2.0], [3.0, 0.5]]
B2 = [0.1, -0.2]
X = [[1.0, 0.0], [2.0, 1.0]]  # first-layer pre-activations [1, -0.5] and [1, 2]: codes 10 and 11
Y = [0, 1]


def tiny(act: nn.Module = None) -> nn.Module:
    """2 -> 2 linear, activation, 2 -> 2 linear, with the fixed weights above."""
    net = nn.Sequential(nn.Linear(2, 2), act or nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        for layer, w, b in ((net[0], W1, B1), (net[2], W2, B2)):
            layer.weight.copy_(torch.tensor(w))
            layer.bias.copy_(torch.tensor(b))
    return net


def batch():
    return torch.tensor(X), torch.tensor(Y)


def cross_entropy_grads():
    """dL/dW1 and dL/dW2 of the mean cross-entropy, by hand (numpy)."""
    w1, b1, w2, b2, x = (np.array(a) for a in (W1, B1, W2, B2, X))
    pre = x @ w1.T + b1
    h = np.maximum(pre, 0)
    logits = h @ w2.T + b2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d_logits = (p - np.eye(2)[Y]) / len(X)
    d_w2 = d_logits.T @ h
    d_w1 = ((d_logits @ w2) * (pre > 0)).T @ x
    return (w1, d_w1), (w2, d_w2)


def test_naswot_is_the_log_determinant_of_the_hamming_kernel():
    # codes 10 and 11: K = [[2, 1], [1, 2]] (2 bits minus the Hamming distance), det 3
    assert PROXIES["naswot"](tiny(), *batch()) == pytest.approx(math.log(3))
    # other activations are coded at the same pre-activation threshold
    for act in (nn.LeakyReLU(0.01, inplace=True), nn.Sigmoid(), nn.ReLU(inplace=True)):
        assert PROXIES["naswot"](tiny(act), *batch()) == pytest.approx(math.log(3))
    twice = torch.tensor([X[0], X[0]])  # identical images: a singular kernel
    assert PROXIES["naswot"](tiny(), twice, torch.tensor(Y)) == -math.inf


def test_synflow_by_hand():
    # |W1| ones + |b1| = [2, 3.5] (ReLU passes it); dR/dh = column sums of |W2| = [4, 2.5]
    # sum |W2| * h = 2 + 7 + 6 + 1.75 = 16.75; sum |W1| * dR/dh = 2 * 4 + 2.5 * 2.5 = 14.25
    assert PROXIES["synflow"](tiny(), *batch()) == pytest.approx(31.0)


def test_grad_norm_and_snip_by_hand():
    (w1, d_w1), (w2, d_w2) = cross_entropy_grads()
    assert PROXIES["grad_norm"](tiny(), *batch()) == pytest.approx(np.linalg.norm(d_w1) + np.linalg.norm(d_w2))
    assert PROXIES["snip"](tiny(), *batch()) == pytest.approx(np.abs(w1 * d_w1).sum() + np.abs(w2 * d_w2).sum())


def convnet(norm="batchnorm", act="relu", pool="avg", seed=0):
    from condense_core.networks import build_model, reinitialize

    net = build_model("ConvNet", 1, 10, (8, 8), width=8, depth=2, act=act, norm=norm, pool=pool)
    return reinitialize(net, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("norm,act,pool", [("batchnorm", "relu", "avg"), ("instancenorm", "sigmoid", "max"),
                                           ("none", "leakyrelu", "none"), ("layernorm", "relu", "max")])
def test_proxies_leave_the_network_alone_and_are_deterministic(norm, act, pool):
    net = convnet(norm, act, pool)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 1, 8, 8, generator=g), torch.arange(16) % 10
    before = {k: v.clone() for k, v in net.state_dict().items()}
    first = score_all(net, x, y)
    assert set(first) == set(PROXIES) and all(isinstance(s, ProxyScore) for s in first.values())
    assert all(math.isfinite(s.score) and s.seconds >= 0 for s in first.values()), first
    assert all(s.score > 0 for name, s in first.items() if name != "naswot")
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and batch-norm statistics
    assert all(p.grad is None for p in net.parameters())
    assert {k: s.score for k, s in score_all(net, x, y).items()} == {k: s.score for k, s in first.items()}


def test_synflow_bypasses_batch_norm():
    with_bn, without = convnet("batchnorm"), convnet("none")
    without.load_state_dict({k: v for k, v in with_bn.state_dict().items() if k in without.state_dict()})
    x, y = torch.randn(4, 1, 8, 8), torch.arange(4)
    assert PROXIES["synflow"](with_bn, x, y) == pytest.approx(PROXIES["synflow"](without, x, y), rel=1e-9)
    with pytest.raises(ValueError, match="unknown zero-cost"):
        score_all(with_bn, x, y, ["naswot", "fisher"])
