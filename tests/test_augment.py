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
