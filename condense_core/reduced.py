"""`ReducedSet`: a condensed or selected set, with everything needed to use it later.

One `.pt` file holds the images (normalised space), labels, class names, the normalisation, the
metadata of the run that made it and, optionally, soft targets (`SoftTargets`: per training image
logits, the temperature they are softened at and their source, a teacher network or the
learner); files without targets stay valid, and older readers ignore them. `save` writes to a temporary name and renames, so a crash
never leaves a half-written file; `load` checks every field (type, shape, finite values, labels
in range, a positive std) and raises `InputError` naming the file otherwise, and `for_data`
refuses a set with nothing to train on: a bad set never becomes a reported result.
"""
from __future__ import annotations

import math
import os
import stat
import tempfile
from dataclasses import dataclass, field
from typing import Callable

import torch

from .errors import InputError
from .formation import decode, decoded_labels

KEYS = ("images", "labels", "classes", "mean", "std", "meta")
FORMAT = "dcapps.SyntheticSet/1"  # the on-disk format's name, kept from before the glossary (old files read)
SOURCES = ("teacher", "learner")  # where soft targets come from


@dataclass
class SoftTargets:
    """What a model knows about a set's images: one row of logits per training image (the
    stored images decoded, in `ReducedSet.training_images` order), over the set's classes (or a
    learner's outputs), meant to be softened at `temperature`; `source` is the network that gave
    them: a `teacher` trained on the real data, or the continual `learner`."""

    logits: torch.Tensor
    temperature: float = 1.0
    source: str = "teacher"

    def __post_init__(self):
        self.logits = self.logits.detach().float().cpu().contiguous()

    @property
    def nbytes(self) -> int:
        return self.logits.numel() * self.logits.element_size()

    def rows(self, mask: torch.Tensor) -> "SoftTargets":
        """The targets of the training images selected by `mask` (boolean, or indices)."""
        return SoftTargets(self.logits[mask], self.temperature, self.source)


