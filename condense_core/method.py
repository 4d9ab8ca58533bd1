"""The one protocol shared by condensers and selectors.

A method is a dataclass whose fields are its whole configuration (scikit-learn style: the
constructor only stores settings, each declared once with `settings.setting`, and checks them)
and whose one verb, `condense(data)`, returns a `ReducedSet` with `ipc` images for every class
present in `data`. A method registers itself by kind and name (`registration.register`) where it is
defined. Subclasses implement `_run`; everything else (validation, seeding, devices, metadata,
timing) lives here once. Whatever a run builds (trained networks, buffers) lives in the run, never
on the method, so one method object can run any number of times, even at once.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Callable, ClassVar

import torch

from .checkpoint import Checkpoint
from .data import ImageData
from .deprecation import renamed
from .errors import InputError
from .evaluate import teacher_targets
from .networks import MODELS, build_model, check_fits, check_options, reinitialize
from .progress import HELP, MODES
from .runtime import make_generator, reproducible, resolve_device, versions
from .settings import DEVICE, SEED_MAX, check_object, setting, settings_of
from .reduced import ReducedSet


Embedding = Callable[[torch.Tensor], torch.Tensor]  # images (N x C x H x W, on the run's device) -> N x D features


@dataclass
class Method:
    ipc: int = setting(10, "images per class", low=1, common=True)
    seed: int = setting(0, "seed of every random choice of the run", low=0, high=SEED_MAX, common=True)
    model: str = setting("ConvNet", f"network the method looks through ({', '.join(MODELS)})", common=True)
    model_options: dict = setting(help='options of the network (`networks.ConvNetOptions`, ...), e.g. {"width": 64}',
                                  factory=dict, common=True)
    device: str = setting("auto", "where the method runs: auto, cpu, cuda or cuda:N", pattern=DEVICE,
                          common=True)
    deterministic: bool = setting(True, "on CUDA: deterministic kernels, so one seed gives the same bits "
                                        "(slower; off: cuDNN picks the fastest kernels)",
                                  speed_only=True, common=True)
    soft_labels: bool = setting(False, "also record soft targets: the logits of a teacher (the network "
                                       "trained on the real data) on the set's images")
    teacher_epochs: int = setting(30, "epochs of the soft-label teacher (evaluation protocol)", low=1)
    temperature: float = setting(4.0, "temperature the soft targets are softened at when trained on",
                                 above=0, high=100)
    progress: str = setting("auto", HELP, choices=MODES, common=True, display_only=True)

    kind: ClassVar[str] = ""  # set by registry.register
    name: ClassVar[str] = ""
    needs_real_per_class: ClassVar[bool] = True  # ipc real images per class are picked or used as init
    uses_network: ClassVar[bool] = True  # looks at the data through `model` (random selection does not)
    presets: ClassVar[dict[str, dict]] = {}  # named groups of settings (see `preset`)

    def __post_init__(self):
        if isinstance(self.progress, bool):  # progress=True/False: auto/off, as everywhere
            self.progress = "auto" if self.progress else "off"
        check_object(self)
        check_options(self.model, self.model_options)

    @classmethod
    def preset(cls, name: str | None) -> dict:
        """The settings of preset `name` (none: {}); a method without that preset has none."""
        return dict(cls.presets.get(name, {})) if name else {}

    def condense(self, data: ImageData, checkpoint: Checkpoint | None = None,
                 embedding: Embedding | None = None) -> ReducedSet:
        """Build the reduced set for every class present in `data`'s training split; iterative
        methods save to and resume from `checkpoint` (the others finish too fast to need one).
        `embedding` (images -> features), where given, is what a method that would train a
        network to look through the data looks through instead (herding's and k-center's
        selection network, DM's herding start): a continual learner's own, as iCaRL does."""
        self.validate(data)
        dev = resolve_device(self.device)
        t0 = time.time()
        with reproducible(dev, self.deterministic):
            images, labels, extra = self._run(data, dev, checkpoint, embedding)
        if not torch.isfinite(images).all():  # never write a set that would be reported on as a result
            raise InputError(f"{self.name} diverged: its images hold NaN or infinite values "
                             "(a smaller step, e.g. lr_img, keeps them finite)")
        meta = {"method": self.name, "kind": self.kind, **self.settings(), "data": data.spec,
                "data_shape": [data.channels, *data.image_size], "labels": data.present_labels(),
                "wall_time_s": round(time.time() - t0, 3), "device": str(dev),
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "versions": versions(), **extra, **({"embedding": "given"} if embedding is not None else {})}
        reduced = ReducedSet(images, labels, data.classes, data.mean, data.std, meta)
        if self.soft_labels:  # the teacher's training is part of the set's cost
            t1 = time.time()
            reduced = reduced.with_targets(teacher_targets(self, data, reduced.training_images()[0].to(dev), dev))
            reduced.meta.update(teacher_time_s=round(time.time() - t1, 3), wall_time_s=round(time.time() - t0, 3))
        return reduced

    def settings(self) -> dict:
        """Every setting of this method that can change its result (goes into the metadata and a
        checkpoint's identity; `progress` and other display-only settings do not)."""
        shown = {k for k, s in settings_of(type(self)).items() if s.rule.display_only}
        return {k: v for k, v in asdict(self).items() if k not in shown}

    def config(self) -> dict:
        """Deprecated: `settings()` (the glossary's word)."""
        renamed("Method.config()", "Method.settings()")
        return self.settings()

    def validate(self, data: ImageData) -> None:
        """Checks against the data (the settings themselves were checked at construction)."""
        check_object(self)
        if len(data.y_train) == 0:
            raise InputError("no training images to condense")
        if self.needs_real_per_class and self.ipc > data.smallest_class():
            raise InputError(f"ipc {self.ipc} is larger than the smallest class "
                             f"({data.smallest_class()} images)")
        if self.uses_network or self.soft_labels:  # images too small for the network fail here, not in a forward
            check_fits(self.model, data.channels, data.image_size, data.spec, **self.model_options)

    def _run(self, data: ImageData, device: torch.device, checkpoint: Checkpoint | None,
             embedding: Embedding | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
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
