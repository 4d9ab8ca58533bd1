"""Class-incremental Avalanche benchmarks from any data spec.

The classes are shuffled once per seed (from the seed, never the clock) and cut into
`experiences` groups; optionally the first group holds `first_experience_classes` classes (e.g.
half of them) and the rest are shared out as evenly as possible. Labels keep their data-set
indices, so every experience's model sees one shared 0..K-1 output space (class-incremental,
no task labels).
"""
from __future__ import annotations

import torch

from condense_core import ImageData, InputError, load_data
from condense_core.runtime import make_generator


def class_order(num_classes: int, seed: int) -> list[int]:
    """The order in which classes arrive for `seed` (the same for every strategy)."""
    return torch.randperm(num_classes, generator=make_generator(seed, "cpu", "class_order")).tolist()


def experience_sizes(num_classes: int, experiences: int, first_experience_classes: int | None = None) -> list[int]:
    """Classes per experience: `first_experience_classes` in the first one if given, the rest
    spread evenly (earlier experiences take one more when they do not divide). A split that
    leaves an experience without a class is an input error naming the config's keys."""
    if first_experience_classes is None and experiences > num_classes:
        raise InputError(f"experiences is {experiences} but the data has only {num_classes} classes")
    if first_experience_classes is not None:
        if experiences < 2:
            raise InputError("first_experience_classes needs experiences >= 2")
        if first_experience_classes >= num_classes or num_classes - first_experience_classes < experiences - 1:
            raise InputError(f"first_experience_classes {first_experience_classes} leaves "
                             f"{num_classes - first_experience_classes} classes for the other {experiences - 1} "
                             "experiences")
    head = [first_experience_classes] if first_experience_classes is not None else []
    rest, n = num_classes - sum(head), experiences - len(head)
    return head + [rest // n + (1 if i < rest % n else 0) for i in range(n)]


def _tensor_dataset(x: torch.Tensor, y: torch.Tensor):
    """A TensorDataset carrying `targets`, which Avalanche reads to split by class."""
    from torch.utils.data import TensorDataset

    ds = TensorDataset(x, y)
    ds.targets = y.tolist()
    return ds


def make_benchmark(data: ImageData, experiences: int, seed: int, first_experience_classes: int | None = None):
    """An Avalanche class-incremental benchmark (train and test streams) over `data`."""
    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark

    k = data.num_classes
    sizes = experience_sizes(k, experiences, first_experience_classes)
    return nc_benchmark(_tensor_dataset(data.x_train, data.y_train), _tensor_dataset(data.x_test, data.y_test),
                        n_experiences=experiences, task_labels=False, fixed_class_order=class_order(k, seed),
                        per_exp_classes=dict(enumerate(sizes)))


def build_benchmark(spec: str, experiences: int, seed: int, first_experience_classes: int | None = None,
                    root: str | None = None, download: bool = False):
    """Load a data spec (digits, torchvision name, PATH.npz, ImageFolder DIR) and split it."""
    return make_benchmark(load_data(spec, root, download), experiences, seed, first_experience_classes)
