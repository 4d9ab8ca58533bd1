"""Networks: the DM paper's ConvNet family, an MLP and a small ResNet, built by one function.

Every model has `embed(x)` (features before the classifier, used by distribution matching and
herding) and `classifier` (the last linear layer, used by LCMat). `build_model` builds any of
them from a name and named options, like timm/torchvision builders.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .errors import InputError

ACTIVATIONS = ("sigmoid", "relu", "leakyrelu")
NORMS = ("none", "batchnorm", "layernorm", "instancenorm", "groupnorm")
POOLS = ("none", "max", "avg")
MODELS = ("ConvNet", "MLP", "ResNet")


def _activation(name: str) -> nn.Module:
    return {"sigmoid": nn.Sigmoid, "relu": lambda: nn.ReLU(inplace=True),
            "leakyrelu": lambda: nn.LeakyReLU(0.01, inplace=True)}[name]()


def _norm(name: str, c: int, h: int, w: int) -> nn.Module:
    if name == "batchnorm":
        return nn.BatchNorm2d(c)
    if name == "layernorm":
        return nn.LayerNorm([c, h, w])
    if name == "instancenorm":
        return nn.GroupNorm(c, c, affine=True)
    if name == "groupnorm":
        return nn.GroupNorm(math.gcd(4, c), c, affine=True)
    return nn.Identity()


class ConvNet(nn.Module):
    """depth x [conv3x3(width) - norm - act - pool2x2] then a linear classifier.

    Pooling halves the size only while it is above 1x1, so any input from 8x8 up builds.
    """

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int],
                 width: int = 128, depth: int = 3, act: str = "relu", norm: str = "instancenorm",
                 pool: str = "avg"):
        super().__init__()
        _check("act", act, ACTIVATIONS)
        _check("norm", norm, NORMS)
        _check("pool", pool, POOLS)
        if depth < 1 or width < 1:
            raise InputError(f"ConvNet needs depth >= 1 and width >= 1, got depth={depth} width={width}")
        h, w = image_size
        layers: list[nn.Module] = []
        c = channels
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), _norm(norm, width, h, w), _activation(act)]
            c = width
            if pool != "none" and min(h, w) > 1:
                layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.feature_dim = width * h * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class MLP(nn.Module):
    """Three-layer perceptron on flattened images (cross-architecture evaluation)."""

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int],
                 width: int = 128, act: str = "relu"):
        super().__init__()
        _check("act", act, ACTIVATIONS)
        d = channels * image_size[0] * image_size[1]
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(d, width), _activation(act),
                                      nn.Linear(width, width), _activation(act))
        self.feature_dim = width
        self.classifier = nn.Linear(width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str, size: tuple[int, int]):
        super().__init__()
        h, w = (size[0] + stride - 1) // stride, (size[1] + stride - 1) // stride
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = _norm(norm, cout, h, w)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = _norm(norm, cout, h, w)
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(norm, cout, h, w))
        self.out_size = (h, w)

    def forward(self, x):
        y = torch.relu(self.n1(self.conv1(x)))
        return torch.relu(self.n2(self.conv2(y)) + self.short(x))


class ResNet(nn.Module):
    """A small ResNet (one basic block per stage, 4 stages) for cross-architecture evaluation."""

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int],
                 width: int = 32, norm: str = "batchnorm"):
        super().__init__()
        _check("norm", norm, NORMS)
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1, bias=False),
                                  _norm(norm, width, *image_size), nn.ReLU(inplace=True))
        blocks, size, c = [], tuple(image_size), width
        for i, mult in enumerate((1, 2, 4, 8)):
            stride = 1 if i == 0 or min(size) <= 1 else 2
            blocks.append(_Block(c, width * mult, stride, norm, size))
            size, c = blocks[-1].out_size, width * mult
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = c
        self.classifier = nn.Linear(c, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def _check(key: str, value: str, allowed) -> None:
    if value not in allowed:
        raise InputError(f"unknown {key} {value!r}: choose from {', '.join(allowed)}")


def build_model(name: str, channels: int, num_classes: int, image_size: tuple[int, int],
                **options) -> nn.Module:
    """Build `ConvNet`, `MLP` or `ResNet` with named options (width, depth, act, norm, pool)."""
    key = {m.lower(): m for m in MODELS}.get(str(name).lower())
    if key is None:
        raise InputError(f"unknown model {name!r}: choose from {', '.join(MODELS)}")
    cls = {"ConvNet": ConvNet, "MLP": MLP, "ResNet": ResNet}[key]
    for option in ("width", "depth"):
        value = options.get(option, 1)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"bad option for {key}: {option} must be an integer, got {value!r}")
    try:
        return cls(channels, num_classes, tuple(image_size), **options)
    except TypeError as e:
        raise InputError(f"bad option for {key}: {e}") from None


LARGEST_SIDE_TRIED = 256  # the smallest fitting size named in a refusal is searched up to this
PROBE_WIDTH = 8


def check_fits(name: str, channels: int, image_size: tuple[int, int], source: str = "the data",
               **options) -> None:
    """Refuse, before any work, images the network cannot look at: a ConvNet pools its maps down
    to 1x1 on small images, and an instance norm over a 1x1 map has one value per channel
    (undefined while training on one image, a constant output otherwise). The refusal names the
    smallest square image size that fits."""
    problem = _misfit(name, channels, tuple(image_size), options)
    if problem is None:
        return
    fits = next((s for s in range(1, LARGEST_SIDE_TRIED + 1)
                 if _misfit(name, channels, (s, s), options) is None), None)
    size = "x".join(map(str, image_size))
    hint = (f"; it needs images of at least {fits}x{fits} (or a smaller depth, another norm or pool)"
            if fits else "")
    raise InputError(f"{source}: {size} images are too small for {name}: {problem}{hint}")


def _misfit(name: str, channels: int, image_size: tuple[int, int], options: dict) -> str | None:
    """Why `name` cannot process `image_size` images, or None when it can: two images through the
    network, narrowed to width 8 (the sizes of its maps do not depend on the width, and at 8 an
    instance norm is still the only norm with a group per channel)."""
    if min(image_size) < 1:
        return "the images are empty"
    with torch.random.fork_rng(devices=[]):  # the probe's initial weights leave the global RNG as it was
        net = build_model(name, channels, 2, image_size, **{**options, "width": PROBE_WIDTH}).eval()
    flat: list[tuple] = []

    def watch(module, inputs):
        if module.num_groups == module.num_channels and inputs[0].shape[2:].numel() == 1:
            flat.append(tuple(inputs[0].shape[2:]))

    for m in net.modules():
        if isinstance(m, nn.GroupNorm):
            m.register_forward_pre_hook(watch)
    try:
        with torch.no_grad():
            net(torch.zeros(2, channels, *image_size))
    except (RuntimeError, ValueError) as e:
        return str(e).splitlines()[0]
    return "its instance norm would normalise 1x1 maps" if flat else None


def has_batch_stats(model: nn.Module) -> bool:
    """True if the output of one sample depends on the rest of its batch (batch norm)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def reinitialize(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draw every weight as PyTorch's default init would, but from `generator` (reproducible).

    Used to get a fresh random network each iteration without touching the global RNG. The
    draws do not depend on the weights' memory format (channels-last gets the same network), and
    are made on the generator's device (a CUDA generator can initialise a network still on the CPU).
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            _draw(m.weight, generator, lambda w: nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator))
            if m.bias is not None:
                fan_in = m.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                _draw(m.bias, generator, lambda b: nn.init.uniform_(b, -bound, bound, generator=generator))
        elif isinstance(m, (nn.GroupNorm, nn.LayerNorm, nn.modules.batchnorm._BatchNorm)):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
    return model


@torch.no_grad()
def _draw(param: torch.Tensor, generator: torch.Generator, init) -> None:
    """Fill `param` by `init` drawn on `generator`'s device in logical (contiguous) order, whatever
    the parameter's memory layout and device."""
    fresh = torch.empty(param.shape, dtype=param.dtype, device=generator.device)
    init(fresh)
    param.copy_(fresh)
