"""`dcapps nas` (not yet built: issue 6)."""
HELP = {"nas": "proxy NAS with NNI (issue 6)"}


def add_arguments(name, p):
    pass


def run(args):
    from condense_core import InputError
    raise InputError(f"dcapps {args.command} is not available yet")
