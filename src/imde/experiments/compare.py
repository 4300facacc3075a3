"""Table 2: selectivity and accuracy of models trained with different losses (baseline, L_reg, L_assign)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imde.experiments.dissect import DissectResult
from imde.experiments.results import SavedResult, write_csv, write_json
from imde.utils.io import atomic_write_text

TABLE2_METRICS: tuple[str, ...] = ("delta1", "delta2", "delta3", "rms", "rel", "log10")
"""Accuracy columns of Table 2, in the paper's order."""


@dataclass
class ComparisonTable(SavedResult):
    """One row per model, columns ``selectivity_<split>`` then the metrics (Table 2).

    Attributes:
        columns: column names in order.
        rows: ``{model name: {column: value}}`` (NaN where a value is missing).
        files: files written by ``save``.
    """

    columns: list[str]
    rows: dict[str, dict[str, float]]
    files: list[Path] = field(default_factory=list)
    FILE = "comparison"

    def to_dict(self) -> dict[str, Any]:
        """``{"columns": [...], "rows": {model: {column: value}}}``."""
        return {"columns": list(self.columns), "rows": {name: dict(row) for name, row in self.rows.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ComparisonTable:
        """The inverse of :meth:`to_dict`."""
        return cls(list(data["columns"]), {name: dict(row) for name, row in data["rows"].items()})

    def to_markdown(self, digits: int = 3) -> str:
        """A Markdown table (missing values blank)."""
        lines = ["| model | " + " | ".join(self.columns) + " |", "|---" * (len(self.columns) + 1) + "|"]
        for name, row in self.rows.items():
            cells = [_format(row[column], digits) for column in self.columns]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def to_latex(self, digits: int = 3) -> str:
        """LaTeX rows ``name & v1 & v2 \\\\`` in column order (missing values blank)."""
        return "".join(
            f"{name} & " + " & ".join(_format(row[column], digits) for column in self.columns) + " \\\\\n"
            for name, row in self.rows.items()
        )

    def save(self, out_dir: str | Path, name: str | None = None) -> list[Path]:  # type: ignore[override]
        """Write ``<name>.json`` (``comparison`` by default), ``.csv`` and ``.md`` atomically."""
        out, stem = Path(out_dir), name or self.FILE
        rows = [[model, *(row[column] for column in self.columns)] for model, row in self.rows.items()]
        self.files = [
            write_json(out, f"{stem}.json", self),
            write_csv(out / f"{stem}.csv", ["model", *self.columns], rows),
            atomic_write_text(out / f"{stem}.md", self.to_markdown()),
        ]
        return self.files


def _format(value: float, digits: int) -> str:
    return "" if not math.isfinite(value) else f"{value:.{digits}f}"


def _metrics_of(evaluation: Any, name: str) -> Mapping[str, float]:
    metrics = getattr(evaluation, "metrics", evaluation)
    if not isinstance(metrics, Mapping):
        kind = type(evaluation).__name__
        raise ValueError(f"results[{name!r}]: expected an EvalResult or a metrics dict, got {kind}")
    return metrics


def compare_reg_assign(
    results: Mapping[str, tuple[DissectResult, Any]],
    *,
    splits: Sequence[str] = ("train", "test"),
    metrics: Sequence[str] = TABLE2_METRICS,
    out_dir: str | Path | None = None,
) -> ComparisonTable:
    """Build Table 2 from each model's dissection and evaluation.

    Args:
        results: ``{model name (e.g. "baseline", "reg", "assign"): (DissectResult, EvalResult or metrics dict)}``.
        splits: dissection splits reported as ``selectivity_<split>`` (mean Eq. 2 DS over all dissected units);
            a split a model was not dissected on is NaN.
        metrics: metric columns (missing metrics are NaN).
        out_dir: when given, the table is saved there.
    """
    if not results:
        raise ValueError("results: expected at least one {model: (DissectResult, metrics)} entry")
    columns = [f"selectivity_{split}" for split in splits] + list(metrics)
    rows: dict[str, dict[str, float]] = {}
    for name, entry in results.items():
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], DissectResult)):
            raise ValueError(f"results[{name!r}]: expected a (DissectResult, metrics) pair, got {type(entry).__name__}")
        dissection, evaluation = entry
        values = _metrics_of(evaluation, name)
        row = {
            f"selectivity_{split}": dissection.selectivity(split) if split in dissection.layers else math.nan
            for split in splits
        }
        row.update({metric: float(values.get(metric, math.nan)) for metric in metrics})
        rows[name] = row
    table = ComparisonTable(columns=columns, rows=rows)
    if out_dir is not None:
        table.save(out_dir)
    return table
