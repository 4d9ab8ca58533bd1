"""Distribution matching (Zhao & Bilen, WACV 2023) and the engine that runs it.

Each iteration draws a freshly initialised embedding network (frozen), a real batch per class and
one Siamese augmentation per class; the loss is the sum over classes of the squared distance
between the mean embeddings of the real and the synthetic images, minimised by SGD (momentum 0.5)
on the synthetic images.

How the engine computes it, and why:
- A synthetic image only gets gradient from its own class's term, so classes are independent once
  the iteration's random draws are made. Every rank of a `torch.distributed` group (torchrun)
  makes all the draws and computes only the classes it owns (`distributed.Shard`), in the very
  forwards one process would run (`Engine._plan_forwards`): the result is the single-process one,
  bit for bit (on CUDA with the deterministic kernels of `runtime.reproducible`).
- The real batch of a class goes through the network without gradient, in units of `real_chunk`
  images, and only its summed statistics are kept: memory does not grow with `batch_real`. On a
  CPU every unit gets a forward of its own, small enough for its activations to stay in cache
  (the automatic chunk is `CPU_CHUNK_PIXELS[precision]` image pixels; one forward of all classes
  was measured no faster), and every class's synthetic images get one too. On a GPU, small
  kernels cost launches, not arithmetic: a unit is a whole class batch and consecutive classes
  share forwards up to `FORWARD_PIXELS` (at the paper's settings, one forward for all real images
  and one for all synthetic images: 0.84x the reference loop per class, 1.9-2.7x shared, H200).
  Networks with batch statistics (batch norm) see each class whole and alone, as in the paper.
- Speed flags that compute the same thing: `compile` (torch.compile: fuses normalisation,
  activation and pooling, which otherwise take a third of a CPU iteration) and `channels_last`
  memory (off by default: measured slower on a CPU; meant for GPUs).
  `precision="bf16"` autocasts the network's forward and lowers precision: off by default, its
  effect on accuracy is measured in the README.
- Nothing is copied between host and device inside the loop (the losses stay on the device) and
  the real data stays on the device; data too large for memory is read per unit per iteration
  (`data.LazyImages`). (The augmentation's grouping by operation reads a count of 6 per forward.)
- `Checkpoint`: the run's whole state is saved every `every` iterations and on SIGINT/SIGTERM;
  a resumed run ends with exactly the result of an uninterrupted one.
"""
from __future__ import annotations

import shutil
import signal
from dataclasses import dataclass
from typing import ClassVar

import torch

from .augment import DSA
from .checkpoint import Checkpoint, Interrupted, StopSignals
from .data import ImageData
from .distributed import Shard
from .errors import InputError
from .method import Method, pick_per_class
from .networks import has_batch_stats, reinitialize
from .runtime import progress

PRECISIONS = ("fp32", "bf16")
INITS = ("real", "herding", "noise")  # random real images, herding's selection, Gaussian noise
# Settings for short condensations (hundreds of iterations, e.g. a replay memory per experience)
# instead of the paper's 20,000 at lr_img 1: start from herding's picks and take larger image
# steps. Measured in the README (DMReplay section) on digits and Fashion-MNIST.
SHORT_RUN = {"init": "herding", "lr_img": 30.0}
# Automatic real chunk on a CPU, in image pixels per precision (28x28, `dcapps bench`: fp32 fastest
# of 8-32 images at 16; bf16 at 32, 3.56-3.74x against 3.17-3.21x at 16, two runs each).
CPU_CHUNK_PIXELS = {"fp32": 16 * 28 * 28, "bf16": 32 * 28 * 28}
# Image pixels per forward by device type. On a GPU several classes share a forward (all 10 x 256
# real images of 28x28 or 32x32 fit in one), so an iteration is a few large kernels instead of a
# few small ones per class. On a CPU (absent: 0) every real chunk and every class's synthetic
# images get a forward of their own: there a chunk that stays in cache is what counts.
FORWARD_PIXELS = {"cuda": 4096 * 32 * 32}
SPEED_ONLY = ("device", "channels_last", "compile", "real_chunk")  # change speed, not the result


def packed(units: list[tuple[int, int, int]], limit: int) -> list[list[tuple[int, int, int]]]:
    """Consecutive units (class position, first row, end row) gathered into forwards of at most
    `limit` rows; a unit is never split, and `limit` 0 gives each unit a forward of its own."""
    packs: list[list[tuple[int, int, int]]] = []
    rows = 0
    for unit in units:
        n = unit[2] - unit[1]
        if packs and limit and rows + n <= limit:
            packs[-1].append(unit)
            rows += n
        else:
            packs.append([unit])
            rows = n
    return packs


