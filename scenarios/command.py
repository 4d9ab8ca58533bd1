"""`dcapps cl run` and `dcapps demo` (not yet built: issue 5)."""
HELP = {"cl": "scripted class-incremental benchmarks (issue 5)", "demo": "the README's main job (issue 5)"}


def add_arguments(name, p):
    pass


def run(args):
    from condense_core import InputError
    raise InputError(f"dcapps {args.command} is not available yet")
