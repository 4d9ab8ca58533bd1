import itertools

import pytest
import torch

from condense_core import InputError, build_model
from condense_core.networks import ACTIVATIONS, NORMS, POOLS, has_batch_stats, reinitialize


@pytest.mark.parametrize("act, norm, pool", list(itertools.product(ACTIVATIONS, NORMS, POOLS)))
def test_every_convnet_configuration_runs(act, norm, pool):
    for depth, size in ((1, (8, 8)), (4, (8, 8)), (3, (28, 28))):
        net = build_model("ConvNet", 1, 10, size, width=8, depth=depth, act=act, norm=norm, pool=pool)
        x = torch.randn(3, 1, *size)
        e = net.embed(x)
        assert e.shape == (3, net.feature_dim) and net(x).shape == (3, 10)
        assert torch.isfinite(e).all()


@pytest.mark.parametrize("name", ["MLP", "ResNet", "convnet"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_other_models(name, shape):
    net = build_model(name, shape[0], 5, shape[1:])
    x = torch.randn(2, *shape)
    assert net(x).shape == (2, 5) and net.embed(x).shape == (2, net.feature_dim)


def test_default_convnet_is_the_papers():
    net = build_model("ConvNet", 3, 10, (32, 32))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 and all(c.out_channels == 128 for c in convs)
    assert any(isinstance(m, torch.nn.GroupNorm) and m.num_groups == 128 for m in net.modules())
    assert any(isinstance(m, torch.nn.AvgPool2d) for m in net.modules())
    assert net.feature_dim == 128 * 4 * 4


def test_bad_options():
    with pytest.raises(InputError, match="unknown model"):
        build_model("VGG", 1, 10, (8, 8))
    with pytest.raises(InputError, match="norm must be one of none, batchnorm"):
        build_model("ConvNet", 1, 10, (8, 8), norm="weird")
    with pytest.raises(InputError, match="unknown setting colour of model ConvNet"):
        build_model("ConvNet", 1, 10, (8, 8), colour="red")
    with pytest.raises(InputError, match="width must be an integer >= 1, got 2.0"):
        build_model("MLP", 1, 10, (8, 8), width=2.0)


def test_reinitialize_is_seeded():
    a = build_model("ConvNet", 1, 10, (8, 8), width=8, norm="batchnorm")
    b = build_model("ConvNet", 1, 10, (8, 8), width=8, norm="batchnorm")
    reinitialize(a, torch.Generator().manual_seed(3))
    reinitialize(b, torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert has_batch_stats(a) and not has_batch_stats(build_model("ConvNet", 1, 10, (8, 8)))
