import pytest
import torch

from condense_core import InputError, make_method
from condense_core.methods.dm import DM
from condense_core.networks import reinitialize

SMALL = {"model_options": {"width": 16}, "device": "cpu"}


def class_loss(method, net, data, syn_x, syn_y):
    """The method's matching loss summed over classes, all real images of each class."""
    total = 0.0
    for c in range(data.num_classes):
        real, syn = data.x_train[data.y_train == c], syn_x[syn_y == c]
        total = total + method.match_loss([m / len(real) for m in method.moments(net, net.embed(real), c)],
                                          [m / len(syn) for m in method.moments(net, net.embed(syn), c)], None)
    return total


def fixed_net_loss(method, data, syn_x, nets=6):
    """DM's matching loss of a set under a fixed sample of random networks (no augmentation)."""
    g = torch.Generator().manual_seed(123)
    net = method.network(data, torch.device("cpu"), g)
    syn_y = torch.arange(data.num_classes).repeat_interleave(method.ipc)
    total = 0.0
    for _ in range(nets):
        reinitialize(net, g)
        with torch.no_grad():
            total += class_loss(method, net, data, syn_x, syn_y).item()
    return total / nets


class Drawn:
    """A run state (`condense_core.hooks.RunState`): whether the network was drawn yet."""

    def __init__(self):
        self.done = False

    def state_dict(self) -> dict:
        return {"done": self.done}

    def load_state_dict(self, saved: dict) -> None:
        self.done = saved["done"]


class FixedNetDM(DM):
    """DM whose embedding network is drawn once: its loss must then fall steadily."""

    def start(self, data, device):
        return Drawn()  # handed back to every iteration

    def sample_network(self, net, drawn, generator):
        if not drawn.done:
            super().sample_network(net, drawn, generator)
            drawn.done = True


def test_dm_loss_decreases_under_one_network(digits):
    reduced = FixedNetDM(ipc=2, iterations=60, batch_real=64, init="noise", dsa=False, seed=0, **SMALL).condense(digits)
    assert reduced.meta["loss_last"] < 0.6 * reduced.meta["loss_first"]


def test_dm_lowers_loss_under_unseen_random_networks(digits):
    cfg = dict(ipc=2, batch_real=64, lr_img=10.0, init="noise", dsa=False, seed=0, **SMALL)
    dm = make_method("condense", "dm", iterations=100, **cfg)
    reduced = dm.condense(digits)
    init = make_method("condense", "dm", iterations=1, **{**cfg, "lr_img": 1e-9}).condense(digits)
    assert reduced.images.shape == (20, 1, 8, 8) and reduced.labels.tolist() == sorted(reduced.labels.tolist())
    assert fixed_net_loss(dm, digits, reduced.images) < 0.95 * fixed_net_loss(dm, digits, init.images)
    assert reduced.meta["method"] == "dm" and reduced.meta["iterations"] == 100 and reduced.meta["seed"] == 0


def test_dm_is_deterministic_and_seeded(digits):
    a = make_method("condense", "dm", ipc=1, iterations=5, seed=7, **SMALL).condense(digits)
    b = make_method("condense", "dm", ipc=1, iterations=5, seed=7, **SMALL).condense(digits)
    c = make_method("condense", "dm", ipc=1, iterations=5, seed=8, **SMALL).condense(digits)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)


def test_dm_with_batchnorm_and_noise_init(digits):
    dm = make_method("condense", "dm", ipc=1, iterations=3, init="noise", dsa=False,
                     model_options={"width": 8, "norm": "batchnorm"}, device="cpu")
    reduced = dm.condense(digits.subset([1, 4]))
    assert reduced.labels.tolist() == [1, 4] and torch.isfinite(reduced.images).all()


def test_dm_herding_init_starts_from_herdings_picks_and_moves_them(digits):
    cfg = dict(ipc=2, seed=3, **SMALL)
    picks = make_method("select", "herding", **cfg).condense(digits).images
    dm = dict(cfg, init="herding", batch_real=32)
    start = make_method("condense", "dm", iterations=1, lr_img=1e-9, **dm).condense(digits).images
    moved = make_method("condense", "dm", iterations=3, lr_img=30.0, **dm).condense(digits).images
    assert torch.allclose(start, picks, atol=1e-6)
    assert not torch.allclose(moved, picks, atol=1e-3)


@pytest.mark.parametrize("name", ["random", "herding", "kcenter"])
def test_selectors_pick_distinct_real_images(digits, name):
    cfg = {"selection_epochs": 1} if name != "random" else {}
    sel = make_method("select", name, ipc=5, seed=0, **SMALL, **cfg)
    reduced = sel.condense(digits)
    idx = torch.tensor(reduced.meta["indices"])
    assert len(idx) == 50 and len(set(idx.tolist())) == 50
    assert torch.equal(reduced.images, digits.x_train[idx]) and torch.equal(reduced.labels, digits.y_train[idx])
    assert torch.bincount(reduced.labels).tolist() == [5] * 10


def test_herding_mean_is_closer_than_random(digits):
    """Herding's picks match the class mean (in its feature space) better than random picks."""
    h = make_method("select", "herding", ipc=5, selection_epochs=1, **SMALL)
    net = h.trained_network(digits, torch.device("cpu"))
    f = h.features(net.embed, digits.x_train, torch.device("cpu"))
    cls = digits.class_indices()[3]
    picked = cls[h.select_class(f[cls], net, 3)]
    rand = cls[torch.randperm(len(cls), generator=torch.Generator().manual_seed(0))[:5]]
    gap = lambda idx: (f[idx].mean(0) - f[cls].mean(0)).norm()  # noqa: E731
    assert gap(picked) < gap(rand)


@pytest.mark.parametrize("kind, name, cfg, message", [
    ("condense", "dm", {"ipc": 0}, "ipc must be an integer >= 1"),
    ("condense", "dm", {"ipc": 500}, "larger than the smallest class"),
    ("select", "random", {"ipc": 500}, "larger than the smallest class"),
    ("condense", "dm", {"ipc": 1, "iterations": 0}, "iterations"),
    ("condense", "dm", {"ipc": 1, "init": "zeros"}, "init must be one of real, herding, noise"),
    ("condense", "dm", {"ipc": 1, "lr_img": float("nan")}, "lr_img must be a finite number > 0"),
    ("condense", "dm", {"ipc": 1, "momentum": float("inf")}, "momentum"),
    ("condense", "dm", {"ipc": 1, "dsa": 1}, "dsa must be true or false"),
])
def test_bad_settings(digits, kind, name, cfg, message):
    with pytest.raises(InputError, match=message):
        make_method(kind, name, **cfg).condense(digits)


def test_noise_init_may_exceed_class_size(digits):
    reduced = DM(ipc=130, iterations=1, init="noise", **SMALL).condense(digits.subset([0]))
    assert len(reduced) == 130


def test_unknown_method():
    with pytest.raises(InputError, match="unknown condense method 'magic'"):
        make_method("condense", "magic")
    with pytest.raises(InputError, match="unknown setting no_such"):
        make_method("condense", "dm", no_such=1)
