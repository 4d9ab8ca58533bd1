"""Classes dealt over `torch.distributed` ranks (torchrun), and the few collectives that needs.

DM's loss is a sum of one term per class and a synthetic image only receives gradient from its
own class's term, so ranks that draw the same random numbers (same seed, same generator) can
each own a share of the classes (the engine deals blocks of consecutive classes, one class
each on a CPU) and never talk during an iteration; the synthetic images are
summed together (every other rank contributes zeros) only for a checkpoint and at the end.
Without a process group every function here is the single-process identity.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """Rank `rank` of `world` owns the items (classes, blocks of classes, pool networks) at
    positions j with j % world == rank."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> "Ranks":
        """This process's share: its rank in the process group, or the whole without one."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def owns(self, position: int) -> bool:
        return position % self.world == self.rank

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of `t` over all ranks (in place; `t` itself without a group)."""
        if self.world > 1:
            dist.all_reduce(t)
        return t

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if `flag` is true on any rank."""
        if self.world == 1:
            return flag
        return bool(self.sum(torch.tensor([int(flag)], device=device)).item())

    def broadcast_module(self, module: torch.nn.Module, src: int) -> torch.nn.Module:
        """Give every rank the parameters and buffers of rank `src`'s `module`."""
        if self.world > 1:
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src)
        return module


def launched_by_torchrun() -> bool:
    """Under torchrun (which names its run, even with one process) or another launcher of ranks."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str, timeout: timedelta | None = None) -> str:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA) and return this rank's
    device; without torchrun, `device` unchanged. Called by the command line, not by the library:
    a script that runs under torchrun sets up its own group and the methods deal their work over the ranks on their own.
    `timeout`: how long a collective may wait for the slowest rank (torch's default if None)."""
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    from .runtime import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local), timeout=timeout)
        return f"cuda:{local}"
    dist.init_process_group("gloo", timeout=timeout)
    return str(dev)


def finish() -> None:
    """Leave the process group (if the command line joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def __getattr__(name):
    """`Shard`, the glossary's old name of `Ranks`, for one more release (with a warning)."""
    if name == "Shard":
        from .deprecation import renamed

        renamed("condense_core.distributed.Shard", "condense_core.distributed.Ranks")
        return Ranks
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
