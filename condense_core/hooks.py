"""The hooks a distribution-matching method overrides, and the run state they share: the one
place a new method's author reads.

`engine.Engine` runs every method of the DM family (`methods.dm.DM` and its subclasses: IDM,
M3D, LCMat-C) the same way, and calls these hooks, in this order:

- once per run, `start(data, device)`: the method's run state, what the run builds besides the
  images (DM: nothing, None; IDM and M3D: the queue of trained networks; LCMat-C: the pool of
  trained networks). It is built for each run and lives in the run, never on the method, so one
  method object can run any number of times. It is handed to the other hooks, and a checkpoint
  keeps its `state_dict()` (None: nothing of it changes during the run, `start` builds it again);
  a resumed run gives it back to `load_state_dict`, so it ends with the uninterrupted result.
- every iteration: `sample_network(net, state, generator)` sets the weights of the network the
  iteration looks through; for each class, `moments(net, emb, label)` of the embeddings of its
  real batch (without gradient, span by span) and of its synthetic images, then
  `match_loss(real, syn, state)` between them; after the image update,
  `end_iteration(state, generator)` (IDM trains its networks there).

Every random draw comes from `generator`, the run's seeded generator. Two class attributes say
how the engine may run the hooks: `pooled` (the moments are sums over a batch, which the engine
turns into means; False: kept per sample, e.g. M3D's kernel needs every embedding) and
`graph_safe` (no hook reads the device, so an iteration can be captured as a CUDA graph). The
defaults below are DM's own behaviour.
"""
from __future__ import annotations

from typing import ClassVar, Generic, Optional, Protocol, TypeVar

import torch

from .data import ImageData
from .networks import reinitialize


class RunState(Protocol):
    """What a run's `start` builds, as a checkpoint keeps it (the convention of torch modules)."""

    def state_dict(self) -> dict | None:
        """What a checkpoint keeps (None: nothing changes during the run)."""

    def load_state_dict(self, saved: dict) -> None:
        """Take back what `state_dict` returned, on resume."""


S = TypeVar("S", bound=Optional[RunState])


class MatchingHooks(Generic[S]):
    """The hooks of a DM-family method (see the module docstring), with DM's behaviour; `S` is
    the type of the method's run state."""

    pooled: ClassVar[bool] = True
    graph_safe: ClassVar[bool] = True

    def start(self, data: ImageData, device: torch.device) -> S:
        """The run state of one run (DM needs none)."""
        return None

    def sample_network(self, net: torch.nn.Module, state: S, generator: torch.Generator) -> None:
        """Set `net`'s weights (in place) for one iteration: DM re-draws every weight at random,
        on the device, so the iteration can be a CUDA graph."""
        reinitialize(net, generator)

    def moments(self, net: torch.nn.Module, emb: torch.Tensor, label: int) -> list[torch.Tensor]:
        """Statistics of a batch of one class's embeddings `emb`: summed over the batch when
        `pooled` (the engine divides by the count to get means), else per sample. DM matches the
        mean embedding."""
        return [emb.sum(0)]

    def match_loss(self, real: list[torch.Tensor], syn: list[torch.Tensor], state: S) -> torch.Tensor:
        """One class's loss from the `moments` of its real batch and of its synthetic images."""
        return ((real[0] - syn[0]) ** 2).sum()

    def end_iteration(self, state: S, generator: torch.Generator) -> None:
        """After the image update; DM does nothing."""
