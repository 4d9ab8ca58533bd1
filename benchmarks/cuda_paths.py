"""Check and time the engine's CUDA paths on a machine with a GPU (CI has none, so no test can).

    python benchmarks/cuda_paths.py --data runs/fashion_full.npz --out runs/bench/cuda_paths.json

Steps (choose with --steps; each result is printed as it ends and written to --out at once, so a
run cut short keeps what it finished; a step that fails records its error and the next runs):
- `graph`: the CUDA-graph engine against the eager engine, same seed, deterministic kernels:
  the largest difference of the images after a few iterations (0 expected).
- `bench`: engine against the reference loop in the same process, taking turns (`dcapps bench`'s
  timing), median of --bench-iterations, for 28x28 grey (--data, real) and 32x32 colour
  (generated pixels: speed only) at ipc 1, 10, 50, batch_real 256, in the modes of `MODES`.
- `profile`: one eager iteration and one graph replay under torch.profiler: kernel launches per
  iteration and the top kernels.
- `repeatable`, `resume`: the command line twice with one seed (same bits?), and stopped by SIGINT
  after a checkpoint then resumed (the uninterrupted result?), in deterministic mode.
- `long`: a --long-iterations condensation of --data at ipc 10 end to end (`dcapps condense`),
  then `dcapps evaluate` of it at --eval-epochs (accuracy, the paper's protocol).
- `torchrun`, `lcmat`: a one-process torchrun on nccl; LCMat-C (eager) on the GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts: deterministic

from condense_core import ImageData, ReducedSet, load_data  # noqa: E402
from condense_core.engine import Engine  # noqa: E402
from condense_core.methods.dm import DM  # noqa: E402
from condense_core.reference import ReferenceLoop  # noqa: E402
from condense_core.runtime import reproducible  # noqa: E402
from dcapps.cli.bench import count_flops, interleaved_seconds  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
# name -> DM settings of a timing mode
MODES = {
    "fast": {"deterministic": False, "precision": "bf16", "channels_last": True, "cuda_graph": True},
    "fast fp32": {"deterministic": False, "cuda_graph": True},
    "deterministic": {"deterministic": True, "cuda_graph": True},
    "deterministic eager": {"deterministic": True, "cuda_graph": False},
}
CUDA = torch.device("cuda")


def dcapps(*argv, launcher=(sys.executable,), timeout=900) -> subprocess.CompletedProcess:
    done = subprocess.run([*launcher, "-m", "dcapps", *argv], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-600:]}")
    return done


def condense_argv(data, out, iterations, *extra):
    return ["condense", "--data", data, "--method", "dm", "--ipc", "10", "--batch-real", "256",
            "--iterations", str(iterations), "--seed", "0", "--device", "cuda", "--cuda-graph", "--quiet",
            "--out", str(out), *extra]


def max_diff(a: Path, b: Path) -> float:
    return (ReducedSet.load(str(a)).images - ReducedSet.load(str(b)).images).abs().max().item()


def colour_data(per_class: int = 5000) -> ImageData:
    """10 classes of 32x32x3 generated pixels: the shape of CIFAR-10, for timing only."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10 * per_class, 3, 32, 32, generator=g)
    return ImageData.from_tensors(x, torch.arange(10).repeat_interleave(per_class), spec="generated 32x32x3")


def graph_equals_eager(data) -> dict:
    out = {}
    for graph in (True, False):
        dm = DM(ipc=10, batch_real=256, iterations=12, seed=0, device="cuda", cuda_graph=graph)
        with reproducible(CUDA, True):
            engine = Engine(dm, data, CUDA)
            for _ in range(dm.iterations):
                engine.step()
            out[graph] = engine.result()[0]
    return {"iterations": 12, "max_abs_diff": (out[True] - out[False]).abs().max().item()}


