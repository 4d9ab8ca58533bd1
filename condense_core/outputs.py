"""Where a run writes: the checks on an output path made before any work, and the lock that keeps
two live runs off one output.

`check_output_file` and `check_output_folder` refuse, as one `InputError` naming the output as
the caller does (its `label`: `--out` on the command line, `save_memory folder` in Python), an
output that could not be written at the end of the run (empty, a trailing slash, a directory
where a file goes, a folder that is a file or read-only, a name too long for the file system)
and an output that is an input of the same run (`select --data X.npz --out X.npz` would replace
the data; an output inside an ImageFolder would add to it). `OutputLock` is an exclusive lock
file next to the output (`OUT.lock`, holding the writer's pid and host): a second run writing the
same output is refused while the first is alive; the kernel drops the lock of a killed process,
so a killed run never blocks the next one, and the record it leaves behind tells the next run
that this output's last run was interrupted; that run also removes the temporary files a kill
left half-written.
"""
from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from contextlib import contextmanager
from typing import Iterable

from .errors import InputError, Interrupted

# Names made next to an output: its temporary file (`.NAME.XXXXXXXX.tmp`), its checkpoint and lock.
EXTRA_NAME_CHARS = 24
TEMPORARY = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")  # `tempfile.mkstemp`'s names in `atomic_write`


def check_output_file(path: str, label: str, inputs: Iterable[tuple[str, str]] = ()) -> None:
    """`path` can be written as a file at the end of the run, and is none of `inputs` ((label,
    path) pairs of what the run reads); otherwise an `InputError` naming it `label`."""
    _check_text(path, label)
    if path.endswith(("/", os.sep)):
        raise InputError(f"{label} {path!r} ends with a slash: give a file name")
    if os.path.isdir(path):
        raise InputError(f"{label} {path} is a directory; give a file name")
    if os.path.lexists(path):
        if not os.path.isfile(path):
            raise InputError(f"{label} {path} exists and is not a regular file")
        if not os.access(path, os.W_OK):
            raise InputError(f"{label} {path} is read-only")
    _check_writable_folder(os.path.dirname(os.path.abspath(path)), label, path)
    _check_not_an_input(path, label, inputs)


def check_output_folder(path: str, label: str, inputs: Iterable[tuple[str, str]] = ()) -> None:
    """`path` can be made (or is) a folder the run can write in, and is no input of the run."""
    _check_text(path, label)
    _check_not_an_input(path, label, inputs)
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{label} {path} is a file; give a folder")
    _check_writable_folder(os.path.abspath(path), label, path)


def _check_text(path, label: str) -> None:
    if not isinstance(path, str) or not path.strip():
        raise InputError(f"{label} must name a file or folder, got {path!r}")
    if "\0" in path:
        raise InputError(f"{label} {path!r} holds a NUL character")


