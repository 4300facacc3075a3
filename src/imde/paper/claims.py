"""The paper's claims, measured on a finished study and stated as numbers that hold or not.

Each claim compares numbers already in ``results.json`` (the public schema of ``imde study``), so a
reader can recompute every verdict from the file. The thresholds are
constants here, not configuration, so that a run cannot quietly relax them.

When the study kept bootstrap replicates (``stats.bootstrap > 0``: ``models.<variant>.replicates`` in
``results.json``), the selectivity and delta1 claims also get a 95 % interval and a three-way verdict
(:func:`imde.core.inference.verdict`): *holds* when the whole interval is on the claimed side of the threshold,
*fails* when it is wholly on the other side, *inconclusive* otherwise. Differences between two models use paired
replicates (the same images with the same weights); so do the correction gain (before / after on the same images)
and the ablation gap (every step on the same images). A claim without replicates in the file gets ``verdict``
``None`` and only the point value's ``holds``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from imde.core.inference import bias_corrected_interval, mean_interval, verdict

LEVEL = 0.95

#: The interpretable model's test-set selectivity must reach this (Table 1: 0.75 / 0.77 on NYU).
MIN_ASSIGN_SELECTIVITY = 0.70
#: ... and exceed the baseline's by at least this much (Table 1: +0.32 / +0.30).
MIN_SELECTIVITY_GAIN = 0.25
#: "Far above the random baseline" (Eq. 3): a layer mean is over dozens of units whose random-response
#: DS has a standard deviation of a few hundredths, so 0.05 is many standard errors, and the paper's
#: baselines sit 0.10-0.14 above it.
MIN_ABOVE_RANDOM = 0.05
#: Largest delta1 loss the interpretable model may have against the baseline.
MAX_DELTA1_DROP = 0.01


@dataclass(frozen=True)
class Claim:
    """One measured claim.

    Attributes:
        claim: what is claimed, in words, with its threshold.
        holds: whether the measured value satisfies it.
        value: the measured number the verdict is based on.
        threshold: the bound ``value`` is compared with.
        ci_low, ci_high: its 95 % bootstrap interval (NaN without replicates).
        verdict: ``"holds"``, ``"fails"`` or ``"inconclusive"`` from the interval; ``None`` without one.
    """

    claim: str
    holds: bool
    value: float
    threshold: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    verdict: str | None = None


def _claim(text: str, value: float, threshold: float, replicates: np.ndarray | None = None,
           strict: bool = False) -> Claim:
    """A claim "value >= threshold" (``strict``: ">"), with its interval and verdict when replicates exist."""
    holds = value > threshold if strict else value >= threshold
    if replicates is None:
        return Claim(text, bool(holds), float(value), float(threshold))
    low, high = replicate_interval(replicates, value)
    return Claim(text, bool(holds), float(value), float(threshold), low, high, verdict(low, high, threshold))


def model_replicates(model: Mapping[str, Any], name: str) -> np.ndarray | None:
    """``models.<variant>.replicates.<name>`` of ``results.json`` as an array (``None`` when the study kept none)."""
    values = model.get("replicates", {}).get(name) if isinstance(model, Mapping) else None
    return None if not values else np.asarray(values, dtype=float)


def paired(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """``a - b`` replicate by replicate (the same images' weights), ``None`` unless both exist and match."""
    return a - b if a is not None and b is not None and a.shape == b.shape else None


def replicate_interval(replicates: np.ndarray | None, estimate: float) -> tuple[float, float] | None:
    """The 95 % bias-corrected bootstrap interval of ``estimate`` from its replicates (``None`` without them)."""
    if replicates is None:
        return None
    low, high = bias_corrected_interval(torch.as_tensor(replicates, dtype=torch.float64), estimate, LEVEL)
    return float(low), float(high)


def _selectivity(results: Mapping[str, Any], variant: str) -> float:
    return float(results["models"][variant]["selectivity"]["test"])


def _delta1(results: Mapping[str, Any], variant: str) -> float:
    return float(results["models"][variant]["metrics"]["delta1"])


def _correction_gain(results: Mapping[str, Any], variant: str) -> float:
    entry = results["correction"][variant]
    return float(entry["after"]["delta1"]) - float(entry["before"]["delta1"])


def correction_gain_replicates(correction: Mapping[str, Any]) -> np.ndarray | None:
    """delta1 gain of a correction (``results.json`` ``correction.<variant>``) in every bootstrap replicate
    (after - before, paired), or ``None``."""
    replicates = correction.get("replicates") if isinstance(correction, Mapping) else None
    if not replicates:
        return None
    before, after = np.asarray(replicates["before"], float), np.asarray(replicates["after"], float)
    return paired(after, before) if before.size else None


def ablation_gap(most_first: Sequence[float] | np.ndarray, least_first: Sequence[float] | np.ndarray) -> Any:
    """Mean over the intermediate ablation steps of ``least_first - most_first`` delta1 (Fig. 2).

    The first point (nothing ablated) and the last (everything ablated) are the same network in both
    orders, so only the points in between are compared. Positive means ablating the most selective
    units first hurts more. Curves ``[steps]`` give a float; replicate curves ``[steps, R]`` give the ``R`` gaps.

    Raises:
        ValueError: when the curves differ in shape or have no intermediate point.
    """
    most, least = np.asarray(most_first, dtype=float), np.asarray(least_first, dtype=float)
    if most.shape != least.shape or most.ndim not in (1, 2):
        raise ValueError(f"ablation curves must be [steps] or [steps, R] of equal length, got {most.shape} and "
                         f"{least.shape}")
    if most.shape[0] < 3:
        raise ValueError(f"ablation curves need at least 3 points (start, middle, end), got {most.shape[0]}")
    gaps = (least[1:-1] - most[1:-1]).mean(0)
    return float(gaps) if most.ndim == 1 else gaps


def measure_claims(results: Mapping[str, Any]) -> list[Claim]:
    """Evaluate the paper's claims on a results dict in the public ``results.json`` schema.

    Args:
        results: needs ``random_baseline``, ``models.{baseline,assign,reg}``, ``correction.{baseline,assign}``
            and ``ablation.{baseline,assign}``.

    Returns:
        The claims in a fixed order, each with its measured value.
    """
    rand = float(results["random_baseline"])
    sel = {variant: _selectivity(results, variant) for variant in ("baseline", "assign", "reg")}
    boot = {variant: model_replicates(results["models"][variant], "selectivity_test")
            for variant in ("baseline", "assign", "reg")}
    claims = [
        _claim(f"test selectivity of the L_assign model >= {MIN_ASSIGN_SELECTIVITY}", sel["assign"],
               MIN_ASSIGN_SELECTIVITY, boot["assign"]),
        _claim(f"test selectivity of the L_assign model exceeds the baseline's by >= {MIN_SELECTIVITY_GAIN}",
               sel["assign"] - sel["baseline"], MIN_SELECTIVITY_GAIN, paired(boot["assign"], boot["baseline"])),
    ]
    for variant in ("assign", "baseline"):
        margin = boot[variant] - rand if boot[variant] is not None else None
        claims.append(_claim(f"test selectivity of the {variant} model is >= {MIN_ABOVE_RANDOM} above the random "
                             f"baseline ({rand:.4f})", sel[variant] - rand, MIN_ABOVE_RANDOM, margin))
    drop = _delta1(results, "assign") - _delta1(results, "baseline")
    delta1 = paired(model_replicates(results["models"]["assign"], "delta1"),
                    model_replicates(results["models"]["baseline"], "delta1"))
    claims += [
        _claim(f"delta1 of the L_assign model is at most {MAX_DELTA1_DROP} below the baseline's", drop,
               -MAX_DELTA1_DROP, delta1),
        _claim("L_assign gives higher test selectivity than L_reg", sel["assign"] - sel["reg"], 0.0,
               paired(boot["assign"], boot["reg"]), strict=True),
    ]
    # Sec. 5.2: correction largely improves the interpretable models, more than the baselines. Both must hold:
    # a correction that lowers both models' delta1, the interpretable one's less, improves nothing.
    gain = _correction_gain(results, "assign")
    margin = min(gain, gain - _correction_gain(results, "baseline"))
    gains = {v: correction_gain_replicates(results["correction"][v]) for v in ("assign", "baseline")}
    over_baseline = paired(gains["assign"], gains["baseline"])
    margins = None if over_baseline is None else np.minimum(gains["assign"], over_baseline)
    claims.append(_claim("correction improves delta1 of the L_assign model, and more than the baseline's (the "
                         "smaller of its gain and that gain minus the baseline's)", margin, 0.0, margins, strict=True))
    # Fig. 2 ablates the baseline network of [18]; imde asks the same of the interpretable model.
    sources = {"baseline": "Fig. 2", "assign": "Fig. 2's test, which the paper runs on the baseline only"}
    for variant, source in sources.items():
        entry = results["ablation"][variant]
        gap = ablation_gap(entry["most_selective_first"], entry["least_selective_first"])
        gaps = None
        if entry.get("replicates_most") and entry.get("replicates_least"):  # [steps, R] each: gap per replicate
            try:
                gaps = ablation_gap(entry["replicates_most"], entry["replicates_least"])
            except ValueError:
                gaps = None
        claims.append(_claim(f"{variant} model: ablating the most selective units first lowers delta1 more than "
                             f"least selective first (mean gap over the curve; {source})", gap, 0.0, gaps,
                             strict=True))
    return claims


def claims_to_json(claims: Sequence[Claim]) -> list[dict[str, Any]]:
    """The ``claims`` list of ``results.json``."""
    return [asdict(claim) for claim in claims]


@dataclass(frozen=True)
class ClaimAcrossRuns:
    """One claim measured on several runs (e.g. seeds) with this version's definition.

    Attributes:
        claim: the claim in words, as :func:`measure_claims` states it.
        values: its measured value in each run, in the runs' order.
        holds: whether it holds in each run.
        threshold: the claim's threshold.
        mean: the mean of ``values`` over the runs.
        ci_low, ci_high: the 95 % Student-t interval of that mean (runs as independent draws; NaN for one run).
        verdict: the three-way verdict of that interval against ``threshold``.
    """

    claim: str
    values: tuple[float, ...]
    holds: tuple[bool, ...]
    threshold: float = 0.0
    mean: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    verdict: str = "inconclusive"


def _across(claim: Claim, measured: Sequence[Claim]) -> ClaimAcrossRuns:
    values = tuple(m.value for m in measured)
    mean, low, high = mean_interval(list(values))
    return ClaimAcrossRuns(claim.claim, values, tuple(m.holds for m in measured), claim.threshold, mean, low, high,
                           verdict(low, high, claim.threshold))


def claims_across_runs(runs: Mapping[str, Mapping[str, Any]]) -> list[ClaimAcrossRuns]:
    """Measure the claims afresh on each run's ``results.json`` content and line them up claim by claim.

    Re-measuring (rather than reading each file's stored ``claims``) judges runs made under earlier
    definitions of a claim by the same rule as the newest.

    Args:
        runs: ``results.json`` contents by run name, in the order the columns should have.

    Raises:
        ValueError: for no runs, or naming the run whose results lack a number a claim needs.
    """
    if not runs:
        raise ValueError("claims_across_runs needs at least one run")
    measured = []
    for name, results in runs.items():
        try:
            measured.append(measure_claims(results))
        except KeyError as err:
            raise ValueError(f"{name}: results.json lacks {err} (an unfinished study?)") from None
    return [_across(claim, [m[i] for m in measured]) for i, claim in enumerate(measured[0])]


def claims_markdown(names: Sequence[str], rows: Sequence[ClaimAcrossRuns]) -> str:
    """A Markdown table: one row per claim with its value and verdict in each run, how many runs it held in,
    and the across-run mean with its 95 % interval and three-way verdict."""
    if any(len(row.values) != len(names) for row in rows):
        raise ValueError(f"every claim needs one value per run ({len(names)} runs: {', '.join(names)})")
    lines = [f"| claim | {' | '.join(f'`{name}`' for name in names)} | holds in | mean [95 % interval] | verdict |",
             f"|---|{'---|' * len(names)}---|---|---|"]
    for row in rows:
        cells = [f"{value:.3f} {'✓' if holds else '✗'}" for value, holds in zip(row.values, row.holds)]
        interval = f"{row.mean:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]"
        lines.append(f"| {row.claim} | {' | '.join(cells)} | {sum(row.holds)} of {len(names)} | {interval} | "
                     f"{row.verdict} |")
    totals = [f"{sum(row.holds[i] for row in rows)} of {len(rows)}" for i in range(len(names))]
    verdicts = {name: sum(row.verdict == name for row in rows) for name in ("holds", "fails", "inconclusive")}
    summary = ", ".join(f"{count} {name}" for name, count in verdicts.items())
    lines.append(f"| **claims that hold** | {' | '.join(totals)} | | | {summary} |")
    return "\n".join(lines) + "\n"
