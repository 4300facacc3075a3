"""The run report: a static, self-contained ``report.html`` and a terminal-friendly ``results.md``.

``build_report(run_dir)`` reads what a study left in its run directory (see ``docs/report.md``)::

    config.yaml  results.json  dissect/<variant>/dissect.json  atlas/<variant>/index.json
    explain/<variant>.json  figures/*.png

and writes ``report.html`` (tables shaped like the paper's Tables 1-3, the claims as badges, the
dissection plots of Fig. 3/4, the ablation curves of Fig. 2, the figures of Fig. 1/5/6/8 and the unit
browser) and ``results.md`` beside them, atomically. A piece that is missing is named in the page;
the report never needs a network connection (images are embedded as data URIs, CSS and JS inline).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imde.paper.claims import correction_gain_replicates, model_replicates, paired, replicate_interval
from imde.utils.config import load_yaml
from imde.utils.io import atomic_write_text
from imde.utils.optional import require

TEMPLATES = Path(__file__).resolve().parent / "templates"

# The paper's variants in table order; other variant names found in a run follow alphabetically.
VARIANT_ORDER = ("baseline", "assign", "reg")
VARIANT_LABELS = {"baseline": "Baseline", "assign": "Interpretable (L_assign)", "reg": "Regularised (L_reg)",
                  "control": "Random weights (control)"}

# (key, column title, +1 if higher is better else -1, decimals): Table 1's depth metrics.
METRICS = (
    ("delta1", "δ1 ↑", 1, 3),
    ("delta2", "δ2 ↑", 1, 3),
    ("delta3", "δ3 ↑", 1, 3),
    ("rms", "RMS ↓", -1, 3),
    ("rel", "REL ↓", -1, 3),
    ("log10", "log10 ↓", -1, 3),
)
SELECTIVITY_DECIMALS = 4
SHORT_LIST = 16  # number lists up to this length are listed in the experiment tables (longer ones are data)

# Figure sections: a PNG in figures/ goes to the first section whose keyword its file name contains.
FIGURE_SECTIONS = (
    ("ablation", ("ablat", "fig2")),
    ("explain", ("explain", "advers", "fgsm", "fig8")),
    ("features", ("feature", "fmap", "fig1", "fig5")),
    ("predictions", ("predict", "depth_map", "fig6")),
    ("dissection", ("dissect", "tuning", "response", "selectiv", "hist", "fig3", "fig4")),
)

# the per-variant files the page shows beyond results.json (which carries eval, correction and ablation)
_EXPERIMENT_DIRS = ("explain",)


@dataclass
class Table:
    """A table shared by the HTML and the markdown renderings: cells are display strings.

    ``best[i][j]`` marks the best value of column ``j`` in row ``i`` (shown bold).
    """

    title: str
    caption: str
    header: list[str]
    rows: list[list[str]]
    best: list[list[bool]] = field(default_factory=list)


@dataclass
class RunContents:
    """Everything the report shows, read from a run directory (``None`` / empty where absent)."""

    run_dir: Path
    name: str
    config_text: str | None
    results: dict[str, Any] | None
    dissect: dict[str, dict[str, dict[str, dict[str, Any]]]]
    atlas: dict[str, dict[str, Any]]
    experiments: dict[str, dict[str, Any]]
    figures: dict[str, list[dict[str, Any]]]
    missing: dict[str, list[str]]


STUDY_OUTPUTS = ("results.json", "steps", "figures", "dissect", "eval")
"""What a study's run directory holds once its first steps have run (``steps/`` holds their markers)."""


def _is_study_dir(root: Path) -> bool:
    """``root`` holds a study's outputs, or at least its config (a study that has just started)."""
    if any((root / name).exists() for name in STUDY_OUTPUTS):
        return True
    config = root / "config.yaml"
    return config.is_file() and "variants" in load_yaml(config)


