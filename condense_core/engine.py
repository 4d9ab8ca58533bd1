"""The engine that runs distribution-matching methods (DM, LCMat-C, ...): their iterations, fast.

A method of the DM family (`methods.dm.DM` and its subclasses) supplies the settings and the
hooks of `hooks.MatchingHooks` (what the run builds besides the images, which network an
iteration uses, which statistics are matched and the loss between them, what happens after the
image update; written down there, with the run state they share). The engine does the rest the
same way for all of them, multi-formation included (`factor`: the stored images are decoded by
`formation.decode` before every synthetic forward, so the gradient flows through it).

How the engine computes it, and why:
- A synthetic image only gets gradient from its own class's term, so classes are independent once
  the iteration's random draws are made. Every rank of a `torch.distributed` group (torchrun)
  makes all the draws and computes only the classes it owns (`distributed.Ranks`), in the very
  forwards one process would run (`Engine._plan_forwards`): the result is the single-process one,
  bit for bit (on CUDA with the deterministic kernels of `runtime.reproducible`).
- Words: the real batch of a class is cut into `Span`s of `real_chunk` rows; spans that go
  through the network together make a `Forward`; consecutive classes that share forwards make
  a block, and blocks are what ranks own.
- A real span goes through the network without gradient and only its summed statistics are
  kept: memory does not grow with `batch_real`. On a CPU every span gets a forward of its own,
  small enough for its activations to stay in cache (the automatic span is
  `CPU_CHUNK_PIXELS[precision]` image pixels), and every class's synthetic images get one too.
  On a GPU, small kernels cost launches, not arithmetic: a span is a whole class batch and
  consecutive classes share forwards up to `FORWARD_PIXELS` (at the paper's settings, one
  forward for all real images and one for all synthetic images). `dcapps bench condense`
  measures the engine against the reference loop; the README's engine section has the figures.
  Networks with batch statistics (batch norm) see each class whole and alone, as in the paper.
- Speed flags that compute the same thing: `compile` (torch.compile: fuses normalisation,
  activation and pooling) and `channels_last` memory (off by default: slower on a CPU; meant
  for GPUs).
  `precision="bf16"` autocasts the network's forward and lowers precision: off by default, its
  effect on accuracy is measured in docs/speed.md.
- Nothing is copied between host and device inside the loop (the losses stay on the device) and
  the real data stays on the device; data too large for memory is read per span per iteration
  (`data.LazyImages`).
- `Checkpoint`: the run's whole state is saved every `every` iterations and on SIGINT/SIGTERM;
  a resumed run ends with exactly the result of an uninterrupted one.
"""
from __future__ import annotations

import functools
import operator
from typing import NamedTuple

import torch

from .augment import DSA
from .checkpoint import Checkpoint
from .data import ImageData
from .distributed import Ranks
from .formation import decode, encode
from .method import pick_per_class
from .networks import has_batch_stats
from .settings import settings_of

# Automatic span (`real_chunk`) on a CPU, in image pixels per precision: the fastest span of
# `dcapps bench condense` on 28x28 images (16 images in fp32, 32 in bf16; README, engine section).
CPU_CHUNK_PIXELS = {"fp32": 16 * 28 * 28, "bf16": 32 * 28 * 28}
# Image pixels per forward by device type. On a GPU several classes share a forward (all 10 x 256
# real images of 28x28 or 32x32 fit in one), so an iteration is a few large kernels instead of a
# few small ones per class. On a CPU (absent: 0) every real span and every class's synthetic
# images get a forward of their own: there a span that stays in cache is what counts.
FORWARD_PIXELS = {"cuda": 4096 * 32 * 32}
# Points of the loss curve kept in a set's metadata (`loss_curve`: one every few iterations).
LOSS_CURVE_POINTS = 100
# Eager iterations before the CUDA graph is captured (lazy initialisation of cuDNN, cuBLAS and the
# allocator must happen outside the capture).
WARMUP_ITERATIONS = 2


class Span(NamedTuple):
    """Rows `start` to `end` of the batch of the class at position `cls` (of the present labels)."""

    cls: int
    start: int
    end: int


