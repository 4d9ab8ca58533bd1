"""The one exception type for bad input.

Anything a user can get wrong (a missing file, an unknown name, a value out of range) raises
`InputError` with a one-line message naming the problem; the CLI turns it into exit status 2.
"""


class InputError(ValueError):
    """Bad input from the user: reported as one line, exit status 2, no traceback."""
