"""The one protocol shared by condensers and selectors.

A method is a dataclass whose fields are its whole configuration (scikit-learn style: the
constructor only stores settings) and whose one verb, `condense(data)`, returns a
`SyntheticSet` with `ipc` images for every class present in `data`. Subclasses implement
`_run`; everything else (validation, seeding, devices, metadata, timing) lives here once.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import ClassVar

import torch

from .checkpoint import Checkpoint
from .data import ImageData
from .errors import InputError
from .networks import build_model, reinitialize
from .runtime import make_generator, reproducible, resolve_device, versions
from .synthetic import SyntheticSet


@dataclass
class Method:
    ipc: int = 10
    seed: int = 0
    model: str = "ConvNet"
    model_options: dict = field(default_factory=dict)
    device: str = "auto"
    progress: bool = False

    name: ClassVar[str] = ""
    needs_real_per_class: ClassVar[bool] = True  # ipc real images per class are picked or used as init

    def condense(self, data: ImageData, checkpoint: Checkpoint | None = None) -> SyntheticSet:
        """Build the reduced set for every class present in `data`'s training split; iterative
        methods save to and resume from `checkpoint` (the others finish too fast to need one)."""
        self.validate(data)
        dev = resolve_device(self.device)
        t0 = time.time()
        with reproducible(dev):
            images, labels, extra = self._run(data, dev, checkpoint)
        meta = {"method": self.name, **self.config(), "data": data.spec,
                "data_shape": [data.channels, *data.image_size], "labels": data.present_labels(),
                "wall_time_s": round(time.time() - t0, 3), "device": str(dev),
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "versions": versions(), **extra}
        return SyntheticSet(images, labels, data.classes, data.mean, data.std, meta)

    def config(self) -> dict:
        """Every setting of this method (goes into the metadata)."""
        cfg = asdict(self)
        cfg.pop("progress", None)
        return cfg

    def validate(self, data: ImageData) -> None:
        if self.ipc < 1:
            raise InputError(f"--ipc must be >= 1, got {self.ipc}")
        if len(data.y_train) == 0:
            raise InputError("no training images to condense")
        if self.needs_real_per_class and self.ipc > data.smallest_class():
            raise InputError(f"--ipc {self.ipc} is larger than the smallest class "
                             f"({data.smallest_class()} images)")

    def _run(self, data: ImageData, device: torch.device, checkpoint: Checkpoint | None
             ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Return (images, labels, extra metadata)."""
        raise NotImplementedError

    # helpers shared by subclasses
    def generator(self, device: torch.device, *stream) -> torch.Generator:
        return make_generator(self.seed, device, self.name, *stream)

    def network(self, data: ImageData, device: torch.device, generator: torch.Generator) -> torch.nn.Module:
        """A freshly initialised network of the configured architecture, on `device`."""
        net = build_model(self.model, data.channels, data.num_classes, data.image_size, **self.model_options)
        return reinitialize(net, generator).to(device)


def pick_per_class(data: ImageData, ipc: int, generator: torch.Generator) -> torch.Tensor:
    """`ipc` distinct random training indices of every present class, classes in label order."""
    out = []
    for c, idx in sorted(data.class_indices().items()):
        perm = torch.randperm(len(idx), generator=generator, device=generator.device).cpu()
        out.append(idx[perm[:ipc]])
    return torch.cat(out)
