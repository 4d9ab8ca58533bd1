"""Checkpoints of long condensations, and stopping cleanly on SIGINT/SIGTERM.

A checkpoint holds everything the rest of a run depends on: the synthetic images, the SGD
momentum, the random generator's state, the iteration reached and the losses so far, plus the
settings and data it was made with (a resume with anything else is refused). Resuming from it
therefore gives the same final result as a run that was never interrupted. Files are written to
a temporary name and renamed, so a killed process leaves the previous checkpoint intact.
"""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager

import torch

from .errors import InputError
from .synthetic import atomic_save

FORMAT = "dcapps.Checkpoint/1"


class Checkpoint:
    """Where a run's checkpoint lives, how often it is written (`every` iterations, 0 = only on a
    signal) and whether a run starts from it (`resume`)."""

    def __init__(self, path: str, every: int = 0, resume: bool = False):
        if every < 0:
            raise InputError(f"--checkpoint-every must be >= 0, got {every}")
        self.path, self.every, self.resume = path, every, resume

    @staticmethod
    def next_to(out: str) -> str:
        """The checkpoint path of a run writing `out`."""
        return out + ".ckpt"

    def due(self, done: int, total: int) -> bool:
        return self.every > 0 and done % self.every == 0 and done < total

    def save(self, state: dict) -> None:
        atomic_save({"format": FORMAT, **state}, self.path)

    def load(self, identity: dict) -> dict | None:
        """The saved state if resuming and a checkpoint exists (it must match `identity`)."""
        if not self.resume or not os.path.exists(self.path):
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise InputError(f"{self.path}: not a readable checkpoint ({type(e).__name__})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise InputError(f"{self.path}: not a dcapps checkpoint")
        saved = state.get("identity", {})
        for key, theirs, mine in _differences(saved if isinstance(saved, dict) else {}, identity):
            raise InputError(f"{self.path} was made with {key}={theirs!r}, this run has {mine!r}; "
                             "remove it or run with the same settings")
        return state

    def remove(self) -> None:
        """Drop the checkpoint once the finished result is safely written."""
        if os.path.exists(self.path):
            os.remove(self.path)


def _differences(saved: dict, mine: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(key, saved value, this run's value) of every entry that differs, nested keys flattened
    (`config` -> `lr_img`), so a refusal names the one setting that differs."""
    out = []
    for key in sorted(set(saved) | set(mine), key=str):
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
