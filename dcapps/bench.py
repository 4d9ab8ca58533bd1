"""`dcapps bench` (not yet built: issue 7)."""
HELP = {"bench": "time the condensation engine (issue 7)"}


def add_arguments(name, p):
    pass


def run(args):
    from condense_core import InputError
    raise InputError(f"dcapps {args.command} is not available yet")
