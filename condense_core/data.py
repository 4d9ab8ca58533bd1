"""Real image data behind every data spec (`digits`, torchvision names, `.npz`, ImageFolder).

Everything is loaded into one `ImageData`: float32 images N x C x H x W already normalised with
the training split's per-channel mean and std, integer labels 0..K-1 indexing `classes`, and the
normalisation kept alongside so synthetic sets made from it stay in the same space. An ImageFolder
too large for memory is the exception: its images stay on disk (`LazyImages`) and are read and
normalised per batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .errors import InputError
from .settings import python_name

TORCHVISION_SETS = ("mnist", "fashionmnist", "cifar10", "cifar100", "svhn")
DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0
STREAM_BATCH = 256  # images read at once when streaming
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class ImageData:
    """A labelled image data set in normalised space, with its test split (possibly empty)."""

    x_train: torch.Tensor  # or LazyImages (a streamed ImageFolder)
    y_train: torch.Tensor
    x_test: torch.Tensor  # or LazyImages
    y_test: torch.Tensor
    classes: list
    mean: torch.Tensor
    std: torch.Tensor
    spec: str = "tensors"
    _index: dict = field(default=None, repr=False)

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.x_train.shape[2]), int(self.x_train.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_indices(self) -> dict[int, torch.Tensor]:
        """Training indices of each label present, keyed by label (computed once)."""
        if self._index is None:
            self._index = {int(c): torch.nonzero(self.y_train == c).flatten()
                           for c in torch.unique(self.y_train).tolist()}
        return self._index

    def present_labels(self) -> list[int]:
        return sorted(self.class_indices())

    def smallest_class(self) -> int:
        return min(len(v) for v in self.class_indices().values())

    def check_test_split(self) -> None:
        """Refuse, before any training, to evaluate on data without a test split."""
        if len(self.y_test) == 0:
            raise InputError(f"{self.spec} has no test images (an empty test split): nothing to evaluate on")

    def subset(self, labels: Sequence[int]) -> "ImageData":
        """The training images of the given labels only (test split kept whole)."""
        keep = torch.isin(self.y_train, torch.as_tensor(list(labels), dtype=self.y_train.dtype))
        return ImageData(self.x_train[keep], self.y_train[keep], self.x_test, self.y_test,
                         self.classes, self.mean, self.std, self.spec)

    @classmethod
    def from_tensors(cls, x: torch.Tensor, y: torch.Tensor, classes: Sequence | None = None,
                     mean: torch.Tensor | None = None, std: torch.Tensor | None = None,
                     spec: str = "tensors") -> "ImageData":
        """Wrap already-normalised training tensors (e.g. one Avalanche experience)."""
        x = x.float()
        y = torch.as_tensor(y).long()
        c = x.shape[1]
        if classes is None:
            classes = list(range(int(y.max()) + 1)) if len(y) else []
        return cls(x, y, x[:0], y[:0], list(classes),
                   torch.zeros(c) if mean is None else torch.as_tensor(mean).float(),
                   torch.ones(c) if std is None else torch.as_tensor(std).float(), spec)


def load_data(spec: str, root: str | None = None, download: bool = False, stream: bool = False,
              spell: Callable[[str], str] = python_name) -> ImageData:
    """Load a data spec into an `ImageData` (never downloads unless asked): `digits` (bundled),
    `mnist`, `fashionmnist`, `cifar10`, `cifar100`, `svhn` (torchvision, under `root`), a
    `PATH.npz` (`x_train`, `y_train`, `x_test`, `y_test`) or an ImageFolder `DIR/`
    (`DIR/train/<class>/*`, `DIR/test/<class>/*`); docs/condense.md describes each. Errors name
    `root` and `download` as `spell` does (`--root`).

    An ImageFolder is streamed (`LazyImages`: read from disk per batch, never loaded whole) when
    `stream` is set or when its decoded images would not fit in half the available memory."""
    if spec == "digits":
        x_tr, y_tr, x_te, y_te = _digits()
    elif spec.lower() in TORCHVISION_SETS:
        x_tr, y_tr, x_te, y_te = _torchvision(spec.lower(), root or "data", download, spell)
    elif spec.endswith(".npz"):
        x_tr, y_tr, x_te, y_te = _npz(spec)
    elif os.path.isdir(spec):
        listing = _image_files(spec)
        if stream or _too_big_for_memory(listing[0]):
            return _streamed_image_folder(spec, listing)
        x_tr, y_tr, x_te, y_te, names = _image_folder(listing)
        return _assemble(spec, x_tr, y_tr, x_te, y_te, names)
    elif os.path.exists(spec):
        raise InputError(f"unsupported data file {spec!r}: expected an .npz file or an ImageFolder directory")
    elif os.sep in spec or spec.startswith((".", "~")):  # meant as a path
        raise InputError(f"data not found: {spec} (no such file or folder)")
    else:
        raise InputError(f"unknown data spec {spec!r}: use digits, {', '.join(TORCHVISION_SETS)}, "
                         "a PATH.npz file or an ImageFolder directory")
    return _assemble(spec, x_tr, y_tr, x_te, y_te)


def _assemble(spec, x_tr, y_tr, x_te, y_te, names: Sequence[str] | None = None) -> ImageData:
    """Check shapes, map labels to 0..K-1, scale to [0, 1], normalise with train statistics."""
    x_tr, x_te = _to_nchw(x_tr, f"{spec}: x_train"), _to_nchw(x_te, f"{spec}: x_test")
    y_tr, y_te = _labels(y_tr, f"{spec}: y_train"), _labels(y_te, f"{spec}: y_test")
    if len(x_tr) != len(y_tr):
        raise InputError(f"{spec}: x_train has {len(x_tr)} images but y_train has {len(y_tr)} labels")
    if len(x_te) != len(y_te):
        raise InputError(f"{spec}: x_test has {len(x_te)} images but y_test has {len(y_te)} labels")
    if len(x_tr) == 0:
        raise InputError(f"{spec}: the training split is empty")
    if len(x_te) and x_te.shape[1:] != x_tr.shape[1:]:
        raise InputError(f"{spec}: test images have shape {tuple(x_te.shape[1:])}, "
                         f"training images {tuple(x_tr.shape[1:])}")
    classes = np.unique(y_tr)
    unknown = np.setdiff1d(np.unique(y_te), classes)
    if len(unknown):
        raise InputError(f"{spec}: y_test has labels not in y_train: {unknown[:5].tolist()}")
    if x_tr.max() == x_tr.min():
        raise InputError(f"{spec}: every training pixel has the same value: there is nothing to learn")
    x_tr = torch.from_numpy(x_tr)
    x_te = torch.from_numpy(x_te)
    mean = x_tr.mean(dim=(0, 2, 3))
    std = x_tr.std(dim=(0, 2, 3)).clamp_min(1e-6)
    norm = lambda x: (x - mean[None, :, None, None]) / std[None, :, None, None]  # noqa: E731
    return ImageData(norm(x_tr).contiguous(), torch.from_numpy(np.searchsorted(classes, y_tr)).long(),
                     norm(x_te).contiguous(), torch.from_numpy(np.searchsorted(classes, y_te)).long(),
                     [names[i] for i in classes] if names else classes.tolist(), mean, std, spec)


def _to_nchw(x: np.ndarray, name: str) -> np.ndarray:
    """N x H x W or N x H x W x C, uint8 [0, 255] or float [0, 1] -> float32 N x C x H x W in [0, 1]."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, :, :, None]
    if x.ndim != 4:
        raise InputError(f"{name} must be N x H x W or N x H x W x C, got shape {x.shape}")
    if 0 in x.shape[1:]:
        raise InputError(f"{name}: images of shape {x.shape[1:]} are empty")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
        if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 1 or np.isnan(x).any()):
            raise InputError(f"{name}: float images must lie in [0, 1]")
    else:
        raise InputError(f"{name} must be uint8 in [0, 255] or float in [0, 1], got {x.dtype}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _labels(y: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise InputError(f"{name} must be a 1-D array of integer labels, got shape {y.shape}")
    if np.issubdtype(y.dtype, np.floating) and len(y) and np.all(np.mod(y, 1) == 0):
        y = y.astype(np.int64)
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
        raise InputError(f"{name} must hold integer labels, got {y.dtype}")
    return y.astype(np.int64)


def _digits():
    """scikit-learn's 1,797 8x8 digits; a fixed stratified 70/30 split (seed 0)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    return _split(x, d.target)


def _split(x, y):
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=DIGITS_TEST_FRACTION,
                                              random_state=DIGITS_SPLIT_SEED, stratify=y)
    return x_tr, y_tr, x_te, y_te


def _npz(path: str):
    if not os.path.isfile(path):
        raise InputError(f"data file not found: {path}")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: not readable (permission denied)")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
            if missing:
                raise InputError(f"{path}: missing arrays {', '.join(missing)} "
                                 "(need x_train, y_train, x_test, y_test)")
            return f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    except InputError:
        raise
    except Exception as e:  # zip or pickle errors of a corrupt file
        raise InputError(f"{path}: not a readable .npz file ({type(e).__name__})") from None


def _torchvision(name: str, root: str, download: bool, spell: Callable[[str], str]):
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashionmnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10,
           "cifar100": tvd.CIFAR100, "svhn": tvd.SVHN}[name]
    try:
        if name == "svhn":
            tr, te = cls(root, split="train", download=download), cls(root, split="test", download=download)
        else:
            tr, te = cls(root, train=True, download=download), cls(root, train=False, download=download)
    except RuntimeError as e:
        if download:
            raise InputError(f"{name}: download into {root!r} failed ({e})") from None
        raise InputError(f"{name}: not found under {root!r}; allow {spell('download')} to fetch it, "
                         f"or give {spell('root')} the folder where it already is") from None

    def arrays(ds):
        if name == "svhn":
            return ds.data.transpose(0, 2, 3, 1), np.asarray(ds.labels)
        x = ds.data.numpy() if torch.is_tensor(ds.data) else np.asarray(ds.data)
        y = ds.targets.numpy() if torch.is_tensor(ds.targets) else np.asarray(ds.targets)
        return x, y

    return (*arrays(tr), *arrays(te))


def _image_files(root: str):
    """Files and labels of DIR/train/<class>/* and DIR/test/<class>/*, and the class names."""
    out = []
    for split in ("train", "test"):
        d = os.path.join(root, split)
        if not os.path.isdir(d):
            raise InputError(f"{root}: ImageFolder layout needs {split}/<class>/ sub-directories")
        out.append(sorted(c for c in os.listdir(d) if os.path.isdir(os.path.join(d, c))))
    names = out[0]
    if not names:
        raise InputError(f"{root}/train holds no class directories")
    extra = set(out[1]) - set(names)
    if extra:
        raise InputError(f"{root}/test has classes not in train: {sorted(extra)[:5]}")
    lists = []
    for split in ("train", "test"):
        files, labels = [], []
        for label, c in enumerate(names):
            d = os.path.join(root, split, c)
            if os.path.isdir(d):
                found = [os.path.join(d, fn) for fn in sorted(os.listdir(d)) if fn.lower().endswith(IMAGE_SUFFIXES)]
                files += found
                labels += [label] * len(found)
        lists += [files, np.asarray(labels, dtype=np.int64)]
    if not lists[0]:
        raise InputError(f"{root}/train: its class folders hold no images "
                         f"(looked for {', '.join(IMAGE_SUFFIXES)})")
    return (*lists, names)


def _read_images(files: Sequence[str], shape: tuple | None = None) -> np.ndarray:
    """uint8 N x H x W (grey) or N x H x W x 3; every image must have `shape` (or the first's).
    A file that does not decode, or would decode to more pixels than PIL's decompression-bomb
    limit, is an input error naming it."""
    import warnings

    from PIL import Image

    xs = []
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    xs.append(np.asarray(im.convert("L" if im.mode in ("1", "L", "I;16", "I") else "RGB"),
                                         dtype=np.uint8))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(f"{path}: image too large to decode (over PIL's decompression-bomb "
                             "limit of pixels)") from None
        except (OSError, SyntaxError, ValueError):
            raise InputError(f"unreadable image {path}") from None
        shape = shape or xs[0].shape
        if xs[-1].shape != shape:
            raise InputError(f"{path}: image of shape {xs[-1].shape}, the others are {shape}")
    return np.stack(xs) if xs else np.zeros((0,) + tuple(shape or (1, 1)), np.uint8)


def _image_folder(listing: tuple):
    """The images of an ImageFolder `listing` (from `_image_files`), all of one size."""
    files_tr, y_tr, files_te, y_te, names = listing
    x_tr = _read_images(files_tr)  # not empty: `_image_files` refuses a training split without images
    return x_tr, y_tr, _read_images(files_te, x_tr.shape[1:]), y_te, names


class LazyImages:
    """Images of an ImageFolder read from disk on demand: `x[idx]` loads and normalises only the
    images asked for (float32 N x C x H x W), so data larger than memory can be condensed."""

    def __init__(self, files: Sequence[str], shape: tuple, mean: torch.Tensor, std: torch.Tensor):
        self.files, self.image_shape, self.mean, self.std = list(files), tuple(shape), mean, std

    @property
    def shape(self) -> tuple:
        return (len(self.files), *self.image_shape)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, idx) -> torch.Tensor:
        picks = range(len(self.files))[idx] if isinstance(idx, slice) else torch.as_tensor(idx).reshape(-1).tolist()
        raw = _read_images([self.files[i] for i in picks], _hwc(self.image_shape))
        x = torch.from_numpy(_to_nchw(raw, "images"))
        return (x - self.mean[None, :, None, None]) / self.std[None, :, None, None]


def _hwc(chw: tuple) -> tuple:
    return (chw[1], chw[2]) if chw[0] == 1 else (chw[1], chw[2], chw[0])


def _streamed_image_folder(root: str, listing: tuple) -> ImageData:
    """The ImageFolder `root` (its `_image_files` listing) as `LazyImages`; the normalisation comes
    from one pass over the training images in batches (float64 sums), so memory stays bounded by
    one batch."""
    files_tr, y_tr, files_te, y_te, names = listing
    if not files_tr:
        raise InputError(f"{root}: the training split is empty")
    first = _to_nchw(_read_images(files_tr[:1]), "x_train")
    shape = first.shape[1:]
    total, squares, count = np.zeros(shape[0]), np.zeros(shape[0]), 0
    for i in range(0, len(files_tr), STREAM_BATCH):
        x = _to_nchw(_read_images(files_tr[i:i + STREAM_BATCH], _hwc(shape)), "x_train").astype(np.float64)
        total += x.sum(axis=(0, 2, 3))
        squares += (x ** 2).sum(axis=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares - count * mean ** 2, 0) / max(count - 1, 1))
    mean, std = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32).clamp_min(1e-6)
    return ImageData(LazyImages(files_tr, shape, mean, std), torch.from_numpy(y_tr),
                     LazyImages(files_te, shape, mean, std), torch.from_numpy(y_te), list(names), mean, std, root)


def _too_big_for_memory(files: Sequence[str]) -> bool:
    """True when the decoded training `files` would take more than half the available memory."""
    if not files:
        return False
    per_image = _to_nchw(_read_images(files[:1]), "x_train").nbytes
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return False
    return per_image * len(files) > available / 2