def build_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` and ``results.md`` into ``run_dir`` and return the path of the HTML page.

    Args:
        run_dir: a run directory written by ``imde study`` (or by hand, see ``docs/report.md``).

    Raises:
        FileNotFoundError: when ``run_dir`` does not exist.
        ValueError: when a file that is present is malformed (the message names the file and the key).
    """
    run = load_run(run_dir)
    tables = results_tables(run.results)
    html = _render("report.html.j2", run=run, tables=tables, data=_page_data(run), **_page_context(run))
    markdown = _render("results.md.j2", run=run, tables=tables, claims=_claims(run.results))
    atomic_write_text(run.run_dir / "results.md", markdown)
    return atomic_write_text(run.run_dir / "report.html", html)


def load_run(run_dir: str | Path) -> RunContents:
    """Read the pieces of a run directory that the report shows; absent pieces are listed in ``missing``."""
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"run_dir={str(root)!r}: no such directory (expected a run directory of `imde study`)")
    if not _is_study_dir(root):
        raise ValueError(f"run_dir={str(root)!r} is not a run directory of `imde study`: it holds none of "
                         f"{', '.join(STUDY_OUTPUTS)} and no study config.yaml (a trained model's folder is one "
                         "of a study's models/<variant>)")
    missing: dict[str, list[str]] = {}
    config = root / "config.yaml"
    results = read_results(root / "results.json") if (root / "results.json").is_file() else None
    if results is None:
        missing.setdefault("summary", []).append("results.json")
    run = RunContents(
        run_dir=root,
        name=root.resolve().name,
        config_text=config.read_text(encoding="utf-8") if config.is_file() else None,
        results=results,
        dissect=_read_dissections(root / "dissect"),
        atlas=_read_atlases(root / "atlas", missing),
        experiments={kind: _read_variant_files(root / kind) for kind in _EXPERIMENT_DIRS},
        figures=_read_figures(root / "figures"),
        missing=missing,
    )
    for section, present, what in (
        ("dissection", run.dissect, "dissect/<variant>/dissect.json"),
        ("browser", run.atlas, "atlas/<variant>/index.json"),
        ("explain", run.experiments["explain"], "explain/<variant>.json"),
    ):
        if not present:
            missing.setdefault(section, []).append(what)
    return run


# ----------------------------------------------------------------------------------------- validation


_SCHEMA_NUMBERS = {
    "selectivity": ("train", "test"),
    "metrics": tuple(key for key, *_ in METRICS),
}


def read_results(path: str | Path) -> dict[str, Any]:
    """Read a study's ``results.json`` (``path`` is the file or its run directory) and check it against the
    public schema (:func:`validate_results`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not valid JSON, or a key of the wrong type, naming the file.
    """
    path = Path(path)
    path = path / "results.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r}: no such file (expected the results.json of an `imde study` run)")
    results = _read_json(path)
    validate_results(results, path)
    return results


def validate_results(results: Any, path: Path) -> None:
    """Check the types of the public ``results.json`` keys that are present (the schema of docs/report.md).

    Keys may be absent (the report then says so); a present key of the wrong type is an error.

    Raises:
        ValueError: naming ``path`` and the key path, with the value found and what was expected.
    """
    if not isinstance(results, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level, got {type(results).__name__}")
    _expect_number(results, "random_baseline", path, "")
    for variant, entry in _expect_dict(results, "models", path).items():
        where = f"models.{variant}"
        for group, keys in _SCHEMA_NUMBERS.items():
            numbers = _expect_dict(entry, group, path, where)
            for key in keys:
                _expect_number(numbers, key, path, f"{where}.{group}")
    for variant, entry in _expect_dict(results, "correction", path).items():
        for stage in ("before", "after"):
            numbers = _expect_dict(entry, stage, path, f"correction.{variant}")
            for key in ("delta1", "rms"):
                _expect_number(numbers, key, path, f"correction.{variant}.{stage}")
    for variant, entry in _expect_dict(results, "ablation", path).items():
        for key in ("units", "most_selective_first", "least_selective_first"):
            values = entry.get(key) if isinstance(entry, dict) else None
            if values is not None and not (isinstance(values, list) and all(_is_number(v) for v in values)):
                raise ValueError(f"{path}: ablation.{variant}.{key} must be a list of numbers, got {values!r:.80}")
    claims = results.get("claims", [])
    if not isinstance(claims, list) or not all(isinstance(c, dict) and "claim" in c for c in claims):
        raise ValueError(f"{path}: claims must be a list of {{claim, holds, value}} objects, got {claims!r:.80}")


def _expect_dict(parent: Any, key: str, path: Path, where: str = "") -> dict[str, Any]:
    value = parent.get(key, {}) if isinstance(parent, dict) else {}
    if not isinstance(value, dict):
        raise ValueError(f"{path}: {where + '.' if where else ''}{key} must be an object, got {value!r:.80}")
    return value


def _expect_number(parent: dict[str, Any], key: str, path: Path, where: str) -> None:
    value = parent.get(key)
    if value is not None and not _is_number(value):
        raise ValueError(f"{path}: {where + '.' if where else ''}{key} must be a number, got {value!r:.80}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -------------------------------------------------------------------------------------------- reading


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from err


def _read_variant_files(folder: Path) -> dict[str, Any]:
    """``<folder>/<variant>.json`` for every variant present, in table order."""
    if not folder.is_dir():
        return {}
    found = {path.stem: _read_json(path) for path in folder.glob("*.json")}
    return {variant: found[variant] for variant in order_variants(found)}


def order_variants(names: Iterable[str]) -> list[str]:
    """The paper's variants first (baseline, assign, reg), then any others alphabetically."""
    names = set(names)
    return [v for v in VARIANT_ORDER if v in names] + sorted(names - set(VARIANT_ORDER))


def _read_dissections(folder: Path) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """``{variant: {split: {layer: LayerDissection.to_dict()}}}`` from every ``dissect/<variant>/dissect.json``.

    Each file is loaded as the :class:`~imde.experiments.dissect.DissectResult` the dissect step saved (shapes
    checked, errors naming the file, the layer and the key); the page gets each layer as ``to_dict()`` writes
    it, with the test split first.
    """
    from imde.experiments.dissect import DissectResult

    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    if not folder.is_dir():
        return out
    for variant in order_variants(p.name for p in folder.iterdir() if (p / "dissect.json").is_file()):
        result = DissectResult.load(folder / variant)
        splits = sorted(result.layers.items(), key=lambda item: (item[0] != "test", item[0]))
        out[variant] = {split: {name: layer.to_dict() for name, layer in layers.items()} for split, layers in splits}
    return out


def _read_atlases(folder: Path, missing: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """``{variant: atlas index}`` from ``atlas/<variant>/index.json``, with every sprite as a data URI.

    An atlas whose index names a sprite that is not there is left out and the file is added to ``missing``.
    """
    out: dict[str, dict[str, Any]] = {}
    if not folder.is_dir():
        return out
    for variant in order_variants(p.parent.name for p in folder.glob("*/index.json")):
        index_path = folder / variant / "index.json"
        index = _read_json(index_path)
        if not isinstance(index, dict) or not isinstance(index.get("images"), dict) or "layers" not in index:
            raise ValueError(f"{index_path}: expected an atlas index with keys images and layers")
        sprites = [index["images"], *index["layers"].values()]
        sprites += [layer["masks"] for layer in index["layers"].values() if layer.get("masks")]
        absent = [f"atlas/{variant}/{s['file']}" for s in sprites if not (folder / variant / s["file"]).is_file()]
        if absent:
            missing.setdefault("browser", []).extend(absent)
            continue
        for sprite in sprites:
            sprite["src"] = _data_uri(folder / variant / sprite["file"])
        out[variant] = index
    return out


def _read_figures(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """``{section: [{name, src, wide}]}`` for ``figures/*.png`` (``src`` a data URI, ``wide`` when the figure is
    more than twice as wide as high, to span the page); names matching no section go to ``"other"``."""
    out: dict[str, list[dict[str, Any]]] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.png")):
        lower = path.name.lower()
        section = next((name for name, keys in FIGURE_SECTIONS if any(k in lower for k in keys)), "other")
        width, height = _png_size(path)
        out.setdefault(section, []).append({"name": path.name, "src": _data_uri(path), "wide": width > 2 * height})
    return out


def _png_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from a PNG's IHDR chunk.

    Raises:
        ValueError: when the file is not a PNG.
    """
    with open(path, "rb") as handle:
        head = handle.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG file (figures/*.png must be PNG images)")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _json_safe(obj: Any) -> Any:
    """Replace NaN/inf by ``None`` recursively (browsers' ``JSON.parse`` rejects Python's ``NaN``) and keep 6
    significant digits of every float (the page draws them; the files keep full precision)."""
    if isinstance(obj, float):
        return float(f"{obj:.6g}") if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------- tables


def fmt(value: Any, decimals: int = 3) -> str:
    """A number for a table cell (``"–"`` when absent or not finite)."""
    if not _is_number(value) or not math.isfinite(value):
        return "–"
    return f"{value:.{decimals}f}"


def _best_flags(columns: list[list[float | None]], signs: list[int]) -> list[list[bool]]:
    """``flags[row][col]``: the row holds the best finite value of the column (ties all marked, none when the
    column has a single distinct value)."""
    flags = [[False] * len(columns) for _ in columns[0]] if columns else []
    for j, (column, sign) in enumerate(zip(columns, signs)):
        finite = [v for v in column if v is not None and math.isfinite(v)]
        if sign == 0 or len(set(finite)) < 2:  # nothing to single out when all values are equal
            continue
        best = max(finite) if sign > 0 else min(finite)
        for i, value in enumerate(column):
            flags[i][j] = value == best
    return flags


def _number(entry: Any, *keys: str) -> float | None:
    for key in keys:
        entry = entry.get(key) if isinstance(entry, dict) else None
    return float(entry) if _is_number(entry) else None


def results_tables(results: Mapping[str, Any] | None) -> dict[str, Table]:
    """Tables 1-3 of the paper from ``results.json``: ``table1`` (selectivity and metrics per model),
    ``layers`` (Table 1's selectivity split by layer, when a model has several), ``table2`` (L_reg vs
    L_assign) and ``table3`` (correction before -> after); absent pieces are left out."""
    if not results:
        return {}
    models = results.get("models", {})
    tables: dict[str, Table] = {}
    variants = order_variants(models)
    if variants:
        table = _model_table(
            models, variants, "Table 1 · Depth selectivity and depth accuracy",
            "Selectivity is the mean DS over the dissected units (Eq. 2); metrics on the test split.")
        chance = _number(results, "random_baseline")
        control = results.get("control")
        if isinstance(control, dict):  # the baseline's architecture with random weights, dissected on the same data
            cells = [_with_interval(fmt(_number(control, "selectivity", split), SELECTIVITY_DECIMALS),
                                    control.get("selectivity_ci", {}).get(split), SELECTIVITY_DECIMALS)
                     for split in ("train", "test")]
            table.rows.append([VARIANT_LABELS["control"], *cells] + ["–"] * len(METRICS))
            table.best.append([False] * len(table.header))
        if chance is not None:
            table.rows.append(["Random units (Eq. 3)", fmt(chance, SELECTIVITY_DECIMALS),
                               fmt(chance, SELECTIVITY_DECIMALS)] + ["–"] * len(METRICS))
            table.best.append([False] * len(table.header))
        if "assign" in models and "baseline" in models:
            _add_difference_row(table, models, "assign", "baseline")
        tables["table1"] = table
        layers = _layer_table(models, variants, chance)
        if layers is not None:
            tables["layers"] = layers
    if "reg" in models and "assign" in models:
        tables["table2"] = _model_table(
            models, ["reg", "assign"], "Table 2 · Regularising selectivity (Eq. 4) vs assigning depth (Eq. 5)",
            "The same schedule and seed; only the selectivity loss differs.")
        _add_difference_row(tables["table2"], models, "assign", "reg")
    correction = results.get("correction", {})
    if correction:
        tables["table3"] = _correction_table(correction)
    return tables


# the replicates results.json keeps per model (paired across models: the same images' weights), by column key
_REPLICATED = {"test": "selectivity_test", "delta1": "delta1"}


def _add_difference_row(table: Table, models: Mapping[str, Any], a: str, b: str) -> None:
    """Append ``a - b`` for the test selectivity and delta1, each with the 95 % interval of the paired bootstrap
    replicates when the study kept them (the columns without replicates show "–")."""
    cells = []
    for key, decimals in (("train", 0), ("test", SELECTIVITY_DECIMALS), *((k, d) for k, _, _, d in METRICS)):
        where = ("selectivity", key) if key in ("train", "test") else ("metrics", key)
        values = [_number(models[v], *where) for v in (a, b)]
        if key not in _REPLICATED or None in values:
            cells.append("–")
            continue
        estimate = values[0] - values[1]
        diff = paired(*(model_replicates(models[v], _REPLICATED[key]) for v in (a, b)))
        interval = replicate_interval(diff, estimate)
        cells.append(_with_interval(f"{estimate:+.{decimals}f}", interval, decimals))
    table.rows.append([f"{VARIANT_LABELS.get(a, a)} − {VARIANT_LABELS.get(b, b)} (paired)", *cells])
    table.best.append([False] * len(table.header))


def _with_interval(text: str, interval: Any, decimals: int) -> str:
    """``text`` followed by its 95 % interval ``[low, high]`` when ``interval`` holds two numbers."""
    if isinstance(interval, list | tuple) and len(interval) == 2 and all(_is_number(b) for b in interval):
        return f"{text} [{fmt(interval[0], decimals)}, {fmt(interval[1], decimals)}]"
    return text


def _model_table(models: Mapping[str, Any], variants: list[str], title: str, caption: str) -> Table:
    columns = [[_number(models[v], "selectivity", split) for v in variants] for split in ("train", "test")]
    columns += [[_number(models[v], "metrics", key) for v in variants] for key, *_ in METRICS]
    decimals = [SELECTIVITY_DECIMALS] * 2 + [d for *_, d in METRICS]
    intervals = [[models[v].get("selectivity_ci", {}).get(split) for v in variants] for split in ("train", "test")]
    intervals += [[models[v].get("metrics_ci", {}).get(key) for v in variants] for key, *_ in METRICS]
    rows = [[VARIANT_LABELS.get(v, v)] + [_with_interval(fmt(col[i], d), ci[i], d)
                                          for col, d, ci in zip(columns, decimals, intervals)]
            for i, v in enumerate(variants)]
    shown = [[round(v, d) if v is not None else None for v in col] for col, d in zip(columns, decimals)]
    flags = _best_flags(shown, [1, 1] + [s for _, _, s, _ in METRICS])  # ties at the shown precision all bold
    return Table(title, caption, ["Model", "Sel. train ↑", "Sel. test ↑"] + [t for _, t, *_ in METRICS], rows,
                 [[False] + f for f in flags])


def _layer_table(models: Mapping[str, Any], variants: list[str], chance: float | None) -> Table | None:
    """Test-split selectivity of each dissected layer (Table 1's mean, split up); ``None`` for a single layer."""
    names = list(dict.fromkeys(name for v in variants for name in models[v].get("layers", {}).get("test", {})))
    if len(names) < 2:
        return None
    columns = [[_number(models[v], "layers", "test", name) for v in variants] for name in names]
    rows = [[VARIANT_LABELS.get(v, v)] + [fmt(col[i], SELECTIVITY_DECIMALS) for col in columns]
            for i, v in enumerate(variants)]
    flags = [[False] + f for f in _best_flags([[round(v, SELECTIVITY_DECIMALS) if v is not None else None
                                                 for v in col] for col in columns], [1] * len(columns))]
    if chance is not None:
        rows.append(["Random units (Eq. 3)"] + [fmt(chance, SELECTIVITY_DECIMALS)] * len(names))
        flags.append([False] * (len(names) + 1))
    return Table("Selectivity per layer", "Test split; each layer's mean DS (Table 1 averages them over the units).",
                 ["Model"] + [f"{name} ↑" for name in names], rows, flags)


def _gain_interval(entry: Mapping[str, Any], gain: float | None) -> tuple[float, float] | None:
    """95 % interval of the correction's delta1 gain from its paired replicates (``None`` without them)."""
    return None if gain is None else replicate_interval(correction_gain_replicates(entry), gain)


def _correction_table(correction: Mapping[str, Any]) -> Table:
    variants = order_variants(correction)
    rows, columns = [], []
    for v in variants:
        before_d1, after_d1 = _number(correction[v], "before", "delta1"), _number(correction[v], "after", "delta1")
        before_rms, after_rms = _number(correction[v], "before", "rms"), _number(correction[v], "after", "rms")
        gain = after_d1 - before_d1 if before_d1 is not None and after_d1 is not None else None
        gain_text = f"{gain:+.3f}" if gain is not None else "–"
        rows.append([VARIANT_LABELS.get(v, v), f"{fmt(before_d1)} → {fmt(after_d1)}",
                     f"{fmt(before_rms)} → {fmt(after_rms)}",
                     _with_interval(gain_text, _gain_interval(correction[v], gain), 3)])
        columns.append(round(gain, 3) if gain is not None else None)  # compared at the shown precision
    flags = _best_flags([columns], [1])
    return Table("Table 3 · Correction (Sec. 5.2): unit responses replaced by their training-set mean at the "
                 "ground-truth bin", "before → after, test split.", ["Model", "δ1 ↑", "RMS ↓", "Δδ1"], rows,
                 [[False, False, False, f[0]] for f in flags])


def _claims(results: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [] if not results else [
        {"claim": str(c["claim"]), "holds": bool(c.get("holds")), "value": _number(c, "value"),
         "ci_low": _number(c, "ci_low"), "ci_high": _number(c, "ci_high"), "verdict": c.get("verdict")}
        for c in results.get("claims", [])
    ]


# ----------------------------------------------------------------------------------------- rendering


def _page_context(run: RunContents) -> dict[str, Any]:
    results = run.results or {}
    claims = _claims(results)
    explained = run.experiments["explain"]
    return {
        "claims": claims,
        "claims_held": sum(c["holds"] for c in claims),
        "random_baseline": _number(results, "random_baseline"),
        "seconds": _number(results, "seconds"),
        "labels": VARIANT_LABELS,
        "explain_rows": {v: _scalar_rows(e) for v, e in explained.items()},
        "explain_tables": {v: explain_table(e, VARIANT_LABELS.get(v, v)) for v, e in explained.items()},
        "css": _asset("report.css"),
        "js": _asset("report.js"),
    }


def explain_table(entry: Mapping[str, Any], label: str) -> dict[str, Any]:
    """Fig. 8's numbers as a table: per image (clean, adversarial) its error pixels, delta1, the most frequent
    predicted depth bin of the error pixels and the units that bin's depth is assigned to, with how well each
    unit's strongest activations cover the error pixels (IoU)."""
    edges = entry.get("edges") or []

    def depth_bin(index: Any) -> str:
        if not isinstance(index, int) or not 0 <= index < len(edges) - 1:
            return "–"
        return f"{index} ({edges[index]:.2f}–{edges[index + 1]:.2f} m)"

    rows = []
    for case in ("clean", "adversarial"):
        values = entry.get(case)
        if not isinstance(values, Mapping):
            continue
        units = values.get("units") or []
        ious = values.get("localisation") or []
        unit_cells = [f"{unit} (IoU {fmt(iou, 2)})" for unit, iou in zip(units, ious, strict=False)]
        error = values.get("error_fraction")
        rows.append([case, f"{100 * error:.1f} %" if _is_number(error) else "–", fmt(values.get("delta1")),
                     depth_bin(values.get("top_bin")), ", ".join(unit_cells) or "none"])
    header = ["image", "error pixels", "δ1", "most frequent bin of the error pixels", "its units (IoU with the errors)"]
    unit_bins = "assigned (Eq. 6)" if entry.get("unit_bins") == "assigned" else "preferred (their largest response)"
    return {
        "title": f"{label}: layer {entry.get('layer', '?')}, FGSM ε = {fmt(entry.get('epsilon'), 3)}",
        "caption": f"units by their {unit_bins} bin; error pixels: max(p/gt, gt/p) > 1.25",
        "header": header, "rows": rows, "best": [[False] * len(header) for _ in rows],
    }


def _scalar_rows(entry: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten the numbers, short strings and short number lists of an experiment's JSON into ``(key, value)`` rows."""
    rows: list[tuple[str, str]] = []
    if not isinstance(entry, dict):
        return rows
    for key, value in entry.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _scalar_rows(value, name + ".")
        elif _is_number(value):
            rows.append((name, fmt(value, 4) if isinstance(value, float) else str(value)))
        elif isinstance(value, str | bool) and len(str(value)) <= 120:
            rows.append((name, str(value)))
        elif isinstance(value, list) and 0 < len(value) <= SHORT_LIST and all(_is_number(v) for v in value):
            rows.append((name, ", ".join(fmt(v, 4) if isinstance(v, float) else str(v) for v in value)))
    return rows


def _page_data(run: RunContents) -> dict[str, Any]:
    """The JSON embedded in the page for the client-side charts and the unit browser."""
    results = run.results or {}
    ablation = results.get("ablation", {})
    return _json_safe({
        "order": order_variants({*run.dissect, *run.atlas, *ablation}),
        "randomBaseline": _number(results, "random_baseline"),
        "labels": VARIANT_LABELS,
        "dissect": run.dissect,
        "atlas": run.atlas,
        "ablation": ablation,
    })


def _asset(name: str) -> Any:
    from markupsafe import Markup

    return Markup((TEMPLATES / name).read_text(encoding="utf-8"))


def _markdown_cell(value: Any) -> str:
    """Text safe inside a markdown table cell: backslash, pipe and angle brackets escaped, one line."""
    text = str(value).replace("\\", "\\\\")
    for char in "|<>":
        text = text.replace(char, "\\" + char)
    return text.replace("\n", " ")


def _render(template: str, **context: Any) -> str:
    jinja2 = require("jinja2", extra="viz")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.policies["json.dumps_kwargs"] = {"sort_keys": False}  # keep the variants' table order
    env.filters["fmt"] = fmt
    env.filters["md"] = _markdown_cell
    return env.get_template(template).render(**context)
