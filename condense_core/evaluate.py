"""The evaluation protocol: train fresh networks from scratch on a set, test on the real test split.

Defaults follow the DM paper: ConvNet, SGD (lr 0.01, momentum 0.9, weight decay 5e-4), learning
rate x0.1 at half the epochs, DSA on in independent mode. A synthetic set, a selected subset and
the whole training set (`--full`) all go through `train_model`/`evaluate`, so their figures are
comparable.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict

import torch
import torch.nn.functional as F

from .augment import DSA
from .data import ImageData
from .errors import InputError
from .networks import build_model, check_fits, reinitialize
from .progress import tracked
from .runtime import make_generator, resolve_device
from .training import TrainSettings


def train_model(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainSettings,
                generator: torch.Generator, progress: bool | str = False, desc: str = "train",
                on_epoch=None) -> torch.nn.Module:
    """Train `model` in place on (x, y) with SGD and the step schedule; returns it.

    `progress` shows the epochs with the latest mini-batch loss (`progress.tracked`);
    `on_epoch(epoch, model)`, if given, is called after each epoch (e.g. to report accuracy).
    """
    if not torch.is_tensor(x):
        raise InputError("training a network needs its images in memory; this data set is streamed "
                         "from disk (--stream, or too large): condense it with dm (--init real or noise), "
                         "or select randomly")
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    opt = cfg.optimizer(model.parameters())
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [max(1, cfg.epochs // 2)], 0.1)
    aug = DSA() if cfg.dsa else None
    n = len(x)
    steps = max(1, math.ceil(n / cfg.batch_size))
    model.train()
    last = [None]  # the latest mini-batch loss, read only when progress is shown
    for epoch in tracked(range(cfg.epochs), desc=desc, progress=progress,
                         loss=lambda: None if last[0] is None else float(last[0])):
        order = torch.randperm(n, generator=generator, device=generator.device).to(device)
        for s in range(steps):
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            xb, yb = x[idx], y[idx]
            if aug is not None:
                xb = aug(xb, generator)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last[0] = loss.detach()
        sched.step()
        if on_epoch is not None:
            on_epoch(epoch, model)
            model.train()
    return model


@torch.no_grad()
def test_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy of `model` on (x, y), in eval mode."""
    if len(x) == 0:
        raise InputError("the data has no test split to evaluate on")
    device = next(model.parameters()).device
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size].to(device)).argmax(1) == y[i:i + batch_size].to(device)).sum().item()
    return correct / len(x)


def evaluate(x: torch.Tensor, y: torch.Tensor, data: ImageData, runs: int = 5, seed: int = 0,
             model: str = "ConvNet", model_options: dict | None = None, cfg: TrainSettings | None = None,
             device: str = "auto", progress: bool | str = False) -> dict:
    """Train `runs` fresh networks on (x, y), test each on `data`'s test split: mean, std, all.
    Everything that would stop it is checked before the first network trains: something to
    train on, a test split to test on, images the network fits, the device."""
    if runs < 1:
        raise InputError(f"--runs must be >= 1, got {runs}")
    if len(x) == 0:
        raise InputError("nothing to train on: the set holds no images")
    data.check_test_split()
    check_fits(model, data.channels, data.image_size, data.spec, **(model_options or {}))
    cfg = cfg or TrainSettings()
    dev = resolve_device(device)
    accs, t0 = [], time.time()
    for r in tracked(range(runs), desc="runs", progress=progress):
        g = make_generator(seed, dev, "evaluate", r)
        net = reinitialize(build_model(model, data.channels, data.num_classes, data.image_size,
                                       **(model_options or {})), g).to(dev)
        train_model(net, x, y, cfg, g, progress, desc=f"run {r + 1}/{runs}")
        accs.append(test_accuracy(net, data.x_test, data.y_test))
    t = torch.tensor(accs, dtype=torch.float64)
    return {"mean": t.mean().item(), "std": t.std(unbiased=False).item() if runs > 1 else 0.0,
            "accuracies": accs, "runs": runs, "seed": seed, "model": model,
            "model_options": model_options or {}, "train": asdict(cfg), "n_train": len(x),
            "seconds": time.time() - t0}