@dataclass
class ReducedSet:
    """images: float32 N x C x H x W (normalised); labels: int64 indices into `classes`;
    `targets`: optional soft targets of the training images."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list
    mean: torch.Tensor
    std: torch.Tensor
    meta: dict = field(default_factory=dict)
    source: str = field(default="", compare=False, repr=False)  # the file it was loaded from, for errors
    targets: SoftTargets | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        self.images = self.images.detach().float().cpu().contiguous()
        self.labels = torch.as_tensor(self.labels).long().cpu()
        self.mean = torch.as_tensor(self.mean).float().cpu()
        self.std = torch.as_tensor(self.std).float().cpu()
        if self.targets is not None and len(self.targets.logits) != len(self) * self.factor ** 2:
            raise ValueError(f"soft targets need one row per training image ({len(self) * self.factor ** 2}), "
                             f"got {len(self.targets.logits)}")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        """One line: what the set holds and what made it (its tensors are never printed)."""
        shape = "x".join(map(str, self.images.shape[1:]))
        made = ", ".join(f"{k} {self.meta[k]}" for k in ("method", "data", "seed") if k in self.meta)
        factor = f", factor {self.factor}" if self.factor > 1 else ""
        return (f"ReducedSet({len(self)} images of {shape}, {len(self.classes)} classes, ipc {self.ipc}{factor}"
                + (f"; {made}" if made else "") + (f"; from {self.source}" if self.source else "") + ")")

    @property
    def nbytes(self) -> int:
        """Bytes the set stores: its images, plus its soft targets' logits where it has them."""
        return self.images.numel() * self.images.element_size() + (self.targets.nbytes if self.targets else 0)

    def with_targets(self, targets: SoftTargets | None) -> "ReducedSet":
        """The same set with `targets` (None: without soft targets)."""
        return ReducedSet(self.images, self.labels, self.classes, self.mean, self.std, self.meta, self.source,
                          targets)

    def keep(self, mask: torch.Tensor) -> "ReducedSet":
        """The stored images selected by boolean `mask`, with their training images' targets."""
        targets = self.targets.rows(mask.repeat_interleave(self.factor ** 2)) if self.targets else None
        return ReducedSet(self.images[mask], self.labels[mask], self.classes, self.mean, self.std, self.meta,
                          self.source, targets)

    @property
    def ipc(self) -> int:
        """Images per class (the largest count of any class)."""
        return int(torch.bincount(self.labels).max()) if len(self.labels) else 0

    def for_data(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) ready to train with on `data`: same classes and image shape checked,
        images re-expressed in `data`'s normalisation (a no-op when made from the same data). An
        empty set is refused: training on nothing is never reported as the set's result."""
        name = self.source or "the set"
        if len(self) == 0:
            raise InputError(f"{name} holds no images: there is nothing to train on")
        shape = list(self.images.shape[1:])
        want = [data.channels, *data.image_size]
        if shape != want:
            raise InputError(f"{name}: its images are {'x'.join(map(str, shape))} (C x H x W) "
                             f"but {data.spec} has {'x'.join(map(str, want))}")
        if [str(c) for c in self.classes] != [str(c) for c in data.classes]:
            raise InputError(f"{name}: its classes {_short(self.classes)} do not match "
                             f"{data.spec}'s classes {_short(data.classes)}")
        images, labels = self.training_images()
        raw = images * self.std[None, :, None, None] + self.mean[None, :, None, None]
        x = (raw - data.mean[None, :, None, None]) / data.std[None, :, None, None]
        return x, labels

    @property
    def factor(self) -> int:
        """Multi-formation factor of the stored images (`formation`; 1 for plain images)."""
        return int(self.meta.get("factor", 1)) if isinstance(self.meta, dict) else 1

    def training_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The images to train on and their labels, in the set's own normalisation: the stored
        images decoded (`formation.decode`), so every consumer trains on the same thing."""
        return decode(self.images, self.factor), decoded_labels(self.labels, self.factor)

    def save(self, path: str) -> str:
        """Write atomically (temporary file in the same folder, then rename)."""
        payload = {"format": FORMAT, "images": self.images, "labels": self.labels,
                   "classes": list(self.classes), "mean": self.mean, "std": self.std,
                   "meta": dict(self.meta)}
        if self.targets is not None:
            payload["targets"] = {"logits": self.targets.logits, "temperature": float(self.targets.temperature),
                                  "source": self.targets.source}
        atomic_save(payload, path)
        return path

    @classmethod
    def load(cls, path: str) -> "ReducedSet":
        """The set saved at `path`; anything but a well-formed set is an `InputError` naming the
        file and the field (a hand-made or damaged file never reaches training)."""
        if os.path.isdir(path):
            raise InputError(f"{path} is a directory, not a ReducedSet file")
        if not os.path.isfile(path):
            raise InputError(f"file not found: {path}")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise InputError(f"{path}: not a readable .pt file ({type(e).__name__})") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise InputError(f"{path}: not a dcapps ReducedSet file")
        missing = [k for k in KEYS if k not in obj]
        if missing:
            raise InputError(f"{path}: ReducedSet is missing {', '.join(missing)}")
        images, labels, classes = obj["images"], obj["labels"], obj["classes"]
        if not (torch.is_tensor(images) and images.dim() == 4 and images.is_floating_point()):
            raise InputError(f"{path}: images must be a float N x C x H x W tensor")
        if min(images.shape[1:]) < 1:
            raise InputError(f"{path}: images of shape {tuple(images.shape[1:])} are empty")
        if not torch.isfinite(images).all():
            raise InputError(f"{path}: images hold NaN or infinite values")
        if not (torch.is_tensor(labels) and labels.dim() == 1 and len(labels) == len(images)):
            raise InputError(f"{path}: labels must be a vector with one label per image")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise InputError(f"{path}: labels must be integers, got {str(labels.dtype).removeprefix('torch.')}")
        if not (isinstance(classes, (list, tuple)) and classes
                and all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes)):
            raise InputError(f"{path}: classes must be a non-empty list of names or numbers")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise InputError(f"{path}: labels out of range of the {len(classes)} classes")
        c = images.shape[1]
        mean, std = (_channel_vector(obj[k], c, k, path) for k in ("mean", "std"))
        if not (std > 0).all():
            raise InputError(f"{path}: std must be > 0 for every channel, got {std.tolist()}")
        if not isinstance(obj["meta"], dict):
            raise InputError(f"{path}: meta must be a mapping, got {type(obj['meta']).__name__}")
        factor = obj["meta"].get("factor", 1)
        if isinstance(factor, bool) or not isinstance(factor, int) or not 1 <= factor <= min(images.shape[2:]):
            raise InputError(f"{path}: meta factor (multi-formation) must be an integer from 1 to "
                             f"{min(images.shape[2:])}, got {factor!r}")
        targets = _targets(obj.get("targets"), len(labels) * factor ** 2, path)
        return cls(images, labels.long(), list(classes), mean, std, dict(obj["meta"]), source=path, targets=targets)

    def save_grid(self, path: str) -> str:
        """A picture of the images, one row per class, de-normalised to [0, 1]; below them, the
        condensation loss against the iteration when the set records its curve (`loss_curve`)."""
        plt = pyplot()

        x = (self.images * self.std[None, :, None, None] + self.mean[None, :, None, None]).clamp(0, 1)
        labels = sorted(set(self.labels.tolist()))
        cols = max(1, self.ipc)
        curve = self.meta.get("loss_curve") if isinstance(self.meta, dict) else None
        curve_rows = 3 if curve else 0  # the loss panel is as tall as three rows of images
        fig = plt.figure(figsize=(max(cols * 0.8 + 0.8, 4.0 if curve else 0.0),
                                  (len(labels) + curve_rows) * 0.8 + 0.2))
        grid = fig.add_gridspec(len(labels) + curve_rows, cols)
        for r, c in enumerate(labels):
            imgs = x[self.labels == c]
            for j in range(cols):
                ax = fig.add_subplot(grid[r, j])
                ax.axis("off")
                if j < len(imgs):
                    im = imgs[j].permute(1, 2, 0).numpy()
                    ax.imshow(im[:, :, 0] if im.shape[2] == 1 else im, cmap="gray", vmin=0, vmax=1)
                if j == 0:
                    ax.set_title(str(self.classes[c]), fontsize=7, loc="left")
        if curve:
            ax = fig.add_subplot(grid[len(labels) + 1:, :])
            ax.plot([p[0] for p in curve], [p[1] for p in curve], lw=1)
            ax.set_xlabel("iteration", fontsize=7)
            ax.set_ylabel("loss", fontsize=7)
            ax.tick_params(labelsize=6)
        fig.tight_layout()
        return save_png(fig, path)


def _targets(value, rows: int, path: str) -> SoftTargets | None:
    """A file's soft targets, checked: logits a finite float matrix of one row per training image,
    a temperature > 0, a known source (None where the file has none)."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"logits", "temperature", "source"}:
        raise InputError(f"{path}: targets must be a mapping of logits, temperature and source")
    logits, temperature, source = value["logits"], value["temperature"], value["source"]
    if not (torch.is_tensor(logits) and logits.dim() == 2 and logits.is_floating_point()
            and len(logits) == rows and logits.shape[1] >= 1):
        raise InputError(f"{path}: targets' logits must be a float matrix with one row per training image ({rows})")
    if not torch.isfinite(logits).all():
        raise InputError(f"{path}: targets' logits hold NaN or infinite values")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            math.isfinite(temperature) and temperature > 0):
        raise InputError(f"{path}: targets' temperature must be a finite number > 0, got {temperature!r}")
    if source not in SOURCES:
        raise InputError(f"{path}: targets' source must be one of {', '.join(SOURCES)}, got {source!r}")
    return SoftTargets(logits, float(temperature), source)


