"""Distribution matching (Zhao & Bilen, WACV 2023): `condense --method dm`.

Each iteration draws a freshly initialised embedding network (frozen), a real batch per class and
one Siamese augmentation per class; the loss is the sum over classes of the squared distance
between the mean embeddings of the real and the synthetic images, minimised by SGD (momentum 0.5)
on the synthetic images. `condense_core.engine` runs the iterations; this class holds the
settings and the hooks a DM-family method changes (`start`, `sample_network`, `moments`,
`match_loss`, `end_iteration`, and `resources_state`/`load_resources` for checkpoints; LCMat-C,
IDM and M3D are DM with other hooks). Every DM-family method has multi-formation (`factor`).
"""
from __future__ import annotations

import shutil
import signal
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..checkpoint import StopSignals
from ..data import ImageData
from ..engine import Engine
from ..errors import InputError, Interrupted
from ..method import Method
from ..networks import reinitialize
from ..registration import register
from ..progress import tracked
from ..settings import setting

PRECISIONS = ("fp32", "bf16")
INITS = ("real", "herding", "noise")  # random real images, herding's selection, Gaussian noise


@register("condense", "dm")
@dataclass
class DM(Method):
    """Distribution matching; subclasses change `start`, `sample_network`, `moments` and
    `match_loss` (e.g. LCMat-C)."""

    iterations: int = setting(500, "image updates (the paper runs 20,000; 500 takes about 3 minutes "
                                   "on digits on a 2-core CPU)", low=1)
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
    # off by default until it is measured on a GPU (written and checked on CPUs only so far)
    cuda_graph: bool = setting(False, "on CUDA: capture an iteration as a CUDA graph and replay it (the same "
                                      "result, without the launches; not yet measured on a GPU)",
                               speed_only=True)

    # Short condensations (a replay memory per experience) instead of the paper's 20,000 iterations
    # at lr_img 1: start from herding's picks and take larger image steps. 100 iterations: on
    # Fashion-MNIST 1,000/class (gdumb protocol) they gave as much accuracy as 300 in 0.6-0.7x the
    # memory-building time; factor 1, since a factor-2 memory lost 17.6 points in the mix protocol.
    # Measured in docs/cl.md on digits and Fashion-MNIST.
    graph_safe: ClassVar[bool] = True  # the hooks never read the device: an iteration can be captured
    pooled: ClassVar[bool] = True  # `moments` are summed over a batch (False: kept per sample)
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

    def _run(self, data, device, checkpoint=None):
        run = Engine(self, data, device, checkpoint)
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

    # --- hooks ---
    def start(self, data: ImageData, device: torch.device) -> object:
        """What the run needs besides the settings, built once per run and handed to
        `sample_network` (LCMat-C: its trained networks); DM needs nothing."""
        return None

    def sample_network(self, net: torch.nn.Module, resources: object, generator: torch.Generator) -> None:
        """Set `net`'s weights (in place) for one iteration: DM re-draws every weight at random,
        on the device, so the iteration can be a CUDA graph (`graph_safe`)."""
        reinitialize(net, generator)

    def moments(self, net: torch.nn.Module, emb: torch.Tensor, label: int) -> list[torch.Tensor]:
        """Per-sample statistics summed over a batch of one class (the engine divides by the count
        to get means): DM matches the embedding."""
        return [emb.sum(0)]

    def match_loss(self, real: list[torch.Tensor], syn: list[torch.Tensor], resources: object) -> torch.Tensor:
        """One class's loss from the statistics of its real batch and synthetic images."""
        return ((real[0] - syn[0]) ** 2).sum()

    def end_iteration(self, resources: object, generator: torch.Generator) -> None:
        """After the image update (IDM trains its networks here); DM does nothing."""

    def resources_state(self, resources: object) -> dict | None:
        """What a checkpoint keeps of `resources` (None: nothing changes during the run)."""
        return None

    def load_resources(self, resources: object, state: dict) -> None:
        """Restore `resources` from `resources_state`'s output (on resume)."""