def time_one(data, ipc: int, mode: str, n: int) -> dict:
    settings = MODES[mode]
    dm = DM(ipc=ipc, batch_real=256, iterations=n + 4, seed=0, device="cuda", **settings)
    with reproducible(CUDA, dm.deterministic):
        engine = Engine(dm, data, CUDA)
        for _ in range(3):  # eager warm-up, then the capture
            engine.step()
        reference = ReferenceLoop(dm, data, CUDA)
        flops = count_flops(reference.step)
        engine_s, reference_s = interleaved_seconds([engine, reference], n, CUDA)
    return {"engine_ms": 1e3 * engine_s, "reference_ms": 1e3 * reference_s, "speedup": reference_s / engine_s,
            "tflops": flops / engine_s / 1e12, "graph": engine.graphed}


def bench(args, data) -> dict:
    rows = {}
    for shape, d in (("28x28x1", data), ("32x32x3", colour_data())):
        for ipc in (1, 10, 50):
            for mode in ("fast", "deterministic"):
                rows[f"{shape} ipc{ipc} {mode}"] = time_one(d, ipc, mode, args.bench_iterations)
                print("  ", shape, ipc, mode, json.dumps(rows[f"{shape} ipc{ipc} {mode}"]), flush=True)
        del d
    for mode in ("fast fp32", "deterministic eager"):
        rows[f"28x28x1 ipc10 {mode}"] = time_one(data, 10, mode, args.bench_iterations)
    return rows


def profile(data) -> dict:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    dm = DM(ipc=10, batch_real=256, iterations=20, seed=0, device="cuda", **MODES["fast"])
    out = {}
    with reproducible(CUDA, False):
        engine = Engine(dm, data, CUDA)
        for _ in range(4):
            engine.step()
        for name, fn in (("eager iteration", engine.iterate), ("graph replay", engine.step)):
            torch.cuda.synchronize()
            with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                fn()
                torch.cuda.synchronize()
            events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
            launches = sum(e.count for e in events)
            top = sorted(events, key=lambda e: e.device_time_total, reverse=True)[:8]
            out[name] = {"kernels": launches,
                         "top": [(e.key[:60], round(e.device_time_total / 1e3, 3), e.count) for e in top]}
    return out


def repeatable(args, tmp: Path) -> dict:
    for name in ("a", "b"):
        dcapps(*condense_argv(args.data, tmp / f"{name}.pt", args.iterations))
    return {"iterations": args.iterations, "max_abs_diff": max_diff(tmp / "a.pt", tmp / "b.pt")}


