"""The evaluation protocol: train fresh networks from scratch on a set, test on the real test split.

Defaults follow the DM paper: ConvNet, SGD (lr 0.01, momentum 0.9, weight decay 5e-4), learning
rate x0.1 at half the epochs, DSA on in independent mode. A synthetic set, a selected subset and
the whole training set (`--full`) all go through `train_model`/`evaluate`, so their figures are
comparable.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .augment import DSA
from .data import ImageData
from .errors import InputError
from .networks import build_model, check_fits, reinitialize
from .knowledge import distillation_loss, recorded_logits
from .progress import tracked
from .reduced import SoftTargets
from .runtime import make_generator, resolve_device
from .settings import check, setting
from .training import TrainSettings


@dataclass
class EvaluationSettings:
    """How many fresh networks the protocol trains on a set (`dcapps evaluate --runs`)."""

    runs: int = setting(5, "networks trained from scratch and tested (the mean and std over them are "
                           "reported)", low=1)


def train_model(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainSettings,
                generator: torch.Generator, progress: bool | str = False, desc: str = "train",
                on_epoch=None, targets: SoftTargets | None = None) -> torch.nn.Module:
    """Train `model` in place on (x, y) with SGD and the step schedule; returns it.

    With soft `targets` (one row of logits per image of x) the loss is `distillation_loss` at
    their temperature instead of the labels' cross-entropy alone. `progress` shows the epochs
    with the latest mini-batch loss (`progress.tracked`); `on_epoch(epoch, model)`, if given, is
    called after each epoch (e.g. to report accuracy).
    """
    if not torch.is_tensor(x):
        raise InputError("training a network needs its images in memory; this data set is streamed "
                         "from disk (asked for, or too large for memory): condense it with dm starting from "
                         "real images or noise, or select randomly")
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    soft = targets.logits.to(device) if targets is not None else None
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
            out = model(xb)
            loss = (F.cross_entropy(out, yb) if soft is None
                    else distillation_loss(out, yb, soft[idx], targets.temperature))
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


def evaluate(x: torch.Tensor, y: torch.Tensor, data: ImageData, runs: int = EvaluationSettings.runs, seed: int = 0,
             model: str = "ConvNet", model_options: dict | None = None, cfg: TrainSettings | None = None,
             device: str = "auto", progress: bool | str = False, targets: SoftTargets | None = None) -> dict:
    """Train `runs` fresh networks on (x, y), with soft `targets` where given (see `train_model`),
    and test each on `data`'s test split: mean, std, all. Everything that would stop it is
    checked before the first network trains: something to train on, targets that fit it, a
    test split to test on, images the network fits, the device."""
    check(EvaluationSettings, {"runs": runs})
    if len(x) == 0:
        raise InputError("nothing to train on: the set holds no images")
    if targets is not None and tuple(targets.logits.shape) != (len(x), data.num_classes):
        raise InputError(f"soft targets of shape {tuple(targets.logits.shape)} do not fit {len(x)} images "
                         f"of {data.num_classes} classes")
    data.check_test_split()
    check_fits(model, data.channels, data.image_size, data.spec, **(model_options or {}))
    cfg = cfg or TrainSettings()
    dev = resolve_device(device)
    accs, t0 = [], time.time()
    for r in tracked(range(runs), desc="runs", progress=progress):
        g = make_generator(seed, dev, "evaluate", r)
        net = reinitialize(build_model(model, data.channels, data.num_classes, data.image_size,
                                       **(model_options or {})), g).to(dev)
        train_model(net, x, y, cfg, g, progress, desc=f"run {r + 1}/{runs}", targets=targets)
        accs.append(test_accuracy(net, data.x_test, data.y_test))
    t = torch.tensor(accs, dtype=torch.float64)
    return {"mean": t.mean().item(), "std": t.std(unbiased=False).item() if runs > 1 else 0.0,
            "accuracies": accs, "runs": runs, "seed": seed, "model": model,
            "model_options": model_options or {}, "train": asdict(cfg), "n_train": len(x),
            "targets": None if targets is None else {"source": targets.source, "temperature": targets.temperature},
            "seconds": time.time() - t0}


# How far below its other logits a teacher's logit for a class it never saw is set, in units of the
# temperature: exp(-20) of the probability, i.e. none.
UNSEEN_MARGIN = 20.0


def teacher_targets(method, data: ImageData, images: torch.Tensor, device: torch.device) -> SoftTargets:
    """The soft targets of `images` (training images, in `data`'s normalisation) under a teacher:
    `method`'s network trained `method.teacher_epochs` on `data`'s training split with the
    evaluation protocol (seeded from the method's seed), softened at `method.temperature`.

    A class with no training image (e.g. a class of a later experience, when a memory's teacher
    sees one experience) carries no knowledge: the teacher's logit for it is whatever its
    untrained output gives, so it is set `UNSEEN_MARGIN` temperatures below the image's lowest
    other logit, and the soft targets give it no probability."""
    g = method.generator(device, "teacher")
    teacher = train_model(method.network(data, device, g), data.x_train, data.y_train,
                          TrainSettings(epochs=method.teacher_epochs), g, method.progress, desc="teacher")
    logits = recorded_logits(teacher, images)
    seen = torch.zeros(logits.shape[1], dtype=torch.bool)
    seen[data.present_labels()] = True
    if not seen.all():
        floor = logits[:, seen].min(1, keepdim=True).values - UNSEEN_MARGIN * method.temperature
        logits[:, ~seen] = floor
    return SoftTargets(logits, method.temperature, "teacher")
