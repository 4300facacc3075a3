"""Run logs: TensorBoard events under ``run_dir/tb/`` and a long-format ``run_dir/metrics.csv``.

``metrics.csv`` has one row per scalar: ``epoch,step,kind,name,value`` (``kind`` is ``step`` for the
per-step training log, ``epoch`` for per-epoch summaries, ``eval`` for held-out metrics and ``dissect``
for layer selectivity). A resumed run drops the rows written after its checkpoint before appending, and
TensorBoard purges the same steps, so the logs read as one uninterrupted run. Only rank 0 writes.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imde.utils.io import atomic_write_text
from imde.utils.optional import require

CSV_HEADER = ("epoch", "step", "kind", "name", "value")


class RunLogger:
    """Writes scalars to TensorBoard and ``metrics.csv`` (a no-op object when ``enabled`` is ``False``).

    Args:
        run_dir: the run directory.
        enabled: write anything at all (``True`` on rank 0 only).
        resume_step: when resuming, the checkpoint's step: later rows and events are discarded.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_step: int | None = None) -> None:
        self.enabled = enabled
        self.csv_path = Path(run_dir) / "metrics.csv"
        self._writer: Any = None
        self._file: Any = None
        if not enabled:
            return
        SummaryWriter = require("torch.utils.tensorboard", extra="train").SummaryWriter

        kept = _rows_up_to(self.csv_path, resume_step) if resume_step is not None else []
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([CSV_HEADER, *kept])
        atomic_write_text(self.csv_path, buffer.getvalue())
        self._file = open(self.csv_path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        self._csv = csv.writer(self._file, lineterminator="\n")
        purge = None if resume_step is None else resume_step + 1
        self._writer = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=purge)

    def log(self, kind: str, values: Mapping[str, float], *, step: int, epoch: int) -> None:
        """Write ``values`` as ``kind/name`` scalars at ``step`` (and ``epoch`` in the CSV)."""
        if not self.enabled:
            return
        for name, value in values.items():
            value = float(value)
            self._csv.writerow((epoch, step, kind, name, repr(value)))
            if math.isfinite(value):
                self._writer.add_scalar(f"{kind}/{name}", value, step)
        self._file.flush()

    def close(self) -> None:
        """Flush and close the files (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None


def _rows_up_to(path: Path, step: int) -> list[list[str]]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    return [row for row in rows[1:] if len(row) == len(CSV_HEADER) and int(row[1]) <= step]


def read_metrics_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of ``metrics.csv`` as dicts with ``epoch``/``step`` ints and ``value`` floats."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return [
            {"epoch": int(r["epoch"]), "step": int(r["step"]), "kind": r["kind"], "name": r["name"],
             "value": float(r["value"])}
            for r in reader
        ]
