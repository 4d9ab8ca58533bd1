"""The layers of docs/architecture.md hold: condense_core <- dcapps.replay <- scenarios, nas <- the CLI.

Each module may import only its own layer or lower ones (imports inside functions count too), and
no project modules import each other in a cycle. The check reads the source with `ast` and imports
nothing, so it is fast and needs no torch. The core knows nothing of the command line either: no
string in `condense_core` names a flag (messages take the caller's spelling: `settings.spell`, a
label argument). Each check has a test proving it fails on code that breaks it.
"""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("condense_core", "dcapps", "scenarios", "nas")
# (pattern, layer), lowest first; "x.*" means x and everything under it, otherwise the exact name.
LAYERS = (("condense_core.*", 0), ("dcapps", 1), ("dcapps.glossary", 1), ("dcapps.replay", 1),
          ("dcapps.memory_metrics", 1), ("scenarios.*", 2), ("nas.*", 2), ("dcapps.cli.*", 3), ("dcapps.__main__", 3))


def find_modules(root, packages=PACKAGES):
    """Dotted module name -> (source path, is a package __init__)."""
    found = {}
    for pkg in packages:
        for path in sorted((Path(root) / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            is_init = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_init else parts)] = (path, is_init)
    return found


def module_graph(root, packages=PACKAGES):
    """Module -> the project modules it names in an import statement, at any depth."""
    modules = find_modules(root, packages)

    def existing(name):  # the name itself if it is a module, else its longest module prefix
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, (path, is_init) in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(existing(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name.split(".") if is_init else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else existing(base))
        graph[name] = {t for t in targets if t and t != name}
    return graph


def layer_of(name, layers=LAYERS):
    for pattern, layer in layers:
        prefix = pattern.removesuffix(".*")
        if name == prefix or (pattern.endswith(".*") and name.startswith(prefix + ".")):
            return layer
    return None


def violations(graph, layers=LAYERS):
    found = [f"unassigned module {m}: give it a layer" for m in sorted(graph) if layer_of(m, layers) is None]
    for module in sorted(graph):
        mine = layer_of(module, layers)
        for target in sorted(graph[module]):
            theirs = layer_of(target, layers)
            if mine is not None and theirs is not None and theirs > mine:
                found.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
    return found


def cycles(graph):
    """One cycle per strongly connected component of more than one module, e.g. [a, b, a]."""
    index, low, stack, on_stack, comps = {}, {}, [], set(), []

    def visit(v):  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while v not in comp:
                comp.add(stack.pop())
            on_stack.difference_update(comp)
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    found = []
    for comp in comps:  # shortest path from the smallest member back to itself, inside comp
        start = min(comp)
        paths, frontier = {start: [start]}, [start]
        while frontier and start not in [w for v in frontier for w in graph[v]]:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & comp):
                    if w not in paths:
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
            frontier = nxt
        last = next(v for v in frontier if start in graph[v])
        found.append(paths[last] + [start])
    return sorted(found)


def test_the_code_respects_the_layers():
    found = violations(module_graph(ROOT))
    assert not found, "upward imports or unassigned modules:\n  " + "\n  ".join(found)


def test_no_import_cycles():
    found = cycles(module_graph(ROOT))
    assert not found, "import cycles:\n  " + "\n  ".join(" -> ".join(c) for c in found)


def test_the_check_catches_upward_and_mutual_imports(tmp_path):
    files = {  # what the code had before the restructuring
        "condense_core/__init__.py": "from . import registry\nfrom .dm import DM\n",
        "condense_core/registry.py": "from .dm import DM\n",
        "condense_core/dm.py": "class DM:\n    def f(self):\n        from .registry import register\n",
        "condense_core/selectors.py": "from . import DM\n",  # a name in __init__, not a submodule
        "dcapps/__init__.py": "",
        "dcapps/commands.py": "import condense_core.registry\n",
        "dcapps/cli.py": "import importlib\nfrom scenarios import command\n",
        "scenarios/__init__.py": "",
        "scenarios/command.py": "def run():\n    from dcapps.cli import emit_json\n",
        "nas/__init__.py": "",
        "nas/command.py": "from dcapps.commands import add_data_arguments\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = module_graph(tmp_path)
    assert graph["condense_core"] == {"condense_core.registry", "condense_core.dm"}
    assert graph["condense_core.selectors"] == {"condense_core"}
    assert graph["dcapps.cli"] == {"scenarios.command"}
    assert graph["dcapps.commands"] == {"condense_core.registry"}

    found = violations(graph, LAYERS + (("dcapps.commands", 3),))
    assert found == ["nas.command (layer 2) imports dcapps.commands (layer 3)",
                     "scenarios.command (layer 2) imports dcapps.cli (layer 3)"]
    assert "unassigned module dcapps.commands: give it a layer" in violations(graph, LAYERS)
    assert cycles(graph) == [["condense_core.dm", "condense_core.registry", "condense_core.dm"],
                             ["dcapps.cli", "scenarios.command", "dcapps.cli"]]


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def flag_literals(root, package="condense_core"):
    """(path, line, flag) of every string literal of `package` that names a command-line flag;
    docstrings (which may say which command exposes a thing) are not messages."""
    found = []
    for path in sorted((Path(root) / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                rel = path.relative_to(root).as_posix()
                found += [(rel, node.lineno, flag) for flag in FLAG.findall(node.value)]
    return found


def test_no_core_message_names_a_flag():
    found = [f"{path}:{line}: {flag}" for path, line, flag in flag_literals(ROOT)]
    assert not found, "flags named in condense_core (take the caller's spelling):\n  " + "\n  ".join(found)


def test_the_flag_check_catches_a_flag_in_a_message(tmp_path):
    (tmp_path / "condense_core").mkdir()
    (tmp_path / "condense_core" / "runtime.py").write_text(
        '"""Devices (`dcapps condense --device`: a docstring may name the flag)."""\n'
        "def resolve(name, spell):\n"
        '    """`--device` here too."""\n'
        '    if name == "gpu":\n'
        '        raise ValueError(f"--device {name} asked for, see --help")\n'
        '    return f"{spell(\'device\')} {name}: x--y, --, -1"\n')
    assert flag_literals(tmp_path) == [("condense_core/runtime.py", 5, "--device"),
                                       ("condense_core/runtime.py", 5, "--help")]
