"""Check and time the engine's CUDA paths on a machine with a GPU (CI has none, so no test can).

    python benchmarks/cuda_paths.py --data runs/fashion_full.npz --out runs/bench/cuda_paths.json

What it runs on `cuda` (the command-line steps in processes of their own):
1. `dcapps bench condense` (ipc 10, batch_real 256) in fp32, bf16 autocast, compiled, and compiled
   bf16: engine and reference seconds per iteration, speed-up, peak CUDA memory.
2. The engine against the reference loop for the same draws: the largest difference of the images.
3. The same condensation twice: are CUDA runs repeatable bit for bit?
4. A run stopped by SIGINT after its first checkpoint and resumed, against an uninterrupted run.
5. `torchrun --nproc-per-node 1` (a process group on nccl) against one plain process.
6. LCMat-C (the DM subclass with trained networks and curvature terms) on the GPU.
Every step's result is printed as it ends and written to --out (so a run cut short keeps what it
finished); a step that fails records its error and the next one runs.
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

from condense_core import SyntheticSet, load_data  # noqa: E402
from condense_core.engine import Engine  # noqa: E402
from condense_core.methods.dm import DM  # noqa: E402
from condense_core.reference import ReferenceLoop  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def dcapps(*argv, launcher=(sys.executable,), timeout=600) -> subprocess.CompletedProcess:
    done = subprocess.run([*launcher, "-m", "dcapps", *argv], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-600:]}")
    return done


def condense_argv(data, out, iterations, *extra):
    return ["condense", "--data", data, "--method", "dm", "--ipc", "10", "--batch-real", "256",
            "--iterations", str(iterations), "--seed", "0", "--device", "cuda", "--quiet",
            "--out", str(out), *extra]


def max_diff(a: Path, b: Path) -> float:
    return (SyntheticSet.load(str(a)).images - SyntheticSet.load(str(b)).images).abs().max().item()


def bench(args, flags: str) -> dict:
    done = dcapps("bench", "condense", "--data", args.data, "--ipc", "10", "--batch-real", "256",
                  "--iterations", str(args.bench_iterations), "--device", "cuda", "--json", *flags.split())
    res = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: res[k] for k in ("engine_s_per_it", "reference_s_per_it", "speedup", "engine_gflops",
                                "peak_memory_gb", "real_chunk", "machine")}


def engine_vs_reference(args) -> dict:
    data, device = load_data(args.data), torch.device("cuda")
    dm = DM(ipc=10, batch_real=256, iterations=20, seed=0, device="cuda", progress=False)
    engine, ref = Engine(dm, data, device), ReferenceLoop(dm, data, device)
    for _ in range(dm.iterations):
        engine.step()
        ref.step()
    diff = (engine.result()[0] - ref.images()).abs()
    return {"iterations": dm.iterations, "max_abs_diff": diff.max().item(), "mean_abs_diff": diff.mean().item()}


def repeatable(args, tmp: Path) -> dict:
    for name in ("a", "b"):
        dcapps(*condense_argv(args.data, tmp / f"{name}.pt", args.iterations))
    return {"iterations": args.iterations, "max_abs_diff": max_diff(tmp / "a.pt", tmp / "b.pt")}


def resumed(args, tmp: Path) -> dict:
    out = tmp / "resumed.pt"
    proc = subprocess.Popen([sys.executable, "-m", "dcapps",
                             *condense_argv(args.data, out, args.iterations, "--checkpoint-every", "10")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    deadline = time.time() + 300
    while not Path(str(out) + ".ckpt").exists():
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"no checkpoint appeared: {proc.communicate()[1][-600:]}")
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    stopped = torch.load(str(out) + ".ckpt", weights_only=True)["iteration"]
    dcapps(*condense_argv(args.data, out, args.iterations, "--resume"))
    return {"exit_on_sigint": proc.returncode, "stopped_after": stopped,
            "max_abs_diff_vs_uninterrupted": max_diff(out, tmp / "a.pt")}


def torchrun_nccl(args, tmp: Path) -> dict:
    out = tmp / "torchrun.pt"
    dcapps(*condense_argv(args.data, out, args.iterations),
           launcher=(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1"))
    return {"world_size": SyntheticSet.load(str(out)).meta["world_size"],
            "max_abs_diff_vs_one_process": max_diff(out, tmp / "a.pt")}


def lcmat(args, tmp: Path) -> dict:
    t0 = time.perf_counter()
    dcapps("condense", "--data", args.data, "--method", "lcmat", "--ipc", "10", "--iterations", "50",
           "--seed", "0", "--device", "cuda", "--quiet", "--out", str(tmp / "lcmat.pt"))
    images = SyntheticSet.load(str(tmp / "lcmat.pt")).images
    return {"iterations": 50, "wall_s": time.perf_counter() - t0, "finite": bool(torch.isfinite(images).all())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="a data spec (an .npz of 28x28 images for the README's figures)")
    p.add_argument("--out", required=True, help="JSON file of the results")
    p.add_argument("--bench-iterations", type=int, default=30)
    p.add_argument("--iterations", type=int, default=40, help="iterations of the condensations in steps 3-5")
    p.add_argument("--tmp", default="/tmp/cuda_paths")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here: run this on a machine with a GPU", file=sys.stderr)
        return 2
    tmp = Path(args.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    steps = [(f"bench {flags or 'fp32'}", lambda f=flags: bench(args, f))
             for flags in ("", "--precision bf16", "--compile --precision bf16")]
    steps += [("engine vs reference", lambda: engine_vs_reference(args)),
              ("repeatable", lambda: repeatable(args, tmp)),
              ("resume after SIGINT", lambda: resumed(args, tmp)),
              ("torchrun nccl", lambda: torchrun_nccl(args, tmp)),
              ("lcmat", lambda: lcmat(args, tmp)),
              ("bench --compile", lambda: bench(args, "--compile"))]
    results = {"torch": torch.__version__, "device": torch.cuda.get_device_name(), "steps": {}}
    for name, step in steps:
        t0 = time.perf_counter()
        try:
            results["steps"][name] = {**step(), "step_s": round(time.perf_counter() - t0, 1)}
        except Exception as e:  # record and go on: the next steps are independent
            results["steps"][name] = {"error": f"{type(e).__name__}: {e}"}
        print(name, json.dumps(results["steps"][name]), flush=True)
        tmp_out = Path(args.out + ".tmp")
        tmp_out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out.write_text(json.dumps(results, indent=1))
        os.replace(tmp_out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
