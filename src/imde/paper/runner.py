"""Resumable execution of named steps: a finished step leaves a marker and is not redone.

A step is a callable that writes its own result files (atomically, through :mod:`imde.utils.io`) and
returns a small JSON-able summary. Only after it returns is ``steps/<name>.done`` written (atomically too),
so a step that crashed, or was interrupted, has no marker and runs again next time. Forcing a step also
forgets every step that depends on it, directly or not.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imde.utils.io import atomic_write_json

log = logging.getLogger("imde.paper")

MARKER_DIR = "steps"


@dataclass(frozen=True)
class Step:
    """One unit of resumable work.

    Attributes:
        name: identifier, also the marker's file name (``steps/<name>.done``).
        run: does the work and returns a JSON-able summary stored in the marker.
        after: names of the steps whose outputs this one reads.
    """

    name: str
    run: Callable[[], Mapping[str, Any]]
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepRecord:
    """What a finished step left behind: its summary, how long it took, and whether it ran now."""

    name: str
    seconds: float
    summary: dict[str, Any]
    ran_now: bool


def check_steps(steps: Sequence[Step]) -> None:
    """Reject duplicate names and dependencies on unknown or later steps.

    Raises:
        ValueError: naming the offending step.
    """
    seen: set[str] = set()
    for step in steps:
        if step.name in seen:
            raise ValueError(f"step {step.name!r} is defined twice")
        missing = [dep for dep in step.after if dep not in seen]
        if missing:
            raise ValueError(f"step {step.name!r} depends on {missing}, which are not earlier steps")
        seen.add(step.name)


def dependents(steps: Sequence[Step], names: Iterable[str]) -> list[str]:
    """The named steps plus every step that depends on them, directly or transitively, in run order.

    Raises:
        ValueError: when a name is not a step, listing the valid names.
    """
    known = [step.name for step in steps]
    chosen = set(names)
    unknown = sorted(chosen - set(known))
    if unknown:
        raise ValueError(f"unknown step(s) {unknown}; the steps are: {', '.join(known)}")
    for step in steps:  # steps are in dependency order, so one pass reaches every descendant
        if chosen.intersection(step.after):
            chosen.add(step.name)
    return [name for name in known if name in chosen]


class StepRunner:
    """Runs steps in order inside ``run_dir``, skipping those whose marker exists.

    Args:
        run_dir: folder holding ``steps/*.done``.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.marker_dir = self.run_dir / MARKER_DIR

    def marker(self, name: str) -> Path:
        """Path of the marker written when step ``name`` finishes."""
        return self.marker_dir / f"{name}.done"

    def record(self, name: str) -> StepRecord | None:
        """The finished step's record, or ``None`` when it has not finished (or its marker is unreadable)."""
        path = self.marker(name)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return StepRecord(name=name, seconds=float(data["seconds"]), summary=data.get("summary", {}), ran_now=False)

    def forget(self, steps: Sequence[Step], names: Iterable[str]) -> list[str]:
        """Remove the markers of ``names`` and of every step depending on them; return the names forgotten."""
        forgotten = dependents(steps, names)
        for name in forgotten:
            self.marker(name).unlink(missing_ok=True)
        return forgotten

    def run(self, steps: Sequence[Step]) -> dict[str, StepRecord]:
        """Run every unfinished step in order, logging one line per step with its duration.

        Returns:
            A record per step, in order (``ran_now`` tells which ones ran in this call).
        """
        check_steps(steps)
        records: dict[str, StepRecord] = {}
        for index, step in enumerate(steps, start=1):
            prefix = f"[{index}/{len(steps)}] {step.name}"
            done = self.record(step.name)
            if done is not None:
                log.info("%s: done earlier (%.1f s), skipped", prefix, done.seconds)
                records[step.name] = done
                continue
            log.info("%s: running", prefix)
            start = time.perf_counter()
            summary = dict(step.run())
            seconds = time.perf_counter() - start
            marker = {
                "step": step.name,
                "seconds": seconds,
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                "summary": summary,
            }
            atomic_write_json(self.marker(step.name), marker)
            log.info("%s: finished in %.1f s", prefix, seconds)
            records[step.name] = StepRecord(step.name, seconds, summary, ran_now=True)
        return records
