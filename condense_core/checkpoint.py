"""Checkpoints of long condensations, and stopping cleanly on SIGINT/SIGTERM.

A checkpoint holds everything the rest of a run depends on: the synthetic images, the SGD
momentum, the random generator's state, the iteration reached and the losses so far, plus the
settings and data it was made with (a resume with anything else is refused). Resuming from it
therefore gives the same final result as a run that was never interrupted. Files are written to
a temporary name and renamed, so a killed process leaves the previous checkpoint intact.

A checkpoint is never lost by accident: a run that does not resume refuses to start where one
lies (continue it with `resume`, or replace it with `restart`), `resume` without one is refused,
and a loaded checkpoint is checked field by field (iteration within the run, images and momentum
of the run's shape and finite, a generator state the generator accepts) before anything is taken
from it.
"""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from typing import Callable

import torch

from .errors import InputError
from .reduced import atomic_save
from .settings import python_name

FORMAT = "dcapps.Checkpoint/1"


class Checkpoint:
    """Where a run's checkpoint lives, how often it is written (`every` iterations, 0 = only on a
    signal), and what to do with one already there: continue from it (`resume`) or replace it
    (`restart`); with neither, its presence stops the run before any work. Messages name these
    choices as the caller does (`spell`: e.g. `settings.flag_name`, `--resume`)."""

    def __init__(self, path: str, every: int = 0, resume: bool = False, restart: bool = False,
                 spell: Callable[[str], str] = python_name):
        resume_, restart_ = spell("resume"), spell("restart")
        if every < 0:
            raise InputError(f"{spell('checkpoint_every')} must be >= 0, got {every}")
        if resume and restart:
            raise InputError(f"{resume_} and {restart_} contradict each other: give one")
        if os.path.lexists(path) and not os.path.isfile(path):
            raise InputError(f"{path} is where this run keeps its checkpoint, but it is not a file: remove it")
        if resume and not os.path.exists(path):
            raise InputError(f"{resume_}: there is no checkpoint {path} to continue from "
                             f"(run without {resume_} to start)")
        if not resume and not restart and os.path.exists(path):
            raise InputError(f"{path} holds the checkpoint of an earlier run: continue it with {resume_}, "
                             f"or start afresh with {restart_} (which replaces it)")
        self.path, self.every, self.resume, self.restart, self.spell = path, every, resume, restart, spell

    @staticmethod
    def next_to(out: str) -> str:
        """The checkpoint path of a run writing `out`."""
        return out + ".ckpt"

    def due(self, done: int, total: int) -> bool:
        return self.every > 0 and done % self.every == 0 and done < total

    def save(self, state: dict) -> None:
        atomic_save({"format": FORMAT, **state}, self.path)

    def load(self, identity: dict) -> dict | None:
        """The saved state to continue from when resuming (it must match `identity` and be
        whole); None for a fresh start (`restart` drops the old checkpoint now, once the run's
        own checks have passed)."""
        if self.restart:
            self.remove()
        if not self.resume:
            return None
        if not os.path.exists(self.path):
            raise InputError(f"{self.spell('resume')}: there is no checkpoint {self.path} to continue from")
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise InputError(f"{self.path}: not a readable checkpoint ({type(e).__name__})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise InputError(f"{self.path}: not a dcapps checkpoint")
        saved = state.get("identity", {})
        for key, theirs, mine in _differences(saved if isinstance(saved, dict) else {}, identity):
            raise InputError(f"{self.path} was made with {key}={theirs!r}, this run has {mine!r}; "
                             f"run with the same settings, or start afresh with {self.spell('restart')}")
        _check_state(state, identity, self.path, self.spell("restart"))
        return state

    def remove(self) -> None:
        """Drop the checkpoint (once the finished result is safely written, or on `restart`)."""
        if os.path.exists(self.path):
            os.remove(self.path)


def _check_state(state: dict, identity: dict, path: str, restart: str) -> None:
    """Refuse a checkpoint whose fields could not have come from this run (`identity`): one that
    would end a run early (iteration past the end), break it half-way (images of another shape, a
    missing momentum) or continue it from other random numbers (a generator state that is not)."""
    def damaged(what: str) -> InputError:
        return InputError(f"{path}: {what}; the checkpoint is damaged: remove it, or start afresh "
                          f"with {restart}")

    config = identity.get("config", {})
    total = config.get("iterations")
    iteration = state.get("iteration")
    if isinstance(iteration, bool) or not isinstance(iteration, int) or not 0 <= iteration <= total:
        raise damaged(f"its iteration {iteration!r} is not between 0 and the run's {total}")
    shape = (len(identity["labels"]), config.get("ipc"), *identity["shape"][1:])
    for key in ("images", "momentum"):
        t = state.get(key)
        if not (torch.is_tensor(t) and t.dtype == torch.float32 and tuple(t.shape) == shape):
            raise damaged(f"{key} must be a float32 tensor of shape {'x'.join(map(str, shape))}")
        if not torch.isfinite(t).all():  # a run from them would diverge at once, blaming its step size
            raise damaged(f"its {key} hold NaN or infinite values")
    losses = state.get("losses")
    if not (torch.is_tensor(losses) and losses.is_floating_point() and tuple(losses.shape) == (total,)):
        raise damaged(f"losses must be a float vector of {total} values")
    generator = state.get("generator")
    if not (torch.is_tensor(generator) and generator.dtype == torch.uint8 and generator.dim() == 1):
        raise damaged("its generator state must be a uint8 vector")
    try:
        torch.Generator(device=identity.get("device_type", "cpu")).set_state(generator)
    except (RuntimeError, ValueError, TypeError):
        raise damaged("its generator state is not one a generator accepts") from None


def _differences(saved: dict, mine: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(key, saved value, this run's value) of every entry that differs, nested keys flattened
    (`config` -> `lr_img`), so a refusal names the one setting that differs."""
    out = []
    first = ("method", "data", "shape", "labels", "device_type")  # what a run is, then how it is set
    order = lambda k: (first.index(k) if k in first else len(first), str(k))  # noqa: E731
    for key in sorted(set(saved) | set(mine), key=order):
        a, b = saved.get(key), mine.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key == "config":
            out += _differences(a, b)
        elif a != b:
            out.append((prefix + str(key), a, b))
    return out


class StopSignals:
    """Records SIGINT/SIGTERM instead of dying, so the loop can checkpoint and stop between
    iterations (`requested` holds the signal number, 0 while none came)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = 0

    def _handle(self, signum, frame):
        self.requested = signum

    @contextmanager
    def installed(self):
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield self  # signals only reach the main thread
            return
        old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)
