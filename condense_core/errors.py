"""The exceptions a user sees as one line (torch-free, so the command line can catch them cheaply).

Anything a user can get wrong (a missing file, an unknown name, a value out of range) raises
`InputError` with a one-line message naming the problem; the CLI turns it into exit status 2.
A condensation stopped by a signal raises `Interrupted` after writing its checkpoint (the caller
says how to continue from it: the command line names `--resume`).
"""
import signal


class InputError(ValueError):
    """Bad input from the user: reported as one line, exit status 2, no traceback."""


class Interrupted(Exception):
    """A condensation stopped by a signal after writing a checkpoint."""

    def __init__(self, signum: int, iteration: int, path: str | None):
        self.signum, self.iteration, self.path = signum, iteration, path
        where = f"checkpoint {path}" if path else "no checkpoint asked for"
        super().__init__(f"stopped by {signal.Signals(signum).name} after iteration {iteration}; {where}")
