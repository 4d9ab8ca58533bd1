"""Networks: the DM paper's ConvNet family, an MLP and a small ResNet, built by one function.

Every model has `embed(x)` (features before the classifier, used by distribution matching and
herding) and `classifier` (the last linear layer, used by LCMat). `build_model` builds any of
them from a name and named options, like timm/torchvision builders. Each model's options are
declared once, as settings of its options class (`ConvNetOptions`, `MLPOptions`,
`ResNetOptions`): names, defaults, choices and checks, which `build_model`, the YAML's `model:`
section and the NAS search spaces all take from there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .errors import InputError
from .settings import Checked, check, python_name, setting

ACTIVATIONS = ("sigmoid", "relu", "leakyrelu")
NORMS = ("none", "batchnorm", "layernorm", "instancenorm", "groupnorm")
POOLS = ("none", "max", "avg")


@dataclass
class ConvNetOptions(Checked):
    """The DM paper's ConvNet family (its search space in `nas.space`)."""

    depth: int = setting(3, "convolution blocks", low=1)
    width: int = setting(128, "channels of every convolution", low=1)
    act: str = setting("relu", "activation", choices=ACTIVATIONS)
    norm: str = setting("instancenorm", "normalisation after each convolution", choices=NORMS)
    pool: str = setting("avg", "pooling after each block (halves the size while it is above 1x1)", choices=POOLS)


@dataclass
class MLPOptions(Checked):
    """The three-layer perceptron."""

    width: int = setting(128, "units of each hidden layer", low=1)
    act: str = setting("relu", "activation", choices=ACTIVATIONS)


@dataclass
class ResNetOptions(Checked):
    """The small ResNet."""

    width: int = setting(32, "channels of the first stage (doubled by each of the three others)", low=1)
    norm: str = setting("batchnorm", "normalisation after each convolution", choices=NORMS)


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

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int], options: ConvNetOptions):
        super().__init__()
        o = options
        h, w = image_size
        layers: list[nn.Module] = []
        c = channels
        for _ in range(o.depth):
            layers += [nn.Conv2d(c, o.width, 3, padding=1), _norm(o.norm, o.width, h, w), _activation(o.act)]
            c = o.width
            if o.pool != "none" and min(h, w) > 1:
                layers.append(nn.MaxPool2d(2) if o.pool == "max" else nn.AvgPool2d(2))
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.feature_dim = o.width * h * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class MLP(nn.Module):
    """Three-layer perceptron on flattened images (cross-architecture evaluation)."""

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int], options: MLPOptions):
        super().__init__()
        width, act = options.width, options.act
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

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int], options: ResNetOptions):
        super().__init__()
        width, norm = options.width, options.norm
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


MODELS: dict[str, tuple[type, type]] = {"ConvNet": (ConvNet, ConvNetOptions), "MLP": (MLP, MLPOptions),
                                         "ResNet": (ResNet, ResNetOptions)}


def model_name(name: str) -> str:
    """The model's own spelling of `name` (any case: `convnet` -> `ConvNet`); unknown: an input error."""
    key = {model.lower(): model for model in MODELS}.get(str(name).lower())
    if key is None:
        raise InputError(f"unknown model {name!r}: choose from {', '.join(MODELS)}")
    return key


def options_of(name: str) -> type:
    """The options class of model `name` (its declared settings)."""
    return MODELS[model_name(name)][1]


def check_options(name: str, options: dict, spell: Callable[[str], str] = python_name) -> dict:
    """`options` checked against model `name`'s declared options (unknown or bad ones are input
    errors naming the option as `spell(option)`, e.g. `model.width` in a YAML)."""
    return check(options_of(name), options, spell, what=f"model {model_name(name)}")


def build_model(name: str, channels: int, num_classes: int, image_size: tuple[int, int],
                **options) -> nn.Module:
    """Build `ConvNet`, `MLP` or `ResNet` with its named options (its options class's settings;
    those not given take their defaults)."""
    cls, options_cls = MODELS[model_name(name)]
    return cls(channels, num_classes, tuple(image_size), options_cls(**check_options(name, options)))


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
        model = build_model(name, channels, 2, image_size, **{**options, "width": PROBE_WIDTH}).eval()
    flat: list[tuple] = []

    def watch(module, inputs):
        if module.num_groups == module.num_channels and inputs[0].shape[2:].numel() == 1:
            flat.append(tuple(inputs[0].shape[2:]))

    for module in model.modules():
        if isinstance(module, nn.GroupNorm):
            module.register_forward_pre_hook(watch)
    try:
        with torch.no_grad():
            model(torch.zeros(2, channels, *image_size))
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
