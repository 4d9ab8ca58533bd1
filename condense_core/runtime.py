"""Devices, seeded generators and version stamps shared by every method (progress: `progress.tracked`,
also importable from here)."""
from __future__ import annotations

import sys
import zlib
from contextlib import contextmanager
from typing import Callable

import torch

from .errors import InputError
from .extras import installed_version
from .progress import tracked  # noqa: F401  (where the methods have always found it)
from .settings import DEVICE, check_form, python_name


def resolve_device(name: str | torch.device = "auto", spell: Callable[[str], str] = python_name) -> torch.device:
    """`auto` -> cuda when available, else cpu. Only the devices the project runs on are accepted
    (`settings.DEVICE`: auto, cpu, cuda, cuda:N); `cuda` without a GPU, a `cuda:N` past the last
    GPU, and any other name (meta, mps, ...) are input errors naming the setting as `spell`
    does (`--device` on the command line)."""
    if isinstance(name, torch.device):
        return name
    where = spell("device")
    check_form(name, DEVICE, where)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"{where} {name} asked for, but no CUDA device is available")
        count = torch.cuda.device_count()
        if ":" in name and int(name.split(":")[1]) >= count:
            raise InputError(f"{where} {name} asked for, but this machine has {count} CUDA device(s) "
                             f"(cuda:0 to cuda:{count - 1})")
    return torch.device(name)


@contextmanager
def reproducible(device: torch.device, deterministic: bool = True):
    """On CUDA, for the duration: deterministic kernels (cuDNN's deterministic convolutions, no
    autotuning, PyTorch's fixed-order scatter and index kernels), so the same seed gives the same
    bits (the README measures the difference); with `deterministic=False`, the fast kernels
    instead (cuDNN autotuning on); an operation without a deterministic kernel warns instead of
    failing. A CPU already computes deterministically: nothing changes there. cuBLAS (matrix
    products) is deterministic only if CUBLAS_WORKSPACE_CONFIG was set before it started in the
    process: the command line sets it (`environment.CUBLAS_CONFIG`) at start-up; a script should
    too."""
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(), cudnn.deterministic, cudnn.benchmark)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    cudnn.deterministic, cudnn.benchmark = deterministic, not deterministic
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        cudnn.deterministic, cudnn.benchmark = before[2], before[3]


def derive_seed(seed: int, *stream) -> int:
    """The seed of stream `stream` (e.g. `("eval", run)`) of a run seeded with `seed`: distinct
    streams of one seed give independent, reproducible draws (never from the clock)."""
    return zlib.crc32(repr((int(seed),) + tuple(stream)).encode())


def make_generator(seed: int, device: torch.device | str = "cpu", *stream) -> torch.Generator:
    """A generator on `device` seeded with `derive_seed(seed, *stream)`."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(derive_seed(seed, *stream))
    return g


def versions() -> dict:
    """Versions of the libraries a result depends on (stored in every ReducedSet's metadata)."""
    import numpy
    import torchvision

    found = {"dcapps": installed_version(), "torch": torch.__version__,
             "torchvision": torchvision.__version__, "numpy": numpy.__version__,
             "python": sys.version.split()[0]}
    return {k: str(v) for k, v in found.items()}  # plain str: torch's TorchVersion does not unpickle safely
