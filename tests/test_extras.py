"""The core installs and runs without the optional parts: `condense_core` and `dcapps condense`,
`select` and `evaluate` never import Avalanche or NNI, and a command that needs a missing extra
stops with one line naming it. Checked in a fresh interpreter where those packages cannot be
imported, as in a `pip install dcapps` environment."""
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A fresh interpreter in which `avalanche` and `nni` (and anything under them) cannot be imported.
BLOCK = """
import json, sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("avalanche", "nni"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Absent())
"""


def run_python(code: str, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env)


def test_core_commands_import_neither_avalanche_nor_nni(tmp_path):
    code = """
from dcapps.cli import main
import condense_core
for name in condense_core.__all__:
    getattr(condense_core, name)
codes = [main(["condense", "--data", "digits", "--method", "dm", "--ipc", "1", "--iterations", "2",
               "--batch-real", "8", "--model-options", '{"width": 8}', "--out", "dm.pt", "-q"]),
         main(["select", "--data", "digits", "--method", "herding", "--ipc", "1", "--selection-epochs", "1",
               "--model-options", '{"width": 8}', "--out", "h.pt", "-q"]),
         main(["evaluate", "dm.pt", "--runs", "1", "--epochs", "1", "-q"]),
         main(["methods"])]
print(json.dumps({"codes": codes, "loaded": sorted({m.split(".")[0] for m in sys.modules} & {"avalanche", "nni"})}))
"""
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0, 0, 0, 0], "loaded": []}


def test_a_missing_extra_is_named_in_one_line(tmp_path):
    code = """
from dcapps.cli import main
codes = [main(["cl", "run", "digits", "--out", "cl"]), main(["demo", "--out", "demo"]),
         main(["nas", "init", "--data", "digits", "--proxy", "p.pt", "--out", "exp"])]
try:
    from dcapps import DMReplay
except ImportError as e:
    print(f"import: {e}", file=sys.stderr)
print(json.dumps(codes))
"""
    done = run_python(code, tmp_path)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [2, 2, 2]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 4 and "Traceback" not in done.stderr
    assert "dcapps cl run needs Avalanche" in lines[0] and lines[0].endswith("pip install 'dcapps[cl]'")
    assert "dcapps demo needs Avalanche" in lines[1] and lines[1].endswith("pip install 'dcapps[cl]'")
    assert "dcapps nas init needs NNI" in lines[2] and lines[2].endswith("pip install 'dcapps[nas]'")
    assert lines[3].startswith("import: dcapps.DMReplay needs Avalanche") and "dcapps[cl]" in lines[3]
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_core_dependencies_leave_out_avalanche_nni_and_their_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for name in ("avalanche", "nni", "setuptools", "filelock", "typeguard"):
        assert name not in core
    extras = project["optional-dependencies"]
    assert any(d.startswith("avalanche-lib>=") and "<" in d for d in extras["cl"])  # a range, not one version
    assert {"setuptools<81", "filelock<3.12", "typeguard<4.1.3"} <= set(extras["nas"])
    for package in ("condense_core", "dcapps", "scenarios", "nas"):
        assert (ROOT / package / "py.typed").exists()
