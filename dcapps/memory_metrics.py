"""What each memory build costs and gives, reported through Avalanche's evaluation plugin.

Every time a `ReducedSetBuffer` builds its memory for an experience (`DMReplay` and
`ReducedSetReplayPlugin` do it after each experience), `memory_build` publishes, on the
strategy's `EvaluationPlugin`, the metrics Avalanche's loggers show beside accuracy and loss
(`InteractiveLogger`/`TextLogger` print them, `TensorboardLogger` plots them; Avalanche 0.6's
`CSVLogger` writes only its fixed accuracy and loss columns, so not these):

    MemoryBuild_Seconds/train_phase/train_stream/Exp003    wall seconds of the build
    MemoryBuild_LossFirst/train_phase/train_stream/Exp003  condensation loss at the first iteration
    MemoryBuild_LossLast/train_phase/train_stream/Exp003   ... and at the last (condensers only)
    Memory_StoredBytes/train_phase/train_stream/Exp003     bytes of the whole memory now stored

It also logs one line to the `dcapps` logger (INFO), unless the method's `progress` setting is
`off` (as in `dcapps cl run`, which shows its units instead); that setting also shows the build's
own iterations (`method_settings={"progress": "log"}`).
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Iterator

from avalanche.evaluation.metric_results import MetricValue

from condense_core.progress import mode_of

logger = logging.getLogger("dcapps")
PHASE = "train_phase/train_stream"


@contextmanager
def memory_build(strategy, storage) -> Iterator[None]:
    """Time the memory build inside the block, then report it on `strategy`'s evaluator."""
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    made = storage.sets[-1].meta if storage.sets else {}
    experience = int(made.get("experience", len(storage.sets) - 1))
    stored = sum(s.images.numel() * s.images.element_size() for s in storage.sets)
    values = {"MemoryBuild_Seconds": seconds, "MemoryBuild_LossFirst": made.get("loss_first"),
              "MemoryBuild_LossLast": made.get("loss_last"), "Memory_StoredBytes": stored}
    evaluator = getattr(strategy, "evaluator", None)
    x = getattr(getattr(strategy, "clock", None), "train_iterations", experience)
    for name, value in values.items():
        if value is not None and evaluator is not None:
            evaluator.publish_metric_value(MetricValue(storage, f"{name}/{PHASE}/Exp{experience:03d}", value, x))
    if mode_of(storage.method_settings.get("progress", "auto")) == "off":
        return
    loss = (f", loss {made['loss_first']:.4g} -> {made['loss_last']:.4g}" if "loss_last" in made else "")
    logger.info("memory for experience %d built in %.1f s%s; %d images, %.1f KB stored", experience, seconds,
                loss, len(storage), stored / 1024)