@dataclass
class DM(Method):
    """Distribution matching; subclasses change `sample_network`, `moments` and `match_loss`
    (e.g. LCMat-C)."""

    iterations: int = 1000
    batch_real: int = 256
    lr_img: float = 1.0
    momentum: float = 0.5
    init: str = "real"
    dsa: bool = True
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    real_chunk: int = 0

    name: ClassVar[str] = "dm"

    @property
    def needs_real_per_class(self) -> bool:  # noise init needs no real image per class
        return self.init != "noise"

    def validate(self, data: ImageData) -> None:
        super().validate(data)
        if self.init not in INITS:
            raise InputError(f"--init must be one of {', '.join(INITS)}, got {self.init!r}")
        for key in ("iterations", "batch_real"):
            if getattr(self, key) < 1:
                raise InputError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(self, key)}")
        if self.real_chunk < 0:
            raise InputError(f"--real-chunk must be >= 0 (0 = automatic), got {self.real_chunk}")
        if self.lr_img <= 0:
            raise InputError(f"--lr-img must be > 0, got {self.lr_img}")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.compile and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
            raise InputError("--compile needs a C++ compiler (c++, g++ or clang++) on PATH")

    def _run(self, data, device, checkpoint=None):
        run = Engine(self, data, device, checkpoint)
        stop = StopSignals()
        bar = progress(range(run.done, self.iterations), desc=f"{self.name} ipc{self.ipc}",
                       enabled=self.progress and run.shard.rank == 0)
        with stop.installed():
            for _ in bar:
                run.step()
                if run.shard.any(bool(stop.requested), device):
                    run.save(checkpoint)
                    raise Interrupted(stop.requested or signal.SIGTERM, run.done, checkpoint and checkpoint.path)
                if checkpoint is not None and checkpoint.due(run.done, self.iterations):
                    run.save(checkpoint)
        return run.result()

    # --- hooks ---
    def sample_network(self, net: torch.nn.Module, data: ImageData, generator: torch.Generator,
                       iteration: int) -> None:
        """Set `net`'s weights (in place) for one iteration: DM re-draws every weight at random."""
        reinitialize(net, generator)

    def moments(self, net: torch.nn.Module, emb: torch.Tensor, label: int) -> list[torch.Tensor]:
        """Per-sample statistics summed over a batch of one class (the engine divides by the count
        to get means): DM matches the embedding."""
        return [emb.sum(0)]

    def match_loss(self, real: list[torch.Tensor], syn: list[torch.Tensor]) -> torch.Tensor:
        """One class's loss from the mean statistics of its real batch and synthetic images."""
        return ((real[0] - syn[0]) ** 2).sum()


def herding_indices(dm: DM, data: ImageData, device: torch.device) -> torch.Tensor:
    """Herding's `ipc` picks per class (seeded like `dm`, same network architecture): a start that
    already matches each class mean, which the iterations then refine."""
    from .selectors import Herding

    herding = Herding(ipc=dm.ipc, seed=dm.seed, model=dm.model, model_options=dm.model_options,
                      device=str(device), progress=False)
    return herding.select(data, device)