class Forward(NamedTuple):
    """Spans sent through the network together, and the class position of each of their rows
    (which Siamese augmentation each row gets)."""

    spans: list[Span]
    row_classes: torch.Tensor


def forwards_of(spans: list[Span], limit: int) -> list[list[Span]]:
    """Consecutive spans gathered into forwards of at most `limit` rows; a span is never split,
    and `limit` 0 gives each span a forward of its own."""
    out: list[list[Span]] = []
    rows = 0
    for span in spans:
        n = span.end - span.start
        if out and limit and rows + n <= limit:
            out[-1].append(span)
            rows += n
        else:
            out.append([span])
            rows = n
    return out


def herding_indices(dm, data: ImageData, device: torch.device, count: int, embedding=None) -> torch.Tensor:
    """Herding's `count` picks per class (seeded like `dm`, same network architecture, or through
    `embedding`): a start that already matches each class mean, which the iterations refine."""
    from .methods.selectors import Herding

    herding = Herding(ipc=count, seed=dm.seed, model=dm.model, model_options=dm.model_options,
                      device=str(device), progress=dm.progress)
    return herding.select(data, device, embedding)


class DMLoop:
    """What every DM loop shares: the real data (on the device, or on disk when streamed) and its
    class indices, and the seeded generator with the draws in their fixed order (the working
    network, the initial images, then per iteration the real batch positions)."""

    def __init__(self, dm, data: ImageData, device: torch.device, embedding=None):
        self.dm, self.data, self.device, self.embedding = dm, data, device, embedding
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
        """k x ipc x C x H x W stored images: random real images of each class, herding's picks
        (factor^2 of them shrunk into each stored image under multi-formation), or noise."""
        dm, data, k = self.dm, self.data, len(self.labels)
        count = dm.ipc * dm.factor ** 2  # real images per class behind the stored ones
        if dm.init == "real":
            full = encode(self.real(pick_per_class(data, count, self.g)), dm.factor)
        elif dm.init == "herding":
            full = encode(self.real(herding_indices(dm, data, self.device, count, self.embedding)), dm.factor)
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

    def __init__(self, dm, data: ImageData, device: torch.device, checkpoint: Checkpoint | None = None,
                 embedding=None):
        super().__init__(dm, data, device, embedding)
        self.ranks = Ranks.current()
        # the CUDA graph path (see `step`): methods whose iteration never reads the device
        self.graphed = device.type == "cuda" and dm.cuda_graph and dm.graph_safe
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dm.precision == "bf16",
                                       cache_enabled=not self.graphed)
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
            if self.ranks.rank == 0:
                self.losses[:self.done] = state["losses"][:self.done].to(device)
        self.first = self.done
        self.slot = torch.tensor(self.done, device=device)  # where this iteration's loss goes
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warmup = WARMUP_ITERATIONS if self.graphed else 0
        self.syn = {j: full[j].clone().requires_grad_(True) for j in self.own}
        self.buf = {j: momentum[j].clone() for j in self.own}
        self.run_state = dm.start(data, device)  # after the checkpoint check: a refusal comes first
        kept = None if state is None else state.get("run_state", state.get("resources"))  # (older name)
        if kept is not None:
            self.run_state.load_state_dict(kept)

    def identity(self) -> dict:
        """What a checkpoint must match to be resumed by this run."""
        speed_only = {k for k, s in settings_of(type(self.dm)).items() if s.rule.speed_only}
        config = {k: v for k, v in self.dm.settings().items() if k not in speed_only | {"device"}}
        return {"method": self.dm.name, "config": config, "data": self.data.spec,
                "shape": [len(self.data.y_train), self.data.channels, *self.data.image_size],
                "labels": self.labels, "device_type": self.device.type}

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.dm.channels_last else x

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        with self.autocast:
            return self.embed(self._layout(x)).float()

    def _plan_forwards(self) -> None:
        """Which classes this rank owns and which spans share a forward. Consecutive classes form
        blocks of `per_block`, as many as have their real batches, and their synthetic images,
        fit one forward of `FORWARD_PIXELS` (on a GPU; one class per block on a CPU or with batch
        statistics); ranks own whole blocks and no forward crosses a block, so each rank runs
        exactly forwards that one process runs, and the set is the single-process one bit for bit."""
        dm, pixels = self.dm, self.data.image_size[0] * self.data.image_size[1]
        budget = FORWARD_PIXELS.get(self.device.type, 0)
        batch_stats = has_batch_stats(self.net)  # then each class is forwarded whole and alone
        rows = max(1, budget // pixels) if budget and not batch_stats else 0  # 0: a forward per span
        if batch_stats:
            self.span_rows = dm.batch_real
        else:
            self.span_rows = dm.real_chunk or (min(dm.batch_real, rows) if rows else
                                               max(1, CPU_CHUNK_PIXELS[dm.precision] // pixels))
        self.syn_rows = dm.ipc * dm.factor ** 2  # training images a class's stored images decode to
        per_block = max(1, rows // max(dm.batch_real, self.syn_rows)) if rows else 1  # real and synthetic fit
        k = len(self.labels)
        blocks = [range(b, min(b + per_block, k)) for b in range(0, k, per_block)]
        mine = [block for i, block in enumerate(blocks) if self.ranks.owns(i)]
        self.own = [j for block in mine for j in block]
        self.real_forwards: list[Forward] = []
        self.syn_forwards: list[Forward] = []
        for block in mine:
            sizes = {j: min(dm.batch_real, len(self.class_idx[j])) for j in block}
            spans = [Span(j, a, min(a + self.span_rows, n)) for j, n in sizes.items()
                     for a in range(0, n, self.span_rows)]
            self.real_forwards += [self._forward(f) for f in forwards_of(spans, rows)]
            self.syn_forwards.append(self._forward([Span(j, 0, self.syn_rows) for j in block]))

    def _forward(self, spans: list[Span]) -> Forward:
        rows = torch.cat([torch.full((s.end - s.start,), s.cls, dtype=torch.long) for s in spans])
        return Forward(spans, rows.to(self.g.device))

    @torch.no_grad()
    def real_moments(self, positions: list[torch.Tensor], op, u) -> dict[int, list[torch.Tensor]]:
        """Statistics of each owned class's real batch, span by span: means of the summed
        `moments` (a class's sum does not depend on which other spans share its forward), or the
        per-sample rows in batch order when the method is not `pooled`."""
        parts: dict[int, list[list[torch.Tensor]]] = {}
        for spans, row_classes in self.real_forwards:
            idx = torch.cat([self.class_idx[s.cls][positions[s.cls][s.start:s.end].to(self.class_idx[s.cls].device)]
                             for s in spans])
            emb = self._embed(self.augment(self.real(idx), row_classes, op, u))
            row = 0
            for s in spans:
                n = s.end - s.start
                parts.setdefault(s.cls, []).append(self.dm.moments(self.net, emb[row:row + n], self.labels[s.cls]))
                row += n
        if not self.dm.pooled:
            return {j: [torch.cat(rows) for rows in zip(*p)] for j, p in parts.items()}
        sums = {j: [functools.reduce(operator.add, stat) for stat in zip(*p)] for j, p in parts.items()}
        return {j: [s / len(positions[j]) for s in m] for j, m in sums.items()}

    def step(self) -> None:
        """One iteration. On CUDA (`cuda_graph`) the first `WARMUP_ITERATIONS` run eagerly on a
        side stream, the next is captured as a CUDA graph and every later one replays it: the
        same kernels on the same buffers with the generator advanced on the device, so the result
        is the eager one, without the launches and the Python of each iteration."""
        if self.graph is None and self.graphed and self.warmup == 0:
            self.graph = torch.cuda.CUDAGraph()
            self.graph.register_generator_state(self.g)
            with torch.cuda.graph(self.graph):
                self.iterate()
        if self.graph is not None:
            self.graph.replay()
        elif self.warmup:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self.iterate()
            torch.cuda.current_stream(self.device).wait_stream(side)
            self.warmup -= 1
        else:
            self.iterate()
        self.done += 1

    def iterate(self) -> None:
        """The work of one iteration: the same random draws on every rank, then this rank's
        classes. Nothing in it reads the device or depends on the host's iteration count (the
        loss goes to the device-side `slot`), so it can be captured once and replayed."""
        dm, g = self.dm, self.g
        dm.sample_network(self.net, self.run_state, g)
        positions = self.draw_positions()
        op, u = self.draw_augmentation()
        real = self.real_moments(positions, op, u)
        total = torch.zeros((), device=self.device)
        rows = self.syn_rows
        for spans, row_classes in self.syn_forwards:
            leaves = [self.syn[s.cls] for s in spans]
            emb = self._embed(self.augment(decode(torch.cat(leaves), dm.factor), row_classes, op, u))
            loss = torch.zeros((), device=self.device)
            for i, s in enumerate(spans):
                syn_moments = dm.moments(self.net, emb[i * rows:(i + 1) * rows], self.labels[s.cls])
                if dm.pooled:
                    syn_moments = [m / rows for m in syn_moments]
                loss = loss + dm.match_loss(real[s.cls], syn_moments, self.run_state)
            grads = torch.autograd.grad(loss, leaves)
            with torch.no_grad():
                for s, grad in zip(spans, grads):
                    self.buf[s.cls].mul_(dm.momentum).add_(grad)
                    self.syn[s.cls].sub_(dm.lr_img * self.buf[s.cls])
            total += loss.detach()
        self.losses.index_put_((self.slot,), total)
        self.slot += 1
        dm.end_iteration(self.run_state, g)

    def _gathered(self, parts: dict[int, torch.Tensor]) -> torch.Tensor:
        """k x ipc x C x H x W, every class filled in (a collective under torch.distributed)."""
        ref = self.syn[self.own[0]] if self.own else None
        shape = (len(self.labels), self.dm.ipc, self.data.channels, *self.data.image_size)
        full = torch.zeros(shape, device=self.device, dtype=ref.dtype if ref is not None else torch.float32)
        for j, t in parts.items():
            full[j] = t.detach()
        return self.ranks.sum(full)

    def state(self) -> dict:
        """Everything the rest of the run depends on (a collective: every rank calls it)."""
        return {"identity": self.identity(), "iteration": self.done,
                "run_state": None if self.run_state is None else self.run_state.state_dict(),
                "images": self._gathered(self.syn).cpu(), "momentum": self._gathered(self.buf).cpu(),
                "generator": self.g.get_state(), "losses": self.ranks.sum(self.losses.clone()).cpu()}

    def save(self, checkpoint: Checkpoint | None) -> None:
        if checkpoint is not None:
            state = self.state()
            if self.ranks.rank == 0:
                checkpoint.save(state)

    def last_loss(self) -> float | None:
        """The loss of the latest iteration (this rank's classes; None before the first): read
        from the device only when progress is shown."""
        return float(self.losses[self.done - 1]) if self.done > self.first else None

    def result(self) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(images, labels, metadata) of the whole set, on every rank; the metadata holds the
        loss of the first and last iterations and the loss curve (`loss_curve`)."""
        images = self._gathered(self.syn).flatten(0, 1)
        labels = torch.tensor(self.labels, device=self.device).repeat_interleave(self.dm.ipc)
        losses = self.ranks.sum(self.losses.clone()).tolist()
        return images, labels, {"loss_first": losses[0], "loss_last": losses[-1],
                                "loss_curve": loss_curve(losses), "world_size": self.ranks.world,
                                "resumed_from": self.first}


def loss_curve(losses: list[float], points: int = LOSS_CURVE_POINTS) -> list[list[float]]:
    """[iteration, loss] pairs every few iterations (about `points` of them, the first and the
    last included): the curve `--png` draws, small enough for any set's metadata."""
    every = max(1, -(-len(losses) // points))
    steps = sorted(set(range(0, len(losses), every)) | {len(losses) - 1})
    return [[i + 1, losses[i]] for i in steps]