def resumed(args, tmp: Path) -> dict:
    out = tmp / "resumed.pt"
    for stale in (out, Path(str(out) + ".ckpt"), Path(str(out) + ".lock")):
        stale.unlink(missing_ok=True)  # an earlier run's checkpoint would be refused, not overwritten
    proc = subprocess.Popen([sys.executable, "-m", "dcapps",
                             *condense_argv(args.data, out, args.iterations, "--checkpoint-every", "10")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    deadline = time.time() + 300
    while not Path(str(out) + ".ckpt").exists():
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"no checkpoint appeared: {proc.communicate()[1][-600:]}")
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    stopped = torch.load(str(out) + ".ckpt", weights_only=True)["iteration"]
    dcapps(*condense_argv(args.data, out, args.iterations, "--resume"))
    return {"exit_on_sigint": proc.returncode, "stopped_after": stopped,
            "max_abs_diff_vs_uninterrupted": max_diff(out, tmp / "a.pt")}


def long_run(args, tmp: Path, measured_ms: float | None) -> dict:
    """The long condensation and its evaluation; fewer iterations if the bench step measured a
    pace at which --long-iterations would not fit in --long-budget-s (said in the result)."""
    out = tmp / "long.pt"
    iterations = args.long_iterations
    if measured_ms:
        iterations = min(iterations, int(args.long_budget_s / (measured_ms / 1e3)) // 100 * 100)
    t0 = time.perf_counter()
    dcapps(*condense_argv(args.data, out, iterations, *args.long_flags.split()), timeout=1200)
    wall = time.perf_counter() - t0
    done = dcapps("evaluate", str(out), "--data", args.data, "--runs", str(args.eval_runs), "--epochs",
                  str(args.eval_epochs), "--device", "cuda", "--json", "--quiet", timeout=1200)
    res = json.loads(done.stdout.strip().splitlines()[-1])
    return {"iterations": iterations, "flags": args.long_flags, "condense_wall_s": wall,
            "condense_s_in_run": ReducedSet.load(str(out)).meta["wall_time_s"],
            "accuracy_mean": res["mean"], "accuracy_std": res["std"], "accuracies": res["accuracies"],
            "eval_epochs": args.eval_epochs, "eval_wall_s": time.perf_counter() - t0 - wall}


def torchrun_nccl(args, tmp: Path) -> dict:
    out = tmp / "torchrun.pt"
    dcapps(*condense_argv(args.data, out, args.iterations),
           launcher=(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1"))
    return {"world_size": ReducedSet.load(str(out)).meta["world_size"],
            "max_abs_diff_vs_one_process": max_diff(out, tmp / "a.pt")}


def lcmat(args, tmp: Path) -> dict:
    t0 = time.perf_counter()
    dcapps("condense", "--data", args.data, "--method", "lcmat", "--ipc", "10", "--iterations", "50",
           "--seed", "0", "--device", "cuda", "--quiet", "--out", str(tmp / "lcmat.pt"))
    images = ReducedSet.load(str(tmp / "lcmat.pt")).images
    return {"iterations": 50, "wall_s": time.perf_counter() - t0, "finite": bool(torch.isfinite(images).all())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="a data spec (an .npz of 28x28 images for the README's figures)")
    p.add_argument("--out", required=True, help="JSON file of the results")
    p.add_argument("--steps", default="graph,bench,profile,long,repeatable,resume")
    p.add_argument("--bench-iterations", type=int, default=30)
    p.add_argument("--iterations", type=int, default=40, help="iterations of repeatable/resume/torchrun")
    p.add_argument("--long-iterations", type=int, default=20000)
    p.add_argument("--long-flags", default="--no-deterministic --cuda-graph",
                   help="extra flags of the long condensation")
    p.add_argument("--long-budget-s", type=float, default=240, help="seconds the long condensation may take")
    p.add_argument("--eval-epochs", type=int, default=1000)
    p.add_argument("--eval-runs", type=int, default=5)
    p.add_argument("--tmp", default="/tmp/cuda_paths")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here: run this on a machine with a GPU", file=sys.stderr)
        return 2
    tmp = Path(args.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    data = load_data(args.data)
    steps = {"graph": lambda: graph_equals_eager(data), "bench": lambda: bench(args, data),
             "profile": lambda: profile(data), "repeatable": lambda: repeatable(args, tmp),
             "resume": lambda: resumed(args, tmp),
             "long": lambda: long_run(args, tmp, results["steps"].get("bench", {}).get(
                 "28x28x1 ipc10 fast fp32", {}).get("engine_ms")),
             "torchrun": lambda: torchrun_nccl(args, tmp), "lcmat": lambda: lcmat(args, tmp)}
    results = {"torch": torch.__version__, "device": torch.cuda.get_device_name(), "steps": {}}
    for name in args.steps.split(","):
        t0 = time.perf_counter()
        try:
            results["steps"][name] = {**steps[name](), "step_s": round(time.perf_counter() - t0, 1)}
        except Exception as e:  # record and go on: the next steps are independent
            results["steps"][name] = {"error": f"{type(e).__name__}: {e}"[-2000:]}
        print(name, json.dumps(results["steps"][name]), flush=True)
        tmp_out = Path(args.out + ".tmp")
        tmp_out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out.write_text(json.dumps(results, indent=1))
        os.replace(tmp_out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