def _check_writable_folder(folder: str, label: str, path: str) -> None:
    """The nearest existing folder on the way to `folder` is a folder this process can create
    files in (tried: permissions alone do not tell, e.g. in /proc or on a read-only mount)."""
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InputError(f"{label} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{label} {path}: cannot write in {existing} (permission denied)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".dcapps-probe-", dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise InputError(f"{label} {path}: cannot write in {existing} ({e.strerror or type(e).__name__})") from None
    longest = os.pathconf(existing, "PC_NAME_MAX") - EXTRA_NAME_CHARS
    parts = os.path.relpath(os.path.abspath(path), existing).split(os.sep)
    if any(len(part.encode()) > longest for part in parts):
        raise InputError(f"{label} {path}: a name in it is too long (at most {longest} bytes here)")


def _check_not_an_input(path: str, label: str, inputs: Iterable[tuple[str, str]]) -> None:
    """`path` is not a file the run reads, nor inside a folder it reads (an ImageFolder)."""
    mine = os.path.realpath(path)
    for their_label, their_path in inputs:
        if not isinstance(their_path, str) or not os.path.exists(their_path):
            continue  # a name such as `digits`, or a file that is not there (refused elsewhere)
        theirs = os.path.realpath(their_path)
        if mine == theirs:
            raise InputError(f"{label} {path} is the {their_label} of this run: writing it would replace "
                             f"what the run reads; give another {label}")
        if os.path.isdir(theirs) and mine.startswith(theirs.rstrip(os.sep) + os.sep):
            raise InputError(f"{label} {path} is inside {their_path}, the {their_label} of this run: "
                             f"writing there would change what the run reads; give another {label}")


def lock_path(output: str) -> str:
    """The lock file of `output` (a file or a folder): `OUT.lock` beside it, in its folder's real
    place (two names of one folder, through a link, share the lock)."""
    full = os.path.abspath(output).rstrip(os.sep)
    return os.path.join(os.path.realpath(os.path.dirname(full)), os.path.basename(full)) + ".lock"


class OutputLock:
    """An exclusive lock on `output` for one run (a context manager).

    The lock is `fcntl.flock` on `OUT.lock`, which records the holder's pid and host for the
    message a second run gets. A run that ends, normally or with an error, removes the file; a run
    that is stopped (SIGINT, SIGTERM, kill -9) leaves its record, which the next run finds as
    `interrupted` when it takes the lock. Ranks of one torchrun job
    other than rank 0 do not lock (`enabled`), as rank 0 alone writes.
    """

    def __init__(self, output: str, label: str, enabled: bool = True):
        self.output, self.label, self.enabled = output, label, enabled
        self.path = lock_path(output)
        self.interrupted: dict | None = None  # the record of a run of this output that did not end
        self._fd: int | None = None
        self._made: list[str] = []  # folders made for the lock, removed again if left empty

    def __enter__(self) -> "OutputLock":
        if self.enabled:
            self.acquire()
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        stopped = kind is not None and issubclass(kind, (Interrupted, KeyboardInterrupt))
        self.release("finished" if kind is None else "stopped" if stopped else "failed")
        return False

    def acquire(self) -> None:
        self._made_folders()
        try:
            fd, holder = take_lock(self.path)
        except OSError as e:
            raise InputError(f"{self.label} {self.output}: cannot create the lock {self.path} "
                             f"({e.strerror})") from None
        if fd is None:
            who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
            raise InputError(f"{self.label} {self.output} is being written by another run ({who}); "
                             f"wait for it to end, or give another {self.label}")
        if fd < 0:  # no flock (Windows): run unlocked
            return
        self.interrupted = holder
        self._fd = fd
        self._remove_stale_temporaries()

    def release(self, how: str = "finished") -> None:
        """Give the lock up. `finished`: remove the file. `failed` (bad input or an error): remove
        it, or put back the record of an interrupted run found at the start. `stopped` (SIGINT,
        SIGTERM): leave this run's record for the next run to find, as a kill -9 does."""
        if self._fd is None:
            self._remove_made_folders()
            return
        fd, self._fd = self._fd, None
        try:
            if how == "failed" and self.interrupted:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(self.interrupted).encode(), 0)
            elif how in ("finished", "failed"):
                os.remove(self.path)
        except OSError:
            pass
        finally:
            os.close(fd)
        self._remove_made_folders()

    def _remove_stale_temporaries(self) -> None:
        """Remove the temporary files (`synthetic.atomic_write`'s `.NAME.XXXXXXXX.tmp`) that a
        killed run of this output left: of the output file and its checkpoint, or in the output
        folder and its sub-folders. Holding the lock, no live run can be writing them."""
        output = os.path.abspath(self.output).rstrip(os.sep)
        if os.path.isdir(output):
            folders = [output] + [os.path.join(output, d) for d in os.listdir(output)
                                  if os.path.isdir(os.path.join(output, d))]
            mine = lambda name: True  # noqa: E731 (every temporary in a folder the run owns)
        else:
            folders = [os.path.dirname(output)]
            prefix = "." + os.path.basename(output) + "."
            mine = lambda name: name.startswith(prefix)  # noqa: E731
        remove_temporaries(folders, mine)

    def _made_folders(self) -> None:
        folder = os.path.dirname(self.path)
        missing = []
        while not os.path.exists(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._made = missing  # deepest first

    def _remove_made_folders(self) -> None:
        for folder in self._made:
            try:
                os.rmdir(folder)  # only if empty: the run's results stay
            except OSError:
                break
        self._made = []


def take_lock(path: str, wait: bool = False) -> tuple[int | None, dict | None]:
    """Take the exclusive `fcntl.flock` of the file `path` (made if missing) and write this
    process's record (pid, host) into it. Returns (fd, the record found there before: a holder
    that died without removing the file), or, when a live process holds it and not `wait`,
    (None, that holder's record). Without flock (Windows): (-1, None), unlocked."""
    try:
        import fcntl
    except ImportError:
        return -1, None
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError:
            holder = _record(fd)
            os.close(fd)
            return None, holder
        try:  # a holder that ended removed the file between our open and our lock: lock the new one
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    before = _record(fd)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
    return fd, before


def remove_temporaries(folders: Iterable[str], mine) -> None:
    """Remove, in `folders`, the temporary files of `synthetic.atomic_write`
    (`.NAME.XXXXXXXX.tmp`) whose names `mine(name)` accepts: what a killed writer left."""
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if TEMPORARY.fullmatch(name) and mine(name):
                try:
                    os.remove(os.path.join(folder, name))
                except OSError:
                    pass


@contextmanager
def held(path: str):
    """For the duration, the lock of the file `path` (waiting for a holder to let it go): for
    short critical sections of processes sharing a folder. The file is removed when the section
    ends, so no lock file is left in the folder (`take_lock` relocks a file removed under it)."""
    fd, _ = take_lock(path, wait=True)
    try:
        yield
    finally:
        if fd is not None and fd >= 0:
            drop_lock(path, fd)


def drop_lock(path: str, fd: int) -> None:
    """Give up the lock `take_lock` returned as `fd`, removing its file first (a process waiting
    for it then finds the file gone and locks a new one)."""
    try:
        os.remove(path)
    except OSError:
        pass
    os.close(fd)


def _record(fd: int) -> dict | None:
    """The holder's record in an open lock file (None if empty or unreadable)."""
    try:
        text = os.pread(fd, 4096, 0)
        record = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
