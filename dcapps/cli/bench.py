"""`dcapps bench condense`: the DM engine's time per iteration against the reference loop.

Both run in this process on the same data and settings, taking turns iteration by iteration
(`condense_core.reference` computes the same set, the straightforward way). Printed: the median
seconds per iteration of each and their ratio, the engine's achieved GFLOP/s (the iteration's
convolution and matmul FLOPs, counted once by PyTorch's FLOP counter) beside this machine's
measured fp32 matmul peak, and the peak memory of the engine. Timings are for reading, never for
tests.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

from .common import (add_data_arguments, add_output_arguments, add_setting_flags, add_stream_argument, emit_json,
                     given_settings)

HELP = {"bench": "time the condensation engine against a straightforward reference loop"}


def add_arguments(name, p: argparse.ArgumentParser) -> None:
    from condense_core.methods.dm import DM

    p.add_argument("what", choices=("condense",), help="what to time (condense: one DM iteration)")
    add_data_arguments(p)
    add_stream_argument(p)
    p.add_argument("--iterations", type=int, default=5, help="timed iterations of each loop (5; the median is kept)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first (compilation, CUDA graph "
                                                         "capture) (3)")
    add_setting_flags(p, {"dm": DM}, skip=("iterations",))  # DM's settings, except its iteration count
    add_output_arguments(p)


def run(args) -> int:
    import torch

    from condense_core import InputError, load_data
    from condense_core.engine import Engine
    from condense_core.methods.dm import DM
    from condense_core.reference import ReferenceLoop
    from condense_core.runtime import reproducible, resolve_device
    from condense_core.settings import flag_name

    if args.iterations < 1:
        raise InputError(f"--iterations must be >= 1, got {args.iterations}")
    if args.warmup < 0:
        raise InputError(f"--warmup must be >= 0, got {args.warmup}")
    settings = given_settings(DM, args, "bench")
    device = resolve_device(settings.get("device", "auto"), flag_name)
    data = load_data(args.data, args.root, args.download, args.stream, flag_name)
    dm = DM(**{**settings, "device": str(device), "iterations": args.warmup + args.iterations})
    dm.validate(data)
    with reproducible(device, dm.deterministic):  # the kernels a condensation runs with
        peak = matmul_peak(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        engine = Engine(dm, data, device)
        for _ in range(args.warmup):  # compilation, allocator and cache warm-up
            engine.step()
        memory = peak_memory(device)
        reference = ReferenceLoop(dm, data, device)
        flops = count_flops(reference.step)  # the same arithmetic as one engine iteration
        engine_s, reference_s = interleaved_seconds([engine, reference], args.iterations, device)
    streamed = not torch.is_tensor(data.x_train)
    res = {"data": args.data, "streamed": streamed, "image_shape": [data.channels, *data.image_size],
           "classes": len(data.present_labels()), "ipc": dm.ipc, "batch_real": dm.batch_real,
           "model": dm.model, "iterations": args.iterations, "precision": dm.precision,
           "channels_last": dm.channels_last, "compile": dm.compile, "cuda_graph": engine.graphed,
           "deterministic": dm.deterministic, "real_chunk": engine.span_rows,
           "real_forwards": len(engine.real_forwards),
           "engine_s_per_it": engine_s, "reference_s_per_it": reference_s, "speedup": reference_s / engine_s,
           "gflop_per_it": flops / 1e9, "engine_gflops": flops / engine_s / 1e9, "matmul_peak_gflops": peak,
           "peak_memory_gb": memory, "machine": machine(device), "torch": torch.__version__}
    flags = ", ".join([dm.precision] + ["channels-last"] * dm.channels_last + ["compiled"] * dm.compile
                      + ["CUDA graph"] * engine.graphed + ["deterministic"] * (dm.deterministic and device.type == "cuda"))
    print(f"data      {args.data}{' (streamed from disk)' * streamed}: {res['classes']} classes of "
          f"{'x'.join(map(str, res['image_shape']))}, ipc {dm.ipc}, batch_real {dm.batch_real}, "
          f"{dm.model}; {res['machine']}")
    print(f"engine    {engine_s:8.3f} s/iteration  ({flags}, real chunk {engine.span_rows}, "
          f"{len(engine.real_forwards)} real forwards)")
    print(f"reference {reference_s:8.3f} s/iteration  (fresh network, one forward per class, fp32)")
    print(f"speed-up  {res['speedup']:8.2f}x")
    print(f"engine    {res['engine_gflops']:8.1f} GFLOP/s ({res['gflop_per_it']:.1f} GFLOP per iteration); "
          f"fp32 matmul peak {peak:.1f} GFLOP/s ({100 * res['engine_gflops'] / peak:.0f}%)")
    print(f"memory    {memory:8.2f} GB peak ({'CUDA allocated' if device.type == 'cuda' else 'resident'}, "
          "data and engine)")
    if args.json:
        emit_json(res)
    return 0


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_seconds(loops: list, n: int, device) -> list[float]:
    """Median wall seconds of one `step()` of each loop over `n` rounds; the loops take turns
    within a round, so a machine that slows down or speeds up mid-run affects both alike."""
    times: list[list[float]] = [[] for _ in loops]
    for _ in range(n):
        for loop, record in zip(loops, times):
            _sync(device)
            t0 = time.perf_counter()
            loop.step()
            _sync(device)
            record.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def matmul_peak(device, n: int = 2048, seconds: float = 1.0) -> float:
    """This machine's fp32 matmul throughput in GFLOP/s (best of repeated n x n products)."""
    import torch

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def count_flops(fn) -> float:
    """FLOPs of one call of `fn` (convolutions and matrix products, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def peak_memory(device) -> float:
    """GB: CUDA memory allocated at peak, or the process's peak resident set on a CPU."""
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


def machine(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {torch.get_num_threads()} threads"
