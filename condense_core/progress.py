"""Progress of long work: a bar on a terminal, a log line every few seconds elsewhere.

`progress` is one word wherever it is given (a method's setting, `evaluate(progress=...)`,
`DMReplay(method_settings={"progress": ...})`, the command line's `--progress`): `auto` (a bar
when stderr is a terminal, log lines otherwise: pipes, SLURM logs, notebooks' captured output),
`bar`, `log` or `off`; `True` and `False` mean `auto` and `off`. It changes how a run is shown,
never what it computes, so it is kept out of a set's metadata, a checkpoint's identity and a
sweep's settings.

Log lines go to the `dcapps` logger (`logging.getLogger("dcapps")`) at INFO: the command line
shows them on stderr (`-q` hides them); a script shows them with, e.g.,
`logging.basicConfig(level=logging.INFO)`. A line names the work, the step, the total, the loss
where there is one, the rate and the time left: `dm ipc10: 120/500 (24%), loss 3.214, 2.1/s,
ETA 3m01s`. One is written when the work starts, then one every `DCAPPS_PROGRESS_SECONDS`
seconds (an environment variable; default 5), and one when it ends. Torch-free.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Callable, Iterable, Iterator

from .errors import InputError

MODES = ("auto", "bar", "log", "off")
HELP = ("how long work shows its progress: auto (a bar on a terminal, else a log line every few seconds), "
        "bar, log or off")
DEFAULT_SECONDS = 5.0
logger = logging.getLogger("dcapps")

Loss = Callable[[], "float | None"]  # the latest loss (read only when it is shown)


def mode_of(progress: bool | str | None) -> str:
    """`bar`, `log` or `off`: what `progress` means here (`auto` decided by whether stderr is a
    terminal)."""
    if progress is True:
        progress = "auto"
    elif progress is False or progress is None:
        progress = "off"
    if progress not in MODES:
        raise InputError(f"progress must be one of {', '.join(MODES)}, got {progress!r}")
    if progress == "auto":
        return "bar" if sys.stderr.isatty() else "log"
    return progress


def log_seconds() -> float:
    """Seconds between two log lines: `DCAPPS_PROGRESS_SECONDS`, else `DEFAULT_SECONDS`."""
    text = os.environ.get("DCAPPS_PROGRESS_SECONDS", "")
    try:
        seconds = float(text)
    except ValueError:
        return DEFAULT_SECONDS
    return seconds if seconds >= 0 else DEFAULT_SECONDS


def tracked(iterable: Iterable | None = None, total: int | None = None, desc: str | None = None,
            progress: bool | str = True, loss: Loss | None = None, initial: int = 0, **kw) -> Iterable:
    """`iterable` (or `range(total)`) with its progress shown as `progress` says. `initial`:
    steps done before (a resumed run: `iterable` holds the rest, `total` counts all); `loss()`, if
    given, is the latest loss, read only when a line or the bar is redrawn."""
    if iterable is None:
        iterable = range(initial, total or 0)
    if total is None and hasattr(iterable, "__len__"):
        total = initial + len(iterable)
    mode = mode_of(progress)
    if mode == "off":
        return iterable
    if mode == "log":
        return LogLines(iterable, total, desc or "work", loss, initial)
    return _bar(iterable, total, desc, loss, initial, **kw)


def _bar(iterable: Iterable, total: int | None, desc: str | None, loss: Loss | None, initial: int,
         **kw) -> Iterator:
    """A tqdm bar on stderr, with the loss beside it (redrawn at most once a second)."""
    from tqdm.auto import tqdm

    bar = tqdm(iterable, total=total, desc=desc, leave=False, initial=initial, **kw)
    shown = time.monotonic()
    try:
        for item in bar:
            yield item
            if loss is not None and time.monotonic() - shown >= 1.0:
                value = loss()
                if value is not None:
                    bar.set_postfix(loss=f"{value:.4g}", refresh=False)
                shown = time.monotonic()
    finally:
        bar.close()


class LogLines:
    """Iterate `iterable`, logging where it is (at the start, every `log_seconds()`, at the end)."""

    def __init__(self, iterable: Iterable, total: int | None, desc: str, loss: Loss | None = None,
                 initial: int = 0):
        self.iterable, self.total, self.desc, self.loss, self.initial = iterable, total, desc, loss, initial

    def __len__(self) -> int:
        return len(self.iterable)

    def __iter__(self) -> Iterator:
        every, start = log_seconds(), time.monotonic()
        last, done = start, 0
        self.line(0, 0.0)
        for item in self.iterable:
            yield item
            done += 1
            now = time.monotonic()
            if now - last >= every or self.initial + done == self.total:
                self.line(done, now - start)
                last = now

    def line(self, done: int, elapsed: float) -> None:
        """Log one line: step, total, loss, rate and time left (`done` steps in `elapsed` s)."""
        step = self.initial + done
        parts = [f"{step}/{self.total} ({100 * step // self.total}%)" if self.total else str(step)]
        value = self.loss() if self.loss is not None and done else None
        if value is not None:
            parts.append(f"loss {value:.4g}")
        if done and elapsed > 0:
            parts.append(f"{done / elapsed:.3g}/s")
            if self.total and step < self.total:
                parts.append(f"ETA {duration(elapsed / done * (self.total - step))}")
            elif self.total:
                parts.append(f"took {duration(elapsed)}")
        logger.info("%s: %s", self.desc, ", ".join(parts))


def duration(seconds: float) -> str:
    """`42s`, `3m01s`, `2h05m`: a time span as people read it."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