class DMLoop:
    """What every DM loop shares: the real data (on the device, or on disk when streamed) and its
    class indices, and the seeded generator with the draws in their fixed order (the working
    network, the initial images, then per iteration the real batch positions)."""

    def __init__(self, dm: DM, data: ImageData, device: torch.device):
        self.dm, self.data, self.device = dm, data, device
        self.g = dm.generator(device)
        self.labels = data.present_labels()
        lazy = not torch.is_tensor(data.x_train)
        self.x = data.x_train if lazy else data.x_train.to(device)
        index_device = torch.device("cpu") if lazy else device
        self.class_idx = [data.class_indices()[c].to(index_device) for c in self.labels]
        self.aug = DSA() if dm.dsa else None
        self.net = dm.network(data, device, self.g).requires_grad_(False).train()

    def real(self, idx: torch.Tensor) -> torch.Tensor:
        """The real training images at dataset indices `idx`, on the device."""
        return torch.as_tensor(self.x[idx.to(self.class_idx[0].device)]).to(self.device)

    def initial_images(self) -> torch.Tensor:
        """k x ipc x C x H x W: random real images of each class, herding's picks, or noise."""
        dm, data, k = self.dm, self.data, len(self.labels)
        if dm.init == "real":
            full = self.real(pick_per_class(data, dm.ipc, self.g))
        elif dm.init == "herding":
            full = self.real(herding_indices(dm, data, self.device))
        else:
            full = torch.randn((k * dm.ipc, data.channels, *data.image_size), generator=self.g, device=self.device)
        return full.view(k, dm.ipc, *full.shape[1:])

    def draw_positions(self) -> list[torch.Tensor]:
        """Positions within each class of this iteration's real batch."""
        return [torch.randperm(len(idx), generator=self.g, device=self.g.device)[:self.dm.batch_real]
                for idx in self.class_idx]

    def draw_augmentation(self) -> tuple:
        """This iteration's Siamese augmentation: an operation and its uniforms per class."""
        return self.aug.draw(len(self.labels), self.g) if self.aug is not None else (None, None)

    def augment(self, x: torch.Tensor, j: int | torch.Tensor, op, u) -> torch.Tensor:
        """Class j's Siamese augmentation (the same for its real and synthetic images); `j` may
        also hold each row's class position, for a batch of several classes."""
        if self.aug is None:
            return x
        return self.aug.apply(x, op[j].expand(len(x)), u[j].expand(len(x), 3))


