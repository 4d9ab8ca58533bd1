"""`SyntheticSet`: a condensed or selected set, with everything needed to use it later.

One `.pt` file holds the images (normalised space), labels, class names, the normalisation and
the metadata of the run that made it. `save` writes to a temporary name and renames, so a crash
never leaves a half-written file; `load` checks keys and shapes and raises `InputError` otherwise.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Callable

import torch

from .errors import InputError

KEYS = ("images", "labels", "classes", "mean", "std", "meta")
FORMAT = "dcapps.SyntheticSet/1"


@dataclass
class SyntheticSet:
    """images: float32 N x C x H x W (normalised); labels: int64 indices into `classes`."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list
    mean: torch.Tensor
    std: torch.Tensor
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.images = self.images.detach().float().cpu().contiguous()
        self.labels = torch.as_tensor(self.labels).long().cpu()
        self.mean = torch.as_tensor(self.mean).float().cpu()
        self.std = torch.as_tensor(self.std).float().cpu()

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def ipc(self) -> int:
        """Images per class (the largest count of any class)."""
        return int(torch.bincount(self.labels).max()) if len(self.labels) else 0

    def for_data(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) ready to train with on `data`: same classes and image shape checked,
        images re-expressed in `data`'s normalisation (a no-op when made from the same data)."""
        shape = list(self.images.shape[1:])
        want = [data.channels, *data.image_size]
        if shape != want:
            raise InputError(f"the set's images are {'x'.join(map(str, shape))} (C x H x W) "
                             f"but {data.spec} has {'x'.join(map(str, want))}")
        if [str(c) for c in self.classes] != [str(c) for c in data.classes]:
            raise InputError(f"the set's classes {_short(self.classes)} do not match "
                             f"{data.spec}'s classes {_short(data.classes)}")
        raw = self.images * self.std[None, :, None, None] + self.mean[None, :, None, None]
        x = (raw - data.mean[None, :, None, None]) / data.std[None, :, None, None]
        return x, self.labels.clone()

    def save(self, path: str) -> str:
        """Write atomically (temporary file in the same folder, then rename)."""
        payload = {"format": FORMAT, "images": self.images, "labels": self.labels,
                   "classes": list(self.classes), "mean": self.mean, "std": self.std,
                   "meta": dict(self.meta)}
        atomic_save(payload, path)
        return path

    @classmethod
    def load(cls, path: str) -> "SyntheticSet":
        if not os.path.isfile(path):
            raise InputError(f"file not found: {path}")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise InputError(f"{path}: not a readable .pt file ({type(e).__name__})") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise InputError(f"{path}: not a dcapps SyntheticSet file")
        missing = [k for k in KEYS if k not in obj]
        if missing:
            raise InputError(f"{path}: SyntheticSet is missing {', '.join(missing)}")
        images, labels = obj["images"], obj["labels"]
        if not (torch.is_tensor(images) and images.dim() == 4):
            raise InputError(f"{path}: images must be an N x C x H x W tensor")
        if not (torch.is_tensor(labels) and labels.dim() == 1 and len(labels) == len(images)):
            raise InputError(f"{path}: labels must be a vector with one label per image")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(obj["classes"])):
            raise InputError(f"{path}: labels out of range of the {len(obj['classes'])} classes")
        c = images.shape[1]
        if obj["mean"].numel() != c or obj["std"].numel() != c:
            raise InputError(f"{path}: mean/std do not have one value per channel ({c})")
        return cls(images, labels, list(obj["classes"]), obj["mean"], obj["std"], dict(obj["meta"]))

    def save_grid(self, path: str) -> str:
        """A picture of the images, one row per class, de-normalised to [0, 1]."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = (self.images * self.std[None, :, None, None] + self.mean[None, :, None, None]).clamp(0, 1)
        labels = sorted(set(self.labels.tolist()))
        cols = max(1, self.ipc)
        fig, axes = plt.subplots(len(labels), cols, figsize=(cols * 0.8 + 0.8, len(labels) * 0.8 + 0.2),
                                 squeeze=False)
        for r, c in enumerate(labels):
            imgs = x[self.labels == c]
            for j in range(cols):
                ax = axes[r][j]
                ax.axis("off")
                if j < len(imgs):
                    im = imgs[j].permute(1, 2, 0).numpy()
                    ax.imshow(im[:, :, 0] if im.shape[2] == 1 else im, cmap="gray", vmin=0, vmax=1)
            axes[r][0].set_title(str(self.classes[c]), fontsize=7, loc="left")
        fig.tight_layout()
        try:
            return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
        finally:
            plt.close(fig)


def _short(items: list, n: int = 6) -> str:
    return "[" + ", ".join(map(str, items[:n])) + (", ..." if len(items) > n else "") + "]"


def atomic_write(path: str, write: Callable[[str], None]) -> str:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path`.

    The one way every file of the project is written: a crash or bad input never leaves a
    half-written or truncated file at `path`.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_save(obj, path: str) -> str:
    """torch.save atomically."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(text: str, path: str) -> str:
    """Write a text file atomically."""
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    return atomic_write(path, write)
