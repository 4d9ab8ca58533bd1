import pytest
import torch

from condense_core import DSA
from condense_core.augment import OPS


@pytest.mark.parametrize("op", OPS)
def test_siamese_draw_is_shared_between_batches(op):
    """The same group gets the same operation and parameters in both batches."""
    dsa = DSA(ops=(op,))
    g = torch.Generator().manual_seed(0)
    real = torch.randn(6, 3, 8, 8)
    syn = real[[0, 3]].clone().requires_grad_(True)          # one image of group 0 and one of group 1
    real_groups = torch.tensor([0, 0, 0, 1, 1, 1])
    syn_groups = torch.tensor([0, 1])
    kinds, u = dsa.draw(2, g)
    a = dsa.apply(real, kinds[real_groups], u[real_groups])
    b = dsa.apply(syn, kinds[syn_groups], u[syn_groups])
    assert torch.allclose(a[[0, 3]], b, atol=1e-6)
    b.sum().backward()                                          # differentiable w.r.t. the images
    assert syn.grad is not None and torch.isfinite(syn.grad).all()


def test_groups_draw_different_parameters():
    dsa = DSA(ops=("color",))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 1, 8, 8).repeat(2, 1, 1, 1)
    kinds, u = dsa.draw(2, g)
    out = dsa.apply(x, kinds, u)
    assert not torch.allclose(out[0], out[1])


def test_independent_mode_is_seeded_and_handles_odd_inputs():
    x = torch.randn(16, 3, 9, 9).transpose(2, 3)                # non-contiguous, odd size
    a = DSA()(x, torch.Generator().manual_seed(5))
    b = DSA()(x, torch.Generator().manual_seed(5))
    c = DSA()(x, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)


def test_unknown_op_rejected():
    with pytest.raises(ValueError):
        DSA(ops=("blur",))


@pytest.mark.parametrize("align_corners", (True, False))
def test_warp_gradient_is_grid_samples(align_corners):
    """The fixed-order image gradient of the warps equals PyTorch's grid_sample gradient, for
    grids that reach outside the image too (zero padding)."""
    import torch.nn.functional as F

    from condense_core.augment import _warp

    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, 9, 11, dtype=torch.float64, generator=g, requires_grad=True)
    theta = torch.eye(2, 3, dtype=torch.float64) + 0.6 * torch.randn(4, 2, 3, dtype=torch.float64, generator=g)
    weights = torch.randn(4, 3, 9, 11, dtype=torch.float64, generator=g)
    ours, = torch.autograd.grad((_warp(x, theta, align_corners) * weights).sum(), x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=align_corners)
    theirs, = torch.autograd.grad((F.grid_sample(x, grid, align_corners=align_corners) * weights).sum(), x)
    assert torch.allclose(ours, theirs, atol=1e-12) and ours.abs().sum() > 0


def test_warp_gradient_indexes_exactly_in_bfloat16():
    """Pixel indices come from integers, not from bf16 arithmetic (1024 = 32 x 32 rounds)."""
    from condense_core.augment import _warp

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 32, 32, generator=g).bfloat16().requires_grad_(True)
    theta = (1.5 * torch.eye(2, 3)).expand(2, 2, 3).bfloat16()  # zoomed out: corners beyond the edges
    grad, = torch.autograd.grad(_warp(x, theta, True).float().sum(), x)
    assert grad.shape == x.shape and torch.isfinite(grad.float()).all() and grad.float().abs().sum() > 0


def test_selected_path_equals_grouped_path_with_gradients():
    """The GPU's fixed-shape augmentation (every op on every sample, no read from the device) gives
    the CPU's grouped result, values and image gradients alike."""
    dsa, g = DSA(), torch.Generator().manual_seed(3)
    x = torch.randn(40, 3, 12, 12, generator=g)
    op, u = dsa.draw(40, g)
    out = []
    for path in (dsa._grouped, dsa._selected):
        leaf = x.clone().requires_grad_(True)
        y = path(leaf, op, u)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        out.append((y.detach(), leaf.grad))
    assert torch.allclose(out[0][0], out[1][0], atol=1e-6) and torch.allclose(out[0][1], out[1][1], atol=1e-6)


def test_vectors_held_as_1x1_images_pass_unchanged_and_draw_as_images_do():
    """Tabular features (D x 1 x 1) have no image augmentation; the draws are made all the same."""
    x = torch.randn(12, 6, 1, 1)
    g, h = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(DSA()(x, g), x)
    DSA()(torch.randn(12, 1, 8, 8), h)
    assert torch.equal(g.get_state(), h.get_state())
