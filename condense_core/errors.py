"""The exceptions a user sees as one line (torch-free, so the command line can catch them cheaply).

Anything a user can get wrong (a missing file, an unknown name, a value out of range) raises
`InputError` with a one-line message naming the problem; the CLI turns it into exit status 2.
A condensation stopped by a signal raises `Interrupted` after writing its checkpoint (the caller
says how to continue from it: the command line names `--resume`). A message quotes what was given through `shown`, and the CLI prints it through `one_line`, so that a value
of any size (a 10 MB name, a list grown from YAML aliases) makes a short line, not a flood.
"""
import reprlib
import signal

SHOWN_CHARS = 80  # the most characters of a value quoted in a message
LINE_CHARS = 600  # the most characters of a message line (about eight lines of a terminal)

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = SHOWN_CHARS
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8
_REPR.maxlevel = 3


class InputError(ValueError):
    """Bad input from the user: reported as one line, exit status 2, no traceback."""


class Interrupted(Exception):
    """A condensation stopped by a signal after writing a checkpoint."""

    def __init__(self, signum: int, iteration: int, path: str | None):
        self.signum, self.iteration, self.path = signum, iteration, path
        where = f"checkpoint {path}" if path else "no checkpoint asked for"
        super().__init__(f"stopped by {signal.Signals(signum).name} after iteration {iteration}; {where}")


def shown(value: object) -> str:
    """`repr(value)` for a message, at most about `SHOWN_CHARS` characters: a long text or a large
    container is cut (`'aaa...aaa'`, `[1, 2, ...]`) without being written out in full first."""
    text = _REPR.repr(value)
    return text if len(text) <= SHOWN_CHARS + 20 else text[:SHOWN_CHARS] + "..."


def one_line(message: str, limit: int = LINE_CHARS) -> str:
    """The first line of `message`, cut in the middle to at most `limit` characters (its start
    says what is wrong, its end what to do)."""
    line = message.splitlines()[0] if message else ""
    if len(line) <= limit:
        return line
    return f"{line[:limit * 2 // 3]} ... {line[-(limit // 3 - 5):]}"