class Engine(DMLoop):
    """One DM run in progress: the synthetic images and momentum of the classes this rank owns,
    and the iteration step (also timed by `dcapps bench`)."""

    def __init__(self, dm: DM, data: ImageData, device: torch.device, checkpoint: Checkpoint | None = None):
        super().__init__(dm, data, device)
        self.shard = Shard.current()
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dm.precision == "bf16")
        if dm.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.embed = torch.compile(self.net.embed) if dm.compile else self.net.embed
        self.losses = torch.zeros(dm.iterations, device=device)
        self._plan_forwards()
        self.done = 0
        state = checkpoint.load(self.identity()) if checkpoint is not None else None
        if state is None:
            full = self.initial_images()
            momentum = torch.zeros_like(full)
        else:
            full, momentum = state["images"].to(device), state["momentum"].to(device)
            self.g.set_state(state["generator"])
            self.done = state["iteration"]
            if self.shard.rank == 0:
                self.losses[:self.done] = state["losses"][:self.done].to(device)
        self.start = self.done
        self.syn = {j: full[j].clone().requires_grad_(True) for j in self.own}
        self.buf = {j: momentum[j].clone() for j in self.own}

    def identity(self) -> dict:
        """What a checkpoint must match to be resumed by this run."""
        config = {k: v for k, v in self.dm.config().items() if k not in SPEED_ONLY}
        return {"method": self.dm.name, "config": config, "data": self.data.spec,
                "shape": [len(self.data.y_train), self.data.channels, *self.data.image_size],
                "labels": self.labels, "device_type": self.device.type}

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.dm.channels_last else x

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        with self.autocast:
            return self.embed(self._layout(x)).float()

    def _plan_forwards(self) -> None:
        """Which classes this rank owns and which rows share a forward. Consecutive classes form
        blocks of `per_block`, as many as have their real batches, and their synthetic images,
        fit one forward of `FORWARD_PIXELS` (on a GPU; one class per block on a CPU or with batch
        statistics); ranks own whole blocks and no forward crosses a block, so each rank runs
        exactly forwards that one process runs, and the set is the single-process one bit for bit."""
        dm, pixels = self.dm, self.data.image_size[0] * self.data.image_size[1]
        budget = FORWARD_PIXELS.get(self.device.type, 0)
        batch_stats = has_batch_stats(self.net)  # then each class is forwarded whole and alone
        rows = max(1, budget // pixels) if budget and not batch_stats else 0  # 0: a forward per unit
        if batch_stats:
            self.chunk = dm.batch_real
        else:
            self.chunk = dm.real_chunk or (min(dm.batch_real, rows) if rows else
                                           max(1, CPU_CHUNK_PIXELS[dm.precision] // pixels))
        per_block = max(1, rows // max(dm.batch_real, dm.ipc)) if rows else 1  # real and synthetic fit
        k = len(self.labels)
        blocks = [range(b, min(b + per_block, k)) for b in range(0, k, per_block)]
        mine = [block for i, block in enumerate(blocks) if self.shard.owns(i)]
        self.own = [j for block in mine for j in block]
        self.real_packs, self.syn_packs = [], []
        for block in mine:
            sizes = {j: min(dm.batch_real, len(self.class_idx[j])) for j in block}
            units = [(j, a, min(a + self.chunk, n)) for j, n in sizes.items() for a in range(0, n, self.chunk)]
            self.real_packs += [self._grouped(pack) for pack in packed(units, rows)]
            self.syn_packs.append(self._grouped([(j, 0, dm.ipc) for j in block]))

    def _grouped(self, units: list[tuple[int, int, int]]) -> tuple[list, torch.Tensor]:
        """A forward's units (class position, first and end row of the class's batch) and the class
        position of each of its rows (which Siamese augmentation each row gets)."""
        groups = torch.cat([torch.full((b - a,), j, dtype=torch.long) for j, a, b in units])
        return units, groups.to(self.g.device)

    @torch.no_grad()
    def real_moments(self, positions: list[torch.Tensor], op, u) -> dict[int, list[torch.Tensor]]:
        """Mean statistics of each owned class's real batch, unit by unit (a class's sum does not
        depend on which other units share its forward)."""
        sums: dict[int, list[torch.Tensor]] = {}
        for units, groups in self.real_packs:
            idx = torch.cat([self.class_idx[j][positions[j][a:b].to(self.class_idx[j].device)] for j, a, b in units])
            emb = self._embed(self.augment(self.real(idx), groups, op, u))
            row = 0
            for j, a, b in units:
                m = self.dm.moments(self.net, emb[row:row + b - a], self.labels[j])
                sums[j] = m if j not in sums else [s + t for s, t in zip(sums[j], m)]
                row += b - a
        return {j: [s / len(positions[j]) for s in m] for j, m in sums.items()}

    def step(self) -> None:
        """One iteration: the same random draws on every rank, then this rank's classes."""
        dm, g, ipc = self.dm, self.g, self.dm.ipc
        dm.sample_network(self.net, self.data, g, self.done)
        positions = self.draw_positions()
        op, u = self.draw_augmentation()
        real = self.real_moments(positions, op, u)
        total = torch.zeros((), device=self.device)
        for units, groups in self.syn_packs:
            leaves = [self.syn[j] for j, _, _ in units]
            emb = self._embed(self.augment(torch.cat(leaves), groups, op, u))
            loss = torch.zeros((), device=self.device)
            for i, (j, _, _) in enumerate(units):
                syn_moments = dm.moments(self.net, emb[i * ipc:(i + 1) * ipc], self.labels[j])
                loss = loss + dm.match_loss(real[j], [m / ipc for m in syn_moments])
            grads = torch.autograd.grad(loss, leaves)
            with torch.no_grad():
                for (j, _, _), grad in zip(units, grads):
                    self.buf[j].mul_(dm.momentum).add_(grad)
                    self.syn[j].sub_(dm.lr_img * self.buf[j])
            total += loss.detach()
        self.losses[self.done] = total
        self.done += 1

    def _gathered(self, parts: dict[int, torch.Tensor]) -> torch.Tensor:
        """k x ipc x C x H x W, every class filled in (a collective under torch.distributed)."""
        ref = self.syn[self.own[0]] if self.own else None
        shape = (len(self.labels), self.dm.ipc, self.data.channels, *self.data.image_size)
        full = torch.zeros(shape, device=self.device, dtype=ref.dtype if ref is not None else torch.float32)
        for j, t in parts.items():
            full[j] = t.detach()
        return self.shard.sum(full)

    def state(self) -> dict:
        """Everything the rest of the run depends on (a collective: every rank calls it)."""
        return {"identity": self.identity(), "iteration": self.done,
                "images": self._gathered(self.syn).cpu(), "momentum": self._gathered(self.buf).cpu(),
                "generator": self.g.get_state(), "losses": self.shard.sum(self.losses.clone()).cpu()}

    def save(self, checkpoint: Checkpoint | None) -> None:
        if checkpoint is not None:
            state = self.state()
            if self.shard.rank == 0:
                checkpoint.save(state)

    def result(self) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(images, labels, metadata) of the whole set, on every rank."""
        images = self._gathered(self.syn).flatten(0, 1)
        labels = torch.tensor(self.labels, device=self.device).repeat_interleave(self.dm.ipc)
        losses = self.shard.sum(self.losses.clone()).tolist()
        return images, labels, {"loss_first": losses[0], "loss_last": losses[-1],
                                "world_size": self.shard.world, "resumed_from": self.start}
