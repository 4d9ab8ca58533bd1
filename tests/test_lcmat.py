"""LCMat: closed forms against autograd, facility location, the curvature term's gradient, the
selector and condenser end to end on digits, and bad flags through the CLI."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from condense_core import ReducedSet, make_method, method_class
from condense_core.methods.lcmat import (LCMatC, LCMatS, curvature_distances, facility_location, head_factors,
                                         mean_matching, top_variance_hessian)
from dcapps.cli import main

SMALL = {"model_options": {"width": 8}, "device": "cpu"}


def small_head(seed=0, n=5, d=4, c=3):
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(d, c).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(c, d, generator=g, dtype=torch.float64))
        head.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64))
    return head, torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(c, (n,), generator=g)


def test_closed_forms_match_autograd():
    head, f, y = small_head()
    a, u, q, v = head_factors(head, f, y)
    for i in range(len(f)):
        def loss(theta):  # theta = [W | b] flattened row by row
            wb = theta.view(head.out_features, head.in_features + 1)
            return F.cross_entropy(f[i:i + 1] @ wb[:, :-1].T + wb[:, -1], y[i:i + 1])
        theta = torch.cat([head.weight, head.bias[:, None]], 1).detach().flatten()
        grad = torch.autograd.functional.jacobian(loss, theta)
        hess = torch.autograd.functional.hessian(loss, theta)
        assert torch.allclose(torch.outer(a[i], u[i]).flatten(), grad, atol=1e-10)
        assert torch.allclose(torch.outer(q[i], v[i]).flatten(), hess.diagonal(), atol=1e-10)


def test_distances_and_top_variance_match_the_explicit_arrays():
    head, f, y = small_head(n=7)
    a, u, q, v = head_factors(head, f, y)
    g = torch.einsum("nc,nd->ncd", a, u).flatten(1)
    h_all = torch.einsum("nc,nd->ncd", q, v).flatten(1)
    h = top_variance_hessian(q, v, 4)
    top = h_all.var(0, unbiased=False).topk(4).indices
    assert torch.allclose(h, h_all[:, top])
    want = torch.cdist(g, g) + 0.5 * torch.cdist(h, h, p=1)
    assert torch.allclose(curvature_distances(a, u, h, 0.5).double(), want, atol=1e-5)


def test_facility_location_picks_one_per_cluster_and_distinct():
    pts = torch.tensor([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2], [20.0]])
    dist = torch.cdist(pts, pts)
    chosen = facility_location(dist.max() - dist, 3)
    assert sorted(pts[chosen, 0].div(10).round().long().tolist()) == [0, 1, 2]  # one per cluster
    same = torch.zeros(7, 7)  # no gain after the first pick: the picks are still distinct
    assert len(set(facility_location(same, 7).tolist())) == 7


def test_mean_matching_is_the_explicit_greedy():
    head, f, y = small_head(n=12, c=3)
    y = torch.zeros_like(y)  # one class, as the selector calls it
    a, u, q, v = head_factors(head, f, y)
    h = top_variance_hessian(q, v, 5)
    g = torch.einsum("nc,nd->ncd", a, u).flatten(1)
    for eps in (0.0, 0.3):
        chosen = []
        for t in range(1, 6):  # the greedy written out on explicit per-sample gradients
            cost = [float("inf") if j in chosen else
                    ((g.mean(0) - g[chosen + [j]].mean(0)).norm()
                     + eps * (h.mean(0) - h[chosen + [j]].mean(0)).abs().sum()).item() for j in range(12)]
            chosen.append(int(torch.tensor(cost).argmin()))
        assert mean_matching(a, u, h, eps, 5).tolist() == chosen
    assert len(set(mean_matching(a, u, h, 0.0, 12).tolist())) == 12  # all rows, each once


def test_curvature_term_is_differentiable_in_the_synthetic_images(digits):
    method = LCMatC(ipc=1, **SMALL)
    net = method.network(digits, torch.device("cpu"), torch.Generator().manual_seed(0))
    syn = digits.x_train[:3].clone().requires_grad_(True)
    _, _, h = method.moments(net, net.embed(syn), 1)
    h.abs().sum().backward()
    assert syn.grad is not None and syn.grad.abs().sum() > 0

    real = digits.x_train[3:40]
    with torch.no_grad():
        real_means = [m / len(real) for m in method.moments(net, net.embed(real), 1)]

    def loss_grad(rho):  # gradient of LCMat-C's loss in the synthetic images
        s = syn.detach().clone().requires_grad_(True)
        lc = LCMatC(ipc=1, rho=rho, **SMALL)
        lc.match_loss(real_means, [m / 3 for m in lc.moments(net, net.embed(s), 1)], None).backward()
        return s.grad
    assert not torch.allclose(loss_grad(0.0), loss_grad(1.0))  # the head terms reach the images


def test_lcmat_is_registered_as_both_kinds():
    assert method_class("condense", "lcmat") is LCMatC and method_class("select", "lcmat") is LCMatS
    assert isinstance(make_method("select", "lcmat"), LCMatS)
    assert isinstance(make_method("condense", "lcmat"), LCMatC)


def test_selector_returns_ipc_distinct_real_images_per_class(digits):
    data = digits.subset([0, 3, 8])
    selected = make_method("select", "lcmat", ipc=4, k=20, selection_epochs=1, **SMALL).condense(data)
    idx = torch.tensor(selected.meta["indices"])
    assert len(set(idx.tolist())) == 12 and selected.labels.tolist() == [0] * 4 + [3] * 4 + [8] * 4
    assert torch.equal(selected.images, data.x_train[idx]) and torch.equal(selected.labels, data.y_train[idx])
    assert selected.meta["method"] == "lcmat" and selected.meta["k"] == 20 and selected.meta["eps"] == 0.01
    assert selected.meta["objective"] == "mean"
    fl = make_method("select", "lcmat", ipc=4, k=20, selection_epochs=1, objective="facility", **SMALL).condense(data)
    assert len(set(fl.meta["indices"])) == 12 and fl.labels.tolist() == selected.labels.tolist()


@pytest.mark.parametrize("pool_size", [0, 1])
def test_condenser_learns_images_and_is_seeded(digits, pool_size):
    data = digits.subset([2, 7])
    cfg = dict(ipc=1, iterations=3, batch_real=16, pool_size=pool_size, net_epochs=1, rho=1.0, **SMALL)
    a, b = LCMatC(**cfg).condense(data), LCMatC(**cfg).condense(data)
    assert torch.equal(a.images, b.images) and a.labels.tolist() == [2, 7]
    assert a.meta["rho"] == 1.0 and a.meta["pool_size"] == pool_size and torch.isfinite(a.images).all()
    moved = (a.images[:, None] - data.x_train[None]).flatten(2).abs().amax(2).amin(1)
    assert (moved > 1e-4).all()  # every image left its real starting point


def test_cli_select_and_condense(tmp_path, digits_arrays):
    x_tr, y_tr, x_te, y_te = digits_arrays
    keep = y_tr < 2
    spec = tmp_path / "two.npz"
    np.savez(spec, x_train=x_tr[keep][:60], y_train=y_tr[keep][:60], x_test=x_te[:20], y_test=y_te[:20] % 2)
    out = tmp_path / "s.pt"
    assert main(["select", "--data", str(spec), "--method", "lcmat", "--ipc", "1", "--k", "5", "--eps", "0",
                 "--selection-epochs", "1", "--quiet", "--out", str(out)]) == 0
    assert ReducedSet.load(str(out)).meta["k"] == 5
    out = tmp_path / "c.pt"
    assert main(["condense", "--data", str(spec), "--method", "lcmat", "--ipc", "1", "--iterations", "2",
                 "--batch-real", "8", "--rho", "0.5", "--pool-size", "1", "--net-epochs", "1", "--quiet",
                 "--out", str(out)]) == 0
    assert ReducedSet.load(str(out)).meta["rho"] == 0.5


@pytest.mark.parametrize("command,flags", [("select", ["--k", "0"]), ("select", ["--eps", "-0.1"]),
                                           ("select", ["--objective", "worst"]),
                                           ("condense", ["--rho", "-1"]),
                                           ("condense", ["--pool-size", "-1"])])
def test_bad_flags_exit_2_with_one_line(tmp_path, capsys, command, flags):
    out = tmp_path / "x.pt"
    code = main([command, "--data", "digits", "--method", "lcmat", "--ipc", "1", *flags, "--quiet",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert flags[0] in err and not out.exists()