def _channel_vector(value, channels: int, key: str, path: str) -> torch.Tensor:
    """`value` (a tensor or a list of numbers) as a finite float vector of one entry per channel."""
    ok = torch.is_tensor(value) or (isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
    t = torch.as_tensor(value) if ok else None
    if t is None or t.dim() != 1 or t.numel() != channels or t.dtype == torch.bool or t.is_complex():
        raise InputError(f"{path}: {key} must be a vector of {channels} numbers (one per channel)")
    t = t.float()
    if not torch.isfinite(t).all():
        raise InputError(f"{path}: {key} holds NaN or infinite values")
    return t


def _short(items: list, n: int = 6) -> str:
    return "[" + ", ".join(map(str, items[:n])) + (", ..." if len(items) > n else "") + "]"


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported when a picture is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str, dpi: int = 100) -> str:
    """Write the matplotlib figure `fig` to `path` as a PNG (atomically), then close it."""
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    finally:
        pyplot().close(fig)


def atomic_write(path: str, write: Callable[[str], None]) -> str:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path`.

    The one way every file of the project is written: a crash or bad input never leaves a
    half-written or truncated file at `path`. The file gets the mode of the file it replaces, or
    a new file's mode under the umask (as any other tool's), not the temporary file's 0600.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        os.chmod(tmp, _mode_for(path))
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _mode_for(path: str) -> int:
    """The permission bits a file written at `path` gets: those of the file there, else 0666
    less the process's umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)  # reading the umask means setting it: put it straight back
        os.umask(umask)
        return 0o666 & ~umask


def atomic_save(obj, path: str) -> str:
    """torch.save atomically."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(text: str, path: str) -> str:
    """Write a text file atomically."""
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    return atomic_write(path, write)
