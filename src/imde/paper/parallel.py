"""Training a study's variants side by side in worker processes (``train_workers`` > 1).

On a CPU, one small model cannot keep every core busy: oneDNN's convolutions on a few dozen channels scale
poorly past one thread, so one-thread trainings side by side get through more images per second than one
training with all the threads (measured in docs/benchmarks.md, "Training throughput").
:class:`ParallelTrainings` trains the unfinished variants, at most ``train_workers`` at a time, each in its
own ``spawn``-ed process with ``threads`` intra-op threads, and hands each ``train_<variant>`` step its result
when that step asks for it. The runs are the same as in one process: every training seeds itself from its
config, writes its own run directory and resumes from its ``last.pt``. The processes are not daemons, so a
training may still use ``DataLoader`` workers of its own.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import queue
import signal
import traceback
from collections.abc import Mapping
from dataclasses import replace
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from imde.training.config import TrainConfig

log = logging.getLogger("imde.paper")


def resumable(config: TrainConfig) -> bool:
    """Whether an earlier, interrupted attempt left ``checkpoints/last.pt`` to resume from."""
    return (Path(config.run_dir) / "checkpoints" / "last.pt").is_file()


def train_variant(variant: str, config: TrainConfig) -> dict[str, Any]:
    """Train one variant (resuming an interrupted attempt) and return the ``train_<variant>`` marker's summary."""
    from imde.experiments.results import to_jsonable
    from imde.training import train

    resume = resumable(config)
    log.info("training %s (%s, interp=%s, layers=%s)%s", variant, config.model.name, config.loss.interp,
             list(config.loss.layers), ", resuming" if resume else "")
    result = train(config, resume=resume)
    return {"run_dir": config.run_dir, "result": to_jsonable(result.summary())}


class Terminated(Exception):
    """Raised in a worker by ``SIGTERM``: the parent stopped it (another training failed)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"stopped by signal {signum}")


def stop_cleanly_on_sigterm() -> None:
    """Turn ``SIGTERM`` into :class:`Terminated`, so that ``finally`` blocks run (an atomic write in progress
    removes its temporary file) instead of the process vanishing mid-write."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def _worker(variant: str, config: dict[str, Any], threads: int | None, log_level: int, results: Queue) -> None:
    """:func:`train_variant` in a worker process, with ``threads`` intra-op threads and ``[variant]`` log lines;
    puts ``(variant, summary, None)`` or ``(variant, None, exception)`` on ``results``."""
    import torch

    stop_cleanly_on_sigterm()
    if threads is not None:
        torch.set_num_threads(threads)
    logging.basicConfig(level=log_level, format=f"[{variant}] %(message)s", force=True)
    try:
        results.put((variant, train_variant(variant, TrainConfig.from_yaml_dict(config)), None))
    except Terminated:  # the parent is no longer listening
        return
    except BaseException as err:  # every failure goes back to the parent, which re-raises it
        err.add_note("".join(traceback.format_exception(err)))
        try:
            pickle.dumps(err)
        except Exception:  # an exception that cannot cross processes is passed on as its text
            err = RuntimeError("".join(traceback.format_exception(err)))
        results.put((variant, None, err))


class ParallelTrainings:
    """The trainings of several variants, at most ``workers`` at a time, each in a ``spawn``-ed process.

    Progress bars are turned off in the workers (interleaved bars are unreadable); each worker logs its
    one-line epoch summaries prefixed with its variant.

    Args:
        configs: ``{variant: resolved training config}`` of the variants to train, started in this order.
        workers: processes at a time.
        threads: intra-op threads per process (``None``: PyTorch's default).

    Raises:
        ValueError: ``workers`` < 1 or no configs.
    """

    def __init__(self, configs: Mapping[str, TrainConfig], workers: int, threads: int | None) -> None:
        if workers < 1 or not configs:
            raise ValueError(f"train_workers={workers} for {len(configs)} trainings: expected at least 1 of each")
        self._context = multiprocessing.get_context("spawn")
        self._results: Queue = self._context.Queue()
        self._level = logging.getLogger().getEffectiveLevel()
        self._threads = threads
        self._waiting = {v: replace(c, train=replace(c.train, progress=False)).to_dict() for v, c in configs.items()}
        self._running: dict[str, BaseProcess] = {}
        self._done: dict[str, dict[str, Any]] = {}
        log.info("training %s side by side: %d processes at a time, intra-op threads each: %s", ", ".join(configs),
                 min(workers, len(configs)), threads or "PyTorch's default")
        for _ in range(min(workers, len(configs))):
            self._start_next()

    def _start_next(self) -> None:
        if not self._waiting:
            return
        variant, config = next(iter(self._waiting.items()))
        del self._waiting[variant]
        process = self._context.Process(target=_worker, name=f"imde-train-{variant}", daemon=False,
                                        args=(variant, config, self._threads, self._level, self._results))
        process.start()
        self._running[variant] = process

    def result(self, variant: str) -> dict[str, Any]:
        """Wait for ``variant``'s training and return its summary; the first failure stops every worker.

        Raises:
            KeyError: ``variant`` was not submitted (or its result was already collected).
            Exception: whatever a training raised (with its traceback and variant as notes), after every
                worker is terminated.
        """
        if variant not in self._done and variant not in self._running and variant not in self._waiting:
            raise KeyError(f"variant {variant!r} is not being trained here")
        try:
            while variant not in self._done:
                finished, summary, error = self._next_result()
                self._running.pop(finished).join()
                if error is not None:
                    error.add_note(f"(while training variant {finished!r} in a worker process)")
                    raise error
                self._done[finished] = summary
                self._start_next()
        except BaseException:
            self.close()
            raise
        return self._done.pop(variant)

    def _next_result(self) -> tuple[str, dict[str, Any] | None, BaseException | None]:
        """The next finished training; a worker that died without reporting (killed, out of memory) is an error."""
        while True:
            dead = [v for v, p in self._running.items() if not p.is_alive()]
            try:  # a worker's result is in the queue before it exits, so a dead worker's is there by now
                return self._results.get(timeout=0.5 if dead else 2.0)
            except queue.Empty:
                if dead:
                    code = self._running[dead[0]].exitcode
                    return dead[0], None, RuntimeError(f"the worker training variant {dead[0]!r} exited with code "
                                                       f"{code} without reporting a result")

    def close(self) -> None:
        """Terminate every worker still running and forget the trainings not yet started."""
        for process in self._running.values():
            if process.is_alive():
                process.terminate()
            process.join()
        self._running, self._waiting = {}, {}
