"""Distribution matching (Zhao & Bilen, WACV 2023): `condense --method dm`.

Each iteration draws a freshly initialised embedding network (frozen), a real batch per class and
one Siamese augmentation per class; the loss is the sum over classes of the squared distance
between the mean embeddings of the real and the synthetic images, minimised by SGD (momentum 0.5)
on the synthetic images. `condense_core.engine` runs the iterations; this class holds the
settings, and its hooks are the defaults of `condense_core.hooks.MatchingHooks`, which IDM, M3D
and LCMat-C override. Every DM-family method has multi-formation (`factor`).
"""
from __future__ import annotations

import shutil
import signal
from dataclasses import dataclass
from typing import ClassVar

from ..checkpoint import StopSignals
from ..data import ImageData
from ..engine import Engine
from ..errors import InputError, Interrupted
from ..hooks import MatchingHooks
from ..method import Method
from ..registration import register
from ..progress import tracked
from ..settings import setting

PRECISIONS = ("fp32", "bf16")
INITS = ("real", "herding", "noise")  # random real images, herding's selection, Gaussian noise


@register("condense", "dm")
@dataclass
class DM(Method, MatchingHooks[None]):
    """Distribution matching; subclasses override the hooks of `MatchingHooks` (e.g. LCMat-C)."""

    iterations: int = setting(500, "image updates (the paper runs 20,000)", low=1)
    batch_real: int = setting(256, "real images per class per iteration", low=1)
    lr_img: float = setting(1.0, "learning rate of the images", above=0)
    momentum: float = setting(0.5, "momentum of the images' SGD", low=0)
    init: str = setting("real", "start from random real images, herding's picks, or noise", choices=INITS)
    dsa: bool = setting(True, "differentiable Siamese augmentation")
    factor: int = setting(1, "multi-formation: each stored image holds factor x factor sub-images, "
                             "trained on as factor^2 full-size images (same memory)", low=1)
    precision: str = setting("fp32", "bf16 autocasts the networks' forward (lower precision)",
                             choices=PRECISIONS)
    channels_last: bool = setting(False, "channels-last images and weights (slower on a CPU; for GPUs)",
                                  speed_only=True)
    compile: bool = setting(False, "torch.compile the embedding network (needs a C++ compiler on a CPU)",
                            speed_only=True)
    real_chunk: int = setting(0, "real images per forward (0 = automatic)", low=0, speed_only=True)
    cuda_graph: bool = setting(False, "on CUDA: capture an iteration as a CUDA graph and replay it (the same "
                                      "result, without the launches; not yet measured on a GPU)",
                               speed_only=True)

    # Short condensations (a replay memory per experience) instead of the paper's 20,000 iterations
    # at lr_img 1: start from herding's picks, take larger image steps, factor 1 (chosen in the
    # docs/cl.md, where the measurements and their commands are).
    presets: ClassVar[dict[str, dict]] = {
        "memory": {"iterations": 100, "batch_real": 128, "init": "herding", "lr_img": 30.0}}

    @property
    def needs_real_per_class(self) -> bool:  # noise init needs no real image per class
        return self.init != "noise"

    def validate(self, data: ImageData) -> None:
        super().validate(data)
        if self.init != "noise" and self.ipc * self.factor ** 2 > data.smallest_class():
            raise InputError(f"ipc {self.ipc} x factor {self.factor}^2 real images per class are more than "
                             f"the smallest class holds ({data.smallest_class()})")
        if self.factor > 1 and min(data.image_size) < 2 * self.factor:
            raise InputError(f"factor {self.factor} cuts {'x'.join(map(str, data.image_size))} images into "
                             "tiles of less than 2 pixels")
        if self.compile and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
            raise InputError("compile needs a C++ compiler (c++, g++ or clang++) on PATH")

    def _run(self, data, device, checkpoint=None, embedding=None):
        run = Engine(self, data, device, checkpoint, embedding)
        stop = StopSignals()
        bar = tracked(range(run.done, self.iterations), self.iterations, f"{self.name} ipc{self.ipc}",
                      self.progress if run.ranks.rank == 0 else "off", run.last_loss, initial=run.done)
        with stop.installed():
            for _ in bar:
                run.step()
                if run.ranks.any(bool(stop.requested), device):
                    run.save(checkpoint)
                    raise Interrupted(stop.requested or signal.SIGTERM, run.done, checkpoint and checkpoint.path)
                if checkpoint is not None and checkpoint.due(run.done, self.iterations):
                    run.save(checkpoint)
        return run.result()
